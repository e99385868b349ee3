/*
 * Policies and the full-covariance Gaussian: shapes, parameters, the
 * soft log-std bounds, densities and entropies against closed forms
 * computed here in plain C, sample moments against the distribution's,
 * gradients against finite differences, and the error paths.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/linalg.h"
#include "d2r/policy.h"
#include "gradcheck.h"

#define LOG_2PI 1.83787706640934548356

static d2r_tensor *randn(uint64_t seed, int nd, const int64_t *shape) {
  d2r_rng *r = d2r_rng_new(seed);
  d2r_tensor *t = d2r_rand_normal(r, nd, shape, 0, 1);
  d2r_rng_free(r);
  return t;
}

/* Element i of t read through its strides (row-major numbering). */
static double el(d2r_tensor *t, int64_t i) {
  d2r_tensor *c = d2r_contiguous(t);
  double v = d2r_data(c)[i];
  d2r_release(c);
  return v;
}

static void expect_shape(const d2r_tensor *t, int nd, const int64_t *sh,
                         const char *what) {
  char b[64];
  cr_assert(t, "%s: %s", what, d2r_error());
  cr_assert_eq(d2r_ndim(t), nd, "%s: shape %s", what,
               d2r_shape_str(t, b, sizeof b));
  for (int i = 0; i < nd; i++)
    cr_expect_eq(d2r_dim(t, i), sh[i], "%s: shape %s", what,
                 d2r_shape_str(t, b, sizeof b));
}

static void expect_error(const void *got, const char *part) {
  cr_expect_null(got);
  cr_expect(strstr(d2r_error(), part) != NULL, "error '%s' lacks '%s'",
            d2r_error(), part);
}

static d2r_policy *make(d2r_policy_config *c, uint64_t seed) {
  d2r_rng *r = d2r_rng_new(seed);
  d2r_policy *p = d2r_policy_new(c, r);
  d2r_rng_free(r);
  cr_assert(p, "policy_new: %s", d2r_error());
  return p;
}

static const int64_t H88[2] = {8, 8};

/* ---- diagonal Gaussian policy ------------------------------------------ */

Test(policy, gaussian_shapes_and_parameters) {
  d2r_policy_config c = d2r_policy_config_default(D2R_POLICY_GAUSSIAN, 3, 2);
  c.nhidden = 2, c.hidden = H88, c.act = D2R_ACT_TANH;
  d2r_policy *p = make(&c, 1);
  cr_expect_eq(d2r_policy_nparams(p), 6);
  /* 3*8+8 + 8*8+8 + 8*4+4 */
  cr_expect_eq(d2r_policy_numel(p), 32 + 72 + 36);
  cr_expect_eq(d2r_policy_get_config(p)->hidden[1], 8);
  cr_expect_str_eq(d2r_policy_kind_name(D2R_POLICY_GAUSSIAN), "gaussian");
  int64_t xs[2] = {4, 3};
  d2r_tensor *x = randn(2, 2, xs);
  d2r_pdist d = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p, x, &d), 0, "%s", d2r_error());
  expect_shape(d.mean, 2, (int64_t[]){4, 2}, "mean");
  expect_shape(d.log_std, 2, (int64_t[]){4, 2}, "log_std");
  cr_expect_null(d.chol);
  cr_expect_null(d.logits);
  d2r_rng *r = d2r_rng_new(3);
  d2r_tensor *y = d2r_pdist_sample(r, &d, 5);
  expect_shape(y, 3, (int64_t[]){4, 5, 2}, "sample");
  cr_expect(!d2r_requires_grad(y));
  d2r_tensor *ys = d2r_pdist_rsample(r, &d, 5);
  cr_expect(d2r_requires_grad(ys));
  d2r_tensor *lm = d2r_pdist_log_prob(&d, y, D2R_REDUCE_MEAN_DIMS);
  d2r_tensor *ls = d2r_pdist_log_prob(&d, y, D2R_REDUCE_SUM_DIMS);
  d2r_tensor *ln = d2r_pdist_log_prob(&d, y, D2R_REDUCE_NONE);
  expect_shape(lm, 2, (int64_t[]){4, 5}, "log_prob mean");
  expect_shape(ln, 3, (int64_t[]){4, 5, 2}, "log_prob none");
  for (int64_t i = 0; i < 20; i++) {
    /* Per-dimension mean = joint / n; joint = sum of the terms. */
    cr_expect(fabs(el(lm, i) - el(ls, i) / 2) < 1e-12);
    cr_expect(fabs(el(ls, i) - el(ln, 2 * i) - el(ln, 2 * i + 1)) < 1e-12);
  }
  d2r_tensor *h = d2r_pdist_entropy(&d, D2R_REDUCE_MEAN_DIMS);
  expect_shape(h, 1, (int64_t[]){4}, "entropy");
  /* H = 0.5 log(2 pi e) + mean log_std per row. */
  for (int64_t b = 0; b < 4; b++) {
    double want = 0.5 * (LOG_2PI + 1) +
                  0.5 * (el(d.log_std, 2 * b) + el(d.log_std, 2 * b + 1));
    cr_expect(fabs(el(h, b) - want) < 1e-12);
  }
  d2r_tensor *cov = d2r_pdist_covariance(&d);
  expect_shape(cov, 3, (int64_t[]){4, 2, 2}, "covariance");
  cr_expect(fabs(el(cov, 0) - exp(2 * el(d.log_std, 0))) < 1e-12);
  cr_expect_eq(el(cov, 1), 0.0);
  /* One-call forms agree with the pdist. */
  d2r_tensor *lm2 = d2r_policy_log_prob(p, x, y, D2R_REDUCE_MEAN_DIMS);
  d2r_tensor *mu2 = d2r_policy_mean(p, x);
  cr_expect(fabs(el(lm2, 7) - el(lm, 7)) < 1e-15);
  cr_expect(fabs(el(mu2, 5) - el(d.mean, 5)) < 1e-15);
  d2r_release(x), d2r_release(y), d2r_release(ys), d2r_release(lm);
  d2r_release(ls), d2r_release(ln), d2r_release(h), d2r_release(cov);
  d2r_release(lm2), d2r_release(mu2);
  d2r_pdist_clear(&d);
  d2r_rng_free(r);
  d2r_policy_free(p);
}

Test(policy, global_log_std) {
  d2r_policy_config c = d2r_policy_config_default(D2R_POLICY_GAUSSIAN, 3, 2);
  c.nhidden = 1, c.hidden = H88;
  c.log_std = D2R_LOG_STD_GLOBAL, c.log_std_init = -0.7;
  d2r_policy *p = make(&c, 1);
  cr_expect_eq(d2r_policy_nparams(p), 5);
  d2r_tensor *g = d2r_policy_params(p)[4];
  expect_shape(g, 1, (int64_t[]){2}, "global log-std");
  int64_t xs[2] = {3, 3};
  d2r_tensor *x = randn(5, 2, xs);
  d2r_pdist d = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p, x, &d), 0, "%s", d2r_error());
  for (int64_t i = 0; i < 6; i++) cr_expect_eq(el(d.log_std, i), -0.7);
  /* Entropy depends on the global vector only: d H / d g_j = 1/n each. */
  d2r_tensor *h = d2r_pdist_entropy(&d, D2R_REDUCE_MEAN_DIMS);
  d2r_tensor *hs = d2r_sum_all(h);
  cr_assert_eq(d2r_backward(hs), 0, "%s", d2r_error());
  d2r_tensor *gg = d2r_grad(g);
  cr_assert(gg);
  cr_expect(fabs(el(gg, 0) - 1.5) < 1e-12 && fabs(el(gg, 1) - 1.5) < 1e-12,
            "grad %g %g", el(gg, 0), el(gg, 1));
  d2r_release(x), d2r_release(h), d2r_release(hs), d2r_release(gg);
  d2r_pdist_clear(&d);
  d2r_policy_free(p);
}

Test(policy, head_log_std_init_offsets_the_bias) {
  d2r_policy_config c = d2r_policy_config_default(D2R_POLICY_GAUSSIAN, 2, 3);
  d2r_policy *p0 = make(&c, 9);
  c.log_std_init = 1.25;
  d2r_policy *p1 = make(&c, 9);
  int64_t xs[2] = {2, 2};
  d2r_tensor *x = randn(4, 2, xs);
  d2r_pdist a = D2R_PDIST_INIT, b = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p0, x, &a), 0);
  cr_assert_eq(d2r_policy_dist(p1, x, &b), 0);
  for (int64_t i = 0; i < 6; i++) {
    cr_expect(fabs(el(b.log_std, i) - el(a.log_std, i) - 1.25) < 1e-12);
    cr_expect_eq(el(b.mean, i), el(a.mean, i));
  }
  d2r_pdist_clear(&a), d2r_pdist_clear(&b);
  d2r_release(x);
  d2r_policy_free(p0), d2r_policy_free(p1);
}

static double softplus(double v) {
  return v > 30 ? v : log1p(exp(v));
}

/* Sets the head's raw log-std to the constants raw[j] for every input:
 * zero weights into the head, the bias entries n..2n-1 set. */
static void force_raw_log_std(d2r_policy *p, const double *raw) {
  int k = d2r_model_nparams(d2r_policy_model(p));
  d2r_tensor *const *ps = d2r_policy_params(p);
  int64_t n = d2r_policy_get_config(p)->out;
  d2r_tensor *w = ps[k - 2], *b = ps[k - 1];
  for (int64_t i = 0; i < d2r_dim(w, 0); i++)
    for (int64_t j = n; j < 2 * n; j++)
      d2r_data(w)[i * 2 * n + j] = 0;
  for (int64_t j = 0; j < n; j++) d2r_data(b)[n + j] = raw[j];
}

Test(policy, soft_bounds_take_effect) {
  /* Raw log-stds far outside [lo, hi] = [-3, 1], and one inside. */
  const double raw[3] = {12, -20, -1};
  const double lo = -3, hi = 1;
  d2r_policy_config c = d2r_policy_config_default(D2R_POLICY_GAUSSIAN, 2, 3);
  d2r_policy *free_p = make(&c, 4);
  c.bounded = true, c.min_log_std = lo, c.max_log_std = hi;
  d2r_policy *bnd = make(&c, 4);
  force_raw_log_std(free_p, raw);
  force_raw_log_std(bnd, raw);
  int64_t xs[2] = {5, 2};
  d2r_tensor *x = randn(6, 2, xs);
  d2r_pdist a = D2R_PDIST_INIT, b = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(free_p, x, &a), 0);
  cr_assert_eq(d2r_policy_dist(bnd, x, &b), 0);
  for (int64_t r = 0; r < 5; r++) {
    for (int j = 0; j < 3; j++) {
      double s = raw[j], t = hi - softplus(hi - s);
      double want = lo + softplus(t - lo);
      double got = el(b.log_std, 3 * r + j);
      cr_expect(fabs(el(a.log_std, 3 * r + j) - raw[j]) < 1e-12);
      cr_expect(fabs(got - want) < 1e-12, "bounded %g, want %g", got,
                want);
      cr_expect(got > lo && got < lo + softplus(hi - lo));
    }
    /* Far above hi: pinned just under hi; far below lo: just above lo;
     * inside: moved by less than 0.15. */
    cr_expect(fabs(el(b.log_std, 3 * r) - hi) < 0.02);
    cr_expect(fabs(el(b.log_std, 3 * r + 1) - lo) < 0.02);
    cr_expect(fabs(el(b.log_std, 3 * r + 2) - raw[2]) < 0.15);
  }
  d2r_pdist_clear(&a), d2r_pdist_clear(&b);
  d2r_release(x);
  d2r_policy_free(free_p), d2r_policy_free(bnd);
}

Test(policy, learned_bounds_are_parameters) {
  d2r_policy_config c = d2r_policy_config_default(D2R_POLICY_GAUSSIAN, 2, 2);
  c.log_std = D2R_LOG_STD_GLOBAL, c.log_std_init = 3;
  c.bounded = true, c.min_log_std = -2, c.max_log_std = 0.5;
  c.learn_bounds = true;
  d2r_policy *p = make(&c, 4);
  /* W, b, global log-std, lo, hi. */
  cr_assert_eq(d2r_policy_nparams(p), 5);
  d2r_tensor *lo = d2r_policy_params(p)[3], *hi = d2r_policy_params(p)[4];
  cr_expect_eq(el(lo, 1), -2.0);
  cr_expect_eq(el(hi, 0), 0.5);
  d2r_tensor *pen = d2r_policy_bounds_penalty(p);
  cr_expect(fabs(d2r_item(pen) - 5.0) < 1e-12);
  /* The entropy of a log-std pinned at hi moves with hi, not with lo. */
  int64_t xs[2] = {3, 2};
  d2r_tensor *x = randn(6, 2, xs);
  d2r_tensor *h = d2r_policy_entropy(p, x, D2R_REDUCE_SUM_DIMS);
  d2r_tensor *hs = d2r_sum_all(h);
  cr_assert_eq(d2r_backward(hs), 0, "%s", d2r_error());
  d2r_tensor *ghi = d2r_grad(hi), *glo = d2r_grad(lo);
  cr_assert(ghi && glo);
  /* s = 3 against hi = 0.5: d s'/d hi = 1 - sigmoid(hi - s) ~ 0.92, per
   * row (3 rows). */
  double t = 0.5 - softplus(0.5 - 3), dt = 1 - 1 / (1 + exp(-(0.5 - 3)));
  double dlo = 1 / (1 + exp(-(t + 2)));
  cr_expect(fabs(el(ghi, 0) - 3 * dt * dlo) < 1e-9, "dH/dhi %g",
            el(ghi, 0));
  cr_expect(fabs(el(glo, 0) - 3 * (1 - dlo)) < 1e-9);
  d2r_release(pen), d2r_release(x), d2r_release(h), d2r_release(hs);
  d2r_release(ghi), d2r_release(glo);
  d2r_policy_free(p);
}

/* ---- full-covariance Gaussian ------------------------------------------ */

/* log N(y; m, L L^T) by forward substitution, in plain C. */
static double mvn_lp(int n, const double *m, const double *l,
                     const double *y) {
  double z[8], q = 0, ld = 0;
  for (int i = 0; i < n; i++) {
    double acc = y[i] - m[i];
    for (int j = 0; j < i; j++) acc -= l[i * n + j] * z[j];
    z[i] = acc / l[i * n + i];
    q += z[i] * z[i];
    ld += log(l[i * n + i]);
  }
  return -0.5 * n * LOG_2PI - ld - 0.5 * q;
}

Test(policy, full_factor_from_the_head) {
  d2r_policy_config c =
      d2r_policy_config_default(D2R_POLICY_FULL_GAUSSIAN, 2, 3);
  c.nhidden = 1, c.hidden = H88, c.jitter = 1e-3;
  d2r_policy *p = make(&c, 5);
  /* Head: 3 means + 6 factor entries. */
  cr_expect_eq(d2r_model_out_features(d2r_policy_model(p)), 9);
  int64_t xs[2] = {4, 2};
  d2r_tensor *x = randn(8, 2, xs);
  d2r_pdist d = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p, x, &d), 0, "%s", d2r_error());
  expect_shape(d.chol, 3, (int64_t[]){4, 3, 3}, "chol");
  cr_expect_null(d.log_std);
  for (int64_t b = 0; b < 4; b++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++) {
        double v = el(d.chol, b * 9 + i * 3 + j);
        if (j > i) cr_expect_eq(v, 0.0);
        if (j == i) cr_expect(v > 1e-3, "diagonal %g", v);
      }
  /* All parameters zero: mean 0 and L = (1 + jitter) I. */
  for (int i = 0; i < d2r_policy_nparams(p); i++)
    d2r_fill_(d2r_policy_params(p)[i], 0);
  d2r_pdist z = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p, x, &z), 0);
  for (int i = 0; i < 9; i++)
    cr_expect(fabs(el(z.chol, 9 + i) - (i % 4 == 0 ? 1.001 : 0)) < 1e-12);
  d2r_pdist_clear(&d), d2r_pdist_clear(&z);
  d2r_release(x);
  d2r_policy_free(p);
}

Test(policy, full_log_prob_and_entropy_closed_forms) {
  d2r_policy_config c =
      d2r_policy_config_default(D2R_POLICY_FULL_GAUSSIAN, 2, 3);
  c.nhidden = 1, c.hidden = H88;
  d2r_policy *p = make(&c, 6);
  int64_t xs[2] = {4, 2}, ys[3] = {4, 5, 3};
  d2r_tensor *x = randn(9, 2, xs), *y = randn(10, 3, ys);
  d2r_pdist d = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p, x, &d), 0, "%s", d2r_error());
  d2r_tensor *lp = d2r_pdist_log_prob(&d, y, D2R_REDUCE_SUM_DIMS);
  d2r_tensor *lm = d2r_pdist_log_prob(&d, y, D2R_REDUCE_MEAN_DIMS);
  d2r_tensor *h = d2r_pdist_entropy(&d, D2R_REDUCE_SUM_DIMS);
  d2r_tensor *hm = d2r_pdist_entropy(&d, D2R_REDUCE_MEAN_DIMS);
  expect_shape(lp, 2, (int64_t[]){4, 5}, "full log_prob");
  expect_shape(h, 1, (int64_t[]){4}, "full entropy");
  d2r_tensor *mc = d2r_contiguous(d.mean), *lc = d2r_contiguous(d.chol);
  d2r_tensor *yc = d2r_contiguous(y);
  for (int b = 0; b < 4; b++) {
    const double *m = d2r_data(mc) + 3 * b, *l = d2r_data(lc) + 9 * b;
    double ld = log(l[0]) + log(l[4]) + log(l[8]);
    double hw = 1.5 * (LOG_2PI + 1) + ld;
    cr_expect(fabs(el(h, b) - hw) < 1e-12, "H %g, want %g", el(h, b), hw);
    cr_expect(fabs(el(hm, b) - hw / 3) < 1e-12);
    for (int g = 0; g < 5; g++) {
      double want = mvn_lp(3, m, l, d2r_data(yc) + 15 * b + 3 * g);
      cr_expect(fabs(el(lp, 5 * b + g) - want) < 1e-10,
                "log p[%d][%d] = %.12g, want %.12g", b, g,
                el(lp, 5 * b + g), want);
      cr_expect(fabs(el(lm, 5 * b + g) - want / 3) < 1e-10);
    }
  }
  /* One target per row ([B, n]) agrees with the first draw. */
  d2r_tensor *y0 = d2r_slice(y, 1, 0, 1, 1);
  d2r_tensor *y2 = d2r_squeeze(y0, 1);
  d2r_tensor *lp2 = d2r_pdist_log_prob(&d, y2, D2R_REDUCE_SUM_DIMS);
  expect_shape(lp2, 1, (int64_t[]){4}, "full log_prob [B, n]");
  for (int b = 0; b < 4; b++)
    cr_expect(fabs(el(lp2, b) - el(lp, 5 * b)) < 1e-12);
  /* The covariance is L L^T. */
  d2r_tensor *cov = d2r_pdist_covariance(&d);
  const double *l = d2r_data(lc) + 9;
  cr_expect(fabs(el(cov, 9 + 5) - (l[6] * l[3] + l[7] * l[4])) < 1e-12);
  /* No per-dimension terms for a full covariance. */
  expect_error(d2r_pdist_log_prob(&d, y, D2R_REDUCE_NONE), "factor");
  d2r_release(lp), d2r_release(lm), d2r_release(h), d2r_release(hm);
  d2r_release(mc), d2r_release(lc), d2r_release(yc), d2r_release(y0);
  d2r_release(y2), d2r_release(lp2), d2r_release(cov);
  d2r_release(x), d2r_release(y);
  d2r_pdist_clear(&d);
  d2r_policy_free(p);
}

Test(policy, mvn_shared_factor_and_diagonal_case) {
  /* A diagonal factor exp(log_std): the density, entropy and draws of
   * the diagonal Gaussian; a shared [n, n] factor as a batched one. */
  const double ls[2] = {0.3, -0.6};
  double lv[4] = {exp(ls[0]), 0, 0, exp(ls[1])};
  int64_t ms[2] = {3, 2}, ys[3] = {3, 4, 2};
  d2r_tensor *m = randn(1, 2, ms), *y = randn(2, 3, ys);
  d2r_tensor *l = d2r_matrix(2, 2, lv), *lsv = d2r_vector(2, ls);
  d2r_tensor *a = d2r_mvn_log_prob(m, l, y, D2R_REDUCE_SUM_DIMS);
  d2r_tensor *b = d2r_gaussian_log_prob(m, lsv, y, D2R_REDUCE_SUM_DIMS);
  expect_shape(a, 2, (int64_t[]){3, 4}, "shared log_prob");
  for (int64_t i = 0; i < 12; i++)
    cr_expect(fabs(el(a, i) - el(b, i)) < 1e-12);
  d2r_tensor *ha = d2r_mvn_entropy(l, D2R_REDUCE_MEAN_DIMS);
  d2r_tensor *hb = d2r_gaussian_entropy(lsv, D2R_REDUCE_MEAN_DIMS);
  cr_expect(fabs(d2r_item(ha) - d2r_item(hb)) < 1e-12);
  d2r_rng *r1 = d2r_rng_new(3), *r2 = d2r_rng_new(3);
  d2r_tensor *sa = d2r_mvn_sample(r1, m, l, 4);
  d2r_tensor *sb = d2r_gaussian_sample(r2, m, lsv, 4);
  for (int64_t i = 0; i < 24; i++)
    cr_expect(fabs(el(sa, i) - el(sb, i)) < 1e-12);
  int64_t es[3] = {3, 2, 2};
  d2r_tensor *l3 = d2r_expand(l, 3, es);
  d2r_tensor *c = d2r_mvn_log_prob(m, l3, y, D2R_REDUCE_SUM_DIMS);
  for (int64_t i = 0; i < 12; i++)
    cr_expect(fabs(el(a, i) - el(c, i)) < 1e-12);
  d2r_release(m), d2r_release(y), d2r_release(l), d2r_release(lsv);
  d2r_release(a), d2r_release(b), d2r_release(ha), d2r_release(hb);
  d2r_release(sa), d2r_release(sb), d2r_release(l3), d2r_release(c);
  d2r_rng_free(r1), d2r_rng_free(r2);
}

Test(policy, mvn_sample_moments) {
  /* 40000 draws of N(m, L L^T), n = 3: the standard error of a mean is
   * at most sqrt(max var / N) < 0.011 and of a covariance entry about
   * sqrt(2) var / sqrt(N) < 0.02; tolerances are 4 standard errors. */
  const double mv[3] = {1, -2, 0.5};
  const double lv[9] = {1.2, 0, 0, -0.5, 0.8, 0, 0.3, 0.4, 0.6};
  d2r_tensor *m = d2r_matrix(1, 3, mv), *l = d2r_matrix(3, 3, lv);
  d2r_rng *r = d2r_rng_new(17);
  const int64_t N = 40000;
  d2r_tensor *s = d2r_mvn_sample(r, m, l, N);
  expect_shape(s, 3, (int64_t[]){1, N, 3}, "draws");
  const double *v = d2r_data(s);
  double mean[3] = {0}, cov[9] = {0};
  for (int64_t k = 0; k < N; k++)
    for (int i = 0; i < 3; i++) mean[i] += v[3 * k + i] / (double)N;
  for (int64_t k = 0; k < N; k++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++)
        cov[3 * i + j] += (v[3 * k + i] - mean[i]) *
                          (v[3 * k + j] - mean[j]) / (double)(N - 1);
  for (int i = 0; i < 3; i++) {
    cr_expect(fabs(mean[i] - mv[i]) < 0.045, "mean[%d] %g", i, mean[i]);
    for (int j = 0; j < 3; j++) {
      double want = 0;
      for (int k = 0; k < 3; k++) want += lv[3 * i + k] * lv[3 * j + k];
      cr_expect(fabs(cov[3 * i + j] - want) < 0.08, "cov[%d][%d] %g, "
                "want %g", i, j, cov[3 * i + j], want);
    }
  }
  /* rsample draws the same values, with history. */
  d2r_set_requires_grad(l, true);
  d2r_rng *r2 = d2r_rng_new(17);
  d2r_tensor *rs = d2r_mvn_rsample(r2, m, l, 5);
  cr_expect(d2r_requires_grad(rs));
  for (int64_t i = 0; i < 15; i++) cr_expect(fabs(el(rs, i) - v[i]) < 1e-12);
  d2r_release(m), d2r_release(l), d2r_release(s), d2r_release(rs);
  d2r_rng_free(r), d2r_rng_free(r2);
}

/* ---- gradients against finite differences ----------------------------- */

typedef d2r_tensor *(*scalar_fn)(d2r_tensor **in, void *ctx);

/* Compares d f / d in[i] from autodiff with central differences (step
 * 1e-6, relative error < tol) for each of the nin inputs (any number,
 * unlike gradcheck.h's harness). */
static void param_check(const char *name, scalar_fn f, int nin,
                        d2r_tensor **in, void *ctx, double tol) {
  d2r_tensor *out = f(in, ctx), *g[8] = {0};
  cr_assert(out, "%s: %s", name, d2r_error());
  cr_assert_eq(d2r_autograd(1, &out, NULL, nin, in, false, true, g), 0,
               "%s: %s", name, d2r_error());
  bool was = d2r_set_grad_enabled(false);
  for (int i = 0; i < nin; i++) {
    double *x = d2r_data(in[i]);
    for (int64_t k = 0; k < d2r_numel(in[i]); k++) {
      double x0 = x[k], v[2];
      for (int sg = 0; sg < 2; sg++) {
        x[k] = x0 + (sg ? -1e-6 : 1e-6);
        d2r_tensor *o = f(in, ctx);
        v[sg] = d2r_item(o);
        d2r_release(o);
      }
      x[k] = x0;
      double fd = (v[0] - v[1]) / 2e-6, an = el(g[i], k);
      cr_expect(fabs(fd - an) / fmax(1, fabs(fd)) < tol,
                "%s: d/d in%d[%lld]: analytic %.9g, numeric %.9g", name, i,
                (long long)k, an, fd);
    }
  }
  d2r_set_grad_enabled(was);
  for (int i = 0; i < nin; i++) d2r_release(g[i]);
  d2r_release(out);
}

static d2r_tensor *mvn_lp_op(d2r_tensor **in) {
  return d2r_mvn_log_prob(in[0], in[1], in[2], D2R_REDUCE_SUM_DIMS);
}

static d2r_tensor *mvn_lp_mean_op(d2r_tensor **in) {
  return d2r_mvn_log_prob(in[0], in[1], in[2], D2R_REDUCE_MEAN_DIMS);
}

static d2r_tensor *mvn_entropy_op(d2r_tensor **in) {
  return d2r_mvn_entropy(in[0], D2R_REDUCE_SUM_DIMS);
}

/* rsample with a generator re-seeded at every call: the same eps. */
static d2r_tensor *mvn_rsample_op(d2r_tensor **in) {
  d2r_rng *r = d2r_rng_new(12);
  d2r_tensor *y = d2r_mvn_rsample(r, in[0], in[1], 3);
  d2r_rng_free(r);
  return y;
}

Test(policy, mvn_gradients) {
  /* First and second derivatives against finite differences, with one
   * factor per row and with a shared factor. */
  const double lv[18] = {1.1, 0, 0, 0.4, 0.9, 0, -0.2, 0.3, 1.3,
                         0.7, 0, 0, -0.3, 1.2, 0, 0.5, 0.1, 0.8};
  int64_t ms[2] = {2, 3}, ys[3] = {2, 4, 3}, ls[3] = {2, 3, 3};
  d2r_tensor *in[3] = {randn(1, 2, ms), d2r_from_data(3, ls, lv),
                       randn(2, 3, ys)};
  gradcheck("mvn_log_prob", mvn_lp_op, 3, in, 1e-6);
  gradcheck("mvn_log_prob, mean", mvn_lp_mean_op, 3, in, 1e-6);
  gradcheck("mvn_rsample", mvn_rsample_op, 2, in, 1e-6);
  d2r_tensor *shared[3] = {randn(3, 2, ms), d2r_matrix(3, 3, lv),
                           randn(4, 3, ys)};
  gradcheck("mvn_log_prob, shared factor", mvn_lp_op, 3, shared, 1e-6);
  gradcheck("mvn_entropy", mvn_entropy_op, 1, in + 1, 1e-6);
  for (int i = 0; i < 3; i++) d2r_release(in[i]), d2r_release(shared[i]);
}

typedef struct {
  d2r_policy *p;
  d2r_tensor *x, *y;
  d2r_reduce reduce;
} policy_ctx;

/* sum of log p(y | x) + entropy, computed with the tensors in. */
static d2r_tensor *policy_fn(d2r_tensor **in, void *ctx) {
  policy_ctx *c = ctx;
  d2r_pdist d = D2R_PDIST_INIT;
  if (d2r_policy_dist_with(c->p, in, c->x, &d) != 0) return NULL;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *lp = d2r_keep(&s, d2r_pdist_log_prob(&d, c->y, c->reduce));
  d2r_tensor *h = d2r_keep(&s, d2r_pdist_entropy(&d, c->reduce));
  d2r_tensor *out = d2r_add(d2r_keep(&s, d2r_sum_all(lp)),
                            d2r_keep(&s, d2r_sum_all(h)));
  d2r_scope_end(&s);
  d2r_pdist_clear(&d);
  return out;
}

static void check_policy_grads(d2r_policy_config *c, const char *name) {
  d2r_policy *p = make(c, 21);
  int64_t xs[2] = {3, c->in}, ys[3] = {3, 2, c->out};
  policy_ctx ctx = {p, randn(22, 2, xs), randn(23, 3, ys),
                    D2R_REDUCE_MEAN_DIMS};
  int n = d2r_policy_nparams(p);
  d2r_tensor *in[8];
  for (int i = 0; i < n; i++) in[i] = d2r_policy_params(p)[i];
  param_check(name, policy_fn, n, in, &ctx, 1e-5);
  d2r_release(ctx.x), d2r_release(ctx.y);
  d2r_policy_free(p);
}

Test(policy, parameter_gradients) {
  const int64_t h4[1] = {4};
  d2r_policy_config c = d2r_policy_config_default(D2R_POLICY_GAUSSIAN, 2, 2);
  c.nhidden = 1, c.hidden = h4, c.act = D2R_ACT_TANH;
  c.bounded = true, c.min_log_std = -0.5, c.max_log_std = 0.2;
  c.learn_bounds = true;
  check_policy_grads(&c, "gaussian, head, learned bounds");
  c.log_std = D2R_LOG_STD_GLOBAL;
  check_policy_grads(&c, "gaussian, global, learned bounds");
  d2r_policy_config f =
      d2r_policy_config_default(D2R_POLICY_FULL_GAUSSIAN, 2, 3);
  f.nhidden = 1, f.hidden = h4, f.act = D2R_ACT_TANH;
  check_policy_grads(&f, "full_gaussian");
}

/* ---- categorical policy ------------------------------------------------ */

Test(policy, categorical) {
  d2r_policy_config c =
      d2r_policy_config_default(D2R_POLICY_CATEGORICAL, 3, 4);
  c.nhidden = 1, c.hidden = H88;
  d2r_policy *p = make(&c, 2);
  int64_t xs[2] = {5, 3};
  d2r_tensor *x = randn(3, 2, xs);
  d2r_pdist d = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p, x, &d), 0, "%s", d2r_error());
  expect_shape(d.logits, 2, (int64_t[]){5, 4}, "logits");
  cr_expect_null(d.mean);
  d2r_rng *r = d2r_rng_new(8);
  d2r_tensor *smp = d2r_pdist_sample(r, &d, 6);
  expect_shape(smp, 2, (int64_t[]){5, 6}, "class draws");
  d2r_tensor *lp = d2r_pdist_log_prob(&d, smp, D2R_REDUCE_MEAN_DIMS);
  expect_shape(lp, 2, (int64_t[]){5, 6}, "categorical log_prob");
  d2r_tensor *lab = d2r_vector(5, (double[]){0, 3, 1, 2, 3});
  d2r_tensor *lpl = d2r_pdist_log_prob(&d, lab, D2R_REDUCE_SUM_DIMS);
  expect_shape(lpl, 1, (int64_t[]){5}, "log_prob of labels");
  d2r_tensor *pr = d2r_pdist_mean(&d);
  d2r_tensor *cov = d2r_pdist_covariance(&d);
  d2r_tensor *h = d2r_pdist_entropy(&d, D2R_REDUCE_NONE);
  expect_shape(h, 1, (int64_t[]){5}, "categorical entropy");
  for (int b = 0; b < 5; b++) {
    double tot = 0, ent = 0;
    for (int k = 0; k < 4; k++) {
      double q = el(pr, 4 * b + k);
      tot += q, ent -= q * log(q);
      /* Var of a one-hot entry: p (1 - p). */
      cr_expect(fabs(el(cov, 16 * b + 5 * k) - q * (1 - q)) < 1e-12);
    }
    cr_expect(fabs(tot - 1) < 1e-12);
    cr_expect(fabs(el(h, b) - ent) < 1e-12);
    int k = (int)el(lab, b);
    cr_expect(fabs(el(lpl, b) - log(el(pr, 4 * b + k))) < 1e-12);
    int s0 = (int)el(smp, 6 * b);
    cr_expect(fabs(el(lp, 6 * b) - log(el(pr, 4 * b + s0))) < 1e-12);
  }
  expect_error(d2r_pdist_rsample(r, &d, 2), "reparameterised");
  d2r_release(x), d2r_release(smp), d2r_release(lp), d2r_release(lab);
  d2r_release(lpl), d2r_release(pr), d2r_release(cov), d2r_release(h);
  d2r_pdist_clear(&d);
  d2r_rng_free(r);
  d2r_policy_free(p);
}

/* ---- errors ------------------------------------------------------------ */

Test(policy, errors) {
  d2r_rng *r = d2r_rng_new(1);
  d2r_policy_config c = d2r_policy_config_default(D2R_POLICY_GAUSSIAN, 0, 2);
  expect_error(d2r_policy_new(&c, r), "in >= 1");
  c.in = 2, c.bounded = true, c.min_log_std = 1, c.max_log_std = 1;
  expect_error(d2r_policy_new(&c, r), "min < max");
  c.bounded = false;
  expect_error(d2r_policy_new(&c, NULL), "generator");
  d2r_policy_config f =
      d2r_policy_config_default(D2R_POLICY_FULL_GAUSSIAN, 2, 2);
  f.bounded = true;
  expect_error(d2r_policy_new(&f, r), "diagonal Gaussian");
  f.bounded = false, f.jitter = -1;
  expect_error(d2r_policy_new(&f, r), "jitter");
  d2r_policy *p = d2r_policy_new(&c, r);
  cr_assert(p);
  d2r_tensor *x = d2r_zeros(2, (int64_t[]){3, 5});
  expect_error(d2r_policy_mean(p, x), "x must be [B, 2]");
  d2r_pdist d = D2R_PDIST_INIT;
  cr_expect_eq(d2r_policy_dist(p, x, &d), -1);
  cr_expect_null(d.mean);
  /* Wrong parameter shapes in dist_with. */
  d2r_tensor *bad[2] = {d2r_zeros(2, (int64_t[]){2, 3}),
                        d2r_policy_params(p)[1]};
  d2r_tensor *x2 = d2r_zeros(2, (int64_t[]){3, 2});
  cr_expect_eq(d2r_policy_dist_with(p, bad, x2, &d), -1);
  cr_expect(strstr(d2r_error(), "shape"), "%s", d2r_error());
  /* An earlier failure propagates with its message. */
  d2r_fail("earlier");
  cr_expect_null(d2r_policy_log_prob(p, x2, NULL, D2R_REDUCE_SUM_DIMS));
  cr_expect_str_eq(d2r_error(), "earlier");
  cr_expect_eq(d2r_policy_bounds(p, &x, &x), -1);
  d2r_tensor *pen = d2r_policy_bounds_penalty(p);
  cr_expect_eq(d2r_item(pen), 0.0);
  d2r_pdist empty = D2R_PDIST_INIT;
  expect_error(d2r_pdist_entropy(&empty, D2R_REDUCE_SUM_DIMS), "empty");
  d2r_tensor *eye = d2r_eye(2);
  expect_error(d2r_mvn_entropy(eye, D2R_REDUCE_NONE), "factor");
  expect_error(d2r_mvn_log_prob(x2, x2, x, D2R_REDUCE_SUM_DIMS),
               "chol [B, n, n]");
  d2r_release(x), d2r_release(bad[0]), d2r_release(x2), d2r_release(pen);
  d2r_release(eye);
  d2r_policy_free(p);
  d2r_policy_free(NULL);
  d2r_rng_free(r);
}

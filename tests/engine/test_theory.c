/*
 * The closed-form Gaussian theory (theory.h) against Monte Carlo
 * estimates and against its own optimality conditions; the full plug-in
 * reward of closed_form.h and its conditioning checks; and PG training
 * of Gaussian policies, which with U* must reach the data's mean and
 * covariance, and with U = I must not.
 *
 * Monte Carlo tolerances are 5 standard errors of the estimate (the
 * sample standard deviation over sqrt(N)), which a correct formula
 * exceeds with probability below 1e-6 (the draws are seeded, so each
 * run is the same).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/closed_form.h"
#include "d2r/linalg.h"
#include "d2r/objective.h"
#include "d2r/optim.h"
#include "d2r/policy.h"
#include "d2r/theory.h"
#include "gradcheck.h"

/* A fixed problem, n = 3: data N(MU, SIGMA), policy N(M, S), reward U. */
static const double MU[3] = {1, -0.5, 2};
static const double SIGMA[9] = {1.3, 0.4, -0.2, 0.4, 0.9, 0.3,
                                -0.2, 0.3, 0.6};
static const double M[3] = {0.4, 0.2, 1.5};
static const double S[9] = {0.5, -0.1, 0.05, -0.1, 0.8, 0.2,
                            0.05, 0.2, 0.4};
#define LOG_2PI 1.83787706640934548356

static const double UM[9] = {2.0, 0.3, 0.1, 0.3, 1.0, -0.2,
                             0.1, -0.2, 1.5};

static d2r_tensor *vec3(const double *v) { return d2r_vector(3, v); }
static d2r_tensor *mat3(const double *v) { return d2r_matrix(3, 3, v); }

static double el(d2r_tensor *t, int64_t i) {
  d2r_tensor *c = d2r_contiguous(t);
  double v = d2r_data(c)[i];
  d2r_release(c);
  return v;
}

static double item(d2r_tensor *t) {
  cr_assert(t, "%s", d2r_error());
  double v = d2r_item(t);
  d2r_release(t);
  return v;
}

static void expect_error(const void *got, const char *part) {
  cr_expect_null(got);
  cr_expect(strstr(d2r_error(), part) != NULL, "error '%s' lacks '%s'",
            d2r_error(), part);
}

/* N draws of N(m, C) as [N, n] (m [n], C [n, n]). */
static d2r_tensor *draws(d2r_rng *r, d2r_tensor *m, d2r_tensor *c,
                         int64_t N) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *l = d2r_keep(&s, d2r_cholesky(c));
  d2r_tensor *m2 = d2r_keep(&s, d2r_unsqueeze(m, 0));
  d2r_tensor *y = d2r_keep(&s, d2r_mvn_sample(r, m2, l, N));
  d2r_tensor *out = d2r_squeeze(y, 0);
  d2r_scope_end(&s);
  cr_assert(out, "%s", d2r_error());
  return out;
}

/* Mean and standard error of the N values of v. */
static void mean_se(d2r_tensor *v, double *mean, double *se) {
  d2r_tensor *c = d2r_contiguous(v);
  int64_t n = d2r_numel(c);
  double a = 0, q = 0;
  for (int64_t i = 0; i < n; i++) a += d2r_data(c)[i];
  a /= (double)n;
  for (int64_t i = 0; i < n; i++) {
    double d = d2r_data(c)[i] - a;
    q += d * d;
  }
  *mean = a;
  *se = sqrt(q / (double)(n - 1) / (double)n);
  d2r_release(c);
}

static void expect_mc(const char *what, double exact, d2r_tensor *v) {
  double mc, se;
  cr_assert(v, "%s: %s", what, d2r_error());
  mean_se(v, &mc, &se);
  cr_expect(fabs(mc - exact) < 5 * se, "%s: exact %.6g, Monte Carlo %.6g "
            "+- %.3g", what, exact, mc, se);
  d2r_release(v);
}

/* ---- formulas against Monte Carlo -------------------------------------- */

Test(theory, inner_cov_and_optimal_reward) {
  d2r_tensor *U = mat3(UM), *sig = mat3(SIGMA);
  d2r_tensor *sst = d2r_theory_inner_cov(U, 0.8);
  d2r_tensor *us = d2r_matmul(U, sst);
  for (int i = 0; i < 9; i++)
    cr_expect(fabs(el(us, i) - (i % 4 == 0 ? 0.4 : 0)) < 1e-12);
  d2r_tensor *ust = d2r_theory_optimal_reward(sig, 0.8);
  d2r_tensor *ss = d2r_matmul(ust, sig);
  for (int i = 0; i < 9; i++)
    cr_expect(fabs(el(ss, i) - (i % 4 == 0 ? 0.4 : 0)) < 1e-12);
  /* S*(U*) = Sigma: the inner optimum under U* is the data. */
  d2r_tensor *back = d2r_theory_inner_cov(ust, 0.8);
  for (int i = 0; i < 9; i++)
    cr_expect(fabs(el(back, i) - SIGMA[i]) < 1e-12);
  d2r_release(U), d2r_release(sig), d2r_release(sst), d2r_release(us);
  d2r_release(ust), d2r_release(ss), d2r_release(back);
}

Test(theory, expected_reward_monte_carlo) {
  /* N = 200000 draws yhat ~ N(M, S) against one fixed y, and against
   * y ~ N(MU, SIGMA) drawn independently. */
  const int64_t N = 200000;
  d2r_rng *r = d2r_rng_new(31);
  d2r_tensor *m = vec3(M), *s = mat3(S), *U = mat3(UM);
  d2r_tensor *mu = vec3(MU), *sig = mat3(SIGMA);
  d2r_tensor *yhat = draws(r, m, s, N), *y = draws(r, mu, sig, N);
  double y0[3] = {0.3, 0.1, -0.4};
  d2r_tensor *yf = vec3(y0);
  d2r_tensor *yf2 = d2r_unsqueeze(yf, 0);
  d2r_tensor *yh3 = d2r_unsqueeze(yhat, 0);
  expect_mc("E r_U(yhat, y) for a fixed y",
            item(d2r_theory_expected_reward(m, s, yf, U)),
            d2r_mahalanobis_reward(yh3, yf2, U));
  expect_mc("E r_U(yhat, y), y ~ q",
            item(d2r_theory_expected_reward_data(m, s, mu, sig, U)),
            d2r_mahalanobis_reward(yhat, y, U));
  /* A batch of targets [N, n] gives one exact value per target; their
   * average is the data-averaged value up to the spread of y. */
  d2r_tensor *per = d2r_theory_expected_reward(m, s, y, U);
  cr_assert(per, "%s", d2r_error());
  cr_expect_eq(d2r_ndim(per), 1);
  expect_mc("mean over y of E r_U(yhat, y)",
            item(d2r_theory_expected_reward_data(m, s, mu, sig, U)), per);
  d2r_release(m), d2r_release(s), d2r_release(U), d2r_release(mu);
  d2r_release(sig), d2r_release(yhat), d2r_release(y), d2r_release(yf);
  d2r_release(yf2), d2r_release(yh3);
  d2r_rng_free(r);
}

/* log N(y; m, C) of the rows of y [N, n], as [N]. */
static d2r_tensor *log_density(d2r_tensor *m, d2r_tensor *c, d2r_tensor *y) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *l = d2r_keep(&s, d2r_cholesky(c));
  d2r_tensor *m2 = d2r_keep(&s, d2r_unsqueeze(m, 0));
  d2r_tensor *y3 = d2r_keep(&s, d2r_unsqueeze(y, 0));
  d2r_tensor *lp = d2r_keep(&s, d2r_mvn_log_prob(m2, l, y3,
                                                 D2R_REDUCE_SUM_DIMS));
  d2r_tensor *out = d2r_squeeze(lp, 0);
  d2r_scope_end(&s);
  return out;
}

Test(theory, kl_cross_entropy_entropy_monte_carlo) {
  /* N = 200000 draws from each Gaussian. */
  const int64_t N = 200000;
  d2r_rng *r = d2r_rng_new(32);
  d2r_tensor *m = vec3(M), *s = mat3(S), *mu = vec3(MU), *sig = mat3(SIGMA);
  d2r_tensor *yp = draws(r, m, s, N), *yq = draws(r, mu, sig, N);
  d2r_tensor *lpp = log_density(m, s, yp), *lqp = log_density(mu, sig, yp);
  d2r_tensor *lqq = log_density(mu, sig, yq), *lpq = log_density(m, s, yq);
  double kl_pq = item(d2r_theory_kl(m, s, mu, sig));
  double kl_qp = item(d2r_theory_kl(mu, sig, m, s));
  expect_mc("KL(p || q)", kl_pq, d2r_sub(lpp, lqp));
  expect_mc("KL(q || p)", kl_qp, d2r_sub(lqq, lpq));
  cr_expect(kl_pq > 0 && kl_qp > 0 && fabs(kl_pq - kl_qp) > 0.1,
            "KL %g and %g", kl_pq, kl_qp);
  cr_expect(fabs(item(d2r_theory_kl(m, s, m, s))) < 1e-12);
  expect_mc("cross-entropy E_q[-log p]",
            item(d2r_theory_cross_entropy(mu, sig, m, s,
                                          D2R_REDUCE_SUM_DIMS)),
            d2r_neg(lpq));
  expect_mc("entropy of q",
            item(d2r_theory_entropy(sig, D2R_REDUCE_SUM_DIMS)),
            d2r_neg(lqq));
  double ce = item(d2r_theory_cross_entropy(mu, sig, m, s,
                                            D2R_REDUCE_SUM_DIMS));
  double cem = item(d2r_theory_cross_entropy(mu, sig, m, s,
                                             D2R_REDUCE_MEAN_DIMS));
  cr_expect(fabs(cem - ce / 3) < 1e-12);
  /* CE(q, p) = H(q) + KL(q || p). */
  double hq = item(d2r_theory_entropy(sig, D2R_REDUCE_SUM_DIMS));
  cr_expect(fabs(ce - hq - kl_qp) < 1e-12);
  d2r_release(m), d2r_release(s), d2r_release(mu), d2r_release(sig);
  d2r_release(yp), d2r_release(yq), d2r_release(lpp), d2r_release(lqp);
  d2r_release(lqq), d2r_release(lpq);
  d2r_rng_free(r);
}

Test(theory, inner_objective_by_hand_n1) {
  /* n = 1: J = -u (m - mu)^2 - u s - u sigma + (lambda/2) log(2 pi e s). */
  double u = 0.7, m = 0.3, mu = -0.2, s = 0.6, sig = 1.1, lam = 0.9;
  d2r_tensor *U = d2r_matrix(1, 1, &u), *mt = d2r_vector(1, &m);
  d2r_tensor *mut = d2r_vector(1, &mu), *st = d2r_matrix(1, 1, &s);
  d2r_tensor *sgt = d2r_matrix(1, 1, &sig);
  double want = -u * (m - mu) * (m - mu) - u * s - u * sig +
                lam / 2 * (LOG_2PI + 1 + log(s));
  double got = item(d2r_theory_inner_objective(mt, st, mut, sgt, U, lam));
  cr_expect(fabs(got - want) < 1e-12, "J %.12g, want %.12g", got, want);
  /* F(u) = (1/2) [log(2 pi) + log(lambda / (2 u)) + 2 u sigma / lambda]. */
  double fw = 0.5 * (LOG_2PI + log(lam / (2 * u)) + 2 * u * sig / lam);
  double f = item(d2r_theory_outer_objective(U, sgt, lam,
                                             D2R_REDUCE_SUM_DIMS));
  cr_expect(fabs(f - fw) < 1e-12, "F %.12g, want %.12g", f, fw);
  d2r_release(U), d2r_release(mt), d2r_release(mut), d2r_release(st);
  d2r_release(sgt);
}

/* ---- optimality -------------------------------------------------------- */

/* The gradient of f (0-d) with respect to the leaf x. */
static d2r_tensor *grad_of(d2r_tensor *f, d2r_tensor *x) {
  d2r_tensor *g = NULL;
  cr_assert(f, "%s", d2r_error());
  cr_assert_eq(d2r_autograd(1, &f, NULL, 1, &x, false, false, &g), 0, "%s",
               d2r_error());
  d2r_release(f);
  return g;
}

static double max_abs(d2r_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < d2r_numel(t); i++) m = fmax(m, fabs(el(t, i)));
  return m;
}

Test(theory, inner_optimum_is_stationary) {
  /* At m = mu, S = S*(U): dJ/dm = 0 and dJ/dS = 0 (autodiff); away from
   * it J is smaller along random directions. */
  const double lam = 0.6;
  d2r_tensor *U = mat3(UM), *mu = vec3(MU), *sig = mat3(SIGMA);
  d2r_tensor *m = vec3(MU), *s = d2r_theory_inner_cov(U, lam);
  d2r_set_requires_grad(m, true);
  d2r_set_requires_grad(s, true);
  d2r_tensor *gm = grad_of(d2r_theory_inner_objective(m, s, mu, sig, U,
                                                      lam), m);
  d2r_tensor *gs = grad_of(d2r_theory_inner_objective(m, s, mu, sig, U,
                                                      lam), s);
  cr_expect(max_abs(gm) < 1e-12 && max_abs(gs) < 1e-12, "|dJ/dm| %g, "
            "|dJ/dS| %g", max_abs(gm), max_abs(gs));
  double j0 = item(d2r_theory_inner_objective(m, s, mu, sig, U, lam));
  d2r_rng *r = d2r_rng_new(5);
  for (int k = 0; k < 5; k++) {
    /* m + 0.1 a, S + 0.05 sym(B) stays positive definite. */
    d2r_tensor *a = d2r_rand_normal(r, 1, (int64_t[]){3}, 0, 0.1);
    d2r_tensor *b = d2r_rand_normal(r, 2, (int64_t[]){3, 3}, 0, 0.05);
    d2r_tensor *m2 = d2r_add(m, a), *bs = d2r_sym(b);
    d2r_tensor *s2 = d2r_add(s, bs);
    double j = item(d2r_theory_inner_objective(m2, s2, mu, sig, U, lam));
    cr_expect(j < j0, "J %.9g at a perturbed point, %.9g at the optimum",
              j, j0);
    d2r_release(a), d2r_release(b), d2r_release(m2), d2r_release(bs);
    d2r_release(s2);
  }
  d2r_release(U), d2r_release(mu), d2r_release(sig), d2r_release(m);
  d2r_release(s), d2r_release(gm), d2r_release(gs);
  d2r_rng_free(r);
}

Test(theory, outer_objective_minimised_at_u_star) {
  const double lam = 0.6;
  d2r_tensor *sig = mat3(SIGMA), *mu = vec3(MU), *U = mat3(UM);
  /* F(U) is the cross-entropy of the data under N(mu, S*(U)). */
  d2r_tensor *su = d2r_theory_inner_cov(U, lam);
  double f = item(d2r_theory_outer_objective(U, sig, lam,
                                             D2R_REDUCE_MEAN_DIMS));
  double ce = item(d2r_theory_cross_entropy(mu, sig, mu, su,
                                            D2R_REDUCE_MEAN_DIMS));
  cr_expect(fabs(f - ce) < 1e-12, "F %.12g, CE %.12g", f, ce);
  /* Its gradient (1/2) (-U^-1 + (2/lambda) Sigma), by autodiff, at U. */
  d2r_set_requires_grad(U, true);
  d2r_tensor *g = grad_of(d2r_theory_outer_objective(U, sig, lam,
                                                     D2R_REDUCE_SUM_DIMS),
                          U);
  d2r_tensor *ui = d2r_inverse(U);
  for (int i = 0; i < 9; i++) {
    double want = 0.5 * (-el(ui, i) + 2 / lam * SIGMA[i]);
    cr_expect(fabs(el(g, i) - want) < 1e-10, "dF/dU[%d] %g, want %g", i,
              el(g, i), want);
  }
  cr_expect(max_abs(g) > 0.1);
  /* At U* = (lambda/2) Sigma^-1 it vanishes, and F grows along random
   * symmetric directions D (both signs, two step sizes). */
  d2r_tensor *us = d2r_theory_optimal_reward(sig, lam);
  d2r_set_requires_grad(us, true);
  d2r_tensor *g0 = grad_of(d2r_theory_outer_objective(us, sig, lam,
                                                      D2R_REDUCE_SUM_DIMS),
                           us);
  cr_expect(max_abs(g0) < 1e-12, "|dF/dU| at U* = %g", max_abs(g0));
  double f0 = item(d2r_theory_outer_objective(us, sig, lam,
                                              D2R_REDUCE_SUM_DIMS));
  /* The minimum value is the data's own entropy: S*(U*) = Sigma. */
  cr_expect(fabs(f0 - item(d2r_theory_entropy(sig, D2R_REDUCE_SUM_DIMS)))
            < 1e-12);
  d2r_rng *r = d2r_rng_new(6);
  for (int k = 0; k < 4; k++) {
    d2r_tensor *b = d2r_rand_normal(r, 2, (int64_t[]){3, 3}, 0, 1);
    d2r_tensor *d = d2r_sym(b);
    for (int t = 0; t < 4; t++) {
      double step = (t % 2 ? -1 : 1) * (t < 2 ? 0.01 : 0.05);
      d2r_tensor *sd = d2r_muls(d, step);
      d2r_tensor *u2 = d2r_add(us, sd);
      double fk = item(d2r_theory_outer_objective(u2, sig, lam,
                                                  D2R_REDUCE_SUM_DIMS));
      cr_expect(fk > f0, "F %.12g at U* + %g D, %.12g at U*", fk, step, f0);
      d2r_release(sd), d2r_release(u2);
    }
    d2r_release(b), d2r_release(d);
  }
  d2r_release(sig), d2r_release(mu), d2r_release(U), d2r_release(su);
  d2r_release(g), d2r_release(ui), d2r_release(us), d2r_release(g0);
  d2r_rng_free(r);
}

Test(theory, isotropic_and_diagonal_optima) {
  /* Within U = u I the minimiser is u* = lambda n / (2 tr Sigma); within
   * diagonal U, u_i* = lambda / (2 Sigma_ii): dF/du = 0 there. */
  const double lam = 1.3;
  d2r_tensor *sig = mat3(SIGMA), *eye = d2r_eye(3);
  double tr = SIGMA[0] + SIGMA[4] + SIGMA[8];
  d2r_tensor *u = d2r_scalar(lam * 3 / (2 * tr));
  d2r_set_requires_grad(u, true);
  d2r_tensor *U = d2r_mul(eye, u);
  d2r_tensor *gu = grad_of(d2r_theory_outer_objective(U, sig, lam,
                                                      D2R_REDUCE_SUM_DIMS),
                           u);
  cr_expect(fabs(d2r_item(gu)) < 1e-12, "dF/du = %g", d2r_item(gu));
  double dv[3] = {lam / (2 * SIGMA[0]), lam / (2 * SIGMA[4]),
                  lam / (2 * SIGMA[8])};
  d2r_tensor *dd = d2r_vector(3, dv);
  d2r_set_requires_grad(dd, true);
  d2r_tensor *UD = d2r_diag(dd);
  d2r_tensor *gd = grad_of(d2r_theory_outer_objective(UD, sig, lam,
                                                      D2R_REDUCE_SUM_DIMS),
                           dd);
  cr_expect(max_abs(gd) < 1e-12, "|dF/du_i| = %g", max_abs(gd));
  d2r_release(sig), d2r_release(eye), d2r_release(u), d2r_release(U);
  d2r_release(gu), d2r_release(dd), d2r_release(UD), d2r_release(gd);
}

/* ---- gradients against finite differences ------------------------------ */

static d2r_tensor *outer_op(d2r_tensor **in) {
  return d2r_theory_outer_objective(in[0], in[1], 0.7, D2R_REDUCE_SUM_DIMS);
}

static d2r_tensor *kl_op(d2r_tensor **in) {
  return d2r_theory_kl(in[0], in[1], in[2], in[3]);
}

static d2r_tensor *ce_op(d2r_tensor **in) {
  return d2r_theory_cross_entropy(in[0], in[1], in[2], in[3],
                                  D2R_REDUCE_MEAN_DIMS);
}

static d2r_tensor *inner_op(d2r_tensor **in) {
  double mu[3] = {1, -0.5, 2};
  d2r_tensor *m = d2r_vector(3, mu), *sig = d2r_matrix(3, 3, SIGMA);
  d2r_tensor *j = d2r_theory_inner_objective(in[0], in[1], m, sig, in[2],
                                             0.8);
  d2r_release(m), d2r_release(sig);
  return j;
}

static d2r_tensor *inner_cov_op(d2r_tensor **in) {
  return d2r_theory_inner_cov(in[0], 0.8);
}

static d2r_tensor *reward_op(d2r_tensor **in) {
  return d2r_theory_expected_reward(in[0], in[1], in[2], in[3]);
}

Test(theory, gradients) {
  /* First and second derivatives in every tensor argument (the matrices
   * are perturbed entrywise: the functions read symmetric parts or
   * lower triangles, and their gradients are those of what they read). */
  d2r_tensor *a[2] = {mat3(UM), mat3(SIGMA)};
  gradcheck("outer_objective", outer_op, 2, a, 1e-6);
  d2r_tensor *b[4] = {vec3(M), mat3(S), vec3(MU), mat3(SIGMA)};
  gradcheck("kl", kl_op, 4, b, 1e-6);
  gradcheck("cross_entropy", ce_op, 4, b, 1e-6);
  d2r_tensor *c[3] = {vec3(M), mat3(S), mat3(UM)};
  gradcheck("inner_objective", inner_op, 3, c, 1e-6);
  gradcheck("inner_cov", inner_cov_op, 1, c + 2, 1e-6);
  d2r_tensor *y = d2r_matrix(2, 3, (double[]){0.3, 0.1, -0.4, 1, 2, 0});
  d2r_tensor *e[4] = {vec3(M), mat3(S), y, mat3(UM)};
  gradcheck("expected_reward", reward_op, 4, e, 1e-6);
  for (int i = 0; i < 4; i++) {
    if (i < 2) d2r_release(a[i]);
    if (i < 3) d2r_release(c[i]);
    d2r_release(b[i]), d2r_release(e[i]);
  }
}

Test(theory, errors) {
  d2r_tensor *U = mat3(UM), *sig = mat3(SIGMA), *m = vec3(M);
  double nd[9] = {1, 2, 0, 2, 1, 0, 0, 0, 1};
  d2r_tensor *bad = mat3(nd);
  expect_error(d2r_theory_inner_cov(U, 0), "lambda");
  expect_error(d2r_theory_inner_cov(bad, 1), "theory_inner_cov: U:");
  expect_error(d2r_theory_outer_objective(bad, sig, 1, D2R_REDUCE_SUM_DIMS),
               "U");
  expect_error(d2r_theory_outer_objective(U, sig, 1, D2R_REDUCE_NONE),
               "reduce");
  expect_error(d2r_theory_expected_reward(m, sig, m, m), "U must be");
  expect_error(d2r_theory_kl(m, sig, sig, sig), "m2 must be");
  d2r_fail("earlier");
  cr_expect_null(d2r_theory_kl(NULL, sig, m, sig));
  cr_expect_str_eq(d2r_error(), "earlier");
  d2r_release(U), d2r_release(sig), d2r_release(m), d2r_release(bad);
}

/* ---- the full plug-in reward ------------------------------------------- */

Test(closed_form_full, from_data) {
  const int64_t N = 500;
  d2r_rng *r = d2r_rng_new(40);
  d2r_tensor *mu = vec3(MU), *sig = mat3(SIGMA);
  d2r_tensor *y = draws(r, mu, sig, N);
  d2r_tensor *c = d2r_covariance(y);
  double cond = 0;
  d2r_tensor *u = d2r_reward_full(y, 0.7, 0, 0, &cond);
  cr_assert(u, "%s", d2r_error());
  cr_expect(cond > 1 && cond < 100, "condition estimate %g", cond);
  /* U Sigma_hat = (lambda / 2) I, and U is symmetric. */
  d2r_tensor *uc = d2r_matmul(u, c);
  for (int i = 0; i < 9; i++) {
    cr_expect(fabs(el(uc, i) - (i % 4 == 0 ? 0.35 : 0)) < 1e-12);
    cr_expect_eq(el(u, i), el(u, 3 * (i % 3) + i / 3));
  }
  /* A ridge adds to the diagonal before the inversion. */
  d2r_tensor *ur = d2r_reward_full(y, 0.7, 0.5, 0, NULL);
  d2r_tensor *e = d2r_eye(3), *re = d2r_muls(e, 0.5), *cr = d2r_add(c, re);
  d2r_tensor *urc = d2r_matmul(ur, cr);
  for (int i = 0; i < 9; i++)
    cr_expect(fabs(el(urc, i) - (i % 4 == 0 ? 0.35 : 0)) < 1e-12);
  d2r_release(mu), d2r_release(sig), d2r_release(y), d2r_release(c);
  d2r_release(u), d2r_release(uc), d2r_release(ur), d2r_release(e);
  d2r_release(re), d2r_release(cr), d2r_release(urc);
  d2r_rng_free(r);
}

Test(closed_form_full, singular_and_ill_conditioned) {
  double cond = 0;
  /* Two targets in three dimensions: a rank-1 covariance. */
  d2r_tensor *few = d2r_matrix(2, 3, (double[]){1, 2, 3, 2, 0, 1});
  expect_error(d2r_reward_full(few, 1, 0, 0, &cond), "singular");
  cr_expect(isinf(cond), "cond %g", cond);
  cr_expect(strstr(d2r_error(), "ridge"), "%s", d2r_error());
  /* A ridge makes it invertible. */
  d2r_tensor *u = d2r_reward_full(few, 1, 0.1, 0, &cond);
  cr_expect(u != NULL && isfinite(cond), "%s", d2r_error());
  d2r_release(u);
  /* A third column that is the sum of the others up to 1e-7: positive
   * definite, but with a condition estimate far above 1e10. */
  const int64_t N = 50;
  double v[150];
  d2r_rng *r = d2r_rng_new(41);
  for (int i = 0; i < N; i++) {
    v[3 * i] = d2r_rng_normal(r);
    v[3 * i + 1] = d2r_rng_normal(r);
    v[3 * i + 2] = v[3 * i] + v[3 * i + 1] + 1e-7 * d2r_rng_normal(r);
  }
  d2r_tensor *y = d2r_matrix(N, 3, v);
  expect_error(d2r_reward_full(y, 1, 0, 0, &cond), "ill-conditioned");
  cr_expect(cond > 1e10 && isfinite(cond), "cond %g", cond);
  cr_expect(strstr(d2r_error(), "condition estimate"), "%s", d2r_error());
  /* A looser max_cond accepts it; a ridge fixes it. */
  u = d2r_reward_full(y, 1, 0, 1e20, &cond);
  cr_expect(u != NULL, "%s", d2r_error());
  d2r_release(u);
  u = d2r_reward_full(y, 1, 1e-3, 0, &cond);
  cr_expect(u != NULL && cond < 1e5, "%s (cond %g)", d2r_error(), cond);
  d2r_release(u);
  /* A constant dimension. */
  double k[8] = {1, 5, 2, 5, 3, 5, 4, 5};
  d2r_tensor *yc = d2r_matrix(4, 2, k);
  expect_error(d2r_reward_full(yc, 1, 0, 0, NULL), "not positive definite");
  expect_error(d2r_reward_full(yc, 0, 0, 0, NULL), "lambda");
  expect_error(d2r_reward_full(yc, 1, -1, 0, NULL), "ridge");
  expect_error(d2r_reward_full_from_cov(few, 1, 0, 0, &cond), "[n, n]");
  cr_expect(isnan(cond));
  d2r_release(few), d2r_release(y), d2r_release(yc);
  d2r_rng_free(r);
}

/* ---- PG training ------------------------------------------------------- */

/*
 * One input (x = 1 for every row), K targets y_k ~ N(mu, C) with n = 2;
 * batch = the K pairs (x, y_k), G = 5 draws each, reward r_U(yhat, y_k),
 * no transform and no baseline, per-dimension log-probabilities and
 * entropies, lambda = 0.5, Adam lr 0.03 for 400 steps then 0.003 for
 * 800.  The averaged reward is maximised with entropy at mean ybar and
 * covariance (lambda / 2) U^-1, which for U* from the targets is their
 * covariance.
 */
typedef struct {
  double mean[2], cov[4];  /* the policy's at the end */
  double ymean[2], ycov[4];  /* the targets' (unbiased covariance) */
} fit;

static const double LAMBDA = 0.5;

/* The targets: mu = (2, -1); C = L L^T with L = [0.6 0; c 1.2]. */
static d2r_tensor *targets(d2r_rng *r, int64_t K, double c) {
  double v[400];
  for (int64_t k = 0; k < K; k++) {
    double e0 = d2r_rng_normal(r), e1 = d2r_rng_normal(r);
    v[2 * k] = 2 + 0.6 * e0;
    v[2 * k + 1] = -1 + c * e0 + 1.2 * e1;
  }
  return d2r_matrix(K, 2, v);
}

static void train(d2r_policy *p, d2r_rng *r, d2r_tensor *y, d2r_tensor *U,
                  fit *out) {
  int64_t K = d2r_dim(y, 0);
  d2r_adam_config ac = d2r_adam_defaults();
  ac.lr = 0.03;
  d2r_optim *o = d2r_adam_new(d2r_policy_nparams(p), d2r_policy_params(p),
                              &ac);
  cr_assert(o, "%s", d2r_error());
  d2r_tensor *x = d2r_ones(2, (int64_t[]){K, 1});
  for (int step = 0; step < 1200; step++) {
    if (step == 400) d2r_optim_set_lr(o, 0.003);
    d2r_pdist d = D2R_PDIST_INIT;
    cr_assert_eq(d2r_policy_dist(p, x, &d), 0, "%s", d2r_error());
    d2r_scope s = D2R_SCOPE_INIT;
    d2r_tensor *yh = d2r_keep(&s, d2r_pdist_sample(r, &d, 5));
    d2r_tensor *rw = d2r_keep(&s, d2r_mahalanobis_reward(yh, y, U));
    d2r_tensor *lp = d2r_keep(&s, d2r_pdist_log_prob(&d, yh,
                                                     D2R_REDUCE_MEAN_DIMS));
    d2r_tensor *h = d2r_keep(&s, d2r_pdist_entropy(&d,
                                                   D2R_REDUCE_MEAN_DIMS));
    d2r_tensor *loss = d2r_keep(&s, d2r_pg_surrogate(lp, rw, h, LAMBDA,
                                                     NULL, NULL));
    cr_assert(loss, "step %d: %s", step, d2r_error());
    d2r_optim_zero_grad(o);
    cr_assert_eq(d2r_backward(loss), 0, "%s", d2r_error());
    cr_assert_eq(d2r_optim_step(o), 0, "%s", d2r_error());
    d2r_scope_end(&s);
    d2r_pdist_clear(&d);
  }
  d2r_pdist d = D2R_PDIST_INIT;
  cr_assert_eq(d2r_policy_dist(p, x, &d), 0);
  d2r_tensor *cov = d2r_pdist_covariance(&d);
  d2r_tensor *yc = d2r_covariance(y), *ym = d2r_mean(y, 0, false);
  for (int i = 0; i < 4; i++) {
    out->cov[i] = el(cov, i);
    out->ycov[i] = el(yc, i);
  }
  for (int i = 0; i < 2; i++) {
    out->mean[i] = el(d.mean, i);
    out->ymean[i] = el(ym, i);
  }
  d2r_release(cov), d2r_release(yc), d2r_release(ym), d2r_release(x);
  d2r_pdist_clear(&d);
  d2r_optim_free(o);
}

/* Means within 0.1 (a sixth of the smallest data std), standard
 * deviations within 8%, and (full) the correlation within 0.08. */
static void expect_matches_data(const fit *f, bool full, const char *what) {
  for (int i = 0; i < 2; i++) {
    cr_expect(fabs(f->mean[i] - f->ymean[i]) < 0.1, "%s: mean[%d] %.4g, "
              "data %.4g", what, i, f->mean[i], f->ymean[i]);
    double sd = sqrt(f->cov[3 * i]), ysd = sqrt(f->ycov[3 * i]);
    cr_expect(fabs(sd / ysd - 1) < 0.08, "%s: std[%d] %.4g, data %.4g",
              what, i, sd, ysd);
  }
  if (full) {
    double rho = f->cov[1] / sqrt(f->cov[0] * f->cov[3]);
    double yrho = f->ycov[1] / sqrt(f->ycov[0] * f->ycov[3]);
    cr_expect(fabs(rho - yrho) < 0.08, "%s: correlation %.4g, data %.4g",
              what, rho, yrho);
  }
}

static d2r_policy *gaussian(d2r_policy_kind kind, d2r_log_std_kind ls,
                            d2r_rng *r) {
  d2r_policy_config c = d2r_policy_config_default(kind, 1, 2);
  c.log_std = ls;
  d2r_policy *p = d2r_policy_new(&c, r);
  cr_assert(p, "%s", d2r_error());
  return p;
}

Test(pg_gaussian, u_star_recovers_the_data_diagonal) {
  /* Independent dimensions, the diagonal U* = lambda / (2 Sigma_ii), a
   * diagonal policy with a global log-std and with a log-std head. */
  d2r_rng *r = d2r_rng_new(1);
  d2r_tensor *y = targets(r, 100, 0);
  d2r_tensor *U = d2r_reward_diagonal(y, LAMBDA);
  fit f;
  d2r_policy *pg = gaussian(D2R_POLICY_GAUSSIAN, D2R_LOG_STD_GLOBAL, r);
  train(pg, r, y, U, &f);
  expect_matches_data(&f, false, "global log-std");
  d2r_policy *ph = gaussian(D2R_POLICY_GAUSSIAN, D2R_LOG_STD_HEAD, r);
  train(ph, r, y, U, &f);
  expect_matches_data(&f, false, "log-std head");
  d2r_policy_free(pg), d2r_policy_free(ph);
  d2r_release(y), d2r_release(U);
  d2r_rng_free(r);
}

Test(pg_gaussian, full_u_star_recovers_the_covariance) {
  /* Correlated dimensions (correlation 0.6), the full U* = (lambda / 2)
   * Sigma^-1 and a full-covariance policy. */
  d2r_rng *r = d2r_rng_new(2);
  d2r_tensor *y = targets(r, 100, 0.9);
  d2r_tensor *U = d2r_reward_full(y, LAMBDA, 0, 0, NULL);
  cr_assert(U, "%s", d2r_error());
  fit f;
  d2r_policy *p = gaussian(D2R_POLICY_FULL_GAUSSIAN, D2R_LOG_STD_HEAD, r);
  train(p, r, y, U, &f);
  expect_matches_data(&f, true, "full covariance");
  d2r_policy_free(p);
  d2r_release(y), d2r_release(U);
  d2r_rng_free(r);
}

Test(pg_gaussian, identity_reward_does_not) {
  /* U = I: the mean is still ybar, but every standard deviation goes to
   * sqrt(lambda / 2) = 0.5, whatever the data's (0.6 and 1.2 here). */
  d2r_rng *r = d2r_rng_new(3);
  d2r_tensor *y = targets(r, 100, 0);
  d2r_tensor *U = d2r_scalar(1);
  fit f;
  d2r_policy *p = gaussian(D2R_POLICY_GAUSSIAN, D2R_LOG_STD_GLOBAL, r);
  train(p, r, y, U, &f);
  for (int i = 0; i < 2; i++) {
    double sd = sqrt(f.cov[3 * i]), ysd = sqrt(f.ycov[3 * i]);
    cr_expect(fabs(f.mean[i] - f.ymean[i]) < 0.1, "mean[%d] %.4g, data "
              "%.4g", i, f.mean[i], f.ymean[i]);
    cr_expect(fabs(sd / sqrt(LAMBDA / 2) - 1) < 0.08, "std[%d] %.4g, want "
              "%.4g", i, sd, sqrt(LAMBDA / 2));
    if (i == 1)
      cr_expect(ysd - sd > 0.5, "std %.4g, data %.4g", sd, ysd);
  }
  d2r_policy_free(p);
  d2r_release(y), d2r_release(U);
  d2r_rng_free(r);
}

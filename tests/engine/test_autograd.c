/*
 * Gradient checks: every differentiable operation against central finite
 * differences, for first derivatives (the gradient of a random projection
 * of the output) and second derivatives (the Hessian-vector product of
 * that projection, built by differentiating the gradient).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "d2r/rng.h"
#include "d2r/tensor.h"
#include "gradcheck.h"

static d2r_tensor *randt(uint64_t seed, int nd, const int64_t *sh, double lo,
                         double hi) {
  d2r_rng *r = d2r_rng_new(seed);
  d2r_tensor *t = d2r_rand_uniform(r, nd, sh, lo, hi);
  d2r_rng_free(r);
  return t;
}

static void check1(const char *name, op_fn f, int nd, const int64_t *sh,
                   double lo, double hi) {
  d2r_tensor *in[1] = {randt(11, nd, sh, lo, hi)};
  gradcheck(name, f, 1, in, 1e-6);
  d2r_release(in[0]);
}

static void check2(const char *name, op_fn f, int nda, const int64_t *sha,
                   int ndb, const int64_t *shb, double lo, double hi) {
  d2r_tensor *in[2] = {randt(11, nda, sha, lo, hi),
                       randt(12, ndb, shb, lo, hi)};
  gradcheck(name, f, 2, in, 1e-6);
  d2r_release(in[0]), d2r_release(in[1]);
}

static const int64_t S23[2] = {2, 3}, S3[1] = {3}, S21[2] = {2, 1};
static const int64_t S234[3] = {2, 3, 4}, S34[2] = {3, 4}, S42[2] = {4, 2};

/* Unary ops. */
#define U(fn) static d2r_tensor *u_##fn(d2r_tensor **x) { return fn(x[0]); }
U(d2r_neg) U(d2r_exp) U(d2r_log) U(d2r_log1p) U(d2r_sqrt) U(d2r_square)
U(d2r_abs) U(d2r_tanh) U(d2r_sigmoid) U(d2r_relu) U(d2r_softplus)
U(d2r_sin) U(d2r_cos) U(d2r_sum_all) U(d2r_mean_all) U(d2r_max_all)
U(d2r_min_all) U(d2r_clone)

Test(gradcheck, unary) {
  check1("neg", u_d2r_neg, 2, S23, -2, 2);
  check1("exp", u_d2r_exp, 2, S23, -2, 2);
  check1("log", u_d2r_log, 2, S23, 0.5, 3);
  check1("log1p", u_d2r_log1p, 2, S23, -0.5, 3);
  check1("sqrt", u_d2r_sqrt, 2, S23, 0.5, 3);
  check1("square", u_d2r_square, 2, S23, -2, 2);
  check1("abs", u_d2r_abs, 2, S23, 0.2, 2);
  check1("tanh", u_d2r_tanh, 2, S23, -2, 2);
  check1("sigmoid", u_d2r_sigmoid, 2, S23, -3, 3);
  check1("relu", u_d2r_relu, 2, S23, 0.1, 2);
  check1("softplus", u_d2r_softplus, 2, S23, -3, 3);
  check1("sin", u_d2r_sin, 2, S23, -3, 3);
  check1("cos", u_d2r_cos, 2, S23, -3, 3);
  check1("sum_all", u_d2r_sum_all, 2, S23, -2, 2);
  check1("mean_all", u_d2r_mean_all, 2, S23, -2, 2);
  check1("max_all", u_d2r_max_all, 2, S23, -2, 2);
  check1("min_all", u_d2r_min_all, 2, S23, -2, 2);
  check1("clone", u_d2r_clone, 2, S23, -2, 2);
}

static d2r_tensor *u_abs_neg(d2r_tensor **x) {
  d2r_tensor *n = d2r_neg(x[0]), *a = d2r_abs(n);
  d2r_release(n);
  return a;
}
static d2r_tensor *u_adds(d2r_tensor **x) { return d2r_adds(x[0], 1.5); }
static d2r_tensor *u_muls(d2r_tensor **x) { return d2r_muls(x[0], -2.5); }
static d2r_tensor *u_pows(d2r_tensor **x) { return d2r_pows(x[0], 2.7); }
static d2r_tensor *u_rsubs(d2r_tensor **x) { return d2r_rsubs(x[0], 3); }
static d2r_tensor *u_clamp(d2r_tensor **x) {
  return d2r_clamp(x[0], -0.5, 0.5);
}

Test(gradcheck, scalar_ops) {
  check1("abs(neg)", u_abs_neg, 2, S23, 0.2, 2);
  check1("adds", u_adds, 2, S23, -2, 2);
  check1("muls", u_muls, 2, S23, -2, 2);
  check1("pows", u_pows, 2, S23, 0.5, 2);
  check1("rsubs", u_rsubs, 2, S23, -2, 2);
  /* Away from the clamp's corners. */
  double vals[6] = {-1.3, -0.2, 0.1, 0.3, 0.9, 2.0};
  d2r_tensor *in[1] = {d2r_matrix(2, 3, vals)};
  gradcheck("clamp", u_clamp, 1, in, 1e-6);
  d2r_release(in[0]);
}

#define B(fn) \
  static d2r_tensor *b_##fn(d2r_tensor **x) { return fn(x[0], x[1]); }
B(d2r_add) B(d2r_sub) B(d2r_mul) B(d2r_div) B(d2r_pow) B(d2r_maximum)
B(d2r_minimum) B(d2r_matmul)

Test(gradcheck, binary_broadcast) {
  check2("add", b_d2r_add, 2, S23, 1, S3, -2, 2);
  check2("sub", b_d2r_sub, 2, S21, 2, S23, -2, 2);
  check2("mul", b_d2r_mul, 3, S234, 2, S34, -2, 2);
  check2("div", b_d2r_div, 2, S23, 2, S21, 0.5, 2);
  check2("pow", b_d2r_pow, 2, S23, 1, S3, 0.5, 2);
  check2("maximum", b_d2r_maximum, 2, S23, 2, S23, -2, 2);
  check2("minimum", b_d2r_minimum, 2, S23, 2, S23, -2, 2);
  check2("matmul", b_d2r_matmul, 2, S34, 2, S42, -2, 2);
  check2("matmul batched", b_d2r_matmul, 3, S234, 2, S42, -2, 2);
  int64_t a3[3] = {2, 3, 4}, b3[3] = {2, 4, 2}, v4[1] = {4};
  check2("matmul 3x3", b_d2r_matmul, 3, a3, 3, b3, -2, 2);
  check2("matmul vec", b_d2r_matmul, 2, S34, 1, v4, -2, 2);
}

static d2r_tensor *r_sum(d2r_tensor **x) { return d2r_sum(x[0], 1, false); }
static d2r_tensor *r_sumk(d2r_tensor **x) { return d2r_sum(x[0], 0, true); }
static d2r_tensor *r_mean(d2r_tensor **x) { return d2r_mean(x[0], -1, 0); }
static d2r_tensor *r_max(d2r_tensor **x) { return d2r_max(x[0], 1, false); }
static d2r_tensor *r_min(d2r_tensor **x) { return d2r_min(x[0], 0, true); }
static d2r_tensor *r_lse(d2r_tensor **x) {
  return d2r_logsumexp(x[0], 1, false);
}
static d2r_tensor *r_var(d2r_tensor **x) { return d2r_var(x[0], 1, 0, 1); }
static d2r_tensor *r_lsm(d2r_tensor **x) { return d2r_log_softmax(x[0], 1); }
static d2r_tensor *r_sm(d2r_tensor **x) { return d2r_softmax(x[0], -1); }
static d2r_tensor *r_sumto(d2r_tensor **x) {
  int64_t sh[2] = {1, 4};
  return d2r_sum_to(x[0], 2, sh);
}

Test(gradcheck, reductions) {
  check1("sum", r_sum, 3, S234, -2, 2);
  check1("sum keepdim", r_sumk, 3, S234, -2, 2);
  check1("mean", r_mean, 3, S234, -2, 2);
  check1("max", r_max, 3, S234, -2, 2);
  check1("min", r_min, 3, S234, -2, 2);
  check1("logsumexp", r_lse, 3, S234, -2, 2);
  check1("var", r_var, 3, S234, -2, 2);
  check1("log_softmax", r_lsm, 2, S34, -2, 2);
  check1("softmax", r_sm, 2, S34, -2, 2);
  check1("sum_to", r_sumto, 3, S234, -2, 2);
}

static d2r_tensor *v_reshape(d2r_tensor **x) {
  int64_t sh[2] = {4, -1};
  return d2r_reshape(x[0], 2, sh);
}
static d2r_tensor *v_transpose(d2r_tensor **x) {
  /* Multiply so that the strided view feeds a computation. */
  d2r_tensor *t = d2r_transpose(x[0], 0, 2);
  d2r_tensor *y = d2r_square(t);
  d2r_release(t);
  return y;
}
static d2r_tensor *v_slice(d2r_tensor **x) {
  d2r_tensor *t = d2r_slice(x[0], 2, 1, 4, 2);
  d2r_tensor *y = d2r_exp(t);
  d2r_release(t);
  return y;
}
static d2r_tensor *v_expand(d2r_tensor **x) {
  int64_t sh[3] = {5, 2, 3};
  d2r_tensor *e = d2r_expand(x[0], 3, sh);
  d2r_tensor *y = d2r_square(e);
  d2r_release(e);
  return y;
}
static d2r_tensor *v_unsq(d2r_tensor **x) {
  d2r_tensor *u = d2r_unsqueeze(x[0], 1);
  d2r_tensor *y = d2r_squeeze(u, 1);
  d2r_tensor *z = d2r_mul(y, y);
  d2r_release(u), d2r_release(y);
  return z;
}
static d2r_tensor *v_take(d2r_tensor **x) {
  double ix[4] = {2, 0, 2, 1};
  d2r_tensor *idx = d2r_vector(4, ix);
  d2r_tensor *r = d2r_take_rows(x[0], idx);
  d2r_tensor *y = d2r_square(r);
  d2r_release(idx), d2r_release(r);
  return y;
}
static d2r_tensor *v_index_add(d2r_tensor **x) {
  double ix[3] = {1, 1, 0};
  d2r_tensor *idx = d2r_vector(3, ix);
  d2r_tensor *r = d2r_index_add_rows(2, idx, x[0]);
  d2r_tensor *y = d2r_square(r);
  d2r_release(idx), d2r_release(r);
  return y;
}
static d2r_tensor *v_gather(d2r_tensor **x) {
  double ix[6] = {0, 2, 2, 1, 1, 1};
  d2r_tensor *idx = d2r_matrix(2, 3, ix);
  d2r_tensor *r = d2r_gather(x[0], 1, idx);
  d2r_tensor *y = d2r_square(r);
  d2r_release(idx), d2r_release(r);
  return y;
}
static d2r_tensor *v_scatter(d2r_tensor **x) {
  double ix[6] = {0, 2, 2, 1, 1, 1};
  d2r_tensor *idx = d2r_matrix(2, 3, ix);
  int64_t sh[2] = {2, 4};
  d2r_tensor *r = d2r_scatter_add(2, sh, 1, idx, x[0]);
  d2r_tensor *y = d2r_square(r);
  d2r_release(idx), d2r_release(r);
  return y;
}
static d2r_tensor *v_cat(d2r_tensor **x) {
  d2r_tensor *sq = d2r_square(x[1]);
  d2r_tensor *parts[4] = {x[0], sq, x[0], x[1]};
  d2r_tensor *c = d2r_cat(4, parts, 1);
  d2r_tensor *y = d2r_mul(c, c);
  d2r_release(sq), d2r_release(c);
  return y;
}
static d2r_tensor *v_where(d2r_tensor **x) {
  double m[6] = {1, 0, 1, 0, 0, 1};
  d2r_tensor *c = d2r_matrix(2, 3, m);
  d2r_tensor *w = d2r_where(c, x[0], x[1]);
  d2r_tensor *y = d2r_mul(w, w);
  d2r_release(c), d2r_release(w);
  return y;
}

Test(gradcheck, views_and_indexing) {
  check1("reshape", v_reshape, 3, S234, -2, 2);
  check1("transpose", v_transpose, 3, S234, -2, 2);
  check1("slice", v_slice, 3, S234, -2, 2);
  check1("expand", v_expand, 2, S23, -2, 2);
  check1("unsqueeze", v_unsq, 2, S23, -2, 2);
  check1("take_rows", v_take, 2, S34, -2, 2);
  check1("index_add_rows", v_index_add, 2, S34, -2, 2);
  check1("gather", v_gather, 2, S34, -2, 2);
  check1("scatter_add", v_scatter, 2, S23, -2, 2);
  check2("cat", v_cat, 2, S23, 2, S21, -2, 2);
  check2("where", v_where, 2, S23, 1, S3, -2, 2);
}

/* A composite: a two-layer network with a log-softmax loss. */
static d2r_tensor *mlp_loss(d2r_tensor **x) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *h = d2r_keep(&s, d2r_tanh(d2r_keep(&s, d2r_add(
      d2r_keep(&s, d2r_matmul(x[0], x[1])), x[2]))));
  d2r_tensor *lp = d2r_keep(&s, d2r_log_softmax(h, 1));
  d2r_tensor *out = d2r_mean_all(lp);
  d2r_scope_end(&s);
  return out;
}

Test(gradcheck, composite_network) {
  int64_t sx[2] = {5, 3}, sw[2] = {3, 4}, sb[1] = {4};
  d2r_tensor *in[3] = {randt(1, 2, sx, -1, 1), randt(2, 2, sw, -1, 1),
                       randt(3, 1, sb, -1, 1)};
  gradcheck("mlp", mlp_loss, 3, in, 1e-6);
  for (int i = 0; i < 3; i++) d2r_release(in[i]);
}

/*
 * The Gaussian log-density is one fused op (dist.c) with two backward
 * rules: a single loop for plain gradients and a graph of differentiable
 * ops under create_graph.  Every layout it accepts (log_std per row,
 * shared [n] or [1, n]; y with or without draws; each reduction) is
 * checked against finite differences to second order, and the loop's
 * gradients against the graph's.
 */
#include "d2r/dist.h"

static d2r_reduce lp_reduce;
static d2r_tensor *gauss_lp(d2r_tensor **x) {
  return d2r_gaussian_log_prob(x[0], x[1], x[2], lp_reduce);
}

Test(gradcheck, gaussian_log_prob_layouts) {
  const int64_t mean_sh[2] = {2, 3}, row_sh[2] = {1, 3}, vec_sh[1] = {3};
  const int64_t draws_sh[3] = {2, 4, 3};
  struct {
    int lnd;
    const int64_t *lsh;
    int ynd;
    const int64_t *ysh;
  } layout[] = {{2, mean_sh, 3, draws_sh}, {1, vec_sh, 3, draws_sh},
                {2, row_sh, 3, draws_sh}, {2, mean_sh, 2, mean_sh},
                {1, vec_sh, 2, mean_sh}};
  d2r_reduce reduces[3] = {D2R_REDUCE_NONE, D2R_REDUCE_MEAN_DIMS,
                           D2R_REDUCE_SUM_DIMS};
  for (size_t c = 0; c < sizeof layout / sizeof layout[0]; c++) {
    for (int r = 0; r < 3; r++) {
      lp_reduce = reduces[r];
      d2r_tensor *in[3] = {randt(21, 2, mean_sh, -1, 1),
                           randt(22, layout[c].lnd, layout[c].lsh, -0.5, 0.5),
                           randt(23, layout[c].ynd, layout[c].ysh, -2, 2)};
      char name[64];
      snprintf(name, sizeof name, "gaussian_log_prob layout %zu reduce %d",
               c, r);
      gradcheck(name, gauss_lp, 3, in, 1e-6);
      /* Plain gradients (one loop) against the graph's. */
      d2r_tensor *y = gauss_lp(in);
      d2r_tensor *w = randt(24, d2r_ndim(y), d2r_shape(y), -1, 1);
      d2r_tensor *gf[3] = {0}, *gg[3] = {0};
      cr_assert_eq(d2r_autograd(1, &y, &w, 3, in, false, false, gf), 0,
                   "%s", d2r_error());
      cr_assert_eq(d2r_autograd(1, &y, &w, 3, in, true, false, gg), 0,
                   "%s", d2r_error());
      for (int i = 0; i < 3; i++) {
        cr_assert(d2r_same_shape(gf[i], gg[i]), "%s: input %d shape", name,
                  i + 1);
        d2r_tensor *a = d2r_contiguous(gf[i]), *b = d2r_contiguous(gg[i]);
        for (int64_t k = 0; k < d2r_numel(a); k++)
          cr_expect(fabs(d2r_data(a)[k] - d2r_data(b)[k]) < 1e-12,
                    "%s: input %d [%lld]: loop %.15g, graph %.15g", name,
                    i + 1, (long long)k, d2r_data(a)[k], d2r_data(b)[k]);
        d2r_release(a), d2r_release(b);
        d2r_release(gf[i]), d2r_release(gg[i]);
      }
      d2r_release(y), d2r_release(w);
      for (int i = 0; i < 3; i++) d2r_release(in[i]);
    }
  }
}

/* A mean and log-std that are strided column slices of one network
 * output, as a policy head makes them. */
static d2r_tensor *gauss_lp_sliced(d2r_tensor **x) {
  d2r_tensor *m = d2r_slice(x[0], 1, 0, 3, 1);
  d2r_tensor *l = d2r_slice(x[0], 1, 3, 6, 1);
  d2r_tensor *out = d2r_gaussian_log_prob(m, l, x[1], D2R_REDUCE_MEAN_DIMS);
  d2r_release(m), d2r_release(l);
  return out;
}

Test(gradcheck, gaussian_log_prob_strided_parameters) {
  const int64_t head_sh[2] = {2, 6}, draws_sh[3] = {2, 5, 3};
  d2r_tensor *in[2] = {randt(31, 2, head_sh, -0.5, 0.5),
                       randt(32, 3, draws_sh, -2, 2)};
  gradcheck("gaussian_log_prob sliced", gauss_lp_sliced, 2, in, 1e-6);
  d2r_release(in[0]), d2r_release(in[1]);
}

/*
 * The categorical log-probability is fused the same way (one loop each
 * way, a graph under create_graph): first and second derivatives in the
 * logits against finite differences, for contiguous logits and for a
 * strided column slice, and the loop's gradient against the graph's.
 */
static d2r_tensor *cat_samples;
static d2r_tensor *cat_lp(d2r_tensor **x) {
  return d2r_categorical_log_prob(x[0], cat_samples);
}
static d2r_tensor *cat_lp_sliced(d2r_tensor **x) {
  d2r_tensor *z = d2r_slice(x[0], 1, 1, 4, 1);
  d2r_tensor *out = d2r_categorical_log_prob(z, cat_samples);
  d2r_release(z);
  return out;
}

/* A fused op's one-pass backward (plain gradients) against its graph of
 * ops (create_graph): d(w . y)/dz both ways, within tol. */
static void expect_loop_as_graph(d2r_tensor *y, d2r_tensor *w, d2r_tensor *z,
                                 double tol) {
  d2r_tensor *gf = NULL, *gg = NULL;
  cr_assert_eq(d2r_autograd(1, &y, &w, 1, &z, false, false, &gf), 0, "%s",
               d2r_error());
  cr_assert_eq(d2r_autograd(1, &y, &w, 1, &z, true, false, &gg), 0, "%s",
               d2r_error());
  d2r_tensor *a = d2r_contiguous(gf), *b = d2r_contiguous(gg);
  for (int64_t k = 0; k < d2r_numel(z); k++)
    cr_expect(fabs(d2r_data(a)[k] - d2r_data(b)[k]) < tol,
              "[%lld]: loop %.17g, graph %.17g", (long long)k,
              d2r_data(a)[k], d2r_data(b)[k]);
  d2r_release(a), d2r_release(b), d2r_release(gf), d2r_release(gg);
}

Test(gradcheck, categorical_log_prob) {
  const int64_t sz[2] = {2, 3}, wide[2] = {2, 5}, ss[2] = {2, 4};
  const double smp[8] = {0, 2, 2, 1, 1, 0, 1, 1};
  cat_samples = d2r_from_data(2, ss, smp);
  d2r_tensor *z = randt(51, 2, sz, -2, 2), *zw = randt(52, 2, wide, -2, 2);
  gradcheck("categorical_log_prob", cat_lp, 1, &z, 1e-6);
  gradcheck("categorical_log_prob sliced", cat_lp_sliced, 1, &zw, 1e-6);
  d2r_tensor *y = cat_lp(&z), *w = randt(53, 2, ss, -1, 1);
  expect_loop_as_graph(y, w, z, 1e-12);
  d2r_release(y), d2r_release(w);
  d2r_release(z), d2r_release(zw), d2r_release(cat_samples);
}

/*
 * The categorical entropy is one node too: first and second derivatives
 * against finite differences (contiguous and sliced logits), the loop's
 * gradient against the graph's (1e-15), and the value against the op
 * chain it replaced (log_softmax, exp, mul, sum, neg) bit for bit.
 */
static d2r_tensor *cat_h(d2r_tensor **x) {
  return d2r_categorical_entropy(x[0]);
}
static d2r_tensor *cat_h_sliced(d2r_tensor **x) {
  d2r_tensor *z = d2r_slice(x[0], 1, 1, 4, 1);
  d2r_tensor *out = d2r_categorical_entropy(z);
  d2r_release(z);
  return out;
}

Test(gradcheck, categorical_entropy) {
  const int64_t sz[2] = {3, 4}, wide[2] = {2, 5}, b3 = 3;
  d2r_tensor *z = randt(61, 2, sz, -3, 3), *zw = randt(62, 2, wide, -2, 2);
  gradcheck("categorical_entropy", cat_h, 1, &z, 1e-6);
  gradcheck("categorical_entropy sliced", cat_h_sliced, 1, &zw, 1e-6);
  d2r_tensor *y = cat_h(&z), *w = randt(63, 1, &b3, -1, 1);
  expect_loop_as_graph(y, w, z, 1e-15);
  d2r_tensor *lp = d2r_log_softmax(z, 1), *p = d2r_exp(lp);
  d2r_tensor *plp = d2r_mul(p, lp), *sum = d2r_sum(plp, 1, false);
  d2r_tensor *chain = d2r_neg(sum);
  for (int64_t k = 0; k < 3; k++)
    cr_expect(d2r_data(y)[k] == d2r_data(chain)[k],
              "H[%lld]: fused %.17g, chain %.17g", (long long)k,
              d2r_data(y)[k], d2r_data(chain)[k]);
  d2r_release(lp), d2r_release(p), d2r_release(plp), d2r_release(sum);
  d2r_release(chain);
  d2r_release(y), d2r_release(w), d2r_release(z), d2r_release(zw);
}

/* x @ w + b as one op: first and second derivatives in x, w and b, and
 * the value against matmul plus a broadcast add. */
static d2r_tensor *addmm3(d2r_tensor **x) {
  return d2r_addmm(x[0], x[1], x[2]);
}

Test(gradcheck, addmm) {
  const int64_t sx[2] = {4, 3}, sw[2] = {3, 5}, sb[1] = {5};
  d2r_tensor *in[3] = {randt(41, 2, sx, -1, 1), randt(42, 2, sw, -1, 1),
                       randt(43, 1, sb, -1, 1)};
  gradcheck("addmm", addmm3, 3, in, 1e-6);
  d2r_tensor *a = d2r_addmm(in[0], in[1], in[2]);
  d2r_tensor *p = d2r_matmul(in[0], in[1]);
  d2r_tensor *b = d2r_add(p, in[2]);
  for (int64_t k = 0; k < 20; k++)
    cr_expect(fabs(d2r_data(a)[k] - d2r_data(b)[k]) < 1e-14,
              "addmm [%lld]: %.17g, want %.17g", (long long)k,
              d2r_data(a)[k], d2r_data(b)[k]);
  d2r_release(a), d2r_release(p), d2r_release(b);
  /* Shapes that do not fit are reported, not computed. */
  cr_expect_null(d2r_addmm(in[1], in[0], in[2]));
  cr_expect(strstr(d2r_error(), "addmm") != NULL, "%s", d2r_error());
  cr_expect_null(d2r_addmm(in[0], in[1], in[1]));
  for (int i = 0; i < 3; i++) d2r_release(in[i]);
}

/* relu(x @ w + b) as one op (a hidden layer): first and second
 * derivatives in x, w and b, and the values those of addmm then relu,
 * bit for bit, a NaN included. */
static d2r_tensor *addmm_relu3(d2r_tensor **x) {
  return d2r_addmm_relu(x[0], x[1], x[2]);
}

Test(gradcheck, addmm_relu) {
  const int64_t sx[2] = {4, 3}, sw[2] = {3, 5}, sb[1] = {5};
  d2r_tensor *in[3] = {randt(44, 2, sx, -1, 1), randt(45, 2, sw, -1, 1),
                       randt(46, 1, sb, -1, 1)};
  gradcheck("addmm_relu", addmm_relu3, 3, in, 1e-6);
  d2r_tensor *a = d2r_addmm_relu(in[0], in[1], in[2]);
  d2r_tensor *p = d2r_addmm(in[0], in[1], in[2]);
  d2r_tensor *r = d2r_relu(p);
  int zeros = 0;
  for (int64_t k = 0; k < 20; k++) {
    cr_expect(d2r_data(a)[k] == d2r_data(r)[k],
              "addmm_relu [%lld]: %.17g, want %.17g", (long long)k,
              d2r_data(a)[k], d2r_data(r)[k]);
    zeros += d2r_data(a)[k] == 0;
  }
  cr_expect(zeros > 0 && zeros < 20, "%d of 20 outputs cut by the relu",
            zeros);
  d2r_release(a), d2r_release(p), d2r_release(r);
  d2r_data(in[0])[0] = NAN;
  a = d2r_addmm_relu(in[0], in[1], in[2]);
  cr_expect(isnan(d2r_data(a)[0]), "a NaN goes through");
  d2r_release(a);
  cr_expect_null(d2r_addmm_relu(in[1], in[0], in[2]));
  cr_expect(strstr(d2r_error(), "addmm_relu") != NULL, "%s", d2r_error());
  for (int i = 0; i < 3; i++) d2r_release(in[i]);
}

/* A tensor a graph read, updated in place before the backward pass, makes
 * the pass fail naming the op (an input of mul, the index of gather, a
 * view of a base); untouched graphs and updates after the pass are
 * fine. */
Test(autograd, in_place_update_after_use) {
  double v[3] = {1, 2, 3}, idx[2] = {0, 2};
  d2r_tensor *w = d2r_vector(3, v), *c = d2r_vector(3, v);
  cr_assert_eq(d2r_set_requires_grad(w, true), 0);
  d2r_tensor *p = d2r_mul(w, c), *l = d2r_sum_all(p), *g = NULL;
  cr_assert_eq(d2r_fill_(c, 7), 0);
  cr_expect_neq(d2r_autograd(1, &l, NULL, 1, &w, false, false, &g), 0);
  cr_expect(strstr(d2r_error(), "input 2 (shape [3]) of mul was updated "
                   "in place"), "%s", d2r_error());
  d2r_release(g), g = NULL;
  d2r_release(p), d2r_release(l);

  int64_t at[1] = {1};
  d2r_tensor *i = d2r_vector(2, idx);
  d2r_tensor *gt = d2r_gather(w, 0, i), *l2 = d2r_sum_all(gt);
  cr_assert_eq(d2r_set_at(i, at, 1), 0);
  cr_expect_neq(d2r_autograd(1, &l2, NULL, 1, &w, false, false, &g), 0);
  cr_expect(strstr(d2r_error(), "index or mask (shape [2]) of gather"),
            "%s", d2r_error());
  d2r_release(g), g = NULL;
  d2r_release(gt), d2r_release(l2);

  d2r_tensor *base = d2r_vector(3, v);
  d2r_tensor *view = d2r_slice(base, 0, 0, 2, 1);
  d2r_tensor *ws = d2r_slice(w, 0, 0, 2, 1);
  d2r_tensor *q = d2r_mul(ws, view), *l3 = d2r_sum_all(q);
  cr_assert_eq(d2r_scale_(base, 2), 0);
  cr_expect_neq(d2r_autograd(1, &l3, NULL, 1, &w, false, false, &g), 0);
  d2r_release(g), g = NULL;
  d2r_release(q), d2r_release(l3);

  /* A fresh forward pass after the updates, then updates after its
   * backward pass: all fine. */
  d2r_tensor *q2 = d2r_mul(ws, view), *l4 = d2r_sum_all(q2);
  cr_expect_eq(d2r_autograd(1, &l4, NULL, 1, &w, false, false, &g), 0,
               "%s", d2r_error());
  cr_expect_eq(d2r_data(g)[0], 2.0);
  cr_assert_eq(d2r_fill_(base, 0), 0);
  d2r_release(g), d2r_release(q2), d2r_release(l4);
  d2r_release(base), d2r_release(view), d2r_release(ws);
  d2r_release(i), d2r_release(w), d2r_release(c);
}

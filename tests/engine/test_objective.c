/*
 * Criterion tests of objective.h: Mahalanobis rewards (vector and one-
 * hot) and their gradients in U, the likelihood losses, every reward
 * transform and baseline on a small example, the PG surrogate's value,
 * diagnostics and gradient against the REINFORCE formula and finite
 * differences, the pathwise surrogate, and error paths.  Each test
 * states the tolerance it compares with.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "test_util.h"
#include "d2r/dist.h"
#include "d2r/objective.h"
#include "d2r/rng.h"
#include "d2r/tensor.h"

/* 2 pi, spelled out: strict C11 has no M_PI. */
#define TWO_PI 6.283185307179586477

/* Temporaries of a test live in its scope `s`. */
#define K(x) d2r_keep(&s, (x))

static d2r_tensor *tensor2(int64_t r, int64_t c, const double *v)
{
  int64_t shape[2] = {r, c};
  return d2r_from_data(2, shape, v);
}

static d2r_tensor *tensor3(int64_t a, int64_t b, int64_t c, const double *v)
{
  int64_t shape[3] = {a, b, c};
  return d2r_from_data(3, shape, v);
}

static d2r_tensor *leaf(d2r_tensor *t)
{
  cr_assert_eq(d2r_set_requires_grad(t, true), 0, "%s", d2r_error());
  return t;
}


/* d out / d x for a scalar out (new reference). */
static d2r_tensor *grad_of(d2r_tensor *out, d2r_tensor *x)
{
  d2r_tensor *g = NULL;
  cr_assert_not_null(out, "%s", d2r_error());
  cr_assert_eq(d2r_autograd(1, &out, NULL, 1, &x, false, false, &g), 0,
               "%s", d2r_error());
  return g;
}

/* ---- Mahalanobis rewards --------------------------------------------- */

/* yhat [1, 2, 2] against y [1, 2]: differences d1 = (0.5, 1) and
 * d2 = (-0.5, -2). */
static const double YHAT[4] = {1, 2, 0, -1};
static const double YT[2] = {0.5, 1};
static const double UFULL[4] = {2, 0.5, 0.3, 1};
static const double UDIAG[2] = {3, 0.5};

/* By hand: u = 2: -2 (0.25 + 1), -2 (0.25 + 4); diag (3, 0.5):
 * -(0.75 + 0.5), -(0.75 + 2); full: d^T U d = 2 d0^2 + 0.8 d0 d1 + d1^2
 * = 1.9 and 5.3.  Tolerance 1e-12. */
Test(objective, mahalanobis_by_hand)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *yhat = K(tensor3(1, 2, 2, YHAT)), *y = K(tensor2(1, 2, YT));
  double ws[2] = {-2.5, -8.5}, wd[2] = {-1.25, -2.75}, wf[2] = {-1.9, -5.3};
  d2r_tensor *r = K(d2r_mahalanobis_reward(yhat, y, K(d2r_scalar(2.0))));
  cr_assert_eq(d2r_ndim(r), 2, "%s", d2r_error());
  expect_values(r, ws, 2, 1e-12, "scalar");
  double two = 2.0;  /* a one-element vector also means U = u I */
  expect_values(K(d2r_mahalanobis_reward(yhat, y, K(d2r_vector(1, &two)))),
                ws, 2, 1e-12, "[1]");
  expect_values(K(d2r_mahalanobis_reward(yhat, y, K(d2r_vector(2, UDIAG)))),
                wd, 2, 1e-12, "diagonal");
  expect_values(K(d2r_mahalanobis_reward(yhat, y, K(tensor2(2, 2, UFULL)))),
                wf, 2, 1e-12, "full");
  /* yhat [B, n] gives one reward per row: the first draw alone. */
  d2r_tensor *y2 = K(tensor2(1, 2, YHAT));
  d2r_tensor *r2 = K(d2r_mahalanobis_reward(y2, y, K(tensor2(2, 2, UFULL))));
  cr_assert_eq(d2r_ndim(r2), 1, "%s", d2r_error());
  expect_values(r2, wf, 1, 1e-12, "[B, n]");
  /* The same values when U carries a gradient (the graph of ops rather
   * than the one-pass loop of constant inputs). */
  expect_values(K(d2r_mahalanobis_reward(yhat, y,
                                         leaf(K(d2r_scalar(2.0))))),
                ws, 2, 1e-12, "scalar, differentiated");
  expect_values(K(d2r_mahalanobis_reward(yhat, y,
                                         leaf(K(d2r_vector(2, UDIAG))))),
                wd, 2, 1e-12, "diagonal, differentiated");
  d2r_scope_end(&s);
}

/* Gradients of sum_g r: in U, -sum_g d d^T (full), -sum_g d_i^2
 * (diagonal), -sum_g |d|^2 (scalar); in yhat, -(U + U^T) d.
 * Tolerance 1e-12. */
Test(objective, mahalanobis_gradients)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *yhat = K(leaf(tensor3(1, 2, 2, YHAT)));
  d2r_tensor *y = K(tensor2(1, 2, YT));
  d2r_tensor *uf = K(leaf(tensor2(2, 2, UFULL)));
  d2r_tensor *ud = K(leaf(d2r_vector(2, UDIAG)));
  d2r_tensor *us = K(leaf(d2r_scalar(2.0)));
  d2r_tensor *rf = K(d2r_sum_all(K(d2r_mahalanobis_reward(yhat, y, uf))));
  double gf[4] = {-0.5, -1.5, -1.5, -5}, gy[4] = {-2.8, -2.4, 3.6, 4.4};
  expect_values(K(grad_of(rf, uf)), gf, 4, 1e-12, "dU full");
  expect_values(K(grad_of(rf, yhat)), gy, 4, 1e-12, "dyhat full");
  d2r_tensor *rd = K(d2r_sum_all(K(d2r_mahalanobis_reward(yhat, y, ud))));
  double gd[2] = {-0.5, -5};
  expect_values(K(grad_of(rd, ud)), gd, 2, 1e-12, "dU diagonal");
  d2r_tensor *rs = K(d2r_sum_all(K(d2r_mahalanobis_reward(yhat, y, us))));
  double gs[1] = {-5.5};
  expect_values(K(grad_of(rs, us)), gs, 1, 1e-12, "du scalar");
  d2r_scope_end(&s);
}

/* Classes: C = 4, B = 3, G = 5, with right and wrong samples. */
static const double SMP[15] = {0, 1, 2, 3, 1, 2, 2, 0, 3, 1, 3, 0, 0, 1, 2};
static const double LAB[3] = {1, 2, 0};
static const double U4[16] = {2.0, 0.3, -0.2, 0.1, 0.5, 1.5, 0.4, 0.0,
                              0.1, -0.3, 3.0, 0.2, 0.0, 0.6, 0.25, 1.0};
static const double D4[4] = {0.5, 1, 2, 3};

/* U = beta I: -2 beta for a wrong class, 0 for the right one; exact. */
Test(objective, onehot_scalar_by_hand)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *smp = K(tensor2(3, 5, SMP)), *lab = K(d2r_vector(3, LAB));
  d2r_tensor *r = K(d2r_onehot_reward(smp, lab, 4, K(d2r_scalar(1.5))));
  double want[15];
  for (int i = 0; i < 15; i++)
    want[i] = SMP[i] == LAB[i / 5] ? 0.0 : -3.0;
  expect_values(r, want, 15, 0.0, "beta I");
  d2r_scope_end(&s);
}

/* The one-hot reward equals the vector reward on explicit one-hot
 * vectors, in value and in its gradient in U, for a scalar, a diagonal
 * and a non-symmetric full U.  Tolerance 1e-12. */
Test(objective, onehot_matches_vector_reward)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *smp = K(tensor2(3, 5, SMP)), *lab = K(d2r_vector(3, LAB));
  d2r_tensor *es = K(d2r_one_hot(smp, 4)), *ey = K(d2r_one_hot(lab, 4));
  d2r_tensor *us[3] = {K(leaf(d2r_scalar(0.7))), K(leaf(d2r_vector(4, D4))),
                       K(leaf(d2r_from_data(2, (int64_t[]){4, 4}, U4)))};
  for (int k = 0; k < 3; k++) {
    d2r_tensor *a = K(d2r_onehot_reward(smp, lab, 4, us[k]));
    d2r_tensor *b = K(d2r_mahalanobis_reward(es, ey, us[k]));
    cr_assert_not_null(b, "%s", d2r_error());
    d2r_tensor *cb = K(d2r_contiguous(b));
    expect_values(a, d2r_data(cb), 15, 1e-12, "reward");
    d2r_tensor *ga = K(grad_of(K(d2r_sum_all(a)), us[k]));
    d2r_tensor *gb = K(d2r_contiguous(K(grad_of(K(d2r_sum_all(b)),
                                                 us[k]))));
    expect_values(ga, d2r_data(gb), d2r_numel(gb), 1e-12, "dU");
  }
  d2r_scope_end(&s);
}

/* With U a constant the reward is one loop instead of the op chain: the
 * same values, bit for bit, for each kind of U, and the same checks of
 * samples and labels. */
Test(objective, onehot_constant_u_matches_graph)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *smp = K(tensor2(3, 5, SMP)), *lab = K(d2r_vector(3, LAB));
  int64_t sq[2] = {4, 4};
  d2r_tensor *cs[3] = {K(d2r_scalar(0.7)), K(d2r_vector(4, D4)),
                       K(d2r_from_data(2, sq, U4))};
  d2r_tensor *ls[3] = {K(leaf(d2r_scalar(0.7))), K(leaf(d2r_vector(4, D4))),
                       K(leaf(d2r_from_data(2, sq, U4)))};
  for (int k = 0; k < 3; k++) {
    d2r_tensor *a = K(d2r_onehot_reward(smp, lab, 4, cs[k]));
    d2r_tensor *b = K(d2r_contiguous(K(d2r_onehot_reward(smp, lab, 4,
                                                         ls[k]))));
    cr_assert_not_null(a, "%s", d2r_error());
    cr_assert(!d2r_requires_grad(a), "a constant U gives a constant");
    expect_values(a, d2r_data(b), 15, 0.0, "loop vs graph");
  }
  double frac[2] = {0, 0.5}, big[2] = {1, 4};
  expect_error(d2r_onehot_reward(K(tensor2(2, 1, frac)), K(d2r_vector(2,
               LAB)), 4, cs[0]), "samples: class index 0.5 at element 2");
  expect_error(d2r_onehot_reward(K(tensor2(2, 1, LAB)), K(d2r_vector(2,
               big)), 4, cs[2]), "labels: class index 4 at element 2");
  d2r_scope_end(&s);
}

/* An infinite entry off the diagonal of U: the reward is the same
 * whether U is differentiated or not (-(U00 + U22 - U02 - U20) = -2 for
 * a 0 drawn against label 2); and with anomaly detection on, the loop
 * reports an overflow from a finite U as the op chain does. */
Test(objective, onehot_infinite_entry_and_anomaly)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double u[9] = {1, INFINITY, 0, 0, 1, 0, 0, 0, 1}, smp[2] = {0, 2};
  double lab[1] = {2};
  int64_t sq[2] = {3, 3};
  d2r_tensor *sm = K(tensor2(1, 2, smp)), *lb = K(d2r_vector(1, lab));
  d2r_tensor *a = K(d2r_onehot_reward(sm, lb, 3, K(d2r_from_data(2, sq,
                                                                  u))));
  d2r_tensor *b = K(d2r_onehot_reward(sm, lb, 3, K(leaf(d2r_from_data(2,
                                                                sq, u)))));
  cr_assert(a && b, "%s", d2r_error());
  d2r_tensor *cb = K(d2r_contiguous(b));
  double want[2] = {-2, 0};
  expect_values(a, want, 2, 0.0, "constant U");
  expect_values(cb, want, 2, 0.0, "differentiated U");
  bool was = d2r_set_detect_anomaly(true);
  double one[1] = {0};
  expect_error(d2r_onehot_reward(K(tensor2(1, 1, one)), K(d2r_vector(1,
               lab)), 3, K(d2r_scalar(1e308))),
               "anomaly: onehot_reward produced -inf at element 1");
  d2r_set_detect_anomaly(was);
  d2r_scope_end(&s);
}

/* ---- likelihood losses ----------------------------------------------- */

/* CE = -(1/2) [(3 - log(e + e^2 + e^3)) + (0 - log 3)], gradient
 * (softmax - onehot) / B.  Tolerance 1e-12. */
Test(objective, cross_entropy_by_hand)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double z[6] = {1, 2, 3, 0, 0, 0}, lab[2] = {2, 1};
  d2r_tensor *logits = K(leaf(tensor2(2, 3, z)));
  d2r_tensor *ce = K(d2r_cross_entropy(logits, K(d2r_vector(2, lab))));
  double se = exp(1) + exp(2) + exp(3);
  double want = -0.5 * ((3 - log(se)) + (0 - log(3.0)));
  expect_values(ce, &want, 1, 1e-12, "ce");
  double g[6] = {exp(1) / se / 2, exp(2) / se / 2, (exp(3) / se - 1) / 2,
                 1.0 / 6, (1.0 / 3 - 1) / 2, 1.0 / 6};
  expect_values(K(grad_of(ce, logits)), g, 6, 1e-12, "dce/dz");
  d2r_scope_end(&s);
}

static double normal_log_pdf(double y, double mu, double ls)
{
  double sd = exp(ls);
  return -0.5 * log(TWO_PI) - ls - (y - mu) * (y - mu) / (2 * sd * sd);
}

/* NLL averaged over the batch (and K targets), with each reduction over
 * dims; MSE over all elements.  Tolerance 1e-12. */
Test(objective, gaussian_nll_and_mse_by_hand)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double m[4] = {0, 1, 2, -1}, l[2] = {0.2, -0.3}, yv[4] = {0.5, 0.5, 1, -1};
  d2r_tensor *mu = K(tensor2(2, 2, m)), *ls = K(d2r_vector(2, l));
  d2r_tensor *y = K(tensor2(2, 2, yv));
  double lp[4], sum = 0;
  for (int i = 0; i < 4; i++)
    sum += lp[i] = normal_log_pdf(yv[i], m[i], l[i % 2]);
  double wm = -sum / 4, ws = -sum / 2;
  double wn[2] = {-(lp[0] + lp[2]) / 2, -(lp[1] + lp[3]) / 2};
  expect_values(K(d2r_gaussian_nll(mu, ls, y, D2R_REDUCE_MEAN_DIMS)), &wm, 1,
                1e-12, "mean dims");
  expect_values(K(d2r_gaussian_nll(mu, ls, y, D2R_REDUCE_SUM_DIMS)), &ws, 1,
                1e-12, "sum dims");
  expect_values(K(d2r_gaussian_nll(mu, ls, y, D2R_REDUCE_NONE)), wn, 2,
                1e-12, "none");
  double y3[12] = {0.5, 0.5, 1, 2, -1, 0, 1, -1, 3, 3, 2, -2};
  double sum3 = 0;
  for (int i = 0; i < 12; i++)
    sum3 += normal_log_pdf(y3[i], m[2 * (i / 6) + i % 2], l[i % 2]);
  double w3 = -sum3 / 12;
  expect_values(K(d2r_gaussian_nll(mu, ls, K(tensor3(2, 3, 2, y3)),
                                   D2R_REDUCE_MEAN_DIMS)), &w3, 1, 1e-12,
                "K targets");
  double a[4] = {1, 2, 3, 4}, b[4] = {0, 2, 5, 4}, mse = 1.25;
  expect_values(K(d2r_mse(K(tensor2(2, 2, a)), K(tensor2(2, 2, b)))), &mse,
                1, 1e-12, "mse");
  d2r_scope_end(&s);
}

/* ---- transforms and baselines ---------------------------------------- */

static const double R[6] = {-2, 0, -2, -1, -4, 0.5};

static d2r_tensor *transformed(d2r_scope *sc, d2r_transform t,
                               d2r_baseline b, double gamma, double eps)
{
  d2r_pg_options o = d2r_pg_options_default();
  o.transform = t;
  o.baseline = b;
  o.gamma = gamma;
  o.std_eps = eps;
  d2r_tensor *r = d2r_keep(sc, tensor2(2, 3, R));
  return d2r_keep(sc, d2r_pg_transform(r, &o));
}

/* Rewards [[-2, 0, -2], [-1, -4, 0.5]] by hand.  Tolerance 1e-12. */
Test(objective, transforms_by_hand)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double shift[6] = {0, 2, 0, 3, 0, 4.5}, rbf[6];
  for (int i = 0; i < 6; i++)
    rbf[i] = exp(0.7 * R[i]);
  expect_values(transformed(&s, D2R_TRANSFORM_NONE, D2R_BASELINE_NONE, 1, 0),
                R, 6, 0.0, "none");
  expect_values(transformed(&s, D2R_TRANSFORM_MIN_SHIFT, D2R_BASELINE_NONE,
                            1, 0), shift, 6, 1e-12, "min-shift");
  expect_values(transformed(&s, D2R_TRANSFORM_RBF, D2R_BASELINE_NONE, 0.7,
                            0), rbf, 6, 1e-12, "rbf");
  d2r_scope_end(&s);
}

/* Group means -4/3 and -3/2; unbiased variances 4/3 and 21/4; leave-one-
 * out by hand: -2 - (0 - 2) / 2 = -1, and so on.  Tolerance 1e-12. */
Test(objective, baselines_by_hand)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double mean[6] = {-2.0 / 3, 4.0 / 3, -2.0 / 3, 0.5, -2.5, 2};
  double z[6], loo[6] = {-1, 2, -1, 0.75, -3.75, 3};
  for (int i = 0; i < 6; i++)
    z[i] = mean[i] / sqrt(i < 3 ? 4.0 / 3 : 21.0 / 4);
  expect_values(transformed(&s, D2R_TRANSFORM_NONE, D2R_BASELINE_MEAN, 1,
                            0), mean, 6, 1e-12, "mean");
  expect_values(transformed(&s, D2R_TRANSFORM_NONE, D2R_BASELINE_MEAN_STD,
                            1, 0), z, 6, 1e-12, "mean-std");
  expect_values(transformed(&s, D2R_TRANSFORM_NONE, D2R_BASELINE_LOO, 1, 0),
                loo, 6, 1e-12, "loo");
  /* With std_eps 0.5 the denominators become std + 0.5. */
  for (int i = 0; i < 6; i++)
    z[i] = mean[i] / (sqrt(i < 3 ? 4.0 / 3 : 21.0 / 4) + 0.5);
  expect_values(transformed(&s, D2R_TRANSFORM_NONE, D2R_BASELINE_MEAN_STD,
                            1, 0.5), z, 6, 1e-12, "mean-std eps");
  /* A shift does not move a mean baseline: min-shift + mean == mean. */
  expect_values(transformed(&s, D2R_TRANSFORM_MIN_SHIFT, D2R_BASELINE_MEAN,
                            1, 0), mean, 6, 1e-12, "min-shift + mean");
  d2r_scope_end(&s);
}

/* A group of equal rewards (whose computed mean is off by rounding) gets
 * exact zeros from MEAN_STD, even with std_eps 0; a G = 1 group too.
 * LOO needs G >= 2. */
Test(objective, baseline_guards)
{
  d2r_scope s = D2R_SCOPE_INIT;
  /* 0.7 * 3 * (1 / 3) - 0.7 = -1.1e-16: the centred values are not 0. */
  double r[6] = {0.7, 0.7, 0.7, 1, 2, 3}, zero[3] = {0};
  d2r_pg_options o = d2r_pg_options_default();
  o.baseline = D2R_BASELINE_MEAN_STD;
  o.std_eps = 0;
  d2r_tensor *t = K(d2r_pg_transform(K(tensor2(2, 3, r)), &o));
  expect_values(K(d2r_slice(t, 0, 0, 1, 1)), zero, 3, 0.0, "flat group");
  cr_assert_eq(d2r_count_nonfinite(t), 0, "non-finite values");
  expect_values(K(d2r_pg_transform(K(tensor2(3, 1, r)), &o)), zero, 3, 0.0,
                "G = 1");
  o.baseline = D2R_BASELINE_LOO;
  expect_error(d2r_pg_transform(K(tensor2(3, 1, r)), &o), "G >= 2");
  d2r_scope_end(&s);
}

/* The transformed rewards carry no gradient even from a leaf, with or
 * without a transform. */
Test(objective, transform_detaches)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *r = K(leaf(tensor2(2, 3, R)));
  d2r_pg_options o = d2r_pg_options_default();
  for (int k = 0; k < 2; k++) {
    o.transform = k ? D2R_TRANSFORM_RBF : D2R_TRANSFORM_NONE;
    d2r_tensor *t = K(d2r_pg_transform(r, &o));
    cr_assert_not_null(t, "%s", d2r_error());
    cr_assert(!d2r_requires_grad(t), "transformed rewards must be constant");
  }
  d2r_scope_end(&s);
}

/* ---- PG surrogate ---------------------------------------------------- */

/* L = mean(-logp * rt) - lambda mean(H) with min-shift rt
 * [[0, 2, 0], [3, 0, 4.5]]: (2 + 0.3 + 13.5) / 6 - 0.3 * 1.  dL/dlogp =
 * -rt / 6, dL/dH = -lambda / 2, no gradient to the reward.  1e-12. */
Test(objective, pg_surrogate_by_hand)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double lp[6] = {-0.5, -1, -2, -0.1, -0.3, -3}, h[2] = {0.9, 1.1};
  d2r_tensor *logp = K(leaf(tensor2(2, 3, lp)));
  d2r_tensor *rw = K(leaf(tensor2(2, 3, R)));
  d2r_tensor *ent = K(leaf(d2r_vector(2, h)));
  d2r_pg_options o = d2r_pg_options_default();
  o.transform = D2R_TRANSFORM_MIN_SHIFT;
  d2r_pg_stats st;
  d2r_tensor *l = K(d2r_pg_surrogate(logp, rw, ent, 0.3, &o, &st));
  double want = 15.8 / 6 - 0.3;
  expect_values(l, &want, 1, 1e-12, "L");
  cr_assert(fabs(st.reward_mean + 8.5 / 6) <= 1e-12, "reward mean %g",
            st.reward_mean);
  cr_assert(fabs(st.transformed_mean - 9.5 / 6) <= 1e-12, "rt mean %g",
            st.transformed_mean);
  cr_assert(fabs(st.entropy_mean - 1.0) <= 1e-12, "H mean %g",
            st.entropy_mean);
  cr_assert_eq(d2r_backward(l), 0, "%s", d2r_error());
  double gl[6] = {0, -2.0 / 6, 0, -3.0 / 6, 0, -4.5 / 6};
  double gh[2] = {-0.15, -0.15};
  expect_values(K(d2r_grad(logp)), gl, 6, 1e-12, "dL/dlogp");
  expect_values(K(d2r_grad(ent)), gh, 2, 1e-12, "dL/dH");
  d2r_tensor *gr = K(d2r_grad(rw));
  cr_assert(gr == NULL || d2r_count_nonfinite(gr) == 0, "reward gradient");
  if (gr) {
    double zero[6] = {0};
    expect_values(gr, zero, 6, 0.0, "dL/dreward");
  }
  d2r_scope_end(&s);
}

/* Clipping -log p to [-1, 1]: values [0.1, 1, 0.5, -1], L = 2.6 / 4, and
 * clamped entries get no gradient.  lambda = 0 with no entropy.  1e-12. */
Test(objective, pg_surrogate_clip)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double lp[4] = {-0.1, -3, -0.5, 2}, r[4] = {1, 2, 3, 1};
  d2r_tensor *logp = K(leaf(tensor2(1, 4, lp)));
  d2r_pg_options o = d2r_pg_options_default();
  o.clip = 1;
  d2r_pg_stats st;
  d2r_tensor *l = K(d2r_pg_surrogate(logp, K(tensor2(1, 4, r)), NULL, 0, &o,
                                     &st));
  double want = 0.65, g[4] = {-0.25, 0, -0.75, 0};
  expect_values(l, &want, 1, 1e-12, "L");
  expect_values(K(grad_of(l, logp)), g, 4, 1e-12, "dL/dlogp");
  cr_assert(isnan(st.entropy_mean), "no entropy: NAN");
  d2r_scope_end(&s);
}

/* A categorical policy for the REINFORCE check: B = 2, C = 3, G = 4. */
static const double Z[6] = {0.2, -0.4, 1.0, 0.0, 0.7, -1.1};
static const double ZS[8] = {0, 2, 1, 2, 1, 1, 0, 2};
static const double ZL[2] = {2, 0};

static d2r_tensor *reinforce_loss(d2r_tensor *logits, const double *lambda,
                                  const d2r_pg_options *o)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *smp = K(tensor2(2, 4, ZS));
  d2r_tensor *r = K(d2r_onehot_reward(smp, K(d2r_vector(2, ZL)), 3,
                                      K(d2r_scalar(1.5))));
  d2r_tensor *lp = K(d2r_categorical_log_prob(logits, smp));
  d2r_tensor *h = K(d2r_categorical_entropy(logits));
  d2r_tensor *l = d2r_pg_surrogate(lp, r, h, *lambda, o, NULL);
  d2r_scope_end(&s);
  return l;
}

/* The REINFORCE gradient by hand:
 *   dL/dz_bj = sum_g -rt_bg a_bg ([j == s_bg] - p_bj) / (B G)
 *              + lambda p_bj (log p_bj + H_b) / B,
 * a_bg = 0 where clipping holds -log p fixed, else 1; rt from
 * d2r_pg_transform (checked above). */
static void reinforce_by_hand(d2r_tensor *rt, double lambda, double clip,
                              double *grad)
{
  d2r_tensor *c = d2r_contiguous(rt);
  const double *t = d2r_data(c);
  for (int b = 0; b < 2; b++) {
    double sum = 0, p[3], h = 0;
    for (int j = 0; j < 3; j++)
      sum += exp(Z[3 * b + j]);
    for (int j = 0; j < 3; j++) {
      p[j] = exp(Z[3 * b + j]) / sum;
      h -= p[j] * log(p[j]);
    }
    for (int j = 0; j < 3; j++) {
      double g = lambda * p[j] * (log(p[j]) + h) / 2;
      for (int k = 0; k < 4; k++) {
        int sk = (int)ZS[4 * b + k];
        double a = clip > 0 && -log(p[sk]) >= clip ? 0 : 1;
        g -= t[4 * b + k] * a * ((sk == j) - p[j]) / 8;
      }
      grad[3 * b + j] = g;
    }
  }
  d2r_release(c);
}

/* Central differences of L in each logit, step 1e-5. */
static void reinforce_numeric(double lambda, const d2r_pg_options *o,
                              double *grad)
{
  bool was = d2r_set_grad_enabled(false);
  for (int i = 0; i < 6; i++) {
    double z[6], f[2];
    for (int side = 0; side < 2; side++) {
      memcpy(z, Z, sizeof z);
      z[i] += side ? -1e-5 : 1e-5;
      d2r_tensor *t = tensor2(2, 3, z);
      d2r_tensor *l = reinforce_loss(t, &lambda, o);
      cr_assert_not_null(l, "%s", d2r_error());
      f[side] = d2r_item(l);
      d2r_release(l);
      d2r_release(t);
    }
    grad[i] = (f[0] - f[1]) / 2e-5;
  }
  d2r_set_grad_enabled(was);
}

/* For each transform, baseline and clipping: autodiff gradient of the
 * surrogate against the REINFORCE formula (1e-12) and against central
 * differences (1e-8: truncation ~ h^2, rounding ~ 1e-16 / h). */
Test(objective, pg_gradient_is_reinforce)
{
  struct { d2r_transform t; d2r_baseline b; double clip; } cases[] = {
    {D2R_TRANSFORM_NONE, D2R_BASELINE_NONE, 0},
    {D2R_TRANSFORM_MIN_SHIFT, D2R_BASELINE_NONE, 0},
    {D2R_TRANSFORM_RBF, D2R_BASELINE_NONE, 0},
    {D2R_TRANSFORM_NONE, D2R_BASELINE_MEAN, 0},
    {D2R_TRANSFORM_NONE, D2R_BASELINE_MEAN_STD, 0},
    {D2R_TRANSFORM_NONE, D2R_BASELINE_LOO, 0},
    {D2R_TRANSFORM_MIN_SHIFT, D2R_BASELINE_NONE, 1.0},
  };
  double lambda = 0.2;
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    d2r_scope s = D2R_SCOPE_INIT;
    d2r_pg_options o = d2r_pg_options_default();
    o.transform = cases[k].t;
    o.baseline = cases[k].b;
    o.gamma = 0.4;
    o.clip = cases[k].clip;
    d2r_tensor *logits = K(leaf(tensor2(2, 3, Z)));
    d2r_tensor *l = K(reinforce_loss(logits, &lambda, &o));
    d2r_tensor *g = K(grad_of(l, logits));
    d2r_tensor *smp = K(tensor2(2, 4, ZS));
    d2r_tensor *r = K(d2r_onehot_reward(smp, K(d2r_vector(2, ZL)), 3,
                                        K(d2r_scalar(1.5))));
    double hand[6], num[6];
    reinforce_by_hand(K(d2r_pg_transform(r, &o)), lambda, o.clip, hand);
    reinforce_numeric(lambda, &o, num);
    expect_values(g, hand, 6, 1e-12, "REINFORCE formula");
    expect_values(g, num, 6, 1e-8, "finite differences");
    d2r_scope_end(&s);
  }
}

/* The surrogate of logits z [3, 5] with G = 11 draws (the eight-lane
 * sums have a tail), constant rewards, and opt; L and its gradient in z,
 * the gradient built as a graph (create_graph) when `second`, in which
 * case gz holds d/dz sum((dL/dz)^2) instead. */
static void surrogate_and_grads(const d2r_pg_options *o, bool second,
                                double *loss, double *gz)
{
  d2r_scope s = D2R_SCOPE_INIT;
  int64_t zs[2] = {3, 5}, gs[2] = {3, 11};
  d2r_rng *rng = d2r_rng_new(17);
  d2r_tensor *z = K(leaf(d2r_rand_normal(rng, 2, zs, 0, 1)));
  d2r_tensor *smp = K(d2r_categorical_sample(rng, z, 11));
  d2r_tensor *r = K(d2r_rand_normal(rng, 2, gs, 0, 1));
  d2r_tensor *lp = K(d2r_categorical_log_prob(z, smp));
  d2r_tensor *h = K(d2r_categorical_entropy(z));
  d2r_tensor *l = K(d2r_pg_surrogate(lp, r, h, 0.3, o, NULL));
  cr_assert_not_null(l, "%s", d2r_error());
  *loss = d2r_item(l);
  d2r_tensor *g = NULL;
  cr_assert_eq(d2r_autograd(1, &l, NULL, 1, &z, second, false, &g), 0,
               "%s", d2r_error());
  K(g);
  if (second) {
    d2r_tensor *sq = K(d2r_sum_all(K(d2r_square(g))));
    cr_assert_eq(d2r_autograd(1, &sq, NULL, 1, &z, false, false, &g), 0,
                 "%s", d2r_error());
    K(g);
  }
  memcpy(gz, d2r_data(K(d2r_contiguous(g))), 15 * sizeof *gz);
  d2r_rng_free(rng);
  d2r_scope_end(&s);
}

/* With constant rewards the surrogate is one fused node: its value, its
 * gradient and a second derivative through its gradient equal the op
 * chain's (taken with reward_grad on) bit for bit, for each transform
 * and every baseline the fused loop serves. */
Test(objective, pg_surrogate_fused_matches_chain)
{
  d2r_transform ts[3] = {D2R_TRANSFORM_NONE, D2R_TRANSFORM_MIN_SHIFT,
                         D2R_TRANSFORM_RBF};
  d2r_baseline bs[3] = {D2R_BASELINE_NONE, D2R_BASELINE_MEAN,
                        D2R_BASELINE_LOO};
  for (int t = 0; t < 3; t++)
    for (int b = 0; b < 3; b++)
      for (int second = 0; second < 2; second++) {
        d2r_pg_options o = d2r_pg_options_default();
        o.transform = ts[t];
        o.baseline = bs[b];
        o.gamma = 0.4;
        double lf, lc, gf[15], gc[15];
        surrogate_and_grads(&o, second, &lf, gf);
        o.reward_grad = true;
        surrogate_and_grads(&o, second, &lc, gc);
        cr_expect(lf == lc, "transform %d baseline %d: L %.17g vs %.17g", t,
                  b, lf, lc);
        for (int k = 0; k < 15; k++)
          cr_expect(gf[k] == gc[k], "transform %d baseline %d order %d "
                    "[%d]: %.17g vs %.17g", t, b, second + 1, k, gf[k],
                    gc[k]);
      }
}

/* ---- pathwise surrogate ---------------------------------------------- */

/* r = -u |mu + sigma eps - y|^2 (B = 1, G = 3, n = 2), H shared:
 *   L = u mean_g |d_g|^2 - lambda H,  dL/dmu = 2 u mean_g d_g,
 *   dL/dlog_std_i = 2 u mean_g d_gi (y_gi - mu_i) - lambda / n,
 *   d/du dL/dmu = 2 mean_g d_g (a mixed second derivative).  1e-12. */
Test(objective, pathwise_surrogate)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double m[2] = {0.3, -0.2}, l[2] = {-0.5, 0.25}, yt[2] = {1, 0.5};
  double lambda = 0.4, u = 0.8;
  d2r_rng *rng = d2r_rng_new(17);
  d2r_tensor *mu = K(leaf(tensor2(1, 2, m))), *ls = K(leaf(d2r_vector(2, l)));
  d2r_tensor *uu = K(leaf(d2r_scalar(u)));
  d2r_tensor *yh = K(d2r_gaussian_rsample(rng, mu, ls, 3));
  d2r_tensor *r = K(d2r_mahalanobis_reward(yh, K(tensor2(1, 2, yt)), uu));
  d2r_tensor *h = K(d2r_gaussian_entropy(ls, D2R_REDUCE_MEAN_DIMS));
  d2r_pg_stats st;
  d2r_tensor *loss = K(d2r_pathwise_surrogate(r, h, lambda, &st));
  cr_assert_not_null(loss, "%s", d2r_error());
  d2r_tensor *cy = K(d2r_contiguous(yh));
  const double *v = d2r_data(cy);
  double sq = 0, gm[2] = {0}, gs[2], mix[2] = {0};
  for (int i = 0; i < 6; i++) {
    double d = v[i] - yt[i % 2];
    sq += d * d / 3;
    gm[i % 2] += 2 * u * d / 3;
    mix[i % 2] += 2 * d / 3;
  }
  for (int k = 0; k < 2; k++) {
    gs[k] = -lambda / 2;
    for (int g = 0; g < 3; g++)
      gs[k] += 2 * u * (v[2 * g + k] - yt[k]) * (v[2 * g + k] - m[k]) / 3;
  }
  double hv = 0.5 * log(TWO_PI * exp(1.0)) + (l[0] + l[1]) / 2;
  double want = u * sq - lambda * hv;
  expect_values(loss, &want, 1, 1e-12, "L");
  cr_assert(fabs(st.reward_mean + u * sq) <= 1e-12, "stats %g",
            st.reward_mean);
  d2r_tensor *in[2] = {mu, ls}, *g[2];
  cr_assert_eq(d2r_autograd(1, &loss, NULL, 2, in, true, false, g), 0, "%s",
               d2r_error());
  K(g[0]);
  K(g[1]);
  expect_values(g[0], gm, 2, 1e-12, "dL/dmu");
  expect_values(g[1], gs, 2, 1e-12, "dL/dlog_std");
  d2r_tensor *gsum = K(d2r_sum_all(g[0]));
  cr_assert_not_null(gsum, "%s", d2r_error());
  d2r_tensor *du = K(grad_of(gsum, uu));
  double wmix = mix[0] + mix[1];
  expect_values(du, &wmix, 1, 1e-12, "d/du sum dL/dmu");
  d2r_rng_free(rng);
  d2r_scope_end(&s);
}

/* ---- errors ---------------------------------------------------------- */

Test(objective, errors)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *r = K(tensor2(2, 3, R)), *lp = K(tensor2(2, 3, R));
  d2r_tensor *h = K(d2r_vector(2, R)), *y = K(tensor2(1, 2, YT));
  d2r_tensor *yhat = K(tensor3(1, 2, 2, YHAT));
  expect_error(d2r_pg_surrogate(lp, K(tensor2(3, 2, R)), h, 0.1, NULL,
                                NULL), "[B, G]");
  expect_error(d2r_pg_surrogate(lp, r, K(d2r_vector(3, R)), 0.1, NULL,
                                NULL), "entropy");
  d2r_clear_error();
  expect_error(d2r_pg_surrogate(lp, r, NULL, 0.1, NULL, NULL), "lambda");
  cr_assert_not_null(K(d2r_pg_surrogate(lp, r, NULL, 0, NULL, NULL)), "%s",
                     d2r_error());
  d2r_pg_options o = d2r_pg_options_default();
  o.gamma = NAN;
  expect_error(d2r_pg_transform(r, &o), "gamma");
  o = d2r_pg_options_default();
  o.clip = -1;
  expect_error(d2r_pg_surrogate(lp, r, h, 0.1, &o, NULL), "clip");
  o = d2r_pg_options_default();
  o.transform = (d2r_transform)9;
  expect_error(d2r_pg_transform(r, &o), "transform");
  expect_error(d2r_pg_transform(h, NULL), "[B, G]");
  expect_error(d2r_mahalanobis_reward(yhat, y, K(d2r_vector(3, R))), "U");
  expect_error(d2r_mahalanobis_reward(yhat, K(tensor2(2, 1, YT)),
                                      K(d2r_scalar(1))), "yhat");
  double bad[2] = {0, 4};
  expect_error(d2r_onehot_reward(K(tensor2(2, 1, LAB)), K(d2r_vector(2, bad)),
                                 4, K(d2r_scalar(1))), "labels");
  expect_error(d2r_cross_entropy(K(tensor2(2, 3, R)),
                                 K(d2r_vector(2, (double[]){0, 0.5}))),
               "not an integer");
  expect_error(d2r_mse(K(tensor2(2, 3, R)), K(tensor2(3, 2, R))), "shapes");
  d2r_fail("earlier failure");
  expect_error(d2r_pg_surrogate(NULL, r, h, 0.1, NULL, NULL),
               "earlier failure");
  expect_error(d2r_pg_surrogate(lp, r, NULL, 0.1, NULL, NULL),
               "earlier failure");
  expect_error(d2r_onehot_reward(NULL, h, 2, K(d2r_scalar(1))),
               "earlier failure");
  expect_error(d2r_gaussian_nll(NULL, h, r, D2R_REDUCE_NONE),
               "earlier failure");
  d2r_scope_end(&s);
}

/* ---- the surrogate from class counts --------------------------------- */

/* Three rows of C = 3 classes, G = 5 draws each, as counts and as the
 * samples they count (in a mixed order: the surrogate must not depend
 * on it).  Row 2 drew one class only (zero spread for MEAN_STD, zero
 * after min-shift). */
static const double CNT_LOGITS[9] = {0.3, -1.2, 0.8, 1.5, 0.1, -0.4,
                                     -0.7, 0.2, 0.6};
static const double CNT_COUNTS[9] = {2, 0, 3, 5, 0, 0, 1, 3, 1};
static const double CNT_SAMPLES[15] = {2, 0, 2, 0, 2, 0, 0, 0, 0, 0,
                                       1, 2, 1, 0, 1};
static const double CNT_LABELS[3] = {2, 1, 1};
static const double CNT_U[9] = {1.5, 0.2, -0.1, 0.3, 0.9, 0.4, 0.0, 0.5,
                                2.0};

/* The surrogate (counts or samples), its gradient in the logits and in
 * U (a matrix, so every reward differs), a Hessian-vector product in the
 * logits, and the stats. */
typedef struct cnt_result {
  double loss, glogits[9], gu[9], hv[9];
  d2r_pg_stats st;
} cnt_result;

static void counts_case(const d2r_pg_options *o, bool counts,
                        cnt_result *res)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *x = K(leaf(tensor2(3, 3, CNT_LOGITS)));
  d2r_tensor *u = K(leaf(tensor2(3, 3, CNT_U)));
  d2r_tensor *lab = K(d2r_vector(3, CNT_LABELS));
  d2r_tensor *h = K(d2r_categorical_entropy(x));
  d2r_tensor *loss;
  if (counts) {
    d2r_tensor *lp = K(d2r_log_softmax(x, 1));
    d2r_tensor *r = K(d2r_onehot_reward_classes(lab, 3, u));
    loss = K(d2r_pg_surrogate_counts(lp, r, K(tensor2(3, 3, CNT_COUNTS)),
                                     h, 0.3, o, &res->st));
  } else {
    d2r_tensor *smp = K(tensor2(3, 5, CNT_SAMPLES));
    d2r_tensor *lp = K(d2r_categorical_log_prob(x, smp));
    d2r_tensor *r = K(d2r_onehot_reward(smp, lab, 3, u));
    loss = K(d2r_pg_surrogate(lp, r, h, 0.3, o, &res->st));
  }
  cr_assert_not_null(loss, "%s", d2r_error());
  res->loss = d2r_item(loss);
  d2r_tensor *in[2] = {x, u}, *g[2] = {NULL, NULL};
  cr_assert_eq(d2r_autograd(1, &loss, NULL, 2, in, true, true, g), 0, "%s",
               d2r_error());
  K(g[0]), K(g[1]);
  memcpy(res->glogits, d2r_data(K(d2r_contiguous(g[0]))), sizeof res->gu);
  memcpy(res->gu, d2r_data(K(d2r_contiguous(g[1]))), sizeof res->gu);
  /* v . d(grad)/d logits, v = (1, -2, 3, ...) / 9 */
  double v[9];
  for (int k = 0; k < 9; k++) v[k] = (k % 2 ? -1.0 : 1.0) * (k + 1) / 9.0;
  d2r_tensor *dot = K(d2r_sum_all(K(d2r_mul(g[0], K(tensor2(3, 3, v))))));
  d2r_tensor *hv = NULL;
  if (d2r_requires_grad(dot)) {
    cr_assert_eq(d2r_autograd(1, &dot, NULL, 1, &x, false, true, &hv), 0,
                 "%s", d2r_error());
    memcpy(res->hv, d2r_data(K(d2r_contiguous(K(hv)))), sizeof res->hv);
  } else {
    memset(res->hv, 0, sizeof res->hv);
  }
  d2r_scope_end(&s);
}

static void expect_close(double a, double b, double tol, const char *what,
                         int t, int bl, int c, int rg, int k)
{
  cr_expect(fabs(a - b) <= tol * (1 + fabs(b)),
            "transform %d baseline %d clip %d reward_grad %d %s[%d]: "
            "counts %.17g, samples %.17g", t, bl, c, rg, what, k, a, b);
}

/* Every transform, baseline, clip and reward_grad: the counts form gives
 * the samples' value, stats, gradients in the logits and in U, and
 * Hessian-vector products, to 1e-12 (the sums run in another order). */
Test(objective, counts_surrogate_matches_samples)
{
  d2r_transform ts[3] = {D2R_TRANSFORM_NONE, D2R_TRANSFORM_MIN_SHIFT,
                         D2R_TRANSFORM_RBF};
  d2r_baseline bs[4] = {D2R_BASELINE_NONE, D2R_BASELINE_MEAN,
                        D2R_BASELINE_MEAN_STD, D2R_BASELINE_LOO};
  for (int t = 0; t < 3; t++)
    for (int b = 0; b < 4; b++)
      for (int c = 0; c < 2; c++)
        for (int rg = 0; rg < 2; rg++) {
          d2r_pg_options o = d2r_pg_options_default();
          o.transform = ts[t];
          o.baseline = bs[b];
          o.gamma = 0.4;
          o.clip = c ? 0.9 : 0;
          o.reward_grad = rg;
          cnt_result rc, rs;
          counts_case(&o, true, &rc);
          counts_case(&o, false, &rs);
          expect_close(rc.loss, rs.loss, 1e-12, "loss", t, b, c, rg, 0);
          expect_close(rc.st.reward_mean, rs.st.reward_mean, 1e-12,
                       "reward_mean", t, b, c, rg, 0);
          expect_close(rc.st.transformed_mean, rs.st.transformed_mean,
                       1e-12, "transformed_mean", t, b, c, rg, 0);
          expect_close(rc.st.entropy_mean, rs.st.entropy_mean, 1e-12,
                       "entropy_mean", t, b, c, rg, 0);
          for (int k = 0; k < 9; k++) {
            expect_close(rc.glogits[k], rs.glogits[k], 1e-12, "dlogits", t,
                         b, c, rg, k);
            expect_close(rc.gu[k], rs.gu[k], 1e-12, "dU", t, b, c, rg, k);
            expect_close(rc.hv[k], rs.hv[k], 1e-11, "Hv", t, b, c, rg, k);
          }
          if (rg) {
            double mag = 0;
            for (int k = 0; k < 9; k++) mag += fabs(rc.gu[k]);
            cr_expect(mag > 0, "reward_grad: a gradient in U (t %d b %d)",
                      t, b);
          }
        }
}

/* A class no sample fell in takes no part even when its reward is
 * infinite (U's entry for class 1 is inf and row 0 never draws class
 * 1; rows 1 and 2 have labels 1, so their rewards are all inf or NaN:
 * only row 0 is used here), with and without reward_grad: the counts
 * give the samples' finite value. */
Test(objective, counts_surrogate_ignores_undrawn_classes)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double u[3] = {1.0, INFINITY, 0.5};
  double row_counts[3] = {2, 0, 3}, row_samples[5] = {2, 0, 2, 0, 2};
  double lab[1] = {2};
  for (int rg = 0; rg < 2; rg++)
    for (int b = 0; b < 4; b++) {
      d2r_pg_options o = d2r_pg_options_default();
      o.transform = D2R_TRANSFORM_MIN_SHIFT;
      o.baseline = (d2r_baseline)b;
      o.reward_grad = rg;
      d2r_tensor *x = K(tensor2(1, 3, CNT_LOGITS));
      d2r_tensor *U = K(d2r_vector(3, u));
      d2r_tensor *y = K(d2r_vector(1, lab));
      d2r_pg_stats sc, ss;
      d2r_tensor *lc = K(d2r_pg_surrogate_counts(
          K(d2r_log_softmax(x, 1)), K(d2r_onehot_reward_classes(y, 3, U)),
          K(tensor2(1, 3, row_counts)), NULL, 0, &o, &sc));
      d2r_tensor *smp = K(tensor2(1, 5, row_samples));
      d2r_tensor *ls = K(d2r_pg_surrogate(
          K(d2r_categorical_log_prob(x, smp)),
          K(d2r_onehot_reward(smp, y, 3, U)), NULL, 0, &o, &ss));
      cr_assert_not_null(lc, "%s", d2r_error());
      cr_assert_not_null(ls, "%s", d2r_error());
      cr_expect(isfinite(d2r_item(lc)) &&
                fabs(d2r_item(lc) - d2r_item(ls)) <= 1e-12,
                "baseline %d reward_grad %d: counts %.17g, samples %.17g",
                b, rg, d2r_item(lc), d2r_item(ls));
      cr_expect(fabs(sc.reward_mean - ss.reward_mean) <= 1e-12 &&
                fabs(sc.transformed_mean - ss.transformed_mean) <= 1e-12,
                "baseline %d reward_grad %d: stats %g %g against %g %g", b,
                rg, sc.reward_mean, sc.transformed_mean, ss.reward_mean,
                ss.transformed_mean);
    }
  d2r_scope_end(&s);
}

/* The counts against the samples they describe on one row, with U a
 * leaf: value and gradients in the logits and in U within 1e-12. */
static void expect_counts_like_samples(const double *logits, int64_t c,
                                       const double *counts,
                                       const double *samples, int64_t g,
                                       double label, const double *u,
                                       const d2r_pg_options *o,
                                       const char *what)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double lc[2], gx[2][8], gu[2][8];
  for (int side = 0; side < 2; side++) {
    d2r_tensor *x = K(leaf(tensor2(1, c, logits)));
    d2r_tensor *U = K(leaf(d2r_vector(c, u)));
    d2r_tensor *y = K(d2r_vector(1, &label));
    d2r_tensor *loss;
    if (side == 0) {
      loss = K(d2r_pg_surrogate_counts(
          K(d2r_log_softmax(x, 1)), K(d2r_onehot_reward_classes(y, c, U)),
          K(tensor2(1, c, counts)), NULL, 0, o, NULL));
    } else {
      d2r_tensor *smp = K(tensor2(1, g, samples));
      loss = K(d2r_pg_surrogate(K(d2r_categorical_log_prob(x, smp)),
                                K(d2r_onehot_reward(smp, y, c, U)), NULL, 0,
                                o, NULL));
    }
    cr_assert_not_null(loss, "%s: %s", what, d2r_error());
    lc[side] = d2r_item(loss);
    d2r_tensor *in[2] = {x, U}, *gr[2] = {NULL, NULL};
    cr_assert_eq(d2r_autograd(1, &loss, NULL, 2, in, false, true, gr), 0,
                 "%s: %s", what, d2r_error());
    memcpy(gx[side], d2r_data(K(d2r_contiguous(K(gr[0])))),
           sizeof(double) * (size_t)c);
    memcpy(gu[side], d2r_data(K(d2r_contiguous(K(gr[1])))),
           sizeof(double) * (size_t)c);
  }
  cr_expect(isfinite(lc[0]) && fabs(lc[0] - lc[1]) <= 1e-12,
            "%s: loss %.17g (counts) against %.17g", what, lc[0], lc[1]);
  for (int k = 0; k < c; k++) {
    cr_expect(isfinite(gx[0][k]) && fabs(gx[0][k] - gx[1][k]) <= 1e-12,
              "%s: dlogits[%d] %.17g against %.17g", what, k, gx[0][k],
              gx[1][k]);
    cr_expect(fabs(gu[0][k] - gu[1][k]) <= 1e-12 ||
                  (isnan(gu[0][k]) && isnan(gu[1][k])),
              "%s: dU[%d] %.17g against %.17g", what, k, gu[0][k], gu[1][k]);
  }
  d2r_scope_end(&s);
}

/* Cases a helper found: the minimum of min-shift tied between two
 * drawn classes (its gradient in U is shared by count, as the samples
 * share it), log p = -inf for a class not drawn, and an infinite
 * reward for a class not drawn under RBF with reward gradients. */
Test(objective, counts_surrogate_edge_cases)
{
  double x3[3] = {0.3, -1.2, 0.8}, n3[3] = {1, 3, 1};
  double s3[5] = {1, 0, 1, 2, 1}, ones[3] = {1, 1, 1};
  for (int b = 0; b < 4; b++) {
    d2r_pg_options o = d2r_pg_options_default();
    o.transform = D2R_TRANSFORM_MIN_SHIFT;
    o.baseline = (d2r_baseline)b;
    o.reward_grad = true;
    char what[64];
    snprintf(what, sizeof what, "tied minimum, baseline %d", b);
    /* label 2: classes 0 and 1 (counts 1 and 3) tie at reward -2 */
    expect_counts_like_samples(x3, 3, n3, s3, 5, 2, ones, &o, what);
  }
  double xinf[3] = {0, 0, -INFINITY}, n2[3] = {2, 2, 0};
  double s2[4] = {0, 1, 1, 0}, u3[3] = {1.0, 0.5, 2.0};
  /* log_softmax of a -inf logit is -inf: the class is never drawn. */
  for (int b = 0; b < 4; b++)
    for (int clip = 0; clip < 2; clip++)
      for (int rg = 0; rg < 2; rg++) {
        d2r_pg_options o = d2r_pg_options_default();
        o.baseline = (d2r_baseline)b;
        o.clip = clip ? 0.9 : 0;
        o.reward_grad = rg;
        char what[80];
        snprintf(what, sizeof what, "log p = -inf undrawn, baseline %d "
                 "clip %d reward_grad %d", b, clip, rg);
        expect_counts_like_samples(xinf, 3, n2, s2, 4, 0, u3, &o, what);
      }
  double uinf[3] = {1.0, 0.5, -INFINITY};
  for (int b = 0; b < 4; b++) {
    d2r_pg_options o = d2r_pg_options_default();
    o.transform = D2R_TRANSFORM_RBF;
    o.gamma = 0.3;
    o.baseline = (d2r_baseline)b;
    o.reward_grad = true;
    char what[64];
    snprintf(what, sizeof what, "rbf, +inf reward undrawn, baseline %d", b);
    expect_counts_like_samples(x3, 3, n2, s2, 4, 0, uinf, &o, what);
  }
}

/* onehot_reward_classes against onehot_reward of each class, and the
 * counts form's argument checks. */
Test(objective, counts_reward_table_and_errors)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *lab = K(d2r_vector(3, CNT_LABELS));
  d2r_tensor *beta = K(d2r_scalar(0.7));
  double want[9] = {-1.4, -1.4, 0, -1.4, 0, -1.4, -1.4, 0, -1.4};
  expect_values(K(d2r_onehot_reward_classes(lab, 3, beta)), want, 9, 0,
                "reward table, U = 0.7 I");
  expect_error(d2r_onehot_reward_classes(K(tensor2(3, 1, CNT_LABELS)), 3,
                                         beta), "labels must be [B]");
  expect_error(d2r_onehot_reward_classes(lab, 2, beta), "labels");

  d2r_tensor *x = K(tensor2(3, 3, CNT_LOGITS));
  d2r_tensor *lp = K(d2r_log_softmax(x, 1));
  d2r_tensor *r = K(d2r_onehot_reward_classes(lab, 3, beta));
  d2r_tensor *h = K(d2r_categorical_entropy(x));
  d2r_tensor *n = K(tensor2(3, 3, CNT_COUNTS));
  cr_assert_not_null(K(d2r_pg_surrogate_counts(lp, r, n, h, 0.1, NULL,
                                               NULL)), "%s", d2r_error());
  expect_error(d2r_pg_surrogate_counts(lp, K(tensor2(3, 5, CNT_SAMPLES)), n,
                                       h, 0.1, NULL, NULL), "[B, C]");
  double neg[9] = {2, 0, 3, 5, 0, 0, 1, 3, 1};
  neg[1] = -1, neg[0] = 3;
  expect_error(d2r_pg_surrogate_counts(lp, r, K(tensor2(3, 3, neg)), h, 0.1,
                                       NULL, NULL), "non-negative integers");
  double frac[9] = {2, 0.5, 2.5, 5, 0, 0, 1, 3, 1};
  expect_error(d2r_pg_surrogate_counts(lp, r, K(tensor2(3, 3, frac)), h,
                                       0.1, NULL, NULL), "integers");
  double uneven[9] = {2, 0, 3, 4, 0, 0, 1, 3, 1};
  expect_error(d2r_pg_surrogate_counts(lp, r, K(tensor2(3, 3, uneven)), h,
                                       0.1, NULL, NULL), "same number");
  double big[9] = {0x1p52, 0x1p52, 1, 0x1p52, 0x1p52, 0, 0, 0, 0};
  expect_error(d2r_pg_surrogate_counts(lp, r, K(tensor2(3, 3, big)), h, 0.1,
                                       NULL, NULL), "more than 2^52");
  double nan_c[9] = {2, 0, 3, 5, 0, 0, 1, NAN, 1};
  expect_error(d2r_pg_surrogate_counts(lp, r, K(tensor2(3, 3, nan_c)), h,
                                       0.1, NULL, NULL), "nan");
  double ones[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  d2r_pg_options o = d2r_pg_options_default();
  o.baseline = D2R_BASELINE_LOO;
  expect_error(d2r_pg_surrogate_counts(lp, r, K(tensor2(3, 3, ones)), h,
                                       0.1, &o, NULL), "G >= 2");
  d2r_clear_error();
  expect_error(d2r_pg_surrogate_counts(lp, r, n, NULL, 0.1, NULL, NULL),
               "lambda");
  d2r_scope_end(&s);
}

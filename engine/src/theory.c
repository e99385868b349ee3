/*
 * The Gaussian case of METHOD.md in closed form (see theory.h for the
 * formulas), written with differentiable tensor and linalg operations so
 * that the formulas can be differentiated (e.g. the outer objective's
 * gradient in U).
 */
#include "d2r/theory.h"

#include <math.h>
#include <stdio.h>

#include "d2r/linalg.h"

#define LOG_2PI 1.83787706640934548356
#define KEEP(t) d2r_keep(&s, (t))

/* ---- argument checks --------------------------------------------------- */

static bool is_vec(const d2r_tensor *t, int64_t n) {
  return d2r_ndim(t) == 1 && d2r_dim(t, 0) == n;
}

static bool is_mat(const d2r_tensor *t, int64_t n) {
  return d2r_ndim(t) == 2 && d2r_dim(t, 0) == n && d2r_dim(t, 1) == n;
}

/* Fails naming the argument when t is not a vector [n] (vec) or a matrix
 * [n, n]. */
static bool check(const d2r_tensor *t, int64_t n, bool vec, const char *fn,
                  const char *name) {
  if (vec ? is_vec(t, n) : is_mat(t, n)) return true;
  char b[64];
  d2r_fail("%s: %s must be [%lld%s], got %s", fn, name, (long long)n,
           vec ? "" : ", n", d2r_shape_str(t, b, sizeof b));
  return false;
}

/* The order n of a square matrix argument, or -1 with a message. */
static int64_t order(const d2r_tensor *t, const char *fn, const char *name) {
  if (d2r_ndim(t) == 2 && d2r_dim(t, 0) == d2r_dim(t, 1))
    return d2r_dim(t, 0);
  char b[64];
  d2r_fail("%s: %s must be a square matrix [n, n], got %s", fn, name,
           d2r_shape_str(t, b, sizeof b));
  return -1;
}

static bool check_lambda(double lambda, bool zero_ok, const char *fn) {
  if (isfinite(lambda) && (lambda > 0 || (zero_ok && lambda == 0)))
    return true;
  d2r_fail("%s: lambda must be %s and finite, got %g", fn,
           zero_ok ? "non-negative" : "positive", lambda);
  return false;
}

/* t, or NULL with "fn: name: <message>" when t is NULL. */
static d2r_tensor *named(d2r_tensor *t, const char *fn, const char *name) {
  if (!t) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", d2r_error());
    d2r_fail("%s: %s: %s", fn, name, msg);
  }
  return t;
}

static d2r_tensor *reduce_joint(d2r_tensor *v, int64_t n, d2r_reduce r,
                                const char *fn) {
  if (!v) return NULL;
  if (r == D2R_REDUCE_SUM_DIMS) return d2r_retain(v);
  if (r == D2R_REDUCE_MEAN_DIMS) return d2r_muls(v, 1.0 / (double)n);
  return d2r_fail("%s: reduce must be by mean or sum over dimensions", fn);
}

/* ---- building blocks (within a scope) ---------------------------------- */

/* d^T A d for d [n] (0-d), or per row for d [N, n] ([N]). */
static d2r_tensor *quad(d2r_scope *sc, d2r_tensor *d, d2r_tensor *a) {
  d2r_tensor *da = d2r_keep(sc, d2r_matmul(d2r_ndim(d) == 1
                                           ? d2r_keep(sc, d2r_unsqueeze(d, 0))
                                           : d, a));
  if (d2r_ndim(d) == 1) da = d2r_keep(sc, d2r_squeeze(da, 0));
  return d2r_keep(sc, d2r_sum(d2r_keep(sc, d2r_mul(da, d)), -1, false));
}

/* tr(A B). */
static d2r_tensor *tr_prod(d2r_scope *sc, d2r_tensor *a, d2r_tensor *b) {
  return d2r_keep(sc, d2r_trace(d2r_keep(sc, d2r_matmul(a, b))));
}

/* A^-1 B for an SPD A, through its Cholesky factor; the failure names
 * the matrix. */
static d2r_tensor *spd_solve(d2r_scope *sc, d2r_tensor *a, d2r_tensor *b,
                             const char *fn, const char *name) {
  d2r_tensor *l = d2r_keep(sc, named(d2r_cholesky(a), fn, name));
  return d2r_keep(sc, d2r_cholesky_solve(l, b));
}

/* log det A for an SPD A, the failure naming the matrix. */
static d2r_tensor *logdet(d2r_scope *sc, d2r_tensor *a, const char *fn,
                          const char *name) {
  return d2r_keep(sc, named(d2r_logdet_spd(a), fn, name));
}

/* ---- the inner problem ------------------------------------------------- */

/* (c / 2) A^-1, symmetrised against rounding. */
static d2r_tensor *half_inverse(d2r_tensor *a, double c, const char *fn,
                                const char *name) {
  int64_t n = order(a, fn, name);
  if (n < 0) return NULL;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *inv = spd_solve(&s, a, KEEP(d2r_eye(n)), fn, name);
  d2r_tensor *out = d2r_muls(KEEP(d2r_sym(inv)), c / 2);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_theory_inner_cov(d2r_tensor *U, double lambda) {
  const char *fn = "theory_inner_cov";
  if (!U || !check_lambda(lambda, false, fn)) return NULL;
  return half_inverse(U, lambda, fn, "U");
}

d2r_tensor *d2r_theory_optimal_reward(d2r_tensor *Sigma, double lambda) {
  const char *fn = "theory_optimal_reward";
  if (!Sigma || !check_lambda(lambda, false, fn)) return NULL;
  return half_inverse(Sigma, lambda, fn, "Sigma");
}

d2r_tensor *d2r_theory_expected_reward(d2r_tensor *m, d2r_tensor *S,
                                       d2r_tensor *y, d2r_tensor *U) {
  const char *fn = "theory_expected_reward";
  if (!m || !S || !y || !U) return NULL;
  int64_t n = d2r_dim(m, 0);
  if (!check(m, n, true, fn, "m") || !check(S, n, false, fn, "S") ||
      !check(U, n, false, fn, "U"))
    return NULL;
  if (!is_vec(y, n) && !(d2r_ndim(y) == 2 && d2r_dim(y, 1) == n)) {
    char b[64];
    return d2r_fail("%s: y must be [%lld] or [N, %lld], got %s", fn,
                    (long long)n, (long long)n,
                    d2r_shape_str(y, b, sizeof b));
  }
  /* E (yhat - y)^T U (yhat - y) with yhat = m + e, E e = 0, E e e^T = S:
   * the cross terms vanish and E e^T U e = tr(U S). */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *q = quad(&s, KEEP(d2r_sub(m, y)), U);
  d2r_tensor *out = d2r_neg(KEEP(d2r_add(q, tr_prod(&s, U, S))));
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_theory_expected_reward_data(d2r_tensor *m, d2r_tensor *S,
                                            d2r_tensor *mu,
                                            d2r_tensor *Sigma,
                                            d2r_tensor *U) {
  const char *fn = "theory_expected_reward_data";
  if (!m || !S || !mu || !Sigma || !U) return NULL;
  int64_t n = d2r_dim(m, 0);
  if (!check(mu, n, true, fn, "mu") || !check(Sigma, n, false, fn, "Sigma"))
    return NULL;
  /* Averaging -(m - y)^T U (m - y) over y ~ N(mu, Sigma) adds -tr(U Sigma)
   * to the value at y = mu, by the same argument. */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *r = KEEP(d2r_theory_expected_reward(m, S, mu, U));
  d2r_tensor *out = r ? d2r_sub(r, tr_prod(&s, U, Sigma)) : NULL;
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_theory_entropy(d2r_tensor *S, d2r_reduce reduce) {
  const char *fn = "theory_entropy";
  if (!S) return NULL;
  int64_t n = order(S, fn, "S");
  if (n < 0) return NULL;
  /* (1/2) log det(2 pi e S) = (n/2) log(2 pi e) + (1/2) log det S. */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *ld = logdet(&s, S, fn, "S");
  d2r_tensor *h = KEEP(d2r_adds(KEEP(d2r_muls(ld, 0.5)),
                                0.5 * (double)n * (LOG_2PI + 1)));
  d2r_tensor *out = reduce_joint(h, n, reduce, fn);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_theory_inner_objective(d2r_tensor *m, d2r_tensor *S,
                                       d2r_tensor *mu, d2r_tensor *Sigma,
                                       d2r_tensor *U, double lambda) {
  const char *fn = "theory_inner_objective";
  if (!check_lambda(lambda, true, fn)) return NULL;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *r = KEEP(d2r_theory_expected_reward_data(m, S, mu, Sigma, U));
  d2r_tensor *h = KEEP(r ? d2r_theory_entropy(S, D2R_REDUCE_SUM_DIMS)
                         : NULL);
  d2r_tensor *out = d2r_add(r, KEEP(d2r_muls(h, lambda)));
  d2r_scope_end(&s);
  return out;
}

/* ---- the outer problem and divergences --------------------------------- */

d2r_tensor *d2r_theory_cross_entropy(d2r_tensor *mu, d2r_tensor *Sigma,
                                     d2r_tensor *m, d2r_tensor *S,
                                     d2r_reduce reduce) {
  const char *fn = "theory_cross_entropy";
  if (!mu || !Sigma || !m || !S) return NULL;
  int64_t n = d2r_dim(mu, 0);
  if (!check(mu, n, true, fn, "mu") || !check(Sigma, n, false, fn, "Sigma")
      || !check(m, n, true, fn, "m") || !check(S, n, false, fn, "S"))
    return NULL;
  /* E (y - m)^T S^-1 (y - m) = tr(S^-1 Sigma) + (mu - m)^T S^-1 (mu - m):
   * solve S X = [Sigma | mu - m] once and read both terms off X. */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *d = KEEP(d2r_sub(mu, m));
  d2r_tensor *l = KEEP(named(d2r_cholesky(S), fn, "S"));
  d2r_tensor *x = KEEP(d2r_cholesky_solve(l, Sigma));
  d2r_tensor *xd = KEEP(d2r_cholesky_solve(l, d));
  d2r_tensor *t = KEEP(d2r_trace(x));
  d2r_tensor *q = KEEP(d2r_sum_all(KEEP(d2r_mul(d, xd))));
  /* log det S = 2 sum log diag L. */
  d2r_tensor *ld = KEEP(d2r_muls(KEEP(d2r_sum_all(KEEP(d2r_log(
      KEEP(d2r_diag_part(l)))))), 2));
  d2r_tensor *sum = KEEP(d2r_add(KEEP(d2r_add(ld, t)), q));
  d2r_tensor *ce = KEEP(d2r_adds(KEEP(d2r_muls(sum, 0.5)),
                                 0.5 * (double)n * LOG_2PI));
  d2r_tensor *out = reduce_joint(ce, n, reduce, fn);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_theory_outer_objective(d2r_tensor *U, d2r_tensor *Sigma,
                                       double lambda, d2r_reduce reduce) {
  const char *fn = "theory_outer_objective";
  if (!U || !Sigma || !check_lambda(lambda, false, fn)) return NULL;
  int64_t n = order(U, fn, "U");
  if (n < 0 || !check(Sigma, n, false, fn, "Sigma")) return NULL;
  /* With S* = (lambda/2) U^-1: log det S* = n log(lambda/2) - log det U
   * and tr(S*^-1 Sigma) = (2/lambda) tr(U Sigma); the mean term is 0. */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *ld = logdet(&s, U, fn, "U");
  d2r_tensor *t = KEEP(d2r_muls(tr_prod(&s, U, Sigma), 2 / lambda));
  d2r_tensor *v = KEEP(d2r_sub(t, ld));
  double c = (double)n * (LOG_2PI + log(lambda / 2));
  d2r_tensor *f = KEEP(d2r_muls(KEEP(d2r_adds(v, c)), 0.5));
  d2r_tensor *out = reduce_joint(f, n, reduce, fn);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_theory_kl(d2r_tensor *m1, d2r_tensor *S1, d2r_tensor *m2,
                          d2r_tensor *S2) {
  const char *fn = "theory_kl";
  if (!m1 || !S1 || !m2 || !S2) return NULL;
  int64_t n = d2r_dim(m1, 0);
  if (!check(m1, n, true, fn, "m1") || !check(S1, n, false, fn, "S1") ||
      !check(m2, n, true, fn, "m2") || !check(S2, n, false, fn, "S2"))
    return NULL;
  /* KL = E_1[log p1 - log p2] = CE(p1, p2) - H(p1), where the entropy
   * H(p1) = (1/2) (n log(2 pi e) + log det S1): the closed form above. */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *ce = KEEP(d2r_theory_cross_entropy(m1, S1, m2, S2,
                                                 D2R_REDUCE_SUM_DIMS));
  d2r_tensor *h = KEEP(ce ? d2r_theory_entropy(S1, D2R_REDUCE_SUM_DIMS)
                          : NULL);
  d2r_tensor *out = d2r_sub(ce, h);
  d2r_scope_end(&s);
  return out;
}

/*
 * Plug-in estimates of the optimal Mahalanobis reward from training
 * targets (see closed_form.h for the formulas).
 */
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/closed_form.h"
#include "d2r/linalg.h"

d2r_tensor *d2r_covariance(d2r_tensor *y) {
  if (!y) return NULL;
  if (d2r_ndim(y) != 2 || d2r_dim(y, 0) < 2) {
    char buf[96];
    return d2r_fail("covariance: need targets [N, n] with N >= 2, got %s",
                    d2r_shape_str(y, buf, sizeof buf));
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *c = d2r_keep(&s, d2r_sub(y, d2r_keep(&s, d2r_mean(y, 0,
                                                               true))));
  d2r_tensor *ct = d2r_keep(&s, d2r_transpose(c, 0, 1));
  d2r_tensor *cov = d2r_muls(d2r_keep(&s, d2r_matmul(ct, c)),
                             1.0 / (double)(d2r_dim(y, 0) - 1));
  d2r_scope_end(&s);
  return cov;
}

static bool check_lambda(double lambda, const char *fn) {
  if (!(lambda > 0) || !isfinite(lambda)) {
    d2r_fail("%s: lambda must be positive and finite, got %g", fn, lambda);
    return false;
  }
  return true;
}

/* Per-dimension unbiased variances of y [N, n]. */
static d2r_tensor *variances(d2r_tensor *y, const char *fn) {
  if (!y) return NULL;
  if (d2r_ndim(y) != 2 || d2r_dim(y, 0) < 2) {
    char buf[96];
    return d2r_fail("%s: need targets [N, n] with N >= 2, got %s", fn,
                    d2r_shape_str(y, buf, sizeof buf));
  }
  return d2r_var(y, 0, false, 1);
}

d2r_tensor *d2r_reward_isotropic(d2r_tensor *y, double lambda) {
  if (!check_lambda(lambda, "reward_isotropic")) return NULL;
  d2r_tensor *v = variances(y, "reward_isotropic");
  if (!v) return NULL;
  d2r_tensor *tr = d2r_sum_all(v);
  double t = d2r_item(tr);
  int64_t n = d2r_numel(v);
  d2r_release(v), d2r_release(tr);
  if (!(t > 0) || !isfinite(t))
    return d2r_fail("reward_isotropic: the targets' covariance has trace "
                    "%g; the reward is undefined", t);
  return d2r_scalar(lambda * (double)n / (2 * t));
}

d2r_tensor *d2r_reward_diagonal(d2r_tensor *y, double lambda) {
  if (!check_lambda(lambda, "reward_diagonal")) return NULL;
  d2r_tensor *v = variances(y, "reward_diagonal");
  if (!v) return NULL;
  d2r_tensor *u = d2r_contiguous(v);
  d2r_release(v);
  if (!u) return NULL;
  double *p = d2r_data(u);
  for (int64_t i = 0; i < d2r_numel(u); i++) {
    if (!(p[i] > 0) || !isfinite(p[i])) {
      double bad = p[i];
      d2r_release(u);
      return d2r_fail("reward_diagonal: target dimension %lld has variance "
                      "%g; its weight is undefined", (long long)i + 1, bad);
    }
    p[i] = lambda / (2 * p[i]);
  }
  return u;
}

/* The options the two pseudo-inverses share: null_weight >= 0 and
 * finite, rtol in (0, 1) with <= 0 (or NaN) selecting 1e-6. */
static bool pinv_options(double *rtol, double null_weight, const char *fn) {
  if (!(null_weight >= 0) || !isfinite(null_weight)) {
    d2r_fail("%s: null_weight must be >= 0 and finite, got %g", fn,
             null_weight);
    return false;
  }
  if (!(*rtol > 0)) *rtol = 1e-6;
  if (!(*rtol < 1)) {
    d2r_fail("%s: rtol must be in (0, 1), got %g", fn, *rtol);
    return false;
  }
  return true;
}

d2r_tensor *d2r_reward_diagonal_pinv(d2r_tensor *y, double lambda,
                                     double rtol, double null_weight) {
  if (!check_lambda(lambda, "reward_diagonal_pinv") ||
      !pinv_options(&rtol, null_weight, "reward_diagonal_pinv"))
    return NULL;
  d2r_tensor *v = variances(y, "reward_diagonal_pinv");
  d2r_tensor *u = v ? d2r_contiguous(v) : NULL;
  d2r_release(v);
  if (!u) return NULL;
  double *p = d2r_data(u), top = 0;
  int64_t n = d2r_numel(u);
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(p[i])) {
      d2r_release(u);
      return d2r_fail("reward_diagonal_pinv: target dimension %lld has "
                      "variance %g", (long long)i + 1, p[i]);
    }
    top = fmax(top, p[i]);
  }
  if (!(top > 0)) {
    d2r_release(u);
    return d2r_fail("reward_diagonal_pinv: the targets do not vary");
  }
  for (int64_t i = 0; i < n; i++)
    p[i] = p[i] > rtol * top ? lambda / (2 * p[i]) : null_weight;
  return u;
}

int d2r_reward_onehot_beta(const d2r_tensor *labels, int64_t classes,
                           double lambda, double *beta) {
  if (!labels) return -1;
  if (!check_lambda(lambda, "reward_onehot_beta")) return -1;
  d2r_tensor *oh = d2r_one_hot(labels, classes);
  if (!oh) return -1;
  if (d2r_ndim(oh) != 2) {
    d2r_release(oh);
    d2r_fail("reward_onehot_beta: labels must be 1-d");
    return -1;
  }
  d2r_tensor *v = variances(oh, "reward_onehot_beta");
  d2r_tensor *tr = d2r_sum_all(v);
  double t = tr ? d2r_item(tr) : NAN;
  d2r_release(oh), d2r_release(v), d2r_release(tr);
  if (!tr) return -1;
  if (!(t > 0)) {
    d2r_fail("reward_onehot_beta: every label is the same class; beta is "
             "undefined");
    return -1;
  }
  *beta = lambda * (double)classes / (2 * t);
  return 0;
}

/* ---- the full reward ------------------------------------------------- */

/* Sigma + ridge I, or sigma itself (retained) when ridge is 0. */
static d2r_tensor *with_ridge(d2r_tensor *sigma, double ridge) {
  if (ridge == 0) return d2r_retain(sigma);
  d2r_tensor *eye = d2r_eye(d2r_dim(sigma, 0));
  d2r_tensor *r = d2r_muls(eye, ridge);
  d2r_tensor *out = d2r_add(sigma, r);
  d2r_release(eye), d2r_release(r);
  return out;
}

/* Checks that a is positive definite with cond_1(a) <= max_cond, setting
 * *cond; false with a message otherwise. */
static bool well_conditioned(const d2r_tensor *a, double ridge,
                             double max_cond, double *cond) {
  double rc = 0;
  int ok = d2r_spd_check(a, &rc);
  if (ok != 1) {
    char why[256];
    snprintf(why, sizeof why, "%s", d2r_error());
    *cond = INFINITY;
    d2r_fail("reward_full: the covariance (ridge %g) is not positive "
             "definite, so it is singular (%s): too few targets for the "
             "dimensions, or a constant or collinear dimension; condition "
             "estimate infinite; pass a ridge > 0", ridge, why);
    return false;
  }
  *cond = 1 / rc;
  if (!(*cond <= max_cond)) {
    d2r_fail("reward_full: the covariance (ridge %g) is ill-conditioned: "
             "condition estimate %.3g exceeds %.3g, and its inverse would "
             "amplify estimation noise as much; pass a ridge > 0",
             ridge, *cond, max_cond);
    return false;
  }
  return true;
}

d2r_tensor *d2r_reward_full_from_cov(d2r_tensor *sigma, double lambda,
                                     double ridge, double max_cond,
                                     double *cond) {
  double c = NAN;
  d2r_tensor *u = NULL;
  if (cond) *cond = NAN;
  if (!sigma || !check_lambda(lambda, "reward_full")) return NULL;
  if (!(ridge >= 0) || !isfinite(ridge))
    return d2r_fail("reward_full: ridge must be >= 0 and finite, got %g",
                    ridge);
  if (d2r_ndim(sigma) != 2 || d2r_dim(sigma, 0) != d2r_dim(sigma, 1)) {
    char buf[96];
    return d2r_fail("reward_full: the covariance must be [n, n], got %s",
                    d2r_shape_str(sigma, buf, sizeof buf));
  }
  if (!(max_cond > 0)) max_cond = D2R_REWARD_MAX_COND;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *a = d2r_keep(&s, with_ridge(sigma, ridge));
  if (a && well_conditioned(a, ridge, max_cond, &c)) {
    /* A^-1 from the Cholesky factor (two triangular solves against I),
     * symmetrised against rounding, times lambda / 2. */
    d2r_tensor *l = d2r_keep(&s, d2r_cholesky(a));
    d2r_tensor *eye = d2r_keep(&s, d2r_eye(d2r_dim(a, 0)));
    d2r_tensor *inv = d2r_keep(&s, d2r_cholesky_solve(l, eye));
    u = d2r_muls(d2r_keep(&s, d2r_sym(inv)), lambda / 2);
  }
  d2r_scope_end(&s);
  if (cond) *cond = c;
  return u;
}

d2r_tensor *d2r_reward_full(d2r_tensor *y, double lambda, double ridge,
                            double max_cond, double *cond) {
  if (cond) *cond = NAN;
  if (!y) return NULL;
  d2r_tensor *sigma = d2r_covariance(y);
  if (!sigma) return NULL;
  d2r_tensor *u = d2r_reward_full_from_cov(sigma, lambda, ridge, max_cond,
                                           cond);
  d2r_release(sigma);
  return u;
}

d2r_tensor *d2r_reward_full_pinv(d2r_tensor *sigma, double lambda,
                                 double rtol, double null_weight,
                                 int64_t *dropped) {
  if (dropped) *dropped = 0;
  if (!sigma || !check_lambda(lambda, "reward_full_pinv") ||
      !pinv_options(&rtol, null_weight, "reward_full_pinv"))
    return NULL;
  int64_t n = d2r_ndim(sigma) == 2 ? d2r_dim(sigma, 0) : -1;
  if (n < 1 || d2r_dim(sigma, 1) != n) {
    char buf[96];
    return d2r_fail("reward_full_pinv: the covariance must be [n, n], "
                    "got %s", d2r_shape_str(sigma, buf, sizeof buf));
  }
  d2r_tensor *c = d2r_contiguous(sigma);
  if (!c) return NULL;
  const double *sv = d2r_data(c);
  for (int64_t i = 0; i < n * n; i++) {
    int64_t r = i / n, k = i % n;
    double a = sv[i], b = sv[k * n + r];
    if (!isfinite(a) || fabs(a - b) > 1e-9 * (fabs(a) + fabs(b))) {
      d2r_release(c);
      return d2r_fail("reward_full_pinv: the covariance is %s at [%lld, "
                      "%lld]", isfinite(a) ? "not symmetric" : "not finite",
                      (long long)r + 1, (long long)k + 1);
    }
  }
  /* GSL reports (rather than aborts on) a failed allocation or solve;
   * gsl_eigen_symmv overwrites its input, so it works on a copy. */
  gsl_error_handler_t *old = gsl_set_error_handler_off();
  gsl_matrix *a = gsl_matrix_alloc((size_t)n, (size_t)n);
  gsl_matrix *v = gsl_matrix_alloc((size_t)n, (size_t)n);
  gsl_vector *e = gsl_vector_alloc((size_t)n);
  gsl_eigen_symmv_workspace *w = gsl_eigen_symmv_alloc((size_t)n);
  d2r_tensor *u = NULL;
  if (!a || !v || !e || !w) {
    d2r_fail("reward_full_pinv: out of memory");
    goto done;
  }
  memcpy(a->data, sv, (size_t)(n * n) * sizeof(double));
  int rc = gsl_eigen_symmv(a, e, v, w);
  if (rc != GSL_SUCCESS) {
    d2r_fail("reward_full_pinv: eigendecomposition failed (%s)",
             gsl_strerror(rc));
    goto done;
  }
  double top = 0;
  for (int64_t i = 0; i < n; i++)
    top = fmax(top, gsl_vector_get(e, (size_t)i));
  if (!(top > 0)) {
    d2r_fail("reward_full_pinv: the targets do not vary (Sigma has no "
             "positive eigenvalue)");
    goto done;
  }
  int64_t shape[2] = {n, n};
  u = d2r_zeros(2, shape);
  if (!u) goto done;
  /* U = sum_i w_i v_i v_i^T with w_i = lambda / (2 e_i) over the kept
   * eigenvalues and null_weight over the others. */
  double *pu = d2r_data(u);
  for (int64_t i = 0; i < n; i++) {
    double ei = gsl_vector_get(e, (size_t)i);
    double wgt = lambda / (2 * ei);
    if (ei <= rtol * top) {
      if (dropped) (*dropped)++;
      wgt = null_weight;
    }
    for (int64_t r = 0; r < n; r++) {
      double vr = gsl_matrix_get(v, (size_t)r, (size_t)i) * wgt;
      for (int64_t k = 0; k < n; k++)
        pu[r * n + k] += vr * gsl_matrix_get(v, (size_t)k, (size_t)i);
    }
  }
  /* Exactly symmetric, against rounding. */
  for (int64_t r = 0; r < n; r++)
    for (int64_t k = r + 1; k < n; k++)
      pu[r * n + k] = pu[k * n + r] = 0.5 * (pu[r * n + k] + pu[k * n + r]);
done:
  gsl_eigen_symmv_free(w);
  gsl_vector_free(e);
  gsl_matrix_free(v);
  gsl_matrix_free(a);
  gsl_set_error_handler(old);
  d2r_release(c);
  return u;
}

/*
 * Plug-in estimates of the optimal Mahalanobis reward from training
 * targets (see closed_form.h for the formulas).
 */
#include <math.h>

#include "d2r/closed_form.h"

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

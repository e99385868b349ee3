/*
 * Mahalanobis rewards, likelihood losses, reward transforms and baselines,
 * and the policy-gradient surrogates, as compositions of the
 * differentiable operations of tensor.h.  Where nothing they compute is
 * differentiated further (a constant U, constant rewards), the one-hot
 * reward, the transforms and the score-function term run as single
 * loops instead, with the op chains' arithmetic, so the numbers are the
 * same to the last bit.
 */
#include "d2r/objective.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "tensor_impl.h"

/* ---- helpers --------------------------------------------------------- */

/* The kind of a reward matrix for n dimensions: 0 for a scalar u
 * (U = u I), 1 for a diagonal [n], 2 for a full [n, n]; -1 (with a
 * message) for anything else. */
static int u_kind(const d2r_tensor *U, int64_t n, const char *fn)
{
  int nd = d2r_ndim(U);
  if (nd == 0 || (nd == 1 && d2r_dim(U, 0) == 1))
    return 0;
  if (nd == 1 && d2r_dim(U, 0) == n)
    return 1;
  if (nd == 2 && d2r_dim(U, 0) == n && d2r_dim(U, 1) == n)
    return 2;
  char buf[64];
  d2r_fail("%s: U must be a scalar, [%lld] or [%lld, %lld], got %s", fn,
           (long long)n, (long long)n, (long long)n,
           d2r_shape_str(U, buf, sizeof buf));
  return -1;
}

/* ---- Mahalanobis reward on vectors ----------------------------------- */

/* q = d^T U d along the last axis of d, for U of the given kind. */
static d2r_tensor *quad_form(d2r_scope *s, d2r_tensor *d, d2r_tensor *U,
                             int kind)
{
  if (kind == 0) {
    /* u |d|^2 */
    d2r_tensor *sq = d2r_keep(s, d2r_sum(d2r_keep(s, d2r_square(d)), -1,
                                         false));
    return d2r_keep(s, d2r_mul(sq, U));
  }
  if (kind == 1) {
    /* sum_i U_i d_i^2 */
    d2r_tensor *w = d2r_keep(s, d2r_mul(d2r_keep(s, d2r_square(d)), U));
    return d2r_keep(s, d2r_sum(w, -1, false));
  }
  /* sum_i d_i (d U)_i = sum_ij d_j U_ji d_i, i.e. d^T U d for a row d. */
  d2r_tensor *du = d2r_keep(s, d2r_matmul(d, U));
  return d2r_keep(s, d2r_sum(d2r_keep(s, d2r_mul(du, d)), -1, false));
}

static bool check_reward_shapes(const d2r_tensor *yhat, const d2r_tensor *y)
{
  int nh = d2r_ndim(yhat);
  if (d2r_ndim(y) == 2 && (nh == 2 || nh == 3) &&
      d2r_dim(yhat, 0) == d2r_dim(y, 0) && d2r_dim(yhat, -1) == d2r_dim(y, 1))
    return true;
  char b1[64], b2[64];
  d2r_fail("mahalanobis_reward: yhat must be [B, G, n] or [B, n] and y "
           "[B, n], got %s and %s", d2r_shape_str(yhat, b1, sizeof b1),
           d2r_shape_str(y, b2, sizeof b2));
  return false;
}

/* The reward of a scalar or diagonal U in one pass, for when nothing is
 * differentiated (the policy-gradient case: samples, targets and U are
 * all constants); the op chain would make five passes over [B, G, n]. */
static d2r_tensor *reward_values(d2r_tensor *yhat, d2r_tensor *y,
                                 d2r_tensor *U, int kind)
{
  int64_t b = d2r_dim(y, 0), n = d2r_dim(y, 1);
  int64_t draws = d2r_ndim(yhat) == 3 ? d2r_dim(yhat, 1) : 1;
  int64_t shape[2] = {b, draws};
  d2r_tensor *yh = d2r_contiguous(yhat), *yc = d2r_contiguous(y);
  d2r_tensor *uc = d2r_contiguous(U);
  d2r_tensor *out = yh && yc && uc ? d2r_zeros(d2r_ndim(yhat) - 1, shape)
                                   : NULL;
  if (out) {
    const double *ph = d2r_data(yh), *pu = d2r_data(uc);
    double *o = d2r_data(out);
    for (int64_t i = 0; i < b; i++) {
      const double *t = d2r_data(yc) + i * n;
      for (int64_t g = 0; g < draws; g++, ph += n) {
        double q = 0;
        for (int64_t j = 0; j < n; j++) {
          double d = ph[j] - t[j];
          q += kind == 0 ? d * d : d * d * pu[j];
        }
        *o++ = kind == 0 ? -(q * pu[0]) : -q;
      }
    }
  }
  d2r_release(yh);
  d2r_release(yc);
  d2r_release(uc);
  return out;
}

d2r_tensor *d2r_mahalanobis_reward(d2r_tensor *yhat, d2r_tensor *y,
                                   d2r_tensor *U)
{
  if (!yhat || !y || !U || !check_reward_shapes(yhat, y))
    return NULL;
  int kind = u_kind(U, d2r_dim(y, 1), "mahalanobis_reward");
  if (kind < 0)
    return NULL;
  bool differentiated = d2r_grad_enabled() &&
      (d2r_requires_grad(yhat) || d2r_requires_grad(y) ||
       d2r_requires_grad(U));
  if (kind < 2 && !differentiated)
    return reward_values(yhat, y, U, kind);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *target = d2r_ndim(yhat) == 3 ? d2r_unsqueeze(y, 1)
                                           : d2r_retain(y);
  d2r_tensor *d = d2r_keep(&s, d2r_sub(yhat, d2r_keep(&s, target)));
  d2r_tensor *out = d2r_neg(quad_form(&s, d, U, kind));
  d2r_scope_end(&s);
  return out;
}

/* ---- Mahalanobis reward on one-hot classes --------------------------- */

/* v[idx] for a vector v [C] and integer-valued idx of any shape: idx's
 * shape, differentiable in v. */
static d2r_tensor *pick(d2r_scope *s, d2r_tensor *v, d2r_tensor *idx)
{
  int64_t flat_shape[1] = {-1}, col_shape[2] = {-1, 1};
  d2r_tensor *col = d2r_keep(s, d2r_reshape(v, 2, col_shape));
  d2r_tensor *flat = d2r_keep(s, d2r_reshape(idx, 1, flat_shape));
  d2r_tensor *rows = d2r_keep(s, d2r_take_rows(col, flat));
  return d2r_keep(s, d2r_reshape(rows, d2r_ndim(idx), d2r_shape(idx)));
}

/* The diagonal of a square matrix as a vector, differentiable: the
 * elements i (n + 1) of U flattened.  (A product with the identity
 * would turn an infinite entry off the diagonal into a NaN on it.) */
static d2r_tensor *diagonal(d2r_scope *s, d2r_tensor *U)
{
  int64_t n = d2r_dim(U, 0), flat[1] = {n * n};
  double size = (double)(n * n), step = (double)(n + 1);
  d2r_tensor *at = d2r_keep(s, d2r_arange(0, size, step));
  return pick(s, d2r_keep(s, d2r_reshape(U, 1, flat)), at);
}

/*
 * (e_s - e_y)^T U (e_s - e_y) = U_ss + U_yy - U_sy - U_ys for samples
 * s [B, G] and labels y (as ycol [B, 1]); zero when s == y, which the
 * mask `wrong` makes exact.  For a diagonal U only U_ss + U_yy remains.
 */
static d2r_tensor *onehot_quad(d2r_scope *s, d2r_tensor *U, int kind,
                               d2r_tensor *smp, d2r_tensor *lab,
                               d2r_tensor *ycol, d2r_tensor *wrong)
{
  if (kind == 0)
    return d2r_keep(s, d2r_mul(wrong, d2r_keep(s, d2r_muls(U, 2.0))));
  d2r_tensor *diag = kind == 1 ? U : diagonal(s, U);
  d2r_tensor *q = d2r_keep(s, d2r_add(pick(s, diag, smp),
                                      pick(s, diag, ycol)));
  if (kind == 2) {
    /* U_sy + U_ys = (U + U^T)_ys: row y of the symmetrised matrix. */
    d2r_tensor *ut = d2r_keep(s, d2r_transpose(U, 0, 1));
    d2r_tensor *w = d2r_keep(s, d2r_add(U, ut));
    d2r_tensor *wy = d2r_keep(s, d2r_take_rows(w, lab));
    d2r_tensor *cross = d2r_keep(s, d2r_gather(wy, 1, smp));
    q = d2r_keep(s, d2r_sub(q, cross));
  }
  return d2r_keep(s, d2r_mul(wrong, q));
}

static bool check_onehot_shapes(const d2r_tensor *samples,
                                const d2r_tensor *labels, int64_t classes,
                                const char *fn)
{
  char b1[64], b2[64];
  if (classes < 1) {
    d2r_fail("%s: classes must be >= 1, got %lld", fn, (long long)classes);
    return false;
  }
  if (d2r_ndim(samples) == 2 && d2r_ndim(labels) == 1 &&
      d2r_dim(samples, 0) == d2r_dim(labels, 0))
    return true;
  d2r_fail("%s: samples must be [B, G] and labels [B], got %s and %s", fn,
           d2r_shape_str(samples, b1, sizeof b1),
           d2r_shape_str(labels, b2, sizeof b2));
  return false;
}

/* The reward in one pass over [B, G] when U is not differentiated: the
 * same arithmetic as onehot_quad, without its chain of temporaries. */
static d2r_tensor *onehot_values(const d2r_tensor *samples,
                                 const d2r_tensor *labels, int64_t classes,
                                 d2r_tensor *U, int kind, const char *fn)
{
  int64_t b = d2r_dim(samples, 0), draws = d2r_dim(samples, 1);
  d2r_tensor *sc = d2r_contiguous((d2r_tensor *)samples);
  d2r_tensor *lc = sc ? d2r_contiguous((d2r_tensor *)labels) : NULL;
  d2r_tensor *uc = lc ? d2r_contiguous(U) : NULL;
  d2r_tensor *out = uc ? d2r_empty(2, d2r_shape(samples)) : NULL;
  char smsg[96], lmsg[96];
  snprintf(smsg, sizeof smsg, "%s: samples: class index", fn);
  snprintf(lmsg, sizeof lmsg, "%s: labels: class index", fn);
  bool ok = out &&
            d2r_check_index_values(d2r_data(sc), b * draws, classes,
                                   smsg) == 0 &&
            d2r_check_index_values(d2r_data(lc), b, classes, lmsg) == 0;
  const double *ps = ok ? d2r_data(sc) : NULL, *pl = ok ? d2r_data(lc)
                                                        : NULL;
  const double *u = ok ? d2r_data(uc) : NULL;
  double *o = ok ? d2r_data(out) : NULL;
  for (int64_t i = 0; ok && i < b; i++) {
    int64_t y = (int64_t)pl[i];
    for (int64_t j = 0; j < draws; j++, ps++, o++) {
      int64_t k = (int64_t)*ps;
      double wrong = k != y, q;
      if (kind == 0)
        q = u[0] * 2.0;
      else if (kind == 1)
        q = u[k] + u[y];
      else
        q = (u[k * classes + k] + u[y * classes + y]) -
            (u[y * classes + k] + u[k * classes + y]);
      *o = -(wrong * q);
    }
  }
  d2r_release(sc);
  d2r_release(lc);
  d2r_release(uc);
  if (!ok) {
    d2r_release(out);
    return NULL;
  }
  return d2r_watch(out, fn, 1, &U);
}

/* d2r_onehot_reward, reporting failures as fn's. */
static d2r_tensor *onehot_reward_as(const d2r_tensor *samples,
                                    const d2r_tensor *labels,
                                    int64_t classes, d2r_tensor *U,
                                    const char *fn)
{
  if (!samples || !labels || !U ||
      !check_onehot_shapes(samples, labels, classes, fn))
    return NULL;
  int kind = u_kind(U, classes, fn);
  if (kind < 0)
    return NULL;
  if (!(d2r_grad_enabled() && d2r_requires_grad(U)))
    return onehot_values(samples, labels, classes, U, kind, fn);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *smp = d2r_keep(&s, d2r_class_indices_for(samples, classes,
                                                       fn, "samples"));
  d2r_tensor *lab = d2r_keep(&s, smp ? d2r_class_indices_for(labels,
                                         classes, fn, "labels") : NULL);
  d2r_tensor *ycol = d2r_keep(&s, d2r_unsqueeze(lab, 1));
  d2r_tensor *wrong = d2r_keep(&s, d2r_ne(smp, ycol));
  d2r_tensor *q = wrong ? onehot_quad(&s, U, kind, smp, lab, ycol, wrong)
                        : NULL;
  d2r_tensor *out = d2r_neg(q);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_onehot_reward(const d2r_tensor *samples,
                              const d2r_tensor *labels, int64_t classes,
                              d2r_tensor *U)
{
  return onehot_reward_as(samples, labels, classes, U, "onehot_reward");
}

d2r_tensor *d2r_onehot_reward_classes(const d2r_tensor *labels,
                                      int64_t classes, d2r_tensor *U)
{
  if (!labels || !U)
    return NULL;
  if (d2r_ndim(labels) != 1 || classes < 1) {
    char buf[64];
    return d2r_fail("onehot_reward_classes: labels must be [B] and classes "
                    ">= 1, got %s and %lld",
                    d2r_shape_str(labels, buf, sizeof buf),
                    (long long)classes);
  }
  int64_t shape[2] = {d2r_dim(labels, 0), classes};
  d2r_tensor *grid = d2r_empty(2, shape);
  if (!grid)
    return NULL;
  double *v = d2r_data(grid);
  for (int64_t i = 0; i < shape[0]; i++)
    for (int64_t k = 0; k < classes; k++)
      v[i * classes + k] = (double)k;
  d2r_tensor *out = onehot_reward_as(grid, labels, classes, U,
                                     "onehot_reward_classes");
  d2r_release(grid);
  return out;
}

/* ---- likelihood and regression losses -------------------------------- */

d2r_tensor *d2r_cross_entropy(d2r_tensor *logits, const d2r_tensor *labels)
{
  const char *fn = "cross_entropy";
  if (!logits || !labels)
    return NULL;
  if (d2r_ndim(logits) != 2 || d2r_ndim(labels) != 1 ||
      d2r_dim(labels, 0) != d2r_dim(logits, 0)) {
    char b1[64], b2[64];
    return d2r_fail("%s: logits must be [B, C] and labels [B], got %s and "
                    "%s", fn, d2r_shape_str(logits, b1, sizeof b1),
                    d2r_shape_str(labels, b2, sizeof b2));
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *lab = d2r_keep(&s, d2r_class_indices_for(labels,
                                   d2r_dim(logits, 1), fn, "labels"));
  d2r_tensor *ycol = d2r_keep(&s, d2r_unsqueeze(lab, 1));
  d2r_tensor *lsm = d2r_keep(&s, ycol ? d2r_log_softmax(logits, 1) : NULL);
  d2r_tensor *lp = d2r_keep(&s, d2r_gather(lsm, 1, ycol));
  d2r_tensor *out = d2r_neg(d2r_keep(&s, d2r_mean_all(lp)));
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_gaussian_nll(d2r_tensor *mean, d2r_tensor *log_std,
                             d2r_tensor *y, d2r_reduce reduce)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *lp = d2r_keep(&s, d2r_gaussian_log_prob(mean, log_std, y,
                                                      reduce));
  d2r_tensor *avg;
  if (lp && reduce == D2R_REDUCE_NONE) {
    /* Per-dimension NLL: average every row (and target) per dimension. */
    int64_t shape[2] = {-1, d2r_dim(lp, -1)};
    d2r_tensor *rows = d2r_keep(&s, d2r_reshape(lp, 2, shape));
    avg = d2r_keep(&s, d2r_mean(rows, 0, false));
  } else {
    avg = d2r_keep(&s, d2r_mean_all(lp));
  }
  d2r_tensor *out = d2r_neg(avg);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_mse(d2r_tensor *pred, d2r_tensor *target)
{
  if (!pred || !target)
    return NULL;
  if (!d2r_same_shape(pred, target)) {
    char b1[64], b2[64];
    return d2r_fail("mse: shapes differ: %s and %s",
                    d2r_shape_str(pred, b1, sizeof b1),
                    d2r_shape_str(target, b2, sizeof b2));
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *d = d2r_keep(&s, d2r_sub(pred, target));
  d2r_tensor *out = d2r_mean_all(d2r_keep(&s, d2r_square(d)));
  d2r_scope_end(&s);
  return out;
}

/* ---- transforms and baselines ---------------------------------------- */

d2r_pg_options d2r_pg_options_default(void)
{
  d2r_pg_options opt = D2R_PG_OPTIONS_INIT;
  return opt;
}

static bool check_options(const d2r_pg_options *o)
{
  if (o->transform != D2R_TRANSFORM_NONE &&
      o->transform != D2R_TRANSFORM_MIN_SHIFT &&
      o->transform != D2R_TRANSFORM_RBF)
    d2r_fail("pg options: unknown transform %d", (int)o->transform);
  else if (o->baseline != D2R_BASELINE_NONE &&
           o->baseline != D2R_BASELINE_MEAN &&
           o->baseline != D2R_BASELINE_MEAN_STD &&
           o->baseline != D2R_BASELINE_LOO)
    d2r_fail("pg options: unknown baseline %d", (int)o->baseline);
  else if (!isfinite(o->gamma))
    d2r_fail("pg options: gamma must be finite, got %g", o->gamma);
  else if (!(o->std_eps >= 0) || !isfinite(o->std_eps))
    d2r_fail("pg options: std_eps must be >= 0, got %g", o->std_eps);
  else if (!(o->clip >= 0))
    d2r_fail("pg options: clip must be >= 0, got %g", o->clip);
  else
    return true;
  return false;
}

static d2r_tensor *apply_transform(d2r_scope *s, d2r_tensor *r,
                                   const d2r_pg_options *o)
{
  switch (o->transform) {
  case D2R_TRANSFORM_MIN_SHIFT:
    return d2r_keep(s, d2r_sub(r, d2r_keep(s, d2r_min(r, 1, true))));
  case D2R_TRANSFORM_RBF:
    return d2r_keep(s, d2r_exp(d2r_keep(s, d2r_muls(r, o->gamma))));
  default:
    return r;
  }
}

/* dev / (sqrt(var) + eps) for each row whose spread is positive, and 0
 * for a row whose values are all equal: its spread is 0 in exact
 * arithmetic, while rounding in the mean could leave a tiny deviation
 * that would blow up.  The square root is taken of a live row's
 * variance only: at a variance of 0 its derivative is infinite, and 0
 * times that would put a NaN in the reward's gradient although the
 * row's value is 0.  dev [B, G], var and spread [B, 1]. */
static d2r_tensor *standardise(d2r_scope *s, d2r_tensor *dev, d2r_tensor *var,
                               d2r_tensor *spread, double eps)
{
  d2r_tensor *zero = d2r_keep(s, d2r_scalar(0.0));
  d2r_tensor *one = d2r_keep(s, d2r_scalar(1.0));
  d2r_tensor *live = d2r_keep(s, d2r_gt(spread, zero));
  d2r_tensor *sd = d2r_keep(s, d2r_sqrt(d2r_keep(s, d2r_where(live, var,
                                                              one))));
  d2r_tensor *den = d2r_keep(s, d2r_where(live, d2r_keep(s, d2r_adds(sd,
                                                                   eps)),
                                          one));
  d2r_tensor *z = d2r_keep(s, d2r_div(dev, den));
  return d2r_keep(s, d2r_where(live, z, zero));
}

/* (t - mean) / (std + eps) per row (std unbiased), 0 for a row whose
 * values are all equal. */
static d2r_tensor *mean_std(d2r_scope *s, d2r_tensor *t, double eps)
{
  d2r_tensor *c = d2r_keep(s, d2r_sub(t, d2r_keep(s, d2r_mean(t, 1, true))));
  if (d2r_dim(t, 1) < 2)
    return c;  /* one sample: t - t = 0 exactly */
  d2r_tensor *var = d2r_keep(s, d2r_var(t, 1, true, 1));
  d2r_tensor *spread = d2r_keep(s, d2r_sub(d2r_keep(s, d2r_max(t, 1, true)),
                                           d2r_keep(s, d2r_min(t, 1, true))));
  return standardise(s, c, var, spread, eps);
}

/* t_g - (sum_k t_k - t_g) / (G - 1): each sample against the mean of the
 * other G - 1 of its group. */
static d2r_tensor *leave_one_out(d2r_scope *s, d2r_tensor *t)
{
  double g = (double)d2r_dim(t, 1);
  d2r_tensor *sum = d2r_keep(s, d2r_sum(t, 1, true));
  d2r_tensor *others = d2r_keep(s, d2r_sub(sum, t));
  return d2r_keep(s, d2r_sub(t, d2r_keep(s, d2r_muls(others,
                                                      1.0 / (g - 1.0)))));
}

static d2r_tensor *apply_baseline(d2r_scope *s, d2r_tensor *t,
                                  const d2r_pg_options *o)
{
  if (!t)
    return NULL;
  switch (o->baseline) {
  case D2R_BASELINE_MEAN:
    return d2r_keep(s, d2r_sub(t, d2r_keep(s, d2r_mean(t, 1, true))));
  case D2R_BASELINE_MEAN_STD:
    return mean_std(s, t, o->std_eps);
  case D2R_BASELINE_LOO:
    return leave_one_out(s, t);
  default:
    return t;
  }
}

static bool check_reward(const d2r_tensor *reward, const d2r_pg_options *o)
{
  char buf[64];
  if (d2r_ndim(reward) != 2)
    d2r_fail("pg_transform: reward must be [B, G], got %s",
             d2r_shape_str(reward, buf, sizeof buf));
  else if (o->baseline == D2R_BASELINE_LOO && d2r_dim(reward, 1) < 2)
    d2r_fail("pg_transform: the leave-one-out baseline needs G >= 2, "
             "got G = %lld", (long long)d2r_dim(reward, 1));
  else
    return true;
  return false;
}

/* Whether the transform and baseline can run as the loop of
 * transform_rows: constant rewards, a non-empty group and a baseline
 * other than mean_std (whose guard against a zero spread stays with the
 * op chain). */
static bool plain_rows(const d2r_tensor *reward, const d2r_pg_options *o)
{
  return !o->reward_grad && o->baseline != D2R_BASELINE_MEAN_STD &&
         d2r_dim(reward, 1) > 0;
}

/* The transformed and baselined rewards as a fresh constant tensor, one
 * row at a time, with the arithmetic of apply_transform and
 * apply_baseline's op chains (the same sums in the same order), so the
 * numbers are the chain's. */
static d2r_tensor *transform_rows(d2r_tensor *reward, const d2r_pg_options *o)
{
  int64_t b = d2r_dim(reward, 0), g = d2r_dim(reward, 1);
  d2r_tensor *out = d2r_empty(2, d2r_shape(reward));
  if (!out || d2r_copy_(out, reward) != 0) {
    d2r_release(out);
    return NULL;
  }
  double *t = d2r_data(out);
  double loo = 1.0 / ((double)g - 1.0), mean = 1.0 / (double)g;
  for (int64_t i = 0; i < b; i++, t += g) {
    if (o->transform == D2R_TRANSFORM_MIN_SHIFT) {
      double m = t[0];
      for (int64_t j = 1; j < g; j++)
        m = t[j] < m ? t[j] : m;
      for (int64_t j = 0; j < g; j++)
        t[j] = t[j] - m;
    } else if (o->transform == D2R_TRANSFORM_RBF) {
      for (int64_t j = 0; j < g; j++)
        t[j] = exp(t[j] * o->gamma);
    }
    if (o->baseline == D2R_BASELINE_MEAN) {
      double m = d2r_sum_lanes(t, g) * mean;
      for (int64_t j = 0; j < g; j++)
        t[j] = t[j] - m;
    } else if (o->baseline == D2R_BASELINE_LOO) {
      double sum = d2r_sum_lanes(t, g);
      for (int64_t j = 0; j < g; j++)
        t[j] = t[j] - (sum - t[j]) * loo;
    }
  }
  return d2r_watch(out, "pg_transform", 1, &reward);
}

d2r_tensor *d2r_pg_transform(d2r_tensor *reward, const d2r_pg_options *opt)
{
  d2r_pg_options def = D2R_PG_OPTIONS_INIT;
  const d2r_pg_options *o = opt ? opt : &def;
  if (!reward || !check_options(o) || !check_reward(reward, o))
    return NULL;
  if (plain_rows(reward, o))
    return transform_rows(reward, o);
  /* The rewards are constants for every gradient (work off the graph),
   * unless the caller differentiates through the reward's parameters. */
  bool was = d2r_set_grad_enabled(o->reward_grad &&
                                  d2r_grad_enabled());
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *r = d2r_keep(&s, o->reward_grad ? d2r_retain(reward)
                                              : d2r_detach(reward));
  d2r_tensor *t = apply_baseline(&s, apply_transform(&s, r, o), o);
  d2r_tensor *out = d2r_retain(t);
  d2r_scope_end(&s);
  d2r_set_grad_enabled(was);
  return out;
}

/* ---- surrogates ------------------------------------------------------ */

/* Mean of t as a plain number, off the graph; NAN for a NULL t. */
static double mean_value(d2r_tensor *t)
{
  if (!t)
    return NAN;
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *m = d2r_mean_all(t);
  double v = m ? d2r_item(m) : NAN;
  d2r_release(m);
  d2r_set_grad_enabled(was);
  return v;
}

/* The entropy argument: NULL is allowed only when lambda is 0; else it
 * must be [B] or hold one element. */
static bool check_entropy(const d2r_tensor *h, double lambda, int64_t b,
                          const char *fn)
{
  char buf[64];
  if (!isfinite(lambda)) {
    d2r_fail("%s: lambda must be finite, got %g", fn, lambda);
    return false;
  }
  if (!h) {
    /* A NULL with lambda != 0 is an earlier failure, or a missing
     * argument when no failure left a message. */
    if (lambda != 0 && d2r_error()[0] == '\0')
      d2r_fail("%s: entropy is NULL but lambda is %g", fn, lambda);
    return lambda == 0;
  }
  if (d2r_numel(h) == 1 || b < 0 ||
      (d2r_ndim(h) == 1 && d2r_dim(h, 0) == b))
    return true;
  d2r_fail("%s: entropy must be [%lld] or hold one value, got %s", fn,
           (long long)b, d2r_shape_str(h, buf, sizeof buf));
  return false;
}

/* loss - lambda * mean(entropy), or loss itself when the term is off. */
static d2r_tensor *add_entropy(d2r_scope *s, d2r_tensor *loss,
                               d2r_tensor *entropy, double lambda)
{
  if (!entropy || lambda == 0)
    return loss;
  d2r_tensor *h = d2r_keep(s, d2r_mean_all(entropy));
  return d2r_keep(s, d2r_sub(loss, d2r_keep(s, d2r_muls(h, lambda))));
}

static bool check_logp(const d2r_tensor *logp, const d2r_tensor *reward)
{
  char b1[64], b2[64];
  if (d2r_ndim(logp) == 2 && d2r_same_shape(logp, reward))
    return true;
  d2r_fail("pg_surrogate: logp and reward must both be [B, G], got %s and "
           "%s", d2r_shape_str(logp, b1, sizeof b1),
           d2r_shape_str(reward, b2, sizeof b2));
  return false;
}

static void fill_stats(d2r_pg_stats *st, d2r_tensor *reward, d2r_tensor *rt,
                       d2r_tensor *entropy)
{
  if (!st)
    return;
  st->reward_mean = mean_value(reward);
  st->transformed_mean = mean_value(rt);
  st->entropy_mean = mean_value(entropy);
}

/* The score-function term's backward, d/dlogp = -g rt / N, from
 * differentiable ops when the gradient will be differentiated again. */
static int bw_score_term(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin)
{
  if (d2r_grad_enabled()) {
    d2r_tensor *w = d2r_muls(g, nd->s[0]);
    d2r_tensor *t = w ? d2r_mul(w, nd->aux) : NULL;
    gin[0] = t ? d2r_neg(t) : NULL;
    d2r_release(w);
    d2r_release(t);
    return gin[0] ? 0 : -1;
  }
  d2r_tensor *lp = nd->in[0];
  gin[0] = d2r_new(lp->ndim, lp->shape);
  if (!gin[0])
    return -1;
  double w = d2r_item(g) * nd->s[0];
  const double *rt = d2r_data(nd->aux);
  double *o = d2r_data(gin[0]);
  for (int64_t k = 0; k < lp->numel; k++)
    o[k] = -(w * rt[k]);
  return 0;
}

/*
 * scale * sum(-logp * rt) for constant rt (scale 1 / numel: the mean)
 * as one node and one pass each way (the chain was a negation, a
 * product, a sum and a scaling, and as many passes back).  The products
 * are summed as the chain's mean sums them, so the value is the chain's
 * to the last bit.
 */
static d2r_tensor *score_term(d2r_tensor *logp, d2r_tensor *rt,
                              double scale, const char *fn)
{
  d2r_tensor *lc = d2r_contiguous(logp);
  d2r_tensor *prod = lc ? d2r_new(lc->ndim, lc->shape) : NULL;
  if (!prod) {
    d2r_release(lc);
    return NULL;
  }
  const double *lp = d2r_data(lc), *r = d2r_data(rt);
  double *pr = d2r_data(prod);
  /* A zero weight makes a zero term even at log p = -inf (a class that
   * no sample fell in). */
  for (int64_t k = 0; k < lc->numel; k++)
    pr[k] = r[k] == 0 ? 0.0 : -lp[k] * r[k];
  double value = d2r_sum_lanes(pr, lc->numel) * scale;
  d2r_release(prod);
  d2r_release(lc);
  d2r_tensor *in[2] = {logp, rt};
  d2r_tensor *out = d2r_watch(d2r_scalar(value), fn, 2, in);
  out = d2r_record(out, fn, bw_score_term, 1, &logp);
  if (out && out->node) {
    d2r_set_aux(out->node, d2r_retain(rt));
    out->node->s[0] = scale;
  }
  return out;
}

d2r_tensor *d2r_pg_surrogate(d2r_tensor *logp, d2r_tensor *reward,
                             d2r_tensor *entropy, double lambda,
                             const d2r_pg_options *opt, d2r_pg_stats *stats)
{
  const char *fn = "pg_surrogate";
  if (!logp || !reward || !check_logp(logp, reward) ||
      !check_entropy(entropy, lambda, d2r_dim(logp, 0), fn))
    return NULL;
  d2r_pg_options def = D2R_PG_OPTIONS_INIT;
  const d2r_pg_options *o = opt ? opt : &def;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *rt = d2r_keep(&s, d2r_pg_transform(reward, o));
  d2r_tensor *pg = NULL;
  if (rt && o->clip == 0 && plain_rows(reward, o) && logp->numel > 0) {
    pg = d2r_keep(&s, score_term(logp, rt, 1.0 / (double)logp->numel,
                                 fn));
  } else {
    d2r_tensor *nlp = d2r_keep(&s, rt ? d2r_neg(logp) : NULL);
    if (o->clip > 0)
      nlp = d2r_keep(&s, d2r_clamp(nlp, -o->clip, o->clip));
    pg = d2r_keep(&s, d2r_mean_all(d2r_keep(&s, d2r_mul(nlp, rt))));
  }
  d2r_tensor *out = d2r_retain(add_entropy(&s, pg, entropy, lambda));
  if (out)
    fill_stats(stats, reward, rt, entropy);
  d2r_scope_end(&s);
  return out;
}

/* ---- the surrogate from class counts --------------------------------- */

/*
 * With counts n [B, C], entry (b, k) stands for n_bk of the G samples of
 * row b, all of class k: every transform, baseline and mean below is
 * the per-sample one of d2r_pg_transform and d2r_pg_surrogate, written
 * with those multiplicities.
 */

/* The counts as a constant [B, C] tensor, checked: logp, reward and
 * counts all [B, C], counts non-negative integers with the same row sum
 * G >= 1 (>= 2 for LOO).  Sets *g; NULL on failure. */
static d2r_tensor *checked_counts(const d2r_tensor *logp,
                                  const d2r_tensor *reward,
                                  const d2r_tensor *counts,
                                  const d2r_pg_options *o, int64_t *g)
{
  const char *fn = "pg_surrogate_counts";
  char b1[64], b2[64], b3[64];
  if (d2r_ndim(logp) != 2 || !d2r_same_shape(logp, reward) ||
      !d2r_same_shape(logp, counts))
    return d2r_fail("%s: logp, reward and counts must all be [B, C], got "
                    "%s, %s and %s", fn, d2r_shape_str(logp, b1, sizeof b1),
                    d2r_shape_str(reward, b2, sizeof b2),
                    d2r_shape_str(counts, b3, sizeof b3));
  int64_t b = d2r_dim(logp, 0), c = d2r_dim(logp, 1);
  if (b < 1 || c < 1)
    return d2r_fail("%s: needs at least one row and one class, got %s", fn,
                    d2r_shape_str(logp, b1, sizeof b1));
  d2r_tensor *cc = d2r_contiguous((d2r_tensor *)counts);
  d2r_tensor *n = cc ? d2r_detach(cc) : NULL;
  d2r_release(cc);
  if (!n)
    return NULL;
  const double *v = d2r_data(n);
  /* Row sums in integers, each count and sum at most 2^52 so that G
   * and every count are exact as doubles. */
  const int64_t top = (int64_t)1 << 52;
  int64_t total = -1;
  for (int64_t i = 0; i < b; i++) {
    int64_t row = 0;
    for (int64_t k = 0; k < c; k++) {
      double x = v[i * c + k];
      /* In range first, so the conversion is defined. */
      if (!(x >= 0 && x <= 0x1p52) || (double)(int64_t)x != x) {
        d2r_release(n);
        return d2r_fail("%s: counts must be non-negative integers up to "
                        "2^52, got %.17g at row %lld, class %lld", fn, x,
                        (long long)i + 1, (long long)k + 1);
      }
      row += (int64_t)x;
      if (row > top) {
        d2r_release(n);
        return d2r_fail("%s: row %lld of counts holds more than 2^52 "
                        "draws", fn, (long long)i + 1);
      }
    }
    if (total < 0)
      total = row;
    if (row < 1 || row != total) {
      d2r_release(n);
      return d2r_fail("%s: every row of counts must hold the same number "
                      "of draws G >= 1; row 1 holds %lld, row %lld %lld",
                      fn, (long long)total, (long long)i + 1,
                      (long long)row);
    }
  }
  if (o->baseline == D2R_BASELINE_LOO && total < 2) {
    d2r_release(n);
    return d2r_fail("%s: the leave-one-out baseline needs G >= 2, got G = "
                    "%lld", fn, (long long)total);
  }
  *g = total;
  return n;
}

/* sum_k n_k t_k per row, kept as [B, 1]. */
static d2r_tensor *row_total(d2r_scope *s, d2r_tensor *n, d2r_tensor *t)
{
  return d2r_keep(s, d2r_sum(d2r_keep(s, d2r_mul(n, t)), 1, true));
}

/* The smallest (sign 1) or largest (sign -1) t over the classes drawn
 * (drawn: 1 where a count is positive). */
static d2r_tensor *drawn_extreme(d2r_scope *s, d2r_tensor *drawn,
                                 d2r_tensor *t, int sign)
{
  d2r_tensor *away = d2r_keep(s, d2r_scalar(sign * INFINITY));
  d2r_tensor *masked = d2r_keep(s, d2r_where(drawn, t, away));
  return d2r_keep(s, sign > 0 ? d2r_min(masked, 1, true)
                              : d2r_max(masked, 1, true));
}

/* t where a class was drawn, 0 elsewhere: a class no sample fell in
 * takes no part, even with an infinite reward (0 times it is NaN). */
static d2r_tensor *drawn_only(d2r_scope *s, d2r_tensor *drawn, d2r_tensor *t)
{
  d2r_tensor *zero = d2r_keep(s, d2r_scalar(0.0));
  return d2r_keep(s, t ? d2r_where(drawn, t, zero) : NULL);
}

/* The smallest r over the classes drawn, differentiable: its gradient
 * goes to the classes at the minimum in proportion to their counts, as
 * the minimum over the samples shares it equally among the tied
 * samples.  The value is the minimum's, exactly. */
static d2r_tensor *drawn_min(d2r_scope *s, d2r_tensor *n, d2r_tensor *drawn,
                             d2r_tensor *r)
{
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *m = drawn_extreme(s, drawn, r, 1);
  d2r_tensor *at = d2r_keep(s, d2r_mul(drawn, d2r_keep(s, d2r_eq(r, m))));
  d2r_tensor *nt = d2r_keep(s, d2r_mul(n, at));
  d2r_tensor *share = d2r_keep(s, d2r_div(nt, d2r_keep(s, d2r_sum(nt, 1,
                                                                  true))));
  d2r_set_grad_enabled(was);
  if (!share || !d2r_requires_grad(r))
    return m;
  /* m + (sum(share r) - sum(share r)): m's value, share's gradient. */
  d2r_tensor *sr = d2r_keep(s, d2r_sum(d2r_keep(s, d2r_mul(share, r)), 1,
                                       true));
  d2r_tensor *fixed = d2r_keep(s, sr ? d2r_detach(sr) : NULL);
  return d2r_keep(s, d2r_add(m, d2r_keep(s, d2r_sub(sr, fixed))));
}

/* The transformed and baselined rewards of every class drawn (0 for the
 * others), [B, C]: the value each of the class's samples gets in
 * d2r_pg_transform.  The rewards of the classes not drawn are set to 0
 * first, so that no infinity of theirs reaches a gradient. */
static d2r_tensor *transform_counts(d2r_scope *s, d2r_tensor *r,
                                    d2r_tensor *n, d2r_tensor *drawn,
                                    int64_t g, const d2r_pg_options *o)
{
  d2r_tensor *t = r = drawn_only(s, drawn, r);
  if (r && o->transform == D2R_TRANSFORM_MIN_SHIFT)
    t = d2r_keep(s, d2r_sub(r, drawn_min(s, n, drawn, r)));
  else if (o->transform == D2R_TRANSFORM_RBF)
    t = d2r_keep(s, d2r_exp(d2r_keep(s, d2r_muls(r, o->gamma))));
  t = drawn_only(s, drawn, t);
  if (!t || o->baseline == D2R_BASELINE_NONE)
    return t;
  d2r_tensor *sum = row_total(s, n, t);
  if (o->baseline == D2R_BASELINE_LOO) {
    d2r_tensor *others = d2r_keep(s, d2r_sub(sum, t));
    return drawn_only(s, drawn, d2r_keep(s, d2r_sub(t, d2r_keep(s,
                          d2r_muls(others, 1.0 / ((double)g - 1.0))))));
  }
  d2r_tensor *mean = d2r_keep(s, d2r_muls(sum, 1.0 / (double)g));
  d2r_tensor *dev = drawn_only(s, drawn, d2r_keep(s, d2r_sub(t, mean)));
  if (o->baseline == D2R_BASELINE_MEAN || g < 2)
    return dev;
  /* MEAN_STD: the unbiased spread of the G samples, and 0 for a row
   * whose drawn classes all have the same value (as mean_std). */
  d2r_tensor *ss = row_total(s, n, d2r_keep(s, d2r_square(dev)));
  d2r_tensor *var = d2r_keep(s, d2r_muls(ss, 1.0 / ((double)g - 1.0)));
  d2r_tensor *spread = d2r_keep(s, d2r_sub(drawn_extreme(s, drawn, t, -1),
                                           drawn_extreme(s, drawn, t, 1)));
  return standardise(s, dev, var, spread, o->std_eps);
}

/*
 * transform_counts for constant rewards and a baseline other than
 * MEAN_STD, as one loop over the rows: the weights n_bk rt_bk as a fresh
 * constant tensor, and the means over the B G samples of the rewards and
 * of the transformed rewards.  r and n are contiguous [B, C].
 */
static d2r_tensor *weights_rows(d2r_tensor *r, d2r_tensor *n, int64_t g,
                                const d2r_pg_options *o, double *r_mean,
                                double *t_mean)
{
  int64_t b = d2r_dim(r, 0), c = d2r_dim(r, 1);
  d2r_tensor *out = d2r_empty(2, d2r_shape(r));
  if (!out)
    return NULL;
  const double *rv = d2r_data(r), *nv = d2r_data(n);
  double *w = d2r_data(out);
  double r_sum = 0, t_sum = 0;
  double loo = 1.0 / ((double)g - 1.0), mean = 1.0 / (double)g;
  for (int64_t i = 0; i < b; i++, rv += c, nv += c, w += c) {
    double low = INFINITY;
    if (o->transform == D2R_TRANSFORM_MIN_SHIFT)
      for (int64_t k = 0; k < c; k++)
        low = nv[k] > 0 && rv[k] < low ? rv[k] : low;
    /* A class no sample fell in takes no part (its reward may be
     * infinite, and 0 times that is NaN). */
    double sum = 0;
    for (int64_t k = 0; k < c; k++) {
      double t = rv[k];
      if (o->transform == D2R_TRANSFORM_MIN_SHIFT)
        t = t - low;
      else if (o->transform == D2R_TRANSFORM_RBF)
        t = exp(t * o->gamma);
      w[k] = t;
      if (nv[k] > 0) {
        sum += nv[k] * t;
        r_sum += nv[k] * rv[k];
      }
    }
    for (int64_t k = 0; k < c; k++) {
      double t = w[k];
      if (o->baseline == D2R_BASELINE_MEAN)
        t = t - sum * mean;
      else if (o->baseline == D2R_BASELINE_LOO)
        t = t - (sum - t) * loo;
      w[k] = nv[k] > 0 ? nv[k] * t : 0.0;
      t_sum += w[k];
    }
  }
  double bg = (double)b * (double)g;
  *r_mean = r_sum / bg;
  *t_mean = t_sum / bg;
  d2r_tensor *in[2] = {r, n};
  return d2r_watch(out, "pg_surrogate_counts", 2, in);
}

/* sum over the B G samples of t, divided by B G, as a plain number. */
static double counts_mean(d2r_tensor *n, d2r_tensor *drawn, d2r_tensor *t,
                          double bg)
{
  if (!t)
    return NAN;
  bool was = d2r_set_grad_enabled(false);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *nt = d2r_keep(&s, d2r_mul(n, drawn_only(&s, drawn, t)));
  d2r_tensor *sum = d2r_keep(&s, d2r_sum_all(nt));
  double v = sum ? d2r_item(sum) / bg : NAN;
  d2r_scope_end(&s);
  d2r_set_grad_enabled(was);
  return v;
}

d2r_tensor *d2r_pg_surrogate_counts(d2r_tensor *logp, d2r_tensor *reward,
                                    const d2r_tensor *counts,
                                    d2r_tensor *entropy, double lambda,
                                    const d2r_pg_options *opt,
                                    d2r_pg_stats *stats)
{
  const char *fn = "pg_surrogate_counts";
  d2r_pg_options def = D2R_PG_OPTIONS_INIT;
  const d2r_pg_options *o = opt ? opt : &def;
  if (!logp || !reward || !counts || !check_options(o))
    return NULL;
  int64_t g = 0;
  d2r_tensor *n = checked_counts(logp, reward, counts, o, &g);
  if (!n || !check_entropy(entropy, lambda, d2r_dim(logp, 0), fn)) {
    d2r_release(n);
    return NULL;
  }
  double bg = (double)d2r_dim(logp, 0) * (double)g;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_keep(&s, n);
  /* As in d2r_pg_transform: the rewards are constants unless the caller
   * differentiates through the reward's parameters. */
  bool was = d2r_set_grad_enabled(o->reward_grad && d2r_grad_enabled());
  d2r_tensor *r = d2r_keep(&s, o->reward_grad ? d2r_retain(reward)
                                              : d2r_detach(reward));
  /* n_bk rt_bk: the weight of class k's log-probability in row b. */
  d2r_tensor *w = NULL, *rt = NULL, *drawn = NULL;
  double r_mean = NAN, t_mean = NAN;
  bool rows = !o->reward_grad && o->baseline != D2R_BASELINE_MEAN_STD;
  if (r && rows) {
    d2r_tensor *rc = d2r_keep(&s, d2r_contiguous(r));
    w = d2r_keep(&s, rc ? weights_rows(rc, n, g, o, &r_mean, &t_mean)
                        : NULL);
  } else if (r) {
    d2r_tensor *zero = d2r_keep(&s, d2r_scalar(0.0));
    drawn = d2r_keep(&s, d2r_gt(n, zero));
    rt = drawn ? transform_counts(&s, r, n, drawn, g, o) : NULL;
    w = d2r_keep(&s, rt ? d2r_mul(n, rt) : NULL);
  }
  d2r_set_grad_enabled(was);
  d2r_tensor *pg;
  if (w && o->clip == 0 && !d2r_requires_grad(w)) {
    pg = d2r_keep(&s, score_term(logp, w, 1.0 / bg, fn));
  } else {
    /* -log p of a class not drawn may be infinite; its weight is 0. */
    if (!drawn) {
      d2r_tensor *zero = d2r_keep(&s, d2r_scalar(0.0));
      drawn = d2r_keep(&s, d2r_gt(n, zero));
    }
    d2r_tensor *nlp = d2r_keep(&s, w ? d2r_neg(logp) : NULL);
    if (o->clip > 0)
      nlp = d2r_keep(&s, d2r_clamp(nlp, -o->clip, o->clip));
    nlp = drawn_only(&s, drawn, nlp);
    d2r_tensor *tot = d2r_keep(&s, d2r_sum_all(d2r_keep(&s, d2r_mul(nlp,
                                                                   w))));
    pg = d2r_keep(&s, d2r_muls(tot, 1.0 / bg));
  }
  d2r_tensor *out = d2r_retain(add_entropy(&s, pg, entropy, lambda));
  if (out && stats) {
    stats->reward_mean = rows ? r_mean : counts_mean(n, drawn, r, bg);
    stats->transformed_mean = rows ? t_mean : counts_mean(n, drawn, rt, bg);
    stats->entropy_mean = mean_value(entropy);
  }
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_pathwise_surrogate(d2r_tensor *reward, d2r_tensor *entropy,
                                   double lambda, d2r_pg_stats *stats)
{
  if (!reward || !check_entropy(entropy, lambda, -1, "pathwise_surrogate"))
    return NULL;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *loss = d2r_keep(&s, d2r_neg(d2r_keep(&s,
                                                   d2r_mean_all(reward))));
  d2r_tensor *out = d2r_retain(add_entropy(&s, loss, entropy, lambda));
  if (out)
    fill_stats(stats, reward, reward, entropy);
  d2r_scope_end(&s);
  return out;
}

/*
 * Categorical and diagonal Gaussian distributions, written with the
 * differentiable tensor operations of tensor.h so that their gradients
 * and second derivatives come from the autodiff engine.
 */
#include "d2r/dist.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* 0.5 log(2 pi) and 0.5 log(2 pi e) = 0.5 log(2 pi) + 0.5. */
#define HALF_LOG_2PI 0.91893853320467274178
#define HALF_LOG_2PIE (HALF_LOG_2PI + 0.5)

/* ---- class indices --------------------------------------------------- */

d2r_tensor *d2r_class_indices(const d2r_tensor *t, int64_t classes)
{
  if (!t || d2r_check_index(t, classes, "class index") < 0)
    return NULL;
  return d2r_contiguous((d2r_tensor *)t);
}

d2r_tensor *d2r_class_indices_for(const d2r_tensor *t, int64_t classes,
                                  const char *fn, const char *what)
{
  d2r_tensor *out = d2r_class_indices(t, classes);
  if (!out && t) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", d2r_error());
    d2r_fail("%s: %s: %s", fn, what, msg);
  }
  return out;
}

/* ---- categorical ----------------------------------------------------- */

static bool check_logits(const d2r_tensor *logits, const char *fn)
{
  if (d2r_ndim(logits) != 2 || d2r_dim(logits, 1) < 1) {
    char buf[64];
    d2r_fail("%s: logits must be [B, C] with C >= 1, got %s", fn,
             d2r_shape_str(logits, buf, sizeof buf));
    return false;
  }
  return true;
}

d2r_tensor *d2r_categorical_probs(d2r_tensor *logits)
{
  if (!logits || !check_logits(logits, "categorical_probs"))
    return NULL;
  return d2r_softmax(logits, 1);
}

d2r_tensor *d2r_categorical_sample(d2r_rng *rng, d2r_tensor *logits,
                                   int64_t draws)
{
  if (!logits || !check_logits(logits, "categorical_sample"))
    return NULL;
  if (!rng)
    return d2r_fail("categorical_sample: no random generator");
  if (draws < 1)
    return d2r_fail("categorical_sample: draws must be >= 1, got %lld",
                    (long long)draws);
  if (d2r_count_nonfinite(logits) > 0)
    return d2r_fail("categorical_sample: logits hold non-finite values");
  /* The probabilities are computed off the graph: sampling is not
   * differentiated. */
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *probs = d2r_softmax(logits, 1);
  d2r_set_grad_enabled(was);
  d2r_tensor *out = probs ? d2r_rand_categorical(rng, probs, draws) : NULL;
  d2r_release(probs);
  return out;
}

d2r_tensor *d2r_categorical_log_prob(d2r_tensor *logits,
                                     const d2r_tensor *samples)
{
  if (!logits || !samples || !check_logits(logits, "categorical_log_prob"))
    return NULL;
  int64_t b = d2r_dim(logits, 0), c = d2r_dim(logits, 1);
  if (d2r_ndim(samples) != 2 || d2r_dim(samples, 0) != b) {
    char buf[64];
    return d2r_fail("categorical_log_prob: samples must be [%lld, G], "
                    "got %s", (long long)b,
                    d2r_shape_str(samples, buf, sizeof buf));
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *idx = d2r_keep(&s, d2r_class_indices_for(samples, c,
                                        "categorical_log_prob", "samples"));
  d2r_tensor *lsm = d2r_keep(&s, idx ? d2r_log_softmax(logits, 1) : NULL);
  d2r_tensor *out = d2r_gather(lsm, 1, idx);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_categorical_entropy(d2r_tensor *logits)
{
  if (!logits || !check_logits(logits, "categorical_entropy"))
    return NULL;
  /* H = -sum_c p_c log p_c with log p = log_softmax(logits), p = e^log p:
   * one log-sum-exp, and exact gradients p_j (log p_j + H) by autodiff. */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *lp = d2r_keep(&s, d2r_log_softmax(logits, 1));
  d2r_tensor *p = d2r_keep(&s, d2r_exp(lp));
  d2r_tensor *plp = d2r_keep(&s, d2r_mul(p, lp));
  d2r_tensor *sum = d2r_keep(&s, d2r_sum(plp, 1, false));
  d2r_tensor *out = d2r_neg(sum);
  d2r_scope_end(&s);
  return out;
}

/* ---- diagonal Gaussian ----------------------------------------------- */

/* mean must be [B, n]; log_std [B, n], [1, n] or [n]. */
static bool gaussian_shapes_ok(const d2r_tensor *mean,
                               const d2r_tensor *log_std)
{
  if (d2r_ndim(mean) != 2)
    return false;
  int64_t b = d2r_dim(mean, 0), n = d2r_dim(mean, 1);
  if (d2r_ndim(log_std) == 1)
    return d2r_dim(log_std, 0) == n;
  return d2r_ndim(log_std) == 2 && d2r_dim(log_std, 1) == n &&
         (d2r_dim(log_std, 0) == b || d2r_dim(log_std, 0) == 1);
}

static bool check_gaussian(const d2r_tensor *mean, const d2r_tensor *log_std,
                           const char *fn)
{
  if (gaussian_shapes_ok(mean, log_std))
    return true;
  char b1[64], b2[64];
  d2r_fail("%s: mean must be [B, n] and log_std [B, n] or [n], got %s "
           "and %s", fn, d2r_shape_str(mean, b1, sizeof b1),
           d2r_shape_str(log_std, b2, sizeof b2));
  return false;
}

/* A [B, n] (or [1, n]) parameter as [B, 1, n], to broadcast against
 * [B, G, n]; a shared [n] broadcasts as it is. */
static d2r_tensor *over_draws(d2r_tensor *t)
{
  if (d2r_ndim(t) == 1)
    return d2r_retain(t);
  return d2r_unsqueeze(t, 1);
}

d2r_tensor *d2r_gaussian_rsample(d2r_rng *rng, d2r_tensor *mean,
                                 d2r_tensor *log_std, int64_t draws)
{
  if (!mean || !log_std || !check_gaussian(mean, log_std, "gaussian_rsample"))
    return NULL;
  if (!rng)
    return d2r_fail("gaussian_rsample: no random generator");
  if (draws < 1)
    return d2r_fail("gaussian_rsample: draws must be >= 1, got %lld",
                    (long long)draws);
  int64_t shape[3] = {d2r_dim(mean, 0), draws, d2r_dim(mean, 1)};
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *eps = d2r_keep(&s, d2r_rand_normal(rng, 3, shape, 0.0, 1.0));
  d2r_tensor *mu = d2r_keep(&s, eps ? over_draws(mean) : NULL);
  d2r_tensor *ls = d2r_keep(&s, over_draws(log_std));
  d2r_tensor *sd = d2r_keep(&s, d2r_exp(ls));
  d2r_tensor *noise = d2r_keep(&s, d2r_mul(sd, eps));
  d2r_tensor *out = d2r_add(mu, noise);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_gaussian_sample(d2r_rng *rng, d2r_tensor *mean,
                                d2r_tensor *log_std, int64_t draws)
{
  if (!mean || !log_std)
    return NULL;
  /* The reparameterised draw, recorded nowhere: same eps, no history. */
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *out = d2r_gaussian_rsample(rng, mean, log_std, draws);
  d2r_set_grad_enabled(was);
  if (out && d2r_requires_grad(out)) {
    d2r_tensor *flat = d2r_detach(out);
    d2r_release(out);
    out = flat;
  }
  return out;
}

/* Reduces a per-element tensor along its last axis. */
static d2r_tensor *reduce_dims(d2r_tensor *t, d2r_reduce reduce)
{
  if (!t)
    return NULL;
  switch (reduce) {
  case D2R_REDUCE_NONE:
    return d2r_retain(t);
  case D2R_REDUCE_MEAN_DIMS:
    return d2r_mean(t, -1, false);
  case D2R_REDUCE_SUM_DIMS:
    return d2r_sum(t, -1, false);
  }
  return d2r_fail("unknown reduction %d", (int)reduce);
}

static bool valid_reduce(d2r_reduce reduce, const char *fn)
{
  if (reduce == D2R_REDUCE_NONE || reduce == D2R_REDUCE_MEAN_DIMS ||
      reduce == D2R_REDUCE_SUM_DIMS)
    return true;
  d2r_fail("%s: unknown reduction %d", fn, (int)reduce);
  return false;
}

/* y must be [B, n] or [B, G, n] against mean [B, n]. */
static bool check_target(const d2r_tensor *mean, const d2r_tensor *y,
                         const char *fn)
{
  int nd = d2r_ndim(y);
  if ((nd == 2 || nd == 3) && d2r_dim(y, 0) == d2r_dim(mean, 0) &&
      d2r_dim(y, -1) == d2r_dim(mean, 1))
    return true;
  char b1[64], b2[64];
  d2r_fail("%s: y must be [B, n] or [B, G, n] for a mean of %s, got %s",
           fn, d2r_shape_str(mean, b1, sizeof b1),
           d2r_shape_str(y, b2, sizeof b2));
  return false;
}

d2r_tensor *d2r_gaussian_log_prob(d2r_tensor *mean, d2r_tensor *log_std,
                                  d2r_tensor *y, d2r_reduce reduce)
{
  const char *fn = "gaussian_log_prob";
  if (!mean || !log_std || !y)
    return NULL;
  if (!check_gaussian(mean, log_std, fn) || !check_target(mean, y, fn) ||
      !valid_reduce(reduce, fn))
    return NULL;
  bool draws = d2r_ndim(y) == 3;
  /* With z = (y - mean) e^-log_std, the density is
   * -0.5 log(2 pi) - log_std - z^2 / 2 per element. */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mu = d2r_keep(&s, draws ? over_draws(mean) : d2r_retain(mean));
  d2r_tensor *ls = d2r_keep(&s, draws ? over_draws(log_std)
                                      : d2r_retain(log_std));
  d2r_tensor *diff = d2r_keep(&s, d2r_sub(y, mu));
  d2r_tensor *inv = d2r_keep(&s, d2r_exp(d2r_keep(&s, d2r_neg(ls))));
  d2r_tensor *z = d2r_keep(&s, d2r_mul(diff, inv));
  d2r_tensor *quad = d2r_keep(&s, d2r_muls(d2r_keep(&s, d2r_square(z)),
                                           -0.5));
  d2r_tensor *lp = d2r_keep(&s, d2r_sub(quad, ls));
  d2r_tensor *elem = d2r_keep(&s, d2r_adds(lp, -HALF_LOG_2PI));
  d2r_tensor *out = reduce_dims(elem, reduce);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_gaussian_entropy(d2r_tensor *log_std, d2r_reduce reduce)
{
  if (!log_std || !valid_reduce(reduce, "gaussian_entropy"))
    return NULL;
  if (d2r_ndim(log_std) < 1) {
    char buf[64];
    return d2r_fail("gaussian_entropy: log_std must be [n] or [B, n], "
                    "got %s", d2r_shape_str(log_std, buf, sizeof buf));
  }
  d2r_tensor *elem = d2r_adds(log_std, HALF_LOG_2PIE);
  d2r_tensor *out = reduce_dims(elem, reduce);
  d2r_release(elem);
  return out;
}

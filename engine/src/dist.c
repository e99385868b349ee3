/*
 * Categorical and diagonal Gaussian distributions, written with the
 * differentiable tensor operations of tensor.h so that their gradients
 * and second derivatives come from the autodiff engine.
 *
 * The Gaussian's sampling and log-density, which touch B x G x n values
 * per step, are single loops instead: a chain of broadcasting ops makes
 * eight passes over [B, G, n] and as many temporaries, and dominated the
 * time of a dynamics-model update.  The log-density is one graph node
 * whose backward is also one loop; when a gradient is itself to be
 * differentiated (create_graph), that backward is built from
 * differentiable ops instead, so second derivatives stay exact.
 */
#include "d2r/dist.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "tensor_impl.h"

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

/* Per-class or per-dimension scratch of the loops below: on the stack
 * for up to SMALL_DIMS of them (no allocation in a training step), on
 * the heap beyond.  release_dims gives back what dims_buffer took. */
enum { SMALL_DIMS = 256 };

static double *dims_buffer(double *stack, int64_t n)
{
  return n <= SMALL_DIMS ? stack : malloc((size_t)n * sizeof(double));
}

static void release_dims(double *buf, const double *stack)
{
  if (buf != stack)
    free(buf);
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

/* log sum_k e^x_k of a contiguous row, computed as logsumexp computes it
 * (the maximum plus the log of the shifted sum), so the fused loops
 * below give the numbers the op chain gave. */
static double row_lse(const double *x, int64_t c)
{
  double m = x[0];
  for (int64_t k = 1; k < c; k++)
    if (x[k] > m || (isnan(x[k]) && !isnan(m)))
      m = x[k];
  if (!isfinite(m))
    return m;
  double sum = 0;
  for (int64_t k = 0; k < c; k++)
    sum += exp(x[k] - m);
  return m + log(sum);
}

/* The arguments of the two samplers: logits [B, C], all finite, a
 * generator and 1 <= draws <= most.  Checked before any draw, so a
 * failure leaves the generator where it was. */
static bool draw_args_ok(const char *fn, d2r_rng *rng, d2r_tensor *logits,
                         int64_t draws, int64_t most)
{
  if (!logits || !check_logits(logits, fn))
    return false;
  if (!rng)
    d2r_fail("%s: no random generator", fn);
  else if (draws < 1)
    d2r_fail("%s: draws must be >= 1, got %lld", fn, (long long)draws);
  else if (draws > most)
    d2r_fail("%s: draws must be at most %lld, got %lld", fn,
             (long long)most, (long long)draws);
  else if (d2r_count_nonfinite(logits) > 0)
    d2r_fail("%s: logits hold non-finite values", fn);
  else
    return true;
  return false;
}

d2r_tensor *d2r_categorical_probs(d2r_tensor *logits)
{
  if (!logits || !check_logits(logits, "categorical_probs"))
    return NULL;
  return d2r_softmax(logits, 1);
}

/* Softmax, running sums and draws in one pass per row: sampling is not
 * differentiated, and a chain of ops (a finiteness scan, logsumexp, a
 * subtraction, exp, then the sampler's own checks) cost several passes
 * and temporaries per step. */
d2r_tensor *d2r_categorical_sample(d2r_rng *rng, d2r_tensor *logits,
                                   int64_t draws)
{
  const char *fn = "categorical_sample";
  if (!draw_args_ok(fn, rng, logits, draws, INT64_MAX))
    return NULL;
  int64_t b = logits->shape[0], c = logits->shape[1];
  int64_t shape[2] = {b, draws};
  d2r_tensor *lc = d2r_contiguous(logits);
  d2r_tensor *out = lc ? d2r_new(2, shape) : NULL;
  double small[SMALL_DIMS];
  double *cum = dims_buffer(small, c);
  bool ok = out && cum;
  if (out && !cum)
    d2r_fail("%s: out of memory", fn);
  const double *x = ok ? d2r_data(lc) : NULL;
  double *o = ok ? d2r_data(out) : NULL;
  for (int64_t i = 0; ok && i < b; i++, x += c, o += draws) {
    double lse = row_lse(x, c), total = 0;
    for (int64_t k = 0; k < c; k++) {
      total += exp(x[k] - lse);
      cum[k] = total;
    }
    /* The logits are finite, so each total is at least 1. */
    ok = d2r_rng_draw_classes(rng, cum, c, draws, o) == 0;
  }
  release_dims(cum, small);
  d2r_release(lc);
  if (!ok) {
    d2r_release(out);
    return NULL;
  }
  return out;
}

d2r_tensor *d2r_categorical_counts(d2r_rng *rng, d2r_tensor *logits,
                                   int64_t draws)
{
  const char *fn = "categorical_counts";
  if (!draw_args_ok(fn, rng, logits, draws, D2R_MULTINOMIAL_MAX_DRAWS))
    return NULL;
  int64_t b = logits->shape[0], c = logits->shape[1];
  d2r_tensor *lc = d2r_contiguous(logits);
  d2r_tensor *out = lc ? d2r_new(2, logits->shape) : NULL;
  double small[SMALL_DIMS];
  double *p = dims_buffer(small, c);
  bool ok = out && p;
  if (out && !p)
    d2r_fail("%s: out of memory", fn);
  const double *x = ok ? d2r_data(lc) : NULL;
  double *o = ok ? d2r_data(out) : NULL;
  for (int64_t i = 0; ok && i < b; i++, x += c, o += c) {
    /* Unnormalised probabilities e^(x - max), the largest of them 1:
     * GSL divides by their sum. */
    double m = x[0];
    for (int64_t k = 1; k < c; k++)
      m = x[k] > m ? x[k] : m;
    for (int64_t k = 0; k < c; k++)
      p[k] = exp(x[k] - m);
    ok = d2r_rng_multinomial(rng, p, c, draws, o) == 0;
  }
  release_dims(p, small);
  d2r_release(lc);
  if (!ok) {
    d2r_release(out);
    return NULL;
  }
  return out;
}

/* The log-probability's backward from differentiable ops, for gradients
 * that will be differentiated again: with g the output gradient and
 * hits_k = sum_j g_j [s_j = k], d/dx_k = hits_k - p_k sum_c hits_c, the
 * sums taken as the gather and log-softmax chain takes them. */
static int bw_cat_log_prob_graph(d2r_node *nd, d2r_tensor *g,
                                 d2r_tensor **gin)
{
  d2r_tensor *logits = nd->in[0];
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *hits = d2r_keep(&s, d2r_scatter_add(2, logits->shape, 1,
                                                  nd->aux, g));
  d2r_tensor *p = d2r_keep(&s, d2r_softmax(logits, 1));
  d2r_tensor *w = d2r_keep(&s, d2r_sum(hits, 1, true));
  d2r_tensor *pw = d2r_keep(&s, d2r_mul(p, w));
  gin[0] = d2r_sub(hits, pw);
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

/* The same gradient in one pass over the samples. */
static int bw_cat_log_prob(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin)
{
  if (d2r_grad_enabled())
    return bw_cat_log_prob_graph(nd, g, gin);
  d2r_tensor *logits = nd->in[0], *smp = nd->aux;
  int64_t b = logits->shape[0], c = logits->shape[1];
  int64_t draws = smp->shape[1];
  d2r_tensor *lc = d2r_contiguous(logits), *gc = d2r_contiguous(g);
  gin[0] = lc && gc ? d2r_new(2, logits->shape) : NULL;
  /* Checked again: the samples' storage is shared with the caller, who
   * may have written to it through d2r_data since the forward pass
   * (writes through the in-place functions fail the version check). */
  bool ok = gin[0] && d2r_check_index_values(d2r_data(smp), b * draws, c,
                        "categorical_log_prob backward: samples: "
                        "class index") == 0;
  if (ok) {
    const double *x = d2r_data(lc), *pg = d2r_data(gc);
    const double *ps = d2r_data(smp);
    double *o = d2r_data(gin[0]);
    for (int64_t i = 0; i < b; i++, x += c, o += c) {
      /* The weight on each class (hits, summed over the draws in
       * order), then minus p_k times their total (summed as every last-
       * axis sum is): the chain's arithmetic, so its numbers to the last
       * bit, and exactly 0 with one class. */
      double lse = row_lse(x, c);
      if (c == 2) {
        /* Two running sums instead of additions into memory, each
         * waiting on the one before. */
        double h0 = 0, h1 = 0;
        for (int64_t j = 0; j < draws; j++) {
          h0 += ps[j] == 0 ? pg[j] : 0.0;
          h1 += ps[j] == 0 ? 0.0 : pg[j];
        }
        o[0] = h0;
        o[1] = h1;
      } else {
        for (int64_t k = 0; k < c; k++)
          o[k] = 0;
        for (int64_t j = 0; j < draws; j++)
          o[(int64_t)ps[j]] += pg[j];
      }
      double w = d2r_sum_lanes(o, c);
      for (int64_t k = 0; k < c; k++)
        o[k] = o[k] - exp(x[k] - lse) * w;
      pg += draws;
      ps += draws;
    }
  }
  if (!ok) {
    d2r_release(gin[0]);
    gin[0] = NULL;
  }
  d2r_release(lc);
  d2r_release(gc);
  return ok ? 0 : -1;
}

/* log p(s) = x_s - logsumexp(x) per sample in one pass, one graph node
 * whose backward is one pass too (the op chain checked the indices
 * twice and gathered, then scattered the gradient back). */
d2r_tensor *d2r_categorical_log_prob(d2r_tensor *logits,
                                     const d2r_tensor *samples)
{
  const char *fn = "categorical_log_prob";
  if (!logits || !samples || !check_logits(logits, fn))
    return NULL;
  int64_t b = d2r_dim(logits, 0), c = d2r_dim(logits, 1);
  if (d2r_ndim(samples) != 2 || d2r_dim(samples, 0) != b) {
    char buf[64];
    return d2r_fail("%s: samples must be [%lld, G], got %s", fn,
                    (long long)b, d2r_shape_str(samples, buf, sizeof buf));
  }
  int64_t draws = d2r_dim(samples, 1);
  /* The samples are data, never differentiated: a detached contiguous
   * copy (or view) is what the node keeps. */
  d2r_tensor *sc = d2r_contiguous((d2r_tensor *)samples);
  d2r_tensor *si = sc ? d2r_detach(sc) : NULL;
  d2r_release(sc);
  d2r_tensor *lc = si ? d2r_contiguous(logits) : NULL;
  d2r_tensor *out = lc ? d2r_new(2, samples->shape) : NULL;
  bool ok = out && d2r_check_index_values(d2r_data(si), b * draws, c,
                        "categorical_log_prob: samples: class index") == 0;
  const double *x = ok ? d2r_data(lc) : NULL, *ps = ok ? d2r_data(si)
                                                      : NULL;
  double *o = ok ? d2r_data(out) : NULL;
  for (int64_t i = 0; ok && i < b; i++, x += c) {
    double lse = row_lse(x, c);
    for (int64_t j = 0; j < draws; j++, ps++, o++)
      *o = x[(int64_t)*ps] - lse;
  }
  d2r_release(lc);
  if (ok && !(out = d2r_watch(out, fn, 1, &logits)))
    ok = false;
  if (!ok) {
    d2r_release(si);
    d2r_release(out);
    return NULL;
  }
  out = d2r_record(out, fn, bw_cat_log_prob, 1, &logits);
  if (out && out->node)
    d2r_set_aux(out->node, d2r_retain(si));
  d2r_release(si);
  return out;
}

/* One row's log-probabilities lp = x - lse, probabilities p = e^lp and
 * entropy -sum_k p lp, with the arithmetic of the log_softmax, exp, mul
 * and sum ops, except that p lp is 0 where p is 0 (the ops made NaN of
 * 0 times -inf there).  pl is scratch for the products. */
static double row_entropy(const double *x, int64_t c, double *lp, double *p,
                          double *pl)
{
  double lse = row_lse(x, c);
  for (int64_t k = 0; k < c; k++) {
    lp[k] = x[k] - lse;
    p[k] = exp(lp[k]);
    /* p log p -> 0 as p -> 0: a class whose probability underflows to
     * 0 (log p may then be -inf) adds nothing. */
    pl[k] = p[k] == 0 ? 0.0 : p[k] * lp[k];
  }
  return -d2r_sum_lanes(pl, c);
}

/* dH/dx_k = -p_k (log p_k + H), from differentiable ops when the
 * gradient will be differentiated again (log p read as 0 where p is 0,
 * as the forward pass reads it). */
static int bw_cat_entropy_graph(d2r_node *nd, d2r_tensor *g,
                                d2r_tensor **gin)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *raw = d2r_keep(&s, d2r_log_softmax(nd->in[0], 1));
  d2r_tensor *p = d2r_keep(&s, d2r_exp(raw));
  d2r_tensor *zero = d2r_keep(&s, d2r_scalar(0.0));
  d2r_tensor *live = d2r_keep(&s, d2r_gt(p, zero));
  d2r_tensor *lp = d2r_keep(&s, d2r_where(live, raw, zero));
  d2r_tensor *plp = d2r_keep(&s, d2r_mul(p, lp));
  d2r_tensor *h = d2r_keep(&s, d2r_neg(d2r_keep(&s, d2r_sum(plp, 1,
                                                           true))));
  d2r_tensor *t = d2r_keep(&s, d2r_mul(p, d2r_keep(&s, d2r_add(lp, h))));
  d2r_tensor *gc = d2r_keep(&s, d2r_unsqueeze(g, 1));
  gin[0] = d2r_neg(d2r_keep(&s, d2r_mul(t, gc)));
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

/* The same gradient in one pass, from the log-probabilities,
 * probabilities and entropy of each row that the forward pass kept in
 * aux ([B, 2C + 1]: no exp or log again). */
static int bw_cat_entropy(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin)
{
  if (d2r_grad_enabled())
    return bw_cat_entropy_graph(nd, g, gin);
  d2r_tensor *logits = nd->in[0];
  int64_t b = logits->shape[0], c = logits->shape[1];
  d2r_tensor *gc = d2r_contiguous(g);
  gin[0] = gc ? d2r_new(2, logits->shape) : NULL;
  if (gin[0]) {
    const double *kept = d2r_data(nd->aux), *pg = d2r_data(gc);
    double *o = d2r_data(gin[0]);
    for (int64_t i = 0; i < b; i++, kept += 2 * c + 1, o += c) {
      const double *lp = kept, *p = kept + c;
      double h = kept[2 * c];
      for (int64_t k = 0; k < c; k++)
        o[k] = p[k] == 0 ? 0.0 : -(p[k] * (lp[k] + h)) * pg[i];
    }
  }
  d2r_release(gc);
  return gin[0] ? 0 : -1;
}

/* H = -sum_c p_c log p_c per row, as one node: the values of the op
 * chain (log_softmax, exp, mul, sum, neg) to the last bit wherever
 * those were not NaN, at a fraction of its cost in a small step; the
 * gradient -p (log p + H) in one pass from what the forward pass
 * computed. */
d2r_tensor *d2r_categorical_entropy(d2r_tensor *logits)
{
  const char *fn = "categorical_entropy";
  if (!logits || !check_logits(logits, fn))
    return NULL;
  if (d2r_count_nonfinite(logits) > 0)
    return d2r_fail("%s: logits hold non-finite values", fn);
  int64_t b = logits->shape[0], c = logits->shape[1];
  int64_t keep_shape[2] = {b, 2 * c + 1};
  d2r_tensor *lc = d2r_contiguous(logits);
  d2r_tensor *out = lc ? d2r_new(1, &b) : NULL;
  d2r_tensor *kept = out ? d2r_new(2, keep_shape) : NULL;
  double small[SMALL_DIMS];
  double *pl = kept ? dims_buffer(small, c) : NULL;
  if (kept && !pl)
    d2r_fail("%s: out of memory", fn);
  if (pl) {
    const double *x = d2r_data(lc);
    double *o = d2r_data(out), *k = d2r_data(kept);
    for (int64_t i = 0; i < b; i++, x += c, k += 2 * c + 1)
      o[i] = k[2 * c] = row_entropy(x, c, k, k + c, pl);
  }
  bool ok = pl != NULL;
  release_dims(pl, small);
  d2r_release(lc);
  if (ok && !(out = d2r_watch(out, fn, 1, &logits)))
    ok = false;
  if (!ok) {
    d2r_release(kept);
    d2r_release(out);
    return NULL;
  }
  out = d2r_record(out, fn, bw_cat_entropy, 1, &logits);
  if (out && out->node)
    d2r_set_aux(out->node, d2r_retain(kept));
  d2r_release(kept);
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

/* The checks both samplers make; fills shape with [B, draws, n]. */
static bool check_draws(d2r_rng *rng, const d2r_tensor *mean,
                        const d2r_tensor *log_std, int64_t draws,
                        const char *fn, int64_t *shape)
{
  if (!mean || !log_std || !check_gaussian(mean, log_std, fn))
    return false;
  if (!rng) {
    d2r_fail("%s: no random generator", fn);
    return false;
  }
  if (draws < 1) {
    d2r_fail("%s: draws must be >= 1, got %lld", fn, (long long)draws);
    return false;
  }
  shape[0] = d2r_dim(mean, 0);
  shape[1] = draws;
  shape[2] = d2r_dim(mean, 1);
  return true;
}

d2r_tensor *d2r_gaussian_rsample(d2r_rng *rng, d2r_tensor *mean,
                                 d2r_tensor *log_std, int64_t draws)
{
  int64_t shape[3];
  if (!check_draws(rng, mean, log_std, draws, "gaussian_rsample", shape))
    return NULL;
  /* No rows or no dimensions: nothing to draw. */
  if (shape[0] == 0 || shape[2] == 0)
    return d2r_zeros(3, shape);
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

/* Element (b, j) of a mean or log-std parameter at p[b * s0 + j * s1]:
 * a shared [n] or [1, n] parameter has s0 = 0. */
typedef struct {
  const double *p;
  int64_t s0, s1;
} param_view;

static param_view param_of(const d2r_tensor *t)
{
  param_view v = {t->st->data + t->offset, 0, t->stride[t->ndim - 1]};
  if (t->ndim == 2 && t->shape[0] > 1)
    v.s0 = t->stride[0];
  return v;
}

d2r_tensor *d2r_gaussian_sample(d2r_rng *rng, d2r_tensor *mean,
                                d2r_tensor *log_std, int64_t draws)
{
  int64_t shape[3];
  if (!check_draws(rng, mean, log_std, draws, "gaussian_sample", shape))
    return NULL;
  /* eps in the order d2r_gaussian_rsample draws it, turned in place into
   * mean + exp(log_std) * eps: the same values, with no history. */
  int64_t b = shape[0], n = shape[2];
  if (b == 0 || n == 0)
    return d2r_zeros(3, shape);   /* nothing to draw */
  d2r_tensor *out = d2r_rand_normal(rng, 3, shape, 0.0, 1.0);
  double small[SMALL_DIMS];
  double *sd = dims_buffer(small, n);
  if (out && !sd) {
    d2r_release(out);
    return d2r_fail("gaussian_sample: out of memory");
  }
  param_view m = param_of(mean), l = param_of(log_std);
  double *o = out ? d2r_data(out) : NULL;
  for (int64_t i = 0; o && i < b; i++) {
    const double *mi = m.p + i * m.s0, *li = l.p + i * l.s0;
    for (int64_t j = 0; j < n; j++)
      sd[j] = exp(li[j * l.s1]);
    for (int64_t g = 0; g < draws; g++, o += n)
      for (int64_t j = 0; j < n; j++)
        o[j] = mi[j * m.s1] + sd[j] * o[j];
  }
  release_dims(sd, small);
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

/* A gradient with respect to the draws' broadcast parameter, [B, G, n]
 * (or [B, n]), summed to that parameter's own shape. */
static d2r_tensor *to_param(d2r_scope *s, d2r_tensor *g, const d2r_tensor *p)
{
  d2r_tensor *rows = g->ndim == 3 ? d2r_keep(s, d2r_sum(g, 1, false)) : g;
  return d2r_sum_to(rows, p->ndim, p->shape);
}

/* The log-density's backward from differentiable ops, for gradients that
 * will be differentiated again.  With z = (y - mean) e^-log_std and w the
 * output gradient per element: d/dy = -w z e^-log_std, d/dmean = w z
 * e^-log_std, d/dlog_std = w (z^2 - 1). */
static int bw_log_prob_graph(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin)
{
  d2r_tensor *mean = nd->in[0], *log_std = nd->in[1], *y = nd->in[2];
  bool draws = y->ndim == 3;
  d2r_reduce reduce = (d2r_reduce)nd->i[0];
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mu = d2r_keep(&s, draws ? over_draws(mean) : d2r_retain(mean));
  d2r_tensor *ls = d2r_keep(&s, draws ? over_draws(log_std)
                                      : d2r_retain(log_std));
  d2r_tensor *inv = d2r_keep(&s, d2r_exp(d2r_keep(&s, d2r_neg(ls))));
  d2r_tensor *z = d2r_keep(&s, d2r_mul(d2r_keep(&s, d2r_sub(y, mu)), inv));
  d2r_tensor *w = g;
  if (reduce != D2R_REDUCE_NONE)
    w = d2r_keep(&s, d2r_unsqueeze(g, -1));
  if (reduce == D2R_REDUCE_MEAN_DIMS)
    w = d2r_keep(&s, d2r_muls(w, 1.0 / (double)y->shape[y->ndim - 1]));
  d2r_tensor *t = d2r_keep(&s, d2r_mul(d2r_keep(&s, d2r_mul(w, z)), inv));
  int rc = t ? 0 : -1;
  if (rc == 0 && d2r_needs_grad(y) && !(gin[2] = d2r_neg(t)))
    rc = -1;
  if (rc == 0 && d2r_needs_grad(mean) && !(gin[0] = to_param(&s, t, mean)))
    rc = -1;
  if (rc == 0 && d2r_needs_grad(log_std)) {
    d2r_tensor *z2 = d2r_keep(&s, d2r_adds(d2r_keep(&s, d2r_square(z)), -1));
    d2r_tensor *gl = d2r_keep(&s, d2r_mul(w, z2));
    if (!(gin[1] = gl ? to_param(&s, gl, log_std) : NULL))
      rc = -1;
  }
  d2r_scope_end(&s);
  return rc;
}

/* Makes a fresh zero gradient for input i of nd when it needs one. */
static double *grad_for(d2r_node *nd, int i, d2r_tensor **gin, bool *ok)
{
  const d2r_tensor *t = nd->in[i];
  if (!*ok || !d2r_needs_grad(t))
    return NULL;
  gin[i] = d2r_zeros(t->ndim, t->shape);
  *ok = gin[i] != NULL;
  return *ok ? d2r_data(gin[i]) : NULL;
}

/* The same gradients as bw_log_prob_graph in one pass over [B, G, n]. */
static int bw_log_prob(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin)
{
  if (d2r_grad_enabled())
    return bw_log_prob_graph(nd, g, gin);
  d2r_tensor *mean = nd->in[0], *log_std = nd->in[1], *y = nd->in[2];
  d2r_reduce reduce = (d2r_reduce)nd->i[0];
  int64_t b = mean->shape[0], n = mean->shape[1];
  int64_t draws = y->ndim == 3 ? y->shape[1] : 1;
  d2r_tensor *yc = d2r_contiguous(y), *gc = d2r_contiguous(g);
  double small[SMALL_DIMS];
  double *inv = dims_buffer(small, n);
  bool ok = yc && gc && inv;
  double *gm = grad_for(nd, 0, gin, &ok), *gl = grad_for(nd, 1, gin, &ok);
  double *gy = grad_for(nd, 2, gin, &ok);
  /* gm and gl are contiguous [B, n] or [n]: row i starts at i * n unless
   * the parameter is shared. */
  int64_t mrow = mean->ndim == 2 && mean->shape[0] > 1 ? n : 0;
  int64_t lrow = log_std->ndim == 2 && log_std->shape[0] > 1 ? n : 0;
  double scale = reduce == D2R_REDUCE_MEAN_DIMS ? 1.0 / n : 1.0;
  param_view m = param_of(mean), l = param_of(log_std);
  const double *py = ok ? d2r_data(yc) : NULL, *pg = ok ? d2r_data(gc) : NULL;
  for (int64_t i = 0; ok && i < b; i++) {
    const double *mi = m.p + i * m.s0, *li = l.p + i * l.s0;
    for (int64_t j = 0; j < n; j++)
      inv[j] = exp(-li[j * l.s1]);
    for (int64_t k = 0; k < draws; k++, py += n) {
      for (int64_t j = 0; j < n; j++) {
        double w = reduce == D2R_REDUCE_NONE ? pg[j] : *pg * scale;
        double z = (py[j] - mi[j * m.s1]) * inv[j], t = w * z * inv[j];
        if (gy) gy[j] = -t;
        if (gm) gm[i * mrow + j] += t;
        if (gl) gl[i * lrow + j] += w * (z * z - 1);
      }
      if (gy) gy += n;
      pg += reduce == D2R_REDUCE_NONE ? n : 1;
    }
  }
  release_dims(inv, small);
  d2r_release(yc);
  d2r_release(gc);
  if (!ok)
    d2r_fail("gaussian_log_prob: out of memory in the backward pass");
  return ok ? 0 : -1;
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
  int64_t b = mean->shape[0], n = mean->shape[1];
  int64_t draws = y->ndim == 3 ? y->shape[1] : 1;
  if (n == 0 && reduce == D2R_REDUCE_MEAN_DIMS)
    return d2r_fail("%s: cannot average over 0 dimensions", fn);
  int64_t shape[3];
  int nd = reduce == D2R_REDUCE_NONE ? y->ndim : y->ndim - 1;
  for (int i = 0; i < nd; i++)
    shape[i] = y->shape[i];
  d2r_tensor *yc = d2r_contiguous(y);
  d2r_tensor *out = yc ? d2r_new(nd, shape) : NULL;
  double small[SMALL_DIMS];
  double *inv = dims_buffer(small, n);
  if (!out || !inv) {
    d2r_release(yc);
    d2r_release(out);
    release_dims(inv, small);
    return yc ? d2r_fail("%s: out of memory", fn) : NULL;
  }
  /* Per element -0.5 log(2 pi) - log_std - z^2 / 2 with z = (y - mean)
   * e^-log_std, summed or averaged over the last axis unless kept. */
  param_view m = param_of(mean), l = param_of(log_std);
  const double *py = d2r_data(yc);
  double *o = d2r_data(out);
  for (int64_t i = 0; i < b; i++) {
    const double *mi = m.p + i * m.s0, *li = l.p + i * l.s0;
    for (int64_t j = 0; j < n; j++)
      inv[j] = exp(-li[j * l.s1]);
    for (int64_t k = 0; k < draws; k++, py += n) {
      double acc = 0;
      for (int64_t j = 0; j < n; j++) {
        double z = (py[j] - mi[j * m.s1]) * inv[j];
        double e = -0.5 * z * z - li[j * l.s1] - HALF_LOG_2PI;
        if (reduce == D2R_REDUCE_NONE)
          o[j] = e;
        acc += e;
      }
      if (reduce == D2R_REDUCE_NONE)
        o += n;
      else
        *o++ = reduce == D2R_REDUCE_MEAN_DIMS ? acc / n : acc;
    }
  }
  release_dims(inv, small);
  d2r_release(yc);
  d2r_tensor *in[3] = {mean, log_std, y};
  out = d2r_watch(out, fn, 3, in);
  if (!out)
    return NULL;
  out = d2r_record(out, fn, bw_log_prob, 3, in);
  if (out && out->node)
    out->node->i[0] = reduce;
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

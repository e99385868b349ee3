/*
 * Policies (diagonal Gaussian, full-covariance Gaussian, categorical) on
 * an MLP, and the full-covariance Gaussian density they need, written
 * with the differentiable operations of tensor.h and linalg.h.
 */
#include "d2r/policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/linalg.h"

/* 0.5 log(2 pi), 0.5 log(2 pi e), and log(e - 1) = softplus^-1(1). */
#define HALF_LOG_2PI 0.91893853320467274178
#define HALF_LOG_2PIE (HALF_LOG_2PI + 0.5)
#define SOFTPLUS_INV_1 0.54132485461291810

#define KEEP(t) d2r_keep(&s, (t))

/* ---- full-covariance Gaussian ----------------------------------------- */

/* mean [B, n] and chol [B, n, n] or [n, n]. */
static bool mvn_shapes_ok(const d2r_tensor *mean, const d2r_tensor *chol,
                          const char *fn) {
  int nc = d2r_ndim(chol);
  if (d2r_ndim(mean) == 2) {
    int64_t b = d2r_dim(mean, 0), n = d2r_dim(mean, 1);
    if ((nc == 2 || (nc == 3 && d2r_dim(chol, 0) == b)) &&
        d2r_dim(chol, -1) == n && d2r_dim(chol, -2) == n)
      return true;
  }
  char b1[64], b2[64];
  d2r_fail("%s: mean must be [B, n] and chol [B, n, n] or [n, n], got %s "
           "and %s", fn, d2r_shape_str(mean, b1, sizeof b1),
           d2r_shape_str(chol, b2, sizeof b2));
  return false;
}

d2r_tensor *d2r_mvn_rsample(d2r_rng *rng, d2r_tensor *mean,
                            d2r_tensor *chol, int64_t draws) {
  if (!mean || !chol || !mvn_shapes_ok(mean, chol, "mvn_rsample"))
    return NULL;
  if (!rng) return d2r_fail("mvn_rsample: no random generator");
  if (draws < 1)
    return d2r_fail("mvn_rsample: draws must be >= 1, got %lld",
                    (long long)draws);
  /* Rows of eps [B, G, n] times L^T give (L eps)^T: y = m + L eps. */
  int64_t shape[3] = {d2r_dim(mean, 0), draws, d2r_dim(mean, 1)};
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *eps = KEEP(d2r_rand_normal(rng, 3, shape, 0.0, 1.0));
  d2r_tensor *l = KEEP(eps ? d2r_tril(chol, 0) : NULL);
  d2r_tensor *lt = KEEP(d2r_transpose(l, -2, -1));
  d2r_tensor *noise = KEEP(d2r_matmul(eps, lt));
  d2r_tensor *y = d2r_add(KEEP(d2r_unsqueeze(mean, 1)), noise);
  d2r_scope_end(&s);
  return y;
}

d2r_tensor *d2r_mvn_sample(d2r_rng *rng, d2r_tensor *mean, d2r_tensor *chol,
                           int64_t draws) {
  if (!mean || !chol) return NULL;
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *y = d2r_mvn_rsample(rng, mean, chol, draws);
  d2r_set_grad_enabled(was);
  if (y && d2r_requires_grad(y)) {
    d2r_tensor *flat = d2r_detach(y);
    d2r_release(y);
    y = flat;
  }
  return y;
}

/* sum_i log L_ii: [B] for chol [B, n, n], 0-d for [n, n]. */
static d2r_tensor *half_logdet(d2r_scope *sc, d2r_tensor *chol) {
  d2r_tensor *d = d2r_keep(sc, d2r_diag_part(chol));
  return d2r_keep(sc, d2r_sum(d2r_keep(sc, d2r_log(d)), -1, false));
}

/* Joint value v over n dimensions, divided by n for MEAN_DIMS. */
static d2r_tensor *reduce_joint(d2r_tensor *v, int64_t n, d2r_reduce r,
                                const char *fn) {
  if (!v) return NULL;
  if (r == D2R_REDUCE_SUM_DIMS) return d2r_retain(v);
  if (r == D2R_REDUCE_MEAN_DIMS) return d2r_muls(v, 1.0 / (double)n);
  if (r == D2R_REDUCE_NONE)
    return d2r_fail("%s: a full-covariance density does not factor over "
                    "dimensions; reduce by mean or sum", fn);
  return d2r_fail("%s: unknown reduction %d", fn, (int)r);
}

/*
 * |L^-1 d|^2 for the differences d (y's shape), one value per row of y:
 * the triangular solve wants the vectors as columns, so they are laid
 * out as [B, n, G] against a batched factor, or as [n, M] (M = every
 * vector) against a shared one.
 */
static d2r_tensor *mahalanobis_sq(d2r_scope *sc, d2r_tensor *chol,
                                  d2r_tensor *d) {
  int nd = d2r_ndim(d);
  int64_t n = d2r_dim(d, -1);
  if (d2r_ndim(chol) == 3) {
    d2r_tensor *rhs = nd == 3 ? d2r_keep(sc, d2r_transpose(d, 1, 2)) : d;
    d2r_tensor *z = d2r_keep(sc, d2r_tri_solve(chol, rhs, true, false));
    d2r_tensor *z2 = d2r_keep(sc, d2r_square(z));
    return d2r_keep(sc, d2r_sum(z2, 1, false));
  }
  int64_t flat[2] = {-1, n};
  d2r_tensor *rows = d2r_keep(sc, d2r_reshape(d, 2, flat));
  d2r_tensor *cols = d2r_keep(sc, d2r_transpose(rows, 0, 1));
  d2r_tensor *z = d2r_keep(sc, d2r_tri_solve(chol, cols, true, false));
  d2r_tensor *q = d2r_keep(sc, d2r_sum(d2r_keep(sc, d2r_square(z)), 0,
                                       false));
  return d2r_keep(sc, d2r_reshape(q, nd - 1, d2r_shape(d)));
}

d2r_tensor *d2r_mvn_log_prob(d2r_tensor *mean, d2r_tensor *chol,
                             d2r_tensor *y, d2r_reduce reduce) {
  const char *fn = "mvn_log_prob";
  if (!mean || !chol || !y || !mvn_shapes_ok(mean, chol, fn)) return NULL;
  int ny = d2r_ndim(y);
  int64_t n = d2r_dim(mean, 1);
  if ((ny != 2 && ny != 3) || d2r_dim(y, 0) != d2r_dim(mean, 0) ||
      d2r_dim(y, -1) != n) {
    char b1[64], b2[64];
    return d2r_fail("%s: y must be [B, n] or [B, G, n] for a mean of %s, "
                    "got %s", fn, d2r_shape_str(mean, b1, sizeof b1),
                    d2r_shape_str(y, b2, sizeof b2));
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *m = ny == 3 ? KEEP(d2r_unsqueeze(mean, 1)) : mean;
  d2r_tensor *q = mahalanobis_sq(&s, chol, KEEP(d2r_sub(y, m)));
  d2r_tensor *hl = half_logdet(&s, chol);
  /* A per-row log-determinant [B] meets the [B, G] quadratic as [B, 1]. */
  if (ny == 3 && d2r_ndim(chol) == 3) hl = KEEP(d2r_unsqueeze(hl, 1));
  d2r_tensor *lp = KEEP(d2r_neg(KEEP(d2r_add(KEEP(d2r_muls(q, 0.5)),
                                             hl))));
  lp = KEEP(d2r_adds(lp, -(double)n * HALF_LOG_2PI));
  d2r_tensor *out = reduce_joint(lp, n, reduce, fn);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_mvn_entropy(d2r_tensor *chol, d2r_reduce reduce) {
  if (!chol) return NULL;
  int nc = d2r_ndim(chol);
  if ((nc != 2 && nc != 3) || d2r_dim(chol, -1) != d2r_dim(chol, -2)) {
    char b[64];
    return d2r_fail("mvn_entropy: chol must be [B, n, n] or [n, n], got %s",
                    d2r_shape_str(chol, b, sizeof b));
  }
  int64_t n = d2r_dim(chol, -1);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *h = KEEP(d2r_adds(half_logdet(&s, chol),
                                (double)n * HALF_LOG_2PIE));
  d2r_tensor *out = reduce_joint(h, n, reduce, "mvn_entropy");
  d2r_scope_end(&s);
  return out;
}

/* ---- configuration ----------------------------------------------------- */

static const char *const kind_names[] = {"gaussian", "full_gaussian",
                                         "categorical"};

const char *d2r_policy_kind_name(d2r_policy_kind kind) {
  if ((int)kind < 0 || (int)kind > 2) return NULL;
  return kind_names[kind];
}

d2r_policy_config d2r_policy_config_default(d2r_policy_kind kind,
                                            int64_t in, int64_t out) {
  d2r_policy_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.in = in;
  c.out = out;
  c.act = D2R_ACT_RELU;
  c.log_std = D2R_LOG_STD_HEAD;
  c.min_log_std = -5;
  c.max_log_std = 2;
  c.jitter = 1e-6;
  return c;
}

static int check_config(const d2r_policy_config *c) {
  const char *kind = d2r_policy_kind_name(c->kind);
  if (!kind) {
    d2r_fail("policy: invalid kind %d", (int)c->kind);
    return -1;
  }
  if (c->in < 1 || c->out < 1 || c->nhidden < 0 ||
      (c->nhidden > 0 && !c->hidden)) {
    d2r_fail("%s policy: need in >= 1, out >= 1 and nhidden >= 0 with "
             "sizes (got in %lld, out %lld, nhidden %d)", kind,
             (long long)c->in, (long long)c->out, c->nhidden);
    return -1;
  }
  bool diag = c->kind == D2R_POLICY_GAUSSIAN;
  if (!diag && (c->bounded || c->log_std != D2R_LOG_STD_HEAD)) {
    d2r_fail("%s policy: log-std bounds and a global log-std belong to "
             "the diagonal Gaussian policy", kind);
    return -1;
  }
  if (diag && c->log_std != D2R_LOG_STD_HEAD &&
      c->log_std != D2R_LOG_STD_GLOBAL) {
    d2r_fail("gaussian policy: invalid log-std kind %d", (int)c->log_std);
    return -1;
  }
  if (diag && !isfinite(c->log_std_init)) {
    d2r_fail("gaussian policy: log_std_init must be finite");
    return -1;
  }
  if (c->bounded && !(isfinite(c->min_log_std) && isfinite(c->max_log_std)
                      && c->min_log_std < c->max_log_std)) {
    d2r_fail("gaussian policy: log-std bounds need finite min < max, got "
             "min %g, max %g", c->min_log_std, c->max_log_std);
    return -1;
  }
  if (c->kind == D2R_POLICY_FULL_GAUSSIAN &&
      !(c->jitter >= 0 && isfinite(c->jitter))) {
    d2r_fail("full_gaussian policy: jitter must be >= 0 and finite, got %g",
             c->jitter);
    return -1;
  }
  return 0;
}

/* ---- the policy object ------------------------------------------------- */

struct d2r_policy {
  d2r_policy_config cfg;
  int64_t *hidden;        /* owned copy of cfg.hidden */
  d2r_model *net;
  int netn;               /* the network's parameter count */
  d2r_tensor *log_std;    /* global log-std [n], or NULL */
  d2r_tensor *lo, *hi;    /* bounds [n], or NULL */
  d2r_tensor *tril_idx;   /* full: [n * n] positions into the packed
                           * entries, k (a zero) above the diagonal */
  d2r_tensor *diag_mask;  /* full: [k], 1 at the diagonal entries */
  int nparams;
  d2r_tensor **params;    /* owned references */
};

void d2r_policy_free(d2r_policy *p) {
  if (!p) return;
  d2r_model_release(p->net);
  d2r_release(p->log_std), d2r_release(p->lo), d2r_release(p->hi);
  d2r_release(p->tril_idx), d2r_release(p->diag_mask);
  for (int i = 0; i < p->nparams; i++) d2r_release(p->params[i]);
  free(p->params);
  free(p->hidden);
  free(p);
}

/* Width of the network's last layer. */
static int64_t head_width(const d2r_policy_config *c) {
  int64_t n = c->out;
  switch (c->kind) {
  case D2R_POLICY_GAUSSIAN:
    return c->log_std == D2R_LOG_STD_HEAD ? 2 * n : n;
  case D2R_POLICY_FULL_GAUSSIAN: return n + n * (n + 1) / 2;
  case D2R_POLICY_CATEGORICAL: return n;
  }
  return n;
}

/* A [n] tensor filled with v, a gradient leaf when learn is set. */
static d2r_tensor *filled(int64_t n, double v, bool learn) {
  d2r_tensor *t = d2r_full(1, &n, v);
  if (t && learn && d2r_set_requires_grad(t, true) != 0) {
    d2r_release(t);
    return NULL;
  }
  return t;
}

/* The head log-std starts at log_std_init: add it to the bias entries
 * n..2n-1 of the last layer (the last parameter of the network). */
static void offset_head_bias(d2r_policy *p) {
  d2r_tensor *b = d2r_model_params(p->net)[p->netn - 1];
  double *v = d2r_data(b) + p->cfg.out;
  for (int64_t j = 0; j < p->cfg.out; j++) v[j] += p->cfg.log_std_init;
}

/* The gather index and diagonal mask of the Cholesky head: entry (i, j),
 * j <= i, of the row-major lower triangle sits at i (i + 1) / 2 + j. */
static int make_tril_tables(d2r_policy *p) {
  int64_t n = p->cfg.out, k = n * (n + 1) / 2, nn = n * n;
  p->tril_idx = d2r_zeros(1, &nn);
  p->diag_mask = d2r_zeros(1, &k);
  if (!p->tril_idx || !p->diag_mask) return -1;
  double *idx = d2r_data(p->tril_idx), *mask = d2r_data(p->diag_mask);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < n; j++)
      idx[i * n + j] = (double)(j <= i ? i * (i + 1) / 2 + j : k);
    mask[i * (i + 1) / 2 + i] = 1;
  }
  return 0;
}

/* Collects the parameter list: network, global log-std, learned bounds. */
static int collect_params(d2r_policy *p) {
  int n = p->netn + (p->log_std ? 1 : 0) + (p->cfg.learn_bounds ? 2 : 0);
  p->params = calloc((size_t)n, sizeof *p->params);
  if (!p->params) {
    d2r_fail("policy: out of memory");
    return -1;
  }
  d2r_tensor *const *np = d2r_model_params(p->net);
  for (int i = 0; i < p->netn; i++)
    p->params[p->nparams++] = d2r_retain(np[i]);
  if (p->log_std) p->params[p->nparams++] = d2r_retain(p->log_std);
  if (p->cfg.learn_bounds) {
    p->params[p->nparams++] = d2r_retain(p->lo);
    p->params[p->nparams++] = d2r_retain(p->hi);
  }
  return 0;
}

d2r_policy *d2r_policy_new(const d2r_policy_config *cfg, d2r_rng *rng) {
  if (!cfg) return d2r_fail("policy: no configuration");
  if (check_config(cfg) != 0) return NULL;
  if (!rng) return d2r_fail("%s policy: no random generator",
                            d2r_policy_kind_name(cfg->kind));
  d2r_policy *p = calloc(1, sizeof *p);
  size_t nh = (size_t)(cfg->nhidden > 0 ? cfg->nhidden : 1);
  int64_t *hidden = calloc(nh, sizeof *hidden);
  if (!p || !hidden) {
    free(p), free(hidden);
    return d2r_fail("policy: out of memory");
  }
  p->cfg = *cfg;
  if (cfg->nhidden > 0)
    memcpy(hidden, cfg->hidden, (size_t)cfg->nhidden * sizeof *hidden);
  p->hidden = hidden;
  p->cfg.hidden = hidden;
  if (cfg->kind != D2R_POLICY_GAUSSIAN) p->cfg.learn_bounds = false;
  if (!cfg->bounded) p->cfg.learn_bounds = false;
  p->net = d2r_mlp_new(cfg->in, cfg->nhidden, hidden, head_width(cfg),
                       cfg->act, rng);
  if (!p->net) goto fail;
  p->netn = d2r_model_nparams(p->net);
  bool diag = cfg->kind == D2R_POLICY_GAUSSIAN;
  if (diag && cfg->log_std == D2R_LOG_STD_HEAD) offset_head_bias(p);
  if (diag && cfg->log_std == D2R_LOG_STD_GLOBAL &&
      !(p->log_std = filled(cfg->out, cfg->log_std_init, true)))
    goto fail;
  if (p->cfg.bounded &&
      (!(p->lo = filled(cfg->out, cfg->min_log_std, p->cfg.learn_bounds)) ||
       !(p->hi = filled(cfg->out, cfg->max_log_std, p->cfg.learn_bounds))))
    goto fail;
  if (cfg->kind == D2R_POLICY_FULL_GAUSSIAN && make_tril_tables(p) != 0)
    goto fail;
  if (collect_params(p) != 0) goto fail;
  return p;
fail:
  d2r_policy_free(p);
  return NULL;
}

const d2r_policy_config *d2r_policy_get_config(const d2r_policy *p) {
  return p ? &p->cfg : NULL;
}

d2r_model *d2r_policy_model(const d2r_policy *p) {
  return p ? p->net : NULL;
}

int d2r_policy_nparams(const d2r_policy *p) {
  return p ? p->nparams : 0;
}

d2r_tensor *const *d2r_policy_params(const d2r_policy *p) {
  return p ? p->params : NULL;
}

int64_t d2r_policy_numel(const d2r_policy *p) {
  return p ? d2r_params_numel(p->nparams, p->params) : -1;
}

int d2r_policy_bounds(const d2r_policy *p, d2r_tensor **lo,
                      d2r_tensor **hi) {
  if (!p || !p->lo) {
    d2r_fail("policy_bounds: the policy has no log-std bounds");
    return -1;
  }
  *lo = d2r_retain(p->lo);
  *hi = d2r_retain(p->hi);
  return 0;
}

d2r_tensor *d2r_policy_bounds_penalty(const d2r_policy *p) {
  if (!p) return d2r_fail("policy_bounds_penalty: no policy");
  if (!p->lo) return d2r_scalar(0);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *out = d2r_sub(KEEP(d2r_sum_all(p->hi)),
                            KEEP(d2r_sum_all(p->lo)));
  d2r_scope_end(&s);
  return out;
}

/* ---- evaluating the heads ---------------------------------------------- */

void d2r_pdist_clear(d2r_pdist *d) {
  if (!d) return;
  d2r_release(d->mean), d2r_release(d->log_std);
  d2r_release(d->chol), d2r_release(d->logits);
  d->mean = d->log_std = d->chol = d->logits = NULL;
}

/* Columns [a, b) of the head output h [B, w]. */
static d2r_tensor *cols(d2r_scope *sc, d2r_tensor *h, int64_t a,
                        int64_t b) {
  return d2r_keep(sc, d2r_slice(h, 1, a, b, 1));
}

/* The PETS soft clamp of s [B, n] into the bounds lo, hi [n]. */
static d2r_tensor *soft_bound(d2r_scope *sc, d2r_tensor *s, d2r_tensor *lo,
                              d2r_tensor *hi) {
  d2r_tensor *a = d2r_keep(sc, d2r_softplus(d2r_keep(sc, d2r_sub(hi, s))));
  d2r_tensor *t = d2r_keep(sc, d2r_sub(hi, a));
  d2r_tensor *b = d2r_keep(sc, d2r_softplus(d2r_keep(sc, d2r_sub(t, lo))));
  return d2r_keep(sc, d2r_add(lo, b));
}

/* The log-std [B, n] of a diagonal policy; extra = the parameters after
 * the network's (global log-std, then learned lo and hi). */
static d2r_tensor *diag_log_std(d2r_scope *sc, d2r_policy *p, d2r_tensor *h,
                                d2r_tensor *const *extra) {
  int64_t n = p->cfg.out, shape[2] = {d2r_dim(h, 0), n};
  d2r_tensor *ls;
  if (p->log_std) {
    d2r_tensor *g = d2r_keep(sc, d2r_unsqueeze(*extra++, 0));
    ls = d2r_keep(sc, d2r_expand(g, 2, shape));
  } else {
    ls = cols(sc, h, n, 2 * n);
  }
  if (!p->lo) return ls;
  d2r_tensor *lo = p->cfg.learn_bounds ? extra[0] : p->lo;
  d2r_tensor *hi = p->cfg.learn_bounds ? extra[1] : p->hi;
  return soft_bound(sc, ls, lo, hi);
}

/*
 * The factor L [B, n, n] from the packed entries r [B, k]: the diagonal
 * entries go through softplus(r + log(e - 1)) + jitter, a zero column is
 * appended for the entries above the diagonal, and the [n * n] index
 * picks each entry of L from the k + 1 columns.
 */
static d2r_tensor *chol_from_packed(d2r_scope *sc, d2r_policy *p,
                                    d2r_tensor *r) {
  int64_t b = d2r_dim(r, 0), n = p->cfg.out;
  d2r_tensor *sp = d2r_keep(sc, d2r_softplus(d2r_keep(sc,
                                  d2r_adds(r, SOFTPLUS_INV_1))));
  sp = d2r_keep(sc, d2r_adds(sp, p->cfg.jitter));
  d2r_tensor *t = d2r_keep(sc, d2r_where(p->diag_mask, sp, r));
  int64_t zshape[2] = {b, 1};
  d2r_tensor *parts[2] = {t, d2r_keep(sc, d2r_zeros(2, zshape))};
  d2r_tensor *padded = d2r_keep(sc, d2r_cat(2, parts, 1));
  /* Pick along the columns: rows of the transpose [k + 1, B]. */
  d2r_tensor *pt = d2r_keep(sc, d2r_transpose(padded, 0, 1));
  d2r_tensor *picked = d2r_keep(sc, d2r_take_rows(pt, p->tril_idx));
  d2r_tensor *flat = d2r_keep(sc, d2r_transpose(picked, 0, 1));
  int64_t shape[3] = {b, n, n};
  return d2r_keep(sc, d2r_reshape(flat, 3, shape));
}

static bool check_input(const d2r_policy *p, const d2r_tensor *x) {
  if (d2r_ndim(x) == 2 && d2r_dim(x, 1) == p->cfg.in) return true;
  char b[64];
  d2r_fail("%s policy: x must be [B, %lld], got %s",
           d2r_policy_kind_name(p->cfg.kind), (long long)p->cfg.in,
           d2r_shape_str(x, b, sizeof b));
  return false;
}

/* Shapes of the parameters after the network's against the policy's. */
static bool check_extra(const d2r_policy *p, d2r_tensor *const *params) {
  for (int i = p->netn; i < p->nparams; i++) {
    if (!params[i]) return false;
    if (!d2r_same_shape(params[i], p->params[i])) {
      char got[64], want[64];
      d2r_fail("%s policy: parameter %d has shape %s, expected %s",
               d2r_policy_kind_name(p->cfg.kind), i,
               d2r_shape_str(params[i], got, sizeof got),
               d2r_shape_str(p->params[i], want, sizeof want));
      return false;
    }
  }
  return true;
}

int d2r_policy_dist_with(d2r_policy *p, d2r_tensor *const *params,
                         d2r_tensor *x, d2r_pdist *d) {
  if (!p || !x || !d) return -1;
  *d = (d2r_pdist){p->cfg.kind, p->cfg.out, NULL, NULL, NULL, NULL};
  if (!params) {
    d2r_fail("policy: no parameter list given");
    return -1;
  }
  if (!check_input(p, x) || !check_extra(p, params)) return -1;
  int64_t n = p->cfg.out;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *h = KEEP(d2r_model_call(p->net, params, x));
  if (h) {
    switch (p->cfg.kind) {
    case D2R_POLICY_GAUSSIAN:
      d->mean = d2r_retain(cols(&s, h, 0, n));
      d->log_std = d2r_retain(diag_log_std(&s, p, h, params + p->netn));
      break;
    case D2R_POLICY_FULL_GAUSSIAN:
      d->mean = d2r_retain(cols(&s, h, 0, n));
      d->chol = d2r_retain(chol_from_packed(&s, p, cols(&s, h, n,
                                                 d2r_dim(h, 1))));
      break;
    case D2R_POLICY_CATEGORICAL:
      d->logits = d2r_retain(h);
      break;
    }
  }
  d2r_scope_end(&s);
  bool ok = h && (d->logits || (d->mean && (d->log_std || d->chol)));
  if (!ok) d2r_pdist_clear(d);
  return ok ? 0 : -1;
}

int d2r_policy_dist(d2r_policy *p, d2r_tensor *x, d2r_pdist *d) {
  if (!p) return -1;
  return d2r_policy_dist_with(p, p->params, x, d);
}

/* ---- the distribution's functions -------------------------------------- */

static bool check_pdist(const d2r_pdist *d, const char *fn) {
  bool ok = d && (d->kind == D2R_POLICY_CATEGORICAL ? d->logits != NULL
                  : d->mean && (d->kind == D2R_POLICY_GAUSSIAN
                                ? d->log_std != NULL : d->chol != NULL));
  if (!ok) d2r_fail("%s: the distribution is empty", fn);
  return ok;
}

d2r_tensor *d2r_pdist_sample(d2r_rng *rng, const d2r_pdist *d,
                             int64_t draws) {
  if (!check_pdist(d, "pdist_sample")) return NULL;
  switch (d->kind) {
  case D2R_POLICY_GAUSSIAN:
    return d2r_gaussian_sample(rng, d->mean, d->log_std, draws);
  case D2R_POLICY_FULL_GAUSSIAN:
    return d2r_mvn_sample(rng, d->mean, d->chol, draws);
  case D2R_POLICY_CATEGORICAL:
    return d2r_categorical_sample(rng, d->logits, draws);
  }
  return d2r_fail("pdist_sample: invalid kind %d", (int)d->kind);
}

d2r_tensor *d2r_pdist_rsample(d2r_rng *rng, const d2r_pdist *d,
                              int64_t draws) {
  if (!check_pdist(d, "pdist_rsample")) return NULL;
  if (d->kind == D2R_POLICY_GAUSSIAN)
    return d2r_gaussian_rsample(rng, d->mean, d->log_std, draws);
  if (d->kind == D2R_POLICY_FULL_GAUSSIAN)
    return d2r_mvn_rsample(rng, d->mean, d->chol, draws);
  return d2r_fail("pdist_rsample: a categorical policy has no "
                  "reparameterised samples");
}

/* Categorical log-probabilities of class indices [B, G] or [B]. */
static d2r_tensor *categorical_lp(d2r_tensor *logits, d2r_tensor *y) {
  if (d2r_ndim(y) != 1) return d2r_categorical_log_prob(logits, y);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *y2 = KEEP(d2r_unsqueeze(y, 1));
  d2r_tensor *lp = KEEP(d2r_categorical_log_prob(logits, y2));
  d2r_tensor *out = d2r_squeeze(lp, 1);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_pdist_log_prob(const d2r_pdist *d, d2r_tensor *y,
                               d2r_reduce reduce) {
  if (!y || !check_pdist(d, "pdist_log_prob")) return NULL;
  switch (d->kind) {
  case D2R_POLICY_GAUSSIAN:
    return d2r_gaussian_log_prob(d->mean, d->log_std, y, reduce);
  case D2R_POLICY_FULL_GAUSSIAN:
    return d2r_mvn_log_prob(d->mean, d->chol, y, reduce);
  case D2R_POLICY_CATEGORICAL:
    return categorical_lp(d->logits, y);
  }
  return d2r_fail("pdist_log_prob: invalid kind %d", (int)d->kind);
}

d2r_tensor *d2r_pdist_entropy(const d2r_pdist *d, d2r_reduce reduce) {
  if (!check_pdist(d, "pdist_entropy")) return NULL;
  switch (d->kind) {
  case D2R_POLICY_GAUSSIAN:
    return d2r_gaussian_entropy(d->log_std, reduce);
  case D2R_POLICY_FULL_GAUSSIAN:
    return d2r_mvn_entropy(d->chol, reduce);
  case D2R_POLICY_CATEGORICAL:
    return d2r_categorical_entropy(d->logits);
  }
  return d2r_fail("pdist_entropy: invalid kind %d", (int)d->kind);
}

d2r_tensor *d2r_pdist_mean(const d2r_pdist *d) {
  if (!check_pdist(d, "pdist_mean")) return NULL;
  if (d->kind == D2R_POLICY_CATEGORICAL)
    return d2r_categorical_probs(d->logits);
  return d2r_retain(d->mean);
}

d2r_tensor *d2r_pdist_covariance(const d2r_pdist *d) {
  if (!check_pdist(d, "pdist_covariance")) return NULL;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *out = NULL;
  if (d->kind == D2R_POLICY_GAUSSIAN) {
    out = d2r_diag(KEEP(d2r_exp(KEEP(d2r_muls(d->log_std, 2)))));
  } else if (d->kind == D2R_POLICY_FULL_GAUSSIAN) {
    d2r_tensor *l = KEEP(d2r_tril(d->chol, 0));
    out = d2r_matmul(l, KEEP(d2r_transpose(l, 1, 2)));
  } else {
    /* E[e e^T] - p p^T = diag(p) - p p^T for a one-hot e. */
    d2r_tensor *pr = KEEP(d2r_categorical_probs(d->logits));
    d2r_tensor *outer = KEEP(d2r_matmul(KEEP(d2r_unsqueeze(pr, 2)),
                                        KEEP(d2r_unsqueeze(pr, 1))));
    out = d2r_sub(KEEP(d2r_diag(pr)), outer);
  }
  d2r_scope_end(&s);
  return out;
}

/* ---- one-call forms ---------------------------------------------------- */

d2r_tensor *d2r_policy_sample(d2r_policy *p, d2r_rng *rng, d2r_tensor *x,
                              int64_t draws) {
  d2r_pdist d = D2R_PDIST_INIT;
  if (d2r_policy_dist(p, x, &d) != 0) return NULL;
  d2r_tensor *out = d2r_pdist_sample(rng, &d, draws);
  d2r_pdist_clear(&d);
  return out;
}

d2r_tensor *d2r_policy_rsample(d2r_policy *p, d2r_rng *rng, d2r_tensor *x,
                               int64_t draws) {
  d2r_pdist d = D2R_PDIST_INIT;
  if (d2r_policy_dist(p, x, &d) != 0) return NULL;
  d2r_tensor *out = d2r_pdist_rsample(rng, &d, draws);
  d2r_pdist_clear(&d);
  return out;
}

d2r_tensor *d2r_policy_log_prob(d2r_policy *p, d2r_tensor *x,
                                d2r_tensor *y, d2r_reduce reduce) {
  d2r_pdist d = D2R_PDIST_INIT;
  if (!y || d2r_policy_dist(p, x, &d) != 0) return NULL;
  d2r_tensor *out = d2r_pdist_log_prob(&d, y, reduce);
  d2r_pdist_clear(&d);
  return out;
}

d2r_tensor *d2r_policy_entropy(d2r_policy *p, d2r_tensor *x,
                               d2r_reduce reduce) {
  d2r_pdist d = D2R_PDIST_INIT;
  if (d2r_policy_dist(p, x, &d) != 0) return NULL;
  d2r_tensor *out = d2r_pdist_entropy(&d, reduce);
  d2r_pdist_clear(&d);
  return out;
}

d2r_tensor *d2r_policy_mean(d2r_policy *p, d2r_tensor *x) {
  d2r_pdist d = D2R_PDIST_INIT;
  if (d2r_policy_dist(p, x, &d) != 0) return NULL;
  d2r_tensor *out = d2r_pdist_mean(&d);
  d2r_pdist_clear(&d);
  return out;
}

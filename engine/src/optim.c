/*
 * Optimisers (SGD, Adam, AdamW) with PyTorch's update rules, their state
 * for checkpoints, and gradient clipping.  Schedules and early stopping
 * live in schedule.c.
 */
#include "d2r/optim.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/nn.h"

struct d2r_optim {
  d2r_optim_kind kind;
  d2r_sgd_config sgd;
  d2r_adam_config adam;
  int n;
  d2r_tensor **params;   /* owned references */
  int64_t *steps;        /* per parameter */
  int nbuf;
  d2r_tensor **bufs;     /* n * nbuf, buffer k of i at i * nbuf + k */
};

/* ---- configurations ----------------------------------------------------- */

d2r_sgd_config d2r_sgd_defaults(double lr) {
  return (d2r_sgd_config){lr, 0.0, 0.0, 0.0, false};
}

d2r_adam_config d2r_adam_defaults(void) {
  return (d2r_adam_config){1e-3, 0.9, 0.999, 1e-8, 0.0, false};
}

d2r_adam_config d2r_adamw_defaults(void) {
  return (d2r_adam_config){1e-3, 0.9, 0.999, 1e-8, 1e-2, true};
}

static bool nonneg(double x) { return isfinite(x) && x >= 0.0; }

static int sgd_check(const d2r_sgd_config *c) {
  if (c == NULL) {
    d2r_fail("sgd: no configuration given");
    return -1;
  }
  if (!nonneg(c->lr) || !nonneg(c->momentum) || !isfinite(c->dampening) ||
      !nonneg(c->weight_decay)) {
    d2r_fail("sgd: lr %g, momentum %g, weight_decay %g must be finite and "
             ">= 0 (dampening %g finite)", c->lr, c->momentum,
             c->weight_decay, c->dampening);
    return -1;
  }
  if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0)) {
    d2r_fail("sgd: nesterov needs momentum > 0 and dampening 0");
    return -1;
  }
  return 0;
}

static bool is_beta(double b) { return isfinite(b) && b >= 0.0 && b < 1.0; }

static int adam_check(const d2r_adam_config *c) {
  if (c == NULL) {
    d2r_fail("adam: no configuration given");
    return -1;
  }
  if (!nonneg(c->lr) || !nonneg(c->eps) || !nonneg(c->weight_decay)) {
    d2r_fail("adam: lr %g, eps %g, weight_decay %g must be finite and "
             ">= 0", c->lr, c->eps, c->weight_decay);
    return -1;
  }
  if (!is_beta(c->beta1) || !is_beta(c->beta2)) {
    d2r_fail("adam: betas %g, %g must lie in [0, 1)", c->beta1, c->beta2);
    return -1;
  }
  return 0;
}

/* ---- construction ------------------------------------------------------- */

void d2r_optim_free(d2r_optim *o) {
  if (o == NULL) return;
  for (int i = 0; o->params && i < o->n; i++) d2r_release(o->params[i]);
  for (int j = 0; o->bufs && j < o->n * o->nbuf; j++)
    d2r_release(o->bufs[j]);
  free(o->params);
  free(o->steps);
  free(o->bufs);
  free(o);
}

static int check_params(const char *who, int n, d2r_tensor *const *params) {
  if (n < 0 || (n > 0 && params == NULL)) {
    d2r_fail("%s: invalid parameter list", who);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    if (params[i] == NULL) return -1;
    if (d2r_op_name(params[i]) != NULL || !d2r_is_contiguous(params[i])) {
      d2r_fail("%s: parameter %d is not a contiguous leaf tensor", who, i);
      return -1;
    }
  }
  return 0;
}

/* Fills the arrays of o (kind and nbuf set); 0 or -1. */
static int alloc_state(d2r_optim *o, d2r_tensor *const *params) {
  size_t n = o->n > 0 ? (size_t)o->n : 1;
  size_t nb = n * (size_t)(o->nbuf > 0 ? o->nbuf : 1);
  o->params = calloc(n, sizeof *o->params);
  o->steps = calloc(n, sizeof *o->steps);
  o->bufs = calloc(nb, sizeof *o->bufs);
  if (o->params == NULL || o->steps == NULL || o->bufs == NULL) {
    d2r_fail("optimiser: out of memory");
    return -1;
  }
  for (int i = 0; i < o->n; i++) o->params[i] = d2r_retain(params[i]);
  for (int j = 0; j < o->n * o->nbuf; j++) {
    o->bufs[j] = d2r_zeros_like(params[j / o->nbuf]);
    if (o->bufs[j] == NULL) return -1;
  }
  return 0;
}

static d2r_optim *optim_new(d2r_optim_kind kind, int nbuf, int n,
                            d2r_tensor *const *params) {
  d2r_optim *o = calloc(1, sizeof *o);
  if (o == NULL) return d2r_fail("optimiser: out of memory");
  o->kind = kind;
  o->n = n;
  o->nbuf = nbuf;
  if (alloc_state(o, params) != 0) {
    d2r_optim_free(o);
    return NULL;
  }
  return o;
}

d2r_optim *d2r_sgd_new(int n, d2r_tensor *const *params,
                       const d2r_sgd_config *config) {
  if (check_params("sgd", n, params) != 0 || sgd_check(config) != 0)
    return NULL;
  int nbuf = config->momentum != 0.0 ? 1 : 0;
  d2r_optim *o = optim_new(D2R_OPTIM_SGD, nbuf, n, params);
  if (o != NULL) o->sgd = *config;
  return o;
}

d2r_optim *d2r_adam_new(int n, d2r_tensor *const *params,
                        const d2r_adam_config *config) {
  if (check_params("adam", n, params) != 0 || adam_check(config) != 0)
    return NULL;
  d2r_optim *o = optim_new(D2R_OPTIM_ADAM, 2, n, params);
  if (o != NULL) o->adam = *config;
  return o;
}

d2r_optim_kind d2r_optim_get_kind(const d2r_optim *o) {
  return o != NULL ? o->kind : D2R_OPTIM_SGD;
}

const char *d2r_optim_name(const d2r_optim *o) {
  if (o == NULL) return NULL;
  if (o->kind == D2R_OPTIM_SGD) return "sgd";
  return o->adam.decoupled ? "adamw" : "adam";
}

int d2r_optim_nparams(const d2r_optim *o) { return o != NULL ? o->n : 0; }

d2r_tensor *const *d2r_optim_params(const d2r_optim *o) {
  return o != NULL ? o->params : NULL;
}

double d2r_optim_lr(const d2r_optim *o) {
  if (o == NULL) return NAN;
  return o->kind == D2R_OPTIM_SGD ? o->sgd.lr : o->adam.lr;
}

int d2r_optim_set_lr(d2r_optim *o, double lr) {
  if (o == NULL) return -1;
  if (!nonneg(lr)) {
    d2r_fail("%s: learning rate %g must be finite and >= 0",
             d2r_optim_name(o), lr);
    return -1;
  }
  if (o->kind == D2R_OPTIM_SGD) o->sgd.lr = lr;
  else o->adam.lr = lr;
  return 0;
}

/* ---- update rules ------------------------------------------------------- */

/* A moment that decays towards zero (a unit whose gradient stopped, as a
 * dead ReLU's) turns subnormal, and arithmetic on subnormal numbers runs
 * many times slower (a tenfold slower step was measured after ~7000
 * steps); it is set to zero instead, a change far below any update it
 * could make. */
static double flush(double x) { return fabs(x) < DBL_MIN ? 0.0 : x; }

/* One SGD update of the k values p with gradient g and buffer buf (NULL
 * without momentum); first is set at the parameter's first step. */
static void sgd_kernel(const d2r_sgd_config *c, double *p, const double *g,
                       double *buf, int64_t k, bool first) {
  for (int64_t j = 0; j < k; j++) {
    double d = g[j];
    if (c->weight_decay != 0.0) d = d + c->weight_decay * p[j];
    if (buf != NULL) {
      if (first) buf[j] = d;
      else buf[j] = flush(buf[j] * c->momentum + (1.0 - c->dampening) * d);
      d = c->nesterov ? d + c->momentum * buf[j] : buf[j];
    }
    p[j] = p[j] + (-c->lr) * d;
  }
}

/* The Adam rule on n values with weight decay already folded into g:
 * no branch in the loop, so it vectorises.  m moves towards g by
 * torch.lerp's formula, whose form depends on |w| < 0.5 (w = 1 - beta1):
 * one loop per form. */
#define ADAM_LOOP(moment)                                                \
  for (int64_t j = 0; j < n; j++) {                                      \
    double gj = g[j], d = gj - m[j];                                     \
    double mj = flush(moment);                                           \
    double vj = flush(v[j] * b2 + (1.0 - b2) * gj * gj);                 \
    m[j] = mj;                                                           \
    v[j] = vj;                                                           \
    p[j] = p[j] + (-step) * (mj / (sqrt(vj) * inv_bc2 + eps));          \
  }

/* A division and a square root per value: worth wider vectors where
 * the processor has them (GCC picks the clone at load time). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void adam_core(double *restrict p, const double *restrict g,
                      double *restrict m, double *restrict v, int64_t n,
                      double b1, double b2, double step, double inv_bc2,
                      double eps) {
  double w = 1.0 - b1;
  if (fabs(w) < 0.5) {
    ADAM_LOOP(m[j] + w * d)
  } else {
    ADAM_LOOP(gj - d * (1.0 - w))
  }
}
#undef ADAM_LOOP

/* One Adam update of the k values p at step t (from 1), in chunks so that
 * coupled weight decay has a scratch gradient on the stack. */
static void adam_kernel(const d2r_adam_config *c, double *p,
                        const double *g, double *m, double *v, int64_t k,
                        int64_t t) {
  enum { CHUNK = 512 };
  double step = c->lr / (1.0 - pow(c->beta1, (double)t));
  double bc2_sqrt = sqrt(1.0 - pow(c->beta2, (double)t));
  double decay = 1.0 - c->lr * c->weight_decay, wd = c->weight_decay;
  double scratch[CHUNK];
  for (int64_t j0 = 0; j0 < k; j0 += CHUNK) {
    int64_t n = k - j0 < CHUNK ? k - j0 : CHUNK;
    const double *gj = g + j0;
    double *pj = p + j0;
    if (wd != 0.0 && c->decoupled) {
      for (int64_t j = 0; j < n; j++) pj[j] = pj[j] * decay;
    } else if (wd != 0.0) {
      for (int64_t j = 0; j < n; j++) scratch[j] = gj[j] + wd * pj[j];
      gj = scratch;
    }
    adam_core(pj, gj, m + j0, v + j0, n, c->beta1, c->beta2, step,
              1.0 / bc2_sqrt, c->eps);
  }
}

/* The gradient of parameter i as a contiguous tensor (new reference);
 * NULL with *status 0 when there is none, -1 on failure. */
static d2r_tensor *grad_of(d2r_optim *o, int i, int *status) {
  d2r_tensor *g = d2r_grad(o->params[i]);
  *status = 0;
  if (g == NULL) return NULL;
  d2r_tensor *c = d2r_contiguous(g);
  d2r_release(g);
  if (c == NULL) *status = -1;
  return c;
}

static double *buffer_data(d2r_optim *o, int i, int k) {
  return k < o->nbuf ? d2r_data(o->bufs[i * o->nbuf + k]) : NULL;
}

static int step_param(d2r_optim *o, int i) {
  int status;
  d2r_tensor *g = grad_of(o, i, &status);
  if (g == NULL) return status;
  double *p = d2r_data(o->params[i]);
  const double *gv = d2r_data(g);
  d2r_mark_updated(o->params[i]);
  int64_t k = d2r_numel(g);
  int64_t t = ++o->steps[i];
  if (o->kind == D2R_OPTIM_SGD)
    sgd_kernel(&o->sgd, p, gv, buffer_data(o, i, 0), k, t == 1);
  else
    adam_kernel(&o->adam, p, gv, buffer_data(o, i, 0),
                buffer_data(o, i, 1), k, t);
  d2r_release(g);
  return 0;
}

/* Every gradient present has its parameter's size; 0 or -1. */
static int check_grads(d2r_optim *o) {
  for (int i = 0; i < o->n; i++) {
    d2r_tensor *g = d2r_grad(o->params[i]);
    int64_t k = g != NULL ? d2r_numel(g) : d2r_numel(o->params[i]);
    d2r_release(g);
    if (k != d2r_numel(o->params[i])) {
      d2r_fail("%s: gradient of parameter %d has %lld elements, expected "
               "%lld", d2r_optim_name(o), i, (long long)k,
               (long long)d2r_numel(o->params[i]));
      return -1;
    }
  }
  return 0;
}

int d2r_optim_step(d2r_optim *o) {
  if (o == NULL || check_grads(o) != 0) return -1;
  for (int i = 0; i < o->n; i++) {
    if (step_param(o, i) != 0) return -1;
  }
  return 0;
}

void d2r_optim_zero_grad(d2r_optim *o) {
  if (o != NULL) d2r_params_zero_grad(o->n, o->params);
}

/* ---- state -------------------------------------------------------------- */

int d2r_optim_nbuffers(const d2r_optim *o) { return o != NULL ? o->nbuf : 0; }

static int check_index(const d2r_optim *o, int i) {
  if (o == NULL) return -1;
  if (i < 0 || i >= o->n) {
    d2r_fail("%s: parameter index %d out of range [0, %d)",
             d2r_optim_name(o), i, o->n);
    return -1;
  }
  return 0;
}

int64_t d2r_optim_param_steps(const d2r_optim *o, int i) {
  return check_index(o, i) == 0 ? o->steps[i] : -1;
}

d2r_tensor *d2r_optim_buffer(const d2r_optim *o, int i, int k) {
  if (check_index(o, i) != 0) return NULL;
  if (k < 0 || k >= o->nbuf)
    return d2r_fail("%s: buffer index %d out of range [0, %d)",
                    d2r_optim_name(o), k, o->nbuf);
  return o->bufs[i * o->nbuf + k];
}

static int64_t state_len(const d2r_optim *o) {
  return o->n + o->nbuf * d2r_params_numel(o->n, o->params);
}

d2r_tensor *d2r_optim_state_flat(const d2r_optim *o) {
  if (o == NULL) return NULL;
  int64_t len = state_len(o);
  d2r_tensor *s = d2r_zeros(1, &len);
  if (s == NULL) return NULL;
  double *dst = d2r_data(s);
  for (int i = 0; i < o->n; i++) *dst++ = (double)o->steps[i];
  for (int j = 0; j < o->n * o->nbuf; j++) {
    /* d2r_numel is -1 only for a NULL tensor, which a buffer never is;
     * the test says so to the compiler too. */
    int64_t k = d2r_numel(o->bufs[j]);
    if (k <= 0) continue;
    memcpy(dst, d2r_data(o->bufs[j]), (size_t)k * sizeof *dst);
    dst += k;
  }
  return s;
}

static int check_state(const d2r_optim *o, d2r_tensor *s) {
  int64_t len = state_len(o);
  if (d2r_ndim(s) != 1 || d2r_numel(s) != len || !d2r_is_contiguous(s)) {
    d2r_fail("%s: state must be a contiguous [%lld] vector",
             d2r_optim_name(o), (long long)len);
    return -1;
  }
  const double *v = d2r_data(s);
  for (int i = 0; i < o->n; i++) {
    if (!(v[i] >= 0.0 && v[i] <= 9007199254740992.0 && v[i] == floor(v[i]))) {
      d2r_fail("%s: state step count %d is %g (not a count)",
               d2r_optim_name(o), i, v[i]);
      return -1;
    }
  }
  return 0;
}

int d2r_optim_set_state_flat(d2r_optim *o, d2r_tensor *state) {
  if (o == NULL || state == NULL) return -1;
  if (check_state(o, state) != 0) return -1;
  const double *src = d2r_data(state);
  for (int i = 0; i < o->n; i++) o->steps[i] = (int64_t)*src++;
  for (int j = 0; j < o->n * o->nbuf; j++) {
    int64_t k = d2r_numel(o->bufs[j]);
    if (k <= 0) continue;
    memcpy(d2r_data(o->bufs[j]), src, (size_t)k * sizeof *src);
    src += k;
  }
  return 0;
}

/* ---- gradient utilities -------------------------------------------------- */

int64_t d2r_grads_nonfinite(int n, d2r_tensor *const *params) {
  int64_t count = 0;
  for (int i = 0; i < n; i++) {
    if (params[i] == NULL) return -1;
    d2r_tensor *g = d2r_grad(params[i]);
    if (g != NULL) count += d2r_count_nonfinite(g);
    d2r_release(g);
  }
  return count;
}

/* Sum of squares of the contiguous values of t. */
static double sum_squares(d2r_tensor *t) {
  d2r_tensor *c = d2r_contiguous(t);
  if (c == NULL) return NAN;
  const double *v = d2r_data(c);
  double s = 0.0;
  for (int64_t j = 0; j < d2r_numel(c); j++) s += v[j] * v[j];
  d2r_release(c);
  return s;
}

double d2r_grad_norm(int n, d2r_tensor *const *params) {
  double total = 0.0;
  for (int i = 0; i < n; i++) {
    if (params[i] == NULL) return -1.0;
    d2r_tensor *g = d2r_grad(params[i]);
    if (g == NULL) continue;
    double norm = sqrt(sum_squares(g));
    d2r_release(g);
    total += norm * norm;
  }
  return sqrt(total);
}

typedef void (*grad_map)(double *v, int64_t k, double a);

static void scale_values(double *v, int64_t k, double a) {
  for (int64_t j = 0; j < k; j++) v[j] = v[j] * a;
}

static void clamp_values(double *v, int64_t k, double a) {
  for (int64_t j = 0; j < k; j++) {
    if (v[j] > a) v[j] = a;
    else if (v[j] < -a) v[j] = -a;
  }
}

/* Applies f to the stored gradient of p in place, whatever its layout. */
static int map_grad(d2r_tensor *p, grad_map f, double a) {
  d2r_tensor *g = d2r_grad(p);
  if (g == NULL) return 0;
  int rc = 0;
  if (d2r_is_contiguous(g)) {
    f(d2r_data(g), d2r_numel(g), a);
  } else {
    bool was = d2r_set_grad_enabled(false);
    d2r_tensor *c = d2r_contiguous(g);
    if (c != NULL) f(d2r_data(c), d2r_numel(c), a);
    rc = c != NULL ? d2r_copy_(g, c) : -1;
    d2r_set_grad_enabled(was);
    d2r_release(c);
  }
  d2r_release(g);
  return rc;
}

static int map_grads(int n, d2r_tensor *const *params, grad_map f,
                     double a) {
  for (int i = 0; i < n; i++) {
    if (params[i] == NULL || map_grad(params[i], f, a) != 0) return -1;
  }
  return 0;
}

double d2r_clip_grad_norm(int n, d2r_tensor *const *params,
                          double max_norm) {
  if (!(isfinite(max_norm) && max_norm > 0.0)) {
    d2r_fail("clip_grad_norm: max_norm %g must be finite and > 0",
             max_norm);
    return -1.0;
  }
  double norm = d2r_grad_norm(n, params);
  if (norm < 0.0) return -1.0;
  if (!isfinite(norm)) {
    d2r_fail("clip_grad_norm: %lld non-finite gradient elements (norm %g)",
             (long long)d2r_grads_nonfinite(n, params), norm);
    return -1.0;
  }
  double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0 && map_grads(n, params, scale_values, coef) != 0)
    return -1.0;
  return norm;
}

int d2r_clip_grad_value(int n, d2r_tensor *const *params, double clip) {
  if (!nonneg(clip)) {
    d2r_fail("clip_grad_value: clip %g must be finite and >= 0", clip);
    return -1;
  }
  return map_grads(n, params, clamp_values, clip);
}

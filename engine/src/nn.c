/*
 * Models: activations, the generic model object, linear layers, MLPs and
 * parameter lists as flat vectors.  The parameter file format lives in
 * nn_io.c.
 */
#include "d2r/nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- activations ------------------------------------------------------ */

static const char *const act_names[] = {"identity", "relu", "tanh",
                                        "sigmoid", "softplus"};
#define NACT ((int)(sizeof act_names / sizeof act_names[0]))

const char *d2r_activation_name(d2r_activation act) {
  if ((int)act < 0 || (int)act >= NACT) return NULL;
  return act_names[act];
}

int d2r_activation_parse(const char *name, d2r_activation *out) {
  if (name == NULL) {
    d2r_fail("activation: no name given");
    return -1;
  }
  for (int i = 0; i < NACT; i++) {
    if (strcmp(name, act_names[i]) == 0) {
      *out = (d2r_activation)i;
      return 0;
    }
  }
  if (strcmp(name, "none") == 0) {
    *out = D2R_ACT_IDENTITY;
    return 0;
  }
  d2r_fail("activation: unknown name '%s' (expected identity, none, "
           "relu, tanh, sigmoid or softplus)", name);
  return -1;
}

d2r_tensor *d2r_activate(d2r_tensor *x, d2r_activation act) {
  if (x == NULL) return NULL;
  switch (act) {
  case D2R_ACT_IDENTITY: return d2r_retain(x);
  case D2R_ACT_RELU: return d2r_relu(x);
  case D2R_ACT_TANH: return d2r_tanh(x);
  case D2R_ACT_SIGMOID: return d2r_sigmoid(x);
  case D2R_ACT_SOFTPLUS: return d2r_softplus(x);
  }
  return d2r_fail("activation: invalid value %d", (int)act);
}

/* ---- generic models ---------------------------------------------------- */

struct d2r_model {
  const d2r_model_ops *ops;
  void *impl;
  int refs;
  int nparams;
  d2r_tensor **params;       /* owned references */
  int64_t in, out;
};

static int check_param(const d2r_model_ops *ops, int i, d2r_tensor *p) {
  if (p == NULL) return -1;  /* an earlier failure: keep its message */
  if (d2r_op_name(p) != NULL || !d2r_is_contiguous(p)) {
    d2r_fail("%s: parameter %d is not a contiguous leaf tensor",
             ops->kind, i);
    return -1;
  }
  return 0;
}

static void free_impl(const d2r_model_ops *ops, void *impl) {
  if (ops != NULL && ops->free_impl != NULL && impl != NULL)
    ops->free_impl(impl);
}

d2r_model *d2r_model_new(const d2r_model_ops *ops, void *impl, int n,
                         d2r_tensor *const *params, int64_t in_features,
                         int64_t out_features) {
  if (ops == NULL || ops->forward == NULL || n < 0 ||
      (n > 0 && params == NULL)) {
    free_impl(ops, impl);
    return d2r_fail("model: invalid ops or parameter list");
  }
  for (int i = 0; i < n; i++) {
    if (check_param(ops, i, params[i]) != 0) {
      free_impl(ops, impl);
      return NULL;
    }
  }
  d2r_model *m = calloc(1, sizeof *m);
  d2r_tensor **ps = calloc(n > 0 ? (size_t)n : 1, sizeof *ps);
  if (m == NULL || ps == NULL) {
    free(m);
    free(ps);
    free_impl(ops, impl);
    return d2r_fail("%s: out of memory", ops->kind);
  }
  for (int i = 0; i < n; i++) ps[i] = d2r_retain(params[i]);
  *m = (d2r_model){ops, impl, 1, n, ps, in_features, out_features};
  return m;
}

d2r_model *d2r_model_retain(d2r_model *m) {
  if (m != NULL) m->refs++;
  return m;
}

void d2r_model_release(d2r_model *m) {
  if (m == NULL || --m->refs > 0) return;
  for (int i = 0; i < m->nparams; i++) d2r_release(m->params[i]);
  free(m->params);
  free_impl(m->ops, m->impl);
  free(m);
}

const char *d2r_model_kind(const d2r_model *m) {
  return m != NULL ? m->ops->kind : NULL;
}

int64_t d2r_model_in_features(const d2r_model *m) {
  return m != NULL ? m->in : -1;
}

int64_t d2r_model_out_features(const d2r_model *m) {
  return m != NULL ? m->out : -1;
}

void *d2r_model_impl(const d2r_model *m) {
  return m != NULL ? m->impl : NULL;
}

int d2r_model_nparams(const d2r_model *m) {
  return m != NULL ? m->nparams : 0;
}

d2r_tensor *const *d2r_model_params(const d2r_model *m) {
  return m != NULL ? m->params : NULL;
}

int64_t d2r_model_numel(const d2r_model *m) {
  if (m == NULL) return -1;
  return d2r_params_numel(m->nparams, m->params);
}

d2r_tensor *d2r_model_forward(d2r_model *m, d2r_tensor *x) {
  if (m == NULL || x == NULL) return NULL;
  return m->ops->forward(m->impl, m->params, x);
}

d2r_tensor *d2r_model_call(d2r_model *m, d2r_tensor *const *params,
                           d2r_tensor *x) {
  if (m == NULL || x == NULL) return NULL;
  if (m->nparams > 0 && params == NULL)
    return d2r_fail("%s: no parameter list given", m->ops->kind);
  for (int i = 0; i < m->nparams; i++) {
    if (params[i] == NULL) return NULL;
    if (!d2r_same_shape(params[i], m->params[i])) {
      char got[64], want[64];
      d2r_shape_str(params[i], got, sizeof got);
      d2r_shape_str(m->params[i], want, sizeof want);
      return d2r_fail("%s: parameter %d has shape %s, expected %s",
                      m->ops->kind, i, got, want);
    }
  }
  return m->ops->forward(m->impl, params, x);
}

/* ---- linear layers ----------------------------------------------------- */

static d2r_tensor *linear_check(d2r_tensor *x, d2r_tensor *w,
                                d2r_tensor *b) {
  char xs[64], ws[64];
  int nd = d2r_ndim(x);
  if (d2r_ndim(w) != 2 || nd < 1 || d2r_dim(x, -1) != d2r_dim(w, 0)) {
    d2r_shape_str(x, xs, sizeof xs);
    d2r_shape_str(w, ws, sizeof ws);
    return d2r_fail("linear: input %s does not match weight %s", xs, ws);
  }
  if (b != NULL && (d2r_ndim(b) != 1 || d2r_dim(b, 0) != d2r_dim(w, 1))) {
    d2r_shape_str(b, xs, sizeof xs);
    d2r_shape_str(w, ws, sizeof ws);
    return d2r_fail("linear: bias %s does not match weight %s", xs, ws);
  }
  return x;
}

/* x2 @ w + b for a 2-d x2, within scope s. */
static d2r_tensor *affine2(d2r_scope *s, d2r_tensor *x2, d2r_tensor *w,
                           d2r_tensor *b) {
  return d2r_keep(s, b != NULL ? d2r_addmm(x2, w, b) : d2r_matmul(x2, w));
}

d2r_tensor *d2r_linear_forward(d2r_tensor *x, d2r_tensor *w,
                               d2r_tensor *b) {
  if (x == NULL || w == NULL) return NULL;
  if (linear_check(x, w, b) == NULL) return NULL;
  int nd = d2r_ndim(x);
  if (nd == 2) return b != NULL ? d2r_addmm(x, w, b) : d2r_matmul(x, w);
  d2r_scope s = D2R_SCOPE_INIT;
  int64_t shape[D2R_MAXDIM], flat[2] = {-1, d2r_dim(w, 0)};
  memcpy(shape, d2r_shape(x), (size_t)nd * sizeof shape[0]);
  shape[nd - 1] = d2r_dim(w, 1);
  d2r_tensor *x2 = d2r_keep(&s, d2r_reshape(x, 2, flat));
  d2r_tensor *y2 = affine2(&s, x2, w, b);
  d2r_tensor *y = d2r_reshape(y2, nd, shape);
  d2r_scope_end(&s);
  return y;
}

/* Uniform(-1/sqrt(in), 1/sqrt(in)) parameter of the given shape. */
static d2r_tensor *init_param(d2r_rng *rng, int ndim, const int64_t *shape,
                              int64_t fan_in) {
  double k = 1.0 / sqrt((double)fan_in);
  d2r_tensor *p = d2r_rand_uniform(rng, ndim, shape, -k, k);
  if (p != NULL && d2r_set_requires_grad(p, true) != 0) {
    d2r_release(p);
    return NULL;
  }
  return p;
}

/* Weight [in, out] and bias [out] (if bias) into ps; returns the count of
 * tensors made (1 or 2), or -1 (nothing left to release). */
static int init_layer(d2r_rng *rng, int64_t in, int64_t out, bool bias,
                      d2r_tensor **ps) {
  int64_t wshape[2] = {in, out};
  ps[0] = init_param(rng, 2, wshape, in);
  if (ps[0] == NULL) return -1;
  if (!bias) return 1;
  ps[1] = init_param(rng, 1, &out, in);
  if (ps[1] == NULL) {
    d2r_release(ps[0]);
    return -1;
  }
  return 2;
}

/* The impl of linear and MLP models. */
typedef struct mlp_impl {
  int nlayers;
  bool bias;
  d2r_activation act;
} mlp_impl;

static d2r_tensor *mlp_forward(void *impl, d2r_tensor *const *params,
                               d2r_tensor *x) {
  const mlp_impl *mi = impl;
  int per = mi->bias ? 2 : 1;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *h = x;
  for (int l = 0; l < mi->nlayers && h != NULL; l++) {
    d2r_tensor *b = mi->bias ? params[per * l + 1] : NULL;
    bool hidden = l + 1 < mi->nlayers;
    /* A hidden ReLU layer on a batch of rows is one op (the same
     * values as the product, bias and relu one after the other). */
    if (hidden && mi->act == D2R_ACT_RELU && b != NULL &&
        d2r_ndim(h) == 2) {
      h = linear_check(h, params[per * l], b) == NULL ? NULL
          : d2r_keep(&s, d2r_addmm_relu(h, params[per * l], b));
      continue;
    }
    h = d2r_keep(&s, d2r_linear_forward(h, params[per * l], b));
    if (hidden) h = d2r_keep(&s, d2r_activate(h, mi->act));
  }
  d2r_tensor *y = d2r_retain(h);
  d2r_scope_end(&s);
  return y;
}

static const d2r_model_ops linear_ops = {"linear", mlp_forward, free};
static const d2r_model_ops mlp_ops = {"mlp", mlp_forward, free};

static mlp_impl *mlp_impl_new(int nlayers, bool bias, d2r_activation act) {
  mlp_impl *mi = malloc(sizeof *mi);
  if (mi == NULL) return d2r_fail("mlp: out of memory");
  *mi = (mlp_impl){nlayers, bias, act};
  return mi;
}

d2r_model *d2r_linear_new(int64_t in, int64_t out, bool bias,
                          d2r_rng *rng) {
  if (in < 1 || out < 1 || rng == NULL)
    return d2r_fail("linear: need in >= 1, out >= 1 and a generator "
                    "(got in %lld, out %lld)", (long long)in,
                    (long long)out);
  d2r_tensor *ps[2];
  int n = init_layer(rng, in, out, bias, ps);
  if (n < 0) return NULL;
  mlp_impl *mi = mlp_impl_new(1, bias, D2R_ACT_IDENTITY);
  d2r_model *m = NULL;
  if (mi != NULL) m = d2r_model_new(&linear_ops, mi, n, ps, in, out);
  for (int i = 0; i < n; i++) d2r_release(ps[i]);
  return m;
}

static int mlp_check(int64_t in, int nhidden, const int64_t *hidden,
                     int64_t out, d2r_activation act, d2r_rng *rng) {
  if (in < 1 || out < 1 || nhidden < 0 || rng == NULL ||
      (nhidden > 0 && hidden == NULL)) {
    d2r_fail("mlp: need in >= 1, out >= 1, nhidden >= 0 with sizes and "
             "a generator");
    return -1;
  }
  for (int i = 0; i < nhidden; i++) {
    if (hidden[i] < 1) {
      d2r_fail("mlp: hidden size %d is %lld (must be >= 1)", i,
               (long long)hidden[i]);
      return -1;
    }
  }
  if (d2r_activation_name(act) == NULL) {
    d2r_fail("mlp: invalid activation %d", (int)act);
    return -1;
  }
  return 0;
}

static void release_all(int n, d2r_tensor **ps) {
  for (int i = 0; i < n; i++) d2r_release(ps[i]);
}

/* Makes the 2 * (nhidden + 1) parameters into ps; 0 or -1. */
static int mlp_params(int64_t in, int nhidden, const int64_t *hidden,
                      int64_t out, d2r_rng *rng, d2r_tensor **ps) {
  int64_t fan_in = in;
  for (int l = 0; l <= nhidden; l++) {
    int64_t width = l < nhidden ? hidden[l] : out;
    if (init_layer(rng, fan_in, width, true, ps + 2 * l) < 0) {
      release_all(2 * l, ps);
      return -1;
    }
    fan_in = width;
  }
  return 0;
}

d2r_model *d2r_mlp_new(int64_t in, int nhidden, const int64_t *hidden,
                       int64_t out, d2r_activation act, d2r_rng *rng) {
  if (mlp_check(in, nhidden, hidden, out, act, rng) != 0) return NULL;
  int n = 2 * (nhidden + 1);
  d2r_tensor **ps = malloc((size_t)n * sizeof *ps);
  if (ps == NULL) return d2r_fail("mlp: out of memory");
  if (mlp_params(in, nhidden, hidden, out, rng, ps) != 0) {
    free(ps);
    return NULL;
  }
  mlp_impl *mi = mlp_impl_new(nhidden + 1, true, act);
  d2r_model *m = NULL;
  if (mi != NULL) m = d2r_model_new(&mlp_ops, mi, n, ps, in, out);
  release_all(n, ps);
  free(ps);
  return m;
}

static const mlp_impl *as_mlp(const d2r_model *m) {
  if (m == NULL) return NULL;
  if (m->ops != &mlp_ops && m->ops != &linear_ops)
    return d2r_fail("mlp: model of kind '%s' is not an mlp", m->ops->kind);
  return m->impl;
}

int d2r_mlp_nlayers(const d2r_model *m) {
  const mlp_impl *mi = as_mlp(m);
  return mi != NULL ? mi->nlayers : -1;
}

d2r_activation d2r_mlp_activation(const d2r_model *m) {
  const mlp_impl *mi = as_mlp(m);
  return mi != NULL ? mi->act : D2R_ACT_IDENTITY;
}

/* ---- parameter lists as flat vectors ----------------------------------- */

int64_t d2r_params_numel(int n, d2r_tensor *const *params) {
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    if (params[i] == NULL) return -1;
    total += d2r_numel(params[i]);
  }
  return total;
}

/* Copies the values of t (any layout) to out; 0 or -1. */
static int read_values(d2r_tensor *t, double *out) {
  d2r_tensor *c = d2r_contiguous(t);
  if (c == NULL) return -1;
  memcpy(out, d2r_data(c), (size_t)d2r_numel(c) * sizeof *out);
  d2r_release(c);
  return 0;
}

static d2r_tensor *flat_new(int n, d2r_tensor *const *params,
                            const char *who) {
  int64_t total = d2r_params_numel(n, params);
  if (total < 0) return NULL;
  d2r_tensor *flat = d2r_zeros(1, &total);
  if (flat == NULL) d2r_fail("%s: cannot allocate %lld values", who,
                             (long long)total);
  return flat;
}

d2r_tensor *d2r_params_flatten(int n, d2r_tensor *const *params) {
  d2r_tensor *flat = flat_new(n, params, "params_flatten");
  if (flat == NULL) return NULL;
  double *dst = d2r_data(flat);
  for (int i = 0; i < n; i++) {
    if (read_values(params[i], dst) != 0) {
      d2r_release(flat);
      return NULL;
    }
    dst += d2r_numel(params[i]);
  }
  return flat;
}

d2r_tensor *d2r_params_grad_flat(int n, d2r_tensor *const *params) {
  d2r_tensor *flat = flat_new(n, params, "params_grad_flat");
  if (flat == NULL) return NULL;
  double *dst = d2r_data(flat);
  for (int i = 0; i < n; i++) {
    d2r_tensor *g = d2r_grad(params[i]);
    int rc = g != NULL ? read_values(g, dst) : 0;
    d2r_release(g);
    if (rc != 0) {
      d2r_release(flat);
      return NULL;
    }
    dst += d2r_numel(params[i]);
  }
  return flat;
}

/* Writes values into p (any layout); 0 or -1. */
static int write_values(d2r_tensor *p, const double *values) {
  if (d2r_is_contiguous(p)) {
    memcpy(d2r_data(p), values, (size_t)d2r_numel(p) * sizeof *values);
    return 0;
  }
  d2r_tensor *src = d2r_from_data(d2r_ndim(p), d2r_shape(p), values);
  int rc = src != NULL ? d2r_copy_(p, src) : -1;
  d2r_release(src);
  return rc;
}

int d2r_params_assign_flat(int n, d2r_tensor *const *params,
                           d2r_tensor *flat) {
  int64_t total = d2r_params_numel(n, params);
  if (total < 0 || flat == NULL) return -1;
  if (d2r_ndim(flat) != 1 || d2r_numel(flat) != total) {
    char fs[64];
    d2r_shape_str(flat, fs, sizeof fs);
    d2r_fail("params_assign_flat: vector %s, expected [%lld]", fs,
             (long long)total);
    return -1;
  }
  d2r_tensor *c = d2r_contiguous(flat);
  if (c == NULL) return -1;
  const double *src = d2r_data(c);
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    rc = write_values(params[i], src);
    src += d2r_numel(params[i]);
  }
  d2r_release(c);
  return rc;
}

d2r_tensor *d2r_params_cat(int n, d2r_tensor *const *tensors) {
  if (n < 1) return d2r_fail("params_cat: empty list");
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor **parts = malloc((size_t)n * sizeof *parts);
  if (parts == NULL) return d2r_fail("params_cat: out of memory");
  int64_t flat = -1;
  bool ok = true;
  for (int i = 0; i < n; i++) {
    parts[i] = d2r_keep(&s, d2r_reshape(tensors[i], 1, &flat));
    ok = ok && parts[i] != NULL;
  }
  d2r_tensor *out = ok ? d2r_cat(n, parts, 0) : NULL;
  d2r_scope_end(&s);
  free(parts);
  return out;
}

void d2r_params_zero_grad(int n, d2r_tensor *const *params) {
  for (int i = 0; i < n; i++) {
    if (params[i] != NULL) d2r_zero_grad(params[i]);
  }
}

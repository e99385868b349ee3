/*
 * Tensor objects: errors, storage and reference counts, creation,
 * introspection, scopes of temporaries and in-place updates.  Views and
 * operations live in view.c and ops.c, the backward pass in autograd.c.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_impl.h"

/* ---- errors ------------------------------------------------------------- */

static _Thread_local char errbuf[1024];

const char *d2r_error(void) { return errbuf; }

void d2r_clear_error(void) { errbuf[0] = '\0'; }

void *d2r_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return NULL;
}

/* ---- storage and references --------------------------------------------- */

static d2r_storage *storage_new(int64_t size) {
  d2r_storage *st = d2r_alloc_storage();
  if (!st) return d2r_fail("out of memory allocating a tensor");
  /* A zero-size tensor still gets a valid pointer. */
  st->data = d2r_alloc_block(size);
  if (!st->data) {
    d2r_free_storage(st);
    return d2r_fail("out of memory allocating %lld doubles",
                    (long long)size);
  }
  st->size = size;
  st->refs = 1;
  return st;
}

static void storage_release(d2r_storage *st) {
  if (st && --st->refs == 0) {
    d2r_free_block(st->data, st->size);
    d2r_free_storage(st);
  }
}

d2r_tensor *d2r_retain(d2r_tensor *t) {
  if (t) t->refs++;
  return t;
}

static void node_free(d2r_node *n) {
  for (int i = 0; i < n->nin; i++) d2r_release(n->in[i]);
  d2r_release(n->aux);
  d2r_free_node(n);
}

/*
 * Releasing the last reference to the end of a long graph would free it
 * recursively, one stack frame per node; a graph unrolled through many
 * optimiser steps could exhaust the stack.  Tensors whose count drops to
 * zero are queued instead and freed by the outermost call.
 */
static _Thread_local d2r_tensor *free_queue;
static _Thread_local bool freeing;

void d2r_release(d2r_tensor *t) {
  if (!t || --t->refs > 0) return;
  t->next = free_queue;
  free_queue = t;
  if (freeing) return;
  freeing = true;
  while (free_queue) {
    d2r_tensor *x = free_queue;
    free_queue = x->next;
    if (x->node) node_free(x->node);
    d2r_release(x->grad);
    storage_release(x->st);
    d2r_free_tensor(x);
  }
  freeing = false;
}

/* ---- shapes ------------------------------------------------------------- */

/* Largest element count (and stride) a tensor may have; products are
 * checked against it so they can never wrap around. */
#define D2R_MAX_NUMEL (INT64_C(1) << 50)

bool d2r_shape_fits(int ndim, const int64_t *shape) {
  /* Zero-size dimensions count as 1 here: strides are products of the
   * other sizes and must fit too. */
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    int64_t d = shape[i] > 1 ? shape[i] : 1;
    if (n > D2R_MAX_NUMEL / d) return false;
    n *= d;
  }
  return true;
}

bool d2r_check_shape(int ndim, const int64_t *shape, const char *fn) {
  if (ndim < 0 || ndim > D2R_MAXDIM) {
    d2r_fail("%s: %d dimensions (at most %d are supported)", fn, ndim,
             D2R_MAXDIM);
    return false;
  }
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      d2r_fail("%s: negative size %lld in dimension %d", fn,
               (long long)shape[i], i + 1);
      return false;
    }
  }
  if (!d2r_shape_fits(ndim, shape)) {
    d2r_fail("%s: shape too large", fn);
    return false;
  }
  return true;
}

static void contiguous_strides(int ndim, const int64_t *shape,
                               int64_t *stride) {
  int64_t s = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
}

static int64_t count(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

static _Thread_local uint64_t next_seq;

static d2r_tensor *tensor_alloc(void) {
  d2r_tensor *t = d2r_alloc_tensor();
  if (!t) return d2r_fail("out of memory allocating a tensor");
  t->refs = 1;
  t->seq = ++next_seq;
  return t;
}

d2r_tensor *d2r_new(int ndim, const int64_t *shape) {
  if (!d2r_check_shape(ndim, shape, "tensor")) return NULL;
  d2r_tensor *t = tensor_alloc();
  if (!t) return NULL;
  t->ndim = ndim;
  if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  contiguous_strides(ndim, shape, t->stride);
  t->numel = count(ndim, shape);
  t->st = storage_new(t->numel);
  if (!t->st) {
    d2r_free_tensor(t);
    return NULL;
  }
  return t;
}

d2r_tensor *d2r_view(d2r_tensor *base, int ndim, const int64_t *shape,
                     const int64_t *stride, int64_t offset) {
  d2r_tensor *t = tensor_alloc();
  if (!t) return NULL;
  t->ndim = ndim;
  if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  if (ndim > 0) memcpy(t->stride, stride, (size_t)ndim * sizeof *stride);
  t->offset = offset;
  t->numel = count(ndim, shape);
  t->st = base->st;
  t->st->refs++;
  return t;
}

double *d2r_ptr_at(d2r_tensor *t, int64_t flat) {
  int64_t off = t->offset;
  for (int i = t->ndim - 1; i >= 0; i--) {
    off += (flat % t->shape[i]) * t->stride[i];
    flat /= t->shape[i];
  }
  return t->st->data + off;
}

/* ---- introspection ------------------------------------------------------ */

int d2r_ndim(const d2r_tensor *t) { return t ? t->ndim : -1; }
const int64_t *d2r_shape(const d2r_tensor *t) { return t->shape; }
const int64_t *d2r_strides(const d2r_tensor *t) { return t->stride; }
int64_t d2r_numel(const d2r_tensor *t) { return t ? t->numel : -1; }
double *d2r_data(d2r_tensor *t) { return t->st->data + t->offset; }

int d2r_norm_axis(const d2r_tensor *t, int axis, const char *fn) {
  int a = axis < 0 ? axis + t->ndim : axis;
  if (a < 0 || a >= t->ndim) {
    d2r_fail("%s: axis %d out of range for a %d-d tensor", fn, axis,
             t->ndim);
    return -1;
  }
  return a;
}

int64_t d2r_dim(const d2r_tensor *t, int axis) {
  if (!t) return -1;
  int a = d2r_norm_axis(t, axis, "dim");
  return a < 0 ? -1 : t->shape[a];
}

bool d2r_is_contiguous(const d2r_tensor *t) {
  int64_t s = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->shape[i] != 1 && t->stride[i] != s) return false;
    s *= t->shape[i];
  }
  return true;
}

double d2r_item(const d2r_tensor *t) {
  if (!t) return NAN;
  if (t->numel != 1) {
    char buf[96];
    d2r_fail("item: a tensor of shape %s has %lld elements, not 1",
             d2r_shape_str(t, buf, sizeof buf), (long long)t->numel);
    return NAN;
  }
  return t->st->data[t->offset];
}

static int64_t index_offset(const d2r_tensor *t, const int64_t *index,
                            const char *fn) {
  int64_t off = t->offset;
  for (int i = 0; i < t->ndim; i++) {
    if (index[i] < 0 || index[i] >= t->shape[i]) {
      d2r_fail("%s: index %lld out of range [0, %lld) in dimension %d", fn,
               (long long)index[i], (long long)t->shape[i], i + 1);
      return -1;
    }
    off += index[i] * t->stride[i];
  }
  return off;
}

int d2r_at(const d2r_tensor *t, const int64_t *index, double *out) {
  int64_t off = index_offset(t, index, "at");
  if (off < 0) return -1;
  *out = t->st->data[off];
  return 0;
}

/* Marks t's storage as changed in place (see d2r_storage.version). */
static void bump(d2r_tensor *t) {
  if (t->st) t->st->version++;
}

int d2r_set_at(d2r_tensor *t, const int64_t *index, double value) {
  int64_t off = index_offset(t, index, "set");
  if (off < 0) return -1;
  t->st->data[off] = value;
  bump(t);
  return 0;
}

const char *d2r_shape_str(const d2r_tensor *t, char *buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  if (size < 3) return buf;
  used += (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < t->ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld",
                             i ? ", " : "", (long long)t->shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

bool d2r_same_shape(const d2r_tensor *a, const d2r_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

/* ---- creation ----------------------------------------------------------- */

d2r_tensor *d2r_empty(int ndim, const int64_t *shape) {
  return d2r_new(ndim, shape);
}

d2r_tensor *d2r_full(int ndim, const int64_t *shape, double value) {
  d2r_tensor *t = d2r_new(ndim, shape);
  if (t)
    for (int64_t i = 0; i < t->numel; i++) t->st->data[i] = value;
  return t;
}

d2r_tensor *d2r_zeros(int ndim, const int64_t *shape) {
  d2r_tensor *t = d2r_new(ndim, shape);
  if (t) memset(t->st->data, 0, (size_t)t->numel * sizeof(double));
  return t;
}

d2r_tensor *d2r_ones(int ndim, const int64_t *shape) {
  return d2r_full(ndim, shape, 1.0);
}

d2r_tensor *d2r_scalar(double value) { return d2r_full(0, NULL, value); }

d2r_tensor *d2r_eye(int64_t n) {
  int64_t shape[2] = {n, n};
  d2r_tensor *t = d2r_zeros(2, shape);
  if (t)
    for (int64_t i = 0; i < n; i++) t->st->data[i * n + i] = 1.0;
  return t;
}

d2r_tensor *d2r_arange(double start, double stop, double step) {
  if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
    return d2r_fail("arange: step must be non-zero and bounds finite");
  double span = ceil((stop - start) / step);
  if (span > (double)(INT64_C(1) << 50))
    return d2r_fail("arange: %g elements is too many", span);
  int64_t n = span > 0 ? (int64_t)span : 0;
  d2r_tensor *t = d2r_new(1, &n);
  if (t)
    for (int64_t i = 0; i < n; i++) t->st->data[i] = start + (double)i * step;
  return t;
}

d2r_tensor *d2r_from_data(int ndim, const int64_t *shape, const double *data) {
  d2r_tensor *t = d2r_new(ndim, shape);
  if (t && t->numel > 0)
    memcpy(t->st->data, data, (size_t)t->numel * sizeof(double));
  return t;
}

d2r_tensor *d2r_zeros_like(const d2r_tensor *t) {
  return t ? d2r_zeros(t->ndim, t->shape) : NULL;
}

d2r_tensor *d2r_ones_like(const d2r_tensor *t) {
  return t ? d2r_ones(t->ndim, t->shape) : NULL;
}

d2r_tensor *d2r_vector(int64_t n, const double *data) {
  return d2r_from_data(1, &n, data);
}

d2r_tensor *d2r_matrix(int64_t rows, int64_t cols, const double *data) {
  int64_t shape[2] = {rows, cols};
  return d2r_from_data(2, shape, data);
}

/* ---- autodiff state ----------------------------------------------------- */

static _Thread_local bool grad_off;

bool d2r_set_grad_enabled(bool enabled) {
  bool was = !grad_off;
  grad_off = !enabled;
  return was;
}

bool d2r_grad_enabled(void) { return !grad_off; }

static _Thread_local bool anomaly_on;

bool d2r_set_detect_anomaly(bool enabled) {
  bool was = anomaly_on;
  anomaly_on = enabled;
  return was;
}

bool d2r_detect_anomaly_enabled(void) { return anomaly_on; }

bool d2r_needs_grad(const d2r_tensor *t) {
  return t && (t->leaf_grad || t->node);
}

bool d2r_requires_grad(const d2r_tensor *t) { return d2r_needs_grad(t); }

int d2r_set_requires_grad(d2r_tensor *t, bool requires) {
  if (!t) return -1;
  if (t->node) {
    d2r_fail("requires_grad: tensor was computed by '%s'; only a leaf "
             "can be marked (detach it first)", t->node->name);
    return -1;
  }
  t->leaf_grad = requires;
  return 0;
}

d2r_tensor *d2r_grad(const d2r_tensor *t) {
  return t ? d2r_retain(t->grad) : NULL;
}

void d2r_zero_grad(d2r_tensor *t) {
  if (!t) return;
  d2r_release(t->grad);
  t->grad = NULL;
}

const char *d2r_op_name(const d2r_tensor *t) {
  return t && t->node ? t->node->name : NULL;
}

d2r_tensor *d2r_record(d2r_tensor *out, const char *name, d2r_backward_fn bw,
                       int nin, d2r_tensor *const *in) {
  if (!out || grad_off) return out;
  bool any = false;
  for (int i = 0; i < nin; i++) any = any || d2r_needs_grad(in[i]);
  if (!any) return out;
  d2r_node *n = d2r_alloc_node();
  if (!n) {
    d2r_release(out);
    return d2r_fail("%s: out of memory recording the graph", name);
  }
  n->name = name;
  n->backward = bw;
  n->nin = nin;
  for (int i = 0; i < nin; i++) {
    n->in[i] = d2r_retain(in[i]);
    n->in_version[i] = d2r_version(in[i]);
  }
  n->out = out;
  out->node = n;
  return out;
}

void d2r_set_aux(d2r_node *n, d2r_tensor *aux) {
  n->aux = aux;
  n->aux_version = d2r_version(aux);
}

uint64_t d2r_version(const d2r_tensor *t) {
  return t && t->st ? t->st->version : 0;
}

void d2r_mark_updated(d2r_tensor *t) {
  if (t) bump(t);
}

d2r_tensor *d2r_detach(d2r_tensor *t) {
  if (!t) return NULL;
  return d2r_view(t, t->ndim, t->shape, t->stride, t->offset);
}

/* ---- scopes ------------------------------------------------------------- */

d2r_tensor *d2r_keep(d2r_scope *s, d2r_tensor *t) {
  if (!t) return NULL;
  if (!s->items) s->items = s->inline_items;
  if (s->n == s->cap) {
    int cap = s->cap * 2;
    d2r_tensor **items = malloc((size_t)cap * sizeof *items);
    if (!items) {
      d2r_release(t);
      return d2r_fail("out of memory keeping a temporary");
    }
    memcpy(items, s->items, (size_t)s->n * sizeof *items);
    if (s->items != s->inline_items) free(s->items);
    s->items = items;
    s->cap = cap;
  }
  s->items[s->n++] = t;
  return t;
}

void d2r_scope_end(d2r_scope *s) {
  if (!s->items) return;
  for (int i = 0; i < s->n; i++) d2r_release(s->items[i]);
  if (s->items != s->inline_items) free(s->items);
  s->items = NULL;
  s->n = 0;
  s->cap = 32;
}

/* ---- in-place updates --------------------------------------------------- */

int d2r_copy_(d2r_tensor *dst, const d2r_tensor *src) {
  if (!dst || !src) return -1;
  if (dst->numel != src->numel) {
    d2r_fail("copy: %lld elements into %lld", (long long)src->numel,
             (long long)dst->numel);
    return -1;
  }
  bump(dst);
  d2r_tensor *s = (d2r_tensor *)src;
  if (d2r_is_contiguous(dst) && d2r_is_contiguous(src)) {
    memmove(d2r_data(dst), d2r_data(s), (size_t)dst->numel * sizeof(double));
    return 0;
  }
  if (d2r_same_shape(dst, src) && dst->numel > 0) {
    /* Row by row along the last axis (a gradient of a slice lands in a
     * strided view of a zero tensor). */
    int nd = dst->ndim;
    int64_t inner = nd ? dst->shape[nd - 1] : 1;
    int64_t sd = nd ? dst->stride[nd - 1] : 1, ss = nd ? s->stride[nd - 1] : 1;
    for (int64_t r = 0, rows = dst->numel / inner; r < rows; r++) {
      double *o = d2r_ptr_at(dst, r * inner);
      const double *x = d2r_ptr_at(s, r * inner);
      for (int64_t j = 0; j < inner; j++) o[j * sd] = x[j * ss];
    }
    return 0;
  }
  for (int64_t i = 0; i < dst->numel; i++)
    *d2r_ptr_at(dst, i) = *d2r_ptr_at(s, i);
  return 0;
}

int d2r_fill_(d2r_tensor *t, double value) {
  if (!t) return -1;
  bump(t);
  if (d2r_is_contiguous(t)) {
    double *p = d2r_data(t);
    for (int64_t i = 0; i < t->numel; i++) p[i] = value;
    return 0;
  }
  for (int64_t i = 0; i < t->numel; i++) *d2r_ptr_at(t, i) = value;
  return 0;
}

int d2r_axpy_(d2r_tensor *t, double alpha, const d2r_tensor *x) {
  if (!t || !x) return -1;
  if (!d2r_same_shape(t, x)) {
    char a[96], b[96];
    d2r_fail("axpy: shapes %s and %s differ", d2r_shape_str(t, a, sizeof a),
             d2r_shape_str(x, b, sizeof b));
    return -1;
  }
  bump(t);
  d2r_tensor *xx = (d2r_tensor *)x;
  if (d2r_is_contiguous(t) && d2r_is_contiguous(x)) {
    double *p = d2r_data(t);
    const double *q = d2r_data(xx);
    for (int64_t i = 0; i < t->numel; i++) p[i] += alpha * q[i];
    return 0;
  }
  for (int64_t i = 0; i < t->numel; i++)
    *d2r_ptr_at(t, i) += alpha * *d2r_ptr_at(xx, i);
  return 0;
}

int d2r_scale_(d2r_tensor *t, double alpha) {
  if (!t) return -1;
  bump(t);
  for (int64_t i = 0; i < t->numel; i++) *d2r_ptr_at(t, i) *= alpha;
  return 0;
}

/*
 * Views and indexing: reshape, transpose, slice, expand, copies, row and
 * element gathers, concatenation and one-hot.  Each differentiable op has
 * its backward rule next to it, written with differentiable ops.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_impl.h"

#define KEEP(e) d2r_keep(&s, (e))

/* Copies any strided tensor into a fresh contiguous one (no history). */
static d2r_tensor *materialize(d2r_tensor *t) {
  d2r_tensor *out = d2r_new(t->ndim, t->shape);
  if (!out || t->numel == 0) return out;
  double *o = out->st->data;
  const double *base = t->st->data;
  int nd = t->ndim;
  if (nd == 0) {
    o[0] = base[t->offset];
    return out;
  }
  int64_t inner = t->shape[nd - 1], is = t->stride[nd - 1];
  int64_t idx[D2R_MAXDIM] = {0};
  int64_t rows = t->numel / inner;
  for (int64_t r = 0; r < rows; r++) {
    int64_t off = t->offset;
    for (int d = 0; d < nd - 1; d++) off += idx[d] * t->stride[d];
    const double *p = base + off;
    if (is == 1)
      memcpy(o, p, (size_t)inner * sizeof(double));
    else
      for (int64_t j = 0; j < inner; j++) o[j] = p[j * is];
    o += inner;
    for (int d = nd - 2; d >= 0; d--) {
      if (++idx[d] < t->shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

static int bw_identity(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = d2r_retain(g);
  return 0;
}

d2r_tensor *d2r_contiguous(d2r_tensor *t) {
  if (!t) return NULL;
  if (d2r_is_contiguous(t)) return d2r_retain(t);
  return d2r_record(materialize(t), "contiguous", bw_identity, 1, &t);
}

d2r_tensor *d2r_clone(d2r_tensor *t) {
  if (!t) return NULL;
  return d2r_record(materialize(t), "clone", bw_identity, 1, &t);
}

/* ---- reshape ------------------------------------------------------------ */

static int bw_reshape(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *x = n->in[0];
  gin[0] = d2r_reshape(g, x->ndim, x->shape);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_reshape(d2r_tensor *t, int ndim, const int64_t *shape) {
  if (!t) return NULL;
  if (ndim < 0 || ndim > D2R_MAXDIM)
    return d2r_fail("reshape: %d dimensions (at most %d)", ndim, D2R_MAXDIM);
  int64_t sh[D2R_MAXDIM] = {0}, known = 1;
  int free_axis = -1;
  for (int i = 0; i < ndim; i++) {
    sh[i] = shape[i];
    if (shape[i] == -1 && free_axis < 0) {
      free_axis = i;
      sh[i] = 1;
    } else if (shape[i] < 0) {
      return d2r_fail("reshape: invalid size %lld in dimension %d",
                      (long long)shape[i], i + 1);
    }
  }
  if (!d2r_shape_fits(ndim, sh))
    return d2r_fail("reshape: shape too large");
  for (int i = 0; i < ndim; i++)
    if (i != free_axis) known *= sh[i];
  if (free_axis >= 0) {
    if (known == 0 || t->numel % known)
      return d2r_fail("reshape: cannot infer dimension %d for %lld elements",
                      free_axis + 1, (long long)t->numel);
    sh[free_axis] = t->numel / known;
    known *= sh[free_axis];
  }
  if (known != t->numel) {
    char buf[96];
    return d2r_fail("reshape: a tensor of shape %s (%lld elements) cannot "
                    "take a shape of %lld elements",
                    d2r_shape_str(t, buf, sizeof buf), (long long)t->numel,
                    (long long)known);
  }
  d2r_tensor *src = d2r_contiguous(t);
  if (!src) return NULL;
  int64_t st[D2R_MAXDIM], acc = 1;
  for (int i = ndim - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= sh[i] > 0 ? sh[i] : 1;
  }
  d2r_tensor *out = d2r_view(src, ndim, sh, st, src->offset);
  out = d2r_record(out, "reshape", bw_reshape, 1, &src);
  d2r_release(src);
  return out;
}

d2r_tensor *d2r_unsqueeze(d2r_tensor *t, int axis) {
  if (!t) return NULL;
  int a = axis < 0 ? axis + t->ndim + 1 : axis;
  if (a < 0 || a > t->ndim || t->ndim >= D2R_MAXDIM)
    return d2r_fail("unsqueeze: axis %d out of range for a %d-d tensor", axis,
                    t->ndim);
  int64_t sh[D2R_MAXDIM];
  for (int i = 0, j = 0; i <= t->ndim; i++)
    sh[i] = i == a ? 1 : t->shape[j++];
  return d2r_reshape(t, t->ndim + 1, sh);
}

d2r_tensor *d2r_squeeze(d2r_tensor *t, int axis) {
  if (!t) return NULL;
  int a = d2r_norm_axis(t, axis, "squeeze");
  if (a < 0) return NULL;
  if (t->shape[a] != 1)
    return d2r_fail("squeeze: dimension %d has size %lld, not 1", a + 1,
                    (long long)t->shape[a]);
  int64_t sh[D2R_MAXDIM];
  for (int i = 0, j = 0; i < t->ndim; i++)
    if (i != a) sh[j++] = t->shape[i];
  return d2r_reshape(t, t->ndim - 1, sh);
}

/* ---- transpose ---------------------------------------------------------- */

static int bw_transpose(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = d2r_transpose(g, (int)n->i[0], (int)n->i[1]);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_transpose(d2r_tensor *t, int axis0, int axis1) {
  if (!t) return NULL;
  int a = d2r_norm_axis(t, axis0, "transpose");
  int b = a < 0 ? -1 : d2r_norm_axis(t, axis1, "transpose");
  if (b < 0) return NULL;
  int64_t sh[D2R_MAXDIM], st[D2R_MAXDIM];
  memcpy(sh, t->shape, sizeof sh);
  memcpy(st, t->stride, sizeof st);
  sh[a] = t->shape[b], sh[b] = t->shape[a];
  st[a] = t->stride[b], st[b] = t->stride[a];
  d2r_tensor *out = d2r_view(t, t->ndim, sh, st, t->offset);
  out = d2r_record(out, "transpose", bw_transpose, 1, &t);
  if (out && out->node) out->node->i[0] = a, out->node->i[1] = b;
  return out;
}

/* ---- slice and its adjoint ---------------------------------------------- */

static d2r_tensor *slice_scatter(d2r_tensor *src, int ndim,
                                 const int64_t *shape, int axis,
                                 int64_t start, int64_t step);

static int bw_slice(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *x = n->in[0];
  gin[0] = slice_scatter(g, x->ndim, x->shape, (int)n->i[0], n->i[1],
                         n->i[2]);
  return gin[0] ? 0 : -1;
}

static d2r_tensor *slice_raw(d2r_tensor *t, int a, int64_t start,
                             int64_t len, int64_t step) {
  int64_t sh[D2R_MAXDIM], st[D2R_MAXDIM];
  memcpy(sh, t->shape, sizeof sh);
  memcpy(st, t->stride, sizeof st);
  sh[a] = len;
  st[a] = t->stride[a] * step;
  d2r_tensor *out = d2r_view(t, t->ndim, sh, st,
                             t->offset + start * t->stride[a]);
  out = d2r_record(out, "slice", bw_slice, 1, &t);
  if (out && out->node) {
    out->node->i[0] = a;
    out->node->i[1] = start;
    out->node->i[2] = step;
  }
  return out;
}

d2r_tensor *d2r_slice(d2r_tensor *t, int axis, int64_t start, int64_t stop,
                      int64_t step) {
  if (!t) return NULL;
  int a = d2r_norm_axis(t, axis, "slice");
  if (a < 0) return NULL;
  if (step < 1) return d2r_fail("slice: step %lld must be >= 1",
                                (long long)step);
  int64_t n = t->shape[a];
  if (start < 0) start += n;
  if (stop < 0) stop += n;
  if (start < 0) start = 0;
  if (stop > n) stop = n;
  if (start > n)
    return d2r_fail("slice: start %lld beyond size %lld of dimension %d",
                    (long long)start, (long long)n, a + 1);
  int64_t len = stop > start ? (stop - start + step - 1) / step : 0;
  return slice_raw(t, a, start, len, step);
}

/* Zeros of `shape` with src written into the slice it came from. */
static int bw_slice_scatter(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = slice_raw(g, (int)n->i[0], n->i[1], n->in[0]->shape[n->i[0]],
                     n->i[2]);
  return gin[0] ? 0 : -1;
}

static d2r_tensor *slice_scatter(d2r_tensor *src, int ndim,
                                 const int64_t *shape, int axis,
                                 int64_t start, int64_t step) {
  d2r_tensor *out = d2r_zeros(ndim, shape);
  if (!out) return NULL;
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *dst = slice_raw(out, axis, start, src->shape[axis], step);
  d2r_set_grad_enabled(was);
  int rc = d2r_copy_(dst, src);
  d2r_release(dst);
  if (rc < 0) {
    d2r_release(out);
    return NULL;
  }
  out = d2r_record(out, "slice_scatter", bw_slice_scatter, 1, &src);
  if (out && out->node) {
    out->node->i[0] = axis;
    out->node->i[1] = start;
    out->node->i[2] = step;
  }
  return out;
}

/* ---- expand and sum_to -------------------------------------------------- */

static int bw_expand(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *x = n->in[0];
  gin[0] = d2r_sum_to(g, x->ndim, x->shape);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_expand(d2r_tensor *t, int ndim, const int64_t *shape) {
  if (!t) return NULL;
  if (!d2r_check_shape(ndim, shape, "expand")) return NULL;
  if (ndim < t->ndim)
    return d2r_fail("expand: cannot expand %d dimensions into %d", t->ndim,
                    ndim);
  int64_t st[D2R_MAXDIM];
  int off = ndim - t->ndim;
  for (int i = 0; i < ndim; i++) {
    int j = i - off;
    int64_t have = j >= 0 ? t->shape[j] : 1;
    if (have == shape[i]) {
      st[i] = j >= 0 ? t->stride[j] : 0;
    } else if (have == 1) {
      st[i] = 0;
    } else {
      char buf[96];
      return d2r_fail("expand: shape %s cannot be broadcast to size %lld in "
                      "dimension %d", d2r_shape_str(t, buf, sizeof buf),
                      (long long)shape[i], i + 1);
    }
  }
  d2r_tensor *out = d2r_view(t, ndim, shape, st, t->offset);
  return d2r_record(out, "expand", bw_expand, 1, &t);
}

/* ---- row gather and its adjoint ----------------------------------------- */

/* Whether v is an integer in [0, bound).  In range first, so the
 * conversion is defined (and it is much cheaper than floor, a library
 * call on baseline x86-64). */
static bool is_index(double v, int64_t bound) {
  return v >= 0 && v < (double)bound && v == (double)(int64_t)v;
}

/* 2^52: below it, (c + 2^52) - 2^52 rounds c to an integer. */
#define ROUNDER 4503599627370496.0

/* |x - r| for r the nearest integer to x clamped into [0, bound - 1]:
 * zero exactly when x is an index (-0 counts as 0), positive, infinite
 * or NaN otherwise.  Plain double arithmetic, so the loop below is
 * vector code. */
static inline double index_gap(double x, double last) {
  double c = x > 0 ? x : 0;  /* NaN clamps to 0 */
  c = c < last ? c : last;
  return fabs(x - ((c + ROUNDER) - ROUNDER));
}

/* The position of the first of v[0..n) that is not an index, or -1. */
static int64_t first_nonindex(const double *v, int64_t n, int64_t bound) {
  /* Blocks of 64 whose gaps are summed in eight lanes (any culprit
   * leaves a non-zero sum); only a failing block is scanned again for
   * its first culprit.  Bounds beyond 2^52 take the scalar check. */
  double last = (double)bound - 1;
  bool exact = bound >= 1 && bound <= ((int64_t)1 << 52);
  for (int64_t at = 0; at < n; at += 64) {
    int64_t end = n - at < 64 ? n : at + 64, i = at;
    double lane[8] = {0}, gap = exact ? 0 : 1;
    for (; exact && i + 8 <= end; i += 8)
      for (int k = 0; k < 8; k++) lane[k] += index_gap(v[i + k], last);
    for (; exact && i < end; i++) gap += index_gap(v[i], last);
    for (int k = 0; k < 8; k++) gap += lane[k];
    if (gap == 0) continue;
    for (i = at; i < end; i++)
      if (!is_index(v[i], bound)) return i;
  }
  return -1;
}

/* The failure of element `at` (counting from 0), value v. */
static int index_fail(const char *fn, double v, int64_t at, int64_t bound) {
  d2r_fail("%s %.17g at element %lld is not an integer in [0, %lld)", fn,
           v, (long long)at + 1, (long long)bound);
  return -1;
}

int d2r_check_index_values(const double *v, int64_t n, int64_t bound,
                           const char *fn) {
  int64_t bad = first_nonindex(v, n, bound);
  return bad < 0 ? 0 : index_fail(fn, v[bad], bad, bound);
}

int d2r_check_index(const d2r_tensor *idx, int64_t bound, const char *fn) {
  if (!idx) return -1;
  d2r_tensor *x = (d2r_tensor *)idx;
  if (d2r_is_contiguous(x))
    return d2r_check_index_values(d2r_data(x), x->numel, bound, fn);
  for (int64_t i = 0; i < x->numel; i++) {
    double v = *d2r_ptr_at(x, i);
    if (!is_index(v, bound)) return index_fail(fn, v, i, bound);
  }
  return 0;
}

static bool check_index(const d2r_tensor *idx, int64_t bound,
                        const char *fn) {
  return d2r_check_index(idx, bound, fn) == 0;
}

static int bw_take_rows(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = d2r_index_add_rows(n->in[0]->shape[0], n->aux, g);
  return gin[0] ? 0 : -1;
}

static int bw_index_add(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = d2r_take_rows(g, n->aux);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_take_rows(d2r_tensor *t, const d2r_tensor *index) {
  if (!t || !index) return NULL;
  if (t->ndim < 1) return d2r_fail("take_rows: a 0-d tensor has no rows");
  if (index->ndim != 1)
    return d2r_fail("take_rows: index must be 1-d, got %d-d", index->ndim);
  if (!check_index(index, t->shape[0], "take_rows: index")) return NULL;
  d2r_tensor *src = d2r_contiguous(t);
  if (!src) return NULL;
  int64_t sh[D2R_MAXDIM];
  memcpy(sh, t->shape, sizeof sh);
  sh[0] = index->numel;
  d2r_tensor *out = d2r_new(t->ndim, sh);
  if (!out) {
    d2r_release(src);
    return NULL;
  }
  int64_t row = t->shape[0] ? t->numel / t->shape[0] : 0;
  const double *from = d2r_data(src);
  for (int64_t i = 0; i < index->numel; i++) {
    int64_t r = (int64_t)*d2r_ptr_at((d2r_tensor *)index, i);
    memcpy(out->st->data + i * row, from + r * row,
           (size_t)row * sizeof(double));
  }
  d2r_release(src);
  out = d2r_record(out, "take_rows", bw_take_rows, 1, &t);
  if (out && out->node)
    d2r_set_aux(out->node, d2r_retain((d2r_tensor *)index));
  return out;
}

d2r_tensor *d2r_index_add_rows(int64_t rows, const d2r_tensor *index,
                               d2r_tensor *src) {
  if (!index || !src) return NULL;
  if (index->ndim != 1 || src->ndim < 1 || src->shape[0] != index->numel)
    return d2r_fail("index_add_rows: src needs one row per index entry");
  if (!check_index(index, rows, "index_add_rows: index")) return NULL;
  int64_t sh[D2R_MAXDIM];
  memcpy(sh, src->shape, sizeof sh);
  sh[0] = rows;
  d2r_tensor *c = d2r_contiguous(src);
  d2r_tensor *out = c ? d2r_zeros(src->ndim, sh) : NULL;
  if (!out) {
    d2r_release(c);
    return NULL;
  }
  int64_t row = index->numel ? src->numel / index->numel : 0;
  const double *from = d2r_data(c);
  for (int64_t i = 0; i < index->numel; i++) {
    int64_t r = (int64_t)*d2r_ptr_at((d2r_tensor *)index, i);
    double *to = out->st->data + r * row;
    for (int64_t j = 0; j < row; j++) to[j] += from[i * row + j];
  }
  d2r_release(c);
  out = d2r_record(out, "index_add_rows", bw_index_add, 1, &src);
  if (out && out->node)
    d2r_set_aux(out->node, d2r_retain((d2r_tensor *)index));
  return out;
}

/* ---- gather along an axis and its adjoint ------------------------------- */

static bool gather_check(const d2r_tensor *big, int a, const d2r_tensor *idx,
                         const char *fn) {
  if (idx->ndim != big->ndim) {
    d2r_fail("%s: index has %d dimensions, the tensor %d", fn, idx->ndim,
             big->ndim);
    return false;
  }
  for (int i = 0; i < big->ndim; i++)
    if (i != a && idx->shape[i] > big->shape[i]) {
      d2r_fail("%s: index size %lld exceeds %lld in dimension %d", fn,
               (long long)idx->shape[i], (long long)big->shape[i], i + 1);
      return false;
    }
  char what[64];
  snprintf(what, sizeof what, "%s: index", fn);
  return check_index(idx, big->shape[a], what);
}

/* Walks the positions of an index tensor in row-major order, keeping the
 * offset in a contiguous tensor of shape `shape` of the same position
 * with the axis coordinate set to 0; the element picked by index value k
 * is at base + k * axis_stride. */
typedef struct {
  int nd, axis;
  const int64_t *ishape;
  int64_t stride[D2R_MAXDIM];   /* strides of the big tensor */
  int64_t idx[D2R_MAXDIM];
  int64_t base, axis_stride;
} gather_walk;

static void walk_init(gather_walk *w, const d2r_tensor *index,
                      const int64_t *shape, int axis) {
  w->nd = index->ndim;
  w->axis = axis;
  w->ishape = index->shape;
  int64_t s = 1;
  for (int d = w->nd - 1; d >= 0; d--) {
    w->stride[d] = s;
    w->idx[d] = 0;
    s *= shape[d];
  }
  w->base = 0;
  w->axis_stride = w->stride[axis];
}

static void walk_next(gather_walk *w) {
  for (int d = w->nd - 1; d >= 0; d--) {
    if (d != w->axis) w->base += w->stride[d];
    if (++w->idx[d] < w->ishape[d]) return;
    if (d != w->axis) w->base -= w->stride[d] * w->ishape[d];
    w->idx[d] = 0;
  }
}

static int bw_gather(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *x = n->in[0];
  gin[0] = d2r_scatter_add(x->ndim, x->shape, (int)n->i[0], n->aux, g);
  return gin[0] ? 0 : -1;
}

static int bw_scatter(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = d2r_gather(g, (int)n->i[0], n->aux);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_gather(d2r_tensor *t, int axis, const d2r_tensor *index) {
  if (!t || !index) return NULL;
  int a = d2r_norm_axis(t, axis, "gather");
  if (a < 0 || !gather_check(t, a, index, "gather")) return NULL;
  d2r_tensor *src = d2r_contiguous(t);
  d2r_tensor *out = src ? d2r_new(index->ndim, index->shape) : NULL;
  if (!out) {
    d2r_release(src);
    return NULL;
  }
  d2r_tensor *ic = d2r_contiguous((d2r_tensor *)index);
  if (!ic) {
    d2r_release(src), d2r_release(out);
    return NULL;
  }
  const double *from = d2r_data(src), *ix = d2r_data(ic);
  gather_walk w;
  walk_init(&w, index, t->shape, a);
  for (int64_t i = 0; i < index->numel; i++) {
    out->st->data[i] = from[w.base + (int64_t)ix[i] * w.axis_stride];
    walk_next(&w);
  }
  d2r_release(ic);
  d2r_release(src);
  out = d2r_record(out, "gather", bw_gather, 1, &t);
  if (out && out->node) {
    d2r_set_aux(out->node, d2r_retain((d2r_tensor *)index));
    out->node->i[0] = a;
  }
  return out;
}

d2r_tensor *d2r_scatter_add(int ndim, const int64_t *shape, int axis,
                            const d2r_tensor *index, d2r_tensor *src) {
  if (!index || !src) return NULL;
  d2r_tensor *out = d2r_zeros(ndim, shape);
  if (!out) return NULL;
  int a = d2r_norm_axis(out, axis, "scatter_add");
  d2r_tensor *c = NULL;
  if (a < 0 || !gather_check(out, a, index, "scatter_add")) goto fail;
  if (!d2r_same_shape(index, src)) {
    d2r_fail("scatter_add: src and index shapes differ");
    goto fail;
  }
  if (!(c = d2r_contiguous(src))) goto fail;
  d2r_tensor *ic = d2r_contiguous((d2r_tensor *)index);
  if (!ic) goto fail;
  const double *from = d2r_data(c), *ix = d2r_data(ic);
  gather_walk w;
  walk_init(&w, index, shape, a);
  for (int64_t i = 0; i < index->numel; i++) {
    out->st->data[w.base + (int64_t)ix[i] * w.axis_stride] += from[i];
    walk_next(&w);
  }
  d2r_release(ic);
  d2r_release(c);
  out = d2r_record(out, "scatter_add", bw_scatter, 1, &src);
  if (out && out->node) {
    d2r_set_aux(out->node, d2r_retain((d2r_tensor *)index));
    out->node->i[0] = a;
  }
  return out;
fail:
  d2r_release(c);
  d2r_release(out);
  return NULL;
}

/* ---- concatenation ------------------------------------------------------ */

static int bw_cat(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  int a = (int)n->i[0];
  int64_t start = 0;
  for (int k = 0; k < n->nin; k++) {
    int64_t len = n->in[k]->shape[a];
    if (d2r_needs_grad(n->in[k])) {
      gin[k] = d2r_slice(g, a, start, start + len, 1);
      if (!gin[k]) return -1;
    }
    start += len;
  }
  return 0;
}

static d2r_tensor *cat_small(int n, d2r_tensor *const *ts, int axis) {
  int a = d2r_norm_axis(ts[0], axis, "cat");
  if (a < 0) return NULL;
  int64_t sh[D2R_MAXDIM];
  memcpy(sh, ts[0]->shape, sizeof sh);
  sh[a] = 0;
  for (int k = 0; k < n; k++) {
    if (!ts[k]) return NULL;
    bool ok = ts[k]->ndim == ts[0]->ndim;
    for (int d = 0; ok && d < ts[0]->ndim; d++)
      ok = d == a || ts[k]->shape[d] == ts[0]->shape[d];
    if (!ok) {
      char b0[96], bk[96];
      return d2r_fail("cat: shapes %s and %s differ outside dimension %d",
                      d2r_shape_str(ts[0], b0, sizeof b0),
                      d2r_shape_str(ts[k], bk, sizeof bk), a + 1);
    }
    sh[a] += ts[k]->shape[a];
  }
  d2r_tensor *out = d2r_new(ts[0]->ndim, sh);
  if (!out) return NULL;
  bool was = d2r_set_grad_enabled(false);
  int64_t start = 0;
  int rc = 0;
  for (int k = 0; k < n && rc == 0; k++) {
    d2r_tensor *dst = slice_raw(out, a, start, ts[k]->shape[a], 1);
    rc = dst ? d2r_copy_(dst, ts[k]) : -1;
    d2r_release(dst);
    start += ts[k]->shape[a];
  }
  d2r_set_grad_enabled(was);
  if (rc < 0) {
    d2r_release(out);
    return NULL;
  }
  out = d2r_record(out, "cat", bw_cat, n, ts);
  if (out && out->node) out->node->i[0] = a;
  return out;
}

d2r_tensor *d2r_cat(int n, d2r_tensor *const *ts, int axis) {
  if (n < 1) return d2r_fail("cat: no tensors given");
  for (int k = 0; k < n; k++)
    if (!ts[k]) return NULL;
  if (n <= D2R_NODE_MAXIN) return cat_small(n, ts, axis);
  /* A node holds at most D2R_NODE_MAXIN inputs: concatenate in groups. */
  d2r_tensor *head = cat_small(D2R_NODE_MAXIN - 1, ts, axis);
  if (!head) return NULL;
  d2r_tensor *rest = d2r_cat(n - D2R_NODE_MAXIN + 1,
                             ts + D2R_NODE_MAXIN - 1, axis);
  d2r_tensor *pair[2] = {head, rest};
  d2r_tensor *out = rest ? cat_small(2, pair, axis) : NULL;
  d2r_release(head);
  d2r_release(rest);
  return out;
}

/* ---- one-hot ------------------------------------------------------------ */

d2r_tensor *d2r_one_hot(const d2r_tensor *t, int64_t classes) {
  if (!t) return NULL;
  if (classes < 1) return d2r_fail("one_hot: %lld classes",
                                   (long long)classes);
  if (t->ndim >= D2R_MAXDIM)
    return d2r_fail("one_hot: too many dimensions");
  if (!check_index(t, classes, "one_hot: index")) return NULL;
  int64_t sh[D2R_MAXDIM];
  memcpy(sh, t->shape, sizeof sh);
  sh[t->ndim] = classes;
  d2r_tensor *out = d2r_zeros(t->ndim + 1, sh);
  if (!out) return NULL;
  for (int64_t i = 0; i < t->numel; i++) {
    int64_t k = (int64_t)*d2r_ptr_at((d2r_tensor *)t, i);
    out->st->data[i * classes + k] = 1.0;
  }
  return out;
}

/*
 * Elementwise operations with broadcasting, reductions and the matrix
 * product.  Kernels work one innermost row at a time (a strided loop the
 * compiler can vectorise when strides are 1); each differentiable op has
 * its backward rule beside it, written with differentiable ops so that
 * gradients can be differentiated again.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_impl.h"

#define KEEP(e) d2r_keep(&s, (e))

/* ---- broadcasting iteration --------------------------------------------- */

bool d2r_broadcast_shape(const d2r_tensor *a, const d2r_tensor *b, int *ndim,
                         int64_t *shape, const char *fn) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < nd; i++) {
    int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
    int64_t sa = ia >= 0 ? a->shape[ia] : 1;
    int64_t sb = ib >= 0 ? b->shape[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      char ba[96], bb[96];
      d2r_fail("%s: shapes %s and %s cannot be broadcast together", fn,
               d2r_shape_str(a, ba, sizeof ba),
               d2r_shape_str(b, bb, sizeof bb));
      return false;
    }
    shape[i] = sa == 1 ? sb : sa;
  }
  *ndim = nd;
  return true;
}

/* Strides of t seen through the broadcast shape (0 where stretched). */
static void bstrides(const d2r_tensor *t, int nd, const int64_t *shape,
                     int64_t *st) {
  for (int i = 0; i < nd; i++) {
    int j = i - (nd - t->ndim);
    st[i] = (j >= 0 && t->shape[j] == shape[i] && shape[i] != 1)
                ? t->stride[j] : 0;
  }
}

/* Walks the rows (all dimensions but the last) of an output of shape
 * `shape`, keeping the offsets of up to three inputs in step. */
typedef struct {
  int nd, nin;
  const int64_t *shape;
  int64_t st[3][D2R_MAXDIM];
  int64_t off[3];
  int64_t idx[D2R_MAXDIM];
} rowiter;

static void rowiter_next(rowiter *it) {
  for (int d = it->nd - 2; d >= 0; d--) {
    for (int k = 0; k < it->nin; k++) it->off[k] += it->st[k][d];
    if (++it->idx[d] < it->shape[d]) return;
    for (int k = 0; k < it->nin; k++)
      it->off[k] -= it->st[k][d] * it->shape[d];
    it->idx[d] = 0;
  }
}

/* A binary kernel fills `rows` contiguous rows of n outputs; row r reads
 * a + r ra and b + r rb, with strides sa and sb along the row. */
typedef void (*kern2)(int64_t rows, int64_t n, const double *a, int64_t ra,
                      int64_t sa, const double *b, int64_t rb, int64_t sb,
                      double *o);
typedef void (*kern1)(int64_t n, const double *x, int64_t sx, double *o,
                      const double *p);

static d2r_tensor *apply2(d2r_tensor *a, d2r_tensor *b, kern2 k,
                          const char *fn) {
  int nd;
  int64_t shape[D2R_MAXDIM];
  if (!d2r_broadcast_shape(a, b, &nd, shape, fn)) return NULL;
  d2r_tensor *out = d2r_new(nd, shape);
  if (!out || out->numel == 0) return out;
  const double *pa = a->st->data + a->offset, *pb = b->st->data + b->offset;
  if (d2r_same_shape(a, b) && d2r_is_contiguous(a) && d2r_is_contiguous(b)) {
    k(1, out->numel, pa, 0, 1, pb, 0, 1, out->st->data);
    return out;
  }
  if (nd < 2) {
    int64_t sa = 0, sb = 0;
    if (nd == 1) {
      bstrides(a, 1, shape, &sa);
      bstrides(b, 1, shape, &sb);
    }
    k(1, out->numel, pa, 0, sa, pb, 0, sb, out->st->data);
    return out;
  }
  /* The last two dimensions go to the kernel as one block (a [B, 2]
   * minus a [B, 1] is one call, not B calls of 2 elements); the walk
   * covers the dimensions before them. */
  rowiter it = {.nd = nd - 1, .nin = 2, .shape = shape};
  bstrides(a, nd, shape, it.st[0]);
  bstrides(b, nd, shape, it.st[1]);
  int64_t inner = shape[nd - 1], rows = shape[nd - 2];
  int64_t sa = it.st[0][nd - 1], sb = it.st[1][nd - 1];
  int64_t ra = it.st[0][nd - 2], rb = it.st[1][nd - 2];
  double *o = out->st->data;
  for (int64_t blk = 0, nblk = out->numel / (inner * rows); blk < nblk;
       blk++) {
    k(rows, inner, pa + it.off[0], ra, sa, pb + it.off[1], rb, sb, o);
    o += inner * rows;
    rowiter_next(&it);
  }
  return out;
}

static d2r_tensor *apply1(d2r_tensor *x, kern1 k, const double *p) {
  d2r_tensor *out = d2r_new(x->ndim, x->shape);
  if (!out || out->numel == 0) return out;
  const double *px = x->st->data + x->offset;
  if (d2r_is_contiguous(x)) {
    k(out->numel, px, 1, out->st->data, p);
    return out;
  }
  int nd = x->ndim;
  rowiter it = {.nd = nd, .nin = 1, .shape = x->shape};
  memcpy(it.st[0], x->stride, sizeof x->stride);
  int64_t inner = x->shape[nd - 1], sx = x->stride[nd - 1];
  double *o = out->st->data;
  for (int64_t r = 0, rows = out->numel / inner; r < rows; r++) {
    k(inner, px + it.off[0], sx, o, p);
    o += inner;
    rowiter_next(&it);
  }
  return out;
}

/* With anomaly detection on, an op whose inputs are all finite but whose
 * output is not fails here, naming itself and the first bad element, so
 * a NaN is caught where it appears rather than where it is noticed. */
d2r_tensor *d2r_watch(d2r_tensor *out, const char *name, int nin,
                      d2r_tensor *const *in) {
  if (!out || !d2r_detect_anomaly_enabled()) return out;
  for (int i = 0; i < nin; i++)
    if (d2r_count_nonfinite(in[i]) > 0) return out;
  for (int64_t k = 0; k < out->numel; k++) {
    double v = *d2r_ptr_at(out, k);
    if (!isfinite(v)) {
      char buf[96];
      d2r_fail("anomaly: %s produced %s at element %lld of its %s output "
               "from finite inputs", name,
               isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"), (long long)k + 1,
               d2r_shape_str(out, buf, sizeof buf));
      d2r_release(out);
      return NULL;
    }
  }
  return out;
}

#define KERNEL2(name, expr)                                               \
  static void name(int64_t rows, int64_t n, const double *a, int64_t ra,   \
                   int64_t sa, const double *b, int64_t rb, int64_t sb,    \
                   double *o) {                                            \
    for (int64_t r = 0; r < rows; r++, a += ra, b += rb, o += n) {         \
      if (sa == 1 && sb == 1) {                                            \
        for (int64_t i = 0; i < n; i++) {                                  \
          double x = a[i], y = b[i];                                       \
          o[i] = (expr);                                                   \
        }                                                                  \
      } else {                                                             \
        for (int64_t i = 0; i < n; i++) {                                  \
          double x = a[i * sa], y = b[i * sb];                             \
          o[i] = (expr);                                                   \
        }                                                                  \
      }                                                                    \
    }                                                                      \
  }

#define KERNEL1(name, expr)                                          \
  static void name(int64_t n, const double *a, int64_t sa, double *o, \
                   const double *p) {                                 \
    (void)p;                                                          \
    if (sa == 1) {                                                    \
      for (int64_t i = 0; i < n; i++) {                               \
        double x = a[i];                                              \
        o[i] = (expr);                                                \
      }                                                               \
    } else {                                                          \
      for (int64_t i = 0; i < n; i++) {                               \
        double x = a[i * sa];                                         \
        o[i] = (expr);                                                \
      }                                                               \
    }                                                                 \
  }

/* ---- binary arithmetic -------------------------------------------------- */

KERNEL2(k_add, x + y)
KERNEL2(k_sub, x - y)
KERNEL2(k_mul, x * y)
KERNEL2(k_div, x / y)
KERNEL2(k_pow, pow(x, y))
KERNEL2(k_max, x >= y ? x : y)
KERNEL2(k_min, x <= y ? x : y)
KERNEL2(k_eq, (double)(x == y))
KERNEL2(k_ne, (double)(x != y))
KERNEL2(k_lt, (double)(x < y))
KERNEL2(k_le, (double)(x <= y))
KERNEL2(k_gt, (double)(x > y))
KERNEL2(k_ge, (double)(x >= y))

/* Reduces a broadcast gradient to the shape of input i, or leaves it NULL
 * when that input needs none. */
static int reduce_to(d2r_node *n, int i, d2r_tensor *g, d2r_tensor **gin) {
  if (!d2r_needs_grad(n->in[i])) {
    d2r_release(g);
    return 0;
  }
  if (!g) return -1;
  gin[i] = d2r_sum_to(g, n->in[i]->ndim, n->in[i]->shape);
  d2r_release(g);
  return gin[i] ? 0 : -1;
}

static int bw_add(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  if (reduce_to(n, 0, d2r_retain(g), gin)) return -1;
  return reduce_to(n, 1, d2r_retain(g), gin);
}

static int bw_sub(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  if (reduce_to(n, 0, d2r_retain(g), gin)) return -1;
  return reduce_to(n, 1, d2r_needs_grad(n->in[1]) ? d2r_neg(g) : NULL, gin);
}

static int bw_mul(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *a = n->in[0], *b = n->in[1];
  if (reduce_to(n, 0, d2r_needs_grad(a) ? d2r_mul(g, b) : NULL, gin))
    return -1;
  return reduce_to(n, 1, d2r_needs_grad(b) ? d2r_mul(g, a) : NULL, gin);
}

static int bw_div(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *a = n->in[0], *b = n->in[1];
  if (reduce_to(n, 0, d2r_needs_grad(a) ? d2r_div(g, b) : NULL, gin))
    return -1;
  if (!d2r_needs_grad(b)) return 0;
  /* d(a/b)/db = -a / b^2 */
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *gb = KEEP(d2r_neg(KEEP(d2r_div(KEEP(d2r_mul(g, a)),
                                             KEEP(d2r_square(b))))));
  int rc = reduce_to(n, 1, d2r_retain(gb), gin);
  d2r_scope_end(&s);
  return rc;
}

static int bw_pow(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *a = n->in[0], *b = n->in[1];
  d2r_scope s = D2R_SCOPE_INIT;
  int rc = 0;
  if (d2r_needs_grad(a)) {
    /* b * a^(b - 1) */
    d2r_tensor *d = KEEP(d2r_mul(b, KEEP(d2r_pow(a, KEEP(d2r_adds(b, -1))))));
    rc = reduce_to(n, 0, d2r_mul(g, d), gin);
  }
  if (rc == 0 && d2r_needs_grad(b)) {
    /* a^b log a */
    d2r_tensor *d = KEEP(d2r_mul(KEEP(d2r_pow(a, b)), KEEP(d2r_log(a))));
    rc = reduce_to(n, 1, d2r_mul(g, d), gin);
  }
  d2r_scope_end(&s);
  return rc;
}

/* max and min send the gradient to the input that won (the first on a
 * tie), through a constant mask. */
static int bw_select(d2r_node *n, d2r_tensor *g, d2r_tensor **gin,
                     kern2 first_wins) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mask = KEEP(apply2(n->in[0], n->in[1], first_wins, "max"));
  d2r_tensor *zero = KEEP(d2r_scalar(0));
  int rc = -1;
  if (mask && zero) {
    rc = reduce_to(n, 0, d2r_where(mask, g, zero), gin);
    if (rc == 0) rc = reduce_to(n, 1, d2r_where(mask, zero, g), gin);
  }
  d2r_scope_end(&s);
  return rc;
}

static int bw_maximum(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return bw_select(n, g, gin, k_ge);
}

static int bw_minimum(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return bw_select(n, g, gin, k_le);
}

static d2r_tensor *binary(d2r_tensor *a, d2r_tensor *b, kern2 k,
                          const char *fn, d2r_backward_fn bw) {
  if (!a || !b) return NULL;
  d2r_tensor *in[2] = {a, b};
  d2r_tensor *out = d2r_watch(apply2(a, b, k, fn), fn, 2, in);
  return bw ? d2r_record(out, fn, bw, 2, in) : out;
}

d2r_tensor *d2r_add(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_add, "add", bw_add);
}
d2r_tensor *d2r_sub(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_sub, "sub", bw_sub);
}
d2r_tensor *d2r_mul(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_mul, "mul", bw_mul);
}
d2r_tensor *d2r_div(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_div, "div", bw_div);
}
d2r_tensor *d2r_pow(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_pow, "pow", bw_pow);
}
d2r_tensor *d2r_maximum(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_max, "maximum", bw_maximum);
}
d2r_tensor *d2r_minimum(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_min, "minimum", bw_minimum);
}
d2r_tensor *d2r_eq(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_eq, "eq", NULL);
}
d2r_tensor *d2r_ne(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_ne, "ne", NULL);
}
d2r_tensor *d2r_lt(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_lt, "lt", NULL);
}
d2r_tensor *d2r_le(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_le, "le", NULL);
}
d2r_tensor *d2r_gt(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_gt, "gt", NULL);
}
d2r_tensor *d2r_ge(d2r_tensor *a, d2r_tensor *b) {
  return binary(a, b, k_ge, "ge", NULL);
}

/* ---- where -------------------------------------------------------------- */

static int bw_where(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *zero = KEEP(d2r_scalar(0));
  int rc = zero ? 0 : -1;
  if (rc == 0 && d2r_needs_grad(n->in[0]))
    rc = reduce_to(n, 0, d2r_where(n->aux, g, zero), gin);
  if (rc == 0 && d2r_needs_grad(n->in[1]))
    rc = reduce_to(n, 1, d2r_where(n->aux, zero, g), gin);
  d2r_scope_end(&s);
  return rc;
}

d2r_tensor *d2r_where(const d2r_tensor *cond, d2r_tensor *a, d2r_tensor *b) {
  if (!cond || !a || !b) return NULL;
  int nd, nd2;
  int64_t sh[D2R_MAXDIM], sh2[D2R_MAXDIM];
  if (!d2r_broadcast_shape(a, b, &nd, sh, "where")) return NULL;
  d2r_tensor probe = {.ndim = nd};
  memcpy(probe.shape, sh, sizeof sh);
  if (!d2r_broadcast_shape(cond, &probe, &nd2, sh2, "where")) return NULL;
  d2r_tensor *out = d2r_new(nd2, sh2);
  if (!out) return NULL;
  if (out->numel > 0) {
    rowiter it = {.nd = nd2, .nin = 3, .shape = sh2};
    const d2r_tensor *ins[3] = {cond, a, b};
    const double *base[3];
    for (int k = 0; k < 3; k++) {
      bstrides(ins[k], nd2, sh2, it.st[k]);
      base[k] = ins[k]->st->data + ins[k]->offset;
    }
    int64_t inner = nd2 ? sh2[nd2 - 1] : 1;
    double *o = out->st->data;
    for (int64_t r = 0, rows = out->numel / inner; r < rows; r++) {
      const double *c = base[0] + it.off[0], *x = base[1] + it.off[1];
      const double *y = base[2] + it.off[2];
      int64_t sc = nd2 ? it.st[0][nd2 - 1] : 0;
      int64_t sx = nd2 ? it.st[1][nd2 - 1] : 0;
      int64_t sy = nd2 ? it.st[2][nd2 - 1] : 0;
      for (int64_t i = 0; i < inner; i++)
        o[i] = c[i * sc] != 0 ? x[i * sx] : y[i * sy];
      o += inner;
      rowiter_next(&it);
    }
  }
  d2r_tensor *in[2] = {a, b};
  out = d2r_record(out, "where", bw_where, 2, in);
  if (out && out->node)
    d2r_set_aux(out->node, d2r_detach((d2r_tensor *)cond));
  if (out && out->node && !out->node->aux) {
    d2r_release(out);
    return NULL;
  }
  return out;
}

/* ---- unary -------------------------------------------------------------- */

KERNEL1(k_neg, -x)
KERNEL1(k_exp, exp(x))
KERNEL1(k_log, log(x))
KERNEL1(k_log1p, log1p(x))
KERNEL1(k_sqrt, sqrt(x))
KERNEL1(k_square, x * x)
KERNEL1(k_abs, fabs(x))
KERNEL1(k_sign, (double)((x > 0) - (x < 0)))
KERNEL1(k_tanh, tanh(x))
KERNEL1(k_sigmoid, x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)))
/* A NaN goes through, as every other op lets it: a diverged input must
 * not come out as a plausible 0.  (d2r_addmm_relu applies it too.) */
#define RELU(x) ((x) > 0 || (x) != (x) ? (x) : 0)
KERNEL1(k_relu, RELU(x))
KERNEL1(k_softplus, x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)))
KERNEL1(k_sin, sin(x))
KERNEL1(k_cos, cos(x))
KERNEL1(k_adds, x + p[0])
KERNEL1(k_muls, x * p[0])
KERNEL1(k_pows, pow(x, p[0]))
KERNEL1(k_rsubs, p[0] - x)
KERNEL1(k_clamp, x < p[0] ? p[0] : (x > p[1] ? p[1] : x))
KERNEL1(k_positive, (double)(x > 0))
KERNEL1(k_inside, (double)(x >= p[0] && x <= p[1]))

static d2r_tensor *unary(d2r_tensor *x, kern1 k, const double *p,
                         const char *name, d2r_backward_fn bw) {
  if (!x) return NULL;
  d2r_tensor *out = d2r_watch(apply1(x, k, p), name, 1, &x);
  if (!bw || !out) return out;
  out = d2r_record(out, name, bw, 1, &x);
  if (out && out->node && p) memcpy(out->node->s, p, 2 * sizeof *p);
  return out;
}

/* Backward rules of the form gin = g * f(x, y) where y is the output. */
static int bw_pass(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = d2r_retain(g);
  return 0;
}
static int bw_neg(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return (gin[0] = d2r_neg(g)) ? 0 : -1;
}
static int bw_exp(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return (gin[0] = d2r_mul(g, n->out)) ? 0 : -1;
}
static int bw_log(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return (gin[0] = d2r_div(g, n->in[0])) ? 0 : -1;
}
static int bw_log1p(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *d = d2r_adds(n->in[0], 1);
  gin[0] = d2r_div(g, d);
  d2r_release(d);
  return gin[0] ? 0 : -1;
}
static int bw_sqrt(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;
  gin[0] = d2r_div(KEEP(d2r_muls(g, 0.5)), n->out);
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}
static int bw_square(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;
  gin[0] = d2r_mul(KEEP(d2r_muls(g, 2)), n->in[0]);
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}
static int bw_abs(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *sg = d2r_sign(n->in[0]);
  gin[0] = d2r_mul(g, sg);
  d2r_release(sg);
  return gin[0] ? 0 : -1;
}
static int bw_tanh(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;  /* 1 - y^2 */
  gin[0] = d2r_mul(g, KEEP(d2r_rsubs(KEEP(d2r_square(n->out)), 1)));
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}
static int bw_sigmoid(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;  /* y (1 - y) */
  d2r_tensor *d = KEEP(d2r_mul(n->out, KEEP(d2r_rsubs(n->out, 1))));
  gin[0] = d2r_mul(g, d);
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}
static int bw_mask(d2r_node *n, d2r_tensor *g, d2r_tensor **gin, kern1 k) {
  d2r_tensor *m = apply1(n->in[0], k, n->s);
  gin[0] = d2r_mul(g, m);
  d2r_release(m);
  return gin[0] ? 0 : -1;
}
KERNEL2(k_where_positive, y > 0 ? x : 0)
/* g where y > 0, else 0: the gradient through a relu, y its input or its
 * output (positive at the same places).  Plain gradients in one pass; a
 * mask and a product when the gradient is itself recorded. */
static d2r_tensor *where_positive(d2r_tensor *g, d2r_tensor *y,
                                  const char *name) {
  if (!d2r_grad_enabled() && d2r_same_shape(g, y))
    return apply2(g, y, k_where_positive, name);
  d2r_tensor *m = apply1(y, k_positive, NULL);
  d2r_tensor *out = m ? d2r_mul(g, m) : NULL;
  d2r_release(m);
  return out;
}
static int bw_relu(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = where_positive(g, n->in[0], "relu backward");
  return gin[0] ? 0 : -1;
}
static int bw_clamp(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return bw_mask(n, g, gin, k_inside);
}
static int bw_softplus(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *d = d2r_sigmoid(n->in[0]);
  gin[0] = d2r_mul(g, d);
  d2r_release(d);
  return gin[0] ? 0 : -1;
}
static int bw_sin(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *d = d2r_cos(n->in[0]);
  gin[0] = d2r_mul(g, d);
  d2r_release(d);
  return gin[0] ? 0 : -1;
}
static int bw_cos(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;
  gin[0] = d2r_neg(KEEP(d2r_mul(g, KEEP(d2r_sin(n->in[0])))));
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}
static int bw_muls(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return (gin[0] = d2r_muls(g, n->s[0])) ? 0 : -1;
}
static int bw_pows(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;  /* p x^(p-1) */
  d2r_tensor *d = KEEP(d2r_muls(KEEP(d2r_pows(n->in[0], n->s[0] - 1)),
                                n->s[0]));
  gin[0] = d2r_mul(g, d);
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_neg(d2r_tensor *t) {
  return unary(t, k_neg, NULL, "neg", bw_neg);
}
d2r_tensor *d2r_exp(d2r_tensor *t) {
  return unary(t, k_exp, NULL, "exp", bw_exp);
}
d2r_tensor *d2r_log(d2r_tensor *t) {
  return unary(t, k_log, NULL, "log", bw_log);
}
d2r_tensor *d2r_log1p(d2r_tensor *t) {
  return unary(t, k_log1p, NULL, "log1p", bw_log1p);
}
d2r_tensor *d2r_sqrt(d2r_tensor *t) {
  return unary(t, k_sqrt, NULL, "sqrt", bw_sqrt);
}
d2r_tensor *d2r_square(d2r_tensor *t) {
  return unary(t, k_square, NULL, "square", bw_square);
}
d2r_tensor *d2r_abs(d2r_tensor *t) {
  return unary(t, k_abs, NULL, "abs", bw_abs);
}
d2r_tensor *d2r_sign(d2r_tensor *t) {
  return unary(t, k_sign, NULL, "sign", NULL);
}
d2r_tensor *d2r_tanh(d2r_tensor *t) {
  return unary(t, k_tanh, NULL, "tanh", bw_tanh);
}
d2r_tensor *d2r_sigmoid(d2r_tensor *t) {
  return unary(t, k_sigmoid, NULL, "sigmoid", bw_sigmoid);
}
d2r_tensor *d2r_relu(d2r_tensor *t) {
  return unary(t, k_relu, NULL, "relu", bw_relu);
}
d2r_tensor *d2r_softplus(d2r_tensor *t) {
  return unary(t, k_softplus, NULL, "softplus", bw_softplus);
}
d2r_tensor *d2r_sin(d2r_tensor *t) {
  return unary(t, k_sin, NULL, "sin", bw_sin);
}
d2r_tensor *d2r_cos(d2r_tensor *t) {
  return unary(t, k_cos, NULL, "cos", bw_cos);
}
d2r_tensor *d2r_adds(d2r_tensor *a, double v) {
  double p[2] = {v, 0};
  return unary(a, k_adds, p, "adds", bw_pass);
}
d2r_tensor *d2r_muls(d2r_tensor *a, double v) {
  double p[2] = {v, 0};
  return unary(a, k_muls, p, "muls", bw_muls);
}
d2r_tensor *d2r_pows(d2r_tensor *a, double v) {
  double p[2] = {v, 0};
  return unary(a, k_pows, p, "pows", bw_pows);
}
d2r_tensor *d2r_rsubs(d2r_tensor *a, double v) {
  double p[2] = {v, 0};
  return unary(a, k_rsubs, p, "rsubs", bw_neg);
}
d2r_tensor *d2r_clamp(d2r_tensor *t, double lo, double hi) {
  if (!t) return NULL;
  if (isnan(lo) || isnan(hi) || lo > hi)
    return d2r_fail("clamp: bounds [%g, %g] are not an interval", lo, hi);
  double p[2] = {lo, hi};
  return unary(t, k_clamp, p, "clamp", bw_clamp);
}

int64_t d2r_count_nonfinite(const d2r_tensor *t) {
  if (!t) return -1;
  int64_t bad = 0;
  if (d2r_is_contiguous(t)) {
    const double *v = t->st->data + t->offset;
    for (int64_t i = 0; i < t->numel; i++) bad += !isfinite(v[i]);
    return bad;
  }
  for (int64_t i = 0; i < t->numel; i++)
    bad += !isfinite(*d2r_ptr_at((d2r_tensor *)t, i));
  return bad;
}

/* ---- reductions --------------------------------------------------------- */

typedef enum { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_LSE } rkind;

double d2r_sum_lanes(const double *x, int64_t n) {
  /* Eight running sums, added at the end: a single one waits on the
   * latency of every addition before it. */
  double lane[8] = {0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; k++) lane[k] += x[j + k];
  double acc = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
               ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (; j < n; j++) acc += x[j];
  return acc;
}

/* o[c] = sum_j x[j * inner + c], each in order j = 0, 1, ...: row by row,
 * so the loop over c vectorises (o is a new tensor, never x). */
static void sum_rows(const double *restrict x, int64_t n, int64_t inner,
                     double *restrict o) {
  for (int64_t c = 0; c < inner; c++) o[c] = 0;
  for (int64_t j = 0; j < n; j++) {
    const double *restrict row = x + j * inner;
    for (int64_t c = 0; c < inner; c++) o[c] += row[c];
  }
}

/* Reduces contiguous x viewed as [outer, n, inner] along the middle.
 * Rows of x are read in memory order (the inner axis innermost), so a
 * sum over the batch of a [B, k] gradient streams through it once, each
 * output position seeing its values in the order j = 0, 1, ...  A sum
 * along the last axis runs in eight lanes instead. */
static void reduce_kernel(rkind kind, const double *x, int64_t outer,
                          int64_t n, int64_t inner, double *o) {
  for (int64_t a = 0; a < outer; a++) {
    const double *xa = x + a * n * inner;
    double *oa = o + a * inner;
    if (kind == R_SUM && inner == 1) {
      oa[0] = d2r_sum_lanes(xa, n);
      continue;
    }
    if (kind == R_SUM) {
      sum_rows(xa, n, inner, oa);
      continue;
    }
    for (int64_t c = 0; c < inner; c++) {
      double acc = xa[c];
      int64_t best = 0;
      for (int64_t j = 1; j < n; j++) {
        double v = xa[j * inner + c];
        if (kind == R_MIN) acc = v < acc ? v : acc;
        else if (v > acc || (isnan(v) && !isnan(acc))) acc = v, best = j;
      }
      if (kind == R_LSE && isfinite(acc)) {
        double sum = 0;
        for (int64_t j = 0; j < n; j++) sum += exp(xa[j * inner + c] - acc);
        acc += log(sum);
      }
      oa[c] = kind == R_ARGMAX ? (double)best : acc;
    }
  }
}

static d2r_tensor *reduce_raw(d2r_tensor *t, int axis, bool keepdim,
                              rkind kind, const char *fn) {
  int a = d2r_norm_axis(t, axis, fn);
  if (a < 0) return NULL;
  if (t->shape[a] == 0 && kind != R_SUM)
    return d2r_fail("%s: reduction over an empty dimension %d", fn, a + 1);
  int64_t outer = 1, inner = 1, sh[D2R_MAXDIM];
  for (int i = 0; i < a; i++) outer *= t->shape[i];
  for (int i = a + 1; i < t->ndim; i++) inner *= t->shape[i];
  int nd = 0;
  for (int i = 0; i < t->ndim; i++)
    if (i != a) sh[nd++] = t->shape[i];
    else if (keepdim) sh[nd++] = 1;
  d2r_tensor *c = d2r_contiguous(t);
  d2r_tensor *out = c ? d2r_new(nd, sh) : NULL;
  if (out)
    reduce_kernel(kind, d2r_data(c), outer, t->shape[a], inner,
                  out->st->data);
  d2r_release(c);
  return out;
}

/* g reshaped to keep the reduced axis, then expanded to x's shape. */
static d2r_tensor *spread(d2r_node *n, d2r_tensor *g) {
  d2r_tensor *x = n->in[0];
  int a = (int)n->i[0];
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *gk = n->i[1] ? g : KEEP(d2r_unsqueeze(g, a));
  d2r_tensor *out = d2r_expand(gk, x->ndim, x->shape);
  d2r_scope_end(&s);
  return out;
}

static d2r_tensor *keep_axis(d2r_node *n, d2r_tensor *y) {
  return n->i[1] ? d2r_retain(y) : d2r_unsqueeze(y, (int)n->i[0]);
}

static int bw_sum(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  return (gin[0] = spread(n, g)) ? 0 : -1;
}

/* The gradient goes to the positions equal to the extreme value, shared
 * equally among ties. */
static int bw_extreme(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *x = n->in[0];
  d2r_tensor *y = KEEP(keep_axis(n, n->out));
  d2r_tensor *mask = KEEP(d2r_eq(x, y));
  d2r_tensor *cnt = KEEP(d2r_sum(mask, (int)n->i[0], true));
  d2r_tensor *share = KEEP(d2r_div(mask, cnt));
  gin[0] = d2r_mul(share, KEEP(spread(n, g)));
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

/* d lse / dx = e^(x - lse) times the output gradient spread along the
 * reduced axis.  Off the graph this is one pass (the same exp(x - y) * g
 * per element as the ops below, so the same numbers); under create_graph
 * the ops, so it can be differentiated again. */
static int bw_lse(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  if (!d2r_grad_enabled()) {
    d2r_tensor *x = d2r_contiguous(n->in[0]), *gc = d2r_contiguous(g);
    d2r_tensor *y = d2r_contiguous(n->out);
    gin[0] = x && gc && y ? d2r_new(x->ndim, x->shape) : NULL;
    if (gin[0]) {
      int a = (int)n->i[0];
      int64_t outer = 1, len = x->shape[a], inner = 1;
      for (int i = 0; i < a; i++) outer *= x->shape[i];
      for (int i = a + 1; i < x->ndim; i++) inner *= x->shape[i];
      const double *xv = d2r_data(x), *gv = d2r_data(gc), *yv = d2r_data(y);
      double *o = d2r_data(gin[0]);
      for (int64_t p = 0; p < outer; p++)
        for (int64_t j = 0; j < len; j++)
          for (int64_t c = 0; c < inner; c++) {
            int64_t at = (p * len + j) * inner + c, red = p * inner + c;
            o[at] = exp(xv[at] - yv[red]) * gv[red];
          }
    }
    d2r_release(x), d2r_release(gc), d2r_release(y);
    return gin[0] ? 0 : -1;
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *y = KEEP(keep_axis(n, n->out));
  d2r_tensor *p = KEEP(d2r_exp(KEEP(d2r_sub(n->in[0], y))));
  gin[0] = d2r_mul(p, KEEP(spread(n, g)));
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

static d2r_tensor *reduce(d2r_tensor *t, int axis, bool keepdim, rkind kind,
                          const char *fn, d2r_backward_fn bw) {
  if (!t) return NULL;
  d2r_tensor *out = d2r_watch(reduce_raw(t, axis, keepdim, kind, fn), fn,
                              1, &t);
  if (!bw) return out;
  out = d2r_record(out, fn, bw, 1, &t);
  if (out && out->node) {
    out->node->i[0] = d2r_norm_axis(t, axis, fn);
    out->node->i[1] = keepdim;
  }
  return out;
}

d2r_tensor *d2r_sum(d2r_tensor *t, int axis, bool keepdim) {
  return reduce(t, axis, keepdim, R_SUM, "sum", bw_sum);
}
d2r_tensor *d2r_max(d2r_tensor *t, int axis, bool keepdim) {
  return reduce(t, axis, keepdim, R_MAX, "max", bw_extreme);
}
d2r_tensor *d2r_min(d2r_tensor *t, int axis, bool keepdim) {
  return reduce(t, axis, keepdim, R_MIN, "min", bw_extreme);
}
d2r_tensor *d2r_argmax(const d2r_tensor *t, int axis, bool keepdim) {
  return reduce((d2r_tensor *)t, axis, keepdim, R_ARGMAX, "argmax", NULL);
}
d2r_tensor *d2r_logsumexp(d2r_tensor *t, int axis, bool keepdim) {
  return reduce(t, axis, keepdim, R_LSE, "logsumexp", bw_lse);
}

d2r_tensor *d2r_mean(d2r_tensor *t, int axis, bool keepdim) {
  if (!t) return NULL;
  int a = d2r_norm_axis(t, axis, "mean");
  if (a < 0) return NULL;
  if (t->shape[a] == 0) return d2r_fail("mean: dimension %d is empty", a + 1);
  d2r_tensor *sum = d2r_sum(t, a, keepdim);
  d2r_tensor *out = d2r_muls(sum, 1.0 / (double)t->shape[a]);
  d2r_release(sum);
  return out;
}

d2r_tensor *d2r_var(d2r_tensor *t, int axis, bool keepdim, int correction) {
  if (!t) return NULL;
  int a = d2r_norm_axis(t, axis, "var");
  if (a < 0) return NULL;
  int64_t n = t->shape[a];
  if (n - correction <= 0)
    return d2r_fail("var: %lld elements along dimension %d with correction "
                    "%d", (long long)n, a + 1, correction);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *dev = KEEP(d2r_sub(t, KEEP(d2r_mean(t, a, true))));
  d2r_tensor *ss = KEEP(d2r_sum(KEEP(d2r_square(dev)), a, keepdim));
  d2r_tensor *out = d2r_muls(ss, 1.0 / (double)(n - correction));
  d2r_scope_end(&s);
  return out;
}

/* Whole-tensor reductions flatten to 1-d and reduce the one axis. */
static d2r_tensor *reduce_all(d2r_tensor *t,
                              d2r_tensor *(*f)(d2r_tensor *, int, bool)) {
  if (!t) return NULL;
  int64_t n = t->numel;
  d2r_tensor *flat = d2r_reshape(t, 1, &n);
  d2r_tensor *out = f(flat, 0, false);
  d2r_release(flat);
  return out;
}

d2r_tensor *d2r_sum_all(d2r_tensor *t) { return reduce_all(t, d2r_sum); }
d2r_tensor *d2r_mean_all(d2r_tensor *t) { return reduce_all(t, d2r_mean); }
d2r_tensor *d2r_max_all(d2r_tensor *t) { return reduce_all(t, d2r_max); }
d2r_tensor *d2r_min_all(d2r_tensor *t) { return reduce_all(t, d2r_min); }

static int bw_sum_to(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *x = n->in[0];
  gin[0] = d2r_expand(g, x->ndim, x->shape);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_sum_to(d2r_tensor *t, int ndim, const int64_t *shape) {
  if (!t) return NULL;
  if (ndim > t->ndim)
    return d2r_fail("sum_to: cannot sum %d dimensions up to %d", t->ndim,
                    ndim);
  int lead = t->ndim - ndim;
  bool same = lead == 0;
  for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
  if (same) return d2r_retain(t);
  for (int i = 0; i < ndim; i++)
    if (shape[i] != 1 && shape[i] != t->shape[lead + i]) {
      char buf[96];
      return d2r_fail("sum_to: shape %s was not broadcast from size %lld "
                      "in dimension %d", d2r_shape_str(t, buf, sizeof buf),
                      (long long)shape[i], i + 1);
    }
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *acc = d2r_retain(t);
  for (int i = 0; i < t->ndim && acc; i++) {
    bool drop = i < lead || (shape[i - lead] == 1 && t->shape[i] != 1);
    if (!drop) continue;
    d2r_tensor *next = d2r_sum(acc, i, true);
    d2r_release(acc);
    acc = next;
  }
  d2r_tensor *out = acc ? d2r_reshape(acc, ndim, shape) : NULL;
  d2r_release(acc);
  d2r_set_grad_enabled(was);
  /* A fresh node, so the backward expands in one step. */
  d2r_tensor *res = out ? d2r_detach(out) : NULL;
  d2r_release(out);
  return d2r_record(res, "sum_to", bw_sum_to, 1, &t);
}

d2r_tensor *d2r_log_softmax(d2r_tensor *t, int axis) {
  if (!t) return NULL;
  d2r_tensor *lse = d2r_logsumexp(t, axis, true);
  d2r_tensor *out = d2r_sub(t, lse);
  d2r_release(lse);
  return out;
}

d2r_tensor *d2r_softmax(d2r_tensor *t, int axis) {
  d2r_tensor *lp = d2r_log_softmax(t, axis);
  d2r_tensor *out = d2r_exp(lp);
  d2r_release(lp);
  return out;
}

/* ---- the BLAS ------------------------------------------------------ */

/* OpenBLAS's own: stops its thread pool (it is started again when a call
 * wants more than one thread).  Not in cblas.h, hence weak: a BLAS
 * without it is simply not asked. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

int d2r_blas_threads(int n) {
  if (n > 0) openblas_set_num_threads(n);
  /* One thread needs no pool, and an idle pool's threads poll with
   * sched_yield after every call: in a forked sweep worker that was a
   * third of the sweep's time. */
  if (n == 1 && blas_thread_shutdown_ != NULL) blas_thread_shutdown_();
  return openblas_get_num_threads();
}

const char *d2r_blas_corename(void) { return openblas_get_corename(); }

/* ---- matrix product ----------------------------------------------------- */

/* How BLAS can read a 2-d (or batch-sliced) operand without a copy: row
 * major with unit column stride, or transposed. */
static bool blas_layout(const int64_t *shape, const int64_t *stride,
                        CBLAS_TRANSPOSE *tr, int64_t *ld) {
  if (stride[1] == 1 && (stride[0] >= shape[1] || shape[0] == 1)) {
    *tr = CblasNoTrans;
    *ld = shape[1] > stride[0] ? shape[1] : stride[0];
    if (*ld < 1) *ld = 1;
    return true;
  }
  if (stride[0] == 1 && (stride[1] >= shape[0] || shape[1] == 1)) {
    *tr = CblasTrans;
    *ld = shape[0] > stride[1] ? shape[0] : stride[1];
    if (*ld < 1) *ld = 1;
    return true;
  }
  return false;
}

static d2r_tensor *matmul_raw(d2r_tensor *a, bool ta, d2r_tensor *b,
                              bool tb, d2r_tensor *bias);

static int bw_matmul(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *a = n->in[0], *b = n->in[1];
  int la = a->ndim - 1, lb = b->ndim - 1;
  int rc = 0;
  if (!d2r_grad_enabled()) {
    /* Off the graph: the same products, BLAS reading a and b
     * transposed in place instead of through transposed views. */
    if (d2r_needs_grad(a)) {
      gin[0] = matmul_raw(g, false, b, true, NULL);
      rc = gin[0] ? 0 : -1;
    }
    if (rc == 0 && d2r_needs_grad(b)) {
      gin[1] = matmul_raw(a, true, g, false, NULL);
      rc = gin[1] ? 0 : -1;
    }
    return rc;
  }
  d2r_scope s = D2R_SCOPE_INIT;
  if (d2r_needs_grad(a)) {
    gin[0] = d2r_matmul(g, KEEP(d2r_transpose(b, lb - 1, lb)));
    rc = gin[0] ? 0 : -1;
  }
  if (rc == 0 && d2r_needs_grad(b)) {
    gin[1] = d2r_matmul(KEEP(d2r_transpose(a, la - 1, la)), g);
    rc = gin[1] ? 0 : -1;
  }
  d2r_scope_end(&s);
  return rc;
}

/* The last two dimensions of t as a product reads them: swapped when tr
 * (the transpose of t, without making the view). */
static void operand_dims(const d2r_tensor *t, bool tr, int64_t *shape,
                         int64_t *stride) {
  int nd = t->ndim;
  shape[0] = t->shape[nd - 2 + tr], shape[1] = t->shape[nd - 1 - tr];
  stride[0] = t->stride[nd - 2 + tr], stride[1] = t->stride[nd - 1 - tr];
}

/* t's operand for BLAS (its transpose when tr): t itself when BLAS can
 * read it as it lies, else a contiguous copy; a new reference, with its
 * layout in *op and *ld, or NULL. */
static d2r_tensor *blas_operand(d2r_tensor *t, bool tr, CBLAS_TRANSPOSE *op,
                                int64_t *ld) {
  int64_t sh[2], st[2];
  operand_dims(t, tr, sh, st);
  if (blas_layout(sh, st, op, ld)) return d2r_retain(t);
  d2r_tensor *v = tr ? d2r_transpose(t, t->ndim - 2, t->ndim - 1)
                     : d2r_retain(t);
  d2r_tensor *c = v ? d2r_new(v->ndim, v->shape) : NULL;
  if (c && d2r_copy_(c, v) != 0) {
    d2r_release(c);
    c = NULL;
  }
  d2r_release(v);
  *op = CblasNoTrans, *ld = sh[1];
  return c;
}

/* [batch, m, k] x [batch, k, n] (batch may be absent on both), with a
 * (b) read transposed when ta (tb), plus the row vector bias [n] when
 * given (2-d only): the output starts as copies of the bias and dgemm
 * adds the product to it, one pass fewer than a product and a broadcast
 * sum. */
static d2r_tensor *matmul_raw(d2r_tensor *a, bool ta, d2r_tensor *b,
                              bool tb, d2r_tensor *bias) {
  int nd = a->ndim;
  int64_t ash[2], bsh[2], stride[2];
  operand_dims(a, ta, ash, stride);
  operand_dims(b, tb, bsh, stride);
  int64_t m = ash[0], k = ash[1], nn = bsh[1];
  int64_t batch = nd == 3 ? a->shape[0] : 1;
  int64_t sh[3] = {batch, m, nn};
  /* dgemm with beta 0 overwrites the output, so it need not be zeroed
   * first, except when there is no product to write (k = 0). */
  bool empty = m == 0 || nn == 0 || k == 0;
  d2r_tensor *out = nd == 3 ? (empty ? d2r_zeros : d2r_new)(3, sh)
                            : (empty ? d2r_zeros : d2r_new)(2, sh + 1);
  double beta = 0.0;
  if (out && bias) {
    double *o = out->st->data;
    const double *pb = bias->st->data + bias->offset;
    int64_t sb = bias->stride[0];
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < nn; j++) o[i * nn + j] = pb[j * sb];
    beta = 1.0;
  }
  if (!out || empty) return out;
  CBLAS_TRANSPOSE opa, opb;
  int64_t lda, ldb;
  d2r_tensor *ca = blas_operand(a, ta, &opa, &lda);
  d2r_tensor *cb = blas_operand(b, tb, &opb, &ldb);
  if (!ca || !cb) {
    d2r_release(ca), d2r_release(cb), d2r_release(out);
    return NULL;
  }
  for (int64_t i = 0; i < batch; i++) {
    const double *pa = ca->st->data + ca->offset + (nd == 3 ? i * ca->stride[0]
                                                            : 0);
    const double *pb = cb->st->data + cb->offset + (nd == 3 ? i * cb->stride[0]
                                                            : 0);
    cblas_dgemm(CblasRowMajor, opa, opb, (int)m, (int)nn, (int)k, 1.0, pa,
                (int)lda, pb, (int)ldb, beta, out->st->data + i * m * nn,
                (int)nn);
  }
  d2r_release(ca);
  d2r_release(cb);
  return out;
}

d2r_tensor *d2r_matmul(d2r_tensor *a, d2r_tensor *b) {
  if (!a || !b) return NULL;
  char ba[96], bb[96];
  if (b->ndim == 1) {
    /* A vector is a column; the result loses that dimension again. */
    d2r_tensor *col = d2r_unsqueeze(b, 1);
    d2r_tensor *p = d2r_matmul(a, col);
    d2r_tensor *out = p ? d2r_squeeze(p, -1) : NULL;
    d2r_release(col), d2r_release(p);
    return out;
  }
  if (a->ndim == 3 && b->ndim == 2) {
    /* Shared right factor: fold the batch into the rows. */
    int64_t rows[2] = {a->shape[0] * a->shape[1], a->shape[2]};
    d2r_tensor *flat = d2r_reshape(a, 2, rows);
    d2r_tensor *p = d2r_matmul(flat, b);
    int64_t sh[3] = {a->shape[0], a->shape[1], b->shape[1]};
    d2r_tensor *out = p ? d2r_reshape(p, 3, sh) : NULL;
    d2r_release(flat), d2r_release(p);
    return out;
  }
  bool ok = (a->ndim == 2 && b->ndim == 2) ||
            (a->ndim == 3 && b->ndim == 3 && a->shape[0] == b->shape[0]);
  if (!ok || a->shape[a->ndim - 1] != b->shape[b->ndim - 2])
    return d2r_fail("matmul: shapes %s and %s do not fit",
                    d2r_shape_str(a, ba, sizeof ba),
                    d2r_shape_str(b, bb, sizeof bb));
  if (a->shape[a->ndim - 1] > INT32_MAX || a->shape[a->ndim - 2] > INT32_MAX ||
      b->shape[b->ndim - 1] > INT32_MAX)
    return d2r_fail("matmul: a dimension exceeds BLAS's int range");
  d2r_tensor *in[2] = {a, b};
  return d2r_record(d2r_watch(matmul_raw(a, false, b, false, NULL),
                              "matmul", 2, in),
                    "matmul", bw_matmul, 2, in);
}

static int bw_addmm(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  if (bw_matmul(n, g, gin) != 0) return -1;
  if (!d2r_needs_grad(n->in[2])) return 0;
  gin[2] = d2r_sum(g, 0, false);
  return gin[2] ? 0 : -1;
}

/* Whether x [m, k], w [k, n] and bias [n] fit a product plus bias that
 * BLAS can compute; reports as fn otherwise. */
static bool addmm_fits(const d2r_tensor *x, const d2r_tensor *w,
                       const d2r_tensor *bias, const char *fn) {
  char bx[96], bw[96], bb[96];
  if (x->ndim != 2 || w->ndim != 2 || bias->ndim != 1 ||
      x->shape[1] != w->shape[0] || bias->shape[0] != w->shape[1]) {
    d2r_fail("%s: shapes %s, %s and bias %s do not fit (want [m, k], "
             "[k, n] and [n])", fn, d2r_shape_str(x, bx, sizeof bx),
             d2r_shape_str(w, bw, sizeof bw),
             d2r_shape_str(bias, bb, sizeof bb));
    return false;
  }
  if (x->shape[0] > INT32_MAX || x->shape[1] > INT32_MAX ||
      w->shape[1] > INT32_MAX) {
    d2r_fail("%s: a dimension exceeds BLAS's int range", fn);
    return false;
  }
  return true;
}

d2r_tensor *d2r_addmm(d2r_tensor *x, d2r_tensor *w, d2r_tensor *bias) {
  if (!x || !w || !bias) return NULL;
  if (!addmm_fits(x, w, bias, "addmm")) return NULL;
  d2r_tensor *in[3] = {x, w, bias};
  d2r_tensor *out = d2r_watch(matmul_raw(x, false, w, false, bias),
                              "addmm", 3, in);
  return d2r_record(out, "addmm", bw_addmm, 3, in);
}

/* The gradient through relu(x w + bias): masked where the output is 0
 * (where the product was <= 0, or NaN), then addmm's rule. */
static int bw_addmm_relu(d2r_node *n, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *gm = where_positive(g, n->out, "addmm_relu backward");
  if (!gm) return -1;
  int rc = bw_addmm(n, gm, gin);
  d2r_release(gm);
  return rc;
}

d2r_tensor *d2r_addmm_relu(d2r_tensor *x, d2r_tensor *w, d2r_tensor *bias) {
  if (!x || !w || !bias) return NULL;
  if (!addmm_fits(x, w, bias, "addmm_relu")) return NULL;
  d2r_tensor *in[3] = {x, w, bias};
  /* Anomalies are looked for before the relu, which would hide a -inf. */
  d2r_tensor *out = d2r_watch(matmul_raw(x, false, w, false, bias),
                              "addmm_relu", 3, in);
  if (out) {
    /* relu in place (one pointer, so it vectorises without an overlap
     * check). */
    double *restrict d = out->st->data;
    for (int64_t i = 0; i < out->numel; i++) d[i] = RELU(d[i]);
  }
  return d2r_record(out, "addmm_relu", bw_addmm_relu, 3, in);
}

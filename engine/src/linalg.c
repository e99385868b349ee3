/*
 * Dense linear algebra (linalg.h) on the LAPACK routines that Debian's
 * libopenblas exports.  No lapacke.h is installed, so the Fortran
 * prototypes used are declared below.  Each op computes its value one
 * matrix of a batch at a time.  Its backward rule is written with
 * differentiable ops and sits beside it, with its derivation.
 */
#include <cblas.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/linalg.h"
#include "tensor_impl.h"

#define KEEP(e) d2r_keep(&s, (e))

/* ---- LAPACK ------------------------------------------------------------ */

/* Column-major, 32-bit integers (Debian's OpenBLAS is not ILP64).
 * gfortran passes the length of each character argument as a hidden
 * trailing size_t; it is declared and passed (as 1) so that the calls
 * match the routines' real signatures. */
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda,
             int *info, size_t uplo_len);
void dpocon_(const char *uplo, const int *n, const double *a,
             const int *lda, const double *anorm, double *rcond,
             double *work, int *iwork, int *info, size_t uplo_len);
void dgetrf_(const int *m, const int *n, double *a, const int *lda,
             int *ipiv, int *info);
void dgetrs_(const char *trans, const int *n, const int *nrhs,
             const double *a, const int *lda, const int *ipiv, double *b,
             const int *ldb, int *info, size_t trans_len);
void dgecon_(const char *norm, const int *n, const double *a,
             const int *lda, const double *anorm, double *rcond,
             double *work, int *iwork, int *info, size_t norm_len);

/* ---- shapes and buffers ------------------------------------------------ */

/* A contiguous row-major copy of t (or t itself, retained), made without
 * recording: kernels read their matrices through it. */
static d2r_tensor *raw(const d2r_tensor *t) {
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *c = d2r_contiguous((d2r_tensor *)t);
  d2r_set_grad_enabled(was);
  return c;
}

/* Product of all dimensions but the last `keep`. */
static int64_t lead(const d2r_tensor *t, int keep) {
  int64_t p = 1;
  for (int i = 0; i < t->ndim - keep; i++) p *= t->shape[i];
  return p;
}

/* True for [n, n] or [b, n, n] with n within LAPACK's int range. */
static bool square(const d2r_tensor *a, const char *fn) {
  int nd = a->ndim;
  char buf[96];
  if ((nd != 2 && nd != 3) || a->shape[nd - 1] != a->shape[nd - 2]) {
    d2r_fail("%s: expected a square matrix [n, n] or a batch [b, n, n], "
             "got %s", fn, d2r_shape_str(a, buf, sizeof buf));
    return false;
  }
  if (a->shape[nd - 1] > INT_MAX) {
    d2r_fail("%s: order %lld exceeds LAPACK's int range", fn,
             (long long)a->shape[nd - 1]);
    return false;
  }
  return true;
}

/* True when b is a right-hand side for the square a: a's batch, n rows,
 * and either k columns (b has a's ndim) or none (*vec: b is a vector). */
static bool rhs(const d2r_tensor *a, const d2r_tensor *b, const char *fn,
                bool *vec) {
  int nd = a->ndim;
  *vec = b->ndim == nd - 1;
  bool ok = b->ndim == nd || *vec;
  if (ok && nd == 3) ok = b->shape[0] == a->shape[0];
  if (ok) ok = b->shape[nd - 2] == a->shape[nd - 1];
  if (ok && !*vec) ok = b->shape[nd - 1] <= INT_MAX;
  if (!ok) {
    char ba[96], bb[96];
    d2r_fail("%s: right-hand side %s does not fit the matrix %s", fn,
             d2r_shape_str(b, bb, sizeof bb), d2r_shape_str(a, ba, sizeof ba));
  }
  return ok;
}

/* Names matrix i of a for messages: "the matrix" or "matrix 2 of the
 * batch". */
static const char *which(const d2r_tensor *a, int64_t i, char *buf,
                         size_t size) {
  if (a->ndim < 3) return "the matrix";
  snprintf(buf, size, "matrix %lld of the batch", (long long)i + 1);
  return buf;
}

/* A vector right-hand side as a one-column matrix, and back (the second
 * consumes x). */
static d2r_tensor *columns(d2r_tensor *b, bool vec) {
  return vec ? d2r_unsqueeze(b, -1) : d2r_retain(b);
}

static d2r_tensor *uncolumns(d2r_tensor *x, bool vec) {
  if (!vec) return x;
  d2r_tensor *out = x ? d2r_squeeze(x, -1) : NULL;
  d2r_release(x);
  return out;
}

/* Workspace of one call: malloc'd blocks freed together. */
typedef struct {
  double *f, *rhs, *work;
  int *ipiv, *iwork;
} scratch;

static bool scratch_alloc(scratch *w, int64_t n, int64_t k, const char *fn) {
  size_t nn = (size_t)(n * n) + 1, nk = (size_t)(n * k) + 1;
  size_t n1 = (size_t)n + 1;
  w->f = malloc(nn * sizeof *w->f);
  w->rhs = malloc(nk * sizeof *w->rhs);
  w->work = malloc(4 * n1 * sizeof *w->work);
  w->ipiv = malloc(n1 * sizeof *w->ipiv);
  w->iwork = malloc(n1 * sizeof *w->iwork);
  if (w->f && w->rhs && w->work && w->ipiv && w->iwork) return true;
  d2r_fail("%s: out of memory for a workspace of order %lld", fn,
           (long long)n);
  return false;
}

static void scratch_free(scratch *w) {
  free(w->f), free(w->rhs), free(w->work), free(w->ipiv), free(w->iwork);
}

/* Fails, naming the entry, when the row-major r x c matrix m is not
 * finite. */
static bool finite(const double *m, int64_t r, int64_t c, const char *fn,
                   const char *who) {
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < c; j++)
      if (!isfinite(m[i * c + j])) {
        d2r_fail("%s: %s has a non-finite entry (%g) at row %lld, column "
                 "%lld", fn, who, m[i * c + j], (long long)i + 1,
                 (long long)j + 1);
        return false;
      }
  return true;
}

/* ---- Cholesky ---------------------------------------------------------- */

/*
 * Writes the symmetric part of the row-major n x n matrix a into f (being
 * symmetric, it reads the same in either order), sets *anorm to its
 * 1-norm, and factors it in place with dpotrf: the lower triangle of f,
 * column-major, becomes L.  Returns 0, 1 (with a message) when a is not
 * finite or not positive definite, or -1 on an internal failure.
 */
static int chol1(const double *a, int n, double *f, double *anorm,
                 const char *fn, const char *who) {
  if (!finite(a, n, n, fn, who)) return 1;
  *anorm = 0;
  for (int j = 0; j < n; j++) {
    double col = 0;
    for (int i = 0; i < n; i++) {
      f[i + j * n] = 0.5 * a[i * n + j] + 0.5 * a[j * n + i];
      col += fabs(f[i + j * n]);
    }
    *anorm = col > *anorm ? col : *anorm;
  }
  if (n == 0) return 0;
  int info = 0;
  dpotrf_("L", &n, f, &n, &info, 1);
  if (info > 0) {
    d2r_fail("%s: %s is not positive definite (its leading minor of order "
             "%d is not positive)", fn, who, info);
    return 1;
  }
  if (info < 0) {
    d2r_fail("%s: LAPACK dpotrf rejected its argument %d", fn, -info);
    return -1;
  }
  return 0;
}

static d2r_tensor *cholesky_raw(d2r_tensor *a, const char *fn) {
  int n = (int)a->shape[a->ndim - 1];
  int64_t nb = lead(a, 2), nn = (int64_t)n * n;
  scratch w = {0};
  d2r_tensor *c = raw(a);
  d2r_tensor *out = c ? d2r_new(a->ndim, a->shape) : NULL;
  int rc = out && scratch_alloc(&w, n, 0, fn) ? 0 : -1;
  for (int64_t b = 0; rc == 0 && b < nb; b++) {
    char buf[64];
    double anorm;
    rc = chol1(d2r_data(c) + b * nn, n, w.f, &anorm, fn,
               which(a, b, buf, sizeof buf));
    double *l = d2r_data(out) + b * nn;
    for (int i = 0; rc == 0 && i < n; i++)
      for (int j = 0; j < n; j++) l[i * n + j] = j <= i ? w.f[i + j * n] : 0;
  }
  scratch_free(&w);
  d2r_release(c);
  if (rc == 0) return out;
  d2r_release(out);
  return NULL;
}

/* Phi as a mask: 1 below the diagonal, 1/2 on it, 0 above. */
static d2r_tensor *phi_mask(int64_t n) {
  int64_t sh[2] = {n, n};
  d2r_tensor *m = d2r_new(2, sh);
  if (!m) return NULL;
  double *p = d2r_data(m);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++)
      p[i * n + j] = i > j ? 1 : (i == j ? 0.5 : 0);
  return m;
}

/*
 * A = L L^T with dA symmetric gives L^-1 dA L^-T = L^-1 dL + (L^-1 dL)^T,
 * where L^-1 dL is lower triangular; so L^-1 dL = Phi(L^-1 dA L^-T), Phi
 * keeping the strict lower triangle and half the diagonal, and
 * dL = L Phi(L^-1 dA L^-T).  Phi scales entries, so it is its own adjoint,
 * and for an upstream gradient G
 *   <G, dL> = <Phi(L^T G), L^-1 dA L^-T> = <L^-T Phi(L^T G) L^-1, dA>.
 * The forward factors sym(A), so the gradient is sym(S) for
 * S = L^-T Phi(L^T G) L^-1.  With Y = L^-T Phi(L^T G), S^T = L^-T Y^T:
 * two transposed triangular solves, and sym(S^T) = sym(S).
 */
static int bw_cholesky(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *l = nd->out;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *lt = KEEP(d2r_transpose(l, -2, -1));
  d2r_tensor *phi = KEEP(phi_mask(l->shape[l->ndim - 1]));
  d2r_tensor *p = KEEP(d2r_mul(KEEP(d2r_matmul(lt, g)), phi));
  d2r_tensor *y = KEEP(d2r_tri_solve(l, p, true, true));
  d2r_tensor *yt = KEEP(d2r_transpose(y, -2, -1));
  gin[0] = d2r_sym(KEEP(d2r_tri_solve(l, yt, true, true)));
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

static d2r_tensor *cholesky_named(d2r_tensor *a, const char *fn) {
  if (!a) return NULL;
  if (!square(a, fn)) return NULL;
  return d2r_record(cholesky_raw(a, fn), "cholesky", bw_cholesky, 1, &a);
}

d2r_tensor *d2r_cholesky(d2r_tensor *a) {
  return cholesky_named(a, "cholesky");
}

int d2r_spd_check(const d2r_tensor *a, double *rcond) {
  if (rcond) *rcond = 0;
  if (!a || !square(a, "spd_check")) return -1;
  int n = (int)a->shape[a->ndim - 1];
  int64_t nb = lead(a, 2), nn = (int64_t)n * n;
  scratch w = {0};
  d2r_tensor *c = raw(a);
  int res = c && scratch_alloc(&w, n, 0, "spd_check") ? 1 : -1;
  double best = 1;  /* a reciprocal condition number is at most 1 */
  for (int64_t b = 0; res == 1 && b < nb; b++) {
    char buf[64];
    double anorm, rc = 1;
    int st = chol1(d2r_data(c) + b * nn, n, w.f, &anorm, "spd_check",
                   which(a, b, buf, sizeof buf));
    if (st != 0) {
      res = st > 0 ? 0 : -1;
      break;
    }
    int info = 0;
    if (n > 0)
      dpocon_("L", &n, w.f, &n, &anorm, &rc, w.work, w.iwork, &info, 1);
    if (info != 0) {
      d2r_fail("spd_check: LAPACK dpocon rejected its argument %d", -info);
      res = -1;
    }
    best = rc < best ? rc : best;
  }
  scratch_free(&w);
  d2r_release(c);
  if (res == 1 && rcond) *rcond = best;
  return res;
}

/* ---- triangular solves ------------------------------------------------- */

static d2r_tensor *tri_solve_raw(d2r_tensor *t, d2r_tensor *b, bool lower,
                                 bool trans, const char *fn) {
  int nd = t->ndim, n = (int)t->shape[nd - 1], k = (int)b->shape[nd - 1];
  int64_t nb = lead(t, 2), nn = (int64_t)n * n, nk = (int64_t)n * k;
  d2r_tensor *tc = raw(t), *bc = raw(b);
  d2r_tensor *out = tc && bc ? d2r_new(b->ndim, b->shape) : NULL;
  int rc = out ? 0 : -1;
  for (int64_t i = 0; rc == 0 && i < nb; i++) {
    const double *m = d2r_data(tc) + i * nn;
    double *x = d2r_data(out) + i * nk;
    for (int j = 0; rc == 0 && j < n; j++)
      if (m[j * n + j] == 0) {
        char buf[64];
        d2r_fail("%s: %s is singular (diagonal entry %d is zero)", fn,
                 which(t, i, buf, sizeof buf), j + 1);
        rc = -1;
      }
    if (rc != 0 || nk == 0) continue;
    memcpy(x, d2r_data(bc) + i * nk, (size_t)nk * sizeof *x);
    cblas_dtrsm(CblasRowMajor, CblasLeft, lower ? CblasLower : CblasUpper,
                trans ? CblasTrans : CblasNoTrans, CblasNonUnit, n, k, 1.0,
                m, n, x, k);
  }
  d2r_release(tc);
  d2r_release(bc);
  if (rc == 0) return out;
  d2r_release(out);
  return NULL;
}

/*
 * X = op(T)^-1 B with op(T) = T or T^T.  dX = op(T)^-1 (dB - op(dT) X),
 * so for an upstream G the gradient of B is gB = op(T)^-T G (a solve
 * with the other transpose flag), and that of T is -gB X^T when
 * op(T) = T and -X gB^T when op(T) = T^T, kept to the triangle read.
 */
static int bw_tri_solve(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *t = nd->in[0], *x = nd->out;
  bool lower = nd->i[0], trans = nd->i[1];
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *gb = KEEP(d2r_tri_solve(t, g, lower, !trans));
  int rc = gb ? 0 : -1;
  if (rc == 0 && d2r_needs_grad(nd->in[1])) gin[1] = d2r_retain(gb);
  if (rc == 0 && d2r_needs_grad(t)) {
    d2r_tensor *outer =
        trans ? KEEP(d2r_matmul(x, KEEP(d2r_transpose(gb, -2, -1))))
              : KEEP(d2r_matmul(gb, KEEP(d2r_transpose(x, -2, -1))));
    d2r_tensor *part = KEEP(lower ? d2r_tril(outer, 0) : d2r_triu(outer, 0));
    gin[0] = d2r_neg(part);
    rc = gin[0] ? 0 : -1;
  }
  d2r_scope_end(&s);
  return rc;
}

static d2r_tensor *tri_solve_named(d2r_tensor *t, d2r_tensor *b, bool lower,
                                   bool trans, const char *fn) {
  if (!t || !b) return NULL;
  bool vec;
  if (!square(t, fn) || !rhs(t, b, fn, &vec)) return NULL;
  d2r_tensor *bm = columns(b, vec);
  d2r_tensor *x = bm ? tri_solve_raw(t, bm, lower, trans, fn) : NULL;
  d2r_tensor *in[2] = {t, bm};
  x = d2r_record(x, "tri_solve", bw_tri_solve, 2, in);
  if (x && x->node) x->node->i[0] = lower, x->node->i[1] = trans;
  d2r_release(bm);
  return uncolumns(x, vec);
}

d2r_tensor *d2r_tri_solve(d2r_tensor *t, d2r_tensor *b, bool lower,
                          bool transpose) {
  return tri_solve_named(t, b, lower, transpose, "tri_solve");
}

d2r_tensor *d2r_cholesky_solve(d2r_tensor *l, d2r_tensor *b) {
  d2r_tensor *y = tri_solve_named(l, b, true, false, "cholesky_solve");
  d2r_tensor *x = tri_solve_named(l, y, true, true, "cholesky_solve");
  d2r_release(y);
  return x;
}

/* ---- LU: solve, inverse, determinants ---------------------------------- */

/*
 * Copies the row-major n x n matrix a column-major into w->f and
 * LU-factors it there (dgetrf: P A = L U, pivots in w->ipiv).  Fails with
 * a message on a non-finite entry, an exact zero pivot, or a reciprocal
 * condition number (dgecon, 1-norm) below DBL_EPSILON.
 */
static bool lu1(const double *a, int n, scratch *w, const char *fn,
                const char *who) {
  if (!finite(a, n, n, fn, who)) return false;
  double anorm = 0, rcond = 0;
  for (int j = 0; j < n; j++) {
    double col = 0;
    for (int i = 0; i < n; i++) {
      w->f[i + j * n] = a[i * n + j];
      col += fabs(a[i * n + j]);
    }
    anorm = col > anorm ? col : anorm;
  }
  if (n == 0) return true;
  int info = 0;
  dgetrf_(&n, &n, w->f, &n, w->ipiv, &info);
  if (info > 0) {
    d2r_fail("%s: %s is singular (zero pivot in column %d)", fn, who, info);
    return false;
  }
  if (info == 0)
    dgecon_("1", &n, w->f, &n, &anorm, &rcond, w->work, w->iwork, &info, 1);
  if (info < 0) {
    d2r_fail("%s: LAPACK rejected argument %d", fn, -info);
    return false;
  }
  if (!(rcond >= DBL_EPSILON)) {
    d2r_fail("%s: %s is singular to working precision (reciprocal "
             "condition number %.3g)", fn, who, rcond);
    return false;
  }
  return true;
}

/* X = A^-1 B for each matrix of a batch, or A^-1 when b is NULL. */
static d2r_tensor *lu_solve_raw(d2r_tensor *a, d2r_tensor *b,
                                const char *fn) {
  int nd = a->ndim, n = (int)a->shape[nd - 1];
  int k = b ? (int)b->shape[nd - 1] : n;
  int64_t nb = lead(a, 2), nn = (int64_t)n * n, nk = (int64_t)n * k;
  const d2r_tensor *shape_of = b ? b : a;
  scratch w = {0};
  d2r_tensor *ac = raw(a), *bc = b ? raw(b) : NULL;
  d2r_tensor *out = ac && (bc || !b)
                        ? d2r_new(shape_of->ndim, shape_of->shape) : NULL;
  int rc = out && scratch_alloc(&w, n, k, fn) ? 0 : -1;
  for (int64_t i = 0; rc == 0 && i < nb; i++) {
    char buf[64];
    if (!lu1(d2r_data(ac) + i * nn, n, &w, fn, which(a, i, buf, sizeof buf)))
      rc = -1;
    if (rc != 0 || nk == 0) continue;
    /* The right-hand side, column-major. */
    const double *src = bc ? d2r_data(bc) + i * nk : NULL;
    for (int r = 0; r < n; r++)
      for (int c = 0; c < k; c++)
        w.rhs[r + (int64_t)c * n] = src ? src[r * k + c] : (double)(r == c);
    int info = 0;
    dgetrs_("N", &n, &k, w.f, &n, w.ipiv, w.rhs, &n, &info, 1);
    if (info != 0) {
      d2r_fail("%s: LAPACK dgetrs rejected its argument %d", fn, -info);
      rc = -1;
      continue;
    }
    double *x = d2r_data(out) + i * nk;
    for (int r = 0; r < n; r++)
      for (int c = 0; c < k; c++) x[r * k + c] = w.rhs[r + (int64_t)c * n];
  }
  scratch_free(&w);
  d2r_release(ac);
  d2r_release(bc);
  if (rc == 0) return out;
  d2r_release(out);
  return NULL;
}

/* X = A^-1 B: dX = A^-1 (dB - dA X), so gB = A^-T G and gA = -gB X^T. */
static int bw_solve(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *a = nd->in[0], *x = nd->out;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *gb = KEEP(d2r_solve(KEEP(d2r_transpose(a, -2, -1)), g));
  int rc = gb ? 0 : -1;
  if (rc == 0 && d2r_needs_grad(nd->in[1])) gin[1] = d2r_retain(gb);
  if (rc == 0 && d2r_needs_grad(a)) {
    d2r_tensor *xt = KEEP(d2r_transpose(x, -2, -1));
    gin[0] = d2r_neg(KEEP(d2r_matmul(gb, xt)));
    rc = gin[0] ? 0 : -1;
  }
  d2r_scope_end(&s);
  return rc;
}

d2r_tensor *d2r_solve(d2r_tensor *a, d2r_tensor *b) {
  if (!a || !b) return NULL;
  bool vec;
  if (!square(a, "solve") || !rhs(a, b, "solve", &vec)) return NULL;
  d2r_tensor *bm = columns(b, vec);
  d2r_tensor *x = bm ? lu_solve_raw(a, bm, "solve") : NULL;
  d2r_tensor *in[2] = {a, bm};
  x = d2r_record(x, "solve", bw_solve, 2, in);
  d2r_release(bm);
  return uncolumns(x, vec);
}

/* Y = A^-1: dY = -Y dA Y, so gA = -Y^T G Y^T. */
static int bw_inverse(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *yt = KEEP(d2r_transpose(nd->out, -2, -1));
  gin[0] = d2r_neg(KEEP(d2r_matmul(KEEP(d2r_matmul(yt, g)), yt)));
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

d2r_tensor *d2r_inverse(d2r_tensor *a) {
  if (!a) return NULL;
  if (!square(a, "inverse")) return NULL;
  return d2r_record(lu_solve_raw(a, NULL, "inverse"), "inverse", bw_inverse,
                    1, &a);
}

/* d log|det A| = tr(A^-1 dA) = <A^-T, dA>, so gA = g A^-T (g broadcast
 * over each matrix of a batch). */
static int bw_slogdet(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  d2r_tensor *a = nd->in[0];
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *it = KEEP(d2r_transpose(KEEP(d2r_inverse(a)), -2, -1));
  d2r_tensor *gm = g;
  if (a->ndim == 3) {
    int64_t sh[3] = {a->shape[0], 1, 1};
    gm = KEEP(d2r_reshape(g, 3, sh));
  }
  gin[0] = d2r_mul(it, gm);
  d2r_scope_end(&s);
  return gin[0] ? 0 : -1;
}

/* log|det| from the LU factors: the log of each |U_ii|; the sign is that
 * of prod U_ii, flipped by each row interchange (ipiv[i] != i + 1). */
static d2r_tensor *slogdet_named(d2r_tensor *a, d2r_tensor **sign,
                                 const char *fn) {
  if (sign) *sign = NULL;
  if (!a) return NULL;
  if (!square(a, fn)) return NULL;
  int n = (int)a->shape[a->ndim - 1];
  int64_t nb = lead(a, 2), nn = (int64_t)n * n;
  scratch w = {0};
  d2r_tensor *ac = raw(a);
  d2r_tensor *out = ac ? d2r_new(a->ndim - 2, a->shape) : NULL;
  d2r_tensor *sg = out ? d2r_new(a->ndim - 2, a->shape) : NULL;
  int rc = sg && scratch_alloc(&w, n, 0, fn) ? 0 : -1;
  for (int64_t i = 0; rc == 0 && i < nb; i++) {
    char buf[64];
    if (!lu1(d2r_data(ac) + i * nn, n, &w, fn, which(a, i, buf, sizeof buf)))
      rc = -1;
    double logabs = 0, sgn = 1;
    for (int j = 0; rc == 0 && j < n; j++) {
      double u = w.f[j + (int64_t)j * n];
      logabs += log(fabs(u));
      sgn *= (u < 0) != (w.ipiv[j] != j + 1) ? -1 : 1;
    }
    if (rc != 0) continue;
    d2r_data(out)[i] = logabs;
    d2r_data(sg)[i] = sgn;
  }
  scratch_free(&w);
  d2r_release(ac);
  if (rc == 0) out = d2r_record(out, "slogdet", bw_slogdet, 1, &a);
  if (rc != 0 || !out) {
    d2r_release(out);
    d2r_release(sg);
    return NULL;
  }
  if (sign) *sign = sg;
  else d2r_release(sg);
  return out;
}

d2r_tensor *d2r_slogdet(d2r_tensor *a, d2r_tensor **sign) {
  return slogdet_named(a, sign, "slogdet");
}

d2r_tensor *d2r_logdet(d2r_tensor *a) {
  d2r_tensor *sg = NULL, *out = slogdet_named(a, &sg, "logdet");
  if (!out) return NULL;
  for (int64_t i = 0; i < sg->numel; i++) {
    if (d2r_data(sg)[i] > 0) continue;
    char buf[64];
    d2r_fail("logdet: the determinant of %s is negative (d2r_slogdet gives "
             "log |det| and the sign)", which(a, i, buf, sizeof buf));
    d2r_release(out);
    out = NULL;
    break;
  }
  d2r_release(sg);
  return out;
}

d2r_tensor *d2r_logdet_spd(d2r_tensor *a) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *l = KEEP(cholesky_named(a, "logdet_spd"));
  d2r_tensor *logs = KEEP(d2r_log(KEEP(d2r_diag_part(l))));
  d2r_tensor *out = d2r_muls(KEEP(d2r_sum(logs, -1, false)), 2.0);
  d2r_scope_end(&s);
  return out;
}

/* ---- diagonals, triangles, trace, symmetric part ----------------------- */

static d2r_tensor *embed(d2r_tensor *v, int64_t r, int64_t c);

static bool matrix_arg(const d2r_tensor *a, const char *fn) {
  if (a->ndim >= 2) return true;
  char buf[96];
  d2r_fail("%s: expected a matrix [..., r, c], got %s", fn,
           d2r_shape_str(a, buf, sizeof buf));
  return false;
}

/* The gradient of the diagonal goes back onto the diagonal, and the
 * gradient of a diagonal matrix is its diagonal. */
static int bw_diag_part(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  gin[0] = embed(g, nd->i[0], nd->i[1]);
  return gin[0] ? 0 : -1;
}

static int bw_embed(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  return (gin[0] = d2r_diag_part(g)) ? 0 : -1;
}

/* Zeros [..., r, c] with v [..., min(r, c)] on the main diagonal. */
static d2r_tensor *embed(d2r_tensor *v, int64_t r, int64_t c) {
  int nd = v->ndim + 1;
  int64_t sh[D2R_MAXDIM], m = v->shape[v->ndim - 1];
  memcpy(sh, v->shape, (size_t)(v->ndim - 1) * sizeof *sh);
  sh[nd - 2] = r, sh[nd - 1] = c;
  d2r_tensor *vc = raw(v);
  d2r_tensor *out = vc ? d2r_zeros(nd, sh) : NULL;
  if (!out) {
    d2r_release(vc);
    return NULL;
  }
  for (int64_t b = 0, nb = lead(v, 1); b < nb; b++)
    for (int64_t i = 0; i < m; i++)
      d2r_data(out)[b * r * c + i * c + i] = d2r_data(vc)[b * m + i];
  d2r_release(vc);
  return d2r_record(out, "diag", bw_embed, 1, &v);
}

d2r_tensor *d2r_diag(d2r_tensor *v) {
  if (!v) return NULL;
  if (v->ndim < 1 || v->ndim >= D2R_MAXDIM) {
    char buf[96];
    return d2r_fail("diag: expected a vector [..., n] of at most %d "
                    "dimensions, got %s", D2R_MAXDIM - 1,
                    d2r_shape_str(v, buf, sizeof buf));
  }
  int64_t n = v->shape[v->ndim - 1];
  return embed(v, n, n);
}

d2r_tensor *d2r_diag_part(d2r_tensor *a) {
  if (!a) return NULL;
  if (!matrix_arg(a, "diag_part")) return NULL;
  int nd = a->ndim;
  int64_t r = a->shape[nd - 2], c = a->shape[nd - 1], m = r < c ? r : c;
  int64_t sh[D2R_MAXDIM];
  memcpy(sh, a->shape, sizeof sh);
  sh[nd - 2] = m;
  d2r_tensor *ac = raw(a);
  d2r_tensor *out = ac ? d2r_new(nd - 1, sh) : NULL;
  if (!out) {
    d2r_release(ac);
    return NULL;
  }
  for (int64_t b = 0, nb = lead(a, 2); b < nb; b++)
    for (int64_t i = 0; i < m; i++)
      d2r_data(out)[b * m + i] = d2r_data(ac)[b * r * c + i * c + i];
  d2r_release(ac);
  out = d2r_record(out, "diag_part", bw_diag_part, 1, &a);
  if (out && out->node) out->node->i[0] = r, out->node->i[1] = c;
  return out;
}

/* tril and triu multiply by a fixed 0/1 mask, so the gradient is masked
 * the same way. */
static d2r_tensor *band(d2r_tensor *a, int64_t k, bool upper);

static int bw_band(d2r_node *nd, d2r_tensor *g, d2r_tensor **gin) {
  return (gin[0] = band(g, nd->i[0], nd->i[1])) ? 0 : -1;
}

static d2r_tensor *band(d2r_tensor *a, int64_t k, bool upper) {
  const char *fn = upper ? "triu" : "tril";
  if (!a) return NULL;
  if (!matrix_arg(a, fn)) return NULL;
  int64_t r = a->shape[a->ndim - 2], c = a->shape[a->ndim - 1];
  d2r_tensor *ac = raw(a);
  d2r_tensor *out = ac ? d2r_new(a->ndim, a->shape) : NULL;
  if (!out) {
    d2r_release(ac);
    return NULL;
  }
  const double *x = d2r_data(ac);
  double *o = d2r_data(out);
  for (int64_t b = 0, nb = lead(a, 2); b < nb; b++)
    for (int64_t i = 0; i < r; i++)
      for (int64_t j = 0; j < c; j++) {
        int64_t at = (b * r + i) * c + j;
        bool kept = upper ? j - i >= k : j - i <= k;
        o[at] = kept ? x[at] : 0;
      }
  d2r_release(ac);
  out = d2r_record(out, fn, bw_band, 1, &a);
  if (out && out->node) out->node->i[0] = k, out->node->i[1] = upper;
  return out;
}

d2r_tensor *d2r_tril(d2r_tensor *a, int64_t k) { return band(a, k, false); }
d2r_tensor *d2r_triu(d2r_tensor *a, int64_t k) { return band(a, k, true); }

d2r_tensor *d2r_trace(d2r_tensor *a) {
  d2r_tensor *d = d2r_diag_part(a);
  d2r_tensor *out = d ? d2r_sum(d, -1, false) : NULL;
  d2r_release(d);
  return out;
}

d2r_tensor *d2r_sym(d2r_tensor *a) {
  if (!a) return NULL;
  if (!square(a, "sym")) return NULL;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *at = KEEP(d2r_transpose(a, -2, -1));
  d2r_tensor *out = d2r_muls(KEEP(d2r_add(a, at)), 0.5);
  d2r_scope_end(&s);
  return out;
}

/*
 * Tests of linalg.h: values against hand-computed small matrices and
 * against reconstruction (L L^T = A, A X = B, A A^-1 = I), closed-form
 * gradients, error messages, and first and second derivatives of every
 * operation against finite differences (gradcheck.h) on random
 * symmetric positive definite matrices A = M M^T + n I.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "d2r/linalg.h"
#include "d2r/rng.h"
#include "d2r/tensor.h"
#include "gradcheck.h"

#define TOL 1e-10

/* ---- fixtures ------------------------------------------------------------ */

static d2r_tensor *randt(uint64_t seed, int nd, const int64_t *sh,
                         double lo, double hi) {
  d2r_rng *r = d2r_rng_new(seed);
  d2r_tensor *t = d2r_rand_uniform(r, nd, sh, lo, hi);
  d2r_rng_free(r);
  return t;
}

/* A leaf copy of t (contiguous, no history). */
static d2r_tensor *leaf(d2r_tensor *t) {
  cr_assert(t, "fixture failed: %s", d2r_error());
  d2r_tensor *out = d2r_zeros(d2r_ndim(t), d2r_shape(t));
  d2r_copy_(out, t);
  d2r_release(t);
  return out;
}

/* M M^T + n I for M uniform in [-1, 1]: [n, n], or [b, n, n] if b > 0. */
static d2r_tensor *spd(uint64_t seed, int64_t b, int64_t n) {
  int64_t sh[3] = {b, n, n};
  int nd = b > 0 ? 3 : 2;
  const int64_t *s = b > 0 ? sh : sh + 1;
  d2r_tensor *m = randt(seed, nd, s, -1, 1);
  d2r_tensor *mt = d2r_transpose(m, -2, -1);
  d2r_tensor *mm = d2r_matmul(m, mt);
  d2r_tensor *eye = d2r_eye(n);
  d2r_tensor *ni = d2r_muls(eye, (double)n);
  d2r_tensor *a = d2r_add(mm, ni);
  d2r_release(m), d2r_release(mt), d2r_release(mm), d2r_release(eye);
  d2r_release(ni);
  return leaf(a);
}

/* M + n I for M uniform in [-1, 1]: not symmetric, diagonally dominant
 * (so its determinant is positive). */
static d2r_tensor *general(uint64_t seed, int64_t b, int64_t n) {
  int64_t sh[3] = {b, n, n};
  int nd = b > 0 ? 3 : 2;
  d2r_tensor *m = randt(seed, nd, b > 0 ? sh : sh + 1, -1, 1);
  d2r_tensor *eye = d2r_eye(n);
  d2r_tensor *ni = d2r_muls(eye, (double)n);
  d2r_tensor *a = d2r_add(m, ni);
  d2r_release(m), d2r_release(eye), d2r_release(ni);
  return leaf(a);
}

/* The lower Cholesky factor of spd(seed, b, n), as a leaf. */
static d2r_tensor *lower_factor(uint64_t seed, int64_t b, int64_t n) {
  d2r_tensor *a = spd(seed, b, n);
  d2r_tensor *l = d2r_cholesky(a);
  d2r_release(a);
  return leaf(l);
}

static double max_abs_diff(d2r_tensor *a, d2r_tensor *b) {
  cr_assert(a && b, "missing tensor: %s", d2r_error());
  cr_assert(d2r_same_shape(a, b), "shapes differ");
  d2r_tensor *ca = d2r_contiguous(a), *cb = d2r_contiguous(b);
  double m = 0;
  for (int64_t i = 0; i < d2r_numel(ca); i++)
    m = fmax(m, fabs(d2r_data(ca)[i] - d2r_data(cb)[i]));
  d2r_release(ca), d2r_release(cb);
  return m;
}

/* Asserts a == b elementwise within tol, then releases a. */
static void expect_close(d2r_tensor *a, d2r_tensor *b, double tol,
                         const char *what) {
  cr_assert(a, "%s failed: %s", what, d2r_error());
  double d = max_abs_diff(a, b);
  cr_expect(d <= tol, "%s: max |difference| %.3g > %.3g", what, d, tol);
  d2r_release(a);
}

static void expect_values(d2r_tensor *a, const double *want, int64_t n,
                          double tol, const char *what) {
  cr_assert(a, "%s failed: %s", what, d2r_error());
  cr_assert_eq(d2r_numel(a), n, "%s: %lld elements, not %lld", what,
               (long long)d2r_numel(a), (long long)n);
  d2r_tensor *c = d2r_contiguous(a);
  for (int64_t i = 0; i < n; i++)
    cr_expect(fabs(d2r_data(c)[i] - want[i]) <= tol,
              "%s[%lld] = %.15g, want %.15g", what, (long long)i,
              d2r_data(c)[i], want[i]);
  d2r_release(c);
  d2r_release(a);
}

/* Asserts that the call failed with a message containing each of the
 * NULL-terminated fragments. */
static void expect_fail(d2r_tensor *r, const char *what, ...) {
  cr_expect_null(r, "%s: expected a failure", what);
  d2r_release(r);
  va_list ap;
  va_start(ap, what);
  for (const char *frag; (frag = va_arg(ap, const char *));)
    cr_expect(strstr(d2r_error(), frag), "%s: message '%s' lacks '%s'", what,
              d2r_error(), frag);
  va_end(ap);
}

/* ---- values -------------------------------------------------------------- */

static const double HAND_A[9] = {4, 12, -16, 12, 37, -43, -16, -43, 98};
static const double HAND_L[9] = {2, 0, 0, 6, 1, 0, -8, 5, 3};

Test(linalg, cholesky_hand_computed) {
  d2r_tensor *a = d2r_matrix(3, 3, HAND_A);
  expect_values(d2r_cholesky(a), HAND_L, 9, TOL, "cholesky");
  /* A matrix with rounding asymmetry factors as its symmetric part. */
  double skew[9];
  memcpy(skew, HAND_A, sizeof skew);
  skew[1] += 1e-9, skew[3] -= 1e-9;
  d2r_tensor *b = d2r_matrix(3, 3, skew);
  expect_values(d2r_cholesky(b), HAND_L, 9, TOL, "cholesky of skew");
  d2r_release(a), d2r_release(b);
}

static void check_reconstruction(d2r_tensor *a) {
  d2r_tensor *l = d2r_cholesky(a);
  cr_assert(l, "cholesky failed: %s", d2r_error());
  d2r_tensor *lt = d2r_transpose(l, -2, -1);
  expect_close(d2r_matmul(l, lt), a, TOL, "L L^T");
  expect_close(d2r_tril(l, 0), l, 0, "L lower");
  d2r_tensor *d = d2r_diag_part(l), *c = d2r_contiguous(d);
  for (int64_t i = 0; i < d2r_numel(c); i++)
    cr_expect(d2r_data(c)[i] > 0, "diagonal %lld not positive",
              (long long)i);
  d2r_release(l), d2r_release(lt), d2r_release(d), d2r_release(c);
}

Test(linalg, cholesky_reconstructs) {
  d2r_tensor *a = spd(1, 0, 6), *ab = spd(2, 3, 5);
  check_reconstruction(a);
  check_reconstruction(ab);
  /* Each matrix of a batch factors as it would alone. */
  d2r_tensor *lb = d2r_cholesky(ab);
  d2r_tensor *a1 = d2r_slice(ab, 0, 1, 2, 1), *l1 = d2r_slice(lb, 0, 1, 2, 1);
  expect_close(d2r_cholesky(a1), l1, 0, "batch member");
  d2r_release(a), d2r_release(ab), d2r_release(lb), d2r_release(a1);
  d2r_release(l1);
}

Test(linalg, tri_solve_hand_computed) {
  double lo[4] = {2, 0, 3, 4}, up[4] = {2, 3, 0, 4}, full[4] = {2, 99, 3, 4};
  double b1[2] = {2, 11}, b2[2] = {8, 8}, x[2] = {1, 2};
  d2r_tensor *l = d2r_matrix(2, 2, lo), *u = d2r_matrix(2, 2, up);
  d2r_tensor *f = d2r_matrix(2, 2, full);
  d2r_tensor *v1 = d2r_vector(2, b1), *v2 = d2r_vector(2, b2);
  /* L x = b1, L^T x = b2, U x = b2, U^T x = b1 all have x = (1, 2). */
  expect_values(d2r_tri_solve(l, v1, true, false), x, 2, TOL, "L x");
  expect_values(d2r_tri_solve(l, v2, true, true), x, 2, TOL, "L^T x");
  expect_values(d2r_tri_solve(u, v2, false, false), x, 2, TOL, "U x");
  expect_values(d2r_tri_solve(u, v1, false, true), x, 2, TOL, "U^T x");
  /* The other triangle is not read. */
  expect_values(d2r_tri_solve(f, v1, true, false), x, 2, TOL, "ignored");
  d2r_tensor *r = d2r_tri_solve(l, v1, true, false);
  cr_expect_eq(d2r_ndim(r), 1, "a vector right-hand side stays a vector");
  d2r_release(r);
  d2r_release(l), d2r_release(u), d2r_release(f), d2r_release(v1);
  d2r_release(v2);
}

/* op(T) X for the triangle of T that tri_solve reads. */
static d2r_tensor *apply_tri(d2r_tensor *t, d2r_tensor *x, bool lower,
                             bool trans) {
  d2r_tensor *m = lower ? d2r_tril(t, 0) : d2r_triu(t, 0);
  d2r_tensor *op = trans ? d2r_transpose(m, -2, -1) : d2r_retain(m);
  d2r_tensor *out = d2r_matmul(op, x);
  d2r_release(m), d2r_release(op);
  return out;
}

Test(linalg, tri_solve_reconstructs) {
  int64_t sb[2] = {5, 3}, sbb[3] = {2, 5, 3}, sv[2] = {2, 5};
  d2r_tensor *t = randt(3, 2, (int64_t[]){5, 5}, 1, 2);
  d2r_tensor *tb = randt(4, 3, (int64_t[]){2, 5, 5}, 1, 2);
  d2r_tensor *b = randt(5, 2, sb, -1, 1), *bb = randt(6, 3, sbb, -1, 1);
  d2r_tensor *bv = randt(7, 2, sv, -1, 1);
  for (int c = 0; c < 4; c++) {
    bool lower = c & 1, trans = c & 2;
    d2r_tensor *x = d2r_tri_solve(t, b, lower, trans);
    expect_close(apply_tri(t, x, lower, trans), b, TOL, "T X = B");
    d2r_tensor *xb = d2r_tri_solve(tb, bb, lower, trans);
    expect_close(apply_tri(tb, xb, lower, trans), bb, TOL, "batched");
    d2r_tensor *xv = d2r_tri_solve(tb, bv, lower, trans);
    d2r_tensor *xc = d2r_unsqueeze(xv, -1), *bc = d2r_unsqueeze(bv, -1);
    expect_close(apply_tri(tb, xc, lower, trans), bc, TOL, "vectors");
    d2r_release(x), d2r_release(xb), d2r_release(xv), d2r_release(xc);
    d2r_release(bc);
  }
  d2r_release(t), d2r_release(tb), d2r_release(b), d2r_release(bb);
  d2r_release(bv);
}

Test(linalg, cholesky_solve_reconstructs) {
  d2r_tensor *a = spd(8, 0, 5), *ab = spd(9, 2, 4);
  d2r_tensor *b = randt(10, 2, (int64_t[]){5, 2}, -1, 1);
  d2r_tensor *bv = randt(11, 2, (int64_t[]){2, 4}, -1, 1);
  d2r_tensor *l = d2r_cholesky(a), *lb = d2r_cholesky(ab);
  d2r_tensor *x = d2r_cholesky_solve(l, b);
  expect_close(d2r_matmul(a, x), b, TOL, "A X = B");
  d2r_tensor *xv = d2r_cholesky_solve(lb, bv);
  d2r_tensor *xc = d2r_unsqueeze(xv, -1), *bc = d2r_unsqueeze(bv, -1);
  expect_close(d2r_matmul(ab, xc), bc, TOL, "batched vectors");
  d2r_release(a), d2r_release(ab), d2r_release(b), d2r_release(bv);
  d2r_release(l), d2r_release(lb), d2r_release(x), d2r_release(xv);
  d2r_release(xc), d2r_release(bc);
}

Test(linalg, solve_values) {
  double av[4] = {2, 1, 1, 3}, bvals[2] = {3, 5}, want[2] = {0.8, 1.4};
  d2r_tensor *a = d2r_matrix(2, 2, av), *b = d2r_vector(2, bvals);
  expect_values(d2r_solve(a, b), want, 2, TOL, "solve 2x2");
  /* A zero leading entry needs a row interchange. */
  double pv[9] = {0, 2, 1, 1, 1, 0, 3, 0, 1}, pb[3] = {5, 3, 4};
  double px[3] = {1, 2, 1};
  d2r_tensor *p = d2r_matrix(3, 3, pv), *q = d2r_vector(3, pb);
  expect_values(d2r_solve(p, q), px, 3, TOL, "pivoting");
  d2r_tensor *g = general(12, 0, 6), *gb = general(13, 3, 4);
  d2r_tensor *r = randt(14, 2, (int64_t[]){6, 3}, -1, 1);
  d2r_tensor *rb = randt(15, 3, (int64_t[]){3, 4, 2}, -1, 1);
  d2r_tensor *x = d2r_solve(g, r), *xb = d2r_solve(gb, rb);
  expect_close(d2r_matmul(g, x), r, TOL, "A X = B");
  expect_close(d2r_matmul(gb, xb), rb, TOL, "batched A X = B");
  d2r_release(a), d2r_release(b), d2r_release(p), d2r_release(q);
  d2r_release(g), d2r_release(gb), d2r_release(r), d2r_release(rb);
  d2r_release(x), d2r_release(xb);
}

Test(linalg, inverse_values) {
  double av[4] = {4, 7, 2, 6}, want[4] = {0.6, -0.7, -0.2, 0.4};
  d2r_tensor *a = d2r_matrix(2, 2, av);
  expect_values(d2r_inverse(a), want, 4, TOL, "inverse 2x2");
  d2r_tensor *g = general(16, 0, 5), *gb = general(17, 2, 4);
  d2r_tensor *i5 = d2r_eye(5), *i4 = d2r_eye(4);
  d2r_tensor *y = d2r_inverse(g), *yb = d2r_inverse(gb);
  expect_close(d2r_matmul(g, y), i5, TOL, "A A^-1");
  d2r_tensor *p = d2r_matmul(yb, gb);
  d2r_tensor *e = d2r_expand(i4, 3, d2r_shape(p));
  expect_close(p, e, TOL, "batched A^-1 A");
  d2r_release(a), d2r_release(g), d2r_release(gb), d2r_release(i5);
  d2r_release(i4), d2r_release(y), d2r_release(yb), d2r_release(e);
}

Test(linalg, determinants) {
  d2r_tensor *a = d2r_matrix(3, 3, HAND_A);
  double l36 = log(36.0), l5 = log(5.0), l6 = log(6.0), zero = 0;
  expect_values(d2r_logdet_spd(a), &l36, 1, TOL, "logdet_spd 3x3");
  expect_values(d2r_logdet(a), &l36, 1, TOL, "logdet 3x3");
  double pos[4] = {2, 1, 1, 3}, swap[4] = {0, 1, 1, 0};
  double negd[4] = {-2, 0, 0, 3};
  d2r_tensor *p = d2r_matrix(2, 2, pos), *w = d2r_matrix(2, 2, swap);
  d2r_tensor *n = d2r_matrix(2, 2, negd), *sg = NULL;
  expect_values(d2r_slogdet(p, &sg), &l5, 1, TOL, "slogdet +");
  cr_expect_eq(d2r_item(sg), 1.0);
  d2r_release(sg);
  expect_values(d2r_slogdet(w, &sg), &zero, 1, TOL, "slogdet swap");
  cr_expect_eq(d2r_item(sg), -1.0, "a row interchange flips the sign");
  d2r_release(sg);
  expect_values(d2r_slogdet(n, &sg), &l6, 1, TOL, "slogdet -");
  cr_expect_eq(d2r_item(sg), -1.0);
  d2r_release(sg);
  expect_fail(d2r_logdet(n), "logdet negative", "logdet:", "negative",
              NULL);
  /* Batched: [b] results agree with logdet_spd and with each other. */
  d2r_tensor *ab = spd(18, 3, 4);
  d2r_tensor *s1 = d2r_logdet_spd(ab), *s2 = d2r_slogdet(ab, &sg);
  cr_assert(s1 && s2, "%s", d2r_error());
  cr_expect_eq(d2r_ndim(s1), 1);
  cr_expect_eq(d2r_dim(s1, 0), 3);
  expect_close(d2r_logdet(ab), s1, TOL, "batched logdet");
  expect_close(s2, s1, TOL, "batched slogdet");
  d2r_tensor *ones = d2r_ones(1, (int64_t[]){3});
  expect_close(sg, ones, 0, "batched signs");
  d2r_release(a), d2r_release(p), d2r_release(w), d2r_release(n);
  d2r_release(ab), d2r_release(s1), d2r_release(ones);
}

Test(linalg, helpers) {
  double v[3] = {1, 2, 3}, dv[9] = {1, 0, 0, 0, 2, 0, 0, 0, 3};
  d2r_tensor *vec = d2r_vector(3, v);
  expect_values(d2r_diag(vec), dv, 9, 0, "diag");
  double bv[4] = {1, 2, 3, 4}, bd[8] = {1, 0, 0, 2, 3, 0, 0, 4};
  d2r_tensor *vb = d2r_matrix(2, 2, bv);
  d2r_tensor *db = d2r_diag(vb), *t3 = d2r_trace(db);
  cr_expect_eq(d2r_ndim(db), 3, "diag of [2, 2] is [2, 2, 2]");
  expect_values(db, bd, 8, 0, "batched diag");
  double r[6] = {1, 2, 3, 4, 5, 6}, rd[2] = {1, 5};
  d2r_tensor *rect = d2r_matrix(2, 3, r);
  expect_values(d2r_diag_part(rect), rd, 2, 0, "diag_part [2, 3]");
  double t0[6] = {1, 0, 0, 4, 5, 0}, tm[6] = {0, 0, 0, 4, 0, 0};
  double u1[6] = {0, 2, 3, 0, 0, 6}, u0[6] = {1, 2, 3, 0, 5, 6};
  expect_values(d2r_tril(rect, 0), t0, 6, 0, "tril 0");
  expect_values(d2r_tril(rect, -1), tm, 6, 0, "tril -1");
  expect_values(d2r_triu(rect, 1), u1, 6, 0, "triu 1");
  expect_values(d2r_triu(rect, 0), u0, 6, 0, "triu 0");
  expect_values(d2r_tril(rect, 5), r, 6, 0, "tril 5 keeps all");
  double sq[4] = {1, 2, 3, 4}, tr = 5, sy[4] = {1, 2.5, 2.5, 4};
  d2r_tensor *m = d2r_matrix(2, 2, sq);
  expect_values(d2r_trace(m), &tr, 1, 0, "trace");
  expect_values(d2r_sym(m), sy, 4, 0, "sym");
  double trb[2] = {3, 7};
  cr_expect_eq(d2r_ndim(t3), 1, "trace of a batch is [b]");
  expect_values(t3, trb, 2, 0, "batched trace");
  d2r_release(vec), d2r_release(vb), d2r_release(rect), d2r_release(m);
}

Test(linalg, spd_check) {
  double rc = -1;
  d2r_tensor *i3 = d2r_eye(3);
  cr_expect_eq(d2r_spd_check(i3, &rc), 1);
  cr_expect(fabs(rc - 1) < 1e-12, "rcond(I) = %g", rc);
  double dv[4] = {1, 0, 0, 1e-4};
  d2r_tensor *d = d2r_matrix(2, 2, dv);
  cr_expect_eq(d2r_spd_check(d, &rc), 1);
  cr_expect(fabs(rc - 1e-4) < 1e-12, "rcond(diag(1, 1e-4)) = %g", rc);
  double bad[4] = {1, 2, 2, 1};
  d2r_tensor *b = d2r_matrix(2, 2, bad);
  cr_expect_eq(d2r_spd_check(b, &rc), 0);
  cr_expect_eq(rc, 0);
  cr_expect(strstr(d2r_error(), "order 2"), "reason: %s", d2r_error());
  double nanv[4] = {1, NAN, NAN, 1};
  d2r_tensor *nn = d2r_matrix(2, 2, nanv);
  cr_expect_eq(d2r_spd_check(nn, NULL), 0);
  cr_expect(strstr(d2r_error(), "non-finite"), "reason: %s", d2r_error());
  d2r_tensor *ab = spd(19, 3, 4);
  cr_expect_eq(d2r_spd_check(ab, &rc), 1);
  cr_expect(rc > 0 && rc <= 1, "batched rcond %g", rc);
  d2r_tensor *rect = d2r_zeros(2, (int64_t[]){2, 3});
  cr_expect_eq(d2r_spd_check(rect, &rc), -1);
  cr_expect_eq(d2r_spd_check(NULL, &rc), -1);
  d2r_release(i3), d2r_release(d), d2r_release(b), d2r_release(nn);
  d2r_release(ab), d2r_release(rect);
}

/* ---- closed-form gradients ----------------------------------------------- */

/* d logdet(A) / dA = A^-1 for symmetric A (logdet_spd, through cholesky)
 * and A^-T in general (slogdet); d trace(A) / dA = I. */
Test(linalg, closed_form_gradients) {
  d2r_tensor *a = spd(20, 0, 4), *g = general(21, 0, 4);
  d2r_set_requires_grad(a, true);
  d2r_set_requires_grad(g, true);
  d2r_tensor *ld = d2r_logdet_spd(a);
  cr_assert_eq(d2r_backward(ld), 0, "%s", d2r_error());
  d2r_tensor *ga = d2r_grad(a), *ia = d2r_inverse(a);
  expect_close(ga, ia, TOL, "grad logdet_spd = A^-1");
  d2r_tensor *sl = d2r_slogdet(g, NULL);
  cr_assert_eq(d2r_backward(sl), 0, "%s", d2r_error());
  d2r_tensor *gg = d2r_grad(g), *ig = d2r_inverse(g);
  d2r_tensor *igt = d2r_transpose(ig, 0, 1);
  expect_close(gg, igt, TOL, "grad slogdet = A^-T");
  d2r_zero_grad(g);
  d2r_tensor *tr = d2r_trace(g), *i4 = d2r_eye(4);
  cr_assert_eq(d2r_backward(tr), 0, "%s", d2r_error());
  expect_close(d2r_grad(g), i4, 0, "grad trace = I");
  cr_expect_str_eq(d2r_op_name(ld), "muls");
  cr_expect_str_eq(d2r_op_name(sl), "slogdet");
  d2r_release(a), d2r_release(g), d2r_release(ld), d2r_release(ia);
  d2r_release(sl), d2r_release(ig), d2r_release(igt), d2r_release(tr);
  d2r_release(i4);
}

Test(linalg, records_only_when_asked) {
  d2r_tensor *a = spd(22, 0, 3);
  d2r_tensor *l = d2r_cholesky(a);
  cr_expect_null(d2r_op_name(l), "no input requires a gradient");
  d2r_set_requires_grad(a, true);
  d2r_tensor *l2 = d2r_cholesky(a), *y = d2r_inverse(a);
  d2r_tensor *x = d2r_solve(a, l), *t = d2r_tri_solve(l, a, true, false);
  cr_expect_str_eq(d2r_op_name(l2), "cholesky");
  cr_expect_str_eq(d2r_op_name(y), "inverse");
  cr_expect_str_eq(d2r_op_name(x), "solve");
  cr_expect_eq(d2r_requires_grad(t), true);
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *l3 = d2r_cholesky(a);
  cr_expect_null(d2r_op_name(l3), "recording disabled");
  d2r_set_grad_enabled(was);
  d2r_release(a), d2r_release(l), d2r_release(l2), d2r_release(y);
  d2r_release(x), d2r_release(t), d2r_release(l3);
}

/* ---- errors -------------------------------------------------------------- */

Test(linalg, errors_not_square) {
  d2r_tensor *r = d2r_zeros(2, (int64_t[]){2, 3});
  d2r_tensor *v = d2r_zeros(1, (int64_t[]){3});
  d2r_tensor *b = d2r_zeros(1, (int64_t[]){2});
  expect_fail(d2r_cholesky(r), "cholesky", "cholesky:", "square", "[2, 3]",
              NULL);
  expect_fail(d2r_cholesky(v), "cholesky 1-d", "square", NULL);
  expect_fail(d2r_tri_solve(r, b, true, false), "tri_solve", "square", NULL);
  expect_fail(d2r_cholesky_solve(r, b), "cholesky_solve", "square", NULL);
  expect_fail(d2r_solve(r, b), "solve", "solve:", "square", NULL);
  expect_fail(d2r_inverse(r), "inverse", "inverse:", "square", NULL);
  expect_fail(d2r_logdet_spd(r), "logdet_spd", "logdet_spd:", NULL);
  expect_fail(d2r_logdet(r), "logdet", "logdet:", "square", NULL);
  expect_fail(d2r_slogdet(r, NULL), "slogdet", "slogdet:", NULL);
  expect_fail(d2r_sym(r), "sym", "sym:", "square", NULL);
  expect_fail(d2r_diag_part(v), "diag_part", "diag_part:", NULL);
  expect_fail(d2r_tril(v, 0), "tril", "tril:", NULL);
  expect_fail(d2r_triu(v, 0), "triu", "triu:", NULL);
  expect_fail(d2r_trace(v), "trace", "diag_part:", NULL);
  d2r_tensor *s = d2r_scalar(1);
  expect_fail(d2r_diag(s), "diag", "diag:", NULL);
  d2r_release(r), d2r_release(v), d2r_release(b), d2r_release(s);
}

Test(linalg, errors_right_hand_side) {
  d2r_tensor *a = spd(23, 0, 3), *ab = spd(24, 2, 3);
  d2r_tensor *b4 = d2r_zeros(1, (int64_t[]){4});
  d2r_tensor *b42 = d2r_zeros(2, (int64_t[]){4, 2});
  d2r_tensor *bb = d2r_zeros(3, (int64_t[]){3, 3, 1});
  d2r_tensor *b4d = d2r_zeros(4, (int64_t[]){2, 3, 1, 1});
  expect_fail(d2r_solve(a, b4), "solve", "right-hand side [4]", "[3, 3]",
              NULL);
  expect_fail(d2r_tri_solve(a, b42, true, true), "tri_solve",
              "right-hand side", NULL);
  expect_fail(d2r_cholesky_solve(ab, bb), "batch", "right-hand side",
              NULL);
  expect_fail(d2r_solve(ab, b4d), "ndim", "right-hand side", NULL);
  d2r_release(a), d2r_release(ab), d2r_release(b4), d2r_release(b42);
  d2r_release(bb), d2r_release(b4d);
}

Test(linalg, errors_not_positive_definite) {
  double two[4] = {1, 2, 2, 1}, one[4] = {-1, 0, 0, 1};
  d2r_tensor *a = d2r_matrix(2, 2, two), *b = d2r_matrix(2, 2, one);
  expect_fail(d2r_cholesky(a), "order 2", "not positive definite",
              "leading minor of order 2", NULL);
  expect_fail(d2r_cholesky(b), "order 1", "leading minor of order 1", NULL);
  expect_fail(d2r_logdet_spd(a), "logdet_spd", "logdet_spd:",
              "not positive definite", NULL);
  /* In a batch, the message names the matrix. */
  d2r_tensor *parts[2] = {d2r_unsqueeze(b, 0), d2r_unsqueeze(a, 0)};
  d2r_tensor *i2 = d2r_eye(2), *e = d2r_unsqueeze(i2, 0);
  d2r_tensor *three[3] = {e, parts[1], parts[0]};
  d2r_tensor *batch = d2r_cat(3, three, 0);
  expect_fail(d2r_cholesky(batch), "batch", "matrix 2 of the batch",
              "order 2", NULL);
  d2r_release(a), d2r_release(b), d2r_release(parts[0]);
  d2r_release(parts[1]), d2r_release(i2), d2r_release(e);
  d2r_release(batch);
}

Test(linalg, errors_non_finite) {
  double nanv[4] = {1, 0, 0, NAN}, infv[4] = {1, INFINITY, 0, 1};
  d2r_tensor *a = d2r_matrix(2, 2, nanv), *b = d2r_matrix(2, 2, infv);
  d2r_tensor *r = d2r_ones(1, (int64_t[]){2});
  expect_fail(d2r_cholesky(a), "cholesky nan", "non-finite",
              "row 2, column 2", NULL);
  expect_fail(d2r_solve(b, r), "solve inf", "non-finite", "row 1, column 2",
              NULL);
  expect_fail(d2r_inverse(a), "inverse nan", "non-finite", NULL);
  expect_fail(d2r_slogdet(b, NULL), "slogdet inf", "non-finite", NULL);
  d2r_release(a), d2r_release(b), d2r_release(r);
}

Test(linalg, errors_singular) {
  double s2[4] = {1, 2, 2, 4}, s3[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  double z[4] = {1, 0, 5, 0};
  d2r_tensor *a = d2r_matrix(2, 2, s2), *b = d2r_matrix(3, 3, s3);
  d2r_tensor *t = d2r_matrix(2, 2, z);
  d2r_tensor *r2 = d2r_ones(1, (int64_t[]){2});
  d2r_tensor *r3 = d2r_ones(1, (int64_t[]){3});
  expect_fail(d2r_solve(a, r2), "solve exact", "solve:", "singular", NULL);
  expect_fail(d2r_solve(b, r3), "solve rank 2", "singular", NULL);
  expect_fail(d2r_inverse(b), "inverse", "inverse:", "singular", NULL);
  expect_fail(d2r_logdet(a), "logdet", "logdet:", "singular", NULL);
  d2r_tensor *sg = (d2r_tensor *)1;
  expect_fail(d2r_slogdet(b, &sg), "slogdet", "singular", NULL);
  cr_expect_null(sg, "no sign on failure");
  expect_fail(d2r_tri_solve(t, r2, true, false), "tri_solve",
              "diagonal entry 2 is zero", NULL);
  expect_fail(d2r_cholesky_solve(t, r2), "cholesky_solve",
              "cholesky_solve:", "singular", NULL);
  d2r_release(a), d2r_release(b), d2r_release(t), d2r_release(r2);
  d2r_release(r3);
}

Test(linalg, null_propagates) {
  d2r_tensor *a = d2r_eye(2);
  d2r_fail("an earlier failure");
  d2r_tensor *sg = (d2r_tensor *)1;
  cr_expect_null(d2r_cholesky(NULL));
  cr_expect_null(d2r_tri_solve(NULL, a, true, false));
  cr_expect_null(d2r_tri_solve(a, NULL, true, false));
  cr_expect_null(d2r_cholesky_solve(NULL, a));
  cr_expect_null(d2r_solve(a, NULL));
  cr_expect_null(d2r_inverse(NULL));
  cr_expect_null(d2r_logdet_spd(NULL));
  cr_expect_null(d2r_logdet(NULL));
  cr_expect_null(d2r_slogdet(NULL, &sg));
  cr_expect_null(sg);
  cr_expect_eq(d2r_spd_check(NULL, NULL), -1);
  cr_expect_null(d2r_diag(NULL));
  cr_expect_null(d2r_diag_part(NULL));
  cr_expect_null(d2r_tril(NULL, 0));
  cr_expect_null(d2r_triu(NULL, 0));
  cr_expect_null(d2r_trace(NULL));
  cr_expect_null(d2r_sym(NULL));
  cr_expect_str_eq(d2r_error(), "an earlier failure");
  d2r_release(a);
}

Test(linalg, empty_matrices) {
  d2r_tensor *a = d2r_zeros(2, (int64_t[]){0, 0});
  d2r_tensor *b = d2r_zeros(2, (int64_t[]){0, 2});
  d2r_tensor *l = d2r_cholesky(a), *x = d2r_solve(a, b);
  cr_expect(l && x, "%s", d2r_error());
  cr_expect_eq(d2r_numel(l), 0);
  cr_expect_eq(d2r_dim(x, 1), 2);
  double zero = 0;
  expect_values(d2r_logdet_spd(a), &zero, 1, 0, "logdet of 0x0");
  d2r_release(a), d2r_release(b), d2r_release(l), d2r_release(x);
}

/* ---- gradient checks ----------------------------------------------------- */

static d2r_tensor *f_chol(d2r_tensor **x) { return d2r_cholesky(x[0]); }
static d2r_tensor *f_tri_ln(d2r_tensor **x) {
  return d2r_tri_solve(x[0], x[1], true, false);
}
static d2r_tensor *f_tri_lt(d2r_tensor **x) {
  return d2r_tri_solve(x[0], x[1], true, true);
}
static d2r_tensor *f_tri_un(d2r_tensor **x) {
  return d2r_tri_solve(x[0], x[1], false, false);
}
static d2r_tensor *f_tri_ut(d2r_tensor **x) {
  return d2r_tri_solve(x[0], x[1], false, true);
}
static d2r_tensor *f_chol_solve(d2r_tensor **x) {
  return d2r_cholesky_solve(x[0], x[1]);
}
static d2r_tensor *f_solve(d2r_tensor **x) { return d2r_solve(x[0], x[1]); }
static d2r_tensor *f_inverse(d2r_tensor **x) { return d2r_inverse(x[0]); }
static d2r_tensor *f_logdet_spd(d2r_tensor **x) {
  return d2r_logdet_spd(x[0]);
}
static d2r_tensor *f_logdet(d2r_tensor **x) { return d2r_logdet(x[0]); }
static d2r_tensor *f_slogdet(d2r_tensor **x) {
  return d2r_slogdet(x[0], NULL);
}

/* Linear helpers are squared afterwards, so that their backward rules
 * also appear inside a second derivative. */
#define SQUARED(name, call)                        \
  static d2r_tensor *name(d2r_tensor **x) {        \
    d2r_tensor *y = (call), *out = d2r_square(y); \
    d2r_release(y);                                \
    return out;                                    \
  }
SQUARED(f_diag, d2r_diag(x[0]))
SQUARED(f_diag_part, d2r_diag_part(x[0]))
SQUARED(f_tril, d2r_tril(x[0], 0))
SQUARED(f_tril_strict, d2r_tril(x[0], -1))
SQUARED(f_triu, d2r_triu(x[0], 1))
SQUARED(f_trace, d2r_trace(x[0]))
SQUARED(f_sym, d2r_sym(x[0]))

static void check(const char *name, op_fn f, int nin, d2r_tensor **in) {
  for (int i = 0; i < nin; i++)
    cr_assert(in[i], "%s: fixture failed: %s", name, d2r_error());
  gradcheck(name, f, nin, in, 1e-6);
  for (int i = 0; i < nin; i++) d2r_release(in[i]);
}

static const int64_t S32[2] = {3, 2}, S232[3] = {2, 3, 2}, S23[2] = {2, 3};
static const int64_t S3[1] = {3};

Test(linalg_grad, cholesky) {
  check("cholesky", f_chol, 1, (d2r_tensor *[]){spd(30, 0, 4)});
  check("cholesky batched", f_chol, 1, (d2r_tensor *[]){spd(31, 2, 3)});
}

Test(linalg_grad, tri_solve) {
  op_fn fs[4] = {f_tri_ln, f_tri_lt, f_tri_un, f_tri_ut};
  const char *names[4] = {"tri_solve L", "tri_solve L^T", "tri_solve U",
                          "tri_solve U^T"};
  for (int c = 0; c < 4; c++) {
    /* The triangle that is read is a Cholesky factor (or its transpose);
     * the other holds values that must not matter. */
    d2r_tensor *l = lower_factor(32, 0, 3);
    d2r_tensor *t = c < 2 ? d2r_retain(l)
                          : leaf(d2r_transpose(l, 0, 1));
    d2r_tensor *junk = randt(33, 2, (int64_t[]){3, 3}, -1, 1);
    d2r_tensor *other = c < 2 ? d2r_triu(junk, 1) : d2r_tril(junk, -1);
    d2r_tensor *full = leaf(d2r_add(t, other));
    check(names[c], fs[c], 2,
          (d2r_tensor *[]){full, randt(34, 2, S32, -1, 1)});
    d2r_release(l), d2r_release(t), d2r_release(junk), d2r_release(other);
  }
  check("tri_solve vector", f_tri_lt, 2,
        (d2r_tensor *[]){lower_factor(35, 0, 3), randt(36, 1, S3, -1, 1)});
  check("tri_solve batched", f_tri_ln, 2,
        (d2r_tensor *[]){lower_factor(37, 2, 3),
                         randt(38, 3, S232, -1, 1)});
}

Test(linalg_grad, cholesky_solve) {
  check("cholesky_solve", f_chol_solve, 2,
        (d2r_tensor *[]){lower_factor(40, 0, 3), randt(41, 2, S32, -1, 1)});
  check("cholesky_solve batched vector", f_chol_solve, 2,
        (d2r_tensor *[]){lower_factor(42, 2, 3), randt(43, 2, S23, -1, 1)});
}

Test(linalg_grad, solve_and_inverse) {
  check("solve", f_solve, 2,
        (d2r_tensor *[]){general(50, 0, 3), randt(51, 2, S32, -1, 1)});
  check("solve vector", f_solve, 2,
        (d2r_tensor *[]){general(52, 0, 3), randt(53, 1, S3, -1, 1)});
  check("solve batched", f_solve, 2,
        (d2r_tensor *[]){general(54, 2, 3), randt(55, 3, S232, -1, 1)});
  check("inverse", f_inverse, 1, (d2r_tensor *[]){general(56, 0, 3)});
  check("inverse batched", f_inverse, 1, (d2r_tensor *[]){general(57, 2, 3)});
}

Test(linalg_grad, determinants) {
  check("logdet_spd", f_logdet_spd, 1, (d2r_tensor *[]){spd(60, 0, 4)});
  check("logdet_spd batched", f_logdet_spd, 1,
        (d2r_tensor *[]){spd(61, 2, 3)});
  check("logdet", f_logdet, 1, (d2r_tensor *[]){general(62, 0, 4)});
  check("logdet batched", f_logdet, 1, (d2r_tensor *[]){general(63, 2, 3)});
  /* A negative determinant: the rows of a positive one swapped. */
  d2r_tensor *g = general(64, 0, 3);
  double *p = d2r_data(g), row[3];
  memcpy(row, p, sizeof row);
  memcpy(p, p + 3, sizeof row);
  memcpy(p + 3, row, sizeof row);
  check("slogdet negative", f_slogdet, 1, (d2r_tensor *[]){g});
}

Test(linalg_grad, helpers) {
  check("diag", f_diag, 1, (d2r_tensor *[]){randt(70, 1, S3, -1, 1)});
  check("diag batched", f_diag, 1, (d2r_tensor *[]){randt(71, 2, S23, -1, 1)});
  check("diag_part", f_diag_part, 1,
        (d2r_tensor *[]){randt(72, 2, S23, -1, 1)});
  check("tril", f_tril, 1, (d2r_tensor *[]){randt(73, 3, S232, -1, 1)});
  check("tril -1", f_tril_strict, 1,
        (d2r_tensor *[]){randt(74, 2, S32, -1, 1)});
  check("triu 1", f_triu, 1, (d2r_tensor *[]){randt(75, 2, S23, -1, 1)});
  check("trace", f_trace, 1, (d2r_tensor *[]){randt(76, 3, S232, -1, 1)});
  check("sym", f_sym, 1,
        (d2r_tensor *[]){randt(77, 2, (int64_t[]){3, 3}, -1, 1)});
}

/* The negative log-likelihood of y under N(0, A) with A = M M^T + 3 I,
 * up to a constant: (log det A + y^T A^-1 y) / 2, through the Cholesky
 * factor, as a function of M and y. */
static d2r_tensor *f_gauss_nll(d2r_tensor **x) {
  d2r_scope s = D2R_SCOPE_INIT;
#define K(e) d2r_keep(&s, (e))
  d2r_tensor *mt = K(d2r_transpose(x[0], 0, 1));
  d2r_tensor *i3 = K(d2r_muls(K(d2r_eye(3)), 3.0));
  d2r_tensor *a = K(d2r_add(K(d2r_matmul(x[0], mt)), i3));
  d2r_tensor *l = K(d2r_cholesky(a));
  d2r_tensor *ld = K(d2r_muls(K(d2r_sum(K(d2r_log(K(d2r_diag_part(l)))), 0,
                                        false)), 2.0));
  d2r_tensor *z = K(d2r_tri_solve(l, x[1], true, false));
  d2r_tensor *q = K(d2r_sum_all(K(d2r_square(z))));
  d2r_tensor *out = d2r_muls(K(d2r_add(ld, q)), 0.5);
#undef K
  d2r_scope_end(&s);
  return out;
}

Test(linalg_grad, gaussian_likelihood) {
  check("gaussian nll", f_gauss_nll, 2,
        (d2r_tensor *[]){randt(80, 2, (int64_t[]){3, 3}, -1, 1),
                         randt(81, 1, S3, -1, 1)});
}

/* Down to one BLAS thread (which also stops OpenBLAS's idle pool) and
 * back up: products are still right, to rounding, with either count. */
Test(linalg, blas_threads_down_and_up) {
  d2r_rng *r = d2r_rng_new(4);
  int64_t sa[2] = {300, 200}, sb[2] = {200, 250};
  d2r_tensor *a = d2r_rand_normal(r, 2, sa, 0, 1);
  d2r_tensor *b = d2r_rand_normal(r, 2, sb, 0, 1);
  int before = d2r_blas_threads(0);
  d2r_tensor *c0 = d2r_matmul(a, b);
  cr_expect_eq(d2r_blas_threads(1), 1);
  d2r_tensor *c1 = d2r_matmul(a, b);
  d2r_blas_threads(2);
  d2r_tensor *c2 = d2r_matmul(a, b);
  d2r_blas_threads(before);
  double worst = 0;
  for (int64_t i = 0; i < d2r_numel(c0); i++) {
    worst = fmax(worst, fabs(d2r_data(c1)[i] - d2r_data(c0)[i]));
    worst = fmax(worst, fabs(d2r_data(c2)[i] - d2r_data(c0)[i]));
  }
  cr_expect(worst < 1e-10, "largest difference %g", worst);
  d2r_release(a), d2r_release(b), d2r_release(c0), d2r_release(c1);
  d2r_release(c2);
  d2r_rng_free(r);
}

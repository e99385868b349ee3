/*
 * Tensor semantics: creation, views sharing storage, broadcasting edge
 * cases, reductions against hand-computed values, matmul against a naive
 * product, indexing, autodiff bookkeeping and the error paths.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "d2r/tensor.h"

#define EPS 1e-12

static void expect_values(d2r_tensor *t, const double *want, int64_t n) {
  cr_assert(t, "null tensor: %s", d2r_error());
  cr_assert_eq(d2r_numel(t), n, "numel %lld, want %lld",
               (long long)d2r_numel(t), (long long)n);
  d2r_tensor *c = d2r_contiguous(t);
  for (int64_t i = 0; i < n; i++)
    cr_expect(fabs(d2r_data(c)[i] - want[i]) < 1e-10,
              "element %lld: %.12g, want %.12g", (long long)i,
              d2r_data(c)[i], want[i]);
  d2r_release(c);
}

static void expect_shape(d2r_tensor *t, int nd, const int64_t *sh) {
  cr_assert(t, "null tensor: %s", d2r_error());
  cr_assert_eq(d2r_ndim(t), nd);
  for (int i = 0; i < nd; i++) cr_expect_eq(d2r_shape(t)[i], sh[i]);
}

Test(tensor, creation) {
  int64_t sh[2] = {2, 3};
  d2r_tensor *z = d2r_zeros(2, sh), *o = d2r_ones(2, sh);
  d2r_tensor *f = d2r_full(2, sh, 2.5), *e = d2r_eye(3);
  double zw[6] = {0}, ow[6] = {1, 1, 1, 1, 1, 1};
  double fw[6] = {2.5, 2.5, 2.5, 2.5, 2.5, 2.5};
  double ew[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  expect_values(z, zw, 6);
  expect_values(o, ow, 6);
  expect_values(f, fw, 6);
  expect_values(e, ew, 9);
  d2r_tensor *a = d2r_arange(0, 1, 0.25);
  double aw[4] = {0, 0.25, 0.5, 0.75};
  expect_values(a, aw, 4);
  d2r_tensor *s = d2r_scalar(3);
  cr_expect_eq(d2r_ndim(s), 0);
  cr_expect_eq(d2r_item(s), 3);
  d2r_release(z), d2r_release(o), d2r_release(f), d2r_release(e);
  d2r_release(a), d2r_release(s);
}

Test(tensor, bad_shapes_are_errors) {
  int64_t neg[2] = {2, -1}, big[7] = {1, 1, 1, 1, 1, 1, 1};
  cr_expect_null(d2r_zeros(2, neg));
  cr_expect(strstr(d2r_error(), "negative size"), "%s", d2r_error());
  cr_expect_null(d2r_zeros(7, big));
  cr_expect(strstr(d2r_error(), "dimensions"), "%s", d2r_error());
  int64_t huge[2] = {INT64_C(1) << 40, INT64_C(1) << 40};
  cr_expect_null(d2r_zeros(2, huge));
  cr_expect_null(d2r_arange(0, 1, 0));
  /* A NULL input propagates without replacing the first message. */
  d2r_fail("first failure");
  cr_expect_null(d2r_exp(NULL));
  cr_expect_str_eq(d2r_error(), "first failure");
}

Test(tensor, views_share_storage) {
  double v[6] = {1, 2, 3, 4, 5, 6};
  d2r_tensor *m = d2r_matrix(2, 3, v);
  d2r_tensor *t = d2r_transpose(m, 0, 1);
  int64_t tsh[2] = {3, 2};
  expect_shape(t, 2, tsh);
  cr_expect(!d2r_is_contiguous(t));
  double tw[6] = {1, 4, 2, 5, 3, 6};
  expect_values(t, tw, 6);
  int64_t idx[2] = {0, 1};
  d2r_set_at(t, idx, 40);       /* t[0][1] is m[1][0] */
  double got;
  int64_t midx[2] = {1, 0};
  d2r_at(m, midx, &got);
  cr_expect_eq(got, 40);
  d2r_tensor *sl = d2r_slice(m, 1, 0, 3, 2);
  double sw[4] = {1, 3, 40, 6};
  expect_values(sl, sw, 4);
  int64_t rs[1] = {-1};
  d2r_tensor *flat = d2r_reshape(t, 1, rs);   /* copies a strided view */
  double fw[6] = {1, 40, 2, 5, 3, 6};
  expect_values(flat, fw, 6);
  d2r_tensor *neg = d2r_slice(m, 1, -2, 3, 1);
  double nw[4] = {2, 3, 5, 6};
  expect_values(neg, nw, 4);
  cr_expect_eq(d2r_at(m, (int64_t[]){2, 0}, &got), -1);
  cr_expect(strstr(d2r_error(), "out of range"), "%s", d2r_error());
  d2r_release(m), d2r_release(t), d2r_release(sl), d2r_release(flat);
  d2r_release(neg);
}

Test(tensor, broadcasting) {
  double a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {10, 20, 30}, c[2] = {100, 200};
  d2r_tensor *A = d2r_matrix(2, 3, a), *B = d2r_vector(3, b);
  d2r_tensor *C = d2r_matrix(2, 1, c);
  d2r_tensor *ab = d2r_add(A, B), *ac = d2r_add(A, C);
  double abw[6] = {11, 22, 33, 14, 25, 36};
  double acw[6] = {101, 102, 103, 204, 205, 206};
  expect_values(ab, abw, 6);
  expect_values(ac, acw, 6);
  /* [2,1] with [3] gives [2,3]. */
  d2r_tensor *cb = d2r_mul(C, B);
  double cbw[6] = {1000, 2000, 3000, 2000, 4000, 6000};
  expect_values(cb, cbw, 6);
  /* 0-d with anything. */
  d2r_tensor *s = d2r_scalar(2), *as = d2r_sub(s, A);
  double asw[6] = {1, 0, -1, -2, -3, -4};
  expect_values(as, asw, 6);
  /* A zero-size dimension broadcasts to zero. */
  int64_t e0[2] = {0, 3};
  d2r_tensor *E = d2r_zeros(2, e0), *eb = d2r_add(E, B);
  expect_shape(eb, 2, e0);
  /* Mismatch names both shapes. */
  double d4[4] = {1, 2, 3, 4};
  d2r_tensor *D = d2r_vector(4, d4);
  cr_expect_null(d2r_add(A, D));
  cr_expect(strstr(d2r_error(), "[2, 3]") && strstr(d2r_error(), "[4]"),
            "%s", d2r_error());
  d2r_release(A), d2r_release(B), d2r_release(C), d2r_release(ab);
  d2r_release(ac), d2r_release(cb), d2r_release(s), d2r_release(as);
  d2r_release(E), d2r_release(eb), d2r_release(D);
}

Test(tensor, elementwise_values) {
  double x[4] = {-2, -0.5, 0.5, 3};
  d2r_tensor *X = d2r_vector(4, x);
  d2r_tensor *r = d2r_relu(X), *sp = d2r_softplus(X), *sg = d2r_sigmoid(X);
  d2r_tensor *cl = d2r_clamp(X, -1, 1), *ab = d2r_abs(X);
  double rw[4] = {0, 0, 0.5, 3}, clw[4] = {-1, -0.5, 0.5, 1};
  double spw[4], sgw[4], abw[4] = {2, 0.5, 0.5, 3};
  for (int i = 0; i < 4; i++) {
    spw[i] = log(1 + exp(x[i]));
    sgw[i] = 1 / (1 + exp(-x[i]));
  }
  expect_values(r, rw, 4);
  expect_values(sp, spw, 4);
  expect_values(sg, sgw, 4);
  expect_values(cl, clw, 4);
  expect_values(ab, abw, 4);
  /* Stable at extremes. */
  double big[2] = {-800, 800};
  d2r_tensor *Bg = d2r_vector(2, big), *spb = d2r_softplus(Bg);
  d2r_tensor *sgb = d2r_sigmoid(Bg);
  double spbw[2] = {0, 800}, sgbw[2] = {0, 1};
  expect_values(spb, spbw, 2);
  expect_values(sgb, sgbw, 2);
  d2r_tensor *z = d2r_scalar(0);
  d2r_tensor *gt = d2r_gt(X, z), *w = d2r_where(gt, X, z);
  double gtw[4] = {0, 0, 1, 1};
  expect_values(gt, gtw, 4);
  expect_values(w, rw, 4);
  cr_expect_null(d2r_clamp(X, 1, -1));
  d2r_release(X), d2r_release(r), d2r_release(sp), d2r_release(sg);
  d2r_release(cl), d2r_release(ab), d2r_release(Bg), d2r_release(spb);
  d2r_release(sgb), d2r_release(z), d2r_release(gt), d2r_release(w);
}

Test(tensor, reductions) {
  double v[6] = {1, 5, 3, 4, 2, 6};
  d2r_tensor *m = d2r_matrix(2, 3, v);
  d2r_tensor *s0 = d2r_sum(m, 0, false), *s1 = d2r_sum(m, -1, true);
  double s0w[3] = {5, 7, 9}, s1w[2] = {9, 12};
  expect_values(s0, s0w, 3);
  expect_values(s1, s1w, 2);
  int64_t k[2] = {2, 1};
  expect_shape(s1, 2, k);
  d2r_tensor *mx = d2r_max(m, 1, false), *mn = d2r_min(m, 0, false);
  d2r_tensor *am = d2r_argmax(m, 1, false), *me = d2r_mean(m, 1, false);
  double mxw[2] = {5, 6}, mnw[3] = {1, 2, 3}, amw[2] = {1, 2};
  double mew[2] = {3, 4};
  expect_values(mx, mxw, 2);
  expect_values(mn, mnw, 3);
  expect_values(am, amw, 2);
  expect_values(me, mew, 2);
  d2r_tensor *va = d2r_var(m, 1, false, 1), *vp = d2r_var(m, 1, false, 0);
  double vaw[2] = {4, 4}, vpw[2] = {8.0 / 3, 8.0 / 3};
  expect_values(va, vaw, 2);
  expect_values(vp, vpw, 2);
  d2r_tensor *l = d2r_logsumexp(m, 1, false);
  double lw[2] = {log(exp(1) + exp(5) + exp(3)), log(exp(4) + exp(2) +
                                                     exp(6))};
  expect_values(l, lw, 2);
  /* logsumexp is stable for large values. */
  double big[2] = {1000, 1000};
  d2r_tensor *B = d2r_vector(2, big), *lb = d2r_logsumexp(B, 0, false);
  cr_expect(fabs(d2r_item(lb) - (1000 + log(2))) < 1e-9);
  d2r_tensor *all = d2r_sum_all(m);
  cr_expect_eq(d2r_item(all), 21);
  cr_expect_null(d2r_sum(m, 2, false));
  cr_expect(strstr(d2r_error(), "axis 2 out of range"), "%s", d2r_error());
  d2r_release(m), d2r_release(s0), d2r_release(s1), d2r_release(mx);
  d2r_release(mn), d2r_release(am), d2r_release(me), d2r_release(va);
  d2r_release(vp), d2r_release(l), d2r_release(B), d2r_release(lb);
  d2r_release(all);
}

Test(tensor, matmul_against_naive) {
  double a[12], b[8];
  for (int i = 0; i < 12; i++) a[i] = sin(i + 1.0);
  for (int i = 0; i < 8; i++) b[i] = cos(i + 0.5);
  d2r_tensor *A = d2r_matrix(3, 4, a), *B = d2r_matrix(4, 2, b);
  d2r_tensor *C = d2r_matmul(A, B);
  double want[6];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 2; j++) {
      want[i * 2 + j] = 0;
      for (int k = 0; k < 4; k++)
        want[i * 2 + j] += a[i * 4 + k] * b[k * 2 + j];
    }
  expect_values(C, want, 6);
  /* Transposed operands read through BLAS without copies. */
  d2r_tensor *At = d2r_transpose(A, 0, 1), *Bt = d2r_transpose(B, 0, 1);
  d2r_tensor *Ct = d2r_matmul(Bt, At), *CtT = d2r_transpose(Ct, 0, 1);
  expect_values(CtT, want, 6);
  d2r_tensor *bad = d2r_matmul(A, A);
  cr_expect_null(bad);
  cr_expect(strstr(d2r_error(), "[3, 4] and [3, 4]"), "%s", d2r_error());
  d2r_release(A), d2r_release(B), d2r_release(C), d2r_release(At);
  d2r_release(Bt), d2r_release(Ct), d2r_release(CtT);
}

Test(tensor, indexing) {
  double v[6] = {1, 2, 3, 4, 5, 6}, ix[3] = {2, 0, 2}, bad[1] = {3};
  d2r_tensor *m = d2r_matrix(3, 2, v), *idx = d2r_vector(3, ix);
  d2r_tensor *r = d2r_take_rows(m, idx);
  double rw[6] = {5, 6, 1, 2, 5, 6};
  expect_values(r, rw, 6);
  d2r_tensor *bi = d2r_vector(1, bad);
  cr_expect_null(d2r_take_rows(m, bi));
  cr_expect(strstr(d2r_error(), "index 3"), "%s", d2r_error());
  d2r_tensor *oh = d2r_one_hot(idx, 3);
  double ow[9] = {0, 0, 1, 1, 0, 0, 0, 0, 1};
  expect_values(oh, ow, 9);
  d2r_tensor *parts[2] = {m, m}, *c = d2r_cat(2, parts, 1);
  double cw[12] = {1, 2, 1, 2, 3, 4, 3, 4, 5, 6, 5, 6};
  expect_values(c, cw, 12);
  d2r_release(m), d2r_release(idx), d2r_release(r), d2r_release(bi);
  d2r_release(oh), d2r_release(c);
}

Test(autodiff, bookkeeping) {
  double v[3] = {1, 2, 3};
  d2r_tensor *x = d2r_vector(3, v);
  d2r_set_requires_grad(x, true);
  d2r_tensor *y = d2r_square(x), *l = d2r_sum_all(y);
  cr_expect_str_eq(d2r_op_name(y), "square");
  cr_expect_eq(d2r_set_requires_grad(y, true), -1);
  cr_assert_eq(d2r_backward(l), 0, "%s", d2r_error());
  d2r_tensor *g = d2r_grad(x);
  double gw[3] = {2, 4, 6};
  expect_values(g, gw, 3);
  d2r_release(g);
  /* A second backward accumulates. */
  cr_assert_eq(d2r_backward(l), 0);
  g = d2r_grad(x);
  double g2[3] = {4, 8, 12};
  expect_values(g, g2, 3);
  d2r_release(g);
  d2r_zero_grad(x);
  cr_expect_null(d2r_grad(x));
  /* No-grad regions and detach record nothing. */
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *n = d2r_exp(x);
  d2r_set_grad_enabled(was);
  cr_expect(!d2r_requires_grad(n));
  d2r_tensor *dt = d2r_detach(y);
  cr_expect(!d2r_requires_grad(dt));
  cr_expect_eq(d2r_backward(dt), -1);
  d2r_release(x), d2r_release(y), d2r_release(l), d2r_release(n);
  d2r_release(dt);
}

Test(autodiff, hessian_vector_product_exact) {
  /* f(x) = sum(x^3) / 3 + x0 x1: H = diag(2x) + [[0,1],[1,0]]. */
  double v[2] = {1.5, -2}, dv[2] = {0.3, 0.7};
  d2r_tensor *x = d2r_vector(2, v), *d = d2r_vector(2, dv);
  d2r_set_requires_grad(x, true);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *cube = d2r_keep(&s, d2r_muls(d2r_keep(&s, d2r_pows(x, 3)),
                                           1.0 / 3));
  d2r_tensor *x0 = d2r_keep(&s, d2r_slice(x, 0, 0, 1, 1));
  d2r_tensor *x1 = d2r_keep(&s, d2r_slice(x, 0, 1, 2, 1));
  d2r_tensor *f = d2r_keep(&s, d2r_add(d2r_keep(&s, d2r_sum_all(cube)),
                  d2r_keep(&s, d2r_sum_all(d2r_keep(&s, d2r_mul(x0, x1))))));
  d2r_tensor *g;
  cr_assert_eq(d2r_autograd(1, &f, NULL, 1, &x, true, false, &g), 0);
  d2r_keep(&s, g);
  d2r_tensor *gd = d2r_keep(&s, d2r_sum_all(d2r_keep(&s, d2r_mul(g, d))));
  d2r_tensor *hv;
  cr_assert_eq(d2r_autograd(1, &gd, NULL, 1, &x, false, false, &hv), 0);
  double want[2] = {2 * 1.5 * 0.3 + 0.7, 2 * -2 * 0.7 + 0.3};
  expect_values(hv, want, 2);
  /* An input the output does not depend on. */
  double u[1] = {1};
  d2r_tensor *z = d2r_vector(1, u), *gz;
  d2r_set_requires_grad(z, true);
  cr_expect_eq(d2r_autograd(1, &f, NULL, 1, &z, false, false, &gz), -1);
  cr_expect(strstr(d2r_error(), "do not depend"), "%s", d2r_error());
  cr_expect_eq(d2r_autograd(1, &f, NULL, 1, &z, false, true, &gz), 0);
  cr_expect_eq(d2r_item(gz), 0);
  d2r_release(gz), d2r_release(z), d2r_release(hv);
  d2r_scope_end(&s);
  d2r_release(x), d2r_release(d);
}

Test(autodiff, long_chain_frees_without_recursion) {
  /* 200k recorded steps: freeing must not exhaust the stack. */
  double v[1] = {1};
  d2r_tensor *x = d2r_vector(1, v);
  d2r_set_requires_grad(x, true);
  d2r_tensor *y = d2r_retain(x);
  for (int i = 0; i < 200000; i++) {
    d2r_tensor *n = d2r_muls(y, 1.0);
    d2r_release(y);
    y = n;
  }
  cr_assert_eq(d2r_backward(y), 0, "%s", d2r_error());
  d2r_tensor *g = d2r_grad(x);
  cr_expect_eq(d2r_item(g), 1.0);
  d2r_release(g), d2r_release(y), d2r_release(x);
}

Test(autodiff, gradient_pass_prunes_older_tensors) {
  /* A long chain, then a short tail from an intermediate: the gradient
   * with respect to that intermediate must be right whether or not the
   * pass enters the older part (it need not: nothing there depends on
   * the intermediate). */
  double v[1] = {2};
  d2r_tensor *x = d2r_vector(1, v);
  d2r_set_requires_grad(x, true);
  d2r_tensor *y = d2r_retain(x);
  for (int i = 0; i < 100000; i++) {
    d2r_tensor *n = d2r_muls(y, 1.0);
    d2r_release(y);
    y = n;
  }
  d2r_tensor *mid = y;                       /* = x, with a long history */
  d2r_tensor *sq = d2r_square(mid), *f = d2r_sum_all(sq), *g[2];
  d2r_tensor *ins[2] = {mid, x};
  cr_assert_eq(d2r_autograd(1, &f, NULL, 2, ins, false, false, g), 0, "%s",
               d2r_error());
  cr_expect_eq(d2r_item(g[0]), 4.0);         /* d(mid^2)/dmid = 2 mid */
  cr_expect_eq(d2r_item(g[1]), 4.0);         /* and through the chain */
  d2r_release(g[0]), d2r_release(g[1]);
  /* A tensor made after the output cannot be an input of it. */
  d2r_tensor *late = d2r_vector(1, v), *gl;
  d2r_set_requires_grad(late, true);
  cr_expect_eq(d2r_autograd(1, &f, NULL, 1, &late, false, false, &gl), -1);
  cr_expect(strstr(d2r_error(), "do not depend"), "%s", d2r_error());
  d2r_release(late), d2r_release(sq), d2r_release(f), d2r_release(mid);
  d2r_release(x);
}

/*
 * Tests of d2r/nn.h: linear layers and MLPs (values, shapes,
 * initialisation, gradients against finite differences), flat parameter
 * vectors, and the D2RP parameter files (round trip and refusals).
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "d2r/nn.h"

/* ---- helpers ------------------------------------------------------------- */

static void expect_close(d2r_tensor *t, const double *want, int64_t n,
                          double tol) {
  cr_assert_not_null(t, "tensor is NULL: %s", d2r_error());
  cr_assert_eq(d2r_numel(t), n);
  d2r_tensor *c = d2r_contiguous(t);
  const double *v = d2r_data(c);
  for (int64_t i = 0; i < n; i++)
    cr_expect_float_eq(v[i], want[i], tol, "element %lld: %.17g vs %.17g",
                       (long long)i, v[i], want[i]);
  d2r_release(c);
}

static void expect_shape(const d2r_tensor *t, int nd, const int64_t *shape) {
  cr_assert_not_null(t, "tensor is NULL: %s", d2r_error());
  cr_assert_eq(d2r_ndim(t), nd);
  for (int d = 0; d < nd; d++) cr_expect_eq(d2r_shape(t)[d], shape[d]);
}

static double *flat_copy(d2r_model *m) {
  d2r_tensor *f = d2r_params_flatten(d2r_model_nparams(m),
                                     d2r_model_params(m));
  cr_assert_not_null(f, "%s", d2r_error());
  size_t k = (size_t)d2r_numel(f);
  double *out = malloc(k * sizeof *out);
  memcpy(out, d2r_data(f), k * sizeof *out);
  d2r_release(f);
  return out;
}

static d2r_model *small_mlp(uint64_t seed, d2r_activation act) {
  d2r_rng *r = d2r_rng_new(seed);
  int64_t hidden[2] = {5, 4};
  d2r_model *m = d2r_mlp_new(3, 2, hidden, 2, act, r);
  d2r_rng_free(r);
  cr_assert_not_null(m, "%s", d2r_error());
  return m;
}

/* ---- activations and linear layers -------------------------------------- */

Test(nn, activation_names) {
  d2r_activation a;
  cr_assert_eq(d2r_activation_parse("tanh", &a), 0);
  cr_expect_eq(a, D2R_ACT_TANH);
  cr_assert_eq(d2r_activation_parse("none", &a), 0);
  cr_expect_eq(a, D2R_ACT_IDENTITY);
  cr_expect_str_eq(d2r_activation_name(D2R_ACT_SOFTPLUS), "softplus");
  cr_expect_eq(d2r_activation_parse("gelu", &a), -1);
  cr_expect(strstr(d2r_error(), "gelu") != NULL, "%s", d2r_error());
  cr_expect_null(d2r_activation_name((d2r_activation)42));
}

/* x = [[1, 2, 3], [-1, 0, 2]], W = [[1, 0], [2, -1], [0.5, 3]], b = [0.1,
 * -0.2]: row 0 is [1 + 4 + 1.5, -2 + 9] + b = [6.6, 6.8]; row 1 is
 * [-1 + 1, 6] + b = [0.1, 5.8]. */
Test(nn, linear_forward_by_hand) {
  double xv[] = {1, 2, 3, -1, 0, 2}, wv[] = {1, 0, 2, -1, 0.5, 3};
  double bv[] = {0.1, -0.2}, want[] = {6.6, 6.8, 0.1, 5.8};
  d2r_tensor *x = d2r_matrix(2, 3, xv), *w = d2r_matrix(3, 2, wv);
  d2r_tensor *b = d2r_vector(2, bv);
  d2r_tensor *y = d2r_linear_forward(x, w, b);
  int64_t shape[2] = {2, 2};
  expect_shape(y, 2, shape);
  expect_close(y, want, 4, 1e-12);
  d2r_tensor *y0 = d2r_linear_forward(x, w, NULL);
  double want0[] = {6.5, 7.0, 0.0, 6.0};
  expect_close(y0, want0, 4, 1e-12);
  d2r_release(y0);
  d2r_release(y);
  d2r_release(x);
  d2r_release(w);
  d2r_release(b);
}

Test(nn, linear_leading_dims) {
  double xv[] = {1, 2, 3, -1, 0, 2, 1, 2, 3, -1, 0, 2};
  double wv[] = {1, 0, 2, -1, 0.5, 3}, bv[] = {0.1, -0.2};
  double want[] = {6.6, 6.8, 0.1, 5.8, 6.6, 6.8, 0.1, 5.8};
  int64_t xs[3] = {2, 2, 3}, ys[3] = {2, 2, 2};
  d2r_tensor *x = d2r_from_data(3, xs, xv), *w = d2r_matrix(3, 2, wv);
  d2r_tensor *b = d2r_vector(2, bv);
  d2r_tensor *y = d2r_linear_forward(x, w, b);
  expect_shape(y, 3, ys);
  expect_close(y, want, 8, 1e-12);
  d2r_tensor *x1 = d2r_vector(3, xv);
  d2r_tensor *y1 = d2r_linear_forward(x1, w, b);
  expect_shape(y1, 1, ys + 2);
  expect_close(y1, want, 2, 1e-12);
  d2r_release(y1);
  d2r_release(x1);
  d2r_release(y);
  d2r_release(x);
  d2r_release(w);
  d2r_release(b);
}

Test(nn, linear_shape_errors) {
  d2r_tensor *x = d2r_zeros(2, (int64_t[]){4, 2});
  d2r_tensor *w = d2r_zeros(2, (int64_t[]){3, 2});
  d2r_tensor *b = d2r_zeros(1, (int64_t[]){3});
  cr_expect_null(d2r_linear_forward(x, w, NULL));
  cr_expect(strstr(d2r_error(), "[4, 2]") != NULL, "%s", d2r_error());
  d2r_tensor *x3 = d2r_zeros(2, (int64_t[]){4, 3});
  cr_expect_null(d2r_linear_forward(x3, w, b));
  cr_expect(strstr(d2r_error(), "bias") != NULL, "%s", d2r_error());
  cr_expect_null(d2r_linear_forward(NULL, w, b));
  d2r_release(x3);
  d2r_release(x);
  d2r_release(w);
  d2r_release(b);
}

Test(nn, linear_init_bounds_and_seed) {
  d2r_rng *r = d2r_rng_new(7);
  d2r_model *m = d2r_linear_new(16, 64, true, r);
  cr_assert_not_null(m, "%s", d2r_error());
  cr_assert_eq(d2r_model_nparams(m), 2);
  cr_expect_str_eq(d2r_model_kind(m), "linear");
  cr_expect_eq(d2r_model_numel(m), 16 * 64 + 64);
  d2r_tensor *const *ps = d2r_model_params(m);
  expect_shape(ps[0], 2, (int64_t[]){16, 64});
  expect_shape(ps[1], 1, (int64_t[]){64});
  for (int i = 0; i < 2; i++) {
    cr_expect(d2r_requires_grad(ps[i]));
    double lo = INFINITY, hi = -INFINITY, *v = d2r_data(ps[i]);
    for (int64_t j = 0; j < d2r_numel(ps[i]); j++) {
      lo = fmin(lo, v[j]);
      hi = fmax(hi, v[j]);
    }
    /* bound 1 / sqrt(16) = 0.25, and the draws spread over it */
    cr_expect(lo >= -0.25 && hi <= 0.25, "[%g, %g]", lo, hi);
    cr_expect(lo < -0.2 && hi > 0.2, "[%g, %g]", lo, hi);
  }
  d2r_rng_seed(r, 7);
  d2r_model *same = d2r_linear_new(16, 64, true, r);
  d2r_rng_seed(r, 8);
  d2r_model *other = d2r_linear_new(16, 64, true, r);
  double *a = flat_copy(m), *b = flat_copy(same), *c = flat_copy(other);
  size_t bytes = (size_t)d2r_model_numel(m) * sizeof *a;
  cr_expect(memcmp(a, b, bytes) == 0, "same seed, different weights");
  cr_expect(memcmp(a, c, bytes) != 0, "different seeds, same weights");
  free(a);
  free(b);
  free(c);
  d2r_model_release(other);
  d2r_model_release(same);
  d2r_model_release(m);
  d2r_rng_free(r);
}

Test(nn, linear_without_bias) {
  d2r_rng *r = d2r_rng_new(1);
  d2r_model *m = d2r_linear_new(3, 2, false, r);
  cr_assert_eq(d2r_model_nparams(m), 1);
  cr_expect_eq(d2r_mlp_nlayers(m), 1);
  d2r_tensor *x = d2r_ones(2, (int64_t[]){4, 3});
  d2r_tensor *y = d2r_model_forward(m, x);
  expect_shape(y, 2, (int64_t[]){4, 2});
  cr_expect_null(d2r_linear_new(0, 2, true, r));
  cr_expect_null(d2r_linear_new(3, 2, true, NULL));
  d2r_release(y);
  d2r_release(x);
  d2r_model_release(m);
  d2r_rng_free(r);
}

/* ---- MLPs ---------------------------------------------------------------- */

Test(nn, mlp_shapes) {
  d2r_model *m = small_mlp(3, D2R_ACT_RELU);
  cr_expect_str_eq(d2r_model_kind(m), "mlp");
  cr_expect_eq(d2r_mlp_nlayers(m), 3);
  cr_expect_eq(d2r_mlp_activation(m), D2R_ACT_RELU);
  cr_expect_eq(d2r_model_in_features(m), 3);
  cr_expect_eq(d2r_model_out_features(m), 2);
  cr_assert_eq(d2r_model_nparams(m), 6);
  const int64_t shapes[6][2] = {{3, 5}, {5, 0}, {5, 4}, {4, 0}, {4, 2},
                                {2, 0}};
  for (int i = 0; i < 6; i++) {
    int nd = i % 2 == 0 ? 2 : 1;
    expect_shape(d2r_model_params(m)[i], nd, shapes[i]);
  }
  cr_expect_eq(d2r_model_numel(m), 15 + 5 + 20 + 4 + 8 + 2);
  d2r_tensor *x = d2r_ones(2, (int64_t[]){7, 3});
  d2r_tensor *y = d2r_model_forward(m, x);
  expect_shape(y, 2, (int64_t[]){7, 2});
  d2r_tensor *x3 = d2r_ones(3, (int64_t[]){2, 7, 3});
  d2r_tensor *y3 = d2r_model_forward(m, x3);
  expect_shape(y3, 3, (int64_t[]){2, 7, 2});
  d2r_tensor *bad = d2r_ones(2, (int64_t[]){7, 4});
  cr_expect_null(d2r_model_forward(m, bad));
  d2r_release(bad);
  d2r_release(y3);
  d2r_release(x3);
  d2r_release(y);
  d2r_release(x);
  d2r_model_release(m);
}

Test(nn, mlp_bad_arguments) {
  d2r_rng *r = d2r_rng_new(1);
  int64_t h[2] = {4, 0};
  cr_expect_null(d2r_mlp_new(3, 2, h, 2, D2R_ACT_TANH, r));
  cr_expect(strstr(d2r_error(), "hidden size 1") != NULL, "%s",
            d2r_error());
  cr_expect_null(d2r_mlp_new(3, 1, h, 2, (d2r_activation)9, r));
  cr_expect_null(d2r_mlp_new(3, 1, NULL, 2, D2R_ACT_TANH, r));
  d2r_model *lin = d2r_mlp_new(3, 0, NULL, 2, D2R_ACT_TANH, r);
  cr_assert_not_null(lin, "%s", d2r_error());
  cr_expect_eq(d2r_model_nparams(lin), 2);
  d2r_model_release(lin);
  d2r_rng_free(r);
}

static double act_ref(d2r_activation a, double z) {
  switch (a) {
  case D2R_ACT_RELU: return z > 0 ? z : 0;
  case D2R_ACT_TANH: return tanh(z);
  case D2R_ACT_SIGMOID: return 1 / (1 + exp(-z));
  case D2R_ACT_SOFTPLUS: return log1p(exp(z));
  default: return z;
  }
}

/* A one-hidden-layer MLP against the same arithmetic in plain loops. */
static void check_mlp_by_hand(d2r_activation act) {
  d2r_rng *r = d2r_rng_new(11);
  int64_t h = 4;
  d2r_model *m = d2r_mlp_new(3, 1, &h, 2, act, r);
  d2r_tensor *x = d2r_rand_normal(r, 2, (int64_t[]){5, 3}, 0, 2);
  d2r_tensor *y = d2r_model_forward(m, x);
  cr_assert_not_null(y, "%s", d2r_error());
  d2r_tensor *const *p = d2r_model_params(m);
  const double *w0 = d2r_data(p[0]), *b0 = d2r_data(p[1]);
  const double *w1 = d2r_data(p[2]), *b1 = d2r_data(p[3]);
  const double *xv = d2r_data(x);
  double want[10];
  for (int n = 0; n < 5; n++) {
    double hid[4];
    for (int j = 0; j < 4; j++) {
      double z = b0[j];
      for (int i = 0; i < 3; i++) z += xv[3 * n + i] * w0[4 * i + j];
      hid[j] = act_ref(act, z);
    }
    for (int k = 0; k < 2; k++) {
      double z = b1[k];
      for (int j = 0; j < 4; j++) z += hid[j] * w1[2 * j + k];
      want[2 * n + k] = z;  /* no activation after the last layer */
    }
  }
  expect_close(y, want, 10, 1e-12);
  d2r_release(y);
  d2r_release(x);
  d2r_model_release(m);
  d2r_rng_free(r);
}

Test(nn, mlp_activations_by_hand) {
  check_mlp_by_hand(D2R_ACT_IDENTITY);
  check_mlp_by_hand(D2R_ACT_RELU);
  check_mlp_by_hand(D2R_ACT_TANH);
  check_mlp_by_hand(D2R_ACT_SIGMOID);
  check_mlp_by_hand(D2R_ACT_SOFTPLUS);
}

/* mean((mlp(x) - t)^2) as a tensor. */
static d2r_tensor *mse_loss(d2r_model *m, d2r_tensor *x, d2r_tensor *t) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *y = d2r_keep(&s, d2r_model_forward(m, x));
  d2r_tensor *e = d2r_keep(&s, d2r_sub(y, t));
  d2r_tensor *l = d2r_mean_all(d2r_keep(&s, d2r_square(e)));
  d2r_scope_end(&s);
  return l;
}

static double loss_value(d2r_model *m, d2r_tensor *x, d2r_tensor *t) {
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *l = mse_loss(m, x, t);
  d2r_set_grad_enabled(was);
  double v = d2r_item(l);
  d2r_release(l);
  return v;
}

/* Every gradient element against a central difference with step 1e-5:
 * the truncation error is O(h^2) ~ 1e-10 and the rounding error
 * ~ 1e-16 / h ~ 1e-11, so |analytic - numeric| <= 1e-7 (1 + |numeric|)
 * leaves a wide margin. */
static void check_mlp_gradient(d2r_activation act) {
  d2r_model *m = small_mlp(5, act);
  d2r_rng *r = d2r_rng_new(6);
  d2r_tensor *x = d2r_rand_normal(r, 2, (int64_t[]){6, 3}, 0, 1);
  d2r_tensor *t = d2r_rand_normal(r, 2, (int64_t[]){6, 2}, 0, 1);
  d2r_tensor *l = mse_loss(m, x, t);
  cr_assert_eq(d2r_backward(l), 0, "%s", d2r_error());
  d2r_tensor *g = d2r_params_grad_flat(d2r_model_nparams(m),
                                       d2r_model_params(m));
  cr_assert_not_null(g, "%s", d2r_error());
  const double *gv = d2r_data(g), h = 1e-5;
  int64_t k = 0;
  for (int i = 0; i < d2r_model_nparams(m); i++) {
    double *p = d2r_data(d2r_model_params(m)[i]);
    for (int64_t j = 0; j < d2r_numel(d2r_model_params(m)[i]); j++, k++) {
      double p0 = p[j];
      p[j] = p0 + h;
      double up = loss_value(m, x, t);
      p[j] = p0 - h;
      double down = loss_value(m, x, t);
      p[j] = p0;
      double num = (up - down) / (2 * h);
      cr_expect(fabs(gv[k] - num) <= 1e-7 * (1 + fabs(num)),
                "%s: param %d elem %lld: %.12g vs %.12g",
                d2r_activation_name(act), i, (long long)j, gv[k], num);
    }
  }
  d2r_release(g);
  d2r_release(l);
  d2r_release(t);
  d2r_release(x);
  d2r_rng_free(r);
  d2r_model_release(m);
}

Test(nn, mlp_gradient_finite_differences) {
  check_mlp_gradient(D2R_ACT_TANH);
  check_mlp_gradient(D2R_ACT_SIGMOID);
  check_mlp_gradient(D2R_ACT_SOFTPLUS);
  check_mlp_gradient(D2R_ACT_IDENTITY);
}

Test(nn, model_call_with_other_params) {
  d2r_model *m = small_mlp(2, D2R_ACT_TANH);
  int n = d2r_model_nparams(m);
  d2r_tensor *const *ps = d2r_model_params(m);
  d2r_tensor *alt[6];
  for (int i = 0; i < n; i++) alt[i] = d2r_muls(ps[i], 0.5);
  d2r_tensor *x = d2r_ones(2, (int64_t[]){3, 3});
  d2r_tensor *y = d2r_model_call(m, alt, x);
  cr_assert_not_null(y, "%s", d2r_error());
  cr_expect(d2r_requires_grad(y), "no history through the given params");
  /* the same values as the model after halving its own parameters */
  for (int i = 0; i < n; i++) d2r_scale_(ps[i], 0.5);
  d2r_tensor *y2 = d2r_model_forward(m, x);
  d2r_tensor *yc = d2r_contiguous(y);
  expect_close(y2, d2r_data(yc), 6, 0);
  d2r_release(yc);
  d2r_release(alt[2]);
  alt[2] = d2r_zeros(2, (int64_t[]){4, 5});
  cr_expect_null(d2r_model_call(m, alt, x));
  cr_expect(strstr(d2r_error(), "parameter 2") != NULL, "%s", d2r_error());
  for (int i = 0; i < n; i++) d2r_release(alt[i]);
  d2r_release(y2);
  d2r_release(y);
  d2r_release(x);
  d2r_model_release(m);
}

/* ---- flat vectors -------------------------------------------------------- */

Test(nn, flatten_assign_round_trip) {
  d2r_model *m = small_mlp(9, D2R_ACT_RELU);
  int n = d2r_model_nparams(m);
  d2r_tensor *const *ps = d2r_model_params(m);
  d2r_tensor *f = d2r_params_flatten(n, ps);
  int64_t total = 54;
  expect_shape(f, 1, &total);
  /* order: W0 row-major first, then b0 */
  cr_expect_eq(d2r_data(f)[0], d2r_data(ps[0])[0]);
  cr_expect_eq(d2r_data(f)[15], d2r_data(ps[1])[0]);
  cr_expect_eq(d2r_data(f)[53], d2r_data(ps[5])[1]);
  d2r_tensor *g = d2r_arange(0, 54, 1);
  cr_assert_eq(d2r_params_assign_flat(n, ps, g), 0, "%s", d2r_error());
  cr_expect_eq(d2r_data(ps[2])[0], 20.0);
  d2r_tensor *f2 = d2r_params_flatten(n, ps);
  expect_close(f2, d2r_data(g), 54, 0);
  cr_expect(d2r_requires_grad(ps[0]));
  cr_expect_null(d2r_op_name(ps[0]));
  d2r_tensor *short_v = d2r_zeros(1, (int64_t[]){53});
  cr_expect_eq(d2r_params_assign_flat(n, ps, short_v), -1);
  cr_expect(strstr(d2r_error(), "[54]") != NULL, "%s", d2r_error());
  expect_close(ps[0], d2r_data(g), 15, 0);
  d2r_tensor *gf = d2r_params_grad_flat(n, ps);
  d2r_tensor *z = d2r_zeros(1, &total);
  expect_close(gf, d2r_data(z), 54, 0);
  d2r_release(z);
  d2r_release(gf);
  d2r_release(short_v);
  d2r_release(f2);
  d2r_release(g);
  d2r_release(f);
  d2r_model_release(m);
}

Test(nn, params_cat_carries_history) {
  d2r_model *m = small_mlp(4, D2R_ACT_TANH);
  d2r_tensor *c = d2r_params_cat(d2r_model_nparams(m), d2r_model_params(m));
  cr_assert_not_null(c, "%s", d2r_error());
  cr_expect_eq(d2r_numel(c), 54);
  cr_expect(d2r_requires_grad(c));
  d2r_tensor *s = d2r_sum_all(c);
  cr_assert_eq(d2r_backward(s), 0, "%s", d2r_error());
  d2r_tensor *g = d2r_params_grad_flat(d2r_model_nparams(m),
                                       d2r_model_params(m));
  d2r_tensor *ones = d2r_ones(1, (int64_t[]){54});
  expect_close(g, d2r_data(ones), 54, 0);
  d2r_params_zero_grad(d2r_model_nparams(m), d2r_model_params(m));
  cr_expect_null(d2r_grad(d2r_model_params(m)[0]));
  d2r_release(ones);
  d2r_release(g);
  d2r_release(s);
  d2r_release(c);
  d2r_model_release(m);
}

/* ---- parameter files ----------------------------------------------------- */


Test(nn_io, crc32_check_value) {
  cr_expect_eq(d2r_crc32(0, "123456789", 9), 0xCBF43926u);
  uint32_t part = d2r_crc32(0, "1234", 4);
  cr_expect_eq(d2r_crc32(part, "56789", 5), 0xCBF43926u);
}

Test(nn_io, save_load_round_trip) {
  tmpdir t;
  tmp_open(&t, "params.d2rp");
  d2r_model *a = small_mlp(1, D2R_ACT_TANH), *b = small_mlp(2, D2R_ACT_TANH);
  cr_assert_eq(d2r_model_save(a, t.file), 0, "%s", d2r_error());
  cr_expect_eq(count_entries(t.dir), 1, "temporary file left behind");
  cr_assert_eq(d2r_model_load(b, t.file), 0, "%s", d2r_error());
  double *fa = flat_copy(a), *fb = flat_copy(b);
  cr_expect(memcmp(fa, fb, 54 * sizeof *fa) == 0);
  long size;
  unsigned char *buf = slurp(t.file, &size);
  /* header 24 + records (4 + 8 ndim + 8 numel) + crc 4 */
  cr_expect_eq(size, 24 + 6 * 4 + 8 * 9 + 8 * 54 + 4);
  cr_expect(memcmp(buf, "D2RP", 4) == 0);
  cr_expect_eq(buf[4], 1);
  cr_expect_eq(buf[8], 6);
  cr_expect_eq(buf[16] | buf[17] << 8, size);
  /* overwrite in place: still one file, new content */
  cr_assert_eq(d2r_model_save(b, t.file), 0, "%s", d2r_error());
  cr_expect_eq(count_entries(t.dir), 1);
  free(buf);
  free(fa);
  free(fb);
  d2r_model_release(a);
  d2r_model_release(b);
  tmp_close(&t);
}

Test(nn_io, read_as_tensors) {
  tmpdir t;
  tmp_open(&t, "params.d2rp");
  d2r_tensor *ts[2] = {d2r_scalar(2.5), d2r_arange(0, 6, 1)};
  d2r_tensor *m23 = d2r_reshape(ts[1], 2, (int64_t[]){2, 3});
  d2r_tensor *list[2] = {ts[0], m23};
  cr_assert_eq(d2r_params_save(t.file, 2, list), 0, "%s", d2r_error());
  int count;
  d2r_tensor **got;
  cr_assert_eq(d2r_params_read(t.file, &count, &got), 0, "%s", d2r_error());
  cr_assert_eq(count, 2);
  cr_expect_eq(d2r_ndim(got[0]), 0);
  cr_expect_eq(d2r_item(got[0]), 2.5);
  expect_shape(got[1], 2, (int64_t[]){2, 3});
  expect_close(got[1], d2r_data(ts[1]), 6, 0);
  for (int i = 0; i < count; i++) d2r_release(got[i]);
  free(got);
  d2r_release(m23);
  d2r_release(ts[0]);
  d2r_release(ts[1]);
  tmp_close(&t);
}

/* Saves model a, lets damage() alter the bytes, then checks that loading
 * into model b fails with a message naming the file and containing want,
 * and that b is unchanged. */
static void expect_refused(void (*damage)(unsigned char *, long *),
                           const char *want) {
  tmpdir t;
  tmp_open(&t, "params.d2rp");
  d2r_model *a = small_mlp(1, D2R_ACT_TANH), *b = small_mlp(2, D2R_ACT_TANH);
  cr_assert_eq(d2r_model_save(a, t.file), 0, "%s", d2r_error());
  long size;
  unsigned char *buf = slurp(t.file, &size);
  buf = realloc(buf, (size_t)size + 16);
  damage(buf, &size);
  spit(t.file, buf, size);
  double *before = flat_copy(b);
  cr_expect_eq(d2r_model_load(b, t.file), -1);
  cr_expect(strstr(d2r_error(), t.file) != NULL, "%s", d2r_error());
  cr_expect(strstr(d2r_error(), want) != NULL, "'%s' lacks '%s'",
            d2r_error(), want);
  double *after = flat_copy(b);
  cr_expect(memcmp(before, after, 54 * sizeof *after) == 0,
            "a failed load changed the model");
  free(before);
  free(after);
  free(buf);
  d2r_model_release(a);
  d2r_model_release(b);
  tmp_close(&t);
}

static void cut_tail(unsigned char *buf, long *size) {
  (void)buf;
  *size -= 11;
}

static void cut_header(unsigned char *buf, long *size) {
  (void)buf;
  *size = 10;
}

static void flip_data_byte(unsigned char *buf, long *size) {
  buf[*size / 2] ^= 0x10;
}

static void flip_crc_byte(unsigned char *buf, long *size) {
  buf[*size - 1] ^= 0x01;
}

static void flip_magic(unsigned char *buf, long *size) {
  (void)size;
  buf[1] = 'X';
}

static void bump_version(unsigned char *buf, long *size) {
  (void)size;
  buf[4] = 2;
}

static void append_byte(unsigned char *buf, long *size) {
  buf[(*size)++] = 0;
}

Test(nn_io, refuses_truncated) { expect_refused(cut_tail, "truncated"); }
Test(nn_io, refuses_short) { expect_refused(cut_header, "truncated"); }
Test(nn_io, refuses_flipped_byte) {
  expect_refused(flip_data_byte, "checksum");
}
Test(nn_io, refuses_bad_crc) { expect_refused(flip_crc_byte, "checksum"); }
Test(nn_io, refuses_bad_magic) { expect_refused(flip_magic, "magic"); }
Test(nn_io, refuses_bad_version) { expect_refused(bump_version, "version"); }
Test(nn_io, refuses_extra_bytes) {
  expect_refused(append_byte, "wrong length");
}

Test(nn_io, refuses_wrong_shape_and_count) {
  tmpdir t;
  tmp_open(&t, "params.d2rp");
  d2r_rng *r = d2r_rng_new(3);
  int64_t h5 = 5, h4 = 4;
  d2r_model *a = d2r_mlp_new(3, 1, &h5, 2, D2R_ACT_TANH, r);
  d2r_model *b = d2r_mlp_new(3, 1, &h4, 2, D2R_ACT_TANH, r);
  d2r_model *c = d2r_linear_new(3, 2, false, r);
  cr_assert_eq(d2r_model_save(a, t.file), 0, "%s", d2r_error());
  double *before = flat_copy(b);
  cr_expect_eq(d2r_model_load(b, t.file), -1);
  cr_expect(strstr(d2r_error(), "tensor 0 has shape [3, 5] in the file, "
                                "expected [3, 4]") != NULL,
            "%s", d2r_error());
  double *after = flat_copy(b);
  cr_expect(memcmp(before, after, 26 * sizeof *after) == 0);
  cr_expect_eq(d2r_model_load(c, t.file), -1);
  cr_expect(strstr(d2r_error(), "holds 4 tensors, expected 1") != NULL,
            "%s", d2r_error());
  cr_expect_eq(d2r_model_load(c, "/nonexistent/dir/p.d2rp"), -1);
  cr_expect(strstr(d2r_error(), "cannot open") != NULL, "%s", d2r_error());
  cr_expect_eq(d2r_model_save(c, "/nonexistent/dir/p.d2rp"), -1);
  cr_expect(strstr(d2r_error(), "/nonexistent/dir/p.d2rp") != NULL, "%s",
            d2r_error());
  free(before);
  free(after);
  d2r_model_release(a);
  d2r_model_release(b);
  d2r_model_release(c);
  d2r_rng_free(r);
  tmp_close(&t);
}

/*
 * Tests of the random number generators (rng.h): reproducibility from a
 * seed, GSL's reference stream, moments of uniform and normal draws over
 * 1e5 samples against stated tolerances, permutations, categorical
 * frequencies against their probabilities (a chi-square bound), state
 * round trips and the rejection of bad arguments.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/rng.h"

#define NDRAW 100000

/* Mean and population variance of v[0..n). */
static void moments(const double *v, int64_t n, double *mean, double *var) {
  double s = 0, ss = 0;
  for (int64_t i = 0; i < n; i++)
    s += v[i];
  *mean = s / (double)n;
  for (int64_t i = 0; i < n; i++)
    ss += (v[i] - *mean) * (v[i] - *mean);
  *var = ss / (double)n;
}

Test(rng, same_seed_same_numbers) {
  d2r_rng *a = d2r_rng_new(42), *b = d2r_rng_new(42);
  cr_assert(a && b);
  for (int i = 0; i < 1000; i++) {
    cr_assert_eq(d2r_rng_uniform(a), d2r_rng_uniform(b));
    cr_assert_eq(d2r_rng_normal(a), d2r_rng_normal(b));
    cr_assert_eq(d2r_rng_below(a, 1000), d2r_rng_below(b, 1000));
  }
  d2r_rng_free(a);
  d2r_rng_free(b);
}

Test(rng, different_seeds_differ) {
  d2r_rng *a = d2r_rng_new(1), *b = d2r_rng_new(2);
  /* the high word of a 64-bit seed counts too */
  d2r_rng *c = d2r_rng_new(1 + ((uint64_t)7 << 32));
  double x = d2r_rng_uniform(a);
  cr_assert_neq(x, d2r_rng_uniform(b));
  cr_assert_neq(x, d2r_rng_uniform(c));
  d2r_rng_free(a);
  d2r_rng_free(b);
  d2r_rng_free(c);
}

/* GSL documents 4293858116 as the first output of mt19937 seeded with its
 * default seed 4357, which seed 0 also selects. */
Test(rng, gsl_reference_stream) {
  d2r_rng *r = d2r_rng_new(4357), *z = d2r_rng_new(0);
  double want = 4293858116.0 / 4294967296.0;
  cr_assert_eq(d2r_rng_uniform(r), want);
  cr_assert_eq(d2r_rng_uniform(z), want);
  d2r_rng_free(r);
  d2r_rng_free(z);
}

Test(rng, reseed_and_clone) {
  d2r_rng *r = d2r_rng_new(7);
  double first = d2r_rng_uniform(r);
  d2r_rng_seed(r, 7);
  cr_assert_eq(d2r_rng_uniform(r), first);
  d2r_rng *c = d2r_rng_clone(r);
  cr_assert_not_null(c);
  for (int i = 0; i < 100; i++)
    cr_assert_eq(d2r_rng_normal(r), d2r_rng_normal(c));
  d2r_rng_free(r);
  d2r_rng_free(c);
}

/* Mean within 5 standard errors: sd(U) / sqrt(n) = 0.00091; the variance
 * (1/12) within 0.002, about 8 of its standard errors. */
Test(rng, uniform_moments) {
  d2r_rng *r = d2r_rng_new(2024);
  double *v = malloc(NDRAW * sizeof *v), mean, var;
  for (int i = 0; i < NDRAW; i++) {
    v[i] = d2r_rng_uniform(r);
    cr_assert(v[i] >= 0 && v[i] < 1);
  }
  moments(v, NDRAW, &mean, &var);
  cr_assert_float_eq(mean, 0.5, 0.0046, "mean %g", mean);
  cr_assert_float_eq(var, 1.0 / 12, 0.002, "variance %g", var);
  free(v);
  d2r_rng_free(r);
}

/* Mean within 5 standard errors (0.016), variance within 5 standard
 * errors of sqrt(2 / n) (0.022), and the tail mass beyond 1.96 near 5%. */
Test(rng, normal_moments) {
  d2r_rng *r = d2r_rng_new(99);
  double *v = malloc(NDRAW * sizeof *v), mean, var;
  int tail = 0;
  for (int i = 0; i < NDRAW; i++) {
    v[i] = d2r_rng_normal(r);
    tail += fabs(v[i]) > 1.959964;
  }
  moments(v, NDRAW, &mean, &var);
  cr_assert_float_eq(mean, 0.0, 0.016, "mean %g", mean);
  cr_assert_float_eq(var, 1.0, 0.022, "variance %g", var);
  cr_assert_float_eq(tail / (double)NDRAW, 0.05, 0.0035, "tail %d", tail);
  free(v);
  d2r_rng_free(r);
}

Test(rng, tensors_of_draws) {
  d2r_rng *r = d2r_rng_new(5);
  int64_t shape[2] = {400, 250};
  d2r_tensor *u = d2r_rand_uniform(r, 2, shape, -2.0, 3.0);
  d2r_tensor *g = d2r_rand_normal(r, 2, shape, 10.0, 0.5);
  cr_assert(u && g, "%s", d2r_error());
  cr_assert_eq(d2r_numel(u), NDRAW);
  cr_assert(d2r_is_contiguous(g) && !d2r_requires_grad(g));
  double mean, var, *pu = d2r_data(u);
  for (int i = 0; i < NDRAW; i++)
    cr_assert(pu[i] >= -2.0 && pu[i] < 3.0);
  moments(pu, NDRAW, &mean, &var);
  cr_assert_float_eq(mean, 0.5, 5 * 5 / sqrt(12.0 * NDRAW));
  moments(d2r_data(g), NDRAW, &mean, &var);
  cr_assert_float_eq(mean, 10.0, 5 * 0.5 / sqrt(NDRAW));
  cr_assert_float_eq(sqrt(var), 0.5, 0.005);
  d2r_release(u);
  d2r_release(g);
  d2r_rng_free(r);
}

Test(rng, scalar_tensor_draw) {
  d2r_rng *r = d2r_rng_new(5);
  d2r_tensor *s = d2r_rand_normal(r, 0, NULL, 1.0, 0.0);
  cr_assert_not_null(s, "%s", d2r_error());
  cr_assert_eq(d2r_item(s), 1.0);
  d2r_release(s);
  d2r_rng_free(r);
}

Test(rng, below_stays_in_range) {
  d2r_rng *r = d2r_rng_new(11);
  uint64_t big = ((uint64_t)1 << 40) + 3;
  int hits[7] = {0};
  for (int i = 0; i < 7000; i++)
    hits[d2r_rng_below(r, 7)]++;
  for (int k = 0; k < 7; k++)
    cr_assert(hits[k] > 800 && hits[k] < 1200, "hits[%d] = %d", k, hits[k]);
  int high = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t v = d2r_rng_below(r, big);
    cr_assert_lt(v, big);
    high += v >= ((uint64_t)1 << 39);
  }
  cr_assert(high > 400 && high < 600, "%d of 1000 in the upper half", high);
  cr_assert_eq(d2r_rng_below(r, 1), 0);
  /* the edges of GSL's range (GSL itself would abort at 2^32) */
  for (int i = 0; i < 100; i++) {
    cr_assert_lt(d2r_rng_below(r, 0xffffffffu), 0xffffffffu);
    cr_assert_lt(d2r_rng_below(r, (uint64_t)1 << 32), (uint64_t)1 << 32);
    cr_assert_lt(d2r_rng_below(r, UINT64_MAX), UINT64_MAX);
  }
  d2r_rng_free(r);
}

Test(rng, next_seed_is_reproducible) {
  d2r_rng *a = d2r_rng_new(3), *b = d2r_rng_new(3);
  uint64_t s1 = d2r_rng_next_seed(a), s2 = d2r_rng_next_seed(a);
  cr_assert_neq(s1, s2);
  cr_assert_eq(s1, d2r_rng_next_seed(b));
  cr_assert(s1 >> 32 != 0 || s2 >> 32 != 0, "seeds use all 64 bits");
  d2r_rng_free(a);
  d2r_rng_free(b);
}

Test(rng, permutation_is_a_permutation) {
  d2r_rng *r = d2r_rng_new(8);
  int64_t n = 1000;
  d2r_tensor *p = d2r_rand_permutation(r, n);
  cr_assert_not_null(p, "%s", d2r_error());
  cr_assert_eq(d2r_ndim(p), 1);
  char *seen = calloc((size_t)n, 1);
  int64_t moved = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = d2r_data(p)[i];
    cr_assert(v >= 0 && v < n && v == floor(v));
    cr_assert_eq(seen[(int64_t)v], 0, "%g twice", v);
    seen[(int64_t)v] = 1;
    moved += v != (double)i;
  }
  cr_assert_gt(moved, n / 2);
  free(seen);
  d2r_release(p);
  p = d2r_rand_permutation(r, 1);
  cr_assert_eq(d2r_data(p)[0], 0.0);
  d2r_release(p);
  d2r_rng_free(r);
}

/* Pearson's statistic of counts[0..c) against probabilities p. */
static double chi_square(const int *counts, const double *p, int c, int n) {
  double x2 = 0;
  for (int k = 0; k < c; k++) {
    if (p[k] == 0) {
      cr_assert_eq(counts[k], 0, "class %d has probability 0", k);
      continue;
    }
    double e = n * p[k];
    x2 += (counts[k] - e) * (counts[k] - e) / e;
  }
  return x2;
}

/* Row 2 is not normalised (sum 5): it is divided by its sum.  With 3
 * classes (2 degrees of freedom) P(X2 > 25) is below 4e-6. */
Test(rng, categorical_frequencies) {
  double p[3][4] = {{0.1, 0.2, 0.3, 0.4},
                    {0.5, 0.0, 0.5, 0.0},
                    {2.0, 0.0, 0.5, 2.5}};
  d2r_tensor *probs = d2r_from_data(2, (int64_t[]){3, 4}, &p[0][0]);
  d2r_rng *r = d2r_rng_new(123);
  d2r_tensor *s = d2r_rand_categorical(r, probs, NDRAW);
  cr_assert_not_null(s, "%s", d2r_error());
  cr_assert_eq(d2r_dim(s, 0), 3);
  cr_assert_eq(d2r_dim(s, 1), NDRAW);
  for (int b = 0; b < 3; b++) {
    int counts[4] = {0};
    double q[4], total = p[b][0] + p[b][1] + p[b][2] + p[b][3];
    for (int k = 0; k < 4; k++)
      q[k] = p[b][k] / total;
    for (int j = 0; j < NDRAW; j++)
      counts[(int)d2r_data(s)[b * NDRAW + j]]++;
    double x2 = chi_square(counts, q, 4, NDRAW);
    cr_assert_lt(x2, 25.0, "row %d: chi-square %g", b, x2);
  }
  d2r_release(s);
  d2r_release(probs);
  d2r_rng_free(r);
}

/* A transposed (strided) probability matrix is read through its strides:
 * the storage [1 0; 1 1] viewed transposed has rows (1, 1) and (0, 1). */
Test(rng, categorical_strided_probs) {
  double p[4] = {1.0, 0.0, 1.0, 1.0};
  d2r_tensor *m = d2r_matrix(2, 2, p);
  d2r_tensor *t = d2r_transpose(m, 0, 1);
  d2r_rng *r = d2r_rng_new(1);
  d2r_tensor *s = d2r_rand_categorical(r, t, 200);
  cr_assert_not_null(s, "%s", d2r_error());
  int ones = 0;
  for (int j = 0; j < 200; j++) {
    ones += d2r_data(s)[j] == 1.0;
    cr_assert_eq(d2r_data(s)[200 + j], 1.0);
  }
  cr_assert(ones > 50 && ones < 150, "%d of 200 draws of class 1", ones);
  d2r_release(s);
  d2r_release(t);
  d2r_release(m);
  d2r_rng_free(r);
}

Test(rng, state_round_trip) {
  d2r_rng *r = d2r_rng_new(77), *other = d2r_rng_new(1);
  size_t size = d2r_rng_state_size(r);
  cr_assert_gt(size, 0);
  void *buf = malloc(size);
  d2r_rng_normal(r);
  cr_assert_eq(d2r_rng_get_state(r, buf, size), 0);
  double want[10];
  for (int i = 0; i < 10; i++)
    want[i] = d2r_rng_normal(r);
  cr_assert_eq(d2r_rng_set_state(other, buf, size), 0);
  cr_assert_eq(d2r_rng_set_state(r, buf, size), 0);
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(d2r_rng_normal(r), want[i]);
    cr_assert_eq(d2r_rng_normal(other), want[i]);
  }
  cr_assert_eq(d2r_rng_set_state(r, buf, size - 1), -1);
  cr_assert(strstr(d2r_error(), "bytes"), "%s", d2r_error());
  cr_assert_eq(d2r_rng_get_state(r, buf, size + 1), -1);
  free(buf);
  d2r_rng_free(r);
  d2r_rng_free(other);
}

/* Asserts that a call failed with a message containing `part`. */
#define expect_fail(call, part)                                          \
  do {                                                                   \
    d2r_clear_error();                                                   \
    d2r_tensor *t_ = (call);                                             \
    cr_assert_null(t_, "%s should fail", #call);                         \
    cr_assert(strstr(d2r_error(), part), "message '%s' lacks '%s'",      \
              d2r_error(), part);                                        \
  } while (0)

Test(rng, bad_arguments) {
  d2r_rng *r = d2r_rng_new(1);
  int64_t bad[2] = {3, 0}, good[2] = {2, 3};
  expect_fail(d2r_rand_uniform(NULL, 2, good, 0, 1), "no generator");
  expect_fail(d2r_rand_uniform(r, 2, bad, 0, 1), "dimension 1 has size 0");
  expect_fail(d2r_rand_uniform(r, 7, good, 0, 1), "ndim 7");
  expect_fail(d2r_rand_uniform(r, 2, good, 1, 0), "lo <= hi");
  expect_fail(d2r_rand_uniform(r, 2, good, 0, INFINITY), "finite");
  expect_fail(d2r_rand_normal(r, 2, good, 0, -1), "std >= 0");
  expect_fail(d2r_rand_normal(r, 2, good, NAN, 1), "finite");
  expect_fail(d2r_rand_permutation(r, 0), "n = 0");
  expect_fail(d2r_rand_permutation(r, -5), "n = -5");
  d2r_clear_error();
  cr_assert_eq(d2r_rng_below(r, 0), 0);
  cr_assert(strstr(d2r_error(), "positive"));
  cr_assert(isnan(d2r_rng_uniform(NULL)));
  cr_assert_null(d2r_rng_clone(NULL));
  d2r_rng_free(r);
}

Test(rng, bad_categorical_arguments) {
  d2r_rng *r = d2r_rng_new(1);
  double neg[4] = {0.5, 0.5, -0.1, 1.1}, zero[4] = {0.5, 0.5, 0, 0};
  double nan[4] = {0.5, 0.5, NAN, 1};
  d2r_tensor *pn = d2r_matrix(2, 2, neg), *pz = d2r_matrix(2, 2, zero);
  d2r_tensor *pnan = d2r_matrix(2, 2, nan), *flat = d2r_vector(4, zero);
  expect_fail(d2r_rand_categorical(r, pn, 1), "probs[1][0] = -0.1");
  expect_fail(d2r_rand_categorical(r, pz, 1), "row 1 of probs sums to 0");
  expect_fail(d2r_rand_categorical(r, pnan, 1), "probs[1][0] = nan");
  expect_fail(d2r_rand_categorical(r, flat, 1), "must be 2-d");
  expect_fail(d2r_rand_categorical(r, pz, 0), "draws = 0");
  expect_fail(d2r_rand_categorical(NULL, pz, 1), "no generator");
  /* a NULL tensor keeps the message of the failure that produced it */
  d2r_fail("earlier failure");
  cr_assert_null(d2r_rand_categorical(r, NULL, 1));
  cr_assert_str_eq(d2r_error(), "earlier failure");
  d2r_release(pn);
  d2r_release(pz);
  d2r_release(pnan);
  d2r_release(flat);
  d2r_rng_free(r);
}

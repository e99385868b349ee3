/*
 * Criterion tests of dist.h: categorical and diagonal Gaussian log-
 * densities, entropies and their gradients against closed forms; sample
 * frequencies and moments against the distributions; error paths.
 * Each test states the tolerance it compares with.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"
#include "d2r/dist.h"
#include "d2r/rng.h"
#include "d2r/tensor.h"

/* 2 pi, spelled out: strict C11 has no M_PI. */
#define TWO_PI 6.283185307179586477

/* Temporaries of a test live in its scope `s`. */
#define K(x) d2r_keep(&s, (x))

static d2r_tensor *tensor2(int64_t r, int64_t c, const double *v)
{
  int64_t shape[2] = {r, c};
  return d2r_from_data(2, shape, v);
}

static d2r_tensor *tensor3(int64_t a, int64_t b, int64_t c, const double *v)
{
  int64_t shape[3] = {a, b, c};
  return d2r_from_data(3, shape, v);
}


static void expect_shape(const d2r_tensor *t, int ndim, const int64_t *sh)
{
  cr_assert_not_null(t, "%s", d2r_error());
  cr_assert_eq(d2r_ndim(t), ndim, "ndim %d, want %d", d2r_ndim(t), ndim);
  for (int k = 0; k < ndim; k++)
    cr_assert_eq(d2r_shape(t)[k], sh[k], "dim %d is %lld, want %lld", k,
                 (long long)d2r_shape(t)[k], (long long)sh[k]);
}

/* log softmax of one row by its definition z_c - log sum_k e^z_k. */
static void log_softmax_row(const double *z, int c, double *out)
{
  double sum = 0;
  for (int k = 0; k < c; k++)
    sum += exp(z[k]);
  for (int k = 0; k < c; k++)
    out[k] = z[k] - log(sum);
}

/* Two rows: probabilities (1/6, 1/3, 1/2), and a generic row. */
static const double LOGITS[6] = {0.0, 0.69314718055994531,
                                 1.0986122886681098, 2.0, -1.0, 0.5};

/* ---- categorical ----------------------------------------------------- */

/* log p of chosen classes equals log softmax at those classes; 1e-12. */
Test(dist, categorical_log_prob_closed_form)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double smp[8] = {0, 2, 1, 2, 1, 1, 0, 2};
  d2r_tensor *logits = K(tensor2(2, 3, LOGITS));
  d2r_tensor *samples = K(tensor2(2, 4, smp));
  d2r_tensor *lp = K(d2r_categorical_log_prob(logits, samples));
  double row[2][3], want[8];
  log_softmax_row(LOGITS, 3, row[0]);
  log_softmax_row(LOGITS + 3, 3, row[1]);
  for (int i = 0; i < 8; i++)
    want[i] = row[i / 4][(int)smp[i]];
  int64_t sh[2] = {2, 4};
  expect_shape(lp, 2, sh);
  expect_values(lp, want, 8, 1e-12, "log_prob");
  /* Row 0 by hand: log(1/6), log(1/2), log(1/3), log(1/2). */
  double hand[4] = {log(1.0 / 6), log(0.5), log(1.0 / 3), log(0.5)};
  expect_values(K(d2r_slice(lp, 0, 0, 1, 1)), hand, 4, 1e-12,
                "log_prob row 0");
  d2r_scope_end(&s);
}

/* H = -sum p log p; a uniform row gives log C; probs by hand; 1e-12. */
Test(dist, categorical_entropy_and_probs)
{
  d2r_scope s = D2R_SCOPE_INIT;
  /* A probability that underflows to 0 adds 0 (p log p -> 0), and so
   * does its gradient: logits (1e308, -1e308) have entropy 0. */
  double far[2] = {1e308, -1e308};
  d2r_tensor *zf = K(tensor2(1, 2, far));
  cr_assert_eq(d2r_set_requires_grad(zf, true), 0);
  d2r_tensor *hf = K(d2r_categorical_entropy(zf));
  expect_values(hf, (double[]){0}, 1, 0, "H of a certain row");
  d2r_tensor *gf = NULL;
  cr_assert_eq(d2r_autograd(1, &hf, NULL, 1, &zf, false, false, &gf), 0,
               "%s", d2r_error());
  expect_values(K(gf), (double[]){0, 0}, 2, 0, "dH of a certain row");
  double bad[2] = {0, NAN};
  expect_error(d2r_categorical_entropy(K(tensor2(1, 2, bad))),
               "non-finite");
  double z[6] = {0.0, 0.69314718055994531, 1.0986122886681098, 5, 5, 5};
  d2r_tensor *logits = K(tensor2(2, 3, z));
  double want[2] = {log(6.0) / 6 + log(3.0) / 3 + log(2.0) / 2, log(3.0)};
  expect_values(K(d2r_categorical_entropy(logits)), want, 2, 1e-12, "H");
  double p[6] = {1.0 / 6, 1.0 / 3, 0.5, 1.0 / 3, 1.0 / 3, 1.0 / 3};
  expect_values(K(d2r_categorical_probs(logits)), p, 6, 1e-12, "probs");
  d2r_scope_end(&s);
}

/* d log p_s / dz_j = [j == s] - p_j, summed over the samples of a row;
 * dH / dz_j = -p_j (log p_j + H).  Tolerance 1e-12. */
Test(dist, categorical_gradients)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double smp[6] = {0, 2, 2, 1, 1, 0};
  d2r_tensor *logits = K(tensor2(2, 3, LOGITS));
  cr_assert_eq(d2r_set_requires_grad(logits, true), 0);
  d2r_tensor *samples = K(tensor2(2, 3, smp));
  d2r_tensor *lp = K(d2r_categorical_log_prob(logits, samples));
  d2r_tensor *h = K(d2r_categorical_entropy(logits));
  d2r_tensor *in[1] = {logits}, *g[1];
  d2r_tensor *lps = K(d2r_sum_all(lp)), *hs = K(d2r_sum_all(h));
  cr_assert_eq(d2r_autograd(1, &lps, NULL, 1, in, false, false, g), 0, "%s",
               d2r_error());
  K(g[0]);
  double want[6], lq[3], hw[6];
  for (int b = 0; b < 2; b++) {
    log_softmax_row(LOGITS + 3 * b, 3, lq);
    double ent = 0;
    for (int j = 0; j < 3; j++)
      ent -= exp(lq[j]) * lq[j];
    for (int j = 0; j < 3; j++) {
      double pj = exp(lq[j]);
      want[3 * b + j] = -3 * pj;
      hw[3 * b + j] = -pj * (lq[j] + ent);
      for (int k = 0; k < 3; k++)
        want[3 * b + j] += smp[3 * b + k] == j;
    }
  }
  expect_values(g[0], want, 6, 1e-12, "dlogp/dz");
  cr_assert_eq(d2r_autograd(1, &hs, NULL, 1, in, false, false, g), 0, "%s",
               d2r_error());
  expect_values(K(g[0]), hw, 6, 1e-12, "dH/dz");
  d2r_scope_end(&s);
}

/* Frequencies of 40000 draws per row against the probabilities: binomial
 * standard deviation <= 0.0025, tolerance 0.015 (6 sd).  Draws are
 * integer classes in range and carry no gradient. */
Test(dist, categorical_sample_frequencies)
{
  d2r_scope s = D2R_SCOPE_INIT;
  const int64_t g = 40000;
  double z[6] = {0.0, 0.69314718055994531, 1.0986122886681098,
                 log(0.7), log(0.2), log(0.1)};
  double p[6] = {1.0 / 6, 1.0 / 3, 0.5, 0.7, 0.2, 0.1};
  d2r_rng *rng = d2r_rng_new(1234);
  d2r_tensor *logits = K(tensor2(2, 3, z));
  cr_assert_eq(d2r_set_requires_grad(logits, true), 0);
  d2r_tensor *smp = K(d2r_categorical_sample(rng, logits, g));
  int64_t sh[2] = {2, g};
  expect_shape(smp, 2, sh);
  cr_assert(!d2r_requires_grad(smp), "samples must carry no gradient");
  d2r_tensor *c = K(d2r_contiguous(smp));
  const double *v = d2r_data(c);
  double freq[6] = {0};
  for (int64_t i = 0; i < 2 * g; i++) {
    cr_assert(v[i] == 0 || v[i] == 1 || v[i] == 2, "bad class %g", v[i]);
    freq[3 * (i / g) + (int)v[i]] += 1.0 / (double)g;
  }
  expect_values(K(tensor2(2, 3, freq)), p, 6, 0.015, "frequencies");
  d2r_rng_free(rng);
  d2r_scope_end(&s);
}

/* Class counts of G = 50 draws, over 4000 rows of the same logits: each
 * row sums to 50; the counts' means and covariances match the
 * multinomial's G p_k and G (p_k [k = l] - p_k p_l) (standard error of
 * a mean about 0.05, of a covariance about 0.1: tolerances 0.25 and
 * 0.5); the same seed gives the same counts; errors leave the generator
 * where it was. */
Test(dist, categorical_counts_multinomial)
{
  d2r_scope s = D2R_SCOPE_INIT;
  const int64_t rows = 4000, g = 50;
  double p[3] = {0.7, 0.2, 0.1};
  double *z = malloc(sizeof(double) * 3 * rows);
  cr_assert_not_null(z);
  for (int64_t i = 0; i < rows; i++)
    for (int k = 0; k < 3; k++) z[3 * i + k] = log(p[k]) + 0.25;
  d2r_rng *rng = d2r_rng_new(99), *twin = d2r_rng_new(99);
  d2r_tensor *logits = K(tensor2(rows, 3, z));
  cr_assert_eq(d2r_set_requires_grad(logits, true), 0);
  d2r_tensor *n = K(d2r_categorical_counts(rng, logits, g));
  cr_assert_not_null(n, "%s", d2r_error());
  int64_t sh[2] = {rows, 3};
  expect_shape(n, 2, sh);
  cr_assert(!d2r_requires_grad(n), "counts must carry no gradient");
  const double *v = d2r_data(n);
  double mean[3] = {0}, cov[9] = {0};
  for (int64_t i = 0; i < rows; i++) {
    cr_assert_eq(v[3 * i] + v[3 * i + 1] + v[3 * i + 2], (double)g,
                 "row %lld does not sum to G", (long long)i);
    for (int k = 0; k < 3; k++) mean[k] += v[3 * i + k] / (double)rows;
  }
  for (int64_t i = 0; i < rows; i++)
    for (int k = 0; k < 3; k++)
      for (int l = 0; l < 3; l++)
        cov[3 * k + l] += (v[3 * i + k] - mean[k]) *
                          (v[3 * i + l] - mean[l]) / (double)(rows - 1);
  double want_mean[3], want_cov[9];
  for (int k = 0; k < 3; k++) {
    want_mean[k] = (double)g * p[k];
    for (int l = 0; l < 3; l++)
      want_cov[3 * k + l] = (double)g * ((k == l) * p[k] - p[k] * p[l]);
  }
  expect_values(K(d2r_vector(3, mean)), want_mean, 3, 0.25, "mean counts");
  expect_values(K(tensor2(3, 3, cov)), want_cov, 9, 0.5, "covariance");
  expect_values(K(d2r_categorical_counts(twin, logits, g)), v, 3 * rows, 0,
                "same seed, same counts");
  /* Failures draw nothing: the twins stay in step. */
  expect_error(d2r_categorical_counts(rng, logits, 0), "draws");
  expect_error(d2r_categorical_counts(rng, logits, (int64_t)1 << 40),
               "draws");
  expect_error(d2r_categorical_counts(rng, logits,
                                      D2R_MULTINOMIAL_MAX_DRAWS + 1),
               "draws");
  expect_error(d2r_categorical_counts(NULL, logits, 3), "generator");
  z[4] = NAN;
  expect_error(d2r_categorical_counts(rng, K(tensor2(2, 3, z)), 3),
               "non-finite");
  expect_error(d2r_categorical_counts(rng, K(d2r_vector(3, p)), 3),
               "[B, C]");
  cr_assert_eq(d2r_rng_uniform(rng), d2r_rng_uniform(twin),
               "a failed call moved the generator");
  free(z);
  d2r_rng_free(rng);
  d2r_rng_free(twin);
  d2r_scope_end(&s);
}

/* d2r_rng_multinomial draws the counts of its weights' classes and
 * refuses weights it cannot use. */
Test(dist, rng_multinomial_checks)
{
  d2r_rng *rng = d2r_rng_new(3);
  double out[3] = {-1, -1, -1};
  double w[3] = {0, 2, 0};
  cr_assert_eq(d2r_rng_multinomial(rng, w, 3, 7, out), 0, "%s",
               d2r_error());
  cr_assert(out[0] == 0 && out[1] == 7 && out[2] == 0,
            "all draws fall on the one class with weight: %g %g %g",
            out[0], out[1], out[2]);
  double neg[2] = {1, -0.5}, zero[2] = {0, 0}, inf[2] = {1, INFINITY};
  cr_assert_eq(d2r_rng_multinomial(rng, neg, 2, 3, out), -1);
  cr_assert(strstr(d2r_error(), "non-negative"), "%s", d2r_error());
  cr_assert_eq(d2r_rng_multinomial(rng, zero, 2, 3, out), -1);
  cr_assert(strstr(d2r_error(), "sum to 0"), "%s", d2r_error());
  cr_assert_eq(d2r_rng_multinomial(rng, inf, 2, 3, out), -1);
  cr_assert_eq(d2r_rng_multinomial(rng, w, 0, 3, out), -1);
  cr_assert_eq(d2r_rng_multinomial(rng, w, 3, -1, out), -1);
  cr_assert_eq(d2r_rng_multinomial(NULL, w, 3, 1, out), -1);
  cr_assert_eq(d2r_rng_multinomial(rng, w, 3, 0, out), 0);
  cr_assert(out[0] == 0 && out[1] == 0 && out[2] == 0, "no draws");
  d2r_rng_free(rng);
}

/* The same seed gives the same draws, exactly. */
Test(dist, categorical_sample_reproducible)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_rng *r1 = d2r_rng_new(7), *r2 = d2r_rng_new(7);
  d2r_tensor *logits = K(tensor2(2, 3, LOGITS));
  d2r_tensor *a = K(d2r_categorical_sample(r1, logits, 50));
  d2r_tensor *b = K(d2r_categorical_sample(r2, logits, 50));
  d2r_tensor *ca = K(d2r_contiguous(a));
  expect_values(b, d2r_data(ca), 100, 0.0, "same seed");
  d2r_rng_free(r1);
  d2r_rng_free(r2);
  d2r_scope_end(&s);
}

/* The fused sampler draws exactly what the generic one draws from the
 * softmax probabilities, for 1, 2, 3 and 7 classes and strided logits. */
Test(dist, categorical_sample_matches_rand_categorical)
{
  d2r_scope s = D2R_SCOPE_INIT;
  int64_t classes[4] = {1, 2, 3, 7};
  for (int t = 0; t < 4; t++) {
    int64_t c = classes[t], wide[2] = {5, 2 * c};
    d2r_rng *g = d2r_rng_new(99 + t);
    d2r_tensor *z = K(d2r_rand_normal(g, 2, wide, 0, 2));
    d2r_tensor *logits = K(d2r_slice(z, 1, 0, 2 * c, 2));
    d2r_rng *r1 = d2r_rng_new(5 + t), *r2 = d2r_rng_new(5 + t);
    d2r_tensor *a = K(d2r_categorical_sample(r1, logits, 300));
    d2r_tensor *p = K(d2r_softmax(logits, 1));
    d2r_tensor *b = K(d2r_rand_categorical(r2, p, 300));
    cr_assert_not_null(a, "%s", d2r_error());
    expect_values(a, d2r_data(b), 5 * 300, 0.0, "fused vs generic");
    d2r_rng_free(g), d2r_rng_free(r1), d2r_rng_free(r2);
  }
  d2r_scope_end(&s);
}

/* The fused log-probability against the op chain it replaced
 * (log_softmax, then gather): values and gradients equal bit for bit,
 * plain and built as a graph, for 1, 2, 3 and 7 classes, so seeded runs
 * give the numbers they gave before the fusion. */
Test(dist, categorical_log_prob_matches_chain_exactly)
{
  int64_t classes[4] = {1, 2, 3, 7};
  for (int t = 0; t < 4; t++)
    for (int graph = 0; graph < 2; graph++) {
      d2r_scope s = D2R_SCOPE_INIT;
      int64_t c = classes[t], zs[2] = {4, c}, gs[2] = {4, 11};
      d2r_rng *rng = d2r_rng_new(40 + t);
      d2r_tensor *z = K(d2r_rand_normal(rng, 2, zs, 0, 2));
      cr_assert_eq(d2r_set_requires_grad(z, true), 0);
      d2r_tensor *smp = K(d2r_categorical_sample(rng, z, 11));
      d2r_tensor *w = K(d2r_rand_normal(rng, 2, gs, 0, 1));
      d2r_tensor *a = K(d2r_categorical_log_prob(z, smp));
      d2r_tensor *b = K(d2r_gather(K(d2r_log_softmax(z, 1)), 1, smp));
      d2r_tensor *ga = NULL, *gb = NULL;
      cr_assert_eq(d2r_autograd(1, &a, &w, 1, &z, graph, false, &ga), 0,
                   "%s", d2r_error());
      cr_assert_eq(d2r_autograd(1, &b, &w, 1, &z, graph, false, &gb), 0,
                   "%s", d2r_error());
      K(ga), K(gb);
      expect_values(a, d2r_data(K(d2r_contiguous(b))), 44, 0.0, "values");
      expect_values(K(d2r_contiguous(ga)), d2r_data(K(d2r_contiguous(gb))),
                    4 * c, 0.0, graph ? "graph gradient" : "gradient");
      d2r_rng_free(rng);
      d2r_scope_end(&s);
    }
}

/* Samples changed to a non-class through d2r_data after log_prob (a
 * write the storage versions cannot see): the backward pass reports it
 * instead of writing outside the gradient. */
Test(dist, categorical_log_prob_samples_changed)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double smp[6] = {0, 2, 2, 1, 1, 0};
  d2r_tensor *logits = K(tensor2(2, 3, LOGITS));
  cr_assert_eq(d2r_set_requires_grad(logits, true), 0);
  d2r_tensor *samples = K(tensor2(2, 3, smp));
  d2r_tensor *lp = K(d2r_sum_all(K(d2r_categorical_log_prob(logits,
                                                             samples))));
  d2r_data(samples)[4] = 1e9;
  d2r_tensor *g = NULL;
  cr_assert_neq(d2r_autograd(1, &lp, NULL, 1, &logits, false, false, &g),
                0, "a backward through changed samples must fail");
  cr_expect(strstr(d2r_error(), "1000000000 at element 5") != NULL, "%s",
            d2r_error());
  d2r_scope_end(&s);
}

/* The vectorised index check finds the first culprit wherever it sits
 * (first block, a later block, the tail) and whatever it is: NaN, an
 * infinity, a fraction, a negative, the bound itself, a value beyond
 * 32 bits; -0 is index 0.  Bounds beyond 32 bits are checked too. */
Test(dist, index_check_finds_first_culprit)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double bad[] = {NAN, INFINITY, -INFINITY, 2.5, -1, 7, 4294967296.0,
                  1e300};
  int64_t at[] = {0, 63, 64, 100, 149};
  double v[150];
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
    for (size_t a = 0; a < sizeof at / sizeof at[0]; a++) {
      for (int i = 0; i < 150; i++)
        v[i] = i % 7 == 3 ? -0.0 : (double)(i % 7);
      v[at[a]] = bad[b];
      if (at[a] + 1 < 150)
        v[at[a] + 1] = NAN;  /* a later culprit must not be reported */
      d2r_tensor *t = K(d2r_vector(150, v));
      cr_expect_eq(d2r_check_index(t, 7, "idx"), -1);
      char want[64];
      snprintf(want, sizeof want, "at element %lld ", (long long)at[a] + 1);
      cr_expect(strstr(d2r_error(), want) != NULL, "%s (want %s)",
                d2r_error(), want);
    }
  for (int i = 0; i < 150; i++)
    v[i] = (double)(i % 7);
  cr_expect_eq(d2r_check_index(K(d2r_vector(150, v)), 7, "idx"), 0);
  v[149] = 4294967296.0;
  cr_expect_eq(d2r_check_index(K(d2r_vector(150, v)), 5000000000LL, "idx"),
               0, "%s", d2r_error());
  cr_expect_eq(d2r_check_index(K(d2r_vector(150, v)), 4294967296LL, "idx"),
               -1);
  d2r_scope_end(&s);
}

/* Cases a helper found: the two-class backward must not cancel (a tiny
 * p_0 against a huge weight on class 1: closed form 1 - p_0 (1 + 1e17),
 * 1e-12); with one class the gradient is exactly 0; a failed draw leaves
 * the generator untouched; a draw count beyond any tensor says so. */
Test(dist, categorical_edge_cases)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double z[2] = {-40, 0}, smp[2] = {0, 1}, w[2] = {1, 1e17};
  d2r_tensor *logits = K(tensor2(1, 2, z));
  cr_assert_eq(d2r_set_requires_grad(logits, true), 0);
  d2r_tensor *lp = K(d2r_categorical_log_prob(logits, K(tensor2(1, 2, smp))));
  d2r_tensor *gw = K(tensor2(1, 2, w)), *g = NULL;
  cr_assert_eq(d2r_autograd(1, &lp, &gw, 1, &logits, false, false, &g), 0,
               "%s", d2r_error());
  K(g);
  double p0 = exp(-40) / (1 + exp(-40)), want = 1 - p0 * (1 + 1e17);
  cr_expect(fabs(d2r_data(g)[0] - want) < 1e-12 * fabs(want),
            "class 0: %.17g, want %.17g", d2r_data(g)[0], want);

  double one[3] = {0, 0, 0}, w3[3] = {0.1, 0.2, 0.3}, z1[1] = {0.7};
  d2r_tensor *l1 = K(tensor2(1, 1, z1));
  cr_assert_eq(d2r_set_requires_grad(l1, true), 0);
  d2r_tensor *lp1 = K(d2r_categorical_log_prob(l1, K(tensor2(1, 3, one))));
  d2r_tensor *gw3 = K(tensor2(1, 3, w3));
  cr_assert_eq(d2r_autograd(1, &lp1, &gw3, 1, &l1, false, false, &g), 0,
               "%s", d2r_error());
  cr_expect(d2r_data(K(g))[0] == 0.0, "one class: %.17g", d2r_data(g)[0]);

  d2r_rng *a = d2r_rng_new(1), *b = d2r_rng_new(1);
  double bad[4] = {0, 0, NAN, 0};
  expect_error(d2r_categorical_sample(a, K(tensor2(2, 2, bad)), 5),
               "non-finite");
  cr_expect(d2r_rng_uniform(a) == d2r_rng_uniform(b),
            "a failed draw moved the generator");
  expect_error(d2r_categorical_sample(a, logits, (int64_t)1 << 62),
               "too large");
  d2r_rng_free(a), d2r_rng_free(b);
  d2r_scope_end(&s);
}

/* The row sampler under the categorical draws refuses what it cannot
 * draw from, writing nothing. */
Test(dist, draw_classes_checks)
{
  d2r_rng *rng = d2r_rng_new(3);
  double cum[3] = {0.2, 0.5, 1.0}, zero[2] = {0, 0}, out[4] = {9, 9, 9, 9};
  cr_expect_eq(d2r_rng_draw_classes(rng, cum, 3, 4, out), 0);
  for (int j = 0; j < 4; j++)
    cr_expect(out[j] == 0 || out[j] == 1 || out[j] == 2, "%g", out[j]);
  double keep[4] = {9, 9, 9, 9};
  cr_expect_eq(d2r_rng_draw_classes(rng, cum, 0, 4, keep), -1);
  cr_expect(strstr(d2r_error(), "c = 0") != NULL, "%s", d2r_error());
  cr_expect_eq(d2r_rng_draw_classes(rng, zero, 2, 4, keep), -1);
  cr_expect(strstr(d2r_error(), "sum to 0") != NULL, "%s", d2r_error());
  cr_expect_eq(d2r_rng_draw_classes(NULL, cum, 3, 4, keep), -1);
  cr_expect_eq(d2r_rng_draw_classes(rng, NULL, 3, 4, keep), -1);
  cr_expect_eq(d2r_rng_draw_classes(rng, cum, 3, -1, keep), -1);
  for (int j = 0; j < 4; j++)
    cr_expect(keep[j] == 9, "written on failure");
  d2r_rng_free(rng);
}

/* Draws for no rows are an empty [0, G] tensor. */
Test(dist, categorical_sample_no_rows)
{
  d2r_scope s = D2R_SCOPE_INIT;
  int64_t sh[2] = {0, 3}, want[2] = {0, 4};
  d2r_rng *rng = d2r_rng_new(1);
  expect_shape(K(d2r_categorical_sample(rng, K(d2r_zeros(2, sh)), 4)), 2,
               want);
  d2r_rng_free(rng);
  d2r_scope_end(&s);
}

Test(dist, categorical_errors)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_rng *rng = d2r_rng_new(1);
  d2r_tensor *logits = K(tensor2(2, 3, LOGITS));
  double frac[2] = {0, 1.5}, high[2] = {0, 3}, neg[2] = {-1, 0};
  expect_error(d2r_categorical_log_prob(logits, K(tensor2(2, 1, frac))),
               "samples: class index 1.5 at element 2 is not an integer");
  expect_error(d2r_categorical_log_prob(logits, K(tensor2(2, 1, high))),
               "[0, 3)");
  expect_error(d2r_categorical_log_prob(logits, K(tensor2(2, 1, neg))),
               "samples");
  expect_error(d2r_categorical_log_prob(logits, K(tensor2(1, 2, frac))),
               "[2, G]");
  expect_error(d2r_categorical_log_prob(K(d2r_vector(2, frac)), logits),
               "logits");
  expect_error(d2r_categorical_sample(rng, logits, 0), "draws");
  expect_error(d2r_categorical_sample(NULL, logits, 3), "generator");
  expect_error(d2r_categorical_entropy(K(d2r_vector(2, frac))), "[B, C]");
  double bad[3] = {0, NAN, 1};
  expect_error(d2r_categorical_sample(rng, K(tensor2(1, 3, bad)), 2),
               "non-finite");
  /* A NULL argument is an earlier failure: its message is kept. */
  d2r_fail("earlier failure");
  expect_error(d2r_categorical_log_prob(NULL, logits), "earlier failure");
  expect_error(d2r_categorical_sample(rng, NULL, 2), "earlier failure");
  expect_error(d2r_categorical_entropy(NULL), "earlier failure");
  d2r_rng_free(rng);
  d2r_scope_end(&s);
}

/* ---- diagonal Gaussian ----------------------------------------------- */

static const double MU[6] = {0.5, -1.0, 2.0, 0.0, 3.0, -0.25};
static const double LS[6] = {0.0, -0.5, 0.7, 0.3, -1.2, 0.1};
static const double Y[6] = {1.0, -2.0, 2.5, -0.4, 3.1, 1.0};

/* -0.5 log(2 pi) - log sigma - (y - mu)^2 / (2 sigma^2). */
static double normal_log_pdf(double y, double mu, double ls)
{
  double sd = exp(ls);
  return -0.5 * log(TWO_PI) - ls - (y - mu) * (y - mu) / (2 * sd * sd);
}

/* Per element and the two reductions, against the closed form; 1e-12. */
Test(dist, gaussian_log_prob_closed_form)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mu = K(tensor2(2, 3, MU)), *ls = K(tensor2(2, 3, LS));
  d2r_tensor *y = K(tensor2(2, 3, Y));
  double want[6], mean_d[2] = {0}, sum_d[2] = {0};
  for (int i = 0; i < 6; i++) {
    want[i] = normal_log_pdf(Y[i], MU[i], LS[i]);
    sum_d[i / 3] += want[i];
    mean_d[i / 3] += want[i] / 3;
  }
  expect_values(K(d2r_gaussian_log_prob(mu, ls, y, D2R_REDUCE_NONE)), want,
                6, 1e-12, "none");
  d2r_tensor *m = K(d2r_gaussian_log_prob(mu, ls, y, D2R_REDUCE_MEAN_DIMS));
  int64_t sh[1] = {2};
  expect_shape(m, 1, sh);
  expect_values(m, mean_d, 2, 1e-12, "mean dims");
  expect_values(K(d2r_gaussian_log_prob(mu, ls, y, D2R_REDUCE_SUM_DIMS)),
                sum_d, 2, 1e-12, "sum dims");
  d2r_scope_end(&s);
}

/* y [B, G, n] against mean [B, n] and a shared log_std [n]: element
 * (b, g, i) is scored against mean[b][i], log_std[i]; 1e-12. */
Test(dist, gaussian_log_prob_draws_shared_std)
{
  d2r_scope s = D2R_SCOPE_INIT;
  double yv[12] = {1, 2, 3, 4, 5, 6, -1, -2, -3, 0.5, 0.25, 0};
  d2r_tensor *mu = K(tensor2(2, 3, MU)), *ls = K(d2r_vector(3, LS));
  d2r_tensor *y = K(tensor3(2, 2, 3, yv));
  double want[12], mean_d[4] = {0};
  for (int i = 0; i < 12; i++) {
    int b = i / 6, k = i % 3;
    want[i] = normal_log_pdf(yv[i], MU[3 * b + k], LS[k]);
    mean_d[i / 3] += want[i] / 3;
  }
  d2r_tensor *lp = K(d2r_gaussian_log_prob(mu, ls, y, D2R_REDUCE_NONE));
  int64_t sh[3] = {2, 2, 3};
  expect_shape(lp, 3, sh);
  expect_values(lp, want, 12, 1e-12, "none");
  d2r_tensor *m = K(d2r_gaussian_log_prob(mu, ls, y, D2R_REDUCE_MEAN_DIMS));
  expect_shape(m, 2, sh);
  expect_values(m, mean_d, 4, 1e-12, "mean dims");
  d2r_scope_end(&s);
}

/* 0.5 log(2 pi e) + log sigma per element, and reduced; 1e-12. */
Test(dist, gaussian_entropy_closed_form)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *ls = K(tensor2(2, 3, LS));
  double want[6], mean_d[2] = {0}, sum_d[2] = {0};
  for (int i = 0; i < 6; i++) {
    want[i] = 0.5 * log(TWO_PI * exp(1.0)) + LS[i];
    mean_d[i / 3] += want[i] / 3;
    sum_d[i / 3] += want[i];
  }
  expect_values(K(d2r_gaussian_entropy(ls, D2R_REDUCE_NONE)), want, 6,
                1e-12, "none");
  expect_values(K(d2r_gaussian_entropy(ls, D2R_REDUCE_MEAN_DIMS)), mean_d,
                2, 1e-12, "mean dims");
  expect_values(K(d2r_gaussian_entropy(ls, D2R_REDUCE_SUM_DIMS)), sum_d, 2,
                1e-12, "sum dims");
  d2r_tensor *h = K(d2r_gaussian_entropy(K(d2r_vector(3, LS)),
                                         D2R_REDUCE_MEAN_DIMS));
  expect_shape(h, 0, NULL);
  expect_values(h, mean_d, 1, 1e-12, "shared");
  d2r_scope_end(&s);
}

/* d log p / d mu = (y - mu) / sigma^2, d log p / d log sigma =
 * (y - mu)^2 / sigma^2 - 1, d^2 log p / d mu^2 = -1 / sigma^2 (through a
 * differentiable gradient).  Tolerance 1e-12. */
Test(dist, gaussian_log_prob_derivatives)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mu = K(tensor2(2, 3, MU)), *ls = K(tensor2(2, 3, LS));
  d2r_tensor *y = K(tensor2(2, 3, Y));
  d2r_set_requires_grad(mu, true);
  d2r_set_requires_grad(ls, true);
  d2r_tensor *lp = K(d2r_gaussian_log_prob(mu, ls, y, D2R_REDUCE_SUM_DIMS));
  d2r_tensor *tot = K(d2r_sum_all(lp));
  d2r_tensor *in[2] = {mu, ls}, *g[2];
  cr_assert_eq(d2r_autograd(1, &tot, NULL, 2, in, true, false, g), 0, "%s",
               d2r_error());
  K(g[0]);
  K(g[1]);
  double gm[6], gs[6], hm[6];
  for (int i = 0; i < 6; i++) {
    double v = exp(2 * LS[i]), d = Y[i] - MU[i];
    gm[i] = d / v;
    gs[i] = d * d / v - 1;
    hm[i] = -1 / v;
  }
  expect_values(g[0], gm, 6, 1e-12, "d/dmu");
  expect_values(g[1], gs, 6, 1e-12, "d/dlog_std");
  /* The Hessian in mu is diagonal: its row sums are the diagonal. */
  d2r_tensor *gsum = K(d2r_sum_all(g[0])), *h[1];
  cr_assert_eq(d2r_autograd(1, &gsum, NULL, 1, in, false, false, h), 0,
               "%s", d2r_error());
  expect_values(K(h[0]), hm, 6, 1e-12, "d2/dmu2");
  d2r_scope_end(&s);
}

/* Moments of 100000 reparameterised draws: mean within 5 standard
 * errors (5 sigma / sqrt(N)), standard deviation within 1.5% (about 7
 * standard errors of 1 / sqrt(2N)).  The plain sample of the same
 * generator state is the same draw, with no gradient; exact. */
Test(dist, gaussian_rsample_moments)
{
  d2r_scope s = D2R_SCOPE_INIT;
  const int64_t g = 100000;
  double m[2] = {1.5, -2.0}, l[2] = {log(0.5), log(2.0)};
  d2r_rng *rng = d2r_rng_new(99), *twin = d2r_rng_new(99);
  d2r_tensor *mu = K(tensor2(1, 2, m)), *ls = K(tensor2(1, 2, l));
  d2r_set_requires_grad(mu, true);
  d2r_tensor *y = K(d2r_gaussian_rsample(rng, mu, ls, g));
  int64_t sh[3] = {1, g, 2};
  expect_shape(y, 3, sh);
  cr_assert(d2r_requires_grad(y), "rsample must carry the gradient");
  d2r_tensor *c = K(d2r_contiguous(y));
  const double *v = d2r_data(c);
  for (int k = 0; k < 2; k++) {
    double sum = 0, sq = 0, sd = exp(l[k]);
    for (int64_t i = 0; i < g; i++)
      sum += v[2 * i + k];
    double mean = sum / (double)g;
    for (int64_t i = 0; i < g; i++)
      sq += (v[2 * i + k] - mean) * (v[2 * i + k] - mean);
    double est = sqrt(sq / (double)(g - 1));
    cr_assert(fabs(mean - m[k]) <= 5 * sd / sqrt((double)g),
              "dim %d: mean %g, want %g", k, mean, m[k]);
    cr_assert(fabs(est / sd - 1) <= 0.015, "dim %d: sd %g, want %g", k, est,
              sd);
  }
  d2r_tensor *plain = K(d2r_gaussian_sample(twin, mu, ls, g));
  cr_assert(!d2r_requires_grad(plain), "samples must carry no gradient");
  expect_values(plain, v, 2 * g, 0.0, "sample == rsample");
  d2r_rng_free(rng);
  d2r_rng_free(twin);
  d2r_scope_end(&s);
}

/* For L = sum(rsample): dL/dmu = G per element, dL/dlog_std = sum_g
 * sigma eps = sum_g (y - mu), summed over rows for a shared log_std.
 * Tolerance 1e-12. */
Test(dist, gaussian_rsample_gradient)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_rng *rng = d2r_rng_new(5);
  d2r_tensor *mu = K(tensor2(2, 3, MU)), *ls = K(d2r_vector(3, LS));
  d2r_set_requires_grad(mu, true);
  d2r_set_requires_grad(ls, true);
  d2r_tensor *y = K(d2r_gaussian_rsample(rng, mu, ls, 4));
  d2r_tensor *tot = K(d2r_sum_all(y));
  cr_assert_eq(d2r_backward(tot), 0, "%s", d2r_error());
  d2r_tensor *c = K(d2r_contiguous(y));
  const double *v = d2r_data(c);
  double gm[6], gs[3] = {0};
  for (int i = 0; i < 6; i++)
    gm[i] = 4;
  for (int i = 0; i < 24; i++) {
    int b = i / 12, k = i % 3;
    gs[k] += v[i] - MU[3 * b + k];
  }
  expect_values(K(d2r_grad(mu)), gm, 6, 1e-12, "d/dmu");
  expect_values(K(d2r_grad(ls)), gs, 3, 1e-12, "d/dlog_std");
  d2r_rng_free(rng);
  d2r_scope_end(&s);
}

Test(dist, gaussian_errors)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_rng *rng = d2r_rng_new(1);
  d2r_tensor *mu = K(tensor2(2, 3, MU)), *ls = K(tensor2(2, 3, LS));
  d2r_tensor *y = K(tensor2(2, 3, Y));
  expect_error(d2r_gaussian_rsample(rng, K(d2r_vector(3, MU)), ls, 2),
               "mean must be [B, n]");
  expect_error(d2r_gaussian_sample(rng, mu, K(d2r_vector(2, LS)), 2),
               "log_std");
  expect_error(d2r_gaussian_rsample(rng, mu, ls, 0), "draws");
  expect_error(d2r_gaussian_rsample(NULL, mu, ls, 2), "generator");
  expect_error(d2r_gaussian_log_prob(mu, ls, K(tensor2(3, 2, Y)),
                                     D2R_REDUCE_NONE), "y must be");
  expect_error(d2r_gaussian_log_prob(mu, ls, y, (d2r_reduce)7),
               "reduction");
  expect_error(d2r_gaussian_entropy(K(d2r_scalar(1.0)), D2R_REDUCE_NONE),
               "log_std");
  d2r_fail("earlier failure");
  expect_error(d2r_gaussian_log_prob(mu, NULL, y, D2R_REDUCE_NONE),
               "earlier failure");
  expect_error(d2r_gaussian_sample(rng, NULL, ls, 2), "earlier failure");
  d2r_rng_free(rng);
  d2r_scope_end(&s);
}

/* No rows or no dimensions: empty draws of the right shape, not an
 * error from the generator. */
Test(dist, gaussian_draws_of_nothing)
{
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_rng *r = d2r_rng_new(1);
  int64_t none[2] = {0, 3}, flat[2] = {2, 0};
  d2r_tensor *m0 = K(d2r_zeros(2, none)), *m1 = K(d2r_zeros(2, flat));
  d2r_tensor *a = K(d2r_gaussian_sample(r, m0, m0, 4));
  d2r_tensor *b = K(d2r_gaussian_rsample(r, m1, m1, 4));
  cr_assert(a && b, "%s", d2r_error());
  cr_expect(d2r_dim(a, 0) == 0 && d2r_dim(a, 1) == 4 && d2r_dim(a, 2) == 3);
  cr_expect(d2r_dim(b, 0) == 2 && d2r_dim(b, 1) == 4 && d2r_dim(b, 2) == 0);
  d2r_rng_free(r);
  d2r_scope_end(&s);
}

/*
 * Random number generators (rng.h): each d2r_rng wraps one GSL Mersenne
 * Twister (gsl_rng_mt19937), so every draw in d2r comes from an object the
 * caller seeded and passed in.  GSL's own error handler aborts, so every
 * argument is checked here before it reaches a GSL routine that could
 * report an error.  A 64-bit seed is folded to the 32 bits MT19937 keeps
 * (low word XOR high word), so seeds below 2^32 give GSL's own streams;
 * as in GSL, seed 0 gives the same stream as seed 4357.
 */
#include "d2r/rng.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_errno.h>
#include <gsl/gsl_rng.h>

struct d2r_rng {
  gsl_rng *g;
};

/* Largest n that gsl_rng_uniform_int accepts for MT19937: its outputs
 * span 0..2^32-1, and GSL wants n no larger than that span's top. */
#define MT_RANGE ((uint64_t)0xffffffffu)

/* ---- generators ------------------------------------------------------- */

static unsigned long fold_seed(uint64_t seed) {
  return (unsigned long)((seed & 0xffffffffu) ^ (seed >> 32));
}

/* GSL's default error handler aborts the process (for instance when
 * gsl_rng_alloc runs out of memory); the engine must report instead, so
 * the handler is switched off before any GSL allocation. */
static void gsl_quiet(void) { gsl_set_error_handler_off(); }

d2r_rng *d2r_rng_new(uint64_t seed) {
  gsl_quiet();
  d2r_rng *r = malloc(sizeof *r);
  if (!r)
    return d2r_fail("rng: out of memory");
  r->g = gsl_rng_alloc(gsl_rng_mt19937);
  if (!r->g) {
    free(r);
    return d2r_fail("rng: out of memory");
  }
  gsl_rng_set(r->g, fold_seed(seed));
  return r;
}

void d2r_rng_free(d2r_rng *r) {
  if (!r)
    return;
  gsl_rng_free(r->g);
  free(r);
}

void d2r_rng_seed(d2r_rng *r, uint64_t seed) {
  if (r)
    gsl_rng_set(r->g, fold_seed(seed));
}

d2r_rng *d2r_rng_clone(const d2r_rng *r) {
  if (!r)
    return d2r_fail("rng_clone: no generator given");
  d2r_rng *c = malloc(sizeof *c);
  if (!c)
    return d2r_fail("rng_clone: out of memory");
  c->g = gsl_rng_clone(r->g);
  if (!c->g) {
    free(c);
    return d2r_fail("rng_clone: out of memory");
  }
  return c;
}

/* ---- scalar draws ----------------------------------------------------- */

double d2r_rng_uniform(d2r_rng *r) {
  if (!r) {
    d2r_fail("rng_uniform: no generator given");
    return NAN;
  }
  return gsl_rng_uniform(r->g);
}

double d2r_rng_normal(d2r_rng *r) {
  if (!r) {
    d2r_fail("rng_normal: no generator given");
    return NAN;
  }
  return gsl_ran_gaussian_ziggurat(r->g, 1.0);
}

/* 64 random bits from two 32-bit MT19937 outputs. */
static uint64_t bits64(gsl_rng *g) {
  uint64_t hi = gsl_rng_get(g) & 0xffffffffu;
  uint64_t lo = gsl_rng_get(g) & 0xffffffffu;
  return (hi << 32) | lo;
}

/* Uniform in [0, n) for n beyond GSL's range: rejection from 64 bits
 * keeps every value equally likely. */
static uint64_t below_wide(gsl_rng *g, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do {
    v = bits64(g);
  } while (v >= limit);
  return v % n;
}

uint64_t d2r_rng_below(d2r_rng *r, uint64_t n) {
  if (!r) {
    d2r_fail("rng_below: no generator given");
    return 0;
  }
  if (n == 0) {
    d2r_fail("rng_below: n must be positive");
    return 0;
  }
  if (n <= MT_RANGE)
    return gsl_rng_uniform_int(r->g, (unsigned long)n);
  return below_wide(r->g, n);
}

uint64_t d2r_rng_next_seed(d2r_rng *r) {
  if (!r) {
    d2r_fail("rng_next_seed: no generator given");
    return 0;
  }
  return bits64(r->g);
}

/* ---- tensors of draws ------------------------------------------------- */

/* A new contiguous tensor of `shape`, after checking that the shape is a
 * valid one with positive sizes (so the caller can fill it blindly). */
static d2r_tensor *new_draws(const char *who, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > D2R_MAXDIM)
    return d2r_fail("%s: ndim %d is outside 0..%d", who, ndim, D2R_MAXDIM);
  if (ndim > 0 && !shape)
    return d2r_fail("%s: no shape given", who);
  for (int i = 0; i < ndim; i++)
    if (shape[i] <= 0)
      return d2r_fail("%s: dimension %d has size %lld; sizes must be "
                      "positive", who, i, (long long)shape[i]);
  return d2r_empty(ndim, shape);
}

d2r_tensor *d2r_rand_uniform(d2r_rng *r, int ndim, const int64_t *shape,
                             double lo, double hi) {
  if (!r)
    return d2r_fail("rand_uniform: no generator given");
  if (!isfinite(hi - lo) || lo > hi)
    return d2r_fail("rand_uniform: bounds [%g, %g) must be finite with "
                    "lo <= hi", lo, hi);
  d2r_tensor *t = new_draws("rand_uniform", ndim, shape);
  if (!t)
    return NULL;
  double *p = d2r_data(t);
  int64_t n = d2r_numel(t);
  for (int64_t i = 0; i < n; i++)
    p[i] = lo + (hi - lo) * gsl_rng_uniform(r->g);
  return t;
}

d2r_tensor *d2r_rand_normal(d2r_rng *r, int ndim, const int64_t *shape,
                            double mean, double std) {
  if (!r)
    return d2r_fail("rand_normal: no generator given");
  if (!isfinite(mean) || !isfinite(std) || std < 0)
    return d2r_fail("rand_normal: mean %g and std %g must be finite, with "
                    "std >= 0", mean, std);
  d2r_tensor *t = new_draws("rand_normal", ndim, shape);
  if (!t)
    return NULL;
  double *p = d2r_data(t);
  int64_t n = d2r_numel(t);
  for (int64_t i = 0; i < n; i++)
    p[i] = mean + std * gsl_ran_gaussian_ziggurat(r->g, 1.0);
  return t;
}

d2r_tensor *d2r_rand_permutation(d2r_rng *r, int64_t n) {
  if (!r)
    return d2r_fail("rand_permutation: no generator given");
  /* gsl_ran_shuffle draws positions below n through gsl_rng_uniform_int */
  if (n <= 0 || (uint64_t)n > MT_RANGE)
    return d2r_fail("rand_permutation: n = %lld is outside 1..%llu",
                    (long long)n, (unsigned long long)MT_RANGE);
  d2r_tensor *t = new_draws("rand_permutation", 1, &n);
  if (!t)
    return NULL;
  double *p = d2r_data(t);
  for (int64_t i = 0; i < n; i++)
    p[i] = (double)i;
  gsl_ran_shuffle(r->g, p, (size_t)n, sizeof *p);
  return t;
}

/* ---- categorical draws ------------------------------------------------ */

/* Checks probs ([B, C], finite, non-negative, positive row sums). */
static int check_probs(const d2r_tensor *probs) {
  char buf[64];
  if (d2r_ndim(probs) != 2) {
    d2r_fail("rand_categorical: probs must be 2-d [B, C], got shape %s",
             d2r_shape_str(probs, buf, sizeof buf));
    return -1;
  }
  if (d2r_dim(probs, 0) < 1 || d2r_dim(probs, 1) < 1) {
    d2r_fail("rand_categorical: probs has an empty shape %s",
             d2r_shape_str(probs, buf, sizeof buf));
    return -1;
  }
  return 0;
}

/* Cumulative sums of row b of probs into cum[0..C); fails on a negative
 * or non-finite entry and on a row whose sum is not positive. */
static int row_cdf(const d2r_tensor *probs, int64_t b, double *cum) {
  const int64_t *st = d2r_strides(probs);
  int64_t c = d2r_dim(probs, 1);
  /* read only: d2r_data has no const form */
  const double *row = d2r_data((d2r_tensor *)probs) + b * st[0];
  double total = 0;
  for (int64_t k = 0; k < c; k++) {
    double p = row[k * st[1]];
    if (!isfinite(p) || p < 0) {
      d2r_fail("rand_categorical: probs[%lld][%lld] = %g is not a finite "
               "non-negative number", (long long)b, (long long)k, p);
      return -1;
    }
    total += p;
    cum[k] = total;
  }
  if (!(total > 0) || !isfinite(total)) {
    d2r_fail("rand_categorical: row %lld of probs sums to %g; it must be "
             "positive and finite", (long long)b, total);
    return -1;
  }
  return 0;
}

/* The first class whose cumulative weight exceeds u (in [0, cum[c-1])).
 * A zero-probability class never qualifies: its cumulative weight equals
 * that of the class before it. */
static int64_t search_cdf(const double *cum, int64_t c, double u) {
  int64_t lo = 0, hi = c - 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (cum[mid] > u)
      hi = mid;
    else
      lo = mid + 1;
  }
  /* u at the top end by rounding: step back to the last weighted class */
  while (lo > 0 && cum[lo] == cum[lo - 1])
    lo--;
  return lo;
}

int d2r_rng_draw_classes(d2r_rng *r, const double *cum, int64_t c,
                         int64_t draws, double *out) {
  if (!r || !cum || !out || c < 1 || draws < 0) {
    d2r_fail("rng_draw_classes: needs a generator, c >= 1 running sums, "
             "draws >= 0 and an output (got c = %lld, draws = %lld)",
             (long long)c, (long long)draws);
    return -1;
  }
  double total = cum[c - 1];
  if (!(total > 0) || !isfinite(total)) {
    d2r_fail("rng_draw_classes: the weights sum to %g; it must be "
             "positive and finite", total);
    return -1;
  }
  if (c == 2) {
    /* Two classes: with c a constant the search is one comparison
     * (measured: the tabular epoch takes 5% longer without this). */
    for (int64_t j = 0; j < draws; j++)
      out[j] = (double)search_cdf(cum, 2, gsl_rng_uniform(r->g) * total);
    return 0;
  }
  for (int64_t j = 0; j < draws; j++)
    out[j] = (double)search_cdf(cum, c, gsl_rng_uniform(r->g) * total);
  return 0;
}

int d2r_rng_multinomial(d2r_rng *r, const double *p, int64_t c,
                        int64_t draws, double *counts) {
  if (!r || !p || !counts || c < 1 || draws < 0 ||
      draws > D2R_MULTINOMIAL_MAX_DRAWS ||
      (uint64_t)c > SIZE_MAX / sizeof(unsigned)) {
    d2r_fail("rng_multinomial: needs a generator, c >= 1 weights, 0 <= "
             "draws <= %lld and an output (got c = %lld, draws = %lld)",
             (long long)D2R_MULTINOMIAL_MAX_DRAWS, (long long)c,
             (long long)draws);
    return -1;
  }
  double total = 0;
  for (int64_t k = 0; k < c; k++) {
    if (!(p[k] >= 0) || !isfinite(p[k])) {
      d2r_fail("rng_multinomial: weight %lld is %g; weights must be "
               "non-negative and finite", (long long)k + 1, p[k]);
      return -1;
    }
    total += p[k];
  }
  if (!(total > 0) || !isfinite(total)) {
    d2r_fail("rng_multinomial: the weights sum to %g; it must be positive "
             "and finite", total);
    return -1;
  }
  unsigned stack[256];
  unsigned *n = c <= 256 ? stack : malloc((size_t)c * sizeof *n);
  if (!n) {
    d2r_fail("rng_multinomial: out of memory for %lld classes",
             (long long)c);
    return -1;
  }
  gsl_ran_multinomial(r->g, (size_t)c, (unsigned)draws, p, n);
  for (int64_t k = 0; k < c; k++)
    counts[k] = (double)n[k];
  if (n != stack)
    free(n);
  return 0;
}

d2r_tensor *d2r_rand_categorical(d2r_rng *r, const d2r_tensor *probs,
                                 int64_t draws) {
  if (!probs)
    return NULL;
  if (!r)
    return d2r_fail("rand_categorical: no generator given");
  if (draws < 1)
    return d2r_fail("rand_categorical: draws = %lld; it must be at "
                    "least 1", (long long)draws);
  if (check_probs(probs) < 0)
    return NULL;
  int64_t rows = d2r_dim(probs, 0), c = d2r_dim(probs, 1);
  /* The running sums of one row: on the stack for up to 256 classes, so
   * a training step's sampling allocates nothing. */
  double small[256];
  double *cum = c <= 256 ? small : malloc((size_t)c * sizeof *cum);
  if (!cum)
    return d2r_fail("rand_categorical: out of memory");
  int64_t shape[2] = {rows, draws};
  d2r_tensor *out = d2r_empty(2, shape);
  double *o = out ? d2r_data(out) : NULL;
  for (int64_t b = 0; o && b < rows; b++) {
    if (row_cdf(probs, b, cum) < 0 ||
        d2r_rng_draw_classes(r, cum, c, draws, o + b * draws) < 0) {
      d2r_release(out);
      out = NULL;
      break;
    }
  }
  if (cum != small)
    free(cum);
  return out;
}

/* ---- state ------------------------------------------------------------ */

size_t d2r_rng_state_size(const d2r_rng *r) {
  return r ? gsl_rng_size(r->g) : 0;
}

int d2r_rng_get_state(const d2r_rng *r, void *buf, size_t size) {
  if (!r || !buf) {
    d2r_fail("rng_get_state: no generator or no buffer given");
    return -1;
  }
  if (size != gsl_rng_size(r->g)) {
    d2r_fail("rng_get_state: buffer holds %zu bytes, the state %zu",
             size, gsl_rng_size(r->g));
    return -1;
  }
  memcpy(buf, gsl_rng_state(r->g), size);
  return 0;
}

/* The layout of GSL's MT19937 state (its mt.c): 624 words of 32 bits,
 * each in an unsigned long, then the position of the next word. */
typedef struct mt_state {
  unsigned long mt[624];
  int mti;
} mt_state;

/* False for bytes GSL could not have produced: a position outside
 * 0..624 reads outside the words, and a word above 32 bits makes draws
 * of 1 or more (and integer draws loop forever). */
static int mt_state_valid(const void *buf, size_t size) {
  mt_state s;
  if (size != sizeof s)
    return 1;     /* another layout: nothing known to check */
  memcpy(&s, buf, sizeof s);
  if (s.mti < 0 || s.mti > 624)
    return 0;
  for (int i = 0; i < 624; i++)
    if (s.mt[i] > 0xffffffffUL)
      return 0;
  return 1;
}

int d2r_rng_set_state(d2r_rng *r, const void *buf, size_t size) {
  if (!r || !buf) {
    d2r_fail("rng_set_state: no generator or no buffer given");
    return -1;
  }
  if (size != gsl_rng_size(r->g)) {
    d2r_fail("rng_set_state: buffer holds %zu bytes, the state %zu",
             size, gsl_rng_size(r->g));
    return -1;
  }
  if (!mt_state_valid(buf, size)) {
    d2r_fail("rng_set_state: not a valid MT19937 state");
    return -1;
  }
  memcpy(gsl_rng_state(r->g), buf, size);
  return 0;
}

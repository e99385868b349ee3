/*
 * Random number generators: explicit, seedable objects over GSL's
 * Mersenne Twister (gsl_rng_mt19937).  Nothing in d2r draws from a hidden
 * global generator, so a run is reproduced by its seed.
 */
#ifndef D2R_RNG_H
#define D2R_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "d2r/tensor.h"

typedef struct d2r_rng d2r_rng;

/* A new generator seeded with seed; NULL on allocation failure.  Free
 * with d2r_rng_free. */
d2r_rng *d2r_rng_new(uint64_t seed);
void d2r_rng_free(d2r_rng *r);
void d2r_rng_seed(d2r_rng *r, uint64_t seed);
/* An independent copy of the generator and its current state. */
d2r_rng *d2r_rng_clone(const d2r_rng *r);

double d2r_rng_uniform(d2r_rng *r);              /* [0, 1) */
double d2r_rng_normal(d2r_rng *r);               /* N(0, 1) */
uint64_t d2r_rng_below(d2r_rng *r, uint64_t n);  /* uniform in [0, n) */
/* A 64-bit seed for a child generator, drawn from r. */
uint64_t d2r_rng_next_seed(d2r_rng *r);

/* Tensors of independent draws, contiguous, no gradient. */
d2r_tensor *d2r_rand_uniform(d2r_rng *r, int ndim, const int64_t *shape,
                             double lo, double hi);
d2r_tensor *d2r_rand_normal(d2r_rng *r, int ndim, const int64_t *shape,
                            double mean, double std);
/* A random permutation of 0..n-1 as a 1-d tensor. */
d2r_tensor *d2r_rand_permutation(d2r_rng *r, int64_t n);
/* For each row of probs ([B, C], non-negative weights with a positive
 * sum; each row is divided by its sum), draws `draws` class indices:
 * result [B, draws]. */
d2r_tensor *d2r_rand_categorical(d2r_rng *r, const d2r_tensor *probs,
                                 int64_t draws);
/* Draws `draws` class indices (as doubles) into out from the running
 * sums cum[0..c) of one row's weights: class k with probability
 * (cum[k] - cum[k-1]) / cum[c - 1].  0, or -1 with a message (changing
 * nothing) when c < 1, draws < 0, a pointer is NULL or cum[c - 1] is not
 * positive and finite; the running sums are the caller's to keep
 * non-decreasing. */
int d2r_rng_draw_classes(d2r_rng *r, const double *cum, int64_t c,
                         int64_t draws, double *out);

/* The most draws d2r_rng_multinomial takes: GSL's binomial sampler, on
 * which it rests, draws counts whose variance is 3% too large at 6e8
 * draws and worse beyond (measured; right to 4e8). */
#define D2R_MULTINOMIAL_MAX_DRAWS ((int64_t)1 << 28)

/* How many of `draws` independent draws from one row's weights p[0..c)
 * (non-negative, with a positive finite sum; class k has probability
 * p[k] / sum) fall in each class: counts[0..c) (as doubles, summing to
 * draws), drawn by GSL's multinomial sampler (conditional binomials: c
 * binomial draws instead of `draws` categorical ones).  0, or -1 with a
 * message (changing nothing) on a NULL pointer, c < 1, draws < 0 or
 * above D2R_MULTINOMIAL_MAX_DRAWS, or weights that are negative, not
 * finite or sum to 0. */
int d2r_rng_multinomial(d2r_rng *r, const double *p, int64_t c,
                        int64_t draws, double *counts);

/* Generator state as bytes, for checkpoints.  d2r_rng_state_size gives
 * the byte count; set_state fails, changing nothing, on a buffer of the
 * wrong size or bytes that are not a valid state. */
size_t d2r_rng_state_size(const d2r_rng *r);
int d2r_rng_get_state(const d2r_rng *r, void *buf, size_t size);
int d2r_rng_set_state(d2r_rng *r, const void *buf, size_t size);

#endif

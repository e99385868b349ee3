/*
 * Probability distributions for policies: a categorical over C classes
 * given by logits, and a diagonal Gaussian given by a mean and a log
 * standard deviation.  Each can sample, score (log-density) and give its
 * entropy; the Gaussian can also draw reparameterised samples.
 *
 * Log-densities and entropies carry gradients (and second derivatives)
 * with respect to the parameters: most are built from the differentiable
 * operations of tensor.h; the Gaussian log-density is one fused operation
 * whose backward is a single loop, or a graph of those operations when
 * the gradient is recorded to be differentiated again.  Plain samples
 * carry no gradient.
 *
 * Ownership and errors follow tensor.h: returned tensors are new
 * references; tensor arguments are borrowed; a NULL tensor argument
 * returns NULL at once and keeps the earlier message; any other failure
 * returns NULL with a message in d2r_error().
 *
 * Class indices (samples, labels) are integer-valued float64 tensors.
 */
#ifndef D2R_DIST_H
#define D2R_DIST_H

#include <stdint.h>

#include "d2r/rng.h"
#include "d2r/tensor.h"

/* How a per-element log-density or entropy over the n output dimensions
 * of a Gaussian is reduced along its last axis. */
typedef enum d2r_reduce {
  D2R_REDUCE_NONE = 0,   /* keep the last axis: one value per element */
  D2R_REDUCE_MEAN_DIMS,  /* average over it (the reference convention) */
  D2R_REDUCE_SUM_DIMS    /* sum over it (the joint density) */
} d2r_reduce;

/* t as a contiguous tensor (t itself, retained, when it already is; treat
 * it as read-only) after checking that every element is an integer in
 * [0, classes); fails naming the first value that is not. */
d2r_tensor *d2r_class_indices(const d2r_tensor *t, int64_t classes);
/* The same, with "fn: what: " in front of a failure message, for
 * functions that check an argument of theirs. */
d2r_tensor *d2r_class_indices_for(const d2r_tensor *t, int64_t classes,
                                  const char *fn, const char *what);

/* ---- categorical, from logits [B, C] --------------------------------- */

/* Draws `draws` >= 1 class indices per row from softmax(logits):
 * [B, draws], no gradient.  Fails on a NULL rng or a logits tensor that
 * is not 2-d with C >= 1 or holds a non-finite value. */
d2r_tensor *d2r_categorical_sample(d2r_rng *rng, d2r_tensor *logits,
                                   int64_t draws);

/* How many of `draws` >= 1 draws per row from softmax(logits) fall in
 * each class: [B, C] counts (integer-valued doubles, each row summing to
 * draws), no gradient.  The same distribution as counting the samples
 * of d2r_categorical_sample, at the cost of C binomial draws a row
 * instead of `draws` categorical ones: for a reward that depends only
 * on the class, the counts are all a policy gradient needs (see
 * d2r_pg_surrogate_counts).  Fails as d2r_categorical_sample does, and
 * on draws above D2R_MULTINOMIAL_MAX_DRAWS (2^28, see rng.h). */
d2r_tensor *d2r_categorical_counts(d2r_rng *rng, d2r_tensor *logits,
                                   int64_t draws);

/* log p(samples[b][g] | logits[b]) -> [B, G], differentiable in logits.
 * samples must be [B, G] with integer values in [0, C). */
d2r_tensor *d2r_categorical_log_prob(d2r_tensor *logits,
                                     const d2r_tensor *samples);

/* Entropy -sum_c p_c log p_c of each row -> [B], differentiable (twice);
 * a class whose probability underflows to 0 adds 0.  Fails on logits
 * holding a non-finite value. */
d2r_tensor *d2r_categorical_entropy(d2r_tensor *logits);

/* softmax(logits) along the classes -> [B, C], differentiable. */
d2r_tensor *d2r_categorical_probs(d2r_tensor *logits);

/* ---- diagonal Gaussian N(mean, diag(exp(log_std))^2) ----------------- */

/*
 * Shapes: mean is [B, n]; log_std is [B, n], or [n] (or [1, n]) for one
 * standard deviation shared by every row.  Where a sample axis appears,
 * G draws per row are laid out as [B, G, n].
 */

/* G = draws >= 1 samples per row -> [B, G, n], no gradient (drawn from
 * detached parameters).  Fails on a NULL rng or bad shapes. */
d2r_tensor *d2r_gaussian_sample(d2r_rng *rng, d2r_tensor *mean,
                                d2r_tensor *log_std, int64_t draws);

/* Reparameterised samples mean + exp(log_std) * eps, eps ~ N(0, I) drawn
 * from rng -> [B, G, n], differentiable in mean and log_std.  Draws the
 * same eps as d2r_gaussian_sample for the same generator state. */
d2r_tensor *d2r_gaussian_rsample(d2r_rng *rng, d2r_tensor *mean,
                                 d2r_tensor *log_std, int64_t draws);

/* Log-density of y, per element
 *   -0.5 log(2 pi) - log_std - (y - mean)^2 / (2 exp(2 log_std)),
 * differentiable in mean, log_std and y.  y is [B, G, n] (scored against
 * row b for every g) or [B, n].  The result has y's shape, or y's shape
 * without its last axis under D2R_REDUCE_MEAN_DIMS / D2R_REDUCE_SUM_DIMS. */
d2r_tensor *d2r_gaussian_log_prob(d2r_tensor *mean, d2r_tensor *log_std,
                                  d2r_tensor *y, d2r_reduce reduce);

/* Entropy per element 0.5 log(2 pi e) + log_std, differentiable.  The
 * result has log_std's shape under D2R_REDUCE_NONE, and loses the last
 * axis otherwise: [B, n] -> [B], [n] -> 0-d. */
d2r_tensor *d2r_gaussian_entropy(d2r_tensor *log_std, d2r_reduce reduce);

#endif

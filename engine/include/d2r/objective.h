/*
 * Rewards and training objectives: negative Mahalanobis rewards on
 * vectors and on one-hot classes, the likelihood losses (cross-entropy,
 * Gaussian NLL, MSE), reward transforms and group baselines, and the
 * policy-gradient surrogates of METHOD.md.
 *
 * Everything is built from the differentiable operations of tensor.h:
 * losses carry gradients (and second derivatives) with respect to the
 * policy's outputs, and rewards with respect to their matrix U, so a
 * bilevel solver can differentiate through them.
 *
 * Ownership and errors follow tensor.h: returned tensors are new
 * references; tensor arguments are borrowed; a NULL tensor argument
 * returns NULL at once and keeps the earlier message (except where a
 * NULL is documented as allowed); any other failure returns NULL with a
 * message in d2r_error().  Class indices are integer-valued float64.
 */
#ifndef D2R_OBJECTIVE_H
#define D2R_OBJECTIVE_H

#include <stdint.h>

#include "d2r/dist.h"
#include "d2r/tensor.h"

/* ---- Mahalanobis rewards r_U(yhat, y) = -(yhat - y)^T U (yhat - y) --- */

/*
 * U is a 0-d (or one-element 1-d) tensor u for U = u I, a vector [n] for
 * a diagonal U, or a matrix [n, n] used as given (a non-symmetric U acts
 * through its symmetric part; its gradient is the outer product).  U is
 * not checked for definiteness.  The rewards are differentiable in yhat,
 * y and U.
 */

/* yhat [B, G, n] against y [B, n] -> [B, G]; or yhat [B, n] -> [B]. */
d2r_tensor *d2r_mahalanobis_reward(d2r_tensor *yhat, d2r_tensor *y,
                                   d2r_tensor *U);

/* The same reward on one-hot vectors e_s, e_y of `classes` classes:
 * samples [B, G] and labels [B] hold class indices -> [B, G].  U is as
 * above with n = classes; the reward is -(U_ss + U_yy - U_sy - U_ys),
 * which for U = beta I is -2 beta when s != y and 0 when s == y. */
d2r_tensor *d2r_onehot_reward(const d2r_tensor *samples,
                              const d2r_tensor *labels, int64_t classes,
                              d2r_tensor *U);

/* The same reward for every class against labels [B]: [B, classes],
 * entry (b, k) the reward of a sample of class k in row b (the reward
 * table that d2r_pg_surrogate_counts takes). */
d2r_tensor *d2r_onehot_reward_classes(const d2r_tensor *labels,
                                      int64_t classes, d2r_tensor *U);

/* ---- likelihood and regression losses (0-d results) ------------------ */

/* -mean_b log softmax(logits[b])[labels[b]]: logits [B, C], labels [B]. */
d2r_tensor *d2r_cross_entropy(d2r_tensor *logits, const d2r_tensor *labels);

/* -log N(y; mean, exp(log_std)^2), shapes as d2r_gaussian_log_prob (y is
 * [B, n] or [B, K, n] for K targets per row), reduced over the n dims by
 * `reduce`, then averaged over every other axis: a 0-d result under
 * D2R_REDUCE_MEAN_DIMS / D2R_REDUCE_SUM_DIMS, an [n] per-dimension NLL
 * under D2R_REDUCE_NONE. */
d2r_tensor *d2r_gaussian_nll(d2r_tensor *mean, d2r_tensor *log_std,
                             d2r_tensor *y, d2r_reduce reduce);

/* mean over all elements of (pred - target)^2; same shapes. */
d2r_tensor *d2r_mse(d2r_tensor *pred, d2r_tensor *target);

/* ---- reward transforms and baselines --------------------------------- */

typedef enum d2r_transform {
  D2R_TRANSFORM_NONE = 0,   /* rt = r */
  D2R_TRANSFORM_MIN_SHIFT,  /* rt = r - min_g r ("normalize") */
  D2R_TRANSFORM_RBF         /* rt = exp(gamma r) */
} d2r_transform;

/* Applied after the transform, within each group (row) of G rewards. */
/*
 * Group baselines, applied after the transform within each row of G.
 * Only leave-one-out leaves the expected policy gradient unchanged: a
 * baseline that includes the sample's own reward is correlated with it.
 * The group mean gives (G - 1)/G times the RLOO advantage, so the reward
 * term shrinks by that factor against the entropy term, and PG behaves as
 * with lambda G/(G - 1): with U* it ends at variances about G/(G - 1)
 * times the data's (1.22-1.25 measured at G = 5).  MEAN_STD further
 * rescales each group by its spread, so U* no longer recovers Sigma;
 * min-shift also subtracts a
 * statistic that includes the sample.  These are properties of the
 * estimators, kept as they are because they are what the estimator
 * ablations compare.
 */
typedef enum d2r_baseline {
  D2R_BASELINE_NONE = 0,
  D2R_BASELINE_MEAN,      /* rt - mean_g rt */
  D2R_BASELINE_MEAN_STD,  /* (rt - mean_g rt) / (std_g rt + std_eps),
                           * std unbiased (G - 1); 0 for a group whose
                           * rewards are all equal (GRPO) */
  D2R_BASELINE_LOO        /* rt_g - mean of the other G - 1 (RLOO);
                           * needs G >= 2; unbiased */
} d2r_baseline;

typedef struct d2r_pg_options {
  d2r_transform transform;
  double gamma;            /* RBF scale (finite) */
  d2r_baseline baseline;
  double std_eps;          /* >= 0, added to the group std */
  double clip;             /* > 0: -log p clamped to [-clip, clip]; 0: off */
  /* Keep the reward's graph instead of detaching it.  Samples carry no
   * gradient, so the policy gradient is the same either way; what this
   * adds is the reward's dependence on learnable reward parameters, which
   * the mixed second derivative of the bilevel solvers needs. */
  bool reward_grad;
} d2r_pg_options;

/* No transform, no baseline, gamma 1, std_eps 1e-8, no clipping. */
#define D2R_PG_OPTIONS_INIT \
  {D2R_TRANSFORM_NONE, 1.0, D2R_BASELINE_NONE, 1e-8, 0.0, false}
d2r_pg_options d2r_pg_options_default(void);

/* Diagnostics of one surrogate evaluation (plain numbers, no graph). */
typedef struct d2r_pg_stats {
  double reward_mean;       /* mean raw reward */
  double transformed_mean;  /* mean transformed reward */
  double entropy_mean;      /* mean entropy; NAN when none was given */
} d2r_pg_stats;

/* The transformed rewards for reward [B, G]: [B, G], detached (no
 * gradient) unless opt->reward_grad is set.  opt may be NULL for the
 * defaults.  Fails on bad options, on a reward that is not 2-d, and on
 * LOO with G < 2. */
d2r_tensor *d2r_pg_transform(d2r_tensor *reward, const d2r_pg_options *opt);

/* ---- policy-gradient surrogates (0-d results) ------------------------ */

/*
 * REINFORCE surrogate
 *   L = mean_gb[ -logp_gb * rt_gb ] - lambda * mean_b[ entropy_b ]
 * logp [B, G]: differentiable log-probabilities of the drawn samples,
 * already reduced over output dimensions by the caller's convention;
 * reward [B, G]: detached here, so a constant for the gradient (unless
 * opt->reward_grad);
 * entropy [B] (or 0-d when shared by every row): differentiable; it may
 * be NULL when lambda == 0, and is then left out.  opt may be NULL for
 * the defaults; stats may be NULL, and is filled on success.
 */
d2r_tensor *d2r_pg_surrogate(d2r_tensor *logp, d2r_tensor *reward,
                             d2r_tensor *entropy, double lambda,
                             const d2r_pg_options *opt,
                             d2r_pg_stats *stats);

/*
 * The same surrogate for a categorical policy from class counts (as
 * d2r_categorical_counts draws): with G draws per row of which counts
 * [B, C] fell in each class, logp [B, C] the log-probability of every
 * class (d2r_log_softmax of the logits) and reward [B, C] the reward of
 * every class (d2r_onehot_reward_classes), the value, gradients and
 * stats are those of d2r_pg_surrogate on the [B, G] samples the counts
 * describe (in any order), for every transform, baseline and clip:
 * min-shift takes the minimum over the classes drawn, the baselines
 * weight each class by its count.  Valid when the reward depends on the
 * sample only through its class; the work is O(B C) instead of O(B G).
 * counts must hold non-negative integers summing to the same G >= 1 in
 * every row (G >= 2 for LOO); they carry no gradient.
 */
d2r_tensor *d2r_pg_surrogate_counts(d2r_tensor *logp, d2r_tensor *reward,
                                    const d2r_tensor *counts,
                                    d2r_tensor *entropy, double lambda,
                                    const d2r_pg_options *opt,
                                    d2r_pg_stats *stats);

/*
 * Pathwise (reparameterised) surrogate L = -mean(reward) - lambda *
 * mean(entropy), where reward (any shape) is differentiable, built from
 * a d2r_gaussian_rsample.  entropy as in d2r_pg_surrogate (NULL allowed
 * when lambda == 0).  stats: transformed_mean equals reward_mean.
 */
d2r_tensor *d2r_pathwise_surrogate(d2r_tensor *reward, d2r_tensor *entropy,
                                   double lambda, d2r_pg_stats *stats);

#endif

/*
 * Policies: conditional distributions p_theta(y | x) computed by an MLP,
 * with the sampling, scoring and entropy that the PG surrogates of
 * objective.h need.  Three kinds:
 *
 *   gaussian       diagonal Gaussian N(m(x), diag(exp(s(x)))^2); the
 *                  log-std s is a head of the network (input-dependent,
 *                  the default) or one learned vector [n] shared by every
 *                  input, optionally held in soft bounds (see below);
 *   full_gaussian  N(m(x), L(x) L(x)^T) with L lower triangular, read
 *                  from n (n + 1) / 2 head outputs;
 *   categorical    softmax(logits(x)) over C classes.
 *
 * Network.  One MLP maps x [B, in] through the trunk (the hidden layers,
 * each followed by the activation) to the concatenated heads: a linear
 * layer from the last hidden layer to [mean | log-std] or [mean |
 * Cholesky entries] or [logits].  A single linear output layer split by
 * columns is the same function as separate linear heads on a shared
 * trunk, and is initialised the same way (uniform, fan-in scaled).
 *
 * Soft log-std bounds (PETS, Chua et al. 2018).  With bounds lo < hi
 * (vectors [n]) the raw log-std s becomes
 *   s <- hi - softplus(hi - s),   then   s <- lo + softplus(s - lo),
 * a smooth clamp into (lo, lo + softplus(hi - lo)) (an upper end just
 * above hi when hi - lo is large) that is near the identity well inside
 * the bounds.  With learn_bounds, lo and hi are parameters
 * (PETS also adds a small multiple of sum(hi) - sum(lo) to the loss:
 * d2r_policy_bounds_penalty gives that term).
 *
 * Cholesky head.  The k = n (n + 1) / 2 entries fill the lower triangle
 * row by row: (1,1), (2,1), (2,2), (3,1), ...  The diagonal entries r
 * become softplus(r + log(e - 1)) + jitter, so a zero output gives a
 * unit standard deviation (plus jitter) and the factor stays invertible.
 *
 * Reductions (d2r_reduce of dist.h) of log-densities and entropies over
 * the n output dimensions: D2R_REDUCE_MEAN_DIMS divides the joint value
 * by n (the per-dimension convention of the reference implementation),
 * D2R_REDUCE_SUM_DIMS gives the joint value.  D2R_REDUCE_NONE keeps the
 * per-dimension terms of a diagonal Gaussian; a full-covariance density
 * does not factor over dimensions, so it fails there.  For categorical
 * policies there is no dimension axis and the reduction is ignored.
 *
 * Ownership.  d2r_policy_new returns a policy freed with d2r_policy_free.
 * The policy owns its network and parameters; d2r_policy_params and
 * d2r_policy_model hand out borrowed pointers valid while it is alive.
 * A d2r_pdist holds new references, given back by d2r_pdist_clear.
 * Functions returning a d2r_tensor * return a new reference.
 *
 * Errors follow tensor.h: NULL or -1 with a message in d2r_error(); a
 * NULL tensor argument is an earlier failure and propagates.
 */
#ifndef D2R_POLICY_H
#define D2R_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "d2r/dist.h"
#include "d2r/nn.h"
#include "d2r/rng.h"
#include "d2r/tensor.h"

/* ---- full-covariance Gaussian N(mean, L L^T) -------------------------- */

/*
 * Shapes: mean [B, n]; chol [B, n, n] (one factor per row) or [n, n]
 * (shared), lower triangular with a positive diagonal (only the lower
 * triangle is read).  Samples are [B, G, n]; a scored y is [B, n] or
 * [B, G, n] (every g scored against row b).
 */

/* mean + L eps with eps ~ N(0, I) from rng -> [B, G, n], differentiable
 * in mean and chol.  draws >= 1. */
d2r_tensor *d2r_mvn_rsample(d2r_rng *rng, d2r_tensor *mean,
                            d2r_tensor *chol, int64_t draws);
/* The same draw without history. */
d2r_tensor *d2r_mvn_sample(d2r_rng *rng, d2r_tensor *mean, d2r_tensor *chol,
                           int64_t draws);
/*
 * log N(y; m, L L^T) = -n/2 log(2 pi) - sum_i log L_ii - |z|^2 / 2 with
 * z = L^-1 (y - m), differentiable in all three: y's shape without its
 * last axis, joint (SUM_DIMS) or divided by n (MEAN_DIMS).
 */
d2r_tensor *d2r_mvn_log_prob(d2r_tensor *mean, d2r_tensor *chol,
                             d2r_tensor *y, d2r_reduce reduce);
/* n/2 log(2 pi e) + sum_i log L_ii: [B] for chol [B, n, n], 0-d for
 * [n, n]; joint or divided by n as above. */
d2r_tensor *d2r_mvn_entropy(d2r_tensor *chol, d2r_reduce reduce);

/* ---- configuration ---------------------------------------------------- */

typedef enum d2r_policy_kind {
  D2R_POLICY_GAUSSIAN = 0,   /* diagonal Gaussian */
  D2R_POLICY_FULL_GAUSSIAN,  /* Gaussian with a Cholesky head */
  D2R_POLICY_CATEGORICAL
} d2r_policy_kind;

typedef enum d2r_log_std_kind {
  D2R_LOG_STD_HEAD = 0,  /* a head of the network: s(x) */
  D2R_LOG_STD_GLOBAL     /* a learned vector [n], the same for every x */
} d2r_log_std_kind;

typedef struct d2r_policy_config {
  d2r_policy_kind kind;
  int64_t in;              /* input features, >= 1 */
  int64_t out;             /* output dimensions n, or classes C; >= 1 */
  int nhidden;             /* trunk layers, >= 0 (0: heads linear in x) */
  const int64_t *hidden;   /* their sizes (copied by d2r_policy_new) */
  d2r_activation act;      /* after every trunk layer */
  /* Diagonal Gaussian only. */
  d2r_log_std_kind log_std;
  double log_std_init;     /* global: initial value of every entry;
                            * head: added to the head's bias */
  bool bounded;            /* apply the soft bounds below */
  double min_log_std;      /* lo, finite, < hi */
  double max_log_std;      /* hi, finite */
  bool learn_bounds;       /* lo and hi become parameters */
  /* Full-covariance Gaussian only. */
  double jitter;           /* >= 0, added to the diagonal of L */
} d2r_policy_config;

/* A config of the given kind with no trunk, relu, a log-std head
 * initialised at 0, no bounds (when enabled: lo -5, hi 2, fixed) and
 * jitter 1e-6. */
d2r_policy_config d2r_policy_config_default(d2r_policy_kind kind,
                                            int64_t in, int64_t out);

/* "gaussian", "full_gaussian", "categorical"; NULL outside the enum. */
const char *d2r_policy_kind_name(d2r_policy_kind kind);

/* ---- policies ---------------------------------------------------------- */

typedef struct d2r_policy d2r_policy;

/*
 * A new policy: parameters drawn from rng (the network as d2r_mlp_new).
 * Fails on invalid settings (sizes, an activation outside the enum,
 * bounds that are not finite with lo < hi, a negative or non-finite
 * jitter, bounds or a global log-std on a policy that is not a diagonal
 * Gaussian) and on a NULL rng.
 */
d2r_policy *d2r_policy_new(const d2r_policy_config *cfg, d2r_rng *rng);
void d2r_policy_free(d2r_policy *p);  /* NULL-safe */

/* The configuration (borrowed; its hidden points at the policy's own
 * copy of the sizes). */
const d2r_policy_config *d2r_policy_get_config(const d2r_policy *p);
/* The network mapping x [.., in] to the concatenated heads (borrowed). */
d2r_model *d2r_policy_model(const d2r_policy *p);

/*
 * Every parameter, in order: the network's (W0, b0, W1, b1, ...), then
 * the global log-std [n] if any, then lo [n] and hi [n] if the bounds
 * are learned.  Borrowed, valid while p is alive; hand the array to an
 * optimiser.
 */
int d2r_policy_nparams(const d2r_policy *p);
d2r_tensor *const *d2r_policy_params(const d2r_policy *p);
int64_t d2r_policy_numel(const d2r_policy *p);

/* The current bounds lo and hi ([n] each, new references, differentiable
 * when learned); -1 for a policy without bounds. */
int d2r_policy_bounds(const d2r_policy *p, d2r_tensor **lo,
                      d2r_tensor **hi);
/* sum(hi) - sum(lo), 0-d, differentiable when the bounds are learned;
 * a 0 for a policy without bounds. */
d2r_tensor *d2r_policy_bounds_penalty(const d2r_policy *p);

/* ---- the distribution at a batch of inputs ----------------------------- */

/*
 * The policy's distribution at x [B, in].  Fields that do not apply to
 * the kind are NULL.  Every tensor carries history back to the
 * parameters.
 */
typedef struct d2r_pdist {
  d2r_policy_kind kind;
  int64_t n;            /* output dimensions, or classes */
  d2r_tensor *mean;     /* Gaussians: [B, n] */
  d2r_tensor *log_std;  /* diagonal: [B, n], bounds applied */
  d2r_tensor *chol;     /* full: [B, n, n], lower triangular */
  d2r_tensor *logits;   /* categorical: [B, C] */
} d2r_pdist;

#define D2R_PDIST_INIT {D2R_POLICY_GAUSSIAN, 0, NULL, NULL, NULL, NULL}

/* Evaluates the network once at x [B, in] and fills *d (which must hold
 * no references).  0, or -1 leaving *d empty. */
int d2r_policy_dist(d2r_policy *p, d2r_tensor *x, d2r_pdist *d);
/* The same with other tensors in place of d2r_policy_params (same count
 * and shapes; they may carry history, for unrolled differentiation). */
int d2r_policy_dist_with(d2r_policy *p, d2r_tensor *const *params,
                         d2r_tensor *x, d2r_pdist *d);
/* Releases the references of *d and empties it.  NULL-safe. */
void d2r_pdist_clear(d2r_pdist *d);

/* draws >= 1 samples per input: Gaussians [B, G, n], categorical class
 * indices [B, G]; no history. */
d2r_tensor *d2r_pdist_sample(d2r_rng *rng, const d2r_pdist *d,
                             int64_t draws);
/* Reparameterised samples [B, G, n], differentiable (Gaussians only). */
d2r_tensor *d2r_pdist_rsample(d2r_rng *rng, const d2r_pdist *d,
                              int64_t draws);
/* log p(y | x_b): y [B, G, n] or [B, n] for Gaussians (result [B, G] or
 * [B] under a reduction, the per-dimension terms under NONE), class
 * indices [B, G] or [B] for a categorical (result of the same shape). */
d2r_tensor *d2r_pdist_log_prob(const d2r_pdist *d, d2r_tensor *y,
                               d2r_reduce reduce);
/* Entropy per input: [B] ([B, n] for a diagonal Gaussian under NONE). */
d2r_tensor *d2r_pdist_entropy(const d2r_pdist *d, d2r_reduce reduce);
/* The mean [B, n]: the Gaussian mean, or the class probabilities of a
 * categorical (the mean of its one-hot vector). */
d2r_tensor *d2r_pdist_mean(const d2r_pdist *d);
/* The covariance [B, n, n]: diag(exp(2 s)), L L^T, or diag(p) - p p^T
 * for a categorical. */
d2r_tensor *d2r_pdist_covariance(const d2r_pdist *d);

/* ---- one-call forms: d2r_policy_dist at x, then the pdist function ----- */

d2r_tensor *d2r_policy_sample(d2r_policy *p, d2r_rng *rng, d2r_tensor *x,
                              int64_t draws);
d2r_tensor *d2r_policy_rsample(d2r_policy *p, d2r_rng *rng, d2r_tensor *x,
                               int64_t draws);
d2r_tensor *d2r_policy_log_prob(d2r_policy *p, d2r_tensor *x,
                                d2r_tensor *y, d2r_reduce reduce);
d2r_tensor *d2r_policy_entropy(d2r_policy *p, d2r_tensor *x,
                               d2r_reduce reduce);
d2r_tensor *d2r_policy_mean(d2r_policy *p, d2r_tensor *x);

#endif

/*
 * Learned one-step dynamics models p(s' | s, a) (METHOD.md, experiment
 * 5): an ensemble of diagonal Gaussian MLP policies (policy.h) on the
 * normalised input [s, a] predicting the normalised next observation s'
 * or change s' - s; training with MSE, NLL or the PG surrogate under a
 * Mahalanobis reward; the metrics of the paper's table; open-loop
 * rollout error; and the model as a planner's d2r_dynamics.
 *
 * Normalisation.  Inputs and targets are standardised with the mean and
 * population std of the training rows (d2r_dyn_fit), each std raised to
 * at least std_floor, so a constant dimension maps to 0 instead of
 * dividing by zero.  Losses, the reward matrix U and the metrics rmse
 * and nll live in these normalised target units (every dimension
 * weighs the same); rmse_raw is in the observation's own units.
 *
 * Ensembles.  Members are independent networks (drawn one after another
 * from the rng), trained alike, optionally each on its own bootstrap
 * resample of the training rows (PETS).  After training, the `elites`
 * members with the lowest validation MSE predict: their means are
 * averaged (mode MEAN), or each row draws from one elite chosen at
 * random (mode SAMPLE, PETS's TS1).  The metrics use the elites'
 * equal-weight mixture.
 *
 * Ownership and errors follow tensor.h: a d2r_dyn is made by
 * d2r_dyn_new and freed by d2r_dyn_free (NULL-safe); borrowed pointers
 * (members, parameters) live as long as it does; returned tensors are
 * new references; failures return NULL or -1 with a message.
 */
#ifndef D2R_DYNAMICS_H
#define D2R_DYNAMICS_H

#include <stdbool.h>
#include <stdint.h>

#include "d2r/dataset.h"
#include "d2r/env.h"
#include "d2r/objective.h"
#include "d2r/policy.h"
#include "d2r/rng.h"
#include "d2r/tensor.h"

/* ---- configuration ------------------------------------------------------ */

typedef enum d2r_dyn_target {
  D2R_DYN_DELTA = 0,   /* predict s' - s */
  D2R_DYN_NEXT         /* predict s' */
} d2r_dyn_target;

typedef struct d2r_dyn_config {
  int64_t obs_dim, act_dim;  /* >= 1 */
  d2r_dyn_target target;
  int nhidden;               /* hidden layers (copied) */
  const int64_t *hidden;
  d2r_activation act;
  d2r_log_std_kind log_std;  /* a head (default) or a global vector */
  double log_std_init;
  bool bounded;              /* soft log-std bounds (policy.h) */
  double min_log_std, max_log_std;
  bool learn_bounds;
  double std_floor;          /* > 0: least normalising std */
  int ensemble;              /* members, >= 1 */
  int elites;                /* 1..ensemble */
} d2r_dyn_config;

/* MLP [64, 64] with relu, a log-std head initialised at 0, no bounds
 * (when enabled: -10 and 0.5, fixed), delta targets, std_floor 1e-6, one
 * member, one elite. */
d2r_dyn_config d2r_dyn_config_default(int64_t obs_dim, int64_t act_dim);

typedef struct d2r_dyn d2r_dyn;

/* A model with fresh parameters drawn from rng; NULL on a bad setting. */
d2r_dyn *d2r_dyn_new(const d2r_dyn_config *cfg, d2r_rng *rng);
void d2r_dyn_free(d2r_dyn *m);

const d2r_dyn_config *d2r_dyn_get_config(const d2r_dyn *m);
int d2r_dyn_members(const d2r_dyn *m);
/* Member i's network (borrowed). */
d2r_policy *d2r_dyn_member(const d2r_dyn *m, int i);
/* The elite members' indices (borrowed, *n of them, ascending). */
const int *d2r_dyn_elites(const d2r_dyn *m, int *n);
/* Chooses the elites by hand: n distinct indices.  0 or -1. */
int d2r_dyn_set_elites(d2r_dyn *m, int n, const int *idx);

/* ---- normalised data ---------------------------------------------------- */

/* Fits the normalisers on d's rows (the training set).  0 or -1. */
int d2r_dyn_fit(d2r_dyn *m, const d2r_dataset *d);
/* True once d2r_dyn_fit has run. */
bool d2r_dyn_fitted(const d2r_dyn *m);
/* The normalisers ([obs_dim + act_dim] and [obs_dim]; new references to
 * copies). */
int d2r_dyn_normalizers(const d2r_dyn *m, d2r_tensor **in_mean,
                        d2r_tensor **in_std, d2r_tensor **out_mean,
                        d2r_tensor **out_std);

/* Normalised inputs x [N, obs+act] from obs [N, obs_dim], act [N,
 * act_dim]; normalised targets y [N, obs_dim] from obs and next_obs.
 * No history. */
d2r_tensor *d2r_dyn_inputs(const d2r_dyn *m, d2r_tensor *obs,
                           d2r_tensor *act);
d2r_tensor *d2r_dyn_targets(const d2r_dyn *m, d2r_tensor *obs,
                            d2r_tensor *next_obs);
/* Both for a dataset's rows. */
int d2r_dyn_data(const d2r_dyn *m, const d2r_dataset *d, d2r_tensor **x,
                 d2r_tensor **y);

/* ---- losses ------------------------------------------------------------- */

typedef enum d2r_dyn_loss_kind {
  D2R_DYN_MSE = 0,   /* mean squared error of the mean; the log-std is
                      * not trained */
  D2R_DYN_NLL,       /* per-dimension Gaussian NLL */
  D2R_DYN_PG         /* the REINFORCE surrogate of objective.h */
} d2r_dyn_loss_kind;

typedef struct d2r_dyn_loss_config {
  d2r_dyn_loss_kind kind;
  d2r_tensor *U;       /* PG: the reward matrix in normalised target
                        * units, 0-d (u I), [n] (diagonal) or [n, n];
                        * borrowed; may require gradients */
  double lambda;       /* PG: entropy weight, >= 0 */
  int group;           /* PG: G >= 1 samples per input */
  d2r_pg_options pg;   /* PG: transform, baseline, clipping */
  double bounds_penalty;  /* with learned bounds: weight of sum(hi) -
                           * sum(lo) added to the loss (PETS: 0.01) */
} d2r_dyn_loss_config;

/* MSE, lambda 1, G 5, default PG options, no bounds penalty, no U. */
d2r_dyn_loss_config d2r_dyn_loss_default(d2r_dyn_loss_kind kind);
/* "mse", "nll", "pg"; parse: 0 or -1. */
const char *d2r_dyn_loss_name(d2r_dyn_loss_kind kind);
int d2r_dyn_loss_parse(const char *name, d2r_dyn_loss_kind *out);

/*
 * The loss of member i on normalised x [B, obs+act] and y [B, obs_dim]
 * (a 0-d tensor with history to the member's parameters, and to U when
 * it requires gradients).  rng draws the PG samples (NULL otherwise);
 * stats (may be NULL) receives the PG diagnostics.
 */
d2r_tensor *d2r_dyn_loss(d2r_dyn *m, int i, d2r_tensor *x, d2r_tensor *y,
                         const d2r_dyn_loss_config *lc, d2r_rng *rng,
                         d2r_pg_stats *stats);

/* The reward matrices of METHOD.md from the normalised training targets
 * of d (Sigma their unbiased covariance, n = obs_dim):
 *   "identity"   U = I (a 0-d 1);
 *   "isotropic"  u = lambda n / (2 tr Sigma) (0-d);
 *   "diagonal"   u_i = lambda / (2 Sigma_ii) ([n]); a dimension whose
 *                variance is at most D2R_DYN_PINV_RTOL times the largest
 *                gets the isotropic u instead;
 *   "full"       U = (lambda / 2) Sigma^+ + u P0 ([n, n]): the pseudo-
 *                inverse of d2r_reward_full_pinv with eigenvalues at most
 *                D2R_DYN_PINV_RTOL times the largest treated as zero, and
 *                the isotropic u above on those directions, so a target
 *                dimension that never changes (a reacher's goal) is held
 *                to the data rather than given an exploding weight (or
 *                none, when the model's mean would drift there).
 * NULL on an unknown kind or a dataset the model is not fitted for. */
#define D2R_DYN_PINV_RTOL 1e-6
d2r_tensor *d2r_dyn_reward_matrix(const d2r_dyn *m, const d2r_dataset *d,
                                  const char *kind, double lambda);

/* ---- training ----------------------------------------------------------- */

typedef struct d2r_dyn_train_config {
  d2r_dyn_loss_config loss;
  double lr;          /* Adam learning rate */
  int steps;          /* updates per member, >= 1 */
  int64_t batch;      /* rows per update; 0: full batch */
  bool bootstrap;     /* each member on a bootstrap resample */
  double clip;        /* > 0: gradient elements clipped to [-clip, clip] */
  uint64_t seed;      /* batches, bootstrap and PG samples */
} d2r_dyn_train_config;

/* The loss's defaults, Adam lr 1e-3, 400 full-batch steps, no bootstrap,
 * no clipping, seed 0. */
d2r_dyn_train_config d2r_dyn_train_default(d2r_dyn_loss_kind kind);

typedef struct d2r_dyn_train_report {
  double loss;            /* mean final loss over members */
  int64_t skipped;        /* updates skipped for a non-finite loss or
                           * gradient, over all members */
  double val_mse;         /* the elites' mean validation MSE (NAN
                           * without a validation set) */
} d2r_dyn_train_report;

/*
 * Fits the normalisers on train (unless already fitted), trains every
 * member, then picks the elites by MSE on val (on train when val is
 * NULL).  A step whose loss or gradient is not finite is skipped and
 * counted, not applied.  report may be NULL.  0 or -1.
 */
int d2r_dyn_train(d2r_dyn *m, const d2r_dataset *train,
                  const d2r_dataset *val, const d2r_dyn_train_config *tc,
                  d2r_dyn_train_report *report);

/* ---- evaluation --------------------------------------------------------- */

typedef struct d2r_dyn_metrics {
  double rmse;      /* RMSE of the mixture mean, normalised units */
  double nll;       /* per-dimension NLL of the mixture, normalised */
  double rmse_raw;  /* RMSE of the predicted s', observation units */
} d2r_dyn_metrics;

int d2r_dyn_evaluate(d2r_dyn *m, const d2r_dataset *d,
                     d2r_dyn_metrics *out);

/*
 * Open-loop rollout error: from every `stride`-th step of every episode
 * of d, the model (mode MEAN) is rolled forward under the logged actions
 * and compared with the logged observations.  err[k] is the RMSE, in
 * units of the observation part of the input normaliser, at horizon
 * horizons[k] (>= 1), over the starts whose episode lasts that long;
 * count[k] (may be NULL) is the number of such starts (err is NAN when
 * there are none).  0 or -1.
 */
int d2r_dyn_rollout_error(d2r_dyn *m, const d2r_dataset *d, int stride,
                          int n, const int *horizons, double *err,
                          int64_t *count);

/* ---- prediction and planning -------------------------------------------- */

typedef enum d2r_dyn_mode {
  D2R_DYN_MEAN = 0,   /* the elites' mean prediction */
  D2R_DYN_SAMPLE      /* a draw from a random elite per row */
} d2r_dyn_mode;

/* next_obs [n, obs_dim] for obs [n, obs_dim] and act [n, act_dim]
 * (rng is needed for SAMPLE).  Records no history.  0 or -1. */
int d2r_dyn_predict(d2r_dyn *m, int64_t n, const double *obs,
                    const double *act, d2r_dyn_mode mode, d2r_rng *rng,
                    double *next_obs);

/*
 * The model as a planner's d2r_dynamics: next observations from the
 * model, rewards and done flags from reward_env's known reward function
 * (d2r_env_reward_raw).  reward_env is borrowed (keep it alive), mode as
 * above, seed seeds the SAMPLE draws.  The model keeps this setting until
 * the next call.  0 or -1.
 */
int d2r_dyn_dynamics(d2r_dyn *m, d2r_env *reward_env, d2r_dyn_mode mode,
                     uint64_t seed, d2r_dynamics *out);

#endif

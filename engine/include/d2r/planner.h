/*
 * Model-predictive control by sampling: the cross-entropy method (CEM)
 * and model-predictive path integral control (MPPI) choose each action by
 * rolling candidate action sequences through a one-step model
 * (d2r_dynamics, from env.h: the true simulator or a learned model) and
 * acting on the first step of the plan (receding horizon).
 *
 * CEM (Rubinstein's cross-entropy method as used for planning by Chua et
 * al., PETS, 2018): a diagonal Gaussian over the H x act_dim sequence is
 * sampled (N sequences, clipped into the action box), every sequence is
 * scored by its predicted discounted return, and the Gaussian is moved to
 * the mean and variance of the best K ("elites"), smoothed by alpha:
 * new = alpha old + (1 - alpha) elite.  After `iterations` refits the
 * action is the first step of the mean.
 *
 * MPPI (Williams et al., 2017): N perturbations eps ~ N(0, sigma^2) of a
 * nominal sequence U (the first candidate is U itself), clipped into the
 * box, are weighted by w_i = exp((R_i - max R) / temperature) and U
 * becomes their weighted average; the action is the first step of U.
 *
 * Both warm-start the next decision with the plan shifted by one step
 * (the new last step at the middle of the box; with repeat > 1, once
 * every `repeat` env steps, the rollouts in between starting partway
 * through the first plan step), and both end a rollout's rewards at the
 * first step the model reports done.  A rollout whose
 * return is NaN ranks last.  Randomness comes from the planner's own
 * generator, so a planner reset with the same seed repeats its choices.
 *
 * Ownership and errors follow tensor.h: a planner is made by
 * d2r_planner_new and freed by d2r_planner_free (NULL-safe); failures
 * return NULL or -1 with a message in d2r_error().  A planner allocates
 * its buffers once (on the first decision for a model of a new
 * observation size) and nothing per decision.
 */
#ifndef D2R_PLANNER_H
#define D2R_PLANNER_H

#include <stdint.h>

#include "d2r/env.h"

typedef enum d2r_planner_kind {
  D2R_PLANNER_CEM = 0,
  D2R_PLANNER_MPPI
} d2r_planner_kind;

/* A value of the observation a rollout ends in (obs_dim values), added
 * to its return with the discount of the step after the horizon: it
 * lets a short horizon see progress towards a reward beyond it. */
typedef double (*d2r_value_fn)(void *ctx, const double *obs,
                               int64_t obs_dim);

typedef struct d2r_planner_config {
  d2r_planner_kind kind;
  int horizon;         /* H >= 1 steps per plan */
  int population;      /* N >= 2 sequences per iteration */
  int iterations;      /* >= 1 refinements per decision */
  int elites;          /* CEM: 1 <= K <= N */
  double alpha;        /* CEM: smoothing in [0, 1) */
  double init_std;     /* the sampling std (CEM: the initial one) as a
                        * fraction of half the action range, > 0 */
  double temperature;  /* MPPI: > 0, in units of return */
  double gamma;        /* discount of predicted rewards, in (0, 1] */
  int action_repeat;   /* >= 1: each plan step holds its action for this
                        * many env steps (a horizon of H repeat steps at
                        * the cost of H decisions) */
  uint64_t seed;
  d2r_value_fn terminal;  /* NULL: none; not called after a done flag */
  void *terminal_ctx;     /* borrowed, handed to terminal */
} d2r_planner_config;

/*
 * Defaults: CEM with H 15, N 100, 5 iterations, 10 elites, alpha 0.1,
 * init_std 0.5 (PETS's (high - low) / 4), gamma 1; MPPI with H 15, N 100,
 * 1 iteration, init_std 0.5, temperature 1, gamma 1.  Repeat 1, seed 0,
 * no terminal value.
 */
d2r_planner_config d2r_planner_defaults(d2r_planner_kind kind);
/* "cem" or "mppi" (NULL outside the enum); parse: 0 or -1 with an error. */
const char *d2r_planner_kind_name(d2r_planner_kind kind);
int d2r_planner_kind_parse(const char *name, d2r_planner_kind *out);

typedef struct d2r_planner d2r_planner;

/* A planner for actions of act_dim elements in the box [low, high]
 * (finite, copied).  The configuration is copied.  NULL on an invalid
 * setting (named) or an unbounded box. */
d2r_planner *d2r_planner_new(const d2r_planner_config *cfg, int64_t act_dim,
                             const double *low, const double *high);
/* A planner for the action box of env. */
d2r_planner *d2r_planner_for_env(const d2r_planner_config *cfg,
                                 const d2r_env *env);
void d2r_planner_free(d2r_planner *p);

const d2r_planner_config *d2r_planner_config_of(const d2r_planner *p);
int64_t d2r_planner_act_dim(const d2r_planner *p);
/* Forgets the warm start and reseeds the generator. */
void d2r_planner_reset(d2r_planner *p, uint64_t seed);

/* What the last decision predicted. */
typedef struct d2r_plan_info {
  double best_return;   /* the best sampled sequence's predicted return */
  double plan_return;   /* CEM: the elites' mean; MPPI: weighted mean */
  int64_t model_rows;   /* rows passed to the model: about N H repeat
                         * iterations */
} d2r_plan_info;

/*
 * Chooses an action [act_dim] for observation obs [model->obs_dim]
 * through model (whose act_dim must be the planner's).  info may be
 * NULL.  Fails when the model fails (its message kept).  0 or -1.
 */
int d2r_planner_act(d2r_planner *p, const d2r_dynamics *model,
                    const double *obs, double *action,
                    d2r_plan_info *info);

/*
 * The planner acting through model as an agent for d2r_env_run: begin
 * resets the planner with the episode's agent seed.  The planner keeps a
 * copy of *model (whose ctx must outlive the agent's use).
 */
int d2r_planner_agent(d2r_planner *p, const d2r_dynamics *model,
                      d2r_agent *out);

/*
 * Closed-loop evaluation: `episodes` episodes of env driven by the
 * planner through model; episode i resets env with a seed drawn from a
 * generator seeded with seed (the planner with the next draw).  returns
 * (may be NULL) receives each episode's return [episodes]; *mean the
 * mean return.  0 or -1.
 */
int d2r_planner_evaluate(d2r_planner *p, d2r_env *env,
                         const d2r_dynamics *model, int episodes,
                         uint64_t seed, double *returns, double *mean);

/* The same with uniformly random actions in env's (bounded) box: the
 * baseline a planner must beat. */
int d2r_random_evaluate(d2r_env *env, int episodes, uint64_t seed,
                        double *returns, double *mean);

#endif

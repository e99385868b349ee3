/*
 * Environments for model-based reinforcement learning: one interface
 * (reset with a seed, step with an action, box bounds, an episode limit)
 * behind which sit the built-in simulators of envs.c and environments
 * written elsewhere (a Lua table, through the binding's callbacks); the
 * batched one-step transition a planner uses as its model; and agents,
 * the functions that pick actions, run through whole episodes.
 *
 * Vectors.  Observations and actions are float64 vectors of obs_dim and
 * act_dim elements.  The array functions (suffix _raw) read and write
 * caller-owned buffers and allocate nothing, for hot loops; the tensor
 * functions take and return 1-d tensors ([obs_dim], [act_dim]) or 2-d
 * batches ([N, obs_dim], [N, act_dim]).
 *
 * Actions.  A non-finite action element is an error naming the element.
 * A finite action outside the box is clipped into it before the physics
 * and the reward see it (the built-ins' published definitions clip the
 * same way).
 *
 * Episodes.  d2r_env_reset starts an episode; each d2r_env_step advances
 * it by one step and reports `terminated` (the task's own end: a fallen
 * pole, a reached goal) and `truncated` (the step count reached
 * max_steps, as Gymnasium's TimeLimit reports it; both can be set on the
 * same step).  Stepping before a reset or after either flag is an error.
 * The same seed gives the same episode, bit for bit, for the same
 * actions.
 *
 * Ownership.  A d2r_env is reference-counted: constructors return one
 * reference, d2r_env_release gives it back.  Pointers handed out (name,
 * bounds) are borrowed and live as long as the environment.  Returned
 * tensors are new references.
 *
 * Errors follow tensor.h: NULL or a negative status, with a message in
 * d2r_error() that names the environment.  A NULL environment argument
 * is taken to be an earlier failure and propagates.  An environment is
 * not safe to use from two threads at once.
 */
#ifndef D2R_ENV_H
#define D2R_ENV_H

#include <stdbool.h>
#include <stdint.h>

#include "d2r/tensor.h"

typedef struct d2r_env d2r_env;

/* ---- implementing an environment ---------------------------------------- */

/*
 * What an environment provides.  Each function returns 0, or -1 after
 * setting an error with d2r_fail.  The wrapper has already checked the
 * sizes, rejected non-finite actions and clipped actions into the box.
 *
 *   reset    starts an episode whose randomness comes from seed and
 *            writes the first observation [obs_dim];
 *   step     applies action [act_dim] and writes the next observation,
 *            the reward and whether the episode terminated;
 *   predict  (optional, NULL when unavailable) the same transition for n
 *            independent observations obs [n, obs_dim] under actions
 *            act [n, act_dim], leaving the current episode alone: writes
 *            next_obs [n, obs_dim], reward [n] and done [n] (1 when the
 *            transition terminates, else 0).  This is the true simulator
 *            as a planner's model; it needs an observation that
 *            determines the state (true of every built-in);
 *   reward   (optional) the known reward and termination of n
 *            transitions (obs, act, next_obs): what a learned model of
 *            the next observation is combined with to plan;
 *   free_impl (may be NULL) releases impl when the environment dies.
 *
 * The ops structure must outlive every environment built on it.
 */
typedef struct d2r_env_ops {
  const char *kind;
  int (*reset)(void *impl, uint64_t seed, double *obs);
  int (*step)(void *impl, const double *action, double *obs,
              double *reward, bool *terminated);
  int (*predict)(void *impl, int64_t n, const double *obs,
                 const double *act, double *next_obs, double *reward,
                 double *done);
  int (*reward)(void *impl, int64_t n, const double *obs,
                const double *act, const double *next_obs,
                double *reward, double *done);
  void (*free_impl)(void *impl);
} d2r_env_ops;

/* The interface of an environment; arrays and the name are copied. */
typedef struct d2r_env_spec {
  const char *name;
  int64_t obs_dim, act_dim;          /* >= 1 each */
  const double *obs_low, *obs_high;  /* [obs_dim]; may be -inf / inf */
  const double *act_low, *act_high;  /* [act_dim]; low <= high, not NaN */
  int64_t max_steps;                 /* >= 1 */
} d2r_env_spec;

/*
 * An environment over ops and impl.  Takes ownership of impl (freed by
 * ops->free_impl, also on failure).  NULL on a bad spec (naming the
 * field) or allocation failure.
 */
d2r_env *d2r_env_new(const d2r_env_ops *ops, void *impl,
                     const d2r_env_spec *spec);
d2r_env *d2r_env_retain(d2r_env *e);   /* returns e; NULL-safe */
void d2r_env_release(d2r_env *e);      /* NULL-safe */

/* ---- built-in environments ---------------------------------------------- */

/* A named constant of a built-in (a physical constant, a time step, the
 * episode limit "max_steps"), overriding its standard value. */
typedef struct d2r_env_param {
  const char *key;
  double value;
} d2r_env_param;

/*
 * A built-in environment by name, with the standard constants except
 * for params[0..n) (n may be 0 and params NULL):
 *
 *   "pendulum"      Gymnasium Pendulum-v1: obs (cos th, sin th, thdot),
 *                   torque in [-2, 2], 200 steps;
 *   "mountain_car"  MountainCarContinuous-v0: obs (position, velocity),
 *                   force in [-1, 1], 999 steps;
 *   "cartpole"      CartPole-v1 with a continuous force a * force_mag,
 *                   a in [-1, 1]: obs (x, xdot, th, thdot), 500 steps;
 *   "acrobot"       Acrobot-v1 (book dynamics, one RK4 step of dt) with
 *                   a continuous torque in [-1, 1]: obs (cos th1,
 *                   sin th1, cos th2, sin th2, th1dot, th2dot), 500 steps;
 *   "reacher"       a planar two-link arm (d2r's own, in the manner of
 *                   Gymnasium's Reacher): obs (cos q1, cos q2, sin q1,
 *                   sin q2, target x, y, q1dot, q2dot, tip - target x, y),
 *                   torques in [-1, 1]^2 (scaled by max_torque), 50
 *                   steps.
 *
 * The constants of each, their meanings and the equations are listed in
 * envs.c.  Fails on an unknown name (listing the known ones), an unknown
 * key (listing the environment's keys) or a value out of range.
 */
d2r_env *d2r_env_make(const char *name, int n, const d2r_env_param *params);

/* The built-in names, NULL-terminated (static storage). */
const char *const *d2r_env_builtin_names(void);

/*
 * The constants of a built-in environment made by d2r_env_make: sets *n
 * and points *keys and *values at its n constants (borrowed, valid while
 * e lives).  Fails for an environment that is not built in.
 */
int d2r_env_constants(const d2r_env *e, int *n, const char *const **keys,
                      const double **values);

/* ---- MuJoCo environments ------------------------------------------------- */

/* A reward of n transitions (obs, act, next_obs) into reward [n] and
 * done [n] (1 ends the episode); 0, or -1 with an error. */
typedef int (*d2r_reward_fn)(void *ctx, int64_t n, const double *obs,
                             const double *act, const double *next_obs,
                             double *reward, double *done);

/*
 * An environment simulated by MuJoCo (Debian's libmujoco-dev, optional
 * at build time) from an MJCF model file.  Observations are qpos without
 * its first exclude_qpos entries (the torso's x for a runner), then
 * qvel; actions are the actuators' controls, in their ctrlrange when
 * limited; each step holds the action for frame_skip steps of the
 * model's timestep.  The reward is the caller's function when given,
 * else the runner's: the velocity of the first degree of freedom
 * (qvel[0], forward motion) after the step minus ctrl_cost |a|^2; the
 * episode then never terminates.  A reset sets qpos to the model's
 * default plus uniform noise in [-reset_noise, reset_noise] and qvel to
 * reset_noise times standard normal draws (Gymnasium's MuJoCo
 * convention).  Every step and predict starts MuJoCo's constraint
 * solver cold (no warm start), so predict reproduces step up to the
 * rounding of the excluded positions.
 *
 * MuJoCo reports fatal errors through a global hook; the first MuJoCo
 * environment installs handlers (mju_user_error, mju_user_warning) that
 * turn its errors into d2r errors and keep its warnings silent, so that
 * nothing prints or exits.  Warnings are counted
 * (d2r_env_mujoco_warnings).
 */
typedef struct d2r_mujoco_config {
  const char *model_path;   /* the MJCF file */
  const char *name;         /* NULL: "mujoco" */
  int frame_skip;           /* >= 1 */
  int exclude_qpos;         /* leading qpos entries left out, >= 0 */
  int64_t max_steps;        /* >= 1 */
  double reset_noise;       /* >= 0 */
  double ctrl_cost;         /* the default reward's weight, >= 0 */
  d2r_reward_fn reward;     /* NULL: the default reward */
  void *reward_ctx;         /* handed to reward */
  void (*reward_free)(void *ctx);  /* may be NULL; called when the env
                                    * dies (also on failure) */
} d2r_mujoco_config;

/* frame_skip 5, exclude_qpos 1, 1000 steps, reset_noise 0.1, ctrl_cost
 * 0.1, the default reward. */
d2r_mujoco_config d2r_mujoco_defaults(const char *model_path);
/* True when this build has MuJoCo. */
bool d2r_mujoco_available(void);
/* An environment from c.  Fails (naming the file and MuJoCo's message)
 * on a model that does not load, and in a build without MuJoCo. */
d2r_env *d2r_env_mujoco(const d2r_mujoco_config *c);
/* The reward context of a MuJoCo environment (NULL otherwise). */
void *d2r_env_mujoco_reward_ctx(const d2r_env *e);
/* MuJoCo warnings raised in e so far (an unstable simulation). */
int64_t d2r_env_mujoco_warnings(const d2r_env *e);

/* ---- introspection ------------------------------------------------------ */

const char *d2r_env_name(const d2r_env *e);
const char *d2r_env_kind(const d2r_env *e);
int64_t d2r_env_obs_dim(const d2r_env *e);
int64_t d2r_env_act_dim(const d2r_env *e);
int64_t d2r_env_max_steps(const d2r_env *e);
/* Box bounds (borrowed arrays of obs_dim / act_dim values). */
const double *d2r_env_obs_low(const d2r_env *e);
const double *d2r_env_obs_high(const d2r_env *e);
const double *d2r_env_act_low(const d2r_env *e);
const double *d2r_env_act_high(const d2r_env *e);
/* True when every action bound is finite (planners and random agents
 * need it). */
bool d2r_env_act_bounded(const d2r_env *e);
/* Steps taken in the current episode; -1 before the first reset. */
int64_t d2r_env_elapsed(const d2r_env *e);
/* True between the step that ended an episode and the next reset. */
bool d2r_env_done(const d2r_env *e);
bool d2r_env_has_predict(const d2r_env *e);
bool d2r_env_has_reward(const d2r_env *e);
/* The impl pointer given to d2r_env_new (borrowed). */
void *d2r_env_impl(const d2r_env *e);

/* ---- episodes ----------------------------------------------------------- */

/* What one step reported. */
typedef struct d2r_step_info {
  double reward;
  bool terminated, truncated;
  int64_t elapsed;   /* steps taken in the episode, this one included */
} d2r_step_info;

/* Starts an episode and writes the first observation [obs_dim]. */
int d2r_env_reset_raw(d2r_env *e, uint64_t seed, double *obs);
/* One step with action [act_dim]; writes the observation [obs_dim] and
 * *info.  A non-finite observation from the implementation is an error
 * naming the element. */
int d2r_env_step_raw(d2r_env *e, const double *action, double *obs,
                     d2r_step_info *info);

/* The same with tensors: the first observation [obs_dim]. */
d2r_tensor *d2r_env_reset(d2r_env *e, uint64_t seed);
/* action: [act_dim] (or a one-element tensor when act_dim is 1); returns
 * the observation [obs_dim] and fills *info (which may be NULL). */
d2r_tensor *d2r_env_step(d2r_env *e, d2r_tensor *action,
                         d2r_step_info *info);

/* ---- the environment as a model ----------------------------------------- */

/*
 * ops->predict through the wrapper (actions checked and clipped as by
 * step).  Arrays as documented for d2r_env_ops; n >= 1.  Fails when the
 * environment has no predict.
 */
int d2r_env_predict_raw(d2r_env *e, int64_t n, const double *obs,
                        const double *act, double *next_obs,
                        double *reward, double *done);
/* ops->reward through the wrapper (actions checked and clipped). */
int d2r_env_reward_raw(d2r_env *e, int64_t n, const double *obs,
                       const double *act, const double *next_obs,
                       double *reward, double *done);

/* Tensor forms: obs [N, obs_dim], act [N, act_dim]; on success
 * *next_obs [N, obs_dim], *reward [N] and *done [N] are new references
 * (done may be NULL when not wanted).  0 or -1 (outputs set to NULL). */
int d2r_env_predict(d2r_env *e, d2r_tensor *obs, d2r_tensor *act,
                    d2r_tensor **next_obs, d2r_tensor **reward,
                    d2r_tensor **done);
int d2r_env_reward(d2r_env *e, d2r_tensor *obs, d2r_tensor *act,
                   d2r_tensor *next_obs, d2r_tensor **reward,
                   d2r_tensor **done);

/*
 * A one-step model a planner rolls out: for n observations and actions,
 * writes next_obs [n, obs_dim], reward [n] and done [n] (1 ends the
 * rollout: later rewards do not count).  Returns 0 or -1 with an error.
 * The true simulator (d2r_env_dynamics) and learned models (dynamics.h)
 * both take this form.
 */
typedef int (*d2r_predict_fn)(void *ctx, int64_t n, const double *obs,
                              const double *act, double *next_obs,
                              double *reward, double *done);

typedef struct d2r_dynamics {
  int64_t obs_dim, act_dim;
  d2r_predict_fn predict;
  void *ctx;
} d2r_dynamics;

/* The environment's own predict as a model (e is borrowed: keep it alive
 * while the model is used).  Fails when e has no predict. */
int d2r_env_dynamics(d2r_env *e, d2r_dynamics *out);

/* ---- agents and episodes ------------------------------------------------ */

/*
 * Something that picks actions.  begin (may be NULL) is called at the
 * start of each episode with a seed for the agent's own randomness; act
 * writes action [act_dim] for obs [obs_dim].  Both return 0 or -1 with an
 * error.
 */
typedef struct d2r_agent {
  int (*begin)(void *ctx, uint64_t seed);
  int (*act)(void *ctx, const double *obs, double *action);
  void *ctx;
} d2r_agent;

/* Called after every step of d2r_env_run with the transition (obs,
 * action as clipped into the box, next observation, step info). */
typedef int (*d2r_transition_fn)(void *ctx, const double *obs,
                                 const double *action,
                                 const double *next_obs,
                                 const d2r_step_info *info);

/* What an episode gave. */
typedef struct d2r_episode_stats {
  double ret;        /* sum of rewards (undiscounted) */
  int64_t steps;
  bool terminated;   /* ended by the task rather than the step limit */
} d2r_episode_stats;

/*
 * Runs one episode: reset with env_seed, agent->begin with agent_seed,
 * then act and step until terminated or truncated.  on_step (may be
 * NULL) sees every transition.  Fills *stats.  0 or -1.
 */
int d2r_env_run(d2r_env *e, const d2r_agent *agent, uint64_t env_seed,
                uint64_t agent_seed, d2r_transition_fn on_step,
                void *step_ctx, d2r_episode_stats *stats);

#endif

/*
 * Rewards and objectives for Lua: Mahalanobis rewards (vectors and
 * one-hot classes), likelihood losses, reward transforms, the policy-
 * gradient surrogates with their diagnostics, and the closed-form
 * rewards of the plug-in solver.
 */
#include <math.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/closed_form.h"
#include "d2r/objective.h"
#include "ld2r.h"

static int64_t checkclasses(lua_State *L, int arg) {
  lua_Integer c = luaL_checkinteger(L, arg);
  luaL_argcheck(L, c >= 1, arg, "class count must be positive");
  return (int64_t)c;
}

/* ---- rewards --------------------------------------------------------- */

/* d2r.mahalanobis_reward(yhat, y, U): -(yhat - y)^T U (yhat - y). */
static int f_mahalanobis(lua_State *L) {
  d2r_tensor *yhat = ld2r_checktensor(L, 1);
  d2r_tensor *y = ld2r_checkoperand(L, 2);
  d2r_tensor *U = ld2r_checkoperand(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_mahalanobis_reward(yhat, y, U);
  return ld2r_check(L, *slot, "mahalanobis_reward");
}

/* d2r.onehot_reward(samples, labels, classes, U): [B, G]. */
static int f_onehot(lua_State *L) {
  d2r_tensor *s = ld2r_checkoperand(L, 1);
  d2r_tensor *y = ld2r_checkoperand(L, 2);
  int64_t c = checkclasses(L, 3);
  d2r_tensor *U = ld2r_checkoperand(L, 4);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_onehot_reward(s, y, c, U);
  return ld2r_check(L, *slot, "onehot_reward");
}

/* d2r.onehot_reward_classes(labels, classes, U): [B, classes]. */
static int f_onehot_classes(lua_State *L) {
  d2r_tensor *y = ld2r_checkoperand(L, 1);
  int64_t c = checkclasses(L, 2);
  d2r_tensor *U = ld2r_checkoperand(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_onehot_reward_classes(y, c, U);
  return ld2r_check(L, *slot, "onehot_reward_classes");
}

/* ---- losses ---------------------------------------------------------- */

static int f_cross_entropy(lua_State *L) {
  d2r_tensor *logits = ld2r_checktensor(L, 1);
  d2r_tensor *y = ld2r_checkoperand(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_cross_entropy(logits, y);
  return ld2r_check(L, *slot, "cross_entropy");
}

/* d2r.gaussian_nll(mean, log_std, y [, reduce = "mean"]). */
static int f_gaussian_nll(lua_State *L) {
  d2r_tensor *mean = ld2r_checktensor(L, 1);
  d2r_tensor *log_std = ld2r_checkoperand(L, 2);
  d2r_tensor *y = ld2r_checkoperand(L, 3);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 4, "mean");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_gaussian_nll(mean, log_std, y, red);
  return ld2r_check(L, *slot, "gaussian_nll");
}

static int f_mse(lua_State *L) {
  d2r_tensor *pred = ld2r_checktensor(L, 1);
  d2r_tensor *target = ld2r_checkoperand(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_mse(pred, target);
  return ld2r_check(L, *slot, "mse");
}

/* ---- policy gradient ------------------------------------------------- */

/* Option names, with the enum value of each (aliases included). */
static const char *const transforms[] = {
  "none", "min_shift", "rbf", "min-shift", "normalize", NULL
};
static const int transform_of[] = {
  D2R_TRANSFORM_NONE, D2R_TRANSFORM_MIN_SHIFT, D2R_TRANSFORM_RBF,
  D2R_TRANSFORM_MIN_SHIFT, D2R_TRANSFORM_MIN_SHIFT
};
static const char *const baselines[] = {
  "none", "mean", "mean_std", "loo", "mean-std", "grpo", "rloo", NULL
};
static const int baseline_of[] = {
  D2R_BASELINE_NONE, D2R_BASELINE_MEAN, D2R_BASELINE_MEAN_STD,
  D2R_BASELINE_LOO, D2R_BASELINE_MEAN_STD, D2R_BASELINE_MEAN_STD,
  D2R_BASELINE_LOO
};
static const char *const pg_fields[] = {
  "transform", "gamma", "baseline", "std_eps", "clip", "reward_grad", NULL
};

/* Reads {transform =, gamma =, baseline =, std_eps =, clip =,
 * reward_grad =} at arg. */
static void checkpg(lua_State *L, int arg, d2r_pg_options *o) {
  *o = d2r_pg_options_default();
  ld2r_checkfields(L, arg, pg_fields);
  o->transform = (d2r_transform)transform_of[ld2r_optchoice(L, arg,
                 "transform", 0, transforms)];
  o->gamma = ld2r_optnumber(L, arg, "gamma", o->gamma);
  o->baseline = (d2r_baseline)baseline_of[ld2r_optchoice(L, arg,
                "baseline", 0, baselines)];
  o->std_eps = ld2r_optnumber(L, arg, "std_eps", o->std_eps);
  o->clip = ld2r_optnumber(L, arg, "clip", o->clip);
  o->reward_grad = ld2r_optbool(L, arg, "reward_grad", o->reward_grad);
}

/* d2r.pg_transform(reward [, options]): transformed rewards, detached. */
static int f_pg_transform(lua_State *L) {
  d2r_pg_options o;
  d2r_tensor *r = ld2r_checktensor(L, 1);
  d2r_tensor **slot;
  checkpg(L, 2, &o);
  slot = ld2r_newtensor(L);
  *slot = d2r_pg_transform(r, &o);
  return ld2r_check(L, *slot, "pg_transform");
}

static void pushstats(lua_State *L, const d2r_pg_stats *s) {
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, s->reward_mean);
  lua_setfield(L, -2, "reward_mean");
  lua_pushnumber(L, s->transformed_mean);
  lua_setfield(L, -2, "transformed_mean");
  if (!isnan(s->entropy_mean)) {
    lua_pushnumber(L, s->entropy_mean);
    lua_setfield(L, -2, "entropy_mean");
  }
}

/* The entropy argument: a tensor, or nil for none.  A nil is passed on
 * as NULL with no message pending, so that the engine reports it (when
 * lambda is not 0) rather than repeating an earlier, caught failure. */
static d2r_tensor *optentropy(lua_State *L, int arg) {
  if (!lua_isnil(L, arg))
    return ld2r_checktensor(L, arg);
  d2r_clear_error();
  return NULL;
}

/* d2r.pg_surrogate(logp, reward, entropy, lambda [, options]): the loss
 * and a table of diagnostics; entropy may be nil when lambda is 0. */
static int f_pg_surrogate(lua_State *L) {
  d2r_pg_options o;
  d2r_pg_stats st;
  d2r_tensor *logp = ld2r_checktensor(L, 1);
  d2r_tensor *r = ld2r_checktensor(L, 2);
  d2r_tensor *h = optentropy(L, 3);
  double lambda = luaL_checknumber(L, 4);
  d2r_tensor **slot;
  checkpg(L, 5, &o);
  slot = ld2r_newtensor(L);
  *slot = d2r_pg_surrogate(logp, r, h, lambda, &o, &st);
  ld2r_check(L, *slot, "pg_surrogate");
  pushstats(L, &st);
  return 2;
}

/* d2r.pg_surrogate_counts(logp, reward, counts, entropy, lambda
 * [, options]): the loss and its diagnostics, from class counts. */
static int f_pg_surrogate_counts(lua_State *L) {
  d2r_pg_options o;
  d2r_pg_stats st;
  d2r_tensor *logp = ld2r_checktensor(L, 1);
  d2r_tensor *r = ld2r_checktensor(L, 2);
  d2r_tensor *n = ld2r_checktensor(L, 3);
  d2r_tensor *h = optentropy(L, 4);
  double lambda = luaL_checknumber(L, 5);
  d2r_tensor **slot;
  checkpg(L, 6, &o);
  slot = ld2r_newtensor(L);
  *slot = d2r_pg_surrogate_counts(logp, r, n, h, lambda, &o, &st);
  ld2r_check(L, *slot, "pg_surrogate_counts");
  pushstats(L, &st);
  return 2;
}

/* d2r.pathwise_surrogate(reward, entropy, lambda): loss, diagnostics. */
static int f_pathwise(lua_State *L) {
  d2r_pg_stats st;
  d2r_tensor *r = ld2r_checktensor(L, 1);
  d2r_tensor *h = optentropy(L, 2);
  double lambda = luaL_checknumber(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_pathwise_surrogate(r, h, lambda, &st);
  ld2r_check(L, *slot, "pathwise_surrogate");
  pushstats(L, &st);
  return 2;
}

/* ---- closed forms ---------------------------------------------------- */

static int f_covariance(lua_State *L) {
  d2r_tensor *y = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_covariance(y);
  return ld2r_check(L, *slot, "covariance");
}

/* d2r.reward_isotropic(y, lambda): u* as a 0-d tensor. */
static int f_isotropic(lua_State *L) {
  d2r_tensor *y = ld2r_checktensor(L, 1);
  double lambda = luaL_checknumber(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_reward_isotropic(y, lambda);
  return ld2r_check(L, *slot, "reward_isotropic");
}

/* d2r.reward_diagonal(y, lambda): u* [n]. */
static int f_diagonal(lua_State *L) {
  d2r_tensor *y = ld2r_checktensor(L, 1);
  double lambda = luaL_checknumber(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_reward_diagonal(y, lambda);
  return ld2r_check(L, *slot, "reward_diagonal");
}

/* d2r.reward_onehot_beta(labels, classes, lambda): beta* (a number). */
static int f_onehot_beta(lua_State *L) {
  d2r_tensor *y = ld2r_checkoperand(L, 1);
  int64_t c = checkclasses(L, 2);
  double lambda = luaL_checknumber(L, 3), beta = 0;
  ld2r_checkstatus(L, d2r_reward_onehot_beta(y, c, lambda, &beta),
                   "reward_onehot_beta");
  lua_pushnumber(L, beta);
  return 1;
}

static const luaL_Reg functions[] = {
  {"mahalanobis_reward", f_mahalanobis}, {"onehot_reward", f_onehot},
  {"onehot_reward_classes", f_onehot_classes},
  {"pg_surrogate_counts", f_pg_surrogate_counts},
  {"cross_entropy", f_cross_entropy}, {"gaussian_nll", f_gaussian_nll},
  {"mse", f_mse}, {"pg_transform", f_pg_transform},
  {"pg_surrogate", f_pg_surrogate}, {"pathwise_surrogate", f_pathwise},
  {"covariance", f_covariance}, {"reward_isotropic", f_isotropic},
  {"reward_diagonal", f_diagonal}, {"reward_onehot_beta", f_onehot_beta},
  {NULL, NULL}
};

/* With the module table at the top: adds the functions. */
int ld2r_open_objective(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  return 0;
}

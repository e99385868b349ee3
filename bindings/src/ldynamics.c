/*
 * Learned dynamics models for Lua: the type d2r.Dynamics (an ensemble of
 * Gaussian MLPs over normalised [s, a]), its losses for custom training
 * loops and bilevel solvers, training, the paper's metrics, rollouts,
 * and its use as a planner's model through the reward function of the
 * environment it was made for.  Member numbers are 1-based, as Lua
 * positions are.
 */
#include <math.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/dynamics.h"
#include "ld2r.h"
#include "lenv.h"

typedef struct ldyn {
  d2r_dyn *m;
  d2r_dyn_mode mode;   /* for planning */
  uint64_t seed;
} ldyn;

static ldyn *checkldyn(lua_State *L, int arg) {
  ldyn *u = luaL_checkudata(L, arg, LD2R_DYNAMICS);
  if (u->m == NULL) luaL_argerror(L, arg, "dynamics model has been closed");
  return u;
}

static d2r_dyn *checkdyn(lua_State *L, int arg) {
  return checkldyn(L, arg)->m;
}

/* A 1-based member number at arg as a 0-based index. */
static int checkmember(lua_State *L, int arg, d2r_dyn *m) {
  lua_Integer i = luaL_checkinteger(L, arg);
  if (i < 1 || i > d2r_dyn_members(m))
    luaL_argerror(L, arg, lua_pushfstring(L, "member must be in 1..%d",
                  d2r_dyn_members(m)));
  return (int)i - 1;
}

static int y_gc(lua_State *L) {
  ldyn *u = luaL_checkudata(L, 1, LD2R_DYNAMICS);
  d2r_dyn_free(u->m);
  u->m = NULL;
  return 0;
}

static int y_close(lua_State *L) {
  luaL_checkudata(L, 1, LD2R_DYNAMICS);
  if (ld2r_in_callback()) return ld2r_refuse_close(L, "d2r.Dynamics");
  return y_gc(L);
}

static int y_tostring(lua_State *L) {
  ldyn *u = luaL_checkudata(L, 1, LD2R_DYNAMICS);
  if (u->m == NULL) {
    lua_pushliteral(L, "d2r.Dynamics(closed)");
    return 1;
  }
  const d2r_dyn_config *c = d2r_dyn_get_config(u->m);
  lua_pushfstring(L, "d2r.Dynamics(obs %I, act %I, %s, %d members, %d "
                  "elites)", (lua_Integer)c->obs_dim,
                  (lua_Integer)c->act_dim,
                  c->target == D2R_DYN_DELTA ? "delta" : "next",
                  c->ensemble, c->elites);
  return 1;
}

bool ld2r_testdynamics(lua_State *L, int idx, d2r_dynamics *out,
                       d2r_env **reward_env) {
  ldyn *u = luaL_testudata(L, idx, LD2R_DYNAMICS);
  if (u == NULL) return false;
  if (u->m == NULL) luaL_argerror(L, idx, "dynamics model has been closed");
  if (lua_getiuservalue(L, idx, 1) != LUA_TUSERDATA)
    luaL_error(L, "a dynamics model plans with the reward function of its "
               "env: make it with d2r.dynamics{env = ...}");
  d2r_env *e = ld2r_checkenv(L, -1);
  lua_pop(L, 1);
  if (d2r_dyn_dynamics(u->m, e, u->mode, u->seed, out) < 0)
    ld2r_fail(L, "model");
  *reward_env = e;
  return true;
}

/* ---- construction ------------------------------------------------------- */

/* d2r.dynamics{env = | obs_dim =, act_dim =, target =, hidden =,
 * activation =, log_std =, log_std_init =, bounded =, min_log_std =,
 * max_log_std =, learn_bounds =, std_floor =, ensemble =, elites =,
 * seed =}: a model with fresh parameters. */
static int f_dynamics(lua_State *L) {
  static const char *const known[] = {
    "env", "obs_dim", "act_dim", "target", "hidden", "activation",
    "log_std", "log_std_init", "bounded", "min_log_std", "max_log_std",
    "learn_bounds", "std_floor", "ensemble", "elites", "seed", NULL
  };
  static const char *const targets[] = {"delta", "next", NULL};
  static const char *const log_stds[] = {"head", "global", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  int64_t od = ld2r_optint(L, 1, "obs_dim", 0);
  int64_t ad = ld2r_optint(L, 1, "act_dim", 0);
  if (lua_getfield(L, 1, "env") != LUA_TNIL) {  /* 2 */
    d2r_env *e = ld2r_checkenv(L, 2);
    od = d2r_env_obs_dim(e);
    ad = d2r_env_act_dim(e);
  }
  if (od < 1 || ad < 1)
    return luaL_argerror(L, 1, "give 'env' or 'obs_dim' and 'act_dim'");
  d2r_dyn_config c = d2r_dyn_config_default(od, ad);
  int64_t hidden[64];
  if (lua_getfield(L, 1, "hidden") != LUA_TNIL) {  /* 3 */
    luaL_checktype(L, 3, LUA_TTABLE);
    int nh = (int)lua_rawlen(L, 3);
    luaL_argcheck(L, nh <= 64, 1, "too many hidden layers");
    for (int i = 0; i < nh; i++) {
      int isint;
      lua_rawgeti(L, 3, i + 1);
      hidden[i] = (int64_t)lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint && hidden[i] >= 1, 1,
                    "hidden sizes must be positive integers");
      lua_pop(L, 1);
    }
    c.nhidden = nh;
    c.hidden = hidden;
  }
  lua_getfield(L, 1, "activation");  /* 4 */
  if (!lua_isnil(L, 4) &&
      d2r_activation_parse(luaL_checkstring(L, 4), &c.act) < 0)
    return luaL_argerror(L, 1, d2r_error());
  c.target = ld2r_optchoice(L, 1, "target", 0, targets) == 0
    ? D2R_DYN_DELTA : D2R_DYN_NEXT;
  c.log_std = ld2r_optchoice(L, 1, "log_std", 0, log_stds) == 0
    ? D2R_LOG_STD_HEAD : D2R_LOG_STD_GLOBAL;
  c.log_std_init = ld2r_optnumber(L, 1, "log_std_init", c.log_std_init);
  c.bounded = ld2r_optbool(L, 1, "bounded", c.bounded);
  c.min_log_std = ld2r_optnumber(L, 1, "min_log_std", c.min_log_std);
  c.max_log_std = ld2r_optnumber(L, 1, "max_log_std", c.max_log_std);
  c.learn_bounds = ld2r_optbool(L, 1, "learn_bounds", c.learn_bounds);
  c.std_floor = ld2r_optnumber(L, 1, "std_floor", c.std_floor);
  c.ensemble = (int)ld2r_optint(L, 1, "ensemble", c.ensemble);
  c.elites = (int)ld2r_optint(L, 1, "elites", c.ensemble);
  uint64_t seed = (uint64_t)ld2r_optint(L, 1, "seed", 0);
  d2r_rng *rng = d2r_rng_new(seed);
  if (rng == NULL) return luaL_error(L, "dynamics: out of memory");
  ldyn *u = lua_newuserdatauv(L, sizeof(*u), 1);
  u->m = NULL;
  u->mode = D2R_DYN_MEAN;
  u->seed = 0;
  luaL_setmetatable(L, LD2R_DYNAMICS);
  u->m = d2r_dyn_new(&c, rng);
  d2r_rng_free(rng);
  if (u->m == NULL) return ld2r_fail(L, "dynamics");
  if (!lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 1);
  }
  return 1;
}

/* ---- data --------------------------------------------------------------- */

static int y_fit(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  ld2r_checkstatus(L, d2r_dyn_fit(m, ld2r_checkdataset(L, 2)), "fit");
  lua_settop(L, 1);
  return 1;
}

/* dyn:data(ds): normalised inputs and targets. */
static int y_data(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_dataset *d = ld2r_checkdataset(L, 2);
  d2r_tensor **x = ld2r_newtensor(L), **y = ld2r_newtensor(L);
  ld2r_checkstatus(L, d2r_dyn_data(m, d, x, y), "data");
  return 2;
}

static int y_inputs(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_tensor *o = ld2r_checkoperand(L, 2), *a = ld2r_checkoperand(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_dyn_inputs(m, o, a);
  return ld2r_check(L, *slot, "inputs");
}

static int y_targets(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_tensor *o = ld2r_checkoperand(L, 2), *n = ld2r_checkoperand(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_dyn_targets(m, o, n);
  return ld2r_check(L, *slot, "targets");
}

/* dyn:normalizers(): {in_mean, in_std, out_mean, out_std}. */
static int y_normalizers(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  static const char *const names[4] = {"in_mean", "in_std", "out_mean",
                                        "out_std"};
  lua_createtable(L, 0, 4);
  d2r_tensor **s[4];
  for (int i = 0; i < 4; i++) {
    s[i] = ld2r_newtensor(L);
    lua_setfield(L, -2, names[i]);
  }
  d2r_tensor *t[4];
  ld2r_checkstatus(L, d2r_dyn_normalizers(m, &t[0], &t[1], &t[2], &t[3]),
                   "normalizers");
  for (int i = 0; i < 4; i++) *s[i] = t[i];
  return 1;
}

/* ---- members and losses ------------------------------------------------- */

static int y_members(lua_State *L) {
  lua_pushinteger(L, d2r_dyn_members(checkdyn(L, 1)));
  return 1;
}

/* dyn:parameters(member): member's parameter tensors (shared). */
static int y_parameters(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_policy *p = d2r_dyn_member(m, checkmember(L, 2, m));
  ld2r_pushtensorlist(L, d2r_policy_nparams(p), d2r_policy_params(p));
  return 1;
}

/* dyn:dist(member, x): mean and log-std [N, obs_dim] (differentiable). */
static int y_dist(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_policy *p = d2r_dyn_member(m, checkmember(L, 2, m));
  d2r_tensor *x = ld2r_checkoperand(L, 3);
  d2r_tensor **mu = ld2r_newtensor(L), **ls = ld2r_newtensor(L);
  d2r_pdist d = D2R_PDIST_INIT;
  ld2r_checkstatus(L, d2r_policy_dist(p, x, &d), "dist");
  *mu = d2r_retain(d.mean);
  *ls = d2r_retain(d.log_std);
  d2r_pdist_clear(&d);
  return 2;
}

static const char *const loss_fields[] = {
  "loss", "U", "lambda", "group", "transform", "gamma", "baseline",
  "std_eps", "clip_logp", "reward_grad", "bounds_penalty", "rng", NULL
};

/* Reads the loss options at arg into *lc; U may be a tensor (left on
 * the stack) or, when d is given, a kind for d2r_dyn_reward_matrix. */
static void read_loss(lua_State *L, int arg, d2r_dyn *m,
                      const d2r_dataset *d, d2r_dyn_loss_config *lc) {
  static const char *const kinds[] = {"mse", "nll", "pg", NULL};
  static const char *const transforms[] = {"none", "min_shift", "rbf",
                                           NULL};
  static const char *const baselines[] = {"none", "mean", "mean_std",
                                          "loo", NULL};
  *lc = d2r_dyn_loss_default((d2r_dyn_loss_kind)ld2r_optchoice(
    L, arg, "loss", 0, kinds));
  lc->lambda = ld2r_optnumber(L, arg, "lambda", lc->lambda);
  lc->group = (int)ld2r_optint(L, arg, "group", lc->group);
  lc->pg.transform = (d2r_transform)ld2r_optchoice(L, arg, "transform",
                                                   0, transforms);
  lc->pg.gamma = ld2r_optnumber(L, arg, "gamma", lc->pg.gamma);
  lc->pg.baseline = (d2r_baseline)ld2r_optchoice(L, arg, "baseline", 0,
                                                 baselines);
  lc->pg.std_eps = ld2r_optnumber(L, arg, "std_eps", lc->pg.std_eps);
  lc->pg.clip = ld2r_optnumber(L, arg, "clip_logp", lc->pg.clip);
  lc->pg.reward_grad = ld2r_optbool(L, arg, "reward_grad",
                                    lc->pg.reward_grad);
  lc->bounds_penalty = ld2r_optnumber(L, arg, "bounds_penalty",
                                      lc->bounds_penalty);
  int t = lua_getfield(L, arg, "U");
  if (t == LUA_TSTRING && d != NULL) {
    d2r_tensor **slot = ld2r_newtensor(L);
    *slot = d2r_dyn_reward_matrix(m, d, lua_tostring(L, -2), lc->lambda);
    ld2r_check(L, *slot, "reward_matrix");
    lc->U = *slot;
  } else if (t != LUA_TNIL) {
    if (t == LUA_TSTRING)
      luaL_argerror(L, arg, "'U' must be a tensor here (a kind such as "
                    "\"full\" needs the training set: use train{})");
    lc->U = ld2r_checkoperand(L, lua_gettop(L));
  }
}

/* dyn:loss(member, x, y, {loss =, U =, lambda =, group =, ..., rng =}):
 * the 0-d loss with history, and the PG diagnostics for loss "pg". */
static int y_loss(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  int i = checkmember(L, 2, m);
  d2r_tensor *x = ld2r_checkoperand(L, 3), *y = ld2r_checkoperand(L, 4);
  luaL_checktype(L, 5, LUA_TTABLE);
  lua_settop(L, 5);
  ld2r_checkfields(L, 5, loss_fields);
  d2r_dyn_loss_config lc;
  read_loss(L, 5, m, NULL, &lc);
  d2r_rng *rng = NULL;
  if (lua_getfield(L, 5, "rng") != LUA_TNIL)
    rng = ld2r_checkrng(L, lua_gettop(L));
  if (lc.kind == D2R_DYN_PG && rng == NULL)
    return luaL_argerror(L, 5, "the pg loss needs 'rng'");
  d2r_pg_stats st = {NAN, NAN, NAN};
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_dyn_loss(m, i, x, y, &lc, rng, &st);
  ld2r_check(L, *slot, "loss");
  if (lc.kind != D2R_DYN_PG) return 1;
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, st.reward_mean);
  lua_setfield(L, -2, "reward_mean");
  lua_pushnumber(L, st.transformed_mean);
  lua_setfield(L, -2, "transformed_mean");
  lua_pushnumber(L, st.entropy_mean);
  lua_setfield(L, -2, "entropy_mean");
  return 2;
}

/* dyn:reward_matrix(ds, kind [, lambda]). */
static int y_reward_matrix(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_dataset *d = ld2r_checkdataset(L, 2);
  const char *kind = luaL_checkstring(L, 3);
  double lambda = luaL_optnumber(L, 4, 1.0);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_dyn_reward_matrix(m, d, kind, lambda);
  return ld2r_check(L, *slot, "reward_matrix");
}

/* ---- training and evaluation -------------------------------------------- */

/* dyn:train{train =, val =, loss =, U = (tensor or "identity",
 * "isotropic", "diagonal", "full"), lambda =, group =, ..., lr =,
 * steps =, batch =, bootstrap =, clip =, seed =}: {loss, skipped,
 * val_mse}. */
static int y_train(lua_State *L) {
  static const char *const known[] = {
    "train", "val", "loss", "U", "lambda", "group", "transform", "gamma",
    "baseline", "std_eps", "clip_logp", "reward_grad", "bounds_penalty",
    "lr", "steps", "batch", "bootstrap", "clip", "seed", NULL
  };
  d2r_dyn *m = checkdyn(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  ld2r_checkfields(L, 2, known);
  lua_getfield(L, 2, "train");  /* 3 */
  d2r_dataset *train = ld2r_checkdataset(L, 3);
  d2r_dataset *val = NULL;
  if (lua_getfield(L, 2, "val") != LUA_TNIL)  /* 4 */
    val = ld2r_checkdataset(L, 4);
  d2r_dyn_train_config tc = d2r_dyn_train_default(D2R_DYN_MSE);
  if (!d2r_dyn_fitted(m))
    ld2r_checkstatus(L, d2r_dyn_fit(m, train), "train");
  read_loss(L, 2, m, train, &tc.loss);
  tc.lr = ld2r_optnumber(L, 2, "lr", tc.lr);
  tc.steps = (int)ld2r_optint(L, 2, "steps", tc.steps);
  tc.batch = (int64_t)ld2r_optint(L, 2, "batch", 0);
  tc.bootstrap = ld2r_optbool(L, 2, "bootstrap", 0);
  tc.clip = ld2r_optnumber(L, 2, "clip", 0);
  tc.seed = (uint64_t)ld2r_optint(L, 2, "seed", 0);
  if (tc.loss.kind == D2R_DYN_PG && tc.loss.U == NULL)
    return luaL_argerror(L, 2, "the pg loss needs 'U' (a tensor, or "
                         "\"identity\", \"isotropic\", \"diagonal\", "
                         "\"full\")");
  d2r_dyn_train_report rep;
  ld2r_checkstatus(L, d2r_dyn_train(m, train, val, &tc, &rep), "train");
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, rep.loss);
  lua_setfield(L, -2, "loss");
  lua_pushinteger(L, (lua_Integer)rep.skipped);
  lua_setfield(L, -2, "skipped");
  lua_pushnumber(L, rep.val_mse);
  lua_setfield(L, -2, "val_mse");
  if (tc.loss.U) {
    d2r_tensor **slot = ld2r_newtensor(L);
    *slot = d2r_retain(tc.loss.U);
    lua_setfield(L, -2, "U");
  }
  return 1;
}

/* dyn:evaluate(ds): {rmse, nll, rmse_raw}. */
static int y_evaluate(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_dyn_metrics mt;
  ld2r_checkstatus(L, d2r_dyn_evaluate(m, ld2r_checkdataset(L, 2), &mt),
                   "evaluate");
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, mt.rmse);
  lua_setfield(L, -2, "rmse");
  lua_pushnumber(L, mt.nll);
  lua_setfield(L, -2, "nll");
  lua_pushnumber(L, mt.rmse_raw);
  lua_setfield(L, -2, "rmse_raw");
  return 1;
}

/* dyn:rollout_error(ds [, horizons [, stride]]): errors and counts, one
 * per horizon ({1, 5, 10, 25} and stride 1 by default). */
static int y_rollout_error(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  d2r_dataset *d = ld2r_checkdataset(L, 2);
  int hs[64] = {1, 5, 10, 25}, n = 4;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    n = (int)lua_rawlen(L, 3);
    luaL_argcheck(L, n >= 1 && n <= 64, 3, "1 to 64 horizons");
    for (int k = 0; k < n; k++) {
      int isint;
      lua_rawgeti(L, 3, k + 1);
      hs[k] = (int)lua_tointegerx(L, -1, &isint);
      luaL_argcheck(L, isint && hs[k] >= 1, 3, "horizons must be "
                    "positive integers");
      lua_pop(L, 1);
    }
  }
  int stride = (int)luaL_optinteger(L, 4, 1);
  double err[64];
  int64_t cnt[64];
  ld2r_checkstatus(L, d2r_dyn_rollout_error(m, d, stride, n, hs, err, cnt),
                   "rollout_error");
  lua_createtable(L, n, 0);
  lua_createtable(L, n, 0);
  for (int k = 0; k < n; k++) {
    lua_pushnumber(L, err[k]);
    lua_rawseti(L, -3, k + 1);
    lua_pushinteger(L, (lua_Integer)cnt[k]);
    lua_rawseti(L, -2, k + 1);
  }
  return 2;
}

static const char *const modes[] = {"mean", "sample", NULL};

/* dyn:predict(obs, act [, {mode =, rng =}]): next observations. */
static int y_predict(lua_State *L) {
  static const char *const known[] = {"mode", "rng", NULL};
  d2r_dyn *m = checkdyn(L, 1);
  d2r_tensor *o = ld2r_checkoperand(L, 2), *a = ld2r_checkoperand(L, 3);
  lua_settop(L, 4);
  ld2r_checkfields(L, 4, known);
  d2r_dyn_mode mode = (d2r_dyn_mode)ld2r_optchoice(L, 4, "mode", 0,
                                                   modes);
  d2r_rng *rng = NULL;
  if (!lua_isnil(L, 4) && lua_getfield(L, 4, "rng") != LUA_TNIL)
    rng = ld2r_checkrng(L, lua_gettop(L));
  if (mode == D2R_DYN_SAMPLE && rng == NULL)
    return luaL_error(L, "predict: mode \"sample\" needs a generator "
                      "(rng = d2r.rng(seed))");
  const d2r_dyn_config *c = d2r_dyn_get_config(m);
  if (d2r_ndim(o) != 2 || d2r_dim(o, 1) != c->obs_dim ||
      d2r_ndim(a) != 2 || d2r_dim(a, 1) != c->act_dim ||
      d2r_dim(o, 0) != d2r_dim(a, 0))
    return luaL_error(L, "predict: obs must be [N, %I] and act [N, %I]",
                      (lua_Integer)c->obs_dim, (lua_Integer)c->act_dim);
  int64_t shape[2] = {d2r_dim(o, 0), c->obs_dim};
  d2r_tensor *oc = d2r_contiguous(o), *ac = d2r_contiguous(a);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_empty(2, shape);
  int rc = oc && ac && *slot
    ? d2r_dyn_predict(m, shape[0], d2r_data(oc), d2r_data(ac), mode, rng,
                      d2r_data(*slot)) : -1;
  d2r_release(oc);
  d2r_release(ac);
  ld2r_checkstatus(L, rc, "predict");
  return 1;
}

/* dyn:plan_mode(mode [, seed]): how it predicts as a planner's model. */
static int y_plan_mode(lua_State *L) {
  ldyn *u = checkldyn(L, 1);
  u->mode = (d2r_dyn_mode)luaL_checkoption(L, 2, NULL, modes);
  u->seed = (uint64_t)luaL_optinteger(L, 3, 0);
  lua_settop(L, 1);
  return 1;
}

/* dyn:elites(): the elite members (1-based). */
static int y_elites(lua_State *L) {
  int n;
  const int *e = d2r_dyn_elites(checkdyn(L, 1), &n);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, e[i] + 1);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int y_set_elites(lua_State *L) {
  d2r_dyn *m = checkdyn(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 2), idx[1000];
  luaL_argcheck(L, n >= 1 && n <= 1000, 2, "1 to 1000 elites");
  /* Member numbers are 1-based here: checked here, so that messages
   * use the numbers the caller wrote. */
  int members = d2r_dyn_members(m);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    int isnum = 0;
    lua_Integer k = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum || k < 1 || k > members)
      return luaL_error(L, "set_elites: entry %d is not a member number "
                        "(1..%d)", i + 1, members);
    idx[i] = (int)k - 1;
    for (int j = 0; j < i; j++)
      if (idx[j] == idx[i])
        return luaL_error(L, "set_elites: member %d is listed twice",
                          (int)k);
  }
  ld2r_checkstatus(L, d2r_dyn_set_elites(m, n, idx), "set_elites");
  lua_settop(L, 1);
  return 1;
}

/* ---- registration ------------------------------------------------------- */

static const luaL_Reg methods[] = {
  {"fit", y_fit}, {"data", y_data}, {"inputs", y_inputs},
  {"targets", y_targets}, {"normalizers", y_normalizers},
  {"members", y_members}, {"parameters", y_parameters}, {"dist", y_dist},
  {"loss", y_loss}, {"reward_matrix", y_reward_matrix},
  {"train", y_train}, {"evaluate", y_evaluate},
  {"rollout_error", y_rollout_error}, {"predict", y_predict},
  {"plan_mode", y_plan_mode}, {"elites", y_elites},
  {"set_elites", y_set_elites}, {"close", y_close},
  {NULL, NULL}
};

int ld2r_open_dynamics(lua_State *L) {
  luaL_newmetatable(L, LD2R_DYNAMICS);
  lua_pushcfunction(L, y_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, y_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, y_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, f_dynamics);
  lua_setfield(L, -2, "dynamics");
  return 0;
}

/*
 * Environments, logged datasets and planners for Lua: the types d2r.Env
 * (built-in simulators, and environments written in Lua as a table of
 * functions), d2r.Dataset and d2r.Planner, with collection, closed-loop
 * evaluation and episodes driven by Lua policies.
 *
 * Lua functions called by the engine (an environment's reset and step, a
 * policy, a model) run under lua_pcall inside a trampoline that also
 * converts their arguments and results, so a Lua error or a malformed
 * result becomes an engine failure and no longjmp crosses engine frames.
 * An environment written in Lua keeps its table in the Env userdata's
 * user value and in a weak registry map keyed by the engine object; the
 * thread that runs its callbacks is the one of the binding call in
 * progress, set on entry and restored on exit.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/dataset.h"
#include "d2r/env.h"
#include "d2r/planner.h"
#include "ld2r.h"
#include "lenv.h"

#define LUA_ENVS "d2r.LuaEnvs"

/* ---- Lua functions as engine callbacks ---------------------------------- */

enum { CB_RESET, CB_STEP, CB_PREDICT, CB_REWARD, CB_ACT };

/* One call of a Lua function by the engine: its inputs and outputs. */
typedef struct cb_call {
  int what;
  int64_t n, od, ad;
  uint64_t seed;
  const double *obs, *act, *next_in;
  double *out_obs, *out_r, *out_done;
  bool *term;
} cb_call;

/* Pushes a new tensor [rows, cols] (or [cols] when rows is 0) holding a
 * copy of v. */
static void push_values(lua_State *L, int64_t rows, int64_t cols,
                        const double *v) {
  d2r_tensor **slot = ld2r_newtensor(L);
  int64_t shape[2] = {rows, cols};
  *slot = rows ? d2r_from_data(2, shape, v) : d2r_from_data(1, &cols, v);
  ld2r_check(L, *slot, "callback");
}

/* Copies the value at idx (a tensor, a number or a table of numbers)
 * into out, which holds n values; raises naming `what` otherwise. */
static void read_values(lua_State *L, int idx, int64_t n, double *out,
                        const char *what) {
  idx = lua_absindex(L, idx);
  int t = lua_type(L, idx);
  if (t == LUA_TNUMBER && n == 1) {
    out[0] = lua_tonumber(L, idx);
    return;
  }
  if (t != LUA_TTABLE && ld2r_testtensor(L, idx) == NULL)
    luaL_error(L, "%s must be a tensor or a table of %I numbers, got %s",
               what, (lua_Integer)n, luaL_typename(L, idx));
  d2r_tensor *v = ld2r_checkoperand(L, idx);
  if (d2r_numel(v) != n) {
    char buf[64];
    luaL_error(L, "%s must hold %I values, got shape %s", what,
               (lua_Integer)n, d2r_shape_str(v, buf, sizeof buf));
  }
  d2r_tensor *c = d2r_contiguous(v);
  if (c == NULL) ld2r_fail(L, what);
  memcpy(out, d2r_data(c), (size_t)n * sizeof(double));
  d2r_release(c);
}

/* Done flags at idx: nil (none), a boolean (n == 1), or values != 0. */
static void read_done(lua_State *L, int idx, int64_t n, double *out,
                      const char *what) {
  if (lua_isnil(L, idx)) {
    memset(out, 0, (size_t)n * sizeof(double));
    return;
  }
  if (lua_isboolean(L, idx) && n == 1) {
    out[0] = lua_toboolean(L, idx) ? 1.0 : 0.0;
    return;
  }
  read_values(L, idx, n, out, what);
  for (int64_t i = 0; i < n; i++) out[i] = out[i] != 0 ? 1.0 : 0.0;
}

/* Runs under lua_pcall: arg 1 is the function, arg 2 the cb_call. */
static int trampoline(lua_State *L) {
  cb_call *c = lua_touserdata(L, 2);
  lua_settop(L, 1);
  luaL_checkstack(L, 8, "callback");
  switch (c->what) {
  case CB_RESET:
    lua_pushinteger(L, (lua_Integer)c->seed);
    lua_call(L, 1, 1);
    read_values(L, 1, c->od, c->out_obs, "reset's observation");
    break;
  case CB_STEP:
    push_values(L, 0, c->ad, c->act);
    lua_call(L, 1, 3);
    read_values(L, 1, c->od, c->out_obs, "step's observation");
    if (!lua_isnumber(L, 2))
      luaL_error(L, "step's reward must be a number, got %s",
                 luaL_typename(L, 2));
    *c->out_r = lua_tonumber(L, 2);
    if (!lua_isnil(L, 3) && !lua_isboolean(L, 3))
      luaL_error(L, "step's terminated flag must be a boolean, got %s",
                 luaL_typename(L, 3));
    *c->term = lua_toboolean(L, 3);
    break;
  case CB_PREDICT:
    push_values(L, c->n, c->od, c->obs);
    push_values(L, c->n, c->ad, c->act);
    lua_call(L, 2, 3);
    read_values(L, 1, c->n * c->od, c->out_obs, "the predicted "
                "observations");
    read_values(L, 2, c->n, c->out_r, "the predicted rewards");
    read_done(L, 3, c->n, c->out_done, "the predicted done flags");
    break;
  case CB_REWARD:
    push_values(L, c->n, c->od, c->obs);
    push_values(L, c->n, c->ad, c->act);
    push_values(L, c->n, c->od, c->next_in);
    lua_call(L, 3, 2);
    read_values(L, 1, c->n, c->out_r, "the rewards");
    read_done(L, 2, c->n, c->out_done, "the done flags");
    break;
  case CB_ACT:
    push_values(L, 0, c->od, c->obs);
    lua_call(L, 1, 1);
    read_values(L, 1, c->ad, c->out_obs, "the policy's action");
    break;
  }
  return 0;
}

/* How many callbacks are running on this thread: while one is, the
 * engine is in the middle of a call that holds environments, planners,
 * models and datasets by pointer, so none may be closed. */
static _Thread_local int callback_depth;

int ld2r_in_callback(void) { return callback_depth; }

int ld2r_refuse_close(lua_State *L, const char *what) {
  return luaL_error(L, "close: a %s cannot be closed inside a callback of "
                    "a running d2r call (a policy, model, reward or "
                    "environment function); close it after the call "
                    "returns", what);
}

/* Environments a call in progress is running episodes on: stepping or
 * resetting one from a callback would move it under that call (collect
 * looped forever when its policy reset the env).  Calls nest only
 * through callbacks, so a short stack is enough; deeper ones are
 * counted but not checked. */
enum { MAX_DRIVEN = 16 };
static _Thread_local const d2r_env *driven[MAX_DRIVEN];
static _Thread_local int ndriven;

static void drive(const d2r_env *e) {
  if (ndriven < MAX_DRIVEN) driven[ndriven] = e;
  ndriven++;
}

static void undrive(void) { ndriven--; }

static void check_not_driven(lua_State *L, const d2r_env *e,
                             const char *fn) {
  for (int i = 0; i < ndriven && i < MAX_DRIVEN; i++)
    if (driven[i] == e)
      luaL_error(L, "%s: this environment is running the episodes of a "
                 "call in progress (collect, run_episode or evaluate); "
                 "step another environment in the callback", fn);
}

/* Calls the function at the top of L's stack (popping it) through the
 * trampoline; a Lua error becomes an engine failure "<what>: <msg>". */
static int run_callback(lua_State *L, cb_call *c, const char *what) {
  lua_pushcfunction(L, trampoline);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, c);
  callback_depth++;
  int status = lua_pcall(L, 2, 0, 0);
  callback_depth--;
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    d2r_fail("%s: %s", what, msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* ---- environments written in Lua ---------------------------------------- */

static const char lua_kind[] = "lua";

typedef struct lenv {
  lua_State *L;   /* the thread of the binding call in progress */
  int64_t od, ad;
} lenv;

/* Pushes field `name` of the environment's table; fails when the
 * environment is used outside a call from Lua or has been collected. */
static int push_env_fn(lenv *le, const char *name) {
  lua_State *L = le->L;
  if (L == NULL) {
    d2r_fail("lua env: used outside a call from Lua");
    return -1;
  }
  if (!lua_checkstack(L, 12)) {
    d2r_fail("lua env: Lua stack overflow");
    return -1;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_ENVS);
  if (lua_rawgetp(L, -1, le) != LUA_TTABLE) {
    lua_pop(L, 2);
    d2r_fail("lua env: its table has been collected");
    return -1;
  }
  lua_getfield(L, -1, name);
  lua_replace(L, -3);
  lua_pop(L, 1);
  return 0;
}

static int lenv_reset(void *impl, uint64_t seed, double *obs) {
  lenv *le = impl;
  cb_call c = {CB_RESET, 1, le->od, le->ad, seed, NULL, NULL, NULL, obs,
               NULL, NULL, NULL};
  if (push_env_fn(le, "reset") < 0) return -1;
  return run_callback(le->L, &c, "reset");
}

static int lenv_step(void *impl, const double *action, double *obs,
                     double *reward, bool *terminated) {
  lenv *le = impl;
  cb_call c = {CB_STEP, 1, le->od, le->ad, 0, NULL, action, NULL, obs,
               reward, NULL, terminated};
  if (push_env_fn(le, "step") < 0) return -1;
  return run_callback(le->L, &c, "step");
}

static int lenv_predict(void *impl, int64_t n, const double *obs,
                        const double *act, double *next_obs, double *reward,
                        double *done) {
  lenv *le = impl;
  cb_call c = {CB_PREDICT, n, le->od, le->ad, 0, obs, act, NULL, next_obs,
               reward, done, NULL};
  if (push_env_fn(le, "predict") < 0) return -1;
  return run_callback(le->L, &c, "predict");
}

static int lenv_reward(void *impl, int64_t n, const double *obs,
                       const double *act, const double *next_obs,
                       double *reward, double *done) {
  lenv *le = impl;
  cb_call c = {CB_REWARD, n, le->od, le->ad, 0, obs, act, next_obs, NULL,
               reward, done, NULL};
  if (push_env_fn(le, "reward") < 0) return -1;
  return run_callback(le->L, &c, "reward");
}

/* One ops table per combination of the optional functions. */
static const d2r_env_ops lenv_ops[4] = {
  {lua_kind, lenv_reset, lenv_step, NULL, NULL, free},
  {lua_kind, lenv_reset, lenv_step, lenv_predict, NULL, free},
  {lua_kind, lenv_reset, lenv_step, NULL, lenv_reward, free},
  {lua_kind, lenv_reset, lenv_step, lenv_predict, lenv_reward, free},
};

/* The Lua callbacks of e: the impl of an environment written in Lua, or
 * the reward context of a MuJoCo environment with a Lua reward (only
 * this binding makes those, always with a lenv); NULL otherwise. */
static lenv *lenv_of(const d2r_env *e) {
  if (e == NULL) return NULL;
  if (d2r_env_kind(e) == lua_kind) return d2r_env_impl(e);
  return d2r_env_mujoco_reward_ctx(e);
}

lua_State *ld2r_env_bind(lua_State *L, d2r_env *e) {
  lenv *le = lenv_of(e);
  if (le == NULL) return NULL;
  lua_State *prev = le->L;
  le->L = L;
  return prev;
}

void ld2r_env_unbind(d2r_env *e, lua_State *prev) {
  lenv *le = lenv_of(e);
  if (le) le->L = prev;
}

/* ---- the d2r.Env type --------------------------------------------------- */

/* Raises the engine's message as it is: the environment functions'
 * messages already name the environment and the operation. */
static int env_fail(lua_State *L) {
  const char *msg = d2r_error();
  return luaL_error(L, "%s", msg && *msg ? msg : "env: operation failed");
}

static void env_check(lua_State *L, int status) {
  if (status < 0) env_fail(L);
}

static d2r_env **newenv(lua_State *L) {
  d2r_env **slot = lua_newuserdatauv(L, sizeof(*slot), 1);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_ENV);
  return slot;
}

d2r_env *ld2r_checkenv(lua_State *L, int arg) {
  d2r_env **slot = luaL_checkudata(L, arg, LD2R_ENV);
  if (*slot == NULL) luaL_argerror(L, arg, "environment has been closed");
  return *slot;
}

static int e_gc(lua_State *L) {
  d2r_env **slot = luaL_checkudata(L, 1, LD2R_ENV);
  lenv *le = lenv_of(*slot);
  if (le) {
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_ENVS);
    lua_pushnil(L);
    lua_rawsetp(L, -2, le);
    lua_pop(L, 1);
  }
  d2r_env_release(*slot);
  *slot = NULL;
  return 0;
}

static int e_close(lua_State *L) {
  luaL_checkudata(L, 1, LD2R_ENV);
  if (ld2r_in_callback()) return ld2r_refuse_close(L, "d2r.Env");
  return e_gc(L);
}

static int e_tostring(lua_State *L) {
  d2r_env **slot = luaL_checkudata(L, 1, LD2R_ENV);
  d2r_env *e = *slot;
  if (e == NULL) {
    lua_pushliteral(L, "d2r.Env(closed)");
    return 1;
  }
  lua_pushfstring(L, "d2r.Env(%s, %s, obs %I, act %I, %I steps)",
                  d2r_env_name(e), d2r_env_kind(e),
                  (lua_Integer)d2r_env_obs_dim(e),
                  (lua_Integer)d2r_env_act_dim(e),
                  (lua_Integer)d2r_env_max_steps(e));
  return 1;
}

/* d2r.env(name [, constants]): a built-in environment; constants is a
 * table of named overrides ({g = 9.81, max_steps = 100}). */
static int f_env(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  d2r_env_param params[32];
  int n = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isnumber(L, -1))
        return luaL_argerror(L, 2, "constants must be named numbers");
      if (n == 32) return luaL_argerror(L, 2, "too many constants");
      params[n].key = lua_tostring(L, -2);
      params[n].value = lua_tonumber(L, -1);
      n++;
      lua_pop(L, 1);
    }
  }
  d2r_env **slot = newenv(L);
  *slot = d2r_env_make(name, n, params);
  if (*slot == NULL) return env_fail(L);
  return 1;
}

/* d2r.envs(): the names of the built-in environments. */
static int f_envs(lua_State *L) {
  const char *const *names = d2r_env_builtin_names();
  lua_newtable(L);
  for (int i = 0; names[i] != NULL; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* Reads a bound vector (field key of the table at arg) into a new array
 * of *n values (*n is set when it is 0); absent: fill with def. */
static double *read_bound(lua_State *L, int arg, const char *key,
                          int64_t *n, double def) {
  int t = lua_getfield(L, arg, key);
  double *v;
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    if (*n < 1) return NULL;
    v = lua_newuserdatauv(L, (size_t)*n * sizeof(double), 0);
    for (int64_t i = 0; i < *n; i++) v[i] = def;
    return v;
  }
  if (t != LUA_TTABLE && t != LUA_TNUMBER && !ld2r_testtensor(L, -1))
    luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must be a tensor or a "
                  "table of numbers", key));
  d2r_tensor *b = ld2r_checkoperand(L, lua_gettop(L));
  if (*n == 0) *n = d2r_numel(b);
  if (d2r_numel(b) != *n || *n < 1)
    luaL_argerror(L, arg, lua_pushfstring(L, "'%s' must hold %I values",
                  key, (lua_Integer)*n));
  v = lua_newuserdatauv(L, (size_t)*n * sizeof(double), 0);
  d2r_tensor *c = d2r_contiguous(b);
  if (c == NULL) ld2r_fail(L, "env_from_lua");
  memcpy(v, d2r_data(c), (size_t)*n * sizeof(double));
  d2r_release(c);
  return v;
}

/* The size given by key_dim, or by key_low, or 0. */
static int64_t read_dim(lua_State *L, int arg, const char *dim_key) {
  lua_Integer d = ld2r_optint(L, arg, dim_key, 0);
  if (d < 0) luaL_argerror(L, arg, "dimensions must be positive");
  return (int64_t)d;
}

/* d2r.env_from_lua{name =, reset =, step = [, predict =, reward =],
 * obs_low =, obs_high = (or obs_dim =), act_low =, act_high = (or
 * act_dim =), max_steps =}: an environment whose functions are Lua's. */
static int f_env_from_lua(lua_State *L) {
  static const char *const known[] = {
    "name", "reset", "step", "predict", "reward", "obs_low", "obs_high",
    "obs_dim", "act_low", "act_high", "act_dim", "max_steps", NULL
  };
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  const char *fns[4] = {"reset", "step", "predict", "reward"};
  int has[4];
  for (int i = 0; i < 4; i++) {
    int t = lua_getfield(L, 1, fns[i]);
    if (i < 2 && t != LUA_TFUNCTION)
      return luaL_argerror(L, 1, lua_pushfstring(L, "'%s' must be a "
                           "function", fns[i]));
    if (i >= 2 && t != LUA_TNIL && t != LUA_TFUNCTION)
      return luaL_argerror(L, 1, lua_pushfstring(L, "'%s' must be a "
                           "function or nil", fns[i]));
    has[i] = t == LUA_TFUNCTION;
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "name");
  const char *name = lua_isnil(L, -1) ? "lua" : lua_tostring(L, -1);
  if (name == NULL) return luaL_argerror(L, 1, "'name' must be a string");
  int64_t od = read_dim(L, 1, "obs_dim"), ad = read_dim(L, 1, "act_dim");
  double *olo = read_bound(L, 1, "obs_low", &od, -INFINITY);
  double *ohi = read_bound(L, 1, "obs_high", &od, INFINITY);
  double *alo = read_bound(L, 1, "act_low", &ad, -INFINITY);
  double *ahi = read_bound(L, 1, "act_high", &ad, INFINITY);
  if (olo == NULL || ohi == NULL)
    return luaL_argerror(L, 1, "give 'obs_low' and 'obs_high' or "
                         "'obs_dim'");
  if (alo == NULL || ahi == NULL)
    return luaL_argerror(L, 1, "give 'act_low' and 'act_high' or "
                         "'act_dim'");
  lua_Integer steps = ld2r_optint(L, 1, "max_steps", 1000);
  d2r_env **slot = newenv(L);
  lenv *le = malloc(sizeof *le);
  if (le == NULL) return luaL_error(L, "env_from_lua: out of memory");
  le->L = NULL;
  le->od = od;
  le->ad = ad;
  d2r_env_spec spec = {name, od, ad, olo, ohi, alo, ahi, (int64_t)steps};
  *slot = d2r_env_new(&lenv_ops[has[2] + 2 * has[3]], le, &spec);
  if (*slot == NULL) return env_fail(L);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_ENVS);
  lua_pushvalue(L, 1);
  lua_rawsetp(L, -2, le);
  lua_pop(L, 1);
  return 1;
}

/* d2r.mujoco_env{model =, name =, frame_skip =, exclude_qpos =,
 * max_steps =, reset_noise =, ctrl_cost =, reward =}: an environment
 * simulated by MuJoCo from an MJCF file; reward (optional) is a Lua
 * function (obs, act, next_obs) -> reward [N] [, done [N]] on batches. */
static int f_mujoco_env(lua_State *L) {
  static const char *const known[] = {
    "model", "name", "frame_skip", "exclude_qpos", "max_steps",
    "reset_noise", "ctrl_cost", "reward", NULL
  };
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  lua_getfield(L, 1, "model");  /* 2 */
  const char *path = lua_tostring(L, 2);
  if (path == NULL) return luaL_argerror(L, 1, "'model' must be a path");
  d2r_mujoco_config c = d2r_mujoco_defaults(path);
  lua_getfield(L, 1, "name");   /* 3 */
  c.name = lua_tostring(L, 3);
  c.frame_skip = (int)ld2r_optint(L, 1, "frame_skip", c.frame_skip);
  c.exclude_qpos = (int)ld2r_optint(L, 1, "exclude_qpos",
                                    c.exclude_qpos);
  c.max_steps = (int64_t)ld2r_optint(L, 1, "max_steps", c.max_steps);
  c.reset_noise = ld2r_optnumber(L, 1, "reset_noise", c.reset_noise);
  c.ctrl_cost = ld2r_optnumber(L, 1, "ctrl_cost", c.ctrl_cost);
  int t = lua_getfield(L, 1, "reward");  /* 4 */
  if (t != LUA_TNIL && t != LUA_TFUNCTION)
    return luaL_argerror(L, 1, "'reward' must be a function");
  d2r_env **slot = newenv(L);   /* 5 */
  lenv *le = NULL;
  if (t == LUA_TFUNCTION) {
    le = malloc(sizeof *le);
    if (le == NULL) return luaL_error(L, "mujoco_env: out of memory");
    le->L = NULL;
    le->od = le->ad = 0;
    c.reward = lenv_reward;
    c.reward_ctx = le;
    c.reward_free = free;
  }
  *slot = d2r_env_mujoco(&c);
  if (*slot == NULL) return env_fail(L);
  if (le) {
    le->od = d2r_env_obs_dim(*slot);
    le->ad = d2r_env_act_dim(*slot);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 4);
    lua_setfield(L, -2, "reward");
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 5, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_ENVS);
    lua_insert(L, -2);
    lua_rawsetp(L, -2, le);
    lua_pop(L, 1);
  }
  lua_settop(L, 5);
  return 1;
}

/* d2r.mujoco_available(): true when this build has MuJoCo. */
static int f_mujoco_available(lua_State *L) {
  lua_pushboolean(L, d2r_mujoco_available());
  return 1;
}

/* env:reset(seed): the first observation. */
static int e_reset(lua_State *L) {
  d2r_env *e = ld2r_checkenv(L, 1);
  uint64_t seed = (uint64_t)luaL_checkinteger(L, 2);
  check_not_driven(L, e, "reset");
  d2r_tensor **slot = ld2r_newtensor(L);
  lua_State *prev = ld2r_env_bind(L, e);
  *slot = d2r_env_reset(e, seed);
  ld2r_env_unbind(e, prev);
  if (*slot == NULL) env_fail(L);
  return 1;
}

/* env:step(action): observation, reward, terminated, truncated. */
static int e_step(lua_State *L) {
  d2r_env *e = ld2r_checkenv(L, 1);
  d2r_tensor *a = ld2r_checkoperand(L, 2);
  check_not_driven(L, e, "step");
  d2r_tensor **slot = ld2r_newtensor(L);
  d2r_step_info info;
  lua_State *prev = ld2r_env_bind(L, e);
  *slot = d2r_env_step(e, a, &info);
  ld2r_env_unbind(e, prev);
  if (*slot == NULL) env_fail(L);
  lua_pushnumber(L, info.reward);
  lua_pushboolean(L, info.terminated);
  lua_pushboolean(L, info.truncated);
  return 4;
}

static void push_box(lua_State *L, int64_t n, const double *lo,
                     const double *hi) {
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, -2, "dim");
  push_values(L, 0, n, lo);
  lua_setfield(L, -2, "low");
  push_values(L, 0, n, hi);
  lua_setfield(L, -2, "high");
}

/* env:spaces(): {obs = {dim, low, high}, act = {...}, max_steps}. */
static int e_spaces(lua_State *L) {
  d2r_env *e = ld2r_checkenv(L, 1);
  lua_createtable(L, 0, 3);
  push_box(L, d2r_env_obs_dim(e), d2r_env_obs_low(e), d2r_env_obs_high(e));
  lua_setfield(L, -2, "obs");
  push_box(L, d2r_env_act_dim(e), d2r_env_act_low(e), d2r_env_act_high(e));
  lua_setfield(L, -2, "act");
  lua_pushinteger(L, (lua_Integer)d2r_env_max_steps(e));
  lua_setfield(L, -2, "max_steps");
  return 1;
}

static int e_name(lua_State *L) {
  lua_pushstring(L, d2r_env_name(ld2r_checkenv(L, 1)));
  return 1;
}

static int e_kind(lua_State *L) {
  lua_pushstring(L, d2r_env_kind(ld2r_checkenv(L, 1)));
  return 1;
}

static int e_dims(lua_State *L) {
  d2r_env *e = ld2r_checkenv(L, 1);
  lua_pushinteger(L, (lua_Integer)d2r_env_obs_dim(e));
  lua_pushinteger(L, (lua_Integer)d2r_env_act_dim(e));
  return 2;
}

static int e_max_steps(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)d2r_env_max_steps(ld2r_checkenv(L, 1)));
  return 1;
}

static int e_elapsed(lua_State *L) {
  lua_Integer t = (lua_Integer)d2r_env_elapsed(ld2r_checkenv(L, 1));
  if (t < 0) lua_pushnil(L);
  else lua_pushinteger(L, t);
  return 1;
}

/* env:constants(): the named constants of a built-in (a table). */
static int e_constants(lua_State *L) {
  d2r_env *e = ld2r_checkenv(L, 1);
  int n;
  const char *const *keys;
  const double *values;
  env_check(L, d2r_env_constants(e, &n, &keys, &values));
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, values[i]);
    lua_setfield(L, -2, keys[i]);
  }
  return 1;
}

/* env:predict(obs, act): next observations, rewards, done flags for
 * batches [N, obs_dim] and [N, act_dim]. */
static int e_predict(lua_State *L) {
  d2r_env *e = ld2r_checkenv(L, 1);
  d2r_tensor *o = ld2r_checkoperand(L, 2), *a = ld2r_checkoperand(L, 3);
  lua_settop(L, 3);
  d2r_tensor **s1 = ld2r_newtensor(L), **s2 = ld2r_newtensor(L);
  d2r_tensor **s3 = ld2r_newtensor(L);
  lua_State *prev = ld2r_env_bind(L, e);
  int rc = d2r_env_predict(e, o, a, s1, s2, s3);
  ld2r_env_unbind(e, prev);
  env_check(L, rc);
  return 3;
}

/* env:reward(obs, act, next_obs): rewards and done flags of a batch. */
static int e_reward(lua_State *L) {
  d2r_env *e = ld2r_checkenv(L, 1);
  d2r_tensor *o = ld2r_checkoperand(L, 2), *a = ld2r_checkoperand(L, 3);
  d2r_tensor *n = ld2r_checkoperand(L, 4);
  lua_settop(L, 4);
  d2r_tensor **s1 = ld2r_newtensor(L), **s2 = ld2r_newtensor(L);
  lua_State *prev = ld2r_env_bind(L, e);
  int rc = d2r_env_reward(e, o, a, n, s1, s2);
  ld2r_env_unbind(e, prev);
  env_check(L, rc);
  return 2;
}

/* ---- policies and models written in Lua --------------------------------- */

/* A Lua function at a stack index of the binding call in progress. */
typedef struct lfn {
  lua_State *L;
  int idx;
  int64_t od, ad;
} lfn;

static int lfn_act(void *ctx, const double *obs, double *action) {
  lfn *f = ctx;
  cb_call c = {CB_ACT, 1, f->od, f->ad, 0, obs, NULL, NULL, action, NULL,
               NULL, NULL};
  lua_pushvalue(f->L, f->idx);
  return run_callback(f->L, &c, "policy");
}

static int lfn_predict(void *ctx, int64_t n, const double *obs,
                       const double *act, double *next_obs, double *reward,
                       double *done) {
  lfn *f = ctx;
  cb_call c = {CB_PREDICT, n, f->od, f->ad, 0, obs, act, NULL, next_obs,
               reward, done, NULL};
  lua_pushvalue(f->L, f->idx);
  return run_callback(f->L, &c, "model");
}

/*
 * Resolves the model at idx: nil means e's own predict (e may then not
 * be NULL); an Env its predict; a function (obs, act) -> next_obs,
 * reward [, done] a Lua model of obs_dim and act_dim; a d2r.Dynamics a
 * learned model (ldynamics.c).  f holds what a Lua function needs.
 * Returns the env the model runs through (to bind around calls), or
 * NULL.
 */
static d2r_env *checkmodel(lua_State *L, int idx, d2r_env *e,
                           int64_t obs_dim, int64_t act_dim, lfn *f,
                           d2r_dynamics *out) {
  idx = lua_absindex(L, idx);
  if (lua_isnoneornil(L, idx)) {
    if (e == NULL)
      luaL_error(L, "a model (an env, a function or a dynamics model) is "
                 "required");
    if (d2r_env_dynamics(e, out) < 0) ld2r_fail(L, "model");
    return e;
  }
  if (luaL_testudata(L, idx, LD2R_ENV)) {
    d2r_env *m = ld2r_checkenv(L, idx);
    if (d2r_env_dynamics(m, out) < 0) ld2r_fail(L, "model");
    return m;
  }
  if (lua_isfunction(L, idx)) {
    f->L = L;
    f->idx = idx;
    f->od = obs_dim;
    f->ad = act_dim;
    out->obs_dim = obs_dim;
    out->act_dim = act_dim;
    out->predict = lfn_predict;
    out->ctx = f;
    return NULL;
  }
  d2r_env *renv;
  if (ld2r_testdynamics(L, idx, out, &renv)) return renv;
  luaL_typeerror(L, idx, "env, function or dynamics model");
  return NULL;
}

/* ---- the d2r.Planner type ----------------------------------------------- */

static d2r_planner *checkplanner(lua_State *L, int arg) {
  d2r_planner **slot = luaL_checkudata(L, arg, LD2R_PLANNER);
  if (*slot == NULL) luaL_argerror(L, arg, "planner has been closed");
  return *slot;
}

static int p_gc(lua_State *L) {
  d2r_planner **slot = luaL_checkudata(L, 1, LD2R_PLANNER);
  d2r_planner_free(*slot);
  *slot = NULL;
  return 0;
}

static int p_close(lua_State *L) {
  luaL_checkudata(L, 1, LD2R_PLANNER);
  if (ld2r_in_callback()) return ld2r_refuse_close(L, "d2r.Planner");
  return p_gc(L);
}

static const char *const planner_fields[] = {
  "horizon", "population", "iterations", "elites", "alpha", "init_std",
  "temperature", "gamma", "action_repeat", "seed", NULL
};

/* Option key of the table at arg as an int, def when absent; a value
 * outside the int range is an error here (a cast would wrap it into a
 * valid-looking one), the planner checks the rest. */
static int opt_int(lua_State *L, int arg, const char *key, int def) {
  lua_Integer v = ld2r_optint(L, arg, key, def);
  if (v < INT_MIN || v > INT_MAX)
    luaL_error(L, "option '%s' is out of range (%I)", key, v);
  return (int)v;
}

/* Overrides the fields of c present in the options at arg. */
static void read_planner(lua_State *L, int arg, d2r_planner_config *c) {
  c->horizon = opt_int(L, arg, "horizon", c->horizon);
  c->population = opt_int(L, arg, "population", c->population);
  c->iterations = opt_int(L, arg, "iterations", c->iterations);
  c->elites = opt_int(L, arg, "elites", c->elites);
  c->alpha = ld2r_optnumber(L, arg, "alpha", c->alpha);
  c->init_std = ld2r_optnumber(L, arg, "init_std", c->init_std);
  c->temperature = ld2r_optnumber(L, arg, "temperature", c->temperature);
  c->gamma = ld2r_optnumber(L, arg, "gamma", c->gamma);
  c->action_repeat = opt_int(L, arg, "action_repeat", c->action_repeat);
  c->seed = (uint64_t)ld2r_optint(L, arg, "seed", (lua_Integer)c->seed);
}

static int new_planner(lua_State *L, d2r_planner_kind kind) {
  static const char *const known[] = {
    "env", "low", "high", "horizon", "population", "iterations", "elites",
    "alpha", "init_std", "temperature", "gamma", "action_repeat", "seed",
    NULL
  };
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  d2r_planner_config c = d2r_planner_defaults(kind);
  read_planner(L, 1, &c);
  int64_t k = 0;
  const double *lo, *hi;
  if (lua_getfield(L, 1, "env") != LUA_TNIL) {
    d2r_env *e = ld2r_checkenv(L, 2);
    k = d2r_env_act_dim(e);
    lo = d2r_env_act_low(e);
    hi = d2r_env_act_high(e);
  } else {
    lo = read_bound(L, 1, "low", &k, 0);
    hi = read_bound(L, 1, "high", &k, 0);
    if (lo == NULL)
      return luaL_argerror(L, 1, "give 'env' or 'low' and 'high'");
  }
  d2r_planner **slot = lua_newuserdatauv(L, sizeof(*slot), 0);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_PLANNER);
  *slot = d2r_planner_new(&c, k, lo, hi);
  if (*slot == NULL) return ld2r_fail(L, d2r_planner_kind_name(kind));
  return 1;
}

/* d2r.cem{env = | low =, high =, horizon =, ...}. */
static int f_cem(lua_State *L) { return new_planner(L, D2R_PLANNER_CEM); }
/* d2r.mppi{...}: the same options, temperature for MPPI. */
static int f_mppi(lua_State *L) { return new_planner(L, D2R_PLANNER_MPPI); }

/* planner:act(obs, model): the action (a tensor) and a table
 * {best_return, plan_return, model_rows}; model as checkmodel (a
 * function model takes observations of obs's size). */
static int p_act(lua_State *L) {
  d2r_planner *p = checkplanner(L, 1);
  lua_settop(L, 3);
  d2r_tensor *obs = ld2r_checkoperand(L, 2);
  int64_t k = d2r_planner_act_dim(p);
  lfn f;
  d2r_dynamics m;
  if (lua_isnil(L, 3)) return luaL_argerror(L, 3, "a model is required");
  d2r_env *run = checkmodel(L, 3, NULL, d2r_numel(obs), k, &f, &m);
  if (d2r_numel(obs) != m.obs_dim)
    return luaL_argerror(L, 2, lua_pushfstring(L, "the model takes %I "
                         "observation values, got %I",
                         (lua_Integer)m.obs_dim,
                         (lua_Integer)d2r_numel(obs)));
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_empty(1, &k);
  d2r_tensor *oc = d2r_contiguous(obs);
  d2r_plan_info info;
  lua_State *prev = ld2r_env_bind(L, run);
  int rc = oc && *slot ? d2r_planner_act(p, &m, d2r_data(oc),
                                         d2r_data(*slot), &info) : -1;
  ld2r_env_unbind(run, prev);
  d2r_release(oc);
  ld2r_checkstatus(L, rc, "act");
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, info.best_return);
  lua_setfield(L, -2, "best_return");
  lua_pushnumber(L, info.plan_return);
  lua_setfield(L, -2, "plan_return");
  lua_pushinteger(L, (lua_Integer)info.model_rows);
  lua_setfield(L, -2, "model_rows");
  return 2;
}

static int p_reset(lua_State *L) {
  d2r_planner *p = checkplanner(L, 1);
  d2r_planner_reset(p, (uint64_t)luaL_checkinteger(L, 2));
  lua_settop(L, 1);
  return 1;
}

static void push_returns(lua_State *L, int n, const double *r) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, r[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* planner:evaluate{env =, model =, episodes =, seed =}: the mean return
 * over the episodes and the list of returns. */
static int p_evaluate(lua_State *L) {
  static const char *const known[] = {"env", "model", "episodes", "seed",
                                      NULL};
  d2r_planner *p = checkplanner(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  ld2r_checkfields(L, 2, known);
  lua_getfield(L, 2, "env");   /* 3 */
  d2r_env *e = ld2r_checkenv(L, 3);
  lua_getfield(L, 2, "model"); /* 4 */
  int episodes = (int)ld2r_optint(L, 2, "episodes", 1);
  uint64_t seed = (uint64_t)ld2r_optint(L, 2, "seed", 0);
  luaL_argcheck(L, episodes >= 1 && episodes <= 1000000, 2,
                "episodes must be >= 1");
  lfn f;
  d2r_dynamics m;
  d2r_env *run = checkmodel(L, 4, e, d2r_env_obs_dim(e),
                            d2r_env_act_dim(e), &f, &m);
  double *rets = lua_newuserdatauv(L, (size_t)episodes * sizeof(double),
                                   0);
  double mean;
  lua_State *p1 = ld2r_env_bind(L, e), *p2 = ld2r_env_bind(L, run);
  drive(e);
  int rc = d2r_planner_evaluate(p, e, &m, episodes, seed, rets, &mean);
  undrive();
  ld2r_env_unbind(run, p2);
  ld2r_env_unbind(e, p1);
  ld2r_checkstatus(L, rc, "evaluate");
  lua_pushnumber(L, mean);
  push_returns(L, episodes, rets);
  return 2;
}

/* d2r.random_evaluate(env [, {episodes =, seed =}]): uniformly random
 * actions; the mean return and the list of returns. */
static int f_random_evaluate(lua_State *L) {
  static const char *const known[] = {"episodes", "seed", NULL};
  d2r_env *e = ld2r_checkenv(L, 1);
  lua_settop(L, 2);
  ld2r_checkfields(L, 2, known);
  int episodes = (int)ld2r_optint(L, 2, "episodes", 1);
  uint64_t seed = (uint64_t)ld2r_optint(L, 2, "seed", 0);
  luaL_argcheck(L, episodes >= 1 && episodes <= 1000000, 2,
                "episodes must be >= 1");
  double *rets = lua_newuserdatauv(L, (size_t)episodes * sizeof(double),
                                   0);
  double mean;
  lua_State *prev = ld2r_env_bind(L, e);
  drive(e);
  int rc = d2r_random_evaluate(e, episodes, seed, rets, &mean);
  undrive();
  ld2r_env_unbind(e, prev);
  ld2r_checkstatus(L, rc, "random_evaluate");
  lua_pushnumber(L, mean);
  push_returns(L, episodes, rets);
  return 2;
}

/* d2r.run_episode{env =, policy = function(obs) -> action, seed =}:
 * {ret =, steps =, terminated =}. */
static int f_run_episode(lua_State *L) {
  static const char *const known[] = {"env", "policy", "seed", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  lua_getfield(L, 1, "env");     /* 2 */
  d2r_env *e = ld2r_checkenv(L, 2);
  if (lua_getfield(L, 1, "policy") != LUA_TFUNCTION)  /* 3 */
    return luaL_argerror(L, 1, "'policy' must be a function");
  uint64_t seed = (uint64_t)ld2r_optint(L, 1, "seed", 0);
  lfn f = {L, 3, d2r_env_obs_dim(e), d2r_env_act_dim(e)};
  d2r_agent agent = {NULL, lfn_act, &f};
  d2r_episode_stats st;
  lua_State *prev = ld2r_env_bind(L, e);
  drive(e);
  int rc = d2r_env_run(e, &agent, seed, 0, NULL, NULL, &st);
  undrive();
  ld2r_env_unbind(e, prev);
  ld2r_checkstatus(L, rc, "run_episode");
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, st.ret);
  lua_setfield(L, -2, "ret");
  lua_pushinteger(L, (lua_Integer)st.steps);
  lua_setfield(L, -2, "steps");
  lua_pushboolean(L, st.terminated);
  lua_setfield(L, -2, "terminated");
  return 1;
}

/* ---- the d2r.Dataset type ----------------------------------------------- */

static d2r_dataset **newdataset(lua_State *L) {
  d2r_dataset **slot = lua_newuserdatauv(L, sizeof(*slot), 0);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_DATASET);
  return slot;
}

d2r_dataset *ld2r_checkdataset(lua_State *L, int arg) {
  d2r_dataset **slot = luaL_checkudata(L, arg, LD2R_DATASET);
  if (*slot == NULL) luaL_argerror(L, arg, "dataset has been closed");
  return *slot;
}

static int d_gc(lua_State *L) {
  d2r_dataset **slot = luaL_checkudata(L, 1, LD2R_DATASET);
  d2r_dataset_free(*slot);
  *slot = NULL;
  return 0;
}

static int d_close(lua_State *L) {
  luaL_checkudata(L, 1, LD2R_DATASET);
  if (ld2r_in_callback()) return ld2r_refuse_close(L, "d2r.Dataset");
  return d_gc(L);
}

static int d_tostring(lua_State *L) {
  d2r_dataset **slot = luaL_checkudata(L, 1, LD2R_DATASET);
  d2r_dataset *d = *slot;
  if (d == NULL) {
    lua_pushliteral(L, "d2r.Dataset(closed)");
    return 1;
  }
  lua_pushfstring(L, "d2r.Dataset(%s, %I transitions, %I episodes, %s)",
                  d->env, (lua_Integer)d->size, (lua_Integer)d->episodes,
                  d->behaviour);
  return 1;
}

static int d_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)ld2r_checkdataset(L, 1)->size);
  return 1;
}

static void push_tensor_ref(lua_State *L, d2r_tensor *t) {
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_retain(t);
}

/* ds.obs, ds.size, ... and the methods (upvalue 1). */
static int d_index(lua_State *L) {
  d2r_dataset *d = ld2r_checkdataset(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (lua_getfield(L, lua_upvalueindex(1), k) != LUA_TNIL) return 1;
  struct { const char *name; d2r_tensor *t; } cols[] = {
    {"obs", d->obs}, {"act", d->act}, {"reward", d->reward},
    {"next_obs", d->next_obs}, {"terminated", d->terminated},
    {"truncated", d->truncated}, {"episode", d->episode},
  };
  for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
    if (strcmp(k, cols[i].name) == 0) {
      push_tensor_ref(L, cols[i].t);
      return 1;
    }
  }
  if (strcmp(k, "env") == 0) lua_pushstring(L, d->env);
  else if (strcmp(k, "behaviour") == 0) lua_pushstring(L, d->behaviour);
  else if (strcmp(k, "seed") == 0) lua_pushinteger(L, (lua_Integer)d->seed);
  else if (strcmp(k, "size") == 0) lua_pushinteger(L, (lua_Integer)d->size);
  else if (strcmp(k, "episodes") == 0)
    lua_pushinteger(L, (lua_Integer)d->episodes);
  else if (strcmp(k, "obs_dim") == 0)
    lua_pushinteger(L, (lua_Integer)d->obs_dim);
  else if (strcmp(k, "act_dim") == 0)
    lua_pushinteger(L, (lua_Integer)d->act_dim);
  else lua_pushnil(L);
  return 1;
}

/* ds:save(path): true, or nil and a message. */
static int d_save(lua_State *L) {
  d2r_dataset *d = ld2r_checkdataset(L, 1);
  const char *path = luaL_checkstring(L, 2);
  if (d2r_dataset_save(d, path) < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, d2r_error());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* d2r.load_dataset(path): a dataset, or nil and a message. */
static int f_load_dataset(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  d2r_dataset **slot = newdataset(L);
  *slot = d2r_dataset_load(path);
  if (*slot == NULL) {
    luaL_pushfail(L);
    lua_pushstring(L, d2r_error());
    return 2;
  }
  return 1;
}

/* ds:split{train =, val =, test =, seed =}: three datasets (nil for a
 * part of fraction 0). */
static int d_split(lua_State *L) {
  static const char *const known[] = {"train", "val", "test", "seed",
                                      NULL};
  d2r_dataset *d = ld2r_checkdataset(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  ld2r_checkfields(L, 2, known);
  double f[3] = {ld2r_optnumber(L, 2, "train", 0.5),
                 ld2r_optnumber(L, 2, "val", 0.2),
                 ld2r_optnumber(L, 2, "test", 0.3)};
  uint64_t seed = (uint64_t)ld2r_optint(L, 2, "seed", 0);
  d2r_dataset **slots[3];
  for (int i = 0; i < 3; i++) slots[i] = newdataset(L);
  ld2r_checkstatus(L, d2r_dataset_split(d, f[0], f[1], f[2], seed,
                                        slots[0], slots[1], slots[2]),
                   "split");
  for (int i = 0; i < 3; i++)
    if (*slots[i] == NULL) {
      lua_pushnil(L);
      lua_replace(L, 3 + i);
    }
  return 3;
}

/* ds:select(ids): the episodes with the listed ids (a table or tensor). */
static int d_select(lua_State *L) {
  d2r_dataset *d = ld2r_checkdataset(L, 1);
  d2r_tensor *ids = ld2r_checkoperand(L, 2);
  int64_t n = d2r_numel(ids);
  luaL_argcheck(L, n >= 1, 2, "no episode ids");
  int64_t *v = lua_newuserdatauv(L, (size_t)n * sizeof(int64_t), 0);
  d2r_tensor *c = d2r_contiguous(ids);
  for (int64_t i = 0; c && i < n; i++) {
    double x = d2r_data(c)[i];
    if (x != floor(x) || x < 0 || x > 9e15) {
      d2r_release(c);
      return luaL_argerror(L, 2, "episode ids must be whole numbers >= 0");
    }
    v[i] = (int64_t)x;
  }
  d2r_release(c);
  d2r_dataset **slot = newdataset(L);
  *slot = d2r_dataset_select(d, n, v);
  if (*slot == NULL) return ld2r_fail(L, "select");
  return 1;
}

static int d_returns(lua_State *L) {
  d2r_dataset *d = ld2r_checkdataset(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_dataset_returns(d);
  return ld2r_check(L, *slot, "returns");
}

/* d2r.dataset{env =, behaviour =, seed =, obs =, act =, reward =,
 * next_obs =, terminated =, truncated =, episode =}. */
static int f_dataset(lua_State *L) {
  static const char *const known[] = {
    "env", "behaviour", "seed", "obs", "act", "reward", "next_obs",
    "terminated", "truncated", "episode", NULL
  };
  static const char *const cols[7] = {"obs", "act", "reward", "next_obs",
                                      "terminated", "truncated",
                                      "episode"};
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  lua_getfield(L, 1, "env");
  const char *env = lua_tostring(L, -1);
  if (env == NULL) return luaL_argerror(L, 1, "'env' must be a string");
  lua_getfield(L, 1, "behaviour");
  const char *beh = lua_tostring(L, -1);
  uint64_t seed = (uint64_t)ld2r_optint(L, 1, "seed", 0);
  d2r_tensor *t[7];
  for (int i = 0; i < 7; i++) {
    if (lua_getfield(L, 1, cols[i]) == LUA_TNIL)
      return luaL_argerror(L, 1, lua_pushfstring(L, "column '%s' is "
                           "missing", cols[i]));
    t[i] = ld2r_checkoperand(L, lua_gettop(L));
  }
  d2r_dataset **slot = newdataset(L);
  *slot = d2r_dataset_new(env, beh, seed, t[0], t[1], t[2], t[3], t[4],
                          t[5], t[6]);
  if (*slot == NULL) return ld2r_fail(L, "dataset");
  return 1;
}

/* d2r.collect{env =, behaviour = "random" | "medium" | "expert" |
 * function(obs) -> action, episodes =, seed =, noise =, planner = {...},
 * name =}: a dataset. */
static int f_collect(lua_State *L) {
  static const char *const known[] = {"env", "behaviour", "episodes",
                                      "seed", "noise", "planner", "name",
                                      NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  lua_getfield(L, 1, "env");        /* 2 */
  d2r_env *e = ld2r_checkenv(L, 2);
  lua_getfield(L, 1, "behaviour");  /* 3 */
  d2r_behaviour b;
  lfn f = {L, 3, d2r_env_obs_dim(e), d2r_env_act_dim(e)};
  if (lua_isfunction(L, 3)) {
    memset(&b, 0, sizeof b);
    b.kind = D2R_BEHAVIOUR_AGENT;
    b.planner = d2r_planner_defaults(D2R_PLANNER_CEM);
    b.agent.act = lfn_act;
    b.agent.ctx = &f;
  } else {
    d2r_behaviour_kind kind = D2R_BEHAVIOUR_RANDOM;
    if (!lua_isnil(L, 3) &&
        (lua_type(L, 3) != LUA_TSTRING ||
         d2r_behaviour_kind_parse(lua_tostring(L, 3), &kind) < 0 ||
         kind == D2R_BEHAVIOUR_AGENT))
      return luaL_argerror(L, 1, "'behaviour' must be \"random\", "
                           "\"medium\", \"expert\" or a function");
    ld2r_checkstatus(L, d2r_behaviour_preset(kind, e, &b), "collect");
  }
  b.noise = ld2r_optnumber(L, 1, "noise", b.noise);
  if (lua_getfield(L, 1, "planner") != LUA_TNIL) {  /* 4 */
    luaL_checktype(L, 4, LUA_TTABLE);
    ld2r_checkfields(L, 4, planner_fields);
    read_planner(L, 4, &b.planner);
  }
  lua_getfield(L, 1, "name");       /* 5 */
  b.name = lua_tostring(L, 5);
  lua_Integer episodes = ld2r_optint(L, 1, "episodes", 1);
  uint64_t seed = (uint64_t)ld2r_optint(L, 1, "seed", 0);
  d2r_dataset **slot = newdataset(L);
  lua_State *prev = ld2r_env_bind(L, e);
  drive(e);
  *slot = d2r_collect(e, &b, (int64_t)episodes, seed);
  undrive();
  ld2r_env_unbind(e, prev);
  if (*slot == NULL) return ld2r_fail(L, "collect");
  return 1;
}

/* ---- registration ------------------------------------------------------- */

static const luaL_Reg env_methods[] = {
  {"reset", e_reset}, {"step", e_step}, {"spaces", e_spaces},
  {"name", e_name}, {"kind", e_kind}, {"dims", e_dims},
  {"max_steps", e_max_steps}, {"elapsed", e_elapsed},
  {"constants", e_constants}, {"predict", e_predict},
  {"reward", e_reward}, {"close", e_close},
  {NULL, NULL}
};

static const luaL_Reg planner_methods[] = {
  {"act", p_act}, {"reset", p_reset}, {"evaluate", p_evaluate},
  {"close", p_close},
  {NULL, NULL}
};

static const luaL_Reg dataset_methods[] = {
  {"save", d_save}, {"split", d_split}, {"select", d_select},
  {"returns", d_returns}, {"close", d_close},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"env", f_env}, {"envs", f_envs}, {"env_from_lua", f_env_from_lua},
  {"mujoco_env", f_mujoco_env}, {"mujoco_available", f_mujoco_available},
  {"cem", f_cem}, {"mppi", f_mppi},
  {"random_evaluate", f_random_evaluate}, {"run_episode", f_run_episode},
  {"collect", f_collect}, {"dataset", f_dataset},
  {"load_dataset", f_load_dataset},
  {NULL, NULL}
};

/* A metatable with __gc, __close, __tostring and __index over methods. */
static void new_type(lua_State *L, const char *name, const luaL_Reg *m,
                     lua_CFunction gc, lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, m, 0);
  lua_setfield(L, -2, "__index");
}

static int p_tostring(lua_State *L) {
  d2r_planner **slot = luaL_checkudata(L, 1, LD2R_PLANNER);
  if (*slot == NULL) {
    lua_pushliteral(L, "d2r.Planner(closed)");
    return 1;
  }
  const d2r_planner_config *c = d2r_planner_config_of(*slot);
  lua_pushfstring(L, "d2r.Planner(%s, H %d, N %d, %d iterations)",
                  d2r_planner_kind_name(c->kind), c->horizon,
                  c->population, c->iterations);
  return 1;
}

/* With the module table at the top: registers d2r.Env, d2r.Planner,
 * d2r.Dataset, the functions above and the dynamics models. */
int ld2r_open_env(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, LUA_ENVS);
  new_type(L, LD2R_ENV, env_methods, e_gc, e_tostring);
  lua_pop(L, 1);
  new_type(L, LD2R_PLANNER, planner_methods, p_gc, p_tostring);
  lua_pop(L, 1);
  new_type(L, LD2R_DATASET, dataset_methods, d_gc, d_tostring);
  lua_getfield(L, -1, "__index");  /* the methods, as d_index's upvalue */
  lua_pushcclosure(L, d_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, d_len);
  lua_setfield(L, -2, "__len");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
  return ld2r_open_dynamics(L);
}

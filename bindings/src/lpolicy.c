/*
 * Policies for Lua: the d2r.Policy type (diagonal Gaussian, full-
 * covariance Gaussian and categorical policies on an MLP), d2r.PolicyDist
 * (a policy's distribution at a batch of inputs, so that one forward
 * pass serves sampling, scoring and the entropy), the full-covariance
 * Gaussian functions, the full plug-in reward, and the d2r.theory table
 * of Gaussian closed forms.  Reductions over output dimensions are
 * "mean" (the reference convention, the default), "sum" or "none".
 */
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/closed_form.h"
#include "d2r/nn.h"
#include "d2r/policy.h"
#include "d2r/theory.h"
#include "ld2r.h"

#define POLICY "d2r.Policy"
#define PDIST "d2r.PolicyDist"
#define MAXHIDDEN 64

/* ---- the userdata ---------------------------------------------------- */

/* A policy holds its generator (user value 1) for sampling. */
static d2r_policy **newpolicy(lua_State *L) {
  d2r_policy **slot = lua_newuserdatauv(L, sizeof(*slot), 1);
  *slot = NULL;
  luaL_setmetatable(L, POLICY);
  return slot;
}

static d2r_policy *checkpolicy(lua_State *L, int arg) {
  d2r_policy **slot = luaL_checkudata(L, arg, POLICY);
  if (*slot == NULL)
    luaL_argerror(L, arg, "policy has been closed");
  return *slot;
}

/* A distribution also holds the generator of its policy (user value 1). */
static d2r_pdist *newpdist(lua_State *L) {
  ld2r_gc_pressure(L);
  d2r_pdist *d = lua_newuserdatauv(L, sizeof(*d), 1);
  *d = (d2r_pdist)D2R_PDIST_INIT;
  luaL_setmetatable(L, PDIST);
  return d;
}

static d2r_pdist *checkpdist(lua_State *L, int arg) {
  return luaL_checkudata(L, arg, PDIST);
}

/* The generator at arg if given, else the one in the user value of the
 * object at obj. */
static d2r_rng *userng(lua_State *L, int obj, int arg) {
  if (!lua_isnoneornil(L, arg))
    return ld2r_checkrng(L, arg);
  lua_getiuservalue(L, obj, 1);
  if (lua_isnil(L, -1))
    luaL_error(L, "no generator: pass one");
  return ld2r_checkrng(L, lua_gettop(L));
}

static int p_gc(lua_State *L) {
  d2r_policy **slot = luaL_checkudata(L, 1, POLICY);
  d2r_policy_free(*slot);
  *slot = NULL;
  return 0;
}

static int p_tostring(lua_State *L) {
  d2r_policy **slot = luaL_checkudata(L, 1, POLICY);
  const d2r_policy_config *c;
  if (*slot == NULL) {
    lua_pushliteral(L, "d2r.Policy(closed)");
    return 1;
  }
  c = d2r_policy_get_config(*slot);
  lua_pushfstring(L, "d2r.Policy(%s, %I -> %I, %I parameters)",
                  d2r_policy_kind_name(c->kind), (lua_Integer)c->in,
                  (lua_Integer)c->out,
                  (lua_Integer)d2r_policy_numel(*slot));
  return 1;
}

static int d_gc(lua_State *L) {
  d2r_pdist_clear(checkpdist(L, 1));
  return 0;
}

/* ---- constructors ---------------------------------------------------- */

static const char *const gaussian_fields[] = {
  "in", "inputs", "out", "hidden", "activation", "log_std",
  "log_std_init", "bounds", "rng", NULL
};
static const char *const full_fields[] = {
  "in", "inputs", "out", "hidden", "activation", "jitter", "rng", NULL
};
static const char *const categorical_fields[] = {
  "in", "inputs", "out", "hidden", "activation", "rng", NULL
};
static const char *const bound_fields[] = {"min", "max", "learn", NULL};
static const char *const log_std_kinds[] = {"head", "global", NULL};

/* A required positive integer option. */
static int64_t checksize(lua_State *L, const char *key) {
  lua_Integer v = ld2r_optint(L, 1, key, 0);
  if (v < 1)
    luaL_argerror(L, 1, lua_pushfstring(L, "option '%s' must be a "
                  "positive integer", key));
  return (int64_t)v;
}

/* The input size: option "in" (written ["in"] = n) or "inputs". */
static int64_t checkin(lua_State *L) {
  int has_in = lua_getfield(L, 1, "in") != LUA_TNIL;
  int has_inputs = lua_getfield(L, 1, "inputs") != LUA_TNIL;
  lua_pop(L, 2);
  if (has_in && has_inputs)
    luaL_argerror(L, 1, "give one of options 'in' and 'inputs'");
  return checksize(L, has_inputs ? "inputs" : "in");
}

/* Reads option hidden (default {64, 64}) into h; returns its length. */
static int checkhidden(lua_State *L, int64_t *h) {
  int i, n, t = lua_getfield(L, 1, "hidden");
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    h[0] = h[1] = 64;
    return 2;
  }
  if (t != LUA_TTABLE)
    luaL_argerror(L, 1, "option 'hidden' must be a list of sizes");
  n = (int)lua_rawlen(L, -1);
  if (n > MAXHIDDEN)
    luaL_argerror(L, 1, "too many hidden layers");
  for (i = 0; i < n; i++) {
    int isint;
    lua_rawgeti(L, -1, i + 1);
    h[i] = (int64_t)lua_tointegerx(L, -1, &isint);
    if (!isint || h[i] < 1)
      luaL_argerror(L, 1, "hidden sizes must be positive integers");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return n;
}

static d2r_activation checkact(lua_State *L) {
  d2r_activation act;
  int t = lua_getfield(L, 1, "activation");
  const char *name = t == LUA_TNIL ? "relu" : lua_tostring(L, -1);
  if (t != LUA_TNIL && t != LUA_TSTRING)
    luaL_argerror(L, 1, "option 'activation' must be a string");
  if (d2r_activation_parse(name, &act) < 0)
    luaL_argerror(L, 1, d2r_error());
  lua_pop(L, 1);
  return act;
}

/* Option bounds = {min =, max =, learn =} of a Gaussian policy. */
static void checkbounds(lua_State *L, d2r_policy_config *c) {
  int t = lua_getfield(L, 1, "bounds");
  int top = lua_gettop(L);
  if (t != LUA_TNIL) {
    if (t != LUA_TTABLE)
      luaL_argerror(L, 1, "option 'bounds' must be a table");
    ld2r_checkfields(L, top, bound_fields);
    c->bounded = true;
    c->min_log_std = ld2r_optnumber(L, top, "min", c->min_log_std);
    c->max_log_std = ld2r_optnumber(L, top, "max", c->max_log_std);
    c->learn_bounds = ld2r_optbool(L, top, "learn", 0);
  }
  lua_pop(L, 1);
}

/* Builds the policy of config c (hidden sizes in h) with the generator
 * of option rng, which the new userdata keeps. */
static int build(lua_State *L, d2r_policy_config *c, const char *name) {
  d2r_policy **slot;
  d2r_rng *r;
  if (lua_getfield(L, 1, "rng") == LUA_TNIL)
    luaL_argerror(L, 1, "option 'rng' is required");
  r = ld2r_checkrng(L, lua_gettop(L));
  slot = newpolicy(L);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, 1);
  *slot = d2r_policy_new(c, r);
  if (*slot == NULL)
    return ld2r_fail(L, name);
  return 1;
}

/* Fields common to every kind: sizes, trunk and activation. */
static d2r_policy_config common(lua_State *L, d2r_policy_kind kind,
                                const char *const *fields, int64_t *h) {
  d2r_policy_config c;
  luaL_checktype(L, 1, LUA_TTABLE);
  ld2r_checkfields(L, 1, fields);
  c = d2r_policy_config_default(kind, checkin(L), checksize(L, "out"));
  c.nhidden = checkhidden(L, h);
  c.hidden = h;
  c.act = checkact(L);
  return c;
}

/* d2r.gaussian_policy{in =, out =, hidden = {64, 64}, activation =
 * "relu", log_std = "head" | "global", log_std_init = 0, bounds = {min =,
 * max =, learn =}, rng =}. */
static int f_gaussian_policy(lua_State *L) {
  int64_t h[MAXHIDDEN];
  d2r_policy_config c = common(L, D2R_POLICY_GAUSSIAN, gaussian_fields, h);
  c.log_std = (d2r_log_std_kind)ld2r_optchoice(L, 1, "log_std", 0,
                                               log_std_kinds);
  c.log_std_init = ld2r_optnumber(L, 1, "log_std_init", 0);
  checkbounds(L, &c);
  return build(L, &c, "gaussian_policy");
}

/* d2r.full_gaussian_policy{in =, out =, hidden =, activation =,
 * jitter = 1e-6, rng =}. */
static int f_full_gaussian_policy(lua_State *L) {
  int64_t h[MAXHIDDEN];
  d2r_policy_config c = common(L, D2R_POLICY_FULL_GAUSSIAN, full_fields,
                               h);
  c.jitter = ld2r_optnumber(L, 1, "jitter", c.jitter);
  return build(L, &c, "full_gaussian_policy");
}

/* d2r.categorical_policy{in =, out = classes, hidden =, activation =,
 * rng =}. */
static int f_categorical_policy(lua_State *L) {
  int64_t h[MAXHIDDEN];
  d2r_policy_config c = common(L, D2R_POLICY_CATEGORICAL,
                               categorical_fields, h);
  return build(L, &c, "categorical_policy");
}

/* ---- distributions --------------------------------------------------- */

/* p:dist(x [, params]): the distribution at x, optionally with other
 * parameter tensors (a list shaped as p:parameters()). */
static int p_dist(lua_State *L) {
  d2r_policy *p = checkpolicy(L, 1);
  d2r_tensor *x = ld2r_checkoperand(L, 2);
  d2r_tensor **ps = NULL;
  d2r_pdist *d;
  int n = 0, rc;
  if (!lua_isnoneornil(L, 3)) {
    ps = ld2r_checktensorlist(L, 3, &n);
    if (n != d2r_policy_nparams(p))
      return luaL_error(L, "dist: %d parameter tensors given, the policy "
                        "has %d", n, d2r_policy_nparams(p));
  }
  d = newpdist(L);
  lua_getiuservalue(L, 1, 1);
  lua_setiuservalue(L, -2, 1);
  rc = ps ? d2r_policy_dist_with(p, ps, x, d) : d2r_policy_dist(p, x, d);
  ld2r_checkstatus(L, rc, "dist");
  return 1;
}

static int64_t checkdraws(lua_State *L, int arg) {
  lua_Integer g = luaL_optinteger(L, arg, 1);
  luaL_argcheck(L, g >= 1, arg, "draw count must be positive");
  return (int64_t)g;
}

/* Draws G (at garg) samples from d, whose userdata is at obj, with the
 * generator at rarg or the one d keeps. */
static int draw(lua_State *L, d2r_pdist *d, int obj, int garg, int rarg,
                bool rs) {
  int64_t g = checkdraws(L, garg);
  d2r_rng *r = userng(L, obj, rarg);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = rs ? d2r_pdist_rsample(r, d, g) : d2r_pdist_sample(r, d, g);
  return ld2r_check(L, *slot, rs ? "rsample" : "sample");
}

/* log p(y) with y at yarg and the reduction at rarg. */
static int log_prob(lua_State *L, d2r_pdist *d, int yarg, int rarg) {
  d2r_tensor *y = ld2r_checkoperand(L, yarg);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, rarg, "mean");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_pdist_log_prob(d, y, red);
  return ld2r_check(L, *slot, "log_prob");
}

static int entropy(lua_State *L, d2r_pdist *d, int rarg) {
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, rarg, "mean");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_pdist_entropy(d, red);
  return ld2r_check(L, *slot, "entropy");
}

static int moment(lua_State *L, d2r_pdist *d, bool cov) {
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = cov ? d2r_pdist_covariance(d) : d2r_pdist_mean(d);
  return ld2r_check(L, *slot, cov ? "covariance" : "mean");
}

/* Pushes a new reference to t, or nil. */
static void pushornil(lua_State *L, d2r_tensor *t) {
  d2r_tensor **slot;
  if (t == NULL) {
    lua_pushnil(L);
    return;
  }
  slot = ld2r_newtensor(L);
  *slot = d2r_retain(t);
}

/* mean, log_std (diagonal); mean, chol (full); or logits. */
static int pushparams(lua_State *L, const d2r_pdist *d) {
  if (d->mean == NULL && d->logits == NULL)
    return luaL_error(L, "params: the distribution is empty");
  if (d->kind == D2R_POLICY_CATEGORICAL) {
    pushornil(L, d->logits);
    return 1;
  }
  pushornil(L, d->mean);
  pushornil(L, d->kind == D2R_POLICY_GAUSSIAN ? d->log_std : d->chol);
  return 2;
}

/* d:sample([G [, rng]]), d:rsample([G [, rng]]). */
static int d_sample(lua_State *L) {
  return draw(L, checkpdist(L, 1), 1, 2, 3, false);
}

static int d_rsample(lua_State *L) {
  return draw(L, checkpdist(L, 1), 1, 2, 3, true);
}

/* d:log_prob(y [, reduce = "mean"]), d:entropy([reduce = "mean"]). */
static int d_log_prob(lua_State *L) {
  return log_prob(L, checkpdist(L, 1), 2, 3);
}

static int d_entropy(lua_State *L) {
  return entropy(L, checkpdist(L, 1), 2);
}

static int d_mean(lua_State *L) {
  return moment(L, checkpdist(L, 1), false);
}

static int d_covariance(lua_State *L) {
  return moment(L, checkpdist(L, 1), true);
}

static int d_params(lua_State *L) {
  return pushparams(L, checkpdist(L, 1));
}

static int d_kind(lua_State *L) {
  lua_pushstring(L, d2r_policy_kind_name(checkpdist(L, 1)->kind));
  return 1;
}

/* ---- policy methods: a forward pass, then the distribution's --------- */

/* With the policy at 1, x at 2 and the other arguments up to nargs:
 * pushes the distribution at x (at nargs + 1) and returns it. */
static d2r_pdist *pushdist(lua_State *L, int nargs) {
  checkpolicy(L, 1);
  lua_settop(L, nargs);
  lua_pushcfunction(L, p_dist);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1);
  return checkpdist(L, nargs + 1);
}

/* p:forward(x), also p(x): mean, log_std; mean, chol; or logits. */
static int p_forward(lua_State *L) {
  return pushparams(L, pushdist(L, 2));
}

/* p:sample(x [, G [, rng]]), p:rsample(x [, G [, rng]]). */
static int p_sample(lua_State *L) {
  return draw(L, pushdist(L, 4), 5, 3, 4, false);
}

static int p_rsample(lua_State *L) {
  return draw(L, pushdist(L, 4), 5, 3, 4, true);
}

/* p:log_prob(x, y [, reduce = "mean"]), p:entropy(x [, reduce]). */
static int p_log_prob(lua_State *L) {
  return log_prob(L, pushdist(L, 4), 3, 4);
}

static int p_entropy(lua_State *L) {
  return entropy(L, pushdist(L, 3), 3);
}

static int p_mean(lua_State *L) {
  return moment(L, pushdist(L, 2), false);
}

static int p_covariance(lua_State *L) {
  return moment(L, pushdist(L, 2), true);
}

/* ---- policy introspection -------------------------------------------- */

static int p_parameters(lua_State *L) {
  d2r_policy *p = checkpolicy(L, 1);
  ld2r_pushtensorlist(L, d2r_policy_nparams(p), d2r_policy_params(p));
  return 1;
}

static int p_nparams(lua_State *L) {
  lua_pushinteger(L, d2r_policy_nparams(checkpolicy(L, 1)));
  return 1;
}

static int p_numel(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)d2r_policy_numel(checkpolicy(L, 1)));
  return 1;
}

static int p_kind(lua_State *L) {
  const d2r_policy_config *c = d2r_policy_get_config(checkpolicy(L, 1));
  lua_pushstring(L, d2r_policy_kind_name(c->kind));
  return 1;
}

static int p_sizes(lua_State *L) {
  const d2r_policy_config *c = d2r_policy_get_config(checkpolicy(L, 1));
  lua_pushinteger(L, (lua_Integer)c->in);
  lua_pushinteger(L, (lua_Integer)c->out);
  return 2;
}

/* p:bounds(): lo, hi (tensors [n]), or nil for a policy without them. */
static int p_bounds(lua_State *L) {
  d2r_policy *p = checkpolicy(L, 1);
  d2r_tensor **lo = ld2r_newtensor(L), **hi = ld2r_newtensor(L);
  if (d2r_policy_bounds(p, lo, hi) < 0) {
    lua_pushnil(L);
    return 1;
  }
  return 2;
}

static int p_bounds_penalty(lua_State *L) {
  d2r_policy *p = checkpolicy(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_policy_bounds_penalty(p);
  return ld2r_check(L, *slot, "bounds_penalty");
}

/* true, or nil and the engine's message. */
static int pushstatus(lua_State *L, int status) {
  if (status < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, d2r_error());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p:save(path), p:load(path): every parameter, as d2r.params_save. */
static int p_save(lua_State *L) {
  d2r_policy *p = checkpolicy(L, 1);
  const char *path = luaL_checkstring(L, 2);
  return pushstatus(L, d2r_params_save(path, d2r_policy_nparams(p),
                                       d2r_policy_params(p)));
}

static int p_load(lua_State *L) {
  d2r_policy *p = checkpolicy(L, 1);
  const char *path = luaL_checkstring(L, 2);
  return pushstatus(L, d2r_params_load(path, d2r_policy_nparams(p),
                                       d2r_policy_params(p)));
}

/* ---- full-covariance Gaussian and the full reward -------------------- */

typedef d2r_tensor *(*mvn_draw_fn)(d2r_rng *, d2r_tensor *, d2r_tensor *,
                                   int64_t);

static int mvn_draw(lua_State *L, mvn_draw_fn fn, const char *name) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  d2r_tensor *mean = ld2r_checkoperand(L, 2);
  d2r_tensor *chol = ld2r_checkoperand(L, 3);
  int64_t g = checkdraws(L, 4);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = fn(r, mean, chol, g);
  return ld2r_check(L, *slot, name);
}

/* d2r.mvn_sample(rng, mean, chol [, G]), d2r.mvn_rsample(...). */
static int f_mvn_sample(lua_State *L) {
  return mvn_draw(L, d2r_mvn_sample, "mvn_sample");
}

static int f_mvn_rsample(lua_State *L) {
  return mvn_draw(L, d2r_mvn_rsample, "mvn_rsample");
}

/* d2r.mvn_log_prob(mean, chol, y [, reduce = "sum"]). */
static int f_mvn_log_prob(lua_State *L) {
  d2r_tensor *mean = ld2r_checkoperand(L, 1);
  d2r_tensor *chol = ld2r_checkoperand(L, 2);
  d2r_tensor *y = ld2r_checkoperand(L, 3);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 4, "sum");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_mvn_log_prob(mean, chol, y, red);
  return ld2r_check(L, *slot, "mvn_log_prob");
}

/* d2r.mvn_entropy(chol [, reduce = "sum"]). */
static int f_mvn_entropy(lua_State *L) {
  d2r_tensor *chol = ld2r_checkoperand(L, 1);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 2, "sum");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_mvn_entropy(chol, red);
  return ld2r_check(L, *slot, "mvn_entropy");
}

static const char *const full_reward_fields[] = {"ridge", "max_cond",
                                                 NULL};

typedef d2r_tensor *(*full_reward_fn)(d2r_tensor *, double, double, double,
                                      double *);

static int full_reward(lua_State *L, full_reward_fn fn, const char *name) {
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  double lambda = luaL_checknumber(L, 2), cond = 0;
  double ridge = ld2r_optnumber(L, 3, "ridge", 0);
  double max_cond = ld2r_optnumber(L, 3, "max_cond", 0);
  ld2r_checkfields(L, 3, full_reward_fields);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = fn(t, lambda, ridge, max_cond, &cond);
  ld2r_check(L, *slot, name);
  lua_pushnumber(L, cond);
  return 2;
}

/* d2r.reward_full(y, lambda [, {ridge =, max_cond =}]): U*, and the
 * condition estimate of the covariance. */
static int f_reward_full(lua_State *L) {
  return full_reward(L, d2r_reward_full, "reward_full");
}

/* d2r.reward_full_from_cov(Sigma, lambda [, {ridge =, max_cond =}]). */
static int f_reward_full_cov(lua_State *L) {
  return full_reward(L, d2r_reward_full_from_cov, "reward_full_from_cov");
}

/* ---- d2r.theory ------------------------------------------------------ */

static int t_inner_cov(lua_State *L) {
  d2r_tensor *U = ld2r_checkoperand(L, 1);
  double lambda = luaL_checknumber(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_inner_cov(U, lambda);
  return ld2r_check(L, *slot, "inner_cov");
}

static int t_optimal_reward(lua_State *L) {
  d2r_tensor *sig = ld2r_checkoperand(L, 1);
  double lambda = luaL_checknumber(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_optimal_reward(sig, lambda);
  return ld2r_check(L, *slot, "optimal_reward");
}

/* expected_reward(m, S, y, U). */
static int t_expected_reward(lua_State *L) {
  d2r_tensor *m = ld2r_checkoperand(L, 1), *s = ld2r_checkoperand(L, 2);
  d2r_tensor *y = ld2r_checkoperand(L, 3), *U = ld2r_checkoperand(L, 4);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_expected_reward(m, s, y, U);
  return ld2r_check(L, *slot, "expected_reward");
}

/* expected_reward_data(m, S, mu, Sigma, U). */
static int t_expected_reward_data(lua_State *L) {
  d2r_tensor *m = ld2r_checkoperand(L, 1), *s = ld2r_checkoperand(L, 2);
  d2r_tensor *mu = ld2r_checkoperand(L, 3);
  d2r_tensor *sig = ld2r_checkoperand(L, 4);
  d2r_tensor *U = ld2r_checkoperand(L, 5);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_expected_reward_data(m, s, mu, sig, U);
  return ld2r_check(L, *slot, "expected_reward_data");
}

/* inner_objective(m, S, mu, Sigma, U, lambda). */
static int t_inner_objective(lua_State *L) {
  d2r_tensor *m = ld2r_checkoperand(L, 1), *s = ld2r_checkoperand(L, 2);
  d2r_tensor *mu = ld2r_checkoperand(L, 3);
  d2r_tensor *sig = ld2r_checkoperand(L, 4);
  d2r_tensor *U = ld2r_checkoperand(L, 5);
  double lambda = luaL_checknumber(L, 6);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_inner_objective(m, s, mu, sig, U, lambda);
  return ld2r_check(L, *slot, "inner_objective");
}

/* entropy(S [, reduce = "sum"]). */
static int t_entropy(lua_State *L) {
  d2r_tensor *s = ld2r_checkoperand(L, 1);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 2, "sum");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_entropy(s, red);
  return ld2r_check(L, *slot, "entropy");
}

/* cross_entropy(mu, Sigma, m, S [, reduce = "sum"]). */
static int t_cross_entropy(lua_State *L) {
  d2r_tensor *mu = ld2r_checkoperand(L, 1);
  d2r_tensor *sig = ld2r_checkoperand(L, 2);
  d2r_tensor *m = ld2r_checkoperand(L, 3), *s = ld2r_checkoperand(L, 4);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 5, "sum");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_cross_entropy(mu, sig, m, s, red);
  return ld2r_check(L, *slot, "cross_entropy");
}

/* outer_objective(U, Sigma, lambda [, reduce = "sum"]). */
static int t_outer_objective(lua_State *L) {
  d2r_tensor *U = ld2r_checkoperand(L, 1);
  d2r_tensor *sig = ld2r_checkoperand(L, 2);
  double lambda = luaL_checknumber(L, 3);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 4, "sum");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_outer_objective(U, sig, lambda, red);
  return ld2r_check(L, *slot, "outer_objective");
}

/* kl(m1, S1, m2, S2): KL(N(m1, S1) || N(m2, S2)). */
static int t_kl(lua_State *L) {
  d2r_tensor *m1 = ld2r_checkoperand(L, 1), *s1 = ld2r_checkoperand(L, 2);
  d2r_tensor *m2 = ld2r_checkoperand(L, 3), *s2 = ld2r_checkoperand(L, 4);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_theory_kl(m1, s1, m2, s2);
  return ld2r_check(L, *slot, "kl");
}

/* ---- registration ---------------------------------------------------- */

static const luaL_Reg policy_methods[] = {
  {"dist", p_dist}, {"forward", p_forward}, {"sample", p_sample},
  {"rsample", p_rsample}, {"log_prob", p_log_prob},
  {"entropy", p_entropy}, {"mean", p_mean}, {"covariance", p_covariance},
  {"parameters", p_parameters}, {"nparams", p_nparams},
  {"numel", p_numel}, {"kind", p_kind}, {"sizes", p_sizes},
  {"bounds", p_bounds}, {"bounds_penalty", p_bounds_penalty},
  {"save", p_save}, {"load", p_load}, {"close", p_gc},
  {NULL, NULL}
};

static const luaL_Reg policy_meta[] = {
  {"__gc", p_gc}, {"__close", p_gc}, {"__tostring", p_tostring},
  {"__call", p_forward},
  {NULL, NULL}
};

static const luaL_Reg pdist_methods[] = {
  {"sample", d_sample}, {"rsample", d_rsample},
  {"log_prob", d_log_prob}, {"entropy", d_entropy}, {"mean", d_mean},
  {"covariance", d_covariance}, {"params", d_params}, {"kind", d_kind},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"gaussian_policy", f_gaussian_policy},
  {"full_gaussian_policy", f_full_gaussian_policy},
  {"categorical_policy", f_categorical_policy},
  {"mvn_sample", f_mvn_sample}, {"mvn_rsample", f_mvn_rsample},
  {"mvn_log_prob", f_mvn_log_prob}, {"mvn_entropy", f_mvn_entropy},
  {"reward_full", f_reward_full},
  {"reward_full_from_cov", f_reward_full_cov},
  {NULL, NULL}
};

static const luaL_Reg theory_functions[] = {
  {"inner_cov", t_inner_cov}, {"optimal_reward", t_optimal_reward},
  {"expected_reward", t_expected_reward},
  {"expected_reward_data", t_expected_reward_data},
  {"inner_objective", t_inner_objective}, {"entropy", t_entropy},
  {"cross_entropy", t_cross_entropy},
  {"outer_objective", t_outer_objective}, {"kl", t_kl},
  {NULL, NULL}
};

/* Registers type tname with its metamethods and a method table, which
 * also becomes field `field` of the module table (below them). */
static void newtype(lua_State *L, const char *tname, const luaL_Reg *meta,
                    const luaL_Reg *methods, const char *field) {
  luaL_newmetatable(L, tname);
  if (meta != NULL)
    luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, field);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* With the module table at the top: registers d2r.Policy and
 * d2r.PolicyDist, the functions, and the d2r.theory table. */
int ld2r_open_policy(lua_State *L) {
  newtype(L, POLICY, policy_meta, policy_methods, "Policy");
  luaL_newmetatable(L, PDIST);
  lua_pushcfunction(L, d_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, d_gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  newtype(L, PDIST, NULL, pdist_methods, "PolicyDist");
  luaL_setfuncs(L, functions, 0);
  lua_newtable(L);
  luaL_setfuncs(L, theory_functions, 0);
  lua_setfield(L, -2, "theory");
  return 0;
}

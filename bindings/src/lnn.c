/*
 * Models for Lua: the d2r.Model type (linear layers and MLPs, called as
 * functions), parameter lists as flat vectors, and parameter files.
 * Reading or writing a file that fails returns nil and a message.
 */
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/nn.h"
#include "ld2r.h"

#define PARAM_ARRAY "d2r.ParamArray"

/* ---- the userdata ---------------------------------------------------- */

static d2r_model **newmodel(lua_State *L) {
  d2r_model **slot = lua_newuserdatauv(L, sizeof(*slot), 0);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_MODEL);
  return slot;
}

d2r_model *ld2r_checkmodel(lua_State *L, int arg) {
  d2r_model **slot = luaL_checkudata(L, arg, LD2R_MODEL);
  if (*slot == NULL)
    luaL_argerror(L, arg, "model has been closed");
  return *slot;
}

d2r_tensor **ld2r_checkparams(lua_State *L, int arg, int *n) {
  d2r_tensor **ts;
  d2r_tensor *const *ps;
  d2r_model *m;
  int i;
  if (lua_istable(L, arg))
    return ld2r_checktensorlist(L, arg, n);
  if (luaL_testudata(L, arg, LD2R_MODEL) == NULL)
    luaL_typeerror(L, arg, "model or list of tensors");
  m = ld2r_checkmodel(L, arg);
  *n = d2r_model_nparams(m);
  ps = d2r_model_params(m);
  ts = lua_newuserdatauv(L, (size_t)(*n > 0 ? *n : 1) * sizeof(*ts), 0);
  for (i = 0; i < *n; i++)
    ts[i] = ps[i];
  return ts;
}

static int m_gc(lua_State *L) {
  d2r_model **slot = luaL_checkudata(L, 1, LD2R_MODEL);
  d2r_model_release(*slot);
  *slot = NULL;
  return 0;
}

static int m_tostring(lua_State *L) {
  d2r_model **slot = luaL_checkudata(L, 1, LD2R_MODEL);
  d2r_model *m = *slot;
  if (m == NULL) {
    lua_pushliteral(L, "d2r.Model(closed)");
    return 1;
  }
  lua_pushfstring(L, "d2r.Model(%s, %I -> %I, %I parameters)",
                  d2r_model_kind(m), (lua_Integer)d2r_model_in_features(m),
                  (lua_Integer)d2r_model_out_features(m),
                  (lua_Integer)d2r_model_numel(m));
  return 1;
}

/* ---- constructors ---------------------------------------------------- */

/* d2r.linear(in, out, rng [, bias]): weight [in, out], bias [out]. */
static int f_linear(lua_State *L) {
  lua_Integer in = luaL_checkinteger(L, 1), out = luaL_checkinteger(L, 2);
  d2r_rng *r = ld2r_checkrng(L, 3);
  int bias = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  d2r_model **slot;
  luaL_argcheck(L, in >= 1, 1, "input size must be positive");
  luaL_argcheck(L, out >= 1, 2, "output size must be positive");
  slot = newmodel(L);
  *slot = d2r_linear_new((int64_t)in, (int64_t)out, bias, r);
  if (*slot == NULL)
    return ld2r_fail(L, "linear");
  return 1;
}

static d2r_activation checkactivation(lua_State *L, int arg,
                                      const char *def) {
  d2r_activation act;
  const char *name = def ? luaL_optstring(L, arg, def)
                         : luaL_checkstring(L, arg);
  if (d2r_activation_parse(name, &act) < 0)
    luaL_argerror(L, arg, d2r_error());
  return act;
}

/* d2r.mlp(in, hidden, out, rng [, activation]): hidden is a list of
 * layer sizes; the activation ("relu" by default) follows every layer
 * but the last. */
static int f_mlp(lua_State *L) {
  int64_t hidden[64];
  lua_Integer in = luaL_checkinteger(L, 1), out = luaL_checkinteger(L, 3);
  d2r_rng *r = ld2r_checkrng(L, 4);
  d2r_activation act = checkactivation(L, 5, "relu");
  int i, nh;
  d2r_model **slot;
  luaL_checktype(L, 2, LUA_TTABLE);
  nh = (int)lua_rawlen(L, 2);
  luaL_argcheck(L, nh <= 64, 2, "too many hidden layers");
  for (i = 0; i < nh; i++) {
    int isint;
    lua_rawgeti(L, 2, i + 1);
    hidden[i] = (int64_t)lua_tointegerx(L, -1, &isint);
    luaL_argcheck(L, isint && hidden[i] >= 1, 2,
                  "hidden sizes must be positive integers");
    lua_pop(L, 1);
  }
  luaL_argcheck(L, in >= 1, 1, "input size must be positive");
  luaL_argcheck(L, out >= 1, 3, "output size must be positive");
  slot = newmodel(L);
  *slot = d2r_mlp_new((int64_t)in, nh, hidden, (int64_t)out, act, r);
  if (*slot == NULL)
    return ld2r_fail(L, "mlp");
  return 1;
}

/* ---- methods --------------------------------------------------------- */

/* m:forward(x), also m(x). */
static int m_forward(lua_State *L) {
  d2r_model *m = ld2r_checkmodel(L, 1);
  d2r_tensor *x = ld2r_checkoperand(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_model_forward(m, x);
  return ld2r_check(L, *slot, "forward");
}

/* m:call(params, x): the model with other parameter tensors. */
static int m_call(lua_State *L) {
  lua_settop(L, 3);
  d2r_model *m = ld2r_checkmodel(L, 1);
  int n;
  d2r_tensor **ps = ld2r_checktensorlist(L, 2, &n);
  d2r_tensor *x = ld2r_checkoperand(L, 3);
  d2r_tensor **slot;
  if (n != d2r_model_nparams(m))
    return luaL_error(L, "call: %d parameter tensors given, the model "
                      "has %d", n, d2r_model_nparams(m));
  slot = ld2r_newtensor(L);
  *slot = d2r_model_call(m, ps, x);
  return ld2r_check(L, *slot, "call");
}

static int m_parameters(lua_State *L) {
  d2r_model *m = ld2r_checkmodel(L, 1);
  ld2r_pushtensorlist(L, d2r_model_nparams(m), d2r_model_params(m));
  return 1;
}

static int m_kind(lua_State *L) {
  lua_pushstring(L, d2r_model_kind(ld2r_checkmodel(L, 1)));
  return 1;
}

static int m_sizes(lua_State *L) {
  d2r_model *m = ld2r_checkmodel(L, 1);
  lua_pushinteger(L, (lua_Integer)d2r_model_in_features(m));
  lua_pushinteger(L, (lua_Integer)d2r_model_out_features(m));
  return 2;
}

static int m_nparams(lua_State *L) {
  lua_pushinteger(L, d2r_model_nparams(ld2r_checkmodel(L, 1)));
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)d2r_model_numel(ld2r_checkmodel(L, 1)));
  return 1;
}

static int m_nlayers(lua_State *L) {
  int n = d2r_mlp_nlayers(ld2r_checkmodel(L, 1));
  if (n < 0)
    return ld2r_fail(L, "nlayers");
  lua_pushinteger(L, n);
  return 1;
}

static int m_activation(lua_State *L) {
  d2r_model *m = ld2r_checkmodel(L, 1);
  lua_pushstring(L, d2r_activation_name(d2r_mlp_activation(m)));
  return 1;
}

/* ---- parameter lists (a model or a list of tensors) ------------------ */

static int p_numel(lua_State *L) {
  lua_settop(L, 1);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  lua_pushinteger(L, (lua_Integer)d2r_params_numel(n, ps));
  return 1;
}

typedef d2r_tensor *(*list_fn)(int, d2r_tensor *const *);

static int list_op(lua_State *L, list_fn fn, const char *name) {
  lua_settop(L, 1);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = fn(n, ps);
  return ld2r_check(L, *slot, name);
}

/* flatten(params): a copy of all values as one vector. */
static int p_flatten(lua_State *L) {
  return list_op(L, d2r_params_flatten, "flatten");
}

static int p_grad_flat(lua_State *L) {
  return list_op(L, d2r_params_grad_flat, "grad_flat");
}

/* params_cat(list): the differentiable concatenation as one vector. */
static int p_cat(lua_State *L) {
  return list_op(L, d2r_params_cat, "params_cat");
}

static int p_assign_flat(lua_State *L) {
  lua_settop(L, 2);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  d2r_tensor *flat = ld2r_checkoperand(L, 2);
  ld2r_checkstatus(L, d2r_params_assign_flat(n, ps, flat), "assign_flat");
  lua_settop(L, 1);
  return 1;
}

static int p_zero_grad(lua_State *L) {
  lua_settop(L, 1);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  d2r_params_zero_grad(n, ps);
  lua_settop(L, 1);
  return 1;
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

/* m:save(path) / d2r.params_save(params, path). */
static int p_save(lua_State *L) {
  lua_settop(L, 2);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  const char *path = luaL_checkstring(L, 2);
  return pushstatus(L, d2r_params_save(path, n, ps));
}

/* m:load(path) / d2r.params_load(params, path). */
static int p_load(lua_State *L) {
  lua_settop(L, 2);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  const char *path = luaL_checkstring(L, 2);
  return pushstatus(L, d2r_params_load(path, n, ps));
}

typedef struct {
  int n;
  d2r_tensor **ts;
} param_array;

static int array_gc(lua_State *L) {
  param_array *a = luaL_checkudata(L, 1, PARAM_ARRAY);
  int i;
  for (i = 0; i < a->n; i++)
    d2r_release(a->ts[i]);
  free(a->ts);
  a->ts = NULL;
  a->n = 0;
  return 0;
}

/* d2r.params_read(path): every tensor of a parameter file, or nil and a
 * message. */
static int f_params_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  param_array *a = lua_newuserdatauv(L, sizeof(*a), 0);
  int i;
  a->n = 0;
  a->ts = NULL;
  luaL_setmetatable(L, PARAM_ARRAY);
  if (d2r_params_read(path, &a->n, &a->ts) < 0) {
    a->n = 0;
    a->ts = NULL;
    luaL_pushfail(L);
    lua_pushstring(L, d2r_error());
    return 2;
  }
  lua_createtable(L, a->n, 0);
  for (i = 0; i < a->n; i++) {
    d2r_tensor **slot = ld2r_newtensor(L);
    *slot = d2r_retain(a->ts[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* d2r.activate(x, name). */
static int f_activate(lua_State *L) {
  d2r_tensor *x = ld2r_checkoperand(L, 1);
  d2r_activation act = checkactivation(L, 2, NULL);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_activate(x, act);
  return ld2r_check(L, *slot, "activate");
}

/* d2r.linear_forward(x, w [, b]): x @ w + b on the last dimension. */
static int f_linear_forward(lua_State *L) {
  d2r_tensor *x = ld2r_checkoperand(L, 1);
  d2r_tensor *w = ld2r_checktensor(L, 2);
  d2r_tensor *b = lua_isnoneornil(L, 3) ? NULL : ld2r_checktensor(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_linear_forward(x, w, b);
  return ld2r_check(L, *slot, "linear_forward");
}

/* ---- registration ---------------------------------------------------- */

static const luaL_Reg methods[] = {
  {"forward", m_forward}, {"call", m_call},
  {"parameters", m_parameters}, {"kind", m_kind}, {"sizes", m_sizes},
  {"nparams", m_nparams}, {"numel", m_numel}, {"nlayers", m_nlayers},
  {"activation", m_activation}, {"flatten", p_flatten},
  {"assign_flat", p_assign_flat}, {"grad_flat", p_grad_flat},
  {"zero_grad", p_zero_grad}, {"save", p_save}, {"load", p_load},
  {"close", m_gc},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", m_gc}, {"__close", m_gc}, {"__tostring", m_tostring},
  {"__call", m_forward},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"linear", f_linear}, {"mlp", f_mlp}, {"activate", f_activate},
  {"linear_forward", f_linear_forward},
  {"params_numel", p_numel}, {"params_flatten", p_flatten},
  {"params_assign_flat", p_assign_flat},
  {"params_grad_flat", p_grad_flat}, {"params_cat", p_cat},
  {"params_zero_grad", p_zero_grad}, {"params_save", p_save},
  {"params_load", p_load}, {"params_read", f_params_read},
  {NULL, NULL}
};

/* With the module table at the top: registers d2r.Model and functions. */
int ld2r_open_nn(lua_State *L) {
  luaL_newmetatable(L, PARAM_ARRAY);
  lua_pushcfunction(L, array_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, LD2R_MODEL);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Model");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
  return 0;
}

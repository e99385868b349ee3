/*
 * Reverse-mode autodiff for Lua: gradient flags and accumulated
 * gradients of tensors, backward, d2r.grad (gradients of several outputs
 * with respect to several inputs, optionally differentiable again) and
 * the switch that turns recording on and off.
 */
#include <stdbool.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

/* t:requires_grad(flag) marks t (returns t); t:requires_grad() tells. */
static int t_requires_grad(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  if (lua_isnone(L, 2)) {
    lua_pushboolean(L, d2r_requires_grad(t));
    return 1;
  }
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  ld2r_checkstatus(L, d2r_set_requires_grad(t, lua_toboolean(L, 2)),
                   "requires_grad");
  lua_settop(L, 1);
  return 1;
}

/* t:grad(): the accumulated gradient, or nil when there is none. */
static int t_grad(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  d2r_clear_error();
  *slot = d2r_grad(t);
  if (*slot == NULL)
    lua_pushnil(L);
  return 1;
}

static int t_zero_grad(lua_State *L) {
  d2r_zero_grad(ld2r_checktensor(L, 1));
  lua_settop(L, 1);
  return 1;
}

/* t:grad_fn(): the name of the operation that made t, nil for a leaf. */
static int t_grad_fn(lua_State *L) {
  const char *name = d2r_op_name(ld2r_checktensor(L, 1));
  if (name == NULL)
    lua_pushnil(L);
  else
    lua_pushstring(L, name);
  return 1;
}

static int t_backward(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  ld2r_checkstatus(L, d2r_backward(t), "backward");
  return 0;
}

/* ---- d2r.grad -------------------------------------------------------- */

/* Collects a tensor or a sequence of tensors at arg into an array that
 * is pushed (as a userdata); returns it and sets *n. */
static d2r_tensor **collect(lua_State *L, int arg, const char *what,
                            int *n) {
  d2r_tensor **ts;
  int i, len = 1;
  if (lua_istable(L, arg))
    len = (int)lua_rawlen(L, arg);
  else
    ld2r_checktensor(L, arg);
  if (len < 1)
    luaL_argerror(L, arg, lua_pushfstring(L, "no %s given", what));
  ts = lua_newuserdatauv(L, (size_t)len * sizeof(*ts), 0);
  if (!lua_istable(L, arg)) {
    ts[0] = ld2r_checktensor(L, arg);
  } else {
    for (i = 0; i < len; i++) {
      lua_rawgeti(L, arg, i + 1);
      ts[i] = ld2r_testtensor(L, -1);
      if (ts[i] == NULL)
        luaL_error(L, "grad: %s[%d] is a %s, not a tensor", what, i + 1,
                   luaL_typename(L, -1));
      lua_pop(L, 1);
    }
  }
  *n = len;
  return ts;
}

typedef struct {
  bool create_graph, allow_unused;
  int grad_outputs;     /* stack index of the option, 0 if absent */
} grad_options;

static void read_options(lua_State *L, int arg, grad_options *o) {
  o->create_graph = o->allow_unused = false;
  o->grad_outputs = 0;
  if (lua_isnoneornil(L, arg))
    return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_getfield(L, arg, "create_graph");
  o->create_graph = lua_toboolean(L, -1);
  lua_getfield(L, arg, "allow_unused");
  o->allow_unused = lua_toboolean(L, -1);
  lua_pop(L, 2);
  if (lua_getfield(L, arg, "grad_outputs") == LUA_TNIL)
    lua_pop(L, 1);
  else
    o->grad_outputs = lua_gettop(L);
}

/* Pushes a table of n empty tensors; their slots go to slots[]. */
static void result_table(lua_State *L, int n, d2r_tensor ***slots) {
  int i;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    slots[i] = ld2r_newtensor(L);
    lua_rawseti(L, -2, i + 1);
  }
}

/* d2r.grad(outputs, inputs [, options]): a table with the gradient of
 * sum_i <outputs[i], grad_outputs[i]> for each input.  Options:
 * create_graph, allow_unused, grad_outputs. */
static int f_grad(lua_State *L) {
  grad_options o;
  int nout, nin, ngo = 0, i, st;
  d2r_tensor **outs, **ins, **gos = NULL, **grads, ***slots;
  lua_settop(L, 3);
  read_options(L, 3, &o);
  outs = collect(L, 1, "outputs", &nout);
  ins = collect(L, 2, "inputs", &nin);
  if (o.grad_outputs) {
    gos = collect(L, o.grad_outputs, "grad_outputs", &ngo);
    if (ngo != nout)
      return luaL_error(L, "grad: %d grad_outputs for %d outputs", ngo,
                        nout);
  }
  grads = lua_newuserdatauv(L, (size_t)nin * sizeof(*grads), 0);
  slots = lua_newuserdatauv(L, (size_t)nin * sizeof(*slots), 0);
  for (i = 0; i < nin; i++)
    grads[i] = NULL;
  result_table(L, nin, slots);
  st = d2r_autograd(nout, outs, gos, nin, ins, o.create_graph,
                    o.allow_unused, grads);
  ld2r_checkstatus(L, st, "grad");
  for (i = 0; i < nin; i++)
    *slots[i] = grads[i];
  return 1;
}

/* d2r.set_grad_enabled(flag): returns the previous setting. */
static int f_set_grad_enabled(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  lua_pushboolean(L, d2r_set_grad_enabled(lua_toboolean(L, 1)));
  return 1;
}

static int f_grad_enabled(lua_State *L) {
  lua_pushboolean(L, d2r_grad_enabled());
  return 1;
}

/* d2r.detect_anomaly(flag): turns NaN detection on or off (see
 * d2r_set_detect_anomaly); returns the previous setting. */
static int f_detect_anomaly(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  lua_pushboolean(L, d2r_set_detect_anomaly(lua_toboolean(L, 1)));
  return 1;
}

static const luaL_Reg methods[] = {
  {"requires_grad", t_requires_grad}, {"grad", t_grad},
  {"zero_grad", t_zero_grad}, {"grad_fn", t_grad_fn},
  {"backward", t_backward},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"grad", f_grad}, {"set_grad_enabled", f_set_grad_enabled},
  {"grad_enabled", f_grad_enabled}, {"backward", t_backward},
  {"detect_anomaly", f_detect_anomaly},
  {NULL, NULL}
};

/* With the module table at the top: adds the methods and functions. */
int ld2r_open_autograd(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  lua_getfield(L, -1, "Tensor");
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 1);
  return 0;
}

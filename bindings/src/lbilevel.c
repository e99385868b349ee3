/*
 * Bilevel primitives for Lua: Hessian-vector and mixed products, flat
 * vectors over parameter lists, matrix-free linear solves whose operator
 * is a Lua function, and the implicit hypergradient whose losses are Lua
 * functions.  Lua callbacks run under lua_pcall inside the engine, and
 * their errors come back as engine failures, so nothing the engine holds
 * is skipped by a longjmp.
 */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/bilevel.h"
#include "ld2r.h"

/* ---- second-order products ---------------------------------------------- */

/* d2r.hvp(grads, params, v): H v as a flat vector, for grads computed
 * with create_graph. */
static int f_hvp(lua_State *L) {
  int n, m;
  lua_settop(L, 3);
  d2r_tensor **g = ld2r_checkparams(L, 1, &n);
  d2r_tensor **p = ld2r_checkparams(L, 2, &m);
  d2r_tensor *v = ld2r_checktensor(L, 3);
  if (n != m)
    return luaL_error(L, "hvp: %d gradients for %d parameters", n, m);
  d2r_tensor **slot = ld2r_newtensor(L);
  ld2r_checkstatus(L, d2r_hvp(n, g, p, v, slot), "hvp");
  return 1;
}

/* d2r.mixed_vp(grads, phi, v): d/dphi <grads, v> as a flat vector. */
static int f_mixed_vp(lua_State *L) {
  int n, m;
  lua_settop(L, 3);
  d2r_tensor **g = ld2r_checkparams(L, 1, &n);
  d2r_tensor **phi = ld2r_checkparams(L, 2, &m);
  d2r_tensor *v = ld2r_checktensor(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  ld2r_checkstatus(L, d2r_mixed_vp(n, g, m, phi, v, slot), "mixed_vp");
  return 1;
}

/* d2r.flatten(list): the tensors end to end (differentiable). */
static int f_flatten(lua_State *L) {
  int n;
  d2r_tensor **ts = ld2r_checkparams(L, 1, &n);
  if (n < 1) return luaL_argerror(L, 1, "empty list");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_flatten_list(n, ts);
  return ld2r_check(L, *slot, "flatten");
}

/* d2r.unflatten(flat, like): a table of views shaped like the list. */
static int f_unflatten(lua_State *L) {
  int n, i;
  lua_settop(L, 2);
  d2r_tensor *flat = ld2r_checktensor(L, 1);
  d2r_tensor **like = ld2r_checkparams(L, 2, &n);
  lua_createtable(L, n, 0);
  int tbl = lua_gettop(L);
  d2r_tensor ***slots = lua_newuserdatauv(L, (size_t)(n + 1) *
                                          sizeof(*slots), 0);
  d2r_tensor **parts = lua_newuserdatauv(L, (size_t)(n + 1) *
                                         sizeof(*parts), 0);
  for (i = 0; i < n; i++) {
    slots[i] = ld2r_newtensor(L);
    lua_rawseti(L, tbl, i + 1);
  }
  ld2r_checkstatus(L, d2r_unflatten(flat, n, like, parts), "unflatten");
  for (i = 0; i < n; i++) *slots[i] = parts[i];
  lua_settop(L, tbl);
  return 1;
}

/* ---- solver options ----------------------------------------------------- */

static const char *const solver_kinds[] = {"cg", "cg_normal", "neumann",
                                           "dense", NULL};

/* Reads solver, tol, max_iter, ridge, alpha from the options at arg. */
static d2r_solve_config read_solver(lua_State *L, int arg) {
  d2r_solve_config c = D2R_SOLVE_CONFIG_INIT;
  c.kind = (d2r_solver_kind)ld2r_optchoice(L, arg, "solver", 0,
                                           solver_kinds);
  c.tol = ld2r_optnumber(L, arg, "tol", c.tol);
  c.max_iter = (int)ld2r_optint(L, arg, "max_iter", c.max_iter);
  c.ridge = ld2r_optnumber(L, arg, "ridge", c.ridge);
  c.alpha = ld2r_optnumber(L, arg, "alpha", c.alpha);
  return c;
}

static void push_info(lua_State *L, const d2r_solve_info *info,
                      const d2r_solve_config *c) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, info->iterations);
  lua_setfield(L, -2, "iterations");
  lua_pushnumber(L, info->residual);
  lua_setfield(L, -2, "residual");
  lua_pushboolean(L, info->converged);
  lua_setfield(L, -2, "converged");
  lua_pushstring(L, d2r_solver_name(c->kind));
  lua_setfield(L, -2, "solver");
}

/* ---- Lua functions as engine callbacks ---------------------------------- */

typedef struct {
  lua_State *L;
  int fn;          /* stack index of the Lua function */
  const char *what;
} callback;

/* Runs under lua_pcall: calls the function at argument 1 with the tensor
 * of argument 2 (a light userdata) when there is one, so that even
 * wrapping the tensor as a userdata happens inside the protected call. */
static int trampoline(lua_State *L) {
  if (lua_islightuserdata(L, 2)) {
    d2r_tensor **slot = ld2r_newtensor(L);
    *slot = d2r_retain(lua_touserdata(L, 2));
    lua_replace(L, 2);
    lua_call(L, 1, 1);
  } else {
    lua_call(L, 0, 1);
  }
  return 1;
}

/* Calls the callback's function with v (or nothing when v is NULL) and
 * returns the tensor it returned (a new reference); otherwise NULL, with
 * the Lua error turned into the engine's message. */
static d2r_tensor *call_back(callback *cb, d2r_tensor *v) {
  lua_State *L = cb->L;
  lua_pushcfunction(L, trampoline);
  lua_pushvalue(L, cb->fn);
  if (v)
    lua_pushlightuserdata(L, v);
  if (lua_pcall(L, v ? 2 : 1, 1, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    d2r_fail("%s: %s", cb->what, msg ? msg : "(error object is not a "
             "string)");
    lua_pop(L, 1);
    return NULL;
  }
  d2r_tensor *t = ld2r_testtensor(L, -1);
  if (t == NULL)
    d2r_fail("%s: the function returned a %s, not a tensor", cb->what,
             luaL_typename(L, -1));
  else
    d2r_retain(t);
  lua_pop(L, 1);
  return t;
}

static int op_callback(void *ctx, d2r_tensor *v, d2r_tensor **out) {
  *out = call_back(ctx, v);
  return *out ? 0 : -1;
}

/* d2r.linsolve(op, b [, options]): solves (A + ridge I) x = b where
 * op(v) returns A v; returns x and a table {iterations, residual,
 * converged, solver}.  Options: solver ("cg", "cg_normal", "neumann",
 * "dense"), tol, max_iter, ridge, alpha, x0. */
static int f_linsolve(lua_State *L) {
  static const char *const known[] = {"solver", "tol", "max_iter", "ridge",
                                      "alpha", "x0", NULL};
  luaL_checktype(L, 1, LUA_TFUNCTION);
  d2r_tensor *b = ld2r_checktensor(L, 2);
  lua_settop(L, 3);
  ld2r_checkfields(L, 3, known);
  d2r_solve_config c = read_solver(L, 3);
  d2r_tensor *x0 = NULL;
  if (!lua_isnil(L, 3) && lua_getfield(L, 3, "x0") != LUA_TNIL)
    x0 = ld2r_checktensor(L, -1);
  callback cb = {L, 1, "linsolve operator"};
  d2r_tensor **slot = ld2r_newtensor(L);
  d2r_solve_info info;
  ld2r_checkstatus(L, d2r_linsolve(&c, op_callback, &cb, b, x0, slot,
                                   &info), "linsolve");
  push_info(L, &info, &c);
  return 2;
}

/* ---- implicit hypergradient --------------------------------------------- */

typedef struct {
  callback inner, outer;
} losses;

static d2r_tensor *inner_cb(void *ctx) {
  return call_back(&((losses *)ctx)->inner, NULL);
}

static d2r_tensor *outer_cb(void *ctx) {
  return call_back(&((losses *)ctx)->outer, NULL);
}

/* d2r.implicit_hypergrad{theta=, phi=, inner=, outer= [, w0=, solver=,
 * tol=, max_iter=, ridge=, alpha=]}: the hypergradient over phi (a flat
 * vector), the linear solve's solution w (for a warm start) and its
 * diagnostics.  inner() and outer() return the two losses, recomputed
 * with their graphs, at the current parameters. */
static int f_implicit(lua_State *L) {
  static const char *const known[] = {"theta", "phi", "inner", "outer",
                                      "w0", "solver", "tol", "max_iter",
                                      "ridge", "alpha", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  ld2r_checkfields(L, 1, known);
  d2r_solve_config c = read_solver(L, 1);
  lua_getfield(L, 1, "inner");   /* 2 */
  lua_getfield(L, 1, "outer");   /* 3 */
  if (!lua_isfunction(L, 2) || !lua_isfunction(L, 3))
    return luaL_argerror(L, 1, "'inner' and 'outer' must be functions");
  int nt, np;
  lua_getfield(L, 1, "theta");
  d2r_tensor **theta = ld2r_checkparams(L, lua_gettop(L), &nt);
  lua_getfield(L, 1, "phi");
  d2r_tensor **phi = ld2r_checkparams(L, lua_gettop(L), &np);
  d2r_tensor *w0 = NULL;
  if (lua_getfield(L, 1, "w0") != LUA_TNIL)
    w0 = ld2r_checktensor(L, -1);
  losses ls = {{L, 2, "inner loss"}, {L, 3, "outer loss"}};
  d2r_bilevel_fns fns = {inner_cb, outer_cb, &ls};
  d2r_tensor **hg = ld2r_newtensor(L);
  d2r_tensor **w = ld2r_newtensor(L);
  d2r_solve_info info;
  ld2r_checkstatus(L, d2r_implicit_hypergrad(nt, theta, np, phi, &fns, &c,
                                             w0, hg, w, &info),
                   "implicit_hypergrad");
  push_info(L, &info, &c);
  return 3;
}

/* ---- memory -------------------------------------------------------------- */

/* d2r.live_bytes(): bytes of engine tensor data alive in this thread
 * (graphs included; tensors Lua has not collected yet count too). */
static int f_live_bytes(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)d2r_live_bytes());
  return 1;
}

/* d2r.blas(): the OpenBLAS kernel set in use and its thread count. */
static int f_blas(lua_State *L) {
  lua_pushstring(L, d2r_blas_corename());
  lua_pushinteger(L, d2r_blas_threads(0));
  return 2;
}

static const luaL_Reg funcs[] = {
  {"live_bytes", f_live_bytes},
  {"blas", f_blas},
  {"hvp", f_hvp},
  {"mixed_vp", f_mixed_vp},
  {"flatten", f_flatten},
  {"unflatten", f_unflatten},
  {"linsolve", f_linsolve},
  {"implicit_hypergrad", f_implicit},
  {NULL, NULL}
};

int ld2r_open_bilevel(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  return 0;
}

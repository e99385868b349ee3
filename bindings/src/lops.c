/*
 * Tensor arithmetic for Lua: elementwise functions, binary operations and
 * comparisons (tensor or number on either side), the arithmetic
 * metamethods, reductions over a 1-based axis or all elements, matrix
 * products and the in-place updates.
 */
#include <math.h>
#include <stdbool.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

typedef d2r_tensor *(*unary_fn)(d2r_tensor *);
typedef d2r_tensor *(*binary_fn)(d2r_tensor *, d2r_tensor *);
typedef d2r_tensor *(*scalar_fn)(d2r_tensor *, double);
typedef d2r_tensor *(*reduce_fn)(d2r_tensor *, int, bool);

static int pushresult(lua_State *L, d2r_tensor **slot, const char *fn) {
  return ld2r_check(L, *slot, fn);
}

/* ---- elementwise ----------------------------------------------------- */

static const struct {
  const char *name;
  unary_fn fn;
} unary[] = {
  {"neg", d2r_neg}, {"exp", d2r_exp}, {"log", d2r_log},
  {"log1p", d2r_log1p}, {"sqrt", d2r_sqrt}, {"square", d2r_square},
  {"abs", d2r_abs}, {"sign", d2r_sign}, {"tanh", d2r_tanh},
  {"sigmoid", d2r_sigmoid}, {"relu", d2r_relu}, {"softplus", d2r_softplus},
  {"sin", d2r_sin}, {"cos", d2r_cos},
  {NULL, NULL}
};

static int op_unary(lua_State *L) {
  int i = (int)lua_tointeger(L, lua_upvalueindex(1));
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = unary[i].fn(t);
  return pushresult(L, slot, unary[i].name);
}

static d2r_tensor *subs(d2r_tensor *a, double s) {
  return d2r_adds(a, -s);
}

static const struct {
  const char *name;
  binary_fn fn;
  scalar_fn sfn;        /* used when the second operand is a number */
} binary[] = {
  {"add", d2r_add, d2r_adds}, {"sub", d2r_sub, subs},
  {"mul", d2r_mul, d2r_muls}, {"div", d2r_div, NULL},
  {"pow", d2r_pow, d2r_pows},
  {"maximum", d2r_maximum, NULL}, {"minimum", d2r_minimum, NULL},
  {"eq", d2r_eq, NULL}, {"ne", d2r_ne, NULL}, {"lt", d2r_lt, NULL},
  {"le", d2r_le, NULL}, {"gt", d2r_gt, NULL}, {"ge", d2r_ge, NULL},
  {"matmul", d2r_matmul, NULL}, {"mm", d2r_matmul, NULL},
  {NULL, NULL, NULL}
};

static int binary_at(lua_State *L, int i) {
  d2r_tensor *a = ld2r_checkoperand(L, 1);
  d2r_tensor **slot;
  if (binary[i].sfn != NULL && lua_type(L, 2) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 2);
    slot = ld2r_newtensor(L);
    *slot = binary[i].sfn(a, s);
  } else {
    d2r_tensor *b = ld2r_checkoperand(L, 2);
    slot = ld2r_newtensor(L);
    *slot = binary[i].fn(a, b);
  }
  return pushresult(L, slot, binary[i].name);
}

static int op_binary(lua_State *L) {
  return binary_at(L, (int)lua_tointeger(L, lua_upvalueindex(1)));
}

/* t:clamp([lo [, hi]]): nil leaves a side open. */
static int t_clamp(lua_State *L) {
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  double lo = luaL_optnumber(L, 2, -INFINITY);
  double hi = luaL_optnumber(L, 3, INFINITY);
  d2r_tensor **slot;
  luaL_argcheck(L, !(lo > hi), 3, "upper bound below lower bound");
  slot = ld2r_newtensor(L);
  *slot = d2r_clamp(t, lo, hi);
  return pushresult(L, slot, "clamp");
}

/* d2r.where(cond, a, b): a where cond is non-zero, b elsewhere. */
static int f_where(lua_State *L) {
  d2r_tensor *c = ld2r_checkoperand(L, 1);
  d2r_tensor *a = ld2r_checkoperand(L, 2);
  d2r_tensor *b = ld2r_checkoperand(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_where(c, a, b);
  return pushresult(L, slot, "where");
}

static int t_count_nonfinite(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  lua_pushinteger(L, (lua_Integer)d2r_count_nonfinite(t));
  return 1;
}

/* ---- metamethods ----------------------------------------------------- */

/* Binary metamethods: either operand may be a number. */
static int swapped(lua_State *L, scalar_fn fn, const char *name) {
  double s = lua_tonumber(L, 1);
  d2r_tensor *b = ld2r_checktensor(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = fn(b, s);
  return pushresult(L, slot, name);
}

static int mm_add(lua_State *L) {
  if (lua_type(L, 1) == LUA_TNUMBER)
    return swapped(L, d2r_adds, "add");
  return binary_at(L, 0);
}

static int mm_sub(lua_State *L) {
  if (lua_type(L, 1) == LUA_TNUMBER)
    return swapped(L, d2r_rsubs, "sub");
  return binary_at(L, 1);
}

static int mm_mul(lua_State *L) {
  if (lua_type(L, 1) == LUA_TNUMBER)
    return swapped(L, d2r_muls, "mul");
  return binary_at(L, 2);
}

static int mm_div(lua_State *L) {
  return binary_at(L, 3);
}

static int mm_pow(lua_State *L) {
  return binary_at(L, 4);
}

static int mm_unm(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_neg(t);
  return pushresult(L, slot, "unm");
}

static const luaL_Reg meta[] = {
  {"__add", mm_add}, {"__sub", mm_sub}, {"__mul", mm_mul},
  {"__div", mm_div}, {"__pow", mm_pow}, {"__unm", mm_unm},
  {NULL, NULL}
};

/* ---- reductions ------------------------------------------------------ */

static d2r_tensor *argmax(d2r_tensor *t, int axis, bool keepdim) {
  return d2r_argmax(t, axis, keepdim);
}

static const struct {
  const char *name;
  reduce_fn fn;
  unary_fn all;         /* over all elements; NULL: flatten first */
} reductions[] = {
  {"sum", d2r_sum, d2r_sum_all}, {"mean", d2r_mean, d2r_mean_all},
  {"max", d2r_max, d2r_max_all}, {"min", d2r_min, d2r_min_all},
  {"argmax", argmax, NULL}, {"logsumexp", d2r_logsumexp, NULL},
  {NULL, NULL, NULL}
};

/* Reshapes r (released) to ndim dimensions of size 1, for keepdim. */
static d2r_tensor *keep_all(d2r_tensor *r, int ndim) {
  int64_t ones[D2R_MAXDIM];
  d2r_tensor *k;
  int d;
  for (d = 0; d < ndim; d++)
    ones[d] = 1;
  k = d2r_reshape(r, ndim, ones);
  d2r_release(r);
  return k;
}

static d2r_tensor *reduce_all(d2r_tensor *t, int i, bool keepdim) {
  int64_t flat = -1;
  d2r_tensor *r;
  if (reductions[i].all != NULL) {
    r = reductions[i].all(t);
  } else {
    d2r_tensor *f = d2r_reshape(t, 1, &flat);
    r = reductions[i].fn(f, 0, false);
    d2r_release(f);
  }
  return keepdim && r ? keep_all(r, d2r_ndim(t)) : r;
}

/* t:sum([axis [, keepdim]]) and the like: without an axis, over all. */
static int op_reduce(lua_State *L) {
  int i = (int)lua_tointeger(L, lua_upvalueindex(1));
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  bool keepdim = lua_toboolean(L, 3);
  d2r_tensor **slot;
  if (lua_isnoneornil(L, 2)) {
    slot = ld2r_newtensor(L);
    *slot = reduce_all(t, i, keepdim);
  } else {
    int axis = ld2r_checkaxis(L, 2, d2r_ndim(t));
    slot = ld2r_newtensor(L);
    *slot = reductions[i].fn(t, axis, keepdim);
  }
  return pushresult(L, slot, reductions[i].name);
}

static d2r_tensor *var_all(d2r_tensor *t, bool keepdim, int corr) {
  int64_t flat = -1;
  d2r_tensor *f = d2r_reshape(t, 1, &flat);
  d2r_tensor *r = d2r_var(f, 0, false, corr);
  d2r_release(f);
  return keepdim && r ? keep_all(r, d2r_ndim(t)) : r;
}

/* t:var([axis [, keepdim [, correction]]]): correction 1 (unbiased) by
 * default, 0 for the population variance. */
static int t_var(lua_State *L) {
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  bool keepdim = lua_toboolean(L, 3);
  int corr = (int)luaL_optinteger(L, 4, 1);
  d2r_tensor **slot;
  luaL_argcheck(L, corr >= 0, 4, "correction must be non-negative");
  if (lua_isnoneornil(L, 2)) {
    slot = ld2r_newtensor(L);
    *slot = var_all(t, keepdim, corr);
  } else {
    int axis = ld2r_checkaxis(L, 2, d2r_ndim(t));
    slot = ld2r_newtensor(L);
    *slot = d2r_var(t, axis, keepdim, corr);
  }
  return pushresult(L, slot, "var");
}

static int softmax_at(lua_State *L, int log) {
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  int axis = -1;
  d2r_tensor **slot;
  if (!lua_isnoneornil(L, 2))
    axis = ld2r_checkaxis(L, 2, d2r_ndim(t));
  else if (d2r_ndim(t) == 0)
    luaL_argerror(L, 1, "softmax of a 0-d tensor");
  else
    axis = d2r_ndim(t) - 1;
  slot = ld2r_newtensor(L);
  *slot = log ? d2r_log_softmax(t, axis) : d2r_softmax(t, axis);
  return pushresult(L, slot, log ? "log_softmax" : "softmax");
}

/* t:log_softmax([axis]) and t:softmax([axis]): the last axis by default. */
static int t_log_softmax(lua_State *L) {
  return softmax_at(L, 1);
}

static int t_softmax(lua_State *L) {
  return softmax_at(L, 0);
}

/* t:sum_to(shape...): sums t down to a shape it was broadcast from. */
static int t_sum_to(lua_State *L) {
  int64_t shape[D2R_MAXDIM];
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int nd = ld2r_checkshape(L, 2, shape, 0);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_sum_to(t, nd, shape);
  return pushresult(L, slot, "sum_to");
}

/* ---- in-place updates (not recorded; return the tensor) -------------- */

static int t_copy_(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor *src = ld2r_checkoperand(L, 2);
  ld2r_checkstatus(L, d2r_copy_(t, src), "copy_");
  lua_settop(L, 1);
  return 1;
}

static int t_fill_(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  ld2r_checkstatus(L, d2r_fill_(t, luaL_checknumber(L, 2)), "fill_");
  lua_settop(L, 1);
  return 1;
}

/* t:axpy_(alpha, x): t += alpha * x. */
static int t_axpy_(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  double alpha = luaL_checknumber(L, 2);
  d2r_tensor *x = ld2r_checkoperand(L, 3);
  ld2r_checkstatus(L, d2r_axpy_(t, alpha, x), "axpy_");
  lua_settop(L, 1);
  return 1;
}

static int t_scale_(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  ld2r_checkstatus(L, d2r_scale_(t, luaL_checknumber(L, 2)), "scale_");
  lua_settop(L, 1);
  return 1;
}

/* ---- registration ---------------------------------------------------- */

static const luaL_Reg methods[] = {
  {"clamp", t_clamp}, {"count_nonfinite", t_count_nonfinite},
  {"var", t_var}, {"log_softmax", t_log_softmax}, {"softmax", t_softmax},
  {"sum_to", t_sum_to},
  {"copy_", t_copy_}, {"fill_", t_fill_}, {"axpy_", t_axpy_},
  {"scale_", t_scale_},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"where", f_where}, {"clamp", t_clamp}, {"var", t_var},
  {"log_softmax", t_log_softmax}, {"softmax", t_softmax},
  {NULL, NULL}
};

/* Sets t[name] = closure(f, index) in the tables at -1 and -2. */
static void setboth(lua_State *L, const char *name, lua_CFunction f,
                    int i) {
  lua_pushinteger(L, i);
  lua_pushcclosure(L, f, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  lua_setfield(L, -3, name);
}

/* With the module table at the top: adds the operations to the method
 * table and to the module, and the arithmetic metamethods. */
int ld2r_open_ops(lua_State *L) {
  int i;
  luaL_setfuncs(L, functions, 0);
  lua_getfield(L, -1, "Tensor");
  for (i = 0; unary[i].name != NULL; i++)
    setboth(L, unary[i].name, op_unary, i);
  for (i = 0; binary[i].name != NULL; i++)
    setboth(L, binary[i].name, op_binary, i);
  for (i = 0; reductions[i].name != NULL; i++)
    setboth(L, reductions[i].name, op_reduce, i);
  luaL_setfuncs(L, methods, 0);
  lua_pop(L, 1);
  luaL_getmetatable(L, LD2R_TENSOR);
  luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
  return 0;
}

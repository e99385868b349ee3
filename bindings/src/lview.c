/*
 * Shape and indexing operations for Lua: views (reshape, transpose,
 * slice, ...), copies, row and element selection, concatenation and
 * one-hot encoding.  Axes and slice bounds are 1-based; index *values*
 * held in tensors (take_rows, gather, one_hot) are 0-based, as in the
 * engine and the data files.
 */
#include <stdbool.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

typedef d2r_tensor *(*unary_fn)(d2r_tensor *);

static const struct {
  const char *name;
  unary_fn fn;
} copies[] = {
  {"contiguous", d2r_contiguous}, {"clone", d2r_clone},
  {"detach", d2r_detach},
  {NULL, NULL}
};

static int op_copy(lua_State *L) {
  int i = (int)lua_tointeger(L, lua_upvalueindex(1));
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = copies[i].fn(t);
  return ld2r_check(L, *slot, copies[i].name);
}

/* t:reshape(shape...): one size may be -1. */
static int t_reshape(lua_State *L) {
  int64_t shape[D2R_MAXDIM];
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int nd = ld2r_checkshape(L, 2, shape, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_reshape(t, nd, shape);
  return ld2r_check(L, *slot, "reshape");
}

static int t_flatten(lua_State *L) {
  int64_t flat = -1;
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_reshape(t, 1, &flat);
  return ld2r_check(L, *slot, "flatten");
}

static int t_transpose(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int a0 = ld2r_checkaxis(L, 2, d2r_ndim(t));
  int a1 = ld2r_checkaxis(L, 3, d2r_ndim(t));
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_transpose(t, a0, a1);
  return ld2r_check(L, *slot, "transpose");
}

/* t:t(): the transpose of a matrix; a 0-d or 1-d tensor is returned
 * as it is. */
static int t_t(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor **slot;
  luaL_argcheck(L, d2r_ndim(t) <= 2, 1, "t() expects at most 2 dimensions");
  if (d2r_ndim(t) < 2) {
    lua_settop(L, 1);
    return 1;
  }
  slot = ld2r_newtensor(L);
  *slot = d2r_transpose(t, 0, 1);
  return ld2r_check(L, *slot, "t");
}

/* A 1-based slice bound at arg (negative counts from the end) made
 * positive; n + 1 is allowed for an empty slice. */
static int64_t bound(lua_State *L, int arg, int64_t n, lua_Integer def) {
  lua_Integer i = luaL_optinteger(L, arg, def);
  if (i < 0)
    i += (lua_Integer)n + 1;
  if (i < 0 || i > (lua_Integer)n + 1)
    luaL_argerror(L, arg, lua_pushfstring(L,
                  "slice bound out of range for a dimension of size %I",
                  (lua_Integer)n));
  return (int64_t)i;
}

/* t:slice(axis, i [, j [, step]]): elements i..j (1-based, inclusive;
 * negative from the end; j = -1 by default) along axis. */
static int t_slice(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int axis = ld2r_checkaxis(L, 2, d2r_ndim(t));
  int64_t n = d2r_shape(t)[axis];
  int64_t i = bound(L, 3, n, 1), j = bound(L, 4, n, -1);
  lua_Integer step = luaL_optinteger(L, 5, 1);
  d2r_tensor **slot;
  luaL_argcheck(L, i >= 1, 3, "slice start must be at least 1");
  luaL_argcheck(L, j <= n, 4, "slice end past the end");
  luaL_argcheck(L, j >= i - 1, 4, "slice end before its start");
  luaL_argcheck(L, step >= 1, 5, "step must be positive");
  slot = ld2r_newtensor(L);
  *slot = d2r_slice(t, axis, i - 1, j, (int64_t)step);
  return ld2r_check(L, *slot, "slice");
}

/* t:unsqueeze(axis): a new dimension of size 1 at position axis of the
 * result (1..ndim+1; -1 appends). */
static int t_unsqueeze(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int axis = ld2r_checkaxis(L, 2, d2r_ndim(t) + 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_unsqueeze(t, axis);
  return ld2r_check(L, *slot, "unsqueeze");
}

static d2r_tensor *squeeze_all(d2r_tensor *t) {
  d2r_tensor *r = d2r_retain(t);
  int d;
  for (d = d2r_ndim(t) - 1; d >= 0 && r != NULL; d--) {
    if (d2r_shape(t)[d] == 1) {
      d2r_tensor *s = d2r_squeeze(r, d);
      d2r_release(r);
      r = s;
    }
  }
  return r;
}

/* t:squeeze([axis]): drops one dimension of size 1, or all of them. */
static int t_squeeze(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor **slot;
  if (lua_isnoneornil(L, 2)) {
    slot = ld2r_newtensor(L);
    *slot = squeeze_all(t);
  } else {
    int axis = ld2r_checkaxis(L, 2, d2r_ndim(t));
    slot = ld2r_newtensor(L);
    *slot = d2r_squeeze(t, axis);
  }
  return ld2r_check(L, *slot, "squeeze");
}

static int t_expand(lua_State *L) {
  int64_t shape[D2R_MAXDIM];
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int nd = ld2r_checkshape(L, 2, shape, 0);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_expand(t, nd, shape);
  return ld2r_check(L, *slot, "expand");
}

/* ---- selection by index values (0-based) ----------------------------- */

/* t:take_rows(index): rows index[1], index[2], ... (0-based values). */
static int t_take_rows(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor *idx = ld2r_checkoperand(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_take_rows(t, idx);
  return ld2r_check(L, *slot, "take_rows");
}

/* t:gather(axis, index): as torch.gather, with 0-based index values. */
static int t_gather(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int axis = ld2r_checkaxis(L, 2, d2r_ndim(t));
  d2r_tensor *idx = ld2r_checkoperand(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_gather(t, axis, idx);
  return ld2r_check(L, *slot, "gather");
}

/* d2r.one_hot(labels, classes) and labels:one_hot(classes). */
static int t_one_hot(lua_State *L) {
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  lua_Integer c = luaL_checkinteger(L, 2);
  d2r_tensor **slot;
  luaL_argcheck(L, c >= 1, 2, "class count must be positive");
  slot = ld2r_newtensor(L);
  *slot = d2r_one_hot(t, (int64_t)c);
  return ld2r_check(L, *slot, "one_hot");
}

/* d2r.index_add_rows(rows, index, src). */
static int f_index_add_rows(lua_State *L) {
  lua_Integer rows = luaL_checkinteger(L, 1);
  d2r_tensor *idx = ld2r_checkoperand(L, 2);
  d2r_tensor *src = ld2r_checktensor(L, 3);
  d2r_tensor **slot;
  luaL_argcheck(L, rows >= 0, 1, "row count must be non-negative");
  slot = ld2r_newtensor(L);
  *slot = d2r_index_add_rows((int64_t)rows, idx, src);
  return ld2r_check(L, *slot, "index_add_rows");
}

/* d2r.scatter_add(shape, axis, index, src): the adjoint of gather. */
static int f_scatter_add(lua_State *L) {
  int64_t shape[D2R_MAXDIM];
  int nd, axis;
  d2r_tensor *idx, *src;
  d2r_tensor **slot;
  luaL_checktype(L, 1, LUA_TTABLE);
  nd = ld2r_checkshape(L, 1, shape, 0);
  axis = ld2r_checkaxis(L, 2, nd);
  idx = ld2r_checkoperand(L, 3);
  src = ld2r_checktensor(L, 4);
  slot = ld2r_newtensor(L);
  *slot = d2r_scatter_add(nd, shape, axis, idx, src);
  return ld2r_check(L, *slot, "scatter_add");
}

/* d2r.cat(tensors [, axis]): concatenation along axis (1 by default). */
static int f_cat(lua_State *L) {
  int n, axis = 0;
  d2r_tensor **ts, **slot;
  lua_settop(L, 2);
  ts = ld2r_checktensorlist(L, 1, &n);
  if (!lua_isnoneornil(L, 2))
    axis = ld2r_checkaxis(L, 2, d2r_ndim(ts[0]));
  slot = ld2r_newtensor(L);
  *slot = d2r_cat(n, ts, axis);
  return ld2r_check(L, *slot, "cat");
}

/* ---- registration ---------------------------------------------------- */

static const luaL_Reg methods[] = {
  {"reshape", t_reshape}, {"flatten", t_flatten},
  {"transpose", t_transpose}, {"t", t_t}, {"slice", t_slice},
  {"unsqueeze", t_unsqueeze}, {"squeeze", t_squeeze},
  {"expand", t_expand}, {"take_rows", t_take_rows},
  {"gather", t_gather}, {"one_hot", t_one_hot},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"one_hot", t_one_hot}, {"index_add_rows", f_index_add_rows},
  {"scatter_add", f_scatter_add}, {"cat", f_cat},
  {"reshape", t_reshape}, {"transpose", t_transpose},
  {NULL, NULL}
};

/* With the module table at the top: adds the methods and functions. */
int ld2r_open_views(lua_State *L) {
  int i;
  luaL_setfuncs(L, functions, 0);
  lua_getfield(L, -1, "Tensor");
  luaL_setfuncs(L, methods, 0);
  for (i = 0; copies[i].name != NULL; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, op_copy, 1);
    lua_setfield(L, -2, copies[i].name);
  }
  lua_pop(L, 1);
  return 0;
}

/*
 * Looking into tensors from Lua: 1-based positional indexing (t[i],
 * t[{i, j}]) and assignment, length, printing, conversion to tables and
 * the introspection methods (shape, dim, numel, item).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

/* ---- positions ------------------------------------------------------- */

/* The 0-based position of the 1-based (or negative, from the end) Lua
 * index at idx along axis, of size n. */
static int64_t topos(lua_State *L, int idx, int axis, int64_t n) {
  int isint;
  lua_Integer i = lua_tointegerx(L, idx, &isint);
  if (!isint)
    luaL_error(L, "index for dimension %d must be an integer, got %s",
               axis + 1, luaL_typename(L, idx));
  if (i >= 1 && i <= n)
    return (int64_t)(i - 1);
  if (i <= -1 && i >= -n)
    return (int64_t)(n + i);
  luaL_error(L, "index %I out of range for dimension %d of size %I",
             i, axis + 1, (lua_Integer)n);
  return 0;
}

/* Reads the key at idx (an integer or a table of integers) into pos;
 * returns the number of positions. */
static int readkey(lua_State *L, int idx, d2r_tensor *t, int64_t *pos) {
  int k, n, nd = d2r_ndim(t);
  const int64_t *shape = d2r_shape(t);
  if (nd == 0)
    luaL_error(L, "cannot index a 0-d tensor (use item())");
  if (!lua_istable(L, idx)) {
    pos[0] = topos(L, idx, 0, shape[0]);
    return 1;
  }
  n = (int)lua_rawlen(L, idx);
  if (n < 1 || n > nd)
    luaL_error(L, "index table has %d entries for a %d-d tensor", n, nd);
  for (k = 0; k < n; k++) {
    lua_rawgeti(L, idx, k + 1);
    pos[k] = topos(L, -1, k, shape[k]);
    lua_pop(L, 1);
  }
  return n;
}

/* A view of t with its first n dimensions fixed at pos (new reference). */
static d2r_tensor *select_view(d2r_tensor *t, int n, const int64_t *pos) {
  d2r_tensor *v = d2r_retain(t);
  int k;
  for (k = 0; k < n && v != NULL; k++) {
    d2r_tensor *s = d2r_slice(v, 0, pos[k], pos[k] + 1, 1);
    d2r_release(v);
    v = d2r_squeeze(s, 0);
    d2r_release(s);
  }
  return v;
}

/* ---- __index and __newindex ------------------------------------------ */

static int t_index(lua_State *L) {
  int64_t pos[D2R_MAXDIM];
  d2r_tensor *t;
  d2r_tensor **slot;
  int n;
  if (lua_type(L, 2) == LUA_TSTRING) {
    luaL_checkudata(L, 1, LD2R_TENSOR);
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
  }
  t = ld2r_checktensor(L, 1);
  n = readkey(L, 2, t, pos);
  if (n == d2r_ndim(t)) {
    double v = 0;
    ld2r_checkstatus(L, d2r_at(t, pos, &v), "index");
    lua_pushnumber(L, v);
    return 1;
  }
  slot = ld2r_newtensor(L);
  *slot = select_view(t, n, pos);
  return ld2r_check(L, *slot, "index");
}

/* Writes the tensor src into the view v, broadcasting; returns status. */
static int assign(d2r_tensor *v, d2r_tensor *src) {
  d2r_tensor *e = d2r_expand(src, d2r_ndim(v), d2r_shape(v));
  int st = e ? d2r_copy_(v, e) : -1;
  d2r_release(e);
  return st;
}

static int t_newindex(lua_State *L) {
  int64_t pos[D2R_MAXDIM];
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor *src = NULL, *v;
  int n, st;
  if (lua_type(L, 2) == LUA_TSTRING)
    return luaL_error(L, "cannot set field '%s' of a tensor",
                      lua_tostring(L, 2));
  if (lua_type(L, 3) != LUA_TNUMBER)
    src = ld2r_checkoperand(L, 3);
  n = readkey(L, 2, t, pos);
  if (src == NULL && n == d2r_ndim(t)) {
    ld2r_checkstatus(L, d2r_set_at(t, pos, lua_tonumber(L, 3)), "index");
    return 0;
  }
  v = select_view(t, n, pos);
  if (v == NULL)
    st = -1;
  else
    st = src ? assign(v, src) : d2r_fill_(v, lua_tonumber(L, 3));
  d2r_release(v);
  ld2r_checkstatus(L, st, "index");
  return 0;
}

static int t_len(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  if (d2r_ndim(t) == 0)
    return luaL_error(L, "attempt to get the length of a 0-d tensor");
  lua_pushinteger(L, (lua_Integer)d2r_shape(t)[0]);
  return 1;
}

/* ---- printing -------------------------------------------------------- */

#define EDGE 3              /* items kept at each end of a long dimension */
#define SUMMARY_AT 1000     /* summarise tensors with more elements */
#define INDENT 7            /* strlen("tensor(") */

typedef struct {
  luaL_Buffer b;
  const d2r_tensor *t;
  int ndim;
  const int64_t *shape;
  int64_t pos[D2R_MAXDIM];
  int summarise;
} printer;

static void addnum(luaL_Buffer *b, double v) {
  char s[40];
  if (isnan(v))
    strcpy(s, "nan");
  else if (isinf(v))
    strcpy(s, v > 0 ? "inf" : "-inf");
  else if (v == floor(v) && fabs(v) < 1e15)
    snprintf(s, sizeof s, "%.0f", v);
  else
    snprintf(s, sizeof s, "%.6g", v);
  luaL_addstring(b, s);
}

static void addsep(printer *p, int d) {
  int i;
  luaL_addchar(&p->b, ',');
  if (d + 1 == p->ndim) {
    luaL_addchar(&p->b, ' ');
    return;
  }
  for (i = d + 1; i < p->ndim; i++)
    luaL_addchar(&p->b, '\n');
  for (i = 0; i < INDENT + d + 1; i++)
    luaL_addchar(&p->b, ' ');
}

static void addvalues(printer *p, int d) {
  int64_t i, n = p->shape[d];
  int cut = p->summarise && n > 2 * EDGE;
  luaL_addchar(&p->b, '[');
  for (i = 0; i < n; i++) {
    if (cut && i == EDGE) {
      luaL_addstring(&p->b, "...");
      addsep(p, d);
      i = n - EDGE;
    }
    p->pos[d] = i;
    if (d + 1 < p->ndim) {
      addvalues(p, d + 1);
    } else {
      double v;
      if (d2r_at(p->t, p->pos, &v) < 0)
        v = NAN;
      addnum(&p->b, v);
    }
    if (i + 1 < n)
      addsep(p, d);
  }
  luaL_addchar(&p->b, ']');
}

static int t_tostring(lua_State *L) {
  printer p;
  char shape[128];
  d2r_tensor **slot = luaL_checkudata(L, 1, LD2R_TENSOR);
  d2r_tensor *t = *slot;
  if (t == NULL) {
    lua_pushstring(L, "tensor(closed)");
    return 1;
  }
  p.t = t;
  p.ndim = d2r_ndim(t);
  p.shape = d2r_shape(t);
  p.summarise = d2r_numel(t) > SUMMARY_AT;
  luaL_buffinit(L, &p.b);
  luaL_addstring(&p.b, "tensor(");
  if (p.ndim == 0)
    addnum(&p.b, d2r_item(t));
  else
    addvalues(&p, 0);
  luaL_addstring(&p.b, ", shape=");
  luaL_addstring(&p.b, d2r_shape_str(t, shape, sizeof shape));
  if (d2r_requires_grad(t))
    luaL_addstring(&p.b, ", requires_grad=true");
  luaL_addchar(&p.b, ')');
  luaL_pushresult(&p.b);
  return 1;
}

/* ---- conversion to Lua values ---------------------------------------- */

static void pushlist(lua_State *L, d2r_tensor *t, int64_t *pos, int d) {
  int nd = d2r_ndim(t);
  int64_t i, n = d2r_shape(t)[d];
  lua_createtable(L, n < 1 << 20 ? (int)n : 0, 0);
  for (i = 0; i < n; i++) {
    pos[d] = i;
    if (d + 1 < nd) {
      pushlist(L, t, pos, d + 1);
    } else {
      double v = 0;
      ld2r_checkstatus(L, d2r_at(t, pos, &v), "tolist");
      lua_pushnumber(L, v);
    }
    lua_rawseti(L, -2, (lua_Integer)(i + 1));
  }
}

/* t:tolist(): nested tables of numbers (a number for a 0-d tensor). */
static int t_tolist(lua_State *L) {
  int64_t pos[D2R_MAXDIM];
  d2r_tensor *t = ld2r_checktensor(L, 1);
  luaL_checkstack(L, D2R_MAXDIM + 4, "tolist");
  if (d2r_ndim(t) == 0)
    lua_pushnumber(L, d2r_item(t));
  else
    pushlist(L, t, pos, 0);
  return 1;
}

static int t_item(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  char shape[128];
  if (d2r_numel(t) != 1)
    return luaL_error(L, "item: tensor of shape %s has %I elements, "
                      "expected 1", d2r_shape_str(t, shape, sizeof shape),
                      (lua_Integer)d2r_numel(t));
  lua_pushnumber(L, d2r_item(t));
  return 1;
}

/* ---- introspection --------------------------------------------------- */

static int t_shape(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  ld2r_pushshape(L, d2r_ndim(t), d2r_shape(t));
  return 1;
}

/* t:dim(axis): the size of a dimension (1-based axis); t:dim() is the
 * number of dimensions. */
static int t_dim(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  int nd = d2r_ndim(t);
  if (lua_isnoneornil(L, 2))
    lua_pushinteger(L, nd);
  else
    lua_pushinteger(L, (lua_Integer)d2r_shape(t)[ld2r_checkaxis(L, 2, nd)]);
  return 1;
}

static int t_ndim(lua_State *L) {
  lua_pushinteger(L, d2r_ndim(ld2r_checktensor(L, 1)));
  return 1;
}

static int t_numel(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)d2r_numel(ld2r_checktensor(L, 1)));
  return 1;
}

static int t_is_contiguous(lua_State *L) {
  lua_pushboolean(L, d2r_is_contiguous(ld2r_checktensor(L, 1)));
  return 1;
}

static int t_close(lua_State *L) {
  d2r_tensor **slot = luaL_checkudata(L, 1, LD2R_TENSOR);
  d2r_release(*slot);
  *slot = NULL;
  return 0;
}

static const luaL_Reg methods[] = {
  {"tolist", t_tolist},
  {"item", t_item},
  {"shape", t_shape},
  {"size", t_shape},
  {"dim", t_dim},
  {"ndim", t_ndim},
  {"numel", t_numel},
  {"is_contiguous", t_is_contiguous},
  {"close", t_close},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__newindex", t_newindex},
  {"__len", t_len},
  {"__tostring", t_tostring},
  {NULL, NULL}
};

/* With the metatable at -2 and the method table at -1: adds the methods
 * above, sets __index (over the method table) and the other metamethods
 * of this file; pops the method table. */
void ld2r_tensor_index_meta(lua_State *L) {
  luaL_setfuncs(L, methods, 0);
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -2, "__index");
  luaL_setfuncs(L, meta, 0);
}

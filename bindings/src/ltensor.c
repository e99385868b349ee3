/*
 * The d2r.Tensor type: a full userdata holding one engine reference, its
 * checkers, conversions from Lua values, and the constructors of the
 * module (d2r.tensor, d2r.zeros, ...).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

/* ---- the userdata ---------------------------------------------------- */

/*
 * Lua's collector sees a tensor as a pointer-sized userdata, not as the
 * data and graph behind it, so on its own it lets a training loop's dead
 * graphs pile up.  Before each new tensor, the engine's live bytes are
 * compared with a threshold, and past it a full collection runs; the
 * threshold is then twice what survived (at least GC_FLOOR), the rule
 * Lua's own collector uses for its pause.  Other userdata that hold a
 * graph (a policy's distribution) check it too.
 *
 * The floor trades the fixed cost of a collection (marking the whole Lua
 * heap, 50-100 us) against where the dead graphs are freed: past the
 * processor's caches, freeing them and reusing their blocks misses.  A
 * toy PG update leaves 23 KB of graph; with 1 MiB (45 updates between
 * collections) it took 27.2 us against 29.3 with 4 MiB, and the toy
 * sweep of bench/toy_sweep.lua 344 ms against 370 (medians of 7 and 5
 * interleaved runs).  Smaller floors were no better: 256 KiB once
 * collected too often (28.9 us), and later 256 and 512 KiB came within
 * 2% of 1 MiB on the toy update and the sweep.  The classification and
 * moment matching experiments ran as fast with 1 MiB as with 4 (4.1 s
 * and 0.39 s).  An earlier floor of 64 MiB piled up 64 MiB of dead
 * graphs between collections, twice the memory, and slower.  Engine
 * memory is per thread, and so is this threshold.
 */
#define GC_FLOOR ((size_t)1 << 20)
static _Thread_local size_t gc_threshold = GC_FLOOR;

void ld2r_gc_pressure(lua_State *L) {
  if (d2r_live_bytes() < gc_threshold)
    return;
  lua_gc(L, LUA_GCCOLLECT);
  size_t live = d2r_live_bytes();
  gc_threshold = 2 * live > GC_FLOOR ? 2 * live : GC_FLOOR;
}

d2r_tensor **ld2r_newtensor(lua_State *L) {
  ld2r_gc_pressure(L);
  d2r_tensor **slot = lua_newuserdatauv(L, sizeof(*slot), 0);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_TENSOR);
  return slot;
}

/* Raises the engine's message, prefixed with fn unless it already is. */
int ld2r_fail(lua_State *L, const char *fn) {
  const char *msg = d2r_error();
  size_t n = strlen(fn);
  if (msg == NULL || *msg == '\0')
    msg = "operation failed";
  if (strncmp(msg, fn, n) == 0 && msg[n] == ':')
    return luaL_error(L, "%s", msg);
  return luaL_error(L, "%s: %s", fn, msg);
}

int ld2r_check(lua_State *L, const d2r_tensor *t, const char *fn) {
  if (t == NULL)
    ld2r_fail(L, fn);
  return 1;
}

void ld2r_checkstatus(lua_State *L, int status, const char *fn) {
  if (status < 0)
    ld2r_fail(L, fn);
}

d2r_tensor *ld2r_testtensor(lua_State *L, int arg) {
  d2r_tensor **slot = luaL_testudata(L, arg, LD2R_TENSOR);
  if (slot == NULL)
    return NULL;
  if (*slot == NULL)
    luaL_argerror(L, arg, "tensor has been closed");
  return *slot;
}

d2r_tensor *ld2r_checktensor(lua_State *L, int arg) {
  d2r_tensor *t = ld2r_testtensor(L, arg);
  if (t == NULL)
    luaL_typeerror(L, arg, LD2R_TENSOR);
  return t;
}

static int t_gc(lua_State *L) {
  d2r_tensor **slot = luaL_checkudata(L, 1, LD2R_TENSOR);
  d2r_release(*slot);
  *slot = NULL;
  return 0;
}

/* ---- shapes and axes ------------------------------------------------- */

static int64_t checkdimsize(lua_State *L, int arg, int allow_neg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  if (n < 0 && !(allow_neg && n == -1))
    luaL_argerror(L, arg, "dimension sizes must be non-negative");
  return (int64_t)n;
}

static int shape_from_table(lua_State *L, int arg, int64_t *shape,
                            int allow_neg) {
  lua_Integer i, n = (lua_Integer)lua_rawlen(L, arg);
  if (n > D2R_MAXDIM)
    luaL_argerror(L, arg, "too many dimensions");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, arg, i);
    if (!lua_isinteger(L, -1))
      luaL_argerror(L, arg, lua_pushfstring(L,
                    "shape entry %d is not an integer", (int)i));
    shape[i - 1] = checkdimsize(L, -1, allow_neg);
    lua_pop(L, 1);
  }
  return (int)n;
}

int ld2r_checkshape(lua_State *L, int arg, int64_t *shape, int allow_neg) {
  int i, top = lua_gettop(L);
  if (lua_istable(L, arg))
    return shape_from_table(L, arg, shape, allow_neg);
  if (top - arg + 1 > D2R_MAXDIM)
    luaL_argerror(L, arg, "too many dimensions");
  for (i = arg; i <= top; i++)
    shape[i - arg] = checkdimsize(L, i, allow_neg);
  return top >= arg ? top - arg + 1 : 0;
}

int ld2r_checkaxis(lua_State *L, int arg, int ndim) {
  lua_Integer a = luaL_checkinteger(L, arg);
  if (a >= 1 && a <= ndim)
    return (int)(a - 1);
  if (a <= -1 && a >= -ndim)
    return (int)(ndim + a);
  return luaL_argerror(L, arg, lua_pushfstring(L,
                       "axis %d out of range for a %d-d tensor",
                       (int)a, ndim));
}

void ld2r_pushshape(lua_State *L, int ndim, const int64_t *shape) {
  int i;
  lua_createtable(L, ndim, 0);
  for (i = 0; i < ndim; i++) {
    lua_pushinteger(L, (lua_Integer)shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* ---- nested tables --------------------------------------------------- */

typedef struct {
  int ndim;
  int64_t shape[D2R_MAXDIM];
  int64_t pos[D2R_MAXDIM];     /* 1-based position being read */
  double *data;
  int64_t n;                   /* values written so far */
} filler;

/* Finds the shape by following the first element of each level. */
static int probe_shape(lua_State *L, int idx, int64_t *shape) {
  int nd = 0;
  lua_pushvalue(L, idx);
  while (lua_type(L, -1) == LUA_TTABLE) {
    if (nd == D2R_MAXDIM)
      luaL_error(L, "tensor: tables nested deeper than %d levels",
                 D2R_MAXDIM);
    shape[nd++] = (int64_t)lua_rawlen(L, -1);
    lua_rawgeti(L, -1, 1);
    lua_remove(L, -2);
  }
  lua_pop(L, 1);
  return nd;
}

/* Pushes "[i][j]..." for the first depth positions. */
static const char *pushpos(lua_State *L, const filler *f, int depth) {
  luaL_Buffer b;
  int d;
  luaL_buffinit(L, &b);
  for (d = 0; d < depth; d++) {
    char s[32];
    snprintf(s, sizeof s, "[%lld]", (long long)f->pos[d]);
    luaL_addstring(&b, s);
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

static void badrow(lua_State *L, const filler *f, int depth, size_t len) {
  const char *where = depth ? pushpos(L, f, depth) : "the outer table";
  luaL_error(L, "tensor: %s%s has %d elements, expected %d (not "
             "rectangular)", depth ? "row " : "", where, (int)len,
             (int)f->shape[depth]);
}

static void badvalue(lua_State *L, const filler *f, int depth,
                     const char *want) {
  const char *got = luaL_typename(L, -1);
  luaL_error(L, "tensor: element %s is a %s, expected %s",
             pushpos(L, f, depth), got, want);
}

/* Copies the table at the top into f->data, checking every level. */
static void fill(lua_State *L, filler *f, int depth) {
  int64_t i, n = f->shape[depth];
  size_t len = lua_rawlen(L, -1);
  if ((int64_t)len != n)
    badrow(L, f, depth, len);
  for (i = 1; i <= n; i++) {
    f->pos[depth] = i;
    lua_rawgeti(L, -1, (lua_Integer)i);
    if (depth + 1 < f->ndim) {
      if (!lua_istable(L, -1))
        badvalue(L, f, depth + 1, "a table");
      fill(L, f, depth + 1);
    } else {
      if (lua_type(L, -1) != LUA_TNUMBER)
        badvalue(L, f, depth + 1, "a number");
      f->data[f->n++] = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
}

/* Pushes a new tensor made from the nested table at idx. */
static d2r_tensor *from_table(lua_State *L, int idx) {
  filler f;
  d2r_tensor **slot;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, D2R_MAXDIM + 8, "tensor: nesting too deep");
  f.ndim = probe_shape(L, idx, f.shape);
  f.n = 0;
  slot = ld2r_newtensor(L);
  *slot = d2r_empty(f.ndim, f.shape);
  ld2r_check(L, *slot, "tensor");
  f.data = d2r_data(*slot);
  lua_pushvalue(L, idx);
  fill(L, &f, 0);
  lua_pop(L, 1);
  return *slot;
}

d2r_tensor *ld2r_checkoperand(lua_State *L, int arg) {
  d2r_tensor *t = ld2r_testtensor(L, arg);
  d2r_tensor **slot;
  if (t != NULL)
    return t;
  arg = lua_absindex(L, arg);
  if (lua_type(L, arg) == LUA_TNUMBER) {
    slot = ld2r_newtensor(L);
    *slot = d2r_scalar(lua_tonumber(L, arg));
    ld2r_check(L, *slot, "tensor");
    t = *slot;
  } else if (lua_type(L, arg) == LUA_TTABLE) {
    t = from_table(L, arg);
  } else {
    luaL_typeerror(L, arg, "tensor, number or table");
  }
  lua_replace(L, arg);
  return t;
}

/* ---- lists of tensors ----------------------------------------------- */

d2r_tensor **ld2r_checktensorlist(lua_State *L, int arg, int *n) {
  int i, len;
  d2r_tensor **ts;
  luaL_checktype(L, arg, LUA_TTABLE);
  len = (int)lua_rawlen(L, arg);
  luaL_argcheck(L, len > 0, arg, "empty list of tensors");
  ts = lua_newuserdatauv(L, (size_t)len * sizeof(*ts), 0);
  for (i = 0; i < len; i++) {
    lua_rawgeti(L, arg, i + 1);
    ts[i] = ld2r_testtensor(L, -1);
    if (ts[i] == NULL)
      luaL_argerror(L, arg, lua_pushfstring(L, "entry %d is a %s, not a "
                    "tensor", i + 1, luaL_typename(L, -1)));
    lua_pop(L, 1);
  }
  *n = len;
  return ts;
}

void ld2r_pushtensorlist(lua_State *L, int n, d2r_tensor *const *ts) {
  int i;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    d2r_tensor **slot = ld2r_newtensor(L);
    *slot = d2r_retain(ts[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* ---- constructors ---------------------------------------------------- */

static void apply_options(lua_State *L, int arg, d2r_tensor *t) {
  if (lua_isnoneornil(L, arg))
    return;
  luaL_checktype(L, arg, LUA_TTABLE);
  if (lua_getfield(L, arg, "requires_grad") != LUA_TNIL)
    ld2r_checkstatus(L, d2r_set_requires_grad(t, lua_toboolean(L, -1)),
                     "tensor");
  lua_pop(L, 1);
}

/* d2r.tensor(value [, {requires_grad=}]): a copy of a nested table, a
 * number or another tensor. */
static int f_tensor(lua_State *L) {
  d2r_tensor *t = ld2r_testtensor(L, 1);
  if (t != NULL) {
    d2r_tensor **slot = ld2r_newtensor(L);
    d2r_tensor *d = d2r_detach(t);
    *slot = d2r_clone(d);
    d2r_release(d);
    ld2r_check(L, *slot, "tensor");
    lua_replace(L, 1);
  }
  t = ld2r_checkoperand(L, 1);
  apply_options(L, 2, t);
  lua_settop(L, 1);
  return 1;
}

static int fill_shape(lua_State *L, int which) {
  int64_t shape[D2R_MAXDIM];
  int nd = ld2r_checkshape(L, 1, shape, 0);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = which ? d2r_ones(nd, shape) : d2r_zeros(nd, shape);
  return ld2r_check(L, *slot, which ? "ones" : "zeros");
}

static int f_zeros(lua_State *L) {
  return fill_shape(L, 0);
}

static int f_ones(lua_State *L) {
  return fill_shape(L, 1);
}

/* d2r.full(shape, value) */
static int f_full(lua_State *L) {
  int64_t shape[D2R_MAXDIM];
  int nd;
  double v = luaL_checknumber(L, 2);
  d2r_tensor **slot;
  luaL_checktype(L, 1, LUA_TTABLE);
  nd = ld2r_checkshape(L, 1, shape, 0);
  slot = ld2r_newtensor(L);
  *slot = d2r_full(nd, shape, v);
  return ld2r_check(L, *slot, "full");
}

static int like(lua_State *L, int which) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = which ? d2r_ones_like(t) : d2r_zeros_like(t);
  return ld2r_check(L, *slot, which ? "ones_like" : "zeros_like");
}

static int f_zeros_like(lua_State *L) {
  return like(L, 0);
}

static int f_ones_like(lua_State *L) {
  return like(L, 1);
}

static int f_scalar(lua_State *L) {
  double v = luaL_checknumber(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_scalar(v);
  return ld2r_check(L, *slot, "scalar");
}

static int f_eye(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  d2r_tensor **slot;
  luaL_argcheck(L, n >= 0, 1, "size must be non-negative");
  slot = ld2r_newtensor(L);
  *slot = d2r_eye((int64_t)n);
  return ld2r_check(L, *slot, "eye");
}

/* d2r.arange(stop) or d2r.arange(start, stop [, step]): stop excluded. */
static int f_arange(lua_State *L) {
  double start = 0, stop, step;
  d2r_tensor **slot;
  if (lua_isnoneornil(L, 2)) {
    stop = luaL_checknumber(L, 1);
  } else {
    start = luaL_checknumber(L, 1);
    stop = luaL_checknumber(L, 2);
  }
  step = luaL_optnumber(L, 3, 1);
  luaL_argcheck(L, step != 0 && isfinite(step), 3, "step must be non-zero");
  slot = ld2r_newtensor(L);
  *slot = d2r_arange(start, stop, step);
  return ld2r_check(L, *slot, "arange");
}

static int f_is_tensor(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, LD2R_TENSOR) != NULL);
  return 1;
}

static const luaL_Reg constructors[] = {
  {"tensor", f_tensor},
  {"zeros", f_zeros},
  {"ones", f_ones},
  {"full", f_full},
  {"zeros_like", f_zeros_like},
  {"ones_like", f_ones_like},
  {"scalar", f_scalar},
  {"eye", f_eye},
  {"arange", f_arange},
  {"is_tensor", f_is_tensor},
  {NULL, NULL}
};

/* ---- registration ---------------------------------------------------- */

static const luaL_Reg meta[] = {
  {"__gc", t_gc},
  {"__close", t_gc},
  {NULL, NULL}
};

/* With the module table at the top: registers the metatable, creates the
 * method table (module.Tensor, filled by the other files) and adds the
 * constructors to the module. */
int ld2r_open_tensor(lua_State *L) {
  luaL_newmetatable(L, LD2R_TENSOR);
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "Tensor");
  ld2r_tensor_index_meta(L);      /* consumes the method table */
  lua_pop(L, 1);
  luaL_setfuncs(L, constructors, 0);
  return 0;
}

/*
 * Tabular data for Lua: reading CSV tables, seeded splits, the
 * standardiser (type d2r.Standardizer) and minibatch orders.  Batch
 * numbers are 1-based; row indices held in tensors are 0-based.
 */
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/data.h"
#include "ld2r.h"

#define TABLE_BOX "d2r.CsvTable"

/* ---- CSV tables ------------------------------------------------------ */

static int box_gc(lua_State *L) {
  d2r_table **box = luaL_checkudata(L, 1, TABLE_BOX);
  d2r_table_free(*box);
  *box = NULL;
  return 0;
}

/* Sets field k of the table at the top to a new reference to t. */
static void settensor(lua_State *L, const char *k, d2r_tensor *t) {
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_retain(t);
  lua_setfield(L, -2, k);
}

static void pushnames(lua_State *L, const d2r_table *t) {
  int64_t i;
  lua_createtable(L, (int)t->features, 0);
  for (i = 0; i < t->features; i++) {
    lua_pushstring(L, t->names[i]);
    lua_rawseti(L, -2, (lua_Integer)(i + 1));
  }
}

/* Pushes the Lua table describing the CSV table t. */
static void pushtable(lua_State *L, const d2r_table *t) {
  lua_createtable(L, 0, 7);
  settensor(L, "X", t->x);
  if (t->y != NULL)
    settensor(L, "y", t->y);
  pushnames(L, t);
  lua_setfield(L, -2, "names");
  if (t->label_name != NULL) {
    lua_pushstring(L, t->label_name);
    lua_setfield(L, -2, "label");
  }
  lua_pushinteger(L, (lua_Integer)t->classes);
  lua_setfield(L, -2, "classes");
  lua_pushinteger(L, (lua_Integer)t->rows);
  lua_setfield(L, -2, "rows");
  lua_pushinteger(L, (lua_Integer)t->features);
  lua_setfield(L, -2, "features");
}

/* The label column named by the options at arg: "label" by default,
 * none when label = false. */
static const char *label_option(lua_State *L, int arg) {
  const char *label = "label";
  if (lua_isnoneornil(L, arg))
    return label;
  luaL_checktype(L, arg, LUA_TTABLE);
  switch (lua_getfield(L, arg, "label")) {
  case LUA_TNIL:
    break;
  case LUA_TBOOLEAN:
    luaL_argcheck(L, !lua_toboolean(L, -1), arg,
                  "label must be a column name or false");
    label = NULL;
    break;
  case LUA_TSTRING:
    label = lua_tostring(L, -1);   /* kept alive on the stack */
    break;
  default:
    luaL_argerror(L, arg, "label must be a column name or false");
  }
  return label;
}

/* d2r.read_csv(path [, {label = name | false}]): a table with X, y,
 * names, label, classes, rows, features; or nil and a message when the
 * file cannot be read or is malformed. */
static int f_read_csv(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *label = label_option(L, 2);
  d2r_table **box = lua_newuserdatauv(L, sizeof(*box), 0);
  *box = NULL;
  luaL_setmetatable(L, TABLE_BOX);
  *box = d2r_csv_read(path, label);
  if (*box == NULL) {
    luaL_pushfail(L);
    lua_pushstring(L, d2r_error());
    return 2;
  }
  pushtable(L, *box);
  return 1;
}

/* ---- splits ---------------------------------------------------------- */

static void checkfrac(lua_State *L, int arg, double f) {
  luaL_argcheck(L, f > 0 && f < 1, arg, "fraction must be in (0, 1)");
}

/* Pushes n empty tensors, their slots in slots[]. */
static void newtensors(lua_State *L, int n, d2r_tensor ***slots) {
  int i;
  for (i = 0; i < n; i++)
    slots[i] = ld2r_newtensor(L);
}

/* d2r.stratified_split(y, pool, frac, rng): rest, part. */
static int f_stratified_split(lua_State *L) {
  d2r_tensor *y = ld2r_checkoperand(L, 1);
  d2r_tensor *pool = ld2r_checkoperand(L, 2);
  double frac = luaL_checknumber(L, 3);
  d2r_rng *r = ld2r_checkrng(L, 4);
  d2r_tensor **s[2], *rest, *part;
  int st;
  checkfrac(L, 3, frac);
  newtensors(L, 2, s);
  st = d2r_stratified_split(y, pool, frac, r, &rest, &part);
  *s[0] = rest;
  *s[1] = part;
  ld2r_checkstatus(L, st, "stratified_split");
  return 2;
}

/* d2r.random_split(pool, frac, rng): rest, part. */
static int f_random_split(lua_State *L) {
  d2r_tensor *pool = ld2r_checkoperand(L, 1);
  double frac = luaL_checknumber(L, 2);
  d2r_rng *r = ld2r_checkrng(L, 3);
  d2r_tensor **s[2], *rest, *part;
  int st;
  checkfrac(L, 2, frac);
  newtensors(L, 2, s);
  st = d2r_random_split(pool, frac, r, &rest, &part);
  *s[0] = rest;
  *s[1] = part;
  ld2r_checkstatus(L, st, "random_split");
  return 2;
}

/* d2r.protocol_split(y, test_frac, val_frac, rng): train, val, test. */
static int f_protocol_split(lua_State *L) {
  d2r_tensor *y = ld2r_checkoperand(L, 1);
  double tf = luaL_checknumber(L, 2), vf = luaL_checknumber(L, 3);
  d2r_rng *r = ld2r_checkrng(L, 4);
  d2r_tensor **s[3], *tr, *va, *te;
  int st;
  checkfrac(L, 2, tf);
  checkfrac(L, 3, vf);
  newtensors(L, 3, s);
  st = d2r_protocol_split(y, tf, vf, r, &tr, &va, &te);
  *s[0] = tr;
  *s[1] = va;
  *s[2] = te;
  ld2r_checkstatus(L, st, "protocol_split");
  return 3;
}

/* ---- the standardiser ------------------------------------------------ */

#define STANDARDIZER "d2r.Standardizer"

static d2r_standardizer *checkstd(lua_State *L, int arg) {
  d2r_standardizer **box = luaL_checkudata(L, arg, STANDARDIZER);
  if (*box == NULL)
    luaL_argerror(L, arg, "standardizer has been closed");
  return *box;
}

static int std_gc(lua_State *L) {
  d2r_standardizer **box = luaL_checkudata(L, 1, STANDARDIZER);
  d2r_standardizer_free(*box);
  *box = NULL;
  return 0;
}

static int std_tostring(lua_State *L) {
  d2r_standardizer **box = luaL_checkudata(L, 1, STANDARDIZER);
  if (*box == NULL)
    lua_pushliteral(L, "d2r.Standardizer(closed)");
  else
    lua_pushfstring(L, "d2r.Standardizer(%I features)",
                    (lua_Integer)d2r_numel((*box)->mean));
  return 1;
}

/* d2r.standardizer(x): fitted on the rows of x. */
static int f_standardizer(lua_State *L) {
  d2r_tensor *x = ld2r_checktensor(L, 1);
  d2r_standardizer **box = lua_newuserdatauv(L, sizeof(*box), 0);
  *box = NULL;
  luaL_setmetatable(L, STANDARDIZER);
  *box = d2r_standardizer_fit(x);
  if (*box == NULL)
    return ld2r_fail(L, "standardizer");
  return 1;
}

/* s:apply(x): (x - mean) / std. */
static int std_apply(lua_State *L) {
  d2r_standardizer *s = checkstd(L, 1);
  d2r_tensor *x = ld2r_checktensor(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_standardizer_apply(s, x);
  return ld2r_check(L, *slot, "apply");
}

static int std_mean(lua_State *L) {
  d2r_standardizer *s = checkstd(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_retain(s->mean);
  return 1;
}

static int std_std(lua_State *L) {
  d2r_standardizer *s = checkstd(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_retain(s->std);
  return 1;
}

/* ---- minibatches ----------------------------------------------------- */

static int f_batch_order(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  d2r_tensor **slot;
  luaL_argcheck(L, n >= 1, 2, "row count must be positive");
  slot = ld2r_newtensor(L);
  *slot = d2r_batch_order(r, (int64_t)n);
  return ld2r_check(L, *slot, "batch_order");
}

static int64_t checkbs(lua_State *L, int arg) {
  lua_Integer bs = luaL_checkinteger(L, arg);
  luaL_argcheck(L, bs >= 1, arg, "batch size must be positive");
  return (int64_t)bs;
}

static int f_batch_count(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  int64_t bs = checkbs(L, 2);
  luaL_argcheck(L, n >= 0, 1, "row count must be non-negative");
  lua_pushinteger(L, (lua_Integer)d2r_batch_count((int64_t)n, bs));
  return 1;
}

/* The 0-based batch number of the 1-based one at arg, for order. */
static int64_t checkbatch(lua_State *L, int arg, d2r_tensor *order,
                          int64_t bs) {
  lua_Integer b = luaL_checkinteger(L, arg);
  int64_t n = d2r_ndim(order) == 1 ? d2r_shape(order)[0] : 0;
  int64_t count = d2r_batch_count(n, bs);
  if (b < 1 || b > count)
    luaL_argerror(L, arg, lua_pushfstring(L, "batch %I out of range "
                  "1..%I", b, (lua_Integer)count));
  return (int64_t)(b - 1);
}

/* d2r.batch_index(order, b, bs): indices of batch b (1-based). */
static int f_batch_index(lua_State *L) {
  d2r_tensor *order = ld2r_checktensor(L, 1);
  int64_t bs = checkbs(L, 3);
  int64_t b = checkbatch(L, 2, order, bs);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_batch_index(order, b, bs);
  return ld2r_check(L, *slot, "batch_index");
}

/* d2r.batch_rows(t, order, b, bs): the rows of t in batch b. */
static int f_batch_rows(lua_State *L) {
  d2r_tensor *t = ld2r_checktensor(L, 1);
  d2r_tensor *order = ld2r_checktensor(L, 2);
  int64_t bs = checkbs(L, 4);
  int64_t b = checkbatch(L, 3, order, bs);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_batch_rows(t, order, b, bs);
  return ld2r_check(L, *slot, "batch_rows");
}

/* ---- registration ---------------------------------------------------- */

static const luaL_Reg functions[] = {
  {"read_csv", f_read_csv}, {"stratified_split", f_stratified_split},
  {"random_split", f_random_split}, {"protocol_split", f_protocol_split},
  {"standardizer", f_standardizer}, {"batch_order", f_batch_order},
  {"batch_count", f_batch_count}, {"batch_index", f_batch_index},
  {"batch_rows", f_batch_rows},
  {NULL, NULL}
};

static const luaL_Reg std_methods[] = {
  {"apply", std_apply}, {"mean", std_mean}, {"std", std_std},
  {"close", std_gc},
  {NULL, NULL}
};

static void newtype(lua_State *L, const char *name, lua_CFunction gc,
                    const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  if (methods != NULL) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

/* With the module table at the top: registers the data functions. */
int ld2r_open_data(lua_State *L) {
  newtype(L, TABLE_BOX, box_gc, NULL);
  newtype(L, STANDARDIZER, std_gc, std_methods);
  luaL_getmetatable(L, STANDARDIZER);
  lua_pushcfunction(L, std_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
  return 0;
}

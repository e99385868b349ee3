/*
 * The d2r.Rng type: a seedable random generator (GSL Mersenne Twister)
 * for Lua, drawing numbers and tensors.  Index values it returns
 * (permutation, categorical, below) are 0-based, like the engine's.
 */
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/rng.h"
#include "ld2r.h"

static d2r_rng **newrng(lua_State *L) {
  d2r_rng **slot = lua_newuserdatauv(L, sizeof(*slot), 0);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_RNG);
  return slot;
}

d2r_rng *ld2r_checkrng(lua_State *L, int arg) {
  d2r_rng **slot = luaL_checkudata(L, arg, LD2R_RNG);
  if (*slot == NULL)
    luaL_argerror(L, arg, "generator has been closed");
  return *slot;
}

static uint64_t checkseed(lua_State *L, int arg) {
  return (uint64_t)luaL_checkinteger(L, arg);
}

/* d2r.rng(seed): a new generator. */
static int f_rng(lua_State *L) {
  uint64_t seed = checkseed(L, 1);
  d2r_rng **slot = newrng(L);
  *slot = d2r_rng_new(seed);
  if (*slot == NULL)
    return luaL_error(L, "rng: cannot create a generator");
  return 1;
}

static int r_gc(lua_State *L) {
  d2r_rng **slot = luaL_checkudata(L, 1, LD2R_RNG);
  d2r_rng_free(*slot);
  *slot = NULL;
  return 0;
}

static int r_seed(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  d2r_rng_seed(r, checkseed(L, 2));
  lua_settop(L, 1);
  return 1;
}

static int r_clone(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  d2r_rng **slot = newrng(L);
  *slot = d2r_rng_clone(r);
  if (*slot == NULL)
    return luaL_error(L, "clone: cannot create a generator");
  return 1;
}

/* r:uniform([lo, hi]): a number in [lo, hi), [0, 1) by default. */
static int r_uniform(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  double lo = luaL_optnumber(L, 2, 0), hi = luaL_optnumber(L, 3, 1);
  lua_pushnumber(L, lo + (hi - lo) * d2r_rng_uniform(r));
  return 1;
}

/* r:normal([mean, std]): a normal draw, N(0, 1) by default. */
static int r_normal(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  double mean = luaL_optnumber(L, 2, 0), sd = luaL_optnumber(L, 3, 1);
  lua_pushnumber(L, mean + sd * d2r_rng_normal(r));
  return 1;
}

/* r:below(n): an integer uniform in 0..n-1. */
static int r_below(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1, 2, "bound must be positive");
  lua_pushinteger(L, (lua_Integer)d2r_rng_below(r, (uint64_t)n));
  return 1;
}

static int r_next_seed(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  lua_pushinteger(L, (lua_Integer)d2r_rng_next_seed(r));
  return 1;
}

/* Draws a tensor of the shape given from arg 2: a table followed by two
 * optional parameters, or integers alone. */
static int draw(lua_State *L, int normal) {
  int64_t shape[D2R_MAXDIM];
  d2r_rng *r = ld2r_checkrng(L, 1);
  double p0 = 0, p1 = 1;
  int nd;
  d2r_tensor **slot;
  if (lua_istable(L, 2)) {
    p0 = luaL_optnumber(L, 3, p0);
    p1 = luaL_optnumber(L, 4, p1);
    lua_settop(L, 2);
  }
  nd = ld2r_checkshape(L, 2, shape, 0);
  slot = ld2r_newtensor(L);
  if (normal)
    *slot = d2r_rand_normal(r, nd, shape, p0, p1);
  else
    *slot = d2r_rand_uniform(r, nd, shape, p0, p1);
  return ld2r_check(L, *slot, normal ? "randn" : "rand");
}

/* r:rand(shape...) or r:rand({shape} [, lo, hi]): uniform draws. */
static int r_rand(lua_State *L) {
  return draw(L, 0);
}

/* r:randn(shape...) or r:randn({shape} [, mean, std]): normal draws. */
static int r_randn(lua_State *L) {
  return draw(L, 1);
}

static int r_permutation(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  d2r_tensor **slot;
  luaL_argcheck(L, n >= 0, 2, "size must be non-negative");
  slot = ld2r_newtensor(L);
  *slot = d2r_rand_permutation(r, (int64_t)n);
  return ld2r_check(L, *slot, "permutation");
}

/* r:categorical(probs [, draws]): [B, draws] class indices (0-based). */
static int r_categorical(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  d2r_tensor *p = ld2r_checkoperand(L, 2);
  lua_Integer k = luaL_optinteger(L, 3, 1);
  d2r_tensor **slot;
  luaL_argcheck(L, k >= 1, 3, "draw count must be positive");
  slot = ld2r_newtensor(L);
  *slot = d2r_rand_categorical(r, p, (int64_t)k);
  return ld2r_check(L, *slot, "categorical");
}

/* r:state(): the generator's state as a string, for checkpoints. */
static int r_state(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  size_t n = d2r_rng_state_size(r);
  luaL_Buffer b;
  char *buf = luaL_buffinitsize(L, &b, n);
  if (d2r_rng_get_state(r, buf, n) < 0)
    return ld2r_fail(L, "state");
  luaL_pushresultsize(&b, n);
  return 1;
}

static int r_set_state(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (d2r_rng_set_state(r, s, n) < 0)
    return ld2r_fail(L, "set_state");
  lua_settop(L, 1);
  return 1;
}

static int r_tostring(lua_State *L) {
  d2r_rng **slot = luaL_checkudata(L, 1, LD2R_RNG);
  lua_pushstring(L, *slot ? "d2r.Rng(mt19937)" : "d2r.Rng(closed)");
  return 1;
}

static const luaL_Reg methods[] = {
  {"seed", r_seed}, {"clone", r_clone}, {"uniform", r_uniform},
  {"normal", r_normal}, {"below", r_below}, {"next_seed", r_next_seed},
  {"rand", r_rand}, {"randn", r_randn}, {"permutation", r_permutation},
  {"categorical", r_categorical}, {"state", r_state},
  {"set_state", r_set_state}, {"close", r_gc},
  {NULL, NULL}
};

static const luaL_Reg meta[] = {
  {"__gc", r_gc}, {"__close", r_gc}, {"__tostring", r_tostring},
  {NULL, NULL}
};

/* With the module table at the top: registers d2r.Rng and d2r.rng. */
int ld2r_open_rng(lua_State *L) {
  luaL_newmetatable(L, LD2R_RNG);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, f_rng);
  lua_setfield(L, -2, "rng");
  return 0;
}

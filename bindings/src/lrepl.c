/*
 * Timing for the REPL and for scripts: d2r.time(f, ...) calls f and
 * returns the wall-clock seconds it took, followed by its results.
 */
#define _POSIX_C_SOURCE 200809L

#include <time.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* d2r.time(f, ...): seconds, f(...).  An error in f propagates. */
static int f_time(lua_State *L) {
  double t0;
  int n = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushnil(L);               /* the slot of the time */
  lua_insert(L, 1);
  t0 = now();
  lua_call(L, n - 1, LUA_MULTRET);
  lua_pushnumber(L, now() - t0);
  lua_replace(L, 1);
  return lua_gettop(L);
}

/* With the module table at the top: registers d2r.time. */
int ld2r_open_repl(lua_State *L) {
  lua_pushcfunction(L, f_time);
  lua_setfield(L, -2, "time");
  return 0;
}

/*
 * A C host application that embeds Lua with d2r (d2r_lua.h): it creates
 * a state with d2r loaded, runs Lua source given as a string, passes a
 * tensor made in C to a Lua function, reads a table and a tensor back,
 * and catches errors from Lua without dying.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include <d2r/d2r.h>
#include <d2r_lua.h>

/* Lua code the host loads once: a function it calls later. */
static const char *library =
  "-- Column means of a data matrix and their norm, as a table.\n"
  "function describe(x)\n"
  "  local mean = x:mean(1)\n"
  "  return {rows = x:dim(1), mean = mean,\n"
  "          norm = mean:square():sum():sqrt():item()}\n"
  "end\n";

/* Prints the first line of the error message at the top and pops it. */
static void show_error(lua_State *L, const char *what) {
  const char *msg = lua_tostring(L, -1);
  size_t n = strcspn(msg, "\n");
  printf("%s failed, as expected: %.*s\n", what, (int)n, msg);
  lua_pop(L, 1);
}

/* Exits, with the message at the top, unless status is LUA_OK. */
static void must(lua_State *L, int status) {
  if (status != LUA_OK) {
    fprintf(stderr, "lua_host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    exit(EXIT_FAILURE);
  }
}

int main(void) {
  static const double data[] = {1, 2, 3, 4, 5, 6};
  lua_State *L = d2r_lua_newstate();
  d2r_tensor *x, *mean;
  if (L == NULL) {
    fprintf(stderr, "lua_host: cannot create a Lua state\n");
    return EXIT_FAILURE;
  }

  /* 1. A string of Lua, one result back. */
  must(L, d2r_lua_dostring(L, "return (d2r.ones(2, 3) * 2):sum():item()",
                           "=sum", 1));
  printf("sum = %g\n", lua_tonumber(L, -1));
  lua_pop(L, 1);

  /* 2. A tensor made in C, passed to a Lua function; a table back. */
  must(L, d2r_lua_dostring(L, library, "=library", 0));
  x = d2r_matrix(3, 2, data);
  if (x == NULL) {
    fprintf(stderr, "lua_host: %s\n", d2r_error());
    lua_close(L);
    return EXIT_FAILURE;
  }
  lua_getglobal(L, "describe");
  d2r_lua_pushtensor(L, x);     /* Lua holds its own reference */
  d2r_release(x);
  must(L, d2r_lua_pcall(L, 1, 1));
  lua_getfield(L, -1, "rows");
  lua_getfield(L, -2, "norm");
  lua_getfield(L, -3, "mean");
  mean = d2r_retain(d2r_lua_totensor(L, -1));  /* keep it past the pop */
  printf("rows = %d, norm = %.6f\n", (int)lua_tointeger(L, -3),
         lua_tonumber(L, -2));
  lua_pop(L, 4);
  if (mean == NULL) {
    fprintf(stderr, "lua_host: describe gave no mean tensor\n");
    lua_close(L);
    return EXIT_FAILURE;
  }
  printf("mean = [%g, %g] (shape [%lld])\n", d2r_data(mean)[0],
         d2r_data(mean)[1], (long long)d2r_dim(mean, 0));
  d2r_release(mean);

  /* 3. Errors come back as messages; the state lives on. */
  if (d2r_lua_dostring(L, "return d2r.ones(2, 2) + d2r.ones(3)", "=bad",
                       1) == LUA_OK)
    return EXIT_FAILURE;
  show_error(L, "adding shapes [2, 2] and [3]");
  if (d2r_lua_dostring(L, "return describe(", "=syntax", 1) == LUA_OK)
    return EXIT_FAILURE;
  show_error(L, "a syntax error");
  lua_getglobal(L, "describe");
  lua_pushstring(L, "not a tensor");
  if (d2r_lua_pcall(L, 1, 1) == LUA_OK)
    return EXIT_FAILURE;
  show_error(L, "describe('not a tensor')");
  must(L, d2r_lua_dostring(L, "return describe(d2r.eye(4)).rows",
                           "=again", 1));
  printf("still alive: describe(eye(4)).rows = %d\n",
         (int)lua_tointeger(L, -1));
  lua_close(L);
  return EXIT_SUCCESS;
}

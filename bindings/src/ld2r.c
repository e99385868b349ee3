/*
 * The entry point of the d2r Lua module: builds the module table from
 * the C parts of the binding, then runs the embedded Lua library
 * (the files bindings/lua/NAME.lua, in name order) with the table and
 * the text of bindings/REFERENCE.md (the source of d2r.help) as
 * arguments.
 */
#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"
#include "d2r_lua_embed.h"
#include "d2r_reference.h"

static const lua_CFunction parts[] = {
  ld2r_open_tensor, ld2r_open_ops, ld2r_open_views, ld2r_open_autograd,
  ld2r_open_rng, ld2r_open_data, ld2r_open_nn, ld2r_open_optim,
  ld2r_open_dist, ld2r_open_objective, ld2r_open_bilevel,
  ld2r_open_store, ld2r_open_pool, ld2r_open_mpi, ld2r_open_statfns,
  ld2r_open_repl,
  ld2r_open_policy,
  ld2r_open_env,
  ld2r_open_checkpoint,
  NULL
};

/* Loads embedded chunk i: its bytecode, compiled when d2r was built
 * (no parsing, most of a d2r process's start), or its text where the
 * running Lua core refuses that bytecode (another build of 5.4 with
 * other number sizes, say). */
static void load_chunk(lua_State *L, int i) {
  const char *name = lua_pushfstring(L, "@d2r/%s.lua",
                                     d2r_lua_chunks[i].name);
  if (luaL_loadbufferx(L, (const char *)d2r_lua_chunks[i].code,
                       d2r_lua_chunks[i].ncode, name, "b") == LUA_OK) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  if (luaL_loadbufferx(L, (const char *)d2r_lua_chunks[i].text,
                       d2r_lua_chunks[i].ntext, name, "t") != LUA_OK)
    lua_error(L);
  lua_remove(L, -2);
}

/* Runs each embedded chunk with the module table (at the top) and the
 * reference text as `...`. */
static void run_chunks(lua_State *L) {
  int i;
  for (i = 0; d2r_lua_chunks[i].name != NULL; i++) {
    load_chunk(L, i);
    lua_pushvalue(L, -2);
    lua_pushlstring(L, d2r_reference, sizeof d2r_reference - 1);
    lua_call(L, 2, 0);
  }
}

int luaopen_d2r(lua_State *L) {
  int i;
  luaL_checkversion(L);
  lua_newtable(L);
  for (i = 0; parts[i] != NULL; i++)
    parts[i](L);
  lua_pushliteral(L, D2R_VERSION);
  lua_setfield(L, -2, "version");
  run_chunks(L);
  return 1;
}

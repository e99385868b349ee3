/*
 * The embedding API of bindings/include/d2r_lua.h: states with d2r
 * loaded, tensors in and out of Lua, and protected runs of code.
 */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "d2r_lua.h"
#include "ld2r.h"

/* Message handler: the message (or a description of a non-string error
 * object) with a traceback. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int d2r_lua_pcall(lua_State *L, int nargs, int nresults) {
  int status, base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

static int open_d2r(lua_State *L) {
  luaL_requiref(L, "d2r", luaopen_d2r, 1);
  return 0;
}

static int open_all(lua_State *L) {
  luaL_openlibs(L);
  return open_d2r(L);
}

int d2r_lua_open(lua_State *L) {
  lua_pushcfunction(L, open_d2r);
  return d2r_lua_pcall(L, 0, 0);
}

lua_State *d2r_lua_newstate(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    return NULL;
  lua_pushcfunction(L, open_all);
  if (d2r_lua_pcall(L, 0, 0) != LUA_OK) {
    lua_close(L);
    return NULL;
  }
  return L;
}

void d2r_lua_pushtensor(lua_State *L, d2r_tensor *t) {
  if (t == NULL)
    lua_pushnil(L);
  else
    *ld2r_newtensor(L) = d2r_retain(t);
}

d2r_tensor *d2r_lua_totensor(lua_State *L, int idx) {
  d2r_tensor **slot = luaL_testudata(L, idx, LD2R_TENSOR);
  return slot ? *slot : NULL;
}

/* Runs the chunk loaded with status (or the message at the top). */
static int run(lua_State *L, int status, int nresults) {
  if (status == LUA_OK)
    status = d2r_lua_pcall(L, 0, nresults);
  return status;
}

int d2r_lua_dostring(lua_State *L, const char *code, const char *name,
                     int nresults) {
  int status = luaL_loadbufferx(L, code, strlen(code),
                                name ? name : "=(string)", "t");
  return run(L, status, nresults);
}

int d2r_lua_dofile(lua_State *L, const char *path, int nresults) {
  return run(L, luaL_loadfilex(L, path, "t"), nresults);
}

/*
 * Option tables for the binding: typed reads of optional fields, and a
 * check that a table holds no field the function does not know (so a
 * misspelt option is an error, not silently ignored).
 */
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

/* Pushes field key of the options at arg (nil when arg is absent). */
static int pushopt(lua_State *L, int arg, const char *key) {
  if (lua_isnoneornil(L, arg)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, arg, key);
}

static void badopt(lua_State *L, int arg, const char *key,
                   const char *want) {
  luaL_argerror(L, arg, lua_pushfstring(L, "option '%s' must be %s, "
                "got %s", key, want, luaL_typename(L, -1)));
}

double ld2r_optnumber(lua_State *L, int arg, const char *key, double def) {
  int t = pushopt(L, arg, key);
  if (t != LUA_TNIL) {
    if (t != LUA_TNUMBER)
      badopt(L, arg, key, "a number");
    def = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return def;
}

lua_Integer ld2r_optint(lua_State *L, int arg, const char *key,
                        lua_Integer def) {
  int isint, t = pushopt(L, arg, key);
  if (t != LUA_TNIL) {
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (t != LUA_TNUMBER || !isint)
      badopt(L, arg, key, "an integer");
    def = v;
  }
  lua_pop(L, 1);
  return def;
}

int ld2r_optbool(lua_State *L, int arg, const char *key, int def) {
  int t = pushopt(L, arg, key);
  if (t != LUA_TNIL) {
    if (t != LUA_TBOOLEAN)
      badopt(L, arg, key, "a boolean");
    def = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return def;
}

/* The index in names of the string option key (def when absent). */
int ld2r_optchoice(lua_State *L, int arg, const char *key, int def,
                   const char *const names[]) {
  int i, t = pushopt(L, arg, key);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    return def;
  }
  if (t == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    for (i = 0; names[i] != NULL; i++) {
      if (strcmp(s, names[i]) == 0) {
        lua_pop(L, 1);
        return i;
      }
    }
    luaL_argerror(L, arg, lua_pushfstring(L, "invalid value '%s' for "
                  "option '%s'", s, key));
  }
  badopt(L, arg, key, "a string");
  return def;
}

/* Raises an error naming the first field of the options at arg that is
 * not in known (NULL-terminated).  Absent options pass. */
void ld2r_checkfields(lua_State *L, int arg, const char *const known[]) {
  if (lua_isnoneornil(L, arg))
    return;
  luaL_checktype(L, arg, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, arg) != 0) {
    int i, found = 0;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (i = 0; known[i] != NULL && !found; i++)
        found = strcmp(k, known[i]) == 0;
      if (!found)
        luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'",
                      k));
    } else {
      luaL_argerror(L, arg, "option names must be strings");
    }
  }
}

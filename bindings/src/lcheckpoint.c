/*
 * Checkpoints for Lua: d2r.checkpoint_save(path, {model =, optim =,
 * rng =, epoch =, step =, meta =}) and d2r.checkpoint_load(path
 * [, {model =, optim =, rng =}]).  Misuse raises; a file that cannot be
 * written, read or matched returns nil and the engine's message.
 */
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/checkpoint.h"
#include "ld2r.h"

static const char *const save_fields[] = {
  "model", "optim", "rng", "epoch", "step", "meta", NULL
};

static const char *const load_fields[] = {"model", "optim", "rng", NULL};

/* The userdata pointer in field key of the table at arg (NULL when the
 * field is nil), checked to be of type tname and open.  The field's
 * value is left on the stack. */
static void *getbox(lua_State *L, int arg, const char *key,
                    const char *tname) {
  void **box;
  if (lua_getfield(L, arg, key) == LUA_TNIL)
    return NULL;
  box = luaL_testudata(L, -1, tname);
  if (box == NULL)
    luaL_argerror(L, arg, lua_pushfstring(L, "field '%s' must be a %s, "
                  "got %s", key, tname, luaL_typename(L, -1)));
  if (*box == NULL)
    luaL_argerror(L, arg, lua_pushfstring(L, "field '%s' has been closed",
                  key));
  return *box;
}

/* Fills the objects of ck from the table at arg (values stay on the
 * stack, which keeps them alive during the call). */
static void getobjects(lua_State *L, int arg, d2r_checkpoint *ck) {
  if (lua_getfield(L, arg, "model") != LUA_TNIL)
    ck->params = ld2r_checkparams(L, lua_gettop(L), &ck->nparams);
  ck->optim = getbox(L, arg, "optim", LD2R_OPTIM);
  ck->rng = getbox(L, arg, "rng", LD2R_RNG);
}

/* d2r.checkpoint_save(path, parts): true, or nil and a message. */
static int f_checkpoint_save(lua_State *L) {
  d2r_checkpoint ck = {0, NULL, NULL, NULL, 0, 0, NULL, 0};
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  ld2r_checkfields(L, 2, save_fields);
  ck.epoch = ld2r_optint(L, 2, "epoch", 0);
  ck.step = ld2r_optint(L, 2, "step", 0);
  getobjects(L, 2, &ck);
  switch (lua_getfield(L, 2, "meta")) {
  case LUA_TNIL:
    break;
  case LUA_TSTRING:
    ck.meta = lua_tolstring(L, -1, &ck.meta_len);
    if (ck.meta_len == 0)
      ck.meta = NULL;
    break;
  default:
    return luaL_argerror(L, 2, lua_pushfstring(L, "field 'meta' must be "
                         "a string, got %s", luaL_typename(L, -1)));
  }
  if (d2r_checkpoint_save(path, &ck) < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, d2r_error());
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* Pushes the string (lightuserdata 1, length 2); run under lua_pcall
 * so that the malloc'd copy can be freed even if Lua runs out of
 * memory. */
static int pushmeta(lua_State *L) {
  const char *s = lua_touserdata(L, 1);
  lua_pushlstring(L, s, (size_t)lua_tointeger(L, 2));
  return 1;
}

/* d2r.checkpoint_load(path [, parts]): epoch, meta, step; or nil and a
 * message. */
static int f_checkpoint_load(lua_State *L) {
  d2r_checkpoint ck = {0, NULL, NULL, NULL, 0, 0, NULL, 0};
  char *meta = NULL;
  int status;
  const char *path = luaL_checkstring(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_newtable(L);
  }
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  ld2r_checkfields(L, 2, load_fields);
  getobjects(L, 2, &ck);
  if (d2r_checkpoint_load(path, &ck, &meta) < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, d2r_error());
    return 2;
  }
  lua_settop(L, 0);
  lua_pushinteger(L, (lua_Integer)ck.epoch);
  lua_pushcfunction(L, pushmeta);
  lua_pushlightuserdata(L, meta);
  lua_pushinteger(L, (lua_Integer)ck.meta_len);
  status = lua_pcall(L, 2, 1, 0);
  free(meta);
  if (status != LUA_OK)
    return lua_error(L);
  lua_pushinteger(L, (lua_Integer)ck.step);
  return 3;
}

static const luaL_Reg funcs[] = {
  {"checkpoint_save", f_checkpoint_save},
  {"checkpoint_load", f_checkpoint_load},
  {NULL, NULL}
};

/* With the module table at the top: adds the checkpoint functions. */
int ld2r_open_checkpoint(lua_State *L) {
  luaL_setfuncs(L, funcs, 0);
  return 0;
}

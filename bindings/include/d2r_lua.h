/*
 * Embedding d2r's Lua binding in a C host application: a Lua 5.4 state
 * with the d2r module loaded, tensors passed between C and Lua, and
 * scripts run with their errors caught and returned as messages.
 *
 * Link with libd2r_lua (which brings in libd2r and liblua5.4): CMake
 * `find_package(d2r)` and target d2r::d2r_lua, or
 * `pkg-config --cflags --libs d2r-lua`.
 *
 * Ownership.  A tensor pushed into Lua is retained by the Lua value: the
 * caller keeps (and still releases) its own reference.  A tensor read
 * from the stack is borrowed from the Lua value: it stays valid while
 * that value is reachable from Lua (on the stack, in a global, in a
 * table) and not closed with t:close(); retain it with d2r_retain to keep
 * it longer.  The state owns everything else; lua_close frees it.
 *
 * Errors.  The functions that run code never raise: they return a Lua
 * status (LUA_OK or an error code) and, on failure, leave one string
 * on the stack, the message with a traceback.  The push and read
 * functions are like lua_push* and lua_to*: they raise only when Lua
 * runs out of memory, which a host that needs to survive that calls
 * inside lua_pcall.
 */
#ifndef D2R_LUA_H
#define D2R_LUA_H

#include "lua.h"

#include "d2r/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The module's opener, as `require "d2r"` calls it: pushes the module
 * table.  For luaL_requiref or package.preload. */
int luaopen_d2r(lua_State *L);

/* A new state with Lua's standard libraries and d2r loaded (also as
 * the global `d2r`), or NULL when memory runs out.  Close it with
 * lua_close. */
lua_State *d2r_lua_newstate(void);

/* Loads d2r into an existing state, as require "d2r" does, and sets the
 * global `d2r`.  Returns LUA_OK with nothing pushed, or an error status
 * with the message pushed. */
int d2r_lua_open(lua_State *L);

/* Pushes t as a d2r.Tensor holding a new reference (nil for NULL). */
void d2r_lua_pushtensor(lua_State *L, d2r_tensor *t);

/* The tensor at index idx, borrowed (see above), or NULL when the value
 * there is not a tensor or has been closed. */
d2r_tensor *d2r_lua_totensor(lua_State *L, int idx);

/* Calls the function below its nargs arguments, as lua_pcall does, with
 * a traceback appended to an error message. */
int d2r_lua_pcall(lua_State *L, int nargs, int nresults);

/* Runs code (a chunk of Lua source, named name in messages; NULL names
 * it "=(string)") and leaves nresults results on the stack (LUA_MULTRET:
 * all of them).  Returns LUA_OK, or a syntax or run-time error status
 * with the message pushed instead. */
int d2r_lua_dostring(lua_State *L, const char *code, const char *name,
                     int nresults);

/* The same for the Lua file at path. */
int d2r_lua_dofile(lua_State *L, const char *path, int nresults);

#ifdef __cplusplus
}
#endif

#endif

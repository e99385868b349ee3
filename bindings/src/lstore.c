/*
 * d2r.sqlite: a small SQLite binding for the experiment store.  A
 * database handle runs SQL text, statements with bound parameters, and
 * queries that return their rows as Lua tables keyed by column name.
 * Statements live in userdata boxes, so an error raised halfway through
 * a query leaves nothing behind for the garbage collector to miss.
 */
#include <string.h>

#include <sqlite3.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

#define LD2R_SQLITE "d2r.Sqlite"
#define LD2R_SQLSTMT "d2r.SqliteStatement"

/* ---- handles ---------------------------------------------------------- */

static sqlite3 **todb(lua_State *L) {
  return luaL_checkudata(L, 1, LD2R_SQLITE);
}

static sqlite3 *checkdb(lua_State *L) {
  sqlite3 **slot = todb(L);
  if (*slot == NULL)
    luaL_argerror(L, 1, "database has been closed");
  return *slot;
}

static int dberror(lua_State *L, sqlite3 *db, const char *what) {
  return luaL_error(L, "sqlite: %s: %s", what, sqlite3_errmsg(db));
}

/* d2r.sqlite.open(path [, {timeout = ms, readonly = bool}]): a handle.
 * A missing file is created unless readonly is set. */
static int f_open(lua_State *L) {
  static const char *const known[] = {"timeout", "readonly", NULL};
  const char *path = luaL_checkstring(L, 1);
  int ms, ro, rc, flags;
  sqlite3 **slot;
  ld2r_checkfields(L, 2, known);
  ms = (int)ld2r_optint(L, 2, "timeout", 30000);
  ro = ld2r_optbool(L, 2, "readonly", 0);
  flags = ro ? SQLITE_OPEN_READONLY
             : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  slot = lua_newuserdatauv(L, sizeof(*slot), 0);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_SQLITE);
  rc = sqlite3_open_v2(path, slot, flags, NULL);
  if (rc != SQLITE_OK) {
    lua_pushnil(L);
    if (*slot != NULL)
      lua_pushfstring(L, "%s: %s", path, sqlite3_errmsg(*slot));
    else
      lua_pushfstring(L, "%s: %s", path, sqlite3_errstr(rc));
    sqlite3_close_v2(*slot);
    *slot = NULL;
    return 2;
  }
  sqlite3_busy_timeout(*slot, ms);
  return 1;
}

static int db_close(lua_State *L) {
  sqlite3 **slot = todb(L);
  if (*slot != NULL)
    sqlite3_close_v2(*slot);
  *slot = NULL;
  return 0;
}

static int db_tostring(lua_State *L) {
  sqlite3 **slot = todb(L);
  if (*slot == NULL)
    lua_pushliteral(L, "d2r.Sqlite (closed)");
  else
    lua_pushfstring(L, "d2r.Sqlite (%s)",
                    sqlite3_db_filename(*slot, "main"));
  return 1;
}

/* db:exec(sql): runs one or more statements without parameters. */
static int db_exec(lua_State *L) {
  sqlite3 *db = checkdb(L);
  const char *sql = luaL_checkstring(L, 2);
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
    lua_pushstring(L, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return luaL_error(L, "sqlite: %s", lua_tostring(L, -1));
  }
  return 0;
}

/* ---- statements ------------------------------------------------------- */

static int stmt_gc(lua_State *L) {
  sqlite3_stmt **slot = luaL_checkudata(L, 1, LD2R_SQLSTMT);
  sqlite3_finalize(*slot);
  *slot = NULL;
  return 0;
}

/* Pushes a box holding the statement compiled from sql; returns it. */
static sqlite3_stmt *prepare(lua_State *L, sqlite3 *db, const char *sql) {
  sqlite3_stmt **slot = lua_newuserdatauv(L, sizeof(*slot), 0);
  *slot = NULL;
  luaL_setmetatable(L, LD2R_SQLSTMT);
  if (sqlite3_prepare_v2(db, sql, -1, slot, NULL) != SQLITE_OK)
    dberror(L, db, "prepare");
  if (*slot == NULL)
    luaL_error(L, "sqlite: no statement in '%s'", sql);
  return *slot;
}

/* Binds the Lua values at first..first+n-1 to the parameters of st. */
static void bind(lua_State *L, sqlite3 *db, sqlite3_stmt *st, int first,
                 int n) {
  int k, rc = SQLITE_OK;
  if (n != sqlite3_bind_parameter_count(st))
    luaL_error(L, "sqlite: statement takes %d parameters, got %d",
               sqlite3_bind_parameter_count(st), n);
  sqlite3_reset(st);
  for (k = 1; k <= n && rc == SQLITE_OK; k++) {
    int i = first + k - 1;
    size_t len;
    const char *s;
    switch (lua_type(L, i)) {
    case LUA_TNIL:
      rc = sqlite3_bind_null(st, k);
      break;
    case LUA_TBOOLEAN:
      rc = sqlite3_bind_int(st, k, lua_toboolean(L, i));
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, i))
        rc = sqlite3_bind_int64(st, k, (sqlite3_int64)lua_tointeger(L, i));
      else
        rc = sqlite3_bind_double(st, k, lua_tonumber(L, i));
      break;
    case LUA_TSTRING:
      s = lua_tolstring(L, i, &len);
      rc = sqlite3_bind_text64(st, k, s, len, SQLITE_TRANSIENT,
                               SQLITE_UTF8);
      break;
    default:
      luaL_error(L, "sqlite: cannot bind a %s (parameter %d)",
                 luaL_typename(L, i), k);
    }
  }
  if (rc != SQLITE_OK)
    dberror(L, db, "bind");
}

/* Steps st to its end. */
static void finish(lua_State *L, sqlite3 *db, sqlite3_stmt *st) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    ;
  if (rc != SQLITE_DONE)
    dberror(L, db, "step");
}

/* db:run(sql, ...): runs one statement with the arguments as its
 * parameters; returns the number of rows changed and the last rowid. */
static int db_run(lua_State *L) {
  sqlite3 *db = checkdb(L);
  int n = lua_gettop(L) - 2;
  sqlite3_stmt *st = prepare(L, db, luaL_checkstring(L, 2));
  bind(L, db, st, 3, n);
  finish(L, db, st);
  lua_pushinteger(L, sqlite3_changes(db));
  lua_pushinteger(L, (lua_Integer)sqlite3_last_insert_rowid(db));
  return 2;
}

/* db:run_many(sql, list): runs one statement once per entry of list,
 * each entry a sequence of parameters (n given by the statement). */
static int db_run_many(lua_State *L) {
  sqlite3 *db = checkdb(L);
  lua_Integer i, len;
  int k, np;
  sqlite3_stmt *st;
  luaL_checktype(L, 3, LUA_TTABLE);
  st = prepare(L, db, luaL_checkstring(L, 2));
  np = sqlite3_bind_parameter_count(st);
  len = luaL_len(L, 3);
  luaL_checkstack(L, np + 2, "too many parameters");
  for (i = 1; i <= len; i++) {
    int top = lua_gettop(L);
    if (lua_geti(L, 3, i) != LUA_TTABLE)
      luaL_error(L, "sqlite: run_many: entry %d is not a table", (int)i);
    for (k = 1; k <= np; k++)
      lua_geti(L, top + 1, k);
    bind(L, db, st, top + 2, np);
    finish(L, db, st);
    lua_settop(L, top);
  }
  lua_pushinteger(L, len);
  return 1;
}

static void pushcolumn(lua_State *L, sqlite3_stmt *st, int c) {
  switch (sqlite3_column_type(st, c)) {
  case SQLITE_INTEGER:
    lua_pushinteger(L, (lua_Integer)sqlite3_column_int64(st, c));
    break;
  case SQLITE_FLOAT:
    lua_pushnumber(L, sqlite3_column_double(st, c));
    break;
  case SQLITE_NULL:
    lua_pushnil(L);
    break;
  default:
    lua_pushlstring(L, (const char *)sqlite3_column_text(st, c),
                    (size_t)sqlite3_column_bytes(st, c));
  }
}

/* db:rows(sql, ...): the rows of a query, as a sequence of tables keyed
 * by column name (NULL columns are absent). */
static int db_rows(lua_State *L) {
  sqlite3 *db = checkdb(L);
  int n = lua_gettop(L) - 2, nc, c, rc;
  lua_Integer count = 0;
  sqlite3_stmt *st = prepare(L, db, luaL_checkstring(L, 2));
  bind(L, db, st, 3, n);
  nc = sqlite3_column_count(st);
  lua_newtable(L);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    lua_createtable(L, 0, nc);
    for (c = 0; c < nc; c++) {
      pushcolumn(L, st, c);
      lua_setfield(L, -2, sqlite3_column_name(st, c));
    }
    lua_rawseti(L, -2, ++count);
  }
  if (rc != SQLITE_DONE)
    dberror(L, db, "step");
  return 1;
}

/* db:changes(): rows changed by the last statement. */
static int db_changes(lua_State *L) {
  lua_pushinteger(L, sqlite3_changes(checkdb(L)));
  return 1;
}

/* d2r.sqlite.version(): the SQLite library's version string. */
static int f_version(lua_State *L) {
  lua_pushstring(L, sqlite3_libversion());
  return 1;
}

static const luaL_Reg db_methods[] = {
  {"exec", db_exec}, {"run", db_run}, {"run_many", db_run_many},
  {"rows", db_rows}, {"changes", db_changes}, {"close", db_close},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"open", f_open}, {"version", f_version}, {NULL, NULL}
};

int ld2r_open_store(lua_State *L) {
  luaL_newmetatable(L, LD2R_SQLITE);
  luaL_newlib(L, db_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, db_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, db_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, db_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newmetatable(L, LD2R_SQLSTMT);
  lua_pushcfunction(L, stmt_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "sqlite");
  return 0;
}

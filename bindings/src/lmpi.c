/*
 * d2r.mpi: the little of MPI the experiment runner needs to shard a
 * sweep across the ranks of `mpirun -np K` and gather the results on
 * rank 0 without a shared filesystem: start-up, rank and size, sending
 * and receiving strings, probing, broadcast and barrier.  Built with MPI
 * only when CMake found it (D2R_HAVE_MPI); otherwise d2r.mpi.available
 * is false and the functions raise.  MPI is finalised when the Lua state
 * closes.
 */
#define _POSIX_C_SOURCE 200809L

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

#ifdef D2R_HAVE_MPI

#include <sys/types.h>
#include <unistd.h>

#include <mpi.h>

#define FINALIZER "d2r.mpi.finalizer"

/* The process that started MPI: a forked worker must not finalise it. */
static pid_t mpi_owner = -1;

static int started(void) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

static void checkstarted(lua_State *L) {
  if (!started())
    luaL_error(L, "mpi: not started (call d2r.mpi.init first)");
}

static int mpierror(lua_State *L, const char *what, int rc) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
    len = 0;
  msg[len] = '\0';
  return luaL_error(L, "mpi: %s: %s", what, msg);
}

/* Finalises MPI when the state closes (the registry's sentinel). */
static int finalizer_gc(lua_State *L) {
  (void)L;
  if (started() && getpid() == mpi_owner)
    MPI_Finalize();
  return 0;
}

static int pushrank(lua_State *L) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  lua_pushinteger(L, rank);
  lua_pushinteger(L, size);
  return 2;
}

/* d2r.mpi.init(): starts MPI (once); returns this rank and the size.
 * Errors come back as codes rather than aborting the job. */
static int f_init(lua_State *L) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (fin)
    return luaL_error(L, "mpi: already finalised");
  if (!started()) {
    int rc = MPI_Init(NULL, NULL);
    if (rc != MPI_SUCCESS)
      return mpierror(L, "init", rc);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    mpi_owner = getpid();
    lua_newuserdatauv(L, 1, 0);
    luaL_newmetatable(L, FINALIZER);
    lua_pushcfunction(L, finalizer_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, FINALIZER);
  }
  return pushrank(L);
}

/* d2r.mpi.rank(): this rank and the size (0, 1 before init). */
static int f_rank(lua_State *L) {
  if (!started()) {
    lua_pushinteger(L, 0);
    lua_pushinteger(L, 1);
    return 2;
  }
  return pushrank(L);
}

static int checkcount(lua_State *L, size_t n) {
  if (n > INT_MAX)
    luaL_error(L, "mpi: message of %d bytes or more", INT_MAX);
  return (int)n;
}

/* d2r.mpi.send(dest, tag, message): a blocking send of a string. */
static int f_send(lua_State *L) {
  int dest = (int)luaL_checkinteger(L, 1);
  int tag = (int)luaL_checkinteger(L, 2);
  size_t n;
  const char *s = luaL_checklstring(L, 3, &n);
  int rc;
  checkstarted(L);
  rc = MPI_Send(s, checkcount(L, n), MPI_BYTE, dest, tag, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS)
    return mpierror(L, "send", rc);
  return 0;
}

static int optsource(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? MPI_ANY_SOURCE
                                 : (int)luaL_checkinteger(L, arg);
}

static int opttag(lua_State *L, int arg) {
  return lua_isnoneornil(L, arg) ? MPI_ANY_TAG
                                 : (int)luaL_checkinteger(L, arg);
}

/* d2r.mpi.recv([source [, tag]]): waits for a message; returns it, its
 * source and its tag. */
static int f_recv(lua_State *L) {
  int src = optsource(L, 1), tag = opttag(L, 2), count = 0, rc;
  MPI_Status st;
  luaL_Buffer b;
  char *dst;
  checkstarted(L);
  rc = MPI_Probe(src, tag, MPI_COMM_WORLD, &st);
  if (rc != MPI_SUCCESS)
    return mpierror(L, "probe", rc);
  MPI_Get_count(&st, MPI_BYTE, &count);
  dst = luaL_buffinitsize(L, &b, (size_t)count);
  rc = MPI_Recv(dst, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG,
                MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  if (rc != MPI_SUCCESS)
    return mpierror(L, "recv", rc);
  luaL_pushresultsize(&b, (size_t)count);
  lua_pushinteger(L, st.MPI_SOURCE);
  lua_pushinteger(L, st.MPI_TAG);
  return 3;
}

/* d2r.mpi.iprobe([source [, tag]]): the source and tag of a waiting
 * message, or nothing. */
static int f_iprobe(lua_State *L) {
  int src = optsource(L, 1), tag = opttag(L, 2), flag = 0, rc;
  MPI_Status st;
  checkstarted(L);
  rc = MPI_Iprobe(src, tag, MPI_COMM_WORLD, &flag, &st);
  if (rc != MPI_SUCCESS)
    return mpierror(L, "iprobe", rc);
  if (!flag)
    return 0;
  lua_pushinteger(L, st.MPI_SOURCE);
  lua_pushinteger(L, st.MPI_TAG);
  return 2;
}

/* d2r.mpi.bcast(message, root): the root's string, on every rank (the
 * other ranks may pass nil). */
static int f_bcast(lua_State *L) {
  int root = (int)luaL_checkinteger(L, 2), rank = 0, len = 0, rc;
  size_t n = 0;
  const char *s = NULL;
  luaL_Buffer b;
  char *dst;
  checkstarted(L);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == root) {
    s = luaL_checklstring(L, 1, &n);
    len = checkcount(L, n);
  }
  rc = MPI_Bcast(&len, 1, MPI_INT, root, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS)
    return mpierror(L, "bcast", rc);
  dst = luaL_buffinitsize(L, &b, (size_t)len);
  if (rank == root)
    memcpy(dst, s, (size_t)len);
  rc = MPI_Bcast(dst, len, MPI_BYTE, root, MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS)
    return mpierror(L, "bcast", rc);
  luaL_pushresultsize(&b, (size_t)len);
  return 1;
}

static int f_barrier(lua_State *L) {
  int rc;
  checkstarted(L);
  rc = MPI_Barrier(MPI_COMM_WORLD);
  if (rc != MPI_SUCCESS)
    return mpierror(L, "barrier", rc);
  return 0;
}

/* d2r.mpi.finalize(): ends MPI now (it also ends when the state closes);
 * it cannot be started again in this process. */
static int f_finalize(lua_State *L) {
  (void)L;
  if (started())
    MPI_Finalize();
  return 0;
}

static const luaL_Reg funcs[] = {
  {"init", f_init}, {"rank", f_rank}, {"send", f_send}, {"recv", f_recv},
  {"iprobe", f_iprobe}, {"bcast", f_bcast}, {"barrier", f_barrier},
  {"finalize", f_finalize},
  {NULL, NULL}
};

#define AVAILABLE 1

#else

static int f_missing(lua_State *L) {
  return luaL_error(L, "mpi: d2r was built without MPI (install "
                    "libopenmpi-dev and openmpi-bin, then rebuild)");
}

/* d2r.mpi.rank(): 0 and 1, as for a job of one process. */
static int f_rank(lua_State *L) {
  lua_pushinteger(L, 0);
  lua_pushinteger(L, 1);
  return 2;
}

static const luaL_Reg funcs[] = {
  {"init", f_missing}, {"rank", f_rank}, {"send", f_missing},
  {"recv", f_missing}, {"iprobe", f_missing}, {"bcast", f_missing},
  {"barrier", f_missing}, {"finalize", f_missing},
  {NULL, NULL}
};

#define AVAILABLE 0

#endif

/* With the module table at the top: registers d2r.mpi. */
int ld2r_open_mpi(lua_State *L) {
  luaL_newlib(L, funcs);
  lua_pushboolean(L, AVAILABLE);
  lua_setfield(L, -2, "available");
  lua_setfield(L, -2, "mpi");
  return 0;
}

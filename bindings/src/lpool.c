/*
 * d2r.proc: worker processes for the experiment runner.  spawn forks a
 * child that calls a Lua function with a `send` function writing framed
 * messages into a pipe; the parent reads the pipe without blocking,
 * waits on several children at once with poll, and learns how each one
 * ended (exit status or signal).  Also a few system facts the runner
 * needs: the number of cores, whether a stream is a terminal, clocks;
 * and d2r.mkdir, which makes a results directory without a shell.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "lua.h"
#include "lauxlib.h"

#include "ld2r.h"

#define LD2R_PROC "d2r.Process"
#define READ_CHUNK 65536
#define CHILD_FAILED 70   /* exit status when the child's call failed */

typedef struct {
  pid_t pid;
  pid_t owner;       /* the process that spawned it (only it may reap) */
  int fd;            /* read end of the child's pipe, -1 once closed */
  int reaped;
  int status;        /* from waitpid, once reaped */
} proc;

static proc *checkproc(lua_State *L, int arg) {
  return luaL_checkudata(L, arg, LD2R_PROC);
}

/* ---- the child's side ------------------------------------------------- */

/* Writes all of buf to fd; returns 0 or -1 (errno set). */
static int write_all(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t k = write(fd, buf, n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return -1;
    buf += k;
    n -= (size_t)k;
  }
  return 0;
}

/* send(message): writes a frame (4-byte little-endian length, then the
 * bytes) to the pipe to the parent. */
static int c_send(lua_State *L) {
  int fd = (int)lua_tointeger(L, lua_upvalueindex(1));
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char head[4];
  luaL_argcheck(L, n <= 0x7fffffff, 1, "message too long");
  head[0] = (unsigned char)(n & 0xff);
  head[1] = (unsigned char)((n >> 8) & 0xff);
  head[2] = (unsigned char)((n >> 16) & 0xff);
  head[3] = (unsigned char)((n >> 24) & 0xff);
  if (write_all(fd, (const char *)head, 4) < 0 ||
      write_all(fd, s, n) < 0)
    return luaL_error(L, "send: %s", strerror(errno));
  return 0;
}

/* Runs in the forked child: calls the function at 1 with send and the
 * arguments 2..nargs+1, then leaves the process.  Never returns. */
static void child_main(lua_State *L, int fd, int nargs) {
  int ok;
  signal(SIGINT, SIG_IGN);       /* the parent decides on Ctrl-C */
  signal(SIGPIPE, SIG_DFL);
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
  lua_pushinteger(L, fd);
  lua_pushcclosure(L, c_send, 1);
  lua_insert(L, 2);
  ok = lua_pcall(L, nargs + 1, 0, 0) == LUA_OK;
  fflush(NULL);
  _exit(ok ? 0 : CHILD_FAILED);
}

/* ---- the parent's side ------------------------------------------------ */

/* d2r.proc.spawn(fn, ...): forks a child running fn(send, ...); returns
 * a Process.  Output buffered in the parent is flushed first so that
 * the child does not write it again. */
static int f_spawn(lua_State *L) {
  int nargs = lua_gettop(L) - 1, fds[2];
  proc *p;
  pid_t pid;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  p = lua_newuserdatauv(L, sizeof(*p), 0);
  p->pid = -1;
  p->owner = getpid();
  p->fd = -1;
  p->reaped = 1;
  p->status = 0;
  luaL_setmetatable(L, LD2R_PROC);
  lua_insert(L, 1);              /* keep the Process below the call */
  if (pipe(fds) < 0)
    return luaL_error(L, "spawn: pipe: %s", strerror(errno));
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  fflush(NULL);
  pid = fork();
  if (pid < 0) {
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    return luaL_error(L, "spawn: fork: %s", strerror(e));
  }
  if (pid == 0) {
    /* Workers are the parallelism: several of them each running a BLAS
     * thread pool would oversubscribe the cores and spin. */
    d2r_blas_threads(1);
    close(fds[0]);
    lua_remove(L, 1);
    child_main(L, fds[1], nargs);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  p->pid = pid;
  p->fd = fds[0];
  p->reaped = 0;
  lua_settop(L, 1);
  return 1;
}

/* p:read(): the bytes waiting in the pipe ("" when none), or nil once
 * the child's end is closed and everything has been read. */
static int p_read(lua_State *L) {
  proc *p = checkproc(L, 1);
  luaL_Buffer b;
  if (p->fd < 0) {
    lua_pushnil(L);
    return 1;
  }
  luaL_buffinit(L, &b);
  for (;;) {
    char *dst = luaL_prepbuffsize(&b, READ_CHUNK);
    ssize_t k = read(p->fd, dst, READ_CHUNK);
    if (k > 0) {
      luaL_addsize(&b, (size_t)k);
      continue;
    }
    if (k < 0 && errno == EINTR)
      continue;
    if (k == 0 && luaL_bufflen(&b) == 0) {
      close(p->fd);
      p->fd = -1;
      lua_pushnil(L);
      return 1;
    }
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return luaL_error(L, "read: %s", strerror(errno));
    break;
  }
  luaL_pushresult(&b);
  return 1;
}

/* Pushes how the child ended: "exit", code or "signal", number, and a
 * description. */
static int pushstatus(lua_State *L, int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char *name = strsignal(sig);
    lua_pushliteral(L, "signal");
    lua_pushinteger(L, sig);
    lua_pushfstring(L, "killed by signal %d (%s)", sig,
                    name ? name : "unknown");
  } else {
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, code);
    lua_pushfstring(L, "exited with status %d", code);
  }
  return 3;
}

/* Reaps the child if it has ended (blocking when block is set); returns
 * whether it has.  In another process (a sibling worker that inherited
 * the handle) the child counts as ended and is left alone. */
static int reap(proc *p, int block) {
  if (p->owner != getpid())
    p->reaped = 1;
  while (!p->reaped) {
    int st;
    pid_t r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
    if (r == p->pid) {
      p->reaped = 1;
      p->status = st;
    } else if (r == 0) {
      return 0;
    } else if (errno != EINTR) {
      p->reaped = 1;             /* not our child any more */
      p->status = 0;
    }
  }
  return 1;
}

/* p:wait([block]): nil while the child runs (without block); otherwise
 * "exit", code, description or "signal", number, description. */
static int p_wait(lua_State *L) {
  proc *p = checkproc(L, 1);
  if (!reap(p, lua_toboolean(L, 2)))
    return 0;
  return pushstatus(L, p->status);
}

/* p:kill([signal]): sends a signal (default SIGKILL; "term" or "kill"
 * or a number) to a child that has not been reaped. */
static int p_kill(lua_State *L) {
  static const char *const names[] = {"kill", "term", "int", NULL};
  static const int sigs[] = {SIGKILL, SIGTERM, SIGINT};
  proc *p = checkproc(L, 1);
  int sig = SIGKILL;
  if (lua_type(L, 2) == LUA_TNUMBER)
    sig = (int)luaL_checkinteger(L, 2);
  else if (!lua_isnoneornil(L, 2))
    sig = sigs[luaL_checkoption(L, 2, NULL, names)];
  if (!p->reaped && p->owner == getpid())
    kill(p->pid, sig);
  return 0;
}

static int p_pid(lua_State *L) {
  lua_pushinteger(L, checkproc(L, 1)->pid);
  return 1;
}

/* Closes the pipe; a child still running is killed and reaped, so
 * neither zombies nor orphans are left behind. */
static int p_gc(lua_State *L) {
  proc *p = checkproc(L, 1);
  if (p->fd >= 0)
    close(p->fd);
  p->fd = -1;
  if (!p->reaped && p->owner == getpid()) {
    kill(p->pid, SIGKILL);
    reap(p, 1);
  }
  return 0;
}

static int p_tostring(lua_State *L) {
  proc *p = checkproc(L, 1);
  lua_pushfstring(L, "d2r.Process (%d%s)", (int)p->pid,
                  p->reaped ? ", ended" : "");
  return 1;
}

/* d2r.proc.poll(list, seconds): waits until one of the Processes in the
 * list has something to read (or has closed its pipe), at most seconds;
 * returns how many are ready (0 on time-out or interruption). */
static int f_poll(lua_State *L) {
  struct pollfd fds[256];
  lua_Integer i, n;
  nfds_t m = 0;
  double secs = luaL_checknumber(L, 2);
  int ms = secs <= 0 ? 0 : secs > 3600 ? 3600000 : (int)(secs * 1000);
  int r;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = luaL_len(L, 1);
  luaL_argcheck(L, n <= 256, 1, "at most 256 processes");
  for (i = 1; i <= n; i++) {
    proc *p;
    lua_geti(L, 1, i);
    p = luaL_testudata(L, -1, LD2R_PROC);
    if (p == NULL)
      return luaL_error(L, "poll: entry %d is not a process", (int)i);
    if (p->fd >= 0) {
      fds[m].fd = p->fd;
      fds[m].events = POLLIN;
      fds[m].revents = 0;
      m++;
    }
    lua_pop(L, 1);
  }
  r = poll(fds, m, ms);
  if (r < 0 && errno != EINTR)
    return luaL_error(L, "poll: %s", strerror(errno));
  lua_pushinteger(L, r < 0 ? 0 : r);
  return 1;
}

/* ---- system facts ----------------------------------------------------- */

static int f_ncpu(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

/* d2r.proc.isatty([fd]): whether fd (default 2, standard error) is a
 * terminal. */
static int f_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 2)));
  return 1;
}

/* d2r.proc.clock(): seconds from an arbitrary start, never going back. */
static int f_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 1;
}

/* d2r.proc.time(): seconds since the Unix epoch, with a fraction. */
static int f_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 1;
}

static int f_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int f_hostname(lua_State *L) {
  char buf[256];
  if (gethostname(buf, sizeof buf) != 0)
    return 0;
  buf[sizeof buf - 1] = '\0';
  lua_pushstring(L, buf);
  return 1;
}

/* ---- directories ---------------------------------------------------- */

/* Makes the directory path[0..n) unless it exists as a directory; 0 or an
 * errno value. */
static int make_one(char *path, size_t n) {
  struct stat sb;
  char saved = path[n];
  int err = 0;
  path[n] = '\0';
  /* Whatever mkdir says (EEXIST, or EACCES and EROFS on some systems), a
   * directory that is there is what was asked for. */
  if (mkdir(path, 0777) != 0) {
    err = errno;
    if (stat(path, &sb) == 0)
      err = S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
  }
  path[n] = saved;
  return err;
}

/* d2r.mkdir(path): makes a directory and its missing parents, as mkdir -p
 * does; an existing directory is fine.  A system call per component
 * instead of a shell and a mkdir process: sweeps call it at start-up. */
static int f_mkdir(lua_State *L) {
  size_t len;
  const char *arg = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len > 0, 1, "empty path");
  luaL_argcheck(L, strlen(arg) == len, 1, "the path holds a NUL byte");
  /* A writable copy in Lua's memory, so that an error frees it. */
  luaL_Buffer b;
  char *path = luaL_buffinitsize(L, &b, len + 1);
  memcpy(path, arg, len + 1);
  int err = 0;
  size_t i;
  for (i = 1; i <= len; i++) {
    /* Each prefix that ends a component, the whole path last. */
    if (i < len && !(path[i] == '/' && path[i - 1] != '/'))
      continue;
    if ((err = make_one(path, i)) != 0) break;
  }
  if (err == 0)
    return 0;
  /* The component that failed, and the path asked for when longer. */
  path[i] = '\0';
  if (i < len)
    return luaL_error(L, "mkdir: cannot create directory '%s' (making "
                      "'%s'): %s", path, arg, strerror(err));
  return luaL_error(L, "mkdir: cannot create directory '%s': %s", arg,
                    strerror(err));
}

static const luaL_Reg proc_methods[] = {
  {"read", p_read}, {"wait", p_wait}, {"kill", p_kill}, {"pid", p_pid},
  {"close", p_gc},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"spawn", f_spawn}, {"poll", f_poll}, {"ncpu", f_ncpu},
  {"isatty", f_isatty}, {"clock", f_clock}, {"time", f_time},
  {"getpid", f_getpid}, {"hostname", f_hostname},
  {NULL, NULL}
};

/* With the module table at the top: registers d2r.Process, d2r.proc and
 * d2r.mkdir. */
int ld2r_open_pool(lua_State *L) {
  luaL_newmetatable(L, LD2R_PROC);
  luaL_newlib(L, proc_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, p_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, p_gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, p_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lua_setfield(L, -2, "proc");
  lua_pushcfunction(L, f_mkdir);
  lua_setfield(L, -2, "mkdir");
  return 0;
}

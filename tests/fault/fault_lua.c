/*
 * Allocation-failure sweep over the Lua API: a host whose Lua state
 * allocates through fault_lua_alloc, so the n-th allocation fails
 * whether Lua, the binding or the engine makes it.  Two phases:
 *
 *   open    a fresh state per n; luaopen_d2r (the binding's C parts and
 *           its embedded Lua library) runs under lua_pcall; after a
 *           failure it must load in the same state without failures;
 *   script  one state for the whole phase, as a long session: for each
 *           n, a small training script (model, optimiser, PG surrogate,
 *           checkpoint, parameter file, CSV table) runs under lua_pcall,
 *           then, with failures off, a second script must still work.
 *
 * Every failure must come back as a Lua error with a message (or as the
 * nil, message of a function documented to fail that way), the engine
 * objects must all be freed once Lua has collected their handles, and
 * nothing may crash.  Usage: fault_lua [STRIDE [STRIDE_OPEN]]: test
 * every STRIDE-th failure point of the script phase (default 1) and
 * every STRIDE_OPEN-th of the open phase (default 1).  With
 * D2R_FAULT_VERBOSE set, prints each error message of the script phase.
 * Exits 1 on any finding.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "fault.h"

int luaopen_d2r(lua_State *L);

static int findings;
static char dir[64];

static void finding(const char *phase, long n, const char *what,
                    const char *msg) {
  if (++findings <= 20)
    fprintf(stderr, "fault_lua: %s, failure at allocation %ld: %s%s%s\n",
            phase, n, what, msg ? ": " : "", msg ? msg : "");
}

/* The training script; gets the directory for its files as `...`. */
static const char *const script =
  "local dir = ...\n"
  "local r = d2r.rng(1)\n"
  "local m = d2r.linear(4, 3, r)\n"
  "local o = d2r.adam(m, 0.05)\n"
  "local x = r:randn(8, 4)\n"
  "local y = d2r.tensor{0, 1, 2, 0, 1, 2, 0, 1}\n"
  "for _ = 1, 2 do\n"
  "  local logits = m(x)\n"
  "  local s = d2r.categorical_sample(r, logits, 4)\n"
  "  local loss = d2r.pg_surrogate(d2r.categorical_log_prob(logits, s),\n"
  "    d2r.onehot_reward(s, y, 3, 1), d2r.categorical_entropy(logits),\n"
  "    0.01, {baseline = 'mean'})\n"
  "  o:zero_grad()\n"
  "  loss:backward()\n"
  "  o:step()\n"
  "end\n"
  "assert(d2r.checkpoint_save(dir .. '/run.d2rc',\n"
  "  {model = m, optim = o, rng = r, epoch = 2, meta = 'fault'}))\n"
  "assert(d2r.checkpoint_load(dir .. '/run.d2rc',\n"
  "  {model = m, optim = o, rng = r}))\n"
  "assert(m:save(dir .. '/m.d2rp'))\n"
  "assert(m:load(dir .. '/m.d2rp'))\n"
  "local t = assert(d2r.read_csv(dir .. '/t.csv'))\n"
  "local s = d2r.standardizer(t.X)\n"
  "local z = s:apply(t.X)\n"
  "return m:flatten():sum():item() + z:sum():item()\n";

/* After a failure, the session must still compute. */
static const char *const check =
  "local t = d2r.tensor{{1, 2}, {3, 4}}\n"
  "local u = t:matmul(t):sum()\n"
  "return u:item() + #tostring(t)\n";

static double check_want;

/* Pushes code, compiled, and its argument (before any arming: only
 * the call runs protected); exits when the code does not compile. */
static void prepare(lua_State *L, const char *code, const char *arg) {
  if (luaL_loadbuffer(L, code, strlen(code), "=fault") != LUA_OK) {
    fprintf(stderr, "fault_lua: %s\n", lua_tostring(L, -1));
    exit(2);
  }
  lua_pushstring(L, arg);
}

/* Runs code under lua_pcall with the given argument; leaves the result
 * or the error message at the top.  Returns the status. */
static int run(lua_State *L, const char *code, const char *arg) {
  prepare(L, code, arg);
  return lua_pcall(L, 1, 1, 0);
}

static int open_d2r(lua_State *L) {
  luaL_requiref(L, "d2r", luaopen_d2r, 1);
  return 1;
}

/* A state with the standard libraries (made before any arming). */
static lua_State *new_state(void) {
  lua_State *L = lua_newstate(fault_lua_alloc, NULL);
  if (L == NULL) {
    fprintf(stderr, "fault_lua: cannot make a Lua state\n");
    exit(2);
  }
  luaL_openlibs(L);
  return L;
}

/* A Lua error's message, for the checks: a string or NULL. */
static const char *message(lua_State *L) {
  return lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
}

/* The session computes the right value again. */
static void check_session(lua_State *L, const char *phase, long n) {
  if (run(L, check, "") != LUA_OK) {
    finding(phase, n, "the session no longer works", message(L));
  } else if (lua_tonumber(L, -1) != check_want) {
    finding(phase, n, "the session computes a wrong value", NULL);
  }
  lua_pop(L, 1);
}

/* Collects everything, then compares the live engine blocks. */
static void check_leaks(lua_State *L, const char *phase, long n,
                        long live) {
  lua_gc(L, LUA_GCCOLLECT);
  lua_gc(L, LUA_GCCOLLECT);
  if (fault_live() != live) finding(phase, n, "engine blocks leaked", NULL);
}

static long phase_open(long stride) {
  long n, points = 0;
  for (n = 0;; n += stride) {
    lua_State *L = new_state();
    lua_pushcfunction(L, open_d2r);
    fault_arm(n, false);
    int status = lua_pcall(L, 0, 1, 0);
    fault_disarm();
    if (!fault_injected()) {
      if (status != LUA_OK) finding("open", n, "failed", message(L));
      lua_close(L);
      break;
    }
    points++;
    if (status != LUA_OK) {
      if (message(L) == NULL)
        finding("open", n, "failed without a message", NULL);
      lua_pop(L, 1);
      /* the same session loads d2r once memory is back */
      lua_pushcfunction(L, open_d2r);
      status = lua_pcall(L, 0, 1, 0);
      if (status != LUA_OK)
        finding("open", n, "cannot load d2r again", message(L));
    }
    if (status == LUA_OK) {
      lua_setglobal(L, "d2r");
      check_session(L, "open", n);
    }
    lua_close(L);
    if (fault_live() != 0)
      finding("open", n, "engine blocks leaked after lua_close", NULL);
  }
  printf("fault_lua: open: %ld failure points tested (of %ld, every "
         "%ld-th)\n", points, n, stride);
  return points;
}

static long phase_script(long stride, bool persistent) {
  const char *phase = persistent ? "script (persistent)" : "script";
  lua_State *L = new_state();
  lua_pushcfunction(L, open_d2r);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "fault_lua: cannot load d2r: %s\n", message(L));
    exit(1);
  }
  lua_setglobal(L, "d2r");
  if (run(L, check, "") != LUA_OK) {
    fprintf(stderr, "fault_lua: the check script fails: %s\n", message(L));
    exit(1);
  }
  check_want = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (run(L, script, dir) != LUA_OK) {
    fprintf(stderr, "fault_lua: the script fails: %s\n", message(L));
    exit(1);
  }
  double want = lua_tonumber(L, -1);
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT);
  long live = fault_live(), n, points = 0, errs = 0;
  for (n = 0;; n += stride) {
    prepare(L, script, dir);
    fault_arm(n, persistent);
    int status = lua_pcall(L, 1, 1, 0);
    fault_disarm();
    if (!fault_injected()) {
      if (status != LUA_OK) finding(phase, n, "failed", message(L));
      lua_pop(L, 1);
      break;
    }
    points++;
    if (status == LUA_OK) {
      if (lua_tonumber(L, -1) != want)
        finding(phase, n, "recovered with a wrong result", NULL);
    } else {
      errs++;
      if (message(L) == NULL)
        finding(phase, n, "failed without a message", NULL);
      else if (getenv("D2R_FAULT_VERBOSE"))
        printf("fault_lua: %s %ld: %s\n", phase, n, message(L));
    }
    lua_pop(L, 1);
    check_session(L, phase, n);
    check_leaks(L, phase, n, live);
  }
  lua_close(L);
  if (fault_live() != 0)
    finding(phase, n, "engine blocks leaked after lua_close", NULL);
  printf("fault_lua: %s: %ld failure points tested (of %ld, every "
         "%ld-th); %ld raised, %ld recovered\n", phase, points, n, stride,
         errs, points - errs);
  return points;
}

static void write_csv(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/t.csv", dir);
  FILE *f = fopen(path, "w");
  if (f == NULL) exit(2);
  fputs("a,b,label\n", f);
  for (int i = 0; i < 12; i++)
    fprintf(f, "%d.5,%d,%d\n", i, (i * 7) % 5, i % 3);
  fclose(f);
}

static void remove_files(void) {
  const char *names[] = {"t.csv", "run.d2rc", "m.d2rp"};
  char path[128];
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

int main(int argc, char **argv) {
  long stride = argc > 1 ? atol(argv[1]) : 1;
  long stride_open = argc > 2 ? atol(argv[2]) : 1;
  if (stride < 1 || stride_open < 1) {
    fprintf(stderr, "usage: %s [STRIDE [STRIDE_OPEN]]\n", argv[0]);
    return 2;
  }
  bool shm = access("/dev/shm", W_OK) == 0;
  strcpy(dir, shm ? "/dev/shm/d2r_fault_XXXXXX" : "/tmp/d2r_fault_XXXXXX");
  if (mkdtemp(dir) == NULL) return 2;
  write_csv();
  long total = phase_script(stride, false) + phase_script(stride, true) +
               phase_open(stride_open);
  if (fault_leak_check() != 0)
    finding("final", -1, "LeakSanitizer found leaks", NULL);
  remove_files();
  printf("fault_lua: %ld failure points injected, %d findings\n", total,
         findings);
  return findings ? 1 : 0;
}

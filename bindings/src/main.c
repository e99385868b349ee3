/*
 * The d2r executable: a Lua 5.4 interpreter with the d2r module
 * preloaded.  It runs a script (or standard input), runs -e code, runs
 * the subcommands of d2r.commands (`d2r summary STORE`, ...), and on
 * a terminal opens an interactive session with GNU readline: history in
 * ~/.d2r_history, Tab completion, values of expressions shown through
 * d2r.repr (a trailing `;` suppresses them), multi-line input, `help`,
 * `%time <statement>`, and Ctrl-C interrupting a running computation
 * without ending the session.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <readline/readline.h>
#include <readline/history.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "ld2r.h"

#define PROGNAME "d2r"
#define HISTORY_FILE ".d2r_history"
#define HISTORY_MAX 1000

/* How a chunk read at the prompt is run: its values not shown (a
 * trailing `;`), or timed (`%time`). */
#define QUIET 1
#define TIMED 2

/* The state a SIGINT handler interrupts (signal handlers get no other
 * way to reach it), whether Ctrl-C was pressed at the prompt, whether a
 * session is open (Ctrl-C then never kills the process), and the state
 * that readline's completion callback looks names up in. */
static lua_State *running;
static volatile sig_atomic_t prompt_interrupted;
static int in_session;
static lua_State *completing;

/* ---- messages -------------------------------------------------------- */

static void print_usage(void) {
  fprintf(stderr,
    "usage: " PROGNAME " [options] [script [args]]\n"
    "  -e code   run code\n"
    "  -l name   require library name into global name\n"
    "  -i        interactive session after the script\n"
    "  -v        show the version\n"
    "  -h        show this help\n"
    "  --        stop handling options\n"
    "  -         run standard input\n"
    "Without a script, a terminal gets an interactive session and other\n"
    "input is run as a script.\n"
    "Subcommands on an experiment's store (d2r COMMAND --help):\n"
    "  summary STORE   tables of final metrics (mean, std, sem, 95%% CI,\n"
    "                  IQM) by configuration; --plot PREFIX draws them\n"
    "  status STORE    runs by status, and the errors of failed runs\n"
    "  export STORE DIR    runs.csv and metrics.csv\n"
    "  merge DST SRC...    one store from the stores of shards\n");
}

/* ---- BLAS kernels ------------------------------------------------------ */

/*
 * OpenBLAS picks its kernels when it loads, from the processor it
 * detects, and falls back to generic ones (several times slower) on
 * processors newer than it knows.  When that happened, the user chose
 * nothing (OPENBLAS_CORETYPE unset), and the processor has AVX-512 or
 * AVX2 with FMA, the program runs itself again with the matching kernels:
 * the choice has to be made before OpenBLAS loads.  The kernels compute
 * the same results up to rounding (bench/d2r_bench --kernels compares
 * them).  D2R_BLAS_CHOSEN records the choice and stops a second round.
 */
static const char *const generic_cores[] = {
  "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
  "Unknown", NULL
};

static void choose_blas_kernels(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") != NULL || getenv("D2R_BLAS_CHOSEN"))
    return;
  const char *core = d2r_blas_corename();
  int generic = 0;
  for (int i = 0; core != NULL && generic_cores[i] != NULL; i++)
    generic = generic || strcasecmp(core, generic_cores[i]) == 0;
  if (!generic)
    return;
  const char *pick = NULL;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
      && __builtin_cpu_supports("avx512bw")
      && __builtin_cpu_supports("avx512vl"))
    pick = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    pick = "Haswell";
#endif
  if (pick == NULL)
    return;
  setenv("OPENBLAS_CORETYPE", pick, 1);
  setenv("D2R_BLAS_CHOSEN", pick, 1);
  execv("/proc/self/exe", argv);
  /* exec failed: go on with the generic kernels. */
}

static void print_version(void) {
  const char *chosen = getenv("D2R_BLAS_CHOSEN");
  printf(PROGNAME " %s (%s)\n", D2R_VERSION, LUA_RELEASE);
  printf("BLAS: OpenBLAS, %d thread%s, kernels %s (%s)\n",
         d2r_blas_threads(0), d2r_blas_threads(0) == 1 ? "" : "s",
         d2r_blas_corename(),
         chosen ? "chosen by d2r over a generic fallback"
         : getenv("OPENBLAS_CORETYPE") ? "set by OPENBLAS_CORETYPE"
         : "chosen by OpenBLAS");
  fflush(stdout);
}

/* Prints the message at the top (if any) on stderr and pops it. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", PROGNAME, msg ? msg : "(no message)");
    fflush(stderr);
    lua_pop(L, 1);
  }
  return status;
}

/* Message handler: turns the error object into a string with a stack
 * traceback. */
static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* ---- interruption ---------------------------------------------------- */

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted");
}

/* SIGINT while Lua runs: stop at the next hook event.  Setting a hook is
 * safe in a signal handler.  Running a script, a second Ctrl-C gets the
 * default action; in a session every Ctrl-C sets the hook again, so the
 * session outlives an impatient user (Ctrl-\ still quits). */
static void on_sigint(int sig) {
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  if (!in_session)
    signal(sig, SIG_DFL);
  lua_sethook(running, stop_hook, mask, 1);
}

static void on_prompt_sigint(int sig) {
  (void)sig;
  prompt_interrupted = 1;
}

/* Installs handler for SIGINT without SA_RESTART, so a read at the
 * prompt returns EINTR. */
static void set_sigint(void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* Calls the function below its narg arguments in protected mode, with
 * tracebacks and Ctrl-C interruption. */
static int docall(lua_State *L, int narg, int nres) {
  int status, base = lua_gettop(L) - narg;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  running = L;
  set_sigint(on_sigint);
  status = lua_pcall(L, narg, nres, base);
  set_sigint(in_session ? on_prompt_sigint : SIG_DFL);
  lua_sethook(L, NULL, 0, 0);
  lua_remove(L, base);
  return status;
}

/* ---- running code ---------------------------------------------------- */

static int run_string(lua_State *L, const char *code, const char *name) {
  int status = luaL_loadbuffer(L, code, strlen(code), name);
  if (status == LUA_OK)
    status = docall(L, 0, 0);
  return report(L, status);
}

/* require name, and set global name to the result. */
static int run_require(lua_State *L, const char *name) {
  int status;
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  status = docall(L, 1, 1);
  if (status == LUA_OK)
    lua_setglobal(L, name);
  return report(L, status);
}

/* Makes require look in the script's directory first. */
static void add_script_dir(lua_State *L, const char *script) {
  const char *slash = strrchr(script, '/');
  if (slash == NULL)
    return;
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    const char *dir, *path;
    dir = lua_pushlstring(L, script, (size_t)(slash - script + 1));
    lua_getfield(L, -2, "path");
    path = lua_tostring(L, -1);
    lua_pushfstring(L, "%s?.lua;%s?/init.lua;%s", dir, dir,
                    path ? path : "");
    lua_setfield(L, -4, "path");
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

/* Runs the script argv[i] (NULL: standard input) with the arguments
 * after it as `...`. */
static int run_script(lua_State *L, char **argv, int i, int argc) {
  const char *name = argv[i];
  int k, status;
  if (name != NULL && strcmp(name, "-") == 0)
    name = NULL;
  if (name != NULL)
    add_script_dir(L, name);
  status = luaL_loadfile(L, name);
  if (status != LUA_OK)
    return report(L, status);
  luaL_checkstack(L, argc - i, "too many arguments to the script");
  for (k = i + 1; k < argc; k++)
    lua_pushstring(L, argv[k]);
  return report(L, docall(L, argc - i - 1 > 0 ? argc - i - 1 : 0, 0));
}

/* Global `arg`: the script at 0, its arguments at 1.., and what came
 * before it at negative indices. */
static void make_arg(lua_State *L, char **argv, int argc, int script) {
  int i;
  lua_createtable(L, argc - script, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* ---- the interactive session ----------------------------------------- */

/* Reads a character for readline, giving up the line on Ctrl-C. */
static int getc_interruptible(FILE *f) {
  for (;;) {
    unsigned char c;
    ssize_t n;
    if (prompt_interrupted)
      return '\n';
    n = read(fileno(f), &c, 1);
    if (n == 1)
      return c;
    if (n == 0 || errno != EINTR)
      return EOF;
  }
}

/* A line from the terminal (malloc'd), or NULL at end of input.  In a
 * session, Ctrl-C outside Lua code only sets prompt_interrupted. */
static char *read_line(const char *prompt) {
  set_sigint(on_prompt_sigint);
  return readline(prompt);
}

/* True when the load error at the top means "chunk not finished". */
static int incomplete(lua_State *L) {
  size_t n;
  const char *msg = lua_tolstring(L, -1, &n);
  const char *eof = "<eof>";
  size_t k = strlen(eof);
  return msg != NULL && n >= k && strcmp(msg + n - k, eof) == 0;
}

/* Compiles the source at the top as an expression to print. */
static int load_expression(lua_State *L) {
  const char *src = lua_tostring(L, -1);
  const char *code = lua_pushfstring(L, "return %s;", src);
  int status = luaL_loadbuffer(L, code, strlen(code), "=stdin");
  lua_remove(L, -2);
  if (status != LUA_OK)
    lua_pop(L, 1);
  return status;
}

/* The history file's name, or NULL when there is no home. */
static const char *hist_file;

/* Adds a line to the history and to the history file (at once, so that
 * a session that dies keeps it). */
static void remember(const char *src) {
  HIST_ENTRY *last = history_length > 0 ? history_get(history_length)
                                        : NULL;
  if (*src == '\0' || (last != NULL && strcmp(last->line, src) == 0))
    return;
  add_history(src);
  if (hist_file != NULL)
    append_history(1, hist_file);
}

/* Reads continuation lines onto the source at the top until it compiles
 * or is wrong for another reason than its end.  Pushes the function or
 * the error message; returns the status, or -2 (with the message pushed)
 * when Ctrl-C abandons the chunk. */
static int load_statement(lua_State *L) {
  for (;;) {
    size_t n;
    const char *src = lua_tolstring(L, -1, &n);
    char *line;
    int status = luaL_loadbuffer(L, src, n, "=stdin");
    if (status != LUA_ERRSYNTAX || !incomplete(L))
      return status;
    line = read_line(">> ");
    if (line == NULL)
      return status;            /* report the unfinished chunk */
    if (prompt_interrupted) {
      free(line);
      return -2;
    }
    lua_pop(L, 1);
    lua_pushfstring(L, "\n%s", line);
    free(line);
    lua_concat(L, 2);
  }
}

/* Takes off a leading "%time" from the line (setting TIMED in *mode)
 * and a trailing ';' (setting QUIET); returns where the code starts. */
static const char *strip_line(char *line, int *mode) {
  size_t n = strlen(line);
  const char *code = line + strspn(line, " \t");
  *mode = 0;
  while (n > 0 && strchr(" \t", line[n - 1]) != NULL)
    line[--n] = '\0';
  if (strncmp(code, "%time", 5) == 0 && strchr(" \t", code[5]) != NULL) {
    *mode |= TIMED;
    code += 5 + strspn(code + 5, " \t");
  }
  if (n > 0 && line[n - 1] == ';')
    *mode |= QUIET;
  return code;
}

/* Reads and compiles one chunk.  Pushes the function (LUA_OK) or an
 * error message; returns the status, -1 at end of input, or -2 when
 * nothing is to be run (an empty line, or Ctrl-C).  Sets *mode. */
static int read_chunk(lua_State *L, int *mode) {
  int status;
  const char *code;
  char *line;
  prompt_interrupted = 0;
  line = read_line("> ");
  if (line == NULL)
    return -1;
  code = strip_line(line, mode);
  if (prompt_interrupted || *code == '\0') {
    free(line);
    return -2;
  }
  lua_pushstring(L, code);      /* the source */
  if (*mode & QUIET)            /* as an expression, without the ';' */
    lua_pushlstring(L, code, strlen(code) - 1);
  else
    lua_pushvalue(L, -1);
  free(line);
  status = load_expression(L);
  if (status == LUA_OK) {
    lua_replace(L, -2);         /* source, function */
  } else {
    lua_pop(L, 1);
    status = load_statement(L); /* source (lines joined), result */
  }
  if (status != -2) {
    lua_pushstring(L, *mode & TIMED ? "%time " : "");
    lua_pushvalue(L, -3);
    lua_concat(L, 2);
    remember(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_remove(L, -2);
  if (status == -2)
    lua_pop(L, 1);
  return status;
}

/* Pushes the text d2r.repr gives for the value at idx (run like any
 * chunk, so Ctrl-C stops a slow one); when there is no d2r.repr or it
 * fails, the value's type and address. */
static void push_repr(lua_State *L, int idx) {
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "d2r") == LUA_TTABLE &&
      lua_getfield(L, -1, "repr") == LUA_TFUNCTION) {
    lua_pushvalue(L, idx);
    if (docall(L, 1, 1) == LUA_OK && lua_isstring(L, -1)) {
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return;
    }
  }
  lua_settop(L, top);
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
    const char *kind = luaL_typename(L, idx);
    lua_pop(L, 1);              /* it may raise: do without it */
    if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING)
      kind = lua_tostring(L, -1);
    lua_pushfstring(L, "%s: %p", kind, lua_topointer(L, idx));
    lua_replace(L, top + 1);
    lua_settop(L, top + 1);
  } else {
    luaL_tolstring(L, idx, NULL);
  }
}

/* Shows the values on the stack (all of it) through d2r.repr: on one
 * line separated by tabs, or one per line if any spans several. */
static void print_results(lua_State *L) {
  int i, n = lua_gettop(L), multi = 0;
  luaL_checkstack(L, n + LUA_MINSTACK, "too many results to print");
  for (i = 1; i <= n; i++) {
    push_repr(L, i);
    multi = multi || strchr(lua_tostring(L, -1), '\n') != NULL;
  }
  for (i = 1; i <= n; i++) {
    fputs(lua_tostring(L, n + i), stdout);
    fputc(i < n && !multi ? '\t' : '\n', stdout);
  }
  fflush(stdout);
}

static double seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs the chunk at the top and shows its values and time, as mode
 * asks. */
static void run_chunk(lua_State *L, int mode) {
  double wall = seconds(CLOCK_MONOTONIC);
  double cpu = seconds(CLOCK_PROCESS_CPUTIME_ID);
  int status = docall(L, 0, LUA_MULTRET);
  if (mode & TIMED) {
    wall = seconds(CLOCK_MONOTONIC) - wall;
    cpu = seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu;
    printf("time: %.6g s wall, %.6g s cpu\n", wall, cpu);
  }
  if (status != LUA_OK)
    report(L, status);
  else if (!(mode & QUIET))
    print_results(L);
}

/* ---- completion of names ---------------------------------------------- */

#define COMPLETIONS "d2r.completions"

/* Adds to the sequence res the string keys of the table t that start
 * with part, each written after prefix. */
static void add_keys(lua_State *L, int t, int res, const char *prefix,
                     const char *part) {
  size_t n = strlen(part);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING &&
        strncmp(lua_tostring(L, -1), part, n) == 0) {
      lua_pushfstring(L, "%s%s", prefix, lua_tostring(L, -1));
      lua_rawseti(L, res, (lua_Integer)lua_rawlen(L, res) + 1);
    }
  }
}

/* Adds the keys of the value v to the sequence at the top: its own if
 * it is a table, and those of the table its metatable's __index is (or
 * holds as first upvalue, as a tensor's does). */
static void add_fields(lua_State *L, int v, const char *prefix,
                       const char *part) {
  int res = lua_gettop(L);
  if (lua_istable(L, v))
    add_keys(L, v, res, prefix, part);
  if (luaL_getmetafield(L, v, "__index") == LUA_TNIL)
    return;
  if (lua_iscfunction(L, -1))
    lua_getupvalue(L, -1, 1);
  if (lua_istable(L, -1))
    add_keys(L, lua_gettop(L), res, prefix, part);
  lua_settop(L, res);
}

/* Stores in the registry the completions of the text at index 1: global
 * names, or fields and methods after "a.b." or "a:". */
static int collect_completions(lua_State *L) {
  const char *text = luaL_checkstring(L, 1);
  const char *end = text + strcspn(text, ".:"), *p = text, *prefix;
  lua_pushglobaltable(L);
  while (*end != '\0') {
    lua_pushlstring(L, p, (size_t)(end - p));
    lua_gettable(L, -2);
    lua_remove(L, -2);
    p = end + 1;
    end = p + strcspn(p, ".:");
  }
  prefix = lua_pushlstring(L, text, (size_t)(p - text));
  lua_newtable(L);
  add_fields(L, 2, prefix, p);
  lua_setfield(L, LUA_REGISTRYINDEX, COMPLETIONS);
  return 0;
}

/* readline's generator: the next completion of text (malloc'd). */
static char *next_completion(const char *text, int state) {
  lua_State *L = completing;
  const char *s;
  char *r = NULL;
  if (state == 0) {
    lua_pushcfunction(L, collect_completions);
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_setfield(L, LUA_REGISTRYINDEX, COMPLETIONS);
    }
  }
  if (lua_getfield(L, LUA_REGISTRYINDEX, COMPLETIONS) == LUA_TTABLE) {
    lua_rawgeti(L, -1, (lua_Integer)state + 1);
    s = lua_tostring(L, -1);
    if (s != NULL && (r = malloc(strlen(s) + 1)) != NULL)
      strcpy(r, s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return r;
}

static char **complete(const char *text, int start, int end) {
  (void)start;
  (void)end;
  rl_attempted_completion_over = 1;
  rl_completion_append_character = '\0';
  return rl_completion_matches(text, next_completion);
}

/* Writes the history file's name into buf; false without a home. */
static int history_path(char *buf, size_t size) {
  const char *home = getenv("HOME");
  if (home == NULL || *home == '\0')
    return 0;
  return snprintf(buf, size, "%s/%s", home, HISTORY_FILE) < (int)size;
}

/* Makes the global `help` d2r.help, unless the name is taken. */
static void set_help(lua_State *L) {
  if (lua_getglobal(L, "help") == LUA_TNIL &&
      lua_getglobal(L, "d2r") == LUA_TTABLE &&
      lua_getfield(L, -1, "help") == LUA_TFUNCTION)
    lua_setglobal(L, "help");
  lua_settop(L, 0);
}

static void open_history(char *path, size_t size) {
  FILE *f;
  using_history();
  stifle_history(HISTORY_MAX);
  if (!history_path(path, size))
    return;
  read_history(path);
  f = fopen(path, "a");         /* append_history needs the file */
  if (f != NULL) {
    fclose(f);
    hist_file = path;
  }
}

static void repl(lua_State *L) {
  char hist[4096];
  int status, mode;
  rl_readline_name = PROGNAME;
  rl_catch_signals = 0;
  rl_getc_function = getc_interruptible;
  rl_basic_word_break_characters = " \t\n\"'`@$><=;|&{(,[+-*/%^~#";
  rl_attempted_completion_function = complete;
  completing = L;
  in_session = 1;
  set_sigint(on_prompt_sigint);
  open_history(hist, sizeof hist);
  lua_settop(L, 0);
  set_help(L);
  while ((status = read_chunk(L, &mode)) != -1) {
    if (status == LUA_OK)
      run_chunk(L, mode);
    else if (status != -2)
      report(L, status);
    lua_settop(L, 0);
  }
  fputc('\n', stdout);
  if (hist_file != NULL)
    history_truncate_file(hist_file, HISTORY_MAX);
  in_session = 0;
  set_sigint(SIG_DFL);
}

/* ---- main ------------------------------------------------------------ */

typedef struct {
  int interactive, version, script, error;
} options;

/* Scans argv; -e and -l are run later, in order.  Sets o->script to the
 * index of the script (argc if none). */
static void scan(int argc, char **argv, options *o) {
  int i;
  memset(o, 0, sizeof *o);
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0)
      break;
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "-i") == 0)
      o->interactive = 1;
    else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0)
      o->version = 1;
    else if ((strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0) &&
             i + 1 < argc)
      i++;
    else
      o->error = 1;
  }
  o->script = i;
}

/* Runs the -e and -l options in order; returns 0 on the first error. */
static int run_options(lua_State *L, char **argv, int script, int *ran) {
  int i;
  for (i = 1; i < script; i++) {
    int e = strcmp(argv[i], "-e") == 0;
    if (!e && strcmp(argv[i], "-l") != 0)
      continue;
    *ran = 1;
    i++;
    if (e && run_string(L, argv[i], "=(command line)") != LUA_OK)
      return 0;
    if (!e && run_require(L, argv[i]) != LUA_OK)
      return 0;
  }
  return 1;
}

/* d2r COMMAND ARGS...: when COMMAND is no file but a subcommand of the
 * library (a function in d2r.commands, such as summary), calls it with
 * the list of the other arguments; its result (true on success) goes
 * to *ok.  Returns whether argv[1] was a subcommand. */
static int run_command(lua_State *L, int argc, char **argv, int *ok) {
  int k, status, top = lua_gettop(L);
  if (argc < 2 || access(argv[1], F_OK) == 0)
    return 0;
  lua_getglobal(L, "d2r");
  if (lua_getfield(L, -1, "commands") != LUA_TTABLE ||
      lua_getfield(L, -1, argv[1]) != LUA_TFUNCTION) {
    lua_settop(L, top);
    return 0;
  }
  lua_createtable(L, argc - 2, 0);
  for (k = 2; k < argc; k++) {
    lua_pushstring(L, argv[k]);
    lua_rawseti(L, -2, k - 1);
  }
  status = docall(L, 1, 1);
  *ok = status == LUA_OK && lua_toboolean(L, -1);
  report(L, status);
  lua_settop(L, top);
  return 1;
}

/* Everything runs here, in protected mode; returns true on success. */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int ran = 0, ok = 1;
  options o;
  scan(argc, argv, &o);
  if (o.error) {
    print_usage();
    return 0;
  }
  if (o.version)
    print_version();
  luaL_openlibs(L);
  luaL_requiref(L, "d2r", luaopen_d2r, 1);
  lua_pop(L, 1);
  make_arg(L, argv, argc, o.script < argc ? o.script : 0);
  if (o.script == 1 && run_command(L, argc, argv, &ok)) {
    lua_pushboolean(L, ok);
    return 1;
  }
  ok = run_options(L, argv, o.script, &ran);
  if (ok && o.script < argc) {
    ok = run_script(L, argv, o.script, argc) == LUA_OK;
    ran = 1;
  }
  if (ok && (o.interactive || (!ran && !o.version))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      puts("help() for an overview, help(x) for x; Ctrl-D quits");
      repl(L);
    } else if (!ran) {
      char *none[] = {NULL};
      ok = run_script(L, none, 0, 1) == LUA_OK;
    }
  }
  lua_pushboolean(L, ok);
  return 1;
}

int main(int argc, char **argv) {
  choose_blas_kernels(argv);
  lua_State *L = luaL_newstate();
  int status, ok;
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create a Lua state\n", PROGNAME);
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return status == LUA_OK && ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

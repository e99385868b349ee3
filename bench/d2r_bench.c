/*
 * d2r_bench: times d2r's workloads against the same work written for
 * PyTorch (bench/torch/bench.py), side by side in one invocation.
 *
 * Every measurement runs in a child process of its own (this program
 * re-executed with --child, or python3 on the PyTorch script), so the
 * peak resident memory that wait4() reports is the workload's own, and
 * the thread count (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, and
 * torch.set_num_threads) and kernel set (OPENBLAS_CORETYPE, inherited)
 * are fixed before BLAS loads.  A child warms up, then times `runs` runs
 * of `inner` steps each and reports the median time per step.  Workloads
 * 6 and 7, whose step is a whole sweep in a process of its own
 * (seconds), have a fixed schedule instead: BENCH_SWEEP_WARMUP warm-up
 * sweeps, then at most BENCH_SWEEP_RUNS timed runs of one sweep, on both
 * sides.
 *
 * Modes: the default prints the table; --kernels compares OpenBLAS
 * kernel sets (rates and results); --memory follows the heap across many
 * steps; --steps runs a fixed number of steps untimed (for valgrind).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "d2r/tensor.h"

#ifndef D2R_BENCH_SOURCE_DIR
#define D2R_BENCH_SOURCE_DIR "."
#endif

char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_num_threads(void);

/* ---- options ------------------------------------------------------------ */

typedef struct opts {
  int workloads[16], nwork;
  int threads[8], nthreads;
  int runs;
  double run_time, warmup;
  long max_steps;        /* cap on the steps of one timed child */
  long warmup_steps;     /* fixed warm-up steps, or -1 to calibrate */
  long inner;            /* fixed steps per run, or -1 to calibrate */
  bool torch;
  const char *python, *script, *data;
  const char *kernels;   /* --kernels: comma list of core types, or NULL */
  int memory;            /* --memory W, or -1 */
  long steps;            /* --steps for --memory and fixed-step children */
  bool steps_set;        /* --steps was given */
  int child;             /* --child W, or -1 */
  const char *check;     /* --check FILE: the child writes kernel results */
  bool verbose;
} opts;

static void usage(FILE *f) {
  fprintf(f,
    "usage: d2r_bench [options]\n"
    "  -w, --workloads LIST  workloads to run (default 0,1,...,8)\n"
    "  -t, --threads LIST    thread counts (default 1 and all cores)\n"
    "  --runs N              timed runs per measurement (default 11)\n"
    "  --run-time S          seconds per timed run (default 0.2)\n"
    "  --warmup S            warm-up seconds (default 0.5)\n"
    "  --max-steps N         steps of one measurement at most (default\n"
    "                        5000: models stay near their start, as in\n"
    "                        the paper's runs; PyTorch gets the same\n"
    "                        warm-up and run lengths in steps as d2r)\n"
    "  --no-torch            time d2r only\n"
    "  --python PATH         interpreter with torch (default\n"
    "                        $D2R_BENCH_PYTHON or /usr/bin/python3)\n"
    "  --torch-script PATH   default <source>/bench/torch/bench.py\n"
    "  --data DIR            default <source>/data\n"
    "  --kernels [LIST]      compare OpenBLAS kernel sets (default\n"
    "                        Prescott,Haswell,SkylakeX,Cooperlake)\n"
    "  --memory W            heap and RSS over --steps steps of W\n"
    "  --steps N             steps for --memory (default 10000); with\n"
    "                        --child, run N steps untimed and exit\n"
    "  -v, --verbose         print every child's raw result line\n"
    "Workloads: 0 baseline (the process alone: its peak memory), 1\n"
    "tabular epoch (d2r: class counts, as\n"
    "scripts/uci_classification.lua; PyTorch: G categorical samples a\n"
    "row), 2 toy Gaussian, 3 dynamics, 4 large dynamics, 5\n"
    "implicit-differentiation outer step (toy, U = u I), 6 sweep of 100\n"
    "toy runs, end to end in a fresh process (d2r: bench/toy_sweep.lua,\n"
    "one sweep worker per thread, the runner's default chunk \"auto\";\n"
    "PyTorch: bench/torch/toy_sweep.py), 7 the same sweep with a d2r\n"
    "worker process per run, --chunk 1 (PyTorch: the same script), 8\n"
    "the tabular epoch with d2r drawing G samples a row too (PyTorch:\n"
    "the same as 1); 6 and 7 run 1 warm-up sweep and min(--runs, 3)\n"
    "timed ones.  -v also shows each child's note (5: u, its\n"
    "hypergradient, the CG residual).\n");
}

static int parse_list(const char *s, int *out, int cap) {
  int n = 0;
  while (*s != '\0' && n < cap) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s) return -1;
    out[n++] = (int)v;
    s = *end == ',' ? end + 1 : end;
    if (*end != ',' && *end != '\0') return -1;
  }
  return n;
}

static const char *need(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "d2r_bench: %s needs a value\n", argv[*i]);
    exit(2);
  }
  return argv[++*i];
}

static void parse_opts(int argc, char **argv, opts *o) {
  static const int defw[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  memcpy(o->workloads, defw, sizeof defw);
  o->nwork = 9;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  o->threads[0] = 1;
  o->nthreads = ncpu > 1 ? 2 : 1;
  o->threads[1] = (int)ncpu;
  o->runs = 11;
  o->run_time = 0.2;
  o->warmup = 0.5;
  o->max_steps = 5000;
  o->warmup_steps = -1;
  o->inner = -1;
  o->torch = true;
  o->python = getenv("D2R_BENCH_PYTHON");
  if (o->python == NULL) o->python = "/usr/bin/python3";
  o->script = D2R_BENCH_SOURCE_DIR "/bench/torch/bench.py";
  o->data = D2R_BENCH_SOURCE_DIR "/data";
  o->memory = -1;
  o->child = -1;
  o->steps = 10000;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-w") || !strcmp(a, "--workloads")) {
      o->nwork = parse_list(need(argc, argv, &i), o->workloads, 16);
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
      o->nthreads = parse_list(need(argc, argv, &i), o->threads, 8);
    } else if (!strcmp(a, "--runs")) {
      o->runs = atoi(need(argc, argv, &i));
    } else if (!strcmp(a, "--run-time")) {
      o->run_time = atof(need(argc, argv, &i));
    } else if (!strcmp(a, "--warmup")) {
      o->warmup = atof(need(argc, argv, &i));
    } else if (!strcmp(a, "--max-steps")) {
      o->max_steps = atol(need(argc, argv, &i));
    } else if (!strcmp(a, "--warmup-steps")) {
      o->warmup_steps = atol(need(argc, argv, &i));
    } else if (!strcmp(a, "--inner")) {
      o->inner = atol(need(argc, argv, &i));
    } else if (!strcmp(a, "--no-torch")) {
      o->torch = false;
    } else if (!strcmp(a, "--python")) {
      o->python = need(argc, argv, &i);
    } else if (!strcmp(a, "--torch-script")) {
      o->script = need(argc, argv, &i);
    } else if (!strcmp(a, "--data")) {
      o->data = need(argc, argv, &i);
    } else if (!strcmp(a, "--kernels")) {
      o->kernels = "Prescott,Haswell,SkylakeX,Cooperlake";
      if (i + 1 < argc && argv[i + 1][0] != '-') o->kernels = argv[++i];
    } else if (!strcmp(a, "--memory")) {
      o->memory = atoi(need(argc, argv, &i));
    } else if (!strcmp(a, "--steps")) {
      o->steps = atol(need(argc, argv, &i));
      o->steps_set = true;
    } else if (!strcmp(a, "--child")) {
      o->child = atoi(need(argc, argv, &i));
    } else if (!strcmp(a, "--check")) {
      o->check = need(argc, argv, &i);
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      o->verbose = true;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      exit(0);
    } else {
      fprintf(stderr, "d2r_bench: unknown option %s\n", a);
      usage(stderr);
      exit(2);
    }
  }
  const char *bad = NULL;
  if (o->nwork < 1) bad = "-w needs a list of workload numbers";
  for (int k = 0; bad == NULL && k < o->nwork; k++)
    if (!bench_known(o->workloads[k])) bad = "-w: no such workload";
  if (o->memory != -1 && !bench_known(o->memory))
    bad = "--memory: no such workload";
  if (o->child != -1 && !bench_known(o->child))
    bad = "--child: no such workload";
  if (o->nthreads < 1) bad = "-t needs a list of thread counts";
  for (int k = 0; bad == NULL && k < o->nthreads; k++)
    if (o->threads[k] < 1 || o->threads[k] > 256)
      bad = "-t: a thread count must be in 1..256";
  if (bad == NULL && o->runs < 1) bad = "--runs must be >= 1";
  if (bad == NULL && o->steps < 1) bad = "--steps must be >= 1";
  if (bad == NULL && o->max_steps < 4 * o->runs)
    bad = "--max-steps must be at least 4 times --runs";
  if (bad == NULL && !(o->run_time > 0)) bad = "--run-time must be > 0";
  if (bad == NULL && !(o->warmup >= 0)) bad = "--warmup must be >= 0";
  if (bad != NULL) {
    fprintf(stderr, "d2r_bench: %s\n", bad);
    exit(2);
  }
}

/* ---- time and memory ----------------------------------------------------- */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, res = 0;
  if (f != NULL) {
    if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Bytes the heap hands out now (small blocks plus mmapped ones). */
static long long heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 mi = mallinfo2();
  return (long long)(mi.uordblks + mi.hblkhd);
#else
  return -1;
#endif
}

/* ---- the child: one workload, measured ----------------------------------- */

static int child_fail(int w, const char *what) {
  printf("error w=%d msg=%s: %s\n", w, what, d2r_error());
  return 1;
}

/* Writes the kernel-dependent results of bench_kernel_check to --check. */
static int child_check(const opts *o) {
  int64_t cap = 1 << 20;
  double *buf = malloc((size_t)cap * sizeof *buf);
  int64_t n = buf != NULL ? bench_kernel_check(buf, cap) : -1;
  FILE *f = n > 0 ? fopen(o->check, "wb") : NULL;
  bool ok = f != NULL && fwrite(buf, sizeof *buf, (size_t)n, f) == (size_t)n;
  if (f != NULL && fclose(f) != 0) ok = false;
  free(buf);
  if (!ok) return child_fail(-1, "kernel check");
  printf("result w=-1 core=%s values=%lld\n", openblas_get_corename(),
         (long long)n);
  return 0;
}

/* Runs --steps steps, printing the heap, the RSS and the engine's own
 * accounting at the first reference step (100, or the last if sooner)
 * and at every tenth of the run after it, with the time per step since
 * the previous line. */
static int child_memory(const opts *o, bench_work *b, int w) {
  long long h0 = 0;
  long r0 = 0, k0 = 0;
  long every = o->steps / 10 > 0 ? o->steps / 10 : 1;
  long first = o->steps < 100 ? o->steps : 100;
  double t0 = now();
  for (long k = 1; k <= o->steps; k++) {
    if (b->step(b->state) != 0) return child_fail(w, "step");
    if (k == first || k == o->steps || (k > first && k % every == 0)) {
      long long h = heap_in_use();
      long r = rss_kb();
      double t = now();
      if (k == first) h0 = h, r0 = r;
      printf("mem w=%d step=%ld heap=%lld rss_kb=%ld dheap=%lld "
             "drss_kb=%ld live=%zu cached=%zu ms_per_step=%.4f\n", w, k, h,
             r, h - h0, r - r0, d2r_live_bytes(), d2r_cache_bytes(),
             1e3 * (t - t0) / (double)(k - k0));
      fflush(stdout);
      t0 = t;
      k0 = k;
    }
  }
  return 0;
}

/* " note=..." with the workload's note, or "" when it has none. */
static void note_of(bench_work *b, char *buf, size_t size) {
  buf[0] = '\0';
  if (b->note == NULL || size < 8) return;
  memcpy(buf, " note=", 7);
  b->note(b->state, buf + 6, size - 6);
}

/* Warms up (for --warmup seconds, or --warmup-steps steps), then times
 * --runs runs of --inner steps; without --inner, a run lasts about
 * --run-time seconds, all within --max-steps steps. */
static int child_timed(const opts *o, bench_work *b, int w) {
  long k = 0, budget = o->max_steps;
  double t0 = now(), t1 = t0;
  while (o->warmup_steps >= 0 ? k < o->warmup_steps
         : k < 3 || (now() - t0 < o->warmup && k < budget / 4)) {
    if (b->step(b->state) != 0) return child_fail(w, "step");
    if (++k == 1) t1 = now();
  }
  double per = k > 1 ? (now() - t1) / (double)(k - 1) : 1e-3;
  long inner = o->inner;
  if (inner < 1) {
    long cap = (budget - k) / o->runs;
    inner = (long)(o->run_time / (per > 0 ? per : 1e-9) + 0.5);
    inner = inner > cap ? cap : inner;
    inner = inner < 1 ? 1 : inner;
  }
  double *times = calloc((size_t)o->runs, sizeof *times);
  if (times == NULL) return child_fail(w, "out of memory");
  for (int r = 0; r < o->runs; r++) {
    double t = now();
    for (long i = 0; i < inner; i++)
      if (b->step(b->state) != 0) return free(times), child_fail(w, "step");
    times[r] = (now() - t) / (double)inner;
  }
  qsort(times, (size_t)o->runs, sizeof *times, cmp_double);
  char note[512];
  note_of(b, note, sizeof note);
  printf("result w=%d name=%s unit=%s core=%s threads=%d warmup_steps=%ld "
         "inner=%ld runs=%d median=%.9g min=%.9g max=%.9g flops=%.17g "
         "rows=%lld%s\n", w, b->name, b->unit, openblas_get_corename(),
         openblas_get_num_threads(), k, inner, o->runs, times[o->runs / 2],
         times[0], times[o->runs - 1], b->flops, (long long)b->rows, note);
  free(times);
  return 0;
}

static int run_child(const opts *o) {
  bench_data_dir = o->data;
  if (o->check != NULL) return child_check(o);
  int w = o->child;
  bench_work b;
  if (bench_setup(w, 42, &b) != 0) return child_fail(w, "setup");
  int rc;
  if (o->memory >= 0) {
    rc = child_memory(o, &b, w);
  } else if (o->steps_set) {
    rc = 0;
    for (long k = 0; rc == 0 && k < o->steps; k++)
      if (b.step(b.state) != 0) rc = child_fail(w, "step");
    char note[512];
    note_of(&b, note, sizeof note);
    if (rc == 0) printf("result w=%d steps=%ld%s\n", w, o->steps, note);
  } else {
    rc = child_timed(o, &b, w);
  }
  bench_teardown(&b);
  fflush(stdout);
  return rc;
}

/* ---- spawning children --------------------------------------------------- */

typedef struct child_out {
  char text[16384];
  int status;          /* exit status, or -1 if it did not exit */
  long maxrss_kb;
} child_out;

/* Runs argv with the given thread count and kernel set (NULL: inherit),
 * capturing its standard output; stderr passes through. */
static int spawn(char *const *argv, int threads, const char *core,
                 child_out *co) {
  int fd[2];
  memset(co, 0, sizeof *co);
  co->status = -1;
  fflush(stdout);
  if (pipe(fd) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(fd[0]);
    close(fd[1]);
    return -1;
  }
  if (pid == 0) {
    char t[16];
    snprintf(t, sizeof t, "%d", threads);
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    setenv("OPENBLAS_NUM_THREADS", t, 1);
    setenv("OMP_NUM_THREADS", t, 1);
    if (core != NULL) setenv("OPENBLAS_CORETYPE", core, 1);
    execv(argv[0], argv);
    fprintf(stderr, "d2r_bench: cannot run %s: %s\n", argv[0],
            strerror(errno));
    _exit(127);
  }
  close(fd[1]);
  size_t len = 0;
  ssize_t got;
  while ((got = read(fd[0], co->text + len, sizeof co->text - 1 - len)) > 0)
    len += (size_t)got;
  co->text[len] = '\0';
  close(fd[0]);
  int st;
  struct rusage ru;
  if (wait4(pid, &st, 0, &ru) < 0) return -1;
  co->maxrss_kb = ru.ru_maxrss;
  co->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return 0;
}

/* The value of key=... in the first line starting with `tag`, copied. */
static bool field(const char *text, const char *tag, const char *key,
                  char *out, size_t size) {
  const char *line = strstr(text, tag);
  if (line == NULL) return false;
  const char *eol = strchr(line, '\n');
  if (eol == NULL) eol = line + strlen(line);
  size_t kl = strlen(key);
  for (const char *p = line; p < eol; p++) {
    if ((p == line || p[-1] == ' ') && !strncmp(p, key, kl) && p[kl] == '=') {
      const char *v = p + kl + 1;
      size_t n = 0;
      while (v + n < eol && v[n] != ' ' && n + 1 < size) n++;
      memcpy(out, v, n);
      out[n] = '\0';
      return true;
    }
  }
  return false;
}

static double numfield(const char *text, const char *key) {
  char buf[64];
  return field(text, "result ", key, buf, sizeof buf) ? atof(buf) : NAN;
}

/* ---- measurements -------------------------------------------------------- */

typedef struct meas {
  bool ok;
  double median, min, max, flops, rows;
  long warmup_steps, inner;
  long maxrss_kb;
  char core[32], msg[256];
} meas;

static char self_path[4096];

static void fmt(char *buf, size_t n, const char *f, double v) {
  snprintf(buf, n, f, v);
}

static void parse_meas(const child_out *co, meas *m, bool verbose) {
  memset(m, 0, sizeof *m);
  m->maxrss_kb = co->maxrss_kb;
  if (verbose) fputs(co->text, stdout);
  if (strstr(co->text, "result ") != NULL && co->status == 0) {
    m->ok = true;
    m->median = numfield(co->text, "median");
    m->min = numfield(co->text, "min");
    m->max = numfield(co->text, "max");
    m->flops = numfield(co->text, "flops");
    m->rows = numfield(co->text, "rows");
    m->warmup_steps = (long)numfield(co->text, "warmup_steps");
    m->inner = (long)numfield(co->text, "inner");
    field(co->text, "result ", "core", m->core, sizeof m->core);
    return;
  }
  const char *e = strstr(co->text, "error ");
  const char *msg = e != NULL ? strstr(e, "msg=") : NULL;
  if (msg != NULL) {
    snprintf(m->msg, sizeof m->msg, "%s", msg + 4);
    m->msg[strcspn(m->msg, "\n")] = '\0';
  } else {
    snprintf(m->msg, sizeof m->msg, "child exited with status %d",
             co->status);
  }
}

/* Timed runs of a measurement of workload w (both sides). */
static int runs_for(const opts *o, int w) {
  if (BENCH_IS_SWEEP(w) && o->runs > BENCH_SWEEP_RUNS)
    return BENCH_SWEEP_RUNS;
  return o->runs;
}

static void d2r_measure(const opts *o, int w, int threads, const char *core,
                        meas *m) {
  char ws[16], runs[16], rt[32], wu[32], ms[32], ws_steps[16];
  snprintf(ws, sizeof ws, "%d", w);
  snprintf(runs, sizeof runs, "%d", runs_for(o, w));
  fmt(rt, sizeof rt, "%g", o->run_time);
  fmt(wu, sizeof wu, "%g", o->warmup);
  snprintf(ms, sizeof ms, "%ld", o->max_steps);
  snprintf(ws_steps, sizeof ws_steps, "%d", BENCH_SWEEP_WARMUP);
  /* Workloads 6 and 7: a fixed schedule of whole sweeps, one per run
   * (the list ends before it for the others). */
  char *sched = BENCH_IS_SWEEP(w) ? "--warmup-steps" : NULL;
  char *argv[] = {self_path, "--child", ws, "--runs", runs, "--run-time", rt,
                  "--warmup", wu, "--max-steps", ms, "--data",
                  (char *)o->data, sched, ws_steps, "--inner", "1", NULL};
  child_out co;
  if (spawn(argv, threads, core, &co) != 0) {
    memset(m, 0, sizeof *m);
    snprintf(m->msg, sizeof m->msg, "cannot start: %s", strerror(errno));
    return;
  }
  parse_meas(&co, m, o->verbose);
}

/* The same workload in PyTorch, with the warm-up and run lengths (in
 * steps) that the d2r measurement d used. */
static void torch_measure(const opts *o, int w, int threads,
                          const char *dtype, const meas *d, meas *m) {
  char ws[16], ts[16], runs[16], wu[32], in[32];
  snprintf(ws, sizeof ws, "%d", w);
  snprintf(ts, sizeof ts, "%d", threads);
  snprintf(runs, sizeof runs, "%d", runs_for(o, w));
  snprintf(wu, sizeof wu, "%ld", d->warmup_steps);
  snprintf(in, sizeof in, "%ld", d->inner);
  char *argv[] = {(char *)o->python, (char *)o->script, "--workload", ws,
                  "--dtype", (char *)dtype, "--threads", ts, "--runs", runs,
                  "--warmup-steps", wu, "--inner", in, "--data",
                  (char *)o->data, NULL};
  child_out co;
  if (spawn(argv, threads, NULL, &co) != 0) {
    memset(m, 0, sizeof *m);
    snprintf(m->msg, sizeof m->msg, "cannot start: %s", strerror(errno));
    return;
  }
  parse_meas(&co, m, o->verbose);
}

/* The processor as the kernel names it, and its vector extensions. */
static void print_cpu(void) {
  char line[512], model[256] = "?";
  int family = -1, mod = -1;
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    char *v = strchr(line, ':');
    if (v == NULL) continue;
    v += v[1] == ' ' ? 2 : 1;
    v[strcspn(v, "\n")] = '\0';
    if (!strncmp(line, "model name", 10) && model[0] == '?')
      snprintf(model, sizeof model, "%s", v);
    else if (!strncmp(line, "cpu family", 10) && family < 0)
      family = atoi(v);
    else if (!strncmp(line, "model\t", 6) && mod < 0)
      mod = atoi(v);
  }
  if (f != NULL) fclose(f);
  printf("CPU: %s (family %d, model %d), %ld online; AVX2 %s, AVX-512F "
         "%s\n", model, family, mod, sysconf(_SC_NPROCESSORS_ONLN),
         __builtin_cpu_supports("avx2") ? "yes" : "no",
         __builtin_cpu_supports("avx512f") ? "yes" : "no");
}

/* ---- the table ----------------------------------------------------------- */

static void print_time(const meas *m, bool baseline) {
  if (!m->ok || baseline) {
    printf(" %9s %9s", "-", "-");
    if (m->ok) printf(" %7.1f", (double)m->maxrss_kb / 1024.0);
    else printf(" %7s", "-");
    return;
  }
  /* Steps of seconds (sweeps) keep the columns' width and show digits. */
  double ms = m->median * 1e3, rate = 1.0 / m->median;
  printf(ms < 1e4 ? " %9.4f" : " %9.1f", ms);
  printf(rate < 100 ? " %9.3f" : " %9.1f", rate);
  printf(" %7.1f", (double)m->maxrss_kb / 1024.0);
}

static void print_ratio(const meas *a, const meas *b) {
  if (a->ok && b->ok) printf(" %7.3f", a->median / b->median);
  else printf(" %7s", "-");
}

static void table_header(int threads) {
  printf("\nthreads = %d (OpenBLAS; PyTorch intra-op and its OpenBLAS)\n",
         threads);
  printf("%-4s %-10s | %-27s | %-27s | %-27s | %-15s\n", "w", "name",
         "d2r float64", "PyTorch float64", "PyTorch float32",
         "d2r / PyTorch");
  printf("%-4s %-10s |", "", "");
  for (int i = 0; i < 3; i++)
    printf(" %9s %9s %7s |", "ms/step", "steps/s", "peakMB");
  printf(" %7s %7s\n", "f64", "f32");
}

static const char *short_name(int w) {
  static const char *names[] = {"baseline", "tabular", "gaussian",
                                "dynamics", "large", "implicit", "sweep",
                                "sweep/1", "tab/smp"};
  return w >= 0 && w <= 8 ? names[w] : "?";
}

static void gflops_line(const char *what, const meas *m, double flops) {
  if (!m->ok || !(flops > 0)) return;
  printf("    %-34s %9.4f ms  %7.2f GFLOP/s\n", what, m->median * 1e3,
         flops / m->median / 1e9);
}

static void run_table(const opts *o) {
  printf("d2r benchmark: median of %d runs of >= %.2g s after %.2g s of "
         "warm-up\n", o->runs, o->run_time, o->warmup);
  print_cpu();
  printf("OpenBLAS here: core %s; %s\n", openblas_get_corename(),
         openblas_get_config());
  const char *ct = getenv("OPENBLAS_CORETYPE");
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) != 3) load[0] = load[1] = load[2] = NAN;
  printf("OPENBLAS_CORETYPE: %s; load average at start %.2f %.2f %.2f\n",
         ct != NULL ? ct : "(unset)", load[0], load[1], load[2]);
  bool sweep = false;
  for (int i = 0; i < o->nwork; i++) {
    if (bench_describe(o->workloads[i]) != NULL)
      printf("  %d: %s\n", o->workloads[i],
             bench_describe(o->workloads[i]));
    sweep = sweep || BENCH_IS_SWEEP(o->workloads[i]);
  }
  if (sweep)
    printf("  (6, 7: a step is a sweep, timed by the wall clock of its "
           "process: median of\n   %d after %d warm-up; peakMB: the "
           "largest process of the sweep)\n", runs_for(o, W_SWEEP),
           BENCH_SWEEP_WARMUP);
  for (int ti = 0; ti < o->nthreads; ti++) {
    int th = o->threads[ti];
    table_header(th);
    meas d3 = {0}, d4 = {0}, t3 = {0}, t4 = {0};
    char core[32] = "";
    for (int i = 0; i < o->nwork; i++) {
      int w = o->workloads[i];
      meas d, t64 = {0}, t32 = {0};
      d2r_measure(o, w, th, NULL, &d);
      if (o->torch && d.ok) {
        torch_measure(o, w, th, "float64", &d, &t64);
        torch_measure(o, w, th, "float32", &d, &t32);
      }
      if (d.ok && core[0] == '\0') snprintf(core, sizeof core, "%s", d.core);
      printf("%-4d %-10s |", w, short_name(w));
      if (!d.ok) {
        printf(" %s\n", d.msg);
        continue;
      }
      bool base = w == W_BASELINE;
      print_time(&d, base);
      printf(" |");
      print_time(&t64, base);
      printf(" |");
      print_time(&t32, base);
      printf(" |");
      if (base) {
        printf(" %7s %7s", "-", "-");
      } else {
        print_ratio(&d, &t64);
        print_ratio(&d, &t32);
      }
      printf("\n");
      if (o->torch && (!t64.ok || !t32.ok))
        printf("     PyTorch: %s\n", !t64.ok ? t64.msg : t32.msg);
      if (w == W_DYNAMICS) d3 = d, t3 = t64;
      if (w == W_LARGE) d4 = d, t4 = t64;
    }
    printf("(kernel set in the d2r children: %s)\n",
           core[0] ? core : "?");
    if (!d3.ok && !d4.ok) continue;
    printf("matrix products, float64, %d thread(s): flops of the products "
           "of one update / time\n", th);
    meas g3 = {0}, g4 = {0}, sq = {0};
    if (d3.ok) d2r_measure(o, W_GEMM3, th, NULL, &g3);
    if (d4.ok) d2r_measure(o, W_GEMM4, th, NULL, &g4);
    d2r_measure(o, W_GEMM_SQ, th, NULL, &sq);
    if (d3.ok) {
      printf("  workload 3 (%.3g GFLOP per update)\n", d3.flops / 1e9);
      gflops_line("d2r update", &d3, d3.flops);
      gflops_line("PyTorch float64 update", &t3, d3.flops);
      gflops_line("bare dgemm, same products", &g3, d3.flops);
    }
    if (d4.ok) {
      printf("  workload 4 (%.3g GFLOP per update)\n", d4.flops / 1e9);
      gflops_line("d2r update", &d4, d4.flops);
      gflops_line("PyTorch float64 update", &t4, d4.flops);
      gflops_line("bare dgemm, same products", &g4, d4.flops);
    }
    gflops_line("bare dgemm 1024^3 (reference)", &sq, sq.flops);
  }
}

/* ---- kernel sets --------------------------------------------------------- */

static double *read_doubles(const char *path, long *n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  double *buf = malloc(sizeof(double) << 20);
  *n = buf != NULL ? (long)fread(buf, sizeof *buf, 1 << 20, f) : 0;
  fclose(f);
  return buf;
}

/* Largest |a - b| relative to the largest |a|, over n values. */
static double rel_diff(const double *a, const double *b, long n) {
  double d = 0, s = 0;
  for (long i = 0; i < n; i++) {
    double e = fabs(a[i] - b[i]);
    d = e > d || isnan(e) ? e : d;
    s = fabs(a[i]) > s ? fabs(a[i]) : s;
  }
  return s > 0 ? d / s : d;
}

static void run_kernels(const opts *o) {
  char list[256];
  snprintf(list, sizeof list, "%s", o->kernels);
  const char *cores[16];
  int nc = 0;
  cores[nc++] = NULL;   /* what OpenBLAS picks by itself */
  for (char *p = strtok(list, ","); p != NULL && nc < 16;
       p = strtok(NULL, ","))
    cores[nc++] = p;
  print_cpu();
  printf("OpenBLAS kernel sets: %s\n", openblas_get_config());
  printf("picked by itself (OPENBLAS_CORETYPE %s): %s\n",
         getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
         openblas_get_corename());
  printf("1 thread; GFLOP/s of the matrix products (bare dgemm: a square\n"
         "product, the products of one update of workloads 3 and 4; then\n"
         "the whole updates); results of a dgemm and of one workload-3\n"
         "update (gradients, parameters) against the first row\n");
  printf("%-26s %8s %8s %8s %9s %9s %12s\n", "OPENBLAS_CORETYPE", "1024^3",
         "w3 set", "w4 set", "w3 update", "w4 update", "max rel diff");
  double *ref = NULL;
  long nref = 0;
  char tmp[64];
  snprintf(tmp, sizeof tmp, "/tmp/d2r_bench_check.%ld", (long)getpid());
  for (int i = 0; i < nc; i++) {
    char *cargv[] = {self_path, "--child", "0", "--check", tmp, NULL};
    child_out co;
    meas sq, g3, g4, d3, d4;
    spawn(cargv, 1, cores[i], &co);
    char core[32] = "?";
    field(co.text, "result ", "core", core, sizeof core);
    d2r_measure(o, W_GEMM_SQ, 1, cores[i], &sq);
    d2r_measure(o, W_GEMM3, 1, cores[i], &g3);
    d2r_measure(o, W_GEMM4, 1, cores[i], &g4);
    d2r_measure(o, W_DYNAMICS, 1, cores[i], &d3);
    d2r_measure(o, W_LARGE, 1, cores[i], &d4);
    char label[64];
    snprintf(label, sizeof label, "%s -> %s",
             cores[i] ? cores[i] : "(unset)", core);
    printf("%-26s", label);
    const meas *ms[5] = {&sq, &g3, &g4, &d3, &d4};
    for (int k = 0; k < 5; k++) {
      int wd = k < 3 ? 8 : 9;
      if (ms[k]->ok)
        printf(" %*.2f", wd, ms[k]->flops / ms[k]->median / 1e9);
      else
        printf(" %*s", wd, "-");
    }
    long n = 0;
    double *vals = co.status == 0 ? read_doubles(tmp, &n) : NULL;
    if (vals == NULL) {
      printf(" %12s\n", "failed");
    } else if (ref == NULL) {
      ref = vals;
      nref = n;
      printf(" %12s\n", "(reference)");
    } else {
      if (n == nref) printf(" %12.3g\n", rel_diff(ref, vals, n));
      else printf(" %12s\n", "size differs");
      free(vals);
    }
  }
  free(ref);
  remove(tmp);
}

/* ---- memory over many steps ---------------------------------------------- */

static void run_memory(const opts *o) {
  char ws[16], steps[32];
  snprintf(ws, sizeof ws, "%d", o->memory);
  snprintf(steps, sizeof steps, "%ld", o->steps);
  char *argv[] = {self_path, "--child", ws, "--memory", ws, "--steps", steps,
                  "--data", (char *)o->data, NULL};
  child_out co;
  printf("workload %d, %ld steps, 1 thread: heap in use (mallinfo2 "
         "uordblks + hblkhd)\nand RSS, relative to step 100; the engine's "
         "live tensor bytes and its cache\nof freed blocks\n", o->memory,
         o->steps);
  double t = now();
  if (spawn(argv, 1, NULL, &co) != 0) {
    printf("cannot start the child\n");
    return;
  }
  fputs(co.text, stdout);
  printf("peak RSS %.1f MB, %.1f s\n", (double)co.maxrss_kb / 1024.0,
         now() - t);
}

int main(int argc, char **argv) {
  opts o = {0};
  parse_opts(argc, argv, &o);
  if (o.child >= 0 || o.check != NULL) return run_child(&o);
  ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
  if (n <= 0) {
    fprintf(stderr, "d2r_bench: cannot find its own executable\n");
    return 1;
  }
  self_path[n] = '\0';
  if (o.kernels != NULL) run_kernels(&o);
  else if (o.memory >= 0) run_memory(&o);
  else run_table(&o);
  return 0;
}

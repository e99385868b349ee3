/*
 * The benchmark's workloads as seen by its driver: each one is set up
 * once, then stepped repeatedly (a step is the unit that is timed: one
 * epoch, one policy-gradient update, one outer step of a bilevel loop,
 * one whole sweep of runs, or one set of matrix products).
 */
#ifndef D2R_BENCH_H
#define D2R_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* Workload numbers of the issue, plus the bare-BLAS references. */
enum {
  W_BASELINE = 0,   /* nothing: the process's own footprint */
  W_TABULAR = 1,    /* one epoch of the tabular protocol (class counts) */
  W_GAUSSIAN = 2,   /* one PG update of the toy Gaussian policy */
  W_DYNAMICS = 3,   /* one PG update of a dynamics model */
  W_LARGE = 4,      /* one PG update of a large dynamics model */
  W_IMPLICIT = 5,   /* one implicit-differentiation outer step */
  W_SWEEP = 6,      /* a sweep of 100 toy runs, in a d2r process */
  W_SWEEP_ISOLATED = 7, /* the same sweep, a worker process per run */
  W_TABULAR_SAMPLES = 8, /* workload 1 drawing G samples a row */
  W_GEMM3 = 103,    /* the matrix products of workload 3, bare dgemm */
  W_GEMM4 = 104,    /* the matrix products of workload 4, bare dgemm */
  W_GEMM_SQ = 110   /* one square 1024 dgemm: the machine's rate */
};

/* Whether w is one of the sweeps (6 and 7). */
#define BENCH_IS_SWEEP(w) ((w) == W_SWEEP || (w) == W_SWEEP_ISOLATED)

/*
 * Workloads 6 and 7 take seconds a step: their measurements follow a fixed
 * schedule (on both sides) instead of timed runs: this many warm-up
 * sweeps, then at most this many timed runs of one sweep each.
 */
#define BENCH_SWEEP_WARMUP 1
#define BENCH_SWEEP_RUNS 3

typedef struct bench_work {
  const char *name;     /* short label */
  const char *unit;     /* what one step is: "epoch", "update", ... */
  void *state;
  int (*step)(void *state);          /* 0, or -1 with d2r_error() set */
  void (*free_state)(void *state);
  double flops;         /* matrix-product flops of one step, or 0 */
  int64_t rows;         /* training rows (tabular), batch size, or 0 */
  /* NULL, or writes a one-word summary of the state after the last step
   * (key:value pairs joined by commas, no spaces) for the result line. */
  void (*note)(void *state, char *buf, size_t size);
} bench_work;

/* Where data/ lives, for the tabular workload. */
extern const char *bench_data_dir;

/* Is there code for this workload number? */
int bench_known(int w);
/* A one-line description, or NULL for an unknown number. */
const char *bench_describe(int w);
/* Sets *out up for workload w (seeded); 0, or -1 with a message in
 * d2r_error().  Workload 6 runs the d2r executable it was built with
 * (D2R_BENCH_D2R_EXE) on bench/toy_sweep.lua, with as many sweep workers
 * as the BLAS thread count in force. */
int bench_setup(int w, uint64_t seed, bench_work *out);
void bench_teardown(bench_work *b);

/* Flops of the matrix products of one PG update of an MLP with layer
 * widths dims[0..nd) at batch rows: forward, the weight gradients, and
 * the input gradients of every layer but the first. */
double bench_mlp_flops(int nd, const int64_t *dims, int64_t batch);

/*
 * A fixed, seeded computation whose results depend on the BLAS kernels:
 * a dgemm of awkward sizes, then one PG update of the workload-3 model.
 * Writes up to cap doubles into out and returns how many, or -1.
 */
int64_t bench_kernel_check(double *out, int64_t cap);

#endif

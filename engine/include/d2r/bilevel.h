/*
 * Building blocks of the bilevel solvers (METHOD.md, "Solvers for the
 * outer problem"): Hessian-vector and mixed second-derivative products,
 * matrix-free linear solvers over such products, and the implicit-
 * function-theorem hypergradient
 *
 *   dF/dphi = d_phi F - (d2_phi,theta L)^T [d2_theta,theta L]^-1 d_theta F
 *
 * for an inner loss L(theta, phi) minimised over theta and an outer loss
 * F(theta, phi).  The loops around them (inner optimisation, outer
 * updates, unrolling) are composed by the caller, in C or in Lua.
 *
 * Vectors handed to solvers are flat [P] tensors, the parameters of a
 * list laid end to end in list order (as d2r_params_flatten lays them).
 */
#ifndef D2R_BILEVEL_H
#define D2R_BILEVEL_H

#include <stdbool.h>

#include "d2r/tensor.h"

/* ---- second-order products ------------------------------------------ */

/*
 * grads[0..n) must be the gradients of one scalar with respect to
 * params[0..n), computed with create_graph.  On success *out is a new
 * flat [P] tensor (no history):
 *   d2r_hvp:      H v, the Hessian of that scalar times v [P];
 *   d2r_mixed_vp: d/dphi <grads, v>, a [Q] vector over phi[0..m); a phi
 *                 the gradients do not depend on contributes zeros.
 * Returns 0 or -1.
 */
int d2r_hvp(int n, d2r_tensor *const *grads, d2r_tensor *const *params,
            d2r_tensor *v, d2r_tensor **out);
int d2r_mixed_vp(int n, d2r_tensor *const *grads, int m,
                 d2r_tensor *const *phi, d2r_tensor *v, d2r_tensor **out);

/* Splits a flat [P] vector into views shaped like params[0..n): new
 * references in parts[0..n).  Fails when the sizes do not add up. */
int d2r_unflatten(d2r_tensor *flat, int n, d2r_tensor *const *params,
                  d2r_tensor **parts);
/* Lays tensors end to end as one flat [P] vector (differentiable). */
d2r_tensor *d2r_flatten_list(int n, d2r_tensor *const *ts);

/* ---- matrix-free linear solvers -------------------------------------- */

/* A linear operator on flat vectors: *out = A v (a new reference). */
typedef int (*d2r_linop_fn)(void *ctx, d2r_tensor *v, d2r_tensor **out);

typedef enum d2r_solver_kind {
  D2R_SOLVE_CG = 0,      /* conjugate gradient; A symmetric pos. def. */
  D2R_SOLVE_CG_NORMAL,   /* CG on A^T A x = A^T b; A symmetric, any sign */
  D2R_SOLVE_NEUMANN,     /* x = alpha sum_k (I - alpha A)^k b */
  D2R_SOLVE_DENSE        /* build A column by column, LU solve (small P) */
} d2r_solver_kind;

typedef struct d2r_solve_config {
  d2r_solver_kind kind;
  double tol;        /* stop when |A x - b| <= tol |b| */
  int max_iter;      /* iterations (terms for Neumann) */
  double ridge;      /* solve (A + ridge I) x = b: damping, >= 0 */
  double alpha;      /* Neumann step; needs |1 - alpha eig| < 1 */
} d2r_solve_config;

#define D2R_SOLVE_CONFIG_INIT {D2R_SOLVE_CG, 1e-6, 100, 0.0, 1.0}

/* What a solve achieved: iterations (operator applications for DENSE),
 * the relative residual |(A + ridge I) x - b| / |b| measured at the end,
 * and whether it met the tolerance. */
typedef struct d2r_solve_info {
  int iterations;
  double residual;
  bool converged;
} d2r_solve_info;

/* Parses "cg", "cg_normal", "neumann", "dense"; -1 with an error. */
int d2r_solver_parse(const char *name, d2r_solver_kind *out);
const char *d2r_solver_name(d2r_solver_kind kind);

/*
 * Solves (A + ridge I) x = b for b [P], starting from x0 (NULL: zeros).
 * On return *x holds the last iterate (a new reference) and *info what it
 * achieved, converged or not: a solve that misses its tolerance is
 * reported through info->converged, never hidden.  Returns -1 (and no x)
 * only on an error: a bad configuration, a failing operator, a non-finite
 * value, or a singular dense system.
 */
int d2r_linsolve(const d2r_solve_config *cfg, d2r_linop_fn op, void *ctx,
                 d2r_tensor *b, d2r_tensor *x0, d2r_tensor **x,
                 d2r_solve_info *info);

/* ---- implicit hypergradient ------------------------------------------ */

/* The two losses, each recomputed on call with a recorded graph. */
typedef struct d2r_bilevel_fns {
  d2r_tensor *(*inner_loss)(void *ctx);   /* L(theta, phi), 0-d */
  d2r_tensor *(*outer_loss)(void *ctx);   /* F(theta, phi), 0-d */
  void *ctx;
} d2r_bilevel_fns;

/*
 * The implicit hypergradient at the current theta (taken to be an inner
 * optimum) over theta[0..nt) and phi[0..np), all leaves requiring
 * gradients.  The linear system H w = d_theta F is solved by cfg, warm
 * started from w0 (flat [P], or NULL).  On success: *hypergrad, a flat
 * [Q] vector over phi; *w (if w is not NULL), the solution, for a warm
 * start next time; *info, the solve's diagnostics.  Returns 0 or -1.
 */
int d2r_implicit_hypergrad(int nt, d2r_tensor *const *theta, int np,
                           d2r_tensor *const *phi,
                           const d2r_bilevel_fns *fns,
                           const d2r_solve_config *cfg, d2r_tensor *w0,
                           d2r_tensor **hypergrad, d2r_tensor **w,
                           d2r_solve_info *info);

#endif

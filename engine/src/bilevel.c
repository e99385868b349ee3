/*
 * Second-order products, matrix-free linear solvers and the implicit
 * hypergradient (see bilevel.h).  Solvers work on plain arrays of the
 * contiguous flat vectors; only the operator touches the autodiff graph.
 */
#include <gsl/gsl_errno.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/bilevel.h"
#include "tensor_impl.h"

/* ---- flat vectors ------------------------------------------------------- */

d2r_tensor *d2r_flatten_list(int n, d2r_tensor *const *ts) {
  if (n < 1) return d2r_fail("flatten: empty list");
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *parts[n];
  for (int i = 0; i < n; i++) {
    int64_t len = d2r_numel(ts[i]);
    parts[i] = ts[i] ? d2r_keep(&s, d2r_reshape(ts[i], 1, &len)) : NULL;
    if (!parts[i]) {
      d2r_scope_end(&s);
      return NULL;
    }
  }
  d2r_tensor *out = d2r_cat(n, parts, 0);
  d2r_scope_end(&s);
  return out;
}

int d2r_unflatten(d2r_tensor *flat, int n, d2r_tensor *const *params,
                  d2r_tensor **parts) {
  for (int i = 0; i < n; i++) parts[i] = NULL;
  if (!flat) return -1;
  int64_t total = 0;
  for (int i = 0; i < n; i++) total += d2r_numel(params[i]);
  if (d2r_ndim(flat) != 1 || d2r_numel(flat) != total) {
    char buf[96];
    d2r_fail("unflatten: a vector of shape %s for %lld parameters",
             d2r_shape_str(flat, buf, sizeof buf), (long long)total);
    return -1;
  }
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    int64_t len = d2r_numel(params[i]);
    d2r_tensor *piece = d2r_slice(flat, 0, at, at + len, 1);
    parts[i] = d2r_reshape(piece, d2r_ndim(params[i]), d2r_shape(params[i]));
    d2r_release(piece);
    if (!parts[i]) {
      for (int j = 0; j < i; j++) d2r_release(parts[j]);
      return -1;
    }
    at += len;
  }
  return 0;
}

/* d/dwrt <grads, v> as one flat vector without history. */
static int vjp(int n, d2r_tensor *const *grads, d2r_tensor *const *params,
               int m, d2r_tensor *const *wrt, d2r_tensor *v,
               d2r_tensor **out) {
  *out = NULL;
  d2r_tensor *parts[n], *res[m];
  if (d2r_unflatten(v, n, params, parts) < 0) return -1;
  int rc = d2r_autograd(n, grads, parts, m, wrt, false, true, res);
  for (int i = 0; i < n; i++) d2r_release(parts[i]);
  if (rc < 0) return -1;
  bool was = d2r_set_grad_enabled(false);
  d2r_tensor *flat = d2r_flatten_list(m, res);
  d2r_set_grad_enabled(was);
  for (int i = 0; i < m; i++) d2r_release(res[i]);
  *out = d2r_contiguous(flat);
  d2r_release(flat);
  return *out ? 0 : -1;
}

int d2r_hvp(int n, d2r_tensor *const *grads, d2r_tensor *const *params,
            d2r_tensor *v, d2r_tensor **out) {
  return vjp(n, grads, params, n, params, v, out);
}

int d2r_mixed_vp(int n, d2r_tensor *const *grads, int m,
                 d2r_tensor *const *phi, d2r_tensor *v, d2r_tensor **out) {
  return vjp(n, grads, grads, m, phi, v, out);
}

/* ---- solver plumbing ---------------------------------------------------- */

static const char *solver_names[] = {"cg", "cg_normal", "neumann", "dense"};

int d2r_solver_parse(const char *name, d2r_solver_kind *out) {
  for (int k = 0; k < 4; k++)
    if (name && strcmp(name, solver_names[k]) == 0) {
      *out = (d2r_solver_kind)k;
      return 0;
    }
  d2r_fail("solver: unknown kind '%s' (cg, cg_normal, neumann, dense)",
           name ? name : "(null)");
  return -1;
}

const char *d2r_solver_name(d2r_solver_kind kind) {
  return (unsigned)kind < 4 ? solver_names[kind] : "?";
}

typedef struct {
  d2r_linop_fn op;
  void *ctx;
  double ridge;
  int64_t p;
  int calls;
} linop;

/* In eight running sums, added at the end: one sum would wait on the
 * latency of every addition, and CG takes several dots per iteration. */
static double dot(const double *a, const double *b, int64_t n) {
  double lane[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++) lane[k] += a[i + k] * b[i + k];
  double s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
             ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

/* out = (A + ridge I) v, for arrays of length p. */
static int apply(linop *A, const double *v, double *out) {
  d2r_tensor *vt = d2r_vector(A->p, v), *av = NULL;
  if (!vt) return -1;
  int rc = A->op(A->ctx, vt, &av);
  A->calls++;
  if (rc == 0 && (!av || d2r_numel(av) != A->p)) {
    if (av) d2r_fail("solve: the operator returned %lld values for a "
                     "vector of %lld", (long long)d2r_numel(av),
                     (long long)A->p);
    rc = -1;
  }
  if (rc == 0) {
    d2r_tensor *c = d2r_contiguous(av);
    const double *cv = c ? d2r_data(c) : NULL;
    if (!c) rc = -1;
    for (int64_t i = 0; cv && i < A->p; i++)
      out[i] = cv[i] + A->ridge * v[i];
    for (int64_t i = 0; cv && i < A->p; i++) {
      if (!isfinite(out[i])) {
        d2r_fail("solve: the operator produced a non-finite value at "
                 "position %lld", (long long)i + 1);
        rc = -1;
        break;
      }
    }
    d2r_release(c);
  }
  d2r_release(vt), d2r_release(av);
  return rc;
}

/* |(A + ridge I) x - b| measured with one more application. */
static int true_residual(linop *A, const double *x, const double *b,
                         double *tmp, double *res) {
  if (apply(A, x, tmp) < 0) return -1;
  double s = 0;
  for (int64_t i = 0; i < A->p; i++) s += (tmp[i] - b[i]) * (tmp[i] - b[i]);
  *res = sqrt(s);
  return 0;
}

/* ---- conjugate gradient ------------------------------------------------- */

static int solve_cg(linop *A, const d2r_solve_config *c, const double *b,
                    double *x, double *work, d2r_solve_info *info) {
  int64_t p = A->p;
  double *r = work, *d = work + p, *ad = work + 2 * p;
  /* From x = 0 (the usual start) the residual is b: no product needed. */
  bool zero = true;
  for (int64_t i = 0; zero && i < p; i++) zero = x[i] == 0.0;
  if (zero) memset(ad, 0, (size_t)p * sizeof *ad);
  else if (apply(A, x, ad) < 0) return -1;
  for (int64_t i = 0; i < p; i++) r[i] = b[i] - ad[i], d[i] = r[i];
  double rs = dot(r, r, p), bn = sqrt(dot(b, b, p));
  for (info->iterations = 0; info->iterations < c->max_iter;) {
    if (sqrt(rs) <= c->tol * bn) break;
    if (apply(A, d, ad) < 0) return -1;
    info->iterations++;
    double curv = dot(d, ad, p);
    /* CG is a Galerkin method: on an indefinite operator (a surrogate's
     * Hessian often is) its iterates are still the Galerkin solutions of
     * their Krylov spaces, so it goes on, and the measured residual says
     * how good they are.  Only a curvature of exactly zero (or a
     * non-finite one) breaks it down. */
    if (curv == 0 || !isfinite(curv)) break;
    double alpha = rs / curv;
    for (int64_t i = 0; i < p; i++) x[i] += alpha * d[i], r[i] -= alpha * ad[i];
    double rs_new = dot(r, r, p);
    for (int64_t i = 0; i < p; i++) d[i] = r[i] + rs_new / rs * d[i];
    rs = rs_new;
  }
  return 0;
}

/* CG on the normal equations (CGNR) for a symmetric operator: minimises
 * |A x - b| without needing A to be definite. */
static int solve_cg_normal(linop *A, const d2r_solve_config *c,
                           const double *b, double *x, double *work,
                           d2r_solve_info *info) {
  int64_t p = A->p;
  double *s = work, *z = work + p, *d = work + 2 * p, *w = work + 3 * p;
  if (apply(A, x, w) < 0) return -1;
  for (int64_t i = 0; i < p; i++) s[i] = b[i] - w[i];
  if (apply(A, s, z) < 0) return -1;
  memcpy(d, z, (size_t)p * sizeof *d);
  double zz = dot(z, z, p), bn = sqrt(dot(b, b, p));
  for (info->iterations = 0; info->iterations < c->max_iter;) {
    if (sqrt(dot(s, s, p)) <= c->tol * bn || !(zz > 0)) break;
    if (apply(A, d, w) < 0) return -1;
    info->iterations++;
    double ww = dot(w, w, p);
    if (!(ww > 0)) break;
    double alpha = zz / ww;
    for (int64_t i = 0; i < p; i++) x[i] += alpha * d[i], s[i] -= alpha * w[i];
    if (apply(A, s, z) < 0) return -1;
    double zz_new = dot(z, z, p);
    for (int64_t i = 0; i < p; i++) d[i] = z[i] + zz_new / zz * d[i];
    zz = zz_new;
  }
  return 0;
}

/* Richardson iteration x += alpha (b - A x): from x = 0 its iterates are
 * the partial sums of the Neumann series alpha sum_k (I - alpha A)^k b. */
static int solve_neumann(linop *A, const d2r_solve_config *c,
                         const double *b, double *x, double *work,
                         d2r_solve_info *info) {
  int64_t p = A->p;
  double *ax = work, bn = sqrt(dot(b, b, p));
  for (info->iterations = 0; info->iterations < c->max_iter;) {
    if (apply(A, x, ax) < 0) return -1;
    double rn = 0;
    for (int64_t i = 0; i < p; i++) rn += (b[i] - ax[i]) * (b[i] - ax[i]);
    if (sqrt(rn) <= c->tol * bn) break;
    for (int64_t i = 0; i < p; i++) x[i] += c->alpha * (b[i] - ax[i]);
    info->iterations++;
  }
  return 0;
}

/* Builds the matrix one column per application, then solves by LU. */
static int solve_dense(linop *A, const double *b, double *x, double *work,
                       d2r_solve_info *info) {
  int64_t p = A->p;
  gsl_matrix *m = gsl_matrix_alloc((size_t)p, (size_t)p);
  gsl_permutation *perm = gsl_permutation_alloc((size_t)p);
  int rc = m && perm ? 0 : -1;
  if (rc < 0) d2r_fail("solve: out of memory for a %lld x %lld matrix",
                       (long long)p, (long long)p);
  double *e = work, *col = work + p;
  memset(e, 0, (size_t)p * sizeof *e);
  for (int64_t j = 0; rc == 0 && j < p; j++) {
    e[j] = 1;
    rc = apply(A, e, col);
    e[j] = 0;
    for (int64_t i = 0; rc == 0 && i < p; i++)
      gsl_matrix_set(m, (size_t)i, (size_t)j, col[i]);
  }
  info->iterations = A->calls;
  int sign;
  if (rc == 0 && gsl_linalg_LU_decomp(m, perm, &sign) != GSL_SUCCESS) rc = -1;
  if (rc == 0) {
    double det_scale = 0;
    for (int64_t i = 0; i < p; i++)
      det_scale = fmax(det_scale, fabs(gsl_matrix_get(m, (size_t)i,
                                                      (size_t)i)));
    for (int64_t i = 0; i < p; i++)
      if (fabs(gsl_matrix_get(m, (size_t)i, (size_t)i)) <=
          1e-14 * det_scale) {
        d2r_fail("solve: the %lld x %lld system is singular (pivot %lld "
                 "is zero); add a ridge", (long long)p, (long long)p,
                 (long long)i + 1);
        rc = -1;
        break;
      }
  }
  if (rc == 0) {
    gsl_vector_const_view bv = gsl_vector_const_view_array(b, (size_t)p);
    gsl_vector_view xv = gsl_vector_view_array(x, (size_t)p);
    if (gsl_linalg_LU_solve(m, perm, &bv.vector, &xv.vector) != GSL_SUCCESS) {
      d2r_fail("solve: LU solve failed");
      rc = -1;
    }
  }
  gsl_matrix_free(m);
  gsl_permutation_free(perm);
  return rc;
}

static bool check_config(const d2r_solve_config *c) {
  if ((unsigned)c->kind > D2R_SOLVE_DENSE)
    return d2r_fail("solve: unknown solver kind %d", (int)c->kind), false;
  if (!(c->tol >= 0) || c->max_iter < 0 || !(c->ridge >= 0) ||
      !isfinite(c->ridge))
    return d2r_fail("solve: need tol >= 0, max_iter >= 0 and a finite "
                    "ridge >= 0"), false;
  if (c->kind == D2R_SOLVE_NEUMANN && !(c->alpha > 0 && isfinite(c->alpha)))
    return d2r_fail("solve: the Neumann step alpha must be positive"),
           false;
  return true;
}

int d2r_linsolve(const d2r_solve_config *cfg, d2r_linop_fn op, void *ctx,
                 d2r_tensor *b, d2r_tensor *x0, d2r_tensor **x,
                 d2r_solve_info *info) {
  *x = NULL;
  *info = (d2r_solve_info){0, NAN, false};
  if (!b || !check_config(cfg)) return -1;
  gsl_set_error_handler_off();
  int64_t p = d2r_numel(b);
  if (d2r_ndim(b) != 1 || (x0 && d2r_numel(x0) != p)) {
    d2r_fail("solve: b must be a flat vector and x0 match it");
    return -1;
  }
  if (d2r_count_nonfinite(b) > 0 || (x0 && d2r_count_nonfinite(x0) > 0)) {
    d2r_fail("solve: b or x0 holds a non-finite value");
    return -1;
  }
  linop A = {op, ctx, cfg->ridge, p, 0};
  d2r_tensor *bc = d2r_contiguous(b);
  d2r_tensor *xt = x0 && cfg->kind != D2R_SOLVE_DENSE ? d2r_clone(x0)
                                                      : d2r_zeros(1, &p);
  /* From the engine's block cache: an outer loop solves every step. */
  double *work = d2r_alloc_block(4 * p + 1);
  if (work) memset(work, 0, (size_t)(4 * p + 1) * sizeof *work);
  int rc = bc && xt && work ? 0 : -1;
  if (work == NULL) d2r_fail("solve: out of memory");
  const double *bv = rc == 0 ? d2r_data(bc) : NULL;
  double *xv = rc == 0 ? d2r_data(xt) : NULL;
  if (rc == 0) {
    switch (cfg->kind) {
    case D2R_SOLVE_CG: rc = solve_cg(&A, cfg, bv, xv, work, info); break;
    case D2R_SOLVE_CG_NORMAL:
      rc = solve_cg_normal(&A, cfg, bv, xv, work, info);
      break;
    case D2R_SOLVE_NEUMANN:
      rc = solve_neumann(&A, cfg, bv, xv, work, info);
      break;
    case D2R_SOLVE_DENSE: rc = solve_dense(&A, bv, xv, work, info); break;
    }
  }
  double res = 0, bn = rc == 0 ? sqrt(dot(bv, bv, p)) : 0;
  if (rc == 0) rc = true_residual(&A, xv, bv, work, &res);
  if (rc == 0) {
    info->residual = bn > 0 ? res / bn : res;
    info->converged = info->residual <= fmax(cfg->tol, 1e-12) ||
                      (bn == 0 && res == 0);
    *x = d2r_retain(xt);
  }
  if (work) d2r_free_block(work, 4 * p + 1);
  d2r_release(bc), d2r_release(xt);
  return rc;
}

/* ---- implicit hypergradient --------------------------------------------- */

typedef struct {
  int n;
  d2r_tensor *const *grads, *const *params;
} hvp_ctx;

static int hvp_op(void *ctx, d2r_tensor *v, d2r_tensor **out) {
  hvp_ctx *h = ctx;
  return d2r_hvp(h->n, h->grads, h->params, v, out);
}

/* Gradient of a scalar as one flat vector over the list (zeros where the
 * scalar does not depend on a tensor). */
static d2r_tensor *flat_grad(d2r_tensor *f, int n, d2r_tensor *const *wrt) {
  d2r_tensor *g[n];
  if (d2r_autograd(1, &f, NULL, n, wrt, false, true, g) < 0) return NULL;
  d2r_tensor *flat = d2r_flatten_list(n, g);
  for (int i = 0; i < n; i++) d2r_release(g[i]);
  return flat;
}

int d2r_implicit_hypergrad(int nt, d2r_tensor *const *theta, int np,
                           d2r_tensor *const *phi,
                           const d2r_bilevel_fns *fns,
                           const d2r_solve_config *cfg, d2r_tensor *w0,
                           d2r_tensor **hypergrad, d2r_tensor **w,
                           d2r_solve_info *info) {
  *hypergrad = NULL;
  if (w) *w = NULL;
  if (nt < 1 || np < 1) {
    d2r_fail("hypergrad: need inner and outer parameters");
    return -1;
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *g[nt];
  for (int i = 0; i < nt; i++) g[i] = NULL;
  int rc = -1;
  /* Outer loss gradients, in theta and in phi. */
  d2r_tensor *F = d2r_keep(&s, fns->outer_loss(fns->ctx));
  d2r_tensor *gFt = F ? d2r_keep(&s, flat_grad(F, nt, theta)) : NULL;
  d2r_tensor *gFp = gFt ? d2r_keep(&s, flat_grad(F, np, phi)) : NULL;
  /* Inner gradient with its graph, for the second-order products. */
  d2r_tensor *L = gFp ? d2r_keep(&s, fns->inner_loss(fns->ctx)) : NULL;
  if (!L || d2r_autograd(1, &L, NULL, nt, theta, true, false, g) < 0)
    goto done;
  hvp_ctx h = {nt, g, theta};
  d2r_tensor *sol = NULL, *mixed = NULL;
  if (d2r_linsolve(cfg, hvp_op, &h, gFt, w0, &sol, info) < 0) goto done;
  d2r_keep(&s, sol);
  if (d2r_mixed_vp(nt, g, np, phi, sol, &mixed) < 0) goto done;
  d2r_keep(&s, mixed);
  *hypergrad = d2r_sub(gFp, mixed);
  if (!*hypergrad) goto done;
  if (w) *w = d2r_retain(sol);
  rc = 0;
done:
  for (int i = 0; i < nt; i++) d2r_release(g[i]);
  d2r_scope_end(&s);
  return rc;
}

/*
 * The d2r side of the benchmark workloads (see bench.h): the tabular
 * protocol's epoch, PG updates of Gaussian policies built from an MLP
 * and the diagonal Gaussian of dist.h, an implicit-differentiation outer
 * step of a learned reward on the toy problem, a sweep of toy runs in a
 * d2r process of its own, and the bare dgemm calls that the dynamics
 * updates make, for comparing rates.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "d2r/bilevel.h"
#include "d2r/closed_form.h"
#include "d2r/data.h"
#include "d2r/dist.h"
#include "d2r/nn.h"
#include "d2r/objective.h"
#include "d2r/optim.h"
#include "d2r/rng.h"
#include "d2r/tensor.h"

#define KEEP(e) d2r_keep(&s, (e))

const char *bench_data_dir = ".";

/* ---- shared pieces ------------------------------------------------------ */

/* Drops the old gradients, back-propagates loss and takes one step. */
static int update(d2r_optim *opt, d2r_tensor *loss) {
  if (loss == NULL) return -1;
  d2r_optim_zero_grad(opt);
  if (d2r_backward(loss) != 0) return -1;
  return d2r_optim_step(opt);
}

static d2r_optim *adam(d2r_model *m, double lr) {
  d2r_adam_config c = d2r_adam_defaults();
  c.lr = lr;
  return d2r_adam_new(d2r_model_nparams(m), d2r_model_params(m), &c);
}

double bench_mlp_flops(int nd, const int64_t *dims, int64_t batch) {
  double f = 0;
  for (int l = 0; l + 1 < nd; l++) {
    double mkn = 2.0 * (double)batch * (double)dims[l] * (double)dims[l + 1];
    f += l == 0 ? 2 * mkn : 3 * mkn;
  }
  return f;
}

/* ---- workload 1: one epoch of the tabular protocol ----------------------- */

#define TAB_BATCH 128
#define TAB_G 50
#define TAB_LAMBDA 0.1
#define TAB_LR 1e-2

typedef struct tab_state {
  d2r_rng *rng;
  d2r_tensor *x, *y;   /* standardised training rows, their labels */
  d2r_tensor *beta;    /* U = beta I, 0-d */
  int64_t n, classes;
  bool samples;        /* draw G samples a row instead of class counts */
  d2r_model *model;
  d2r_optim *opt;
  d2r_pg_options pg;
} tab_state;

static void tab_free(void *p) {
  tab_state *w = p;
  if (w == NULL) return;
  d2r_optim_free(w->opt);
  d2r_model_release(w->model);
  d2r_release(w->x);
  d2r_release(w->y);
  d2r_release(w->beta);
  d2r_rng_free(w->rng);
  free(w);
}

/* One batch of the protocol as scripts/uci_classification.lua runs it:
 * the class counts of G draws a row and the counts' surrogate; with
 * `samples`, the G class indices a row and the samples' surrogate (the
 * same estimator, drawn and summed per sample). */
static int tab_batch(tab_state *w, d2r_tensor *order, int64_t b) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *xb = KEEP(d2r_batch_rows(w->x, order, b, TAB_BATCH));
  d2r_tensor *yb = KEEP(d2r_batch_rows(w->y, order, b, TAB_BATCH));
  d2r_tensor *logits = KEEP(d2r_model_forward(w->model, xb));
  d2r_tensor *h = KEEP(d2r_categorical_entropy(logits));
  d2r_tensor *loss;
  if (w->samples) {
    d2r_tensor *smp = KEEP(d2r_categorical_sample(w->rng, logits, TAB_G));
    d2r_tensor *logp = KEEP(d2r_categorical_log_prob(logits, smp));
    d2r_tensor *r = KEEP(d2r_onehot_reward(smp, yb, w->classes, w->beta));
    loss = KEEP(d2r_pg_surrogate(logp, r, h, TAB_LAMBDA, &w->pg, NULL));
  } else {
    d2r_tensor *n = KEEP(d2r_categorical_counts(w->rng, logits, TAB_G));
    d2r_tensor *logp = KEEP(d2r_log_softmax(logits, 1));
    d2r_tensor *r = KEEP(d2r_onehot_reward_classes(yb, w->classes,
                                                   w->beta));
    loss = KEEP(d2r_pg_surrogate_counts(logp, r, n, h, TAB_LAMBDA, &w->pg,
                                        NULL));
  }
  int rc = update(w->opt, loss);
  d2r_scope_end(&s);
  return rc;
}

static int tab_step(void *p) {
  tab_state *w = p;
  d2r_tensor *order = d2r_batch_order(w->rng, w->n);
  int rc = order != NULL ? 0 : -1;
  int64_t nb = d2r_batch_count(w->n, TAB_BATCH);
  for (int64_t b = 0; rc == 0 && b < nb; b++) rc = tab_batch(w, order, b);
  d2r_release(order);
  return rc;
}

/* Reads breast_cancer, splits it as the protocol does (20% test, then
 * 20% of the rest for validation), standardises with the training rows'
 * statistics and sets beta* from the training labels. */
static int tab_setup(uint64_t seed, bool samples, bench_work *b) {
  char path[4096];
  snprintf(path, sizeof path, "%s/uci/breast_cancer.csv", bench_data_dir);
  tab_state *w = calloc(1, sizeof *w);
  if (w == NULL) return d2r_fail("out of memory"), -1;
  w->samples = samples;
  d2r_table *t = d2r_csv_read(path, "label");
  d2r_tensor *train = NULL, *val = NULL, *test = NULL, *xtr = NULL;
  d2r_standardizer *sd = NULL;
  double beta = 0;
  int rc = -1;
  w->rng = d2r_rng_new(seed);
  if (t == NULL || w->rng == NULL ||
      d2r_protocol_split(t->y, 0.2, 0.2, w->rng, &train, &val, &test) != 0)
    goto done;
  xtr = d2r_take_rows(t->x, train);
  sd = xtr != NULL ? d2r_standardizer_fit(xtr) : NULL;
  w->x = sd != NULL ? d2r_standardizer_apply(sd, xtr) : NULL;
  w->y = d2r_take_rows(t->y, train);
  w->n = d2r_dim(w->y, 0);
  w->classes = t->classes;
  if (w->x == NULL || w->y == NULL ||
      d2r_reward_onehot_beta(w->y, w->classes, TAB_LAMBDA, &beta) != 0)
    goto done;
  w->beta = d2r_scalar(beta);
  w->model = d2r_linear_new(t->features, w->classes, true, w->rng);
  w->opt = w->model != NULL ? adam(w->model, TAB_LR) : NULL;
  w->pg = d2r_pg_options_default();
  w->pg.transform = D2R_TRANSFORM_MIN_SHIFT;
  if (w->beta != NULL && w->opt != NULL) rc = 0;
done:
  d2r_standardizer_free(sd);
  d2r_release(xtr);
  d2r_release(train);
  d2r_release(val);
  d2r_release(test);
  d2r_table_free(t);
  if (rc != 0) {
    tab_free(w);
    return -1;
  }
  *b = (bench_work){samples ? "tab/smp" : "tabular", "epoch", w, tab_step,
                    tab_free, 0, w->n, NULL};
  return 0;
}

/* ---- workloads 2-4: PG updates of Gaussian policies --------------------- */

/*
 * The policy is an MLP from x to 2n outputs, read as a mean (the first
 * n) and a log standard deviation (the last n): a diagonal Gaussian.
 * One update draws G samples per input, scores them with a Mahalanobis
 * reward against the input's target and minimises the REINFORCE
 * surrogate with an entropy bonus (per-dimension conventions).
 */
typedef struct pol_state {
  d2r_rng *rng;
  d2r_tensor *x, *y, *U;
  int64_t n, G;
  double lambda;
  d2r_model *mlp;
  d2r_optim *opt;
  d2r_pg_options pg;
} pol_state;

static void pol_free(void *p) {
  pol_state *w = p;
  if (w == NULL) return;
  d2r_optim_free(w->opt);
  d2r_model_release(w->mlp);
  d2r_release(w->x);
  d2r_release(w->y);
  d2r_release(w->U);
  d2r_rng_free(w->rng);
  free(w);
}

static int pol_step(void *p) {
  pol_state *w = p;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *out = KEEP(d2r_model_forward(w->mlp, w->x));
  d2r_tensor *mean = KEEP(d2r_slice(out, 1, 0, w->n, 1));
  d2r_tensor *ls = KEEP(d2r_slice(out, 1, w->n, 2 * w->n, 1));
  d2r_tensor *yhat = KEEP(d2r_gaussian_sample(w->rng, mean, ls, w->G));
  d2r_tensor *logp = KEEP(d2r_gaussian_log_prob(mean, ls, yhat,
                                                D2R_REDUCE_MEAN_DIMS));
  d2r_tensor *r = KEEP(d2r_mahalanobis_reward(yhat, w->y, w->U));
  d2r_tensor *h = KEEP(d2r_gaussian_entropy(ls, D2R_REDUCE_MEAN_DIMS));
  d2r_tensor *loss = KEEP(d2r_pg_surrogate(logp, r, h, w->lambda, &w->pg,
                                           NULL));
  int rc = update(w->opt, loss);
  d2r_scope_end(&s);
  return rc;
}

typedef struct pol_spec {
  const char *name;
  int64_t in, n, batch, G;
  int nhidden;
  int64_t hidden[4];
  bool diagonal;   /* U = diag(u*) rather than u* I */
} pol_spec;

/* The toy problem's data (workloads 2, 5 and 6): rows inputs
 * x ~ U[-5, 5]^2 and their targets y = x + 2 + 1.25 eps (new references
 * in *x and *y); 0 or -1. */
static int toy_draw(d2r_rng *rng, int64_t rows, d2r_tensor **x,
                    d2r_tensor **y) {
  int64_t shape[2] = {rows, 2};
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *eps = KEEP(d2r_rand_normal(rng, 2, shape, 0.0, 1.0));
  *x = d2r_rand_uniform(rng, 2, shape, -5.0, 5.0);
  d2r_tensor *noise = KEEP(d2r_muls(eps, 1.25));
  *y = d2r_adds(KEEP(d2r_add(*x, noise)), 2.0);
  d2r_scope_end(&s);
  return *x != NULL && *y != NULL ? 0 : -1;
}

/* Inputs and targets: for the toy, x ~ U[-5, 5]^2 and y = x + loc +
 * sigma eps (METHOD.md's synthetic regression); for dynamics models,
 * x ~ N(0, I) and y = x[:, :n] / 2 + eps / 10. */
static int pol_data(pol_state *w, const pol_spec *sp) {
  int64_t xs[2] = {sp->batch, sp->in}, ys[2] = {sp->batch, sp->n};
  if (sp->diagonal) {
    if (toy_draw(w->rng, sp->batch, &w->x, &w->y) != 0) return -1;
    w->U = d2r_reward_diagonal(w->y, w->lambda);
    return w->U != NULL ? 0 : -1;
  }
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *eps = KEEP(d2r_rand_normal(w->rng, 2, ys, 0.0, 1.0));
  w->x = d2r_rand_normal(w->rng, 2, xs, 0.0, 1.0);
  d2r_tensor *head = KEEP(d2r_slice(w->x, 1, 0, sp->n, 1));
  w->y = d2r_add(KEEP(d2r_muls(head, 0.5)), KEEP(d2r_muls(eps, 0.1)));
  w->U = d2r_reward_isotropic(w->y, w->lambda);
  d2r_scope_end(&s);
  return w->x != NULL && w->y != NULL && w->U != NULL ? 0 : -1;
}

static int pol_setup(const pol_spec *sp, uint64_t seed, bench_work *b) {
  pol_state *w = calloc(1, sizeof *w);
  if (w == NULL) return d2r_fail("out of memory"), -1;
  w->n = sp->n;
  w->G = sp->G;
  w->lambda = 1.0;
  w->rng = d2r_rng_new(seed);
  w->pg = d2r_pg_options_default();
  if (w->rng == NULL || pol_data(w, sp) != 0) {
    pol_free(w);
    return -1;
  }
  w->mlp = d2r_mlp_new(sp->in, sp->nhidden, sp->hidden, 2 * sp->n,
                       D2R_ACT_RELU, w->rng);
  w->opt = w->mlp != NULL ? adam(w->mlp, 1e-2) : NULL;
  if (w->opt == NULL) {
    pol_free(w);
    return -1;
  }
  int64_t dims[6] = {sp->in};
  for (int i = 0; i < sp->nhidden; i++) dims[i + 1] = sp->hidden[i];
  dims[sp->nhidden + 1] = 2 * sp->n;
  double f = bench_mlp_flops(sp->nhidden + 2, dims, sp->batch);
  *b = (bench_work){sp->name, "update", w, pol_step, pol_free, f,
                    sp->batch, NULL};
  return 0;
}

static const pol_spec SPEC_TOY = {"gaussian", 2, 2, 10, 5, 2, {64, 64},
                                  true};
static const pol_spec SPEC_DYN = {"dynamics", 23, 17, 10000, 5, 2, {64, 64},
                                  false};
static const pol_spec SPEC_LARGE = {"large", 23, 17, 4096, 5, 4,
                                    {200, 200, 200, 200}, false};

/* ---- workload 5: an implicit-differentiation outer step ----------------- */

/*
 * The toy problem of workload 2 with a learned reward U = u I, u a 0-d
 * leaf (used as it is, no softplus) that starts at 1.  One outer step:
 *  (a) IMP_INNER PG updates of the policy as in workload 2 (Adam, lr
 *      1e-2) with the reward u I, u held constant; warm start: the
 *      policy and its Adam state carry over from one outer step to the
 *      next (bilevel.lua's inner_init = "warm");
 *  (b) the implicit hypergradient dF/du by d2r_implicit_hypergrad, with
 *      F the mean Gaussian NLL (per dimension) of IMP_BATCH held-out toy
 *      points, and L the inner objective in the "dice" form of
 *      bilevel.lua's pg_problem on one draw of G samples per input (the
 *      draw stays fixed through the solve): L's gradient is the REINFORCE
 *      surrogate's, its Hessian estimates the expected objective's.  The
 *      system H w = d_theta F is solved by CG, exactly IMP_CG iterations
 *      (tolerance 0) from w = 0 (bilevel.lua's default; on this
 *      indefinite, sampled Hessian a warm start carries an unconverged
 *      solve over from step to step until it overflows).  d2r_linsolve
 *      also multiplies the result, for the residual it reports: IMP_CG
 *      + 1 Hessian-vector products, as the PyTorch twin makes;
 *  (c) one Adam step on u (lr 1e-2) with that gradient, then u is kept
 *      >= IMP_U_MIN so that the reward stays a reward.
 */
#define IMP_INNER 50
#define IMP_CG 10
#define IMP_BATCH 10
#define IMP_G 5
#define IMP_N 2
#define IMP_LAMBDA 1.0
#define IMP_LR 1e-2
#define IMP_U_MIN 1e-3

typedef struct imp_state {
  d2r_rng *rng;
  d2r_tensor *x, *y;     /* training inputs and targets [B, n] */
  d2r_tensor *xv, *yv;   /* held-out inputs and targets [B, n] */
  d2r_tensor *u;         /* 0-d leaf: U = u I */
  d2r_model *mlp;
  d2r_optim *inner, *outer;
  d2r_pg_options pg;
  /* What the last outer step measured. */
  double hypergrad, val_nll, residual;
  int iterations;
} imp_state;

static void imp_free(void *p) {
  imp_state *w = p;
  if (w == NULL) return;
  d2r_optim_free(w->inner);
  d2r_optim_free(w->outer);
  d2r_model_release(w->mlp);
  d2r_release(w->x);
  d2r_release(w->y);
  d2r_release(w->xv);
  d2r_release(w->yv);
  d2r_release(w->u);
  d2r_rng_free(w->rng);
  free(w);
}

/* The policy's mean and log-std at x, kept in sc. */
static int imp_heads(imp_state *w, d2r_scope *sc, d2r_tensor *x,
                     d2r_tensor **mean, d2r_tensor **ls) {
  d2r_tensor *out = d2r_keep(sc, d2r_model_forward(w->mlp, x));
  *mean = d2r_keep(sc, d2r_slice(out, 1, 0, IMP_N, 1));
  *ls = d2r_keep(sc, d2r_slice(out, 1, IMP_N, 2 * IMP_N, 1));
  return *mean != NULL && *ls != NULL ? 0 : -1;
}

/* One inner PG update: workload 2's, with the reward u I. */
static int imp_update(imp_state *w) {
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mean, *ls;
  int rc = imp_heads(w, &s, w->x, &mean, &ls);
  d2r_tensor *yhat = KEEP(d2r_gaussian_sample(w->rng, mean, ls, IMP_G));
  d2r_tensor *logp = KEEP(d2r_gaussian_log_prob(mean, ls, yhat,
                                                D2R_REDUCE_MEAN_DIMS));
  d2r_tensor *U = KEEP(d2r_detach(w->u));
  d2r_tensor *r = KEEP(d2r_mahalanobis_reward(yhat, w->y, U));
  d2r_tensor *h = KEEP(d2r_gaussian_entropy(ls, D2R_REDUCE_MEAN_DIMS));
  d2r_tensor *loss = KEEP(d2r_pg_surrogate(logp, r, h, IMP_LAMBDA, &w->pg,
                                           NULL));
  if (rc == 0) rc = update(w->inner, loss);
  d2r_scope_end(&s);
  return rc;
}

/* L, the "dice" inner objective (transform and baseline none):
 *   -mean_bg(r_bg exp(lp_bg - stop(lp_bg))) / n - lambda mean_b(H_b)
 * with lp the joint log-density of the drawn samples and H the entropy
 * per dimension; the reward keeps its graph to u. */
static d2r_tensor *imp_inner_loss(void *ctx) {
  imp_state *w = ctx;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mean, *ls;
  imp_heads(w, &s, w->x, &mean, &ls);
  d2r_tensor *yhat = KEEP(d2r_gaussian_sample(w->rng, mean, ls, IMP_G));
  d2r_tensor *lp = KEEP(d2r_gaussian_log_prob(mean, ls, yhat,
                                              D2R_REDUCE_SUM_DIMS));
  d2r_tensor *ratio = KEEP(d2r_exp(KEEP(d2r_sub(lp, KEEP(d2r_detach(lp))))));
  d2r_tensor *r = KEEP(d2r_mahalanobis_reward(yhat, w->y, w->u));
  d2r_tensor *term = KEEP(d2r_mean_all(KEEP(d2r_mul(r, ratio))));
  d2r_tensor *h = KEEP(d2r_mean_all(KEEP(d2r_gaussian_entropy(
      ls, D2R_REDUCE_MEAN_DIMS))));
  d2r_tensor *loss = d2r_sub(KEEP(d2r_muls(term, -1.0 / IMP_N)),
                             KEEP(d2r_muls(h, IMP_LAMBDA)));
  d2r_scope_end(&s);
  return loss;
}

/* F, the held-out NLL per dimension (its value kept for the note). */
static d2r_tensor *imp_outer_loss(void *ctx) {
  imp_state *w = ctx;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *mean, *ls;
  imp_heads(w, &s, w->xv, &mean, &ls);
  d2r_tensor *F = d2r_gaussian_nll(mean, ls, w->yv, D2R_REDUCE_MEAN_DIMS);
  d2r_scope_end(&s);
  if (F != NULL) w->val_nll = d2r_item(F);
  return F;
}

static int imp_step(void *p) {
  imp_state *w = p;
  for (int k = 0; k < IMP_INNER; k++)
    if (imp_update(w) != 0) return -1;
  d2r_bilevel_fns fns = {imp_inner_loss, imp_outer_loss, w};
  d2r_solve_config cfg = D2R_SOLVE_CONFIG_INIT;
  cfg.kind = D2R_SOLVE_CG;
  cfg.tol = 0.0;
  cfg.max_iter = IMP_CG;
  d2r_tensor *hg = NULL, *sol = NULL;
  d2r_solve_info info;
  if (d2r_implicit_hypergrad(d2r_model_nparams(w->mlp),
                             d2r_model_params(w->mlp), 1, &w->u, &fns, &cfg,
                             NULL, &hg, &sol, &info) != 0)
    return -1;
  d2r_release(sol);
  w->hypergrad = d2r_item(hg);
  d2r_release(hg);
  w->residual = info.residual;
  w->iterations = info.iterations;
  if (!isfinite(w->hypergrad))
    return d2r_fail("implicit: the hypergradient is not finite"), -1;
  /* The hypergradient becomes u's gradient (d(u g)/du = g), then Adam. */
  d2r_optim_zero_grad(w->outer);
  d2r_tensor *t = d2r_muls(w->u, w->hypergrad);
  int rc = t != NULL && d2r_backward(t) == 0 ? d2r_optim_step(w->outer)
                                             : -1;
  d2r_release(t);
  if (rc == 0 && !(d2r_item(w->u) >= IMP_U_MIN))
    rc = d2r_fill_(w->u, IMP_U_MIN);
  return rc;
}

static void imp_note(void *p, char *buf, size_t size) {
  imp_state *w = p;
  snprintf(buf, size, "u:%.6g,hypergrad:%.6g,cg_iterations:%d,"
           "cg_residual:%.4g,val_nll:%.6g", d2r_item(w->u), w->hypergrad,
           w->iterations, w->residual, w->val_nll);
}

static int imp_setup(uint64_t seed, bench_work *b) {
  imp_state *w = calloc(1, sizeof *w);
  if (w == NULL) return d2r_fail("out of memory"), -1;
  w->hypergrad = w->val_nll = w->residual = NAN;
  w->pg = d2r_pg_options_default();
  w->rng = d2r_rng_new(seed);
  int64_t hidden[2] = {64, 64};
  d2r_adam_config c = d2r_adam_defaults();
  c.lr = IMP_LR;
  bool ok = w->rng != NULL &&
            toy_draw(w->rng, IMP_BATCH, &w->x, &w->y) == 0 &&
            toy_draw(w->rng, IMP_BATCH, &w->xv, &w->yv) == 0 &&
            (w->u = d2r_scalar(1.0)) != NULL &&
            d2r_set_requires_grad(w->u, true) == 0 &&
            (w->mlp = d2r_mlp_new(IMP_N, 2, hidden, 2 * IMP_N,
                                  D2R_ACT_RELU, w->rng)) != NULL &&
            (w->inner = adam(w->mlp, IMP_LR)) != NULL &&
            (w->outer = d2r_adam_new(1, &w->u, &c)) != NULL;
  if (!ok) {
    imp_free(w);
    return -1;
  }
  *b = (bench_work){"implicit", "outer_step", w, imp_step, imp_free, 0,
                    IMP_BATCH, imp_note};
  return 0;
}

/* ---- workload 6: a sweep of toy runs, end to end ------------------------- */

/*
 * One step runs `d2r bench/toy_sweep.lua` as a researcher would: a fresh
 * d2r process (the executable this program was built with) whose sweep
 * does SWEEP_RUNS toy runs (seeds 1..SWEEP_RUNS) of SWEEP_UPDATES
 * updates in `workers` worker processes (the BLAS thread count in force
 * here: the benchmark's thread count), storing each run's validation NLL
 * in a fresh temporary directory as it ends, then checking that the
 * store holds them all.  The directory is removed after the step.
 */
#ifndef D2R_BENCH_D2R_EXE
#define D2R_BENCH_D2R_EXE "d2r"
#endif
#ifndef D2R_BENCH_SOURCE_DIR
#define D2R_BENCH_SOURCE_DIR "."
#endif

#define SWEEP_RUNS 100
#define SWEEP_UPDATES 100

typedef struct sweep_state {
  int workers;
  const char *chunk;   /* runs per worker process: "auto" or a number */
  char script[4096];
  double nll_mean;     /* what the last sweep's script reported */
} sweep_state;

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

/* Removes dir and what it holds; 0 or -1 (with a message). */
static int remove_tree(const char *dir) {
  if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0) return 0;
  d2r_fail("sweep: cannot remove %s: %s", dir, strerror(errno));
  return -1;
}

/* Reads the script's output in path: its closing line's mean NLL into
 * *nll, and the message worth showing on a failure (the first line of
 * an error from d2r, else the last line) into msg. */
static void read_log(const char *path, double *nll, char *msg,
                     size_t size) {
  char line[1024];
  bool error_seen = false;
  *nll = NAN;
  msg[0] = '\0';
  FILE *f = fopen(path, "r");
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    const char *m = strstr(line, "validation NLL mean ");
    if (m != NULL) *nll = atof(m + strlen("validation NLL mean "));
    if (line[0] == '\0' || error_seen) continue;
    snprintf(msg, size, "%s", line);
    error_seen = strncmp(line, "d2r: ", 5) == 0;
  }
  if (f != NULL) fclose(f);
}

/* Runs the script with its output going to log; the exit status, or -1
 * (with a message) when it could not be run or did not exit. */
static int sweep_run(sweep_state *w, const char *dir, const char *log) {
  char workers[16], runs[16], updates[16];
  snprintf(workers, sizeof workers, "%d", w->workers);
  snprintf(runs, sizeof runs, "%d", SWEEP_RUNS);
  snprintf(updates, sizeof updates, "%d", SWEEP_UPDATES);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    d2r_fail("sweep: fork: %s", strerror(errno));
    return -1;
  }
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execl(D2R_BENCH_D2R_EXE, "d2r", w->script, "--out", dir, "--runs",
          runs, "--updates", updates, "--workers", workers, "--chunk",
          w->chunk, (char *)NULL);
    fprintf(stderr, "d2r: cannot run %s: %s\n", D2R_BENCH_D2R_EXE,
            strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      d2r_fail("sweep: waitpid: %s", strerror(errno));
      return -1;
    }
  if (!WIFEXITED(st)) {
    d2r_fail("sweep: d2r was killed by signal %d", WTERMSIG(st));
    return -1;
  }
  return WEXITSTATUS(st);
}

static int sweep_step(void *p) {
  sweep_state *w = p;
  const char *tmp = getenv("TMPDIR");
  char dir[4096], log[4160], msg[1024];
  snprintf(dir, sizeof dir, "%s/d2r_bench_sweep.XXXXXX",
           tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) {
    d2r_fail("sweep: cannot make %s: %s", dir, strerror(errno));
    return -1;
  }
  snprintf(log, sizeof log, "%s/log.txt", dir);
  int status = sweep_run(w, dir, log);
  read_log(log, &w->nll_mean, msg, sizeof msg);
  if (status > 0)
    d2r_fail("sweep: d2r exited with status %d: %s", status, msg);
  int rc = status == 0 ? 0 : -1;
  if (remove_tree(dir) != 0) rc = -1;
  return rc;
}

static void sweep_note(void *p, char *buf, size_t size) {
  sweep_state *w = p;
  snprintf(buf, size, "workers:%d,chunk:%s,runs:%d,updates:%d,"
           "val_nll_mean:%.6g", w->workers, w->chunk, SWEEP_RUNS,
           SWEEP_UPDATES, w->nll_mean);
}

static int sweep_setup(const char *chunk, bench_work *b) {
  sweep_state *w = calloc(1, sizeof *w);
  if (w == NULL) return d2r_fail("out of memory"), -1;
  w->chunk = chunk;
  snprintf(w->script, sizeof w->script, "%s/bench/toy_sweep.lua",
           D2R_BENCH_SOURCE_DIR);
  int threads = d2r_blas_threads(0);
  w->workers = threads >= 1 ? threads : 1;
  w->nll_mean = NAN;
  const char *what = NULL, *path = NULL;
  if (access(D2R_BENCH_D2R_EXE, X_OK) != 0)
    what = "the d2r executable", path = D2R_BENCH_D2R_EXE;
  else if (access(w->script, R_OK) != 0)
    what = "the sweep script", path = w->script;
  if (what != NULL) {
    d2r_fail("sweep: cannot use %s %s: %s", what, path, strerror(errno));
    free(w);
    return -1;
  }
  *b = (bench_work){"sweep", "sweep", w, sweep_step, free, 0, 0,
                    sweep_note};
  return 0;
}

/* ---- bare dgemm: the products of a dynamics update ----------------------- */

typedef struct gemm_state {
  int nl;                /* layers */
  int64_t batch;
  int64_t dims[8];
  double *act[8];        /* [batch, dims[l]] */
  double *w[8];          /* [dims[l], dims[l+1]] */
  double *dw;            /* largest weight */
  double *g, *dx;        /* largest [batch, width] */
} gemm_state;

static void gemm_free(void *p) {
  gemm_state *w = p;
  if (w == NULL) return;
  for (int l = 0; l <= w->nl; l++) free(w->act[l]);
  for (int l = 0; l < w->nl; l++) free(w->w[l]);
  free(w->dw);
  free(w->g);
  free(w->dx);
  free(w);
}

/* The products of one update in the order d2r makes them: forward
 * x_{l+1} = x_l W_l; backward dW_l = x_l^T g_l and, but for the first
 * layer, dx_l = g_l W_l^T.  Values are arbitrary (random). */
static int gemm_step(void *p) {
  gemm_state *w = p;
  int m = (int)w->batch;
  for (int l = 0; l < w->nl; l++) {
    int k = (int)w->dims[l], n = (int)w->dims[l + 1];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0,
                w->act[l], k, w->w[l], n, 0.0, w->act[l + 1], n);
  }
  for (int l = w->nl - 1; l >= 0; l--) {
    int k = (int)w->dims[l], n = (int)w->dims[l + 1];
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, n, m, 1.0,
                w->act[l], k, w->g, n, 0.0, w->dw, n);
    if (l > 0)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, n, 1.0,
                  w->g, n, w->w[l], n, 0.0, w->dx, k);
  }
  return 0;
}

static double *rand_block(d2r_rng *r, int64_t count) {
  double *p = malloc((size_t)count * sizeof *p);
  for (int64_t i = 0; p != NULL && i < count; i++)
    p[i] = d2r_rng_uniform(r) - 0.5;
  return p;
}

static int gemm_setup(const char *name, int nl, const int64_t *dims,
                      int64_t batch, bench_work *b) {
  gemm_state *w = calloc(1, sizeof *w);
  d2r_rng *r = d2r_rng_new(1);
  if (w == NULL || r == NULL) {
    free(w);
    d2r_rng_free(r);
    return d2r_fail("out of memory"), -1;
  }
  w->nl = nl;
  w->batch = batch;
  memcpy(w->dims, dims, (size_t)(nl + 1) * sizeof *dims);
  int64_t widest = 0, wmax = 0;
  bool ok = true;
  for (int l = 0; l <= nl; l++) {
    widest = dims[l] > widest ? dims[l] : widest;
    ok = ok && (w->act[l] = rand_block(r, batch * dims[l])) != NULL;
    if (l < nl) {
      int64_t c = dims[l] * dims[l + 1];
      wmax = c > wmax ? c : wmax;
      ok = ok && (w->w[l] = rand_block(r, c)) != NULL;
    }
  }
  ok = ok && (w->dw = rand_block(r, wmax)) != NULL;
  ok = ok && (w->g = rand_block(r, batch * widest)) != NULL;
  ok = ok && (w->dx = rand_block(r, batch * widest)) != NULL;
  d2r_rng_free(r);
  if (!ok) {
    gemm_free(w);
    return d2r_fail("out of memory"), -1;
  }
  double f = bench_mlp_flops(nl + 1, dims, batch);
  *b = (bench_work){name, "set", w, gemm_step, gemm_free, f, batch, NULL};
  return 0;
}

static int gemm_spec_setup(const pol_spec *sp, const char *name,
                           bench_work *b) {
  int64_t dims[8] = {sp->in};
  for (int i = 0; i < sp->nhidden; i++) dims[i + 1] = sp->hidden[i];
  dims[sp->nhidden + 1] = 2 * sp->n;
  return gemm_setup(name, sp->nhidden + 1, dims, sp->batch, b);
}

/* ---- the baseline: nothing ----------------------------------------------- */

static int nothing(void *p) {
  (void)p;
  return 0;
}

/* ---- the table of workloads -------------------------------------------- */

int bench_known(int w) { return bench_describe(w) != NULL; }

const char *bench_describe(int w) {
  switch (w) {
  case W_BASELINE: return "baseline: the process alone";
  case W_TABULAR:
    return "tabular epoch: breast_cancer, linear, B 128, G 50, min-shift";
  case W_TABULAR_SAMPLES:
    return "tabular epoch as 1, d2r drawing G samples a row, not counts";
  case W_GAUSSIAN: return "toy Gaussian PG update: MLP [64,64], B 10, G 5";
  case W_DYNAMICS:
    return "dynamics PG update: MLP 23-[64,64]-34, B 10000, G 5";
  case W_LARGE:
    return "large dynamics PG update: MLP 23-4x[200]-34, B 4096, G 5";
  case W_IMPLICIT:
    return "implicit-diff outer step: 50 inner steps, 10 CG iterations, "
           "U = u I";
  case W_SWEEP:
    return "sweep: 100 toy runs of 100 updates, a d2r process end to end";
  case W_SWEEP_ISOLATED:
    return "sweep as 6, a worker process per run (--chunk 1)";
  case W_GEMM3: return "bare dgemm: the products of workload 3";
  case W_GEMM4: return "bare dgemm: the products of workload 4";
  case W_GEMM_SQ: return "bare dgemm: 1024 x 1024 x 1024";
  default: return NULL;
  }
}

int bench_setup(int w, uint64_t seed, bench_work *out) {
  int64_t sq[2] = {1024, 1024};
  switch (w) {
  case W_BASELINE:
    *out = (bench_work){"baseline", "step", NULL, nothing, NULL, 0, 0,
                        NULL};
    return 0;
  case W_TABULAR: return tab_setup(seed, false, out);
  case W_TABULAR_SAMPLES: return tab_setup(seed, true, out);
  case W_GAUSSIAN: return pol_setup(&SPEC_TOY, seed, out);
  case W_DYNAMICS: return pol_setup(&SPEC_DYN, seed, out);
  case W_LARGE: return pol_setup(&SPEC_LARGE, seed, out);
  case W_IMPLICIT: return imp_setup(seed, out);
  case W_SWEEP: return sweep_setup("auto", out);
  case W_SWEEP_ISOLATED: return sweep_setup("1", out);
  case W_GEMM3: return gemm_spec_setup(&SPEC_DYN, "gemm3", out);
  case W_GEMM4: return gemm_spec_setup(&SPEC_LARGE, "gemm4", out);
  case W_GEMM_SQ: return gemm_setup("gemm1024", 1, sq, 1024, out);
  default:
    d2r_fail("unknown workload %d", w);
    return -1;
  }
}

void bench_teardown(bench_work *b) {
  if (b->free_state != NULL) b->free_state(b->state);
  b->state = NULL;
}

/* ---- results that depend on the BLAS kernels ----------------------------- */

static int64_t put(double *out, int64_t at, int64_t cap, d2r_tensor *t) {
  if (t == NULL || at < 0) return -1;
  int64_t n = d2r_numel(t);
  if (at + n > cap) return d2r_fail("kernel check: buffer too small"), -1;
  d2r_tensor *c = d2r_contiguous(t);
  if (c == NULL) return -1;
  memcpy(out + at, d2r_data(c), (size_t)n * sizeof *out);
  d2r_release(c);
  return at + n;
}

int64_t bench_kernel_check(double *out, int64_t cap) {
  d2r_rng *r = d2r_rng_new(7);
  int64_t as[2] = {67, 131}, bs[2] = {131, 45};
  d2r_tensor *a = d2r_rand_normal(r, 2, as, 0.0, 1.0);
  d2r_tensor *bm = d2r_rand_normal(r, 2, bs, 0.0, 1.0);
  d2r_tensor *c = d2r_matmul(a, bm);
  int64_t at = put(out, 0, cap, c);
  d2r_release(a);
  d2r_release(bm);
  d2r_release(c);
  d2r_rng_free(r);
  bench_work w;
  if (at < 0 || bench_setup(W_DYNAMICS, 7, &w) != 0) return -1;
  pol_state *ps = w.state;
  int n = d2r_model_nparams(ps->mlp);
  d2r_tensor *const *params = d2r_model_params(ps->mlp);
  if (w.step(w.state) == 0) {
    d2r_tensor *g = d2r_params_grad_flat(n, params);
    d2r_tensor *p = d2r_params_flatten(n, params);
    at = put(out, put(out, at, cap, g), cap, p);
    d2r_release(g);
    d2r_release(p);
  } else {
    at = -1;
  }
  bench_teardown(&w);
  return at;
}

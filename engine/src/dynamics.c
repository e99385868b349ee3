/*
 * Learned dynamics models (dynamics.h): ensembles of Gaussian MLP
 * policies over normalised [s, a], their losses and training loop,
 * elite selection, the metrics of the paper's model-based table,
 * open-loop rollouts, and the adapter that lets a planner act through a
 * learned model with the environment's known reward function.
 */
#include "d2r/dynamics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/closed_form.h"
#include "d2r/data.h"
#include "d2r/linalg.h"
#include "d2r/nn.h"
#include "d2r/optim.h"

#define KEEP(t) d2r_keep(&s, (t))
#define HALF_LOG_2PI 0.91893853320467274178

struct d2r_dyn {
  d2r_dyn_config cfg;
  int64_t *hidden;          /* the config's sizes, owned */
  d2r_policy **members;     /* [ensemble] */
  int *elites, nelites;
  bool fitted;
  d2r_tensor *in_mean, *in_std, *out_mean, *out_std;
  /* The planner adapter's setting. */
  d2r_env *plan_env;
  d2r_dyn_mode plan_mode;
  d2r_rng *plan_rng;
};

/* ---- construction ------------------------------------------------------- */

d2r_dyn_config d2r_dyn_config_default(int64_t obs_dim, int64_t act_dim) {
  static const int64_t hidden[2] = {64, 64};
  d2r_dyn_config c;
  memset(&c, 0, sizeof c);
  c.obs_dim = obs_dim;
  c.act_dim = act_dim;
  c.target = D2R_DYN_DELTA;
  c.nhidden = 2;
  c.hidden = hidden;
  c.act = D2R_ACT_RELU;
  c.log_std = D2R_LOG_STD_HEAD;
  c.min_log_std = -10;
  c.max_log_std = 0.5;
  c.std_floor = 1e-6;
  c.ensemble = 1;
  c.elites = 1;
  return c;
}

void d2r_dyn_free(d2r_dyn *m) {
  if (m == NULL) return;
  for (int i = 0; m->members && i < m->cfg.ensemble; i++)
    d2r_policy_free(m->members[i]);
  free(m->members);
  free(m->hidden);
  free(m->elites);
  d2r_release(m->in_mean);
  d2r_release(m->in_std);
  d2r_release(m->out_mean);
  d2r_release(m->out_std);
  d2r_rng_free(m->plan_rng);
  free(m);
}

static int check_config(const d2r_dyn_config *c) {
  const char *bad = NULL;
  if (c->obs_dim < 1 || c->act_dim < 1)
    bad = "obs_dim and act_dim must be >= 1";
  else if (c->target != D2R_DYN_DELTA && c->target != D2R_DYN_NEXT)
    bad = "target must be delta or next";
  else if (c->ensemble < 1 || c->ensemble > 1000)
    bad = "ensemble must be in 1..1000";
  else if (c->elites < 1 || c->elites > c->ensemble)
    bad = "elites must be in 1..ensemble";
  else if (!(c->std_floor > 0) || !isfinite(c->std_floor))
    bad = "std_floor must be positive and finite";
  if (bad) {
    d2r_fail("dynamics: %s", bad);
    return -1;
  }
  return 0;
}

d2r_dyn *d2r_dyn_new(const d2r_dyn_config *cfg, d2r_rng *rng) {
  if (cfg == NULL || rng == NULL)
    return d2r_fail("dynamics: a configuration and a generator are "
                    "required");
  if (check_config(cfg) < 0) return NULL;
  d2r_dyn *m = calloc(1, sizeof *m);
  if (m == NULL) return d2r_fail("dynamics: out of memory");
  m->cfg = *cfg;
  int nh = cfg->nhidden > 0 ? cfg->nhidden : 0;
  m->hidden = malloc((size_t)(nh > 0 ? nh : 1) * sizeof(int64_t));
  m->members = calloc((size_t)cfg->ensemble, sizeof(d2r_policy *));
  m->elites = malloc((size_t)cfg->ensemble * sizeof(int));
  if (!m->hidden || !m->members || !m->elites) {
    d2r_dyn_free(m);
    return d2r_fail("dynamics: out of memory");
  }
  if (nh > 0 && cfg->hidden)
    memcpy(m->hidden, cfg->hidden, (size_t)nh * sizeof(int64_t));
  m->cfg.hidden = m->hidden;
  d2r_policy_config pc = d2r_policy_config_default(
    D2R_POLICY_GAUSSIAN, cfg->obs_dim + cfg->act_dim, cfg->obs_dim);
  pc.nhidden = cfg->nhidden;
  pc.hidden = m->hidden;
  pc.act = cfg->act;
  pc.log_std = cfg->log_std;
  pc.log_std_init = cfg->log_std_init;
  pc.bounded = cfg->bounded;
  pc.min_log_std = cfg->min_log_std;
  pc.max_log_std = cfg->max_log_std;
  pc.learn_bounds = cfg->learn_bounds;
  for (int i = 0; i < cfg->ensemble; i++) {
    m->members[i] = d2r_policy_new(&pc, rng);
    if (m->members[i] == NULL) {
      d2r_dyn_free(m);
      return NULL;
    }
  }
  for (int i = 0; i < cfg->elites; i++) m->elites[i] = i;
  m->nelites = cfg->elites;
  return m;
}

const d2r_dyn_config *d2r_dyn_get_config(const d2r_dyn *m) {
  return m ? &m->cfg : NULL;
}

int d2r_dyn_members(const d2r_dyn *m) { return m ? m->cfg.ensemble : -1; }

d2r_policy *d2r_dyn_member(const d2r_dyn *m, int i) {
  if (m == NULL) return NULL;
  if (i < 0 || i >= m->cfg.ensemble)
    return d2r_fail("dynamics: no member %d (the ensemble has %d)", i,
                    m->cfg.ensemble);
  return m->members[i];
}

const int *d2r_dyn_elites(const d2r_dyn *m, int *n) {
  if (m == NULL) return NULL;
  if (n) *n = m->nelites;
  return m->elites;
}

static int by_int(const void *a, const void *b) {
  return *(const int *)a - *(const int *)b;
}

int d2r_dyn_set_elites(d2r_dyn *m, int n, const int *idx) {
  if (m == NULL) return -1;
  if (n < 1 || n > m->cfg.ensemble || idx == NULL) {
    d2r_fail("dynamics: between 1 and %d elites are needed (got %d)",
             m->cfg.ensemble, n);
    return -1;
  }
  int tmp[1000];
  for (int i = 0; i < n; i++) {
    if (idx[i] < 0 || idx[i] >= m->cfg.ensemble) {
      d2r_fail("dynamics: no member %d", idx[i]);
      return -1;
    }
    tmp[i] = idx[i];
  }
  qsort(tmp, (size_t)n, sizeof(int), by_int);
  for (int i = 1; i < n; i++) {
    if (tmp[i] == tmp[i - 1]) {
      d2r_fail("dynamics: member %d is listed twice", tmp[i]);
      return -1;
    }
  }
  memcpy(m->elites, tmp, (size_t)n * sizeof(int));
  m->nelites = n;
  return 0;
}

/* ---- normalisation ------------------------------------------------------ */

/* Mean and population std of the columns of v [n, d] into mean, std,
 * the std raised to at least floor. */
static void column_stats(const double *v, int64_t n, int64_t d,
                         double floor, double *mean, double *std) {
  for (int64_t j = 0; j < d; j++) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) s += v[i * d + j];
    double mu = s / (double)n;
    for (int64_t i = 0; i < n; i++) {
      double e = v[i * d + j] - mu;
      ss += e * e;
    }
    double sd = sqrt(ss / (double)n);
    mean[j] = mu;
    std[j] = sd > floor ? sd : floor;
  }
}

static bool dataset_fits(const d2r_dyn *m, const d2r_dataset *d) {
  if (d == NULL) return false;
  if (d->obs_dim != m->cfg.obs_dim || d->act_dim != m->cfg.act_dim) {
    d2r_fail("dynamics: the model is for %lld observation and %lld action "
             "values; the dataset '%s' has %lld and %lld",
             (long long)m->cfg.obs_dim, (long long)m->cfg.act_dim, d->env,
             (long long)d->obs_dim, (long long)d->act_dim);
    return false;
  }
  return true;
}

int d2r_dyn_fit(d2r_dyn *m, const d2r_dataset *d) {
  if (m == NULL || !dataset_fits(m, d)) return -1;
  int64_t n = d->size, od = d->obs_dim, ad = d->act_dim, di = od + ad;
  double *buf = malloc((size_t)(n * (di + od) + 2 * (di + od)) *
                       sizeof(double));
  if (buf == NULL) {
    d2r_fail("dynamics: out of memory");
    return -1;
  }
  double *in = buf, *out = buf + n * di, *st = out + n * od;
  const double *o = d2r_data(d->obs), *a = d2r_data(d->act);
  const double *no = d2r_data(d->next_obs);
  for (int64_t i = 0; i < n; i++) {
    memcpy(in + i * di, o + i * od, (size_t)od * sizeof(double));
    memcpy(in + i * di + od, a + i * ad, (size_t)ad * sizeof(double));
    for (int64_t j = 0; j < od; j++)
      out[i * od + j] = no[i * od + j] -
                        (m->cfg.target == D2R_DYN_DELTA ? o[i * od + j]
                                                        : 0.0);
  }
  double floor = m->cfg.std_floor;
  column_stats(in, n, di, floor, st, st + di);
  column_stats(out, n, od, floor, st + 2 * di, st + 2 * di + od);
  d2r_tensor *t[4] = {d2r_vector(di, st), d2r_vector(di, st + di),
                      d2r_vector(od, st + 2 * di),
                      d2r_vector(od, st + 2 * di + od)};
  free(buf);
  if (!t[0] || !t[1] || !t[2] || !t[3]) {
    for (int i = 0; i < 4; i++) d2r_release(t[i]);
    return -1;
  }
  d2r_release(m->in_mean);
  d2r_release(m->in_std);
  d2r_release(m->out_mean);
  d2r_release(m->out_std);
  m->in_mean = t[0];
  m->in_std = t[1];
  m->out_mean = t[2];
  m->out_std = t[3];
  m->fitted = true;
  return 0;
}

bool d2r_dyn_fitted(const d2r_dyn *m) { return m && m->fitted; }

static bool need_fit(const d2r_dyn *m) {
  if (!m->fitted) {
    d2r_fail("dynamics: the normalisers are not fitted (fit or train "
             "the model on a dataset first)");
    return false;
  }
  return true;
}

int d2r_dyn_normalizers(const d2r_dyn *m, d2r_tensor **in_mean,
                        d2r_tensor **in_std, d2r_tensor **out_mean,
                        d2r_tensor **out_std) {
  if (m == NULL || !need_fit(m)) return -1;
  if (in_mean) *in_mean = d2r_clone(m->in_mean);
  if (in_std) *in_std = d2r_clone(m->in_std);
  if (out_mean) *out_mean = d2r_clone(m->out_mean);
  if (out_std) *out_std = d2r_clone(m->out_std);
  return 0;
}

static bool check_rows(const d2r_dyn *m, d2r_tensor *a, int64_t cols,
                       const char *what, const char *fn) {
  char buf[64];
  if (d2r_ndim(a) == 2 && d2r_dim(a, 1) == cols) return true;
  d2r_fail("dynamics: %s: %s must be [N, %lld], got %s", fn, what,
           (long long)cols, d2r_shape_str(a, buf, sizeof buf));
  (void)m;
  return false;
}

d2r_tensor *d2r_dyn_inputs(const d2r_dyn *m, d2r_tensor *obs,
                           d2r_tensor *act) {
  if (m == NULL || obs == NULL || act == NULL || !need_fit(m)) return NULL;
  if (!check_rows(m, obs, m->cfg.obs_dim, "obs", "inputs") ||
      !check_rows(m, act, m->cfg.act_dim, "act", "inputs"))
    return NULL;
  if (d2r_dim(obs, 0) != d2r_dim(act, 0))
    return d2r_fail("dynamics: inputs: %lld observations but %lld actions",
                    (long long)d2r_dim(obs, 0), (long long)d2r_dim(act, 0));
  bool g = d2r_set_grad_enabled(false);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *parts[2] = {obs, act};
  d2r_tensor *x = KEEP(d2r_cat(2, parts, 1));
  d2r_tensor *out = d2r_div(KEEP(d2r_sub(x, m->in_mean)), m->in_std);
  d2r_scope_end(&s);
  d2r_set_grad_enabled(g);
  return out;
}

d2r_tensor *d2r_dyn_targets(const d2r_dyn *m, d2r_tensor *obs,
                            d2r_tensor *next_obs) {
  if (m == NULL || obs == NULL || next_obs == NULL || !need_fit(m))
    return NULL;
  if (!check_rows(m, obs, m->cfg.obs_dim, "obs", "targets") ||
      !check_rows(m, next_obs, m->cfg.obs_dim, "next_obs", "targets"))
    return NULL;
  bool g = d2r_set_grad_enabled(false);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *t = m->cfg.target == D2R_DYN_DELTA
    ? KEEP(d2r_sub(next_obs, obs)) : next_obs;
  d2r_tensor *out = d2r_div(KEEP(d2r_sub(t, m->out_mean)), m->out_std);
  d2r_scope_end(&s);
  d2r_set_grad_enabled(g);
  return out;
}

int d2r_dyn_data(const d2r_dyn *m, const d2r_dataset *d, d2r_tensor **x,
                 d2r_tensor **y) {
  *x = *y = NULL;
  if (m == NULL || !dataset_fits(m, d)) return -1;
  *x = d2r_dyn_inputs(m, d->obs, d->act);
  *y = d2r_dyn_targets(m, d->obs, d->next_obs);
  if (*x == NULL || *y == NULL) {
    d2r_release(*x);
    d2r_release(*y);
    *x = *y = NULL;
    return -1;
  }
  return 0;
}

/* ---- losses ------------------------------------------------------------- */

d2r_dyn_loss_config d2r_dyn_loss_default(d2r_dyn_loss_kind kind) {
  d2r_dyn_loss_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.lambda = 1.0;
  c.group = 5;
  c.pg = d2r_pg_options_default();
  return c;
}

const char *d2r_dyn_loss_name(d2r_dyn_loss_kind kind) {
  static const char *const names[] = {"mse", "nll", "pg"};
  return (unsigned)kind < 3 ? names[kind] : NULL;
}

int d2r_dyn_loss_parse(const char *name, d2r_dyn_loss_kind *out) {
  for (int k = 0; k < 3; k++) {
    if (name && strcmp(name, d2r_dyn_loss_name(k)) == 0) {
      *out = (d2r_dyn_loss_kind)k;
      return 0;
    }
  }
  d2r_fail("dynamics: unknown loss '%s' (mse, nll or pg)",
           name ? name : "(null)");
  return -1;
}

static d2r_tensor *pg_loss(const d2r_pdist *d, d2r_tensor *y,
                           const d2r_dyn_loss_config *lc, d2r_rng *rng,
                           d2r_pg_stats *stats) {
  if (lc->U == NULL)
    return d2r_fail("dynamics: the PG loss needs a reward matrix U");
  if (rng == NULL)
    return d2r_fail("dynamics: the PG loss needs a generator");
  if (lc->group < 1 || !(lc->lambda >= 0))
    return d2r_fail("dynamics: PG needs group >= 1 and lambda >= 0");
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *yhat = KEEP(d2r_pdist_sample(rng, d, lc->group));
  d2r_tensor *logp = KEEP(d2r_pdist_log_prob(d, yhat,
                                             D2R_REDUCE_MEAN_DIMS));
  d2r_tensor *r = KEEP(d2r_mahalanobis_reward(yhat, y, lc->U));
  d2r_tensor *ent = lc->lambda > 0
    ? KEEP(d2r_pdist_entropy(d, D2R_REDUCE_MEAN_DIMS)) : NULL;
  d2r_tensor *out = (lc->lambda > 0 && ent == NULL) ? NULL
    : d2r_pg_surrogate(logp, r, ent, lc->lambda, &lc->pg, stats);
  d2r_scope_end(&s);
  return out;
}

d2r_tensor *d2r_dyn_loss(d2r_dyn *m, int i, d2r_tensor *x, d2r_tensor *y,
                         const d2r_dyn_loss_config *lc, d2r_rng *rng,
                         d2r_pg_stats *stats) {
  if (m == NULL || x == NULL || y == NULL) return NULL;
  if (lc == NULL) return d2r_fail("dynamics: loss needs a configuration");
  d2r_policy *p = d2r_dyn_member(m, i);
  if (p == NULL) return NULL;
  if (!check_rows(m, x, m->cfg.obs_dim + m->cfg.act_dim, "x", "loss") ||
      !check_rows(m, y, m->cfg.obs_dim, "y", "loss"))
    return NULL;
  d2r_pdist d = D2R_PDIST_INIT;
  if (d2r_policy_dist(p, x, &d) < 0) return NULL;
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *loss = NULL;
  switch (lc->kind) {
  case D2R_DYN_MSE: loss = KEEP(d2r_mse(d.mean, y)); break;
  case D2R_DYN_NLL:
    loss = KEEP(d2r_gaussian_nll(d.mean, d.log_std, y,
                                 D2R_REDUCE_MEAN_DIMS));
    break;
  case D2R_DYN_PG: loss = KEEP(pg_loss(&d, y, lc, rng, stats)); break;
  default: d2r_fail("dynamics: unknown loss kind %d", (int)lc->kind);
  }
  const d2r_policy_config *pc = d2r_policy_get_config(p);
  if (loss && pc->learn_bounds && lc->bounds_penalty != 0) {
    d2r_tensor *pen = KEEP(d2r_policy_bounds_penalty(p));
    loss = KEEP(d2r_add(loss, KEEP(d2r_muls(pen, lc->bounds_penalty))));
  }
  d2r_tensor *out = d2r_retain(loss);
  d2r_scope_end(&s);
  d2r_pdist_clear(&d);
  return out;
}

d2r_tensor *d2r_dyn_reward_matrix(const d2r_dyn *m, const d2r_dataset *d,
                                  const char *kind, double lambda) {
  if (m == NULL || !dataset_fits(m, d) || !need_fit(m)) return NULL;
  if (kind == NULL) kind = "(null)";
  if (strcmp(kind, "identity") == 0) return d2r_scalar(1.0);
  if (!(lambda > 0) || !isfinite(lambda))
    return d2r_fail("dynamics: reward_matrix needs lambda > 0 (got %g)",
                    lambda);
  d2r_tensor *y = d2r_dyn_targets(m, d->obs, d->next_obs);
  if (y == NULL) return NULL;
  d2r_tensor *u = NULL;
  if (strcmp(kind, "isotropic") == 0) {
    u = d2r_reward_isotropic(y, lambda);
  } else if (strcmp(kind, "diagonal") == 0) {
    /* A dimension that never changes gets the isotropic u, as under
     * "full". */
    d2r_tensor *iso = d2r_reward_isotropic(y, lambda);
    if (iso)
      u = d2r_reward_diagonal_pinv(y, lambda, D2R_DYN_PINV_RTOL,
                                   d2r_item(iso));
    d2r_release(iso);
  } else if (strcmp(kind, "full") == 0) {
    /* Constant directions get the isotropic u*, as under U = u* I. */
    bool g = d2r_set_grad_enabled(false);
    d2r_tensor *cov = d2r_covariance(y);
    d2r_tensor *iso = cov ? d2r_reward_isotropic(y, lambda) : NULL;
    if (iso)
      u = d2r_reward_full_pinv(cov, lambda, D2R_DYN_PINV_RTOL,
                               d2r_item(iso), NULL);
    d2r_release(iso);
    d2r_release(cov);
    d2r_set_grad_enabled(g);
  } else {
    d2r_fail("dynamics: unknown reward matrix '%s' (identity, isotropic, "
             "diagonal or full)", kind);
  }
  d2r_release(y);
  return u;
}

/* ---- training ----------------------------------------------------------- */

d2r_dyn_train_config d2r_dyn_train_default(d2r_dyn_loss_kind kind) {
  d2r_dyn_train_config c;
  memset(&c, 0, sizeof c);
  c.loss = d2r_dyn_loss_default(kind);
  c.lr = 1e-3;
  c.steps = 400;
  return c;
}

/* The mean prediction of member i at x (no history). */
static d2r_tensor *member_mean(d2r_dyn *m, int i, d2r_tensor *x) {
  d2r_pdist d = D2R_PDIST_INIT;
  bool g = d2r_set_grad_enabled(false);
  d2r_tensor *out = NULL;
  if (d2r_policy_dist(m->members[i], x, &d) == 0)
    out = d2r_retain(d.mean);
  d2r_pdist_clear(&d);
  d2r_set_grad_enabled(g);
  return out;
}

static double mse_of(d2r_tensor *a, d2r_tensor *b) {
  d2r_tensor *e = d2r_mse(a, b);
  double v = e ? d2r_item(e) : NAN;
  d2r_release(e);
  return v;
}

/* Trains member i on x, y; adds skipped steps to *skipped and the last
 * finite loss to *last. */
static int train_member(d2r_dyn *m, int i, d2r_tensor *x, d2r_tensor *y,
                        const d2r_dyn_train_config *tc, d2r_rng *rng,
                        int64_t *skipped, double *last) {
  d2r_policy *p = m->members[i];
  int np = d2r_policy_nparams(p);
  d2r_tensor *const *params = d2r_policy_params(p);
  d2r_adam_config ac = d2r_adam_defaults();
  ac.lr = tc->lr;
  d2r_optim *opt = d2r_adam_new(np, params, &ac);
  if (opt == NULL) return -1;
  int64_t n = d2r_dim(x, 0), bs = tc->batch > 0 && tc->batch < n
    ? tc->batch : n;
  int64_t nb = (n + bs - 1) / bs, b = nb;
  d2r_tensor *order = NULL;
  int rc = 0;
  *last = NAN;
  for (int step = 0; step < tc->steps && rc == 0; step++) {
    d2r_scope s = D2R_SCOPE_INIT;
    d2r_tensor *xb = x, *yb = y;
    if (bs < n) {
      if (b == nb) {
        d2r_release(order);
        order = d2r_batch_order(rng, n);
        b = 0;
      }
      xb = KEEP(d2r_batch_rows(x, order, b, bs));
      yb = KEEP(d2r_batch_rows(y, order, b, bs));
      b++;
    }
    d2r_tensor *loss = KEEP(d2r_dyn_loss(m, i, xb, yb, &tc->loss, rng,
                                         NULL));
    if (loss == NULL) {
      rc = -1;
    } else if (!isfinite(d2r_item(loss))) {
      (*skipped)++;
    } else if (d2r_backward(loss) < 0) {
      rc = -1;
    } else if (d2r_grads_nonfinite(np, params) > 0) {
      (*skipped)++;
    } else {
      *last = d2r_item(loss);
      if (tc->clip > 0) d2r_clip_grad_value(np, params, tc->clip);
      rc = d2r_optim_step(opt);
    }
    d2r_optim_zero_grad(opt);
    d2r_scope_end(&s);
  }
  d2r_release(order);
  d2r_optim_free(opt);
  return rc;
}

typedef struct ranked {
  double v;
  int i;
} ranked;

static int by_value(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->v < y->v) return -1;
  if (x->v > y->v) return 1;
  return x->i - y->i;
}

/* Picks the elites by MSE of each member on x, y (NaN ranks last). */
static int choose_elites(d2r_dyn *m, d2r_tensor *x, d2r_tensor *y,
                         double *elite_mse) {
  int e = m->cfg.ensemble, k = m->cfg.elites;
  ranked r[1000];
  for (int i = 0; i < e; i++) {
    d2r_tensor *mu = member_mean(m, i, x);
    if (mu == NULL) return -1;
    double v = mse_of(mu, y);
    d2r_release(mu);
    r[i].v = isnan(v) ? INFINITY : v;
    r[i].i = i;
  }
  qsort(r, (size_t)e, sizeof(ranked), by_value);
  int idx[1000];
  double sum = 0;
  for (int j = 0; j < k; j++) {
    idx[j] = r[j].i;
    sum += r[j].v;
  }
  if (elite_mse) *elite_mse = sum / k;
  return d2r_dyn_set_elites(m, k, idx);
}

int d2r_dyn_train(d2r_dyn *m, const d2r_dataset *train,
                  const d2r_dataset *val, const d2r_dyn_train_config *tc,
                  d2r_dyn_train_report *report) {
  if (m == NULL || !dataset_fits(m, train)) return -1;
  if (val && !dataset_fits(m, val)) return -1;
  if (tc == NULL || tc->steps < 1 || !(tc->lr > 0) || tc->batch < 0) {
    d2r_fail("dynamics: train needs steps >= 1, lr > 0 and batch >= 0");
    return -1;
  }
  /* A reward matrix with a NaN or an infinity would make every step's
   * loss non-finite, and every step would be skipped in silence. */
  if (tc->loss.kind == D2R_DYN_PG && tc->loss.U != NULL &&
      d2r_count_nonfinite(tc->loss.U) > 0) {
    d2r_fail("dynamics: the reward matrix U holds a non-finite value");
    return -1;
  }
  if (!m->fitted && d2r_dyn_fit(m, train) < 0) return -1;
  d2r_tensor *x, *y, *vx = NULL, *vy = NULL;
  if (d2r_dyn_data(m, train, &x, &y) < 0) return -1;
  if (val && d2r_dyn_data(m, val, &vx, &vy) < 0) {
    d2r_release(x);
    d2r_release(y);
    return -1;
  }
  d2r_rng *rng = d2r_rng_new(tc->seed);
  int64_t skipped = 0;
  double total = 0;
  int rc = rng ? 0 : -1;
  if (rc < 0) d2r_fail("dynamics: out of memory");
  for (int i = 0; i < m->cfg.ensemble && rc == 0; i++) {
    d2r_tensor *xi = x, *yi = y, *idx = NULL;
    if (tc->bootstrap) {
      int64_t n = d2r_dim(x, 0);
      d2r_tensor *u = d2r_rand_uniform(rng, 1, &n, 0.0, (double)n);
      idx = u ? d2r_empty(1, &n) : NULL;
      for (int64_t j = 0; idx && j < n; j++)
        d2r_data(idx)[j] = fmin(floor(d2r_data(u)[j]), (double)(n - 1));
      d2r_release(u);
      xi = d2r_take_rows(x, idx);
      yi = d2r_take_rows(y, idx);
    }
    double last = NAN;
    rc = xi && yi ? train_member(m, i, xi, yi, tc, rng, &skipped, &last)
                  : -1;
    total += last;
    if (tc->bootstrap) {
      d2r_release(xi);
      d2r_release(yi);
      d2r_release(idx);
    }
  }
  double elite_mse = NAN;
  if (rc == 0)
    rc = choose_elites(m, vx ? vx : x, vy ? vy : y, &elite_mse);
  if (rc == 0 && report) {
    report->loss = total / m->cfg.ensemble;
    report->skipped = skipped;
    report->val_mse = vx ? elite_mse : NAN;
  }
  d2r_rng_free(rng);
  d2r_release(x);
  d2r_release(y);
  d2r_release(vx);
  d2r_release(vy);
  return rc;
}

/* ---- evaluation --------------------------------------------------------- */

/* Means and log-stds [N, n] of every elite at x, contiguous, no history:
 * mu[k], ls[k] for k < nelites (release each). */
static int elite_dists(d2r_dyn *m, d2r_tensor *x, d2r_tensor **mu,
                       d2r_tensor **ls) {
  bool g = d2r_set_grad_enabled(false);
  int rc = 0, k;
  for (k = 0; k < m->nelites && rc == 0; k++) {
    d2r_pdist d = D2R_PDIST_INIT;
    mu[k] = ls[k] = NULL;
    if (d2r_policy_dist(m->members[m->elites[k]], x, &d) < 0) {
      rc = -1;
      break;
    }
    mu[k] = d2r_contiguous(d.mean);
    ls[k] = d2r_contiguous(d.log_std);
    d2r_pdist_clear(&d);
    if (mu[k] == NULL || ls[k] == NULL) rc = -1;
  }
  if (rc < 0)
    for (int j = 0; j <= k && j < m->nelites; j++) {
      d2r_release(mu[j]);
      d2r_release(ls[j]);
      mu[j] = ls[j] = NULL;
    }
  d2r_set_grad_enabled(g);
  return rc;
}

static void release_all(int n, d2r_tensor **a, d2r_tensor **b) {
  for (int k = 0; k < n; k++) {
    d2r_release(a[k]);
    d2r_release(b[k]);
  }
}

int d2r_dyn_evaluate(d2r_dyn *m, const d2r_dataset *d,
                     d2r_dyn_metrics *out) {
  if (m == NULL || !dataset_fits(m, d) || !need_fit(m)) return -1;
  if (out == NULL) {
    d2r_fail("dynamics: evaluate needs an output");
    return -1;
  }
  d2r_tensor *x, *y, *mu[1000], *ls[1000];
  if (d2r_dyn_data(m, d, &x, &y) < 0) return -1;
  if (elite_dists(m, x, mu, ls) < 0) {
    d2r_release(x);
    d2r_release(y);
    return -1;
  }
  int64_t n = d->size, od = d->obs_dim;
  int ke = m->nelites;
  const double *yv = d2r_data(y), *o = d2r_data(d->obs);
  const double *no = d2r_data(d->next_obs);
  const double *om = d2r_data(m->out_mean), *os = d2r_data(m->out_std);
  double se = 0, nll = 0, se_raw = 0;
  for (int64_t i = 0; i < n * od; i++) {
    double mix = 0, lse_max = -INFINITY, lp[1000];
    for (int k = 0; k < ke; k++) {
      double mk = d2r_data(mu[k])[i], sk = d2r_data(ls[k])[i];
      double z = (yv[i] - mk) * exp(-sk);
      mix += mk / ke;
      lp[k] = -HALF_LOG_2PI - sk - 0.5 * z * z;
      lse_max = fmax(lse_max, lp[k]);
    }
    double acc = 0;
    for (int k = 0; k < ke; k++) acc += exp(lp[k] - lse_max);
    nll -= lse_max + log(acc / ke);
    se += (mix - yv[i]) * (mix - yv[i]);
    int64_t j = i % od;
    double pred = mix * os[j] + om[j] +
                  (m->cfg.target == D2R_DYN_DELTA ? o[i] : 0.0);
    se_raw += (pred - no[i]) * (pred - no[i]);
  }
  double cnt = (double)(n * od);
  out->rmse = sqrt(se / cnt);
  out->nll = nll / cnt;
  out->rmse_raw = sqrt(se_raw / cnt);
  release_all(ke, mu, ls);
  d2r_release(x);
  d2r_release(y);
  return 0;
}

/* ---- prediction --------------------------------------------------------- */

int d2r_dyn_predict(d2r_dyn *m, int64_t n, const double *obs,
                    const double *act, d2r_dyn_mode mode, d2r_rng *rng,
                    double *next_obs) {
  if (m == NULL || !need_fit(m)) return -1;
  if (n < 1 || !obs || !act || !next_obs || (mode == D2R_DYN_SAMPLE &&
                                             rng == NULL)) {
    d2r_fail("dynamics: predict needs n >= 1, buffers%s",
             mode == D2R_DYN_SAMPLE ? " and a generator" : "");
    return -1;
  }
  int64_t od = m->cfg.obs_dim, ad = m->cfg.act_dim;
  d2r_tensor *o = d2r_matrix(n, od, obs), *a = d2r_matrix(n, ad, act);
  d2r_tensor *x = d2r_dyn_inputs(m, o, a), *mu[1000], *ls[1000];
  d2r_release(o);
  d2r_release(a);
  if (x == NULL || elite_dists(m, x, mu, ls) < 0) {
    d2r_release(x);
    return -1;
  }
  d2r_release(x);
  int ke = m->nelites;
  const double *om = d2r_data(m->out_mean), *os = d2r_data(m->out_std);
  for (int64_t i = 0; i < n; i++) {
    int k = mode == D2R_DYN_SAMPLE
      ? (int)d2r_rng_below(rng, (uint64_t)ke) : 0;
    for (int64_t j = 0; j < od; j++) {
      int64_t e = i * od + j;
      double y;
      if (mode == D2R_DYN_SAMPLE) {
        y = d2r_data(mu[k])[e] +
            exp(d2r_data(ls[k])[e]) * d2r_rng_normal(rng);
      } else {
        y = 0;
        for (int q = 0; q < ke; q++) y += d2r_data(mu[q])[e] / ke;
      }
      next_obs[e] = y * os[j] + om[j] +
                    (m->cfg.target == D2R_DYN_DELTA ? obs[e] : 0.0);
    }
  }
  release_all(ke, mu, ls);
  return 0;
}

int d2r_dyn_rollout_error(d2r_dyn *m, const d2r_dataset *d, int stride,
                          int n, const int *horizons, double *err,
                          int64_t *count) {
  if (m == NULL || !dataset_fits(m, d) || !need_fit(m)) return -1;
  if (stride < 1 || n < 1 || !horizons || !err) {
    d2r_fail("dynamics: rollout_error needs stride >= 1 and horizons");
    return -1;
  }
  int hmax = 0;
  for (int k = 0; k < n; k++) {
    if (horizons[k] < 1) {
      d2r_fail("dynamics: horizons must be >= 1 (got %d)", horizons[k]);
      return -1;
    }
    if (horizons[k] > hmax) hmax = horizons[k];
  }
  int64_t rows = d->size, od = d->obs_dim, ad = d->act_dim;
  const double *ep = d2r_data(d->episode), *o = d2r_data(d->obs);
  const double *a = d2r_data(d->act), *no = d2r_data(d->next_obs);
  /* start row and rows left in its episode, for each start */
  int64_t ns = 0, first = 0;
  int64_t *start = malloc((size_t)rows * 2 * sizeof(int64_t));
  if (start == NULL) {
    d2r_fail("dynamics: out of memory");
    return -1;
  }
  int64_t *left = start + rows;
  for (int64_t i = 0; i < rows; i++) {
    if (i > 0 && ep[i] != ep[i - 1]) first = i;
    if ((i - first) % stride == 0) start[ns++] = i;
  }
  for (int64_t s = 0; s < ns; s++) {
    int64_t j = start[s];
    while (j + 1 < rows && ep[j + 1] == ep[start[s]]) j++;
    left[s] = j - start[s] + 1;
  }
  double *buf = malloc((size_t)(ns * (2 * od + ad)) * sizeof(double));
  double *sq = calloc((size_t)hmax, sizeof(double));
  int64_t *cnt = calloc((size_t)hmax, sizeof(int64_t));
  int rc = buf && sq && cnt ? 0 : -1;
  if (rc < 0) d2r_fail("dynamics: out of memory");
  double *st = buf, *nx = buf + ns * od, *ac = nx + ns * od;
  const double *is = d2r_data(m->in_std);
  for (int64_t s = 0; rc == 0 && s < ns; s++)
    memcpy(st + s * od, o + start[s] * od, (size_t)od * sizeof(double));
  for (int h = 1; rc == 0 && h <= hmax; h++) {
    for (int64_t s = 0; s < ns; s++) {
      int64_t r = start[s] + (h <= left[s] ? h - 1 : left[s] - 1);
      memcpy(ac + s * ad, a + r * ad, (size_t)ad * sizeof(double));
    }
    rc = d2r_dyn_predict(m, ns, st, ac, D2R_DYN_MEAN, NULL, nx);
    for (int64_t s = 0; rc == 0 && s < ns; s++) {
      if (h > left[s]) continue;
      const double *truth = no + (start[s] + h - 1) * od;
      for (int64_t j = 0; j < od; j++) {
        double e = (nx[s * od + j] - truth[j]) / is[j];
        sq[h - 1] += e * e;
      }
      cnt[h - 1]++;
    }
    double *t = st;
    st = nx;
    nx = t;
  }
  for (int k = 0; rc == 0 && k < n; k++) {
    int64_t c = cnt[horizons[k] - 1];
    err[k] = c ? sqrt(sq[horizons[k] - 1] / ((double)c * od)) : NAN;
    if (count) count[k] = c;
  }
  free(start);
  free(buf);
  free(sq);
  free(cnt);
  return rc;
}

/* ---- the planner adapter ------------------------------------------------ */

static int dyn_predict_fn(void *ctx, int64_t n, const double *obs,
                          const double *act, double *next_obs,
                          double *reward, double *done) {
  d2r_dyn *m = ctx;
  if (d2r_dyn_predict(m, n, obs, act, m->plan_mode, m->plan_rng,
                      next_obs) < 0)
    return -1;
  return d2r_env_reward_raw(m->plan_env, n, obs, act, next_obs, reward,
                            done);
}

int d2r_dyn_dynamics(d2r_dyn *m, d2r_env *reward_env, d2r_dyn_mode mode,
                     uint64_t seed, d2r_dynamics *out) {
  if (m == NULL || reward_env == NULL) return -1;
  if (out == NULL || (mode != D2R_DYN_MEAN && mode != D2R_DYN_SAMPLE)) {
    d2r_fail("dynamics: planner model needs an output and a valid mode");
    return -1;
  }
  if (!need_fit(m)) return -1;
  if (!d2r_env_has_reward(reward_env)) {
    d2r_fail("dynamics: env '%s' has no reward function to plan with",
             d2r_env_name(reward_env));
    return -1;
  }
  if (d2r_env_obs_dim(reward_env) != m->cfg.obs_dim ||
      d2r_env_act_dim(reward_env) != m->cfg.act_dim) {
    d2r_fail("dynamics: env '%s' does not match the model's sizes",
             d2r_env_name(reward_env));
    return -1;
  }
  if (m->plan_rng == NULL) {
    m->plan_rng = d2r_rng_new(seed);
    if (m->plan_rng == NULL) {
      d2r_fail("dynamics: out of memory");
      return -1;
    }
  } else {
    d2r_rng_seed(m->plan_rng, seed);
  }
  m->plan_env = reward_env;
  m->plan_mode = mode;
  out->obs_dim = m->cfg.obs_dim;
  out->act_dim = m->cfg.act_dim;
  out->predict = dyn_predict_fn;
  out->ctx = m;
  return 0;
}

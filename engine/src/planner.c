/*
 * Sampling planners (planner.h): CEM and MPPI over a one-step model,
 * their receding-horizon warm start, the planner as an agent, and
 * closed-loop evaluation against a uniformly random baseline.
 */
#include "d2r/planner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/rng.h"

/* A sequence's return and index, for sorting. */
typedef struct ranked {
  double r;
  int64_t i;
} ranked;

struct d2r_planner {
  d2r_planner_config cfg;
  int64_t k, h, n;       /* act_dim, horizon, population */
  double *lo, *hi;       /* [k] */
  double *mean, *std;    /* [h, k]: the sampler (MPPI: nominal in mean) */
  double *seqs;          /* [n, h, k] */
  double *ret;           /* [n] */
  double *alive;         /* [n] */
  struct ranked *order;  /* [n] */
  double *rows;          /* per-step buffers, sized for obs_dim */
  int64_t rows_obs;      /* obs_dim the buffers fit; 0 before */
  double *obs, *next, *act, *rew, *done;
  int phase;             /* env steps taken on the plan's first step */
  d2r_rng *rng;
  d2r_dynamics model;    /* the agent's model */
};

/* ---- configuration ------------------------------------------------------ */

d2r_planner_config d2r_planner_defaults(d2r_planner_kind kind) {
  d2r_planner_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.horizon = 15;
  c.population = 100;
  c.iterations = kind == D2R_PLANNER_CEM ? 5 : 1;
  c.elites = 10;
  c.alpha = 0.1;
  c.init_std = 0.5;
  c.temperature = 1.0;
  c.gamma = 1.0;
  c.action_repeat = 1;
  c.seed = 0;
  return c;
}

const char *d2r_planner_kind_name(d2r_planner_kind kind) {
  switch (kind) {
  case D2R_PLANNER_CEM: return "cem";
  case D2R_PLANNER_MPPI: return "mppi";
  }
  return NULL;
}

int d2r_planner_kind_parse(const char *name, d2r_planner_kind *out) {
  if (name && strcmp(name, "cem") == 0) *out = D2R_PLANNER_CEM;
  else if (name && strcmp(name, "mppi") == 0) *out = D2R_PLANNER_MPPI;
  else {
    d2r_fail("planner: unknown kind '%s' (cem or mppi)",
             name ? name : "(null)");
    return -1;
  }
  return 0;
}

static int check_config(const d2r_planner_config *c) {
  const char *bad = NULL;
  if (c->kind != D2R_PLANNER_CEM && c->kind != D2R_PLANNER_MPPI)
    bad = "kind must be cem or mppi";
  else if (c->horizon < 1 || c->horizon > 100000)
    bad = "horizon must be in 1..100000";
  else if (c->population < 2 || c->population > 10000000)
    bad = "population must be >= 2";
  else if (c->iterations < 1)
    bad = "iterations must be >= 1";
  else if (c->kind == D2R_PLANNER_CEM &&
           (c->elites < 1 || c->elites > c->population))
    bad = "elites must be in 1..population";
  else if (c->kind == D2R_PLANNER_CEM && !(c->alpha >= 0 && c->alpha < 1))
    bad = "alpha must be in [0, 1)";
  else if (!(c->init_std > 0) || !isfinite(c->init_std))
    bad = "init_std must be positive and finite";
  else if (c->kind == D2R_PLANNER_MPPI &&
           (!(c->temperature > 0) || !isfinite(c->temperature)))
    bad = "temperature must be positive and finite";
  else if (!(c->gamma > 0 && c->gamma <= 1))
    bad = "gamma must be in (0, 1]";
  else if (c->action_repeat < 1 || c->action_repeat > 1000)
    bad = "action_repeat must be in 1..1000";
  if (bad) {
    d2r_fail("planner: %s", bad);
    return -1;
  }
  if ((double)c->population * c->horizon * c->action_repeat > 1e9) {
    d2r_fail("planner: population x horizon x action_repeat is too large (%g)",
             (double)c->population * c->horizon * c->action_repeat);
    return -1;
  }
  return 0;
}

/* ---- construction ------------------------------------------------------- */

static void warm_reset(d2r_planner *p) {
  p->phase = 0;
  for (int64_t t = 0; t < p->h; t++) {
    for (int64_t j = 0; j < p->k; j++) {
      p->mean[t * p->k + j] = 0.5 * (p->lo[j] + p->hi[j]);
      p->std[t * p->k + j] = p->cfg.init_std * 0.5 * (p->hi[j] - p->lo[j]);
    }
  }
}

void d2r_planner_free(d2r_planner *p) {
  if (p == NULL) return;
  free(p->lo);
  free(p->mean);
  free(p->seqs);
  free(p->ret);
  free(p->order);
  free(p->rows);
  d2r_rng_free(p->rng);
  free(p);
}

d2r_planner *d2r_planner_new(const d2r_planner_config *cfg, int64_t act_dim,
                             const double *low, const double *high) {
  if (cfg == NULL || low == NULL || high == NULL)
    return d2r_fail("planner: a configuration and an action box are "
                    "required");
  if (check_config(cfg) < 0) return NULL;
  if (act_dim < 1 || act_dim > 100000)
    return d2r_fail("planner: act_dim must be >= 1 (got %lld)",
                    (long long)act_dim);
  for (int64_t j = 0; j < act_dim; j++)
    if (!isfinite(low[j]) || !isfinite(high[j]) || low[j] > high[j])
      return d2r_fail("planner: action bound %lld is [%g, %g]; planners "
                      "sample from a finite box", (long long)j, low[j],
                      high[j]);
  d2r_planner *p = calloc(1, sizeof *p);
  if (p == NULL) return d2r_fail("planner: out of memory");
  p->cfg = *cfg;
  p->k = act_dim;
  p->h = cfg->horizon;
  p->n = cfg->population;
  size_t k = (size_t)p->k, hk = (size_t)(p->h * p->k), n = (size_t)p->n;
  p->lo = malloc(2 * k * sizeof(double));
  p->mean = malloc(2 * hk * sizeof(double));
  p->seqs = malloc(n * hk * sizeof(double));
  p->ret = malloc(2 * n * sizeof(double));
  p->order = malloc(n * sizeof(ranked));
  p->rng = d2r_rng_new(cfg->seed);
  if (!p->lo || !p->mean || !p->seqs || !p->ret || !p->order || !p->rng) {
    d2r_planner_free(p);
    return d2r_fail("planner: out of memory (population %d, horizon %d)",
                    cfg->population, cfg->horizon);
  }
  p->hi = p->lo + k;
  p->std = p->mean + hk;
  p->alive = p->ret + n;
  memcpy(p->lo, low, k * sizeof(double));
  memcpy(p->hi, high, k * sizeof(double));
  warm_reset(p);
  return p;
}

d2r_planner *d2r_planner_for_env(const d2r_planner_config *cfg,
                                 const d2r_env *env) {
  if (env == NULL) return NULL;
  return d2r_planner_new(cfg, d2r_env_act_dim(env), d2r_env_act_low(env),
                         d2r_env_act_high(env));
}

const d2r_planner_config *d2r_planner_config_of(const d2r_planner *p) {
  return p ? &p->cfg : NULL;
}

int64_t d2r_planner_act_dim(const d2r_planner *p) {
  return p ? p->k : -1;
}

void d2r_planner_reset(d2r_planner *p, uint64_t seed) {
  if (p == NULL) return;
  d2r_rng_seed(p->rng, seed);
  warm_reset(p);
}

/* ---- rollouts ----------------------------------------------------------- */

static int fit_rows(d2r_planner *p, int64_t obs_dim) {
  if (obs_dim == p->rows_obs) return 0;
  size_t n = (size_t)p->n, o = (size_t)obs_dim, k = (size_t)p->k;
  double *r = realloc(p->rows, n * (2 * o + k + 2) * sizeof(double));
  if (r == NULL) {
    d2r_fail("planner: out of memory");
    return -1;
  }
  p->rows = r;
  p->obs = r;
  p->next = r + n * o;
  p->act = p->next + n * o;
  p->rew = p->act + n * k;
  p->done = p->rew + n;
  p->rows_obs = obs_dim;
  return 0;
}

/* Scores the p->n sequences in p->seqs from obs into p->ret: plan step
 * t is held for `repeat` model steps, the first for those left of it
 * (repeat - phase), so the rollout stays aligned with the plan. */
static int rollout(d2r_planner *p, const d2r_dynamics *m,
                   const double *obs, int64_t *rows) {
  int64_t n = p->n, o = m->obs_dim, k = p->k, h = p->h;
  int rep = p->cfg.action_repeat;
  for (int64_t i = 0; i < n; i++) {
    memcpy(p->obs + i * o, obs, (size_t)o * sizeof(double));
    p->ret[i] = 0.0;
    p->alive[i] = 1.0;
  }
  double disc = 1.0;
  for (int64_t t = 0; t < h; t++) {
    for (int64_t i = 0; i < n; i++)
      memcpy(p->act + i * k, p->seqs + (i * h + t) * k,
             (size_t)k * sizeof(double));
    for (int r = t == 0 ? p->phase : 0; r < rep; r++) {
      if (m->predict(m->ctx, n, p->obs, p->act, p->next, p->rew,
                     p->done) < 0)
        return -1;
      *rows += n;
      for (int64_t i = 0; i < n; i++) {
        if (p->alive[i] == 0.0) continue;
        p->ret[i] += disc * p->rew[i];
        if (p->done[i] != 0.0) p->alive[i] = 0.0;
      }
      disc *= p->cfg.gamma;
      double *swap = p->obs;
      p->obs = p->next;
      p->next = swap;
    }
  }
  if (p->cfg.terminal != NULL)
    for (int64_t i = 0; i < n; i++)
      if (p->alive[i] != 0.0)
        p->ret[i] += disc * p->cfg.terminal(p->cfg.terminal_ctx,
                                            p->obs + i * o, o);
  for (int64_t i = 0; i < n; i++)
    if (isnan(p->ret[i])) p->ret[i] = -INFINITY;
  return 0;
}

/* Sequence i = mean + std * eps (eps left out when noiseless), clipped
 * into the box. */
static void sample_seq(d2r_planner *p, int64_t i, bool noiseless) {
  int64_t hk = p->h * p->k;
  double *s = p->seqs + i * hk;
  for (int64_t e = 0; e < hk; e++) {
    int64_t j = e % p->k;
    double a = p->mean[e];
    if (!noiseless) a += p->std[e] * d2r_rng_normal(p->rng);
    s[e] = a < p->lo[j] ? p->lo[j] : a > p->hi[j] ? p->hi[j] : a;
  }
}

/* Descending return, ties by index, so the order is total. */
static int by_return(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->r > y->r) return -1;
  if (x->r < y->r) return 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* ---- the two methods ---------------------------------------------------- */

static void cem_refit(d2r_planner *p, d2r_plan_info *info) {
  int64_t n = p->n, hk = p->h * p->k, ke = p->cfg.elites;
  for (int64_t i = 0; i < n; i++) {
    p->order[i].r = p->ret[i];
    p->order[i].i = i;
  }
  qsort(p->order, (size_t)n, sizeof(ranked), by_return);
  double a = p->cfg.alpha, mean_ret = 0.0;
  for (int64_t e = 0; e < ke; e++) mean_ret += p->order[e].r;
  info->best_return = p->order[0].r;
  info->plan_return = mean_ret / (double)ke;
  for (int64_t x = 0; x < hk; x++) {
    double m = 0.0, v = 0.0;
    for (int64_t e = 0; e < ke; e++) m += p->seqs[p->order[e].i * hk + x];
    m /= (double)ke;
    for (int64_t e = 0; e < ke; e++) {
      double d = p->seqs[p->order[e].i * hk + x] - m;
      v += d * d;
    }
    v /= (double)ke;
    double old = p->std[x];
    p->mean[x] = a * p->mean[x] + (1.0 - a) * m;
    p->std[x] = sqrt(a * old * old + (1.0 - a) * v);
  }
}

static void mppi_update(d2r_planner *p, d2r_plan_info *info) {
  int64_t n = p->n, hk = p->h * p->k;
  double best = -INFINITY, lam = p->cfg.temperature;
  for (int64_t i = 0; i < n; i++) best = fmax(best, p->ret[i]);
  info->best_return = best;
  if (!isfinite(best)) return;  /* every rollout failed: keep the plan */
  double wsum = 0.0, rsum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double w = exp((p->ret[i] - best) / lam);
    p->alive[i] = w;  /* reused as the weights */
    wsum += w;
    rsum += w * p->ret[i];
  }
  info->plan_return = rsum / wsum;
  for (int64_t x = 0; x < hk; x++) {
    double u = 0.0;
    for (int64_t i = 0; i < n; i++) u += p->alive[i] * p->seqs[i * hk + x];
    p->mean[x] = u / wsum;
  }
}

/* Moves the plan one step on: the last step restarts at the centre. */
static void shift(d2r_planner *p) {
  int64_t k = p->k, h = p->h;
  memmove(p->mean, p->mean + k, (size_t)((h - 1) * k) * sizeof(double));
  for (int64_t j = 0; j < k; j++) {
    p->mean[(h - 1) * k + j] = 0.5 * (p->lo[j] + p->hi[j]);
  }
  for (int64_t x = 0; x < h * k; x++)
    p->std[x] = p->cfg.init_std * 0.5 * (p->hi[x % k] - p->lo[x % k]);
}

int d2r_planner_act(d2r_planner *p, const d2r_dynamics *model,
                    const double *obs, double *action,
                    d2r_plan_info *info) {
  if (p == NULL) return -1;
  if (model == NULL || model->predict == NULL || obs == NULL ||
      action == NULL) {
    d2r_fail("planner: act needs a model, an observation and an action "
             "buffer");
    return -1;
  }
  if (model->act_dim != p->k || model->obs_dim < 1) {
    d2r_fail("planner: the model takes %lld action elements, the planner "
             "plans %lld", (long long)model->act_dim, (long long)p->k);
    return -1;
  }
  if (fit_rows(p, model->obs_dim) < 0) return -1;
  d2r_plan_info local = {-INFINITY, -INFINITY, 0};
  bool cem = p->cfg.kind == D2R_PLANNER_CEM;
  for (int it = 0; it < p->cfg.iterations; it++) {
    for (int64_t i = 0; i < p->n; i++)
      sample_seq(p, i, !cem && i == 0);
    if (rollout(p, model, obs, &local.model_rows) < 0) return -1;
    if (cem) cem_refit(p, &local);
    else mppi_update(p, &local);
  }
  memcpy(action, p->mean, (size_t)p->k * sizeof(double));
  if (++p->phase == p->cfg.action_repeat) {
    p->phase = 0;
    shift(p);
  }
  if (info) *info = local;
  return 0;
}

/* ---- agents and evaluation ---------------------------------------------- */

static int agent_begin(void *ctx, uint64_t seed) {
  d2r_planner_reset(ctx, seed);
  return 0;
}

static int agent_act(void *ctx, const double *obs, double *action) {
  d2r_planner *p = ctx;
  return d2r_planner_act(p, &p->model, obs, action, NULL);
}

int d2r_planner_agent(d2r_planner *p, const d2r_dynamics *model,
                      d2r_agent *out) {
  if (p == NULL) return -1;
  if (model == NULL || out == NULL) {
    d2r_fail("planner: agent needs a model and an output");
    return -1;
  }
  p->model = *model;
  out->begin = agent_begin;
  out->act = agent_act;
  out->ctx = p;
  return 0;
}

/* Runs episodes of agent; shared by the two evaluations. */
static int evaluate(d2r_env *env, const d2r_agent *agent, int episodes,
                    uint64_t seed, double *returns, double *mean) {
  if (episodes < 1) {
    d2r_fail("evaluate: episodes must be >= 1 (got %d)", episodes);
    return -1;
  }
  d2r_rng *r = d2r_rng_new(seed);
  if (r == NULL) {
    d2r_fail("evaluate: out of memory");
    return -1;
  }
  double total = 0.0;
  int rc = 0;
  for (int i = 0; i < episodes && rc == 0; i++) {
    uint64_t es = d2r_rng_next_seed(r), as = d2r_rng_next_seed(r);
    d2r_episode_stats st;
    rc = d2r_env_run(env, agent, es, as, NULL, NULL, &st);
    if (rc == 0) {
      if (returns) returns[i] = st.ret;
      total += st.ret;
    }
  }
  d2r_rng_free(r);
  if (rc == 0 && mean) *mean = total / episodes;
  return rc;
}

int d2r_planner_evaluate(d2r_planner *p, d2r_env *env,
                         const d2r_dynamics *model, int episodes,
                         uint64_t seed, double *returns, double *mean) {
  if (p == NULL || env == NULL) return -1;
  d2r_agent agent;
  if (d2r_planner_agent(p, model, &agent) < 0) return -1;
  return evaluate(env, &agent, episodes, seed, returns, mean);
}

typedef struct uniform_agent {
  d2r_rng *rng;
  const double *lo, *hi;
  int64_t k;
} uniform_agent;

static int uniform_begin(void *ctx, uint64_t seed) {
  d2r_rng_seed(((uniform_agent *)ctx)->rng, seed);
  return 0;
}

static int uniform_act(void *ctx, const double *obs, double *action) {
  uniform_agent *u = ctx;
  (void)obs;
  for (int64_t j = 0; j < u->k; j++)
    action[j] = u->lo[j] + (u->hi[j] - u->lo[j]) * d2r_rng_uniform(u->rng);
  return 0;
}

int d2r_random_evaluate(d2r_env *env, int episodes, uint64_t seed,
                        double *returns, double *mean) {
  if (env == NULL) return -1;
  if (!d2r_env_act_bounded(env)) {
    d2r_fail("env '%s': random actions need a bounded action box",
             d2r_env_name(env));
    return -1;
  }
  uniform_agent u = {d2r_rng_new(0), d2r_env_act_low(env),
                     d2r_env_act_high(env), d2r_env_act_dim(env)};
  if (u.rng == NULL) {
    d2r_fail("evaluate: out of memory");
    return -1;
  }
  d2r_agent agent = {uniform_begin, uniform_act, &u};
  int rc = evaluate(env, &agent, episodes, seed, returns, mean);
  d2r_rng_free(u.rng);
  return rc;
}

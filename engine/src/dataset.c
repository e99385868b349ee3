/*
 * Logged transitions (dataset.h): validation of the columns, collection
 * with random, planning or caller-supplied behaviour policies, subsets
 * and seeded splits by episode, and the D2RT file format with atomic
 * writes and loads that check everything before building a dataset.
 */
#include "d2r/dataset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/nn.h"
#include "d2r/rng.h"
#include "file_io.h"

#define HEADER 64
#define MAX_NAME 4096
#define MAX_DIM 1000000
#define MAX_ID 9007199254740992.0   /* 2^53: exact in float64 */

/* The columns of a dataset as plain arrays (borrowed or owned). */
typedef struct columns {
  int64_t n, od, ad;
  double *obs, *act, *rew, *next, *term, *trunc, *ep;
} columns;

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- validation --------------------------------------------------------- */

static int by_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int check_finite(const char *who, const char *col, int64_t rows,
                        int64_t cols, const double *v) {
  for (int64_t i = 0; i < rows * cols; i++) {
    if (!isfinite(v[i])) {
      d2r_fail("%s: %s at row %lld is %g; values must be finite", who, col,
               (long long)(i / cols), v[i]);
      return -1;
    }
  }
  return 0;
}

static int check_flags(const char *who, const char *col, int64_t n,
                       const double *v) {
  for (int64_t i = 0; i < n; i++) {
    if (v[i] != 0.0 && v[i] != 1.0) {
      d2r_fail("%s: %s at row %lld is %g; flags must be 0 or 1", who, col,
               (long long)i, v[i]);
      return -1;
    }
  }
  return 0;
}

/* Checks the columns and counts the episodes into *episodes. */
static int validate(const char *who, const columns *c, int64_t *episodes) {
  int64_t n = c->n;
  if (check_finite(who, "obs", n, c->od, c->obs) < 0 ||
      check_finite(who, "act", n, c->ad, c->act) < 0 ||
      check_finite(who, "reward", n, 1, c->rew) < 0 ||
      check_finite(who, "next_obs", n, c->od, c->next) < 0 ||
      check_flags(who, "terminated", n, c->term) < 0 ||
      check_flags(who, "truncated", n, c->trunc) < 0)
    return -1;
  int64_t runs = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = c->ep[i];
    if (!(e >= 0 && e <= MAX_ID && e == floor(e))) {
      d2r_fail("%s: episode id at row %lld is %g; ids must be integers "
               "in 0..2^53", who, (long long)i, e);
      return -1;
    }
    bool last = i == n - 1 || c->ep[i + 1] != e;
    if (!last && (c->term[i] != 0 || c->trunc[i] != 0)) {
      d2r_fail("%s: row %lld ends episode %.0f but the episode goes on at "
               "row %lld", who, (long long)i, e, (long long)(i + 1));
      return -1;
    }
    if (i == 0 || c->ep[i - 1] != e) runs++;
  }
  double *ids = malloc((size_t)runs * sizeof(double));
  if (ids == NULL) {
    d2r_fail("%s: out of memory", who);
    return -1;
  }
  int64_t r = 0;
  for (int64_t i = 0; i < n; i++)
    if (i == 0 || c->ep[i - 1] != c->ep[i]) ids[r++] = c->ep[i];
  qsort(ids, (size_t)runs, sizeof(double), by_double);
  for (int64_t k = 1; k < runs; k++) {
    if (ids[k] == ids[k - 1]) {
      d2r_fail("%s: the rows of episode %.0f are not contiguous", who,
               ids[k]);
      free(ids);
      return -1;
    }
  }
  free(ids);
  *episodes = runs;
  return 0;
}

/* ---- construction ------------------------------------------------------- */

void d2r_dataset_free(d2r_dataset *d) {
  if (d == NULL) return;
  free(d->env);
  free(d->behaviour);
  d2r_release(d->obs);
  d2r_release(d->act);
  d2r_release(d->reward);
  d2r_release(d->next_obs);
  d2r_release(d->terminated);
  d2r_release(d->truncated);
  d2r_release(d->episode);
  free(d);
}

/* A dataset holding copies of the columns, after validating them. */
static d2r_dataset *from_columns(const char *who, const char *env,
                                 const char *behaviour, uint64_t seed,
                                 const columns *c) {
  int64_t episodes;
  if (c->n < 1)
    return d2r_fail("%s: a dataset needs at least one transition", who);
  if (env == NULL || env[0] == '\0' || strlen(env) > MAX_NAME)
    return d2r_fail("%s: the environment name must have 1..%d bytes", who,
                    MAX_NAME);
  if (behaviour == NULL) behaviour = "unknown";
  if (strlen(behaviour) > MAX_NAME)
    return d2r_fail("%s: the behaviour description is longer than %d "
                    "bytes", who, MAX_NAME);
  if (validate(who, c, &episodes) < 0) return NULL;
  d2r_dataset *d = calloc(1, sizeof *d);
  if (d == NULL) return d2r_fail("%s: out of memory", who);
  d->env = dup_str(env);
  d->behaviour = dup_str(behaviour);
  d->seed = seed;
  d->size = c->n;
  d->episodes = episodes;
  d->obs_dim = c->od;
  d->act_dim = c->ad;
  d->obs = d2r_matrix(c->n, c->od, c->obs);
  d->act = d2r_matrix(c->n, c->ad, c->act);
  d->reward = d2r_vector(c->n, c->rew);
  d->next_obs = d2r_matrix(c->n, c->od, c->next);
  d->terminated = d2r_vector(c->n, c->term);
  d->truncated = d2r_vector(c->n, c->trunc);
  d->episode = d2r_vector(c->n, c->ep);
  if (!d->env || !d->behaviour || !d->obs || !d->act || !d->reward ||
      !d->next_obs || !d->terminated || !d->truncated || !d->episode) {
    d2r_dataset_free(d);
    return d2r_fail("%s: out of memory", who);
  }
  return d;
}

/* A contiguous copy of t after checking it has `rows` rows of `cols`
 * (cols 0: a vector). */
static d2r_tensor *column(const char *name, d2r_tensor *t, int64_t rows,
                          int64_t cols) {
  char buf[64];
  if (t == NULL) return d2r_fail("dataset: column '%s' is missing", name);
  bool ok = cols == 0 ? d2r_ndim(t) == 1 && d2r_dim(t, 0) == rows
                      : d2r_ndim(t) == 2 && d2r_dim(t, 0) == rows &&
                        d2r_dim(t, 1) == cols;
  if (!ok) {
    d2r_shape_str(t, buf, sizeof buf);
    if (cols == 0)
      return d2r_fail("dataset: column '%s' must be [%lld], got %s", name,
                      (long long)rows, buf);
    return d2r_fail("dataset: column '%s' must be [%lld, %lld], got %s",
                    name, (long long)rows, (long long)cols, buf);
  }
  return d2r_contiguous(t);
}

d2r_dataset *d2r_dataset_new(const char *env, const char *behaviour,
                             uint64_t seed, d2r_tensor *obs,
                             d2r_tensor *act, d2r_tensor *reward,
                             d2r_tensor *next_obs, d2r_tensor *terminated,
                             d2r_tensor *truncated, d2r_tensor *episode) {
  if (obs == NULL || act == NULL) return NULL;
  if (d2r_ndim(obs) != 2 || d2r_ndim(act) != 2)
    return d2r_fail("dataset: obs and act must be 2-d ([N, obs_dim], "
                    "[N, act_dim])");
  int64_t n = d2r_dim(obs, 0), od = d2r_dim(obs, 1), ad = d2r_dim(act, 1);
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *cols[7] = {
    d2r_keep(&s, column("obs", obs, n, od)),
    d2r_keep(&s, column("act", act, n, ad)),
    d2r_keep(&s, column("reward", reward, n, 0)),
    d2r_keep(&s, column("next_obs", next_obs, n, od)),
    d2r_keep(&s, column("terminated", terminated, n, 0)),
    d2r_keep(&s, column("truncated", truncated, n, 0)),
    d2r_keep(&s, column("episode", episode, n, 0)),
  };
  d2r_dataset *d = NULL;
  bool ok = true;
  for (int i = 0; i < 7; i++) ok = ok && cols[i] != NULL;
  if (ok) {
    columns c = {n, od, ad, d2r_data(cols[0]), d2r_data(cols[1]),
                 d2r_data(cols[2]), d2r_data(cols[3]), d2r_data(cols[4]),
                 d2r_data(cols[5]), d2r_data(cols[6])};
    d = from_columns("dataset", env, behaviour, seed, &c);
  }
  d2r_scope_end(&s);
  return d;
}

/* The columns of d as borrowed arrays. */
static columns columns_of(const d2r_dataset *d) {
  columns c = {d->size, d->obs_dim, d->act_dim, d2r_data(d->obs),
               d2r_data(d->act), d2r_data(d->reward),
               d2r_data(d->next_obs), d2r_data(d->terminated),
               d2r_data(d->truncated), d2r_data(d->episode)};
  return c;
}

d2r_tensor *d2r_dataset_returns(const d2r_dataset *d) {
  if (d == NULL) return NULL;
  d2r_tensor *r = d2r_zeros(1, &d->episodes);
  if (r == NULL) return NULL;
  columns c = columns_of(d);
  double *out = d2r_data(r);
  int64_t k = -1;
  for (int64_t i = 0; i < c.n; i++) {
    if (i == 0 || c.ep[i] != c.ep[i - 1]) k++;
    out[k] += c.rew[i];
  }
  return r;
}

/* ---- recording transitions ---------------------------------------------- */

typedef struct recorder {
  columns c;
  int64_t cap;
  double episode;
} recorder;

static void recorder_free(recorder *r) {
  double **cols[7] = {&r->c.obs, &r->c.act, &r->c.rew, &r->c.next,
                      &r->c.term, &r->c.trunc, &r->c.ep};
  for (int i = 0; i < 7; i++) {
    free(*cols[i]);
    *cols[i] = NULL;
  }
}

static int grow(recorder *r) {
  int64_t cap = r->cap ? 2 * r->cap : 1024;
  int64_t width[7] = {r->c.od, r->c.ad, 1, r->c.od, 1, 1, 1};
  double **cols[7] = {&r->c.obs, &r->c.act, &r->c.rew, &r->c.next,
                      &r->c.term, &r->c.trunc, &r->c.ep};
  for (int i = 0; i < 7; i++) {
    double *p = realloc(*cols[i], (size_t)(cap * width[i]) *
                                  sizeof(double));
    if (p == NULL) {
      d2r_fail("collect: out of memory at %lld transitions",
               (long long)r->c.n);
      return -1;
    }
    *cols[i] = p;
  }
  r->cap = cap;
  return 0;
}

static int record(void *ctx, const double *obs, const double *action,
                  const double *next_obs, const d2r_step_info *info) {
  recorder *r = ctx;
  if (r->c.n == r->cap && grow(r) < 0) return -1;
  int64_t i = r->c.n, od = r->c.od, ad = r->c.ad;
  memcpy(r->c.obs + i * od, obs, (size_t)od * sizeof(double));
  memcpy(r->c.act + i * ad, action, (size_t)ad * sizeof(double));
  memcpy(r->c.next + i * od, next_obs, (size_t)od * sizeof(double));
  r->c.rew[i] = info->reward;
  r->c.term[i] = info->terminated ? 1.0 : 0.0;
  r->c.trunc[i] = info->truncated ? 1.0 : 0.0;
  r->c.ep[i] = r->episode;
  r->c.n++;
  return 0;
}

/* ---- behaviours --------------------------------------------------------- */

const char *d2r_behaviour_kind_name(d2r_behaviour_kind kind) {
  static const char *const names[] = {"random", "medium", "expert",
                                      "agent"};
  return (unsigned)kind < 4 ? names[kind] : NULL;
}

int d2r_behaviour_kind_parse(const char *name, d2r_behaviour_kind *out) {
  for (int k = 0; k < 4; k++) {
    if (name && strcmp(name, d2r_behaviour_kind_name(k)) == 0) {
      *out = (d2r_behaviour_kind)k;
      return 0;
    }
  }
  d2r_fail("collect: unknown behaviour '%s' (random, medium, expert or "
           "agent)", name ? name : "(null)");
  return -1;
}

/* A constant of a built-in environment by name, or dflt. */
static double env_constant(const d2r_env *env, const char *key, double dflt) {
  int n = 0;
  const char *const *keys = NULL;
  const double *values = NULL;
  if (d2r_env_constants(env, &n, &keys, &values) != 0) return dflt;
  for (int i = 0; i < n; i++)
    if (strcmp(keys[i], key) == 0) return values[i];
  return dflt;
}

/* Mountain car: the car's energy per unit mass in the units of its
 * update, 0.5 v^2 + (gravity / 3) sin(3 x) (the slope term is minus the
 * derivative of the second part), as a fraction of the way from resting
 * in the valley to the goal's height, times 100 (the goal's reward). */
static double car_value(void *ctx, const double *o, int64_t n) {
  if (n < 2) return 0.0;
  const d2r_env *env = ctx;
  double g = env_constant(env, "gravity", 0.0025) / 3.0;
  double goal = env_constant(env, "goal_position", 0.45);
  double e = 0.5 * o[1] * o[1] + g * sin(3.0 * o[0]);
  double low = -g, high = g * sin(3.0 * goal);
  if (!(high > low)) return 0.0;
  return 100.0 * fmin(1.0, (e - low) / (high - low));
}

/* Acrobot: the links' mechanical energy (kinetic from the mass matrix of
 * the equations of motion, potential from the centres of mass), capped
 * at standing upright at rest, as minus 100 times the fraction of the way
 * still to go from hanging at rest: at most 0, the value of a rollout
 * that reached the goal (which ends it), and enough to outweigh the -1
 * per step of a horizon. */
static double acrobot_value(void *ctx, const double *o, int64_t n) {
  if (n < 6) return 0.0;
  const d2r_env *env = ctx;
  double l1 = env_constant(env, "link_length_1", 1.0);
  double m1 = env_constant(env, "link_mass_1", 1.0);
  double m2 = env_constant(env, "link_mass_2", 1.0);
  double lc1 = env_constant(env, "link_com_pos_1", 0.5);
  double lc2 = env_constant(env, "link_com_pos_2", 0.5);
  double moi = env_constant(env, "link_moi", 1.0);
  double g = env_constant(env, "g", 9.8);
  double th1 = atan2(o[1], o[0]), th2 = atan2(o[3], o[2]);
  double w1 = o[4], w2 = o[5];
  double m11 = m1 * lc1 * lc1 +
               m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * cos(th2)) +
               2.0 * moi;
  double m12 = m2 * (lc2 * lc2 + l1 * lc2 * cos(th2)) + moi;
  double m22 = m2 * lc2 * lc2 + moi;
  double kin = 0.5 * (m11 * w1 * w1 + 2.0 * m12 * w1 * w2 + m22 * w2 * w2);
  double pot = -g * (m1 * lc1 * cos(th1) +
                     m2 * (l1 * cos(th1) + lc2 * cos(th1 + th2)));
  double top = g * (m1 * lc1 + m2 * (l1 + lc2));
  if (!(top > 0)) return 0.0;
  return -100.0 * (top - fmin(kin + pot, top)) / (2.0 * top);
}

int d2r_behaviour_preset(d2r_behaviour_kind kind, const d2r_env *env,
                         d2r_behaviour *out) {
  static const struct {
    const char *env;
    int horizon, repeat;
  } plan[] = {
    {"pendulum", 15, 1}, {"cartpole", 15, 3}, {"reacher", 15, 1},
    {"mountain_car", 20, 10}, {"acrobot", 20, 5},
  };
  if (env == NULL) return -1;
  if (out == NULL || kind == D2R_BEHAVIOUR_AGENT ||
      d2r_behaviour_kind_name(kind) == NULL) {
    d2r_fail("collect: no preset for behaviour %d", (int)kind);
    return -1;
  }
  memset(out, 0, sizeof *out);
  out->kind = kind;
  out->planner = d2r_planner_defaults(D2R_PLANNER_CEM);
  for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
    if (strcmp(plan[i].env, d2r_env_name(env)) == 0) {
      out->planner.horizon = plan[i].horizon;
      out->planner.action_repeat = plan[i].repeat;
    }
  }
  if (kind == D2R_BEHAVIOUR_MEDIUM) {
    out->planner.population = 50;
    out->planner.iterations = 2;
    out->planner.elites = 5;
    out->noise = 0.3;
  } else if (kind == D2R_BEHAVIOUR_EXPERT) {
    out->planner.population = 200;
    out->planner.iterations = 5;
    out->planner.elites = 20;
    out->noise = 0.1;
    /* The expert also values where its horizon ends. */
    if (strcmp(d2r_env_name(env), "mountain_car") == 0)
      out->planner.terminal = car_value;
    else if (strcmp(d2r_env_name(env), "acrobot") == 0)
      out->planner.terminal = acrobot_value;
    out->planner.terminal_ctx = (void *)env;
  }
  return 0;
}

/* An agent's action plus Gaussian noise, clipped into the box; or, with
 * no inner agent, uniform actions in the box. */
typedef struct noisy {
  const d2r_agent *inner;
  d2r_rng *rng;
  double noise;
  const double *lo, *hi;
  int64_t k;
} noisy;

static int noisy_begin(void *ctx, uint64_t seed) {
  noisy *a = ctx;
  d2r_rng_seed(a->rng, seed);
  if (a->inner && a->inner->begin)
    return a->inner->begin(a->inner->ctx, d2r_rng_next_seed(a->rng));
  return 0;
}

static int noisy_act(void *ctx, const double *obs, double *action) {
  noisy *a = ctx;
  if (a->inner == NULL) {
    for (int64_t j = 0; j < a->k; j++)
      action[j] = a->lo[j] + (a->hi[j] - a->lo[j]) *
                  d2r_rng_uniform(a->rng);
    return 0;
  }
  if (a->inner->act(a->inner->ctx, obs, action) < 0) return -1;
  if (a->noise == 0) return 0;
  for (int64_t j = 0; j < a->k; j++) {
    double lo = a->lo[j], hi = a->hi[j];
    double x = action[j] + a->noise * 0.5 * (hi - lo) *
               d2r_rng_normal(a->rng);
    action[j] = x < lo ? lo : x > hi ? hi : x;
  }
  return 0;
}

static void describe(const d2r_behaviour *b, char *buf, size_t cap) {
  const d2r_planner_config *p = &b->planner;
  if (b->name) {
    snprintf(buf, cap, "%s", b->name);
  } else if (b->kind == D2R_BEHAVIOUR_RANDOM) {
    snprintf(buf, cap, "random: uniform actions in the box");
  } else if (b->kind == D2R_BEHAVIOUR_AGENT) {
    snprintf(buf, cap, "agent, noise %g", b->noise);
  } else {
    snprintf(buf, cap, "%s: %s H=%d N=%d iterations=%d elites=%d "
             "repeat=%d%s, noise %g, through the true simulator",
             d2r_behaviour_kind_name(b->kind),
             d2r_planner_kind_name(p->kind), p->horizon, p->population,
             p->iterations, p->elites, p->action_repeat,
             p->terminal ? ", energy terminal value" : "", b->noise);
  }
}

static int check_behaviour(const d2r_env *env, const d2r_behaviour *b) {
  const char *name = d2r_env_name(env);
  if (d2r_behaviour_kind_name(b->kind) == NULL) {
    d2r_fail("collect: unknown behaviour kind %d", (int)b->kind);
    return -1;
  }
  if (!(b->noise >= 0) || !isfinite(b->noise)) {
    d2r_fail("collect: noise must be finite and >= 0 (got %g)", b->noise);
    return -1;
  }
  if (b->kind == D2R_BEHAVIOUR_AGENT && b->agent.act == NULL) {
    d2r_fail("collect: behaviour 'agent' needs an act function");
    return -1;
  }
  if ((b->kind != D2R_BEHAVIOUR_AGENT || b->noise > 0) &&
      !d2r_env_act_bounded(env)) {
    d2r_fail("collect: env '%s' has an unbounded action box; random "
             "actions, planners and noise need a bounded one", name);
    return -1;
  }
  return 0;
}

d2r_dataset *d2r_collect(d2r_env *env, const d2r_behaviour *b,
                         int64_t episodes, uint64_t seed) {
  if (env == NULL) return NULL;
  if (b == NULL) return d2r_fail("collect: a behaviour is required");
  if (episodes < 1)
    return d2r_fail("collect: episodes must be >= 1 (got %lld)",
                    (long long)episodes);
  if (check_behaviour(env, b) < 0) return NULL;
  d2r_planner *planner = NULL;
  d2r_agent inner = b->agent, outer;
  if (b->kind == D2R_BEHAVIOUR_MEDIUM || b->kind == D2R_BEHAVIOUR_EXPERT) {
    d2r_dynamics truth;
    if (d2r_env_dynamics(env, &truth) < 0) return NULL;
    planner = d2r_planner_for_env(&b->planner, env);
    if (planner == NULL || d2r_planner_agent(planner, &truth, &inner) < 0) {
      d2r_planner_free(planner);
      return NULL;
    }
  }
  noisy nz = {b->kind == D2R_BEHAVIOUR_RANDOM ? NULL : &inner,
              d2r_rng_new(0), b->noise, d2r_env_act_low(env),
              d2r_env_act_high(env), d2r_env_act_dim(env)};
  d2r_rng *seeds = d2r_rng_new(seed);
  recorder rec;
  memset(&rec, 0, sizeof rec);
  rec.c.od = d2r_env_obs_dim(env);
  rec.c.ad = d2r_env_act_dim(env);
  outer.begin = noisy_begin;
  outer.act = noisy_act;
  outer.ctx = &nz;
  int rc = nz.rng && seeds ? 0 : -1;
  if (rc < 0) d2r_fail("collect: out of memory");
  for (int64_t e = 0; e < episodes && rc == 0; e++) {
    uint64_t es = d2r_rng_next_seed(seeds), as = d2r_rng_next_seed(seeds);
    d2r_episode_stats st;
    rec.episode = (double)e;
    rc = d2r_env_run(env, &outer, es, as, record, &rec, &st);
  }
  d2r_dataset *d = NULL;
  if (rc == 0) {
    char desc[512];
    describe(b, desc, sizeof desc);
    d = from_columns("collect", d2r_env_name(env), desc, seed, &rec.c);
  }
  recorder_free(&rec);
  d2r_rng_free(seeds);
  d2r_rng_free(nz.rng);
  d2r_planner_free(planner);
  return d;
}

/* ---- subsets ------------------------------------------------------------ */

/* The rows of d whose episode is marked in keep (indexed by run). */
static d2r_dataset *select_runs(const d2r_dataset *d, const bool *keep) {
  columns c = columns_of(d), out;
  int64_t od = c.od, ad = c.ad, run = -1, m = 0;
  for (int64_t i = 0; i < c.n; i++) {
    if (i == 0 || c.ep[i] != c.ep[i - 1]) run++;
    if (keep[run]) m++;
  }
  out.n = m;
  out.od = od;
  out.ad = ad;
  double *buf = malloc((size_t)(m * (2 * od + ad + 4)) * sizeof(double));
  if (buf == NULL) return d2r_fail("dataset: out of memory");
  out.obs = buf;
  out.act = out.obs + m * od;
  out.next = out.act + m * ad;
  out.rew = out.next + m * od;
  out.term = out.rew + m;
  out.trunc = out.term + m;
  out.ep = out.trunc + m;
  int64_t j = 0;
  run = -1;
  for (int64_t i = 0; i < c.n; i++) {
    if (i == 0 || c.ep[i] != c.ep[i - 1]) run++;
    if (!keep[run]) continue;
    memcpy(out.obs + j * od, c.obs + i * od, (size_t)od * sizeof(double));
    memcpy(out.act + j * ad, c.act + i * ad, (size_t)ad * sizeof(double));
    memcpy(out.next + j * od, c.next + i * od,
           (size_t)od * sizeof(double));
    out.rew[j] = c.rew[i];
    out.term[j] = c.term[i];
    out.trunc[j] = c.trunc[i];
    out.ep[j] = c.ep[i];
    j++;
  }
  d2r_dataset *s = from_columns("dataset", d->env, d->behaviour, d->seed,
                                &out);
  free(buf);
  return s;
}

/* The id of each run (episode) of d, in order: [episodes]. */
static double *run_ids(const d2r_dataset *d) {
  columns c = columns_of(d);
  double *ids = malloc((size_t)d->episodes * sizeof(double));
  if (ids == NULL) return d2r_fail("dataset: out of memory");
  int64_t k = 0;
  for (int64_t i = 0; i < c.n; i++)
    if (i == 0 || c.ep[i] != c.ep[i - 1]) ids[k++] = c.ep[i];
  return ids;
}

d2r_dataset *d2r_dataset_select(const d2r_dataset *d, int64_t n,
                                const int64_t *ids) {
  if (d == NULL) return NULL;
  if (n < 1 || ids == NULL)
    return d2r_fail("dataset: select needs at least one episode id");
  double *runs = run_ids(d);
  bool *keep = calloc((size_t)d->episodes, sizeof(bool));
  d2r_dataset *out = NULL;
  if (runs == NULL || keep == NULL) {
    d2r_fail("dataset: out of memory");
    goto done;
  }
  for (int64_t k = 0; k < n; k++) {
    int64_t r = 0;
    while (r < d->episodes && runs[r] != (double)ids[k]) r++;
    if (r == d->episodes) {
      d2r_fail("dataset: no episode %lld", (long long)ids[k]);
      goto done;
    }
    if (keep[r]) {
      d2r_fail("dataset: episode %lld is listed twice", (long long)ids[k]);
      goto done;
    }
    keep[r] = true;
  }
  out = select_runs(d, keep);
done:
  free(runs);
  free(keep);
  return out;
}

static int64_t share(double f, int64_t e) {
  return (int64_t)floor(f * (double)e + 0.5);
}

int d2r_dataset_split(const d2r_dataset *d, double f_train, double f_val,
                      double f_test, uint64_t seed, d2r_dataset **train,
                      d2r_dataset **val, d2r_dataset **test) {
  d2r_dataset **outs[3] = {train, val, test};
  double f[3] = {f_train, f_val, f_test};
  for (int p = 0; p < 3; p++)
    if (outs[p]) *outs[p] = NULL;
  if (d == NULL) return -1;
  for (int p = 0; p < 3; p++) {
    if (!(f[p] >= 0 && f[p] <= 1)) {
      d2r_fail("split: fractions must be in [0, 1] (got %g)", f[p]);
      return -1;
    }
    if (f[p] > 0 && outs[p] == NULL) {
      d2r_fail("split: part %d has a positive fraction but no output", p);
      return -1;
    }
  }
  if (f[0] + f[1] + f[2] > 1 + 1e-9) {
    d2r_fail("split: the fractions sum to %g, more than 1",
             f[0] + f[1] + f[2]);
    return -1;
  }
  int64_t e = d->episodes, cnt[3];
  for (int p = 0; p < 3; p++) cnt[p] = share(f[p], e);
  for (int p = 2; p >= 1 && cnt[0] + cnt[1] + cnt[2] > e; p--)
    if (cnt[p] > 0) cnt[p]--;
  static const char *const part[3] = {"train", "validation", "test"};
  for (int p = 0; p < 3; p++) {
    if (f[p] > 0 && cnt[p] == 0) {
      d2r_fail("split: %lld episodes are too few to give the %s part "
               "(fraction %g) an episode", (long long)e, part[p], f[p]);
      return -1;
    }
  }
  d2r_rng *rng = d2r_rng_new(seed);
  d2r_tensor *perm = rng ? d2r_rand_permutation(rng, e) : NULL;
  bool *keep = malloc((size_t)e * sizeof(bool));
  int rc = perm && keep ? 0 : -1;
  if (rc < 0) d2r_fail("split: out of memory");
  int64_t start = 0;
  for (int p = 0; p < 3 && rc == 0; p++) {
    if (cnt[p] == 0) continue;
    memset(keep, 0, (size_t)e * sizeof(bool));
    for (int64_t k = start; k < start + cnt[p]; k++)
      keep[(int64_t)d2r_data(perm)[k]] = true;
    start += cnt[p];
    *outs[p] = select_runs(d, keep);
    if (*outs[p] == NULL) rc = -1;
  }
  if (rc < 0)
    for (int p = 0; p < 3; p++)
      if (outs[p]) {
        d2r_dataset_free(*outs[p]);
        *outs[p] = NULL;
      }
  free(keep);
  d2r_release(perm);
  d2r_rng_free(rng);
  return rc;
}

/* ---- the D2RT file format ----------------------------------------------- */

static uint8_t *put_values(uint8_t *p, const double *v, int64_t n) {
  for (int64_t i = 0; i < n; i++, p += 8) {
    uint64_t bits;
    memcpy(&bits, &v[i], 8);
    d2r_le_put_u64(p, bits);
  }
  return p;
}

static const uint8_t *get_values(const uint8_t *p, double *v, int64_t n) {
  for (int64_t i = 0; i < n; i++, p += 8) {
    uint64_t bits = d2r_le_get_u64(p);
    memcpy(&v[i], &bits, 8);
  }
  return p;
}

/* Bytes of a file with these counts (see dataset.h). */
static uint64_t file_size(uint64_t le, uint64_t lb, uint64_t n,
                          uint64_t od, uint64_t ad) {
  return HEADER + le + lb + 8 * n * (2 * od + ad + 4) + 4;
}

int d2r_dataset_save(const d2r_dataset *d, const char *path) {
  if (d == NULL) return -1;
  if (path == NULL) {
    d2r_fail("dataset: save needs a path");
    return -1;
  }
  columns c = columns_of(d);
  uint64_t le = strlen(d->env), lb = strlen(d->behaviour);
  uint64_t size = file_size(le, lb, (uint64_t)c.n, (uint64_t)c.od,
                            (uint64_t)c.ad);
  if (size > (uint64_t)SIZE_MAX / 2) {
    d2r_fail("%s: the dataset is too large to write", path);
    return -1;
  }
  uint8_t *buf = malloc((size_t)size);
  if (buf == NULL) {
    d2r_fail("%s: out of memory (%llu bytes)", path,
             (unsigned long long)size);
    return -1;
  }
  memcpy(buf, D2R_DATASET_MAGIC, 4);
  d2r_le_put_u32(buf + 4, D2R_DATASET_VERSION);
  d2r_le_put_u32(buf + 8, 0);
  d2r_le_put_u32(buf + 12, (uint32_t)c.od);
  d2r_le_put_u32(buf + 16, (uint32_t)c.ad);
  d2r_le_put_u32(buf + 20, (uint32_t)le);
  d2r_le_put_u32(buf + 24, (uint32_t)lb);
  d2r_le_put_u32(buf + 28, 0);
  d2r_le_put_u64(buf + 32, d->seed);
  d2r_le_put_u64(buf + 40, (uint64_t)c.n);
  d2r_le_put_u64(buf + 48, (uint64_t)d->episodes);
  d2r_le_put_u64(buf + 56, size);
  uint8_t *p = buf + HEADER;
  memcpy(p, d->env, le);
  memcpy(p + le, d->behaviour, lb);
  p += le + lb;
  p = put_values(p, c.obs, c.n * c.od);
  p = put_values(p, c.act, c.n * c.ad);
  p = put_values(p, c.rew, c.n);
  p = put_values(p, c.next, c.n * c.od);
  p = put_values(p, c.term, c.n);
  p = put_values(p, c.trunc, c.n);
  p = put_values(p, c.ep, c.n);
  d2r_le_put_u32(p, d2r_crc32(0, buf, (size_t)(size - 4)));
  int rc = d2r_file_write_atomic(path, buf, (size_t)size);
  free(buf);
  return rc;
}

/* Checks the frame of a D2RT image: header fields, length, checksum. */
static int check_frame(const char *path, const uint8_t *b, size_t size) {
  if (size < HEADER + 4) {
    d2r_fail("%s: truncated: %zu bytes, fewer than a D2RT header", path,
             size);
    return -1;
  }
  if (memcmp(b, D2R_DATASET_MAGIC, 4) != 0) {
    d2r_fail("%s: not a d2r dataset (D2RT) file: wrong magic", path);
    return -1;
  }
  uint32_t version = d2r_le_get_u32(b + 4);
  if (version != D2R_DATASET_VERSION) {
    d2r_fail("%s: D2RT version %u; this build reads version %d", path,
             version, D2R_DATASET_VERSION);
    return -1;
  }
  uint64_t declared = d2r_le_get_u64(b + 56);
  if (declared != size) {
    d2r_fail("%s: %s: the header declares %llu bytes, the file has %zu",
             path, size < declared ? "truncated" : "trailing bytes",
             (unsigned long long)declared, size);
    return -1;
  }
  uint32_t stored = d2r_le_get_u32(b + size - 4);
  uint32_t crc = d2r_crc32(0, b, size - 4);
  if (stored != crc) {
    d2r_fail("%s: checksum mismatch (stored %08x, computed %08x): the file "
             "is corrupted", path, stored, crc);
    return -1;
  }
  uint64_t od = d2r_le_get_u32(b + 12), ad = d2r_le_get_u32(b + 16);
  uint64_t le = d2r_le_get_u32(b + 20), lb = d2r_le_get_u32(b + 24);
  uint64_t n = d2r_le_get_u64(b + 40);
  if (d2r_le_get_u32(b + 8) != 0 || d2r_le_get_u32(b + 28) != 0) {
    d2r_fail("%s: unknown flags or reserved fields set", path);
    return -1;
  }
  if (od < 1 || od > MAX_DIM || ad < 1 || ad > MAX_DIM || le < 1 ||
      le > MAX_NAME || lb > MAX_NAME || n < 1 ||
      n > (uint64_t)1 << 40) {
    d2r_fail("%s: implausible header (obs_dim %llu, act_dim %llu, name "
             "lengths %llu and %llu, %llu transitions)", path,
             (unsigned long long)od, (unsigned long long)ad,
             (unsigned long long)le, (unsigned long long)lb,
             (unsigned long long)n);
    return -1;
  }
  if (file_size(le, lb, n, od, ad) != size) {
    d2r_fail("%s: the counts in the header do not add up to the file's "
             "%zu bytes", path, size);
    return -1;
  }
  return 0;
}

d2r_dataset *d2r_dataset_load(const char *path) {
  if (path == NULL) return d2r_fail("dataset: load needs a path");
  size_t size;
  uint8_t *b = d2r_file_read(path, &size);
  if (b == NULL) return NULL;
  if (check_frame(path, b, size) < 0) {
    free(b);
    return NULL;
  }
  columns c;
  c.od = d2r_le_get_u32(b + 12);
  c.ad = d2r_le_get_u32(b + 16);
  c.n = (int64_t)d2r_le_get_u64(b + 40);
  uint32_t le = d2r_le_get_u32(b + 20), lb = d2r_le_get_u32(b + 24);
  char *env = malloc(le + 1), *beh = malloc(lb + 1);
  double *vals = malloc((size_t)(c.n * (2 * c.od + c.ad + 4)) *
                        sizeof(double));
  d2r_dataset *d = NULL;
  if (env == NULL || beh == NULL || vals == NULL) {
    d2r_fail("%s: out of memory", path);
    goto done;
  }
  memcpy(env, b + HEADER, le);
  env[le] = '\0';
  memcpy(beh, b + HEADER + le, lb);
  beh[lb] = '\0';
  if (strlen(env) != le || strlen(beh) != lb) {
    d2r_fail("%s: a name holds a NUL byte", path);
    goto done;
  }
  c.obs = vals;
  c.act = c.obs + c.n * c.od;
  c.rew = c.act + c.n * c.ad;
  c.next = c.rew + c.n;
  c.term = c.next + c.n * c.od;
  c.trunc = c.term + c.n;
  c.ep = c.trunc + c.n;
  /* The file's column order is obs, act, reward, next_obs, ...: the
   * arrays above follow it, so one pass decodes everything. */
  get_values(b + HEADER + le + lb, vals, c.n * (2 * c.od + c.ad + 4));
  d = from_columns(path, env, beh, d2r_le_get_u64(b + 32), &c);
  if (d && (uint64_t)d->episodes != d2r_le_get_u64(b + 48)) {
    d2r_fail("%s: the header declares %llu episodes, the rows hold %lld",
             path, (unsigned long long)d2r_le_get_u64(b + 48),
             (long long)d->episodes);
    d2r_dataset_free(d);
    d = NULL;
  }
done:
  free(env);
  free(beh);
  free(vals);
  free(b);
  return d;
}

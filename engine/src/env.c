/*
 * The environment interface (env.h): the wrapper every environment sits
 * behind.  It owns the spec (name, box bounds, episode limit), checks and
 * clips actions, counts steps to report truncation, refuses to step a
 * finished episode, and runs agents through episodes.
 */
#include "d2r/env.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct d2r_env {
  int refs;
  const d2r_env_ops *ops;
  void *impl;
  char *name;
  int64_t obs_dim, act_dim, max_steps;
  double *bounds;          /* obs low, obs high, act low, act high */
  double *act;             /* [act_dim]: the clipped action of a step */
  double *scratch;         /* clipped batch actions, grown on demand */
  int64_t scratch_len;
  int64_t elapsed;         /* -1 before the first reset */
  bool done;
};

/* ---- construction ------------------------------------------------------- */

static int check_box(const char *name, const char *what, int64_t n,
                     const double *lo, const double *hi) {
  if (lo == NULL || hi == NULL) {
    d2r_fail("env '%s': %s bounds are missing", name, what);
    return -1;
  }
  for (int64_t i = 0; i < n; i++) {
    if (isnan(lo[i]) || isnan(hi[i]) || lo[i] > hi[i]) {
      d2r_fail("env '%s': %s bound %lld is [%g, %g], not an interval",
               name, what, (long long)i, lo[i], hi[i]);
      return -1;
    }
  }
  return 0;
}

static int check_spec(const d2r_env_spec *s) {
  const char *name = s->name ? s->name : "?";
  if (s->name == NULL || s->name[0] == '\0') {
    d2r_fail("env: a name is required");
    return -1;
  }
  if (s->obs_dim < 1 || s->act_dim < 1) {
    d2r_fail("env '%s': obs_dim and act_dim must be >= 1 (got %lld and "
             "%lld)", name, (long long)s->obs_dim, (long long)s->act_dim);
    return -1;
  }
  if (s->max_steps < 1) {
    d2r_fail("env '%s': max_steps must be >= 1 (got %lld)", name,
             (long long)s->max_steps);
    return -1;
  }
  if (check_box(name, "observation", s->obs_dim, s->obs_low,
                s->obs_high) < 0)
    return -1;
  return check_box(name, "action", s->act_dim, s->act_low, s->act_high);
}

static void env_destroy(d2r_env *e) {
  if (e->ops && e->ops->free_impl && e->impl) e->ops->free_impl(e->impl);
  free(e->name);
  free(e->bounds);
  free(e->act);
  free(e->scratch);
  free(e);
}

d2r_env *d2r_env_new(const d2r_env_ops *ops, void *impl,
                     const d2r_env_spec *spec) {
  if (ops == NULL || ops->reset == NULL || ops->step == NULL ||
      spec == NULL) {
    if (ops && ops->free_impl && impl) ops->free_impl(impl);
    return d2r_fail("env: ops with reset and step and a spec are "
                    "required");
  }
  if (check_spec(spec) < 0) {
    if (ops->free_impl && impl) ops->free_impl(impl);
    return NULL;
  }
  d2r_env *e = calloc(1, sizeof *e);
  if (e == NULL) {
    if (ops->free_impl && impl) ops->free_impl(impl);
    return d2r_fail("env '%s': out of memory", spec->name);
  }
  e->refs = 1;
  e->ops = ops;
  e->impl = impl;
  e->obs_dim = spec->obs_dim;
  e->act_dim = spec->act_dim;
  e->max_steps = spec->max_steps;
  e->elapsed = -1;
  size_t nb = (size_t)(2 * spec->obs_dim + 2 * spec->act_dim);
  e->name = malloc(strlen(spec->name) + 1);
  e->bounds = malloc(nb * sizeof(double));
  e->act = malloc((size_t)spec->act_dim * sizeof(double));
  if (e->name == NULL || e->bounds == NULL || e->act == NULL) {
    env_destroy(e);
    return d2r_fail("env '%s': out of memory", spec->name);
  }
  strcpy(e->name, spec->name);
  size_t no = (size_t)spec->obs_dim, na = (size_t)spec->act_dim;
  memcpy(e->bounds, spec->obs_low, no * sizeof(double));
  memcpy(e->bounds + no, spec->obs_high, no * sizeof(double));
  memcpy(e->bounds + 2 * no, spec->act_low, na * sizeof(double));
  memcpy(e->bounds + 2 * no + na, spec->act_high, na * sizeof(double));
  return e;
}

d2r_env *d2r_env_retain(d2r_env *e) {
  if (e) e->refs++;
  return e;
}

void d2r_env_release(d2r_env *e) {
  if (e && --e->refs == 0) env_destroy(e);
}

/* ---- introspection ------------------------------------------------------ */

const char *d2r_env_name(const d2r_env *e) { return e ? e->name : NULL; }
const char *d2r_env_kind(const d2r_env *e) {
  return e ? e->ops->kind : NULL;
}
int64_t d2r_env_obs_dim(const d2r_env *e) { return e ? e->obs_dim : -1; }
int64_t d2r_env_act_dim(const d2r_env *e) { return e ? e->act_dim : -1; }
int64_t d2r_env_max_steps(const d2r_env *e) {
  return e ? e->max_steps : -1;
}
const double *d2r_env_obs_low(const d2r_env *e) {
  return e ? e->bounds : NULL;
}
const double *d2r_env_obs_high(const d2r_env *e) {
  return e ? e->bounds + e->obs_dim : NULL;
}
const double *d2r_env_act_low(const d2r_env *e) {
  return e ? e->bounds + 2 * e->obs_dim : NULL;
}
const double *d2r_env_act_high(const d2r_env *e) {
  return e ? e->bounds + 2 * e->obs_dim + e->act_dim : NULL;
}
int64_t d2r_env_elapsed(const d2r_env *e) { return e ? e->elapsed : -1; }
bool d2r_env_done(const d2r_env *e) { return e && e->done; }
bool d2r_env_has_predict(const d2r_env *e) {
  return e && e->ops->predict != NULL;
}
bool d2r_env_has_reward(const d2r_env *e) {
  return e && e->ops->reward != NULL;
}
void *d2r_env_impl(const d2r_env *e) { return e ? e->impl : NULL; }

bool d2r_env_act_bounded(const d2r_env *e) {
  if (e == NULL) return false;
  const double *lo = d2r_env_act_low(e), *hi = d2r_env_act_high(e);
  for (int64_t i = 0; i < e->act_dim; i++)
    if (!isfinite(lo[i]) || !isfinite(hi[i])) return false;
  return true;
}

/* ---- actions and observations ------------------------------------------- */

/* Copies n actions of act_dim into out, clipped into the box; fails on a
 * non-finite element, naming it (and its row when n > 1). */
static int clip_actions(d2r_env *e, const char *fn, int64_t n,
                        const double *act, double *out) {
  const double *lo = d2r_env_act_low(e), *hi = d2r_env_act_high(e);
  int64_t k = e->act_dim;
  for (int64_t r = 0; r < n; r++) {
    for (int64_t j = 0; j < k; j++) {
      double a = act[r * k + j];
      if (!isfinite(a)) {
        if (n > 1)
          d2r_fail("env '%s': %s: action %lld of row %lld is %g; actions "
                   "must be finite", e->name, fn, (long long)j,
                   (long long)r, a);
        else
          d2r_fail("env '%s': %s: action element %lld is %g; actions "
                   "must be finite", e->name, fn, (long long)j, a);
        return -1;
      }
      out[r * k + j] = a < lo[j] ? lo[j] : a > hi[j] ? hi[j] : a;
    }
  }
  return 0;
}

/* Fails when an observation written by the implementation is not
 * finite: a diverged simulation must not pass silently. */
static int check_obs(const d2r_env *e, const char *fn, int64_t n,
                     const double *obs) {
  for (int64_t i = 0; i < n * e->obs_dim; i++) {
    if (!isfinite(obs[i])) {
      d2r_fail("env '%s': %s produced a non-finite observation (element "
               "%lld of row %lld is %g)", e->name, fn,
               (long long)(i % e->obs_dim), (long long)(i / e->obs_dim),
               obs[i]);
      return -1;
    }
  }
  return 0;
}

static double *scratch(d2r_env *e, int64_t len) {
  if (len > e->scratch_len) {
    double *p = realloc(e->scratch, (size_t)len * sizeof(double));
    if (p == NULL) return d2r_fail("env '%s': out of memory", e->name);
    e->scratch = p;
    e->scratch_len = len;
  }
  return e->scratch;
}

/* ---- episodes ----------------------------------------------------------- */

int d2r_env_reset_raw(d2r_env *e, uint64_t seed, double *obs) {
  if (e == NULL) return -1;
  if (obs == NULL) {
    d2r_fail("env '%s': reset: no observation buffer", e->name);
    return -1;
  }
  e->elapsed = -1;
  e->done = false;
  if (e->ops->reset(e->impl, seed, obs) < 0) return -1;
  if (check_obs(e, "reset", 1, obs) < 0) return -1;
  e->elapsed = 0;
  return 0;
}

int d2r_env_step_raw(d2r_env *e, const double *action, double *obs,
                     d2r_step_info *info) {
  if (e == NULL) return -1;
  if (action == NULL || obs == NULL || info == NULL) {
    d2r_fail("env '%s': step: missing action, observation or info",
             e->name);
    return -1;
  }
  if (e->elapsed < 0) {
    d2r_fail("env '%s': step before reset", e->name);
    return -1;
  }
  if (e->done) {
    d2r_fail("env '%s': step after the episode ended (at step %lld); "
             "call reset", e->name, (long long)e->elapsed);
    return -1;
  }
  if (clip_actions(e, "step", 1, action, e->act) < 0) return -1;
  double r = 0.0;
  bool term = false;
  if (e->ops->step(e->impl, e->act, obs, &r, &term) < 0) return -1;
  if (check_obs(e, "step", 1, obs) < 0) return -1;
  if (isnan(r)) {
    d2r_fail("env '%s': step produced a NaN reward", e->name);
    return -1;
  }
  e->elapsed++;
  info->reward = r;
  info->terminated = term;
  info->truncated = e->elapsed >= e->max_steps;
  info->elapsed = e->elapsed;
  e->done = info->terminated || info->truncated;
  return 0;
}

d2r_tensor *d2r_env_reset(d2r_env *e, uint64_t seed) {
  if (e == NULL) return NULL;
  d2r_tensor *obs = d2r_empty(1, &e->obs_dim);
  if (obs == NULL) return NULL;
  if (d2r_env_reset_raw(e, seed, d2r_data(obs)) < 0) {
    d2r_release(obs);
    return NULL;
  }
  return obs;
}

/* A contiguous copy of t's values if it holds exactly n of them, as a
 * vector or a batch of the expected layout. */
static d2r_tensor *values_of(const d2r_env *e, const char *fn,
                             const char *what, d2r_tensor *t, int ndim,
                             int64_t rows, int64_t cols) {
  char buf[64];
  if (t == NULL) return NULL;
  bool ok = ndim == 1
    ? (d2r_ndim(t) == 1 && d2r_dim(t, 0) == cols) ||
      (cols == 1 && d2r_numel(t) == 1 && d2r_ndim(t) <= 1)
    : d2r_ndim(t) == 2 && d2r_dim(t, 0) == rows && d2r_dim(t, 1) == cols;
  if (!ok) {
    d2r_shape_str(t, buf, sizeof buf);
    if (ndim == 1)
      return d2r_fail("env '%s': %s: %s must have %lld elements, got shape "
                      "%s", e->name, fn, what, (long long)cols, buf);
    return d2r_fail("env '%s': %s: %s must be [%lld, %lld], got %s",
                    e->name, fn, what, (long long)rows, (long long)cols,
                    buf);
  }
  return d2r_contiguous(t);
}

d2r_tensor *d2r_env_step(d2r_env *e, d2r_tensor *action,
                         d2r_step_info *info) {
  if (e == NULL || action == NULL) return NULL;
  d2r_step_info local;
  d2r_tensor *a = values_of(e, "step", "the action", action, 1, 1,
                            e->act_dim);
  if (a == NULL) return NULL;
  d2r_tensor *obs = d2r_empty(1, &e->obs_dim);
  if (obs == NULL ||
      d2r_env_step_raw(e, d2r_data(a), d2r_data(obs),
                       info ? info : &local) < 0) {
    d2r_release(a);
    d2r_release(obs);
    return NULL;
  }
  d2r_release(a);
  return obs;
}

/* ---- the environment as a model ----------------------------------------- */

static int batch_args(d2r_env *e, const char *fn, int64_t n,
                      const void *obs, const void *act, const void *out) {
  if (n < 1) {
    d2r_fail("env '%s': %s: the batch must have at least one row (got "
             "%lld)", e->name, fn, (long long)n);
    return -1;
  }
  if (obs == NULL || act == NULL || out == NULL) {
    d2r_fail("env '%s': %s: missing buffer", e->name, fn);
    return -1;
  }
  return 0;
}

int d2r_env_predict_raw(d2r_env *e, int64_t n, const double *obs,
                        const double *act, double *next_obs,
                        double *reward, double *done) {
  if (e == NULL) return -1;
  if (e->ops->predict == NULL) {
    d2r_fail("env '%s' (%s) cannot predict transitions: it has no batched "
             "model of itself", e->name, e->ops->kind);
    return -1;
  }
  if (batch_args(e, "predict", n, obs, act, next_obs) < 0 ||
      batch_args(e, "predict", n, reward, done, next_obs) < 0)
    return -1;
  double *a = scratch(e, n * e->act_dim);
  if (a == NULL || clip_actions(e, "predict", n, act, a) < 0) return -1;
  if (e->ops->predict(e->impl, n, obs, a, next_obs, reward, done) < 0)
    return -1;
  return check_obs(e, "predict", n, next_obs);
}

int d2r_env_reward_raw(d2r_env *e, int64_t n, const double *obs,
                       const double *act, const double *next_obs,
                       double *reward, double *done) {
  if (e == NULL) return -1;
  if (e->ops->reward == NULL) {
    d2r_fail("env '%s' (%s) has no reward function of transitions",
             e->name, e->ops->kind);
    return -1;
  }
  if (batch_args(e, "reward", n, obs, act, next_obs) < 0 ||
      batch_args(e, "reward", n, reward, done, next_obs) < 0)
    return -1;
  double *a = scratch(e, n * e->act_dim);
  if (a == NULL || clip_actions(e, "reward", n, act, a) < 0) return -1;
  return e->ops->reward(e->impl, n, obs, a, next_obs, reward, done);
}

/* Shared body of the tensor forms: next_in is NULL for predict. */
static int batch_tensors(d2r_env *e, const char *fn, d2r_tensor *obs,
                         d2r_tensor *act, d2r_tensor *next_in,
                         d2r_tensor **next_obs, d2r_tensor **reward,
                         d2r_tensor **done) {
  if (next_obs) *next_obs = NULL;
  *reward = NULL;
  if (done) *done = NULL;
  if (e == NULL || obs == NULL || act == NULL) return -1;
  if (d2r_ndim(obs) != 2) {
    char buf[64];
    d2r_fail("env '%s': %s: observations must be [N, %lld], got %s",
             e->name, fn, (long long)e->obs_dim,
             d2r_shape_str(obs, buf, sizeof buf));
    return -1;
  }
  int64_t n = d2r_dim(obs, 0), shape[2] = {n, e->obs_dim};
  d2r_scope s = D2R_SCOPE_INIT;
  d2r_tensor *o = d2r_keep(&s, values_of(e, fn, "observations", obs, 2,
                                         n, e->obs_dim));
  d2r_tensor *a = d2r_keep(&s, values_of(e, fn, "actions", act, 2, n,
                                         e->act_dim));
  d2r_tensor *no = NULL;
  if (next_in)
    no = d2r_keep(&s, values_of(e, fn, "next observations", next_in, 2,
                                n, e->obs_dim));
  d2r_tensor *nx = next_in ? NULL : d2r_keep(&s, d2r_empty(2, shape));
  d2r_tensor *r = d2r_keep(&s, d2r_empty(1, &n));
  d2r_tensor *d = d2r_keep(&s, d2r_empty(1, &n));
  int rc = -1;
  if (o && a && r && d && (next_in ? no != NULL : nx != NULL)) {
    rc = next_in
      ? d2r_env_reward_raw(e, n, d2r_data(o), d2r_data(a), d2r_data(no),
                           d2r_data(r), d2r_data(d))
      : d2r_env_predict_raw(e, n, d2r_data(o), d2r_data(a), d2r_data(nx),
                            d2r_data(r), d2r_data(d));
  }
  if (rc == 0) {
    if (next_obs) *next_obs = d2r_retain(nx);
    *reward = d2r_retain(r);
    if (done) *done = d2r_retain(d);
  }
  d2r_scope_end(&s);
  return rc;
}

int d2r_env_predict(d2r_env *e, d2r_tensor *obs, d2r_tensor *act,
                    d2r_tensor **next_obs, d2r_tensor **reward,
                    d2r_tensor **done) {
  if (next_obs == NULL || reward == NULL) {
    d2r_fail("env: predict: missing outputs");
    return -1;
  }
  return batch_tensors(e, "predict", obs, act, NULL, next_obs, reward,
                       done);
}

int d2r_env_reward(d2r_env *e, d2r_tensor *obs, d2r_tensor *act,
                   d2r_tensor *next_obs, d2r_tensor **reward,
                   d2r_tensor **done) {
  if (reward == NULL) {
    d2r_fail("env: reward: missing outputs");
    return -1;
  }
  if (next_obs == NULL) {
    *reward = NULL;
    if (done) *done = NULL;
    return -1;
  }
  return batch_tensors(e, "reward", obs, act, next_obs, NULL, reward,
                       done);
}

static int env_predict_fn(void *ctx, int64_t n, const double *obs,
                          const double *act, double *next_obs,
                          double *reward, double *done) {
  return d2r_env_predict_raw(ctx, n, obs, act, next_obs, reward, done);
}

int d2r_env_dynamics(d2r_env *e, d2r_dynamics *out) {
  if (e == NULL) return -1;
  if (out == NULL) {
    d2r_fail("env '%s': dynamics: no output", e->name);
    return -1;
  }
  if (e->ops->predict == NULL) {
    d2r_fail("env '%s' (%s) cannot serve as its own model: it has no "
             "predict function", e->name, e->ops->kind);
    return -1;
  }
  out->obs_dim = e->obs_dim;
  out->act_dim = e->act_dim;
  out->predict = env_predict_fn;
  out->ctx = e;
  return 0;
}

/* ---- agents and episodes ------------------------------------------------ */

int d2r_env_run(d2r_env *e, const d2r_agent *agent, uint64_t env_seed,
                uint64_t agent_seed, d2r_transition_fn on_step,
                void *step_ctx, d2r_episode_stats *stats) {
  if (e == NULL) return -1;
  if (agent == NULL || agent->act == NULL || stats == NULL) {
    d2r_fail("env '%s': run: an agent with an act function and a stats "
             "record are required", e->name);
    return -1;
  }
  size_t no = (size_t)e->obs_dim, na = (size_t)e->act_dim;
  double *buf = malloc((2 * no + na) * sizeof(double));
  if (buf == NULL) {
    d2r_fail("env '%s': out of memory", e->name);
    return -1;
  }
  double *obs = buf, *next = buf + no, *act = buf + 2 * no;
  d2r_step_info info;
  memset(stats, 0, sizeof *stats);
  int rc = d2r_env_reset_raw(e, env_seed, obs);
  if (rc == 0 && agent->begin) rc = agent->begin(agent->ctx, agent_seed);
  while (rc == 0) {
    rc = agent->act(agent->ctx, obs, act);
    if (rc == 0) rc = d2r_env_step_raw(e, act, next, &info);
    if (rc < 0) break;
    stats->ret += info.reward;
    stats->steps = info.elapsed;
    stats->terminated = info.terminated;
    if (on_step && on_step(step_ctx, obs, e->act, next, &info) < 0) {
      rc = -1;
      break;
    }
    if (info.terminated || info.truncated) break;
    memcpy(obs, next, no * sizeof(double));
  }
  free(buf);
  return rc;
}

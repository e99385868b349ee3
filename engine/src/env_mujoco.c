/*
 * MuJoCo environments (env.h): an MJCF model simulated by MuJoCo behind
 * the environment interface, with the batched predict a planner needs
 * and a reward given by the caller or the runner's default.  MuJoCo's
 * fatal errors arrive through a global hook; every call into MuJoCo runs
 * inside a setjmp region the hook jumps back to, so an error becomes a
 * d2r error and nothing exits.  Without MuJoCo at build time the
 * constructor reports that it is missing.
 */
#include "d2r/env.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/rng.h"

d2r_mujoco_config d2r_mujoco_defaults(const char *model_path) {
  d2r_mujoco_config c;
  memset(&c, 0, sizeof c);
  c.model_path = model_path;
  c.frame_skip = 5;
  c.exclude_qpos = 1;
  c.max_steps = 1000;
  c.reset_noise = 0.1;
  c.ctrl_cost = 0.1;
  return c;
}

static const char mj_kind[] = "mujoco";

#ifdef D2R_HAVE_MUJOCO

#include <mujoco/mujoco.h>
#include <setjmp.h>

typedef struct mj_env {
  mjModel *m;
  mjData *d;          /* the episode */
  mjData *p;          /* scratch for predictions */
  int skip, excl, od;
  double ctrl_cost, noise;
  d2r_reward_fn reward;
  void *ctx;
  void (*reward_free)(void *ctx);
  d2r_rng *rng;
  double *prev;       /* [od]: the observation before a step */
  int64_t warnings;
} mj_env;

/* ---- MuJoCo's error and warning hooks ------------------------------- */

static _Thread_local jmp_buf *jump;
static _Thread_local int64_t *warn_count;
static _Thread_local char mj_message[512];

static void on_error(const char *msg) {
  snprintf(mj_message, sizeof mj_message, "%s", msg ? msg : "?");
  if (jump) longjmp(*jump, 1);
}

static void on_warning(const char *msg) {
  (void)msg;
  if (warn_count) (*warn_count)++;
}

static void install_hooks(void) {
  mju_user_error = on_error;
  mju_user_warning = on_warning;
}

bool d2r_mujoco_available(void) { return true; }

/* ---- state and observations --------------------------------------------- */

static void observe(const mj_env *e, const mjData *d, double *obs) {
  int nq = e->m->nq, nv = e->m->nv;
  for (int i = e->excl; i < nq; i++) obs[i - e->excl] = d->qpos[i];
  for (int i = 0; i < nv; i++) obs[nq - e->excl + i] = d->qvel[i];
}

/* The state an observation stands for: the excluded positions at the
 * model's defaults, no time, no actuator activation. */
static void unobserve(const mj_env *e, const double *obs, mjData *d) {
  int nq = e->m->nq, nv = e->m->nv;
  for (int i = 0; i < e->excl; i++) d->qpos[i] = e->m->qpos0[i];
  for (int i = e->excl; i < nq; i++) d->qpos[i] = obs[i - e->excl];
  for (int i = 0; i < nv; i++) d->qvel[i] = obs[nq - e->excl + i];
  for (int i = 0; i < e->m->na; i++) d->act[i] = 0;
  d->time = 0;
}

/* Holds the action for frame_skip steps from a cold solver start,
 * inside a region MuJoCo's error hook jumps back to. */
static int simulate(mj_env *e, mjData *d, const double *act,
                    const char *what) {
  jmp_buf here;
  jmp_buf *volatile outer = jump;
  int64_t *volatile outer_count = warn_count;
  if (setjmp(here) != 0) {
    jump = outer;
    warn_count = outer_count;
    d2r_fail("env 'mujoco': %s: MuJoCo error: %s", what, mj_message);
    return -1;
  }
  jump = &here;
  warn_count = &e->warnings;
  mju_zero(d->qacc_warmstart, e->m->nv);
  for (int j = 0; j < e->m->nu; j++) d->ctrl[j] = act[j];
  for (int k = 0; k < e->skip; k++) mj_step(e->m, d);
  jump = outer;
  warn_count = outer_count;
  return 0;
}

/* ---- rewards ------------------------------------------------------------ */

/* The runner's reward: forward velocity after the step (qvel[0]) minus
 * the control cost. */
static int default_reward(const mj_env *e, int64_t n, const double *act,
                          const double *next, double *reward,
                          double *done) {
  int nu = e->m->nu, iv = e->m->nq - e->excl;
  for (int64_t i = 0; i < n; i++) {
    double c = 0;
    for (int j = 0; j < nu; j++) c += act[i * nu + j] * act[i * nu + j];
    reward[i] = next[i * e->od + iv] - e->ctrl_cost * c;
    done[i] = 0;
  }
  return 0;
}

static int rewards(mj_env *e, int64_t n, const double *obs,
                   const double *act, const double *next, double *reward,
                   double *done) {
  if (e->reward)
    return e->reward(e->ctx, n, obs, act, next, reward, done);
  return default_reward(e, n, act, next, reward, done);
}

/* ---- the environment ---------------------------------------------- */

static void mj_free(void *impl) {
  mj_env *e = impl;
  if (e == NULL) return;
  if (e->d) mj_deleteData(e->d);
  if (e->p) mj_deleteData(e->p);
  if (e->m) mj_deleteModel(e->m);
  if (e->reward_free && e->ctx) e->reward_free(e->ctx);
  d2r_rng_free(e->rng);
  free(e->prev);
  free(e);
}

static int mj_reset(void *impl, uint64_t seed, double *obs) {
  mj_env *e = impl;
  mjModel *m = e->m;
  d2r_rng_seed(e->rng, seed);
  mj_resetData(m, e->d);
  for (int i = 0; i < m->nq; i++)
    e->d->qpos[i] = m->qpos0[i] +
                    e->noise * (2.0 * d2r_rng_uniform(e->rng) - 1.0);
  for (int i = 0; i < m->nv; i++)
    e->d->qvel[i] = e->noise * d2r_rng_normal(e->rng);
  observe(e, e->d, obs);
  return 0;
}

static int mj_step_env(void *impl, const double *action, double *obs,
                       double *reward, bool *terminated) {
  mj_env *e = impl;
  double done;
  observe(e, e->d, e->prev);
  if (simulate(e, e->d, action, "step") < 0) return -1;
  observe(e, e->d, obs);
  if (rewards(e, 1, e->prev, action, obs, reward, &done) < 0) return -1;
  *terminated = done != 0;
  return 0;
}

static int mj_predict(void *impl, int64_t n, const double *obs,
                      const double *act, double *next, double *reward,
                      double *done) {
  mj_env *e = impl;
  int nu = e->m->nu;
  for (int64_t i = 0; i < n; i++) {
    unobserve(e, obs + i * e->od, e->p);
    if (simulate(e, e->p, act + i * nu, "predict") < 0) return -1;
    observe(e, e->p, next + i * e->od);
  }
  return rewards(e, n, obs, act, next, reward, done);
}

static int mj_reward(void *impl, int64_t n, const double *obs,
                     const double *act, const double *next, double *reward,
                     double *done) {
  return rewards(impl, n, obs, act, next, reward, done);
}

static const d2r_env_ops mj_ops = {mj_kind, mj_reset, mj_step_env,
                                   mj_predict, mj_reward, mj_free};

/* Loads the model inside an error region (mj_loadXML reports ordinary
 * problems in err, fatal ones through the hook). */
static mjModel *load(const char *path, char *err, int size) {
  jmp_buf here;
  jmp_buf *volatile outer = jump;
  if (setjmp(here) != 0) {
    jump = outer;
    snprintf(err, (size_t)size, "%s", mj_message);
    return NULL;
  }
  jump = &here;
  mjModel *m = mj_loadXML(path, NULL, err, size);
  jump = outer;
  return m;
}

static int check_config(const d2r_mujoco_config *c) {
  const char *bad = NULL;
  if (c->model_path == NULL) bad = "a model path is required";
  else if (c->frame_skip < 1) bad = "frame_skip must be >= 1";
  else if (c->exclude_qpos < 0) bad = "exclude_qpos must be >= 0";
  else if (c->max_steps < 1) bad = "max_steps must be >= 1";
  else if (!(c->reset_noise >= 0) || !isfinite(c->reset_noise))
    bad = "reset_noise must be finite and >= 0";
  else if (!(c->ctrl_cost >= 0) || !isfinite(c->ctrl_cost))
    bad = "ctrl_cost must be finite and >= 0";
  if (bad) {
    d2r_fail("env 'mujoco': %s", bad);
    return -1;
  }
  return 0;
}

d2r_env *d2r_env_mujoco(const d2r_mujoco_config *c) {
  if (c == NULL) return d2r_fail("env 'mujoco': a configuration is needed");
  if (check_config(c) < 0) {
    if (c->reward_free && c->reward_ctx) c->reward_free(c->reward_ctx);
    return NULL;
  }
  install_hooks();
  mj_env *e = calloc(1, sizeof *e);
  if (e == NULL) {
    if (c->reward_free && c->reward_ctx) c->reward_free(c->reward_ctx);
    return d2r_fail("env 'mujoco': out of memory");
  }
  e->reward = c->reward;
  e->ctx = c->reward_ctx;
  e->reward_free = c->reward_free;
  e->skip = c->frame_skip;
  e->excl = c->exclude_qpos;
  e->ctrl_cost = c->ctrl_cost;
  e->noise = c->reset_noise;
  char err[1024] = "";
  e->m = load(c->model_path, err, sizeof err);
  if (e->m == NULL) {
    mj_free(e);
    return d2r_fail("env 'mujoco': %s: cannot load the model: %s",
                    c->model_path, err[0] ? err : "unknown error");
  }
  mjModel *m = e->m;
  if (e->excl > m->nq || m->nu < 1) {
    int nq = m->nq, nu = m->nu;
    mj_free(e);
    return d2r_fail("env 'mujoco': %s: %s (nq %d, nu %d)", c->model_path,
                    nu < 1 ? "the model has no actuators"
                           : "exclude_qpos exceeds nq", nq, nu);
  }
  e->od = m->nq - e->excl + m->nv;
  e->d = mj_makeData(m);
  e->p = mj_makeData(m);
  e->rng = d2r_rng_new(0);
  e->prev = malloc((size_t)e->od * sizeof(double));
  double *box = malloc((size_t)(2 * e->od + 2 * m->nu) * sizeof(double));
  if (!e->d || !e->p || !e->rng || !e->prev || !box) {
    free(box);
    mj_free(e);
    return d2r_fail("env 'mujoco': out of memory");
  }
  double *olo = box, *ohi = box + e->od, *alo = ohi + e->od;
  double *ahi = alo + m->nu;
  for (int i = 0; i < e->od; i++) {
    olo[i] = -INFINITY;
    ohi[i] = INFINITY;
  }
  for (int j = 0; j < m->nu; j++) {
    bool lim = m->actuator_ctrllimited[j];
    alo[j] = lim ? m->actuator_ctrlrange[2 * j] : -INFINITY;
    ahi[j] = lim ? m->actuator_ctrlrange[2 * j + 1] : INFINITY;
  }
  d2r_env_spec spec = {c->name ? c->name : "mujoco", e->od, m->nu, olo,
                       ohi, alo, ahi, c->max_steps};
  d2r_env *env = d2r_env_new(&mj_ops, e, &spec);
  free(box);
  return env;
}

void *d2r_env_mujoco_reward_ctx(const d2r_env *e) {
  if (e == NULL || d2r_env_kind(e) != mj_kind) return NULL;
  return ((mj_env *)d2r_env_impl(e))->ctx;
}

int64_t d2r_env_mujoco_warnings(const d2r_env *e) {
  if (e == NULL || d2r_env_kind(e) != mj_kind) return 0;
  return ((mj_env *)d2r_env_impl(e))->warnings;
}

#else /* no MuJoCo */

bool d2r_mujoco_available(void) { return false; }

d2r_env *d2r_env_mujoco(const d2r_mujoco_config *c) {
  if (c && c->reward_free && c->reward_ctx) c->reward_free(c->reward_ctx);
  return d2r_fail("env 'mujoco': this build has no MuJoCo (install the "
                  "Debian package libmujoco-dev and reconfigure)");
}

void *d2r_env_mujoco_reward_ctx(const d2r_env *e) {
  (void)e;
  (void)mj_kind;
  return NULL;
}

int64_t d2r_env_mujoco_warnings(const d2r_env *e) {
  (void)e;
  return 0;
}

#endif

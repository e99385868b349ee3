/*
 * Training control: the reduce-on-plateau learning-rate schedule
 * (PyTorch's ReduceLROnPlateau, relative threshold) and early stopping
 * with an optional copy of the best parameters.
 */
#include <math.h>
#include <stdlib.h>

#include "d2r/nn.h"
#include "d2r/optim.h"

/* ---- reduce on plateau --------------------------------------------------- */

struct d2r_plateau {
  d2r_plateau_config c;
  double best;
  int bad;        /* epochs without improvement */
  int cooldown;   /* cooldown epochs left */
  int64_t epochs;
};

d2r_plateau_config d2r_plateau_defaults(void) {
  return (d2r_plateau_config){false, 0.1, 10, 1e-4, 0, 0.0, 1e-8};
}

static bool nonneg(double x) { return isfinite(x) && x >= 0.0; }

static int plateau_check(const d2r_plateau_config *c) {
  if (c == NULL) {
    d2r_fail("plateau: no configuration given");
    return -1;
  }
  if (!(c->factor > 0.0 && c->factor < 1.0) || c->patience < 0 ||
      c->cooldown < 0 || !nonneg(c->threshold) || !nonneg(c->min_lr) ||
      !nonneg(c->eps)) {
    d2r_fail("plateau: need 0 < factor < 1 (got %g), patience and "
             "cooldown >= 0, threshold, min_lr and eps finite and >= 0",
             c->factor);
    return -1;
  }
  return 0;
}

d2r_plateau *d2r_plateau_new(const d2r_plateau_config *config) {
  if (plateau_check(config) != 0) return NULL;
  d2r_plateau *s = malloc(sizeof *s);
  if (s == NULL) return d2r_fail("plateau: out of memory");
  double worst = config->maximize ? -INFINITY : INFINITY;
  *s = (d2r_plateau){*config, worst, 0, 0, 0};
  return s;
}

void d2r_plateau_free(d2r_plateau *s) { free(s); }

static bool plateau_better(const d2r_plateau *s, double x) {
  if (s->c.maximize) return x > s->best * (1.0 + s->c.threshold);
  return x < s->best * (1.0 - s->c.threshold);
}

/* Lowers the learning rate of o; 1 if it changed, 0 if not, -1. */
static int plateau_reduce(const d2r_plateau *s, d2r_optim *o) {
  double old = d2r_optim_lr(o);
  double lr = fmax(old * s->c.factor, s->c.min_lr);
  if (!(old - lr > s->c.eps)) return 0;
  return d2r_optim_set_lr(o, lr) == 0 ? 1 : -1;
}

int d2r_plateau_step(d2r_plateau *s, d2r_optim *o, double metric) {
  if (s == NULL || o == NULL) {
    d2r_fail("plateau: no schedule or optimiser given");
    return -1;
  }
  s->epochs++;
  if (plateau_better(s, metric)) {
    s->best = metric;
    s->bad = 0;
  } else {
    s->bad++;
  }
  if (s->cooldown > 0) {
    s->cooldown--;
    s->bad = 0;
  }
  if (s->bad <= s->c.patience) return 0;
  s->cooldown = s->c.cooldown;
  s->bad = 0;
  return plateau_reduce(s, o);
}

double d2r_plateau_best(const d2r_plateau *s) {
  return s != NULL ? s->best : NAN;
}

int d2r_plateau_bad_epochs(const d2r_plateau *s) {
  return s != NULL ? s->bad : -1;
}

int d2r_plateau_cooldown_left(const d2r_plateau *s) {
  return s != NULL ? s->cooldown : -1;
}

int64_t d2r_plateau_epochs(const d2r_plateau *s) {
  return s != NULL ? s->epochs : -1;
}

/* ---- early stopping ------------------------------------------------------ */

struct d2r_early_stop {
  d2r_early_stop_config c;
  double best;
  int64_t best_epoch;
  int wait;
  bool stop;
  d2r_tensor *best_params;  /* owned; NULL until the first improvement */
};

d2r_early_stop *d2r_early_stop_new(const d2r_early_stop_config *config) {
  if (config == NULL || config->patience < 1 ||
      !nonneg(config->min_delta)) {
    return d2r_fail("early_stop: need a configuration with patience >= 1 "
                    "and a finite min_delta >= 0");
  }
  d2r_early_stop *e = malloc(sizeof *e);
  if (e == NULL) return d2r_fail("early_stop: out of memory");
  double worst = config->maximize ? -INFINITY : INFINITY;
  *e = (d2r_early_stop){*config, worst, -1, 0, false, NULL};
  return e;
}

void d2r_early_stop_free(d2r_early_stop *e) {
  if (e == NULL) return;
  d2r_release(e->best_params);
  free(e);
}

static bool early_better(const d2r_early_stop *e, double x) {
  if (e->c.maximize) return x > e->best + e->c.min_delta;
  return x < e->best - e->c.min_delta;
}

/* Stores a copy of the parameters as the best; 0 or -1. */
static int keep_copy(d2r_early_stop *e, int n, d2r_tensor *const *params) {
  if (n < 1 || params == NULL) {
    d2r_fail("early_stop: keep_best needs the parameters");
    return -1;
  }
  d2r_tensor *flat = d2r_params_flatten(n, params);
  if (flat == NULL) return -1;
  d2r_release(e->best_params);
  e->best_params = flat;
  return 0;
}

int d2r_early_stop_update(d2r_early_stop *e, double value, int64_t epoch,
                          int n, d2r_tensor *const *params) {
  if (e == NULL) {
    d2r_fail("early_stop: no object given");
    return -1;
  }
  if (early_better(e, value)) {
    if (e->c.keep_best && keep_copy(e, n, params) != 0) return -1;
    e->best = value;
    e->best_epoch = epoch;
    e->wait = 0;
  } else {
    e->wait++;
  }
  e->stop = e->wait >= e->c.patience;
  return e->stop ? 1 : 0;
}

bool d2r_early_stop_should_stop(const d2r_early_stop *e) {
  return e != NULL && e->stop;
}

double d2r_early_stop_best(const d2r_early_stop *e) {
  return e != NULL ? e->best : NAN;
}

int64_t d2r_early_stop_best_epoch(const d2r_early_stop *e) {
  return e != NULL ? e->best_epoch : -1;
}

int d2r_early_stop_wait(const d2r_early_stop *e) {
  return e != NULL ? e->wait : -1;
}

d2r_tensor *d2r_early_stop_best_params(const d2r_early_stop *e) {
  return e != NULL ? e->best_params : NULL;
}

int d2r_early_stop_restore(const d2r_early_stop *e, int n,
                           d2r_tensor *const *params) {
  if (e == NULL) return -1;
  if (e->best_params == NULL) {
    d2r_fail("early_stop: no best parameters stored (keep_best %s)",
             e->c.keep_best ? "set, but no improvement yet" : "not set");
    return -1;
  }
  return d2r_params_assign_flat(n, params, e->best_params);
}

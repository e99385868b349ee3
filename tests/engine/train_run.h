/*
 * A small training run shared by the checkpoint tests and the
 * allocation-failure sweep: a linear categorical policy on fixed random
 * data, trained with the PG surrogate (group-mean baseline, entropy
 * bonus) and Adam, sampling from its own generator at every step.  The
 * functions check every engine call and return -1 (d2r_error() set,
 * everything they made released) instead of asserting, so a failure
 * anywhere can be injected and observed.  Include it in one file per
 * program; its functions are static.
 */
#ifndef D2R_TEST_TRAIN_RUN_H
#define D2R_TEST_TRAIN_RUN_H

#include <stdint.h>

#include "d2r/dist.h"
#include "d2r/nn.h"
#include "d2r/objective.h"
#include "d2r/optim.h"
#include "d2r/rng.h"

enum { TR_IN = 4, TR_C = 3, TR_B = 8, TR_G = 4 };

typedef struct train_run {
  d2r_rng *rng;       /* draws the samples of each step */
  d2r_model *model;   /* linear TR_IN -> TR_C with a bias */
  d2r_optim *optim;   /* Adam over the model's parameters */
  d2r_tensor *x;      /* inputs [TR_B, TR_IN] */
  d2r_tensor *y;      /* labels [TR_B] in 0..TR_C-1 */
} train_run;

static void train_run_free(train_run *r) {
  d2r_optim_free(r->optim);
  d2r_model_release(r->model);
  d2r_rng_free(r->rng);
  d2r_release(r->x);
  d2r_release(r->y);
  *r = (train_run){NULL, NULL, NULL, NULL, NULL};
}

/* The same data for every seed (from generator 7); the model starts
 * from seed, and training draws from a generator seeded seed + 1. */
static int train_run_init(train_run *r, uint64_t seed) {
  *r = (train_run){NULL, NULL, NULL, NULL, NULL};
  d2r_rng *data = d2r_rng_new(7);
  d2r_rng *init = d2r_rng_new(seed);
  int64_t xs[2] = {TR_B, TR_IN};
  double labels[TR_B];
  for (int i = 0; i < TR_B; i++) labels[i] = (double)(i * 5 % TR_C);
  r->x = data ? d2r_rand_normal(data, 2, xs, 0.0, 1.0) : NULL;
  r->y = d2r_vector(TR_B, labels);
  r->model = init ? d2r_linear_new(TR_IN, TR_C, true, init) : NULL;
  r->rng = d2r_rng_new(seed + 1);
  d2r_adam_config cfg = d2r_adam_defaults();
  cfg.lr = 0.05;
  if (r->model)
    r->optim = d2r_adam_new(d2r_model_nparams(r->model),
                            d2r_model_params(r->model), &cfg);
  d2r_rng_free(data);
  d2r_rng_free(init);
  if (!r->x || !r->y || !r->model || !r->rng || !r->optim) {
    train_run_free(r);
    return -1;
  }
  return 0;
}

/* One step of sampling, scoring and updating; 0 or -1. */
static int train_step(train_run *r) {
  d2r_pg_options opt = D2R_PG_OPTIONS_INIT;
  opt.baseline = D2R_BASELINE_MEAN;
  d2r_tensor *logits = d2r_model_forward(r->model, r->x);
  d2r_tensor *s = logits ? d2r_categorical_sample(r->rng, logits, TR_G)
                         : NULL;
  d2r_tensor *logp = d2r_categorical_log_prob(logits, s);
  d2r_tensor *u = d2r_scalar(1.0);
  d2r_tensor *reward = u ? d2r_onehot_reward(s, r->y, TR_C, u) : NULL;
  d2r_tensor *ent = d2r_categorical_entropy(logits);
  d2r_tensor *loss = d2r_pg_surrogate(logp, reward, ent, 0.01, &opt, NULL);
  int rc = loss ? 0 : -1;
  d2r_optim_zero_grad(r->optim);
  if (rc == 0) rc = d2r_backward(loss);
  if (rc == 0) rc = d2r_optim_step(r->optim);
  d2r_release(logits);
  d2r_release(s);
  d2r_release(logp);
  d2r_release(u);
  d2r_release(reward);
  d2r_release(ent);
  d2r_release(loss);
  return rc;
}

static int train_steps(train_run *r, int n) {
  for (int i = 0; i < n; i++)
    if (train_step(r) != 0) return -1;
  return 0;
}

#endif

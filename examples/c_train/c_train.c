/*
 * Training with the d2r engine alone, no Lua: a linear softmax policy
 * over the three iris classes, rewarded by the one-hot Mahalanobis reward
 * r(s, y) = -beta |e_s - e_y|^2 (0 for the right class, -2 beta for a
 * wrong one), trained with the REINFORCE surrogate (mean baseline within
 * each group of draws, an entropy bonus) and Adam.  Prints the loss as it
 * goes and the test accuracy at the end; exits 1 on an error or when the
 * policy has not learned (accuracy below 0.8).
 *
 * Usage: c_train [path/to/iris.csv]
 */
#include <stdio.h>
#include <stdlib.h>

#include <d2r/d2r.h>

#define STEPS 300
#define DRAWS 8          /* samples per row: the group of the baseline */
#define LAMBDA 0.01      /* entropy weight */

/* Everything the program owns, freed at the end (all NULL-safe). */
typedef struct {
  d2r_table *table;
  d2r_rng *rng;
  d2r_tensor *train, *test, *xtr, *ytr, *xte, *yte, *beta;
  d2r_standardizer *scaler;
  d2r_model *policy;
  d2r_optim *adam;
} state;

static void cleanup(state *s) {
  d2r_table_free(s->table);
  d2r_rng_free(s->rng);
  d2r_release(s->train);
  d2r_release(s->test);
  d2r_release(s->xtr);
  d2r_release(s->ytr);
  d2r_release(s->xte);
  d2r_release(s->yte);
  d2r_release(s->beta);
  d2r_standardizer_free(s->scaler);
  d2r_model_release(s->policy);
  d2r_optim_free(s->adam);
}

/* Reads the data, splits it 70/30 by class, standardises the features
 * with the training rows' statistics.  0 or -1. */
static int load(state *s, const char *path) {
  d2r_tensor *all, *x;
  int st;
  s->table = d2r_csv_read(path, "label");
  if (s->table == NULL)
    return -1;
  all = d2r_arange(0, (double)s->table->rows, 1);
  st = d2r_stratified_split(s->table->y, all, 0.3, s->rng, &s->train,
                            &s->test);
  d2r_release(all);
  if (st < 0)
    return -1;
  x = d2r_take_rows(s->table->x, s->train);
  s->scaler = d2r_standardizer_fit(x);
  s->xtr = s->scaler ? d2r_standardizer_apply(s->scaler, x) : NULL;
  d2r_release(x);
  x = d2r_take_rows(s->table->x, s->test);
  s->xte = s->scaler ? d2r_standardizer_apply(s->scaler, x) : NULL;
  d2r_release(x);
  s->ytr = d2r_take_rows(s->table->y, s->train);
  s->yte = d2r_take_rows(s->table->y, s->test);
  return s->xtr && s->xte && s->ytr && s->yte ? 0 : -1;
}

/* One step: sample DRAWS classes per training row, score them, build the
 * surrogate, back-propagate, update.  Temporaries live in a scope. */
static int step(state *s, int64_t classes, double *loss_out,
                d2r_pg_stats *stats) {
  d2r_scope sc = D2R_SCOPE_INIT;
  d2r_pg_options opt = d2r_pg_options_default();
  d2r_tensor *logits, *samples, *reward, *logp, *entropy, *loss;
  int st = -1;
  opt.baseline = D2R_BASELINE_MEAN;
  logits = d2r_keep(&sc, d2r_model_forward(s->policy, s->xtr));
  samples = d2r_keep(&sc, d2r_categorical_sample(s->rng, logits, DRAWS));
  reward = d2r_keep(&sc, d2r_onehot_reward(samples, s->ytr, classes,
                                           s->beta));
  logp = d2r_keep(&sc, d2r_categorical_log_prob(logits, samples));
  entropy = d2r_keep(&sc, d2r_categorical_entropy(logits));
  loss = d2r_keep(&sc, d2r_pg_surrogate(logp, reward, entropy, LAMBDA,
                                        &opt, stats));
  if (loss != NULL) {
    d2r_optim_zero_grad(s->adam);
    if (d2r_backward(loss) == 0 && d2r_optim_step(s->adam) == 0) {
      *loss_out = d2r_item(loss);
      st = 0;
    }
  }
  d2r_scope_end(&sc);
  return st;
}

/* The fraction of test rows whose most likely class is right, or -1. */
static double accuracy(state *s) {
  d2r_scope sc = D2R_SCOPE_INIT;
  bool prev = d2r_set_grad_enabled(false);
  d2r_tensor *logits = d2r_keep(&sc, d2r_model_forward(s->policy, s->xte));
  d2r_tensor *pred = d2r_keep(&sc, d2r_argmax(logits, 1, false));
  d2r_tensor *hit = d2r_keep(&sc, d2r_eq(pred, s->yte));
  d2r_tensor *acc = d2r_keep(&sc, d2r_mean_all(hit));
  double a = acc ? d2r_item(acc) : -1;
  d2r_set_grad_enabled(prev);
  d2r_scope_end(&sc);
  return a;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "data/uci/iris.csv";
  state s = {0};
  d2r_adam_config cfg = d2r_adam_defaults();
  d2r_pg_stats stats;
  double loss = 0, acc;
  int i, ok = 0;
  s.rng = d2r_rng_new(7);
  if (s.rng == NULL || load(&s, path) < 0)
    goto done;
  printf("%lld training rows, %lld test rows, %lld features, "
         "%lld classes\n", (long long)d2r_numel(s.ytr),
         (long long)d2r_numel(s.yte), (long long)s.table->features,
         (long long)s.table->classes);
  s.policy = d2r_linear_new(s.table->features, s.table->classes, true,
                            s.rng);
  cfg.lr = 0.05;
  s.adam = s.policy ? d2r_adam_new(d2r_model_nparams(s.policy),
                                   d2r_model_params(s.policy), &cfg)
                    : NULL;
  s.beta = d2r_scalar(1.0);
  if (s.adam == NULL || s.beta == NULL)
    goto done;
  for (i = 1; i <= STEPS; i++) {
    if (step(&s, s.table->classes, &loss, &stats) < 0)
      goto done;
    if (i % 50 == 0)
      printf("step %3d  loss % .4f  mean reward % .4f  entropy %.4f\n", i,
             loss, stats.reward_mean, stats.entropy_mean);
  }
  acc = accuracy(&s);
  if (acc < 0)
    goto done;
  printf("test accuracy %.3f\n", acc);
  ok = acc >= 0.8;
  if (!ok)
    fprintf(stderr, "c_train: the policy did not learn\n");
done:
  if (!ok && *d2r_error() != '\0')
    fprintf(stderr, "c_train: %s\n", d2r_error());
  cleanup(&s);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

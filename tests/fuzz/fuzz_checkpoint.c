/*
 * Fuzz target: D2RC checkpoints (d2r_checkpoint_load), checked alone
 * (no objects: every section is still parsed and checked) and restored
 * into a fixed run (a linear model 4 -> 3, Adam, a generator), each on
 * the input as given and with its checksum made right.  A refused load
 * must leave the run unchanged.
 */
#include "fuzz_util.h"

#include "d2r/checkpoint.h"

static d2r_model *model;
static d2r_optim *optim;
static d2r_rng *rng;

static void setup(void) {
  if (model) return;
  rng = d2r_rng_new(1);
  model = d2r_linear_new(4, 3, true, rng);
  optim = d2r_adam_new(2, d2r_model_params(model),
                       &(d2r_adam_config){0.01, 0.9, 0.999, 1e-8, 0, 0});
  if (!optim) abort();
}

/* The run's whole state as bytes (malloc'd, size in *n). */
static uint8_t *state(size_t *n) {
  d2r_tensor *p = d2r_params_flatten(2, d2r_model_params(model));
  d2r_tensor *s = d2r_optim_state_flat(optim);
  size_t np = 8 * (size_t)d2r_numel(p), ns = 8 * (size_t)d2r_numel(s);
  size_t nr = d2r_rng_state_size(rng);
  double lr = d2r_optim_lr(optim);
  *n = np + ns + nr + sizeof lr;
  uint8_t *b = malloc(*n);
  memcpy(b, d2r_data(p), np);
  memcpy(b + np, d2r_data(s), ns);
  memcpy(b + np + ns, &lr, sizeof lr);
  d2r_rng_get_state(rng, b + np + ns + sizeof lr, nr);
  d2r_release(p);
  d2r_release(s);
  return b;
}

static void one(const char *path) {
  d2r_checkpoint bare = {0, NULL, NULL, NULL, 0, 0, NULL, 0};
  char *meta = NULL;
  if (d2r_checkpoint_load(path, &bare, &meta) == 0) {
    if (strlen(meta) > bare.meta_len) abort();
    free(meta);
  } else if (!d2r_error()[0]) {
    abort();
  }
  size_t n0, n1;
  uint8_t *before = state(&n0);
  d2r_checkpoint ck = {2, d2r_model_params(model), optim, rng, 0, 0, NULL,
                       0};
  if (d2r_checkpoint_load(path, &ck, NULL) != 0) {
    uint8_t *after = state(&n1);
    if (n0 != n1 || memcmp(before, after, n0) != 0) abort();
    free(after);
  } else {
    d2r_rng_uniform(rng);            /* a restored generator still works */
    d2r_rng_below(rng, 10);
  }
  free(before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  const char *path = fuzz_file("checkpoint", data, size);
  if (path) one(path);
  uint8_t *fixed = fuzz_fix_crc(data, size);
  if (fixed && (path = fuzz_file("checkpoint", fixed, size))) one(path);
  free(fixed);
  return 0;
}

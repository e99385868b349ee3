/*
 * Writes the seed corpora of the binary formats into DIR/params,
 * DIR/checkpoint and DIR/dataset: small valid files made by the engine's
 * own writers, and damaged copies of them (truncated, a flipped byte,
 * another version, extra bytes).  The CSV seeds are plain text kept by
 * hand.  Usage: d2r_fuzz_seeds DIR (the seeds in tests/fuzz/corpus were
 * made this way).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "d2r/checkpoint.h"
#include "d2r/dataset.h"
#include "d2r/nn.h"

static const char *root;

static void die(const char *what) {
  fprintf(stderr, "make_corpus: %s: %s\n", what, d2r_error());
  exit(1);
}

static char *path_of(const char *kind, const char *name) {
  static char buf[1024];
  snprintf(buf, sizeof buf, "%s/%s", root, kind);
  mkdir(buf, 0777);
  snprintf(buf, sizeof buf, "%s/%s/%s", root, kind, name);
  return buf;
}

static unsigned char *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) die(path);
  fseek(f, 0, SEEK_END);
  *size = (size_t)ftell(f);
  rewind(f);
  unsigned char *b = malloc(*size + 1);
  if (!b || fread(b, 1, *size, f) != *size) die(path);
  fclose(f);
  return b;
}

static void spit(const char *path, const unsigned char *b, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(b, 1, size, f) != size || fclose(f) != 0) die(path);
}

/* Damaged copies of the valid seed kind/name. */
static void damage(const char *kind, const char *name) {
  size_t n;
  unsigned char *b = slurp(path_of(kind, name), &n);
  char out[256];
  snprintf(out, sizeof out, "bad-truncated-%s", name);
  spit(path_of(kind, out), b, n / 2);
  snprintf(out, sizeof out, "bad-header-%s", name);
  spit(path_of(kind, out), b, n < 12 ? n : 12);
  snprintf(out, sizeof out, "bad-extra-%s", name);
  b[n] = 0;
  spit(path_of(kind, out), b, n + 1);
  snprintf(out, sizeof out, "bad-flipped-%s", name);
  b[n / 3] ^= 0x20;
  spit(path_of(kind, out), b, n);
  b[n / 3] ^= 0x20;
  snprintf(out, sizeof out, "bad-version-%s", name);
  b[4] = 7;
  spit(path_of(kind, out), b, n);
  free(b);
}

static void params_seeds(d2r_model *m) {
  d2r_tensor *s = d2r_scalar(2.5), *e = d2r_zeros(2, (int64_t[]){0, 3});
  if (d2r_model_save(m, path_of("params", "linear-4-3.d2rp")) != 0 ||
      d2r_params_save(path_of("params", "scalar-empty.d2rp"), 2,
                      (d2r_tensor *[]){s, e}) != 0 ||
      d2r_params_save(path_of("params", "none.d2rp"), 0, NULL) != 0)
    die("params");
  damage("params", "linear-4-3.d2rp");
  d2r_release(s);
  d2r_release(e);
}

static void checkpoint_seeds(d2r_model *m, d2r_rng *r) {
  d2r_adam_config cfg = d2r_adam_defaults();
  d2r_optim *adam = d2r_adam_new(2, d2r_model_params(m), &cfg);
  d2r_optim *sgd = d2r_sgd_new(2, d2r_model_params(m),
                               &(d2r_sgd_config){0.1, 0.9, 0, 0, false});
  d2r_checkpoint full = {2, d2r_model_params(m), adam, r, 3, 30,
                         "seed=1", 0};
  d2r_checkpoint part = {0, NULL, sgd, NULL, -1, 0, NULL, 0};
  d2r_checkpoint bare = {0, NULL, NULL, NULL, 0, 0, "x\0y", 3};
  if (d2r_checkpoint_save(path_of("checkpoint", "full.d2rc"), &full) ||
      d2r_checkpoint_save(path_of("checkpoint", "sgd.d2rc"), &part) ||
      d2r_checkpoint_save(path_of("checkpoint", "meta.d2rc"), &bare))
    die("checkpoint");
  damage("checkpoint", "full.d2rc");
  d2r_optim_free(adam);
  d2r_optim_free(sgd);
}

static void dataset_seeds(d2r_rng *r) {
  int64_t n = 5;
  d2r_tensor *obs = d2r_rand_normal(r, 2, (int64_t[]){n, 2}, 0, 1);
  d2r_tensor *act = d2r_rand_uniform(r, 2, (int64_t[]){n, 1}, -1, 1);
  d2r_tensor *rew = d2r_rand_normal(r, 1, &n, 0, 1);
  d2r_tensor *next = d2r_rand_normal(r, 2, (int64_t[]){n, 2}, 0, 1);
  d2r_tensor *term = d2r_vector(n, (double[]){0, 0, 1, 0, 0});
  d2r_tensor *trunc = d2r_vector(n, (double[]){0, 0, 0, 0, 1});
  d2r_tensor *ep = d2r_vector(n, (double[]){0, 0, 0, 1, 1});
  d2r_dataset *d = d2r_dataset_new("pendulum", "random", 9, obs, act, rew,
                                   next, term, trunc, ep);
  if (!d || d2r_dataset_save(d, path_of("dataset", "small.d2rt")) != 0)
    die("dataset");
  damage("dataset", "small.d2rt");
  d2r_dataset_free(d);
  d2r_tensor *ts[] = {obs, act, rew, next, term, trunc, ep};
  for (int i = 0; i < 7; i++) d2r_release(ts[i]);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  root = argv[1];
  mkdir(root, 0777);
  d2r_rng *r = d2r_rng_new(1);
  d2r_model *m = d2r_linear_new(4, 3, true, r);
  if (!m) die("model");
  params_seeds(m);
  checkpoint_seeds(m, r);
  dataset_seeds(r);
  d2r_model_release(m);
  d2r_rng_free(r);
  return 0;
}

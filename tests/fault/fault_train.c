/*
 * Allocation-failure sweep over a short training run in C: a linear
 * categorical policy trained with the PG surrogate and Adam, a
 * checkpoint saved and restored into a second run that trains on, model
 * files written, loaded and read back, a CSV table read, split and
 * standardised, and a second-order part (an MLP's Hessian-vector
 * product, a Cholesky solve and a log-determinant).  For every n the
 * n-th allocation fails (then, in the persistent mode, every later one
 * too); each time the run must report the failure (-1 or NULL and a
 * message) or, if it recovered, give the right result; must not leak;
 * and a rerun without failures must give the reference result.  Prints
 * the counts; exits 1 on any finding.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2r/bilevel.h"
#include "d2r/checkpoint.h"
#include "d2r/data.h"
#include "d2r/linalg.h"
#include "fault.h"
#include "train_run.h"

#define NPARAM (TR_IN * TR_C + TR_C)
#define NOUT (NPARAM + 2)

static char dir[64], csv_path[128], ck_path[128], p_path[128];
static int findings;

static void finding(long n, const char *mode, const char *what) {
  if (++findings <= 20)
    fprintf(stderr, "fault_train: %s failure at allocation %ld: %s\n",
            mode, n, what);
}

/* Reads, splits and standardises the CSV table; 0 or -1. */
static int table_part(void) {
  d2r_table *t = d2r_csv_read(csv_path, "label");
  if (t == NULL) return -1;
  d2r_rng *r = d2r_rng_new(3);
  d2r_tensor *train = NULL, *val = NULL, *test = NULL, *z = NULL;
  int rc = r ? d2r_protocol_split(t->y, 0.25, 0.25, r, &train, &val, &test)
             : -1;
  d2r_standardizer *s = rc == 0 ? d2r_standardizer_fit(t->x) : NULL;
  if (s != NULL) z = d2r_standardizer_apply(s, t->x);
  if (z == NULL) rc = -1;
  d2r_release(z);
  d2r_standardizer_free(s);
  d2r_release(train);
  d2r_release(val);
  d2r_release(test);
  d2r_rng_free(r);
  d2r_table_free(t);
  return rc;
}

/* Parameter files: save b, load into a, read back; 0 or -1. */
static int files_part(train_run *a, train_run *b) {
  if (d2r_model_save(b->model, p_path) != 0) return -1;
  if (d2r_model_load(a->model, p_path) != 0) return -1;
  int n;
  d2r_tensor **ts;
  if (d2r_params_read(p_path, &n, &ts) != 0) return -1;
  for (int i = 0; i < n; i++) d2r_release(ts[i]);
  free(ts);
  return 0;
}

/* An MLP's mse loss, its gradients (with history) and H v for v = 1;
 * then A = X^T X + I for the run's inputs X, its Cholesky factor, a
 * solve and log det A.  Sums of H v and of the solve go to out. */
static int second_order_part(train_run *r, double *out) {
  int64_t hidden = 5;
  d2r_model *m = d2r_mlp_new(TR_IN, 1, &hidden, 2, D2R_ACT_TANH, r->rng);
  int n = m ? d2r_model_nparams(m) : 0;
  d2r_tensor *const *ps = m ? d2r_model_params(m) : NULL;
  d2r_tensor *y = m ? d2r_model_forward(m, r->x) : NULL;
  d2r_tensor *zero = y ? d2r_zeros_like(y) : NULL;
  d2r_tensor *loss = d2r_mse(y, zero);
  d2r_tensor *grads[4] = {NULL, NULL, NULL, NULL}, *hv = NULL;
  d2r_tensor *v = m ? d2r_ones(1, (int64_t[]){d2r_model_numel(m)}) : NULL;
  int rc = loss && v && n == 4 ? 0 : -1;
  if (rc == 0)
    rc = d2r_autograd(1, &loss, NULL, n, ps, true, false, grads);
  if (rc == 0) rc = d2r_hvp(n, grads, ps, v, &hv);
  d2r_tensor *hs = rc == 0 ? d2r_sum_all(hv) : NULL;
  if (hs == NULL) rc = -1;
  else out[0] = d2r_item(hs);
  d2r_release(hs);
  for (int i = 0; i < 4; i++) d2r_release(grads[i]);
  d2r_release(hv);
  d2r_release(v);
  d2r_release(loss);
  d2r_release(zero);
  d2r_release(y);
  d2r_model_release(m);
  if (rc != 0) return -1;
  d2r_tensor *xt = d2r_transpose(r->x, 0, 1);
  d2r_tensor *xx = d2r_matmul(xt, r->x);
  d2r_tensor *eye = d2r_eye(TR_IN);
  d2r_tensor *a = d2r_add(xx, eye);
  d2r_tensor *l = d2r_cholesky(a);
  d2r_tensor *z = d2r_cholesky_solve(l, eye);
  d2r_tensor *ld = d2r_logdet_spd(a);
  d2r_tensor *s = d2r_sum_all(z);
  if (s == NULL || ld == NULL) rc = -1;
  else out[1] = d2r_item(s) + d2r_item(ld);
  d2r_tensor *ts[] = {xt, xx, eye, a, l, z, ld, s};
  for (int i = 0; i < 8; i++) d2r_release(ts[i]);
  return rc;
}

static d2r_checkpoint whole(train_run *r) {
  d2r_checkpoint ck = {d2r_model_nparams(r->model),
                       d2r_model_params(r->model), r->optim, r->rng, 3,
                       30, "fault", 0};
  return ck;
}

/* The whole scenario; on success the final parameters go to out. */
static int scenario(double *out) {
  train_run a, b;
  int rc = train_run_init(&a, 1);
  if (rc != 0) return -1;
  rc = train_steps(&a, 3);
  d2r_checkpoint ck = whole(&a);
  if (rc == 0) rc = d2r_checkpoint_save(ck_path, &ck);
  bool have_b = rc == 0 && train_run_init(&b, 2) == 0;
  if (!have_b) rc = -1;
  char *meta = NULL;
  if (rc == 0) {
    d2r_checkpoint in = whole(&b);
    rc = d2r_checkpoint_load(ck_path, &in, &meta);
    free(meta);
  }
  if (rc == 0) rc = train_steps(&b, 2);
  if (rc == 0) rc = files_part(&a, &b);
  if (rc == 0) rc = table_part();
  if (rc == 0) rc = second_order_part(&b, out + NPARAM);
  if (rc == 0) {
    d2r_tensor *f = d2r_params_flatten(d2r_model_nparams(a.model),
                                       d2r_model_params(a.model));
    if (f == NULL) rc = -1;
    else memcpy(out, d2r_data(f), NPARAM * sizeof *out);
    d2r_release(f);
  }
  if (have_b) train_run_free(&b);
  train_run_free(&a);
  return rc;
}

static void write_csv(void) {
  FILE *f = fopen(csv_path, "w");
  if (f == NULL) exit(2);
  fputs("a,b,label\n", f);
  for (int i = 0; i < 24; i++)
    fprintf(f, "%d.5,%d,%d\n", i, (i * 7) % 5, i % 3);
  fclose(f);
}

/* Sweeps every failure point in one mode; returns the points. */
static long sweep(bool persistent, const double *ref, long *absorbed) {
  const char *mode = persistent ? "persistent" : "one-shot";
  double out[NOUT];
  long n;
  for (n = 0;; n++) {
    long live = fault_live();
    d2r_clear_error();
    fault_arm(n, persistent);
    int rc = scenario(out);
    fault_disarm();
    if (!fault_injected()) {
      if (rc != 0) finding(n, mode, "failed with nothing injected");
      break;
    }
    if (rc == 0) {
      (*absorbed)++;
      if (memcmp(out, ref, sizeof out) != 0)
        finding(n, mode, "recovered with a wrong result");
    } else if (d2r_error()[0] == '\0') {
      finding(n, mode, "failed without a message");
    }
    if (fault_live() != live) finding(n, mode, "leaked blocks");
    if (scenario(out) != 0 || memcmp(out, ref, sizeof out) != 0)
      finding(n, mode, "the rerun without failures went wrong");
    if (fault_live() != live) finding(n, mode, "the rerun leaked");
  }
  printf("fault_train: %s: %ld failure points (%ld recovered)\n", mode, n,
         *absorbed);
  return n;
}

int main(void) {
  /* tmpfs when there is one: the saves sync their files */
  bool shm = access("/dev/shm", W_OK) == 0;
  strcpy(dir, shm ? "/dev/shm/d2r_fault_XXXXXX" : "/tmp/d2r_fault_XXXXXX");
  if (mkdtemp(dir) == NULL) return 2;
  snprintf(csv_path, sizeof csv_path, "%s/t.csv", dir);
  snprintf(ck_path, sizeof ck_path, "%s/run.d2rc", dir);
  snprintf(p_path, sizeof p_path, "%s/m.d2rp", dir);
  write_csv();
  double ref[NOUT];
  if (scenario(ref) != 0) {
    fprintf(stderr, "fault_train: the reference run failed: %s\n",
            d2r_error());
    return 1;
  }
  if (fault_live() != 0)
    finding(-1, "unarmed", "blocks left over after the reference run");
  long a1 = 0, a2 = 0;
  long total = sweep(false, ref, &a1) + sweep(true, ref, &a2);
  if (fault_leak_check() != 0) finding(-1, "final", "LeakSanitizer");
  unlink(csv_path);
  unlink(ck_path);
  unlink(p_path);
  rmdir(dir);
  printf("fault_train: %ld failure points injected, %d findings\n", total,
         findings);
  return findings ? 1 : 0;
}

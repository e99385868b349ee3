/*
 * Tests of d2r/checkpoint.h: a resumed run matches an uninterrupted one
 * bit for bit; saves are atomic; damaged, truncated or mismatched files
 * are refused with a message naming the file and the problem, and a
 * refused load changes nothing.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"
#include "d2r/checkpoint.h"
#include "train_run.h"

/* ---- helpers ---------------------------------------------------------- */


static void set_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Recomputes the trailing checksum after an edit. */
static void fix_crc(unsigned char *buf, long size) {
  set_u32(buf + size - 4, d2r_crc32(0, buf, (size_t)size - 4));
}

/* Everything a run holds, as bytes: parameters, optimiser state, lr and
 * generator state (malloc'd; size in *size). */
static unsigned char *snapshot(const train_run *r, size_t *size) {
  d2r_tensor *p = d2r_params_flatten(d2r_model_nparams(r->model),
                                     d2r_model_params(r->model));
  d2r_tensor *s = d2r_optim_state_flat(r->optim);
  cr_assert(p && s, "%s", d2r_error());
  size_t np = 8 * (size_t)d2r_numel(p), ns = 8 * (size_t)d2r_numel(s);
  size_t nr = d2r_rng_state_size(r->rng);
  double lr = d2r_optim_lr(r->optim);
  *size = np + ns + nr + sizeof lr;
  unsigned char *b = malloc(*size);
  memcpy(b, d2r_data(p), np);
  memcpy(b + np, d2r_data(s), ns);
  memcpy(b + np + ns, &lr, sizeof lr);
  cr_assert_eq(d2r_rng_get_state(r->rng, b + np + ns + sizeof lr, nr), 0);
  d2r_release(p);
  d2r_release(s);
  return b;
}

static void expect_same_state(const train_run *a, const train_run *b) {
  size_t na, nb;
  unsigned char *sa = snapshot(a, &na), *sb = snapshot(b, &nb);
  cr_assert_eq(na, nb);
  cr_expect(memcmp(sa, sb, na) == 0, "the runs' states differ");
  free(sa);
  free(sb);
}

static d2r_checkpoint whole(train_run *r, int64_t epoch, const char *meta) {
  d2r_checkpoint ck = {d2r_model_nparams(r->model),
                       d2r_model_params(r->model), r->optim, r->rng, epoch,
                       10 * epoch, meta, 0};
  return ck;
}

static void init(train_run *r, uint64_t seed) {
  cr_assert_eq(train_run_init(r, seed), 0, "%s", d2r_error());
}

/* ---- resuming ---------------------------------------------------------- */

Test(checkpoint, resume_is_bit_identical) {
  tmpdir t;
  tmp_open(&t, "run.d2rc");
  train_run a, b, c;
  init(&a, 1);
  init(&b, 1);
  init(&c, 99);              /* a different start, overwritten by load */
  cr_assert_eq(train_steps(&a, 12), 0, "%s", d2r_error());
  cr_assert_eq(train_steps(&b, 6), 0, "%s", d2r_error());
  d2r_checkpoint ck = whole(&b, 6, "seed=1 lr=0.05");
  cr_assert_eq(d2r_checkpoint_save(t.file, &ck), 0, "%s", d2r_error());
  cr_expect_eq(count_entries(t.dir), 1, "temporary file left behind");
  d2r_checkpoint in = whole(&c, 0, NULL);
  char *meta = NULL;
  cr_assert_eq(d2r_checkpoint_load(t.file, &in, &meta), 0, "%s",
               d2r_error());
  cr_expect_eq(in.epoch, 6);
  cr_expect_eq(in.step, 60);
  cr_expect_str_eq(meta, "seed=1 lr=0.05");
  cr_expect_eq(in.meta_len, strlen("seed=1 lr=0.05"));
  expect_same_state(&b, &c);
  cr_assert_eq(train_steps(&c, 6), 0, "%s", d2r_error());
  expect_same_state(&a, &c);
  free(meta);
  train_run_free(&a);
  train_run_free(&b);
  train_run_free(&c);
  tmp_close(&t);
}

Test(checkpoint, parts_and_binary_metadata) {
  tmpdir t;
  tmp_open(&t, "run.d2rc");
  train_run a, b;
  init(&a, 3);
  init(&b, 4);
  cr_assert_eq(train_steps(&a, 2), 0, "%s", d2r_error());
  const char bin[5] = {'a', 0, 'b', 0, 'c'};
  d2r_checkpoint ck = {0, NULL, NULL, a.rng, -5, 7, bin, sizeof bin};
  cr_assert_eq(d2r_checkpoint_save(t.file, &ck), 0, "%s", d2r_error());
  d2r_checkpoint in = {0, NULL, NULL, b.rng, 0, 0, NULL, 0};
  char *meta;
  cr_assert_eq(d2r_checkpoint_load(t.file, &in, &meta), 0, "%s",
               d2r_error());
  cr_expect_eq(in.epoch, -5);
  cr_expect_eq(in.meta_len, 5);
  cr_expect(memcmp(meta, bin, 5) == 0 && meta[5] == '\0');
  cr_expect_eq(d2r_rng_uniform(a.rng), d2r_rng_uniform(b.rng));
  free(meta);
  /* the file holds no model: asking for one is refused */
  in = whole(&b, 0, NULL);
  cr_expect_eq(d2r_checkpoint_load(t.file, &in, NULL), -1);
  cr_expect(strstr(d2r_error(), "holds no model parameters") != NULL, "%s",
            d2r_error());
  train_run_free(&a);
  train_run_free(&b);
  tmp_close(&t);
}

Test(checkpoint, overwrite_and_unwritable) {
  tmpdir t;
  tmp_open(&t, "run.d2rc");
  train_run a;
  init(&a, 5);
  d2r_checkpoint ck = whole(&a, 1, "one");
  cr_assert_eq(d2r_checkpoint_save(t.file, &ck), 0, "%s", d2r_error());
  ck.epoch = 2;
  cr_assert_eq(d2r_checkpoint_save(t.file, &ck), 0, "%s", d2r_error());
  cr_expect_eq(count_entries(t.dir), 1);
  d2r_checkpoint in = whole(&a, 0, NULL);
  cr_assert_eq(d2r_checkpoint_load(t.file, &in, NULL), 0, "%s",
               d2r_error());
  cr_expect_eq(in.epoch, 2);
  const char *bad = "/nonexistent/dir/run.d2rc";
  cr_expect_eq(d2r_checkpoint_save(bad, &ck), -1);
  cr_expect(strstr(d2r_error(), bad) != NULL, "%s", d2r_error());
  cr_expect_eq(d2r_checkpoint_load(bad, &in, NULL), -1);
  cr_expect(strstr(d2r_error(), "cannot open") != NULL, "%s", d2r_error());
  train_run_free(&a);
  tmp_close(&t);
}

/* ---- refusals ---------------------------------------------------------- */

/* Saves run a, lets damage() alter the bytes, then checks that loading
 * into run b fails naming the file and containing want, and that b's
 * state is unchanged. */
static void expect_refused(void (*damage)(unsigned char *, long *),
                           const char *want) {
  tmpdir t;
  tmp_open(&t, "run.d2rc");
  train_run a, b;
  init(&a, 11);
  init(&b, 12);
  cr_assert_eq(train_steps(&a, 3), 0, "%s", d2r_error());
  cr_assert_eq(train_steps(&b, 1), 0, "%s", d2r_error());
  d2r_checkpoint ck = whole(&a, 3, "meta");
  cr_assert_eq(d2r_checkpoint_save(t.file, &ck), 0, "%s", d2r_error());
  long size;
  unsigned char *buf = slurp(t.file, &size);
  damage(buf, &size);
  spit(t.file, buf, size);
  size_t n0, n1;
  unsigned char *before = snapshot(&b, &n0);
  d2r_checkpoint in = whole(&b, 77, NULL);
  char *meta = (char *)"untouched";
  cr_expect_eq(d2r_checkpoint_load(t.file, &in, &meta), -1);
  cr_expect(strstr(d2r_error(), t.file) != NULL, "%s", d2r_error());
  cr_expect(strstr(d2r_error(), want) != NULL, "'%s' lacks '%s'",
            d2r_error(), want);
  unsigned char *after = snapshot(&b, &n1);
  cr_expect(n0 == n1 && memcmp(before, after, n0) == 0,
            "a refused load changed the run");
  cr_expect_eq(in.epoch, 77);
  cr_expect_str_eq(meta, "untouched");
  free(before);
  free(after);
  free(buf);
  train_run_free(&a);
  train_run_free(&b);
  tmp_close(&t);
}

static void cut_tail(unsigned char *buf, long *size) {
  (void)buf;
  *size -= 9;
}

static void cut_to_header(unsigned char *buf, long *size) {
  (void)buf;
  *size = 20;
}

static void empty(unsigned char *buf, long *size) {
  (void)buf;
  *size = 0;
}

static void flip_middle(unsigned char *buf, long *size) {
  buf[*size / 2] ^= 0x04;
}

static void flip_crc(unsigned char *buf, long *size) {
  buf[*size - 2] ^= 0x80;
}

static void bad_magic(unsigned char *buf, long *size) {
  (void)size;
  buf[3] = 'P';
}

static void bad_version(unsigned char *buf, long *size) {
  buf[4] = 9;
  fix_crc(buf, *size);
}

static void append_zero(unsigned char *buf, long *size) {
  buf[(*size)++] = 0;
}

/* Finds the payload of a section (the byte after its length field). */
static unsigned char *section(unsigned char *buf, const char *tag) {
  unsigned char *p = buf + 40;
  for (;;) {
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = (len << 8) | p[4 + i];
    if (memcmp(p, tag, 4) == 0) return p + 12;
    p += 12 + len;
  }
}

/* A generator state GSL could not have made, with a valid checksum. */
static void bad_rng_state(unsigned char *buf, long *size) {
  unsigned char *p = section(buf, "RNGS") + 8;
  memset(p + 624 * 8, 0xff, 4);    /* position -1 */
  fix_crc(buf, *size);
}

static void bad_step_count(unsigned char *buf, long *size) {
  unsigned char *p = section(buf, "OPTM") + 4 + 4 + 8 + 4 + 4 + 2 * 8 + 8;
  memset(p, 0xff, 8);              /* a NaN step count */
  fix_crc(buf, *size);
}

static void other_optimiser(unsigned char *buf, long *size) {
  unsigned char *p = section(buf, "OPTM") + 4;
  memcpy(p, "sgd\0", 4);           /* name length stays 4: "sgd\0" */
  fix_crc(buf, *size);
}

static void retag(unsigned char *buf, long *size) {
  memcpy(section(buf, "OPTM") - 12, "XXXX", 4);
  fix_crc(buf, *size);
}

static void drop_rng(unsigned char *buf, long *size) {
  memcpy(section(buf, "RNGS") - 12, "META", 4);
  fix_crc(buf, *size);
}

static void wrong_shape(unsigned char *buf, long *size) {
  unsigned char *p = section(buf, "PARM") + 4 + 4;
  p[0] = 2;                        /* W [4, 3] becomes [2, 3] */
  fix_crc(buf, *size);
}

static void huge_count(unsigned char *buf, long *size) {
  set_u32(section(buf, "PARM"), 0xfffffff0u);
  fix_crc(buf, *size);
}

Test(checkpoint, refuses_truncated) { expect_refused(cut_tail, "truncated"); }
Test(checkpoint, refuses_short) {
  expect_refused(cut_to_header, "truncated");
}
Test(checkpoint, refuses_empty) { expect_refused(empty, "truncated"); }
Test(checkpoint, refuses_flipped_byte) {
  expect_refused(flip_middle, "checksum");
}
Test(checkpoint, refuses_bad_crc) { expect_refused(flip_crc, "checksum"); }
Test(checkpoint, refuses_bad_magic) { expect_refused(bad_magic, "magic"); }
Test(checkpoint, refuses_bad_version) {
  expect_refused(bad_version, "version 9");
}
Test(checkpoint, refuses_extra_byte) {
  expect_refused(append_zero, "wrong length");
}
Test(checkpoint, refuses_bad_rng_state) {
  expect_refused(bad_rng_state, "not a valid MT19937 state");
}
Test(checkpoint, refuses_bad_step_count) {
  expect_refused(bad_step_count, "step count 1");
}
Test(checkpoint, refuses_other_optimiser) {
  expect_refused(other_optimiser, "malformed optimiser section");
}
Test(checkpoint, refuses_unknown_section) {
  expect_refused(retag, "unknown tag");
}
Test(checkpoint, refuses_duplicate_section) {
  expect_refused(drop_rng, "appears twice");
}
Test(checkpoint, refuses_wrong_shape) {
  expect_refused(wrong_shape, "malformed parameter");
}
Test(checkpoint, refuses_huge_count) {
  expect_refused(huge_count, "bad count");
}

Test(checkpoint, refuses_mismatched_objects) {
  tmpdir t;
  tmp_open(&t, "run.d2rc");
  train_run a;
  init(&a, 21);
  d2r_checkpoint ck = whole(&a, 1, NULL);
  cr_assert_eq(d2r_checkpoint_save(t.file, &ck), 0, "%s", d2r_error());
  d2r_rng *r = d2r_rng_new(1);
  d2r_model *m = d2r_linear_new(TR_IN, TR_C + 1, true, r);
  d2r_checkpoint in = {2, d2r_model_params(m), NULL, NULL, 0, 0, NULL, 0};
  cr_expect_eq(d2r_checkpoint_load(t.file, &in, NULL), -1);
  cr_expect(strstr(d2r_error(), "parameter 1 has shape [4, 3] in the "
                                "file, expected [4, 4]") != NULL,
            "%s", d2r_error());
  in.nparams = 1;
  cr_expect_eq(d2r_checkpoint_load(t.file, &in, NULL), -1);
  cr_expect(strstr(d2r_error(), "holds 2 parameter tensors, expected 1"),
            "%s", d2r_error());
  d2r_optim *sgd = d2r_sgd_new(2, d2r_model_params(a.model),
                               &(d2r_sgd_config){0.1, 0, 0, 0, false});
  in = (d2r_checkpoint){0, NULL, sgd, NULL, 0, 0, NULL, 0};
  cr_expect_eq(d2r_checkpoint_load(t.file, &in, NULL), -1);
  cr_expect(strstr(d2r_error(), "the optimiser is adam in the file, sgd "
                                "here") != NULL, "%s", d2r_error());
  d2r_optim_free(sgd);
  d2r_model_release(m);
  d2r_rng_free(r);
  train_run_free(&a);
  tmp_close(&t);
}

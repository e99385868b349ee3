/*
 * Helpers shared by the engine tests: value and error assertions, and a
 * scratch directory with whole-file reads and writes for the file-format
 * tests.  Functions are static inline so a test file uses what it needs.
 */
#ifndef D2R_TEST_UTIL_H
#define D2R_TEST_UTIL_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2r/tensor.h"

/* Asserts that t holds n values within tol of want (row-major). */
static inline void expect_values(d2r_tensor *t, const double *want,
                                 int64_t n, double tol, const char *what) {
  cr_assert_not_null(t, "%s: %s", what, d2r_error());
  cr_assert_eq(d2r_numel(t), n, "%s: %lld values, want %lld", what,
               (long long)d2r_numel(t), (long long)n);
  d2r_tensor *c = d2r_contiguous(t);
  const double *v = d2r_data(c);
  for (int64_t i = 0; i < n; i++)
    cr_assert(fabs(v[i] - want[i]) <= tol,
              "%s[%lld]: got %.17g, want %.17g (tol %g)", what,
              (long long)i, v[i], want[i], tol);
  d2r_release(c);
}

/* Asserts a NULL result whose message contains `part`. */
static inline void expect_error(d2r_tensor *t, const char *part) {
  cr_assert_null(t, "expected a failure mentioning '%s'", part);
  cr_assert(strstr(d2r_error(), part) != NULL,
            "message '%s' does not mention '%s'", d2r_error(), part);
}

/* A fresh directory under /tmp and the path of a file named `name` in
 * it. */
typedef struct tmpdir {
  char dir[64];
  char file[128];
} tmpdir;

static inline void tmp_open(tmpdir *t, const char *name) {
  strcpy(t->dir, "/tmp/d2r_test_XXXXXX");
  cr_assert_not_null(mkdtemp(t->dir));
  snprintf(t->file, sizeof t->file, "%s/%s", t->dir, name);
}

static inline void tmp_close(tmpdir *t) {
  unlink(t->file);
  rmdir(t->dir);
}

/* Entries of dir other than . and .. (a temporary file left behind
 * shows up here). */
static inline int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return n;
}

/* The whole file (malloc'd, with 64 spare bytes) and its size. */
static inline unsigned char *slurp(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  rewind(f);
  unsigned char *buf = malloc((size_t)*size + 64);
  cr_assert_eq(fread(buf, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return buf;
}

static inline void spit(const char *path, const unsigned char *buf,
                        long size) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(buf, 1, (size_t)size, f), (size_t)size);
  fclose(f);
}

#endif

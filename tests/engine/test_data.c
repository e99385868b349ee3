/*
 * Tests of the tabular dataset helpers (data.h): the bundled UCI tables
 * load with the right shapes and values; malformed files, written to a
 * temporary folder, fail with messages naming the file, line and column;
 * stratified splits follow the documented rounding exactly, are disjoint,
 * cover the pool and depend only on the seed; the standardiser gives
 * training columns mean 0 and std 1; minibatches cover an epoch.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2r/data.h"

/* ---- temporary files -------------------------------------------------- */

static char tmpdir[64];
static char files[16][128];
static int nfiles;

static void make_dir(void) {
  strcpy(tmpdir, "/tmp/d2r_test_data_XXXXXX");
  cr_assert_not_null(mkdtemp(tmpdir));
  nfiles = 0;
}

static void remove_dir(void) {
  for (int i = 0; i < nfiles; i++)
    unlink(files[i]);
  rmdir(tmpdir);
}

/* Writes text to tmpdir/name and returns the path. */
static const char *write_file(const char *name, const char *text) {
  cr_assert_lt(nfiles, 16);
  char *path = files[nfiles++];
  snprintf(path, sizeof files[0], "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

/* Reads a file that must fail; returns the message. */
static const char *read_fail(const char *path, const char *label) {
  d2r_clear_error();
  d2r_table *t = d2r_csv_read(path, label);
  cr_assert_null(t, "%s should not load", path);
  return d2r_error();
}

/* Asserts that msg contains each of the n strings in want. */
static void has_all(const char *msg, int n, const char *const *want) {
  for (int i = 0; i < n; i++)
    cr_assert(strstr(msg, want[i]), "message '%s' lacks '%s'", msg,
              want[i]);
}
#define HAS(msg, ...)                                                    \
  has_all(msg, sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *),  \
          (const char *[]){__VA_ARGS__})

/* ---- the bundled datasets --------------------------------------------- */

Test(csv, iris) {
  d2r_table *t = d2r_csv_read(D2R_DATA_DIR "/uci/iris.csv", "label");
  cr_assert_not_null(t, "%s", d2r_error());
  cr_assert_eq(t->rows, 150);
  cr_assert_eq(t->features, 4);
  cr_assert_eq(d2r_dim(t->x, 0), 150);
  cr_assert_eq(d2r_dim(t->x, 1), 4);
  cr_assert_eq(d2r_ndim(t->y), 1);
  cr_assert_eq(t->classes, 3);
  cr_assert_str_eq(t->names[0], "sepal_length");
  cr_assert_str_eq(t->names[3], "petal_width");
  cr_assert_str_eq(t->label_name, "label");
  const double first[4] = {5.1, 3.5, 1.4, 0.2};
  for (int j = 0; j < 4; j++)
    cr_assert_eq(d2r_data(t->x)[j], first[j]);
  int counts[3] = {0};
  for (int i = 0; i < 150; i++)
    counts[(int)d2r_data(t->y)[i]]++;
  for (int k = 0; k < 3; k++)
    cr_assert_eq(counts[k], 50);
  cr_assert_eq(d2r_data(t->y)[149], 2.0);
  d2r_table_free(t);
}

Test(csv, all_bundled_tables) {
  static const struct {
    const char *file;
    int64_t rows, features, classes;
  } want[] = {{"wine", 178, 13, 3},
              {"breast_cancer", 569, 30, 2},
              {"digits", 1797, 64, 10},
              {"spambase", 4601, 57, 2}};
  for (int i = 0; i < 4; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/uci/%s.csv", D2R_DATA_DIR, want[i].file);
    d2r_table *t = d2r_csv_read(path, "label");
    cr_assert_not_null(t, "%s", d2r_error());
    cr_assert_eq(t->rows, want[i].rows, "%s", path);
    cr_assert_eq(t->features, want[i].features, "%s", path);
    cr_assert_eq(t->classes, want[i].classes, "%s", path);
    d2r_table_free(t);
  }
}

Test(csv, without_labels) {
  d2r_table *t = d2r_csv_read(D2R_DATA_DIR "/uci/iris.csv", NULL);
  cr_assert_not_null(t, "%s", d2r_error());
  cr_assert_eq(t->features, 5);
  cr_assert_null(t->y);
  cr_assert_null(t->label_name);
  cr_assert_eq(t->classes, 0);
  cr_assert_str_eq(t->names[4], "label");
  d2r_table_free(t);
}

/* ---- accepted variations ---------------------------------------------- */

TestSuite(csv_files, .init = make_dir, .fini = remove_dir);

Test(csv_files, crlf_bom_spaces_quotes_and_blank_tail) {
  const char *p = write_file("ok.csv",
                             "\xEF\xBB\xBF" "\"a\", label ,b\r\n"
                             " 1.5 ,1, -2e3\r\n"
                             "\"7\",0,\t4\r\n"
                             "\r\n  \n");
  d2r_table *t = d2r_csv_read(p, "label");
  cr_assert_not_null(t, "%s", d2r_error());
  cr_assert_eq(t->rows, 2);
  cr_assert_eq(t->features, 2);
  cr_assert_str_eq(t->names[0], "a");
  cr_assert_str_eq(t->names[1], "b");
  const double x[4] = {1.5, -2000, 7, 4}, y[2] = {1, 0};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(d2r_data(t->x)[i], x[i]);
  for (int i = 0; i < 2; i++)
    cr_assert_eq(d2r_data(t->y)[i], y[i]);
  cr_assert_eq(t->classes, 2);
  d2r_table_free(t);
}

Test(csv_files, no_final_newline) {
  const char *p = write_file("nonl.csv", "a,label\n1,3");
  d2r_table *t = d2r_csv_read(p, "label");
  cr_assert_not_null(t, "%s", d2r_error());
  cr_assert_eq(t->rows, 1);
  cr_assert_eq(t->classes, 4);
  d2r_table_free(t);
}

/* ---- malformed files -------------------------------------------------- */

Test(csv_files, ragged_row) {
  const char *p = write_file("ragged.csv", "a,b,label\n1,2,0\n3,4\n");
  HAS(read_fail(p, "label"), p, ":3:", "2 cells", "header 3");
  p = write_file("long.csv", "a,b,label\r\n1,2,0\r\n1,2,0\r\n3,4,0,5\r\n");
  HAS(read_fail(p, "label"), p, ":4:", "4 cells");
}

Test(csv_files, non_numeric_cell) {
  const char *p = write_file("text.csv",
                             "sepal,petal_width,label\n1,2,0\n1,abc,1\n");
  const char *msg = read_fail(p, "label");
  HAS(msg, p, ":3:", "column 2 ('petal_width')", "'abc' is not a number");
  p = write_file("partial.csv", "a,label\n1.5x,0\n");
  HAS(read_fail(p, "label"), ":2:", "column 1 ('a')", "'1.5x'");
}

Test(csv_files, non_finite_and_empty_cells) {
  const char *p = write_file("nan.csv", "a,b\n1,2\nnan,2\n");
  HAS(read_fail(p, NULL), ":3:", "column 1 ('a')", "'nan' is not a finite");
  p = write_file("inf.csv", "a,b\n1,-inf\n");
  HAS(read_fail(p, NULL), ":2:", "column 2 ('b')", "not a finite");
  p = write_file("huge.csv", "a,b\n1,1e999\n");
  HAS(read_fail(p, NULL), ":2:", "column 2 ('b')", "not a finite");
  p = write_file("hole.csv", "a,b,c\n1,,3\n");
  HAS(read_fail(p, NULL), ":2:", "column 2 ('b')", "empty");
}

Test(csv_files, empty_files) {
  const char *p = write_file("empty.csv", "");
  HAS(read_fail(p, NULL), p, "empty");
  p = write_file("blank.csv", "\r\n  \n\n");
  HAS(read_fail(p, NULL), p, "empty");
  p = write_file("header_only.csv", "a,b,label\n");
  HAS(read_fail(p, "label"), p, "no data rows");
  p = write_file("blank_header.csv", "\n1,2\n");
  HAS(read_fail(p, NULL), p, ":1:", "header");
}

Test(csv_files, blank_line_between_rows) {
  const char *p = write_file("gap.csv", "a,b\n1,2\n\n3,4\n");
  HAS(read_fail(p, NULL), p, ":3:", "blank line");
}

Test(csv_files, missing_file) {
  char path[160];
  snprintf(path, sizeof path, "%s/no_such.csv", tmpdir);
  HAS(read_fail(path, NULL), path, "cannot open");
}

Test(csv_files, missing_or_doubled_label_column) {
  const char *p = write_file("nolabel.csv", "a,b\n1,2\n");
  HAS(read_fail(p, "label"), p, ":1:", "no column is named 'label'");
  p = write_file("twice.csv", "y,a,y\n1,2,1\n");
  HAS(read_fail(p, "y"), p, ":1:", "appears twice", "columns 1 and 3");
  p = write_file("onlylabel.csv", "y\n1\n");
  HAS(read_fail(p, "y"), p, "no feature columns");
}

Test(csv_files, bad_labels) {
  const char *p = write_file("neg.csv", "a,label\n1,0\n2,-1\n");
  HAS(read_fail(p, "label"), p, ":3:", "column 2 ('label')", "'-1'",
      "class label");
  p = write_file("frac.csv", "label,a\n0.5,1\n");
  HAS(read_fail(p, "label"), p, ":2:", "column 1 ('label')", "'0.5'",
      "class label");
}

Test(csv_files, binary_file) {
  char path[160];
  snprintf(path, sizeof path, "%s/nul.csv", tmpdir);
  strcpy(files[nfiles++], path);
  FILE *f = fopen(path, "wb");
  fwrite("a,b\n1,\0\n", 1, 8, f);
  fclose(f);
  HAS(read_fail(path, NULL), path, "NUL byte");
}

/* ---- splits ----------------------------------------------------------- */

/* Labels with class sizes given in counts[0..k), interleaved. */
static d2r_tensor *labels(const int *counts, int k) {
  double y[1000];
  int n = 0, left[16];
  memcpy(left, counts, (size_t)k * sizeof *counts);
  for (int more = 1; more;) {
    more = 0;
    for (int c = 0; c < k; c++)
      if (left[c] > 0) {
        y[n++] = c;
        left[c]--;
        more = 1;
      }
  }
  return d2r_vector(n, y);
}

/* Per-class counts of the rows idx picks from y. */
static void class_counts(const d2r_tensor *y, d2r_tensor *idx, int *out,
                         int k) {
  memset(out, 0, (size_t)k * sizeof *out);
  const double *yv = d2r_data((d2r_tensor *)y), *iv = d2r_data(idx);
  for (int64_t i = 0; i < d2r_numel(idx); i++)
    out[(int)yv[(int64_t)iv[i]]]++;
}

/* Asserts the n tensors hold distinct indices, together exactly want
 * (or 0..total-1 when want is NULL). */
static void disjoint_cover(int n, d2r_tensor **parts, int64_t total,
                           const d2r_tensor *want) {
  int *seen = calloc((size_t)total, sizeof *seen), covered = 0;
  for (int p = 0; p < n; p++)
    for (int64_t i = 0; i < d2r_numel(parts[p]); i++) {
      int64_t v = (int64_t)d2r_data(parts[p])[i];
      cr_assert(v >= 0 && v < total);
      cr_assert_eq(seen[v]++, 0, "index %lld twice", (long long)v);
      covered++;
    }
  if (want)
    for (int64_t i = 0; i < d2r_numel(want); i++)
      cr_assert(seen[(int64_t)d2r_data((d2r_tensor *)want)[i]]);
  cr_assert_eq(covered, want ? d2r_numel(want) : total);
  free(seen);
}

static bool same_values(d2r_tensor *a, d2r_tensor *b) {
  if (d2r_numel(a) != d2r_numel(b))
    return false;
  return memcmp(d2r_data(a), d2r_data(b),
                (size_t)d2r_numel(a) * sizeof(double)) == 0;
}

Test(split, iris_protocol_counts) {
  d2r_table *t = d2r_csv_read(D2R_DATA_DIR "/uci/iris.csv", "label");
  d2r_rng *r = d2r_rng_new(0);
  d2r_tensor *s[3];
  cr_assert_eq(d2r_protocol_split(t->y, 0.2, 0.2, r, &s[0], &s[1], &s[2]),
               0, "%s", d2r_error());
  /* 50 per class: 10 to test; of the 40 left, 8 to validation */
  const int want[3] = {32, 8, 10};
  for (int p = 0; p < 3; p++) {
    int counts[3];
    class_counts(t->y, s[p], counts, 3);
    for (int k = 0; k < 3; k++)
      cr_assert_eq(counts[k], want[p], "split %d class %d", p, k);
  }
  disjoint_cover(3, s, 150, NULL);
  for (int p = 0; p < 3; p++)
    d2r_release(s[p]);
  d2r_rng_free(r);
  d2r_table_free(t);
}

/* Class sizes 7, 3, 1, 2, 10, 5 with frac 0.3: floor(0.3 c + 0.5) gives
 * 2, 1, 0 (a single member stays in rest), 1, 3, 2; with frac 0.5, sizes
 * 7, 3 and 5 round half up to 4, 2 and 3. */
Test(split, documented_rounding) {
  const int sizes[6] = {7, 3, 1, 2, 10, 5};
  d2r_tensor *y = labels(sizes, 6);
  int64_t n = d2r_numel(y);
  d2r_tensor *pool = d2r_arange(0, (double)n, 1), *rest, *part;
  d2r_rng *r = d2r_rng_new(5);
  cr_assert_eq(d2r_stratified_split(y, pool, 0.3, r, &rest, &part), 0);
  int got[6];
  const int want[6] = {2, 1, 0, 1, 3, 2};
  class_counts(y, part, got, 6);
  for (int k = 0; k < 6; k++)
    cr_assert_eq(got[k], want[k], "class %d: %d", k, got[k]);
  disjoint_cover(2, (d2r_tensor *[]){rest, part}, n, NULL);
  d2r_release(rest);
  d2r_release(part);
  cr_assert_eq(d2r_stratified_split(y, pool, 0.5, r, &rest, &part), 0);
  class_counts(y, part, got, 6);
  cr_assert_eq(got[0], 4);     /* 3.5 rounds up */
  cr_assert_eq(got[1], 2);     /* 1.5 rounds up */
  cr_assert_eq(got[5], 3);     /* 2.5 rounds up */
  cr_assert_eq(got[2], 0);
  d2r_release(rest);
  d2r_release(part);
  d2r_release(pool);
  d2r_release(y);
  d2r_rng_free(r);
}

/* Tiny and huge fractions are kept within 1..c-1 for c >= 2. */
Test(split, both_sides_keep_every_class) {
  const int sizes[2] = {10, 4};
  d2r_tensor *y = labels(sizes, 2);
  d2r_tensor *pool = d2r_arange(0, 14, 1), *rest, *part;
  d2r_rng *r = d2r_rng_new(5);
  int got[2];
  cr_assert_eq(d2r_stratified_split(y, pool, 0.01, r, &rest, &part), 0);
  class_counts(y, part, got, 2);
  cr_assert(got[0] == 1 && got[1] == 1);
  d2r_release(rest);
  d2r_release(part);
  cr_assert_eq(d2r_stratified_split(y, pool, 0.99, r, &rest, &part), 0);
  class_counts(y, rest, got, 2);
  cr_assert(got[0] == 1 && got[1] == 1);
  d2r_release(rest);
  d2r_release(part);
  d2r_release(pool);
  d2r_release(y);
  d2r_rng_free(r);
}

Test(split, deterministic_for_a_seed) {
  d2r_table *t = d2r_csv_read(D2R_DATA_DIR "/uci/wine.csv", "label");
  d2r_tensor *a[3], *b[3], *c[3];
  d2r_rng *ra = d2r_rng_new(17), *rb = d2r_rng_new(17), *rc = d2r_rng_new(18);
  cr_assert_eq(d2r_protocol_split(t->y, 0.2, 0.2, ra, &a[0], &a[1], &a[2]),
               0);
  cr_assert_eq(d2r_protocol_split(t->y, 0.2, 0.2, rb, &b[0], &b[1], &b[2]),
               0);
  cr_assert_eq(d2r_protocol_split(t->y, 0.2, 0.2, rc, &c[0], &c[1], &c[2]),
               0);
  for (int p = 0; p < 3; p++) {
    cr_assert(same_values(a[p], b[p]), "split %d differs", p);
    cr_assert(!same_values(a[p], c[p]), "split %d ignores the seed", p);
  }
  /* wine classes 59, 71, 48: test 12 + 14 + 10; val 9 + 11 + 8 */
  cr_assert_eq(d2r_numel(a[2]), 36);
  cr_assert_eq(d2r_numel(a[1]), 28);
  cr_assert_eq(d2r_numel(a[0]), 114);
  disjoint_cover(3, a, 178, NULL);
  for (int p = 0; p < 3; p++) {
    d2r_release(a[p]);
    d2r_release(b[p]);
    d2r_release(c[p]);
  }
  d2r_rng_free(ra);
  d2r_rng_free(rb);
  d2r_rng_free(rc);
  d2r_table_free(t);
}

/* The protocol equals two stratified splits made with the same rng. */
Test(split, protocol_is_two_splits) {
  d2r_table *t = d2r_csv_read(D2R_DATA_DIR "/uci/iris.csv", "label");
  d2r_rng *r1 = d2r_rng_new(3), *r2 = d2r_rng_new(3);
  d2r_tensor *train, *val, *test, *rest, *part, *tr2, *val2;
  cr_assert_eq(d2r_protocol_split(t->y, 0.2, 0.25, r1, &train, &val, &test),
               0);
  d2r_tensor *all = d2r_arange(0, 150, 1);
  cr_assert_eq(d2r_stratified_split(t->y, all, 0.2, r2, &rest, &part), 0);
  cr_assert_eq(d2r_stratified_split(t->y, rest, 0.25, r2, &tr2, &val2), 0);
  cr_assert(same_values(test, part));
  cr_assert(same_values(train, tr2));
  cr_assert(same_values(val, val2));
  disjoint_cover(2, (d2r_tensor *[]){tr2, val2}, 150, rest);
  d2r_tensor *list[] = {train, val, test, rest, part, tr2, val2, all};
  for (int i = 0; i < 8; i++)
    d2r_release(list[i]);
  d2r_rng_free(r1);
  d2r_rng_free(r2);
  d2r_table_free(t);
}

Test(split, outputs_are_shuffled) {
  const int sizes[2] = {50, 50};
  d2r_tensor *y = labels(sizes, 2);
  d2r_tensor *pool = d2r_arange(0, 100, 1), *rest, *part;
  d2r_rng *r = d2r_rng_new(9);
  cr_assert_eq(d2r_stratified_split(y, pool, 0.5, r, &rest, &part), 0);
  int ascending = 0;
  for (int64_t i = 1; i < d2r_numel(rest); i++)
    ascending += d2r_data(rest)[i] > d2r_data(rest)[i - 1];
  cr_assert(ascending > 10 && ascending < 40, "%d ascents", ascending);
  d2r_release(rest);
  d2r_release(part);
  d2r_release(pool);
  d2r_release(y);
  d2r_rng_free(r);
}

Test(split, random_split) {
  d2r_tensor *pool = d2r_arange(0, 101, 1), *rest, *part;
  d2r_rng *r = d2r_rng_new(4);
  cr_assert_eq(d2r_random_split(pool, 0.25, r, &rest, &part), 0);
  cr_assert_eq(d2r_numel(part), 25);      /* 25.25 rounds to 25 */
  cr_assert_eq(d2r_numel(rest), 76);
  disjoint_cover(2, (d2r_tensor *[]){rest, part}, 101, NULL);
  d2r_release(rest);
  d2r_release(part);
  d2r_release(pool);
  d2r_rng_free(r);
}

Test(split, bad_arguments) {
  const int sizes[2] = {3, 3};
  d2r_tensor *y = labels(sizes, 2), *rest, *part;
  double dup[3] = {0, 1, 1}, out[2] = {0, 6}, negy[3] = {0, -1, 1};
  double single[3] = {0, 1, 2};
  d2r_tensor *pdup = d2r_vector(3, dup), *pout = d2r_vector(2, out);
  d2r_tensor *yneg = d2r_vector(3, negy), *pool = d2r_arange(0, 6, 1);
  d2r_tensor *ysingle = d2r_vector(3, single);
  d2r_tensor *pool3 = d2r_arange(0, 3, 1);
  d2r_rng *r = d2r_rng_new(1);
  cr_assert_eq(d2r_stratified_split(y, pdup, 0.5, r, &rest, &part), -1);
  HAS(d2r_error(), "pool[2] = 1 appears twice");
  cr_assert(rest == NULL && part == NULL);
  cr_assert_eq(d2r_stratified_split(y, pout, 0.5, r, &rest, &part), -1);
  HAS(d2r_error(), "pool[1] = 6", "0..5");
  cr_assert_eq(d2r_stratified_split(yneg, pool3, 0.5, r, &rest, &part), -1);
  HAS(d2r_error(), "y[1] = -1");
  cr_assert_eq(d2r_stratified_split(y, pool, 0, r, &rest, &part), -1);
  HAS(d2r_error(), "frac = 0");
  cr_assert_eq(d2r_stratified_split(y, pool, 1, r, &rest, &part), -1);
  cr_assert_eq(d2r_stratified_split(y, pool, 0.5, NULL, &rest, &part), -1);
  HAS(d2r_error(), "no generator");
  cr_assert_eq(d2r_stratified_split(ysingle, pool3, 0.5, r, &rest, &part),
               -1);
  HAS(d2r_error(), "part would be empty");
  d2r_tensor *one = d2r_arange(0, 1, 1);
  cr_assert_eq(d2r_random_split(one, 0.5, r, &rest, &part), -1);
  HAS(d2r_error(), "at least 2");
  cr_assert_eq(d2r_random_split(pool, 0.5, r, &rest, NULL), -1);
  d2r_tensor *list[] = {y, pdup, pout, yneg, pool, ysingle, pool3, one};
  for (int i = 0; i < 8; i++)
    d2r_release(list[i]);
  d2r_rng_free(r);
}

/* ---- standardisation -------------------------------------------------- */

/* Asserts every column of x has mean 0 and population std 1. */
static void unit_columns(d2r_tensor *x, double tol) {
  int64_t n = d2r_dim(x, 0), f = d2r_dim(x, 1);
  const double *p = d2r_data(x);
  for (int64_t j = 0; j < f; j++) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++)
      s += p[i * f + j];
    for (int64_t i = 0; i < n; i++)
      ss += (p[i * f + j] - s / n) * (p[i * f + j] - s / n);
    cr_assert_float_eq(s / n, 0.0, tol, "column %lld mean", (long long)j);
    cr_assert_float_eq(sqrt(ss / n), 1.0, tol, "column %lld std",
                       (long long)j);
  }
}

Test(standardizer, training_columns_become_unit) {
  d2r_table *t = d2r_csv_read(D2R_DATA_DIR "/uci/breast_cancer.csv", "label");
  d2r_rng *r = d2r_rng_new(1);
  d2r_tensor *train, *val, *test;
  cr_assert_eq(d2r_protocol_split(t->y, 0.2, 0.2, r, &train, &val, &test), 0);
  d2r_tensor *xtr = d2r_take_rows(t->x, train);
  d2r_standardizer *s = d2r_standardizer_fit(xtr);
  cr_assert_not_null(s, "%s", d2r_error());
  d2r_tensor *z = d2r_standardizer_apply(s, xtr);
  cr_assert_not_null(z, "%s", d2r_error());
  unit_columns(z, 1e-9);
  /* rows that were not fitted on are transformed, not re-centred */
  d2r_tensor *xte = d2r_take_rows(t->x, test);
  d2r_tensor *zte = d2r_standardizer_apply(s, xte);
  cr_assert_eq(d2r_dim(zte, 0), d2r_numel(test));
  double want = (d2r_data(xte)[0] - d2r_data(s->mean)[0]) /
                d2r_data(s->std)[0];
  cr_assert_eq(d2r_data(zte)[0], want);
  d2r_tensor *list[] = {train, val, test, xtr, z, xte, zte};
  for (int i = 0; i < 7; i++)
    d2r_release(list[i]);
  d2r_standardizer_free(s);
  d2r_rng_free(r);
  d2r_table_free(t);
}

/* Population std (ddof 0) of {1, 2, 3, 6} is sqrt(3.5); the constant
 * column keeps mean 0.1 exactly, gets std 1 and maps to exact zeros. */
Test(standardizer, known_values_and_constant_column) {
  double x[8] = {1, 0.1, 2, 0.1, 3, 0.1, 6, 0.1};
  d2r_tensor *m = d2r_matrix(4, 2, x);
  d2r_standardizer *s = d2r_standardizer_fit(m);
  cr_assert_not_null(s, "%s", d2r_error());
  cr_assert_float_eq(d2r_data(s->mean)[0], 3.0, 1e-15);
  cr_assert_float_eq(d2r_data(s->std)[0], sqrt(3.5), 1e-15);
  cr_assert_eq(d2r_data(s->mean)[1], 0.1);
  cr_assert_eq(d2r_data(s->std)[1], 1.0);
  d2r_tensor *z = d2r_standardizer_apply(s, m);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(d2r_data(z)[2 * i + 1], 0.0);
  cr_assert_float_eq(d2r_data(z)[6], 3 / sqrt(3.5), 1e-15);
  d2r_release(z);
  d2r_release(m);
  d2r_standardizer_free(s);
}

/* A transposed view is read through its strides. */
Test(standardizer, strided_input) {
  double x[6] = {1, 2, 3, 10, 20, 60};
  d2r_tensor *m = d2r_matrix(2, 3, x), *xt = d2r_transpose(m, 0, 1);
  d2r_tensor *c = d2r_contiguous(xt);
  d2r_standardizer *s = d2r_standardizer_fit(xt);
  d2r_tensor *a = d2r_standardizer_apply(s, xt);
  d2r_tensor *b = d2r_standardizer_apply(s, c);
  cr_assert(a && b, "%s", d2r_error());
  cr_assert_float_eq(d2r_data(s->mean)[1], 30.0, 1e-12);
  cr_assert(same_values(a, b));
  unit_columns(a, 1e-12);
  d2r_tensor *list[] = {m, xt, c, a, b};
  for (int i = 0; i < 5; i++)
    d2r_release(list[i]);
  d2r_standardizer_free(s);
}

Test(standardizer, bad_arguments) {
  double x[4] = {1, 2, NAN, 4};
  d2r_tensor *m = d2r_matrix(2, 2, x), *v = d2r_vector(4, x);
  cr_assert_null(d2r_standardizer_fit(m));
  HAS(d2r_error(), "x[1][0] = nan");
  cr_assert_null(d2r_standardizer_fit(v));
  HAS(d2r_error(), "2-d");
  x[2] = 3;
  d2r_tensor *ok = d2r_matrix(2, 2, x), *wide = d2r_matrix(1, 4, x);
  d2r_standardizer *s = d2r_standardizer_fit(ok);
  cr_assert_null(d2r_standardizer_apply(s, wide));
  HAS(d2r_error(), "4 features", "fitted on 2");
  d2r_tensor *list[] = {m, v, ok, wide};
  for (int i = 0; i < 4; i++)
    d2r_release(list[i]);
  d2r_standardizer_free(s);
}

/* ---- minibatches ------------------------------------------------------ */

Test(batches, cover_an_epoch) {
  d2r_rng *r = d2r_rng_new(2);
  int64_t n = 10, bs = 4;
  d2r_tensor *order = d2r_batch_order(r, n);
  cr_assert_eq(d2r_batch_count(n, bs), 3);
  cr_assert_eq(d2r_batch_count(8, 4), 2);
  cr_assert_eq(d2r_batch_count(0, 4), 0);
  d2r_tensor *parts[3];
  for (int b = 0; b < 3; b++) {
    parts[b] = d2r_batch_index(order, b, bs);
    cr_assert_not_null(parts[b], "%s", d2r_error());
    cr_assert_eq(d2r_numel(parts[b]), b < 2 ? 4 : 2);
    cr_assert_eq(d2r_data(parts[b])[0], d2r_data(order)[b * bs]);
  }
  disjoint_cover(3, parts, n, NULL);
  cr_assert_null(d2r_batch_index(order, 3, bs));
  HAS(d2r_error(), "batch 3 is outside 0..2");
  cr_assert_null(d2r_batch_index(order, 0, 0));
  for (int b = 0; b < 3; b++)
    d2r_release(parts[b]);
  d2r_release(order);
  d2r_rng_free(r);
}

Test(batches, rows_gather) {
  double x[10];
  for (int i = 0; i < 10; i++)
    x[i] = 100 + i;
  d2r_tensor *m = d2r_matrix(5, 2, x);
  d2r_rng *r = d2r_rng_new(6);
  d2r_tensor *order = d2r_batch_order(r, 5);
  d2r_tensor *rows = d2r_batch_rows(m, order, 1, 2);
  cr_assert_not_null(rows, "%s", d2r_error());
  cr_assert_eq(d2r_dim(rows, 0), 2);
  for (int i = 0; i < 2; i++) {
    int64_t k = (int64_t)d2r_data(order)[2 + i];
    cr_assert_eq(d2r_data(rows)[2 * i], x[2 * k]);
    cr_assert_eq(d2r_data(rows)[2 * i + 1], x[2 * k + 1]);
  }
  d2r_release(rows);
  d2r_release(order);
  d2r_release(m);
  d2r_rng_free(r);
}

/*
 * Tabular datasets (data.h): a strict CSV reader whose error messages name
 * the file, line and column at fault; stratified and plain splits of row
 * indices drawn from an explicit generator; a standardiser with
 * scikit-learn's conventions; and minibatch orders.  The reader loads the
 * whole file and cuts it into lines and cells in place, which suits the
 * small numeric tables the experiments use.
 */
#include "d2r/data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Labels must fit an int so that one-hot encodings stay addressable. */
#define MAX_LABEL 2147483647.0
/* Indices beyond 2^53 would not be exact in float64. */
#define MAX_INDEX 9007199254740992.0

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* ---- reading the file ------------------------------------------------- */

/* The whole file as a NUL-terminated string; NULL with a message. */
static char *slurp(const char *path, size_t *size) {
  errno = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return d2r_fail("%s: cannot open the file: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n - 1, f);
    if (n < cap - 1)
      break;
    char *grown = realloc(buf, cap * 2);
    if (!grown)
      free(buf);
    buf = grown;
    cap *= 2;
  }
  int bad = ferror(f) ? errno : 0;
  fclose(f);
  if (!buf)
    return d2r_fail("%s: out of memory reading the file", path);
  if (bad) {
    free(buf);
    return d2r_fail("%s: cannot read the file: %s", path, strerror(bad));
  }
  buf[n] = '\0';
  *size = n;
  return buf;
}

/* ---- the parser's state ----------------------------------------------- */

typedef struct csv {
  const char *path;
  char *text;       /* the file, cut into lines and cells in place */
  char *next;       /* start of the next unread line, or NULL at the end */
  int64_t line;     /* number of the line last read (1-based) */
  int64_t ncols;    /* columns in the header */
  char **head;      /* ncols names, pointing into text */
  char **cells;     /* ncols cells of the current row */
  int64_t label;    /* column of the labels, or -1 */
  double *x, *y;    /* rows x nfeat() features; rows labels */
  int64_t rows, cap;
} csv;

static void csv_free(csv *c) {
  free(c->text);
  free(c->head);
  free(c->cells);
  free(c->x);
  free(c->y);
}

/* Cuts off the next line (without its CR LF); NULL at the end. */
static char *next_line(csv *c) {
  char *s = c->next;
  if (!s)
    return NULL;
  char *nl = strchr(s, '\n');
  c->next = nl ? nl + 1 : NULL;
  if (nl)
    *nl = '\0';
  size_t n = strlen(s);
  if (n > 0 && s[n - 1] == '\r')
    s[n - 1] = '\0';
  if (!nl && !*s)
    return NULL;          /* the empty tail after a final newline */
  c->line++;
  return s;
}

/* Strips spaces and tabs around s, then one pair of enclosing quotes. */
static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = '\0';
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
    s[n - 1] = '\0';
    s++;
  }
  return s;
}

static int64_t count_cells(const char *s) {
  int64_t n = 1;
  for (; *s; s++)
    n += *s == ',';
  return n;
}

/* Cuts line into exactly want cells (trimmed) stored in out. */
static void split_cells(char *line, char **out, int64_t want) {
  for (int64_t i = 0; i < want; i++) {
    char *comma = strchr(line, ',');
    if (comma)
      *comma = '\0';
    out[i] = trim(line);
    line = comma ? comma + 1 : line + strlen(line);
  }
}

/* True when line holds nothing but spaces and tabs. */
static int is_blank(const char *s) {
  return s[strspn(s, " \t")] == '\0';
}

/* ---- the header ------------------------------------------------------- */

static int find_label(csv *c, const char *label_column) {
  c->label = -1;
  if (!label_column)
    return 0;
  for (int64_t j = 0; j < c->ncols; j++) {
    if (strcmp(c->head[j], label_column) != 0)
      continue;
    if (c->label >= 0) {
      d2r_fail("%s:1: the label column '%s' appears twice (columns %lld "
               "and %lld)", c->path, label_column,
               (long long)c->label + 1, (long long)j + 1);
      return -1;
    }
    c->label = j;
  }
  if (c->label < 0) {
    d2r_fail("%s:1: no column is named '%s'", c->path, label_column);
    return -1;
  }
  return 0;
}

static int read_header(csv *c, const char *label_column) {
  if (strncmp(c->next, "\xEF\xBB\xBF", 3) == 0)
    c->next += 3;         /* a UTF-8 byte order mark */
  if (c->next[strspn(c->next, " \t\r\n")] == '\0') {
    d2r_fail("%s: the file is empty (a header row is required)", c->path);
    return -1;
  }
  char *s = next_line(c);
  if (is_blank(s)) {
    d2r_fail("%s:1: the header row is blank", c->path);
    return -1;
  }
  c->ncols = count_cells(s);
  c->head = malloc((size_t)c->ncols * sizeof *c->head);
  c->cells = malloc((size_t)c->ncols * sizeof *c->cells);
  if (!c->head || !c->cells) {
    d2r_fail("%s: out of memory", c->path);
    return -1;
  }
  split_cells(s, c->head, c->ncols);
  if (find_label(c, label_column) < 0)
    return -1;
  if (c->ncols - (c->label >= 0) < 1) {
    d2r_fail("%s:1: the file has no feature columns", c->path);
    return -1;
  }
  return 0;
}

/* ---- the rows --------------------------------------------------------- */

static int64_t nfeat(const csv *c) {
  return c->ncols - (c->label >= 0);
}

static int grow_rows(csv *c) {
  if (c->rows < c->cap)
    return 0;
  int64_t cap = c->cap ? 2 * c->cap : 256;
  double *x = realloc(c->x, (size_t)(cap * nfeat(c)) * sizeof *x);
  if (x)
    c->x = x;
  double *y = realloc(c->y, (size_t)cap * sizeof *y);
  if (y)
    c->y = y;
  if (!x || !y) {
    d2r_fail("%s:%lld: out of memory", c->path, (long long)c->line);
    return -1;
  }
  c->cap = cap;
  return 0;
}

/* Fails with a message naming the cell at column j of the current line. */
static int cell_error(const csv *c, int64_t j, const char *problem) {
  d2r_fail("%s:%lld: column %lld ('%.40s'): '%.40s' %s", c->path,
           (long long)c->line, (long long)j + 1, c->head[j], c->cells[j],
           problem);
  return -1;
}

static int parse_cell(const csv *c, int64_t j, double *out) {
  const char *s = c->cells[j];
  if (!*s) {
    d2r_fail("%s:%lld: column %lld ('%.40s'): the cell is empty", c->path,
             (long long)c->line, (long long)j + 1, c->head[j]);
    return -1;
  }
  char *end;
  *out = strtod(s, &end);
  if (end == s || *end)
    return cell_error(c, j, "is not a number");
  if (!isfinite(*out))
    return cell_error(c, j, "is not a finite number");
  if (j == c->label && (*out < 0 || *out > MAX_LABEL || *out != floor(*out)))
    return cell_error(c, j, "is not a class label (an integer in "
                            "0..2147483647)");
  return 0;
}

static int read_row(csv *c, char *s) {
  int64_t n = count_cells(s);
  if (n != c->ncols) {
    d2r_fail("%s:%lld: the row has %lld cells but the header %lld", c->path,
             (long long)c->line, (long long)n, (long long)c->ncols);
    return -1;
  }
  if (grow_rows(c) < 0)
    return -1;
  split_cells(s, c->cells, n);
  double *xr = c->x + c->rows * nfeat(c);
  for (int64_t j = 0, k = 0; j < n; j++) {
    double v;
    if (parse_cell(c, j, &v) < 0)
      return -1;
    if (j == c->label)
      c->y[c->rows] = v + 0.0;    /* a label "-0" becomes +0 */
    else
      xr[k++] = v;
  }
  c->rows++;
  return 0;
}

/* Reads every row; blank lines may only close the file. */
static int read_rows(csv *c) {
  int64_t blank = 0;
  for (char *s; (s = next_line(c));) {
    if (is_blank(s)) {
      blank = blank ? blank : c->line;
      continue;
    }
    if (blank) {
      d2r_fail("%s:%lld: blank line between rows", c->path,
               (long long)blank);
      return -1;
    }
    if (read_row(c, s) < 0)
      return -1;
  }
  if (c->rows == 0) {
    d2r_fail("%s: no data rows after the header", c->path);
    return -1;
  }
  return 0;
}

/* ---- the table -------------------------------------------------------- */

void d2r_table_free(d2r_table *t) {
  if (!t)
    return;
  d2r_release(t->x);
  d2r_release(t->y);
  for (int64_t j = 0; t->names && j < t->features; j++)
    free(t->names[j]);
  free(t->names);
  free(t->label_name);
  free(t);
}

static int copy_names(const csv *c, d2r_table *t) {
  t->names = calloc((size_t)t->features, sizeof *t->names);
  if (!t->names)
    return -1;
  for (int64_t j = 0, k = 0; j < c->ncols; j++) {
    if (j == c->label)
      continue;
    if (!(t->names[k++] = dup_str(c->head[j])))
      return -1;
  }
  if (c->label >= 0 && !(t->label_name = dup_str(c->head[c->label])))
    return -1;
  return 0;
}

static int64_t count_classes(const csv *c) {
  double top = -1;
  for (int64_t i = 0; i < c->rows; i++)
    top = c->y[i] > top ? c->y[i] : top;
  return (int64_t)top + 1;
}

/* Moves the parsed numbers into a new table. */
static d2r_table *make_table(const csv *c) {
  d2r_table *t = calloc(1, sizeof *t);
  if (!t)
    return d2r_fail("%s: out of memory", c->path);
  t->rows = c->rows;
  t->features = nfeat(c);
  int64_t shape[2] = {t->rows, t->features};
  t->x = d2r_from_data(2, shape, c->x);
  if (c->label >= 0) {
    t->y = d2r_from_data(1, shape, c->y);
    t->classes = count_classes(c);
  }
  if (!t->x || (c->label >= 0 && !t->y)) {
    d2r_table_free(t);
    return NULL;
  }
  if (copy_names(c, t) < 0) {
    d2r_table_free(t);
    return d2r_fail("%s: out of memory", c->path);
  }
  return t;
}

d2r_table *d2r_csv_read(const char *path, const char *label_column) {
  if (!path)
    return d2r_fail("csv_read: no path given");
  csv c = {.path = path};
  size_t size = 0;
  c.text = slurp(path, &size);
  if (!c.text)
    return NULL;
  if (memchr(c.text, '\0', size)) {
    free(c.text);
    return d2r_fail("%s: the file holds a NUL byte; it is not text", path);
  }
  c.next = c.text;
  d2r_table *t = NULL;
  if (read_header(&c, label_column) == 0 && read_rows(&c) == 0)
    t = make_table(&c);
  csv_free(&c);
  return t;
}

/* ---- index vectors ---------------------------------------------------- */

/* The values of a 1-d tensor (any strides) in a new array. */
static double *vec_values(const d2r_tensor *t, const char *who,
                          const char *what, int64_t *n) {
  char buf[64];
  if (d2r_ndim(t) != 1 || d2r_dim(t, 0) < 1)
    return d2r_fail("%s: %s must be a non-empty 1-d tensor, got shape %s",
                    who, what, d2r_shape_str(t, buf, sizeof buf));
  *n = d2r_dim(t, 0);
  double *v = malloc((size_t)*n * sizeof *v);
  if (!v)
    return d2r_fail("%s: out of memory", who);
  /* read only: d2r_data has no const form */
  const double *p = d2r_data((d2r_tensor *)t);
  int64_t st = d2r_strides(t)[0];
  for (int64_t i = 0; i < *n; i++)
    v[i] = p[i * st];
  return v;
}

/* Checks that v[0..n) are integers in 0..limit-1. */
static int check_ints(const double *v, int64_t n, double limit,
                      const char *who, const char *what) {
  for (int64_t i = 0; i < n; i++)
    if (!(v[i] >= 0 && v[i] < limit && v[i] == floor(v[i]))) {
      d2r_fail("%s: %s[%lld] = %g is not an integer in 0..%.0f", who, what,
               (long long)i, v[i], limit - 1);
      return -1;
    }
  return 0;
}

/* Checks that the pool's indices are distinct (they are in 0..ny-1). */
static int check_distinct(const double *pool, int64_t n, int64_t ny,
                          const char *who) {
  unsigned char *seen = calloc((size_t)ny, 1);
  if (!seen) {
    d2r_fail("%s: out of memory", who);
    return -1;
  }
  int64_t dup = -1;
  for (int64_t i = 0; i < n && dup < 0; i++) {
    int64_t k = (int64_t)pool[i];
    dup = seen[k] ? i : -1;
    seen[k] = 1;
  }
  free(seen);
  if (dup >= 0) {
    d2r_fail("%s: pool[%lld] = %.0f appears twice", who, (long long)dup,
             pool[dup]);
    return -1;
  }
  return 0;
}

/* Fisher-Yates with the d2r generator, so a seed fixes the order. */
static void shuffle(d2r_rng *rng, double *v, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)d2r_rng_below(rng, (uint64_t)i + 1);
    double t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

/* How many of c members go to the part: floor(frac * c + 0.5), within
 * 1..c-1; none of a single member. */
static int64_t part_count(double frac, int64_t c) {
  if (c < 2)
    return 0;
  int64_t k = (int64_t)floor(frac * (double)c + 0.5);
  return k < 1 ? 1 : k > c - 1 ? c - 1 : k;
}

/* ---- splits ----------------------------------------------------------- */

/* An index split in plain arrays; rest and part have room for n each. */
typedef struct split {
  double *rest, *part;
  int64_t nrest, npart;
} split;

static void split_free(split *s) {
  free(s->rest);
  free(s->part);
  s->rest = s->part = NULL;
}

static int split_alloc(split *s, int64_t n, const char *who) {
  s->nrest = s->npart = 0;
  s->rest = malloc((size_t)n * sizeof *s->rest);
  s->part = malloc((size_t)n * sizeof *s->part);
  if (!s->rest || !s->part) {
    split_free(s);
    d2r_fail("%s: out of memory", who);
    return -1;
  }
  return 0;
}

/* Sends the n indices of group (shuffled here) to the two sides. */
static void deal(split *s, double *group, int64_t n, double frac,
                 d2r_rng *rng) {
  shuffle(rng, group, n);
  int64_t k = part_count(frac, n);
  memcpy(s->part + s->npart, group, (size_t)k * sizeof *group);
  memcpy(s->rest + s->nrest, group + k, (size_t)(n - k) * sizeof *group);
  s->npart += k;
  s->nrest += n - k;
}

/* A pool entry with its label, for grouping by class. */
typedef struct member {
  double label;
  int64_t pos;        /* place in the pool, to keep the sort stable */
  double index;
} member;

static int by_label(const void *a, const void *b) {
  const member *p = a, *q = b;
  if (p->label != q->label)
    return p->label < q->label ? -1 : 1;
  return p->pos < q->pos ? -1 : p->pos > q->pos;
}

/* Groups the pool by class (in pool order within a class) and deals each
 * class; then shuffles both sides. */
static int split_classes(const double *y, const double *pool, int64_t n,
                         double frac, d2r_rng *rng, split *s) {
  member *m = malloc((size_t)n * sizeof *m);
  double *group = malloc((size_t)n * sizeof *group);
  if (!m || !group || split_alloc(s, n, "stratified_split") < 0) {
    free(m);
    free(group);
    d2r_fail("stratified_split: out of memory");
    return -1;
  }
  for (int64_t i = 0; i < n; i++)
    m[i] = (member){y[(int64_t)pool[i]], i, pool[i]};
  qsort(m, (size_t)n, sizeof *m, by_label);
  for (int64_t i = 0, j; i < n; i = j) {
    for (j = i; j < n && m[j].label == m[i].label; j++)
      group[j - i] = m[j].index;
    deal(s, group, j - i, frac, rng);
  }
  free(m);
  free(group);
  shuffle(rng, s->rest, s->nrest);
  shuffle(rng, s->part, s->npart);
  return 0;
}

/* New tensors from a split; -1 (outputs NULL) when the part is empty,
 * which happens only when no class has two members. */
static int split_tensors(const split *s, const char *who, d2r_tensor **rest,
                         d2r_tensor **part) {
  *rest = *part = NULL;
  if (s->npart == 0) {
    d2r_fail("%s: the part would be empty: no class has two members", who);
    return -1;
  }
  *rest = d2r_vector(s->nrest, s->rest);
  *part = d2r_vector(s->npart, s->part);
  if (!*rest || !*part) {
    d2r_release(*rest);
    d2r_release(*part);
    *rest = *part = NULL;
    return -1;
  }
  return 0;
}

static int check_frac(const char *who, const char *name, double frac) {
  if (!(frac > 0 && frac < 1)) {
    d2r_fail("%s: %s = %g must lie strictly between 0 and 1", who, name,
             frac);
    return -1;
  }
  return 0;
}

static int check_split_args(const char *who, double frac, d2r_rng *rng,
                            d2r_tensor **rest, d2r_tensor **part) {
  if (!rest || !part) {
    d2r_fail("%s: no output pointers given", who);
    return -1;
  }
  *rest = *part = NULL;
  if (!rng) {
    d2r_fail("%s: no generator given", who);
    return -1;
  }
  return check_frac(who, "frac", frac);
}

/* Labels of y after checking them (non-negative integers). */
static double *label_values(const d2r_tensor *y, const char *who,
                            int64_t *ny) {
  double *v = vec_values(y, who, "y", ny);
  if (v && check_ints(v, *ny, MAX_LABEL + 1, who, "y") < 0) {
    free(v);
    return NULL;
  }
  return v;
}

int d2r_stratified_split(const d2r_tensor *y, const d2r_tensor *pool,
                         double frac, d2r_rng *rng, d2r_tensor **rest,
                         d2r_tensor **part) {
  const char *who = "stratified_split";
  if (check_split_args(who, frac, rng, rest, part) < 0 || !y || !pool)
    return -1;
  int64_t ny, n;
  double *yv = label_values(y, who, &ny);
  double *pv = yv ? vec_values(pool, who, "pool", &n) : NULL;
  int rc = -1;
  split s = {0};
  if (pv && check_ints(pv, n, (double)ny, who, "pool") == 0 &&
      check_distinct(pv, n, ny, who) == 0 &&
      split_classes(yv, pv, n, frac, rng, &s) == 0)
    rc = split_tensors(&s, who, rest, part);
  split_free(&s);
  free(yv);
  free(pv);
  return rc;
}

int d2r_random_split(const d2r_tensor *pool, double frac, d2r_rng *rng,
                     d2r_tensor **rest, d2r_tensor **part) {
  const char *who = "random_split";
  if (check_split_args(who, frac, rng, rest, part) < 0 || !pool)
    return -1;
  int64_t n;
  double *pv = vec_values(pool, who, "pool", &n);
  if (pv && n < 2) {
    free(pv);
    d2r_fail("%s: the pool has 1 entry; a split needs at least 2", who);
    return -1;
  }
  int rc = -1;
  split s = {0};
  if (pv && check_ints(pv, n, MAX_INDEX, who, "pool") == 0 &&
      split_alloc(&s, n, who) == 0) {
    deal(&s, pv, n, frac, rng);
    rc = split_tensors(&s, who, rest, part);
  }
  split_free(&s);
  free(pv);
  return rc;
}

/* Test split of all rows, then validation split of the rest. */
static int protocol_arrays(const double *y, int64_t ny, double test_frac,
                           double val_frac, d2r_rng *rng, split *outer,
                           split *inner) {
  double *all = malloc((size_t)ny * sizeof *all);
  if (!all) {
    d2r_fail("protocol_split: out of memory");
    return -1;
  }
  for (int64_t i = 0; i < ny; i++)
    all[i] = (double)i;
  int rc = split_classes(y, all, ny, test_frac, rng, outer);
  free(all);
  if (rc == 0)
    rc = split_classes(y, outer->rest, outer->nrest, val_frac, rng, inner);
  return rc;
}

int d2r_protocol_split(const d2r_tensor *y, double test_frac,
                       double val_frac, d2r_rng *rng, d2r_tensor **train,
                       d2r_tensor **val, d2r_tensor **test) {
  const char *who = "protocol_split";
  d2r_tensor *unused;
  if (!train || !val || !test) {
    d2r_fail("%s: no output pointers given", who);
    return -1;
  }
  *train = *val = *test = NULL;
  if (!rng) {
    d2r_fail("%s: no generator given", who);
    return -1;
  }
  if (check_frac(who, "test_frac", test_frac) < 0 ||
      check_frac(who, "val_frac", val_frac) < 0 || !y)
    return -1;
  int64_t ny;
  double *yv = label_values(y, who, &ny);
  split outer = {0}, inner = {0};
  int rc = -1;
  if (yv && protocol_arrays(yv, ny, test_frac, val_frac, rng, &outer,
                            &inner) == 0 &&
      split_tensors(&outer, who, &unused, test) == 0) {
    d2r_release(unused);
    rc = split_tensors(&inner, who, train, val);
  }
  if (rc < 0) {
    d2r_release(*test);
    *test = NULL;
  }
  split_free(&outer);
  split_free(&inner);
  free(yv);
  return rc;
}

/* ---- standardisation -------------------------------------------------- */

void d2r_standardizer_free(d2r_standardizer *s) {
  if (!s)
    return;
  d2r_release(s->mean);
  d2r_release(s->std);
  free(s);
}

/* Mean and population std of column j of x ([n, f], element strides st).
 * A constant column keeps its exact value as mean and gets std 1. */
static int column_stats(const double *x, const int64_t *st, int64_t n,
                        int64_t j, double *mean, double *std) {
  const double *col = x + j * st[1];
  double sum = 0, first = col[0];
  int constant = 1;
  for (int64_t i = 0; i < n; i++) {
    double v = col[i * st[0]];
    if (!isfinite(v)) {
      d2r_fail("standardizer_fit: x[%lld][%lld] = %g is not finite",
               (long long)i, (long long)j, v);
      return -1;
    }
    sum += v;
    constant &= v == first;
  }
  double m = sum / (double)n, ss = 0;
  for (int64_t i = 0; i < n; i++)
    ss += (col[i * st[0]] - m) * (col[i * st[0]] - m);
  *mean = constant ? first : m;
  *std = sqrt(ss / (double)n);
  /* a spread so small that it underflows is treated as none */
  if (constant || !(*std > 0))
    *std = 1;
  return 0;
}

static int check_matrix(const d2r_tensor *x, const char *who) {
  char buf[64];
  if (d2r_ndim(x) != 2 || d2r_dim(x, 0) < 1 || d2r_dim(x, 1) < 1) {
    d2r_fail("%s: x must be a non-empty 2-d tensor [rows, features], got "
             "shape %s", who, d2r_shape_str(x, buf, sizeof buf));
    return -1;
  }
  return 0;
}

d2r_standardizer *d2r_standardizer_fit(const d2r_tensor *x) {
  if (!x || check_matrix(x, "standardizer_fit") < 0)
    return NULL;
  int64_t n = d2r_dim(x, 0), f = d2r_dim(x, 1);
  d2r_standardizer *s = calloc(1, sizeof *s);
  if (!s)
    return d2r_fail("standardizer_fit: out of memory");
  s->mean = d2r_empty(1, &f);
  s->std = d2r_empty(1, &f);
  if (!s->mean || !s->std) {
    d2r_standardizer_free(s);
    return NULL;
  }
  /* read only: d2r_data has no const form */
  const double *p = d2r_data((d2r_tensor *)x);
  double *mean = d2r_data(s->mean), *std = d2r_data(s->std);
  for (int64_t j = 0; j < f; j++)
    if (column_stats(p, d2r_strides(x), n, j, &mean[j], &std[j]) < 0) {
      d2r_standardizer_free(s);
      return NULL;
    }
  return s;
}

d2r_tensor *d2r_standardizer_apply(const d2r_standardizer *s,
                                   const d2r_tensor *x) {
  const char *who = "standardizer_apply";
  if (!x)
    return NULL;
  if (!s || !s->mean || !s->std)
    return d2r_fail("%s: no fitted standardizer given", who);
  if (check_matrix(x, who) < 0)
    return NULL;
  int64_t n = d2r_dim(x, 0), f = d2r_dim(x, 1);
  if (f != d2r_numel(s->mean))
    return d2r_fail("%s: x has %lld features, the standardizer was fitted "
                    "on %lld", who, (long long)f,
                    (long long)d2r_numel(s->mean));
  d2r_tensor *out = d2r_empty(2, (int64_t[]){n, f});
  if (!out)
    return NULL;
  const double *p = d2r_data((d2r_tensor *)x);
  const double *mean = d2r_data(s->mean), *std = d2r_data(s->std);
  const int64_t *st = d2r_strides(x);
  double *o = d2r_data(out);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < f; j++)
      o[i * f + j] = (p[i * st[0] + j * st[1]] - mean[j]) / std[j];
  return out;
}

/* ---- minibatches ------------------------------------------------------ */

d2r_tensor *d2r_batch_order(d2r_rng *rng, int64_t n) {
  return d2r_rand_permutation(rng, n);
}

int64_t d2r_batch_count(int64_t n, int64_t bs) {
  if (n < 0 || bs < 1) {
    d2r_fail("batch_count: n = %lld must be >= 0 and bs = %lld >= 1",
             (long long)n, (long long)bs);
    return -1;
  }
  return n / bs + (n % bs != 0);
}

d2r_tensor *d2r_batch_index(d2r_tensor *order, int64_t b, int64_t bs) {
  char buf[64];
  if (!order)
    return NULL;
  if (d2r_ndim(order) != 1)
    return d2r_fail("batch_index: order must be 1-d, got shape %s",
                    d2r_shape_str(order, buf, sizeof buf));
  int64_t n = d2r_dim(order, 0), count = d2r_batch_count(n, bs);
  if (count < 0)
    return NULL;
  if (b < 0 || b >= count)
    return d2r_fail("batch_index: batch %lld is outside 0..%lld (%lld "
                    "rows in batches of %lld)", (long long)b,
                    (long long)count - 1, (long long)n, (long long)bs);
  int64_t stop = (b + 1) * bs < n ? (b + 1) * bs : n;
  return d2r_slice(order, 0, b * bs, stop, 1);
}

d2r_tensor *d2r_batch_rows(d2r_tensor *t, d2r_tensor *order, int64_t b,
                           int64_t bs) {
  if (!t)
    return NULL;
  d2r_tensor *idx = d2r_batch_index(order, b, bs);
  if (!idx)
    return NULL;
  d2r_tensor *rows = d2r_take_rows(t, idx);
  d2r_release(idx);
  return rows;
}

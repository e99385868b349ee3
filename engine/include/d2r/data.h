/*
 * Datasets for tabular experiments: a CSV reader that gives a feature
 * matrix and integer class labels, seeded splits (stratified by class or
 * not), a standardiser fitted on training rows, and minibatch orders.
 * Row indices are exact float64 values in 1-d tensors, ready for
 * d2r_take_rows.  Errors follow tensor.h: NULL or -1, and a message in
 * d2r_error() naming the file, line and column, or the bad argument.
 */
#ifndef D2R_DATA_H
#define D2R_DATA_H

#include <stdint.h>

#include "d2r/rng.h"
#include "d2r/tensor.h"

/* ---- CSV tables ------------------------------------------------------- */

typedef struct d2r_table {
  d2r_tensor *x;      /* features [rows, features] */
  d2r_tensor *y;      /* labels [rows] as exact float64, or NULL */
  int64_t rows, features;
  char **names;       /* feature names, in file order (label left out) */
  char *label_name;   /* the label column's name, or NULL */
  int64_t classes;    /* largest label + 1; 0 without a label column */
} d2r_table;

/*
 * Reads a comma-separated file.  The first line is a header of column
 * names; every later line holds one number per column.  A cell may have
 * spaces around it and may be wrapped in double quotes; a cell cannot
 * contain a comma.  Numbers are read by strtod (C locale syntax) and must
 * be finite.  CRLF line ends, a UTF-8 byte order mark, and blank lines at
 * the end of the file are accepted; a blank line between rows is not.
 *
 * label_column names the column of class labels (or is NULL for none):
 * its cells must be integers in 0..2^31-1; it is left out of x.
 *
 * Returns a table the caller frees with d2r_table_free, or NULL with a
 * message like "data/x.csv:12: column 3 ('petal_width'): 'abc' is not a
 * number" (lines and columns count from 1; the header is line 1).
 */
d2r_table *d2r_csv_read(const char *path, const char *label_column);
void d2r_table_free(d2r_table *t);                /* NULL-safe */

/* ---- splits ----------------------------------------------------------- */

/*
 * Splits the row indices in pool (a 1-d tensor of distinct integers in
 * 0..len(y)-1) into `rest` and `part`, class by class, with labels y (1-d,
 * non-negative integers).  A class with c members in pool puts
 * k = floor(frac * c + 0.5) of them in part (halves round up), with k kept
 * within 1..c-1 so that every class of two or more members appears on both
 * sides; a class with a single member goes to rest.  (scikit-learn
 * instead allots a total of ceil(frac * n) across classes; the counts
 * agree whenever frac * c is whole, as for iris.)  Members are chosen
 * by a shuffle drawn from rng, and each output is returned in a shuffled
 * order, so the result is fixed by the rng state and the order of pool.
 * 0 < frac < 1.  On success *rest and *part hold new references and 0 is
 * returned; on failure both are set to NULL and -1 is returned.
 */
int d2r_stratified_split(const d2r_tensor *y, const d2r_tensor *pool,
                         double frac, d2r_rng *rng, d2r_tensor **rest,
                         d2r_tensor **part);

/* The same without classes: floor(frac * n + 0.5) of the n indices of
 * pool, kept within 1..n-1, go to part (n >= 2); both outputs shuffled.
 * The pool's entries must be non-negative integers. */
int d2r_random_split(const d2r_tensor *pool, double frac, d2r_rng *rng,
                     d2r_tensor **rest, d2r_tensor **part);

/*
 * The tabular protocol: a stratified test split of test_frac of all rows
 * of y, then a stratified validation split of val_frac of the remaining
 * rows; what is left is the training set.  All three are indices into y.
 * Equivalent to d2r_stratified_split on arange(len(y)) followed by
 * d2r_stratified_split on its rest, with the same rng.  Returns 0 or -1
 * (all three outputs NULL on failure).
 */
int d2r_protocol_split(const d2r_tensor *y, double test_frac,
                       double val_frac, d2r_rng *rng, d2r_tensor **train,
                       d2r_tensor **val, d2r_tensor **test);

/* ---- standardisation -------------------------------------------------- */

/*
 * Per-feature mean and population standard deviation (ddof 0, as
 * scikit-learn's StandardScaler).  A feature whose values are all equal
 * gets std 1 and its exact value as mean, so it maps to 0.
 */
typedef struct d2r_standardizer {
  d2r_tensor *mean;   /* [features] */
  d2r_tensor *std;    /* [features], all > 0 */
} d2r_standardizer;

/* Fits on x [rows >= 1, features] (finite values).  Free the result with
 * d2r_standardizer_free. */
d2r_standardizer *d2r_standardizer_fit(const d2r_tensor *x);
/* (x - mean) / std for x [rows, features]: a new tensor without history. */
d2r_tensor *d2r_standardizer_apply(const d2r_standardizer *s,
                                   const d2r_tensor *x);
void d2r_standardizer_free(d2r_standardizer *s);  /* NULL-safe */

/* ---- minibatches ------------------------------------------------------ */

/* The order of one epoch: a random permutation of 0..n-1 (n >= 1). */
d2r_tensor *d2r_batch_order(d2r_rng *rng, int64_t n);
/* Number of batches of size bs covering n rows: ceil(n / bs). */
int64_t d2r_batch_count(int64_t n, int64_t bs);
/* Indices of batch b (0-based) of size bs within order (1-d): entries
 * b*bs .. min((b+1)*bs, n) - 1; the last batch may be smaller.  A view of
 * order. */
d2r_tensor *d2r_batch_index(d2r_tensor *order, int64_t b, int64_t bs);
/* The rows of t (along axis 0) of batch b: d2r_take_rows(t, index). */
d2r_tensor *d2r_batch_rows(d2r_tensor *t, d2r_tensor *order, int64_t b,
                           int64_t bs);

#endif

/*
 * Fuzz target: the CSV reader (d2r_csv_read), without a label column and
 * with the label column "label".  Any input must give a table or NULL
 * with a message; the table must hold what it says.
 */
#include "fuzz_util.h"

#include "d2r/data.h"

static void check_table(d2r_table *t) {
  if (!t) {
    if (!d2r_error()[0]) abort();    /* a failure must say why */
    return;
  }
  if (d2r_dim(t->x, 0) != t->rows || d2r_dim(t->x, 1) != t->features)
    abort();
  const double *x = d2r_data(t->x);
  volatile double sum = 0;
  for (int64_t i = 0; i < t->rows * t->features; i++) sum += x[i];
  for (int64_t j = 0; j < t->features; j++)
    if (!t->names[j]) abort();
  d2r_table_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("csv", data, size);
  if (!path) return 0;
  d2r_clear_error();
  check_table(d2r_csv_read(path, NULL));
  d2r_clear_error();
  check_table(d2r_csv_read(path, "label"));
  return 0;
}

/*
 * Fuzz target: D2RT transition datasets (d2r_dataset_load), on the input
 * as given and with its checksum made right.  A loaded dataset must hold
 * columns of the sizes it declares.
 */
#include "fuzz_util.h"

#include "d2r/dataset.h"

static void one(const char *path) {
  d2r_dataset *d = d2r_dataset_load(path);
  if (!d) {
    if (!d2r_error()[0]) abort();
    return;
  }
  if (d2r_dim(d->obs, 0) != d->size || d2r_dim(d->obs, 1) != d->obs_dim ||
      d2r_dim(d->act, 1) != d->act_dim || d2r_numel(d->episode) != d->size)
    abort();
  volatile double s = 0;
  const double *v = d2r_data(d->next_obs);
  for (int64_t i = 0; i < d2r_numel(d->next_obs); i++) s += v[i];
  if (strlen(d->env) == 0) abort();
  d2r_dataset_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file("dataset", data, size);
  if (path) one(path);
  uint8_t *fixed = fuzz_fix_crc(data, size);
  if (fixed && (path = fuzz_file("dataset", fixed, size))) one(path);
  free(fixed);
  return 0;
}

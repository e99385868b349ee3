/*
 * Fuzz target: D2RP parameter files, read whole (d2r_params_read) and
 * loaded into two fixed parameters W [4, 3] and b [3]
 * (d2r_params_load), each on the input as given and with its checksum
 * made right.  A refused load must leave the parameters unchanged.
 */
#include "fuzz_util.h"

static d2r_tensor *params[2];
static double before[15];

static void setup(void) {
  if (params[0]) return;
  double v[15];
  for (int i = 0; i < 15; i++) v[i] = i * 0.25 - 1;
  params[0] = d2r_matrix(4, 3, v);
  params[1] = d2r_vector(3, v + 12);
}

static void one(const char *path) {
  int count = 0;
  d2r_tensor **ts = NULL;
  if (d2r_params_read(path, &count, &ts) == 0) {
    for (int i = 0; i < count; i++) {
      volatile double s = 0;
      const double *p = d2r_data(ts[i]);
      for (int64_t k = 0; k < d2r_numel(ts[i]); k++) s += p[k];
      d2r_release(ts[i]);
    }
    free(ts);
  } else if (!d2r_error()[0]) {
    abort();
  }
  memcpy(before, d2r_data(params[0]), 12 * sizeof *before);
  memcpy(before + 12, d2r_data(params[1]), 3 * sizeof *before);
  if (d2r_params_load(path, 2, params) != 0 &&
      (memcmp(before, d2r_data(params[0]), 12 * sizeof *before) != 0 ||
       memcmp(before + 12, d2r_data(params[1]), 3 * sizeof *before) != 0))
    abort();                         /* a refused load changed them */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup();
  const char *path = fuzz_file("params", data, size);
  if (path) one(path);
  uint8_t *fixed = fuzz_fix_crc(data, size);
  if (fixed && (path = fuzz_file("params", fixed, size))) one(path);
  free(fixed);
  return 0;
}

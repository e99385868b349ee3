/*
 * Checkpoints of a training run: model parameters, optimiser state,
 * random generator state, the epoch and step counters and a small user
 * metadata string in one checked file, written atomically, so that an
 * interrupted run resumes bit for bit where it stopped.
 *
 * Errors follow tensor.h: -1 with a message in d2r_error() that names
 * the file and the problem.  Nothing here prints or aborts.
 */
#ifndef D2R_CHECKPOINT_H
#define D2R_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "d2r/optim.h"
#include "d2r/rng.h"
#include "d2r/tensor.h"

/*
 * The D2RC format, version 1; integers are little-endian, epoch and step
 * two's complement, values IEEE-754 float64:
 *
 *   offset  size  field
 *   0       4     magic "D2RC"
 *   4       4     version (1)
 *   8       8     total file length in bytes
 *   16      8     epoch
 *   24      8     step
 *   32      4     number of sections
 *   36      4     flags (0)
 *   40      ...   sections, each: a 4-byte tag, an 8-byte payload length
 *                 L, then L bytes of payload
 *   end-4   4     CRC-32 (as d2r_crc32) of bytes [0, end-4)
 *
 * Sections (each at most once, in any order):
 *   "META"  the metadata bytes.
 *   "PARM"  count (4), then per tensor: ndim (4), ndim dimensions (8
 *           each), the values row-major.
 *   "OPTM"  name length (4) and name ("sgd", "adam", "adamw"), the
 *           learning rate (8), parameter count n (4), buffers per
 *           parameter (4), n element counts (8 each), then the vector of
 *           d2r_optim_state_flat: its length (8) and its values.
 *   "RNGS"  state length (8) and the bytes of d2r_rng_get_state.
 */
#define D2R_CHECKPOINT_MAGIC "D2RC"
#define D2R_CHECKPOINT_VERSION 1

/*
 * What a checkpoint holds.  Any object may be left out (nparams 0, optim
 * or rng NULL).  meta holds meta_len bytes (meta_len 0 with a non-NULL
 * meta means strlen(meta)); NULL stores an empty string.  All pointers
 * are borrowed.
 */
typedef struct d2r_checkpoint {
  int nparams;                /* model parameters (contiguous tensors) */
  d2r_tensor *const *params;
  d2r_optim *optim;
  d2r_rng *rng;
  int64_t epoch, step;
  const char *meta;
  size_t meta_len;
} d2r_checkpoint;

/*
 * Writes ck to path atomically: a temporary file in the same directory
 * is written, synced and renamed over path (then the directory is
 * synced); on failure path is untouched and no temporary file is left.
 * 0 or -1.
 */
int d2r_checkpoint_save(const char *path, const d2r_checkpoint *ck);

/*
 * Restores a checkpoint into the objects named by ck: each one given
 * must be in the file and match it (parameter count and shapes; the
 * optimiser's kind and parameter sizes; the generator's state size);
 * what the file holds beyond them is checked but not applied.  On
 * success sets ck->epoch, ck->step and ck->meta_len and, when meta is
 * not NULL, *meta to a malloc'd NUL-terminated copy of the metadata
 * (free it).  The whole file is validated (length, checksum, every
 * section) before anything changes: on failure nothing in ck, its
 * objects or *meta changes.  0 or -1.
 */
int d2r_checkpoint_load(const char *path, d2r_checkpoint *ck, char **meta);

#endif

/*
 * Logged transitions for learning dynamics models: collection with a
 * behaviour policy (uniform random, or a noisy model-predictive
 * controller planning through the true simulator at a "medium" or an
 * "expert" budget, or any agent), a checked binary file format written
 * atomically, and seeded splits by episode.
 *
 * A dataset holds N transitions (s, a, r, s', terminated, truncated,
 * episode) as tensors; the rows of one episode are contiguous and in time
 * order, and only an episode's last row may be marked terminated or
 * truncated.  Actions are stored as the environment applied them
 * (clipped into its box).
 *
 * Ownership.  A d2r_dataset is made by the functions below and freed
 * with d2r_dataset_free (NULL-safe); it owns its strings and one
 * reference to each tensor.  The tensors may be retained and read, not
 * written.  Errors follow tensor.h: NULL or -1 with a message in
 * d2r_error(); file errors name the file.
 */
#ifndef D2R_DATASET_H
#define D2R_DATASET_H

#include <stdint.h>

#include "d2r/env.h"
#include "d2r/planner.h"
#include "d2r/tensor.h"

typedef struct d2r_dataset {
  char *env;               /* the environment's name */
  char *behaviour;         /* how the data was collected, in words */
  uint64_t seed;           /* the collection seed */
  int64_t size;            /* N transitions, >= 1 */
  int64_t episodes;        /* distinct episode ids */
  int64_t obs_dim, act_dim;
  d2r_tensor *obs;         /* [N, obs_dim] */
  d2r_tensor *act;         /* [N, act_dim] */
  d2r_tensor *reward;      /* [N] */
  d2r_tensor *next_obs;    /* [N, obs_dim] */
  d2r_tensor *terminated;  /* [N], 1 or 0 */
  d2r_tensor *truncated;   /* [N], 1 or 0 */
  d2r_tensor *episode;     /* [N], integer ids >= 0 */
} d2r_dataset;

/*
 * A dataset from caller-made columns (copied; shapes as above, N >= 1,
 * every value finite).  env and behaviour are copied (behaviour may be
 * NULL: "unknown").  Fails naming the first problem: a shape, a flag
 * that is not 0 or 1, an id that is not a non-negative integer, the rows
 * of an episode that are not contiguous, or a done flag before the last
 * row of its episode.
 */
d2r_dataset *d2r_dataset_new(const char *env, const char *behaviour,
                             uint64_t seed, d2r_tensor *obs,
                             d2r_tensor *act, d2r_tensor *reward,
                             d2r_tensor *next_obs, d2r_tensor *terminated,
                             d2r_tensor *truncated, d2r_tensor *episode);
void d2r_dataset_free(d2r_dataset *d);

/* The sum of rewards of each episode, in order of first appearance:
 * [episodes]. */
d2r_tensor *d2r_dataset_returns(const d2r_dataset *d);

/* ---- collection --------------------------------------------------------- */

typedef enum d2r_behaviour_kind {
  D2R_BEHAVIOUR_RANDOM = 0,  /* uniform in the action box */
  D2R_BEHAVIOUR_MEDIUM,      /* noisy MPC, small budget, true model */
  D2R_BEHAVIOUR_EXPERT,      /* noisy MPC, large budget, true model */
  D2R_BEHAVIOUR_AGENT        /* the caller's agent (plus noise) */
} d2r_behaviour_kind;

typedef struct d2r_behaviour {
  d2r_behaviour_kind kind;
  d2r_planner_config planner;  /* MEDIUM, EXPERT: the controller */
  double noise;     /* Gaussian action noise, std as a fraction of half
                     * the action range (>= 0), added before clipping */
  d2r_agent agent;  /* AGENT: the policy */
  const char *name; /* recorded description; NULL: one is made */
} d2r_behaviour;

/*
 * The documented presets for env (looked up by its name; other
 * environments get the pendulum's settings):
 *   random  uniform actions, no noise;
 *   medium  CEM with N 50, 2 iterations, 5 elites, noise 0.3;
 *   expert  CEM with N 200, 5 iterations, 20 elites, noise 0.1;
 * the horizon and action repeat per environment: pendulum and reacher
 * H 15 (repeat 1); cartpole H 15 (repeat 3, so that the cart's walls
 * come into view); mountain_car H 20 (repeat 10); acrobot H 20 (repeat
 * 5).  The planner seed is set per episode by d2r_collect.  On the
 * sparse-reward tasks (mountain_car, acrobot) a planner without a value
 * function reaches the goal only when its samples happen to, so the
 * expert's planner also scores where its horizon ends by the system's
 * mechanical energy (terminal, with env as terminal_ctx: the env must
 * outlive the behaviour): mountain car 100 times the fraction of the
 * energy from the valley's bottom to the goal's height, acrobot minus
 * 100 times the fraction still missing to standing upright.  Measured
 * (4 episodes): mountain car expert 98.2 per episode, medium 95.9, random
 * -33.4; acrobot expert -101, medium -357, random -500.
 * Fails for kind AGENT (there is no preset agent).  0 or -1.
 */
int d2r_behaviour_preset(d2r_behaviour_kind kind, const d2r_env *env,
                         d2r_behaviour *out);
/* "random", "medium", "expert", "agent"; parse: 0 or -1. */
const char *d2r_behaviour_kind_name(d2r_behaviour_kind kind);
int d2r_behaviour_kind_parse(const char *name, d2r_behaviour_kind *out);

/*
 * Runs `episodes` episodes of env under behaviour b and records every
 * transition.  Episode i gets id i; its env seed and the behaviour's seed
 * (planner, noise) are drawn from a generator seeded with seed, so the
 * dataset is a function of (env, b, episodes, seed).  MEDIUM and EXPERT
 * need an environment that can predict (every built-in can).
 */
d2r_dataset *d2r_collect(d2r_env *env, const d2r_behaviour *b,
                         int64_t episodes, uint64_t seed);

/* ---- subsets ------------------------------------------------------------ */

/* The episodes whose ids are listed (n >= 1 distinct ids present in d),
 * in the order they appear in d.  Metadata is kept. */
d2r_dataset *d2r_dataset_select(const d2r_dataset *d, int64_t n,
                                const int64_t *ids);

/*
 * Splits the episodes of d at random (a shuffle drawn from a generator
 * seeded with seed) into train, validation and test parts holding
 * floor(f E + 0.5) of the E episodes each (fractions >= 0 summing to at
 * most 1, so that a "data proportion" below 1 leaves the rest unused;
 * when rounding overshoots E, test then validation lose an episode).
 * A part with a positive fraction must get at least one episode; a part
 * with fraction 0 is not made (its output is set to NULL and may be
 * NULL).  Within a part, episodes keep their order in d.  0 or -1 (all
 * outputs NULL).
 */
int d2r_dataset_split(const d2r_dataset *d, double f_train, double f_val,
                      double f_test, uint64_t seed, d2r_dataset **train,
                      d2r_dataset **val, d2r_dataset **test);

/* ---- files -------------------------------------------------------------- */

/*
 * The D2RT format, version 1.  Integers are unsigned little-endian,
 * values IEEE-754 float64 little-endian:
 *
 *   offset  size  field
 *   0       4     magic "D2RT"
 *   4       4     version (1)
 *   8       4     flags (0)
 *   12      4     obs_dim
 *   16      4     act_dim
 *   20      4     Le: bytes of the environment name (1..4096)
 *   24      4     Lb: bytes of the behaviour description (0..4096)
 *   28      4     reserved (0)
 *   32      8     seed
 *   40      8     N: transitions
 *   48      8     E: episodes
 *   56      8     total file length in bytes
 *   64      Le    environment name (UTF-8, no terminator)
 *   64+Le   Lb    behaviour description
 *   then the columns, each row-major:
 *                 obs [N, obs_dim], act [N, act_dim], reward [N],
 *                 next_obs [N, obs_dim], terminated [N], truncated [N],
 *                 episode [N]
 *   end-4   4     CRC-32 (as d2r_crc32) of bytes [0, end-4)
 *
 * so the length is 68 + Le + Lb + 8 N (2 obs_dim + act_dim + 4).
 */
#define D2R_DATASET_MAGIC "D2RT"
#define D2R_DATASET_VERSION 1

/* Writes d to path atomically (a temporary file in the same directory,
 * flushed, synced and renamed over path); on failure path is untouched.
 * 0 or -1 with an error naming the file. */
int d2r_dataset_save(const d2r_dataset *d, const char *path);

/* Reads a D2RT file.  Refuses (naming the file and the problem) a file
 * that is truncated or longer than declared, has a wrong magic, version
 * or checksum, or holds columns a dataset cannot (as d2r_dataset_new). */
d2r_dataset *d2r_dataset_load(const char *path);

#endif

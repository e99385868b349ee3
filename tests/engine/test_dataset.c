/*
 * Tests of logged datasets (dataset.h): collection (consistency of the
 * recorded transitions with the simulator, determinism from the seed,
 * behaviours ranked by return), the D2RT file (round trip, refusal of
 * truncated, corrupted and foreign files, atomic replacement), splits by
 * episode and the validation of caller-made columns.
 */
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "d2r/dataset.h"

/* ---- helpers ------------------------------------------------------------ */

static char dir[64];

static void make_dir(void) {
  strcpy(dir, "/tmp/d2r_test_dataset_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

/* Removes every file in dir, then dir. */
static void remove_dir(void) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *ent;
  char path[512];
  while ((ent = readdir(d)) != NULL) {
    if (ent->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static int count_files(void) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL)
    if (ent->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static d2r_dataset *collect(const char *env_name, int steps,
                            d2r_behaviour_kind kind, int64_t episodes,
                            uint64_t seed) {
  d2r_env_param p[] = {{"max_steps", steps}};
  d2r_env *e = d2r_env_make(env_name, 1, p);
  cr_assert_not_null(e, "%s", d2r_error());
  d2r_behaviour b;
  cr_assert_eq(d2r_behaviour_preset(kind, e, &b), 0, "%s", d2r_error());
  d2r_dataset *d = d2r_collect(e, &b, episodes, seed);
  cr_assert_not_null(d, "%s", d2r_error());
  d2r_env_release(e);
  return d;
}

static bool same_tensor(d2r_tensor *a, d2r_tensor *b) {
  return d2r_same_shape(a, b) &&
         memcmp(d2r_data(a), d2r_data(b),
                (size_t)d2r_numel(a) * sizeof(double)) == 0;
}

static bool same_data(const d2r_dataset *a, const d2r_dataset *b) {
  return a->size == b->size && a->episodes == b->episodes &&
         same_tensor(a->obs, b->obs) && same_tensor(a->act, b->act) &&
         same_tensor(a->reward, b->reward) &&
         same_tensor(a->next_obs, b->next_obs) &&
         same_tensor(a->terminated, b->terminated) &&
         same_tensor(a->truncated, b->truncated) &&
         same_tensor(a->episode, b->episode);
}

static void expect_msg(const char *want) {
  cr_expect(strstr(d2r_error(), want) != NULL, "message '%s' lacks '%s'",
            d2r_error(), want);
}

/* ---- collection --------------------------------------------------------- */

Test(env_dataset, random_transitions_are_consistent) {
  d2r_env *e = d2r_env_make("cartpole", 0, NULL);
  d2r_dataset *d = collect("cartpole", 500, D2R_BEHAVIOUR_RANDOM, 6, 3);
  cr_expect_str_eq(d->env, "cartpole");
  cr_expect(strstr(d->behaviour, "random"));
  cr_expect_eq(d->seed, 3);
  cr_expect_eq(d->episodes, 6);
  cr_expect_eq(d->obs_dim, 4);
  cr_expect_eq(d->act_dim, 1);
  const double *o = d2r_data(d->obs), *a = d2r_data(d->act);
  const double *n = d2r_data(d->next_obs), *r = d2r_data(d->reward);
  const double *term = d2r_data(d->terminated);
  const double *ep = d2r_data(d->episode);
  int64_t ends = 0;
  for (int64_t i = 0; i < d->size; i++) {
    cr_expect(a[i] >= -1 && a[i] <= 1);
    /* s' follows from (s, a) by the simulator, with its reward. */
    double p[4], pr, pd;
    cr_assert_eq(d2r_env_predict_raw(e, 1, o + 4 * i, a + i, p, &pr, &pd),
                 0);
    cr_expect(memcmp(p, n + 4 * i, sizeof p) == 0, "row %lld",
              (long long)i);
    cr_expect_eq(pr, r[i]);
    cr_expect_eq(pd, term[i]);
    bool last = i == d->size - 1 || ep[i + 1] != ep[i];
    if (!last) {
      cr_expect(memcmp(n + 4 * i, o + 4 * (i + 1), 4 * sizeof(double)) ==
                0, "s' of row %lld starts the next row", (long long)i);
    } else {
      ends++;
      cr_expect_eq(term[i], 1.0, "random pushes topple the pole");
    }
  }
  cr_expect_eq(ends, 6);
  d2r_tensor *ret = d2r_dataset_returns(d);
  cr_expect_eq(d2r_numel(ret), 6);
  double total = 0;
  for (int i = 0; i < 6; i++) total += d2r_data(ret)[i];
  cr_expect_eq(total, (double)d->size, "1 per step");
  d2r_release(ret);
  d2r_dataset_free(d);
  d2r_env_release(e);
}

Test(env_dataset, truncated_episodes_and_determinism) {
  d2r_dataset *a = collect("pendulum", 30, D2R_BEHAVIOUR_RANDOM, 4, 9);
  d2r_dataset *b = collect("pendulum", 30, D2R_BEHAVIOUR_RANDOM, 4, 9);
  d2r_dataset *c = collect("pendulum", 30, D2R_BEHAVIOUR_RANDOM, 4, 10);
  cr_expect_eq(a->size, 120);
  for (int64_t i = 0; i < a->size; i++)
    cr_expect_eq(d2r_data(a->truncated)[i], (i % 30) == 29 ? 1.0 : 0.0);
  cr_expect(same_data(a, b), "same seed, same data");
  cr_expect(!same_tensor(a->obs, c->obs), "another seed, other data");
  d2r_dataset_free(a);
  d2r_dataset_free(b);
  d2r_dataset_free(c);
}

static double mean_return(const d2r_dataset *d) {
  d2r_tensor *r = d2r_dataset_returns(d);
  double s = 0;
  for (int64_t i = 0; i < d2r_numel(r); i++) s += d2r_data(r)[i];
  s /= (double)d2r_numel(r);
  d2r_release(r);
  return s;
}

Test(env_dataset, behaviours_rank_by_return) {
  /* Pendulum, 3 episodes of 100 steps each.  Measured per episode:
   * random -611.8, medium -204.8, expert -162.6. */
  d2r_dataset *r = collect("pendulum", 100, D2R_BEHAVIOUR_RANDOM, 3, 1);
  d2r_dataset *m = collect("pendulum", 100, D2R_BEHAVIOUR_MEDIUM, 3, 1);
  d2r_dataset *x = collect("pendulum", 100, D2R_BEHAVIOUR_EXPERT, 3, 1);
  double rr = mean_return(r), mr = mean_return(m), xr = mean_return(x);
  cr_expect_lt(rr, mr - 100, "random %g, medium %g", rr, mr);
  cr_expect_lt(mr, xr - 20, "medium %g, expert %g", mr, xr);
  cr_expect(strstr(m->behaviour, "medium: cem H=15 N=50"), "%s",
            m->behaviour);
  cr_expect(strstr(x->behaviour, "noise 0.1"), "%s", x->behaviour);
  d2r_dataset_free(r);
  d2r_dataset_free(m);
  d2r_dataset_free(x);
}

static double terminations(const d2r_dataset *d) {
  d2r_tensor *t = d2r_sum_all(d->terminated);
  double n = d2r_item(t);
  d2r_release(t);
  return n;
}

/* On the sparse-reward tasks the expert's planner values the energy at
 * the end of its horizon: it reaches the goal in every episode and
 * scores above the medium controller.  Measured (through the Lua
 * binding, same seed): mountain car expert 98.2 per episode, medium
 * 95.9; acrobot expert -102.0, medium -346.5. */
Test(env_dataset, expert_reaches_sparse_goals, .timeout = 120) {
  const char *names[2] = {"mountain_car", "acrobot"};
  for (int i = 0; i < 2; i++) {
    d2r_dataset *m = collect(names[i], 500, D2R_BEHAVIOUR_MEDIUM, 2, 5);
    d2r_dataset *x = collect(names[i], 500, D2R_BEHAVIOUR_EXPERT, 2, 5);
    cr_expect_eq(terminations(x), 2.0, "%s: expert reached the goal %g "
                 "times in 2", names[i], terminations(x));
    cr_expect_gt(mean_return(x), mean_return(m), "%s: expert %g, medium %g",
                 names[i], mean_return(x), mean_return(m));
    cr_expect(strstr(x->behaviour, "energy terminal value"), "%s",
              x->behaviour);
    d2r_dataset_free(m);
    d2r_dataset_free(x);
  }
}

/* The caller's agent: a constant push, with noise added by collect. */
static int constant_act(void *ctx, const double *obs, double *a) {
  (void)obs;
  a[0] = *(double *)ctx;
  return 0;
}

Test(env_dataset, agent_behaviour) {
  d2r_env *e = d2r_env_make("mountain_car", 0, NULL);
  double push = 0.5;
  d2r_behaviour b = {D2R_BEHAVIOUR_AGENT, d2r_planner_defaults(0), 0.0,
                     {NULL, constant_act, &push}, "constant 0.5"};
  d2r_dataset *d = d2r_collect(e, &b, 1, 0);
  cr_assert_not_null(d, "%s", d2r_error());
  cr_expect_str_eq(d->behaviour, "constant 0.5");
  cr_expect_eq(d->size, 999);
  for (int64_t i = 0; i < d->size; i++)
    cr_expect_eq(d2r_data(d->act)[i], 0.5);
  d2r_dataset_free(d);
  b.noise = 0.2;
  d = d2r_collect(e, &b, 1, 0);
  cr_assert_not_null(d);
  cr_expect_neq(d2r_data(d->act)[0], 0.5, "noise is added");
  d2r_dataset_free(d);
  b.agent.act = NULL;
  cr_expect_null(d2r_collect(e, &b, 1, 0));
  expect_msg("needs an act function");
  b.agent.act = constant_act;
  cr_expect_null(d2r_collect(e, &b, 0, 0));
  expect_msg("episodes must be >= 1");
  d2r_env_release(e);
}

/* ---- files -------------------------------------------------------------- */

Test(env_dataset, round_trip, .init = make_dir, .fini = remove_dir) {
  d2r_dataset *d = collect("reacher", 50, D2R_BEHAVIOUR_RANDOM, 3, 21);
  char path[128];
  snprintf(path, sizeof path, "%s/reacher.d2rt", dir);
  cr_assert_eq(d2r_dataset_save(d, path), 0, "%s", d2r_error());
  cr_expect_eq(count_files(), 1, "no temporary file is left");
  d2r_dataset *l = d2r_dataset_load(path);
  cr_assert_not_null(l, "%s", d2r_error());
  cr_expect(same_data(d, l), "every value, bit for bit");
  cr_expect_str_eq(l->env, "reacher");
  cr_expect_str_eq(l->behaviour, d->behaviour);
  cr_expect_eq(l->seed, 21);
  cr_expect_eq(l->obs_dim, 10);
  cr_expect_eq(l->act_dim, 2);
  /* The size follows the documented layout. */
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  cr_expect_eq(size, 68 + 7 + (long)strlen(d->behaviour) +
                     8 * 150 * (2 * 10 + 2 + 4));
  /* Saving again replaces the file atomically. */
  d2r_dataset *small = collect("reacher", 50, D2R_BEHAVIOUR_RANDOM, 1, 2);
  cr_assert_eq(d2r_dataset_save(small, path), 0);
  d2r_dataset *l2 = d2r_dataset_load(path);
  cr_expect(same_data(small, l2));
  cr_expect_eq(count_files(), 1);
  d2r_dataset_free(d);
  d2r_dataset_free(l);
  d2r_dataset_free(small);
  d2r_dataset_free(l2);
}

/* Reads path into a buffer; writes it back with a change. */
static unsigned char *read_all(const char *path, long *size) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)*size);
  cr_assert_eq(fread(buf, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return buf;
}

static void write_all(const char *path, const unsigned char *buf,
                      long size) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(buf, 1, (size_t)size, f), (size_t)size);
  fclose(f);
}

static void expect_refused(const char *path, const char *want) {
  d2r_clear_error();
  d2r_dataset *d = d2r_dataset_load(path);
  cr_expect_null(d, "%s should be refused", path);
  d2r_dataset_free(d);
  expect_msg(want);
  expect_msg(path);
}

Test(env_dataset, corrupted_files_are_refused, .init = make_dir,
     .fini = remove_dir) {
  d2r_dataset *d = collect("pendulum", 20, D2R_BEHAVIOUR_RANDOM, 2, 4);
  char good[128], bad[128];
  snprintf(good, sizeof good, "%s/good.d2rt", dir);
  snprintf(bad, sizeof bad, "%s/bad.d2rt", dir);
  cr_assert_eq(d2r_dataset_save(d, good), 0);
  long size;
  unsigned char *buf = read_all(good, &size);

  write_all(bad, buf, size - 100);
  expect_refused(bad, "truncated: the header declares");
  write_all(bad, buf, 30);
  expect_refused(bad, "fewer than a D2RT header");
  unsigned char *longer = malloc((size_t)size + 8);
  memcpy(longer, buf, (size_t)size);
  memset(longer + size, 0, 8);
  write_all(bad, longer, size + 8);
  expect_refused(bad, "trailing bytes");
  free(longer);

  buf[size / 2] ^= 0x40;  /* one flipped bit in the values */
  write_all(bad, buf, size);
  expect_refused(bad, "checksum mismatch");
  buf[size / 2] ^= 0x40;

  buf[0] = 'X';
  write_all(bad, buf, size);
  expect_refused(bad, "wrong magic");
  buf[0] = 'D';
  buf[4] = 2;
  write_all(bad, buf, size);
  expect_refused(bad, "D2RT version 2");
  buf[4] = 1;
  write_all(bad, buf, size);
  d2r_dataset *ok = d2r_dataset_load(bad);
  cr_expect_not_null(ok, "restored bytes load again: %s", d2r_error());
  d2r_dataset_free(ok);

  expect_refused("/nonexistent/x.d2rt", "cannot open");
  /* A failed save leaves nothing behind. */
  cr_expect_eq(d2r_dataset_save(d, "/nonexistent/dir/x.d2rt"), -1);
  expect_msg("cannot create a temporary file");
  free(buf);
  d2r_dataset_free(d);
}

/* ---- splits and subsets ------------------------------------------------- */

Test(env_dataset, split_by_episode) {
  d2r_dataset *d = collect("pendulum", 10, D2R_BEHAVIOUR_RANDOM, 20, 5);
  d2r_dataset *tr, *va, *te;
  cr_assert_eq(d2r_dataset_split(d, 0.5, 0.2, 0.3, 77, &tr, &va, &te), 0,
               "%s", d2r_error());
  cr_expect_eq(tr->episodes, 10);
  cr_expect_eq(va->episodes, 4);
  cr_expect_eq(te->episodes, 6);
  cr_expect_eq(tr->size + va->size + te->size, d->size);
  int seen[20] = {0};
  d2r_dataset *parts[3] = {tr, va, te};
  for (int p = 0; p < 3; p++) {
    double prev = -1;
    for (int64_t i = 0; i < parts[p]->size; i++) {
      double e = d2r_data(parts[p]->episode)[i];
      cr_expect_geq(e, prev, "episodes keep their order");
      if (e != prev) seen[(int)e]++;
      prev = e;
    }
    cr_expect_str_eq(parts[p]->env, "pendulum");
  }
  for (int e = 0; e < 20; e++)
    cr_expect_eq(seen[e], 1, "episode %d in exactly one part", e);
  d2r_dataset *tr2, *va2, *te2;
  cr_assert_eq(d2r_dataset_split(d, 0.5, 0.2, 0.3, 77, &tr2, &va2, &te2),
               0);
  cr_expect(same_data(tr, tr2) && same_data(te, te2), "seeded");
  d2r_dataset_free(tr2);
  d2r_dataset_free(va2);
  d2r_dataset_free(te2);

  /* A data proportion of 40%: the same 50/20/30 of 8 episodes. */
  d2r_dataset *a, *b, *c;
  cr_assert_eq(d2r_dataset_split(d, 0.2, 0.08, 0.12, 1, &a, &b, &c), 0);
  cr_expect_eq(a->episodes + b->episodes + c->episodes, 8);
  cr_expect_eq(a->episodes, 4);
  d2r_dataset_free(a);
  d2r_dataset_free(b);
  d2r_dataset_free(c);
  /* A zero fraction makes no part. */
  cr_assert_eq(d2r_dataset_split(d, 0.7, 0.0, 0.3, 1, &a, NULL, &c), 0);
  cr_expect_eq(a->episodes, 14);
  d2r_dataset_free(a);
  d2r_dataset_free(c);

  cr_expect_eq(d2r_dataset_split(d, 0.6, 0.3, 0.3, 1, &a, &b, &c), -1);
  expect_msg("sum to 1.2");
  cr_expect_null(a);
  cr_expect_eq(d2r_dataset_split(d, 0.98, 0.01, 0.01, 1, &a, &b, &c), -1);
  expect_msg("too few to give the validation part");

  int64_t ids[2] = {7, 3};
  d2r_dataset *s = d2r_dataset_select(d, 2, ids);
  cr_assert_not_null(s, "%s", d2r_error());
  cr_expect_eq(s->episodes, 2);
  cr_expect_eq(d2r_data(s->episode)[0], 3.0, "kept in d's order");
  d2r_dataset_free(s);
  int64_t missing[1] = {20};
  cr_expect_null(d2r_dataset_select(d, 1, missing));
  expect_msg("no episode 20");
  d2r_dataset_free(tr);
  d2r_dataset_free(va);
  d2r_dataset_free(te);
  d2r_dataset_free(d);
}

/* ---- caller-made columns ------------------------------------------------ */

Test(env_dataset, columns_are_validated) {
  double o[4] = {0, 1, 2, 3}, a[4] = {0, 0, 0, 0}, r[4] = {1, 1, 1, 1};
  double n[4] = {1, 2, 3, 4}, z[4] = {0, 0, 0, 0}, t[4] = {0, 1, 0, 1};
  double ep[4] = {0, 0, 5, 5};
  d2r_tensor *O = d2r_matrix(4, 1, o), *A = d2r_matrix(4, 1, a);
  d2r_tensor *R = d2r_vector(4, r), *N = d2r_matrix(4, 1, n);
  d2r_tensor *Z = d2r_vector(4, z), *T = d2r_vector(4, t);
  d2r_tensor *E = d2r_vector(4, ep);
  d2r_dataset *d = d2r_dataset_new("line", NULL, 1, O, A, R, N, T, Z, E);
  cr_assert_not_null(d, "%s", d2r_error());
  cr_expect_eq(d->episodes, 2);
  cr_expect_str_eq(d->behaviour, "unknown");
  d2r_dataset_free(d);

  double split[4] = {0, 5, 0, 5};
  d2r_tensor *E2 = d2r_vector(4, split);
  cr_expect_null(d2r_dataset_new("line", NULL, 1, O, A, R, N, Z, Z, E2));
  expect_msg("episode 0 are not contiguous");
  double early[4] = {1, 0, 0, 0};
  d2r_tensor *T2 = d2r_vector(4, early);
  cr_expect_null(d2r_dataset_new("line", NULL, 1, O, A, R, N, T2, Z, E));
  expect_msg("row 0 ends episode 0 but the episode goes on");
  double half[4] = {0, 0.5, 0, 0};
  d2r_tensor *T3 = d2r_vector(4, half);
  cr_expect_null(d2r_dataset_new("line", NULL, 1, O, A, R, N, Z, T3, E));
  expect_msg("truncated at row 1 is 0.5");
  d2r_tensor *R2 = d2r_vector(4, (double[]){1, NAN, 1, 1});
  cr_expect_null(d2r_dataset_new("line", NULL, 1, O, A, R2, N, Z, Z, E));
  expect_msg("reward at row 1 is nan");
  d2r_tensor *A2 = d2r_matrix(3, 1, a);
  cr_expect_null(d2r_dataset_new("line", NULL, 1, O, A2, R, N, Z, Z, E));
  expect_msg("column 'act' must be [4, 1], got [3, 1]");
  d2r_tensor *E3 = d2r_vector(4, (double[]){0, 0, -1, -1});
  cr_expect_null(d2r_dataset_new("line", NULL, 1, O, A, R, N, Z, Z, E3));
  expect_msg("episode id at row 2 is -1");
  d2r_tensor *all[] = {O, A, R, N, Z, T, E, E2, T2, T3, R2, A2, E3};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    d2r_release(all[i]);
}

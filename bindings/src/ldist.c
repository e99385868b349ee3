/*
 * Distributions for Lua: the categorical (from logits) and the diagonal
 * Gaussian (mean and log standard deviation) as functions of tensors.
 * Class indices are 0-based values; a Gaussian reduction over the output
 * dimensions is named "none", "mean" or "sum".
 */
#include "lua.h"
#include "lauxlib.h"

#include "d2r/dist.h"
#include "ld2r.h"

static const char *const reductions[] = {"none", "mean", "sum", NULL};

int ld2r_checkreduce(lua_State *L, int arg, const char *def) {
  return luaL_checkoption(L, arg, def, reductions);
}

static int64_t checkdraws(lua_State *L, int arg) {
  lua_Integer g = luaL_optinteger(L, arg, 1);
  luaL_argcheck(L, g >= 1, arg, "draw count must be positive");
  return (int64_t)g;
}

/* d2r.class_indices(t, classes): checked 0-based class indices. */
static int f_class_indices(lua_State *L) {
  d2r_tensor *t = ld2r_checkoperand(L, 1);
  lua_Integer c = luaL_checkinteger(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_class_indices(t, (int64_t)c);
  return ld2r_check(L, *slot, "class_indices");
}

/* ---- categorical ----------------------------------------------------- */

/* d2r.categorical_sample(rng, logits [, draws]): [B, draws]. */
static int f_cat_sample(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  d2r_tensor *logits = ld2r_checktensor(L, 2);
  int64_t g = checkdraws(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_categorical_sample(r, logits, g);
  return ld2r_check(L, *slot, "categorical_sample");
}

/* d2r.categorical_counts(rng, logits [, draws]): [B, C] class counts. */
static int f_cat_counts(lua_State *L) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  d2r_tensor *logits = ld2r_checktensor(L, 2);
  int64_t g = checkdraws(L, 3);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_categorical_counts(r, logits, g);
  return ld2r_check(L, *slot, "categorical_counts");
}

/* d2r.categorical_log_prob(logits, samples): [B, G]. */
static int f_cat_log_prob(lua_State *L) {
  d2r_tensor *logits = ld2r_checktensor(L, 1);
  d2r_tensor *s = ld2r_checkoperand(L, 2);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_categorical_log_prob(logits, s);
  return ld2r_check(L, *slot, "categorical_log_prob");
}

static int f_cat_entropy(lua_State *L) {
  d2r_tensor *logits = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_categorical_entropy(logits);
  return ld2r_check(L, *slot, "categorical_entropy");
}

static int f_cat_probs(lua_State *L) {
  d2r_tensor *logits = ld2r_checktensor(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_categorical_probs(logits);
  return ld2r_check(L, *slot, "categorical_probs");
}

/* ---- diagonal Gaussian ----------------------------------------------- */

typedef d2r_tensor *(*draw_fn)(d2r_rng *, d2r_tensor *, d2r_tensor *,
                               int64_t);

static int gauss_draw(lua_State *L, draw_fn fn, const char *name) {
  d2r_rng *r = ld2r_checkrng(L, 1);
  d2r_tensor *mean = ld2r_checktensor(L, 2);
  d2r_tensor *log_std = ld2r_checkoperand(L, 3);
  int64_t g = checkdraws(L, 4);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = fn(r, mean, log_std, g);
  return ld2r_check(L, *slot, name);
}

/* d2r.gaussian_sample(rng, mean, log_std [, draws]): [B, G, n]. */
static int f_gauss_sample(lua_State *L) {
  return gauss_draw(L, d2r_gaussian_sample, "gaussian_sample");
}

/* d2r.gaussian_rsample(rng, mean, log_std [, draws]): differentiable. */
static int f_gauss_rsample(lua_State *L) {
  return gauss_draw(L, d2r_gaussian_rsample, "gaussian_rsample");
}

/* d2r.gaussian_log_prob(mean, log_std, y [, reduce = "none"]). */
static int f_gauss_log_prob(lua_State *L) {
  d2r_tensor *mean = ld2r_checktensor(L, 1);
  d2r_tensor *log_std = ld2r_checkoperand(L, 2);
  d2r_tensor *y = ld2r_checkoperand(L, 3);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 4, "none");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_gaussian_log_prob(mean, log_std, y, red);
  return ld2r_check(L, *slot, "gaussian_log_prob");
}

/* d2r.gaussian_entropy(log_std [, reduce = "none"]). */
static int f_gauss_entropy(lua_State *L) {
  d2r_tensor *log_std = ld2r_checkoperand(L, 1);
  d2r_reduce red = (d2r_reduce)ld2r_checkreduce(L, 2, "none");
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_gaussian_entropy(log_std, red);
  return ld2r_check(L, *slot, "gaussian_entropy");
}

static const luaL_Reg functions[] = {
  {"class_indices", f_class_indices},
  {"categorical_sample", f_cat_sample},
  {"categorical_counts", f_cat_counts},
  {"categorical_log_prob", f_cat_log_prob},
  {"categorical_entropy", f_cat_entropy},
  {"categorical_probs", f_cat_probs},
  {"gaussian_sample", f_gauss_sample},
  {"gaussian_rsample", f_gauss_rsample},
  {"gaussian_log_prob", f_gauss_log_prob},
  {"gaussian_entropy", f_gauss_entropy},
  {NULL, NULL}
};

/* With the module table at the top: adds the functions. */
int ld2r_open_dist(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  return 0;
}

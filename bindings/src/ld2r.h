/*
 * Declarations shared by the files of the d2r Lua binding: type names,
 * checkers and the helpers that turn engine failures into Lua errors.
 */
#ifndef LD2R_H
#define LD2R_H

#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#include "d2r/tensor.h"

#ifndef D2R_VERSION
#define D2R_VERSION "0.1.0"
#endif

#define LD2R_TENSOR "d2r.Tensor"
#define LD2R_RNG "d2r.Rng"
#define LD2R_MODEL "d2r.Model"
#define LD2R_OPTIM "d2r.Optim"

/* ---- ltensor.c ------------------------------------------------------- */

/* Pushes a new, empty Tensor userdata and returns its slot: fill the slot
 * right away with the engine's result, then check it with ld2r_check. */
d2r_tensor **ld2r_newtensor(lua_State *L);
/* Runs a full collection when the engine holds more than the threshold
 * of ltensor.c; called before making a userdata that holds tensors. */
void ld2r_gc_pressure(lua_State *L);
/* Raises "<fn>: <engine message>" (d2r_error(); fn is left out when the
 * message already starts with it). */
int ld2r_fail(lua_State *L, const char *fn);
/* Raises as ld2r_fail when t is NULL; otherwise returns 1. */
int ld2r_check(lua_State *L, const d2r_tensor *t, const char *fn);
/* Raises as ld2r_fail when status is negative. */
void ld2r_checkstatus(lua_State *L, int status, const char *fn);

d2r_tensor *ld2r_checktensor(lua_State *L, int arg);
d2r_tensor *ld2r_testtensor(lua_State *L, int arg);
/* A tensor, a number (a 0-d tensor) or a nested table of numbers at arg;
 * the converted value replaces the argument on the stack. */
d2r_tensor *ld2r_checkoperand(lua_State *L, int arg);

/* Pushes an array (a userdata, kept alive by the sequence at arg) of the
 * tensors in the sequence at arg; returns it and sets *n (>= 1).  A
 * caller with optional arguments sets the stack top to its argument
 * count first, so that the array lands above them. */
d2r_tensor **ld2r_checktensorlist(lua_State *L, int arg, int *n);
/* Pushes a sequence holding new references to ts[0..n). */
void ld2r_pushtensorlist(lua_State *L, int n, d2r_tensor *const *ts);

/* Reads a shape given as a table at arg, or as integers from arg to the
 * top of the stack; returns the number of dimensions. */
int ld2r_checkshape(lua_State *L, int arg, int64_t *shape, int allow_neg);
/* A 1-based axis (negative counts from the end) as a 0-based one, for a
 * tensor of ndim dimensions. */
int ld2r_checkaxis(lua_State *L, int arg, int ndim);
/* Pushes a shape as a Lua sequence. */
void ld2r_pushshape(lua_State *L, int ndim, const int64_t *shape);

int ld2r_open_tensor(lua_State *L);   /* module table at the top */

/* ---- lindex.c, lops.c, lautograd.c ------------------------------------ */

void ld2r_tensor_index_meta(lua_State *L);
int ld2r_open_ops(lua_State *L);
int ld2r_open_views(lua_State *L);
int ld2r_open_autograd(lua_State *L);

/* ---- lopts.c: fields of option tables (arg may be absent) ------------ */

double ld2r_optnumber(lua_State *L, int arg, const char *key, double def);
lua_Integer ld2r_optint(lua_State *L, int arg, const char *key,
                        lua_Integer def);
int ld2r_optbool(lua_State *L, int arg, const char *key, int def);
/* The index in names (NULL-terminated) of a string option. */
int ld2r_optchoice(lua_State *L, int arg, const char *key, int def,
                   const char *const names[]);
/* Raises on a field that is not in known (NULL-terminated). */
void ld2r_checkfields(lua_State *L, int arg, const char *const known[]);

/* ---- lrng.c ---------------------------------------------------------- */

struct d2r_rng *ld2r_checkrng(lua_State *L, int arg);
int ld2r_open_rng(lua_State *L);

/* ---- ldata.c --------------------------------------------------------- */

int ld2r_open_data(lua_State *L);

/* ---- lnn.c, loptim.c, ldist.c, lobjective.c ------------------------- */

struct d2r_model *ld2r_checkmodel(lua_State *L, int arg);
/* A model's parameters or a list of tensors at arg, as an array pushed
 * like ld2r_checktensorlist's. */
d2r_tensor **ld2r_checkparams(lua_State *L, int arg, int *n);
int ld2r_open_nn(lua_State *L);
int ld2r_open_optim(lua_State *L);
int ld2r_open_dist(lua_State *L);
/* A reduction over output dimensions: "none", "mean" or "sum", as the
 * index of the d2r_reduce value. */
int ld2r_checkreduce(lua_State *L, int arg, const char *def);
int ld2r_open_objective(lua_State *L);

/* ---- lbilevel.c ------------------------------------------------------- */

int ld2r_open_bilevel(lua_State *L);

/* ---- lstore.c, lpool.c, lmpi.c, lstats.c: the experiment runner ---- */

int ld2r_open_store(lua_State *L);
int ld2r_open_pool(lua_State *L);
int ld2r_open_mpi(lua_State *L);
int ld2r_open_statfns(lua_State *L);
int ld2r_open_repl(lua_State *L);        /* lrepl.c: d2r.time */
int ld2r_open_policy(lua_State *L);      /* lpolicy.c */
int ld2r_open_env(lua_State *L);         /* lenv.c */
int ld2r_open_checkpoint(lua_State *L);  /* lcheckpoint.c */

/* ---- ld2r.c ---------------------------------------------------------- */

int luaopen_d2r(lua_State *L);

#endif

/*
 * Optimisers for Lua: d2r.Optim (SGD, Adam, AdamW over a model or a
 * list of tensors), gradient clipping, and the d2r.Plateau schedule and
 * d2r.EarlyStop types.  Parameter and buffer numbers are 1-based.
 */
#include "lua.h"
#include "lauxlib.h"

#include "d2r/optim.h"
#include "ld2r.h"

#define PLATEAU "d2r.Plateau"
#define EARLY_STOP "d2r.EarlyStop"

/* A full userdata holding one pointer, with its metatable set. */
static void **newbox(lua_State *L, const char *tname) {
  void **box = lua_newuserdatauv(L, sizeof(*box), 0);
  *box = NULL;
  luaL_setmetatable(L, tname);
  return box;
}

static void *checkbox(lua_State *L, int arg, const char *tname) {
  void **box = luaL_checkudata(L, arg, tname);
  if (*box == NULL)
    luaL_argerror(L, arg, "object has been closed");
  return *box;
}

static d2r_optim *checkoptim(lua_State *L, int arg) {
  return checkbox(L, arg, LD2R_OPTIM);
}

/* ---- constructors ---------------------------------------------------- */

static const char *const sgd_fields[] = {
  "lr", "momentum", "dampening", "weight_decay", "nesterov", NULL
};

/* d2r.sgd(params, lr) or d2r.sgd(params, {lr =, momentum =, dampening =,
 * weight_decay =, nesterov =}). */
static int f_sgd(lua_State *L) {
  lua_settop(L, 2);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  d2r_sgd_config c;
  void **box;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    c = d2r_sgd_defaults(lua_tonumber(L, 2));
  } else {
    luaL_checktype(L, 2, LUA_TTABLE);
    ld2r_checkfields(L, 2, sgd_fields);
    if (lua_getfield(L, 2, "lr") == LUA_TNIL)
      luaL_argerror(L, 2, "option 'lr' is required");
    lua_pop(L, 1);
    c = d2r_sgd_defaults(ld2r_optnumber(L, 2, "lr", 0));
    c.momentum = ld2r_optnumber(L, 2, "momentum", c.momentum);
    c.dampening = ld2r_optnumber(L, 2, "dampening", c.dampening);
    c.weight_decay = ld2r_optnumber(L, 2, "weight_decay", c.weight_decay);
    c.nesterov = ld2r_optbool(L, 2, "nesterov", c.nesterov);
  }
  box = newbox(L, LD2R_OPTIM);
  *box = d2r_sgd_new(n, ps, &c);
  return *box ? 1 : ld2r_fail(L, "sgd");
}

static const char *const adam_fields[] = {
  "lr", "beta1", "beta2", "betas", "eps", "weight_decay", NULL
};

static void read_betas(lua_State *L, int arg, d2r_adam_config *c) {
  if (lua_getfield(L, arg, "betas") != LUA_TNIL) {
    int b = lua_gettop(L);
    luaL_argcheck(L, lua_istable(L, b), arg, "betas must be {b1, b2}");
    lua_rawgeti(L, b, 1);
    lua_rawgeti(L, b, 2);
    luaL_argcheck(L, lua_isnumber(L, -2) && lua_isnumber(L, -1), arg,
                  "betas must be {b1, b2}");
    c->beta1 = lua_tonumber(L, -2);
    c->beta2 = lua_tonumber(L, -1);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
  c->beta1 = ld2r_optnumber(L, arg, "beta1", c->beta1);
  c->beta2 = ld2r_optnumber(L, arg, "beta2", c->beta2);
}

static int adam_at(lua_State *L, int decoupled) {
  lua_settop(L, 2);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  d2r_adam_config c = decoupled ? d2r_adamw_defaults()
                                : d2r_adam_defaults();
  void **box;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    c.lr = lua_tonumber(L, 2);
  } else if (!lua_isnoneornil(L, 2)) {
    ld2r_checkfields(L, 2, adam_fields);
    c.lr = ld2r_optnumber(L, 2, "lr", c.lr);
    read_betas(L, 2, &c);
    c.eps = ld2r_optnumber(L, 2, "eps", c.eps);
    c.weight_decay = ld2r_optnumber(L, 2, "weight_decay", c.weight_decay);
  }
  box = newbox(L, LD2R_OPTIM);
  *box = d2r_adam_new(n, ps, &c);
  return *box ? 1 : ld2r_fail(L, decoupled ? "adamw" : "adam");
}

/* d2r.adam(params [, lr | {lr =, betas = {b1, b2}, eps =,
 * weight_decay =}]): PyTorch's defaults. */
static int f_adam(lua_State *L) {
  return adam_at(L, 0);
}

/* d2r.adamw(params [, options]): Adam with decoupled weight decay. */
static int f_adamw(lua_State *L) {
  return adam_at(L, 1);
}

/* ---- optimiser methods ----------------------------------------------- */

static int o_gc(lua_State *L) {
  void **box = luaL_checkudata(L, 1, LD2R_OPTIM);
  d2r_optim_free(*box);
  *box = NULL;
  return 0;
}

static int o_step(lua_State *L) {
  ld2r_checkstatus(L, d2r_optim_step(checkoptim(L, 1)), "step");
  return 0;
}

static int o_zero_grad(lua_State *L) {
  d2r_optim_zero_grad(checkoptim(L, 1));
  return 0;
}

/* o:lr() gives the learning rate; o:lr(v) sets it. */
static int o_lr(lua_State *L) {
  d2r_optim *o = checkoptim(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_pushnumber(L, d2r_optim_lr(o));
    return 1;
  }
  ld2r_checkstatus(L, d2r_optim_set_lr(o, luaL_checknumber(L, 2)), "lr");
  return 0;
}

static int o_name(lua_State *L) {
  lua_pushstring(L, d2r_optim_name(checkoptim(L, 1)));
  return 1;
}

static int o_params(lua_State *L) {
  d2r_optim *o = checkoptim(L, 1);
  ld2r_pushtensorlist(L, d2r_optim_nparams(o), d2r_optim_params(o));
  return 1;
}

static int o_nbuffers(lua_State *L) {
  lua_pushinteger(L, d2r_optim_nbuffers(checkoptim(L, 1)));
  return 1;
}

static int checkparam(lua_State *L, int arg, d2r_optim *o) {
  lua_Integer i = luaL_checkinteger(L, arg);
  luaL_argcheck(L, i >= 1 && i <= d2r_optim_nparams(o), arg,
                "parameter number out of range");
  return (int)(i - 1);
}

/* o:steps(i): the steps taken by parameter i. */
static int o_steps(lua_State *L) {
  d2r_optim *o = checkoptim(L, 1);
  lua_pushinteger(L, (lua_Integer)d2r_optim_param_steps(o,
                  checkparam(L, 2, o)));
  return 1;
}

/* o:buffer(i, k): buffer k of parameter i (shares the state's values). */
static int o_buffer(lua_State *L) {
  d2r_optim *o = checkoptim(L, 1);
  int i = checkparam(L, 2, o);
  lua_Integer k = luaL_checkinteger(L, 3);
  d2r_tensor **slot;
  luaL_argcheck(L, k >= 1 && k <= d2r_optim_nbuffers(o), 3,
                "buffer number out of range");
  slot = ld2r_newtensor(L);
  *slot = d2r_retain(d2r_optim_buffer(o, i, (int)k - 1));
  return ld2r_check(L, *slot, "buffer");
}

static int o_state(lua_State *L) {
  d2r_optim *o = checkoptim(L, 1);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_optim_state_flat(o);
  return ld2r_check(L, *slot, "state");
}

static int o_set_state(lua_State *L) {
  d2r_optim *o = checkoptim(L, 1);
  d2r_tensor *s = ld2r_checktensor(L, 2);
  ld2r_checkstatus(L, d2r_optim_set_state_flat(o, s), "set_state");
  return 0;
}

static int o_tostring(lua_State *L) {
  void **box = luaL_checkudata(L, 1, LD2R_OPTIM);
  if (*box == NULL)
    lua_pushliteral(L, "d2r.Optim(closed)");
  else
    lua_pushfstring(L, "d2r.Optim(%s, lr=%f, %d parameters)",
                    d2r_optim_name(*box), d2r_optim_lr(*box),
                    d2r_optim_nparams(*box));
  return 1;
}

static int s_tostring(lua_State *L) {
  void **box = luaL_checkudata(L, 1, PLATEAU);
  if (*box == NULL)
    lua_pushliteral(L, "d2r.Plateau(closed)");
  else
    lua_pushfstring(L, "d2r.Plateau(%I epochs, best=%f, bad_epochs=%d)",
                    (lua_Integer)d2r_plateau_epochs(*box),
                    d2r_plateau_best(*box), d2r_plateau_bad_epochs(*box));
  return 1;
}

static int e_tostring(lua_State *L) {
  void **box = luaL_checkudata(L, 1, EARLY_STOP);
  if (*box == NULL)
    lua_pushliteral(L, "d2r.EarlyStop(closed)");
  else
    lua_pushfstring(L, "d2r.EarlyStop(best=%f at epoch %I, wait=%d%s)",
                    d2r_early_stop_best(*box),
                    (lua_Integer)d2r_early_stop_best_epoch(*box),
                    d2r_early_stop_wait(*box),
                    d2r_early_stop_should_stop(*box) ? ", stop" : "");
  return 1;
}

/* ---- gradient utilities ---------------------------------------------- */

/* d2r.clip_grad_norm(params, max_norm): the norm before clipping. */
static int f_clip_grad_norm(lua_State *L) {
  lua_settop(L, 2);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  double norm = d2r_clip_grad_norm(n, ps, luaL_checknumber(L, 2));
  if (norm < 0)
    return ld2r_fail(L, "clip_grad_norm");
  lua_pushnumber(L, norm);
  return 1;
}

static int f_clip_grad_value(lua_State *L) {
  lua_settop(L, 2);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  ld2r_checkstatus(L, d2r_clip_grad_value(n, ps, luaL_checknumber(L, 2)),
                   "clip_grad_value");
  return 0;
}

static int f_grad_norm(lua_State *L) {
  lua_settop(L, 1);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  lua_pushnumber(L, d2r_grad_norm(n, ps));
  return 1;
}

static int f_grads_nonfinite(lua_State *L) {
  lua_settop(L, 1);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 1, &n);
  lua_pushinteger(L, (lua_Integer)d2r_grads_nonfinite(n, ps));
  return 1;
}

/* ---- reduce on plateau ----------------------------------------------- */

static const char *const modes[] = {"min", "max", NULL};

static const char *const plateau_fields[] = {
  "mode", "factor", "patience", "threshold", "cooldown", "min_lr", "eps",
  NULL
};

/* d2r.plateau([{mode =, factor =, patience =, threshold =, cooldown =,
 * min_lr =, eps =}]): PyTorch's ReduceLROnPlateau defaults. */
static int f_plateau(lua_State *L) {
  d2r_plateau_config c = d2r_plateau_defaults();
  void **box;
  ld2r_checkfields(L, 1, plateau_fields);
  c.maximize = ld2r_optchoice(L, 1, "mode", 0, modes) == 1;
  c.factor = ld2r_optnumber(L, 1, "factor", c.factor);
  c.patience = (int)ld2r_optint(L, 1, "patience", c.patience);
  c.threshold = ld2r_optnumber(L, 1, "threshold", c.threshold);
  c.cooldown = (int)ld2r_optint(L, 1, "cooldown", c.cooldown);
  c.min_lr = ld2r_optnumber(L, 1, "min_lr", c.min_lr);
  c.eps = ld2r_optnumber(L, 1, "eps", c.eps);
  box = newbox(L, PLATEAU);
  *box = d2r_plateau_new(&c);
  return *box ? 1 : ld2r_fail(L, "plateau");
}

static int s_gc(lua_State *L) {
  void **box = luaL_checkudata(L, 1, PLATEAU);
  d2r_plateau_free(*box);
  *box = NULL;
  return 0;
}

/* s:step(optim, metric): true when it lowered the learning rate. */
static int s_step(lua_State *L) {
  d2r_plateau *s = checkbox(L, 1, PLATEAU);
  d2r_optim *o = checkoptim(L, 2);
  int r = d2r_plateau_step(s, o, luaL_checknumber(L, 3));
  ld2r_checkstatus(L, r, "step");
  lua_pushboolean(L, r == 1);
  return 1;
}

static int s_best(lua_State *L) {
  lua_pushnumber(L, d2r_plateau_best(checkbox(L, 1, PLATEAU)));
  return 1;
}

static int s_bad_epochs(lua_State *L) {
  lua_pushinteger(L, d2r_plateau_bad_epochs(checkbox(L, 1, PLATEAU)));
  return 1;
}

static int s_cooldown_left(lua_State *L) {
  lua_pushinteger(L, d2r_plateau_cooldown_left(checkbox(L, 1, PLATEAU)));
  return 1;
}

static int s_epochs(lua_State *L) {
  d2r_plateau *s = checkbox(L, 1, PLATEAU);
  lua_pushinteger(L, (lua_Integer)d2r_plateau_epochs(s));
  return 1;
}

/* ---- early stopping -------------------------------------------------- */

static const char *const stop_fields[] = {
  "mode", "patience", "min_delta", "keep_best", NULL
};

/* d2r.early_stop([{mode =, patience = 10, min_delta = 0,
 * keep_best = false}]). */
static int f_early_stop(lua_State *L) {
  d2r_early_stop_config c;
  void **box;
  ld2r_checkfields(L, 1, stop_fields);
  c.maximize = ld2r_optchoice(L, 1, "mode", 0, modes) == 1;
  c.patience = (int)ld2r_optint(L, 1, "patience", 10);
  c.min_delta = ld2r_optnumber(L, 1, "min_delta", 0);
  c.keep_best = ld2r_optbool(L, 1, "keep_best", 0);
  box = newbox(L, EARLY_STOP);
  *box = d2r_early_stop_new(&c);
  return *box ? 1 : ld2r_fail(L, "early_stop");
}

static int e_gc(lua_State *L) {
  void **box = luaL_checkudata(L, 1, EARLY_STOP);
  d2r_early_stop_free(*box);
  *box = NULL;
  return 0;
}

/* e:update(value, epoch [, params]): true when training should stop. */
static int e_update(lua_State *L) {
  lua_settop(L, 4);
  d2r_early_stop *e = checkbox(L, 1, EARLY_STOP);
  double v = luaL_checknumber(L, 2);
  lua_Integer epoch = luaL_checkinteger(L, 3);
  int n = 0, r;
  d2r_tensor **ps = NULL;
  if (!lua_isnoneornil(L, 4))
    ps = ld2r_checkparams(L, 4, &n);
  r = d2r_early_stop_update(e, v, (int64_t)epoch, n, ps);
  ld2r_checkstatus(L, r, "update");
  lua_pushboolean(L, r == 1);
  return 1;
}

static int e_should_stop(lua_State *L) {
  d2r_early_stop *e = checkbox(L, 1, EARLY_STOP);
  lua_pushboolean(L, d2r_early_stop_should_stop(e));
  return 1;
}

/* e:best(): the best value and its epoch. */
static int e_best(lua_State *L) {
  d2r_early_stop *e = checkbox(L, 1, EARLY_STOP);
  lua_pushnumber(L, d2r_early_stop_best(e));
  lua_pushinteger(L, (lua_Integer)d2r_early_stop_best_epoch(e));
  return 2;
}

static int e_wait(lua_State *L) {
  lua_pushinteger(L, d2r_early_stop_wait(checkbox(L, 1, EARLY_STOP)));
  return 1;
}

/* e:best_params(): the stored flat vector, or nil. */
static int e_best_params(lua_State *L) {
  d2r_early_stop *e = checkbox(L, 1, EARLY_STOP);
  d2r_tensor **slot = ld2r_newtensor(L);
  *slot = d2r_retain(d2r_early_stop_best_params(e));
  if (*slot == NULL)
    lua_pushnil(L);
  return 1;
}

static int e_restore(lua_State *L) {
  lua_settop(L, 2);
  d2r_early_stop *e = checkbox(L, 1, EARLY_STOP);
  int n;
  d2r_tensor **ps = ld2r_checkparams(L, 2, &n);
  ld2r_checkstatus(L, d2r_early_stop_restore(e, n, ps), "restore");
  return 0;
}

/* ---- registration ---------------------------------------------------- */

static const luaL_Reg optim_methods[] = {
  {"step", o_step}, {"zero_grad", o_zero_grad}, {"lr", o_lr},
  {"name", o_name}, {"params", o_params}, {"nbuffers", o_nbuffers},
  {"steps", o_steps}, {"buffer", o_buffer}, {"state", o_state},
  {"set_state", o_set_state}, {"close", o_gc},
  {NULL, NULL}
};

static const luaL_Reg plateau_methods[] = {
  {"step", s_step}, {"best", s_best}, {"bad_epochs", s_bad_epochs},
  {"cooldown_left", s_cooldown_left}, {"epochs", s_epochs},
  {"close", s_gc},
  {NULL, NULL}
};

static const luaL_Reg stop_methods[] = {
  {"update", e_update}, {"should_stop", e_should_stop}, {"best", e_best},
  {"wait", e_wait}, {"best_params", e_best_params},
  {"restore", e_restore}, {"close", e_gc},
  {NULL, NULL}
};

static const luaL_Reg functions[] = {
  {"sgd", f_sgd}, {"adam", f_adam}, {"adamw", f_adamw},
  {"clip_grad_norm", f_clip_grad_norm},
  {"clip_grad_value", f_clip_grad_value}, {"grad_norm", f_grad_norm},
  {"grads_nonfinite", f_grads_nonfinite}, {"plateau", f_plateau},
  {"early_stop", f_early_stop},
  {NULL, NULL}
};

static void newtype(lua_State *L, const char *name, lua_CFunction gc,
                    const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
}

/* With the module table at the top: registers the types and functions. */
int ld2r_open_optim(lua_State *L) {
  newtype(L, LD2R_OPTIM, o_gc, optim_methods);
  lua_pushcfunction(L, o_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  newtype(L, PLATEAU, s_gc, plateau_methods);
  lua_pushcfunction(L, s_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  newtype(L, EARLY_STOP, e_gc, stop_methods);
  lua_pushcfunction(L, e_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
  return 0;
}

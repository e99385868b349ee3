/*
 * The built-in environments (env.h): Pendulum, MountainCarContinuous,
 * CartPole with a continuous force and Acrobot with a continuous torque,
 * written from the equations and constants Gymnasium documents for
 * Pendulum-v1, MountainCarContinuous-v0, CartPole-v1 and Acrobot-v1, and
 * a planar two-link Reacher whose dynamics are d2r's own (the manipulator
 * equation of two uniform rods).
 *
 * Each is a `physics`: a state vector, named constants with their
 * standard values, and pure functions (initial state, one transition,
 * reward, observation and its inverse).  One generic implementation turns
 * a physics into an environment, so step and the batched predict run the
 * same code and cannot disagree.  Every observation determines its state,
 * which is what lets predict start from observations.
 */
#include "d2r/env.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "d2r/rng.h"

#define MAXS 8       /* largest state */
#define MAXC 16      /* most constants */
#define PI 3.14159265358979323846

/* ---- physics descriptions ----------------------------------------------- */

enum { REAL = 0, POSITIVE = 1, NONNEG = 2, COUNT = 3 };

typedef struct constant {
  const char *key;
  double value;
  int kind;           /* REAL, POSITIVE, NONNEG, or COUNT (integer >= 1) */
  const char *meaning;
} constant;

typedef struct physics {
  const char *name;
  int state_dim, obs_dim, act_dim, nconst;
  const constant *consts;   /* the last one is max_steps */
  /* Extra checks of the constants beyond their kinds; 0 or -1. */
  int (*check)(const double *c);
  void (*bounds)(const double *c, double *olo, double *ohi, double *alo,
                 double *ahi);
  void (*init)(const double *c, d2r_rng *rng, double *s);
  void (*advance)(const double *c, const double *s, const double *a,
                  double *s2);
  void (*reward)(const double *c, const double *s, const double *a,
                 const double *s2, double *r, bool *term);
  void (*observe)(const double *c, const double *s, double *obs);
  void (*unobserve)(const double *c, const double *obs, double *s);
} physics;

static double clampd(double x, double lo, double hi) {
  return x < lo ? lo : x > hi ? hi : x;
}

/* ---- Pendulum-v1 -------------------------------------------------------- */

/*
 * A uniform rod of mass m and length l hinged at one end, angle th from
 * upright.  Gravity's torque m g (l/2) sin th over the rod's moment of
 * inertia about the hinge, m l^2 / 3, plus the applied torque u gives
 *   thdd = 3 g / (2 l) sin th + 3 u / (m l^2),
 * integrated by semi-implicit (symplectic) Euler: the velocity first,
 * clipped to [-max_speed, max_speed], then the angle with the new
 * velocity.  The cost is angle_normalize(th)^2 + 0.1 thd^2 + 0.001 u^2 of
 * the state before the step; the reward is its negative.
 */
enum { P_MAX_SPEED, P_MAX_TORQUE, P_DT, P_G, P_M, P_L, P_STEPS, P_N };

static const constant pendulum_consts[P_N] = {
  {"max_speed", 8.0, POSITIVE, "clip on the angular velocity (rad/s)"},
  {"max_torque", 2.0, POSITIVE, "action bound (N m)"},
  {"dt", 0.05, POSITIVE, "time step (s)"},
  {"g", 10.0, NONNEG, "gravity (m/s^2)"},
  {"m", 1.0, POSITIVE, "mass (kg)"},
  {"l", 1.0, POSITIVE, "length (m)"},
  {"max_steps", 200, COUNT, "episode limit"},
};

static double angle_normalize(double x) {
  double y = fmod(x + PI, 2.0 * PI);
  if (y < 0) y += 2.0 * PI;
  return y - PI;
}

static void pendulum_bounds(const double *c, double *olo, double *ohi,
                            double *alo, double *ahi) {
  olo[0] = olo[1] = -1.0;
  ohi[0] = ohi[1] = 1.0;
  olo[2] = -c[P_MAX_SPEED];
  ohi[2] = c[P_MAX_SPEED];
  alo[0] = -c[P_MAX_TORQUE];
  ahi[0] = c[P_MAX_TORQUE];
}

static void pendulum_init(const double *c, d2r_rng *rng, double *s) {
  (void)c;
  s[0] = -PI + 2.0 * PI * d2r_rng_uniform(rng);
  s[1] = -1.0 + 2.0 * d2r_rng_uniform(rng);
}

static void pendulum_advance(const double *c, const double *s,
                             const double *a, double *s2) {
  double g = c[P_G], m = c[P_M], l = c[P_L], dt = c[P_DT];
  double thdot = s[1] + (3.0 * g / (2.0 * l) * sin(s[0]) +
                         3.0 / (m * l * l) * a[0]) * dt;
  thdot = clampd(thdot, -c[P_MAX_SPEED], c[P_MAX_SPEED]);
  s2[0] = s[0] + thdot * dt;
  s2[1] = thdot;
}

static void pendulum_reward(const double *c, const double *s,
                            const double *a, const double *s2, double *r,
                            bool *term) {
  (void)c;
  (void)s2;
  double th = angle_normalize(s[0]);
  *r = -(th * th + 0.1 * s[1] * s[1] + 0.001 * a[0] * a[0]);
  *term = false;
}

static void pendulum_observe(const double *c, const double *s,
                             double *obs) {
  (void)c;
  obs[0] = cos(s[0]);
  obs[1] = sin(s[0]);
  obs[2] = s[1];
}

static void pendulum_unobserve(const double *c, const double *obs,
                               double *s) {
  (void)c;
  s[0] = atan2(obs[1], obs[0]);
  s[1] = obs[2];
}

static const physics pendulum = {
  "pendulum", 2, 3, 1, P_N, pendulum_consts, NULL, pendulum_bounds,
  pendulum_init, pendulum_advance, pendulum_reward, pendulum_observe,
  pendulum_unobserve
};

/* ---- MountainCarContinuous-v0 ------------------------------------------- */

/*
 * A car on the curve y = sin(3 x)/3 (Moore's mountain car): per step
 *   v <- clip(v + a power - gravity cos(3 x), -max_speed, max_speed),
 *   x <- clip(x + v, min_position, max_position),
 * and the velocity is zeroed when the car rests against the left wall.
 * The episode terminates once x >= goal_position and v >= goal_velocity;
 * the reward is 100 on that step, minus 0.1 a^2 on every step.
 */
enum { M_MIN_POS, M_MAX_POS, M_MAX_SPEED, M_GOAL_POS, M_GOAL_VEL,
       M_POWER, M_GRAVITY, M_STEPS, M_N };

static const constant car_consts[M_N] = {
  {"min_position", -1.2, REAL, "left wall"},
  {"max_position", 0.6, REAL, "right wall"},
  {"max_speed", 0.07, POSITIVE, "clip on the velocity"},
  {"goal_position", 0.45, REAL, "goal on the right hill"},
  {"goal_velocity", 0.0, REAL, "least velocity at the goal"},
  {"power", 0.0015, POSITIVE, "force per unit action"},
  {"gravity", 0.0025, NONNEG, "coefficient of the slope term cos(3x)"},
  {"max_steps", 999, COUNT, "episode limit"},
};

static int car_check(const double *c) {
  if (!(c[M_MIN_POS] < c[M_MAX_POS])) {
    d2r_fail("env 'mountain_car': min_position %g must be below "
             "max_position %g", c[M_MIN_POS], c[M_MAX_POS]);
    return -1;
  }
  return 0;
}

static void car_bounds(const double *c, double *olo, double *ohi,
                       double *alo, double *ahi) {
  olo[0] = c[M_MIN_POS];
  ohi[0] = c[M_MAX_POS];
  olo[1] = -c[M_MAX_SPEED];
  ohi[1] = c[M_MAX_SPEED];
  alo[0] = -1.0;
  ahi[0] = 1.0;
}

static void car_init(const double *c, d2r_rng *rng, double *s) {
  (void)c;
  s[0] = -0.6 + 0.2 * d2r_rng_uniform(rng);
  s[1] = 0.0;
}

static void car_advance(const double *c, const double *s, const double *a,
                        double *s2) {
  double x = s[0], v = s[1];
  v += a[0] * c[M_POWER] - c[M_GRAVITY] * cos(3.0 * x);
  v = clampd(v, -c[M_MAX_SPEED], c[M_MAX_SPEED]);
  x = clampd(x + v, c[M_MIN_POS], c[M_MAX_POS]);
  if (x == c[M_MIN_POS] && v < 0) v = 0.0;
  s2[0] = x;
  s2[1] = v;
}

static void car_reward(const double *c, const double *s, const double *a,
                       const double *s2, double *r, bool *term) {
  (void)s;
  *term = s2[0] >= c[M_GOAL_POS] && s2[1] >= c[M_GOAL_VEL];
  *r = (*term ? 100.0 : 0.0) - 0.1 * a[0] * a[0];
}

static void copy_state(const double *c, const double *from, double *to) {
  (void)c;
  to[0] = from[0];
  to[1] = from[1];
}

static void copy4(const double *c, const double *from, double *to) {
  (void)c;
  memcpy(to, from, 4 * sizeof(double));
}

static const physics mountain_car = {
  "mountain_car", 2, 2, 1, M_N, car_consts, car_check, car_bounds,
  car_init, car_advance, car_reward, copy_state, copy_state
};

/* ---- CartPole-v1, continuous force -------------------------------------- */

/*
 * A pole hinged on a cart (Barto, Sutton and Anderson 1983, with the
 * corrected equations of Florian 2007, frictionless).  With F the force,
 * M = masscart + masspole, half-length l and pml = masspole l:
 *   temp = (F + pml thd^2 sin th) / M
 *   thdd = (g sin th - cos th temp) / (l (4/3 - masspole cos^2 th / M))
 *   xdd  = temp - pml thdd cos th / M
 * advanced by explicit Euler over tau (positions with the old velocities).
 * Here F = force_mag a for a in [-1, 1] (CartPole-v1 applies +/-force_mag).
 * The episode terminates when |x| > x_threshold or |th| >
 * theta_threshold; every step, the terminating one included, earns 1.
 */
enum { C_GRAVITY, C_MASSCART, C_MASSPOLE, C_LENGTH, C_FORCE, C_TAU,
       C_THETA_T, C_X_T, C_STEPS, C_N };

static const constant cartpole_consts[C_N] = {
  {"gravity", 9.8, NONNEG, "(m/s^2)"},
  {"masscart", 1.0, POSITIVE, "(kg)"},
  {"masspole", 0.1, POSITIVE, "(kg)"},
  {"length", 0.5, POSITIVE, "half the pole's length (m)"},
  {"force_mag", 10.0, POSITIVE, "force at |a| = 1 (N)"},
  {"tau", 0.02, POSITIVE, "time step (s)"},
  {"theta_threshold", 12.0 * 2.0 * PI / 360.0, POSITIVE,
   "pole angle that ends the episode (rad)"},
  {"x_threshold", 2.4, POSITIVE, "cart position that ends it (m)"},
  {"max_steps", 500, COUNT, "episode limit"},
};

static void cartpole_bounds(const double *c, double *olo, double *ohi,
                            double *alo, double *ahi) {
  double hi[4] = {2.0 * c[C_X_T], INFINITY, 2.0 * c[C_THETA_T], INFINITY};
  for (int i = 0; i < 4; i++) {
    ohi[i] = hi[i];
    olo[i] = -hi[i];
  }
  alo[0] = -1.0;
  ahi[0] = 1.0;
}

static void uniform_state(d2r_rng *rng, int n, double half, double *s) {
  for (int i = 0; i < n; i++)
    s[i] = -half + 2.0 * half * d2r_rng_uniform(rng);
}

static void cartpole_init(const double *c, d2r_rng *rng, double *s) {
  (void)c;
  uniform_state(rng, 4, 0.05, s);
}

static void cartpole_advance(const double *c, const double *s,
                             const double *a, double *s2) {
  double x = s[0], xd = s[1], th = s[2], thd = s[3];
  double mp = c[C_MASSPOLE], mt = c[C_MASSCART] + mp, l = c[C_LENGTH];
  double pml = mp * l, force = c[C_FORCE] * a[0];
  double ct = cos(th), st = sin(th), tau = c[C_TAU];
  double temp = (force + pml * thd * thd * st) / mt;
  double thacc = (c[C_GRAVITY] * st - ct * temp) /
                 (l * (4.0 / 3.0 - mp * ct * ct / mt));
  double xacc = temp - pml * thacc * ct / mt;
  s2[0] = x + tau * xd;
  s2[1] = xd + tau * xacc;
  s2[2] = th + tau * thd;
  s2[3] = thd + tau * thacc;
}

static void cartpole_reward(const double *c, const double *s,
                            const double *a, const double *s2, double *r,
                            bool *term) {
  (void)s;
  (void)a;
  *term = s2[0] < -c[C_X_T] || s2[0] > c[C_X_T] ||
          s2[2] < -c[C_THETA_T] || s2[2] > c[C_THETA_T];
  *r = 1.0;
}

static const physics cartpole = {
  "cartpole", 4, 4, 1, C_N, cartpole_consts, NULL, cartpole_bounds,
  cartpole_init, cartpole_advance, cartpole_reward, copy4, copy4
};

/* ---- Acrobot-v1, continuous torque -------------------------------------- */

/*
 * Two links hanging from a fixed pivot, the torque acting at the elbow
 * (Sutton and Barto's "book" dynamics, which keep the term
 * -m2 l1 lc2 th1d^2 sin th2 that the NIPS version drops).  With
 * th1 measured from hanging straight down and th2 relative to link 1:
 *   d1 = m1 lc1^2 + m2 (l1^2 + lc2^2 + 2 l1 lc2 cos th2) + I1 + I2
 *   d2 = m2 (lc2^2 + l1 lc2 cos th2) + I2
 *   phi2 = m2 lc2 g cos(th1 + th2 - pi/2)
 *   phi1 = -m2 l1 lc2 th2d^2 sin th2 - 2 m2 l1 lc2 th2d th1d sin th2
 *          + (m1 lc1 + m2 l1) g cos(th1 - pi/2) + phi2
 *   th2dd = (tau + d2/d1 phi1 - m2 l1 lc2 th1d^2 sin th2 - phi2)
 *           / (m2 lc2^2 + I2 - d2^2 / d1)
 *   th1dd = -(d2 th2dd + phi1) / d1
 * One classical Runge-Kutta (RK4) step of dt with the torque held; then
 * the angles are wrapped into [-pi, pi] and the velocities clipped.  The
 * episode terminates when the tip rises above the pivot by more than one
 * link 1 length: -l1 cos th1 - l2 cos(th1 + th2) > l1 (Gymnasium's
 * -cos th1 - cos(th1 + th2) > 1 for unit links).  The reward is -1 per
 * step until then, 0 on the terminating step.
 */
enum { A_DT, A_L1, A_L2, A_M1, A_M2, A_LC1, A_LC2, A_MOI, A_MAXV1,
       A_MAXV2, A_G, A_TORQUE, A_STEPS, A_N };

static const constant acrobot_consts[A_N] = {
  {"dt", 0.2, POSITIVE, "time step (s)"},
  {"link_length_1", 1.0, POSITIVE, "(m)"},
  {"link_length_2", 1.0, POSITIVE, "(m)"},
  {"link_mass_1", 1.0, POSITIVE, "(kg)"},
  {"link_mass_2", 1.0, POSITIVE, "(kg)"},
  {"link_com_pos_1", 0.5, NONNEG, "pivot to centre of mass of link 1"},
  {"link_com_pos_2", 0.5, NONNEG, "elbow to centre of mass of link 2"},
  {"link_moi", 1.0, NONNEG, "moment of inertia of each link about its "
   "centre of mass"},
  {"max_vel_1", 4.0 * PI, POSITIVE, "clip on th1d (rad/s)"},
  {"max_vel_2", 9.0 * PI, POSITIVE, "clip on th2d (rad/s)"},
  {"g", 9.8, NONNEG, "(m/s^2)"},
  {"max_torque", 1.0, POSITIVE, "action bound (N m)"},
  {"max_steps", 500, COUNT, "episode limit"},
};

static void acrobot_bounds(const double *c, double *olo, double *ohi,
                           double *alo, double *ahi) {
  for (int i = 0; i < 4; i++) {
    olo[i] = -1.0;
    ohi[i] = 1.0;
  }
  olo[4] = -c[A_MAXV1];
  ohi[4] = c[A_MAXV1];
  olo[5] = -c[A_MAXV2];
  ohi[5] = c[A_MAXV2];
  alo[0] = -c[A_TORQUE];
  ahi[0] = c[A_TORQUE];
}

static void acrobot_init(const double *c, d2r_rng *rng, double *s) {
  (void)c;
  uniform_state(rng, 4, 0.1, s);
}

/* The time derivative of (th1, th2, th1d, th2d) under torque tau. */
static void acrobot_dsdt(const double *c, const double *s, double tau,
                         double *ds) {
  double m1 = c[A_M1], m2 = c[A_M2], l1 = c[A_L1];
  double lc1 = c[A_LC1], lc2 = c[A_LC2], i1 = c[A_MOI], i2 = c[A_MOI];
  double g = c[A_G];
  double th1 = s[0], th2 = s[1], d1t = s[2], d2t = s[3];
  double d1 = m1 * lc1 * lc1 +
              m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * cos(th2)) +
              i1 + i2;
  double d2 = m2 * (lc2 * lc2 + l1 * lc2 * cos(th2)) + i2;
  double phi2 = m2 * lc2 * g * cos(th1 + th2 - PI / 2.0);
  double phi1 = -m2 * l1 * lc2 * d2t * d2t * sin(th2) -
                2.0 * m2 * l1 * lc2 * d2t * d1t * sin(th2) +
                (m1 * lc1 + m2 * l1) * g * cos(th1 - PI / 2.0) + phi2;
  double dd2 = (tau + d2 / d1 * phi1 -
                m2 * l1 * lc2 * d1t * d1t * sin(th2) - phi2) /
               (m2 * lc2 * lc2 + i2 - d2 * d2 / d1);
  double dd1 = -(d2 * dd2 + phi1) / d1;
  ds[0] = d1t;
  ds[1] = d2t;
  ds[2] = dd1;
  ds[3] = dd2;
}

/* Wraps x into [lo, hi) by whole periods. */
static double wrap(double x, double lo, double hi) {
  double span = hi - lo;
  while (x > hi) x -= span;
  while (x < lo) x += span;
  return x;
}

static void acrobot_advance(const double *c, const double *s,
                            const double *a, double *s2) {
  double k1[4], k2[4], k3[4], k4[4], y[4], h = c[A_DT];
  acrobot_dsdt(c, s, a[0], k1);
  for (int i = 0; i < 4; i++) y[i] = s[i] + 0.5 * h * k1[i];
  acrobot_dsdt(c, y, a[0], k2);
  for (int i = 0; i < 4; i++) y[i] = s[i] + 0.5 * h * k2[i];
  acrobot_dsdt(c, y, a[0], k3);
  for (int i = 0; i < 4; i++) y[i] = s[i] + h * k3[i];
  acrobot_dsdt(c, y, a[0], k4);
  for (int i = 0; i < 4; i++)
    s2[i] = s[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
  s2[0] = wrap(s2[0], -PI, PI);
  s2[1] = wrap(s2[1], -PI, PI);
  s2[2] = clampd(s2[2], -c[A_MAXV1], c[A_MAXV1]);
  s2[3] = clampd(s2[3], -c[A_MAXV2], c[A_MAXV2]);
}

static void acrobot_reward(const double *c, const double *s,
                           const double *a, const double *s2, double *r,
                           bool *term) {
  (void)s;
  (void)a;
  double l1 = c[A_L1], l2 = c[A_L2];
  *term = -l1 * cos(s2[0]) - l2 * cos(s2[0] + s2[1]) > l1;
  *r = *term ? 0.0 : -1.0;
}

static void acrobot_observe(const double *c, const double *s, double *o) {
  (void)c;
  o[0] = cos(s[0]);
  o[1] = sin(s[0]);
  o[2] = cos(s[1]);
  o[3] = sin(s[1]);
  o[4] = s[2];
  o[5] = s[3];
}

static void acrobot_unobserve(const double *c, const double *o,
                              double *s) {
  (void)c;
  s[0] = atan2(o[1], o[0]);
  s[1] = atan2(o[3], o[2]);
  s[2] = o[4];
  s[3] = o[5];
}

static const physics acrobot = {
  "acrobot", 4, 6, 1, A_N, acrobot_consts, NULL, acrobot_bounds,
  acrobot_init, acrobot_advance, acrobot_reward, acrobot_observe,
  acrobot_unobserve
};

/* ---- Reacher: a planar two-link arm ------------------------------------- */

/*
 * Two uniform rods (masses m1, m2, lengths l1, l2) jointed in a
 * horizontal plane, so gravity does no work; each joint has a motor of
 * rotor inertia `armature` (as MuJoCo adds it to the joint), viscous
 * damping and a torque max_torque a.  Lagrange's equations give the
 * manipulator equation
 *   M(q) qdd + c(q, qd) + b qd = tau
 * with lc_i = l_i / 2, I_i = m_i l_i^2 / 12 (a rod about its centre),
 * J the armature and h = m2 l1 lc2 sin q2:
 *   M11 = m1 lc1^2 + I1 + m2 (l1^2 + lc2^2 + 2 l1 lc2 cos q2) + I2 + J
 *   M12 = m2 (lc2^2 + l1 lc2 cos q2) + I2
 *   M22 = m2 lc2^2 + I2 + J
 *   c1 = -h (2 q1d q2d + q2d^2),  c2 = h q1d^2  (Coriolis, centrifugal)
 * qdd is solved from the 2x2 system by Cramer's rule and the state
 * advanced by `substeps` classical Runge-Kutta (RK4) steps of
 * dt / substeps.  The kinetic energy 0.5 qd^T M qd is what damping
 * dissipates at the rate b |qd|^2 (and is conserved when b = 0).
 *
 * The target is drawn uniformly in the disc of radius target_radius
 * (rejection sampling in the square), the joints near zero (the arm
 * stretched along x).  As in Gymnasium's Reacher the reward is
 * -|tip - target| - ctrl_cost |a|^2, the distance taken before the step;
 * episodes never terminate.  The joints are not limited.
 */
enum { R_L1, R_L2, R_M1, R_M2, R_ARM, R_DAMP, R_TORQUE, R_DT, R_SUB,
       R_RADIUS, R_CTRL, R_STEPS, R_N };

static const constant reacher_consts[R_N] = {
  {"link_length_1", 0.1, POSITIVE, "(m)"},
  {"link_length_2", 0.11, POSITIVE, "(m)"},
  {"link_mass_1", 0.1, POSITIVE, "(kg)"},
  {"link_mass_2", 0.1, POSITIVE, "(kg)"},
  {"armature", 0.001, NONNEG, "rotor inertia at each joint (kg m^2)"},
  {"damping", 0.005, NONNEG, "viscous damping at each joint (N m s)"},
  {"max_torque", 0.05, POSITIVE, "torque at |a| = 1 (N m)"},
  {"dt", 0.02, POSITIVE, "time step (s)"},
  {"substeps", 2, COUNT, "RK4 steps per time step"},
  {"target_radius", 0.2, POSITIVE, "targets lie in this disc (m)"},
  {"ctrl_cost", 1.0, NONNEG, "weight of |a|^2 in the cost"},
  {"max_steps", 50, COUNT, "episode limit"},
};

static void reacher_bounds(const double *c, double *olo, double *ohi,
                           double *alo, double *ahi) {
  for (int i = 0; i < 10; i++) {
    olo[i] = -INFINITY;
    ohi[i] = INFINITY;
  }
  for (int i = 0; i < 4; i++) {
    olo[i] = -1.0;
    ohi[i] = 1.0;
  }
  for (int i = 4; i < 6; i++) {
    olo[i] = -c[R_RADIUS];
    ohi[i] = c[R_RADIUS];
  }
  alo[0] = alo[1] = -1.0;
  ahi[0] = ahi[1] = 1.0;
}

static void reacher_init(const double *c, d2r_rng *rng, double *s) {
  double r = c[R_RADIUS], tx, ty;
  uniform_state(rng, 2, 0.1, s);
  uniform_state(rng, 2, 0.005, s + 2);
  do {
    tx = -r + 2.0 * r * d2r_rng_uniform(rng);
    ty = -r + 2.0 * r * d2r_rng_uniform(rng);
  } while (tx * tx + ty * ty >= r * r);
  s[4] = tx;
  s[5] = ty;
}

/* d(q1, q2, q1d, q2d)/dt under torques tau. */
static void reacher_dsdt(const double *c, const double *s,
                         const double *tau, double *ds) {
  double m1 = c[R_M1], m2 = c[R_M2], l1 = c[R_L1], l2 = c[R_L2];
  double lc1 = 0.5 * l1, lc2 = 0.5 * l2, j = c[R_ARM], b = c[R_DAMP];
  double i1 = m1 * l1 * l1 / 12.0, i2 = m2 * l2 * l2 / 12.0;
  double q1d = s[2], q2d = s[3], c2 = cos(s[1]);
  double h = m2 * l1 * lc2 * sin(s[1]);
  double a11 = m1 * lc1 * lc1 + i1 +
               m2 * (l1 * l1 + lc2 * lc2 + 2.0 * l1 * lc2 * c2) + i2 + j;
  double a12 = m2 * (lc2 * lc2 + l1 * lc2 * c2) + i2;
  double a22 = m2 * lc2 * lc2 + i2 + j;
  double f1 = tau[0] + h * (2.0 * q1d * q2d + q2d * q2d) - b * q1d;
  double f2 = tau[1] - h * q1d * q1d - b * q2d;
  double det = a11 * a22 - a12 * a12;
  ds[0] = q1d;
  ds[1] = q2d;
  ds[2] = (a22 * f1 - a12 * f2) / det;
  ds[3] = (a11 * f2 - a12 * f1) / det;
}

static void reacher_advance(const double *c, const double *s,
                            const double *a, double *s2) {
  double tau[2] = {c[R_TORQUE] * a[0], c[R_TORQUE] * a[1]};
  int sub = (int)c[R_SUB];
  double h = c[R_DT] / sub, y[4], k1[4], k2[4], k3[4], k4[4], t[4];
  memcpy(y, s, sizeof y);
  for (int n = 0; n < sub; n++) {
    reacher_dsdt(c, y, tau, k1);
    for (int i = 0; i < 4; i++) t[i] = y[i] + 0.5 * h * k1[i];
    reacher_dsdt(c, t, tau, k2);
    for (int i = 0; i < 4; i++) t[i] = y[i] + 0.5 * h * k2[i];
    reacher_dsdt(c, t, tau, k3);
    for (int i = 0; i < 4; i++) t[i] = y[i] + h * k3[i];
    reacher_dsdt(c, t, tau, k4);
    for (int i = 0; i < 4; i++)
      y[i] += h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
  }
  memcpy(s2, y, sizeof y);
  s2[4] = s[4];
  s2[5] = s[5];
}

static void reacher_tip(const double *c, const double *s, double *x,
                        double *y) {
  *x = c[R_L1] * cos(s[0]) + c[R_L2] * cos(s[0] + s[1]);
  *y = c[R_L1] * sin(s[0]) + c[R_L2] * sin(s[0] + s[1]);
}

static void reacher_reward(const double *c, const double *s,
                           const double *a, const double *s2, double *r,
                           bool *term) {
  (void)s2;
  double x, y;
  reacher_tip(c, s, &x, &y);
  double dist = hypot(x - s[4], y - s[5]);
  *r = -dist - c[R_CTRL] * (a[0] * a[0] + a[1] * a[1]);
  *term = false;
}

static void reacher_observe(const double *c, const double *s, double *o) {
  double x, y;
  reacher_tip(c, s, &x, &y);
  o[0] = cos(s[0]);
  o[1] = cos(s[1]);
  o[2] = sin(s[0]);
  o[3] = sin(s[1]);
  o[4] = s[4];
  o[5] = s[5];
  o[6] = s[2];
  o[7] = s[3];
  o[8] = x - s[4];
  o[9] = y - s[5];
}

static void reacher_unobserve(const double *c, const double *o,
                              double *s) {
  (void)c;
  s[0] = atan2(o[2], o[0]);
  s[1] = atan2(o[3], o[1]);
  s[2] = o[6];
  s[3] = o[7];
  s[4] = o[4];
  s[5] = o[5];
}

static const physics reacher = {
  "reacher", 6, 10, 2, R_N, reacher_consts, NULL, reacher_bounds,
  reacher_init, reacher_advance, reacher_reward, reacher_observe,
  reacher_unobserve
};

/* ---- the generic simulator ---------------------------------------------- */

static const physics *const all_physics[] = {
  &pendulum, &mountain_car, &cartpole, &acrobot, &reacher, NULL
};

static const char *const builtin_names[] = {
  "pendulum", "mountain_car", "cartpole", "acrobot", "reacher", NULL
};

const char *const *d2r_env_builtin_names(void) { return builtin_names; }

typedef struct sim {
  const physics *ph;
  double c[MAXC];
  const char *keys[MAXC];
  d2r_rng *rng;
  double s[MAXS];
} sim;

static void sim_free(void *impl) {
  sim *m = impl;
  d2r_rng_free(m->rng);
  free(m);
}

static int sim_reset(void *impl, uint64_t seed, double *obs) {
  sim *m = impl;
  d2r_rng_seed(m->rng, seed);
  m->ph->init(m->c, m->rng, m->s);
  m->ph->observe(m->c, m->s, obs);
  return 0;
}

static int sim_step(void *impl, const double *action, double *obs,
                    double *reward, bool *terminated) {
  sim *m = impl;
  double s2[MAXS];
  m->ph->advance(m->c, m->s, action, s2);
  m->ph->reward(m->c, m->s, action, s2, reward, terminated);
  memcpy(m->s, s2, sizeof s2);
  m->ph->observe(m->c, m->s, obs);
  return 0;
}

static int sim_predict(void *impl, int64_t n, const double *obs,
                       const double *act, double *next_obs, double *reward,
                       double *done) {
  sim *m = impl;
  const physics *ph = m->ph;
  int no = ph->obs_dim, na = ph->act_dim;
  double s[MAXS], s2[MAXS];
  for (int64_t i = 0; i < n; i++) {
    bool term;
    ph->unobserve(m->c, obs + i * no, s);
    ph->advance(m->c, s, act + i * na, s2);
    ph->reward(m->c, s, act + i * na, s2, reward + i, &term);
    ph->observe(m->c, s2, next_obs + i * no);
    done[i] = term ? 1.0 : 0.0;
  }
  return 0;
}

static int sim_reward(void *impl, int64_t n, const double *obs,
                      const double *act, const double *next_obs,
                      double *reward, double *done) {
  sim *m = impl;
  const physics *ph = m->ph;
  int no = ph->obs_dim, na = ph->act_dim;
  double s[MAXS], s2[MAXS];
  for (int64_t i = 0; i < n; i++) {
    bool term;
    ph->unobserve(m->c, obs + i * no, s);
    ph->unobserve(m->c, next_obs + i * no, s2);
    ph->reward(m->c, s, act + i * na, s2, reward + i, &term);
    done[i] = term ? 1.0 : 0.0;
  }
  return 0;
}

static const d2r_env_ops sim_ops = {
  "builtin", sim_reset, sim_step, sim_predict, sim_reward, sim_free
};

static const physics *find_physics(const char *name) {
  for (int i = 0; all_physics[i] != NULL; i++)
    if (strcmp(all_physics[i]->name, name) == 0) return all_physics[i];
  return NULL;
}

/* Fails naming the known keys of ph. */
static int unknown_key(const physics *ph, const char *key) {
  char list[512] = "";
  for (int i = 0; i < ph->nconst; i++) {
    if (i > 0) strncat(list, ", ", sizeof list - strlen(list) - 1);
    strncat(list, ph->consts[i].key, sizeof list - strlen(list) - 1);
  }
  d2r_fail("env '%s': unknown constant '%s' (known: %s)", ph->name, key,
           list);
  return -1;
}

static int set_constant(sim *m, const char *key, double v) {
  const physics *ph = m->ph;
  for (int i = 0; i < ph->nconst; i++) {
    const constant *k = &ph->consts[i];
    if (strcmp(k->key, key) != 0) continue;
    const char *want = NULL;
    if (!isfinite(v)) want = "finite";
    else if (k->kind == POSITIVE && !(v > 0)) want = "positive";
    else if (k->kind == NONNEG && !(v >= 0)) want = "non-negative";
    else if (k->kind == COUNT && !(v >= 1 && v <= 1e9 && v == floor(v)))
      want = "a whole number >= 1";
    if (want) {
      d2r_fail("env '%s': constant '%s' must be %s, got %g", ph->name,
               key, want, v);
      return -1;
    }
    m->c[i] = v;
    return 0;
  }
  return unknown_key(ph, key);
}

d2r_env *d2r_env_make(const char *name, int n,
                      const d2r_env_param *params) {
  if (name == NULL) return d2r_fail("env: a name is required");
  const physics *ph = find_physics(name);
  if (ph == NULL)
    return d2r_fail("env: unknown environment '%s' (built in: pendulum, "
                    "mountain_car, cartpole, acrobot, reacher)", name);
  if (n < 0 || (n > 0 && params == NULL))
    return d2r_fail("env '%s': bad constant list", name);
  sim *m = calloc(1, sizeof *m);
  if (m == NULL) return d2r_fail("env '%s': out of memory", name);
  m->ph = ph;
  for (int i = 0; i < ph->nconst; i++) {
    m->c[i] = ph->consts[i].value;
    m->keys[i] = ph->consts[i].key;
  }
  for (int i = 0; i < n; i++) {
    if (params[i].key == NULL || set_constant(m, params[i].key,
                                              params[i].value) < 0) {
      if (params[i].key == NULL)
        d2r_fail("env '%s': constant %d has no name", name, i);
      free(m);
      return NULL;
    }
  }
  if (ph->check && ph->check(m->c) < 0) {
    free(m);
    return NULL;
  }
  m->rng = d2r_rng_new(0);
  if (m->rng == NULL) {
    free(m);
    return d2r_fail("env '%s': out of memory", name);
  }
  double olo[MAXS * 2], ohi[MAXS * 2], alo[2], ahi[2];
  ph->bounds(m->c, olo, ohi, alo, ahi);
  d2r_env_spec spec = {
    ph->name, ph->obs_dim, ph->act_dim, olo, ohi, alo, ahi,
    (int64_t)m->c[ph->nconst - 1]
  };
  return d2r_env_new(&sim_ops, m, &spec);
}

int d2r_env_constants(const d2r_env *e, int *n, const char *const **keys,
                      const double **values) {
  if (e == NULL) return -1;
  if (d2r_env_kind(e) != sim_ops.kind || d2r_env_impl(e) == NULL) {
    d2r_fail("env '%s' is not built in: it has no named constants",
             d2r_env_name(e));
    return -1;
  }
  sim *m = d2r_env_impl(e);
  if (n) *n = m->ph->nconst;
  if (keys) *keys = m->keys;
  if (values) *values = m->c;
  return 0;
}

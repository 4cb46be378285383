/* docs/examples/ode_scalar.c - fitting an ODE's parameters: the scalar
 * API against tensors.
 *
 *   x'' = -k x - c x',  x(0) = 1, x'(0) = 0
 *
 * integrated by semi-implicit Euler (v += dt (-k x - c v); x += dt v) for
 * 200 steps of dt = 0.01.  The loss is the squared distance of x at t =
 * 0.5, 1, 1.5, 2 from observations made with k = 2, c = 0.3; gradient
 * descent on (k, c) from (1, 0.1) recovers them.
 *
 * Every optimisation step records the whole integration (1600 ops: 8 per
 * Euler step, 200 steps) and differentiates it.  The same loss is computed twice: with the scalar
 * API (scalar.h: each op a node of 9 bytes plus 16 per operand, no shapes, no dispatch) and with
 * 0-d tensors (each op a tensor header, an arena block, a kernel call).
 * Both give the same gradient to rounding; the program prints the time
 * per optimisation step of each.  The integration takes no branch on a
 * value, so its recording is the same at every (k, c): a third way
 * records it once and replays it at each new point
 * (ad_scalar_replay_gradient, ADOL-C's gradient()), which re-evaluates
 * the 1600 nodes without recording them again.  The rule that follows: many small
 * scalar operations (ODEs, scalar models, a loss written element by
 * element) belong on the scalar API; anything on arrays (even of a few
 * elements) belongs on tensors, where one op does a whole array's work.
 *
 * Exits 1 if the two gradients differ or the fit does not recover k, c.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#define STEPS 200
#define DT 0.01
static const int OBS_AT[4] = {50, 100, 150, 200};
static double obs[4];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The observations, from the true parameters, in plain C. */
static void observe(double k, double c)
{
    double x = 1, v = 0;
    for (int s = 1, o = 0; s <= STEPS; s++) {
        v += DT * (-k * x - c * v);
        x += DT * v;
        if (s == OBS_AT[o]) obs[o++] = x;
    }
}

/* The loss recorded with the scalar API on tape t, from variables k and c
 * recorded there. */
static ad_scalar record_loss(ad_tape *t, ad_scalar k, ad_scalar c)
{
    ad_scalar x = ad_scalar_const(t, 1), v = ad_scalar_const(t, 0), L = ad_scalar_const(t, 0);
    for (int s = 1, o = 0; s <= STEPS; s++) {
        ad_scalar a = ad_sneg(ad_sadd(ad_smul(k, x), ad_smul(c, v)));
        v = ad_sadd(v, ad_smul_c(a, DT));
        x = ad_sadd(x, ad_smul_c(v, DT));
        if (s == OBS_AT[o]) L = ad_sadd(L, ad_ssquare(ad_ssub_c(x, obs[o++])));
    }
    return L;
}

/* Loss and gradient with the scalar API, recorded afresh at each point. */
static double loss_scalar(ad_tape *t, const double p[2], double g[2])
{
    ad_tape_reset(t);
    ad_scalar k = ad_scalar_var(t, p[0]), c = ad_scalar_var(t, p[1]);
    ad_scalar L = record_loss(t, k, c);
    if (ad_scalar_gradient(L, 2, (ad_scalar[]){k, c}, g)) return NAN;
    return ad_scalar_value(L);
}

/* The same recording, made once and replayed at each new point: the
 * handles of k, c and the loss are kept from the first call.  Valid
 * because no C branch depends on k or c (a value-dependent `if` would
 * need a new recording when its outcome changes). */
static double loss_replayed(ad_tape *t, const double p[2], double g[2])
{
    static ad_scalar kc[2], L;
    if (!ad_scalar_ok(L)) {
        ad_tape_reset(t);
        kc[0] = ad_scalar_var(t, p[0]);
        kc[1] = ad_scalar_var(t, p[1]);
        L = record_loss(t, kc[0], kc[1]);
    }
    if (ad_scalar_replay_gradient(L, 2, kc, p, g) < 0) return NAN;
    return ad_scalar_value(L);
}

/* The same with 0-d tensors. */
static double loss_tensor(ad_tape *t, const double p[2], double g[2])
{
    ad_tape_reset(t);
    ad_tensor *k = ad_scalar_tensor(t, AD_FLOAT64, p[0]), *c = ad_scalar_tensor(t, AD_FLOAT64, p[1]);
    ad_set_requires_grad(k, true);
    ad_set_requires_grad(c, true);
    ad_tensor *x = ad_scalar_tensor(t, AD_FLOAT64, 1), *v = ad_scalar_tensor(t, AD_FLOAT64, 0);
    ad_tensor *L = ad_scalar_tensor(t, AD_FLOAT64, 0);
    for (int s = 1, o = 0; s <= STEPS; s++) {
        ad_tensor *a = ad_neg(ad_add(ad_mul(k, x), ad_mul(c, v)));
        v = ad_add(v, ad_mul_scalar(a, DT));
        x = ad_add(x, ad_mul_scalar(v, DT));
        if (s == OBS_AT[o]) L = ad_add(L, ad_square(ad_sub_scalar(x, obs[o++])));
    }
    ad_tensor *gr[2];
    if (ad_gradients(L, NULL, 2, (ad_tensor *[]){k, c}, gr, 0)) return NAN;
    g[0] = ad_item(gr[0]);
    g[1] = ad_item(gr[1]);
    return ad_item(L);
}

int main(void)
{
    observe(2.0, 0.3);
    ad_tape *ts = ad_tape_new(), *tt = ad_tape_new(), *tr = ad_tape_new();
    if (!ts || !tt || !tr) return 1;
    ad_tape_activate(tt);

    /* the two agree */
    double p[2] = {1.0, 0.1}, gs[2], gt[2];
    double ls = loss_scalar(ts, p, gs), lt = loss_tensor(tt, p, gt);
    printf("at k = %g, c = %g: loss %.10g (scalar) %.10g (tensors)\n", p[0], p[1], ls, lt);
    printf("gradient: scalar (%.10g, %.10g), tensors (%.10g, %.10g)\n", gs[0], gs[1], gt[0],
           gt[1]);
    int bad = !(fabs(ls - lt) <= 1e-12 * fabs(ls) && fabs(gs[0] - gt[0]) <= 1e-10 * fabs(gs[0]) &&
                fabs(gs[1] - gt[1]) <= 1e-10 * fabs(gs[1]));

    /* gradient descent with the scalar API; both are timed on the same steps */
    int iters = 3000;
    double t0 = now();
    for (int i = 0; i < iters; i++) {
        double g[2];
        loss_scalar(ts, p, g);
        p[0] -= 0.5 * g[0];
        p[1] -= 0.5 * g[1];
    }
    double per_scalar = (now() - t0) / iters;
    int timed = 200;
    double q[2] = {1.0, 0.1};
    t0 = now();
    for (int i = 0; i < timed; i++) {
        double g[2];
        loss_tensor(tt, q, g);
        q[0] -= 0.5 * g[0];
        q[1] -= 0.5 * g[1];
    }
    double per_tensor = (now() - t0) / timed;
    /* recorded once, replayed: the same steps, the same bits */
    double r[2] = {1.0, 0.1};
    t0 = now();
    for (int i = 0; i < iters; i++) {
        double g[2];
        loss_replayed(tr, r, g);
        r[0] -= 0.5 * g[0];
        r[1] -= 0.5 * g[1];
    }
    double per_replay = (now() - t0) / iters;
    printf("fitted k = %.4f, c = %.4f (true 2, 0.3), loss %.3g\n", p[0], p[1],
           loss_scalar(ts, p, gs));
    printf("replayed: k = %.4f, c = %.4f, the same bits: %s\n", r[0], r[1],
           r[0] == p[0] && r[1] == p[1] ? "yes" : "no");
    printf("per optimisation step (1600 ops + backward): scalar API %.1f us recorded each "
           "time, %.1f us replayed; 0-d tensors %.1f us (%.0fx)\n",
           1e6 * per_scalar, 1e6 * per_replay, 1e6 * per_tensor, per_tensor / per_scalar);
    bad |= fabs(p[0] - 2.0) > 1e-3 || fabs(p[1] - 0.3) > 1e-3 || r[0] != p[0] || r[1] != p[1];
    ad_tape_free(ts);
    ad_tape_free(tt);
    ad_tape_free(tr);
    printf(bad ? "FAILED\n" : "ok\n");
    return bad;
}

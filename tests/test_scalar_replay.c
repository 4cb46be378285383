/* tests/test_scalar_replay.c - scalar tapes recorded once and replayed at
 * new points: same values and gradients as a fresh recording, no
 * allocation, branch switches counted. */
#include "optest.h"

/* Extended Rosenbrock on the scalar API. */
static ad_scalar rosen(ad_tape *t, int n, ad_scalar *x, const double *x0)
{
    for (int i = 0; i < n; i++) x[i] = ad_scalar_var(t, x0[i]);
    ad_scalar f = ad_scalar_const(t, 0.0);
    for (int i = 0; i < n; i += 2) {
        ad_scalar d = ad_ssub(x[i + 1], ad_ssquare(x[i]));
        ad_scalar e = ad_scsub(1.0, x[i]);
        f = ad_sadd(f, ad_sadd(ad_smul_c(ad_ssquare(d), 100.0), ad_ssquare(e)));
    }
    return f;
}

START_TEST(replay_matches_fresh_recording)
{
    enum { N = 40 };
    double x0[N], x1[N];
    for (int i = 0; i < N; i++) x0[i] = sin(i), x1[i] = cos(3 * i);
    ad_tape *t = ad_tape_new(), *fresh = ad_tape_new();
    ad_scalar x[N], xf[N];
    ad_scalar f = rosen(t, N, x, x0);
    size_t allocs = ad_scalar_alloc_count(t);
    ck_assert_int_ge(ad_scalar_replay(t, N, x, x1), 0);
    ck_assert_int_eq(ad_scalar_backward(f), 0);
    ad_scalar g = rosen(fresh, N, xf, x1);
    ck_assert_int_eq(ad_scalar_backward(g), 0);
    ck_assert_close(ad_scalar_value(f), ad_scalar_value(g), 0);
    for (int i = 0; i < N; i++) ck_assert_close(ad_scalar_grad(x[i]), ad_scalar_grad(xf[i]), 0);
    ck_assert_uint_eq(ad_scalar_alloc_count(t), allocs);
    ad_tape_free(t);
    ad_tape_free(fresh);
}
END_TEST

/* The variables in any order, a subset, or with other nodes between them
 * (not consecutive ids: the per-handle paths of ad_scalar_replay and
 * ad_scalar_gradient), against the consecutive order (one copy each). */
START_TEST(replay_and_gradient_any_order)
{
    enum { N = 40 };
    double x0[N], x1[N], rev[N], g1[N], g2[N];
    for (int i = 0; i < N; i++) x0[i] = sin(i), x1[i] = cos(3 * i);
    ad_tape *t = ad_tape_new();
    ad_scalar x[N], xr[N];
    ad_scalar f = rosen(t, N, x, x0);
    ck_assert_int_ge(ad_scalar_replay(t, N, x, x1), 0);
    double v1 = ad_scalar_value(f);
    ck_assert_int_eq(ad_scalar_gradient(f, N, x, g1), 0);
    ck_assert_int_ge(ad_scalar_replay(t, N, x, x0), 0); /* back, then reversed */
    for (int i = 0; i < N; i++) xr[i] = x[N - 1 - i], rev[i] = x1[N - 1 - i];
    ck_assert_int_ge(ad_scalar_replay(t, N, xr, rev), 0);
    ck_assert_close(ad_scalar_value(f), v1, 0);
    ck_assert_int_eq(ad_scalar_gradient(f, N, xr, g2), 0);
    for (int i = 0; i < N; i++) ck_assert_close(g2[i], g1[N - 1 - i], 0);
    /* every other variable: the rest keep their values from before */
    ad_scalar half[N / 2];
    double hv[N / 2];
    for (int i = 0; i < N / 2; i++) half[i] = x[2 * i], hv[i] = x0[2 * i];
    ck_assert_int_ge(ad_scalar_replay(t, N / 2, half, hv), 0);
    for (int i = 0; i < N; i++) ck_assert_close(ad_scalar_value(x[i]), i % 2 ? x1[i] : x0[i], 0);
    ck_assert_int_eq(ad_scalar_gradient(f, N / 2, half, g2), 0);
    ck_assert_int_eq(ad_scalar_gradient(f, N, x, g1), 0);
    for (int i = 0; i < N / 2; i++) ck_assert_close(g2[i], g1[2 * i], 0);
    /* a variable recorded after an op (ids not in one run) */
    ad_scalar a = ad_scalar_var(t, 1.0), c = ad_smul_c(a, 3.0), b = ad_scalar_var(t, 2.0);
    ad_scalar h = ad_smul(ad_sadd(c, b), b); /* (3a + b) b */
    ad_scalar ab[2] = {a, b};
    ck_assert_int_ge(ad_scalar_replay(t, 2, ab, (double[]){2.0, 5.0}), 0);
    ck_assert_close(ad_scalar_value(h), 55.0, 0);
    double gab[2];
    ck_assert_int_eq(ad_scalar_gradient(h, 2, ab, gab), 0);
    ck_assert_close(gab[0], 15.0, 0); /* 3 b */
    ck_assert_close(gab[1], 16.0, 0); /* 3a + 2b */
    ad_tape_free(t);
}
END_TEST

START_TEST(replay_counts_branch_switches)
{
    ad_tape *t = ad_tape_new();
    ad_scalar x = ad_scalar_var(t, 2.0), y = ad_scalar_var(t, -1.0);
    ad_scalar f = ad_sadd(ad_smax(x, y), ad_srelu(y)); /* max picks x, relu is off */
    ck_assert_close(ad_scalar_value(f), 2.0, 0);
    ad_scalar v[2] = {x, y};
    ck_assert_int_eq(ad_scalar_replay(t, 2, v, (double[]){3.0, -2.0}), 0);
    ck_assert_close(ad_scalar_value(f), 3.0, 0);
    ck_assert_int_eq(ad_scalar_replay(t, 2, v, (double[]){1.0, 4.0}), 2); /* both switch */
    ck_assert_close(ad_scalar_value(f), 8.0, 0);
    ck_assert_int_eq(ad_scalar_backward(f), 0);
    ck_assert_close(ad_scalar_grad(x), 0.0, 0);
    ck_assert_close(ad_scalar_grad(y), 2.0, 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(replay_errors)
{
    ad_tape *t = ad_tape_new(), *u = ad_tape_new();
    ad_scalar x = ad_scalar_var(t, 1.0), c = ad_scalar_const(t, 2.0);
    ad_scalar other = ad_scalar_var(u, 1.0);
    ad_sadd(x, c);
    double v = 3.0;
    ck_assert_error_rc(ad_scalar_replay(NULL, 1, &x, &v), "tape is NULL");
    ck_assert_error_rc(ad_scalar_replay(t, 1, &c, &v), "vars[0] is not a live variable");
    ck_assert_error_rc(ad_scalar_replay(t, 1, &other, &v), "vars[0] is not a live variable");
    ck_assert_error_rc(ad_scalar_replay(t, 1, NULL, &v), "need n >= 0 and arrays");
    ad_tape_free(t);
    ad_tape_free(u);
}
END_TEST

/* Every op of the scalar API, each node used once in a sum, so the replay's
 * case for each op (value, and the partials it re-evaluates or keeps) is
 * compared against a fresh recording, bit for bit. */
static ad_scalar every_op(ad_tape *t, ad_scalar *v, const double *p)
{
    ad_scalar x = v[0] = ad_scalar_var(t, p[0]), y = v[1] = ad_scalar_var(t, p[1]);
    ad_scalar terms[] = {
        ad_sadd(x, y), ad_ssub(x, y), ad_smul(x, y), ad_sdiv(x, y), ad_spow(x, y),
        ad_smax(x, y), ad_smin(x, y), ad_sadd_c(x, 0.25), ad_smul_c(x, -3.0),
        ad_ssub_c(y, 1.5), ad_scsub(2.0, y), ad_sdiv_c(x, 7.0), ad_scdiv(3.0, y),
        ad_spow_c(x, 2.5), ad_sneg(y), ad_sexp(x), ad_slog(y), ad_ssqrt(x), ad_ssin(y),
        ad_scos(x), ad_stan(y), ad_stanh(x), ad_ssigmoid(y), ad_srelu(ad_ssub(x, y)),
        ad_sabs(ad_ssub(y, x)), ad_ssquare(y), ad_smul(ad_scalar_const(t, 0.5), x),
    };
    /* A product chain as well, so partials that depend on other nodes'
     * values (not only on x and y) are replayed. */
    ad_scalar f = ad_scalar_const(t, 0.0), prod = ad_scalar_const(t, 1.0);
    for (size_t k = 0; k < sizeof terms / sizeof *terms; k++) {
        f = ad_sadd(f, terms[k]);
        prod = ad_smul(prod, ad_sadd_c(ad_smul_c(terms[k], 0.01), 1.0));
    }
    return ad_sadd(f, prod);
}

START_TEST(replay_every_op_matches_fresh_recording)
{
    /* (x, y) moves to points where max, min, relu and abs take the other
     * branch too, to their ties (x = y), and back. */
    const double points[][2] = {{1.3, 0.7}, {0.6, 1.1}, {2.2, 0.4}, {0.9, 1.9},
                                {1.0, 1.0}, {1.3, 0.7}};
    ad_tape *t = ad_tape_new(), *u = ad_tape_new();
    ad_scalar v[2], w[2];
    ad_scalar f = every_op(t, v, points[0]);
    for (size_t k = 1; k < sizeof points / sizeof *points; k++) {
        ck_assert_int_ge(ad_scalar_replay(t, 2, v, points[k]), 0);
        double gr[2], gf[2];
        ck_assert_int_eq(ad_scalar_gradient(f, 2, v, gr), 0);
        ad_tape_reset(u);
        ad_scalar g = every_op(u, w, points[k]);
        ck_assert_int_eq(ad_scalar_gradient(g, 2, w, gf), 0);
        ck_assert_close(ad_scalar_value(f), ad_scalar_value(g), 0);
        ck_assert_close(gr[0], gf[0], 0);
        ck_assert_close(gr[1], gf[1], 0);
    }
    ad_tape_free(t);
    ad_tape_free(u);
}
END_TEST

/* Backward from inner nodes of a replayed tape (the sweep then starts in
 * the middle of the edges): the same bits as from a fresh recording. */
START_TEST(replay_backward_from_inner_nodes)
{
    const double p0[2] = {1.3, 0.7}, p1[2] = {0.6, 1.1};
    ad_tape *t = ad_tape_new(), *u = ad_tape_new();
    ad_scalar v[2], w[2];
    ad_scalar f = every_op(t, v, p0);
    ck_assert_int_ge(ad_scalar_replay(t, 2, v, p1), 0);
    every_op(u, w, p1);
    size_t count = ad_scalar_count(t);
    ck_assert_uint_eq(count, ad_scalar_count(u));
    /* From the last node first, then from inner nodes downwards, so that
     * adjoints of later nodes are left over from the sweep before and any
     * sweep that went past its start would use them.  Handles of inner
     * nodes are made from their ids (ids follow recording order). */
    ck_assert_int_eq(ad_scalar_backward(f), 0);
    for (long id = (long)count - 2; id >= 2; id -= 7) {
        ad_scalar a = {t, (uint32_t)id, v[0].gen}, b = {u, (uint32_t)id, w[0].gen};
        ck_assert(ad_scalar_ok(a) && ad_scalar_ok(b));
        ck_assert_int_eq(ad_scalar_backward(a), 0);
        ck_assert_int_eq(ad_scalar_backward(b), 0);
        ck_assert_close(ad_scalar_value(a), ad_scalar_value(b), 0);
        ck_assert_close(ad_scalar_grad(v[0]), ad_scalar_grad(w[0]), 0);
        ck_assert_close(ad_scalar_grad(v[1]), ad_scalar_grad(w[1]), 0);
        /* Nodes recorded after the one differentiated get no gradient. */
        ad_scalar later = {t, (uint32_t)(count - 1), v[0].gen};
        ck_assert(ad_scalar_grad(later) == 0.0);
    }
    ad_tape_free(t);
    ad_tape_free(u);
}
END_TEST

/* Recording goes on after a replay, and the next replay evaluates the new
 * nodes too. */
START_TEST(record_after_replay)
{
    const double p0[2] = {1.3, 0.7}, p1[2] = {0.6, 1.1}, p2[2] = {2.2, 0.4};
    ad_tape *t = ad_tape_new(), *u = ad_tape_new();
    ad_scalar v[2], w[2];
    ad_scalar f = every_op(t, v, p0);
    ck_assert_int_ge(ad_scalar_replay(t, 2, v, p1), 0);
    ad_scalar g = ad_sadd(ad_smul(f, ad_ssin(v[0])), ad_sdiv_c(ad_sexp(v[1]), 3.0));
    ad_scalar gf = every_op(u, w, p1); /* one statement each: w is set first */
    gf = ad_sadd(ad_smul(gf, ad_ssin(w[0])), ad_sdiv_c(ad_sexp(w[1]), 3.0));
    double gr[2], want[2];
    ck_assert_int_eq(ad_scalar_gradient(g, 2, v, gr), 0);
    ck_assert_int_eq(ad_scalar_gradient(gf, 2, w, want), 0);
    ck_assert_close(ad_scalar_value(g), ad_scalar_value(gf), 0);
    ck_assert_close(gr[0], want[0], 0);
    ck_assert_close(gr[1], want[1], 0);
    ck_assert_int_ge(ad_scalar_replay(t, 2, v, p2), 0);
    ad_tape_reset(u);
    gf = every_op(u, w, p2);
    gf = ad_sadd(ad_smul(gf, ad_ssin(w[0])), ad_sdiv_c(ad_sexp(w[1]), 3.0));
    ck_assert_int_eq(ad_scalar_gradient(g, 2, v, gr), 0);
    ck_assert_int_eq(ad_scalar_gradient(gf, 2, w, want), 0);
    ck_assert_close(ad_scalar_value(g), ad_scalar_value(gf), 0);
    ck_assert_close(gr[0], want[0], 0);
    ck_assert_close(gr[1], want[1], 0);
    ad_tape_free(t);
    ad_tape_free(u);
}
END_TEST

/* A reset tape records a different computation, which the replay then
 * evaluates (nothing of the first recording is left in its way). */
START_TEST(replay_after_reset)
{
    ad_tape *t = ad_tape_new();
    ad_scalar v[2];
    every_op(t, v, (double[]){1.3, 0.7});
    ck_assert_int_ge(ad_scalar_replay(t, 2, v, (double[]){0.6, 1.1}), 0);
    ad_tape_reset(t);
    ad_scalar x = ad_scalar_var(t, 2.0), y = ad_scalar_var(t, 0.5);
    ad_scalar f = ad_sdiv(ad_scdiv(1.0, x), ad_sadd_c(ad_smul(x, y), 1.0)); /* 1 / (x (x y + 1)) */
    ad_scalar xy[2] = {x, y};
    ck_assert_int_eq(ad_scalar_replay(t, 2, xy, (double[]){1.0, 3.0}), 0);
    ck_assert_close(ad_scalar_value(f), 0.25, 1e-15);
    ck_assert_int_eq(ad_scalar_backward(f), 0);
    /* d/dx = -(2 x y + 1) / (x (x y + 1))^2 = -7/16, d/dy = -x^2 / (x (x y + 1))^2 = -1/16 */
    ck_assert_close(ad_scalar_grad(x), -7.0 / 16.0, 1e-15);
    ck_assert_close(ad_scalar_grad(y), -1.0 / 16.0, 1e-15);
    ad_tape_free(t);
}
END_TEST

/* A partial that becomes infinite at the replay's point, on a node the
 * output does not depend on, must not turn the gradient into NaN (the
 * sweep adds nothing out of a node whose adjoint is 0). */
START_TEST(replay_unreached_infinite_partial)
{
    ad_tape *t = ad_tape_new();
    ad_scalar x = ad_scalar_var(t, 4.0);
    ad_scalar u = ad_ssqrt(x), l = ad_slog(x);
    ad_scalar y = ad_smul_c(x, 2.0);
    ck_assert_int_eq(ad_scalar_replay(t, 1, &x, (double[]){0.0}), 0);
    ck_assert(ad_scalar_value(u) == 0.0);
    ck_assert(isinf(ad_scalar_value(l)));
    ck_assert_int_eq(ad_scalar_backward(y), 0);
    ck_assert(ad_scalar_grad(x) == 2.0);
    ck_assert(ad_scalar_grad(u) == 0.0);
    /* From u itself the partial is used: d sqrt(x) / dx = inf at 0. */
    ck_assert_int_eq(ad_scalar_backward(u), 0);
    ck_assert(isinf(ad_scalar_grad(x)));
    ad_tape_free(t);
}
END_TEST

/* Each kink op counts its own switch, once per change of branch; the
 * structure C code chose while recording stays (ADOL-C's semantics). */
START_TEST(replay_switches_per_kink)
{
    ad_tape *t = ad_tape_new();
    ad_scalar x = ad_scalar_var(t, 2.0), y = ad_scalar_var(t, 1.0);
    ad_scalar xy[2] = {x, y};
    ad_scalar m = ad_smax(x, y), n = ad_smin(x, y), r = ad_srelu(x), a = ad_sabs(y);
    ad_scalar f = ad_sadd(ad_sadd(m, n), ad_sadd(r, a));
    /* An `if` taken while recording: x > 0 here, so g = x^2 whatever the
     * replay's x. */
    ad_scalar g = ad_scalar_value(x) > 0 ? ad_ssquare(x) : ad_sneg(x);
    ck_assert_int_eq(ad_scalar_replay(t, 2, xy, (double[]){3.0, 0.5}), 0);   /* same branches */
    ck_assert_int_eq(ad_scalar_replay(t, 2, xy, (double[]){0.5, 3.0}), 2);   /* max, min */
    ck_assert_int_eq(ad_scalar_replay(t, 2, xy, (double[]){-0.5, 3.0}), 1);  /* relu */
    ck_assert_int_eq(ad_scalar_replay(t, 2, xy, (double[]){-0.5, -3.0}), 3); /* max, min, abs */
    ck_assert_close(ad_scalar_value(f), -0.5 + -3.0 + 0.0 + 3.0, 0);
    ck_assert_int_eq(ad_scalar_backward(f), 0);
    ck_assert_close(ad_scalar_grad(x), 1.0, 0);      /* max */
    ck_assert_close(ad_scalar_grad(y), 1.0 - 1.0, 0); /* min, abs' = -1 */
    ck_assert_close(ad_scalar_value(g), 0.25, 0);    /* the recorded branch */
    ck_assert_int_eq(ad_scalar_backward(g), 0);
    ck_assert_close(ad_scalar_grad(x), -1.0, 0);     /* 2x */
    /* Back to the recording's point: max and min already are. */
    ck_assert_int_eq(ad_scalar_replay(t, 2, xy, (double[]){2.0, 1.0}), 2); /* relu, abs */
    ad_tape_free(t);
}
END_TEST

/* ad_scalar_replay_gradient against ad_scalar_replay then
 * ad_scalar_gradient, bit for bit: the variables in order (one run of
 * ids), reversed and a subset (the per-handle paths); its count of
 * switched kinks; and an error, which leaves the tape's values and grad as
 * they were. */
START_TEST(replay_gradient_in_one_call)
{
    enum { N = 40 };
    double x0[N], x1[N], rev[N], g1[N], g2[N];
    for (int i = 0; i < N; i++) x0[i] = sin(i), x1[i] = cos(3 * i);
    ad_tape *t = ad_tape_new();
    ad_scalar x[N], xr[N];
    ad_scalar f = rosen(t, N, x, x0);
    ck_assert_int_eq(ad_scalar_replay(t, N, x, x1), 0);
    ck_assert_int_eq(ad_scalar_gradient(f, N, x, g1), 0);
    double v1 = ad_scalar_value(f);
    ck_assert_int_eq(ad_scalar_replay(t, N, x, x0), 0);
    ck_assert_int_eq(ad_scalar_replay_gradient(f, N, x, x1, g2), 0);
    ck_assert_close(ad_scalar_value(f), v1, 0);
    for (int i = 0; i < N; i++) ck_assert_close(g2[i], g1[i], 0);
    for (int i = 0; i < N; i++) xr[i] = x[N - 1 - i], rev[i] = x0[N - 1 - i];
    ck_assert_int_eq(ad_scalar_replay_gradient(f, N, xr, rev, g2), 0);
    ck_assert_int_eq(ad_scalar_gradient(f, N, x, g1), 0);
    for (int i = 0; i < N; i++) ck_assert_close(g2[i], g1[N - 1 - i], 0);
    ad_scalar half[N / 2];
    double hv[N / 2], gh[N / 2];
    for (int i = 0; i < N / 2; i++) half[i] = x[2 * i], hv[i] = x1[2 * i];
    ck_assert_int_eq(ad_scalar_replay_gradient(f, N / 2, half, hv, gh), 0);
    ck_assert_int_eq(ad_scalar_gradient(f, N, x, g1), 0);
    for (int i = 0; i < N / 2; i++) ck_assert_close(gh[i], g1[2 * i], 0);
    /* an error: nothing changes, not even the values of the variables
     * checked before the bad one */
    double before = ad_scalar_value(f), xv0 = ad_scalar_value(x[0]);
    for (int i = 0; i < N; i++) g2[i] = -7.0;
    ad_scalar bad[2] = {x[0], f};
    ck_assert_int_eq(ad_scalar_replay_gradient(f, 2, bad, (double[]){9.0, 9.0}, g2), -1);
    ck_assert(ad_error() && strstr(ad_error(), "ad_scalar_replay_gradient: vars[1] is not a live variable"));
    ck_assert_close(ad_scalar_value(f), before, 0);
    ck_assert_close(ad_scalar_value(x[0]), xv0, 0);
    for (int i = 0; i < N; i++) ck_assert_close(g2[i], -7.0, 0);
    /* the kinks: as ad_scalar_replay counts them */
    ad_scalar a = ad_scalar_var(t, 2.0), b = ad_scalar_var(t, -1.0);
    ad_scalar k = ad_sadd(ad_smax(a, b), ad_srelu(b));
    ad_scalar ab[2] = {a, b};
    double gk[2];
    ck_assert_int_eq(ad_scalar_replay_gradient(k, 2, ab, (double[]){1.0, 4.0}, gk), 2);
    ck_assert_close(ad_scalar_value(k), 8.0, 0);
    ck_assert_close(gk[0], 0.0, 0);
    ck_assert_close(gk[1], 2.0, 0);
    ad_tape_free(t);
}
END_TEST

/* A longer tape replayed at several points, every gradient bit for bit
 * that of a fresh recording. */
START_TEST(replay_rosenbrock_many_points)
{
    enum { N = 2000 };
    static double x0[N], x1[N], g[N], want[N];
    static ad_scalar x[N], xf[N];
    ad_tape *t = ad_tape_new(), *fresh = ad_tape_new();
    for (int i = 0; i < N; i++) x0[i] = cos(0.1 * i);
    ad_scalar f = rosen(t, N, x, x0);
    for (int round = 1; round <= 4; round++) {
        for (int i = 0; i < N; i++) x1[i] = sin(round * (i + 1) * 0.37);
        /* the two calls on odd rounds, the one that does both on even */
        if (round % 2) {
            ck_assert_int_eq(ad_scalar_replay(t, N, x, x1), 0);
            ck_assert_int_eq(ad_scalar_gradient(f, N, x, g), 0);
        } else {
            ck_assert_int_eq(ad_scalar_replay_gradient(f, N, x, x1, g), 0);
        }
        ad_tape_reset(fresh);
        ad_scalar h = rosen(fresh, N, xf, x1);
        ck_assert_int_eq(ad_scalar_gradient(h, N, xf, want), 0);
        ck_assert_close(ad_scalar_value(f), ad_scalar_value(h), 0);
        for (int i = 0; i < N; i++) ck_assert_close(g[i], want[i], 0);
    }
    ad_tape_free(t);
    ad_tape_free(fresh);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scalar_replay");
    TCase *tc = tcase_create("scalar_replay");
    tcase_add_test(tc, replay_matches_fresh_recording);
    tcase_add_test(tc, replay_and_gradient_any_order);
    tcase_add_test(tc, replay_counts_branch_switches);
    tcase_add_test(tc, replay_errors);
    tcase_add_test(tc, replay_every_op_matches_fresh_recording);
    tcase_add_test(tc, replay_backward_from_inner_nodes);
    tcase_add_test(tc, record_after_replay);
    tcase_add_test(tc, replay_after_reset);
    tcase_add_test(tc, replay_unreached_infinite_partial);
    tcase_add_test(tc, replay_switches_per_kink);
    tcase_add_test(tc, replay_rosenbrock_many_points);
    tcase_add_test(tc, replay_gradient_in_one_call);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

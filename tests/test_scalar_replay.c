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
     * branch too, and back. */
    const double points[][2] = {{1.3, 0.7}, {0.6, 1.1}, {2.2, 0.4}, {0.9, 1.9}};
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

int main(void)
{
    Suite *s = suite_create("scalar_replay");
    TCase *tc = tcase_create("scalar_replay");
    tcase_add_test(tc, replay_matches_fresh_recording);
    tcase_add_test(tc, replay_counts_branch_switches);
    tcase_add_test(tc, replay_errors);
    tcase_add_test(tc, replay_every_op_matches_fresh_recording);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

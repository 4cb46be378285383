/* tests/test_numeric.c - numerical robustness.
 *
 * 1. The functions that overflow when written naively - softmax,
 *    log_softmax, logsumexp, cross_entropy, sigmoid, softplus - evaluated
 *    at inputs up to +-1000 in float32 and float64: every value and every
 *    gradient must be finite and agree with a long double reference (or a
 *    closed form) to a few units in the last place of the dtype.
 * 2. The derivative each op chooses at a kink (relu and abs at 0, ties of
 *    max/min/maximum/minimum and max_pool2d, clamp at its bounds,
 *    leaky_relu at 0, pow at 0) and the documented non-finite cases (all
 *    -inf lines), checked against what the headers say.
 *
 * Tolerances (also in docs/reliability.md): an element passes when
 *     |got - ref| <= rtol |ref| + atol
 * with rtol = 8 eps of the dtype (float32: 9.5e-7, float64: 1.8e-15) and
 * atol = rtol times the scale of the quantity (1 for probabilities and
 * their gradients, the input magnitude for log-probabilities where the
 * input itself is only known to that precision), except where the header
 * promises full relative precision (the left tails of sigmoid and
 * softplus), where atol is the smallest subnormal. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static double eps_of(ad_dtype dt) { return dt == AD_FLOAT32 ? FLT_EPSILON : DBL_EPSILON; }
static double rtol_of(ad_dtype dt) { return 8 * eps_of(dt); }
static double tiny_of(ad_dtype dt) { return dt == AD_FLOAT32 ? 0x1p-149 : 0x1p-1074; }

/* A leaf of dtype dt on t holding v (rounded to dt). */
static ad_tensor *leaf(ad_tape *t, ad_dtype dt, int nd, const int64_t *sh, const double *v)
{
    ad_tensor *x64 = ad_from_array(t, AD_FLOAT64, nd, sh, v);
    ck_assert_msg(x64 != NULL, "%s", ad_error());
    ad_tensor *x = ad_empty(t, dt, nd, sh);
    ck_assert_int_eq(ad_copy_into(x, x64), 0);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    return x;
}

static void rd(const ad_tensor *x, double *out)
{
    ck_assert_msg(x != NULL, "%s", ad_error() ? ad_error() : "NULL");
    ck_assert_int_eq(ad_to_array(x, out), 0);
}

/* Compares n values with their references; `what` names the check. */
static void expect_near(const char *what, ad_dtype dt, int n, const double *got,
                        const long double *ref, double atol)
{
    double rtol = rtol_of(dt);
    for (int i = 0; i < n; i++) {
        double r = (double)ref[i];
        ck_assert_msg(isfinite(got[i]), "%s %s [%d]: %g is not finite", what,
                      ad_dtype_name(dt), i, got[i]);
        ck_assert_msg(fabs(got[i] - r) <= rtol * fabs(r) + atol,
                      "%s %s [%d]: %.17g, reference %.17Lg (diff %.3g, tol %.3g)", what,
                      ad_dtype_name(dt), i, got[i], ref[i], fabs(got[i] - r),
                      rtol * fabs(r) + atol);
    }
}

/* ---- the inputs ------------------------------------------------------------------------
 * Four lines of four, all exactly representable in float32: huge equal-ish
 * logits, huge negative ones, mixed signs 2000 apart, and ordinary ones. */
#define R 4
#define C 4
static const double X[R * C] = {
    1000, 999, 998.5, -1000,     /* */
    -1000, -1000.5, -1001, -999, /* */
    0.5, -0.25, 1000, -1000,     /* */
    0.125, -0.5, 2, 1.5,         /* */
};
/* Upstream gradient weights (exact in float32). */
static const double W[R * C] = {0.5, -1.25, 2, 0.75, 1, 0.25, -0.5, 1.5,
                                -2, 0.5, 1, 0.25, 0.75, 0.5, -1, 2};
static const int64_t LABELS[R] = {1, 3, 2, 0};

/* The inputs as the dtype holds them (identical here, but read back so the
 * references start from exactly what the op saw). */
static void inputs_as(ad_dtype dt, double *x)
{
    ad_tape *t = ad_tape_new();
    rd(leaf(t, dt, 2, (int64_t[]){R, C}, X), x);
    ad_tape_free(t);
}

/* Per line: max, log-sum-exp and softmax in long double. */
static void ref_lines(const double *x, long double *lse, long double *sm)
{
    for (int r = 0; r < R; r++) {
        long double m = -INFINITY, s = 0;
        for (int c = 0; c < C; c++) m = fmaxl(m, x[r * C + c]);
        for (int c = 0; c < C; c++) s += expl((long double)x[r * C + c] - m);
        lse[r] = m + logl(s);
        for (int c = 0; c < C; c++) sm[r * C + c] = expl((long double)x[r * C + c] - lse[r]);
    }
}

/* loss = sum(W * f(x)) with x [R,C] of dtype dt; values of f(x) and dloss/dx. */
typedef ad_tensor *(*line_fn)(ad_tensor *x);
static void run_weighted(ad_dtype dt, line_fn f, int nout, double *val, double *grad)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf(t, dt, 2, (int64_t[]){R, C}, X);
    ad_tensor *y = f(x);
    rd(y, val);
    ck_assert_int_eq(ad_numel(y), nout);
    ad_tensor *w = ad_empty(t, dt, ad_ndim(y), ad_shape(y));
    ck_assert_int_eq(ad_copy_into(w, ad_from_array(t, AD_FLOAT64, ad_ndim(y), ad_shape(y), W)), 0);
    ad_tensor *loss = ad_sum(ad_mul(y, w), NULL, 0, false);
    ck_assert_msg(ad_backward(loss, NULL, 0) == 0, "%s", ad_error());
    rd(ad_tensor_grad(x), grad);
    ad_tape_free(t);
}

static ad_tensor *f_softmax(ad_tensor *x) { return ad_softmax(x, 1); }
static ad_tensor *f_log_softmax(ad_tensor *x) { return ad_log_softmax(x, -1); }
static ad_tensor *f_logsumexp(ad_tensor *x) { return ad_logsumexp(x, (int[]){1}, 1, false); }

static const ad_dtype DTYPES[2] = {AD_FLOAT32, AD_FLOAT64};

START_TEST(softmax_at_1000)
{
    ad_dtype dt = DTYPES[_i];
    double x[R * C], val[R * C], grad[R * C];
    long double lse[R], sm[R * C], ref[R * C];
    inputs_as(dt, x);
    ref_lines(x, lse, sm);
    run_weighted(dt, f_softmax, R * C, val, grad);
    expect_near("softmax", dt, R * C, val, sm, rtol_of(dt));
    /* d/dx sum(w y) = y (w - sum(w y)) */
    for (int r = 0; r < R; r++) {
        long double s = 0;
        for (int c = 0; c < C; c++) s += W[r * C + c] * sm[r * C + c];
        for (int c = 0; c < C; c++) ref[r * C + c] = sm[r * C + c] * (W[r * C + c] - s);
    }
    expect_near("softmax grad", dt, R * C, grad, ref, 4 * rtol_of(dt));
    /* Each line sums to 1. */
    for (int r = 0; r < R; r++) {
        double s = 0;
        for (int c = 0; c < C; c++) s += val[r * C + c];
        ck_assert_msg(fabs(s - 1) <= 4 * rtol_of(dt), "line %d sums to %.17g", r, s);
    }
}
END_TEST

START_TEST(log_softmax_at_1000)
{
    ad_dtype dt = DTYPES[_i];
    double x[R * C], val[R * C], grad[R * C];
    long double lse[R], sm[R * C], ref[R * C];
    inputs_as(dt, x);
    ref_lines(x, lse, sm);
    run_weighted(dt, f_log_softmax, R * C, val, grad);
    for (int i = 0; i < R * C; i++) ref[i] = x[i] - lse[i / C];
    /* x - lse: both near 1000 where the inputs are, so the absolute
     * precision is that of the inputs' magnitude (2000 apart: the last
     * element of line 0 is -2000.3...). */
    expect_near("log_softmax", dt, R * C, val, ref, rtol_of(dt));
    /* d/dx sum(w log_softmax) = w - softmax sum(w) */
    for (int r = 0; r < R; r++) {
        long double s = 0;
        for (int c = 0; c < C; c++) s += W[r * C + c];
        for (int c = 0; c < C; c++) ref[r * C + c] = W[r * C + c] - sm[r * C + c] * s;
    }
    expect_near("log_softmax grad", dt, R * C, grad, ref, 4 * rtol_of(dt));
}
END_TEST

START_TEST(logsumexp_at_1000)
{
    ad_dtype dt = DTYPES[_i];
    double x[R * C], val[R], grad[R * C];
    long double lse[R], sm[R * C], ref[R * C];
    inputs_as(dt, x);
    ref_lines(x, lse, sm);
    run_weighted(dt, f_logsumexp, R, val, grad);
    expect_near("logsumexp", dt, R, val, lse, 0);
    /* d/dx sum_r w_r lse_r = w_r softmax */
    for (int i = 0; i < R * C; i++) ref[i] = W[i / C] * sm[i];
    expect_near("logsumexp grad", dt, R * C, grad, ref, 4 * rtol_of(dt));
}
END_TEST

START_TEST(cross_entropy_at_1000)
{
    ad_dtype dt = DTYPES[_i];
    double x[R * C], grad[R * C];
    long double lse[R], sm[R * C], ref[R * C];
    inputs_as(dt, x);
    ref_lines(x, lse, sm);
    for (int red = 0; red < 3; red++) {
        ad_tape *t = ad_tape_new();
        ad_tensor *lg = leaf(t, dt, 2, (int64_t[]){R, C}, X);
        ad_tensor *lab = ad_from_array(t, AD_INT64, AD_SHAPE(R), LABELS);
        ad_tensor *l = ad_cross_entropy(lg, lab, (ad_reduction)red);
        ck_assert_msg(l != NULL, "%s", ad_error());
        long double per[R], total = 0;
        for (int r = 0; r < R; r++) total += per[r] = lse[r] - x[r * C + LABELS[r]];
        double got[R];
        rd(l, got);
        if (red == AD_REDUCTION_NONE) {
            /* The per-sample losses are differences of numbers near 1000
             * (line 1: 1000.31 - 999), known to the inputs' precision. */
            expect_near("cross_entropy none", dt, R, got, per, 1000 * rtol_of(dt));
            ck_assert_int_eq(ad_backward(l, ad_ones(t, dt, AD_SHAPE(R)), 0), 0);
        } else {
            long double want = red == AD_REDUCTION_MEAN ? total / R : total;
            expect_near("cross_entropy", dt, 1, got, &want, 1000 * rtol_of(dt));
            ck_assert_int_eq(ad_backward(l, NULL, 0), 0);
        }
        rd(ad_tensor_grad(lg), grad);
        /* dx = (softmax - onehot) / N for mean */
        long double scale = red == AD_REDUCTION_MEAN ? 1.0L / R : 1.0L;
        for (int i = 0; i < R * C; i++)
            ref[i] = scale * (sm[i] - (LABELS[i / C] == i % C ? 1 : 0));
        expect_near("cross_entropy grad", dt, R * C, grad, ref, 4 * rtol_of(dt));
        ad_tape_free(t);
    }
}
END_TEST

/* ---- sigmoid and softplus: elementwise, over the whole range ------------------------- */
static const double S[] = {-1000, -745, -700, -100, -80, -30, -1, -0x1p-30, 0,
                           0x1p-30, 1, 30, 80, 100, 700, 745, 1000};
#define NS ((int)(sizeof S / sizeof *S))

static void run_unary(ad_dtype dt, line_fn f, double *val, double *grad)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf(t, dt, 1, (int64_t[]){NS}, S);
    ad_tensor *y = f(x);
    rd(y, val);
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    rd(ad_tensor_grad(x), grad);
    ad_tape_free(t);
}

START_TEST(sigmoid_whole_range)
{
    ad_dtype dt = DTYPES[_i];
    double val[NS], grad[NS];
    run_unary(dt, ad_sigmoid, val, grad);
    for (int i = 0; i < NS; i++) {
        long double x = (dt == AD_FLOAT32 ? (float)S[i] : S[i]);
        long double s = 1.0L / (1.0L + expl(-x)), ds = expl(-fabsl(x)) / powl(1 + expl(-fabsl(x)), 2);
        /* The header promises full relative precision in the left tail
         * (down to the subnormals) and exact 0 and 1 far out. */
        expect_near("sigmoid", dt, 1, &val[i], &s, tiny_of(dt));
        /* The derivative y (1 - y): relative precision in the left tail;
         * in the right tail 1 - y rounds to 0 before y does, so only
         * absolute precision (the derivative is below eps there). */
        expect_near("sigmoid grad", dt, 1, &grad[i], &ds, x < 0 ? tiny_of(dt) : eps_of(dt));
        ck_assert(val[i] >= 0 && val[i] <= 1);
    }
    ck_assert(val[0] == 0 && val[NS - 1] == 1);
}
END_TEST

START_TEST(softplus_whole_range)
{
    ad_dtype dt = DTYPES[_i];
    double val[NS], grad[NS];
    run_unary(dt, ad_softplus, val, grad);
    for (int i = 0; i < NS; i++) {
        long double x = (dt == AD_FLOAT32 ? (float)S[i] : S[i]);
        long double sp = (x > 0 ? x : 0) + log1pl(expl(-fabsl(x)));
        long double s = 1.0L / (1.0L + expl(-x));
        expect_near("softplus", dt, 1, &val[i], &sp, tiny_of(dt));
        expect_near("softplus grad", dt, 1, &grad[i], &s, x < 0 ? tiny_of(dt) : 0);
    }
    ck_assert(val[NS - 1] == 1000);
}
END_TEST

/* ---- documented non-finite cases ---------------------------------------------------- */
START_TEST(non_finite_lines)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_from_array(t, AD_FLOAT64, AD_SHAPE(3, 2),
                                 ((double[]){-INFINITY, -INFINITY, INFINITY, 1, NAN, 0}));
    double v[6], l[3];
    /* logsumexp: all -inf gives -inf, any +inf gives +inf, NaN gives NaN */
    rd(ad_logsumexp(x, (int[]){1}, 1, false), l);
    ck_assert(isinf(l[0]) && l[0] < 0);
    ck_assert(isinf(l[1]) && l[1] > 0);
    ck_assert(isnan(l[2]));
    /* softmax: an all -inf line is NaN (0/0), a line with NaN is NaN */
    rd(ad_softmax(x, 1), v);
    ck_assert(isnan(v[0]) && isnan(v[1]));
    ck_assert(isnan(v[4]) && isnan(v[5]));
    rd(ad_log_softmax(x, 1), v);
    ck_assert(isnan(v[0]) && isnan(v[1]));
    ck_assert(isnan(v[4]) && isnan(v[5]));
    ad_tape_free(t);
}
END_TEST

/* ---- derivatives at kinks ------------------------------------------------------------------ */

/* Gradient of sum(f(x)) at the given points (float64). */
static void grad_at(line_fn f, int n, const double *xv, double *g)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf(t, AD_FLOAT64, 1, (int64_t[]){n}, xv);
    ad_tensor *y = ad_sum(f(x), NULL, 0, false);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    rd(ad_tensor_grad(x), g);
    ad_tape_free(t);
}

static ad_tensor *f_leaky(ad_tensor *x) { return ad_leaky_relu(x, 0.1); }
static ad_tensor *f_clamp(ad_tensor *x) { return ad_clamp(x, -1, 2); }
static ad_tensor *f_clamp_point(ad_tensor *x) { return ad_clamp(x, 0.5, 0.5); }
static ad_tensor *f_max_all(ad_tensor *x) { return ad_max(x, NULL, 0, false); }
static ad_tensor *f_min_all(ad_tensor *x) { return ad_min(x, NULL, 0, false); }

START_TEST(kinks_of_unary_ops)
{
    double g[5];
    /* relu: g [x > 0], 0 at x = 0 */
    grad_at(ad_relu, 3, (double[]){-1, 0, 1}, g);
    ck_assert(g[0] == 0 && g[1] == 0 && g[2] == 1);
    /* abs: g sign(x), 0 at x = 0 (and -0) */
    grad_at(ad_abs, 4, (double[]){-2, 0, -0.0, 3}, g);
    ck_assert(g[0] == -1 && g[1] == 0 && g[2] == 0 && g[3] == 1);
    /* leaky_relu: slope at 0 ([x <= 0]) */
    grad_at(f_leaky, 3, (double[]){-1, 0, 1}, g);
    ck_assert(g[0] == 0.1 && g[1] == 0.1 && g[2] == 1);
    /* clamp: the bounds pass the gradient, outside does not */
    grad_at(f_clamp, 5, (double[]){-3, -1, 0, 2, 5}, g);
    ck_assert(g[0] == 0 && g[1] == 1 && g[2] == 1 && g[3] == 1 && g[4] == 0);
    /* lo == hi: only x == lo == hi is inside [lo, hi] */
    grad_at(f_clamp_point, 3, (double[]){0, 0.5, 1}, g);
    ck_assert(g[0] == 0 && g[1] == 1 && g[2] == 0);
    /* max/min reductions: ties split the gradient evenly, g/count each */
    grad_at(f_max_all, 5, (double[]){3, 1, 3, -2, 3}, g);
    for (int i = 0; i < 5; i++) ck_assert(g[i] == (i % 2 == 0 ? 1.0 / 3 : 0));
    grad_at(f_min_all, 4, (double[]){-1, 4, -1, 0}, g);
    ck_assert(g[0] == 0.5 && g[1] == 0 && g[2] == 0.5 && g[3] == 0);
}
END_TEST

START_TEST(kinks_of_binary_ops)
{
    /* maximum/minimum: a tie gives g/2 to each; pow at 0 (ops_pointwise.h) */
    ad_tape *t = ad_tape_new();
    ad_tensor *a = leaf(t, AD_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 0});
    ad_tensor *b = leaf(t, AD_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 3, 0});
    ad_tensor *y = ad_sum(ad_add(ad_maximum(a, b), ad_mul_scalar(ad_minimum(a, b), 10)), NULL,
                          0, false);
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    double ga[3], gb[3];
    rd(ad_tensor_grad(a), ga);
    rd(ad_tensor_grad(b), gb);
    /* tie at 1: (1 + 10)/2 each; 2 < 3: max to b, min to a; tie at 0 */
    ck_assert(ga[0] == 5.5 && gb[0] == 5.5);
    ck_assert(ga[1] == 10 && gb[1] == 1);
    ck_assert(ga[2] == 5.5 && gb[2] == 5.5);
    ad_zero_grad(a);
    ad_zero_grad(b);
    /* pow: where a == 0, db = 0; at a == b == 0, da = 0 (not 0 * inf) */
    ad_tensor *p = ad_sum(ad_pow(a, b), NULL, 0, false);
    ck_assert_int_eq(ad_backward(p, NULL, 0), 0);
    rd(ad_tensor_grad(a), ga);
    rd(ad_tensor_grad(b), gb);
    ck_assert(ga[2] == 0 && gb[2] == 0);
    ck_assert(ga[0] == 1 && gb[0] == 0);        /* 1^1: da = 1, db = ln 1 = 0 */
    ck_assert_close(gb[1], 8 * log(2.0), 1e-14); /* 2^3 ln 2 */
    ad_tape_free(t);
}
END_TEST

START_TEST(max_pool_ties_go_to_the_first)
{
    /* One 2x2 window whose maximum 5 appears twice: all of g to the first
     * in row-major order (ops_nn.h, as PyTorch). */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf(t, AD_FLOAT64, 4, (int64_t[]){1, 1, 2, 2}, (double[]){5, 1, 2, 5});
    ad_tensor *y = ad_max_pool2d(x, (int[]){2, 2}, NULL, NULL);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    double g[4];
    rd(ad_tensor_grad(x), g);
    ck_assert(g[0] == 1 && g[1] == 0 && g[2] == 0 && g[3] == 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(kinks_of_the_scalar_api)
{
    /* scalar.h: relu'(0) = 0, abs'(0) = 0, max/min give 1/2 each on a tie */
    ad_tape *t = ad_tape_new();
    ad_scalar z = ad_scalar_var(t, 0), u = ad_scalar_var(t, 2), v = ad_scalar_var(t, 2);
    ad_scalar r = ad_srelu(z);
    ck_assert_int_eq(ad_scalar_backward(r), 0);
    ck_assert(ad_scalar_grad(z) == 0);
    r = ad_sabs(z);
    ck_assert_int_eq(ad_scalar_backward(r), 0);
    ck_assert(ad_scalar_grad(z) == 0);
    r = ad_smax(u, v);
    ck_assert_int_eq(ad_scalar_backward(r), 0);
    ck_assert(ad_scalar_grad(u) == 0.5 && ad_scalar_grad(v) == 0.5);
    r = ad_smin(u, v);
    ck_assert_int_eq(ad_scalar_backward(r), 0);
    ck_assert(ad_scalar_grad(u) == 0.5 && ad_scalar_grad(v) == 0.5);
    /* sigmoid far out: exact 0 / 1 and finite partials */
    ad_scalar big = ad_scalar_var(t, 1000), small = ad_scalar_var(t, -1000);
    ck_assert(ad_scalar_value(ad_ssigmoid(big)) == 1);
    ck_assert(ad_scalar_value(ad_ssigmoid(small)) == 0);
    r = ad_sadd(ad_ssigmoid(big), ad_ssigmoid(small));
    ck_assert_int_eq(ad_scalar_backward(r), 0);
    ck_assert(ad_scalar_grad(big) == 0 && ad_scalar_grad(small) == 0);
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("numeric");
    TCase *tc = tcase_create("stable");
    tcase_add_loop_test(tc, softmax_at_1000, 0, 2);
    tcase_add_loop_test(tc, log_softmax_at_1000, 0, 2);
    tcase_add_loop_test(tc, logsumexp_at_1000, 0, 2);
    tcase_add_loop_test(tc, cross_entropy_at_1000, 0, 2);
    tcase_add_loop_test(tc, sigmoid_whole_range, 0, 2);
    tcase_add_loop_test(tc, softplus_whole_range, 0, 2);
    tcase_add_test(tc, non_finite_lines);
    suite_add_tcase(s, tc);
    TCase *tk = tcase_create("kinks");
    tcase_add_test(tk, kinks_of_unary_ops);
    tcase_add_test(tk, kinks_of_binary_ops);
    tcase_add_test(tk, max_pool_ties_go_to_the_first);
    tcase_add_test(tk, kinks_of_the_scalar_api);
    suite_add_tcase(s, tk);
    return ot_run(s);
}

/* tests/test_gradcheck.c - the checkers must pass right gradients and catch
 * wrong ones, saying where; they must not pass when the numeric derivative
 * is not finite or when nothing was compared, and must not fail right
 * gradients near a domain edge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../autodiff/internal.h"
#include "optest.h"

/* f(x, y) = sum(x * exp(y)): smooth, both inputs differentiable. */
static ad_tensor *f_good(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_sum(ad_mul(in[0], ad_exp(in[1])), NULL, 0, false);
}

/* x * detach(x): the analytic gradient misses one of the two paths, so it
 * is x where the true derivative is 2x. */
static ad_tensor *f_cut(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_mul(in[0], ad_detach(in[0]));
}

/* A deliberately broken op: y = x^2 with the rule 2 g detach(x).  Its first
 * derivative is right, but the rule is not recorded through x, so its
 * second derivative is lost: gradgradcheck must notice. */
static int bad_square_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul_scalar(ad_mul(g, ad_detach(n->in[0])), 2.0);
    return 0;
}
static const ad_op BAD_SQUARE = {
    .name = "bad_square",
    .formula = "y = x^2; dx = 2 g x (not differentiable)",
    .backward = bad_square_bw,
    .forward = NULL,
};
static ad_tensor *f_bad_square(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *x = in[0];
    bool prev = ad_set_grad_enabled(false);
    ad_tensor *y = ad_mul(x, x);
    ad_set_grad_enabled(prev);
    ad_node *node;
    if (!y || ad__record(&BAD_SQUARE, y, 1, &x, &node)) return NULL;
    return y;
}

static ad_tensor *f_fails(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_add(in[0], NULL);
}

START_TEST(passes_a_right_gradient)
{
    ad_tensor *x = ot_f64(NULL, 2, (int64_t[]){2, 2}, (double[]){0.1, -0.7, 1.3, 0.4});
    ad_tensor *y = ot_f64(NULL, 1, (int64_t[]){2}, (double[]){0.2, -0.5});
    ad_set_requires_grad(x, true);
    ad_set_requires_grad(y, true);
    ad_tensor *in[2] = {x, y};
    ck_assert_int_eq(ad_gradcheck(f_good, NULL, 2, in, NULL), 1);
    ck_assert_int_eq(ad_gradgradcheck(f_good, NULL, 2, in, NULL), 1);
    /* the caller's tensors are untouched */
    ck_assert_ptr_null(ad_tensor_grad(x));
    ck_assert_close(ot_at(x, 1), -0.7, 0);
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

START_TEST(catches_a_wrong_gradient_and_says_where)
{
    ad_tensor *x = ot_f64(NULL, 2, (int64_t[]){2, 2}, (double[]){0.5, 0, 0, 0});
    ad_set_requires_grad(x, true);
    ad_clear_error();
    ck_assert_int_eq(ad_gradcheck(f_cut, NULL, 1, &x, NULL), 0);
    /* element [0,0] of input 0 for output [0,0]: analytic x = 0.5, numeric 2x = 1 */
    const char *e = ad_error();
    ck_assert_ptr_nonnull(e);
    ck_assert_msg(strstr(e, "input 0 element [0,0], output element [0,0]"), "%s", e);
    ck_assert_msg(strstr(e, "analytic 0.5 vs numeric 1"), "%s", e);
    ad_tensor_free(x);
}
END_TEST

START_TEST(float32_inputs_are_checked_in_float64)
{
    ad_tensor *x = ad_full(NULL, AD_FLOAT32, AD_SHAPE(3), 0.3);
    ad_tensor *y = ad_full(NULL, AD_FLOAT32, AD_SHAPE(3), -0.2);
    ad_set_requires_grad(x, true);
    ad_tensor *in[2] = {x, y}; /* y does not require grad: not checked */
    ck_assert_int_eq(ad_gradcheck(f_good, NULL, 2, in, NULL), 1);
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

START_TEST(gradgradcheck_catches_a_rule_that_is_not_differentiable)
{
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){3}, (double[]){0.5, -1, 2});
    ad_set_requires_grad(x, true);
    ck_assert_int_eq(ad_gradcheck(f_bad_square, NULL, 1, &x, NULL), 1);
    ad_clear_error();
    ck_assert_int_eq(ad_gradgradcheck(f_bad_square, NULL, 1, &x, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "ad_gradgradcheck: second derivatives"), "%s", ad_error());
    ck_assert_msg(strstr(ad_error(), "analytic 0 vs numeric"), "%s", ad_error());
    ad_tensor_free(x);
}
END_TEST

/* y = 2x whose rule is 6 g for an x that is not contiguous: the checkers
 * give f the caller's layout, so a transposed input finds it. */
static int twice_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul_scalar(g, ad_is_contiguous(n->in[0]) ? 2.0 : 6.0);
    return 0;
}
static const ad_op TWICE = {
    .name = "twice_wrong_when_strided",
    .formula = "y = 2x; dx = 2 g (6 g for a strided x: wrong)",
    .backward = twice_bw,
    .forward = NULL,
};
static ad_tensor *f_twice(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *x = in[0];
    bool prev = ad_set_grad_enabled(false);
    ad_tensor *y = ad_mul_scalar(x, 2.0);
    ad_set_grad_enabled(prev);
    ad_node *node;
    if (!y || ad__record(&TWICE, y, 1, &x, &node)) return NULL;
    return y;
}

START_TEST(inputs_keep_their_layout)
{
    ad_tensor *base = ot_f64(NULL, 2, (int64_t[]){3, 2}, (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *xt = ad_transpose(base, 0, 1), *st = ad_slice(base, 0, 0, 3, 2);
    ad_tensor *plain = ad_copy(NULL, base);
    ck_assert_int_eq(ad_set_requires_grad(xt, true), 0);
    ck_assert_int_eq(ad_set_requires_grad(st, true), 0);
    ck_assert_int_eq(ad_set_requires_grad(plain, true), 0);
    ck_assert_int_eq(ad_gradcheck(f_twice, NULL, 1, &plain, NULL), 1); /* contiguous: right */
    ad_clear_error();
    ck_assert_int_eq(ad_gradcheck(f_twice, NULL, 1, &xt, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "analytic 6 vs numeric 2"), "%s", ad_error());
    ad_clear_error();
    ck_assert_int_eq(ad_gradcheck(f_twice, NULL, 1, &st, NULL), 0); /* a stepped slice */
    ad_clear_error();
    ad_tensor_free(xt);
    ad_tensor_free(st);
    ad_tensor_free(plain);
    ad_tensor_free(base);
}
END_TEST

/* sin(detach(x)): the tape's gradient is 0 whatever x is, so its second
 * derivatives are 0 and finite differences of it agree: gradgradcheck
 * checks the first derivatives then, and fails; a comparison (truly 0
 * derivatives) passes. */
static ad_tensor *f_sin_detached(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_sin(ad_detach(in[0]));
}
static ad_tensor *f_gt(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_gt(in[0], in[1]);
}

START_TEST(gradgradcheck_of_an_output_off_the_tape)
{
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){3}, (double[]){0.1, 0.2, 0.3});
    ad_tensor *y = ot_f64(NULL, 1, (int64_t[]){3}, (double[]){0.5, -0.2, 0.9});
    ad_set_requires_grad(x, true);
    ad_clear_error();
    ck_assert_int_eq(ad_gradgradcheck(f_sin_detached, NULL, 1, &x, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "its gradient is 0 on the tape, but its first derivatives "
                                     "are not"),
                  "%s", ad_error());
    ad_clear_error();
    ad_tensor *in[2] = {x, y};
    ck_assert_int_eq(ad_gradgradcheck(f_gt, NULL, 2, in, NULL), 1);
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

START_TEST(reports_errors)
{
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){2}, (double[]){1, 2});
    ad_set_requires_grad(x, true);
    ck_assert_error_rc(ad_gradcheck(NULL, NULL, 1, &x, NULL), "function is NULL");
    ck_assert_error_rc(ad_gradcheck(f_good, NULL, 0, &x, NULL), "need 1 to 64 inputs");
    ad_tensor *none[1] = {NULL};
    ck_assert_error_rc(ad_gradcheck(f_cut, NULL, 1, none, NULL), "is NULL");
    ck_assert_error_rc(ad_gradcheck(f_fails, NULL, 1, &x, NULL),
                       "ad_gradcheck: the function failed: ad_add: argument 'b' is NULL");
    ad_gradcheck_opts bad = {0, 1e-5, 1e-3, NULL};
    ck_assert_error_rc(ad_gradcheck(f_cut, NULL, 1, &x, &bad), "eps must be > 0");
    bad.eps = INFINITY; /* a step must be a number */
    ck_assert_error_rc(ad_gradcheck(f_cut, NULL, 1, &x, &bad), "eps must be > 0 and finite");
    ad_tensor_free(x);
}
END_TEST

START_TEST(tolerances_are_honoured)
{
    /* With a huge rtol even the cut gradient "passes": the options are used. */
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){2}, (double[]){0.5, 1});
    ad_set_requires_grad(x, true);
    ad_gradcheck_opts loose = {1e-6, 1e-5, 1.0, NULL};
    ck_assert_int_eq(ad_gradcheck(f_cut, NULL, 1, &x, &loose), 1);
    ad_tensor_free(x);
}
END_TEST

/* ---- non-finite numeric derivatives ----------------------------------------------------
 * 0^x at x = 0: the value is 1, the tape's derivative is 0 (pow's rule
 * takes d(a^b)/db = 0 at a = 0), but 0^(-h) = inf, so the central
 * difference (0 - inf) / 2h is -inf at every step.  The old test
 * |0 - (-inf)| <= atol + rtol |-inf| read inf <= inf and passed. */
static ad_tensor *f_zero_pow(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *zero = ad_zeros(ad_tensor_tape(in[0]), AD_FLOAT64, 1, (int64_t[]){1});
    return ad_pow(zero, in[0]);
}

static ad_tensor *f_log(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_log(in[0]);
}

static ad_tensor *f_sqrt(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_sqrt(in[0]);
}

static ad_tensor *f_exp(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_exp(in[0]);
}

START_TEST(an_infinite_numeric_derivative_fails)
{
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){1}, (double[]){0});
    ad_set_requires_grad(x, true);
    ad_gradcheck_result r;
    ad_clear_error();
    ck_assert_int_eq(ad_gradcheck_ex(f_zero_pow, NULL, 1, &x, NULL, &r), 0);
    const char *e = ad_error();
    ck_assert_ptr_nonnull(e);
    ck_assert_msg(strstr(e, "ad_gradcheck: 1 of 1 Jacobian entries disagree; the worst: input 0 "
                            "element [0], output element [0]: analytic 0 vs numeric -inf"), "%s", e);
    ck_assert_msg(strstr(e, "no step from 1e-06 down to"), "%s", e);
    ck_assert_msg(strstr(e, "only the same infinity on both sides passes"), "%s", e);
    ck_assert_int_eq(r.checked, 1);
    ck_assert_int_eq(r.failed, 1);
    ck_assert_int_eq(r.input, 0);
    ck_assert(r.analytic == 0 && r.numeric == -INFINITY && r.ratio == INFINITY);
    ad_tensor_free(x);
}
END_TEST

START_TEST(a_nan_numeric_derivative_fails)
{
    /* log at -1: the value is NaN, the tape says 1/x = -1 */
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){1}, (double[]){-1});
    ad_set_requires_grad(x, true);
    ad_gradcheck_result r;
    ck_assert_int_eq(ad_gradcheck_ex(f_log, NULL, 1, &x, NULL, &r), 0);
    ck_assert_msg(strstr(ad_error(), "analytic -1 vs numeric nan"), "%s", ad_error());
    ck_assert(isnan(r.numeric) && r.analytic == -1 && r.ratio == INFINITY);
    ad_tensor_free(x);
}
END_TEST

START_TEST(the_same_infinity_passes_and_is_reported)
{
    /* exp overflows above log(DBL_MAX) = 709.78: at x = 709.7828 the tape
     * says exp(x) = inf, and so does the central difference
     * (inf - exp(x - h)) / 2h.  (One element only: with two, the tape's
     * derivative of exp(x_0) along the other output is 0 * inf = NaN,
     * which rightly fails.) */
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){1}, (double[]){709.7828});
    ad_set_requires_grad(x, true);
    FILE *rep = tmpfile();
    ck_assert_ptr_nonnull(rep);
    ad_gradcheck_opts o = AD_GRADCHECK_DEFAULTS;
    o.report = rep;
    ad_gradcheck_result r;
    ck_assert_int_eq(ad_gradcheck_ex(f_exp, NULL, 1, &x, &o, &r), 1);
    ck_assert_int_eq(r.checked, 1);
    ck_assert_int_eq(r.failed, 0);
    ck_assert_int_eq(r.infinite, 1);
    ck_assert(r.analytic == INFINITY && r.numeric == INFINITY && r.abs_err == 0 && r.ratio == 0);
    char text[2000] = "";
    rewind(rep);
    size_t len = fread(text, 1, sizeof text - 1, rep);
    text[len] = '\0';
    fclose(rep);
    ck_assert_msg(strstr(text, "ad_gradcheck: input 0 element [0], output element [0]: analytic "
                               "inf vs numeric inf (both inf: accepted as the same infinity)"),
                  "%s", text);
    ck_assert_msg(strstr(text, "ad_gradcheck: all 1 Jacobian entries agree (1 as the same "
                               "infinity)"), "%s", text);
    ad_tensor_free(x);
}
END_TEST

/* ---- nothing checked --------------------------------------------------------------- */
static ad_tensor *f_empty(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_narrow(in[0], 0, 0, 0);
}

START_TEST(nothing_checked_fails)
{
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){2}, (double[]){1, 2});
    ad_tensor *y = ot_f64(NULL, 1, (int64_t[]){2}, (double[]){3, 4});
    ad_tensor *in[2] = {x, y};
    ad_gradcheck_result r;
    /* no input requires grad: 0, not 1, and the message says why */
    ad_clear_error();
    ck_assert_int_eq(ad_gradcheck_ex(f_good, NULL, 2, in, NULL, &r), 0);
    ck_assert_str_eq(ad_error(), "ad_gradcheck: nothing was checked: no input requires grad "
                                 "(mark the floating inputs to check with ad_set_requires_grad)");
    ck_assert_int_eq(r.checked, 0);
    ck_assert_int_eq(r.input, -1);
    ad_clear_error();
    ck_assert_int_eq(ad_gradgradcheck_ex(f_good, NULL, 2, in, NULL, &r), 0);
    ck_assert_msg(strstr(ad_error(), "ad_gradgradcheck: nothing was checked: no input requires "
                                     "grad"), "%s", ad_error());
    ck_assert_int_eq(r.checked, 0);
    /* an output with no elements compares nothing either */
    ad_set_requires_grad(x, true);
    ad_clear_error();
    ck_assert_int_eq(ad_gradcheck(f_empty, NULL, 1, &x, NULL), 0);
    ck_assert_str_eq(ad_error(),
                     "ad_gradcheck: nothing was checked: the function's output has no elements");
    ck_assert_int_eq(ad_gradgradcheck(f_empty, NULL, 1, &x, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "nothing was checked"), "%s", ad_error());
    /* nor do inputs that require grad but have no elements */
    ad_tensor *none = ad_zeros(NULL, AD_FLOAT64, 1, (int64_t[]){0});
    ad_set_requires_grad(none, true);
    ck_assert_int_eq(ad_gradcheck(f_log, NULL, 1, &none, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "nothing was checked: the inputs that require grad have no "
                                     "elements"), "%s", ad_error());
    ad_tensor_free(none);
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

/* sin with a rule that detaches its incoming gradient, gin = detach(g)
 * cos(x): right to first order, and in x for a fixed g, so the Jacobian
 * checks of the gradient pass it; its Hessians are wrong (sum(y^2)'s
 * diagonal -0.17 for 1.65).  ad_gradgradcheck's check along a direction
 * in g catches it; the rule written with g passes. */
static ad_tensor *dsin_fw(ad_custom_ctx *c, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    ad_custom_save(c, 1, in);
    return ad_sin(in[0]);
}
static int dsin_bw(ad_custom_ctx *c, ad_tensor *g, ad_tensor **gin, void *u)
{
    bool detach = *(const bool *)u;
    gin[0] = ad_mul(detach ? ad_detach(g) : g, ad_cos(ad_custom_saved(c, 0)));
    return gin[0] ? 0 : -1;
}
static ad_tensor *f_custom(ad_tensor *const *x, int n, void *ctx)
{
    (void)n;
    return ad_custom_call(ctx, 1, x);
}

START_TEST(gradgradcheck_catches_a_rule_that_detaches_g)
{
    double xv[3] = {0.3, -1.1, 0.8};
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){3}, xv);
    ad_set_requires_grad(x, true);
    for (int detach = 0; detach < 2; detach++) {
        static bool flags[2] = {false, true};
        ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "sin_rule", .nin = 1,
                                                        .forward = dsin_fw, .backward = dsin_bw,
                                                        .user = &flags[detach]});
        ck_assert_ptr_nonnull(op);
        ck_assert_int_eq(ad_gradcheck(f_custom, op, 1, &x, NULL), 1);
        ad_clear_error();
        int r = ad_gradgradcheck(f_custom, op, 1, &x, NULL);
        ck_assert_msg(r == !detach, "detach %d: %d %s", detach, r, ad_error() ? ad_error() : "");
        if (detach)
            ck_assert_msg(strstr(ad_error(), "the derivative in the incoming gradient g"), "%s",
                          ad_error());
        ad_clear_error();
        ad_custom_free(op);
    }
    ad_tensor_free(x);
}
END_TEST

/* ---- domain edges ------------------------------------------------------------------
 * log and sqrt at 1e-6: the first step h = 1e-6 reaches x - h = 0, where
 * log is -inf and sqrt's central difference is (sqrt(2e-6) - 0) / 2e-6 =
 * 707 against the true 500.  The smaller steps and their Richardson
 * extrapolations find the derivative; the test asserts the numeric value
 * found, not only the verdict. */
/* f that rounds coarser than float64: 2 x through float32, and 2 x through
 * a cancellation at 1e8, both with a detached x, so the analytic gradient
 * is 0 where the true one is 2.  The first step sees f move and fails the
 * entry; the retries shrink the step below f's resolution, where f(x + h)
 * = f(x - h), and that zero was trusted and passed the missing gradient. */
static ad_tensor *f_float32_detached(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_cast(ad_mul_scalar(ad_cast(ad_detach(in[0]), AD_FLOAT32), 2.0), AD_FLOAT64);
}
static ad_tensor *f_cancelled_detached(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_mul_scalar(ad_add_scalar(ad_add_scalar(ad_detach(in[0]), 1e8), -1e8), 2.0);
}
START_TEST(a_step_below_f_resolution_does_not_pass_a_missing_gradient)
{
    const double xs[] = {0.1, 0.3, 0.5, 0.7, 1.0, 1.25, 2.0, -0.7, 3.3, 10.0};
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){10}, xs);
    ad_set_requires_grad(x, true);
    ad_gradcheck_result r;
    ck_assert_int_eq(ad_gradcheck_ex(f_float32_detached, NULL, 1, &x, NULL, &r), 0);
    ck_assert_int_eq(r.failed, 10);
    ck_assert_int_eq(ad_gradcheck_ex(f_cancelled_detached, NULL, 1, &x, NULL, &r), 0);
    ck_assert_int_eq(r.failed, 10);
    ad_tensor_free(x);
}
END_TEST

START_TEST(log_and_sqrt_near_zero_pass)
{
    const double xs[3] = {1e-6, 3e-6, 1e-9};
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){3}, xs);
    ad_set_requires_grad(x, true);
    ad_gradcheck_result r;
    ad_clear_error();
    ck_assert_msg(ad_gradcheck_ex(f_log, NULL, 1, &x, NULL, &r) == 1, "%s", ad_error());
    ck_assert_int_eq(r.checked, 9);
    ck_assert_int_eq(r.failed, 0);
    /* the worst entry is still a close one: a finite numeric value */
    ck_assert(isfinite(r.numeric) && r.ratio <= 1);
    ck_assert_msg(ad_gradcheck_ex(f_sqrt, NULL, 1, &x, NULL, &r) == 1, "%s", ad_error());
    ck_assert(r.failed == 0 && r.ratio <= 1);
    /* one element alone, to read its numeric derivative back */
    for (int i = 0; i < 3; i++) {
        ad_tensor *xi = ot_f64(NULL, 1, (int64_t[]){1}, &xs[i]);
        ad_set_requires_grad(xi, true);
        ck_assert_int_eq(ad_gradcheck_ex(f_log, NULL, 1, &xi, NULL, &r), 1);
        ck_assert_msg(fabs(r.numeric - 1 / xs[i]) <= 1e-3 / xs[i], "log'(%g): numeric %.17g",
                      xs[i], r.numeric);
        ck_assert_int_eq(ad_gradcheck_ex(f_sqrt, NULL, 1, &xi, NULL, &r), 1);
        double want = 0.5 / sqrt(xs[i]);
        ck_assert_msg(fabs(r.numeric - want) <= 1e-3 * want, "sqrt'(%g): numeric %.17g", xs[i],
                      r.numeric);
        ck_assert(r.step < xs[i]); /* a step that stays inside the domain */
        ad_tensor_free(xi);
    }
    /* second derivatives there too: -1/x^2 = -1e12 at 1e-6 */
    ck_assert_msg(ad_gradgradcheck(f_log, NULL, 1, &x, NULL) == 1, "%s", ad_error());
    ck_assert_msg(ad_gradgradcheck(f_sqrt, NULL, 1, &x, NULL) == 1, "%s", ad_error());
    ad_tensor_free(x);
}
END_TEST

START_TEST(the_step_is_relative_to_x)
{
    /* sqrt at 1e6: the step is 1e-6 * 1e6 = 1, where the truncation error
     * f'(3) h^2 / 6 is 6e-17; an absolute 1e-6 would be 1e-12 of x, close
     * to its rounding */
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){1}, (double[]){1e6});
    ad_set_requires_grad(x, true);
    ad_gradcheck_result r;
    ck_assert_int_eq(ad_gradcheck_ex(f_sqrt, NULL, 1, &x, NULL, &r), 1);
    ck_assert_close(r.step, 1.0, 1e-9);
    ck_assert(!r.richardson);
    ck_assert_close(r.numeric, 5e-4, 1e-12);
    ad_tensor_free(x);
}
END_TEST

/* ---- the worst entry ------------------------------------------------------------------
 * f(a, x) = exp(a) + x * detach(x) + w x, elementwise: right in a; in x the
 * tape says x + w where the truth is 2x + w.  The disagreement relative
 * to the tolerance, |x| / (atol + rtol |2x + w|), is largest for
 * x = 0.1, w = 0 (476) against x = 0.5, w = 10 (45) and x = 2, w = 100
 * (19); x = 0 agrees. */
static ad_tensor *f_mixed(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *w = ot_const_like(in[1], 1, (int64_t[]){4}, (double[]){10, 0, 100, 0});
    ad_tensor *wrong = ad_add(ad_mul(in[1], ad_detach(in[1])), ad_mul(w, in[1]));
    return ad_add(ad_exp(in[0]), wrong);
}

START_TEST(reports_the_worst_entry)
{
    ad_tensor *a = ot_f64(NULL, 1, (int64_t[]){4}, (double[]){0.3, -0.2, 0.1, 1});
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){4}, (double[]){0.5, 0.1, 2, 0});
    ad_set_requires_grad(a, true);
    ad_set_requires_grad(x, true);
    ad_tensor *in[2] = {a, x};
    FILE *rep = tmpfile();
    ck_assert_ptr_nonnull(rep);
    ad_gradcheck_opts o = AD_GRADCHECK_DEFAULTS;
    o.report = rep;
    ad_gradcheck_result r;
    ad_clear_error();
    ck_assert_int_eq(ad_gradcheck_ex(f_mixed, NULL, 2, in, &o, &r), 0);
    const char *e = ad_error();
    ck_assert_msg(strstr(e, "ad_gradcheck: 3 of 32 Jacobian entries disagree; the worst: input 1 "
                            "element [1], output element [1]: analytic 0.1 vs numeric 0.2 "
                            "(difference 0.1, relative 0.5 > atol 1e-05 + rtol 0.001"), "%s", e);
    ck_assert_int_eq(r.checked, 32);
    ck_assert_int_eq(r.failed, 3);
    ck_assert_int_eq(r.input, 1);
    ck_assert_int_eq(r.grad_of, -1);
    ck_assert_int_eq(r.element, 1);
    ck_assert_int_eq(r.output, 1);
    ck_assert_double_eq(r.analytic, 0.1);
    ck_assert_close(r.numeric, 0.2, 1e-8);
    ck_assert_close(r.abs_err, 0.1, 1e-8);
    ck_assert_close(r.rel_err, 0.5, 1e-7);
    ck_assert_close(r.ratio, 0.1 / (1e-5 + 1e-3 * 0.2), 1e-3);
    /* the report has one line per mismatch, then the verdict */
    char text[4000] = "";
    rewind(rep);
    size_t len = fread(text, 1, sizeof text - 1, rep);
    text[len] = '\0';
    fclose(rep);
    int lines = 0;
    for (const char *p = text; (p = strstr(p, "ad_gradcheck: input 1 element [")); p++) lines++;
    ck_assert_msg(lines == 3, "%d mismatch lines:\n%s", lines, text);
    ck_assert_msg(strstr(text, "input 1 element [0], output element [0]: analytic 10.5 vs numeric "
                               "11 "), "%s", text);
    ck_assert_msg(strstr(text, "input 1 element [2], output element [2]: analytic 102 vs numeric "
                               "104 "), "%s", text);
    ck_assert_msg(strstr(text, "3 of 32 Jacobian entries disagree"), "%s", text);
    ad_tensor_free(a);
    ad_tensor_free(x);
}
END_TEST

START_TEST(gradgradcheck_reports_the_worst_entry)
{
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){3}, (double[]){0.5, -1, 2});
    ad_set_requires_grad(x, true);
    ad_gradcheck_result r;
    ck_assert_int_eq(ad_gradgradcheck_ex(f_bad_square, NULL, 1, &x, NULL, &r), 0);
    /* G(x) = 2 v detach(x): the tape says dG/dx = 0, the truth 2 v (v in
     * [0.5, 1.5)), on the diagonal only */
    ck_assert_int_eq(r.checked, 9);
    ck_assert_int_eq(r.failed, 3);
    ck_assert_int_eq(r.grad_of, 0);
    ck_assert_int_eq(r.input, 0);
    ck_assert_int_eq(r.element, r.output);
    ck_assert(r.analytic == 0 && r.numeric >= 1 && r.numeric < 3);
    ck_assert_msg(strstr(ad_error(), "ad_gradgradcheck: second derivatives through the gradient "
                                     "of input 0: ad_gradcheck: 3 of 9 Jacobian entries "
                                     "disagree; the worst: input 0 element"), "%s", ad_error());
    ad_tensor_free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_test(tc, passes_a_right_gradient);
    tcase_add_test(tc, catches_a_wrong_gradient_and_says_where);
    tcase_add_test(tc, float32_inputs_are_checked_in_float64);
    tcase_add_test(tc, gradgradcheck_catches_a_rule_that_is_not_differentiable);
    tcase_add_test(tc, inputs_keep_their_layout);
    tcase_add_test(tc, gradgradcheck_of_an_output_off_the_tape);
    tcase_add_test(tc, reports_errors);
    tcase_add_test(tc, tolerances_are_honoured);
    tcase_add_test(tc, an_infinite_numeric_derivative_fails);
    tcase_add_test(tc, a_nan_numeric_derivative_fails);
    tcase_add_test(tc, the_same_infinity_passes_and_is_reported);
    tcase_add_test(tc, nothing_checked_fails);
    tcase_add_test(tc, log_and_sqrt_near_zero_pass);
    tcase_add_test(tc, a_step_below_f_resolution_does_not_pass_a_missing_gradient);
    tcase_add_test(tc, the_step_is_relative_to_x);
    tcase_add_test(tc, reports_the_worst_entry);
    tcase_add_test(tc, gradgradcheck_reports_the_worst_entry);
    tcase_add_test(tc, gradgradcheck_catches_a_rule_that_detaches_g);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_gradcheck.c - the checkers must pass right gradients and catch
 * wrong ones, saying where. */
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
static const ad_op BAD_SQUARE = {"bad_square", "y = x^2; dx = 2 g x (not differentiable)",
                                 bad_square_bw, NULL};
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

int main(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_test(tc, passes_a_right_gradient);
    tcase_add_test(tc, catches_a_wrong_gradient_and_says_where);
    tcase_add_test(tc, float32_inputs_are_checked_in_float64);
    tcase_add_test(tc, gradgradcheck_catches_a_rule_that_is_not_differentiable);
    tcase_add_test(tc, reports_errors);
    tcase_add_test(tc, tolerances_are_honoured);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

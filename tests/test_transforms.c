/* tests/test_transforms.c - grad, vjp, jvp, jacobian, hessian, hvp against
 * closed forms and finite differences. */
#include <stdlib.h>
#include <string.h>

#include "optest.h"

/* Extended Rosenbrock: sum over pairs (a, b) = (x[2i], x[2i+1]) of
 * 100 (b - a^2)^2 + (1 - a)^2. */
static ad_tensor *rosenbrock(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *x = in[0];
    int64_t len = ad_size(x, 0);
    ad_tensor *a = ad_slice(x, 0, 0, len, 2), *b = ad_slice(x, 0, 1, len, 2);
    ad_tensor *t1 = ad_square(ad_sub(b, ad_square(a)));
    ad_tensor *t2 = ad_square(ad_rsub_scalar(a, 1.0));
    return ad_sum(ad_add(ad_mul_scalar(t1, 100.0), t2), NULL, 0, false);
}

static void rosen_closed(const double *x, int n, double *g, double *h)
{
    memset(h, 0, (size_t)(n * n) * sizeof *h);
    for (int i = 0; i < n; i += 2) {
        double a = x[i], b = x[i + 1];
        g[i] = -400 * a * (b - a * a) - 2 * (1 - a);
        g[i + 1] = 200 * (b - a * a);
        h[i * n + i] = 1200 * a * a - 400 * b + 2;
        h[i * n + i + 1] = h[(i + 1) * n + i] = -400 * a;
        h[(i + 1) * n + i + 1] = 200;
    }
}

static ad_tensor *softmax1(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_softmax(in[0], 0);
}

static ad_tensor *lse(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_logsumexp(in[0], NULL, 0, false);
}

/* f(x, y) = [x0 y0 + sin x1, x1 y1^2]: two inputs, two outputs. */
static ad_tensor *two_in(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *x = in[0], *y = in[1];
    ad_tensor *x0 = ad_narrow(x, 0, 0, 1), *x1 = ad_narrow(x, 0, 1, 1);
    ad_tensor *y0 = ad_narrow(y, 0, 0, 1), *y1 = ad_narrow(y, 0, 1, 1);
    ad_tensor *parts[2] = {ad_add(ad_mul(x0, y0), ad_sin(x1)), ad_mul(x1, ad_square(y1))};
    return ad_concat(parts, 2, 0);
}

START_TEST(rosenbrock_gradient_and_hessian)
{
    double xs[6] = {-1.2, 1.0, 0.3, -0.4, 1.1, 1.3}, g[6], h[36];
    rosen_closed(xs, 6, g, h);
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){6}, xs);
    ad_tensor *grad, *val, *hess;
    ck_assert_msg(ad_grad(t, rosenbrock, NULL, 1, &x, &grad, &val, 0) == 0, "%s", ad_error());
    for (int i = 0; i < 6; i++) ck_assert_close(ot_at(grad, i), g[i], 1e-10);
    ck_assert_msg(ad_hessian(t, rosenbrock, NULL, x, &hess, 0) == 0, "%s", ad_error());
    ck_assert_int_eq(ad_ndim(hess), 2);
    ck_assert_int_eq(ad_size(hess, 0), 6);
    for (int i = 0; i < 36; i++) ck_assert_close(ot_at(hess, i), h[i], 1e-9);
    /* Hessian-vector product without the Hessian */
    double vs[6] = {1, -2, 0.5, 0, 3, -1};
    ad_tensor *v = ot_f64(t, 1, (int64_t[]){6}, vs), *hv;
    ck_assert_msg(ad_hvp(t, rosenbrock, NULL, x, v, &hv, 0) == 0, "%s", ad_error());
    for (int i = 0; i < 6; i++) {
        double want = 0;
        for (int k = 0; k < 6; k++) want += h[i * 6 + k] * vs[k];
        ck_assert_close(ot_at(hv, i), want, 1e-9);
    }
    ck_assert_ptr_null(ad_tensor_grad(x)); /* the input was not touched */
    ck_assert(!ad_requires_grad(x));
    ad_tape_free(t);
    ad_tensor_free(x);
}
END_TEST

START_TEST(hessian_matches_finite_differences_of_gradient)
{
    double xs[4] = {0.7, -0.2, -1.5, 2.0};
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(NULL, 1, (int64_t[]){4}, xs), *hess;
    ck_assert_int_eq(ad_hessian(t, rosenbrock, NULL, x, &hess, 0), 0);
    const double eps = 1e-6;
    for (int k = 0; k < 4; k++) {
        double gp[4], gm[4];
        for (int side = 0; side < 2; side++) {
            double xp[4];
            memcpy(xp, xs, sizeof xp);
            xp[k] += side ? -eps : eps;
            ad_tensor *xt = ot_f64(t, 1, (int64_t[]){4}, xp), *g;
            ck_assert_int_eq(ad_grad(t, rosenbrock, NULL, 1, &xt, &g, NULL, 0), 0);
            ad_to_array(g, side ? gm : gp);
        }
        for (int i = 0; i < 4; i++)
            ck_assert_close(ot_at(hess, i * 4 + k), (gp[i] - gm[i]) / (2 * eps),
                            1e-5 * (1 + fabs(ot_at(hess, i * 4 + k))));
    }
    ad_tape_free(t);
    ad_tensor_free(x);
}
END_TEST

START_TEST(softmax_jacobian_both_modes)
{
    double xs[4] = {0.5, -1, 2, 0.1}, s[4], z = 0;
    for (int i = 0; i < 4; i++) z += exp(xs[i]);
    for (int i = 0; i < 4; i++) s[i] = exp(xs[i]) / z;
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, 1, (int64_t[]){4}, xs), *jr, *jf, *ja;
    ck_assert_msg(ad_jacobian(t, softmax1, NULL, 1, &x, &jr, AD_JACOBIAN_REVERSE, 0) == 0, "%s",
                  ad_error());
    ck_assert_msg(ad_jacobian(t, softmax1, NULL, 1, &x, &jf, AD_JACOBIAN_FORWARD, 0) == 0, "%s",
                  ad_error());
    ck_assert_int_eq(ad_jacobian(t, softmax1, NULL, 1, &x, &ja, AD_JACOBIAN_AUTO, 0), 0);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double want = (i == j ? s[i] : 0) - s[i] * s[j]; /* diag(s) - s s^T */
            ck_assert_close(ot_at(jr, i * 4 + j), want, 1e-12);
            ck_assert_close(ot_at(jf, i * 4 + j), want, 1e-12);
            ck_assert_close(ot_at(ja, i * 4 + j), want, 1e-12);
        }
    ad_tape_free(t);
}
END_TEST

START_TEST(logsumexp_hessian)
{
    double xs[3] = {1, -0.5, 0.25}, p[3], z = 0;
    for (int i = 0; i < 3; i++) z += exp(xs[i]);
    for (int i = 0; i < 3; i++) p[i] = exp(xs[i]) / z;
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, 1, (int64_t[]){3}, xs), *h;
    ck_assert_msg(ad_hessian(t, lse, NULL, x, &h, 0) == 0, "%s", ad_error());
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            ck_assert_close(ot_at(h, i * 3 + j), (i == j ? p[i] : 0) - p[i] * p[j], 1e-12);
    ad_tape_free(t);
}
END_TEST

START_TEST(jvp_vjp_and_jacobian_of_two_inputs)
{
    double xs[2] = {0.3, 1.7}, ys[2] = {-2, 0.5};
    ad_tape *t = ad_tape_new();
    ad_tensor *in[2] = {ot_f64(t, 1, (int64_t[]){2}, xs), ot_f64(t, 1, (int64_t[]){2}, ys)};
    /* closed form: J_x = [[y0, cos x1], [0, y1^2]], J_y = [[x0, 0], [0, 2 x1 y1]] */
    double jx[4] = {ys[0], cos(xs[1]), 0, ys[1] * ys[1]};
    double jy[4] = {xs[0], 0, 0, 2 * xs[1] * ys[1]};
    for (int mode = AD_JACOBIAN_REVERSE; mode <= AD_JACOBIAN_FORWARD; mode++) {
        ad_tensor *jac[2];
        ck_assert_msg(ad_jacobian(t, two_in, NULL, 2, in, jac, mode, 0) == 0, "%s", ad_error());
        for (int k = 0; k < 4; k++) {
            ck_assert_close(ot_at(jac[0], k), jx[k], 1e-12);
            ck_assert_close(ot_at(jac[1], k), jy[k], 1e-12);
        }
    }
    double us[2] = {1, -1}, ws[2] = {0.5, 2};
    ad_tensor *u[2] = {ot_f64(t, 1, (int64_t[]){2}, us), NULL}, *y, *jv;
    ck_assert_msg(ad_jvp(t, two_in, NULL, 2, in, u, &y, &jv, 0) == 0, "%s", ad_error());
    ck_assert_close(ot_at(y, 0), xs[0] * ys[0] + sin(xs[1]), 1e-15);
    for (int i = 0; i < 2; i++)
        ck_assert_close(ot_at(jv, i), jx[i * 2] * us[0] + jx[i * 2 + 1] * us[1], 1e-12);
    ad_tensor *w = ot_f64(t, 1, (int64_t[]){2}, ws), *vj[2];
    ck_assert_int_eq(ad_vjp(t, two_in, NULL, 2, in, w, NULL, vj, 0), 0);
    for (int k = 0; k < 2; k++) {
        ck_assert_close(ot_at(vj[0], k), ws[0] * jx[k] + ws[1] * jx[2 + k], 1e-12);
        ck_assert_close(ot_at(vj[1], k), ws[0] * jy[k] + ws[1] * jy[2 + k], 1e-12);
    }
    ad_tape_free(t);
}
END_TEST

/* x * y with one tensor in both slots: each slot's own partial (diag of
 * the other), as torch.autograd.functional gives, also when the tensor
 * already requires grad (it was used as is in both slots, and each got
 * the sum, 2 diag(a)). */
static ad_tensor *times(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_mul(in[0], in[1]);
}
START_TEST(one_tensor_in_two_slots)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ot_f64(t, 1, (int64_t[]){3}, (double[]){1, 2, 3});
    for (int req = 0; req < 2; req++) {
        if (req) ck_assert_int_eq(ad_set_requires_grad(a, true), 0);
        ad_tensor *xs[2] = {a, a}, *J[2], *g[2];
        for (int mode = 0; mode < 2; mode++) {
            ck_assert_msg(ad_jacobian(t, times, NULL, 2, xs, J,
                                      mode ? AD_JACOBIAN_FORWARD : AD_JACOBIAN_REVERSE, 0) == 0,
                          "%s", ad_error());
            for (int s = 0; s < 2; s++)
                for (int i = 0; i < 9; i++)
                    ck_assert_close(ot_at(J[s], i), i % 4 == 0 ? 1 + i / 4 : 0, 0);
        }
        ad_tensor *v = ot_f64(t, 1, (int64_t[]){3}, (double[]){1, 1, 1}), *y;
        ck_assert_msg(ad_vjp(t, times, NULL, 2, xs, v, &y, g, 0) == 0, "%s", ad_error());
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 3; i++) ck_assert_close(ot_at(g[s], i), 1 + i, 0);
    }
    ad_tape_free(t);
}
END_TEST

START_TEST(transforms_nest)
{
    /* Third derivatives: the gradient of trace(H) through a Hessian that
     * was itself recorded (AD_CREATE_GRAPH). */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, 1, (int64_t[]){2}, (double[]){0.5, -2});
    ad_set_requires_grad(x, true);
    ad_tensor *h;
    ck_assert_int_eq(ad_hessian(t, rosenbrock, NULL, x, &h, AD_CREATE_GRAPH), 0);
    /* d/dx trace(H) for one Rosenbrock pair = d/da (1200 a^2 - 400 b + 2 + 200) = 2400 a,
     * d/db = -400 */
    ad_tensor *tr = ad_add(ad_narrow(ad_reshape(h, AD_SHAPE(4)), 0, 0, 1),
                           ad_narrow(ad_reshape(h, AD_SHAPE(4)), 0, 3, 1));
    ad_tensor *g;
    ck_assert_int_eq(ad_gradients(ad_sum(tr, NULL, 0, false), NULL, 1, &x, &g, 0), 0);
    ck_assert_close(ot_at(g, 0), 2400 * 0.5, 1e-9);
    ck_assert_close(ot_at(g, 1), -400, 1e-9);
    ad_tape_free(t);
}
END_TEST

START_TEST(transform_errors)
{
    ad_tape *t = ad_tape_new(), *other = ad_tape_new();
    ad_tensor *x = ot_f64(t, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4}), *g;
    ck_assert_error_rc(ad_grad(t, softmax1, NULL, 1, &x, &g, NULL, 0),
                       "ad_grad: the function must return one element, got shape [4]");
    ck_assert_error_rc(ad_grad(NULL, lse, NULL, 1, &x, &g, NULL, 0), "tape is NULL");
    ck_assert_error_rc(ad_grad(t, NULL, NULL, 1, &x, &g, NULL, 0), "function is NULL");
    ck_assert_error_rc(ad_grad(other, lse, NULL, 1, &x, &g, NULL, 0), "another tape");
    ad_tensor *bad = ot_f64(t, 1, (int64_t[]){3}, (double[]){1, 2, 3});
    ck_assert_error_rc(ad_hvp(t, rosenbrock, NULL, x, bad, &g, 0), "v is [3] float64, x is [4] float64");
    /* errors named as the function called (they were ad_gradients's) */
    ad_tensor *vv = ot_f64(t, 1, (int64_t[]){3}, (double[]){1, 2, 3}), *yv;
    ck_assert_error_rc(ad_vjp(t, softmax1, NULL, 1, &x, vv, &yv, &g, 0),
                       "ad_vjp: v is [3] float64, the function's output [4] float64");
    ck_assert_error_rc(ad_grad(t, lse, NULL, 1, &x, &g, NULL, AD_SET_GRAD),
                       "ad_grad: AD_SET_GRAD is for ad_backward");
    ck_assert_error_rc(ad_hvp(t, rosenbrock, NULL, x, ad_ones(t, AD_FLOAT32, AD_SHAPE(4)), &g, 0),
                       "ad_hvp: v is [4] float32, x is [4] float64");
    ad_tensor *u[1] = {bad};
    ck_assert_error_rc(ad_jvp(t, softmax1, NULL, 1, &x, u, NULL, &g, 0), "tangent 0 has shape [3]");
    ck_assert_error_rc(ad_jacobian(t, softmax1, NULL, 1, &x, &g, (ad_jacobian_mode)9, 0),
                       "unknown mode 9");
    ad_tape_free(t);
    ad_tape_free(other);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("transforms");
    TCase *tc = tcase_create("transforms");
    tcase_add_test(tc, rosenbrock_gradient_and_hessian);
    tcase_add_test(tc, one_tensor_in_two_slots);
    tcase_add_test(tc, hessian_matches_finite_differences_of_gradient);
    tcase_add_test(tc, softmax_jacobian_both_modes);
    tcase_add_test(tc, logsumexp_hessian);
    tcase_add_test(tc, jvp_vjp_and_jacobian_of_two_inputs);
    tcase_add_test(tc, transforms_nest);
    tcase_add_test(tc, transform_errors);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_pointwise.c - elementwise ops against closed forms.
 *
 * Values, first and second derivatives of every op at hand-picked points in
 * float64 and float32; the kink conventions (relu, abs, maximum, clamp...);
 * stability at large magnitudes; broadcasting shapes and the gradients'
 * reduction back to the inputs' shapes; strided inputs; the long-row fast
 * paths; and every kind of bad input with its message. */
#define _POSIX_C_SOURCE 200809L /* setenv, strdup */

#include <stdlib.h>
#include <string.h>

#include "optest.h"
#include "closed_forms.h"

#define T ot_tape /* the per-test tape of ot_tape_setup */

/* A tensor on T of the given dtype from double values, requiring grad when rg. */
static ad_tensor *mk(ad_dtype dt, int ndim, const int64_t *shape, const double *v, bool rg)
{
    ad_tensor *t = ad_empty(T, dt, ndim, shape);
    ck_assert_msg(t != NULL, "%s", ad_error());
    int64_t n = ad_numel(t);
    void *d = ad_data(t);
    for (int64_t i = 0; i < n; i++) {
        if (dt == AD_FLOAT32) ((float *)d)[i] = (float)v[i];
        else if (dt == AD_FLOAT64) ((double *)d)[i] = v[i];
        else ((int64_t *)d)[i] = (int64_t)v[i];
    }
    if (rg) ck_assert_int_eq(ad_set_requires_grad(t, true), 0);
    return t;
}
#define VEC(dt, rg, ...) \
    mk(dt, 1, (int64_t[]){sizeof((double[]){__VA_ARGS__}) / sizeof(double)}, (double[]){__VA_ARGS__}, rg)

/* d(sum_j w_j y_j)/dx with w = ones, recorded so it can be differentiated again. */
static ad_tensor *grad_of(ad_tensor *y, ad_tensor *x)
{
    ad_tensor *g = NULL;
    ad_tensor *w = ad_ones(T, ad_tensor_dtype(y), ad_ndim(y), ad_shape(y));
    ck_assert_msg(ad_gradients(y, w, 1, &x, &g, AD_CREATE_GRAPH) == 0, "%s", ad_error());
    ck_assert(g != NULL);
    return g;
}

static void assert_shape(const ad_tensor *t, int ndim, const int64_t *shape)
{
    char got[64], want[64];
    ad_shape_str(t, got, sizeof got);
    snprintf(want, sizeof want, "[");
    for (int d = 0; d < ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), d ? ",%lld" : "%lld",
                 (long long)shape[d]);
    strncat(want, "]", sizeof want - strlen(want) - 1);
    ck_assert_msg(ad_ndim(t) == ndim && strcmp(got, want) == 0, "shape %s, expected %s", got, want);
}
#define SHAPE_IS(t, ...) assert_shape(t, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                                      (int64_t[]){__VA_ARGS__})

static void assert_values(const ad_tensor *t, const double *want, int64_t n, double rtol)
{
    ck_assert_int_eq(ad_numel(t), n);
    for (int64_t i = 0; i < n; i++) {
        double v = ot_at(t, i);
        ck_assert_msg(fabs(v - want[i]) <= rtol * (1 + fabs(want[i])) ||
                          (isnan(v) && isnan(want[i])) || v == want[i],
                      "element %lld = %.17g, expected %.17g", (long long)i, v, want[i]);
    }
}
#define VALUES(t, rtol, ...) \
    assert_values(t, (double[]){__VA_ARGS__}, sizeof((double[]){__VA_ARGS__}) / sizeof(double), rtol)

static double tol_of(ad_dtype dt) { return dt == AD_FLOAT32 ? 2e-6 : 1e-13; }

/* ---- unary ops: value, first and second derivative vs closed forms ------------------- */

static const double SQRT_2PI = 2.5066282746310002, PI = 3.14159265358979323846;
static double Phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); } /* no cancellation for x << 0 */
static double phi(double x) { return exp(-x * x / 2) / SQRT_2PI; }

static double zero_d(double x) { (void)x; return 0; }
static double exp_f(double x) { return exp(x); }
static double log_f(double x) { return log(x); }
static double log_dd(double x) { return -1 / (x * x); }
static double sqrt_f(double x) { return sqrt(x); }
static double sqrt_dd(double x) { return -0.25 / (x * sqrt(x)); }
static double sin_f(double x) { return sin(x); }
static double sin_dd(double x) { return -sin(x); }
static double cos_f(double x) { return cos(x); }
static double cos_dd(double x) { return -cos(x); }
static double tan_f(double x) { return tan(x); }
static double tan_dd(double x) { return 2 * tan(x) * cf_d_tan(x); }
static double tanh_f(double x) { return tanh(x); }
static double tanh_dd(double x) { return -2 * tanh(x) / (cosh(x) * cosh(x)); }
static double sig_dd(double x) { return cf_d_sigmoid(x) * (1 - 2 * cf_sigmoid(x)); }
static double erf_f(double x) { return erf(x); }
static double erf_d(double x) { return 2 / sqrt(PI) * exp(-x * x); }
static double erf_dd(double x) { return -4 * x / sqrt(PI) * exp(-x * x); }
static double erfc_f(double x) { return erfc(x); }
static double erfc_d(double x) { return -erf_d(x); }
static double erfc_dd(double x) { return -erf_dd(x); }
static double gelu_f(double x) { return x * Phi(x); }
static double gelu_d(double x) { return Phi(x) + x * phi(x); }
static double gelu_dd(double x) { return phi(x) * (2 - x * x); }
static double softplus_f(double x) { return log(1 + exp(x)); }
static double abs_f(double x) { return fabs(x); }
static double two(double x) { (void)x; return 2; }
static double recip_f(double x) { return 1 / x; }
static double recip_d(double x) { return -1 / (x * x); }
static double recip_dd(double x) { return 2 / (x * x * x); }

typedef struct un_case {
    const char *name;
    ad_tensor *(*op)(ad_tensor *);
    double (*f)(double), (*d)(double), (*dd)(double);
    double x[5];
} un_case;

#define GENERIC {-1.3, -0.4, 0.2, 0.7, 1.9}
#define POSITIVE {0.3, 0.8, 1.5, 2.5, 7.0}
static const un_case UN[] = {
    {"neg", ad_neg, cf_neg, cf_d_neg, zero_d, GENERIC},
    {"exp", ad_exp, exp_f, exp_f, exp_f, GENERIC},
    {"log", ad_log, log_f, cf_d_log, log_dd, POSITIVE},
    {"sqrt", ad_sqrt, sqrt_f, cf_d_sqrt, sqrt_dd, POSITIVE},
    {"sin", ad_sin, sin_f, cos_f, sin_dd, GENERIC},
    {"cos", ad_cos, cos_f, cf_d_cos, cos_dd, GENERIC},
    {"tan", ad_tan, tan_f, cf_d_tan, tan_dd, {-1.3, -0.4, 0.2, 0.7, 1.1}},
    {"tanh", ad_tanh, tanh_f, cf_d_tanh, tanh_dd, GENERIC},
    {"sigmoid", ad_sigmoid, cf_sigmoid, cf_d_sigmoid, sig_dd, {-4.5, -0.4, 0.2, 0.7, 3.9}},
    {"relu", ad_relu, cf_relu, cf_d_relu, zero_d, GENERIC},
    {"erf", ad_erf, erf_f, erf_d, erf_dd, GENERIC},
    {"erfc", ad_erfc, erfc_f, erfc_d, erfc_dd, GENERIC},
    {"gelu", ad_gelu, gelu_f, gelu_d, gelu_dd, {-3.1, -0.4, 0.2, 0.7, 2.6}},
    {"softplus", ad_softplus, softplus_f, cf_sigmoid, cf_d_sigmoid, {-4.5, -0.4, 0.2, 0.7, 3.9}},
    {"abs", ad_abs, abs_f, cf_d_abs, zero_d, GENERIC},
    {"square", ad_square, cf_square, cf_d_square, two, GENERIC},
    {"reciprocal", ad_reciprocal, recip_f, recip_d, recip_dd, {-2.5, -0.7, 0.3, 0.8, 4.0}},
};
#define NUN ((int)(sizeof UN / sizeof UN[0]))

static void check_unary(const un_case *c, ad_dtype dt)
{
    double tol = tol_of(dt);
    ad_tensor *x = mk(dt, 1, (int64_t[]){5}, c->x, true);
    ad_tensor *y = c->op(x);
    ck_assert_msg(y != NULL, "%s: %s", c->name, ad_error());
    ck_assert_int_eq(ad_tensor_dtype(y), dt);
    ck_assert(ad_requires_grad(y));
    ad_tensor *g = grad_of(y, x);
    ad_tensor *h = grad_of(g, x); /* d/dx_i sum_j f'(x_j) = f''(x_i) */
    for (int i = 0; i < 5; i++) {
        double xi = ot_at(x, i); /* the float32-rounded point in float32 */
        double f = c->f(xi), d = c->d(xi), dd = c->dd(xi);
        ck_assert_msg(fabs(ot_at(y, i) - f) <= tol * (1 + fabs(f)), "%s(%g) = %.17g, expected %.17g",
                      c->name, xi, ot_at(y, i), f);
        ck_assert_msg(fabs(ot_at(g, i) - d) <= 2 * tol * (1 + fabs(d)),
                      "%s'(%g) = %.17g, expected %.17g", c->name, xi, ot_at(g, i), d);
        ck_assert_msg(fabs(ot_at(h, i) - dd) <= 4 * tol * (1 + fabs(dd)),
                      "%s''(%g) = %.17g, expected %.17g", c->name, xi, ot_at(h, i), dd);
    }
}

/* float32 GELU's first-order rule is a kernel that reads the slope its
 * forward kept (create-graph, above, runs the rule made of ops): against
 * the closed form over [-7, 7], on a contiguous x and on a transposed view
 * of it (the forward's gathering path). */
START_TEST(gelu_float32_rule_with_kept_slope)
{
    enum { R = 40, C = 25, N = R * C };
    float v[N];
    for (int i = 0; i < N; i++) v[i] = (float)(-7.0 + 14.0 * i / (N - 1));
    ad_tensor *x = ad_from_array(T, AD_FLOAT32, 2, (int64_t[]){R, C}, v);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    for (int view = 0; view < 2; view++) {
        ad_tensor *xv = view ? ad_transpose(x, 0, 1) : x;
        ad_tensor *y = ad_gelu(xv), *g = NULL;
        ck_assert_int_eq(ad_gradients(y, ad_ones(T, AD_FLOAT32, 2, ad_shape(y)), 1, &x, &g, 0),
                         0);
        for (int i = 0; i < N; i++) {
            double d = gelu_d(v[i]), got = ot_at(g, i);
            ck_assert_msg(fabs(got - d) <= 2e-6 * (1 + fabs(d)), "gelu'(%g) = %.9g, want %.9g",
                          v[i], got, d);
        }
    }
}
END_TEST

/* GELU's slope Phi(x) + x phi(x) in the left tail, relatively, on each
 * path of its rule: the kernel (contiguous), the rule made of ops (a
 * transposed x, a broadcast incoming gradient, a recorded pass).  Phi
 * from 1 + erf(x/sqrt 2) is 0 below x = -8.3 in double, 1 % off at -10. */
START_TEST(gelu_slope_in_the_left_tail)
{
    const double v[6] = {-5, -8, -9, -10, -12, -20};
    ad_tensor *x = ad_from_array(T, AD_FLOAT64, 2, (int64_t[]){2, 3}, v);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    for (int path = 0; path < 4; path++) {
        /* path 1: x's values in a transposed layout */
        ad_tensor *xv = path == 1 ? ad_transpose(ad_contiguous(ad_transpose(x, 0, 1)), 0, 1) : x;
        ad_tensor *y = ad_gelu(xv), *g = NULL;
        ad_tensor *seed = path == 2 ? ad_expand(ad_ones(T, AD_FLOAT64, 0, NULL), 2, ad_shape(y))
                                    : ad_ones(T, AD_FLOAT64, 2, ad_shape(y));
        ck_assert_int_eq(
            ad_gradients(y, seed, 1, &x, &g, path == 3 ? AD_CREATE_GRAPH : 0), 0);
        for (int i = 0; i < 6; i++) {
            double d = gelu_d(v[i]), got = ot_at(g, i);
            ck_assert_msg(fabs(got - d) <= 1e-13 * fabs(d), "path %d: gelu'(%g) = %.15g, want %.15g",
                          path, v[i], got, d);
        }
    }
}
END_TEST

START_TEST(unary_closed_forms_f64) { check_unary(&UN[_i], AD_FLOAT64); }
END_TEST
START_TEST(unary_closed_forms_f32) { check_unary(&UN[_i], AD_FLOAT32); }
END_TEST

/* d/dx [x sin x] = sin x + x cos x, and again: 2 cos x - x sin x. */
START_TEST(x_sin_x)
{
    ad_tensor *x = VEC(AD_FLOAT64, true, 0.3, -1.2, 2.5, 0.0);
    ad_tensor *y = ad_mul(x, ad_sin(x));
    ad_tensor *g = grad_of(y, x), *h = grad_of(g, x);
    double xs[] = {0.3, -1.2, 2.5, 0.0};
    for (int i = 0; i < 4; i++) {
        double v = xs[i];
        ck_assert_close(ot_at(y, i), v * sin(v), 1e-15);
        ck_assert_close(ot_at(g, i), sin(v) + v * cos(v), 1e-15);
        ck_assert_close(ot_at(h, i), 2 * cos(v) - v * sin(v), 1e-14);
    }
}
END_TEST

/* ---- binary ops -------------------------------------------------------------------- */

/* The two partials of each binary op at (a, b) = (1.5, -0.5), (0.4, 2.0), (-2.0, 3.0)... */
START_TEST(binary_closed_forms)
{
    ad_dtype dt = _i ? AD_FLOAT32 : AD_FLOAT64;
    double tol = tol_of(dt);
    double A[] = {1.5, 0.4, -2.0, 3.0}, B[] = {-0.5, 2.0, 3.0, 0.25};
    double P[] = {1.5, 0.4, 2.5, 3.0}; /* positive bases for pow */
    struct {
        const char *name;
        ad_tensor *(*op)(ad_tensor *, ad_tensor *);
        const double *a;
    } ops[] = {{"add", ad_add, A}, {"sub", ad_sub, A}, {"mul", ad_mul, A}, {"div", ad_div, A},
               {"pow", ad_pow, P}, {"maximum", ad_maximum, A}, {"minimum", ad_minimum, A}};
    for (int k = 0; k < 7; k++) {
        ad_tensor *a = mk(dt, 1, (int64_t[]){4}, ops[k].a, true);
        ad_tensor *b = mk(dt, 1, (int64_t[]){4}, B, true);
        ad_tensor *y = ops[k].op(a, b);
        ck_assert_msg(y != NULL, "%s: %s", ops[k].name, ad_error());
        ad_tensor *ga = grad_of(y, a), *gb = grad_of(y, b);
        for (int i = 0; i < 4; i++) {
            double x = ot_at(a, i), z = ot_at(b, i), f, da, db;
            switch (k) {
            case 0: f = x + z, da = 1, db = 1; break;
            case 1: f = x - z, da = 1, db = -1; break;
            case 2: f = x * z, da = z, db = x; break;
            case 3: f = x / z, da = 1 / z, db = -x / (z * z); break;
            case 4: f = pow(x, z), da = z * pow(x, z - 1), db = pow(x, z) * log(x); break;
            case 5: f = x > z ? x : z, da = x > z, db = z > x; break;
            default: f = x < z ? x : z, da = x < z, db = z < x; break;
            }
            ck_assert_msg(fabs(ot_at(y, i) - f) <= tol * (1 + fabs(f)), "%s(%g, %g) = %.17g vs %.17g",
                          ops[k].name, x, z, ot_at(y, i), f);
            ck_assert_msg(fabs(ot_at(ga, i) - da) <= 2 * tol * (1 + fabs(da)), "d%s/da = %.17g vs %.17g",
                          ops[k].name, ot_at(ga, i), da);
            ck_assert_msg(fabs(ot_at(gb, i) - db) <= 2 * tol * (1 + fabs(db)), "d%s/db = %.17g vs %.17g",
                          ops[k].name, ot_at(gb, i), db);
        }
    }
}
END_TEST

/* Mixed second derivatives: d2(a/b)/da db = -1/b^2, d2(a^b)/da db = a^(b-1)(1 + b ln a). */
START_TEST(binary_second_order)
{
    ad_tensor *a = VEC(AD_FLOAT64, true, 1.5, 0.7), *b = VEC(AD_FLOAT64, true, -0.5, 2.5);
    ad_tensor *gdiv = grad_of(ad_div(a, b), a);
    VALUES(grad_of(gdiv, b), 1e-14, -1 / 0.25, -1 / 6.25);
    ad_tensor *gpow = grad_of(ad_pow(a, b), a);
    VALUES(grad_of(gpow, b), 1e-14, pow(1.5, -1.5) * (1 - 0.5 * log(1.5)),
           pow(0.7, 1.5) * (1 + 2.5 * log(0.7)));
    VALUES(grad_of(gpow, a), 1e-14, -0.5 * -1.5 * pow(1.5, -2.5), 2.5 * 1.5 * pow(0.7, 0.5));
    ad_tensor *gpb = grad_of(ad_pow(a, b), b);
    VALUES(grad_of(gpb, b), 1e-14, pow(1.5, -0.5) * log(1.5) * log(1.5),
           pow(0.7, 2.5) * log(0.7) * log(0.7));
}
END_TEST

START_TEST(scalar_forms)
{
    ad_tensor *x = VEC(AD_FLOAT64, true, 0.5, 2.0, 4.0);
    struct {
        ad_tensor *y;
        double v[3], d[3];
    } c[] = {
        {ad_add_scalar(x, 1.5), {2, 3.5, 5.5}, {1, 1, 1}},
        {ad_sub_scalar(x, 1.5), {-1, 0.5, 2.5}, {1, 1, 1}},
        {ad_rsub_scalar(x, 1.5), {1, -0.5, -2.5}, {-1, -1, -1}},
        {ad_mul_scalar(x, -3), {-1.5, -6, -12}, {-3, -3, -3}},
        {ad_div_scalar(x, 4), {0.125, 0.5, 1}, {0.25, 0.25, 0.25}},
        {ad_rdiv_scalar(x, 2), {4, 1, 0.5}, {-8, -0.5, -0.125}},
        {ad_pow_scalar(x, 3), {0.125, 8, 64}, {0.75, 12, 48}},
        {ad_pow_scalar(x, 0.5), {sqrt(0.5), sqrt(2), 2}, {0.5 / sqrt(0.5), 0.5 / sqrt(2), 0.25}},
        {ad_pow_scalar(x, -1), {2, 0.5, 0.25}, {-4, -0.25, -0.0625}},
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        ck_assert_msg(c[k].y != NULL, "case %zu: %s", k, ad_error());
        SHAPE_IS(c[k].y, 3);
        assert_values(c[k].y, c[k].v, 3, 1e-15);
        assert_values(grad_of(c[k].y, x), c[k].d, 3, 1e-15);
    }
    /* The scalar forms are the binary ops with a constant: same op names. */
    ck_assert_int_eq(ad_tensor_dtype(ad_mul_scalar(VEC(AD_FLOAT32, false, 1), 2)), AD_FLOAT32);
}
END_TEST

/* ---- conventions at kinks ---------------------------------------------------------------- */

START_TEST(relu_abs_sign_at_zero)
{
    ad_tensor *x = VEC(AD_FLOAT64, true, -1.0, 0.0, 2.0, -0.0);
    VALUES(ad_relu(x), 0, 0, 0, 2, 0);
    VALUES(grad_of(ad_relu(x), x), 0, 0, 0, 1, 0); /* relu'(0) = 0 */
    VALUES(ad_abs(x), 0, 1, 0, 2, 0);
    VALUES(grad_of(ad_abs(x), x), 0, -1, 0, 1, 0); /* abs'(0) = 0 */
    VALUES(ad_leaky_relu(x, 0.2), 0, -0.2, 0, 2, 0);
    VALUES(grad_of(ad_leaky_relu(x, 0.2), x), 0, 0.2, 0.2, 1, 0.2); /* from the left */
    ad_tensor *s = ad_sign(VEC(AD_FLOAT64, false, -3, 0, 0.5, NAN));
    VALUES(s, 0, -1, 0, 1, NAN);
    /* sign is not recorded, even of a tensor that requires grad */
    ck_assert(!ad_requires_grad(ad_sign(x)));
}
END_TEST

START_TEST(maximum_minimum_ties)
{
    ad_tensor *a = VEC(AD_FLOAT64, true, 1, 2, 3), *b = VEC(AD_FLOAT64, true, 1, 0, 5);
    VALUES(ad_maximum(a, b), 0, 1, 2, 5);
    VALUES(grad_of(ad_maximum(a, b), a), 0, 0.5, 1, 0); /* a tie splits g evenly */
    VALUES(grad_of(ad_maximum(a, b), b), 0, 0.5, 0, 1);
    VALUES(ad_minimum(a, b), 0, 1, 0, 3);
    VALUES(grad_of(ad_minimum(a, b), a), 0, 0.5, 0, 1);
    VALUES(grad_of(ad_minimum(a, b), b), 0, 0.5, 1, 0);
    /* maximum(x, x): both halves come back to x, so d/dx = 1 */
    VALUES(grad_of(ad_maximum(a, a), a), 0, 1, 1, 1);
    /* NaN propagates */
    ad_tensor *n = VEC(AD_FLOAT64, false, NAN, 1), *o = VEC(AD_FLOAT64, false, 1, NAN);
    VALUES(ad_maximum(n, o), 0, NAN, NAN);
    VALUES(ad_minimum(n, o), 0, NAN, NAN);
    /* and the gradient goes to the NaN operand, which the result is (a's
     * when both are NaN), not to the other */
    ad_tensor *p = VEC(AD_FLOAT64, true, NAN, 1, NAN), *q = VEC(AD_FLOAT64, true, -1, NAN, NAN);
    VALUES(grad_of(ad_maximum(p, q), p), 0, 1, 0, 1);
    VALUES(grad_of(ad_maximum(p, q), q), 0, 0, 1, 0);
    VALUES(grad_of(ad_minimum(p, q), p), 0, 1, 0, 1);
    VALUES(grad_of(ad_minimum(p, q), q), 0, 0, 1, 0);
}
END_TEST

/* abs, maximum and minimum compute in the tensor's own dtype (exact ops):
 * over long float32 and float64 rows (the vectorised loops), contiguous,
 * strided and with b broadcast, every result has the bits of the scalar
 * definition, NaN, infinities and signed zeros included. */
START_TEST(exact_ops_bits)
{
    enum { N = 67 };
    static const double special[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0, -0.0, 1e-40, -3.5};
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype d = dt ? AD_FLOAT32 : AD_FLOAT64;
        double av[2 * N], bv[2 * N];
        for (int i = 0; i < 2 * N; i++) {
            av[i] = i % 11 < 8 ? special[i % 8] : sin(i) * 4;
            bv[i] = i % 13 < 8 ? special[(i * 3) % 8] : cos(i) * 4;
        }
        ad_tensor *a2 = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){N, 2}, av);
        ad_tensor *b2 = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){N, 2}, bv);
        ad_tensor *A = ad_cast(a2, d), *B = ad_cast(b2, d);
        for (int layout = 0; layout < 3; layout++) {
            /* 0: contiguous rows of 2N; 1: column 0 of [N, 2] (stride 2);
             * 2: a row with b a broadcast 0-d value */
            ad_tensor *x = layout == 1 ? ad_squeeze(ad_narrow(A, 1, 0, 1), 1)
                                        : ad_reshape(A, 1, (int64_t[]){2 * N});
            ad_tensor *y = layout == 1 ? ad_squeeze(ad_narrow(B, 1, 1, 1), 1)
                           : layout == 2
                               ? ad_squeeze(ad_narrow(ad_reshape(B, 1, (int64_t[]){2 * N}), 0, 5, 1), 0)
                               : ad_reshape(B, 1, (int64_t[]){2 * N});
            ad_tensor *r[3] = {ad_abs(x), ad_maximum(x, y), ad_minimum(x, y)};
            int64_t n = ad_numel(x);
            for (int op = 0; op < 3; op++) {
                ck_assert_msg(r[op] != NULL, "%s", ad_error());
                for (int64_t i = 0; i < n; i++) {
                    double u = ot_at(x, i), v = layout == 2 ? ad_item(y) : ot_at(y, i);
                    double want = op == 0   ? fabs(u)
                                  : op == 1 ? ((u > v || isnan(u)) ? u : v)
                                            : ((u < v || isnan(u)) ? u : v);
                    double got = ot_at(r[op], i);
                    ck_assert_msg(memcmp(&got, &want, sizeof got) == 0 ||
                                      (isnan(got) && isnan(want)),
                                  "%s layout %d op %d element %lld: %g (%a) for %g, %g: want %g",
                                  ad_dtype_name(d), layout, op, (long long)i, got, got, u, v, want);
                }
            }
        }
        ad_tensor_free(a2);
        ad_tensor_free(b2);
    }
}
END_TEST

START_TEST(clamp_boundaries)
{
    ad_tensor *x = VEC(AD_FLOAT64, true, -1, -0.5, 0, 0.5, 1);
    VALUES(ad_clamp(x, -0.5, 0.5), 0, -0.5, -0.5, 0, 0.5, 0.5);
    VALUES(grad_of(ad_clamp(x, -0.5, 0.5), x), 0, 0, 1, 1, 1, 0); /* bounds pass g */
    VALUES(ad_clamp(x, -INFINITY, 0), 0, -1, -0.5, 0, 0, 0);
    VALUES(grad_of(ad_clamp(x, 0, INFINITY), x), 0, 0, 0, 1, 1, 1);
    VALUES(ad_clamp(x, 0.25, 0.25), 0, 0.25, 0.25, 0.25, 0.25, 0.25); /* lo == hi is fine */
    VALUES(ad_clamp(VEC(AD_FLOAT64, false, NAN), 0, 1), 0, NAN);
}
END_TEST

/* d a^b / db at a = 0 is taken as 0; 0^0 = 1. */
START_TEST(pow_at_zero_base)
{
    ad_tensor *a = VEC(AD_FLOAT64, true, 0, 0, 0, 2), *b = VEC(AD_FLOAT64, true, 2, 3, 0, 3);
    ad_tensor *y = ad_pow(a, b);
    VALUES(y, 0, 0, 0, 1, 8);
    VALUES(grad_of(y, a), 1e-15, 0, 0, 0, 12);
    VALUES(grad_of(y, b), 1e-15, 0, 0, 0, 8 * log(2.0));
    /* NaN^0 = 1, a constant: da is 0 there, not 0 * NaN */
    ad_tensor *an = VEC(AD_FLOAT64, true, NAN), *bz = VEC(AD_FLOAT64, true, 0);
    VALUES(ad_pow(an, bz), 0, 1);
    VALUES(grad_of(ad_pow(an, bz), an), 0, 0);
}
END_TEST

/* ---- large magnitudes ---------------------------------------------------------------------- */

START_TEST(stable_at_large_magnitude)
{
    ad_dtype dt = _i ? AD_FLOAT32 : AD_FLOAT64;
    double rt = dt == AD_FLOAT32 ? 1e-6 : 1e-14;
    ad_tensor *x = VEC(dt, true, -1000, -30, 0, 30, 1000);
    double e30 = exp(-30.0); /* 9.36e-14 */
    ad_tensor *s = ad_sigmoid(x), *gs = grad_of(s, x);
    ad_tensor *p = ad_softplus(x), *gp = grad_of(p, x);
    ad_tensor *t = ad_tanh(x), *gt = grad_of(t, x);
    double sv[] = {0, e30 / (1 + e30), 0.5, 1 / (1 + e30), 1};
    double sd[] = {0, e30 / ((1 + e30) * (1 + e30)), 0.25, e30 / ((1 + e30) * (1 + e30)), 0};
    double pv[] = {0, log1p(e30), log(2.0), 30 + log1p(e30), 1000};
    for (int i = 0; i < 5; i++) {
        double vs = ot_at(s, i), ds = ot_at(gs, i), vp = ot_at(p, i), dp = ot_at(gp, i);
        ck_assert_msg(isfinite(vs) && isfinite(ds) && isfinite(vp) && isfinite(dp) &&
                          isfinite(ot_at(t, i)) && isfinite(ot_at(gt, i)),
                      "non-finite result at element %d", i);
        /* relative accuracy, including the tiny values at -30 */
        ck_assert_msg(fabs(vs - sv[i]) <= rt * sv[i] + 1e-300, "sigmoid[%d] = %.17g vs %.17g", i, vs, sv[i]);
        /* y s(-x), not y (1 - y), which loses every digit as y -> 1:
         * relative accuracy here too */
        ck_assert_msg(fabs(ds - sd[i]) <= 4 * rt * sd[i] + 1e-300,
                      "sigmoid'[%d] = %.17g vs %.17g", i, ds, sd[i]);
        ck_assert_msg(fabs(vp - pv[i]) <= rt * pv[i] + 1e-300, "softplus[%d] = %.17g vs %.17g", i, vp, pv[i]);
        ck_assert_msg(fabs(dp - sv[i]) <= 4 * rt * sv[i] + 1e-300, "softplus'[%d] = %.17g vs %.17g", i, dp, sv[i]);
    }
    VALUES(t, 0, -1, -1, 0, 1, 1);
    /* tanh'(+-30) = 4 e^-60 / (1 + e^-60)^2, kept to relative precision
     * (1 - y^2 gave 0) */
    double t30 = 4 * exp(-60.0) / ((1 + exp(-60.0)) * (1 + exp(-60.0)));
    double tw[] = {0, t30, 1, t30, 0};
    for (int i = 0; i < 5; i++)
        ck_assert_msg(fabs(ot_at(gt, i) - tw[i]) <= 4 * rt * tw[i], "tanh'[%d] = %.17g vs %.17g",
                      i, ot_at(gt, i), tw[i]);
    /* gelu far left: x Phi(x) with Phi(-10) = 7.619853024160526e-24, kept to full relative precision */
    ad_tensor *g = ad_gelu(VEC(dt, false, -10, 10, -1000));
    ck_assert_msg(fabs(ot_at(g, 0) / -7.619853024160526e-23 - 1) <= 10 * rt, "gelu(-10) = %.17g",
                  ot_at(g, 0));
    ck_assert_close(ot_at(g, 1), 10.0, 0);
    ck_assert_close(ot_at(g, 2), -0.0, 0);
}
END_TEST

/* ---- where ------------------------------------------------------------------------------------ */

START_TEST(where_values_and_gradients)
{
    /* cond [2,1] int64, a [1,4], b [4]: row 0 takes a, row 1 takes b */
    ad_tensor *c = mk(AD_INT64, 2, (int64_t[]){2, 1}, (double[]){1, 0}, false);
    ad_tensor *a = mk(AD_FLOAT64, 2, (int64_t[]){1, 4}, (double[]){1, 2, 3, 4}, true);
    ad_tensor *b = VEC(AD_FLOAT64, true, -1, -2, -3, -4);
    ad_tensor *y = ad_where(c, a, b);
    ck_assert_msg(y != NULL, "%s", ad_error());
    SHAPE_IS(y, 2, 4);
    VALUES(y, 0, 1, 2, 3, 4, -1, -2, -3, -4);
    ad_tensor *w = mk(AD_FLOAT64, 2, (int64_t[]){2, 4}, (double[]){1, 2, 3, 4, 5, 6, 7, 8}, false);
    ad_tensor *xs[2] = {a, b}, *gs[2];
    ck_assert_int_eq(ad_gradients(y, w, 2, xs, gs, 0), 0);
    SHAPE_IS(gs[0], 1, 4);
    VALUES(gs[0], 0, 1, 2, 3, 4);
    VALUES(gs[1], 0, 5, 6, 7, 8);

    /* a float condition: nonzero (NaN included) selects a */
    ad_tensor *fc = VEC(AD_FLOAT32, false, 0, -2, NAN, 0.5);
    ad_tensor *a32 = VEC(AD_FLOAT32, true, 1, 2, 3, 4), *b32 = VEC(AD_FLOAT32, true, 9, 9, 9, 9);
    ad_tensor *y32 = ad_where(fc, a32, b32);
    ck_assert_int_eq(ad_tensor_dtype(y32), AD_FLOAT32);
    VALUES(y32, 0, 9, 2, 3, 4);
    VALUES(grad_of(y32, a32), 0, 0, 1, 1, 1);
    VALUES(grad_of(y32, b32), 0, 1, 0, 0, 0);
    /* a float64 condition that requires grad gets a zero gradient */
    ad_tensor *rc = VEC(AD_FLOAT64, true, 1, 0);
    ad_tensor *p = VEC(AD_FLOAT64, false, 5, 6), *q = VEC(AD_FLOAT64, false, 7, 8);
    VALUES(grad_of(ad_where(rc, p, q), rc), 0, 0, 0);
    /* 0-d everything */
    ad_tensor *y0 = ad_where(ad_scalar_tensor(T, AD_INT64, 0), ad_scalar_tensor(T, AD_FLOAT64, 1),
                             ad_scalar_tensor(T, AD_FLOAT64, 2));
    ck_assert_int_eq(ad_ndim(y0), 0);
    ck_assert_close(ad_item(y0), 2, 0);
}
END_TEST

/* ---- broadcasting and views ---------------------------------------------------------------------- */

START_TEST(broadcast_shapes_and_gradients)
{
    ad_tensor *a = mk(AD_FLOAT64, 2, (int64_t[]){2, 1}, (double[]){1, 2}, true);
    ad_tensor *b = mk(AD_FLOAT64, 2, (int64_t[]){1, 4}, (double[]){10, 20, 30, 40}, true);
    ad_tensor *y = ad_mul(a, b);
    SHAPE_IS(y, 2, 4);
    VALUES(y, 0, 10, 20, 30, 40, 20, 40, 60, 80);
    ad_tensor *ga = grad_of(y, a), *gb = grad_of(y, b);
    SHAPE_IS(ga, 2, 1);
    SHAPE_IS(gb, 1, 4);
    VALUES(ga, 0, 100, 100); /* sum of b */
    VALUES(gb, 0, 3, 3, 3, 3); /* sum of a */

    ad_tensor *s = ad_scalar_tensor(T, AD_FLOAT64, 2);
    ad_set_requires_grad(s, true);
    ad_tensor *v = VEC(AD_FLOAT64, true, 1, 2, 3);
    ad_tensor *z = ad_sub(s, v);
    SHAPE_IS(z, 3);
    VALUES(z, 0, 1, 0, -1);
    ck_assert_int_eq(ad_ndim(grad_of(z, s)), 0);
    VALUES(grad_of(z, s), 0, 3);
    VALUES(grad_of(z, v), 0, -1, -1, -1);

    ad_tensor *m = mk(AD_FLOAT64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6}, true);
    ad_tensor *r = ad_div(m, VEC(AD_FLOAT64, true, 1, 2, 4));
    SHAPE_IS(r, 2, 3);
    VALUES(r, 0, 1, 1, 0.75, 4, 2.5, 1.5);

    ad_tensor *t3 = ad_add(ad_zeros(T, AD_FLOAT32, 3, (int64_t[]){2, 1, 4}),
                           ad_ones(T, AD_FLOAT32, 2, (int64_t[]){3, 1}));
    SHAPE_IS(t3, 2, 3, 4);
    ck_assert_close(ot_at(t3, 23), 1, 0);
    ad_tensor *w = ad_where(ad_ones(T, AD_INT64, 2, (int64_t[]){3, 1}), VEC(AD_FLOAT64, false, 1, 2, 3, 4),
                            ad_scalar_tensor(T, AD_FLOAT64, 0));
    SHAPE_IS(w, 3, 4);
}
END_TEST

START_TEST(strided_inputs)
{
    /* m = [[1,2,3],[4,5,6]]; m^T = [[1,4],[2,5],[3,6]] */
    ad_tensor *m = mk(AD_FLOAT64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6}, true);
    ad_tensor *mt = ad_transpose(m, 0, 1);
    ck_assert(mt != NULL && !ad_is_contiguous(mt));
    ad_tensor *y = ad_sub(mt, VEC(AD_FLOAT64, false, 10, 20));
    SHAPE_IS(y, 3, 2);
    VALUES(y, 0, -9, -16, -8, -15, -7, -14);
    ad_tensor *e = ad_exp(mt);
    VALUES(e, 1e-15, exp(1), exp(4), exp(2), exp(5), exp(3), exp(6));
    ad_tensor *sq = ad_square(mt);
    VALUES(grad_of(sq, m), 0, 2, 4, 6, 8, 10, 12); /* back in m's layout */
    /* a stride-0 (expanded) input */
    ad_tensor *row = VEC(AD_FLOAT64, true, 1, 2, 3);
    ad_tensor *ex = ad_expand(row, 2, (int64_t[]){2, 3});
    ad_tensor *p = ad_mul(ex, m);
    VALUES(p, 0, 1, 4, 9, 4, 10, 18);
    VALUES(grad_of(p, row), 0, 5, 7, 9);
    VALUES(ad_relu(ad_neg(ex)), 0, 0, 0, 0, 0, 0, 0);
    VALUES(ad_where(ad_transpose(ad_gt(m, ad_scalar_tensor(T, AD_FLOAT64, 3.5)), 0, 1), mt,
                    ad_neg(mt)), 0, -1, 4, -2, 5, -3, 6);
}
END_TEST

/* Long rows run the written-out loops: contiguous operands, a scalar
 * (stride 0) operand, and a transposed operand. */
START_TEST(fast_paths_match_formulas)
{
    ad_dtype dt = _i ? AD_FLOAT32 : AD_FLOAT64;
    double tol = dt == AD_FLOAT32 ? 3e-7 : 1e-15;
    enum { N = 1003, R = 17, C = 59 }; /* R * C == N */
    double *xv = malloc(N * sizeof *xv), *yv = malloc(N * sizeof *yv), *out = malloc(N * sizeof *out);
    double *xt = malloc(N * sizeof *xt);
    for (int i = 0; i < N; i++) xv[i] = 4 * sin(i * 0.7 + 0.1), yv[i] = 1.5 + cos(i * 1.3);
    ad_tensor *x = mk(dt, 1, (int64_t[]){N}, xv, false), *y = mk(dt, 1, (int64_t[]){N}, yv, false);
    ad_to_array(x, xv); /* the values as stored (rounded to float32) */
    ad_to_array(y, yv);
    ad_tensor *s = ad_scalar_tensor(T, dt, 0.75);
    ad_tensor *xT = ad_transpose(ad_reshape(x, 2, (int64_t[]){R, C}), 0, 1); /* [C,R], strided */
    for (int i = 0; i < N; i++) xt[i] = xv[(i % R) * C + i / R];          /* xT row-major */
    ad_tensor *(*bin[])(ad_tensor *, ad_tensor *) = {ad_add, ad_sub, ad_mul, ad_div};
    ad_tensor *(*un[])(ad_tensor *) = {ad_neg, ad_exp, ad_relu, ad_tanh, ad_sigmoid};
    for (int k = 0; k < 4 + 5; k++) {
        for (int v = 0; v < 3; v++) {
            /* operands element by element: (x, y), (x, 0.75), (0.75, xT); unary x, 0.75, xT */
            const double *A = v == 0 ? xv : v == 1 ? (k < 4 ? xv : NULL) : (k < 4 ? NULL : xt);
            const double *B = v == 0 ? yv : v == 1 ? NULL : xt;
            ad_tensor *r;
            if (k < 4)
                r = v == 0 ? bin[k](x, y) : v == 1 ? bin[k](x, s) : bin[k](s, xT);
            else
                r = un[k - 4](v == 0 ? x : v == 1 ? ad_expand(s, 1, (int64_t[]){N}) : xT);
            ck_assert_msg(r != NULL, "%s", ad_error());
            ck_assert_int_eq(ad_to_array(r, out), 0);
            for (int i = 0; i < N; i++) {
                double a = A ? A[i] : 0.75, b = B ? B[i] : 0.75, want;
                switch (k) {
                case 0: want = a + b; break;
                case 1: want = a - b; break;
                case 2: want = a * b; break;
                case 3: want = a / b; break;
                case 4: want = -a; break;
                case 5: want = exp(a); break;
                case 6: want = a > 0 ? a : 0; break;
                case 7: want = tanh(a); break;
                default: want = 1 / (1 + exp(-a)); break;
                }
                ck_assert_msg(fabs(out[i] - want) <= tol * (1 + fabs(want)),
                              "op %d variant %d element %d: %.17g vs %.17g", k, v, i, out[i], want);
            }
        }
    }
    free(xv);
    free(yv);
    free(xt);
    free(out);
}
END_TEST

/* A row vector broadcast over a matrix (x + b, b - x with b of shape [n]
 * or [1, n]) takes a path of its own, two rows at a time (bcast_rows in
 * ops_pointwise.c): every element the same bits as the formula computed
 * in the dtype, in both operand positions, with even and odd row counts, under each instruction set the CPU has
 * (AD_ISA: _i / 2 portable, AVX2, AVX-512); and the path must leave
 * b's gradient (the column sums of the upstream gradient) as it was. */
START_TEST(row_broadcast_bits)
{
    static const char *isa[] = {"portable", "avx2", "avx512"};
    ad_dtype dt = _i % 2 ? AD_FLOAT32 : AD_FLOAT64;
    char *saved = ot_isa_hold(isa[_i / 2]);
    enum { C = 37, RMAX = 9 };
    double xv[RMAX * C], bv[C], out[RMAX * C];
    for (int i = 0; i < RMAX * C; i++) xv[i] = 3 * sin(i * 0.37 + 0.2);
    for (int j = 0; j < C; j++) bv[j] = j % 5 == 0 ? 0.0 : 1.25 + cos(j * 1.7);
    ad_tensor *(*bin[])(ad_tensor *, ad_tensor *) = {ad_add, ad_sub, ad_mul, ad_div};
    for (int rows = 4; rows <= RMAX; rows += 3) { /* 4, 7: the last row alone */
        ad_tensor *x = mk(dt, 2, (int64_t[]){rows, C}, xv, true);
        ad_tensor *b1 = mk(dt, 1, (int64_t[]){C}, bv, true);
        ad_tensor *b2 = mk(dt, 2, (int64_t[]){1, C}, bv, false);
        double xs[RMAX * C], bs[C]; /* the values as stored */
        ad_to_array(x, xs);
        ad_to_array(b1, bs);
        for (int k = 0; k < 4; k++)
            for (int v = 0; v < 4; v++) { /* x op b1, b1 op x, x op b2, b2 op x */
                ad_tensor *b = v < 2 ? b1 : b2;
                bool rf = v % 2;
                ad_tensor *r = rf ? bin[k](b, x) : bin[k](x, b);
                ck_assert_msg(r != NULL, "%s", ad_error());
                ck_assert_int_eq(ad_to_array(r, out), 0);
                for (int i = 0; i < rows * C; i++) {
                    double p = rf ? bs[i % C] : xs[i], q = rf ? xs[i] : bs[i % C], want;
                    if (dt == AD_FLOAT32) {
                        float a = (float)p, c = (float)q;
                        want = k == 0 ? a + c : k == 1 ? a - c : k == 2 ? a * c : a / c;
                    } else
                        want = k == 0 ? p + q : k == 1 ? p - q : k == 2 ? p * q : p / q;
                    ck_assert_msg(memcmp(&out[i], &want, sizeof want) == 0,
                                  "%s op %d variant %d rows %d element %d: %a vs %a", isa[_i / 2],
                                  k, v, rows, i, out[i], want);
                }
            }
        /* d/db sum(x + b) = the number of rows in every column */
        ad_tensor *g = grad_of(ad_sum(ad_add(x, b1), NULL, 0, false), b1);
        for (int j = 0; j < C; j++) ck_assert_double_eq(ot_at(g, j), rows);
    }
    ot_isa_release(saved);
}
END_TEST

/* Outputs of at least ad__stream_min() bytes are computed a chunk at a
 * time into a buffer and written with non-temporal stores
 * (autodiff/stream.h): with the threshold at 0 every op gives the same
 * bytes as with it off, under each instruction set the CPU has (_i / 2),
 * for contiguous operands (one row of the iterator), a scalar broadcast
 * along a row, a column broadcast (rows of 301 elements: a head before
 * the first aligned line, a partial last chunk, a tail that is not a
 * whole line), a row broadcast (bcast_rows, rows of 256 floats and 160
 * doubles: whole lines; and 301: the unstreamed path), and ops mapping a
 * scalar function (square, abs, maximum, gelu). */
void ad__stream_testing_min(int64_t bytes); /* autodiff/stream.c (internal) */
START_TEST(streamed_outputs_have_the_same_bits)
{
    static const char *isa[] = {"portable", "avx2", "avx512"};
    ad_dtype dt = _i % 2 ? AD_FLOAT32 : AD_FLOAT64;
    char *saved = ot_isa_hold(isa[_i / 2]);
    enum { R = 7, C = 301, N = R * C };
    static double xv[N], yv[N], colv[R], rowv[C], on[N], off[N];
    for (int i = 0; i < N; i++) {
        xv[i] = 3 * sin(i * 0.37 + 0.2);
        yv[i] = i % 7 == 0 ? 0.0 : 1.5 + cos(i * 0.91);
    }
    for (int r = 0; r < R; r++) colv[r] = 0.5 + r;
    for (int c = 0; c < C; c++) rowv[c] = c % 5 == 0 ? 0.0 : 1.25 + cos(c * 1.7);
    int64_t wide = dt == AD_FLOAT32 ? 256 : 160; /* rows of whole lines */
    ad_tensor *x = mk(dt, 2, (int64_t[]){R, C}, xv, false);
    ad_tensor *y = mk(dt, 2, (int64_t[]){R, C}, yv, false);
    ad_tensor *col = mk(dt, 2, (int64_t[]){R, 1}, colv, false);
    ad_tensor *row = mk(dt, 1, (int64_t[]){C}, rowv, false);
    ad_tensor *xw = mk(dt, 2, (int64_t[]){R, wide}, xv, false);
    ad_tensor *roww = mk(dt, 1, (int64_t[]){wide}, rowv, false);
    ad_tensor *pos = ad_abs(x);
    enum { NCASE = 19 };
    for (int c = 0; c < NCASE; c++) {
        ad_tensor *r[2];
        for (int streamed = 0; streamed < 2; streamed++) {
            ad__stream_testing_min(streamed ? 0 : INT64_MAX);
            switch (c) {
            case 0: r[streamed] = ad_add(x, y); break;
            case 1: r[streamed] = ad_sub(x, y); break;
            case 2: r[streamed] = ad_mul(x, y); break;
            case 3: r[streamed] = ad_div(x, y); break;
            case 4: r[streamed] = ad_maximum(x, y); break;
            case 5: r[streamed] = ad_neg(x); break;
            case 6: r[streamed] = ad_relu(x); break;
            case 7: r[streamed] = ad_sqrt(pos); break;
            case 8: r[streamed] = ad_abs(x); break;
            case 9: r[streamed] = ad_square(x); break;
            case 10: r[streamed] = ad_gelu(x); break;
            case 11: r[streamed] = ad_add(x, col); break;
            case 12: r[streamed] = ad_div(col, x); break;
            case 13: r[streamed] = ad_mul_scalar(x, 0.3); break;
            case 14: r[streamed] = ad_add(xw, roww); break;
            case 15: r[streamed] = ad_div(roww, xw); break;
            case 16: r[streamed] = ad_sub(x, row); break;
            case 17: r[streamed] = ad_atan2(x, y); break;
            default: r[streamed] = ad_exp(x); break;
            }
            ck_assert_msg(r[streamed] != NULL, "%s", ad_error());
        }
        ad__stream_testing_min(-1);
        int64_t n = ad_numel(r[0]);
        ck_assert_int_eq(n, ad_numel(r[1]));
        ck_assert_int_eq(ad_to_array(r[0], off), 0);
        ck_assert_int_eq(ad_to_array(r[1], on), 0);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(memcmp(&on[i], &off[i], sizeof on[i]) == 0,
                          "%s %s case %d element %lld: %a streamed, %a not", isa[_i / 2],
                          dt == AD_FLOAT32 ? "float32" : "float64", c, (long long)i, on[i],
                          off[i]);
    }
    ot_isa_release(saved);
}
END_TEST

/* ---- ownership -------------------------------------------------------------------------------- */

/* A transposed operand of a binary op takes a blocked path (bin_tiles in
 * ops_pointwise.c; + - * / the register-transposed tiles of
 * ops_pointwise_t.c, 16 x 16 floats (with AVX2 four 8 x 8 transposes) or
 * 8 x 8 doubles (4 x 4 with AVX2), in blocks of 256 x 128 floats or 128 x 64
 * doubles, with streaming stores from 16 MB): every element as the
 * formula says, in both operand positions, with both operands transposed
 * and with a broadcast one, for shapes that are and are not multiples of
 * the tiles and blocks (64 x 64 in float32, 32 x 32 in float64 on the
 * portable path, with its bands of 1024 columns and its 4 x 4 and 2 x 2
 * register transposes), under each instruction set the CPU has (_i / 2:
 * portable, AVX2, AVX-512), with the software prefetch of the next block
 * and without (the last shape has several blocks), and for a leaf's
 * gradient accumulated from a transposed one. */
int ad__pw_t_testing_isa(int isa);  /* ops_pointwise_t.c (internal) */
void ad__prefetch_testing(int on); /* stream.c (internal) */
START_TEST(transposed_operands)
{
    ad_dtype dt = _i % 2 ? AD_FLOAT32 : AD_FLOAT64;
    if (ad__pw_t_testing_isa(_i / 2) != 0) return; /* this CPU cannot run it */
    static const int64_t shapes[][2] = {{16, 16}, {37, 29}, {20, 70}, {64, 17}, {64, 64}, {130, 67}, {33, 101},
                                        {17, 2100}}; /* the last: bands of 1024 columns and a rest */
    ad_tensor *(*ops[])(ad_tensor *, ad_tensor *) = {ad_add, ad_sub, ad_mul, ad_div};
    for (size_t shp = 0; shp < 2 * (sizeof shapes / sizeof shapes[0]); shp++) {
        size_t sh = shp / 2;
        ad__prefetch_testing((int)(shp % 2));
        int64_t m = shapes[sh][0], n = shapes[sh][1], N = m * n;
        double *av = malloc((size_t)N * sizeof *av), *bv = malloc((size_t)N * sizeof *bv);
        double *got = malloc((size_t)N * sizeof *got);
        for (int64_t i = 0; i < N; i++) av[i] = sin((double)i * 0.37) * 3, bv[i] = 1.5 + cos((double)i);
        ad_tensor *a = mk(dt, 2, (int64_t[]){m, n}, av, false);
        ad_tensor *b = mk(dt, 2, (int64_t[]){n, m}, bv, false); /* its transpose is [m, n] */
        ad_to_array(a, av);
        ad_to_array(b, bv);
        ad_tensor *bt = ad_transpose(b, 0, 1), *at = ad_transpose(a, 0, 1);
        for (int k = 0; k < 4; k++)
            for (int pos = 0; pos < 2; pos++) {
                /* pos 0: a op b^T; pos 1: b^T op a (both [m, n]). */
                ad_tensor *r = pos ? ops[k](bt, a) : ops[k](a, bt);
                ck_assert_msg(r != NULL, "%s", ad_error());
                ck_assert_int_eq(ad_to_array(r, got), 0);
                int64_t bad = 0, first = 0; /* one assertion: check records each it passes */
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double x = av[i * n + j], y = bv[j * m + i];
                        if (pos) x = y, y = av[i * n + j];
                        double want = k == 0 ? x + y : k == 1 ? x - y : k == 2 ? x * y : x / y;
                        if (dt == AD_FLOAT32) want = (float)want;
                        if (got[i * n + j] != want && bad++ == 0) first = i * n + j;
                    }
                ck_assert_msg(bad == 0, "op %d pos %d: %lld wrong, the first [%lld,%lld]", k, pos,
                              (long long)bad, (long long)(first / n), (long long)(first % n));
            }
        /* [n, m] result from a transposed first operand and a transposed
         * second one: the general strides. */
        ad_tensor *r = ad_sub(at, b);
        ck_assert_int_eq(ad_to_array(r, got), 0);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < m; j++) {
                double want = av[j * n + i] - bv[i * m + j];
                if (dt == AD_FLOAT32) want = (float)want;
                ck_assert(got[i * m + j] == want);
            }
        /* Both operands transposed, and a transposed one with a row
         * vector and with a column broadcast along the rows. */
        ad_tensor *a2 = mk(dt, 2, (int64_t[]){n, m}, av, false), *a2t = ad_transpose(a2, 0, 1);
        ad_tensor *row = mk(dt, 1, (int64_t[]){n}, av, false);
        ad_tensor *col = mk(dt, 2, (int64_t[]){m, 1}, bv, false);
        for (int k = 0; k < 4; k++)
            for (int form = 0; form < 3; form++) {
                ad_tensor *x = form == 0 ? a2t : form == 1 ? row : col;
                ad_tensor *r2 = ops[k](x, bt);
                ck_assert_msg(r2 != NULL, "%s", ad_error());
                ck_assert_int_eq(ad_to_array(r2, got), 0);
                int64_t bad = 0, first = 0;
                for (int64_t i = 0; i < m; i++)
                    for (int64_t j = 0; j < n; j++) {
                        double xv = form == 0 ? av[j * m + i] : form == 1 ? av[j] : bv[i];
                        double yv = bv[j * m + i];
                        double want = k == 0 ? xv + yv : k == 1 ? xv - yv : k == 2 ? xv * yv : xv / yv;
                        if (dt == AD_FLOAT32) want = (float)want;
                        if (got[i * n + j] != want && bad++ == 0) first = i * n + j;
                    }
                ck_assert_msg(bad == 0, "op %d form %d: %lld wrong, the first [%lld,%lld]", k, form,
                              (long long)bad, (long long)(first / n), (long long)(first % n));
            }
        /* A leaf's gradient accumulated from transposed gradients: d/dW of
         * sum(x W^T) twice is 2 * column sums of x, laid out like W. */
        ad_tensor *w = mk(dt, 2, (int64_t[]){m, n}, bv, true); /* y = a W^T: [m, m] */
        for (int rep = 0; rep < 2; rep++) {
            ad_tensor *y = ad_matmul(a, ad_transpose(w, 0, 1));
            ck_assert_msg(y && ad_backward(ad_sum(y, NULL, 0, false), NULL, 0) == 0, "%s",
                          ad_error());
        }
        ck_assert_int_eq(ad_to_array(ad_tensor_grad(w), got), 0);
        for (int64_t j = 0; j < n; j++) {
            double col = 0;
            for (int64_t i = 0; i < m; i++) col += av[i * n + j];
            for (int64_t i = 0; i < m; i++)
                ck_assert_msg(fabs(got[i * n + j] - 2 * col) <=
                                  (dt == AD_FLOAT32 ? 1e-5 : 1e-13) * (1 + fabs(col)),
                              "dW[%lld,%lld] = %g, want %g", (long long)i, (long long)j,
                              got[i * n + j], 2 * col);
        }
        free(av);
        free(bv);
        free(got);
    }
    ad__prefetch_testing(-1);
    ad__pw_t_testing_isa(-1);
}
END_TEST

/* A result of 16 MB or more, 64-byte aligned, is written with streaming
 * stores by the tiled path (ops_pointwise_t.c, wherever its tile rows are
 * whole cache lines: not AVX2's float64): the same values, and those of
 * a result whose rows are not aligned (n not a multiple of 64 bytes),
 * which cannot be; float32 (_i < 2) and float64, AVX2 and AVX-512
 * (_i % 2). */
START_TEST(transposed_large)
{
    if (ad__pw_t_testing_isa(_i % 2 + 1) != 0) return; /* AVX2, AVX-512 */
    bool f64 = _i >= 2;
    static const int64_t sides[][2] = {{2048, 2048}, {2048, 2050}, {1024, 2048}, {1024, 2050}};
    for (int s2 = 0; s2 < 2; s2++) {
        int64_t m = sides[2 * f64 + s2][0], n = sides[2 * f64 + s2][1], N = m * n;
        ad_dtype dt = f64 ? AD_FLOAT64 : AD_FLOAT32;
        ad_tensor *a = ad_empty(NULL, dt, AD_SHAPE(m, n));
        ad_tensor *b = ad_empty(NULL, dt, AD_SHAPE(n, m));
        ck_assert(a && b);
        for (int64_t i = 0; i < N; i++) {
            double x = (double)(i % 1000) * 0.25 + 1e-9 * (double)(i % 7), y = (double)(i % 977) - 300;
            if (f64) ((double *)ad_data(a))[i] = x, ((double *)ad_data(b))[i] = y;
            else ((float *)ad_data(a))[i] = (float)x, ((float *)ad_data(b))[i] = (float)y;
        }
        ad_tensor *r = ad_add(a, ad_transpose(b, 0, 1));
        ck_assert_msg(r != NULL, "%s", ad_error());
        int64_t bad = 0, first = -1; /* one assertion: check records each one it passes */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                int64_t p = i * n + j, q = j * m + i;
                bool ok = f64 ? ((const double *)ad_data(r))[p] ==
                                    ((double *)ad_data(a))[p] + ((double *)ad_data(b))[q]
                              : ((const float *)ad_data(r))[p] ==
                                    ((float *)ad_data(a))[p] + ((float *)ad_data(b))[q];
                if (!ok && bad++ == 0) first = p;
            }
        ck_assert_msg(bad == 0, "%lld wrong, the first [%lld,%lld]", (long long)bad,
                      (long long)(first / n), (long long)(first % n));
        ad_tensor_free(a);
        ad_tensor_free(b);
    }
    ad__pw_t_testing_isa(-1);
}
END_TEST

/* Operands that are views into larger matrices (an offset, rows further
 * apart than the view is wide) on the tiled path, in one block and in
 * several: one along rows and one
 * transposed in both orders, and both transposed; float32 and float64
 * (_i % 2) under each instruction set (_i / 2: portable, AVX2, AVX-512). */
START_TEST(transposed_views)
{
    ad_dtype dt = _i % 2 ? AD_FLOAT32 : AD_FLOAT64;
    if (ad__pw_t_testing_isa(_i / 2) != 0) return;
    /* the last: a second row of blocks and a second column, each partial */
    static const int64_t shapes[][2] = {{64, 128}, {37, 45}, {130, 67}, {275, 141}};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        int64_t m = shapes[sh][0], n = shapes[sh][1];
        int64_t am = m + 5, an = n + 7, bm = n + 3, bn = m + 9, cm = n + 2, cn = m + 4;
        int64_t big = (am * an > bm * bn ? am * an : bm * bn) + cm * cn;
        double *v = malloc((size_t)big * sizeof *v), *got = malloc((size_t)(m * n) * sizeof *got);
        for (int64_t i = 0; i < big; i++) v[i] = 1.25 + sin((double)i * 0.71) * 2;
        ad_tensor *A = mk(dt, 2, (int64_t[]){am, an}, v, false);
        ad_tensor *B = mk(dt, 2, (int64_t[]){bm, bn}, v + 11, false);
        ad_tensor *C = mk(dt, 2, (int64_t[]){cm, cn}, v + 23, false);
        double *av = malloc((size_t)big * sizeof *av), *bv = malloc((size_t)big * sizeof *bv);
        double *cv = malloc((size_t)big * sizeof *cv);
        ad_to_array(A, av);
        ad_to_array(B, bv);
        ad_to_array(C, cv);
        /* a[i][j] = A[2 + i][3 + j]; bt[i][j] = B[1 + j][4 + i]; ct[i][j] = C[2 + j][1 + i] */
        ad_tensor *a = ad_narrow(ad_narrow(A, 0, 2, m), 1, 3, n);
        ad_tensor *bt = ad_transpose(ad_narrow(ad_narrow(B, 0, 1, n), 1, 4, m), 0, 1);
        ad_tensor *ct = ad_transpose(ad_narrow(ad_narrow(C, 0, 2, n), 1, 1, m), 0, 1);
        ck_assert_msg(a && bt && ct, "%s", ad_error());
        for (int form = 0; form < 3; form++) {
            ad_tensor *r = form == 0 ? ad_add(a, bt) : form == 1 ? ad_div(bt, a) : ad_mul(ct, bt);
            ck_assert_msg(r != NULL, "%s", ad_error());
            ck_assert_int_eq(ad_to_array(r, got), 0);
            int64_t bad = 0, first = 0;
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    double x = av[(2 + i) * an + 3 + j], y = bv[(1 + j) * bn + 4 + i];
                    double z = cv[(2 + j) * cn + 1 + i];
                    double want = form == 0 ? x + y : form == 1 ? y / x : z * y;
                    if (dt == AD_FLOAT32)
                        want = form == 0 ? (float)((float)x + (float)y)
                               : form == 1 ? (float)((float)y / (float)x)
                                           : (float)((float)z * (float)y);
                    if (got[i * n + j] != want && bad++ == 0) first = i * n + j;
                }
            ck_assert_msg(bad == 0, "form %d: %lld wrong, the first [%lld,%lld]", form,
                          (long long)bad, (long long)(first / n), (long long)(first % n));
        }
        free(v);
        free(got);
        free(av);
        free(bv);
        free(cv);
    }
    ad__pw_t_testing_isa(-1);
}
END_TEST

START_TEST(persistent_results)
{
    ad_tape_activate(NULL);
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 4});
    ad_tensor *y = ad_sqrt(x), *z = ad_rdiv_scalar(x, 2), *w = ad_where(x, x, y);
    ck_assert(y && z && w);
    ck_assert(ad_tensor_tape(y) == NULL && ad_tensor_tape(z) == NULL);
    ck_assert_close(ot_at(y, 1), 2, 0);
    ck_assert_close(ot_at(z, 1), 0.5, 0);
    ck_assert_close(ot_at(w, 0), 1, 0);
    ck_assert_int_eq(ad_tensor_free(y), 0);
    ck_assert_int_eq(ad_tensor_free(z), 0);
    ck_assert_int_eq(ad_tensor_free(w), 0);
    /* anomaly mode rejects a persistent result; it must not leak */
    bool prev = ad_set_anomaly_mode(true);
    ad_tensor *neg = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){1}, (double[]){-1});
    ck_assert_error(ad_log(neg), "anomaly: produced nan");
    ck_assert_error(ad_where(x, ad_log(neg), x), "anomaly: produced nan");
    ad_set_anomaly_mode(prev);
    ad_tensor_free(neg);
    /* with a tape active, a persistent input's result lands on it */
    ad_tape_activate(T);
    ad_tensor *u = ad_mul_scalar(x, 3);
    ck_assert(ad_tensor_tape(u) == T);
    ck_assert_close(ot_at(u, 1), 12, 0);
    /* comparisons return masks that never require grad */
    ad_tensor *r = VEC(AD_FLOAT64, true, 1, 5);
    ad_tensor *m = ad_gt(r, x);
    ck_assert(!ad_requires_grad(m));
    VALUES(m, 0, 0, 1);
    VALUES(ad_ge(r, x), 0, 1, 1);
    VALUES(ad_lt(r, x), 0, 0, 0);
    VALUES(ad_le(r, x), 0, 1, 0);
    VALUES(ad_eq(r, x), 0, 1, 0);
    ad_tensor_free(x);
}
END_TEST

/* ---- replay ----------------------------------------------------------------------------------- */

/* Every op recorded on a replayable tape recomputes from new inputs exactly
 * as a fresh call would, parameters (slope, clamp bounds) included, and the
 * comparisons report how many of their results changed. */
static int nrec;
static ad_tensor *record_all(ad_tensor *x, ad_tensor *y, ad_tensor **out)
{
    int k = 0;
    for (int i = 0; i < NUN; i++) out[k++] = UN[i].op(UN[i].op == ad_log || UN[i].op == ad_sqrt ? x : y);
    out[k++] = ad_leaky_relu(y, 0.2);
    out[k++] = ad_clamp(y, -0.5, 0.25);
    out[k++] = ad_add(x, y), out[k++] = ad_sub(x, y), out[k++] = ad_mul(x, y);
    out[k++] = ad_div(y, x), out[k++] = ad_pow(x, y);
    out[k++] = ad_maximum(x, y), out[k++] = ad_minimum(x, y);
    out[k++] = ad_rdiv_scalar(x, 3), out[k++] = ad_pow_scalar(y, 3);
    out[k++] = ad_where(ad_gt(x, y), x, ad_neg(y));
    out[k++] = ad_sign(ad_sub_scalar(x, 1));
    out[k++] = ad_relu(ad_sub_scalar(x, 1));
    nrec = k;
    return out[k - 1];
}

START_TEST(replay_recomputes_every_op)
{
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    double x1[] = {0.3, 0.8, 1.5, 2.5, 0.6}, y1[] = {0.5, -0.5, 0.5, 0.5, -0.25};
    double x2[] = {0.7, 0.9, 1.2, 0.4, 2.0}, y2[] = {-0.6, 0.1, 0.5, 0.45, 0.2};
    ad_tensor *x = ad_from_array(t, AD_FLOAT64, 1, (int64_t[]){5}, x1);
    ad_tensor *y = ad_from_array(t, AD_FLOAT64, 1, (int64_t[]){5}, y1);
    ad_set_requires_grad(x, true);
    ad_tensor *rec[64], *fresh[64];
    ad_tensor *r = record_all(x, y, rec);
    ck_assert_msg(r != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_tape_freeze(t), 0);

    ad_tensor *v[2] = {ad_from_array(T, AD_FLOAT64, 1, (int64_t[]){5}, x2),
                       ad_from_array(T, AD_FLOAT64, 1, (int64_t[]){5}, y2)};
    ad_tensor *leaves[2] = {x, y};
    /* gt(x, y) flips at 0 and 3, sign(x - 1) at 3 and 4 */
    ck_assert_int_eq(ad_tape_replay(t, 2, leaves, v), 4);
    record_all(v[0], v[1], fresh);
    for (int k = 0; k < nrec; k++)
        for (int i = 0; i < 5; i++)
            ck_assert_msg(ot_at(rec[k], i) == ot_at(fresh[k], i) ||
                              (isnan(ot_at(rec[k], i)) && isnan(ot_at(fresh[k], i))),
                          "output %d element %d: replayed %.17g, fresh %.17g", k, i,
                          ot_at(rec[k], i), ot_at(fresh[k], i));
    /* gradients follow the replayed values: relu'(x - 1) = [x > 1] */
    ad_tensor *g;
    ck_assert_int_eq(ad_gradients(r, ad_ones(t, AD_FLOAT64, 1, (int64_t[]){5}), 1, &x, &g,
                                  AD_RETAIN_GRAPH), 0);
    VALUES(g, 0, 0, 0, 1, 0, 1);
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0); /* nothing changed */
    ad_tape_free(t);
}
END_TEST

/* ---- bad inputs ------------------------------------------------------------------------------- */

START_TEST(bad_inputs)
{
    ad_tensor *f64 = VEC(AD_FLOAT64, false, 1, 2, 3), *f32 = VEC(AD_FLOAT32, false, 1, 2, 3);
    ad_tensor *i64 = VEC(AD_INT64, false, 1, 2, 3), *m = ad_zeros(T, AD_FLOAT64, 2, (int64_t[]){2, 3});
    ad_tensor *v4 = ad_zeros(T, AD_FLOAT64, 1, (int64_t[]){4});

    ck_assert_error(ad_add(NULL, f64), "ad_add: argument 'a' is NULL");
    ck_assert_error(ad_pow(f64, NULL), "ad_pow: argument 'b' is NULL");
    ck_assert_error(ad_tanh(NULL), "ad_tanh: argument 'x' is NULL");
    ck_assert_error(ad_clamp(NULL, 0, 1), "ad_clamp: argument 'x' is NULL");
    ck_assert_error(ad_div_scalar(NULL, 2), "ad_div_scalar: argument 'a' is NULL");
    ck_assert_error(ad_where(NULL, f64, f64), "ad_where: argument 'cond' is NULL");
    ck_assert_error(ad_where(f64, f64, NULL), "ad_where: argument 'b' is NULL");
    /* a NULL from a failed inner call keeps the inner message */
    ck_assert_error(ad_mul(ad_log(i64), f64), "ad_log: argument 'x' must be float32 or float64, got int64");

    ck_assert_error(ad_mul(f32, f64), "ad_mul: dtypes differ: float32 vs float64");
    ck_assert_error(ad_maximum(f64, f32), "ad_maximum: dtypes differ: float64 vs float32");
    ck_assert_error(ad_where(i64, f64, f32), "ad_where: dtypes differ: float64 vs float32");

    ck_assert_error(ad_add(i64, i64), "ad_add: argument 'a' must be float32 or float64, got int64");
    ck_assert_error(ad_sub(f64, i64), "ad_sub: argument 'b' must be float32 or float64, got int64");
    ck_assert_error(ad_exp(i64), "ad_exp: argument 'x' must be float32 or float64, got int64");
    ck_assert_error(ad_sign(i64), "ad_sign: argument 'x' must be float32 or float64, got int64");
    ck_assert_error(ad_pow_scalar(i64, 2), "ad_pow_scalar: argument 'a' must be float32 or float64");
    ck_assert_error(ad_where(f64, i64, i64), "ad_where: argument 'a' must be float32 or float64, got int64");
    ck_assert_error(ad_gt(i64, f64), "ad_gt: argument 'a' must be float32 or float64, got int64");

    ck_assert_error(ad_add(m, v4), "ad_add: shapes [2,3] and [4] cannot be broadcast together");
    ck_assert_error(ad_div(v4, f64), "ad_div: shapes [4] and [3] cannot be broadcast together");
    ck_assert_error(ad_eq(m, v4), "ad_eq: shapes [2,3] and [4] cannot be broadcast together");
    ck_assert_error(ad_where(v4, f64, f64),
                    "ad_where: shapes [4] (cond), [3] (a) and [3] (b) cannot be broadcast together");
    ck_assert_error(ad_where(f64, m, v4),
                    "ad_where: shapes [3] (cond), [2,3] (a) and [4] (b) cannot be broadcast together");

    ck_assert_error(ad_clamp(f64, 2, 1), "ad_clamp: lo 2 > hi 1");
    ck_assert_error(ad_clamp(f64, NAN, 1), "ad_clamp: bounds must not be NaN");
    ck_assert_error(ad_clamp(f64, 0, NAN), "ad_clamp: bounds must not be NaN");

    ad_tape *other = ad_tape_new();
    ad_tensor *o = ad_ones(other, AD_FLOAT64, 1, (int64_t[]){3});
    ck_assert_error(ad_add(f64, o), "ad_add: inputs belong to different tapes");
    ck_assert_error(ad_where(f64, o, f64), "ad_where: inputs belong to different tapes");
    ad_tape_free(other);

    /* requires grad, no tape anywhere: nowhere to record */
    ad_tape_activate(NULL);
    ad_tensor *p = ad_ones(NULL, AD_FLOAT64, 1, (int64_t[]){2});
    ad_set_requires_grad(p, true);
    ck_assert_error(ad_sigmoid(p), "ad_sigmoid: an input requires grad but no tape is active");
    ck_assert_error(ad_mul_scalar(p, 2), "ad_mul_scalar: an input requires grad but no tape is active");
    ad_tensor_free(p);
    ad_tape_activate(T);
}
END_TEST

/* An infinite gradient reaching relu, max or min where the input does not
 * pass: the derivative is 0 (PyTorch's too).  g times the 0 mask made it
 * NaN: sqrt(relu(x)), sqrt(max(x, 0)) and sqrt(-min(x, 0)) at x = -1, 1. */
START_TEST(an_infinite_gradient_at_a_closed_gate_is_zero)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype d = dt ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *x = ad_leaf(t, AD_FLOAT64, 1, (int64_t[]){1}, (double[]){-1});
        ad_tensor *xd = ad_cast(x, d), *zero = ad_zeros(t, d, 1, (int64_t[]){1});
        ad_tensor *y = ad_add(ad_add(ad_sqrt(ad_relu(xd)), ad_sqrt(ad_maximum(xd, zero))),
                              ad_sqrt(ad_neg(ad_minimum(ad_neg(xd), zero))));
        ck_assert_int_eq(ad_backward(ad_sum_all(y), NULL, 0), 0);
        ck_assert_double_eq(ot_at(ad_tensor_grad(x), 0), 0);
    }
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pointwise");
    TCase *tc = tcase_create("pointwise");
    tcase_add_checked_fixture(tc, ot_tape_setup, ot_tape_teardown);
    tcase_add_loop_test(tc, unary_closed_forms_f64, 0, NUN);
    tcase_add_loop_test(tc, unary_closed_forms_f32, 0, NUN);
    tcase_add_test(tc, gelu_float32_rule_with_kept_slope);
    tcase_add_test(tc, gelu_slope_in_the_left_tail);
    tcase_add_test(tc, x_sin_x);
    tcase_add_loop_test(tc, binary_closed_forms, 0, 2);
    tcase_add_test(tc, binary_second_order);
    tcase_add_test(tc, scalar_forms);
    tcase_add_test(tc, relu_abs_sign_at_zero);
    tcase_add_test(tc, maximum_minimum_ties);
    tcase_add_test(tc, exact_ops_bits);
    tcase_add_test(tc, clamp_boundaries);
    tcase_add_test(tc, pow_at_zero_base);
    tcase_add_loop_test(tc, stable_at_large_magnitude, 0, 2);
    tcase_add_test(tc, where_values_and_gradients);
    tcase_add_test(tc, broadcast_shapes_and_gradients);
    tcase_add_test(tc, strided_inputs);
    tcase_add_loop_test(tc, fast_paths_match_formulas, 0, 2);
    tcase_add_loop_test(tc, row_broadcast_bits, 0, 6);
    tcase_add_loop_test(tc, streamed_outputs_have_the_same_bits, 0, 6);
    tcase_add_loop_test(tc, transposed_operands, 0, 6);
    tcase_add_loop_test(tc, transposed_large, 0, 4);
    tcase_add_loop_test(tc, transposed_views, 0, 6);
    tcase_add_test(tc, persistent_results);
    tcase_add_test(tc, replay_recomputes_every_op);
    tcase_add_test(tc, bad_inputs);
    tcase_add_test(tc, an_infinite_gradient_at_a_closed_gate_is_zero);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_ffi.c - foreign C functions as ops, and tapes as C callbacks.
 *
 *   parse      the signature grammars: what they accept, each error message
 *              with its column, and random bytes (which must never crash or
 *              read past the string: the suite runs under ASan);
 *   foreign    values, first and second derivatives against closed forms for
 *              every way of giving derivatives; float32 and mixed
 *              signatures; names in graphs; replay; every bad argument;
 *   callback   the closures: exact values and gradients, Rosenbrock minimised
 *              by a gradient descent written here that knows nothing of the
 *              engine, zero allocations per call in steady state, errors. */
#include <stdlib.h>
#include <string.h>

#include "../autodiff/internal.h"
#include "optest.h"

#define T ot_tape /* the per-test tape of ot_tape_setup */

static ad_tensor *vec(ad_dtype dt, int64_t n, const double *v, bool rg)
{
    ad_tensor *t = ad_empty(T, dt, 1, &n);
    ck_assert(t != NULL);
    for (int64_t i = 0; i < n; i++) ad_set(t, &i, v[i]);
    if (rg) ck_assert_int_eq(ad_set_requires_grad(t, true), 0);
    return t;
}
#define VEC(dt, rg, ...) \
    vec(dt, sizeof((double[]){__VA_ARGS__}) / sizeof(double), (double[]){__VA_ARGS__}, rg)

static double at(const ad_tensor *t, int64_t i) { return ot_at(t, i); }

/* ---- parse ---------------------------------------------------------------------- */

static void parses(const char *src, ad_ffi_form form, const char *canon, const char *name)
{
    ad_ffi_sig s;
    char err[300], buf[200];
    ck_assert_msg(ad_ffi_parse(src, &s, err, sizeof err) == 0, "%s: %s", src, err);
    ck_assert_msg(ad_ffi_classify(&s, err, sizeof err) == 0, "%s: %s", src, err);
    ck_assert_int_eq(s.form, form);
    ad_ffi_format(&s, buf, sizeof buf);
    ck_assert_str_eq(buf, canon);
    ck_assert_str_eq(s.name, name);
}

START_TEST(parse_accepts)
{
    parses("d(ddd)", AD_FFI_SCALAR, "double (double, double, double)", "");
    parses(" f ( f, i ) ", AD_FFI_SCALAR, "float (float, int)", "");
    parses("double (double, double, double)", AD_FFI_SCALAR, "double (double, double, double)", "");
    parses("double f3(double x, double y, double z);", AD_FFI_SCALAR,
           "double (double, double, double)", "f3");
    parses("double (*fp)(double)", AD_FFI_SCALAR, "double (double)", "fp");
    parses("double (*)(const double x)", AD_FFI_SCALAR, "double (double)", "");
    parses("const float g(float const volatile y, long int k)", AD_FFI_SCALAR, "float (float, long)", "g");
    parses("int h(int a)", AD_FFI_SCALAR, "int (int)", "h");
    parses("double norm(const double *restrict x, int n)", AD_FFI_VECTOR,
           "double (const double *, int)", "norm");
    parses("double (double x[], size_t n)", AD_FFI_VECTOR, "double (const double *, size_t)", "");
    parses("float s(const float x[4], long n)", AD_FFI_VECTOR, "float (const float *, long)", "s");
    parses("d(D, i)", AD_FFI_VECTOR, "double (const double *, int)", "");
    parses("f(Fz)", AD_FFI_VECTOR, "float (const float *, size_t)", "");
}
END_TEST

/* Each message as ad_foreign_new reports it. */
static void rejects(const char *src, const char *msg)
{
    ad_clear_error();
    ck_assert_msg(ad_foreign_new(src, AD_FN(sin), NULL) == NULL, "'%s' accepted", src);
    ck_assert_msg(strstr(ad_error(), msg) != NULL, "'%s': message '%s' lacks '%s'", src,
                  ad_error(), msg);
}

START_TEST(parse_errors)
{
    ck_assert_error(ad_foreign_new("double (double double)", AD_FN(sin), NULL),
                    "ad_foreign_new: expected ',' or ')' at column 16 in \"double (double double)\"");
    rejects("double (double", "expected ',' or ')' but the prototype ended at column 15");
    rejects("double (char c)", "unsupported type 'char' (double, float, int, long, size_t, void) at column 9");
    rejects("double (mytype)", "unsupported type 'mytype'");
    rejects("double (long double)", "unsupported type 'long double' at column 14");
    rejects("double (int *p, int n)", "unsupported pointer type (only double * and float * arrays) at column 9");
    rejects("double (double **p, int n)", "unsupported pointer type");
    rejects("double (double) x", "unexpected text after the prototype at column 17");
    rejects("double double(double)", "expected '(' at column 8");
    rejects("double (void x)", "a parameter cannot be void at column 9");
    rejects("double (double @)", "expected ',' or ')' at column 16");
    rejects("", "empty signature at column 1");
    rejects("   ", "empty signature");
    rejects("d(dq)", "unknown argument type letter (d f i l z D F) at column 4 in \"d(dq)\"");
    rejects("x(d)", "unknown return type letter (d f i l v) at column 1");
    rejects("d(dd", "expected ')' but the signature ended at column 5");
    rejects("d(d) d", "unexpected text after the signature at column 6");
    rejects("d(ddddddddddddddddd)", "too many parameters (at most 16) at column 19");
    rejects("void (double)", "\"void (double)\" returns void; a function to differentiate returns double, float or int");
    rejects("double (void)", "\"double ()\" takes no arguments");
    rejects("d()", "takes no arguments");
    rejects("double (const double *, int, int)", "a vector function is T (const T *, int)");
    rejects("float (const double *, int)", "a vector function is T (const T *, int)");
    rejects("double (double, size_t)", "argument 1 is size_t; size_t is only for the length");
    rejects("z(d)", "the result must be double, float, int or long");
    /* long sources are quoted cut, with no control bytes */
    rejects("double (double, double, double, double, double, double, double, double, \x01 double)",
            "...\"");
    ck_assert_error(ad_foreign_new(NULL, AD_FN(sin), NULL), "ad_foreign_new: the signature is NULL");
    ck_assert_error(ad_foreign_new("d(d)", NULL, NULL), "fn (the function to call) is NULL");
}
END_TEST

/* Random bytes and mutations of valid prototypes: the parser must return
 * 0 or -1 with a terminated message, never crash or overread. */
START_TEST(parse_fuzz)
{
    static const char *seeds[] = {"double f(const double *x, int n);", "d(ddd)",
                                  "float (*g)(float a, long int b)", "double (double x[3], size_t n)"};
    const char alphabet[] = "dfilzDFv(),*[]; 0123456789abcdefghijklmnopqrstuvwxyz_\t\x80\xff";
    ad_rng rng;
    ad_rng_init(&rng, 7);
    char buf[96], err[64];
    int ok = 0;
    for (int it = 0; it < 20000; it++) {
        size_t len;
        if (it % 2) {
            len = ad_rng_below(&rng, sizeof buf - 1);
            for (size_t i = 0; i < len; i++)
                buf[i] = alphabet[ad_rng_below(&rng, sizeof alphabet - 1)];
        } else {
            const char *s = seeds[ad_rng_below(&rng, 4)];
            len = strlen(s);
            memcpy(buf, s, len);
            for (int m = (int)ad_rng_below(&rng, 3); m > 0; m--) {
                size_t p = ad_rng_below(&rng, len);
                buf[p] = alphabet[ad_rng_below(&rng, sizeof alphabet - 1)];
            }
            if (ad_rng_below(&rng, 4) == 0) len = ad_rng_below(&rng, len + 1); /* cut */
        }
        buf[len] = '\0';
        ad_ffi_sig s;
        int rc = ad_ffi_parse(buf, &s, err, sizeof err);
        ck_assert(rc == 0 || rc == -1);
        ck_assert(memchr(err, '\0', sizeof err) != NULL);
        if (rc == 0) {
            ok++;
            ck_assert(s.nargs >= 0 && s.nargs <= AD_FFI_MAX_ARGS);
            ad_ffi_classify(&s, err, sizeof err);
        } else {
            ck_assert(err[0] != '\0');
        }
    }
    ck_assert_int_gt(ok, 100); /* the mutations do keep some valid */
}
END_TEST

/* ---- foreign functions under test ------------------------------------------------------ */

static double f3(double x, double y, double z) { return x * sin(y) + x * x * exp(0.5 * z); }
static double f3x(double x, double y, double z) { return sin(y) + 2 * x * exp(0.5 * z); }
static double f3y(double x, double y, double z) { (void)z; return x * cos(y); }
static double f3z(double x, double y, double z) { (void)y; return 0.5 * x * x * exp(0.5 * z); }
static void f3g(double x, double y, double z, double *out)
{
    out[0] = f3x(x, y, z), out[1] = f3y(x, y, z), out[2] = f3z(x, y, z);
}
static float f3f(float x, float y, float z) { return x * sinf(y) + x * x * expf(0.5f * z); }
static double dfd(double a, float b) { return a * (double)b * (double)b; }
static int iadd(int a, int b) { return a + b; }
static double lse(const double *x, int n)
{
    double s = 0;
    for (int k = 0; k < n; k++) s += exp(x[k]);
    return log(s);
}
static void lse_g(const double *x, int n, double *out)
{
    double l = lse(x, n);
    for (int k = 0; k < n; k++) out[k] = exp(x[k] - l);
}
static double p2(double x, double y) { return x * y * y + sin(x); }
static double px(double x, double y) { return y * y + cos(x); }
static double py(double x, double y) { return 2 * x * y; }
static double pxx(double x, double y) { (void)y; return -sin(x); }
static double p_2y(double x, double y) { (void)x; return 2 * y; }
static double pyy(double x, double y) { (void)y; return 2 * x; }

/* value and d/d(each input) of sum(y), the gradients recorded */
static ad_tensor *sum_grads(ad_tensor *y, int n, ad_tensor *const *x, ad_tensor **g)
{
    ad_tensor *s = ad_sum(y, NULL, 0, false);
    ck_assert_msg(s != NULL, "%s", ad_error());
    ck_assert_msg(ad_gradients(s, NULL, n, x, g, AD_CREATE_GRAPH) == 0, "%s", ad_error());
    return s;
}

START_TEST(partials_values_and_derivatives)
{
    /* f3 with partials, numeric (no derivatives) and a gradient function:
     * the same values, first derivatives and d2f/dx dy = cos y */
    ad_foreign *fs[3] = {
        ad_foreign_new_desc(&(ad_foreign_desc){.signature = "double f3(double, double, double)",
                                               .fn = AD_FN(f3),
                                               .partials = {AD_FN(f3x), AD_FN(f3y), AD_FN(f3z)}}),
        ad_foreign_new("d(ddd)", AD_FN(f3), "f3n"),
        ad_foreign_new_desc(&(ad_foreign_desc){.name = "f3g", .signature = "d(ddd)",
                                               .fn = AD_FN(f3), .grad = AD_FN(f3g)})};
    const double tol1[3] = {1e-15, 1e-12, 1e-15}, tol2[3] = {1e-8, 1e-8, 1e-8};
    ck_assert_str_eq(ad_foreign_name(fs[0]), "foreign:f3");
    ck_assert_str_eq(ad_foreign_name(fs[1]), "foreign:f3n (numeric derivative)");
    ck_assert_str_eq(ad_foreign_name(fs[2]), "foreign:f3g");
    ck_assert_int_eq(ad_foreign_nargs(fs[0]), 3);
    const double xs[2] = {0.7, -1.3}, ys[2] = {0.4, 2.0}, z0 = 0.3;
    for (int k = 0; k < 3; k++) {
        ad_tensor *x = VEC(AD_FLOAT64, true, 0.7, -1.3), *y = VEC(AD_FLOAT64, true, 0.4, 2.0);
        ad_tensor *z = ad_scalar_tensor(T, AD_FLOAT64, z0);
        ad_set_requires_grad(z, true);
        ad_tensor *in[3] = {x, y, z}, *g[3];
        ad_tensor *out = ad_foreign_call(fs[k], 3, in);
        ck_assert_msg(out != NULL, "%s", ad_error());
        ck_assert_int_eq(ad_ndim(out), 1);
        sum_grads(out, 3, in, g);
        double gz = 0;
        for (int i = 0; i < 2; i++) {
            ck_assert_close(at(out, i), f3(xs[i], ys[i], z0), 1e-15);
            ck_assert_close(at(g[0], i), f3x(xs[i], ys[i], z0), tol1[k]);
            ck_assert_close(at(g[1], i), f3y(xs[i], ys[i], z0), tol1[k]);
            gz += f3z(xs[i], ys[i], z0);
        }
        ck_assert_close(at(g[2], 0), gz, 2 * tol1[k]); /* z broadcast: summed */
        /* second derivatives: d/dy of sum(df/dx) = cos y, d/dx of it = 2 e^(z/2) */
        ad_tensor *h[3];
        ck_assert_int_eq(ad_gradients(ad_sum(g[0], NULL, 0, false), NULL, 3, in, h, 0), 0);
        for (int i = 0; i < 2; i++) {
            ck_assert_close(at(h[0], i), 2 * exp(0.5 * z0), tol2[k]);
            ck_assert_close(at(h[1], i), cos(ys[i]), tol2[k]);
        }
        ck_assert_close(at(h[2], 0), xs[0] * exp(0.5 * z0) + xs[1] * exp(0.5 * z0), tol2[k]);
        ad_tape_reset(T);
    }
    for (int k = 0; k < 3; k++) ad_foreign_free(fs[k]);
}
END_TEST

START_TEST(partial_ops_give_exact_second_derivatives)
{
    ad_foreign *PX = ad_foreign_new_desc(&(ad_foreign_desc){
        .name = "px", .signature = "d(dd)", .fn = AD_FN(px), .partials = {AD_FN(pxx), AD_FN(p_2y)}});
    ad_foreign *PY = ad_foreign_new_desc(&(ad_foreign_desc){
        .name = "py", .signature = "d(dd)", .fn = AD_FN(py), .partials = {AD_FN(p_2y), AD_FN(pyy)}});
    ad_foreign *P = ad_foreign_new_desc(&(ad_foreign_desc){
        .name = "p2", .signature = "d(dd)", .fn = AD_FN(p2), .partial_ops = {PX, PY}});
    ck_assert_str_eq(ad_foreign_name(P), "foreign:p2");
    ad_tensor *x = VEC(AD_FLOAT64, true, 0.5, -2.0), *y = VEC(AD_FLOAT64, true, 1.5, 0.25);
    ad_tensor *in[2] = {x, y}, *g[2], *h[2];
    sum_grads(ad_foreign_call(P, 2, in), 2, in, g);
    ck_assert_int_eq(ad_gradients(ad_sum(g[1], NULL, 0, false), NULL, 2, in, h, 0), 0);
    const double xv[2] = {0.5, -2.0}, yv[2] = {1.5, 0.25};
    for (int i = 0; i < 2; i++) {
        ck_assert_close(at(g[0], i), px(xv[i], yv[i]), 1e-15);
        ck_assert_close(at(g[1], i), py(xv[i], yv[i]), 1e-15);
        ck_assert_close(at(h[0], i), 2 * yv[i], 1e-15); /* d2p/dx dy, exact */
        ck_assert_close(at(h[1], i), 2 * xv[i], 1e-15);
    }
    /* the recorded graph names the partial ops */
    bool seen = false;
    for (size_t i = 0; i < ad_tape_num_nodes(T); i++) {
        ad_node_info info;
        ad_tape_node_info(T, i, &info);
        seen |= !strcmp(info.op, "foreign:py");
    }
    ck_assert(seen);
    ad_tape_reset(T);
    ad_foreign_free(P);
    ad_foreign_free(PX);
    ad_foreign_free(PY);
}
END_TEST

START_TEST(numeric_names_in_graph)
{
    ad_foreign *F = ad_foreign_new("double g(double)", AD_FN(sin), NULL);
    ad_foreign *G = ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(d)", .fn = AD_FN(sin),
                                                           .partials = {AD_FN(cos)}});
    ck_assert_str_eq(ad_foreign_name(F), "foreign:g (numeric derivative)");
    ck_assert_str_eq(ad_foreign_name(G), "foreign:f");
    char longname[1001];
    memset(longname, 'n', 1000);
    longname[1000] = '\0';
    ad_foreign *Lg = ad_foreign_new("d(d)", AD_FN(sin), longname);
    ck_assert_uint_eq(strlen(ad_foreign_name(Lg)), strlen("foreign:") + 1000 +
                                                       strlen(" (numeric derivative)"));
    ad_foreign_free(Lg);
    ad_tensor *x = VEC(AD_FLOAT64, true, 0.3), *g[1];
    sum_grads(ad_add(ad_foreign_call(F, 1, &x), ad_foreign_call(G, 1, &x)), 1, &x, g);
    ck_assert_close(at(g[0], 0), 2 * cos(0.3), 1e-12);
    const char *want[] = {"foreign:g (numeric derivative)", "foreign:f",
                          "foreign:g numeric partial (numeric derivative)",
                          "foreign:f partial (numeric derivative)"};
    for (int w = 0; w < 4; w++) {
        bool seen = false;
        for (size_t i = 0; i < ad_tape_num_nodes(T); i++) {
            ad_node_info info;
            ad_tape_node_info(T, i, &info);
            seen |= !strcmp(info.op, want[w]);
        }
        ck_assert_msg(seen, "no node named '%s'", want[w]);
    }
    /* third and fourth derivatives of sin through nested differences */
    ad_tensor *d2[1], *d3[1], *d4[1];
    ck_assert_int_eq(ad_gradients(ad_foreign_call(F, 1, &x), NULL, 1, &x, g, AD_CREATE_GRAPH), 0);
    ck_assert_int_eq(ad_gradients(g[0], NULL, 1, &x, d2, AD_CREATE_GRAPH), 0);
    ck_assert_int_eq(ad_gradients(d2[0], NULL, 1, &x, d3, AD_CREATE_GRAPH), 0);
    ck_assert_int_eq(ad_gradients(d3[0], NULL, 1, &x, d4, 0), 0);
    ck_assert_close(at(d2[0], 0), -sin(0.3), 1e-9);
    ck_assert_close(at(d3[0], 0), -cos(0.3), 1e-6);
    ck_assert_close(at(d4[0], 0), sin(0.3), 1e-4);
    ad_tape_reset(T);
    ad_foreign_free(F);
    ad_foreign_free(G);
}
END_TEST

START_TEST(float_and_mixed_signatures)
{
    ad_foreign *F = ad_foreign_new("float (float, float, float)", AD_FN(f3f), "f3f");
    ad_tensor *x = VEC(AD_FLOAT32, true, 0.7), *y = VEC(AD_FLOAT32, true, 0.4, 2.0, -1.0);
    ad_tensor *z = VEC(AD_FLOAT32, false, 0.3), *in[3] = {x, y, z}, *g[3];
    ad_tensor *out = ad_foreign_call(F, 3, in);
    ck_assert(ad_tensor_dtype(out) == AD_FLOAT32);
    ck_assert_int_eq(ad_gradients(ad_sum(out, NULL, 0, false), NULL, 2, in, g, 0), 0);
    double gx = 0;
    const double yv[3] = {0.4, 2.0, -1.0};
    for (int i = 0; i < 3; i++) {
        ck_assert_close(at(out, i), f3(0.7, yv[i], 0.3), 1e-6);
        ck_assert_close(at(g[1], i), f3y(0.7, yv[i], 0.3), 2e-5);
        gx += f3x(0.7, yv[i], 0.3);
    }
    ck_assert_close(at(g[0], 0), gx, 1e-4);
    ck_assert(ad_tensor_dtype(g[0]) == AD_FLOAT32);
    ad_foreign_free(F);

    /* double a * float b^2: the gradient of the float argument is float32 */
    ad_foreign *M = ad_foreign_new("double (double a, float b)", AD_FN(dfd), NULL);
    ad_tensor *a = VEC(AD_FLOAT64, true, 3.0), *b = VEC(AD_FLOAT32, true, 0.5, 2.0);
    ad_tensor *mi[2] = {a, b}, *mg[2];
    ad_tensor *r = ad_foreign_call(M, 2, mi);
    ck_assert(ad_tensor_dtype(r) == AD_FLOAT64);
    ck_assert_int_eq(ad_gradients(ad_sum(r, NULL, 0, false), NULL, 2, mi, mg, 0), 0);
    ck_assert(ad_tensor_dtype(mg[1]) == AD_FLOAT32);
    ck_assert_close(at(mg[0], 0), 0.25 + 4.0, 1e-6);
    ck_assert_close(at(mg[1], 1), 2 * 3.0 * 2.0, 1e-4);
    ad_foreign_free(M);

    /* int result: int64, not recorded, no gradient */
    ad_foreign *I = ad_foreign_new("int (int, int)", AD_FN(iadd), "iadd");
    ad_tensor *ia = ot_index(T, 1, (int64_t[]){3}, (int64_t[]){1, -2, 40});
    ad_tensor *ib = ot_index(T, 0, NULL, (int64_t[]){5});
    ad_tensor *ii[2] = {ia, ib}, *s = ad_foreign_call(I, 2, ii);
    ck_assert(ad_tensor_dtype(s) == AD_INT64);
    ck_assert(!ad_requires_grad(s));
    ck_assert_close(at(s, 0), 6, 0);
    ck_assert_close(at(s, 1), 3, 0);
    ck_assert_close(at(s, 2), 45, 0);
    ad_tensor *big = ot_index(T, 0, NULL, (int64_t[]){5000000000});
    ck_assert_error(ad_foreign_call(I, 2, (ad_tensor *[]){ia, big}),
                    "ad_foreign_call: foreign:iadd: argument 1 holds 5000000000, which does not fit in int");
    ad_foreign_free(I);
}
END_TEST

START_TEST(vector_form)
{
    ad_foreign *L = ad_foreign_new_desc(&(ad_foreign_desc){
        .signature = "double lse(const double *x, int n)", .fn = AD_FN(lse), .grad = AD_FN(lse_g)});
    ad_foreign *N = ad_foreign_new("d(Di)", AD_FN(lse), "lse_numeric");
    ck_assert_str_eq(ad_foreign_name(L), "foreign:lse");
    ck_assert_int_eq(ad_foreign_nargs(L), 1);
    const double v[6] = {0.1, -0.5, 1.0, 2.0, 0.0, -1.0};
    for (int k = 0; k < 2; k++) {
        ad_tensor *x = ad_transpose(ot_f64(T, 2, (int64_t[]){3, 2}, v), 0, 1); /* [2,3] view */
        ad_tensor *xl = ad_detach(x);
        ad_set_requires_grad(xl, true);
        ad_tensor *out = ad_foreign_call(k ? N : L, 1, &xl), *g[1], *h[1];
        ck_assert_msg(out != NULL, "%s", ad_error());
        ck_assert_int_eq(ad_ndim(out), 1);
        ck_assert_int_eq(ad_size(out, 0), 2);
        sum_grads(out, 1, &xl, g);
        /* d/dx of sum over rows of g[.., 1] = softmax_1: s_1 (delta_1j - s_j) */
        ck_assert_int_eq(ad_gradients(ad_sum(ad_narrow(g[0], 1, 1, 1), NULL, 0, false), NULL, 1,
                                      &xl, h, 0), 0);
        for (int r = 0; r < 2; r++) {
            double row[3] = {v[r], v[2 + r], v[4 + r]}, s[3];
            ck_assert_close(at(out, r), lse(row, 3), 1e-15);
            lse_g(row, 3, s);
            for (int j = 0; j < 3; j++) {
                ck_assert_close(at(g[0], r * 3 + j), s[j], k ? 1e-11 : 1e-15);
                ck_assert_close(at(h[0], r * 3 + j), s[1] * ((j == 1) - s[j]), k ? 1e-7 : 1e-9);
            }
        }
        ad_tape_reset(T);
    }
    ad_tensor *x0 = ad_scalar_tensor(T, AD_FLOAT64, 1.0);
    ck_assert_error(ad_foreign_call(L, 1, &x0),
                    "ad_foreign_call: foreign:lse: argument 0 must have at least 1 dimension");
    ad_foreign_free(L);
    ad_foreign_free(N);
}
END_TEST

START_TEST(replay_and_persistent_results)
{
    ad_foreign *F = ad_foreign_new_desc(&(ad_foreign_desc){
        .signature = "d(ddd)", .fn = AD_FN(f3), .grad = AD_FN(f3g)});
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = ad_full(t, AD_FLOAT64, AD_SHAPE(2), 0.5), *y = ad_full(t, AD_FLOAT64, AD_SHAPE(2), 1.0);
    ad_tensor *z = ad_full(t, AD_FLOAT64, AD_SHAPE(1), 0.0);
    ad_set_requires_grad(x, true);
    ad_tensor *in[3] = {x, y, z};
    ad_tensor *s = ad_sum(ad_foreign_call(F, 3, in), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    double *xd = ad_data(x);
    xd[0] = 2.0, xd[1] = -1.0;
    size_t before = 0;
    for (int step = 0; step < 4; step++) {
        if (step == 2) before = ad__alloc_calls;
        ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0);
        ck_assert_close(ad_item(s), f3(2, 1, 0) + f3(-1, 1, 0), 1e-15);
        ck_assert_int_eq(ad_backward(s, NULL, AD_RETAIN_GRAPH), 0);
        ck_assert_close(at(ad_tensor_grad(x), 1), f3x(-1, 1, 0), 1e-15);
    }
    ck_assert_uint_eq(ad__alloc_calls, before); /* replays allocate nothing */
    ad_tape_free(t);

    /* no tape at all: a persistent result the caller frees */
    ad_tape_activate(NULL);
    ad_tensor *a = ad_full(NULL, AD_FLOAT64, AD_SHAPE(2), 1.0), *p[3] = {a, a, a};
    ad_tensor *r = ad_foreign_call(F, 3, p);
    ck_assert(r != NULL && ad_tensor_tape(r) == NULL);
    ck_assert_close(at(r, 0), f3(1, 1, 1), 1e-15);
    ad_tensor_free(r);
    ad_set_requires_grad(a, true);
    ck_assert_error(ad_foreign_call(F, 3, p), "no tape is active");
    ad_tensor_free(a);
    ad_foreign_free(F);
}
END_TEST

START_TEST(bad_calls)
{
    ad_foreign *F = ad_foreign_new("double f3(double, double, double)", AD_FN(f3), NULL);
    ad_tensor *x = VEC(AD_FLOAT64, true, 1, 2), *y = VEC(AD_FLOAT64, true, 1, 2, 3);
    ad_tensor *x32 = VEC(AD_FLOAT32, true, 1, 2), *i64 = ot_index(T, 1, (int64_t[]){2}, (int64_t[]){1, 2});
    ck_assert_error(ad_foreign_call(F, 2, (ad_tensor *[]){x, x}),
                    "ad_foreign_call: foreign:f3 (numeric derivative): expected 3 arguments, got 2");
    ck_assert_error(ad_foreign_call(F, 3, NULL), "args is NULL");
    ck_assert_error(ad_foreign_call(NULL, 1, &x), "ad_foreign_call: the foreign function is NULL");
    ck_assert_error(ad_foreign_call(F, 3, (ad_tensor *[]){x, x32, x}),
                    "foreign:f3 (numeric derivative): argument 1 is float32, the signature says double (float64)");
    ck_assert_error(ad_foreign_call(F, 3, (ad_tensor *[]){x, x, i64}),
                    "argument 2 is int64, the signature says double");
    ad_clear_error();
    ck_assert_error(ad_foreign_call(F, 3, (ad_tensor *[]){x, NULL, x}), "argument 'args[1]' is NULL");
    ck_assert_error(ad_foreign_call(F, 3, (ad_tensor *[]){x, y, x}),
                    "argument shapes [2], [3], [2] cannot be broadcast together");
    ck_assert_error(ad_foreign_call(F, 3, (ad_tensor *[]){ad_exp(NULL), x, x}), "argument 'x' is NULL");
    ck_assert_ptr_null(ad_foreign_name(NULL));
    ck_assert_int_eq(ad_foreign_nargs(NULL), -1);
    ad_foreign_free(NULL);
    ad_foreign_free(F);
}
END_TEST

START_TEST(bad_descriptors)
{
    ck_assert_error(ad_foreign_new_desc(NULL), "ad_foreign_new_desc: desc is NULL");
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(di)", .fn = AD_FN(f3),
                                                           .partials = {NULL, AD_FN(f3)}}),
                    "ad_foreign_new_desc: partials[1] given for argument 1, an int");
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(dd)", .fn = AD_FN(f3),
                                                           .partials = {[2] = AD_FN(f3)}}),
                    "partials[2] given but \"double (double, double)\" takes 2 arguments");
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(dd)", .fn = AD_FN(f3),
                                                           .partials = {AD_FN(f3)}, .grad = AD_FN(f3g)}),
                    "give partials or grad, not both");
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(Di)", .fn = AD_FN(lse),
                                                           .partials = {AD_FN(lse)}}),
                    "a vector function takes a gradient function (grad), not partials");
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "i(ii)", .fn = AD_FN(iadd),
                                                           .grad = AD_FN(f3g)}),
                    "\"int (int, int)\" returns an integer, which has no derivatives");
    ad_foreign *Q = ad_foreign_new("d(ddd)", AD_FN(f3), NULL);
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(dd)", .fn = AD_FN(p2),
                                                           .partial_ops = {Q}}),
                    "partial_ops[0] is \"double (double, double, double)\", expected \"double (double, double)\"");
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(ddd)", .fn = AD_FN(f3),
                                                           .partial_ops = {Q}, .partials = {AD_FN(f3)}}),
                    "argument 0 has both partials[0] and partial_ops[0]");
    ad_foreign_free(Q);
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.nargs = 17, .fn = AD_FN(f3)}),
                    "nargs 17 out of range 1..16");
    ck_assert_error(ad_foreign_new_desc(&(ad_foreign_desc){.ret = AD_C_DOUBLE, .nargs = 1,
                                                           .args = {(ad_ctype)42}, .fn = AD_FN(f3)}),
                    "args[0] is not an ad_ctype");
    /* the descriptor's own types instead of a string */
    ad_foreign *D = ad_foreign_new_desc(&(ad_foreign_desc){
        .name = "hyp", .ret = AD_C_DOUBLE, .nargs = 2, .args = {AD_C_DOUBLE, AD_C_DOUBLE},
        .fn = AD_FN(hypot)});
    ck_assert_msg(D != NULL, "%s", ad_error());
    ad_tensor *a = VEC(AD_FLOAT64, true, 3), *b = VEC(AD_FLOAT64, true, 4), *g[2];
    ad_tensor *ab[2] = {a, b};
    sum_grads(ad_foreign_call(D, 2, ab), 2, ab, g);
    ck_assert_close(at(g[0], 0), 0.6, 1e-11);
    ck_assert_close(at(g[1], 0), 0.8, 1e-11);
    ad_foreign_free(D);
}
END_TEST

/* ---- callbacks ----------------------------------------------------------------------------- */

/* A gradient descent that knows nothing of autodiff: Barzilai-Borwein
 * steps, halved until the Armijo condition holds.  Returns the iterations
 * used, or -1 when it did not converge. */
static int descend(double (*f)(const double *, void *), void (*df)(const double *, void *, double *),
                   void *params, double *x, int n, int maxit)
{
    double g[8], xn[8], gn[8], t = 1e-3;
    double fx = f(x, params);
    df(x, params, g);
    for (int it = 0; it < maxit; it++) {
        double gg = 0;
        for (int i = 0; i < n; i++) gg += g[i] * g[i];
        if (gg < 1e-20) return it;
        double fn;
        for (;;) {
            for (int i = 0; i < n; i++) xn[i] = x[i] - t * g[i];
            fn = f(xn, params);
            if (fn <= fx - 1e-4 * t * gg || t < 1e-20) break;
            t *= 0.5;
        }
        df(xn, params, gn);
        double sy = 0, ss = 0;
        for (int i = 0; i < n; i++) {
            double s = xn[i] - x[i], y = gn[i] - g[i];
            sy += s * y, ss += s * s;
            x[i] = xn[i], g[i] = gn[i];
        }
        fx = fn;
        t = sy > 0 ? ss / sy : 1e-3;
    }
    return -1;
}

/* Rosenbrock (a - x)^2 + b (y - x^2)^2 with a, b from params. */
typedef struct { double a, b; } rosen_params;
static ad_tensor *rosen_t(ad_tensor *const *in, int n, void *params)
{
    const rosen_params *p = params;
    ad_tensor *x = in[0], *y = n > 1 ? in[1] : NULL;
    if (n == 1) { /* AD_CALLBACK_VECTOR: one [2] tensor */
        x = ad_narrow(in[0], 0, 0, 1);
        y = ad_narrow(in[0], 0, 1, 1);
    }
    ad_tensor *r = ad_add(ad_square(ad_rsub_scalar(x, p->a)),
                          ad_mul_scalar(ad_square(ad_sub(y, ad_square(x))), p->b));
    return n == 1 ? ad_sum(r, NULL, 0, false) : r;
}
static ad_scalar rosen_s(const ad_scalar *v, int n, void *params)
{
    (void)n;
    const rosen_params *p = params;
    ad_scalar u = ad_scsub(p->a, v[0]), w = ad_ssub(v[1], ad_ssquare(v[0]));
    return ad_sadd(ad_ssquare(u), ad_smul_c(ad_ssquare(w), p->b));
}

static ad_callback *make_cb(int kind)
{
    switch (kind) {
    case 0: return ad_callback_new(rosen_t, 2, 0);
    case 1: return ad_callback_new(rosen_t, 2, AD_CALLBACK_REPLAY);
    case 2: return ad_callback_new(rosen_t, 2, AD_CALLBACK_VECTOR | AD_CALLBACK_REPLAY);
    case 3: return ad_callback_new(rosen_t, 2, AD_CALLBACK_VECTOR);
    default: return ad_callback_new_scalar(rosen_s, 2, 0);
    }
}

START_TEST(callback_minimises_rosenbrock)
{
    ad_tape_activate(NULL); /* the callbacks need no tape from the caller */
    ad_callback *cb = make_cb(_i);
    ck_assert_msg(cb != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_callback_nargs(cb), 2);
    rosen_params p = {1.0, 100.0};
    double x[2] = {-1.2, 1.0}, g[2];
    /* exact value and gradient at the start */
    ck_assert_close(ad_callback_value(cb)(x, &p), 24.2, 1e-12);
    ad_callback_gradient(cb)(x, &p, g);
    ck_assert_close(g[0], -215.6, 1e-10);
    ck_assert_close(g[1], -88.0, 1e-10);
    ck_assert_close(ad_callback_value_gradient(cb)(x, &p, g), 24.2, 1e-12);
    ck_assert_close(g[0], -215.6, 1e-10);
    int its = descend(ad_callback_value(cb), ad_callback_gradient(cb), &p, x, 2, 20000);
    ck_assert_msg(its >= 0, "no convergence: x = (%g, %g)", x[0], x[1]);
    ck_assert_close(x[0], 1.0, 1e-4);
    ck_assert_close(x[1], 1.0, 1e-4);
    ck_assert_ptr_null(ad_tape_active());
    ad_callback_free(cb);
}
END_TEST

START_TEST(callback_allocates_nothing_per_call)
{
    ad_callback *cb = make_cb(_i);
    rosen_params p = {1.0, 100.0};
    double x[2] = {0.5, 0.25}, g[2];
    size_t before = 0;
    for (int k = 0; k < 10; k++) {
        if (k == 3) before = ad__alloc_calls;
        x[0] += 0.01;
        double v = ad_callback_value_gradient(cb)(x, &p, g);
        ck_assert_close(v, (1 - x[0]) * (1 - x[0]) + 100 * pow(0.25 - x[0] * x[0], 2), 1e-12);
        ck_assert_close(g[1], 200 * (0.25 - x[0] * x[0]), 1e-10);
        ad_callback_value(cb)(x, &p);
    }
    ck_assert_uint_eq(ad__alloc_calls, before);
    ad_callback_free(cb);
}
END_TEST

static ad_tensor *failing(ad_tensor *const *in, int n, void *params)
{
    (void)params;
    return n == 2 ? ad_log(ad_matmul(in[0], in[1])) : NULL;
}
static ad_tensor *two_elements(ad_tensor *const *in, int n, void *params)
{
    (void)n, (void)params;
    return ad_mul_scalar(in[0], 2.0);
}

START_TEST(callback_errors)
{
    ad_callback *cb = ad_callback_new(failing, 2, 0);
    double x[2] = {1, 2}, g[2] = {0, 0};
    bool mode = ad_set_grad_enabled(false);
    ck_assert(isnan(ad_callback_value(cb)(x, NULL)));
    ck_assert(strstr(ad_error(), "ad_matmul") != NULL);
    ad_callback_gradient(cb)(x, NULL, g);
    ck_assert(isnan(g[0]) && isnan(g[1]));
    ck_assert(!ad_grad_enabled()); /* the caller's mode is back */
    ad_set_grad_enabled(mode);
    ck_assert_ptr_eq(ad_tape_active(), T);
    ad_callback_free(cb);
    cb = ad_callback_new(two_elements, 3, AD_CALLBACK_VECTOR);
    ck_assert(isnan(ad_callback_value(cb)((double[]){1, 2, 3}, NULL)));
    ck_assert_str_eq(ad_error(), "ad_callback: the function must return one element, got [3]");
    ad_callback_free(cb);
    ck_assert_error(ad_callback_new(NULL, 2, 0), "ad_callback_new: the function is NULL");
    ck_assert_error(ad_callback_new(failing, 0, 0), "ad_callback_new: n = 0 out of range");
    ck_assert_error(ad_callback_new(failing, 2, 8), "ad_callback_new: unknown flags 0x8");
    ck_assert_error(ad_callback_new_scalar(rosen_s, 2, AD_CALLBACK_REPLAY),
                    "ad_callback_new_scalar: unknown flags 0x1");
    ck_assert_error(ad_callback_value(NULL), "ad_callback_value: callback is NULL");
    ck_assert_int_eq(ad_callback_nargs(NULL), -1);
    ad_callback_free(NULL);
}
END_TEST

/* An integer result is stored as it is: through a double it rounded past
 * 2^53 (2^53 + 1 came back 2^53) and overflowed at int64's ends. */
static long int_ident(long x) { return x; }
START_TEST(integer_results_keep_every_digit)
{
    ad_tape *t = ad_tape_new();
    ad_foreign *f = ad_foreign_new("l(l)", AD_FN(int_ident), "ident");
    ck_assert_ptr_nonnull(f);
    int64_t v[3] = {9007199254740993LL, INT64_MAX - 1, -9007199254740995LL};
    ad_tensor *x = ad_zeros(t, AD_INT64, 1, (int64_t[]){3});
    memcpy(ad_data(x), v, sizeof v);
    ad_tensor *y = ad_foreign_call(f, 1, &x);
    ck_assert_msg(y != NULL, "%s", ad_error());
    const int64_t *yd = ad_data(y);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(yd[i], v[i]);
    ad_foreign_free(f);
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ffi");
    TCase *p = tcase_create("parse");
    tcase_add_test(p, parse_accepts);
    tcase_add_test(p, parse_errors);
    tcase_add_test(p, parse_fuzz);
    suite_add_tcase(s, p);
    TCase *f = tcase_create("foreign");
    tcase_add_checked_fixture(f, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(f, partials_values_and_derivatives);
    tcase_add_test(f, partial_ops_give_exact_second_derivatives);
    tcase_add_test(f, numeric_names_in_graph);
    tcase_add_test(f, float_and_mixed_signatures);
    tcase_add_test(f, vector_form);
    tcase_add_test(f, replay_and_persistent_results);
    tcase_add_test(f, bad_calls);
    tcase_add_test(f, bad_descriptors);
    tcase_add_test(f, integer_results_keep_every_digit);
    suite_add_tcase(s, f);
    TCase *c = tcase_create("callback");
    tcase_add_checked_fixture(c, ot_tape_setup, ot_tape_teardown);
    tcase_add_loop_test(c, callback_minimises_rosenbrock, 0, 5);
    tcase_add_loop_test(c, callback_allocates_nothing_per_call, 0, 5);
    tcase_add_test(c, callback_errors);
    suite_add_tcase(s, c);
    return ot_run(s);
}

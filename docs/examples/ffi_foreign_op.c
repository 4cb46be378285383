/* docs/examples/ffi_foreign_op.c - C functions the engine did not write, on
 * the tape.
 *
 * Three foreign ops (docs/ffi.md), each used inside an ordinary expression
 * and differentiated by ad_backward:
 *
 *   j0, the Bessel function from libm, with its derivative -j1 given as a
 *       partial: the gradient is exact;
 *   hypot from libm with no derivative at all: the backward pass uses
 *       central differences, and the op is named "foreign:hypot (numeric
 *       derivative)" so a graph or an error says so;
 *   softabs_sum, a vector function double (const double *, int) with its
 *       gradient function, applied to each row of a matrix.
 *
 * The program prints each gradient beside the hand-derived one and exits
 * with status 1 if any differs by more than its method allows.
 */
#define _XOPEN_SOURCE 700 /* j0, j1 */

#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

static double minus_j1(double x) { return -j1(x); } /* d j0 / dx */

/* sum_k sqrt(x_k^2 + 1): a smooth |x|, and its gradient x_k / sqrt(x_k^2 + 1) */
static double softabs_sum(const double *x, int n)
{
    double s = 0;
    for (int k = 0; k < n; k++) s += sqrt(x[k] * x[k] + 1);
    return s;
}
static void softabs_grad(const double *x, int n, double *g)
{
    for (int k = 0; k < n; k++) g[k] = x[k] / sqrt(x[k] * x[k] + 1);
}

static int check(const char *what, double got, double want, double tol)
{
    int bad = !(fabs(got - want) <= tol);
    printf("  %-28s %.15f  (by hand %.15f)%s\n", what, got, want, bad ? "  MISMATCH" : "");
    return bad;
}

int main(void)
{
    int bad = 0;
    /* Registering prepares the libffi call once; the objects are ours to
     * free, after the tapes that recorded them. */
    ad_foreign *J0 = ad_foreign_new_desc(&(ad_foreign_desc){
        .signature = "double j0(double x)", .fn = AD_FN(j0), .partials = {AD_FN(minus_j1)}});
    ad_foreign *HYPOT = ad_foreign_new("double hypot(double x, double y)", AD_FN(hypot), NULL);
    ad_foreign *SOFTABS = ad_foreign_new_desc(&(ad_foreign_desc){
        .name = "softabs_sum", .signature = "d(Di)", .fn = AD_FN(softabs_sum),
        .grad = AD_FN(softabs_grad)});
    if (!J0 || !HYPOT || !SOFTABS) goto fail;

    ad_tape *tape = ad_tape_new();
    double xv[3] = {0.5, 1.5, 3.0}, yv[3] = {2.0, -1.0, 0.25};
    ad_tensor *x = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3), xv);
    ad_tensor *y = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3), yv);
    if (!x || !y || ad_set_requires_grad(x, true) || ad_set_requires_grad(y, true)) goto fail;

    /* L = sum_i j0(x_i) hypot(x_i, y_i): foreign ops mix freely with the
     * library's own (mul, sum) */
    ad_tensor *xy[2] = {x, y};
    ad_tensor *L = ad_sum(ad_mul(ad_foreign_call(J0, 1, &x), ad_foreign_call(HYPOT, 2, xy)),
                          NULL, 0, false);
    if (!L || ad_backward(L, NULL, 0)) goto fail;
    printf("%s and %s:\n", ad_foreign_name(J0), ad_foreign_name(HYPOT));
    for (int i = 0; i < 3; i++) {
        double r = hypot(xv[i], yv[i]), a = j0(xv[i]);
        /* product rule: dL/dx = -j1(x) r + j0(x) x / r, dL/dy = j0(x) y / r.
         * The hypot part is numeric, good to about 1e-12 (docs/ffi.md). */
        char what[64];
        snprintf(what, sizeof what, "dL/dx[%d]", i);
        bad |= check(what, ad_item(ad_narrow(ad_tensor_grad(x), 0, i, 1)),
                     -j1(xv[i]) * r + a * xv[i] / r, 1e-10);
        snprintf(what, sizeof what, "dL/dy[%d]", i);
        bad |= check(what, ad_item(ad_narrow(ad_tensor_grad(y), 0, i, 1)), a * yv[i] / r, 1e-10);
    }

    /* The vector form reads the last dimension: a [2,3] matrix gives one
     * value per row, and the gradient comes from softabs_grad. */
    double mv[6] = {1, -2, 0.5, 0.25, 3, -1};
    ad_tensor *m = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(2, 3), mv);
    if (!m || ad_set_requires_grad(m, true)) goto fail;
    ad_tensor *rows = ad_foreign_call(SOFTABS, 1, &m); /* [2] */
    ad_tensor *w = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(2), (double[]){1.0, -2.0});
    ad_tensor *L2 = ad_sum(ad_mul(rows, w), NULL, 0, false); /* rows weighted 1 and -2 */
    if (!L2 || ad_backward(L2, NULL, 0)) goto fail;
    printf("%s on a [2,3] matrix, rows weighted 1 and -2:\n", ad_foreign_name(SOFTABS));
    for (int i = 0; i < 6; i++) {
        char what[64];
        snprintf(what, sizeof what, "dL2/dm[%d][%d]", i / 3, i % 3);
        int64_t idx[2] = {i / 3, i % 3};
        double g;
        ad_get(ad_tensor_grad(m), idx, &g);
        bad |= check(what, g, (i < 3 ? 1.0 : -2.0) * mv[i] / sqrt(mv[i] * mv[i] + 1), 1e-15);
    }

    ad_tape_free(tape); /* first the tape that recorded the calls... */
    ad_foreign_free(J0); /* ...then the foreign ops */
    ad_foreign_free(HYPOT);
    ad_foreign_free(SOFTABS);
    printf(bad ? "MISMATCH\n" : "all gradients agree\n");
    return bad;

fail:
    fprintf(stderr, "error: %s\n", ad_error());
    return 1;
}

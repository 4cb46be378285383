/* docs/examples/custom_op.c - your own op with your own backward
 * (autodiff/custom.h), as PyTorch's autograd.Function.
 *
 *   softplus(x) = log(1 + e^x),   d/dx = sigmoid(x)
 *
 * Its backward is written with the library's ops on the saved input, so
 * it is recorded under AD_CREATE_GRAPH and the second derivative
 * sigmoid(x) (1 - sigmoid(x)) comes out too.  A second op, x^3, has a
 * backward that loops over raw buffers: it is marked first_order, and a
 * second derivative through it is refused with a message instead of
 * silently coming out zero.  ad_custom_check compares each backward with
 * finite differences in one call.  Exits 1 if anything disagrees.
 */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

/* ---- softplus: backward with ad_ ops (differentiable to any order) ---- */
static ad_tensor *softplus_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *user)
{
    (void)n, (void)user;
    if (ad_custom_save(ctx, 1, in)) return NULL;        /* x, for backward */
    return ad_log(ad_add_scalar(ad_exp(in[0]), 1));
}
static int softplus_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *user)
{
    (void)user;
    ad_tensor *x = ad_custom_saved(ctx, 0);
    gin[0] = ad_mul(g, ad_sigmoid(x));                   /* dL/dx = g sigmoid(x) */
    return gin[0] ? 0 : -1;
}

/* ---- cube: backward on raw buffers (first order only) ---- */
static ad_tensor *cube_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *user)
{
    (void)n, (void)user;
    if (ad_custom_save(ctx, 1, in)) return NULL;
    return ad_mul(in[0], ad_square(in[0]));
}
static int cube_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *user)
{
    (void)user;
    ad_tape *t = ad_custom_tape(ctx);
    ad_tensor *x = ad_copy(t, ad_custom_saved(ctx, 0)), *gc = ad_copy(t, g); /* contiguous */
    ad_tensor *dx = x ? ad_empty(t, AD_FLOAT64, ad_ndim(x), ad_shape(x)) : NULL;
    if (!gc || !dx) return -1;
    const double *xv = ad_data(x), *gv = ad_data(gc);
    double *d = ad_data(dx);
    for (int64_t i = 0; i < ad_numel(x); i++) d[i] = 3 * xv[i] * xv[i] * gv[i];
    gin[0] = dx;
    return 0;
}

static ad_custom *softplus, *cube;

static ad_tensor *f_softplus(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    return ad_sum_all(ad_custom_call(softplus, n, in));
}
static ad_tensor *f_cube(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    return ad_sum_all(ad_custom_call(cube, n, in));
}

int main(void)
{
    softplus = ad_custom_new(&(ad_custom_desc){
        .name = "softplus", .nin = 1, .forward = softplus_fw, .backward = softplus_bw});
    cube = ad_custom_new(&(ad_custom_desc){
        .name = "cube", .nin = 1, .forward = cube_fw, .backward = cube_bw, .first_order = true});
    ad_tape *tape = ad_tape_new();
    if (!softplus || !cube || !tape) return fprintf(stderr, "%s\n", ad_error()), 1;
    ad_tape_activate(tape);
    const double xs[4] = {-2, -0.5, 0.5, 3};
    ad_tensor *x = ad_leaf(tape, AD_FLOAT64, AD_SHAPE(4), xs);
    int bad = 0;

    /* one call checks the backward: first and (through the recorded
     * backward) second derivatives against finite differences */
    int ok = ad_custom_check(softplus, 1, &x, NULL);
    printf("ad_custom_check(softplus): %s\n", ok == 1 ? "passes" : ad_error());
    bad |= ok != 1;

    /* first and second derivatives, as any op's */
    ad_tensor *g1, *g2;
    ad_tensor *y = f_softplus(&x, 1, NULL);
    if (ad_gradients(y, NULL, 1, &x, &g1, AD_CREATE_GRAPH) ||
        ad_gradients(ad_sum_all(g1), NULL, 1, &x, &g2, 0))
        return fprintf(stderr, "%s\n", ad_error()), 1;
    for (int i = 0; i < 4; i++) {
        double s = 1 / (1 + exp(-xs[i])), d1, d2;
        ad_get(g1, (int64_t[]){i}, &d1);
        ad_get(g2, (int64_t[]){i}, &d2);
        printf("x = %4.1f  softplus' = %.6f (sigmoid %.6f)  softplus'' = %.6f (%.6f)\n", xs[i], d1,
               s, d2, s * (1 - s));
        bad |= fabs(d1 - s) > 1e-12 || fabs(d2 - s * (1 - s)) > 1e-12;
    }

    /* the first-order op: first derivatives check, second ones are refused */
    ok = ad_custom_check(cube, 1, &x, NULL);
    printf("ad_custom_check(cube): %s\n", ok == 1 ? "passes (first order)" : ad_error());
    bad |= ok != 1;
    ok = ad_gradgradcheck(f_cube, NULL, 1, &x, NULL);
    printf("ad_gradgradcheck(cube): %d\n  %s\n", ok, ad_error());
    bad |= ok != -1;
    ad_clear_error();

    ad_tape_free(tape);
    ad_custom_free(softplus);
    ad_custom_free(cube);
    printf(bad ? "FAILED\n" : "ok\n");
    return bad;
}

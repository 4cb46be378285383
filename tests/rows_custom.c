/* tests/rows_custom.c - op rows for custom ops (see optest.h).
 *
 * One "custom" op covers every op made with ad_custom_new, so the rows
 * cover the ways a backward can be written with the library's ops: from
 * the saved inputs (x^2 sin z), from the saved output (exp, whose
 * recorded copy links the second derivative back through the node
 * itself), and with broadcasting undone by ad_sum_to (x * w, w [3]).
 * gradgradcheck differentiates each recorded backward again. */
#include <stdlib.h>

#include "optest.h"

/* y = x^2 sin z; dx = g 2x sin z, dz = g x^2 cos z */
static ad_tensor *x2sin_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    if (ad_custom_save(ctx, 2, in)) return NULL;
    return ad_mul(ad_mul(in[0], in[0]), ad_sin(in[1]));
}
static int x2sin_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    ad_tensor *x = ad_custom_saved(ctx, 0), *z = ad_custom_saved(ctx, 1);
    if (ad_custom_needs_input_grad(ctx, 0))
        gin[0] = ad_mul(g, ad_mul(ad_mul_scalar(x, 2), ad_sin(z)));
    if (ad_custom_needs_input_grad(ctx, 1)) gin[1] = ad_mul(g, ad_mul(ad_mul(x, x), ad_cos(z)));
    return 0;
}

/* y = e^x, saving y; dx = g y */
static ad_tensor *exp_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    ad_tensor *y = ad_exp(in[0]);
    return ad_custom_save(ctx, 1, &y) ? NULL : y;
}
static int exp_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    gin[0] = ad_mul(g, ad_custom_saved(ctx, 0));
    return 0;
}

/* y = x * w broadcast; dx = sum_to(g w), dw = sum_to(g x) */
static ad_tensor *bmul_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    return ad_custom_save(ctx, 2, in) ? NULL : ad_mul(in[0], in[1]);
}
static int bmul_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    for (int i = 0; i < 2; i++) {
        if (!ad_custom_needs_input_grad(ctx, i)) continue;
        ad_tensor *me = ad_custom_saved(ctx, i), *other = ad_custom_saved(ctx, 1 - i);
        gin[i] = ad_sum_to(ad_mul(g, other), ad_ndim(me), ad_shape(me));
    }
    return 0;
}

static const ad_custom_desc descs[] = {
    {.name = "x2sin", .nin = 2, .forward = x2sin_fw, .backward = x2sin_bw},
    {.name = "exp", .nin = 1, .forward = exp_fw, .backward = exp_bw},
    {.name = "bmul", .nin = 2, .forward = bmul_fw, .backward = bmul_bw},
};

/* Made on first use and kept for the process, as rows_ffi.c's. */
static ad_tensor *b_custom(ad_tensor *const *in, int n, void *ctx)
{
    static ad_custom *made[3];
    int k = *(const int *)ctx;
    if (!made[k]) made[k] = ad_custom_new(&descs[k]);
    return made[k] ? ad_custom_call(made[k], n, in) : NULL;
}

static const int k_x2sin = 0, k_exp = 1, k_bmul = 2;

#define IN(nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}

const op_row rows_custom[] = {
    {"custom", "backward from saved inputs, x^2 sin z [2,3]", b_custom, (void *)&k_x2sin, 2,
     {IN(2, 2, 3), IN(2, 2, 3)}},
    {"custom", "z constant", b_custom, (void *)&k_x2sin, 2,
     {IN(1, 4), {1, {4}, OT_CONST, 0, 0, 0}}},
    {"custom", "backward from the saved output, exp [3,2]", b_custom, (void *)&k_exp, 1,
     {IN(2, 3, 2)}},
    {"custom", "broadcast undone by sum_to, [2,3] * [3]", b_custom, (void *)&k_bmul, 2,
     {IN(2, 2, 3), IN(1, 3)}},
    {NULL, NULL, NULL, NULL, 0, {{0}}},
};

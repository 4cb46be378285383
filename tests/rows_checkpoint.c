/* tests/rows_checkpoint.c - op rows for gradient checkpointing (see
 * optest.h).
 *
 * "checkpoint" is the node ad_checkpoint records; the rows check that
 * the gradients its rule delivers by recomputation are right to first
 * and second order (gradgradcheck records the backward pass, so the
 * recomputation's graph is differentiated again): a function of two
 * outputs combined afterwards, and one that reads a weight through its
 * ctx (a tensor made before the call, not an input). */
#include "optest.h"

/* out0 = tanh(x w), out1 = x^2 sin w (elementwise) */
static int two_outputs(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout, (void)ctx;
    ad_tensor *xw = ad_mul(in[0], in[1]);
    out[0] = ad_tanh(xw);
    out[1] = ad_mul(ad_mul(in[0], in[0]), ad_sin(in[1]));
    return out[0] && out[1] ? 0 : -1;
}

/* y = out0 + 2 out1 after the checkpoint, so both outputs' gradients
 * flow back through the one packed node */
static ad_tensor *b_two(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    ad_tensor *o[2];
    if (ad_checkpoint(two_outputs, NULL, 0, n, in, 2, o)) return NULL;
    return ad_add(o[0], ad_mul_scalar(o[1], 2.0));
}

/* out0 = exp(x) @ w, w read from ctx */
static int closes_over(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    ad_tensor *w = ctx;
    out[0] = ad_matmul(ad_exp(in[0]), w);
    return out[0] ? 0 : -1;
}

static ad_tensor *b_closure(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *o;
    if (ad_checkpoint(closes_over, in[1], 0, 1, in, 1, &o)) return NULL;
    return ad_sin(o);
}

#define IN(nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}

const op_row rows_checkpoint[] = {
    {"checkpoint", "two outputs, tanh(x w) + 2 x^2 sin w, [2,3]", b_two, NULL, 2,
     {IN(2, 2, 3), IN(2, 2, 3)}},
    {"checkpoint", "w not an input but read through ctx, sin(exp(x) w) [2,3] x [3,2]",
     b_closure, NULL, 2, {IN(2, 2, 3), IN(2, 3, 2)}},
    {NULL, NULL, NULL, NULL, 0, {{0}}},
};

/* tests/rows_loss.c - op rows for test_ops (see optest.h): the softmax family
 * and the losses.
 *
 * Inputs are drawn where every op is smooth: softmax is smooth everywhere,
 * and the losses are smooth in the logits for fixed labels.  Rows with
 * logits near 1000 check that the stabilised kernels and rules stay exact
 * far from the origin (a naive e^x would overflow there). */
#include "optest.h"

#include <stdint.h>

/* ctx of the softmax rows: the axis, carried in the pointer. */
#define AXIS(a) ((void *)(intptr_t)(a))
static int axis_of(void *ctx) { return (int)(intptr_t)ctx; }

static ad_tensor *b_softmax(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_softmax(in[0], axis_of(ctx));
}
static ad_tensor *b_log_softmax(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_log_softmax(in[0], axis_of(ctx));
}
/* Non-contiguous: the transpose of a [A,B] input, so the axis runs with a
 * stride other than 1 and the lines interleave in memory. */
static ad_tensor *b_softmax_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_softmax(ad_transpose(in[0], 0, 1), axis_of(ctx));
}
static ad_tensor *b_log_softmax_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_log_softmax(ad_transpose(in[0], 0, 1), axis_of(ctx));
}
/* The causal softmax, scale 0.7; and of a transposed (strided) input. */
static ad_tensor *b_causal(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_softmax_causal(in[0], 0.7);
}
static ad_tensor *b_causal_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_softmax_causal(ad_transpose(in[0], 1, 2), -1.3);
}
/* Non-contiguous: columns 1..4 of a [3,6] input (an offset and a gap
 * between rows). */
static ad_tensor *b_softmax_narrow(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_softmax(ad_narrow(in[0], 1, 1, 4), axis_of(ctx));
}
static ad_tensor *b_log_softmax_narrow(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_log_softmax(ad_narrow(in[0], 1, 1, 4), axis_of(ctx));
}
/* Stride 0: a [1,5] row broadcast to [3,5]; along axis 1 each line is the
 * same row, so the gradient sums three identical contributions. */
static ad_tensor *b_softmax_expand(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_softmax(ad_expand(in[0], 2, (int64_t[]){3, 5}), axis_of(ctx));
}
/* A 3-D input permuted so no dimension is contiguous, reduced along -2. */
static ad_tensor *b_log_softmax_perm(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_log_softmax(ad_permute(in[0], (int[]){2, 0, 1}), axis_of(ctx));
}
/* Softmax feeding a nonlinear consumer, so the second derivative of the
 * softmax meets a non-constant outer gradient. */
static ad_tensor *b_softmax_sq(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *y = ad_softmax(in[0], axis_of(ctx));
    return ad_mul(y, y);
}

/* ---- cross-entropy ---- */
typedef struct ce_cfg {
    ad_reduction red;
    double eps;
} ce_cfg;
static ce_cfg CE_MEAN = {AD_REDUCTION_MEAN, 0.0}, CE_SUM = {AD_REDUCTION_SUM, 0.0},
              CE_NONE = {AD_REDUCTION_NONE, 0.0}, CE_LS_MEAN = {AD_REDUCTION_MEAN, 0.1},
              CE_LS_NONE = {AD_REDUCTION_NONE, 0.25}, CE_LS_SUM1 = {AD_REDUCTION_SUM, 1.0};

static ad_tensor *ce(ad_tensor *logits, ad_tensor *labels, void *ctx)
{
    const ce_cfg *c = ctx;
    return c->eps == 0.0 ? ad_cross_entropy(logits, labels, c->red)
                         : ad_cross_entropy_ls(logits, labels, c->red, c->eps);
}
/* in[0] logits [N,C], in[1] labels [N] (OT_INDEX with imax C). */
static ad_tensor *b_ce(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ce(in[0], in[1], ctx);
}
/* Transposed logits: in[0] is [C,N]. */
static ad_tensor *b_ce_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ce(ad_transpose(in[0], 0, 1), in[1], ctx);
}
/* Strided labels: every other entry of an [8] index input, from 1. */
static ad_tensor *b_ce_label_slice(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ce(in[0], ad_slice(in[1], 0, 1, 8, 2), ctx);
}
/* Labels built here: one label (3) broadcast to all 4 rows (stride 0), on
 * the logits' tape. */
static ad_tensor *b_ce_label_expand(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *l = ot_index(ad_tensor_tape(in[0]), 1, (int64_t[]){1}, (int64_t[]){3});
    return ce(in[0], ad_expand(l, 1, (int64_t[]){4}), ctx);
}
/* Cross-entropy after a matrix-free linear map x * w (broadcast), so the
 * loss's second derivative is taken through another recorded op. */
static ad_tensor *b_ce_scaled(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ce(ad_mul(in[0], in[2]), in[1], ctx);
}

/* ---- mse ---- */
#define RED(r) ((void *)(intptr_t)(r))
static ad_reduction red_of(void *ctx) { return (ad_reduction)(intptr_t)ctx; }
static ad_tensor *b_mse(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_mse_loss(in[0], in[1], red_of(ctx));
}
/* a transposed ([4,3] input viewed as [3,4]) against a contiguous b. */
static ad_tensor *b_mse_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_mse_loss(ad_transpose(in[0], 0, 1), in[1], red_of(ctx));
}
/* The same tensor on both sides through different paths: a vs 2a - 1. */
static ad_tensor *b_mse_self(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_mse_loss(in[0], ad_sub_scalar(ad_mul_scalar(in[0], 2.0), 1.0), red_of(ctx));
}

#define G(...) {__VA_ARGS__}
#define IN(nd, sh) {nd, sh, OT_GRAD, 0, 0, 0}
#define INR(nd, sh, lo, hi) {nd, sh, OT_GRAD, lo, hi, 0}
#define CONST(nd, sh) {nd, sh, OT_CONST, 0, 0, 0}
#define LAB(nd, sh, c) {nd, sh, OT_INDEX, 0, 0, c}

const op_row rows_loss[] = {
    /* softmax */
    {"softmax_causal", "[2,4,4], scale 0.7", b_causal, NULL, 1, {IN(3, G(2, 4, 4))}},
    {"softmax_causal", "transposed [2,3,3], scale -1.3", b_causal_t, NULL, 1, {IN(3, G(2, 3, 3))}},
    {"softmax", "1-D [6], axis 0", b_softmax, AXIS(0), 1, {IN(1, G(6))}},
    {"softmax", "[2,5] along the last axis (-1)", b_softmax, AXIS(-1), 1, {IN(2, G(2, 5))}},
    {"softmax", "[4,3] along axis 0 (strided lines)", b_softmax, AXIS(0), 1, {IN(2, G(4, 3))}},
    {"softmax", "3-D [2,3,4] along the middle axis", b_softmax, AXIS(1), 1, {IN(3, G(2, 3, 4))}},
    {"softmax", "3-D [2,3,4] along axis -3", b_softmax, AXIS(-3), 1, {IN(3, G(2, 3, 4))}},
    {"softmax", "3-D [3,2,4] along axis 2, inputs in [-3, 3]", b_softmax, AXIS(2), 1,
     {INR(3, G(3, 2, 4), -3, 3)}},
    {"softmax", "0-d input (softmax is 1)", b_softmax, AXIS(0), 1, {IN(0, G(0))}},
    {"softmax", "transposed [5,3] -> [3,5], axis 1", b_softmax_t, AXIS(1), 1, {IN(2, G(5, 3))}},
    {"softmax", "transposed [5,3] -> [3,5], axis 0", b_softmax_t, AXIS(0), 1, {IN(2, G(5, 3))}},
    {"softmax", "narrowed columns of [3,6], axis -1", b_softmax_narrow, AXIS(-1), 1,
     {IN(2, G(3, 6))}},
    {"softmax", "expanded [1,5] -> [3,5] (stride 0), axis 1", b_softmax_expand, AXIS(1), 1,
     {IN(2, G(1, 5))}},
    {"softmax", "inputs near 1000 (stability)", b_softmax, AXIS(-1), 1,
     {INR(2, G(3, 4), 996, 1000)}},
    {"softmax", "inputs near -1000 (stability)", b_softmax, AXIS(0), 1,
     {INR(2, G(3, 4), -1000, -996)}},
    {"softmax", "squared after softmax (nonlinear consumer)", b_softmax_sq, AXIS(1), 1,
     {IN(2, G(3, 4))}},
    /* log_softmax */
    {"log_softmax", "1-D [6], axis -1", b_log_softmax, AXIS(-1), 1, {IN(1, G(6))}},
    {"log_softmax", "[2,5] along the last axis", b_log_softmax, AXIS(1), 1, {IN(2, G(2, 5))}},
    {"log_softmax", "[4,3] along axis 0", b_log_softmax, AXIS(0), 1, {IN(2, G(4, 3))}},
    {"log_softmax", "3-D [2,3,4] along axis -2", b_log_softmax, AXIS(-2), 1,
     {IN(3, G(2, 3, 4))}},
    {"log_softmax", "3-D [2,3,4] along axis 0", b_log_softmax, AXIS(0), 1, {IN(3, G(2, 3, 4))}},
    {"log_softmax", "0-d input (log_softmax is 0)", b_log_softmax, AXIS(-1), 1, {IN(0, G(0))}},
    {"log_softmax", "transposed [4,3] -> [3,4], axis -1", b_log_softmax_t, AXIS(-1), 1,
     {IN(2, G(4, 3))}},
    {"log_softmax", "narrowed columns of [3,6], axis 0", b_log_softmax_narrow, AXIS(0), 1,
     {IN(2, G(3, 6))}},
    {"log_softmax", "permuted 3-D [2,3,4] -> [4,2,3], axis -2", b_log_softmax_perm, AXIS(-2),
     1, {IN(3, G(2, 3, 4))}},
    {"log_softmax", "inputs near 1000 (stability)", b_log_softmax, AXIS(1), 1,
     {INR(2, G(2, 5), 996, 1000)}},
    {"log_softmax", "inputs near -1000 (stability)", b_log_softmax, AXIS(-1), 1,
     {INR(2, G(2, 5), -1000, -996)}},
    /* cross_entropy */
    {"cross_entropy", "[4,5] mean", b_ce, &CE_MEAN, 2, {IN(2, G(4, 5)), LAB(1, G(4), 5)}},
    {"cross_entropy", "[4,5] sum", b_ce, &CE_SUM, 2, {IN(2, G(4, 5)), LAB(1, G(4), 5)}},
    {"cross_entropy", "[4,5] none ([N] output)", b_ce, &CE_NONE, 2,
     {IN(2, G(4, 5)), LAB(1, G(4), 5)}},
    {"cross_entropy", "[1,2] mean (one sample, two classes)", b_ce, &CE_MEAN, 2,
     {IN(2, G(1, 2)), LAB(1, G(1), 2)}},
    {"cross_entropy", "[6,3] none, logits in [-4, 4]", b_ce, &CE_NONE, 2,
     {INR(2, G(6, 3), -4, 4), LAB(1, G(6), 3)}},
    {"cross_entropy", "transposed logits [5,4] -> [4,5], mean", b_ce_t, &CE_MEAN, 2,
     {IN(2, G(5, 4)), LAB(1, G(4), 5)}},
    {"cross_entropy", "transposed logits, none", b_ce_t, &CE_NONE, 2,
     {IN(2, G(5, 4)), LAB(1, G(4), 5)}},
    {"cross_entropy", "strided labels (slice step 2), sum", b_ce_label_slice, &CE_SUM, 2,
     {IN(2, G(4, 5)), LAB(1, G(8), 5)}},
    {"cross_entropy", "labels built in the builder, expanded (stride 0), mean",
     b_ce_label_expand, &CE_MEAN, 1, {IN(2, G(4, 5))}},
    {"cross_entropy", "logits near 1000 (stability), mean", b_ce, &CE_MEAN, 2,
     {INR(2, G(3, 4), 996, 1000), LAB(1, G(3), 4)}},
    {"cross_entropy", "logits near -1000 (stability), none", b_ce, &CE_NONE, 2,
     {INR(2, G(3, 4), -1000, -996), LAB(1, G(3), 4)}},
    {"cross_entropy", "label smoothing 0.1, mean", b_ce, &CE_LS_MEAN, 2,
     {IN(2, G(4, 5)), LAB(1, G(4), 5)}},
    {"cross_entropy", "label smoothing 0.25, none, transposed logits", b_ce_t, &CE_LS_NONE, 2,
     {IN(2, G(5, 3)), LAB(1, G(3), 5)}},
    {"cross_entropy", "label smoothing 1 (uniform target), sum", b_ce, &CE_LS_SUM1, 2,
     {IN(2, G(3, 4)), LAB(1, G(3), 4)}},
    {"cross_entropy", "logits * w (second derivative through mul), mean", b_ce_scaled,
     &CE_MEAN, 3, {IN(2, G(3, 4)), LAB(1, G(3), 4), INR(1, G(4), 0.5, 2)}},
    /* mse_loss */
    {"mse_loss", "[3,4] mean", b_mse, RED(AD_REDUCTION_MEAN), 2, {IN(2, G(3, 4)), IN(2, G(3, 4))}},
    {"mse_loss", "[3,4] sum", b_mse, RED(AD_REDUCTION_SUM), 2, {IN(2, G(3, 4)), IN(2, G(3, 4))}},
    {"mse_loss", "[3,4] none", b_mse, RED(AD_REDUCTION_NONE), 2,
     {IN(2, G(3, 4)), IN(2, G(3, 4))}},
    {"mse_loss", "b constant, 1-D [7], mean", b_mse, RED(AD_REDUCTION_MEAN), 2,
     {IN(1, G(7)), CONST(1, G(7))}},
    {"mse_loss", "a constant, 3-D [2,3,2], none", b_mse, RED(AD_REDUCTION_NONE), 2,
     {CONST(3, G(2, 3, 2)), IN(3, G(2, 3, 2))}},
    {"mse_loss", "0-d inputs, sum", b_mse, RED(AD_REDUCTION_SUM), 2, {IN(0, G(0)), IN(0, G(0))}},
    {"mse_loss", "transposed a [4,3] -> [3,4], mean", b_mse_t, RED(AD_REDUCTION_MEAN), 2,
     {IN(2, G(4, 3)), IN(2, G(3, 4))}},
    {"mse_loss", "transposed a, none", b_mse_t, RED(AD_REDUCTION_NONE), 2,
     {IN(2, G(4, 3)), IN(2, G(3, 4))}},
    {"mse_loss", "a against 2a - 1 (one input on both sides), sum", b_mse_self,
     RED(AD_REDUCTION_SUM), 1, {IN(2, G(2, 3))}},
    {0},
};

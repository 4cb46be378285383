/* tests/rows_nn.c - op rows for test_ops (see optest.h).
 *
 * Only unfold, fold, max_pool2d, batch_norm_stats and the direct
 * convolution (conv2d, conv_transpose2d, conv2d_weight) are ops of the
 * table here (and fused_lstm_cell, lstm_recurrence and layer_norm of
 * ops_fused.c, gru_recurrence and rnn_recurrence of ops_recurrence.c), and
 * dropout_mask (of ops_random.c; its row is here beside dropout's use);
 * conv2d outside the direct case, the pools, the normalisations, embedding and dropout (a mul by
 * dropout_mask's result) are compositions, so their rows are named
 * after a real op they exercise ("unfold" for conv2d, "mean" for
 * avg_pool2d...) and say what they are
 * in `what`.  Inputs stay tiny because
 * gradcheck is O(inputs x outputs). */
#include "optest.h"

/* ---- unfold / fold: ctx is a window ---- */
typedef struct win {
    int k[2], s[2], p[2], d[2];
    int out[2];      /* fold's output_size */
    bool transpose;  /* swap the last two dims of the input first (non-contiguous) */
} win;

static ad_tensor *unfold_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    const win *w = ctx;
    ad_tensor *x = w->transpose ? ad_transpose(in[0], 2, 3) : in[0];
    return ad_unfold(x, w->k, w->s, w->p, w->d);
}

static ad_tensor *fold_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    const win *w = ctx;
    ad_tensor *x = w->transpose ? ad_transpose(in[0], 1, 2) : in[0];
    return ad_fold(x, w->out, w->k, w->s, w->p, w->d);
}

static win U_3x3 = {{3, 3}, {1, 1}, {0, 0}, {1, 1}, {0, 0}, false};
static win U_MIX = {{2, 3}, {2, 1}, {1, 0}, {1, 2}, {0, 0}, false};
static win U_T = {{2, 2}, {1, 2}, {1, 1}, {2, 1}, {0, 0}, true};
static win F_2x2 = {{2, 2}, {1, 1}, {0, 0}, {1, 1}, {4, 4}, false};
static win F_MIX = {{3, 2}, {2, 2}, {1, 1}, {1, 2}, {5, 5}, false};
static win F_T = {{2, 2}, {2, 1}, {1, 0}, {1, 1}, {3, 4}, true};

/* ---- conv2d: ctx is its parameters; in = x, w[, bias] ---- */
static ad_tensor *conv_f(ad_tensor *const *in, int n, void *ctx)
{
    return ad_conv2d(in[0], in[1], n > 2 ? in[2] : NULL, ctx);
}
static ad_tensor *conv_t_f(ad_tensor *const *in, int n, void *ctx)
{
    /* x given as [N, C, W, H] and transposed: a non-contiguous input */
    return ad_conv2d(ad_transpose(in[0], 2, 3), in[1], n > 2 ? in[2] : NULL, ctx);
}
/* conv2d_relu: as conv_f.  Like relu's own rows, these rely on no
 * pre-activation of the seeded inputs lying within a difference step of 0
 * (the kink) */
static ad_tensor *convr_f(ad_tensor *const *in, int n, void *ctx)
{
    return ad_conv2d_relu(in[0], in[1], n > 2 ? in[2] : NULL, ctx);
}
static ad_tensor *convr_t_f(ad_tensor *const *in, int n, void *ctx)
{
    return ad_conv2d_relu(ad_transpose(in[0], 2, 3), in[1], n > 2 ? in[2] : NULL, ctx);
}
/* conv_transpose2d: in = x [N, C_in, H, W], w [C_in, C_out, kh, kw][, bias] */
static ad_tensor *convt_f(ad_tensor *const *in, int n, void *ctx)
{
    return ad_conv_transpose2d(in[0], in[1], n > 2 ? in[2] : NULL, ctx);
}
/* conv2d_weight: in = x, grad_output; ctx gives the kernel and padding */
typedef struct wgrad {
    int64_t kh, kw;
    ad_conv2d_params p;
} wgrad;
static ad_tensor *convw_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    const wgrad *g = ctx;
    int64_t ws[4] = {ad_size(in[1], 1), ad_size(in[0], 1), g->kh, g->kw};
    return ad_conv2d_weight(in[0], ws, in[1], &g->p);
}
static ad_conv2d_params C_PLAIN = {{0, 0}, {0, 0}, {0, 0}, 0};
static ad_conv2d_params C_P1 = {{1, 1}, {1, 1}, {1, 1}, 1};
static ad_conv2d_params C_P02 = {{1, 1}, {0, 2}, {1, 1}, 1};
static ad_conv2d_params C_P21 = {{0, 0}, {2, 1}, {0, 0}, 0};
static wgrad W_3x3 = {3, 3, {{1, 1}, {0, 0}, {1, 1}, 1}};
static wgrad W_P1 = {3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}};
static wgrad W_2x3 = {2, 3, {{0, 0}, {1, 0}, {0, 0}, 0}};
static ad_conv2d_params C_S2P1 = {{2, 2}, {1, 1}, {1, 1}, 1};
static ad_conv2d_params C_DIL2 = {{1, 1}, {0, 0}, {2, 2}, 1};
static ad_conv2d_params C_G2 = {{1, 1}, {1, 0}, {1, 1}, 2};
static ad_conv2d_params C_MIX = {{2, 1}, {0, 1}, {1, 2}, 1};

/* ---- pools: ctx is {kernel, stride, padding} ---- */
typedef struct pool {
    int k[2], s[2], p[2];
    bool include_pad;
} pool;
static ad_tensor *maxpool_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    const pool *p = ctx;
    return ad_max_pool2d(in[0], p->k, p->s, p->p);
}
static ad_tensor *avgpool_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    const pool *p = ctx;
    return ad_avg_pool2d(in[0], p->k, p->s, p->p, p->include_pad);
}
static pool P_2 = {{2, 2}, {0, 0}, {0, 0}, true};
static pool P_3S2P1 = {{3, 3}, {2, 2}, {1, 1}, true};
static pool P_3S1 = {{3, 2}, {1, 1}, {0, 1}, true};
static pool P_EXCL = {{3, 3}, {2, 2}, {1, 1}, false};

/* ---- normalisation ---- */
static int ONE = 1, TWO = 2;
static ad_tensor *layer_norm_f(ad_tensor *const *in, int n, void *ctx)
{
    return ad_layer_norm(in[0], *(int *)ctx, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, 1e-5);
}
/* bias only; a transposed (strided) x with weight only */
static ad_tensor *layer_norm_b_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_layer_norm(in[0], 1, NULL, in[1], 1e-5);
}
static ad_tensor *layer_norm_tw_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_layer_norm(ad_transpose(in[0], 0, 1), 1, in[1], NULL, 1e-5);
}
static ad_tensor *batch_norm_train_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    return ad_batch_norm(in[0], NULL, NULL, n > 1 ? in[1] : NULL, n > 2 ? in[2] : NULL, true,
                         0.1, 1e-5);
}
/* Training with running statistics (made here, updated and discarded). */
static ad_tensor *batch_norm_running_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tape *t = ad_tensor_tape(in[0]);
    int64_t c = ad_size(in[0], 1);
    ad_tensor *rm = ad_zeros(t, ad_tensor_dtype(in[0]), 1, &c);
    ad_tensor *rv = ad_ones(t, ad_tensor_dtype(in[0]), 1, &c);
    return ad_batch_norm(in[0], rm, rv, in[1], in[2], true, 0.1, 1e-5);
}
/* Eval: in = x, running_mean, running_var (constants), weight; no bias. */
static ad_tensor *batch_norm_eval_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_batch_norm(in[0], in[1], in[2], in[3], NULL, false, 0.1, 1e-5);
}

/* ---- embedding and dropout ---- */
static ad_tensor *embedding_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_embedding(in[0], in[1]);
}
static ad_tensor *dropout_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_rng rng; /* the same seed on every call: the same mask */
    ad_rng_init(&rng, 7);
    return ad_dropout(in[0], 0.4, true, &rng);
}

/* ---- fused_lstm_cell: in = gx, gh, c; the strided case reads gx as the
 * transpose of an [4H, B] input ---- */
static ad_tensor *lstm_cell_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *gx = ctx ? ad_transpose(in[0], 0, 1) : in[0];
    return ad_fused_lstm_cell(gx, in[1], in[2]);
}

/* ---- lstm_recurrence: in = gx, w_hh, h0, c0 ---- */
static ad_tensor *lstm_seq_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_lstm_recurrence(in[0], in[1], in[2], in[3]);
}

/* ---- gru_recurrence: in = gx, w_hh, h0[, b_hh] ---- */
static ad_tensor *gru_seq_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    return ad_gru_recurrence(in[0], in[1], n > 3 ? in[3] : NULL, in[2]);
}

/* ---- rnn_recurrence: in = gx, w_hh, h0; ctx non-NULL: relu ---- */
static ad_tensor *rnn_seq_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_rnn_recurrence(in[0], in[1], in[2], ctx != NULL);
}

/* ---- causal_attention: in = qkv ---- */
static ad_tensor *attn_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    /* ctx: qkv given transposed ([B, 3D, T] stored, a strided view) */
    ad_tensor *qkv = ctx ? ad_transpose(in[0], 1, 2) : in[0];
    return ad_causal_attention(qkv, 2, 0.8);
}

#define X4(a, b, c, d) {4, {a, b, c, d}, OT_GRAD, 0, 0, 0}
#define X3(a, b, c) {3, {a, b, c}, OT_GRAD, 0, 0, 0}
#define V1(a) {1, {a}, OT_GRAD, 0, 0, 0}

const op_row rows_nn[] = {
    /* unfold */
    {"unfold", "unfold 3x3, stride 1, no padding", unfold_f, &U_3x3, 1, {X4(1, 2, 4, 4)}},
    {"unfold", "unfold kernel 2x3, stride 2x1, padding 1x0, dilation 1x2, batch 2", unfold_f,
     &U_MIX, 1, {X4(2, 1, 5, 5)}},
    {"unfold", "unfold of a transposed (non-contiguous) input, dilation 2x1, stride 1x2",
     unfold_f, &U_T, 1, {X4(1, 2, 4, 3)}},
    /* fold */
    {"fold", "fold 2x2 stride 1 into 4x4 (overlapping windows sum)", fold_f, &F_2x2, 1,
     {X3(1, 8, 9)}},
    {"fold", "fold kernel 3x2, stride 2, padding 1, dilation 1x2 into 5x5", fold_f, &F_MIX, 1,
     {X3(1, 6, 9)}},
    {"fold", "fold of a transposed (non-contiguous) input, stride 2x1, padding 1x0", fold_f, &F_T,
     1, {X3(2, 6, 4)}},
    /* conv2d, the direct op (groups 1, stride 1, dilation 1) */
    {"conv2d", "conv2d 3x3 with bias", conv_f, &C_PLAIN, 3,
     {X4(1, 2, 5, 5), X4(3, 2, 3, 3), V1(3)}},
    {"conv2d", "conv2d 3x3 padding 1, batch 2, odd 5x4 input", conv_f, &C_P1, 3,
     {X4(2, 3, 5, 4), X4(2, 3, 3, 3), V1(2)}},
    {"conv2d", "conv2d kernel 2x3, padding 0x2, 5 output channels", conv_f, &C_P02, 2,
     {X4(1, 2, 4, 3), X4(5, 2, 2, 3)}},
    {"conv2d", "conv2d 1x1 with padding 2x1 beyond the kernel (transpose crops)", conv_f, &C_P21,
     2, {X4(2, 2, 3, 2), X4(3, 2, 1, 1)}},
    {"conv2d", "conv2d of a transposed (non-contiguous) input, padding 1", conv_t_f, &C_P1, 2,
     {X4(1, 2, 4, 5), X4(2, 2, 2, 2)}},
    /* conv2d_relu, the direct op with relu in its epilogue */
    {"conv2d_relu", "conv2d_relu 3x3 with bias", convr_f, &C_PLAIN, 3,
     {X4(1, 2, 5, 5), X4(3, 2, 3, 3), V1(3)}},
    {"conv2d_relu", "conv2d_relu 3x3 padding 1, batch 2, odd 5x4 input", convr_f, &C_P1, 3,
     {X4(2, 3, 5, 4), X4(2, 3, 3, 3), V1(2)}},
    {"conv2d_relu", "conv2d_relu kernel 2x3, padding 0x2, no bias", convr_f, &C_P02, 2,
     {X4(1, 2, 4, 3), X4(5, 2, 2, 3)}},
    {"conv2d_relu", "conv2d_relu of a transposed (non-contiguous) input, padding 1", convr_t_f,
     &C_P1, 3, {X4(1, 2, 4, 5), X4(2, 2, 2, 2), V1(2)}},
    {"relu", "conv2d_relu stride 2 (the composite, then relu)", convr_f, &C_S2P1, 2,
     {X4(1, 2, 5, 5), X4(2, 2, 3, 3)}},
    /* conv_transpose2d and conv2d_weight, conv2d's derivatives */
    {"conv_transpose2d", "conv_transpose2d 3x3 with bias", convt_f, &C_PLAIN, 3,
     {X4(1, 2, 3, 3), X4(2, 3, 3, 3), V1(3)}},
    {"conv_transpose2d", "conv_transpose2d kernel 2x3, padding 1, batch 2", convt_f, &C_P1, 2,
     {X4(2, 3, 4, 5), X4(3, 2, 2, 3)}},
    {"conv_transpose2d", "conv_transpose2d 1x1, padding 2x1 (crops)", convt_f, &C_P21, 2,
     {X4(1, 2, 5, 4), X4(2, 1, 1, 1)}},
    {"conv2d_weight", "conv2d_weight 3x3, batch 2", convw_f, &W_3x3, 2,
     {X4(2, 2, 4, 4), X4(2, 3, 2, 2)}},
    {"conv2d_weight", "conv2d_weight 3x3 padding 1, odd 3x4 input", convw_f, &W_P1, 2,
     {X4(1, 2, 3, 4), X4(1, 2, 3, 4)}},
    {"conv2d_weight", "conv2d_weight kernel 2x3, padding 1x0, batch 2", convw_f, &W_2x3, 2,
     {X4(2, 1, 4, 5), X4(2, 2, 5, 3)}},
    /* conv2d, the composite (unfold -> matmul -> reshape -> add) */
    {"unfold", "conv2d without bias, stride 2, padding 1", conv_f, &C_S2P1, 2,
     {X4(1, 2, 5, 5), X4(2, 2, 3, 3)}},
    {"unfold", "conv2d dilation 2, batch 2", conv_f, &C_DIL2, 3,
     {X4(2, 1, 5, 5), X4(2, 1, 2, 2), V1(2)}},
    {"unfold", "conv2d groups 2, padding 1x0, with bias", conv_f, &C_G2, 3,
     {X4(1, 4, 3, 3), X4(4, 2, 2, 2), V1(4)}},
    {"matmul", "conv2d of a transposed input, stride 2x1, padding 0x1, dilation 1x2", conv_t_f,
     &C_MIX, 2, {X4(1, 2, 5, 4), X4(2, 2, 2, 2)}},
    /* pools */
    {"max_pool2d", "max_pool2d 2x2 (stride = kernel)", maxpool_f, &P_2, 1,
     {X4(1, 2, 4, 4)}},
    {"max_pool2d", "max_pool2d 3x3 stride 2 padding 1 (padding never chosen)", maxpool_f,
     &P_3S2P1, 1, {X4(1, 1, 5, 5)}},
    {"max_pool2d", "max_pool2d 3x2 stride 1 padding 0x1 (overlapping windows)", maxpool_f, &P_3S1,
     1, {X4(2, 1, 4, 3)}},
    {"mean", "avg_pool2d 3x3 stride 2 padding 1, count_include_pad", avgpool_f, &P_3S2P1, 1,
     {X4(1, 2, 5, 5)}},
    {"mean", "avg_pool2d 3x2 stride 1 padding 0x1, count_include_pad", avgpool_f, &P_3S1, 1,
     {X4(1, 1, 4, 3)}},
    {"sum", "avg_pool2d 3x3 stride 2 padding 1, count_include_pad false", avgpool_f, &P_EXCL, 1,
     {X4(1, 2, 5, 5)}},
    /* layer_norm */
    {"layer_norm", "layer_norm over the last dim with weight and bias", layer_norm_f, &ONE, 3,
     {{2, {3, 4}, OT_GRAD, 0, 0, 0}, V1(4), V1(4)}},
    {"layer_norm", "layer_norm over the last 2 dims with weight and bias", layer_norm_f, &TWO, 3,
     {X3(2, 2, 3), {2, {2, 3}, OT_GRAD, 0, 0, 0}, {2, {2, 3}, OT_GRAD, 0, 0, 0}}},
    {"layer_norm", "layer_norm over the last dim, bias only", layer_norm_b_f, NULL, 2,
     {{2, {3, 5}, OT_GRAD, 0, 0, 0}, V1(5)}},
    {"layer_norm", "layer_norm of a transposed (strided) x, weight only", layer_norm_tw_f, NULL, 2,
     {{2, {4, 3}, OT_GRAD, 0, 0, 0}, V1(4)}},
    {"layer_norm", "layer_norm over the last 2 dims, no affine", layer_norm_f, &TWO, 1,
     {X3(2, 3, 3)}},
    /* batch_norm */
    {"var", "batch_norm training [N, C] with weight and bias", batch_norm_train_f, NULL, 3,
     {{2, {4, 3}, OT_GRAD, 0, 0, 0}, V1(3), V1(3)}},
    {"var", "batch_norm training [N, C, H, W] with weight and bias", batch_norm_train_f, NULL, 3,
     {X4(2, 2, 3, 3), V1(2), V1(2)}},
    {"mean", "batch_norm training [N, C, H, W], running stats updated", batch_norm_running_f, NULL,
     3, {X4(2, 3, 2, 2), V1(3), V1(3)}},
    {"batch_norm_stats", "batch_norm training, running stats updated (the update is an op of "
     "its own, not differentiable)", batch_norm_running_f, NULL, 3, {X4(2, 2, 3, 2), V1(2), V1(2)}},
    {"sqrt", "batch_norm eval with running stats (constants), weight", batch_norm_eval_f, NULL, 4,
     {X4(2, 2, 2, 2), {1, {2}, OT_CONST, -0.5, 0.5, 0}, {1, {2}, OT_CONST, 0.5, 2, 0}, V1(2)}},
    /* the fused LSTM cell */
    {"fused_lstm_cell", "fused LSTM cell, B 2, H 3", lstm_cell_f, NULL, 3,
     {{2, {2, 12}, OT_GRAD, -2, 2, 0}, {2, {2, 12}, OT_GRAD, 0, 0, 0},
      {2, {2, 3}, OT_GRAD, -2, 2, 0}}},
    {"fused_lstm_cell", "fused LSTM cell with a transposed (strided) gx, constant c",
     lstm_cell_f, (void *)1, 3,
     {{2, {8, 3}, OT_GRAD, 0, 0, 0}, {2, {3, 8}, OT_GRAD, 0, 0, 0},
      {2, {3, 2}, OT_CONST, 0, 0, 0}}},
    {"causal_attention", "causal attention, B 2, T 4, 2 heads of 2", attn_f, NULL, 1,
     {X3(2, 4, 12)}},
    {"causal_attention", "causal attention of a strided qkv, B 1, T 3, 2 heads of 1", attn_f,
     (void *)1, 1, {X3(1, 6, 3)}},
    {"lstm_recurrence", "LSTM recurrence, T 3, B 2, H 2", lstm_seq_f, NULL, 4,
     {{3, {3, 2, 8}, OT_GRAD, -1.5, 1.5, 0}, {2, {8, 2}, OT_GRAD, 0, 0, 0},
      {2, {2, 2}, OT_GRAD, 0, 0, 0}, {2, {2, 2}, OT_GRAD, -1.5, 1.5, 0}}},
    {"lstm_recurrence", "LSTM recurrence, T 1, constant h0", lstm_seq_f, NULL, 4,
     {{3, {1, 3, 4}, OT_GRAD, 0, 0, 0}, {2, {4, 1}, OT_GRAD, 0, 0, 0},
      {2, {3, 1}, OT_CONST, 0, 0, 0}, {2, {3, 1}, OT_GRAD, 0, 0, 0}}},
    {"gru_recurrence", "GRU recurrence, T 3, B 2, H 2, with b_hh", gru_seq_f, NULL, 4,
     {{3, {3, 2, 6}, OT_GRAD, -1.5, 1.5, 0}, {2, {6, 2}, OT_GRAD, 0, 0, 0},
      {2, {2, 2}, OT_GRAD, 0, 0, 0}, V1(6)}},
    {"gru_recurrence", "GRU recurrence, T 2, B 3, H 1, no b_hh, constant h0", gru_seq_f, NULL, 3,
     {{3, {2, 3, 3}, OT_GRAD, 0, 0, 0}, {2, {3, 1}, OT_GRAD, 0, 0, 0},
      {2, {3, 1}, OT_CONST, 0, 0, 0}}},
    {"rnn_recurrence", "Elman recurrence, tanh, T 3, B 2, H 3", rnn_seq_f, NULL, 3,
     {{3, {3, 2, 3}, OT_GRAD, -1.5, 1.5, 0}, {2, {3, 3}, OT_GRAD, 0, 0, 0},
      {2, {2, 3}, OT_GRAD, 0, 0, 0}}},
    {"rnn_recurrence", "Elman recurrence, relu, T 3, B 2, H 2, constant h0", rnn_seq_f, (void *)1,
     3, {{3, {3, 2, 2}, OT_GRAD, 0.5, 1.5, 0}, {2, {2, 2}, OT_GRAD, 0, 0, 0},
         {2, {2, 2}, OT_CONST, 0.5, 1.5, 0}}},
    /* embedding and dropout */
    {"index_select", "embedding [5,3] looked up by [2,3] indices (repeats accumulate)",
     embedding_f, NULL, 2, {{2, {5, 3}, OT_GRAD, 0, 0, 0}, {2, {2, 3}, OT_INDEX, 0, 0, 5}}},
    {"dropout_mask", "dropout p = 0.4 training, fixed seed (the same mask each call)", dropout_f,
     NULL, 1, {{2, {3, 4}, OT_GRAD, 0, 0, 0}}},
    {0},
};

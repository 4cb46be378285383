/* nn/rnn.c - RNN, GRU and LSTM: the functional forms and the modules.
 *
 * Built from the public differentiable ops only (matmul, narrow, sigmoid,
 * tanh, mul, add, stack), so the backward pass through the unrolled time
 * loop - backprop through time - is the ordinary one, to any order.
 *
 * The cost of a recurrent layer is in its time loop, which cannot be
 * parallelised over t.  What keeps it small: LSTM and GRU layers compute
 * the input's share of all steps' gates in one product before the loop
 * and run the loop as one op (ad_lstm_recurrence, ad_gru_recurrence: per
 * step one product and one pass over the gates, and backward the
 * recurrent weight's gradient as one product over all steps); RNN layers
 * and RNN and GRU cells join [W_ih W_hh] once per
 * call, so that each step makes one matrix product [x_t, h] W^T for all
 * the gate blocks at once, which are then taken apart as views (narrow),
 * not copies; and the steps' outputs stay separate tensors, so the
 * backward pass never builds a whole sequence's gradient per step (see
 * nn_rnn_sequence). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "init.h"
#include "module.h"
#include "nn_private.h"
#include "rnn.h"

/* Gate blocks stacked in the weights. */
static int64_t gates_of(nn_rnn_mode mode) { return mode == NN_GRU ? 3 : mode == NN_LSTM ? 4 : 1; }

static bool mode_ok(int mode) { return mode >= NN_RNN_TANH && mode <= NN_LSTM; }

/* ---- argument checks ------------------------------------------------------------ */

/* t is a tensor of x's dtype with exactly the extents shape[0..nd). */
static int check_shape(const char *fn, const char *what, const ad_tensor *t, ad_dtype dt,
                       int nd, const int64_t *shape)
{
    bool ok = ad_tensor_dtype(t) == dt && ad_ndim(t) == nd;
    for (int d = 0; ok && d < nd; d++) ok = ad_size(t, d) == shape[d];
    if (ok) return 0;
    char a[96], b[96];
    ad_shape_str(t, a, sizeof a);
    nn__shape_str(nd, shape, b, sizeof b);
    return ad_set_error("%s: %s is %s %s, expected %s %s", fn, what, a,
                        ad_dtype_name(ad_tensor_dtype(t)), b, ad_dtype_name(dt));
}

/* The weights of one layer: w_ih [G H, F], w_hh [G H, H], biases [G H]. */
static int check_layer(const char *fn, int layer, ad_tensor *const *w, bool bias, ad_dtype dt,
                       int64_t gh, int64_t f, int64_t h)
{
    static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    for (int i = 0; i < (bias ? 4 : 2); i++) {
        char what[48];
        snprintf(what, sizeof what, "%s_l%d", names[i], layer);
        if (!w[i]) return nn__null_arg(fn, what);
        if (ad_check_optional(fn, what, w[i]) != 0) return -1;
        const int64_t shape[2] = {gh, i == 0 ? f : h};
        if (check_shape(fn, what, w[i], dt, i < 2 ? 2 : 1, shape) != 0) return -1;
    }
    return 0;
}

/* x floating with nd dimensions; h (and c) NULL or of shape state[]. */
static int check_inputs(const char *fn, nn_rnn_mode mode, ad_tensor *x, int nd, ad_tensor *h,
                        ad_tensor *c, int snd, const int64_t *state)
{
    if (!mode_ok((int)mode)) return ad_set_error("%s: unknown mode %d", fn, (int)mode);
    if (!x) return nn__null_arg(fn, "x");
    if (ad_check_optional(fn, "x", x) != 0 || ad_check_optional(fn, "h0", h) != 0 ||
        ad_check_optional(fn, "c0", c) != 0)
        return -1;
    if (!nn__is_float(ad_tensor_dtype(x)) || ad_ndim(x) != nd) {
        char a[96];
        ad_shape_str(x, a, sizeof a);
        return ad_set_error("%s: x must be a floating tensor %s, got %s %s", fn,
                            nd == 3 ? "[batch, time, features]" : "[batch, features]", a,
                            ad_dtype_name(ad_tensor_dtype(x)));
    }
    if (nd == 3 && ad_size(x, 1) < 1)
        return ad_set_error("%s: the sequence is empty (x has 0 time steps)", fn);
    if (c && mode != NN_LSTM) return ad_set_error("%s: c0 is given but only an LSTM has a cell state", fn);
    if (h && check_shape(fn, "h0", h, ad_tensor_dtype(x), snd, state) != 0) return -1;
    if (c && check_shape(fn, "c0", c, ad_tensor_dtype(x), snd, state) != 0) return -1;
    return 0;
}

/* ---- the recurrence ---------------------------------------------------------------- */

/* The weights of one layer as one matrix, so that a step is one product
 * [x_t, h] W^T + b for all gate blocks: W = [W_ih W_hh] [G H, F + H] and
 * b = b_ih + b_hh (RNN, LSTM).  The GRU's n block keeps the input and
 * recurrent parts apart (r multiplies only the latter), so its W has four
 * blocks [W_ir W_hr; W_iz W_hz; W_in 0; 0 W_hn] and b = [b_ir + b_hr,
 * b_iz + b_hz, b_in, b_hn].  Built once per call (a copy of the weights),
 * differentiable like everything else.  *wt = W^T (a view), *b or NULL. */
static void fuse(nn_rnn_mode mode, int64_t H, ad_tape *tape, ad_tensor *wih, ad_tensor *whh,
                 ad_tensor *bih, ad_tensor *bhh, ad_tensor **wt, ad_tensor **b)
{
    ad_tensor *w;
    if (mode != NN_GRU) {
        w = ad_concat((ad_tensor *[]){wih, whh}, 2, 1);
        *b = bih ? ad_add(bih, bhh) : NULL;
    } else {
        ad_dtype dt = ad_tensor_dtype(wih);
        int64_t F = ad_size(wih, 1);
        ad_tensor *rz = ad_concat((ad_tensor *[]){ad_narrow(wih, 0, 0, 2 * H),
                                                  ad_narrow(whh, 0, 0, 2 * H)}, 2, 1);
        ad_tensor *nx = ad_concat((ad_tensor *[]){ad_narrow(wih, 0, 2 * H, H),
                                                  ad_zeros(tape, dt, 2, (int64_t[]){H, H})}, 2, 1);
        ad_tensor *nh = ad_concat((ad_tensor *[]){ad_zeros(tape, dt, 2, (int64_t[]){H, F}),
                                                  ad_narrow(whh, 0, 2 * H, H)}, 2, 1);
        w = ad_concat((ad_tensor *[]){rz, nx, nh}, 3, 0);
        *b = bih ? ad_concat((ad_tensor *[]){ad_add(ad_narrow(bih, 0, 0, 2 * H),
                                                    ad_narrow(bhh, 0, 0, 2 * H)),
                                             ad_narrow(bih, 0, 2 * H, H),
                                             ad_narrow(bhh, 0, 2 * H, H)}, 3, 0)
                 : NULL;
    }
    *wt = ad_transpose(w, 0, 1);
}

/* One step of an Elman recurrence or a GRU cell: *h1 = h' from the input
 * x [B, F] and the state h [B, H], with the fused weights wt [F + H,
 * blocks H] and b.  (The LSTM runs as its fused ops, lstm_step and
 * run_fused; GRU sequence layers as run_fused.)  NULL results propagate
 * through the ops with the first failure's message. */
static void step(nn_rnn_mode mode, int64_t H, ad_tensor *x, ad_tensor *h, ad_tensor *wt,
                 ad_tensor *b, ad_tensor **h1)
{
    /* every gate block of the step in one product */
    ad_tensor *pre = ad_matmul(ad_concat((ad_tensor *[]){x, h}, 2, 1), wt);
    if (b) pre = ad_add(pre, b);
    switch (mode) {
    case NN_RNN_TANH:
        *h1 = ad_tanh(pre);
        break;
    case NN_RNN_RELU:
        *h1 = ad_relu(pre);
        break;
    case NN_GRU: {
        ad_tensor *rz = ad_sigmoid(ad_narrow(pre, 1, 0, 2 * H));
        ad_tensor *r = ad_narrow(rz, 1, 0, H), *z = ad_narrow(rz, 1, H, H);
        ad_tensor *n = ad_tanh(ad_add(ad_narrow(pre, 1, 2 * H, H),
                                      ad_mul(r, ad_narrow(pre, 1, 3 * H, H))));
        /* h' = (1 - z) n + z h, written n + z (h - n): one op fewer */
        *h1 = ad_add(n, ad_mul(z, ad_sub(h, n)));
        break;
    }
    case NN_LSTM:
        *h1 = NULL; /* not reached: see above */
        break;
    }
}

/* One LSTM step from its input's share of the gates gx [B, 4H] (biases
 * included): the hidden state's share h W_hh^T, then the fused cell op,
 * whose [2, B, H] result holds h' and c'. */
static void lstm_step(ad_tensor *gx, ad_tensor *h, ad_tensor *c, ad_tensor *w_hh, ad_tensor **h1,
                      ad_tensor **c1)
{
    ad_tensor *y = ad_fused_lstm_cell(gx, ad_linear(h, w_hh, NULL), c);
    *h1 = ad_squeeze(ad_narrow(y, 0, 0, 1), 0);
    *c1 = ad_squeeze(ad_narrow(y, 0, 1, 1), 0);
}

/* Ends scope s with the main result r and the extra results e1, e2: with a
 * scratch tape, the extras are copied out as persistent tensors first.
 * *persistent says whether the results are then the caller's to free (a
 * scratch tape's: ad_scope_end clears s->scratch, so the callers cannot
 * read it there afterwards, and leaked the results they did not want). */
static int end_scope(ad_scope *s, ad_tensor **r, ad_tensor **e1, ad_tensor **e2,
                     bool *persistent)
{
    ad_tensor **ex[2] = {e1, e2};
    bool ok = *r != NULL, scratch = s->scratch != NULL;
    *persistent = scratch;
    for (int k = 0; k < 2; k++) {
        if (!ex[k] || !*ex[k]) continue;
        if (scratch) *ex[k] = ok ? ad_copy(NULL, *ex[k]) : NULL;
        ok = ok && *ex[k];
    }
    ad_tensor *out = ad_scope_end(s, ok ? *r : NULL);
    if (!ok || !out) {
        for (int k = 0; k < 2; k++) {
            if (ex[k] && *ex[k] && scratch) ad_tensor_free(*ex[k]);
            if (ex[k]) *ex[k] = NULL;
        }
        *r = NULL;
        return -1;
    }
    *r = out;
    return 0;
}

/* nn_rnn_cell_step, its errors naming fn (nn_rnn_forward's for a cell). */
static int cell_step(const char *fn, nn_rnn_mode mode, ad_tensor *x, ad_tensor *h, ad_tensor *c,
                     ad_tensor *w_ih, ad_tensor *w_hh, ad_tensor *b_ih, ad_tensor *b_hh,
                     ad_tensor **h_out, ad_tensor **c_out)
{
    if (h_out) *h_out = NULL;
    if (c_out) *c_out = NULL;
    if (!h_out) return nn__null_arg(fn, "h_out");
    if (!w_hh || !w_ih) return nn__null_arg(fn, w_ih ? "w_hh" : "w_ih");
    if ((b_ih == NULL) != (b_hh == NULL))
        return ad_set_error("%s: give both biases or neither", fn);
    int64_t H = ad_ndim(w_hh) == 2 ? ad_size(w_hh, 1) : 0;
    int64_t B = x && ad_ndim(x) == 2 ? ad_size(x, 0) : 0;
    const int64_t st[2] = {B, H};
    if (check_inputs(fn, mode, x, 2, h, c, 2, st) != 0) return -1;
    ad_tensor *const w[4] = {w_ih, w_hh, b_ih, b_hh};
    if (check_layer(fn, 0, w, b_ih != NULL, ad_tensor_dtype(x), gates_of(mode) * H,
                    ad_size(x, 1), H) != 0)
        return -1;
    ad_tensor *in[7] = {x, h, c, w_ih, w_hh, b_ih, b_hh};
    ad_scope s;
    if (ad_scope_begin(&s, fn, 7, in, false) != 0) return -1;
    ad_dtype dt = ad_tensor_dtype(x);
    if (!h) h = ad_zeros(s.tape, dt, 2, st);
    if (!c && mode == NN_LSTM) c = ad_zeros(s.tape, dt, 2, st);
    ad_tensor *h1 = NULL, *c1 = NULL, *wt = NULL, *b = NULL;
    if (mode == NN_LSTM) {
        lstm_step(ad_linear(x, w_ih, b_ih ? ad_add(b_ih, b_hh) : NULL), h, c, w_hh, &h1, &c1);
    } else {
        fuse(mode, H, s.tape, w_ih, w_hh, b_ih, b_hh, &wt, &b);
        step(mode, H, x, h, wt, b, &h1);
    }
    bool persistent;
    if (end_scope(&s, &h1, mode == NN_LSTM ? &c1 : NULL, NULL, &persistent) != 0) return -1;
    *h_out = h1;
    if (c_out) *c_out = c1;
    else if (c1 && persistent) ad_tensor_free(c1);
    return 0;
}

int nn_rnn_cell_step(nn_rnn_mode mode, ad_tensor *x, ad_tensor *h, ad_tensor *c, ad_tensor *w_ih,
                     ad_tensor *w_hh, ad_tensor *b_ih, ad_tensor *b_hh, ad_tensor **h_out,
                     ad_tensor **c_out)
{
    return cell_step("nn_rnn_cell_step", mode, x, h, c, w_ih, w_hh, b_ih, b_hh, h_out, c_out);
}

/* One layer's recurrence as cuDNN and PyTorch run it: the input's share
 * of every step's gates is one product for the whole sequence, xs
 * [T, B, F] x [F, G H], the biases added in its epilogue (x_t W_ih^T +
 * b_ih + b_hh, except for the GRU, whose b_hh stays in the recurrence
 * since r multiplies b_hn), and the recurrence one op (ad_rnn_recurrence,
 * ad_gru_recurrence, ad_lstm_recurrence: per step one [B, H] x [H, G H]
 * product and one pass over the gates; W_hh's gradient one product over
 * all steps).  Returns the op's result: [T, B, H] h_1 .. h_T, the
 * LSTM's [T + 1, B, H] with c_T after them; NULL when an op failed. */
static ad_tensor *layer_op(nn_rnn_mode mode, ad_tensor *xs, ad_tensor *const *w, bool bias,
                           ad_tensor *h, ad_tensor *c)
{
    ad_tensor *b = !bias ? NULL : mode == NN_GRU ? w[2] : ad_add(w[2], w[3]);
    ad_tensor *gx = (bias && !b) || !h ? NULL : ad_linear(xs, w[0], b);
    if (!gx) return NULL;
    switch (mode) {
    case NN_LSTM:
        return ad_lstm_recurrence(gx, w[1], h, c);
    case NN_GRU:
        return ad_gru_recurrence(gx, w[1], bias ? w[3] : NULL, h);
    default:
        return ad_rnn_recurrence(gx, w[1], h, mode == NN_RNN_RELU);
    }
}

/* A layer over steps given one by one (a checkpointed segment): xs[t]
 * [B, F] the inputs, hs[t] gets h_t; *h, *c hold the initial state on
 * entry and the final one on return (c only for the LSTM).  0 or -1. */
static int run_steps(nn_rnn_mode mode, int64_t T, ad_tensor *const *xs, ad_tensor *const *w,
                     bool bias, ad_tensor **h, ad_tensor **c, ad_tensor **hs)
{
    bool lstm = mode == NN_LSTM;
    ad_tensor *y = layer_op(mode, ad_stack(xs, (int)T, 0), w, bias, *h, lstm ? *c : NULL);
    if (!y) return -1;
    for (int64_t t = 0; t < T; t++)
        if (!(hs[t] = ad_squeeze(ad_narrow(y, 0, t, 1), 0))) return -1;
    *h = hs[T - 1];
    if (!lstm) return 0;
    *c = ad_squeeze(ad_narrow(y, 0, T, 1), 0);
    return *c ? 0 : -1;
}

/* A checkpointed segment of steps (ad_checkpoint): in = h, w_ih, w_hh[,
 * b_ih, b_hh], or for the LSTM h, c, w_ih, w_hh[, b_ih, b_hh]; it runs as
 * run_steps, the op the plain layer uses; the steps' inputs xs[0..len)
 * are read from here (ad_checkpoint finds those that require grad); out =
 * the len outputs h_t, then (LSTM) the last c. */
typedef struct rnn_segment {
    nn_rnn_mode mode;
    int64_t len;
    ad_tensor *xs[NN_RNN_MAX_CHECKPOINT];
} rnn_segment;

static int segment_fn(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)nout;
    const rnn_segment *g = ctx;
    bool lstm = g->mode == NN_LSTM;
    ad_tensor *h = in[0], *c = lstm ? in[1] : NULL;
    ad_tensor *const *w = in + 1 + lstm;
    if (run_steps(g->mode, g->len, g->xs, w, n - 1 - lstm > 2, &h, &c, out)) return -1;
    if (lstm) out[g->len] = c;
    return 0;
}

/* One layer over the whole sequence in checkpointed segments of ckpt
 * steps: xs[t] [B, F] the inputs of step t, hs[t] gets h_t; *h, *c hold
 * the initial state on entry and the final one on return.  Only the
 * segments' outputs stay on the tape, and the backward pass recomputes
 * one segment at a time.  0, or -1 when an op failed. */
static int run_checkpointed(nn_rnn_mode mode, int64_t T, ad_tensor *const *xs,
                            ad_tensor *const *w, bool bias, int ckpt, ad_tensor **h,
                            ad_tensor **c, ad_tensor **hs)
{
    bool lstm = mode == NN_LSTM;
    for (int64_t t0 = 0; t0 < T; t0 += ckpt) {
        /* copied with the node (ctx_size), so this frame may go */
        rnn_segment g = {mode, T - t0 < ckpt ? T - t0 : ckpt, {0}};
        memcpy(g.xs, xs + t0, (size_t)g.len * sizeof *xs);
        ad_tensor *in[6] = {*h};
        int nin = 1;
        if (lstm) in[nin++] = *c;
        for (int i = 0; i < (bias ? 4 : 2); i++) in[nin++] = w[i];
        ad_tensor **out = hs + t0, *last[NN_RNN_MAX_CHECKPOINT + 1];
        if (lstm) out = last;
        if (ad_checkpoint(segment_fn, &g, sizeof g, nin, in, (int)g.len + lstm, out) != 0)
            return -1;
        if (lstm) {
            memcpy(hs + t0, last, (size_t)g.len * sizeof *hs);
            *c = last[g.len];
        }
        *h = hs[t0 + g.len - 1];
    }
    return 0;
}

/* Layers without checkpoints, on whole sequences: x [B, T, F] is
 * transposed once to [T, B, F] (one copy, instead of T slices and a
 * stack), each layer's recurrence op reads the previous one's [T, B, H]
 * result as it is, and *seq gets the last layer's outputs as [B, T, H]
 * (one copy back); hl[l], cl[l] the final state of layer l.  0, or -1
 * when an op failed. */
static int run_layers(nn_rnn_mode mode, ad_tensor *x, ad_tensor *h0, ad_tensor *c0,
                      int num_layers, ad_tensor *const *weights, bool bias, ad_tape *tape,
                      ad_tensor **hl, ad_tensor **cl, ad_tensor **seq)
{
    bool lstm = mode == NN_LSTM;
    int per = bias ? 4 : 2;
    int64_t T = ad_size(x, 1), B = ad_size(x, 0), H = ad_size(weights[1], 1);
    ad_dtype dt = ad_tensor_dtype(x);
    ad_tensor *xs = ad_contiguous(ad_transpose(x, 0, 1));
    for (int l = 0; xs && l < num_layers; l++) {
        ad_tensor *h = h0 ? ad_squeeze(ad_narrow(h0, 0, l, 1), 0)
                          : ad_zeros(tape, dt, 2, (int64_t[]){B, H});
        ad_tensor *c = !lstm ? NULL
                       : c0  ? ad_squeeze(ad_narrow(c0, 0, l, 1), 0)
                             : ad_zeros(tape, dt, 2, (int64_t[]){B, H});
        ad_tensor *y = !lstm || c ? layer_op(mode, xs, weights + per * l, bias, h, c) : NULL;
        /* the LSTM's y[T] is c_T; y[0 .. T) are h_1 .. h_T */
        xs = y && lstm ? ad_narrow(y, 0, 0, T) : y;
        hl[l] = xs ? ad_squeeze(ad_narrow(y, 0, T - 1, 1), 0) : NULL;
        cl[l] = xs && lstm ? ad_squeeze(ad_narrow(y, 0, T, 1), 0) : NULL;
        if (!hl[l] || (lstm && !cl[l])) return -1;
    }
    *seq = xs ? ad_contiguous(ad_transpose(xs, 0, 1)) : NULL;
    return *seq ? 0 : -1;
}

/* Ends nn_rnn_sequence's scope s with the output seq (NULL: failed) and
 * the layers' final states hl, cl; frees buf. */
static int finish_sequence(ad_scope *s, nn_rnn_mode mode, int num_layers, ad_tensor **buf,
                           ad_tensor *seq, ad_tensor **hl, ad_tensor **cl, ad_tensor **output,
                           ad_tensor **h_n, ad_tensor **c_n)
{
    ad_tensor *hn = seq && h_n ? ad_stack(hl, num_layers, 0) : NULL;
    ad_tensor *cn = seq && c_n && mode == NN_LSTM ? ad_stack(cl, num_layers, 0) : NULL;
    if (seq && ((h_n && !hn) || (c_n && mode == NN_LSTM && !cn))) seq = NULL;
    ad_free(buf);
    bool persistent;
    if (end_scope(s, &seq, &hn, &cn, &persistent) != 0) return -1;
    if (output) *output = seq;
    else if (persistent) ad_tensor_free(seq);
    if (h_n) *h_n = hn;
    if (c_n) *c_n = cn;
    return 0;
}

/* nn_rnn_sequence with segments of ckpt steps checkpointed (0: none). */
static int sequence(const char *fn, nn_rnn_mode mode, ad_tensor *x, ad_tensor *h0, ad_tensor *c0,
                    int num_layers, ad_tensor *const *weights, bool bias, int ckpt,
                    ad_tensor **output, ad_tensor **h_n, ad_tensor **c_n)
{
    if (output) *output = NULL;
    if (h_n) *h_n = NULL;
    if (c_n) *c_n = NULL;
    if (num_layers < 1) return ad_set_error("%s: num_layers must be >= 1, got %d", fn, num_layers);
    if (!weights) return nn__null_arg(fn, "weights");
    int per = bias ? 4 : 2, nw = per * num_layers;
    if (!weights[1]) return nn__null_arg(fn, "weight_hh_l0");
    int64_t H = ad_ndim(weights[1]) == 2 ? ad_size(weights[1], 1) : 0;
    int64_t B = x && ad_ndim(x) == 3 ? ad_size(x, 0) : 0;
    const int64_t st[3] = {num_layers, B, H};
    if (check_inputs(fn, mode, x, 3, h0, c0, 3, st) != 0) return -1;
    if (H < 1) return ad_set_error("%s: weight_hh_l0 must be [G*H, H] with H >= 1", fn);
    for (int l = 0; l < num_layers; l++)
        if (check_layer(fn, l, weights + per * l, bias, ad_tensor_dtype(x), gates_of(mode) * H,
                        l == 0 ? ad_size(x, 2) : H, H) != 0)
            return -1;

    int64_t T = ad_size(x, 1);
    ad_tensor **in = ad_calloc((size_t)(3 + nw), sizeof *in);
    /* the steps' inputs and outputs of a layer (the outputs become the
     * next layer's inputs), then the final h and c of every layer */
    ad_tensor **buf = ad_calloc((size_t)(2 * T + 2 * num_layers), sizeof *buf);
    if (!in || !buf) {
        ad_free(in);
        ad_free(buf);
        return ad_set_error("%s: out of memory", fn);
    }
    in[0] = x;
    in[1] = h0;
    in[2] = c0;
    memcpy(in + 3, weights, (size_t)nw * sizeof *in);
    ad_scope s;
    int rc = ad_scope_begin(&s, fn, 3 + nw, in, false);
    ad_free(in);
    if (rc != 0) {
        ad_free(buf);
        return -1;
    }
    ad_dtype dt = ad_tensor_dtype(x);
    ad_tensor **xs = buf, **hs = buf + T, **hl = buf + 2 * T, **cl = hl + num_layers;
    if (ckpt <= 0) {
        rc = run_layers(mode, x, h0, c0, num_layers, weights, bias, s.tape, hl, cl, xs);
        ad_tensor *seq = rc == 0 ? xs[0] : NULL;
        return finish_sequence(&s, mode, num_layers, buf, seq, hl, cl, output, h_n, c_n);
    }
    /* Each step reads its own [B, F] slice of x.  The steps are kept as
     * separate tensors from there on (a layer's h_t is the next layer's
     * x_t), not cut out of one [B, T, H] tensor: the gradient of a slice
     * is a zero tensor of the whole's size, so cutting T slices out of a
     * whole would cost T wholes in the backward pass. */
    for (int64_t t = 0; t < T; t++) xs[t] = ad_squeeze(ad_narrow(x, 1, t, 1), 1);
    for (int l = 0; rc == 0 && l < num_layers; l++) {
        ad_tensor *h = h0 ? ad_squeeze(ad_narrow(h0, 0, l, 1), 0)
                          : ad_zeros(s.tape, dt, 2, (int64_t[]){B, H});
        ad_tensor *c = mode != NN_LSTM ? NULL
                       : c0            ? ad_squeeze(ad_narrow(c0, 0, l, 1), 0)
                                       : ad_zeros(s.tape, dt, 2, (int64_t[]){B, H});
        rc = h && (c || mode != NN_LSTM) ? run_checkpointed(mode, T, xs, weights + per * l,
                                                            bias, ckpt, &h, &c, hs)
                                         : -1;
        hl[l] = h;
        cl[l] = c;
        ad_tensor **tmp = xs; /* this layer's outputs are the next one's inputs */
        xs = hs;
        hs = tmp;
    }
    ad_tensor *seq = rc == 0 ? ad_stack(xs, (int)T, 1) : NULL;
    return finish_sequence(&s, mode, num_layers, buf, seq, hl, cl, output, h_n, c_n);
}

int nn_rnn_sequence(nn_rnn_mode mode, ad_tensor *x, ad_tensor *h0, ad_tensor *c0, int num_layers,
                    ad_tensor *const *weights, bool bias, ad_tensor **output, ad_tensor **h_n,
                    ad_tensor **c_n)
{
    return sequence("nn_rnn_sequence", mode, x, h0, c0, num_layers, weights, bias, 0, output, h_n,
                    c_n);
}

/* ---- the modules -------------------------------------------------------------------- */

typedef struct rnn_state {
    nn_rnn_mode mode;
    int64_t in, hidden;
    int layers; /* 0 for a cell */
    bool bias;
    int checkpoint; /* steps per checkpointed segment, 0: none */
    ad_tensor **w; /* per layer w_ih, w_hh[, b_ih, b_hh] (owned by the module) */
} rnn_state;

static void rnn_free_state(void *p)
{
    rnn_state *s = p;
    if (s) ad_free(s->w);
    ad_free(s);
}

static void rnn_describe(const nn_module *m, char *buf, size_t size)
{
    const rnn_state *s = nn_module_state(m);
    int n = snprintf(buf, size, "%" PRId64 ", %" PRId64, s->in, s->hidden);
    if (s->layers > 1 && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, ", num_layers=%d", s->layers);
    if (s->mode == NN_RNN_RELU && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, ", nonlinearity='relu'");
    if (!s->bias && n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, ", bias=False");
}

static ad_tensor *rnn_module_forward(nn_module *m, ad_tensor *x)
{
    ad_tensor *y = NULL;
    return nn_rnn_forward(m, x, NULL, NULL, &y, NULL, NULL) == 0 ? y : NULL;
}

static const nn_module_type TYPES[2][4] = {
    {{"RNN", rnn_module_forward, rnn_free_state, rnn_describe},
     {"RNN", rnn_module_forward, rnn_free_state, rnn_describe},
     {"GRU", rnn_module_forward, rnn_free_state, rnn_describe},
     {"LSTM", rnn_module_forward, rnn_free_state, rnn_describe}},
    {{"RNNCell", rnn_module_forward, rnn_free_state, rnn_describe},
     {"RNNCell", rnn_module_forward, rnn_free_state, rnn_describe},
     {"GRUCell", rnn_module_forward, rnn_free_state, rnn_describe},
     {"LSTMCell", rnn_module_forward, rnn_free_state, rnn_describe}},
};

static rnn_state *state_of(const char *fn, const nn_module *m)
{
    const nn_module_type *t = m ? nn_module_type_of(m) : NULL;
    if (!m) {
        nn__null_arg(fn, "m");
        return NULL;
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++)
            if (t == &TYPES[k][i]) return nn_module_state(m);
    ad_set_error("%s: the module is a %s, not an RNN, GRU, LSTM or one of their cells", fn,
                 t ? t->name : "?");
    return NULL;
}

int nn_rnn_mode_of(const nn_module *m)
{
    rnn_state *s = state_of("nn_rnn_mode_of", m);
    return s ? (int)s->mode : -1;
}

static nn_module *make(const char *fn, bool cell, int64_t in, int64_t hidden, int layers,
                       nn_rnn_mode mode, bool bias, ad_dtype dtype, ad_rng *rng)
{
    int rc = 0;
    if (!nn__is_float(dtype))
        rc = ad_set_error("%s: dtype must be AD_FLOAT32 or AD_FLOAT64, got %d", fn, (int)dtype);
    else if (in < 1 || hidden < 1)
        rc = ad_set_error("%s: input_size and hidden_size must be >= 1, got %" PRId64
                          " and %" PRId64, fn, in, hidden);
    else if (!cell && (layers < 1 || layers > 1000))
        rc = ad_set_error("%s: num_layers must be 1..1000, got %d", fn, layers);
    else if (!rng)
        rc = nn__null_arg(fn, "rng");
    int nl = cell ? 1 : layers, per = bias ? 4 : 2;
    rnn_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    if (s) s->w = ad_calloc((size_t)(per * nl), sizeof *s->w);
    if (rc == 0 && (!s || !s->w)) {
        rnn_free_state(s);
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    if (rc != 0) return NULL;
    *s = (rnn_state){mode, in, hidden, cell ? 0 : layers, bias, 0, s->w};
    nn_module *m = nn_module_new(&TYPES[cell][mode], s);
    if (!m) return NULL;
    static const char *const names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};
    int64_t G = gates_of(mode) * hidden;
    double bound = 1.0 / sqrt((double)hidden);
    for (int l = 0; l < nl; l++)
        for (int i = 0; i < per; i++) {
            char name[48];
            if (cell)
                snprintf(name, sizeof name, "%s", names[i]);
            else
                snprintf(name, sizeof name, "%s_l%d", names[i], l);
            const int64_t shape[2] = {G, i == 0 ? (l == 0 ? in : hidden) : hidden};
            ad_tensor *t = ad_empty(NULL, dtype, i < 2 ? 2 : 1, shape);
            if (!t || nn_module_add_parameter(m, name, t) != 0 ||
                nn_init_uniform(t, -bound, bound, rng) != 0) {
                nn_module_free(m);
                return NULL;
            }
            s->w[per * l + i] = t;
        }
    return m;
}

static nn_rnn_mode elman(const char *fn, nn_rnn_mode mode, int *rc)
{
    if (mode != NN_RNN_TANH && mode != NN_RNN_RELU)
        *rc = ad_set_error("%s: mode must be NN_RNN_TANH or NN_RNN_RELU, got %d", fn, (int)mode);
    return mode;
}

nn_module *nn_rnn(int64_t in, int64_t hidden, int layers, nn_rnn_mode mode, bool bias,
                  ad_dtype dtype, ad_rng *rng)
{
    int rc = 0;
    elman("nn_rnn", mode, &rc);
    return rc ? NULL : make("nn_rnn", false, in, hidden, layers, mode, bias, dtype, rng);
}

nn_module *nn_gru(int64_t in, int64_t hidden, int layers, bool bias, ad_dtype dtype, ad_rng *rng)
{
    return make("nn_gru", false, in, hidden, layers, NN_GRU, bias, dtype, rng);
}

nn_module *nn_lstm(int64_t in, int64_t hidden, int layers, bool bias, ad_dtype dtype, ad_rng *rng)
{
    return make("nn_lstm", false, in, hidden, layers, NN_LSTM, bias, dtype, rng);
}

nn_module *nn_rnn_cell(int64_t in, int64_t hidden, nn_rnn_mode mode, bool bias, ad_dtype dtype,
                       ad_rng *rng)
{
    int rc = 0;
    elman("nn_rnn_cell", mode, &rc);
    return rc ? NULL : make("nn_rnn_cell", true, in, hidden, 1, mode, bias, dtype, rng);
}

nn_module *nn_gru_cell(int64_t in, int64_t hidden, bool bias, ad_dtype dtype, ad_rng *rng)
{
    return make("nn_gru_cell", true, in, hidden, 1, NN_GRU, bias, dtype, rng);
}

nn_module *nn_lstm_cell(int64_t in, int64_t hidden, bool bias, ad_dtype dtype, ad_rng *rng)
{
    return make("nn_lstm_cell", true, in, hidden, 1, NN_LSTM, bias, dtype, rng);
}

int nn_rnn_forward(nn_module *m, ad_tensor *x, ad_tensor *h0, ad_tensor *c0, ad_tensor **output,
                   ad_tensor **h_n, ad_tensor **c_n)
{
    const char *fn = "nn_rnn_forward";
    if (output) *output = NULL;
    if (h_n) *h_n = NULL;
    if (c_n) *c_n = NULL;
    rnn_state *s = state_of(fn, m);
    if (!s) return -1;
    if (!x) return nn__null_arg(fn, "x"); /* here, not in the step it calls */
    /* the layer's own input-size check, so the message names the layer */
    int want = s->layers ? 3 : 2;
    if (ad_ndim(x) == want && ad_size(x, want - 1) != s->in) {
        char a[96], d[96];
        ad_shape_str(x, a, sizeof a);
        nn_module_describe(m, d, sizeof d);
        return ad_set_error("%s: %s: x is %s, its last dimension must be the input size %" PRId64,
                            fn, d, a, s->in);
    }
    if (ad_ndim(x) == want && ad_tensor_dtype(x) != ad_tensor_dtype(s->w[0])) {
        char d[96];
        nn_module_describe(m, d, sizeof d);
        return ad_set_error("%s: %s: x is %s but the layer's parameters are %s", fn, d,
                            ad_dtype_name(ad_tensor_dtype(x)),
                            ad_dtype_name(ad_tensor_dtype(s->w[0])));
    }
    if (s->layers)
        return sequence(fn, s->mode, x, h0, c0, s->layers, s->w, s->bias, s->checkpoint, output,
                        h_n, c_n);
    ad_tensor *h1 = NULL, *c1 = NULL;
    if (cell_step(fn, s->mode, x, h0, c0, s->w[0], s->w[1], s->bias ? s->w[2] : NULL,
                  s->bias ? s->w[3] : NULL, &h1, s->mode == NN_LSTM ? &c1 : NULL) != 0)
        return -1;
    /* A cell's output and h' are the same tensor; a persistent result
     * (no tape involved) cannot be handed out twice, so it is copied. */
    bool persistent = !ad_tensor_tape(h1);
    if (output) *output = h1;
    if (h_n) *h_n = output && persistent ? ad_copy(NULL, h1) : h1;
    if (!output && !h_n && persistent) ad_tensor_free(h1);
    if (c_n) *c_n = c1;
    else if (c1 && persistent) ad_tensor_free(c1);
    return 0;
}

int nn_rnn_set_checkpoint(nn_module *m, int steps)
{
    const char *fn = "nn_rnn_set_checkpoint";
    rnn_state *s = state_of(fn, m);
    if (!s) return -1;
    if (!s->layers)
        return ad_set_error("%s: a cell runs one step; checkpoint the loop that calls it "
                            "(ad_checkpoint)", fn);
    if (steps < 0 || steps > NN_RNN_MAX_CHECKPOINT)
        return ad_set_error("%s: steps must be 0 (off) or 1..%d, got %d", fn,
                            NN_RNN_MAX_CHECKPOINT, steps);
    s->checkpoint = steps;
    return 0;
}

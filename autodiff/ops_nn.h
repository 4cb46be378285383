/* autodiff/ops_nn.h - neural-network ops: convolution, pooling, dropout,
 * embedding, normalisation.
 *
 * Names, argument conventions and results follow torch.nn.functional.
 * Images are NCHW: x [N, C, H, W] (batch, channels, height, width); every
 * function here wants the batch dimension (no unbatched [C, H, W] form).
 * Inputs may have any strides; floating dtypes only, except indices.
 *
 * ad_unfold, ad_fold and the direct convolution (ad_conv2d's common case,
 * ad_conv_transpose2d, ad_conv2d_weight) are ops of their own (they
 * appear in the op table).  Everything else is a composition of public differentiable ops
 * (unfold, matmul, reshape, max, mean, var, index_select, ...), so it is
 * differentiable to any order by construction and replays on a frozen tape
 * like any recorded computation.  Results are owned as tape.h says; when no
 * tape is involved the result is persistent and the intermediates of the
 * composition are freed before returning.
 *
 * Window geometry (unfold, fold, conv2d, pools).  Per spatial dimension,
 * with input extent H, kernel k, stride s, padding p and dilation d, the
 * kernel covers d (k - 1) + 1 input positions and the number of window
 * positions is
 *     Ho = floor((H + 2 p - d (k - 1) - 1) / s) + 1
 * (PyTorch's formula, floor mode).  Window (oh, ow), kernel tap (i, j)
 * reads input position (oh s - p + i d, ow s - p + j d); positions outside
 * the input are padding.  Pairs are given as int[2] = {height, width}.
 *
 * Errors (NULL returned, ad_error() set; messages name the function and the
 * shapes): NULL or freed argument, wrong dtype or ndim, kernel < 1,
 * stride < 1, padding < 0, dilation < 1, a kernel larger than the padded
 * input, channel counts that do not match, shape mismatches of weights.
 */
#ifndef AUTODIFF_OPS_NN_H
#define AUTODIFF_OPS_NN_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- im2col and col2im -----------------------------------------------------
 * kernel is required; stride, padding and dilation may be NULL for 1, 0
 * and 1 in both dimensions. */

/* torch.nn.functional.unfold (im2col): x [N, C, H, W] -> [N, C kh kw, L]
 * with L = Ho Wo window positions, row-major (oh, ow):
 *     y[n, (c kh + i) kw + j, oh Wo + ow] = x[n, c, oh sh - ph + i dh, ow sw - pw + j dw]
 * and 0 where that position is padding.  Linear in x; its adjoint is fold:
 *     dx = fold(g, (H, W), same kernel, stride, padding, dilation).
 * Errors: x not 4-D, bad parameters, kernel larger than the padded input
 * ("ad_unfold: kernel 5x5 (dilation 1x1, so 5x5 input positions) does not
 * fit in the padded input 4x4: x [1,1,2,2], padding 1x1"). */
AD_API ad_tensor *ad_unfold(ad_tensor *x, const int kernel[2], const int stride[2],
                     const int padding[2], const int dilation[2]);

/* torch.nn.functional.fold (col2im), the adjoint of unfold: cols
 * [N, C kh kw, L] -> [N, C, H, W] with (H, W) = output_size, every column
 * entry added into the input position unfold would have read it from
 * (entries that fall on padding are dropped); overlapping windows sum.
 *     dcols = unfold(g, same kernel, stride, padding, dilation).
 * fold(unfold(x)) is x times the number of windows covering each position.
 * Errors: cols not 3-D, dim 1 not a multiple of kh kw, L not the number of
 * windows that output_size gives, bad parameters. */
AD_API ad_tensor *ad_fold(ad_tensor *cols, const int output_size[2], const int kernel[2],
                   const int stride[2], const int padding[2], const int dilation[2]);

/* ---- convolution ---------------------------------------------------------- */

/* Parameters of ad_conv2d.  A zero field means PyTorch's default: stride 1,
 * padding 0, dilation 1, groups 1; so (ad_conv2d_params){0}, a NULL
 * pointer and AD_CONV2D_DEFAULTS are the same. */
typedef struct ad_conv2d_params {
    int stride[2], padding[2], dilation[2], groups;
} ad_conv2d_params;
#define AD_CONV2D_DEFAULTS {{1, 1}, {0, 0}, {1, 1}, 1}

/* torch.nn.functional.conv2d (cross-correlation, zero padding):
 *     y[n, o, oh, ow] = bias[o] + sum_{c < C/G, i, j}
 *         w[o, c, i, j] x[n, g C/G + c, oh sh - ph + i dh, ow sw - pw + j dw]
 * with G = groups and g = o / (O/G), the group of output channel o.
 * Shapes: x [N, C, H, W], w [O, C/G, kh, kw], bias [O] or NULL for none
 * (a NULL from a failed call is an error: see ad_check_optional),
 * y [N, O, Ho, Wo].  x, w, bias of one floating dtype.
 * With groups 1, stride 1 and dilation 1 (any padding) it is one op,
 * conv2d, a direct convolution (ops_conv.c) whose sums start from the
 * bias: dx = ad_conv_transpose2d(g, w), dw = ad_conv2d_weight(x, g),
 * dbias = sum g, the first two ops whose own derivatives are each
 * other and conv2d, so every order works.  Otherwise it is computed as unfold(x) [N, C kh kw, L], viewed
 * per group as [N, G, C/G kh kw, L], times w viewed as [G, O/G, C/G kh kw]
 * (one matmul), viewed as [N, O, Ho, Wo], plus bias: every derivative of
 * every order comes from those ops (dx = fold(w^T g), dw = sum_n g cols^T,
 * dbias = sum g).  The two paths agree to rounding (float32: they add in
 * different orders, and the direct one fuses multiply-adds on x86).
 * float32 with a 3 x 3 kernel and 8 or more input channels computes y and
 * dw by Winograd's F(2x2, 3x3), whose rounding error follows the largest
 * |x w| in each 4 x 4 patch of x rather than each output's own terms; a
 * filter or an input with a value more than 2^20 times the median of its
 * nonzero values (which could swamp the others' terms) takes the direct
 * sums instead, as do non-finite sums.  AD_CONV=direct in the environment
 * turns Winograd's sums off.
 * Errors: "ad_conv2d: input has 3 channels but weight expects 4 (groups 1):
 * x [2,3,8,8], w [6,4,3,3]"; groups not dividing C or O; bias not [O];
 * negative stride/padding/dilation/groups; kernel larger than the padded
 * input. */
AD_API ad_tensor *ad_conv2d(ad_tensor *x, ad_tensor *w, ad_tensor *bias, const ad_conv2d_params *p);

/* relu(conv2d(x, w, bias, p)) (PyTorch's fused ConvReLU2d): the same
 * arguments, shapes, ownership and errors as ad_conv2d (named
 * "ad_conv2d_relu"), and the same values to the bit.  On ad_conv2d's
 * direct path it is one op, conv2d_relu, whose forward applies the max as
 * its tiles are stored (no pass of its own over y, no pre-activation kept)
 * and whose rule masks g once, gm = g [y > 0], then gives conv2d's
 * derivatives of gm (dx = ad_conv_transpose2d(gm, w), dw =
 * ad_conv2d_weight(x, gm), dbias = sum gm), ops all, so every order works;
 * otherwise it is ad_relu of ad_conv2d.  nn's Sequential calls it for a
 * Conv2d followed by a ReLU. */
AD_API ad_tensor *ad_conv2d_relu(ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                                 const ad_conv2d_params *p);

/* torch.nn.functional.conv_transpose2d, stride 1 only: the adjoint of
 * conv2d in its input, so conv2d's dx = conv_transpose2d(g, w) with the
 * same padding p:
 *     y[n, c, h, w] = bias[c] + sum_{o, i, j} w[o, c, i, j] x[n, o, h + p0 - i, w + p1 - j]
 * (terms outside x are zero).  Shapes: x [N, C_in, H, W], w [C_in, C_out,
 * kh, kw] (PyTorch's layout: conv2d's weight [O, C, ...] read as
 * [C_in = O, C_out = C, ...]), bias [C_out] or NULL, y [N, C_out,
 * H - 2 p0 + kh - 1, W - 2 p1 + kw - 1].  p: only the padding is used;
 * stride and dilation must be 1 (or 0), groups 1 (or 0), no output
 * padding.  Derivatives: dx = conv2d(g, w), dw = conv2d_weight(g, x),
 * dbias = sum g.  Result owned as tape.h says.
 * Errors: not 4-D, dtypes differ, w's dimension 0 not x's channels, bias
 * not [C_out], stride/dilation/groups other than 1 ("ad_conv_transpose2d:
 * stride 2x2: only stride 1 is supported"), negative padding, an empty
 * output. */
AD_API ad_tensor *ad_conv_transpose2d(ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                                      const ad_conv2d_params *p);

/* torch.nn.grad.conv2d_weight, stride 1 only: the gradient of conv2d with
 * respect to its weight, given its input x and output gradient
 * grad_output (gy):
 *     dw[o, c, i, j] = sum_{n, h, w} gy[n, o, h, w] x[n, c, h - p0 + i, w - p1 + j]
 * Shapes: x [N, C, H, W], gy [N, O, Ho, Wo] with Ho = H + 2 p0 - kh + 1
 * (and Wo alike), weight_size = {O, C, kh, kw}, the result's shape.  p as
 * for ad_conv_transpose2d.  Linear in x and in gy: dx =
 * conv_transpose2d(gy, g), dgy = conv2d(x, g).  Result owned as tape.h
 * says.  Errors: not 4-D, dtypes differ, weight_size not consistent with
 * the shapes and padding, parameters as for ad_conv_transpose2d. */
AD_API ad_tensor *ad_conv2d_weight(ad_tensor *x, const int64_t weight_size[4], ad_tensor *gy,
                                   const ad_conv2d_params *p);

/* ---- pooling ---------------------------------------------------------------
 * x [N, C, H, W] -> [N, C, Ho, Wo] by the window geometry above with
 * dilation 1 (floor mode: PyTorch's ceil_mode = false).  kernel is
 * required; stride NULL, or a stride entry 0, means stride = kernel in that
 * dimension (PyTorch's default); padding NULL means 0.  As in PyTorch,
 * padding may be at most half the kernel in each dimension and H and W
 * must be nonzero, so every window holds an input element (error: "the
 * input's height and width must be nonzero"). */

/* Maximum over each window, the padding counting as -inf (never chosen).
 * The gradient g of a window goes to one element: the first maximum, the
 * first element attaining it when the window is scanned row by row (its
 * top row left to right, then the next row), as in PyTorch.  With ties
 * (e.g. the zeros relu leaves) the other tied elements get nothing, and
 * forward and gradient agree on the element chosen.  An element that is
 * the chosen maximum of several overlapping windows receives the sum of
 * their gradients.  A NaN counts as the largest value (the first NaN is
 * chosen), so NaN propagates.
 * One op, "max_pool2d": the scan that finds each window's chosen flat
 * index ih W + iw stores the maximum, and keeps the indices i (int64
 * [N, C, Ho Wo], on the result's tape) for the rule; the derivative is a
 * scatter_add of g to those indices, whose own derivative is a gather at
 * them, as gather(x viewed as [N, C, H W], 2, i) would give, so every order
 * of derivative works (the indices are constants: the second derivative
 * is 0, the truth where the maximum is unique).  A replayed tape finds the
 * indices again from the new values.
 * Errors: x not 4-D or not floating, kernel < 1, stride < 0, padding < 0
 * or more than half the kernel, kernel larger than the padded input. */
AD_API ad_tensor *ad_max_pool2d(ad_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2]);

/* Mean over each window.  count_include_pad (PyTorch's default true)
 * divides by kh kw, padding counting as zeros; false divides by the number
 * of real input elements in the window.  dx = each window's g / divisor
 * added to the elements it covers.  Errors as max_pool2d. */
AD_API ad_tensor *ad_avg_pool2d(ad_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2], bool count_include_pad);

/* ---- dropout ----------------------------------------------------------------
 * torch.nn.functional.dropout.  When training and 0 < p < 1:
 *     y = x * m / (1 - p),  m_i ~ Bernoulli(1 - p) independently,
 * where m_i = [u_i >= p] with u the next numel(x) uniforms of rng in
 * row-major order (ad_rand), so the same seed and counter give the same
 * mask and rng's counter advances by numel(x).  The mask is a constant:
 * dx = g m / (1 - p).  p == 1 gives x * 0 (zeros, gradient zeros, as
 * PyTorch) and does not touch rng.  When !training or p == 0 the result is
 * x itself (no new tensor, nothing recorded: do not free it separately);
 * rng may then be NULL.  Computed as x * m with m from the op
 * "dropout_mask": on a replayable tape that op is recorded, and every
 * ad_tape_replay draws a new mask from rng's counter at that moment,
 * advancing it by numel(x), so a replayed step and a freshly recorded one
 * give the same numbers from the same rng state.  rng is therefore kept by
 * the recording: it must stay valid while the tape can be replayed (a
 * module's stream does, while the module lives).
 * Errors: x NULL or not floating, p outside [0, 1] or NaN, rng NULL when
 * it is needed.  A call that fails leaves rng's counter unchanged. */
AD_API ad_tensor *ad_dropout(ad_tensor *x, double p, bool training, ad_rng *rng);

/* ---- embedding ---------------------------------------------------------------
 * torch.nn.functional.embedding: row lookup.  weight [V, D] (floating),
 * indices int64 of any shape [...] (any strides, ndim < AD_MAX_DIMS) with
 * entries in [0, V) (no negative indices, as PyTorch);
 *     y[..., d] = weight[indices[...], d],  y [..., D].
 * Computed as index_select(weight, 0, flatten(indices)) reshaped, so
 * dweight = index_add(zeros, 0, indices, g): rows looked up more than once
 * accumulate.  The indices are read when the op runs.
 * Errors: weight not 2-D or not floating, indices not int64, an entry out
 * of range ("ad_embedding: index 7 at position [1,2] is out of range for 5
 * embeddings (weight [5,3])").  A replay (ad_tape_replay) reads new
 * indices through index_select, which refuses one outside [0, V) there
 * too (a negative one: "is negative in a replay whose recording had no
 * negative entry"). */
AD_API ad_tensor *ad_embedding(ad_tensor *weight, ad_tensor *indices);

/* ---- recurrent cells -----------------------------------------------------------
 * One LSTM step after its two matrix products (PyTorch's internal
 * _thnn_fused_lstm_cell without biases): gx, gh [B, 4H] are the input's
 * and the hidden state's contributions to the gate blocks i, f, g, o
 * (any strides; give the biases inside either), c [B, H] the cell state:
 *     [i f g o] = [sigmoid sigmoid tanh sigmoid](gx + gh)
 *     c' = f c + i g,   h' = o tanh c',   y = [h', c']  [2, B, H]
 * (take h' and c' with ad_narrow and ad_squeeze).  One forward pass, and
 * in a first-order backward one pass back (the rule keeps the
 * activations, 5 B H values, on the result's tape); under AD_CREATE_GRAPH
 * the rule is made of ops and differentiates again.  Result owned as any
 * op result (tape.h).  Errors: NULL, dtypes that are not one floating
 * dtype, shapes that do not fit ("ad_fused_lstm_cell: need gx and gh
 * [B, 4H] and c [B, H], got [2,8], [2,8], [2,3]"). */
AD_API ad_tensor *ad_fused_lstm_cell(ad_tensor *gx, ad_tensor *gh, ad_tensor *c);

/* A whole LSTM layer's recurrence after the input's product, as cuDNN runs
 * it: gx [T, B, 4H] is every step's input share of the gates (x_t W_ih^T
 * + b_ih + b_hh, one product for the sequence), w_hh [4H, H], h0 and c0
 * [B, H].  For t = 0 .. T-1:
 *     [i f g o] = [sigmoid sigmoid tanh sigmoid](gx_t + h_t w_hh^T)
 *     c_(t+1) = f c_t + i g,   h_(t+1) = o tanh c_(t+1)
 * y [T + 1, B, H]: y[t] = h_(t+1) for t < T, y[T] = c_T (so h_T = y[T-1]).
 * One product and one cell pass per step forward; backward, one cell pass
 * and one product per step, and w_hh's gradient sum_t dG_t^T h_t as one
 * product over all steps; under AD_CREATE_GRAPH the rule is made of ops.
 * Keeps 6 T B H values for the rule on the result's tape.  Strided inputs
 * are copied first.  Errors: NULL, dtypes that differ or are not
 * floating, shapes that do not fit ("ad_lstm_recurrence: need gx [T, B,
 * 4H] (T >= 1), w_hh [4H, H], h0 and c0 [B, H], got ..."). */
AD_API ad_tensor *ad_lstm_recurrence(ad_tensor *gx, ad_tensor *w_hh, ad_tensor *h0,
                                     ad_tensor *c0);

/* A whole GRU layer's recurrence after the input's product, as cuDNN runs
 * it, with PyTorch's formulas: gx [T, B, 3H] is every step's input share
 * of the gate blocks r, z, n (x_t W_ih^T + b_ih, one product for the
 * sequence), w_hh [3H, H], b_hh [3H] or NULL (no recurrent bias), h0
 * [B, H].  For t = 0 .. T-1, with gh = h_t w_hh^T + b_hh:
 *     r = sigmoid(gx_r + gh_r),   z = sigmoid(gx_z + gh_z)
 *     n = tanh(gx_n + r gh_n),    h_(t+1) = (1 - z) n + z h_t
 * y [T, B, H]: y[t] = h_(t+1) (so h_T = y[T-1]).  One product and one
 * pass per step forward; backward, one pass and one product per step,
 * and w_hh's gradient sum_t dgh_t^T h_t as one product over all steps;
 * under AD_CREATE_GRAPH the rule is made of ops.  Keeps 4 T B H values
 * for the rule on the result's tape.  Strided inputs are copied first.
 * Errors: NULL, dtypes that differ or are not floating, shapes that do
 * not fit ("ad_gru_recurrence: need gx [T, B, 3H] (T >= 1), w_hh [3H,
 * H], b_hh [3H] or none and h0 [B, H], got ..."). */
AD_API ad_tensor *ad_gru_recurrence(ad_tensor *gx, ad_tensor *w_hh, ad_tensor *b_hh,
                                    ad_tensor *h0);

/* A whole Elman (plain RNN) layer's recurrence after the input's product:
 * gx [T, B, H] is every step's x_t W_ih^T + b_ih + b_hh (one product for
 * the sequence), w_hh [H, H], h0 [B, H].  For t = 0 .. T-1:
 *     h_(t+1) = act(gx_t + h_t w_hh^T),   act = relu ? relu : tanh
 * y [T, B, H]: y[t] = h_(t+1).  One product and one pass per step forward
 * and backward, w_hh's gradient one product over all steps; under
 * AD_CREATE_GRAPH the rule is made of ops.  Keeps nothing but y.  Strided
 * inputs are copied first.  Errors: NULL, dtypes that differ or are not
 * floating, shapes that do not fit ("ad_rnn_recurrence: need gx [T, B, H]
 * (T >= 1), w_hh [H, H] and h0 [B, H], got ..."). */
AD_API ad_tensor *ad_rnn_recurrence(ad_tensor *gx, ad_tensor *w_hh, ad_tensor *h0, bool relu);

/* Causal multi-head self-attention on a packed projection, as one op:
 * qkv [B, T, 3D] (float, any strides; strided input is copied) holds q, k
 * and v side by side, each [B, T, heads, d] with d = D / heads.  Per
 * batch entry and head,
 *     P = softmax_causal(q k^T, scale)   (ad_softmax_causal: s <= t only)
 *     y[b, :, head's d columns] = P v,
 * y [B, T, D] with the heads side by side (what nn_self_attention's
 * composition of views, two batched products, ad_softmax_causal and a
 * copy computes, without the copies: every head is read from qkv and
 * written into y in place).  The backward pass writes dq, dk and dv into
 * one [B, T, 3D] gradient: dv = P^T g, dS = scale P (g v^T - sum g v^T P),
 * dq = dS k, dk = dS^T q; under AD_CREATE_GRAPH the rule is made of ops.
 * Keeps the weights P [B, heads, T, T] for the rule on the result's tape
 * (no dropout on them: nn_self_attention composes ops for that).
 * Errors: NULL, integer dtype, qkv not [B, T, 3D] with D a multiple of
 * heads ("ad_causal_attention: need qkv [B, T, 3D] with D a multiple of
 * heads (4), got [2,5,9]"), scale not finite. */
AD_API ad_tensor *ad_causal_attention(ad_tensor *qkv, int64_t heads, double scale);

/* ---- normalisation -------------------------------------------------------------- */

/* torch.nn.functional.layer_norm over the last nnormdims dimensions (1..ndim):
 *     y = (x - mean) / sqrt(var + eps) * weight + bias
 * with mean and the biased variance (divide by the count, as PyTorch) taken
 * over those dimensions for each leading index.  weight and bias (each may
 * be NULL: 1 and 0) have exactly the shape of those last dimensions.
 * One op (layer_norm, of ops_fused.c): one pass forward, and in a
 * first-order backward one pass back; under AD_CREATE_GRAPH its rule is
 * made of ops and differentiates again.  A strided x is copied first.
 * Errors: nnormdims out of range, weight/bias of another shape or dtype,
 * eps negative or not finite. */
AD_API ad_tensor *ad_layer_norm(ad_tensor *x, int nnormdims, ad_tensor *weight, ad_tensor *bias,
                         double eps);

/* torch.nn.functional.batch_norm for x [N, C] or [N, C, d1, ...] (any
 * ndim >= 2), statistics per channel C over all other dimensions (M =
 * N d1 ... values each; C may be 0):
 *     y = (x - mu) / sqrt(v + eps) * weight[c] + bias[c]
 * Training: mu and v are the batch mean and biased variance (recorded, so
 * the gradient flows through them).  If running_mean and running_var are
 * given they are then updated in place:
 *     running_mean = (1 - momentum) running_mean + momentum mu
 *     running_var  = (1 - momentum) running_var  + momentum v M / (M - 1)
 * (the unbiased variance, as PyTorch), only after the output was computed
 * successfully.  On a tape the update is an op of its own
 * (batch_norm_stats, not differentiable), so replaying a frozen tape
 * updates the running statistics again with the replayed batch's; the
 * two buffers must then outlive every replay.  Eval (!training): mu, v = running_mean, running_var,
 * which are then required (and used through ops, so they are
 * differentiable if they require grad).  running_mean, running_var, weight
 * and bias are [C] of x's dtype; weight and bias may be NULL (1 and 0; see
 * ad_check_optional);
 * the running stats are both given or both NULL.
 * Errors: x with ndim < 2, parameter of the wrong shape or dtype, only one
 * running stat given, eval without running stats, training with M <= 1
 * ("expected more than 1 value per channel when training"), running
 * stats requiring grad in training (they are overwritten), momentum
 * outside [0, 1], eps negative or not finite. */
AD_API ad_tensor *ad_batch_norm(ad_tensor *x, ad_tensor *running_mean, ad_tensor *running_var,
                         ad_tensor *weight, ad_tensor *bias, bool training, double momentum,
                         double eps);
/* ad_batch_norm that also counts the updates of the running statistics:
 * each one adds 1 to num_batches_tracked (an int64 tensor of one element
 * that does not require grad, or NULL: then ad_batch_norm), in the same op,
 * so that a replayed tape counts its batches as fresh recordings do.  It
 * is nn_batch_norm2d's buffer of that name (PyTorch's).  Errors: those of
 * ad_batch_norm; num_batches_tracked of another dtype or size, or requiring
 * grad; num_batches_tracked without running statistics. */
AD_API ad_tensor *ad_batch_norm_tracked(ad_tensor *x, ad_tensor *running_mean,
                                        ad_tensor *running_var, ad_tensor *num_batches_tracked,
                                        ad_tensor *weight, ad_tensor *bias, bool training,
                                        double momentum, double eps);

#ifdef __cplusplus
}
#endif
#endif

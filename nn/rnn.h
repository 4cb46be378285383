/* nn/rnn.h - recurrent layers: Elman RNN (tanh or ReLU), GRU and LSTM, as
 * cells (one time step) and as sequence layers (a whole batch-first
 * sequence [B, T, F], one or several stacked layers).
 *
 * The equations, gate order and parameter layout are PyTorch's
 * (torch.nn.RNN, GRU, LSTM and their *Cell), so a state_dict saved by one
 * loads into the other through safetensors.  For layer k, with H the hidden
 * size and G the number of gate blocks (RNN 1, GRU 3, LSTM 4):
 *
 *     weight_ih_l<k> [G H, F_k]   (F_0 = input_size, F_k = H above)
 *     weight_hh_l<k> [G H, H]
 *     bias_ih_l<k>   [G H]        bias_hh_l<k> [G H]   (when bias)
 *
 * (cells: weight_ih, weight_hh, bias_ih, bias_hh), the gate blocks stacked
 * in this order along the first dimension:
 *
 *   RNN   h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),  act tanh or relu
 *   GRU   blocks r, z, n:
 *         r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
 *         z = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
 *         n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))
 *         h' = (1 - z) * n + z * h
 *   LSTM  blocks i, f, g, o:
 *         i, f, o = sigmoid(x W_i?^T + b_i? + h W_h?^T + b_h?)
 *         g = tanh(x W_ig^T + b_ig + h W_hg^T + b_hg)
 *         c' = f * c + i * g,   h' = o * tanh(c')
 *
 * Initialisation (PyTorch's): every weight and bias U(-1/sqrt(H), 1/sqrt(H)).
 *
 * How it is computed.  LSTM and GRU layers make the input's share of
 * every step's gates in one product for the whole sequence before the
 * recurrence ([T B, F] x [F, G H]: x W_ih^T + b_ih + b_hh for the LSTM,
 * x W_ih^T + b_ih for the GRU, whose b_hh stays in the recurrence because
 * r multiplies b_hn), and the recurrence is one op (ad_lstm_recurrence,
 * ad_gru_recurrence): each step one product h W_hh^T ([B, H] x [H, G H],
 * W_hh packed once per call) and the gates' activations and state update
 * in one pass; backward one pass and one product per step, and W_hh's
 * gradient one product over all steps.  Those ops' rules are written
 * again with ops for higher orders.  (An LSTM cell step uses
 * ad_fused_lstm_cell.)  RNN layers, and RNN and GRU cells, join their
 * weights once per call into one matrix, so that each step makes one
 * product [x_t, h] W^T ([B, F + H] x [F + H, G H]) for all the gate blocks
 * at once, which are then taken apart as views.  (The GRU cell's matrix
 * has a fourth block, since its n gate keeps the input and recurrent
 * parts apart.)  Everything is made of the library's differentiable ops,
 * so gradients of any order, gradcheck and gradgradcheck work; backprop
 * through time is the ordinary backward pass through the unrolled steps.
 * For truncated BPTT, carry the final state into the next chunk through
 * ad_detach (docs/lifetimes.md, docs/examples/charlm.c).
 *
 * Not supported (PyTorch options): bidirectional, dropout between layers,
 * proj_size, time-major (batch_first=False) or unbatched input.
 *
 * Ownership: results are tape tensors, as for any op (module.h says where
 * they go); when no tape is involved (persistent inputs, no active tape,
 * grad mode off) they are new persistent tensors the caller frees.
 * Errors: -1 / NULL with ad_error() naming the function and the shapes.
 */
#ifndef NN_RNN_H
#define NN_RNN_H

#include <autodiff/autodiff.h>

#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Which recurrence. */
typedef enum nn_rnn_mode {
    NN_RNN_TANH = 0, /* Elman RNN, tanh (PyTorch's default nonlinearity) */
    NN_RNN_RELU,     /* Elman RNN, relu */
    NN_GRU,
    NN_LSTM
} nn_rnn_mode;

/* ---- modules ------------------------------------------------------------------ */

/* Sequence layers: x [B, T, input_size] -> output [B, T, hidden_size], the
 * last layer's h_t for every t.  num_layers >= 1 stacked layers, layer k+1
 * reading layer k's outputs.  nn_forward runs them from a zero state and
 * returns the output; nn_rnn_forward gives the state too.  mode for nn_rnn
 * is NN_RNN_TANH or NN_RNN_RELU. */
AD_API nn_module *nn_rnn(int64_t input_size, int64_t hidden_size, int num_layers,
                         nn_rnn_mode mode, bool bias, ad_dtype dtype, ad_rng *rng);
AD_API nn_module *nn_gru(int64_t input_size, int64_t hidden_size, int num_layers, bool bias,
                         ad_dtype dtype, ad_rng *rng);
AD_API nn_module *nn_lstm(int64_t input_size, int64_t hidden_size, int num_layers, bool bias,
                          ad_dtype dtype, ad_rng *rng);

/* Cells: one step, x [B, input_size] -> h' [B, hidden_size].  nn_forward
 * starts from h = c = 0. */
AD_API nn_module *nn_rnn_cell(int64_t input_size, int64_t hidden_size, nn_rnn_mode mode,
                              bool bias, ad_dtype dtype, ad_rng *rng);
AD_API nn_module *nn_gru_cell(int64_t input_size, int64_t hidden_size, bool bias,
                              ad_dtype dtype, ad_rng *rng);
AD_API nn_module *nn_lstm_cell(int64_t input_size, int64_t hidden_size, bool bias,
                               ad_dtype dtype, ad_rng *rng);

/* Runs a recurrent module (any of the six above) from a given state and
 * returns the state it ends in, as PyTorch's `out, h_n = rnn(x, h0)` and
 * `out, (h_n, c_n) = lstm(x, (h0, c0))`.
 *   sequence layer: x [B, T, F], h0 and c0 [num_layers, B, H] or NULL
 *                   (zeros); *output [B, T, H], *h_n and *c_n
 *                   [num_layers, B, H] (the state after the last step).
 *   cell:           x [B, F], h0 and c0 [B, H] or NULL; *output = *h_n =
 *                   h', *c_n = c'.
 * c0 must be NULL and c_n is set to NULL unless the module is an LSTM.
 * Any of output, h_n, c_n may be NULL when not wanted.  Returns 0, or -1
 * with an error (then the outputs are NULL): not a recurrent module, shapes
 * or dtypes that do not fit ("nn_rnn_forward: h0 is [1,4,16] float32,
 * expected [2,4,16] float32"). */
AD_API int nn_rnn_forward(nn_module *m, ad_tensor *x, ad_tensor *h0, ad_tensor *c0,
                          ad_tensor **output, ad_tensor **h_n, ad_tensor **c_n);

/* Gradient checkpointing of a sequence layer (nn_rnn, nn_gru, nn_lstm):
 * with steps > 0 its time loop runs in segments of that many steps, each
 * through ad_checkpoint (autodiff/transforms.h), so the tape keeps each
 * segment's outputs (h_t, and the LSTM's last c) but none of its gates;
 * the backward pass recomputes one segment at a time.  The step's memory
 * then holds the outputs plus one segment's intermediates instead of
 * every step's, for about one more forward pass of compute; gradients
 * equal those without to rounding (the plain layer is one op over all
 * steps, each segment one op: the weights' gradient sums are grouped by
 * segment).
 * Good values are near sqrt(T).  0 turns
 * it off (the default); at most NN_RNN_MAX_CHECKPOINT.  Errors: not a
 * sequence layer (a cell: checkpoint the loop that calls it), steps out
 * of range. */
#define NN_RNN_MAX_CHECKPOINT 63
AD_API int nn_rnn_set_checkpoint(nn_module *m, int steps);

/* The recurrence of a module: its mode, or -1 with an error when m is not
 * one of the modules above. */
AD_API int nn_rnn_mode_of(const nn_module *m);

/* ---- functional forms ----------------------------------------------------------
 * The same computations on weights you pass (what the modules call with
 * their own parameters); they let ad_gradcheck differentiate with respect
 * to the weights, and serve programs that keep weights outside modules. */

/* One step: x [B, F], h [B, H] (NULL: zeros), c [B, H] (LSTM only, NULL:
 * zeros; must be NULL otherwise), w_ih [G H, F], w_hh [G H, H], b_ih and
 * b_hh [G H] (both given or both NULL).  *h_out = h', *c_out = c' (LSTM;
 * NULL otherwise; c_out may be NULL). */
AD_API int nn_rnn_cell_step(nn_rnn_mode mode, ad_tensor *x, ad_tensor *h, ad_tensor *c,
                            ad_tensor *w_ih, ad_tensor *w_hh, ad_tensor *b_ih, ad_tensor *b_hh,
                            ad_tensor **h_out, ad_tensor **c_out);

/* A whole sequence through num_layers layers: weights holds, per layer,
 * w_ih, w_hh, b_ih, b_hh (with bias) or w_ih, w_hh (without), in PyTorch's
 * _flat_weights order.  Shapes and outputs as nn_rnn_forward's sequence
 * case. */
AD_API int nn_rnn_sequence(nn_rnn_mode mode, ad_tensor *x, ad_tensor *h0, ad_tensor *c0,
                           int num_layers, ad_tensor *const *weights, bool bias,
                           ad_tensor **output, ad_tensor **h_n, ad_tensor **c_n);

#ifdef __cplusplus
}
#endif
#endif

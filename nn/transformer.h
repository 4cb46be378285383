/* nn/transformer.h - attention: multi-head self-attention with an optional
 * causal mask and dropout, learned positional embeddings, and a pre-norm
 * decoder-only transformer block built from them (GPT-2's layout).
 *
 * Parameter names and layouts are PyTorch's (nn.MultiheadAttention,
 * nn.TransformerEncoderLayer with norm_first=True), so state_dicts
 * exchange through safetensors.  Layer normalisation is nn_layer_norm
 * (module.h).  Everything is built from the library's differentiable ops:
 * gradients of any order, gradcheck and gradgradcheck work.
 *
 * Shapes are batch-first: x [B, T, D] (D = d_model) -> [B, T, D].
 * Ownership and errors as in module.h.
 */
#ifndef NN_TRANSFORMER_H
#define NN_TRANSFORMER_H

#include <autodiff/autodiff.h>

#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Multi-head self-attention (nn.MultiheadAttention with query = key =
 * value = x, batch_first, need_weights=False):
 *     [q k v] = x W_in^T + b_in                      W_in [3D, D]
 *     per head j (of `heads`, each of width d = D / heads):
 *       A_j = softmax(q_j k_j^T / sqrt(d) + M)       M_ts = -inf for s > t (causal)
 *       o_j = dropout(A_j) v_j
 *     y = [o_1 ... o_h] W_out^T + b_out              W_out [D, D]
 * Parameters "in_proj_weight" [3D, D], "in_proj_bias" [3D] (with bias),
 * and the child "out_proj" (a Linear(D, D): "out_proj.weight",
 * "out_proj.bias").  Init (PyTorch's): in_proj_weight xavier_uniform,
 * in_proj_bias 0, out_proj.weight as Linear, out_proj.bias 0.
 * dropout in [0, 1) applies to the attention weights in training mode;
 * its mask comes from a generator seeded with seed.
 * Errors: d_model not a multiple of heads, sizes < 1, dropout out of range. */
AD_API nn_module *nn_multihead_attention(int64_t d_model, int64_t heads, double dropout,
                                         bool causal, bool bias, ad_dtype dtype, ad_rng *rng,
                                         uint64_t seed);

/* The functional form (what the module computes with its parameters):
 * x [B, T, D]; w_in [3D, D], b_in [3D] or NULL, w_out [D, D], b_out [D] or
 * NULL; rng may be NULL when dropout is 0 or !training. */
AD_API ad_tensor *nn_self_attention(ad_tensor *x, ad_tensor *w_in, ad_tensor *b_in,
                                    ad_tensor *w_out, ad_tensor *b_out, int64_t heads,
                                    bool causal, double dropout, bool training, ad_rng *rng);

/* Learned positional embedding: y[b, t, :] = x[b, t, :] + P[t, :] for
 * x [B, T, D] with T <= max_len.  Parameter "weight" [max_len, D], init
 * N(0, 1) as nn.Embedding's (an nn.Embedding(max_len, D) in PyTorch,
 * looked up at 0..T-1 and added). */
AD_API nn_module *nn_positional_embedding(int64_t max_len, int64_t dim, ad_dtype dtype,
                                          ad_rng *rng);

/* A pre-norm decoder-only block (GPT-2; nn.TransformerEncoderLayer with
 * norm_first=True and a causal mask, activation gelu):
 *     x = x + dropout(attn(norm1(x)))            causal self-attention
 *     x = x + dropout(linear2(dropout(gelu(linear1(norm2(x))))))
 * Children "self_attn" (nn_multihead_attention, causal), "linear1"
 * Linear(D, ff), "linear2" Linear(ff, D), "norm1", "norm2"
 * LayerNorm(D, eps 1e-5).  dropout in [0, 1); each dropout draws from a
 * generator seeded from seed. */
AD_API nn_module *nn_transformer_block(int64_t d_model, int64_t heads, int64_t ff, double dropout,
                                       ad_dtype dtype, ad_rng *rng, uint64_t seed);

/* Gradient checkpointing per block: with on, the block's forward runs
 * through ad_checkpoint (autodiff/transforms.h), so a training step keeps
 * the block's input and output but none of its intermediates (attention
 * weights, the feed-forward's [B, T, ff] activations), and the backward
 * pass recomputes them, the dropout masks drawn again alike; gradients
 * are the same bits as without.  Off by default.  Error: m is not a
 * block from nn_transformer_block. */
AD_API int nn_transformer_block_set_checkpoint(nn_module *m, bool on);

#ifdef __cplusplus
}
#endif
#endif

/* nn/transformer.c - multi-head self-attention, learned positional
 * embeddings and the pre-norm decoder block, built from the public ops.
 *
 * Attention lets every position t read a weighted mix of the values of
 * the positions s it may see (s <= t under the causal mask), the weights
 * coming from how well t's query matches each s's key.  All heads and all
 * batch entries are computed by batched matrix products on views of one
 * projection [B, T, 3D], so a block records a few dozen ops whatever T. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "init.h"
#include "module.h"
#include "nn_private.h"
#include "transformer.h"

/* ---- the functional form -------------------------------------------------------- */

static int check_w(const char *fn, const char *what, const ad_tensor *t, ad_dtype dt, int nd,
                   int64_t a, int64_t b)
{
    if (!t) return 0;
    bool ok = ad_tensor_dtype(t) == dt && ad_ndim(t) == nd && ad_size(t, 0) == a &&
              (nd == 1 || ad_size(t, 1) == b);
    if (ok) return 0;
    char s[96], w[96];
    ad_shape_str(t, s, sizeof s);
    nn__shape_str(nd, (int64_t[]){a, b}, w, sizeof w);
    return ad_set_error("%s: %s is %s %s, expected %s %s", fn, what, s,
                        ad_dtype_name(ad_tensor_dtype(t)), w, ad_dtype_name(dt));
}

ad_tensor *nn_self_attention(ad_tensor *x, ad_tensor *w_in, ad_tensor *b_in, ad_tensor *w_out,
                             ad_tensor *b_out, int64_t heads, bool causal, double dropout,
                             bool training, ad_rng *rng)
{
    const char *fn = "nn_self_attention";
    if (!x || !w_in || !w_out) {
        nn__null_arg(fn, !x ? "x" : !w_in ? "w_in" : "w_out");
        return NULL;
    }
    ad_tensor *in[5] = {x, w_in, b_in, w_out, b_out};
    for (int i = 0; i < 5; i++)
        if (ad_check_optional(fn, "argument", in[i]) != 0) return NULL;
    if (ad_ndim(x) != 3 || !nn__is_float(ad_tensor_dtype(x))) {
        char s[96];
        ad_shape_str(x, s, sizeof s);
        ad_set_error("%s: x must be a floating tensor [batch, time, d_model], got %s", fn, s);
        return NULL;
    }
    int64_t B = ad_size(x, 0), T = ad_size(x, 1), D = ad_size(x, 2);
    ad_dtype dt = ad_tensor_dtype(x);
    if (heads < 1 || D % heads != 0) {
        ad_set_error("%s: d_model %" PRId64 " is not a multiple of heads %" PRId64, fn, D, heads);
        return NULL;
    }
    if (!(dropout >= 0 && dropout < 1)) {
        ad_set_error("%s: dropout must be in [0, 1), got %g", fn, dropout);
        return NULL;
    }
    if (check_w(fn, "w_in", w_in, dt, 2, 3 * D, D) || check_w(fn, "b_in", b_in, dt, 1, 3 * D, 0) ||
        check_w(fn, "w_out", w_out, dt, 2, D, D) || check_w(fn, "b_out", b_out, dt, 1, D, 0))
        return NULL;
    ad_scope s;
    if (ad_scope_begin(&s, fn, 5, in, false) != 0) return NULL;
    int64_t d = D / heads;
    /* one projection for q, k and v of every head, [B, T, 3D] (ad_linear:
     * the bias added in the product, W's gradient one product over all
     * B T rows), seen as [B, T, 3, heads, d] and permuted to
     * [3, B, heads, T, d] (a view) */
    ad_tensor *qkv = ad_linear(x, w_in, b_in);
    double scale = 1.0 / sqrt((double)d);
    /* causal without dropout on the weights (charlm's transformer): one op
     * that reads every head from qkv and writes it into its columns of the
     * result, scores scaled by 1/sqrt(d) as below */
    if (causal && !(dropout > 0 && training)) {
        ad_tensor *o = qkv ? ad_causal_attention(qkv, heads, scale) : NULL;
        return ad_scope_end(&s, ad_linear(o, w_out, b_out));
    }
    qkv = ad_permute(ad_reshape(qkv, 5, (int64_t[]){B, T, 3, heads, d}), (int[]){2, 0, 3, 1, 4});
    ad_tensor *q = ad_squeeze(ad_narrow(qkv, 0, 0, 1), 0);
    ad_tensor *k = ad_squeeze(ad_narrow(qkv, 0, 1, 1), 0);
    ad_tensor *v = ad_squeeze(ad_narrow(qkv, 0, 2, 1), 0);
    /* scores [B, heads, T, T], scaled by 1/sqrt(d) so their spread does
     * not grow with the head width (which would saturate the softmax);
     * with the causal mask, scale, mask and softmax are one op that never
     * reads the masked half */
    ad_tensor *sc = ad_matmul(q, ad_transpose(k, 2, 3));
    ad_tensor *a = causal ? ad_softmax_causal(sc, scale) : ad_softmax(ad_mul_scalar(sc, scale), 3);
    if (a && dropout > 0 && training) a = ad_dropout(a, dropout, true, rng);
    /* the heads side by side again: [B, heads, T, d] -> [B, T, D] */
    ad_tensor *o = ad_matmul(a, v);
    o = ad_reshape(ad_contiguous(ad_permute(o, (int[]){0, 2, 1, 3})), 3, (int64_t[]){B, T, D});
    return ad_scope_end(&s, ad_linear(o, w_out, b_out));
}

/* ---- MultiheadAttention ---------------------------------------------------------------- */

typedef struct mha_state {
    int64_t d_model, heads;
    double dropout;
    bool causal;
    ad_tensor *w_in, *b_in;
    nn_module *out; /* the child out_proj */
    ad_rng rng;
} mha_state;

static ad_tensor *mha_forward(nn_module *m, ad_tensor *x)
{
    mha_state *s = nn_module_state(m);
    if (ad_ndim(x) != 3 || ad_size(x, 2) != s->d_model) {
        char sh[96];
        ad_shape_str(x, sh, sizeof sh);
        ad_set_error("nn_multihead_attention: x is %s, expected [batch, time, %" PRId64 "]", sh,
                     s->d_model);
        return NULL;
    }
    ad_tensor *wo = nn_get_parameter(s->out, "weight");
    ad_tensor *bo = s->b_in ? nn_get_parameter(s->out, "bias") : NULL;
    return nn_self_attention(x, s->w_in, s->b_in, wo, bo, s->heads, s->causal, s->dropout,
                             nn_is_training(m), &s->rng);
}

static void mha_describe(const nn_module *m, char *buf, size_t size)
{
    const mha_state *s = nn_module_state(m);
    snprintf(buf, size, "d_model=%" PRId64 ", heads=%" PRId64 ", dropout=%g%s", s->d_model,
             s->heads, s->dropout, s->causal ? ", causal" : "");
}

static const nn_module_type MHA = {"MultiheadAttention", mha_forward, ad_free, mha_describe};

/* The arguments an attention layer takes, checked for fn (the attention
 * itself, or the block that makes one: the message names the function
 * called).  0, or -1 with the error set. */
static int check_attention(const char *fn, int64_t D, int64_t heads, double dropout,
                           ad_dtype dtype, const ad_rng *rng)
{
    if (!nn__is_float(dtype))
        return ad_set_error("%s: dtype must be AD_FLOAT32 or AD_FLOAT64, got %d", fn, (int)dtype);
    if (D < 1 || heads < 1 || D % heads)
        return ad_set_error("%s: d_model (%" PRId64 ") must be a positive multiple of heads (%"
                            PRId64 ")", fn, D, heads);
    if (!(dropout >= 0 && dropout < 1))
        return ad_set_error("%s: dropout must be in [0, 1), got %g", fn, dropout);
    return rng ? 0 : nn__null_arg(fn, "rng");
}

nn_module *nn_multihead_attention(int64_t D, int64_t heads, double dropout, bool causal, bool bias,
                                  ad_dtype dtype, ad_rng *rng, uint64_t seed)
{
    const char *fn = "nn_multihead_attention";
    int rc = check_attention(fn, D, heads, dropout, dtype, rng);
    mha_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    if (rc == 0 && !s) ad_set_error("%s: out of memory", fn);
    nn_module *m = s ? nn_module_new(&MHA, s) : NULL;
    if (!m) return NULL;
    *s = (mha_state){D, heads, dropout, causal, NULL, NULL, NULL, {0}};
    ad_rng_init(&s->rng, seed);
    /* registered, as Dropout's: nn_gradcheck and the trainer's recording
     * put it back, checkpoints carry it, and the batch split (whose
     * shards would otherwise draw from it at once) knows the model has one */
    if (nn_module_set_rng(m, &s->rng) != 0) goto fail;
    s->w_in = ad_empty(NULL, dtype, 2, (int64_t[]){3 * D, D});
    if (nn_module_add_parameter(m, "in_proj_weight", s->w_in) != 0 ||
        nn_init_xavier_uniform(s->w_in, 1.0, rng) != 0)
        goto fail;
    if (bias) {
        s->b_in = ad_zeros(NULL, dtype, 1, (int64_t[]){3 * D});
        if (nn_module_add_parameter(m, "in_proj_bias", s->b_in) != 0) goto fail;
    }
    s->out = nn_linear(D, D, bias, dtype, rng);
    if (nn_module_add_child(m, "out_proj", s->out) != 0) goto fail;
    if (bias && nn_init_zeros(nn_get_parameter(s->out, "bias")) != 0) goto fail;
    return m;
fail:
    nn_module_free(m);
    return NULL;
}

/* ---- positional embedding ------------------------------------------------------------- */

typedef struct pos_state {
    int64_t max_len, dim;
    ad_tensor *w;
} pos_state;

static ad_tensor *pos_forward(nn_module *m, ad_tensor *x)
{
    pos_state *s = nn_module_state(m);
    if (ad_ndim(x) != 3 || ad_size(x, 2) != s->dim || ad_size(x, 1) > s->max_len) {
        char sh[96];
        ad_shape_str(x, sh, sizeof sh);
        ad_set_error("nn_positional_embedding: x is %s, expected [batch, time <= %" PRId64
                     ", %" PRId64 "]", sh, s->max_len, s->dim);
        return NULL;
    }
    /* position t gets row t of the table, the same for every sequence */
    return ad_add(x, ad_narrow(s->w, 0, 0, ad_size(x, 1)));
}

static void pos_describe(const nn_module *m, char *buf, size_t size)
{
    const pos_state *s = nn_module_state(m);
    snprintf(buf, size, "%" PRId64 ", %" PRId64, s->max_len, s->dim);
}

static const nn_module_type POS = {"PositionalEmbedding", pos_forward, ad_free, pos_describe};

nn_module *nn_positional_embedding(int64_t max_len, int64_t dim, ad_dtype dtype, ad_rng *rng)
{
    const char *fn = "nn_positional_embedding";
    int rc = 0;
    if (!nn__is_float(dtype))
        rc = ad_set_error("%s: dtype must be AD_FLOAT32 or AD_FLOAT64, got %d", fn, (int)dtype);
    else if (max_len < 1 || dim < 1)
        rc = ad_set_error("%s: max_len and dim must be >= 1, got %" PRId64 " and %" PRId64, fn,
                          max_len, dim);
    else if (!rng)
        rc = nn__null_arg(fn, "rng");
    pos_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    if (rc == 0 && !s) ad_set_error("%s: out of memory", fn);
    nn_module *m = s ? nn_module_new(&POS, s) : NULL;
    if (!m) return NULL;
    s->max_len = max_len;
    s->dim = dim;
    s->w = ad_empty(NULL, dtype, 2, (int64_t[]){max_len, dim});
    if (nn_module_add_parameter(m, "weight", s->w) != 0 || nn_init_normal(s->w, 0, 1, rng) != 0) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- the pre-norm block ----------------------------------------------------------------- */

typedef struct block_state {
    int64_t d_model, heads, ff;
    nn_module *attn, *lin1, *lin2, *norm1, *norm2, *drop, *drop1, *drop2;
    bool checkpoint; /* the block runs through ad_checkpoint */
} block_state;

static ad_tensor *block_compute(nn_module *m, ad_tensor *x);

/* The block as a checkpointed function: its parameters are read from the
 * module, and ad_checkpoint finds them; its dropouts draw the same masks
 * again when the backward pass recomputes it.  The call (copied with the
 * checkpoint) keeps the mode the block ran in: a replay or a backward
 * pass may come while the model is in the other mode (the trainer's
 * evaluation), and the recomputation must be the same function. */
typedef struct block_call {
    nn_module *m;
    bool training;
} block_call;

static int block_segment(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    const block_call *c = ctx;
    /* the mode is written only when it differs: threads that share a
     * frozen model, each recording on a tape of its own, only read it
     * (a write of the same value was still a data race) */
    bool was = nn_is_training(c->m);
    if (was != c->training) nn_train(c->m, c->training);
    out[0] = block_compute(c->m, in[0]);
    if (was != c->training) nn_train(c->m, was);
    return out[0] ? 0 : -1;
}

static ad_tensor *block_forward(nn_module *m, ad_tensor *x)
{
    block_state *s = nn_module_state(m);
    ad_tensor *y = NULL;
    if (!s->checkpoint) return block_compute(m, x);
    block_call c = {m, nn_is_training(m)};
    return ad_checkpoint(block_segment, &c, sizeof c, 1, &x, 1, &y) == 0 ? y : NULL;
}

static ad_tensor *block_compute(nn_module *m, ad_tensor *x)
{
    block_state *s = nn_module_state(m);
    if (ad_ndim(x) != 3 || ad_size(x, 2) != s->d_model) {
        char sh[96];
        ad_shape_str(x, sh, sizeof sh);
        ad_set_error("nn_transformer_block: x is %s, expected [batch, time, %" PRId64 "]", sh,
                     s->d_model);
        return NULL;
    }
    /* Pre-norm: each sub-layer reads a normalised copy and adds its result
     * to the residual stream, which itself is never normalised - so the
     * gradient has a clean path from the output to every block. */
    ad_tensor *a = nn_forward(s->drop1, nn_forward(s->attn, nn_forward(s->norm1, x)));
    x = a ? ad_add(x, a) : NULL;
    if (!x) return NULL;
    ad_tensor *f = nn_forward(s->norm2, x);
    f = f ? nn_forward(s->lin1, f) : NULL;
    f = f ? ad_gelu(f) : NULL;
    f = f ? nn_forward(s->drop, f) : NULL;
    f = f ? nn_forward(s->lin2, f) : NULL;
    f = f ? nn_forward(s->drop2, f) : NULL;
    return f ? ad_add(x, f) : NULL;
}

static void block_describe(const nn_module *m, char *buf, size_t size)
{
    const block_state *s = nn_module_state(m);
    snprintf(buf, size, "d_model=%" PRId64 ", heads=%" PRId64 ", ff=%" PRId64 ", pre-norm, causal",
             s->d_model, s->heads, s->ff);
}

static const nn_module_type BLOCK = {"TransformerBlock", block_forward, ad_free, block_describe};

nn_module *nn_transformer_block(int64_t D, int64_t heads, int64_t ff, double dropout,
                                ad_dtype dtype, ad_rng *rng, uint64_t seed)
{
    const char *fn = "nn_transformer_block";
    /* what its attention child would refuse, refused here so that the
     * message names the function called */
    if (ff < 1) {
        ad_set_error("%s: ff must be >= 1, got %" PRId64, fn, ff);
        return NULL;
    }
    if (check_attention(fn, D, heads, dropout, dtype, rng)) return NULL;
    block_state *s = ad_calloc(1, sizeof *s);
    nn_module *m = s ? nn_module_new(&BLOCK, s) : NULL;
    if (!m) {
        if (!s) ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    s->d_model = D;
    s->heads = heads;
    s->ff = ff;
    const int64_t shape[1] = {D};
    /* PyTorch's TransformerEncoderLayer makes self_attn, linear1, dropout,
     * linear2, norm1, norm2, dropout1, dropout2 in this order */
    if (nn_module_add_child(m, "self_attn", s->attn = nn_multihead_attention(
                                                D, heads, dropout, true, true, dtype, rng,
                                                seed)) != 0 ||
        nn_module_add_child(m, "linear1", s->lin1 = nn_linear(D, ff, true, dtype, rng)) != 0 ||
        nn_module_add_child(m, "dropout", s->drop = nn_dropout(dropout, seed + 1)) != 0 ||
        nn_module_add_child(m, "linear2", s->lin2 = nn_linear(ff, D, true, dtype, rng)) != 0 ||
        nn_module_add_child(m, "norm1", s->norm1 = nn_layer_norm(1, shape, 1e-5, true, dtype)) != 0 ||
        nn_module_add_child(m, "norm2", s->norm2 = nn_layer_norm(1, shape, 1e-5, true, dtype)) != 0 ||
        nn_module_add_child(m, "dropout1", s->drop1 = nn_dropout(dropout, seed + 2)) != 0 ||
        nn_module_add_child(m, "dropout2", s->drop2 = nn_dropout(dropout, seed + 3)) != 0) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

int nn_transformer_block_set_checkpoint(nn_module *m, bool on)
{
    if (!m) return nn__null_arg("nn_transformer_block_set_checkpoint", "m");
    if (nn_module_type_of(m) != &BLOCK)
        return ad_set_error("nn_transformer_block_set_checkpoint: the module is a %s, not a "
                            "TransformerBlock", nn_module_type_of(m)->name);
    ((block_state *)nn_module_state(m))->checkpoint = on;
    return 0;
}

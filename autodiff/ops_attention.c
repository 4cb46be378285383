/* autodiff/ops_attention.c - causal multi-head attention on a packed
 * projection, as one op: kernel, rule and formula side by side.
 *
 * Composed of ops, attention on the projection qkv [B, T, 3D] is a view
 * per head (narrow and permute), two batched products, the causal softmax,
 * and a copy that puts the heads side by side again; its backward adds
 * three slice gradients into a zeroed [B, T, 3D], copies a permuted
 * gradient to make it contiguous and moves every intermediate through the
 * backward pass's bookkeeping.  As one op, each (batch, head) pair reads
 * its q, k and v in place from qkv (strided operands of the matrix
 * kernel), writes its output straight into its columns of y [B, T, D],
 * and its backward writes dq, dk and dv straight into their columns of
 * the gradient: no head split or merge is ever copied.  The products and
 * the softmax are the ones the composition runs (ad__gemm with the same
 * operands, the causal softmax's row kernel), so y is the same bits. */
#include <inttypes.h>

#include "gemm.h"
#include "internal.h"

/* The attention weights P [B, heads, T, T] are kept for the rule. */
typedef struct attn_params {
    int64_t heads;
    double scale;
    ad_tensor *p;
} attn_params;

/* Element offsets of head h's q, k, v in qkv and of its output in y, for
 * batch entry b. */
typedef struct attn_geom {
    int64_t B, T, D, d, H;
} attn_geom;

static attn_geom geom(const ad_tensor *qkv, int64_t heads)
{
    int64_t D = qkv->shape[2] / 3;
    return (attn_geom){qkv->shape[0], qkv->shape[1], D, D / heads, heads};
}

static char *at(const ad_tensor *t, int64_t off)
{
    return (char *)t->storage->data + (t->offset + off) * (int64_t)ad_dtype_size(t->dtype);
}

/* y = attention(qkv); p the weights.  qkv contiguous. */
static int attn_forward(const char *fn, const ad_tensor *qkv, int64_t heads, double scale,
                        ad_tensor *y, ad_tensor *p)
{
    attn_geom g = geom(qkv, heads);
    int64_t T = g.T, D3 = 3 * g.D;
    ad_dtype dt = qkv->dtype;
    for (int64_t b = 0; b < g.B; b++)
        for (int64_t h = 0; h < g.H; h++) {
            int64_t base = b * T * D3 + h * g.d;
            char *P = at(p, (b * g.H + h) * T * T);
            /* S = q k^T (k read transposed in place), then the causal
             * softmax of scale S in place */
            if (ad__gemm(y->tape, dt, T, T, g.d, at(qkv, base), D3, 1, at(qkv, base + g.D), 1, D3,
                         P, T))
                return ad__err(fn, "out of memory");
            ad__softmax_causal_matrix(dt, P, T, scale);
            /* y's columns of head h = P v */
            if (ad__gemm(y->tape, dt, T, g.d, T, P, T, 1, at(qkv, base + 2 * g.D), D3, 1,
                         at(y, b * T * g.D + h * g.d), g.D))
                return ad__err(fn, "out of memory");
        }
    return 0;
}

/* The rule with ops (AD_CREATE_GRAPH): the composition the op replaces,
 * recomputed, and its derivative written out, so that it differentiates
 * again.  For S = q k^T, P = softmax_causal(S, scale), y = P v:
 *     dv = P^T g,  dP = g v^T,  dS = scale P (dP - sum_s dP P),
 *     dq = dS k,   dk = dS^T q. */
static int attn_bw_ops(ad_node *n, ad_tensor *gy, ad_tensor **gin)
{
    const attn_params *pr = ad__params(n);
    ad_tensor *qkv = n->in[0];
    attn_geom g = geom(qkv, pr->heads);
    ad_tensor *x5 = ad_permute(ad_reshape(qkv, 5, (int64_t[]){g.B, g.T, 3, g.H, g.d}),
                               (int[]){2, 0, 3, 1, 4});
    ad_tensor *q = ad_squeeze(ad_narrow(x5, 0, 0, 1), 0);
    ad_tensor *k = ad_squeeze(ad_narrow(x5, 0, 1, 1), 0);
    ad_tensor *v = ad_squeeze(ad_narrow(x5, 0, 2, 1), 0);
    ad_tensor *P = ad_softmax_causal(ad_matmul(q, ad_transpose(k, 2, 3)), pr->scale);
    ad_tensor *g4 = ad_permute(ad_reshape(gy, 4, (int64_t[]){g.B, g.T, g.H, g.d}),
                               (int[]){0, 2, 1, 3});
    ad_tensor *dv = ad_matmul(ad_transpose(P, 2, 3), g4);
    ad_tensor *dP = ad_matmul(g4, ad_transpose(v, 2, 3));
    int last = 3;
    ad_tensor *dS = ad_mul_scalar(
        ad_mul(P, ad_sub(dP, ad_sum(ad_mul(dP, P), &last, 1, true))), pr->scale);
    ad_tensor *parts[3] = {ad_matmul(dS, k), ad_matmul(ad_transpose(dS, 2, 3), q), dv};
    /* [3, B, heads, T, d] -> [B, T, 3, heads, d] -> [B, T, 3D] */
    ad_tensor *d = ad_permute(ad_stack(parts, 3, 0), (int[]){1, 3, 0, 2, 4});
    gin[0] = ad_reshape(ad_contiguous(d), 3, qkv->shape);
    return gin[0] ? 0 : -1;
}

static int attn_bw(ad_node *n, ad_tensor *gy, ad_tensor **gin)
{
    if (ad_grad_enabled()) return attn_bw_ops(n, gy, gin);
    static const char *fn = "ad_causal_attention (backward)";
    const attn_params *pr = ad__params(n);
    ad_tensor *qkv = n->in[0], *y = n->out, *p = pr->p;
    ad_tape *tp = y->tape;
    attn_geom g = geom(qkv, pr->heads);
    int64_t T = g.T, D3 = 3 * g.D;
    ad_dtype dt = qkv->dtype;
    ad_tensor *G = ad_is_contiguous(gy) && ad__same_shape(gy, y) ? gy
                   : ad_contiguous(ad_expand(gy, y->ndim, y->shape));
    ad_tensor *dx = ad__alloc(fn, tp, dt, 3, qkv->shape);
    ad_tensor *ds = ad__alloc(fn, tp, dt, 2, (int64_t[]){T, T}); /* dP, then dS */
    if (!G || !dx || !ds) return -1;
    char *S = at(ds, 0);
    for (int64_t b = 0; b < g.B; b++)
        for (int64_t h = 0; h < g.H; h++) {
            int64_t base = b * T * D3 + h * g.d;
            const char *P = at(p, (b * g.H + h) * T * T), *gh = at(G, b * T * g.D + h * g.d);
            /* dv = P^T g (P read transposed); dP = g v^T */
            if (ad__gemm(tp, dt, T, g.d, T, P, 1, T, gh, g.D, 1, at(dx, base + 2 * g.D), D3) ||
                ad__gemm(tp, dt, T, T, g.d, gh, g.D, 1, at(qkv, base + 2 * g.D), 1, D3, S, T))
                return ad__err(fn, "out of memory");
            ad__softmax_causal_matrix_bw(dt, P, S, T, pr->scale);
            /* dq = dS k, dk = dS^T q */
            if (ad__gemm(tp, dt, T, g.d, T, S, T, 1, at(qkv, base + g.D), D3, 1, at(dx, base),
                         D3) ||
                ad__gemm(tp, dt, T, g.d, T, S, 1, T, at(qkv, base), D3, 1, at(dx, base + g.D), D3))
                return ad__err(fn, "out of memory");
        }
    gin[0] = dx;
    return 0;
}

static int attn_fw(ad_node *n)
{
    const attn_params *pr = ad__params(n);
    return attn_forward("ad_causal_attention", n->in[0], pr->heads, pr->scale, n->out, pr->p);
}

static const ad_op OP_CAUSAL_ATTENTION = {
    .name = "causal_attention",
    .formula = "per batch entry and head, q, k, v = columns of qkv; P = softmax_causal(q k^T, "
               "scale), y = P v into the head's columns; dv = P^T g, dS = scale P (g v^T - "
               "sum(g v^T P)), dq = dS k, dk = dS^T q",
    .backward = attn_bw,
    .forward = attn_fw,
    .params_size = sizeof(attn_params),
};

ad_tensor *ad_causal_attention(ad_tensor *qkv, int64_t heads, double scale)
{
    static const char *fn = "ad_causal_attention";
    if (ad__check_arg(fn, "qkv", qkv, true)) return NULL;
    if (qkv->ndim != 3 || qkv->shape[2] % 3 != 0 || heads < 1 ||
        (qkv->shape[2] / 3) % heads != 0)
        return ad__errc(AD_ERR_SHAPE, fn, "need qkv [B, T, 3D] with D a multiple of heads (%" PRId64
                        "), got %s", heads, ad__shape_str(qkv)), NULL;
    if (!isfinite(scale)) return ad__err(fn, "scale must be finite, got %g", scale), NULL;
    ad_tensor *x = ad_is_contiguous(qkv) ? qkv : ad_contiguous(qkv);
    if (!x) return NULL;
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2] / 3;
    ad_tensor *y = ad__result(fn, 1, &x, x->dtype, 3, (int64_t[]){B, T, D});
    if (!y) return NULL;
    ad_tensor *p = ad__alloc(fn, y->tape, x->dtype, 4, (int64_t[]){B, heads, T, T});
    int rc = p ? attn_forward(fn, x, heads, scale, y, p) : -1;
    bool scratch = y->tape == NULL;
    y = ad__finish(y, rc, &OP_CAUSAL_ATTENTION, 1, &x, &(attn_params){heads, scale, p}, NULL);
    if (scratch) ad_tensor_free(p);
    return y;
}

const ad_op *const ad__ops_attention[] = {&OP_CAUSAL_ATTENTION, NULL};

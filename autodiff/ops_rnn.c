/* autodiff/ops_rnn.c - the fused LSTM cell: kernel, rule and formula side
 * by side, listed in ad__ops_rnn at the end.
 *
 * An LSTM step made of separate ops (add, sigmoid, tanh, three narrows,
 * mul, mul, add, tanh, mul) records a dozen nodes, each with a result to
 * allocate and a rule that makes two or three more temporaries; over the
 * T steps of a sequence that is most of the time outside the matrix
 * products.  Here the step after its two products is one op: one pass
 * forward (the activations kept for the rule) and, in a backward pass that
 * records nothing, one pass back.  Under AD_CREATE_GRAPH the rule is the
 * same derivative written with the library's ops, recomputing the
 * activations from the inputs, so it is recorded and differentiates
 * again (gradgradcheck runs that path, gradcheck the fused one). */
#include "formulas.h"
#include "internal.h"
#include "vmath.h"

static void vsig_f32(float *y, const float *x, int64_t n) { ad__vsigmoid_f32(y, x, n); }
static void vtanh_f32(float *y, const float *x, int64_t n) { ad__vtanh_f32(y, x, n); }
static void vsig_f64(double *y, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = ad__sigmoid(x[i]);
}
static void vtanh_f64(double *y, const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = tanh(x[i]);
}

#define KERNEL_FILE "rnn_kernels.inc"
#include "per_dtype.inc"

/* The activations [B, 5H] (i, f, g, o, tanh c') the rule reads, made on the
 * output's tape when the op is recorded. */
typedef struct lstm_params {
    ad_tensor *act;
} lstm_params;

static void lstm_forward(const ad_tensor *gx, const ad_tensor *gh, const ad_tensor *c,
                         ad_tensor *out, ad_tensor *act)
{
    if (c->dtype == AD_FLOAT64) lstm_fw_f64(gx, gh, c, out, act);
    else lstm_fw_f32(gx, gh, c, out, act);
}

/* s (1 - s): the derivative of the sigmoid from its value. */
static ad_tensor *dsig(ad_tensor *s) { return ad_mul(s, ad_add_scalar(ad_neg(s), 1.0)); }

/* The rule with ops (AD_CREATE_GRAPH): recomputes the activations from the
 * inputs, then the same formulas as lstm_bw. */
static int lstm_bw_ops(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    ad_tensor *c = n->in[2];
    int64_t H = c->shape[1];
    ad_tensor *pre = ad_add(n->in[0], n->in[1]);
    ad_tensor *sg = ad_sigmoid(pre);
    ad_tensor *i = ad_narrow(sg, 1, 0, H), *f = ad_narrow(sg, 1, H, H);
    ad_tensor *o = ad_narrow(sg, 1, 3 * H, H), *g = ad_tanh(ad_narrow(pre, 1, 2 * H, H));
    ad_tensor *tc = ad_tanh(ad_add(ad_mul(f, c), ad_mul(i, g)));
    ad_tensor *dh = ad_squeeze(ad_narrow(G, 0, 0, 1), 0);
    ad_tensor *dct = ad_add(ad_squeeze(ad_narrow(G, 0, 1, 1), 0),
                            ad_mul(ad_mul(dh, o), ad_add_scalar(ad_neg(ad_square(tc)), 1.0)));
    ad_tensor *parts[4] = {
        ad_mul(ad_mul(dct, g), dsig(i)),
        ad_mul(ad_mul(dct, c), dsig(f)),
        ad_mul(ad_mul(dct, i), ad_add_scalar(ad_neg(ad_square(g)), 1.0)),
        ad_mul(ad_mul(dh, tc), dsig(o)),
    };
    ad_tensor *dg = ad_concat(parts, 4, 1);
    if (!dg) return -1;
    if (ad__needs_grad(n, 0)) gin[0] = dg;
    if (ad__needs_grad(n, 1)) gin[1] = dg;
    if (ad__needs_grad(n, 2) && !(gin[2] = ad_mul(dct, f))) return -1;
    return 0;
}

static int lstm_bw(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    if (ad_grad_enabled()) return lstm_bw_ops(n, G, gin);
    const lstm_params *p = ad__params(n);
    ad_tensor *c = n->in[2];
    int64_t B = c->shape[0], H = c->shape[1];
    const char *fn = "ad_fused_lstm_cell (backward)";
    ad_tensor *dg = ad__alloc(fn, n->out->tape, c->dtype, 2, (int64_t[]){B, 4 * H});
    ad_tensor *dc = ad__needs_grad(n, 2) ? ad__alloc(fn, n->out->tape, c->dtype, 2, c->shape)
                                         : NULL;
    if (!dg || (ad__needs_grad(n, 2) && !dc)) return -1;
    if (c->dtype == AD_FLOAT64) lstm_bw_f64(G, p->act, c, dg, dc);
    else lstm_bw_f32(G, p->act, c, dg, dc);
    if (ad__needs_grad(n, 0)) gin[0] = dg;
    if (ad__needs_grad(n, 1)) gin[1] = dg;
    gin[2] = dc;
    return 0;
}

static int lstm_fw(ad_node *n)
{
    const lstm_params *p = ad__params(n);
    lstm_forward(n->in[0], n->in[1], n->in[2], n->out, p->act);
    return 0;
}

static const ad_op OP_FUSED_LSTM_CELL = {
    .name = "fused_lstm_cell",
    .formula = "[i f g o] = [s s tanh s](gx + gh), c' = f c + i g, h' = o tanh c', y = [h', c']; "
               "dc' += dh' o (1 - tanh^2 c'), d[i f g o] = dc' [g c i tanh c'/dc' dh'] "
               "(activation derivatives), dc = dc' f",
    .backward = lstm_bw,
    .forward = lstm_fw,
    .params_size = sizeof(lstm_params),
};

ad_tensor *ad_fused_lstm_cell(ad_tensor *gx, ad_tensor *gh, ad_tensor *c)
{
    static const char *fn = "ad_fused_lstm_cell";
    if (ad__check_arg(fn, "gx", gx, true) || ad__check_arg(fn, "gh", gh, true) ||
        ad__check_arg(fn, "c", c, true))
        return NULL;
    if (!ad__is_float(c->dtype) || gx->dtype != c->dtype || gh->dtype != c->dtype)
        return ad__errc(AD_ERR_DTYPE, fn,
                        "gx, gh and c must share one floating dtype, got %s, %s, %s",
                        ad__desc(gx), ad__desc(gh), ad__desc(c)), NULL;
    if (c->ndim != 2 || gx->ndim != 2 || gh->ndim != 2 || gx->shape[0] != c->shape[0] ||
        gx->shape[1] != 4 * c->shape[1] || !ad__same_shape(gx, gh))
        return ad__errc(AD_ERR_SHAPE, fn, "need gx and gh [B, 4H] and c [B, H], got %s, %s, %s",
                        ad__shape_str(gx), ad__shape_str(gh), ad__shape_str(c)), NULL;
    int64_t B = c->shape[0], H = c->shape[1];
    ad_tensor *in[3] = {gx, gh, c};
    ad_tensor *out = ad__result(fn, 3, in, c->dtype, 3, (int64_t[]){2, B, H});
    if (!out) return NULL;
    /* The activations live on the result's tape for the rule; a persistent
     * result (no tape) is never recorded, so they are only scratch then. */
    ad_tensor *act = ad__alloc(fn, out->tape, c->dtype, 2, (int64_t[]){B, 5 * H});
    if (!act) return ad__finish(out, -1, &OP_FUSED_LSTM_CELL, 3, in, NULL, NULL);
    lstm_forward(gx, gh, c, out, act);
    bool scratch = act->tape == NULL;
    out = ad__finish(out, 0, &OP_FUSED_LSTM_CELL, 3, in, &(lstm_params){act}, NULL);
    if (scratch) ad_tensor_free(act);
    return out;
}

const ad_op *const ad__ops_rnn[] = {
    &OP_FUSED_LSTM_CELL,
    NULL,
};

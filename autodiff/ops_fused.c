/* autodiff/ops_fused.c - fused ops, kernel, rule and formula side by side,
 * listed in ad__ops_fused at the end: the LSTM cell, the LSTM's
 * recurrence over a whole sequence, and layer normalisation.  (The GRU
 * and Elman recurrences are in ops_recurrence.c.)
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
 * again (gradgradcheck runs that path, gradcheck the fused one).  Layer
 * normalisation is the same story: made of mean, var, sub, sqrt, div, mul
 * and add it was five passes forward and a dozen back, per use, in every
 * transformer block. */
#include "formulas.h"
#include "gemm.h"
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

/* The layer norm's loops are inlined into clones for AVX2 and AVX-512
 * (below); nothing is contracted into fused multiply-adds (GCC does not
 * in ISO C, clang is told here), so every clone gives the same bits. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#if defined(__GNUC__) || defined(__clang__)
#define LN_INLINE inline __attribute__((always_inline))
#else
#define LN_INLINE inline
#endif
#define KERNEL_FILE "fused_kernels.inc"
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

/* ---- lstm_recurrence ------------------------------------------------------------
 * A whole layer's recurrence after the input's product gx [T, B, 4H]
 * (biases included): for t = 0..T-1
 *     [i f g o] = act(gx_t + h_t W^T),  c_(t+1) = f c_t + i g,
 *     h_(t+1) = o tanh c_(t+1),
 * from h_0, c_0 [B, H]; y [T + 1, B, H] holds h_1 .. h_T and then c_T.
 * Forward, each step is one product into the step's rows of act (gx_t
 * copied there first, the product added) and the cell's pass over them.
 * Backward, each step is the cell's pass back and one product dh = dG W;
 * the weight's gradient, a sum over the steps of dG_t^T h_t, is one
 * product over all of them at the end ([4H, T B] x [T B, H]) instead of T
 * thin ones; gx's gradient is dG itself.  Inputs gx, w, h0, c0, all
 * contiguous (the public function copies strided ones). */
typedef struct seq_params {
    ad_tensor *act; /* [T, B, 5H]: i, f, g, o, tanh c per step */
    ad_tensor *cs;  /* [T, B, H]: c_1 .. c_T */
} seq_params;

static int seq_forward(const char *fn, const ad_tensor *gx, const ad_tensor *w,
                       const ad_tensor *h0, const ad_tensor *c0, ad_tensor *y, ad_tensor *act,
                       ad_tensor *cs)
{
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    size_t es = gx->dtype == AD_FLOAT64 ? 8 : 4;
    const char *px = (const char *)gx->storage->data + gx->offset * (int64_t)es;
    char *pa = (char *)act->storage->data + act->offset * (int64_t)es;
    char *py = (char *)y->storage->data + y->offset * (int64_t)es;
    char *pc = (char *)cs->storage->data + cs->offset * (int64_t)es;
    const char *pw = (const char *)w->storage->data + w->offset * (int64_t)es;
    /* W packed once for the T products (ad__gemm_pack_a, gemm.h) */
    ad_gemm_packed pk;
    if (ad__gemm_pack_a(y->tape, gx->dtype, 4 * H, H, pw, H, 1, B, &pk))
        return ad__err(fn, "out of memory");
    for (int64_t t = 0; t < T; t++) {
        char *a = pa + t * B * 5 * H * (int64_t)es;
        for (int64_t b = 0; b < B; b++)
            memcpy(a + b * 5 * H * (int64_t)es, px + (t * B + b) * 4 * H * (int64_t)es,
                   (size_t)(4 * H) * es);
        const char *hp = t ? py + (t - 1) * B * H * (int64_t)es
                           : (const char *)h0->storage->data + h0->offset * (int64_t)es;
        const char *cp = t ? pc + (t - 1) * B * H * (int64_t)es
                           : (const char *)c0->storage->data + c0->offset * (int64_t)es;
        /* a[:, :4H] += h_t W^T: W^T's (p, j) is w[j H + p]; with W
         * packed, as its transpose W h_t^T into a's columns */
        if (ad__gemm_packed_or_plain(&pk, B, hp, 1, H, a, 1, 5 * H, true)) {
            ad__gemm_packed_release(&pk);
            return ad__err(fn, "out of memory");
        }
        char *hn = py + t * B * H * (int64_t)es, *cn = pc + t * B * H * (int64_t)es;
        for (int64_t b = 0; b < B; b++) {
            int64_t ra = b * 5 * H * (int64_t)es, rh = b * H * (int64_t)es;
            if (gx->dtype == AD_FLOAT64)
                lstm_row_f64(H, (double *)(void *)(a + ra), (const double *)(const void *)(cp + rh),
                             1, (double *)(void *)(hn + rh), (double *)(void *)(cn + rh));
            else
                lstm_row_f32(H, (float *)(void *)(a + ra), (const float *)(const void *)(cp + rh),
                             1, (float *)(void *)(hn + rh), (float *)(void *)(cn + rh));
        }
    }
    ad__gemm_packed_release(&pk);
    /* y[T] = c_T */
    memcpy(py + T * B * H * (int64_t)es, pc + (T - 1) * B * H * (int64_t)es, (size_t)(B * H) * es);
    return 0;
}

/* The rule with ops (AD_CREATE_GRAPH): the forward again with ops, then
 * the same recurrence backwards. */
static int seq_bw_ops(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    ad_tensor *gx = n->in[0], *w = n->in[1], *h = n->in[2], *c = n->in[3];
    int64_t T = gx->shape[0], H = h->shape[1];
    ad_tensor **keep = ad__arena_alloc(n->out->tape, (size_t)(7 * T) * sizeof *keep);
    if (!keep) return ad__err("ad_lstm_recurrence (backward)", "out of memory");
    for (int64_t t = 0; t < T; t++) {
        ad_tensor *pre = ad_add(ad_squeeze(ad_narrow(gx, 0, t, 1), 0), ad_linear(h, w, NULL));
        ad_tensor *sg = ad_sigmoid(pre);
        ad_tensor **k = keep + 7 * t; /* i, f, g, o, tanh c', c, h (before the step) */
        k[0] = ad_narrow(sg, 1, 0, H);
        k[1] = ad_narrow(sg, 1, H, H);
        k[2] = ad_tanh(ad_narrow(pre, 1, 2 * H, H));
        k[3] = ad_narrow(sg, 1, 3 * H, H);
        k[5] = c;
        k[6] = h;
        c = ad_add(ad_mul(k[1], c), ad_mul(k[0], k[2]));
        k[4] = ad_tanh(c);
        h = ad_mul(k[3], k[4]);
    }
    ad_tensor *dc = ad_squeeze(ad_narrow(G, 0, T, 1), 0), *dh = NULL, *dw = NULL;
    ad_tensor **dgs = ad__arena_alloc(n->out->tape, (size_t)T * sizeof *dgs);
    if (!dgs) return ad__err("ad_lstm_recurrence (backward)", "out of memory");
    for (int64_t t = T - 1; t >= 0; t--) {
        ad_tensor **k = keep + 7 * t, *gt = ad_squeeze(ad_narrow(G, 0, t, 1), 0);
        ad_tensor *i = k[0], *f = k[1], *g = k[2], *o = k[3], *tc = k[4];
        dh = dh ? ad_add(gt, dh) : gt;
        ad_tensor *dct = ad_add(dc, ad_mul(ad_mul(dh, o), ad_add_scalar(ad_neg(ad_square(tc)), 1.0)));
        ad_tensor *parts[4] = {
            ad_mul(ad_mul(dct, g), dsig(i)),
            ad_mul(ad_mul(dct, k[5]), dsig(f)),
            ad_mul(ad_mul(dct, i), ad_add_scalar(ad_neg(ad_square(g)), 1.0)),
            ad_mul(ad_mul(dh, tc), dsig(o)),
        };
        ad_tensor *dg = dgs[t] = ad_concat(parts, 4, 1);
        ad_tensor *dwt = ad_matmul(ad_transpose(dg, 0, 1), k[6]);
        dw = dw ? ad_add(dw, dwt) : dwt;
        dc = ad_mul(dct, f);
        dh = ad_matmul(dg, w);
    }
    ad_tensor *dgx = ad_stack(dgs, (int)T, 0);
    if (!dgx || !dw || !dc || !dh) return -1;
    ad_tensor *all[4] = {dgx, dw, dh, dc};
    for (int i = 0; i < 4; i++)
        if (ad__needs_grad(n, i)) gin[i] = all[i];
    return 0;
}

static int seq_bw(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    if (ad_grad_enabled()) return seq_bw_ops(n, G, gin);
    static const char *fn = "ad_lstm_recurrence (backward)";
    const seq_params *p = ad__params(n);
    ad_tensor *gx = n->in[0], *w = n->in[1], *h0 = n->in[2], *c0 = n->in[3], *y = n->out;
    ad_tape *tp = y->tape;
    ad_dtype dt = gx->dtype;
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    size_t es = dt == AD_FLOAT64 ? 8 : 4;
    ad_tensor *Gc = ad_is_contiguous(G) && ad__same_shape(G, y) ? G
                    : ad_contiguous(ad_expand(G, y->ndim, y->shape));
    ad_tensor *dg = ad__alloc(fn, tp, dt, 3, gx->shape);
    ad_tensor *dh = ad__alloc(fn, tp, dt, 2, h0->shape);
    ad_tensor *dcs[2] = {ad__alloc(fn, tp, dt, 2, c0->shape), ad__alloc(fn, tp, dt, 2, c0->shape)};
    if (!Gc || !dg || !dh || !dcs[0] || !dcs[1]) return -1;
    const char *pg = (const char *)Gc->storage->data + Gc->offset * (int64_t)es;
    const char *pa = (const char *)p->act->storage->data + p->act->offset * (int64_t)es;
    const char *pcs = (const char *)p->cs->storage->data + p->cs->offset * (int64_t)es;
    const char *pw = (const char *)w->storage->data + w->offset * (int64_t)es;
    char *pd = dg->storage->data, *ph = dh->storage->data;
    int64_t BH = B * H * (int64_t)es;
    memset(ph, 0, (size_t)BH);
    memcpy(dcs[0]->storage->data, pg + T * BH, (size_t)BH); /* dL/dc_T */
    /* W^T (W read transposed) packed once for the T products */
    ad_gemm_packed pk;
    if (ad__gemm_pack_a(tp, dt, H, 4 * H, pw, 1, H, B, &pk)) return ad__err(fn, "out of memory");
    int cur = 0;
    for (int64_t t = T - 1; t >= 0; t--) {
        const char *gt = pg + t * BH;
        const char *cp = t ? pcs + (t - 1) * BH
                           : (const char *)c0->storage->data + c0->offset * (int64_t)es;
        char *dct = dcs[cur]->storage->data, *dcn = dcs[1 - cur]->storage->data;
        char *dgt = pd + t * 4 * BH;
        /* dL/dh_t: G[t] plus the part through step t + 1 in dh (zero
         * for the last step), added in the row's pass */
        for (int64_t b = 0; b < B; b++) {
            int64_t r = b * H * (int64_t)es, ra = 5 * r + t * 5 * BH;
            if (dt == AD_FLOAT64)
                lstm_bw_row2_f64(H, (const double *)(const void *)(pa + ra),
                                 (const double *)(const void *)(cp + r),
                                 (const double *)(const void *)(gt + r),
                                 (const double *)(const void *)(ph + r),
                                 (const double *)(const void *)(dct + r),
                                 (double *)(void *)(dgt + 4 * r), (double *)(void *)(dcn + r));
            else
                lstm_bw_row2_f32(H, (const float *)(const void *)(pa + ra),
                                 (const float *)(const void *)(cp + r),
                                 (const float *)(const void *)(gt + r),
                                 (const float *)(const void *)(ph + r),
                                 (const float *)(const void *)(dct + r),
                                 (float *)(void *)(dgt + 4 * r), (float *)(void *)(dcn + r));
        }
        cur = 1 - cur;
        /* dL/dh_t's part through step t, dG_t W (G[t - 1] is added at
         * the next iteration), as dh_t^T = W^T dG_t^T into dh's columns */
        if (ad__gemm_packed_or_plain(&pk, B, dgt, 1, 4 * H, ph, 1, H, false)) {
            ad__gemm_packed_release(&pk);
            return ad__err(fn, "out of memory");
        }
    }
    ad__gemm_packed_release(&pk);
    if (ad__needs_grad(n, 1)) {
        /* dW = sum_t dG_t^T h_t: h_0, then h_1 .. h_(T-1) = y[0 .. T-2] */
        const char *ph0 = (const char *)h0->storage->data + h0->offset * (int64_t)es;
        const char *py = (const char *)y->storage->data + y->offset * (int64_t)es;
        if (!(gin[1] = ad__recurrence_dw(fn, tp, dt, T, B, 4 * H, H, pd, ph0, py))) return -1;
    }
    if (ad__needs_grad(n, 0)) gin[0] = dg;
    if (ad__needs_grad(n, 2)) gin[2] = dh;
    if (ad__needs_grad(n, 3)) gin[3] = dcs[cur];
    return 0;
}

static int seq_fw(ad_node *n)
{
    const seq_params *p = ad__params(n);
    return seq_forward("ad_lstm_recurrence", n->in[0], n->in[1], n->in[2], n->in[3], n->out,
                       p->act, p->cs);
}

static const ad_op OP_LSTM_RECURRENCE = {
    .name = "lstm_recurrence",
    .formula = "per step [i f g o] = act(gx_t + h_t W^T), c' = f c + i g, h' = o tanh c'; "
               "y = [h_1..h_T, c_T]; backward: the cell's rule per step, dh_t = dG_t W, "
               "dW = sum_t dG_t^T h_t (one product), dgx = dG",
    .backward = seq_bw,
    .forward = seq_fw,
    .params_size = sizeof(seq_params),
};

ad_tensor *ad_lstm_recurrence(ad_tensor *gx, ad_tensor *w, ad_tensor *h0, ad_tensor *c0)
{
    static const char *fn = "ad_lstm_recurrence";
    if (ad__check_arg(fn, "gx", gx, true) || ad__check_arg(fn, "w_hh", w, true) ||
        ad__check_arg(fn, "h0", h0, true) || ad__check_arg(fn, "c0", c0, true))
        return NULL;
    ad_dtype dt = gx->dtype;
    if (w->dtype != dt || h0->dtype != dt || c0->dtype != dt)
        return ad__errc(AD_ERR_DTYPE, fn, "gx, w_hh, h0 and c0 must share one dtype, got %s, %s, "
                        "%s, %s", ad__desc(gx), ad__desc(w), ad__desc(h0), ad__desc(c0)), NULL;
    bool ok = gx->ndim == 3 && w->ndim == 2 && h0->ndim == 2 && c0->ndim == 2 &&
              gx->shape[0] >= 1 && ad__same_shape(h0, c0) && h0->shape[0] == gx->shape[1] &&
              w->shape[1] == h0->shape[1] && w->shape[0] == 4 * h0->shape[1] &&
              gx->shape[2] == w->shape[0];
    if (!ok)
        return ad__errc(AD_ERR_SHAPE, fn, "need gx [T, B, 4H] (T >= 1), w_hh [4H, H], h0 and c0 "
                        "[B, H], got %s, %s, %s, %s", ad__shape_str(gx), ad__shape_str(w),
                        ad__shape_str(h0), ad__shape_str(c0)), NULL;
    ad_tensor *in[4] = {gx, w, h0, c0};
    for (int i = 0; i < 4; i++)
        if (!ad_is_contiguous(in[i]) && !(in[i] = ad_contiguous(in[i]))) return NULL;
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    ad_tensor *y = ad__result(fn, 4, in, dt, 3, (int64_t[]){T + 1, B, H});
    if (!y) return NULL;
    ad_tensor *act = ad__alloc(fn, y->tape, dt, 3, (int64_t[]){T, B, 5 * H});
    ad_tensor *cs = act ? ad__alloc(fn, y->tape, dt, 3, (int64_t[]){T, B, H}) : NULL;
    int rc = cs ? seq_forward(fn, in[0], in[1], in[2], in[3], y, act, cs) : -1;
    bool scratch = y->tape == NULL;
    y = ad__finish(y, rc, &OP_LSTM_RECURRENCE, 4, in, &(seq_params){act, cs}, NULL);
    if (scratch) {
        ad_tensor_free(act);
        ad_tensor_free(cs);
    }
    return y;
}

/* ---- layer_norm ---------------------------------------------------------------
 * Over rows of N = the product of the last nnormdims extents: for each row,
 * mu and rstd = 1/sqrt(var + eps) (biased variance, in double), then
 * y = (x - mu) rstd w + b.  The rule's formula, with xh = (x - mu) rstd and
 * gw = g w:  dx = rstd (gw - mean(gw) - xh mean(gw xh)),  dw = sum_rows g xh,
 * db = sum_rows g.  The inputs are x (contiguous), then w and b when given. */
typedef struct ln_params {
    int nnorm;
    bool has_w, has_b;
    double eps;
    ad_tensor *stats; /* [M, 2]: each row's mu and rstd, for the rule */
} ln_params;

/* The layer norm's kernels for the CPU's widest vectors: its row sums are
 * in explicit lanes and the rest is elementwise, so the baseline SSE2
 * build, the AVX2 and the AVX-512 clone add the same numbers in the same
 * order.  With SSE2 alone the double sums took 2 doubles per instruction
 * and were most of the op's time. */
#define LN_FW_ARGS                                                                                 \
    const ad_tensor *x, const ad_tensor *w, const ad_tensor *b, ad_tensor *y, ad_tensor *stats,    \
        int64_t M, int64_t N, double eps
#define LN_BW_ARGS                                                                                 \
    const ad_tensor *x, const ad_tensor *w, const ad_tensor *g, const ad_tensor *stats,            \
        ad_tensor *dx, ad_tensor *dw, ad_tensor *db, double *acc, int64_t M, int64_t N
#define LN_CLONES(attr, sfx)                                                                       \
    attr static void ln_fw32_##sfx(LN_FW_ARGS) { ln_fw_f32(x, w, b, y, stats, M, N, eps); }       \
    attr static void ln_fw64_##sfx(LN_FW_ARGS) { ln_fw_f64(x, w, b, y, stats, M, N, eps); }       \
    attr static void ln_bw32_##sfx(LN_BW_ARGS) { ln_bw_f32(x, w, g, stats, dx, dw, db, acc, M, N); } \
    attr static void ln_bw64_##sfx(LN_BW_ARGS) { ln_bw_f64(x, w, g, stats, dx, dw, db, acc, M, N); }
LN_CLONES(, any)
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
LN_CLONES(__attribute__((target("avx2"))), avx2)
LN_CLONES(__attribute__((target("avx512f"))), avx512)
#endif

static void ln_forward(const ad_node *n, const ad_tensor *x, const ad_tensor *w,
                       const ad_tensor *b, ad_tensor *y, ad_tensor *stats, int nnorm, double eps)
{
    (void)n;
    int64_t N = ad__numel(nnorm, x->shape + (x->ndim - nnorm));
    int64_t M = N ? ad__numel(x->ndim, x->shape) / N : 0;
    if (x->dtype == AD_FLOAT64) AD_PICK_CLONE(ln_fw64)(x, w, b, y, stats, M, N, eps);
    else AD_PICK_CLONE(ln_fw32)(x, w, b, y, stats, M, N, eps);
}

/* w and b of node n (NULL when not given). */
static void ln_affine(const ad_node *n, ad_tensor **w, ad_tensor **b)
{
    const ln_params *p = ad__params(n);
    *w = p->has_w ? n->in[1] : NULL;
    *b = p->has_b ? n->in[p->has_w ? 2 : 1] : NULL;
}

/* The rule with ops (AD_CREATE_GRAPH): statistics recomputed with ops. */
static int ln_bw_ops(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const ln_params *p = ad__params(n);
    ad_tensor *x = n->in[0], *w, *b;
    ln_affine(n, &w, &b);
    int axes[AD_MAX_DIMS], k = p->nnorm;
    for (int i = 0; i < k; i++) axes[i] = x->ndim - k + i;
    ad_tensor *xc = ad_sub(x, ad_mean(x, axes, k, true));
    ad_tensor *rstd = ad_reciprocal(
        ad_sqrt(ad_add_scalar(ad_mean(ad_square(xc), axes, k, true), p->eps)));
    ad_tensor *xh = ad_mul(xc, rstd);
    ad_tensor *gw = w ? ad_mul(g, w) : g;
    if (ad__needs_grad(n, 0)) {
        ad_tensor *inner = ad_sub(ad_sub(gw, ad_mean(gw, axes, k, true)),
                                  ad_mul(xh, ad_mean(ad_mul(gw, xh), axes, k, true)));
        if (!(gin[0] = ad_mul(rstd, inner))) return -1;
    }
    if (w && ad__needs_grad(n, 1) && !(gin[1] = ad__sum_to(ad_mul(g, xh), w->ndim, w->shape)))
        return -1;
    int bi = w ? 2 : 1;
    if (b && ad__needs_grad(n, bi) && !(gin[bi] = ad__sum_to(g, b->ndim, b->shape))) return -1;
    return 0;
}

static int ln_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    if (ad_grad_enabled()) return ln_bw_ops(n, g, gin);
    const char *fn = "ad_layer_norm (backward)";
    const ln_params *p = ad__params(n);
    ad_tensor *x = n->in[0], *w, *b;
    ln_affine(n, &w, &b);
    ad_tape *t = n->out->tape;
    int bi = w ? 2 : 1;
    /* the kernel walks g, w as contiguous rows */
    ad_tensor *gc = ad_is_contiguous(g) && g->dtype == x->dtype && ad__same_shape(g, x)
                        ? g
                        : ad_contiguous(ad_expand(g, x->ndim, x->shape));
    ad_tensor *wc = w && !ad_is_contiguous(w) ? ad_contiguous(w) : w;
    /* dx over g itself when the pass allows it: the kernel reads each row
     * of g whole before it writes that row of dx */
    ad_tensor *dx = !ad__needs_grad(n, 0)             ? NULL
                    : gc == g && ad__grad_donated(n, g) ? g
                                                      : ad__alloc(fn, t, x->dtype, x->ndim, x->shape);
    ad_tensor *dw = w && ad__needs_grad(n, 1) ? ad__alloc(fn, t, x->dtype, w->ndim, w->shape)
                                              : NULL;
    ad_tensor *db = b && ad__needs_grad(n, bi) ? ad__alloc(fn, t, x->dtype, b->ndim, b->shape)
                                               : NULL;
    if (!gc || (w && !wc) || (ad__needs_grad(n, 0) && !dx) || (w && ad__needs_grad(n, 1) && !dw) ||
        (b && ad__needs_grad(n, bi) && !db))
        return -1;
    int64_t N = ad__numel(p->nnorm, x->shape + (x->ndim - p->nnorm));
    int64_t M = N ? ad__numel(x->ndim, x->shape) / N : 0;
    double *acc = NULL;
    if (dw || db) {
        acc = ad__arena_alloc(t, (size_t)(2 * N) * sizeof *acc);
        if (!acc) return ad__err(fn, "out of memory");
    }
    if (x->dtype == AD_FLOAT64) AD_PICK_CLONE(ln_bw64)(x, wc, gc, p->stats, dx, dw, db, acc, M, N);
    else AD_PICK_CLONE(ln_bw32)(x, wc, gc, p->stats, dx, dw, db, acc, M, N);
    gin[0] = dx;
    if (w) gin[1] = dw;
    if (b) gin[bi] = db;
    return 0;
}

static int ln_fw(ad_node *n)
{
    const ln_params *p = ad__params(n);
    ad_tensor *w, *b;
    ln_affine(n, &w, &b);
    ln_forward(n, n->in[0], w, b, n->out, p->stats, p->nnorm, p->eps);
    return 0;
}

static const ad_op OP_LAYER_NORM = {
    .name = "layer_norm",
    .formula = "y = (x - mu) rstd w + b over the last dims, rstd = 1/sqrt(var + eps); "
               "dx = rstd (gw - mean(gw) - xh mean(gw xh)), xh = (x - mu) rstd, gw = g w; "
               "dw = sum g xh, db = sum g",
    .backward = ln_bw,
    .forward = ln_fw,
    .params_size = sizeof(ln_params),
};

ad_tensor *ad__layer_norm_fused(const char *fn, ad_tensor *x, int nnorm, ad_tensor *w,
                                ad_tensor *b, double eps)
{
    /* rows are walked as contiguous runs: views are copied first (an op,
     * so the gradient flows back through the copy) */
    ad_tensor *xc = ad_is_contiguous(x) ? x : ad_contiguous(x);
    ad_tensor *wc = !w || ad_is_contiguous(w) ? w : ad_contiguous(w);
    ad_tensor *bc = !b || ad_is_contiguous(b) ? b : ad_contiguous(b);
    if (!xc || (w && !wc) || (b && !bc)) return NULL;
    x = xc;
    w = wc;
    b = bc;
    ad_tensor *in[3] = {x, NULL, NULL};
    int nin = 1;
    if (w) in[nin++] = w;
    if (b) in[nin++] = b;
    ad_tensor *y = ad__result(fn, nin, in, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    int64_t N = ad__numel(nnorm, x->shape + (x->ndim - nnorm));
    int64_t M = N ? ad__numel(x->ndim, x->shape) / N : 0;
    ad_tensor *stats = ad__alloc(fn, y->tape, AD_FLOAT64, 2, (int64_t[]){M, 2});
    if (!stats) return ad__finish(y, -1, &OP_LAYER_NORM, nin, in, NULL, NULL);
    ln_forward(NULL, x, w, b, y, stats, nnorm, eps);
    bool scratch = stats->tape == NULL;
    ln_params p = {nnorm, w != NULL, b != NULL, eps, stats};
    y = ad__finish(y, 0, &OP_LAYER_NORM, nin, in, &p, NULL);
    if (scratch) ad_tensor_free(stats);
    return y;
}

const ad_op *const ad__ops_fused[] = {
    &OP_FUSED_LSTM_CELL,
    &OP_LSTM_RECURRENCE,
    &OP_LAYER_NORM,
    NULL,
};

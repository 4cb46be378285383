/* autodiff/ops_recurrence.c - the GRU and Elman (tanh / relu) layers'
 * recurrences over whole sequences as one op each, kernel, rule and
 * formula side by side, listed in ad__ops_recurrence at the end.  They
 * follow the LSTM's recurrence (ops_fused.c): the input's share of every
 * step is one product before the op; each step inside it is one product
 * with the recurrent weight packed once per call and one pass over the
 * gates; backward is one pass and one product per step, and the
 * recurrent weight's gradient one product over all steps.  Under
 * AD_CREATE_GRAPH the rule is the same derivative written with the
 * library's ops, so it is recorded and differentiates again. */
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

#define KERNEL_FILE "recurrence_kernels.inc"
#include "per_dtype.inc"

/* sigmoid's derivative from its value s: s (1 - s), in ops. */
static ad_tensor *dsig(ad_tensor *s) { return ad_mul(s, ad_add_scalar(ad_neg(s), 1.0)); }

ad_tensor *ad__recurrence_dw(const char *fn, ad_tape *tp, ad_dtype dt, int64_t T, int64_t B,
                             int64_t g, int64_t h, const void *d, const void *h0, const void *y)
{
    ad_tensor *dw = ad__alloc(fn, tp, dt, 2, (int64_t[]){g, h});
    if (!dw) return NULL;
    const char *rest = (const char *)d + B * g * (int64_t)ad_dtype_size(dt);
    ad_gemm_ep acc = {NULL, 0, true, false};
    if (ad__gemm(tp, dt, g, h, B, d, 1, g, h0, h, 1, dw->storage->data, h) ||
        (T > 1 && ad__gemm_ep(tp, dt, g, h, (T - 1) * B, rest, 1, g, y, h, 1, dw->storage->data,
                              h, &acc)))
        return ad__err(fn, "out of memory"), NULL;
    return dw;
}

/* ---- gru_recurrence -------------------------------------------------------------
 * A whole GRU layer's recurrence after the input's product gx [T, B, 3H]
 * (x_t W_ih^T + b_ih, blocks r, z, n): for t = 0..T-1, with
 * gh = h_t W^T + b [B, 3H] (b = b_hh, or none),
 *     r = sigmoid(gx_r + gh_r),  z = sigmoid(gx_z + gh_z),
 *     n = tanh(gx_n + r gh_n),   h_(t+1) = (1 - z) n + z h_t,
 * from h_0 [B, H]; y [T, B, H] holds h_1 .. h_T.  Forward, each step is
 * one product into the step's rows of act and one pass over them.
 * Backward, with dh the gradient of h_(t+1) (G_t plus what came back
 * through step t + 1):
 *     dpn = dh (1 - z)(1 - n^2),  dpr = dpn gh_n r (1 - r),
 *     dpz = dh (h_t - n) z (1 - z),
 *     dgx_t = [dpr dpz dpn],  dgh_t = [dpr dpz dpn r],
 *     dh_t = dh z + dgh_t W,
 * one pass and one product per step; W's gradient sum_t dgh_t^T h_t is
 * one product over all steps at the end, b's the column sums of dgh.
 * Inputs gx, w, h0[, b], all contiguous (the public function copies
 * strided ones). */
typedef struct gru_params {
    ad_tensor *act; /* [T, B, 4H]: r, z, n, gh_n per step */
} gru_params;

/* The element pointer of contiguous tensor t. */
static char *gru_data(const ad_tensor *t, size_t es)
{
    return (char *)t->storage->data + t->offset * (int64_t)es;
}

static int gru_forward(const char *fn, const ad_tensor *gx, const ad_tensor *w,
                       const ad_tensor *h0, const ad_tensor *bh, ad_tensor *y, ad_tensor *act)
{
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    ad_dtype dt = gx->dtype;
    size_t es = dt == AD_FLOAT64 ? 8 : 4;
    const char *px = gru_data(gx, es), *pw = gru_data(w, es);
    const char *pb = bh ? gru_data(bh, es) : NULL;
    char *pa = gru_data(act, es), *py = gru_data(y, es);
    int64_t BH = B * H * (int64_t)es;
    /* W packed once for the T products (ad__gemm_pack_a, gemm.h) */
    ad_gemm_packed pk;
    if (ad__gemm_pack_a(y->tape, dt, 3 * H, H, pw, H, 1, B, &pk))
        return ad__err(fn, "out of memory");
    for (int64_t t = 0; t < T; t++) {
        char *a = pa + t * 4 * BH;
        const char *hp = t ? py + (t - 1) * BH : gru_data(h0, es);
        /* a[:, :3H] = h_t W^T, as W h_t^T into a's columns */
        if (ad__gemm_packed_or_plain(&pk, B, hp, 1, H, a, 1, 4 * H, false)) {
            ad__gemm_packed_release(&pk);
            return ad__err(fn, "out of memory");
        }
        for (int64_t b = 0; b < B; b++) {
            int64_t r = b * H * (int64_t)es;
            const char *xr = px + t * 3 * BH + 3 * r;
            if (dt == AD_FLOAT64)
                gru_row_f64(H, (double *)(void *)(a + 4 * r), (const double *)(const void *)xr,
                            (const double *)(const void *)pb,
                            (const double *)(const void *)(hp + r),
                            (double *)(void *)(py + t * BH + r));
            else
                gru_row_f32(H, (float *)(void *)(a + 4 * r), (const float *)(const void *)xr,
                            (const float *)(const void *)pb, (const float *)(const void *)(hp + r),
                            (float *)(void *)(py + t * BH + r));
        }
    }
    ad__gemm_packed_release(&pk);
    return 0;
}

/* The rule with ops (AD_CREATE_GRAPH): the forward again with ops, then
 * the same recurrence backwards. */
static int gru_bw_ops(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    static const char *fn = "ad_gru_recurrence (backward)";
    ad_tensor *gx = n->in[0], *w = n->in[1], *h = n->in[2], *bh = n->nin > 3 ? n->in[3] : NULL;
    int64_t T = gx->shape[0], H = h->shape[1];
    ad_tensor **keep = ad__arena_alloc(n->out->tape, (size_t)(6 * T) * sizeof *keep);
    if (!keep) return ad__err(fn, "out of memory");
    for (int64_t t = 0; t < T; t++) {
        ad_tensor *xt = ad_squeeze(ad_narrow(gx, 0, t, 1), 0), *gh = ad_linear(h, w, bh);
        ad_tensor *rz = ad_sigmoid(ad_add(ad_narrow(xt, 1, 0, 2 * H), ad_narrow(gh, 1, 0, 2 * H)));
        ad_tensor **k = keep + 6 * t; /* r, z, n, gh_n, h (before the step) */
        k[0] = ad_narrow(rz, 1, 0, H);
        k[1] = ad_narrow(rz, 1, H, H);
        k[3] = ad_narrow(gh, 1, 2 * H, H);
        k[2] = ad_tanh(ad_add(ad_narrow(xt, 1, 2 * H, H), ad_mul(k[0], k[3])));
        k[4] = h;
        h = ad_add(k[2], ad_mul(k[1], ad_sub(h, k[2])));
    }
    ad_tensor *dh = NULL, *dw = NULL, *db = NULL;
    ad_tensor **dxs = ad__arena_alloc(n->out->tape, (size_t)T * sizeof *dxs);
    if (!dxs) return ad__err(fn, "out of memory");
    for (int64_t t = T - 1; t >= 0; t--) {
        ad_tensor **k = keep + 6 * t, *gt = ad_squeeze(ad_narrow(G, 0, t, 1), 0);
        ad_tensor *r = k[0], *z = k[1], *nn = k[2];
        dh = dh ? ad_add(gt, dh) : gt;
        ad_tensor *dpn = ad_mul(ad_mul(dh, ad_add_scalar(ad_neg(z), 1.0)),
                                ad_add_scalar(ad_neg(ad_square(nn)), 1.0));
        ad_tensor *dpr = ad_mul(ad_mul(dpn, k[3]), dsig(r));
        ad_tensor *dpz = ad_mul(ad_mul(dh, ad_sub(k[4], nn)), dsig(z));
        dxs[t] = ad_concat((ad_tensor *[]){dpr, dpz, dpn}, 3, 1);
        ad_tensor *dgh = ad_concat((ad_tensor *[]){dpr, dpz, ad_mul(dpn, r)}, 3, 1);
        ad_tensor *dwt = ad_matmul(ad_transpose(dgh, 0, 1), k[4]);
        dw = dw ? ad_add(dw, dwt) : dwt;
        if (bh) {
            ad_tensor *dbt = ad_sum(dgh, (int[]){0}, 1, false);
            db = db ? ad_add(db, dbt) : dbt;
        }
        dh = ad_add(ad_mul(dh, z), ad_matmul(dgh, w));
    }
    ad_tensor *dgx = ad_stack(dxs, (int)T, 0);
    if (!dgx || !dw || !dh || (bh && !db)) return -1;
    ad_tensor *all[4] = {dgx, dw, dh, db};
    for (int i = 0; i < n->nin; i++)
        if (ad__needs_grad(n, i)) gin[i] = all[i];
    return 0;
}

static int gru_bw(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    if (ad_grad_enabled()) return gru_bw_ops(n, G, gin);
    static const char *fn = "ad_gru_recurrence (backward)";
    const gru_params *p = ad__params(n);
    ad_tensor *gx = n->in[0], *w = n->in[1], *h0 = n->in[2], *bh = n->nin > 3 ? n->in[3] : NULL;
    ad_tensor *y = n->out;
    ad_tape *tp = y->tape;
    ad_dtype dt = gx->dtype;
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    size_t es = dt == AD_FLOAT64 ? 8 : 4;
    ad_tensor *Gc = ad_is_contiguous(G) && ad__same_shape(G, y) ? G
                    : ad_contiguous(ad_expand(G, y->ndim, y->shape));
    ad_tensor *dx = ad__alloc(fn, tp, dt, 3, gx->shape);
    ad_tensor *dgh = ad__alloc(fn, tp, dt, 3, gx->shape);
    ad_tensor *dhs[2] = {ad__alloc(fn, tp, dt, 2, h0->shape), ad__alloc(fn, tp, dt, 2, h0->shape)};
    if (!Gc || !dx || !dgh || !dhs[0] || !dhs[1]) return -1;
    const char *pg = gru_data(Gc, es), *pa = gru_data(p->act, es), *py = gru_data(y, es);
    const char *pw = gru_data(w, es);
    char *pdx = gru_data(dx, es), *pdg = gru_data(dgh, es);
    int64_t BH = B * H * (int64_t)es;
    memset(gru_data(dhs[0], es), 0, (size_t)BH);
    /* W^T (W read transposed) packed once for the T products */
    ad_gemm_packed pk;
    if (ad__gemm_pack_a(tp, dt, H, 3 * H, pw, 1, H, B, &pk)) return ad__err(fn, "out of memory");
    int cur = 0;
    for (int64_t t = T - 1; t >= 0; t--) {
        const char *gt = pg + t * BH, *hp = t ? py + (t - 1) * BH : gru_data(h0, es);
        const char *carry = gru_data(dhs[cur], es); /* zero for the last step */
        char *dhn = gru_data(dhs[1 - cur], es);
        char *dxt = pdx + t * 3 * BH, *dgt = pdg + t * 3 * BH;
        for (int64_t b = 0; b < B; b++) {
            int64_t r = b * H * (int64_t)es, ra = t * 4 * BH + 4 * r;
            if (dt == AD_FLOAT64)
                gru_bw_row_f64(H, (const double *)(const void *)(pa + ra),
                               (const double *)(const void *)(hp + r),
                               (const double *)(const void *)(gt + r),
                               (const double *)(const void *)(carry + r),
                               (double *)(void *)(dxt + 3 * r), (double *)(void *)(dgt + 3 * r),
                               (double *)(void *)(dhn + r));
            else
                gru_bw_row_f32(H, (const float *)(const void *)(pa + ra),
                               (const float *)(const void *)(hp + r),
                               (const float *)(const void *)(gt + r),
                               (const float *)(const void *)(carry + r),
                               (float *)(void *)(dxt + 3 * r), (float *)(void *)(dgt + 3 * r),
                               (float *)(void *)(dhn + r));
        }
        cur = 1 - cur;
        /* dh_t = dh z + dgh_t W, as dh_t^T += W^T dgh_t^T into its columns */
        if (ad__gemm_packed_or_plain(&pk, B, dgt, 1, 3 * H, dhn, 1, H, true)) {
            ad__gemm_packed_release(&pk);
            return ad__err(fn, "out of memory");
        }
    }
    ad__gemm_packed_release(&pk);
    if (ad__needs_grad(n, 1)) {
        /* dW = sum_t dgh_t^T h_t */
        if (!(gin[1] = ad__recurrence_dw(fn, tp, dt, T, B, 3 * H, H, pdg, gru_data(h0, es), py)))
            return -1;
    }
    if (bh && ad__needs_grad(n, 3)) {
        /* db = the column sums of dgh over all T B rows, in double */
        ad_tensor *db = ad__alloc(fn, tp, dt, 1, bh->shape);
        double *s = db ? ad__arena_alloc(tp, (size_t)(3 * H) * sizeof *s) : NULL;
        if (!s) return db ? ad__err(fn, "out of memory") : -1;
        memset(s, 0, (size_t)(3 * H) * sizeof *s);
        for (int64_t i = 0; i < T * B; i++)
            for (int64_t j = 0; j < 3 * H; j++)
                s[j] += dt == AD_FLOAT64 ? ((const double *)(const void *)pdg)[i * 3 * H + j]
                                         : ((const float *)(const void *)pdg)[i * 3 * H + j];
        for (int64_t j = 0; j < 3 * H; j++) {
            if (dt == AD_FLOAT64) ((double *)db->storage->data)[j] = s[j];
            else ((float *)db->storage->data)[j] = (float)s[j];
        }
        gin[3] = db;
    }
    if (ad__needs_grad(n, 0)) gin[0] = dx;
    if (ad__needs_grad(n, 2)) gin[2] = dhs[cur];
    return 0;
}

static int gru_fw(ad_node *n)
{
    const gru_params *p = ad__params(n);
    return gru_forward("ad_gru_recurrence", n->in[0], n->in[1], n->in[2],
                       n->nin > 3 ? n->in[3] : NULL, n->out, p->act);
}

static const ad_op OP_GRU_RECURRENCE = {
    .name = "gru_recurrence",
    .formula = "per step gh = h_t W^T + b, r = s(gx_r + gh_r), z = s(gx_z + gh_z), "
               "n = tanh(gx_n + r gh_n), h' = (1 - z) n + z h; y = [h_1..h_T]; backward: "
               "dpn = dh (1 - z)(1 - n^2), dpr = dpn gh_n r (1 - r), dpz = dh (h - n) z (1 - z), "
               "dgx = [dpr dpz dpn], dgh = [dpr dpz dpn r], dh_t = dh z + dgh W, "
               "dW = sum_t dgh_t^T h_t (one product), db = sum dgh",
    .backward = gru_bw,
    .forward = gru_fw,
    .params_size = sizeof(gru_params),
};

ad_tensor *ad_gru_recurrence(ad_tensor *gx, ad_tensor *w, ad_tensor *b, ad_tensor *h0)
{
    static const char *fn = "ad_gru_recurrence";
    if (ad__check_arg(fn, "gx", gx, true) || ad__check_arg(fn, "w_hh", w, true) ||
        ad__check_arg(fn, "h0", h0, true) || (b && ad__check_arg(fn, "b_hh", b, true)))
        return NULL;
    ad_dtype dt = gx->dtype;
    if (!ad__is_float(dt) || w->dtype != dt || h0->dtype != dt || (b && b->dtype != dt))
        return ad__errc(AD_ERR_DTYPE, fn, "gx, w_hh, b_hh and h0 must share one floating dtype, "
                        "got %s, %s, %s, %s", ad__desc(gx), ad__desc(w),
                        b ? ad__desc(b) : "none", ad__desc(h0)), NULL;
    bool ok = gx->ndim == 3 && w->ndim == 2 && h0->ndim == 2 && gx->shape[0] >= 1 &&
              h0->shape[0] == gx->shape[1] && w->shape[1] == h0->shape[1] &&
              w->shape[0] == 3 * h0->shape[1] && gx->shape[2] == w->shape[0] &&
              (!b || (b->ndim == 1 && b->shape[0] == w->shape[0]));
    if (!ok)
        return ad__errc(AD_ERR_SHAPE, fn, "need gx [T, B, 3H] (T >= 1), w_hh [3H, H], b_hh [3H] "
                        "or none and h0 [B, H], got %s, %s, %s, %s", ad__shape_str(gx),
                        ad__shape_str(w), b ? ad__shape_str(b) : "none", ad__shape_str(h0)), NULL;
    ad_tensor *in[4] = {gx, w, h0, b};
    int nin = b ? 4 : 3;
    for (int i = 0; i < nin; i++)
        if (!ad_is_contiguous(in[i]) && !(in[i] = ad_contiguous(in[i]))) return NULL;
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    ad_tensor *y = ad__result(fn, nin, in, dt, 3, (int64_t[]){T, B, H});
    if (!y) return NULL;
    ad_tensor *act = ad__alloc(fn, y->tape, dt, 3, (int64_t[]){T, B, 4 * H});
    int rc = act ? gru_forward(fn, in[0], in[1], in[2], b ? in[3] : NULL, y, act) : -1;
    bool scratch = y->tape == NULL;
    y = ad__finish(y, rc, &OP_GRU_RECURRENCE, nin, in, &(gru_params){act}, NULL);
    if (scratch) ad_tensor_free(act);
    return y;
}

/* ---- rnn_recurrence -------------------------------------------------------------
 * A whole Elman layer's recurrence after the input's product gx [T, B, H]
 * (x_t W_ih^T + b_ih + b_hh): for t = 0..T-1
 *     h_(t+1) = act(gx_t + h_t W^T),  act tanh or relu,
 * from h_0 [B, H]; y [T, B, H] holds h_1 .. h_T.  Forward, each step is
 * one product into y_t and one pass over it.  Backward, with dh the
 * gradient of h_(t+1) (G_t plus what came back through step t + 1),
 *     dp_t = dh act'(.)  (1 - h_(t+1)^2, or [h_(t+1) > 0]),
 *     dh_t = dp_t W,  dgx_t = dp_t,
 * one pass and one product per step; W's gradient sum_t dp_t^T h_t is
 * one product over all steps.  Nothing is kept but y: the derivative is
 * read from h_(t+1).  Inputs gx, w, h0, all contiguous. */
typedef struct rnn_params {
    bool relu;
} rnn_params;

static int rnn_forward(const char *fn, const ad_tensor *gx, const ad_tensor *w,
                       const ad_tensor *h0, bool relu, ad_tensor *y)
{
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    ad_dtype dt = gx->dtype;
    size_t es = dt == AD_FLOAT64 ? 8 : 4;
    const char *px = gru_data(gx, es), *pw = gru_data(w, es);
    char *py = gru_data(y, es);
    int64_t BH = B * H * (int64_t)es;
    /* W packed once for the T products (ad__gemm_pack_a, gemm.h) */
    ad_gemm_packed pk;
    if (ad__gemm_pack_a(y->tape, dt, H, H, pw, H, 1, B, &pk)) return ad__err(fn, "out of memory");
    for (int64_t t = 0; t < T; t++) {
        char *yt = py + t * BH;
        const char *hp = t ? yt - BH : gru_data(h0, es);
        /* y_t = h_t W^T, as W h_t^T into y_t's columns */
        if (ad__gemm_packed_or_plain(&pk, B, hp, 1, H, yt, 1, H, false)) {
            ad__gemm_packed_release(&pk);
            return ad__err(fn, "out of memory");
        }
        for (int64_t b = 0; b < B; b++) {
            int64_t r = b * H * (int64_t)es;
            if (dt == AD_FLOAT64)
                rnn_row_f64(H, (double *)(void *)(yt + r),
                            (const double *)(const void *)(px + t * BH + r), relu);
            else
                rnn_row_f32(H, (float *)(void *)(yt + r),
                            (const float *)(const void *)(px + t * BH + r), relu);
        }
    }
    ad__gemm_packed_release(&pk);
    return 0;
}

/* The rule with ops (AD_CREATE_GRAPH): the forward again with ops, then
 * the same recurrence backwards (relu's derivative a constant mask). */
static int rnn_bw_ops(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    static const char *fn = "ad_rnn_recurrence (backward)";
    const rnn_params *p = ad__params(n);
    ad_tensor *gx = n->in[0], *w = n->in[1], *h = n->in[2];
    int64_t T = gx->shape[0];
    ad_tensor **hs = ad__arena_alloc(n->out->tape, (size_t)(T + 1) * sizeof *hs);
    ad_tensor **dps = ad__arena_alloc(n->out->tape, (size_t)T * sizeof *dps);
    if (!hs || !dps) return ad__err(fn, "out of memory");
    hs[0] = h;
    for (int64_t t = 0; t < T; t++) {
        ad_tensor *pre = ad_add(ad_squeeze(ad_narrow(gx, 0, t, 1), 0), ad_linear(hs[t], w, NULL));
        hs[t + 1] = p->relu ? ad_relu(pre) : ad_tanh(pre);
    }
    ad_tensor *dh = NULL, *dw = NULL;
    for (int64_t t = T - 1; t >= 0; t--) {
        ad_tensor *gt = ad_squeeze(ad_narrow(G, 0, t, 1), 0), *y = hs[t + 1];
        dh = dh ? ad_add(gt, dh) : gt;
        ad_tensor *dp = dps[t] = p->relu ? ad_mul(dh, ad_sign(ad_detach(y)))
                                         : ad_mul(dh, ad_add_scalar(ad_neg(ad_square(y)), 1.0));
        ad_tensor *dwt = ad_matmul(ad_transpose(dp, 0, 1), hs[t]);
        dw = dw ? ad_add(dw, dwt) : dwt;
        dh = ad_matmul(dp, w);
    }
    ad_tensor *dgx = ad_stack(dps, (int)T, 0);
    if (!dgx || !dw || !dh) return -1;
    ad_tensor *all[3] = {dgx, dw, dh};
    for (int i = 0; i < 3; i++)
        if (ad__needs_grad(n, i)) gin[i] = all[i];
    return 0;
}

static int rnn_bw(ad_node *n, ad_tensor *G, ad_tensor **gin)
{
    if (ad_grad_enabled()) return rnn_bw_ops(n, G, gin);
    static const char *fn = "ad_rnn_recurrence (backward)";
    const rnn_params *p = ad__params(n);
    ad_tensor *gx = n->in[0], *w = n->in[1], *h0 = n->in[2], *y = n->out;
    ad_tape *tp = y->tape;
    ad_dtype dt = gx->dtype;
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    size_t es = dt == AD_FLOAT64 ? 8 : 4;
    ad_tensor *Gc = ad_is_contiguous(G) && ad__same_shape(G, y) ? G
                    : ad_contiguous(ad_expand(G, y->ndim, y->shape));
    ad_tensor *dp = ad__alloc(fn, tp, dt, 3, gx->shape);
    ad_tensor *dh = ad__alloc(fn, tp, dt, 2, h0->shape);
    if (!Gc || !dp || !dh) return -1;
    const char *pg = gru_data(Gc, es), *py = gru_data(y, es), *pw = gru_data(w, es);
    char *pd = gru_data(dp, es), *ph = gru_data(dh, es);
    int64_t BH = B * H * (int64_t)es;
    memset(ph, 0, (size_t)BH); /* nothing comes back through a step after the last */
    /* W^T (W read transposed) packed once for the T products */
    ad_gemm_packed pk;
    if (ad__gemm_pack_a(tp, dt, H, H, pw, 1, H, B, &pk)) return ad__err(fn, "out of memory");
    for (int64_t t = T - 1; t >= 0; t--) {
        const char *gt = pg + t * BH, *yt = py + t * BH;
        char *dpt = pd + t * BH;
        for (int64_t b = 0; b < B; b++) {
            int64_t r = b * H * (int64_t)es;
            if (dt == AD_FLOAT64)
                rnn_bw_row_f64(H, (const double *)(const void *)(yt + r),
                               (const double *)(const void *)(gt + r),
                               (const double *)(const void *)(ph + r), p->relu,
                               (double *)(void *)(dpt + r));
            else
                rnn_bw_row_f32(H, (const float *)(const void *)(yt + r),
                               (const float *)(const void *)(gt + r),
                               (const float *)(const void *)(ph + r), p->relu,
                               (float *)(void *)(dpt + r));
        }
        /* dh_t = dp_t W, as dh_t^T = W^T dp_t^T into dh's columns */
        if (ad__gemm_packed_or_plain(&pk, B, dpt, 1, H, ph, 1, H, false)) {
            ad__gemm_packed_release(&pk);
            return ad__err(fn, "out of memory");
        }
    }
    ad__gemm_packed_release(&pk);
    if (ad__needs_grad(n, 1)) {
        /* dW = sum_t dp_t^T h_t */
        if (!(gin[1] = ad__recurrence_dw(fn, tp, dt, T, B, H, H, pd, gru_data(h0, es), py)))
            return -1;
    }
    if (ad__needs_grad(n, 0)) gin[0] = dp;
    if (ad__needs_grad(n, 2)) gin[2] = dh;
    return 0;
}

static int rnn_fw(ad_node *n)
{
    const rnn_params *p = ad__params(n);
    return rnn_forward("ad_rnn_recurrence", n->in[0], n->in[1], n->in[2], p->relu, n->out);
}

static const ad_op OP_RNN_RECURRENCE = {
    .name = "rnn_recurrence",
    .formula = "per step h' = act(gx_t + h_t W^T), act tanh or relu; y = [h_1..h_T]; backward: "
               "dp = dh act' (1 - h'^2 or [h' > 0]), dh_t = dp W, dgx = dp, "
               "dW = sum_t dp_t^T h_t (one product)",
    .backward = rnn_bw,
    .forward = rnn_fw,
    .params_size = sizeof(rnn_params),
};

ad_tensor *ad_rnn_recurrence(ad_tensor *gx, ad_tensor *w, ad_tensor *h0, bool relu)
{
    static const char *fn = "ad_rnn_recurrence";
    if (ad__check_arg(fn, "gx", gx, true) || ad__check_arg(fn, "w_hh", w, true) ||
        ad__check_arg(fn, "h0", h0, true))
        return NULL;
    ad_dtype dt = gx->dtype;
    if (!ad__is_float(dt) || w->dtype != dt || h0->dtype != dt)
        return ad__errc(AD_ERR_DTYPE, fn, "gx, w_hh and h0 must share one floating dtype, got "
                        "%s, %s, %s", ad__desc(gx), ad__desc(w), ad__desc(h0)), NULL;
    bool ok = gx->ndim == 3 && w->ndim == 2 && h0->ndim == 2 && gx->shape[0] >= 1 &&
              h0->shape[0] == gx->shape[1] && w->shape[1] == h0->shape[1] &&
              w->shape[0] == h0->shape[1] && gx->shape[2] == w->shape[0];
    if (!ok)
        return ad__errc(AD_ERR_SHAPE, fn, "need gx [T, B, H] (T >= 1), w_hh [H, H] and h0 "
                        "[B, H], got %s, %s, %s", ad__shape_str(gx), ad__shape_str(w),
                        ad__shape_str(h0)), NULL;
    ad_tensor *in[3] = {gx, w, h0};
    for (int i = 0; i < 3; i++)
        if (!ad_is_contiguous(in[i]) && !(in[i] = ad_contiguous(in[i]))) return NULL;
    int64_t T = gx->shape[0], B = gx->shape[1], H = h0->shape[1];
    ad_tensor *y = ad__result(fn, 3, in, dt, 3, (int64_t[]){T, B, H});
    if (!y) return NULL;
    int rc = rnn_forward(fn, in[0], in[1], in[2], relu, y);
    return ad__finish(y, rc, &OP_RNN_RECURRENCE, 3, in, &(rnn_params){relu}, NULL);
}

const ad_op *const ad__ops_recurrence[] = {
    &OP_GRU_RECURRENCE,
    &OP_RNN_RECURRENCE,
    NULL,
};

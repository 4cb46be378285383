/* autodiff/ops_loss.c - fused softmax family and losses: kernel, rule and
 * formula side by side, one block per op, listed in ad__ops_loss at the end.
 *
 * Stability.  Everything here goes through log-sum-exp with the maximum
 * taken out first: for a line x, with m = max x,
 *     log sum_j e^(x_j) = m + log sum_j e^(x_j - m),
 * where every exponent is <= 0 (so nothing overflows) and the largest term
 * is exactly 1 (so the sum is in [1, n] and its log never sees 0).  Logits
 * of +-1000 are then as ordinary as logits of +-1.  Sums accumulate in
 * double whatever the dtype.
 *
 * Rules are written with the library's ops (softmax's own rule included),
 * so under AD_CREATE_GRAPH they are recorded and differentiate again. */
#include "internal.h"
#include "vmath.h"

/* The attention's causal softmax rows are also compiled in clones for
 * AVX2 and AVX-512 (below); nothing is contracted into fused
 * multiply-adds (GCC does not in ISO C, clang is told here), and the row
 * sums are in explicit lanes, so every clone gives the same bits. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#if defined(__GNUC__) || defined(__clang__)
#define SM_INLINE inline __attribute__((always_inline))
#else
#define SM_INLINE inline
#endif

static int check_reduction(const char *fn, ad_reduction r)
{
    if (r != AD_REDUCTION_MEAN && r != AD_REDUCTION_SUM && r != AD_REDUCTION_NONE)
        return ad__err(fn, "unknown reduction %d (use AD_REDUCTION_MEAN, _SUM or _NONE)",
                       (int)r);
    return 0;
}

#include "softmax_lines.inc"

/* y = softmax or log_softmax of x along axis ax (already normalised). */
static void softmax_kernel(const ad_tensor *x, ad_tensor *y, int ax, bool log)
{
    /* A 0-d tensor is one line of one element (softmax 1, log_softmax 0). */
    sm_ctx c = {x, y, 1, 0, 0, log};
    ad_tensor xv = *x, yv = *y;
    if (x->ndim > 0) {
        c.len = x->shape[ax];
        c.xs = x->strides[ax];
        c.ys = y->strides[ax];
        xv.shape[ax] = yv.shape[ax] = 1;
    }
    ad_iter it = {.ndim = x->ndim};
    memcpy(it.shape, xv.shape, sizeof it.shape);
    ad__iter_add(&it, &yv);
    ad__iter_add(&it, &xv);
    if (ad__numel(y->ndim, y->shape) > 0) ad__iter_run(&it, sm_row, &c);
}

/* Shared by softmax and log_softmax: checks, computes, records op with the
 * normalised axis. */
typedef struct softmax_params {
    int axis;
} softmax_params;

static ad_tensor *softmax_like(const char *fn, const ad_op *op, ad_tensor *x, int axis, bool log)
{
    int ax;
    if (ad__check_arg(fn, "x", x, true) || ad__axis(fn, axis, x->ndim, &ax)) return NULL;
    ad_tensor *y = ad__result(fn, 1, &x, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    softmax_kernel(x, y, ax, log);
    return ad__finish(y, 0, op, 1, &x, &(softmax_params){ax}, NULL);
}

/* ---- softmax ---------------------------------------------------------------
 * Jacobian dy_i/dx_j = y_i (delta_ij - y_j), so g^T J = y (g - sum(g y)):
 * one product and one keepdim sum, never the n x n Jacobian. */
static int softmax_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    int axis = ((const softmax_params *)ad__params(n))->axis;
    ad_tensor *y = n->out;
    ad_tensor *gy = ad_sum(ad_mul(g, y), &axis, 1, true);
    gin[0] = ad_mul(y, ad_sub(g, gy));
    return gin[0] ? 0 : -1;
}
static int softmax_fw(ad_node *n)
{
    softmax_kernel(n->in[0], n->out, ((const softmax_params *)ad__params(n))->axis, false);
    return 0;
}
static const ad_op OP_SOFTMAX = {
    .name = "softmax",
    .formula = "y = e^(x - max) / sum e^(x - max) along axis; "
               "dx = y (g - sum(g y))",
    .backward = softmax_bw,
    .forward = softmax_fw,
    .params_size = sizeof(softmax_params),
};
ad_tensor *ad_softmax(ad_tensor *x, int axis)
{
    return softmax_like("ad_softmax", &OP_SOFTMAX, x, axis, false);
}

/* ---- softmax_causal -----------------------------------------------------------
 * Row t of each [T, T] matrix has t + 1 entries that count; the rest of
 * the row is zero and is never read.  x is contiguous (the public function
 * copies a strided one). */
typedef struct causal_params {
    double scale;
} causal_params;

static SM_INLINE void causal_row_f32(const float *p, float *q, int64_t len, int64_t T,
                                     float scale)
{
    float m = max_f32(p, 1, len, scale);
    float buf[EXP_CHUNK];
    double s = 0.0;
    for (int64_t k = 0; k < len; k += EXP_CHUNK) {
        int64_t n = len - k < EXP_CHUNK ? len - k : EXP_CHUNK;
        for (int64_t i = 0; i < n; i++) buf[i] = p[k + i] * scale - m;
        ad__vexp_f32(buf, buf, n);
        s += sum_f32(buf, n);
        for (int64_t i = 0; i < n; i++) q[k + i] = buf[i];
    }
    double inv = 1.0 / s;
    for (int64_t k = 0; k < len; k++) q[k] = (float)(q[k] * inv);
    for (int64_t k = len; k < T; k++) q[k] = 0.0f;
}

static void causal_row_f64(const double *p, double *q, int64_t len, int64_t T, double scale)
{
    double m = -INFINITY, s = 0.0;
    for (int64_t k = 0; k < len; k++) {
        double v = p[k] * scale;
        if (v > m || isnan(v)) m = v;
    }
    for (int64_t k = 0; k < len; k++) s += q[k] = exp(p[k] * scale - m);
    double inv = 1.0 / s;
    for (int64_t k = 0; k < len; k++) q[k] *= inv;
    for (int64_t k = len; k < T; k++) q[k] = 0.0;
}

static void causal_kernel(const ad_tensor *x, ad_tensor *y, double scale)
{
    int64_t T = x->shape[x->ndim - 1], rows = ad__numel(x->ndim, x->shape) / (T ? T : 1);
    for (int64_t r = 0; T && r < rows; r++) {
        int64_t len = r % T + 1;
        if (x->dtype == AD_FLOAT32)
            causal_row_f32((const float *)x->storage->data + x->offset + r * T,
                           (float *)y->storage->data + y->offset + r * T, len, T, (float)scale);
        else
            causal_row_f64((const double *)x->storage->data + x->offset + r * T,
                           (double *)y->storage->data + y->offset + r * T, len, T, scale);
    }
}

/* The same on one contiguous T x T matrix, in place (ops_attention.c). */
static SM_INLINE void causal_matrix(ad_dtype dt, void *x, int64_t T, double scale)
{
    for (int64_t r = 0; r < T; r++) {
        if (dt == AD_FLOAT32)
            causal_row_f32((float *)x + r * T, (float *)x + r * T, r + 1, T, (float)scale);
        else
            causal_row_f64((double *)x + r * T, (double *)x + r * T, r + 1, T, scale);
    }
}

/* One row of the rule below: d = scale y (g - sum_(k < len) g y), zero
 * past len; d may be g. */
static SM_INLINE void causal_bw_row(ad_dtype dt, const void *yv, const void *gv, void *dv,
                                    int64_t len, int64_t T, double scale)
{
    double s = 0.0;
    if (dt == AD_FLOAT32) {
        const float *gp = gv, *yp = yv;
        float *d = dv;
        s = dot_f32(gp, yp, len);
        float sf = (float)s, sc = (float)scale;
        for (int64_t k = 0; k < len; k++) d[k] = sc * yp[k] * (gp[k] - sf);
        for (int64_t k = len; k < T; k++) d[k] = 0.0f;
    } else {
        const double *gp = gv, *yp = yv;
        double *d = dv;
        for (int64_t k = 0; k < len; k++) s += gp[k] * yp[k];
        for (int64_t k = 0; k < len; k++) d[k] = scale * yp[k] * (gp[k] - s);
        for (int64_t k = len; k < T; k++) d[k] = 0.0;
    }
}

static SM_INLINE void causal_matrix_bw(ad_dtype dt, const void *y, void *g, int64_t T,
                                       double scale)
{
    size_t es = ad_dtype_size(dt);
    for (int64_t r = 0; r < T; r++)
        causal_bw_row(dt, (const char *)y + r * T * (int64_t)es, (char *)g + r * T * (int64_t)es,
                      (char *)g + r * T * (int64_t)es, r + 1, T, scale);
}

/* The attention's per-head matrices, through the clones: with SSE2 alone
 * the double row sums took 2 lanes per instruction. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static void causal_matrix_avx2(ad_dtype dt, void *x, int64_t T,
                                                              double scale)
{
    causal_matrix(dt, x, T, scale);
}
__attribute__((target("avx512f"))) static void causal_matrix_avx512(ad_dtype dt, void *x,
                                                                   int64_t T, double scale)
{
    causal_matrix(dt, x, T, scale);
}
__attribute__((target("avx2"))) static void causal_matrix_bw_avx2(ad_dtype dt, const void *y,
                                                                 void *g, int64_t T, double scale)
{
    causal_matrix_bw(dt, y, g, T, scale);
}
__attribute__((target("avx512f"))) static void causal_matrix_bw_avx512(ad_dtype dt, const void *y,
                                                                      void *g, int64_t T,
                                                                      double scale)
{
    causal_matrix_bw(dt, y, g, T, scale);
}

void ad__softmax_causal_matrix(ad_dtype dt, void *x, int64_t T, double scale)
{
    if (AD_CPU_AVX512()) causal_matrix_avx512(dt, x, T, scale);
    else if (AD_CPU_AVX2()) causal_matrix_avx2(dt, x, T, scale);
    else causal_matrix(dt, x, T, scale);
}

void ad__softmax_causal_matrix_bw(ad_dtype dt, const void *y, void *g, int64_t T, double scale)
{
    if (AD_CPU_AVX512()) causal_matrix_bw_avx512(dt, y, g, T, scale);
    else if (AD_CPU_AVX2()) causal_matrix_bw_avx2(dt, y, g, T, scale);
    else causal_matrix_bw(dt, y, g, T, scale);
}
#else
void ad__softmax_causal_matrix(ad_dtype dt, void *x, int64_t T, double scale)
{
    causal_matrix(dt, x, T, scale);
}

void ad__softmax_causal_matrix_bw(ad_dtype dt, const void *y, void *g, int64_t T, double scale)
{
    causal_matrix_bw(dt, y, g, T, scale);
}
#endif

/* dx = scale y (g - sum(g y)): with ops under create-graph, else one pass
 * per row (g contiguous). */
static int causal_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const causal_params *p = ad__params(n);
    ad_tensor *y = n->out;
    int axis = y->ndim - 1;
    if (ad_grad_enabled() || !ad_is_contiguous(g) || !ad__same_shape(g, y) ||
        g->dtype != y->dtype) {
        ad_tensor *gy = ad_sum(ad_mul(g, y), &axis, 1, true);
        gin[0] = ad_mul_scalar(ad_mul(y, ad_sub(g, gy)), p->scale);
        return gin[0] ? 0 : -1;
    }
    ad_tensor *dx = ad__alloc("ad_softmax_causal (backward)", y->tape, y->dtype, y->ndim, y->shape);
    if (!dx) return -1;
    int64_t T = y->shape[axis], rows = ad__numel(y->ndim, y->shape) / (T ? T : 1);
    size_t es = ad_dtype_size(y->dtype);
    for (int64_t r = 0; T && r < rows; r++) {
        int64_t o = r * T;
        causal_bw_row(y->dtype, (const char *)y->storage->data + (y->offset + o) * (int64_t)es,
                      (const char *)g->storage->data + (g->offset + o) * (int64_t)es,
                      (char *)dx->storage->data + o * (int64_t)es, r % T + 1, T, p->scale);
    }
    gin[0] = dx;
    return 0;
}
static int causal_fw(ad_node *n)
{
    causal_kernel(n->in[0], n->out, ((const causal_params *)ad__params(n))->scale);
    return 0;
}
static const ad_op OP_SOFTMAX_CAUSAL = {
    .name = "softmax_causal",
    .formula = "y = softmax(scale x + M) along the last axis, M_ts = -inf for s > t; "
               "dx = scale y (g - sum(g y))",
    .backward = causal_bw,
    .forward = causal_fw,
    .params_size = sizeof(causal_params),
};
ad_tensor *ad_softmax_causal(ad_tensor *x, double scale)
{
    static const char *fn = "ad_softmax_causal";
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    if (x->ndim < 2 || x->shape[x->ndim - 1] != x->shape[x->ndim - 2])
        return ad__errc(AD_ERR_SHAPE, fn, "x must be [..., T, T], got %s", ad__shape_str(x)), NULL;
    if (!isfinite(scale)) return ad__err(fn, "scale must be finite, got %g", scale), NULL;
    ad_tensor *xc = ad_is_contiguous(x) ? x : ad_contiguous(x);
    if (!xc) return NULL;
    ad_tensor *y = ad__result(fn, 1, &xc, xc->dtype, xc->ndim, xc->shape);
    if (!y) return NULL;
    causal_kernel(xc, y, scale);
    return ad__finish(y, 0, &OP_SOFTMAX_CAUSAL, 1, &xc, &(causal_params){scale}, NULL);
}

/* ---- log_softmax -------------------------------------------------------------
 * dy_i/dx_j = delta_ij - softmax_j, so dx = g - softmax sum(g), and
 * softmax = e^y is recovered from the output rather than recomputed. */
static int log_softmax_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    int axis = ((const softmax_params *)ad__params(n))->axis;
    ad_tensor *p = ad_exp(n->out);
    gin[0] = ad_sub(g, ad_mul(p, ad_sum(g, &axis, 1, true)));
    return gin[0] ? 0 : -1;
}
static int log_softmax_fw(ad_node *n)
{
    softmax_kernel(n->in[0], n->out, ((const softmax_params *)ad__params(n))->axis, true);
    return 0;
}
static const ad_op OP_LOG_SOFTMAX = {
    .name = "log_softmax",
    .formula = "y = x - logsumexp(x) along axis; "
               "dx = g - e^y sum(g)",
    .backward = log_softmax_bw,
    .forward = log_softmax_fw,
    .params_size = sizeof(softmax_params),
};
ad_tensor *ad_log_softmax(ad_tensor *x, int axis)
{
    return softmax_like("ad_log_softmax", &OP_LOG_SOFTMAX, x, axis, true);
}

/* ---- cross_entropy -------------------------------------------------------------
 * With target t = (1 - eps) onehot(label) + eps/C (sum_c t_c = 1),
 *     l = -sum_c t_c log softmax(x)_c = sum_c t_c (lse - x_c)
 *       = log s + sum_c t_c (m - x_c),      lse = m + log s,
 * which subtracts only numbers of the same magnitude: no cancellation of
 * two large values when the logits are large.  dl/dx = softmax(x) - t.
 * The node keeps ce_params. */
static inline int64_t label_at(const ad_tensor *labels, int64_t i)
{
    return ((const int64_t *)labels->storage->data)[labels->offset + i * labels->strides[0]];
}

static int check_labels(const char *fn, const ad_tensor *labels, int64_t C)
{
    for (int64_t i = 0; i < labels->shape[0]; i++) {
        int64_t k = label_at(labels, i);
        if (k < 0 || k >= C)
            return ad__err(fn, "label %lld at position %lld is out of range for %lld classes",
                           (long long)k, (long long)i, (long long)C);
    }
    return 0;
}

/* out = the losses ([N] for none) or their sum or mean ([]). */
static void ce_kernel(const ad_tensor *x, const ad_tensor *labels, ad_reduction red, double eps,
                      ad_tensor *out)
{
    int64_t N = x->shape[0], C = x->shape[1], s0 = x->strides[0], s1 = x->strides[1];
    double total = 0.0, w = C ? eps / (double)C : 0.0;
    double ms[GROUP_ROWS], ss[GROUP_ROWS], rs[GROUP_ROWS];
    bool f32 = x->dtype == AD_FLOAT32;
    for (int64_t i = 0; i < N; i++) {
        int64_t off = x->offset + i * s0, j = i % GROUP_ROWS;
        double m, s, rest;
        if (f32 && j == 0) /* the statistics of the next GROUP_ROWS rows */
            AD_PICK_CLONE(ce_stats)((const float *)x->storage->data + off, s0, s1,
                                    N - i < GROUP_ROWS ? N - i : GROUP_ROWS, C, ms, ss, rs);
        if (f32) m = ms[j], s = ss[j], rest = rs[j];
        else line_stats_f64((const double *)x->storage->data + off, s1, C, &m, &s, &rest);
        double l = (isnan(rest) ? log(s) : log1p(rest)) +
                   (1.0 - eps) * (m - ad__ld(x, off + label_at(labels, i) * s1));
        if (eps > 0.0) {
            double spread = 0.0;
            for (int64_t c = 0; c < C; c++) spread += m - ad__ld(x, off + c * s1);
            l += w * spread;
        }
        if (red == AD_REDUCTION_NONE) ad__st(out, i, l);
        total += l;
    }
    /* The mean of an empty batch is NaN, as in PyTorch. */
    if (red != AD_REDUCTION_NONE)
        ad__st(out, 0, red == AD_REDUCTION_SUM ? total : N ? total / (double)N : NAN);
}

typedef struct ce_params {
    ad_reduction reduction;
    bool smoothed;     /* called as ad_cross_entropy_ls (names replay's errors) */
    double eps;        /* label smoothing */
    ad_tensor *labels; /* the rule's copy of the labels, on the tape */
} ce_params;

/* d = (softmax - t) w over float32 rows of C, t = hi at the label, lo
 * elsewhere: the row with lo first and the label's element again from its
 * saved value, so that the loop has no condition in it and vectorises
 * (with the label tested per element it went element by element, up to
 * 40 % of a 1,000-wide cross-entropy's forward and backward). */
static SM_INLINE void ce_grad_rows(float *d, const ad_tensor *labels, int64_t N, int64_t C,
                                   float wf, float lf, float hf)
{
    for (int64_t i = 0; i < N; i++) {
        float *row = d + i * C;
        int64_t lab = label_at(labels, i);
        float at = row[lab];
        for (int64_t k = 0; k < C; k++) row[k] = (row[k] - lf) * wf;
        row[lab] = (at - hf) * wf;
    }
}
/* ... compiled as the line kernels are (softmax_lines.inc, SM_CLONES). */
#define CE_GRAD_CLONE(sfx, attr)                                                             \
    static attr void ce_grad_rows_##sfx(float *d, const ad_tensor *labels, int64_t N,       \
                                        int64_t C, float wf, float lf, float hf)            \
    {                                                                                        \
        ce_grad_rows(d, labels, N, C, wf, lf, hf);                                           \
    }
CE_GRAD_CLONE(any, )
#if AD_X86_CLONES
CE_GRAD_CLONE(avx2, __attribute__((target("avx2"))))
CE_GRAD_CLONE(avx512, __attribute__((target("avx512f"))))
#endif

/* The rule of a pass that records nothing, for a sum or a mean (one
 * weight, g [] or g/N, for every element): the softmax written into the
 * result, then (softmax - t) w in place, element by element - the
 * arithmetic of the composed rule below, each step rounded to the dtype
 * as its ops round it, so the same bits, in two passes over [N, C] instead
 * of five and without the target matrix. */
static int ce_bw_direct(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const ce_params *p = ad__params(n);
    ad_tensor *x = n->in[0], *labels = p->labels;
    int64_t N = x->shape[0], C = x->shape[1];
    /* dx first: the backward pass keeps a result made first where it is */
    ad_tensor *dx = ad__alloc("ad_cross_entropy (backward)", n->out->tape, x->dtype, 2, x->shape);
    ad_tensor *w = !dx                                        ? NULL
                   : p->reduction == AD_REDUCTION_MEAN && N > 0 ? ad_mul_scalar(g, 1.0 / (double)N)
                                                              : g;
    if (!w) return -1;
    softmax_kernel(x, dx, 1, false);
    double wv = ad__ld(w, w->offset), lo = C ? p->eps / (double)C : 0.0;
    double hi = 1.0 - p->eps + p->eps / (double)C;
    if (x->dtype == AD_FLOAT32) {
        AD_PICK_CLONE(ce_grad_rows)(dx->storage->data, labels, N, C, (float)wv, (float)lo,
                                    (float)hi);
    } else {
        double *d = dx->storage->data;
        for (int64_t i = 0; i < N; i++) {
            double *row = d + i * C;
            int64_t lab = label_at(labels, i);
            for (int64_t k = 0; k < C; k++) row[k] = (row[k] - (k == lab ? hi : lo)) * wv;
        }
    }
    gin[0] = dx;
    return 0;
}

static int ce_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    if (!ad__needs_grad(n, 0)) return 0;
    const ce_params *p = ad__params(n);
    ad_tensor *x = n->in[0], *labels = p->labels;
    int64_t N = x->shape[0], C = x->shape[1];
    double eps = p->eps;
    if (!ad_grad_enabled() && p->reduction != AD_REDUCTION_NONE && ad_is_contiguous(x))
        return ce_bw_direct(n, g, gin);
    /* The smoothed one-hot target: a constant, made here rather than in
     * the forward so that a forward without backward does not pay for it.
     * The labels are the forward's copy, already range-checked. */
    ad_tensor *t = ad_full(n->out->tape, x->dtype, 2, x->shape, C ? eps / (double)C : 0.0);
    if (!t) return -1;
    for (int64_t i = 0; i < N; i++)
        ad__st(t, i * C + label_at(labels, i), 1.0 - eps + eps / (double)C);
    ad_tensor *d = ad_sub(ad_softmax(x, 1), t);
    /* g is [] for sum and mean (broadcast over everything) and [N] for none
     * (one weight per row, so [N, 1]). */
    ad_tensor *gg = g;
    switch (p->reduction) {
    case AD_REDUCTION_NONE: gg = ad_reshape(g, 2, (int64_t[]){N, 1}); break;
    case AD_REDUCTION_MEAN: gg = N > 0 ? ad_mul_scalar(g, 1.0 / (double)N) : g; break;
    case AD_REDUCTION_SUM: break;
    }
    gin[0] = ad_mul(d, gg);
    return gin[0] ? 0 : -1;
}
/* Replay: the labels are an input like any other and may have changed, so
 * they are checked again and the rule's copy refreshed. */
static int ce_fw(ad_node *n)
{
    const ce_params *p = ad__params(n);
    ad_tensor *x = n->in[0], *labels = n->in[1];
    if (check_labels(p->smoothed ? "ad_cross_entropy_ls" : "ad_cross_entropy", labels, x->shape[1]))
        return -1;
    ce_kernel(x, labels, p->reduction, p->eps, n->out);
    if (p->labels && ad__copy_into(p->labels, labels)) return -1;
    return 0;
}
static const ad_op OP_CROSS_ENTROPY = {
    .name = "cross_entropy",
    .formula = "l_n = logsumexp(x_n) - sum_c t_nc x_nc, "
               "t = (1-eps) onehot(label_n) + eps/C, reduced; "
               "dx_n = g (softmax(x_n) - t_n) (/ N for mean)",
    .backward = ce_bw,
    .forward = ce_fw,
    .params_size = sizeof(ce_params),
};

static ad_tensor *cross_entropy(const char *fn, ad_tensor *logits, ad_tensor *labels,
                                ad_reduction reduction, double eps)
{
    if (ad__check_arg(fn, "logits", logits, true) || ad__check_arg(fn, "labels", labels, false) ||
        check_reduction(fn, reduction))
        return NULL;
    if (logits->ndim != 2)
        return ad__err(fn, "logits must be 2-D [N, C], got %s", ad__shape_str(logits)), NULL;
    int64_t N = logits->shape[0];
    if (labels->dtype != AD_INT64)
        return ad__err(fn, "labels must be int64, got %s", ad_dtype_name(labels->dtype)), NULL;
    if (labels->ndim != 1 || labels->shape[0] != N)
        return ad__err(fn, "labels %s do not match logits %s: need [%lld]",
                       ad__shape_str(labels), ad__shape_str(logits), (long long)N), NULL;
    if (!(eps >= 0.0 && eps <= 1.0))
        return ad__err(fn, "label smoothing %g is not in [0, 1]", eps), NULL;
    if (check_labels(fn, labels, logits->shape[1])) return NULL;
    ad_tensor *in[2] = {logits, labels};
    ad_tensor *out = ad__result(fn, 2, in, logits->dtype, reduction == AD_REDUCTION_NONE, &N);
    if (!out) return NULL;
    ce_kernel(logits, labels, reduction, eps, out);
    ad_node *n;
    out = ad__finish(out, 0, &OP_CROSS_ENTROPY, 2, in, NULL, &n);
    if (n) {
        ce_params *p = ad__params(n);
        p->reduction = reduction;
        p->smoothed = !strcmp(fn, "ad_cross_entropy_ls");
        p->eps = eps;
        /* The rule needs the labels as they are now, not as the caller may
         * overwrite them before backward. */
        p->labels = ad__copy(out->tape, labels);
        if (!p->labels) return NULL;
    }
    return out;
}

ad_tensor *ad_cross_entropy_ls(ad_tensor *logits, ad_tensor *labels, ad_reduction reduction,
                               double smoothing)
{
    return cross_entropy("ad_cross_entropy_ls", logits, labels, reduction, smoothing);
}

ad_tensor *ad_cross_entropy(ad_tensor *logits, ad_tensor *labels, ad_reduction reduction)
{
    return cross_entropy("ad_cross_entropy", logits, labels, reduction, 0.0);
}

/* ---- mse_loss --------------------------------------------------------------------
 * d/da (a - b)^2 = 2 (a - b) = -d/db.  The node keeps the reduction. */
typedef struct mse_params {
    ad_reduction reduction;
} mse_params;

typedef struct mse_ctx {
    const ad_tensor *a, *b;
    double sum;
} mse_ctx;

#define MSE_ROW(T)                                                               \
    {                                                                            \
        const T *x = (const T *)c->a->storage->data + off[0];                    \
        const T *y = (const T *)c->b->storage->data + off[1];                    \
        for (int64_t i = 0; i < len; i++) {                                      \
            double d = (double)x[i * step[0]] - (double)y[i * step[1]];          \
            s += d * d;                                                          \
        }                                                                        \
    }

static void mse_row(int64_t len, const int64_t *off, const int64_t *step, void *vctx)
{
    mse_ctx *c = vctx;
    double s = 0.0;
    if (c->a->dtype == AD_FLOAT32) MSE_ROW(float)
    else MSE_ROW(double)
    c->sum += s;
}

static void mse_kernel(const ad_tensor *a, const ad_tensor *b, ad_reduction red, ad_tensor *out)
{
    if (red == AD_REDUCTION_NONE) {
        ad__sqdiff_into(out, a, b);
        return;
    }
    mse_ctx c = {a, b, 0.0};
    ad_iter it = {.ndim = a->ndim};
    memcpy(it.shape, a->shape, sizeof it.shape);
    ad__iter_add(&it, a);
    ad__iter_add(&it, b);
    ad__iter_run(&it, mse_row, &c);
    /* An empty mean is NaN, as in PyTorch. */
    int64_t N = ad__numel(a->ndim, a->shape);
    ad__st(out, 0, red == AD_REDUCTION_SUM ? c.sum : N ? c.sum / (double)N : NAN);
}

static int mse_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *a = n->in[0], *b = n->in[1];
    int64_t N = ad__numel(a->ndim, a->shape);
    const mse_params *p = ad__params(n);
    double k = p->reduction == AD_REDUCTION_MEAN && N > 0 ? 2.0 / (double)N : 2.0;
    /* g is [] for sum and mean, a's shape for none: ad_mul broadcasts both. */
    ad_tensor *da = ad_mul(ad_sub(a, b), ad_mul_scalar(g, k));
    if (!da) return -1;
    if (ad__needs_grad(n, 0)) gin[0] = da;
    if (ad__needs_grad(n, 1) && !(gin[1] = ad_neg(da))) return -1;
    return 0;
}
static int mse_fw(ad_node *n)
{
    mse_kernel(n->in[0], n->in[1], ((const mse_params *)ad__params(n))->reduction, n->out);
    return 0;
}
static const ad_op OP_MSE_LOSS = {
    .name = "mse_loss",
    .formula = "y = (a - b)^2 reduced; "
               "da = 2 g (a - b) (/ N for mean), db = -da",
    .backward = mse_bw,
    .forward = mse_fw,
    .params_size = sizeof(mse_params),
};
ad_tensor *ad_mse_loss(ad_tensor *a, ad_tensor *b, ad_reduction reduction)
{
    static const char *fn = "ad_mse_loss";
    if (ad__check_arg(fn, "a", a, true) || ad__check_arg(fn, "b", b, true) ||
        ad__check_same_dtype(fn, a, b) || check_reduction(fn, reduction))
        return NULL;
    if (!ad__same_shape(a, b)) {
        return ad__err(fn, "shapes differ: %s vs %s (mse_loss does not broadcast)",
                       ad__shape_str(a), ad__shape_str(b)), NULL;
    }
    ad_tensor *in[2] = {a, b};
    bool none = reduction == AD_REDUCTION_NONE;
    ad_tensor *out = ad__result(fn, 2, in, a->dtype, none ? a->ndim : 0, a->shape);
    if (!out) return NULL;
    mse_kernel(a, b, reduction, out);
    return ad__finish(out, 0, &OP_MSE_LOSS, 2, in, &(mse_params){reduction}, NULL);
}

const ad_op *const ad__ops_loss[] = {
    &OP_SOFTMAX, &OP_SOFTMAX_CAUSAL, &OP_LOG_SOFTMAX, &OP_CROSS_ENTROPY, &OP_MSE_LOSS, NULL,
};

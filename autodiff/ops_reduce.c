/* autodiff/ops_reduce.c - reductions: kernel, rule and formula side by side.
 *
 * Every reduction folds x into one double accumulator per result element,
 * whatever the dtype, so a float32 sum of a million elements keeps
 * float32's precision in its result.  The accumulators are laid out like
 * the result with keepdim; the node keeps that keepdim shape in its
 * reduce_params, which is all a rule needs to send g back over x: reshape g to it, and let
 * broadcasting (or ad_expand) spread it over the reduced dimensions. */
#include "internal.h"
#include "stream.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

int ad__reduce_plan(const char *fn, const ad_tensor *x, const int *axes, int naxes,
                    bool keepdim, ad_reduce_plan *p)
{
    memset(p, 0, sizeof *p);
    /* A 0-d tensor accepts axis 0 or -1, as in PyTorch, and reduces nothing. */
    if (naxes < 0 || naxes > (x->ndim ? x->ndim : 1))
        return ad__err(fn, "naxes %d out of range for a %d-dimensional tensor", naxes, x->ndim);
    if (naxes > 0 && !axes) return ad__err(fn, "axes is NULL with naxes %d", naxes);
    for (int i = 0; i < naxes; i++) {
        int a;
        if (ad__axis(fn, axes[i], x->ndim, &a)) return -1;
        if (x->ndim == 0) continue; /* axis 0 / -1 of a 0-d tensor: nothing to remove */
        if (p->reduced[a]) return ad__err(fn, "axis %d repeated", axes[i]);
        p->reduced[a] = true;
    }
    if (naxes == 0)
        for (int d = 0; d < x->ndim; d++) p->reduced[d] = true;
    p->count = 1;
    for (int d = 0; d < x->ndim; d++) {
        p->keep_shape[d] = p->reduced[d] ? 1 : x->shape[d];
        if (p->reduced[d]) p->count *= x->shape[d];
        if (!p->reduced[d] || keepdim) p->shape[p->ndim++] = p->keep_shape[d];
    }
    return 0;
}

/* ---- folding -------------------------------------------------------------------
 * The shifted kinds read a second array laid out like acc (the per-result max for
 * logsumexp, the mean for var). */
enum { FOLD_SUM, FOLD_MAX, FOLD_MIN, FOLD_SUMEXP, FOLD_SUMSQ };

typedef struct {
    const ad_tensor *x;
    double *acc;
    const double *shift;
    int kind;
} fold_ctx;

/* The partial sums of a row (fold_kernels.inc): 16 doubles are 8 SSE2,
 * 4 AVX2 or 2 AVX-512 registers, enough independent additions to cover
 * the latency of each. */
#define FOLD_LANES 16
#define FOLD_AHEAD 1024
#define FOLD_SPLIT 8
/* The lines of a stream read at each visit when several are read side by
 * side (fold_sum_split; FOLD_ROWS_DEPTH for fold_rows) rather than one.
 * Over 2^24 floats on an AMD EPYC (Zen 5), GB/s: sum 20-24 with one line
 * a visit, 18-34 with 2, 45-51 with 4 in about half the processes and
 * 22-25 in the others (AVX2 30-43), 29-45 with 8; the sums of 4096 rows
 * of 4096, 8 rows side by side, 15-18 with one, 25-27 with 4, 28-30 with
 * 8, 27-35 with 16.  In L2 the sum computes faster too (33-56 -> 60-62).
 * Not for max and min (fold_extreme_split): there the loop over the lines
 * of a visit computed slower in L2 (61-101 -> 43-45 GB/s). */
#define FOLD_DEPTH 4
#define FOLD_ROWS_DEPTH 8
#define FOLD_SPLIT_MIN ((int64_t)1 << 16)

/* The lanes' total, pairwise in a fixed order. */
static inline double lanes_total(double *p)
{
    for (int w = FOLD_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) p[j] += p[j + w];
    return p[0];
}

/* fold_row_f32 and fold_row_f64, by x's dtype, always inlined into
 * fold_row (so into each of its clones, below). */
#if defined(__GNUC__) || defined(__clang__)
#define FOLD_INLINE inline __attribute__((always_inline))
#else
#define FOLD_INLINE inline
#endif
#define KERNEL_FILE "fold_kernels.inc"
#include "per_dtype.inc"

/* The fold loops compiled for the baseline target and, with target
 * attributes, for AVX2 and AVX-512; fold runs the CPU's best.  Each adds
 * the same numbers in the same order (the lanes are explicit, and nothing
 * is fused: GCC does not contract in ISO C, clang is told above), so the
 * result does not depend on the CPU. */
static FOLD_INLINE void fold_body(int64_t len, const int64_t *off, const int64_t *step, void *vctx)
{
    const fold_ctx *c = vctx;
    if (c->x->dtype == AD_FLOAT32) fold_row_f32(c, len, off, step);
    else fold_row_f64(c, len, off, step);
}

static void fold_row_any(int64_t len, const int64_t *off, const int64_t *step, void *vctx)
{
    fold_body(len, off, step, vctx);
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static void fold_row_avx2(int64_t len, const int64_t *off,
                                                         const int64_t *step, void *vctx)
{
    fold_body(len, off, step, vctx);
}

__attribute__((target("avx512f"))) static void fold_row_avx512(int64_t len, const int64_t *off,
                                                              const int64_t *step, void *vctx)
{
    fold_body(len, off, step, vctx);
}

static ad_iter_row fold_row(void)
{
    return AD_CPU_AVX512() ? fold_row_avx512
           : AD_CPU_AVX2()  ? fold_row_avx2
                                             : fold_row_any;
}
#else
static ad_iter_row fold_row(void) { return fold_row_any; }
#endif

/* A sum over the leading dimensions of a contiguous x, viewed as m x n (a
 * bias gradient: G summed over the batch), by fold_cols; or, with rows,
 * over its last dimension, by fold_rows; in each variant. */
static FOLD_INLINE void mn_body(const ad_tensor *x, double *acc, int64_t m, int64_t n, bool rows)
{
    if (x->dtype == AD_FLOAT32) {
        const float *xs = (const float *)x->storage->data + x->offset;
        if (rows) fold_rows_f32(acc, xs, m, n);
        else fold_cols_f32(acc, xs, m, n);
    } else {
        const double *xs = (const double *)x->storage->data + x->offset;
        if (rows) fold_rows_f64(acc, xs, m, n);
        else fold_cols_f64(acc, xs, m, n);
    }
}

static void mn_any(const ad_tensor *x, double *acc, int64_t m, int64_t n, bool rows)
{
    mn_body(x, acc, m, n, rows);
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx2"))) static void mn_avx2(const ad_tensor *x, double *acc, int64_t m,
                                                   int64_t n, bool rows)
{
    mn_body(x, acc, m, n, rows);
}

__attribute__((target("avx512f"))) static void mn_avx512(const ad_tensor *x, double *acc,
                                                        int64_t m, int64_t n, bool rows)
{
    mn_body(x, acc, m, n, rows);
}

static void fold_mn(const ad_tensor *x, double *acc, int64_t m, int64_t n, bool rows)
{
    if (AD_CPU_AVX512()) mn_avx512(x, acc, m, n, rows);
    else if (AD_CPU_AVX2()) mn_avx2(x, acc, m, n, rows);
    else mn_any(x, acc, m, n, rows);
}
#else
static void fold_mn(const ad_tensor *x, double *acc, int64_t m, int64_t n, bool rows)
{
    mn_any(x, acc, m, n, rows);
}
#endif

static bool rows_off; /* test hook (ad__reduce_testing_rows) */
void ad__reduce_testing_rows(bool enabled) { rows_off = !enabled; }

/* For a sum: whether x is contiguous, at least 8 x 1024 and reduced over
 * exactly its last dimension, shorter than FOLD_SPLIT_MIN (fold_rows), and
 * then its view as m x n. */
static bool trailing_sum(const ad_tensor *x, const int64_t *keep_shape, int64_t *m, int64_t *n)
{
    if (rows_off || x->ndim < 2 || keep_shape[x->ndim - 1] != 1) return false;
    int64_t st[AD_MAX_DIMS];
    ad__contig_strides(x->ndim, x->shape, st);
    *m = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] != 1 && x->strides[d] != st[d]) return false;
        if (d < x->ndim - 1) {
            if (keep_shape[d] != x->shape[d]) return false;
            *m *= x->shape[d];
        }
    }
    *n = x->shape[x->ndim - 1];
    return *m >= 8 && *n >= 1024 && *n < FOLD_SPLIT_MIN;
}

/* For a sum: whether x is contiguous and reduced over exactly its leading
 * dimensions (those before some p, with the rest kept), and then its view
 * as m x n. */
static bool leading_sum(const ad_tensor *x, const int64_t *keep_shape, int64_t *m, int64_t *n)
{
    int64_t st[AD_MAX_DIMS];
    ad__contig_strides(x->ndim, x->shape, st);
    int p = 0;
    while (p < x->ndim && keep_shape[p] == 1) p++;
    *m = 1, *n = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] != 1 && x->strides[d] != st[d]) return false;
        if (d >= p && keep_shape[d] != x->shape[d]) return false;
        *(d < p ? m : n) *= x->shape[d];
    }
    return p > 0 && p < x->ndim && *m > 1;
}

static void fold(const ad_tensor *x, const int64_t *keep_shape, double *acc, const double *shift,
                 int kind)
{
    /* The accumulator is viewed with the keepdim shape; the iterator turns
     * its extent-1 dimensions into stride 0, so every element of x lands on
     * its result. */
    ad_storage st = {.data = acc, .in_arena = true};
    ad_tensor acc_t = {.dtype = AD_FLOAT64, .ndim = x->ndim, .storage = &st};
    memcpy(acc_t.shape, keep_shape, (size_t)x->ndim * sizeof *keep_shape);
    ad__contig_strides(x->ndim, acc_t.shape, acc_t.strides);
    int64_t m, n;
    if (kind == FOLD_SUM && leading_sum(x, keep_shape, &m, &n)) {
        fold_mn(x, acc, m, n, false);
        return;
    }
    if (kind == FOLD_SUM && trailing_sum(x, keep_shape, &m, &n)) {
        fold_mn(x, acc, m, n, true);
        return;
    }
    ad_iter it = {.ndim = x->ndim};
    memcpy(it.shape, x->shape, sizeof it.shape);
    ad__iter_add(&it, &acc_t);
    ad__iter_add(&it, x);
    fold_ctx c = {x, acc, shift, kind};
    ad__iter_run(&it, fold_row(), &c);
}

/* ---- shared machinery ----------------------------------------------------------
 * One function computes every reduction, from x, the keepdim shape and the
 * element count N, into a preallocated result: the public functions call it
 * once, and each op's forward (ad_tape_replay) again from what the node
 * stores, the same parameters for every reduction. */
enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_LOGSUMEXP, R_VAR };

typedef struct reduce_params {
    int64_t keep_shape[AD_MAX_DIMS]; /* the result's shape with keepdim (x's ndim) */
    double count;                    /* N, the elements folded into each result */
    double correction;               /* var's: divides by N - correction */
} reduce_params;

static int compute(const char *fn, int kind, const ad_tensor *x, const int64_t *keep_shape,
                   double count, double correction, ad_tensor *out)
{
    int64_t n = ad__numel(out->ndim, out->shape);
    /* A float64 result is its own accumulator; logsumexp and var also need
     * a shift per result.  Scratch comes from the result's arena when it has
     * one, so a training loop or a replay that resets its tape allocates
     * nothing here. */
    bool direct = out->dtype == AD_FLOAT64, two = kind == R_LOGSUMEXP || kind == R_VAR;
    int64_t ns = (direct ? 0 : n) + (two ? n : 0);
    size_t bytes = (size_t)(ns ? ns : 1) * sizeof(double);
    double *scratch = out->tape ? ad__arena_alloc(out->tape, bytes) : ad__malloc(bytes);
    if (!scratch) return ad__err(fn, "out of memory");
    double *acc = direct ? (double *)out->storage->data + out->offset : scratch;
    double *shift = direct ? scratch : scratch + n;
    double init = kind == R_MAX || kind == R_LOGSUMEXP ? -INFINITY
                  : kind == R_MIN                      ? INFINITY
                                                       : 0.0;
    for (int64_t i = 0; i < n; i++) acc[i] = init;
    switch (kind) {
    case R_MAX: fold(x, keep_shape, acc, NULL, FOLD_MAX); break;
    case R_MIN: fold(x, keep_shape, acc, NULL, FOLD_MIN); break;
    case R_LOGSUMEXP:
        /* y = m + log sum_i e^(x_i - m) with m = max_i x_i: every exponent is
         * <= 0, so nothing overflows, and the largest term is exactly 1, so
         * the log never sees 0.  When m is infinite the shift is 0 instead:
         * all -inf then sums to 0 and gives -inf (not -inf - -inf = NaN), and
         * a +inf gives +inf. */
        fold(x, keep_shape, acc, NULL, FOLD_MAX);
        for (int64_t i = 0; i < n; i++) {
            shift[i] = isfinite(acc[i]) ? acc[i] : 0.0;
            acc[i] = 0.0;
        }
        fold(x, keep_shape, acc, shift, FOLD_SUMEXP);
        for (int64_t i = 0; i < n; i++) acc[i] = shift[i] + log(acc[i]);
        break;
    case R_VAR: {
        /* Two passes, the mean first and then sum (x - mean)^2, both in
         * double: the one-pass sum x^2 - N mean^2 cancels catastrophically
         * when the spread is small against the mean. */
        double d = count - correction;
        fold(x, keep_shape, acc, NULL, FOLD_SUM);
        for (int64_t i = 0; i < n; i++) {
            shift[i] = acc[i] / count;
            acc[i] = 0.0;
        }
        fold(x, keep_shape, acc, shift, FOLD_SUMSQ);
        for (int64_t i = 0; i < n; i++) acc[i] = d > 0 ? acc[i] / d : NAN;
        break;
    }
    default:
        fold(x, keep_shape, acc, NULL, FOLD_SUM);
        /* mean: N = 0 gives 0/0 = NaN, as PyTorch's mean of nothing. */
        if (kind == R_MEAN)
            for (int64_t i = 0; i < n; i++) acc[i] /= count;
        break;
    }
    if (!direct) { /* out is a new contiguous float32 tensor */
        float *o = (float *)out->storage->data + out->offset;
        for (int64_t i = 0; i < n; i++) o[i] = (float)acc[i];
    }
    if (!out->tape) ad__free(scratch);
    return 0;
}

/* Allocates the result, computes it and records op with its parameters. */
static ad_tensor *reduction(const char *fn, const ad_op *op, int kind, ad_tensor *x,
                            const ad_reduce_plan *p, int correction)
{
    ad_tensor *out = ad__result(fn, 1, &x, x->dtype, p->ndim, p->shape);
    if (!out) return NULL;
    reduce_params q = {.count = (double)p->count, .correction = correction};
    memcpy(q.keep_shape, p->keep_shape, sizeof q.keep_shape);
    int failed = compute(fn, kind, x, p->keep_shape, (double)p->count, correction, out);
    return ad__finish(out, failed, op, 1, &x, &q, NULL);
}

/* The forward for replay: the same computation from the node. */
static int replay(ad_node *n, int kind)
{
    const reduce_params *p = ad__params(n);
    return compute(n->op->name, kind, n->in[0], p->keep_shape, p->count, p->correction, n->out)
               ? -1
               : 0;
}

/* Validates x and the axes into a plan. */
static int begin(const char *fn, ad_tensor *x, const int *axes, int naxes, bool keepdim,
                 ad_reduce_plan *p)
{
    return ad__check_arg(fn, "x", x, true) || ad__reduce_plan(fn, x, axes, naxes, keepdim, p)
               ? -1
               : 0;
}

/* max, min and logsumexp have no value over zero elements. */
static int nonempty(const char *fn, const ad_tensor *x, const ad_reduce_plan *p)
{
    if (p->count > 0) return 0;
    return ad__err(fn, "empty reduction: a reduced dimension of %s has extent 0",
                   ad__shape_str(x));
}

/* g (the result's shape) with the reduced dimensions put back as extent 1,
 * ready to broadcast against x. */
static ad_tensor *keep(ad_node *n, ad_tensor *g)
{
    const reduce_params *p = ad__params(n);
    return ad_reshape(g, n->in[0]->ndim, p->keep_shape);
}

/* The adjoint of "sum over some axes": g copied along them. */
static ad_tensor *spread(ad_node *n, ad_tensor *g)
{
    ad_tensor *x = n->in[0];
    return ad_expand(keep(n, g), x->ndim, x->shape);
}

/* ---- sum ----------------------------------------------------------------- */
static int sum_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = spread(n, g);
    return 0;
}
static int sum_fw(ad_node *n) { return replay(n, R_SUM); }
static const ad_op OP_SUM = {
    .name = "sum",
    .formula = "y = sum_i x_i; dx = expand(g)",
    .backward = sum_bw,
    .forward = sum_fw,
    .params_size = sizeof(reduce_params),
};
ad_tensor *ad_sum(ad_tensor *x, const int *axes, int naxes, bool keepdim)
{
    ad_reduce_plan p;
    if (begin("ad_sum", x, axes, naxes, keepdim, &p)) return NULL;
    return reduction("ad_sum", &OP_SUM, R_SUM, x, &p, 0);
}

/* ---- mean ------------------------------------------------------------------ */
static int mean_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const reduce_params *p = ad__params(n);
    gin[0] = ad_mul_scalar(spread(n, g), 1.0 / p->count);
    return 0;
}
static int mean_fw(ad_node *n) { return replay(n, R_MEAN); }
static const ad_op OP_MEAN = {
    .name = "mean",
    .formula = "y = (1/N) sum_i x_i; dx = expand(g) / N",
    .backward = mean_bw,
    .forward = mean_fw,
    .params_size = sizeof(reduce_params),
};
ad_tensor *ad_mean(ad_tensor *x, const int *axes, int naxes, bool keepdim)
{
    ad_reduce_plan p;
    if (begin("ad_mean", x, axes, naxes, keepdim, &p)) return NULL;
    return reduction("ad_mean", &OP_MEAN, R_MEAN, x, &p, 0);
}

/* ---- max / min ------------------------------------------------------------------
 * The result is differentiable in whichever elements attain it.  With ties
 * the gradient is shared equally (g / count to each tied element), which is
 * the average of the one-sided choices and keeps the rule symmetric.  The
 * mask is a comparison, so not recorded: its derivative is zero almost
 * everywhere, which is the truth; the rule stays linear in g, so second
 * derivatives through it are right. */
static int extreme_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const reduce_params *p = ad__params(n);
    ad_tensor *x = n->in[0];
    ad_tensor *mask = ad_eq(x, ad_reshape(n->out, x->ndim, p->keep_shape));
    ad_tensor *ties = ad_sum_to(mask, x->ndim, p->keep_shape);
    gin[0] = ad_mul(mask, ad_div(keep(n, g), ties));
    return 0;
}
static int max_fw(ad_node *n) { return replay(n, R_MAX); }
static int min_fw(ad_node *n) { return replay(n, R_MIN); }
static const ad_op OP_MAX = {
    .name = "max",
    .formula = "y = max_i x_i; dx = g [x == y] / #{x == y}",
    .backward = extreme_bw,
    .forward = max_fw,
    .params_size = sizeof(reduce_params),
};
static const ad_op OP_MIN = {
    .name = "min",
    .formula = "y = min_i x_i; dx = g [x == y] / #{x == y}",
    .backward = extreme_bw,
    .forward = min_fw,
    .params_size = sizeof(reduce_params),
};
ad_tensor *ad_max(ad_tensor *x, const int *axes, int naxes, bool keepdim)
{
    ad_reduce_plan p;
    if (begin("ad_max", x, axes, naxes, keepdim, &p) || nonempty("ad_max", x, &p)) return NULL;
    return reduction("ad_max", &OP_MAX, R_MAX, x, &p, 0);
}
ad_tensor *ad_min(ad_tensor *x, const int *axes, int naxes, bool keepdim)
{
    ad_reduce_plan p;
    if (begin("ad_min", x, axes, naxes, keepdim, &p) || nonempty("ad_min", x, &p)) return NULL;
    return reduction("ad_min", &OP_MIN, R_MIN, x, &p, 0);
}

/* The short forms (ops_reduce.h): the same ops, with their own names in
 * messages. */
ad_tensor *ad_sum_all(ad_tensor *x)
{
    ad_reduce_plan p;
    if (begin("ad_sum_all", x, NULL, 0, false, &p)) return NULL;
    return reduction("ad_sum_all", &OP_SUM, R_SUM, x, &p, 0);
}
ad_tensor *ad_mean_all(ad_tensor *x)
{
    ad_reduce_plan p;
    if (begin("ad_mean_all", x, NULL, 0, false, &p)) return NULL;
    return reduction("ad_mean_all", &OP_MEAN, R_MEAN, x, &p, 0);
}
ad_tensor *ad_max_all(ad_tensor *x)
{
    ad_reduce_plan p;
    if (begin("ad_max_all", x, NULL, 0, false, &p) || nonempty("ad_max_all", x, &p)) return NULL;
    return reduction("ad_max_all", &OP_MAX, R_MAX, x, &p, 0);
}
ad_tensor *ad_min_all(ad_tensor *x)
{
    ad_reduce_plan p;
    if (begin("ad_min_all", x, NULL, 0, false, &p) || nonempty("ad_min_all", x, &p)) return NULL;
    return reduction("ad_min_all", &OP_MIN, R_MIN, x, &p, 0);
}
ad_tensor *ad_sum_dim(ad_tensor *x, int axis, bool keepdim)
{
    ad_reduce_plan p;
    if (begin("ad_sum_dim", x, &axis, 1, keepdim, &p)) return NULL;
    return reduction("ad_sum_dim", &OP_SUM, R_SUM, x, &p, 0);
}
ad_tensor *ad_mean_dim(ad_tensor *x, int axis, bool keepdim)
{
    ad_reduce_plan p;
    if (begin("ad_mean_dim", x, &axis, 1, keepdim, &p)) return NULL;
    return reduction("ad_mean_dim", &OP_MEAN, R_MEAN, x, &p, 0);
}

/* ---- logsumexp ------------------------------------------------------------------ */
static int logsumexp_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    /* dy/dx_i = e^(x_i - y) = softmax(x)_i, computed from the output so the
     * rule is itself differentiable (through y's own node).  But y is the
     * log-sum-exp rounded to the dtype, off by up to |y| eps, so e^(x - y)
     * is softmax times a factor e^(lse - y) common to the whole line: 1e-5
     * off in float32 at |x| = 1000.  Dividing by the line's sum removes the
     * factor; the ratio is softmax(x) whatever y is, so its derivatives
     * (AD_CREATE_GRAPH) are right too. */
    const reduce_params *p = ad__params(n);
    ad_tensor *x = n->in[0];
    ad_tensor *e = ad_exp(ad_sub(x, ad_reshape(n->out, x->ndim, p->keep_shape)));
    /* A line with a +inf: y = inf, and e is NaN there (inf - inf) and 0
     * elsewhere, as the formula says; its sum, NaN, would spread the NaN to
     * the whole line, so such a line is not divided. */
    ad_tensor *s = ad_sum_to(e, x->ndim, p->keep_shape);
    ad_tensor *sm = ad_where(ad_eq(s, s), ad_div(e, s), e);
    gin[0] = ad_mul(keep(n, g), sm);
    return 0;
}
static int logsumexp_fw(ad_node *n) { return replay(n, R_LOGSUMEXP); }
static const ad_op OP_LOGSUMEXP = {
    .name = "logsumexp",
    .formula = "y = log sum_i e^(x_i); dx = g e^(x - y)",
    .backward = logsumexp_bw,
    .forward = logsumexp_fw,
    .params_size = sizeof(reduce_params),
};
ad_tensor *ad_logsumexp(ad_tensor *x, const int *axes, int naxes, bool keepdim)
{
    static const char *fn = "ad_logsumexp";
    ad_reduce_plan p;
    if (begin(fn, x, axes, naxes, keepdim, &p) || nonempty(fn, x, &p)) return NULL;
    return reduction(fn, &OP_LOGSUMEXP, R_LOGSUMEXP, x, &p, 0);
}

/* ---- var ---------------------------------------------------------------------- */
static int var_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    /* dy/dx_i = 2 (x_i - mean) / (N - c); the sum of (x_j - mean) is 0, so the
     * mean's own dependence on x_i drops out of the first derivative.  The
     * mean is recomputed here with ops (not taken from the forward) so that
     * the second derivative sees it depend on x. */
    const reduce_params *p = ad__params(n);
    ad_tensor *x = n->in[0];
    double N = p->count, d = N - p->correction;
    ad_tensor *mean = ad_mul_scalar(ad_sum_to(x, x->ndim, p->keep_shape), 1.0 / N);
    ad_tensor *dev = ad_mul(keep(n, g), ad_sub(x, mean));
    gin[0] = ad_mul_scalar(dev, d > 0 ? 2.0 / d : NAN);
    return 0;
}
static int var_fw(ad_node *n) { return replay(n, R_VAR); }
static const ad_op OP_VAR = {
    .name = "var",
    .formula = "y = sum_i (x_i - mean)^2 / (N - c); dx = 2 g (x - mean) / (N - c)",
    .backward = var_bw,
    .forward = var_fw,
    .params_size = sizeof(reduce_params),
};
ad_tensor *ad_var(ad_tensor *x, const int *axes, int naxes, int correction, bool keepdim)
{
    ad_reduce_plan p;
    if (begin("ad_var", x, axes, naxes, keepdim, &p)) return NULL;
    return reduction("ad_var", &OP_VAR, R_VAR, x, &p, correction);
}

/* ---- sum_to ------------------------------------------------------------------ */
static int sum_to_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_expand(g, n->in[0]->ndim, n->in[0]->shape);
    return 0;
}
static int sum_to_fw(ad_node *n) { return replay(n, R_SUM); }
static const ad_op OP_SUM_TO = {
    .name = "sum_to",
    .formula = "y = x summed down to a broadcastable shape; dx = expand(g)",
    .backward = sum_to_bw,
    .forward = sum_to_fw,
    .params_size = sizeof(reduce_params),
};
/* Whether x already has the shape (sum_to's identity). */
static bool sum_to_same(const ad_tensor *x, int ndim, const int64_t *shape)
{
    if (x->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (shape[d] != x->shape[d]) return false;
    return true;
}
ad_tensor *ad_sum_to(ad_tensor *x, int ndim, const int64_t *shape)
{
    static const char *fn = "ad_sum_to";
    if (ad__check_arg(fn, "x", x, true) || ad__check_shape(fn, ndim, shape, NULL)) return NULL;
    int lead = x->ndim - ndim;
    bool ok = lead >= 0;
    ad_reduce_plan p;
    memset(&p, 0, sizeof p);
    p.count = 1;
    for (int d = 0; ok && d < x->ndim; d++) {
        int td = d - lead;
        bool red = td < 0 || (shape[td] == 1 && x->shape[d] != 1);
        if (td >= 0 && !red && shape[td] != x->shape[d]) ok = false;
        p.reduced[d] = red;
        p.keep_shape[d] = red ? 1 : x->shape[d];
        if (red) p.count *= x->shape[d];
    }
    if (!ok) {
        ad__err(fn, "shape %s cannot be summed to %s", ad__shape_str(x), ad__dims_str(ndim, shape));
        return NULL;
    }
    /* nothing to sum: a view of x, a tensor of its own for the caller to
     * free (x itself was freed twice by a caller that freed both) */
    if (sum_to_same(x, ndim, shape)) return ad_expand(x, ndim, shape);
    p.ndim = ndim;
    for (int d = 0; d < ndim; d++) p.shape[d] = shape[d];
    return reduction(fn, &OP_SUM_TO, R_SUM, x, &p, 0);
}
ad_tensor *ad__sum_to(ad_tensor *x, int ndim, const int64_t *shape)
{
    return x && shape && sum_to_same(x, ndim, shape) ? x : ad_sum_to(x, ndim, shape);
}

const ad_op *const ad__ops_reduce[] = {
    &OP_SUM, &OP_MEAN, &OP_MAX, &OP_MIN, &OP_LOGSUMEXP, &OP_VAR, &OP_SUM_TO, NULL,
};

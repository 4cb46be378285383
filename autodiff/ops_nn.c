/* autodiff/ops_nn.c - neural-network ops: kernel, rule and formula side by side.
 *
 * Two real ops live here, unfold (im2col) and fold (col2im).  They are
 * linear and each other's adjoint, so each one's rule is the other and
 * derivatives of every order stay within the pair.  A third, max_pool2d,
 * finds where each pooling window's first maximum is and takes it; its
 * rule scatters g to those indices (scatter_add_zeros of ops_index.c).
 * (Dropout's mask is an op of ops_random.c.)  Everything
 * else a network layer needs is composed from public ops: a convolution is
 * unfold then one (batched) matmul (or the direct op of ops_conv.c),
 * an average pool is a mean over the kernel axis of unfold's result (the
 * embedding and the normalisations are in ops_norm.c).  The
 * compositions are differentiable to any order by construction and replay
 * like any recorded computation; the cost is some intermediates, which for
 * a convolution (the columns) is what im2col implementations keep anyway.
 *
 * The two kernels are the hot loops of a CNN, so they are written per
 * dtype with the window arithmetic hoisted: for each kernel tap (i, j) the
 * range of window columns ow that read inside the input is computed once,
 * the rest is padding.  Planes (n, c) are independent and are split among
 * OpenMP threads when the library is built with it. */
#include <limits.h>

#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* Parallel over the loop that follows when it moves enough data to pay
 * for waking the threads; `work` must be in scope. */
#ifdef _OPENMP
#define PARALLEL_FOR \
    _Pragma("omp parallel for schedule(static) if (work >= 65536) num_threads(ad__max_threads())")
#else
#define PARALLEL_FOR
#endif

/* ---- window geometry ----------------------------------------------------------
 * Index 0 is the height, 1 the width.  `in` is the image extent (unfold's
 * input, fold's output), `out` the number of window positions.  It is the
 * parameter struct of unfold and fold (and within max_pool2d's). */
typedef struct win2d {
    int64_t k[2], s[2], p[2], d[2];
    int64_t in[2], out[2];
} win2d;

/* Validates the parameters; stride, padding, dilation may be NULL. */
static int win_params(const char *fn, const int kernel[2], const int stride[2],
                      const int padding[2], const int dilation[2], win2d *w)
{
    memset(w, 0, sizeof *w);
    if (!kernel) return ad__err(fn, "kernel is NULL");
    for (int a = 0; a < 2; a++) {
        w->k[a] = kernel[a];
        w->s[a] = stride ? stride[a] : 1;
        w->p[a] = padding ? padding[a] : 0;
        w->d[a] = dilation ? dilation[a] : 1;
    }
    const char *bad = w->k[0] < 1 || w->k[1] < 1   ? "kernel"
                      : w->s[0] < 1 || w->s[1] < 1 ? "stride"
                      : w->p[0] < 0 || w->p[1] < 0 ? "padding"
                      : w->d[0] < 1 || w->d[1] < 1 ? "dilation"
                                                   : NULL;
    if (!bad) return 0;
    const int64_t *v = bad[0] == 'k' ? w->k : bad[0] == 's' ? w->s : bad[0] == 'p' ? w->p : w->d;
    return ad__err(fn, "%s %lldx%lld: %s", bad, (long long)v[0], (long long)v[1],
                   bad[0] == 'p' ? "must be >= 0" : "must be >= 1");
}

/* Sets the image extent and computes the window count; error when the
 * dilated kernel does not fit in the padded image.  `what` describes the
 * image for the message ("x [1,1,2,2]"). */
static int win_fit(const char *fn, win2d *w, int64_t h, int64_t wd, const char *what)
{
    w->in[0] = h;
    w->in[1] = wd;
    int64_t span[2], padded[2];
    for (int a = 0; a < 2; a++) {
        span[a] = w->d[a] * (w->k[a] - 1) + 1;
        padded[a] = w->in[a] + 2 * w->p[a];
    }
    if (span[0] > padded[0] || span[1] > padded[1])
        return ad__err(fn, "kernel %lldx%lld (dilation %lldx%lld, so %lldx%lld input positions) "
                           "does not fit in the padded input %lldx%lld: %s, padding %lldx%lld",
                       (long long)w->k[0], (long long)w->k[1], (long long)w->d[0],
                       (long long)w->d[1], (long long)span[0], (long long)span[1],
                       (long long)padded[0], (long long)padded[1], what, (long long)w->p[0],
                       (long long)w->p[1]);
    for (int a = 0; a < 2; a++) w->out[a] = (padded[a] - span[a]) / w->s[a] + 1;
    /* Each count is below 2^33 (int parameters), but their product, the
     * number of windows L, can overflow int64: refuse it here, before any
     * caller multiplies. */
    if (w->out[0] > INT64_MAX / w->out[1])
        return ad__err(fn, "%lldx%lld window positions are too many: %s, padding %lldx%lld",
                       (long long)w->out[0], (long long)w->out[1], what, (long long)w->p[0],
                       (long long)w->p[1]);
    return 0;
}

/* "x [1,2,5,5]" for messages. */
static void describe(const char *name, const ad_tensor *t, char *buf, size_t size)
{
    snprintf(buf, size, "%s %s", name, ad__shape_str(t));
}

/* Window columns ow in [lo, hi) of one row read inside the image: with
 * tap offset dx = j d - p, position ow s + dx must lie in [0, extent). */
static void span_of(int64_t dx, int64_t s, int64_t extent, int64_t nout, int64_t *lo,
                    int64_t *hi)
{
    int64_t l = dx >= 0 ? 0 : (-dx + s - 1) / s;
    int64_t h = extent - 1 - dx < 0 ? 0 : (extent - 1 - dx) / s + 1;
    if (l > nout) l = nout;
    if (h > nout) h = nout;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* ---- kernels ---------------------------------------------------------------------
 * unfold writes every element of its contiguous [N, C kh kw, L] result once
 * (padding as zeros).  fold accumulates each (n, c) plane in double, then
 * stores it: straight into the result for float64, through a per-thread
 * plane of scratch for float32. */
#define DEFINE_UNFOLD(NAME, T)                                                           \
    static void NAME(const ad_tensor *x, ad_tensor *out, const win2d *w)                 \
    {                                                                                    \
        const int64_t C = x->shape[1], planes = x->shape[0] * C;                         \
        const int64_t H = w->in[0], W = w->in[1], Ho = w->out[0], Wo = w->out[1];        \
        const int64_t L = Ho * Wo, kh = w->k[0], kw = w->k[1], sw = w->s[1];             \
        const int64_t sN = x->strides[0], sC = x->strides[1];                            \
        const int64_t sH = x->strides[2], sW = x->strides[3];                            \
        const T *xd = (const T *)x->storage->data + x->offset;                           \
        T *od = out->storage->data;                                                      \
        const int64_t work = planes * kh * kw * L;                                       \
        (void)work;                                                                      \
        PARALLEL_FOR                                                                     \
        for (int64_t pl = 0; pl < planes; pl++) {                                        \
            const T *xp = xd + (pl / C) * sN + (pl % C) * sC;                            \
            T *op = od + pl * kh * kw * L;                                               \
            for (int64_t i = 0; i < kh; i++)                                             \
                for (int64_t j = 0; j < kw; j++) {                                       \
                    T *row = op + (i * kw + j) * L;                                      \
                    int64_t dx = j * w->d[1] - w->p[1], lo, hi;                          \
                    span_of(dx, sw, W, Wo, &lo, &hi);                                    \
                    for (int64_t oh = 0; oh < Ho; oh++) {                                \
                        T *r = row + oh * Wo;                                            \
                        int64_t ih = oh * w->s[0] - w->p[0] + i * w->d[0];               \
                        if (ih < 0 || ih >= H) {                                         \
                            memset(r, 0, (size_t)Wo * sizeof(T));                        \
                            continue;                                                    \
                        }                                                                \
                        const T *src = xp + ih * sH;                                     \
                        for (int64_t ow = 0; ow < lo; ow++) r[ow] = 0;                   \
                        if (sw == 1 && sW == 1) {                                        \
                            if (hi > lo)                                                 \
                                memcpy(r + lo, src + lo + dx, (size_t)(hi - lo) * sizeof(T)); \
                        } else                                                           \
                            for (int64_t ow = lo; ow < hi; ow++)                         \
                                r[ow] = src[(ow * sw + dx) * sW];                        \
                        for (int64_t ow = hi; ow < Wo; ow++) r[ow] = 0;                  \
                    }                                                                    \
                }                                                                        \
        }                                                                                \
    }
DEFINE_UNFOLD(unfold_f32, float)
DEFINE_UNFOLD(unfold_f64, double)

#ifdef _OPENMP
#define THREAD_ID omp_get_thread_num()
#define MAX_THREADS ad__max_threads()
#else
#define THREAD_ID 0
#define MAX_THREADS 1
#endif

#define DEFINE_FOLD(NAME, T)                                                             \
    static void NAME(const ad_tensor *cols, ad_tensor *out, const win2d *w, double *scratch) \
    {                                                                                    \
        const int64_t C = out->shape[1], planes = out->shape[0] * C;                     \
        const int64_t H = w->in[0], W = w->in[1], HW = H * W, Wo = w->out[1];            \
        const int64_t kh = w->k[0], kw = w->k[1], sw = w->s[1];                          \
        const int64_t s0 = cols->strides[0], s1 = cols->strides[1], s2 = cols->strides[2]; \
        const T *cd = (const T *)cols->storage->data + cols->offset;                     \
        T *od = out->storage->data;                                                      \
        const bool direct = sizeof(T) == sizeof(double);                                 \
        const int64_t work = planes * kh * kw * w->out[0] * Wo;                          \
        (void)work;                                                                      \
        PARALLEL_FOR                                                                     \
        for (int64_t pl = 0; pl < planes; pl++) {                                        \
            double *acc = direct ? (double *)(void *)(od + pl * HW)                      \
                                 : scratch + (int64_t)THREAD_ID * HW;                    \
            memset(acc, 0, (size_t)HW * sizeof(double));                                 \
            const T *cp = cd + (pl / C) * s0 + (pl % C) * kh * kw * s1;                  \
            for (int64_t i = 0; i < kh; i++)                                             \
                for (int64_t j = 0; j < kw; j++) {                                       \
                    const T *crow = cp + (i * kw + j) * s1;                              \
                    int64_t dx = j * w->d[1] - w->p[1], lo, hi;                          \
                    span_of(dx, sw, W, Wo, &lo, &hi);                                    \
                    for (int64_t oh = 0; oh < w->out[0]; oh++) {                         \
                        int64_t ih = oh * w->s[0] - w->p[0] + i * w->d[0];               \
                        if (ih < 0 || ih >= H) continue;                                 \
                        double *a = acc + ih * W;                                        \
                        const T *src = crow + oh * Wo * s2;                              \
                        if (sw == 1 && s2 == 1)                                          \
                            for (int64_t ow = lo; ow < hi; ow++) a[ow + dx] += src[ow];  \
                        else                                                             \
                            for (int64_t ow = lo; ow < hi; ow++)                         \
                                a[ow * sw + dx] += src[ow * s2];                         \
                    }                                                                    \
                }                                                                        \
            if (!direct) {                                                               \
                T *o = od + pl * HW;                                                     \
                for (int64_t k = 0; k < HW; k++) o[k] = (T)acc[k];                       \
            }                                                                            \
        }                                                                                \
    }
DEFINE_FOLD(fold_f32, float)
DEFINE_FOLD(fold_f64, double)

static void unfold_run(const ad_tensor *x, ad_tensor *out, const win2d *w)
{
    if (x->dtype == AD_FLOAT64) unfold_f64(x, out, w);
    else unfold_f32(x, out, w);
}

static int fold_run(const char *fn, const ad_tensor *cols, ad_tensor *out, const win2d *w)
{
    if (cols->dtype == AD_FLOAT64) {
        fold_f64(cols, out, w, NULL);
        return 0;
    }
    /* One double plane per thread, from the result's arena when it has one
     * so a training loop that resets its tape stops allocating. */
    int64_t plane = w->in[0] * w->in[1];
    size_t bytes = (size_t)MAX_THREADS * (size_t)(plane > 0 ? plane : 1) * sizeof(double);
    double *scratch = out->tape ? ad__arena_alloc(out->tape, bytes) : ad__malloc(bytes);
    if (!scratch) return ad__err(fn, "out of memory");
    fold_f32(cols, out, w, scratch);
    if (!out->tape) ad__free(scratch);
    return 0;
}

/* The public ops from a window, for the rules (which must use public ops). */
static ad_tensor *unfold_w(ad_tensor *x, const win2d *w)
{
    int k[2] = {(int)w->k[0], (int)w->k[1]}, s[2] = {(int)w->s[0], (int)w->s[1]};
    int p[2] = {(int)w->p[0], (int)w->p[1]}, d[2] = {(int)w->d[0], (int)w->d[1]};
    return ad_unfold(x, k, s, p, d);
}
static ad_tensor *fold_w(ad_tensor *cols, const win2d *w)
{
    int k[2] = {(int)w->k[0], (int)w->k[1]}, s[2] = {(int)w->s[0], (int)w->s[1]};
    int p[2] = {(int)w->p[0], (int)w->p[1]}, d[2] = {(int)w->d[0], (int)w->d[1]};
    return ad_fold(cols, (int[]){(int)w->in[0], (int)w->in[1]}, k, s, p, d);
}

/* ---- unfold ------------------------------------------------------------------------ */
static int unfold_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const win2d *w = ad__params(n);
    gin[0] = fold_w(g, w);
    return 0;
}
static int unfold_fw(ad_node *n)
{
    const win2d *w = ad__params(n);
    unfold_run(n->in[0], n->out, w);
    return 0;
}
static const ad_op OP_UNFOLD = {
    .name = "unfold",
    .formula = "y[n, (c kh + i) kw + j, oh Wo + ow] = x[n, c, oh sh - ph + i dh, "
               "ow sw - pw + j dw] (0 in the padding); dx = fold(g)",
    .backward = unfold_bw,
    .forward = unfold_fw,
    .params_size = sizeof(win2d),
};
ad_tensor *ad_unfold(ad_tensor *x, const int kernel[2], const int stride[2],
                     const int padding[2], const int dilation[2])
{
    static const char *fn = "ad_unfold";
    char what[200];
    win2d w;
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    describe("x", x, what, sizeof what);
    if (x->ndim != 4) return ad__err(fn, "expected a 4-D input [N, C, H, W], got %s", what), NULL;
    if (win_params(fn, kernel, stride, padding, dilation, &w) ||
        win_fit(fn, &w, x->shape[2], x->shape[3], what))
        return NULL;
    int64_t kk = w.k[0] * w.k[1];
    if (x->shape[1] > 0 && kk > INT64_MAX / x->shape[1])
        return ad__err(fn, "C kh kw overflows: %s with kernel %lldx%lld", what,
                       (long long)w.k[0], (long long)w.k[1]), NULL;
    int64_t shape[3] = {x->shape[0], x->shape[1] * kk, w.out[0] * w.out[1]};
    ad_tensor *out = ad__result(fn, 1, &x, x->dtype, 3, shape);
    if (!out) return NULL;
    unfold_run(x, out, &w);
    return ad__finish(out, 0, &OP_UNFOLD, 1, &x, &w, NULL);
}

/* ---- fold ---------------------------------------------------------------------------- */
static int fold_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const win2d *w = ad__params(n);
    gin[0] = unfold_w(g, w);
    return 0;
}
static int fold_fw(ad_node *n)
{
    const win2d *w = ad__params(n);
    return fold_run(n->op->name, n->in[0], n->out, w);
}
static const ad_op OP_FOLD = {
    .name = "fold",
    .formula = "y[n, c, h, w] = sum of cols[n, (c kh + i) kw + j, l] over the "
               "windows l and taps (i, j) that unfold reads (h, w) from; "
               "dcols = unfold(g)",
    .backward = fold_bw,
    .forward = fold_fw,
    .params_size = sizeof(win2d),
};
ad_tensor *ad_fold(ad_tensor *cols, const int output_size[2], const int kernel[2],
                   const int stride[2], const int padding[2], const int dilation[2])
{
    static const char *fn = "ad_fold";
    char what[200], out_what[64];
    win2d w;
    if (ad__check_arg(fn, "cols", cols, true)) return NULL;
    describe("cols", cols, what, sizeof what);
    if (cols->ndim != 3)
        return ad__err(fn, "expected a 3-D input [N, C kh kw, L], got %s", what), NULL;
    if (!output_size) return ad__err(fn, "output_size is NULL"), NULL;
    if (output_size[0] < 1 || output_size[1] < 1)
        return ad__err(fn, "output_size %dx%d: must be >= 1", output_size[0], output_size[1]),
               NULL;
    snprintf(out_what, sizeof out_what, "output_size %dx%d", output_size[0], output_size[1]);
    if (win_params(fn, kernel, stride, padding, dilation, &w) ||
        win_fit(fn, &w, output_size[0], output_size[1], out_what))
        return NULL;
    int64_t kk = w.k[0] * w.k[1], L = w.out[0] * w.out[1];
    if (cols->shape[1] % kk != 0)
        return ad__err(fn, "dimension 1 of %s is not a multiple of the %lldx%lld = %lld kernel "
                           "taps", what, (long long)w.k[0], (long long)w.k[1], (long long)kk),
               NULL;
    if (cols->shape[2] != L)
        return ad__err(fn, "%s has %lld columns, but %s with kernel %lldx%lld, stride %lldx%lld, "
                           "padding %lldx%lld, dilation %lldx%lld has %lldx%lld = %lld windows",
                       what, (long long)cols->shape[2], out_what, (long long)w.k[0],
                       (long long)w.k[1], (long long)w.s[0], (long long)w.s[1],
                       (long long)w.p[0], (long long)w.p[1], (long long)w.d[0],
                       (long long)w.d[1], (long long)w.out[0], (long long)w.out[1], (long long)L),
               NULL;
    int64_t shape[4] = {cols->shape[0], cols->shape[1] / kk, w.in[0], w.in[1]};
    ad_tensor *out = ad__result(fn, 1, &cols, cols->dtype, 4, shape);
    if (!out) return NULL;
    return ad__finish(out, fold_run(fn, cols, out, &w), &OP_FOLD, 1, &cols, &w, NULL);
}

/* ---- compositions -------------------------------------------------------------------
 * The ops below are built out of other ops inside an ad_scope (tape.h),
 * which puts their intermediates on the inputs' tape, or on a scratch tape
 * freed before they return when no tape is involved. */

/* ---- conv2d ------------------------------------------------------------------------------ */

/* conv2d, and with relu max(conv2d, 0) (ad_conv2d_relu): fn names the
 * public function in errors. */
static ad_tensor *conv2d(const char *fn, ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                         const ad_conv2d_params *p, bool relu)
{
    bool has_bias;
    if (ad__check_arg(fn, "x", x, true) || ad__check_like(fn, "w", w, x) ||
        ad__check_opt(fn, "bias", bias, true, &has_bias) ||
        (has_bias && ad__check_like(fn, "bias", bias, x)))
        return NULL;
    char xs[200], ws[200], both[420];
    describe("x", x, xs, sizeof xs);
    describe("w", w, ws, sizeof ws);
    snprintf(both, sizeof both, "%s, %s", xs, ws);
    if (x->ndim != 4) return ad__err(fn, "x must be 4-D [N, C, H, W], got %s", xs), NULL;
    if (w->ndim != 4)
        return ad__err(fn, "w must be 4-D [O, C/groups, kh, kw], got %s", ws), NULL;
    ad_conv2d_params q = p ? *p : (ad_conv2d_params)AD_CONV2D_DEFAULTS;
    if (q.groups < 0) return ad__err(fn, "groups %d: must be >= 1", q.groups), NULL;
    for (int a = 0; a < 2; a++) {
        if (q.stride[a] < 0 || q.padding[a] < 0 || q.dilation[a] < 0)
            return ad__err(fn, "stride %dx%d, padding %dx%d, dilation %dx%d: must not be "
                               "negative", q.stride[0], q.stride[1], q.padding[0], q.padding[1],
                           q.dilation[0], q.dilation[1]), NULL;
        if (q.stride[a] == 0) q.stride[a] = 1;
        if (q.dilation[a] == 0) q.dilation[a] = 1;
    }
    int64_t G = q.groups ? q.groups : 1, C = x->shape[1], O = w->shape[0];
    if (C % G != 0)
        return ad__err(fn, "groups %lld does not divide the %lld input channels: %s",
                       (long long)G, (long long)C, both), NULL;
    if (O % G != 0)
        return ad__err(fn, "groups %lld does not divide the %lld output channels: %s",
                       (long long)G, (long long)O, both), NULL;
    if (w->shape[1] * G != C)
        return ad__err(fn, "input has %lld channels but weight expects %lld (groups %lld): %s",
                       (long long)C, (long long)(w->shape[1] * G), (long long)G, both), NULL;
    if (bias && (bias->ndim != 1 || bias->shape[0] != O)) {
        return ad__err(fn, "bias must be [%lld] (the output channels of %s), got %s",
                       (long long)O, ws, ad__shape_str(bias)), NULL;
    }
    if (w->shape[2] > INT_MAX || w->shape[3] > INT_MAX)
        return ad__err(fn, "kernel too large: %s", ws), NULL;
    int kernel[2] = {(int)w->shape[2], (int)w->shape[3]};
    win2d win;
    if (win_params(fn, kernel, q.stride, q.padding, q.dilation, &win) ||
        win_fit(fn, &win, x->shape[2], x->shape[3], xs))
        return NULL;

    /* The direct kernels of ops_conv.c cover the common case. */
    if (G == 1 && q.stride[0] == 1 && q.stride[1] == 1 && q.dilation[0] == 1 &&
        q.dilation[1] == 1)
        return ad__conv2d_direct(fn, x, w, bias, q.padding, relu);

    ad_scope s;
    ad_tensor *in[3] = {x, w, bias};
    if (ad_scope_begin(&s, fn, 3, in, false)) return NULL;
    int64_t N = x->shape[0], K = w->shape[1] * win.k[0] * win.k[1];
    int64_t L = win.out[0] * win.out[1];
    ad_tensor *cols = unfold_w(x, &win), *y; /* [N, C kh kw, L] */
    /* Rows of cols are ordered (c, i, j), so group g's rows are the
     * contiguous block g K .. (g + 1) K: a view splits them off. */
    if (G == 1)
        y = ad_matmul(ad_reshape(w, 2, (int64_t[]){O, K}), cols); /* [N, O, L] */
    else
        y = ad_matmul(ad_reshape(w, 3, (int64_t[]){G, O / G, K}),
                      ad_reshape(cols, 4, (int64_t[]){N, G, K, L})); /* [N, G, O/G, L] */
    y = ad_reshape(y, 4, (int64_t[]){N, O, win.out[0], win.out[1]});
    if (bias) y = ad_add(y, ad_reshape(bias, 3, (int64_t[]){O, 1, 1}));
    if (relu) y = ad_relu(y);
    y = ad_scope_end(&s, y);
    if (!y) ad__err_in(fn, NULL); /* an inner op's error (unfold's, say), named as this one's */
    return y;
}

ad_tensor *ad_conv2d(ad_tensor *x, ad_tensor *w, ad_tensor *bias, const ad_conv2d_params *p)
{
    return conv2d("ad_conv2d", x, w, bias, p, false);
}

ad_tensor *ad_conv2d_relu(ad_tensor *x, ad_tensor *w, ad_tensor *bias, const ad_conv2d_params *p)
{
    return conv2d("ad_conv2d_relu", x, w, bias, p, true);
}

/* ---- pooling -------------------------------------------------------------------------------- */

/* Checks a pool's arguments into a window (dilation 1). */
static int pool_params(const char *fn, const ad_tensor *x, const int kernel[2],
                       const int stride[2], const int padding[2], win2d *w)
{
    char xs[200];
    if (ad__check_arg(fn, "x", x, true)) return -1;
    describe("x", x, xs, sizeof xs);
    if (x->ndim != 4) return ad__err(fn, "expected a 4-D input [N, C, H, W], got %s", xs);
    if (!kernel) return ad__err(fn, "kernel is NULL");
    if (stride && (stride[0] < 0 || stride[1] < 0))
        return ad__err(fn, "stride %dx%d: must be >= 1 (or 0 for the kernel size)", stride[0],
                       stride[1]);
    int st[2];
    for (int a = 0; a < 2; a++) st[a] = stride && stride[a] ? stride[a] : kernel[a];
    if (win_params(fn, kernel, st, padding, NULL, w)) return -1;
    if (2 * w->p[0] > w->k[0] || 2 * w->p[1] > w->k[1])
        return ad__err(fn, "padding %lldx%lld must be at most half the kernel %lldx%lld",
                       (long long)w->p[0], (long long)w->p[1], (long long)w->k[0],
                       (long long)w->k[1]);
    /* Half the kernel at most puts an input element in every window, but
     * only when there is one: with H or W 0 and padding, a window fits in
     * the padding alone (max read past the buffer, the mean was 0/0).
     * PyTorch refuses such an input too. */
    if (x->shape[2] == 0 || x->shape[3] == 0)
        return ad__err(fn, "the input's height and width must be nonzero, got %s", xs);
    return win_fit(fn, w, x->shape[2], x->shape[3], xs);
}

/* Which entries of unfold's result are real input (1) rather than padding
 * (0): unfold of ones, [1, kh kw, L], the same for every (n, c). */
static ad_tensor *real_mask(const ad_scope *s, const ad_tensor *x, const win2d *w)
{
    ad_tensor *ones = ad_ones(s->tape, x->dtype, 4, (int64_t[]){1, 1, x->shape[2], x->shape[3]});
    return unfold_w(ones, w);
}

/* unfold(x) seen as [N, C, kh kw, L]: the kernel axis is 2. */
static ad_tensor *windows(ad_tensor *x, const win2d *w)
{
    return ad_reshape(unfold_w(x, w), 4,
                      (int64_t[]){x->shape[0], x->shape[1], w->k[0] * w->k[1],
                                  w->out[0] * w->out[1]});
}

static ad_tensor *pooled(ad_tensor *y, const ad_tensor *x, const win2d *w)
{
    return ad_reshape(y, 4, (int64_t[]){x->shape[0], x->shape[1], w->out[0], w->out[1]});
}

/* ---- max_pool2d ----------------------------------------------------------------
 * For each window of each plane (n, c), the flat index ih W + iw in x's
 * H x W plane of its first maximum, scanning the window row by row as
 * PyTorch does, so ties go to the element that comes first.  A NaN counts
 * as larger than any number (the first NaN wins), so a NaN in a window
 * gives a NaN maximum, as ad_max does.  Padding is skipped: it is never
 * chosen, which is what -inf padding means, and every window holds a real
 * element because padding is at most half the kernel. */
/* window_argmax_f32/_f64 (any strides) and window_argmax_contig_f32/_f64
 * (contiguous x, the common 2x2 stride-2 window unrolled), from
 * pool_kernels.inc instantiated per dtype. */
/* The vectorised 2x2 window needs the two builtins (GCC 12, clang 9 on). */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) && __has_builtin(__builtin_convertvector)
#define POOL_VEC 1
#endif
#endif
#ifndef POOL_VEC
#define POOL_VEC 0
#endif
/* Compiled for AVX2 on x86 (the baseline's 16-byte registers would make
 * the compiler split the 8-lane shuffles element by element), used when
 * the CPU has it; elsewhere for the baseline target. */
#if POOL_VEC && (defined(__x86_64__) || defined(__i386__))
#define POOL_ATTR __attribute__((target("avx2")))
#define POOL_CPU_OK() AD_CPU_AVX2()
#else
#define POOL_ATTR
#define POOL_CPU_OK() 1
#endif
#define KERNEL_FILE "pool_kernels.inc"
#include "per_dtype.inc"


/* idx[n, c, q] = the flat index of window q's first maximum in plane
 * (n, c), and with y (may be NULL) y[n, c, q] = that maximum. */
static void window_argmax(const ad_tensor *x, ad_tensor *idx, ad_tensor *y, const win2d *w)
{
    int64_t *out = (int64_t *)idx->storage->data + idx->offset;
    void *yv = y ? (char *)y->storage->data + y->offset * (int64_t)ad_dtype_size(y->dtype) : NULL;
    bool contig = ad_is_contiguous(x) && w->d[0] == 1 && w->d[1] == 1;
    if (x->dtype == AD_FLOAT64)
        contig ? window_argmax_contig_f64(x, out, yv, w) : window_argmax_f64(x, out, yv, w);
    else contig ? window_argmax_contig_f32(x, out, yv, w) : window_argmax_f32(x, out, yv, w);
}

/* max_pool2d as one op: the scan that finds each window's first maximum
 * also stores it, so the values cost no pass of their own over x (a
 * gather of x at the indices read x again from memory: 4.7 MB a step for
 * fmnist_cnn's pool, and checked every index's range).  The indices, an
 * int64 [N, C, Ho Wo] tensor on the result's tape, are the rule's: dx is
 * scatter_add_zeros(g at those indices), whose own rule is a gather at
 * them, so every order of derivative stays within that pair. */
typedef struct maxpool_params {
    win2d w;
    ad_tensor *idx;
} maxpool_params;

/* Replay: new indices and maxima from x's new values. */
static int max_pool2d_fw(ad_node *n)
{
    const maxpool_params *q = ad__params(n);
    window_argmax(n->in[0], q->idx, n->out, &q->w);
    return 0;
}
static int max_pool2d_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const maxpool_params *q = ad__params(n);
    const ad_tensor *x = n->in[0];
    int64_t N = x->shape[0], C = x->shape[1], L = q->w.out[0] * q->w.out[1];
    ad_tensor *dx = ad__scatter_add_zeros(3, (int64_t[]){N, C, x->shape[2] * x->shape[3]}, 2,
                                          q->idx, ad_reshape(g, 3, (int64_t[]){N, C, L}));
    gin[0] = ad_reshape(dx, 4, x->shape);
    return 0;
}
static const ad_op OP_MAX_POOL2D = {
    .name = "max_pool2d",
    .formula = "y[n, c, oh, ow] = x[n, c, i / W, i % W] with i = idx[n, c, oh Wo + ow] the flat "
               "index of the window's first maximum (row-major scan, NaN largest); "
               "dx = scatter_add_zeros(g at idx)",
    .backward = max_pool2d_bw,
    .forward = max_pool2d_fw,
    .params_size = sizeof(maxpool_params),
};

ad_tensor *ad_max_pool2d(ad_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2])
{
    static const char *fn = "ad_max_pool2d";
    win2d w;
    if (pool_params(fn, x, kernel, stride, padding, &w)) return NULL;
    int64_t N = x->shape[0], C = x->shape[1];
    ad_tensor *y = ad__result(fn, 1, &x, x->dtype, 4, (int64_t[]){N, C, w.out[0], w.out[1]});
    if (!y) return NULL;
    /* The indices live on the result's tape for the rule; a persistent
     * result (no tape) is never recorded, so they are only scratch then. */
    ad_tensor *idx = ad__alloc(fn, y->tape, AD_INT64, 3, (int64_t[]){N, C, w.out[0] * w.out[1]});
    if (!idx) return ad__finish(y, -1, &OP_MAX_POOL2D, 1, &x, NULL, NULL);
    window_argmax(x, idx, y, &w);
    bool scratch = idx->tape == NULL;
    y = ad__finish(y, 0, &OP_MAX_POOL2D, 1, &x, &(maxpool_params){w, idx}, NULL);
    if (scratch) ad_tensor_free(idx);
    return y;
}

ad_tensor *ad_avg_pool2d(ad_tensor *x, const int kernel[2], const int stride[2],
                         const int padding[2], bool count_include_pad)
{
    static const char *fn = "ad_avg_pool2d";
    win2d w;
    ad_scope s;
    if (pool_params(fn, x, kernel, stride, padding, &w) ||
        ad_scope_begin(&s, fn, 1, &x, false))
        return NULL;
    ad_tensor *cols = windows(x, &w), *y;
    if (count_include_pad || (!w.p[0] && !w.p[1])) {
        y = ad_mean(cols, (int[]){2}, 1, false);
    } else {
        /* Divide each window's sum by its count of real elements: [1, L]. */
        ad_tensor *count = ad_sum(real_mask(&s, x, &w), (int[]){1}, 1, false);
        y = ad_div(ad_sum(cols, (int[]){2}, 1, false), count);
    }
    return ad_scope_end(&s, pooled(y, x, &w));
}

const ad_op *const ad__ops_nn[] = {
    &OP_UNFOLD, &OP_FOLD, &OP_MAX_POOL2D, NULL,
};

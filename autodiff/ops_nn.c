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
 * an average pool is a mean over the kernel axis of unfold's result, the
 * normalisations are mean/var arithmetic.  The
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

/* Floating argument of x's dtype (optional ones may be NULL). */
static int check_like(const char *fn, const char *name, const ad_tensor *t, const ad_tensor *x)
{
    if (ad__check_arg(fn, name, t, true)) return -1;
    if (t->dtype != x->dtype)
        return ad__err(fn, "%s is %s but x is %s", name, ad_dtype_name(t->dtype),
                       ad_dtype_name(x->dtype));
    return 0;
}

/* ---- conv2d ------------------------------------------------------------------------------ */

/* conv2d, and with relu max(conv2d, 0) (ad_conv2d_relu): fn names the
 * public function in errors. */
static ad_tensor *conv2d(const char *fn, ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                         const ad_conv2d_params *p, bool relu)
{
    bool has_bias;
    if (ad__check_arg(fn, "x", x, true) || check_like(fn, "w", w, x) ||
        ad__check_opt(fn, "bias", bias, true, &has_bias) ||
        (has_bias && check_like(fn, "bias", bias, x)))
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
    return ad_scope_end(&s, y);
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

/* ---- embedding ---------------------------------------------------------------------------------- */

ad_tensor *ad_embedding(ad_tensor *weight, ad_tensor *indices)
{
    static const char *fn = "ad_embedding";
    if (ad__check_arg(fn, "weight", weight, true) ||
        ad__check_arg(fn, "indices", indices, false))
        return NULL;
    if (weight->ndim != 2)
        return ad__err(fn, "weight must be 2-D [V, D], got %s", ad__shape_str(weight)), NULL;
    if (indices->dtype != AD_INT64)
        return ad__err(fn, "indices must be int64, got %s", ad_dtype_name(indices->dtype)), NULL;
    if (indices->ndim >= AD_MAX_DIMS)
        return ad__err(fn, "indices have %d dimensions; at most %d are allowed", indices->ndim,
                       AD_MAX_DIMS - 1), NULL;
    /* index_select would accept negative entries; an embedding does not.
     * Checked here so the message names the position in indices' shape. */
    int64_t V = weight->shape[0], n = ad__numel(indices->ndim, indices->shape);
    int64_t pos[AD_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {
        int64_t v = ((const int64_t *)indices->storage->data)[ad__offset_of(indices, pos)];
        if (v < 0 || v >= V) {
            return ad__err(fn, "index %lld at position %s is out of range for %lld embeddings "
                               "(weight %s)", (long long)v, ad__dims_str(indices->ndim, pos),
                           (long long)V, ad__shape_str(weight)), NULL;
        }
        for (int d = indices->ndim - 1; d >= 0 && ++pos[d] == indices->shape[d]; d--) pos[d] = 0;
    }
    ad_scope s;
    ad_tensor *in[2] = {weight, indices};
    if (ad_scope_begin(&s, fn, 2, in, false)) return NULL;
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0; d < indices->ndim; d++) shape[d] = indices->shape[d];
    shape[indices->ndim] = weight->shape[1];
    ad_tensor *rows = ad_index_select(weight, 0, ad_reshape(indices, 1, (int64_t[]){n}));
    return ad_scope_end(&s, ad_reshape(rows, indices->ndim + 1, shape));
}

/* ---- normalisation ------------------------------------------------------------------------------- */

static int check_eps(const char *fn, double eps)
{
    return eps >= 0 && isfinite(eps) ? 0 : ad__err(fn, "eps must be finite and >= 0, got %g", eps);
}

/* (x - mean) / sqrt(var + eps); mean and var broadcast against x. */
static ad_tensor *normalise(ad_tensor *x, ad_tensor *mean, ad_tensor *var, double eps)
{
    return ad_div(ad_sub(x, mean), ad_sqrt(ad_add_scalar(var, eps)));
}

/* An optional affine parameter must have exactly `shape`. */
static int check_param(const char *fn, const char *name, const ad_tensor *t, const ad_tensor *x,
                       int ndim, const int64_t *shape, const char *what)
{
    bool present;
    if (ad__check_opt(fn, name, t, true, &present)) return -1;
    if (!present) return 0;
    if (check_like(fn, name, t, x)) return -1;
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (ok) return 0;
    return ad__err(fn, "%s has shape %s but %s of x %s are %s", name, ad__shape_str(t), what,
                   ad__shape_str(x), ad__dims_str(ndim, shape));
}

ad_tensor *ad_layer_norm(ad_tensor *x, int nnormdims, ad_tensor *weight, ad_tensor *bias,
                         double eps)
{
    static const char *fn = "ad_layer_norm";
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    if (nnormdims < 1 || nnormdims > x->ndim) {
        return ad__err(fn, "nnormdims %d out of range 1..%d for x %s", nnormdims, x->ndim,
                       ad__shape_str(x)), NULL;
    }
    const int64_t *last = x->shape + (x->ndim - nnormdims);
    char what[64];
    snprintf(what, sizeof what, "the last %d dimension%s", nnormdims, nnormdims > 1 ? "s" : "");
    if (check_param(fn, "weight", weight, x, nnormdims, last, what) ||
        check_param(fn, "bias", bias, x, nnormdims, last, what) || check_eps(fn, eps))
        return NULL;
    ad_scope s;
    ad_tensor *in[3] = {x, weight, bias};
    if (ad_scope_begin(&s, fn, 3, in, false)) return NULL;
    /* one op of ops_fused.c (a copy first for a strided x) */
    return ad_scope_end(&s, ad__layer_norm_fused(fn, x, nnormdims, weight, bias, eps));
}

/* Running statistics: [C] of x's dtype, overwritten in training. */
static int check_running(const char *fn, const char *name, const ad_tensor *t,
                         const ad_tensor *x, bool training)
{
    if (check_param(fn, name, t, x, 1, x->shape + 1, "the channels (dimension 1)")) return -1;
    if (t && training && t->requires_grad)
        return ad__err(fn, "%s requires grad, but training overwrites it in place", name);
    return 0;
}

/* ---- batch_norm's running statistics ----------------------------------------------------
 * Not part of the function differentiated, but an op all the same: on a
 * replayable tape it is recorded, and its replay forward folds the
 * replayed batch's statistics into the buffers again, as a fresh
 * recording would.  Its output (the new running mean) only gives the node
 * a result; nothing reads it. */
typedef struct bn_stats_params {
    ad_tensor *running_mean, *running_var; /* the caller's: must outlive every replay */
    ad_tensor *count;                      /* NULL, or num_batches_tracked (the same) */
    double momentum, unbias;               /* unbias = M / (M - 1) */
} bn_stats_params;

/* running = (1 - m) running + m stat per channel; mean and var are
 * contiguous [1, C, 1, ...], so channel c is element c. */
static void fold_running(ad_tensor *out, const ad_tensor *mean, const ad_tensor *var,
                         const bn_stats_params *p)
{
    ad_tensor *rm = p->running_mean, *rv = p->running_var;
    double m = p->momentum;
    for (int64_t c = 0; c < rm->shape[0]; c++) {
        int64_t om = rm->offset + c * rm->strides[0], ov = rv->offset + c * rv->strides[0];
        double nm = (1 - m) * ad__ld(rm, om) + m * ad__ld(mean, mean->offset + c);
        ad__st(rm, om, nm);
        ad__st(rv, ov, (1 - m) * ad__ld(rv, ov) + m * p->unbias * ad__ld(var, var->offset + c));
        if (out) ad__st(out, out->offset + c, nm);
    }
    /* the batches folded in so far, counted where they are folded, so a
     * replay counts as a fresh recording does */
    if (p->count) {
        ad__st(p->count, p->count->offset, ad__ld(p->count, p->count->offset) + 1);
        ad__bump(p->count);
    }
    /* An eval-mode graph recorded earlier reads them: it must not be
     * differentiated with the updated values. */
    ad__bump(rm);
    ad__bump(rv);
}

static int bn_stats_fw(ad_node *n)
{
    fold_running(n->out, n->in[0], n->in[1], ad__params(n));
    return 0;
}
static const ad_op OP_BATCH_NORM_STATS = {
    .name = "batch_norm_stats",
    .formula = "running_mean = (1 - m) running_mean + m mu; running_var = (1 - m) running_var "
               "+ m v M / (M - 1); num_batches_tracked += 1 (if given); in place, again at "
               "every replay; not differentiable",
    .backward = NULL,
    .forward = bn_stats_fw,
    .params_size = sizeof(bn_stats_params),
};

/* Folds mean and var into the running statistics, recorded as the op
 * above when they live on a tape; y, or NULL when recording fails. */
static ad_tensor *update_running(const char *fn, ad_tensor *y, ad_tensor *mean, ad_tensor *var,
                                 ad_tensor *rm, ad_tensor *rv, ad_tensor *count, double momentum,
                                 int64_t M)
{
    bn_stats_params p = {rm, rv, count, momentum, (double)M / (double)(M - 1)};
    if (!mean || !var) return NULL;
    if (!mean->tape) {
        fold_running(NULL, mean, var, &p);
        return y;
    }
    ad_tensor *in[2] = {mean, var};
    ad_tensor *u = ad__alloc(fn, mean->tape, mean->dtype, 1, rm->shape);
    if (u) fold_running(u, mean, var, &p);
    return u && ad__finish(u, 0, &OP_BATCH_NORM_STATS, 2, in, &p, NULL) ? y : NULL;
}

static ad_tensor *batch_norm(const char *fn, ad_tensor *x, ad_tensor *running_mean,
                             ad_tensor *running_var, ad_tensor *count, ad_tensor *weight,
                             ad_tensor *bias, bool training, double momentum, double eps)
{
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    if (x->ndim < 2)
        return ad__err(fn, "x must be [N, C, ...] (ndim >= 2), got %s", ad__shape_str(x)), NULL;
    if (!running_mean != !running_var)
        return ad__err(fn, "give both running_mean and running_var, or neither"), NULL;
    if (!training && !running_mean)
        return ad__err(fn, "eval mode (training false) needs running_mean and running_var"),
               NULL;
    const char *ch = "the channels (dimension 1)";
    if ((running_mean && (check_running(fn, "running_mean", running_mean, x, training) ||
                          check_running(fn, "running_var", running_var, x, training))) ||
        check_param(fn, "weight", weight, x, 1, x->shape + 1, ch) ||
        check_param(fn, "bias", bias, x, 1, x->shape + 1, ch) || check_eps(fn, eps))
        return NULL;
    if (!(momentum >= 0 && momentum <= 1))
        return ad__err(fn, "momentum must be in [0, 1], got %g", momentum), NULL;
    int64_t C = x->shape[1], M = C ? ad__numel(x->ndim, x->shape) / C : 0;
    if (training && M <= 1)
        return ad__err(fn, "expected more than 1 value per channel when training, got x %s",
                       ad__shape_str(x)), NULL;

    ad_scope s;
    ad_tensor *in[5] = {x, weight, bias, training ? NULL : running_mean,
                        training ? NULL : running_var};
    if (ad_scope_begin(&s, fn, 5, in, false)) return NULL;
    /* Per-channel tensors [C] are seen as [C, 1, ...] to broadcast against
     * x's [N, C, ...]; the statistics are reduced over all but dimension 1
     * with keepdim, [1, C, 1, ...], which broadcasts as it is. */
    int64_t cshape[AD_MAX_DIMS];
    int axes[AD_MAX_DIMS], nax = 0;
    cshape[0] = C;
    for (int d = 1; d < x->ndim - 1; d++) cshape[d] = 1;
    for (int d = 0; d < x->ndim; d++)
        if (d != 1) axes[nax++] = d;
    ad_tensor *mean, *var;
    if (training) {
        mean = ad_mean(x, axes, nax, true);
        var = ad_var(x, axes, nax, 0, true);
    } else {
        mean = ad_reshape(running_mean, x->ndim - 1, cshape);
        var = ad_reshape(running_var, x->ndim - 1, cshape);
    }
    ad_tensor *y = normalise(x, mean, var, eps);
    if (weight) y = ad_mul(y, ad_reshape(weight, x->ndim - 1, cshape));
    if (bias) y = ad_add(y, ad_reshape(bias, x->ndim - 1, cshape));
    if (y && training && running_mean)
        y = update_running(fn, y, mean, var, running_mean, running_var, count, momentum, M);
    return ad_scope_end(&s, y);
}

ad_tensor *ad_batch_norm(ad_tensor *x, ad_tensor *running_mean, ad_tensor *running_var,
                         ad_tensor *weight, ad_tensor *bias, bool training, double momentum,
                         double eps)
{
    return batch_norm("ad_batch_norm", x, running_mean, running_var, NULL, weight, bias, training,
                      momentum, eps);
}

ad_tensor *ad_batch_norm_tracked(ad_tensor *x, ad_tensor *running_mean, ad_tensor *running_var,
                                 ad_tensor *num_batches_tracked, ad_tensor *weight,
                                 ad_tensor *bias, bool training, double momentum, double eps)
{
    static const char *fn = "ad_batch_norm_tracked";
    ad_tensor *c = num_batches_tracked;
    bool has;
    if (ad__check_opt(fn, "num_batches_tracked", c, false, &has)) return NULL;
    if (has && (c->dtype != AD_INT64 || ad__numel(c->ndim, c->shape) != 1 || c->requires_grad))
        return ad__err(fn, "num_batches_tracked must be an int64 tensor of one element that "
                           "does not require grad, got %s", ad__desc(c)), NULL;
    if (has && !running_mean)
        return ad__err(fn, "num_batches_tracked counts the updates of running_mean and "
                           "running_var, which are NULL"), NULL;
    return batch_norm(fn, x, running_mean, running_var, has ? c : NULL, weight, bias, training,
                      momentum, eps);
}

const ad_op *const ad__ops_nn[] = {
    &OP_UNFOLD, &OP_FOLD, &OP_MAX_POOL2D, &OP_BATCH_NORM_STATS, NULL,
};

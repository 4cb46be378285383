/* autodiff/ops_conv_plain.c - the direct convolution's three ops
 * (ops_conv.c) as plain sums over their formulas' terms, for operands that
 * are not all finite.
 *
 * The kernels add terms that are not in the formulas: conv_transpose2d
 * runs over x padded with kh - 1 - p zeros, and the weight gradient's gy
 * is widened with zeros over the flat layout's wrapped columns.  They add
 * 0 w or 0 x, nothing while the values are finite; an inf or a NaN in w
 * (or in x for the weight gradient) makes them 0 inf = NaN, in outputs
 * whose every real term is finite or inf; and conv2d's forward kernel
 * leaves out rows of taps that read only padding, where the formula has
 * 0 inf = NaN.  So conv2d and conv_transpose2d with a weight that is not
 * all finite are computed instead by the plain sums below, over the
 * formula's terms (conv_transpose2d's over x's elements alone, as
 * im2col + GEMM computes the input gradient: what PyTorch gives), and a
 * weight gradient that came out not all finite is computed again by
 * them.  Slow, and only for operands that are no longer finite. */
#include "internal.h"

#include <float.h>
#include <math.h>

/* Every element of the 4-d t (any strides) is finite. */
bool ad__conv_all_finite(const ad_tensor *t)
{
    const int64_t *sh = t->shape, *st = t->strides;
    if (ad_is_contiguous(t) && t->dtype != AD_INT64) {
        /* every weight and weight gradient of every step: a loop without
         * an exit, which the compiler vectorises (a NaN compares false) */
        int64_t n = sh[0] * sh[1] * sh[2] * sh[3];
        bool ok = true;
        if (t->dtype == AD_FLOAT32) {
            const float *v = (const float *)t->storage->data + t->offset;
            for (int64_t i = 0; i < n; i++) ok &= fabsf(v[i]) <= FLT_MAX;
        } else {
            const double *v = (const double *)t->storage->data + t->offset;
            for (int64_t i = 0; i < n; i++) ok &= fabs(v[i]) <= DBL_MAX;
        }
        return ok;
    }
    for (int64_t a = 0; a < sh[0]; a++)
        for (int64_t b = 0; b < sh[1]; b++)
            for (int64_t c = 0; c < sh[2]; c++)
                for (int64_t d = 0; d < sh[3]; d++)
                    if (!isfinite(ad__ld(t, t->offset + a * st[0] + b * st[1] + c * st[2] +
                                                d * st[3])))
                        return false;
    return true;
}

/* The mask m (laid out like t, relative to t's offset) at element i: is
 * it > 0 (an absent mask is). */
static bool mask_on(const void *m, ad_dtype dt, int64_t i)
{
    if (!m) return true;
    return dt == AD_FLOAT64 ? ((const double *)m)[i] > 0 : ((const float *)m)[i] > 0;
}

/* conv2d's y (ops_conv.c's conv_run) as the formula's sum: y[n, o, h, w] = bias[o] + sum_{c, i,
 * j} w[o, c, i, j] x[n, c, h - p + i, w - p + j], x zero outside (its
 * zeros multiplied, as in im2col's columns: 0 inf is NaN there too), in
 * double; then relu's x <= 0 ? 0 : x. */
void ad__conv_plain(const ad_tensor *x, const ad_tensor *w, const ad_tensor *bias,
                    const int64_t *p, bool relu, ad_tensor *y)
{
    const int64_t N = y->shape[0], O = y->shape[1], Ho = y->shape[2], Wo = y->shape[3];
    const int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t kh = w->shape[2], kw = w->shape[3];
    const int64_t *xs = x->strides, *ws = w->strides;
    int64_t idx = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++)
            for (int64_t h = 0; h < Ho; h++)
                for (int64_t v = 0; v < Wo; v++, idx++) {
                    double sum = 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t r = h - p[0] + i, col = v - p[1] + j;
                                double xv = r < 0 || r >= H || col < 0 || col >= W
                                                ? 0.0
                                                : ad__ld(x, x->offset + n * xs[0] + c * xs[1] +
                                                                r * xs[2] + col * xs[3]);
                                sum += ad__ld(w, w->offset + o * ws[0] + c * ws[1] + i * ws[2] +
                                                     j * ws[3]) *
                                       xv;
                            }
                    if (bias) sum += ad__ld(bias, bias->offset + o * bias->strides[0]);
                    ad__st(y, y->offset + idx, relu && sum <= 0 ? 0.0 : sum);
                }
}

/* conv_transpose2d's y (convt_run) as the sum over x's elements alone: y[n, c, h, w] =
 * sum_{o, i, j} w[o, c, i, j] (x [xm > 0])[n, o, h + p - i, w + p - j],
 * in double, rounded once. */
void ad__convt_plain(const ad_tensor *x, const void *xm, const ad_tensor *w, const int64_t *p,
                     ad_tensor *y)
{
    const int64_t N = y->shape[0], C = y->shape[1], H = y->shape[2], W = y->shape[3];
    const int64_t O = x->shape[1], Hi = x->shape[2], Wi = x->shape[3];
    const int64_t kh = w->shape[2], kw = w->shape[3];
    const int64_t *xs = x->strides, *ws = w->strides;
    int64_t idx = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t v = 0; v < W; v++, idx++) {
                    double sum = 0;
                    for (int64_t o = 0; o < O; o++)
                        for (int64_t i = 0; i < kh; i++) {
                            int64_t r = h + p[0] - i;
                            if (r < 0 || r >= Hi) continue;
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t col = v + p[1] - j;
                                if (col < 0 || col >= Wi) continue;
                                int64_t xi = n * xs[0] + o * xs[1] + r * xs[2] + col * xs[3];
                                /* a masked element is a 0 multiplied, as relu_grad's */
                                double xv = mask_on(xm, x->dtype, xi) ? ad__ld(x, x->offset + xi)
                                                                      : 0.0;
                                sum += ad__ld(w, w->offset + o * ws[0] + c * ws[1] + i * ws[2] +
                                                     j * ws[3]) *
                                       xv;
                            }
                        }
                    ad__st(y, y->offset + idx, sum);
                }
}

/* conv2d_weight's dw (convw_run) as the formula's sum: dw[o, c, i, j] = sum_{n, h, w}
 * gy[n, o, h, w] [gm > 0] x[n, c, h - p + i, w - p + j], x zero outside
 * (its zeros multiplied as they are in im2col's columns), in double. */
void ad__convw_plain(const ad_tensor *x, const ad_tensor *gy, const void *gm, const int64_t *p,
                     ad_tensor *dw)
{
    const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    const int64_t O = gy->shape[1], Ho = gy->shape[2], Wo = gy->shape[3];
    const int64_t kh = dw->shape[2], kw = dw->shape[3];
    const int64_t *xs = x->strides, *gs = gy->strides;
    int64_t idx = 0;
    for (int64_t o = 0; o < O; o++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < kh; i++)
                for (int64_t j = 0; j < kw; j++, idx++) {
                    double sum = 0;
                    for (int64_t n = 0; n < N; n++)
                        for (int64_t h = 0; h < Ho; h++)
                            for (int64_t v = 0; v < Wo; v++) {
                                int64_t gi = n * gs[0] + o * gs[1] + h * gs[2] + v * gs[3];
                                /* gm is contiguous, laid out as gy's shape; a masked
                                 * element is a 0 multiplied, as relu_grad's */
                                double g = mask_on(gm, gy->dtype, ((n * O + o) * Ho + h) * Wo + v)
                                               ? ad__ld(gy, gy->offset + gi)
                                               : 0.0;
                                int64_t r = h - p[0] + i, col = v - p[1] + j;
                                double xv = r < 0 || r >= H || col < 0 || col >= W
                                                ? 0.0
                                                : ad__ld(x, x->offset + n * xs[0] + c * xs[1] +
                                                                r * xs[2] + col * xs[3]);
                                sum += g * xv;
                            }
                    ad__st(dw, dw->offset + idx, sum);
                }
}


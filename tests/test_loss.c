/* tests/test_loss.c - softmax, log_softmax, cross_entropy (with label
 * smoothing) and mse_loss: exact values and gradients of small cases worked
 * by hand, closed forms, stability at +-1000 against long double
 * references, views, float32 and float64, and every bad input. */
#include "optest.h"

#include <stdlib.h>
#include <string.h>

static const double LN3 = 1.0986122886681098; /* log 3 */

/* A tensor of dtype dt on tape t from double literals. */
static ad_tensor *mk(ad_tape *t, ad_dtype dt, int nd, const int64_t *sh, const double *v)
{
    ad_tensor *x = ot_f64(t, nd, sh, v);
    ck_assert_msg(x != NULL, "%s", ad_error());
    if (dt == AD_FLOAT64) return x;
    ad_tensor *y = ad_empty(t, dt, nd, sh);
    ck_assert_int_eq(ad_copy_into(y, x), 0);
    return y;
}
static ad_tensor *mk_grad(ad_tape *t, ad_dtype dt, int nd, const int64_t *sh, const double *v)
{
    ad_tensor *x = mk(t, dt, nd, sh, v);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    return x;
}
static void values(const ad_tensor *x, double *out)
{
    ck_assert_msg(x != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_to_array(x, out), 0);
}
static void backward(ad_tensor *y, ad_tensor *g)
{
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_msg(ad_backward(y, g, 0) == 0, "%s", ad_error());
}
/* Relative-plus-absolute tolerance of each dtype for one rounding chain. */
static double tol_of(ad_dtype dt) { return dt == AD_FLOAT32 ? 2e-6 : 1e-14; }

/* Softmax / log_softmax of the contiguous row-major x along axis, in long
 * double: the references for the stability and view tests. */
static void ref_softmax(const double *x, int nd, const int64_t *sh, int axis, bool lg, double *out)
{
    int64_t outer = 1, inner = 1, len = sh[axis];
    for (int d = 0; d < axis; d++) outer *= sh[d];
    for (int d = axis + 1; d < nd; d++) inner *= sh[d];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const double *p = x + o * len * inner + i;
            long double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < len; k++) m = p[k * inner] > m ? p[k * inner] : m;
            for (int64_t k = 0; k < len; k++) s += expl((long double)p[k * inner] - m);
            for (int64_t k = 0; k < len; k++) {
                long double v = (long double)p[k * inner] - m;
                out[o * len * inner + i + k * inner] = (double)(lg ? v - logl(s) : expl(v) / s);
            }
        }
}

/* ---- softmax / log_softmax: hand values ---------------------------------- */

START_TEST(softmax_hand_values)
{
    ad_tape *t = ad_tape_new();
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        double tol = tol_of(dt), v[6];
        /* e^0 : e^ln3 = 1 : 3 */
        values(ad_softmax(mk(t, dt, 1, (int64_t[]){2}, (double[]){0, LN3}), 0), v);
        ck_assert_close(v[0], 0.25, tol);
        ck_assert_close(v[1], 0.75, tol);
        /* [1,2,3]: e^i / (e + e^2 + e^3) */
        double z = exp(1) + exp(2) + exp(3);
        values(ad_softmax(mk(t, dt, 1, (int64_t[]){3}, (double[]){1, 2, 3}), -1), v);
        for (int i = 0; i < 3; i++) ck_assert_close(v[i], exp(i + 1) / z, tol);
        /* rows of [[1,2,3],[5,5,5]] along axis 1; the second is uniform */
        ad_tensor *x = mk(t, dt, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 5, 5, 5});
        values(ad_softmax(x, 1), v);
        for (int i = 0; i < 3; i++) ck_assert_close(v[i], exp(i + 1) / z, tol);
        for (int i = 3; i < 6; i++) ck_assert_close(v[i], 1.0 / 3, tol);
        /* columns of [[0,7],[ln3,7]] along axis 0 */
        values(ad_softmax(mk(t, dt, 2, (int64_t[]){2, 2}, (double[]){0, 7, LN3, 7}), 0), v);
        ck_assert_close(v[0], 0.25, tol);
        ck_assert_close(v[2], 0.75, tol);
        ck_assert_close(v[1], 0.5, tol);
        ck_assert_close(v[3], 0.5, tol);
        /* log_softmax of [0, ln3] = [log 1/4, log 3/4]; of a 0-d tensor 0 */
        values(ad_log_softmax(mk(t, dt, 1, (int64_t[]){2}, (double[]){0, LN3}), 0), v);
        ck_assert_close(v[0], log(0.25), tol);
        ck_assert_close(v[1], log(0.75), tol);
        values(ad_log_softmax(mk(t, dt, 0, NULL, (double[]){3.5}), 0), v);
        ck_assert_close(v[0], 0.0, 0);
        values(ad_softmax(mk(t, dt, 0, NULL, (double[]){-2}), -1), v);
        ck_assert_close(v[0], 1.0, 0);
    }
    ad_tape_free(t);
}
END_TEST

/* d/dx of op(x) . g for x = [0, ln3] (softmax [1/4, 3/4]). */
static void grad_at(ad_tape *t, ad_dtype dt, bool lg, double g0, double g1, double *v)
{
    ad_tensor *x = mk_grad(t, dt, 1, (int64_t[]){2}, (double[]){0, LN3});
    backward(lg ? ad_log_softmax(x, -1) : ad_softmax(x, 0),
             mk(t, dt, 1, (int64_t[]){2}, (double[]){g0, g1}));
    values(ad_tensor_grad(x), v);
}

START_TEST(softmax_hand_gradients)
{
    ad_tape *t = ad_tape_new();
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        double tol = 10 * tol_of(dt), v[2];
        /* softmax, g = [1, 0]: sum(g y) = 1/4, dx = y (g - 1/4) */
        grad_at(t, dt, false, 1, 0, v);
        ck_assert_close(v[0], 3.0 / 16, tol);
        ck_assert_close(v[1], -3.0 / 16, tol);
        /* a constant g is invisible: softmax is shift invariant */
        grad_at(t, dt, false, 2, 2, v);
        ck_assert_close(v[0], 0.0, tol);
        ck_assert_close(v[1], 0.0, tol);
        /* log_softmax, g = [1, 0]: dx = g - p sum(g) = [3/4, -3/4] */
        grad_at(t, dt, true, 1, 0, v);
        ck_assert_close(v[0], 0.75, tol);
        ck_assert_close(v[1], -0.75, tol);
        /* g = [1, 1]: dx = 1 - 2p = [1/2, -1/2] */
        grad_at(t, dt, true, 1, 1, v);
        ck_assert_close(v[0], 0.5, tol);
        ck_assert_close(v[1], -0.5, tol);
    }
    ad_tape_free(t);
}
END_TEST

/* Every line of a softmax sums to 1 and lies in (0, 1), along each axis of
 * 2-D and 3-D inputs, in both dtypes. */
START_TEST(softmax_lines_sum_to_one)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 7);
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *x = ad_rand(t, &rng, dt, 3, (int64_t[]){3, 4, 5}, -5, 5);
        for (int axis = -3; axis < 3; axis++) {
            ad_tensor *y = ad_softmax(x, axis);
            ck_assert_msg(y != NULL, "%s", ad_error());
            ck_assert_int_eq(ad_ndim(y), 3);
            ad_tensor *s = ad_sum(y, &axis, 1, false);
            double v[60], sv[20];
            values(y, v);
            values(s, sv);
            for (int i = 0; i < 60; i++) ck_assert(v[i] > 0 && v[i] < 1);
            for (int64_t i = 0; i < ad_numel(s); i++) ck_assert_close(sv[i], 1.0, 5 * tol_of(dt));
        }
    }
    ad_tape_free(t);
}
END_TEST

/* 3-D input along each axis against the long double reference. */
START_TEST(softmax_3d_matches_reference)
{
    ad_tape *t = ad_tape_new();
    double x[24], ref[24], v[24];
    for (int i = 0; i < 24; i++) x[i] = sin(1.7 * i) * 4;
    int64_t sh[3] = {2, 3, 4};
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        double xr[24]; /* the inputs as the dtype holds them */
        values(mk(t, dt, 3, sh, x), xr);
        for (int axis = 0; axis < 3; axis++)
            for (int lg = 0; lg < 2; lg++) {
                ad_tensor *in = mk(t, dt, 3, sh, x);
                values(lg ? ad_log_softmax(in, axis - 3) : ad_softmax(in, axis), v);
                ref_softmax(xr, 3, sh, axis, lg, ref);
                for (int i = 0; i < 24; i++)
                    ck_assert_close(v[i], ref[i], tol_of(dt) * (1 + fabs(ref[i])));
            }
    }
    ad_tape_free(t);
}
END_TEST

/* Views: a transposed, narrowed and expanded input give the values of the
 * same elements laid out contiguously (test_ops gradchecks such views). */
START_TEST(softmax_views)
{
    ad_tape *t = ad_tape_new();
    double a[12], v[12], ref[12];
    for (int i = 0; i < 12; i++) a[i] = cos(2.3 * i) * 3;
    ad_tensor *x = mk_grad(t, AD_FLOAT64, 2, (int64_t[]){3, 4}, a);
    /* softmax(x^T, axis 1) = softmax(x, axis 0)^T */
    ad_tensor *yt = ad_softmax(ad_transpose(x, 0, 1), 1);
    values(yt, v);
    ref_softmax(a, 2, (int64_t[]){3, 4}, 0, false, ref);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ck_assert_close(v[j * 3 + i], ref[i * 4 + j], 1e-15);
    /* narrowed columns 1..2 of each row: lines of 2 with an offset */
    values(ad_log_softmax(ad_narrow(x, 1, 1, 2), 1), v);
    for (int r = 0; r < 3; r++) {
        double l = log(exp(a[r * 4 + 1]) + exp(a[r * 4 + 2]));
        ck_assert_close(v[r * 2], a[r * 4 + 1] - l, 1e-14);
        ck_assert_close(v[r * 2 + 1], a[r * 4 + 2] - l, 1e-14);
    }
    /* stride 0: an expanded row along axis 0 is a line of equal entries */
    double u[20];
    values(ad_softmax(ad_expand(ad_narrow(x, 0, 0, 1), 2, (int64_t[]){5, 4}), 0), u);
    for (int i = 0; i < 20; i++) ck_assert_close(u[i], 0.2, 1e-15);
    ad_tape_free(t);
}
END_TEST

/* ---- stability ------------------------------------------------------------ */

/* float32 lines of every length from 1 to 37, so that each row reduction
 * (max, sum of exponentials, the causal rule's dot product: eight partial
 * results plus a tail) sees full groups, tails and the maximum in every
 * lane, against long double references; then a NaN in a full group and in
 * the tail, which must make the whole line NaN. */
START_TEST(float32_lines_of_every_length)
{
    ad_tape *t = ad_tape_new();
    enum { LMAX = 37 };
    double x[LMAX * LMAX], ref[LMAX * LMAX], v[LMAX * LMAX], g[LMAX * LMAX];
    for (int64_t len = 1; len <= LMAX; len++) {
        /* row r has its maximum (100 + r/8, far enough above the rest
         * that e^(x - m) overflows float32 unless m is the true maximum)
         * at position r mod len */
        for (int64_t r = 0; r < len; r++)
            for (int64_t k = 0; k < len; k++)
                x[r * len + k] = k == r % len ? 100.0 + (double)r / 8 : sin((double)(r * 7 + k));
        int64_t sh[2] = {len, len};
        for (int lg = 0; lg < 2; lg++) {
            ad_tensor *in = mk(t, AD_FLOAT32, 2, sh, x);
            values(lg ? ad_log_softmax(in, 1) : ad_softmax(in, 1), v);
            ref_softmax(x, 2, sh, 1, lg, ref);
            for (int64_t i = 0; i < len * len; i++)
                ck_assert_close(v[i], ref[i], 4 * tol_of(AD_FLOAT32) * (1 + fabs(ref[i])));
        }
        /* cross-entropy with label r mod len for row r: mean of -log p */
        int64_t lab[LMAX];
        double want = 0;
        for (int64_t r = 0; r < len; r++) lab[r] = (r * 5) % len, want -= ref[r * len + lab[r]];
        ad_tensor *labels = ad_from_array(t, AD_INT64, AD_SHAPE(len), lab);
        ck_assert_close(ad_item(ad_cross_entropy(mk(t, AD_FLOAT32, 2, sh, x), labels,
                                                 AD_REDUCTION_MEAN)),
                        want / (double)len, 8 * tol_of(AD_FLOAT32) * (1 + fabs(want)));
        /* the causal softmax of 0.9 x and its rule against the closed form
         * 0.9 y (g - sum g y) on the first r + 1 entries of row r */
        ad_tensor *in = mk_grad(t, AD_FLOAT32, 2, sh, x);
        ad_tensor *y = ad_softmax_causal(in, 0.9);
        values(y, v);
        for (int64_t i = 0; i < len * len; i++) g[i] = cos((double)i);
        backward(y, mk(t, AD_FLOAT32, 2, sh, g));
        double gv[LMAX * LMAX];
        values(ad_tensor_grad(in), gv);
        for (int64_t r = 0; r < len; r++) {
            long double m = -INFINITY, s = 0, gy = 0, p[LMAX];
            for (int64_t k = 0; k <= r; k++) m = fmaxl(m, 0.9L * x[r * len + k]);
            for (int64_t k = 0; k <= r; k++) s += p[k] = expl(0.9L * x[r * len + k] - m);
            for (int64_t k = 0; k <= r; k++) gy += g[r * len + k] * (p[k] /= s);
            for (int64_t k = 0; k < len; k++) {
                double pk = k <= r ? (double)p[k] : 0.0;
                double dk = k <= r ? (double)(0.9L * p[k] * (g[r * len + k] - gy)) : 0.0;
                ck_assert_close(v[r * len + k], pk, 4 * tol_of(AD_FLOAT32));
                ck_assert_close(gv[r * len + k], dk, 40 * tol_of(AD_FLOAT32));
            }
        }
        ad_tape_reset(t);
    }
    /* a NaN at position j of a 20-long line: in each half of the first
     * two groups of eight and in the tail of four */
    for (int j = 1; j < 20; j += 4) {
        double z[2 * 20];
        for (int k = 0; k < 40; k++) z[k] = k == j ? NAN : (double)(k % 7);
        ad_tensor *in = mk(t, AD_FLOAT32, AD_SHAPE(2, 20), z);
        for (int lg = 0; lg < 2; lg++) {
            values(lg ? ad_log_softmax(in, 1) : ad_softmax(in, 1), v);
            for (int k = 0; k < 40; k++)
                ck_assert_msg(isnan(v[k]) == (k < 20), "NaN at %d, element %d: %g", j, k, v[k]);
        }
        ad_tensor *labels = ad_from_array(t, AD_INT64, AD_SHAPE(2), ((int64_t[]){3, 4}));
        values(ad_cross_entropy(in, labels, AD_REDUCTION_NONE), v);
        ck_assert(isnan(v[0]) && !isnan(v[1]));
        ad_tape_reset(t);
    }
    ad_tape_free(t);
}
END_TEST

/* Short float32 lines go through the kernels many at a time (their
 * exponentials in one call, groups of up to 128 rows): every row of a
 * batch must come out with the bits it has alone, where a short line
 * takes the exponential's scalar tail instead of its vector lanes - for
 * softmax and log_softmax along rows and, strided, along columns, and for
 * the per-row cross-entropy, over batches that end in a partial group,
 * with a NaN row and a row of -inf among them. */
START_TEST(short_lines_alone_and_in_groups)
{
    ad_tape *t = ad_tape_new();
    enum { N = 300, CMAX = 256 };
    static double x[N * CMAX], v[N * CMAX], one[CMAX];
    const int64_t lens[] = {1, 3, 10, 17, 100, 256};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        int64_t C = lens[li];
        for (int64_t i = 0; i < N * C; i++) x[i] = 4 * sin((double)(i * 13 % 1001));
        x[5 * C] = NAN;
        for (int64_t k = 0; k < C; k++) x[200 * C + k] = -INFINITY;
        int64_t lab[N];
        for (int64_t r = 0; r < N; r++) lab[r] = (r * 7) % C;
        ad_tensor *in = mk(t, AD_FLOAT32, AD_SHAPE(N, C), x);
        ad_tensor *labels = ad_from_array(t, AD_INT64, AD_SHAPE(N), lab);
        for (int which = 0; which < 5; which++) {
            /* 0, 1: softmax, log_softmax of rows; 2, 3: of in^T's columns
             * (the same lines, strided); 4: the cross-entropy of each row */
            ad_tensor *all = which == 0   ? ad_softmax(in, 1)
                             : which == 1 ? ad_log_softmax(in, 1)
                             : which == 2 ? ad_transpose(ad_softmax(ad_transpose(in, 0, 1), 0), 0, 1)
                             : which == 3 ? ad_transpose(ad_log_softmax(ad_transpose(in, 0, 1), 0), 0, 1)
                                          : ad_cross_entropy(in, labels, AD_REDUCTION_NONE);
            values(all, v);
            int64_t width = which == 4 ? 1 : C;
            for (int64_t r = 0; r < N; r++) {
                ad_tensor *row = mk(t, AD_FLOAT32, AD_SHAPE(1, C), x + r * C);
                ad_tensor *lr = ad_from_array(t, AD_INT64, AD_SHAPE(1), lab + r);
                values(which == 0 || which == 2   ? ad_softmax(row, 1)
                       : which == 1 || which == 3 ? ad_log_softmax(row, 1)
                                                  : ad_cross_entropy(row, lr, AD_REDUCTION_NONE),
                       one);
                ck_assert_msg(memcmp(one, v + r * width, (size_t)width * sizeof *v) == 0,
                              "length %lld, case %d, row %lld: %.9g alone, %.9g in the batch",
                              (long long)C, which, (long long)r, one[0], v[r * width]);
            }
            ad_tape_reset(t);
            in = mk(t, AD_FLOAT32, AD_SHAPE(N, C), x);
            labels = ad_from_array(t, AD_INT64, AD_SHAPE(N), lab);
        }
        ad_tape_reset(t);
    }
    ad_tape_free(t);
}
END_TEST

START_TEST(softmax_stable_at_1000)
{
    /* anomaly mode on: no op of the family may turn these finite inputs
     * into a non-finite value, forward or backward */
    bool anomaly = ad_set_anomaly_mode(true);
    ad_tape *t = ad_tape_new();
    const double x[8] = {1000, -1000, 999, 1000, -1000, -1000, -1000, -1000};
    int64_t sh[2] = {2, 4};
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        double ref[8], v[8], gv[8];
        for (int lg = 0; lg < 2; lg++) {
            ad_tensor *in = mk_grad(t, dt, 2, sh, x);
            ad_tensor *y = lg ? ad_log_softmax(in, 1) : ad_softmax(in, 1);
            values(y, v);
            ref_softmax(x, 2, sh, 1, lg, ref);
            for (int i = 0; i < 8; i++) {
                ck_assert_msg(isfinite(v[i]), "element %d is %g", i, v[i]);
                ck_assert_close(v[i], ref[i], 4 * tol_of(dt) * (1 + fabs(ref[i])));
            }
            /* the all -1000 row is uniform: 1/4, or log 1/4 */
            ck_assert_close(v[5], lg ? log(0.25) : 0.25, 4 * tol_of(dt));
            backward(y, mk(t, dt, 2, sh, (double[]){1, 2, 3, 4, 5, 6, 7, 8}));
            values(ad_tensor_grad(in), gv);
            /* closed forms: y (g - sum g y) and g - p sum g, with p, y from
             * the long double reference */
            double p[8];
            ref_softmax(x, 2, sh, 1, false, p);
            for (int r = 0; r < 2; r++) {
                double gy = 0, gs = 0;
                for (int j = 0; j < 4; j++)
                    gy += (r * 4 + j + 1) * p[r * 4 + j], gs += r * 4 + j + 1;
                for (int j = 0; j < 4; j++) {
                    int i = r * 4 + j;
                    double want = lg ? (i + 1) - p[i] * gs : p[i] * ((i + 1) - gy);
                    ck_assert(isfinite(gv[i]));
                    ck_assert_close(gv[i], want, 40 * tol_of(dt) * (1 + fabs(want)));
                }
            }
        }
    }
    ad_set_anomaly_mode(anomaly);
    ad_tape_free(t);
}
END_TEST

START_TEST(cross_entropy_stable_at_1000)
{
    bool anomaly = ad_set_anomaly_mode(true);
    ad_tape *t = ad_tape_new();
    const double x[9] = {1000, -1000, 999, -1000, -1000, -1000, -1000, 1000, 0};
    const int64_t lab[3] = {2, 1, 0};
    /* l = logsumexp - x[label], from the long double log_softmax */
    double ls[9];
    ref_softmax(x, 2, (int64_t[]){3, 3}, 1, true, ls);
    double want[3] = {-ls[2], -ls[4], -ls[6]};
    ck_assert_close(want[0], 1 + log1p(exp(-1)), 1e-15);
    ck_assert_close(want[1], log(3), 1e-15);
    ck_assert_close(want[2], 2000, 1e-12);
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *in = mk_grad(t, dt, 2, (int64_t[]){3, 3}, x);
        ad_tensor *l = ot_index(t, 1, (int64_t[]){3}, lab);
        double v[9];
        values(ad_cross_entropy(in, l, AD_REDUCTION_NONE), v);
        for (int i = 0; i < 3; i++) ck_assert_close(v[i], want[i], tol_of(dt) * (1 + want[i]));
        ad_tensor *mean = ad_cross_entropy(in, l, AD_REDUCTION_MEAN);
        ck_assert_close(ad_item(mean), (want[0] + want[1] + want[2]) / 3, 1e-3 * k + 1e-12);
        backward(mean, NULL);
        values(ad_tensor_grad(in), v);
        double p[9];
        ref_softmax(x, 2, (int64_t[]){3, 3}, 1, false, p);
        for (int i = 0; i < 9; i++) {
            double g = (p[i] - (lab[i / 3] == i % 3)) / 3;
            ck_assert(isfinite(v[i]));
            ck_assert_close(v[i], g, 10 * tol_of(dt));
        }
    }
    ad_set_anomaly_mode(anomaly);
    ad_tape_free(t);
}
END_TEST

/* A confident row: s = 1 + e^-30, whose e^-30 is below the rounding of 1
 * in float64, so log s lost it (the loss 1e-3 off at {30, 0}, 0 at
 * {45, 0}); the loss and log_softmax keep it, in both dtypes. */
START_TEST(confident_rows_keep_their_digits)
{
    ad_tape *t = ad_tape_new();
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        double rt = k ? 1e-6 : 1e-15;
        for (int c = 0; c < 2; c++) {
            double top = c ? 45 : 30, want = log1p(exp(-top));
            ad_tensor *x = ad_from_array(t, AD_FLOAT64, 2, (int64_t[]){1, 2}, (double[]){top, 0});
            ad_tensor *xd = ad_cast(x, dt);
            ad_tensor *l = ot_index(t, 1, (int64_t[]){1}, (int64_t[]){0});
            double ce = ad_item(ad_cross_entropy(xd, l, AD_REDUCTION_SUM));
            ck_assert_msg(fabs(ce - want) <= rt * want, "%s: loss at {%g, 0} = %.17g, want %.17g",
                          ad_dtype_name(dt), top, ce, want);
            double ls[2];
            values(ad_log_softmax(xd, 1), ls);
            ck_assert_msg(fabs(ls[0] + want) <= rt * want, "%s: log_softmax = %.17g, want %.17g",
                          ad_dtype_name(dt), ls[0], -want);
        }
    }
    ad_tape_free(t);
}
END_TEST

/* ---- cross_entropy --------------------------------------------------------- */

START_TEST(cross_entropy_hand_values)
{
    ad_tape *t = ad_tape_new();
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        double tol = tol_of(dt), v[4];
        /* row [0, ln3] label 1: log 4 - ln 3; row [ln3, 0] label 1: log 4 */
        ad_tensor *x = mk_grad(t, dt, 2, (int64_t[]){2, 2}, (double[]){0, LN3, LN3, 0});
        ad_tensor *l = ot_index(t, 1, (int64_t[]){2}, (int64_t[]){1, 1});
        ad_tensor *none = ad_cross_entropy(x, l, AD_REDUCTION_NONE);
        ck_assert_int_eq(ad_ndim(none), 1);
        ck_assert_int_eq(ad_size(none, 0), 2);
        values(none, v);
        ck_assert_close(v[0], log(4.0 / 3), tol);
        ck_assert_close(v[1], log(4.0), tol);
        ad_tensor *sum = ad_cross_entropy(x, l, AD_REDUCTION_SUM);
        ck_assert_int_eq(ad_ndim(sum), 0);
        ck_assert_close(ad_item(sum), log(16.0 / 3), tol);
        ad_tensor *mean = ad_cross_entropy(x, l, AD_REDUCTION_MEAN);
        ck_assert_int_eq(ad_ndim(mean), 0);
        ck_assert_close(ad_item(mean), log(16.0 / 3) / 2, tol);
        /* d mean / dx = (p - onehot) / 2 with p = [1/4, 3/4], [3/4, 1/4] */
        backward(mean, NULL);
        values(ad_tensor_grad(x), v);
        ck_assert_close(v[0], 0.125, tol);
        ck_assert_close(v[1], -0.125, tol);
        ck_assert_close(v[2], 0.375, tol);
        ck_assert_close(v[3], -0.375, tol);
        /* none with weights g = [2, -1]: dx_n = g_n (p_n - onehot_n) */
        ad_zero_grad(x);
        backward(none, mk(t, dt, 1, (int64_t[]){2}, (double[]){2, -1}));
        values(ad_tensor_grad(x), v);
        ck_assert_close(v[0], 0.5, tol);
        ck_assert_close(v[1], -0.5, tol);
        ck_assert_close(v[2], -0.75, tol);
        ck_assert_close(v[3], 0.75, tol);
        /* sum, g = 3: dx = 3 (p - onehot) */
        ad_zero_grad(x);
        backward(sum, mk(t, dt, 0, NULL, (double[]){3}));
        values(ad_tensor_grad(x), v);
        ck_assert_close(v[0], 0.75, tol);
        ck_assert_close(v[3], -2.25, tol);
    }
    ad_tape_free(t);
}
END_TEST

/* Random logits: cross-entropy is -log_softmax picked at the label, and the
 * gradient of the mean is (softmax - onehot) / N. */
START_TEST(cross_entropy_closed_forms)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 11);
    enum { N = 5, C = 7 };
    int64_t lab[N];
    for (int i = 0; i < N; i++) lab[i] = (int64_t)ad_rng_below(&rng, C);
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *x = ad_rand(t, &rng, dt, 2, (int64_t[]){N, C}, -3, 3);
        ad_set_requires_grad(x, true);
        ad_tensor *l = ot_index(t, 1, (int64_t[]){N}, lab);
        double ce[N], lsm[N * C], p[N * C], g[N * C];
        values(ad_cross_entropy(x, l, AD_REDUCTION_NONE), ce);
        values(ad_log_softmax(x, 1), lsm);
        values(ad_softmax(x, -1), p);
        double total = 0;
        for (int i = 0; i < N; i++) {
            ck_assert_close(ce[i], -lsm[i * C + lab[i]], 2 * tol_of(dt) * (1 + ce[i]));
            total += ce[i];
        }
        ad_tensor *mean = ad_cross_entropy(x, l, AD_REDUCTION_MEAN);
        ck_assert_close(ad_item(mean), total / N, 2 * tol_of(dt) * (1 + total));
        ck_assert_close(ad_item(ad_cross_entropy(x, l, AD_REDUCTION_SUM)), total,
                        2 * tol_of(dt) * (1 + total));
        backward(mean, NULL);
        values(ad_tensor_grad(x), g);
        for (int i = 0; i < N * C; i++)
            ck_assert_close(g[i], (p[i] - (lab[i / C] == i % C)) / N, tol_of(dt));
    }
    ad_tape_free(t);
}
END_TEST

/* PyTorch's label smoothing: t = (1 - eps) onehot + eps / C. */
START_TEST(cross_entropy_label_smoothing)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 12);
    enum { N = 4, C = 5 };
    const int64_t lab[N] = {0, 4, 2, 2};
    const double epss[3] = {0.1, 0.5, 1.0};
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *x = ad_rand(t, &rng, dt, 2, (int64_t[]){N, C}, -2, 2);
        ad_tensor *l = ot_index(t, 1, (int64_t[]){N}, lab);
        double xv[N * C], lsm[N * C], p[N * C], v[N], g[N * C];
        values(x, xv);
        values(ad_log_softmax(x, 1), lsm);
        values(ad_softmax(x, 1), p);
        /* eps = 0 is plain cross-entropy, bit for bit */
        ck_assert(ad_item(ad_cross_entropy_ls(x, l, AD_REDUCTION_SUM, 0.0)) ==
                  ad_item(ad_cross_entropy(x, l, AD_REDUCTION_SUM)));
        for (int e = 0; e < 3; e++) {
            double eps = epss[e];
            ad_tensor *xg = ad_copy(t, x);
            ad_set_requires_grad(xg, true);
            values(ad_cross_entropy_ls(xg, l, AD_REDUCTION_NONE, eps), v);
            double total = 0;
            for (int i = 0; i < N; i++) {
                /* -sum_c t_c log p_c, and lse - (1-eps) x_y - eps/C sum x */
                double a = 0, sx = 0;
                for (int c = 0; c < C; c++) {
                    double tc = (1 - eps) * (lab[i] == c) + eps / C;
                    a -= tc * lsm[i * C + c];
                    sx += xv[i * C + c];
                }
                double lse = xv[i * C + lab[i]] - lsm[i * C + lab[i]];
                double b = lse - (1 - eps) * xv[i * C + lab[i]] - eps / C * sx;
                ck_assert_close(v[i], a, 4 * tol_of(dt) * (1 + a));
                ck_assert_close(v[i], b, 4 * tol_of(dt) * (1 + b));
                total += v[i];
            }
            ad_tensor *mean = ad_cross_entropy_ls(xg, l, AD_REDUCTION_MEAN, eps);
            ck_assert_close(ad_item(mean), total / N, 4 * tol_of(dt));
            backward(mean, NULL);
            values(ad_tensor_grad(xg), g);
            for (int i = 0; i < N * C; i++) {
                double tc = (1 - eps) * (lab[i / C] == i % C) + eps / C;
                ck_assert_close(g[i], (p[i] - tc) / N, 2 * tol_of(dt));
            }
        }
    }
    ad_tape_free(t);
}
END_TEST

/* Transposed logits and strided labels give the same losses and gradients
 * as contiguous copies of the same values. */
START_TEST(cross_entropy_views)
{
    ad_tape *t = ad_tape_new();
    double a[12], v1[4], v2[4], g1[12], g2[12];
    for (int i = 0; i < 12; i++) a[i] = sin(0.9 * i) * 2;
    /* xt = x^T is [4,3]; contiguous copy c has the same values */
    ad_tensor *x = mk_grad(t, AD_FLOAT64, 2, (int64_t[]){3, 4}, a);
    ad_tensor *lab8 = ot_index(t, 1, (int64_t[]){8}, (int64_t[]){9, 2, 9, 0, 9, 1, 9, 2});
    ad_tensor *lab = ad_slice(lab8, 0, 1, 8, 2); /* [2, 0, 1, 2], stride 2 */
    ck_assert_msg(lab != NULL, "%s", ad_error());
    ck_assert(!ad_is_contiguous(lab));
    ad_tensor *y1 = ad_cross_entropy_ls(ad_transpose(x, 0, 1), lab, AD_REDUCTION_NONE, 0.2);
    values(y1, v1);
    ad_tensor *c = ad_copy(t, ad_transpose(x, 0, 1));
    ad_set_requires_grad(c, true);
    ad_tensor *labc = ot_index(t, 1, (int64_t[]){4}, (int64_t[]){2, 0, 1, 2});
    ad_tensor *y2 = ad_cross_entropy_ls(c, labc, AD_REDUCTION_NONE, 0.2);
    values(y2, v2);
    for (int i = 0; i < 4; i++) ck_assert_close(v1[i], v2[i], 1e-15);
    ad_tensor *w = ot_f64(t, 1, (int64_t[]){4}, (double[]){1, -2, 0.5, 3});
    backward(y1, w);
    backward(y2, w);
    values(ad_tensor_grad(x), g1); /* [3,4]: g1[j*4+i] is c's [i][j] */
    values(ad_tensor_grad(c), g2);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) ck_assert_close(g1[j * 4 + i], g2[i * 3 + j], 1e-15);
    /* label 9 at even positions is never read */
    ck_assert_close(ad_item(ad_cross_entropy(c, lab, AD_REDUCTION_SUM)),
                    ad_item(ad_cross_entropy(c, labc, AD_REDUCTION_SUM)), 0);
    ad_tape_free(t);
}
END_TEST

/* The rule sees the labels of the forward even when the caller rewrites
 * them before backward. */
START_TEST(cross_entropy_keeps_labels)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = mk_grad(t, AD_FLOAT64, 2, (int64_t[]){1, 2}, (double[]){0, LN3});
    ad_tensor *l = ot_index(t, 1, (int64_t[]){1}, (int64_t[]){1});
    ad_tensor *y = ad_cross_entropy(x, l, AD_REDUCTION_SUM);
    ((int64_t *)ad_data(l))[0] = 0;
    backward(y, NULL);
    double g[2];
    values(ad_tensor_grad(x), g);
    ck_assert_close(g[0], 0.25, 1e-15);
    ck_assert_close(g[1], -0.25, 1e-15);
    ad_tape_free(t);
}
END_TEST

/* Second derivatives through the rules (AD_CREATE_GRAPH), as Hessian-vector
 * products H v against closed forms, with p = softmax(x):
 *   f = sum_i w_i log_softmax_i: grad w - p W (W = sum w), H = -W (diag p - p p^T);
 *   f = sum_i w_i softmax_i, c_i = w_i - w.p: grad p c,
 *       (Hv)_i = p_i c_i (v_i - p.v) - p_i sum_j p_j c_j v_j;
 *   f = cross-entropy of one row, any smoothing: H = diag p - p p^T. */
START_TEST(hessians)
{
    ad_tape *t = ad_tape_new();
    const double a[4] = {0.5, -0.7, 1.3, 0.2}, wv[4] = {2, -1, 0.5, 1}, vv[4] = {1, 3, -2, 0.5};
    double p[4], pv = 0, wp = 0, W = 0, pcv = 0, h[4];
    ref_softmax(a, 1, (int64_t[]){4}, 0, false, p);
    for (int i = 0; i < 4; i++) pv += p[i] * vv[i], wp += wv[i] * p[i], W += wv[i];
    for (int i = 0; i < 4; i++) pcv += p[i] * (wv[i] - wp) * vv[i];
    for (int kind = 0; kind < 4; kind++) {
        ad_tensor *x = mk_grad(t, AD_FLOAT64, 2, (int64_t[]){1, 4}, a), *gx, *y;
        ad_tensor *w = ot_f64(t, 2, (int64_t[]){1, 4}, wv), *v = ot_f64(t, 2, (int64_t[]){1, 4}, vv);
        ad_tensor *l = ot_index(t, 1, (int64_t[]){1}, (int64_t[]){2});
        if (kind < 2) y = kind ? ad_log_softmax(x, 1) : ad_softmax(x, -1);
        else y = ad_cross_entropy_ls(x, l, AD_REDUCTION_SUM, kind == 2 ? 0.0 : 0.3), w = NULL;
        ck_assert_msg(ad_gradients(y, w, 1, &x, &gx, AD_CREATE_GRAPH) == 0, "%s", ad_error());
        backward(ad_sum(ad_mul(gx, v), NULL, 0, false), NULL);
        values(ad_tensor_grad(x), h);
        for (int i = 0; i < 4; i++) {
            double c = wv[i] - wp, want = p[i] * vv[i] - p[i] * pv;
            if (kind == 0) want = p[i] * c * (vv[i] - pv) - p[i] * pcv;
            if (kind == 1) want *= -W;
            ck_assert_close(h[i], want, 1e-14);
        }
    }
    ad_tape_free(t);
}
END_TEST

/* A replayed tape recomputes every op of the family from new inputs,
 * labels included, and the gradients after the replay follow the new
 * labels; a replayed label out of range is the same error as a recorded
 * one. */
START_TEST(replay_recomputes)
{
    ad_tape *t = ad_tape_new(), *t2 = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    double a1[12], a2[12], v[12], w[12];
    for (int i = 0; i < 12; i++) a1[i] = sin(i), a2[i] = 3 * cos(2 * i);
    ad_tensor *x = mk_grad(t, AD_FLOAT64, 2, (int64_t[]){3, 4}, a1);
    ad_tensor *lab = ot_index(t, 1, (int64_t[]){3}, (int64_t[]){0, 1, 2});
    ad_tensor *b = ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){3, 4});
    ad_tensor *ys[4] = {ad_cross_entropy_ls(x, lab, AD_REDUCTION_MEAN, 0.1), ad_softmax(x, 0),
                        ad_log_softmax(x, 1), ad_mse_loss(x, b, AD_REDUCTION_SUM)};
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *nx = ot_f64(t2, 2, (int64_t[]){3, 4}, a2);
    ad_tensor *nl = ot_index(t2, 1, (int64_t[]){3}, (int64_t[]){3, 3, 1});
    ck_assert_msg(ad_tape_replay(t, 2, (ad_tensor *[]){x, lab}, (ad_tensor *[]){nx, nl}) >= 0,
                  "%s", ad_error());
    ad_tensor *want[4] = {ad_cross_entropy_ls(nx, nl, AD_REDUCTION_MEAN, 0.1), ad_softmax(nx, 0),
                          ad_log_softmax(nx, 1), ad_mse_loss(nx, ad_zeros(t2, AD_FLOAT64, 2,
                                                                          (int64_t[]){3, 4}),
                                                             AD_REDUCTION_SUM)};
    for (int k = 0; k < 4; k++) {
        values(ys[k], v);
        values(want[k], w);
        for (int64_t i = 0; i < ad_numel(want[k]); i++) ck_assert_close(v[i], w[i], 0);
    }
    backward(ys[0], NULL);
    values(ad_tensor_grad(x), v);
    values(ad_softmax(nx, 1), w);
    for (int i = 0; i < 12; i++) {
        int64_t l = (int64_t[]){3, 3, 1}[i / 4];
        ck_assert_close(v[i], (w[i] - 0.9 * (l == i % 4) - 0.025) / 3, 1e-15);
    }
    ad_tensor *bad = ot_index(t2, 1, (int64_t[]){3}, (int64_t[]){0, 4, 1});
    ck_assert_error_rc(ad_tape_replay(t, 2, (ad_tensor *[]){x, lab}, (ad_tensor *[]){nx, bad}),
                       "ad_cross_entropy_ls: label 4 at position 1 is out of range for 4 classes");
    ad_tape_free(t);
    ad_tape_free(t2);
}
END_TEST

/* One op each: the fused versions record a single node. */
START_TEST(one_node_each)
{
    ad_tape *t = ad_tape_new();
    ad_tape_stats st;
    ad_tensor *x = mk_grad(t, AD_FLOAT64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *b = ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){2, 3});
    ad_tensor *l = ot_index(t, 1, (int64_t[]){2}, (int64_t[]){0, 2});
    ad_tensor *ys[5] = {ad_softmax(x, 1), ad_log_softmax(x, 0),
                        ad_cross_entropy(x, l, AD_REDUCTION_MEAN),
                        ad_cross_entropy_ls(x, l, AD_REDUCTION_NONE, 0.3),
                        ad_mse_loss(x, b, AD_REDUCTION_SUM)};
    ad_tape_get_stats(t, &st);
    ck_assert_uint_eq(st.nodes, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_msg(ys[i] != NULL && ad_requires_grad(ys[i]) && !ad_is_leaf(ys[i]), "op %d", i);
    ad_tape_free(t);
}
END_TEST

/* Empty batch: mean is NaN (as PyTorch), sum 0, none an empty [0]. */
START_TEST(empty_batch)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){0, 5});
    ad_tensor *l = ad_zeros(t, AD_INT64, 1, (int64_t[]){0});
    ck_assert(isnan(ad_item(ad_cross_entropy(x, l, AD_REDUCTION_MEAN))));
    ck_assert_close(ad_item(ad_cross_entropy(x, l, AD_REDUCTION_SUM)), 0.0, 0);
    ad_tensor *none = ad_cross_entropy(x, l, AD_REDUCTION_NONE);
    ck_assert_int_eq(ad_ndim(none), 1);
    ck_assert_int_eq(ad_numel(none), 0);
    ad_tensor *e = ad_zeros(t, AD_FLOAT32, 2, (int64_t[]){3, 0});
    ck_assert(isnan(ad_item(ad_mse_loss(e, e, AD_REDUCTION_MEAN))));
    ck_assert_int_eq(ad_numel(ad_softmax(e, 1)), 0);
    ck_assert_int_eq(ad_numel(ad_log_softmax(e, 0)), 0);
    ad_tape_free(t);
}
END_TEST

/* ---- mse_loss ----------------------------------------------------------------- */

START_TEST(mse_hand_values)
{
    ad_tape *t = ad_tape_new();
    for (int k = 0; k < 2; k++) {
        ad_dtype dt = k ? AD_FLOAT32 : AD_FLOAT64;
        double tol = tol_of(dt), v[3];
        /* a - b = [1, 2, -2]: squares [1, 4, 4], sum 9, mean 3 */
        ad_tensor *a = mk_grad(t, dt, 1, (int64_t[]){3}, (double[]){1, 2, -1});
        ad_tensor *b = mk_grad(t, dt, 1, (int64_t[]){3}, (double[]){0, 0, 1});
        values(ad_mse_loss(a, b, AD_REDUCTION_NONE), v);
        ck_assert_close(v[0], 1, tol);
        ck_assert_close(v[1], 4, tol);
        ck_assert_close(v[2], 4, tol);
        ck_assert_close(ad_item(ad_mse_loss(a, b, AD_REDUCTION_SUM)), 9, tol);
        ad_tensor *mean = ad_mse_loss(a, b, AD_REDUCTION_MEAN);
        ck_assert_close(ad_item(mean), 3, tol);
        /* mean: da = 2 (a - b) / 3, db = -da */
        backward(mean, NULL);
        values(ad_tensor_grad(a), v);
        ck_assert_close(v[0], 2.0 / 3, tol);
        ck_assert_close(v[1], 4.0 / 3, tol);
        ck_assert_close(v[2], -4.0 / 3, tol);
        values(ad_tensor_grad(b), v);
        ck_assert_close(v[0], -2.0 / 3, tol);
        ck_assert_close(v[2], 4.0 / 3, tol);
        /* none with g = [1, 2, 3]: da = 2 g (a - b) */
        ad_zero_grad(a);
        ad_zero_grad(b);
        backward(ad_mse_loss(a, b, AD_REDUCTION_NONE),
                 mk(t, dt, 1, (int64_t[]){3}, (double[]){1, 2, 3}));
        values(ad_tensor_grad(a), v);
        ck_assert_close(v[0], 2, tol);
        ck_assert_close(v[1], 8, tol);
        ck_assert_close(v[2], -12, tol);
        /* sum with g = 0.5: da = a - b; b gets -(a - b) */
        ad_zero_grad(a);
        ad_zero_grad(b);
        backward(ad_mse_loss(a, b, AD_REDUCTION_SUM), mk(t, dt, 0, NULL, (double[]){0.5}));
        values(ad_tensor_grad(b), v);
        ck_assert_close(v[0], -1, tol);
        ck_assert_close(v[1], -2, tol);
        ck_assert_close(v[2], 2, tol);
    }
    ad_tape_free(t);
}
END_TEST

START_TEST(mse_views)
{
    ad_tape *t = ad_tape_new();
    double av[6] = {1, 2, 3, 4, 5, 6}, g[6];
    ad_tensor *a = mk_grad(t, AD_FLOAT64, 2, (int64_t[]){2, 3}, av);
    /* a^T [3,2] = [[1,4],[2,5],[3,6]] against b = [[0,0],[0,0],[0,10]]:
     * squares 1,16,4,25,9,16 sum 71 */
    ad_tensor *b = mk(t, AD_FLOAT64, 2, (int64_t[]){3, 2}, (double[]){0, 0, 0, 0, 0, 10});
    ad_tensor *y = ad_mse_loss(ad_transpose(a, 0, 1), b, AD_REDUCTION_MEAN);
    ck_assert_close(ad_item(y), 71.0 / 6, 1e-14);
    backward(y, NULL);
    values(ad_tensor_grad(a), g);
    /* 2 (a^T - b) / 6, transposed back: element a[1][2] = 6 meets b[2][1] = 10 */
    const double want[6] = {1.0 / 3, 2.0 / 3, 1.0, 4.0 / 3, 5.0 / 3, -4.0 / 3};
    for (int i = 0; i < 6; i++) ck_assert_close(g[i], want[i], 1e-15);
    /* stride 0 against a contiguous tensor: (x - b)^2 of an expanded 2 */
    ad_tensor *s = mk(t, AD_FLOAT32, 1, (int64_t[]){1}, (double[]){2});
    ad_tensor *c = mk(t, AD_FLOAT32, 1, (int64_t[]){4}, (double[]){0, 1, 2, 3});
    ck_assert_close(ad_item(ad_mse_loss(ad_expand(s, 1, (int64_t[]){4}), c, AD_REDUCTION_SUM)),
                    6, 0);
    ad_tape_free(t);
}
END_TEST

/* ---- ownership ----------------------------------------------------------------- */

/* With no tape and no grad the results are persistent and freed by the
 * caller; errors before allocation leak nothing (checked by ASan). */
START_TEST(persistent_results)
{
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){1, 2}, (double[]){0, LN3});
    ad_tensor *l = ad_from_array(NULL, AD_INT64, 1, (int64_t[]){1}, (int64_t[]){0});
    ad_tensor *bad = ad_from_array(NULL, AD_INT64, 1, (int64_t[]){1}, (int64_t[]){2});
    ad_tensor *ys[4] = {ad_softmax(x, 1), ad_log_softmax(x, 1),
                        ad_cross_entropy(x, l, AD_REDUCTION_NONE), ad_mse_loss(x, x, AD_REDUCTION_SUM)};
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(ys[i] != NULL, "%s", ad_error());
        ck_assert(ad_tensor_tape(ys[i]) == NULL);
    }
    ck_assert_close(ot_at(ys[0], 1), 0.75, 1e-15);
    ck_assert_close(ot_at(ys[2], 0), log(4), 1e-15);
    ck_assert_close(ot_at(ys[3], 0), 0, 0);
    ck_assert_error(ad_cross_entropy(x, bad, AD_REDUCTION_MEAN), "label 2 at position 0");
    /* requires grad but no tape to record on */
    ad_set_requires_grad(x, true);
    ck_assert_error(ad_softmax(x, 0), "no tape is active");
    for (int i = 0; i < 4; i++) ad_tensor_free(ys[i]);
    ad_tensor_free(x);
    ad_tensor_free(l);
    ad_tensor_free(bad);
}
END_TEST

/* ---- bad inputs ------------------------------------------------------------------ */

START_TEST(softmax_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){2, 3});
    ad_tensor *i = ad_zeros(t, AD_INT64, 2, (int64_t[]){2, 3});
    ck_assert_error(ad_softmax(NULL, 0), "ad_softmax: argument 'x' is NULL");
    ck_assert_error(ad_log_softmax(NULL, 0), "ad_log_softmax: argument 'x' is NULL");
    ck_assert_error(ad_softmax(i, 0), "ad_softmax: argument 'x' must be float32 or float64, got int64");
    ck_assert_error(ad_log_softmax(i, 1), "ad_log_softmax: argument 'x' must be float32 or float64");
    ck_assert_error(ad_softmax(x, 2), "ad_softmax: axis 2 out of range for a 2-dimensional tensor");
    ck_assert_error(ad_log_softmax(x, -3), "ad_log_softmax: axis -3 out of range for a 2-dimensional");
    /* a NULL from a failed inner call keeps the inner message */
    ck_assert_error(ad_softmax(ad_log_softmax(x, 5), 0), "ad_log_softmax: axis 5 out of range");
    ad_tape_free(t);
}
END_TEST

START_TEST(cross_entropy_errors)
{
    ad_tape *t = ad_tape_new(), *t2 = ad_tape_new();
    ad_tensor *x = ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){4, 5});
    ad_tensor *ok = ot_index(t, 1, (int64_t[]){4}, (int64_t[]){0, 1, 2, 3});
    ad_tensor *oob = ot_index(t, 1, (int64_t[]){4}, (int64_t[]){0, 1, 2, 7});
    ad_tensor *neg = ot_index(t, 1, (int64_t[]){4}, (int64_t[]){-1, 1, 2, 3});
    ad_tensor *fl = ad_zeros(t, AD_FLOAT64, 1, (int64_t[]){4});
    ad_tensor *x1 = ad_zeros(t, AD_FLOAT64, 1, (int64_t[]){5});
    ad_tensor *x3 = ad_zeros(t, AD_FLOAT64, 3, (int64_t[]){4, 5, 1});
    ad_tensor *xi = ad_zeros(t, AD_INT64, 2, (int64_t[]){4, 5});
    ad_tensor *other = ot_index(t2, 1, (int64_t[]){4}, (int64_t[]){0, 1, 2, 3});
    const ad_reduction M = AD_REDUCTION_MEAN;
    ck_assert_error(ad_cross_entropy(x, oob, M),
                    "ad_cross_entropy: label 7 at position 3 is out of range for 5 classes");
    ck_assert_error(ad_cross_entropy(x, neg, AD_REDUCTION_NONE),
                    "ad_cross_entropy: label -1 at position 0 is out of range for 5 classes");
    ck_assert_error(ad_cross_entropy_ls(x, oob, M, 0.1),
                    "ad_cross_entropy_ls: label 7 at position 3 is out of range for 5 classes");
    ck_assert_error(ad_cross_entropy(x1, ok, M), "ad_cross_entropy: logits must be 2-D [N, C], got [5]");
    ck_assert_error(ad_cross_entropy(x3, ok, M), "logits must be 2-D [N, C], got [4,5,1]");
    ck_assert_error(ad_cross_entropy(x, fl, M), "ad_cross_entropy: labels must be int64, got float64");
    ck_assert_error(ad_cross_entropy(x, ot_index(t, 1, (int64_t[]){3}, (int64_t[]){0, 1, 2}), M),
                    "ad_cross_entropy: labels [3] do not match logits [4,5]: need [4]");
    ck_assert_error(ad_cross_entropy(x, ad_zeros(t, AD_INT64, 2, (int64_t[]){4, 1}), M),
                    "labels [4,1] do not match logits [4,5]");
    ck_assert_error(ad_cross_entropy(xi, ok, M),
                    "ad_cross_entropy: argument 'logits' must be float32 or float64, got int64");
    ck_assert_error(ad_cross_entropy(NULL, ok, M), "ad_cross_entropy: argument 'logits' is NULL");
    ck_assert_error(ad_cross_entropy(x, NULL, M), "ad_cross_entropy: argument 'labels' is NULL");
    ck_assert_error(ad_cross_entropy(x, ok, (ad_reduction)7), "ad_cross_entropy: unknown reduction 7");
    ck_assert_error(ad_cross_entropy_ls(x, ok, M, 1.5),
                    "ad_cross_entropy_ls: label smoothing 1.5 is not in [0, 1]");
    ck_assert_error(ad_cross_entropy_ls(x, ok, M, -0.1), "label smoothing -0.1 is not in [0, 1]");
    ck_assert_error(ad_cross_entropy_ls(x, ok, M, NAN), "is not in [0, 1]");
    ck_assert_error(ad_cross_entropy(x, other, M), "ad_cross_entropy: inputs belong to different tapes");
    ck_assert_error(ad_cross_entropy(ad_softmax(x, 2), ok, M), "ad_softmax: axis 2 out of range");
    /* no classes: every label is out of range */
    ck_assert_error(ad_cross_entropy(ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){4, 0}), ok, M),
                    "label 0 at position 0 is out of range for 0 classes");
    ad_tape_free(t);
    ad_tape_free(t2);
}
END_TEST

START_TEST(mse_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ad_zeros(t, AD_FLOAT64, 1, (int64_t[]){3});
    ad_tensor *col = ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){3, 1});
    ad_tensor *f = ad_zeros(t, AD_FLOAT32, 1, (int64_t[]){3});
    ad_tensor *i = ad_zeros(t, AD_INT64, 1, (int64_t[]){3});
    const ad_reduction M = AD_REDUCTION_MEAN;
    ck_assert_error(ad_mse_loss(a, col, M),
                    "ad_mse_loss: shapes differ: [3] vs [3,1] (mse_loss does not broadcast)");
    ck_assert_error(ad_mse_loss(a, ad_zeros(t, AD_FLOAT64, 1, (int64_t[]){1}), AD_REDUCTION_NONE),
                    "ad_mse_loss: shapes differ: [3] vs [1]");
    ck_assert_error(ad_mse_loss(a, f, M), "ad_mse_loss: dtypes differ: float64 vs float32");
    ck_assert_error(ad_mse_loss(i, i, M), "ad_mse_loss: argument 'a' must be float32 or float64, got int64");
    ck_assert_error(ad_mse_loss(a, i, M), "ad_mse_loss: argument 'b' must be float32 or float64");
    ck_assert_error(ad_mse_loss(NULL, a, M), "ad_mse_loss: argument 'a' is NULL");
    ck_assert_error(ad_mse_loss(a, NULL, M), "ad_mse_loss: argument 'b' is NULL");
    ck_assert_error(ad_mse_loss(a, a, (ad_reduction)-1), "ad_mse_loss: unknown reduction -1");
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("softmax");
    tcase_add_test(tc, softmax_hand_values);
    tcase_add_test(tc, softmax_hand_gradients);
    tcase_add_test(tc, softmax_lines_sum_to_one);
    tcase_add_test(tc, softmax_3d_matches_reference);
    tcase_add_test(tc, softmax_views);
    tcase_add_test(tc, float32_lines_of_every_length);
    tcase_add_test(tc, short_lines_alone_and_in_groups);
    tcase_add_test(tc, softmax_stable_at_1000);
    tcase_add_test(tc, hessians);
    suite_add_tcase(s, tc);
    tc = tcase_create("cross_entropy");
    tcase_add_test(tc, cross_entropy_hand_values);
    tcase_add_test(tc, cross_entropy_closed_forms);
    tcase_add_test(tc, cross_entropy_label_smoothing);
    tcase_add_test(tc, cross_entropy_stable_at_1000);
    tcase_add_test(tc, confident_rows_keep_their_digits);
    tcase_add_test(tc, cross_entropy_views);
    tcase_add_test(tc, cross_entropy_keeps_labels);
    tcase_add_test(tc, empty_batch);
    suite_add_tcase(s, tc);
    tc = tcase_create("mse");
    tcase_add_test(tc, mse_hand_values);
    tcase_add_test(tc, mse_views);
    suite_add_tcase(s, tc);
    tc = tcase_create("general");
    tcase_add_test(tc, one_node_each);
    tcase_add_test(tc, persistent_results);
    tcase_add_test(tc, replay_recomputes);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, softmax_errors);
    tcase_add_test(tc, cross_entropy_errors);
    tcase_add_test(tc, mse_errors);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_reduce.c - reductions against hand-derived values: sums over
 * axes, mean, max/min with their tie rule, logsumexp at the extremes, var
 * with its correction and second derivative, sum_to, float32 accumulation,
 * views, replay, and every bad argument. */
#define _POSIX_C_SOURCE 200809L /* setenv, strdup */
#include <stdlib.h>
#include <string.h>

#include "optest.h"

#define T ot_tape /* the per-test tape of ot_tape_setup */

/* 1, 2, ..., n as a float64 tensor of the given shape on T. */
static ad_tensor *iota(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    ad_tensor *x = ad_arange(T, AD_FLOAT64, 1, 1 + (double)n, 1);
    return ad_reshape(x, ndim, shape);
}

#define assert_shape ot_assert_shape
#define assert_values ot_assert_values

/* The gradient of sum(y * w) with respect to the leaf x, w = ones. */
static ad_tensor *grad_of(ad_tensor *y, ad_tensor *x)
{
    ck_assert_msg(y != NULL, "%s", ad_error());
    ad_tensor *g;
    ad_tensor *w = ad_ones(T, ad_tensor_dtype(y), ad_ndim(y), ad_shape(y));
    ck_assert_int_eq(ad_gradients(y, w, 1, &x, &g, 0), 0);
    return g;
}

static ad_tensor *leaf(int ndim, const int64_t *shape, const double *v)
{
    ad_tensor *x = ot_f64(T, ndim, shape, v);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    return x;
}

/* ---- sum ---------------------------------------------------------------------- */
START_TEST(sum_axes)
{
    /* x = [[1,2,3],[4,5,6]] */
    ad_tensor *x = ot_f64(T, AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *all = ad_sum(x, NULL, 0, false);
    assert_shape(all, 0, NULL);
    ck_assert_close(ad_item(all), 21, 0);
    assert_values(ad_sum(x, (int[]){0}, 1, false), (double[]){5, 7, 9}, 3, 0);
    ad_tensor *k = ad_sum(x, (int[]){1}, 1, true);
    assert_shape(k, 2, (int64_t[]){2, 1});
    assert_values(k, (double[]){6, 15}, 2, 0);
    assert_values(ad_sum(x, (int[]){-1}, 1, false), (double[]){6, 15}, 2, 0);
    ad_tensor *k2 = ad_sum(x, NULL, 0, true);
    assert_shape(k2, 2, (int64_t[]){1, 1});
    ck_assert_close(ad_item(k2), 21, 0);
    /* x[i][j][k] = 12 i + 4 j + k + 1 over [2,3,4]: summing i and k leaves
     * sum_i sum_k (12 i + 4 j + k + 1) = 8 (4 j + 1) + 4 * 12 + 2 * 6. */
    ad_tensor *y = iota(3, (int64_t[]){2, 3, 4});
    ad_tensor *s = ad_sum(y, (int[]){2, 0}, 2, false);
    assert_shape(s, 1, (int64_t[]){3});
    for (int j = 0; j < 3; j++) ck_assert_close(ot_at(s, j), 8 * (4 * j + 1) + 48 + 12, 0);
    ad_tensor *s2 = ad_sum(y, (int[]){-3, -1}, 2, true);
    assert_shape(s2, 3, (int64_t[]){1, 3, 1});
    ck_assert_close(ot_at(s2, 2), 8 * 9 + 60, 0);
}
END_TEST

START_TEST(sum_of_empty_and_0d)
{
    ad_tensor *e = ad_zeros(T, AD_FLOAT64, AD_SHAPE(2, 0));
    ck_assert_close(ad_item(ad_sum(e, NULL, 0, false)), 0, 0);
    ad_tensor *r = ad_sum(e, (int[]){1}, 1, false);
    assert_values(r, (double[]){0, 0}, 2, 0);
    ad_tensor *z = ad_scalar_tensor(T, AD_FLOAT64, 2.5);
    ad_tensor *s = ad_sum(z, (int[]){0}, 1, true);
    assert_shape(s, 0, NULL);
    ck_assert_close(ad_item(s), 2.5, 0);
    ck_assert_close(ad_item(ad_sum(z, (int[]){-1}, 1, false)), 2.5, 0);
}
END_TEST

START_TEST(sum_of_views)
{
    /* A transposed view sums along its own axes, not storage order. */
    ad_tensor *x = ot_f64(T, AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *t = ad_transpose(x, 0, 1); /* [[1,4],[2,5],[3,6]] */
    assert_values(ad_sum(t, (int[]){1}, 1, false), (double[]){5, 7, 9}, 3, 0);
    /* An expanded (stride 0) view counts each element once per copy. */
    ad_tensor *v = ot_f64(T, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *e = ad_expand(v, 2, (int64_t[]){4, 3});
    assert_values(ad_sum(e, (int[]){0}, 1, false), (double[]){4, 8, 12}, 3, 0);
    ck_assert_close(ad_item(ad_sum(e, NULL, 0, false)), 24, 0);
    /* A stride-2 slice with an offset. */
    ad_tensor *w = ad_slice(iota(1, (int64_t[]){7}), 0, 1, 7, 2); /* 2, 4, 6 */
    ck_assert_close(ad_item(ad_sum(w, NULL, 0, false)), 12, 0);
}
END_TEST

START_TEST(sum_gradient_spreads)
{
    ad_tensor *x = leaf(AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *y = ad_sum(x, (int[]){1}, 1, false);
    ad_tensor *gy = ot_f64(T, AD_SHAPE(2), (double[]){10, 20});
    ck_assert_int_eq(ad_backward(y, gy, 0), 0);
    assert_values(ad_tensor_grad(x), (double[]){10, 10, 10, 20, 20, 20}, 6, 0);
}
END_TEST

START_TEST(sum_float32_accumulates_in_double)
{
    /* A float32 running sum of a million 0.1f stalls at 2^-7 spacing near
     * 1e5 and ends near 100958; accumulated in double it is 1e6 * 0.1f =
     * 100000.0015 rounded once to float32. */
    int64_t n = 1000000;
    ad_tensor *x = ad_full(T, AD_FLOAT32, 1, &n, 0.1);
    double want = (double)n * (double)0.1f;
    ad_tensor *s = ad_sum(x, NULL, 0, false);
    ck_assert_int_eq(ad_tensor_dtype(s), AD_FLOAT32);
    ck_assert_msg(fabs(ad_item(s) - want) <= 1e-7 * want, "sum %.9g, want %.9g", ad_item(s),
                  want);
    ck_assert_msg(fabs(ad_item(ad_mean(x, NULL, 0, false)) - 0.1) <= 1e-7 * 0.1 + 1e-9,
                  "mean %.9g", ad_item(ad_mean(x, NULL, 0, false)));
    /* The same along an axis (rows of 1000). */
    ad_tensor *m = ad_reshape(x, 2, (int64_t[]){1000, 1000});
    ad_tensor *r = ad_sum(m, (int[]){0}, 1, false);
    ck_assert_close(ot_at(r, 999), (double)(float)(1000 * (double)0.1f), 0);
    ad_tensor *v = ad_var(x, NULL, 0, 1, false);
    ck_assert_close(ad_item(v), 0, 1e-12);
}
END_TEST

/* ---- mean --------------------------------------------------------------------- */
START_TEST(mean_values_and_gradient)
{
    ad_tensor *x = leaf(AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 9});
    assert_values(ad_mean(x, (int[]){1}, 1, false), (double[]){2, 6}, 2, 1e-15);
    assert_values(ad_mean(x, (int[]){0}, 1, true), (double[]){2.5, 3.5, 6}, 3, 1e-15);
    ad_tensor *all = ad_mean(x, NULL, 0, false);
    ck_assert_close(ad_item(all), 4, 1e-15);
    ad_tensor *g = grad_of(all, x);
    for (int i = 0; i < 6; i++) ck_assert_close(ot_at(g, i), 1.0 / 6, 1e-16);
    g = grad_of(ad_mean(x, (int[]){-1}, 1, false), x);
    for (int i = 0; i < 6; i++) ck_assert_close(ot_at(g, i), 1.0 / 3, 1e-16);
}
END_TEST

START_TEST(mean_of_nothing_is_nan)
{
    ad_tensor *e = ad_zeros(T, AD_FLOAT64, AD_SHAPE(0));
    ck_assert(isnan(ad_item(ad_mean(e, NULL, 0, false))));
    ad_tensor *e2 = ad_zeros(T, AD_FLOAT32, AD_SHAPE(2, 0));
    ad_tensor *m = ad_mean(e2, (int[]){1}, 1, false);
    assert_shape(m, 1, (int64_t[]){2});
    ck_assert(isnan(ot_at(m, 0)) && isnan(ot_at(m, 1)));
    /* Reducing only the non-empty axis leaves an empty result. */
    ad_tensor *m2 = ad_mean(e2, (int[]){0}, 1, false);
    assert_shape(m2, 1, (int64_t[]){0});
}
END_TEST

/* ---- max / min -------------------------------------------------------------- */
START_TEST(max_min_values)
{
    ad_tensor *x = ot_f64(T, AD_SHAPE(2, 3), (double[]){3, -1, 7, 0, 8, -5});
    ck_assert_close(ad_item(ad_max(x, NULL, 0, false)), 8, 0);
    ck_assert_close(ad_item(ad_min(x, NULL, 0, false)), -5, 0);
    assert_values(ad_max(x, (int[]){1}, 1, false), (double[]){7, 8}, 2, 0);
    assert_values(ad_min(x, (int[]){0}, 1, true), (double[]){0, -1, -5}, 3, 0);
    assert_shape(ad_min(x, (int[]){0}, 1, true), 2, (int64_t[]){1, 3});
    /* Through a transposed view: max over the original rows. */
    ad_tensor *t = ad_transpose(x, 0, 1);
    assert_values(ad_max(t, (int[]){0}, 1, false), (double[]){7, 8}, 2, 0);
    /* Infinities are ordinary values; NaN wins. */
    ad_tensor *inf = ot_f64(T, AD_SHAPE(3), (double[]){-INFINITY, -INFINITY, -INFINITY});
    ck_assert(isinf(ad_item(ad_max(inf, NULL, 0, false))));
    ad_tensor *nan = ot_f64(T, AD_SHAPE(3), (double[]){1, NAN, 3});
    ck_assert(isnan(ad_item(ad_max(nan, NULL, 0, false))));
    ck_assert(isnan(ad_item(ad_min(nan, NULL, 0, false))));
}
END_TEST

/* Long rows are folded in 16 interleaved lanes (fold_kernels.inc): every
 * lane and the tail after the last full group must count.  For each
 * length around the group size and each position of one extreme value (or
 * NaN): max, min and sum of the row, in both dtypes; a sum over rows too. */
START_TEST(long_rows_every_lane)
{
    for (int dt = 0; dt < 2; dt++)
        for (int64_t n = 1; n <= 70; n += n < 40 ? 1 : 13)
            for (int64_t at = 0; at < n; at++) {
                double *v = malloc((size_t)n * sizeof *v);
                double sum = 0;
                for (int64_t i = 0; i < n; i++) v[i] = (double)((i * 7) % 11) - 5, sum += v[i];
                double big = v[at];
                v[at] = 100;
                sum += 100 - big;
                ad_tensor *x = ot_f64(T, 1, (int64_t[]){n}, v);
                if (dt) x = ad_cast(x, AD_FLOAT32);
                ck_assert(x != NULL);
                ck_assert(ad_item(ad_max(x, NULL, 0, false)) == 100);
                ck_assert(ad_item(ad_sum(x, NULL, 0, false)) == sum); /* small integers: exact */
                v[at] = -100;
                ad_tensor *y = ot_f64(T, 1, (int64_t[]){n}, v);
                if (dt) y = ad_cast(y, AD_FLOAT32);
                ck_assert(ad_item(ad_min(y, NULL, 0, false)) == -100);
                v[at] = NAN;
                ad_tensor *z = ot_f64(T, 1, (int64_t[]){n}, v);
                if (dt) z = ad_cast(z, AD_FLOAT32);
                ck_assert_msg(isnan(ad_item(ad_max(z, NULL, 0, false))), "max n %lld NaN at %lld",
                              (long long)n, (long long)at);
                ck_assert(isnan(ad_item(ad_min(z, NULL, 0, false))));
                ck_assert(isnan(ad_item(ad_sum(z, NULL, 0, false))));
                free(v);
            }
}
END_TEST

void ad__prefetch_testing(int on); /* stream.c (internal) */

/* Rows of 2^16 elements or more are summed, and their maximum and minimum
 * taken, as 8 pieces read side by side (fold_sum_split and
 * fold_extreme_split in fold_kernels.inc), then the remainder: every
 * element counts, whether it opens or closes a piece or sits in the
 * remainder (small integers: the sum is exact; NaN anywhere gives NaN),
 * and the sum has the same bits under each instruction set, with the
 * software prefetch or without, as the order of the additions depends
 * only on the length. */
START_TEST(long_rows_in_pieces)
{
    static const int64_t lens[] = {65535, 65536, 65537, 65536 + 127, 3 * 65536 + 77};
    for (int dt = 0; dt < 2; dt++)
        for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
            int64_t n = lens[li], piece = n / 8 / 16 * 16;
            double *v = malloc((size_t)n * sizeof *v);
            for (int64_t i = 0; i < n; i++) v[i] = (double)((i * 7) % 11) - 5;
            int64_t marks[] = {0, piece - 1, piece, 5 * piece + 3, 8 * piece - 1, n - 1};
            for (size_t k = 0; k < sizeof marks / sizeof *marks; k++) {
                double was = v[marks[k]];
                v[marks[k]] = 1000;
                double sum = 0;
                for (int64_t i = 0; i < n; i++) sum += v[i];
                ad_tensor *x = ot_f64(T, 1, (int64_t[]){n}, v);
                if (dt) x = ad_cast(x, AD_FLOAT32);
                ck_assert_msg(ad_item(ad_sum(x, NULL, 0, false)) == sum, "n %lld mark %lld",
                              (long long)n, (long long)marks[k]);
                ck_assert(ad_item(ad_max(x, NULL, 0, false)) == 1000);
                v[marks[k]] = -1000;
                ad_tensor *y = ot_f64(T, 1, (int64_t[]){n}, v);
                if (dt) y = ad_cast(y, AD_FLOAT32);
                ck_assert(ad_item(ad_min(y, NULL, 0, false)) == -1000);
                v[marks[k]] = NAN;
                ad_tensor *z = ot_f64(T, 1, (int64_t[]){n}, v);
                if (dt) z = ad_cast(z, AD_FLOAT32);
                ck_assert(isnan(ad_item(ad_max(z, NULL, 0, false))));
                ck_assert(isnan(ad_item(ad_min(z, NULL, 0, false))));
                v[marks[k]] = was;
            }
            for (int64_t i = 0; i < n; i++) v[i] = sin(0.37 * (double)i) * 3.1;
            ad_tensor *x = ot_f64(T, 1, (int64_t[]){n}, v);
            if (dt) x = ad_cast(x, AD_FLOAT32);
            /* ... and with the software prefetch of the 8 pieces on or off */
            double by_isa[6];
            static const char *isa[] = {"portable", "avx2", "avx512"};
            for (int k = 0; k < 6; k++) {
                char *saved = ot_isa_hold(isa[k % 3]);
                ad__prefetch_testing(k / 3);
                by_isa[k] = ad_item(ad_sum(x, NULL, 0, false));
                ot_isa_release(saved);
            }
            ad__prefetch_testing(-1);
            for (int k = 1; k < 6; k++)
                ck_assert_msg(memcmp(&by_isa[0], &by_isa[k], sizeof(double)) == 0,
                              "n %lld, %s, prefetch %d: %a against %a", (long long)n,
                              isa[k % 3], k / 3, by_isa[k], by_isa[0]);
            free(v);
        }
}
END_TEST

/* The sums along the last dimension of a contiguous tensor of at least 8
 * rows of 1024 to 65535 are taken 8 rows side by side (fold_rows in
 * fold_kernels.inc): each has the bits of the row-by-row path, for row
 * counts that leave rows over, lengths with a partial group of lanes, a
 * 3-d tensor and keepdim, under each instruction set, with the software
 * prefetch or without, and near the sums in double. */
void ad__reduce_testing_rows(bool enabled); /* ops_reduce.c (internal) */
START_TEST(rows_side_by_side_have_the_row_by_row_bits)
{
    static const int64_t shapes[][3] = {{9, 1024, 0}, {17, 1500, 0}, {8, 4099, 0}, {3, 5, 1030}};
    static const char *isa[] = {"portable", "avx2", "avx512"};
    for (int dt = 0; dt < 2; dt++)
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            int nd = shapes[k][2] ? 3 : 2;
            int64_t n = 1;
            for (int d = 0; d < nd; d++) n *= shapes[k][d];
            double *v = malloc((size_t)n * sizeof *v), *on = malloc((size_t)n * sizeof *on),
                   *off = malloc((size_t)n * sizeof *off);
            for (int64_t i = 0; i < n; i++) v[i] = sin(0.37 * (double)i) * 3.1 + 1e-3 * (double)i;
            ad_tensor *x = ot_f64(T, nd, shapes[k], v);
            if (dt) x = ad_cast(x, AD_FLOAT32);
            int last = nd - 1;
            for (int i = 0; i < 3; i++) {
                char *saved = ot_isa_hold(isa[i]);
                for (int pk = 0; pk < 4; pk++) { /* software prefetch off, on; keepdim */
                    int keep = pk & 1;
                    ad__prefetch_testing(pk >> 1);
                    ad__reduce_testing_rows(false);
                    ad_tensor *a = ad_sum(x, &last, 1, keep);
                    ad__reduce_testing_rows(true);
                    ad_tensor *b = ad_sum(x, &last, 1, keep);
                    int64_t rows = ad_numel(a);
                    ck_assert_int_eq(rows, n / shapes[k][last]);
                    ck_assert_int_eq(ad_to_array(a, off), 0);
                    ck_assert_int_eq(ad_to_array(b, on), 0);
                    for (int64_t r = 0; r < rows; r++) {
                        ck_assert_msg(memcmp(&on[r], &off[r], sizeof on[r]) == 0,
                                      "%s shape %zu row %lld: %a, %a", isa[i], k, (long long)r,
                                      on[r], off[r]);
                        double want = 0;
                        for (int64_t j = 0; j < shapes[k][last]; j++)
                            want += dt ? (double)(float)v[r * shapes[k][last] + j]
                                       : v[r * shapes[k][last] + j];
                        ck_assert_double_eq_tol(on[r], want, (dt ? 1e-6 : 1e-12) * (fabs(want) + 1));
                    }
                }
                ot_isa_release(saved);
            }
            free(v);
            free(on);
            free(off);
        }
    ad__prefetch_testing(-1);
}
END_TEST

START_TEST(max_min_gradient_one_hot)
{
    ad_tensor *x = leaf(AD_SHAPE(2, 3), (double[]){3, -1, 7, 0, 8, -5});
    assert_values(grad_of(ad_max(x, (int[]){1}, 1, false), x), (double[]){0, 0, 1, 0, 1, 0}, 6,
                  0);
    assert_values(grad_of(ad_min(x, NULL, 0, false), x), (double[]){0, 0, 0, 0, 0, 1}, 6, 0);
}
END_TEST

START_TEST(max_min_ties_split_evenly)
{
    /* Two of four tie for the max, three of four for the min. */
    ad_tensor *x = leaf(AD_SHAPE(4), (double[]){1, 3, 3, 2});
    ad_tensor *y = ad_max(x, NULL, 0, false);
    ck_assert_close(ad_item(y), 3, 0);
    ck_assert_int_eq(ad_backward(y, ad_scalar_tensor(T, AD_FLOAT64, 2.0), 0), 0);
    assert_values(ad_tensor_grad(x), (double[]){0, 1, 1, 0}, 4, 0);
    ad_tensor *z = leaf(AD_SHAPE(4), (double[]){-2, 5, -2, -2});
    assert_values(grad_of(ad_min(z, NULL, 0, false), z), (double[]){1.0 / 3, 0, 1.0 / 3, 1.0 / 3},
                  4, 1e-16);
    /* Per row, each row with its own tie count. */
    ad_tensor *m = leaf(AD_SHAPE(2, 3), (double[]){4, 4, 4, 1, 9, 9});
    assert_values(grad_of(ad_max(m, (int[]){1}, 1, false), m),
                  (double[]){1.0 / 3, 1.0 / 3, 1.0 / 3, 0, 0.5, 0.5}, 6, 1e-16);
    /* The split is symmetric: the gradient sums to g whatever the ties. */
    ad_tensor *c = leaf(AD_SHAPE(5), (double[]){7, 7, 7, 7, 7});
    ad_tensor *g = grad_of(ad_max(c, NULL, 0, false), c);
    for (int i = 0; i < 5; i++) ck_assert_close(ot_at(g, i), 0.2, 1e-16);
}
END_TEST

START_TEST(max_tie_rule_is_linear_in_g)
{
    /* With AD_CREATE_GRAPH the max's gradient is a recorded function of the
     * seed: d/dv of sum(dL/dx) with dL/dx = v * mask / ties is
     * sum(mask) / ties = 1 whatever v is. */
    ad_tensor *x = leaf(AD_SHAPE(3), (double[]){2, 5, 5});
    ad_tensor *v = ad_scalar_tensor(T, AD_FLOAT64, 3.0);
    ck_assert_int_eq(ad_set_requires_grad(v, true), 0);
    ad_tensor *y = ad_max(x, NULL, 0, false);
    ad_tensor *gx;
    ck_assert_int_eq(ad_gradients(y, v, 1, &x, &gx, AD_CREATE_GRAPH), 0);
    assert_values(gx, (double[]){0, 1.5, 1.5}, 3, 0);
    ad_tensor *dv;
    ck_assert_int_eq(ad_gradients(ad_sum(gx, NULL, 0, false), NULL, 1, &v, &dv, 0), 0);
    ck_assert_close(ad_item(dv), 1, 0);
}
END_TEST

START_TEST(max_min_float32)
{
    ad_tensor *x = ad_from_array(T, AD_FLOAT32, AD_SHAPE(3), (float[]){0.25f, -4.5f, 1e30f});
    ck_assert_close(ad_item(ad_max(x, NULL, 0, false)), 1e30f, 0);
    ck_assert_close(ad_item(ad_min(x, NULL, 0, false)), -4.5, 0);
    ck_assert_int_eq(ad_tensor_dtype(ad_min(x, NULL, 0, false)), AD_FLOAT32);
}
END_TEST

/* Reducing an outer axis of a contiguous tensor runs the unit-stride
 * loops (one accumulator per column, updated a whole row at a time): NaN
 * still wins wherever it is in its column, and float32 matches float64. */
START_TEST(outer_axis_reductions)
{
    const double v[12] = {NAN, 2, -1, 4, 5, -6, 7, 0.5, 1, 9, -3, NAN};
    for (int k = 0; k < 2; k++) {
        ad_tensor *x = ot_f64(T, AD_SHAPE(3, 4), v);
        if (k) x = ad_cast(x, AD_FLOAT32);
        ad_tensor *mx = ad_max(x, (int[]){0}, 1, false), *mn = ad_min(x, (int[]){0}, 1, true);
        ad_tensor *sm = ad_sum(x, (int[]){0}, 1, false);
        ck_assert_int_eq(ad_tensor_dtype(mx), k ? AD_FLOAT32 : AD_FLOAT64);
        ck_assert(isnan(ot_at(mx, 0)) && isnan(ot_at(mn, 0)) && isnan(ot_at(sm, 0)));
        ck_assert(isnan(ot_at(mx, 3)) && isnan(ot_at(mn, 3)) && isnan(ot_at(sm, 3)));
        ck_assert_close(ot_at(mx, 1), 9, 0);
        ck_assert_close(ot_at(mx, 2), 7, 0);
        ck_assert_close(ot_at(mn, 1), -6, 0);
        ck_assert_close(ot_at(mn, 2), -3, 0);
        ck_assert_close(ot_at(sm, 1), 5, 0);
        ck_assert_close(ot_at(sm, 2), 3, 0);
    }
}
END_TEST

/* Sums over leading axes of a contiguous tensor take a path of their own
 * (fold_cols: 8 rows per pass over the accumulators).  Every result must
 * be the rows added in order in double, exactly, for row counts around
 * multiples of 8, over one or two leading axes, with keepdim, and the same
 * bits when the tensor is a strided view instead (the general path). */
START_TEST(leading_axis_sums_row_by_row)
{
    static const int64_t rows[] = {1, 2, 7, 8, 9, 16, 37};
    for (int k = 0; k < 2; k++)
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            int64_t m = rows[r], n = 29;
            double *v = malloc((size_t)(m * n) * sizeof *v);
            for (int64_t i = 0; i < m * n; i++) v[i] = sin((double)i * 1.7) * 1e3 + 1e-7 * (double)i;
            ad_tensor *x = ot_f64(T, AD_SHAPE(m, n), v);
            if (k) x = ad_cast(x, AD_FLOAT32);
            const double *dv = k ? NULL : ad_data(x);
            const float *fv = k ? ad_data(x) : NULL;
            ad_tensor *s = ad_sum(x, (int[]){0}, 1, false);
            ad_tensor *sk = ad_mean(x, (int[]){0}, 1, true);
            /* [m, n] as [m/... , n]: two leading axes when m splits. */
            ad_tensor *x3 = m % 2 == 0 ? ad_reshape(x, 3, (int64_t[]){2, m / 2, n}) : x;
            ad_tensor *s3 = ad_sum(x3, (int[]){0, 1}, m % 2 == 0 ? 2 : 1, false);
            /* The same values as a strided view: the transpose of a copy
             * laid out [n, m]. */
            ad_tensor *xt = ad_transpose(ad_contiguous(ad_transpose(x, 0, 1)), 0, 1);
            ad_tensor *st = ad_sum(xt, (int[]){0}, 1, false);
            ck_assert_msg(s && sk && s3 && st, "%s", ad_error());
            assert_shape(sk, AD_SHAPE(1, n));
            for (int64_t j = 0; j < n; j++) {
                double want = 0;
                for (int64_t i = 0; i < m; i++) want += k ? (double)fv[i * n + j] : dv[i * n + j];
                double w = k ? (double)(float)want : want;
                ck_assert_msg(ot_at(s, j) == w, "m %lld col %lld: %.17g != %.17g", (long long)m,
                              (long long)j, ot_at(s, j), w);
                ck_assert(ot_at(s3, j) == w && ot_at(st, j) == w);
                double mean = k ? (double)(float)(want / (double)m) : want / (double)m;
                ck_assert(ot_at(sk, j) == mean);
            }
            free(v);
        }
}
END_TEST

/* A float32 matrix of 32 MB or more, past the caches, is summed over its
 * rows in chunks of columns with the next chunk prefetched (fold_cols),
 * where the CPU takes the software prefetch, or 8 whole rows at a time:
 * either way each column's rows added in order in double.  1031 x 8200: 7
 * rows after the last group of 8, and a last chunk of 8 columns. */
START_TEST(leading_axis_sum_of_a_large_matrix)
{
    const int64_t m = 1031, n = 8200;
    ad_tensor *x = ad_empty(NULL, AD_FLOAT32, AD_SHAPE(m, n));
    ck_assert_ptr_nonnull(x);
    float *v = ad_data(x);
    for (int64_t i = 0; i < m * n; i++)
        v[i] = (float)((uint32_t)i * 2654435761u % 1000003u) * 1e-3f - 500.0f;
    for (int chunked = 0; chunked < 2; chunked++) {
        ad__prefetch_testing(chunked);
        ad_tensor *s = ad_sum(x, (int[]){0}, 1, false);
        ck_assert_msg(s != NULL, "%s", ad_error());
        const float *got = ad_data(s);
        for (int64_t j = 0; j < n; j++) {
            double want = 0;
            for (int64_t i = 0; i < m; i++) want += (double)v[i * n + j];
            ck_assert_msg(got[j] == (float)want, "chunked %d, col %lld: %.9g != %.9g", chunked,
                          (long long)j, (double)got[j], (double)(float)want);
        }
        ad_tensor_free(s);
    }
    ad__prefetch_testing(-1);
    ad_tensor_free(x);
}
END_TEST

/* ---- logsumexp ------------------------------------------------------------------- */
START_TEST(logsumexp_values)
{
    ad_tensor *x = ot_f64(T, AD_SHAPE(3), (double[]){1, 2, 3});
    double want = 3 + log(1 + exp(-1.0) + exp(-2.0));
    ck_assert_close(ad_item(ad_logsumexp(x, NULL, 0, false)), want, 1e-15);
    ck_assert_close(want, 3.4076059644443806, 1e-15);
    /* Per row, keepdim. */
    ad_tensor *m = ot_f64(T, AD_SHAPE(2, 2), (double[]){0, 0, log(2.0), log(6.0)});
    ad_tensor *r = ad_logsumexp(m, (int[]){-1}, 1, true);
    assert_shape(r, 2, (int64_t[]){2, 1});
    assert_values(r, (double[]){log(2.0), log(8.0)}, 2, 1e-15);
}
END_TEST

START_TEST(logsumexp_extremes)
{
    /* Naively e^1000 overflows and e^-1000 underflows to log 0. */
    ad_tensor *big = ot_f64(T, AD_SHAPE(2), (double[]){1000, 1000});
    ck_assert_close(ad_item(ad_logsumexp(big, NULL, 0, false)), 1000 + log(2.0), 1e-12);
    ad_tensor *tiny = ot_f64(T, AD_SHAPE(2), (double[]){-1000, -1000});
    ck_assert_close(ad_item(ad_logsumexp(tiny, NULL, 0, false)), -1000 + log(2.0), 1e-12);
    ad_tensor *f32 = ad_from_array(T, AD_FLOAT32, AD_SHAPE(2), (float[]){100.f, 100.f});
    ck_assert_close(ad_item(ad_logsumexp(f32, NULL, 0, false)), 100 + log(2.0), 1e-5);
    /* All -inf is -inf, not NaN; one -inf among finite values drops out. */
    ad_tensor *ninf = ot_f64(T, AD_SHAPE(2, 2), (double[]){-INFINITY, -INFINITY, -INFINITY, 0});
    ad_tensor *r = ad_logsumexp(ninf, (int[]){1}, 1, false);
    ck_assert(isinf(ot_at(r, 0)) && ot_at(r, 0) < 0);
    ck_assert_close(ot_at(r, 1), 0, 0);
    ad_tensor *pinf = ot_f64(T, AD_SHAPE(2), (double[]){INFINITY, 1});
    ck_assert(isinf(ad_item(ad_logsumexp(pinf, NULL, 0, false))));
}
END_TEST

START_TEST(logsumexp_gradient_is_softmax)
{
    ad_tensor *x = leaf(AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *g = grad_of(ad_logsumexp(x, NULL, 0, false), x);
    double z = exp(1.0) + exp(2.0) + exp(3.0);
    assert_values(g, (double[]){exp(1.0) / z, exp(2.0) / z, exp(3.0) / z}, 3, 1e-15);
    /* Stable at large inputs too: softmax of [1000, 1000] is [1/2, 1/2] (to
     * the rounding of y = 1000 + log 2, whose ulp is 1e-13). */
    ad_tensor *b = leaf(AD_SHAPE(2), (double[]){1000, 1000});
    assert_values(grad_of(ad_logsumexp(b, NULL, 0, false), b), (double[]){0.5, 0.5}, 2, 1e-12);
    /* -inf among finite values gets gradient 0. */
    ad_tensor *c = leaf(AD_SHAPE(2), (double[]){-INFINITY, 0});
    assert_values(grad_of(ad_logsumexp(c, NULL, 0, false), c), (double[]){0, 1}, 2, 0);
    /* +inf in a line: y = inf, and e^(x - y) is NaN at the inf (inf - inf)
     * and 0 at the finite entries, which the line's NaN sum must not
     * spread to; another line keeps its softmax */
    ad_tensor *d = leaf(AD_SHAPE(2, 3), (double[]){INFINITY, 1, 2, 0, 0, 0});
    ad_tensor *gd = grad_of(ad_logsumexp(d, (int[]){1}, 1, false), d);
    ck_assert(isnan(ot_at(gd, 0)) && ot_at(gd, 1) == 0 && ot_at(gd, 2) == 0);
    for (int i = 3; i < 6; i++) ck_assert_close(ot_at(gd, i), 1.0 / 3, 1e-15);
}
END_TEST

/* ---- var ---------------------------------------------------------------------------- */
START_TEST(var_values_and_correction)
{
    ad_tensor *x = ot_f64(T, AD_SHAPE(4), (double[]){1, 2, 3, 4});
    ck_assert_close(ad_item(ad_var(x, NULL, 0, 1, false)), 5.0 / 3, 1e-15);
    ck_assert_close(ad_item(ad_var(x, NULL, 0, 0, false)), 1.25, 1e-15);
    ck_assert_close(ad_item(ad_var(x, NULL, 0, 2, false)), 2.5, 1e-15);
    ad_tensor *m = ot_f64(T, AD_SHAPE(2, 3), (double[]){1, 2, 3, 2, 4, 9});
    ad_tensor *r = ad_var(m, (int[]){1}, 1, 1, true);
    assert_shape(r, 2, (int64_t[]){2, 1});
    assert_values(r, (double[]){1, 13}, 2, 1e-14);
    /* Two passes keep the digits a one-pass E[x^2] - E[x]^2 would lose. */
    ad_tensor *far = ot_f64(T, AD_SHAPE(4), (double[]){1e9 + 1, 1e9 + 2, 1e9 + 3, 1e9 + 4});
    ck_assert_close(ad_item(ad_var(far, NULL, 0, 1, false)), 5.0 / 3, 1e-6);
}
END_TEST

START_TEST(var_without_degrees_of_freedom_is_nan)
{
    ad_tensor *one = leaf(AD_SHAPE(1), (double[]){4});
    ad_tensor *v = ad_var(one, NULL, 0, 1, false);
    ck_assert(isnan(ad_item(v)));
    ck_assert(isnan(ot_at(grad_of(v, one), 0)));
    ck_assert_close(ad_item(ad_var(one, NULL, 0, 0, false)), 0, 0);
    ad_tensor *two = ot_f64(T, AD_SHAPE(2), (double[]){1, 2});
    ck_assert(isnan(ad_item(ad_var(two, NULL, 0, 3, false))));
    ad_tensor *e = ad_zeros(T, AD_FLOAT64, AD_SHAPE(0));
    ck_assert(isnan(ad_item(ad_var(e, NULL, 0, 0, false))));
}
END_TEST

START_TEST(var_first_and_second_derivatives)
{
    /* dvar/dx_i = 2 (x_i - mean) / (N - c); the Hessian is
     * 2 / (N - c) (I - 1/N). x = [1,2,4,5], mean 3, c = 1: */
    ad_tensor *x = leaf(AD_SHAPE(4), (double[]){1, 2, 4, 5});
    ad_tensor *v = ad_var(x, NULL, 0, 1, false);
    ck_assert_close(ad_item(v), 10.0 / 3, 1e-15);
    ad_tensor *g;
    ck_assert_int_eq(ad_gradients(v, NULL, 1, &x, &g, AD_CREATE_GRAPH), 0);
    assert_values(g, (double[]){-4.0 / 3, -2.0 / 3, 2.0 / 3, 4.0 / 3}, 4, 1e-15);
    /* Hessian times e_0: (2/3) (e_0 - 1/4). */
    ad_tensor *h;
    ad_tensor *e0 = ot_f64(T, AD_SHAPE(4), (double[]){1, 0, 0, 0});
    ck_assert_int_eq(ad_gradients(ad_sum(ad_mul(g, e0), NULL, 0, false), NULL, 1, &x, &h, 0),
                     0);
    assert_values(h, (double[]){0.5, -1.0 / 6, -1.0 / 6, -1.0 / 6}, 4, 1e-15);
}
END_TEST

/* ---- sum_to -------------------------------------------------------------------------- */
START_TEST(sum_to_values)
{
    ad_tensor *x = iota(3, (int64_t[]){2, 3, 2}); /* 1..12 */
    ad_tensor *a = ad_sum_to(x, 2, (int64_t[]){3, 1});
    assert_shape(a, 2, (int64_t[]){3, 1});
    /* rows j: sum over i, k of 6 i + 2 j + k + 1 */
    assert_values(a, (double[]){1 + 2 + 7 + 8, 3 + 4 + 9 + 10, 5 + 6 + 11 + 12}, 3, 0);
    assert_values(ad_sum_to(x, 1, (int64_t[]){2}), (double[]){36, 42}, 2, 0);
    ck_assert_close(ad_item(ad_sum_to(x, 0, NULL)), 78, 0);
    /* Nothing to sum: a view of x, a tensor of its own with x's values,
     * through which the gradient still flows. */
    ad_tensor *same = ad_sum_to(x, 3, (int64_t[]){2, 3, 2});
    ck_assert_ptr_nonnull(same);
    ck_assert_ptr_ne(same, x);
    assert_shape(same, 3, (int64_t[]){2, 3, 2});
    assert_values(same, (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 12, 0);
    ad_tensor *l2 = leaf(AD_SHAPE(2), (double[]){3, 4});
    ad_tensor *s2 = ad_mul(ad_sum_to(l2, 1, (int64_t[]){2}), l2); /* l2^2 */
    ck_assert_int_eq(ad_backward(s2, ot_f64(T, AD_SHAPE(2), (double[]){1, 1}), 0), 0);
    assert_values(ad_tensor_grad(l2), (double[]){6, 8}, 2, 0);
    /* Gradient: expand back. */
    ad_tensor *l = leaf(AD_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *s = ad_sum_to(l, 2, (int64_t[]){1, 2});
    ck_assert_int_eq(ad_backward(s, ot_f64(T, AD_SHAPE(1, 2), (double[]){5, 7}), 0), 0);
    assert_values(ad_tensor_grad(l), (double[]){5, 7, 5, 7}, 4, 0);
}
END_TEST

/* ---- ownership, replay ------------------------------------------------------------------ */
START_TEST(persistent_results)
{
    /* With no tape anywhere the result belongs to the caller. */
    ad_tape_activate(NULL);
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *r[6] = {
        ad_sum(x, NULL, 0, false),    ad_mean(x, (int[]){0}, 1, false),
        ad_max(x, NULL, 0, true),     ad_min(x, (int[]){1}, 1, false),
        ad_logsumexp(x, NULL, 0, false), ad_var(x, NULL, 0, 1, false),
    };
    double want[6] = {10, 2, 4, 1, 4 + log(1 + exp(-1.0) + exp(-2.0) + exp(-3.0)), 5.0 / 3};
    for (int i = 0; i < 6; i++) {
        ck_assert_msg(r[i] != NULL, "%s", ad_error());
        ck_assert_ptr_null(ad_tensor_tape(r[i]));
        ck_assert_close(ot_at(r[i], 0), want[i], 1e-14);
        ad_tensor_free(r[i]);
    }
    ad_tensor *s = ad_sum_to(x, 1, (int64_t[]){2});
    assert_values(s, (double[]){4, 6}, 2, 0);
    ad_tensor_free(s);
    /* Nothing to sum: still a new tensor (it was x itself, and freeing
     * both freed x twice). */
    ad_tensor *same = ad_sum_to(x, 2, (int64_t[]){2, 2});
    ck_assert_ptr_nonnull(same);
    ck_assert_ptr_ne(same, x);
    assert_values(same, (double[]){1, 2, 3, 4}, 4, 0);
    ad_tensor_free(same);
    assert_values(x, (double[]){1, 2, 3, 4}, 4, 0);
    ad_tensor_free(x);
    ad_tape_activate(T);
}
END_TEST

START_TEST(replay_recomputes)
{
    ck_assert_int_eq(ad_tape_set_replayable(T, true), 0);
    ad_tensor *x = leaf(AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *y[7] = {
        ad_sum(x, (int[]){1}, 1, false), ad_mean(x, NULL, 0, false),
        ad_max(x, (int[]){0}, 1, false), ad_min(x, NULL, 0, false),
        ad_logsumexp(x, (int[]){1}, 1, true), ad_var(x, (int[]){1}, 1, 0, false),
        ad_sum_to(x, 1, (int64_t[]){3}),
    };
    for (int i = 0; i < 7; i++) ck_assert_msg(y[i] != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_tape_freeze(T), 0);
    double nv[6] = {6, -1, 0, 2, 2, 2};
    memcpy(ad_data(x), nv, sizeof nv);
    ck_assert_int_ge(ad_tape_replay(T, 0, NULL, NULL), 0);
    assert_values(y[0], (double[]){5, 6}, 2, 0);
    ck_assert_close(ot_at(y[1], 0), 11.0 / 6, 1e-15);
    assert_values(y[2], (double[]){6, 2, 2}, 3, 0);
    ck_assert_close(ot_at(y[3], 0), -1, 0);
    assert_values(y[4], (double[]){6 + log(1 + exp(-7.0) + exp(-6.0)), 2 + log(3.0)}, 2, 1e-14);
    assert_values(y[5], (double[]){86.0 / 9, 0}, 2, 1e-14);
    assert_values(y[6], (double[]){8, 1, 2}, 3, 0);
    /* And the replayed max differentiates at its new argmax. */
    ck_assert_int_eq(ad_backward(ad_sum(y[2], NULL, 0, false), NULL, AD_RETAIN_GRAPH), 0);
    assert_values(ad_tensor_grad(x), (double[]){1, 0, 0, 0, 1, 1}, 6, 0);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------- */
START_TEST(errors)
{
    ad_tensor *x = ot_f64(T, AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *i64 = ad_zeros(T, AD_INT64, AD_SHAPE(3));
    ck_assert_error(ad_sum(NULL, NULL, 0, false), "ad_sum: argument 'x' is NULL");
    ck_assert_error(ad_mean(NULL, NULL, 0, false), "ad_mean: argument 'x' is NULL");
    ck_assert_error(ad_max(NULL, NULL, 0, false), "ad_max: argument 'x' is NULL");
    ck_assert_error(ad_min(NULL, NULL, 0, false), "ad_min: argument 'x' is NULL");
    ck_assert_error(ad_logsumexp(NULL, NULL, 0, false), "ad_logsumexp: argument 'x' is NULL");
    ck_assert_error(ad_var(NULL, NULL, 0, 1, false), "ad_var: argument 'x' is NULL");
    ck_assert_error(ad_sum_to(NULL, 0, NULL), "ad_sum_to: argument 'x' is NULL");
    ck_assert_error(ad_sum(i64, NULL, 0, false),
                    "ad_sum: argument 'x' must be float32 or float64, got int64");
    ck_assert_error(ad_mean(i64, NULL, 0, false), "must be float32 or float64, got int64");
    ck_assert_error(ad_max(i64, NULL, 0, false), "ad_max: argument 'x' must be float32");
    ck_assert_error(ad_var(i64, NULL, 0, 0, false), "ad_var: argument 'x' must be float32");
    ck_assert_error(ad_sum_to(i64, 0, NULL), "ad_sum_to: argument 'x' must be float32");
    ck_assert_error(ad_sum(x, (int[]){1, 1}, 2, false), "ad_sum: axis 1 repeated");
    ck_assert_error(ad_var(x, (int[]){0, -2}, 2, 1, false), "ad_var: axis -2 repeated");
    ck_assert_error(ad_mean(x, (int[]){2}, 1, false),
                    "ad_mean: axis 2 out of range for a 2-dimensional tensor");
    ck_assert_error(ad_max(x, (int[]){-3}, 1, false), "ad_max: axis -3 out of range");
    ck_assert_error(ad_logsumexp(x, (int[]){0, 1, 0}, 3, false),
                    "ad_logsumexp: naxes 3 out of range");
    ck_assert_error(ad_min(x, NULL, 1, false), "ad_min: axes is NULL with naxes 1");
    ck_assert_error(ad_sum(x, NULL, -1, false), "naxes -1 out of range");
    ad_tensor *z = ad_scalar_tensor(T, AD_FLOAT64, 1);
    ck_assert_error(ad_sum(z, (int[]){1}, 1, false),
                    "ad_sum: axis 1 out of range for a 0-dimensional");
    /* Empty reductions have no max, min or logsumexp. */
    ad_tensor *e = ad_zeros(T, AD_FLOAT64, AD_SHAPE(2, 0));
    ck_assert_error(ad_max(e, (int[]){1}, 1, false),
                    "ad_max: empty reduction: a reduced dimension of [2,0] has extent 0");
    ck_assert_error(ad_min(e, NULL, 0, false), "ad_min: empty reduction");
    ck_assert_error(ad_logsumexp(e, (int[]){-1}, 1, true), "ad_logsumexp: empty reduction");
    /* ...but reducing only the non-empty axis is fine (an empty result). */
    ad_tensor *ok = ad_max(e, (int[]){0}, 1, false);
    assert_shape(ok, 1, (int64_t[]){0});
    ck_assert_error(ad_sum_to(x, 2, (int64_t[]){2, 2}),
                    "ad_sum_to: shape [2,3] cannot be summed to [2,2]");
    ck_assert_error(ad_sum_to(x, 3, (int64_t[]){1, 2, 3}), "cannot be summed to [1,2,3]");
    ck_assert_error(ad_sum_to(x, 1, (int64_t[]){-1}), "ad_sum_to: negative extent");
    /* A failed inner call's message survives. */
    ck_assert_error(ad_sum(ad_max(e, NULL, 0, false), NULL, 0, false), "ad_max: empty reduction");
}
END_TEST

/* ---- short forms ------------------------------------------------------------------ */

START_TEST(short_forms)
{
    int64_t sh[2] = {2, 3};
    ad_tensor *x = leaf(2, sh, (double[]){1, -2, 3, 4, 5, -6});
    ad_tensor *s = ad_sum_all(x), *m = ad_mean_all(x), *hi = ad_max_all(x), *lo = ad_min_all(x);
    ck_assert_int_eq(ad_ndim(s), 0);
    ck_assert_close(ad_item(s), 5, 0);
    ck_assert_close(ad_item(m), 5.0 / 6, 1e-15);
    ck_assert_close(ad_item(hi), 5, 0);
    ck_assert_close(ad_item(lo), -6, 0);
    ad_tensor *r = ad_sum_dim(x, 1, false), *c = ad_mean_dim(x, 0, true);
    assert_shape(r, 1, (int64_t[]){2});
    assert_values(r, (double[]){2, 3}, 2, 0);
    assert_shape(c, 2, (int64_t[]){1, 3});
    assert_values(c, (double[]){2.5, 1.5, -1.5}, 3, 0);
    /* the same ops as the long forms: the same gradients */
    assert_values(grad_of(m, x), (double[]){1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6, 1.0 / 6},
                  6, 1e-16);
    assert_values(grad_of(hi, x), (double[]){0, 0, 0, 0, 1, 0}, 6, 0);
    assert_values(grad_of(c, x), (double[]){0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, 6, 0);
    ck_assert_error(ad_sum_dim(x, 2, false), "ad_sum_dim: ");
    ck_assert_error(ad_sum_all(NULL), "ad_sum_all: ");
    ck_assert_error(ad_max_all(ad_zeros(T, AD_FLOAT64, 1, (int64_t[]){0})), "ad_max_all: ");
    ck_assert_error(ad_mean_all(ad_zeros(T, AD_INT64, 1, (int64_t[]){2})), "ad_mean_all: ");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reduce");
    TCase *tc = tcase_create("reduce");
    tcase_add_checked_fixture(tc, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(tc, sum_axes);
    tcase_add_test(tc, sum_of_empty_and_0d);
    tcase_add_test(tc, sum_of_views);
    tcase_add_test(tc, sum_gradient_spreads);
    tcase_add_test(tc, sum_float32_accumulates_in_double);
    tcase_add_test(tc, mean_values_and_gradient);
    tcase_add_test(tc, mean_of_nothing_is_nan);
    tcase_add_test(tc, max_min_values);
    tcase_add_test(tc, long_rows_every_lane);
    tcase_add_test(tc, long_rows_in_pieces);
    tcase_add_test(tc, rows_side_by_side_have_the_row_by_row_bits);
    tcase_add_test(tc, max_min_gradient_one_hot);
    tcase_add_test(tc, max_min_ties_split_evenly);
    tcase_add_test(tc, max_tie_rule_is_linear_in_g);
    tcase_add_test(tc, max_min_float32);
    tcase_add_test(tc, leading_axis_sums_row_by_row);
    tcase_add_test(tc, leading_axis_sum_of_a_large_matrix);
    tcase_add_test(tc, logsumexp_values);
    tcase_add_test(tc, logsumexp_extremes);
    tcase_add_test(tc, logsumexp_gradient_is_softmax);
    tcase_add_test(tc, var_values_and_correction);
    tcase_add_test(tc, var_without_degrees_of_freedom_is_nan);
    tcase_add_test(tc, var_first_and_second_derivatives);
    tcase_add_test(tc, sum_to_values);
    tcase_add_test(tc, outer_axis_reductions);
    tcase_add_test(tc, persistent_results);
    tcase_add_test(tc, replay_recomputes);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, short_forms);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

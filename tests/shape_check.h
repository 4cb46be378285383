/* tests/shape_check.h - assertions and builders shared by test_shape.c and
 * test_index.c: exact values, shapes and strides, small tensors, and a
 * backward pass with distinguishable weights. */
#ifndef SHAPE_CHECK_H
#define SHAPE_CHECK_H

#include "optest.h"

#include <stdint.h>
#include <string.h>

static inline void expect_vals(const ad_tensor *t, int64_t n, const double *want, const char *what)
{
    ck_assert_msg(t != NULL, "%s is NULL: %s", what, ad_error() ? ad_error() : "");
    ck_assert_msg(ad_numel(t) == n, "%s has %lld elements, expected %lld", what,
                  (long long)ad_numel(t), (long long)n);
    double buf[256];
    ck_assert(n <= 256);
    ck_assert_int_eq(ad_to_array(t, buf), 0);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(buf[i] == want[i], "%s element %d = %.17g, expected %.17g", what, (int)i,
                      buf[i], want[i]);
}
#define EXPECT(t, ...)                                                                 \
    do {                                                                               \
        const double w_[] = {__VA_ARGS__};                                             \
        expect_vals((t), (int64_t)(sizeof w_ / sizeof w_[0]), w_, #t);                 \
    } while (0)
#define EXPECT_EMPTY(t) expect_vals((t), 0, NULL, #t)

static inline void expect_dims(const ad_tensor *t, int nd, const int64_t *v, const int64_t *got,
                        const char *what)
{
    ck_assert_msg(t != NULL, "%s is NULL: %s", what, ad_error() ? ad_error() : "");
    ck_assert_msg(ad_ndim(t) == nd, "%s has %d dims, expected %d", what, ad_ndim(t), nd);
    for (int d = 0; d < nd; d++)
        ck_assert_msg(got[d] == v[d], "%s[%d] = %lld, expected %lld", what, d, (long long)got[d],
                      (long long)v[d]);
}
#define SHAPE_IS(t, ...)                                                               \
    do {                                                                               \
        const int64_t s_[] = {__VA_ARGS__};                                            \
        expect_dims((t), (int)(sizeof s_ / sizeof s_[0]), s_, ad_shape(t), #t " shape"); \
    } while (0)
#define STRIDES_ARE(t, ...)                                                            \
    do {                                                                               \
        const int64_t s_[] = {__VA_ARGS__};                                            \
        expect_dims((t), (int)(sizeof s_ / sizeof s_[0]), s_, ad_strides(t), #t " strides"); \
    } while (0)

/* A float64 leaf of the shape holding 0, 1, 2, ... in row-major order. */
static inline ad_tensor *lin(ad_tape *t, int nd, const int64_t *shape)
{
    ad_tensor *x = ad_empty(t, AD_FLOAT64, nd, shape);
    ck_assert(x != NULL);
    double *d = ad_data(x);
    for (int64_t i = 0; i < ad_numel(x); i++) d[i] = (double)i;
    return x;
}
#define LIN(t, ...) lin((t), AD_SHAPE(__VA_ARGS__))
#define F64(t, shape, ...) ot_f64((t), shape, (const double[]){__VA_ARGS__})
#define IDX(t, shape, ...) ot_index((t), shape, (const int64_t[]){__VA_ARGS__})
#define S(...) AD_SHAPE(__VA_ARGS__)

static inline ad_tensor *leaf_grad(ad_tensor *x)
{
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    return x;
}

/* Backward from y with grad_output 1, 2, 3, ... (row-major), so each
 * gradient entry shows which output elements reached it. */
static inline void backward_w(ad_tensor *y)
{
    ck_assert_msg(y != NULL, "%s", ad_error() ? ad_error() : "");
    ad_tensor *w = ad_empty(ad_tensor_tape(y), ad_tensor_dtype(y), ad_ndim(y), ad_shape(y));
    ck_assert(w != NULL);
    ad_tensor *wf = ad_reshape(w, 1, (int64_t[]){ad_numel(y)});
    for (int64_t k = 0; k < ad_numel(y); k++) ad_set(wf, (int64_t[]){k}, (double)(k + 1));
    ck_assert_msg(ad_backward(y, w, 0) == 0, "%s", ad_error());
}

static inline double get(const ad_tensor *t, const int64_t *idx)
{
    double v;
    ck_assert_int_eq(ad_get(t, idx, &v), 0);
    return v;
}

#endif

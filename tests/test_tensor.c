#define _POSIX_C_SOURCE 200809L /* for fmemopen */
/* tests/test_tensor.c - creation, element access, copies, ownership, the
 * counter-based RNG and printing. */
#include <stdlib.h>
#include <string.h>

#include "../autodiff/alloc.h"
#include "../autodiff/internal.h"
#include "optest.h"

START_TEST(creation_values)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *z = ad_zeros(t, AD_FLOAT32, AD_SHAPE(2, 3));
    ck_assert_int_eq(ad_ndim(z), 2);
    ck_assert_int_eq(ad_size(z, 0), 2);
    ck_assert_int_eq(ad_size(z, -1), 3);
    ck_assert_int_eq(ad_numel(z), 6);
    ck_assert_int_eq(ad_tensor_dtype(z), AD_FLOAT32);
    ck_assert(ad_is_contiguous(z));
    ck_assert_int_eq(ad_strides(z)[0], 3);
    ck_assert_int_eq(ad_strides(z)[1], 1);
    ck_assert_close(ot_at(z, 5), 0, 0);
    ck_assert_close(ot_at(ad_ones(t, AD_FLOAT64, AD_SHAPE(4)), 3), 1, 0);
    ck_assert_close(ot_at(ad_full(t, AD_FLOAT32, AD_SHAPE(2, 2), 0.1), 3), (float)0.1, 0);
    ad_tensor *s = ad_scalar_tensor(t, AD_FLOAT64, 2.5);
    ck_assert_int_eq(ad_ndim(s), 0);
    ck_assert_int_eq(ad_numel(s), 1);
    ck_assert_close(ad_item(s), 2.5, 0);
    float data[] = {1, 2, 3, 4, 5, 6};
    ad_tensor *a = ad_from_array(t, AD_FLOAT32, AD_SHAPE(3, 2), data);
    double v;
    ck_assert_int_eq(ad_get(a, (int64_t[]){2, 1}, &v), 0);
    ck_assert_close(v, 6, 0);
    ck_assert_int_eq(ad_get(a, (int64_t[]){-1, 0}, &v), 0); /* negative index */
    ck_assert_close(v, 5, 0);
    ck_assert_int_eq(ad_set(a, (int64_t[]){0, 1}, -7), 0);
    ck_assert_close(((float *)ad_data(a))[1], -7, 0);
    int64_t idx[] = {3, 1, 4};
    ad_tensor *it = ad_from_array(t, AD_INT64, AD_SHAPE(3), idx);
    ck_assert_close(ot_at(it, 2), 4, 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(ranges)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *r = ad_arange(t, AD_FLOAT64, 0, 1, 0.25);
    ck_assert_int_eq(ad_numel(r), 4);
    ck_assert_close(ot_at(r, 3), 0.75, 0);
    ad_tensor *d = ad_arange(t, AD_INT64, 5, 0, -2); /* 5 3 1 */
    ck_assert_int_eq(ad_numel(d), 3);
    ck_assert_close(ot_at(d, 2), 1, 0);
    ck_assert_int_eq(ad_numel(ad_arange(t, AD_FLOAT64, 3, 3, 1)), 0);
    /* int64 past 2^53 counts in integers (in double: 2^53 three times) */
    ad_tensor *big = ad_arange(t, AD_INT64, 9007199254740990.0, 9007199254741000.0, 1);
    ck_assert_int_eq(ad_numel(big), 10);
    const int64_t *bv = ad_data(big);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(bv[i], 9007199254740990LL + i);
    ad_tensor *l = ad_linspace(t, AD_FLOAT64, -1, 1, 5);
    ck_assert_close(ot_at(l, 1), -0.5, 1e-15);
    ck_assert_close(ot_at(l, 4), 1, 0);
    ck_assert_close(ot_at(ad_linspace(t, AD_FLOAT32, 2, 9, 1), 0), 2, 0);
    ad_tensor *e = ad_eye(t, AD_FLOAT64, 3);
    ck_assert_close(ot_at(e, 4), 1, 0);
    ck_assert_close(ot_at(e, 5), 0, 0);
    ck_assert_error(ad_arange(t, AD_FLOAT64, 0, 1, 0), "step non-zero");
    ck_assert_error(ad_arange(t, AD_FLOAT64, 0, INFINITY, 1), "finite");
    ck_assert_error(ad_linspace(t, AD_FLOAT64, 0, 1, 0), "n >= 1");
    ad_tape_free(t);
}
END_TEST

START_TEST(bad_shapes)
{
    ck_assert_error(ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(2, -3)), "ad_zeros: negative extent -3");
    ck_assert_error(ad_zeros(NULL, AD_FLOAT64, 9, (int64_t[9]){1}), "ndim 9 out of range 0..8");
    ck_assert_error(ad_zeros(NULL, AD_FLOAT64, 2, NULL), "shape is NULL");
    ck_assert_error(ad_zeros(NULL, (ad_dtype)7, AD_SHAPE(2)), "invalid dtype 7");
    /* 2^40 * 2^40 elements overflow any size: refused before allocating */
    ck_assert_error(ad_ones(NULL, AD_FLOAT64, AD_SHAPE(1LL << 40, 1LL << 40)), "too many elements");
    ck_assert_error(ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), NULL), "data is NULL");
    ad_tensor *z = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(0, 3)); /* empty is fine */
    ck_assert_ptr_nonnull(z);
    ck_assert_int_eq(ad_numel(z), 0);
    ad_tensor_free(z);
    /* ... but not with extents whose strides would overflow (a file's
     * header can ask for [0, 2^62, 2^62]) */
    ck_assert_error(ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(0, 1LL << 40, 1LL << 40)),
                    "too many elements (its strides, if not its elements)");
}
END_TEST

START_TEST(access_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ad_zeros(t, AD_FLOAT64, AD_SHAPE(2, 3));
    double v;
    ck_assert_error_rc(ad_get(a, (int64_t[]){2, 0}, &v),
                       "ad_get: index 2 out of range for dimension 0 of shape [2,3]");
    ck_assert_error_rc(ad_set(a, (int64_t[]){0, -4}, 1), "index -4 out of range for dimension 1");
    ck_assert_error_rc(ad_get(a, NULL, &v), "index is NULL");
    ck_assert(isnan(ad_item(a)));
    ck_assert_msg(strstr(ad_error(), "shape [2,3] does not have exactly one element"), "%s",
                  ad_error());
    ad_clear_error();
    ck_assert_int_eq(ad_size(a, 2), -1);
    ck_assert_msg(strstr(ad_error(), "axis 2 out of range"), "%s", ad_error());
    ck_assert_error_rc(ad_tensor_free(a), "belongs to a tape");
    ck_assert_int_eq(ad_ndim(NULL), -1);
    ad_clear_error();
    ad_tape_free(t);
}
END_TEST

START_TEST(copies_and_casts)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ot_f64(t, 2, (int64_t[]){2, 2}, (double[]){1.5, 2.5, 3.5, 4.5});
    ad_tensor *p = ad_copy(NULL, a);
    ck_assert_ptr_null(ad_tensor_tape(p));
    ad_set(a, (int64_t[]){0, 0}, 9);
    ck_assert_close(ot_at(p, 0), 1.5, 0); /* a real copy */
    ad_tensor *f = ad_empty(t, AD_FLOAT32, AD_SHAPE(2, 2));
    ck_assert_int_eq(ad_copy_into(f, a), 0);
    ck_assert_close(ot_at(f, 0), 9, 0);
    ad_tensor *wrong = ad_empty(t, AD_FLOAT32, AD_SHAPE(4));
    ck_assert_error_rc(ad_copy_into(wrong, a), "shapes differ: dst [4], src [2,2]");
    ck_assert_int_eq(ad_fill(f, -1), 0);
    ck_assert_close(ot_at(f, 3), -1, 0);
    /* a broadcast (stride 0) view copies into contiguous memory */
    ad_tensor *row = ot_f64(t, 2, (int64_t[]){1, 3}, (double[]){1, 2, 3});
    ad_tensor *big = ad_expand(row, AD_SHAPE(4, 3));
    ck_assert(!ad_is_contiguous(big));
    ck_assert_ptr_null(ad_data(big));
    ad_clear_error();
    ad_tensor *c = ad_copy(t, big);
    ck_assert(ad_is_contiguous(c));
    ck_assert_close(ot_at(c, 11), 3, 0);
    double buf[12];
    ck_assert_int_eq(ad_to_array(big, buf), 0);
    ck_assert_close(buf[7], 2, 0);
    ad_tensor_free(p);
    ad_tape_free(t);
}
END_TEST

/* Edges a review found: an empty tensor whose zero extent is not the
 * first was non-contiguous (ad_data refused it, and ad_contiguous's copy
 * too); ad_full and ad_scalar_tensor stored +0 for -0; ad_linspace into
 * int64 took ends past int64 (1e30 -> INT64_MIN); int64 -> float32
 * rounded twice, through double. */
START_TEST(creation_and_cast_edges)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *e1 = ad_zeros(t, AD_FLOAT32, AD_SHAPE(3, 0));
    ad_tensor *e2 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(2, 0, 3));
    ad_tensor *e3 = ad_narrow(ad_zeros(t, AD_FLOAT64, AD_SHAPE(2, 4)), 1, 1, 0);
    ck_assert(ad_is_contiguous(e1) && ad_is_contiguous(e2) && ad_is_contiguous(e3));
    ck_assert(ad_is_contiguous(ad_contiguous(e3)));
    ad_tensor *nz = ad_full(t, AD_FLOAT64, AD_SHAPE(2), -0.0);
    ad_tensor *nz32 = ad_full(t, AD_FLOAT32, AD_SHAPE(2), -0.0);
    ad_tensor *nzs = ad_scalar_tensor(t, AD_FLOAT64, -0.0);
    ck_assert(signbit(ot_at(nz, 1)) && signbit(ot_at(nz32, 0)) && signbit(ot_at(nzs, 0)));
    ck_assert(!signbit(ot_at(ad_full(t, AD_FLOAT64, AD_SHAPE(2), 0.0), 1)));
    ck_assert_error(ad_linspace(t, AD_INT64, 0, 1e30, 3), "ad_linspace");
    ck_assert_error(ad_linspace(t, AD_INT64, -1e19, 0, 3), "ad_linspace");
    ad_tensor *ls = ad_linspace(t, AD_INT64, 0, 10, 3);
    ck_assert_ptr_nonnull(ls);
    ck_assert_int_eq(((const int64_t *)ad_data(ls))[1], 5);
    int64_t big = ((int64_t)1 << 60) + ((int64_t)1 << 36) + 1;
    ad_tensor *i64 = ad_from_array(t, AD_INT64, AD_SHAPE(1), (double[]){0});
    ((int64_t *)ad_data(i64))[0] = big;
    ad_tensor *f = ad_cast(i64, AD_FLOAT32);
    ck_assert_ptr_nonnull(f);
    /* 2^60 + 2^37 = 1152921642045800448, the float nearest to big (its
     * spacing there is 2^37); through double it became 2^60 */
    const float near = 0x1p60f + 0x1p37f;
    ck_assert(((const float *)ad_data(f))[0] == near);
    ad_tensor *g = ad_empty(t, AD_FLOAT32, AD_SHAPE(1));
    ck_assert_int_eq(ad_copy_into(g, i64), 0);
    ck_assert(((const float *)ad_data(g))[0] == near);
    /* ties to even, both signs, and INT64_MIN */
    int64_t iv[5] = {-big, ((int64_t)1 << 40) + ((int64_t)1 << 16), /* a tie: to even, 2^40 */
                     ((int64_t)1 << 40) + 3 * ((int64_t)1 << 16), INT64_MIN, 16777217};
    const float fv[5] = {-near, 0x1p40f, 0x1p40f + 0x1p18f, -0x1p63f, 16777216.0f};
    ad_tensor *i5 = ad_zeros(t, AD_INT64, AD_SHAPE(5));
    memcpy(ad_data(i5), iv, sizeof iv);
    ad_tensor *f5 = ad_cast(i5, AD_FLOAT32);
    for (int k = 0; k < 5; k++)
        ck_assert_msg(((const float *)ad_data(f5))[k] == fv[k], "%d: %.9g, want %.9g", k,
                      (double)((const float *)ad_data(f5))[k], (double)fv[k]);
    ad_tape_free(t);
}
END_TEST

/* ad_copy_into between views of one storage: src is read whole before
 * dst is written; an expanded dst is refused. */
START_TEST(copies_between_overlapping_views)
{
    ad_tape *t = ad_tape_new();
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype dtype = dt ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *x = ad_arange(t, dtype, 1, 10, 1);
        x = ad_contiguous(ad_reshape(x, AD_SHAPE(3, 3)));
        ck_assert_int_eq(ad_copy_into(x, ad_transpose(x, 0, 1)), 0);
        double want[9] = {1, 4, 7, 2, 5, 8, 3, 6, 9}, got[9];
        ck_assert_int_eq(ad_to_array(x, got), 0);
        for (int i = 0; i < 9; i++) ck_assert_double_eq(got[i], want[i]);
        /* y[0::2] = y[0:5] */
        ad_tensor *y = ad_arange(t, dtype, 0, 10, 1);
        ck_assert_int_eq(ad_copy_into(ad_slice(y, 0, 0, 10, 2), ad_narrow(y, 0, 0, 5)), 0);
        double want_y[10] = {0, 1, 1, 3, 2, 5, 3, 7, 4, 9}, got_y[10];
        ck_assert_int_eq(ad_to_array(y, got_y), 0);
        for (int i = 0; i < 10; i++) ck_assert_double_eq(got_y[i], want_y[i]);
        /* into itself, and between dtypes over one storage's disjoint halves */
        ck_assert_int_eq(ad_copy_into(y, y), 0);
        ck_assert_int_eq(ad_to_array(y, got_y), 0);
        ck_assert_double_eq(got_y[2], 1);
        ck_assert_int_eq(ad_copy_into(ad_narrow(y, 0, 5, 5), ad_narrow(y, 0, 0, 5)), 0);
        ck_assert_int_eq(ad_to_array(y, got_y), 0);
        for (int i = 0; i < 5; i++) ck_assert_double_eq(got_y[5 + i], want_y[i]);
        /* several elements of an expanded dst are one element */
        ad_tensor *row = ad_zeros(t, dtype, AD_SHAPE(1, 3));
        ck_assert_error_rc(ad_copy_into(ad_expand(row, AD_SHAPE(2, 3)), ad_narrow(x, 0, 0, 2)),
                           "stride 0 in dimension 0 (an expanded view)");
    }
    ad_tape_free(t);
}
END_TEST

START_TEST(rng_is_counter_based)
{
    ad_rng r1, r2, r3;
    ad_rng_init(&r1, 42);
    ad_rng_init(&r2, 42);
    ad_rng_init(&r3, 43);
    ad_tensor *a = ad_rand(NULL, &r1, AD_FLOAT64, AD_SHAPE(1000), 0, 1);
    /* the same numbers drawn in two pieces: element i depends only on
     * (seed, counter + i), not on how the draw was split */
    ad_tensor *b1 = ad_rand(NULL, &r2, AD_FLOAT64, AD_SHAPE(300), 0, 1);
    ad_tensor *b2 = ad_rand(NULL, &r2, AD_FLOAT64, AD_SHAPE(700), 0, 1);
    ad_tensor *c = ad_rand(NULL, &r3, AD_FLOAT64, AD_SHAPE(1000), 0, 1);
    ck_assert_uint_eq(r1.counter, r2.counter);
    double *va = ad_data(a), *vb1 = ad_data(b1), *vb2 = ad_data(b2), *vc = ad_data(c);
    double mean = 0;
    int same_c = 0;
    for (int i = 0; i < 1000; i++) {
        ck_assert(va[i] >= 0 && va[i] < 1);
        ck_assert(va[i] == (i < 300 ? vb1[i] : vb2[i - 300]));
        same_c += va[i] == vc[i];
        mean += va[i] / 1000;
    }
    ck_assert_int_lt(same_c, 5);
    ck_assert_close(mean, 0.5, 0.05); /* 1/sqrt(12000) ~ 0.009: 5 sigma */
    ad_tensor_free(a);
    ad_tensor_free(b1);
    ad_tensor_free(b2);
    ad_tensor_free(c);
}
END_TEST

START_TEST(randn_moments)
{
    ad_rng r;
    ad_rng_init(&r, 7);
    ad_tensor *x = ad_randn(NULL, &r, AD_FLOAT64, AD_SHAPE(20000), 1.0, 2.0);
    double *v = ad_data(x), m = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) m += v[i] / 20000;
    for (int i = 0; i < 20000; i++) s2 += (v[i] - m) * (v[i] - m) / 19999;
    ck_assert_close(m, 1.0, 0.06);     /* sd of the mean 2/sqrt(20000) = 0.014 */
    ck_assert_close(sqrt(s2), 2.0, 0.06);
    for (int i = 0; i < 20000; i++) ck_assert(isfinite(v[i]));
    ad_tensor_free(x);
    ad_tensor *f = ad_rand(NULL, &r, AD_FLOAT32, AD_SHAPE(5000), -2, -1);
    float *fv = ad_data(f);
    for (int i = 0; i < 5000; i++) ck_assert(fv[i] >= -2 && fv[i] < -1);
    ad_tensor_free(f);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(ad_rng_below(&r, 7), 7);
    ck_assert_error(ad_rand(NULL, &r, AD_INT64, AD_SHAPE(2), 0, 1), "ad_rand");
    ck_assert_error(ad_rand(NULL, &r, AD_FLOAT64, AD_SHAPE(2), 1, 1), "ad_rand");
    ck_assert_error(ad_randn(NULL, &r, AD_FLOAT64, AD_SHAPE(2), 0, -1), "ad_randn");
    ck_assert_error(ad_rand(NULL, NULL, AD_FLOAT64, AD_SHAPE(2), 0, 1), "ad_rand");
}
END_TEST

static char *print_to_string(const ad_tensor *t)
{
    static char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    ck_assert_int_eq(ad_print(t, f), 0);
    fclose(f);
    return buf;
}

START_TEST(printing)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ot_f64(t, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
    ck_assert_str_eq(print_to_string(a),
                     "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]], dtype=float64)\n");
    ck_assert_str_eq(print_to_string(ad_scalar_tensor(t, AD_FLOAT32, 3.5)),
                     "tensor(3.5000, dtype=float32)\n");
    ad_tensor *big = ad_zeros(t, AD_FLOAT64, AD_SHAPE(2000));
    ck_assert_ptr_nonnull(strstr(print_to_string(big), "..."));
    ck_assert_error_rc(ad_print(NULL, stdout), "NULL");
    ad_tape_free(t);
}
END_TEST

/* Each kind of failure carries its code beside the message, and clearing
 * or a new error replaces it. */
START_TEST(error_codes)
{
    ad_clear_error();
    ck_assert_int_eq(ad_errcode(), AD_OK);
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ad_ones(t, AD_FLOAT64, AD_SHAPE(2, 3));
    ad_tensor *b = ad_ones(t, AD_FLOAT64, AD_SHAPE(4));
    ad_tensor *i = ad_zeros(t, AD_INT64, AD_SHAPE(2, 3));
    ck_assert_ptr_null(ad_add(a, b));
    ck_assert_int_eq(ad_errcode(), AD_ERR_SHAPE);
    ck_assert_ptr_null(ad_add(a, i));
    ck_assert_int_eq(ad_errcode(), AD_ERR_DTYPE);
    ck_assert_ptr_null(ad_arange(NULL, AD_FLOAT64, 0, 1, 0));
    ck_assert_int_eq(ad_errcode(), AD_ERR_INVALID);
    ck_assert_str_eq(ad_error_code_name(ad_errcode()), "AD_ERR_INVALID");

    /* a saved input changed in place: backward refuses it */
    ad_tensor *x = ad_ones(t, AD_FLOAT64, AD_SHAPE(3));
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_mul(x, x);
    ck_assert_int_eq(ad_fill(x, 2), 0);
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_MODIFIED);

    /* a handle used after its tape's reset, and after ad_tensor_free */
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert_int_eq(ad_ndim(a), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_STALE);
    ad_clear_error();
    ck_assert_int_eq(ad_errcode(), AD_OK);
    ck_assert_ptr_null(ad_error());

    /* a frozen tape is needed to replay */
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_STATE);
    ad_tape_free(t);

    /* the public setters: uncoded messages default to AD_ERR_INVALID, or
     * AD_ERR_MEMORY when they say so */
    ck_assert_int_eq(ad_set_error("mylib: bad"), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_INVALID);
    ck_assert_int_eq(ad_set_error("mylib: out of memory for 3 bytes"), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_MEMORY);
    ck_assert_int_eq(ad_set_error_code(AD_ERR_IO, "mylib: cannot read %s", "f"), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_IO);
    ck_assert_str_eq(ad_error(), "mylib: cannot read f");
    ck_assert_int_eq(ad_set_error_code((ad_error_code)99, "mylib: odd"), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_INVALID);
    ck_assert_str_eq(ad_error_code_name((ad_error_code)99), "AD_ERR_UNKNOWN");
    ck_assert_str_eq(ad_error_code_name(AD_ERR_NUMERIC), "AD_ERR_NUMERIC");

    /* an allocation that fails (injected: a real one of absurd size would
     * stop the sanitizer build) */
    ad__alloc_fail_in = 1;
    void *p = ad_malloc(16);
    ad__alloc_fail_in = 0;
    ck_assert_ptr_null(p);
    ck_assert_int_eq(ad_errcode(), AD_ERR_MEMORY);
    ad_clear_error();
}
END_TEST

static double get(const ad_tensor *t, const int64_t *index)
{
    double v = NAN;
    ck_assert_int_eq(ad_get(t, index, &v), 0);
    return v;
}

typedef struct released {
    void *data;
    int calls;
} released;

static void note_release(void *data, void *ctx)
{
    released *r = ctx;
    r->data = data;
    r->calls++;
}

/* ad_from_blob: the tensor is the caller's memory (both ways), views and
 * gradients work on it, and release comes once, when the last view goes. */
START_TEST(from_blob_shares_memory)
{
    double buf[6] = {1, 2, 3, 4, 5, 6};
    released r = {NULL, 0};
    ad_tensor *x = ad_from_blob(AD_FLOAT64, AD_SHAPE(2, 3), buf, note_release, &r);
    ck_assert_ptr_nonnull(x);
    ck_assert_ptr_eq(ad_data(x), buf);
    ck_assert_double_eq(get((x), (int64_t[]){1, 2}), 6);
    buf[4] = 50; /* a direct write is seen */
    ck_assert_int_eq(ad_mark_modified(x), 0);
    ck_assert_double_eq(get((x), (int64_t[]){1, 1}), 50);
    ck_assert_int_eq(ad_fill(x, 0.5), 0); /* a write through the API lands in buf */
    ck_assert_double_eq(buf[5], 0.5);

    /* a persistent view outlives x: release waits for it */
    ad_tensor *row = ad_narrow(x, 0, 1, 1);
    ck_assert_ptr_nonnull(row);
    ck_assert_int_eq(ad_tensor_free(x), 0);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_int_eq(ad_set(row, (int64_t[]){0, 0}, 7), 0);
    ck_assert_double_eq(buf[3], 7);

    /* a gradient through it, on a tape */
    ad_tape *t = ad_tape_new();
    ad_tensor *w = ad_from_blob(AD_FLOAT64, AD_SHAPE(3), (double[]){1, 2, 3}, NULL, NULL);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
    ad_tape_activate(t);
    ad_tensor *loss = ad_sum(ad_square(w), NULL, 0, false);
    ck_assert_int_eq(ad_backward(loss, NULL, 0), 0);
    ad_tape_activate(NULL);
    ck_assert_double_eq(get((ad_tensor_grad(w)), (int64_t[]){2}), 6);
    ad_tape_free(t);
    ck_assert_int_eq(ad_tensor_free(w), 0);

    ck_assert_int_eq(ad_tensor_free(row), 0);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_ptr_eq(r.data, buf);

    /* an error calls nothing */
    ck_assert_ptr_null(ad_from_blob(AD_FLOAT32, AD_SHAPE(2), (char *)buf + 2, note_release, &r));
    ck_assert_int_eq(r.calls, 1);
    ck_assert_ptr_nonnull(strstr(ad_error(), "ad_from_blob: data"));
    ad_clear_error();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tensor");
    TCase *tc = tcase_create("tensor");
    tcase_add_test(tc, creation_values);
    tcase_add_test(tc, ranges);
    tcase_add_test(tc, bad_shapes);
    tcase_add_test(tc, access_errors);
    tcase_add_test(tc, copies_and_casts);
    tcase_add_test(tc, creation_and_cast_edges);
    tcase_add_test(tc, copies_between_overlapping_views);
    tcase_add_test(tc, rng_is_counter_based);
    tcase_add_test(tc, randn_moments);
    tcase_add_test(tc, printing);
    tcase_add_test(tc, error_codes);
    tcase_add_test(tc, from_blob_shares_memory);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

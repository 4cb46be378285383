/* tests/test_shape.c - views and shape changes (reshape, flatten, squeeze,
 * unsqueeze, expand, permute, transpose, narrow, slice) and the copies
 * slice_scatter, contiguous, cast: exact values, storage sharing, gradients
 * of first and second order, and every bad input with its message.
 * Joining and indexing are tested in test_index.c. */
#include "shape_check.h"

/* ---- reshape, flatten, squeeze, unsqueeze -------------------------------- */

START_TEST(reshape_contiguous_is_a_view)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 3, 4);
    ad_tensor *v = ad_reshape(x, S(2, -1));
    SHAPE_IS(v, 2, 6);
    STRIDES_ARE(v, 6, 1);
    ck_assert_ptr_eq(ad_data(v), ad_data(x)); /* no copy */
    ck_assert_int_eq(ad_set(v, (int64_t[]){1, 0}, 100), 0);
    ck_assert_double_eq(get(x, (int64_t[]){1, 2}), 100); /* flat 6 */
    ad_tensor *z = ad_reshape(LIN(t, 0, 3), S(-1, 3));     /* -1 next to no elements */
    SHAPE_IS(z, 0, 3);
    ad_tensor *s = ad_reshape(F64(t, S(1, 1), 7), 0, NULL); /* to a 0-d tensor */
    ck_assert_int_eq(ad_ndim(s), 0);
    ck_assert_double_eq(ad_item(s), 7);
    ad_tape_free(t);
}
END_TEST

START_TEST(reshape_transposed_copies_in_row_major_order)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 2, 3);
    ad_tensor *r = ad_reshape(ad_transpose(x, 0, 1), S(6));
    EXPECT(r, 0, 3, 1, 4, 2, 5);
    ck_assert(ad_is_contiguous(r));
    ad_set(r, (int64_t[]){0}, 99);
    ck_assert_double_eq(get(x, (int64_t[]){0, 0}), 0); /* a copy: x untouched */
    ad_tape_free(t);
}
END_TEST

START_TEST(reshape_of_strided_input_is_a_view_when_possible)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 4, 3);
    ad_tensor *tr = ad_transpose(x, 0, 1); /* [3,4], strides [1,3] */
    ad_tensor *r = ad_reshape(tr, S(3, 2, 2));
    SHAPE_IS(r, 3, 2, 2);
    STRIDES_ARE(r, 1, 6, 3);
    EXPECT(r, 0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11);
    ad_set(r, (int64_t[]){2, 1, 1}, 99); /* r[2][1][1] = tr[2][3] = x[3][2] */
    ck_assert_double_eq(get(x, (int64_t[]){3, 2}), 99);
    /* An expanded tensor flattened cannot be a view: stride 0 repeats elements. */
    ad_tensor *e = ad_expand(F64(t, S(2, 1), 1, 2), S(2, 3));
    ad_tensor *f = ad_reshape(e, S(6));
    EXPECT(f, 1, 1, 1, 2, 2, 2);
    ad_set(f, (int64_t[]){0}, 100); /* a copy: e is untouched */
    ck_assert_double_eq(get(e, (int64_t[]){0, 1}), 1);
    ad_tape_free(t);
}
END_TEST

START_TEST(reshape_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 2, 3);
    ck_assert_error(ad_reshape(x, S(-1, -1)), "ad_reshape: more than one extent is -1");
    ck_assert_error(ad_reshape(x, S(-2, 3)), "ad_reshape: negative extent -2");
    ck_assert_error(ad_reshape(x, S(4, 2)), "ad_reshape: cannot reshape [2,3] (6 elements) to [4,2]");
    ck_assert_error(ad_reshape(x, S(4, -1)), "cannot reshape [2,3] (6 elements) to [4,-1]");
    ck_assert_error(ad_reshape(x, S(INT64_MAX, 4)), "cannot reshape [2,3] (6 elements)");
    ck_assert_error(ad_reshape(LIN(t, 0, 3), S(0, -1)), "the -1 extent is ambiguous");
    ck_assert_error(ad_reshape(x, 9, (int64_t[9]){1}), "ad_reshape: bad ndim 9");
    ck_assert_error(ad_reshape(x, 2, NULL), "bad ndim 2 or NULL shape");
    ck_assert_error(ad_reshape(NULL, S(6)), "ad_reshape: argument 'x' is NULL");
    /* A NULL from a failed inner call keeps the inner message. */
    ck_assert_error(ad_squeeze(ad_reshape(x, S(5)), 0), "ad_reshape: cannot reshape [2,3]");
    ad_tape_free(t);
}
END_TEST

START_TEST(flatten_values_and_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 2, 3, 4);
    SHAPE_IS(ad_flatten(x, 1, -1), 2, 12);
    SHAPE_IS(ad_flatten(x, 0, 1), 6, 4);
    SHAPE_IS(ad_flatten(x, 0, -1), 24);
    SHAPE_IS(ad_flatten(x, -2, -2), 2, 3, 4);
    ck_assert_ptr_eq(ad_data(ad_flatten(x, 0, -1)), ad_data(x));
    SHAPE_IS(ad_flatten(ad_scalar_tensor(t, AD_FLOAT64, 5), 0, -1), 1);
    ad_tensor *f = ad_flatten(ad_transpose(LIN(t, 2, 2), 0, 1), 0, 1);
    EXPECT(f, 0, 2, 1, 3);
    ck_assert_error(ad_flatten(x, 2, 1), "ad_flatten: start 2 (dimension 2) is after end 1 "
                                         "(dimension 1) for [2,3,4]");
    ck_assert_error(ad_flatten(x, 0, 3), "ad_flatten: axis 3 out of range for a 3-dimensional tensor");
    ck_assert_error(ad_flatten(NULL, 0, 1), "argument 'x' is NULL");
    ad_tape_free(t);
}
END_TEST

START_TEST(squeeze_unsqueeze)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 2, 1, 3);
    ad_tensor *s = ad_squeeze(x, 1);
    SHAPE_IS(s, 2, 3);
    ck_assert_ptr_eq(ad_data(s), ad_data(x));
    SHAPE_IS(ad_squeeze(x, -2), 2, 3);
    ad_tensor *y = LIN(t, 2, 3);
    SHAPE_IS(ad_unsqueeze(y, 0), 1, 2, 3);
    SHAPE_IS(ad_unsqueeze(y, 1), 2, 1, 3);
    SHAPE_IS(ad_unsqueeze(y, 2), 2, 3, 1);
    SHAPE_IS(ad_unsqueeze(y, -1), 2, 3, 1);
    SHAPE_IS(ad_unsqueeze(y, -3), 1, 2, 3);
    SHAPE_IS(ad_unsqueeze(ad_scalar_tensor(t, AD_FLOAT64, 1), 0), 1);
    /* Of a transposed tensor: still a view, with x's strides kept. */
    ad_tensor *u = ad_unsqueeze(ad_transpose(y, 0, 1), 1);
    SHAPE_IS(u, 3, 1, 2);
    ck_assert_int_eq(ad_strides(u)[0], 1);
    ck_assert_int_eq(ad_strides(u)[2], 3);
    ad_set(u, (int64_t[]){2, 0, 1}, 42); /* = y[1][2] */
    ck_assert_double_eq(get(y, (int64_t[]){1, 2}), 42);
    ad_tensor *q = ad_squeeze(u, 1);
    STRIDES_ARE(q, 1, 3);

    ck_assert_error(ad_squeeze(y, 1), "ad_squeeze: dimension 1 of [2,3] has extent 3, not 1");
    ck_assert_error(ad_squeeze(y, 2), "ad_squeeze: axis 2 out of range for a 2-dimensional tensor");
    ck_assert_error(ad_squeeze(ad_scalar_tensor(t, AD_FLOAT64, 1), 0),
                    "ad_squeeze: axis 0 out of range: the tensor is 0-dimensional");
    ck_assert_error(ad_unsqueeze(y, 3), "ad_unsqueeze: axis 3 out of range -3..2 for a new "
                                        "dimension of [2,3]");
    ck_assert_error(ad_unsqueeze(y, -4), "axis -4 out of range -3..2");
    ck_assert_error(ad_unsqueeze(LIN(t, 1, 1, 1, 1, 1, 1, 1, 1), 0),
                    "ad_unsqueeze: a tensor has at most 8 dimensions");
    ck_assert_error(ad_unsqueeze(NULL, 0), "ad_unsqueeze: argument 'x' is NULL");
    ad_tape_free(t);
}
END_TEST

/* ---- expand ---------------------------------------------------------------- */

START_TEST(expand_is_a_stride_0_view)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = F64(t, S(3, 1), 1, 2, 3);
    ad_tensor *e = ad_expand(x, S(2, 3, 4));
    SHAPE_IS(e, 2, 3, 4);
    STRIDES_ARE(e, 0, 1, 0);
    ck_assert_int_eq(ad_numel(e), 24);
    ck_assert_double_eq(get(e, (int64_t[]){1, 2, 3}), 3);
    ad_set(x, (int64_t[]){1, 0}, 7);
    ck_assert_double_eq(get(e, (int64_t[]){0, 1, 2}), 7);
    SHAPE_IS(ad_expand(x, S(-1, 5)), 3, 5);
    SHAPE_IS(ad_expand(x, S(3, 0)), 3, 0);
    ck_assert_error(ad_expand(x, S(4, 2)), "ad_expand: cannot expand [3,1] to [4,2]");
    ck_assert_error(ad_expand(x, S(3)), "cannot expand a 2-dimensional tensor to 1 dimensions");
    ck_assert_error(ad_expand(x, S(-1, 3, 1)), "-1 is not allowed for a new leading dimension");
    ck_assert_error(ad_expand(x, S(3, -2)), "ad_expand: cannot expand [3,1] to [3,-2]");
    ad_tape_free(t);
}
END_TEST

/* ---- permute and transpose ----------------------------------------------------------- */

START_TEST(permute_values_and_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 2, 3, 4);
    ad_tensor *p = ad_permute(x, (const int[]){2, 0, 1});
    SHAPE_IS(p, 4, 2, 3);
    STRIDES_ARE(p, 1, 12, 4);
    ck_assert_double_eq(get(p, (int64_t[]){3, 1, 2}), 23); /* x[1][2][3] */
    ad_tensor *q = ad_permute(x, (const int[]){-1, 0, -2});
    SHAPE_IS(q, 4, 2, 3);
    ck_assert_ptr_nonnull(ad_permute(ad_scalar_tensor(t, AD_FLOAT64, 1), NULL));
    /* The gradient goes back through the inverse permutation: y[k][0][j] = g[0][j][k]. */
    ad_tensor *g = leaf_grad(LIN(t, 1, 2, 3));
    backward_w(ad_permute(g, (const int[]){2, 0, 1}));
    EXPECT(ad_tensor_grad(g), 1, 3, 5, 2, 4, 6);
    ck_assert_error(ad_permute(x, (const int[]){0, 0, 1}),
                    "ad_permute: perm (0,0,1) names dimension 0 twice; it must list each "
                    "dimension of [2,3,4] exactly once");
    ck_assert_error(ad_permute(x, (const int[]){0, -3, 1}), "names dimension 0 twice");
    ck_assert_error(ad_permute(x, (const int[]){0, 1, 3}),
                    "ad_permute: axis 3 out of range for a 3-dimensional tensor");
    ck_assert_error(ad_permute(x, NULL), "ad_permute: perm is NULL");
    ad_tape_free(t);
}
END_TEST

START_TEST(transpose_shares_storage)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 2, 3);
    ad_tensor *tr = ad_transpose(x, 0, 1);
    SHAPE_IS(tr, 3, 2);
    STRIDES_ARE(tr, 1, 3);
    EXPECT(tr, 0, 3, 1, 4, 2, 5);
    ck_assert(!ad_is_contiguous(tr));
    ad_set(tr, (int64_t[]){2, 1}, 50);
    ck_assert_double_eq(get(x, (int64_t[]){1, 2}), 50);
    EXPECT(ad_transpose(x, -1, -2), 0, 3, 1, 4, 2, 50);
    EXPECT(ad_transpose(x, 1, 1), 0, 1, 2, 3, 4, 50);
    ck_assert_error(ad_transpose(x, 0, 2), "ad_transpose: axis 2 out of range for a "
                                           "2-dimensional tensor");
    ad_tape_free(t);
}
END_TEST

/* ---- narrow and slice ------------------------------------------------------------- */

START_TEST(narrow_values_and_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 3, 4);
    ad_tensor *n = ad_narrow(x, 1, 1, 2);
    SHAPE_IS(n, 3, 2);
    STRIDES_ARE(n, 4, 1);
    EXPECT(n, 1, 2, 5, 6, 9, 10);
    ad_set(n, (int64_t[]){2, 1}, -1); /* x[2][2] */
    ck_assert_double_eq(get(x, (int64_t[]){2, 2}), -1);
    EXPECT(ad_narrow(x, -1, -2, 2), 2, 3, 6, 7, -1, 11);
    EXPECT(ad_narrow(x, 0, 2, 1), 8, 9, -1, 11);
    EXPECT_EMPTY(ad_narrow(x, 0, 3, 0));
    ck_assert_error(ad_narrow(x, 1, 3, 2), "ad_narrow: start 3, length 2 do not fit in extent "
                                           "4 of dimension 1 of [3,4]");
    ck_assert_error(ad_narrow(x, 1, -5, 1), "start -5, length 1 do not fit");
    ck_assert_error(ad_narrow(x, 1, 0, -1), "start 0, length -1 do not fit");
    ck_assert_error(ad_narrow(x, 1, 5, 0), "start 5, length 0 do not fit");
    ck_assert_error(ad_narrow(x, 2, 0, 1), "ad_narrow: axis 2 out of range");
    ck_assert_error(ad_narrow(ad_scalar_tensor(t, AD_FLOAT64, 1), 0, 0, 1), "0-dimensional");
    ad_tape_free(t);
}
END_TEST

/* Python's list(range(5))[start:stop:step], worked out by hand. */
static const struct {
    int64_t start, stop, step;
    int n;
    double v[5];
} py_cases[] = {
    {0, 5, 1, 5, {0, 1, 2, 3, 4}},
    {1, 4, 2, 2, {1, 3}},
    {-2, INT64_MAX, 1, 2, {3, 4}},
    {-100, 2, 1, 2, {0, 1}},
    {3, 1, 1, 0, {0}},
    {0, 100, 3, 2, {0, 3}},
    {-1, -6, 1, 0, {0}},
    {INT64_MIN, INT64_MAX, 2, 3, {0, 2, 4}},
    {4, 5, 10, 1, {4}},
    {5, 5, 1, 0, {0}},
    {-3, -1, 1, 2, {2, 3}},
    {2, -1, 2, 1, {2}},
    {1, INT64_MAX, 3, 2, {1, 4}},
    {6, 10, 1, 0, {0}},
    {0, 5, INT64_MAX, 1, {0}},
};

START_TEST(slice_follows_python)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 5);
    for (size_t i = 0; i < sizeof py_cases / sizeof py_cases[0]; i++) {
        ad_tensor *s = ad_slice(x, 0, py_cases[i].start, py_cases[i].stop, py_cases[i].step);
        ck_assert_msg(s != NULL, "case %d: %s", (int)i, ad_error());
        ck_assert_msg(ad_numel(s) == py_cases[i].n, "case %d: %lld elements, expected %d",
                      (int)i, (long long)ad_numel(s), py_cases[i].n);
        expect_vals(s, py_cases[i].n, py_cases[i].v, "slice");
    }
    /* Along the last axis of a matrix, as a view. */
    ad_tensor *m = LIN(t, 2, 5);
    ad_tensor *s = ad_slice(m, -1, 1, INT64_MAX, 2);
    SHAPE_IS(s, 2, 2);
    STRIDES_ARE(s, 5, 2);
    EXPECT(s, 1, 3, 6, 8);
    ad_set(s, (int64_t[]){1, 1}, 80);
    ck_assert_double_eq(get(m, (int64_t[]){1, 3}), 80);
    ck_assert_error(ad_slice(x, 0, 0, 5, 0), "ad_slice: step must be >= 1, got 0");
    ck_assert_error(ad_slice(x, 0, 0, 5, -1), "ad_slice: step must be >= 1, got -1");
    ck_assert_error(ad_slice(x, 1, 0, 5, 1), "ad_slice: axis 1 out of range");
    ad_tape_free(t);
}
END_TEST

START_TEST(views_of_views_compose)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf_grad(F64(t, S(3, 1), 1, 2, 3));
    ad_tensor *e = ad_expand(x, S(3, 4));       /* e[i][j] = x[i] */
    ad_tensor *tr = ad_transpose(e, 0, 1);      /* [4,3], tr[r][c] = x[c] */
    ad_tensor *n = ad_narrow(tr, 0, 1, 2);      /* [2,3] */
    ad_tensor *s = ad_slice(n, 1, 0, 3, 2);     /* [2,2], columns 0 and 2 */
    SHAPE_IS(s, 2, 2);
    STRIDES_ARE(s, 0, 2);
    EXPECT(s, 1, 3, 1, 3);
    ad_tensor *p = ad_permute(ad_unsqueeze(s, 0), (const int[]){2, 1, 0});
    SHAPE_IS(p, 2, 2, 1);
    EXPECT(p, 1, 1, 3, 3);
    backward_w(s);
    EXPECT(ad_tensor_grad(x), 1 + 3, 0, 2 + 4);
    ad_set(x, (int64_t[]){2, 0}, 30);
    EXPECT(s, 1, 30, 1, 30);
    ad_tape_free(t);
}
END_TEST

START_TEST(persistent_views_keep_storage_alive)
{
    ad_tensor *x = ot_f64(NULL, S(2, 2), (const double[]){1, 2, 3, 4});
    ad_tensor *v = ad_transpose(x, 0, 1); /* no tape anywhere: a persistent view */
    ck_assert_ptr_null(ad_tensor_tape(v));
    ck_assert_int_eq(ad_tensor_free(x), 0);
    EXPECT(v, 1, 3, 2, 4);
    ck_assert_int_eq(ad_tensor_free(v), 0);

    /* A view on a tape of a persistent tensor outlives the tensor. */
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *y = ot_f64(NULL, S(3), (const double[]){5, 6, 7});
    ad_tensor *w = ad_narrow(y, 0, 1, 2);
    ck_assert_ptr_eq(ad_tensor_tape(w), t);
    ck_assert_int_eq(ad_tensor_free(y), 0);
    EXPECT(w, 6, 7);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

/* ---- slice_scatter --------------------------------------------------------------- */

START_TEST(slice_scatter_values_grads_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *base = leaf_grad(LIN(t, 5)), *src = leaf_grad(F64(t, S(2), 10, 20));
    ad_tensor *y = ad_slice_scatter(base, src, 0, 1, 5, 2);
    EXPECT(y, 0, 10, 2, 20, 4);
    EXPECT(base, 0, 1, 2, 3, 4);
    backward_w(y);
    EXPECT(ad_tensor_grad(base), 1, 0, 3, 0, 5);
    EXPECT(ad_tensor_grad(src), 2, 4);
    /* 2-D, negative axis and Python bounds. */
    ad_tensor *m = LIN(t, 2, 4);
    EXPECT(ad_slice_scatter(m, F64(t, S(2, 1), -1, -2), -1, -1, INT64_MAX, 1), 0, 1, 2, -1, 4,
           5, 6, -2);
    ck_assert_error(ad_slice_scatter(base, F64(t, S(3), 1, 2, 3), 0, 1, 5, 2),
                    "ad_slice_scatter: src has shape [3], expected [2]: 2 elements from 1 in "
                    "steps of 2 along dimension 0 of base [5]");
    ad_tensor *f32 = ad_zeros(t, AD_FLOAT32, S(2));
    ck_assert_error(ad_slice_scatter(base, f32, 0, 1, 5, 2),
                    "ad_slice_scatter: dtypes differ: float64 vs float32");
    ck_assert_error(ad_slice_scatter(base, src, 0, 1, 5, 0), "ad_slice_scatter: step must be >= 1");
    ck_assert_error(ad_slice_scatter(base, NULL, 0, 1, 5, 1), "argument 'src' is NULL");
    ad_tape_free(t);
}
END_TEST

START_TEST(narrow_and_slice_gradients)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf_grad(LIN(t, 3, 4));
    backward_w(ad_narrow(x, 1, 1, 2));
    EXPECT(ad_tensor_grad(x), 0, 1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0);
    ad_zero_grad(x);
    backward_w(ad_slice(ad_transpose(x, 0, 1), 0, -1, -5, 1)); /* empty: grad all 0 */
    EXPECT(ad_tensor_grad(x), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    ad_zero_grad(x);
    backward_w(ad_slice(ad_transpose(x, 0, 1), 0, 0, 4, 3)); /* x columns 0 and 3 */
    EXPECT(ad_tensor_grad(x), 1, 0, 0, 4, 2, 0, 0, 5, 3, 0, 0, 6);
    ad_tape_free(t);
}
END_TEST

/* Second derivative through a slice: f = sum(narrow(x)^3), df/dx = 3 x^2 on
 * the slice, and d(sum(df/dx * v))/dx = 6 x v there, 0 elsewhere. */
START_TEST(slice_second_derivative)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x = leaf_grad(F64(t, S(4), 1, 2, 3, 4));
    ad_tensor *y = ad_narrow(x, 0, 1, 2);
    ad_tensor *f = ad_sum(ad_mul(ad_mul(y, y), y), NULL, 0, false);
    ad_tensor *g, *h;
    ck_assert_int_eq(ad_gradients(f, NULL, 1, &x, &g, AD_CREATE_GRAPH), 0);
    EXPECT(g, 0, 12, 27, 0);
    ad_tensor *v = F64(t, S(4), 5, 7, 11, 13);
    ad_tensor *s = ad_sum(ad_mul(g, v), NULL, 0, false);
    ck_assert_int_eq(ad_gradients(s, NULL, 1, &x, &h, 0), 0);
    EXPECT(h, 0, 6 * 2 * 7, 6 * 3 * 11, 0);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

/* ---- contiguous and cast ------------------------------------------------------------ */

START_TEST(contiguous_views_or_copies)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf_grad(LIN(t, 2, 3));
    ad_tensor *c = ad_contiguous(x);
    ck_assert_ptr_ne(c, x);
    ck_assert_ptr_eq(ad_data(c), ad_data(x));
    ad_tensor *ct = ad_contiguous(ad_transpose(x, 0, 1));
    ck_assert(ad_is_contiguous(ct));
    SHAPE_IS(ct, 3, 2);
    STRIDES_ARE(ct, 2, 1);
    EXPECT(ct, 0, 3, 1, 4, 2, 5);
    ck_assert_ptr_ne(ad_data(ct), ad_data(x));
    backward_w(ct);
    EXPECT(ad_tensor_grad(x), 1, 3, 5, 2, 4, 6);
    ck_assert_error(ad_contiguous(NULL), "ad_contiguous: argument 'x' is NULL");
    ad_tape_free(t);
}
END_TEST

START_TEST(cast_values_grads_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = F64(t, S(3), 1.1, 2.5, -3);
    ad_tensor *f = ad_cast(x, AD_FLOAT32);
    ck_assert_int_eq(ad_tensor_dtype(f), AD_FLOAT32);
    EXPECT(f, (double)1.1f, 2.5, -3);
    ad_tensor *b = ad_cast(ad_transpose(ad_reshape(f, S(3, 1)), 0, 1), AD_FLOAT64);
    ck_assert_int_eq(ad_tensor_dtype(b), AD_FLOAT64);
    EXPECT(b, (double)1.1f, 2.5, -3);
    /* The gradient comes back in the input's dtype. */
    ad_tensor *x32 = leaf_grad(ad_zeros(t, AD_FLOAT32, S(3)));
    ad_tensor *y = ad_cast(x32, AD_FLOAT64);
    backward_w(y);
    ck_assert_int_eq(ad_tensor_dtype(ad_tensor_grad(x32)), AD_FLOAT32);
    EXPECT(ad_tensor_grad(x32), 1, 2, 3);
    /* int64 -> float is exact up to 2^53. */
    ad_tensor *i = IDX(t, S(2), ((int64_t)1 << 40) + 1, -7);
    EXPECT(ad_cast(i, AD_FLOAT64), 1099511627777.0, -7);
    EXPECT(ad_cast(i, AD_FLOAT32), (double)(float)1099511627777.0, -7);
    ad_tensor *same = ad_cast(x, AD_FLOAT64);
    ck_assert_ptr_eq(ad_data(same), ad_data(x));
    ck_assert_error(ad_cast(x, AD_INT64), "ad_cast: cannot cast float64 to int64");
    ck_assert_error(ad_cast(x, (ad_dtype)7), "ad_cast: invalid dtype 7");
    ck_assert_error(ad_cast(NULL, AD_FLOAT32), "ad_cast: argument 'x' is NULL");
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shape");
    TCase *v = tcase_create("views");
    tcase_add_test(v, reshape_contiguous_is_a_view);
    tcase_add_test(v, reshape_transposed_copies_in_row_major_order);
    tcase_add_test(v, reshape_of_strided_input_is_a_view_when_possible);
    tcase_add_test(v, reshape_errors);
    tcase_add_test(v, flatten_values_and_errors);
    tcase_add_test(v, squeeze_unsqueeze);
    tcase_add_test(v, expand_is_a_stride_0_view);
    tcase_add_test(v, permute_values_and_errors);
    tcase_add_test(v, transpose_shares_storage);
    tcase_add_test(v, narrow_values_and_errors);
    tcase_add_test(v, slice_follows_python);
    tcase_add_test(v, views_of_views_compose);
    tcase_add_test(v, persistent_views_keep_storage_alive);
    tcase_add_test(v, narrow_and_slice_gradients);
    tcase_add_test(v, slice_second_derivative);
    suite_add_tcase(s, v);
    TCase *c = tcase_create("copies");
    tcase_add_test(c, slice_scatter_values_grads_errors);
    tcase_add_test(c, contiguous_views_or_copies);
    tcase_add_test(c, cast_values_grads_errors);
    suite_add_tcase(s, c);
    return ot_run(s);
}

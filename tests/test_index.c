/* tests/test_index.c - joining and indexing (concat, stack, index_select,
 * index_add, gather, scatter_add): exact values, repeated indices that
 * accumulate, gradients of first and second order, ownership of the index,
 * replay, and every bad input with its message. */
#include "shape_check.h"

/* gather's rule (internal, ops_index.c) */
ad_tensor *ad__scatter_add_zeros(int ndim, const int64_t *shape, int axis, ad_tensor *index,
                                 ad_tensor *src);

/* ---- concat and stack ---------------------------------------------------------------- */

START_TEST(concat_values_and_grads)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = leaf_grad(F64(t, S(2, 1), 1, 2));
    ad_tensor *b = leaf_grad(F64(t, S(2, 3), 3, 4, 5, 6, 7, 8));
    ad_tensor *c = leaf_grad(F64(t, S(2, 2), 9, 10, 11, 12));
    ad_tensor *xs[3] = {a, b, c};
    ad_tensor *y = ad_concat(xs, 3, 1);
    SHAPE_IS(y, 2, 6);
    EXPECT(y, 1, 3, 4, 5, 9, 10, 2, 6, 7, 8, 11, 12);
    backward_w(y);
    EXPECT(ad_tensor_grad(a), 1, 7);
    EXPECT(ad_tensor_grad(b), 2, 3, 4, 8, 9, 10);
    EXPECT(ad_tensor_grad(c), 5, 6, 11, 12);
    /* Axis -2 with a transposed input; a single input is a copy. */
    ad_tensor *ys[2] = {F64(t, S(1, 2), -1, -2), ad_transpose(F64(t, S(2, 2), 1, 2, 3, 4), 0, 1)};
    EXPECT(ad_concat(ys, 2, -2), -1, -2, 1, 3, 2, 4);
    ad_tensor *one = ad_concat(&b, 1, 0);
    EXPECT(one, 3, 4, 5, 6, 7, 8);
    ck_assert_ptr_ne(ad_data(one), ad_data(b));
    /* int64 is copied exactly, also through strides. */
    int64_t big = ((int64_t)1 << 53) + 1;
    ad_tensor *is[2] = {ad_transpose(IDX(t, S(2, 1), big, 3), 0, 1), IDX(t, S(1, 1), -big)};
    ad_tensor *ic = ad_concat(is, 2, 1);
    const int64_t *d = ad_data(ic);
    ck_assert(d[0] == big && d[1] == 3 && d[2] == -big);
    ad_tape_free(t);
}
END_TEST

START_TEST(concat_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = LIN(t, 2, 3), *b = LIN(t, 2, 3), *c = LIN(t, 2, 5);
    ad_tensor *xs[3] = {a, b, c};
    ck_assert_error(ad_concat(xs, 3, 0), "ad_concat: tensor 2 has shape [2,5], expected [*,3] "
                                         "with the other extents of tensor 0 [2,3]");
    ck_assert_ptr_nonnull(ad_concat(xs, 3, 1));
    ad_tensor *flat[2] = {a, LIN(t, 6)};
    ck_assert_error(ad_concat(flat, 2, 1), "ad_concat: tensor 1 has shape [6], expected [2,*]");
    ad_tensor *mixed[2] = {a, ad_zeros(t, AD_FLOAT32, S(2, 3))};
    ck_assert_error(ad_concat(mixed, 2, 0), "ad_concat: tensor 1 is float32 but tensor 0 is float64");
    ad_tensor *holes[2] = {a, NULL};
    ck_assert_error(ad_concat(holes, 2, 0), "ad_concat: argument 'xs[1]' is NULL");
    ck_assert_error(ad_concat(xs, 0, 0), "ad_concat: need a non-NULL array of n >= 1 tensors, got n = 0");
    ck_assert_error(ad_concat(NULL, 2, 0), "need a non-NULL array");
    ck_assert_error(ad_concat(xs, 3, 2), "ad_concat: axis 2 out of range for a 2-dimensional tensor");
    ad_tensor *sc[1] = {ad_scalar_tensor(t, AD_FLOAT64, 1)};
    ck_assert_error(ad_concat(sc, 1, 0), "ad_concat: tensor 0 is 0-dimensional");
    ad_tape_free(t);
}
END_TEST

START_TEST(stack_values_and_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = leaf_grad(LIN(t, 2, 3)), *b = F64(t, S(2, 3), 10, 11, 12, 13, 14, 15);
    ad_tensor *xs[2] = {a, b};
    ad_tensor *s0 = ad_stack(xs, 2, 0);
    SHAPE_IS(s0, 2, 2, 3);
    EXPECT(s0, 0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15);
    ad_tensor *s1 = ad_stack(xs, 2, 1);
    SHAPE_IS(s1, 2, 2, 3);
    EXPECT(s1, 0, 1, 2, 10, 11, 12, 3, 4, 5, 13, 14, 15);
    ad_tensor *s2 = ad_stack(xs, 2, -1);
    SHAPE_IS(s2, 2, 3, 2);
    EXPECT(s2, 0, 10, 1, 11, 2, 12, 3, 13, 4, 14, 5, 15);
    backward_w(s2);
    EXPECT(ad_tensor_grad(a), 1, 3, 5, 7, 9, 11);
    ad_tensor *sc[3] = {ad_scalar_tensor(t, AD_FLOAT64, 1), ad_scalar_tensor(t, AD_FLOAT64, 2),
                        ad_scalar_tensor(t, AD_FLOAT64, 3)};
    EXPECT(ad_stack(sc, 3, 0), 1, 2, 3);
    ad_tensor *bad[2] = {a, LIN(t, 3, 2)};
    ck_assert_error(ad_stack(bad, 2, 0), "ad_stack: tensor 1 has shape [3,2], expected [2,3] like tensor 0");
    ck_assert_error(ad_stack(xs, 2, 3), "ad_stack: axis 3 out of range -3..2 for a new dimension of [2,3]");
    ck_assert_error(ad_stack(xs, 0, 0), "ad_stack: need a non-NULL array of n >= 1 tensors");
    ad_tape_free(t);
}
END_TEST

/* Stacking persistent tensors with no tape at all gives a persistent result
 * (the intermediate views are freed: the leak checker would see them); a
 * persistent leaf stacked with a tape tensor records on that tape. */
START_TEST(stack_ownership)
{
    ad_tensor *p = ot_f64(NULL, S(2), (const double[]){1, 2});
    ad_tensor *q = ot_f64(NULL, S(2), (const double[]){3, 4});
    ad_tensor *xs[2] = {p, q};
    ad_tensor *s = ad_stack(xs, 2, 1);
    ck_assert_ptr_null(ad_tensor_tape(s));
    EXPECT(s, 1, 3, 2, 4);
    ad_tensor_free(s);

    ad_tape *t = ad_tape_new();
    leaf_grad(p);
    ad_tensor *r = F64(t, S(2), 5, 6);
    xs[1] = r;
    ad_tensor *y = ad_stack(xs, 2, 0);
    ck_assert_ptr_eq(ad_tensor_tape(y), t);
    ck_assert_ptr_null(ad_tape_active());
    backward_w(y);
    EXPECT(ad_tensor_grad(p), 1, 2);
    ad_tape_free(t);
    ad_tensor_free(p);
    ad_tensor_free(q);
}
END_TEST

/* ---- index_select and index_add ---------------------------------------------------- */

START_TEST(index_select_values_grads)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf_grad(F64(t, S(3), 1, 2, 3));
    ad_tensor *y = ad_index_select(x, 0, IDX(t, S(5), 0, 2, 0, 0, -1));
    EXPECT(y, 1, 3, 1, 1, 3);
    backward_w(y); /* repeated entries accumulate: x0 gets w0 + w2 + w3 */
    EXPECT(ad_tensor_grad(x), 1 + 3 + 4, 0, 2 + 5);
    ad_tensor *m = LIN(t, 3, 4);
    ad_tensor *c = ad_index_select(m, 1, IDX(t, S(3), 3, -4, 1));
    SHAPE_IS(c, 3, 3);
    EXPECT(c, 3, 0, 1, 7, 4, 5, 11, 8, 9);
    EXPECT(ad_index_select(ad_transpose(m, 0, 1), 0, IDX(t, S(2), 2, 2)), 2, 6, 10, 2, 6, 10);
    /* A strided (sliced) index, and an empty one. */
    ad_tensor *idx = ad_slice(IDX(t, S(4), 2, 9, 0, 9), 0, 0, 4, 2);
    EXPECT(ad_index_select(x, 0, idx), 3, 1);
    ad_tensor *e = ad_index_select(m, 0, IDX(t, S(0), 0));
    SHAPE_IS(e, 0, 4);
    ad_tape_free(t);
}
END_TEST

START_TEST(index_select_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 3, 4);
    ck_assert_error(ad_index_select(x, 1, IDX(t, S(4), 0, 1, 2, 7)),
                    "ad_index_select: index[3] = 7 is out of range [-4, 4) for dimension 1 of x [3,4]");
    ck_assert_error(ad_index_select(x, 0, IDX(t, S(2), -4, 0)),
                    "ad_index_select: index[0] = -4 is out of range [-3, 3) for dimension 0 of x [3,4]");
    ck_assert_error(ad_index_select(x, 0, F64(t, S(1), 0)), "ad_index_select: index must be int64, got float64");
    ck_assert_error(ad_index_select(x, 0, IDX(t, S(2, 1), 0, 1)),
                    "ad_index_select: index must be 1-D, got shape [2,1]");
    ck_assert_error(ad_index_select(x, 2, IDX(t, S(1), 0)), "ad_index_select: axis 2 out of range");
    ck_assert_error(ad_index_select(x, 0, NULL), "ad_index_select: argument 'index' is NULL");
    ck_assert_error(ad_index_select(ad_scalar_tensor(t, AD_FLOAT64, 1), 0, IDX(t, S(1), 0)),
                    "0-dimensional");
    ad_tape_free(t);
}
END_TEST

START_TEST(index_add_values_grads_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *base = leaf_grad(LIN(t, 3, 2));
    ad_tensor *src = leaf_grad(F64(t, S(3, 2), 10, 20, 30, 40, 50, 60));
    ad_tensor *idx = IDX(t, S(3), 0, 2, -3);
    ad_tensor *y = ad_index_add(base, 0, idx, src);
    EXPECT(y, 0 + 10 + 50, 1 + 20 + 60, 2, 3, 4 + 30, 5 + 40);
    EXPECT(base, 0, 1, 2, 3, 4, 5);
    backward_w(y);
    EXPECT(ad_tensor_grad(base), 1, 2, 3, 4, 5, 6);
    EXPECT(ad_tensor_grad(src), 1, 2, 5, 6, 1, 2);
    /* Along axis 1 with a transposed src. */
    ad_tensor *s2 = ad_transpose(F64(t, S(2, 3), 1, 2, 3, 4, 5, 6), 0, 1); /* [3,2] */
    EXPECT(ad_index_add(ad_zeros(t, AD_FLOAT64, S(3, 3)), 1, IDX(t, S(2), 1, 1), s2), 0, 5, 0, 0,
           7, 0, 0, 9, 0);
    /* int64 sums are exact. */
    int64_t big = ((int64_t)1 << 53) + 1;
    ad_tensor *ib = ad_index_add(IDX(t, S(2), big, 0), 0, IDX(t, S(3), 0, 1, 0),
                                 IDX(t, S(3), 1, 5, 2));
    const int64_t *d = ad_data(ib);
    ck_assert(d[0] == big + 3 && d[1] == 5);

    ck_assert_error(ad_index_add(base, 0, idx, F64(t, S(2, 2), 1, 2, 3, 4)),
                    "ad_index_add: src has shape [2,2], expected [3,2]: base [3,2] with extent "
                    "len(index) = 3 along dimension 0");
    ck_assert_error(ad_index_add(base, 0, idx, ad_zeros(t, AD_FLOAT32, S(3, 2))),
                    "ad_index_add: dtypes differ: float64 vs float32");
    ck_assert_error(ad_index_add(base, 0, IDX(t, S(3), 0, 3, 0), src),
                    "ad_index_add: index[1] = 3 is out of range [-3, 3) for dimension 0 of base [3,2]");
    ck_assert_error(ad_index_add(base, 0, IDX(t, S(1, 3), 0, 1, 0), src),
                    "ad_index_add: index must be 1-D, got shape [1,3]");
    ck_assert_error(ad_index_add(base, -3, idx, src), "ad_index_add: axis -3 out of range");
    ad_tape_free(t);
}
END_TEST

/* ---- gather and scatter_add ---------------------------------------------------------- */

START_TEST(gather_values_grads)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf_grad(F64(t, S(2, 2), 1, 2, 3, 4));
    ad_tensor *y = ad_gather(x, 1, IDX(t, S(2, 2), 0, 0, 1, 0)); /* PyTorch's doc example */
    EXPECT(y, 1, 1, 4, 3);
    backward_w(y);
    EXPECT(ad_tensor_grad(x), 1 + 2, 0, 4, 3);
    EXPECT(ad_gather(x, 0, IDX(t, S(1, 2), 1, 0)), 3, 2);
    /* The index may be longer than x along the axis and shorter elsewhere,
     * entries may be negative, x may be strided. */
    ad_tensor *m = LIN(t, 3, 4);
    ad_tensor *g = ad_gather(ad_transpose(m, 0, 1), 1, IDX(t, S(2, 5), 0, -1, 1, 1, 2, 2, 2, 2, 0, -3));
    SHAPE_IS(g, 2, 5);
    EXPECT(g, 0, 8, 4, 4, 8, 9, 9, 9, 1, 1);
    ad_tape_free(t);
}
END_TEST

START_TEST(gather_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = LIN(t, 2, 2);
    ck_assert_error(ad_gather(x, 1, IDX(t, S(2), 0, 1)),
                    "ad_gather: index has shape [2] but x has shape [2,2]: they need the same "
                    "number of dimensions");
    ck_assert_error(ad_gather(x, 1, IDX(t, S(3, 1), 0, 1, 0)),
                    "ad_gather: index shape [3,1] does not fit x [2,2]: extent 3 of dimension 0 "
                    "exceeds 2 (only dimension 1, the axis, may be longer)");
    ck_assert_error(ad_gather(x, 1, IDX(t, S(2, 2), 0, 0, 2, 0)),
                    "ad_gather: index[1,0] = 2 is out of range [-2, 2) for dimension 1 of x [2,2]");
    ck_assert_error(ad_gather(x, 1, F64(t, S(2, 2), 0, 0, 0, 0)), "ad_gather: index must be int64");
    ck_assert_error(ad_gather(x, -3, IDX(t, S(2, 2), 0, 0, 0, 0)), "ad_gather: axis -3 out of range");
    ad_tape_free(t);
}
END_TEST

START_TEST(scatter_add_values_grads_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *base = leaf_grad(ad_zeros(t, AD_FLOAT64, S(2, 3)));
    ad_tensor *src = leaf_grad(F64(t, S(2, 3), 1, 2, 3, 4, 5, 6));
    ad_tensor *idx = IDX(t, S(2, 3), 0, 1, 0, 2, -1, 2);
    ad_tensor *y = ad_scatter_add(base, 1, idx, src);
    EXPECT(y, 1 + 3, 2, 0, 0, 0, 4 + 5 + 6);
    backward_w(y);
    EXPECT(ad_tensor_grad(base), 1, 2, 3, 4, 5, 6);
    EXPECT(ad_tensor_grad(src), 1, 2, 1, 6, 6, 6); /* gather(g): repeated targets */
    /* Along axis 0 with a strided src, index smaller than base. */
    ad_tensor *s2 = ad_transpose(F64(t, S(2, 1), 7, 8), 0, 1); /* [1,2] */
    EXPECT(ad_scatter_add(LIN(t, 3, 2), 0, IDX(t, S(1, 2), 2, -3), s2), 0, 1 + 8, 2, 3, 4 + 7, 5);
    /* int64: a bincount, exact. */
    ad_tensor *counts = ad_scatter_add(ad_zeros(t, AD_INT64, S(1, 4)), 1,
                                       IDX(t, S(1, 5), 0, 2, 2, 3, 2), IDX(t, S(1, 5), 1, 1, 1, 1, 1));
    const int64_t *d = ad_data(counts);
    ck_assert(d[0] == 1 && d[1] == 0 && d[2] == 3 && d[3] == 1);

    ck_assert_error(ad_scatter_add(base, 1, idx, F64(t, S(2, 2), 1, 2, 3, 4)),
                    "ad_scatter_add: src has shape [2,2] but index has shape [2,3]; they must be equal");
    ck_assert_error(ad_scatter_add(base, 1, IDX(t, S(2, 3), 0, 0, 0, 0, 3, 0), src),
                    "ad_scatter_add: index[1,1] = 3 is out of range [-3, 3) for dimension 1 of base [2,3]");
    ck_assert_error(ad_scatter_add(base, 1, IDX(t, S(3, 1), 0, 0, 0), F64(t, S(3, 1), 1, 2, 3)),
                    "ad_scatter_add: index shape [3,1] does not fit base [2,3]");
    ck_assert_error(ad_scatter_add(base, 1, IDX(t, S(6), 0, 0, 0, 0, 0, 0), LIN(t, 6)),
                    "ad_scatter_add: index has shape [6] but base has shape [2,3]");
    ck_assert_error(ad_scatter_add(base, 1, idx, ad_zeros(t, AD_FLOAT32, S(2, 3))),
                    "ad_scatter_add: dtypes differ: float64 vs float32");
    ad_tape_free(t);
}
END_TEST

/* gather's rule, scatter_add into zeros of its own, along the last axis
 * of contiguous tensors: each row checked, cleared and added into in
 * turn.  Repeated and negative entries add up; a bad entry in a later
 * row is an error naming it, as from a separate check. */
START_TEST(scatter_add_zeros_rows)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *src = F64(t, S(2, 3), 1, 2, 3, 4, 5, 6);
    EXPECT(ad__scatter_add_zeros(S(2, 4), 1, IDX(t, S(2, 3), 0, 0, -1, 3, 1, 3), src),
           1 + 2, 0, 0, 3, 0, 5, 0, 4 + 6);
    ck_assert_error(ad__scatter_add_zeros(S(2, 4), 1, IDX(t, S(2, 3), 0, 1, 2, 3, 4, 0), src),
                    "ad_scatter_add: index[1,1] = 4 is out of range [-4, 4) for dimension 1 of "
                    "base [2,4]");
    ck_assert_error(ad__scatter_add_zeros(S(2, 4), 1, IDX(t, S(2, 3), 0, 1, 2, -5, 0, 0), src),
                    "ad_scatter_add: index[1,0] = -5 is out of range");
    ad_tape_free(t);
}
END_TEST

/* Second derivatives through the index pairs: f = sum(y^2) with y an
 * index_select / gather of x; df/dx = 2 x times how often x is picked, and
 * d(sum(df/dx * v))/dx = 2 v times the same counts. */
START_TEST(index_second_derivatives)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x = leaf_grad(F64(t, S(3), 1, 2, 3)), *g, *h;
    ad_tensor *y = ad_index_select(x, 0, IDX(t, S(3), 0, 0, 2));
    ad_tensor *f = ad_sum(ad_mul(y, y), NULL, 0, false);
    ck_assert_int_eq(ad_gradients(f, NULL, 1, &x, &g, AD_CREATE_GRAPH), 0);
    EXPECT(g, 4, 0, 6);
    ad_tensor *s = ad_sum(ad_mul(g, F64(t, S(3), 5, 7, 11)), NULL, 0, false);
    ck_assert_int_eq(ad_gradients(s, NULL, 1, &x, &h, 0), 0);
    EXPECT(h, 20, 0, 22);

    ad_tensor *x2 = leaf_grad(F64(t, S(2, 2), 1, 2, 3, 4));
    ad_tensor *y2 = ad_gather(x2, 1, IDX(t, S(2, 2), 0, 0, 1, 0));
    ad_tensor *f2 = ad_sum(ad_mul(y2, y2), NULL, 0, false);
    ck_assert_int_eq(ad_gradients(f2, NULL, 1, &x2, &g, AD_CREATE_GRAPH), 0);
    EXPECT(g, 4, 0, 6, 8);
    ad_tensor *s2 = ad_sum(ad_mul(g, F64(t, S(2, 2), 5, 7, 11, 13)), NULL, 0, false);
    ck_assert_int_eq(ad_gradients(s2, NULL, 1, &x2, &h, 0), 0);
    EXPECT(h, 20, 0, 22, 26);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

/* The recorded node keeps a persistent index alive: the caller may free it
 * before backward. */
START_TEST(persistent_index_freed_before_backward)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = leaf_grad(F64(t, S(3), 1, 2, 3));
    ad_tensor *idx = ot_index(NULL, S(2), (const int64_t[]){2, 2});
    ad_tensor *y = ad_index_select(x, 0, idx);
    ck_assert_int_eq(ad_tensor_free(idx), 0);
    backward_w(y);
    EXPECT(ad_tensor_grad(x), 0, 0, 3);
    ad_tape_free(t);
}
END_TEST

/* ---- replay: the copying ops recompute in place ------------------------------------ */

START_TEST(replay_recomputes_copies)
{
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = F64(t, S(2, 2), 1, 2, 3, 4);
    ad_tensor *idx = IDX(t, S(3), 1, 0, 1);
    ad_tensor *a = ad_index_select(x, 0, idx);
    ad_tensor *xs[2] = {x, a};
    ad_tensor *b = ad_concat(xs, 2, 0);
    ad_tensor *c = ad_gather(x, 1, IDX(t, S(2, 2), 1, 0, 0, 0));
    ad_tensor *d = ad_reshape(ad_transpose(x, 0, 1), S(4));
    ad_tensor *e = ad_cast(x, AD_FLOAT32);
    ad_tensor *f = ad_contiguous(ad_transpose(x, 0, 1));
    ad_tensor *g = ad_slice_scatter(x, ad_narrow(x, 0, 0, 1), 0, 1, 2, 1);
    ad_tensor *s = ad_scatter_add(x, 0, IDX(t, S(1, 2), 1, 0), ad_narrow(x, 0, 0, 1));
    ad_tensor *ia = ad_index_add(x, 0, idx, a);
    EXPECT(ia, 2, 4, 9, 12);
    ck_assert_int_eq(ad_tape_freeze(t), 0);

    double *xd = ad_data(x);
    for (int k = 0; k < 4; k++) xd[k] *= 10;
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0);
    EXPECT(a, 30, 40, 10, 20, 30, 40);
    EXPECT(b, 10, 20, 30, 40, 30, 40, 10, 20, 30, 40);
    EXPECT(c, 20, 10, 30, 30);
    EXPECT(d, 10, 30, 20, 40);
    EXPECT(e, 10, 20, 30, 40);
    EXPECT(f, 10, 30, 20, 40);
    EXPECT(g, 10, 20, 10, 20);
    EXPECT(s, 10, 40, 40, 40);
    EXPECT(ia, 20, 40, 90, 120);
    /* The index is re-read, and re-checked. */
    int64_t *id = ad_data(idx);
    id[0] = 0;
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0);
    EXPECT(a, 10, 20, 10, 20, 30, 40);
    id[1] = 5;
    ck_assert_error_rc(ad_tape_replay(t, 0, NULL, NULL),
                       "ad_index_select: index[1] = 5 is out of range [-2, 2)");
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("index");
    TCase *j = tcase_create("joining");
    tcase_add_test(j, concat_values_and_grads);
    tcase_add_test(j, concat_errors);
    tcase_add_test(j, stack_values_and_errors);
    tcase_add_test(j, stack_ownership);
    suite_add_tcase(s, j);
    TCase *ix = tcase_create("indexing");
    tcase_add_test(ix, index_select_values_grads);
    tcase_add_test(ix, index_select_errors);
    tcase_add_test(ix, index_add_values_grads_errors);
    tcase_add_test(ix, gather_values_grads);
    tcase_add_test(ix, gather_errors);
    tcase_add_test(ix, scatter_add_values_grads_errors);
    tcase_add_test(ix, scatter_add_zeros_rows);
    tcase_add_test(ix, index_second_derivatives);
    tcase_add_test(ix, persistent_index_freed_before_backward);
    tcase_add_test(ix, replay_recomputes_copies);
    suite_add_tcase(s, ix);
    return ot_run(s);
}

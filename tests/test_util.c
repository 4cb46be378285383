/* tests/test_util.c - values and errors of the utilities (ops_util.h) and
 * of log1p, expm1, atan2; their gradients are checked by test_ops' rows. */
#include "optest.h"

#include <stdint.h>
#include <string.h>

#define F64(...) (const double[]){__VA_ARGS__}
#define SH(...) (const int64_t[]){__VA_ARGS__}

START_TEST(argmax_argmin_values)
{
    /* ties pick the first; NaN wins */
    ad_tensor *x = ot_f64(ot_tape, 2, SH(2, 4), F64(1, 5, 5, 2, 3, NAN, 9, -1));
    ad_tensor *i = ad_argmax(x, 1, false);
    ot_assert_shape(i, 1, SH(2));
    ck_assert_int_eq(ad_tensor_dtype(i), AD_INT64);
    ot_assert_values(i, F64(1, 1), 2, 0);
    ot_assert_values(ad_argmin(x, 1, true), F64(0, 1), 2, 0);
    ot_assert_shape(ad_argmin(x, 1, true), 2, SH(2, 1));
    ot_assert_values(ad_argmax(x, 0, false), F64(1, 1, 1, 0), 4, 0);
    ot_assert_values(ad_argmin(x, -2, false), F64(0, 1, 0, 1), 4, 0);
    ck_assert_error(ad_argmax(ad_zeros(ot_tape, AD_FLOAT64, 2, SH(2, 0)), 1, false),
                    "ad_argmax: empty reduction: axis 1 of [2,0] has extent 0");
    ck_assert_error(ad_argmax(x, 2, false), "ad_argmax");
    ck_assert_error(ad_argmax(ad_zeros(ot_tape, AD_INT64, 1, SH(3)), 0, false),
                    "must be float32 or float64");
}
END_TEST

START_TEST(sort_topk_values)
{
    ad_tensor *x = ot_f64(ot_tape, 2, SH(2, 5), F64(3, 1, NAN, 1, 2, 0, -1, 4, 4, 7));
    ad_tensor *idx, *y = ad_sort(x, 1, false, &idx);
    /* stable: the two 1s keep their order; NaN last */
    ot_assert_values(idx, F64(1, 3, 4, 0, 2, 1, 0, 2, 3, 4), 10, 0);
    ck_assert_double_eq(ot_at(y, 3), 3);
    ck_assert(isnan(ot_at(y, 4)));
    y = ad_sort(x, 1, true, &idx);
    ot_assert_values(idx, F64(2, 0, 4, 1, 3, 4, 2, 3, 0, 1), 10, 0);
    ad_tensor *v = ad_topk(x, 2, -1, true, &idx);
    ot_assert_shape(v, 2, SH(2, 2));
    ot_assert_values(ad_slice(v, 0, 1, 2, 1), F64(7, 4), 2, 0);
    ot_assert_values(ad_topk(x, 1, 0, false, NULL), F64(0, -1, 4, 1, 2), 5, 0);
    ot_assert_values(ad_argsort(x, 0, false), F64(1, 1, 1, 0, 0, 0, 0, 0, 1, 1), 10, 0); /* per column */
    ck_assert_error(ad_topk(x, 6, 1, true, NULL), "ad_topk: k = 6 out of range for axis 1 of [2,5]");
    ck_assert_error(ad_topk(x, -1, 1, true, NULL), "out of range");
    /* persistent input: the results are persistent and owned by the caller */
    ad_tape *prev = ad_tape_activate(NULL);
    ad_tensor *p = ad_from_array(NULL, AD_FLOAT64, 1, SH(3), F64(2, 0, 1));
    ad_tensor *pi, *ps = ad_sort(p, 0, false, &pi);
    ck_assert_ptr_null(ad_tensor_tape(ps));
    ck_assert_ptr_null(ad_tensor_tape(pi));
    ot_assert_values(ps, F64(0, 1, 2), 3, 0);
    ot_assert_values(pi, F64(1, 2, 0), 3, 0);
    ad_tensor_free(ps), ad_tensor_free(pi), ad_tensor_free(p);
    ad_tape_activate(prev);
}
END_TEST

/* The rules' running sums from the end: computed as sum(g) - cumsum(g) + g
 * they kept only rounding where g's first entries dwarf the rest (cumsum
 * of g = 1e8 1 1 1 gave dx 1e8 1 1 1 for 1e8 3 2 1, float64 at 1e17 too;
 * cumprod of 1e8 1e-8 1 1 gave 1 1e8 1 1 for 1 3e8 2 1).  And cumprod's
 * rule with a zero in an 8-d x, which had no room for its [.., n, n]. */
START_TEST(cum_rules_keep_small_entries)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x = ad_leaf(t, AD_FLOAT64, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4});
    ad_tensor *g = ad_from_array(t, AD_FLOAT64, 1, (int64_t[]){4}, (double[]){1e17, 1, 1, 1});
    ck_assert_int_eq(ad_backward(ad_cumsum(x, 0), g, 0), 0);
    ot_assert_values(ad_tensor_grad(x), (double[]){1e17 + 3, 3, 2, 1}, 4, 0);
    ad_tensor *c = ad_leaf(t, AD_FLOAT32, 1, (int64_t[]){4}, (float[]){1e8f, 1e-8f, 1, 1});
    ck_assert_int_eq(ad_backward(ad_sum_all(ad_cumprod(c, 0)), NULL, 0), 0);
    ad_tensor *gc = ad_tensor_grad(c);
    ck_assert_double_eq_tol(ot_at(gc, 1), 3e8, 3e8 * 1e-6);
    ck_assert_double_eq_tol(ot_at(gc, 2), 2, 2e-6);
    ck_assert_double_eq_tol(ot_at(gc, 3), 1, 1e-6);
    ad_tensor *z = ad_leaf(t, AD_FLOAT64, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 3},
                           (double[]){2, 0, 3});
    ck_assert_msg(ad_backward(ad_sum_all(ad_cumprod(z, 7)), NULL, 0) == 0, "%s", ad_error());
    ot_assert_values(ad_tensor_grad(z), (double[]){1, 8, 0}, 3, 0);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

/* int64 values through diag_embed and one_hot as they are (through double,
 * 2^53 + 1 came back 2^53 and INT64_MAX as INT64_MIN); the diagonal at
 * k = INT64_MIN, empty, whose rule negated k (UBSan). */
START_TEST(int64_exact_and_extreme_k)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *row = ad_from_array(t, AD_INT64, 1, (int64_t[]){2},
                                   (int64_t[]){9007199254740993LL, INT64_MAX});
    ad_tensor *d = ad_diag_embed(row, 0);
    ck_assert_ptr_nonnull(d);
    const int64_t *p = ad_data(d);
    ck_assert(p[0] == 9007199254740993LL && p[1] == 0 && p[2] == 0 && p[3] == INT64_MAX);
    ad_tensor *lab = ad_from_array(t, AD_INT64, 1, (int64_t[]){1}, (int64_t[]){INT64_MAX});
    ck_assert_ptr_null(ad_one_hot(lab, 5, AD_FLOAT32));
    ck_assert_ptr_nonnull(strstr(ad_error(), "label 9223372036854775807 at position 0"));
    ck_assert_ptr_null(ad_one_hot(lab, -1, AD_FLOAT32));
    ck_assert_ptr_nonnull(strstr(ad_error(), "label 9223372036854775807"));
    ad_tensor *x = ad_leaf(t, AD_FLOAT32, 2, (int64_t[]){3, 4}, (float[12]){0});
    ck_assert_int_eq(ad_backward(ad_add_scalar(ad_sum_all(ad_diagonal(x, INT64_MIN)), 1.0), NULL, 0),
                     0);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

START_TEST(cumsum_cumprod_values)
{
    ad_tensor *x = ot_f64(ot_tape, 2, SH(2, 3), F64(1, 2, 3, 4, 0, 6));
    ot_assert_values(ad_cumsum(x, 1), F64(1, 3, 6, 4, 4, 10), 6, 0);
    ot_assert_values(ad_cumsum(x, 0), F64(1, 2, 3, 5, 2, 9), 6, 0);
    ot_assert_values(ad_cumprod(x, 1), F64(1, 2, 6, 4, 0, 0), 6, 0);
    /* gradient through a zero: d/dx of sum(cumprod([4, 0, 6])) */
    ad_tensor *r = ot_f64(ot_tape, 1, SH(3), F64(4, 0, 6));
    ad_set_requires_grad(r, true);
    ck_assert_int_eq(ad_backward(ad_sum(ad_cumprod(r, 0), NULL, 0, false), NULL, 0), 0);
    /* y = 4, 4 x1, 4 x1 x2: dy/dx0 = 1, dy/dx1 = 4 + 4 x2 = 28, dy/dx2 = 0 */
    ot_assert_values(ad_tensor_grad(r), F64(1, 28, 0), 3, 1e-12);
}
END_TEST

START_TEST(triangles_and_diagonals)
{
    ad_tensor *x = ot_f64(ot_tape, 2, SH(3, 3), F64(1, 2, 3, 4, 5, 6, 7, 8, 9));
    ot_assert_values(ad_tril(x, 0), F64(1, 0, 0, 4, 5, 0, 7, 8, 9), 9, 0);
    ot_assert_values(ad_triu(x, 1), F64(0, 2, 3, 0, 0, 6, 0, 0, 0), 9, 0);
    ot_assert_values(ad_tril(x, -1), F64(0, 0, 0, 4, 0, 0, 7, 8, 0), 9, 0);
    ot_assert_values(ad_diagonal(x, 0), F64(1, 5, 9), 3, 0);
    ot_assert_values(ad_diagonal(x, 1), F64(2, 6), 2, 0);
    ot_assert_values(ad_diagonal(ad_transpose(x, 0, 1), -1), F64(2, 6), 2, 0);
    ot_assert_shape(ad_diagonal(x, 5), 1, SH(0));
    ad_tensor *d = ad_diag_embed(ot_f64(ot_tape, 1, SH(2), F64(7, 8)), -1);
    ot_assert_shape(d, 2, SH(3, 3));
    ot_assert_values(d, F64(0, 0, 0, 7, 0, 0, 0, 8, 0), 9, 0);
    ot_assert_values(ad_diag(x, 0), F64(1, 5, 9), 3, 0);
    ck_assert_error(ad_tril(ot_f64(ot_tape, 1, SH(2), F64(1, 2)), 0),
                    "ad_tril: expected a matrix or a batch of matrices (ndim >= 2), got [2]");
    ck_assert_error(ad_diag(ad_zeros(ot_tape, AD_FLOAT64, 3, SH(2, 2, 2)), 0), "ad_diag");
}
END_TEST

START_TEST(one_hot_and_masked_fill)
{
    ad_tensor *l = ot_index(ot_tape, 1, SH(3), (const int64_t[]){2, 0, 1});
    ad_tensor *h = ad_one_hot(l, -1, AD_FLOAT32);
    ot_assert_shape(h, 2, SH(3, 3));
    ot_assert_values(h, F64(0, 0, 1, 1, 0, 0, 0, 1, 0), 9, 0);
    ot_assert_shape(ad_one_hot(l, 5, AD_INT64), 2, SH(3, 5));
    ck_assert_error(ad_one_hot(l, 2, AD_FLOAT64),
                    "ad_one_hot: label 2 at position 0 is out of range for 2 classes");
    ck_assert_error(ad_one_hot(h, 3, AD_FLOAT64), "ad_one_hot: labels must be int64, got float32");
    ad_tensor *x = ot_f64(ot_tape, 2, SH(2, 2), F64(1, 2, 3, 4));
    ad_tensor *m = ot_index(ot_tape, 1, SH(2), (const int64_t[]){0, 1});
    ot_assert_values(ad_masked_fill(x, m, -9), F64(1, -9, 3, -9), 4, 0);
    ck_assert_error(ad_masked_fill(x, ad_zeros(ot_tape, AD_INT64, 1, SH(3)), 0),
                    "ad_masked_fill: mask [3] does not broadcast to x [2,2]");
}
END_TEST

START_TEST(log1p_expm1_atan2_values)
{
    ad_tensor *x = ot_f64(ot_tape, 1, SH(3), F64(1e-10, -0.5, 2));
    ot_assert_values(ad_log1p(x), F64(log1p(1e-10), log1p(-0.5), log1p(2.0)), 3, 1e-15);
    /* exact near 0, where exp(x) - 1 would keep few digits */
    ck_assert_double_eq(ot_at(ad_expm1(x), 0), expm1(1e-10));
    ad_tensor *a = ot_f64(ot_tape, 1, SH(3), F64(1, 1, -1));
    ad_tensor *b = ot_f64(ot_tape, 1, SH(3), F64(1, -1, -1));
    ot_assert_values(ad_atan2(a, b), F64(atan2(1, 1), atan2(1, -1), atan2(-1, -1)), 3, 1e-15);
}
END_TEST

static double maxdiff(const ad_tensor *x, const ad_tensor *y)
{
    ck_assert_msg(x && y, "%s", ad_error());
    ck_assert_int_eq(ad_ndim(x), ad_ndim(y));
    for (int d = 0; d < ad_ndim(x); d++) ck_assert_int_eq(ad_shape(x)[d], ad_shape(y)[d]);
    double m = 0;
    for (int64_t i = 0; i < ad_numel(x); i++) m = fmax(m, fabs(ot_at(x, i) - ot_at(y, i)));
    return m;
}

START_TEST(einsum_values)
{
    ad_rng rng;
    ad_rng_init(&rng, 9);
    ad_tensor *a = ad_rand(ot_tape, &rng, AD_FLOAT64, 2, SH(3, 4), -1, 1);
    ad_tensor *b = ad_rand(ot_tape, &rng, AD_FLOAT64, 2, SH(4, 2), -1, 1);
    ad_tensor *c = ad_rand(ot_tape, &rng, AD_FLOAT64, 2, SH(2, 5), -1, 1);
    ad_tensor *q = ad_rand(ot_tape, &rng, AD_FLOAT64, 4, SH(2, 2, 3, 4), -1, 1);
    ad_tensor *k = ad_rand(ot_tape, &rng, AD_FLOAT64, 4, SH(2, 2, 5, 4), -1, 1);
    ad_tensor *sq = ad_rand(ot_tape, &rng, AD_FLOAT64, 2, SH(3, 3), -1, 1);
    ad_tensor *v = ad_rand(ot_tape, &rng, AD_FLOAT64, 1, SH(4), -1, 1);
    ad_tensor *ab = ad_matmul(a, b);
    ck_assert_double_le(maxdiff(ad_einsum("ij,jk->ik", 2, (ad_tensor *[]){a, b}), ab), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("ij,jk", 2, (ad_tensor *[]){a, b}), ab), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("ik,jk->ij", 2, (ad_tensor *[]){a, ad_transpose(b, 0, 1)}), ab), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("ij,jk,kl->il", 3, (ad_tensor *[]){a, b, c}),
                                ad_matmul(ab, c)), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("ij->ji", 1, &a), ad_transpose(a, 0, 1)), 0);
    ck_assert_double_le(maxdiff(ad_einsum("ii->i", 1, &sq), ad_diagonal(sq, 0)), 0);
    ck_assert_double_le(maxdiff(ad_einsum("ii", 1, &sq), ad_sum(ad_diagonal(sq, 0), NULL, 0, false)), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("i,i->", 2, (ad_tensor *[]){v, v}), ad_dot(v, v)), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("ij->", 1, &a), ad_sum(a, NULL, 0, false)), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("ij,j->i", 2, (ad_tensor *[]){a, v}), ad_matmul(a, v)), 1e-15);
    ad_tensor *outer = ad_mul(ad_unsqueeze(v, 1), ad_unsqueeze(v, 0));
    ck_assert_double_le(maxdiff(ad_einsum("i,j->ij", 2, (ad_tensor *[]){v, v}), outer), 0);
    ck_assert_double_le(maxdiff(ad_einsum("bhqd,bhkd->bhqk", 2, (ad_tensor *[]){q, k}),
                                ad_matmul(q, ad_transpose(k, -2, -1))), 1e-15);
    ck_assert_double_le(maxdiff(ad_einsum("ij,ij->i", 2, (ad_tensor *[]){a, a}),
                                ad_sum(ad_square(a), (int[]){1}, 1, false)), 1e-15);
    ck_assert_error(ad_einsum("ij,j->i", 2, (ad_tensor *[]){a, b}),
                    "ad_einsum: operand 1 is [4,2] but 'j' has 1 labels");
    ck_assert_error(ad_einsum("ij,jk->ik", 2, (ad_tensor *[]){a, c}),
                    "ad_einsum: label 'j' has extent 4 and 2");
    ck_assert_error(ad_einsum("ij->iz", 1, &a), "output label 'z'");
    ck_assert_error(ad_einsum("...ij->ij", 1, &a), "ellipsis");
    ck_assert_error(ad_einsum("ij,jk->ik", 1, &a), "has more operands than the 1 given");
    ck_assert_error(ad_einsum("ij->ij", 2, (ad_tensor *[]){a, a}), "names 1 operands but 2 are given");
    ck_assert_error(ad_einsum("i1->i", 1, &v), "unexpected character '1'");
    /* an implicit output of more than 8 labels: an error (it was cut to 8,
     * summing over the rest), and an explicit one names the limit */
    ad_tensor *d5 = ad_ones(ot_tape, AD_FLOAT64, 5, (int64_t[]){1, 1, 1, 1, 2});
    ck_assert_error(ad_einsum("abcde,fghij", 2, (ad_tensor *[]){d5, d5}),
                    "more than 8 labels appear once");
    ck_assert_error(ad_einsum("abcde,fghij->abcdefghi", 2, (ad_tensor *[]){d5, d5}),
                    "more than 8 output labels");
    ck_assert_error(ad_einsum("ij->i", 1, NULL), "ad_einsum: operands is NULL");
}
END_TEST

START_TEST(replay_recomputes_sort)
{
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ad_from_array(t, AD_FLOAT64, 1, SH(3), F64(3, 1, 2));
    ad_set_requires_grad(x, true);
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *y = ad_sort(x, 0, false, NULL), *c = ad_cumsum(y, 0);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *nv = ad_from_array(NULL, AD_FLOAT64, 1, SH(3), F64(5, 9, 4));
    ck_assert_int_ge(ad_tape_replay(t, 1, &x, &nv), 0);
    ot_assert_values(y, F64(4, 5, 9), 3, 0);
    ot_assert_values(c, F64(4, 9, 18), 3, 0);
    ad_tensor_free(nv);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    tcase_add_checked_fixture(tc, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(tc, argmax_argmin_values);
    tcase_add_test(tc, sort_topk_values);
    tcase_add_test(tc, cumsum_cumprod_values);
    tcase_add_test(tc, cum_rules_keep_small_entries);
    tcase_add_test(tc, int64_exact_and_extreme_k);
    tcase_add_test(tc, triangles_and_diagonals);
    tcase_add_test(tc, one_hot_and_masked_fill);
    tcase_add_test(tc, log1p_expm1_atan2_values);
    tcase_add_test(tc, einsum_values);
    tcase_add_test(tc, replay_recomputes_sort);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

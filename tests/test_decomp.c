/* tests/test_decomp.c - values, identities and errors of the linear algebra
 * of ops_decomp.c; gradients are checked by test_ops' rows.  Every test
 * runs twice: with the kernels the build chose (LAPACK when it has it) and
 * with the built-in ones (ad__lapack_off), and the second run also
 * gradchecks and gradgradchecks the op rows of rows_decomp.c, so a build
 * with LAPACK checks both paths. */
#include "optest.h"

#include <string.h>

#include "../autodiff/linalg_kernels.h"

#define F64(...) (const double[]){__VA_ARGS__}
#define SH(...) (const int64_t[]){__VA_ARGS__}

/* max |x - y| over all elements. */
static double maxdiff(const ad_tensor *x, const ad_tensor *y)
{
    ck_assert_msg(x && y, "%s", ad_error());
    ck_assert_int_eq(ad_numel(x), ad_numel(y));
    double m = 0;
    for (int64_t i = 0; i < ad_numel(x); i++) m = fmax(m, fabs(ot_at(x, i) - ot_at(y, i)));
    return m;
}

START_TEST(solve_inv_values)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(2, 2), F64(2, 1, 1, 3));
    ad_tensor *b = ot_f64(ot_tape, 1, SH(2), F64(3, 5));
    ot_assert_values(ad_linalg_solve(A, b), F64(0.8, 1.4), 2, 1e-15);
    ot_assert_values(ad_linalg_inv(A), F64(0.6, -0.2, -0.2, 0.4), 4, 1e-15);
    /* a pivot is needed: A[0,0] = 0 */
    ad_tensor *P = ot_f64(ot_tape, 2, SH(3, 3), F64(0, 2, 1, 1, 1, 1, 2, 0, 3));
    ad_tensor *I = ad_matmul(P, ad_linalg_inv(P));
    ck_assert_double_le(maxdiff(I, ad_eye(ot_tape, AD_FLOAT64, 3)), 1e-14);
    /* batched with broadcasting: [2,2] against [3,2,1] */
    ad_rng rng;
    ad_rng_init(&rng, 7);
    ad_tensor *B = ad_rand(ot_tape, &rng, AD_FLOAT64, 3, SH(3, 2, 1), -1, 1);
    ad_tensor *X = ad_linalg_solve(A, B);
    ot_assert_shape(X, 3, SH(3, 2, 1));
    ck_assert_double_le(maxdiff(ad_matmul(A, X), B), 1e-14);
    /* one vector against a batch of matrices: [2,2,2] and [2] give [2,2] */
    ad_tensor *A2 = ad_stack((ad_tensor *[]){A, ad_mul_scalar(A, 2)}, 2, 0);
    ad_tensor *x2 = ad_linalg_solve(A2, b);
    ot_assert_shape(x2, 2, SH(2, 2));
    ot_assert_values(x2, F64(0.8, 1.4, 0.4, 0.7), 4, 1e-15);
    /* empty matrices and batches */
    ad_tensor *E = ad_zeros(ot_tape, AD_FLOAT64, 2, SH(0, 0));
    ot_assert_shape(ad_linalg_inv(E), 2, SH(0, 0));
    ck_assert_double_eq(ad_item(ad_linalg_det(E)), 1);
    ot_assert_shape(ad_linalg_cholesky(E), 2, SH(0, 0));
    ad_tensor *e3 = ad_zeros(ot_tape, AD_FLOAT64, 3, SH(0, 2, 2));
    ot_assert_shape(ad_linalg_det(e3), 1, SH(0));
    ad_tensor *w0, *q0, *r0, *s0;
    ck_assert_int_eq(ad_linalg_eigh(E, &w0, NULL), 0);
    ck_assert_int_eq(ad_linalg_qr(ad_zeros(ot_tape, AD_FLOAT64, 2, SH(3, 0)), &q0, &r0), 0);
    ot_assert_shape(q0, 2, SH(3, 0));
    ck_assert_int_eq(ad_linalg_svd(ad_zeros(ot_tape, AD_FLOAT64, 2, SH(0, 3)), NULL, &s0, NULL), 0);
    ot_assert_shape(s0, 1, SH(0));
    /* float32 */
    ad_tensor *A32 = ad_cast(A, AD_FLOAT32);
    ot_assert_values(ad_linalg_inv(A32), F64(0.6, -0.2, -0.2, 0.4), 4, 1e-7);
}
END_TEST

START_TEST(solve_errors)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(2, 2), F64(1, 2, 2, 4));
    ad_tensor *b = ot_f64(ot_tape, 1, SH(2), F64(1, 1));
    ck_assert_error(ad_linalg_solve(A, b), "ad_linalg_solve: the matrix is singular");
    ck_assert_ptr_null(ad_linalg_solve(A, b));
    ck_assert_int_eq(ad_errcode(), AD_ERR_NUMERIC);
    ck_assert_error(ad_linalg_inv(A), "ad_linalg_inv: the matrix is singular (zero pivot in column 1)");
    ad_tensor *nanm = ot_f64(ot_tape, 2, SH(2, 2), F64(1, NAN, NAN, 1));
    ad_tensor *w, *sv;
    ck_assert_error_rc(ad_linalg_eigh(nanm, &w, NULL),
                       "ad_linalg_eigh: the matrix has non-finite entries");
    ck_assert_error_rc(ad_linalg_svd(nanm, NULL, &sv, NULL), "has non-finite entries");
    /* eigh reads the lower triangle alone: a NaN above it is not read
     * (PyTorch: w = [1, 1], V = I) */
    ad_tensor *upper_nan = ot_f64(ot_tape, 2, SH(2, 2), F64(1, NAN, 0, 1)), *V;
    ck_assert_int_eq(ad_linalg_eigh(upper_nan, &w, &V), 0);
    ot_assert_values(w, F64(1, 1), 2, 0);
    ot_assert_values(V, F64(1, 0, 0, 1), 4, 0);
    /* B [..., n] with A's batch dimensions is a vector per matrix, as in
     * torch.linalg.solve: A [2,2,2] \ B [2,2] is [2,2], not [2,2,2] */
    ad_tensor *A2 = ot_f64(ot_tape, 3, SH(2, 2, 2), F64(2, 0, 0, 4, 1, 1, 0, 1));
    ad_tensor *B2 = ot_f64(ot_tape, 2, SH(2, 2), F64(2, 4, 3, 1));
    ad_tensor *X2 = ad_linalg_solve(A2, B2);
    ot_assert_shape(X2, 2, SH(2, 2));
    ot_assert_values(X2, F64(1, 1, 2, 1), 4, 1e-15);
    /* the same shape by another rule for solve_triangular, as in PyTorch
     * (which has no vector case there): B [2,2] is one matrix per batch */
    ot_assert_shape(ad_linalg_solve_triangular(A2, B2, true, true, false), 3, SH(2, 2, 2));
    ad_tensor *R = ad_zeros(ot_tape, AD_FLOAT64, 2, SH(2, 3));
    ck_assert_error(ad_linalg_inv(R), "ad_linalg_inv: A must be a square matrix or a batch of "
                                      "them ([..., n, n]), got [2,3]");
    ck_assert_error(ad_linalg_solve(ad_eye(ot_tape, AD_FLOAT64, 3), b),
                    "ad_linalg_solve: B must be [..., 3, k] or [3] for A [3,3], got [2]");
    ck_assert_error(ad_linalg_solve(ad_eye(ot_tape, AD_FLOAT32, 2), b), "dtypes differ");
    ck_assert_error(ad_linalg_solve_triangular(ot_f64(ot_tape, 2, SH(2, 2), F64(1, 0, 1, 0)), b,
                                               false, true, false),
                    "zero on the diagonal");
    ad_tensor *s;
    ck_assert_error_rc(ad_linalg_slogdet(A, &s, NULL), "logabsdet");
}
END_TEST

START_TEST(triangular_values)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(2, 2), F64(2, 7, 1, 4)); /* upper [2,7;0,4], lower [2,0;1,4] */
    ad_tensor *B = ot_f64(ot_tape, 2, SH(2, 1), F64(4, 8));
    ot_assert_values(ad_linalg_solve_triangular(A, B, false, true, false), F64(2, 1.5), 2, 1e-15);
    ot_assert_values(ad_linalg_solve_triangular(A, B, true, true, false), F64(-5, 2), 2, 1e-15);
    /* unit lower [1,0;1,1] */
    ot_assert_values(ad_linalg_solve_triangular(A, B, false, true, true), F64(4, 4), 2, 1e-15);
    /* right: X [1,2] with X [2,0;1,4] = [4, 8] -> X = [1, 2] */
    ad_tensor *Bt = ot_f64(ot_tape, 2, SH(1, 2), F64(4, 8));
    ot_assert_values(ad_linalg_solve_triangular(A, Bt, false, false, false), F64(1, 2), 2, 1e-15);
    /* the right-side shape error names the right-side rule and B as given */
    ck_assert_error(ad_linalg_solve_triangular(ad_eye(ot_tape, AD_FLOAT64, 3),
                                               ad_ones(ot_tape, AD_FLOAT64, 2, SH(4, 2)), true,
                                               false, false),
                    "ad_linalg_solve_triangular: B must be [..., k, 3] for A [3,3] when left is "
                    "false, got [4,2]");
}
END_TEST

START_TEST(det_values)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(3, 3), F64(0, 2, 1, 1, 1, 1, 2, 0, 3));
    /* det = 0(3-0) - 2(3-2) + 1(0-2) = -4 */
    ck_assert_double_eq_tol(ad_item(ad_linalg_det(A)), -4, 1e-14);
    ck_assert(isnan(ad_item(ad_logdet(A))));
    ad_tensor *s, *l;
    ck_assert_int_eq(ad_linalg_slogdet(A, &s, &l), 0);
    ck_assert_double_eq(ad_item(s), -1);
    ck_assert_double_eq_tol(ad_item(l), log(4.0), 1e-14);
    ad_tensor *S = ot_f64(ot_tape, 2, SH(2, 2), F64(1, 2, 2, 4));
    ck_assert_int_eq(ad_linalg_slogdet(S, &s, &l), 0);
    ck_assert_double_eq(ad_item(s), 0);
    ck_assert(isinf(ad_item(l)) && ad_item(l) < 0);
    ck_assert_double_eq(ad_item(ad_linalg_det(S)), 0);
    /* d det / dA = det A^-T */
    ad_tensor *B = ot_f64(ot_tape, 2, SH(2, 2), F64(2, 1, 1, 3));
    ad_set_requires_grad(B, true);
    ck_assert_int_eq(ad_backward(ad_linalg_det(B), NULL, 0), 0);
    ot_assert_values(ad_tensor_grad(B), F64(3, -1, -1, 2), 4, 1e-14);
    /* batched: [2,2,2] gives [2] */
    ad_tensor *D = ot_f64(ot_tape, 3, SH(2, 2, 2), F64(1, 0, 0, 2, 0, 1, 1, 0));
    ot_assert_values(ad_linalg_det(D), F64(2, -1), 2, 1e-15);
}
END_TEST

START_TEST(cholesky_values)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(2, 2), F64(4, 99, 2, 5)); /* upper entry not read */
    ot_assert_values(ad_linalg_cholesky(A), F64(2, 0, 1, 2), 4, 1e-15);
    ad_tensor *N = ot_f64(ot_tape, 2, SH(2, 2), F64(1, 0, 2, 1));
    ck_assert_error(ad_linalg_cholesky(N), "ad_linalg_cholesky: the matrix is not positive "
                                           "definite (the leading minor that is not has order 2)");
    ad_tensor *Nb = ad_stack((ad_tensor *[]){ad_eye(ot_tape, AD_FLOAT64, 2), N}, 2, 0);
    ck_assert_error(ad_linalg_cholesky(Nb), "matrix 1 of the batch is not positive definite");
    /* a NaN that reaches a pivot: the same error from LAPACK (OpenBLAS
     * lets it through) and the built-in kernel */
    ad_tensor *Nn = ot_f64(ot_tape, 2, SH(3, 3), F64(4, 0, 0, 1, 5, 0, NAN, 1, 6));
    ck_assert_error(ad_linalg_cholesky(Nn), "ad_linalg_cholesky: the matrix is not positive "
                                            "definite (the leading minor that is not has order 3)");
}
END_TEST

START_TEST(eigh_values)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(2, 2), F64(2, 1, 1, 2));
    ad_tensor *w, *V;
    ck_assert_int_eq(ad_linalg_eigh(A, &w, &V), 0);
    ot_assert_values(w, F64(1, 3), 2, 1e-14);
    double r = sqrt(0.5);
    /* sign convention: the largest entry of each column positive (first on ties) */
    ot_assert_values(V, F64(r, r, -r, r), 4, 1e-14);
    /* V diag(w) V^T = A and V^T V = I for a random symmetric [4,4] */
    ad_rng rng;
    ad_rng_init(&rng, 3);
    ad_tensor *X = ad_rand(ot_tape, &rng, AD_FLOAT64, 2, SH(4, 4), -1, 1);
    ad_tensor *S = ad_add(X, ad_transpose(X, 0, 1));
    ck_assert_int_eq(ad_linalg_eigh(S, &w, &V), 0);
    ad_tensor *back = ad_matmul(ad_mul(V, ad_unsqueeze(w, 0)), ad_transpose(V, 0, 1));
    ck_assert_double_le(maxdiff(back, S), 1e-13);
    ck_assert_double_le(maxdiff(ad_matmul(ad_transpose(V, 0, 1), V), ad_eye(ot_tape, AD_FLOAT64, 4)),
                        1e-13);
    for (int i = 0; i < 3; i++) ck_assert_double_lt(ot_at(w, i), ot_at(w, i + 1));
    /* eigenvalues only */
    ad_tensor *w2;
    ck_assert_int_eq(ad_linalg_eigh(S, &w2, NULL), 0);
    ck_assert_double_le(maxdiff(w, w2), 0);
    ck_assert_error_rc(ad_linalg_eigh(S, NULL, &V), "eigenvalues");
}
END_TEST

START_TEST(qr_values)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    ad_tensor *A = ad_rand(ot_tape, &rng, AD_FLOAT64, 3, SH(2, 5, 3), -1, 1);
    ad_tensor *Q, *R;
    ck_assert_int_eq(ad_linalg_qr(A, &Q, &R), 0);
    ot_assert_shape(Q, 3, SH(2, 5, 3));
    ot_assert_shape(R, 3, SH(2, 3, 3));
    ck_assert_double_le(maxdiff(ad_matmul(Q, R), A), 1e-14);
    ad_tensor *QtQ = ad_matmul(ad_transpose(Q, -2, -1), Q);
    ad_tensor *I = ad_expand(ad_eye(ot_tape, AD_FLOAT64, 3), 3, SH(2, 3, 3));
    ck_assert_double_le(maxdiff(QtQ, I), 1e-14);
    ck_assert_double_le(maxdiff(ad_tril(R, -1), ad_zeros(ot_tape, AD_FLOAT64, 3, SH(2, 3, 3))), 0);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 3; i++) ck_assert_double_ge(ot_at(R, b * 9 + i * 4), 0);
    ck_assert_error_rc(ad_linalg_qr(ad_zeros(ot_tape, AD_FLOAT64, 2, SH(2, 3)), &Q, &R),
                       "A must be [..., m, n] with m >= n");
}
END_TEST

/* A = U diag(S) Vh, orthonormal columns of U and rows of Vh, S sorted. */
static void check_svd(ad_tensor *A, double tol)
{
    ad_tensor *U, *S, *Vh;
    ck_assert_msg(ad_linalg_svd(A, &U, &S, &Vh) == 0, "%s", ad_error());
    int nd = ad_ndim(A);
    int64_t m = ad_size(A, nd - 2), n = ad_size(A, nd - 1), k = m < n ? m : n;
    ck_assert_int_eq(ad_size(U, -1), k);
    ck_assert_int_eq(ad_size(Vh, -2), k);
    ck_assert_double_le(maxdiff(ad_matmul(ad_mul(U, ad_unsqueeze(S, -2)), Vh), A), tol);
    ad_tensor *UtU = ad_matmul(ad_transpose(U, -2, -1), U);
    ad_tensor *I = ad_expand(ad_eye(ot_tape, AD_FLOAT64, k), ad_ndim(UtU), ad_shape(UtU));
    ck_assert_double_le(maxdiff(UtU, I), tol);
    ck_assert_double_le(maxdiff(ad_matmul(Vh, ad_transpose(Vh, -2, -1)), I), tol);
    for (int64_t i = 0; i + 1 < k; i++) ck_assert_double_ge(ot_at(S, i), ot_at(S, i + 1));
}

START_TEST(svd_values)
{
    ad_tensor *D = ot_f64(ot_tape, 2, SH(2, 3), F64(0, -2, 0, 1, 0, 0));
    ad_tensor *U, *S, *Vh;
    ck_assert_int_eq(ad_linalg_svd(D, &U, &S, &Vh), 0);
    ot_assert_values(S, F64(2, 1), 2, 1e-15);
    /* sign convention: U's largest entries positive, so Vh carries the -1 */
    ot_assert_values(U, F64(1, 0, 0, 1), 4, 1e-15);
    ot_assert_values(Vh, F64(0, -1, 0, 1, 0, 0), 6, 1e-15);
    ad_rng rng;
    ad_rng_init(&rng, 11);
    check_svd(ad_rand(ot_tape, &rng, AD_FLOAT64, 2, SH(5, 3), -1, 1), 1e-13);
    check_svd(ad_rand(ot_tape, &rng, AD_FLOAT64, 3, SH(2, 3, 6), -1, 1), 1e-13);
    /* rank 1: the missing columns of U and rows of Vh are completed */
    ad_tensor *r1 = ot_f64(ot_tape, 2, SH(3, 3), F64(1, 2, 3, 2, 4, 6, 3, 6, 9));
    check_svd(r1, 1e-13);
    ck_assert_int_eq(ad_linalg_svd(r1, NULL, &S, NULL), 0);
    ot_assert_values(S, F64(14, 0, 0), 3, 1e-13);
    ck_assert_error_rc(ad_linalg_svd(r1, &U, NULL, &Vh), "'S' is NULL");
    ck_assert_error_rc(ad_linalg_svd(ot_f64(ot_tape, 1, SH(2), F64(1, 2)), NULL, &S, NULL),
                       "A must be a matrix");
}
END_TEST

/* Gradients through eigenvalues or singular values alone stay finite
 * where the vectors' are not: repeated eigenvalues, zero singular values. */
START_TEST(value_only_gradients)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(3, 3), F64(2, 0, 0, 0, 2, 0, 0, 0, 5));
    ad_set_requires_grad(A, true);
    ad_tensor *w;
    ck_assert_int_eq(ad_linalg_eigh(A, &w, NULL), 0);
    /* sum of eigenvalues = trace: gradient I */
    ck_assert_int_eq(ad_backward(ad_sum(w, NULL, 0, false), NULL, 0), 0);
    ot_assert_values(ad_tensor_grad(A), F64(1, 0, 0, 0, 1, 0, 0, 0, 1), 9, 1e-14);
    /* the largest singular value of a rank-1 matrix u v^T (the other is 0):
     * gradient u v^T / |u||v| */
    ad_tensor *B = ot_f64(ot_tape, 2, SH(3, 2), F64(1, 2, 2, 4, 2, 4));
    ad_set_requires_grad(B, true);
    ad_tensor *S;
    ck_assert_int_eq(ad_linalg_svd(B, NULL, &S, NULL), 0);
    ck_assert_int_eq(ad_backward(ad_sum(ad_narrow(S, 0, 0, 1), NULL, 0, false), NULL, 0), 0);
    double nrm = 3 * sqrt(5.0);
    ot_assert_values(ad_tensor_grad(B), F64(1 / nrm, 2 / nrm, 2 / nrm, 4 / nrm, 2 / nrm, 4 / nrm),
                     6, 1e-13);
}
END_TEST

/* The vectors taken but not used by the loss: the same finite gradients as
 * with the vectors NULL (the full rule's 0 * inf gave NaN at repeated
 * eigenvalues and at the zero singular value; PyTorch's is finite). */
START_TEST(unused_vectors_gradients)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(3, 3), F64(2, 0, 0, 0, 2, 0, 0, 0, 5));
    ad_set_requires_grad(A, true);
    ad_tensor *w, *V;
    ck_assert_int_eq(ad_linalg_eigh(A, &w, &V), 0);
    ck_assert_int_eq(ad_backward(ad_sum(w, NULL, 0, false), NULL, 0), 0);
    ot_assert_values(ad_tensor_grad(A), F64(1, 0, 0, 0, 1, 0, 0, 0, 1), 9, 1e-14);
    ad_tensor *B = ot_f64(ot_tape, 2, SH(3, 2), F64(1, 0, 0, 1, 0, 0));
    ad_set_requires_grad(B, true);
    ad_tensor *U, *S, *Vh;
    ck_assert_int_eq(ad_linalg_svd(B, &U, &S, &Vh), 0);
    ck_assert_int_eq(ad_backward(ad_sum(S, NULL, 0, false), NULL, 0), 0);
    ot_assert_values(ad_tensor_grad(B), F64(1, 0, 0, 1, 0, 0), 6, 1e-14);
}
END_TEST

START_TEST(persistent_results)
{
    /* no tape anywhere: results are persistent and owned by the caller */
    ad_tape *prev = ad_tape_activate(NULL);
    ad_tensor *A = ad_from_array(NULL, AD_FLOAT64, 2, SH(2, 2), F64(2, 1, 1, 2));
    ad_tensor *w, *V, *Q, *R, *d = ad_linalg_det(A), *x = ad_linalg_solve(A, A);
    ck_assert_int_eq(ad_linalg_eigh(A, &w, &V), 0);
    ck_assert_int_eq(ad_linalg_qr(A, &Q, &R), 0);
    ck_assert_ptr_null(ad_tensor_tape(w));
    ck_assert_ptr_null(ad_tensor_tape(V));
    ck_assert_ptr_null(ad_tensor_tape(Q));
    ck_assert_ptr_null(ad_tensor_tape(d));
    ck_assert_double_eq_tol(ad_item(d), 3, 1e-15);
    ot_assert_values(x, F64(1, 0, 0, 1), 4, 1e-15);
    ad_tensor *all[] = {A, w, V, Q, R, d, x};
    for (int i = 0; i < 7; i++) ad_tensor_free(all[i]);
    ad_tape_activate(prev);
}
END_TEST

START_TEST(replay_recomputes)
{
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *a = ad_from_array(t, AD_FLOAT64, 2, SH(2, 2), F64(2, 1, 1, 2));
    ad_set_requires_grad(a, true);
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *d = ad_linalg_det(a), *L = ad_linalg_cholesky(a);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *nv = ad_from_array(NULL, AD_FLOAT64, 2, SH(2, 2), F64(4, 2, 2, 5));
    ck_assert_int_ge(ad_tape_replay(t, 1, &a, &nv), 0);
    ck_assert_double_eq_tol(ad_item(d), 16, 1e-14);
    ot_assert_values(L, F64(2, 0, 1, 2), 4, 1e-15);
    ad_tensor_free(nv);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

/* The op rows of rows_decomp.c with the built-in kernels. */
static int nrows(void)
{
    int n = 0;
    while (rows_decomp[n].op) n++;
    return n;
}

START_TEST(builtin_rows)
{
    const op_row *r = &rows_decomp[_i];
    ad_rng rng;
    ad_rng_init(&rng, 500u + (unsigned)_i);
    ad_tensor *in[4];
    for (int i = 0; i < r->nin; i++) {
        const op_input *p = &r->in[i];
        in[i] = ad_rand(NULL, &rng, AD_FLOAT64, p->ndim, p->shape, -1, 1);
        if (p->kind == OT_GRAD) ad_set_requires_grad(in[i], true);
    }
    ck_assert_msg(!ad__lapack_present(), "the built-in kernels are not selected");
    ad_clear_error();
    ck_assert_msg(ad_gradcheck(r->f, r->ctx, r->nin, in, NULL) == 1, "gradcheck of %s (%s): %s",
                  r->op, r->what, ad_error());
    ck_assert_msg(ad_gradgradcheck(r->f, r->ctx, r->nin, in, NULL) == 1,
                  "gradgradcheck of %s (%s): %s", r->op, r->what, ad_error());
    for (int i = 0; i < r->nin; i++) ad_tensor_free(in[i]);
}
END_TEST

/* Entries far from 1: the built-in factorizations formed sums of squares
 * that overflowed to inf past about 1e154 and underflowed to 0 below
 * about 1e-162, and gave, silently, eigenvalues [1e160, 1e160] for
 * [[1,2],[2,1]] * 1e160, singular values inf, Q NaN (and 0 and an
 * unreduced R at 1e-170).  Now they scale by a power of two first. */
START_TEST(extreme_scales)
{
    const double scales[] = {1e160, 1e-170, 1e300, 1e-300};
    for (int k = 0; k < 4; k++) {
        double c = scales[k];
        ad_tensor *A = ot_f64(ot_tape, 2, SH(2, 2), F64(1 * c, 2 * c, 2 * c, 1 * c));
        ad_tensor *w, *V, *Q, *R, *S;
        ck_assert_msg(ad_linalg_eigh(A, &w, &V) == 0, "%s", ad_error());
        ck_assert_double_eq_tol(ot_at(w, 0) / c, -1, 1e-14);
        ck_assert_double_eq_tol(ot_at(w, 1) / c, 3, 1e-14);
        ck_assert_double_eq_tol(fabs(ot_at(V, 0)), sqrt(0.5), 1e-14);
        ck_assert_msg(ad_linalg_svd(A, NULL, &S, NULL) == 0, "%s", ad_error());
        ck_assert_double_eq_tol(ot_at(S, 0) / c, 3, 1e-14);
        ck_assert_double_eq_tol(ot_at(S, 1) / c, 1, 1e-14);
        ck_assert_msg(ad_linalg_qr(A, &Q, &R) == 0, "%s", ad_error());
        ad_tensor *QR = ad_matmul(Q, R);
        for (int i = 0; i < 4; i++)
            ck_assert_double_eq_tol(ot_at(QR, i) / c, ot_at(A, i) / c, 1e-14);
        ck_assert_double_eq_tol(fabs(ot_at(Q, 0)), 1 / sqrt(5), 1e-14);
    }
}
END_TEST

/* A small block of a badly scaled matrix: diag(1e10, B) with B =
 * [[1, 1e-6], [1e-6, 1 + 1e-8]].  Jacobi's stopping test against the whole
 * matrix's norm never rotated B (eigenvalues 1 and 1 + 1e-8, vectors off
 * by 45 degrees); against each pair's own diagonal it does.  B's
 * eigenvalues are 1 + 5e-9 -+ sqrt(2.5e-17 + 1e-12). */
START_TEST(small_block_of_a_badly_scaled_matrix)
{
    ad_tensor *A = ot_f64(ot_tape, 2, SH(3, 3), F64(1e10, 0, 0, 0, 1, 1e-6, 0, 1e-6, 1 + 1e-8));
    ad_tensor *w, *V;
    ck_assert_msg(ad_linalg_eigh(A, &w, &V) == 0, "%s", ad_error());
    double r = sqrt(2.5e-17 + 1e-12);
    ck_assert_double_eq_tol(ot_at(w, 0), 1 + 5e-9 - r, 1e-15);
    ck_assert_double_eq_tol(ot_at(w, 1), 1 + 5e-9 + r, 1e-15);
    ck_assert_double_eq_tol(ot_at(w, 2), 1e10, 1e-5);
    /* A V = V diag(w), column by column */
    ad_tensor *res = ad_sub(ad_matmul(A, V), ad_mul(V, ad_unsqueeze(w, 0)));
    for (int i = 0; i < 9; i++) ck_assert_double_le(fabs(ot_at(res, i)), 1e-14 * (i % 3 == 2 ? 1e10 : 1));
}
END_TEST

static void builtin_on(void) { ad__lapack_off = true; }
static void builtin_off(void) { ad__lapack_off = false; }

static TCase *value_tests(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(tc, solve_inv_values);
    tcase_add_test(tc, solve_errors);
    tcase_add_test(tc, triangular_values);
    tcase_add_test(tc, det_values);
    tcase_add_test(tc, cholesky_values);
    tcase_add_test(tc, eigh_values);
    tcase_add_test(tc, qr_values);
    tcase_add_test(tc, svd_values);
    tcase_add_test(tc, extreme_scales);
    tcase_add_test(tc, small_block_of_a_badly_scaled_matrix);
    tcase_add_test(tc, value_only_gradients);
    tcase_add_test(tc, unused_vectors_gradients);
    tcase_add_test(tc, persistent_results);
    tcase_add_test(tc, replay_recomputes);
    return tc;
}

int main(void)
{
    Suite *s = suite_create("decomp");
    suite_add_tcase(s, value_tests("chosen kernels"));
    TCase *b = value_tests("built-in kernels");
    /* unchecked: runs in the process (fork or not) around every test */
    tcase_add_unchecked_fixture(b, builtin_on, builtin_off);
    tcase_add_checked_fixture(b, builtin_on, builtin_off);
    tcase_add_loop_test(b, builtin_rows, 0, nrows());
    suite_add_tcase(s, b);
    return ot_run(s);
}

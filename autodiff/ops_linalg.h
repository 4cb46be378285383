/* autodiff/ops_linalg.h - products, and linear algebra with derivatives.
 *
 * Same dtype on both sides, floating only.  Operands may be any views
 * (transposed, sliced, expanded): they are read through their strides, and
 * a transposed matrix is handed to the kernel as such, without a copy.
 * With the `blas` build option the float32/float64 matrix products call
 * OpenBLAS (cblas_sgemm/cblas_dgemm); otherwise the library's own blocked
 * kernel (AVX-512 or AVX2+FMA where the CPU has them, chosen at run time).  Large
 * float32 products accumulate in float32, as BLAS does; dot accumulates in
 * double.
 */
#ifndef AUTODIFF_OPS_LINALG_H
#define AUTODIFF_OPS_LINALG_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Matrix product with torch.matmul's rules:
 *   [n] x [n] -> [] (the dot product; recorded as ad_dot's "dot" op);
 *   [m,k] x [k,n] -> [m,n];
 *   [k] x [k,n] -> [n] and [m,k] x [k] -> [m] (the vector is promoted to a
 *   matrix and the added dimension removed from the result);
 *   batched: [...,m,k] x [...,k,n] -> [...,m,n], the batch dimensions
 *   broadcast by numpy's rules ([2,1,3,4] x [5,4,6] -> [2,5,3,6]); a 1-D
 *   operand broadcasts over the other's batch.
 * dA = g B^T, dB = A^T g, each summed over the batch dimensions that
 * broadcasting added to its operand.  A result with k = 0 is zeros.
 * Errors: NULL, integer dtype, dtypes that differ, a 0-d operand,
 * "ad_matmul: inner dimensions differ: [3,4] x [5,6]", batch dimensions
 * that do not broadcast. */
AD_API ad_tensor *ad_matmul(ad_tensor *a, ad_tensor *b);
/* sum_i a_i b_i of two 1-D tensors of one length, a 0-d tensor.
 * da = g b, db = g a.  Errors: NULL, integer dtype, dtypes that differ,
 * not 1-D, "ad_dot: lengths differ: [3] x [4]". */
AD_API ad_tensor *ad_dot(ad_tensor *a, ad_tensor *b);

/* y = x w^T + b, torch.nn.functional.linear: x [..., in], w [out, in],
 * b [out] or NULL (no bias); y [..., out], on x's tape as any op result.
 * dx = g w, dw = g^T x (summed over all leading dimensions of x),
 * db = g summed over them.  The product and the bias are one matrix kernel
 * call (the bias is added to each tile of y while it is in cache), and in
 * a first-order ad_backward dw is added straight into w's gradient buffer
 * by the product; the backward rule is made of ops, so it can be
 * differentiated again.
 * Errors: NULL, integer dtype, dtypes that differ, w not 2-D, x 0-d,
 * "ad_linear: x has 783 features but w is [256,784] (x [64,783])",
 * "ad_linear: bias must be [256] for w [256,784], got [10]". */
AD_API ad_tensor *ad_linear(ad_tensor *x, ad_tensor *w, ad_tensor *b);

/* ---- linear algebra with derivatives (torch.linalg's names and rules) -------------
 * Every function works on the last two dimensions, batched over the others
 * ([..., m, n]); float32 or float64 (float32 is computed in double and
 * rounded at the end).  The factorizations use LAPACK (OpenBLAS's) when the
 * build found it, otherwise built-in unblocked kernels meant for small
 * matrices (cyclic Jacobi for eigh, Householder for QR).  Results are owned
 * as tape.h says; functions with two results return them through pointers
 * (both owned like a single result) and return 0, or -1 with ad_error().
 * Every gradient is made of these same ops, so higher derivatives work;
 * the formulas and their sources are beside the ops in ops_decomp.c.
 * Common errors: NULL, integer dtype, dtypes that differ, a non-square A
 * ("ad_linalg_inv: A must be a square matrix or a batch of them ([..., n,
 * n]), got [2,3]"), and, with code AD_ERR_NUMERIC, a matrix the
 * factorization cannot take ("ad_linalg_solve: matrix 1 of the batch is
 * singular (zero pivot in column 2)"; columns count from 0) - only exact zero pivots are caught:
 * a nearly singular A gives large, inaccurate values, as in LAPACK.
 * Not provided: eig of non-symmetric matrices, lstsq, pinv, matrix_exp,
 * full_matrices SVD. */

/* X = A^-1 B: A [..., n, n], B [..., n, k], or a vector B: [n] (one
 * right-hand side for every matrix) or [..., n] with A's batch dimensions
 * exactly (one per matrix; torch.linalg.solve's rule: B [3, 3] for A
 * [3, 3, 3] is three vectors), X then [..., n]; the batch dimensions
 * broadcast.  LU with partial pivoting.  dB = A^-T G, dA = -dB X^T
 * (summed over broadcast batches). */
AD_API ad_tensor *ad_linalg_solve(ad_tensor *A, ad_tensor *B);
/* X with T X = B (left) or X T = B (!left, B [..., k, n]), T the upper or
 * lower triangle of A (the other entries are not read); unitriangular
 * takes T's diagonal as ones (not read).  dB = T^-T G (left), dA = the
 * triangle of -dB X^T; the gradient has zeros outside the triangle read.
 * Error: a zero on the diagonal (AD_ERR_NUMERIC). */
AD_API ad_tensor *ad_linalg_solve_triangular(ad_tensor *A, ad_tensor *B, bool upper, bool left,
                                             bool unitriangular);
/* A^-1 [..., n, n].  dA = -A^-T G A^-T.  Prefer ad_linalg_solve to
 * multiplying by an inverse. */
AD_API ad_tensor *ad_linalg_inv(ad_tensor *A);
/* sign(det A) (optional: sign may be NULL) and log|det A|, both [...].
 * A singular A gives sign 0 and -inf.  d log|det A| = g A^-T (the sign is
 * a constant); the gradient of a singular A fails (ad_linalg_inv's
 * error).  Error: logabsdet NULL. */
AD_API int ad_linalg_slogdet(ad_tensor *A, ad_tensor **sign, ad_tensor **logabsdet);
/* det A = sign exp(log|det A|) [...]; dA = g det(A) A^-T, so the gradient
 * needs an invertible A (it fails at a singular one, whose true gradient,
 * the adjugate, is not computed). */
AD_API ad_tensor *ad_linalg_det(ad_tensor *A);
/* log det A = log|det A| + log(sign) [...] (torch.logdet): NaN for a
 * negative determinant, -inf for 0.  dA = g A^-T. */
AD_API ad_tensor *ad_logdet(ad_tensor *A);
/* L with A = L L^T, L lower triangular with a positive diagonal, for a
 * symmetric positive-definite A; only A's lower triangle is read.
 * dA = L^-T sym(Phi(L^T G)) L^-1 (Murray 2016; Phi: the lower triangle with
 * the diagonal halved), symmetric: the derivative along symmetric
 * perturbations, as PyTorch.  Error: not positive definite
 * (AD_ERR_NUMERIC): "ad_linalg_cholesky: the matrix is not positive
 * definite (the leading minor that is not has order 2)". */
AD_API ad_tensor *ad_linalg_cholesky(ad_tensor *A);
/* Eigenvalues w [..., n] in ascending order and, when eigenvectors is not
 * NULL, orthonormal eigenvectors V [..., n, n] (columns; A = V diag(w)
 * V^T) of a symmetric A, of which only the lower triangle is read.  Each
 * eigenvector's sign is fixed: its entry of largest magnitude is positive.
 *   dA = V (diag(G_w) + F o (V^T G_V - G_V^T V)/2) V^T, F_ij = 1/(w_j - w_i)
 * (Giles 2008; Seeger et al. 2017), symmetric like cholesky's.  The
 * gradient through V is defined only for distinct eigenvalues: repeated
 * ones give inf/NaN, as in PyTorch; with eigenvectors NULL, or taken but
 * unused by the loss (G_V zero; a backward pass that is not recorded),
 * the gradient is V diag(G_w) V^T, finite for repeated eigenvalues too
 * (exact for symmetric functions of w such as its sum; otherwise the
 * one-sided derivative the solver's eigenvectors pick).
 * Errors: eigenvalues NULL, a NaN or inf entry in the lower triangle
 * ("ad_linalg_eigh: the matrix has non-finite entries"). */
AD_API int ad_linalg_eigh(ad_tensor *A, ad_tensor **eigenvalues, ad_tensor **eigenvectors);
/* Reduced QR of A [..., m, n], m >= n: Q [..., m, n] with orthonormal
 * columns and R [..., n, n] upper triangular with a diagonal >= 0 (unique,
 * and smooth in A, when A has full column rank).
 *   dA = (G_Q + Q copyltu(R G_R^T - G_Q^T Q)) R^-T
 * (Walter & Lehmann 2018; copyltu mirrors the lower triangle), which
 * needs full column rank.  Errors: Q or R NULL, m < n. */
AD_API int ad_linalg_qr(ad_tensor *A, ad_tensor **Q, ad_tensor **R);
/* Reduced SVD of A [..., m, n], k = min(m, n): singular values S [..., k]
 * in descending order and, when U / Vh are not NULL, U [..., m, k] and
 * Vh [..., k, n] with orthonormal columns / rows, A = U diag(S) Vh
 * (torch.linalg.svd with full_matrices = false).  Signs are fixed: each
 * column of U has its entry of largest magnitude positive.  LAPACK's
 * dgesdd, or one-sided Jacobi.
 *   dA = U [skew(U^T G_U)/E S + S skew(V^T G_V)/E + diag(G_S)] V^T
 *      + (I - U U^T) G_U S^-1 V^T + U S^-1 G_V^T (I - V V^T),
 * skew(X) = X - X^T, E_ij = S_j^2 - S_i^2 (Townsend 2016).  With U and
 * Vh both NULL, or taken but unused by the loss (G_U and G_V zero; a
 * backward pass that is not recorded), the gradient is U diag(G_S) V^T,
 * finite everywhere (where
 * singular values repeat or vanish, S is not differentiable and this is
 * the subgradient the solver's singular vectors give, as in PyTorch);
 * when U or Vh is taken it needs distinct, non-zero singular values
 * (inf/NaN otherwise, as in PyTorch).  Errors: S NULL, A with fewer than
 * 2 dimensions, a NaN or inf entry. */
AD_API int ad_linalg_svd(ad_tensor *A, ad_tensor **U, ad_tensor **S, ad_tensor **Vh);

#ifdef __cplusplus
}
#endif
#endif

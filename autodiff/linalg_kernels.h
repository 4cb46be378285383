/* autodiff/linalg_kernels.h - the factorizations behind the linear-algebra
 * ops of ops_decomp.c (internal, not installed).
 *
 * Every kernel works on one matrix of doubles stored column by column
 * (element (i, j) of an m x n matrix at a[i + j m]), which is LAPACK's
 * layout: ops_decomp.c copies each matrix of a batch into such a buffer
 * (float32 is computed in double) and back.  With AD_HAVE_LAPACK the
 * kernels call LAPACK (OpenBLAS ships it; see meson.build); otherwise, or
 * with ad__lapack_off, the library's own unblocked algorithms run, which are exact enough but meant
 * for small matrices (O(n^3) without blocking; the eigensolver is cyclic
 * Jacobi).  Integer returns: 0 on success, k > 0 when the matrix is
 * numerically unusable at step k (a zero pivot, a non-positive pivot of
 * Cholesky, no convergence), -1 when out of memory. */
#ifndef AUTODIFF_LINALG_KERNELS_H
#define AUTODIFF_LINALG_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* Whether LAPACK is used: built with it and not switched off.  Tests set
 * ad__lapack_off (per thread) to run the built-in kernels in a build that
 * has LAPACK, so both paths are checked by one build. */
extern _Thread_local bool ad__lapack_off;
bool ad__lapack_present(void);

/* LU with partial pivoting of the n x n a in place (L unit lower, U
 * upper); piv[i] is the row swapped with row i at step i (0-based).
 * Returns k > 0 when U(k-1, k-1) is exactly zero (a singular matrix). */
int ad__lu(int n, double *a, int *piv);
/* Solves A X = B for the nrhs columns of b (n x nrhs) from ad__lu's
 * factors, in place. */
void ad__lu_solve(int n, int nrhs, const double *lu, const int *piv, double *b);
/* Cholesky A = L L^T of the symmetric positive-definite n x n a, reading
 * its lower triangle; L is left in the lower triangle and the strict upper
 * triangle is zeroed.  Returns k > 0 when the leading minor of order k is
 * not positive definite. */
int ad__cholesky(int n, double *a);
/* Solves T X = B in place for the triangle of t (upper or lower; unit: the
 * diagonal is taken as ones and not read).  Returns k > 0 when T(k-1, k-1)
 * is exactly zero. */
int ad__trsolve(int n, int nrhs, const double *t, bool upper, bool unit, double *b);
/* Eigenvalues w (ascending) and orthonormal eigenvectors (the columns of
 * a, overwritten) of the symmetric n x n a, reading its lower triangle.
 * Each eigenvector's sign is fixed: its entry of largest magnitude (the
 * first such) is positive. */
int ad__eigh(int n, double *a, double *w);
/* Reduced QR of the m x n a (m >= n): a is overwritten by Q (m x n,
 * orthonormal columns) and r (n x n) receives R, upper triangular with a
 * diagonal >= 0 (unique for a matrix of full column rank). */
int ad__qr(int m, int n, double *a, double *r);
/* Reduced SVD of the m x n a (destroyed): k = min(m, n) singular values s
 * in descending order, u (m x k) and v (n x k) with orthonormal columns,
 * a = u diag(s) v^T.  Signs are fixed: each column of u has its entry of
 * largest magnitude positive (v's column follows). */
int ad__svd(int m, int n, double *a, double *u, double *s, double *v);

#endif

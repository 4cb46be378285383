/* autodiff/gemm.h - the matrix kernel behind ad_matmul (internal, not
 * installed).
 *
 * One entry point computes C = A B for float32 or float64 matrices given
 * by a pointer and two strides each, so transposed and otherwise strided
 * views are read in place.  With AD_HAVE_CBLAS it calls cblas_sgemm /
 * cblas_dgemm; otherwise (and always through ad__gemm_builtin) it runs the
 * library's own blocked kernel: packing plus a register-tiled micro-kernel
 * chosen at run time per dtype (see gemm.c to add one). */
#ifndef AUTODIFF_GEMM_H
#define AUTODIFF_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

/* C[m,n] = A[m,k] B[k,n] in dtype (AD_FLOAT32 or AD_FLOAT64).  Element
 * (i,p) of A is a[i*rsa + p*csa], (p,j) of B is b[p*rsb + j*csb], (i,j) of
 * C is c[i*ldc + j]; strides in elements.  C is overwritten (k == 0 gives
 * zeros) and must not overlap A or B.  The built-in kernel's packing
 * buffers come from scratch's arena when scratch is not NULL (so a loop
 * that resets its tape stops allocating), else from the heap.  Returns 0,
 * or -1 when out of memory (no error message is set: the caller names
 * itself). */
int ad__gemm(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a,
             int64_t rsa, int64_t csa, const void *b, int64_t rsb, int64_t csb, void *c,
             int64_t ldc);

/* The same, always with the built-in kernel (for tests and benchmarks). */
int ad__gemm_builtin(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k,
                     const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb,
                     int64_t csb, void *c, int64_t ldc);

/* Whether ad__gemm reads a rows x cols operand with strides (rs, cs)
 * without copying it.  Always true for the built-in kernel, which packs any
 * strides; with CBLAS, true when one stride is 1 and the other a valid
 * leading dimension (a plain or transposed matrix).  Callers make other
 * operands contiguous first. */
bool ad__gemm_direct(int64_t rows, int64_t cols, int64_t rs, int64_t cs);

/* Name of the built-in micro-kernel ad__gemm_builtin uses for dtype now
 * ("avx2-fma 6x8", "generic 4x4", ...). */
const char *ad__gemm_kernel_name(ad_dtype dtype);

/* Test hook, not thread-safe: force the portable micro-kernel even where a
 * faster one is available, and override the cache blocking (0 keeps the
 * kernel's default).  ad__gemm_testing(false, 0, 0, 0) restores defaults. */
void ad__gemm_testing(bool force_generic, int64_t mc, int64_t kc, int64_t nc);

#endif

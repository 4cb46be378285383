/* autodiff/gemm.h - the matrix kernel behind ad_matmul (internal, not
 * installed).
 *
 * One entry point computes C = A B for float32 or float64 matrices given
 * by a pointer and two strides each, so transposed and otherwise strided
 * views are read in place.  With AD_HAVE_CBLAS it calls cblas_sgemm /
 * cblas_dgemm; otherwise (and always through ad__gemm_builtin) it runs the
 * library's own blocked kernel: packing plus a register-tiled micro-kernel
 * chosen at run time per dtype (AVX-512, AVX2+FMA or portable; see
 * gemm_kernels.inc to add one), threaded with OpenMP when the build has
 * it. */
#ifndef AUTODIFF_GEMM_H
#define AUTODIFF_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "tensor.h"

/* What ad__gemm_ep does beyond C = A B: with bias (not NULL, of C's
 * dtype), C(i,j) += bias[j * bias_stride], added to each tile of C after
 * the product while the tile is still in cache; with accumulate, C += A B
 * (a gradient accumulated in place; no bias then).  weight_grad says C is
 * a weight's gradient buffer, accumulated into or not: on a runner's
 * threads it is then cut by rows (gemm_driver.inc). */
typedef struct ad_gemm_ep {
    const void *bias;
    int64_t bias_stride;
    bool accumulate;
    bool weight_grad;
} ad_gemm_ep;

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

/* The same followed by the epilogue ep (NULL: none). */
int ad__gemm_ep(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k,
                const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb,
                int64_t csb, void *c, int64_t ldc, const ad_gemm_ep *ep);
int ad__gemm_builtin_ep(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k,
                        const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb,
                        int64_t csb, void *c, int64_t ldc, const ad_gemm_ep *ep);

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
 * ("avx512 14x32", "avx2-fma 6x16", "generic 4x4", ...). */
const char *ad__gemm_kernel_name(ad_dtype dtype);

/* A matrix A (m x k) packed once for the built-in kernel and multiplied
 * by many B (a recurrence's weight, one product per time step: packing
 * the 1024 x 256 W of a 256-unit LSTM cost as much as a third of each
 * step's product).  ad__gemm_pack_a packs it into scratch taken from
 * tape's arena (the heap when tape is NULL) for products with up to nmax
 * columns; nothing else may be allocated on that arena until
 * ad__gemm_packed_release gives the scratch back.  It leaves p->pa NULL,
 * packing nothing, when the built-in kernel would share such a product
 * among threads (the caller then calls ad__gemm per product); returns -1
 * when out of memory.  ad__gemm_packed computes C = A B, or C += A B with
 * accumulate, for B k x n at (rsb, csb) and C m x n with element (i, j)
 * at c[i*rsc + j*csc] (a transposed C is allowed), always with the
 * built-in kernel's micro-kernel and packing whatever AD_GEMM says, with
 * k blocks up to 1024 long (B is a few columns: its k x nr sliver stays
 * in L2), so its last bits may differ from ad__gemm_builtin's for k > 256. */
typedef struct ad_gemm_packed {
    ad_dtype dtype;
    int64_t m, k, nmax, MC, KC, NC;
    const void *kernel;
    void *pa, *pb, *raw;
    ad_tape *tape;
    ad_arena_mark mark;
    const void *a; /* A as given, for ad__gemm_packed_or_plain */
    int64_t rsa, csa;
} ad_gemm_packed;
int ad__gemm_pack_a(ad_tape *tape, ad_dtype dtype, int64_t m, int64_t k, const void *a,
                    int64_t rsa, int64_t csa, int64_t nmax, ad_gemm_packed *p);
void ad__gemm_packed(const ad_gemm_packed *p, int64_t n, const void *b, int64_t rsb,
                     int64_t csb, void *c, int64_t rsc, int64_t csc, bool accumulate);
/* ad__gemm_packed when A was packed, else the same product (C = A B, or
 * C += A B) by ad__gemm_ep from the A given to ad__gemm_pack_a, on its
 * tape's scratch: what a caller does for every product either way.  C's
 * rsc or csc must be 1.  Returns 0, or -1 when out of memory (no message
 * set; p is not released). */
int ad__gemm_packed_or_plain(const ad_gemm_packed *p, int64_t n, const void *b, int64_t rsb,
                             int64_t csb, void *c, int64_t rsc, int64_t csc, bool accumulate);
void ad__gemm_packed_release(ad_gemm_packed *p);

/* ---- test hooks: not thread-safe, for tests and benchmarks only ---------------- */

/* Force the portable micro-kernel even where a faster one is available, and
 * override the cache blocking (0 keeps the kernel's default).
 * ad__gemm_testing(false, 0, 0, 0) restores every default, including those
 * set by the two hooks below. */
void ad__gemm_testing(bool force_generic, int64_t mc, int64_t kc, int64_t nc);

/* The built-in kernels for dtype, i = 0, 1, ... until NULL: each one's name
 * and, in *runnable (may be NULL), whether this CPU can run it.  The list
 * includes test-only kernels ("portable 14x32": the AVX-512 tile shape
 * compiled without AVX-512), never chosen automatically, which let a test
 * check every tile shape on any machine. */
const char *ad__gemm_kernel_at(ad_dtype dtype, int i, bool *runnable);

/* Make ad__gemm_builtin use the named kernel for dtype (NULL: back to the
 * automatic choice).  Returns 0, or -1 when there is no such kernel or this
 * CPU cannot run it. */
int ad__gemm_testing_kernel(ad_dtype dtype, const char *name);

/* Whether the built-in kernel computes an m x n x k product of dtype on
 * its thin path (autodiff/gemm_thin.inc) now; and whether that path is
 * used at all (true, the default; false sends thin products through the
 * blocked driver, whose bits a test compares them with).  The
 * ad__gemm_testing call restores it. */
bool ad__gemm_thin_takes(ad_dtype dtype, int64_t m, int64_t n, int64_t k);
void ad__gemm_testing_thin(bool enabled);
/* Whether the blocked driver may read a row-major A or B where it lies
 * (the direct kernels of gemm_kernels.inc) instead of packing it: true,
 * the default; false packs every operand, whose bits a test compares. */
void ad__gemm_testing_direct(bool enabled);
/* Whether the blocked driver computes an m x n x k product with A's and
 * B's strides (csa, rsb, csb) turned around, as C^T = B^T A^T (the swapped
 * products of gemm_driver.inc), with no epilogue or a bias; and whether it
 * may (true, the default; false computes it as it is, whose bits a test
 * compares).  The ad__gemm_testing call restores it. */
bool ad__gemm_swap_takes(ad_dtype dtype, int64_t m, int64_t n, int64_t k, int64_t csa,
                         int64_t rsb, int64_t csb);
void ad__gemm_testing_swap(bool enabled);
/* Whether the default choice (no AD_GEMM, nothing forced) sends a float32
 * m x n x k product with these strides, which CBLAS could take, to the
 * built-in kernel instead (gemm.c, builtin_by_default); false without
 * CBLAS, where there is no choice. */
bool ad__gemm_default_builtin(ad_dtype dtype, int64_t m, int64_t n, int64_t k, int64_t csa,
                              int64_t rsb, int64_t csb);

/* With OpenMP: products of at least min_madds multiply-adds (m n k) are
 * shared among threads; the default (0 restores it) is 2^21.  A test sets
 * it low to run the threaded path on small matrices. */
void ad__gemm_testing_parallel(int64_t min_madds);


/* ---- the choice between the built-in kernel and CBLAS (gemm_choice.c) ---------
 * A product's shape as CBLAS sees it: ta / tb when A / B is passed
 * transposed.  ad__gemm_choose says which kernel computes it: AD_GEMM_BUILTIN,
 * AD_GEMM_BLAS, or AD_GEMM_CALIBRATE when the shape has not been measured
 * yet (the caller then times both, CALIBRATION_REPS times each, and reports
 * the minima to ad__gemm_record, which stores and returns the choice).
 * AD_GEMM=builtin|blas in the environment fixes the answer. */
typedef struct gemm_shape {
    ad_dtype dtype;
    int64_t m, n, k;
    bool ta, tb;
} gemm_shape;
enum { AD_GEMM_CALIBRATE = 1, AD_GEMM_BUILTIN = 2, AD_GEMM_BLAS = 3 };
#define CALIBRATION_REPS 3
#define CHOICE_MARGIN 1.05 /* CBLAS must be 5% faster to be taken */
int ad__gemm_choose(const gemm_shape *s);
/* Whether the choice is the default (AD_GEMM unset or unknown, no test
 * hook): CBLAS, except for a product that the built-in kernel would share
 * among threads while a one-thread OpenBLAS would leave them idle
 * (ad__gemm_ep).  AD_GEMM=blas sends even those to CBLAS. */
bool ad__gemm_default_mode(void);
int ad__gemm_record(const gemm_shape *s, double t_builtin, double t_blas);
/* Seconds: the calling thread's CPU time, or the monotonic wall clock. */
double ad__gemm_clock(bool thread_cpu);
/* For tests and benchmarks: the recorded choice for s (AD_GEMM_CALIBRATE
 * when none yet), with the measured seconds when not NULL; and a hook that
 * forgets every recorded choice and forces mode (-1: back to AD_GEMM). */
int ad__gemm_choice(const gemm_shape *s, double *t_builtin, double *t_blas);
void ad__gemm_testing_choice(int mode);

#endif

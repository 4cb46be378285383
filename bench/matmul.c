/* bench/matmul.c - GFLOP/s of C = A B, square n x n, float32 or float64.
 *
 *   matmul MODE DTYPE MIN_TIME N...
 *
 * MODE "ad" times ad_matmul on persistent operands (whatever kernel the
 * library was built with: its own, or OpenBLAS through -Dblas=enabled);
 * "cblas" calls cblas_sgemm / cblas_dgemm directly in this process, the
 * ceiling ad_matmul can reach through BLAS.  Each size prints one JSON line
 * with the kernel that ran (the library's built-in kernel name, or
 * OpenBLAS's core name, which shows what OPENBLAS_CORETYPE selected).
 *
 * One result element is checked against a dot product in double, so a fast
 * but wrong kernel cannot post a figure. */
#include "common.h"

#include <math.h>
#include <stdint.h>

#include <autodiff/autodiff.h>

#include "autodiff/gemm.h"

#ifdef BENCH_HAVE_CBLAS
#include <cblas.h>
/* OpenBLAS's own extension, declared by its cblas.h; named here so the
 * report says which of its kernels the dispatcher picked. */
#define BLAS_CORE() openblas_get_corename()
#else
#define BLAS_CORE() "none"
#endif

typedef struct run {
    const char *mode;
    ad_dtype dtype;
    int64_t n;
    ad_tape *tape;
    ad_tensor *a, *b, *c;
} run;

static void step_ad(void *p)
{
    run *r = p;
    /* The result goes on the active tape; the reset frees it and keeps the
     * arena, so repeated calls allocate nothing (the packing buffers of the
     * built-in kernel come from the same arena). */
    r->c = ad_matmul(r->a, r->b);
    if (!r->c) {
        fprintf(stderr, "matmul: %s\n", ad_error());
        exit(1);
    }
}

static void step_ad_reset(void *p)
{
    run *r = p;
    ad_tape_reset(r->tape);
    step_ad(p);
}

#ifdef BENCH_HAVE_CBLAS
static void step_cblas(void *p)
{
    run *r = p;
    int n = (int)r->n;
    if (r->dtype == AD_FLOAT32)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f,
                    ad_data(r->a), n, ad_data(r->b), n, 0.0f, ad_data(r->c), n);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0,
                    ad_data(r->a), n, ad_data(r->b), n, 0.0, ad_data(r->c), n);
}
#endif

/* |C[i][j] - sum_p A[i][p] B[p][j]| against the size of the terms. */
static int check(run *r, int64_t i, int64_t j)
{
    double s = 0, mag = 0, c;
    int64_t n = r->n;
    for (int64_t p = 0; p < n; p++) {
        double x, y;
        ad_get(r->a, (int64_t[]){i, p}, &x);
        ad_get(r->b, (int64_t[]){p, j}, &y);
        s += x * y;
        mag += fabs(x * y);
    }
    ad_get(r->c, (int64_t[]){i, j}, &c);
    double eps = r->dtype == AD_FLOAT32 ? 1e-5 : 1e-13;
    if (fabs(c - s) > eps * (mag + 1)) {
        fprintf(stderr, "matmul %s n=%ld: C[%ld][%ld] = %g, expected %g\n", r->mode, (long)n,
                (long)i, (long)j, c, s);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s ad|cblas float32|float64 MIN_TIME N...\n", argv[0]);
        return 2;
    }
    run r = {.mode = argv[1]};
    r.dtype = strcmp(argv[2], "float64") == 0 ? AD_FLOAT64 : AD_FLOAT32;
    double min_time = atof(argv[3]);
    bool use_ad = strcmp(r.mode, "ad") == 0;
#ifndef BENCH_HAVE_CBLAS
    if (!use_ad) {
        fprintf(stderr, "matmul: built without CBLAS\n");
        return 2;
    }
#endif
    ad_set_grad_enabled(false);
    r.tape = ad_tape_new();
    unsigned long long seed = 42;
    for (int arg = 4; arg < argc; arg++) {
        r.n = atol(argv[arg]);
        int64_t n = r.n;
        r.a = ad_empty(NULL, r.dtype, AD_SHAPE(n, n));
        r.b = ad_empty(NULL, r.dtype, AD_SHAPE(n, n));
        r.c = ad_empty(NULL, r.dtype, AD_SHAPE(n, n));
        if (!r.a || !r.b || !r.c) {
            fprintf(stderr, "matmul: %s\n", ad_error());
            return 1;
        }
        for (int64_t i = 0; i < n * n; i++) {
            if (r.dtype == AD_FLOAT32) {
                ((float *)ad_data(r.a))[i] = (float)bench_rand(&seed);
                ((float *)ad_data(r.b))[i] = (float)bench_rand(&seed);
            } else {
                ((double *)ad_data(r.a))[i] = bench_rand(&seed);
                ((double *)ad_data(r.b))[i] = bench_rand(&seed);
            }
        }
        double sec;
        const char *kernel;
        ad_tensor *c_persistent = r.c;
        if (use_ad) {
            ad_tape_activate(r.tape);
            sec = bench_time(step_ad_reset, &r, min_time);
            /* bench/run defines BENCH_LIB_BLAS when it links the library
             * built with -Dblas=enabled, whose ad_matmul calls OpenBLAS. */
#ifdef BENCH_LIB_BLAS
            kernel = BLAS_CORE();
#else
            kernel = ad__gemm_kernel_name(r.dtype);
#endif
        } else {
#ifdef BENCH_HAVE_CBLAS
            sec = bench_time(step_cblas, &r, min_time);
#else
            sec = 0;
#endif
            kernel = BLAS_CORE();
        }
        if (check(&r, 0, 0) || check(&r, n - 1, n / 2) || check(&r, n / 3, n - 1)) return 1;
        if (use_ad) {
            ad_tape_reset(r.tape);
            ad_tape_activate(NULL);
        }
        bench_json("bench s mode s dtype s n i kernel s seconds d gflops d", "matmul", r.mode,
                   ad_dtype_name(r.dtype), (long)n, kernel, sec,
                   2.0 * (double)n * (double)n * (double)n / sec * 1e-9);
        ad_tensor_free(r.a);
        ad_tensor_free(r.b);
        ad_tensor_free(c_persistent);
    }
    ad_tape_free(r.tape);
    return 0;
}

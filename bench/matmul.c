/* bench/matmul.c - GFLOP/s of C = A B, square n x n, float32 and float64.
 *
 *   matmul MIN_TIME N...
 *
 * For each dtype and n, times ad_matmul on persistent operands (with the
 * kernel the library was built with: its own, or OpenBLAS through
 * -Dblas=enabled) and, when linked with CBLAS, cblas_sgemm / cblas_dgemm
 * called directly in this process on the same matrices: the ceiling
 * ad_matmul can reach through BLAS, and the peer of the built-in kernel.
 * The two alternate (ad, blas, ad, blas) and each keeps its faster run, so
 * a burst of load on the machine does not fall on one side only.  Each line
 * names the kernel that ran: the library's built-in kernel, or OpenBLAS's
 * core name (what its dispatcher, or OPENBLAS_CORETYPE, selected).
 *
 * Three elements of each result are checked against a dot product in
 * double, so a fast but wrong kernel cannot post a figure. */
#include "common.h"

#include <math.h>
#include <stdint.h>

#include <autodiff/autodiff.h>

#include "autodiff/gemm.h"

#ifdef BENCH_HAVE_CBLAS
#include <cblas.h>
#endif

typedef struct run {
    ad_dtype dtype;
    int64_t n;
    ad_tape *tape;
    ad_tensor *a, *b, *c; /* c: the result of the last call */
    ad_tensor *cb;        /* the CBLAS result */
} run;

static void step_ad(void *p)
{
    run *r = p;
    /* The result goes on the active tape; the reset frees it and keeps the
     * arena, so repeated calls allocate nothing (the built-in kernel's
     * packing buffers come from the same arena). */
    ad_tape_reset(r->tape);
    r->c = ad_matmul(r->a, r->b);
    if (!r->c) {
        fprintf(stderr, "matmul: %s\n", ad_error());
        exit(1);
    }
}

#ifdef BENCH_HAVE_CBLAS
static void step_cblas(void *p)
{
    run *r = p;
    int n = (int)r->n;
    if (r->dtype == AD_FLOAT32)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, ad_data(r->a), n,
                    ad_data(r->b), n, 0.0f, ad_data(r->cb), n);
    else
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, ad_data(r->a), n,
                    ad_data(r->b), n, 0.0, ad_data(r->cb), n);
}
#endif

/* |C[i][j] - sum_p A[i][p] B[p][j]| against the size of the terms. */
static int check(const run *r, const ad_tensor *c, const char *what, int64_t i, int64_t j)
{
    double s = 0, mag = 0, got;
    for (int64_t p = 0; p < r->n; p++) {
        double x, y;
        ad_get(r->a, (int64_t[]){i, p}, &x);
        ad_get(r->b, (int64_t[]){p, j}, &y);
        s += x * y;
        mag += fabs(x * y);
    }
    ad_get(c, (int64_t[]){i, j}, &got);
    double eps = r->dtype == AD_FLOAT32 ? 1e-5 : 1e-13;
    if (fabs(got - s) <= eps * (mag + 1)) return 0;
    fprintf(stderr, "matmul %s n=%ld: C[%ld][%ld] = %g, expected %g\n", what, (long)r->n,
            (long)i, (long)j, got, s);
    return -1;
}

static int check3(const run *r, const ad_tensor *c, const char *what)
{
    int64_t n = r->n;
    return check(r, c, what, 0, 0) || check(r, c, what, n - 1, n / 2) ||
           check(r, c, what, n / 3, n - 1);
}

static void report(const run *r, const char *impl, const char *kernel, double sec)
{
    double n = (double)r->n;
    bench_json("bench s impl s dtype s n i kernel s seconds d gflops d", "matmul", impl,
               ad_dtype_name(r->dtype), (long)r->n, kernel, sec, 2.0 * n * n * n / sec * 1e-9);
}

static double min2(double a, double b) { return a < b ? a : b; }

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MIN_TIME N...\n", argv[0]);
        return 2;
    }
    double min_time = atof(argv[1]);
    ad_set_grad_enabled(false);
    run r = {.tape = ad_tape_new()};
    if (!r.tape) return 1;
    /* bench/run defines BENCH_LIB_BLAS when it links the library built with
     * -Dblas=enabled, whose ad_matmul calls OpenBLAS. */
#ifdef BENCH_LIB_BLAS
    const char *ad_impl = "autodiff-openblas";
#else
    const char *ad_impl = "autodiff-builtin";
#endif
    unsigned long long seed = 42;
    for (int d = 0; d < 2; d++)
        for (int arg = 2; arg < argc; arg++) {
            r.dtype = d == 0 ? AD_FLOAT32 : AD_FLOAT64;
            r.n = atol(argv[arg]);
            int64_t n = r.n;
            r.a = ad_empty(NULL, r.dtype, AD_SHAPE(n, n));
            r.b = ad_empty(NULL, r.dtype, AD_SHAPE(n, n));
            r.cb = ad_zeros(NULL, r.dtype, AD_SHAPE(n, n));
            if (!r.a || !r.b || !r.cb) {
                fprintf(stderr, "matmul: %s\n", ad_error());
                return 1;
            }
            for (int64_t i = 0; i < n * n; i++) {
                double x = bench_rand(&seed), y = bench_rand(&seed);
                if (r.dtype == AD_FLOAT32) {
                    ((float *)ad_data(r.a))[i] = (float)x;
                    ((float *)ad_data(r.b))[i] = (float)y;
                } else {
                    ((double *)ad_data(r.a))[i] = x;
                    ((double *)ad_data(r.b))[i] = y;
                }
            }
            ad_tape_activate(r.tape);
            double t_ad = INFINITY, t_blas = INFINITY;
            for (int round = 0; round < 2; round++) {
                t_ad = min2(t_ad, bench_time(step_ad, &r, min_time));
#ifdef BENCH_HAVE_CBLAS
                t_blas = min2(t_blas, bench_time(step_cblas, &r, min_time));
#endif
            }
            if (check3(&r, r.c, ad_impl)) return 1;
#ifdef BENCH_LIB_BLAS
            report(&r, ad_impl, openblas_get_corename(), t_ad);
#else
            report(&r, ad_impl, ad__gemm_kernel_name(r.dtype), t_ad);
#endif
#ifdef BENCH_HAVE_CBLAS
            if (check3(&r, r.cb, "cblas")) return 1;
            /* openblas_get_corename() is OpenBLAS's own extension (its
             * cblas.h declares it): which of its kernels the dispatcher, or
             * OPENBLAS_CORETYPE, picked. */
            report(&r, "openblas", openblas_get_corename(), t_blas);
#endif
            ad_tape_reset(r.tape);
            ad_tape_activate(NULL);
            ad_tensor_free(r.a);
            ad_tensor_free(r.b);
            ad_tensor_free(r.cb);
        }
    ad_tape_free(r.tape);
    return 0;
}

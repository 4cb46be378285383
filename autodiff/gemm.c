/* autodiff/gemm.c - C = A B: CBLAS when the build has it, else our own.
 *
 * The built-in kernel follows the Goto/BLIS structure.  C = A B is split so
 * that every operand is reused from the fastest memory that holds it:
 *
 *   for jc in steps of nc over n:          B block  kc x nc  (L3)
 *     for pc in steps of kc over k:        pack B(pc:pc+kc, jc:jc+nc)
 *       for ic in steps of mc over m:      pack A(ic:ic+mc, pc:pc+kc) (L2)
 *         for jr in steps of nr, ir in steps of mr:
 *           micro-kernel: C(mr x nr) += A sliver (mr x kc) * B sliver (kc x nr)
 *
 * Packing copies a block into the exact order the micro-kernel reads it
 * (mr-tall column strips of A, nr-wide row strips of B, zero-padded to full
 * tiles), which is also where arbitrary strides are absorbed: a transposed
 * or strided view costs one gather per element per block, O(mk + kn),
 * against the O(mnk) arithmetic.
 *
 * The micro-kernel keeps its mr x nr tile of C in registers for the whole
 * kc loop: each step loads one row of the B sliver (nr values), broadcasts
 * each of the mr values of A and does mr * nr / VL fused multiply-adds.  It
 * is written with GCC/clang vector extensions (portable C, no intrinsics,
 * compiled for whatever the target has): given the same loops over scalars,
 * GCC 12's auto-vectoriser interleaves the tile through shuffles and keeps
 * it on the stack instead of in registers.
 *
 * Kernels are chosen at run time, per dtype, from a small table (pick_*):
 * the AVX2+FMA variant is compiled with a target attribute, so the library
 * still runs on any x86-64.  Adding e.g. an AVX-512 kernel is one more
 * DEFINE_UKERNEL line, one table entry and one line in pick_*. */
#include "gemm.h"

#include <limits.h>
#include <stdlib.h>

#include "internal.h"

#ifdef AD_HAVE_CBLAS
#include <cblas.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define AD_GEMM_X86 1
#else
#define AD_GEMM_X86 0
#endif

/* Let a * b + c become one fused multiply-add: -std=c11 turns contraction
 * off, and the kernels need it for their throughput (and for the extra
 * accuracy of one rounding instead of two). */
#if defined(__clang__)
#define CONTRACT_FAST _Pragma("clang fp contract(fast)")
#define FAST_ATTR
#elif defined(__GNUC__)
#define CONTRACT_FAST
#define FAST_ATTR __attribute__((optimize("fp-contract=fast")))
#else
#define CONTRACT_FAST
#define FAST_ATTR
#endif

/* Largest register tile any kernel uses, for the edge-tile buffer. */
#define MAX_TILE 512

/* ---- micro-kernels ------------------------------------------------------------
 * C[MR x NR] (row stride ldc) = (add ? C : 0) + sum_p a[p*MR + i] b[p*NR + j]
 * with a and b packed slivers of length kc.  V is a vector of VL values of
 * T; the tile lives in MR * NR / VL vector registers. */
#define DEFINE_UKERNEL(NAME, T, V, MR, NR, ATTR)                                       \
    ATTR FAST_ATTR static void NAME(int64_t kc, const T *restrict a, const T *restrict b, \
                                    T *restrict c, int64_t ldc, bool add)              \
    {                                                                                  \
        CONTRACT_FAST                                                                  \
        enum { VL = sizeof(V) / sizeof(T), NV = (NR) / VL };                           \
        V ab[MR][NV];                                                                  \
        for (int i = 0; i < (MR); i++)                                                 \
            for (int j = 0; j < NV; j++) ab[i][j] = (V){0};                            \
        for (int64_t p = 0; p < kc; p++, a += (MR), b += (NR)) {                       \
            V bv[NV];                                                                  \
            for (int j = 0; j < NV; j++) memcpy(&bv[j], b + j * VL, sizeof(V));        \
            for (int i = 0; i < (MR); i++)                                             \
                for (int j = 0; j < NV; j++) ab[i][j] += a[i] * bv[j];                 \
        }                                                                              \
        for (int i = 0; i < (MR); i++)                                                 \
            for (int j = 0; j < NV; j++) {                                             \
                V t = ab[i][j];                                                        \
                if (add) {                                                             \
                    V o;                                                               \
                    memcpy(&o, c + i * ldc + j * VL, sizeof o);                        \
                    t += o;                                                            \
                }                                                                      \
                memcpy(c + i * ldc + j * VL, &t, sizeof t);                            \
            }                                                                          \
    }

/* Portable: 16-byte vectors (SSE2 on x86-64, NEON elsewhere), 8 of them
 * hold the tile, leaving registers for B and the broadcast. */
typedef float v4f __attribute__((vector_size(16)));
typedef double v2d __attribute__((vector_size(16)));
DEFINE_UKERNEL(uk_f32_generic, float, v4f, 4, 8, )
DEFINE_UKERNEL(uk_f64_generic, double, v2d, 4, 4, )

#if AD_GEMM_X86
/* AVX2 + FMA: 16 ymm registers; the 6 x 2 tile takes 12, B's row 2, the
 * broadcast of A 1 - the classic Haswell/Zen shape. */
#define AVX2 __attribute__((target("avx2,fma")))
typedef float v8f __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));
DEFINE_UKERNEL(uk_f32_avx2, float, v8f, 6, 16, AVX2)
DEFINE_UKERNEL(uk_f64_avx2, double, v4d, 6, 8, AVX2)
#endif

/* ---- kernel table ------------------------------------------------------------
 * mc x kc of A stays in L2 while the kernel sweeps it; a kc x nr sliver of B
 * stays in L1 (kc = 256: 16 KiB for both AVX2 kernels); nc bounds the packed
 * B block, which lives in L3. */
#define DEFINE_KERNEL_TYPE(SUF, T)                                                     \
    typedef struct kernel_##SUF {                                                      \
        const char *name;                                                              \
        int mr, nr;                                                                    \
        int64_t mc, kc, nc;                                                            \
        void (*fn)(int64_t, const T *restrict, const T *restrict, T *restrict, int64_t, bool); \
    } kernel_##SUF;
DEFINE_KERNEL_TYPE(f32, float)
DEFINE_KERNEL_TYPE(f64, double)

static const kernel_f32 K_F32_GENERIC = {"generic 4x8", 4, 8, 128, 256, 4096, uk_f32_generic};
static const kernel_f64 K_F64_GENERIC = {"generic 4x4", 4, 4, 128, 256, 4096, uk_f64_generic};
#if AD_GEMM_X86
static const kernel_f32 K_F32_AVX2 = {"avx2-fma 6x16", 6, 16, 144, 256, 4096, uk_f32_avx2};
static const kernel_f64 K_F64_AVX2 = {"avx2-fma 6x8", 6, 8, 72, 256, 4096, uk_f64_avx2};
#endif

static bool force_generic;
static int64_t tune_mc, tune_kc, tune_nc;

void ad__gemm_testing(bool generic, int64_t mc, int64_t kc, int64_t nc)
{
    force_generic = generic;
    tune_mc = mc;
    tune_kc = kc;
    tune_nc = nc;
}

static bool have_avx2(void)
{
#if AD_GEMM_X86
    return !force_generic && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

static const kernel_f32 *pick_f32(void)
{
#if AD_GEMM_X86
    if (have_avx2()) return &K_F32_AVX2;
#endif
    return &K_F32_GENERIC;
}

static const kernel_f64 *pick_f64(void)
{
#if AD_GEMM_X86
    if (have_avx2()) return &K_F64_AVX2;
#endif
    return &K_F64_GENERIC;
}

const char *ad__gemm_kernel_name(ad_dtype dtype)
{
    return dtype == AD_FLOAT32 ? pick_f32()->name : pick_f64()->name;
}

/* ---- the blocked driver, once per dtype ------------------------------------------ */
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* 64-byte aligned scratch: from the tape's arena (which aligns to 64), or
 * from the heap with *raw set to what to free (NULL for the arena). */
static void *scratch_alloc(ad_tape *tape, size_t n, void **raw)
{
    *raw = NULL;
    if (tape) return ad__arena_alloc(tape, n);
    *raw = ad__malloc(n + 64);
    if (!*raw) return NULL;
    return (void *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
}

#define DEFINE_DRIVER(SUF, T)                                                          \
    /* A(0:mc, 0:kc) into mr-tall strips: strip s holds, for each p, the mr          \
     * values A(s*mr + i, p), zero past row mc. */                                   \
    static void pack_a_##SUF(int64_t mc, int64_t kc, const T *a, int64_t rs, int64_t cs, \
                             int mr, T *restrict dst)                                  \
    {                                                                                  \
        for (int64_t i0 = 0; i0 < mc; i0 += mr) {                                      \
            int64_t h = min64(mr, mc - i0);                                            \
            for (int64_t p = 0; p < kc; p++) {                                         \
                const T *src = a + i0 * rs + p * cs;                                   \
                int64_t i = 0;                                                         \
                for (; i < h; i++) dst[i] = src[i * rs];                               \
                for (; i < mr; i++) dst[i] = 0;                                        \
                dst += mr;                                                             \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    /* B(0:kc, 0:nc) into nr-wide strips, zero past column nc. */                     \
    static void pack_b_##SUF(int64_t kc, int64_t nc, const T *b, int64_t rs, int64_t cs, \
                             int nr, T *restrict dst)                                  \
    {                                                                                  \
        for (int64_t j0 = 0; j0 < nc; j0 += nr) {                                      \
            int64_t w = min64(nr, nc - j0);                                            \
            for (int64_t p = 0; p < kc; p++) {                                         \
                const T *src = b + p * rs + j0 * cs;                                   \
                int64_t j = 0;                                                         \
                if (cs == 1)                                                           \
                    for (; j < w; j++) dst[j] = src[j];                                \
                else                                                                   \
                    for (; j < w; j++) dst[j] = src[j * cs];                           \
                for (; j < nr; j++) dst[j] = 0;                                        \
                dst += nr;                                                             \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
    static int gemm_##SUF(ad_tape *tape, int64_t m, int64_t n, int64_t k, const T *a,     \
                          int64_t rsa,                                                 \
                          int64_t csa, const T *b, int64_t rsb, int64_t csb, T *c,       \
                          int64_t ldc)                                                 \
    {                                                                                  \
        const kernel_##SUF *K = pick_##SUF();                                          \
        int mr = K->mr, nr = K->nr;                                                    \
        int64_t MC = tune_mc > 0 ? round_up(tune_mc, mr) : K->mc;                      \
        int64_t KC = tune_kc > 0 ? tune_kc : K->kc;                                    \
        int64_t NC = tune_nc > 0 ? round_up(tune_nc, nr) : K->nc;                      \
        int64_t mcap = min64(MC, round_up(m, mr)), kcap = min64(KC, k);                \
        int64_t ncap = min64(NC, round_up(n, nr));                                     \
        void *raw_a, *raw_b = NULL;                                                    \
        T *pa = scratch_alloc(tape, (size_t)(mcap * kcap) * sizeof(T), &raw_a);        \
        T *pb = pa ? scratch_alloc(tape, (size_t)(kcap * ncap) * sizeof(T), &raw_b) : NULL; \
        if (!pb) {                                                                     \
            ad__free(raw_a);                                                           \
            return -1;                                                                 \
        }                                                                              \
        T edge[MAX_TILE];                                                              \
        assert(mr * nr <= MAX_TILE);                                                   \
        for (int64_t jc = 0; jc < n; jc += NC) {                                       \
            int64_t nb = min64(NC, n - jc);                                            \
            for (int64_t pc = 0; pc < k; pc += KC) {                                   \
                int64_t kb = min64(KC, k - pc);                                        \
                bool add = pc > 0; /* later k blocks accumulate into C */              \
                pack_b_##SUF(kb, nb, b + pc * rsb + jc * csb, rsb, csb, nr, pb);       \
                for (int64_t ic = 0; ic < m; ic += MC) {                               \
                    int64_t mb = min64(MC, m - ic);                                    \
                    pack_a_##SUF(mb, kb, a + ic * rsa + pc * csa, rsa, csa, mr, pa);   \
                    for (int64_t jr = 0; jr < nb; jr += nr) {                          \
                        int64_t w = min64(nr, nb - jr);                                \
                        for (int64_t ir = 0; ir < mb; ir += mr) {                      \
                            int64_t h = min64(mr, mb - ir);                            \
                            T *ct = c + (ic + ir) * ldc + jc + jr;                     \
                            const T *as = pa + ir * kb, *bs = pb + jr * kb;            \
                            if (h == mr && w == nr) {                                  \
                                K->fn(kb, as, bs, ct, ldc, add);                       \
                                continue;                                              \
                            }                                                          \
                            /* A partial tile: compute it whole, keep the part       \
                             * inside C. */                                            \
                            K->fn(kb, as, bs, edge, nr, false);                        \
                            for (int64_t i = 0; i < h; i++)                            \
                                for (int64_t j = 0; j < w; j++)                        \
                                    ct[i * ldc + j] =                                  \
                                        (add ? ct[i * ldc + j] : 0) + edge[i * nr + j]; \
                        }                                                              \
                    }                                                                  \
                }                                                                      \
            }                                                                          \
        }                                                                              \
        ad__free(raw_a);                                                               \
        ad__free(raw_b);                                                               \
        return 0;                                                                      \
    }                                                                                  \
    /* Tiny products: packing would cost more than it saves.  Sums in double. */      \
    static void gemm_small_##SUF(int64_t m, int64_t n, int64_t k, const T *a, int64_t rsa, \
                                 int64_t csa, const T *b, int64_t rsb, int64_t csb, T *c, \
                                 int64_t ldc)                                          \
    {                                                                                  \
        for (int64_t i = 0; i < m; i++)                                                \
            for (int64_t j = 0; j < n; j++) {                                          \
                double s = 0;                                                          \
                for (int64_t p = 0; p < k; p++)                                        \
                    s += (double)a[i * rsa + p * csa] * (double)b[p * rsb + j * csb];  \
                c[i * ldc + j] = (T)s;                                                 \
            }                                                                          \
    }                                                                                  \
    /* 1 x k times k x n: walk B row by row (its storage order when it is        \
     * contiguous), accumulating the n results in double. */                        \
    static int gemm_row_##SUF(ad_tape *tape, int64_t n, int64_t k, const T *a, int64_t csa, \
                              const T *b, int64_t rsb, int64_t csb, T *c)              \
    {                                                                                  \
        void *raw;                                                                     \
        double *acc = scratch_alloc(tape, (size_t)n * sizeof *acc, &raw);              \
        if (!acc) return -1;                                                           \
        for (int64_t j = 0; j < n; j++) acc[j] = 0;                                    \
        for (int64_t p = 0; p < k; p++) {                                              \
            double ap = a[p * csa];                                                    \
            const T *row = b + p * rsb;                                                \
            for (int64_t j = 0; j < n; j++) acc[j] += ap * (double)row[j * csb];       \
        }                                                                              \
        for (int64_t j = 0; j < n; j++) c[j] = (T)acc[j];                              \
        ad__free(raw);                                                                 \
        return 0;                                                                      \
    }
DEFINE_DRIVER(f32, float)
DEFINE_DRIVER(f64, double)

/* Below this many multiply-adds the direct loop wins. */
#define SMALL_GEMM 4096

int ad__gemm_builtin(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k,
                     const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb,
                     int64_t csb, void *c, int64_t ldc)
{
    assert(dtype == AD_FLOAT32 || dtype == AD_FLOAT64);
    if (m <= 0 || n <= 0) return 0;
    /* Matrix-vector shapes would be mostly padding in an mr x nr tile: a
     * column result is a dot product per row, a row result one pass over B. */
    bool small = k == 0 || n == 1 || (double)m * (double)n * (double)k <= SMALL_GEMM;
    if (dtype == AD_FLOAT32) {
        if (small) gemm_small_f32(m, n, k, a, rsa, csa, b, rsb, csb, c, ldc);
        else if (m == 1) return gemm_row_f32(scratch, n, k, a, csa, b, rsb, csb, c);
        else return gemm_f32(scratch, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc);
    } else {
        if (small) gemm_small_f64(m, n, k, a, rsa, csa, b, rsb, csb, c, ldc);
        else if (m == 1) return gemm_row_f64(scratch, n, k, a, csa, b, rsb, csb, c);
        else return gemm_f64(scratch, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc);
    }
    return 0;
}

/* ---- CBLAS ------------------------------------------------------------------------ */
#ifdef AD_HAVE_CBLAS
/* How a rows x cols operand with strides (rs, cs) is described to row-major
 * CBLAS: as itself with leading dimension rs when its rows are contiguous,
 * or as the transpose of a cols x rows matrix with leading dimension cs when
 * its columns are (a transposed view).  Extents of 1 leave a stride free. */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                        enum CBLAS_TRANSPOSE *tr, int64_t *ld)
{
    if ((cs == 1 || cols == 1) && (rows == 1 || rs >= cols)) {
        *tr = CblasNoTrans;
        *ld = rows == 1 ? cols : rs;
    } else if ((rs == 1 || rows == 1) && (cols == 1 || cs >= rows)) {
        *tr = CblasTrans;
        *ld = cols == 1 ? rows : cs;
    } else {
        return false;
    }
    if (*ld < 1) *ld = 1;
    return *ld <= INT_MAX;
}
#endif

bool ad__gemm_direct(int64_t rows, int64_t cols, int64_t rs, int64_t cs)
{
#ifdef AD_HAVE_CBLAS
    enum CBLAS_TRANSPOSE tr;
    int64_t ld;
    return blas_layout(rows, cols, rs, cs, &tr, &ld);
#else
    (void)rows, (void)cols, (void)rs, (void)cs;
    return true;
#endif
}

int ad__gemm(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a,
             int64_t rsa, int64_t csa, const void *b, int64_t rsb, int64_t csb, void *c,
             int64_t ldc)
{
    if (m <= 0 || n <= 0) return 0;
#ifdef AD_HAVE_CBLAS
    enum CBLAS_TRANSPOSE ta, tb;
    int64_t lda, ldb;
    if (k > 0 && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && ldc <= INT_MAX &&
        (ldc >= n || m == 1) && blas_layout(m, k, rsa, csa, &ta, &lda) &&
        blas_layout(k, n, rsb, csb, &tb, &ldb)) {
        int ldcc = ldc >= n ? (int)ldc : (int)n;
        if (dtype == AD_FLOAT32)
            cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b,
                        (int)ldb, 0.0f, c, ldcc);
        else
            cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0, a, (int)lda, b,
                        (int)ldb, 0.0, c, ldcc);
        return 0;
    }
#endif
    return ad__gemm_builtin(scratch, dtype, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc);
}

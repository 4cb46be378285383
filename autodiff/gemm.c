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
 * against the O(mnk) arithmetic.  For small products (n = 64: 4096 elements
 * of A packed for 262144 multiply-adds) that gather is a large share of the
 * time, so each kernel has its own packing routines, compiled for its strip
 * width and instruction set (see DEFINE_PACK).
 *
 * The micro-kernel keeps its mr x nr tile of C in registers for the whole
 * kc loop: each step loads one row of the B sliver (nr values), broadcasts
 * each of the mr values of A and does mr * nr / VL fused multiply-adds.  It
 * is written with GCC/clang vector extensions (portable C, no intrinsics,
 * compiled for whatever the target has): given the same loops over scalars,
 * GCC 12's auto-vectoriser interleaves the tile through shuffles and keeps
 * it on the stack instead of in registers.
 *
 * Kernels are chosen at run time, per dtype, from a table (kernels_*): the
 * AVX2+FMA and AVX-512 variants are compiled with target attributes, so the
 * library still runs on any x86-64.  The micro-kernels, their packing
 * routines and the table are in gemm_kernels.inc; adding one is a
 * DEFINE_KERNEL line and a table entry there, and its CPU test in
 * cpu_can().
 *
 * With OpenMP a large product is cut into slabs of C, one per thread (see
 * the driver), never from inside a parallel region. */
#include "gemm.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tape_impl.h"

#ifdef AD_HAVE_CBLAS
#include <cblas.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define AD_GEMM_X86 1
#include "transpose_avx2.h"
#include "transpose_avx512.h"
#else
#define AD_GEMM_X86 0
#endif

/* Let a * b + c become one fused multiply-add: -std=c11 turns contraction
 * off, and the kernels need it for their throughput (and for the extra
 * accuracy of one rounding instead of two).  Every accumulation in the
 * kernels is one statement (acc += a * b), so clang's "on" suffices: its
 * front end emits the fused operation itself.  "fast" left the fusion to
 * the back end, which did not fuse across the blocks that AddressSanitizer
 * splits code into: with -O2 and ASan, uk_f64_avx512 multiplied and added
 * apart, and a product's thin and blocked paths differed in the last bit
 * (test_linalg's thin_products_have_the_blocked_bits).  GCC's fusion gives
 * the same bits with -O2 and ASan as without. */
#if defined(__clang__)
#define CONTRACT_FAST _Pragma("clang fp contract(on)")
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

#include "gemm_kernels.inc"
#include "gemm_thin.inc"

/* Test overrides (ad__gemm_testing*): not thread-safe, like the hooks. */
static bool force_generic;
static int forced_f32 = -1, forced_f64 = -1;
static int64_t tune_mc, tune_kc, tune_nc;
/* Multiply-adds below which a product runs on one thread (2^21: about
 * 128 x 128 x 128, 50 microseconds on one AVX2 core).  Waking the OpenMP
 * threads and joining them costs a few microseconds on an idle machine,
 * but a thread that is not running when the region starts or ends costs a
 * scheduler time slice, so small products stay on the caller's thread. */
#define PARALLEL_MIN_DEFAULT ((int64_t)1 << 21)
static int64_t parallel_min = PARALLEL_MIN_DEFAULT;

static bool cpu_can(int isa)
{
    switch (isa) {
    case ISA_ANY:
    case ISA_TEST_ONLY: return true;
#if AD_GEMM_X86
    case ISA_AVX2: return AD_CPU_AVX2() && __builtin_cpu_supports("fma");
    case ISA_AVX512: return AD_CPU_AVX512();
#endif
    default: return false;
    }
}

static bool thin_off;   /* test hook (ad__gemm_testing_thin) */
static bool direct_off; /* test hook (ad__gemm_testing_direct) */
static bool swap_off;   /* test hook (ad__gemm_testing_swap) */

void ad__gemm_testing(bool generic, int64_t mc, int64_t kc, int64_t nc)
{
    thin_off = false;
    direct_off = false;
    swap_off = false;
    force_generic = generic;
    forced_f32 = forced_f64 = -1;
    tune_mc = mc;
    tune_kc = kc;
    tune_nc = nc;
    parallel_min = PARALLEL_MIN_DEFAULT;
}

#define DEFINE_PICK(SUF)                                                               \
    static const kernel_##SUF *pick_##SUF(void)                                        \
    {                                                                                  \
        if (forced_##SUF >= 0) return &kernels_##SUF[forced_##SUF];                    \
        for (int i = 0; i < NKERNELS(kernels_##SUF); i++) {                            \
            const kernel_##SUF *K = &kernels_##SUF[i];                                 \
            if (K->isa == ISA_TEST_ONLY || !cpu_can(K->isa)) continue;                 \
            if (force_generic && K->isa != ISA_ANY) continue;                          \
            return K;                                                                  \
        }                                                                              \
        return &kernels_##SUF[0]; /* unreachable: a generic entry always fits */      \
    }
DEFINE_PICK(f32)
DEFINE_PICK(f64)

const char *ad__gemm_kernel_name(ad_dtype dtype)
{
    return dtype == AD_FLOAT32 ? pick_f32()->name : pick_f64()->name;
}

const char *ad__gemm_kernel_at(ad_dtype dtype, int i, bool *runnable)
{
    const char *name = NULL;
    int isa = ISA_ANY;
    if (dtype == AD_FLOAT32 && i >= 0 && i < NKERNELS(kernels_f32))
        name = kernels_f32[i].name, isa = kernels_f32[i].isa;
    else if (dtype == AD_FLOAT64 && i >= 0 && i < NKERNELS(kernels_f64))
        name = kernels_f64[i].name, isa = kernels_f64[i].isa;
    if (runnable) *runnable = name && cpu_can(isa);
    return name;
}

int ad__gemm_testing_kernel(ad_dtype dtype, const char *name)
{
    int *forced = dtype == AD_FLOAT32 ? &forced_f32 : &forced_f64;
    if (!name) {
        *forced = -1;
        return 0;
    }
    bool ok;
    const char *k;
    for (int i = 0; (k = ad__gemm_kernel_at(dtype, i, &ok)) != NULL; i++)
        if (strcmp(k, name) == 0) {
            if (!ok) return -1;
            *forced = i;
            return 0;
        }
    return -1;
}

void ad__gemm_testing_parallel(int64_t min_madds)
{
    parallel_min = min_madds > 0 ? min_madds : PARALLEL_MIN_DEFAULT;
}

void ad__gemm_testing_thin(bool enabled) { thin_off = !enabled; }
void ad__gemm_testing_direct(bool enabled) { direct_off = !enabled; }
void ad__gemm_testing_swap(bool enabled) { swap_off = !enabled; }

/* ---- driver helpers ------------------------------------------------------------- */
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- scratch memory --------------------------------------------------------------
 * The packing buffers live for one call.  With a tape they come from its
 * arena, so a loop that resets its tape (or replays it) stops allocating
 * after its first step, and the arena's fill level is put back when the
 * call returns: a batched product makes one kernel call per batch entry
 * (ops_linalg.c), and keeping each call's buffers until the reset
 * measured 240 MiB more peak memory for fmnist_cnn's evaluation batches.
 * Nothing else allocates on the tape during the call (a tape belongs to
 * one thread), so the space taken since the mark is exactly the scratch. */
static ad_arena_mark scratch_mark(const ad_tape *tape)
{
    return tape ? ad__arena_mark(&tape->arena) : (ad_arena_mark){0};
}

static void scratch_release(ad_tape *tape, ad_arena_mark m)
{
    if (tape) ad__arena_rewind(&tape->arena, m);
}

/* 64-byte aligned scratch: from the tape's arena (which aligns to 64), or
 * from the heap with *raw set to what to free (NULL for the arena). */
static void *scratch_alloc(ad_tape *tape, size_t n, void **raw)
{
    *raw = NULL;
    if (tape) return ad__arena_take(&tape->arena, n);
    *raw = ad__malloc(n + 64);
    if (!*raw) return NULL;
    return (void *)(((uintptr_t)*raw + 63) & ~(uintptr_t)63);
}

/* How many threads a product gets, given how many mr-row strips of C and
 * nr-column strips it has (the units it is split into) and its m n k
 * multiply-adds: one below the threshold, inside a parallel region (the
 * caller's threads already occupy the cores; nesting would oversubscribe
 * them), or when there is a single strip each way. */
static int gemm_threads(int64_t mstrips, int64_t nstrips, double madds)
{
    /* A runner of the caller's (ad_set_parallel_runner) takes every part
     * it has, even when some get no strip: its threads wait either way. */
    int parts = ad__runner_parts();
    if (parts > 1) return madds < (double)parallel_min ? 1 : parts;
#ifdef _OPENMP
    if (madds < (double)parallel_min || omp_in_parallel()) return 1;
    int64_t t = ad__max_threads(), units = mstrips > nstrips ? mstrips : nstrips;
    return (int)(t < units ? t : units);
#else
    (void)mstrips, (void)nstrips, (void)madds;
    return 1;
#endif
}

/* ---- the blocked driver, once per dtype ------------------------------------------
 * One product is a job, and run_* computes it on one thread.  With more
 * threads each takes a slab of C of its own - a run of nr-column strips,
 * or of mr-row strips when there are too few column strips to go round -
 * on OpenMP's threads, or on the caller's runner (ad_set_parallel_runner) -
 * and runs the whole blocked loop on it with its own packing buffers.  A
 * slab's thread packs all of A (column slabs) or all of B (row slabs)
 * again, O(mk) or O(kn) against the slab's O(mnk / threads) arithmetic,
 * and in exchange the threads never wait for each other until the end.
 * (Sharing one packed B block needs two barriers per k block, and on a
 * machine with more runnable threads than cores each barrier can wait out
 * a descheduled thread's time slice.)  Slabs start on strip boundaries,
 * so the tiles, and the kernel calls that compute each element of C, are
 * the same with any number of threads: so is the result, bit for bit.
 *
 * On a runner's threads a slab's strips are claimed rather than fixed
 * when the operand that every strip reads (A for column strips, B for row
 * strips) fits CLAIM_SHARED_MAX packed: each thread packs that operand
 * whole once (or reads it where it lies, with the direct kernels), takes
 * its own slab's strips from the front, and then the
 * strips left at the back of the others' slabs, one at a time.  The two
 * cores of a shared virtual machine ran equal halves of the MLP's
 * products 20-75 % apart, the slower side changing from product to
 * product and from run to run (docs/benchmarks.md), and with fixed slabs
 * the faster core waited out the difference at every product.  A strip
 * is computed by the same kernel calls whichever thread claims it, so
 * the bits do not change either. */
#define CLAIM_SHARED_MAX ((size_t)512 * 1024)
/* The largest k x nr strip of B packed in full k, so that the two runs of
 * rows of a claimed column strip share it (gemm_driver.inc). */
#define RPART_PACK_MAX ((size_t)256 * 1024)

/* The strips [front, back) still to claim in one thread's slab, as
 * front | back << 32; one cache line each, so a thread claiming its own
 * strips writes a line that the others touch only once they steal. */
typedef struct strip_range {
    _Atomic uint64_t fb;
    char pad[64 - sizeof(uint64_t)];
} strip_range;

/* The next strip for thread tid of nth: the front of its own slab, else
 * the back of the next slab (in thread order) that has strips left; -1
 * when none has. */
static int64_t claim_strip(strip_range *r, int tid, int nth)
{
    for (int i = 0; i < nth; i++) {
        strip_range *v = &r[(tid + i) % nth];
        uint64_t s = atomic_load_explicit(&v->fb, memory_order_relaxed);
        for (;;) {
            uint64_t front = s & 0xffffffffu, back = s >> 32;
            if (front >= back) break;
            uint64_t next = i == 0 ? s + 1 : (back - 1) << 32 | front;
            /* the claim needs only the exchange's atomicity: the strips'
             * results are ordered by the runner's end of the phase */
            if (atomic_compare_exchange_weak_explicit(&v->fb, &s, next, memory_order_relaxed,
                                                      memory_order_relaxed))
                return (int64_t)(i == 0 ? front : back - 1);
        }
    }
    return -1;
}

#ifdef _OPENMP
#define OMP_PARALLEL_NT(nt) _Pragma("omp parallel num_threads(nt)")
#define THREAD_NUM omp_get_thread_num()
#define NUM_THREADS omp_get_num_threads()
#else
#define OMP_PARALLEL_NT(nt)
#define THREAD_NUM 0
#define NUM_THREADS 1
#endif

/* A swapped product's result put back in place (gemm_driver.inc's
 * gemm_swapped) with a register transpose, where the kernel's instruction
 * set has one: true when done, false leaves it to the element loop. */
static bool unswap_fast_f32(const kernel_f32 *K, int64_t m, int64_t n, const float *s, float *c,
                            int64_t ldc, const float *bias, int64_t bstr)
{
#if AD_GEMM_X86
    if (K->isa == ISA_AVX512) {
        unswap_f32_avx512(m, n, s, c, ldc, bias, bstr);
        return true;
    }
    if (K->isa == ISA_AVX2) {
        unswap_f32_avx2(m, n, s, c, ldc, bias, bstr);
        return true;
    }
#endif
    (void)K, (void)m, (void)n, (void)s, (void)c, (void)ldc, (void)bias, (void)bstr;
    return false;
}
static bool unswap_fast_f64(const kernel_f64 *K, int64_t m, int64_t n, const double *s, double *c,
                            int64_t ldc, const double *bias, int64_t bstr)
{
    (void)K, (void)m, (void)n, (void)s, (void)c, (void)ldc, (void)bias, (void)bstr;
    return false;
}

#define KERNEL_FILE "gemm_driver.inc"
#include "per_dtype.inc"

/* Below this many multiply-adds the direct loop wins. */
#define SMALL_GEMM 4096

/* Whether ad__gemm_builtin_ep computes a product by the direct loop.
 * Matrix-vector shapes would be mostly padding in an mr x nr tile: a
 * column result is a dot product per row (a row result, m = 1, is one
 * pass over B, gemm_row). */
static bool small_product(int64_t m, int64_t n, int64_t k)
{
    return k == 0 || n == 1 || (double)m * (double)n * (double)k <= SMALL_GEMM;
}

/* The epilogue over a whole m x n C, for the paths that have no tiles
 * (tiny products, one row, k = 0). */
static void epilogue_all(ad_dtype dtype, int64_t m, int64_t n, void *c, int64_t ldc,
                         const ad_gemm_ep *ep)
{
    if (dtype == AD_FLOAT32) {
        job_f32 E = {.bias = ep->bias, .bstr = ep->bias_stride};
        epilogue_f32(&E, c, ldc, m, n, 0);
    } else {
        job_f64 E = {.bias = ep->bias, .bstr = ep->bias_stride};
        epilogue_f64(&E, c, ldc, m, n, 0);
    }
}

int ad__gemm_builtin_ep(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k,
                        const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb,
                        int64_t csb, void *c, int64_t ldc, const ad_gemm_ep *ep)
{
    assert(dtype == AD_FLOAT32 || dtype == AD_FLOAT64);
    if (m <= 0 || n <= 0) return 0;
    if (ep && !ep->bias && !ep->accumulate && !ep->weight_grad) ep = NULL;
    assert(!ep || !ep->accumulate || !ep->bias);
    bool acc = ep && ep->accumulate;
    bool small = small_product(m, n, k);
    int rc = 0;
    if (dtype == AD_FLOAT32) {
        if (small) gemm_small_f32(m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, acc);
        else if (m == 1) rc = gemm_row_f32(scratch, n, k, a, csa, b, rsb, csb, c, acc);
        else return gemm_f32(scratch, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, ep);
    } else {
        if (small) gemm_small_f64(m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, acc);
        else if (m == 1) rc = gemm_row_f64(scratch, n, k, a, csa, b, rsb, csb, c, acc);
        else return gemm_f64(scratch, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, ep);
    }
    if (rc == 0 && ep && ep->bias && !acc) epilogue_all(dtype, m, n, c, ldc, ep);
    return rc;
}

bool ad__gemm_swap_takes(ad_dtype dtype, int64_t m, int64_t n, int64_t k, int64_t csa,
                         int64_t rsb, int64_t csb)
{
    if (small_product(m, n, k) || m == 1 || ad__gemm_thin_takes(dtype, m, n, k)) return false;
    if (dtype == AD_FLOAT32) return swap_takes_f32(pick_f32(), m, n, k, csa, rsb, csb, NULL);
    return swap_takes_f64(pick_f64(), m, n, k, csa, rsb, csb, NULL);
}

bool ad__gemm_thin_takes(ad_dtype dtype, int64_t m, int64_t n, int64_t k)
{
    if (small_product(m, n, k) || m == 1) return false; /* ad__gemm_builtin_ep's other paths */
    if (dtype == AD_FLOAT32) {
        const kernel_f32 *K = pick_f32();
        return thin_takes_f32(K, m, n, k, tune_kc > 0 ? tune_kc : K->kc);
    }
    const kernel_f64 *K = pick_f64();
    return thin_takes_f64(K, m, n, k, tune_kc > 0 ? tune_kc : K->kc);
}

int ad__gemm_builtin(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k,
                     const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb,
                     int64_t csb, void *c, int64_t ldc)
{
    return ad__gemm_builtin_ep(scratch, dtype, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, NULL);
}

/* ---- CBLAS ------------------------------------------------------------------------ */
#ifdef AD_HAVE_CBLAS
/* Whether this thread may call BLAS: always, unless it asked for kernels
 * on itself alone (ad_set_num_threads(1)); then only a BLAS known to run
 * on its caller's thread (OpenBLAS with one thread, OPENBLAS_NUM_THREADS=1),
 * not one whose own thread pool would share the cores the caller's other
 * threads are using. */
static bool blas_allowed(void)
{
    if (!ad__single_thread()) return true;
#ifdef AD_HAVE_OPENBLAS_THREADS
    return openblas_get_num_threads() == 1;
#else
    return false;
#endif
}

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

/* One product through CBLAS.  A bias is written into C's rows first and
 * the product added to it (beta = 1), which costs the same pass over C
 * that beta = 0 costs OpenBLAS (it clears C before accumulating). */
static void blas_run(ad_dtype dtype, int m, int n, int k, enum CBLAS_TRANSPOSE ta, int lda,
                     enum CBLAS_TRANSPOSE tb, int ldb, const void *a, const void *b, void *c,
                     int ldc, const ad_gemm_ep *ep)
{
    bool bias = ep && ep->bias, beta1 = bias || (ep && ep->accumulate);
    if (bias && ep->bias_stride == 1) { /* a contiguous bias: a row copy per row of C */
        size_t es = ad_dtype_size(dtype);
        for (int i = 0; i < m; i++)
            memcpy((char *)c + (size_t)i * (size_t)ldc * es, ep->bias, (size_t)n * es);
    } else if (bias && dtype == AD_FLOAT32) {
        const float *bv = ep->bias;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) ((float *)c)[(int64_t)i * ldc + j] = bv[j * ep->bias_stride];
    } else if (bias) {
        const double *bv = ep->bias;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) ((double *)c)[(int64_t)i * ldc + j] = bv[j * ep->bias_stride];
    }
    if (dtype == AD_FLOAT32)
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta1 ? 1.0f : 0.0f, c,
                    ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta1 ? 1.0 : 0.0, c,
                    ldc);
}

/* Whether both kernels compute an m x n x k product on the calling thread
 * alone, so that its CPU time is their cost: the built-in kernel's
 * threshold and thread count (gemm_threads), and OpenBLAS's thread count
 * (another CBLAS's is unknown: assume threads). */
static bool calibration_single_threaded(int64_t m, int64_t n, int64_t k)
{
    if (gemm_threads(m, n, (double)m * (double)n * (double)k) != 1) return false;
#ifdef OPENBLAS_VERSION
    return openblas_get_num_threads() == 1;
#else
    return false;
#endif
}

/* Whether the caller may use several threads for this product (a runner
 * of its own, or OpenMP's count capped by ad_set_num_threads) while
 * OpenBLAS runs on one thread (OPENBLAS_NUM_THREADS=1, as a program that
 * runs threads of its own sets it) and would leave the others waiting. */
static bool blas_idles_threads(int64_t m, int64_t n, int64_t k)
{
#ifdef AD_HAVE_OPENBLAS_THREADS
    return openblas_get_num_threads() == 1 &&
           gemm_threads(m, n, (double)m * (double)n * (double)k) > 1;
#else
    (void)m, (void)n, (void)k;
    return false;
#endif
}

/* A CBLAS product cut into slabs of C for the caller's runner
 * (ad_set_parallel_runner), each computed by one call of a one-thread
 * BLAS: runs of 32 columns, or for a product accumulated into C (a
 * weight's gradient) runs of 16 rows, as the built-in kernel cuts its
 * slabs on a runner (gemm_driver.inc).  The slabs are fixed by the part
 * count, so a run with the same count gives the same bits every time. */
typedef struct blas_job {
    ad_dtype dtype;
    int m, n, k, lda, ldb, ldc;
    enum CBLAS_TRANSPOSE ta, tb;
    const char *a, *b;
    char *c;
    int64_t rsa, csb; /* element strides of A's rows and B's columns */
    const ad_gemm_ep *ep;
    bool split_n;
} blas_job;

static void blas_slab(void *ctx, int part, int parts)
{
    const blas_job *J = ctx;
    int64_t unit = J->split_n ? 32 : 16, ext = J->split_n ? J->n : J->m;
    int64_t units = (ext + unit - 1) / unit;
    int64_t lo = units * part / parts * unit, hi = units * (part + 1) / parts * unit;
    if (hi > ext) hi = ext;
    if (lo >= hi) return;
    int64_t es = (int64_t)ad_dtype_size(J->dtype);
    ad_gemm_ep ep = J->ep ? *J->ep : (ad_gemm_ep){0};
    if (J->split_n) {
        if (ep.bias) ep.bias = (const char *)ep.bias + lo * ep.bias_stride * es;
        blas_run(J->dtype, J->m, (int)(hi - lo), J->k, J->ta, J->lda, J->tb, J->ldb, J->a,
                 J->b + lo * J->csb * es, J->c + lo * es, J->ldc, J->ep ? &ep : NULL);
    } else {
        blas_run(J->dtype, (int)(hi - lo), J->n, J->k, J->ta, J->lda, J->tb, J->ldb,
                 J->a + lo * J->rsa * es, J->b, J->c + lo * J->ldc * es, J->ldc, J->ep);
    }
}
#endif

bool ad__gemm_direct(int64_t rows, int64_t cols, int64_t rs, int64_t cs)
{
#ifdef AD_HAVE_CBLAS
    enum CBLAS_TRANSPOSE tr;
    int64_t ld;
    return !blas_allowed() || blas_layout(rows, cols, rs, cs, &tr, &ld);
#else
    (void)rows, (void)cols, (void)rs, (void)cs;
    return true;
#endif
}

#ifdef AD_HAVE_CBLAS
/* Whether the BLAS is OpenBLAS running a core without AVX-512 (on this
 * CPU, which has it: an OpenBLAS older than the CPU, as Debian 12's 0.3.21
 * on a Zen 5, which it runs as "Haswell", or OPENBLAS_CORETYPE=Haswell).
 * Asked once; the core does not change while the process runs. */
static bool openblas_without_avx512(void)
{
#ifdef AD_HAVE_OPENBLAS_THREADS
    static atomic_int known; /* 0: not asked yet, 1: no, 2: yes */
    int v = atomic_load_explicit(&known, memory_order_relaxed);
    if (!v) {
        const char *core = openblas_get_corename();
        char low[32] = "";
        for (int i = 0; core && core[i] && i < 31; i++)
            low[i] = (char)(core[i] >= 'A' && core[i] <= 'Z' ? core[i] - 'A' + 'a' : core[i]);
        bool avx512 = strstr(low, "skylakex") || strstr(low, "cooperlake") || strstr(low, "sapphire");
        v = core && !avx512 ? 2 : 1;
        atomic_store_explicit(&known, v, memory_order_relaxed);
    }
    return v == 2;
#else
    return false; /* another CBLAS: its products stay with it */
#endif
}

/* The default's exceptions to "every product CBLAS can take goes to
 * CBLAS": a float32 product at least 64 wide in m, n and k runs on the
 * built-in kernel when that is the AVX-512 one.  There it is as fast as
 * OpenBLAS's AVX-512 core on large squares and faster on the batch-64
 * products of training (bench/gemm_shapes.c on a Xeon with AVX-512, us
 * per product, built-in / OpenBLAS: the MLP's x W^T 64 x 256 x 784 145-155
 * / 178-186, its dW 134 / 141, the CNN's fc1 dW 528 / 562 and dx 578 /
 * 665), and much faster where OpenBLAS runs its AVX2 core
 * (OPENBLAS_CORETYPE=Haswell).  Narrower products (the 10-class layers:
 * 64 x 10 x 256 took 11.9 / 2.9 us) stay with OpenBLAS, unless OpenBLAS
 * runs a core without AVX-512: there the thin path (gemm_thin.inc) is
 * faster (on the Zen 5 with OpenBLAS 0.3.21 as "Haswell", us per product,
 * thin / OpenBLAS: 64 x 10 x 256 4.6 / 5.8, 10 x 256 x 64 3.2 / 5.6,
 * 64 x 256 x 10 2.5 / 3.9).  Where both run AVX2 (the AVX2 kernel, and
 * OpenBLAS on a core without AVX-512), a product the built-in kernel
 * computes turned around (x W^T with a small batch, gemm_driver.inc's
 * swapped products) runs on it too: it packs only the batch where
 * OpenBLAS packs all of W^T (on a Zen 3 with OpenBLAS 0.3.21 as "Zen",
 * us per product, built-in / OpenBLAS: 64 x 256 x 784 357-372 / 394-423,
 * the CNN's 64 x 128 x 4608 1090-1154 / 1215-1250).  A fixed rule, not a
 * timing, so a seeded run gives the same bits every time. */
static bool builtin_by_default(ad_dtype dtype, int64_t m, int64_t n, int64_t k, int64_t csa,
                               int64_t rsb, int64_t csb, const ad_gemm_ep *ep)
{
    if (dtype != AD_FLOAT32 || !ad__gemm_default_mode() || force_generic || forced_f32 >= 0)
        return false;
    const kernel_f32 *K = pick_f32();
    if (K->isa == ISA_AVX2)
        return openblas_without_avx512() && !ad__gemm_thin_takes(dtype, m, n, k) &&
               swap_takes_f32(K, m, n, k, csa, rsb, csb, ep);
    if (K->isa != ISA_AVX512) return false;
    if (m >= 64 && n >= 64 && k >= 64) return true;
    return openblas_without_avx512() && ad__gemm_thin_takes(dtype, m, n, k);
}
bool ad__gemm_default_builtin(ad_dtype dtype, int64_t m, int64_t n, int64_t k, int64_t csa,
                              int64_t rsb, int64_t csb)
{
    return builtin_by_default(dtype, m, n, k, csa, rsb, csb, NULL);
}
#else
bool ad__gemm_default_builtin(ad_dtype dtype, int64_t m, int64_t n, int64_t k, int64_t csa,
                              int64_t rsb, int64_t csb)
{
    (void)dtype, (void)m, (void)n, (void)k, (void)csa, (void)rsb, (void)csb;
    return false;
}
#endif

int ad__gemm_ep(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k,
                const void *a, int64_t rsa, int64_t csa, const void *b, int64_t rsb,
                int64_t csb, void *c, int64_t ldc, const ad_gemm_ep *ep)
{
    if (m <= 0 || n <= 0) return 0;
    if (ep && !ep->bias && !ep->accumulate && !ep->weight_grad) ep = NULL;
#ifdef AD_HAVE_CBLAS
    enum CBLAS_TRANSPOSE ta, tb;
    int64_t lda, ldb;
    if (blas_allowed() && k > 0 && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX && ldc <= INT_MAX &&
        (ldc >= n || m == 1) && blas_layout(m, k, rsa, csa, &ta, &lda) &&
        blas_layout(k, n, rsb, csb, &tb, &ldb)) {
        int ldcc = ldc >= n ? (int)ldc : (int)n;
        gemm_shape sh = {dtype, m, n, k, ta == CblasTrans, tb == CblasTrans};
        int pick = ad__gemm_choose(&sh);
        if (pick == AD_GEMM_BLAS && builtin_by_default(dtype, m, n, k, csa, rsb, csb, ep))
            pick = AD_GEMM_BUILTIN;
        if (pick == AD_GEMM_BLAS && blas_idles_threads(m, n, k)) {
            /* On a runner's threads, BLAS in slabs; on OpenMP's, the
             * built-in kernel splits (unless AD_GEMM=blas asks for BLAS) */
            if (ad__runner_parts() > 1) {
                int parts = ad__runner_parts();
                int64_t nu = (n + 31) / 32, mu = (m + 15) / 16;
                bool wgrad = ep && (ep->accumulate || ep->weight_grad);
                blas_job J = {dtype, (int)m, (int)n, (int)k, (int)lda, (int)ldb, ldcc, ta, tb,
                              a, b, c, rsa, csb, ep, nu >= parts && !(wgrad && mu >= parts)};
                ad__run_parts(blas_slab, &J);
                return 0;
            }
            if (ad__gemm_default_mode()) pick = AD_GEMM_BUILTIN;
        }
        if (pick == AD_GEMM_CALIBRATE) {
            /* First product of this shape: time both kernels on it, into
             * a scratch C (the real one may hold a sum being accumulated). */
            void *raw;
            ad_arena_mark pos = scratch_mark(scratch);
            void *tmp = scratch_alloc(scratch, (size_t)(m * n) * ad_dtype_size(dtype), &raw);
            double t_in = 1e300, t_bl = 1e300;
            bool cpu = calibration_single_threaded(m, n, k);
            /* rep 0 warms both up (first touch of packing buffers, BLAS's
             * own buffers) and is not counted */
            for (int r = 0; tmp && r <= CALIBRATION_REPS; r++) {
                double t0 = ad__gemm_clock(cpu);
                if (ad__gemm_builtin_ep(scratch, dtype, m, n, k, a, rsa, csa, b, rsb, csb, tmp,
                                        n, NULL))
                    break;
                double t1 = ad__gemm_clock(cpu);
                blas_run(dtype, (int)m, (int)n, (int)k, ta, (int)lda, tb, (int)ldb, a, b, tmp,
                         (int)n, NULL);
                double t2 = ad__gemm_clock(cpu);
                if (r > 0 && t1 - t0 < t_in) t_in = t1 - t0;
                if (r > 0 && t2 - t1 < t_bl) t_bl = t2 - t1;
            }
            ad__free(raw);
            scratch_release(scratch, pos);
            if (!tmp || t_bl == 1e300) return -1;
            pick = ad__gemm_record(&sh, t_in, t_bl);
        }
        if (pick == AD_GEMM_BLAS) {
            blas_run(dtype, (int)m, (int)n, (int)k, ta, (int)lda, tb, (int)ldb, a, b, c, ldcc,
                     ep);
            return 0;
        }
    }
#endif
    return ad__gemm_builtin_ep(scratch, dtype, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, ep);
}

int ad__gemm(ad_tape *scratch, ad_dtype dtype, int64_t m, int64_t n, int64_t k, const void *a,
             int64_t rsa, int64_t csa, const void *b, int64_t rsb, int64_t csb, void *c,
             int64_t ldc)
{
    return ad__gemm_ep(scratch, dtype, m, n, k, a, rsa, csa, b, rsb, csb, c, ldc, NULL);
}

/* ---- a packed A reused by many products ----------------------------------------- */
/* The k blocking of a packed product: its B is a few columns (a batch),
 * so the whole k x nr sliver stays in L2 up to k = 1024, and one block
 * stores each tile of C once instead of once per k block (through the
 * edge buffer, with C's strides). */
static int64_t packed_kc(int64_t kc, int64_t k) { return k <= 1024 ? k : kc; }

int ad__gemm_pack_a(ad_tape *tape, ad_dtype dtype, int64_t m, int64_t k, const void *a,
                    int64_t rsa, int64_t csa, int64_t nmax, ad_gemm_packed *p)
{
    *p = (ad_gemm_packed){.dtype = dtype, .m = m, .k = k, .tape = tape, .a = a, .rsa = rsa,
                          .csa = csa};
    /* a product the built-in kernel would share among threads keeps them */
    if (m <= 0 || k <= 0 || nmax <= 0 ||
        gemm_threads(m, nmax, (double)m * (double)nmax * (double)k) != 1)
        return 0;
    p->mark = scratch_mark(tape);
    size_t es = ad_dtype_size(dtype), ea, eb;
    if (dtype == AD_FLOAT32) {
        const kernel_f32 *K = pick_f32();
        p->kernel = K;
        p->MC = tune_mc > 0 ? round_up(tune_mc, K->mr) : K->mc;
        p->KC = tune_kc > 0 ? tune_kc : packed_kc(K->kc, k);
        p->NC = tune_nc > 0 ? round_up(tune_nc, K->nr) : K->nc;
        ea = packed_a_elems_f32(K, m, k, p->MC, p->KC);
        eb = (size_t)(min64(p->KC, k) * round_up(min64(p->NC, nmax), K->nr));
    } else {
        const kernel_f64 *K = pick_f64();
        p->kernel = K;
        p->MC = tune_mc > 0 ? round_up(tune_mc, K->mr) : K->mc;
        p->KC = tune_kc > 0 ? tune_kc : packed_kc(K->kc, k);
        p->NC = tune_nc > 0 ? round_up(tune_nc, K->nr) : K->nc;
        ea = packed_a_elems_f64(K, m, k, p->MC, p->KC);
        eb = (size_t)(min64(p->KC, k) * round_up(min64(p->NC, nmax), K->nr));
    }
    ea = (ea * es + 63) / 64 * 64 / es; /* pb starts on a cache line */
    p->pa = scratch_alloc(tape, (ea + eb) * es, &p->raw);
    if (!p->pa) {
        scratch_release(tape, p->mark);
        return -1;
    }
    p->pb = (char *)p->pa + ea * es;
    p->nmax = nmax;
    if (dtype == AD_FLOAT32)
        pack_a_all_f32(p->kernel, m, k, p->MC, p->KC, a, rsa, csa, p->pa);
    else
        pack_a_all_f64(p->kernel, m, k, p->MC, p->KC, a, rsa, csa, p->pa);
    return 0;
}

void ad__gemm_packed(const ad_gemm_packed *p, int64_t n, const void *b, int64_t rsb,
                     int64_t csb, void *c, int64_t rsc, int64_t csc, bool accumulate)
{
    assert(p->pa && n <= p->nmax);
    if (p->dtype == AD_FLOAT32)
        run_packed_f32(p->kernel, p->m, n, p->k, p->MC, p->KC, p->NC, p->pa, b, rsb, csb, c, rsc,
                       csc, accumulate, p->pb);
    else
        run_packed_f64(p->kernel, p->m, n, p->k, p->MC, p->KC, p->NC, p->pa, b, rsb, csb, c, rsc,
                       csc, accumulate, p->pb);
}

int ad__gemm_packed_or_plain(const ad_gemm_packed *p, int64_t n, const void *b, int64_t rsb,
                             int64_t csb, void *c, int64_t rsc, int64_t csc, bool accumulate)
{
    if (p->pa) {
        ad__gemm_packed(p, n, b, rsb, csb, c, rsc, csc, accumulate);
        return 0;
    }
    assert(rsc == 1 || csc == 1);
    ad_gemm_ep acc = {NULL, 0, true, false};
    const ad_gemm_ep *ep = accumulate ? &acc : NULL;
    if (csc == 1)
        return ad__gemm_ep(p->tape, p->dtype, p->m, n, p->k, p->a, p->rsa, p->csa, b, rsb, csb, c,
                           rsc, ep);
    /* C transposed: C^T = B^T A^T, row-major with leading dimension csc */
    return ad__gemm_ep(p->tape, p->dtype, n, p->m, p->k, b, csb, rsb, p->a, p->csa, p->rsa, c, csc,
                       ep);
}

void ad__gemm_packed_release(ad_gemm_packed *p)
{
    if (!p->pa) return;
    ad__free(p->raw);
    scratch_release(p->tape, p->mark);
    p->pa = NULL;
}

/* autodiff/gemm_choice.c - which kernel computes a product: the built-in
 * one or CBLAS, decided per shape on this CPU by measuring both.
 *
 * Neither kernel wins everywhere.  On an AVX-512 machine OpenBLAS's
 * AVX-512 core and the built-in kernel are within a few percent on large
 * squares, OpenBLAS is several times faster on narrow shapes (n = 10: the
 * built-in 14 x 32 tile is two thirds padding), and an environment that
 * forces OpenBLAS's AVX2 core (OPENBLAS_CORETYPE=Haswell, common in
 * containers) can cost OpenBLAS up to half its speed.  Which way a shape
 * goes depends on the CPU, the BLAS build and its environment, so it is
 * measured rather than fixed at compile time: the first product of each
 * shape (dtype, m, n, k, which operands are transposed, thread count) runs
 * on both kernels once to warm up and CALIBRATION_REPS times each, timed,
 * interleaved, and the
 * faster minimum wins for every later product of that shape; CBLAS must
 * be CHOICE_MARGIN faster to be taken, so near-ties stay on the built-in
 * kernel.  When both run on the calling thread alone they are timed by
 * that thread's CPU time: on a machine with more runnable threads than
 * cores, wall time measured mostly the wait for a core (a 3 ms product
 * took 10 to 50 ms of wall time at a load of 20 on 2 cores) and sent
 * shapes to the slower kernel.  A training loop repeats a handful of shapes, so it pays the
 * calibration once per shape, in its first step.
 *
 * The measurement is asked for with AD_GEMM=auto in the environment.
 * Without it every product CBLAS can take goes to CBLAS ("blas", the
 * default), except the wide float32 products that gemm.c's
 * builtin_by_default gives the AVX-512 kernel; AD_GEMM=blas sends all to
 * CBLAS, AD_GEMM=builtin all to the built-in kernel.  The
 * default is fixed, not measured, because the two kernels round
 * differently: a choice that depends on timings would let two runs of the
 * same seeded program differ in the last bits (a shape timed a few
 * percent apart goes either way on a busy machine), and the library
 * promises bit-identical runs on one thread (docs/reliability.md).
 *
 * The CNN's convolutions (ops_conv.c) call no GEMM.  On the AMD machine
 * with AVX-512 measured first, its linear layers' products were as fast
 * or faster on OpenBLAS; after the built-in kernel's packing of transposed
 * operands became a register transpose and its last strips got kernels of
 * their own height, a Xeon with AVX-512 ran them and the MLP's faster on
 * the built-in kernel (bench/gemm_shapes.c; docs/benchmarks.md), hence
 * builtin_by_default. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime and its CPU-time clocks */

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define TABLE_SIZE 1024 /* shapes remembered; past that, the built-in kernel */

typedef struct entry {
    gemm_shape s;
    int threads;
    int pick; /* AD_GEMM_BUILTIN or AD_GEMM_BLAS; 0 = empty slot */
    double t_builtin, t_blas;
} entry;

static entry table[TABLE_SIZE];
static int used;
static atomic_flag lock = ATOMIC_FLAG_INIT;
static int forced = -1; /* test hook; -1: the environment decides */

static void acquire(void)
{
    while (atomic_flag_test_and_set_explicit(&lock, memory_order_acquire)) {
    }
}
static void release(void) { atomic_flag_clear_explicit(&lock, memory_order_release); }

double ad__gemm_clock(bool thread_cpu)
{
    struct timespec ts;
    clock_gettime(thread_cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* AD_GEMM, read once: the mode, and whether "blas" was asked for by
 * name (explicit) rather than left as the default. */
static atomic_bool env_explicit;
static int env_mode(void)
{
    static atomic_int mode; /* 0: not read yet */
    int m = atomic_load(&mode);
    if (m) return m;
    const char *e = getenv("AD_GEMM");
    m = e && strcmp(e, "builtin") == 0 ? AD_GEMM_BUILTIN
        : e && strcmp(e, "auto") == 0  ? AD_GEMM_CALIBRATE
                                       : AD_GEMM_BLAS;
    atomic_store(&env_explicit, e && strcmp(e, "blas") == 0);
    atomic_store(&mode, m);
    return m;
}

bool ad__gemm_default_mode(void)
{
    if (forced >= 0) return false;
    return env_mode() == AD_GEMM_BLAS && !atomic_load(&env_explicit);
}

static int threads_now(void)
{
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

static bool same(const gemm_shape *a, const gemm_shape *b)
{
    return a->dtype == b->dtype && a->m == b->m && a->n == b->n && a->k == b->k &&
           a->ta == b->ta && a->tb == b->tb;
}

/* The slot of s (its entry, or the empty slot where it goes), under lock. */
static entry *slot(const gemm_shape *s, int threads)
{
    uint64_t h = (uint64_t)s->m * 0x9E3779B97F4A7C15u ^ (uint64_t)s->n * 0xC2B2AE3D27D4EB4Fu ^
                 (uint64_t)s->k * 0x165667B19E3779F9u ^
                 (uint64_t)(s->dtype * 8 + s->ta * 4 + s->tb * 2) ^ (uint64_t)threads << 40;
    for (int i = 0; i < TABLE_SIZE; i++) {
        entry *e = &table[(h + (uint64_t)i) % TABLE_SIZE];
        if (!e->pick || (e->threads == threads && same(&e->s, s))) return e;
    }
    return NULL;
}

int ad__gemm_choose(const gemm_shape *s)
{
    int mode = forced >= 0 ? forced : env_mode();
    if (mode != AD_GEMM_CALIBRATE) return mode;
    acquire();
    entry *e = slot(s, threads_now());
    int pick = !e ? AD_GEMM_BUILTIN : e->pick ? e->pick : AD_GEMM_CALIBRATE;
    release();
    return pick;
}

int ad__gemm_record(const gemm_shape *s, double t_builtin, double t_blas)
{
    int pick = t_blas * CHOICE_MARGIN < t_builtin ? AD_GEMM_BLAS : AD_GEMM_BUILTIN;
    acquire();
    entry *e = used < TABLE_SIZE * 3 / 4 ? slot(s, threads_now()) : NULL;
    if (e && !e->pick) { /* another thread may have recorded it meanwhile */
        *e = (entry){*s, threads_now(), pick, t_builtin, t_blas};
        used++;
    }
    release();
    return pick;
}

int ad__gemm_choice(const gemm_shape *s, double *t_builtin, double *t_blas)
{
    int mode = forced >= 0 ? forced : env_mode();
    if (mode != AD_GEMM_CALIBRATE) return mode;
    acquire();
    entry *e = slot(s, threads_now());
    int pick = e && e->pick ? e->pick : AD_GEMM_CALIBRATE;
    if (e && e->pick) {
        if (t_builtin) *t_builtin = e->t_builtin;
        if (t_blas) *t_blas = e->t_blas;
    }
    release();
    return pick;
}

void ad__gemm_testing_choice(int mode)
{
    acquire();
    forced = mode;
    memset(table, 0, sizeof table);
    used = 0;
    release();
}

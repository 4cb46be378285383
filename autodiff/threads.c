/* autodiff/threads.c - how many threads the kernels may use, per calling
 * thread (ad_set_num_threads in tape.h).
 *
 * The kernels that split their work (the blocked matrix product, unfold
 * and fold, the window scans of max-pooling, the random fills) do so with
 * OpenMP when the library is built with it.  A program that runs several
 * tapes on threads of its own - nn's trainer splitting a batch among
 * threads - already occupies the cores; kernels that split again would put
 * two OpenMP teams, or an OpenBLAS pool, on each core.  So a thread can
 * limit the kernels it calls to itself.  The limit is thread-local, like
 * the grad mode, and leaves OpenMP's own settings alone. */
#include "internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local int limit; /* 0: no limit of ours */

int ad_set_num_threads(int n)
{
    if (n < 0) return ad__err("ad_set_num_threads", "n must be >= 0, got %d", n);
    int prev = limit;
    limit = n;
    return prev;
}

int ad_get_num_threads(void) { return ad__max_threads(); }

int ad__max_threads(void)
{
#ifdef _OPENMP
    int t = omp_get_max_threads();
    return limit > 0 && limit < t ? limit : t;
#else
    return 1;
#endif
}

bool ad__single_thread(void) { return limit == 1; }

/* ad_set_parallel_runner's runner, per thread. */
static _Thread_local ad_parallel_runner runner;
static _Thread_local void *runner_pool;
static _Thread_local int runner_parts;

int ad_set_parallel_runner(ad_parallel_runner run, void *pool, int parts)
{
    if (run && parts < 2)
        return ad__err("ad_set_parallel_runner", "parts must be >= 2 with a runner, got %d",
                       parts);
    runner = run;
    runner_pool = run ? pool : NULL;
    runner_parts = run ? parts : 0;
    return 0;
}

int ad__runner_parts(void) { return runner ? runner_parts : 0; }

void ad__run_parts(ad_parallel_task task, void *ctx) { runner(runner_pool, task, ctx); }

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

/* autodiff/alloc.c - the one way the library gets memory.
 *
 * Every allocation of the library and of nn goes through ad__malloc,
 * ad__calloc and ad__realloc, which count the calls and can be made to
 * fail (the fault-injection tests, docs/reliability.md), then call the
 * installed allocator: the C library's, or a program's (ad_set_allocator).
 * ad_malloc and friends are the public face of the same entry points, so
 * code built on the public API is counted and fault-injected like the
 * core. */
#define _DEFAULT_SOURCE /* madvise and MADV_HUGEPAGE */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "alloc.h"
#include "internal.h"

/* ---- the installed allocator ------------------------------------------------------- */

/* Large blocks (tensors of megabytes, the tape's arena chunks) are
 * offered to the kernel for transparent huge pages.  With 4 KB pages a
 * sweep that reads many rows at once (a transposed operand, a column of
 * blocks of an activation) touches more pages than the TLB holds, and
 * every first touch of a block is one fault per 4 KB; with 2 MB pages
 * both go away.  Linux backs a madvised range with huge pages when its
 * setting is "madvise" (the common default) or "always", and ignores the
 * advice otherwise; only the whole 2 MB pages inside the block are
 * advised, so nothing outside it changes.  Other systems: no advice.
 * A program's own allocator (ad_set_allocator) gets no advice. */
#define HUGE_PAGE ((uintptr_t)2 << 20)

static void *advise_huge(void *p, size_t n)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (p && n >= AD__HUGE_MIN) {
        uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
        uintptr_t b = ((uintptr_t)p + n) & ~(HUGE_PAGE - 1);
        if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE); /* advice only */
    }
#else
    (void)n;
#endif
    return p;
}

static void *libc_malloc(size_t n, void *ctx)
{
    (void)ctx;
    return advise_huge(malloc(n), n);
}
static void *libc_calloc(size_t count, size_t size, void *ctx)
{
    (void)ctx;
    /* count * size cannot overflow here: calloc returned a block */
    void *p = calloc(count, size);
    return p ? advise_huge(p, count * size) : NULL;
}
static void *libc_realloc(void *p, size_t n, void *ctx)
{
    (void)ctx;
    return advise_huge(realloc(p, n), n);
}
static void libc_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

static const ad_allocator libc_allocator = {libc_malloc, libc_calloc, libc_realloc, libc_free,
                                            NULL};
static ad_allocator current = {libc_malloc, libc_calloc, libc_realloc, libc_free, NULL};

/* How to empty the process-wide cache of memory from the allocator (the
 * pools of tape.c), registered by its owner: a switch of allocator first
 * gives that memory back to the allocator it came from. */
static _Atomic(ad__alloc_release_fn) cache_release;

void ad__alloc_set_cache(ad__alloc_release_fn release) { atomic_store(&cache_release, release); }

/* ---- a thread's own scratch ---------------------------------------------------------
 * A buffer that belongs to one thread and outlives the call that asked
 * for it (ad__thread_scratch, internal.h): where the parts of a matrix
 * product split among threads pack their operands (gemm.c).  Each thread
 * has one slot of a fixed table, claimed at its first call and given back
 * by a thread-exit destructor (POSIX thread-specific data).  The table,
 * not the threads, holds the buffers, so ad_set_allocator can free every
 * one with the allocator that gave it (nothing of a program's allocator
 * stays behind a switch; no other thread is in the library then), and a
 * thread that never exits (the main one) leaves its buffer reachable, not
 * lost.  A thread that finds no free slot, or no memory, gets NULL and its
 * caller uses memory of its own. */
#define SCRATCH_SLOTS 256

typedef struct scratch_slot {
    void *raw;  /* from ad__malloc: cap + 63 bytes, or NULL */
    size_t cap; /* usable bytes from the first 64-byte boundary of raw */
    bool used;  /* claimed by a live thread */
} scratch_slot;

/* Every field of every slot is read and written under scratch_mu: a lock
 * taken once per part of a split product (tens of microseconds and more),
 * never in a loop. */
static scratch_slot scratch_slots[SCRATCH_SLOTS];
static pthread_mutex_t scratch_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static bool scratch_key_made;

static void scratch_thread_exit(void *slot)
{
    scratch_slot *s = slot;
    pthread_mutex_lock(&scratch_mu);
    ad__free(s->raw);
    *s = (scratch_slot){NULL, 0, false};
    pthread_mutex_unlock(&scratch_mu);
}

static void scratch_make_key(void)
{
    scratch_key_made = pthread_key_create(&scratch_key, scratch_thread_exit) == 0;
}

static void thread_scratch_release_all(void)
{
    pthread_mutex_lock(&scratch_mu);
    for (int i = 0; i < SCRATCH_SLOTS; i++) {
        ad__free(scratch_slots[i].raw);
        scratch_slots[i].raw = NULL;
        scratch_slots[i].cap = 0;
    }
    pthread_mutex_unlock(&scratch_mu);
}

void *ad__thread_scratch(size_t n)
{
    pthread_once(&scratch_once, scratch_make_key);
    if (!scratch_key_made || n > SIZE_MAX - 63) return NULL;
    scratch_slot *s = pthread_getspecific(scratch_key);
    void *p = NULL;
    pthread_mutex_lock(&scratch_mu);
    for (int i = 0; !s && i < SCRATCH_SLOTS; i++)
        if (!scratch_slots[i].used) {
            s = &scratch_slots[i];
            s->used = true;
            if (pthread_setspecific(scratch_key, s)) {
                s->used = false;
                s = NULL;
                break;
            }
        }
    if (s && s->cap < n) { /* grown to the largest request: products differ per call */
        ad__free(s->raw);
        s->raw = ad__malloc(n + 63);
        s->cap = s->raw ? n : 0;
    }
    if (s && s->raw) p = (void *)(((uintptr_t)s->raw + 63) & ~(uintptr_t)63);
    pthread_mutex_unlock(&scratch_mu);
    return p;
}

int ad_set_allocator(const ad_allocator *a)
{
    if (a && (!a->malloc_fn || !a->calloc_fn || !a->realloc_fn || !a->free_fn))
        return ad__err("ad_set_allocator", "malloc_fn, calloc_fn, realloc_fn and free_fn "
                                           "must all be set");
    ad__alloc_release_fn release = atomic_load(&cache_release);
    if (release) release();
    thread_scratch_release_all();
    current = a ? *a : libc_allocator;
    return 0;
}

/* ---- the library's entry points ---------------------------------------------------- */

_Thread_local size_t ad__alloc_calls;
_Thread_local long ad__alloc_fail_in;

/* True when this allocation is the one a fault-injection test asked to fail. */
static bool injected_failure(void)
{
    ad__alloc_calls++;
    return ad__alloc_fail_in > 0 && --ad__alloc_fail_in == 0;
}

/* The installed allocator never sees a request for 0 bytes, a realloc of
 * NULL or a free of NULL (alloc.h). */
void *ad__malloc(size_t n)
{
    return injected_failure() ? NULL : current.malloc_fn(n ? n : 1, current.ctx);
}

void *ad__calloc(size_t n, size_t size)
{
    if (injected_failure()) return NULL;
    return n && size ? current.calloc_fn(n, size, current.ctx) : current.calloc_fn(1, 1, current.ctx);
}

void *ad__realloc(void *p, size_t n)
{
    if (injected_failure()) return NULL;
    if (!n) n = 1;
    return p ? current.realloc_fn(p, n, current.ctx) : current.malloc_fn(n, current.ctx);
}

void ad__free(void *p)
{
    if (p) current.free_fn(p, current.ctx);
}

/* ---- the public allocator ---------------------------------------------------------- */

void *ad_malloc(size_t n)
{
    void *p = ad__malloc(n ? n : 1);
    if (!p) ad__err("ad_malloc", "out of memory for %zu bytes", n);
    return p;
}

void *ad_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) {
        ad__err("ad_calloc", "out of memory: %zu x %zu bytes overflow size_t", count, size);
        return NULL;
    }
    void *p = count && size ? ad__calloc(count, size) : ad__calloc(1, 1);
    if (!p) ad__err("ad_calloc", "out of memory for %zu x %zu bytes", count, size);
    return p;
}

void *ad_realloc(void *p, size_t n)
{
    void *q = ad__realloc(p, n ? n : 1);
    if (!q) ad__err("ad_realloc", "out of memory for %zu bytes", n);
    return q;
}

void ad_free(void *p) { ad__free(p); }

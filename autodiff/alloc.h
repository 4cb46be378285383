/* autodiff/alloc.h - the library's heap allocator, for code built on the
 * public API, and the allocator a program can install under it.
 *
 * The heap allocator that the library itself uses (autodiff/alloc.c), for
 * code built on the public API - the nn layer, your own extensions - so
 * that its memory is accounted like the core's: the test suite's fault
 * injection makes these fail exactly like the core's own allocations,
 * which is how the out-of-memory paths of nn, the DOT writer and the
 * libffi and zlib call sites are tested (docs/reliability.md).
 *
 *   - ad_malloc, ad_calloc and ad_realloc behave like malloc, calloc and
 *     realloc, except that a request for 0 bytes returns a unique non-NULL
 *     pointer (NULL always means failure) and that a count * size that
 *     overflows size_t makes ad_calloc fail.
 *   - On failure they return NULL and set the thread's error (ad_error())
 *     to "ad_malloc: out of memory for N bytes" (ad_calloc and ad_realloc
 *     likewise); ad_realloc then leaves p allocated and unchanged.  A
 *     caller usually replaces the message with one naming what it was
 *     making.
 *   - Ownership: the caller owns the memory and releases it with ad_free
 *     (NULL is ignored).  Memory from these must not be passed to free(),
 *     nor memory from malloc() to ad_free or ad_realloc: with an allocator
 *     installed (below) the two are different heaps.
 *   - Thread-safe: any thread may allocate, and any thread may free what
 *     another allocated.
 *
 * ad_set_allocator installs a program's own allocator, for programs that
 * embed the library and account for or place its memory (an arena of their
 * own, a memory budget, a tracking allocator).  NULL restores the C
 * library's malloc, calloc, realloc and free, the default.
 *
 *   - What goes through it: every byte the library and nn allocate - tensor
 *     storage and headers, tapes and their arenas, scalar tapes, callbacks,
 *     modules, optimizers, data sets, checkpoints, the DOT writer - and
 *     everything allocated with ad_malloc, ad_calloc and ad_realloc.  Not
 *     what other libraries allocate for themselves: libffi's closures,
 *     zlib's stream state, OpenBLAS's and the OpenMP runtime's buffers, the C
 *     library's own (stdio
 *     buffers, getline, open_memstream).
 *   - The four functions are called like their C library namesakes, with
 *     ctx as the last argument.  The library never asks for 0 bytes, never
 *     passes NULL to realloc_fn or free_fn, and checks calloc_fn's count *
 *     size for overflow before calling it.  Returning NULL is an out-of-
 *     memory failure: the library call that needed the memory fails with an
 *     "out of memory" error (ad_error()) and leaves no half-done state, as
 *     it does under the C library's allocator.  All four must be set:
 *     ad_set_allocator returns -1 with an error otherwise, and keeps the
 *     allocator it had.
 *   - When: before any other call of the library, or when no object of the
 *     library is alive in any thread (every tensor, tape, scalar tape,
 *     callback, module, optimizer, loader and buffer from ad_malloc freed).
 *     Memory is always given back to the allocator that gave it, so a
 *     switch while objects are alive frees them with the wrong one.  The
 *     library keeps freed tapes and tensor headers in a process-wide pool
 *     (so that a stale handle reads a tombstone, not freed memory), and
 *     each thread that ran a part of a matrix product split among threads
 *     keeps its packing buffer (freed when the thread exits);
 *     ad_set_allocator first returns both to the allocator they came
 *     from, after which a stale handle from before the switch is no longer
 *     caught.  Installing NULL at the end thus leaves nothing of the
 *     library allocated by the program's allocator.
 *   - Threads: the allocator is one for the process.  ad_set_allocator
 *     itself must not run while another thread is inside the library; the
 *     installed functions are called from every thread that uses the
 *     library (each allocation by the thread that needs it; a free possibly
 *     by another thread than the allocation), so they must be thread-safe
 *     if more than one thread does.  The allocator structure is copied;
 *     ctx is kept as given and must stay valid while installed.
 *   - The test suite's fault injection (docs/reliability.md) counts and
 *     fails allocations before they reach the installed allocator.
 */
#ifndef AUTODIFF_ALLOC_H
#define AUTODIFF_ALLOC_H

#include <stddef.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

AD_API void *ad_malloc(size_t n);
AD_API void *ad_calloc(size_t count, size_t size);
AD_API void *ad_realloc(void *p, size_t n);
AD_API void ad_free(void *p);

/* A program's allocator (ad_set_allocator). */
typedef struct ad_allocator {
    void *(*malloc_fn)(size_t n, void *ctx);
    void *(*calloc_fn)(size_t count, size_t size, void *ctx);
    void *(*realloc_fn)(void *p, size_t n, void *ctx);
    void (*free_fn)(void *p, void *ctx);
    void *ctx; /* passed to each of the four */
} ad_allocator;

/* Installs allocator (copied), or the C library's with NULL; 0, or -1 if
 * one of its functions is NULL. */
AD_API int ad_set_allocator(const ad_allocator *allocator);

#ifdef __cplusplus
}
#endif
#endif

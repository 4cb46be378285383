/* autodiff/alloc.h - the library's heap allocator, for code built on the
 * public API.
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
 *     nor memory from malloc() to ad_free or ad_realloc: the two may be
 *     different heaps in a future version that lets programs install their
 *     own allocator.
 *   - Thread-safe: any thread may allocate, and any thread may free what
 *     another allocated.
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

#ifdef __cplusplus
}
#endif
#endif

/* autodiff/alloc.c - the public allocator (alloc.h): ad_malloc, ad_calloc,
 * ad_realloc, ad_free.
 *
 * They go through the core's own entry points (ad__malloc and friends,
 * tape.c), so code built on the public API - the nn layer, the DOT writer,
 * the libffi and zlib call sites - is counted and fault-injected exactly
 * like the core: ad__alloc_fail_in reaches it too. */
#include <stdint.h>

#include "alloc.h"
#include "internal.h"

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

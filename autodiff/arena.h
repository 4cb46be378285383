/* autodiff/arena.h - the bump arena: the tape's memory for tensors, nodes
 * and temporaries, and the scratch of gemm.c.  Not installed.
 *
 * Chunks are kept in creation order.  A rewind (to a mark, or to the start
 * with a reset) gives back everything allocated since, and the same
 * sequence of allocations then lands in the same places, so a loop that
 * records the same computation every step allocates from the system only
 * in its first step.  Users: the tape (ad__arena_alloc, ad_tape_reset,
 * ad_tape_free), replay (the freeze mark) and gemm.c (scratch put back
 * when a product returns).  An arena is used by one thread at a time. */
#ifndef AUTODIFF_ARENA_H
#define AUTODIFF_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#define ARENA_ALIGN 64
#define ARENA_MIN_CHUNK ((size_t)256 << 10)
#define ARENA_MAX_CHUNK ((size_t)64 << 20)

typedef struct ad_arena_chunk {
    struct ad_arena_chunk *next;
    size_t size, used;
    unsigned char *base; /* ARENA_ALIGN-aligned */
} ad_arena_chunk;

/* All zero is an empty arena. */
typedef struct ad_arena {
    ad_arena_chunk *first, *cur, *last;
    /* stats: bytes handed out, bytes of all chunks, number of chunks */
    size_t used, reserved, nchunks;
    /* the most bytes handed out at once before the last rewind (used only
     * falls at a rewind, so the high-water mark is taken there and not on
     * the allocation's fast path); ad__arena_peak adds the current fill */
    size_t peak;
} ad_arena;

/* A fill level to rewind to; all zero is the empty arena. */
typedef struct ad_arena_mark {
    ad_arena_chunk *chunk; /* the current chunk then, NULL if there was none */
    size_t chunk_used, used;
} ad_arena_mark;

/* The slow path of ad__arena_take: moves on to the next chunk that has
 * room, or adds one (NULL when out of memory). */
void *ad__arena_grow(ad_arena *a, size_t n);

/* n bytes, ARENA_ALIGN-aligned, valid until a rewind past them. */
static inline void *ad__arena_take(ad_arena *a, size_t n)
{
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    ad_arena_chunk *c = a->cur;
    if (!c || c->used + n > c->size) return ad__arena_grow(a, n);
    void *p = c->base + c->used;
    c->used += n;
    a->used += n;
    return p;
}

static inline ad_arena_mark ad__arena_mark(const ad_arena *a)
{
    return (ad_arena_mark){a->cur, a->cur ? a->cur->used : 0, a->used};
}

/* Gives back everything allocated since m: the chunks after m's are empty
 * again and the current chunk is refilled to its level at m. */
void ad__arena_rewind(ad_arena *a, ad_arena_mark m);
/* The high-water mark of used since the last ad__arena_clear_peak. */
static inline size_t ad__arena_peak(const ad_arena *a)
{
    return a->used > a->peak ? a->used : a->peak;
}
static inline void ad__arena_clear_peak(ad_arena *a) { a->peak = a->used; }
/* Whether p points into space handed out since m. */
bool ad__arena_since(const ad_arena *a, ad_arena_mark m, const void *p);
/* Rewinds to the start; the chunks are kept for reuse. */
static inline void ad__arena_reset(ad_arena *a) { ad__arena_rewind(a, (ad_arena_mark){0}); }
/* Returns every chunk to the allocator and leaves an empty arena. */
void ad__arena_free(ad_arena *a);

#endif

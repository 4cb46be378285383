/* autodiff/arena.c - the bump arena (arena.h). */
#include <stdint.h>

#include "arena.h"
#include "internal.h"

void *ad__arena_grow(ad_arena *a, size_t n)
{
    ad_arena_chunk *was = a->cur;
    while (a->cur && a->cur->used + n > a->cur->size) a->cur = a->cur->next;
    if (!a->cur) {
        size_t size = a->last ? a->last->size * 2 : ARENA_MIN_CHUNK;
        if (size > ARENA_MAX_CHUNK) size = ARENA_MAX_CHUNK;
        if (size < n) size = n;
        ad_arena_chunk *c = ad__malloc(sizeof *c + size + ARENA_ALIGN);
        if (!c) {
            /* cur stays where it was: a NULL cur with space in use would
             * make the next mark read as the arena's start, and a rewind
             * to it give back everything */
            a->cur = was;
            return NULL;
        }
        c->next = NULL;
        c->size = size;
        c->used = 0;
        uintptr_t p = (uintptr_t)(c + 1);
        c->base = (unsigned char *)((p + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1));
        if (a->last) a->last->next = c;
        else a->first = c;
        a->last = c;
        a->cur = c;
        a->reserved += size;
        a->nchunks++;
    }
    void *p = a->cur->base + a->cur->used;
    a->cur->used += n;
    a->used += n;
    return p;
}

void ad__arena_rewind(ad_arena *a, ad_arena_mark m)
{
    if (a->used > a->peak) a->peak = a->used;
    a->used = m.used;
    a->cur = m.chunk ? m.chunk : a->first;
    if (m.chunk) m.chunk->used = m.chunk_used;
    for (ad_arena_chunk *c = m.chunk ? m.chunk->next : a->first; c; c = c->next) c->used = 0;
}

bool ad__arena_since(const ad_arena *a, ad_arena_mark m, const void *p)
{
    const unsigned char *q = p;
    for (const ad_arena_chunk *c = m.chunk ? m.chunk : a->first; c; c = c->next) {
        size_t from = c == m.chunk ? m.chunk_used : 0;
        if (q >= c->base + from && q < c->base + c->used) return true;
        if (c == a->cur) break;
    }
    return false;
}

void ad__arena_free(ad_arena *a)
{
    for (ad_arena_chunk *c = a->first, *n; c; c = n) {
        n = c->next;
        ad__free(c);
    }
    *a = (ad_arena){0};
}

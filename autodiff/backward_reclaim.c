/* autodiff/backward_reclaim.c - the backward pass gives each rule's
 * temporaries back (backward_impl.h says when), so that a pass's memory is
 * the forward's values, the adjoints and one rule's temporaries. */
#include "backward_impl.h"

/* The adjoint the last reclaim moved down, when it was the only tensor
 * moved and the only slot's: in a chain it is the next node's g, and if
 * nothing was allocated since it is the arena's top block, which that
 * node's reclaim can give back too once g is consumed. */
static _Thread_local struct {
    const ad_tape *t;
    const ad_tensor *y;
    ad_arena_mark before, after;
} top_adj;

void ad__reclaim_pass_start(void) { top_adj.y = NULL; }

static bool same_mark(ad_arena_mark a, ad_arena_mark b)
{
    return a.chunk == b.chunk && a.chunk_used == b.chunk_used && a.used == b.used;
}

/* Notes the slots n's pass may change; false when it is not safe or not
 * worth it (the graph recorded; a trace or the anomaly check looks at the
 * gradients; more slots than the fixed array holds).  When g, the adjoint the rule
 * consumes, is the top block top_adj describes, its start is noted too. */
bool ad__reclaim_begin(ad_tape *t, const ad_node *n, ad_tensor *g, const sink *sk, bool create,
                       reclaim *r)
{
    r->g = NULL;
    if (create || ad__tracing() || ad__anomaly_on() || n->nin + sk->n > RECLAIM_MAX) return false;
    r->n = 0;
    if (top_adj.t == t && top_adj.y == g && same_mark(top_adj.after, ad__arena_mark(&t->arena))) {
        r->g = g;
        r->floor = top_adj.before;
    }
    top_adj.y = NULL;
    for (int k = 0; k < n->nin; k++) {
        ad_tensor *x = n->in[k];
        if (!x->requires_grad) continue;
        if (!x->node && x->tape != t) continue;
        r->owner[r->n] = x;
        r->slot[r->n++] = x->node ? &x->adj : &x->grad;
    }
    for (int i = 0; sk->targets && i < sk->n; i++) {
        r->owner[r->n] = NULL;
        r->slot[r->n++] = &sk->grads[i];
    }
    for (int i = 0; i < r->n; i++) r->before[i] = *r->slot[i];
    r->m = ad__arena_mark(&t->arena);
    r->held = t->held;
    return true;
}

/* Where ad__arena_take will put the next n bytes: its walk over the
 * chunks repeated (those after a rewind's chunk are empty), NULL for a
 * chunk it would have to add (new memory, which holds none of the
 * tensors being moved). */
typedef struct arena_sim {
    const ad_arena_chunk *c;
    size_t used;
} arena_sim;

static unsigned char *sim_take(arena_sim *s, size_t n)
{
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    while (s->c && s->used + n > s->c->size) s->c = s->c->next, s->used = 0;
    if (!s->c) return NULL;
    unsigned char *p = s->c->base + s->used;
    s->used += n;
    return p;
}

static bool overlap(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    return a < b + nb && b < a + na;
}

/* Whether a tensor re-made as storage [st, st + stn) and data [d, d + dn)
 * lands on the bytes [x, x + n).  The two blocks are checked apart: the
 * data goes to the next chunk when the storage's has no room left, and
 * one span from st to the data's end would then wrap around when that
 * chunk lies lower in memory. */
static bool lands_on(const unsigned char *st, size_t stn, const unsigned char *d, size_t dn,
                     const unsigned char *x, size_t n)
{
    return overlap(st, stn, x, n) || (dn && overlap(d, dn, x, n));
}

/* Whether the moved tensors can be re-made straight from where they are
 * instead of through a copy at the arena's top (two copies of a rule's
 * result, 5.5 MB for a convolution's input gradient): re-made from `to`
 * on in order of address (sorted here), tensor j's storage and data must
 * not land on the data of a later one, and on its own only at or below
 * it (one forward memmove, or none when it is already in place).  Each
 * must be contiguous, so its data is one run of bytes[j]. */
static bool reclaim_in_place(const ad_arena *a, ad_arena_mark to, ad_tensor **old,
                             size_t *bytes, int nm, const void **src_out, const void **dst_out)
{
    const unsigned char *src[RECLAIM_MAX];
    for (int j = 1; j < nm; j++) /* insertion sort by address: nm is a handful */
        for (int k = j; k > 0 && (uintptr_t)old[k]->storage->data <
                                     (uintptr_t)old[k - 1]->storage->data; k--) {
            ad_tensor *x = old[k];
            size_t b = bytes[k];
            old[k] = old[k - 1], bytes[k] = bytes[k - 1];
            old[k - 1] = x, bytes[k - 1] = b;
        }
    for (int j = 0; j < nm; j++) {
        if (!ad_is_contiguous(old[j])) return false;
        src[j] = (const unsigned char *)old[j]->storage->data +
                 (size_t)old[j]->offset * ad_dtype_size(old[j]->dtype);
    }
    arena_sim s = {to.chunk ? to.chunk : a->first, to.chunk ? to.chunk_used : 0};
    const size_t stn = (sizeof(ad_storage) + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    for (int j = 0; j < nm; j++) {
        /* ad__alloc's two blocks: the storage, then the data */
        const unsigned char *st = sim_take(&s, sizeof(ad_storage));
        const unsigned char *d = st ? sim_take(&s, bytes[j] ? bytes[j] : 1) : NULL;
        dst_out[j] = d;
        if (!st || !d) continue; /* new memory from here on */
        if (lands_on(st, stn, d, bytes[j], src[j], bytes[j]) && d > src[j]) return false;
        for (int k = j + 1; k < nm; k++)
            if (lands_on(st, stn, d, bytes[j], src[k], bytes[k])) return false;
    }
    for (int j = 0; j < nm; j++) src_out[j] = src[j];
    return true;
}

/* The slots' new tensors that live in the space since the mark are
 * copied to the arena's top (or, when reclaim_in_place allows, left
 * where they are), everything since the mark is given back, and they
 * are made again from the mark on (below the copy: they are a part of
 * what the rule took) with the same values. */
int ad__reclaim_end(ad_tape *t, reclaim *r)
{
    ad_tensor *old[RECLAIM_MAX];
    size_t bytes[RECLAIM_MAX], total = 0;
    const void *src[RECLAIM_MAX], *land[RECLAIM_MAX];
    int nm = 0;
    for (int i = 0; i < r->n; i++) {
        ad_tensor *x = *r->slot[i];
        if (!x || x == r->before[i] || !ad__arena_since(&t->arena, r->m, x->storage)) continue;
        bool seen = false;
        for (int j = 0; j < nm && !seen; j++) seen = old[j] == x;
        if (seen) continue;
        bytes[nm] = (size_t)ad__numel(x->ndim, x->shape) * ad_dtype_size(x->dtype);
        total += bytes[nm];
        old[nm++] = x;
    }
    /* g, the top block, goes too when nothing now refers to its storage */
    bool g_dead = r->g != NULL;
    for (int i = 0; i < r->n && g_dead; i++)
        g_dead = !*r->slot[i] || (*r->slot[i])->storage != r->g->storage;
    /* Giving g back means moving the results down over it; when they are
     * more than twice its size (an attention's [B, T, 3D] gradient over
     * its [B, T, D] adjoint, a cross-entropy's logits gradient over a
     * scalar) g's block stays where it is until the reset instead: a hole
     * of less than half the bytes a move would copy. */
    if (g_dead && total > 2 * (r->m.used - r->floor.used)) g_dead = false;
    ad_arena_mark to = g_dead ? r->floor : r->m;
    bool in_place = nm && reclaim_in_place(&t->arena, to, old, bytes, nm, src, land);
    if (!in_place) {
        unsigned char *top = total ? ad__arena_alloc(t, total) : NULL;
        if (total && !top) return 0; /* no room to move them: keep everything, as before */
        size_t off = 0;
        for (int j = 0; j < nm; j++) {
            src[j] = NULL; /* nothing to copy: all of them empty */
            if (!top) continue;
            ad_storage st = {.data = top + off};
            ad_tensor dst = *old[j];
            dst.storage = &st;
            dst.offset = 0;
            ad__contig_strides(dst.ndim, dst.shape, dst.strides);
            ad__copy_same(&dst, old[j]);
            src[j] = top + off;
            off += bytes[j];
        }
    }
    /* the rule's views of persistent tensors are as dead as the rest */
    ad__tape_release_after(t, r->held, t->fixups);
    ad__arena_rewind(&t->arena, to);
    for (int j = 0; j < nm; j++) {
        ad_tensor *y = ad__alloc("ad_backward", t, old[j]->dtype, old[j]->ndim, old[j]->shape);
        if (!y) { /* no memory for a header: the slots not moved yet go back to what
                     they were before the rule, as for a node that failed */
            for (int i = 0; i < r->n; i++)
                for (int k = j; k < nm; k++)
                    if (*r->slot[i] == old[k]) *r->slot[i] = r->before[i];
            return -1;
        }
        /* reclaim_in_place foresaw where it lands (NULL: a new chunk) */
        assert(!in_place || !land[j] || y->storage->data == land[j]);
        /* (an empty tensor's src is NULL, which memmove may not take even
         * for 0 bytes) */
        if (bytes[j] && y->storage->data != src[j]) memmove(y->storage->data, src[j], bytes[j]);
        int refs = 0, adj_refs = 0;
        for (int i = 0; i < r->n; i++)
            if (*r->slot[i] == old[j]) {
                *r->slot[i] = y;
                refs++;
                adj_refs += r->owner[i] && r->slot[i] == &r->owner[i]->adj;
            }
        if (nm == 1 && refs == 1 && adj_refs == 1) {
            top_adj.t = t;
            top_adj.y = y;
            top_adj.before = to;
            top_adj.after = ad__arena_mark(&t->arena);
        }
    }
    if (nm == 0 && r->g && !g_dead) {
        /* The rule handed g itself on (written over, ad__grad_donated):
         * when it is one input's adjoint alone it is still the top block,
         * which the next node's reclaim can give back once consumed. */
        int refs = 0, adj_refs = 0, shared = 0;
        for (int i = 0; i < r->n; i++) {
            ad_tensor *x = *r->slot[i];
            if (x == r->g) {
                refs++;
                adj_refs += r->owner[i] && r->slot[i] == &r->owner[i]->adj;
            } else if (x && x->storage == r->g->storage) {
                shared++;
            }
        }
        if (refs == 1 && adj_refs == 1 && !shared) {
            top_adj.t = t;
            top_adj.y = r->g;
            top_adj.before = r->floor;
            top_adj.after = ad__arena_mark(&t->arena);
        }
    }
    return 0;
}

/* autodiff/tape.c - the tape's life cycle, grad mode, leaves and recording
 * (ad__record), anomaly checks, inspection and tracing.  Its memory comes
 * from an arena (arena.c); the backward pass is in backward.c, replay in
 * replay.c. */
#include "tape_impl.h"

static _Thread_local ad_tape *active_tape;
static _Thread_local bool grad_disabled;
static _Thread_local bool anomaly;
static _Thread_local bool in_backward; /* rules' inner ops are checked as a whole */
static _Thread_local bool record_off;  /* ad__set_record_off */
static _Thread_local int record_all;   /* ad__record_all */
static _Thread_local int opaque_depth; /* ad__replay_opaque */
static _Thread_local const char *scope_label;
static _Thread_local ad_trace_fn trace_fn;
static _Thread_local void *trace_ctx;


void *ad__arena_alloc(ad_tape *t, size_t n) { return ad__arena_take(&t->arena, n); }

char *ad__strdup(ad_tape *tape, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = tape ? ad__arena_alloc(tape, n) : ad__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void ad__tape_note_tensor(ad_tape *tape) { tape->ntensors++; }

/* Adds a reference to the tape's list (exactly one of s and t). */
static int hold(ad_tape *tape, ad_storage *s, ad_tensor *t)
{
    held *h = ad__arena_alloc(tape, sizeof *h);
    if (!h) return -1;
    *h = (held){.storage = s, .tensor = t, .next = tape->held};
    tape->held = h;
    return 0;
}

int ad__tape_hold(ad_tape *tape, ad_storage *s)
{
    if (hold(tape, s, NULL)) return -1;
    s->refs++;
    return 0;
}

int ad__tape_hold_tensor(ad_tape *tape, ad_tensor *t)
{
    if (hold(tape, NULL, t)) return -1;
    atomic_fetch_add(&t->hrefs, 1);
    return 0;
}

/* ---- handles -------------------------------------------------------------------
 * A tensor handle is a pointer, and C cannot take it back from the user, so
 * the library makes every stale use detectable instead:
 *  - every tape tensor is stamped with its tape's generation, which changes
 *    at each reset (and each replay), from one process-wide counter;
 *  - tape tensors' headers live in slabs and tape structures in a pool, both
 *    recycled but never returned to the system, so reading a stale handle's
 *    stamp is always safe, even after ad_tape_free;
 *  - the tape alternates between two header lists at each reset, so the
 *    header a kept handle points at is not reused for the next step's
 *    tensors: a handle kept across one reset is always caught; so do the
 *    tensors made while frozen at each replay (post);
 *  - a freed tape's structure waits in the pool behind TAPE_QUARANTINE
 *    others before a new tape takes it, and its last header list goes to
 *    the next tape's second list (slabs_put), so a freed tape's handles
 *    and its tensors' are caught until that many tapes are made after it,
 *    or the tape that takes its slabs is reset.
 *  A handle kept across two or more resets (or replays, or past those
 *  limits) may meet its slot reused by a live tensor, which no check on a
 *  plain pointer can tell apart.
 * Persistent tensors a recorded op reads are referenced by the tape until
 * reset, so freeing one between forward and backward is harmless. */

static atomic_uint_fast64_t gen_counter;
static atomic_flag pool_lock = ATOMIC_FLAG_INIT;
static hdr_slab *slab_pool;  /* guarded by pool_lock */
/* Freed tapes, oldest first (taken from the head, put at the tail);
 * guarded by pool_lock */
static ad_tape *tape_pool, *tape_pool_tail;
static size_t tape_pool_n;
enum { TAPE_QUARANTINE = 4 };

uint64_t ad__next_gen(void) { return (uint64_t)atomic_fetch_add(&gen_counter, 1) + 1; }

static void pool_acquire(void)
{
    while (atomic_flag_test_and_set_explicit(&pool_lock, memory_order_acquire)) {
    }
}
static void pool_release(void) { atomic_flag_clear_explicit(&pool_lock, memory_order_release); }

static hdr_slab *slab_get(void)
{
    pool_acquire();
    hdr_slab *s = slab_pool;
    if (s) slab_pool = s->next;
    pool_release();
    if (!s) s = ad__malloc(sizeof *s);
    if (s) s->next = NULL;
    return s;
}

/* Gives the pools back to the allocator (registered with alloc.c, which
 * calls it when a program installs another allocator). */
static void pools_release(void)
{
    pool_acquire();
    for (hdr_slab *s = slab_pool, *n; s; s = n) {
        n = s->next;
        ad__free(s);
    }
    for (ad_tape *t = tape_pool, *n; t; t = n) {
        n = t->pool_next;
        ad__free(t);
    }
    slab_pool = NULL;
    tape_pool = tape_pool_tail = NULL;
    tape_pool_n = 0;
    pool_release();
}

/* Returns every slab of a list pair to the pool, pair[last]'s first, so
 * that the other list's come out of the pool first: a freed tape's last
 * list, which handles kept past its free point into, goes to the next
 * tape's second list, which that tape uses only after its first reset. */
static void slabs_put(hdr_list pair[2], int last)
{
    ad__alloc_set_cache(pools_release);
    pool_acquire();
    for (int q = 0; q < 2; q++) {
        int p = q ? 1 - last : last;
        for (hdr_slab *s = pair[p].first, *n; s; s = n) {
            n = s->next;
            s->next = slab_pool;
            slab_pool = s;
        }
        pair[p] = (hdr_list){NULL, NULL, 0};
    }
    pool_release();
}

/* A slot from pair[p].  The two lists of a pair grow together, so the list
 * of the next step already has the room this step needed and a loop that
 * resets each step stops allocating after its first. */
static ad_tensor *slot_take(hdr_list pair[2], int p)
{
    hdr_list *l = &pair[p];
    if (!l->cur || l->used == HDR_SLOTS) {
        hdr_slab *next = l->cur ? l->cur->next : l->first;
        if (!next) {
            hdr_slab *a = slab_get(), *b = a ? slab_get() : NULL;
            if (!b) {
                if (a) slabs_put((hdr_list[2]){{a, a, 0}, {NULL, NULL, 0}}, 0);
                return NULL;
            }
            hdr_slab **tail[2];
            for (int q = 0; q < 2; q++) {
                tail[q] = &pair[q].first;
                while (*tail[q]) tail[q] = &(*tail[q])->next;
            }
            *tail[p] = a;
            *tail[1 - p] = b;
            next = a;
        }
        l->cur = next;
        l->used = 0;
    }
    return &l->cur->slot[l->used++];
}

/* Calls f on every slot handed out from l. */
static void slots_each(hdr_list *l, void (*f)(ad_tensor *))
{
    if (!l->cur) return; /* nothing handed out since the last rewind */
    for (hdr_slab *s = l->first; s; s = s->next) {
        size_t n = s == l->cur ? l->used : HDR_SLOTS;
        for (size_t i = 0; i < n; i++) f(&s->slot[i]);
        if (s == l->cur) break;
    }
}

/* The list pair new headers come from, and which of the two is in use. */
static hdr_list *hdr_pair(ad_tape *t, int *p)
{
    *p = (int)((t->frozen ? t->nreplays : t->nresets) & 1);
    return t->frozen ? t->post : t->hdr;
}

/* At a replay: every leaf of the recording whose gradient lives on t
 * loses it (the rewind gave back what was made after the freeze, and the
 * recording's own is the previous run's), whether or not a recorded op
 * reads the leaf. */
static void forget_leaf_grad(ad_tensor *x)
{
    /* (a tape leaf's gradient lives on its tape) */
    if (x->magic == AD_TENSOR_MAGIC && !x->node && x->grad) ad__leaf_grad_forget(x);
}

void ad__tape_forget_leaf_grads(ad_tape *t)
{
    /* the recording's tensors, and the carried ones (ad_detach) of this
     * step and the last */
    slots_each(&t->hdr[t->nresets & 1], forget_leaf_grad);
    for (int p = 0; p < 2; p++) slots_each(&t->carry[p], forget_leaf_grad);
}

ad_tensor *ad__tape_header(ad_tape *tape)
{
    int p;
    hdr_list *pair = hdr_pair(tape, &p);
    ad_tensor *t = slot_take(pair, p);
    if (t) {
        memset(t, 0, sizeof *t);
        t->stamp = tape->gen;
    }
    return t;
}

/* At a freeze and at each replay: the other list of post, from its start
 * (never the list of the last run of frozen tensors, which a handle kept
 * across one replay, or one reset and the next freeze, points into). */
void ad__hdr_next_post(ad_tape *t)
{
    hdr_list *l = &t->post[++t->nreplays & 1];
    l->cur = NULL;
    l->used = 0;
}

/* ---- segments (ad_checkpoint) -------------------------------------------------- */

void ad__segment_begin(ad_tape *t, ad__segment *m)
{
    int p;
    const hdr_list *h = &hdr_pair(t, &p)[p], *c = &t->carry[t->nresets & 1];
    m->mark = (tape_mark){ad__arena_mark(&t->arena), t->nnodes, t->ntensors, t->held, t->fixups,
                          h->cur, h->used};
    m->carry_cur = c->cur;
    m->carry_used = c->used;
}

bool ad__segment_detached(const ad_tape *t, const ad__segment *m)
{
    const hdr_list *c = &t->carry[t->nresets & 1];
    return c->cur != m->carry_cur || c->used != m->carry_used;
}

void ad__segment_kill(ad_tape *t, const ad__segment *m)
{
    int p;
    hdr_list *l = &hdr_pair(t, &p)[p];
    if (!l->cur) return;
    hdr_slab *s = m->mark.hdr_cur ? m->mark.hdr_cur : l->first;
    size_t i = m->mark.hdr_cur ? m->mark.hdr_used : 0;
    for (;;) {
        size_t end = s == l->cur ? l->used : HDR_SLOTS;
        for (; i < end; i++) {
            s->slot[i].segment_freed = true;
            s->slot[i].stamp = 0;
        }
        if (s == l->cur) break;
        s = s->next;
        i = 0;
    }
}

void ad__segment_rewind(ad_tape *t, const ad__segment *m)
{
    ad__tape_release_after(t, m->mark.held, m->mark.fixups);
    t->nnodes = m->mark.nnodes;
    t->ntensors = m->mark.ntensors;
    ad__arena_rewind(&t->arena, m->mark.arena);
}

bool ad__tape_alive(const ad_tape *tape) { return tape && tape->magic == AD_TAPE_MAGIC; }

int ad__check_tape(const char *fn, const ad_tape *tape)
{
    if (!tape) return ad__err(fn, "tape is NULL");
    if (tape->magic == AD_DEAD_TAPE_MAGIC)
        return ad__errc(AD_ERR_STALE, fn, "the tape was freed (ad_tape_free)");
    if (tape->magic != AD_TAPE_MAGIC) return ad__err(fn, "not a tape");
    return 0;
}

const char *ad__handle_problem(const ad_tensor *t)
{
    if (t->magic != AD_TENSOR_MAGIC) return "is not a live tensor (freed, or never made)";
    const ad_tape *tp = t->tape;
    /* A released tensor is still read by the backward rules of the ops
     * that hold it; only its owner's later uses are errors. */
    if (!tp) return t->released && !in_backward ? "was freed with ad_tensor_free" : NULL;
    if (t->stamp == tp->gen) return NULL;
    if (t->segment_freed)
        return "was made inside a function run by ad_checkpoint, whose intermediate tensors "
               "are freed when it returns; make it one of the function's outputs to use it "
               "outside";
    if (tp->magic != AD_TAPE_MAGIC)
        return "belongs to a tape that was freed (ad_tape_free); copy it to a persistent "
               "tensor (ad_copy(NULL, t)) to keep it past its tape";
    if (t->carried) {
        if (t->stamp >= tp->prev_floor) return NULL;
        return "was detached two or more ad_tape_reset calls ago: an ad_detach result "
               "survives one reset; detach it again each step to carry it further";
    }
    if (tp->frozen && t->stamp >= tp->floor && t->stamp <= tp->mark_gen) return NULL;
    if (t->stamp >= tp->floor)
        return "was made after ad_tape_freeze and freed by the ad_tape_replay since; "
               "take it again after the replay";
    return "was recorded before ad_tape_reset; detach it (ad_detach) or copy it to a "
           "persistent tensor (ad_copy(NULL, t)) to keep it across steps";
}

/* Heap storage whose last reference went: its memory goes back to whoever
 * gave it (ad_from_blob's release) or to the allocator. */
static void storage_free(ad_storage *s)
{
    if (!s->borrowed)
        ad__free(s->block);
    else if (s->release)
        s->release(s->data, s->release_ctx);
    ad__free(s);
}

/* Frees a persistent tensor whose last reference is gone. */
void ad__tensor_destroy(ad_tensor *t)
{
    ad__leaf_grad_destroy(t);
    ad_storage *s = t->storage;
    if (s && !s->in_arena && --s->refs == 0) storage_free(s);
    ad__free(t->label);
    t->magic = AD_DEAD_MAGIC;
    ad__free(t);
}

void ad__tensor_unref(ad_tensor *t)
{
    if (atomic_fetch_sub(&t->hrefs, 1) == 1) ad__tensor_destroy(t);
}

static void drop_storage_ref(ad_storage *s)
{
    if (s && !s->in_arena && --s->refs == 0) storage_free(s);
}

/* A carried tensor whose second step ends: its storage reference goes.
 * The header stays as it is until the slot is reused, so its stamp still
 * tells a late use what happened. */
static void carry_expire(ad_tensor *t)
{
    if (t->magic == AD_TENSOR_MAGIC && t->carried && t->storage) {
        drop_storage_ref(t->storage);
        t->storage = NULL;
    }
}

/* A carried tensor made this step survives the reset: values on the arena
 * move to heap storage of their own (contiguous), and what lived on the
 * arena with it (gradient, label) is dropped. */
static void carry_keep(ad_tensor *t)
{
    if (t->magic != AD_TENSOR_MAGIC || !t->carried) return;
    ad__leaf_grad_forget(t);
    t->adj = NULL;
    t->adj_owned = false;
    t->label = NULL;
    if (!t->storage->in_arena) return;
    size_t nbytes = (size_t)ad__numel(t->ndim, t->shape) * ad_dtype_size(t->dtype);
    ad_storage *s = ad__storage_alloc(nbytes);
    if (!s) {
        /* Out of memory at reset: the tensor is lost, and says so when used
         * (stale), rather than reading the next step's memory. */
        t->carried = false;
        return;
    }
    ad_tensor dst = *t;
    dst.storage = s;
    dst.offset = 0;
    ad__contig_strides(dst.ndim, dst.shape, dst.strides);
    ad__copy_same(&dst, t);
    t->storage = s;
    t->offset = 0;
    memcpy(t->strides, dst.strides, sizeof t->strides);
}

/* ---- the tape ----------------------------------------------------------------- */

ad_tape *ad_tape_new(void)
{
    pool_acquire();
    ad_tape *t = tape_pool_n > TAPE_QUARANTINE ? tape_pool : NULL;
    if (t) {
        tape_pool = t->pool_next;
        if (!tape_pool) tape_pool_tail = NULL;
        tape_pool_n--;
    }
    pool_release();
    if (!t) t = ad__malloc(sizeof *t);
    if (!t) {
        ad__err("ad_tape_new", "out of memory");
        return NULL;
    }
    memset(t, 0, sizeof *t);
    t->magic = AD_TAPE_MAGIC;
    t->gen = t->floor = t->prev_floor = ad__next_gen();
    return t;
}

void ad__tape_release_after(ad_tape *t, held *held_stop, grad_fixup *fixups_stop)
{
    ad__leaf_grad_release(t, fixups_stop);
    for (held *h = t->held; h != held_stop; h = h->next) {
        if (h->tensor) ad__tensor_unref(h->tensor);
        else drop_storage_ref(h->storage);
    }
    t->held = held_stop;
}

/* Everything reset and free have in common. */
static void release(ad_tape *t)
{
    ad__tape_release_after(t, NULL, NULL);
    ad__scalar_reset(t);
    ad__replay_release_copies(t);
}

int ad_tape_reset(ad_tape *t)
{
    if (ad__check_tape("ad_tape_reset", t)) return -1;
    /* Tensors detached this step move off the arena before it is reused;
     * those detached the step before expire. */
    slots_each(&t->carry[t->nresets & 1], carry_keep);
    release(t);
    t->nresets++;
    int p = (int)(t->nresets & 1);
    slots_each(&t->carry[p], carry_expire);
    t->carry[p].cur = NULL;
    t->carry[p].used = 0;
    t->hdr[p].cur = NULL;
    t->hdr[p].used = 0;
    t->prev_floor = t->floor;
    t->gen = t->floor = ad__next_gen();
    t->frozen = false;
    t->backward_recorded = false;
    t->replay_failed_at = NULL;
    ad__arena_reset(&t->arena);
    ad__arena_clear_peak(&t->arena);
    t->nnodes = 0;
    t->ntensors = 0;
    return 0;
}

void ad_tape_free(ad_tape *t)
{
    if (!t || t->magic != AD_TAPE_MAGIC) return; /* NULL, or freed already */
    release(t);
    ad__scalar_free(t);
    for (int p = 0; p < 2; p++) slots_each(&t->carry[p], carry_expire);
    ad__arena_free(&t->arena);
    ad__free(t->nodes);
    ad__free(t->copies);
    if (active_tape == t) active_tape = NULL;
    /* The structure stays readable, as a tombstone, for handles that
     * outlive the tape (see "handles"); its slabs go back to the pool. */
    slabs_put(t->hdr, (int)(t->nresets & 1));
    slabs_put(t->post, (int)(t->nreplays & 1));
    slabs_put(t->carry, (int)(t->nresets & 1));
    memset(t, 0, sizeof *t);
    t->magic = AD_DEAD_TAPE_MAGIC;
    ad__alloc_set_cache(pools_release);
    pool_acquire();
    t->pool_next = NULL;
    if (tape_pool_tail) tape_pool_tail->pool_next = t;
    else tape_pool = t;
    tape_pool_tail = t;
    tape_pool_n++;
    pool_release();
}

ad_tape *ad_tape_activate(ad_tape *tape)
{
    ad_tape *prev = active_tape;
    if (tape && ad__check_tape("ad_tape_activate", tape)) tape = NULL; /* a freed tape */
    active_tape = tape;
    return prev;
}

ad_tape *ad_tape_active(void) { return active_tape; }

int ad_tape_get_stats(const ad_tape *t, ad_tape_stats *s)
{
    if (!t || !s) return ad__err("ad_tape_get_stats", "tape or stats is NULL");
    if (ad__check_tape("ad_tape_get_stats", t)) return -1;
    s->nodes = t->nnodes;
    s->tensors = t->ntensors;
    s->arena_used = t->arena.used;
    s->arena_reserved = t->arena.reserved;
    s->arena_chunks = t->arena.nchunks;
    s->arena_peak = ad__arena_peak(&t->arena);
    return 0;
}

bool ad_grad_enabled(void) { return !grad_disabled; }

bool ad_set_grad_enabled(bool on)
{
    bool prev = !grad_disabled;
    grad_disabled = !on;
    return prev;
}

/* ---- leaves, grads, labels -------------------------------------------------------- */

int ad_set_requires_grad(ad_tensor *t, bool on)
{
    if (ad__check_arg("ad_set_requires_grad", "t", t, false)) return -1;
    if (t->node)
        return ad__err("ad_set_requires_grad", "tensor is the result of a recorded op "
                                               "(%s), not a leaf", t->node->op->name);
    if (on && !ad__is_float(t->dtype))
        return ad__err("ad_set_requires_grad", "only float32 and float64 tensors can "
                                               "require grad, got %s", ad_dtype_name(t->dtype));
    t->requires_grad = on;
    return 0;
}

ad_tensor *ad_leaf(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape,
                   const void *data)
{
    if (!ad__is_float(dtype))
        return ad__err("ad_leaf", "only float32 and float64 tensors can require grad, got %s",
                       ad_dtype_name(dtype)), NULL;
    if (!data) return ad__err("ad_leaf", "data is NULL"), NULL;
    ad_tensor *t = ad__alloc("ad_leaf", tape, dtype, ndim, shape);
    if (!t) return NULL;
    memcpy(t->storage->data, data, t->storage->nbytes);
    t->requires_grad = true; /* a fresh tensor is a leaf of a floating dtype */
    return t;
}

bool ad_requires_grad(const ad_tensor *t)
{
    return t && !ad__handle_problem(t) && t->requires_grad;
}

bool ad_is_leaf(const ad_tensor *t) { return t && !ad__handle_problem(t) && !t->node; }

ad_tensor *ad_tensor_grad(const ad_tensor *t)
{
    if (ad__check_arg("ad_tensor_grad", "t", t, false)) return NULL;
    return t->grad;
}

ad_tensor *ad_detach(ad_tensor *t)
{
    static const char *fn = "ad_detach";
    if (ad__check_arg(fn, "t", t, false)) return NULL;
    ad_tape *tape = t->tape ? t->tape : active_tape;
    if (!tape) return ad__view(fn, NULL, t, t->ndim, t->shape, t->strides, t->offset);
    /* A carried view: it shares t's storage for the rest of this step, and
     * the next reset moves its values to storage of its own (carry_keep),
     * so it stays valid through the next step - the truncated-BPTT habit
     * h = detach(h) between chunks.  Heap storage is referenced now. */
    ad_tensor *d = slot_take(tape->carry, (int)(tape->nresets & 1));
    if (!d) {
        ad__err(fn, "out of memory");
        return NULL;
    }
    /* On a frozen tape, a view of what was made after the freeze expires
     * with it at the next replay, which rewinds that memory (carried, it
     * read what the arena held next, silently): not carried then, and
     * stamped so that ad__handle_problem says so. */
    bool dies = tape->frozen && t->storage->in_arena &&
                ad__arena_since(&tape->arena, tape->mark.arena, t->storage->data);
    *d = (ad_tensor){.magic = AD_TENSOR_MAGIC, .dtype = t->dtype, .ndim = t->ndim,
                     .offset = t->offset, .storage = t->storage, .tape = tape,
                     .carried = !dies, .stamp = tape->gen};
    memcpy(d->shape, t->shape, sizeof d->shape);
    memcpy(d->strides, t->strides, sizeof d->strides);
    if (!t->storage->in_arena) t->storage->refs++;
    tape->ntensors++;
    return d;
}

int ad_set_label(ad_tensor *t, const char *label)
{
    if (ad__check_arg("ad_set_label", "t", t, false)) return -1;
    if (!label) return ad__err("ad_set_label", "label is NULL");
    char *copy = ad__strdup(t->tape, label);
    if (!copy) return ad__err("ad_set_label", "out of memory");
    if (!t->tape) ad__free(t->label);
    t->label = copy;
    if (t->node) t->node->label = copy;
    return 0;
}

const char *ad_label(const ad_tensor *t)
{
    return t && !ad__handle_problem(t) ? t->label : NULL;
}

/* ---- recording ------------------------------------------------------------------- */

int ad__result_tape(const char *fn, int nin, ad_tensor *const *in, ad_tape **out)
{
    ad_tape *t = NULL;
    bool rg = false;
    for (int i = 0; i < nin; i++) {
        if (in[i]->tape) {
            if (t && t != in[i]->tape)
                return ad__err(fn, "inputs belong to different tapes");
            t = in[i]->tape;
        }
        rg |= in[i]->requires_grad;
    }
    if (!t) t = active_tape;
    if (!t && rg && !grad_disabled)
        return ad__err(fn, "an input requires grad but no tape is active to record on "
                           "(see ad_tape_activate)");
    *out = t;
    return 0;
}

int ad_scope_begin(ad_scope *s, const char *fn, int n, ad_tensor *const *in, bool needs_grad)
{
    if (!fn) fn = "ad_scope_begin";
    if (!s) return ad__err(fn, "argument 's' is NULL");
    if (n < 0 || (n > 0 && !in)) return ad__err(fn, "inputs is NULL or n (%d) is negative", n);
    ad_tape *t = NULL;
    bool rg = needs_grad;
    for (int i = 0; i < n; i++) {
        if (!in[i]) continue;
        char what[24];
        snprintf(what, sizeof what, "inputs[%d]", i);
        if (ad__check_arg(fn, what, in[i], false)) return -1;
        if (in[i]->tape) {
            if (t && t != in[i]->tape) return ad__err(fn, "inputs belong to different tapes");
            t = in[i]->tape;
        }
        rg |= in[i]->requires_grad;
    }
    if (!t) t = active_tape;
    if (!t && rg && !grad_disabled)
        return ad__err(fn, "no tape to record on: gradients are needed (an input or parameter "
                           "requires grad) but no tape is active to record on; activate a tape "
                           "(ad_tape_activate) for training, or turn grad mode off "
                           "(ad_set_grad_enabled(false)) for inference");
    s->scratch = NULL;
    if (!t && !(t = s->scratch = ad_tape_new()))
        return ad__err(fn, "out of memory for a scratch tape");
    s->tape = t;
    s->prev = ad_tape_activate(t);
    return 0;
}

ad_tensor *ad_scope_end(ad_scope *s, ad_tensor *r)
{
    if (!s) {
        ad__err("ad_scope_end", "argument 's' is NULL");
        return NULL;
    }
    if (s->scratch && r) r = ad__copy(NULL, r);
    ad_tape_activate(s->prev);
    ad_tape_free(s->scratch); /* NULL is ignored */
    s->scratch = NULL;
    return r;
}

bool ad__anomaly_on(void) { return anomaly; }
bool ad_anomaly_mode(void) { return anomaly; }

bool ad_set_anomaly_mode(bool on)
{
    bool prev = anomaly;
    anomaly = on;
    return prev;
}

const char *ad_set_scope_label(const char *label)
{
    const char *prev = scope_label;
    scope_label = label;
    return prev;
}

int ad__check_finite(const char *fn, const ad_tensor *t, int64_t *where)
{
    (void)fn;
    if (!ad__is_float(t->dtype)) return 0;
    int64_t n = ad__numel(t->ndim, t->shape), idx[AD_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {
        if (!isfinite(ad__ld(t, ad__offset_of(t, idx)))) {
            *where = k;
            return -1;
        }
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == t->shape[d]; d--) idx[d] = 0;
    }
    return 0;
}

/* "x: [3] float64, y: [3] float64" for anomaly messages. */
static void describe_inputs(int nin, ad_tensor *const *in, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < nin && len + 1 < size; i++) {
        len += (size_t)snprintf(buf + len, size - len, "%sinput %d: %s", i ? ", " : "", i,
                                ad__desc(in[i]));
    }
}

int ad__anomaly_error(const char *what, const ad_op *op, const ad_tensor *bad, int64_t where,
                         int nin, ad_tensor *const *in, const char *label)
{
    char fn[96], ins[400];
    snprintf(fn, sizeof fn, "ad_%s", op->name);
    int64_t idx[AD_MAX_DIMS];
    for (int d = bad->ndim - 1; d >= 0; d--) {
        idx[d] = bad->shape[d] ? where % bad->shape[d] : 0;
        where = bad->shape[d] ? where / bad->shape[d] : 0;
    }
    describe_inputs(nin, in, ins, sizeof ins);
    int64_t flat = 0;
    for (int d = 0; d < bad->ndim; d++) flat = flat * bad->shape[d] + idx[d];
    (void)flat;
    double v = ad__ld(bad, ad__offset_of(bad, idx));
    return ad__err(fn, "anomaly: %s %s at element %s of a %s result from finite inputs "
                       "(%s)%s%s%s",
                   what, isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"), ad__dims_str(bad->ndim, idx),
                   ad__desc(bad), ins, label ? " in '" : "", label ? label : "",
                   label ? "'" : "");
}

/* Anomaly check of a forward result: only the op that first turns finite
 * inputs into a non-finite output is blamed. */
int ad__check_forward(const ad_op *op, ad_tensor *out, int nin, ad_tensor *const *in)
{
    int64_t where, dummy;
    if (in_backward || ad__check_finite(op->name, out, &where) == 0) return 0;
    for (int i = 0; i < nin; i++)
        if (ad__check_finite(op->name, in[i], &dummy)) return 0;
    return ad__anomaly_error("produced", op, out, where, nin, in, scope_label);
}

/* Whether what happens now on t is recorded for replay (ad__record's
 * keep), outside code that its node re-runs as a whole (replay_guard.c). */
bool ad__recording_for_replay(const ad_tape *t)
{
    return t && t->magic == AD_TAPE_MAGIC && t->replayable && !t->frozen && !in_backward &&
           !record_off && opaque_depth == 0;
}

void ad__replay_opaque(int delta) { opaque_depth += delta; }

uint64_t ad__backward_stamp(const ad_tape *t)
{
    return in_backward && t->replayable && !t->frozen ? t->gen : 0;
}

void ad__tape_drop_storage(ad_storage *s) { drop_storage_ref(s); }

int ad__record(const ad_op *op, ad_tensor *out, int nin, ad_tensor *const *in, ad_node **node)
{
    *node = NULL;
    if (anomaly && ad__check_forward(op, out, nin, in)) return -1;
    ad_tape *t = out->tape;
    if (!t) return 0;
    /* A replayable tape keeps every op until it is frozen, so replay
     * recomputes masks and preprocessing too, and what a program computes
     * with grad mode off (a target, a statistic: for replay only, however
     * it was recorded); not a backward rule's ops, nor a custom op's
     * forward (its node replays it).  After the freeze, nodes are recorded
     * only for gradients and live until the next replay rewinds. */
    bool for_replay = t->replayable && !t->frozen && !in_backward && !record_off;
    /* (ad__record_all: kept too, but for ad_checkpoint's look at it only) */
    bool keep = for_replay || (record_all > 0 && !in_backward && !record_off);
    if (grad_disabled && !keep) return 0;
    for (int i = 0; for_replay && opaque_depth == 0 && i < nin; i++)
        if (in[i]->storage->copied_gen == t->gen)
            return ad__errc(AD_ERR_STATE, op->name,
                            "input %d, %s, holds a copy (ad_copy, ad_copy_into) of a value that "
                            "this replayable tape's recording computes: a replay recomputes ops "
                            "only and would keep the recording's values in it; copy with an op "
                            "instead (ad_contiguous, ad_detach)", i, ad__desc(in[i]));
    bool any = false;
    for (int i = 0; i < nin; i++) any |= in[i]->requires_grad;
    any = any && op->backward && !grad_disabled;
    if (!any && !keep) return 0;
    for (int i = 0; keep && i < nin; i++)
        if (for_replay && in[i]->storage->backward_gen == t->gen) t->backward_recorded = true;
    if (t->nnodes == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        ad_node **nodes = ad__realloc(t->nodes, cap * sizeof *nodes);
        if (!nodes) return ad__err(op->name, "out of memory recording the op");
        t->nodes = nodes;
        t->cap = cap;
    }
    /* One arena block: the node, the op's parameters, the inputs and
     * their versions (see struct ad_node). */
    size_t psz = (op->params_size + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
    size_t insz = (size_t)nin * sizeof(ad_tensor *);
    unsigned char *block = ad__arena_alloc(t, AD_NODE_HEAD + psz + insz +
                                                  (size_t)(nin + 1) * sizeof(uint32_t));
    if (!block) return ad__err(op->name, "out of memory recording the op");
    memset(block, 0, AD_NODE_HEAD + psz);
    ad_node *n = (ad_node *)(void *)block;
    ad_tensor **ins = (ad_tensor **)(void *)(block + AD_NODE_HEAD + psz);
    n->ver = (uint32_t *)(void *)((unsigned char *)ins + insz);
    for (int i = 0; i < nin; i++) {
        ins[i] = in[i];
        n->ver[i] = in[i]->storage->version;
        /* A persistent input stays alive until reset even if its owner
         * frees it before backward (see "handles"). */
        if (!in[i]->tape && ad__tape_hold_tensor(t, in[i]))
            return ad__err(op->name, "out of memory recording the op");
    }
    n->ver[nin] = out->storage->version;
    n->op = op;
    n->out = out;
    n->in = ins;
    n->nin = nin;
    n->seq = t->nnodes;
    n->label = scope_label;
    t->nodes[t->nnodes++] = n;
    n->no_grad = grad_disabled;
    if (for_replay) { /* an op's own output, not a view of an input */
        bool view = false;
        for (int i = 0; i < nin; i++) view |= in[i]->storage == out->storage;
        if (!view) out->storage->computed_gen = t->gen;
    }
    if (any) {
        out->node = n;
        out->requires_grad = true;
    } else {
        /* Replay-only node: its output stays a leaf for gradients. */
        n->freed = false;
    }
    *node = n;
    if (trace_fn && !in_backward) {
        ad_trace_event ev = {AD_TRACE_FORWARD, n->seq, op->name, op->formula, nin, n->in, out,
                             NULL, NULL};
        trace_fn(&ev, trace_ctx);
    }
    return 0;
}

ad_tensor *ad__result(const char *fn, int nin, ad_tensor *const *in, ad_dtype dtype, int ndim,
                      const int64_t *shape)
{
    ad_tape *tape = NULL;
    if (ad__result_tape(fn, nin, in, &tape)) return NULL;
    return ad__alloc(fn, tape, dtype, ndim, shape);
}

ad_tensor *ad__finish(ad_tensor *out, int failed, const ad_op *op, int nin,
                      ad_tensor *const *in, const void *params, ad_node **node)
{
    ad_node *n = NULL;
    if (node) *node = NULL;
    if (!out) return NULL;
    if (failed || ad__record(op, out, nin, in, &n)) {
        if (!out->tape) ad_tensor_free(out);
        return NULL;
    }
    if (n && params) memcpy(ad__params(n), params, op->params_size);
    if (node) *node = n;
    return out;
}

/* ---- inspection and tracing ----------------------------------------------------------- */

size_t ad_tape_num_nodes(const ad_tape *t) { return t ? t->nnodes : 0; }

int ad_tape_node_info(const ad_tape *t, size_t i, ad_node_info *info)
{
    if (!t || !info) return ad__err("ad_tape_node_info", "tape or info is NULL");
    if (i >= t->nnodes)
        return ad__err("ad_tape_node_info", "node %zu out of range (the tape has %zu)", i,
                       t->nnodes);
    const ad_node *n = t->nodes[i];
    *info = (ad_node_info){n->op->name, n->op->formula, n->label, n->nin, n->in, n->out,
                           n->out->node == n};
    return 0;
}

long ad_tensor_node_index(const ad_tensor *t)
{
    if (ad__check_arg("ad_tensor_node_index", "t", t, false)) return -1;
    return t->node ? (long)t->node->seq : -1;
}

ad_trace_fn ad_set_trace(ad_trace_fn fn, void *ctx)
{
    ad_trace_fn prev = trace_fn;
    trace_fn = fn;
    trace_ctx = ctx;
    return prev;
}

void ad__record_all(int delta) { record_all += delta; }

bool ad__set_record_off(bool on)
{
    bool prev = record_off;
    record_off = on;
    return prev;
}

bool ad__set_in_backward(bool on)
{
    bool prev = in_backward;
    in_backward = on;
    return prev;
}

bool ad__tracing(void) { return trace_fn != NULL; }

void ad__emit_trace(const ad_trace_event *ev)
{
    if (trace_fn) trace_fn(ev, trace_ctx);
}

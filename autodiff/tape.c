/* autodiff/tape.c - the arena, the tape, recording and the backward pass.
 *
 * The backward pass is reverse-mode AD in its plainest form.  Recording
 * appends nodes in execution order, so the order of the tape is already a
 * topological order; walking it backwards visits every node after all the
 * nodes that consumed its output.  Each node's rule turns the adjoint of its
 * output (g = dL/dy) into adjoints of its inputs (dL/dx = g * dy/dx, the
 * chain rule), which are summed when an input is used more than once. */
#include <stdlib.h>

#include "internal.h"

/* ---- allocation ------------------------------------------------------------ */

void *ad__malloc(size_t n) { return malloc(n); }
void *ad__calloc(size_t n, size_t size) { return calloc(n, size); }
void *ad__realloc(void *p, size_t n) { return realloc(p, n); }
void ad__free(void *p) { free(p); }

/* Chunks are kept in creation order.  After a reset the same sequence of
 * allocations lands in the same places, so a loop that records the same
 * computation every step allocates from the system only in its first step. */
typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    unsigned char *base;
} chunk;

#define ARENA_ALIGN 64
#define ARENA_MIN_CHUNK ((size_t)256 << 10)

typedef struct held {
    struct held *next;
    ad_storage *storage;
} held;

typedef struct grad_fixup {
    struct grad_fixup *next;
    ad_tensor *leaf;     /* persistent leaf whose grad now lives on this tape */
    ad_tensor *old_grad; /* its persistent grad before, freed at reset */
} grad_fixup;

struct ad_tape {
    chunk *first, *cur, *last;
    size_t reserved, used, nchunks;
    ad_node **nodes;
    size_t nnodes, cap;
    size_t ntensors;
    unsigned epoch;
    held *held;
    grad_fixup *fixups;
    struct ad_scalar_tape *scalars;
};

static _Thread_local ad_tape *active_tape;
static _Thread_local bool grad_disabled;

struct ad_scalar_tape **ad__scalar_slot(ad_tape *tape) { return &tape->scalars; }

void *ad__arena_alloc(ad_tape *t, size_t n)
{
    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    while (t->cur && t->cur->used + n > t->cur->size) t->cur = t->cur->next;
    if (!t->cur) {
        size_t size = t->last ? t->last->size * 2 : ARENA_MIN_CHUNK;
        if (size > ((size_t)64 << 20)) size = (size_t)64 << 20;
        if (size < n) size = n;
        chunk *c = ad__malloc(sizeof *c + size + ARENA_ALIGN);
        if (!c) return NULL;
        c->next = NULL;
        c->size = size;
        c->used = 0;
        uintptr_t p = (uintptr_t)(c + 1);
        c->base = (unsigned char *)((p + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1));
        if (t->last) t->last->next = c;
        else t->first = c;
        t->last = c;
        t->cur = c;
        t->reserved += size;
        t->nchunks++;
    }
    void *p = t->cur->base + t->cur->used;
    t->cur->used += n;
    t->used += n;
    return p;
}

char *ad__strdup(ad_tape *tape, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = tape ? ad__arena_alloc(tape, n) : ad__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void ad__tape_note_tensor(ad_tape *tape) { tape->ntensors++; }

int ad__tape_hold(ad_tape *tape, ad_storage *s)
{
    held *h = ad__arena_alloc(tape, sizeof *h);
    if (!h) return -1;
    h->storage = s;
    h->next = tape->held;
    tape->held = h;
    s->refs++;
    return 0;
}

/* ---- the tape ----------------------------------------------------------------- */

ad_tape *ad_tape_new(void)
{
    ad_tape *t = ad__calloc(1, sizeof *t);
    if (!t) ad__err("ad_tape_new", "out of memory");
    return t;
}

/* Everything reset and free have in common: give persistent leaves back a
 * persistent gradient and drop the references the tape held. */
static void release(ad_tape *t)
{
    for (grad_fixup *f = t->fixups; f; f = f->next) {
        ad_tensor *leaf = f->leaf;
        if (leaf->magic == AD_TENSOR_MAGIC && leaf->grad && leaf->grad->tape == t) {
            ad_tensor *keep = ad_copy(NULL, leaf->grad);
            leaf->grad = keep; /* NULL if out of memory: the gradient is lost, not corrupt */
            leaf->owns_grad = keep != NULL;
        }
        ad_tensor_free(f->old_grad);
    }
    t->fixups = NULL;
    for (held *h = t->held; h; h = h->next) {
        if (--h->storage->refs == 0) {
            ad__free(h->storage->data);
            ad__free(h->storage);
        }
    }
    t->held = NULL;
    ad__scalar_reset(t);
}

int ad_tape_reset(ad_tape *t)
{
    if (!t) return ad__err("ad_tape_reset", "tape is NULL");
    release(t);
    for (chunk *c = t->first; c; c = c->next) c->used = 0;
    t->cur = t->first;
    t->used = 0;
    t->nnodes = 0;
    t->ntensors = 0;
    return 0;
}

void ad_tape_free(ad_tape *t)
{
    if (!t) return;
    release(t);
    ad__scalar_free(t);
    for (chunk *c = t->first, *n; c; c = n) {
        n = c->next;
        ad__free(c);
    }
    ad__free(t->nodes);
    if (active_tape == t) active_tape = NULL;
    ad__free(t);
}

ad_tape *ad_tape_activate(ad_tape *tape)
{
    ad_tape *prev = active_tape;
    active_tape = tape;
    return prev;
}

ad_tape *ad_tape_active(void) { return active_tape; }

int ad_tape_get_stats(const ad_tape *t, ad_tape_stats *s)
{
    if (!t || !s) return ad__err("ad_tape_get_stats", "tape or stats is NULL");
    s->nodes = t->nnodes;
    s->tensors = t->ntensors;
    s->arena_used = t->used;
    s->arena_reserved = t->reserved;
    s->arena_chunks = t->nchunks;
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

bool ad_requires_grad(const ad_tensor *t)
{
    return t && t->magic == AD_TENSOR_MAGIC && t->requires_grad;
}

bool ad_is_leaf(const ad_tensor *t) { return t && t->magic == AD_TENSOR_MAGIC && !t->node; }

ad_tensor *ad_tensor_grad(const ad_tensor *t)
{
    if (ad__check_arg("ad_tensor_grad", "t", t, false)) return NULL;
    return t->grad;
}

int ad_zero_grad(ad_tensor *t)
{
    if (ad__check_arg("ad_zero_grad", "t", t, false)) return -1;
    if (!t->grad) return 0;
    /* A gradient buffer the library allocated is zeroed in place, so a
     * training loop does not reallocate it every step. */
    if (t->owns_grad) return ad_fill(t->grad, 0.0);
    t->grad = NULL; /* a recorded gradient lives on its tape, which frees it */
    return 0;
}

ad_tensor *ad_detach(ad_tensor *t)
{
    ad_tape *tape;
    if (ad__check_arg("ad_detach", "t", t, false)) return NULL;
    tape = t->tape ? t->tape : active_tape;
    return ad__view("ad_detach", tape, t, t->ndim, t->shape, t->strides, t->offset);
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
    return t && t->magic == AD_TENSOR_MAGIC ? t->label : NULL;
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

int ad__record(const ad_op *op, ad_tensor *out, int nin, ad_tensor *const *in, ad_node **node)
{
    *node = NULL;
    ad_tape *t = out->tape;
    if (grad_disabled || !t) return 0;
    bool any = false;
    for (int i = 0; i < nin; i++) any |= in[i]->requires_grad;
    if (!any) return 0;
    if (t->nnodes == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        ad_node **nodes = ad__realloc(t->nodes, cap * sizeof *nodes);
        if (!nodes) return ad__err(op->name, "out of memory recording the op");
        t->nodes = nodes;
        t->cap = cap;
    }
    ad_node *n = ad__arena_alloc(t, sizeof *n);
    ad_tensor **ins = n ? ad__arena_alloc(t, (size_t)(nin ? nin : 1) * sizeof *ins) : NULL;
    if (!ins) return ad__err(op->name, "out of memory recording the op");
    memset(n, 0, sizeof *n);
    for (int i = 0; i < nin; i++) ins[i] = in[i];
    n->op = op;
    n->out = out;
    n->in = ins;
    n->nin = nin;
    n->seq = t->nnodes;
    t->nodes[t->nnodes++] = n;
    out->node = n;
    out->requires_grad = true;
    *node = n;
    return 0;
}

/* ---- backward ------------------------------------------------------------------------ */

static const char *BW = "ad_backward";

static double f_add(double a, double b) { return a + b; }

static int add_fixup(ad_tape *t, ad_tensor *leaf, ad_tensor *old)
{
    grad_fixup *f = ad__arena_alloc(t, sizeof *f);
    if (!f) return ad__err(BW, "out of memory");
    f->leaf = leaf;
    f->old_grad = old;
    f->next = t->fixups;
    t->fixups = f;
    return 0;
}

static int accumulate_leaf(ad_tape *t, ad_tensor *leaf, ad_tensor *g, bool create)
{
    ad_tensor *old = leaf->grad;
    if (create) {
        ad_tensor *sum = old ? ad_add(old, g) : g;
        if (!sum) return -1;
        if (!leaf->tape && (!old || !old->tape) && add_fixup(t, leaf, old)) return -1;
        leaf->grad = sum;
        leaf->owns_grad = false;
        return 0;
    }
    /* Accumulate in place only into a buffer the library made for this
     * leaf; a gradient from AD_CREATE_GRAPH may be shared or have ops
     * recorded on it, so it is replaced instead. */
    if (old && leaf->owns_grad) {
        ad__map2(old, old, g, f_add);
        return 0;
    }
    ad_tensor *buf = ad__alloc(BW, leaf->tape, leaf->dtype, leaf->ndim, leaf->shape);
    if (!buf) return -1;
    if (old) ad__map2(buf, old, g, f_add);
    else ad_copy_into(buf, g);
    leaf->grad = buf;
    leaf->owns_grad = true;
    return 0;
}

/* Where a computed gradient goes: with targets (ad_gradients) into the
 * matching slot, without (ad_backward) into leaves' grad. */
typedef struct sink {
    int n;
    ad_tensor *const *targets;
    ad_tensor **grads;
} sink;

static int deliver(ad_tape *t, const sink *s, ad_tensor *x, ad_tensor *g, bool create)
{
    if (!s->targets) return x->node ? 0 : accumulate_leaf(t, x, g, create);
    for (int i = 0; i < s->n; i++) {
        if (s->targets[i] != x) continue;
        ad_tensor *sum = s->grads[i] ? ad_add(s->grads[i], g) : g;
        if (!sum) return -1;
        s->grads[i] = sum;
    }
    return 0;
}

static int run_backward(const char *fn, ad_tensor *out, const ad_tensor *gout, unsigned flags,
                        const sink *sk)
{
    if (ad__check_arg(fn, "out", out, true)) return -1;
    if (!out->requires_grad)
        return ad__err(fn, "tensor does not require grad: nothing recorded leads to it");
    if (gout) {
        if (ad__check_arg(fn, "grad_output", gout, true)) return -1;
        if (!ad__same_shape(out, gout) || gout->dtype != out->dtype) {
            char a[160], b[160];
            ad__fmt_shape(out->ndim, out->shape, a, sizeof a);
            ad__fmt_shape(gout->ndim, gout->shape, b, sizeof b);
            return ad__err(fn, "grad_output %s %s does not match output %s %s", b,
                           ad_dtype_name(gout->dtype), a, ad_dtype_name(out->dtype));
        }
    } else if (ad__numel(out->ndim, out->shape) != 1) {
        char a[160];
        ad__fmt_shape(out->ndim, out->shape, a, sizeof a);
        return ad__err(fn, "grad_output may be NULL only for a one-element output; got %s", a);
    }
    bool create = flags & AD_CREATE_GRAPH;
    bool retain = create || (flags & AD_RETAIN_GRAPH);
    ad_tape *t = out->tape;
    bool prev_mode = ad_set_grad_enabled(create);
    ad_tape *prev_tape = ad_tape_activate(t);
    int rc = -1;
    size_t top = 0;
    unsigned epoch = 0;

    ad_tensor *seed = gout ? (ad_tensor *)gout
                           : ad_full(t, out->dtype, out->ndim, out->shape, 1.0);
    if (!seed) goto done;
    if (deliver(t, sk, out, seed, create)) goto done;
    if (!out->node) { /* a leaf: d(out)/d(out) = 1, and nothing else to do */
        rc = 0;
        goto done;
    }

    /* Mark what out depends on, newest first; a freed node on the way is an
     * error before anything is touched. */
    top = out->node->seq;
    epoch = ++t->epoch;
    out->node->mark = epoch;
    for (size_t i = top + 1; i-- > 0;) {
        ad_node *n = t->nodes[i];
        if (n->mark != epoch) continue;
        if (n->freed) {
            ad__err(fn, "the graph through op '%s' was freed by an earlier backward; pass "
                        "AD_RETAIN_GRAPH to the first backward to run backward twice",
                    n->op->name);
            goto done;
        }
        for (int k = 0; k < n->nin; k++)
            if (n->in[k]->node && n->in[k]->requires_grad) n->in[k]->node->mark = epoch;
    }

    out->adj = seed;
    ad_tensor *small[8], **gin = small;
    for (size_t i = top + 1; i-- > 0;) {
        ad_node *n = t->nodes[i];
        if (n->mark != epoch) continue;
        ad_tensor *g = n->out->adj;
        n->out->adj = NULL;
        if (!g) continue;
        gin = n->nin > 8 ? ad__arena_alloc(t, (size_t)n->nin * sizeof *gin) : small;
        if (!gin) {
            ad__err(fn, "out of memory");
            goto clear;
        }
        for (int k = 0; k < n->nin; k++) gin[k] = NULL;
        if (!n->op->backward) {
            ad__err(fn, "op '%s' is not differentiable", n->op->name);
            goto clear;
        }
        if (n->op->backward(n, g, gin)) goto clear;
        for (int k = 0; k < n->nin; k++) {
            ad_tensor *x = n->in[k];
            if (!ad__needs_grad(n, k)) continue;
            if (!gin[k]) {
                if (!ad__has_error())
                    ad__err(fn, "backward of op '%s' gave no gradient for input %d",
                            n->op->name, k);
                goto clear;
            }
            if (!ad__same_shape(gin[k], x) || gin[k]->dtype != x->dtype) {
                char a[160], b[160];
                ad__fmt_shape(gin[k]->ndim, gin[k]->shape, a, sizeof a);
                ad__fmt_shape(x->ndim, x->shape, b, sizeof b);
                ad__err(fn, "backward of op '%s' gave a %s %s gradient for a %s %s input %d",
                        n->op->name, a, ad_dtype_name(gin[k]->dtype), b,
                        ad_dtype_name(x->dtype), k);
                goto clear;
            }
            if (x->node) {
                ad_tensor *sum = x->adj ? ad_add(x->adj, gin[k]) : gin[k];
                if (!sum) goto clear;
                x->adj = sum;
            }
            if (deliver(t, sk, x, gin[k], create)) goto clear;
        }
        if (!retain) n->freed = true;
    }
    rc = 0;
clear:
    /* After an error, adjoints of nodes not yet reached must not leak into
     * the next backward. */
    for (size_t i = top + 1; i-- > 0;)
        if (t->nodes[i]->mark == epoch) t->nodes[i]->out->adj = NULL;
done:
    ad_tape_activate(prev_tape);
    ad_set_grad_enabled(prev_mode);
    return rc;
}

int ad_backward(ad_tensor *out, const ad_tensor *gout, unsigned flags)
{
    sink s = {0, NULL, NULL};
    return run_backward("ad_backward", out, gout, flags, &s);
}

int ad_gradients(ad_tensor *out, const ad_tensor *gout, int n, ad_tensor *const *inputs,
                 ad_tensor **grads, unsigned flags)
{
    static const char *fn = "ad_gradients";
    if (n < 0 || (n > 0 && (!inputs || !grads)))
        return ad__err(fn, "need n >= 0 inputs and a grads array");
    for (int i = 0; i < n; i++) {
        grads[i] = NULL;
        if (ad__check_arg(fn, "inputs[i]", inputs[i], true)) return -1;
    }
    if (ad__check_arg(fn, "out", out, true)) return -1;
    sink s = {n, inputs, grads};
    if (out->requires_grad && run_backward(fn, out, gout, flags, &s)) return -1;
    if (!out->requires_grad && !out->tape)
        return ad__err(fn, "out does not require grad and has no tape for the zero gradients");
    /* Inputs out does not depend on get zeros, so callers can always use
     * grads[i] without a NULL check. */
    for (int i = 0; i < n; i++)
        if (!grads[i]) {
            grads[i] = ad__alloc(fn, out->tape, inputs[i]->dtype, inputs[i]->ndim, inputs[i]->shape);
            if (!grads[i]) return -1;
            memset(grads[i]->storage->data, 0, grads[i]->storage->nbytes);
        }
    return 0;
}

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

_Thread_local size_t ad__alloc_calls;
_Thread_local long ad__alloc_fail_in;

/* True when this allocation is the one a fault-injection test asked to fail. */
static bool injected_failure(void)
{
    ad__alloc_calls++;
    return ad__alloc_fail_in > 0 && --ad__alloc_fail_in == 0;
}

void *ad__malloc(size_t n) { return injected_failure() ? NULL : malloc(n); }
void *ad__calloc(size_t n, size_t size) { return injected_failure() ? NULL : calloc(n, size); }
void *ad__realloc(void *p, size_t n) { return injected_failure() ? NULL : realloc(p, n); }
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

/* The state ad_tape_freeze records and ad_tape_replay returns to. */
typedef struct tape_mark {
    chunk *chunk;
    size_t chunk_used, used, nnodes, ntensors;
    held *held;
    grad_fixup *fixups;
} tape_mark;

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
    bool replayable, frozen;
    tape_mark mark;
};

static _Thread_local ad_tape *active_tape;
static _Thread_local bool grad_disabled;
static _Thread_local bool anomaly;
static _Thread_local bool in_backward; /* rules' inner ops are checked as a whole */
static _Thread_local const char *scope_label;
static _Thread_local ad_trace_fn trace_fn;
static _Thread_local void *trace_ctx;

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
    t->frozen = false;
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
        char sh[160];
        ad__fmt_shape(in[i]->ndim, in[i]->shape, sh, sizeof sh);
        len += (size_t)snprintf(buf + len, size - len, "%sinput %d: %s %s", i ? ", " : "", i, sh,
                                ad_dtype_name(in[i]->dtype));
    }
}

static int anomaly_error(const char *what, const ad_op *op, const ad_tensor *bad, int64_t where,
                         int nin, ad_tensor *const *in, const char *label)
{
    char fn[96], el[160], sh[160], ins[400];
    snprintf(fn, sizeof fn, "ad_%s", op->name);
    int64_t idx[AD_MAX_DIMS];
    for (int d = bad->ndim - 1; d >= 0; d--) {
        idx[d] = bad->shape[d] ? where % bad->shape[d] : 0;
        where = bad->shape[d] ? where / bad->shape[d] : 0;
    }
    ad__fmt_shape(bad->ndim, idx, el, sizeof el);
    ad__fmt_shape(bad->ndim, bad->shape, sh, sizeof sh);
    describe_inputs(nin, in, ins, sizeof ins);
    int64_t flat = 0;
    for (int d = 0; d < bad->ndim; d++) flat = flat * bad->shape[d] + idx[d];
    (void)flat;
    double v = ad__ld(bad, ad__offset_of(bad, idx));
    return ad__err(fn, "anomaly: %s %s at element %s of a %s %s result from finite inputs "
                       "(%s)%s%s%s",
                   what, isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"), el, sh,
                   ad_dtype_name(bad->dtype), ins, label ? " in '" : "", label ? label : "",
                   label ? "'" : "");
}

/* Anomaly check of a forward result: only the op that first turns finite
 * inputs into a non-finite output is blamed. */
static int check_forward(const ad_op *op, ad_tensor *out, int nin, ad_tensor *const *in)
{
    int64_t where, dummy;
    if (in_backward || ad__check_finite(op->name, out, &where) == 0) return 0;
    for (int i = 0; i < nin; i++)
        if (ad__check_finite(op->name, in[i], &dummy)) return 0;
    return anomaly_error("produced", op, out, where, nin, in, scope_label);
}

int ad__record(const ad_op *op, ad_tensor *out, int nin, ad_tensor *const *in, ad_node **node)
{
    *node = NULL;
    if (anomaly && check_forward(op, out, nin, in)) return -1;
    ad_tape *t = out->tape;
    if (!t || grad_disabled) return 0;
    bool any = false;
    for (int i = 0; i < nin; i++) any |= in[i]->requires_grad;
    any = any && op->backward;
    /* A replayable tape keeps every op until it is frozen, so replay
     * recomputes masks and preprocessing too.  After the freeze, nodes are
     * recorded only for gradients and live until the next replay rewinds. */
    if (!any && !(t->replayable && !t->frozen)) return 0;
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
    n->label = scope_label;
    t->nodes[t->nnodes++] = n;
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
    bool prev_in = in_backward;
    in_backward = true;
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
        if (trace_fn) {
            ad_trace_event ev = {AD_TRACE_BACKWARD, n->seq, n->op->name, n->op->formula, n->nin,
                                 n->in, n->out, g, gin};
            trace_fn(&ev, trace_ctx);
        }
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
            int64_t where, dummy;
            if (anomaly && ad__check_finite(fn, gin[k], &where) &&
                !ad__check_finite(fn, g, &dummy)) {
                bool finite_in = true;
                for (int j = 0; j < n->nin; j++)
                    finite_in &= !ad__check_finite(fn, n->in[j], &dummy);
                if (finite_in) {
                    char what[64];
                    snprintf(what, sizeof what, "backward gave the gradient of input %d", k);
                    anomaly_error(what, n->op, gin[k], where, n->nin, n->in, n->label);
                    goto clear;
                }
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
    in_backward = prev_in;
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

/* ---- replay ------------------------------------------------------------------------- */

int ad_tape_set_replayable(ad_tape *t, bool on)
{
    if (!t) return ad__err("ad_tape_set_replayable", "tape is NULL");
    if (t->frozen) return ad__err("ad_tape_set_replayable", "the tape is already frozen");
    t->replayable = on;
    return 0;
}

int ad_tape_freeze(ad_tape *t)
{
    if (!t) return ad__err("ad_tape_freeze", "tape is NULL");
    if (!t->replayable)
        return ad__err("ad_tape_freeze", "the tape was not recorded as replayable "
                                         "(ad_tape_set_replayable before recording)");
    t->mark = (tape_mark){t->cur, t->cur ? t->cur->used : 0, t->used, t->nnodes, t->ntensors,
                          t->held, t->fixups};
    t->frozen = true;
    return 0;
}

/* Undoes everything after the freeze point: references, gradient fixups,
 * nodes and arena space, exactly as a reset does for the whole tape. */
static void rewind_to_mark(ad_tape *t)
{
    const tape_mark *m = &t->mark;
    for (grad_fixup *f = t->fixups; f != m->fixups; f = f->next) {
        ad_tensor *leaf = f->leaf;
        if (leaf->magic == AD_TENSOR_MAGIC && leaf->grad && leaf->grad->tape == t) {
            leaf->grad = ad_copy(NULL, leaf->grad);
            leaf->owns_grad = leaf->grad != NULL;
        }
        ad_tensor_free(f->old_grad);
    }
    t->fixups = m->fixups;
    for (held *h = t->held; h != m->held; h = h->next)
        if (--h->storage->refs == 0) {
            ad__free(h->storage->data);
            ad__free(h->storage);
        }
    t->held = m->held;
    t->nnodes = m->nnodes;
    t->ntensors = m->ntensors;
    t->used = m->used;
    t->cur = m->chunk ? m->chunk : t->first;
    if (m->chunk) {
        m->chunk->used = m->chunk_used;
        for (chunk *c = m->chunk->next; c; c = c->next) c->used = 0;
    } else {
        for (chunk *c = t->first; c; c = c->next) c->used = 0;
    }
}

int ad_tape_replay(ad_tape *t, int n, ad_tensor *const *leaves, ad_tensor *const *values)
{
    static const char *fn = "ad_tape_replay";
    if (!t) return ad__err(fn, "tape is NULL");
    if (!t->frozen) return ad__err(fn, "the tape is not frozen (ad_tape_freeze after recording)");
    if (n < 0 || (n > 0 && !leaves)) return ad__err(fn, "need n >= 0 leaves");
    for (int i = 0; i < n; i++) {
        if (ad__check_arg(fn, "leaves[i]", leaves[i], false)) return -1;
        if (leaves[i]->node) return ad__err(fn, "input %d is not a leaf", i);
        if (!values || !values[i]) continue;
        if (ad__check_arg(fn, "values[i]", values[i], false)) return -1;
        if (!ad__same_shape(leaves[i], values[i]) || leaves[i]->dtype != values[i]->dtype) {
            char a[160], b[160];
            ad__fmt_shape(leaves[i]->ndim, leaves[i]->shape, a, sizeof a);
            ad__fmt_shape(values[i]->ndim, values[i]->shape, b, sizeof b);
            return ad__err(fn, "input %d was recorded as %s %s, got %s %s", i, a,
                           ad_dtype_name(leaves[i]->dtype), b, ad_dtype_name(values[i]->dtype));
        }
    }
    rewind_to_mark(t);
    for (int i = 0; values && i < n; i++)
        if (values[i] && leaves[i] != values[i] && ad_copy_into(leaves[i], values[i])) return -1;
    int changed = 0;
    ad_tape *prev_tape = ad_tape_activate(t);
    bool prev_mode = ad_set_grad_enabled(false);
    int rc = 0;
    for (size_t i = 0; i < t->nnodes; i++) {
        ad_node *nd = t->nodes[i];
        nd->freed = false;
        for (int k = 0; k < nd->nin; k++) {
            ad_tensor *x = nd->in[k];
            if (!x->node && x->tape == t && x->grad) { /* its grad lived past the mark */
                x->grad = NULL;
                x->owns_grad = false;
            }
        }
        ad_forward_fn fw = nd->op->forward;
        if (!fw) {
            if (nd->out->storage != nd->in[0]->storage)
                rc = ad__err(fn, "op '%s' cannot be replayed", nd->op->name);
            if (rc) break;
            continue;
        }
        int c = fw(nd);
        if (c < 0) {
            rc = -1;
            break;
        }
        changed += c;
        if (anomaly && check_forward(nd->op, nd->out, nd->nin, nd->in)) {
            rc = -1;
            break;
        }
    }
    ad_set_grad_enabled(prev_mode);
    ad_tape_activate(prev_tape);
    return rc ? -1 : changed;
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

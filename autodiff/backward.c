/* autodiff/backward.c - the backward pass.
 *
 * Reverse-mode AD in its plainest form.  Recording appends nodes in
 * execution order, so the order of the tape is already a topological order;
 * walking it backwards visits every node after all the nodes that consumed
 * its output.  Each node's rule turns the adjoint of its output (g = dL/dy)
 * into adjoints of its inputs (dL/dx = g * dy/dx, the chain rule), which are
 * summed when an input is used more than once. */
#include "backward_impl.h"

/* The values n's rule reads must be those the forward used: an in-place
 * write since recording (a new batch loaded into the input, an optimiser
 * step before backward) would make the gradient silently wrong.  Every
 * input and the output are checked, whether or not this op's rule reads
 * them: a recorded value changed in place is wrong for everything computed
 * from it, and the write itself is not on the tape. */
static int check_saved(const char *fn, const ad_node *n)
{
    for (int k = 0; k <= n->nin; k++) {
        bool out = k == n->nin;
        const ad_tensor *x = out ? n->out : n->in[k];
        if (!x || x->storage->version == n->ver[k]) continue;
        char what[32];
        if (out) snprintf(what, sizeof what, "the output");
        else snprintf(what, sizeof what, "input %d", k);
        const ad_tape *t = n->out->tape;
        bool frozen = t && t->frozen && n->seq < t->mark.nnodes; /* a replayed node */
        return ad__errc(AD_ERR_MODIFIED, fn, "%s of ad_%s, saved for backward, was modified in "
                           "place (version %u, now %u); %s after changing it",
                       what, n->op->name, n->ver[k], x->storage->version,
                       frozen ? "replay the tape (ad_tape_replay)" : "record the computation again");
    }
    return 0;
}

/* priv: g was made by the rule that hands it to x, for x alone (may_own),
 * so with AD_CREATE_GRAPH a leaf may keep g itself as its gradient. */
static int deliver(ad_tape *t, const sink *s, ad_tensor *x, ad_tensor *g, bool create, bool priv)
{
    if (!s->targets) return x->node ? 0 : ad__leaf_grad_add(t, x, g, create, priv);
    for (int i = 0; i < s->n; i++) {
        if (s->targets[i] != x) continue;
        ad_tensor *sum = s->grads[i] ? ad_add(s->grads[i], g) : g;
        if (!sum) return -1;
        s->grads[i] = sum;
    }
    return 0;
}

/* out must require grad; grad_output, when given, has out's shape and
 * dtype.  grad_output is exempt from ad_check_optional's rule: NULL is the
 * seed 1 of a one-element output, the most common call of all, and a
 * non-scalar output without one is refused here. */
static int check_backward_args(const char *fn, ad_tensor *out, const ad_tensor *gout)
{
    if (ad__check_arg(fn, "out", out, true)) return -1;
    if (!out->requires_grad)
        return ad__err(fn, "tensor does not require grad: nothing recorded leads to it");
    if (gout) {
        if (ad__check_arg(fn, "grad_output", gout, true)) return -1;
        if (!ad__same_shape(out, gout) || gout->dtype != out->dtype) {
            return ad__err(fn, "grad_output %s does not match output %s", ad__desc(gout),
                           ad__desc(out));
        }
    } else if (ad__numel(out->ndim, out->shape) != 1) {
        return ad__err(fn, "grad_output may be NULL only for a one-element output; got %s",
                       ad__shape_str(out));
    }
    return 0;
}

/* Marks with epoch what top depends on, newest first; a freed node on the
 * way is an error before anything is touched. */
static int mark_graph(const char *fn, ad_tape *t, ad_node *top, unsigned epoch)
{
    top->mark = epoch;
    for (size_t i = top->seq + 1; i-- > 0;) {
        ad_node *n = t->nodes[i];
        if (n->mark != epoch) continue;
        if (n->freed)
            return ad__errc(AD_ERR_STATE, fn,
                            "the graph through op '%s' was freed by an earlier backward; pass "
                            "AD_RETAIN_GRAPH to the first backward to run backward twice",
                            n->op->name);
        for (int k = 0; k < n->nin; k++)
            if (n->in[k]->node && n->in[k]->requires_grad) n->in[k]->node->mark = epoch;
    }
    return 0;
}

/* A rule's own error named as the pass's and the op's ("ad_backward:
 * backward of op 'cumprod' failed: ad_eye: out of memory"). */
static int rule_failed(const char *fn, const ad_node *n)
{
    return ad__err_in(fn, "backward of op '%s' failed", n->op->name);
}

/* The gradient n's rule gave for input k (which needs one), given the
 * output's g: present, of the input's shape and dtype, and under anomaly
 * mode not non-finite from finite inputs and g. */

static int check_input_grad(const char *fn, const ad_node *n, int k, const ad_tensor *g,
                            ad_tensor *const *gin)
{
    const ad_tensor *x = n->in[k];
    if (!gin[k]) {
        if (!ad__has_error())
            return ad__err(fn, "backward of op '%s' gave no gradient for input %d", n->op->name,
                           k);
        return rule_failed(fn, n);
    }
    if (!ad__same_shape(gin[k], x) || gin[k]->dtype != x->dtype) {
        return ad__err(fn, "backward of op '%s' gave a %s gradient for a %s input %d",
                       n->op->name, ad__desc(gin[k]), ad__desc(x), k);
    }
    int64_t where, dummy;
    if (ad__anomaly_on() && ad__check_finite(fn, gin[k], &where) &&
        !ad__check_finite(fn, g, &dummy)) {
        bool finite_in = true;
        for (int j = 0; j < n->nin; j++) finite_in &= !ad__check_finite(fn, n->in[j], &dummy);
        if (finite_in) {
            char what[64];
            snprintf(what, sizeof what, "backward gave the gradient of input %d", k);
            ad__anomaly_error(what, n->op, gin[k], where, n->nin, n->in, n->label);
            return -1;
        }
    }
    return 0;
}

/* The node whose rule is running, and which of its leaf inputs' gradients
 * the rule added into the leaf's buffer itself (ad__leaf_grad_target). */
typedef struct direct_state {
    const ad_node *node;
    const sink *sk;
    bool create;
    unsigned done; /* bit k: input k delivered */
    bool handled;  /* the rule propagated everything itself (ad__backward_segment) */
    const ad_tensor *donated; /* the rule may write into its g (ad__grad_donated) */
    const ad_tensor *g;       /* the adjoint the rule consumes */
} direct_state;
static _Thread_local direct_state direct;

/* A rule may add input k's gradient straight into the leaf's gradient
 * buffer - a matrix product with beta = 1 instead of a product into a new
 * tensor that the pass then adds into the buffer, which for a weight
 * matrix is a second pass over a buffer larger than L2 - when the pass
 * would do exactly that: ad_backward (not ad_gradients, whose results go
 * elsewhere), first order, no anomaly check or trace (both look at the
 * gradient tensor), and the leaf holds a contiguous buffer of its own. */
ad_tensor *ad__leaf_grad_target(const ad_node *n, int k, bool *set)
{
    if (direct.node != n || direct.sk->targets || direct.create || k >= 32 ||
        (direct.done & (1u << k)) || ad__anomaly_on() || ad__tracing())
        return NULL;
    ad_tensor *x = n->in[k], *gb = x->grad;
    if (x->node || !ad__needs_grad(n, k) || !gb || !x->owns_grad || gb->dtype != x->dtype ||
        !ad__same_shape(gb, x) || !ad_is_contiguous(gb))
        return NULL;
    /* nor when the rule reads the buffer it would write: an input that is
     * the gradient itself or a view of it (linear(w.grad, w): the product
     * read rows of w.grad it had already updated), or the adjoint (a
     * grad_output that is w.grad, or a view of its storage) */
    for (int j = 0; j < n->nin; j++)
        if (n->in[j] && n->in[j]->storage == gb->storage) return NULL;
    if (direct.g && direct.g->storage == gb->storage) return NULL;
    direct.done |= 1u << k;
    *set = ad__leaf_grad_first(x);
    return gb;
}

/* AD_SET_GRAD: the id of the pass this thread runs (0: the pass adds), a
 * number no other pass of the process has had, so that a leaf's
 * grad_pass says whether this pass has written its grad yet.  A pass run
 * by a rule (its own ad_backward) has an id of its own, and the outer
 * pass's comes back after it. */
static _Thread_local uint64_t set_pass, last_set_pass;
static _Atomic uint64_t passes;

bool ad_grad_written(const ad_tensor *t)
{
    return t && !ad__handle_problem(t) && last_set_pass && t->grad_pass == last_set_pass;
}

bool ad__leaf_grad_first(ad_tensor *leaf)
{
    if (!set_pass || leaf->grad_pass == set_pass) return false;
    leaf->grad_pass = set_pass;
    return true;
}

/* A rule may write its result over g, the adjoint it consumes, instead of
 * into a new tensor, and return g as that gradient, when g is the block
 * reclaim would give back after the rule anyway (ad__reclaim_begin's r->g: the
 * arena's top block, made by the previous rule and held by nothing but
 * this node; ad__reclaim_end moves the result down into its place).  Written
 * in place there is nothing to move: for an elementwise rule over a
 * feed-forward activation, a copy of 4 MB per pass. */
bool ad__grad_donated(const ad_node *n, const ad_tensor *g)
{
    return direct.node == n && direct.donated && direct.donated == g && !direct.create &&
           !direct.sk->targets;
}

/* The in-place path of a view with an accumulate function (a slice):
 * taken when the pass records nothing, the input is a computed tensor
 * (a leaf's gradient is delivered, not accumulated here), no gradient is
 * being collected for a target, and no trace or anomaly check needs the
 * rule's result.  Returns 1 when it handled n, 0 when the rule must run,
 * -1 on error. */
static int accumulate_view(const char *fn, ad_tape *t, ad_node *n, ad_tensor *g,
                           const sink *sk, bool create)
{
    ad_tensor *x = n->in[0];
    if (create || !n->op->accumulate || n->nin != 1 || sk->targets || !ad__needs_grad(n, 0) ||
        !x->node || ad__tracing() || ad__anomaly_on())
        return 0;
    if (check_saved(fn, n)) return -1;
    if (!x->adj || !x->adj_owned) {
        ad_tensor *acc = ad_zeros(t, x->dtype, x->ndim, x->shape);
        if (!acc) return -1;
        if (x->adj) ad__add_into(acc, acc, x->adj);
        x->adj = acc;
        x->adj_owned = true;
    }
    n->op->accumulate(n, g, x->adj);
    return 1;
}

/* Inputs whose adjoint is already a sum the pass owns get their gradient
 * added in by the op's accumulate_input, if it has one, with the arena
 * space of its temporaries given back at once; n->skip tells the rule to
 * leave them out.  Same conditions as accumulate_view. */
static int accumulate_inputs(ad_tape *t, ad_node *n, ad_tensor *g, const sink *sk, bool create)
{
    n->skip = 0;
    if (create || !n->op->accumulate_input || sk->targets || ad__tracing() || ad__anomaly_on())
        return 0;
    for (int k = 0; k < n->nin && k < 8; k++) {
        ad_tensor *x = n->in[k];
        if (!ad__needs_grad(n, k) || !x->node || !x->adj || !x->adj_owned) continue;
        ad_arena_mark m = ad__arena_mark(&t->arena);
        held *h = t->held;
        int r = n->op->accumulate_input(n, k, g, x->adj);
        /* The temporaries' views of persistent tensors (a weight's narrow
         * or transpose) hold references from entries in the space given
         * back: release them first, or the list would keep entries the
         * next allocation writes over. */
        ad__tape_release_after(t, h, t->fixups);
        ad__arena_rewind(&t->arena, m);
        if (r < 0) return -1;
        if (r > 0) n->skip |= (uint8_t)(1u << k);
    }
    return 0;
}

/* Runs n's rule on the adjoint g of its output, and sends each input's
 * gradient on: added to the adjoint of a computed input, delivered to the
 * sink (a leaf's grad, or a target's slot). */
/* Whether gin[k], the first gradient of a computed input, may become a
 * sum the pass owns (added into in place from then on, as a second
 * contribution would have made it): it is a temporary the rule made
 * (above the mark `fresh`), given to no other input, and no target's
 * gradient is collected (ad_gradients keeps the first gradient as it
 * is).  An owned adjoint spares a copy per further contribution: a view's
 * accumulation (the LSTM's gate slices) then adds into it instead of
 * copying it into a new whole. */
static bool may_own(const ad_tape *t, const ad_arena_mark *fresh, const ad_node *n, int k,
                    ad_tensor *const *gin, const sink *sk)
{
    if (!fresh || sk->targets || !ad__arena_since(&t->arena, *fresh, gin[k]->storage))
        return false;
    for (int j = 0; j < n->nin; j++)
        if (j != k && gin[j] && gin[j]->storage == gin[k]->storage) return false;
    return true;
}

/* Whether gin[k] is given to input k alone. */
static bool sole_holder(const ad_node *n, int k, ad_tensor *const *gin)
{
    for (int j = 0; j < n->nin; j++)
        if (j != k && gin[j] && gin[j]->storage == gin[k]->storage) return false;
    return true;
}

static int run_node(const char *fn, ad_tape *t, ad_node *n, ad_tensor *g, const sink *sk,
                    bool create, const ad_arena_mark *fresh, const ad_tensor *donated)
{
    int done = accumulate_view(fn, t, n, g, sk, create);
    if (done) return done < 0 ? -1 : 0;
    if (check_saved(fn, n) || accumulate_inputs(t, n, g, sk, create)) return -1;
    ad_tensor *small[8];
    ad_tensor **gin = n->nin > 8 ? ad__arena_alloc(t, (size_t)n->nin * sizeof *gin) : small;
    if (!gin) return ad__err(fn, "out of memory");
    for (int k = 0; k < n->nin; k++) gin[k] = NULL;
    if (!n->op->backward) return ad__err(fn, "op '%s' is not differentiable", n->op->name);
    direct_state outer = direct; /* a rule may run a backward pass of its own */
    direct = (direct_state){n, sk, create, 0, false, donated, g};
    ad_arena_mark rule_start = ad__arena_mark(&t->arena); /* what the rule makes is above */
    int rc = n->op->backward(n, g, gin);
    unsigned delivered = direct.done;
    bool handled = direct.handled;
    direct = outer;
    if (rc) return rule_failed(fn, n);
    if (ad__tracing()) {
        ad_trace_event ev = {AD_TRACE_BACKWARD, n->seq, n->op->name, n->op->formula, n->nin,
                             n->in, n->out, g, gin};
        ad__emit_trace(&ev);
    }
    for (int k = 0; k < n->nin && !handled; k++) {
        ad_tensor *x = n->in[k];
        if (!ad__needs_grad(n, k)) continue;
        if (k < 32 && (delivered & (1u << k))) { /* the rule added it into x's buffer */
            ad__bump(x->grad);
            continue;
        }
        if (check_input_grad(fn, n, k, g, gin)) return -1;
        if (x->node && x->adj && x->adj_owned && !create) {
            /* A tensor used many times (a weight at every step of a
             * recurrence) would otherwise get a new sum per use, all of
             * them alive until the tape is reset. */
            ad__add_into(x->adj, x->adj, gin[k]);
        } else if (x->node && x->adj && donated && gin[k] == donated && !create &&
                   sole_holder(n, k, gin) && x->adj->dtype == gin[k]->dtype &&
                   ad__same_shape(x->adj, gin[k])) {
            /* The rule's gradient is the donated adjoint, the pass's own:
             * the sum goes into it (adj + gin, as ad_add would add them),
             * not into a new tensor that reclaim would then move down. */
            ad__add_into(gin[k], x->adj, gin[k]);
            x->adj = gin[k];
            x->adj_owned = true;
        } else if (x->node) {
            ad_tensor *sum = x->adj ? ad_add(x->adj, gin[k]) : gin[k];
            if (!sum) {
                return -1;
            }
            /* a new sum belongs to x alone; a gradient a rule handed over
             * may be shared (add's rule gives g to both inputs) */
            x->adj_owned = x->adj != NULL || may_own(t, fresh, n, k, gin, sk);
            x->adj = sum;
        }
        if (deliver(t, sk, x, gin[k], create,
                    !x->node && create && ad_is_contiguous(gin[k]) &&
                        may_own(t, &rule_start, n, k, gin, sk))) {
            return -1;
        }
    }
    return 0;
}


/* n's backward, with the inputs' skip marks (accumulate_inputs) cleared
 * whatever happened, and the rule's temporaries given back. */
static int backward_node(const char *fn, ad_tape *t, ad_node *n, ad_tensor *g, const sink *sk,
                         bool create)
{
    reclaim r;
    r.n = 0; /* read only when ad__reclaim_begin says yes; set for the compiler */
    r.held = NULL;
    bool give = ad__reclaim_begin(t, n, g, sk, create, &r);
    int rc = run_node(fn, t, n, g, sk, create, give ? &r.m : NULL, give ? r.g : NULL);
    n->skip = 0;
    if (rc == 0 && give) rc = ad__reclaim_end(t, &r);
    return rc;
}

/* ---- gradient-ready notification (tape.h) ----
 * With a hook installed, the pass first finds, for every leaf that some
 * marked node reads and needs a gradient for, the oldest such node: the
 * leaf's gradient is final once that node has run (or been skipped, when
 * no adjoint reached it).  The leaves go into an open-addressing table on
 * the arena, keyed by address; nothing is written into the tensors, which
 * other threads' passes may read at the same time. */
static _Thread_local ad_grad_ready_hook ready_hook;

ad_grad_ready_hook ad_set_grad_ready_hook(ad_grad_ready_hook hook)
{
    ad_grad_ready_hook prev = ready_hook;
    ready_hook = hook;
    return prev;
}

typedef struct ready_slot {
    ad_tensor *leaf;
    size_t oldest; /* seq of the oldest marked node that reads it */
    bool told;
} ready_slot;

typedef struct ready_table {
    ready_slot *slot;
    size_t mask; /* size - 1, a power of two */
} ready_table;

static ready_slot *ready_find(const ready_table *rt, const ad_tensor *x)
{
    size_t h = ((uintptr_t)x >> 6) * 0x9E3779B97F4A7C15u;
    for (size_t i = h & rt->mask;; i = (i + 1) & rt->mask)
        if (rt->slot[i].leaf == x || !rt->slot[i].leaf) return &rt->slot[i];
}

static bool is_ready_leaf(const ad_node *n, int k)
{
    return ad__needs_grad(n, k) && !n->in[k]->node;
}

/* The table for the marked nodes top..0; rt->slot NULL when there is no
 * hook or no leaf. */
static int ready_setup(const char *fn, ad_tape *t, size_t top, unsigned epoch, ready_table *rt)
{
    *rt = (ready_table){NULL, 0};
    if (!ready_hook.fn) return 0;
    size_t uses = 0;
    for (size_t i = top + 1; i-- > 0;)
        if (t->nodes[i]->mark == epoch)
            for (int k = 0; k < t->nodes[i]->nin; k++) uses += is_ready_leaf(t->nodes[i], k);
    if (!uses) return 0;
    size_t size = 16;
    while (size < 2 * uses) size *= 2;
    if (!(rt->slot = ad__arena_alloc(t, size * sizeof *rt->slot)))
        return ad__err(fn, "out of memory");
    memset(rt->slot, 0, size * sizeof *rt->slot);
    rt->mask = size - 1;
    for (size_t i = top + 1; i-- > 0;) { /* newest first: the last write is the oldest */
        ad_node *n = t->nodes[i];
        if (n->mark != epoch) continue;
        for (int k = 0; k < n->nin; k++) {
            if (!is_ready_leaf(n, k)) continue;
            ready_slot *s = ready_find(rt, n->in[k]);
            s->leaf = n->in[k];
            s->oldest = n->seq;
        }
    }
    return 0;
}

/* Tells the hook that leaf's gradient is final; -1 with its error (or one
 * saying it failed) when it fails. */
static int tell_ready(ad_tensor *leaf)
{
    if (!ready_hook.fn(leaf, ready_hook.ctx)) return 0;
    if (!ad__has_error()) ad__err("ad_backward", "the gradient-ready hook failed");
    return -1;
}

/* After node n: tells the hook about every leaf n was the oldest reader of. */
static int ready_notify(const ready_table *rt, const ad_node *n)
{
    if (!rt->slot) return 0;
    for (int k = 0; k < n->nin; k++) {
        if (!is_ready_leaf(n, k)) continue;
        ready_slot *s = ready_find(rt, n->in[k]);
        if (s->oldest != n->seq || s->told) continue;
        s->told = true;
        if (tell_ready(s->leaf)) return -1;
    }
    return 0;
}

/* After a pass, adjoints of nodes not yet reached must not leak into the
 * next backward.  A failed pass also frees nothing: every marked node was
 * live when the pass started (mark_graph checked), so un-freeing them
 * restores the graph and the caller can retry (after ad_zero_grad, since
 * leaves reached before the failure were updated). */
static void clear_marks(ad_tape *t, size_t top, unsigned epoch, bool failed)
{
    for (size_t i = top + 1; i-- > 0;)
        if (t->nodes[i]->mark == epoch) {
            t->nodes[i]->out->adj = NULL;
            t->nodes[i]->out->adj_owned = false;
            if (failed) t->nodes[i]->freed = false;
        }
}

/* A pass from a leaf: its gradient is the seed itself.  Off any tape (a
 * persistent leaf) nothing would free a seed made here, and the targets of
 * ad_gradients are the caller's to free, so each gets a copy of its own
 * (two slots for the same leaf must not be one tensor freed twice) and
 * the seed is freed; with no tape to record on, AD_CREATE_GRAPH has
 * nothing to record (the grad is a constant 1, as in PyTorch). */
static int leaf_pass(ad_tape *t, const sink *sk, ad_tensor *out, ad_tensor *seed, bool create,
                     bool own_seed)
{
    /* create records d(grad)/d(grad_output) = I: only a grad_output on a
     * tape has anything to record it on */
    if (!t && create && seed->tape && seed->requires_grad) t = seed->tape;
    if (t) return deliver(t, sk, out, seed, create, false);
    create = false;
    int rc = 0;
    if (!sk->targets) {
        rc = ad__leaf_grad_add(t, out, seed, create, false);
    } else {
        for (int i = 0; i < sk->n && !rc; i++)
            if (sk->targets[i] == out && !(sk->grads[i] = ad__copy(NULL, seed))) rc = -1;
    }
    if (own_seed) ad_tensor_free(seed);
    return rc;
}

/* The pass itself: seeds out's adjoint, then walks the tape from out's node
 * down, each marked node that an adjoint reached in turn. */
static int backward_pass(const char *fn, ad_tensor *out, const ad_tensor *gout, bool create,
                         bool retain, const sink *sk)
{
    ad_tape *t = out->tape;
    ad__reclaim_pass_start();
    /* ad_gradients' results live on out's tape: a rule that hands g on
     * as it is (add's, reshape's) would give a target the caller's own
     * grad_output, which a free or a write of the caller's then reaches;
     * a copy on the tape (recorded with AD_CREATE_GRAPH: g * 1) is the
     * seed instead */
    ad_tensor *seed = !gout ? ad_full(t, out->dtype, out->ndim, out->shape, 1.0)
                    : !sk->targets || !t ? (ad_tensor *)gout
                    : create ? ad_mul_scalar((ad_tensor *)gout, 1.0)
                             : ad__copy(t, gout);
    if (!seed) return -1;
    if (!out->node) { /* a leaf: d(out)/d(out) = 1, final at once */
        if (leaf_pass(t, sk, out, seed, create, seed != gout)) return -1;
        return ready_hook.fn && !sk->targets ? tell_ready(out) : 0;
    }
    if (deliver(t, sk, out, seed, create, false)) return -1;
    size_t top = out->node->seq;
    unsigned epoch = ++t->epoch;
    if (mark_graph(fn, t, out->node, epoch)) return -1;
    ready_table rt = {NULL, 0};
    if (!sk->targets && ready_setup(fn, t, top, epoch, &rt)) {
        clear_marks(t, top, epoch, true);
        return -1;
    }
    out->adj = seed;
    out->adj_owned = false;
    int rc = 0;
    for (size_t i = top + 1; i-- > 0;) {
        ad_node *n = t->nodes[i];
        if (n->mark != epoch) continue;
        ad_tensor *g = n->out->adj;
        n->out->adj = NULL;
        n->out->adj_owned = false;
        if (g && backward_node(fn, t, n, g, sk, create)) {
            rc = -1;
            break;
        }
        if (g && !retain) n->freed = true;
        if (ready_notify(&rt, n)) {
            rc = -1;
            break;
        }
    }
    clear_marks(t, top, epoch, rc != 0);
    return rc;
}

/* ad_backward and ad_gradients: the pass with grad mode, the active tape
 * and the in-backward flag set for its duration. */
static int run_backward(const char *fn, ad_tensor *out, const ad_tensor *gout, unsigned flags,
                        const sink *sk)
{
    if (check_backward_args(fn, out, gout)) return -1;
    unsigned unknown = flags & ~(unsigned)(AD_RETAIN_GRAPH | AD_CREATE_GRAPH | AD_SET_GRAD);
    if (unknown)
        return ad__err(fn, "unknown flags 0x%x (AD_RETAIN_GRAPH, AD_CREATE_GRAPH and "
                           "AD_SET_GRAD are the flags)", unknown);
    if (out->tape && out->tape->replay_failed_at)
        return ad__errc(AD_ERR_STATE, fn,
                        "the last ad_tape_replay of this tape failed at op '%s', so its values "
                        "are part replayed, part the recording's; replay again with values it "
                        "accepts, or reset the tape", out->tape->replay_failed_at);
    if ((flags & AD_SET_GRAD) && sk->targets)
        return ad__err(fn, "AD_SET_GRAD is for ad_backward: these gradients go to no leaf");
    bool create = flags & AD_CREATE_GRAPH;
    bool retain = create || (flags & AD_RETAIN_GRAPH);
    bool prev_mode = ad_set_grad_enabled(create);
    ad_tape *prev_tape = ad_tape_activate(out->tape);
    bool prev_in = ad__set_in_backward(true);
    uint64_t prev_pass = set_pass;
    set_pass = flags & AD_SET_GRAD ? atomic_fetch_add(&passes, 1) + 1 : 0;
    if (set_pass) last_set_pass = set_pass;
    int rc = backward_pass(fn, out, gout, create, retain, sk);
    set_pass = prev_pass;
    ad__set_in_backward(prev_in);
    ad_tape_activate(prev_tape);
    ad_set_grad_enabled(prev_mode);
    return rc;
}

/* ---- a recomputed segment (ad_checkpoint) ------------------------------------------ */

/* A place outside the segment that the pass over it may point at a tensor
 * made inside it: the adjoint of a tensor made before the segment (a new
 * sum, or a gradient a rule handed over), a leaf's gradient buffer made by
 * its first delivery, a target's gradient (ad_gradients). */
typedef struct seg_slot {
    ad_tensor **slot;
    ad_tensor *before;
} seg_slot;

typedef struct seg_slots {
    seg_slot *v;
    size_t n, cap;
} seg_slots;

static int slot_add(seg_slots *s, ad_tensor **slot)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].slot == slot) return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        seg_slot *v = ad__realloc(s->v, cap * sizeof *v);
        if (!v) return ad__err("ad_backward", "out of memory");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (seg_slot){slot, *slot};
    return 0;
}

/* Every slot the pass over nodes [first, end) can change. */
static int collect_slots(ad_tape *t, size_t first, size_t end, const sink *sk, seg_slots *s)
{
    for (size_t i = first; i < end; i++) {
        const ad_node *n = t->nodes[i];
        for (int k = 0; k < n->nin; k++) {
            ad_tensor *x = n->in[k];
            if (!x->requires_grad) continue;
            if (!x->node) {
                if (x->tape == t && slot_add(s, &x->grad)) return -1;
            } else if (x->node->seq < first && slot_add(s, &x->adj)) {
                return -1;
            }
        }
    }
    for (int i = 0; sk->targets && i < sk->n; i++)
        if (slot_add(s, &sk->grads[i])) return -1;
    return 0;
}

/* Gives the segment back: the tensors that slots now point at and did not
 * before (all made inside the segment) are copied out, the segment is
 * rewound, and they come back as tensors of their own on t, with the
 * same values, each slot re-pointed.  A tensor in several slots stays one
 * tensor. */
static int give_back(ad_tape *t, ad__segment *seg, seg_slots *s)
{
    size_t total = 0, nmoved = 0;
    ad_tensor **old = s->n ? ad__malloc(2 * s->n * sizeof *old) : NULL;
    if (s->n && !old) return ad__err("ad_backward", "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        ad_tensor *x = *s->v[i].slot;
        if (!x || x == s->v[i].before) continue;
        bool seen = false;
        for (size_t j = 0; j < nmoved && !seen; j++) seen = old[j] == x;
        if (seen) continue;
        old[nmoved++] = x;
        total += (size_t)ad__numel(x->ndim, x->shape) * ad_dtype_size(x->dtype);
    }
    unsigned char *buf = total ? ad__malloc(total) : NULL;
    if (total && !buf) {
        ad__free(old);
        return ad__err("ad_backward", "out of memory");
    }
    size_t off = 0;
    for (size_t j = 0; j < nmoved; j++) {
        ad_tensor *x = old[j];
        ad_storage st = {.data = buf + off, .in_arena = false};
        ad_tensor dst = *x;
        dst.storage = &st;
        dst.offset = 0;
        ad__contig_strides(dst.ndim, dst.shape, dst.strides);
        ad__copy_same(&dst, x);
        off += (size_t)ad__numel(x->ndim, x->shape) * ad_dtype_size(x->dtype);
    }
    ad__segment_kill(t, seg);
    ad__segment_rewind(t, seg);
    ad_tensor **moved = old ? old + s->n : NULL; /* no slots: no array (no offset from NULL) */
    int rc = 0;
    off = 0;
    for (size_t j = 0; j < nmoved; j++) {
        ad_tensor *x = old[j];
        size_t nb = (size_t)ad__numel(x->ndim, x->shape) * ad_dtype_size(x->dtype);
        moved[j] = ad__alloc("ad_backward", t, x->dtype, x->ndim, x->shape);
        if (!moved[j]) {
            rc = -1;
            break;
        }
        memcpy(moved[j]->storage->data, buf + off, nb);
        off += nb;
    }
    for (size_t i = 0; rc == 0 && i < s->n; i++)
        for (size_t j = 0; j < nmoved; j++)
            if (*s->v[i].slot == old[j]) *s->v[i].slot = moved[j];
    ad__free(buf);
    ad__free(old);
    return rc;
}

bool ad__rule_running(const ad_node *n) { return direct.node == n; }

int ad__backward_segment(ad_node *caller, ad__segment *seg, int nout, ad_tensor *const *outs,
                         ad_tensor *const *gs)
{
    static const char *fn = "ad_backward";
    if (direct.node != caller) return ad__err(fn, "a segment's pass outside its node's rule");
    const sink *sk = direct.sk;
    bool create = direct.create;
    ad_tape *t = caller->out->tape;
    size_t first = seg->mark.nnodes, end = t->nnodes;
    seg_slots slots = {0};
    if (!create && collect_slots(t, first, end, sk, &slots)) {
        ad__free(slots.v);
        return -1;
    }
    unsigned epoch = ++t->epoch;
    int rc = 0;
    for (int i = 0; i < nout && rc == 0; i++) {
        ad_tensor *y = outs[i];
        if (!y->node || y->node->seq < first || !gs[i]) continue;
        y->node->mark = epoch;
        if (!y->adj) {
            y->adj = gs[i];
            y->adj_owned = false;
        } else { /* one tensor returned twice */
            ad_tensor *sum = ad_add(y->adj, gs[i]);
            if (!sum) rc = -1;
            y->adj = sum;
            y->adj_owned = sum != NULL;
        }
    }
    for (size_t i = end; rc == 0 && i-- > first;) {
        ad_node *n = t->nodes[i];
        if (n->mark != epoch) continue;
        for (int k = 0; k < n->nin; k++) {
            ad_tensor *x = n->in[k];
            if (x->node && x->requires_grad && x->node->seq >= first) x->node->mark = epoch;
        }
    }
    direct_state mine = direct;
    for (size_t i = end; rc == 0 && i-- > first;) {
        ad_node *n = t->nodes[i];
        if (n->mark != epoch) continue;
        ad_tensor *g = n->out->adj;
        n->out->adj = NULL;
        n->out->adj_owned = false;
        if (g && backward_node(fn, t, n, g, sk, create)) rc = -1;
    }
    direct = mine;
    for (size_t i = first; i < end; i++)
        if (t->nodes[i]->mark == epoch) {
            t->nodes[i]->out->adj = NULL;
            t->nodes[i]->out->adj_owned = false;
        }
    /* After a failure the segment stays where it is (until the reset):
     * the adjoints made so far may live in it. */
    if (rc == 0 && !create) rc = give_back(t, seg, &slots);
    ad__free(slots.v);
    if (rc == 0) direct.handled = true;
    return rc;
}

int ad__node_local_grads(ad_tape *t, size_t i, ad_tensor **gin)
{
    static const char *fn = "ad__node_local_grads";
    if (!t || i >= t->nnodes) return ad__err(fn, "no node %zu on this tape", i);
    ad_node *n = t->nodes[i];
    for (int k = 0; k < n->nin; k++) gin[k] = NULL;
    if (!n->op->backward || n->freed) return 0; /* nothing to show */
    if (check_saved(fn, n)) {
        ad_clear_error(); /* an input changed since: no derivative to show */
        return 0;
    }
    /* as run_backward: nothing recorded, temporaries on the node's tape */
    bool prev_mode = ad_set_grad_enabled(false);
    ad_tape *prev_tape = ad_tape_activate(t);
    bool prev_in = ad__set_in_backward(true);
    ad_tensor *ones = ad_full(t, n->out->dtype, n->out->ndim, n->out->shape, 1.0);
    int rc = ones ? n->op->backward(n, ones, gin) : -1;
    ad__set_in_backward(prev_in);
    ad_tape_activate(prev_tape);
    ad_set_grad_enabled(prev_mode);
    for (int k = 0; k < n->nin; k++)
        if (!ad__needs_grad(n, k)) gin[k] = NULL;
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

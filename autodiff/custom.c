/* autodiff/custom.c - user ops with a forward and a backward of their own
 * (custom.h has the contract).
 *
 * One node layout serves every custom op: the node's parameters point at
 * the ad_custom and at an arena array of the saved tensors and their
 * storage versions.  Each ad_custom carries copies of the "custom" op
 * descriptor (below) differing only in name and formula, so graphs and
 * errors say "custom:NAME", as foreign ops do (ffi.c).
 *
 * The rule is the user's backward, wrapped: it gets a context over the
 * node, and what it returns is checked (present, the input's shape and
 * dtype) with messages that name the op.  Under AD_CREATE_GRAPH the rule
 * runs with grad mode on, like every rule, so a backward written with ad_
 * ops is recorded and can be differentiated again.  A first_order op's
 * backward runs with grad mode off instead, and its results are recorded
 * as outputs of a "first-order only" node whose rule is an error: a
 * second derivative through it then fails with a message instead of
 * silently coming out zero. */
#include <stdlib.h>

#include "custom.h"
#include "internal.h"

enum { OP_VALUE, OP_FIRST_ORDER };

struct ad_custom {
    ad_op ops[2]; /* "custom:NAME" and "custom:NAME backward (first-order only)" */
    char *strings;
    ad_custom_desc d;
};

struct ad_custom_ctx {
    const ad_custom *C;
    ad_tape *tape;
    ad_tensor *const *in;
    int nin;
    bool forward; /* ad_custom_save is allowed */
    bool needs[AD_CUSTOM_MAX_INPUTS];
    int nsaved;
    ad_tensor **saved;
    ad_tensor *buf[AD_CUSTOM_MAX_SAVED]; /* the forward's saved list */
};

/* A custom node's parameters: the op and what its forward saved, with the
 * storage versions at the time (an arena array of the node's tape). */
typedef struct custom_params {
    const ad_custom *C;
    int nsaved;
    ad_tensor **saved;
    uint32_t *ver;
} custom_params;

static const char *op_name(const ad_custom *C) { return C->ops[OP_VALUE].name; }

/* ---- the context ------------------------------------------------------------------ */

int ad_custom_save(ad_custom_ctx *ctx, int n, ad_tensor *const *t)
{
    static const char *fn = "ad_custom_save";
    if (!ctx) return ad__err(fn, "ctx is NULL");
    if (!ctx->forward)
        return ad__err(fn, "%s: tensors are saved during forward, not backward", op_name(ctx->C));
    if (n < 0 || (n > 0 && !t)) return ad__err(fn, "t is NULL or n (%d) is negative", n);
    if (ctx->nsaved + n > AD_CUSTOM_MAX_SAVED)
        return ad__err(fn, "%s: %d tensors saved already, %d more exceed the limit of %d",
                       op_name(ctx->C), ctx->nsaved, n, AD_CUSTOM_MAX_SAVED);
    for (int i = 0; i < n; i++) {
        char what[24];
        snprintf(what, sizeof what, "t[%d]", i);
        if (ad__check_arg(fn, what, t[i], false)) return -1;
    }
    for (int i = 0; i < n; i++) ctx->saved[ctx->nsaved++] = t[i];
    return 0;
}

ad_tensor *ad_custom_saved(const ad_custom_ctx *ctx, int i)
{
    static const char *fn = "ad_custom_saved";
    if (!ctx) return ad__err(fn, "ctx is NULL"), NULL;
    if (i < 0 || i >= ctx->nsaved)
        return ad__err(fn, "%s: index %d out of range: forward saved %d tensor%s",
                       op_name(ctx->C), i, ctx->nsaved, ctx->nsaved == 1 ? "" : "s"),
               NULL;
    return ctx->saved[i];
}

int ad_custom_num_saved(const ad_custom_ctx *ctx) { return ctx ? ctx->nsaved : -1; }

bool ad_custom_needs_input_grad(const ad_custom_ctx *ctx, int i)
{
    return ctx && i >= 0 && i < ctx->nin && ctx->needs[i];
}

ad_tape *ad_custom_tape(const ad_custom_ctx *ctx) { return ctx ? ctx->tape : NULL; }

/* ---- forward ------------------------------------------------------------------------ */

/* Runs the user's forward with grad mode off on ctx; returns its result
 * checked (a live tensor), or NULL with an error naming the op. */
static ad_tensor *run_forward(const char *fn, ad_custom_ctx *ctx, ad_tensor *const *in, int n)
{
    const ad_custom *C = ctx->C;
    ad_clear_error();
    bool prev = ad_set_grad_enabled(false), prev_off = ad__set_record_off(true);
    ad_tensor *y = C->d.forward(ctx, in, n, C->d.user);
    ad__set_record_off(prev_off);
    ad_set_grad_enabled(prev);
    if (!y) {
        if (!ad__has_error()) ad__err(fn, "%s: forward returned NULL without an error", op_name(C));
        return NULL;
    }
    if (ad__check_arg(fn, "the forward's result", y, false)) return NULL;
    if (y->tape && y->tape != ctx->tape)
        return ad__err(fn, "%s: forward returned a tensor of another tape", op_name(C)), NULL;
    return y;
}

static bool is_input(const ad_tensor *y, ad_tensor *const *in, int n)
{
    for (int i = 0; i < n; i++)
        if (in[i] == y) return true;
    return false;
}

/* Records the call: the result y becomes the node's output (a copy when y
 * cannot be: an input, a persistent tensor, a tensor already recorded);
 * the saved list goes to the arena with its versions, and a persistent
 * saved tensor is held like a recorded input. */
static ad_tensor *record(const char *fn, ad_custom_ctx *ctx, ad_tensor *y, int n,
                         ad_tensor *const *in)
{
    const ad_custom *C = ctx->C;
    ad_tensor *out = y;
    if (!y->tape || is_input(y, in, n) || y->requires_grad || y->node) {
        out = ad__result(fn, n, in, y->dtype, y->ndim, y->shape);
        if (!out) return NULL;
        ad__copy_same(out, y);
    }
    custom_params p = {C, ctx->nsaved, NULL, NULL};
    ad_node *node = NULL;
    out = ad__finish(out, 0, &C->ops[OP_VALUE], n, in, &p, &node);
    if (!out || !node || ctx->nsaved == 0) return out;
    ad_tape *t = out->tape;
    custom_params *np = ad__params(node);
    np->saved = ad__arena_alloc(t, (size_t)ctx->nsaved * (sizeof(ad_tensor *) + sizeof(uint32_t)));
    if (!np->saved) return ad__err(fn, "%s: out of memory", op_name(C)), NULL;
    np->ver = (uint32_t *)(void *)(np->saved + ctx->nsaved);
    for (int i = 0; i < ctx->nsaved; i++) {
        ad_tensor *s = ctx->saved[i] == y ? out : ctx->saved[i];
        if (!s->tape && !is_input(s, in, n) && ad__tape_hold_tensor(t, s))
            return ad__err(fn, "%s: out of memory", op_name(C)), NULL;
        np->saved[i] = s;
        np->ver[i] = s->storage->version;
    }
    return out;
}

ad_tensor *ad_custom_call(const ad_custom *C, int n, ad_tensor *const *in)
{
    static const char *fn = "ad_custom_call";
    if (!C) return ad__err(fn, "op is NULL"), NULL;
    if (n != C->d.nin)
        return ad__err(fn, "%s: expected %d input%s, got %d", op_name(C), C->d.nin,
                       C->d.nin == 1 ? "" : "s", n), NULL;
    if (!in) return ad__err(fn, "%s: in is NULL", op_name(C)), NULL;
    for (int i = 0; i < n; i++) {
        char what[24];
        snprintf(what, sizeof what, "in[%d]", i);
        if (ad__check_arg(fn, what, in[i], false)) return NULL;
    }
    ad_scope s;
    if (ad_scope_begin(&s, fn, n, in, false)) return NULL;
    ad_custom_ctx ctx = {.C = C, .tape = s.tape, .in = in, .nin = n,
                         .forward = true};
    ctx.saved = ctx.buf;
    for (int i = 0; i < n; i++)
        ctx.needs[i] = ad_grad_enabled() && in[i]->requires_grad && ad__is_float(in[i]->dtype);
    ad_tensor *y = run_forward(fn, &ctx, in, n);
    if (y && !s.scratch) y = record(fn, &ctx, y, n, in);
    return ad_scope_end(&s, y);
}

/* Replay: forward again, its result copied into the recorded output and
 * its saved tensors replacing the recorded ones. */
static int custom_fw(ad_node *nd)
{
    static const char *fn = "ad_tape_replay";
    custom_params *p = ad__params(nd);
    const ad_custom *C = p->C;
    ad_custom_ctx ctx = {.C = C, .tape = nd->out->tape, .in = nd->in, .nin = nd->nin,
                         .forward = true};
    ctx.saved = ctx.buf;
    for (int i = 0; i < nd->nin; i++) ctx.needs[i] = ad__needs_grad(nd, i);
    ad_tensor *y = run_forward(fn, &ctx, nd->in, nd->nin);
    if (!y) return -1;
    if (!ad__same_shape(y, nd->out) || y->dtype != nd->out->dtype)
        return ad__err(fn, "%s: forward returned %s at replay, %s when recorded", op_name(C),
                       ad__desc(y), ad__desc(nd->out));
    if (ctx.nsaved != p->nsaved)
        return ad__err(fn, "%s: forward saved %d tensors at replay, %d when recorded",
                       op_name(C), ctx.nsaved, p->nsaved);
    if (y != nd->out) ad__copy_same(nd->out, y);
    for (int i = 0; i < p->nsaved; i++) {
        ad_tensor *s = ctx.saved[i] == y ? nd->out : ctx.saved[i];
        if (!s->tape && !is_input(s, nd->in, nd->nin) && ad__tape_hold_tensor(nd->out->tape, s))
            return ad__err(fn, "%s: out of memory", op_name(C));
        p->saved[i] = s;
        p->ver[i] = s->storage->version;
    }
    return 0;
}

/* ---- backward ----------------------------------------------------------------------- */

/* gx, the gradient a first_order backward gave for an input, recorded as
 * the output of a node over g and the op's inputs whose own rule is the
 * error below, so that differentiating it again fails loudly. */
static ad_tensor *mark_first_order(const char *fn, ad_node *nd, ad_tensor *g, ad_tensor *gx)
{
    const ad_custom *C = ((const custom_params *)ad__params(nd))->C;
    ad_tensor *small[AD_CUSTOM_MAX_INPUTS + 1];
    small[0] = g;
    for (int i = 0; i < nd->nin; i++) small[i + 1] = nd->in[i];
    ad_tensor *out = ad__result(fn, nd->nin + 1, small, gx->dtype, gx->ndim, gx->shape);
    if (!out) return NULL;
    ad__copy_same(out, gx);
    return ad__finish(out, 0, &C->ops[OP_FIRST_ORDER], nd->nin + 1, small, NULL, NULL);
}

static int first_order_bw(ad_node *nd, ad_tensor *g, ad_tensor **gin)
{
    (void)g;
    (void)gin;
    const char *nm = nd->op->name; /* "custom:NAME backward (first-order only)" */
    size_t len = strcspn(nm, " ");
    return ad__errc(AD_ERR_STATE, "ad_backward",
                    "%.*s has a first-order backward (first_order in its ad_custom_desc): the "
                    "gradient it returned cannot be differentiated again, so second "
                    "derivatives (AD_CREATE_GRAPH, ad_hessian, ad_hvp, ad_gradgradcheck) are "
                    "not available through it; write its backward with ad_ ops on the saved "
                    "tensors to allow them",
                    (int)len, nm);
}

static int custom_bw(ad_node *nd, ad_tensor *g, ad_tensor **gin)
{
    static const char *fn = "ad_backward";
    custom_params *p = ad__params(nd);
    const ad_custom *C = p->C;
    for (int i = 0; i < p->nsaved; i++)
        if (p->saved[i]->storage->version != p->ver[i])
            return ad__errc(AD_ERR_MODIFIED, fn,
                            "%s: saved tensor %d was modified in place after the forward "
                            "(version %u, now %u)",
                            op_name(C), i, (unsigned)p->ver[i],
                            (unsigned)p->saved[i]->storage->version);
    ad_custom_ctx ctx = {.C = C, .tape = nd->out->tape, .in = nd->in, .nin = nd->nin,
                         .nsaved = p->nsaved, .saved = p->saved};
    for (int i = 0; i < nd->nin; i++) ctx.needs[i] = ad__needs_grad(nd, i);
    ad_tensor *ug[AD_CUSTOM_MAX_INPUTS] = {0};
    bool create = ad_grad_enabled();
    ad_clear_error();
    bool prev = ad_set_grad_enabled(create && !C->d.first_order);
    int rc = C->d.backward(&ctx, g, ug, C->d.user);
    ad_set_grad_enabled(prev);
    if (rc) {
        if (!ad__has_error()) ad__err(fn, "%s: backward returned %d without an error", op_name(C), rc);
        return -1;
    }
    for (int i = 0; i < nd->nin; i++) {
        if (!ctx.needs[i]) continue;
        const ad_tensor *x = nd->in[i];
        if (!ug[i])
            return ad__err(fn, "%s: backward gave no gradient for input %d, which requires grad",
                           op_name(C), i);
        if (ad__check_arg(fn, "a gradient backward gave", ug[i], true)) return -1;
        if (!ad__same_shape(ug[i], x) || ug[i]->dtype != x->dtype)
            return ad__err(fn, "%s: backward gave a %s gradient for input %d, which is %s",
                           op_name(C), ad__desc(ug[i]), i, ad__desc(x));
        gin[i] = create && C->d.first_order ? mark_first_order(fn, nd, g, ug[i]) : ug[i];
        if (!gin[i]) return -1;
    }
    return 0;
}

static const ad_op OP_CUSTOM = {
    .name = "custom",
    .formula = "y = forward(x_1..x_n) written by the user; dx_i = backward(g, saved)_i, "
               "written by the user",
    .backward = custom_bw,
    .forward = custom_fw,
    .params_size = sizeof(custom_params),
};

/* Not in the op table: it is no op a program calls, only the mark on a
 * first_order gradient, and it has no derivative to check. */
static const ad_op OP_CUSTOM_FIRST_ORDER = {
    .name = "custom first-order backward",
    .formula = "y = a gradient computed by a first_order custom backward; not differentiable",
    .backward = first_order_bw,
};

const ad_op *const ad__ops_custom[] = {&OP_CUSTOM, NULL};

/* ---- registration ------------------------------------------------------------------- */

ad_custom *ad_custom_new(const ad_custom_desc *d)
{
    static const char *fn = "ad_custom_new";
    if (!d) return ad__err(fn, "desc is NULL"), NULL;
    if (!d->name || !d->name[0]) return ad__err(fn, "name is NULL or empty"), NULL;
    if (!d->forward) return ad__err(fn, "%s: forward is NULL", d->name), NULL;
    if (d->nin < 1 || d->nin > AD_CUSTOM_MAX_INPUTS)
        return ad__err(fn, "%s: nin %d out of range 1..%d", d->name, d->nin, AD_CUSTOM_MAX_INPUTS),
               NULL;
    if (d->first_order && !d->backward)
        return ad__err(fn, "%s: first_order is set but backward is NULL", d->name), NULL;
    ad_custom *C = ad__calloc(1, sizeof *C);
    size_t len = 4 * strlen(d->name) + 400;
    char *s = C ? ad__malloc(len) : NULL;
    if (!s) {
        ad__free(C);
        return ad__err(fn, "out of memory"), NULL;
    }
    C->d = *d;
    C->strings = s;
    int a = snprintf(s, len, "custom:%s", d->name) + 1;
    int b = a + snprintf(s + a, len - (size_t)a, "custom:%s backward (first-order only)", d->name) + 1;
    int c = b + snprintf(s + b, len - (size_t)b, "y = %s(x_1..x_%d) by your forward; dx_i by your "
                         "backward%s", d->name, d->nin,
                         d->first_order ? " (first-order only)" : "") + 1;
    assert((size_t)c < len);
    C->ops[OP_VALUE] = OP_CUSTOM;
    C->ops[OP_VALUE].name = s;
    C->ops[OP_VALUE].formula = s + b;
    if (!d->backward) C->ops[OP_VALUE].backward = NULL;
    C->ops[OP_FIRST_ORDER] = OP_CUSTOM_FIRST_ORDER;
    C->ops[OP_FIRST_ORDER].name = s + a;
    C->d.name = s + strlen("custom:");
    return C;
}

void ad_custom_free(ad_custom *C)
{
    if (!C) return;
    ad__free(C->strings);
    ad__free(C);
}

const char *ad_custom_name(const ad_custom *C)
{
    if (!C) return ad__err("ad_custom_name", "op is NULL"), NULL;
    return op_name(C);
}

/* ---- checking ---------------------------------------------------------------------- */

static ad_tensor *call_fn(ad_tensor *const *in, int n, void *ctx)
{
    return ad_custom_call(ctx, n, in);
}

/* Whether the backward's gradients are recorded under AD_CREATE_GRAPH:
 * with a grad_output that requires grad, a backward written with ad_ ops
 * gives gradients that require grad (they are linear in g); one that reads
 * raw buffers gives plain tensors.  -1 on error, else the first input
 * whose gradient is not recorded, or n when all are. */
static int first_unrecorded(const ad_custom *C, int n, ad_tensor *const *in)
{
    ad_tape *t = ad_tape_new();
    if (!t) return -1;
    int r = -1;
    ad_tensor *x[AD_CUSTOM_MAX_INPUTS], *gx[AD_CUSTOM_MAX_INPUTS] = {0};
    bool prev = ad_set_grad_enabled(true);
    for (int i = 0; i < n; i++) {
        x[i] = ad__copy(t, in[i]);
        if (!x[i]) goto done;
        if (ad__is_float(x[i]->dtype) && in[i]->requires_grad) ad_set_requires_grad(x[i], true);
    }
    ad_tensor *y = ad_custom_call(C, n, x);
    ad_tensor *g = y ? ad_ones(t, y->dtype, y->ndim, y->shape) : NULL;
    if (!g || ad_set_requires_grad(g, true) || !y->requires_grad) goto done;
    if (ad_gradients(y, g, n, x, gx, AD_CREATE_GRAPH)) goto done;
    r = n;
    for (int i = n - 1; i >= 0; i--)
        if (gx[i] && !gx[i]->requires_grad) r = i;
done:
    ad_set_grad_enabled(prev);
    ad_tape_free(t);
    return r;
}

int ad_custom_check(const ad_custom *C, int n, ad_tensor *const *in, const ad_gradcheck_opts *opts)
{
    static const char *fn = "ad_custom_check";
    if (!C) return ad__err(fn, "op is NULL");
    if (!C->d.backward) return ad__err(fn, "%s has no backward to check", op_name(C));
    int ok = ad_gradcheck(call_fn, (void *)(uintptr_t)C, n, in, opts);
    if (ok != 1) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ad_error() ? ad_error() : "");
        return ok < 0 ? ad__err(fn, "%s: %s", op_name(C), msg)
                      : (ad__err(fn, "%s: first derivatives: %s", op_name(C), msg), 0);
    }
    if (C->d.first_order) return 1;
    ok = ad__gradgradcheck_wrt_g(call_fn, (void *)(uintptr_t)C, n, in, opts);
    if (ok == 1) return 1;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", ad_error() ? ad_error() : "");
    if (ok < 0) return ad__err(fn, "%s: %s", op_name(C), msg);
    int u = first_unrecorded(C, n, in);
    if (u >= 0 && u < n)
        ad__err(fn, "%s: second derivatives disagree, and the gradient backward gives for "
                    "input %d is not recorded under AD_CREATE_GRAPH (it does not require grad "
                    "although grad_output does): the backward seems to compute it from raw "
                    "buffers; set first_order in the ad_custom_desc if it is meant to be "
                    "first-order only, or write it with ad_ ops on the saved tensors and g "
                    "(%s)",
                op_name(C), u, msg);
    else
        ad__err(fn, "%s: second derivatives: %s", op_name(C), msg);
    return 0;
}

/* autodiff/grad_checkpoint.c - gradient checkpointing (transforms.h has the
 * contract): a function's intermediates are given back when it returns
 * and recomputed by the backward pass, as torch.utils.checkpoint and
 * jax.checkpoint do.
 *
 * The call runs the function as usual, recorded on the tape, then looks
 * at what it recorded (which tensors made before the call it read, that
 * its outputs were made by it), copies the outputs out and gives the
 * whole segment back: arena space, nodes, references (tape.c's segments).
 * What stays is one node, "checkpoint", whose output packs every output
 * of the function one after the other (the caller receives views of it)
 * and whose inputs are the function's inputs plus every tensor made
 * before the call that the function read and that requires grad (a
 * weight it closes over), so that the backward pass reaches them and the
 * version check covers them.
 *
 * Its rule runs the function again, recorded, from the same inputs and
 * the same positions of the random streams it drew from, and then walks
 * the new nodes with the running pass's own machinery
 * (ad__backward_segment): every gradient that leaves the segment is added
 * where the pass would have added it had the ops been recorded in place,
 * in the same order, so the gradients are the same bits.  The segment is
 * then given back again.  Under AD_CREATE_GRAPH the recomputed nodes and
 * the recorded backward stay on the tape: second derivatives go through
 * them like through any recording. */
#include <stdlib.h>

#include "tape_impl.h"
#include "transforms.h"

#define CKPT_MAX 64 /* inputs and outputs of one call */

/* The node's parameters.  dims lives on the node's tape: for each output
 * its ndim, then its extents. */
typedef struct ckpt_params {
    ad_checkpoint_fn f;
    void *ctx;
    int nin, nout, nrng;
    ad_dtype dtype;
    int64_t *dims;
    ad_rng *rng[AD__RNG_LOG_MAX];
    uint64_t counter[AD__RNG_LOG_MAX]; /* each stream's position before the first run drew */
} ckpt_params;

/* Runs f on in with a log of the random streams it draws from; checks
 * that every output is a live floating tensor of tape t, all of one
 * dtype.  0, or -1 with an error (the function's own message kept). */
static int run_fn(const char *fn, ad_tape *t, ad_checkpoint_fn f, void *ctx, int nin,
                  ad_tensor *const *in, int nout, ad_tensor **outs, ad__rng_log *log)
{
    for (int i = 0; i < nout; i++) outs[i] = NULL;
    *log = (ad__rng_log){.parent = ad__rng_logs};
    ad__rng_logs = log;
    ad_clear_error();
    ad__replay_opaque(1); /* its node runs it again at replay, copies and all */
    int rc = f(in, nin, outs, nout, ctx);
    ad__replay_opaque(-1);
    ad__rng_logs = log->parent;
    if (rc) {
        if (!ad__has_error()) ad__err(fn, "the function returned %d without an error", rc);
        return -1;
    }
    if (log->overflow)
        return ad__err(fn, "the function draws from more than %d random streams, the most "
                           "a checkpoint can replay", AD__RNG_LOG_MAX);
    for (int i = 0; i < nout; i++) {
        char what[48];
        snprintf(what, sizeof what, "output %d of the function", i);
        if (!outs[i] && !ad__has_error())
            return ad__err(fn, "the function returned 0 but left output %d NULL", i);
        if (ad__check_arg(fn, what, outs[i], true)) return -1;
        if (outs[i]->tape != t)
            return ad__err(fn, "output %d of the function is %s, not a tensor of the inputs' "
                               "tape: the function must compute its outputs from its inputs",
                           i, outs[i]->tape ? "on another tape" : "a persistent tensor");
        if (outs[i]->dtype != outs[0]->dtype)
            return ad__err(fn, "the function's outputs must share one dtype: output 0 is %s, "
                               "output %d %s", ad__desc(outs[0]), i, ad__desc(outs[i]));
    }
    return 0;
}

static bool among(const ad_tensor *x, ad_tensor *const *v, int n)
{
    for (int i = 0; i < n; i++)
        if (v[i] == x) return true;
    return false;
}

/* A view made inside the segment of memory from outside it (an index op's
 * view of a persistent index, say): after the segment is given back, a
 * view of its own on the tape over the same storage takes its place among
 * the node's inputs, for their versions. */
typedef struct ghost {
    ad_storage *storage;
    ad_dtype dtype;
    int ndim;
    int64_t shape[AD_MAX_DIMS], strides[AD_MAX_DIMS], offset;
} ghost;

static bool storage_among(const ad_storage *s, ad_tensor *const *v, int n, const ghost *g, int ng)
{
    for (int i = 0; i < n; i++)
        if (v[i]->storage == s) return true;
    for (int i = 0; i < ng; i++)
        if (g[i].storage == s) return true;
    return false;
}

/* The tensors made before the segment (nodes from first on) that its ops
 * read and that require grad, or that are leaves (a frozen weight it
 * closes over: unfrozen later, a replay must see that it reads it, and
 * the gradient-ready hook report it; an index or constant changed before
 * backward, which the recomputation would read: the node's versions catch
 * it), other than in[0..nin): appended to extra[0..*nextra).  The first
 * run records every op (ad__record_all), so one reached only through a
 * view made inside, or through an op that needs no gradient, is found
 * too.  Leaves made inside the segment are known by their headers, killed
 * already. */
static int find_extras(const char *fn, ad_tape *t, const ad__segment *seg, int nin,
                       ad_tensor *const *in, ad_tensor **extra, int *nextra, ghost *gh, int *ngh)
{
    size_t first = seg->mark.nnodes;
    for (size_t i = first; i < t->nnodes; i++) {
        const ad_node *n = t->nodes[i];
        for (int k = 0; k < n->nin; k++) {
            ad_tensor *x = n->in[k];
            bool before = x->node ? x->node->seq < first : !x->segment_freed;
            bool wanted = x->requires_grad || !x->node;
            bool view_in = !before && !x->node &&
                           !ad__arena_since(&t->arena, seg->mark.arena, x->storage);
            if (view_in && !storage_among(x->storage, in, nin, gh, *ngh) &&
                !storage_among(x->storage, extra, *nextra, NULL, 0)) {
                if (nin + *nextra + *ngh == CKPT_MAX) goto full;
                ghost *g = &gh[(*ngh)++];
                *g = (ghost){x->storage, x->dtype, x->ndim, {0}, {0}, x->offset};
                memcpy(g->shape, x->shape, sizeof g->shape);
                memcpy(g->strides, x->strides, sizeof g->strides);
                continue;
            }
            if (!wanted || !before || among(x, in, nin) || among(x, extra, *nextra)) continue;
            if (nin + *nextra + *ngh == CKPT_MAX) goto full;
            extra[(*nextra)++] = x;
        }
    }
    return 0;
full:
    return ad__err(fn, "the function reads more than %d tensors that require grad or are "
                       "leaves (inputs and tensors it uses from outside)", CKPT_MAX);
}

/* The outputs as views of the packed tensor P. */
static int unpack(ad_tensor *P, int nout, const int64_t *dims, ad_tensor **out)
{
    int64_t off = 0;
    for (int i = 0; i < nout; i++) {
        int nd = (int)*dims++;
        int64_t numel = ad__numel(nd, dims);
        out[i] = ad_reshape(ad_narrow(P, 0, off, numel), nd, dims);
        if (!out[i]) return -1;
        off += numel;
        dims += nd;
    }
    return 0;
}

/* Whether outs[0..nout) have the shapes in dims and dtype dt. */
static int check_dims(const char *fn, const char *when, ad_tensor *const *outs, int nout,
                      const int64_t *dims, ad_dtype dt)
{
    for (int i = 0; i < nout; i++) {
        int nd = (int)*dims++;
        if (outs[i]->dtype != dt || outs[i]->ndim != nd ||
            memcmp(outs[i]->shape, dims, (size_t)nd * sizeof *dims) != 0)
            return ad__err(fn, "output %d of the function is %s %s, but %s when first run: "
                               "a checkpointed function must compute the same shapes from the "
                               "same inputs", i, ad__desc(outs[i]), when,
                           ad__dims_str(nd, dims));
        dims += nd;
    }
    return 0;
}

/* ---- the op ------------------------------------------------------------------------ */

/* Replay: the function again, unrecorded, its outputs copied into the
 * packed output, its streams' positions noted for the backward pass. */
static int ckpt_fw(ad_node *nd)
{
    static const char *fn = "ad_tape_replay";
    ckpt_params *p = ad__params(nd);
    ad_tape *t = nd->out->tape;
    ad_tensor *outs[CKPT_MAX];
    ad__rng_log log;
    ad__segment seg;
    ad__segment_begin(t, &seg);
    int rc = run_fn(fn, t, p->f, p->ctx, p->nin, nd->in, p->nout, outs, &log);
    if (rc == 0) rc = check_dims(fn, "at replay", outs, p->nout, p->dims, p->dtype);
    int64_t off = 0;
    for (int i = 0; rc == 0 && i < p->nout; i++) {
        ad_tensor part = *nd->out;
        int64_t numel = ad__numel(outs[i]->ndim, outs[i]->shape);
        part.ndim = outs[i]->ndim;
        memcpy(part.shape, outs[i]->shape, sizeof part.shape);
        ad__contig_strides(part.ndim, part.shape, part.strides);
        part.offset = nd->out->offset + off;
        ad__copy_same(&part, outs[i]);
        off += numel;
    }
    if (rc == 0) {
        p->nrng = log.n;
        memcpy(p->rng, log.rng, sizeof p->rng);
        memcpy(p->counter, log.counter, sizeof p->counter);
    }
    ad__segment_kill(t, &seg);
    ad__segment_rewind(t, &seg);
    return rc;
}

static int ckpt_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    static const char *fn = "ad_backward";
    (void)gin; /* the segment's pass delivers every gradient itself */
    if (!ad__rule_running(n)) return 0; /* a graph's edge labels: nothing to show */
    ckpt_params *p = ad__params(n);
    ad_tape *t = n->out->tape;
    ad_tensor *outs[CKPT_MAX], *gs[CKPT_MAX];
    ad__segment seg;
    ad__segment_begin(t, &seg);
    /* the streams where the first run found them, then back where they are */
    uint64_t now[AD__RNG_LOG_MAX];
    for (int i = 0; i < p->nrng; i++) {
        now[i] = p->rng[i]->counter;
        p->rng[i]->counter = p->counter[i];
    }
    ad__rng_log log;
    bool prev = ad_set_grad_enabled(true);
    int rc = run_fn(fn, t, p->f, p->ctx, p->nin, n->in, p->nout, outs, &log);
    ad_set_grad_enabled(prev);
    for (int i = 0; i < p->nrng; i++) p->rng[i]->counter = now[i];
    if (rc == 0) rc = check_dims(fn, "at recomputation", outs, p->nout, p->dims, p->dtype);
    /* What the recomputation read must be what the node holds: a gradient
     * for anything else would reach a tensor the pass does not visit. */
    for (size_t i = seg.mark.nnodes; rc == 0 && i < t->nnodes; i++) {
        const ad_node *m = t->nodes[i];
        for (int k = 0; k < m->nin && rc == 0; k++) {
            const ad_tensor *x = m->in[k];
            if (x->requires_grad && x->node && x->node->seq < seg.mark.nnodes &&
                !among(x, n->in, n->nin))
                rc = ad__err(fn, "ad_checkpoint: at recomputation the function read a tensor "
                                 "(made by %s) that it did not read when first run: a "
                                 "checkpointed function must be a pure function of its inputs",
                             x->node->op->name);
        }
    }
    int64_t off = 0;
    const int64_t *dims = p->dims;
    for (int i = 0; rc == 0 && i < p->nout; i++) {
        int nd = (int)*dims++;
        int64_t numel = ad__numel(nd, dims);
        gs[i] = ad_reshape(ad_narrow(g, 0, off, numel), nd, dims);
        if (!gs[i]) rc = -1;
        off += numel;
        dims += nd;
    }
    if (rc == 0) rc = ad__backward_segment(n, &seg, p->nout, outs, gs);
    return rc;
}

static const ad_op OP_CHECKPOINT = {
    .name = "checkpoint",
    .formula = "y = f(x_1..x_n), the outputs packed, intermediates not kept; "
               "dx_i = the backward pass through f recomputed from x",
    .backward = ckpt_bw,
    .forward = ckpt_fw,
    .params_size = sizeof(ckpt_params),
};

const ad_op *const ad__ops_checkpoint[] = {&OP_CHECKPOINT, NULL};

/* ---- the call ---------------------------------------------------------------------- */

/* Without a recording there is nothing to give back: f runs as it is
 * (on the scope's scratch tape, whose results are copied out). */
static int run_plain(const char *fn, ad_scope *s, ad_checkpoint_fn f, void *ctx, int nin,
                     ad_tensor *const *in, int nout, ad_tensor **out)
{
    ad__rng_log log;
    int rc = run_fn(fn, s->tape, f, ctx, nin, in, nout, out, &log);
    for (int i = 0; rc == 0 && s->scratch && i < nout; i++) {
        out[i] = ad__copy(NULL, out[i]);
        if (!out[i]) {
            for (int j = 0; j < i; j++) ad_tensor_free(out[j]);
            rc = -1;
        }
    }
    ad_scope_end(s, NULL);
    if (rc)
        for (int i = 0; i < nout; i++) out[i] = NULL;
    return rc;
}

/* After f returned: checks its outputs were made by it, copies them into
 * heap memory, gives the segment back and records the node over the
 * packed outputs.  The outputs' views go to out. */
static int finish(const char *fn, ad_tape *t, ad__segment *seg, const ckpt_params *proto,
                  int nin, ad_tensor *const *in, ad_tensor **outs, ad_tensor **out)
{
    int nout = proto->nout;
    ad_tensor *all[CKPT_MAX];
    int nextra = 0;
    ad__segment_kill(t, seg);
    int rc = ad__segment_detached(t, seg)
                 ? ad__err(fn, "the function called ad_detach: a tensor carried to the next "
                               "step cannot be made inside a checkpoint")
                 : 0;
    for (int i = 0; rc == 0 && i < nout; i++)
        if (!outs[i]->segment_freed)
            rc = ad__err(fn, "output %d of the function was not computed by it (it is %s): "
                             "return a tensor the function computes from its inputs",
                         i, among(outs[i], in, nin) ? "one of its inputs, returned as it is"
                                                    : "a tensor made before the call");
    ghost gh[CKPT_MAX];
    int ngh = 0;
    if (rc == 0) rc = find_extras(fn, t, seg, nin, in, all + nin, &nextra, gh, &ngh);
    /* a persistent storage the segment's view held stays alive through
     * the rewind for the view that replaces it */
    for (int i = 0; rc == 0 && i < ngh; i++)
        if (!gh[i].storage->in_arena) gh[i].storage->refs++;
    size_t nd = 0, total = 0, esz = ad_dtype_size(outs[0]->dtype);
    for (int i = 0; rc == 0 && i < nout; i++) {
        nd += 1 + (size_t)outs[i]->ndim;
        total += (size_t)ad__numel(outs[i]->ndim, outs[i]->shape);
    }
    unsigned char *buf = rc == 0 ? ad__malloc(total * esz + nd * sizeof(int64_t) + 1) : NULL;
    if (rc == 0 && !buf) rc = ad__err(fn, "out of memory");
    int64_t *dims = buf ? (int64_t *)(void *)(buf + ((total * esz + 7) & ~(size_t)7)) : NULL;
    if (buf) { /* the outputs' values and shapes, before their memory is given back */
        size_t off = 0;
        int64_t *d = dims;
        for (int i = 0; i < nout; i++) {
            ad_storage st = {.data = buf + off * esz};
            ad_tensor dst = *outs[i];
            dst.storage = &st;
            dst.offset = 0;
            ad__contig_strides(dst.ndim, dst.shape, dst.strides);
            ad__copy_same(&dst, outs[i]);
            off += (size_t)ad__numel(outs[i]->ndim, outs[i]->shape);
            *d++ = outs[i]->ndim;
            for (int k = 0; k < outs[i]->ndim; k++) *d++ = outs[i]->shape[k];
        }
    }
    ad_dtype dt = outs[0]->dtype;
    ad__segment_rewind(t, seg);
    for (int i = 0; rc == 0 && i < ngh; i++) {
        ad_tensor base = {.storage = gh[i].storage, .dtype = gh[i].dtype};
        all[nin + nextra + i] = ad__view(fn, t, &base, gh[i].ndim, gh[i].shape, gh[i].strides,
                                         gh[i].offset);
        if (!all[nin + nextra + i]) rc = -1;
    }
    for (int i = 0; i < ngh; i++) ad__tape_drop_storage(gh[i].storage);
    nextra += ngh;
    if (rc) {
        ad__free(buf);
        return -1;
    }
    ad_tensor *P = ad__alloc(fn, t, dt, 1, (int64_t[]){(int64_t)total});
    if (P) memcpy(P->storage->data, buf, total * esz);
    memcpy(all, in, (size_t)nin * sizeof *in);
    ckpt_params p = *proto;
    p.dtype = dt;
    ad_node *node = NULL;
    P = ad__finish(P, 0, &OP_CHECKPOINT, nin + nextra, all, &p, &node);
    if (P && node) {
        ckpt_params *np = ad__params(node);
        np->dims = ad__arena_alloc(t, nd * sizeof(int64_t));
        if (!np->dims) P = NULL, ad__err(fn, "out of memory");
        else memcpy(np->dims, dims, nd * sizeof(int64_t));
    }
    rc = P ? unpack(P, nout, dims, out) : -1;
    ad__free(buf);
    return rc;
}

int ad_checkpoint(ad_checkpoint_fn f, const void *ctx, size_t ctx_size, int nin,
                  ad_tensor *const *in, int nout, ad_tensor **out)
{
    static const char *fn = "ad_checkpoint";
    if (!f) return ad__err(fn, "the function is NULL");
    if (nin < 1 || nin > CKPT_MAX || !in)
        return ad__err(fn, "need 1..%d inputs, got %d%s", CKPT_MAX, nin, in ? "" : " (in NULL)");
    if (nout < 1 || nout > CKPT_MAX || !out)
        return ad__err(fn, "need 1..%d outputs, got %d%s", CKPT_MAX, nout,
                       out ? "" : " (out NULL)");
    for (int i = 0; i < nin; i++) {
        char what[24];
        snprintf(what, sizeof what, "in[%d]", i);
        if (ad__check_arg(fn, what, in[i], false)) {
            for (int k = 0; k < nout; k++) out[k] = NULL;
            return -1;
        }
    }
    /* out may be in (h = f(h) written ad_checkpoint(f, c, 1, &h, 1, &h)) */
    ad_tensor *inv[CKPT_MAX];
    memcpy(inv, in, (size_t)nin * sizeof *in);
    in = inv;
    for (int i = 0; i < nout; i++) out[i] = NULL;
    ad_scope s;
    if (ad_scope_begin(&s, fn, nin, in, false)) return -1;
    ad_tape *t = s.tape;
    /* const is the caller's promise about its own memory; f receives a
     * plain pointer, to the caller's ctx or to the tape's copy */
    void *c = (void *)(uintptr_t)ctx;
    if (!ad_grad_enabled() || s.scratch) return run_plain(fn, &s, f, c, nin, in, nout, out);
    if (ctx && ctx_size) { /* the copy lives with the node, until the reset */
        c = ad__arena_alloc(t, ctx_size);
        if (!c) {
            ad_scope_end(&s, NULL);
            return ad__err(fn, "out of memory for a %zu-byte ctx", ctx_size);
        }
        memcpy(c, ctx, ctx_size);
    }
    ad_tensor *outs[CKPT_MAX];
    ad__rng_log log;
    ad__segment seg;
    ad__segment_begin(t, &seg);
    ad__record_all(1); /* so that find_extras sees what f reads (given back below) */
    int rc = run_fn(fn, t, f, c, nin, in, nout, outs, &log);
    ad__record_all(-1);
    ckpt_params proto = {f, c, nin, nout, log.n, AD_FLOAT32, NULL, {0}, {0}};
    memcpy(proto.rng, log.rng, sizeof proto.rng);
    memcpy(proto.counter, log.counter, sizeof proto.counter);
    if (rc) { /* the segment's memory is given back; the error stays */
        ad__segment_kill(t, &seg);
        ad__segment_rewind(t, &seg);
    } else {
        rc = finish(fn, t, &seg, &proto, nin, in, outs, out);
    }
    ad_scope_end(&s, NULL);
    if (rc)
        for (int i = 0; i < nout; i++) out[i] = NULL;
    return rc;
}

/* autodiff/replay.c - replayable tapes: record once, recompute many times.
 * See tape.h for the API and docs/design.md for how replay avoids
 * allocation. */
#include "tape_impl.h"

int ad_tape_set_replayable(ad_tape *t, bool on)
{
    if (ad__check_tape("ad_tape_set_replayable", t)) return -1;
    if (t->frozen) return ad__err("ad_tape_set_replayable", "the tape is already frozen");
    t->replayable = on;
    return 0;
}

int ad_tape_freeze(ad_tape *t)
{
    if (ad__check_tape("ad_tape_freeze", t)) return -1;
    if (!t->replayable)
        return ad__err("ad_tape_freeze", "the tape was not recorded as replayable "
                                         "(ad_tape_set_replayable before recording)");
    /* A second mark took in what was made after the first, whose headers
     * the next replay then handed out again while the recording still held
     * them (a loss read -7 -7 -7 of a later ad_full). */
    if (t->frozen)
        return ad__errc(AD_ERR_STATE, "ad_tape_freeze",
                        "the tape is already frozen (ad_tape_reset starts a new recording)");
    const hdr_list *h = &t->hdr[t->nresets & 1];
    t->mark = (tape_mark){ad__arena_mark(&t->arena), t->nnodes, t->ntensors, t->held, t->fixups,
                          h->cur, h->used};
    t->frozen = true;
    ad__hdr_next_post(t);
    ad__replay_note_versions(t);
    /* What was recorded so far stays valid through every replay; what is
     * made from now on lives until the next replay rewinds it. */
    t->mark_gen = t->gen;
    t->gen = ad__next_gen();
    return 0;
}

/* Undoes everything after the freeze point: references, gradient fixups,
 * nodes and arena space, exactly as a reset does for the whole tape. */
static void rewind_to_mark(ad_tape *t)
{
    const tape_mark *m = &t->mark;
    ad__tape_release_after(t, m->held, m->fixups);
    ad__hdr_next_post(t);
    t->gen = ad__next_gen();
    t->nnodes = m->nnodes;
    t->ntensors = m->ntensors;
    ad__arena_rewind(&t->arena, m->arena);
}

int ad_tape_replay(ad_tape *t, int n, ad_tensor *const *leaves, ad_tensor *const *values)
{
    static const char *fn = "ad_tape_replay";
    if (ad__check_tape(fn, t)) return -1;
    if (!t->frozen) return ad__errc(AD_ERR_STATE, fn, "the tape is not frozen (ad_tape_freeze after recording)");
    if (t->backward_recorded)
        return ad__errc(AD_ERR_STATE, fn,
                        "the recording computed with what a backward pass made (a gradient "
                        "penalty, say: a backward pass with AD_CREATE_GRAPH before the freeze), "
                        "and a replay does not run that pass again, nor recompute the masks and "
                        "constants its rules made unrecorded; record the forward pass only, "
                        "freeze, and run that backward after each replay (or record afresh)");
    if (n < 0 || (n > 0 && !leaves)) return ad__err(fn, "need n >= 0 leaves");
    for (int i = 0; i < n; i++) {
        if (ad__check_arg(fn, "leaves[i]", leaves[i], false)) return -1;
        if (leaves[i]->node) return ad__err(fn, "input %d is not a leaf", i);
        for (int j = 0; j < i; j++) /* two values for one leaf: which one? */
            if (leaves[j] == leaves[i])
                return ad__err(fn, "inputs %d and %d are the same leaf", j, i);
        bool has_value;
        if (!values) continue;
        if (ad__check_opt(fn, "values[i]", values[i], false, &has_value)) return -1;
        if (!has_value) continue;
        if (!ad__same_shape(leaves[i], values[i]) || leaves[i]->dtype != values[i]->dtype) {
            return ad__err(fn, "input %d was recorded as %s, got %s", i, ad__desc(leaves[i]),
                           ad__desc(values[i]));
        }
        /* a detach or a view of a value the recording computes has no
         * node but that value's storage: the replay would write the value
         * given and then recompute over it */
        if (leaves[i]->storage->computed_gen == t->mark_gen)
            return ad__errc(AD_ERR_STATE, fn,
                            "input %d (%s) is a value that the recording computes (a detach or "
                            "a view of one), which the replay recomputes over the value given; "
                            "give values to the leaves the recording reads", i,
                            ad__desc(leaves[i]));
    }
    /* An op recorded while none of its inputs required grad is on the
     * tape for replay only: backward does not go through it.  An input
     * that requires grad now (a layer unfrozen after the recording) would
     * get no gradient, silently; the recording must be made again.  (An
     * op recorded with grad mode off has no gradient path by request.) */
    for (size_t i = 0; i < t->nnodes; i++) {
        const ad_node *nd = t->nodes[i];
        if (nd->out->node == nd || !nd->op->backward || nd->no_grad) continue;
        for (int k = 0; k < nd->nin; k++)
            if (nd->in[k]->requires_grad)
                return ad__errc(AD_ERR_STATE, fn,
                                "input %d of op %zu (%s), %s, requires grad now but did not "
                                "when the tape was recorded, so the recording has no gradient "
                                "path through it: record again", k, i, nd->op->name,
                                ad__desc(nd->in[k]));
    }
    /* A copy made through the API while recording (which a replay does not
     * repeat) that read a value which has changed since, or is given a new
     * one now, would leave the recording's value in the tape. */
    for (int i = 0; values && i < n; i++)
        if (values[i] && leaves[i] != values[i] && ad_mark_modified(leaves[i])) return -1;
    if (ad__replay_check_copies(fn, t, n, leaves, values)) return -1;
    /* Values are copied in before the rewind, which frees what was made
     * after the freeze - values made there included.  A value that is
     * another input's memory (inputs swapped, say) is read before any
     * input is written: through a copy of its own. */
    ad_tensor *own[16], **tmp = n <= 16 ? own : ad__calloc((size_t)n, sizeof *tmp);
    if (!tmp) return ad__err(fn, "out of memory");
    int rc = 0;
    for (int j = 0; values && j < n; j++) {
        tmp[j] = NULL;
        if (!values[j] || values[j] == leaves[j]) continue;
        for (int i = 0; i < n && !tmp[j] && rc == 0; i++)
            if (i != j && values[i] && values[i] != leaves[i] &&
                leaves[i]->storage == values[j]->storage && !(tmp[j] = ad__copy(NULL, values[j])))
                rc = -1;
    }
    for (int i = 0; values && rc == 0 && i < n; i++)
        if (values[i] && leaves[i] != values[i] &&
            ad__copy_into(leaves[i], tmp[i] ? tmp[i] : values[i]))
            rc = -1;
    for (int j = 0; values && j < n; j++) ad_tensor_free(tmp[j]);
    if (tmp != own) ad__free(tmp);
    if (rc) return -1;
    rewind_to_mark(t);
    ad__tape_forget_leaf_grads(t);
    int changed = 0;
    ad_tape *prev_tape = ad_tape_activate(t);
    bool prev_mode = ad_set_grad_enabled(false);
    size_t stop = 0; /* the node a failure stopped at */
    for (size_t i = 0; i < t->nnodes; i++) {
        ad_node *nd = t->nodes[i];
        stop = i;
        nd->freed = false;
        /* The recording is about to hold values computed from the current
         * inputs (kernels write outputs without a version bump): those are
         * what backward must see. */
        for (int k = 0; k < nd->nin; k++) nd->ver[k] = nd->in[k]->storage->version;
        nd->ver[nd->nin] = nd->out->storage->version;
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
            /* the op's own message, named as the replay's */
            ad__err_in(fn, "op '%s' (node %zu of %zu) failed", nd->op->name, i, t->nnodes);
            break;
        }
        changed += c;
        if (ad__anomaly_on() && ad__check_forward(nd->op, nd->out, nd->nin, nd->in)) {
            rc = -1;
            break;
        }
    }
    ad_set_grad_enabled(prev_mode);
    ad_tape_activate(prev_tape);
    t->replay_failed_at = rc ? t->nodes[stop]->op->name : NULL;
    return rc ? -1 : changed;
}

/* autodiff/replay_guard.c - what a replay does not repeat.
 *
 * A replay re-runs the recorded nodes and nothing else: a copy or write
 * made through the API while the tape was recorded (ad_copy_into, ad_copy,
 * ad_fill, ad_set, a write through ad_data) happened once.  Three cases
 * would then give a replay other values than a new recording, silently:
 *  - a write into a value the recording computes: the replay recomputes
 *    it, without the write (refused at the write);
 *  - a copy of such a value, used by an op recorded afterwards: the
 *    replay keeps the recording's values in the copy (the copy's storage
 *    is marked, and the op is refused at its recording);
 *  - a copy into one of the tape's values of a value from outside (a
 *    leaf, a persistent tensor), which a replay is given new values for or
 *    an optimiser changes: noted, and refused at the replay if it has
 *    changed since the freeze.
 * A copy out of the tape into a persistent tensor that nothing recorded
 * reads is the caller's snapshot, as ad_item's value is. */
#include "tape_impl.h"

/* A copy from src into dst (a tensor of t), once per pair: the value
 * copied is src's at its last copy (src_ver), which a change before the
 * freeze already makes stale, as a change after it does. */
static int note_copy(ad_tape *t, ad_storage *src, ad_storage *dst, const char *fn)
{
    for (size_t i = 0; i < t->ncopies; i++)
        if (t->copies[i].src == src && t->copies[i].dst == dst) {
            t->copies[i].src_ver = src->version;
            return 0;
        }
    if (t->ncopies == t->copies_cap) {
        size_t cap = t->copies_cap ? 2 * t->copies_cap : 8;
        struct copy_note *c = ad__realloc(t->copies, cap * sizeof *c);
        if (!c) return ad__err(fn, "out of memory");
        t->copies = c;
        t->copies_cap = cap;
    }
    if (!src->in_arena) src->refs++;
    t->copies[t->ncopies++] = (struct copy_note){src, dst, src->version, dst->version, fn};
    return 0;
}

int ad__replay_guard(const char *fn, ad_tensor *dst, const ad_tensor *src)
{
    ad_tape *cand[3] = {ad_tape_active(), dst->tape, src ? src->tape : NULL};
    for (int i = 0; i < 3; i++) {
        ad_tape *t = cand[i];
        if (!ad__recording_for_replay(t) || (i > 0 && t == cand[0]) || (i == 2 && t == cand[1]))
            continue;
        if (dst->storage->computed_gen == t->gen)
            return ad__errc(AD_ERR_STATE, fn,
                            "%s is a value that this replayable tape's recording computes: a "
                            "replay recomputes it and would not repeat this write, which records "
                            "nothing; write with an op instead (ad_slice_scatter, ad_where, "
                            "ad_masked_fill)", ad__desc(dst));
        if (!src) continue;
        if (src->storage->computed_gen == t->gen || src->storage->copied_gen == t->gen)
            dst->storage->copied_gen = t->gen;
        else if (dst->tape == t && (!src->tape || src->tape == t) &&
                 note_copy(t, src->storage, dst->storage, fn))
            return -1;
    }
    return 0;
}

/* At the freeze: each destination's version after its copies (a later
 * write by the caller renews it).  The sources keep theirs from the copy:
 * one changed between the copy and the freeze (an optimiser's step after
 * the recording's backward) was replayed with the old value, silently. */
void ad__replay_note_versions(ad_tape *t)
{
    for (size_t i = 0; i < t->ncopies; i++) t->copies[i].dst_ver = t->copies[i].dst->version;
}

int ad__replay_check_copies(const char *fn, ad_tape *t, int n, ad_tensor *const *leaves,
                            ad_tensor *const *values)
{
    for (size_t i = 0; i < t->ncopies; i++) {
        const struct copy_note *c = &t->copies[i];
        /* the copy's destination written since (by the caller), or given
         * new values by this replay: the copy no longer matters */
        bool renewed = c->dst->version != c->dst_ver;
        for (int k = 0; k < n && !renewed; k++)
            renewed = values && values[k] && values[k] != leaves[k] && leaves[k]->storage == c->dst;
        if (renewed || c->src->version == c->src_ver) continue;
        return ad__errc(AD_ERR_STATE, fn,
                        "while the tape was recorded, %s copied a value from outside it "
                        "(a leaf or a persistent tensor) into one of its tensors, and that "
                        "value has changed since (new values for a leaf, an optimiser's "
                        "step): a replay does not repeat the copy, which records nothing; "
                        "record again, or use an op (ad_contiguous, ad_detach) for the copy",
                        c->fn);
    }
    return 0;
}

void ad__replay_release_copies(ad_tape *t)
{
    for (size_t i = 0; i < t->ncopies; i++) ad__tape_drop_storage(t->copies[i].src);
    t->ncopies = 0;
}

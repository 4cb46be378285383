/* autodiff/tape_impl.h - the tape's private layout, shared by tape.c
 * (recording), backward.c (the backward pass) and replay.c.  Not installed. */
#ifndef AUTODIFF_TAPE_IMPL_H
#define AUTODIFF_TAPE_IMPL_H

#include "arena.h"
#include "internal.h"

/* A reference the tape keeps until reset: to heap storage that one of its
 * tensors views, or to a persistent tensor a recorded op reads. */
typedef struct held {
    struct held *next;
    ad_storage *storage;
    ad_tensor *tensor;
} held;

/* Tensor headers of tape tensors come from slabs of fixed slots, which a
 * freed tape returns to a process-wide pool instead of the system: a
 * handle kept past ad_tape_free then still points at readable memory whose
 * stamp says it is dead, and a use is an error, not a crash.  Each tape
 * has two lists of slabs and switches at every reset, so the headers of the
 * previous step are not overwritten during this one and a handle kept
 * across one reset is always recognised as stale. */
#define HDR_SLOTS 128
typedef struct hdr_slab {
    struct hdr_slab *next;
    ad_tensor slot[HDR_SLOTS];
} hdr_slab;
typedef struct hdr_list {
    hdr_slab *first, *cur;
    size_t used; /* slots handed out from cur */
} hdr_list;

typedef struct grad_fixup {
    struct grad_fixup *next;
    ad_tensor *leaf;     /* persistent leaf whose grad now lives on this tape */
    ad_tensor *old_grad; /* its persistent grad before: its buffer again at reset */
} grad_fixup;

/* The state ad_tape_freeze records and ad_tape_replay returns to. */
typedef struct tape_mark {
    ad_arena_mark arena;
    size_t nnodes, ntensors;
    held *held;
    grad_fixup *fixups;
    hdr_slab *hdr_cur;
    size_t hdr_used;
} tape_mark;

struct ad_tape {
    struct ad_scalar_tape *scalars; /* first: see ad__scalar_slot */
    uint32_t magic;
    /* Stamps come from one process-wide counter, so no two tapes (nor two
     * lives of one recycled tape struct) share one.  A tensor made now gets
     * `gen`; `floor` is the first stamp of this step (since the last reset),
     * `prev_floor` that of the step before (carried tensors made then are
     * still valid); while frozen, stamps in [floor, mark_gen] are the
     * replayed recording, and `gen` moves on at every replay. */
    uint64_t gen, floor, prev_floor, mark_gen;
    uint64_t nresets; /* parity picks the header list and carry list */
    hdr_list hdr[2];   /* headers of ordinary tape tensors */
    /* Headers of tensors made while frozen (after ad_tape_freeze): two
     * lists alternated at each replay, as hdr at each reset, so a handle
     * kept across one replay meets no new tensor in its slot. */
    hdr_list post[2];
    uint64_t nreplays;
    /* An op recorded for replay read what a backward pass made (a
     * gradient: storage->backward_gen): a replay would not run that pass
     * again (nor recompute its rules' unrecorded masks and targets), so it
     * refuses. */
    bool backward_recorded;
    /* The last ad_tape_replay stopped at this op (NULL: it did not): the
     * values are part replayed, part the recording's, and backward refuses
     * until a replay succeeds or a reset. */
    const char *replay_failed_at;
    hdr_list carry[2]; /* headers of ad_detach results */
    struct ad_tape *pool_next; /* in the pool of freed tapes */
    ad_arena arena; /* tensors, nodes, backward's temporaries */
    ad_node **nodes;
    size_t nnodes, cap;
    size_t ntensors;
    unsigned epoch;
    held *held;
    grad_fixup *fixups;
    /* Copies into this tape's values, made through the API while it was
     * recorded as replayable, of values from outside it: the source's
     * storage (held) and the destination's (the tape's, alive until the
     * reset), with their versions at the freeze (replay_guard.c). */
    struct copy_note {
        ad_storage *src, *dst;
        uint32_t src_ver, dst_ver;
        const char *fn;
    } *copies;
    size_t ncopies, copies_cap;
    bool replayable, frozen;
    tape_mark mark;
};

/* A segment of a tape (ad_checkpoint): everything recorded and allocated
 * between ad__segment_begin and ad__segment_rewind is given back - arena
 * space, nodes, references - as a replay gives back what followed the
 * freeze.  ad__segment_kill first marks every tensor header handed out
 * since the beginning as freed (segment_freed, stamp 0), so a handle kept
 * from inside is an error that says so; headers are not reused until the
 * reset.  ad__segment_detached: whether ad_detach was called since (its
 * carried tensors would outlive the segment's memory). */
typedef struct ad__segment {
    tape_mark mark;
    hdr_slab *carry_cur;
    size_t carry_used;
} ad__segment;
void ad__segment_begin(ad_tape *t, ad__segment *m);
void ad__segment_kill(ad_tape *t, const ad__segment *m);
void ad__segment_rewind(ad_tape *t, const ad__segment *m);
bool ad__segment_detached(const ad_tape *t, const ad__segment *m);

/* The pass over a recomputed segment (backward.c), for the rule of a node
 * that propagates its gradient itself instead of returning one per input
 * (ad_checkpoint's): the nodes recorded since seg (from m->mark.nnodes
 * on) are walked newest first, seeded with outs[i]'s adjoint gs[i], under
 * the running pass's mode and sink, so that what reaches tensors made
 * before the segment - the caller's inputs, leaves - is added to their
 * adjoints or delivered exactly as if the segment's ops had been recorded
 * in place.  Without AD_CREATE_GRAPH the segment is then given back
 * (ad__segment_rewind), the adjoints and gradients that were made inside
 * it moved out first.  caller must be the node whose rule is running.
 * 0, or -1 with an error. */
int ad__backward_segment(ad_node *caller, ad__segment *seg, int nout, ad_tensor *const *outs,
                         ad_tensor *const *gs);
/* Whether n's rule is being run by a backward pass (not by the DOT
 * writer's ad__node_local_grads, which has no pass to propagate in). */
bool ad__rule_running(const ad_node *n);

/* Drops the gradient fixups and storage references taken since `fixups`
 * and `held` (NULL: all of them), as a reset does: persistent leaves get a
 * persistent copy of a gradient that lived on the tape. */
void ad__tape_release_after(ad_tape *t, held *held_stop, grad_fixup *fixups_stop);
/* Drops a storage reference a tape took (ad__tape_hold's; none for arena
 * storage). */
void ad__tape_drop_storage(ad_storage *s);

/* ---- leaf gradients (leaf_grad.c, which states the ownership rules) ----------
 * ad__leaf_grad_add: backward's g for leaf goes into its grad: with create
 * (AD_CREATE_GRAPH) as a recorded sum on tape t (a fixup when the leaf is
 * persistent), g itself as the first term only when priv (made for this
 * leaf alone by the rule that hands it over), else a recorded copy;
 * otherwise into its owned buffer, made when it has none.
 * 0, or -1 with an error.  ad__leaf_grad_release: the fixups taken since
 * `stop` are settled (persistent copies, the replaced gradients freed), as
 * a reset or a rewind does.  ad__leaf_grad_forget: grad lived where it is
 * gone (an arena rewound or reset): the leaf has none.
 * ad__leaf_grad_destroy: a persistent tensor being destroyed frees its
 * owned persistent buffer. */
int ad__leaf_grad_add(ad_tape *t, ad_tensor *leaf, ad_tensor *g, bool create, bool priv);
void ad__leaf_grad_release(ad_tape *t, grad_fixup *stop);
void ad__leaf_grad_forget(ad_tensor *t);
void ad__leaf_grad_destroy(ad_tensor *t);

/* The rule of node i of t applied to g = ones (the output's shape), without
 * recording anything: gin[k] (n->nin entries) = the local derivative of the
 * output with respect to input k when both are scalars (a vector-Jacobian
 * product with ones otherwise), NULL where no gradient flows or the node
 * cannot be differentiated (any more).  Temporaries live on t until its
 * reset.  For the DOT writer's edge labels (graph.c).  0 or -1 with an
 * error. */
int ad__node_local_grads(ad_tape *t, size_t i, ad_tensor **gin);

/* Per-thread state of tape.c that the backward pass and replay need. */
bool ad__set_in_backward(bool on);    /* returns the previous value */
/* At a freeze and at each replay: tensors made from now on take their
 * headers from the other list of post (tape.c, "handles"). */
void ad__hdr_next_post(ad_tape *t);
/* At a replay: every leaf whose gradient lives on t loses it. */
void ad__tape_forget_leaf_grads(ad_tape *t);
bool ad__tracing(void);
void ad__emit_trace(const ad_trace_event *ev);
/* Anomaly mode: checks an op's forward result (error if non-finite from
 * finite inputs), and formats the error for a bad result or gradient. */
int ad__check_forward(const ad_op *op, ad_tensor *out, int nin, ad_tensor *const *in);
int ad__anomaly_error(const char *what, const ad_op *op, const ad_tensor *bad, int64_t where,
                      int nin, ad_tensor *const *in, const char *label);

#endif

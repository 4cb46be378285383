/* autodiff/backward_impl.h - what backward.c shares with
 * backward_reclaim.c, the part of the pass that gives a rule's temporaries
 * back.  Not installed. */
#ifndef AUTODIFF_BACKWARD_IMPL_H
#define AUTODIFF_BACKWARD_IMPL_H

#include "tape_impl.h"

/* Where a computed gradient goes: with targets (ad_gradients) into the
 * matching slot, without (ad_backward) into leaves' grad. */
typedef struct sink {
    int n;
    ad_tensor *const *targets;
    ad_tensor **grads;
} sink;

/* ---- giving a rule's temporaries back (backward_reclaim.c) ---------------------
 * Without AD_CREATE_GRAPH, what a rule allocates is dead once its
 * gradients are handed on, except what they became: a first gradient
 * that is now its input's adjoint, a new sum, a leaf's new gradient
 * buffer, a target's gradient.  Those few are moved down to where the
 * rule started and the rest of the arena space it took is given back, so
 * the pass holds the forward's values, the adjoints, and one rule's
 * temporaries at a time instead of every rule's until the reset. */

enum { RECLAIM_MAX = 32 };

typedef struct reclaim {
    ad_arena_mark m;
    ad_tensor *g;        /* the adjoint the rule consumes, when it is the arena's top block */
    ad_arena_mark floor; /* where that block starts */
    held *held; /* the tape's references before the rule (a view of a
                   persistent weight takes one, in the arena) */
    int n;
    ad_tensor **slot[RECLAIM_MAX];
    ad_tensor *owner[RECLAIM_MAX]; /* whose adj or grad the slot is; NULL: a target's */
    ad_tensor *before[RECLAIM_MAX];
} reclaim;

/* A pass begins: what the last pass left at the arena's top is not the
 * adjoint of any node of this one. */
void ad__reclaim_pass_start(void);
/* Notes the slots n's pass may change before its rule runs; false when
 * it is not safe or not worth it (then ad__reclaim_end is not called). */
bool ad__reclaim_begin(ad_tape *t, const ad_node *n, ad_tensor *g, const sink *sk, bool create,
                       reclaim *r);
/* After the rule: moves the slots' new tensors down to where the rule
 * started and gives the rest of its arena space back.  0, or -1 with an
 * error (no memory for a header; the slots not moved are as before). */
int ad__reclaim_end(ad_tape *t, reclaim *r);

#endif

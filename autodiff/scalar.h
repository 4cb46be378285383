/* autodiff/scalar.h - the scalar API: differentiable doubles on a tape.
 *
 * For scalar programs (the micrograd and ADOL-C use): each ad_scalar is one
 * double recorded on a tape as a compact node (op code, operand indices and
 * the local partial derivatives), far cheaper than a tensor.  Scalars live
 * on the same ad_tape as tensors and are freed by ad_tape_reset() /
 * ad_tape_free() with everything else; an ad_scalar is a small handle,
 * passed by value, that must not be used after its tape is reset.
 *
 *     ad_tape *t = ad_tape_new();
 *     ad_scalar x = ad_scalar_var(t, 2.0), y = ad_scalar_var(t, 3.0);
 *     ad_scalar f = ad_smul(x, ad_ssin(y));       // f = x sin y
 *     ad_scalar_backward(f);
 *     ad_scalar_grad(x);                           // sin 3
 *     ad_scalar_grad(y);                           // 2 cos 3
 *     ad_tape_free(t);
 *
 * Errors.  A failed call returns an invalid handle (tape == NULL) and sets
 * ad_error() ("ad_sdiv: operands belong to different tapes").  An op given
 * an invalid handle returns an invalid handle and keeps the pending
 * message, so invalid handles propagate and a whole expression can be
 * checked once, with ad_scalar_ok() on its result and ad_error() for the
 * first thing that went wrong (since the message was last read or
 * cleared: another op's failure after it keeps it).  Other errors: handles of two different
 * tapes; a stale handle, recorded before its tape's last ad_tape_reset (each
 * handle carries the generation it was recorded in, the low 32 bits of a
 * process-wide counter that every reset and replay of every tape
 * advances, so a kept handle is recognised, never mistaken for the node
 * recorded at its index since, unless the counter has advanced by a
 * multiple of 2^32 meanwhile); a handle whose tape was freed (tape structures are recycled, not
 * returned to the system, so this is an error, not a crash); a NULL or
 * freed tape; out of memory.  The value and
 * gradient of an invalid or stale handle read as NAN, and
 * ad_scalar_backward() of one returns -1.
 *
 * Derivatives at kinks follow the tensor API: relu'(0) = 0, abs'(0) = 0,
 * max and min give 1/2 to each operand on a tie.  The reverse sweep skips
 * nodes whose adjoint is exactly 0, so a node y does not depend on never
 * turns an infinite partial (sqrt at 0) into NaN gradients: IEEE
 * 0 * inf = NaN is not formed there.
 *
 * Cost.  One node is a value and an op code (9 bytes), 16 more per operand
 * (its id, the node's id and the local partial), 8 for a constant operand
 * and 8 for its adjoint; recording one op is a few predictable checks and
 * stores, and the reverse sweep is one multiply-add per operand with no
 * dispatch.
 */
#ifndef AUTODIFF_SCALAR_H
#define AUTODIFF_SCALAR_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ad_scalar {
    ad_tape *tape; /* NULL for an invalid handle */
    uint32_t id;   /* index of the node on the tape */
    uint32_t gen;  /* the tape's generation when recorded (stale after reset) */
} ad_scalar;

/* An independent variable (a leaf whose gradient is wanted). */
AD_API ad_scalar ad_scalar_var(ad_tape *tape, double value);
/* A constant: no gradient flows into it (ad_scalar_grad() of it reads 0). */
AD_API ad_scalar ad_scalar_const(ad_tape *tape, double value);
AD_API bool ad_scalar_ok(ad_scalar s);
AD_API double ad_scalar_value(ad_scalar s);
/* d(y)/d(s) from the last ad_scalar_backward(y) on s's tape (0 before any,
 * when y does not depend on s, when s was recorded after y, and for
 * constants).  s may be any scalar, not only a variable. */
AD_API double ad_scalar_grad(ad_scalar s);
/* Reverse sweep from y: sets every scalar's gradient d(y)/d(s).  Previous
 * scalar gradients on the tape are overwritten, not accumulated.
 * Scalars recorded after y are ignored. */
AD_API int ad_scalar_backward(ad_scalar y);
/* The gradient of y with respect to n scalars in one call: runs
 * ad_scalar_backward(y) and stores ad_scalar_grad(xs[k]) into grad[k] for
 * k < n.  Returns 0, or -1 with an error set (y or some xs[k] invalid,
 * stale or of another tape than y, n < 0, xs or grad NULL with n > 0), in
 * which case grad is untouched. */
AD_API int ad_scalar_gradient(ad_scalar y, int n, const ad_scalar *xs, double *grad);
/* Replay (record once, evaluate many times): sets variables vars[k] to
 * values[k] for k < n, then re-evaluates every scalar node on the tape in
 * recording order, values and local partials, so ad_scalar_backward(y)
 * afterwards gives the gradient at the new point.  Allocates nothing.  The
 * recording's structure is kept: an `if` that C code took while recording
 * is not taken again.  Returns the number of kinks (max, min, relu, abs)
 * whose branch differs from the previous evaluation - ADOL-C's branch
 * switches: the gradient is then that of the recorded branch structure, and
 * a re-recording is needed only when C control flow depended on the
 * switched comparison.  -1 on error (a handle that is not a live variable
 * of this tape, NULL arrays). */
AD_API int ad_scalar_replay(ad_tape *tape, int n, const ad_scalar *vars, const double *values);
/* The gradient at a new point in one call (ADOL-C's gradient()): replays
 * the tape with vars[k] = values[k], then stores d(y)/d(vars[k]) into
 * grad[k], k < n: ad_scalar_replay(y's tape, n, vars, values) followed by
 * ad_scalar_gradient(y, n, vars, grad), with the handles checked once
 * instead of twice.  Returns the replay's count of switched kinks (>= 0),
 * or -1 with an error set (y invalid or stale, a vars[k] that is not a
 * live variable of y's tape, n < 0, a NULL array with n > 0), in which
 * case neither the tape nor grad has changed. */
AD_API int ad_scalar_replay_gradient(ad_scalar y, int n, const ad_scalar *vars,
                                     const double *values, double *grad);
/* Number of scalar nodes recorded on the tape since the last reset (0 for
 * a NULL tape).  Every var, const and op result is one node. */
AD_API size_t ad_scalar_count(const ad_tape *tape);
/* Makes room for n scalar nodes in all, so that recording up to n nodes
 * does not allocate (capacity grows by doubling anyway; this only saves
 * the reallocations).  Errors: NULL tape, out of memory, n beyond the
 * 2^32 - 1 nodes a tape can hold. */
AD_API int ad_scalar_reserve(ad_tape *tape, size_t n);
/* Nodes the tape can hold before it allocates again.  ad_tape_reset()
 * keeps it, so recording the same computation after a reset allocates
 * nothing. */
AD_API size_t ad_scalar_capacity(const ad_tape *tape);
/* For tests: number of system allocations (malloc/realloc) the tape's
 * scalar storage has made since the tape was created. */
AD_API size_t ad_scalar_alloc_count(const ad_tape *tape);

/* Binary: formula; partials used by the reverse sweep.  Each records one
 * node holding the value and both partials, computed now. */
AD_API ad_scalar ad_sadd(ad_scalar a, ad_scalar b); /* a + b; 1, 1 */
AD_API ad_scalar ad_ssub(ad_scalar a, ad_scalar b); /* a - b; 1, -1 */
AD_API ad_scalar ad_smul(ad_scalar a, ad_scalar b); /* a b; b, a */
AD_API ad_scalar ad_sdiv(ad_scalar a, ad_scalar b); /* a / b; 1/b, -a/b^2 */
/* a^b; b a^(b-1) as IEEE pow evaluates it also at a = 0 (0 for b > 1, 1 for
 * b = 1, inf for 0 < b < 1), except 0 for b = 0 (a^0 is constant); a^b ln a,
 * taken as 0 at a = 0 (NaN for a < 0). */
AD_API ad_scalar ad_spow(ad_scalar a, ad_scalar b);
AD_API ad_scalar ad_smax(ad_scalar a, ad_scalar b); /* max; 1 to the larger, 1/2 each on a tie */
AD_API ad_scalar ad_smin(ad_scalar a, ad_scalar b); /* min; likewise */
/* With a constant c on one side (no node made for c; c is kept in the
 * result's node). */
AD_API ad_scalar ad_sadd_c(ad_scalar a, double c);  /* a + c */
AD_API ad_scalar ad_smul_c(ad_scalar a, double c);  /* a c */
AD_API ad_scalar ad_ssub_c(ad_scalar a, double c);  /* a - c */
AD_API ad_scalar ad_scsub(double c, ad_scalar a);   /* c - a */
AD_API ad_scalar ad_sdiv_c(ad_scalar a, double c);  /* a / c */
AD_API ad_scalar ad_scdiv(double c, ad_scalar a);   /* c / a */
AD_API ad_scalar ad_spow_c(ad_scalar a, double c);  /* a^c; as ad_spow */

/* Unary: same formulas and kink conventions as the tensor ops
 * (ops_pointwise.h): log'(x) = 1/x, sqrt'(0) = inf, tan' = 1 + tan^2,
 * tanh' = 1 - tanh^2, sigmoid and its derivative computed from e^-|x| so
 * neither overflows nor loses its digits for large |x|, relu'(0) = 0,
 * abs'(0) = 0. */
AD_API ad_scalar ad_sneg(ad_scalar x);
AD_API ad_scalar ad_sexp(ad_scalar x);
AD_API ad_scalar ad_slog(ad_scalar x);
AD_API ad_scalar ad_ssqrt(ad_scalar x);
AD_API ad_scalar ad_ssin(ad_scalar x);
AD_API ad_scalar ad_scos(ad_scalar x);
AD_API ad_scalar ad_stan(ad_scalar x);
AD_API ad_scalar ad_stanh(ad_scalar x);
AD_API ad_scalar ad_ssigmoid(ad_scalar x);
AD_API ad_scalar ad_srelu(ad_scalar x);
AD_API ad_scalar ad_sabs(ad_scalar x);
AD_API ad_scalar ad_ssquare(ad_scalar x);

#ifdef __cplusplus
}
#endif
#endif

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
 * Errors.  An operation on an invalid handle (from a failed call), or on
 * handles of two different tapes, returns an invalid handle (tape == NULL)
 * and sets ad_error(); invalid handles propagate, so a whole expression can
 * be checked once with ad_scalar_ok().
 */
#ifndef AUTODIFF_SCALAR_H
#define AUTODIFF_SCALAR_H

#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ad_scalar {
    ad_tape *tape; /* NULL for an invalid handle */
    uint32_t id;   /* index of the node on the tape */
} ad_scalar;

/* An independent variable (a leaf whose gradient is wanted). */
ad_scalar ad_scalar_var(ad_tape *tape, double value);
/* A constant: no gradient flows into it. */
ad_scalar ad_scalar_const(ad_tape *tape, double value);
bool ad_scalar_ok(ad_scalar s);
double ad_scalar_value(ad_scalar s);
/* d(y)/d(s) from the last ad_scalar_backward(y) on s's tape (0 before any,
 * or when y does not depend on s). */
double ad_scalar_grad(ad_scalar s);
/* Reverse sweep from y: sets every scalar's gradient d(y)/d(s).  Previous
 * scalar gradients on the tape are overwritten, not accumulated.
 * Scalars recorded after y are ignored. */
int ad_scalar_backward(ad_scalar y);
/* Number of scalar nodes recorded on the tape since the last reset. */
size_t ad_scalar_count(const ad_tape *tape);

/* Binary: formula; partials used by the reverse sweep. */
ad_scalar ad_sadd(ad_scalar a, ad_scalar b); /* a + b; 1, 1 */
ad_scalar ad_ssub(ad_scalar a, ad_scalar b); /* a - b; 1, -1 */
ad_scalar ad_smul(ad_scalar a, ad_scalar b); /* a b; b, a */
ad_scalar ad_sdiv(ad_scalar a, ad_scalar b); /* a / b; 1/b, -a/b^2 */
ad_scalar ad_spow(ad_scalar a, ad_scalar b); /* a^b; b a^(b-1), a^b ln a (0 at a = 0) */
ad_scalar ad_smax(ad_scalar a, ad_scalar b); /* max; 1 to the larger, 1/2 each on a tie */
ad_scalar ad_smin(ad_scalar a, ad_scalar b); /* min; likewise */
/* With a constant c on one side (no node made for c). */
ad_scalar ad_sadd_c(ad_scalar a, double c);  /* a + c */
ad_scalar ad_smul_c(ad_scalar a, double c);  /* a c */
ad_scalar ad_ssub_c(ad_scalar a, double c);  /* a - c */
ad_scalar ad_scsub(double c, ad_scalar a);   /* c - a */
ad_scalar ad_sdiv_c(ad_scalar a, double c);  /* a / c */
ad_scalar ad_scdiv(double c, ad_scalar a);   /* c / a */
ad_scalar ad_spow_c(ad_scalar a, double c);  /* a^c */

/* Unary: same formulas and kink conventions as the tensor ops (ops_pointwise.h). */
ad_scalar ad_sneg(ad_scalar x);
ad_scalar ad_sexp(ad_scalar x);
ad_scalar ad_slog(ad_scalar x);
ad_scalar ad_ssqrt(ad_scalar x);
ad_scalar ad_ssin(ad_scalar x);
ad_scalar ad_scos(ad_scalar x);
ad_scalar ad_stan(ad_scalar x);
ad_scalar ad_stanh(ad_scalar x);
ad_scalar ad_ssigmoid(ad_scalar x);
ad_scalar ad_srelu(ad_scalar x);
ad_scalar ad_sabs(ad_scalar x);
ad_scalar ad_ssquare(ad_scalar x);

#ifdef __cplusplus
}
#endif
#endif

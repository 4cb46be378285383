/* autodiff/ops_pointwise.h - elementwise ops.
 *
 * Binary ops broadcast their inputs by numpy's rules (shapes aligned on the
 * right; an extent of 1 stretches, a missing leading dimension counts as 1)
 * and require the same dtype; the result has the broadcast shape, and each
 * input's gradient is summed back to that input's shape.  Unary ops keep
 * the shape.  Inputs may have any strides (transposed, expanded, narrowed
 * views); results are new contiguous tensors of the inputs' dtype, owned as
 * tape.h says.  Floating dtypes only (ad_where's condition excepted).
 *
 * Errors (NULL returned, message from ad_error()):
 *   NULL argument          "ad_add: argument 'a' is NULL" (an argument that
 *                          is NULL because an inner call failed keeps that
 *                          call's message instead)
 *   integer dtype          "ad_exp: argument 'x' must be float32 or float64, got int64"
 *   dtypes differ          "ad_mul: dtypes differ: float32 vs float64"
 *   shapes                 "ad_add: shapes [2,3] and [4] cannot be broadcast together"
 *   tapes                  inputs on two different tapes; an input requiring
 *                          grad with no tape to record on (tape.h)
 *
 * Each line gives the formula and, after ';', the derivative the backward
 * pass uses (g = dL/dy).  Derivatives at kinks are chosen as PyTorch does and
 * documented on the op.  Every rule is built from these same ops, so second
 * and higher derivatives (AD_CREATE_GRAPH) are exact too.
 */
#ifndef AUTODIFF_OPS_POINTWISE_H
#define AUTODIFF_OPS_POINTWISE_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- binary (broadcasting) ---- */
AD_API ad_tensor *ad_add(ad_tensor *a, ad_tensor *b);      /* a + b; da = g, db = g */
AD_API ad_tensor *ad_sub(ad_tensor *a, ad_tensor *b);      /* a - b; da = g, db = -g */
AD_API ad_tensor *ad_mul(ad_tensor *a, ad_tensor *b);      /* a * b; da = g b, db = g a */
AD_API ad_tensor *ad_div(ad_tensor *a, ad_tensor *b);      /* a / b; da = g / b, db = -g a / b^2 */
/* a^b; da = g b a^(b-1), db = g a^b ln a.  Where a == 0, db is taken as 0
 * (its limit for b > 0), and at b == 0 with a == 0 or NaN da is 0 (a^0 = 1
 * is constant), not 0 * inf or NaN.  a < 0 with a non-integer b gives NaN,
 * as pow() does. */
AD_API ad_tensor *ad_pow(ad_tensor *a, ad_tensor *b);
/* max(a, b) / min(a, b) elementwise; where a == b the gradient is split
 * evenly, g/2 to each (as PyTorch's maximum/minimum).  A NaN operand is
 * the result (NaN propagates from either side, a's when both are) and
 * gets g, the other 0 (PyTorch gives g to both). */
AD_API ad_tensor *ad_maximum(ad_tensor *a, ad_tensor *b);
AD_API ad_tensor *ad_minimum(ad_tensor *a, ad_tensor *b);
/* atan2(a, b): the angle of the point (b, a), in (-pi, pi] (C's atan2; at
 * a = b = 0 it is 0 and the gradient is NaN, 0/0).
 * da = g b / (a^2 + b^2), db = -g a / (a^2 + b^2) */
AD_API ad_tensor *ad_atan2(ad_tensor *a, ad_tensor *b);

/* ---- tensor-scalar forms: the scalar becomes a 0-d constant of a's dtype
 * and the binary op above is applied (and recorded) with it. ---- */
AD_API ad_tensor *ad_add_scalar(ad_tensor *a, double s);   /* a + s */
AD_API ad_tensor *ad_sub_scalar(ad_tensor *a, double s);   /* a - s */
AD_API ad_tensor *ad_rsub_scalar(ad_tensor *a, double s);  /* s - a */
AD_API ad_tensor *ad_mul_scalar(ad_tensor *a, double s);   /* a * s */
AD_API ad_tensor *ad_div_scalar(ad_tensor *a, double s);   /* a / s */
AD_API ad_tensor *ad_rdiv_scalar(ad_tensor *a, double s);  /* s / a */
AD_API ad_tensor *ad_pow_scalar(ad_tensor *a, double s);   /* a^s */

/* ---- unary ---- */
AD_API ad_tensor *ad_neg(ad_tensor *x);        /* -x; -g */
AD_API ad_tensor *ad_exp(ad_tensor *x);        /* e^x; g e^x */
AD_API ad_tensor *ad_log(ad_tensor *x);        /* ln x (NaN for x < 0, -inf at 0); g / x */
/* ln(1 + x), exact near 0 where log(1 + x) loses digits (NaN for x < -1,
 * -inf at -1); g / (1 + x) */
AD_API ad_tensor *ad_log1p(ad_tensor *x);
AD_API ad_tensor *ad_expm1(ad_tensor *x);      /* e^x - 1, exact near 0; g (y + 1) */
AD_API ad_tensor *ad_sqrt(ad_tensor *x);       /* sqrt x; g / (2 sqrt x) */
AD_API ad_tensor *ad_sin(ad_tensor *x);        /* sin x; g cos x */
AD_API ad_tensor *ad_cos(ad_tensor *x);        /* cos x; -g sin x */
AD_API ad_tensor *ad_tan(ad_tensor *x);        /* tan x; g (1 + tan^2 x) */
AD_API ad_tensor *ad_tanh(ad_tensor *x);       /* tanh x; g (1 - tanh^2 x) */
/* s = 1/(1+e^-x), computed from e^-|x| so it never overflows: exactly 0 and
 * 1 far out, full relative precision in the left tail.  g s (1-s) */
AD_API ad_tensor *ad_sigmoid(ad_tensor *x);
AD_API ad_tensor *ad_relu(ad_tensor *x);       /* max(x, 0); g [x > 0] (0 at x = 0) */
/* x for x > 0, slope x otherwise; g [x > 0] + g slope [x <= 0] (slope at 0).
 * Error: "ad_leaky_relu: slope must be finite, got nan". */
AD_API ad_tensor *ad_leaky_relu(ad_tensor *x, double slope);
/* x Phi(x) with Phi the normal CDF (the exact erf form, not the tanh
 * approximation; computed with erfc, so accurate in the left tail);
 * g (Phi(x) + x phi(x)), phi the normal density */
AD_API ad_tensor *ad_gelu(ad_tensor *x);
AD_API ad_tensor *ad_erf(ad_tensor *x);        /* erf x; g 2/sqrt(pi) e^(-x^2) */
/* erfc x = 1 - erf x, accurate where 1 - erf x cancels (x > 3: erfc 10 =
 * 2.1e-45); -g 2/sqrt(pi) e^(-x^2) */
AD_API ad_tensor *ad_erfc(ad_tensor *x);
/* ln(1 + e^x), computed as max(x,0) + log1p(e^-|x|) so it never
 * overflows; g sigmoid(x) */
AD_API ad_tensor *ad_softplus(ad_tensor *x);
AD_API ad_tensor *ad_abs(ad_tensor *x);        /* |x|; g sign(x) (0 at x = 0) */
AD_API ad_tensor *ad_square(ad_tensor *x);     /* x^2; 2 g x */
AD_API ad_tensor *ad_reciprocal(ad_tensor *x); /* 1/x; -g / x^2 */
/* min(max(x, lo), hi); pass -INFINITY / INFINITY for no bound.
 * g [lo <= x <= hi] (boundaries pass the gradient, as PyTorch).
 * Errors: "ad_clamp: lo 2 > hi 1", "ad_clamp: bounds must not be NaN". */
AD_API ad_tensor *ad_clamp(ad_tensor *x, double lo, double hi);

/* ---- selection ---- */
/* cond != 0 ? a : b, broadcasting all three; cond may have any dtype
 * (int64, or a float mask such as ad_gt's; NaN counts as true), a and b
 * are floats of one dtype, which the result has.
 * da = where(cond, g, 0), db = where(cond, 0, g), each summed to its input's
 * shape; a float cond that requires grad gets zeros.  Error for shapes:
 * "ad_where: shapes [4] (cond), [3] (a) and [3] (b) cannot be broadcast together" */
AD_API ad_tensor *ad_where(ad_tensor *cond, ad_tensor *a, ad_tensor *b);

/* ---- comparisons: 1 where true, 0 elsewhere, in a's dtype, broadcasting.
 * Not differentiable: they have no backward rule and their results never
 * require grad (their derivative is 0 wherever it exists); used for masks.
 * On a replayable tape they are recorded like any op, and ad_tape_replay
 * reports how many of their results (and sign's) changed. ---- */
AD_API ad_tensor *ad_gt(ad_tensor *a, ad_tensor *b);
AD_API ad_tensor *ad_ge(ad_tensor *a, ad_tensor *b);
AD_API ad_tensor *ad_lt(ad_tensor *a, ad_tensor *b);
AD_API ad_tensor *ad_le(ad_tensor *a, ad_tensor *b);
AD_API ad_tensor *ad_eq(ad_tensor *a, ad_tensor *b);
AD_API ad_tensor *ad_sign(ad_tensor *x); /* -1, 0 or 1 (NaN stays NaN); not differentiable */

#ifdef __cplusplus
}
#endif
#endif

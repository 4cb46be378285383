/* autodiff/gradcheck.h - numerical gradient checking.
 *
 * ad_gradcheck compares the gradients the tape computes with central
 * differences, (f(x + h) - f(x - h)) / 2h, element by element, in float64,
 * as PyTorch's torch.autograd.gradcheck does: an entry of the Jacobian
 * d(output)/d(input) passes when
 *
 *     |analytic - numeric| <= atol + rtol |numeric|
 *
 * with both values finite.  What is different from a bare comparison:
 *
 *   - The step is relative: h = eps max(1, |x|) for the element x being
 *     perturbed, so a large x is not perturbed below its own rounding.
 *   - An entry that disagrees at that step is not declared wrong at once.
 *     Near a domain edge (log or sqrt at 1e-6, where x - h crosses 0) or
 *     where f curves fast, the truncation error of the central difference,
 *     f''' h^2 / 6, can exceed the tolerance although the gradient is
 *     right.  The entry is retried with h/2, h/4, ... h/1024 and, for
 *     |x| < 1/1024, with the purely relative steps eps |x| and eps |x| / 2;
 *     at each retry both the central difference D(h_k) and its Richardson
 *     extrapolation D(h_k) + (D(h_k) - D(h_{k-1})) / (r^2 - 1), r =
 *     h_{k-1} / h_k, which cancels the h^2 error term, may pass it.  A
 *     retried estimate only counts when its rounding error,
 *     about 16 DBL_EPSILON (|f(x+h)| + |f(x-h)|) / 2h, is below a tenth of
 *     the tolerance, and never when f did not move at a step although a
 *     wider one moved it (f rounds coarser than assumed there: float32
 *     inside, cancellation; its 0 would agree with a missing gradient), so
 *     shrinking the step cannot make noise agree with a wrong gradient.  A
 *     wrong gradient disagrees with every estimate, because they all
 *     converge to the true derivative.
 *   - Non-finite values fail.  NaN or +-inf on either side fails the entry
 *     unless analytic and numeric are the same infinity (then the entry
 *     passes and the report says so).  Before, an infinite numeric
 *     derivative made the right-hand side infinite and passed any analytic
 *     value (0^x at x = 0: analytic 0, numeric -inf).
 *   - A check that compared nothing fails: no input requires grad, the
 *     inputs that do have no elements, or the output has no elements.  It
 *     returns 0 with ad_error() saying "nothing was checked" and why (0,
 *     not -1: the check ran and did not pass; -1 stays for calls that
 *     could not run).
 *   - Every entry is checked; on failure the message names how many
 *     entries disagree and the worst of them: input index, element index
 *     (in the input's shape), output element, analytic, numeric, absolute
 *     and relative error, the step, and whether the numeric value is a
 *     Richardson extrapolation.  The worst entry is the one with the
 *     largest ratio |analytic - numeric| / (atol + rtol |numeric|);
 *     a non-finite mismatch counts as an infinite ratio.
 */
#ifndef AUTODIFF_GRADCHECK_H
#define AUTODIFF_GRADCHECK_H

#include <stdbool.h>

#include "export.h"
#include "transforms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The function under test is an ad_func (transforms.h).  The inputs it
 * receives are float64 copies of the caller's tensors on a tape owned by the
 * checker, which is also active while f runs, so constants f makes with
 * ad_tensor_tape(inputs[0]) or ad_tape_active() are freed with it.  The
 * copies keep the caller's layout (a transposed or stepped view is one
 * too, so an op's path for such inputs is the one checked; an expanded
 * input is made contiguous), not its dtype: a rule wrong only in float32
 * is not seen. */

typedef struct ad_gradcheck_opts {
    double eps;   /* relative finite-difference step: h = eps max(1, |x|); default 1e-6 */
    double atol;  /* default 1e-5 */
    double rtol;  /* default 1e-3 */
    FILE *report; /* if not NULL, every mismatch, every entry accepted as the same
                     infinity, and the verdict are also printed here, one per line */
} ad_gradcheck_opts;
#define AD_GRADCHECK_DEFAULTS {1e-6, 1e-5, 1e-3, NULL}

/* Checks d f / d inputs[i] for every input that requires grad (float32
 * inputs are checked in float64; int64 inputs are passed through
 * unchanged).  The caller's tensors are only read.  opts may be NULL for
 * the defaults.  f is evaluated 1 + 2 (number of input elements checked)
 * times, plus one backward pass per output element; an input element with
 * an entry that disagrees at the first step costs up to 24 more
 * evaluations (the retries).
 * Returns
 *    1 when every compared entry agrees;
 *    0 when some entry disagrees (ad_error(): "ad_gradcheck: 1 of 4
 *      Jacobian entries disagree; the worst: input 0 element [0,1], output
 *      element [1]: analytic 0.5 vs numeric 1 (difference 0.5, relative
 *      0.5 > atol 1e-05 + rtol 0.001 * |numeric|; central difference with
 *      step 1e-06, the closest of steps 1e-06 down to ...)"), or when
 *      nothing was checked ("ad_gradcheck: nothing was checked: no input
 *      requires grad ...");
 *   -1 on error (f failed, bad arguments, out of memory). */
AD_API int ad_gradcheck(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                 const ad_gradcheck_opts *opts);

/* What a check found (ad_gradcheck_ex, ad_gradgradcheck_ex). */
typedef struct ad_gradcheck_result {
    int64_t checked;  /* Jacobian entries compared */
    int64_t failed;   /* how many of them disagree */
    int64_t infinite; /* how many passed as the same infinity on both sides */
    /* The worst entry (largest ratio; the first of equals); input is -1
     * and the doubles NaN when no entry was compared: */
    int input;        /* index into inputs[] of the perturbed input */
    int grad_of;      /* ad_gradgradcheck_ex: the input whose gradient is the
                         function checked (output indexes its elements);
                         -1 for ad_gradcheck_ex */
    int64_t element;  /* flat row-major index of the element of inputs[input] */
    int64_t output;   /* flat row-major index of the output element */
    double analytic;  /* d output / d element from the tape */
    double numeric;   /* the finite-difference estimate compared with it */
    double abs_err;   /* |analytic - numeric| (0 for the same infinity) */
    double rel_err;   /* abs_err / |numeric|: 0 when abs_err is 0, inf when
                         only numeric is 0, abs_err when that is not finite */
    double ratio;     /* abs_err / (atol + rtol |numeric|): passes when <= 1,
                         inf for a non-finite mismatch */
    double step;      /* the step h of that estimate */
    bool richardson;  /* numeric is a Richardson extrapolation (steps r h and h) */
} ad_gradcheck_result;

/* ad_gradcheck, also filling *result (when not NULL) with what it found,
 * on every return: after -1 it holds what was compared before the error. */
AD_API int ad_gradcheck_ex(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                    const ad_gradcheck_opts *opts, ad_gradcheck_result *result);

/* Second-order check, like PyTorch's gradgradcheck: with a fixed random
 * grad_output v (seeded), the function x -> v . df/dx_i (the
 * vector-Jacobian product, computed by ad_backward with AD_CREATE_GRAPH)
 * is itself checked with ad_gradcheck for each input i that requires grad,
 * which compares the recorded backward pass's own gradients against finite
 * differences of the first derivatives.  Every such input is checked; on
 * failure the message is that of the input with the worst entry, prefixed
 * "ad_gradgradcheck: second derivatives through the gradient of input i:",
 * and the result of ad_gradgradcheck_ex sums the counts over all inputs
 * and holds the worst entry, with grad_of = i.  When those pass, the
 * recorded gradient's derivative in v is checked along one seeded random
 * direction d of the inputs (scaled to each element as the steps are):
 * the backward pass of s = sum_i <d_i, df/dx_i^T v> in v gives df/dx d,
 * which central differences of f along d give too (a rule that detaches
 * or mishandles its incoming gradient is right in x and wrong there;
 * failure message "the derivative in the incoming gradient g along a random
 * direction ..."), one backward pass and six evaluations of f, where
 * checking every element of v (ad_custom_check does) costs the output's
 * size in both.  An input with no elements has no
 * gradient to differentiate and is skipped.  Same returns as ad_gradcheck,
 * including 0 with "nothing was checked" when no input requires grad.
 * When f's output does not require grad (no recorded op joins it to an
 * input: a comparison, a detach, an op without a backward), the tape's
 * gradient is 0 wherever x goes and its derivatives are 0: right exactly
 * when f's first derivatives are 0, so those are checked (ad_gradcheck),
 * and a failure says "its gradient is 0 on the tape, but its first
 * derivatives are not". */
AD_API int ad_gradgradcheck(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                     const ad_gradcheck_opts *opts);
AD_API int ad_gradgradcheck_ex(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                        const ad_gradcheck_opts *opts, ad_gradcheck_result *result);

#ifdef __cplusplus
}
#endif
#endif

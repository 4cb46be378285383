/* autodiff/gradcheck.h - numerical gradient checking.
 *
 * ad_gradcheck compares the gradients the tape computes with central
 * differences, (f(x + eps) - f(x - eps)) / 2 eps, element by element, in
 * float64, as PyTorch's torch.autograd.gradcheck does: it passes when
 * |analytic - numeric| <= atol + rtol |numeric| for every entry of the
 * Jacobian d(output)/d(input) of every input that requires grad.
 */
#ifndef AUTODIFF_GRADCHECK_H
#define AUTODIFF_GRADCHECK_H

#include "transforms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The function under test is an ad_func (transforms.h).  The inputs it
 * receives are float64 copies of the caller's tensors on a tape owned by the
 * checker, which is also active while f runs, so constants f makes with
 * ad_tensor_tape(inputs[0]) or ad_tape_active() are freed with it. */

typedef struct ad_gradcheck_opts {
    double eps;   /* finite-difference step, default 1e-6 */
    double atol;  /* default 1e-5 */
    double rtol;  /* default 1e-3 */
    FILE *report; /* if not NULL, mismatches are also printed here */
} ad_gradcheck_opts;
#define AD_GRADCHECK_DEFAULTS {1e-6, 1e-5, 1e-3, NULL}

/* Checks d f / d inputs[i] for every input that requires grad (float32
 * inputs are checked in float64; int64 inputs are passed through
 * unchanged).  The caller's tensors are only read.  opts may be NULL for
 * the defaults.
 * Returns 1 when every entry agrees; 0 on the first mismatch, with
 * ad_error() saying which input, which element (its index), which output
 * element, and the analytic and numeric values; -1 on error (f failed, bad
 * arguments). */
int ad_gradcheck(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                 const ad_gradcheck_opts *opts);

/* Second-order check, like PyTorch's gradgradcheck: with a fixed random
 * grad_output v (seeded), the function x -> v . df/dx (the vector-Jacobian
 * product, computed by ad_backward with AD_CREATE_GRAPH) is itself checked
 * with ad_gradcheck, which compares the recorded backward pass's own
 * gradients against finite differences of the first derivatives.  Same
 * returns as ad_gradcheck. */
int ad_gradgradcheck(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                     const ad_gradcheck_opts *opts);

#ifdef __cplusplus
}
#endif
#endif

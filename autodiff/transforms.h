/* autodiff/transforms.h - function transforms: grad, vjp, jvp, jacobian,
 * hessian, hvp.
 *
 * A function is given as a C callback that builds its output from its
 * inputs with the library's ops (like a function passed to jax.grad).  Each
 * transform calls it once or a few times on `tape`, which is active while f
 * runs, and returns its results as tensors on `tape` (freed with the tape).
 *
 * Inputs.  An input that does not require grad is wrapped in a leaf view
 * (no copy) that does, so the caller's tensors are never modified.  An
 * input that already requires grad (because it comes out of an enclosing
 * computation) is used as it is, so transforms nest: with AD_CREATE_GRAPH
 * the results are recorded and can be differentiated again, e.g. the
 * Hessian as the Jacobian of the gradient.  Inputs must be persistent or on
 * `tape`.
 *
 * Errors: NULL tape or function, n out of 1..64, an input on another tape,
 * f failing (its message is kept), f's output not a floating tensor, a
 * non-scalar output where a scalar is needed, tangents or cotangents of the
 * wrong shape or dtype.  All return 0 on success, -1 on error.
 */
#ifndef AUTODIFF_TRANSFORMS_H
#define AUTODIFF_TRANSFORMS_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A function of n tensors; returns its output, or NULL with an error set. */
typedef ad_tensor *(*ad_func)(ad_tensor *const *inputs, int n, void *ctx);

/* grads[i] = d f / d x[i] for a function f with a one-element output;
 * *value (if value is not NULL) = f(x).  flags: AD_CREATE_GRAPH. */
AD_API int ad_grad(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x,
            ad_tensor **grads, ad_tensor **value, unsigned flags);

/* Vector-Jacobian product (reverse mode): *y = f(x), and
 * vjp[i] = v^T (d y / d x[i]), with v of y's shape and dtype. */
AD_API int ad_vjp(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x, ad_tensor *v,
           ad_tensor **y, ad_tensor **vjp, unsigned flags);

/* Jacobian-vector product (forward mode): *y = f(x), and
 * *jvp = sum_i (d y / d x[i]) u[i], with u[i] of x[i]'s shape (NULL for a
 * zero tangent).  Computed by the double-vjp trick: with w a dummy
 * cotangent, g(w) = w^T J is linear in w, so d<g(w), u>/dw = J u.  It costs
 * about three reverse passes and needs no separate forward-mode rules: every
 * op's backward rule is differentiable, which is all it takes. */
AD_API int ad_jvp(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x,
           ad_tensor *const *u, ad_tensor **y, ad_tensor **jvp, unsigned flags);

typedef enum ad_jacobian_mode {
    AD_JACOBIAN_AUTO = 0, /* reverse when outputs <= inputs, else forward */
    AD_JACOBIAN_REVERSE,  /* one vjp per output element: rows */
    AD_JACOBIAN_FORWARD   /* one jvp per input element: columns */
} ad_jacobian_mode;

/* jac[i] = d f(x) / d x[i], of shape (f's output shape ++ x[i]'s shape),
 * as torch.autograd.functional.jacobian.  Reverse mode costs one backward
 * pass per output element, forward mode one jvp per input element; AUTO
 * picks the smaller count. */
AD_API int ad_jacobian(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x,
                ad_tensor **jac, ad_jacobian_mode mode, unsigned flags);

/* Hessian of a function with a one-element output with respect to its one
 * input x: *hess of shape (x's shape ++ x's shape), computed as the
 * Jacobian of the gradient, i.e. by differentiating the recorded backward
 * pass. */
AD_API int ad_hessian(ad_tape *tape, ad_func f, void *ctx, ad_tensor *x, ad_tensor **hess,
               unsigned flags);

/* Hessian-vector product H v = d/dx <grad f(x), v> without forming H: one
 * backward pass with AD_CREATE_GRAPH and one through it.  v has x's shape. */
AD_API int ad_hvp(ad_tape *tape, ad_func f, void *ctx, ad_tensor *x, ad_tensor *v, ad_tensor **hv,
           unsigned flags);

#ifdef __cplusplus
}
#endif
#endif

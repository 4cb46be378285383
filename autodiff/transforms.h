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

/* ---- gradient checkpointing -------------------------------------------------------
 * Trades compute for memory, as torch.utils.checkpoint and jax.checkpoint:
 *
 *     ad_checkpoint(f, ctx, ctx_size, nin, in, nout, out)
 *
 * computes out[0..nout) = f(in[0..nin)) but keeps none of f's
 * intermediates: when f returns, its outputs are copied out and all the
 * memory its ops took on the tape (values, recorded nodes) is given back.
 * The backward pass, when it reaches the outputs, runs f again - recorded
 * this time, from the same inputs - and backpropagates through that
 * recording, then gives its memory back too.  For a chain of k segments
 * of a long computation, the tape then holds the k segments' inputs and
 * outputs plus one segment's intermediates at a time, for about one more
 * forward pass of compute.
 *
 * The function is a pure function of its inputs: it computes its outputs
 * with the library's ops from in[] (and from tensors it reads from ctx,
 * such as weights), stores them into out[0..nout) and returns 0 (or -1
 * with an error set, kept).  It is called once now and once per backward
 * pass (and per ad_tape_replay), so what it reads must stay alive and
 * unchanged until then.  With ctx_size > 0 the ctx_size bytes at ctx are
 * copied onto the tape (living until its reset) and f always receives
 * that copy: a struct on the caller's stack then serves (the tensors it
 * points at must still live); with ctx_size 0, f receives ctx itself,
 * which must outlive the backward pass.  State f depends on that may
 * change in between belongs in the copied ctx: nn's checkpointed layers
 * keep the module's training mode there, since a trainer may replay or
 * recompute while the model is in the other mode.  An ad_rng belongs in
 * it by pointer, never by value: a copied stream never advances, so
 * every call (two checkpointed dropout layers) would draw one mask.  Its outputs go on the inputs' tape
 * (else the active one, like any op's) and are views of one packed
 * tensor (the node "checkpoint"); all must be floating tensors of one
 * dtype.
 *
 * Guarantees:
 *  - first-order gradients are those of the same ops recorded without the
 *    checkpoint, to the bit: the recomputation gives the same values (same
 *    kernels, same inputs), and its gradients are added into the inputs'
 *    adjoints and the leaves' grads in the same order as the
 *    un-checkpointed pass adds them (the sign of a zero may differ);
 *    second derivatives (AD_CREATE_GRAPH) agree to rounding, since the
 *    recorded backward's own sums run in another order;
 *  - tensors f reads from outside its inputs (weights it closes over)
 *    receive their gradients too, like the inputs: the checkpoint's node
 *    lists them among its inputs (those that require grad, and every
 *    floating leaf, so that a frozen weight unfrozen before a replay is
 *    seen), so an in-place change of one before backward is the usual
 *    AD_ERR_MODIFIED error; at most 64 inputs and such tensors;
 *  - random ops inside f draw the same numbers when recomputed: the
 *    positions of the ad_rng streams f draws from (ad_dropout, ad_rand,
 *    ad_rand_like, ...) are noted at the call and set back for the
 *    recomputation, then restored (PyTorch's preserve_rng_state); at most
 *    8 streams;
 *  - AD_CREATE_GRAPH works: the recomputed nodes and the recorded backward
 *    then stay on the tape, so second derivatives (ad_hessian,
 *    ad_gradgradcheck) go through them, at the memory cost of an ordinary
 *    recording;
 *  - a replayable tape (ad_tape_freeze/replay, nn's trainer) replays the
 *    checkpoint by calling f again, unrecorded, with the streams where the
 *    replay finds them, as for a fresh recording; AD_RETAIN_GRAPH backward
 *    passes recompute each time.
 * With grad mode off or no tape involved, f simply runs (no tape: its
 * outputs are persistent tensors the caller frees).  Checkpoints nest.
 *
 * Errors (-1, out[] all NULL, ad_error()):
 *   ad_checkpoint: need 1..64 inputs, got 0          (likewise outputs)
 *   ad_checkpoint: in[1]: ...                         (a stale or NULL input)
 *   ad_checkpoint: output 0 of the function was not computed by it (it is one
 *       of its inputs, returned as it is): return a tensor the function
 *       computes from its inputs
 *   ad_checkpoint: output 1 of the function is a persistent tensor, not a
 *       tensor of the inputs' tape: ...
 *   ad_checkpoint: the function's outputs must share one dtype: ...
 *   ad_checkpoint: the function called ad_detach: ...
 *   ad_backward: output 0 of the function is [3] float64 at recomputation,
 *       but [2] when first run: a checkpointed function must compute the
 *       same shapes from the same inputs
 * and a tensor made inside f and kept past its return (through ctx) is
 * stale: "... was made inside a function run by ad_checkpoint, whose
 * intermediate tensors are freed when it returns; make it one of the
 * function's outputs to use it outside". */
typedef int (*ad_checkpoint_fn)(ad_tensor *const *in, int nin, ad_tensor **out, int nout,
                                void *ctx);
AD_API int ad_checkpoint(ad_checkpoint_fn f, const void *ctx, size_t ctx_size, int nin,
                         ad_tensor *const *in, int nout, ad_tensor **out);

#ifdef __cplusplus
}
#endif
#endif

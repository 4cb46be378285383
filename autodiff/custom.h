/* autodiff/custom.h - your own differentiable ops: a forward and a backward
 * written in C, as PyTorch's torch.autograd.Function or JAX's custom_vjp.
 *
 * You give two functions:
 *
 *     forward(ctx, in, n, user)     computes y from the n input tensors and
 *                                   saves what backward will need with
 *                                   ad_custom_save(ctx, ...);
 *     backward(ctx, g, gin, user)   given g = dL/dy (y's shape and dtype),
 *                                   stores dL/d in[i] into gin[i] for every
 *                                   i with ad_custom_needs_input_grad(ctx, i)
 *                                   (in[i]'s shape and dtype), reading the
 *                                   saved tensors with ad_custom_saved.
 *
 * and ad_custom_call(op, n, in) is then an op like any other: recorded on
 * the inputs' tape, reached by ad_backward, ad_grad, ad_jacobian, the
 * trainer, replay.  Its name in graphs, traces and errors is
 * "custom:NAME".
 *
 * Example, y = x^2 sin z with the backward written with the library's ops:
 *
 *     static ad_tensor *fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
 *     {
 *         ad_custom_save(ctx, 2, in);                  // x and z
 *         return ad_mul(ad_mul(in[0], in[0]), ad_sin(in[1]));
 *     }
 *     static int bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
 *     {
 *         ad_tensor *x = ad_custom_saved(ctx, 0), *z = ad_custom_saved(ctx, 1);
 *         if (ad_custom_needs_input_grad(ctx, 0))      // 2 x sin z
 *             gin[0] = ad_mul(g, ad_mul(ad_mul_scalar(x, 2), ad_sin(z)));
 *         if (ad_custom_needs_input_grad(ctx, 1))      // x^2 cos z
 *             gin[1] = ad_mul(g, ad_mul(ad_mul(x, x), ad_cos(z)));
 *         return 0;
 *     }
 *     ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "x2sin", .nin = 2,
 *                                                      .forward = fw, .backward = bw});
 *     ad_tensor *y = ad_custom_call(op, 2, (ad_tensor *[]){x, z});
 *
 * Higher derivatives.  The forward runs with grad mode off (its ops are
 * not recorded: the op is one node).  The backward runs as any op's rule:
 * with grad mode off normally, on under AD_CREATE_GRAPH, so a backward
 * written with ad_ ops on the saved inputs, on the output and on g is
 * recorded and differentiable again, to any order (ad_hessian,
 * ad_gradgradcheck, ad_hvp work).  What to save for that: the inputs and
 * the output (the very tensor forward returns: its recorded copy is what
 * backward then sees).  An intermediate value computed in forward and
 * saved is a constant to the recorded backward, right for first
 * derivatives but not for second ones; recompute it in backward from the
 * saved inputs when higher derivatives matter.
 *
 * A backward that works on raw buffers (ad_data, a loop, an external
 * library) cannot be differentiated again.  Set first_order in the
 * descriptor, as PyTorch's @once_differentiable: the backward then always
 * runs with grad mode off, and under AD_CREATE_GRAPH the gradients it
 * returns are recorded as outputs of a node "custom:NAME backward
 * (first-order only)" whose own backward is an error saying so:
 *     ad_backward: custom:NAME has a first-order backward (first_order in its
 *     ad_custom_desc): the gradient it returned cannot be differentiated
 *     again, so second derivatives (AD_CREATE_GRAPH, ad_hessian, ad_hvp,
 *     ad_gradgradcheck) are not available through it; write its backward
 *     with ad_ ops on the saved tensors to allow them
 * ad_gradgradcheck reports that message (returning -1).  A raw-buffer
 * backward without the flag gives silently wrong (zero) second derivatives;
 * ad_custom_check detects that case and says so.
 *
 * Saved tensors.  Tensors saved in forward are kept with the node: tape
 * tensors live until the tape's reset, a persistent one is held (as a
 * recorded op holds its inputs) so freeing it before backward is safe.
 * Each saved tensor's version is recorded; backward fails with
 * AD_ERR_MODIFIED when one was changed in place after the forward.
 *
 * Where the result goes.  As for any op: on the inputs' tape, else the
 * active tape, else (no tape at all, and then no gradient) a persistent
 * tensor the caller frees.  The forward's temporaries go to the same tape
 * (it is active while forward runs, ad_custom_tape(ctx) returns it for
 * ad_zeros and the like); without a tape, to a scratch tape freed when the
 * call returns.  forward returns a tensor made by ops on the inputs or on
 * ad_custom_tape(ctx), or one of the inputs (it is then copied); it must
 * not return a persistent tensor it made (tape NULL), which would leak.
 *
 * Replay (tape.h): replaying a tape that recorded a custom op calls
 * forward again and copies its result into the recorded output; the saved
 * tensors become the new call's.  forward must then save the same number
 * of tensors and return the same shape and dtype each time.
 *
 * Ownership.  ad_custom_new copies the descriptor and the name; free the
 * op with ad_custom_free after every tape that recorded a call to it has
 * been reset or freed (the nodes point into it).  ctx is valid only during
 * the forward or backward call that receives it.  user is yours; it is
 * passed to both functions.  One op may be called from several threads at
 * once if your functions allow it.
 *
 * Errors (NULL or -1, with ad_error()):
 *   ad_custom_new: name is NULL, forward is NULL, nin out of 1..16
 * An op without a backward is recorded like a comparison: its result does
 * not require grad, so gradients do not flow through it.
 *   ad_custom_call: custom:x2sin: expected 2 inputs, got 1
 *   ad_custom_call: custom:x2sin: forward returned NULL (its own error
 *                   message is kept when it set one)
 *   ad_backward: custom:x2sin: backward gave no gradient for input 1, which
 *                requires grad
 *   ad_backward: custom:x2sin: backward gave a [3] float64 gradient for
 *                input 0, which is [2,3] float64
 *   ad_backward: custom:x2sin: saved tensor 0 was modified in place after
 *                the forward (version 0, now 1)
 *   ad_custom_save: only during forward; at most 16 tensors in all
 */
#ifndef AUTODIFF_CUSTOM_H
#define AUTODIFF_CUSTOM_H

#include <stdbool.h>

#include "export.h"
#include "gradcheck.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AD_CUSTOM_MAX_INPUTS 16
#define AD_CUSTOM_MAX_SAVED 16

typedef struct ad_custom ad_custom;
typedef struct ad_custom_ctx ad_custom_ctx;

/* Returns y (see "Where the result goes"), or NULL with an error set. */
typedef ad_tensor *(*ad_custom_forward_fn)(ad_custom_ctx *ctx, ad_tensor *const *in, int n,
                                           void *user);
/* Stores the needed input gradients into gin[0..n) (the entries come in
 * NULL; entries of inputs that need none are ignored).  Returns 0, or -1
 * with an error set (ad_set_error). */
typedef int (*ad_custom_backward_fn)(ad_custom_ctx *ctx, ad_tensor *grad_output,
                                     ad_tensor **grad_inputs, void *user);

typedef struct ad_custom_desc {
    const char *name;              /* required; the op is "custom:NAME" */
    int nin;                       /* tensor inputs, 1..AD_CUSTOM_MAX_INPUTS */
    ad_custom_forward_fn forward;  /* required */
    ad_custom_backward_fn backward; /* NULL: the op is not differentiable
                                      (backward through it is an error) */
    bool first_order;              /* backward reads raw buffers: see above */
    void *user;                    /* passed to forward and backward */
} ad_custom_desc;

AD_API ad_custom *ad_custom_new(const ad_custom_desc *desc);
/* NULL is ignored. */
AD_API void ad_custom_free(ad_custom *op);
/* "custom:NAME", owned by op; NULL with an error for NULL. */
AD_API const char *ad_custom_name(const ad_custom *op);

/* y = forward(in[0..n)), recorded when grad mode is on and an input
 * requires grad.  n must be the descriptor's nin; inputs must be live
 * tensors of one tape (or persistent).  The result is owned as any op's. */
AD_API ad_tensor *ad_custom_call(const ad_custom *op, int n, ad_tensor *const *in);

/* During forward: keeps t[0..n) for backward, appended to those saved
 * before (at most AD_CUSTOM_MAX_SAVED in all).  -1 outside forward, for a
 * NULL or stale tensor, or past the limit. */
AD_API int ad_custom_save(ad_custom_ctx *ctx, int n, ad_tensor *const *t);
/* During backward: the i-th saved tensor (NULL with an error when i is out
 * of range), and how many there are (-1 for NULL ctx). */
AD_API ad_tensor *ad_custom_saved(const ad_custom_ctx *ctx, int i);
AD_API int ad_custom_num_saved(const ad_custom_ctx *ctx);
/* Whether input i needs a gradient (in forward: whether it will, i.e. it
 * requires grad and grad mode is on), as PyTorch's ctx.needs_input_grad. */
AD_API bool ad_custom_needs_input_grad(const ad_custom_ctx *ctx, int i);
/* The tape the op's tensors go to: the result's, or the scratch tape freed
 * when the call returns (no tape involved). */
AD_API ad_tape *ad_custom_tape(const ad_custom_ctx *ctx);

/* One call to check your backward against finite differences: with
 * ad_gradcheck on in[0..n) (the inputs that require grad are checked;
 * float64 copies, the caller's tensors are only read; each Jacobian row
 * seeded with -2, so a rule that ignores its incoming gradient g, squares
 * it or takes |g| is caught), then, unless the op is first_order,
 * ad_gradgradcheck, here also with respect to g itself (as PyTorch's
 * gradgradcheck: a rule that detaches g is right to first order and gives
 * wrong Hessians).  opts as for ad_gradcheck (NULL: the
 * defaults).  Returns 1 when both pass, 0 when one disagrees, with
 * ad_error() naming the order and the worst entry:
 *   ad_custom_check: custom:x2sin: first derivatives: ad_gradcheck: 1 of 6
 *   Jacobian entries disagree; the worst: input 1 element [2] ...
 * and, when the second derivatives disagree because the backward's
 * gradients are not recorded under AD_CREATE_GRAPH (a raw-buffer backward
 * without first_order), a message saying so; -1 when a call failed (the
 * forward or backward's error is kept). */
AD_API int ad_custom_check(const ad_custom *op, int n, ad_tensor *const *in,
                           const ad_gradcheck_opts *opts);

#ifdef __cplusplus
}
#endif
#endif

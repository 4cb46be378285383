/* nn/modcheck.h - checking a module's parameter gradients in one call.
 *
 * Users who build their own layers (a module type of their own, a custom
 * op inside it) check them this way: nn_gradcheck compares the gradient
 * of a loss with respect to every parameter element, from one backward
 * pass, with central differences of the loss, (L(w + h) - L(w - h)) / 2h,
 * perturbing each element of each parameter in place.  An entry passes
 * when
 *
 *     |analytic - numeric| <= atol + rtol |numeric|
 *
 * (as ad_gradcheck, gradcheck.h).  The step is h = eps max(1, |w|); the
 * division uses the spacing of the values actually stored, so a float32
 * parameter's rounding costs nothing there.
 *
 * The loss is loss(nn_forward(m, x), target, NN_SUM), or with loss NULL,
 * sum_i r_i y_i with fixed pseudo-random weights |r| in [0.5, 1.5), every
 * other one negative (seeded): every output element counts, and
 * differently, which a plain sum would not give (the outputs of a softmax
 * always sum to 1), and a rule that takes |g| for its incoming gradient g
 * is caught.  Parameters that do not require grad (frozen) are not
 * checked; the input x is not perturbed (check a layer's input gradient
 * with ad_gradcheck, gradcheck.h).
 *
 * Evaluations repeat exactly: before each, the module's registered random
 * streams (nn_module_set_rng: Dropout's) are set back to where they were,
 * so training mode with dropout can be checked; buffers (BatchNorm's
 * running statistics) are restored at the end, as are the parameters,
 * bit for bit.  The parameters' own grads are not touched (the gradients
 * are taken with ad_gradients).
 *
 * dtype.  In float64, the defaults of ad_gradcheck (eps 1e-6, atol 1e-5,
 * rtol 1e-3) are sharp.  A float32 model's loss carries rounding errors of
 * about 1e-7 |L| per operation, so with opts NULL a float32 model is
 * checked with eps 1e-2, atol 1e-3, rtol 1e-2, which catches a wrong
 * formula but not a small error; build the model in float64 to check it
 * closely.
 *
 * Cost: 2 forward passes per parameter element and one backward pass, so
 * check a small instance of the model on a small batch.
 *
 * Returns 1 when every entry agrees; 0 when one disagrees, with ad_error()
 * naming how many and the worst:
 *   nn_gradcheck: 4 of 40 parameter gradient entries disagree; the worst:
 *   '0.weight' element [1,2]: analytic 0.5 vs numeric 1 (difference 0.5 >
 *   atol 1e-05 + rtol 0.001 * |numeric|; step 1e-06)
 * and also 0 with "nothing was checked" when m has no floating parameter
 * with elements; -1 on error: NULL m or x, the forward or the loss
 * failing (their message is kept), a loss that is not one element, out of
 * memory.  opts->report, when set, receives every disagreeing entry and
 * the verdict, one per line. */
#ifndef NN_MODCHECK_H
#define NN_MODCHECK_H

#include <autodiff/autodiff.h>

#include "module.h"
#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

AD_API int nn_gradcheck(nn_module *m, ad_tensor *x, ad_tensor *target, nn_loss_fn loss,
                        const ad_gradcheck_opts *opts);

#ifdef __cplusplus
}
#endif
#endif

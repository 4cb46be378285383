/* nn/loss.h - loss functions and weight penalties.
 *
 * A loss E measures how far the network's output is from the target; the
 * backward pass of the loss is where dE/d(output), and from it every
 * dE/dw, starts.  Each function here is composed of the library's
 * differentiable ops (or is one of the fused ops of ops_loss.h), so its
 * gradient - of any order - comes from the ops' rules.
 *
 * Results are owned as nn_forward's (module.h): on the inputs' tape, else
 * the active tape; with neither, a new persistent tensor the caller frees
 * (grad mode must then be off or nothing require grad).
 *
 * Reduction.  NN_MEAN averages the per-element (or per-sample) losses,
 * NN_SUM adds them, NN_NONE returns them unreduced.  NN_HALF_SUM, for
 * nn_mse_loss only, is the E = 1/2 sum (y - yhat)^2 of the classic
 * derivation of backpropagation, whose derivative dE/dyhat = yhat - y has
 * no factor 2.  The values equal ad_reduction's, so an ad_reduction may be
 * passed where an nn_reduction is expected.
 *
 * Errors (NULL, message in ad_error()): NULL arguments (an inner failure's
 * message is kept), integer dtype where a float is needed, shapes that
 * differ ("nn_l1_loss: input [4,1] and target [4] differ in shape" - no
 * broadcasting, which would silently turn [N] vs [N,1] into [N,N]), labels
 * out of range, bad reduction, bad parameters (negative delta, ...).
 */
#ifndef NN_LOSS_H
#define NN_LOSS_H

#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nn_reduction {
    NN_MEAN = AD_REDUCTION_MEAN,
    NN_SUM = AD_REDUCTION_SUM,
    NN_NONE = AD_REDUCTION_NONE,
    NN_HALF_SUM = 3 /* 1/2 sum, nn_mse_loss only */
} nn_reduction;

/* Squared error (yhat - y)^2 of input yhat and target y of one shape and
 * float dtype.  NN_MEAN: (1/N) sum (the PyTorch default); NN_HALF_SUM:
 * 1/2 sum.  dE/dyhat = 2 (yhat - y) / N for the mean, (yhat - y) for the
 * half sum. */
AD_API ad_tensor *nn_mse_loss(ad_tensor *input, ad_tensor *target, nn_reduction reduction);

/* Absolute error |yhat - y|, same shapes as mse.  dE/dyhat = sign(yhat - y)
 * (0 where equal) / N for the mean. */
AD_API ad_tensor *nn_l1_loss(ad_tensor *input, ad_tensor *target, nn_reduction reduction);

/* Huber loss with threshold delta > 0 (PyTorch's HuberLoss): with
 * d = yhat - y,
 *     l = d^2 / 2                 where |d| <= delta
 *     l = delta (|d| - delta/2)   elsewhere,
 * quadratic near the target and linear far from it, so outliers pull with
 * a gradient of at most delta (dl/dd = clamp(d, -delta, delta)). */
AD_API ad_tensor *nn_huber_loss(ad_tensor *input, ad_tensor *target, nn_reduction reduction,
                         double delta);

/* Cross-entropy of logits [N, C] against class indices labels int64 [N]
 * (ad_cross_entropy_ls):  l_n = -log softmax(x_n)[label_n], with label
 * smoothing eps in [0, 1] (0 for none) mixing eps/C of the uniform
 * distribution into the one-hot target.  dE/dx_n = softmax(x_n) - target_n
 * (/ N for the mean). */
AD_API ad_tensor *nn_cross_entropy(ad_tensor *logits, ad_tensor *labels, nn_reduction reduction,
                            double label_smoothing);

/* Negative log-likelihood of log-probabilities logp [N, C] (e.g. from
 * nn_log_softmax) against labels int64 [N]: l_n = -logp[n, label_n],
 * picked with ad_gather.  nll_loss(log_softmax(x)) = cross_entropy(x).
 * Error for a label outside [0, C) ("nn_nll_loss: label 7 at position 3
 * is out of range for 5 classes").  A replayed recording (nn's trainer)
 * gathers at its new labels through ad_gather, which refuses one outside
 * [0, C) there too (a -1: "is negative in a replay whose recording had no
 * negative entry"). */
AD_API ad_tensor *nn_nll_loss(ad_tensor *logp, ad_tensor *labels, nn_reduction reduction);

/* Binary cross-entropy of logits x against targets y in [0, 1] of x's
 * shape, computed without forming sigmoid(x) (whose log overflows):
 *     l = max(x, 0) - x y + log(1 + e^-|x|)  =  (1 - y) x + softplus(-x)
 * and with pos_weight p (NULL for none; broadcast against x's last
 * dimension, one weight per class, as PyTorch) weighting the positive
 * term:  l = (1 - y) x + (1 + (p - 1) y) softplus(-x).
 * dl/dx = sigmoid(x) - y without pos_weight. */
AD_API ad_tensor *nn_binary_cross_entropy_with_logits(ad_tensor *x, ad_tensor *y, ad_tensor *pos_weight,
                                               nn_reduction reduction);

/* ---- penalties ----------------------------------------------------------------
 * Added to the loss to keep weights small.  Over every tensor of a
 * parameter list (nn_parameters, module.h), as a 0-d tensor on the active
 * tape (the parameters are persistent, so a tape must be active while grad
 * mode is on), differentiable:
 *     L1: lambda sum |w|          dP/dw = lambda sign(w)
 *     L2: lambda/2 sum w^2        dP/dw = lambda w
 * The L2 penalty with SGD is "weight decay": w <- w - lr (dE/dw + lambda w).
 * Parameters must share one dtype.  Errors: NULL or empty list, lambda
 * negative or not finite. */
AD_API ad_tensor *nn_l1_penalty(const nn_named_tensors *params, double lambda);
AD_API ad_tensor *nn_l2_penalty(const nn_named_tensors *params, double lambda);

#ifdef __cplusplus
}
#endif
#endif

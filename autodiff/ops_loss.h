/* autodiff/ops_loss.h - fused, numerically stable softmax family and losses.
 *
 * Each is one op with a closed-form backward (rather than a chain of exp,
 * sum, log ops), which is both faster and stable at large magnitudes.
 */
#ifndef AUTODIFF_OPS_LOSS_H
#define AUTODIFF_OPS_LOSS_H

#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ad_reduction {
    AD_REDUCTION_MEAN = 0, /* average over the batch (the default in PyTorch) */
    AD_REDUCTION_SUM = 1,
    AD_REDUCTION_NONE = 2  /* one loss per sample */
} ad_reduction;

/* y_i = e^(x_i - m) / sum_j e^(x_j - m) along axis (m the max, for
 * stability).  dx = y (g - sum(g y)) */
ad_tensor *ad_softmax(ad_tensor *x, int axis);
/* y_i = x_i - logsumexp(x) along axis.  dx = g - softmax(x) sum(g) */
ad_tensor *ad_log_softmax(ad_tensor *x, int axis);
/* Cross-entropy of logits [N, C] against class indices labels [N] (int64,
 * each in [0, C)):  l_n = logsumexp(x_n) - x_n[labels_n], reduced by
 * `reduction`.  dx_n = g (softmax(x_n) - onehot(labels_n)) (/ N for mean).
 * Errors: logits not 2-D, labels not int64 1-D of length N, label out of
 * range (named with its position). */
ad_tensor *ad_cross_entropy(ad_tensor *logits, ad_tensor *labels, ad_reduction reduction);
/* Mean squared error: (a - b)^2 reduced by `reduction` (shapes must match
 * exactly, no broadcasting, as a guard against silent mistakes).
 * da = 2 g (a - b) (/ N for mean), db = -da */
ad_tensor *ad_mse_loss(ad_tensor *a, ad_tensor *b, ad_reduction reduction);

#ifdef __cplusplus
}
#endif
#endif

/* autodiff/ops_loss.h - fused, numerically stable softmax family and losses.
 *
 * Each is one op with a closed-form backward (rather than a chain of exp,
 * sum, log ops), which is both faster and stable at large magnitudes.
 */
#ifndef AUTODIFF_OPS_LOSS_H
#define AUTODIFF_OPS_LOSS_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ad_reduction {
    AD_REDUCTION_MEAN = 0, /* average over the batch (the default in PyTorch) */
    AD_REDUCTION_SUM = 1,
    AD_REDUCTION_NONE = 2  /* one loss per sample */
} ad_reduction;

/* ---- softmax family --------------------------------------------------------
 * Along one axis (negative counts from the end) of x of any shape and
 * strides; the result has x's shape.  Computed with the line's maximum m
 * taken out, so inputs of any finite magnitude (+-1000 and beyond) give
 * finite results.  A line containing NaN gives NaN; a line that is all
 * -inf gives NaN (0/0), as in PyTorch.  A 0-d x is one line of one element.
 * Errors: NULL, integer dtype, axis out of range. */

/* y_i = e^(x_i - m) / sum_j e^(x_j - m).  dx = y (g - sum(g y)) */
AD_API ad_tensor *ad_softmax(ad_tensor *x, int axis);
/* y_i = (x_i - m) - log sum_j e^(x_j - m) = x_i - logsumexp(x).
 * dx = g - e^y sum(g)   (e^y is the softmax) */
AD_API ad_tensor *ad_log_softmax(ad_tensor *x, int axis);

/* The causal softmax of attention scores: for x [..., T, T] (at least 2-D,
 * square in its last two dimensions) and a finite scale,
 *     y_ts = e^(scale x_ts - m_t) / sum_(u <= t) e^(scale x_tu - m_t)  (s <= t),
 *     y_ts = 0                                                        (s > t),
 * m_t the maximum over u <= t: softmax(scale x + M) along the last axis
 * with M_ts = -inf above the diagonal, as attention with a causal mask
 * computes it, without the mask's tensor, its addition or the scaled
 * copy; the entries above the diagonal are never read.
 * dx = scale y (g - sum_s g y).  A strided x is copied first.
 * Errors: NULL, integer dtype, fewer than 2 dimensions or not square
 * ("ad_softmax_causal: x must be [..., T, T], got [2,3,4]"), scale not
 * finite. */
AD_API ad_tensor *ad_softmax_causal(ad_tensor *x, double scale);

/* ---- losses ------------------------------------------------------------------
 * reduction is one of the three above (anything else is an error).  MEAN and
 * SUM give a 0-d tensor; MEAN of an empty batch is NaN (as in PyTorch). */

/* Cross-entropy of logits [N, C] (float, any strides) against class indices
 * labels [N] (int64, any strides, each in [0, C)):
 *     l_n = logsumexp(x_n) - x_n[labels_n]  =  -log_softmax(x_n)[labels_n],
 * reduced by `reduction` (NONE gives [N]).
 * dx_n = g_n (softmax(x_n) - onehot(labels_n)), / N for mean.
 * One recorded op (not a chain of log_softmax and gather).  The labels are
 * an input of the op: overwriting them through the API before backward
 * makes backward fail with AD_ERR_MODIFIED ("modified in place"); the rule
 * reads a copy made when the op ran, so a write through ad_data(), which
 * that check cannot see, does not change the gradient.
 * Errors: logits not 2-D or not float, labels not int64, labels not 1-D of
 * length N, a label < 0 or >= C ("ad_cross_entropy: label 7 at position 3
 * is out of range for 5 classes"), unknown reduction. */
AD_API ad_tensor *ad_cross_entropy(ad_tensor *logits, ad_tensor *labels, ad_reduction reduction);
/* The same with label smoothing eps in [0, 1] (PyTorch's label_smoothing):
 * the target is t = (1 - eps) onehot(labels_n) + eps / C, and
 *     l_n = -sum_c t_c log_softmax(x_n)_c
 *         = logsumexp(x_n) - (1 - eps) x_n[labels_n] - (eps / C) sum_c x_nc.
 * dx_n = g_n (softmax(x_n) - t_n), / N for mean.  eps = 0 is exactly
 * ad_cross_entropy (same op, "cross_entropy").  Errors as above, and eps
 * outside [0, 1] or NaN (named "ad_cross_entropy_ls"). */
AD_API ad_tensor *ad_cross_entropy_ls(ad_tensor *logits, ad_tensor *labels, ad_reduction reduction,
                               double smoothing);
/* Mean squared error: (a - b)^2 elementwise, reduced by `reduction` (NONE
 * keeps the shape; MEAN divides by the element count N).  Shapes must match
 * exactly - no broadcasting, as a guard against the silent [N] vs [N,1]
 * mistake.  da = 2 g (a - b) (/ N for mean), db = -da.
 * Errors: NULL, integer dtype, dtypes differ, shapes differ, unknown
 * reduction. */
AD_API ad_tensor *ad_mse_loss(ad_tensor *a, ad_tensor *b, ad_reduction reduction);

#ifdef __cplusplus
}
#endif
#endif

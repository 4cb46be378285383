/* autodiff/ops_reduce.h - reductions.
 *
 * `axes` lists naxes distinct dimensions (negative counts from the end);
 * naxes == 0 (axes may then be NULL) reduces over every dimension.  With
 * keepdim the reduced dimensions stay with extent 1, otherwise they are
 * removed (a full reduction gives a 0-d tensor).  Floating dtypes only.
 * Errors: NULL, integer dtype, axis out of range or repeated, and for
 * max/min/logsumexp an empty reduction.
 */
#ifndef AUTODIFF_OPS_REDUCE_H
#define AUTODIFF_OPS_REDUCE_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* sum_i x_i; dx = expand(g).  An empty reduction gives 0. */
AD_API ad_tensor *ad_sum(ad_tensor *x, const int *axes, int naxes, bool keepdim);
/* (1/N) sum_i x_i over the N reduced elements; dx = expand(g) / N.  An
 * empty reduction (N = 0) gives NaN, as in PyTorch. */
AD_API ad_tensor *ad_mean(ad_tensor *x, const int *axes, int naxes, bool keepdim);
/* max_i x_i / min_i x_i (PyTorch's amax/amin).  A NaN among the elements
 * gives NaN.  dx = g where x equals the result, 0 elsewhere; with ties the
 * gradient is split evenly among all elements equal to the result (g/count
 * each), so it stays symmetric in the tied inputs.  Error: empty
 * reduction. */
AD_API ad_tensor *ad_max(ad_tensor *x, const int *axes, int naxes, bool keepdim);
AD_API ad_tensor *ad_min(ad_tensor *x, const int *axes, int naxes, bool keepdim);
/* log sum_i e^(x_i), computed as m + log sum e^(x_i - m) with m the max, so
 * it is finite for any finite input (no overflow for x = 1000, no log 0 for
 * x = -1000).  All elements -inf gives -inf, any +inf gives +inf.
 * dx = g e^(x - y) = g softmax(x).  Error: empty reduction. */
AD_API ad_tensor *ad_logsumexp(ad_tensor *x, const int *axes, int naxes, bool keepdim);
/* sum_i (x_i - mean)^2 / (N - correction) over the N reduced elements;
 * correction 1 is the unbiased sample variance (PyTorch's default), 0 the
 * population variance.  When N - correction <= 0 (e.g. one element with
 * correction 1, or an empty reduction) the result and its gradient are NaN.
 * PyTorch 1.13 gives the same for an empty reduction and for N = correction
 * with equal values; for N = correction with values that differ it gives
 * inf (gradients +-inf), for N < correction NaN with a zero gradient.
 * dx = 2 g (x - mean) / (N - correction) */
AD_API ad_tensor *ad_var(ad_tensor *x, const int *axes, int naxes, int correction, bool keepdim);

/* Short forms for the common calls, as PyTorch's x.sum(), x.mean(),
 * x.amax(), x.amin() and x.sum(dim), x.mean(dim): the same ops as above
 * (recorded as sum, mean, max, min), without the axes arguments.
 *   ad_sum_all(x)  = ad_sum(x, NULL, 0, false): a 0-d tensor
 *   ad_mean_all(x) = ad_mean(x, NULL, 0, false)
 *   ad_max_all(x)  = ad_max(x, NULL, 0, false), ad_min_all likewise
 *   ad_sum_dim(x, axis, keepdim) = ad_sum(x, &axis, 1, keepdim),
 *   ad_mean_dim likewise
 * Errors as the long forms, named after the short one:
 *   ad_sum_dim: axis 2 out of range for a tensor of 2 dimensions */
AD_API ad_tensor *ad_sum_all(ad_tensor *x);
AD_API ad_tensor *ad_mean_all(ad_tensor *x);
AD_API ad_tensor *ad_max_all(ad_tensor *x);
AD_API ad_tensor *ad_min_all(ad_tensor *x);
AD_API ad_tensor *ad_sum_dim(ad_tensor *x, int axis, bool keepdim);
AD_API ad_tensor *ad_mean_dim(ad_tensor *x, int axis, bool keepdim);

/* Sums x down to `shape`, the inverse of broadcasting: leading dimensions
 * are summed away and dimensions where shape has 1 are summed with keepdim.
 * This is how the backward of a broadcasting op returns a gradient of its
 * input's shape.  dx = expand(g, x's shape).  When x already has `shape`
 * the result is a view of x (ad_expand: no copy, x's data shared), still
 * a tensor of its own that the caller frees as any result.  Error when
 * x's shape does not broadcast from `shape`. */
AD_API ad_tensor *ad_sum_to(ad_tensor *x, int ndim, const int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif

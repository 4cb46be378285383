/* autodiff/ops_shape.h - shapes, views and indexing.
 *
 * View ops (reshape of a contiguous tensor, flatten, squeeze, unsqueeze,
 * expand, permute, transpose, narrow, slice, detach) return tensors that
 * share the input's storage: no copy.  Writing into one (ad_set, ad_data)
 * shows through all views.  The others copy.  Gradients flow through all of
 * them.  Errors name the function and the shapes involved.
 */
#ifndef AUTODIFF_OPS_SHAPE_H
#define AUTODIFF_OPS_SHAPE_H

#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Same elements in row-major order, new shape; one extent may be -1 and is
 * inferred.  A view when x is contiguous, a copy otherwise.
 * dx = reshape(g, x's shape) */
ad_tensor *ad_reshape(ad_tensor *x, int ndim, const int64_t *shape);
/* Merges dimensions start..end (inclusive; negative from the end) into one. */
ad_tensor *ad_flatten(ad_tensor *x, int start, int end);
/* Removes dimension axis, which must have extent 1. */
ad_tensor *ad_squeeze(ad_tensor *x, int axis);
/* Inserts a dimension of extent 1 before position axis (0..ndim). */
ad_tensor *ad_unsqueeze(ad_tensor *x, int axis);
/* Broadcasts x to shape without copying (stride 0); -1 keeps an extent.
 * dx = sum_to(g, x's shape) */
ad_tensor *ad_expand(ad_tensor *x, int ndim, const int64_t *shape);
/* Reorders dimensions: result dim i is x's dim perm[i].  dx = permute(g, perm^-1) */
ad_tensor *ad_permute(ad_tensor *x, const int *perm);
/* Swaps two dimensions (for a matrix: the transpose). */
ad_tensor *ad_transpose(ad_tensor *x, int dim0, int dim1);
/* Elements start..start+length-1 along axis.  dx = g placed in zeros. */
ad_tensor *ad_narrow(ad_tensor *x, int axis, int64_t start, int64_t length);
/* Python's x[start:stop:step] along axis (negative start/stop count from
 * the end and are clamped as in Python; step >= 1). */
ad_tensor *ad_slice(ad_tensor *x, int axis, int64_t start, int64_t stop, int64_t step);
/* Joins n tensors along an existing axis; all other extents and dtypes
 * must agree.  dx_i = the matching narrow of g. */
ad_tensor *ad_concat(ad_tensor *const *xs, int n, int axis);
/* Joins n tensors of one shape along a new axis. */
ad_tensor *ad_stack(ad_tensor *const *xs, int n, int axis);
/* y = x[..., index[j], ...] along axis; index is 1-D int64, entries in
 * [-size, size).  dx = index_add(zeros, axis, index, g) */
ad_tensor *ad_index_select(ad_tensor *x, int axis, ad_tensor *index);
/* base with src's slices added at index along axis (repeated indices
 * accumulate): y = base; y[.., index[j], ..] += src[.., j, ..].
 * dbase = g, dsrc = index_select(g, axis, index) */
ad_tensor *ad_index_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src);
/* y[i][j][k] = x[i][index[i][j][k]][k] for axis 1 (PyTorch's gather);
 * index is int64 with x's ndim, extents <= x's except along axis.
 * dx = scatter_add(zeros, axis, index, g) */
ad_tensor *ad_gather(ad_tensor *x, int axis, ad_tensor *index);
/* y = base; y[i][index[i][j][k]][k] += src[i][j][k] for axis 1.
 * dbase = g, dsrc = gather(g, axis, index) */
ad_tensor *ad_scatter_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src);
/* A contiguous tensor with x's values (x itself when already contiguous is
 * still a new header).  dx = g */
ad_tensor *ad_contiguous(ad_tensor *x);
/* x converted to dtype (float32 <-> float64).  dx = cast(g, x's dtype) */
ad_tensor *ad_cast(ad_tensor *x, ad_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif

/* autodiff/ops_shape.h - shapes, views and indexing.
 *
 * View ops (reshape when the strides allow, flatten, squeeze, unsqueeze,
 * expand, permute, transpose, narrow, slice, contiguous of a contiguous
 * tensor, cast to the same dtype, detach) return a new tensor header that
 * shares the input's storage: no copy.  Writing into one (ad_set, ad_data)
 * shows through all views of that storage, and a view keeps persistent
 * storage alive after its base is freed.  Views of views compose (a narrow
 * of a transpose of an expand is still one strided view).  The other ops
 * copy into a new contiguous tensor.  Every op accepts inputs of any strides
 * and any dtype (float32, float64, int64) unless stated; gradients flow
 * through all of them to floating inputs.
 *
 * Axes: an existing dimension `axis` of an n-dimensional tensor is given as
 * 0..n-1 or, counting from the end, -n..-1; a 0-dimensional tensor has no
 * axis to act on.  Index tensors are int64; their entries may be negative
 * (-size..-1 count from the end).
 *
 * Errors (NULL returned, ad_error() set) name the function and the shapes
 * involved: NULL or freed argument, axis out of range, extents that do not
 * fit, index of the wrong dtype/dimensionality, index entry out of range
 * (named by its position and value).
 */
#ifndef AUTODIFF_OPS_SHAPE_H
#define AUTODIFF_OPS_SHAPE_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- views ---------------------------------------------------------------- */

/* Same elements in row-major order, new shape; one extent may be -1 and is
 * inferred (an error when the other extents multiply to 0, as it could be
 * anything).  A view whenever x's strides allow reading it in the new shape
 * (always when x is contiguous; e.g. not for a transposed matrix flattened),
 * a copy otherwise - PyTorch's reshape.  dx = reshape(g, x's shape) */
AD_API ad_tensor *ad_reshape(ad_tensor *x, int ndim, const int64_t *shape);
/* Merges dimensions start..end (inclusive; negative count from the end;
 * start <= end) into one: [2,3,4] with (1,-1) gives [2,12].  A 0-d tensor
 * gives [1].  Recorded as a reshape (a view when reshape's is). */
AD_API ad_tensor *ad_flatten(ad_tensor *x, int start, int end);
/* Removes dimension axis, which must have extent 1.  Always a view;
 * recorded as a reshape. */
AD_API ad_tensor *ad_squeeze(ad_tensor *x, int axis);
/* Inserts a dimension of extent 1 so that it becomes dimension axis of the
 * result: axis in 0..ndim, or -(ndim+1)..-1 counting from the end of the
 * result (-1 appends).  Always a view; recorded as a reshape. */
AD_API ad_tensor *ad_unsqueeze(ad_tensor *x, int axis);
/* Broadcasts x to shape without copying (stride 0): x's dimensions are
 * aligned on the right; an extent of 1 stretches, new leading dimensions
 * are added; -1 keeps x's extent.  dx = sum_to(g, x's shape) */
AD_API ad_tensor *ad_expand(ad_tensor *x, int ndim, const int64_t *shape);
/* Reorders dimensions: result dim i is x's dim perm[i] (negative entries
 * count from the end); perm has x's ndim entries, each dimension exactly
 * once (perm may be NULL for a 0-d x).  dx = permute(g, perm^-1) */
AD_API ad_tensor *ad_permute(ad_tensor *x, const int *perm);
/* Swaps two dimensions (for a matrix: the transpose).  Recorded as a
 * permute. */
AD_API ad_tensor *ad_transpose(ad_tensor *x, int dim0, int dim1);
/* Elements start..start+length-1 along axis; a negative start counts from
 * the end.  Needs 0 <= start, length >= 0 and start + length <= extent
 * (after that).  Recorded as a slice with step 1.
 * dx = slice_scatter(zeros, g): g placed into zeros of x's shape. */
AD_API ad_tensor *ad_narrow(ad_tensor *x, int axis, int64_t start, int64_t length);
/* Python's x[start:stop:step] along axis, step >= 1: a negative start or
 * stop counts from the end, then both are clamped to 0..extent, so any
 * int64 values are accepted (pass INT64_MAX as stop for "to the end"); an
 * empty range gives extent 0.  dx = slice_scatter(zeros, g) */
AD_API ad_tensor *ad_slice(ad_tensor *x, int axis, int64_t start, int64_t stop, int64_t step);

/* ---- copies ---------------------------------------------------------------- */

/* A copy of base whose elements base[start:stop:step] along axis (the same
 * Python slice as ad_slice) are replaced by src, which must have exactly
 * that slice's shape and base's dtype (PyTorch's slice_scatter).  It is the
 * adjoint of ad_slice.  dbase = g with the slice zeroed, dsrc = slice(g) */
AD_API ad_tensor *ad_slice_scatter(ad_tensor *base, ad_tensor *src, int axis, int64_t start,
                            int64_t stop, int64_t step);
/* A contiguous tensor with x's values: a copy when x is not contiguous, a
 * new header over the same storage when it is (still recorded, so it is a
 * distinct tensor with its own history).  dx = g */
AD_API ad_tensor *ad_contiguous(ad_tensor *x);
/* x converted to dtype: float32 <-> float64 (rounding to nearest), int64
 * -> float (exact up to 2^53 / 2^24), or to its own dtype (then a view).
 * Casting a floating tensor to int64 is an error.  dx = cast(g, x's dtype) */
AD_API ad_tensor *ad_cast(ad_tensor *x, ad_dtype dtype);
/* Joins n >= 1 tensors along an existing axis; all must have the same
 * dtype and ndim (>= 1), and the same extents except along axis.
 * dx_i = narrow(g, axis, offset_i, extent_i) */
AD_API ad_tensor *ad_concat(ad_tensor *const *xs, int n, int axis);
/* Joins n >= 1 tensors of one shape and dtype along a new axis (0..ndim,
 * or negative counting from the end of the result as in ad_unsqueeze).
 * Recorded as n reshapes (unsqueeze) and one concat. */
AD_API ad_tensor *ad_stack(ad_tensor *const *xs, int n, int axis);

/* ---- indexing (PyTorch semantics; index is int64, any strides) ---------------
 * An index tensor is read when the op runs and kept by the recorded node
 * (a persistent index is held by the tape, so freeing it after the op is
 * safe).  It is an input of the op: changing its values through the API
 * before backward makes backward fail with AD_ERR_MODIFIED ("modified in
 * place"); a write through ad_data(), which that check cannot see, makes
 * the gradient wrong.  A
 * replayed tape (ad_tape_replay) reads the index again and checks it again,
 * and takes a negative entry (from the end) only where the recorded index
 * had one: after a recording without any, a -1 in new data is far more
 * likely a bad label or id than an entry from the end, so it is an error
 * ("index[1] = -1 is negative in a replay whose recording had no negative
 * entry").
 * index_add and scatter_add sum in the dtype (float32 rounds at each
 * addition, as in PyTorch; int64 is exact and wraps on overflow). */

/* y = x[..., index[j], ...] along axis: y has x's shape with extent
 * len(index) along axis.  index is 1-D (repeats allowed), entries in
 * [-size, size).  dx = index_add(zeros, axis, index, g), so repeated
 * indices accumulate their gradients. */
AD_API ad_tensor *ad_index_select(ad_tensor *x, int axis, ad_tensor *index);
/* A copy of base with src's slices added at index along axis (repeated
 * indices accumulate): y = base; y[.., index[j], ..] += src[.., j, ..].
 * index is 1-D; src has base's dtype and shape except len(index) along
 * axis.
 * dbase = g, dsrc = index_select(g, axis, index) */
AD_API ad_tensor *ad_index_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src);
/* y[i][j][k] = x[i][index[i][j][k]][k] for axis 1 (PyTorch's gather): y
 * has index's shape; index has x's ndim and extents <= x's except along
 * axis, which may be any length.  Entries in [-size, size) of x's axis.
 * dx = scatter_add(zeros, axis, index, g) */
AD_API ad_tensor *ad_gather(ad_tensor *x, int axis, ad_tensor *index);
/* A copy of base with y[i][index[i][j][k]][k] += src[i][j][k] for axis 1
 * (repeated targets accumulate).  src must
 * have exactly index's shape and base's dtype; index has base's ndim and
 * extents <= base's except along axis.
 * dbase = g, dsrc = gather(g, axis, index) */
AD_API ad_tensor *ad_scatter_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src);

#ifdef __cplusplus
}
#endif
#endif

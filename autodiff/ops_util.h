/* autodiff/ops_util.h - utilities: arg-extrema, sorting, running sums and
 * products, triangles and diagonals, one-hot, masked fill, einsum, random
 * tensors that replay draws again.
 *
 * Axes follow ops_shape.h (an existing dimension, negative counts from the
 * end; a 0-d tensor has none).  Inputs may have any strides; results are
 * new contiguous tensors (ad_diagonal: a view) owned as tape.h says.
 * Index results are int64 and constant: they are not differentiated, and
 * values chosen through them (ad_sort, ad_topk) get gather's gradient,
 * which is exact wherever the order is strict (ties: the gradient goes to
 * the element the stable order put at that place).
 *
 * Errors (NULL returned, ad_error() set, naming the function): NULL or
 * freed argument, integer dtype where a float is needed, axis out of range,
 * and the cases given per function.
 */
#ifndef AUTODIFF_OPS_UTIL_H
#define AUTODIFF_OPS_UTIL_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- arg-extrema and sorting ------------------------------------------------------ */

/* Index (int64) of the first maximum / minimum of each line along axis; a
 * NaN counts as the extremum (the first NaN wins), as in PyTorch.  keepdim
 * keeps the axis with extent 1.  For the flat index over all elements,
 * pass ad_reshape(x, 1, (int64_t[]){-1}) and axis 0.  Not differentiable;
 * ad_gather(x, axis, ad_argmax(x, axis, true)) gives the maxima with a
 * gradient.  Errors: x not floating, an empty axis
 * ("ad_argmax: empty reduction: axis 1 of [2,0] has extent 0"). */
AD_API ad_tensor *ad_argmax(ad_tensor *x, int axis, bool keepdim);
AD_API ad_tensor *ad_argmin(ad_tensor *x, int axis, bool keepdim);
/* Positions (int64, x's shape) that sort each line along axis: stable
 * (equal values keep their order), ascending with NaN last, or descending
 * with NaN first (PyTorch's order).  Not differentiable. */
AD_API ad_tensor *ad_argsort(ad_tensor *x, int axis, bool descending);
/* Each line along axis sorted: y = gather(x, axis, argsort(x)); when
 * indices is not NULL it receives the argsort (owned like the result).
 * dx = scatter_add(zeros, axis, indices, g). */
AD_API ad_tensor *ad_sort(ad_tensor *x, int axis, bool descending, ad_tensor **indices);
/* The k largest (largest = true) or smallest values of each line along
 * axis, in sorted order (largest first, or smallest first): the first k
 * entries of ad_sort; extent k along axis.  indices as ad_sort's.
 * O(n log n) per line.  Error: k < 0 or k larger than the axis
 * ("ad_topk: k = 5 out of range for axis 1 of [2,3]"). */
AD_API ad_tensor *ad_topk(ad_tensor *x, int64_t k, int axis, bool largest, ad_tensor **indices);

/* ---- running sums and products ------------------------------------------------------ */

/* y_i = sum_{j <= i} x_j along axis (accumulated in double).
 * dx_i = sum_{j >= i} g_j, a running sum from the end. */
AD_API ad_tensor *ad_cumsum(ad_tensor *x, int axis);
/* y_i = prod_{j <= i} x_j along axis (accumulated in double).
 * dx_i = sum_{j >= i} g_j prod_{k <= j, k != i} x_k, computed as
 * (g y) summed from the end, over x, when x has no zero, and exactly (O(n^2) memory per
 * line of extent n) when it has one. */
AD_API ad_tensor *ad_cumprod(ad_tensor *x, int axis);

/* ---- triangles and diagonals (last two dimensions; batches allowed) ----------------- */

/* Lower / upper triangle: element (i, j) kept when j - i <= k (tril) or
 * j - i >= k (triu), zero elsewhere; k = 0 the main diagonal, k > 0 above
 * it, k < 0 below.  Any dtype.  dx = tril(g, k) / triu(g, k).  Error: x
 * with fewer than 2 dimensions. */
AD_API ad_tensor *ad_tril(ad_tensor *x, int64_t k);
AD_API ad_tensor *ad_triu(ad_tensor *x, int64_t k);
/* The k-th diagonal of each matrix (k > 0 above the main one): x
 * [..., m, n] -> [..., L], a view (torch.diagonal with dim1 = -2,
 * dim2 = -1); L = 0 when k lies outside.  dx = g on that diagonal of zeros.
 * Error: x with fewer than 2 dimensions. */
AD_API ad_tensor *ad_diagonal(ad_tensor *x, int64_t k);
/* Matrices with x's last dimension on their k-th diagonal, zeros
 * elsewhere: [..., n] -> [..., n + |k|, n + |k|] (torch.diag_embed).
 * dx = diagonal(g, k).  Errors: 0-d x, |k| > 2^31 - 1. */
AD_API ad_tensor *ad_diag_embed(ad_tensor *x, int64_t k);
/* torch.diag: a vector [n] gives the matrix ad_diag_embed(x, k), a matrix
 * gives its diagonal ad_diagonal(x, k).  Error: any other ndim. */
AD_API ad_tensor *ad_diag(ad_tensor *x, int64_t k);

/* ---- one-hot and masking ------------------------------------------------------------- */

/* y[..., c] = 1 where labels[...] == c, else 0: labels int64 [...] ->
 * [..., num_classes] of dtype (float32, float64 or int64).  num_classes < 0
 * infers max(labels) + 1 (PyTorch's -1).  A constant (not differentiable).
 * Errors: labels not int64, a label outside [0, num_classes) ("ad_one_hot:
 * label 7 at position 3 is out of range for 5 classes"), empty labels with
 * num_classes < 0. */
AD_API ad_tensor *ad_one_hot(ad_tensor *labels, int64_t num_classes, ad_dtype dtype);
/* x with value wherever mask != 0 (mask of any dtype, broadcast to x's
 * shape): where(mask, value, x).  dx = where(mask, 0, g).  Error: mask that
 * does not broadcast to x's shape ("ad_masked_fill: mask [3] does not
 * broadcast to x [2,4]"). */
AD_API ad_tensor *ad_masked_fill(ad_tensor *x, ad_tensor *mask, double value);

/* ---- einsum --------------------------------------------------------------------------- */

/* torch.einsum without ellipsis: "ij,jk->ik" names each operand's
 * dimensions by letters (case matters); labels shared by operands and
 * absent from the output are summed over; a label repeated in one operand
 * takes the diagonal ("ii->i", "ii->" is the trace).  Without "->" the
 * output is the labels that appear once, in alphabetical order ("ij,jk"
 * is "ij,jk->ik").  Spaces are ignored.  1 to 16 operands of one floating
 * dtype.  Computed from ad_diagonal, ad_sum, ad_permute, ad_reshape and
 * one batched ad_matmul per pair of operands (left to right), so it is as
 * differentiable as those; no op of its own.  Examples:
 *   "ij,jk->ik", "bij,bjk->bik"  matrix products     "i,i->"  dot
 *   "i,j->ij"   outer product     "ij->ji"   transpose  "ij,ij->i" row dots
 *   "bhqd,bhkd->bhqk" attention scores  "ij,jk,kl->il" chained products
 * Errors: a label count that differs from an operand's ndim ("ad_einsum:
 * operand 1 is [3,4] but 'j' has 1 labels"), one label with two extents
 * ("label 'j' has extent 3 and 4"), an output label that is no input's or
 * is repeated, "...", other characters, too few or too many operands, and
 * a pair's product with more than AD_MAX_DIMS dimensions ("an intermediate
 * result would have 9 dimensions (at most 8)"): it keeps every label a
 * later operand or the output still needs, so "abcde,fghi,abcde,fghi->"
 * fails where PyTorch, which may pair the operands in another order, does
 * not; ordering the operands so that shared labels meet early
 * ("abcde,abcde,fghi,fghi->") avoids it. */
AD_API ad_tensor *ad_einsum(const char *equation, int n, ad_tensor *const *operands);

/* ---- random tensors shaped like x -------------------------------------------------
 * torch.rand_like / torch.randn_like: x's shape and dtype (floating), on
 * x's tape, uniform on [lo, hi) / normal with mean and std, the values
 * ad_rand / ad_randn would draw from rng (the counter advances by numel(x)
 * / 2 numel(x)).  Unlike those, these are ops: on a replayable tape the
 * draw is recorded, and every ad_tape_replay draws anew from rng's counter
 * at that moment, as a fresh recording would, so noise inside a model
 * (a VAE's eps, noise injection) changes from step to step under nn_fit.
 * rng is kept by such a recording and must stay valid while the tape can
 * be replayed.  x's values are not read; the result is a constant, not
 * differentiable (y = mu + sigma * ad_randn_like(mu, rng, 0, 1) has the
 * gradients of mu and sigma).  Errors: x NULL or not floating, rng NULL,
 * bounds as ad_rand / ad_randn.  A failed call leaves rng unchanged. */
AD_API ad_tensor *ad_rand_like(ad_tensor *x, ad_rng *rng, double lo, double hi);
AD_API ad_tensor *ad_randn_like(ad_tensor *x, ad_rng *rng, double mean, double std);

#ifdef __cplusplus
}
#endif
#endif

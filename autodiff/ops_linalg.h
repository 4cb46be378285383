/* autodiff/ops_linalg.h - products.
 *
 * Same dtype on both sides, floating only.  Operands may be any views
 * (transposed, sliced, expanded): they are read through their strides, and
 * a transposed matrix is handed to the kernel as such, without a copy.
 * With the `blas` build option the float32/float64 matrix products call
 * OpenBLAS (cblas_sgemm/cblas_dgemm); otherwise the library's own blocked
 * kernel (AVX-512 or AVX2+FMA where the CPU has them, chosen at run time).  Large
 * float32 products accumulate in float32, as BLAS does; dot accumulates in
 * double.
 */
#ifndef AUTODIFF_OPS_LINALG_H
#define AUTODIFF_OPS_LINALG_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Matrix product with torch.matmul's rules:
 *   [n] x [n] -> [] (the dot product; recorded as ad_dot's "dot" op);
 *   [m,k] x [k,n] -> [m,n];
 *   [k] x [k,n] -> [n] and [m,k] x [k] -> [m] (the vector is promoted to a
 *   matrix and the added dimension removed from the result);
 *   batched: [...,m,k] x [...,k,n] -> [...,m,n], the batch dimensions
 *   broadcast by numpy's rules ([2,1,3,4] x [5,4,6] -> [2,5,3,6]); a 1-D
 *   operand broadcasts over the other's batch.
 * dA = g B^T, dB = A^T g, each summed over the batch dimensions that
 * broadcasting added to its operand.  A result with k = 0 is zeros.
 * Errors: NULL, integer dtype, dtypes that differ, a 0-d operand,
 * "ad_matmul: inner dimensions differ: [3,4] x [5,6]", batch dimensions
 * that do not broadcast. */
AD_API ad_tensor *ad_matmul(ad_tensor *a, ad_tensor *b);
/* sum_i a_i b_i of two 1-D tensors of one length, a 0-d tensor.
 * da = g b, db = g a.  Errors: NULL, integer dtype, dtypes that differ,
 * not 1-D, "ad_dot: lengths differ: [3] x [4]". */
AD_API ad_tensor *ad_dot(ad_tensor *a, ad_tensor *b);

/* y = x w^T + b, torch.nn.functional.linear: x [..., in], w [out, in],
 * b [out] or NULL (no bias); y [..., out], on x's tape as any op result.
 * dx = g w, dw = g^T x (summed over all leading dimensions of x),
 * db = g summed over them.  The product and the bias are one matrix kernel
 * call (the bias is added to each tile of y while it is in cache), and in
 * a first-order ad_backward dw is added straight into w's gradient buffer
 * by the product; the backward rule is made of ops, so it can be
 * differentiated again.
 * Errors: NULL, integer dtype, dtypes that differ, w not 2-D, x 0-d,
 * "ad_linear: x has 783 features but w is [256,784] (x [64,783])",
 * "ad_linear: bias must be [256] for w [256,784], got [10]". */
AD_API ad_tensor *ad_linear(ad_tensor *x, ad_tensor *w, ad_tensor *b);

#ifdef __cplusplus
}
#endif
#endif

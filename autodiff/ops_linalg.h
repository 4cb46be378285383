/* autodiff/ops_linalg.h - products.
 *
 * Same dtype on both sides, floating only.  With the `blas` build option
 * the float32/float64 matrix products call OpenBLAS; otherwise the
 * library's own blocked kernels.
 */
#ifndef AUTODIFF_OPS_LINALG_H
#define AUTODIFF_OPS_LINALG_H

#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Matrix product with torch.matmul's rules:
 *   [n] x [n] -> [] (dot); [m,k] x [k,n] -> [m,n];
 *   [k] x [k,n] -> [n] and [m,k] x [k] -> [m] (the vector is promoted and
 *   the added dimension removed);
 *   batched: [...,m,k] x [...,k,n] -> [...,m,n], batch dimensions
 *   broadcast.
 * dA = g B^T, dB = A^T g (summed over broadcast batch dimensions).
 * Error: "ad_matmul: inner dimensions differ: [3,4] x [5,6]". */
ad_tensor *ad_matmul(ad_tensor *a, ad_tensor *b);
/* sum_i a_i b_i of two 1-D tensors of one length.  da = g b, db = g a */
ad_tensor *ad_dot(ad_tensor *a, ad_tensor *b);

#ifdef __cplusplus
}
#endif
#endif

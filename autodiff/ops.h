/* autodiff/ops.h - every differentiable op, and the op table.
 *
 * Ops take tensors and return a new tensor (or NULL with ad_error() set).
 * The result is owned as tape.h explains: by the inputs' tape, else by the
 * active tape, else by the caller.  When grad mode is on and an input
 * requires grad, the op is recorded so ad_backward() can differentiate
 * through it.  A NULL input makes an op fail without overwriting the error
 * that produced the NULL, so calls can be nested and checked once:
 *
 *     ad_tensor *y = ad_mul(x, ad_sin(x));
 *     if (!y) fprintf(stderr, "%s\n", ad_error());
 */
#ifndef AUTODIFF_OPS_H
#define AUTODIFF_OPS_H

#include "export.h"
#include "ops_linalg.h"
#include "ops_loss.h"
#include "ops_nn.h"
#include "ops_pointwise.h"
#include "ops_reduce.h"
#include "ops_shape.h"
#include "ops_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The op table: every op that can be recorded on a tape, with its name
 * ("add") and its one-line formula ("y = a + b; da = g, db = g").  Strings
 * are static.  Index out of range gives NULL. */
AD_API size_t ad_op_count(void);
AD_API const char *ad_op_name(size_t i);
AD_API const char *ad_op_formula(size_t i);

#ifdef __cplusplus
}
#endif
#endif

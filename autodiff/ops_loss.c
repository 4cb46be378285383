/* autodiff/ops_loss.c - fused softmax family and losses: kernel, rule and
 * formula side by side. */
#include "internal.h"

const ad_op *const ad__ops_loss[] = {
    NULL,
};

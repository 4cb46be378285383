/* autodiff/ops_linalg.c - matrix products: kernel, rule and formula side by side. */
#include "internal.h"

const ad_op *const ad__ops_linalg[] = {
    NULL,
};

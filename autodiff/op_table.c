/* autodiff/op_table.c - the op table: each family of ops lists its own
 * entries beside its kernels and rules; this file only joins the lists. */
#include "internal.h"

static const ad_op *const *const families[] = {
    ad__ops_pointwise, ad__ops_pointwise_fn, ad__ops_reduce, ad__ops_shape, ad__ops_index, ad__ops_util, ad__ops_linalg,
    ad__ops_decomp, ad__ops_loss, ad__ops_nn, ad__ops_norm, ad__ops_conv, ad__ops_fused, ad__ops_recurrence,
    ad__ops_attention, ad__ops_random, ad__ops_custom, ad__ops_checkpoint,
#ifndef AD_NO_FFI /* the WebAssembly build of web/ has no libffi, so no foreign ops */
    ad__ops_ffi,
#endif
};

static const ad_op *op_at(size_t i)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const ad_op *const *p = families[f]; *p; p++)
            if (i-- == 0) return *p;
    return NULL;
}

size_t ad_op_count(void)
{
    size_t n = 0;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const ad_op *const *p = families[f]; *p; p++) n++;
    return n;
}

const char *ad_op_name(size_t i)
{
    const ad_op *op = op_at(i);
    return op ? op->name : NULL;
}

const char *ad_op_formula(size_t i)
{
    const ad_op *op = op_at(i);
    return op ? op->formula : NULL;
}

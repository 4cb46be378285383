/* tests/rows_reduce.c - op rows for test_ops (see optest.h): every reduction
 * over all axes, one axis, several, negative axes, with and without keepdim,
 * on non-contiguous views and on 0-d tensors.  Inputs of max/min are
 * continuous random values, so ties have probability 0. */
#include "optest.h"

enum { SUM, MEAN, MAX, MIN, LOGSUMEXP, VAR, SUM_TO };
enum { PLAIN, TRANSPOSED, STRIDED }; /* how the input is viewed first */

typedef struct rctx {
    int op;
    int naxes; /* 0: every axis (axes passed as NULL) */
    int axes[4];
    bool keepdim;
    int correction;
    int view;
    int ndim; /* SUM_TO: the target shape */
    int64_t shape[4];
} rctx;

static ad_tensor *b_reduce(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const rctx *c = vctx;
    ad_tensor *x = in[0];
    /* A transposed view walks memory against its shape; a stride-2 slice
     * skips every other element: both reach the kernels as non-contiguous. */
    if (c->view == TRANSPOSED) x = ad_transpose(x, 0, ad_ndim(x) - 1);
    if (c->view == STRIDED) x = ad_slice(x, ad_ndim(x) - 1, 0, ad_size(x, -1), 2);
    const int *axes = c->naxes ? c->axes : NULL;
    switch (c->op) {
    case SUM: return ad_sum(x, axes, c->naxes, c->keepdim);
    case MEAN: return ad_mean(x, axes, c->naxes, c->keepdim);
    case MAX: return ad_max(x, axes, c->naxes, c->keepdim);
    case MIN: return ad_min(x, axes, c->naxes, c->keepdim);
    case LOGSUMEXP: return ad_logsumexp(x, axes, c->naxes, c->keepdim);
    case VAR: return ad_var(x, axes, c->naxes, c->correction, c->keepdim);
    default: return ad_sum_to(x, c->ndim, c->shape);
    }
}

#define R(...) (&(rctx){__VA_ARGS__})
#define IN(nd, ...) {{nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}}
#define IN_RANGE(lo, hi, nd, ...) {{nd, {__VA_ARGS__}, OT_GRAD, lo, hi, 0}}

/* The same seven layouts for each of sum, mean, max, min, logsumexp. */
#define REDUCE_ROWS(name, OP)                                                               \
    {name, "all axes of [3,4]", b_reduce, R(.op = OP), 1, IN(2, 3, 4)},                     \
    {name, "axis 1 of [2,3,4]", b_reduce, R(.op = OP, .naxes = 1, .axes = {1}), 1,          \
     IN(3, 2, 3, 4)},                                                                       \
    {name, "axes {0,2} of [2,3,4], keepdim", b_reduce,                                      \
     R(.op = OP, .naxes = 2, .axes = {0, 2}, .keepdim = true), 1, IN(3, 2, 3, 4)},          \
    {name, "axes {-1,-3} of [2,3,4]", b_reduce, R(.op = OP, .naxes = 2, .axes = {-1, -3}), 1, \
     IN(3, 2, 3, 4)},                                                                       \
    {name, "axis -1 of [3,5], keepdim", b_reduce,                                           \
     R(.op = OP, .naxes = 1, .axes = {-1}, .keepdim = true), 1, IN(2, 3, 5)},               \
    {name, "axis 0 of a transposed [4,3]", b_reduce,                                        \
     R(.op = OP, .naxes = 1, .axes = {0}, .view = TRANSPOSED), 1, IN(2, 4, 3)},             \
    {name, "axis 1 of a stride-2 slice of [3,8]", b_reduce,                                 \
     R(.op = OP, .naxes = 1, .axes = {1}, .view = STRIDED), 1, IN(2, 3, 8)},                \
    {name, "all axes of a 0-d tensor", b_reduce, R(.op = OP), 1, IN(0, 0)},                 \
    {name, "axis 0 of a 0-d tensor, keepdim", b_reduce,                                     \
     R(.op = OP, .naxes = 1, .axes = {0}, .keepdim = true), 1, IN(0, 0)}

const op_row rows_reduce[] = {
    REDUCE_ROWS("sum", SUM),
    REDUCE_ROWS("mean", MEAN),
    REDUCE_ROWS("max", MAX),
    REDUCE_ROWS("min", MIN),
    REDUCE_ROWS("logsumexp", LOGSUMEXP),
    {"logsumexp", "axis 1 of [3,4] in [-30,30] (shift by the max matters)", b_reduce,
     R(.op = LOGSUMEXP, .naxes = 1, .axes = {1}), 1, IN_RANGE(-30, 30, 2, 3, 4)},
    {"max", "[2,5] in [-100,100], axis 1", b_reduce, R(.op = MAX, .naxes = 1, .axes = {1}), 1,
     IN_RANGE(-100, 100, 2, 2, 5)},

    {"var", "all axes of [3,4], correction 1", b_reduce, R(.op = VAR, .correction = 1), 1,
     IN(2, 3, 4)},
    {"var", "axis 1 of [2,3,4], correction 0", b_reduce,
     R(.op = VAR, .naxes = 1, .axes = {1}, .correction = 0), 1, IN(3, 2, 3, 4)},
    {"var", "axes {0,-1} of [2,3,4], keepdim, correction 1", b_reduce,
     R(.op = VAR, .naxes = 2, .axes = {0, -1}, .keepdim = true, .correction = 1), 1,
     IN(3, 2, 3, 4)},
    {"var", "axis -1 of [3,5], correction 2", b_reduce,
     R(.op = VAR, .naxes = 1, .axes = {-1}, .correction = 2), 1, IN(2, 3, 5)},
    {"var", "axis 0 of a transposed [4,3], correction 1", b_reduce,
     R(.op = VAR, .naxes = 1, .axes = {0}, .correction = 1, .view = TRANSPOSED), 1,
     IN(2, 4, 3)},
    {"var", "axis 1 of a stride-2 slice of [3,8], correction 1", b_reduce,
     R(.op = VAR, .naxes = 1, .axes = {1}, .correction = 1, .view = STRIDED), 1, IN(2, 3, 8)},
    {"var", "values near 50 (two-pass accuracy), axis 1 of [3,4]", b_reduce,
     R(.op = VAR, .naxes = 1, .axes = {1}, .correction = 1), 1, IN_RANGE(49, 51, 2, 3, 4)},
    {"var", "0-d tensor, correction 0", b_reduce, R(.op = VAR), 1, IN(0, 0)},

    {"sum_to", "[3,4] to [4] (a leading dimension)", b_reduce,
     R(.op = SUM_TO, .ndim = 1, .shape = {4}), 1, IN(2, 3, 4)},
    {"sum_to", "[2,3,4] to [3,1] (leading and kept)", b_reduce,
     R(.op = SUM_TO, .ndim = 2, .shape = {3, 1}), 1, IN(3, 2, 3, 4)},
    {"sum_to", "[2,3,4] to [2,1,4]", b_reduce, R(.op = SUM_TO, .ndim = 3, .shape = {2, 1, 4}),
     1, IN(3, 2, 3, 4)},
    {"sum_to", "[3,4] to [] (everything)", b_reduce, R(.op = SUM_TO, .ndim = 0), 1,
     IN(2, 3, 4)},
    {"sum_to", "transposed [4,3] to [1,4]", b_reduce,
     R(.op = SUM_TO, .ndim = 2, .shape = {1, 4}, .view = TRANSPOSED), 1, IN(2, 4, 3)},
    {"sum_to", "0-d to []", b_reduce, R(.op = SUM_TO, .ndim = 0), 1, IN(0, 0)},
    {"sum_to", "[3,4] to [3,4] (nothing summed: a view)", b_reduce,
     R(.op = SUM_TO, .ndim = 2, .shape = {3, 4}), 1, IN(2, 3, 4)},
    {0},
};

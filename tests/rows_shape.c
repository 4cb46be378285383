/* tests/rows_shape.c - op rows for test_ops (see optest.h).
 *
 * Most builders square the op's output.  For a linear op alone the
 * gradient reaching its rule is a constant, so gradgradcheck would never
 * differentiate the rule; with y*y the incoming gradient 2 y g depends on
 * the inputs and the rule's own rule (the adjoint op) is checked too.
 * Non-contiguous inputs come from transposing or narrowing first.  Ops with
 * an index input either take it as an OT_INDEX input (random, repeats
 * likely) or build it here with ot_index to include negative entries. */
#include "optest.h"

#include <stdint.h>

/* gather's rule (internal): scatter_add into zeros it allocates itself */
ad_tensor *ad__scatter_add_zeros(int ndim, const int64_t *shape, int axis, ad_tensor *index,
                                 ad_tensor *src);

static ad_tensor *sq(ad_tensor *y) { return ad_mul(y, y); }
static ad_tape *tape_of(ad_tensor *const *in) { return ad_tensor_tape(in[0]); }

/* ---- reshape (also flatten, squeeze, unsqueeze) and expand ---- */
static ad_tensor *b_reshape_view(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_reshape(in[0], AD_SHAPE(6, -1)));
}
static ad_tensor *b_reshape_copy(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_reshape(ad_transpose(in[0], 0, 1), AD_SHAPE(2, 6)));
}
static ad_tensor *b_reshape_split(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c; /* [4,3] transposed is [3,4] with strides [1,3]: splitting 4 is a view */
    return sq(ad_reshape(ad_transpose(in[0], 0, 1), AD_SHAPE(3, 2, 2)));
}
static ad_tensor *b_flatten(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_flatten(ad_transpose(in[0], 1, 2), 1, -1));
}
static ad_tensor *b_squeeze(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_squeeze(ad_transpose(in[0], 0, 2), -2));
}
static ad_tensor *b_unsqueeze(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_unsqueeze(ad_transpose(in[0], 0, 1), -1));
}
static ad_tensor *b_expand(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_expand(in[0], AD_SHAPE(2, 3, 4)));
}
static ad_tensor *b_expand_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_expand(ad_transpose(in[0], 0, 1), AD_SHAPE(4, -1)));
}

/* ---- permute (also transpose) ---- */
static ad_tensor *b_permute(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_permute(in[0], (const int[]){2, 0, 1}));
}
static ad_tensor *b_permute_neg(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_permute(ad_narrow(in[0], -1, 1, 4), (const int[]){-1, -3, -2}));
}
static ad_tensor *b_transpose(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_transpose(in[0], 0, -1));
}

/* ---- slice (also narrow) and slice_scatter ---- */
static ad_tensor *b_narrow(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_narrow(in[0], 1, 1, 2));
}
static ad_tensor *b_narrow_views(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c; /* a narrow of a transpose of an expand, negative start */
    ad_tensor *e = ad_expand(in[0], AD_SHAPE(3, 4));
    return sq(ad_narrow(ad_transpose(e, 0, 1), 0, -3, 2));
}
static ad_tensor *b_slice_neg(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c; /* [7,5][:, -4:100:2] = columns 1 and 3 */
    return sq(ad_slice(ad_transpose(in[0], 0, 1), -1, -4, 100, 2));
}
static ad_tensor *b_slice_step(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_slice(in[0], 0, 1, 6, 3));
}
static ad_tensor *b_slice_scatter(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_slice_scatter(in[0], in[1], 0, 1, 5, 2));
}
static ad_tensor *b_slice_scatter_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_slice_scatter(in[0], ad_transpose(in[1], 0, 1), -1, 0, INT64_MAX, 2));
}

/* ---- contiguous and cast ---- */
static ad_tensor *b_contiguous_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_contiguous(ad_transpose(in[0], 0, 1)));
}
static ad_tensor *b_contiguous(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_contiguous(in[0]));
}
static ad_tensor *b_cast(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c; /* float32 -> float64 -> float32 in the float32 run; checked as a
                         same-dtype cast in float64, where finite differences are exact */
    ad_dtype dt = ad_tensor_dtype(in[0]);
    return sq(ad_cast(ad_cast(ad_transpose(in[0], 0, 1), AD_FLOAT64), dt));
}

/* ---- concat (also stack) ---- */
static ad_tensor *b_concat3(ad_tensor *const *in, int n, void *c)
{
    (void)c;
    return sq(ad_concat(in, n, 1));
}
static ad_tensor *b_concat_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    ad_tensor *xs[2] = {ad_transpose(in[0], 0, 1), in[1]};
    return sq(ad_concat(xs, 2, -2));
}
static ad_tensor *b_concat1(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_concat(in, 1, 0));
}
static ad_tensor *b_stack(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    ad_tensor *xs[2] = {in[0], ad_transpose(in[1], 0, 1)};
    return sq(ad_stack(xs, 2, -1));
}

/* ---- index_select and index_add ---- */
static ad_tensor *b_index_select(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_index_select(in[0], 0, in[1]));
}
static ad_tensor *b_index_select_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    ad_tensor *idx = ot_index(tape_of(in), AD_SHAPE(5), (const int64_t[]){2, -1, 0, 2, -3});
    return sq(ad_index_select(ad_transpose(in[0], 0, 1), -1, idx));
}
static ad_tensor *b_index_add(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_index_add(in[0], 0, in[1], in[2]));
}
static ad_tensor *b_index_add_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    ad_tensor *idx = ot_index(tape_of(in), AD_SHAPE(5), (const int64_t[]){1, -1, 1, 0, 3});
    return sq(ad_index_add(in[0], -1, idx, ad_transpose(in[1], 0, 1)));
}

/* ---- gather and scatter_add ---- */
static ad_tensor *b_gather(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_gather(in[0], 1, in[1]));
}
static ad_tensor *b_gather_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c; /* x^T is [3,4]; index [2,3] along axis 0, repeats and negatives */
    ad_tensor *idx = ot_index(tape_of(in), AD_SHAPE(2, 3), (const int64_t[]){0, -1, 2, 1, 1, -3});
    return sq(ad_gather(ad_transpose(in[0], 0, 1), -2, idx));
}
static ad_tensor *b_scatter_add(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad_scatter_add(in[0], 1, in[1], in[2]));
}
static ad_tensor *b_scatter_add_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    ad_tensor *idx = ot_index(tape_of(in), AD_SHAPE(2, 3), (const int64_t[]){0, -1, 3, 0, 0, -4});
    return sq(ad_scatter_add(in[0], -2, idx, ad_transpose(in[1], 0, 1)));
}

static ad_tensor *b_scatter_zeros(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    return sq(ad__scatter_add_zeros(AD_SHAPE(3, 4), 1, in[1], in[0]));
}
static ad_tensor *b_scatter_zeros_t(ad_tensor *const *in, int n, void *c)
{
    (void)n, (void)c;
    ad_tensor *idx = ot_index(tape_of(in), AD_SHAPE(2, 3), (const int64_t[]){0, -1, 3, 0, 0, -4});
    return sq(ad__scatter_add_zeros(AD_SHAPE(4, 3), -2, idx, ad_transpose(in[0], 0, 1)));
}

#define IN(...) {__VA_ARGS__}
#define G(nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}
#define C(nd, ...) {nd, {__VA_ARGS__}, OT_CONST, 0, 0, 0}
#define IX(imax, nd, ...) {nd, {__VA_ARGS__}, OT_INDEX, 0, 0, imax}

const op_row rows_shape[] = {
    {"reshape", "contiguous [2,3,4] -> [6,-1] (view)", b_reshape_view, NULL, 1, IN(G(3, 2, 3, 4))},
    {"reshape", "transposed [4,3] -> [2,6] (copy)", b_reshape_copy, NULL, 1, IN(G(2, 3, 4))},
    {"reshape", "transposed [3,4] -> [3,2,2] (strided view)", b_reshape_split, NULL, 1,
     IN(G(2, 4, 3))},
    {"reshape", "flatten(1,-1) of a transposed [2,4,3]", b_flatten, NULL, 1, IN(G(3, 2, 3, 4))},
    {"reshape", "squeeze(-2) of a transposed [3,1,4]", b_squeeze, NULL, 1, IN(G(3, 4, 1, 3))},
    {"reshape", "unsqueeze(-1) of a transposed [3,2]", b_unsqueeze, NULL, 1, IN(G(2, 2, 3))},
    {"expand", "[3,1] -> [2,3,4]: new leading dim and stride 0", b_expand, NULL, 1, IN(G(2, 3, 1))},
    {"expand", "transposed [1,3] -> [4,-1]", b_expand_t, NULL, 1, IN(G(2, 3, 1))},
    {"permute", "[2,3,4] by (2,0,1)", b_permute, NULL, 1, IN(G(3, 2, 3, 4))},
    {"permute", "negative axes (-1,-3,-2) of a narrowed input", b_permute_neg, NULL, 1,
     IN(G(3, 2, 3, 5))},
    {"permute", "transpose(0,-1) of [2,3,4]", b_transpose, NULL, 1, IN(G(3, 2, 3, 4))},
    {"slice", "narrow(1, 1, 2) of [3,4]", b_narrow, NULL, 1, IN(G(2, 3, 4))},
    {"slice", "narrow(0, -3, 2) of a transpose of an expand", b_narrow_views, NULL, 1,
     IN(G(2, 3, 1))},
    {"slice", "slice(-1, -4, 100, 2) of a transposed [7,5]", b_slice_neg, NULL, 1, IN(G(2, 5, 7))},
    {"slice", "slice(0, 1, 6, 3) of [7,2]", b_slice_step, NULL, 1, IN(G(2, 7, 2))},
    {"slice_scatter", "base [5,3], src [2,3] at rows 1:5:2", b_slice_scatter, NULL, 2,
     IN(G(2, 5, 3), G(2, 2, 3))},
    {"slice_scatter", "axis -1, 0:max:2, transposed src", b_slice_scatter_t, NULL, 2,
     IN(G(2, 3, 6), G(2, 3, 3))},
    {"contiguous", "of a transposed [4,3] (copy)", b_contiguous_t, NULL, 1, IN(G(2, 3, 4))},
    {"contiguous", "of a contiguous [2,3] (view)", b_contiguous, NULL, 1, IN(G(2, 2, 3))},
    {"cast", "to float64 and back, transposed input", b_cast, NULL, 1, IN(G(2, 2, 3))},
    {"concat", "three inputs along axis 1, extents 1, 3, 2", b_concat3, NULL, 3,
     IN(G(2, 2, 1), G(2, 2, 3), G(2, 2, 2))},
    {"concat", "axis -2, a transposed input and a constant", b_concat_t, NULL, 2,
     IN(G(2, 3, 2), C(2, 1, 3))},
    {"concat", "a single input", b_concat1, NULL, 1, IN(G(2, 2, 3))},
    {"concat", "stack(-1) of [2,3] and a transposed [3,2]", b_stack, NULL, 2,
     IN(G(2, 2, 3), G(2, 3, 2))},
    {"index_select", "axis 0 of [4,3], random index of 5 (repeats)", b_index_select, NULL, 2,
     IN(G(2, 4, 3), IX(4, 1, 5))},
    {"index_select", "axis -1 of a transposed input, negative and repeated entries",
     b_index_select_t, NULL, 1, IN(G(2, 3, 4))},
    {"index_add", "base [4,3], src [5,3], random index (repeats)", b_index_add, NULL, 3,
     IN(G(2, 4, 3), IX(4, 1, 5), G(2, 5, 3))},
    {"index_add", "axis -1, transposed src, negative and repeated entries", b_index_add_t, NULL, 2,
     IN(G(2, 3, 4), G(2, 5, 3))},
    {"gather", "axis 1 of [3,4], index [3,5] longer along the axis", b_gather, NULL, 2,
     IN(G(2, 3, 4), IX(4, 2, 3, 5))},
    {"gather", "axis -2 of a transposed input, smaller index with negatives", b_gather_t, NULL, 1,
     IN(G(2, 4, 3))},
    {"scatter_add", "axis 1 into [3,4] from [3,5] (repeats)", b_scatter_add, NULL, 3,
     IN(G(2, 3, 4), IX(4, 2, 3, 5), G(2, 3, 5))},
    {"scatter_add", "axis -2, transposed src, negative and repeated targets", b_scatter_add_t,
     NULL, 2, IN(G(2, 4, 3), G(2, 3, 2))},
    {"scatter_add_zeros", "axis 1 into zeros [3,4] from [3,5] (repeats)", b_scatter_zeros, NULL,
     2, IN(G(2, 3, 5), IX(4, 2, 3, 5))},
    {"scatter_add_zeros", "axis -2, transposed src, negative and repeated targets",
     b_scatter_zeros_t, NULL, 1, IN(G(2, 3, 2))},
    {0},
};

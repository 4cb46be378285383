/* tests/rows_util.c - op rows for test_ops (see optest.h): the utilities of
 * ops_util.h.  The index ops (argmax, argmin, argsort, one_hot) are checked
 * through what users do with them: values picked by gather, or a one-hot
 * mask multiplied in.  Random draws make ties improbable, so the sort
 * order does not change within gradcheck's steps. */
#include "optest.h"

typedef struct { int axis; bool flag; int64_t k; } util_ctx;

static ad_tensor *tr(ad_tensor *x) { return ad_transpose(x, -2, -1); }

static ad_tensor *b_argmax(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    ad_tensor *x = c->flag ? tr(in[0]) : in[0];
    return ad_gather(x, c->axis, ad_argmax(x, c->axis, true));
}
static ad_tensor *b_argmin(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_gather(in[0], c->axis, ad_argmin(in[0], c->axis, true));
}
static ad_tensor *b_sort(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    ad_tensor *idx = NULL, *y = ad_sort(in[0], c->axis, c->flag, &idx);
    /* the indices must pick the values: gather(x, idx) == y */
    ck_assert_msg(y && idx, "%s", ad_error());
    ad_tensor *again = ad_gather(in[0], c->axis, idx);
    for (int64_t i = 0; i < ad_numel(y); i++) ck_assert_double_eq(ot_at(y, i), ot_at(again, i));
    return y;
}
static ad_tensor *b_topk(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_topk(in[0], c->k, c->axis, c->flag, NULL);
}
static ad_tensor *b_cumsum(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_cumsum(c->flag ? tr(in[0]) : in[0], c->axis);
}
ad_tensor *ad__cumsum_reverse(ad_tensor *x, int axis); /* cumprod's rule (internal) */
static ad_tensor *b_cumsum_reverse(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad__cumsum_reverse(c->flag ? tr(in[0]) : in[0], c->axis);
}
static ad_tensor *b_cumprod(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_cumprod(c->flag ? tr(in[0]) : in[0], c->axis);
}
/* cumprod of x [2,4] with zeros put in: one zero in row 0, two in row 1,
 * so the rule's exact path (not the quotient) is taken. */
static ad_tensor *b_cumprod_zero(ad_tensor *const *in, int n, void *vctx)
{
    (void)n, (void)vctx;
    static const double m[8] = {1, 1, 0, 1, 0, 1, 1, 0};
    return ad_cumprod(ad_mul(in[0], ot_const_like(in[0], 2, (int64_t[]){2, 4}, m)), 1);
}
static ad_tensor *b_tril(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_tril(c->flag ? tr(in[0]) : in[0], c->k);
}
static ad_tensor *b_triu(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_triu(c->flag ? tr(in[0]) : in[0], c->k);
}
static ad_tensor *b_diagonal(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    /* squared, so that the second derivative is not zero */
    return ad_square(ad_diagonal(c->flag ? tr(in[0]) : in[0], c->k));
}
static ad_tensor *b_diag_embed(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_square(ad_diag_embed(in[0], c->k));
}
static ad_tensor *b_diag(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    const util_ctx *c = vctx;
    return ad_square(ad_diag(in[0], c->k));
}
/* mu + sigma * randn_like(mu) and x * rand_like(x), with a stream seeded
 * afresh on every call: the same draw each time, as gradcheck needs. */
static ad_tensor *b_randn_like(ad_tensor *const *in, int n, void *vctx)
{
    (void)n, (void)vctx;
    ad_rng rng;
    ad_rng_init(&rng, 3);
    return ad_add(in[0], ad_mul(in[1], ad_randn_like(in[0], &rng, 0, 1)));
}
static ad_tensor *b_rand_like(ad_tensor *const *in, int n, void *vctx)
{
    (void)n, (void)vctx;
    ad_rng rng;
    ad_rng_init(&rng, 4);
    return ad_mul(ad_square(in[0]), ad_rand_like(in[0], &rng, 0.5, 1.5));
}

static ad_tensor *b_one_hot(ad_tensor *const *in, int n, void *vctx)
{
    (void)n, (void)vctx;
    return ad_mul(ad_square(in[0]), ad_one_hot(in[1], 4, ad_tensor_dtype(in[0])));
}
static ad_tensor *b_masked_fill(ad_tensor *const *in, int n, void *vctx)
{
    (void)n, (void)vctx;
    static const double m[4] = {0, 1, 0, 1};
    ad_tensor *mask = ot_const_like(in[0], 1, (int64_t[]){4}, m);
    return ad_square(ad_masked_fill(in[0], mask, 0.5));
}
/* einsum: ctx is the equation; the result squared so that second
 * derivatives are not all zero. */
static ad_tensor *b_einsum(ad_tensor *const *in, int n, void *vctx)
{
    return ad_square(ad_einsum(vctx, n, in));
}

#define U(...) (&(util_ctx){__VA_ARGS__})
#define G(nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}
#define GR(lo, hi, nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, lo, hi, 0}
#define IX(imax, nd, ...) {nd, {__VA_ARGS__}, OT_INDEX, 0, 0, imax}

const op_row rows_util[] = {
    {"argmax", "maxima along axis 1 of [3,4] through gather", b_argmax, U(1, false, 0), 1,
     {G(2, 3, 4)}},
    {"argmax", "maxima along axis 0 of a transposed [4,3]", b_argmax, U(0, true, 0), 1,
     {G(2, 4, 3)}},
    {"argmax", "maxima along the last axis of [2,2,3]", b_argmax, U(-1, false, 0), 1,
     {G(3, 2, 2, 3)}},
    {"argmin", "minima along axis 0 of [3,4] through gather", b_argmin, U(0, false, 0), 1,
     {G(2, 3, 4)}},
    {"argsort", "sort [3,5] ascending along axis 1", b_sort, U(1, false, 0), 1, {G(2, 3, 5)}},
    {"argsort", "sort [4,3] descending along axis 0", b_sort, U(0, true, 0), 1, {G(2, 4, 3)}},
    {"argsort", "sort a vector [6]", b_sort, U(0, false, 0), 1, {G(1, 6)}},
    {"argsort", "topk 2 largest of [3,5] along axis 1", b_topk, U(1, true, 2), 1, {G(2, 3, 5)}},
    {"argsort", "topk 3 smallest of [4,2] along axis 0", b_topk, U(0, false, 3), 1, {G(2, 4, 2)}},
    {"cumsum", "[3,4] along axis 1", b_cumsum, U(1, false, 0), 1, {G(2, 3, 4)}},
    {"cumsum", "transposed [4,3] along axis 0", b_cumsum, U(0, true, 0), 1, {G(2, 4, 3)}},
    {"cumsum", "[2,3,2] along axis 1", b_cumsum, U(1, false, 0), 1, {G(3, 2, 3, 2)}},
    {"cumsum", "reversed, [3,4] along axis 1", b_cumsum_reverse, U(1, false, 0), 1, {G(2, 3, 4)}},
    {"cumsum", "reversed, transposed [4,3] along axis 0", b_cumsum_reverse, U(0, true, 0), 1,
     {G(2, 4, 3)}},
    {"cumprod", "[3,4] in [0.5,1.5] along axis 1", b_cumprod, U(1, false, 0), 1,
     {GR(0.5, 1.5, 2, 3, 4)}},
    {"cumprod", "[3,4] of both signs along axis 0, transposed", b_cumprod, U(0, true, 0), 1,
     {GR(-1.5, 1.5, 2, 4, 3)}},
    {"cumprod", "[2,4] with one and two zeros per line (the exact rule)", b_cumprod_zero,
     U(1, false, 0), 1, {GR(0.5, 1.5, 2, 2, 4)}},
    {"tril", "[3,4], k = 0", b_tril, U(0, false, 0), 1, {G(2, 3, 4)}},
    {"tril", "batched [2,3,3], k = -1", b_tril, U(0, false, -1), 1, {G(3, 2, 3, 3)}},
    {"tril", "transposed [4,3], k = 1", b_tril, U(0, true, 1), 1, {G(2, 4, 3)}},
    {"triu", "[3,4], k = 0", b_triu, U(0, false, 0), 1, {G(2, 3, 4)}},
    {"triu", "batched [2,3,3], k = 1", b_triu, U(0, false, 1), 1, {G(3, 2, 3, 3)}},
    {"triu", "transposed [4,3], k = -1", b_triu, U(0, true, -1), 1, {G(2, 4, 3)}},
    {"diagonal", "main diagonal of [3,4]", b_diagonal, U(0, false, 0), 1, {G(2, 3, 4)}},
    {"diagonal", "k = 1 of batched [2,3,3]", b_diagonal, U(0, false, 1), 1, {G(3, 2, 3, 3)}},
    {"diagonal", "k = -2 of transposed [3,4]", b_diagonal, U(0, true, -2), 1, {G(2, 3, 4)}},
    {"diag_embed", "[3], k = 0", b_diag_embed, U(0, false, 0), 1, {G(1, 3)}},
    {"diag_embed", "batched [2,3], k = 1", b_diag_embed, U(0, false, 1), 1, {G(2, 2, 3)}},
    {"diag_embed", "[3] through ad_diag, k = -1", b_diag, U(0, false, -1), 1, {G(1, 3)}},
    {"diagonal", "[3,3] through ad_diag", b_diag, U(0, false, 0), 1, {G(2, 3, 3)}},
    {"one_hot", "x^2 [3,4] times one_hot(labels [3], 4)", b_one_hot, NULL, 2,
     {G(2, 3, 4), IX(4, 1, 3)}},
    {"where", "masked_fill of [3,4] with a [4] mask", b_masked_fill, NULL, 1, {G(2, 3, 4)}},
    {"randn_like", "mu + sigma * randn_like(mu), [2,3], fixed seed", b_randn_like, NULL, 2,
     {G(2, 2, 3), G(2, 2, 3)}},
    {"rand_like", "x^2 * rand_like(x, 0.5, 1.5), [3,4], fixed seed", b_rand_like, NULL, 1,
     {G(2, 3, 4)}},
    {"matmul", "einsum ij,jk->ik", b_einsum, "ij,jk->ik", 2, {G(2, 3, 4), G(2, 4, 2)}},
    {"matmul", "einsum bhqd,bhkd->bhqk", b_einsum, "bhqd,bhkd->bhqk", 2,
     {G(4, 2, 1, 3, 2), G(4, 2, 1, 2, 2)}},
    {"matmul", "einsum ij,jk,kl->il (three operands)", b_einsum, "ij,jk,kl->il", 3,
     {G(2, 2, 3), G(2, 3, 2), G(2, 2, 2)}},
    {"matmul", "einsum i,j->ij (outer product)", b_einsum, "i,j->ij", 2, {G(1, 3), G(1, 2)}},
    {"diagonal", "einsum ii->i", b_einsum, "ii->i", 1, {G(2, 3, 3)}},
    {"sum", "einsum iij->j (trace of each slice)", b_einsum, "iij->j", 1, {G(3, 2, 2, 3)}},
    {"sum", "einsum ij,ij->i (row dots)", b_einsum, "ij,ij->i", 2, {G(2, 2, 3), G(2, 2, 3)}},
    {"permute", "einsum ijk->kij", b_einsum, "ijk->kij", 1, {G(3, 2, 3, 2)}},
    {0},
};

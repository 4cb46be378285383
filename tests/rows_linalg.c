/* tests/rows_linalg.c - op rows for test_ops (see optest.h): matmul in
 * every shape case of torch.matmul, on transposed views and with one side
 * constant, dot, and linear (bias, batch, views). */
#include "optest.h"

/* How the inputs are prepared before the product. */
enum { PLAIN = 0, T_A = 1, T_B = 2, SAME = 4, STRIDED = 8 };

static ad_tensor *tr(ad_tensor *x) { return ad_transpose(x, ad_ndim(x) - 2, ad_ndim(x) - 1); }

static ad_tensor *b_matmul(ad_tensor *const *in, int n, void *vctx)
{
    int how = *(const int *)vctx;
    ad_tensor *a = in[0], *b = n > 1 ? in[1] : in[0];
    if (how & SAME) b = a; /* a a: both gradient contributions land on one leaf */
    if (how & T_A) a = tr(a);
    if (how & T_B) b = tr(b);
    return ad_matmul(a, b);
}

static ad_tensor *b_dot(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    int how = *(const int *)vctx;
    ad_tensor *a = in[0], *b = in[1];
    if (how & STRIDED) { /* every other element: stride 2 */
        a = ad_slice(a, 0, 0, ad_size(a, 0), 2);
        b = ad_slice(b, 0, 1, ad_size(b, 0), 2);
    }
    return ad_dot(a, b);
}

/* ad_linear(x, w, b) over in[0..2], x and w optionally transposed views. */
enum { L_BIAS = 1, L_TW = 4, L_TX = 8 };
static ad_tensor *b_linear(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    int how = *(const int *)vctx;
    ad_tensor *x = in[0], *w = in[1], *b = how & L_BIAS ? in[2] : NULL;
    if (how & L_TX) x = tr(x);
    if (how & L_TW) w = tr(w);
    return ad_linear(x, w, b);
}

#define HOW(h) (&(int){h})
#define G(nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}
#define C(nd, ...) {nd, {__VA_ARGS__}, OT_CONST, 0, 0, 0}

const op_row rows_linalg[] = {
    {"matmul", "[3,4] x [4,2]", b_matmul, HOW(PLAIN), 2, {G(2, 3, 4), G(2, 4, 2)}},
    {"matmul", "[4] x [4,3]: vector promoted on the left", b_matmul, HOW(PLAIN), 2,
     {G(1, 4), G(2, 4, 3)}},
    {"matmul", "[3,4] x [4]: vector promoted on the right", b_matmul, HOW(PLAIN), 2,
     {G(2, 3, 4), G(1, 4)}},
    {"matmul", "[2,1,2,3] x [3,3,2]: batch dimensions broadcast on both sides", b_matmul,
     HOW(PLAIN), 2, {G(4, 2, 1, 2, 3), G(3, 3, 3, 2)}},
    {"matmul", "[2,3,4] x [4,2]: batch against a matrix", b_matmul, HOW(PLAIN), 2,
     {G(3, 2, 3, 4), G(2, 4, 2)}},
    {"matmul", "[3,4] x [2,4,2]: matrix against a batch", b_matmul, HOW(PLAIN), 2,
     {G(2, 3, 4), G(3, 2, 4, 2)}},
    {"matmul", "[2,3,4] x [4]: batch times vector", b_matmul, HOW(PLAIN), 2,
     {G(3, 2, 3, 4), G(1, 4)}},
    {"matmul", "[3] x [2,3,2]: vector times batch", b_matmul, HOW(PLAIN), 2,
     {G(1, 3), G(3, 2, 3, 2)}},
    {"matmul", "transposed [4,3] x [4,2]", b_matmul, HOW(T_A), 2, {G(2, 4, 3), G(2, 4, 2)}},
    {"matmul", "[3,4] x transposed [2,4]", b_matmul, HOW(T_B), 2, {G(2, 3, 4), G(2, 2, 4)}},
    {"matmul", "both transposed, batched [2,4,3] x [2,2,4]", b_matmul, HOW(T_A | T_B), 2,
     {G(3, 2, 4, 3), G(3, 2, 2, 4)}},
    {"matmul", "a a with one [3,3] leaf", b_matmul, HOW(SAME), 1, {G(2, 3, 3)}},
    {"matmul", "a^T a with one [4,3] leaf", b_matmul, HOW(SAME | T_A), 1, {G(2, 4, 3)}},
    {"matmul", "constant [2,3] x [3,4]", b_matmul, HOW(PLAIN), 2, {C(2, 2, 3), G(2, 3, 4)}},
    {"matmul", "[2,3] x constant [3,4]", b_matmul, HOW(PLAIN), 2, {G(2, 2, 3), C(2, 3, 4)}},
    {"matmul", "[1,5] x [5,1] (extents of 1)", b_matmul, HOW(PLAIN), 2,
     {G(2, 1, 5), G(2, 5, 1)}},
    {"linear", "[3,4] x [2,4]^T + [2]", b_linear, HOW(L_BIAS), 3,
     {G(2, 3, 4), G(2, 2, 4), G(1, 2)}},
    {"linear", "no bias: [3,4] x [2,4]^T", b_linear, HOW(0), 2, {G(2, 3, 4), G(2, 2, 4)}},
    {"linear", "batched [2,3,4] x [3,4]^T + [3]", b_linear, HOW(L_BIAS), 3,
     {G(3, 2, 3, 4), G(2, 3, 4), G(1, 3)}},
    {"linear", "vector [4] x [2,4]^T + [2]", b_linear, HOW(L_BIAS), 3,
     {G(1, 4), G(2, 2, 4), G(1, 2)}},
    {"linear", "constant x [3,4], w a transposed [4,2] view", b_linear, HOW(L_BIAS | L_TW), 3,
     {C(2, 3, 4), G(2, 4, 2), G(1, 2)}},
    {"linear", "x a transposed [4,3] view, no bias", b_linear, HOW(L_TX), 2,
     {G(2, 4, 3), G(2, 2, 4)}},
    {"dot", "[5] . [5]", b_dot, HOW(PLAIN), 2, {G(1, 5), G(1, 5)}},
    {"dot", "stride-2 slices of [8] and [9]", b_dot, HOW(STRIDED), 2, {G(1, 8), G(1, 9)}},
    {"dot", "[4] x [4] through ad_matmul", b_matmul, HOW(PLAIN), 2, {G(1, 4), G(1, 4)}},
    {"dot", "constant [3] . [3]", b_dot, HOW(PLAIN), 2, {C(1, 3), G(1, 3)}},
    {0},
};

/* tests/rows_pointwise.c - op rows for test_ops (see optest.h).
 *
 * Every binary op gets the same set of layouts (BIN_ROWS): equal shapes,
 * the three broadcasting patterns ([2,3] with [3], [2,1] with [1,4], 0-d
 * with [3]), the broadcast the other way round, and a transposed (strided)
 * first input.  Every unary op gets a matrix, a 0-d tensor and a transposed
 * matrix (UN_ROWS).  Ranges keep each op smooth: logs and roots on [0.5, 2],
 * and for relu, abs, clamp, maximum... uniform draws, which hit a kink with
 * probability ~0 (gradcheck's step is 1e-6). */
#include "optest.h"

typedef struct { ad_tensor *(*f)(ad_tensor *, ad_tensor *); } bin_ctx;

ad_tensor *ad__relu_grad(ad_tensor *g, ad_tensor *x); /* relu's rule (internal) */
typedef struct { ad_tensor *(*f)(ad_tensor *); } un_ctx;
typedef struct { ad_tensor *(*f)(ad_tensor *, double); double s; } sc_ctx;

static ad_tensor *tr(ad_tensor *x) { return ad_transpose(x, 0, 1); }

static ad_tensor *b_bin(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ((bin_ctx *)ctx)->f(in[0], in[1]);
}
static ad_tensor *b_bin_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ((bin_ctx *)ctx)->f(tr(in[0]), in[1]);
}
/* First input [3] expanded to [2,3] without copying: stride 0. */
static ad_tensor *b_bin_x(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ((bin_ctx *)ctx)->f(ad_expand(in[0], 2, (int64_t[]){2, 3}), in[1]);
}
static ad_tensor *b_un(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ((un_ctx *)ctx)->f(in[0]);
}
static ad_tensor *b_un_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ((un_ctx *)ctx)->f(tr(in[0]));
}
static ad_tensor *b_sc(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    sc_ctx *c = ctx;
    return c->f(in[0], c->s);
}
static ad_tensor *b_sc_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    sc_ctx *c = ctx;
    return c->f(tr(in[0]), c->s);
}
static ad_tensor *b_leaky(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_leaky_relu(in[0], *(double *)ctx);
}
static ad_tensor *b_leaky_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ad_leaky_relu(tr(in[0]), *(double *)ctx);
}
static ad_tensor *b_clamp(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    double *p = ctx;
    return ad_clamp(in[0], p[0], p[1]);
}
static ad_tensor *b_clamp_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    double *p = ctx;
    return ad_clamp(tr(in[0]), p[0], p[1]);
}
/* where with the condition given directly (int64 0/1, or a float). */
static ad_tensor *b_where(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_where(in[0], in[1], in[2]);
}
/* where with a float condition in[0] > 0, so both branches are taken. */
static ad_tensor *b_where_gt(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *zero = ad_scalar_tensor(ad_tensor_tape(in[0]), ad_tensor_dtype(in[0]), 0.0);
    return ad_where(ad_gt(in[0], zero), in[1], in[2]);
}
static ad_tensor *b_where_t(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_where(in[0], tr(in[1]), in[2]);
}

/* x compared with itself: every element ties. */
static ad_tensor *b_self(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return ((bin_ctx *)ctx)->f(in[0], in[0]);
}

static bin_ctx C_ADD = {ad_add}, C_SUB = {ad_sub}, C_MUL = {ad_mul}, C_DIV = {ad_div},
               C_POW = {ad_pow}, C_ATAN2 = {ad_atan2}, C_MAXIMUM = {ad_maximum}, C_MINIMUM = {ad_minimum},
               C_GT = {ad_gt}, C_GE = {ad_ge}, C_LT = {ad_lt}, C_LE = {ad_le}, C_EQ = {ad_eq},
               C_RELU_GRAD = {ad__relu_grad};
static un_ctx C_NEG = {ad_neg}, C_EXP = {ad_exp}, C_LOG = {ad_log}, C_SQRT = {ad_sqrt},
              C_SIN = {ad_sin}, C_COS = {ad_cos}, C_TAN = {ad_tan}, C_TANH = {ad_tanh},
              C_SIGMOID = {ad_sigmoid}, C_RELU = {ad_relu}, C_ERF = {ad_erf}, C_ERFC = {ad_erfc},
              C_GELU = {ad_gelu}, C_SOFTPLUS = {ad_softplus}, C_ABS = {ad_abs},
              C_SQUARE = {ad_square}, C_LOG1P = {ad_log1p}, C_EXPM1 = {ad_expm1}, C_RECIPROCAL = {ad_reciprocal}, C_SIGN = {ad_sign};
static sc_ctx S_ADD = {ad_add_scalar, 1.5}, S_SUB = {ad_sub_scalar, 0.25},
              S_RSUB = {ad_rsub_scalar, 2.0}, S_MUL = {ad_mul_scalar, -3.0},
              S_DIV = {ad_div_scalar, 4.0}, S_RDIV = {ad_rdiv_scalar, 3.0},
              S_POW3 = {ad_pow_scalar, 3.0}, S_POW2 = {ad_pow_scalar, 2.0},
              S_POWH = {ad_pow_scalar, 0.5}, S_POWN = {ad_pow_scalar, -1.5};
static double LEAKY = 0.1, LEAKY_BIG = 2.5;
static double CLAMP_BOTH[2] = {-0.5, 0.5}, CLAMP_LO[2] = {-0.25, INFINITY},
              CLAMP_HI[2] = {-INFINITY, 0.3};

#define IN(nd, lo, hi, ...) {nd, {__VA_ARGS__}, OT_GRAD, lo, hi, 0}
#define CONST(nd, lo, hi, ...) {nd, {__VA_ARGS__}, OT_CONST, lo, hi, 0}
#define INDEX(nd, imax, ...) {nd, {__VA_ARGS__}, OT_INDEX, 0, 0, imax}

/* a in [alo, ahi], b in [blo, bhi]. */
#define BIN_ROWS(name, C, alo, ahi, blo, bhi)                                                       \
    {name, "same shape [2,3]", b_bin, &C, 2, {IN(2, alo, ahi, 2, 3), IN(2, blo, bhi, 2, 3)}},       \
    {name, "[2,3] with [3]", b_bin, &C, 2, {IN(2, alo, ahi, 2, 3), IN(1, blo, bhi, 3)}},            \
    {name, "[2,1] with [1,4]", b_bin, &C, 2, {IN(2, alo, ahi, 2, 1), IN(2, blo, bhi, 1, 4)}},       \
    {name, "0-d with [3]", b_bin, &C, 2, {IN(0, alo, ahi, 0), IN(1, blo, bhi, 3)}},                 \
    {name, "[3] with 0-d", b_bin, &C, 2, {IN(1, alo, ahi, 3), IN(0, blo, bhi, 0)}},  \
    {name, "[3] with [2,3]", b_bin, &C, 2, {IN(1, alo, ahi, 3), IN(2, blo, bhi, 2, 3)}},             \
    {name, "transposed [3,2] with [2,3]", b_bin_t, &C, 2,                                           \
     {IN(2, alo, ahi, 3, 2), IN(2, blo, bhi, 2, 3)}},                                               \
    {name, "transposed [3,2] with [3]", b_bin_t, &C, 2, {IN(2, alo, ahi, 3, 2), IN(1, blo, bhi, 3)}}, \
    {name, "expanded (stride 0) [3] with [2,3]", b_bin_x, &C, 2,                                    \
     {IN(1, alo, ahi, 3), IN(2, blo, bhi, 2, 3)}}

#define UN_ROWS(name, C, lo, hi)                                                                    \
    {name, "[2,3]", b_un, &C, 1, {IN(2, lo, hi, 2, 3)}},                                            \
    {name, "0-d", b_un, &C, 1, {IN(0, lo, hi, 0)}},                                                 \
    {name, "[5]", b_un, &C, 1, {IN(1, lo, hi, 5)}},                                                 \
    {name, "transposed [3,2]", b_un_t, &C, 1, {IN(2, lo, hi, 3, 2)}}

#define CMP_ROWS(name, C)                                                                           \
    {name, "same shape [2,3]", b_bin, &C, 2, {IN(2, -1, 1, 2, 3), IN(2, -1, 1, 2, 3)}},             \
    {name, "[2,3] with [3]", b_bin, &C, 2, {IN(2, -1, 1, 2, 3), CONST(1, -1, 1, 3)}},               \
    {name, "0-d with [3]", b_bin, &C, 2, {IN(0, -1, 1, 0), IN(1, -1, 1, 3)}},                       \
    {name, "transposed [3,2] with [2,3]", b_bin_t, &C, 2, {IN(2, -1, 1, 3, 2), IN(2, -1, 1, 2, 3)}}

#define SC_ROWS(name, S, lo, hi, what)                                                              \
    {name, what " on [2,3]", b_sc, &S, 1, {IN(2, lo, hi, 2, 3)}},                                   \
    {name, what " on transposed [3,2]", b_sc_t, &S, 1, {IN(2, lo, hi, 3, 2)}}

const op_row rows_pointwise[] = {
    BIN_ROWS("add", C_ADD, -1, 1, -1, 1),
    {"add", "[2,1,4] with [3,1]", b_bin, &C_ADD, 2, {IN(3, -1, 1, 2, 1, 4), IN(2, -1, 1, 3, 1)}},
    {"add", "b constant", b_bin, &C_ADD, 2, {IN(2, -1, 1, 2, 3), CONST(1, -1, 1, 3)}},
    SC_ROWS("add", S_ADD, -1, 1, "add_scalar"),
    BIN_ROWS("sub", C_SUB, -1, 1, -1, 1),
    SC_ROWS("sub", S_SUB, -1, 1, "sub_scalar"),
    SC_ROWS("sub", S_RSUB, -1, 1, "rsub_scalar"),
    BIN_ROWS("mul", C_MUL, -1, 1, -1, 1),
    {"mul", "[2,1,4] with [3,1]", b_bin, &C_MUL, 2, {IN(3, -1, 1, 2, 1, 4), IN(2, -1, 1, 3, 1)}},
    {"mul", "a constant", b_bin, &C_MUL, 2, {CONST(1, -1, 1, 3), IN(2, -1, 1, 2, 3)}},
    SC_ROWS("mul", S_MUL, -1, 1, "mul_scalar"),
    BIN_ROWS("div", C_DIV, -1, 1, 0.5, 2),
    {"div", "negative divisor", b_bin, &C_DIV, 2, {IN(2, -1, 1, 2, 3), IN(1, -2, -0.5, 3)}},
    SC_ROWS("div", S_DIV, -1, 1, "div_scalar"),
    SC_ROWS("div", S_RDIV, 0.5, 2, "rdiv_scalar"),
    BIN_ROWS("pow", C_POW, 0.5, 2, -2, 2),
    SC_ROWS("pow", S_POW3, -1, 1, "pow_scalar 3 (negative base)"),
    SC_ROWS("pow", S_POW2, -1, 1, "pow_scalar 2 (negative base)"),
    SC_ROWS("pow", S_POWH, 0.5, 2, "pow_scalar 0.5"),
    SC_ROWS("pow", S_POWN, 0.5, 2, "pow_scalar -1.5"),
    BIN_ROWS("maximum", C_MAXIMUM, -1, 1, -1, 1),
    BIN_ROWS("minimum", C_MINIMUM, -1, 1, -1, 1),

    UN_ROWS("neg", C_NEG, -1, 1),
    UN_ROWS("exp", C_EXP, -2, 2),
    UN_ROWS("log", C_LOG, 0.5, 2),
    UN_ROWS("sqrt", C_SQRT, 0.5, 2),
    UN_ROWS("sin", C_SIN, -3, 3),
    UN_ROWS("cos", C_COS, -3, 3),
    UN_ROWS("tan", C_TAN, -1, 1),
    UN_ROWS("tanh", C_TANH, -2, 2),
    UN_ROWS("sigmoid", C_SIGMOID, -4, 4),
    UN_ROWS("relu", C_RELU, -1, 1),
    /* relu's rule: linear in g, 0 in x away from x = 0 (a uniform draw) */
    BIN_ROWS("relu_grad", C_RELU_GRAD, -1, 1, -1, 1),
    {"leaky_relu", "slope 0.1 [2,3]", b_leaky, &LEAKY, 1, {IN(2, -1, 1, 2, 3)}},
    {"leaky_relu", "slope 0.1 0-d", b_leaky, &LEAKY, 1, {IN(0, -1, 1, 0)}},
    {"leaky_relu", "slope 2.5 transposed [3,2]", b_leaky_t, &LEAKY_BIG, 1, {IN(2, -1, 1, 3, 2)}},
    UN_ROWS("erf", C_ERF, -2, 2),
    UN_ROWS("erfc", C_ERFC, -2, 3),
    UN_ROWS("gelu", C_GELU, -3, 3),
    UN_ROWS("softplus", C_SOFTPLUS, -4, 4),
    UN_ROWS("log1p", C_LOG1P, -0.5, 2),
    UN_ROWS("expm1", C_EXPM1, -2, 2),
    /* atan2 away from its branch cut (b < 0, a = 0): b > 0, or a > 0 */
    BIN_ROWS("atan2", C_ATAN2, -1, 1, 0.5, 2),
    {"atan2", "upper half plane, b of both signs", b_bin, &C_ATAN2, 2,
     {IN(2, 0.5, 1, 2, 3), IN(2, -1, 1, 2, 3)}},
    UN_ROWS("abs", C_ABS, -1, 1),
    UN_ROWS("square", C_SQUARE, -2, 2),
    UN_ROWS("reciprocal", C_RECIPROCAL, 0.5, 2),
    {"reciprocal", "negative [2,3]", b_un, &C_RECIPROCAL, 1, {IN(2, -2, -0.5, 2, 3)}},
    {"clamp", "[-0.5, 0.5] on [2,3]", b_clamp, CLAMP_BOTH, 1, {IN(2, -1, 1, 2, 3)}},
    {"clamp", "[-0.5, 0.5] on 0-d", b_clamp, CLAMP_BOTH, 1, {IN(0, -1, 1, 0)}},
    {"clamp", "[-0.5, 0.5] on transposed [3,2]", b_clamp_t, CLAMP_BOTH, 1, {IN(2, -1, 1, 3, 2)}},
    {"clamp", "lower bound only", b_clamp, CLAMP_LO, 1, {IN(1, -1, 1, 6)}},
    {"clamp", "upper bound only", b_clamp, CLAMP_HI, 1, {IN(1, -1, 1, 6)}},

    {"where", "int64 cond, same shape [2,3]", b_where, NULL, 3,
     {INDEX(2, 2, 2, 3), IN(2, -1, 1, 2, 3), IN(2, -1, 1, 2, 3)}},
    {"where", "float cond x > 0, [2,3] [3] 0-d", b_where_gt, NULL, 3,
     {CONST(2, -1, 1, 2, 3), IN(1, -1, 1, 3), IN(0, -1, 1, 0)}},
    {"where", "int64 cond [2,1], a [1,4], b [4]", b_where, NULL, 3,
     {INDEX(2, 2, 2, 1), IN(2, -1, 1, 1, 4), IN(1, -1, 1, 4)}},
    {"where", "int64 cond [3], a transposed [3,2], b [2,1]", b_where_t, NULL, 3,
     {INDEX(1, 2, 3), IN(2, -1, 1, 3, 2), IN(2, -1, 1, 2, 1)}},
    {"where", "float cond that requires grad (gets zeros)", b_where, NULL, 3,
     {IN(1, 0.5, 1, 3), IN(1, -1, 1, 3), IN(1, -1, 1, 3)}},
    {"where", "a constant", b_where, NULL, 3,
     {INDEX(2, 2, 2, 3), CONST(2, -1, 1, 2, 3), IN(2, -1, 1, 2, 3)}},

    /* Not differentiable: the checks see outputs that do not require grad
     * (zero Jacobians both ways) and float32 values equal to float64's. */
    CMP_ROWS("gt", C_GT),
    CMP_ROWS("ge", C_GE),
    CMP_ROWS("lt", C_LT),
    CMP_ROWS("le", C_LE),
    CMP_ROWS("eq", C_EQ),
    {"eq", "x == x (all ties)", b_self, &C_EQ, 1, {IN(2, -1, 1, 2, 3)}},
    {"ge", "x >= x (all ties)", b_self, &C_GE, 1, {IN(2, -1, 1, 2, 3)}},
    UN_ROWS("sign", C_SIGN, -1, 1),
    {0},
};

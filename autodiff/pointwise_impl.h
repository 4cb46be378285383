/* autodiff/pointwise_impl.h - what the files of elementwise ops share:
 * ops_pointwise.c (the kernels, the machinery that checks, broadcasts,
 * runs and records an op, and the arithmetic, transcendental, activation,
 * where and comparison ops) and ops_pointwise_fn.c (the ops that map a
 * scalar function: erf, gelu, softplus, log1p, expm1, atan2, abs, square,
 * reciprocal, clamp).  Each op is defined by one of the PW_* macros below,
 * beside its rule and formula.  Not installed. */
#ifndef AUTODIFF_POINTWISE_IMPL_H
#define AUTODIFF_POINTWISE_IMPL_H

#include "internal.h"
#include "stream.h"

/* The kinds of kernel: the hot ops' typed kernels (pointwise_kernels.inc),
 * or K_FN, a scalar function mapped by the op's own row function. */
enum { K_FN, K_ADD, K_SUB, K_MUL, K_DIV, K_GT, K_GE, K_LT, K_LE, K_EQ, K_SQDIFF, K_RELU_GRAD,
       K_NEG, K_EXP, K_LOG, K_SQRT, K_RELU, K_TANH, K_SIGMOID, K_SIN, K_COS };

/* A unary op's scalar function: x and the op's parameter struct (NULL for
 * an op without parameters); a binary op's.  The row loops call them with a
 * constant function; the kern's f1 / f2 are only for count_row. */
typedef double (*pw_fn1)(double x, const void *params);
typedef double (*pw_fn2)(double a, double b);

typedef struct kern {
    int kind;
    pw_fn1 f1;  /* count_row's scalar function (sign), */
    pw_fn2 f2;  /* or its binary one (the comparisons) */
    const void *p; /* the op's parameters */
    ad_tensor *out;
    const ad_tensor *a, *b, *c; /* operands; c is where's condition */
    int64_t changed;            /* count_row: results that differ from before */
} kern;

#if defined(__GNUC__) || defined(__clang__)
#define KERNEL_INLINE inline __attribute__((always_inline))
#else
#define KERNEL_INLINE inline
#endif

/* An elementwise op is its ad_op plus the kernel that computes it, so one
 * forward (ad__pw_fw, for ad_tape_replay) serves them all: it finds the
 * kernel from n->op, which points at the first member of the op's pw_def. */
typedef struct pw_def {
    ad_op op;
    int kind;         /* a hot kind, or K_FN with row: */
    ad_iter_row row;  /* a K_FN op's row function */
    pw_fn1 f1;        /* for count_row (sign) */
    pw_fn2 f2;        /* for count_row (the comparisons) */
} pw_def;

/* Runs row function row over k->out's shape, k->out first and then the
 * operands broadcast against it (ops_pointwise.c). */
void ad__pw_run(kern *k, ad_iter_row row);
/* The row function that computes op d. */
ad_iter_row ad__pw_row(const pw_def *d, bool binary);
/* The forward of every op defined by a pw_def (ad_tape_replay). */
int ad__pw_fw(ad_node *n);
/* Check, broadcast (binary), allocate, run d's kernel and record; fn
 * names the public function in errors.  params (NULL when d has none) is
 * copied into the node. */
ad_tensor *ad__pw_binary(const char *fn, const pw_def *d, ad_tensor *a, ad_tensor *b);
ad_tensor *ad__pw_unary(const char *fn, const pw_def *d, ad_tensor *x, const void *params);

/* The generic loops of K_FN ops (fn1_loop_f32, fn2t_loop_f64...). */
#define KERNEL_FILE "pointwise_loops.inc"
#include "per_dtype.inc"

/* The row function of a K_FN op with scalar function f: the loop of out's
 * dtype, always inlined into the op's own row function (made by
 * PW_FN1_OP...), where f is a constant, so each element's call is direct. */
static KERNEL_INLINE void fn1_row(pw_fn1 f, int64_t len, const int64_t *off,
                                  const int64_t *step, void *ctx)
{
    const kern *k = ctx;
    if (k->out->dtype == AD_FLOAT64) fn1_loop_f64(f, k, len, off, step);
    else fn1_loop_f32(f, k, len, off, step);
}

static KERNEL_INLINE void fn2_row(pw_fn2 f, int64_t len, const int64_t *off,
                                  const int64_t *step, void *ctx)
{
    const kern *k = ctx;
    if (k->out->dtype == AD_FLOAT64) fn2_loop_f64(f, k, len, off, step);
    else fn2_loop_f32(f, k, len, off, step);
}

/* A 0-d constant for a rule, on the tape of the node's output. */
static inline ad_tensor *konst(ad_node *n, double v)
{
    return ad_scalar_tensor(n->out->tape, n->out->dtype, v);
}

#define GRAD_TO(i, expr) \
    do { if (ad__needs_grad(n, i)) gin[i] = ad__sum_to((expr), n->in[i]->ndim, n->in[i]->shape); } while (0)

/* The definition of op X, whose kernel is the hot kind KIND. */
#define PW_OP(X, NAME, FORMULA, RULE, KIND)                                           \
    static const pw_def X = {                                                         \
        .op = {.name = NAME, .formula = FORMULA, .backward = RULE, .forward = ad__pw_fw}, \
        .kind = KIND,                                                                 \
    }

/* The row function X_row of an op mapping the unary scalar function F1
 * (binary F2): the generic loop with F1 as a constant. */
#define PW_FN1_ROW(X, F1)                                                                \
    static void X##_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx) \
    {                                                                                    \
        fn1_row(F1, len, off, step, ctx);                                                \
    }
#define PW_FN2_ROW(X, F2)                                                                \
    static void X##_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx) \
    {                                                                                    \
        fn2_row(F2, len, off, step, ctx);                                                \
    }

/* The definition of op X mapping the unary scalar function F1, with its
 * row function; the same for a binary F2, and for a unary op with a
 * parameter struct P. */
#define PW_FN1_OP(X, NAME, FORMULA, RULE, F1)                                         \
    PW_FN1_ROW(X, F1)                                                                 \
    static const pw_def X = {                                                         \
        .op = {.name = NAME, .formula = FORMULA, .backward = RULE, .forward = ad__pw_fw}, \
        .kind = K_FN,                                                                 \
        .row = X##_row,                                                               \
    }
#define PW_FN2_OP(X, NAME, FORMULA, RULE, F2)                                         \
    PW_FN2_ROW(X, F2)                                                                 \
    static const pw_def X = {                                                         \
        .op = {.name = NAME, .formula = FORMULA, .backward = RULE, .forward = ad__pw_fw}, \
        .kind = K_FN,                                                                 \
        .row = X##_row,                                                               \
    }
/* An exact op (its result is one of its inputs, or one with the sign
 * changed: no rounding in either dtype), given as its function in each
 * dtype, F32 and F64: the float32 loop then vectorises at full width,
 * where a function in double converts every element both ways (abs and
 * maximum ran at 0.58 and 0.60 of memcpy's bandwidth, neg at 0.79). */
#define PW_EXACT_OP(X, NAME, FORMULA, RULE, LOOP, F32, F64)                           \
    static void X##_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx) \
    {                                                                                 \
        const kern *k = ctx;                                                          \
        if (k->out->dtype == AD_FLOAT64) LOOP##_f64(F64, k, len, off, step);          \
        else LOOP##_f32(F32, k, len, off, step);                                      \
    }                                                                                 \
    static const pw_def X = {                                                         \
        .op = {.name = NAME, .formula = FORMULA, .backward = RULE, .forward = ad__pw_fw}, \
        .kind = K_FN,                                                                 \
        .row = X##_row,                                                               \
    }
#define PW_EXACT1_OP(X, NAME, FORMULA, RULE, F32, F64) \
    PW_EXACT_OP(X, NAME, FORMULA, RULE, fn1t_loop, F32, F64)
#define PW_EXACT2_OP(X, NAME, FORMULA, RULE, F32, F64) \
    PW_EXACT_OP(X, NAME, FORMULA, RULE, fn2t_loop, F32, F64)
#define PW_OP_PARAMS(X, NAME, FORMULA, RULE, F1, P)                                  \
    PW_FN1_ROW(X, F1)                                                                \
    static const pw_def X = {                                                        \
        .op = {.name = NAME, .formula = FORMULA, .backward = RULE, .forward = ad__pw_fw, \
               .params_size = sizeof(P)},                                            \
        .kind = K_FN,                                                                \
        .row = X##_row,                                                              \
    }

#endif

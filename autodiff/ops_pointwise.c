/* autodiff/ops_pointwise.c - elementwise ops: kernel, rule and formula side
 * by side, one block per op, listed in ad__ops_pointwise at the end; the
 * machinery every elementwise op runs through (ad__pw_run, ad__pw_unary,
 * ad__pw_binary: pointwise_impl.h).  The ops that map a scalar function
 * (erf, gelu, softplus, log1p, expm1, atan2, abs, square, reciprocal,
 * clamp) are in ops_pointwise_fn.c.
 *
 * Every rule is written with the library's own ops, so under
 * AD_CREATE_GRAPH it is itself recorded and can be differentiated again.
 * Rules of broadcasting ops reduce with ad_sum_to so each gradient has its
 * input's shape.  Masks (relu's [x > 0], maximum's tie split...) are made of
 * comparisons, which have no backward rule: no gradient flows through them,
 * which is right, since their derivative is 0 wherever it exists. */
#include <limits.h>

#include "formulas.h"
#include "pointwise_impl.h"
#include "vmath.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* ---- kernels -------------------------------------------------------------
 * The strided iterator hands over one innermost run ("row") at a time, with
 * contiguous dimensions merged, so a contiguous tensor is a single row with
 * unit steps.  The hot ops (add, sub, mul, div, the comparisons, the
 * squared difference of mse_loss; neg, exp, log, sqrt, relu, tanh, sigmoid,
 * sin, cos) are computed in their dtype (the squared difference in double) by typed
 * kernels, chosen by a switch once per row; every other op (kind K_FN) maps
 * a scalar function, computed in double, through a row function of its own
 * defined beside it (PW_FN1_OP...) in which that function is a constant. */

/* The transcendental kinds over a contiguous run (y may be x): the
 * vectorised polynomials of vmath.c (float32 within 2 ulp, float64 within
 * 1e-15 relative, see vmath.h), except float64 sin and cos, which are the
 * C library's. */
static void vec_f32(int kind, float *y, const float *x, int64_t n)
{
    switch (kind) {
    case K_EXP: ad__vexp_f32(y, x, n); break;
    case K_LOG: ad__vlog_f32(y, x, n); break;
    case K_TANH: ad__vtanh_f32(y, x, n); break;
    case K_SIN: ad__vsin_f32(y, x, n); break;
    case K_COS: ad__vcos_f32(y, x, n); break;
    default: ad__vsigmoid_f32(y, x, n); break;
    }
}

static void vec_f64(int kind, double *y, const double *x, int64_t n)
{
    switch (kind) {
    case K_EXP: ad__vexp_f64(y, x, n); break;
    case K_LOG: ad__vlog_f64(y, x, n); break;
    case K_TANH: ad__vtanh_f64(y, x, n); break;
    case K_SIN: for (int64_t i = 0; i < n; i++) y[i] = sin(x[i]); break;
    case K_COS: for (int64_t i = 0; i < n; i++) y[i] = cos(x[i]); break;
    default: ad__vsigmoid_f64(y, x, n); break;
    }
}

/* buf[i * ldb + j] = src[i + j * lds] for i < rows, j < cols: a block of
 * a transposed operand copied into rows (bin_tile_loop).  With SSE2, 4 x 4
 * (float) or 2 x 2 (double) blocks at a time through registers; element by
 * element elsewhere.  Only a copy: the values are the same either way. */
static void transpose_f32(float *buf, int64_t ldb, const float *src, int64_t lds, int64_t rows,
                          int64_t cols)
{
    int64_t j = 0;
#ifdef __SSE2__
    for (; j + 4 <= cols && rows >= 4; j += 4) {
        const float *s = src + j * lds;
        int64_t i = 0;
        for (; i + 4 <= rows; i += 4) {
            __m128 r0 = _mm_loadu_ps(s + i), r1 = _mm_loadu_ps(s + lds + i);
            __m128 r2 = _mm_loadu_ps(s + 2 * lds + i), r3 = _mm_loadu_ps(s + 3 * lds + i);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(buf + i * ldb + j, r0);
            _mm_storeu_ps(buf + (i + 1) * ldb + j, r1);
            _mm_storeu_ps(buf + (i + 2) * ldb + j, r2);
            _mm_storeu_ps(buf + (i + 3) * ldb + j, r3);
        }
        for (; i < rows; i++)
            for (int64_t c = 0; c < 4; c++) buf[i * ldb + j + c] = s[i + c * lds];
    }
#endif
    for (; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) buf[i * ldb + j] = src[i + j * lds];
}

static void transpose_f64(double *buf, int64_t ldb, const double *src, int64_t lds,
                          int64_t rows, int64_t cols)
{
    int64_t j = 0;
#ifdef __SSE2__
    for (; j + 2 <= cols && rows >= 2; j += 2) {
        const double *s = src + j * lds;
        int64_t i = 0;
        for (; i + 2 <= rows; i += 2) {
            __m128d r0 = _mm_loadu_pd(s + i), r1 = _mm_loadu_pd(s + lds + i);
            _mm_storeu_pd(buf + i * ldb + j, _mm_unpacklo_pd(r0, r1));
            _mm_storeu_pd(buf + (i + 1) * ldb + j, _mm_unpackhi_pd(r0, r1));
        }
        for (; i < rows; i++)
            for (int64_t c = 0; c < 2; c++) buf[i * ldb + j + c] = s[i + c * lds];
    }
#endif
    for (; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) buf[i * ldb + j] = src[i + j * lds];
}

static inline float sqrt_f32(float x) { return sqrtf(x); }
static inline double sqrt_f64(double x) { return sqrt(x); }

/* The per-dtype row kernels (un_row_f32, bin_row_f64, where_row_f32...). */
#define KERNEL_FILE "pointwise_kernels.inc"
#include "per_dtype.inc"

/* The iterator's row functions: the kernel of out's dtype, compiled for
 * the baseline and, with target attributes, for AVX2 and AVX-512; un_row
 * and bin_row run the CPU's best.  The contiguous loops are then 16 floats
 * per instruction instead of SSE2's 4: sqrt, whose vsqrtps is the loop's
 * cost, went from 0.53 to 1.0 of memcpy bandwidth over 2^24 floats on an
 * AMD EPYC (Zen 5).  Every kind's element is exact or correctly rounded
 * (sqrt) and nothing is fused, so all clones give the same bits. */
#define ROW_ARGS int64_t len, const int64_t *off, const int64_t *step, void *ctx
#define ROW_CLONES(attr, sfx)                                                                      \
    attr static void un_row_##sfx(ROW_ARGS)                                                        \
    {                                                                                              \
        const kern *k = ctx;                                                                       \
        if (k->out->dtype == AD_FLOAT64) un_row_f64(k, len, off, step);                            \
        else un_row_f32(k, len, off, step);                                                        \
    }                                                                                              \
    attr static void bin_row_##sfx(ROW_ARGS)                                                       \
    {                                                                                              \
        const kern *k = ctx;                                                                       \
        if (k->out->dtype == AD_FLOAT64) bin_row_f64(k, len, off, step);                           \
        else bin_row_f32(k, len, off, step);                                                       \
    }                                                                                              \
    attr static void bcast_rows_##sfx(const kern *k, bool rf, int64_t m, int64_t n)                \
    {                                                                                              \
        if (k->out->dtype == AD_FLOAT64) bcast_rows_f64(k, rf, m, n);                              \
        else bcast_rows_f32(k, rf, m, n);                                                          \
    }
ROW_CLONES(, any)
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
ROW_CLONES(__attribute__((target("avx2"))), avx2)
ROW_CLONES(__attribute__((target("avx512f"))), avx512)
#endif

static void un_row(ROW_ARGS) { AD_PICK_CLONE(un_row)(len, off, step, ctx); }
static void bin_row(ROW_ARGS) { AD_PICK_CLONE(bin_row)(len, off, step, ctx); }

static void where_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx)
{
    const kern *k = ctx;
    if (k->out->dtype == AD_FLOAT64) where_row_f64(k, len, off, step);
    else where_row_f32(k, len, off, step);
}

/* For replaying comparisons and sign (generic: elements through ad__ld,
 * scalar function through the kern): writes the new result and counts the
 * elements where it differs from the one already there (branch switches). */
static void count_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx)
{
    kern *k = ctx;
    for (int64_t i = 0; i < len; i++) {
        double x = ad__ld(k->a, off[1] + i * step[1]);
        double v = k->b ? k->f2(x, ad__ld(k->b, off[2] + i * step[2])) : k->f1(x, k->p);
        int64_t o = off[0] + i * step[0];
        double was = ad__ld(k->out, o);
        if (was != v && !(isnan(was) && isnan(v))) {
            k->changed++;
            ad__st(k->out, o, v);
        }
    }
}

/* Runs a row function over out's shape with out first, then the operands
 * (broadcast against it). */
static void mixed_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx);
static bool bin_tiles(const kern *k);

void ad__pw_run(kern *k, ad_iter_row row)
{
    if ((row == bin_row || row == mixed_row) && bin_tiles(k)) return;
    ad_iter it = {.ndim = k->out->ndim};
    memcpy(it.shape, k->out->shape, sizeof it.shape);
    ad__iter_add(&it, k->out);
    if (k->c) ad__iter_add(&it, k->c);
    ad__iter_add(&it, k->a);
    if (k->b) ad__iter_add(&it, k->b);
    ad__iter_run(&it, row, k);
}

/* A row broadcast over a matrix (x + b, b of shape [n] or [1, n] or
 * expanded to [m, n]): with the operands' strides over out's shape
 * (bin_tiles), one is n, 1 (x along rows) and the other 0, 1; + - * /,
 * and out sharing no storage with either (an in-place op takes the
 * iterator): bcast_rows_loop in pointwise_kernels.inc, two rows at a
 * time. */
static bool bcast_rows(const kern *k, int64_t m, int64_t n, const int64_t *st)
{
    if (k->kind == K_SQDIFF || m < 4 || k->a->storage == k->out->storage ||
        k->b->storage == k->out->storage)
        return false;
    bool rf = st[0] == 0 && st[1] == 1 && st[2] == n && st[3] == 1;
    if (!rf && !(st[0] == n && st[1] == 1 && st[2] == 0 && st[3] == 1)) return false;
    AD_PICK_CLONE(bcast_rows)(k, rf, m, n);
    return true;
}

/* A transposed operand.  The iterator walks rows of the output; when an
 * input is a transposed matrix (the gradient of x W^T reaching W is
 * transpose(x^T G), added into W's contiguous gradient buffer) each row
 * reads it one cache line per element, and the lines are gone from L1
 * before the next row would use them again.  For a 2-d contiguous output
 * of the arithmetic kinds with an input that runs along the rows (stride 1
 * in dimension 0, not in 1) the op goes through bin_tiles instead, in
 * blocks whose transposed part is first copied into rows (bin_tile_loop:
 * 0.19 -> 0.40 of memcpy bandwidth at 4096 x 4096 float32).  float32's
 * and float64's + - * / with each operand along rows or transposed go
 * first to the tiles transposed in registers of ops_pointwise_t.c (AVX2 or
 * AVX-512, chosen at run time; figures in docs/benchmarks.md); the
 * squared difference and CPUs without those keep bin_tile_loop.  With no
 * transposed operand, a row broadcast goes to bcast_rows.  Each element
 * is computed by the same expression as on the iterator's path. */
static bool bin_tiles(const kern *k)
{
    const ad_tensor *o = k->out, *a = k->a, *b = k->b;
    if (!b || o->ndim != 2 || a->dtype != o->dtype || b->dtype != o->dtype ||
        (o->dtype != AD_FLOAT32 && o->dtype != AD_FLOAT64) ||
        (k->kind != K_ADD && k->kind != K_SUB && k->kind != K_MUL && k->kind != K_DIV &&
         k->kind != K_SQDIFF))
        return false;
    int64_t m = o->shape[0], n = o->shape[1];
    if (o->strides[0] != n || o->strides[1] != 1) return false;
    /* The operands' strides over out's shape (0 where broadcast). */
    int64_t st[4];
    const ad_tensor *in[2] = {a, b};
    bool across = false;
    for (int k2 = 0; k2 < 2; k2++) {
        const ad_tensor *t = in[k2];
        if (t->ndim > 2) return false;
        for (int d = 0; d < 2; d++) {
            int td = d - (2 - t->ndim);
            st[2 * k2 + d] = td < 0 || t->shape[td] == 1 ? 0 : t->strides[td];
        }
        across |= st[2 * k2] == 1 && st[2 * k2 + 1] != 1 && st[2 * k2 + 1] != 0;
    }
    if (!across) return bcast_rows(k, m, n, st);
    if (m < 16 || n < 16) return false;
    if (k->kind != K_SQDIFF && (st[1] == 1 || st[0] == 1) && (st[3] == 1 || st[2] == 1)) {
        /* each operand along rows (step 1 in dimension 1) or transposed */
        static const char ops[] = {[K_ADD] = '+', [K_SUB] = '-', [K_MUL] = '*', [K_DIV] = '/'};
        bool xt = st[1] != 1, yt = st[3] != 1;
        int64_t ldx = xt ? st[1] : st[0], ldy = yt ? st[3] : st[2];
        if (o->dtype == AD_FLOAT32 &&
            ad__bin_t_f32(ops[k->kind], m, n, (float *)o->storage->data + o->offset, n,
                          (const float *)a->storage->data + a->offset, ldx, xt,
                          (const float *)b->storage->data + b->offset, ldy, yt))
            return true;
        if (o->dtype == AD_FLOAT64 &&
            ad__bin_t_f64(ops[k->kind], m, n, (double *)o->storage->data + o->offset, n,
                          (const double *)a->storage->data + a->offset, ldx, xt,
                          (const double *)b->storage->data + b->offset, ldy, yt))
            return true;
    }
    if (o->dtype == AD_FLOAT64) bin_tiles_f64(k, m, n, st);
    else bin_tiles_f32(k, m, n, st);
    return true;
}

/* ad__add_into and ad__sqdiff_into: the typed kernel when the dtypes agree,
 * else each element in double (bin_elem_f64) through ad__ld / ad__st. */
static void mixed_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx)
{
    const kern *k = ctx;
    ad_dtype d = k->out->dtype;
    if ((d == AD_FLOAT32 || d == AD_FLOAT64) && k->a->dtype == d && k->b->dtype == d) {
        bin_row(len, off, step, ctx);
        return;
    }
    for (int64_t i = 0; i < len; i++) {
        double x = ad__ld(k->a, off[1] + i * step[1]), y = ad__ld(k->b, off[2] + i * step[2]);
        ad__st(k->out, off[0] + i * step[0], bin_elem_f64(k->kind, x, y));
    }
}

void ad__add_into(ad_tensor *out, const ad_tensor *a, const ad_tensor *b)
{
    ad__pw_run(&(kern){.kind = K_ADD, .out = out, .a = a, .b = b}, mixed_row);
}

void ad__sqdiff_into(ad_tensor *out, const ad_tensor *a, const ad_tensor *b)
{
    ad__pw_run(&(kern){.kind = K_SQDIFF, .out = out, .a = a, .b = b}, mixed_row);
}

/* ---- shared machinery (pointwise_impl.h) --------------------------------- */
ad_iter_row ad__pw_row(const pw_def *d, bool binary)
{
    return d->row ? d->row : binary ? bin_row : un_row;
}

int ad__pw_fw(ad_node *n)
{
    const pw_def *d = (const pw_def *)n->op;
    kern k = {.kind = d->kind, .p = d->op.params_size ? ad__params(n) : NULL, .out = n->out,
              .a = n->in[0], .b = n->nin > 1 ? n->in[1] : NULL};
    ad__pw_run(&k, ad__pw_row(d, k.b != NULL));
    return 0;
}

/* The comparisons' and sign's forward also reports how many results
 * changed since the last run. */
static int cmp_fw(ad_node *n)
{
    const pw_def *d = (const pw_def *)n->op;
    kern k = {.f1 = d->f1, .f2 = d->f2, .p = d->op.params_size ? ad__params(n) : NULL,
              .out = n->out, .a = n->in[0], .b = n->nin > 1 ? n->in[1] : NULL};
    ad__pw_run(&k, count_row);
    return k.changed > INT_MAX ? INT_MAX : (int)k.changed;
}

/* Checks, broadcasts, allocates, runs the kernel and records. */
ad_tensor *ad__pw_binary(const char *fn, const pw_def *d, ad_tensor *a, ad_tensor *b)
{
    if (ad__check_arg(fn, "a", a, true) || ad__check_arg(fn, "b", b, true) ||
        ad__check_same_dtype(fn, a, b))
        return NULL;
    int nd;
    int64_t shape[AD_MAX_DIMS];
    if (ad__broadcast(fn, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    ad_tensor *in[2] = {a, b};
    ad_tape *tape;
    if (ad__result_tape(fn, 2, in, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, a->dtype, nd, shape);
    if (!out) return NULL;
    ad__pw_run(&(kern){.kind = d->kind, .out = out, .a = a, .b = b}, ad__pw_row(d, true));
    return ad__finish(out, 0, &d->op, 2, in, NULL, NULL);
}

/* Same for one input; params (the op's parameter struct, NULL when it has
 * none) reaches the op's scalar function and is kept in the node. */
ad_tensor *ad__pw_unary(const char *fn, const pw_def *d, ad_tensor *x, const void *params)
{
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    ad__pw_run(&(kern){.kind = d->kind, .p = params, .out = out, .a = x}, ad__pw_row(d, false));
    return ad__finish(out, 0, &d->op, 1, &x, params, NULL);
}

/* A 0-d constant of a's dtype, combined with a by a binary op.  The constant
 * goes on the tape the result will; when there is none it is persistent and
 * freed here (nothing was recorded, so nothing refers to it). */
static ad_tensor *with_scalar(const char *fn, ad_tensor *a, double s,
                              ad_tensor *(*op)(ad_tensor *, ad_tensor *), bool scalar_first)
{
    ad_tape *tape;
    if (ad__check_arg(fn, "a", a, true) || ad__result_tape(fn, 1, &a, &tape)) return NULL;
    ad_tensor *c = ad__alloc(fn, tape, a->dtype, 0, NULL);
    if (!c) return NULL;
    ad__st(c, 0, s);
    ad_tensor *r = scalar_first ? op(c, a) : op(a, c);
    if (!tape) ad_tensor_free(c);
    return r;
}

/* ---- add / sub / mul / div ------------------------------------------------ */
static int add_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    GRAD_TO(0, g);
    GRAD_TO(1, g);
    return 0;
}
PW_OP(D_ADD, "add", "y = a + b; da = g, db = g", add_bw, K_ADD);
ad_tensor *ad_add(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_add", &D_ADD, a, b); }

static int sub_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    GRAD_TO(0, g);
    GRAD_TO(1, ad_neg(g));
    return 0;
}
PW_OP(D_SUB, "sub", "y = a - b; da = g, db = -g", sub_bw, K_SUB);
ad_tensor *ad_sub(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_sub", &D_SUB, a, b); }

static int mul_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    GRAD_TO(0, ad_mul(g, n->in[1]));
    GRAD_TO(1, ad_mul(g, n->in[0]));
    return 0;
}
PW_OP(D_MUL, "mul", "y = a * b; da = g b, db = g a", mul_bw, K_MUL);
ad_tensor *ad_mul(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_mul", &D_MUL, a, b); }

static int div_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    /* d(a/b)/db = -a/b^2 = -(a/b)/b: with gb = g/b, da = gb and db = -gb y,
     * where y is the output (differentiable, so second order holds). */
    ad_tensor *gb = ad_div(g, n->in[1]);
    GRAD_TO(0, gb);
    GRAD_TO(1, ad_neg(ad_mul(gb, n->out)));
    return 0;
}
PW_OP(D_DIV, "div", "y = a / b; da = g / b, db = -g y / b", div_bw, K_DIV);
ad_tensor *ad_div(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_div", &D_DIV, a, b); }

/* ---- pow ----------------------------------------------------------------- */
static double f_pow(double a, double b) { return pow(a, b); }
static int pow_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *a = n->in[0], *b = n->in[1], *zero = konst(n, 0.0), *one = konst(n, 1.0);
    ad_tensor *at0 = ad_eq(a, zero);
    /* Zeros of a are replaced by 1 before they reach a^(b-1) or ln a, rather
     * than masked afterwards: a masked inf would still become NaN (0 * inf)
     * in the second derivatives. */
    if (ad__needs_grad(n, 0)) {
        /* b a^(b-1) (not b y / a, which is 0/0 at a = 0).  At b = 0 with a
         * = 0 or NaN it would be 0 * inf or NaN; the derivative of a^0 = 1
         * is 0, which b 1^(-1) gives.  (Elsewhere at b = 0 a stays, so
         * that the mixed second derivative is a^(-1).) */
        ad_tensor *odd = ad_add(at0, ad_rsub_scalar(ad_eq(a, a), 1.0)); /* a = 0 or NaN */
        ad_tensor *base = ad_where(ad_mul(odd, ad_eq(b, zero)), one, a);
        GRAD_TO(0, ad_mul(g, ad_mul(b, ad_pow(base, ad_sub_scalar(b, 1.0)))));
    }
    /* d a^b / db = a^b ln a, taken as 0 at a = 0 (its limit for b > 0). */
    GRAD_TO(1, ad_where(at0, zero, ad_mul(ad_mul(g, n->out), ad_log(ad_where(at0, one, a)))));
    return 0;
}
PW_FN2_OP(D_POW, "pow", "y = a^b; da = g b a^(b-1), db = g y ln a (0 where a = 0)", pow_bw,
          f_pow);
ad_tensor *ad_pow(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_pow", &D_POW, a, b); }

/* ---- maximum / minimum -----------------------------------------------------
 * The gradient goes to the larger (smaller) input; on a tie each gets g/2,
 * the average of the two one-sided derivatives, as PyTorch does.  The mask
 * is made of comparisons, which are not differentiable: right, since its
 * derivative is 0 wherever it exists. */
/* a when it wins or is NaN (NaN propagates from either side); the
 * gradient goes where the result came from: to a NaN a, else to a NaN b */
static float f_max_f32(float a, float b) { return (a > b || a != a) ? a : b; }
static double f_max_f64(double a, double b) { return (a > b || a != a) ? a : b; }
static float f_min_f32(float a, float b) { return (a < b || a != a) ? a : b; }
static double f_min_f64(double a, double b) { return (a < b || a != a) ? a : b; }
static int extremum_bw(ad_node *n, ad_tensor *g, ad_tensor **gin, ad_tensor *wins)
{
    /* mask of a: 1 where a wins or is NaN (the result is a), 1/2 on a tie;
     * b gets 1 - mask */
    ad_tensor *a = n->in[0], *a_nan = ad_rsub_scalar(ad_eq(a, a), 1.0);
    ad_tensor *ma = ad_add(ad_add(wins, a_nan), ad_mul_scalar(ad_eq(a, n->in[1]), 0.5));
    ad_tensor *mb = ad_rsub_scalar(ma, 1.0), *zero = ad_scalar_tensor(n->out->tape, g->dtype, 0);
    /* the loser gets 0, selected: g times a 0 mask made an infinite g NaN
     * (sqrt(max(x, 0)) at x = -1), where PyTorch gives 0 */
    GRAD_TO(0, ad_where(ma, ad_mul(g, ma), zero));
    GRAD_TO(1, ad_where(mb, ad_mul(g, mb), zero));
    return 0;
}
static int maximum_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    return extremum_bw(n, g, gin, ad_gt(n->in[0], n->in[1]));
}
static int minimum_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    return extremum_bw(n, g, gin, ad_lt(n->in[0], n->in[1]));
}
PW_EXACT2_OP(D_MAXIMUM, "maximum", "y = max(a, b); da = g ([a > b or a NaN] + [a = b]/2), db = g - da",
             maximum_bw, f_max_f32, f_max_f64);
PW_EXACT2_OP(D_MINIMUM, "minimum", "y = min(a, b); da = g ([a < b or a NaN] + [a = b]/2), db = g - da",
             minimum_bw, f_min_f32, f_min_f64);
ad_tensor *ad_maximum(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_maximum", &D_MAXIMUM, a, b); }
ad_tensor *ad_minimum(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_minimum", &D_MINIMUM, a, b); }

/* ---- scalar forms: the same ops with a 0-d constant operand ----------------- */
ad_tensor *ad_add_scalar(ad_tensor *a, double s) { return with_scalar("ad_add_scalar", a, s, ad_add, false); }
ad_tensor *ad_sub_scalar(ad_tensor *a, double s) { return with_scalar("ad_sub_scalar", a, s, ad_sub, false); }
ad_tensor *ad_rsub_scalar(ad_tensor *a, double s) { return with_scalar("ad_rsub_scalar", a, s, ad_sub, true); }
ad_tensor *ad_mul_scalar(ad_tensor *a, double s) { return with_scalar("ad_mul_scalar", a, s, ad_mul, false); }
ad_tensor *ad_div_scalar(ad_tensor *a, double s) { return with_scalar("ad_div_scalar", a, s, ad_div, false); }
ad_tensor *ad_rdiv_scalar(ad_tensor *a, double s) { return with_scalar("ad_rdiv_scalar", a, s, ad_div, true); }
ad_tensor *ad_pow_scalar(ad_tensor *a, double s) { return with_scalar("ad_pow_scalar", a, s, ad_pow, false); }

/* ---- neg / exp / log / sqrt ---------------------------------------------- */
static int neg_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    (void)n;
    gin[0] = ad_neg(g);
    return 0;
}
PW_OP(D_NEG, "neg", "y = -x; dx = -g", neg_bw, K_NEG);
ad_tensor *ad_neg(ad_tensor *x) { return ad__pw_unary("ad_neg", &D_NEG, x, NULL); }

static int exp_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, n->out); /* d e^x = e^x: reuse the output */
    return 0;
}
PW_OP(D_EXP, "exp", "y = e^x; dx = g y", exp_bw, K_EXP);
ad_tensor *ad_exp(ad_tensor *x) { return ad__pw_unary("ad_exp", &D_EXP, x, NULL); }

static int log_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_div(g, n->in[0]);
    return 0;
}
PW_OP(D_LOG, "log", "y = ln x; dx = g / x", log_bw, K_LOG);
ad_tensor *ad_log(ad_tensor *x) { return ad__pw_unary("ad_log", &D_LOG, x, NULL); }

static int sqrt_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_div(g, ad_mul_scalar(n->out, 2.0));
    return 0;
}
PW_OP(D_SQRT, "sqrt", "y = sqrt x; dx = g / (2 y)", sqrt_bw, K_SQRT);
ad_tensor *ad_sqrt(ad_tensor *x) { return ad__pw_unary("ad_sqrt", &D_SQRT, x, NULL); }

/* ---- sin / cos / tan / tanh / sigmoid ------------------------------------------- */
static int sin_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, ad_cos(n->in[0]));
    return 0;
}
PW_OP(D_SIN, "sin", "y = sin x; dx = g cos x", sin_bw, K_SIN);
ad_tensor *ad_sin(ad_tensor *x) { return ad__pw_unary("ad_sin", &D_SIN, x, NULL); }

static int cos_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_neg(ad_mul(g, ad_sin(n->in[0])));
    return 0;
}
PW_OP(D_COS, "cos", "y = cos x; dx = -g sin x", cos_bw, K_COS);
ad_tensor *ad_cos(ad_tensor *x) { return ad__pw_unary("ad_cos", &D_COS, x, NULL); }

static double f_tan(double x, const void *p) { (void)p; return tan(x); }
static int tan_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, ad_add_scalar(ad_square(n->out), 1.0)); /* sec^2 = 1 + tan^2 */
    return 0;
}
PW_FN1_OP(D_TAN, "tan", "y = tan x; dx = g (1 + y^2)", tan_bw, f_tan);
ad_tensor *ad_tan(ad_tensor *x) { return ad__pw_unary("ad_tan", &D_TAN, x, NULL); }

/* tanh' = 1 - y^2 = 4 s(2x) s(-2x) (s the sigmoid): the product keeps
 * every digit where y is near +-1 and 1 - y^2 keeps none (0 from
 * |x| = 19 in float64 against 1.7e-17). */
static int tanh_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *x = n->in[0];
    ad_tensor *d = ad_mul(ad_sigmoid(ad_mul_scalar(x, 2.0)), ad_sigmoid(ad_mul_scalar(x, -2.0)));
    gin[0] = ad_mul(g, ad_mul_scalar(d, 4.0));
    return 0;
}
PW_OP(D_TANH, "tanh", "y = tanh x; dx = g (1 - y^2)", tanh_bw, K_TANH);
ad_tensor *ad_tanh(ad_tensor *x) { return ad__pw_unary("ad_tanh", &D_TANH, x, NULL); }

/* s' = y (1 - y) = y s(-x): 1 - y loses every digit as y nears 1 (0
 * from x = 37 in float64 against 8.5e-17); s(-x) keeps them. */
static int sigmoid_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, ad_mul(n->out, ad_sigmoid(ad_neg(n->in[0]))));
    return 0;
}
PW_OP(D_SIGMOID, "sigmoid", "y = 1 / (1 + e^-x); dx = g y (1 - y)", sigmoid_bw, K_SIGMOID);
ad_tensor *ad_sigmoid(ad_tensor *x) { return ad__pw_unary("ad_sigmoid", &D_SIGMOID, x, NULL); }

/* ---- relu / leaky_relu ------------------------------------------------------------
 * The derivative at 0 is taken from the left (0 for relu, slope for
 * leaky_relu), as PyTorch does. */
static int relu_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad__relu_grad(g, n->in[0]);
    return 0;
}
PW_OP(D_RELU, "relu", "y = max(x, 0); dx = relu_grad(g, x) = g [x > 0]", relu_bw, K_RELU);
ad_tensor *ad_relu(ad_tensor *x) { return ad__pw_unary("ad_relu", &D_RELU, x, NULL); }

/* relu's rule as one pass over g and x, where g * gt(x, 0) took two and a
 * mask as large as x (the same values: the mask's 1 or 0 times g).  Linear
 * in g, with itself as the rule; x only decides where: its derivative is 0
 * (almost everywhere), given as zeros when asked for, as where does for
 * its condition. */
static int relu_grad_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *x = n->in[1];
    GRAD_TO(0, ad__relu_grad(g, x));
    if (ad__needs_grad(n, 1)) gin[1] = ad_zeros(n->out->tape, x->dtype, x->ndim, x->shape);
    return 0;
}
PW_OP(D_RELU_GRAD, "relu_grad", "y = g [x > 0]; dg = relu_grad(gg, x), dx = 0", relu_grad_bw,
      K_RELU_GRAD);
ad_tensor *ad__relu_grad(ad_tensor *g, ad_tensor *x)
{
    return ad__pw_binary("relu backward", &D_RELU_GRAD, g, x);
}

typedef struct leaky_relu_params {
    double slope;
} leaky_relu_params;
static double f_leaky(double x, const void *params)
{
    const leaky_relu_params *p = params;
    return x > 0 ? x : p->slope * x;
}
static int leaky_relu_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const leaky_relu_params *p = ad__params(n);
    double s = p->slope; /* slope + (1 - slope) [x > 0] */
    ad_tensor *pos = ad_gt(n->in[0], konst(n, 0.0));
    gin[0] = ad_mul(g, ad_add_scalar(ad_mul_scalar(pos, 1.0 - s), s));
    return 0;
}
PW_OP_PARAMS(D_LEAKY_RELU, "leaky_relu", "y = x > 0 ? x : slope x; dx = g (x > 0 ? 1 : slope)",
             leaky_relu_bw, f_leaky, leaky_relu_params);
ad_tensor *ad_leaky_relu(ad_tensor *x, double slope)
{
    /* A NaN or infinite slope would poison every negative element and its
     * gradient (inf * 0 at x = 0); refused like clamp's NaN bounds. */
    if (!isfinite(slope))
        return ad__err("ad_leaky_relu", "slope must be finite, got %g", slope), NULL;
    return ad__pw_unary("ad_leaky_relu", &D_LEAKY_RELU, x, &(leaky_relu_params){slope});
}

/* ---- where ------------------------------------------------------------------------- */
static int where_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *cond = n->in[0], *zero = konst(n, 0.0);
    /* The choice is piecewise constant in cond: its derivative is 0. */
    if (ad__needs_grad(n, 0)) gin[0] = ad_zeros(n->out->tape, cond->dtype, cond->ndim, cond->shape);
    GRAD_TO(1, ad_where(cond, g, zero));
    GRAD_TO(2, ad_where(cond, zero, g));
    return 0;
}
static int where_fw(ad_node *n)
{
    ad__pw_run(&(kern){.out = n->out, .c = n->in[0], .a = n->in[1], .b = n->in[2]}, where_row);
    return 0;
}
static const ad_op OP_WHERE = {
    .name = "where",
    .formula = "y = cond != 0 ? a : b; da = where(cond, g, 0), "
               "db = where(cond, 0, g)",
    .backward = where_bw,
    .forward = where_fw,
};
ad_tensor *ad_where(ad_tensor *cond, ad_tensor *a, ad_tensor *b)
{
    static const char *fn = "ad_where";
    if (ad__check_arg(fn, "cond", cond, false) || ad__check_arg(fn, "a", a, true) ||
        ad__check_arg(fn, "b", b, true) || ad__check_same_dtype(fn, a, b))
        return NULL;
    int n1, nd;
    int64_t s1[AD_MAX_DIMS], shape[AD_MAX_DIMS];
    if (ad__broadcast(fn, cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1) ||
        ad__broadcast(fn, n1, s1, b->ndim, b->shape, &nd, shape)) {
        ad__err(fn, "shapes %s (cond), %s (a) and %s (b) cannot be broadcast together",
                ad__shape_str(cond), ad__shape_str(a), ad__shape_str(b));
        return NULL;
    }
    ad_tensor *in[3] = {cond, a, b};
    ad_tape *tape;
    if (ad__result_tape(fn, 3, in, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, a->dtype, nd, shape);
    if (!out) return NULL;
    ad__pw_run(&(kern){.out = out, .c = cond, .a = a, .b = b}, where_row);
    return ad__finish(out, 0, &OP_WHERE, 3, in, NULL, NULL);
}

/* ---- comparisons and sign: not differentiable ------------------------------------
 * They have no backward rule, so their results never require grad.  They
 * are still ops: a replayable tape records them (tape.h), and their
 * replay reports how many results changed. */
#define CMP_OP(X, NAME, FORMULA, KIND, F2)                                             \
    static const pw_def X = {                                                          \
        .op = {.name = NAME, .formula = FORMULA, .backward = NULL, .forward = cmp_fw}, \
        .kind = KIND,                                                                  \
        .f2 = F2,                                                                      \
    }
static double f_gt(double a, double b) { return a > b; }
static double f_ge(double a, double b) { return a >= b; }
static double f_lt(double a, double b) { return a < b; }
static double f_le(double a, double b) { return a <= b; }
static double f_eq(double a, double b) { return a == b; }
CMP_OP(D_GT, "gt", "y = [a > b]; not differentiable", K_GT, f_gt);
CMP_OP(D_GE, "ge", "y = [a >= b]; not differentiable", K_GE, f_ge);
CMP_OP(D_LT, "lt", "y = [a < b]; not differentiable", K_LT, f_lt);
CMP_OP(D_LE, "le", "y = [a <= b]; not differentiable", K_LE, f_le);
CMP_OP(D_EQ, "eq", "y = [a == b]; not differentiable", K_EQ, f_eq);
ad_tensor *ad_gt(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_gt", &D_GT, a, b); }
ad_tensor *ad_ge(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_ge", &D_GE, a, b); }
ad_tensor *ad_lt(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_lt", &D_LT, a, b); }
ad_tensor *ad_le(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_le", &D_LE, a, b); }
ad_tensor *ad_eq(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_eq", &D_EQ, a, b); }

static double f_sign(double x, const void *p)
{
    (void)p;
    return x > 0 ? 1.0 : x < 0 ? -1.0 : x == 0 ? 0.0 : x; /* NaN stays NaN */
}
PW_FN1_ROW(D_SIGN, f_sign)
static const pw_def D_SIGN = {
    .op = {.name = "sign", .formula = "y = sign x (-1, 0 or 1); not differentiable",
           .forward = cmp_fw},
    .kind = K_FN,
    .row = D_SIGN_row,
    .f1 = f_sign,
};
ad_tensor *ad_sign(ad_tensor *x) { return ad__pw_unary("ad_sign", &D_SIGN, x, NULL); }

const ad_op *const ad__ops_pointwise[] = {
    &D_ADD.op, &D_SUB.op, &D_MUL.op, &D_DIV.op, &D_POW.op, &D_MAXIMUM.op, &D_MINIMUM.op,
    &D_NEG.op, &D_EXP.op, &D_LOG.op, &D_SQRT.op, &D_SIN.op, &D_COS.op, &D_TAN.op,
    &D_TANH.op, &D_SIGMOID.op, &D_RELU.op, &D_RELU_GRAD.op, &D_LEAKY_RELU.op, &OP_WHERE,
    &D_GT.op, &D_GE.op, &D_LT.op, &D_LE.op, &D_EQ.op, &D_SIGN.op, NULL,
};

/* autodiff/ops_pointwise_fn.c - the elementwise ops that map a scalar
 * function computed in double (kind K_FN: erf, erfc, softplus, log1p, expm1,
 * atan2, square, reciprocal, clamp), the exact abs, and gelu with its
 * float32 kernels: kernel, rule and formula side by side, one block per
 * op, listed in ad__ops_pointwise_fn at the end.  The machinery they run
 * through and the other elementwise ops are in ops_pointwise.c
 * (pointwise_impl.h); its header comment on rules holds here too. */
#include "pointwise_impl.h"
#include "vmath.h"

/* ---- erf / gelu -------------------------------------------------------------- */
/* C11's math.h has no M_PI and friends. */
#define SQRT1_2 0.70710678118654752440         /* 1/sqrt(2) */
#define TWO_OVER_SQRTPI 1.12837916709551257390 /* 2/sqrt(pi) */
#define INV_SQRT_2PI 0.39894228040143267794    /* 1/sqrt(2 pi) */
static double f_erf(double x, const void *p) { (void)p; return erf(x); }
static int erf_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *x = n->in[0];
    gin[0] = ad_mul(g, ad_mul_scalar(ad_exp(ad_neg(ad_square(x))), TWO_OVER_SQRTPI));
    return 0;
}
PW_FN1_OP(D_ERF, "erf", "y = erf x; dx = g 2/sqrt(pi) e^(-x^2)", erf_bw, f_erf);
ad_tensor *ad_erf(ad_tensor *x) { return ad__pw_unary("ad_erf", &D_ERF, x, NULL); }

/* erfc x = 1 - erf x, computed as itself: it keeps its relative precision
 * for large x (erfc 10 = 2.1e-45), where 1 - erf x is 0. */
static double f_erfc(double x, const void *p) { (void)p; return erfc(x); }
static int erfc_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *x = n->in[0];
    gin[0] = ad_mul(g, ad_mul_scalar(ad_exp(ad_neg(ad_square(x))), -TWO_OVER_SQRTPI));
    return 0;
}
PW_FN1_OP(D_ERFC, "erfc", "y = erfc x = 1 - erf x; dx = -g 2/sqrt(pi) e^(-x^2)", erfc_bw, f_erfc);
ad_tensor *ad_erfc(ad_tensor *x) { return ad__pw_unary("ad_erfc", &D_ERFC, x, NULL); }

/* x Phi(x) with Phi(x) = erfc(-x/sqrt 2)/2: erfc keeps full relative
 * precision in the left tail, where 1 + erf(x/sqrt 2) would cancel. */
static double f_gelu(double x, const void *p) { (void)p; return 0.5 * x * erfc(-x * SQRT1_2); }

/* float32 GELU, the feed-forward activation of a transformer, computes
 * Phi in float32 (ad__vphi_f32: a fit of erfc, vectorised for the CPU's
 * widest vectors; with float32 arithmetic the GELU is within 4e-7 of the
 * exact value absolutely and 2e-5 relatively over [-12, 12], the relative
 * error largest far in the left tail) a chunk at a time, instead of the C
 * library's double erfc per element. */
enum { GELU_CHUNK = 256 };
static void phi_cdf_f32(const float *x, int64_t n, float *P) { ad__vphi_f32(P, x, n); }

/* GELU's slope, d[x Phi(x)]/dx = Phi(x) + x phi(x) with phi(x) =
 * e^(-x^2/2) / sqrt(2 pi), over n <= GELU_CHUNK elements from x and Phi
 * (P), in float32 in this order (d may be P). */
static void gelu_slope_f32(const float *x, const float *P, float *d, int64_t n)
{
    float e[GELU_CHUNK];
    /* an empty chunk returns first: GCC at -O1 then sees e written before
     * ad__vexp_f32 reads it (-Wmaybe-uninitialized otherwise) */
    if (n <= 0) return;
    for (int64_t j = 0; j < n; j++) e[j] = -0.5f * x[j] * x[j];
    ad__vexp_f32(e, e, n);
    for (int64_t j = 0; j < n; j++) d[j] = P[j] + x[j] * (float)INV_SQRT_2PI * e[j];
}

/* A float32 GELU recorded for a backward pass keeps its slope (its
 * parameter, laid out like the result), computed while x and Phi(x) are
 * at hand, so that the rule is one product g slope: recomputing Phi was
 * half of the rule's time, and reading x and Phi back for e^(-x^2/2) most
 * of the rest.  NULL otherwise. */
typedef struct gelu_params {
    ad_tensor *slope;
} gelu_params;

/* The row function: float32 through phi_cdf_f32 (strided rows gathered a
 * chunk at a time; the slope stored too when kept), float64 through
 * f_gelu. */
static void gelu_row(int64_t len, const int64_t *off, const int64_t *step, void *ctx)
{
    const kern *k = ctx;
    if (k->out->dtype == AD_FLOAT64) {
        fn1_loop_f64(f_gelu, k, len, off, step);
        return;
    }
    const gelu_params *gp = k->p;
    float *o = (float *)k->out->storage->data + off[0];
    /* slope has the result's shape and layout (both fresh and contiguous) */
    float *keep = gp && gp->slope ? (float *)gp->slope->storage->data + off[0] : NULL;
    const float *X = (const float *)k->a->storage->data + off[1];
    float xb[GELU_CHUNK], P[GELU_CHUNK];
    if (step[0] == 1 && step[1] == 1) {
        /* contiguous (the feed-forward's activation; x is never the
         * fresh result or slope): the result and the slope in one pass
         * over x, no chunk buffers */
        ad__vgelu_f32(o, keep, X, len);
        return;
    }
    for (int64_t i = 0; i < len; i += GELU_CHUNK) {
        int64_t n = len - i < GELU_CHUNK ? len - i : GELU_CHUNK;
        for (int64_t j = 0; j < n; j++) xb[j] = X[(i + j) * step[1]];
        phi_cdf_f32(xb, n, P);
        for (int64_t j = 0; j < n; j++) o[(i + j) * step[0]] = xb[j] * P[j];
        if (keep) {
            gelu_slope_f32(xb, P, P, n);
            for (int64_t j = 0; j < n; j++) keep[(i + j) * step[0]] = P[j];
        }
    }
}

/* dx = g d[x Phi(x)]/dx over n contiguous elements, with the slope kept
 * by the forward (Dk) or computed here (Dk NULL); dx may be g. */
static void gelu_grad_f32(const float *x, const float *g, const float *Dk, float *dx, int64_t n)
{
    if (Dk) {
        for (int64_t i = 0; i < n; i++) dx[i] = g[i] * Dk[i];
        return;
    }
    float D[GELU_CHUNK];
    for (int64_t i = 0; i < n; i += GELU_CHUNK) {
        int64_t m = n - i < GELU_CHUNK ? n - i : GELU_CHUNK;
        phi_cdf_f32(x + i, m, D);
        gelu_slope_f32(x + i, D, D, m);
        for (int64_t j = 0; j < m; j++) dx[i + j] = g[i + j] * D[j];
    }
}
static void gelu_grad_f64(const double *x, const double *g, double *dx, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double Phi = 0.5 * erfc(-x[i] * SQRT1_2);
        dx[i] = g[i] * (Phi + x[i] * INV_SQRT_2PI * exp(-0.5 * x[i] * x[i]));
    }
}

static bool contiguous(const ad_tensor *t)
{
    int64_t st[AD_MAX_DIMS];
    ad__contig_strides(t->ndim, t->shape, st);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] > 1 && t->strides[d] != st[d]) return false;
    return true;
}

static int gelu_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *x = n->in[0];
    /* A pass that records nothing, on contiguous operands (the common
     * case): one kernel, no temporaries. */
    if (!ad_grad_enabled() && ad__same_shape(g, x) && g->dtype == x->dtype && contiguous(g) &&
        contiguous(x)) {
        /* over g itself when the pass allows it (its shape and layout are
         * x's): nothing to move down after the rule */
        ad_tensor *dx = ad__grad_donated(n, g) && g->offset == 0
                            ? g
                            : ad__alloc("ad_gelu (backward)", n->out->tape, x->dtype, x->ndim,
                                        x->shape);
        if (!dx) return -1;
        int64_t cnt = ad__numel(x->ndim, x->shape);
        const gelu_params *gp = ad__params(n);
        if (x->dtype == AD_FLOAT32)
            gelu_grad_f32((const float *)x->storage->data + x->offset,
                          (const float *)g->storage->data + g->offset,
                          gp->slope ? (const float *)gp->slope->storage->data + gp->slope->offset
                                    : NULL,
                          dx->storage->data, cnt);
        else
            gelu_grad_f64((const double *)x->storage->data + x->offset,
                          (const double *)g->storage->data + g->offset, dx->storage->data, cnt);
        gin[0] = dx;
        return 0;
    }
    /* With ops, so that it differentiates again; Phi from erfc, as the
     * forward (1 + erf(x/sqrt 2) cancels in the left tail: 1 % off at
     * x = -10, where Phi is 7.6e-24 and the other term -7.7e-22). */
    ad_tensor *Phi = ad_mul_scalar(ad_erfc(ad_mul_scalar(x, -SQRT1_2)), 0.5);
    ad_tensor *phi = ad_mul_scalar(ad_exp(ad_mul_scalar(ad_square(x), -0.5)), INV_SQRT_2PI);
    gin[0] = ad_mul(g, ad_add(Phi, ad_mul(x, phi)));
    return 0;
}
static const pw_def D_GELU = {
    .op = {.name = "gelu",
           .formula = "y = x Phi(x), Phi(x) = erfc(-x/sqrt 2)/2; "
                      "dx = g (Phi(x) + x e^(-x^2/2)/sqrt(2 pi))",
           .backward = gelu_bw,
           .forward = ad__pw_fw,
           .params_size = sizeof(gelu_params)},
    .kind = K_FN,
    .row = gelu_row,
};
ad_tensor *ad_gelu(ad_tensor *x)
{
    static const char *fn = "ad_gelu";
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    gelu_params p = {NULL};
    if (tape && x->dtype == AD_FLOAT32 && ad_grad_enabled() && x->requires_grad &&
        !(p.slope = ad__alloc(fn, tape, AD_FLOAT32, x->ndim, x->shape)))
        return NULL;
    ad__pw_run(&(kern){.kind = D_GELU.kind, .p = &p, .out = out, .a = x}, ad__pw_row(&D_GELU, false));
    return ad__finish(out, 0, &D_GELU.op, 1, &x, &p, NULL);
}

/* ---- softplus ------------------------------------------------------------------ */
/* ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): the exponent is never positive. */
static double f_softplus(double x, const void *p)
{
    (void)p;
    return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
}
static int softplus_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, ad_sigmoid(n->in[0]));
    return 0;
}
PW_FN1_OP(D_SOFTPLUS, "softplus", "y = ln(1 + e^x); dx = g sigmoid(x)", softplus_bw,
          f_softplus);
ad_tensor *ad_softplus(ad_tensor *x) { return ad__pw_unary("ad_softplus", &D_SOFTPLUS, x, NULL); }

/* ---- log1p / expm1 / atan2 --------------------------------------------------------
 * log1p and expm1 keep full relative precision near 0, where log(1 + x)
 * and e^x - 1 cancel; atan2 gives the angle of (b, a) in (-pi, pi]. */
static double f_log1p(double x, const void *p) { (void)p; return log1p(x); }
static int log1p_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_div(g, ad_add_scalar(n->in[0], 1.0));
    return 0;
}
PW_FN1_OP(D_LOG1P, "log1p", "y = ln(1 + x); dx = g / (1 + x)", log1p_bw, f_log1p);
ad_tensor *ad_log1p(ad_tensor *x) { return ad__pw_unary("ad_log1p", &D_LOG1P, x, NULL); }

static double f_expm1(double x, const void *p) { (void)p; return expm1(x); }
static int expm1_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    /* e^x, not y + 1, which is 0 from x = -37 in float64 (e^x 8.5e-17) */
    gin[0] = ad_mul(g, ad_exp(n->in[0]));
    return 0;
}
PW_FN1_OP(D_EXPM1, "expm1", "y = e^x - 1; dx = g (y + 1)", expm1_bw, f_expm1);
ad_tensor *ad_expm1(ad_tensor *x) { return ad__pw_unary("ad_expm1", &D_EXPM1, x, NULL); }

static double f_atan2(double a, double b) { return atan2(a, b); }
static int atan2_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    /* d atan2(a, b) = (b da - a db) / (a^2 + b^2) */
    ad_tensor *a = n->in[0], *b = n->in[1];
    ad_tensor *gr = ad_div(g, ad_add(ad_square(a), ad_square(b)));
    GRAD_TO(0, ad_mul(gr, b));
    GRAD_TO(1, ad_neg(ad_mul(gr, a)));
    return 0;
}
PW_FN2_OP(D_ATAN2, "atan2", "y = atan2(a, b); da = g b / (a^2 + b^2), db = -g a / (a^2 + b^2)",
          atan2_bw, f_atan2);
ad_tensor *ad_atan2(ad_tensor *a, ad_tensor *b) { return ad__pw_binary("ad_atan2", &D_ATAN2, a, b); }

/* ---- abs / square / reciprocal ----------------------------------------------------- */
static float f_abs_f32(float x) { return fabsf(x); }
static double f_abs_f64(double x) { return fabs(x); }
static int abs_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, ad_sign(n->in[0])); /* sign(0) = 0: abs'(0) = 0 */
    return 0;
}
PW_EXACT1_OP(D_ABS, "abs", "y = |x|; dx = g sign(x)", abs_bw, f_abs_f32, f_abs_f64);
ad_tensor *ad_abs(ad_tensor *x) { return ad__pw_unary("ad_abs", &D_ABS, x, NULL); }

static double f_square(double x, const void *p) { (void)p; return x * x; }
static int square_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, ad_mul_scalar(n->in[0], 2.0));
    return 0;
}
PW_FN1_OP(D_SQUARE, "square", "y = x^2; dx = 2 g x", square_bw, f_square);
ad_tensor *ad_square(ad_tensor *x) { return ad__pw_unary("ad_square", &D_SQUARE, x, NULL); }

static double f_recip(double x, const void *p) { (void)p; return 1.0 / x; }
static int reciprocal_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_neg(ad_mul(g, ad_square(n->out))); /* -1/x^2 = -y^2 */
    return 0;
}
PW_FN1_OP(D_RECIPROCAL, "reciprocal", "y = 1 / x; dx = -g y^2", reciprocal_bw, f_recip);
ad_tensor *ad_reciprocal(ad_tensor *x) { return ad__pw_unary("ad_reciprocal", &D_RECIPROCAL, x, NULL); }

/* ---- clamp --------------------------------------------------------------------------
 * The mask includes the bounds: a value sitting exactly on one passes its
 * gradient, as in PyTorch. */
typedef struct clamp_params {
    double lo, hi;
} clamp_params;
static double f_clamp(double x, const void *params)
{
    const clamp_params *p = params;
    return x < p->lo ? p->lo : x > p->hi ? p->hi : x;
}
static int clamp_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const clamp_params *p = ad__params(n);
    ad_tensor *x = n->in[0];
    ad_tensor *inside = ad_mul(ad_ge(x, konst(n, p->lo)), ad_le(x, konst(n, p->hi)));
    gin[0] = ad_mul(g, inside);
    return 0;
}
PW_OP_PARAMS(D_CLAMP, "clamp", "y = min(max(x, lo), hi); dx = g [lo <= x <= hi]", clamp_bw,
             f_clamp, clamp_params);
ad_tensor *ad_clamp(ad_tensor *x, double lo, double hi)
{
    static const char *fn = "ad_clamp";
    if (isnan(lo) || isnan(hi)) return ad__err(fn, "bounds must not be NaN (lo %g, hi %g)", lo, hi), NULL;
    if (lo > hi) return ad__err(fn, "lo %g > hi %g", lo, hi), NULL;
    return ad__pw_unary(fn, &D_CLAMP, x, &(clamp_params){lo, hi});
}

const ad_op *const ad__ops_pointwise_fn[] = {
    &D_ERF.op, &D_ERFC.op, &D_GELU.op, &D_SOFTPLUS.op, &D_LOG1P.op, &D_EXPM1.op, &D_ATAN2.op,
    &D_ABS.op, &D_SQUARE.op, &D_RECIPROCAL.op, &D_CLAMP.op, NULL,
};

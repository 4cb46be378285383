/* tests/rows_ffi.c - op rows for the foreign op (see optest.h).
 *
 * One "foreign" op covers every registered C function, so the rows cover
 * the ways a function can come with derivatives: partial functions, one
 * gradient function, nothing (numeric derivatives), partials given as
 * foreign ops with second partials of their own, the vector form with and
 * without a gradient, and an int argument.  Each row's builder picks the
 * double version of its function for float64 inputs and the float version
 * for float32 ones (a foreign function's dtypes are its C types).
 *
 * gradgradcheck differentiates the first derivatives again: through the
 * numeric second level (partials, gradient), through two numeric levels
 * (nothing given), or exactly (partial_ops). */
#include <math.h>
#include <stdlib.h>

#include "optest.h"

/* f(x, y, z) = x sin y + x^2 e^(z/2) */
static double f3(double x, double y, double z) { return x * sin(y) + x * x * exp(0.5 * z); }
static double f3x(double x, double y, double z) { return sin(y) + 2 * x * exp(0.5 * z); }
static double f3y(double x, double y, double z) { (void)z; return x * cos(y); }
static double f3z(double x, double y, double z) { (void)y; return 0.5 * x * x * exp(0.5 * z); }
static float f3f(float x, float y, float z) { return x * sinf(y) + x * x * expf(0.5f * z); }
static float f3xf(float x, float y, float z) { return sinf(y) + 2 * x * expf(0.5f * z); }
static float f3yf(float x, float y, float z) { (void)z; return x * cosf(y); }
static float f3zf(float x, float y, float z) { (void)y; return 0.5f * x * x * expf(0.5f * z); }

/* g(a, b) = log(1 + a^2) cos b + a b^2, with no derivatives given */
static double g2(double a, double b) { return log(1 + a * a) * cos(b) + a * b * b; }
static float g2f(float a, float b) { return logf(1 + a * a) * cosf(b) + a * b * b; }

/* h(x, y) = sqrt(1 + x^2 + y^4), with a gradient function */
static double h2(double x, double y) { return sqrt(1 + x * x + y * y * y * y); }
static void h2g(double x, double y, double *out)
{
    double r = h2(x, y);
    out[0] = x / r;
    out[1] = 2 * y * y * y / r;
}
static float h2f(float x, float y) { return sqrtf(1 + x * x + y * y * y * y); }
static void h2gf(float x, float y, float *out)
{
    float r = h2f(x, y);
    out[0] = x / r;
    out[1] = 2 * y * y * y / r;
}

/* p(x, y) = x y^2 + sin x; its partials are foreign ops with partials:
 * px = y^2 + cos x (d/dx -sin x, d/dy 2y), py = 2 x y (2y, 2x). */
static double p2(double x, double y) { return x * y * y + sin(x); }
static double px(double x, double y) { return y * y + cos(x); }
static double py(double x, double y) { return 2 * x * y; }
static double pxx(double x, double y) { (void)y; return -sin(x); }
static double pxy(double x, double y) { (void)x; return 2 * y; }
static double pyx(double x, double y) { (void)x; return 2 * y; }
static double pyy(double x, double y) { (void)y; return 2 * x; }
static float p2f(float x, float y) { return x * y * y + sinf(x); }
static float pxf(float x, float y) { return y * y + cosf(x); }
static float pyf(float x, float y) { return 2 * x * y; }
static float pxxf(float x, float y) { (void)y; return -sinf(x); }
static float pxyf(float x, float y) { (void)x; return 2 * y; }
static float pyxf(float x, float y) { (void)x; return 2 * y; }
static float pyyf(float x, float y) { (void)y; return 2 * x; }

/* vector: lse(x) = log sum e^(x_k) with its gradient softmax(x); and
 * w(x) = sum_k sin(x_k) x_(k+1 mod n), numeric */
static double lse(const double *x, int n)
{
    double m = x[0], s = 0;
    for (int k = 1; k < n; k++) m = fmax(m, x[k]);
    for (int k = 0; k < n; k++) s += exp(x[k] - m);
    return m + log(s);
}
static void lse_g(const double *x, int n, double *out)
{
    double l = lse(x, n);
    for (int k = 0; k < n; k++) out[k] = exp(x[k] - l);
}
static float lsef(const float *x, int n)
{
    float m = x[0], s = 0;
    for (int k = 1; k < n; k++) m = fmaxf(m, x[k]);
    for (int k = 0; k < n; k++) s += expf(x[k] - m);
    return m + logf(s);
}
static void lse_gf(const float *x, int n, float *out)
{
    float l = lsef(x, n);
    for (int k = 0; k < n; k++) out[k] = expf(x[k] - l);
}
static double wv(const double *x, long n)
{
    double s = 0;
    for (long k = 0; k < n; k++) s += sin(x[k]) * x[(k + 1) % n];
    return s;
}
static float wvf(const float *x, long n)
{
    float s = 0;
    for (long k = 0; k < n; k++) s += sinf(x[k]) * x[(k + 1) % n];
    return s;
}

/* q(x, k) = x^k / (1 + k): an int argument, not differentiated */
static double qi(double x, int k) { return pow(x, k) / (1 + k); }
static float qif(float x, int k) { return powf(x, (float)k) / (float)(1 + k); }

enum { F3, G2, H2, P2, LSE, WV, QI, NF };
static ad_foreign *made[NF][2];

/* Made on first use and kept for the process: the rows are static, and
 * Check runs each test in a fresh fork. */
static const ad_foreign *pick(int which, ad_dtype dt)
{
    static ad_foreign *pops[2][2];
    int f = dt == AD_FLOAT32;
    if (made[which][f]) return made[which][f];
    ad_foreign_desc d = {0};
    switch (which) {
    case F3:
        d = f ? (ad_foreign_desc){.name = "f3", .signature = "f(fff)", .fn = AD_FN(f3f),
                                  .partials = {AD_FN(f3xf), AD_FN(f3yf), AD_FN(f3zf)}}
              : (ad_foreign_desc){.name = "f3", .signature = "double (double, double, double)",
                                  .fn = AD_FN(f3), .partials = {AD_FN(f3x), AD_FN(f3y), AD_FN(f3z)}};
        break;
    case G2:
        made[which][f] = f ? ad_foreign_new("float g2(float a, float b)", AD_FN(g2f), NULL)
                           : ad_foreign_new("double g2(double a, double b)", AD_FN(g2), NULL);
        return made[which][f];
    case H2:
        d = (ad_foreign_desc){.name = "h2", .signature = f ? "f(ff)" : "d(dd)",
                              .fn = f ? AD_FN(h2f) : AD_FN(h2), .grad = f ? AD_FN(h2gf) : AD_FN(h2g)};
        break;
    case P2: {
        const char *s = f ? "f(ff)" : "d(dd)";
        pops[f][0] = ad_foreign_new_desc(&(ad_foreign_desc){
            .name = "px", .signature = s, .fn = f ? AD_FN(pxf) : AD_FN(px),
            .partials = {f ? AD_FN(pxxf) : AD_FN(pxx), f ? AD_FN(pxyf) : AD_FN(pxy)}});
        pops[f][1] = ad_foreign_new_desc(&(ad_foreign_desc){
            .name = "py", .signature = s, .fn = f ? AD_FN(pyf) : AD_FN(py),
            .partials = {f ? AD_FN(pyxf) : AD_FN(pyx), f ? AD_FN(pyyf) : AD_FN(pyy)}});
        d = (ad_foreign_desc){.name = "p2", .signature = s, .fn = f ? AD_FN(p2f) : AD_FN(p2),
                              .partial_ops = {pops[f][0], pops[f][1]}};
        break;
    }
    case LSE:
        d = (ad_foreign_desc){.name = "lse", .signature = f ? "f(Fi)" : "d(Di)",
                              .fn = f ? AD_FN(lsef) : AD_FN(lse),
                              .grad = f ? AD_FN(lse_gf) : AD_FN(lse_g)};
        break;
    case WV:
        made[which][f] = f ? ad_foreign_new("float (const float *x, long n)", AD_FN(wvf), "wv")
                           : ad_foreign_new("double (const double *x, long n)", AD_FN(wv), "wv");
        return made[which][f];
    case QI:
        made[which][f] = f ? ad_foreign_new("f(fi)", AD_FN(qif), "q")
                           : ad_foreign_new("d(di)", AD_FN(qi), "q");
        return made[which][f];
    }
    made[which][f] = ad_foreign_new_desc(&d);
    return made[which][f];
}

static ad_tensor *call(int which, ad_tensor *const *in, int n)
{
    const ad_foreign *f = pick(which, ad_tensor_dtype(in[0]));
    return f ? ad_foreign_call(f, n, in) : NULL;
}

static ad_tensor *b_plain(ad_tensor *const *in, int n, void *ctx)
{
    return call(*(int *)ctx, in, n);
}
/* The first input transposed: a strided view. */
static ad_tensor *b_tr(ad_tensor *const *in, int n, void *ctx)
{
    ad_tensor *x[4] = {ad_transpose(in[0], 0, 1)};
    for (int i = 1; i < n; i++) x[i] = in[i];
    return call(*(int *)ctx, x, n);
}

static int k_f3 = F3, k_g2 = G2, k_h2 = H2, k_p2 = P2, k_lse = LSE, k_wv = WV, k_qi = QI;

#define IN(nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}

const op_row rows_ffi[] = {
    {"foreign", "partials, broadcast [2,3] [3] [1]", b_plain, &k_f3, 3,
     {IN(2, 2, 3), IN(1, 3), IN(1, 1)}},
    {"foreign", "partials, transposed x, z constant", b_tr, &k_f3, 3,
     {IN(2, 3, 2), IN(2, 2, 3), {0, {0}, OT_CONST, 0, 0, 0}}},
    {"foreign", "numeric derivative, [4] and 0-d", b_plain, &k_g2, 2, {IN(1, 4), IN(0, 0)}},
    {"foreign", "numeric derivative, transposed", b_tr, &k_g2, 2, {IN(2, 3, 2), IN(1, 3)}},
    {"foreign", "gradient function [2,2] [2,1]", b_plain, &k_h2, 2, {IN(2, 2, 2), IN(2, 2, 1)}},
    {"foreign", "partial_ops with exact second partials", b_plain, &k_p2, 2, {IN(1, 5), IN(1, 5)}},
    {"foreign", "vector form with gradient [3,4]", b_plain, &k_lse, 1, {IN(2, 3, 4)}},
    {"foreign", "vector form with gradient, transposed", b_tr, &k_lse, 1, {IN(2, 4, 3)}},
    {"foreign", "vector form numeric [5] (long length)", b_plain, &k_wv, 1, {IN(1, 5)}},
    {"foreign", "vector form numeric [2,3]", b_plain, &k_wv, 1, {IN(2, 2, 3)}},
    {"foreign", "int argument (not differentiated)", b_plain, &k_qi, 2,
     {{1, {4}, OT_GRAD, 0.5, 1.5, 0}, {1, {4}, OT_INDEX, 0, 0, 4}}},
    {NULL, NULL, NULL, NULL, 0, {{0}}},
};

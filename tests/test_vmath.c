/* tests/test_vmath.c - the vectorised float32 exp, log, tanh, sigmoid, sin
 * and cos (autodiff/vmath.c) against the C library's double functions.
 *
 * The sweep: every 2^STRIDE_LOG2-th float32 bit pattern (each with a
 * different low part, so that mantissas of every shape occur), both signs,
 * plus every bit pattern within 2^15 of each edge: 0 (the subnormals), 1,
 * the overflow and underflow thresholds of exp, where tanh and sigmoid
 * saturate, the largest float and infinity.  The maximum error in ulp of
 * the float result must be <= 2 (vmath.h promises it), non-finite results
 * must match exactly, and every instruction-set variant this CPU can run
 * must give the same bits as the portable one.  AD_VMATH_STRIDE_LOG2=0 in
 * the environment makes the sweep exhaustive (all 2^32 patterns; minutes);
 * AD_VMATH_QUICK=1 (scripts/valgrind and the sanitizer build, where the
 * point is memory errors, not accuracy) thins the sweep to every 2^13th
 * pattern and the edges to 2^11 patterns either side.
 *
 * sin and cos also against every float nearest to a multiple of pi/2 up
 * to the bound of their range reduction (where the reduced argument is
 * smallest and cancellation worst), and with elements beyond the bound
 * (the C library's) mixed among ordinary ones.
 *
 * float64 exp, log, tanh and sigmoid: relative error within 1e-15 (long
 * double reference), edges exact, variants identical.
 *
 * Through the ops: ad_exp, ad_log, ad_tanh, ad_sigmoid, ad_sin and ad_cos
 * of float32 tensors give the same bits contiguous and strided.
 *
 * AD_VMATH in the environment picks the variant the CPU runs: a name the
 * CPU can run is taken, anything else leaves the CPU's choice. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../autodiff/gemm.h"
#include "../autodiff/internal.h"
#include "../autodiff/vmath.h"
#include "optest.h"

#define STRIDE_LOG2 9

typedef void (*vfn)(float *, const float *, int64_t);

static double ref_exp(double x) { return exp(x); }
static double ref_log(double x) { return log(x); }
static double ref_tanh(double x) { return tanh(x); }
static double ref_sin(double x) { return sin(x); }
static double ref_cos(double x) { return cos(x); }
static double ref_sigmoid(double x)
{
    double e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

static const struct fn {
    const char *name;
    vfn f;
    double (*ref)(double);
} FNS[] = {
    {"exp", ad__vexp_f32, ref_exp},
    {"log", ad__vlog_f32, ref_log},
    {"tanh", ad__vtanh_f32, ref_tanh},
    {"sigmoid", ad__vsigmoid_f32, ref_sigmoid},
    {"sin", ad__vsin_f32, ref_sin},
    {"cos", ad__vcos_f32, ref_cos},
};
#define NFNS ((int)(sizeof FNS / sizeof FNS[0]))

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* |got - ref| in units of the last place of float at ref (2^-149 below
 * the normal range).  A non-finite result must be exactly the reference's
 * float: NaN for NaN, the same infinity where ref is beyond the float
 * range. */
static double ulp_error(float got, double ref)
{
    if (isnan(ref) || isnan(got)) return isnan(ref) && isnan(got) ? 0 : INFINITY;
    float rf = (float)ref;
    if (isinf(rf) || isinf(got)) return rf == got ? 0 : INFINITY;
    int e;
    frexp(ref, &e);
    double ulp = ldexp(1.0, e - 24 < -149 ? -149 : e - 24);
    return fabs((double)got - ref) / ulp;
}

typedef struct worst {
    double ulp;
    float x, got;
    double ref;
    long mismatches; /* elements where a variant differs from the portable one */
} worst;

#define BLOCK 4096

/* Checks one block of inputs against the reference and across variants. */
static void check_block(const struct fn *fn, const float *x, int n, worst *w)
{
    static float y[BLOCK], yv[BLOCK];
    ck_assert_int_eq(ad__vmath_testing_isa(0), 0);
    fn->f(y, x, n);
    for (int i = 0; i < n; i++) {
        double ref = fn->ref((double)x[i]);
        double u = ulp_error(y[i], ref);
        if (u > w->ulp || (isinf(u) && !isinf(w->ulp)))
            *w = (worst){u, x[i], y[i], ref, w->mismatches};
    }
    for (int isa = 1; isa <= 2; isa++) {
        if (ad__vmath_testing_isa(isa)) continue;
        fn->f(yv, x, n);
        for (int i = 0; i < n; i++)
            if (to_bits(yv[i]) != to_bits(y[i])) w->mismatches++;
    }
    ad__vmath_testing_isa(-1);
}

/* Edges: every bit pattern within 2^15 of each, both signs. */
static const float EDGES[] = {
    0.0f, 1.0f, FLT_MIN, FLT_MAX, INFINITY,
    88.7228394f,  /* largest x with finite e^x */
    103.972084f,  /* e^-x underflows to 0 beyond */
    87.3365479f,  /* e^-x becomes subnormal */
    9.01091290f,  /* tanh rounds to 1 */
    16.6355324f,  /* sigmoid rounds to 1 */
    0.707106781f, 1.41421356f, /* log's range reduction switches */
    0.34657359f,  /* exp's reduction switches n; tanh's h = 1/2 */
    0.3433f,      /* tanh's reduction switches from n = 0 to 1 */
    0.785398163f, 1.57079633f, 3.14159265f, 4.71238898f, /* sin's and cos's reduction switches k */
    256.0f,       /* sin and cos switch from float to double reduction */
    16777216.0f,  /* the bound of sin's and cos's reduction */
    10.0f, 104.0f, 89.0f, 128.0f, 150.0f, /* the clamps */
};

START_TEST(ulp_over_the_whole_range)
{
    const struct fn *fn = &FNS[_i];
    bool quick = getenv("AD_VMATH_QUICK") != NULL;
    int stride_log2 = quick ? 13 : STRIDE_LOG2;
    const int64_t half = quick ? 1 << 11 : 1 << 15; /* edge window */
    const char *env = getenv("AD_VMATH_STRIDE_LOG2");
    if (env) stride_log2 = atoi(env);
    uint64_t stride = (uint64_t)1 << stride_log2;
    static float x[BLOCK];
    worst w = {0};
    int n = 0;
    long count = 0;
    for (uint64_t p = 0; p < ((uint64_t)1 << 32); p += stride) {
        /* A different low part for each pattern of the sweep. */
        uint64_t low = stride > 1 ? (p >> stride_log2) * 2654435761u % stride : 0;
        x[n++] = from_bits((uint32_t)(p + low));
        if (n == BLOCK) check_block(fn, x, n, &w), count += n, n = 0;
    }
    for (size_t e = 0; e < sizeof EDGES / sizeof EDGES[0]; e++)
        for (int sign = 0; sign < 2; sign++)
            for (int64_t d = -half; d <= half; d++) {
                int64_t b = (int64_t)(to_bits(EDGES[e]) & 0x7fffffff) + d;
                if (b < 0 || b > 0x7fffffff) continue;
                x[n++] = from_bits((uint32_t)b | (sign ? 0x80000000u : 0));
                if (n == BLOCK) check_block(fn, x, n, &w), count += n, n = 0;
            }
    check_block(fn, x, n, &w);
    count += n;
    printf("vmath %s: %ld inputs, max error %.3f ulp at x = %.9g (0x%08x): got %.9g, "
           "exact %.17g; variants differing: %ld\n",
           fn->name, count, w.ulp, w.x, to_bits(w.x), w.got, w.ref, w.mismatches);
    ck_assert_msg(w.ulp <= 2.0, "%s: %.3f ulp at x = %.9g", fn->name, w.ulp, w.x);
    ck_assert_int_eq(w.mismatches, 0);
}
END_TEST

/* Exact values at the edges, independent of the reference. */
START_TEST(edge_values)
{
    float x[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f, 200.0f, -200.0f};
    enum { N = sizeof x / sizeof x[0] };
    float y[N];
    ad__vexp_f32(y, x, N);
    ck_assert(y[0] == 1 && y[1] == 1 && y[2] == INFINITY && y[3] == 0 && isnan(y[4]));
    ck_assert(y[7] == INFINITY && y[8] == 0);
    ck_assert(y[5] == 2.71828183f);
    ad__vlog_f32(y, x, N);
    ck_assert(y[0] == -INFINITY && y[1] == -INFINITY && y[2] == INFINITY && isnan(y[3]));
    ck_assert(isnan(y[4]) && y[5] == 0 && !signbit(y[5]) && isnan(y[6]));
    ad__vtanh_f32(y, x, N);
    ck_assert(y[0] == 0 && !signbit(y[0]) && y[1] == 0 && signbit(y[1]));
    ck_assert(y[2] == 1 && y[3] == -1 && isnan(y[4]) && y[7] == 1 && y[8] == -1);
    ck_assert(y[6] == -y[5] && y[5] == 0.761594156f);
    ad__vsigmoid_f32(y, x, N);
    ck_assert(y[0] == 0.5f && y[1] == 0.5f && y[2] == 1 && y[3] == 0 && isnan(y[4]));
    ck_assert(y[7] == 1 && y[8] == 0);
    /* Subnormal results: e^-100 = 3.72e-44 is 26.6 times 2^-149. */
    float t[] = {-100.0f, FLT_TRUE_MIN, -FLT_TRUE_MIN};
    ad__vexp_f32(y, t, 1);
    ck_assert(y[0] == 27 * FLT_TRUE_MIN);
    ad__vsigmoid_f32(y, t, 1);
    ck_assert(y[0] == 27 * FLT_TRUE_MIN);
    ad__vtanh_f32(y, t + 1, 2);
    ck_assert(y[0] == FLT_TRUE_MIN && y[1] == -FLT_TRUE_MIN);
    ad__vlog_f32(y, t + 1, 1);
    ck_assert(y[0] == (float)(-149 * log(2.0)));
    ad__vsin_f32(y, x, N);
    ck_assert(y[0] == 0 && !signbit(y[0]) && y[1] == 0 && signbit(y[1]));
    ck_assert(isnan(y[2]) && isnan(y[3]) && isnan(y[4]) && y[5] == 0.841470985f && y[6] == -y[5]);
    ad__vcos_f32(y, x, N);
    ck_assert(y[0] == 1 && y[1] == 1 && isnan(y[2]) && isnan(y[3]) && isnan(y[4]));
    ck_assert(y[5] == 0.540302306f && y[6] == y[5]);
    ad__vsin_f32(y, t + 1, 2);
    ck_assert(y[0] == FLT_TRUE_MIN && y[1] == -FLT_TRUE_MIN);
}
END_TEST

/* sin and cos at the floats nearest to k pi/2 (and their neighbours) for
 * every k up to the reduction's bound 2^24: there the reduced argument is
 * smallest, and an error in pi/2's parts would show. */
START_TEST(near_multiples_of_half_pi)
{
    const struct fn *fn = &FNS[_i];
    static float x[BLOCK];
    worst w = {0};
    int n = 0;
    for (int64_t k = 1; k <= 10680707; k++) { /* 10680707 pi/2 < 2^24 */
        float f = (float)((double)k * 1.5707963267948966);
        uint32_t b = to_bits(f);
        for (int d = -1; d <= 1; d++) {
            x[n++] = from_bits(b + (uint32_t)d);
            if (n == BLOCK) check_block(fn, x, n, &w), n = 0;
        }
        if (k > 4096) k += k >> 12; /* every k below 4096, then a sample */
    }
    check_block(fn, x, n, &w);
    printf("vmath %s near k pi/2: max error %.3f ulp at x = %.9g\n", fn->name, w.ulp, w.x);
    ck_assert_msg(w.ulp <= 2.0, "%s: %.3f ulp at x = %.9g", fn->name, w.ulp, w.x);
    ck_assert_int_eq(w.mismatches, 0);
}
END_TEST

/* Elements beyond 2^24, inf and NaN, which sin and cos hand to the C
 * library, among ordinary ones (on both sides of 256, where the float
 * reduction gives way to the double one): every element as computed
 * alone, and the library's value beyond the bound. */
START_TEST(beyond_the_reduction_bound)
{
    enum { N = 1500 };
    static float x[N], y[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i * 0.731 - 500);
    x[3] = 1e30f, x[700] = -16777218.0f, x[701] = INFINITY, x[1499] = NAN, x[1498] = 16777216.0f;
    for (int f = 4; f < 6; f++) {
        FNS[f].f(y, x, N);
        for (int i = 0; i < N; i++) {
            float one;
            FNS[f].f(&one, &x[i], 1);
            ck_assert(to_bits(one) == to_bits(y[i]) || (isnan(one) && isnan(y[i])));
            ck_assert_msg(ulp_error(y[i], FNS[f].ref((double)x[i])) <= 2.0, "%s(%.9g)", FNS[f].name,
                          x[i]);
        }
        ck_assert(y[3] == (float)FNS[f].ref((double)x[3]) && isnan(y[701]) && isnan(y[1499]));
    }
}
END_TEST

/* log takes a shorter path through a chunk of 512 whose elements are all
 * normal, positive and finite: the same values as the full path, which a
 * single zero, subnormal, negative, inf or NaN element sends its chunk
 * through.  8192 normal positive bit patterns evenly spread over all
 * exponents (and their neighbours), alone and with each of those among
 * them. */
START_TEST(log_chunk_paths_agree)
{
    enum { N = 3 * 8192 };
    static float x[N], y[N], x2[2 * N], y2[2 * N];
    int n = 0;
    for (uint32_t b = 0x00800000u; b < 0x7f800000u - 2 && n < N; b += 0x7f000000u / 8192)
        for (uint32_t d = 0; d < 3; d++) x[n++] = from_bits(b + d);
    ad__vlog_f32(y, x, n);
    const float odd[] = {0.0f, -0.0f, 0x1p-140f, -1.0f, INFINITY, NAN};
    for (size_t o = 0; o < sizeof odd / sizeof odd[0]; o++) {
        for (int i = 0; i < n; i++) x2[2 * i] = x[i], x2[2 * i + 1] = odd[o];
        ad__vlog_f32(y2, x2, 2 * n);
        for (int i = 0; i < n; i++)
            ck_assert_msg(to_bits(y2[2 * i]) == to_bits(y[i]), "log(%a) beside %a", (double)x[i],
                          (double)odd[o]);
    }
}
END_TEST

/* float64: relative error within 1e-15 against long double for normal
 * results, within 1 ulp of 2^-1074 for subnormal ones, over a sweep of
 * bit patterns (every exponent, both signs) and dense ranges around the
 * places where each method switches or saturates; the variants agree. */
typedef void (*vfn_d)(double *, const double *, int64_t);
static long double ref_sigmoidl(long double x)
{
    long double e = expl(-fabsl(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}
static const struct fn_d {
    const char *name;
    vfn_d f;
    long double (*ref)(long double);
} FNS_D[] = {
    {"exp", ad__vexp_f64, expl},
    {"log", ad__vlog_f64, logl},
    {"tanh", ad__vtanh_f64, tanhl},
    {"sigmoid", ad__vsigmoid_f64, ref_sigmoidl},
};

static double from_bits_d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

START_TEST(float64_relative_error)
{
    const struct fn_d *fn = &FNS_D[_i];
    static double x[BLOCK], y[BLOCK], yv[BLOCK];
    static const double ranges[][2] = {
        {-1, 1}, {-1e-3, 1e-3}, {0.99, 1.01}, {0.7, 0.71}, {1.41, 1.42}, {-20, 20},
        {-745.2, -700}, {700, 709.8}, {-40, -30}, {1e-310, 1e-300}, {0, 1e300},
    };
    double worst = 0, wx = 0;
    long mismatches = 0;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int block = 0; block < 600; block++) {
        for (int i = 0; i < BLOCK; i++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            double u = (double)(seed >> 11) * 0x1p-53;
            if (block < 160) { /* any bit pattern of a finite double */
                x[i] = from_bits_d(seed & 0xffefffffffffffffull);
            } else {
                const double *r = ranges[block % (sizeof ranges / sizeof ranges[0])];
                x[i] = r[0] + (r[1] - r[0]) * u;
            }
        }
        ck_assert_int_eq(ad__vmath_testing_isa(0), 0);
        fn->f(y, x, BLOCK);
        for (int isa = 1; isa <= 2; isa++) {
            if (ad__vmath_testing_isa(isa)) continue;
            fn->f(yv, x, BLOCK);
            for (int i = 0; i < BLOCK; i++)
                if (memcmp(&y[i], &yv[i], sizeof y[i])) mismatches++;
        }
        ad__vmath_testing_isa(-1);
        for (int i = 0; i < BLOCK; i++) {
            long double r = fn->ref((long double)x[i]);
            double err;
            if (isnan(r) || isinf(r) || isinf((double)r))
                err = (isnan(r) ? isnan(y[i]) : y[i] == (double)r) ? 0 : INFINITY;
            else if (fabsl(r) < 0x1p-1022L)
                err = fabsl((long double)y[i] - r) > 0x1p-1074L ? INFINITY : 0;
            else
                err = (double)fabsl(((long double)y[i] - r) / r);
            if (!(err <= worst)) worst = err, wx = x[i];
        }
    }
    printf("vmath %s float64: max relative error %.3g at x = %.17g; variants differing: %ld\n",
           fn->name, worst, wx, mismatches);
    ck_assert_msg(worst <= 1e-15, "%s: %.3g at %.17g", fn->name, worst, wx);
    ck_assert_int_eq(mismatches, 0);
    /* The edges, exactly. */
    double e[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, -1.0, 4.9e-324, 1e6, -1e6};
    double o[9];
    fn->f(o, e, 9);
    switch (_i) {
    case 0:
        ck_assert(o[0] == 1 && o[1] == 1 && o[2] == INFINITY && o[3] == 0 && isnan(o[4]));
        ck_assert(o[7] == INFINITY && o[8] == 0 && o[6] == 1);
        break;
    case 1:
        ck_assert(o[0] == -INFINITY && o[1] == -INFINITY && o[2] == INFINITY && isnan(o[3]));
        ck_assert(isnan(o[4]) && isnan(o[5]) && o[6] == (double)(-1074 * logl(2.0L)));
        break;
    case 2:
        ck_assert(o[0] == 0 && !signbit(o[0]) && o[1] == 0 && signbit(o[1]) && o[2] == 1);
        ck_assert(o[3] == -1 && isnan(o[4]) && o[6] == 4.9e-324 && o[7] == 1 && o[8] == -1);
        break;
    default:
        ck_assert(o[0] == 0.5 && o[1] == 0.5 && o[2] == 1 && o[3] == 0 && isnan(o[4]));
        ck_assert(o[7] == 1 && o[8] == 0);
        break;
    }
}
END_TEST

/* Every length and alignment (the vector loops' remainders) agrees with
 * element-at-a-time calls. */
START_TEST(lengths_and_offsets)
{
    const struct fn *fn = &FNS[_i];
    float x[80], y[80], one;
    for (int i = 0; i < 80; i++) x[i] = (float)(i * 0.37 - 13.1);
    for (int off = 0; off < 8; off++)
        for (int n = 0; n + off <= 80; n++) {
            for (int i = 0; i < 80; i++) y[i] = -42.0f;
            fn->f(y + off, x + off, n);
            for (int i = 0; i < 80; i++) {
                if (i < off || i >= off + n) {
                    ck_assert(y[i] == -42.0f); /* nothing written outside */
                    continue;
                }
                fn->f(&one, &x[i], 1);
                ck_assert(to_bits(one) == to_bits(y[i]));
            }
        }
    /* In place. */
    memcpy(y, x, sizeof y);
    fn->f(y, y, 80);
    for (int i = 0; i < 80; i++) {
        fn->f(&one, &x[i], 1);
        ck_assert(to_bits(one) == to_bits(y[i]));
    }
}
END_TEST

/* An output of at least ad__stream_min() bytes that starts on a cache line
 * is written with non-temporal stores (vm_streams in vmath.c): with the
 * threshold at 0, every variant gives the same bits as with it off, into
 * a new array and in place, over chunks that take each of log's and sin's
 * and cos's paths (normal arguments; zero, negative and subnormal ones for
 * log; beyond 256 and beyond 2^24 for sin and cos) and a partial last
 * chunk. */
void ad__stream_testing_min(int64_t bytes); /* autodiff/stream.c (internal) */
START_TEST(streamed_outputs)
{
    const struct fn *fn = &FNS[_i];
    enum { N = 5 * 512 + 77 };
    float *x = aligned_alloc(64, N * sizeof(float) + 64 - N * sizeof(float) % 64);
    float *a = aligned_alloc(64, N * sizeof(float) + 64 - N * sizeof(float) % 64);
    float *b = aligned_alloc(64, N * sizeof(float) + 64 - N * sizeof(float) % 64);
    ck_assert(x && a && b);
    for (int i = 0; i < N; i++) x[i] = (float)(sin(i * 0.61) * 9.0);
    /* a run of positive normal values, wide in range: whole vectors on
     * log's main path (the run above has a negative in every 16) */
    for (int i = 2048; i < 2560; i++) x[i] = (float)exp(sin(i * 0.37) * 40.0);
    x[512 + 3] = 0.0f, x[512 + 9] = -2.0f, x[512 + 11] = 1e-40f, x[512 + 13] = -0.0f;
    x[1024 + 5] = 300.0f, x[1024 + 6] = -1000.5f;
    x[1536 + 7] = 3e7f, x[1536 + 8] = INFINITY, x[1536 + 9] = NAN;
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__vmath_testing_isa(isa)) continue;
        ad__stream_testing_min(INT64_MAX);
        fn->f(a, x, N);
        ad__stream_testing_min(0);
        fn->f(b, x, N);
        for (int i = 0; i < N; i++)
            ck_assert_msg(to_bits(a[i]) == to_bits(b[i]), "%s variant %d element %d: %a, %a",
                          fn->name, isa, i, a[i], b[i]);
        memcpy(b, x, N * sizeof(float));
        fn->f(b, b, N);
        for (int i = 0; i < N; i++)
            ck_assert_msg(to_bits(a[i]) == to_bits(b[i]), "%s in place, variant %d element %d",
                          fn->name, isa, i);
        ad__stream_testing_min(-1);
    }
    ad__vmath_testing_isa(-1);
    free(x);
    free(a);
    free(b);
}
END_TEST

/* The ops: contiguous and strided float32 tensors give the same bits. */
START_TEST(ops_contiguous_and_strided)
{
    ad_tensor *(*ops[])(ad_tensor *) = {ad_exp, ad_log, ad_tanh, ad_sigmoid, ad_sin, ad_cos};
    ad_tape *tape = ad_tape_new();
    ck_assert(tape != NULL);
    int64_t rows = 37, cols = 29;
    ad_tensor *x = ad_empty(tape, AD_FLOAT32, AD_SHAPE(rows, cols));
    float *v = ad_data(x);
    for (int64_t i = 0; i < rows * cols; i++) v[i] = (float)((double)i * 0.013 - 6.0);
    ad_tensor *xt = ad_transpose(x, 0, 1);
    ck_assert(xt != NULL);
    for (int k = 0; k < NFNS; k++) {
        ad_tensor *y = ops[k](x), *yt = ops[k](xt);
        ck_assert_msg(y && yt, "%s", ad_error());
        const float *a = ad_data(y), *b = ad_data(yt);
        float want;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                FNS[k].f(&want, &v[i * cols + j], 1);
                ck_assert(to_bits(a[i * cols + j]) == to_bits(want));
                ck_assert(to_bits(b[j * rows + i]) == to_bits(want));
            }
    }
    ad_tape_free(tape);
}
END_TEST

/* Phi (ad__vphi_f32, GELU's factor) is a fit, not a 2-ulp function: over
 * [-12, 12] within 4e-7 of 0.5 erfc(-x/sqrt 2) absolutely and 2e-5
 * relatively (the relative error grows in the left tail, where Phi is
 * tiny); 0 and 1 at the infinities; the same bits from every variant. */
START_TEST(phi_fit)
{
    enum { NMAX = 1 << 20 };
    static float x[NMAX], y[NMAX], yv[NMAX];
    /* AD_VMATH_QUICK (valgrind): a sixteenth of the points; the whole grid
     * took 50 s there, erfc and the three variants emulated */
    const int N = getenv("AD_VMATH_QUICK") ? NMAX / 16 : NMAX;
    for (int i = 0; i < N; i++) x[i] = (float)(-12.0 + 24.0 * (double)i / (N - 1));
    ck_assert_int_eq(ad__vmath_testing_isa(0), 0);
    ad__vphi_f32(y, x, N);
    double abs_err = 0, rel_err = 0;
    for (int i = 0; i < N; i++) {
        double ref = 0.5 * erfc(-(double)x[i] / sqrt(2.0)), e = fabs((double)y[i] - ref);
        abs_err = e > abs_err ? e : abs_err;
        rel_err = e / ref > rel_err ? e / ref : rel_err;
    }
    ck_assert_msg(abs_err < 4e-7 && rel_err < 2e-5, "Phi: abs %g rel %g", abs_err, rel_err);
    for (int isa = 1; isa <= 2; isa++) {
        if (ad__vmath_testing_isa(isa)) continue;
        ad__vphi_f32(yv, x, N);
        for (int i = 0; i < N; i++) ck_assert(to_bits(yv[i]) == to_bits(y[i]));
    }
    ad__vmath_testing_isa(-1);
    float inf[2] = {-INFINITY, INFINITY}, p[2];
    ad__vphi_f32(p, inf, 2);
    ck_assert(p[0] == 0.0f && p[1] == 1.0f);
    /* a NaN comes back as it is, sign and payload, in the vector loop and
     * in the scalar tail, from every variant (its sign depended on both) */
    float nans[33], out[33];
    for (int i = 0; i < 33; i++) nans[i] = i % 2 ? -NAN : NAN;
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__vmath_testing_isa(isa)) continue;
        for (int len = 1; len <= 33; len += 16) {
            ad__vphi_f32(out, nans, len);
            for (int i = 0; i < len; i++)
                ck_assert_msg(to_bits(out[i]) == to_bits(nans[i]), "isa %d, %d of %d: %08x", isa,
                              i, len, (unsigned)to_bits(out[i]));
        }
    }
    ad__vmath_testing_isa(-1);
}
END_TEST

/* GELU in one pass (ad__vgelu_f32) gives the bits of the loops it
 * replaced, x Phi(x) and Phi(x) + x c e^(-x x/2) made of ad__vphi_f32 and
 * ad__vexp_f32, from every variant, with and without the slope, on
 * values in [-12, 12], the infinities, 0, -0 and NaN (a NaN, whichever);
 * and its result is
 * within 4e-7 of 0.5 x erfc(-x/sqrt 2) relative to max(1, |x|). */
/* The same float, bit for bit, or both NaN: which NaN an operation passes
 * on (sign, payload) is not defined by IEEE 754 and differs between
 * instruction sequences (valgrind's emulation of AVX2 gives another one),
 * so it is not part of the variants' promise. */
static bool same_or_both_nan(float a, float b)
{
    return to_bits(a) == to_bits(b) || (isnan(a) && isnan(b));
}

static uint32_t fbits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* The portable variant's fused multiply-add against the C library's fmaf
 * (exact by definition), bit for bit: sums whose exact value lies just off
 * a float halfway point, where rounding to double and then to float gives
 * the wrong neighbour (a b = 2^-24 - 2^-70 - ... below the halfway point
 * 1 + 3 2^-24 after c = 1 + 2^-23: the double sum is the halfway point
 * itself, which ties to the even 1 + 2^-22), then random triples of every
 * kind of float (normal, subnormal, zero, inf, NaN) and near-cancelling
 * ones. */
START_TEST(portable_fma_is_exact)
{
    float a = 1.0f + 0x1p-23f, b = 0x1p-24f - 0x1p-47f, c = 1.0f + 0x1p-23f;
    ck_assert_uint_eq(fbits(ad__vmath_testing_fma(a, b, c)), fbits(1.0f + 0x1p-23f));
    ck_assert_uint_eq(fbits(ad__vmath_testing_fma(-a, b, -c)), fbits(-1.0f - 0x1p-23f));
    ck_assert_uint_eq(fbits(ad__vmath_testing_fma(a, b, c)), fbits(fmaf(a, b, c)));
    uint64_t st = 0x9e3779b97f4a7c15ull;
    long bad = 0;
    /* AD_VMATH_QUICK (valgrind): a sixteenth of the triples */
    const int N = getenv("AD_VMATH_QUICK") ? 250000 : 4000000;
    for (int i = 0; i < N; i++) {
        float v[3];
        for (int k = 0; k < 3; k++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            uint32_t u = (uint32_t)(st >> 32);
            if (i % 4 == 1 && k == 2) /* c near -a b: cancellation */
                u = fbits(-(v[0] * v[1])) ^ (uint32_t)(st >> 61);
            else if (i % 4 == 2) /* exponents near 0: ordinary sums */
                u = (u & 0x807fffffu) | ((uint32_t)(120 + (st >> 59)) << 23);
            memcpy(&v[k], &u, sizeof u);
        }
        float got = ad__vmath_testing_fma(v[0], v[1], v[2]), want = fmaf(v[0], v[1], v[2]);
        if (isnan(want) ? !isnan(got) : fbits(got) != fbits(want)) {
            if (bad++ < 5)
                fprintf(stderr, "fma(%a, %a, %a): %a, want %a\n", v[0], v[1], v[2], got, want);
        }
    }
    ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(gelu_one_pass)
{
    enum { NMAX = (1 << 16) + 5 };
    static float x[NMAX], P[NMAX], e[NMAX], y[NMAX], d[NMAX], yv[NMAX], dv[NMAX];
    /* AD_VMATH_QUICK (valgrind): a sixteenth of the points */
    const int N = getenv("AD_VMATH_QUICK") ? (1 << 12) + 5 : NMAX;
    for (int i = 0; i < N - 5; i++) x[i] = (float)(-12.0 + 24.0 * (double)i / (N - 6));
    const float odd[5] = {-INFINITY, INFINITY, 0.0f, -0.0f, NAN};
    memcpy(x + N - 5, odd, sizeof odd);
    ck_assert_int_eq(ad__vmath_testing_isa(0), 0);
    ad__vphi_f32(P, x, N);
    for (int i = 0; i < N; i++) e[i] = -0.5f * x[i] * x[i];
    ad__vexp_f32(e, e, N);
    for (int i = 0; i < N; i++) {
        y[i] = x[i] * P[i];
        d[i] = P[i] + x[i] * (float)0.39894228040143267794 * e[i];
    }
    for (int i = 0; i < N - 5; i++) {
        double ref = 0.5 * (double)x[i] * erfc(-(double)x[i] / sqrt(2.0));
        double scale = fabs((double)x[i]) > 1 ? fabs((double)x[i]) : 1.0;
        ck_assert_msg(fabs((double)y[i] - ref) <= 4e-7 * scale, "gelu(%g) = %g, want %g",
                      (double)x[i], (double)y[i], ref);
    }
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__vmath_testing_isa(isa)) continue;
        ad__vgelu_f32(yv, dv, x, N);
        for (int i = 0; i < N; i++) {
            ck_assert_msg(same_or_both_nan(yv[i], y[i]), "isa %d: y at %g", isa, (double)x[i]);
            ck_assert_msg(same_or_both_nan(dv[i], d[i]), "isa %d: d at %g", isa, (double)x[i]);
        }
        memset(yv, 0, sizeof yv);
        ad__vgelu_f32(yv, NULL, x, N);
        for (int i = 0; i < N; i++) ck_assert(same_or_both_nan(yv[i], y[i]));
    }
    ad__vmath_testing_isa(-1);
}
END_TEST

/* AD_VMATH: each name, read again, gives its variant when the CPU has it
 * and the automatic choice otherwise; a variant forced by the tests' hook
 * comes first. */
/* AD_ISA caps every kernel's choice: ad_kernel_isa, the math functions'
 * variant and the matrix kernel follow it, down to the portable code, and
 * never above what the CPU has. */
START_TEST(ad_isa_caps_every_kernel)
{
    const char *was = getenv("AD_ISA"), *was_vm = getenv("AD_VMATH");
    char *saved = was ? strdup(was) : NULL, *saved_vm = was_vm ? strdup(was_vm) : NULL;
    unsetenv("AD_ISA");
    unsetenv("AD_VMATH");
    ad__isa_testing_reread();
    int cpu = (int)ad_kernel_isa(), vm_best = ad__vmath_testing_variant(true);
    ck_assert_str_eq(ad_isa_name(AD_ISA_AVX512), "avx512");
    ck_assert_str_eq(ad_isa_name(AD_ISA_AVX2), "avx2");
    ck_assert_str_eq(ad_isa_name(AD_ISA_PORTABLE), "portable");
    const char *names[] = {"portable", "avx2", "avx512", "AVX2", "scalar", ""};
    /* case aside, an unknown value caps at portable (it once set no cap:
     * AD_ISA=scalar ran the AVX-512 kernels); empty sets none */
    const int cap[] = {0, 1, 2, 1, 0, 2};
    for (int i = 0; i < 6; i++) {
        setenv("AD_ISA", names[i], 1);
        ad__isa_testing_reread();
        int want = cap[i] < cpu ? cap[i] : cpu;
        ck_assert_msg((int)ad_kernel_isa() == want, "AD_ISA=%s: %s, expected %s", names[i],
                      ad_isa_name(ad_kernel_isa()), ad_isa_name((ad_isa)want));
        int vm = ad__vmath_testing_variant(true);
        ck_assert_msg(vm == (want < vm_best ? want : vm_best), "AD_ISA=%s: vmath variant %d",
                      names[i], vm);
        const char *k = ad__gemm_kernel_name(AD_FLOAT32);
        ck_assert_msg(want == 2 ? !strncmp(k, "avx512", 6)
                      : want == 1 ? !strncmp(k, "avx2", 4) || !strncmp(k, "generic", 7)
                                  : !strncmp(k, "generic", 7),
                      "AD_ISA=%s: matrix kernel %s", names[i], k);
    }
    if (saved) setenv("AD_ISA", saved, 1);
    else unsetenv("AD_ISA");
    if (saved_vm) setenv("AD_VMATH", saved_vm, 1);
    ad__isa_testing_reread();
    ad__vmath_testing_variant(true);
    free(saved);
    free(saved_vm);
}
END_TEST

START_TEST(env_picks_the_variant)
{
    ck_assert_int_eq(ad__vmath_isa_named("portable"), 0);
    ck_assert_int_eq(ad__vmath_isa_named("avx2"), 1);
    ck_assert_int_eq(ad__vmath_isa_named("avx512"), 2);
    ck_assert_int_eq(ad__vmath_isa_named("auto"), -1);
    ck_assert_int_eq(ad__vmath_isa_named("AVX2"), -1);
    ck_assert_int_eq(ad__vmath_isa_named(""), -1);
    ck_assert_int_eq(ad__vmath_isa_named(NULL), -1);
    const char *was = getenv("AD_VMATH");
    char *saved = was ? strdup(was) : NULL;
    unsetenv("AD_VMATH");
    int best = ad__vmath_testing_variant(true);
    ck_assert(best >= 0 && best <= 2);
    ck_assert_int_eq(best, ad__vmath_testing_isa(2) == 0 ? 2 : ad__vmath_testing_isa(1) == 0 ? 1 : 0);
    ad__vmath_testing_isa(-1);
    const char *names[] = {"portable", "avx2", "avx512", "bogus", "auto"};
    const int want[] = {0, best >= 1 ? 1 : best, best >= 2 ? 2 : best, best, best};
    for (int i = 0; i < 5; i++) {
        setenv("AD_VMATH", names[i], 1);
        ck_assert_msg(ad__vmath_testing_variant(true) == want[i], "AD_VMATH=%s", names[i]);
    }
    setenv("AD_VMATH", "portable", 1);
    ck_assert_int_eq(ad__vmath_testing_variant(true), 0);
    if (best >= 1) {
        ad__vmath_testing_isa(1); /* the hook over the environment */
        ck_assert_int_eq(ad__vmath_testing_variant(false), 1);
        ad__vmath_testing_isa(-1);
    }
    if (saved)
        setenv("AD_VMATH", saved, 1);
    else
        unsetenv("AD_VMATH");
    int back = ad__vmath_testing_variant(true);
    ck_assert(saved || back == best);
    free(saved);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vmath");
    TCase *tc = tcase_create("float32");
    tcase_set_timeout(tc, 0);
    tcase_add_loop_test(tc, ulp_over_the_whole_range, 0, NFNS);
    tcase_add_test(tc, edge_values);
    tcase_add_loop_test(tc, lengths_and_offsets, 0, NFNS);
    tcase_add_loop_test(tc, streamed_outputs, 0, NFNS);
    tcase_add_loop_test(tc, near_multiples_of_half_pi, 4, 6);
    tcase_add_test(tc, beyond_the_reduction_bound);
    tcase_add_test(tc, log_chunk_paths_agree);
    tcase_add_loop_test(tc, float64_relative_error, 0, 4);
    tcase_add_test(tc, ops_contiguous_and_strided);
    tcase_add_test(tc, phi_fit);
    tcase_add_test(tc, gelu_one_pass);
    tcase_add_test(tc, portable_fma_is_exact);
    tcase_add_test(tc, env_picks_the_variant);
    tcase_add_test(tc, ad_isa_caps_every_kernel);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

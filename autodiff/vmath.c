/* autodiff/vmath.c - exp, log, tanh, sigmoid, sin and cos of float32
 * arrays as polynomials the compiler vectorises (vmath.h states the
 * accuracy).
 *
 * The first four are computed in float (16 elements per AVX-512
 * register), sin and cos in double (8).  The
 * polynomials' coefficients are minimax fits of the relative error
 * (weighted least squares iterated to equal ripple, then rounded to
 * float); their truncation error is given in float ulp (6e-8 to 1.2e-7
 * relative).  Errors below are measured maxima: over all 2^32 inputs
 * where said, else over tests/test_vmath.c's sweep (every 2^9-th bit
 * pattern and 2^16 around each edge).
 *
 *   exp    x = n ln2 + r, |r| <= ln2/2, n = round(x / ln2), ln2 in two
 *          parts so that n ln2_hi is exact and x - n ln2_hi too; e^r =
 *          1 + r + r^2 q(r), q of degree 4 (truncation 0.06 ulp), the small
 *          terms added first; r = (x - n ln2_hi) - n ln2_lo in one fused
 *          rounding, the Horner steps fused.  e^x = e^r 2^h 2^(n-h), h = floor(n/2),
 *          both factors built in the exponent bits and normal, so the
 *          first product is exact and the second rounds once, also into
 *          the subnormals or to inf.  Error: the last addition 0.5 ulp,
 *          r's rounding up to 0.5 (in ulp of e^r < 1; 0.25 above), the
 *          rest below 0.2; 1.014 over all 2^32 inputs (0.99 unfused,
 *          0.973 over the test sweep).  x is clamped to
 *          [-104, 89], where e^x is already 0 or inf in float.
 *   log    x = 2^k m with m in [sqrt(1/2), sqrt 2) (a subnormal x scaled
 *          by 2^23 first), f = m - 1 exact; ln(1+f) = f - f^2/2 +
 *          f^3 q(f), q of degree 7 (truncation 0.1 ulp); ln x = k ln2_hi
 *          (exact) + (f + (k ln2_lo + f^2 (f q - 1/2))), fused where a
 *          product meets a sum.  Error 0.923 ulp over all 2^32 inputs
 *          (0.89 unfused).  0 gives -inf, a negative x NaN, inf inf.
 *   tanh   a = |x|; below 0.625 a + a^3 p(a^2), p of degree 4 (truncation
 *          0.14 ulp), which keeps full relative precision as a -> 0 (tanh
 *          of a subnormal is itself); above, 1 - 2 / (e^(2a) + 1), where
 *          the subtracted part is below 0.45 and its errors count half,
 *          so e^(2a) goes without rl; a clamped to 10 (tanh 10 is 1 in
 *          float); the sign copied back.  Error 1.316 ulp over the sweep
 *          (just above 0.625); 1.332 over all 2^32 inputs.
 *   sigmoid e = e^-|x| in (0, 1] (never overflows; |x| clamped to 104,
 *          where e is 0 in float); sigmoid x = n / d with d = 1 + e and
 *          n = 1 for x >= 0, e below, all scaled by 2^64 so that e 2^64
 *          is normal and needs one factor of 2^n, the division rounding
 *          once into the subnormals (the same bits as two factors, over
 *          all 2^32 inputs, and 15 % faster).  The rounding of d would cost up to
 *          1 ulp of the result, so its error dl = e - (d - 1) is kept
 *          (exact: e <= 1) and the quotient q = n / d corrected:
 *          n / (d + dl) = q - q dl / d, and 1 / d is q (x >= 0) or 1 - q.
 *          Error: e's (damped by e / (1 + e) for x >= 0), the division's
 *          0.5 and the last correction's 0.5; 1.967 over all 2^32 inputs
 *          (at x = -6.2377), 1.872 over the test sweep.  Without dl, 2.23.
 *          Before the reduction and the correction were fused, e^x's r
 *          had to carry its rounding error rl as well (without it, 2.2);
 *          with them, rl no longer changes the maximum.
 *   sin, cos  in double from the float x, rounded to float once: x = n
 *          pi/2 + r, |r| <= pi/4, n = round(x 2/pi), pi/2 in three parts
 *          of 29, 29 and 53 bits (Cody and Waite), so that for |x| <= 2^24
 *          (|n| < 2^24) n times each of the first two is exact, and so is
 *          x - n pi/2_1; r then carries a relative error near 2^-52 even
 *          at the floats nearest to multiples of pi/2, where it is
 *          smallest.  sin r = r (1 + r^2 p(r^2)), p of degree 3, and
 *          cos r = 1 - r^2/2 + r^4 c(r^2), c of degree 2 (relative
 *          truncation 5e-12 and 1.2e-10); the quadrant n (plus 1 for cos)
 *          picks sin or cos and the sign.  Error 0.502 ulp measured (the
 *          rounding to float).  Up to |x| = 256 all in float instead (16
 *          lanes, not 8): n < 2^8, pi/2 in parts of 11, 15 and 24 bits,
 *          n times the first two exact, r = rh + rl kept as a pair
 *          through two fast two-sums (absolute error near 2^-52, against an
 *          |r| no smaller than about 2^-24 for a float below 256);
 *          sin r = rh + (rl + rh r^2 p(r^2)) and cos r = 1 - r^2/2 +
 *          r^4 c(r^2) - rh rl, Taylor to r^9 and r^10 (truncation below
 *          0.05 ulp at pi/4), 1 - r^2/2 with its rounding error kept.
 *          Error 0.818 ulp (sin) and 0.798 (cos) over the test sweep; the
 *          maxima over every float up to 256, 0.852 and 0.835, and how
 *          they were measured are in docs/benchmarks.md.
 *          A chunk of 512 with all elements up to 256 runs the float loop;
 *          one with larger elements picks per element, so that the result
 *          of an element still depends on its value alone.  Beyond 2^24,
 *          and for inf and NaN, the C library's double sin and cos,
 *          rounded: the kernel scans each chunk of 512 for such elements
 *          first, so that the common chunk is one vectorised loop.
 *
 * NaN passes through every step (the clamps are written so that a NaN
 * compares false and is kept), and no step converts a NaN to an integer:
 * n comes from adding 1.5 * 2^52 (float: 1.5 * 2^23), which rounds x / ln2
 * to an integer in the low bits of the sum.
 *
 * The variants.  The loops (vmath_kernels.inc) are compiled three times:
 * for the baseline target, and with target attributes for AVX2 + FMA and
 * AVX-512 + FMA; the first call picks what the CPU runs, so the library
 * runs on any x86-64.  The fused multiply-adds are written out, FMA(a, b,
 * c) = fmaf(a, b, c), which C defines as a b + c rounded once: one
 * vfmadd in the AVX2 and AVX-512 variants, the C library's exact software
 * fmaf (a call per element, no vectorising) in the portable one, so the
 * same value in each.  No variant may fuse any other multiply and add
 * (the fused and the unfused round differently): the build is ISO C
 * (-std=c11), in which GCC does not contract (checked below), and clang,
 * which contracts by default, is told not to.  So every variant gives
 * the same bits, which tests/test_vmath.c checks.  Which NaN an fmaf
 * returns when two operands are NaN is the machine's choice, so no fmaf
 * here negates an operand that may be NaN (a negated constant instead):
 * the NaN operands are then the same NaN. */
#include "vmath.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
/* GNU C mode (-std=gnu11, a user's own flags) contracts a * b + c into an
 * FMA in the FMA variants only, and the variants would differ (the head
 * says why); ISO C mode does not contract, and this makes a GNU C build
 * give the same code as -std=c11 (checked: identical object code). */
#pragma GCC optimize("fp-contract=off")
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define VMATH_X86 1
#else
#define VMATH_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VM_INLINE inline __attribute__((always_inline))
#else
#define VM_INLINE inline
#endif

#define LOG2E 1.4426950408889634074  /* 1 / ln 2 */

/* a b + c rounded once (C99's fmaf): one instruction in the AVX2 and
 * AVX-512 variants, the C library's exact software routine in the
 * portable one, the same value in both. */
#define FMA(a, b, c) fmaf(a, b, c)

static VM_INLINE uint64_t bits_of(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static VM_INLINE double double_of(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static VM_INLINE uint32_t bits_of_f(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static VM_INLINE float float_of(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

#define SHIFT_F 0x1.8p23f
#define LN2_HI_F 0x1.62e4p-1f        /* ln 2 to 15 bits: n LN2_HI_F is exact */
#define LN2_LO_F 0x1.7f7d1cp-20f     /* ln 2 - LN2_HI_F */

/* e^x = e 2^n for x in [-104, 89] or NaN: returns e = e^r in [0.70, 1.42]
 * and sets *t, whose low bits hold n + 2^22 (the head of the file has the
 * error budget). */
static VM_INLINE float exp_reduce(float x, float *t)
{
    *t = FMA(x, (float)LOG2E, SHIFT_F);
    float n = *t - SHIFT_F;
    /* r = x - n ln2 rounded once: x - n ln2_hi is exact. */
    float r = FMA(n, -LN2_LO_F, FMA(n, -LN2_HI_F, x));
    float q = 0x1.6a244cp-10f;
    q = FMA(q, r, 0x1.1239d4p-7f);
    q = FMA(q, r, 0x1.5558f2p-5f);
    q = FMA(q, r, 0x1.555492p-3f);
    q = FMA(q, r, 0x1.fffffcp-2f);
    /* e^r = 1 + r + r^2 q, the small terms first. */
    return 1.0f + FMA(r * r, q, r);
}

/* e 2^n from exp_reduce's e and t.  2^n = 2^h 2^(n-h), h = floor(n/2):
 * both normal for n in [-150, 128], so e 2^h is exact and the second
 * product rounds once, also to a subnormal or to inf.  All in unsigned
 * arithmetic (a NaN's bits are then harmless garbage). */
static VM_INLINE float exp_scale(float e, float t)
{
    uint32_t nb = bits_of_f(t) - 0x4b400000u + 256u; /* n + 256 >= 0 */
    uint32_t h = (nb >> 1) - 128u;                   /* floor(n/2) */
    float s1 = float_of((h + 127u) << 23), s2 = float_of((nb - 256u - h + 127u) << 23);
    return e * s1 * s2;
}

/* e^x in float arithmetic. */
static VM_INLINE float vm_expf(float x)
{
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    float t, e = exp_reduce(x, &t);
    return exp_scale(e, t);
}

#define SQRT1_2_BITS_F 0x3f3504f3u /* sqrt(1/2) in float */

/* ln(v 2^-23) if sub is all ones, else ln v, for a normal positive finite
 * v (the head of the file has the method). */
static VM_INLINE float log_core(float v, uint32_t sub)
{
    /* Move the exponent so that the mantissa lands in [sqrt(1/2), sqrt 2):
     * k = exponent of v / sqrt(1/2), rounded down. */
    uint32_t u = bits_of_f(v) + (0x3f800000u - SQRT1_2_BITS_F);
    float k = (float)((int32_t)(u >> 23) - 127 - (int32_t)(sub & 23u));
    float f = float_of((u & 0x007fffffu) + SQRT1_2_BITS_F) - 1.0f; /* exact */
    float z = f * f;
    float q = -0x1.38b576p-4f;
    q = FMA(q, f, 0x1.055b68p-3f);
    q = FMA(q, f, -0x1.0d8542p-3f);
    q = FMA(q, f, 0x1.22da1ep-3f);
    q = FMA(q, f, -0x1.547244p-3f);
    q = FMA(q, f, 0x1.99a008p-3f);
    q = FMA(q, f, -0x1.000226p-2f);
    q = FMA(q, f, 0x1.555554p-2f);
    /* ln(1+f) = f - f^2/2 + f^3 q = f + f^2 (f q - 1/2); the small parts
     * first, f and k ln2_hi (an exact product) last. */
    return FMA(k, LN2_HI_F, FMA(k, LN2_LO_F, z * FMA(f, q, -0.5f)) + f);
}

/* ln x in float arithmetic. */
static VM_INLINE float vm_logf(float x)
{
    /* The main path runs on every element (a vector computes all lanes);
     * an element outside (0, inf) takes it with 1 and then its own value.
     * A subnormal is scaled by 2^23 into the normal range first. */
    float v = x > 0.0f && x < INFINITY ? x : 1.0f;
    /* In integer bits, not as a select of two values: given a select,
     * the compiler runs everything after it twice. */
    uint32_t sub = 0u - (uint32_t)(v < 0x1p-126f); /* all ones or 0 */
    v = v * float_of(0x3f800000u + (sub & (23u << 23))); /* 2^23 or 1 */
    float y = log_core(v, sub);
    float special = x == 0.0f ? -INFINITY : x < 0.0f ? NAN : x; /* inf and NaN are themselves */
    return x > 0.0f && x < INFINITY ? y : special;
}

/* ln x for a normal positive finite x: vm_logf's value (its scaling is by
 * 1 and its selects keep y), without the steps for the other inputs. */
static VM_INLINE float vm_logf_normal(float x) { return log_core(x, 0u); }

/* tanh in float: an odd polynomial below 0.625, 1 - 2 / (e^(2a) + 1)
 * above, the sign copied back. */
static VM_INLINE float vm_tanhf(float x)
{
    float a = fabsf(x);
    float z = a * a;
    float p = -0x1.75e1cep-8f;
    p = FMA(p, z, 0x1.52269cp-6f);
    p = FMA(p, z, -0x1.b83c5ap-5f);
    p = FMA(p, z, 0x1.110726p-3f);
    p = FMA(p, z, -0x1.555532p-2f);
    float small = FMA(a, z * p, a);
    /* e^(2a) for 2a in [0, 20] (tanh 10 is 1 in float): n in [0, 29], so
     * 2^n is one normal factor. */
    float t, e = exp_reduce(2.0f * (a > 10.0f ? 10.0f : a), &t);
    e = e * float_of((bits_of_f(t) - 0x4b400000u + 127u) << 23);
    float big = 1.0f - 2.0f / (e + 1.0f);
    return copysignf(a < 0.625f ? small : big, x);
}

/* sigmoid in float: e = e^-|x| in (0, 1] never overflows, and
 * sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below. */
static VM_INLINE float vm_sigmoidf(float x)
{
    float m = -fabsf(x);
    float t, e = exp_reduce(m < -104.0f ? -104.0f : m, &t); /* e^-104 is 0 in float */
    /* Everything scaled by 2^64: e 2^64 = e^r 2^(n+64) is normal for n >=
     * -150 and exact with one factor, and the division rounds once, also
     * into the subnormals, where the result is e^x itself. */
    e = e * float_of((bits_of_f(t) - 0x4b400000u + 127u + 64u) << 23);
    float d = 0x1p64f + e, dl = e - (d - 0x1p64f); /* 2^64 + e = d + dl exactly */
    /* The numerator, 1 or e, chosen in integer bits: given a select, the
     * compiler divides both and selects the quotient. */
    uint32_t pos = 0u - (uint32_t)(x >= 0.0f);
    float q = float_of((bits_of_f(e) & ~pos) | (0x5f800000u & pos)) / d;
    /* n / (d + dl) = q - q dl / d, and 2^64 / d is q or 1 - q. */
    return FMA(q, (dl * -0x1p-64f) * (x >= 0.0f ? q : 1.0f - q), q);
}

/* Phi(x), the standard normal distribution function, in float (GELU's
 * factor): erfc from the Chebyshev fit of Numerical Recipes' erfcc
 * (relative error below 1.2e-7 in exact arithmetic),
 *     erfc(z) = u e^(-z^2 + P(u)),  u = 1/(1 + z/2),  z = |x|/sqrt 2,
 * and Phi(x) = erfc(z)/2 for x < 0, 1 - erfc(z)/2 else; erfc keeps full
 * relative precision in the left tail, where 1 + erf would cancel.  The
 * operations and their order are those of the scalar loop it replaced in
 * ops_pointwise.c, so the results are the same bits. */
static VM_INLINE float vm_phif(float x)
{
    float z = fabsf(x) * 0.70710678118654752440f, u = 1.0f / (1.0f + 0.5f * z);
    float q = -0.82215223f + u * 0.17087277f;
    q = 1.48851587f + u * q;
    q = -1.13520398f + u * q;
    q = 0.27886807f + u * q;
    q = -0.18628806f + u * q;
    q = 0.09678418f + u * q;
    q = 0.37409196f + u * q;
    q = 1.00002368f + u * q;
    float r = 0.5f * u * vm_expf(-z * z - 1.26551223f + u * q); /* erfc(z) / 2 */
    return x < 0 ? r : 1.0f - r;
}

#define SHIFT 0x1.8p52 /* x + SHIFT rounds x to an integer */
#define TWO_OVER_PI 0x1.45f306dc9c883p-1
#define PIO2_1 0x1.921fb54p+0             /* pi/2 to 29 bits: n PIO2_1 exact */
#define PIO2_2 0x1.10b4611p-30            /* the next 29 bits */
#define PIO2_3 0x1.4c4c6628b80dcp-59      /* the rest, to 53 bits */
#define SINCOS_BOUND_BITS 0x4b800000u     /* 2^24: |x| above it goes to libm */

/* sin x (quadrant 0) or cos x (quadrant 1, since cos x = sin(x + pi/2)) in
 * double for |x| <= 2^24 (the head of the file has the method). */
static VM_INLINE float vm_sincosf(float xf, uint64_t quadrant)
{
    double x = (double)xf;
    double t = x * TWO_OVER_PI + SHIFT;
    double n = t - SHIFT;
    double r = ((x - n * PIO2_1) - n * PIO2_2) - n * PIO2_3;
    uint64_t q = bits_of(t) + quadrant; /* n + quadrant in the low bits */
    double z = r * r;
    double ps = 0x1.6cd1f2bfa75f2p-19; /* sin r = r (1 + r^2 ps(r^2)) */
    ps = -0x1.a00f7f2916aaap-13 + z * ps;
    ps = 0x1.1111086a61e8ep-7 + z * ps;
    ps = -0x1.5555554c71d26p-3 + z * ps;
    double pc = 0x1.99eb9c33749e5p-16; /* cos r = 1 - r^2/2 + r^4 pc(r^2) */
    pc = -0x1.6c0c33a7bfd7ap-10 + z * pc;
    pc = 0x1.55554a115aa05p-5 + z * pc;
    double sr = r * (1.0 + z * ps), cr = (1.0 - 0.5 * z) + (z * z) * pc; /* sr keeps -0 */
    /* Quadrant q: sin, cos, -sin, -cos of r. */
    double v = (q & 1) ? cr : sr;
    return (float)double_of(bits_of(v) ^ ((q & 2) << 62));
}

/* sin x or cos x in float for |x| <= 256 (the head of the file has the
 * method): n < 2^8, so n PIO2_1F (11 bits) and n PIO2_2F (15 bits) are
 * exact; r = rh + rl to about 2^-52 absolutely, the error left in pi/2's
 * parts and in n PIO2_3F's rounding. */
#define TWO_OVER_PI_F 0x1.45f306p-1f
#define PIO2_1F 0x1.922p+0f
#define PIO2_2F -0x1.2aeep-18f
#define PIO2_3F -0x1.e973dcp-35f
#define SINCOS_SMALL_BITS 0x43800000u /* 256: |x| up to it takes the float path */

static VM_INLINE float vm_sincosf_small(float x, uint32_t quadrant)
{
    float t = FMA(x, TWO_OVER_PI_F, SHIFT_F);
    float n = t - SHIFT_F;
    float r1 = FMA(n, -PIO2_1F, x), p2 = n * PIO2_2F; /* both exact */
    /* r1 - p2 = r2 + e2 exactly, then r2 + (e2 - n PIO2_3F) = rh + rl
     * the same way, each by Dekker's fast two-sum (3 operations, not
     * Knuth's 6): exact when the first term is not the smaller in
     * magnitude, or when the sum is exact.  For r1 - p2 one of the two
     * holds: where |r1| < |p2| < 2^-10, r1 is a multiple of 2^-24 and p2
     * of 2^-32, so r1 - p2 fits in 23 bits. */
    float r2 = r1 - p2;
    float e2 = (r1 - r2) - p2;
    float s = FMA(n, -PIO2_3F, e2);
    float rh = r2 + s;
    float rl = s - (rh - r2);
    uint32_t q = bits_of_f(t) + quadrant; /* n + quadrant in the low bits */
    float z = rh * rh;
    float ps = 0x1.71de3ap-19f; /* sin r = r + r^3 ps(r^2), Taylor to r^9 */
    ps = FMA(ps, z, -0x1.a01a02p-13f);
    ps = FMA(ps, z, 0x1.111112p-7f);
    ps = FMA(ps, z, -0x1.555556p-3f);
    float pc = -0x1.27e4fcp-22f; /* cos r = 1 - r^2/2 + r^4 pc(r^2), to r^10 */
    pc = FMA(pc, z, 0x1.a01a02p-16f);
    pc = FMA(pc, z, -0x1.6c16c2p-10f);
    pc = FMA(pc, z, 0x1.555556p-5f);
    /* sin(rh + rl) = sin rh + rl cos rh, cos(rh + rl) = cos rh - rl sin rh,
     * to first order in rl; 1 - z/2 = w + wl exactly (1 - w is exact, and
     * so then is the fused wl). */
    float sr = rh + FMA(rh, z * ps, rl);
    float w = FMA(z, -0.5f, 1.0f), wl = FMA(z, -0.5f, 1.0f - w);
    float cr = w + FMA(-rh, rl, FMA(z * z, pc, wl));
    float v = (q & 1) ? cr : sr;
    v = float_of(bits_of_f(v) ^ ((q & 2) << 30));
    /* sin(-0) is -0 (r2 lost the sign: -0 - -0 is +0). */
    return x == 0.0f && !(quadrant & 1) ? x : v;
}

/* ---- float64 -------------------------------------------------------------
 * The same methods in double, with longer polynomials (Taylor: every
 * coefficient 1/k! or 1/(2k+1), rounded to double).  Accuracy, relative to
 * the exact value for normal results (tests/test_vmath.c against long
 * double): within 1e-15, about 4.5 double ulp (subnormal results: within
 * 1 ulp of 2^-1074, as no relative bound can hold there). */
#define LN2_HI 0x1.62e42fefa38p-1        /* ln 2 to 42 bits: n LN2_HI exact */
#define LN2_LO 0x1.ef35793c76730p-45     /* ln 2 - LN2_HI */

/* e^x = e 2^n for x in [-746, 710] or NaN: returns e = e^r - 1 (so that
 * expm1 keeps its relative precision) and sets *t, whose low bits hold n.
 * r as for float (rl kept); e^r - 1 = r + r^2 q(r) + rl (1 + r), q to
 * r^11/13! (truncation 4e-18). */
static VM_INLINE double expm1_reduce(double x, double *t)
{
    *t = x * LOG2E + SHIFT;
    double n = *t - SHIFT;
    double xh = x - n * LN2_HI, nl = n * LN2_LO;
    double r = xh - nl, rl = (xh - r) - nl;
    double q = 1.0 / 6227020800;
    q = 1.0 / 479001600 + r * q;
    q = 1.0 / 39916800 + r * q;
    q = 1.0 / 3628800 + r * q;
    q = 1.0 / 362880 + r * q;
    q = 1.0 / 40320 + r * q;
    q = 1.0 / 5040 + r * q;
    q = 1.0 / 720 + r * q;
    q = 1.0 / 120 + r * q;
    q = 1.0 / 24 + r * q;
    q = 1.0 / 6 + r * q;
    q = 0.5 + r * q;
    return r + (r * r * q + (rl + rl * r));
}

/* (1 + m) 2^n, 2^n in two normal factors as for float (n in [-1075,
 * 1024]). */
static VM_INLINE double exp_scale_d(double m, double t)
{
    uint64_t nb = bits_of(t) - 0x4338000000000000ull + 2048u; /* n + 2048 >= 0 */
    uint64_t h = (nb >> 1) - 1024u;                          /* floor(n/2) */
    double s1 = double_of((h + 1023u) << 52), s2 = double_of((nb - 2048u - h + 1023u) << 52);
    return (1.0 + m) * s1 * s2;
}

static VM_INLINE double vm_exp(double x)
{
    x = x < -746.0 ? -746.0 : x;
    x = x > 710.0 ? 710.0 : x;
    double t, m = expm1_reduce(x, &t);
    return exp_scale_d(m, t);
}

#define SQRT1_2_BITS 0x3fe6a09e667f3bcdull /* sqrt(1/2) */

/* ln x: x = 2^k m, m in [sqrt(1/2), sqrt 2), f = m - 1 exact; ln m =
 * 2 atanh(s), s = f / (2 + f), |s| <= 0.172: 2s + 2s z R(z), z = s^2, R to
 * z^10/21 (truncation 6e-19); ln x = k ln2_hi + (2s + (2s z R + k ln2_lo)). */
static VM_INLINE double vm_log(double x)
{
    double v = x > 0.0 && x < INFINITY ? x : 1.0;
    uint64_t sub = 0u - (uint64_t)(v < 0x1p-1022); /* scaled by 2^54 (integer select, as for float) */
    v = v * double_of(0x3ff0000000000000ull + (sub & (54ull << 52)));
    uint64_t u = bits_of(v) + (0x3ff0000000000000ull - SQRT1_2_BITS);
    /* k through the mantissa of 2^52 (no int64-to-double vector
     * conversion before AVX-512DQ). */
    double k = double_of((u >> 52) | 0x4330000000000000ull) - (0x1p52 + 1023.0) -
               (double)(int)(sub & 54u);
    double f = double_of((u & 0x000fffffffffffffull) + SQRT1_2_BITS) - 1.0;
    double s = f / (2.0 + f), z = s * s;
    double p = 1.0 / 21;
    p = 1.0 / 19 + z * p;
    p = 1.0 / 17 + z * p;
    p = 1.0 / 15 + z * p;
    p = 1.0 / 13 + z * p;
    p = 1.0 / 11 + z * p;
    p = 1.0 / 9 + z * p;
    p = 1.0 / 7 + z * p;
    p = 1.0 / 5 + z * p;
    p = 1.0 / 3 + z * p;
    double s2 = 2.0 * s;
    double y = k * LN2_HI + (s2 + (s2 * z * p + k * LN2_LO));
    double special = x == 0.0 ? -INFINITY : x < 0.0 ? NAN : x;
    return x > 0.0 && x < INFINITY ? y : special;
}

/* tanh a = u / (u + 2), u = e^(2a) - 1 = (2^n - 1) + 2^n (e^r - 1), which
 * keeps full relative precision as a -> 0; a clamped to 20 (tanh 20 is 1
 * in double). */
static VM_INLINE double vm_tanh(double x)
{
    double a = fabs(x);
    double t, m = expm1_reduce(2.0 * (a > 20.0 ? 20.0 : a), &t);
    double s = double_of((bits_of(t) - 0x4338000000000000ull + 1023u) << 52); /* 2^n, n in [0, 58] */
    double u = (s - 1.0) + s * m;
    return copysign(u / (u + 2.0), x);
}

/* sigmoid: e = e^-|x|, 1 / (1 + e) for x >= 0, e / (1 + e) below. */
static VM_INLINE double vm_sigmoid(double x)
{
    double m = -fabs(x);
    double t, e = expm1_reduce(m < -746.0 ? -746.0 : m, &t);
    e = exp_scale_d(e, t);
    uint64_t pos = 0u - (uint64_t)(x >= 0.0); /* integer select, as for float */
    return double_of((bits_of(e) & ~pos) | (0x3ff0000000000000ull & pos)) / (1.0 + e);
}

/* The portable loops, and the AVX2 and AVX-512 ones. */
#define VTARGET
#define VSFX(name) name##_any
#include "vmath_kernels.inc"
#undef VTARGET
#undef VSFX
#if VMATH_X86
#define VTARGET __attribute__((target("avx2,fma")))
#define VSFX(name) name##_avx2
#include "vmath_kernels.inc"
#undef VTARGET
#undef VSFX
#define VTARGET __attribute__((target("avx512f,fma")))
#define VSFX(name) name##_avx512
#include "vmath_kernels.inc"
#undef VTARGET
#undef VSFX
#endif

enum { ISA_ANY, ISA_AVX2, ISA_AVX512, ISA_AUTO = -1 };

static bool cpu_can(int isa)
{
#if VMATH_X86
    if (isa == ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ISA_AVX512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    return isa == ISA_ANY;
}

static int forced = ISA_AUTO;

int ad__vmath_testing_isa(int isa)
{
    if (isa != ISA_AUTO && !cpu_can(isa)) return -1;
    forced = isa;
    return 0;
}

#if VMATH_X86
/* The variant to run: the forced one, else the widest the CPU has (asked
 * each call: __builtin_cpu_supports reads a word the loader filled in).
 * Elsewhere (other CPUs, WebAssembly) there is only the portable one. */
static int pick(void)
{
    if (forced != ISA_AUTO) return forced;
    return cpu_can(ISA_AVX512) ? ISA_AVX512 : cpu_can(ISA_AVX2) ? ISA_AVX2 : ISA_ANY;
}

#define DISPATCH(name, y, x, n)                                   \
    switch (pick()) {                                             \
    case ISA_AVX512: name##_avx512(y, x, n); break;               \
    case ISA_AVX2: name##_avx2(y, x, n); break;                   \
    default: name##_any(y, x, n); break;                          \
    }
#else
#define DISPATCH(name, y, x, n) name##_any(y, x, n);
#endif

void ad__vexp_f32(float *y, const float *x, int64_t n) { DISPATCH(exp, y, x, n) }
void ad__vlog_f32(float *y, const float *x, int64_t n) { DISPATCH(log, y, x, n) }
void ad__vtanh_f32(float *y, const float *x, int64_t n) { DISPATCH(tanh, y, x, n) }
void ad__vsigmoid_f32(float *y, const float *x, int64_t n) { DISPATCH(sigmoid, y, x, n) }
void ad__vphi_f32(float *y, const float *x, int64_t n) { DISPATCH(phi, y, x, n) }
void ad__vgelu_f32(float *y, float *d, const float *x, int64_t n)
{
#if VMATH_X86
    switch (pick()) {
    case ISA_AVX512: gelu_avx512(y, d, x, n); break;
    case ISA_AVX2: gelu_avx2(y, d, x, n); break;
    default: gelu_any(y, d, x, n); break;
    }
#else
    gelu_any(y, d, x, n);
#endif
}
void ad__vsin_f32(float *y, const float *x, int64_t n) { DISPATCH(sin, y, x, n) }
void ad__vcos_f32(float *y, const float *x, int64_t n) { DISPATCH(cos, y, x, n) }
void ad__vexp_f64(double *y, const double *x, int64_t n) { DISPATCH(exp_d, y, x, n) }
void ad__vlog_f64(double *y, const double *x, int64_t n) { DISPATCH(log_d, y, x, n) }
void ad__vtanh_f64(double *y, const double *x, int64_t n) { DISPATCH(tanh_d, y, x, n) }
void ad__vsigmoid_f64(double *y, const double *x, int64_t n) { DISPATCH(sigmoid_d, y, x, n) }

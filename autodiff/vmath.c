/* autodiff/vmath.c - exp, log, tanh and sigmoid of float32 arrays as
 * polynomials the compiler vectorises (vmath.h states the accuracy).
 *
 * exp is computed in float (16 elements per AVX-512 register), the others
 * in double from each element's float, rounded to float once.
 *
 *   exp    x = n ln2 + r, |r| <= ln2/2, n = round(x / ln2), ln2 in two
 *          parts so that n ln2_hi is exact and x - n ln2_hi too; e^r by
 *          its Taylor series to r^7 (truncation 6e-9 relative) in Horner
 *          form; e^x = e^r 2^h 2^(n-h), h = floor(n/2), both factors
 *          built in the exponent bits and normal, so the first product is
 *          exact and the second rounds once, also into the subnormals or
 *          to inf.  The error budget in ulp of the result: r's rounding
 *          0.25, the Horner steps 0.45, the last addition 0.5, truncation
 *          0.1: 1.3 at most; measured 1.22 over all 2^32 inputs (at
 *          x = 59.2652245), 1.13 over tests/test_vmath.c's sweep.  x is
 *          clamped to [-104, 89], where e^x is already 0 or inf in float.
 *
 * For the others the double computation is accurate to about 2e-8
 * relative or better (a float ulp is 6e-8 to 1.2e-7 relative), so the
 * rounding to float makes the result the correctly rounded one except
 * near a midpoint between two floats, where it may be the neighbour: at
 * most 1 ulp (0.73 measured).  That margin buys short polynomials, no
 * tables and no special cases for subnormal inputs or results: a float's
 * subnormals are normal doubles, and a double result below float's range
 * rounds to the right subnormal or zero.  Working in double halves the
 * elements per vector, and these three run at about 0.4 of memcpy's
 * bandwidth on long arrays (exp in float: 0.85); a float algorithm for
 * them needs more care to stay within 2 ulp (a division after an
 * inexact exp).
 *
 *   e^r-1  (tanh, sigmoid) in double: r as for exp (n ln2 rounded once,
 *          an error below 2e-14 for |n| <= 217); e^r - 1 by its Taylor
 *          series to r^7 (error r^8/8! < 6e-9 of e^r, 1.6e-8 of
 *          e^r - 1); e^x = 2^n + 2^n (e^r - 1), 2^n built in the
 *          exponent bits.
 *   log    x = 2^k m with m in [sqrt(1/2), sqrt 2); ln m = 2 atanh(s) with
 *          s = (m-1)/(m+1), |s| <= 0.172: 2s (1 + s^2/3 + ... + s^10/11),
 *          error < 1e-10 relative; ln x = k ln2 + ln m.  0 gives -inf, a
 *          negative x NaN, inf inf.
 *   tanh   |x| clamped to 20 (tanh 20 = 1 - 8e-18 is 1 in float);
 *          tanh a = u / (u + 2) with u = e^(2a) - 1 from the expm1 form
 *          2^n - 1 + 2^n (e^r - 1), which keeps full relative precision as
 *          a -> 0 (tanh of a subnormal is itself); the sign copied back.
 *   sigmoid 1 / (1 + e^-x) with x clamped to [-120, 120]: e^-x stays
 *          finite in double, and sigmoid(-120) = 8e-53 is 0 in float.
 *
 * NaN passes through every step (the clamps are written so that a NaN
 * compares false and is kept), and no step converts a NaN to an integer:
 * n comes from adding 1.5 * 2^52 (float: 1.5 * 2^23), which rounds x / ln2
 * to an integer in the low bits of the sum.
 *
 * The variants.  The loops (vmath_kernels.inc) are compiled three times:
 * for the baseline target, and with target attributes for AVX2 and
 * AVX-512; the first call picks what the CPU runs, so the library runs on
 * any x86-64.  No variant may fuse a multiply and an add (each would
 * round differently): the build is ISO C (-std=c11), in which GCC does
 * not contract, and clang is told below.  So every variant gives the same
 * bits, which tests/test_vmath.c checks. */
#include "vmath.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
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

#define SHIFT 0x1.8p52               /* x + SHIFT rounds x to an integer */
#define LOG2E 1.4426950408889634074  /* 1 / ln 2 */
#define LN2 0.69314718055994530942
#define SQRT1_2_BITS 0x3fe6a09e667f3bcdull /* sqrt(1/2) */

/* e^r - 1 for |r| <= ln2/2: Taylor to r^7. */
static VM_INLINE double expm1_poly(double r)
{
    double p = 1.0 / 5040;
    p = 1.0 / 720 + r * p;
    p = 1.0 / 120 + r * p;
    p = 1.0 / 24 + r * p;
    p = 1.0 / 6 + r * p;
    p = 0.5 + r * p;
    p = 1.0 + r * p;
    return r * p;
}

/* For x in [-150, 128] (or NaN): 2^n in *s and e^r - 1 in the result,
 * e^x = *s + *s * result (double: tanh and sigmoid). */
static VM_INLINE double exp_split(double x, double *s)
{
    double t = x * LOG2E + SHIFT;
    double n = t - SHIFT;
    double r = x - n * LN2;
    /* The low bits of t hold n (two's complement); n + 1023 in [1, 2046]
     * is the biased exponent of 2^n.  The shift drops t's own exponent. */
    *s = double_of((bits_of(t) + 1023u) << 52);
    return expm1_poly(r);
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

/* e^x in float arithmetic (the head of the file has the error budget). */
static VM_INLINE float vm_expf(float x)
{
    x = x < -104.0f ? -104.0f : x;
    x = x > 89.0f ? 89.0f : x;
    float t = x * (float)LOG2E + SHIFT_F;
    float n = t - SHIFT_F;
    float r = (x - n * LN2_HI_F) - n * LN2_LO_F;
    float p = 1.0f / 5040;
    p = 1.0f / 720 + r * p;
    p = 1.0f / 120 + r * p;
    p = 1.0f / 24 + r * p;
    p = 1.0f / 6 + r * p;
    p = 0.5f + r * p;
    p = 1.0f + r * p;
    float e = 1.0f + r * p; /* e^r, in [0.70, 1.42] */
    /* 2^n = 2^h 2^(n-h), h = floor(n/2): both normal for n in [-150,
     * 128], so e 2^h is exact and the second product rounds once, also
     * to a subnormal or to inf.  The low bits of t hold n + 2^22; all in
     * unsigned arithmetic (a NaN's bits are then harmless garbage). */
    uint32_t nb = bits_of_f(t) - 0x4b400000u + 256u; /* n + 256 >= 0 */
    uint32_t h = (nb >> 1) - 128u;                   /* floor(n/2) */
    float s1 = float_of((h + 127u) << 23), s2 = float_of((nb - 256u - h + 127u) << 23);
    return e * s1 * s2;
}

static VM_INLINE double vm_log(double x)
{
    /* The main path runs on every element (a vector computes all lanes);
     * an element outside (0, inf) takes it with 1 and then its own value. */
    double v = x > 0.0 && x < INFINITY ? x : 1.0;
    /* Move the exponent so that the mantissa lands in [sqrt(1/2), sqrt 2):
     * k = exponent of v / sqrt(1/2), rounded down, converted to double
     * through the mantissa of 2^52 (an int64-to-double conversion has no
     * vector instruction before AVX-512DQ). */
    uint64_t u = bits_of(v) + (0x3ff0000000000000ull - SQRT1_2_BITS);
    double k = double_of((u >> 52) | 0x4330000000000000ull) - (0x1p52 + 1023.0);
    double m = double_of((u & 0x000fffffffffffffull) + SQRT1_2_BITS);
    double f = m - 1.0; /* exact: m is within a factor 2 of 1 */
    double s = f / (2.0 + f), z = s * s;
    double p = 1.0 / 11;
    p = 1.0 / 9 + z * p;
    p = 1.0 / 7 + z * p;
    p = 1.0 / 5 + z * p;
    p = 1.0 / 3 + z * p;
    p = 1.0 + z * p;
    double y = k * LN2 + 2.0 * s * p;
    double special = x == 0.0 ? -INFINITY : x < 0.0 ? NAN : x; /* inf and NaN are themselves */
    return x > 0.0 && x < INFINITY ? y : special;
}

static VM_INLINE double vm_tanh(double x)
{
    double a = fabs(x);
    a = a > 20.0 ? 20.0 : a;
    double s, q = exp_split(2.0 * a, &s);
    double u = (s - 1.0) + s * q; /* e^(2a) - 1 */
    return copysign(u / (u + 2.0), x);
}

static VM_INLINE double vm_sigmoid(double x)
{
    x = x < -120.0 ? -120.0 : x;
    x = x > 120.0 ? 120.0 : x;
    double s, q = exp_split(-x, &s);
    return 1.0 / (1.0 + (s + s * q));
}

/* The portable loops, and the AVX2 and AVX-512 ones. */
#define VTARGET
#define VSFX(name) name##_any
#include "vmath_kernels.inc"
#undef VTARGET
#undef VSFX
#if VMATH_X86
#define VTARGET __attribute__((target("avx2")))
#define VSFX(name) name##_avx2
#include "vmath_kernels.inc"
#undef VTARGET
#undef VSFX
#define VTARGET __attribute__((target("avx512f")))
#define VSFX(name) name##_avx512
#include "vmath_kernels.inc"
#undef VTARGET
#undef VSFX
#endif

enum { ISA_ANY, ISA_AVX2, ISA_AVX512, ISA_AUTO = -1 };

static bool cpu_can(int isa)
{
#if VMATH_X86
    if (isa == ISA_AVX2) return __builtin_cpu_supports("avx2");
    if (isa == ISA_AVX512) return __builtin_cpu_supports("avx512f");
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

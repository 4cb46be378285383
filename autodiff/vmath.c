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
 *          rounding, q evaluated in pairs (Estrin's scheme; below).  e^x
 *          = e^r 2^h 2^(n-h), h = floor(n/2), both factors built in the
 *          exponent bits and normal, so the first product is exact (and
 *          fused with e^r's last addition, 2^h (e^r - 1) + 2^h: the same
 *          bits over all 2^32 inputs, 6 % faster; sigmoid likewise, 7 %)
 *          and the second rounds once, also into the subnormals or to
 *          inf.  Error: the last addition 0.5 ulp, r's rounding up to 0.5
 *          (in ulp of e^r < 1; 0.25 above), the rest below 0.2; 1.019
 *          over all 2^32 inputs (1.014 with q by Horner's rule, 0.99
 *          unfused; 0.998 over the test sweep).  x is
 *          clamped to [-104, 89], where e^x is already 0 or inf in float.
 *   log    x = 2^k m with m in [sqrt(1/2), sqrt 2) (a subnormal x scaled
 *          by 2^23 first), f = m - 1 exact; ln(1+f) = f - f^2/2 +
 *          f^3 q(f), q of degree 7 (truncation 0.1 ulp); ln x = k ln2_hi
 *          (exact) + (f + (k ln2_lo + f^2 (f q - 1/2))), fused where a
 *          product meets a sum.  Error 0.923 ulp over all 2^32 inputs
 *          (0.89 unfused).  0 gives -inf, a negative x NaN, inf inf.
 *   tanh   one path for every lane: a = |x| clamped to 10 (tanh 10 is 1
 *          in float); tanh a = h / (1 + h), h = (e^(2a) - 1) / 2.  2a = n
 *          ln2 + r with n = round(2a / ln2 - 0.49) >= 0, so r in [-0.007,
 *          0.69] (one fused rounding, as for exp); e^r - 1 = m = r + r^2
 *          q(r), q of degree 5 fitted to the relative error of e^r - 1
 *          (exp's q, fitted for e^r, lost up to 0.7 ulp of m near 0),
 *          all computed halved (u = r/2, m/2 = u + u^2 2q(2u): the same
 *          roundings scaled by powers of 2), which saves doubling a and
 *          leaves the clamp one step (tanh 1.07-1.10x; the maximum
 *          below unchanged; 4,186 of the 2^32 results moved by an ulp,
 *          near a = 0.343 where n's rounding now differs);
 *          h = 2^(n-1) m + (2^(n-1) - 1/2), both terms non-negative, so
 *          no cancellation (rounding n to nearest, h for n = 1 and r < 0
 *          cancelled: 2.2 ulp), and h = m/2 = a exactly for tiny a (tanh
 *          of a subnormal is itself).  y = h / (1 + h); below h = 1/2
 *          (a = ln2/2) h - h y instead, one rounding, in which the
 *          quotient's error (1 + h's rounding, the division's) is damped
 *          by h: y alone is 2.4 ulp there.  Error 1.549 ulp over the
 *          sweep, 1.742 over all 2^32 inputs (at x = 0.2513; with q by
 *          Horner's rule 1.492 and 1.708); before, an
 *          odd polynomial below 0.625 and 1 - 2 / (e^(2a) + 1) above,
 *          both on every lane (1.332), about 30 % more operations.
 *   sigmoid e = e^-|x| in (0, 1] (never overflows; |x| clamped to 104,
 *          where e is 0 in float); sigmoid x = n / d with d = 1 + e and
 *          n = 1 for x >= 0, e below, all scaled by 2^62 so that e 2^62
 *          is normal and needs one factor of 2^n, the division rounding
 *          once into the subnormals (the same bits as two factors, over
 *          all 2^32 inputs, and 15 % faster; 2^62 rather than 2^64, the
 *          same bits again, so that the line below takes d unscaled with
 *          a normal factor 2^-125: 1.03-1.06x).  The rounding of d would
 *          cost up to 1 ulp of the result, so its error dl = e - (d - 1)
 *          is kept (exact: e <= 1) and the quotient q = n / d corrected:
 *          n / (d + dl) = q - q dl / d, with 1 / d as the line (3 - v) /
 *          2 in v = d 2^-62 in [1, 2] (exact at both ends, within 12 %
 *          between, on a correction of at most about an ulp), so that it
 *          is computed beside the division and only one fused step
 *          follows the quotient (before, 1 / d was q or 1 - q, a select
 *          and two steps after the division; the line within 6 %
 *          everywhere, worse at v = 1 where the error peaks, gave 1.980).
 *          Error: e's (damped by e / (1 + e) for x >= 0), the division's
 *          0.5 and the last correction's 0.5; 1.967 over all 2^32 inputs
 *          (at x = -6.2377; the same before), 1.872 over the test sweep.
 *          Without dl, 2.23.
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
 *          lanes, not 8), with one polynomial for every lane: x = k pi/2
 *          + r, k = 2n even for sin (n = round(x/pi)) and odd for cos (k
 *          = 2n + 1, n = round(x/pi - 1/2)), so |r| <= pi/2 and the result
 *          is sin r, negated for odd n (sin) or even n (cos).  k < 2^8,
 *          pi/2 in parts of 11, 15 and 24 bits, k times the first two
 *          exact, r = rh + rl kept as a pair (absolute error near 2^-52,
 *          against an |r| no smaller than about 2^-24 for a float below
 *          256): rh = x - k pi/2_1 - k pi/2_2 rounded once, its error
 *          recovered as in a fast two-sum, less k pi/2_3, and left
 *          unrenormalised (before, a second two-sum made |rl| at most
 *          half an ulp of rh: the same maxima at the same inputs, over
 *          the sweep and over every float up to 256, and sin 1.2-1.4x
 *          faster, its chain 6 cycles shorter); sin r = rh + (rh^2 g + rl),
 *          g = rh p(rh^2) - rl/2 (rl cos rh with cos rh as 1 - rh^2/2),
 *          rh^2 = z + zl exactly, p of degree 4 fitted to sin's relative
 *          error on [0, pi/2] (truncation 0.008 ulp).  Near |r| = pi/2 the
 *          result's ulp is half r's, so each rounding of the r^3 term
 *          (magnitude 0.57) costs up to 0.57 ulp there: zl takes out z's.
 *          Error 1.752 ulp (sin) and 1.638 (cos) over the test sweep;
 *          over every float up to 256, both signs, 1.812 and 1.798.  The
 *          previous float path reduced by pi/2 (|r| <= pi/4, 0.852 and
 *          0.835) and ran the sin and the cos polynomial on every lane.
 *          A chunk of 512 with all elements up to 256 runs the float loop;
 *          one with larger elements picks per element, so that the result
 *          of an element still depends on its value alone.  Beyond 2^24,
 *          and for inf and NaN, the C library's double sin and cos,
 *          rounded: the kernel scans each chunk of 512 for such elements
 *          first, so that the common chunk is one vectorised loop.
 *
 * Polynomials of degree 4 and 5 in the reduced argument are evaluated in
 * pairs (Estrin's scheme: q = (c0 + c1 r) + r^2 ((c2 + c3 r) + r^2 ...))
 * rather than by Horner's rule: the same operations, two or three fused
 * steps after r^2 where Horner's rule chains four or five.  The loops are
 * bound by these chains, not by the operation count: each element is a
 * chain of 50-70 cycles of latency, and the processor overlaps only as
 * many elements as its scheduler holds.  On a Zen 5, tanh and sigmoid
 * went 3-6 % faster over 2^24 elements (bench/elementwise_ab, runs of 9
 * and 11 interleaved pairs); exp did not change measurably, and sin's
 * polynomial (degree 4 in r^2) gained nothing, so it kept Horner's
 * rule.
 *
 * NaN passes through every step (the clamps are written so that a NaN
 * compares false and is kept), and no step converts a NaN to an integer:
 * n comes from adding 1.5 * 2^52 (float: 1.5 * 2^23), which rounds x / ln2
 * to an integer in the low bits of the sum.
 *
 * The variants.  The loops (vmath_kernels.inc) are compiled three times:
 * for the baseline target, and with target attributes for AVX2 + FMA and
 * AVX-512 + FMA (where float32 exp, tanh and sigmoid are loops written
 * with intrinsics instead, vmath_simd.inc, the element functions' steps
 * in fewer instructions); the first call picks what the CPU runs, so the library
 * runs on any x86-64 (AD_VMATH=portable|avx2|avx512 in the environment
 * picks a narrower one the CPU can run, to measure it: vmath.h).  The fused
 * multiply-adds are written out, FMA(a, b, c), a b + c rounded once (C99's
 * fmaf): fmaf, one vfmadd, in the AVX2 and AVX-512 variants, and fma_exact
 * (below: the same rounding in double arithmetic, scalar, about 30-70 ns an
 * element) in the portable one unless fmaf is an instruction there too
 * (FP_FAST_FMAF), so the same value in each; each variant has
 * its own copy of the float element functions (vmath_float.inc) for that.
 * No variant may fuse any other multiply and add (the fused and the
 * unfused round differently): the build is ISO C
 * (-std=c11), in which GCC does not contract (checked below), and clang,
 * which contracts by default, is told not to.  So every variant gives
 * the same bits, which tests/test_vmath.c checks.  Which NaN an fmaf
 * returns when two operands are NaN is the machine's choice, so no fmaf
 * here negates an operand that may be NaN (a negated constant instead):
 * the NaN operands are then the same NaN. */
#include "isa.h"
#include "vmath.h"
#include "stream.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
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
#include <immintrin.h>
#else
#define VMATH_X86 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VM_INLINE inline __attribute__((always_inline))
#else
#define VM_INLINE inline
#endif

#define LOG2E 1.4426950408889634074  /* 1 / ln 2 */


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

/* a b + c rounded once, as C99's fmaf, in portable arithmetic: the
 * portable copy's fused multiply-add (the C library's fmaf would be a call
 * per operation, which also stops the loop vectorising).  a b is exact in
 * double (24 + 24 bits); s = a b + c rounds once, and TwoSum gives its
 * exact error e.  Rounding s to float could round twice; rounding the sum
 * to odd in double first (an inexact s with an even last bit moves to its
 * odd neighbour on e's side) makes that second rounding the correct one
 * (Boldo and Melquiond: round-to-odd with 53 >= 24 + 2 bits).  NaNs pass
 * as in the C library's own fmaf, which computes the same a b and + c. */
static VM_INLINE float fma_exact(float a, float b, float c)
{
    double p = (double)a * (double)b, cd = (double)c;
    double s = p + cd, bp = s - cd, e = (p - bp) + (cd - (s - bp));
    uint64_t u = bits_of(s);
    uint64_t fix = (e != 0.0 && e == e && !(u & 1)) ? ((e > 0.0) == (s > 0.0) ? 1u : (uint64_t)-1)
                                                    : 0u;
    return (float)double_of(u + fix);
}

/* Shared by the float path of sin and cos (vmath_float.inc) and float64. */
#define SHIFT 0x1.8p52 /* x + SHIFT rounds x to an integer */
#define TWO_OVER_PI 0x1.45f306dc9c883p-1
#define PIO2_1 0x1.921fb54p+0             /* pi/2 to 29 bits: n PIO2_1 exact */
#define PIO2_2 0x1.10b4611p-30            /* the next 29 bits */
#define PIO2_3 0x1.4c4c6628b80dcp-59      /* the rest, to 53 bits */
#define SINCOS_BOUND_BITS 0x4b800000u     /* 2^24: |x| above it goes to libm */

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

/* Software prefetch for the loops.  They do 30-odd vector instructions
 * per 16 elements; over arrays larger than the L2 they ran at 0.55 of
 * memcpy's bandwidth on a Xeon where they reach 0.95 of it with the data
 * in L1: the hardware prefetcher brings the input stream to L2, and the
 * loop then waits on L2.  So the loops go in chunks of VM_CHUNK elements
 * and fetch the input VM_AHEAD elements ahead into L1 (the output is left
 * to the hardware: prefetching it for writing measured slower).  Over
 * 2^24 floats, fraction of memcpy's 28-29 GB/s, before -> after (three
 * runs): exp 0.57 -> 0.77-0.79, log 0.56 -> 0.76-0.79, tanh 0.55 ->
 * 0.73-0.75, sigmoid 0.52 -> 0.68-0.70, sin 0.49 -> 0.70-0.72.  Chunks of
 * 128 to 1024 elements and 256 to 16384 ahead were measured: 1024 ahead
 * (4 KB of floats) about best, 4096 and more no better than none.  Moves
 * no value: the same results. */
#define VM_CHUNK 256
#define VM_AHEAD 1024
static inline void vm_prefetch(const void *p, size_t bytes)
{
    for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch((const char *)p + b, 0, 3);
}
/* Prefetches for the chunk [i0, i0 + m) of n elements of size es at x:
 * the one VM_AHEAD elements on, when it is inside the array. */
static inline void vm_prefetch_ahead(const void *x, size_t es, int64_t i0, int64_t m, int64_t n)
{
    if (i0 + VM_AHEAD + m <= n)
        vm_prefetch((const char *)x + (size_t)(i0 + VM_AHEAD) * es, (size_t)m * es);
}
/* Whether the loops write y (n elements of es bytes) with non-temporal
 * stores: an output of at least ad__stream_min() bytes (stream.h) that
 * starts on a cache line, so that every chunk does.  The vector loops of
 * vmath_simd.inc store from registers, log and sin / cos too with
 * AVX-512 (log_streamed, sincos_vec: log 0.6 -> 0.8 of memcpy's
 * bandwidth, sin 0.55 -> 0.74); with AVX2 and in the portable variant
 * log and sin / cos compute each chunk into a buffer and
 * ad__stream_store copies it out (through the buffer the chunk's loads
 * and its arithmetic take turns, where from registers they overlap; the
 * AVX2 log was slower from registers).  The float64 loops do not
 * stream. */
static inline bool vm_streams(const void *y, int64_t n, size_t es)
{
    return (uintptr_t)y % 64 == 0 && n * (int64_t)es >= ad__stream_min();
}
/* The vectorised loops unrolled twice: two registers' elements in each
 * pass, so that the processor has two independent chains side by side
 * where it would otherwise have the next pass's start behind this one's
 * long tail (the head of the file: the loops are bound by their chains'
 * latency).  Same operations per element, same bits.  Measured with both
 * builds linked into one program and called in turn (2^14 floats, in
 * L2; the 2^24 of bench/elementwise gain about a third as much, the
 * memory's share of their time): sin +11 %, tanh +3 %, sigmoid +2 %,
 * exp unchanged; unrolling four times gained no more. */
#if defined(__GNUC__) && !defined(__clang__)
#define VM_UNROLL _Pragma("GCC unroll 2")
#elif defined(__clang__)
#define VM_UNROLL _Pragma("clang loop unroll_count(2)")
#else
#define VM_UNROLL
#endif
/* y[i] = F(x[i]) for i < n, in chunks that prefetch ahead (y, x, n in
 * scope). */
#define VM_MAP(F)                                                          \
    for (int64_t i0 = 0; i0 < n; i0 += VM_CHUNK) {                         \
        int64_t m = n - i0 < VM_CHUNK ? n - i0 : VM_CHUNK;                 \
        vm_prefetch_ahead(x, sizeof *x, i0, m, n);                         \
        VM_UNROLL                                                          \
        for (int64_t i = i0; i < i0 + m; i++) y[i] = F(x[i]);              \
    }

/* The portable loops, and the AVX2 and AVX-512 ones, each with float
 * element functions of its own (vmath_float.inc): FMA is fma_exact in the
 * portable copy and fmaf, one vfmadd, in the others; the same value either
 * way. */
#define VTARGET
#define VSFX(name) name##_any
#ifdef FP_FAST_FMAF
/* fmaf is an instruction where <math.h> says it is fast (AArch64, or an
 * x86 build for FMA): the same value as fma_exact, which is about fifteen
 * double operations.  On a Zen 3 built with -mfma this copy's exp took 1.1
 * ns an element with fmaf and 37-56 with fma_exact (test_vmath: the same
 * bits either way). */
#define FMA(a, b, c) fmaf(a, b, c)
#else
#define FMA(a, b, c) fma_exact(a, b, c)
#endif
#define VM_SIMD_LOOPS 0
#include "vmath_float.inc"
#include "vmath_kernels.inc"
#undef VTARGET
#undef VSFX
#undef FMA
#undef VM_SIMD_LOOPS
#if VMATH_X86
/* exp, tanh and sigmoid written with intrinsics (vmath_simd.inc) */
#define VM_SIMD_LOOPS 1
#define VTARGET __attribute__((target("avx2,fma")))
#define VSFX(name) name##_avx2
#define FMA(a, b, c) fmaf(a, b, c)
#define VS_AVX512 0
#include "vmath_float.inc"
#include "vmath_kernels.inc"
#include "vmath_simd.inc"
#undef VTARGET
#undef VSFX
#undef FMA
#undef VS_AVX512
#define VTARGET __attribute__((target("avx512f,fma")))
#define VSFX(name) name##_avx512
#define FMA(a, b, c) fmaf(a, b, c)
#define VS_AVX512 1
#include "vmath_float.inc"
#include "vmath_kernels.inc"
#include "vmath_simd.inc"
#undef VS_AVX512
#undef VTARGET
#undef VSFX
#undef FMA
#endif

enum { ISA_ANY, ISA_AVX2, ISA_AVX512, ISA_AUTO = -1 };

static bool cpu_can(int isa)
{
#if VMATH_X86
    if (isa == ISA_AVX2) return AD_CPU_AVX2() && __builtin_cpu_supports("fma");
    if (isa == ISA_AVX512) return AD_CPU_AVX512() && __builtin_cpu_supports("fma");
#endif
    return isa == ISA_ANY;
}

static int forced = ISA_AUTO;

float ad__vmath_testing_fma(float a, float b, float c) { return fma_exact(a, b, c); }

int ad__vmath_testing_isa(int isa)
{
    if (isa != ISA_AUTO && !cpu_can(isa)) return -1;
    forced = isa;
    return 0;
}

int ad__vmath_isa_named(const char *name)
{
    if (!name) return ISA_AUTO;
    return strcmp(name, "portable") == 0 ? ISA_ANY
           : strcmp(name, "avx2") == 0   ? ISA_AVX2
           : strcmp(name, "avx512") == 0 ? ISA_AVX512
                                         : ISA_AUTO;
}

#if VMATH_X86
/* The variant to run unless the tests force one: AD_VMATH's when this CPU
 * can run it, else the widest the CPU has; decided at the first call
 * (racing first calls decide alike) and kept.  Elsewhere (other CPUs,
 * WebAssembly) there is only the portable one. */
static atomic_int chosen = ISA_AUTO - 1; /* not decided yet */

static int pick(void)
{
    if (forced != ISA_AUTO) return forced;
    int v = atomic_load_explicit(&chosen, memory_order_relaxed);
    if (v != ISA_AUTO - 1) return v;
    v = ad__vmath_isa_named(getenv("AD_VMATH"));
    if (v == ISA_AUTO || !cpu_can(v))
        v = cpu_can(ISA_AVX512) ? ISA_AVX512 : cpu_can(ISA_AVX2) ? ISA_AVX2 : ISA_ANY;
    atomic_store_explicit(&chosen, v, memory_order_relaxed);
    return v;
}

int ad__vmath_testing_variant(bool reread_env)
{
    if (reread_env) atomic_store(&chosen, ISA_AUTO - 1);
    return pick();
}

#define DISPATCH(name, y, x, n)                                   \
    switch (pick()) {                                             \
    case ISA_AVX512: name##_avx512(y, x, n); break;               \
    case ISA_AVX2: name##_avx2(y, x, n); break;                   \
    default: name##_any(y, x, n); break;                          \
    }
#else
int ad__vmath_testing_variant(bool reread_env)
{
    (void)reread_env;
    return ISA_ANY;
}

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

/* autodiff/vmath.h - exp, log, tanh, sigmoid, sin and cos over contiguous
 * float32 arrays, vectorised; never installed.
 *
 * y[i] = f(x[i]) for i < n, with x and y either the same array or not
 * overlapping.  Each result is within 2 ulp of the exact value (measured
 * against the C library's double functions over the whole float32 range
 * by tests/test_vmath.c; vmath.c gives each function's maximum),
 * including subnormal inputs and results, +-0, +-inf and NaN, the
 * overflow and underflow thresholds and the saturated tails of tanh and
 * sigmoid.  The result of an element depends only on its value: not on
 * n, on its position, or on the CPU (the AVX2 and AVX-512 variants,
 * chosen at run time, compute the same operations in the same order as
 * the portable one; their fused multiply-adds are C's fmaf, one rounding
 * in every variant, and nothing else is fused, so all give the same
 * bits).  A CPU without FMA (x86-64 before 2013) runs the portable
 * variant, whose fmaf is the C library's software routine: correct but
 * several times slower. */
#ifndef AUTODIFF_VMATH_H
#define AUTODIFF_VMATH_H

#include <stdbool.h>
#include <stdint.h>

void ad__vexp_f32(float *y, const float *x, int64_t n);
void ad__vlog_f32(float *y, const float *x, int64_t n);
void ad__vtanh_f32(float *y, const float *x, int64_t n);
void ad__vsigmoid_f32(float *y, const float *x, int64_t n);
/* Phi(x), the standard normal distribution function (GELU's factor),
 * from a fit of erfc: within 4e-7 absolutely, and relatively within 2e-5
 * over [-12, 12] (tests/test_vmath.c); not part of the 2 ulp contract. */
void ad__vphi_f32(float *y, const float *x, int64_t n);
/* GELU from the same Phi: y = x Phi(x) and, when d is not NULL, its
 * slope d = Phi(x) + x e^(-x^2/2) / sqrt(2 pi) (the exponential vexp's),
 * in one pass; y, d and x must not overlap. */
void ad__vgelu_f32(float *y, float *d, const float *x, int64_t n);
/* sin and cos reduce x modulo pi (cos: about an odd multiple of pi/2) in
 * float for |x| <= 256, modulo pi/2 in double up to 2^24, and call the C
 * library's double sin and cos above (and for inf and NaN); within 2 ulp
 * as the others (vmath.c gives the maxima: 1 ulp or less beyond 256). */
void ad__vsin_f32(float *y, const float *x, int64_t n);
void ad__vcos_f32(float *y, const float *x, int64_t n);

/* float64: the same contract with a relative error within 1e-15 for
 * normal results (within 1 ulp of 2^-1074 for subnormal ones). */
void ad__vexp_f64(double *y, const double *x, int64_t n);
void ad__vlog_f64(double *y, const double *x, int64_t n);
void ad__vtanh_f64(double *y, const double *x, int64_t n);
void ad__vsigmoid_f64(double *y, const double *x, int64_t n);

/* The variant AD_VMATH names in the environment (read once, at the first
 * call): "portable", "avx2" or "avx512" runs that one when this CPU can
 * (to measure a narrower variant on a wider CPU: bench/run does); unset,
 * "auto" or a variant the CPU lacks leaves the choice to the CPU.  The
 * results are the same bits either way.  ad__vmath_isa_named is the
 * parsing: 0, 1 or 2 for the three names, -1 for anything else or NULL. */
int ad__vmath_isa_named(const char *name);

/* Tests: run the variant isa (0 portable, 1 AVX2, 2 AVX-512) from now on,
 * -1 for the automatic choice.  Returns -1, changing nothing, when this CPU
 * or build cannot run it.  Not thread-safe. */
int ad__vmath_testing_isa(int isa);
/* Tests: the variant the next call runs (0, 1 or 2), AD_VMATH read again
 * first when reread_env.  Not thread-safe. */
int ad__vmath_testing_variant(bool reread_env);
/* Tests: the portable variant's fused multiply-add, a b + c rounded once
 * (C99's fmaf) in double arithmetic. */
float ad__vmath_testing_fma(float a, float b, float c);

#endif

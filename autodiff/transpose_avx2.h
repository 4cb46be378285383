/* autodiff/transpose_avx2.h - an 8 x 8 float32 transpose in AVX2
 * registers, for the kernels that move a transposed operand (the
 * convolution's weight gradient, the pointwise ops' transposed tiles).
 * Internal; include it only where <immintrin.h> is available (x86 with
 * gcc or clang), from functions compiled for AVX2 or more. */
#ifndef AUTODIFF_TRANSPOSE_AVX2_H
#define AUTODIFF_TRANSPOSE_AVX2_H

#include <immintrin.h>

/* r[k] holds row k of an 8 x 8 block; afterwards column k.  Pairs of rows
 * interleaved, then pairs of pairs, then the 128-bit halves swapped: 24
 * shuffles, moves only (the same bits). */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
ad__transpose8_avx2(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int l = 0; l < 8; l += 2) {
        t[l] = _mm256_unpacklo_ps(r[l], r[l + 1]);
        t[l + 1] = _mm256_unpackhi_ps(r[l], r[l + 1]);
    }
    for (int l = 0; l < 8; l += 4) {
        u[l] = _mm256_shuffle_ps(t[l], t[l + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[l + 1] = _mm256_shuffle_ps(t[l], t[l + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[l + 2] = _mm256_shuffle_ps(t[l + 1], t[l + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[l + 3] = _mm256_shuffle_ps(t[l + 1], t[l + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[q + 4], 0x20);
        r[q + 4] = _mm256_permute2f128_ps(u[q], u[q + 4], 0x31);
    }
}

#endif

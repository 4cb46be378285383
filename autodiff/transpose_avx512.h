/* autodiff/transpose_avx512.h - a 16 x 16 float32 transpose in AVX-512
 * registers, for the kernels that move a transposed operand (the pointwise
 * ops' transposed tiles, the matrix kernel's packing of a transposed
 * operand).  Internal; include it only where <immintrin.h> is available
 * (x86 with gcc or clang), from functions compiled for AVX-512F. */
#ifndef AUTODIFF_TRANSPOSE_AVX512_H
#define AUTODIFF_TRANSPOSE_AVX512_H

#include <immintrin.h>

/* r[k] = column k of the 16 x 16 matrix whose rows were r[0..15]:
 * interleave pairs of rows, then pairs of pairs (as doubles), then the
 * 128-bit lanes twice.  Moves only (the same bits). */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
ad__transpose16_avx512(__m512 r[16])
{
    __m512 t[16];
    for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(r[k], r[k + 1]);
    }
    /* r[4q + c], lane l: rows 4q..4q+3 of column 4l + c */
    for (int q = 0; q < 16; q += 4) {
        __m512d a = _mm512_castps_pd(t[q]), b = _mm512_castps_pd(t[q + 2]);
        __m512d c = _mm512_castps_pd(t[q + 1]), d = _mm512_castps_pd(t[q + 3]);
        r[q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    for (int c = 0; c < 4; c++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
        __m512 u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
        __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        __m512 u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
        t[c] = _mm512_shuffle_f32x4(u0, u2, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(u1, u3, 0x88);
        t[8 + c] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
        t[12 + c] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
    }
    for (int k = 0; k < 16; k++) r[k] = t[k];
}

#endif

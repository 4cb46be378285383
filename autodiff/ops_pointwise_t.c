/* autodiff/ops_pointwise_t.c - float32 binary ops (+ - * /) over a matrix
 * with a transposed operand, tiles transposed in registers.
 *
 * out[i][j] = x(i, j) op y(i, j) for an m x n out with rows ldo apart; an
 * operand is read along rows (element (i, j) at p[i * ld + j]) or
 * transposed (at p[i + j * ld]).  The gradient of x W^T reaching W is the
 * common case: transpose(x^T G) added into W's contiguous gradient.
 *
 * A tile of W x W elements (16 with AVX-512, 8 with AVX2) of each
 * transposed operand is loaded as W rows of W (one cache line each with
 * AVX-512), transposed in registers, combined with the other operand's
 * rows and stored as W rows of out; with both operands transposed the op
 * runs first and its result is transposed once.  Every line a tile touches
 * is used whole, so nothing is read twice and no buffer is needed: what is
 * left is the order in which lines come from memory.  The tiles go in
 * blocks of BI x BJ (see the measurements in docs/benchmarks.md), within a
 * block along out's rows.  Edges (m or n not a multiple of W) go element
 * by element.  Each element is the same IEEE operation of the same two
 * floats on every path, so the bits do not depend on the path or the CPU.
 *
 * The ISA is chosen at run time (avx512f, else avx2; ad__pw_t_testing_isa
 * forces one for the tests); without either, or on other CPUs, the caller
 * keeps its portable tiled loop. */
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

enum { ISA_ANY, ISA_AVX2, ISA_AVX512, ISA_AUTO = -1 };

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PWT_X86 1
#include <immintrin.h>

#include "transpose_avx2.h"
#else
#define PWT_X86 0
#endif

/* The blocks of tiles: BI rows by BJ columns of out, and the size of out
 * from which its stores bypass the caches (see the driver). */
#define BI ((int64_t)64)
#define BJ ((int64_t)128)
#define STREAM_MIN ((int64_t)16 << 20)

#if PWT_X86
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2")))

static inline float op1(char op, float a, float b)
{
    switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    default: return a / b;
    }
}

/* The elements of out's rows [i0, i1) and columns [j0, j1), one by one. */
static void edge(char op, float *o, int64_t ldo, const float *x, int64_t ldx, bool xt,
                 const float *y, int64_t ldy, bool yt, int64_t i0, int64_t i1, int64_t j0,
                 int64_t j1)
{
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++)
            o[i * ldo + j] = op1(op, xt ? x[i + j * ldx] : x[i * ldx + j],
                                 yt ? y[i + j * ldy] : y[i * ldy + j]);
}

static AVX512 inline __attribute__((always_inline)) __m512 op16(char op, __m512 a, __m512 b)
{
    switch (op) {
    case '+': return _mm512_add_ps(a, b);
    case '-': return _mm512_sub_ps(a, b);
    case '*': return _mm512_mul_ps(a, b);
    default: return _mm512_div_ps(a, b);
    }
}

/* r[k] = column k of the 16 x 16 matrix whose rows were r[0..15]:
 * interleave pairs of rows, then pairs of pairs (as doubles), then the
 * 128-bit lanes twice. */
static AVX512 inline __attribute__((always_inline)) void tr16(__m512 r[16])
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

/* One 16 x 16 tile at out (i, j). */
static AVX512 inline __attribute__((always_inline)) void tile16(char op, bool nt, float *o, int64_t ldo, const float *x,
                                 int64_t ldx, bool xt, const float *y, int64_t ldy, bool yt,
                                 int64_t i, int64_t j)
{
    __m512 a[16], b[16];
    if (xt && yt) {
        for (int k = 0; k < 16; k++)
            a[k] = op16(op, _mm512_loadu_ps(x + (j + k) * ldx + i),
                        _mm512_loadu_ps(y + (j + k) * ldy + i));
        tr16(a);
    } else if (yt) {
        for (int k = 0; k < 16; k++) b[k] = _mm512_loadu_ps(y + (j + k) * ldy + i);
        tr16(b);
        for (int k = 0; k < 16; k++) a[k] = op16(op, _mm512_loadu_ps(x + (i + k) * ldx + j), b[k]);
    } else {
        for (int k = 0; k < 16; k++) b[k] = _mm512_loadu_ps(x + (j + k) * ldx + i);
        tr16(b);
        for (int k = 0; k < 16; k++) a[k] = op16(op, b[k], _mm512_loadu_ps(y + (i + k) * ldy + j));
    }
    if (nt)
        for (int k = 0; k < 16; k++) _mm512_stream_ps(o + (i + k) * ldo + j, a[k]);
    else
        for (int k = 0; k < 16; k++) _mm512_storeu_ps(o + (i + k) * ldo + j, a[k]);
}

static AVX2 inline __attribute__((always_inline)) __m256 op8(char op, __m256 a, __m256 b)
{
    switch (op) {
    case '+': return _mm256_add_ps(a, b);
    case '-': return _mm256_sub_ps(a, b);
    case '*': return _mm256_mul_ps(a, b);
    default: return _mm256_div_ps(a, b);
    }
}

static AVX2 inline __attribute__((always_inline)) void tile8(char op, bool nt, float *o, int64_t ldo, const float *x,
                              int64_t ldx, bool xt, const float *y, int64_t ldy, bool yt,
                              int64_t i, int64_t j)
{
    (void)nt; /* half a line per store: left to the caches */
    __m256 a[8], b[8];
    if (xt && yt) {
        for (int k = 0; k < 8; k++)
            a[k] = op8(op, _mm256_loadu_ps(x + (j + k) * ldx + i),
                       _mm256_loadu_ps(y + (j + k) * ldy + i));
        ad__transpose8_avx2(a);
    } else if (yt) {
        for (int k = 0; k < 8; k++) b[k] = _mm256_loadu_ps(y + (j + k) * ldy + i);
        ad__transpose8_avx2(b);
        for (int k = 0; k < 8; k++) a[k] = op8(op, _mm256_loadu_ps(x + (i + k) * ldx + j), b[k]);
    } else {
        for (int k = 0; k < 8; k++) b[k] = _mm256_loadu_ps(x + (j + k) * ldx + i);
        ad__transpose8_avx2(b);
        for (int k = 0; k < 8; k++) a[k] = op8(op, b[k], _mm256_loadu_ps(y + (i + k) * ldy + j));
    }
    for (int k = 0; k < 8; k++) _mm256_storeu_ps(o + (i + k) * ldo + j, a[k]);
}

/* Software prefetch of the next block, spread over the tiles of this one:
 * a region of a matrix, line by line along its rows. */
typedef struct pf_region {
    const float *p;
    int64_t ld, r0, c0, nl;   /* rows from r0, nl lines from column c0 */
    int64_t done, total, per; /* lines fetched, in all, per tile */
} pf_region;

static inline void pf_set(pf_region *g, const float *p, int64_t ld, int64_t r0, int64_t r1,
                          int64_t c0, int64_t c1, int64_t tiles)
{
    g->p = p, g->ld = ld, g->r0 = r0, g->c0 = c0;
    g->nl = (c1 - c0 + 15) / 16;
    g->done = 0;
    g->total = (r1 - r0) * g->nl;
    g->per = (g->total + tiles - 1) / tiles;
}

static inline void pf_step(pf_region *g)
{
    for (int64_t e = 0; e < g->per && g->done < g->total; e++, g->done++)
        __builtin_prefetch(g->p + (g->r0 + g->done / g->nl) * g->ld + g->c0 + g->done % g->nl * 16,
                           0, 3);
}

/* The whole matrix in tiles of W, blocks of BI x BJ (along out's rows
 * within a block, blocks along out's rows too), the edges after.  While a
 * block runs, the next one's lines are prefetched a few per tile, each
 * operand's along its own rows (a transposed one's block is BJ of its
 * rows, BI elements long), so that memory sees runs of whole lines rather
 * than the tiles' scattered ones.  An out of STREAM_MIN bytes or more,
 * too big to be in cache when it is next read, is written with streaming
 * stores (no read of its lines first, a quarter of the traffic) when its
 * rows are 64-byte aligned. */
#define DRIVER(NAME, ATTR, W, TILE)                                                            \
    static ATTR inline __attribute__((always_inline)) void NAME##_body(                        \
        char op, int64_t m, int64_t n, float *o, int64_t ldo, const float *x, int64_t ldx,     \
        bool xt, const float *y, int64_t ldy, bool yt)                                         \
    {                                                                                          \
        int64_t mw = m / W * W, nw = n / W * W;                                                \
        bool nt = m * ldo >= STREAM_MIN / 4 && (uintptr_t)o % 64 == 0 && ldo % 16 == 0;       \
        for (int64_t ib = 0; ib < mw; ib += BI) {                                              \
            int64_t ie = mw - ib < BI ? mw : ib + BI;                                          \
            for (int64_t jb = 0; jb < nw; jb += BJ) {                                          \
                int64_t je = nw - jb < BJ ? nw : jb + BJ;                                      \
                int64_t nib = ib, njb = jb + BJ;                                               \
                if (njb >= nw) nib = ib + BI, njb = 0;                                         \
                int64_t nie = mw - nib < BI ? mw : nib + BI;                                   \
                int64_t nje = nw - njb < BJ ? nw : njb + BJ;                                   \
                int64_t tiles = (ie - ib) / W * ((je - jb) / W);                               \
                pf_region g[2];                                                                \
                int ng = 0;                                                                    \
                if (nib < mw) {                                                                \
                    if (xt) pf_set(&g[ng++], x, ldx, njb, nje, nib, nie, tiles);               \
                    else pf_set(&g[ng++], x, ldx, nib, nie, njb, nje, tiles);                  \
                    if (yt) pf_set(&g[ng++], y, ldy, njb, nje, nib, nie, tiles);               \
                    else pf_set(&g[ng++], y, ldy, nib, nie, njb, nje, tiles);                  \
                }                                                                              \
                for (int64_t i = ib; i < ie; i += W)                                           \
                    for (int64_t j = jb; j < je; j += W) {                                     \
                        for (int q = 0; q < ng; q++) pf_step(&g[q]);                           \
                        TILE(op, nt, o, ldo, x, ldx, xt, y, ldy, yt, i, j);                    \
                    }                                                                          \
            }                                                                                  \
        }                                                                                      \
        if (nt) _mm_sfence(); /* the streamed stores before any later ones */                  \
        edge(op, o, ldo, x, ldx, xt, y, ldy, yt, 0, mw, nw, n);                                \
        edge(op, o, ldo, x, ldx, xt, y, ldy, yt, mw, m, 0, n);                                 \
    }                                                                                          \
    static ATTR void NAME(char op, int64_t m, int64_t n, float *o, int64_t ldo,                \
                          const float *x, int64_t ldx, bool xt, const float *y, int64_t ldy,   \
                          bool yt)                                                             \
    {                                                                                          \
        switch (op) {                                                                          \
        case '+': NAME##_body('+', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;               \
        case '-': NAME##_body('-', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;               \
        case '*': NAME##_body('*', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;               \
        default: NAME##_body('/', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;                \
        }                                                                                      \
    }
DRIVER(run_avx512, AVX512, 16, tile16)
DRIVER(run_avx2, AVX2, 8, tile8)
#endif

static int forced = ISA_AUTO; /* tests only; not thread-safe, like the other hooks */

static bool cpu_can(int isa)
{
#if PWT_X86
    if (isa == ISA_AVX2) return __builtin_cpu_supports("avx2");
    if (isa == ISA_AVX512) return __builtin_cpu_supports("avx512f");
#endif
    return isa == ISA_ANY;
}

int ad__pw_t_testing_isa(int isa)
{
    if (isa != ISA_AUTO && !cpu_can(isa)) return -1;
    forced = isa;
    return 0;
}

bool ad__bin_t_f32(char op, int64_t m, int64_t n, float *o, int64_t ldo, const float *x,
                   int64_t ldx, bool xt, const float *y, int64_t ldy, bool yt)
{
    int isa = forced;
    if (isa == ISA_AUTO) isa = cpu_can(ISA_AVX512) ? ISA_AVX512 : cpu_can(ISA_AVX2) ? ISA_AVX2 : ISA_ANY;
#if PWT_X86
    if (isa == ISA_AVX512) {
        run_avx512(op, m, n, o, ldo, x, ldx, xt, y, ldy, yt);
        return true;
    }
    if (isa == ISA_AVX2) {
        run_avx2(op, m, n, o, ldo, x, ldx, xt, y, ldy, yt);
        return true;
    }
#else
    (void)op, (void)m, (void)n, (void)o, (void)ldo, (void)x, (void)ldx, (void)xt, (void)y,
        (void)ldy, (void)yt;
#endif
    return false;
}

/* autodiff/ops_pointwise_t.c - float32 and float64 binary ops (+ - * /)
 * over a matrix with a transposed operand, tiles transposed in registers.
 *
 * out[i][j] = x(i, j) op y(i, j) for an m x n out with rows ldo apart; an
 * operand is read along rows (element (i, j) at p[i * ld + j]) or
 * transposed (at p[i + j * ld]).  The gradient of x W^T reaching W is the
 * common case: transpose(x^T G) added into W's contiguous gradient.
 *
 * A tile of W x W elements, W one 64-byte cache line (16 floats, 8
 * doubles; with AVX2, 4 doubles, half a line), of each transposed operand
 * is loaded as W rows of W, transposed in registers, combined with the
 * other operand's rows and stored as W rows of out; with both operands
 * transposed the op runs first and its result is transposed once.  AVX2's
 * float32 tile is four 8 x 8 transposes gathered in a small buffer, so
 * that its rows too are stored as whole lines.  Every line a tile touches
 * is used whole (AVX2's float64 tiles: half, the other half by a
 * neighbouring tile), so nothing is read twice from memory: what is left
 * is the order in which lines come from memory.  The tiles go in blocks of BI x BJ bytes
 * (see the measurements in docs/benchmarks.md), within a block along out's
 * rows.  Edges (m or n not a multiple of W) go element by element.  Each
 * element is the same IEEE operation of the same two values on every path,
 * so the bits do not depend on the path or the CPU.
 *
 * The ISA is chosen at run time (avx512f, else avx2; ad__pw_t_testing_isa
 * forces one for the tests); without either, or on other CPUs, the caller
 * keeps its portable tiled loop. */
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "stream.h"

enum { ISA_ANY, ISA_AVX2, ISA_AVX512, ISA_AUTO = -1 };

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PWT_X86 1
#include <immintrin.h>

#include "transpose_avx2.h"
#include "transpose_avx512.h"
#else
#define PWT_X86 0
#endif

/* The blocks of tiles, BI rows by BJ columns of out: BI elements make
 * BI_BYTES (the run read from each row of a transposed operand), BJ make
 * BJ_BYTES (the run of each row of out and of an operand along rows), so
 * 256 x 128 floats, 128 x 64 doubles (256 KB of inputs per block); and
 * the size of out from which its stores bypass the caches (see the
 * driver). */
#define BI_BYTES ((int64_t)1024)
#define BJ_BYTES ((int64_t)512)
#define STREAM_MIN ((int64_t)16 << 20)

#if PWT_X86
#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2")))

/* The elements of out's rows [i0, i1) and columns [j0, j1), one by one. */
#define EDGE(NAME, T)                                                                          \
    static void NAME(char op, T *o, int64_t ldo, const T *x, int64_t ldx, bool xt, const T *y, \
                     int64_t ldy, bool yt, int64_t i0, int64_t i1, int64_t j0, int64_t j1)     \
    {                                                                                          \
        for (int64_t i = i0; i < i1; i++)                                                      \
            for (int64_t j = j0; j < j1; j++) {                                                \
                T a = xt ? x[i + j * ldx] : x[i * ldx + j];                                    \
                T b = yt ? y[i + j * ldy] : y[i * ldy + j];                                    \
                o[i * ldo + j] = op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : a / b; \
            }                                                                                  \
    }
EDGE(edge_f32, float)
EDGE(edge_f64, double)

#define ALWAYS inline __attribute__((always_inline))


static AVX512 ALWAYS __m512 op16(char op, __m512 a, __m512 b)
{
    switch (op) {
    case '+': return _mm512_add_ps(a, b);
    case '-': return _mm512_sub_ps(a, b);
    case '*': return _mm512_mul_ps(a, b);
    default: return _mm512_div_ps(a, b);
    }
}

static AVX512 ALWAYS __m512d op8d(char op, __m512d a, __m512d b)
{
    switch (op) {
    case '+': return _mm512_add_pd(a, b);
    case '-': return _mm512_sub_pd(a, b);
    case '*': return _mm512_mul_pd(a, b);
    default: return _mm512_div_pd(a, b);
    }
}

static AVX2 ALWAYS __m256 op8(char op, __m256 a, __m256 b)
{
    switch (op) {
    case '+': return _mm256_add_ps(a, b);
    case '-': return _mm256_sub_ps(a, b);
    case '*': return _mm256_mul_ps(a, b);
    default: return _mm256_div_ps(a, b);
    }
}

static AVX2 ALWAYS __m256d op4d(char op, __m256d a, __m256d b)
{
    switch (op) {
    case '+': return _mm256_add_pd(a, b);
    case '-': return _mm256_sub_pd(a, b);
    case '*': return _mm256_mul_pd(a, b);
    default: return _mm256_div_pd(a, b);
    }
}

/* The same for 8 x 8 doubles: t[2p + h] holds, in 128-bit lane l, rows
 * 2p, 2p + 1 of column 2l + h; lanes 0, 2 of rows 0-3 and of rows 4-7 give
 * columns h and 4 + h in four lanes, and once more for columns 2 + h and
 * 6 + h from lanes 1, 3. */
static AVX512 ALWAYS void tr8d(__m512d r[8])
{
    __m512d t[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm512_unpacklo_pd(r[k], r[k + 1]);
        t[k + 1] = _mm512_unpackhi_pd(r[k], r[k + 1]);
    }
    for (int h = 0; h < 2; h++) {
        __m512d lo03 = _mm512_shuffle_f64x2(t[h], t[2 + h], 0x88); /* cols h, 4+h of rows 0-3 */
        __m512d hi03 = _mm512_shuffle_f64x2(t[h], t[2 + h], 0xdd); /* cols 2+h, 6+h */
        __m512d lo47 = _mm512_shuffle_f64x2(t[4 + h], t[6 + h], 0x88);
        __m512d hi47 = _mm512_shuffle_f64x2(t[4 + h], t[6 + h], 0xdd);
        r[h] = _mm512_shuffle_f64x2(lo03, lo47, 0x88);
        r[4 + h] = _mm512_shuffle_f64x2(lo03, lo47, 0xdd);
        r[2 + h] = _mm512_shuffle_f64x2(hi03, hi47, 0x88);
        r[6 + h] = _mm512_shuffle_f64x2(hi03, hi47, 0xdd);
    }
}

/* 4 x 4 doubles: pairs of rows interleaved, then the 128-bit halves. */
static AVX2 ALWAYS void tr4d(__m256d r[4])
{
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* One W x W tile at out (i, j); nt: streaming stores (only where a row of
 * the tile is a whole cache line: AVX2's float64 half lines are left to
 * the caches). */
#define TILE(NAME, ATTR, T, V, W, LOAD, STORE, STREAM, OP, TR)                                 \
    static ATTR ALWAYS void NAME(char op, bool nt, T *o, int64_t ldo, const T *x, int64_t ldx, \
                                 bool xt, const T *y, int64_t ldy, bool yt, int64_t i,         \
                                 int64_t j)                                                    \
    {                                                                                          \
        V a[W], b[W];                                                                          \
        if (xt && yt) {                                                                        \
            for (int k = 0; k < W; k++)                                                        \
                a[k] = OP(op, LOAD(x + (j + k) * ldx + i), LOAD(y + (j + k) * ldy + i));       \
            TR(a);                                                                             \
        } else if (yt) {                                                                       \
            for (int k = 0; k < W; k++) b[k] = LOAD(y + (j + k) * ldy + i);                    \
            TR(b);                                                                             \
            for (int k = 0; k < W; k++) a[k] = OP(op, LOAD(x + (i + k) * ldx + j), b[k]);      \
        } else {                                                                               \
            for (int k = 0; k < W; k++) b[k] = LOAD(x + (j + k) * ldx + i);                    \
            TR(b);                                                                             \
            for (int k = 0; k < W; k++) a[k] = OP(op, b[k], LOAD(y + (i + k) * ldy + j));      \
        }                                                                                      \
        if (nt && W * sizeof(T) == 64)                                                         \
            for (int k = 0; k < W; k++) STREAM(o + (i + k) * ldo + j, a[k]);                   \
        else                                                                                   \
            for (int k = 0; k < W; k++) STORE(o + (i + k) * ldo + j, a[k]);                    \
    }
TILE(tile16, AVX512, float, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_stream_ps, op16,
     ad__transpose16_avx512)
TILE(tile8d, AVX512, double, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_stream_pd, op8d,
     tr8d)
TILE(tile4d, AVX2, double, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_stream_pd, op4d,
     tr4d)


/* AVX2, float32: a 16 x 16 tile as four 8 x 8 ones, the two that read the
 * same lines of a transposed operand one after the other (the second from
 * L1), gathered in a buffer so that each row of out is stored whole: with
 * streaming stores two halves of one line back to back (8 x 8 tiles
 * storing half lines measured 0.36-0.43 of memcpy, these 0.44-0.57). */
static AVX2 ALWAYS void tile16_avx2(char op, bool nt, float *o, int64_t ldo, const float *x,
                                    int64_t ldx, bool xt, const float *y, int64_t ldy, bool yt,
                                    int64_t i, int64_t j)
{
    float buf[16][16] __attribute__((aligned(32)));
    for (int jh = 0; jh < 16; jh += 8)
        for (int ih = 0; ih < 16; ih += 8) {
            __m256 a[8], b[8];
            int64_t ii = i + ih, jj = j + jh;
            if (xt && yt) {
                for (int k = 0; k < 8; k++)
                    a[k] = op8(op, _mm256_loadu_ps(x + (jj + k) * ldx + ii),
                               _mm256_loadu_ps(y + (jj + k) * ldy + ii));
                ad__transpose8_avx2(a);
            } else if (yt) {
                for (int k = 0; k < 8; k++) b[k] = _mm256_loadu_ps(y + (jj + k) * ldy + ii);
                ad__transpose8_avx2(b);
                for (int k = 0; k < 8; k++)
                    a[k] = op8(op, _mm256_loadu_ps(x + (ii + k) * ldx + jj), b[k]);
            } else {
                for (int k = 0; k < 8; k++) b[k] = _mm256_loadu_ps(x + (jj + k) * ldx + ii);
                ad__transpose8_avx2(b);
                for (int k = 0; k < 8; k++)
                    a[k] = op8(op, b[k], _mm256_loadu_ps(y + (ii + k) * ldy + jj));
            }
            for (int k = 0; k < 8; k++) _mm256_store_ps(&buf[ih + k][jh], a[k]);
        }
    for (int k = 0; k < 16; k++) {
        __m256 lo = _mm256_load_ps(&buf[k][0]), hi = _mm256_load_ps(&buf[k][8]);
        float *p = o + (i + k) * ldo + j;
        if (nt) {
            _mm256_stream_ps(p, lo);
            _mm256_stream_ps(p + 8, hi);
        } else {
            _mm256_storeu_ps(p, lo);
            _mm256_storeu_ps(p + 8, hi);
        }
    }
}

/* Software prefetch of the next block, spread over the tiles of this one:
 * a region of a matrix, line by line along its rows.  The hint is T1
 * (locality 2), not T0: the lines of a block that a transposed operand's
 * tiles read at one column offset lie whole rows apart (16 KB at 4096
 * floats) and so in the same few L1 sets; fetched into L1 a block ahead
 * they would evict one another before use.  Measured on AMD EPYC at
 * 4096 x 4096: T0 0.46, T1 0.58-0.65, T2 0.59-0.61 of memcpy with these
 * blocks (docs/benchmarks.md). */
typedef struct pf_region {
    const char *row;  /* the row of the next line, at the region's first column */
    int64_t ld;       /* bytes from one row to the next */
    int64_t nl, col;  /* lines per row; the next one's index in its row */
    int64_t left, per; /* lines still to fetch; lines per tile */
} pf_region;

/* Rows [r0, r1), elements [c0, c1) of each, of a matrix of ESZ-byte
 * elements with rows ld elements apart, over `tiles` calls of pf_step. */
static inline void pf_set(pf_region *g, const void *p, int64_t esz, int64_t ld, int64_t r0,
                          int64_t r1, int64_t c0, int64_t c1, int64_t tiles)
{
    g->ld = ld * esz;
    g->row = (const char *)p + r0 * g->ld + c0 * esz;
    g->nl = ((c1 - c0) * esz + 63) / 64;
    g->col = 0;
    g->left = (r1 - r0) * g->nl;
    g->per = (g->left + tiles - 1) / tiles;
}

static inline void pf_step(pf_region *g)
{
    for (int64_t e = 0; e < g->per && g->left > 0; e++, g->left--) {
        __builtin_prefetch(g->row + g->col * 64, 0, 2);
        if (++g->col == g->nl) g->col = 0, g->row += g->ld;
    }
}

/* The whole matrix in tiles of W, blocks of BI x BJ (along out's rows
 * within a block, blocks along out's rows too), the edges after.  While a
 * block runs, the next one's lines are prefetched a few per tile, each
 * operand's along its own rows (a transposed one's block is BJ of its
 * rows, BI elements long), so that memory sees runs of whole lines rather
 * than the tiles' scattered ones: with AVX2 always, with AVX-512 where
 * ad__prefetch_streams() says (Intel's CPUs; on an AMD Zen 5, over 4096 x
 * 4096, it lowered add_t from 0.62-0.63 of memcpy to 0.49-0.50 in float32
 * and from 0.62 to 0.55 in float64, 7 and 5 interleaved pairs, while
 * AVX2's float32 tiles there lost without it, 0.43 -> 0.37).  An out of
 * STREAM_MIN bytes or more, too big to be in cache when it is next read,
 * is written with streaming stores (no read of its lines first, a quarter
 * of the traffic) when its rows are 64-byte aligned. */
#define DRIVER(NAME, ATTR, T, W, TILE, EDGE, PREFETCH)                                         \
    static ATTR ALWAYS void NAME##_body(char op, int64_t m, int64_t n, T *o, int64_t ldo,      \
                                        const T *x, int64_t ldx, bool xt, const T *y,          \
                                        int64_t ldy, bool yt)                                  \
    {                                                                                          \
        const int64_t BI = BI_BYTES / (int64_t)sizeof(T), BJ = BJ_BYTES / (int64_t)sizeof(T);  \
        const int64_t es = (int64_t)sizeof(T);                                                 \
        int64_t mw = m / W * W, nw = n / W * W;                                                \
        bool nt = m * ldo * es >= STREAM_MIN && (uintptr_t)o % 64 == 0 && ldo * es % 64 == 0; \
        bool pf = PREFETCH;                                                                    \
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
                if (pf && nib < mw) {                                                          \
                    if (xt) pf_set(&g[ng++], x, es, ldx, njb, nje, nib, nie, tiles);           \
                    else pf_set(&g[ng++], x, es, ldx, nib, nie, njb, nje, tiles);              \
                    if (yt) pf_set(&g[ng++], y, es, ldy, njb, nje, nib, nie, tiles);           \
                    else pf_set(&g[ng++], y, es, ldy, nib, nie, njb, nje, tiles);              \
                }                                                                              \
                for (int64_t i = ib; i < ie; i += W)                                           \
                    for (int64_t j = jb; j < je; j += W) {                                     \
                        for (int q = 0; q < ng; q++) pf_step(&g[q]);                           \
                        TILE(op, nt, o, ldo, x, ldx, xt, y, ldy, yt, i, j);                    \
                    }                                                                          \
            }                                                                                  \
        }                                                                                      \
        if (nt) _mm_sfence(); /* the streamed stores before any later ones */                  \
        EDGE(op, o, ldo, x, ldx, xt, y, ldy, yt, 0, mw, nw, n);                                \
        EDGE(op, o, ldo, x, ldx, xt, y, ldy, yt, mw, m, 0, n);                                 \
    }                                                                                          \
    static ATTR void NAME(char op, int64_t m, int64_t n, T *o, int64_t ldo, const T *x,        \
                          int64_t ldx, bool xt, const T *y, int64_t ldy, bool yt)              \
    {                                                                                          \
        switch (op) {                                                                          \
        case '+': NAME##_body('+', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;               \
        case '-': NAME##_body('-', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;               \
        case '*': NAME##_body('*', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;               \
        default: NAME##_body('/', m, n, o, ldo, x, ldx, xt, y, ldy, yt); break;                \
        }                                                                                      \
    }
DRIVER(run_avx512_f32, AVX512, float, 16, tile16, edge_f32, ad__prefetch_streams())
DRIVER(run_avx512_f64, AVX512, double, 8, tile8d, edge_f64, ad__prefetch_streams())
DRIVER(run_avx2_f32, AVX2, float, 16, tile16_avx2, edge_f32, true)
DRIVER(run_avx2_f64, AVX2, double, 4, tile4d, edge_f64, true)
#endif

static int forced = ISA_AUTO; /* tests only; not thread-safe, like the other hooks */

static bool cpu_can(int isa)
{
#if PWT_X86
    if (isa == ISA_AVX2) return AD_CPU_AVX2();
    if (isa == ISA_AVX512) return AD_CPU_AVX512();
#endif
    return isa == ISA_ANY;
}

int ad__pw_t_testing_isa(int isa)
{
    if (isa != ISA_AUTO && !cpu_can(isa)) return -1;
    forced = isa;
    return 0;
}

static int isa_now(void)
{
    if (forced != ISA_AUTO) return forced;
    return cpu_can(ISA_AVX512) ? ISA_AVX512 : cpu_can(ISA_AVX2) ? ISA_AVX2 : ISA_ANY;
}

/* The two entry points differ only in the element type. */
#if PWT_X86
#define ENTRY(NAME, T, R512, R2)                                                               \
    bool NAME(char op, int64_t m, int64_t n, T *o, int64_t ldo, const T *x, int64_t ldx,       \
              bool xt, const T *y, int64_t ldy, bool yt)                                       \
    {                                                                                          \
        int isa = isa_now();                                                                   \
        if (isa == ISA_AVX512) R512(op, m, n, o, ldo, x, ldx, xt, y, ldy, yt);                 \
        else if (isa == ISA_AVX2) R2(op, m, n, o, ldo, x, ldx, xt, y, ldy, yt);                \
        return isa != ISA_ANY;                                                                 \
    }
#else
#define ENTRY(NAME, T, R512, R2)                                                               \
    bool NAME(char op, int64_t m, int64_t n, T *o, int64_t ldo, const T *x, int64_t ldx,       \
              bool xt, const T *y, int64_t ldy, bool yt)                                       \
    {                                                                                          \
        (void)op, (void)m, (void)n, (void)o, (void)ldo, (void)x, (void)ldx, (void)xt, (void)y, \
            (void)ldy, (void)yt, (void)isa_now();                                              \
        return false;                                                                          \
    }
#endif
ENTRY(ad__bin_t_f32, float, run_avx512_f32, run_avx2_f32)
ENTRY(ad__bin_t_f64, double, run_avx512_f64, run_avx2_f64)

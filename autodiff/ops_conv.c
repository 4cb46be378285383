/* autodiff/ops_conv.c - the direct convolution: three ops, each linear in
 * each of its two arguments, whose rules are written with one another, so
 * derivatives of every order stay within the three:
 *
 *   conv2d            y = x * w             (x [N,C,H,W], w [O,C,kh,kw])
 *   conv_transpose2d  y = its adjoint in x  (x [N,O,Ho,Wo], w [O,C,kh,kw])
 *   conv2d_weight     dw = its adjoint in w (x [N,C,H,W], gy [N,O,Ho,Wo])
 *
 * and conv2d_relu, y = max(conv2d, 0) with the max applied as the output
 * tile is stored, whose rule masks g by y > 0 (relu_grad) and is then
 * conv2d's: relu's values and gradients to the bit, without relu's pass
 * over y or a kept pre-activation.  In a first-order pass the masked g is
 * made inside the gradient kernels' copies of g, with the bias gradient's
 * sums (relu_fused_bw), and never stored.
 *
 * all with stride 1, dilation 1, one group and a padding p >= 0 (ops_nn.h
 * has the formulas).  ad_conv2d uses conv2d for exactly those; every other
 * convolution stays the composite unfold + matmul of ops_nn.c.
 *
 * Why not im2col + GEMM for these: the product a sample makes is
 * [O, C kh kw] x [C kh kw, Ho Wo], for fmnist's second layer 32 x 288 x
 * 576, too narrow in O for a GEMM to amortise its packing, and a
 * batch-wide im2col measured slower still (its 42 MB of columns leave the
 * cache).  The direct kernel reads the sample's input (86 KB there) from
 * cache instead: the input is copied once into a padded plane per channel
 * stored row after row (width Wp = Wo + kw - 1), so output position
 * f = oh Wp + ow reads tap (i, j) at f + i Wp + j, one offset per tap,
 * and a run of consecutive f is a single unaligned vector load per tap.
 * The columns ow >= Wo of that flat output wrap into the next row; they
 * are computed (kw - 1 of every Wp: 8 % for 3x3 on 26 columns) and
 * dropped.  The forward tile holds COB output channels x CNV vectors of
 * positions in registers (AVX-512: 8 x 3 x 16 floats) and does COB CNV
 * multiply-adds per tap for CNV loads and COB broadcasts.  The weight
 * gradient, a sum over positions, has two kernels.  With many input
 * channels (C kh kw >= 64) it is vectorised over output channels (gy
 * transposed per sample, a cost the C kh kw taps share), CTB taps x CTV
 * vectors of channels at a time, so its sums need no horizontal
 * reduction.  With few (fmnist's first layer: 1) it is vectorised over
 * positions too, into a vector of partial sums per weight added up once
 * per call, CPO output channels x CTB taps at a time (AVX-512: 3 x 9),
 * gy widened to the flat layout with zeros in the wrapped columns so
 * they add nothing.  conv_transpose2d is the forward kernel
 * with the weight read transposed and flipped and padding kh - 1 - p
 * (negative when p >= kh: the input is cropped instead).
 *
 * A 3 x 3 kernel in float32 with 8 input channels or more takes
 * Winograd's F(2x2, 3x3) instead, in the forward kernel and in the weight
 * gradient (conv_kernels.inc has the method, conv_driver.inc's
 * wino_sample and conv_weight_wino the loops): 16 products [O, C] x [C,
 * tiles] by the forward tile with one tap, or [C, tiles] x [tiles, O] by
 * the weight-gradient tile, 16 multiply-adds per 2 x 2 outputs and input
 * channel instead of 36.
 *
 * Weights that are not all finite (and a weight gradient that came out
 * so) take plain sums over the formulas' terms instead: the kernels' extra
 * terms, zeros of padding and of wrapped columns, would be 0 inf = NaN
 * there (ops_conv_plain.c).
 *
 * Variants: float32 compiled for the baseline target, AVX2+FMA and
 * AVX-512 (target attributes, as gemm.c and vmath.c do), chosen at run
 * time by the CPU; float64 for the baseline only (correct, not tuned).
 * Like gemm.c, the x86 variants fuse multiply-adds, so float32 results
 * differ in the last bits between CPUs (and from the composite, which
 * adds in another order); each variant gives the same bits every run. */
#include "internal.h"
#include "tape_impl.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CONV_X86 1
#else
#define CONV_X86 0
#endif

/* Let a * b + c become one fused multiply-add in the tiles (ISO C turns
 * contraction off; gemm.c does the same for its kernels, and says why
 * clang's is "on", not "fast"). */
#if defined(__clang__)
#define CONTRACT_FAST _Pragma("clang fp contract(on)")
#define FAST_ATTR
#else
#define CONTRACT_FAST
#define FAST_ATTR __attribute__((optimize("fp-contract=fast")))
#endif

/* GCC would turn conv_copy's loop of vector moves back into a call of
 * memmove, which it exists to avoid. */
#if defined(__GNUC__) && !defined(__clang__)
#define NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_LIBCALL
#endif

/* Keeps vector v in a register: left alone, GCC folds the weight-gradient
 * tile over positions' load of x into each of the CPO multiply-adds that
 * use it, as their memory operand, so every tap's (unaligned, mostly
 * cache-line splitting) load runs CPO times, at half the speed.  An empty asm that claims to change v makes the load happen once
 * and v live in a register.  Only where the constraint is known. */
#if CONV_X86
#define CONV_IN_REG(v) __asm__("" : "+v"(v))
#else
#define CONV_IN_REG(v) ((void)0)
#endif

/* ---- the tiles, per variant ----------------------------------------------------- */
typedef float cv4f __attribute__((vector_size(16)));
typedef double cv2d __attribute__((vector_size(16)));

/* Lanes of a and b picked by the index list idx (lane k of b is CVW + k):
 * the Winograd transforms' deinterleave and interleave.  clang spells it
 * with the indices as arguments, GCC with a vector of them (CVI: the
 * variant's integer vector of the same shape). */
#if defined(__clang__)
#define CV_SHUF(a, b, idx) __builtin_shufflevector(a, b, idx)
#else
#define CV_SHUF(a, b, idx) __builtin_shuffle(a, b, (CVI){idx})
#endif
/* even and odd lanes of the pair (a, b); a's and b's first halves
 * interleaved, then their second halves */
#define CV_EVEN4 0, 2, 4, 6
#define CV_ODD4 1, 3, 5, 7
#define CV_ZIPLO4 0, 4, 1, 5
#define CV_ZIPHI4 2, 6, 3, 7
#define CV_EVEN8 0, 2, 4, 6, 8, 10, 12, 14
#define CV_ODD8 1, 3, 5, 7, 9, 11, 13, 15
#define CV_ZIPLO8 0, 8, 1, 9, 2, 10, 3, 11
#define CV_ZIPHI8 4, 12, 5, 13, 6, 14, 7, 15
#define CV_EVEN16 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define CV_ODD16 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#define CV_ZIPLO16 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define CV_ZIPHI16 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
typedef int32_t cv4i __attribute__((vector_size(16)));

#define CATTR
#define CT float
#define CV cv4f
#define CVW 4
#define COB 4
#define CNV 3
#define CTV 1
#define CPO 1
#define CTB 9
#define CSFX(n) n##_f32_any
#define CVI cv4i
#define CV_EVEN CV_EVEN4
#define CV_ODD CV_ODD4
#define CV_ZIPLO CV_ZIPLO4
#define CV_ZIPHI CV_ZIPHI4
#include "conv_kernels.inc"
#undef CVI
#undef CV_EVEN
#undef CV_ODD
#undef CV_ZIPLO
#undef CV_ZIPHI
#undef CT
#undef CV
#undef CVW
#undef CSFX
#define CT double
#define CV cv2d
#define CVW 2
#define CSFX(n) n##_f64_any
#include "conv_kernels.inc"
#undef CT
#undef CV
#undef CVW
#undef CSFX
#undef COB
#undef CNV
#undef CTV
#undef CPO
#undef CTB
#undef CATTR

#if CONV_X86
/* AVX2: 16 ymm registers; 4 x 3 accumulators, 3 loads and a broadcast
 * forward; 1 output channel x 9 taps for the weight gradient (2 x 9 would
 * not fit). */
typedef float cv8f __attribute__((vector_size(32)));
#define CATTR __attribute__((target("avx2,fma")))
#define CT float
#define CV cv8f
#define CVW 8
#define COB 4
#define CNV 3
#define CTV 1
#define CPO 1
#define CTB 9
#define CSFX(n) n##_f32_avx2
typedef int32_t cv8i __attribute__((vector_size(32)));
#define CVI cv8i
#define CV_EVEN CV_EVEN8
#define CV_ODD CV_ODD8
#define CV_ZIPLO CV_ZIPLO8
#define CV_ZIPHI CV_ZIPHI8
#include "conv_kernels.inc"
/* Winograd's weight gradient (conv_weight_wino) has input channels for
 * taps, any number of them: 2 vectors of output channels x 4 taps, 8
 * accumulators, 2 loads of gy kept and a broadcast per tap: 6 loads for
 * 8 multiply-adds, where 1 x 9 makes 10 for 9 (measured on a Zen 4: the
 * AVX2 tile ran at 78 % of the AVX-512 one's rate). */
#undef CTV
#undef CTB
#define CTV 2
#define CTB 4
#define CDWT_NAME conv_dwt_tile_w_f32_avx2
#include "conv_dwt.inc"
#undef CDWT_NAME
#undef CVI
#undef CV_EVEN
#undef CV_ODD
#undef CV_ZIPLO
#undef CV_ZIPHI
#undef CATTR
#undef CV
#undef CVW
#undef COB
#undef CNV
#undef CTV
#undef CPO
#undef CTB
#undef CSFX
/* AVX-512: 32 zmm registers; forward 8 x 3 = 24 accumulators, 3 loads and
 * a broadcast (or an embedded-broadcast operand); weight gradient 3
 * output channels x 9 taps = 27 accumulators, 3 loads of gy kept and one
 * of x per tap (a third output channel for 32 pads the last block, 3 %). */
typedef float cv16f __attribute__((vector_size(64)));
#define CATTR __attribute__((target("avx512f")))
#define CV cv16f
#define CVW 16
#define COB 8
#define CNV 3
#define CTV 2
#define CPO 3
#define CTB 9
#define CSFX(n) n##_f32_avx512
typedef int32_t cv16i __attribute__((vector_size(64)));
#define CVI cv16i
#define CV_EVEN CV_EVEN16
#define CV_ODD CV_ODD16
#define CV_ZIPLO CV_ZIPLO16
#define CV_ZIPHI CV_ZIPHI16
#include "conv_kernels.inc"
#undef CVI
#undef CV_EVEN
#undef CV_ODD
#undef CV_ZIPLO
#undef CV_ZIPHI
#undef CATTR
#undef CT
#undef CV
#undef CVW
#undef COB
#undef CNV
#undef CTV
#undef CPO
#undef CTB
#undef CSFX
#endif

#if CONV_X86
#include <immintrin.h>

#include "transpose_avx2.h"

/* rows[b OP + o] = src[o S + b] for o < O, b < Wo: one output row of the
 * weight gradient's transposed gy (conv_transpose_gy), in 8 x 8 blocks
 * transposed in registers (unpack, shuffle, swap of 128-bit halves): 8
 * loads and 8 stores of 8 floats per block where the scalar loop makes 64
 * of each, its stores OP floats apart.  The edges (O or Wo not a multiple
 * of 8) go element by element.  Moves only, so the same bits. */
__attribute__((target("avx2"))) static void conv_tr_rows_f32_avx2(float *restrict rows,
                                                                   int64_t OP,
                                                                   const float *restrict src,
                                                                   int64_t S, int64_t O,
                                                                   int64_t Wo)
{
    int64_t O8 = O / 8 * 8, W8 = Wo / 8 * 8;
    for (int64_t o0 = 0; o0 < O8; o0 += 8) {
        const float *s0 = src + o0 * S;
        for (int64_t b0 = 0; b0 < W8; b0 += 8) {
            __m256 r[8];
            for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(s0 + l * S + b0);
            ad__transpose8_avx2(r);
            float *d = rows + b0 * OP + o0;
            for (int m = 0; m < 8; m++) _mm256_storeu_ps(d + m * OP, r[m]);
        }
        for (int64_t o = o0; o < o0 + 8; o++)
            for (int64_t b = W8; b < Wo; b++) rows[b * OP + o] = src[o * S + b];
    }
    for (int64_t o = O8; o < O; o++)
        for (int64_t b = 0; b < Wo; b++) rows[b * OP + o] = src[o * S + b];
}
#endif

/* A variant's tiles and their blocking. */
#define DEFINE_KERN_TYPE(SUF, T)                                                         \
    typedef struct conv_kern_##SUF {                                                     \
        int isa, vw, ob, nv, tv, po, tb;                                                 \
        void (*fw)(const T *restrict, int64_t, int64_t, const T *restrict,               \
                   const T *restrict, const int64_t *restrict, int64_t, int64_t,         \
                   int64_t, T *restrict, int64_t);                                       \
        void (*dwt)(const T *restrict, int64_t, const T *restrict, const int64_t *restrict, \
                    int64_t, int64_t, int64_t, T *restrict);                             \
        void (*dwp)(const T *restrict, int64_t, const T *restrict, const int64_t *restrict, \
                    int64_t, T *restrict, int64_t);                                      \
        void (*copy)(T *restrict, const T *restrict, int64_t);                           \
        void (*copy_relu)(T *restrict, const T *restrict, int64_t);                      \
        /* one row of gy transposed (conv_transpose_gy); NULL: the scalar loop */        \
        void (*tr)(T *restrict, int64_t, const T *restrict, int64_t, int64_t, int64_t);  \
        /* conv2d_relu's rule: gm = g [y > 0] and its sum (conv_mask_sum), and gm  */    \
        double (*mask_sum)(T *restrict, const T *restrict, const T *restrict, int64_t);  \
        void (*copy_mask)(T *restrict, const T *restrict, const T *restrict, int64_t);   \
        /* Winograd's transforms (conv_kernels.inc); NULL: the direct kernel only */     \
        void (*wino_in)(const T *restrict, int64_t, int64_t, int64_t, int64_t, int64_t,  \
                        T *restrict, int64_t, int64_t);                                  \
        bool (*wino_finite)(const T *restrict, int64_t, int64_t, int64_t);               \
        void (*wino_range)(const T *restrict, int64_t, int32_t, int32_t *, int64_t *,    \
                           int64_t *);                                                   \
        void (*wino_out)(const T *restrict, int64_t, int64_t, int64_t, const T *restrict, \
                         int64_t, int64_t, T *restrict, int64_t, int64_t);               \
        void (*wino_gy)(const T *restrict, int64_t, int64_t, int64_t, int64_t, int64_t,  \
                        T *restrict);                                                    \
        /* Winograd's weight gradient's tile, wtv vectors x wtb taps (dwt, or a shape */ \
        /* of its own: its taps are channels); NULL where wino_in is */                  \
        void (*wdwt)(const T *restrict, int64_t, const T *restrict, const int64_t *restrict, \
                     int64_t, int64_t, int64_t, T *restrict);                            \
        int wtv, wtb;                                                                    \
    } conv_kern_##SUF;
DEFINE_KERN_TYPE(f32, float)
DEFINE_KERN_TYPE(f64, double)

enum { ISA_ANY, ISA_AVX2, ISA_AVX512, ISA_AUTO = -1 };

/* Widest first: the automatic choice is the first the CPU runs. */
static const conv_kern_f32 kerns_f32[] = {
#if CONV_X86
    {ISA_AVX512, 16, 8, 3, 2, 3, 9, conv_fw_tile_f32_avx512, conv_dwt_tile_f32_avx512,
     conv_dwp_tile_f32_avx512, conv_copy_f32_avx512, conv_copy_relu_f32_avx512,
     conv_tr_rows_f32_avx2, conv_mask_sum_f32_avx512, conv_copy_mask_f32_avx512,
     wino_in_f32_avx512, wino_finite_f32_avx512, wino_range_f32_avx512, wino_out_f32_avx512,
     wino_gy_f32_avx512, conv_dwt_tile_f32_avx512, 2, 9},
    {ISA_AVX2, 8, 4, 3, 1, 1, 9, conv_fw_tile_f32_avx2, conv_dwt_tile_f32_avx2,
     conv_dwp_tile_f32_avx2, conv_copy_f32_avx2, conv_copy_relu_f32_avx2, conv_tr_rows_f32_avx2,
     conv_mask_sum_f32_avx2, conv_copy_mask_f32_avx2, wino_in_f32_avx2, wino_finite_f32_avx2,
     wino_range_f32_avx2, wino_out_f32_avx2, wino_gy_f32_avx2, conv_dwt_tile_w_f32_avx2, 2, 4},
#endif
    {ISA_ANY, 4, 4, 3, 1, 1, 9, conv_fw_tile_f32_any, conv_dwt_tile_f32_any, conv_dwp_tile_f32_any,
     conv_copy_f32_any, conv_copy_relu_f32_any, NULL, conv_mask_sum_f32_any,
     conv_copy_mask_f32_any, wino_in_f32_any, wino_finite_f32_any, wino_range_f32_any,
     wino_out_f32_any, wino_gy_f32_any, conv_dwt_tile_f32_any, 1, 9},
};
static const conv_kern_f64 kerns_f64[] = {
    {ISA_ANY, 2, 4, 3, 1, 1, 9, conv_fw_tile_f64_any, conv_dwt_tile_f64_any, conv_dwp_tile_f64_any,
     conv_copy_f64_any, conv_copy_relu_f64_any, NULL, conv_mask_sum_f64_any,
     conv_copy_mask_f64_any, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0},
};

static bool cpu_can(int isa)
{
#if CONV_X86
    if (isa == ISA_AVX2) return AD_CPU_AVX2() && __builtin_cpu_supports("fma");
    if (isa == ISA_AVX512) return AD_CPU_AVX512();
#endif
    return isa == ISA_ANY;
}

static int forced = ISA_AUTO; /* tests only; not thread-safe, like the other hooks */

int ad__conv_testing_isa(int isa)
{
    if (isa != ISA_AUTO && !cpu_can(isa)) return -1;
    forced = isa;
    return 0;
}

/* The weight gradient's kernel: -1 by the shape, 0 over output channels,
 * 1 over positions (tests only, like the ISA). */
static int conv_dw_pick = -1;

int ad__conv_testing_dw(int pick)
{
    conv_dw_pick = pick;
    return 0;
}

/* Winograd's F(2x2, 3x3) for the forward kernel's 3 x 3 sums in float32
 * (conv2d, and conv_transpose2d, which is the same kernel): -1 by the
 * shape, unless AD_CONV=direct is in the environment; 0 never; 1 whenever
 * the kernel is 3 x 3 (tests). */
static int conv_wino_pick = -1;

int ad__conv_testing_wino(int pick)
{
    conv_wino_pick = pick;
    return 0;
}

/* Samples whose input Winograd's transform read where it lies
 * (conv_driver.inc's wino_in_place), for the tests: the count since the
 * last call. */
static atomic_llong conv_in_place;

long long ad__conv_testing_in_place(void) { return atomic_exchange(&conv_in_place, 0); }

/* Winograd's filter transform G of F(2x2, 3x3) (conv_kernels.inc has
 * the method): U = G g G^T, and the weight gradient's dw = G^T P G. */
static const double wino_G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

/* Worth it from 8 input channels on: each sum then saves 20 of its 36
 * multiply-adds per 2 x 2 outputs and input channel, while the transforms
 * cost about as much per channel as 2 (in) and per output channel as 1.5
 * (out).  With 1 (fmnist's first layer) the product has nothing to add
 * up and the direct kernel is faster. */
static bool conv_wino_wanted(int64_t C, int64_t kh, int64_t kw)
{
    if (kh != 3 || kw != 3 || conv_wino_pick == 0) return false;
    if (conv_wino_pick == 1) return true;
    const char *e = getenv("AD_CONV");
    if (e && !strcmp(e, "direct")) return false;
    return C >= 8;
}

static const conv_kern_f32 *pick_f32(void)
{
    int n = (int)(sizeof kerns_f32 / sizeof kerns_f32[0]);
    for (int i = 0; i < n; i++)
        if (forced == ISA_AUTO ? cpu_can(kerns_f32[i].isa) : kerns_f32[i].isa == forced)
            return &kerns_f32[i];
    return &kerns_f32[n - 1];
}

/* Scratch for one call: from the result's tape, its fill level put back
 * when the call returns (nothing else allocates on the tape meanwhile: a
 * tape belongs to one thread), or from the heap for a persistent result. */
static ad_arena_mark conv_mark(const ad_tensor *out)
{
    return out->tape ? ad__arena_mark(&out->tape->arena) : (ad_arena_mark){0};
}
static void *conv_alloc(const ad_tensor *out, size_t bytes)
{
    return out->tape ? ad__arena_alloc(out->tape, bytes) : ad__malloc(bytes);
}
static void conv_release(const ad_tensor *out, void *p, ad_arena_mark m)
{
    if (out->tape) ad__arena_rewind(&out->tape->arena, m);
    else ad__free(p);
}

/* Kernel threads for a call of `work` multiply-adds over `items`
 * independent pieces: one below 2^21 (waking a team costs more), as
 * gemm.c decides. */
static int conv_threads(int64_t work, int64_t items)
{
    int nt = ad__max_threads();
    if (work < ((int64_t)1 << 21) || nt < 2) return 1;
    return items < nt ? (int)(items > 0 ? items : 1) : nt;
}
#ifdef _OPENMP
#define CONV_PARALLEL_FOR _Pragma("omp parallel for schedule(static) num_threads(nt) if (nt > 1)")
#define CONV_THREAD_ID omp_get_thread_num()
#else
#define CONV_PARALLEL_FOR
#define CONV_THREAD_ID 0
#endif

#define KERNEL_FILE "conv_driver.inc"
#include "per_dtype.inc"

/* ---- the kernels by dtype ------------------------------------------------------- */
typedef struct conv_params {
    int64_t p[2]; /* padding */
    int64_t k[2]; /* kernel extent (conv2d_weight's result) */
    bool relu;    /* conv2d_relu: relu applied in the forward's epilogue */
} conv_params;

/* y = conv2d(x, w) + bias (bias may be NULL), then max(y, 0) with relu:
 * K(o, c, i, j) = w[o, c, i, j]. */
static int conv_run(const char *fn, const ad_tensor *x, const ad_tensor *w, const ad_tensor *bias,
                    const int64_t *p, bool relu, ad_tensor *y)
{
    const int64_t *s = w->strides, kh = w->shape[2], kw = w->shape[3];
    if (!ad__conv_all_finite(w)) {
        ad__conv_plain(x, w, bias, p, relu, y);
        return 0;
    }
    if (x->dtype == AD_FLOAT64)
        return conv_forward_f64(fn, &kerns_f64[0], x, NULL,
                                (const double *)w->storage->data + w->offset, s[0], s[1], s[2],
                                s[3], kh, kw, p[0], p[1], bias, relu, y);
    return conv_forward_f32(fn, pick_f32(), x, NULL, (const float *)w->storage->data + w->offset,
                            s[0], s[1], s[2], s[3], kh, kw, p[0], p[1], bias, relu, y);
}

/* y = conv_transpose2d(x, w): the forward kernel with output channel c,
 * input channel o and the taps flipped, K(c, o, i, j) = w[o, c, kh-1-i,
 * kw-1-j], and padding kh - 1 - p.  With xm (laid out like x): of
 * x [xm > 0] (conv2d_relu's rule). */
static int convt_run(const char *fn, const ad_tensor *x, const void *xm, const ad_tensor *w,
                     const int64_t *p, ad_tensor *y)
{
    const int64_t *s = w->strides, kh = w->shape[2], kw = w->shape[3];
    int64_t last = w->offset + (kh - 1) * s[2] + (kw - 1) * s[3];
    if (!ad__conv_all_finite(w)) {
        ad__convt_plain(x, xm, w, p, y);
        return 0;
    }
    if (x->dtype == AD_FLOAT64)
        return conv_forward_f64(fn, &kerns_f64[0], x, xm, (const double *)w->storage->data + last,
                                s[1], s[0], -s[2], -s[3], kh, kw, kh - 1 - p[0], kw - 1 - p[1], NULL,
                                false, y);
    return conv_forward_f32(fn, pick_f32(), x, xm, (const float *)w->storage->data + last, s[1],
                            s[0], -s[2], -s[3], kh, kw, kh - 1 - p[0], kw - 1 - p[1], NULL, false,
                            y);
}

/* dw = conv2d_weight(x, gy); with gm (laid out like gy, contiguous): of
 * gy [gm > 0], each channel's sum added to bacc (conv2d_relu's rule). */
static int convw_run(const char *fn, const ad_tensor *x, const ad_tensor *gy, const void *gm,
                     double *bacc, const conv_params *q, ad_tensor *dw)
{
    int rc = x->dtype == AD_FLOAT64
                 ? conv_weight_f64(fn, &kerns_f64[0], x, gy, gm, bacc, q->k[0], q->k[1], q->p[0],
                                   q->p[1], dw)
                 : conv_weight_f32(fn, pick_f32(), x, gy, gm, bacc, q->k[0], q->k[1], q->p[0],
                                   q->p[1], dw);
    if (rc == 0 && !ad__conv_all_finite(dw)) ad__convw_plain(x, gy, gm, q->p, dw);
    return rc;
}

/* ---- the three ops ---------------------------------------------------------------
 * Constructors without argument checks (the public functions and the
 * rules call them with consistent shapes). */
static ad_tensor *conv_op(const char *fn, ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                          const int64_t *p, bool relu);
static ad_tensor *convt_op(const char *fn, ad_tensor *x, ad_tensor *w, const int64_t *p);
static ad_tensor *convw_op(const char *fn, ad_tensor *x, ad_tensor *gy, const int64_t *k,
                           const int64_t *p);

/* conv2d: dx = conv_transpose2d(g, w), dw = conv2d_weight(x, g), dbias =
 * sum g (what add's rule gave when the bias was added separately).
 * conv2d_relu: the same with g masked first, g [y > 0] = relu_grad(g, y)
 * (y > 0 exactly where the pre-activation is: the mask relu's own rule
 * takes from its input, without keeping that input); in a first-order
 * pass the mask and the bias sum are one pass (relu_bias_bw). */
/* conv2d_relu's gm and bias gradient from one pass (conv_relu_bias_bw):
 * the values relu_grad and ad_sum give, as new unrecorded tensors.  Only
 * for a first-order pass (grad mode off: nothing to record) over a
 * contiguous g; under AD_CREATE_GRAPH the rule is made of ops. */
static int relu_bias_bw(ad_node *n, ad_tensor *g, ad_tensor **gm, ad_tensor **gb)
{
    static const char *fn = "conv2d_relu backward";
    const ad_tensor *y = n->out;
    int64_t N = y->shape[0], O = y->shape[1], L = y->shape[2] * y->shape[3];
    *gm = ad__alloc(fn, y->tape, y->dtype, 4, y->shape);
    *gb = ad__alloc(fn, y->tape, y->dtype, 1, &O);
    ad_tensor *acc = ad__alloc(fn, y->tape, AD_FLOAT64, 1, &O); /* dead after the rule */
    if (!*gm || !*gb || !acc) return -1;
    if (y->dtype == AD_FLOAT64)
        conv_relu_bias_bw_f64(&kerns_f64[0], (const double *)g->storage->data + g->offset,
                              (const double *)y->storage->data + y->offset, N, O, L,
                              (*gm)->storage->data, (*gb)->storage->data, acc->storage->data);
    else
        conv_relu_bias_bw_f32(pick_f32(), (const float *)g->storage->data + g->offset,
                              (const float *)y->storage->data + y->offset, N, O, L,
                              (*gm)->storage->data, (*gb)->storage->data, acc->storage->data);
    return 0;
}

/* conv2d_relu's first-order rule when it needs the weight's and the
 * bias's gradients: gm = g [y > 0] is never stored.  The weight
 * gradient's kernel makes it as it stages each sample of g (conv_stage:
 * conv_mask_sum, so the bias sums come from that pass too, in
 * conv_relu_bias_bw's order: the same bits), and conv_transpose2d's as it
 * copies g into its padded planes.  Per layer that is g and y read twice
 * where relu_bias_bw reads them once, writes gm and reads gm twice.  With
 * one output channel ad_sum's order is one run over the batch, which a
 * pass per sample cannot follow: relu_bias_bw does that case. */
static int relu_fused_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    static const char *fn = "conv2d_relu backward";
    const conv_params *q = ad__params(n);
    ad_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    int64_t O = y->shape[1];
    const void *ym = (const char *)y->storage->data + y->offset * (int64_t)ad_dtype_size(y->dtype);
    ad_tensor *dx = NULL;
    if (ad__needs_grad(n, 0) && !(dx = ad__alloc(fn, y->tape, x->dtype, 4, x->shape))) return -1;
    ad_tensor *dw = ad__alloc(fn, y->tape, w->dtype, 4, w->shape);
    ad_tensor *gb = ad__alloc(fn, y->tape, y->dtype, 1, &O);
    ad_tensor *acc = ad__alloc(fn, y->tape, AD_FLOAT64, 1, &O); /* dead after the rule */
    if (!dw || !gb || !acc) return -1;
    double *a = acc->storage->data;
    for (int64_t o = 0; o < O; o++) a[o] = 0;
    if (convw_run(fn, x, g, ym, a, q, dw)) return -1;
    for (int64_t o = 0; o < O; o++) {
        if (y->dtype == AD_FLOAT64) ((double *)gb->storage->data)[o] = a[o];
        else ((float *)gb->storage->data)[o] = (float)a[o];
    }
    if (dx && convt_run(fn, g, ym, w, q->p, dx)) return -1;
    gin[0] = dx, gin[1] = dw, gin[2] = gb;
    return 0;
}

static int conv_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const conv_params *q = ad__params(n);
    const int64_t k[2] = {n->in[1]->shape[2], n->in[1]->shape[3]};
    bool dbias = n->nin > 2 && ad__needs_grad(n, 2);
    if (q->relu && dbias && !ad_grad_enabled() && ad_is_contiguous(g) &&
        g->dtype == n->out->dtype) {
        if (ad__needs_grad(n, 1) && n->out->shape[1] > 1) return relu_fused_bw(n, g, gin);
        ad_tensor *gm;
        if (relu_bias_bw(n, g, &gm, &gin[2])) return -1;
        g = gm, dbias = false;
    } else if (q->relu && !(g = ad__relu_grad(g, n->out))) {
        return -1;
    }
    if (ad__needs_grad(n, 0)) gin[0] = convt_op("conv2d backward", g, n->in[1], q->p);
    if (ad__needs_grad(n, 1)) gin[1] = convw_op("conv2d backward", n->in[0], g, k, q->p);
    if (dbias) gin[2] = ad_sum(g, (int[]){0, 2, 3}, 3, false);
    return 0;
}
static int conv_fw(ad_node *n)
{
    const conv_params *q = ad__params(n);
    return conv_run(n->op->name, n->in[0], n->in[1], n->nin > 2 ? n->in[2] : NULL, q->p, q->relu,
                    n->out);
}
static const ad_op OP_CONV2D = {
    .name = "conv2d",
    .formula = "y[n, o, h, w] = bias[o] + sum_{c, i, j} w[o, c, i, j] x[n, c, h - p + i, w - p + j] "
               "(stride 1, bias optional); dx = conv_transpose2d(g, w), "
               "dw = conv2d_weight(x, g), dbias = sum g",
    .backward = conv_bw,
    .forward = conv_fw,
    .params_size = sizeof(conv_params),
};
static const ad_op OP_CONV2D_RELU = {
    .name = "conv2d_relu",
    .formula = "y = max(conv2d(x, w, bias), 0), the max applied as the tiles are stored; "
               "with gm = relu_grad(g, y) = g [y > 0]: dx = conv_transpose2d(gm, w), "
               "dw = conv2d_weight(x, gm), dbias = sum gm",
    .backward = conv_bw,
    .forward = conv_fw,
    .params_size = sizeof(conv_params),
};

/* conv_transpose2d(x, w): dx = conv2d(g, w), dw = conv2d_weight(g, x). */
static int convt_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const conv_params *q = ad__params(n);
    const int64_t k[2] = {n->in[1]->shape[2], n->in[1]->shape[3]};
    if (ad__needs_grad(n, 0))
        gin[0] = conv_op("conv_transpose2d backward", g, n->in[1], NULL, q->p, false);
    if (ad__needs_grad(n, 1))
        gin[1] = convw_op("conv_transpose2d backward", g, n->in[0], k, q->p);
    return 0;
}
static int convt_fw(ad_node *n)
{
    const conv_params *q = ad__params(n);
    return convt_run(n->op->name, n->in[0], NULL, n->in[1], q->p, n->out);
}
static const ad_op OP_CONV_TRANSPOSE2D = {
    .name = "conv_transpose2d",
    .formula = "y[n, c, h, w] = sum_{o, i, j} w[o, c, i, j] x[n, o, h + p - i, w + p - j] "
               "(stride 1); dx = conv2d(g, w), dw = conv2d_weight(g, x)",
    .backward = convt_bw,
    .forward = convt_fw,
    .params_size = sizeof(conv_params),
};

/* conv2d_weight(x, gy): dx = conv_transpose2d(gy, g), dgy = conv2d(x, g). */
static int convw_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const conv_params *q = ad__params(n);
    if (ad__needs_grad(n, 0)) gin[0] = convt_op("conv2d_weight backward", n->in[1], g, q->p);
    if (ad__needs_grad(n, 1)) gin[1] = conv_op("conv2d_weight backward", n->in[0], g, NULL, q->p,
                                                        false);
    return 0;
}
static int convw_fw(ad_node *n)
{
    return convw_run(n->op->name, n->in[0], n->in[1], NULL, NULL, ad__params(n), n->out);
}
static const ad_op OP_CONV2D_WEIGHT = {
    .name = "conv2d_weight",
    .formula = "dw[o, c, i, j] = sum_{n, h, w} gy[n, o, h, w] x[n, c, h - p + i, w - p + j] "
               "(stride 1); dx = conv_transpose2d(gy, g), dgy = conv2d(x, g)",
    .backward = convw_bw,
    .forward = convw_fw,
    .params_size = sizeof(conv_params),
};

static ad_tensor *conv_op(const char *fn, ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                          const int64_t *p, bool relu)
{
    if (!x || !w) return NULL;
    conv_params q = {{p[0], p[1]}, {w->shape[2], w->shape[3]}, relu};
    int64_t shape[4] = {x->shape[0], w->shape[0], x->shape[2] + 2 * p[0] - q.k[0] + 1,
                        x->shape[3] + 2 * p[1] - q.k[1] + 1};
    int nin = bias ? 3 : 2;
    ad_tensor *in[3] = {x, w, bias}, *y = ad__result(fn, nin, in, x->dtype, 4, shape);
    if (!y) return NULL;
    return ad__finish(y, conv_run(fn, x, w, bias, p, relu, y), relu ? &OP_CONV2D_RELU : &OP_CONV2D,
                      nin, in, &q, NULL);
}

static ad_tensor *convt_op(const char *fn, ad_tensor *x, ad_tensor *w, const int64_t *p)
{
    if (!x || !w) return NULL;
    conv_params q = {{p[0], p[1]}, {w->shape[2], w->shape[3]}, false};
    int64_t shape[4] = {x->shape[0], w->shape[1], x->shape[2] - 2 * p[0] + q.k[0] - 1,
                        x->shape[3] - 2 * p[1] + q.k[1] - 1};
    ad_tensor *in[2] = {x, w}, *y = ad__result(fn, 2, in, x->dtype, 4, shape);
    if (!y) return NULL;
    return ad__finish(y, convt_run(fn, x, NULL, w, p, y), &OP_CONV_TRANSPOSE2D, 2, in, &q, NULL);
}

static ad_tensor *convw_op(const char *fn, ad_tensor *x, ad_tensor *gy, const int64_t *k,
                           const int64_t *p)
{
    if (!x || !gy) return NULL;
    conv_params q = {{p[0], p[1]}, {k[0], k[1]}, false};
    int64_t shape[4] = {gy->shape[1], x->shape[1], k[0], k[1]};
    ad_tensor *in[2] = {x, gy}, *y = ad__result(fn, 2, in, x->dtype, 4, shape);
    if (!y) return NULL;
    return ad__finish(y, convw_run(fn, x, gy, NULL, NULL, &q, y), &OP_CONV2D_WEIGHT, 2, in, &q,
                      NULL);
}

/* ---- public functions ------------------------------------------------------------- */

/* ad_conv2d's and ad_conv2d_relu's fast path: groups 1, stride 1,
 * dilation 1, arguments checked there.  The bias starts the tiles' sums
 * instead of being added in a pass of its own over y (its gradient is the
 * same sum add's rule gave); relu is applied as the tiles are stored. */
ad_tensor *ad__conv2d_direct(const char *fn, ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                             const int padding[2], bool relu)
{
    return conv_op(fn, x, w, bias, (const int64_t[]){padding[0], padding[1]}, relu);
}

/* The parameters these two accept: stride 1, dilation 1, groups 1 (0 for
 * each means that), padding >= 0. */
static int direct_params(const char *fn, const ad_conv2d_params *p, int64_t pad[2])
{
    ad_conv2d_params q = p ? *p : (ad_conv2d_params)AD_CONV2D_DEFAULTS;
    for (int a = 0; a < 2; a++) {
        if (q.padding[a] < 0)
            return ad__err(fn, "padding %dx%d: must be >= 0", q.padding[0], q.padding[1]);
        if (q.stride[a] > 1 || q.stride[a] < 0)
            return ad__err(fn, "stride %dx%d: only stride 1 is supported", q.stride[0],
                           q.stride[1]);
        if (q.dilation[a] > 1 || q.dilation[a] < 0)
            return ad__err(fn, "dilation %dx%d: only dilation 1 is supported", q.dilation[0],
                           q.dilation[1]);
        pad[a] = q.padding[a];
    }
    if (q.groups > 1 || q.groups < 0)
        return ad__err(fn, "groups %d: only groups 1 is supported", q.groups);
    return 0;
}

/* A floating 4-D argument of x's dtype. */
static int check_4d(const char *fn, const char *name, const ad_tensor *t, const ad_tensor *x,
                    const char *layout)
{
    if (ad__check_arg(fn, name, t, true)) return -1;
    if (!ad__is_float(t->dtype))
        return ad__err(fn, "%s must be float32 or float64, got %s", name, ad__desc(t));
    if (x && t->dtype != x->dtype)
        return ad__errc(AD_ERR_DTYPE, fn, "%s is %s but x is %s", name,
                        ad_dtype_name(t->dtype), ad_dtype_name(x->dtype));
    if (t->ndim != 4) return ad__err(fn, "%s must be 4-D %s, got %s", name, layout, ad__desc(t));
    return 0;
}

ad_tensor *ad_conv_transpose2d(ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                               const ad_conv2d_params *p)
{
    static const char *fn = "ad_conv_transpose2d";
    int64_t pad[2];
    bool has_bias;
    if (check_4d(fn, "x", x, NULL, "[N, C_in, H, W]") ||
        check_4d(fn, "w", w, x, "[C_in, C_out, kh, kw]") ||
        ad__check_opt(fn, "bias", bias, true, &has_bias) || direct_params(fn, p, pad))
        return NULL;
    if (w->shape[0] != x->shape[1])
        return ad__err(fn, "x has %lld channels but w %s expects %lld", (long long)x->shape[1],
                       ad__shape_str(w), (long long)w->shape[0]), NULL;
    int64_t Cout = w->shape[1];
    if (has_bias && (bias->dtype != x->dtype || bias->ndim != 1 || bias->shape[0] != Cout))
        return ad__err(fn, "bias must be [%lld] %s (the output channels of w %s), got %s",
                       (long long)Cout, ad_dtype_name(x->dtype), ad__shape_str(w),
                       ad__desc(bias)), NULL;
    for (int a = 0; a < 2; a++)
        if (x->shape[2 + a] - 2 * pad[a] + w->shape[2 + a] - 1 < 1)
            return ad__err(fn, "the output would be empty: x %s, w %s, padding %lldx%lld",
                           ad__shape_str(x), ad__shape_str(w), (long long)pad[0],
                           (long long)pad[1]), NULL;
    ad_scope s;
    ad_tensor *in[3] = {x, w, bias};
    if (ad_scope_begin(&s, fn, 3, in, false)) return NULL;
    ad_tensor *y = convt_op(fn, x, w, pad);
    if (bias) y = ad_add(y, ad_reshape(bias, 3, (int64_t[]){Cout, 1, 1}));
    return ad_scope_end(&s, y);
}

ad_tensor *ad_conv2d_weight(ad_tensor *x, const int64_t weight_size[4], ad_tensor *gy,
                            const ad_conv2d_params *p)
{
    static const char *fn = "ad_conv2d_weight";
    int64_t pad[2];
    if (check_4d(fn, "x", x, NULL, "[N, C, H, W]") ||
        check_4d(fn, "grad_output", gy, x, "[N, O, Ho, Wo]") || direct_params(fn, p, pad))
        return NULL;
    if (!weight_size) return ad__err(fn, "weight_size is NULL"), NULL;
    const int64_t *ws = weight_size;
    if (ws[0] != gy->shape[1] || ws[1] != x->shape[1] || ws[2] < 1 || ws[3] < 1 ||
        gy->shape[0] != x->shape[0] ||
        gy->shape[2] != x->shape[2] + 2 * pad[0] - ws[2] + 1 ||
        gy->shape[3] != x->shape[3] + 2 * pad[1] - ws[3] + 1)
        return ad__err(fn, "weight_size %s does not fit x %s, grad_output %s and padding "
                           "%lldx%lld (need [O, C, kh, kw] with Ho = H + 2 p - kh + 1)",
                       ad__dims_str(4, ws), ad__shape_str(x), ad__shape_str(gy),
                       (long long)pad[0], (long long)pad[1]), NULL;
    return convw_op(fn, x, gy, ws + 2, pad);
}

const ad_op *const ad__ops_conv[] = {
    &OP_CONV2D, &OP_CONV2D_RELU, &OP_CONV_TRANSPOSE2D, &OP_CONV2D_WEIGHT, NULL,
};

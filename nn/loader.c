/* nn/loader.c - mini-batches over IDX images or tensors (nn/data.h).
 *
 * Every buffer is made when the loader is: the order array and the batch
 * tensors (one pair for full batches, one for a shorter last batch).  A
 * step only writes into them, so a training loop that draws a batch per
 * step allocates nothing, and the pointers it sees stay the same. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "internal.h"
#include "nn_private.h"

enum { SRC_IDX, SRC_TENSOR };

struct nn_loader {
    int kind;
    /* SRC_IDX: uint8 images, sample_numel bytes each, and labels */
    const uint8_t *images;
    const nn_idx *labels;
    float lut32[256]; /* converted value of each byte, computed once */
    double lut64[256];
    /* lut[v] == v * affine_a + affine_b in double, rounded to the dtype,
     * for every v (checked at construction): fill_batch then converts
     * with a multiply-add the compiler vectorises instead of a table
     * lookup per element (see "bytes to values" below). */
    bool affine;
    double affine_a, affine_b;
    /* SRC_TENSOR: rows of x and y, copied byte for byte */
    ad_tensor *x, *y;
    bool own_x, own_y; /* copies made because the originals had gaps */
    size_t x_row, y_row; /* bytes per sample */

    int64_t n;            /* samples used */
    int64_t sample_numel; /* elements per sample of x */
    ad_dtype xdtype;
    int64_t batch_size, last_size; /* last_size 0: no shorter last batch */
    int64_t nbatches;
    bool drop_last;
    int64_t rank, world;      /* shard (nn_loader_shard): 0 of 1 unless sharded */
    ad_dtype ydtype;
    int yndim;
    int64_t yshape[AD_MAX_DIMS];
    int bndim;
    int64_t bshape[AD_MAX_DIMS]; /* batch shape of x, [0] set per batch */
    ad_tensor *bx[2], *by[2]; /* [0] full batches, [1] the shorter last one */
    void *bx_data[2], *by_data[2];

    bool shuffle;
    uint64_t seed;
    int64_t *order;
    int64_t epoch, pos, stop; /* next sample at order[pos]; epoch ends at stop */
    bool ended;               /* the last call returned 0 */
};

void nn_loader_free(nn_loader *l)
{
    if (!l) return;
    for (int i = 0; i < 2; i++) {
        ad_tensor_free(l->bx[i]);
        ad_tensor_free(l->by[i]);
    }
    if (l->own_x) ad_tensor_free(l->x);
    if (l->own_y) ad_tensor_free(l->y);
    ad_free(l->order);
    ad_free(l);
}

/* The order of an epoch.  Each epoch draws from its own range of the
 * counter-based generator (epoch << 40; a shuffle of n samples takes about
 * n draws), so epoch e's order depends on (seed, e) alone and
 * nn_loader_set_epoch reproduces it without replaying earlier epochs. */
static void start_epoch(nn_loader *l, int64_t epoch)
{
    l->epoch = epoch;
    l->pos = 0;
    l->ended = false;
    for (int64_t i = 0; i < l->n; i++) l->order[i] = i;
    if (!l->shuffle) return;
    ad_rng rng;
    ad_rng_init(&rng, l->seed);
    rng.counter = (uint64_t)epoch << 40;
    for (int64_t i = l->n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)ad_rng_below(&rng, (uint64_t)i + 1);
        int64_t t = l->order[i];
        l->order[i] = l->order[j];
        l->order[j] = t;
    }
}

/* The batch tensors of k (0: full batches, 1: the shorter last one) for b
 * samples, made when missing or of another size. */
static int make_batch(nn_loader *l, int k, int64_t b)
{
    if (l->bx[k] && ad_size(l->bx[k], 0) == b) return 0;
    ad_tensor_free(l->bx[k]);
    ad_tensor_free(l->by[k]);
    l->bx[k] = l->by[k] = NULL;
    l->bx_data[k] = l->by_data[k] = NULL;
    if (b == 0) return 0;
    int64_t shape[AD_MAX_DIMS], yshape[AD_MAX_DIMS];
    memcpy(shape, l->bshape, sizeof shape);
    memcpy(yshape, l->yshape, sizeof yshape);
    shape[0] = yshape[0] = b;
    l->bx[k] = ad_empty(NULL, l->xdtype, l->bndim, shape);
    if (!l->bx[k]) return -1;
    l->bx_data[k] = ad_data(l->bx[k]);
    if (l->yndim > 0) {
        l->by[k] = ad_empty(NULL, l->ydtype, l->yndim, yshape);
        if (!l->by[k]) return -1;
        l->by_data[k] = ad_data(l->by[k]);
    }
    return 0;
}

/* Rank r's slice of a global batch of g samples: its offset and size.
 * A whole global batch gives every rank batch_size; a shorter one is
 * split as evenly as can be, the first g % world ranks taking one more. */
static void slice_of(const nn_loader *l, int64_t g, int64_t *off, int64_t *b)
{
    if (g == l->batch_size * l->world) {
        *off = l->rank * l->batch_size;
        *b = l->batch_size;
        return;
    }
    int64_t q = g / l->world, extra = g % l->world;
    *off = l->rank * q + (l->rank < extra ? l->rank : extra);
    *b = q + (l->rank < extra);
}

/* The epoch's layout from n, batch_size, drop_last and the shard: where it
 * stops, the batches and the shorter last batch's size on this rank, and
 * the batch tensors for them. */
static int partition(const char *fn, nn_loader *l)
{
    if (l->world > INT64_MAX / l->batch_size)
        return nn__err(fn, "batch_size %lld times %lld workers overflows",
                       (long long)l->batch_size, (long long)l->world);
    int64_t g = l->batch_size * l->world, whole = l->n / g, rest = l->n % g;
    if (l->drop_last || rest < l->world) rest = 0;
    if (whole == 0 && rest == 0 && l->world == 1)
        return nn__err(fn, "drop_last with batch_size %lld and only %lld samples leaves no "
                           "batch", (long long)l->batch_size, (long long)l->n);
    if (whole == 0 && rest == 0)
        return nn__err(fn, "%lld samples leave no batch for %lld workers with batch_size %lld%s",
                       (long long)l->n, (long long)l->world, (long long)l->batch_size,
                       l->drop_last ? " and drop_last" : "");
    l->stop = whole * g + rest;
    l->nbatches = whole + (rest > 0);
    l->last_size = 0;
    int64_t off;
    if (rest > 0) slice_of(l, rest, &off, &l->last_size);
    if (l->last_size == l->batch_size) l->last_size = 0; /* served by the full pair */
    if (make_batch(l, 0, whole > 0 || l->last_size == 0 ? l->batch_size : 0) ||
        make_batch(l, 1, l->last_size))
        return -1;
    return 0;
}

/* Checks the options common to both kinds and sets up everything that
 * depends only on n and the sample shape: order, batch tensors. */
static int setup(const char *fn, nn_loader *l, const nn_loader_options *o, int64_t total,
                 int sndim, const int64_t *sshape, int yndim, const int64_t *yshape,
                 ad_dtype ydtype)
{
    if (o->batch_size < 1)
        return nn__err(fn, "batch_size must be at least 1, got %lld", (long long)o->batch_size);
    if (o->limit < 0 || o->limit > total)
        return nn__err(fn, "limit %lld out of range 0..%lld (0 uses all samples)",
                       (long long)o->limit, (long long)total);
    l->n = o->limit ? o->limit : total;
    if (l->n == 0) return nn__err(fn, "the data set has no samples");
    l->batch_size = o->batch_size;
    l->drop_last = o->drop_last;
    l->rank = 0;
    l->world = 1;
    l->shuffle = o->shuffle;
    l->seed = o->seed;

    /* The sample shape of the batch: as stored, or the one asked for. */
    int64_t shape[AD_MAX_DIMS] = {0};
    int ndim = 1 + (o->sample_ndim ? o->sample_ndim : sndim);
    if (o->sample_ndim < 0 || o->sample_ndim > AD_MAX_DIMS - 1 || ndim > AD_MAX_DIMS)
        return nn__err(fn, "a sample has %d dimensions; at most %d fit in a batch",
                       o->sample_ndim ? o->sample_ndim : sndim, AD_MAX_DIMS - 1);
    int64_t numel = 1;
    bool zero = false, overflow = false;
    for (int i = 1; i < ndim; i++) {
        shape[i] = o->sample_ndim ? o->sample_shape[i - 1] : sshape[i - 1];
        if (shape[i] < 0)
            return nn__err(fn, "sample_shape has a negative extent %lld", (long long)shape[i]);
        if (shape[i] == 0) zero = true;
        else if (numel > INT64_MAX / shape[i]) overflow = true;
        else numel *= shape[i];
    }
    if (zero) numel = 0;
    else if (overflow) return nn__err(fn, "sample_shape has too many elements");
    if (numel != l->sample_numel)
        return nn__err(fn, "sample_shape has %lld elements, a stored sample has %lld",
                       (long long)numel, (long long)l->sample_numel);

    l->order = ad_malloc((size_t)l->n * sizeof *l->order);
    if (!l->order) return nn__err(fn, "out of memory");
    l->bndim = ndim;
    memcpy(l->bshape, shape, sizeof shape);
    l->ydtype = ydtype;
    l->yndim = yndim;
    for (int i = 1; i < yndim; i++) l->yshape[i] = yshape[i];
    if (partition(fn, l)) return -1;
    start_epoch(l, 0);
    return 0;
}

/* ---- bytes to values ------------------------------------------------------------------
 * A batch of Fashion-MNIST is 50k bytes to convert, drawn image by image
 * in shuffled order.  The table lookup per element (lut32[s[j]]) does not
 * vectorise (x86 has no fast gather), and was 7 % of the MLP's training
 * profile.  The conversion (v scale - mean) / std is affine in v, so
 * v a + b with a = scale / std and b = -mean / std, in double, rounded to
 * the dtype, is the same value up to an ulp of double: after rounding to
 * float32 it is the table's value for every byte except, rarely, one that
 * lands within an ulp of double of a float32 rounding boundary.  Setup
 * checks all 256 bytes and keeps the table when any differs, so the
 * batches are the same bits either way.  The loops are compiled for the
 * baseline and, on x86, for AVX2 and AVX-512 (chosen at run time), as
 * the optimisers' are; contraction into a fused multiply-add is off
 * (-std=c11 for gcc, the pragma for clang) so every copy and the check
 * round the same way. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LOADER_X86 1
#else
#define LOADER_X86 0
#endif

#define CONVERT_LOOPS(sfx, attr)                                                          \
    static attr void cvt_f32_##sfx(float *restrict d, const uint8_t *restrict s,          \
                                   int64_t m, double a, double b)                         \
    {                                                                                     \
        for (int64_t j = 0; j < m; j++) d[j] = (float)((double)s[j] * a + b);             \
    }                                                                                     \
    static attr void cvt_f64_##sfx(double *restrict d, const uint8_t *restrict s,         \
                                   int64_t m, double a, double b)                         \
    {                                                                                     \
        for (int64_t j = 0; j < m; j++) d[j] = (double)s[j] * a + b;                      \
    }
CONVERT_LOOPS(any, )
#if LOADER_X86
CONVERT_LOOPS(avx2, __attribute__((target("avx2"))))
CONVERT_LOOPS(avx512, __attribute__((target("avx512f"))))
#endif

/* 2 AVX-512, 1 AVX2, 0 the portable loops (ad_isa's values). */
static int pick_isa(void) { return LOADER_X86 ? (int)ad_kernel_isa() : 0; }

static void convert_f32(int isa, float *d, const uint8_t *s, int64_t m, double a, double b)
{
#if LOADER_X86
    if (isa == 2) {
        cvt_f32_avx512(d, s, m, a, b);
        return;
    }
    if (isa == 1) {
        cvt_f32_avx2(d, s, m, a, b);
        return;
    }
#endif
    (void)isa;
    cvt_f32_any(d, s, m, a, b);
}

static void convert_f64(int isa, double *d, const uint8_t *s, int64_t m, double a, double b)
{
#if LOADER_X86
    if (isa == 2) {
        cvt_f64_avx512(d, s, m, a, b);
        return;
    }
    if (isa == 1) {
        cvt_f64_avx2(d, s, m, a, b);
        return;
    }
#endif
    (void)isa;
    cvt_f64_any(d, s, m, a, b);
}

/* Whether the multiply-add gives the table's bits for every byte (and in
 * the dtype the loader makes): then the loader uses it. */
static bool affine_matches(const nn_loader *l, double a, double b)
{
    uint8_t v[256];
    for (int i = 0; i < 256; i++) v[i] = (uint8_t)i;
    if (l->xdtype == AD_FLOAT32) {
        float d[256];
        cvt_f32_any(d, v, 256, a, b);
        return memcmp(d, l->lut32, sizeof d) == 0;
    }
    double d[256];
    cvt_f64_any(d, v, 256, a, b);
    return memcmp(d, l->lut64, sizeof d) == 0;
}

static bool is_int_type(nn_idx_type t)
{
    return t == NN_IDX_UINT8 || t == NN_IDX_INT8 || t == NN_IDX_INT16 || t == NN_IDX_INT32;
}

nn_loader *nn_loader_from_idx(const nn_idx *images, const nn_idx *labels,
                              const nn_loader_options *opts)
{
    static const char *fn = "nn_loader_from_idx";
    if (!images || !opts) {
        nn__err(fn, "%s is NULL", !images ? "images" : "opts");
        return NULL;
    }
    /* filled by the caller, perhaps: the shape must be what the data holds */
    if (nn__idx_check(fn, images) || (labels && nn__idx_check(fn, labels))) return NULL;
    if (images->type != NN_IDX_UINT8 || !images->data || images->ndim < 1) {
        nn__err(fn, "images must be ubyte (uint8) with at least one dimension, got %s with "
                    "%d (use nn_loader_from_tensors for other data)",
                nn_idx_type_name(images->type), images->ndim);
        return NULL;
    }
    if (labels && (!is_int_type(labels->type) || labels->ndim != 1 ||
                   labels->dims[0] != images->dims[0] || !labels->data)) {
        nn__err(fn, "labels must be an integer type of shape [%lld], got %s with %d "
                    "dimensions (first extent %lld)", (long long)images->dims[0],
                nn_idx_type_name(labels->type), labels->ndim, (long long)labels->dims[0]);
        return NULL;
    }
    if (opts->dtype != AD_FLOAT32 && opts->dtype != AD_FLOAT64) {
        nn__err(fn, "dtype must be float32 or float64, got %s", ad_dtype_name(opts->dtype));
        return NULL;
    }
    double scale = opts->scale != 0 ? opts->scale : 1.0 / 255.0;
    double mean = opts->normalize ? opts->mean : 0, std = opts->normalize ? opts->std : 1;
    if (!isfinite(scale) || !isfinite(mean) || !isfinite(std) || std <= 0) {
        nn__err(fn, "scale, mean and std must be finite and std positive, got scale %g, "
                    "mean %g, std %g", scale, mean, std);
        return NULL;
    }
    nn_loader *l = ad_calloc(1, sizeof *l);
    if (!l) {
        nn__err(fn, "out of memory");
        return NULL;
    }
    l->kind = SRC_IDX;
    l->images = images->data;
    l->labels = labels;
    l->xdtype = opts->dtype;
    l->sample_numel = 1;
    for (int i = 1; i < images->ndim; i++) l->sample_numel *= images->dims[i];
    for (int v = 0; v < 256; v++) {
        l->lut64[v] = ((double)v * scale - mean) / std;
        l->lut32[v] = (float)l->lut64[v];
    }
    l->affine_a = scale / std;
    l->affine_b = -mean / std;
    l->affine = affine_matches(l, l->affine_a, l->affine_b);
    if (setup(fn, l, opts, images->dims[0], images->ndim - 1, images->dims + 1,
              labels ? 1 : 0, NULL, AD_INT64)) {
        nn_loader_free(l);
        return NULL;
    }
    return l;
}

/* t itself when contiguous, else a contiguous copy the loader owns. */
static ad_tensor *contiguous(ad_tensor *t, bool *own)
{
    *own = !ad_is_contiguous(t);
    ad_tensor *c = *own ? ad_copy(NULL, t) : t;
    if (!c) /* "nn_loader_from_tensors: a contiguous copy: ad_copy: ..." */
        nn__err("nn_loader_from_tensors", "a contiguous copy: %s",
                ad_error() ? ad_error() : "failed");
    return c;
}

nn_loader *nn_loader_from_tensors(ad_tensor *x, ad_tensor *y, const nn_loader_options *opts)
{
    static const char *fn = "nn_loader_from_tensors";
    if (!x || !opts) {
        nn__err(fn, "%s is NULL", !x ? "x" : "opts");
        return NULL;
    }
    /* y is optional: a NULL from a failed call is reported, not "no y". */
    if (ad_check_optional(fn, "y", y)) return NULL;
    if (opts->dtype != AD_FLOAT32 || opts->scale != 0 || opts->normalize) {
        nn__err(fn, "dtype, scale and normalize apply to nn_loader_from_idx only; a tensor "
                    "loader keeps the tensors' dtypes and values");
        return NULL;
    }
    if (ad_ndim(x) < 1 || (y && ad_ndim(y) < 1)) {
        nn__err(fn, "x and y need a first dimension (the samples)");
        return NULL;
    }
    if (y && ad_size(y, 0) != ad_size(x, 0)) {
        nn__err(fn, "x has %lld samples but y has %lld", (long long)ad_size(x, 0),
                (long long)ad_size(y, 0));
        return NULL;
    }
    nn_loader *l = ad_calloc(1, sizeof *l);
    if (!l) {
        nn__err(fn, "out of memory");
        return NULL;
    }
    l->kind = SRC_TENSOR;
    l->x = contiguous(x, &l->own_x);
    if (l->x && y) l->y = contiguous(y, &l->own_y);
    if (!l->x || (y && !l->y)) {
        nn_loader_free(l);
        return NULL;
    }
    int64_t n = ad_size(x, 0);
    l->xdtype = ad_tensor_dtype(x);
    l->sample_numel = 1;
    for (int i = 1; i < ad_ndim(x); i++) l->sample_numel *= ad_size(x, i);
    l->x_row = (size_t)l->sample_numel * ad_dtype_size(l->xdtype);
    int64_t yn = 1;
    for (int i = 1; y && i < ad_ndim(y); i++) yn *= ad_size(y, i);
    if (y) l->y_row = (size_t)yn * ad_dtype_size(ad_tensor_dtype(y));
    if (setup(fn, l, opts, n, ad_ndim(x) - 1, ad_shape(x) + 1, y ? ad_ndim(y) : 0,
              y ? ad_shape(y) : NULL, y ? ad_tensor_dtype(y) : AD_FLOAT32)) {
        nn_loader_free(l);
        return NULL;
    }
    return l;
}

static int64_t label_at(const nn_idx *lb, int64_t i)
{
    switch (lb->type) {
    case NN_IDX_UINT8: return lb->data[i];
    case NN_IDX_INT8: return ((const int8_t *)lb->data)[i];
    case NN_IDX_INT16: return ((const int16_t *)lb->data)[i];
    default: return ((const int32_t *)lb->data)[i];
    }
}

/* The batch buffers are reused and written through ad_data: the core is
 * told, so a backward through ops recorded on the previous batch refuses
 * to run on this one's values. */
static void mark_filled(nn_loader *l, int k)
{
    ad_mark_modified(l->bx[k]);
    if (l->by[k]) ad_mark_modified(l->by[k]);
}

/* Asks the cache for image i's bytes.  In shuffled order each image is
 * anywhere in the set (47 MB for Fashion-MNIST, more than the L3 cache),
 * so fill_batch waited for memory at every image; it now asks for the
 * image AHEAD places on while it converts this one (MLP profile: the
 * loader 6.1 % -> 4 %; 4, 8 and 16 ahead measured alike).  Asking for the
 * whole next batch when one is handed out did not help: the training
 * step in between pushed it out of the caches again.  Only a hint: no
 * value changes. */
enum { AHEAD = 8 };
static void prefetch_image(const nn_loader *l, int64_t i)
{
#if defined(__GNUC__) || defined(__clang__)
    size_t m = (size_t)l->sample_numel;
    const char *p = (const char *)(l->images + (size_t)i * m);
    if (m == 0) return;
    for (size_t o = 0; o < m; o += 64) __builtin_prefetch(p + o, 0, 3);
    __builtin_prefetch(p + m - 1, 0, 3); /* the last line when m is not a multiple of 64 */
#else
    (void)l, (void)i;
#endif
}

/* Rows [lo, hi) of the batch bt into xd and yd (the batch tensors' data
 * for NULL), row i at row i.  It reads only the source and writes only
 * those rows, so parts of one batch can be filled on different threads at
 * once, each giving the bits a whole fill would. */
void nn__loader_fill_rows(const nn__batch *bt, int64_t lo, int64_t hi, void *xd, void *yd)
{
    const nn_loader *l = bt->l;
    const int64_t *idx = bt->idx;
    if (!xd) xd = l->bx_data[bt->k];
    if (!yd) yd = l->by_data[bt->k];
    if (l->kind == SRC_TENSOR) {
        const char *xs = ad_data(l->x), *ys = l->y ? ad_data(l->y) : NULL;
        for (int64_t i = lo; l->x_row && i < hi; i++) /* a row of no bytes: none to copy */
            memcpy((char *)xd + (size_t)i * l->x_row, xs + (size_t)idx[i] * l->x_row, l->x_row);
        for (int64_t i = lo; ys && l->y_row && i < hi; i++)
            memcpy((char *)yd + (size_t)i * l->y_row, ys + (size_t)idx[i] * l->y_row, l->y_row);
        return;
    }
    int64_t m = l->sample_numel;
    int isa = l->affine ? pick_isa() : -1;
    for (int64_t i = lo; i < hi && i < lo + AHEAD; i++) prefetch_image(l, idx[i]);
    for (int64_t i = lo; i < hi; i++) {
        const uint8_t *s = l->images + idx[i] * m;
        if (i + AHEAD < hi) prefetch_image(l, idx[i + AHEAD]);
        if (l->xdtype == AD_FLOAT32) {
            float *d = (float *)xd + i * m;
            if (isa >= 0)
                convert_f32(isa, d, s, m, l->affine_a, l->affine_b);
            else
                for (int64_t j = 0; j < m; j++) d[j] = l->lut32[s[j]];
        } else {
            double *d = (double *)xd + i * m;
            if (isa >= 0)
                convert_f64(isa, d, s, m, l->affine_a, l->affine_b);
            else
                for (int64_t j = 0; j < m; j++) d[j] = l->lut64[s[j]];
        }
        if (l->labels) ((int64_t *)yd)[i] = label_at(l->labels, idx[i]);
    }
}

void nn__loader_filled(const nn__batch *bt) { mark_filled(bt->l, bt->k); }

void nn__loader_prefetch_ahead(const nn__batch *bt, int64_t i)
{
    if (bt->l->kind == SRC_IDX && i + AHEAD < bt->b) prefetch_image(bt->l, bt->idx[i + AHEAD]);
}

/* Only an IDX loader's batches are read ahead: its bytes are converted
 * (the part worth moving off the calling thread), and they are not a
 * tensor that a callback could write through ad_data between steps. */
int nn__loader_peek(const nn_loader *l, nn__batch *bt)
{
    if (!l || l->kind != SRC_IDX || l->pos >= l->stop) return 0;
    int64_t g = l->batch_size * l->world, off, b;
    if (l->stop - l->pos < g) g = l->stop - l->pos;
    slice_of(l, g, &off, &b);
    *bt = (nn__batch){(nn_loader *)l, b == l->batch_size ? 0 : 1, l->order + l->pos + off, b};
    return b > 0;
}

int nn__loader_claim(nn_loader *l, ad_tensor **x, ad_tensor **y, nn__batch *bt)
{
    static const char *fn = "nn_loader_next";
    if (!l || !x) return nn__null_arg(fn, !l ? "l" : "x");
    if (l->pos >= l->stop) {
        if (!l->ended) {
            l->ended = true;
            *x = NULL;
            if (y) *y = NULL;
            return 0;
        }
        start_epoch(l, l->epoch + 1);
    }
    int64_t g = l->batch_size * l->world, off, b;
    if (l->stop - l->pos < g) g = l->stop - l->pos;
    slice_of(l, g, &off, &b);
    int k = b == l->batch_size ? 0 : 1;
    *bt = (nn__batch){l, k, l->order + l->pos + off, b};
    l->pos += g;
    *x = l->bx[k];
    if (y) *y = l->by[k];
    return 1;
}

int nn_loader_next(nn_loader *l, ad_tensor **x, ad_tensor **y)
{
    nn__batch bt = {NULL, 0, NULL, 0}; /* set by a claim that returns 1 */
    int got = nn__loader_claim(l, x, y, &bt);
    if (got != 1) return got;
    nn__loader_fill_rows(&bt, 0, bt.b, NULL, NULL);
    nn__loader_filled(&bt);
    return 1;
}

int nn_loader_shard(nn_loader *l, int64_t rank, int64_t world_size)
{
    const char *fn = "nn_loader_shard";
    if (!l) return nn__null_arg(fn, "l");
    if (world_size < 1 || rank < 0 || rank >= world_size)
        return nn__err(fn, "rank %lld outside a world of size %lld", (long long)rank,
                       (long long)world_size);
    int64_t old_rank = l->rank, old_world = l->world;
    l->rank = rank;
    l->world = world_size;
    if (partition(fn, l)) {
        l->rank = old_rank;
        l->world = old_world;
        partition(fn, l); /* the old layout's tensors, if the failure freed them */
        return -1;
    }
    return nn_loader_reset(l);
}

int nn_loader_reset(nn_loader *l)
{
    if (!l) return nn__null_arg("nn_loader_reset", "l");
    l->pos = 0;
    l->ended = false;
    return 0;
}

int nn_loader_set_epoch(nn_loader *l, int64_t epoch)
{
    if (!l) return nn__null_arg("nn_loader_set_epoch", "l");
    if (epoch < 0)
        return nn__err("nn_loader_set_epoch", "epoch must be >= 0, got %lld", (long long)epoch);
    start_epoch(l, epoch);
    return 0;
}

bool nn__loader_affine(const nn_loader *l) { return l->affine; }

int64_t nn_loader_epoch(const nn_loader *l)
{
    return l ? l->epoch : nn__null_arg("nn_loader_epoch", "l");
}
int64_t nn_loader_num_samples(const nn_loader *l)
{
    return l ? l->n : nn__null_arg("nn_loader_num_samples", "l");
}
int64_t nn_loader_num_batches(const nn_loader *l)
{
    return l ? l->nbatches : nn__null_arg("nn_loader_num_batches", "l");
}
const int64_t *nn_loader_order(const nn_loader *l)
{
    if (!l) nn__null_arg("nn_loader_order", "l");
    return l ? l->order : NULL;
}

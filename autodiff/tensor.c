/* autodiff/tensor.c - tensor headers, storage, creation, element access. */
#include <float.h>
#include <stdlib.h>

#include "internal.h"

const char *ad_dtype_name(ad_dtype d)
{
    switch (d) {
    case AD_FLOAT32: return "float32";
    case AD_FLOAT64: return "float64";
    case AD_INT64: return "int64";
    }
    return "invalid-dtype";
}

size_t ad_dtype_size(ad_dtype d)
{
    if (d == AD_FLOAT32) return 4;
    if (d == AD_FLOAT64 || d == AD_INT64) return 8;
    ad__err("ad_dtype_size", "invalid dtype %d", (int)d);
    return 0;
}

void ad__fmt_shape(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t n = 0;
    if (size == 0) return;
    buf[0] = '\0';
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int d = 0; d < ndim && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* The ring behind ad__dims_str/ad__shape_str/ad__desc: AD_FMT_RING buffers
 * per thread, handed out in turn.  192 bytes hold any shape (AD_MAX_DIMS
 * dimensions of up to 20 characters) followed by a dtype name. */
enum { AD_FMT_RING = 8, AD_FMT_SIZE = 192 };
static _Thread_local char fmt_ring[AD_FMT_RING][AD_FMT_SIZE];
static _Thread_local unsigned fmt_next;

static char *fmt_slot(void)
{
    return fmt_ring[fmt_next++ % AD_FMT_RING];
}

const char *ad__dims_str(int ndim, const int64_t *shape)
{
    char *buf = fmt_slot();
    ad__fmt_shape(ndim, shape, buf, AD_FMT_SIZE);
    return buf;
}

const char *ad__shape_str(const ad_tensor *t)
{
    char *buf = fmt_slot();
    ad_shape_str(t, buf, AD_FMT_SIZE);
    return buf;
}

const char *ad__desc(const ad_tensor *t)
{
    char *buf = fmt_slot();
    ad_shape_str(t, buf, AD_FMT_SIZE);
    if (t) {
        size_t n = strlen(buf);
        snprintf(buf + n, AD_FMT_SIZE - n, " %s", ad_dtype_name(t->dtype));
    }
    return buf;
}

void ad_shape_str(const ad_tensor *t, char *buf, size_t size)
{
    if (!t) {
        if (size) snprintf(buf, size, "(null)");
        return;
    }
    ad__fmt_shape(t->ndim, t->shape, buf, size);
}

int64_t ad__numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

void ad__contig_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d] > 0 ? shape[d] : 1;
    }
}

bool ad__same_shape(const ad_tensor *a, const ad_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* The largest element count accepted: the byte size of the buffer must fit
 * in a signed 64-bit offset with room to spare. */
#define AD_MAX_NUMEL ((int64_t)1 << 58)

int ad__check_shape(const char *fn, int ndim, const int64_t *shape, int64_t *numel)
{
    if (ndim < 0 || ndim > AD_MAX_DIMS)
        return ad__err(fn, "ndim %d out of range 0..%d", ndim, AD_MAX_DIMS);
    if (ndim > 0 && !shape) return ad__err(fn, "shape is NULL for ndim %d", ndim);
    int64_t n = 1, m = 1; /* m: the product of the non-zero extents, which the strides reach */
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return ad__err(fn, "negative extent %lld in dimension %d", (long long)shape[d], d);
        if (shape[d] > 0 && m > AD_MAX_NUMEL / shape[d]) {
            return ad__err(fn, "shape %s has too many elements%s", ad__dims_str(ndim, shape),
                           n == 0 ? " (its strides, if not its elements)" : "");
        }
        n *= shape[d];
        if (shape[d] > 0) m *= shape[d];
    }
    if (numel) *numel = n;
    return 0;
}

/* t becomes a contiguous tensor of that dtype and shape over storage s. */
static ad_tensor *contiguous_over(ad_tensor *t, ad_storage *s, ad_dtype dtype, int ndim,
                                  const int64_t *shape)
{
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    ad__contig_strides(ndim, t->shape, t->strides);
    t->storage = s;
    return t;
}

/* The allocator's blocks are 16-byte aligned (glibc's malloc: 16 bytes
 * past a page for the large ones), so a persistent tensor's rows began
 * in the middle of a cache line and every 64-byte vector load or store of
 * a kernel (the optimiser's update, the packing of a weight) touched two
 * lines.  The arena's tensors start on a line already; these now do too,
 * for 63 bytes more per block.  Below 64 bytes there is no line to
 * straddle twice and the block is kept as it comes. */
ad_storage *ad__storage_alloc(size_t nbytes)
{
    size_t pad = nbytes >= 64 ? 63 : 0;
    if (nbytes > SIZE_MAX - pad) return NULL;
    ad_storage *s = ad__calloc(1, sizeof *s);
    char *block = s ? ad__malloc(nbytes ? nbytes + pad : 1) : NULL;
    if (!block) {
        ad__free(s);
        return NULL;
    }
    uintptr_t a = ((uintptr_t)block + pad) & ~(uintptr_t)pad;
    *s = (ad_storage){.data = block + (a - (uintptr_t)block), .nbytes = nbytes, .refs = 1,
                      .block = block};
    return s;
}

static ad_tensor *new_header(const char *fn, ad_tape *tape)
{
    if (tape && ad__check_tape(fn, tape)) return NULL;
    ad_tensor *t = tape ? ad__tape_header(tape) : ad__calloc(1, sizeof *t);
    if (!t) {
        ad__err(fn, "out of memory");
        return NULL;
    }
    /* ad__tape_header stamps its zeroed header; a persistent one starts
     * with its owner's reference. */
    t->magic = AD_TENSOR_MAGIC;
    t->tape = tape;
    if (tape) ad__tape_note_tensor(tape);
    else atomic_init(&t->hrefs, 1);
    return t;
}

ad_tensor *ad__alloc(const char *fn, ad_tape *tape, ad_dtype dtype, int ndim,
                     const int64_t *shape)
{
    int64_t numel = 0;
    if (dtype != AD_FLOAT32 && dtype != AD_FLOAT64 && dtype != AD_INT64) {
        ad__err(fn, "invalid dtype %d", (int)dtype);
        return NULL;
    }
    if (ad__check_shape(fn, ndim, shape, &numel)) return NULL;
    size_t nbytes = (size_t)numel * ad_dtype_size(dtype);
    ad_tensor *t = new_header(fn, tape);
    if (!t) return NULL;
    ad_storage *s;
    if (tape) {
        s = ad__arena_alloc(tape, sizeof *s);
        void *data = s ? ad__arena_alloc(tape, nbytes ? nbytes : 1) : NULL;
        if (!data) {
            ad__err(fn, "out of memory");
            return NULL;
        }
        *s = (ad_storage){.data = data, .nbytes = nbytes, .refs = 1, .in_arena = true,
                          .backward_gen = ad__backward_stamp(tape)};
    } else {
        if (!(s = ad__storage_alloc(nbytes))) {
            ad__free(t);
            ad__err(fn, "out of memory allocating %zu bytes", nbytes);
            return NULL;
        }
    }
    return contiguous_over(t, s, dtype, ndim, shape);
}

ad_tensor *ad__view(const char *fn, ad_tape *tape, const ad_tensor *base, int ndim,
                    const int64_t *shape, const int64_t *strides, int64_t offset)
{
    ad_tensor *t = new_header(fn, tape);
    if (!t) return NULL;
    ad_storage *s = base->storage;
    if (!s->in_arena) {
        if (tape && ad__tape_hold(tape, s)) {
            ad__err(fn, "out of memory");
            return NULL;
        }
        if (!tape) s->refs++;
    }
    t->dtype = base->dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->strides[d] = strides[d];
    }
    t->offset = offset;
    t->storage = s;
    return t;
}

int ad_tensor_free(ad_tensor *t)
{
    if (!t) return 0;
    if (t->magic != AD_TENSOR_MAGIC) return ad__err("ad_tensor_free", "not a live tensor");
    if (t->released) return ad__err("ad_tensor_free", "tensor was freed already");
    if (t->tape)
        return ad__err("ad_tensor_free", "tensor belongs to a tape; it is freed by "
                                         "ad_tape_reset or ad_tape_free");
    /* Tapes that recorded ops reading t keep it until their reset. */
    t->released = true;
    ad__tensor_unref(t);
    return 0;
}

uint32_t ad_version(const ad_tensor *t)
{
    if (ad__check_arg("ad_version", "t", t, false)) return 0;
    return t->storage->version;
}

int ad_mark_modified(ad_tensor *t)
{
    if (ad__check_arg("ad_mark_modified", "t", t, false)) return -1;
    if (ad__replay_guard("ad_mark_modified", t, NULL)) return -1;
    ad__bump(t);
    return 0;
}

/* ---- creation ----------------------------------------------------------- */

ad_tensor *ad_empty(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape)
{
    return ad__alloc("ad_empty", tape, dtype, ndim, shape);
}

int ad__check_int64_value(const char *fn, double v)
{
    /* [-2^63, 2^63): the doubles whose conversion to int64 is defined (C11
     * 6.3.1.4 leaves NaN, infinities and the rest undefined) */
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
        return ad__err(fn, "%g is not a value an int64 holds (NaN, infinite, or beyond "
                           "+-2^63)", v);
    return 0;
}

/* Every element of a floating src as ad__check_int64_value takes it. */
static int check_int64_values(const char *fn, const ad_tensor *src)
{
    int64_t n = ad__numel(src->ndim, src->shape), idx[AD_MAX_DIMS] = {0};
    for (int64_t e = 0; e < n; e++) {
        if (ad__check_int64_value(fn, ad__ld(src, ad__offset_of(src, idx)))) return -1;
        for (int d = src->ndim - 1; d >= 0 && ++idx[d] == src->shape[d]; d--) idx[d] = 0;
    }
    return 0;
}

static ad_tensor *filled(const char *fn, ad_tape *tape, ad_dtype dtype, int ndim,
                         const int64_t *shape, double v)
{
    if (dtype == AD_INT64 && ad__check_int64_value(fn, v)) return NULL;
    ad_tensor *t = ad__alloc(fn, tape, dtype, ndim, shape);
    if (!t) return NULL;
    int64_t n = ad__numel(ndim, t->shape);
    if (v == 0.0 && !signbit(v)) memset(t->storage->data, 0, t->storage->nbytes); /* not -0 */
    else
        for (int64_t i = 0; i < n; i++) ad__st(t, i, v);
    return t;
}

ad_tensor *ad_zeros(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape)
{
    return filled("ad_zeros", tape, dtype, ndim, shape, 0.0);
}

ad_tensor *ad_ones(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape)
{
    return filled("ad_ones", tape, dtype, ndim, shape, 1.0);
}

ad_tensor *ad_full(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape,
                   double value)
{
    return filled("ad_full", tape, dtype, ndim, shape, value);
}

ad_tensor *ad_scalar_tensor(ad_tape *tape, ad_dtype dtype, double value)
{
    return filled("ad_scalar_tensor", tape, dtype, 0, NULL, value);
}

ad_tensor *ad_from_array(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape,
                         const void *data)
{
    if (!data) {
        ad__err("ad_from_array", "data is NULL");
        return NULL;
    }
    ad_tensor *t = ad__alloc("ad_from_array", tape, dtype, ndim, shape);
    if (t) memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

ad_tensor *ad_from_blob(ad_dtype dtype, int ndim, const int64_t *shape, void *data,
                       void (*release)(void *data, void *ctx), void *ctx)
{
    const char *fn = "ad_from_blob";
    int64_t numel = 0;
    if (dtype != AD_FLOAT32 && dtype != AD_FLOAT64 && dtype != AD_INT64) {
        ad__err(fn, "invalid dtype %d", (int)dtype);
        return NULL;
    }
    if (ad__check_shape(fn, ndim, shape, &numel)) return NULL;
    if (!data) {
        ad__err(fn, "data is NULL");
        return NULL;
    }
    /* Kernels load whole elements (and vectors of them) from data. */
    if ((uintptr_t)data % ad_dtype_size(dtype)) {
        ad__err(fn, "data %p is not aligned to the %zu bytes of a %s", data,
                ad_dtype_size(dtype), ad_dtype_name(dtype));
        return NULL;
    }
    ad_tensor *t = new_header(fn, NULL);
    ad_storage *s = t ? ad__calloc(1, sizeof *s) : NULL;
    if (!s) {
        ad__free(t);
        ad__err(fn, "out of memory");
        return NULL;
    }
    *s = (ad_storage){.data = data, .nbytes = (size_t)numel * ad_dtype_size(dtype), .refs = 1,
                      .borrowed = true, .release = release, .release_ctx = ctx};
    return contiguous_over(t, s, dtype, ndim, shape);
}

ad_tensor *ad_arange(ad_tape *tape, ad_dtype dtype, double start, double stop, double step)
{
    if (step == 0 || !isfinite(step) || !isfinite(start) || !isfinite(stop)) {
        ad__err("ad_arange", "start, stop and step must be finite and step non-zero "
                             "(got %g, %g, %g)", start, stop, step);
        return NULL;
    }
    double count = ceil((stop - start) / step);
    if (count < 0) count = 0;
    if (count > (double)AD_MAX_NUMEL) {
        ad__err("ad_arange", "too many elements (%g)", count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    if (dtype == AD_INT64 && n > 0 &&
        (ad__check_int64_value("ad_arange", start) ||
         ad__check_int64_value("ad_arange", start + (double)(n - 1) * step)))
        return NULL;
    ad_tensor *t = ad__alloc("ad_arange", tape, dtype, 1, &n);
    if (!t) return NULL;
    if (dtype == AD_INT64 && start == floor(start) && step == floor(step) &&
        fabs(step) < 9223372036854775808.0) {
        /* integers in integers: in double they round past 2^53 (the same
         * value several times); wrapping unsigned arithmetic, since the
         * values lie between start and stop */
        uint64_t s0 = (uint64_t)(int64_t)start, d = (uint64_t)(int64_t)step;
        int64_t *v = t->storage->data;
        for (int64_t i = 0; i < n; i++) v[i] = (int64_t)(s0 + (uint64_t)i * d);
        return t;
    }
    for (int64_t i = 0; i < n; i++) ad__st(t, i, start + (double)i * step);
    return t;
}

ad_tensor *ad_linspace(ad_tape *tape, ad_dtype dtype, double start, double stop, int64_t n)
{
    if (n < 1 || !isfinite(start) || !isfinite(stop)) {
        ad__err("ad_linspace", "need n >= 1 and finite ends (got n=%lld)", (long long)n);
        return NULL;
    }
    if (dtype == AD_INT64 && (ad__check_int64_value("ad_linspace", start) ||
                              ad__check_int64_value("ad_linspace", stop)))
        return NULL; /* the points between lie between the ends */
    ad_tensor *t = ad__alloc("ad_linspace", tape, dtype, 1, &n);
    if (!t) return NULL;
    /* Computed from both ends so the last point is exactly stop. */
    for (int64_t i = 0; i < n; i++) {
        double f = n == 1 ? 0.0 : (double)i / (double)(n - 1);
        ad__st(t, i, i == n - 1 && n > 1 ? stop : start + (stop - start) * f);
    }
    return t;
}

ad_tensor *ad_eye(ad_tape *tape, ad_dtype dtype, int64_t n)
{
    int64_t shape[2] = {n, n};
    ad_tensor *t = filled("ad_eye", tape, dtype, 2, shape, 0.0);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) ad__st(t, i * n + i, 1.0);
    return t;
}

/* ---- inspection ----------------------------------------------------------- */

#define CHECK_OR(fn, t, ret)                                                     \
    do {                                                                         \
        if (ad__check_arg(fn, "t", t, false)) return ret;                        \
    } while (0)

ad_dtype ad_tensor_dtype(const ad_tensor *t)
{
    CHECK_OR("ad_tensor_dtype", t, AD_FLOAT64);
    return t->dtype;
}

int ad_ndim(const ad_tensor *t)
{
    CHECK_OR("ad_ndim", t, -1);
    return t->ndim;
}

int64_t ad_size(const ad_tensor *t, int dim)
{
    CHECK_OR("ad_size", t, -1);
    int d;
    if (t->ndim == 0) return ad__err("ad_size", "a 0-dimensional tensor has no dimension %d", dim);
    if (ad__axis("ad_size", dim, t->ndim, &d)) return -1;
    return t->shape[d];
}

const int64_t *ad_shape(const ad_tensor *t)
{
    CHECK_OR("ad_shape", t, NULL);
    return t->shape;
}

const int64_t *ad_strides(const ad_tensor *t)
{
    CHECK_OR("ad_strides", t, NULL);
    return t->strides;
}

int64_t ad_numel(const ad_tensor *t)
{
    CHECK_OR("ad_numel", t, -1);
    return ad__numel(t->ndim, t->shape);
}

bool ad_is_contiguous(const ad_tensor *t)
{
    CHECK_OR("ad_is_contiguous", t, false);
    for (int d = 0; d < t->ndim; d++) /* no elements: contiguous, as in PyTorch */
        if (t->shape[d] == 0) return true;
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->strides[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

ad_tape *ad_tensor_tape(const ad_tensor *t)
{
    CHECK_OR("ad_tensor_tape", t, NULL);
    return t->tape;
}

void *ad_data(ad_tensor *t)
{
    CHECK_OR("ad_data", t, NULL);
    if (!ad_is_contiguous(t)) {
        ad__err("ad_data", "tensor is not contiguous (call ad_contiguous first)");
        return NULL;
    }
    return (char *)t->storage->data + t->offset * (int64_t)ad_dtype_size(t->dtype);
}

typedef struct {
    double *out;
    const ad_tensor *t;
} to_array_ctx;

static void to_array_row(int64_t len, const int64_t *off, const int64_t *step, void *vctx)
{
    to_array_ctx *c = vctx;
    for (int64_t i = 0; i < len; i++) *c->out++ = ad__ld(c->t, off[0] + i * step[0]);
}

int ad_to_array(const ad_tensor *t, double *out)
{
    CHECK_OR("ad_to_array", t, -1);
    if (!out) return ad__err("ad_to_array", "out is NULL");
    ad_iter it = {.ndim = t->ndim};
    memcpy(it.shape, t->shape, sizeof it.shape);
    ad__iter_add(&it, t);
    to_array_ctx c = {out, t};
    ad__iter_run(&it, to_array_row, &c);
    return 0;
}

static int index_offset(const char *fn, const ad_tensor *t, const int64_t *index, int64_t *o)
{
    if (t->ndim > 0 && !index) return ad__err(fn, "index is NULL");
    *o = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        int64_t i = index[d] < 0 ? index[d] + t->shape[d] : index[d];
        if (i < 0 || i >= t->shape[d]) {
            return ad__err(fn, "index %lld out of range for dimension %d of shape %s",
                           (long long)index[d], d, ad__shape_str(t));
        }
        *o += i * t->strides[d];
    }
    return 0;
}

int ad_get(const ad_tensor *t, const int64_t *index, double *value)
{
    int64_t o;
    CHECK_OR("ad_get", t, -1);
    if (!value) return ad__err("ad_get", "value is NULL");
    if (index_offset("ad_get", t, index, &o)) return -1;
    *value = ad__ld(t, o);
    return 0;
}

int ad__refuse_expanded(const char *fn, const char *name, const ad_tensor *t)
{
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] > 1 && t->strides[d] == 0)
            return ad__err(fn, "%s %s has stride 0 in dimension %d (an expanded view): several "
                               "of its elements are one place in memory; write into a tensor "
                               "of its own", name, ad__shape_str(t), d);
    return 0;
}

int ad_set(ad_tensor *t, const int64_t *index, double value)
{
    int64_t o;
    CHECK_OR("ad_set", t, -1);
    /* one element of an expanded view is several: all would change */
    if (ad__refuse_expanded("ad_set", "t", t)) return -1;
    if (t->dtype == AD_INT64 && ad__check_int64_value("ad_set", value)) return -1;
    if (index_offset("ad_set", t, index, &o)) return -1;
    if (ad__replay_guard("ad_set", t, NULL)) return -1;
    ad__st(t, o, value);
    ad__bump(t);
    return 0;
}

double ad_item(const ad_tensor *t)
{
    CHECK_OR("ad_item", t, NAN);
    if (ad__numel(t->ndim, t->shape) != 1) {
        ad__err("ad_item", "tensor of shape %s does not have exactly one element",
                ad__shape_str(t));
        return NAN;
    }
    return ad__ld(t, t->offset);
}

/* ---- copies ----------------------------------------------------------------- */

typedef struct {
    ad_tensor *dst;
    const ad_tensor *src;
} copy_ctx;

/* v rounded to float once, to nearest, ties to even, in integers: C's
 * (float)v is that on x86-64's instruction, but valgrind emulates the
 * instruction through double (rounding twice), and the suite runs under
 * valgrind too. */
static float i64_to_f32(int64_t v)
{
    uint64_t a = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    if (a < ((uint64_t)1 << 24)) return v < 0 ? -(float)a : (float)a; /* exact */
    int top = 63;
    while (!(a >> top)) top--;
    int shift = top - 23; /* keep 24 bits */
    uint64_t m = a >> shift, rem = a & (((uint64_t)1 << shift) - 1);
    uint64_t half = (uint64_t)1 << (shift - 1);
    if (rem > half || (rem == half && (m & 1))) m++; /* m <= 2^24: exact in float */
    float f = ldexpf((float)m, shift);
    return v < 0 ? -f : f;
}

static void copy_row(int64_t len, const int64_t *off, const int64_t *step, void *vctx)
{
    copy_ctx *c = vctx;
    if (c->dst->dtype == c->src->dtype) {
        /* Same dtype: move bytes, so int64 values beyond 2^53 stay exact. */
        size_t es = ad_dtype_size(c->dst->dtype);
        char *d = (char *)c->dst->storage->data + off[0] * (int64_t)es;
        const char *s = (const char *)c->src->storage->data + off[1] * (int64_t)es;
        if (step[0] == 1 && step[1] == 1) {
            memmove(d, s, (size_t)len * es);
            return;
        }
        for (int64_t i = 0; i < len; i++)
            memcpy(d + i * step[0] * (int64_t)es, s + i * step[1] * (int64_t)es, es);
        return;
    }
    if (c->src->dtype == AD_INT64 && c->dst->dtype == AD_FLOAT32) {
        /* int64 -> double rounds past 2^53, and double -> float again:
         * 2^60 + 2^36 + 1 became 2^60; i64_to_f32 rounds once */
        const int64_t *s = (const int64_t *)c->src->storage->data;
        float *d = c->dst->storage->data;
        for (int64_t i = 0; i < len; i++)
            d[off[0] + i * step[0]] = i64_to_f32(s[off[1] + i * step[1]]);
        return;
    }
    for (int64_t i = 0; i < len; i++)
        ad__st(c->dst, off[0] + i * step[0], ad__ld(c->src, off[1] + i * step[1]));
}

bool ad__elem_range(const ad_tensor *t, int64_t *first, int64_t *last)
{
    *first = *last = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] == 0) return false;
        int64_t span = (t->shape[d] - 1) * t->strides[d];
        if (span < 0) *first += span;
        else *last += span;
    }
    return true;
}

/* The bytes [*lo, *hi) of its storage that t's elements lie in (empty
 * when t has no element). */
static void byte_range(const ad_tensor *t, int64_t *lo, int64_t *hi)
{
    int64_t first, last;
    if (!ad__elem_range(t, &first, &last)) {
        *lo = *hi = 0;
        return;
    }
    int64_t es = (int64_t)ad_dtype_size(t->dtype);
    *lo = first * es;
    *hi = (last + 1) * es;
}

/* Whether a and b are the same elements in the same order (then a copy
 * from one to the other changes nothing). */
static bool same_layout(const ad_tensor *a, const ad_tensor *b)
{
    if (a->storage != b->storage || a->dtype != b->dtype || a->offset != b->offset) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] > 1 && a->strides[d] != b->strides[d]) return false;
    return true;
}

/* ad_copy_into, and with guard false ad__copy_into: the library's own
 * copies, made by ops' kernels (which a replay runs again), pass by
 * replay's guard. */
static int copy_into(ad_tensor *dst, const ad_tensor *src, bool guard)
{
    if (ad__check_arg("ad_copy_into", "dst", dst, false) ||
        ad__check_arg("ad_copy_into", "src", src, false))
        return -1;
    if (!ad__same_shape(dst, src)) {
        return ad__err("ad_copy_into", "shapes differ: dst %s, src %s", ad__shape_str(dst),
                       ad__shape_str(src));
    }
    /* An expanded dst writes several values to one element, the last one
     * winning: refused, as PyTorch does. */
    if (ad__refuse_expanded("ad_copy_into", "dst", dst)) return -1;
    if (dst->dtype == AD_INT64 && src->dtype != AD_INT64 &&
        check_int64_values("ad_copy_into", src))
        return -1;
    if (same_layout(dst, src)) {
        ad__bump(dst);
        return 0;
    }
    if (guard && ad__replay_guard("ad_copy_into", dst, src)) return -1;
    /* dst and src in overlapping memory (x and its transpose, a slice and a
     * narrow of one tensor): an element-by-element copy would read values
     * it has already overwritten, so src goes through a copy of its own
     * first. */
    int64_t dlo, dhi, slo, shi;
    byte_range(dst, &dlo, &dhi);
    byte_range(src, &slo, &shi);
    if (dst->storage == src->storage && dlo < shi && slo < dhi) {
        ad_tensor *tmp = ad_copy(NULL, src);
        if (!tmp) return -1;
        ad__copy_convert(dst, tmp);
        ad_tensor_free(tmp);
    } else {
        ad__copy_convert(dst, src);
    }
    ad__bump(dst);
    return 0;
}

int ad_copy_into(ad_tensor *dst, const ad_tensor *src) { return copy_into(dst, src, true); }

int ad__copy_into(ad_tensor *dst, const ad_tensor *src) { return copy_into(dst, src, false); }

void ad__copy_convert(ad_tensor *dst, const ad_tensor *src)
{
    ad_iter it = {.ndim = dst->ndim};
    memcpy(it.shape, dst->shape, sizeof it.shape);
    ad__iter_add(&it, dst);
    ad__iter_add(&it, src);
    copy_ctx c = {dst, src};
    ad__iter_run(&it, copy_row, &c);
}

static ad_tensor *copy(ad_tape *tape, const ad_tensor *t, bool guard)
{
    if (ad__check_arg("ad_copy", "t", t, false)) return NULL;
    ad_tensor *c = ad__alloc("ad_copy", tape, t->dtype, t->ndim, t->shape);
    if (c && copy_into(c, t, guard)) {
        if (!tape) ad_tensor_free(c);
        return NULL;
    }
    return c;
}

ad_tensor *ad_copy(ad_tape *tape, const ad_tensor *t) { return copy(tape, t, true); }

ad_tensor *ad__copy(ad_tape *tape, const ad_tensor *t) { return copy(tape, t, false); }

int ad_fill(ad_tensor *t, double value)
{
    CHECK_OR("ad_fill", t, -1);
    if (t->dtype == AD_INT64 && ad__check_int64_value("ad_fill", value)) return -1;
    if (ad__replay_guard("ad_fill", t, NULL)) return -1;
    ad__bump(t);
    /* Zeroing a gradient every training step is the common case: a plain
     * memset (all-zero bytes are 0.0 and 0 in every dtype). */
    if (ad_is_contiguous(t)) {
        int64_t n = ad__numel(t->ndim, t->shape);
        char *base = (char *)t->storage->data + t->offset * (int64_t)ad_dtype_size(t->dtype);
        if (value == 0.0 && !signbit(value)) {
            memset(base, 0, (size_t)n * ad_dtype_size(t->dtype));
            return 0;
        }
        if (t->dtype == AD_FLOAT32)
            for (int64_t i = 0; i < n; i++) ((float *)base)[i] = (float)value;
        else if (t->dtype == AD_FLOAT64)
            for (int64_t i = 0; i < n; i++) ((double *)base)[i] = value;
        else
            for (int64_t i = 0; i < n; i++) ((int64_t *)base)[i] = (int64_t)value;
        return 0;
    }
    /* Any other layout: a 0-d source on the stack broadcasts over every
     * element of t; still no allocation. */
    int64_t bits = 0;
    ad_storage st = {.data = &bits, .nbytes = sizeof bits, .refs = 1, .in_arena = true};
    ad_tensor v = {.magic = AD_TENSOR_MAGIC, .dtype = t->dtype, .storage = &st};
    ad__st(&v, 0, value);
    ad_iter it = {.ndim = t->ndim};
    memcpy(it.shape, t->shape, sizeof it.shape);
    ad__iter_add(&it, t);
    ad__iter_add(&it, &v);
    copy_ctx c = {t, &v};
    ad__iter_run(&it, copy_row, &c);
    return 0;
}

/* autodiff/ops_index.c - joining and indexing: concat, stack, index_select,
 * index_add, gather, scatter_add; kernel, rule and formula side by side,
 * listed in ad__ops_index at the end.  Every result is a new contiguous
 * tensor; elements move as raw bytes of the dtype (int64 stays exact), with
 * the view helpers of ops_shape.c (ad__slab, ad__copy_same, ...). */
#include "internal.h"
#include "tape_impl.h"

/* Zeros of x's shape and dtype on the tape the rule runs on. */
static ad_tensor *zeros_like(const ad_node *n, const ad_tensor *x)
{
    return ad_zeros(n->out->tape, x->dtype, x->ndim, x->shape);
}

/* ---- concat and stack ------------------------------------------------------------ */

/* "[2,*,3]": shape with dimension d shown as '*'. */
static void fmt_star(const ad_tensor *t, int d, char *buf, size_t size)
{
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && k < size; i++) {
        if (i == d) k += (size_t)snprintf(buf + k, size - k, i ? ",*" : "*");
        else k += (size_t)snprintf(buf + k, size - k, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    }
    if (k < size) snprintf(buf + k, size - k, "]");
}

/* Common checks of a tensor list: n >= 1, every entry live. */
static int check_list(const char *fn, ad_tensor *const *xs, int n)
{
    if (n < 1 || !xs) return ad__err(fn, "need a non-NULL array of n >= 1 tensors, got n = %d", n);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "xs[%d]", i);
        if (ad__check_arg(fn, name, xs[i], false)) return -1;
        if (xs[i]->dtype != xs[0]->dtype)
            return ad__err(fn, "tensor %d is %s but tensor 0 is %s", i,
                           ad_dtype_name(xs[i]->dtype), ad_dtype_name(xs[0]->dtype));
    }
    return 0;
}

/* Every op of this file has one parameter: the axis it works along,
 * normalised. */
typedef struct index_params {
    int axis;
    bool neg_ok; /* index ops: a replay may take negative entries (below) */
} index_params;

static int axis_of(const ad_node *n) { return ((const index_params *)ad__params(n))->axis; }
static bool neg_ok_of(const ad_node *n) { return ((const index_params *)ad__params(n))->neg_ok; }

static int concat_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    int d = axis_of(n);
    int64_t off = 0;
    for (int i = 0; i < n->nin; i++) {
        int64_t len = n->in[i]->shape[d];
        if (ad__needs_grad(n, i) && !(gin[i] = ad_narrow(g, d, off, len))) return -1;
        off += len;
    }
    return 0;
}
static void concat_run(ad_tensor *out, ad_tensor *const *xs, int n, int d)
{
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        ad_tensor v = ad__slab(out, d, off, xs[i]->shape[d], 1);
        ad__copy_same(&v, xs[i]);
        off += xs[i]->shape[d];
    }
}
static int concat_fw(ad_node *n)
{
    concat_run(n->out, n->in, n->nin, axis_of(n));
    return 0;
}
static const ad_op OP_CONCAT = {
    .name = "concat",
    .formula = "y = [x_0, x_1, ...] joined along an axis; "
               "dx_i = narrow(g, axis, offset_i, extent_i)",
    .backward = concat_bw,
    .forward = concat_fw,
    .params_size = sizeof(index_params),
};
ad_tensor *ad_concat(ad_tensor *const *xs, int n, int axis)
{
    static const char *fn = "ad_concat";
    int d;
    if (check_list(fn, xs, n)) return NULL;
    const ad_tensor *x0 = xs[0];
    if (x0->ndim == 0)
        return ad__err(fn, "tensor 0 is 0-dimensional: concat joins along an existing axis "
                           "(ad_stack adds one)"), NULL;
    if (ad__axis(fn, axis, x0->ndim, &d)) return NULL;
    int64_t shape[AD_MAX_DIMS], total = 0;
    memcpy(shape, x0->shape, sizeof shape);
    for (int i = 0; i < n; i++) {
        bool ok = xs[i]->ndim == x0->ndim;
        for (int k = 0; ok && k < x0->ndim; k++) ok = k == d || xs[i]->shape[k] == x0->shape[k];
        if (!ok) {
            char b[160];
            fmt_star(x0, d, b, sizeof b);
            return ad__err(fn, "tensor %d has shape %s, expected %s with the other extents of "
                               "tensor 0 %s", i, ad__shape_str(xs[i]), b, ad__shape_str(x0)),
                   NULL;
        }
        total += xs[i]->shape[d];
        if (total > ((int64_t)1 << 60)) return ad__err(fn, "the result is too large"), NULL;
    }
    shape[d] = total;
    ad_tensor *out = ad__result(fn, n, xs, x0->dtype, x0->ndim, shape);
    if (!out) return NULL;
    concat_run(out, xs, n, d);
    return ad__finish(out, 0, &OP_CONCAT, n, xs, &(index_params){d, false}, NULL);
}

ad_tensor *ad_stack(ad_tensor *const *xs, int n, int axis)
{
    static const char *fn = "ad_stack";
    int a = 0;
    if (check_list(fn, xs, n) || ad__new_axis(fn, axis, xs[0], &a)) return NULL;
    for (int i = 1; i < n; i++)
        if (!ad__same_shape(xs[i], xs[0])) {
            return ad__err(fn, "tensor %d has shape %s, expected %s like tensor 0", i,
                           ad__shape_str(xs[i]), ad__shape_str(xs[0])), NULL;
        }
    if (xs[0]->ndim == AD_MAX_DIMS)
        return ad__err(fn, "a tensor has at most %d dimensions", AD_MAX_DIMS), NULL;
    /* The unsqueezed views go where the result will: onto the inputs' tape
     * (made active meanwhile, so persistent inputs' views land there too),
     * or, with no tape at all, they are persistent and freed here, which is
     * safe since nothing was recorded. */
    /* A result too large for a tensor is refused before anything is
     * allocated (the views below and concat would refuse it later). */
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0, k = 0; d <= xs[0]->ndim; d++) shape[d] = d == a ? n : xs[0]->shape[k++];
    if (ad__check_shape(fn, xs[0]->ndim + 1, shape, NULL)) return NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, n, xs, &tape)) return NULL;
    ad_tensor **u = ad__calloc((size_t)n, sizeof *u), *out = NULL;
    if (!u) return ad__err(fn, "out of memory"), NULL;
    ad_tape *prev = ad_tape_activate(tape);
    int i = 0;
    for (; i < n; i++)
        if (!(u[i] = ad_unsqueeze(xs[i], a))) break;
    if (i == n) out = ad_concat(u, n, a);
    ad_tape_activate(prev);
    if (!tape)
        for (int k = 0; k < i; k++) ad_tensor_free(u[k]);
    ad__free(u);
    return out;
}

/* ---- indexing: shared machinery ---------------------------------------------------
 * index_select/index_add and gather/scatter_add are two pairs of adjoints:
 * reading x at indexed places is linear in x, and its transpose adds g into
 * those places of zeros, repeated places summing.  Each rule calls the other
 * op of its pair, so derivatives of any order stay within the pair.  The
 * kernels read the index in place and allocate nothing, so a replayed tape
 * (which re-checks the index: it may hold new values) runs without
 * allocating. */

/* Steps a row-major multi-index p over shape; false after the last. */
static bool next_index(int ndim, const int64_t *shape, int64_t *p)
{
    for (int d = ndim - 1; d >= 0; d--) {
        if (++p[d] < shape[d]) return true;
        p[d] = 0;
    }
    return false;
}

static int check_index(const char *fn, const ad_tensor *index)
{
    if (ad__check_arg(fn, "index", index, false)) return -1;
    if (index->dtype != AD_INT64)
        return ad__err(fn, "index must be int64, got %s", ad_dtype_name(index->dtype));
    return 0;
}

/* Negative entries at replay.  A call takes an entry in [-size, 0) from
 * the end; a replay (ad_tape_replay, new values in the same index
 * tensor) takes one only where the recorded index had a negative entry,
 * and refuses it otherwise.  Data that recorded with labels or token ids
 * in [0, size) and then brings a -1 (the usual "ignore" mark) would
 * otherwise pick the last class or row, silently: nn_nll_loss through
 * gather, ad_embedding through index_select. */

/* Every entry of index must lie in [-size, size) for dimension d of x
 * ([0, size) unless neg_ok); the error names the first one that does not,
 * by position and value. */
static int check_range(const char *fn, const ad_tensor *index, const ad_tensor *x,
                       const char *xname, int d, bool neg_ok)
{
    int64_t p[AD_MAX_DIMS] = {0}, size = x->shape[d], n = ad__numel(index->ndim, index->shape);
    int64_t least = neg_ok ? -size : 0;
    if (n == 0) return 0;
    /* The common case (every index of a max-pool, an embedding, a gather
     * from a loader) is contiguous and in range: one branch-free pass over
     * the entries, and the walk below only to name the first bad one. */
    if (ad_is_contiguous(index)) {
        const int64_t *v = (const int64_t *)index->storage->data + index->offset;
        int64_t lo = 0, hi = 0;
        for (int64_t i = 0; i < n; i++) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
        if (lo >= least && hi < size) return 0;
    }
    do {
        int64_t v = ((const int64_t *)index->storage->data)[ad__offset_of(index, p)];
        if (v < -size || v >= size) {
            return ad__err(fn, "index%s = %lld is out of range [%lld, %lld) for dimension %d "
                               "of %s %s", ad__dims_str(index->ndim, p), (long long)v,
                           (long long)-size, (long long)size, d, xname, ad__shape_str(x));
        }
        if (v < least) {
            return ad__err(fn, "index%s = %lld is negative in a replay whose recording had no "
                               "negative entry (for dimension %d of %s %s); a -1 here is more "
                               "likely a bad label or id than an entry from the end: record "
                               "again with it to take it so",
                           ad__dims_str(index->ndim, p), (long long)v, d, xname,
                           ad__shape_str(x));
        }
    } while (next_index(index->ndim, index->shape, p));
    return 0;
}

/* Whether index has a negative entry (recorded with the op: neg_ok). */
static bool has_negative(const ad_tensor *index)
{
    int64_t p[AD_MAX_DIMS] = {0};
    if (ad__numel(index->ndim, index->shape) == 0) return false;
    do {
        if (((const int64_t *)index->storage->data)[ad__offset_of(index, p)] < 0) return true;
    } while (next_index(index->ndim, index->shape, p));
    return false;
}

/* The index entry at storage offset o, moved into [0, size). */
static int64_t entry(const ad_tensor *index, int64_t o, int64_t size)
{
    int64_t v = ((const int64_t *)index->storage->data)[o];
    return v < 0 ? v + size : v;
}

/* out[o] += src[os], in the dtype: float32 sums round like PyTorch's;
 * int64 sums are exact (wrapping instead of overflowing). */
static void add_elem(ad_tensor *out, int64_t o, const ad_tensor *src, int64_t os)
{
    void *a = out->storage->data;
    const void *b = src->storage->data;
    switch (out->dtype) {
    case AD_FLOAT32: ((float *)a)[o] += ((const float *)b)[os]; break;
    case AD_FLOAT64: ((double *)a)[o] += ((const double *)b)[os]; break;
    default: {
        int64_t *t = a;
        t[o] = (int64_t)((uint64_t)t[o] + (uint64_t)((const int64_t *)b)[os]);
    }
    }
}

/* Allocates the result of an index op, runs its kernel (a persistent
 * result is freed again when the kernel rejects the index) and records the
 * op, whose input 1 is the index.  A persistent index is replaced in the
 * record by a view on the tape, which holds its storage, so the caller may
 * free it before backward. */
typedef int (*index_kernel)(ad_tensor *out, ad_tensor *const *in, int d, bool neg_ok);
static ad_tensor *index_op(const char *fn, const ad_op *op, index_kernel run, int nin,
                           ad_tensor **in, int d, ad_tensor *like, const ad_tensor *shape_of)
{
    ad_tensor *out = ad__result(fn, nin, in, like->dtype, shape_of->ndim, shape_of->shape);
    if (!out) return NULL;
    int failed = run(out, in, d, true);
    if (!failed && out->tape && !in[1]->tape) {
        ad_tensor *idx = in[1];
        in[1] = ad__view(fn, out->tape, idx, idx->ndim, idx->shape, idx->strides, idx->offset);
        failed = !in[1];
    }
    /* only the nodes a replayable tape records run again (the scan is a
     * pass over the index: not in a frozen tape's backward passes, which
     * run a max-pool's rule every step) */
    bool neg = !failed && out->tape && out->tape->replayable && !out->tape->frozen &&
               has_negative(in[1]);
    return ad__finish(out, failed, op, nin, in, &(index_params){d, neg}, NULL);
}

/* ---- index_select ------------------------------------------------------------------ */
static int index_select_run(ad_tensor *out, ad_tensor *const *in, int d, bool neg_ok)
{
    const ad_tensor *x = in[0], *index = in[1];
    if (check_range("ad_index_select", index, x, "x", d, neg_ok)) return -1;
    for (int64_t j = 0; j < index->shape[0]; j++) {
        int64_t k = entry(index, index->offset + j * index->strides[0], x->shape[d]);
        ad_tensor dst = ad__slab(out, d, j, 1, 1), src = ad__slab(x, d, k, 1, 1);
        ad__copy_same(&dst, &src);
    }
    return 0;
}
static int index_select_fw(ad_node *n) { return index_select_run(n->out, n->in, axis_of(n), neg_ok_of(n)); }
static int index_select_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_index_add(zeros_like(n, n->in[0]), axis_of(n), n->in[1], g);
    return 0;
}
static const ad_op OP_INDEX_SELECT = {
    .name = "index_select",
    .formula = "y = x[.., index[j], ..] along an axis; dx = index_add(zeros, axis, index, g)",
    .backward = index_select_bw,
    .forward = index_select_fw,
    .params_size = sizeof(index_params),
};
ad_tensor *ad_index_select(ad_tensor *x, int axis, ad_tensor *index)
{
    static const char *fn = "ad_index_select";
    int d;
    if (ad__check_arg(fn, "x", x, false) || check_index(fn, index) || ad__dim_of(fn, x, axis, &d))
        return NULL;
    if (index->ndim != 1) {
        return ad__err(fn, "index must be 1-D, got shape %s", ad__shape_str(index)), NULL;
    }
    ad_tensor *in[2] = {x, index}, want = ad__slab(x, d, 0, index->shape[0], 1);
    return index_op(fn, &OP_INDEX_SELECT, index_select_run, 2, in, d, x, &want);
}

/* ---- index_add ---------------------------------------------------------------------- */
static int index_add_run(ad_tensor *out, ad_tensor *const *in, int d, bool neg_ok)
{
    const ad_tensor *base = in[0], *index = in[1], *src = in[2];
    int64_t p[AD_MAX_DIMS] = {0};
    if (check_range("ad_index_add", index, base, "base", d, neg_ok)) return -1;
    ad__copy_same(out, base);
    if (ad__numel(src->ndim, src->shape) == 0) return 0;
    if (d == 0 && out->dtype != AD_INT64 && ad_is_contiguous(out) && ad_is_contiguous(src)) {
        /* whole rows (an embedding's gradient): row j of src into row
         * index[j] of out, one vectorisable loop per row; the same
         * additions in the same order as the loop below */
        int64_t L = ad__numel(src->ndim, src->shape) / src->shape[0];
        for (int64_t j = 0; j < src->shape[0]; j++) {
            int64_t r = entry(index, index->offset + j * index->strides[0], base->shape[0]);
            if (out->dtype == AD_FLOAT32) {
                float *o = (float *)out->storage->data + out->offset + r * L;
                const float *x = (const float *)src->storage->data + src->offset + j * L;
                for (int64_t k = 0; k < L; k++) o[k] += x[k];
            } else {
                double *o = (double *)out->storage->data + out->offset + r * L;
                const double *x = (const double *)src->storage->data + src->offset + j * L;
                for (int64_t k = 0; k < L; k++) o[k] += x[k];
            }
        }
        return 0;
    }
    do { /* src's element p lands at p with p[d] replaced by index[p[d]] */
        int64_t j = p[d], os = ad__offset_of(src, p);
        p[d] = entry(index, index->offset + j * index->strides[0], base->shape[d]);
        add_elem(out, ad__offset_of(out, p), src, os);
        p[d] = j;
    } while (next_index(src->ndim, src->shape, p));
    return 0;
}
static int index_add_fw(ad_node *n) { return index_add_run(n->out, n->in, axis_of(n), neg_ok_of(n)); }
static int index_add_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    if (ad__needs_grad(n, 0)) gin[0] = g;
    if (ad__needs_grad(n, 2)) gin[2] = ad_index_select(g, axis_of(n), n->in[1]);
    return 0;
}
static const ad_op OP_INDEX_ADD = {
    .name = "index_add",
    .formula = "y = base; y[.., index[j], ..] += src[.., j, ..]; "
               "dbase = g, dsrc = index_select(g, axis, index)",
    .backward = index_add_bw,
    .forward = index_add_fw,
    .params_size = sizeof(index_params),
};
ad_tensor *ad_index_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src)
{
    static const char *fn = "ad_index_add";
    int d;
    if (ad__check_arg(fn, "base", base, false) || check_index(fn, index) ||
        ad__check_arg(fn, "src", src, false) || ad__check_same_dtype(fn, base, src) ||
        ad__dim_of(fn, base, axis, &d))
        return NULL;
    if (index->ndim != 1)
        return ad__err(fn, "index must be 1-D, got shape %s", ad__shape_str(index)), NULL;
    ad_tensor want = ad__slab(base, d, 0, index->shape[0], 1);
    if (!ad__same_shape(&want, src)) {
        return ad__err(fn, "src has shape %s, expected %s: base %s with extent len(index) = "
                           "%lld along dimension %d", ad__shape_str(src), ad__shape_str(&want),
                       ad__shape_str(base), (long long)index->shape[0], d), NULL;
    }
    ad_tensor *in[3] = {base, index, src};
    return index_op(fn, &OP_INDEX_ADD, index_add_run, 3, in, d, base, base);
}

/* ---- gather and scatter_add --------------------------------------------------------- */

/* index must have t's ndim and fit inside t except along dimension d. */
static int check_fits(const char *fn, const ad_tensor *index, const ad_tensor *t,
                      const char *tname, int d)
{
    if (index->ndim != t->ndim)
        return ad__err(fn, "index has shape %s but %s has shape %s: they need the same number "
                           "of dimensions", ad__shape_str(index), tname, ad__shape_str(t));
    for (int k = 0; k < t->ndim; k++)
        if (k != d && index->shape[k] > t->shape[k])
            return ad__err(fn, "index shape %s does not fit %s %s: extent %lld of dimension %d "
                               "exceeds %lld (only dimension %d, the axis, may be longer)",
                           ad__shape_str(index), tname, ad__shape_str(t),
                           (long long)index->shape[k], k, (long long)t->shape[k], d);
    return 0;
}

/* The fast case of gather and scatter_add: the axis is the last one, the
 * tensors are contiguous and share their leading extents, so row r of the
 * index reads (or adds into) row r of the other tensor.  Rows of lx
 * elements in x (base), li in the index. */
static bool last_axis_rows(int d, const ad_tensor *t, const ad_tensor *index,
                           const ad_tensor *other, int64_t *rows, int64_t *lx, int64_t *li)
{
    if (d != t->ndim - 1 || !ad_is_contiguous(t) || !ad_is_contiguous(index) ||
        (other && !ad_is_contiguous(other)))
        return false;
    int64_t r = 1;
    for (int k = 0; k < d; k++) {
        if (index->shape[k] != t->shape[k]) return false;
        r *= t->shape[k];
    }
    *rows = r, *lx = t->shape[d], *li = index->shape[d];
    return true;
}

/* rows x li gathered entries along the last axis of contiguous x (rows x
 * lx) into out, es bytes each: a raw copy, whatever the dtype.  es is a
 * constant at both calls, so each copy compiles to one move. */
static inline void gather_rows(const char *xs, char *o, const int64_t *iv, int64_t rows,
                               int64_t lx, int64_t li, size_t es)
{
    for (int64_t r = 0; r < rows; r++, xs += lx * (int64_t)es, iv += li, o += li * (int64_t)es)
        for (int64_t j = 0; j < li; j++)
            memcpy(o + j * (int64_t)es, xs + (iv[j] < 0 ? iv[j] + lx : iv[j]) * (int64_t)es, es);
}

static int gather_run(ad_tensor *out, ad_tensor *const *in, int d, bool neg_ok)
{
    const ad_tensor *x = in[0], *index = in[1];
    int64_t p[AD_MAX_DIMS] = {0}, j = 0, rows, lx, li;
    size_t es = ad_dtype_size(x->dtype);
    if (check_range("ad_gather", index, x, "x", d, neg_ok)) return -1;
    if (ad__numel(out->ndim, out->shape) == 0) return 0;
    if (last_axis_rows(d, x, index, NULL, &rows, &lx, &li) && ad_is_contiguous(out)) {
        const int64_t *iv = (const int64_t *)index->storage->data + index->offset;
        const char *xs = (const char *)x->storage->data + x->offset * (int64_t)es;
        char *o = (char *)out->storage->data + out->offset * (int64_t)es;
        if (es == 4) gather_rows(xs, o, iv, rows, lx, li, 4);
        else if (es == 8) gather_rows(xs, o, iv, rows, lx, li, 8);
        else goto walk;
        return 0;
    }
walk:
    do {
        int64_t k = p[d];
        p[d] = entry(index, ad__offset_of(index, p), x->shape[d]);
        memcpy((char *)out->storage->data + j++ * (int64_t)es,
               (const char *)x->storage->data + ad__offset_of(x, p) * (int64_t)es, es);
        p[d] = k;
    } while (next_index(out->ndim, out->shape, p));
    return 0;
}
static int gather_fw(ad_node *n) { return gather_run(n->out, n->in, axis_of(n), neg_ok_of(n)); }
static int gather_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const ad_tensor *x = n->in[0];
    gin[0] = ad__scatter_add_zeros(x->ndim, x->shape, axis_of(n), n->in[1], g);
    return 0;
}
static const ad_op OP_GATHER = {
    .name = "gather",
    .formula = "y[i][j][k] = x[i][index[i][j][k]][k] (axis 1); "
               "dx = scatter_add_zeros(axis, index, g)",
    .backward = gather_bw,
    .forward = gather_fw,
    .params_size = sizeof(index_params),
};
ad_tensor *ad_gather(ad_tensor *x, int axis, ad_tensor *index)
{
    static const char *fn = "ad_gather";
    int d;
    if (ad__check_arg(fn, "x", x, false) || check_index(fn, index) || ad__dim_of(fn, x, axis, &d) ||
        check_fits(fn, index, x, "x", d))
        return NULL;
    ad_tensor *in[2] = {x, index};
    return index_op(fn, &OP_GATHER, gather_run, 2, in, d, x, index);
}

/* out[r, index[r, j]] += src[r, j] along the last axis of contiguous
 * tensors, in the walk's order, so float sums round the same way; int64
 * wraps. */
static void scatter_rows_f32(float *o, const float *sv, const int64_t *iv, int64_t rows,
                             int64_t lx, int64_t li)
{
    for (int64_t r = 0; r < rows; r++, o += lx, iv += li, sv += li)
        for (int64_t j = 0; j < li; j++) o[iv[j] < 0 ? iv[j] + lx : iv[j]] += sv[j];
}
static void scatter_rows_f64(double *o, const double *sv, const int64_t *iv, int64_t rows,
                             int64_t lx, int64_t li)
{
    for (int64_t r = 0; r < rows; r++, o += lx, iv += li, sv += li)
        for (int64_t j = 0; j < li; j++) o[iv[j] < 0 ? iv[j] + lx : iv[j]] += sv[j];
}
static void scatter_rows_i64(int64_t *o, const int64_t *sv, const int64_t *iv, int64_t rows,
                             int64_t lx, int64_t li)
{
    for (int64_t r = 0; r < rows; r++, o += lx, iv += li, sv += li)
        for (int64_t j = 0; j < li; j++) {
            int64_t *a = &o[iv[j] < 0 ? iv[j] + lx : iv[j]];
            *a = (int64_t)((uint64_t)*a + (uint64_t)sv[j]);
        }
}

static int scatter_add_run(ad_tensor *out, ad_tensor *const *in, int d, bool neg_ok)
{
    const ad_tensor *base = in[0], *index = in[1], *src = in[2];
    int64_t p[AD_MAX_DIMS] = {0};
    if (check_range("ad_scatter_add", index, base, "base", d, neg_ok)) return -1;
    ad__copy_same(out, base);
    if (ad__numel(src->ndim, src->shape) == 0) return 0;
    int64_t rows, lx, li;
    if (last_axis_rows(d, out, index, src, &rows, &lx, &li)) {
        /* same order of additions as the walk below */
        const int64_t *iv = (const int64_t *)index->storage->data + index->offset;
        void *o = (char *)out->storage->data + out->offset * (int64_t)ad_dtype_size(out->dtype);
        const void *sv =
            (const char *)src->storage->data + src->offset * (int64_t)ad_dtype_size(src->dtype);
        switch (out->dtype) {
        case AD_FLOAT32: scatter_rows_f32(o, sv, iv, rows, lx, li); break;
        case AD_FLOAT64: scatter_rows_f64(o, sv, iv, rows, lx, li); break;
        default: scatter_rows_i64(o, sv, iv, rows, lx, li);
        }
        return 0;
    }
    do {
        int64_t k = p[d], os = ad__offset_of(src, p);
        p[d] = entry(index, ad__offset_of(index, p), base->shape[d]);
        add_elem(out, ad__offset_of(out, p), src, os);
        p[d] = k;
    } while (next_index(src->ndim, src->shape, p));
    return 0;
}
static int scatter_add_fw(ad_node *n) { return scatter_add_run(n->out, n->in, axis_of(n), neg_ok_of(n)); }
static int scatter_add_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    if (ad__needs_grad(n, 0)) gin[0] = g;
    if (ad__needs_grad(n, 2)) gin[2] = ad_gather(g, axis_of(n), n->in[1]);
    return 0;
}
static const ad_op OP_SCATTER_ADD = {
    .name = "scatter_add",
    .formula = "y = base; y[i][index[i][j][k]][k] += src[i][j][k] (axis 1); "
               "dbase = g, dsrc = gather(g, axis, index)",
    .backward = scatter_add_bw,
    .forward = scatter_add_fw,
    .params_size = sizeof(index_params),
};
ad_tensor *ad_scatter_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src)
{
    static const char *fn = "ad_scatter_add";
    int d;
    if (ad__check_arg(fn, "base", base, false) || check_index(fn, index) ||
        ad__check_arg(fn, "src", src, false) || ad__check_same_dtype(fn, base, src) ||
        ad__dim_of(fn, base, axis, &d) || check_fits(fn, index, base, "base", d))
        return NULL;
    if (!ad__same_shape(src, index)) {
        return ad__err(fn, "src has shape %s but index has shape %s; they must be equal",
                       ad__shape_str(src), ad__shape_str(index)), NULL;
    }
    ad_tensor *in[3] = {base, index, src};
    return index_op(fn, &OP_SCATTER_ADD, scatter_add_run, 3, in, d, base, base);
}

/* scatter_add into zeros of its own: gather's rule.  scatter_add(zeros,
 * ..) would clear a tensor of x's size, copy it into its result and then
 * add; this clears its result once and adds (a max-pool's input gradient:
 * 4.7 MB per step of fmnist's CNN cleared and copied for nothing). */
static int scatter_zeros_run(ad_tensor *out, ad_tensor *const *in, int d, bool neg_ok)
{
    static const char *fn = "ad_scatter_add";
    const ad_tensor *src = in[0], *index = in[1];
    int64_t p[AD_MAX_DIMS] = {0}, rows, lx, li;
    size_t es = ad_dtype_size(out->dtype);
    char *o = (char *)out->storage->data + out->offset * (int64_t)es; /* contiguous: a result */
    if (ad__numel(src->ndim, src->shape) > 0 &&
        last_axis_rows(d, out, index, src, &rows, &lx, &li)) {
        /* Row by row, each checked, cleared and added into while it is in
         * L1 (a max-pool's: 2.3 KB per plane for fmnist), where clearing
         * all of out first sent it to memory and the adds read it back,
         * and the range check was a pass of its own over the index.  The
         * same additions in the same order.  A bad entry stops it before
         * its row is touched; check_range then names the first one. */
        const int64_t *iv = (const int64_t *)index->storage->data + index->offset;
        const char *sv = (const char *)src->storage->data + src->offset * (int64_t)es;
        for (int64_t r = 0; r < rows; r++) {
            int64_t lo = 0, hi = 0;
            for (int64_t j = 0; j < li; j++) {
                lo = iv[j] < lo ? iv[j] : lo;
                hi = iv[j] > hi ? iv[j] : hi;
            }
            if (lo < (neg_ok ? -lx : 0) || hi >= lx) {
                if (check_range(fn, index, out, "base", d, neg_ok)) return -1;
                return ad__err(fn, "index out of range"); /* not reached: row r has one */
            }
            memset(o, 0, (size_t)lx * es);
            const void *sr = sv;
            switch (out->dtype) {
            case AD_FLOAT32: scatter_rows_f32((float *)(void *)o, sr, iv, 1, lx, li); break;
            case AD_FLOAT64: scatter_rows_f64((double *)(void *)o, sr, iv, 1, lx, li); break;
            default: scatter_rows_i64((int64_t *)(void *)o, sr, iv, 1, lx, li);
            }
            iv += li, sv += li * (int64_t)es, o += lx * (int64_t)es;
        }
        return 0;
    }
    if (check_range(fn, index, out, "base", d, neg_ok)) return -1;
    memset(o, 0, (size_t)ad__numel(out->ndim, out->shape) * es);
    if (ad__numel(src->ndim, src->shape) == 0) return 0;
    do {
        int64_t k = p[d], os = ad__offset_of(src, p);
        p[d] = entry(index, ad__offset_of(index, p), out->shape[d]);
        add_elem(out, ad__offset_of(out, p), src, os);
        p[d] = k;
    } while (next_index(src->ndim, src->shape, p));
    return 0;
}
static int scatter_zeros_fw(ad_node *n) { return scatter_zeros_run(n->out, n->in, axis_of(n), neg_ok_of(n)); }
static int scatter_zeros_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    if (ad__needs_grad(n, 0)) gin[0] = ad_gather(g, axis_of(n), n->in[1]);
    return 0;
}
static const ad_op OP_SCATTER_ADD_ZEROS = {
    .name = "scatter_add_zeros",
    .formula = "y = 0; y[i][index[i][j][k]][k] += src[i][j][k] (axis 1); "
               "dsrc = gather(g, axis, index)",
    .backward = scatter_zeros_bw,
    .forward = scatter_zeros_fw,
    .params_size = sizeof(index_params),
};
ad_tensor *ad__scatter_add_zeros(int ndim, const int64_t *shape, int axis, ad_tensor *index,
                                 ad_tensor *src)
{
    static const char *fn = "ad_scatter_add";
    int d;
    ad_tensor like = {0};
    if (ad__check_arg(fn, "index", index, false) || check_index(fn, index) ||
        ad__check_arg(fn, "src", src, false))
        return NULL;
    if (ndim < 1 || ndim > AD_MAX_DIMS)
        return ad__err(fn, "base must have 1 to %d dimensions, got %d", AD_MAX_DIMS, ndim), NULL;
    like.ndim = ndim;
    like.dtype = src->dtype;
    memcpy(like.shape, shape, (size_t)ndim * sizeof(int64_t));
    if (ad__dim_of(fn, &like, axis, &d) || check_fits(fn, index, &like, "base", d)) return NULL;
    if (!ad__same_shape(src, index)) {
        return ad__err(fn, "src has shape %s but index has shape %s; they must be equal",
                       ad__shape_str(src), ad__shape_str(index)), NULL;
    }
    ad_tensor *in[2] = {src, index};
    return index_op(fn, &OP_SCATTER_ADD_ZEROS, scatter_zeros_run, 2, in, d, src, &like);
}

const ad_op *const ad__ops_index[] = {
    &OP_CONCAT,  &OP_INDEX_SELECT,   &OP_INDEX_ADD,          &OP_GATHER,
    &OP_SCATTER_ADD, &OP_SCATTER_ADD_ZEROS, NULL,
};

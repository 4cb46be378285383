/* autodiff/ops_shape.c - views, shape changes and indexing: kernel, rule and
 * formula side by side, listed in ad__ops_shape at the end.
 *
 * A view builds a new header (shape, strides, offset) over its input's
 * storage, so it costs nothing and composes: a view of a view is again one
 * strided view of the original storage.  Its rule applies the adjoint of the
 * view to g: the inverse permutation for permute, sum_to for expand, and for
 * a slice, g written into zeros (slice_scatter), which is itself an op whose
 * rule is a slice - so derivatives of every order stay within these ops.
 *
 * Copies move elements as raw bytes of the dtype, so int64 values are kept
 * exactly (a detour through double would round those above 2^53).  The
 * joining and indexing ops are in ops_index.c, which shares the ad__
 * helpers below (declared in internal.h). */
#include "internal.h"

/* ---- shared helpers ------------------------------------------------------------ */

typedef struct {
    char *dst;
    const char *src;
    int64_t es;
} bytes_ctx;

static void bytes_row(int64_t len, const int64_t *off, const int64_t *step, void *vctx)
{
    bytes_ctx *c = vctx;
    if (step[0] == 1 && step[1] == 1) {
        memcpy(c->dst + off[0] * c->es, c->src + off[1] * c->es, (size_t)(len * c->es));
        return;
    }
    for (int64_t i = 0; i < len; i++)
        memcpy(c->dst + (off[0] + i * step[0]) * c->es, c->src + (off[1] + i * step[1]) * c->es,
               (size_t)c->es);
}

/* dst = src for two tensors of one shape and dtype, any strides. */
void ad__copy_same(ad_tensor *dst, const ad_tensor *src)
{
    assert(dst->dtype == src->dtype && ad__same_shape(dst, src));
    ad_iter it = {.ndim = dst->ndim};
    memcpy(it.shape, dst->shape, sizeof it.shape);
    ad__iter_add(&it, dst);
    ad__iter_add(&it, src);
    bytes_ctx c = {dst->storage->data, src->storage->data, (int64_t)ad_dtype_size(dst->dtype)};
    ad__iter_run(&it, bytes_row, &c);
}

/* A header (not a tensor of the library: never returned) for the elements
 * start, start+step, ... (count of them) of t along axis. */
ad_tensor ad__slab(const ad_tensor *t, int axis, int64_t start, int64_t count, int64_t step)
{
    /* the layout only, not a copy of the whole header: a parameter shared
     * by the trainer's threads has its grad pointer set by one thread's
     * backward (the first time) and its reference count changed by
     * another's recording while a third reads its elements through a slab
     * (a data race under ThreadSanitizer, the batch split of an Embedding) */
    ad_tensor s;
    memset(&s, 0, sizeof s);
    s.magic = t->magic;
    s.dtype = t->dtype;
    s.ndim = t->ndim;
    memcpy(s.shape, t->shape, sizeof s.shape);
    memcpy(s.strides, t->strides, sizeof s.strides);
    s.offset = t->offset;
    s.storage = t->storage;
    s.tape = t->tape;
    s.stamp = t->stamp;
    s.shape[axis] = count;
    if (count > 0) s.offset += start * t->strides[axis];
    if (count > 1) s.strides[axis] *= step;
    return s;
}

/* An existing dimension of x, named by a possibly negative axis. */
int ad__dim_of(const char *fn, const ad_tensor *x, int axis, int *d)
{
    if (x->ndim == 0) return ad__err(fn, "axis %d out of range: the tensor is 0-dimensional", axis);
    return ad__axis(fn, axis, x->ndim, d);
}

/* Zeros of x's shape and dtype on the tape the rule runs on. */
static ad_tensor *zeros_like(const ad_node *n, const ad_tensor *x)
{
    return ad_zeros(n->out->tape, x->dtype, x->ndim, x->shape);
}

/* ---- reshape -------------------------------------------------------------------- */

/* Strides that read x's elements, in row-major order, as `shape` without a
 * copy, if any exist (PyTorch's computeStride).  x's dimensions fall into
 * chunks that are laid out back to back in memory (dim d-1 steps over exactly
 * one run of dim d); the new shape must split each chunk on its own, and
 * then a new dimension's stride is the product of the new extents inside
 * its chunk to its right times the chunk's innermost stride. */
static bool view_strides(const ad_tensor *x, int ndim, const int64_t *shape, int64_t *st)
{
    if (ad__numel(x->ndim, x->shape) <= 1) {
        ad__contig_strides(ndim, shape, st); /* no element is stepped over twice */
        return true;
    }
    int vd = ndim - 1;
    int64_t base = x->strides[x->ndim - 1], tn = 1, vn = 1;
    for (int td = x->ndim - 1; td >= 0; td--) {
        tn *= x->shape[td];
        if (td == 0 || (x->shape[td - 1] != 1 && x->strides[td - 1] != tn * base)) {
            while (vd >= 0 && (vn < tn || shape[vd] == 1)) {
                st[vd] = vn * base;
                vn *= shape[vd--];
            }
            if (vn != tn) return false;
            if (td > 0) base = x->strides[td - 1], tn = 1, vn = 1;
        }
    }
    return vd == -1;
}

/* out (contiguous, any shape) = x's elements in row-major order: copied
 * through a header that sees out's buffer with x's shape. */
static void copy_rows(ad_tensor *out, const ad_tensor *x)
{
    ad_tensor dst = *out;
    dst.ndim = x->ndim;
    memcpy(dst.shape, x->shape, sizeof dst.shape);
    ad__contig_strides(x->ndim, dst.shape, dst.strides);
    ad__copy_same(&dst, x);
}

static int reshape_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_reshape(g, n->in[0]->ndim, n->in[0]->shape);
    return 0;
}
/* Replay: a view is always current; a copy is redone. */
static int reshape_fw(ad_node *n)
{
    if (n->out->storage != n->in[0]->storage) copy_rows(n->out, n->in[0]);
    return 0;
}
static const ad_op OP_RESHAPE = {
    .name = "reshape",
    .formula = "y = x with a new shape, same row-major order; "
               "dx = reshape(g, x's shape)",
    .backward = reshape_bw,
    .forward = reshape_fw,
};
ad_tensor *ad_reshape(ad_tensor *x, int ndim, const int64_t *shape)
{
    static const char *fn = "ad_reshape";
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    if (ndim < 0 || ndim > AD_MAX_DIMS || (ndim > 0 && !shape))
        return ad__err(fn, "bad ndim %d or NULL shape", ndim), NULL;
    int64_t s[AD_MAX_DIMS], known = 1, numel = ad__numel(x->ndim, x->shape);
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        s[d] = shape[d];
        if (s[d] == -1) {
            if (infer >= 0) return ad__err(fn, "more than one extent is -1"), NULL;
            infer = d;
        } else if (s[d] < 0) {
            return ad__err(fn, "negative extent %lld", (long long)s[d]), NULL;
        } else if (s[d] > 0 && known > numel / s[d] + 1) {
            known = numel + 1; /* certainly too many: keep the product from overflowing */
        } else {
            known *= s[d];
        }
    }
    bool ambiguous = infer >= 0 && known == 0;
    if (ambiguous || (infer >= 0 ? numel % known != 0 : known != numel)) {
        if (ambiguous)
            return ad__err(fn, "cannot reshape %s to %s: the -1 extent is ambiguous next to "
                               "an extent 0", ad__shape_str(x), ad__dims_str(ndim, shape)), NULL;
        return ad__err(fn, "cannot reshape %s (%lld elements) to %s", ad__shape_str(x),
                       (long long)numel, ad__dims_str(ndim, shape)), NULL;
    }
    if (infer >= 0) s[infer] = numel / known;
    if (ad__check_shape(fn, ndim, s, NULL)) return NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out;
    int64_t st[AD_MAX_DIMS];
    if (view_strides(x, ndim, s, st)) {
        out = ad__view(fn, tape, x, ndim, s, st, x->offset);
    } else {
        out = ad__alloc(fn, tape, x->dtype, ndim, s);
        if (out) copy_rows(out, x);
    }
    return ad__finish(out, 0, &OP_RESHAPE, 1, &x, NULL, NULL);
}

/* flatten, squeeze and unsqueeze are reshapes whose shape is derived here;
 * the strides reshape finds make squeeze and unsqueeze views always. */
ad_tensor *ad_flatten(ad_tensor *x, int start, int end)
{
    static const char *fn = "ad_flatten";
    int s, e;
    if (ad__check_arg(fn, "x", x, false) || ad__axis(fn, start, x->ndim, &s) ||
        ad__axis(fn, end, x->ndim, &e))
        return NULL;
    if (x->ndim == 0) return ad_reshape(x, 1, (int64_t[]){1});
    if (s > e) {
        return ad__err(fn, "start %d (dimension %d) is after end %d (dimension %d) for %s",
                       start, s, end, e, ad__shape_str(x)), NULL;
    }
    int64_t shape[AD_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d <= s || d > e) shape[nd++] = x->shape[d];
        else shape[nd - 1] *= x->shape[d];
    }
    return ad_reshape(x, nd, shape);
}

ad_tensor *ad_squeeze(ad_tensor *x, int axis)
{
    static const char *fn = "ad_squeeze";
    int a;
    if (ad__check_arg(fn, "x", x, false) || ad__dim_of(fn, x, axis, &a)) return NULL;
    if (x->shape[a] != 1) {
        return ad__err(fn, "dimension %d of %s has extent %lld, not 1", a, ad__shape_str(x),
                       (long long)x->shape[a]), NULL;
    }
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0, k = 0; d < x->ndim; d++)
        if (d != a) shape[k++] = x->shape[d];
    return ad_reshape(x, x->ndim - 1, shape);
}

/* The position a new dimension takes among ndim+1: axis in -(ndim+1)..ndim. */
int ad__new_axis(const char *fn, int axis, const ad_tensor *x, int *a)
{
    if (axis < -(x->ndim + 1) || axis > x->ndim) {
        return ad__err(fn, "axis %d out of range %d..%d for a new dimension of %s", axis,
                       -(x->ndim + 1), x->ndim, ad__shape_str(x));
    }
    *a = axis < 0 ? axis + x->ndim + 1 : axis;
    return 0;
}

ad_tensor *ad_unsqueeze(ad_tensor *x, int axis)
{
    static const char *fn = "ad_unsqueeze";
    int a = 0;
    if (ad__check_arg(fn, "x", x, false) || ad__new_axis(fn, axis, x, &a)) return NULL;
    if (x->ndim == AD_MAX_DIMS)
        return ad__err(fn, "a tensor has at most %d dimensions", AD_MAX_DIMS), NULL;
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0, k = 0; d <= x->ndim; d++) shape[d] = d == a ? 1 : x->shape[k++];
    return ad_reshape(x, x->ndim + 1, shape);
}

/* ---- expand ------------------------------------------------------------------ */
static int expand_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad__sum_to(g, n->in[0]->ndim, n->in[0]->shape);
    return 0;
}
static const ad_op OP_EXPAND = {
    .name = "expand",
    .formula = "y = x broadcast to a shape (stride 0); "
               "dx = sum_to(g, x's shape)",
    .backward = expand_bw,
    .forward = NULL,
};
ad_tensor *ad_expand(ad_tensor *x, int ndim, const int64_t *shape)
{
    static const char *fn = "ad_expand";
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    if (ndim > 0 && !shape) return ad__err(fn, "shape is NULL for ndim %d", ndim), NULL;
    if (ndim < x->ndim || ndim > AD_MAX_DIMS) {
        ad__err(fn, "cannot expand a %d-dimensional tensor to %d dimensions", x->ndim, ndim);
        return NULL;
    }
    int lead = ndim - x->ndim;
    int64_t s[AD_MAX_DIMS], st[AD_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
        int xd = d - lead;
        int64_t want = shape[d];
        if (want == -1) {
            if (xd < 0) return ad__err(fn, "-1 is not allowed for a new leading dimension"), NULL;
            want = x->shape[xd];
        }
        if (xd >= 0 && x->shape[xd] == want) {
            s[d] = want;
            st[d] = x->strides[xd];
        } else if ((xd < 0 || x->shape[xd] == 1) && want >= 0) {
            s[d] = want;
            st[d] = 0;
        } else {
            return ad__err(fn, "cannot expand %s to %s", ad__shape_str(x),
                           ad__dims_str(ndim, shape)), NULL;
        }
    }
    if (ad__check_shape(fn, ndim, s, NULL)) return NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    return ad__finish(ad__view(fn, tape, x, ndim, s, st, x->offset), 0, &OP_EXPAND, 1, &x, NULL,
                      NULL);
}

/* ---- permute ------------------------------------------------------------------ */
typedef struct permute_params {
    int perm[AD_MAX_DIMS]; /* y dim i is x dim perm[i], normalised */
} permute_params;
static int permute_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const permute_params *p = ad__params(n);
    int inv[AD_MAX_DIMS];
    for (int i = 0; i < n->in[0]->ndim; i++) inv[p->perm[i]] = i;
    gin[0] = ad_permute(g, inv);
    return 0;
}
static const ad_op OP_PERMUTE = {
    .name = "permute",
    .formula = "y = x with dims reordered, y dim i = x dim p[i]; "
               "dx = permute(g, p^-1)",
    .backward = permute_bw,
    .forward = NULL,
    .params_size = sizeof(permute_params),
};
ad_tensor *ad_permute(ad_tensor *x, const int *perm)
{
    static const char *fn = "ad_permute";
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    if (x->ndim > 0 && !perm) return ad__err(fn, "perm is NULL"), NULL;
    int p[AD_MAX_DIMS];
    bool seen[AD_MAX_DIMS] = {false};
    for (int i = 0; i < x->ndim; i++) {
        if (ad__axis(fn, perm[i], x->ndim, &p[i])) return NULL;
        if (seen[p[i]]) {
            char list[64];
            int k = 0;
            for (int j = 0; j < x->ndim && k < (int)sizeof list - 8; j++)
                k += snprintf(list + k, sizeof list - (size_t)k, j ? ",%d" : "%d", perm[j]);
            return ad__err(fn, "perm (%s) names dimension %d twice; it must list each "
                               "dimension of %s exactly once", list, p[i], ad__shape_str(x)),
                   NULL;
        }
        seen[p[i]] = true;
    }
    int64_t s[AD_MAX_DIMS], st[AD_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) s[i] = x->shape[p[i]], st[i] = x->strides[p[i]];
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    permute_params pp = {{0}};
    memcpy(pp.perm, p, (size_t)x->ndim * sizeof *p);
    return ad__finish(ad__view(fn, tape, x, x->ndim, s, st, x->offset), 0, &OP_PERMUTE, 1, &x,
                      &pp, NULL);
}

ad_tensor *ad_transpose(ad_tensor *x, int dim0, int dim1)
{
    static const char *fn = "ad_transpose";
    int a, b, perm[AD_MAX_DIMS];
    if (ad__check_arg(fn, "x", x, false) || ad__axis(fn, dim0, x->ndim, &a) ||
        ad__axis(fn, dim1, x->ndim, &b))
        return NULL;
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    if (x->ndim > 0) perm[a] = b, perm[b] = a;
    return ad_permute(x, perm);
}

/* ---- slice (narrow is a slice with step 1) -------------------------------------
 * Both are one strided view: count elements from first, step apart.  The
 * adjoint writes g back into those places of zeros: slice_scatter.  Both
 * keep the same parameters. */
typedef struct slice_params {
    int axis; /* normalised */
    int64_t first, count, step;
} slice_params;
static ad_tensor *slice_core(const char *fn, ad_tensor *x, int d, int64_t first,
                             int64_t count, int64_t step);
static ad_tensor *slice_scatter_core(const char *fn, ad_tensor *base, ad_tensor *src, int d,
                                     int64_t first, int64_t count, int64_t step);

/* Python's start:stop:step over n elements (step >= 1) as a first element
 * and a count: negative bounds count from the end, then clamp to 0..n. */
static void py_range(int64_t n, int64_t start, int64_t stop, int64_t step, int64_t *first,
                     int64_t *count)
{
    start = start < 0 ? (start + n < 0 ? 0 : start + n) : (start > n ? n : start);
    stop = stop < 0 ? (stop + n < 0 ? 0 : stop + n) : (stop > n ? n : stop);
    *first = start;
    *count = stop > start ? (stop - start - 1) / step + 1 : 0;
}

static int slice_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const slice_params *p = ad__params(n);
    gin[0] = slice_scatter_core("ad_slice", zeros_like(n, n->in[0]), g, p->axis, p->first,
                                p->count, p->step);
    return 0;
}
/* dx[slice] += g, in place (see ad_op.accumulate) */
static void slice_acc(const ad_node *n, const ad_tensor *g, ad_tensor *adj)
{
    const slice_params *p = ad__params(n);
    ad_tensor v = ad__slab(adj, p->axis, p->first, p->count, p->step);
    ad__add_into(&v, &v, g);
}
static const ad_op OP_SLICE = {
    .name = "slice",
    .formula = "y = x[first : first+count*step : step] along an axis "
               "(a view); dx = slice_scatter(zeros, g)",
    .backward = slice_bw,
    .forward = NULL,
    .params_size = sizeof(slice_params),
    .accumulate = slice_acc,
};
static ad_tensor *slice_core(const char *fn, ad_tensor *x, int d, int64_t first, int64_t count,
                             int64_t step)
{
    ad_tape *tape;
    if (!x || ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor v = ad__slab(x, d, first, count, step);
    slice_params p = {d, first, count, step};
    return ad__finish(ad__view(fn, tape, x, v.ndim, v.shape, v.strides, v.offset), 0, &OP_SLICE,
                      1, &x, &p, NULL);
}

ad_tensor *ad_slice(ad_tensor *x, int axis, int64_t start, int64_t stop, int64_t step)
{
    static const char *fn = "ad_slice";
    int d;
    int64_t first, count;
    if (ad__check_arg(fn, "x", x, false) || ad__dim_of(fn, x, axis, &d)) return NULL;
    if (step < 1) return ad__err(fn, "step must be >= 1, got %lld", (long long)step), NULL;
    py_range(x->shape[d], start, stop, step, &first, &count);
    return slice_core(fn, x, d, first, count, step);
}

ad_tensor *ad_narrow(ad_tensor *x, int axis, int64_t start, int64_t length)
{
    static const char *fn = "ad_narrow";
    int d;
    if (ad__check_arg(fn, "x", x, false) || ad__dim_of(fn, x, axis, &d)) return NULL;
    int64_t n = x->shape[d], first = start < 0 ? start + n : start;
    if (first < 0 || first > n || length < 0 || length > n - first) {
        return ad__err(fn, "start %lld, length %lld do not fit in extent %lld of dimension %d "
                           "of %s", (long long)start, (long long)length, (long long)n, d,
                       ad__shape_str(x)), NULL;
    }
    return slice_core(fn, x, d, first, length, 1);
}

/* ---- slice_scatter -------------------------------------------------------------- */
static int slice_scatter_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    static const char *fn = "ad_slice_scatter";
    const slice_params *p = ad__params(n);
    if (ad__needs_grad(n, 0))
        gin[0] = slice_scatter_core(fn, g, zeros_like(n, n->in[1]), p->axis, p->first, p->count,
                                    p->step);
    if (ad__needs_grad(n, 1)) gin[1] = slice_core(fn, g, p->axis, p->first, p->count, p->step);
    return 0;
}
static void slice_scatter_run(ad_tensor *out, const ad_tensor *base, const ad_tensor *src,
                              const slice_params *p)
{
    ad__copy_same(out, base);
    ad_tensor v = ad__slab(out, p->axis, p->first, p->count, p->step);
    ad__copy_same(&v, src);
}
static int slice_scatter_fw(ad_node *n)
{
    slice_scatter_run(n->out, n->in[0], n->in[1], ad__params(n));
    return 0;
}
static const ad_op OP_SLICE_SCATTER = {
    .name = "slice_scatter",
    .formula = "y = base with y[first::step][:count] = src along an axis; "
               "dbase = g with that slice zeroed, dsrc = slice(g)",
    .backward = slice_scatter_bw,
    .forward = slice_scatter_fw,
    .params_size = sizeof(slice_params),
};
static ad_tensor *slice_scatter_core(const char *fn, ad_tensor *base, ad_tensor *src, int d,
                                     int64_t first, int64_t count, int64_t step)
{
    if (!base || !src) return NULL;
    ad_tensor *in[2] = {base, src};
    slice_params p = {d, first, count, step};
    ad_tensor *out = ad__result(fn, 2, in, base->dtype, base->ndim, base->shape);
    if (!out) return NULL;
    slice_scatter_run(out, base, src, &p);
    return ad__finish(out, 0, &OP_SLICE_SCATTER, 2, in, &p, NULL);
}

ad_tensor *ad_slice_scatter(ad_tensor *base, ad_tensor *src, int axis, int64_t start,
                            int64_t stop, int64_t step)
{
    static const char *fn = "ad_slice_scatter";
    int d;
    int64_t first, count;
    if (ad__check_arg(fn, "base", base, false) || ad__check_arg(fn, "src", src, false) ||
        ad__check_same_dtype(fn, base, src) || ad__dim_of(fn, base, axis, &d))
        return NULL;
    if (step < 1) return ad__err(fn, "step must be >= 1, got %lld", (long long)step), NULL;
    py_range(base->shape[d], start, stop, step, &first, &count);
    ad_tensor want = ad__slab(base, d, first, count, step);
    if (!ad__same_shape(&want, src)) {
        return ad__err(fn, "src has shape %s, expected %s: %lld elements from %lld in steps of "
                           "%lld along dimension %d of base %s", ad__shape_str(src),
                       ad__shape_str(&want), (long long)count, (long long)first, (long long)step,
                       d, ad__shape_str(base)), NULL;
    }
    return slice_scatter_core(fn, base, src, d, first, count, step);
}

/* ---- contiguous ------------------------------------------------------------------ */
static int contiguous_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    (void)n;
    gin[0] = g;
    return 0;
}
static int contiguous_fw(ad_node *n)
{
    if (n->out->storage != n->in[0]->storage) ad__copy_same(n->out, n->in[0]);
    return 0;
}
static const ad_op OP_CONTIGUOUS = {
    .name = "contiguous",
    .formula = "y = x laid out row-major; dx = g",
    .backward = contiguous_bw,
    .forward = contiguous_fw,
};
ad_tensor *ad_contiguous(ad_tensor *x)
{
    static const char *fn = "ad_contiguous";
    ad_tape *tape;
    if (ad__check_arg(fn, "x", x, false) || ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out;
    if (ad_is_contiguous(x)) {
        int64_t st[AD_MAX_DIMS]; /* canonical strides, also for extent-1 dimensions */
        ad__contig_strides(x->ndim, x->shape, st);
        out = ad__view(fn, tape, x, x->ndim, x->shape, st, x->offset);
    } else {
        out = ad__alloc(fn, tape, x->dtype, x->ndim, x->shape);
        if (out) ad__copy_same(out, x);
    }
    return ad__finish(out, 0, &OP_CONTIGUOUS, 1, &x, NULL, NULL);
}

/* ---- cast ------------------------------------------------------------------------- */
static int cast_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_cast(g, n->in[0]->dtype);
    return 0;
}
static int cast_fw(ad_node *n)
{
    /* (written without a version bump: the replay has just noted the
     * output's version for backward's check) */
    if (n->out->storage != n->in[0]->storage) ad__copy_convert(n->out, n->in[0]);
    return 0;
}
static const ad_op OP_CAST = {
    .name = "cast",
    .formula = "y = x converted to another dtype; dx = cast(g, x's dtype)",
    .backward = cast_bw,
    .forward = cast_fw,
};
ad_tensor *ad_cast(ad_tensor *x, ad_dtype dtype)
{
    static const char *fn = "ad_cast";
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    if (dtype != AD_FLOAT32 && dtype != AD_FLOAT64 && dtype != AD_INT64)
        return ad__err(fn, "invalid dtype %d", (int)dtype), NULL;
    if (dtype == AD_INT64 && x->dtype != AD_INT64)
        return ad__err(fn, "cannot cast %s to int64: only float32 <-> float64 and int64 -> "
                           "float casts exist", ad_dtype_name(x->dtype)), NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out;
    if (dtype == x->dtype) {
        out = ad__view(fn, tape, x, x->ndim, x->shape, x->strides, x->offset);
    } else {
        out = ad__alloc(fn, tape, dtype, x->ndim, x->shape);
        if (out) ad__copy_into(out, x); /* each value rounded once (tensor.c's copy_row) */
    }
    return ad__finish(out, 0, &OP_CAST, 1, &x, NULL, NULL);
}

const ad_op *const ad__ops_shape[] = {
    &OP_RESHAPE, &OP_EXPAND, &OP_PERMUTE, &OP_SLICE, &OP_SLICE_SCATTER, &OP_CONTIGUOUS,
    &OP_CAST, NULL,
};

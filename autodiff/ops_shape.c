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
 * exactly (a detour through double would round those above 2^53). */
#include "internal.h"

/* Records op for a result built by hand (views and copies).  A persistent
 * result is freed when recording fails (anomaly mode checks it). */
static ad_tensor *finish(ad_tensor *out, const ad_op *op, int nin, ad_tensor *const *in,
                         ad_node **node)
{
    ad_node *n = NULL;
    if (out && ad__record(op, out, nin, in, &n)) {
        if (!out->tape) ad_tensor_free(out);
        out = NULL;
    }
    if (node) *node = out ? n : NULL;
    return out;
}

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
static void copy_same(ad_tensor *dst, const ad_tensor *src)
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
static ad_tensor slab(const ad_tensor *t, int axis, int64_t start, int64_t count, int64_t step)
{
    ad_tensor s = *t;
    s.shape[axis] = count;
    if (count > 0) s.offset += start * t->strides[axis];
    if (count > 1) s.strides[axis] *= step;
    return s;
}

/* An existing dimension of x, named by a possibly negative axis. */
static int dim_of(const char *fn, const ad_tensor *x, int axis, int *d)
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
    copy_same(&dst, x);
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
static const ad_op OP_RESHAPE = {"reshape", "y = x with a new shape, same row-major order; "
                                            "dx = reshape(g, x's shape)", reshape_bw, reshape_fw};
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
        char a[160], b[160];
        ad__fmt_shape(x->ndim, x->shape, a, sizeof a);
        ad__fmt_shape(ndim, shape, b, sizeof b);
        if (ambiguous)
            return ad__err(fn, "cannot reshape %s to %s: the -1 extent is ambiguous next to "
                               "an extent 0", a, b), NULL;
        return ad__err(fn, "cannot reshape %s (%lld elements) to %s", a, (long long)numel, b),
               NULL;
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
    return finish(out, &OP_RESHAPE, 1, &x, NULL);
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
        char a[160];
        ad__fmt_shape(x->ndim, x->shape, a, sizeof a);
        return ad__err(fn, "start %d (dimension %d) is after end %d (dimension %d) for %s",
                       start, s, end, e, a), NULL;
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
    if (ad__check_arg(fn, "x", x, false) || dim_of(fn, x, axis, &a)) return NULL;
    if (x->shape[a] != 1) {
        char buf[160];
        ad__fmt_shape(x->ndim, x->shape, buf, sizeof buf);
        return ad__err(fn, "dimension %d of %s has extent %lld, not 1", a, buf,
                       (long long)x->shape[a]), NULL;
    }
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0, k = 0; d < x->ndim; d++)
        if (d != a) shape[k++] = x->shape[d];
    return ad_reshape(x, x->ndim - 1, shape);
}

/* The position a new dimension takes among ndim+1: axis in -(ndim+1)..ndim. */
static int new_axis(const char *fn, int axis, const ad_tensor *x, int *a)
{
    if (axis < -(x->ndim + 1) || axis > x->ndim) {
        char buf[160];
        ad__fmt_shape(x->ndim, x->shape, buf, sizeof buf);
        return ad__err(fn, "axis %d out of range %d..%d for a new dimension of %s", axis,
                       -(x->ndim + 1), x->ndim, buf);
    }
    *a = axis < 0 ? axis + x->ndim + 1 : axis;
    return 0;
}

ad_tensor *ad_unsqueeze(ad_tensor *x, int axis)
{
    static const char *fn = "ad_unsqueeze";
    int a = 0;
    if (ad__check_arg(fn, "x", x, false) || new_axis(fn, axis, x, &a)) return NULL;
    if (x->ndim == AD_MAX_DIMS)
        return ad__err(fn, "a tensor has at most %d dimensions", AD_MAX_DIMS), NULL;
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0, k = 0; d <= x->ndim; d++) shape[d] = d == a ? 1 : x->shape[k++];
    return ad_reshape(x, x->ndim + 1, shape);
}

/* ---- expand ------------------------------------------------------------------ */
static int expand_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_sum_to(g, n->in[0]->ndim, n->in[0]->shape);
    return 0;
}
static const ad_op OP_EXPAND = {"expand", "y = x broadcast to a shape (stride 0); "
                                          "dx = sum_to(g, x's shape)", expand_bw, NULL};
ad_tensor *ad_expand(ad_tensor *x, int ndim, const int64_t *shape)
{
    static const char *fn = "ad_expand";
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    if (ndim < x->ndim || ndim > AD_MAX_DIMS || (ndim > 0 && !shape)) {
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
            char a[160], b[160];
            ad__fmt_shape(x->ndim, x->shape, a, sizeof a);
            ad__fmt_shape(ndim, shape, b, sizeof b);
            return ad__err(fn, "cannot expand %s to %s", a, b), NULL;
        }
    }
    if (ad__check_shape(fn, ndim, s, NULL)) return NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    return finish(ad__view(fn, tape, x, ndim, s, st, x->offset), &OP_EXPAND, 1, &x, NULL);
}

/* ---- permute ------------------------------------------------------------------ */
static int permute_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    int inv[AD_MAX_DIMS];
    for (int i = 0; i < n->in[0]->ndim; i++) inv[n->ip[i]] = i;
    gin[0] = ad_permute(g, inv);
    return 0;
}
static const ad_op OP_PERMUTE = {"permute", "y = x with dims reordered, y dim i = x dim p[i]; "
                                            "dx = permute(g, p^-1)", permute_bw, NULL};
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
            char buf[160], list[64];
            int k = 0;
            ad__fmt_shape(x->ndim, x->shape, buf, sizeof buf);
            for (int j = 0; j < x->ndim && k < (int)sizeof list - 8; j++)
                k += snprintf(list + k, sizeof list - (size_t)k, j ? ",%d" : "%d", perm[j]);
            return ad__err(fn, "perm (%s) names dimension %d twice; it must list each "
                               "dimension of %s exactly once", list, p[i], buf), NULL;
        }
        seen[p[i]] = true;
    }
    int64_t s[AD_MAX_DIMS], st[AD_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) s[i] = x->shape[p[i]], st[i] = x->strides[p[i]];
    ad_tape *tape;
    ad_node *n;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *v = ad__view(fn, tape, x, x->ndim, s, st, x->offset);
    ad_tensor *out = finish(v, &OP_PERMUTE, 1, &x, &n);
    if (n)
        for (int i = 0; i < x->ndim; i++) n->ip[i] = p[i];
    return out;
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
 * adjoint writes g back into those places of zeros: slice_scatter. */
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
    gin[0] = slice_scatter_core("ad_slice", zeros_like(n, n->in[0]), g, (int)n->ip[0], n->ip[1],
                                n->ip[2], n->ip[3]);
    return 0;
}
static const ad_op OP_SLICE = {"slice", "y = x[first : first+count*step : step] along an axis "
                                        "(a view); dx = slice_scatter(zeros, g)", slice_bw, NULL};
static ad_tensor *slice_core(const char *fn, ad_tensor *x, int d, int64_t first, int64_t count,
                             int64_t step)
{
    ad_tape *tape;
    ad_node *n;
    if (!x || ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor v = slab(x, d, first, count, step);
    ad_tensor *out = finish(ad__view(fn, tape, x, v.ndim, v.shape, v.strides, v.offset),
                            &OP_SLICE, 1, &x, &n);
    if (n) n->ip[0] = d, n->ip[1] = first, n->ip[2] = count, n->ip[3] = step;
    return out;
}

ad_tensor *ad_slice(ad_tensor *x, int axis, int64_t start, int64_t stop, int64_t step)
{
    static const char *fn = "ad_slice";
    int d;
    int64_t first, count;
    if (ad__check_arg(fn, "x", x, false) || dim_of(fn, x, axis, &d)) return NULL;
    if (step < 1) return ad__err(fn, "step must be >= 1, got %lld", (long long)step), NULL;
    py_range(x->shape[d], start, stop, step, &first, &count);
    return slice_core(fn, x, d, first, count, step);
}

ad_tensor *ad_narrow(ad_tensor *x, int axis, int64_t start, int64_t length)
{
    static const char *fn = "ad_narrow";
    int d;
    if (ad__check_arg(fn, "x", x, false) || dim_of(fn, x, axis, &d)) return NULL;
    int64_t n = x->shape[d], first = start < 0 ? start + n : start;
    if (first < 0 || first > n || length < 0 || length > n - first) {
        char buf[160];
        ad__fmt_shape(x->ndim, x->shape, buf, sizeof buf);
        return ad__err(fn, "start %lld, length %lld do not fit in extent %lld of dimension %d "
                           "of %s", (long long)start, (long long)length, (long long)n, d, buf),
               NULL;
    }
    return slice_core(fn, x, d, first, length, 1);
}

/* ---- slice_scatter -------------------------------------------------------------- */
static int slice_scatter_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    static const char *fn = "ad_slice_scatter";
    int d = (int)n->ip[0];
    if (ad__needs_grad(n, 0))
        gin[0] = slice_scatter_core(fn, g, zeros_like(n, n->in[1]), d, n->ip[1], n->ip[2],
                                    n->ip[3]);
    if (ad__needs_grad(n, 1)) gin[1] = slice_core(fn, g, d, n->ip[1], n->ip[2], n->ip[3]);
    return 0;
}
static void slice_scatter_run(ad_tensor *out, const ad_tensor *base, const ad_tensor *src,
                              const int64_t *ip)
{
    copy_same(out, base);
    ad_tensor v = slab(out, (int)ip[0], ip[1], ip[2], ip[3]);
    copy_same(&v, src);
}
static int slice_scatter_fw(ad_node *n)
{
    slice_scatter_run(n->out, n->in[0], n->in[1], n->ip);
    return 0;
}
static const ad_op OP_SLICE_SCATTER = {
    "slice_scatter", "y = base with y[first::step][:count] = src along an axis; "
                     "dbase = g with that slice zeroed, dsrc = slice(g)", slice_scatter_bw,
    slice_scatter_fw};
static ad_tensor *slice_scatter_core(const char *fn, ad_tensor *base, ad_tensor *src, int d,
                                     int64_t first, int64_t count, int64_t step)
{
    if (!base || !src) return NULL;
    ad_tensor *in[2] = {base, src};
    ad_tape *tape;
    ad_node *n;
    if (ad__result_tape(fn, 2, in, &tape)) return NULL;
    int64_t ip[4] = {d, first, count, step};
    ad_tensor *out = ad__alloc(fn, tape, base->dtype, base->ndim, base->shape);
    if (!out) return NULL;
    slice_scatter_run(out, base, src, ip);
    out = finish(out, &OP_SLICE_SCATTER, 2, in, &n);
    if (n) memcpy(n->ip, ip, sizeof ip);
    return out;
}

ad_tensor *ad_slice_scatter(ad_tensor *base, ad_tensor *src, int axis, int64_t start,
                            int64_t stop, int64_t step)
{
    static const char *fn = "ad_slice_scatter";
    int d;
    int64_t first, count;
    if (ad__check_arg(fn, "base", base, false) || ad__check_arg(fn, "src", src, false) ||
        ad__check_same_dtype(fn, base, src) || dim_of(fn, base, axis, &d))
        return NULL;
    if (step < 1) return ad__err(fn, "step must be >= 1, got %lld", (long long)step), NULL;
    py_range(base->shape[d], start, stop, step, &first, &count);
    ad_tensor want = slab(base, d, first, count, step);
    if (!ad__same_shape(&want, src)) {
        char a[160], b[160], c[160];
        ad__fmt_shape(src->ndim, src->shape, a, sizeof a);
        ad__fmt_shape(want.ndim, want.shape, b, sizeof b);
        ad__fmt_shape(base->ndim, base->shape, c, sizeof c);
        return ad__err(fn, "src has shape %s, expected %s: %lld elements from %lld in steps of "
                           "%lld along dimension %d of base %s", a, b, (long long)count,
                       (long long)first, (long long)step, d, c), NULL;
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
    if (n->out->storage != n->in[0]->storage) copy_same(n->out, n->in[0]);
    return 0;
}
static const ad_op OP_CONTIGUOUS = {"contiguous", "y = x laid out row-major; dx = g", contiguous_bw,
                                    contiguous_fw};
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
        if (out) copy_same(out, x);
    }
    return finish(out, &OP_CONTIGUOUS, 1, &x, NULL);
}

/* ---- cast ------------------------------------------------------------------------- */
static int cast_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_cast(g, n->in[0]->dtype);
    return 0;
}
static int cast_fw(ad_node *n)
{
    if (n->out->storage != n->in[0]->storage) ad_copy_into(n->out, n->in[0]);
    return 0;
}
static const ad_op OP_CAST = {"cast", "y = x converted to another dtype; dx = cast(g, x's dtype)",
                              cast_bw, cast_fw};
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
        if (out) ad_copy_into(out, x); /* converts through double: exact, then rounds once */
    }
    return finish(out, &OP_CAST, 1, &x, NULL);
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

static int concat_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    int d = (int)n->ip[0];
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
        ad_tensor v = slab(out, d, off, xs[i]->shape[d], 1);
        copy_same(&v, xs[i]);
        off += xs[i]->shape[d];
    }
}
static int concat_fw(ad_node *n)
{
    concat_run(n->out, n->in, n->nin, (int)n->ip[0]);
    return 0;
}
static const ad_op OP_CONCAT = {"concat", "y = [x_0, x_1, ...] joined along an axis; "
                                          "dx_i = narrow(g, axis, offset_i, extent_i)", concat_bw,
                                concat_fw};
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
            char a[160], b[160], c[160];
            ad__fmt_shape(xs[i]->ndim, xs[i]->shape, a, sizeof a);
            fmt_star(x0, d, b, sizeof b);
            ad__fmt_shape(x0->ndim, x0->shape, c, sizeof c);
            return ad__err(fn, "tensor %d has shape %s, expected %s with the other extents of "
                               "tensor 0 %s", i, a, b, c), NULL;
        }
        total += xs[i]->shape[d];
        if (total > ((int64_t)1 << 60)) return ad__err(fn, "the result is too large"), NULL;
    }
    shape[d] = total;
    ad_tape *tape;
    ad_node *node;
    if (ad__result_tape(fn, n, xs, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, x0->dtype, x0->ndim, shape);
    if (!out) return NULL;
    concat_run(out, xs, n, d);
    out = finish(out, &OP_CONCAT, n, xs, &node);
    if (node) node->ip[0] = d;
    return out;
}

ad_tensor *ad_stack(ad_tensor *const *xs, int n, int axis)
{
    static const char *fn = "ad_stack";
    int a = 0;
    if (check_list(fn, xs, n) || new_axis(fn, axis, xs[0], &a)) return NULL;
    for (int i = 1; i < n; i++)
        if (!ad__same_shape(xs[i], xs[0])) {
            char s[160], s0[160];
            ad__fmt_shape(xs[i]->ndim, xs[i]->shape, s, sizeof s);
            ad__fmt_shape(xs[0]->ndim, xs[0]->shape, s0, sizeof s0);
            return ad__err(fn, "tensor %d has shape %s, expected %s like tensor 0", i, s, s0),
                   NULL;
        }
    if (xs[0]->ndim == AD_MAX_DIMS)
        return ad__err(fn, "a tensor has at most %d dimensions", AD_MAX_DIMS), NULL;
    /* The unsqueezed views go where the result will: onto the inputs' tape
     * (made active meanwhile, so persistent inputs' views land there too),
     * or, with no tape at all, they are persistent and freed here, which is
     * safe since nothing was recorded. */
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

/* Every entry of index must lie in [-size, size) for dimension d of x; the
 * error names the first one that does not, by position and value. */
static int check_range(const char *fn, const ad_tensor *index, const ad_tensor *x,
                       const char *xname, int d)
{
    int64_t p[AD_MAX_DIMS] = {0}, size = x->shape[d];
    if (ad__numel(index->ndim, index->shape) == 0) return 0;
    do {
        int64_t v = ((const int64_t *)index->storage->data)[ad__offset_of(index, p)];
        if (v < -size || v >= size) {
            char a[160], b[160];
            ad__fmt_shape(index->ndim, p, a, sizeof a);
            ad__fmt_shape(x->ndim, x->shape, b, sizeof b);
            return ad__err(fn, "index%s = %lld is out of range [%lld, %lld) for dimension %d "
                               "of %s %s", a, (long long)v, (long long)-size, (long long)size,
                           d, xname, b);
        }
    } while (next_index(index->ndim, index->shape, p));
    return 0;
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

/* Records an op whose input 1 is an index.  A persistent index is replaced
 * in the record by a view on the tape, which holds its storage, so the
 * caller may free it before backward. */
static ad_tensor *finish_indexed(const char *fn, ad_tensor *out, const ad_op *op, int nin,
                                 ad_tensor **in, int d)
{
    ad_node *n;
    if (!out) return NULL;
    if (out->tape && !in[1]->tape) {
        ad_tensor *idx = in[1];
        in[1] = ad__view(fn, out->tape, idx, idx->ndim, idx->shape, idx->strides, idx->offset);
        if (!in[1]) return NULL;
    }
    out = finish(out, op, nin, in, &n);
    if (n) n->ip[0] = d;
    return out;
}

/* Allocates the result of an index op and runs its kernel; a persistent
 * result is freed again when the kernel rejects the index. */
typedef int (*index_kernel)(ad_tensor *out, ad_tensor *const *in, int d);
static ad_tensor *index_op(const char *fn, const ad_op *op, index_kernel run, int nin,
                           ad_tensor **in, int d, ad_tensor *like, const ad_tensor *shape_of)
{
    ad_tape *tape;
    if (ad__result_tape(fn, nin, in, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, like->dtype, shape_of->ndim, shape_of->shape);
    if (!out) return NULL;
    if (run(out, in, d)) {
        if (!tape) ad_tensor_free(out);
        return NULL;
    }
    return finish_indexed(fn, out, op, nin, in, d);
}

/* ---- index_select ------------------------------------------------------------------ */
static int index_select_run(ad_tensor *out, ad_tensor *const *in, int d)
{
    const ad_tensor *x = in[0], *index = in[1];
    if (check_range("ad_index_select", index, x, "x", d)) return -1;
    for (int64_t j = 0; j < index->shape[0]; j++) {
        int64_t k = entry(index, index->offset + j * index->strides[0], x->shape[d]);
        ad_tensor dst = slab(out, d, j, 1, 1), src = slab(x, d, k, 1, 1);
        copy_same(&dst, &src);
    }
    return 0;
}
static int index_select_fw(ad_node *n) { return index_select_run(n->out, n->in, (int)n->ip[0]); }
static int index_select_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_index_add(zeros_like(n, n->in[0]), (int)n->ip[0], n->in[1], g);
    return 0;
}
static const ad_op OP_INDEX_SELECT = {
    "index_select", "y = x[.., index[j], ..] along an axis; dx = index_add(zeros, axis, index, g)",
    index_select_bw, index_select_fw};
ad_tensor *ad_index_select(ad_tensor *x, int axis, ad_tensor *index)
{
    static const char *fn = "ad_index_select";
    int d;
    if (ad__check_arg(fn, "x", x, false) || check_index(fn, index) || dim_of(fn, x, axis, &d))
        return NULL;
    if (index->ndim != 1) {
        char s[160];
        ad__fmt_shape(index->ndim, index->shape, s, sizeof s);
        return ad__err(fn, "index must be 1-D, got shape %s", s), NULL;
    }
    ad_tensor *in[2] = {x, index}, want = slab(x, d, 0, index->shape[0], 1);
    return index_op(fn, &OP_INDEX_SELECT, index_select_run, 2, in, d, x, &want);
}

/* ---- index_add ---------------------------------------------------------------------- */
static int index_add_run(ad_tensor *out, ad_tensor *const *in, int d)
{
    const ad_tensor *base = in[0], *index = in[1], *src = in[2];
    int64_t p[AD_MAX_DIMS] = {0};
    if (check_range("ad_index_add", index, base, "base", d)) return -1;
    copy_same(out, base);
    if (ad__numel(src->ndim, src->shape) == 0) return 0;
    do { /* src's element p lands at p with p[d] replaced by index[p[d]] */
        int64_t j = p[d], os = ad__offset_of(src, p);
        p[d] = entry(index, index->offset + j * index->strides[0], base->shape[d]);
        add_elem(out, ad__offset_of(out, p), src, os);
        p[d] = j;
    } while (next_index(src->ndim, src->shape, p));
    return 0;
}
static int index_add_fw(ad_node *n) { return index_add_run(n->out, n->in, (int)n->ip[0]); }
static int index_add_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    if (ad__needs_grad(n, 0)) gin[0] = g;
    if (ad__needs_grad(n, 2)) gin[2] = ad_index_select(g, (int)n->ip[0], n->in[1]);
    return 0;
}
static const ad_op OP_INDEX_ADD = {
    "index_add", "y = base; y[.., index[j], ..] += src[.., j, ..]; "
                 "dbase = g, dsrc = index_select(g, axis, index)", index_add_bw, index_add_fw};
ad_tensor *ad_index_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src)
{
    static const char *fn = "ad_index_add";
    int d;
    if (ad__check_arg(fn, "base", base, false) || check_index(fn, index) ||
        ad__check_arg(fn, "src", src, false) || ad__check_same_dtype(fn, base, src) ||
        dim_of(fn, base, axis, &d))
        return NULL;
    char a[160], b[160], c[160];
    if (index->ndim != 1) {
        ad__fmt_shape(index->ndim, index->shape, a, sizeof a);
        return ad__err(fn, "index must be 1-D, got shape %s", a), NULL;
    }
    ad_tensor want = slab(base, d, 0, index->shape[0], 1);
    if (!ad__same_shape(&want, src)) {
        ad__fmt_shape(src->ndim, src->shape, a, sizeof a);
        ad__fmt_shape(want.ndim, want.shape, b, sizeof b);
        ad__fmt_shape(base->ndim, base->shape, c, sizeof c);
        return ad__err(fn, "src has shape %s, expected %s: base %s with extent len(index) = "
                           "%lld along dimension %d", a, b, c, (long long)index->shape[0], d),
               NULL;
    }
    ad_tensor *in[3] = {base, index, src};
    return index_op(fn, &OP_INDEX_ADD, index_add_run, 3, in, d, base, base);
}

/* ---- gather and scatter_add --------------------------------------------------------- */

/* index must have t's ndim and fit inside t except along dimension d. */
static int check_fits(const char *fn, const ad_tensor *index, const ad_tensor *t,
                      const char *tname, int d)
{
    char a[160], b[160];
    ad__fmt_shape(index->ndim, index->shape, a, sizeof a);
    ad__fmt_shape(t->ndim, t->shape, b, sizeof b);
    if (index->ndim != t->ndim)
        return ad__err(fn, "index has shape %s but %s has shape %s: they need the same number "
                           "of dimensions", a, tname, b);
    for (int k = 0; k < t->ndim; k++)
        if (k != d && index->shape[k] > t->shape[k])
            return ad__err(fn, "index shape %s does not fit %s %s: extent %lld of dimension %d "
                               "exceeds %lld (only dimension %d, the axis, may be longer)", a,
                           tname, b, (long long)index->shape[k], k, (long long)t->shape[k], d);
    return 0;
}

static int gather_run(ad_tensor *out, ad_tensor *const *in, int d)
{
    const ad_tensor *x = in[0], *index = in[1];
    int64_t p[AD_MAX_DIMS] = {0}, j = 0;
    size_t es = ad_dtype_size(x->dtype);
    if (check_range("ad_gather", index, x, "x", d)) return -1;
    if (ad__numel(out->ndim, out->shape) == 0) return 0;
    do {
        int64_t k = p[d];
        p[d] = entry(index, ad__offset_of(index, p), x->shape[d]);
        memcpy((char *)out->storage->data + j++ * (int64_t)es,
               (const char *)x->storage->data + ad__offset_of(x, p) * (int64_t)es, es);
        p[d] = k;
    } while (next_index(out->ndim, out->shape, p));
    return 0;
}
static int gather_fw(ad_node *n) { return gather_run(n->out, n->in, (int)n->ip[0]); }
static int gather_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_scatter_add(zeros_like(n, n->in[0]), (int)n->ip[0], n->in[1], g);
    return 0;
}
static const ad_op OP_GATHER = {
    "gather", "y[i][j][k] = x[i][index[i][j][k]][k] (axis 1); "
              "dx = scatter_add(zeros, axis, index, g)",
    gather_bw, gather_fw};
ad_tensor *ad_gather(ad_tensor *x, int axis, ad_tensor *index)
{
    static const char *fn = "ad_gather";
    int d;
    if (ad__check_arg(fn, "x", x, false) || check_index(fn, index) || dim_of(fn, x, axis, &d) ||
        check_fits(fn, index, x, "x", d))
        return NULL;
    ad_tensor *in[2] = {x, index};
    return index_op(fn, &OP_GATHER, gather_run, 2, in, d, x, index);
}

static int scatter_add_run(ad_tensor *out, ad_tensor *const *in, int d)
{
    const ad_tensor *base = in[0], *index = in[1], *src = in[2];
    int64_t p[AD_MAX_DIMS] = {0};
    if (check_range("ad_scatter_add", index, base, "base", d)) return -1;
    copy_same(out, base);
    if (ad__numel(src->ndim, src->shape) == 0) return 0;
    do {
        int64_t k = p[d], os = ad__offset_of(src, p);
        p[d] = entry(index, ad__offset_of(index, p), base->shape[d]);
        add_elem(out, ad__offset_of(out, p), src, os);
        p[d] = k;
    } while (next_index(src->ndim, src->shape, p));
    return 0;
}
static int scatter_add_fw(ad_node *n) { return scatter_add_run(n->out, n->in, (int)n->ip[0]); }
static int scatter_add_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    if (ad__needs_grad(n, 0)) gin[0] = g;
    if (ad__needs_grad(n, 2)) gin[2] = ad_gather(g, (int)n->ip[0], n->in[1]);
    return 0;
}
static const ad_op OP_SCATTER_ADD = {
    "scatter_add", "y = base; y[i][index[i][j][k]][k] += src[i][j][k] (axis 1); "
                   "dbase = g, dsrc = gather(g, axis, index)", scatter_add_bw, scatter_add_fw};
ad_tensor *ad_scatter_add(ad_tensor *base, int axis, ad_tensor *index, ad_tensor *src)
{
    static const char *fn = "ad_scatter_add";
    int d;
    if (ad__check_arg(fn, "base", base, false) || check_index(fn, index) ||
        ad__check_arg(fn, "src", src, false) || ad__check_same_dtype(fn, base, src) ||
        dim_of(fn, base, axis, &d) || check_fits(fn, index, base, "base", d))
        return NULL;
    if (!ad__same_shape(src, index)) {
        char a[160], b[160];
        ad__fmt_shape(src->ndim, src->shape, a, sizeof a);
        ad__fmt_shape(index->ndim, index->shape, b, sizeof b);
        return ad__err(fn, "src has shape %s but index has shape %s; they must be equal", a, b),
               NULL;
    }
    ad_tensor *in[3] = {base, index, src};
    return index_op(fn, &OP_SCATTER_ADD, scatter_add_run, 3, in, d, base, base);
}

const ad_op *const ad__ops_shape[] = {
    &OP_RESHAPE, &OP_EXPAND, &OP_PERMUTE, &OP_SLICE, &OP_SLICE_SCATTER, &OP_CONTIGUOUS,
    &OP_CAST, &OP_CONCAT, &OP_INDEX_SELECT, &OP_INDEX_ADD, &OP_GATHER, &OP_SCATTER_ADD, NULL,
};

/* autodiff/ops_shape.c - views, shape changes and indexing: kernel, rule and
 * formula side by side.  View ops build a new header over the same storage;
 * their rules apply the inverse view to g. */
#include "internal.h"

/* Records op for a result built by hand (views and copies). */
static ad_tensor *finish(ad_tensor *out, const ad_op *op, int nin, ad_tensor *const *in,
                         ad_node **node)
{
    ad_node *n;
    if (!out || ad__record(op, out, nin, in, &n)) return NULL;
    if (node) *node = n;
    return out;
}

/* ---- reshape ---------------------------------------------------------------- */
static int reshape_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_reshape(g, n->in[0]->ndim, n->in[0]->shape);
    return 0;
}
static const ad_op OP_RESHAPE = {"reshape", "y = x with a new shape, same row-major order; "
                                            "dx = reshape(g, x's shape)", reshape_bw};
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
        } else {
            known *= s[d];
        }
    }
    if (infer >= 0) s[infer] = known ? numel / known : 0;
    if (ad__check_shape(fn, ndim, s, NULL)) return NULL;
    if (ad__numel(ndim, s) != numel) {
        char a[160], b[160];
        ad__fmt_shape(x->ndim, x->shape, a, sizeof a);
        ad__fmt_shape(ndim, shape, b, sizeof b);
        return ad__err(fn, "cannot reshape %s (%lld elements) to %s", a, (long long)numel, b),
               NULL;
    }
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out;
    if (ad_is_contiguous(x)) {
        int64_t st[AD_MAX_DIMS];
        ad__contig_strides(ndim, s, st);
        out = ad__view(fn, tape, x, ndim, s, st, x->offset);
    } else {
        out = ad__alloc(fn, tape, x->dtype, ndim, s);
        if (!out) return NULL;
        /* Copy x's elements in row-major order through a header that sees
         * out's buffer with x's shape. */
        ad_tensor dst = *out;
        dst.ndim = x->ndim;
        memcpy(dst.shape, x->shape, sizeof dst.shape);
        ad__contig_strides(x->ndim, dst.shape, dst.strides);
        ad_copy_into(&dst, x);
    }
    return finish(out, &OP_RESHAPE, 1, &x, NULL);
}

/* ---- expand ------------------------------------------------------------------ */
static int expand_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_sum_to(g, n->in[0]->ndim, n->in[0]->shape);
    return 0;
}
static const ad_op OP_EXPAND = {"expand", "y = x broadcast to a shape (stride 0); dx = sum_to(g, x's shape)",
                                expand_bw};
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
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    return finish(ad__view(fn, tape, x, ndim, s, st, x->offset), &OP_EXPAND, 1, &x, NULL);
}

const ad_op *const ad__ops_shape[] = {
    &OP_RESHAPE, &OP_EXPAND, NULL,
};

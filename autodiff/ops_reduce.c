/* autodiff/ops_reduce.c - reductions: kernel, rule and formula side by side.
 *
 * Results are accumulated in double whatever the dtype, so a float32 sum
 * of a million elements keeps float32's precision in its result. */
#include "internal.h"

int ad__reduce_plan(const char *fn, const ad_tensor *x, const int *axes, int naxes,
                    bool keepdim, ad_reduce_plan *p)
{
    memset(p, 0, sizeof *p);
    if (naxes < 0 || naxes > x->ndim)
        return ad__err(fn, "naxes %d out of range for a %d-dimensional tensor", naxes, x->ndim);
    if (naxes > 0 && !axes) return ad__err(fn, "axes is NULL with naxes %d", naxes);
    for (int i = 0; i < naxes; i++) {
        int a;
        if (ad__axis(fn, axes[i], x->ndim, &a)) return -1;
        if (x->ndim == 0) continue; /* axis 0 / -1 of a 0-d tensor: nothing to remove */
        if (p->reduced[a]) return ad__err(fn, "axis %d repeated", axes[i]);
        p->reduced[a] = true;
    }
    if (naxes == 0)
        for (int d = 0; d < x->ndim; d++) p->reduced[d] = true;
    p->count = 1;
    for (int d = 0; d < x->ndim; d++) {
        p->keep_shape[d] = p->reduced[d] ? 1 : x->shape[d];
        if (p->reduced[d]) p->count *= x->shape[d];
        if (!p->reduced[d] || keepdim) p->shape[p->ndim++] = p->keep_shape[d];
    }
    return 0;
}

typedef struct {
    const ad_tensor *x;
    double *acc;
    int kind;
} fold_ctx;

static void fold_row(int64_t len, const int64_t *off, const int64_t *step, void *vctx)
{
    fold_ctx *c = vctx;
    double *a = c->acc + off[0];
    for (int64_t i = 0; i < len; i++) {
        double v = ad__ld(c->x, off[1] + i * step[1]);
        double *d = a + i * step[0];
        if (c->kind == 0) *d += v;
        else if (c->kind == 1) *d = (v > *d || isnan(v)) ? v : *d;
        else *d = (v < *d || isnan(v)) ? v : *d;
    }
}

void ad__reduce_into(const ad_tensor *x, const ad_reduce_plan *p, double *acc, int kind)
{
    /* The accumulator is viewed with the keepdim shape; the iterator turns
     * its extent-1 dimensions into stride 0, so every element of x lands on
     * its result. */
    ad_storage st = {.data = acc, .in_arena = true};
    ad_tensor acc_t = {.dtype = AD_FLOAT64, .ndim = x->ndim, .storage = &st};
    memcpy(acc_t.shape, p->keep_shape, sizeof acc_t.shape);
    ad__contig_strides(x->ndim, acc_t.shape, acc_t.strides);
    ad_iter it = {.ndim = x->ndim};
    memcpy(it.shape, x->shape, sizeof it.shape);
    ad__iter_add(&it, &acc_t);
    ad__iter_add(&it, x);
    fold_ctx c = {x, acc, kind};
    ad__iter_run(&it, fold_row, &c);
}

/* Allocates the result, folds x into it with `kind`, records op. */
static ad_tensor *reduce(const char *fn, const ad_op *op, ad_tensor *x, const ad_reduce_plan *p,
                         int kind, double init, ad_node **node)
{
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, x->dtype, p->ndim, p->shape);
    if (!out) return NULL;
    int64_t n = ad__numel(p->ndim, p->shape);
    double *acc = ad__malloc((size_t)(n ? n : 1) * sizeof *acc);
    if (!acc) {
        if (!tape) ad_tensor_free(out);
        ad__err(fn, "out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) acc[i] = init;
    ad__reduce_into(x, p, acc, kind);
    for (int64_t i = 0; i < n; i++) ad__st(out, i, acc[i]);
    ad__free(acc);
    if (ad__record(op, out, 1, &x, node)) return NULL;
    if (*node)
        for (int d = 0; d < x->ndim; d++) (*node)->ip[d] = p->keep_shape[d];
    return out;
}

/* g reshaped to the keepdim shape stored in the node, then broadcast back
 * over x: the adjoint of "sum over some axes". */
static ad_tensor *spread(ad_node *n, ad_tensor *g)
{
    ad_tensor *x = n->in[0];
    ad_tensor *k = ad_reshape(g, x->ndim, n->ip);
    return ad_expand(k, x->ndim, x->shape);
}

/* ---- sum ----------------------------------------------------------------- */
static int sum_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = spread(n, g);
    return 0;
}
static const ad_op OP_SUM = {"sum", "y = sum_i x_i; dx = expand(g)", sum_bw};
ad_tensor *ad_sum(ad_tensor *x, const int *axes, int naxes, bool keepdim)
{
    ad_reduce_plan p;
    ad_node *n;
    if (ad__check_arg("ad_sum", "x", x, true) ||
        ad__reduce_plan("ad_sum", x, axes, naxes, keepdim, &p))
        return NULL;
    return reduce("ad_sum", &OP_SUM, x, &p, 0, 0.0, &n);
}

/* ---- sum_to ------------------------------------------------------------------ */
static int sum_to_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_expand(g, n->in[0]->ndim, n->in[0]->shape);
    return 0;
}
static const ad_op OP_SUM_TO = {"sum_to", "y = x summed down to a broadcastable shape; dx = expand(g)",
                                sum_to_bw};
ad_tensor *ad_sum_to(ad_tensor *x, int ndim, const int64_t *shape)
{
    static const char *fn = "ad_sum_to";
    if (ad__check_arg(fn, "x", x, true) || ad__check_shape(fn, ndim, shape, NULL)) return NULL;
    int lead = x->ndim - ndim;
    bool ok = lead >= 0;
    ad_reduce_plan p;
    memset(&p, 0, sizeof p);
    p.count = 1;
    for (int d = 0; ok && d < x->ndim; d++) {
        int td = d - lead;
        bool red = td < 0 || (shape[td] == 1 && x->shape[d] != 1);
        if (td >= 0 && !red && shape[td] != x->shape[d]) ok = false;
        p.reduced[d] = red;
        p.keep_shape[d] = red ? 1 : x->shape[d];
        if (red) p.count *= x->shape[d];
    }
    if (!ok) {
        char a[160], b[160];
        ad__fmt_shape(x->ndim, x->shape, a, sizeof a);
        ad__fmt_shape(ndim, shape, b, sizeof b);
        ad__err(fn, "shape %s cannot be summed to %s", a, b);
        return NULL;
    }
    if (lead == 0) {
        bool same = true;
        for (int d = 0; d < ndim; d++) same &= shape[d] == x->shape[d];
        if (same) return x; /* nothing to sum: the identity needs no node */
    }
    p.ndim = ndim;
    for (int d = 0; d < ndim; d++) p.shape[d] = shape[d];
    ad_node *n;
    return reduce(fn, &OP_SUM_TO, x, &p, 0, 0.0, &n);
}

const ad_op *const ad__ops_reduce[] = {
    &OP_SUM, &OP_SUM_TO, NULL,
};

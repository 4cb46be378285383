/* autodiff/ops_norm.c - embedding, layer norm and batch norm, composed from
 * public ops inside an ad_scope (tape.h), so that they are differentiable
 * to any order and replay like any recording, and batch norm's running
 * statistics, an op of their own (a recorded in-place update of two
 * buffers that replay repeats, with no gradient).  The convolutions and
 * pools are in ops_nn.c. */
#include <math.h>

#include "internal.h"

/* ---- embedding ---------------------------------------------------------------------------------- */

ad_tensor *ad_embedding(ad_tensor *weight, ad_tensor *indices)
{
    static const char *fn = "ad_embedding";
    if (ad__check_arg(fn, "weight", weight, true) ||
        ad__check_arg(fn, "indices", indices, false))
        return NULL;
    if (weight->ndim != 2)
        return ad__err(fn, "weight must be 2-D [V, D], got %s", ad__shape_str(weight)), NULL;
    if (indices->dtype != AD_INT64)
        return ad__err(fn, "indices must be int64, got %s", ad_dtype_name(indices->dtype)), NULL;
    if (indices->ndim >= AD_MAX_DIMS)
        return ad__err(fn, "indices have %d dimensions; at most %d are allowed", indices->ndim,
                       AD_MAX_DIMS - 1), NULL;
    /* index_select would accept negative entries; an embedding does not.
     * Checked here so the message names the position in indices' shape. */
    int64_t V = weight->shape[0], n = ad__numel(indices->ndim, indices->shape);
    int64_t pos[AD_MAX_DIMS] = {0};
    for (int64_t k = 0; k < n; k++) {
        int64_t v = ((const int64_t *)indices->storage->data)[ad__offset_of(indices, pos)];
        if (v < 0 || v >= V) {
            return ad__err(fn, "index %lld at position %s is out of range for %lld embeddings "
                               "(weight %s)", (long long)v, ad__dims_str(indices->ndim, pos),
                           (long long)V, ad__shape_str(weight)), NULL;
        }
        for (int d = indices->ndim - 1; d >= 0 && ++pos[d] == indices->shape[d]; d--) pos[d] = 0;
    }
    ad_scope s;
    ad_tensor *in[2] = {weight, indices};
    if (ad_scope_begin(&s, fn, 2, in, false)) return NULL;
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0; d < indices->ndim; d++) shape[d] = indices->shape[d];
    shape[indices->ndim] = weight->shape[1];
    ad_tensor *rows = ad_index_select(weight, 0, ad_reshape(indices, 1, (int64_t[]){n}));
    return ad_scope_end(&s, ad_reshape(rows, indices->ndim + 1, shape));
}

/* ---- normalisation ------------------------------------------------------------------------------- */

static int check_eps(const char *fn, double eps)
{
    return eps >= 0 && isfinite(eps) ? 0 : ad__err(fn, "eps must be finite and >= 0, got %g", eps);
}

/* (x - mean) / sqrt(var + eps); mean and var broadcast against x. */
static ad_tensor *normalise(ad_tensor *x, ad_tensor *mean, ad_tensor *var, double eps)
{
    return ad_div(ad_sub(x, mean), ad_sqrt(ad_add_scalar(var, eps)));
}

/* An optional affine parameter must have exactly `shape`. */
static int check_param(const char *fn, const char *name, const ad_tensor *t, const ad_tensor *x,
                       int ndim, const int64_t *shape, const char *what)
{
    bool present;
    if (ad__check_opt(fn, name, t, true, &present)) return -1;
    if (!present) return 0;
    if (ad__check_like(fn, name, t, x)) return -1;
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (ok) return 0;
    return ad__err(fn, "%s has shape %s but %s of x %s are %s", name, ad__shape_str(t), what,
                   ad__shape_str(x), ad__dims_str(ndim, shape));
}

ad_tensor *ad_layer_norm(ad_tensor *x, int nnormdims, ad_tensor *weight, ad_tensor *bias,
                         double eps)
{
    static const char *fn = "ad_layer_norm";
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    if (nnormdims < 1 || nnormdims > x->ndim) {
        return ad__err(fn, "nnormdims %d out of range 1..%d for x %s", nnormdims, x->ndim,
                       ad__shape_str(x)), NULL;
    }
    const int64_t *last = x->shape + (x->ndim - nnormdims);
    char what[64];
    snprintf(what, sizeof what, "the last %d dimension%s", nnormdims, nnormdims > 1 ? "s" : "");
    if (check_param(fn, "weight", weight, x, nnormdims, last, what) ||
        check_param(fn, "bias", bias, x, nnormdims, last, what) || check_eps(fn, eps))
        return NULL;
    ad_scope s;
    ad_tensor *in[3] = {x, weight, bias};
    if (ad_scope_begin(&s, fn, 3, in, false)) return NULL;
    /* one op of ops_fused.c (a copy first for a strided x) */
    return ad_scope_end(&s, ad__layer_norm_fused(fn, x, nnormdims, weight, bias, eps));
}

/* Running statistics: [C] of x's dtype, overwritten in training. */
static int check_running(const char *fn, const char *name, const ad_tensor *t,
                         const ad_tensor *x, bool training)
{
    if (check_param(fn, name, t, x, 1, x->shape + 1, "the channels (dimension 1)")) return -1;
    if (t && training && t->requires_grad)
        return ad__err(fn, "%s requires grad, but training overwrites it in place", name);
    if (t && training && ad__refuse_expanded(fn, name, t)) return -1;
    return 0;
}

/* ---- batch_norm's running statistics ----------------------------------------------------
 * Not part of the function differentiated, but an op all the same: on a
 * replayable tape it is recorded, and its replay forward folds the
 * replayed batch's statistics into the buffers again, as a fresh
 * recording would.  Its output (the new running mean) only gives the node
 * a result; nothing reads it. */
typedef struct bn_stats_params {
    ad_tensor *running_mean, *running_var; /* the caller's: must outlive every replay */
    ad_tensor *count;                      /* NULL, or num_batches_tracked (the same) */
    double momentum, unbias;               /* unbias = M / (M - 1) */
} bn_stats_params;

/* running = (1 - m) running + m stat per channel; mean and var are
 * contiguous [1, C, 1, ...], so channel c is element c. */
static void fold_running(ad_tensor *out, const ad_tensor *mean, const ad_tensor *var,
                         const bn_stats_params *p)
{
    ad_tensor *rm = p->running_mean, *rv = p->running_var;
    double m = p->momentum;
    for (int64_t c = 0; c < rm->shape[0]; c++) {
        int64_t om = rm->offset + c * rm->strides[0], ov = rv->offset + c * rv->strides[0];
        double nm = (1 - m) * ad__ld(rm, om) + m * ad__ld(mean, mean->offset + c);
        ad__st(rm, om, nm);
        ad__st(rv, ov, (1 - m) * ad__ld(rv, ov) + m * p->unbias * ad__ld(var, var->offset + c));
        if (out) ad__st(out, out->offset + c, nm);
    }
    /* the batches folded in so far, counted where they are folded, so a
     * replay counts as a fresh recording does */
    if (p->count) {
        ad__st(p->count, p->count->offset, ad__ld(p->count, p->count->offset) + 1);
        ad__bump(p->count);
    }
    /* An eval-mode graph recorded earlier reads them: it must not be
     * differentiated with the updated values. */
    ad__bump(rm);
    ad__bump(rv);
}

static int bn_stats_fw(ad_node *n)
{
    fold_running(n->out, n->in[0], n->in[1], ad__params(n));
    return 0;
}
static const ad_op OP_BATCH_NORM_STATS = {
    .name = "batch_norm_stats",
    .formula = "running_mean = (1 - m) running_mean + m mu; running_var = (1 - m) running_var "
               "+ m v M / (M - 1); num_batches_tracked += 1 (if given); in place, again at "
               "every replay; not differentiable",
    .backward = NULL,
    .forward = bn_stats_fw,
    .params_size = sizeof(bn_stats_params),
};

/* Folds mean and var into the running statistics, recorded as the op
 * above when they live on a tape; y, or NULL when recording fails. */
static ad_tensor *update_running(const char *fn, ad_tensor *y, ad_tensor *mean, ad_tensor *var,
                                 ad_tensor *rm, ad_tensor *rv, ad_tensor *count, double momentum,
                                 int64_t M)
{
    bn_stats_params p = {rm, rv, count, momentum, (double)M / (double)(M - 1)};
    if (!mean || !var) return NULL;
    if (!mean->tape) {
        fold_running(NULL, mean, var, &p);
        return y;
    }
    ad_tensor *in[2] = {mean, var};
    ad_tensor *u = ad__alloc(fn, mean->tape, mean->dtype, 1, rm->shape);
    if (u) fold_running(u, mean, var, &p);
    return u && ad__finish(u, 0, &OP_BATCH_NORM_STATS, 2, in, &p, NULL) ? y : NULL;
}

static ad_tensor *batch_norm(const char *fn, ad_tensor *x, ad_tensor *running_mean,
                             ad_tensor *running_var, ad_tensor *count, ad_tensor *weight,
                             ad_tensor *bias, bool training, double momentum, double eps)
{
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    if (x->ndim < 2)
        return ad__err(fn, "x must be [N, C, ...] (ndim >= 2), got %s", ad__shape_str(x)), NULL;
    if (!running_mean != !running_var)
        return ad__err(fn, "give both running_mean and running_var, or neither"), NULL;
    if (!training && !running_mean)
        return ad__err(fn, "eval mode (training false) needs running_mean and running_var"),
               NULL;
    const char *ch = "the channels (dimension 1)";
    if ((running_mean && (check_running(fn, "running_mean", running_mean, x, training) ||
                          check_running(fn, "running_var", running_var, x, training))) ||
        check_param(fn, "weight", weight, x, 1, x->shape + 1, ch) ||
        check_param(fn, "bias", bias, x, 1, x->shape + 1, ch) || check_eps(fn, eps))
        return NULL;
    if (!(momentum >= 0 && momentum <= 1))
        return ad__err(fn, "momentum must be in [0, 1], got %g", momentum), NULL;
    /* M: the values per channel, N times the spatial extents (PyTorch's
     * test, which a batch of no channels passes) */
    int64_t C = x->shape[1], M = x->shape[0];
    for (int d = 2; d < x->ndim; d++) M *= x->shape[d];
    if (training && M <= 1)
        return ad__err(fn, "expected more than 1 value per channel when training, got x %s",
                       ad__shape_str(x)), NULL;

    ad_scope s;
    ad_tensor *in[5] = {x, weight, bias, training ? NULL : running_mean,
                        training ? NULL : running_var};
    if (ad_scope_begin(&s, fn, 5, in, false)) return NULL;
    /* Per-channel tensors [C] are seen as [C, 1, ...] to broadcast against
     * x's [N, C, ...]; the statistics are reduced over all but dimension 1
     * with keepdim, [1, C, 1, ...], which broadcasts as it is. */
    int64_t cshape[AD_MAX_DIMS];
    int axes[AD_MAX_DIMS], nax = 0;
    cshape[0] = C;
    for (int d = 1; d < x->ndim - 1; d++) cshape[d] = 1;
    for (int d = 0; d < x->ndim; d++)
        if (d != 1) axes[nax++] = d;
    ad_tensor *mean, *var;
    if (training) {
        mean = ad_mean(x, axes, nax, true);
        var = ad_var(x, axes, nax, 0, true);
    } else {
        mean = ad_reshape(running_mean, x->ndim - 1, cshape);
        var = ad_reshape(running_var, x->ndim - 1, cshape);
    }
    ad_tensor *y = normalise(x, mean, var, eps);
    if (weight) y = ad_mul(y, ad_reshape(weight, x->ndim - 1, cshape));
    if (bias) y = ad_add(y, ad_reshape(bias, x->ndim - 1, cshape));
    if (y && training && running_mean)
        y = update_running(fn, y, mean, var, running_mean, running_var, count, momentum, M);
    return ad_scope_end(&s, y);
}

ad_tensor *ad_batch_norm(ad_tensor *x, ad_tensor *running_mean, ad_tensor *running_var,
                         ad_tensor *weight, ad_tensor *bias, bool training, double momentum,
                         double eps)
{
    return batch_norm("ad_batch_norm", x, running_mean, running_var, NULL, weight, bias, training,
                      momentum, eps);
}

ad_tensor *ad_batch_norm_tracked(ad_tensor *x, ad_tensor *running_mean, ad_tensor *running_var,
                                 ad_tensor *num_batches_tracked, ad_tensor *weight,
                                 ad_tensor *bias, bool training, double momentum, double eps)
{
    static const char *fn = "ad_batch_norm_tracked";
    ad_tensor *c = num_batches_tracked;
    bool has;
    if (ad__check_opt(fn, "num_batches_tracked", c, false, &has)) return NULL;
    if (has && (c->dtype != AD_INT64 || ad__numel(c->ndim, c->shape) != 1 || c->requires_grad))
        return ad__err(fn, "num_batches_tracked must be an int64 tensor of one element that "
                           "does not require grad, got %s", ad__desc(c)), NULL;
    if (has && !running_mean)
        return ad__err(fn, "num_batches_tracked counts the updates of running_mean and "
                           "running_var, which are NULL"), NULL;
    return batch_norm(fn, x, running_mean, running_var, has ? c : NULL, weight, bias, training,
                      momentum, eps);
}

const ad_op *const ad__ops_norm[] = {
    &OP_BATCH_NORM_STATS, NULL,
};

/* nn/loss.c - losses and weight penalties, composed of the core's ops.
 *
 * Every loss here is a short chain of differentiable ops, so its gradient
 * is whatever the chain rule through those ops gives; the comments show
 * that the result is the textbook derivative.  Each function runs inside
 * an ad_scope (autodiff/tape.h), which puts intermediates on the right tape,
 * or on a temporary one when no tape is involved. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "nn_private.h"

static int check_reduction(const char *fn, nn_reduction r, bool half_sum_ok)
{
    if (r == NN_MEAN || r == NN_SUM || r == NN_NONE || (half_sum_ok && r == NN_HALF_SUM))
        return 0;
    if (r == NN_HALF_SUM)
        return ad_set_error("%s: NN_HALF_SUM is only for nn_mse_loss", fn);
    return ad_set_error("%s: unknown reduction %d", fn, (int)r);
}

/* input and target: non-NULL, floating, one dtype, exactly one shape. */
static int check_pair(const char *fn, ad_tensor *a, ad_tensor *b, const char *an, const char *bn)
{
    if (!a || !b) return nn__null_arg(fn, a ? bn : an);
    ad_dtype da = ad_tensor_dtype(a), db = ad_tensor_dtype(b);
    if (!nn__is_float(da) || da != db)
        return ad_set_error("%s: %s and %s must have one floating dtype, got %s and %s", fn, an,
                            bn, ad_dtype_name(da), ad_dtype_name(db));
    bool same = ad_ndim(a) == ad_ndim(b);
    for (int d = 0; same && d < ad_ndim(a); d++) same = ad_size(a, d) == ad_size(b, d);
    if (!same) {
        char sa[96], sb[96];
        ad_shape_str(a, sa, sizeof sa);
        ad_shape_str(b, sb, sizeof sb);
        return ad_set_error("%s: %s %s and %s %s differ in shape (no broadcasting: it would "
                            "silently turn [N] vs [N,1] into [N,N])", fn, an, sa, bn, sb);
    }
    return 0;
}

/* Mean or sum over every element, or nothing. */
static ad_tensor *reduce(ad_tensor *l, nn_reduction r)
{
    if (r == NN_MEAN) return ad_mean(l, NULL, 0, false);
    if (r == NN_SUM) return ad_sum(l, NULL, 0, false);
    return l;
}

/* Leaves a loss's scope with its result r (NULL on error): a message from
 * an inner op gets the loss's name in front, so it names the call the user
 * made.  Each loss enters its scope before computing r, as the frame of
 *     if (ad_scope_begin(&sc, fn, n, in, false) != 0) return NULL;
 *     return leave(&sc, fn, expression);                                   */
static ad_tensor *leave(ad_scope *sc, const char *fn, ad_tensor *r)
{
    if (!r && ad_error() && strncmp(ad_error(), fn, strlen(fn)) != 0)
        ad_set_error("%s: %s", fn, ad_error());
    return ad_scope_end(sc, r);
}

/* ---- regression ---------------------------------------------------------------- */

ad_tensor *nn_mse_loss(ad_tensor *input, ad_tensor *target, nn_reduction reduction)
{
    const char *fn = "nn_mse_loss";
    if (check_reduction(fn, reduction, true) || check_pair(fn, input, target, "input", "target"))
        return NULL;
    ad_tensor *in[2] = {input, target};
    ad_scope sc;
    if (ad_scope_begin(&sc, fn, 2, in, false) != 0) return NULL;
    /* E = 1/2 sum (yhat - y)^2: the 1/2 cancels the 2 of the square's
     * derivative, so dE/dyhat = yhat - y, the "error" of the output units
     * that backpropagation sends backwards. */
    if (reduction == NN_HALF_SUM)
        return leave(&sc, fn, ad_mul_scalar(ad_mse_loss(input, target, AD_REDUCTION_SUM), 0.5));
    /* (1/N) sum (yhat - y)^2, one fused op: dE/dyhat = 2 (yhat - y) / N. */
    return leave(&sc, fn, ad_mse_loss(input, target, (ad_reduction)reduction));
}

ad_tensor *nn_l1_loss(ad_tensor *input, ad_tensor *target, nn_reduction reduction)
{
    const char *fn = "nn_l1_loss";
    if (check_reduction(fn, reduction, false) || check_pair(fn, input, target, "input", "target"))
        return NULL;
    ad_tensor *in[2] = {input, target};
    /* |yhat - y|: the gradient is sign(yhat - y), the same size for small and
     * large errors (robust to outliers, but no slowing down near the
     * optimum). */
    ad_scope sc;
    if (ad_scope_begin(&sc, fn, 2, in, false) != 0) return NULL;
    return leave(&sc, fn, reduce(ad_abs(ad_sub(input, target)), reduction));
}

ad_tensor *nn_huber_loss(ad_tensor *input, ad_tensor *target, nn_reduction reduction,
                         double delta)
{
    const char *fn = "nn_huber_loss";
    if (check_reduction(fn, reduction, false) || check_pair(fn, input, target, "input", "target"))
        return NULL;
    if (!(isfinite(delta) && delta > 0)) {
        ad_set_error("%s: delta must be finite and > 0, got %g", fn, delta);
        return NULL;
    }
    ad_tensor *in[2] = {input, target};
    /* With d = yhat - y, the two branches picked by where(), the linear one
     * from |d| = delta on, as PyTorch's backward picks them: at the kink
     * the first derivative is +-delta either way, and the second 0, not 1.
     * (One expression, c (d - c/2) with c = clamp(d, -delta, delta), had
     * the right values, but an infinite d gave the gradient 0 * inf = NaN
     * through clamp's, where PyTorch gives +-delta.)  The quadratic branch
     * squares c, not d: equal where it is picked, and finite elsewhere, so
     * the zero gradient it gets there stays zero. */
    ad_scope sc;
    if (ad_scope_begin(&sc, fn, 2, in, false) != 0) return NULL;
    ad_tensor *d = ad_sub(input, target), *a = ad_abs(d);
    ad_tensor *c = ad_clamp(d, -delta, delta);
    ad_tensor *linear = ad_add_scalar(ad_sign(ad_add_scalar(a, -delta)), 1); /* 0 inside */
    ad_tensor *l = ad_where(linear, ad_mul_scalar(ad_add_scalar(a, -delta / 2), delta),
                            ad_mul_scalar(ad_mul(c, c), 0.5));
    l = reduce(l, reduction);
    return ad_scope_end(&sc, l);
}

/* ---- classification -------------------------------------------------------------- */

ad_tensor *nn_cross_entropy(ad_tensor *logits, ad_tensor *labels, nn_reduction reduction,
                            double label_smoothing)
{
    const char *fn = "nn_cross_entropy";
    if (check_reduction(fn, reduction, false)) return NULL;
    if (!logits || !labels) {
        nn__null_arg(fn, logits ? "labels" : "logits");
        return NULL;
    }
    ad_tensor *in[2] = {logits, labels};
    /* -log softmax(x)[label] = logsumexp(x) - x[label], one fused op whose
     * gradient is softmax(x) - onehot(label): the predicted probabilities
     * minus the target distribution. */
    ad_scope sc;
    if (ad_scope_begin(&sc, fn, 2, in, false) != 0) return NULL;
    return leave(&sc, fn,
                 ad_cross_entropy_ls(logits, labels, (ad_reduction)reduction, label_smoothing));
}

/* Checks labels int64 [N] with entries in [0, C) and returns them as the
 * int64 [N, 1] index ad_gather wants: a view (a recorded op), so that a
 * replay, which copies new labels into the recorded ones, gathers at the
 * new labels.  (It was a copy made here in C, a constant of a recording:
 * nn's trainer replayed every step against the zeros it recorded with.)
 * A replay does not run this check again; ad_gather refuses a label
 * outside [0, C) there (a negative entry, as the recording had none). */
static ad_tensor *label_index(const char *fn, ad_tensor *labels, int64_t n, int64_t c)
{
    if (ad_tensor_dtype(labels) != AD_INT64 || ad_ndim(labels) != 1 || ad_size(labels, 0) != n) {
        char sh[96];
        ad_shape_str(labels, sh, sizeof sh);
        ad_set_error("%s: labels must be int64 [%" PRId64 "], got %s %s", fn, n,
                     ad_dtype_name(ad_tensor_dtype(labels)), sh);
        return NULL;
    }
    double *v = ad_malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) {
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    if (ad_to_array(labels, v)) {
        ad_free(v);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!(v[i] >= 0 && v[i] < (double)c)) {
            ad_set_error("%s: label %.0f at position %" PRId64 " is out of range for %" PRId64
                         " classes", fn, v[i], i, c);
            ad_free(v);
            return NULL;
        }
    }
    ad_free(v);
    return ad_reshape(labels, 2, (int64_t[]){n, 1});
}

ad_tensor *nn_nll_loss(ad_tensor *logp, ad_tensor *labels, nn_reduction reduction)
{
    const char *fn = "nn_nll_loss";
    if (check_reduction(fn, reduction, false)) return NULL;
    if (!logp || !labels) {
        nn__null_arg(fn, logp ? "labels" : "logp");
        return NULL;
    }
    if (!nn__is_float(ad_tensor_dtype(logp)) || ad_ndim(logp) != 2) {
        char sh[96];
        ad_shape_str(logp, sh, sizeof sh);
        ad_set_error("%s: logp must be float [N, C], got %s %s", fn,
                     ad_dtype_name(ad_tensor_dtype(logp)), sh);
        return NULL;
    }
    ad_tensor *in[2] = {logp, labels};
    ad_scope sc;
    if (ad_scope_begin(&sc, fn, 2, in, false) != 0) return NULL;
    int64_t n = ad_size(logp, 0);
    ad_tensor *idx = label_index(fn, labels, n, ad_size(logp, 1)), *l = NULL;
    if (idx) {
        /* l_n = -logp[n, label_n]: gather picks one entry per row, and its
         * backward scatters the gradient back to exactly that entry. */
        ad_tensor *picked = ad_gather(logp, 1, idx);
        l = reduce(ad_neg(ad_reshape(picked, 1, (int64_t[]){n})), reduction);
    }
    return ad_scope_end(&sc, l);
}

ad_tensor *nn_binary_cross_entropy_with_logits(ad_tensor *x, ad_tensor *y, ad_tensor *pos_weight,
                                               nn_reduction reduction)
{
    const char *fn = "nn_binary_cross_entropy_with_logits";
    if (check_reduction(fn, reduction, false) || check_pair(fn, x, y, "x", "y") ||
        ad_check_optional(fn, "pos_weight", pos_weight))
        return NULL;
    if (pos_weight && (ad_tensor_dtype(pos_weight) != ad_tensor_dtype(x) ||
                       ad_ndim(pos_weight) > ad_ndim(x))) {
        char sh[96];
        ad_shape_str(pos_weight, sh, sizeof sh);
        ad_set_error("%s: pos_weight %s %s must have x's dtype (%s) and at most its %d "
                     "dimensions", fn, ad_dtype_name(ad_tensor_dtype(pos_weight)), sh,
                     ad_dtype_name(ad_tensor_dtype(x)), ad_ndim(x));
        return NULL;
    }
    ad_tensor *in[3] = {x, y, pos_weight};
    ad_scope sc;
    if (ad_scope_begin(&sc, fn, 3, in, false) != 0) return NULL;
    /* With s = sigmoid(x): -[y log s + (1 - y) log(1 - s)].  Using
     * log s = -softplus(-x) and log(1 - s) = -x - softplus(-x):
     *     l = (1 - y) x + softplus(-x)
     * which is the textbook max(x, 0) - x y + log(1 + e^-|x|) (softplus is
     * computed in that stable form) but has no kink at x = 0, so its
     * gradient there is exact: dl/dx = (1 - y) - sigmoid(-x) = sigmoid(x) - y.
     * pos_weight p multiplies the positive term -y log s: the softplus
     * weight becomes 1 + (p - 1) y. */
    ad_tensor *sp = ad_softplus(ad_neg(x));
    if (pos_weight) sp = ad_mul(ad_add_scalar(ad_mul(ad_sub_scalar(pos_weight, 1.0), y), 1.0), sp);
    ad_tensor *l = ad_add(ad_mul(ad_rsub_scalar(y, 1.0), x), sp);
    if (l && pos_weight && ad_ndim(l) != ad_ndim(x)) {
        char a[96], b[96];
        ad_shape_str(pos_weight, a, sizeof a);
        ad_shape_str(x, b, sizeof b);
        ad_set_error("%s: pos_weight %s does not broadcast to x %s", fn, a, b);
        l = NULL;
    }
    for (int d = 0; l && d < ad_ndim(x); d++)
        if (ad_size(l, d) != ad_size(x, d)) {
            char a[96], b[96];
            ad_shape_str(pos_weight, a, sizeof a);
            ad_shape_str(x, b, sizeof b);
            ad_set_error("%s: pos_weight %s does not broadcast to x %s", fn, a, b);
            l = NULL;
        }
    l = l ? reduce(l, reduction) : NULL;
    if (!l && ad_error() && strncmp(ad_error(), fn, strlen(fn)) != 0)
        ad_set_error("%s: %s", fn, ad_error());
    return ad_scope_end(&sc, l);
}

/* ---- penalties -------------------------------------------------------------------- */

static ad_tensor *penalty(const char *fn, const nn_named_tensors *p, double lambda, bool l1)
{
    if (!p) {
        nn__null_arg(fn, "params");
        return NULL;
    }
    if (p->n < 1) {
        ad_set_error("%s: the parameter list is empty", fn);
        return NULL;
    }
    if (!(isfinite(lambda) && lambda >= 0)) {
        ad_set_error("%s: lambda must be finite and >= 0, got %g", fn, lambda);
        return NULL;
    }
    ad_scope sc;
    if (ad_scope_begin(&sc, fn, p->n, p->tensors, false) != 0) return NULL;
    /* L1: lambda sum |w|, gradient lambda sign(w): pushes every weight
     *     towards 0 by the same amount, so many end exactly at 0 (sparse).
     * L2: lambda/2 sum w^2, gradient lambda w: shrinks each weight in
     *     proportion to its size (weight decay). */
    ad_tensor *acc = NULL;
    for (int i = 0; i < p->n; i++) {
        ad_tensor *w = p->tensors[i];
        ad_tensor *s = ad_sum(l1 ? ad_abs(w) : ad_square(w), NULL, 0, false);
        acc = i == 0 ? s : ad_add(acc, s);
        if (!acc) {
            ad_set_error("%s: parameter '%s': %s", fn, p->names[i], ad_error());
            break;
        }
    }
    ad_tensor *r = acc ? ad_mul_scalar(acc, l1 ? lambda : 0.5 * lambda) : NULL;
    return ad_scope_end(&sc, r);
}

ad_tensor *nn_l1_penalty(const nn_named_tensors *params, double lambda)
{
    return penalty("nn_l1_penalty", params, lambda, true);
}

ad_tensor *nn_l2_penalty(const nn_named_tensors *params, double lambda)
{
    return penalty("nn_l2_penalty", params, lambda, false);
}

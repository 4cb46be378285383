/* autodiff/gradcheck.c - first and second order gradient checks.
 *
 * The analytic Jacobian is built one output element at a time: backward
 * with grad_output = e_j (the j-th unit vector) yields row j, dy_j/dx.  The
 * numeric Jacobian is built one input element at a time with central
 * differences, (f(x + eps e_k) - f(x - eps e_k)) / 2 eps = column k, whose
 * error is O(eps^2).  Both run in float64, where eps = 1e-6 balances that
 * truncation error against rounding error (about 1e-16 / 1e-6 = 1e-10). */
#include <stdlib.h>

#include "internal.h"

static const char *GC = "ad_gradcheck";

static void fmt_index(const ad_tensor *t, int64_t flat, char *buf, size_t size)
{
    int64_t idx[AD_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? flat % t->shape[d] : 0;
        flat = t->shape[d] ? flat / t->shape[d] : 0;
    }
    ad__fmt_shape(t->ndim, idx, buf, size);
}

/* Calls f, turning a failure into an error that names the checker and
 * keeps f's own message. */
static ad_tensor *call(const char *fn, ad_func f, void *ctx, int n, ad_tensor *const *x)
{
    ad_tensor *y = f(x, n, ctx);
    if (!y) {
        char inner[400];
        snprintf(inner, sizeof inner, "%s", ad_error() ? ad_error() : "returned NULL");
        ad__err(fn, "the function failed: %s", inner);
        return NULL;
    }
    if (ad__check_arg(fn, "the function's output", y, true)) return NULL;
    return y;
}

/* Copies of the caller's inputs on tape t: floats as float64 with the same
 * requires_grad, integers unchanged. */
static int copy_inputs(ad_tape *t, int n, ad_tensor *const *in, ad_tensor **x)
{
    for (int i = 0; i < n; i++) {
        ad_dtype d = ad__is_float(in[i]->dtype) ? AD_FLOAT64 : in[i]->dtype;
        x[i] = ad__alloc(GC, t, d, in[i]->ndim, in[i]->shape);
        if (!x[i] || ad_copy_into(x[i], in[i])) return -1;
        x[i]->requires_grad = in[i]->requires_grad && ad__is_float(d);
    }
    return 0;
}

int ad_gradcheck(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                 const ad_gradcheck_opts *opts)
{
    ad_gradcheck_opts o = AD_GRADCHECK_DEFAULTS;
    if (opts) o = *opts;
    if (!f) return ad__err(GC, "function is NULL");
    if (n < 1 || n > 64) return ad__err(GC, "need 1 to 64 inputs, got %d", n);
    if (!inputs) return ad__err(GC, "inputs is NULL");
    if (!(o.eps > 0) || !(o.atol >= 0) || !(o.rtol >= 0))
        return ad__err(GC, "eps must be > 0 and atol, rtol >= 0");
    for (int i = 0; i < n; i++)
        if (ad__check_arg(GC, "inputs[i]", inputs[i], false)) return -1;

    int rc = -1;
    ad_tape *ta = ad_tape_new(), *te = ad_tape_new();
    ad_tape *prev_tape = ad_tape_active();
    bool prev_mode = ad_set_grad_enabled(true);
    ad_tensor *x[64], *req[64], *grads[64], *y[64];
    int nreq = 0, reqidx[64];
    double *jac = NULL, *fp = NULL, *fm = NULL;
    if (!ta || !te) goto out;
    ad_tape_activate(ta);
    if (copy_inputs(ta, n, inputs, x)) goto out;
    for (int i = 0; i < n; i++)
        if (x[i]->requires_grad) reqidx[nreq] = i, req[nreq++] = x[i];
    ad_tensor *out = call(GC, f, ctx, n, x);
    if (!out) goto out;
    int64_t m = ad__numel(out->ndim, out->shape), total = 0;
    for (int r = 0; r < nreq; r++) total += ad__numel(req[r]->ndim, req[r]->shape);

    /* jac[(offset of input r + k) * m + j] = d out_j / d x_r[k] */
    jac = ad__calloc((size_t)(total * m + 1), sizeof *jac);
    fp = ad__malloc((size_t)(m + 1) * sizeof *fp);
    fm = ad__malloc((size_t)(m + 1) * sizeof *fm);
    if (!jac || !fp || !fm) {
        ad__err(GC, "out of memory");
        goto out;
    }
    if (out->requires_grad && nreq > 0) {
        for (int64_t j = 0; j < m; j++) {
            ad_tensor *e = ad_zeros(ta, out->dtype, out->ndim, out->shape);
            if (!e) goto out;
            ad__st(e, j, 1.0);
            if (ad_gradients(out, e, nreq, req, grads, AD_RETAIN_GRAPH)) goto out;
            int64_t base = 0;
            for (int r = 0; r < nreq; r++) {
                int64_t nk = ad__numel(req[r]->ndim, req[r]->shape);
                double *col = ad__malloc((size_t)(nk + 1) * sizeof *col);
                if (!col) {
                    ad__err(GC, "out of memory");
                    goto out;
                }
                ad_to_array(grads[r], col);
                for (int64_t k = 0; k < nk; k++) jac[(base + k) * m + j] = col[k];
                ad__free(col);
                base += nk;
            }
        }
    }

    /* Numeric columns, each from two fresh evaluations on tape te. */
    int64_t base = 0;
    for (int r = 0; r < nreq; r++) {
        int i = reqidx[r];
        int64_t nk = ad__numel(req[r]->ndim, req[r]->shape);
        for (int64_t k = 0; k < nk; k++) {
            for (int side = 0; side < 2; side++) {
                ad_tape_reset(te);
                ad_tape_activate(te);
                if (copy_inputs(te, n, x, y)) goto out;
                double *d = y[i]->storage->data;
                d[k] += side == 0 ? o.eps : -o.eps;
                ad_tensor *v = call(GC, f, ctx, n, y);
                if (!v) goto out;
                if (ad__numel(v->ndim, v->shape) != m) {
                    ad__err(GC, "the function's output changed size between calls");
                    goto out;
                }
                ad_to_array(v, side == 0 ? fp : fm);
            }
            for (int64_t j = 0; j < m; j++) {
                double num = (fp[j] - fm[j]) / (2 * o.eps);
                double ana = jac[(base + k) * m + j];
                if (!(fabs(ana - num) <= o.atol + o.rtol * fabs(num))) {
                    char ki[160], ji[160];
                    fmt_index(req[r], k, ki, sizeof ki);
                    fmt_index(out, j, ji, sizeof ji);
                    ad__err(GC, "input %d element %s, output element %s: analytic %.10g vs "
                                "numeric %.10g (difference %.3g > atol %g + rtol %g * |numeric|)",
                            i, ki, ji, ana, num, fabs(ana - num), o.atol, o.rtol);
                    if (o.report) fprintf(o.report, "%s\n", ad_error());
                    rc = 0;
                    goto out;
                }
            }
        }
        base += nk;
    }
    rc = 1;
out:
    ad__free(jac);
    ad__free(fp);
    ad__free(fm);
    ad_tape_activate(prev_tape);
    ad_set_grad_enabled(prev_mode);
    ad_tape_free(ta);
    ad_tape_free(te);
    return rc;
}

/* ---- second order ----------------------------------------------------------
 * For input r, G_r(x) = v . df/dx_r, flattened: the gradient that backward
 * computes for a fixed grad_output v.  G_r is built by ad_gradients with
 * AD_CREATE_GRAPH, so its own derivatives come from differentiating the
 * recorded backward pass; ad_gradcheck compares them with finite
 * differences of G_r, which checks every second derivative that v reaches. */

typedef struct vjp_ctx {
    ad_func f;
    void *ctx;
    int target; /* which input's gradient G returns */
    const double *v;
    int64_t m;
} vjp_ctx;

static ad_tensor *vjp_fn(ad_tensor *const *x, int n, void *vctx)
{
    vjp_ctx *c = vctx;
    static const char *fn = "ad_gradgradcheck";
    ad_tensor *out = call(fn, c->f, c->ctx, n, x);
    if (!out) return NULL;
    ad_tensor *target = x[c->target];
    ad_tensor *g;
    if (!out->requires_grad) {
        g = ad_zeros(out->tape, target->dtype, target->ndim, target->shape);
    } else {
        ad_tensor *v = ad__alloc(fn, out->tape, out->dtype, out->ndim, out->shape);
        if (!v) return NULL;
        for (int64_t j = 0; j < c->m; j++) ad__st(v, j, c->v[j]);
        if (ad_gradients(out, v, 1, &target, &g, AD_CREATE_GRAPH)) return NULL;
    }
    return ad_reshape(g, 1, (int64_t[]){-1});
}

int ad_gradgradcheck(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                     const ad_gradcheck_opts *opts)
{
    static const char *fn = "ad_gradgradcheck";
    if (!f) return ad__err(fn, "function is NULL");
    if (n < 1 || n > 64) return ad__err(fn, "need 1 to 64 inputs, got %d", n);
    if (!inputs) return ad__err(fn, "inputs is NULL");
    for (int i = 0; i < n; i++)
        if (ad__check_arg(fn, "inputs[i]", inputs[i], false)) return -1;

    /* One evaluation to learn the output's size, for v. */
    ad_tape *t = ad_tape_new();
    if (!t) return -1;
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x[64];
    int rc = -1;
    double *v = NULL;
    if (copy_inputs(t, n, inputs, x)) goto out;
    ad_tensor *out = call(fn, f, ctx, n, x);
    if (!out) goto out;
    int64_t m = ad__numel(out->ndim, out->shape);
    v = ad__malloc((size_t)(m + 1) * sizeof *v);
    if (!v) {
        ad__err(fn, "out of memory");
        goto out;
    }
    /* A fixed, generic v: values in [0.5, 1.5) so no component vanishes. */
    ad_rng rng;
    ad_rng_init(&rng, 20261128u);
    for (int64_t j = 0; j < m; j++) v[j] = 0.5 + ad_rng_uniform(&rng);
    rc = 1;
    for (int i = 0; i < n && rc == 1; i++) {
        if (!inputs[i]->requires_grad || !ad__is_float(inputs[i]->dtype)) continue;
        vjp_ctx c = {f, ctx, i, v, m};
        rc = ad_gradcheck(vjp_fn, &c, n, inputs, opts);
        if (rc == 0) {
            char inner[400];
            snprintf(inner, sizeof inner, "%s", ad_error());
            ad__err(fn, "second derivatives through the gradient of input %d: %s", i, inner);
        }
    }
out:
    ad__free(v);
    ad_tape_activate(prev);
    ad_tape_free(t);
    return rc;
}

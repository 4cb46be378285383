/* autodiff/transforms.c - grad, vjp, jvp, jacobian, hessian, hvp.
 *
 * All of them are built from two things: calling f on leaf views of the
 * inputs, and ad_gradients (reverse mode).  Forward mode comes from reverse
 * mode applied twice; the Hessian is the Jacobian of the gradient.  That
 * works because every op's backward rule is itself made of differentiable
 * ops. */
#include <stdlib.h>

#include "internal.h"

#define MAX_IN 64

/* Leaf views of the inputs on `tape` (or the inputs themselves when they
 * already require grad, so enclosing derivatives flow through), then f.
 * One tensor that requires grad passed in several slots gets an identity
 * view (ad_expand to its own shape) per slot: with the tensor itself in
 * each, every slot's derivative was the sum over all of them, where
 * torch.autograd.functional gives each slot its own partial. */
static ad_tensor *call_f(const char *fn, ad_tape *tape, ad_func f, void *ctx, int n,
                         ad_tensor *const *x, ad_tensor **xv)
{
    if (!tape) return ad__err(fn, "tape is NULL"), NULL;
    if (!f) return ad__err(fn, "function is NULL"), NULL;
    if (n < 1 || n > MAX_IN || !x) return ad__err(fn, "need 1 to %d inputs, got %d", MAX_IN, n), NULL;
    for (int i = 0; i < n; i++) {
        if (ad__check_arg(fn, "x[i]", x[i], true)) return NULL;
        if (x[i]->tape && x[i]->tape != tape)
            return ad__err(fn, "input %d belongs to another tape", i), NULL;
        if (x[i]->requires_grad) {
            xv[i] = x[i];
            continue;
        }
        xv[i] = ad__view(fn, tape, x[i], x[i]->ndim, x[i]->shape, x[i]->strides, x[i]->offset);
        if (!xv[i]) return NULL;
        xv[i]->requires_grad = true;
    }
    ad_tape *prev = ad_tape_activate(tape);
    bool prev_mode = ad_set_grad_enabled(true);
    for (int i = 0; i < n; i++) {
        bool shared = false;
        for (int j = 0; j < n && !shared; j++) shared = j != i && x[j] == x[i];
        if (!x[i]->requires_grad || !shared) continue;
        if (!(xv[i] = ad_expand(x[i], x[i]->ndim, x[i]->shape))) {
            ad_set_grad_enabled(prev_mode);
            ad_tape_activate(prev);
            return NULL;
        }
    }
    ad_tensor *y = f(xv, n, ctx);
    ad_set_grad_enabled(prev_mode);
    ad_tape_activate(prev);
    if (!y) {
        if (!ad__has_error()) ad__err(fn, "the function returned NULL");
        return NULL;
    }
    if (ad__check_arg(fn, "the function's output", y, true)) return NULL;
    if (y->tape != tape) return ad__err(fn, "the function's output is not on the tape"), NULL;
    return y;
}

/* ad_gradients with the tape active, so zeros for unused inputs and every
 * temporary land on it. */
static int grads_of(ad_tensor *y, ad_tensor *v, int n, ad_tensor *const *x, ad_tensor **g,
                    unsigned flags)
{
    ad_tape *prev = ad_tape_activate(y->tape);
    int rc = ad_gradients(y, v, n, x, g, flags);
    ad_tape_activate(prev);
    return rc;
}

int ad_grad(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x, ad_tensor **grads,
            ad_tensor **value, unsigned flags)
{
    static const char *fn = "ad_grad";
    ad_tensor *xv[MAX_IN];
    if (!grads) return ad__err(fn, "grads is NULL");
    if (flags & AD_SET_GRAD)
        return ad__err(fn, "AD_SET_GRAD is for ad_backward: these gradients go to no leaf");
    ad_tensor *y = call_f(fn, tape, f, ctx, n, x, xv);
    if (!y) return -1;
    if (ad__numel(y->ndim, y->shape) != 1) {
        return ad__err(fn, "the function must return one element, got shape %s",
                       ad__shape_str(y));
    }
    if (value) *value = y;
    return grads_of(y, NULL, n, xv, grads, flags | AD_RETAIN_GRAPH);
}

int ad_vjp(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x, ad_tensor *v,
           ad_tensor **y_out, ad_tensor **vjp, unsigned flags)
{
    static const char *fn = "ad_vjp";
    ad_tensor *xv[MAX_IN];
    if (!vjp) return ad__err(fn, "vjp is NULL");
    if (ad__check_arg(fn, "v", v, true)) return -1;
    if (flags & AD_SET_GRAD)
        return ad__err(fn, "AD_SET_GRAD is for ad_backward: these gradients go to no leaf");
    ad_tensor *y = call_f(fn, tape, f, ctx, n, x, xv);
    if (!y) return -1;
    if (y_out) *y_out = y;
    if (!ad__same_shape(v, y) || v->dtype != y->dtype)
        return ad__err(fn, "v is %s, the function's output %s: they must have one shape and "
                           "dtype", ad__desc(v), ad__desc(y));
    return grads_of(y, v, n, xv, vjp, flags | AD_RETAIN_GRAPH);
}

/* The linear map w -> w^T J, recorded: *w is a dummy cotangent leaf and
 * g[i] = w^T dy/dx[i].  Differentiating <g, u> with respect to w then gives
 * J u (see transforms.h); g is built once and serves every tangent. */
static int linearise(ad_tensor *y, int n, ad_tensor *const *xv, ad_tensor **w, ad_tensor **g)
{
    *w = ad_zeros(y->tape, y->dtype, y->ndim, y->shape);
    if (!*w) return -1;
    (*w)->requires_grad = true;
    return grads_of(y, *w, n, xv, g, AD_CREATE_GRAPH);
}

static ad_tensor *jvp_dir(const char *fn, ad_tensor *w, int n, ad_tensor *const *xv,
                          ad_tensor *const *g, ad_tensor *const *u, unsigned flags)
{
    ad_tape *tape = w->tape;
    ad_tensor *s = NULL;
    ad_tape *prev = ad_tape_activate(tape);
    bool prev_mode = ad_set_grad_enabled(true);
    for (int i = 0; i < n; i++) {
        if (!u || !u[i]) continue;
        if (!ad__same_shape(u[i], xv[i]) || u[i]->dtype != xv[i]->dtype) {
            ad__err(fn, "tangent %d has shape %s, input %s", i, ad__desc(u[i]), ad__desc(xv[i]));
            s = NULL;
            goto out;
        }
        ad_tensor *term = ad_sum(ad_mul(g[i], u[i]), NULL, 0, false);
        s = s ? ad_add(s, term) : term;
        if (!s) goto out;
    }
    if (!s) s = ad_zeros(tape, w->dtype, 0, NULL);
out:
    ad_set_grad_enabled(prev_mode);
    ad_tape_activate(prev);
    if (!s) return NULL;
    ad_tensor *jv;
    if (grads_of(s, NULL, 1, &w, &jv, flags | AD_RETAIN_GRAPH)) return NULL;
    return jv;
}

int ad_jvp(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x, ad_tensor *const *u,
           ad_tensor **y_out, ad_tensor **jvp, unsigned flags)
{
    static const char *fn = "ad_jvp";
    ad_tensor *xv[MAX_IN];
    if (!jvp) return ad__err(fn, "jvp is NULL");
    bool present;
    for (int i = 0; u && i < n; i++)
        if (ad__check_opt(fn, "u[i]", u[i], true, &present)) return -1;
    ad_tensor *y = call_f(fn, tape, f, ctx, n, x, xv);
    if (!y) return -1;
    if (y_out) *y_out = y;
    ad_tensor *w, *g[MAX_IN];
    if (linearise(y, n, xv, &w, g)) return -1;
    *jvp = jvp_dir(fn, w, n, xv, g, u, flags);
    return *jvp ? 0 : -1;
}

/* Joins k same-shaped pieces along a new axis and gives the result
 * `ndim`/`shape`; recorded, so it is differentiable under AD_CREATE_GRAPH. */
static ad_tensor *assemble(ad_tensor **pieces, int64_t k, int axis, int ndim, const int64_t *shape)
{
    ad_tensor *s = ad_stack(pieces, (int)k, axis);
    return s ? ad_reshape(s, ndim, shape) : NULL;
}

int ad_jacobian(ad_tape *tape, ad_func f, void *ctx, int n, ad_tensor *const *x, ad_tensor **jac,
                ad_jacobian_mode mode, unsigned flags)
{
    static const char *fn = "ad_jacobian";
    ad_tensor *xv[MAX_IN];
    if (!jac) return ad__err(fn, "jac is NULL");
    if (mode < AD_JACOBIAN_AUTO || mode > AD_JACOBIAN_FORWARD)
        return ad__err(fn, "unknown mode %d", (int)mode);
    ad_tensor *y = call_f(fn, tape, f, ctx, n, x, xv);
    if (!y) return -1;
    int64_t m = ad__numel(y->ndim, y->shape), total = 0;
    for (int i = 0; i < n; i++) total += ad__numel(xv[i]->ndim, xv[i]->shape);
    if (mode == AD_JACOBIAN_AUTO) mode = m <= total ? AD_JACOBIAN_REVERSE : AD_JACOBIAN_FORWARD;
    for (int i = 0; i < n; i++) {
        if (y->ndim + xv[i]->ndim > AD_MAX_DIMS)
            return ad__err(fn, "the Jacobian of input %d would have %d dimensions (at most %d)", i,
                           y->ndim + xv[i]->ndim, AD_MAX_DIMS);
        if (m == 0 || ad__numel(xv[i]->ndim, xv[i]->shape) == 0)
            return ad__err(fn, "empty output or input %d", i);
    }
    unsigned f2 = (flags & AD_CREATE_GRAPH) | AD_RETAIN_GRAPH;
    int rc = -1;
    ad_tensor **parts = NULL;
    bool prev_mode = ad_set_grad_enabled(flags & AD_CREATE_GRAPH);
    ad_tape *prev = ad_tape_activate(tape);
    if (mode == AD_JACOBIAN_REVERSE) {
        /* Row j of every Jacobian from one backward pass seeded with e_j. */
        parts = ad__malloc((size_t)(m * n) * sizeof *parts);
        if (!parts) {
            ad__err(fn, "out of memory");
            goto out;
        }
        ad_tensor *g[MAX_IN];
        for (int64_t j = 0; j < m; j++) {
            ad_tensor *e = ad_zeros(tape, y->dtype, y->ndim, y->shape);
            if (!e) goto out;
            ad__st(e, j, 1.0);
            if (grads_of(y, e, n, xv, g, f2)) goto out;
            for (int i = 0; i < n; i++) parts[i * m + j] = g[i];
        }
        for (int i = 0; i < n; i++) {
            int64_t shape[AD_MAX_DIMS];
            memcpy(shape, y->shape, (size_t)y->ndim * sizeof *shape);
            memcpy(shape + y->ndim, xv[i]->shape, (size_t)xv[i]->ndim * sizeof *shape);
            jac[i] = assemble(parts + i * m, m, 0, y->ndim + xv[i]->ndim, shape);
            if (!jac[i]) goto out;
        }
    } else {
        /* Column k of input i's Jacobian from one jvp with tangent e_k. */
        int64_t maxk = 0;
        for (int i = 0; i < n; i++) {
            int64_t k = ad__numel(xv[i]->ndim, xv[i]->shape);
            if (k > maxk) maxk = k;
        }
        parts = ad__malloc((size_t)maxk * sizeof *parts);
        if (!parts) {
            ad__err(fn, "out of memory");
            goto out;
        }
        ad_tensor *u[MAX_IN] = {0}, *w, *g[MAX_IN];
        if (linearise(y, n, xv, &w, g)) goto out;
        for (int i = 0; i < n; i++) {
            int64_t nk = ad__numel(xv[i]->ndim, xv[i]->shape);
            for (int64_t k = 0; k < nk; k++) {
                u[i] = ad_zeros(tape, xv[i]->dtype, xv[i]->ndim, xv[i]->shape);
                if (!u[i]) goto out;
                ad__st(u[i], k, 1.0);
                parts[k] = jvp_dir(fn, w, n, xv, g, u, f2);
                if (!parts[k]) goto out;
            }
            u[i] = NULL;
            int64_t shape[AD_MAX_DIMS];
            memcpy(shape, y->shape, (size_t)y->ndim * sizeof *shape);
            memcpy(shape + y->ndim, xv[i]->shape, (size_t)xv[i]->ndim * sizeof *shape);
            jac[i] = assemble(parts, nk, y->ndim, y->ndim + xv[i]->ndim, shape);
            if (!jac[i]) goto out;
        }
    }
    rc = 0;
out:
    ad_tape_activate(prev);
    ad_set_grad_enabled(prev_mode);
    ad__free(parts);
    return rc;
}

/* The gradient of the user's scalar function, as a function: what the
 * Hessian takes the Jacobian of. */
typedef struct grad_ctx {
    ad_func f;
    void *ctx;
} grad_ctx;

static ad_tensor *gradient_fn(ad_tensor *const *x, int n, void *vctx)
{
    static const char *fn = "ad_hessian";
    grad_ctx *c = vctx;
    ad_tensor *y = c->f(x, n, c->ctx);
    if (!y) return NULL;
    if (ad__check_arg(fn, "the function's output", y, true)) return NULL;
    if (ad__numel(y->ndim, y->shape) != 1) {
        return ad__err(fn, "the function must return one element, got shape %s",
                       ad__shape_str(y)), NULL;
    }
    ad_tensor *g;
    if (grads_of(y, NULL, 1, x, &g, AD_CREATE_GRAPH)) return NULL;
    return g;
}

int ad_hessian(ad_tape *tape, ad_func f, void *ctx, ad_tensor *x, ad_tensor **hess, unsigned flags)
{
    if (!f) return ad__err("ad_hessian", "function is NULL");
    grad_ctx c = {f, ctx};
    return ad_jacobian(tape, gradient_fn, &c, 1, &x, hess, AD_JACOBIAN_REVERSE, flags);
}

int ad_hvp(ad_tape *tape, ad_func f, void *ctx, ad_tensor *x, ad_tensor *v, ad_tensor **hv,
           unsigned flags)
{
    static const char *fn = "ad_hvp";
    ad_tensor *xv[1];
    if (!hv) return ad__err(fn, "hv is NULL");
    if (ad__check_arg(fn, "v", v, true)) return -1;
    if (!f) return ad__err(fn, "function is NULL");
    grad_ctx c = {f, ctx};
    ad_tensor *g = call_f(fn, tape, gradient_fn, &c, 1, &x, xv);
    if (!g) return -1;
    if (!ad__same_shape(v, xv[0]) || v->dtype != xv[0]->dtype)
        return ad__err(fn, "v is %s, x is %s: they must have one shape and dtype", ad__desc(v),
                       ad__desc(x));
    ad_tape *prev = ad_tape_activate(tape);
    bool prev_mode = ad_set_grad_enabled(true);
    ad_tensor *s = ad_sum(ad_mul(g, v), NULL, 0, false);
    ad_set_grad_enabled(prev_mode);
    ad_tape_activate(prev);
    if (!s) return -1;
    return grads_of(s, NULL, 1, xv, hv, flags | AD_RETAIN_GRAPH);
}

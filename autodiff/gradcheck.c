/* autodiff/gradcheck.c - first and second order gradient checks.
 *
 * The analytic Jacobian is built one output element at a time: backward
 * with grad_output = e_j (the j-th unit vector) yields row j, dy_j/dx.  The
 * numeric Jacobian is built one input element at a time with central
 * differences, D(h) = (f(x + h e_k) - f(x - h e_k)) / 2h = column k.
 *
 * Error of D(h).  By Taylor, D(h) = f' + f''' h^2 / 6 + f^(5) h^4 / 120 + ...
 * (truncation), plus the rounding of f, about u |f| / h with u the relative
 * error of an evaluation.  In float64, h = 1e-6 balances the two for f of
 * order 1 (1e-12 against 1e-10).  The step is taken relative to the
 * element, h = eps max(1, |x|): for |x| > 1 an absolute 1e-6 would shrink
 * towards x's own rounding (ulp(1e6) = 1e-10), for |x| <= 1 it is eps.
 *
 * Near a domain edge or a pole that fixed choice breaks down: log at
 * x = 1e-6 evaluates log(0) = -inf at x - h, and sqrt there has
 * f''' h^2 / 6 = 40% of f'.  So an entry that disagrees is retried at
 * smaller steps h/2, ..., h/1024 (then eps |x|, eps |x| / 2 when |x| is
 * tiny), and each pair of consecutive steps h_{k-1} = r h_k also gives the
 * Richardson extrapolation
 *     R = D(h_k) + (D(h_k) - D(h_{k-1})) / (r^2 - 1),
 * which cancels the h^2 term: its error is O(h^4).  An entry passes if any
 * of these estimates agrees with the analytic value, but a retried
 * estimate only counts when its rounding error is small against the
 * tolerance: otherwise, at tiny steps, noise could land near a wrong
 * gradient.  All estimates converge to the true derivative, so a wrong
 * gradient still fails.
 *
 * Non-finite values are never "close": |a - inf| <= atol + rtol |inf| is
 * inf <= inf, true, so the plain test passes any analytic value against an
 * infinite numeric one.  Here an entry with a NaN or an infinity on either
 * side passes only when both sides are the same infinity. */
#include <float.h>
#include <stdlib.h>

#include "internal.h"

static const char *GC = "ad_gradcheck";

/* Retries after the first step: 10 halvings and 2 relative steps. */
enum { HALVINGS = 10, MAX_STEPS = 1 + HALVINGS + 2 };
/* Relative rounding error assumed for one evaluation of f (16 ulps), and
 * the share of the tolerance a retried estimate's rounding may take. */
static const double F_ULPS = 16 * DBL_EPSILON, NOISE_SHARE = 0.1;

/* The index of element flat of t, counted in row-major order of its shape
 * (the order of ad_to_array and of the Jacobian's columns). */
static void unravel(const ad_tensor *t, int64_t flat, int64_t *idx)
{
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? flat % t->shape[d] : 0;
        flat = t->shape[d] ? flat / t->shape[d] : 0;
    }
}

/* "[i,j]", the position of element flat of t, for a message (ad__dims_str). */
static const char *index_str(const ad_tensor *t, int64_t flat)
{
    int64_t idx[AD_MAX_DIMS];
    unravel(t, flat, idx);
    return ad__dims_str(t->ndim, idx);
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

/* A copy of t on tape `tape` in dtype d with t's strides (a transposed or
 * stepped view stays one, over a buffer as long as t's span), or
 * contiguous when t is contiguous or expanded (a stride 0 would make one
 * element several inputs). */
static ad_tensor *copy_in_layout(ad_tape *tape, ad_dtype d, const ad_tensor *t)
{
    int64_t first, last;
    bool plain = ad_is_contiguous(t) || !ad__elem_range(t, &first, &last);
    for (int k = 0; k < t->ndim && !plain; k++) plain = t->shape[k] > 1 && t->strides[k] == 0;
    if (plain) return ad__alloc(GC, tape, d, t->ndim, t->shape);
    int64_t len = last - first + 1;
    ad_tensor *base = ad__alloc(GC, tape, d, 1, &len);
    if (!base || ad_fill(base, 0)) return NULL;
    return ad__view(GC, tape, base, t->ndim, t->shape, t->strides,
                    base->offset + t->offset - first);
}

/* Copies of the caller's inputs on tape t, in their layouts (so an op's
 * path for a transposed or stepped input is the one checked): floats as
 * float64 with the same requires_grad, integers unchanged. */
static int copy_inputs(ad_tape *t, int n, ad_tensor *const *in, ad_tensor **x)
{
    for (int i = 0; i < n; i++) {
        ad_dtype d = ad__is_float(in[i]->dtype) ? AD_FLOAT64 : in[i]->dtype;
        x[i] = copy_in_layout(t, d, in[i]);
        if (!x[i] || ad__copy_into(x[i], in[i])) return -1;
        x[i]->requires_grad = in[i]->requires_grad && ad__is_float(d);
    }
    return 0;
}

/* The storage offset of t's element k (unravel's order). */
static int64_t element_offset(const ad_tensor *t, int64_t k)
{
    int64_t idx[AD_MAX_DIMS];
    unravel(t, k, idx);
    return ad__offset_of(t, idx);
}

/* The steps tried for an element of value x, largest first; returns how
 * many.  See the top of the file. */
static int steps_for(double x, double eps, double *h)
{
    int ns = 0;
    double h0 = eps * fmax(1.0, fabs(x));
    for (int k = 0; k <= HALVINGS; k++) h[ns++] = ldexp(h0, -k);
    double hr = eps * fabs(x);
    if (hr > 0 && hr < h[ns - 1] / 2) {
        h[ns++] = hr;
        h[ns++] = hr / 2;
    }
    return ns;
}

/* The estimate of an entry that is kept: the first one that agrees with
 * the analytic value, or, while none does, the one to report. */
typedef struct estimate {
    double num, step, ratio; /* ratio: as ad_gradcheck_result's */
    double err;              /* its error indicator, see offer() */
    bool richardson, pass, same_inf, set;
} estimate;

/* The ratio |a - n| / (atol + rtol |n|) of finite a, n. */
static double ratio_of(double a, double n, double atol, double rtol)
{
    double diff = fabs(a - n), tol = atol + rtol * fabs(n);
    return diff == 0 ? 0 : tol > 0 ? diff / tol : INFINITY;
}

/* Offers the estimate num of an entry whose analytic value is ana.  It
 * passes the entry when it agrees and is trusted: the first step always
 * is, a retried estimate when its rounding error `noise` is at most a
 * tenth of the tolerance.  While the entry has not passed, the estimate
 * kept for the report is, as in Ridders' method, the one with the smallest
 * error indicator `err` (how much it moved from the previous step's
 * estimate of the same kind), a finite one before any non-finite one. */
static void offer(estimate *best, double ana, double num, double noise, double err, double step,
                  bool richardson, bool trusted, const ad_gradcheck_opts *o)
{
    estimate e = {num, step, INFINITY, err, richardson, false, false, true};
    if (isfinite(ana) && isfinite(num)) {
        e.ratio = ratio_of(ana, num, o->atol, o->rtol);
        trusted = trusted || noise <= NOISE_SHARE * (o->atol + o->rtol * fabs(num));
        if (!trusted) return;
        e.pass = e.ratio <= 1;
    } else if (isinf(ana) && ana == num) {
        e.ratio = 0;
        e.pass = e.same_inf = true;
    }
    bool ef = isfinite(e.num), bf = best->set && isfinite(best->num);
    if (!best->set || e.pass || (ef && !bf) || (ef == bf && e.err < best->err)) *best = e;
}

static void describe_entry(char *buf, size_t size, const ad_tensor *in, int i, int64_t k,
                           const ad_tensor *out, int64_t j, double ana, const estimate *e,
                           const double *steps, int nsteps, const ad_gradcheck_opts *o)
{
    char how[256] = "";
    /* fabs: printf writes a NaN's sign bit ("-nan"), which means nothing */
    int len = snprintf(buf, size, "input %d element %s, output element %s: analytic %.10g vs "
                                  "numeric %.10g ", i, index_str(in, k), index_str(out, j), isnan(ana) ? fabs(ana) : ana,
                       isnan(e->num) ? fabs(e->num) : e->num);
    if (len < 0 || (size_t)len >= size) return;
    buf += len, size -= (size_t)len;
    if (e->same_inf) {
        snprintf(buf, size, "(both %s: accepted as the same infinity)", ana > 0 ? "inf" : "-inf");
        return;
    }
    snprintf(how, sizeof how, "; numeric from the %s step %g, the most converged of steps %g "
                              "down to %g and their Richardson extrapolations",
             e->richardson ? "Richardson extrapolation at" : "central difference with", e->step,
             steps[0], steps[nsteps - 1]);
    if (isfinite(ana) && isfinite(e->num)) {
        double diff = fabs(ana - e->num);
        snprintf(buf, size, "(difference %.3g, relative %.3g > atol %g + rtol %g * |numeric|%s)",
                 diff, e->num != 0 ? diff / fabs(e->num) : INFINITY, o->atol, o->rtol, how);
    } else if (!isfinite(e->num)) {
        snprintf(buf, size, "(no step from %g down to %g gave a finite numeric derivative: f "
                            "is not finite or not differentiable around this point; only the "
                            "same infinity on both sides passes)",
                 steps[0], steps[nsteps - 1]);
    } else {
        snprintf(buf, size, "(the analytic derivative is not finite; numeric from a %s step %g)",
                 e->richardson ? "Richardson extrapolation at" : "central difference with",
                 e->step);
    }
}

static void result_reset(ad_gradcheck_result *r)
{
    *r = (ad_gradcheck_result){0, 0, 0, -1, -1, 0, 0, NAN, NAN, NAN, NAN, NAN, NAN, false};
}

int ad_gradcheck(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                 const ad_gradcheck_opts *opts)
{
    return ad_gradcheck_ex(f, ctx, n, inputs, opts, NULL);
}

/* What one ad_gradcheck_ex call works on. */
typedef struct gc_run {
    ad_func f;
    void *ctx;
    int n;
    ad_gradcheck_opts o;
    ad_tape *ta, *te;   /* the analytic pass; each numeric evaluation */
    ad_tensor *x[64];   /* float64 copies of the inputs, on ta */
    ad_tensor *req[64]; /* those that require grad, reqidx[] their positions */
    int nreq, reqidx[64];
    ad_tensor *out;     /* f(x) on ta */
    int64_t m;          /* out's element count */
    double *jac;        /* jac[(offset of input r + k) * m + j] = d out_j / d x_r[k] */
    double *fp, *fm, *dprev, *nprev, *rprev; /* per output element, see numeric_column */
    double *moved; /* per output element: 1 once a step of this column moved it */
    estimate *best;     /* per output element: the estimate kept */
    ad_gradcheck_result res;
    char msg[900], worst_msg[900];
} gc_run;

/* Row j of the Jacobian is the gradient of out_j: one backward per output
 * element with grad_output = e_j. */
static int analytic_jacobian(gc_run *g)
{
    ad_tensor *grads[64];
    if (!g->out->requires_grad) return 0; /* constant in x: the zero Jacobian */
    /* Row j of the Jacobian is the backward pass seeded with SEED e_j,
     * divided by SEED (exactly: a power of two).  With 1 as the seed, a
     * rule that mishandles its incoming gradient g - ignores it (uses 1),
     * squares it, takes |g| - would give the right rows; -2 tells them
     * apart. */
    const double SEED = -2.0;
    for (int64_t j = 0; j < g->m; j++) {
        ad_tensor *e = ad_zeros(g->ta, g->out->dtype, g->out->ndim, g->out->shape);
        if (!e) return -1;
        ad__st(e, j, SEED);
        if (ad_gradients(g->out, e, g->nreq, g->req, grads, AD_RETAIN_GRAPH)) return -1;
        int64_t base = 0;
        for (int r = 0; r < g->nreq; r++) {
            int64_t nk = ad__numel(g->req[r]->ndim, g->req[r]->shape);
            double *col = ad__malloc((size_t)(nk + 1) * sizeof *col);
            if (!col) return ad__err(GC, "out of memory");
            ad_to_array(grads[r], col);
            /* + 0: a zero entry reads 0, not -0 */
            for (int64_t k = 0; k < nk; k++) g->jac[(base + k) * g->m + j] = col[k] / SEED + 0.0;
            ad__free(col);
            base += nk;
        }
    }
    return 0;
}

/* f at x with element k of input i moved to xk, into vals[m]. */
static int evaluate_at(gc_run *g, int i, int64_t k, double xk, double *vals)
{
    ad_tensor *y[64];
    ad_tape_reset(g->te);
    ad_tape_activate(g->te);
    if (copy_inputs(g->te, g->n, g->x, y)) return -1;
    ((double *)y[i]->storage->data)[element_offset(y[i], k)] = xk;
    ad_tensor *v = call(GC, g->f, g->ctx, g->n, y);
    if (!v) return -1;
    if (ad__numel(v->ndim, v->shape) != g->m)
        return ad__err(GC, "the function's output changed size between calls");
    ad_to_array(v, vals);
    return 0;
}

/* Column `col` of the Jacobian (element k of input i, value xk) by central
 * differences at the steps h[0..ns), stopping once every entry passed;
 * best[j] is then each entry's estimate (see offer). */
static int numeric_column(gc_run *g, int i, int64_t k, double xk, int64_t col, const double *h,
                          int ns)
{
    double hprev = 0;
    int tried = 0;
    int64_t open = g->m; /* entries of the column not passed yet */
    for (int64_t j = 0; j < g->m; j++) {
        g->best[j].set = g->best[j].pass = false;
        g->moved[j] = 0;
    }
    for (int s = 0; s < ns && open > 0; s++) {
        /* The width actually stepped, (x + h) - (x - h), is what the
         * difference divides by: it is not 2h after rounding. */
        double up = xk + h[s], down = xk - h[s], width = up - down;
        if (!(width > 0)) continue;
        if (evaluate_at(g, i, k, up, g->fp) || evaluate_at(g, i, k, down, g->fm)) return -1;
        double hh = width / 2, r2 = hprev > 0 ? (hprev / hh) * (hprev / hh) : 0;
        for (int64_t j = 0; j < g->m; j++) {
            /* An output that did not move has derivative 0, even when it is
             * the same infinity on both sides (where inf - inf is NaN). */
            double fp = g->fp[j], fm = g->fm[j];
            double d = fp == fm ? 0 : (fp - fm) / width, rich = NAN;
            /* An output that a wider step moved and this one does not is
             * below f's own resolution here (f rounds coarser than the 16
             * ulps assumed: float32 inside, cancellation): its 0 says
             * nothing, and trusted it agreed with a zero (missing,
             * detached) gradient.  Infinite noise: never trusted, nor the
             * Richardson values made with it. */
            double noise = fp == fm && g->moved[j] ? INFINITY
                                                    : F_ULPS * (fabs(fp) + fabs(fm)) / width;
            if (fp != fm && isfinite(d)) g->moved[j] = 1;
            estimate *b = &g->best[j];
            if (!b->pass) {
                double ana = g->jac[col * g->m + j];
                bool prev_ok = tried > 0 && isfinite(g->dprev[j]);
                offer(b, ana, d, noise, prev_ok ? fabs(d - g->dprev[j]) : INFINITY, hh, false,
                      tried == 0, &g->o);
                /* Richardson: D(h) = f' + c h^2 + O(h^4) at both steps, so
                 * this combination cancels c. */
                if (prev_ok && r2 > 1 && isfinite(d)) {
                    rich = d + (d - g->dprev[j]) / (r2 - 1);
                    double err = fabs(rich - (isfinite(g->rprev[j]) ? g->rprev[j] : d));
                    if (!b->pass)
                        offer(b, ana, rich, (r2 * noise + g->nprev[j]) / (r2 - 1), err, hh, true,
                              false, &g->o);
                }
                if (b->pass) open--;
            }
            g->dprev[j] = d;
            g->nprev[j] = noise;
            g->rprev[j] = rich;
        }
        hprev = hh;
        tried++;
    }
    return 0;
}

/* Counts column col's entries into the result, reports failures and keeps
 * the worst entry. */
static int account_column(gc_run *g, int r, int64_t k, double xk, int64_t col, const double *h,
                          int ns)
{
    int i = g->reqidx[r];
    ad_gradcheck_result *res = &g->res;
    for (int64_t j = 0; j < g->m; j++) {
        const estimate *e = &g->best[j];
        double ana = g->jac[col * g->m + j];
        res->checked++;
        if (!e->set) /* no step was wide enough to change x */
            return ad__err(GC, "input %d element %lld: x = %g does not change by the step %g", i,
                           (long long)k, xk, h[0]);
        res->failed += !e->pass;
        res->infinite += e->same_inf;
        bool worst = res->input < 0 || e->ratio > res->ratio;
        if (!e->pass || e->same_inf) {
            describe_entry(g->msg, sizeof g->msg, g->req[r], i, k, g->out, j, ana, e, h, ns,
                           &g->o);
            if (g->o.report) fprintf(g->o.report, "%s: %s\n", GC, g->msg);
        }
        if (!worst) continue;
        double diff = e->same_inf ? 0 : fabs(ana - e->num);
        res->input = i;
        res->element = k;
        res->output = j;
        res->analytic = ana;
        res->numeric = e->num;
        res->abs_err = diff;
        res->rel_err = !isfinite(diff) ? diff : diff == 0 ? 0 : e->num != 0 ? diff / fabs(e->num)
                                                                           : INFINITY;
        res->ratio = e->ratio;
        res->step = e->step;
        res->richardson = e->richardson;
        /* a failure's ratio exceeds every pass's, so the final worst
         * entry's message is kept here */
        if (!e->pass) snprintf(g->worst_msg, sizeof g->worst_msg, "%s", g->msg);
    }
    return 0;
}

/* Why a check would compare nothing, or NULL when it compares something. */
static const char *nothing_to_check(const gc_run *g, int64_t total)
{
    return g->nreq == 0 ? "no input requires grad (mark the floating inputs to check with "
                          "ad_set_requires_grad)"
           : total == 0 ? "the inputs that require grad have no elements"
           : g->m == 0  ? "the function's output has no elements"
                        : NULL;
}

/* The check proper, on tapes already made; returns as ad_gradcheck_ex. */
static int run_check(gc_run *g, ad_tensor *const *inputs)
{
    ad_tape_activate(g->ta);
    if (copy_inputs(g->ta, g->n, inputs, g->x)) return -1;
    for (int i = 0; i < g->n; i++)
        if (g->x[i]->requires_grad) g->reqidx[g->nreq] = i, g->req[g->nreq++] = g->x[i];
    g->out = call(GC, g->f, g->ctx, g->n, g->x);
    if (!g->out) return -1;
    g->m = ad__numel(g->out->ndim, g->out->shape);
    int64_t total = 0;
    for (int r = 0; r < g->nreq; r++) total += ad__numel(g->req[r]->ndim, g->req[r]->shape);

    /* A check that compares nothing would "pass" without having looked at
     * anything; say so instead. */
    const char *why = nothing_to_check(g, total);
    if (why) {
        ad__err(GC, "nothing was checked: %s", why);
        if (g->o.report) fprintf(g->o.report, "%s\n", ad_error());
        return 0;
    }

    g->jac = ad__calloc((size_t)(total * g->m + 1), sizeof *g->jac);
    /* per output element: f(x + h), f(x - h), and at the previous step D,
     * its rounding error and the Richardson value */
    double *buf = ad__malloc((size_t)(6 * g->m + 1) * sizeof *buf);
    g->best = ad__malloc((size_t)g->m * sizeof *g->best);
    g->fp = buf;
    if (!g->jac || !buf || !g->best) return ad__err(GC, "out of memory");
    g->fm = buf + g->m, g->dprev = buf + 2 * g->m, g->nprev = buf + 3 * g->m;
    g->rprev = buf + 4 * g->m, g->moved = buf + 5 * g->m;
    if (analytic_jacobian(g)) return -1;

    /* Numeric columns, each from pairs of fresh evaluations on tape te. */
    int64_t base = 0;
    for (int r = 0; r < g->nreq; r++) {
        int i = g->reqidx[r];
        int64_t nk = ad__numel(g->req[r]->ndim, g->req[r]->shape);
        for (int64_t k = 0; k < nk; k++) {
            const double *xd = g->x[i]->storage->data;
            const double xk = xd[element_offset(g->x[i], k)];
            double h[MAX_STEPS];
            int ns = steps_for(xk, g->o.eps, h);
            if (numeric_column(g, i, k, xk, base + k, h, ns) ||
                account_column(g, r, k, xk, base + k, h, ns))
                return -1;
        }
        base += nk;
    }
    if (g->res.failed) {
        ad__err(GC, "%lld of %lld Jacobian entries disagree; the worst: %s",
                (long long)g->res.failed, (long long)g->res.checked, g->worst_msg);
        if (g->o.report) fprintf(g->o.report, "%s\n", ad_error());
        return 0;
    }
    if (g->o.report)
        fprintf(g->o.report, "%s: all %lld Jacobian entries agree (%lld as the same infinity)\n",
                GC, (long long)g->res.checked, (long long)g->res.infinite);
    return 1;
}

int ad_gradcheck_ex(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                    const ad_gradcheck_opts *opts, ad_gradcheck_result *result)
{
    ad_gradcheck_opts o = AD_GRADCHECK_DEFAULTS;
    if (opts) o = *opts;
    if (result) result_reset(result);
    if (!f) return ad__err(GC, "function is NULL");
    if (n < 1 || n > 64) return ad__err(GC, "need 1 to 64 inputs, got %d", n);
    if (!inputs) return ad__err(GC, "inputs is NULL");
    if (!(o.eps > 0) || !isfinite(o.eps) || !(o.atol >= 0) || !(o.rtol >= 0))
        return ad__err(GC, "eps must be > 0 and finite, and atol, rtol >= 0");
    for (int i = 0; i < n; i++)
        if (ad__check_arg(GC, "inputs[i]", inputs[i], false)) return -1;

    gc_run *g = ad__calloc(1, sizeof *g);
    if (!g) return ad__err(GC, "out of memory");
    g->f = f, g->ctx = ctx, g->n = n, g->o = o;
    result_reset(&g->res);
    ad_tape *prev_tape = ad_tape_active();
    bool prev_mode = ad_set_grad_enabled(true);
    g->ta = ad_tape_new();
    g->te = ad_tape_new();
    int rc = g->ta && g->te ? run_check(g, inputs) : -1;
    if (result) *result = g->res;
    ad__free(g->jac);
    ad__free(g->fp);
    ad__free(g->best);
    ad_tape_activate(prev_tape);
    ad_set_grad_enabled(prev_mode);
    ad_tape_free(g->ta);
    ad_tape_free(g->te);
    ad__free(g);
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
    int nf;     /* f's inputs; with one more, the last is v itself (a tensor) */
} vjp_ctx;

static ad_tensor *vjp_fn(ad_tensor *const *x, int n, void *vctx)
{
    vjp_ctx *c = vctx;
    static const char *fn = "ad_gradgradcheck";
    ad_tensor *out = call(fn, c->f, c->ctx, c->nf, x);
    if (!out) return NULL;
    ad_tensor *target = x[c->target];
    ad_tensor *g;
    if (!out->requires_grad) {
        g = ad_zeros(out->tape, target->dtype, target->ndim, target->shape);
    } else if (n > c->nf) { /* v an input: the gradient's derivative in v is checked too */
        ad_tensor *v = ad_reshape(x[c->nf], out->ndim, out->shape);
        if (!v || ad_gradients(out, v, 1, &target, &g, AD_CREATE_GRAPH)) return NULL;
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
    return ad_gradgradcheck_ex(f, ctx, n, inputs, opts, NULL);
}

static int gradgrad(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                    const ad_gradcheck_opts *opts, ad_gradcheck_result *result, bool wrt_g);

int ad_gradgradcheck_ex(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                        const ad_gradcheck_opts *opts, ad_gradcheck_result *result)
{
    return gradgrad(f, ctx, n, inputs, opts, result, false);
}

int ad__gradgradcheck_wrt_g(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                            const ad_gradcheck_opts *opts)
{
    return gradgrad(f, ctx, n, inputs, opts, NULL, true);
}

/* tg[i] = x0[i] + c w[i], element by element in unravel's order. */
static void put_along(ad_tensor *const *tg, int nt, double *const *x0, double *const *w, double c)
{
    for (int i = 0; i < nt; i++)
        for (int64_t e = 0; e < ad__numel(tg[i]->ndim, tg[i]->shape); e++)
            ad__st(tg[i], element_offset(tg[i], e), x0[i][e] + c * w[i][e]);
}

/* The recorded gradient's derivative in the incoming gradient g, along one
 * direction: with G_i = J_i^T V, the gradients of f's inputs for the
 * incoming gradient V (recorded), s = sum_i <w_i, G_i> has ds/dV =
 * sum_i J_i w_i, which central differences of f along w give.  One more
 * backward pass and a few evaluations of f, where checking every element of
 * V as an input (ad_custom_check's way) costs the output's size: a rule
 * that detaches g or scales it wrong fails here, though it is right to
 * first order and in x.  1 when it agrees, 0 when not (msg says where),
 * -1 on error. */
static int g_direction(const char *fn, ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                       const double *v, const ad_gradcheck_opts *o, char *msg, size_t msz)
{
    enum { STEPS = 3 };
    ad_tape *t = ad_tape_new();
    if (!t) return -1;
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x[64], *tg[64], *G[64];
    double *w[64] = {0}, *x0[64] = {0}, *a = NULL, *num[2] = {NULL, NULL};
    int nt = 0, rc = -1;
    ad_rng rng;
    ad_rng_init(&rng, 20261206u);
    if (copy_inputs(t, n, inputs, x)) goto out;
    /* w scaled to each element's size, as the steps of ad_gradcheck are:
     * |x| for 0 < |x| < 1 (a step from 1e-9 stays inside log's domain),
     * else max(1, |x|) */
    for (int i = 0; i < n; i++) {
        if (!x[i]->requires_grad) continue;
        int64_t k = ad__numel(x[i]->ndim, x[i]->shape);
        w[nt] = ad__malloc((size_t)(k + 1) * sizeof(double));
        x0[nt] = ad__malloc((size_t)(k + 1) * sizeof(double));
        tg[nt++] = x[i];
        if (!w[nt - 1] || !x0[nt - 1]) goto oom;
        for (int64_t e = 0; e < k; e++) {
            double xe = x0[nt - 1][e] = ad__ld(x[i], element_offset(x[i], e));
            xe = fabs(xe);
            w[nt - 1][e] = (2 * ad_rng_uniform(&rng) - 1) * (xe > 0 && xe < 1 ? xe : fmax(1, xe));
        }
    }
    ad_tensor *out = call(fn, f, ctx, n, x), *V = NULL, *s = NULL, *dV = NULL;
    if (!out) goto out;
    int64_t m = ad__numel(out->ndim, out->shape);
    if (!(V = ad__alloc(fn, t, out->dtype, out->ndim, out->shape))) goto out;
    for (int64_t j = 0; j < m; j++) ad__st(V, j, v[j]);
    if (ad_set_requires_grad(V, true) || ad_gradients(out, V, nt, tg, G, AD_CREATE_GRAPH))
        goto out;
    for (int i = 0; i < nt; i++) {
        ad_tensor *W = ad__alloc(fn, t, G[i]->dtype, G[i]->ndim, G[i]->shape);
        if (!W) goto out;
        for (int64_t e = 0; e < ad__numel(W->ndim, W->shape); e++) ad__st(W, e, w[i][e]);
        ad_tensor *term = ad_sum(ad_mul(G[i], W), NULL, 0, false);
        if (!(s = s ? ad_add(s, term) : term)) goto out;
    }
    if (s->requires_grad ? ad_gradients(s, NULL, 1, &V, &dV, 0)
                         : !(dV = ad_zeros(t, V->dtype, V->ndim, V->shape)))
        goto out;
    a = ad__malloc((size_t)(m + 1) * sizeof *a);
    num[0] = ad__malloc((size_t)(m + 1) * sizeof(double));
    num[1] = ad__malloc((size_t)(m + 1) * sizeof(double));
    if (!a || !num[0] || !num[1]) goto oom;
    for (int64_t j = 0; j < m; j++) a[j] = ad__ld(dV, element_offset(dV, j));
    double worst = -1, wa = 0, wn = 0, h0 = o->eps;
    int64_t wj = 0;
    for (int64_t j = 0; j < m; j++) num[1][j] = INFINITY; /* the best estimate so far */
    for (int k = 0; k < STEPS; k++) {
        double h = ldexp(h0, -2 * k);
        for (int sgn = 0; sgn < 2; sgn++) { /* f(x + h w), then f(x - h w) */
            put_along(tg, nt, x0, w, sgn ? -h : h);
            bool pm = ad_set_grad_enabled(false);
            ad_tensor *y = call(fn, f, ctx, n, x);
            ad_set_grad_enabled(pm);
            if (!y) goto out;
            for (int64_t j = 0; j < m; j++) {
                double yj = ad__ld(y, element_offset(y, j));
                num[0][j] = sgn ? (num[0][j] - yj) / (2 * h) : yj;
            }
        }
        for (int64_t j = 0; j < m; j++)
            if (fabs(num[0][j] - a[j]) < fabs(num[1][j] - a[j])) num[1][j] = num[0][j];
    }
    for (int64_t j = 0; j < m; j++) {
        double ratio = fabs(a[j] - num[1][j]) / (o->atol + o->rtol * fabs(num[1][j]));
        if (!(ratio <= worst)) worst = ratio, wj = j, wa = a[j], wn = num[1][j];
    }
    rc = worst <= 1;
    if (!rc)
        snprintf(msg, msz,
                 "the derivative in the incoming gradient g along a random direction (the "
                 "rule's recorded gradient must be linear in g, not detach it): output element "
                 "%lld: analytic %.10g, numeric %.10g",
                 (long long)wj, wa, wn);
    goto out;
oom:
    ad__err(fn, "out of memory");
out:
    for (int i = 0; i < nt; i++) ad__free(w[i]), ad__free(x0[i]);
    ad__free(a), ad__free(num[0]), ad__free(num[1]);
    ad_tape_activate(prev);
    ad_tape_free(t);
    return rc;
}

/* With wrt_g, v is an input of the checked function as well (the last),
 * so that the recorded gradient's derivative with respect to the incoming
 * gradient is compared too, as PyTorch's gradgradcheck does: a rule that
 * detaches g is right to first order and in x, and wrong there. */
static int gradgrad(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                    const ad_gradcheck_opts *opts, ad_gradcheck_result *result, bool wrt_g)
{
    static const char *fn = "ad_gradgradcheck";
    ad_gradcheck_opts o = AD_GRADCHECK_DEFAULTS;
    if (opts) o = *opts;
    ad_gradcheck_result total, one;
    result_reset(&total);
    if (result) *result = total;
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
    char worst_msg[1000] = "";
    if (copy_inputs(t, n, inputs, x)) goto out;
    ad_tensor *out = call(fn, f, ctx, n, x);
    if (!out) goto out;
    int64_t m = ad__numel(out->ndim, out->shape);
    if (m == 0) { /* v . df/dx is identically 0: nothing to check */
        ad__err(fn, "nothing was checked: the function's output has no elements");
        if (o.report) fprintf(o.report, "%s\n", ad_error());
        rc = 0;
        goto out;
    }
    /* No recorded path from an input to the output (a comparison, a
     * detach, an op without a rule): the tape's gradient is 0 wherever x
     * goes, so its derivatives are 0, and right exactly when the first
     * derivatives are 0 (a comparison's are; sin(detach(x))'s are not).
     * Comparing zeros with the finite differences of zeros would pass
     * either way, so the first derivatives are what is checked. */
    bool any_rg = false;
    for (int i = 0; i < n; i++) any_rg |= x[i]->requires_grad;
    if (any_rg && !out->requires_grad) {
        ad__free(v);
        v = NULL;
        ad_tape_activate(prev);
        ad_tape_free(t);
        t = NULL;
        rc = ad_gradcheck_ex(f, ctx, n, inputs, &o, &total);
        if (rc == 0 && total.checked > 0) {
            snprintf(worst_msg, sizeof worst_msg, "%s", ad_error());
            ad__err(fn, "the function's output does not require grad (no recorded op joins it "
                        "to an input), so its gradient is 0 on the tape, but its first "
                        "derivatives are not: %s",
                    worst_msg);
        }
        if (result) *result = total;
        return rc;
    }
    v = ad__malloc((size_t)(m + 1) * sizeof *v);
    if (!v) {
        ad__err(fn, "out of memory");
        goto out;
    }
    /* A fixed, generic v: values in [0.5, 1.5) so no component vanishes. */
    ad_rng rng;
    ad_rng_init(&rng, 20261128u);
    for (int64_t j = 0; j < m; j++) v[j] = 0.5 + ad_rng_uniform(&rng);
    bool any = false;
    for (int i = 0; i < n; i++) {
        if (!inputs[i]->requires_grad || !ad__is_float(inputs[i]->dtype)) continue;
        any = true;
        if (ad__numel(inputs[i]->ndim, inputs[i]->shape) == 0) continue; /* no gradient */
        vjp_ctx c = {f, ctx, i, v, m, n};
        int r;
        if (wrt_g && n < 64) {
            ad_tensor *in2[64], *V = ad__alloc(fn, NULL, out->dtype, 1, &m);
            for (int64_t j = 0; V && j < m; j++) ad__st(V, j, v[j]);
            r = V && !ad_set_requires_grad(V, true) ? 0 : -1;
            for (int k = 0; k < n; k++) in2[k] = inputs[k];
            in2[n] = V;
            if (r == 0) r = ad_gradcheck_ex(vjp_fn, &c, n + 1, in2, &o, &one);
            ad_tensor_free(V);
        } else {
            r = ad_gradcheck_ex(vjp_fn, &c, n, inputs, &o, &one);
        }
        if (r == 0 && one.checked == 0) { /* the output is empty: nothing was checked */
            snprintf(worst_msg, sizeof worst_msg, "%s", ad_error());
            ad__err(fn, "%s", worst_msg);
            rc = 0;
            goto out;
        }
        total.checked += one.checked;
        total.failed += one.failed;
        total.infinite += one.infinite;
        if (total.input < 0 || one.ratio > total.ratio) {
            int64_t ck = total.checked, fl = total.failed, inf = total.infinite;
            total = one;
            total.checked = ck, total.failed = fl, total.infinite = inf;
            total.grad_of = i;
            if (r == 0)
                snprintf(worst_msg, sizeof worst_msg,
                         "second derivatives through the gradient of input %d%s: %s", i,
                         wrt_g && one.input == n ? ", in the incoming gradient g (the check's "
                                                   "last input)" : "",
                         ad_error());
        }
        if (r < 0) goto out;
    }
    if (!wrt_g && any && total.checked > 0 && !total.failed) {
        int r = g_direction(fn, f, ctx, n, inputs, v, &o, worst_msg, sizeof worst_msg);
        if (r < 0) goto out;
        total.failed += r == 0;
    }
    if (!any || total.checked == 0) {
        ad__err(fn, "nothing was checked: %s",
                !any ? "no input requires grad (mark the floating inputs to check with "
                       "ad_set_requires_grad)"
                     : "the inputs that require grad have no elements");
        if (o.report) fprintf(o.report, "%s\n", ad_error());
        rc = 0;
    } else if (total.failed) {
        ad__err(fn, "%s", worst_msg);
        rc = 0;
    } else {
        rc = 1;
    }
out:
    if (result) *result = total;
    ad__free(v);
    ad_tape_activate(prev);
    ad_tape_free(t);
    return rc;
}

/* nn/modcheck.c - nn_gradcheck (modcheck.h): a module's parameter
 * gradients against central differences of the loss. */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "modcheck.h"
#include "nn_private.h"

typedef struct mc {
    nn_module *m;
    ad_tensor *x, *target, *r; /* r: the fixed weights when loss is NULL */
    nn_loss_fn loss;
    ad_tape *tape;
    int nrng;
    ad_rng **rngs, *start; /* the registered streams and where they began */
} mc;

static int count_rngs(const nn_module *m)
{
    int n = nn_module_rng(m) ? 1 : 0;
    for (int i = 0; i < nn_num_children(m); i++) n += count_rngs(nn_child(m, i));
    return n;
}
static void list_rngs(const nn_module *m, ad_rng **out, int *k)
{
    if (nn_module_rng(m)) out[(*k)++] = nn_module_rng(m);
    for (int i = 0; i < nn_num_children(m); i++) list_rngs(nn_child(m, i), out, k);
}

/* The loss on c->tape (reset first), with the random streams rewound. */
static ad_tensor *objective(const char *fn, mc *c)
{
    for (int i = 0; i < c->nrng; i++) *c->rngs[i] = c->start[i];
    if (ad_tape_reset(c->tape)) return NULL;
    ad_tensor *x = ad_copy(c->tape, c->x);
    ad_tensor *t = c->target ? ad_copy(c->tape, c->target) : NULL;
    if (!x || (c->target && !t)) return NULL;
    ad_tensor *y = nn_forward(c->m, x);
    if (!y) return NULL;
    ad_tensor *L;
    if (c->loss) {
        L = c->loss(y, t, NN_SUM);
    } else {
        if (!c->r) {
            ad_rng rng;
            ad_rng_init(&rng, 0x5eed);
            c->r = ad_rand(NULL, &rng, ad_tensor_dtype(y), ad_ndim(y), ad_shape(y), 0.5, 1.5);
            if (!c->r) return NULL;
            /* of both signs: a backward rule that takes |g| where it should
             * take g would pass weights that are all positive */
            for (int64_t j = 1; j < ad_numel(c->r); j += 2) {
                if (ad_tensor_dtype(c->r) == AD_FLOAT32)
                    ((float *)ad_data(c->r))[j] *= -1;
                else
                    ((double *)ad_data(c->r))[j] *= -1;
            }
        }
        L = ad_sum(ad_mul(y, c->r), NULL, 0, false);
    }
    if (L && ad_numel(L) != 1)
        return ad_set_error("%s: the loss has %" PRId64 " elements; reduce it to one", fn,
                            ad_numel(L)),
               NULL;
    return L;
}

static int value(const char *fn, mc *c, double *out)
{
    bool prev = ad_set_grad_enabled(false);
    ad_tensor *L = objective(fn, c);
    ad_set_grad_enabled(prev);
    if (!L) return -1;
    *out = ad_item(L);
    return 0;
}

/* The element at flat index i of a contiguous floating tensor. */
static double get(ad_tensor *t, int64_t i)
{
    return ad_tensor_dtype(t) == AD_FLOAT32 ? ((float *)ad_data(t))[i] : ((double *)ad_data(t))[i];
}
/* Stores v and returns the value actually stored. */
static double put(ad_tensor *t, int64_t i, double v)
{
    if (ad_tensor_dtype(t) == AD_FLOAT32) return ((float *)ad_data(t))[i] = (float)v;
    return ((double *)ad_data(t))[i] = v;
}

typedef struct worst {
    int64_t failed, checked;
    double ratio, analytic, numeric, h;
    int param;
    int64_t element;
} worst;

/* Compares every element of parameter p (name, its analytic gradient g). */
static int check_param(const char *fn, mc *c, const char *name, ad_tensor *p, const double *g,
                       int pi, const ad_gradcheck_opts *o, worst *w)
{
    for (int64_t i = 0; i < ad_numel(p); i++) {
        double v = get(p, i), h = o->eps * fmax(1.0, fabs(v)), fp = 0, fm = 0;
        double xp = put(p, i, v + h);
        int rc = value(fn, c, &fp);
        double xm = put(p, i, v - h);
        rc = rc ? rc : value(fn, c, &fm);
        put(p, i, v); /* v came from the tensor: storing it again is exact */
        if (rc) return -1;
        double num = (fp - fm) / (xp - xm), diff = fabs(g[i] - num);
        double ratio = isfinite(diff) ? diff / (o->atol + o->rtol * fabs(num)) : INFINITY;
        if (!isfinite(g[i]) && !isfinite(num) && g[i] == num) ratio = 0; /* same infinity */
        w->checked++;
        if (ratio > 1 || isnan(ratio)) {
            w->failed++;
            if (o->report)
                fprintf(o->report, "%s: '%s' element %" PRId64 ": analytic %.10g vs numeric %.10g\n",
                        fn, name, i, g[i], num);
        }
        if (w->param < 0 || ratio > w->ratio || (isnan(ratio) && !isnan(w->ratio))) {
            *w = (worst){w->failed, w->checked, isnan(ratio) ? INFINITY : ratio, g[i], num,
                         xp - v, pi, i};
        }
    }
    return 0;
}

/* "[1,2]": the multi-index of flat element e of a tensor of that shape. */
static void index_str(const ad_tensor *t, int64_t e, char *buf, size_t size)
{
    int nd = ad_ndim(t);
    int64_t idx[AD_MAX_DIMS];
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = e % ad_size(t, d);
        e /= ad_size(t, d);
    }
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < nd && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, d ? "," : "", idx[d]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

int nn_gradcheck(nn_module *m, ad_tensor *x, ad_tensor *target, nn_loss_fn loss,
                 const ad_gradcheck_opts *opts)
{
    const char *fn = "nn_gradcheck";
    if (!m || !x) return nn__null_arg(fn, m ? "x" : "m");
    nn_named_tensors *ps = nn_parameters(m), *bufs = nn_buffers(m);
    if (!ps || !bufs) {
        nn_named_tensors_free(ps);
        nn_named_tensors_free(bufs);
        return -1;
    }
    /* the defaults by dtype, see modcheck.h */
    bool f32 = false;
    for (int i = 0; i < ps->n; i++) f32 |= ad_tensor_dtype(ps->tensors[i]) == AD_FLOAT32;
    ad_gradcheck_opts o = opts ? *opts
                               : f32 ? (ad_gradcheck_opts){1e-2, 1e-3, 1e-2, NULL}
                                     : (ad_gradcheck_opts)AD_GRADCHECK_DEFAULTS;
    mc c = {.m = m, .x = x, .target = target, .loss = loss, .tape = ad_tape_new()};
    c.nrng = count_rngs(m);
    c.rngs = ad_calloc((size_t)c.nrng + 1, sizeof *c.rngs);
    c.start = ad_calloc((size_t)c.nrng + 1, sizeof *c.start);
    ad_tensor **grads = ad_calloc((size_t)ps->n + 1, sizeof *grads);
    ad_tensor **keep = ad_calloc((size_t)bufs->n + 1, sizeof *keep);
    double **g = ad_calloc((size_t)ps->n + 1, sizeof *g);
    int rc = c.tape && c.rngs && c.start && grads && keep && g ? 0 : nn__err(fn, "out of memory");
    int k = 0;
    if (rc == 0) list_rngs(m, c.rngs, &k);
    for (int i = 0; i < c.nrng && rc == 0; i++) c.start[i] = *c.rngs[i];
    for (int i = 0; i < bufs->n && rc == 0; i++)
        if (!(keep[i] = ad_copy(NULL, bufs->tensors[i]))) rc = -1;
    if (!(o.eps > 0 && o.atol >= 0 && o.rtol >= 0))
        rc = nn__err(fn, "eps must be > 0 and atol, rtol >= 0, got %g, %g, %g", o.eps, o.atol,
                     o.rtol);
    for (int i = 0; i < ps->n && rc == 0; i++)
        if (!ad_is_contiguous(ps->tensors[i]))
            rc = nn__err(fn, "parameter '%s' is not contiguous", ps->names[i]);
    ad_tape *prev = ad_tape_activate(c.tape);
    /* analytic: one backward pass */
    if (rc == 0) {
        bool gm = ad_set_grad_enabled(true);
        ad_tensor *L = objective(fn, &c);
        rc = L ? ad_gradients(L, NULL, ps->n, ps->tensors, grads, 0) : -1;
        ad_set_grad_enabled(gm);
        for (int i = 0; i < ps->n && rc == 0; i++) {
            g[i] = ad_malloc((size_t)ad_numel(ps->tensors[i]) * sizeof(double) + 1);
            rc = g[i] ? ad_to_array(grads[i], g[i]) : nn__err(fn, "out of memory");
        }
    }
    worst w = {.param = -1, .ratio = 0};
    /* a frozen parameter (requires_grad off) has no gradient to check: its
     * zeros would be compared with the loss's true slope */
    for (int i = 0; i < ps->n && rc == 0; i++)
        if (ad_requires_grad(ps->tensors[i]))
            rc = check_param(fn, &c, ps->names[i], ps->tensors[i], g[i], i, &o, &w);
    ad_tape_activate(prev);
    /* put the model back as it was */
    for (int i = 0; i < c.nrng; i++) *c.rngs[i] = c.start[i];
    for (int i = 0; i < bufs->n; i++)
        if (keep[i]) ad_copy_into(bufs->tensors[i], keep[i]);
    if (rc == 0 && w.checked == 0) {
        nn__err(fn, "nothing was checked: the model has no parameter elements that require "
                    "grad");
    } else if (rc == 0 && w.failed > 0) {
        char idx[128];
        index_str(ps->tensors[w.param], w.element, idx, sizeof idx);
        nn__err(fn, "%" PRId64 " of %" PRId64 " parameter gradient entries disagree; the worst: "
                    "'%s' element %s: analytic %.10g vs numeric %.10g (difference %.3g > atol %g "
                    "+ rtol %g * |numeric|; step %.3g)",
                w.failed, w.checked, ps->names[w.param], idx, w.analytic, w.numeric,
                fabs(w.analytic - w.numeric), o.atol, o.rtol, w.h);
    }
    if (o.report && rc == 0)
        fprintf(o.report, "nn_gradcheck: %s (%" PRId64 " of %" PRId64 " entries disagree)\n",
                w.failed || !w.checked ? "FAILED" : "passed", w.failed, w.checked);
    int result = rc ? -1 : (w.failed == 0 && w.checked > 0);
    for (int i = 0; i < ps->n; i++) ad_free(g ? g[i] : NULL);
    for (int i = 0; keep && i < bufs->n; i++) ad_tensor_free(keep[i]);
    ad_free(g);
    ad_free(keep);
    ad_free(grads);
    ad_free(c.rngs);
    ad_free(c.start);
    ad_tensor_free(c.r);
    ad_tape_free(c.tape);
    nn_named_tensors_free(ps);
    nn_named_tensors_free(bufs);
    return result;
}

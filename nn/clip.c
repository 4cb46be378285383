/* nn/clip.c - gradient clipping and the per-layer gradient-norm report
 * (declared in optim.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_private.h"
#include "optim.h"

/* Applies v <- v * a (clamp false) or v <- clamp(v, -a, a) (clamp true) to
 * every element of g in place, whatever its strides. */
static int modify_grad(ad_tensor *g, double a, bool clamp)
{
    ad_tensor *c = ad_is_contiguous(g) ? g : ad_copy(NULL, g);
    if (!c) return -1;
    void *d = ad_data(c);
    ad_dtype dt = ad_tensor_dtype(c);
    for (int64_t i = 0, n = ad_numel(c); i < n; i++) {
        double v = nn__ld(d, dt, i);
        /* a NaN stays NaN (fmax would take -a for it: a NaN gradient
         * turned into a step of -a, unseen), as PyTorch's clamp keeps it */
        nn__st(d, dt, i, clamp ? (v != v ? v : fmin(fmax(v, -a), a)) : v * a);
    }
    int rc = 0;
    if (c != g) {
        rc = ad_copy_into(g, c);
        ad_tensor_free(c);
    } else {
        ad_mark_modified(g);
    }
    return rc;
}

double nn_clip_grad_norm(const nn_named_tensors *params, double max_norm)
{
    const char *fn = "nn_clip_grad_norm";
    if (!params) return nn__null_arg(fn, "params");
    if (!(max_norm >= 0))
        return ad_set_error("%s: max_norm must be >= 0, got %g", fn, max_norm);
    /* The norm of the whole gradient, seen as one long vector: clipping it
     * (rather than each tensor separately) keeps the step's direction. */
    double ss = 0;
    for (int i = 0; i < params->n; i++) {
        ad_tensor *g = params->tensors[i] ? ad_tensor_grad(params->tensors[i]) : NULL;
        if (!g) continue;
        double s = nn__sum_sq(fn, g);
        if (s < 0) /* say which gradient, unless the message names fn already */
            return strncmp(ad_error(), fn, strlen(fn)) ? ad_set_error("%s: '%s': %s", fn,
                                                                      params->names[i], ad_error())
                                                       : -1;
        ss += s;
    }
    double norm = sqrt(ss);
    if (isinf(ss)) {
        /* Finite gradients whose squares overflow (float64 beyond 1.3e154):
         * the norm again as M ||g / M||, M the largest |g_i|; an inf or
         * NaN gradient makes M so, and the norm. */
        double big = 0, m, part;
        for (int i = 0; i < params->n; i++) {
            ad_tensor *g = params->tensors[i] ? ad_tensor_grad(params->tensors[i]) : NULL;
            if (!g) continue;
            if (nn__scaled_sum_sq(fn, g, 0, &m, NULL)) return -1;
            big = m > big || m != m ? m : big;
        }
        ss = 0;
        for (int i = 0; isfinite(big) && i < params->n; i++) {
            ad_tensor *g = params->tensors[i] ? ad_tensor_grad(params->tensors[i]) : NULL;
            if (!g) continue;
            if (nn__scaled_sum_sq(fn, g, 1 / big, &m, &part)) return -1;
            ss += part;
        }
        norm = isfinite(big) ? big * sqrt(ss) : big;
    }
    if (!isfinite(norm)) return norm; /* leave NaN/inf gradients for the caller to see */
    /* PyTorch's coefficient, with 1e-6 guarding against a zero norm. */
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (int i = 0; i < params->n; i++) {
            ad_tensor *g = params->tensors[i] ? ad_tensor_grad(params->tensors[i]) : NULL;
            if (g && modify_grad(g, coef, false) != 0) return -1;
        }
    return norm;
}

int nn_clip_grad_value(const nn_named_tensors *params, double clip)
{
    const char *fn = "nn_clip_grad_value";
    if (!params) return nn__null_arg(fn, "params");
    if (!(isfinite(clip) && clip >= 0))
        return ad_set_error("%s: clip must be finite and >= 0, got %g", fn, clip);
    for (int i = 0; i < params->n; i++) {
        ad_tensor *g = params->tensors[i] ? ad_tensor_grad(params->tensors[i]) : NULL;
        if (g && modify_grad(g, clip, true) != 0) return -1;
    }
    return 0;
}

int nn_grad_norm_report(const nn_module *m, FILE *out)
{
    const char *fn = "nn_grad_norm_report";
    if (!m || !out) return nn__null_arg(fn, m ? "out" : "m");
    nn_named_tensors *p = nn_parameters(m);
    if (!p) return -1;
    fprintf(out, "%-28s %-16s %12s %12s %10s\n", "parameter", "shape", "||w||", "||dE/dw||",
            "ratio");
    double wss = 0, gss = 0;
    bool any_grad = false;
    int rc = 0;
    for (int i = 0; i < p->n && rc == 0; i++) {
        char sh[64];
        ad_shape_str(p->tensors[i], sh, sizeof sh);
        double w2 = nn__sum_sq(fn, p->tensors[i]);
        ad_tensor *g = ad_tensor_grad(p->tensors[i]);
        double g2 = g ? nn__sum_sq(fn, g) : 0;
        if (w2 < 0 || g2 < 0) {
            rc = -1;
            break;
        }
        wss += w2;
        fprintf(out, "%-28s %-16s %12.4e ", p->names[i], sh, sqrt(w2));
        if (!g) {
            fprintf(out, "%12s %10s\n", "-", "-");
            continue;
        }
        any_grad = true;
        gss += g2;
        /* ||dE/dw|| / ||w||: the relative change an SGD step of lr 1 would
         * make, so lr * ratio is the step's relative size (a rule of thumb
         * from CS231n: about 1e-3 is healthy).  A ratio orders of magnitude
         * smaller in the first layers than in the last means the gradient
         * vanishes on its way back. */
        fprintf(out, "%12.4e %10.3e\n", sqrt(g2), w2 > 0 ? sqrt(g2 / w2) : INFINITY);
    }
    if (rc == 0) {
        fprintf(out, "%-28s %-16s %12.4e ", "total", "", sqrt(wss));
        if (any_grad)
            fprintf(out, "%12.4e %10.3e\n", sqrt(gss), wss > 0 ? sqrt(gss / wss) : INFINITY);
        else
            fprintf(out, "%12s %10s\n", "-", "-");
        if (ferror(out)) rc = ad_set_error("%s: write error", fn);
    } else {
        ad_set_error("%s: %s", fn, ad_error());
    }
    nn_named_tensors_free(p);
    return rc;
}

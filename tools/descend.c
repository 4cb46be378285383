/* tools/descend.c - adcalc --descend and --grid: paths of gradient descent
 * on the expression, and the surface they run on.
 *
 * Minimises f(x1, ..., xn) from the point given on the command line with
 * one of the library's optimisers (nn/optim.h), printing the path:
 *
 *     w <- w - lr g                               sgd
 *     b <- 0.9 b + g,  w <- w - lr b              momentum (b = g at step 1)
 *     Adam (betas 0.9, 0.999, eps 1e-8)           adam
 *
 * Each step records f on a fresh tape, runs the backward pass, and lets
 * the optimiser update the variables, which are persistent leaves: the
 * loop every training program runs, on a function small enough to draw.
 * On a quadratic with Hessian eigenvalues lmin <= lmax, plain gradient
 * descent converges exactly when lr < 2/lmax, fastest at 2/(lmin + lmax);
 * the playground page and the guide let one watch that happen.
 */
#include "adcalc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nn/nn.h>

/* The method's optimiser over the variables, or NULL (message set). */
static nn_optim *make_optimiser(const char *method, double lr, const nn_named_tensors *p)
{
    if (strcmp(method, "sgd") == 0) {
        nn_sgd_options o = {lr, 0, 0, 0, false};
        return nn_sgd(p, &o);
    }
    if (strcmp(method, "momentum") == 0) {
        nn_sgd_options o = {lr, 0.9, 0, 0, false};
        return nn_sgd(p, &o);
    }
    if (strcmp(method, "adam") == 0) {
        nn_adam_options o = {lr, 0.9, 0.999, 1e-8, 0, false};
        return nn_adam(p, &o);
    }
    ad_set_error("adcalc: unknown --descend method '%s' (sgd, momentum or adam)", method);
    return NULL;
}

static void print_number(FILE *out, double v, bool json)
{
    char num[40];
    if (json && !isfinite(v)) {
        fputs("null", out);
        return;
    }
    adcalc_number(v, num, sizeof num);
    fputs(num, out);
}

/* One point of the path: the variables and f there. */
static void print_point(FILE *out, int step, int n, ad_tensor *const *w, double f, bool json)
{
    if (json) {
        fputs(step ? ", [" : "[", out);
        for (int i = 0; i < n; i++) {
            print_number(out, ad_item(w[i]), true);
            fputs(", ", out);
        }
        print_number(out, f, true);
        fputc(']', out);
        return;
    }
    fprintf(out, "%d", step);
    for (int i = 0; i < n; i++) {
        fputc(' ', out);
        print_number(out, ad_item(w[i]), false);
    }
    fputc(' ', out);
    print_number(out, f, false);
    fputc('\n', out);
}

int adcalc_descend(const adcalc_descent *d, int n, const char *const *names, const double *start,
                   ad_func f, void *ctx, FILE *out)
{
    int status = -1, step = 0;
    bool diverged = false;
    ad_tensor **w = calloc((size_t)n + 1, sizeof *w);
    nn_named_tensors *params = NULL;
    nn_optim *opt = NULL;
    ad_tape *tape = ad_tape_new(), *prev = NULL;
    if (!w || !tape) {
        ad_set_error("adcalc: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (!(w[i] = ad_scalar_tensor(NULL, AD_FLOAT64, start[i])) ||
            ad_set_requires_grad(w[i], true))
            goto done;
    if (!(params = nn_named_tensors_new(n, names, w)) ||
        !(opt = make_optimiser(d->method, d->lr, params)))
        goto done;

    prev = ad_tape_activate(tape);
    if (d->json) {
        fprintf(out, "{\"method\": \"%s\", \"lr\": ", d->method);
        print_number(out, d->lr, true);
        fprintf(out, ", \"steps\": %d, \"variables\": [", d->steps);
        for (int i = 0; i < n; i++) fprintf(out, "%s\"%s\"", i ? ", " : "", names[i]);
        fputs("], \"path\": [", out);
    } else {
        fputs("step", out);
        for (int i = 0; i < n; i++) fprintf(out, " %s", names[i]);
        fputs(" f\n", out);
    }
    /* Point k is where step k starts; the last line is the point after
     * all steps, with f there. */
    for (step = 0;; step++) {
        ad_tape_reset(tape);
        ad_tensor *y = f(w, n, ctx);
        if (!y) goto restore;
        double fy = ad_item(y);
        print_point(out, step, n, w, fy, d->json);
        bool finite = isfinite(fy);
        for (int i = 0; i < n; i++) finite &= isfinite(ad_item(w[i])) != 0;
        if (!finite) { /* diverged: the path is what matters, stop here */
            diverged = true;
            break;
        }
        if (step == d->steps) break;
        if (ad_requires_grad(y) && ad_backward(y, NULL, 0)) goto restore;
        if (nn_optim_step(opt) || nn_optim_zero_grad(opt)) goto restore;
    }
    if (d->json) fprintf(out, "], \"diverged\": %s}\n", diverged ? "true" : "false");
    else if (diverged) fprintf(out, "# diverged at step %d (lr too large?)\n", step);
    status = diverged ? 1 : 0;
restore:
    if (status < 0 && d->json) { /* the object closed, with the error in it */
        fputs("], \"error\": ", out);
        adcalc_json_string(out, ad_error() ? ad_error() : "internal error");
        fputs("}\n", out);
    }
    ad_tape_activate(prev);
done:
    nn_optim_free(opt);
    nn_named_tensors_free(params);
    for (int i = 0; w && i < n; i++) ad_tensor_free(w[i]);
    free(w);
    ad_tape_free(tape);
    return status;
}

/* ---- the surface: f on a grid ------------------------------------------------------- */

int adcalc_grid(int points, int n, const char *const *names, const double *lo, const double *hi,
                ad_func f, void *ctx, bool json, FILE *out)
{
    int axis[2] = {-1, -1}, naxes = 0;
    for (int i = 0; i < n; i++)
        if (lo[i] != hi[i]) {
            if (naxes == 2) {
                ad_set_error("adcalc: --grid spans at most two variables (%s, %s and %s have "
                             "ranges)", names[axis[0]], names[axis[1]], names[i]);
                return -1;
            }
            axis[naxes++] = i;
        }
    if (naxes == 0) {
        ad_set_error("adcalc: --grid needs a range NAME=LO:HI for one or two variables");
        return -1;
    }
    int nx = points, ny = naxes == 2 ? points : 1;
    ad_tensor **w = calloc((size_t)n + 1, sizeof *w);
    double *at = calloc((size_t)n + 1, sizeof *at);
    ad_tape *tape = ad_tape_new(), *prev = NULL;
    int status = -1;
    if (!w || !at || !tape) {
        ad_set_error("adcalc: out of memory");
        goto done;
    }
    memcpy(at, lo, (size_t)n * sizeof *at);
    prev = ad_tape_activate(tape);
    /* Grid point k of an axis is lo + k (hi - lo)/(points - 1). */
#define AXIS_AT(i, k) (lo[i] + (points > 1 ? (double)(k) * (hi[i] - lo[i]) / (points - 1) : 0.0))
    if (json) {
        fputs("{\"variables\": [", out);
        for (int a = 0; a < naxes; a++) fprintf(out, "%s\"%s\"", a ? ", " : "", names[axis[a]]);
        fputs("], \"axes\": [", out);
        for (int a = 0; a < naxes; a++) {
            fputs(a ? ", [" : "[", out);
            for (int k = 0; k < (a ? ny : nx); k++) {
                if (k) fputs(", ", out);
                print_number(out, AXIS_AT(axis[a], k), true);
            }
            fputc(']', out);
        }
        fputs("], \"f\": [", out);
    } else {
        fprintf(out, "# %s%s%s f\n", names[axis[0]], naxes == 2 ? " " : "",
                naxes == 2 ? names[axis[1]] : "");
    }
    /* Rows of constant second variable, as gnuplot's splot reads them
     * (a blank line between rows); JSON f[j][i] = f(x_i, y_j). */
    for (int j = 0; j < ny; j++) {
        if (naxes == 2) at[axis[1]] = AXIS_AT(axis[1], j);
        if (json) fputs(j ? ", [" : "[", out);
        for (int i = 0; i < nx; i++) {
            at[axis[0]] = AXIS_AT(axis[0], i);
            ad_tape_reset(tape);
            for (int v = 0; v < n; v++)
                if (!(w[v] = ad_scalar_tensor(tape, AD_FLOAT64, at[v]))) goto restore;
            ad_tensor *y = f(w, n, ctx);
            if (!y) goto restore;
            if (json) {
                if (i) fputs(", ", out);
                print_number(out, ad_item(y), true);
            } else {
                print_number(out, at[axis[0]], false);
                if (naxes == 2) {
                    fputc(' ', out);
                    print_number(out, at[axis[1]], false);
                }
                fputc(' ', out);
                print_number(out, ad_item(y), false);
                fputc('\n', out);
            }
        }
        if (json) fputc(']', out);
        else if (naxes == 2) fputc('\n', out);
    }
#undef AXIS_AT
    if (json) fputs("]}\n", out);
    status = 0;
restore:
    ad_tape_activate(prev);
done:
    ad_tape_free(tape);
    free(w);
    free(at);
    return status;
}

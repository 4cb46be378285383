/* tools/descend.c - adcalc --descend: gradient descent on the expression.
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
    ad_tape_activate(prev);
done:
    nn_optim_free(opt);
    nn_named_tensors_free(params);
    for (int i = 0; w && i < n; i++) ad_tensor_free(w[i]);
    free(w);
    ad_tape_free(tape);
    return status;
}

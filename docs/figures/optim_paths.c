/* docs/figures/optim_paths.c - the paths of the guide's §7 optimisers on
 * Rosenbrock's function f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, from the
 * same start (-1.5, 2) with the same settings as the guide's program:
 * SGD (lr 1e-3), SGD with momentum 0.9 (lr 1e-3) and Adam (lr 0.05), 2000
 * steps each, gradients by the library's backward pass, steps by nn's
 * optimisers.
 *
 *     optim_paths OUTDIR      writes OUTDIR/optim_paths.dat
 *
 * Three blocks (gnuplot's index 0, 1, 2), each a line "x y f" per step. */
#include <nn/nn.h>
#include <stdio.h>

typedef nn_optim *(*make_optim)(const nn_named_tensors *params, const void *options);
static nn_optim *sgd(const nn_named_tensors *p, const void *o) { return nn_sgd(p, o); }
static nn_optim *adam(const nn_named_tensors *p, const void *o) { return nn_adam(p, o); }

static int path(FILE *out, const char *title, make_optim make, const void *options)
{
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), (double[]){-1.5, 2.0});
    ad_set_requires_grad(w, true);
    nn_named_tensors *params = nn_named_tensors_new(1, NULL, &w);
    nn_optim *opt = make(params, options);
    ad_tape *tape = ad_tape_new();
    if (!opt || !tape) return -1;
    ad_tape_activate(tape);
    fprintf(out, "# %s\n", title);
    for (int step = 0; step <= 2000; step++) {
        ad_tensor *x = ad_narrow(w, 0, 0, 1), *y = ad_narrow(w, 0, 1, 1);
        ad_tensor *f = ad_sum(ad_add(ad_square(ad_rsub_scalar(x, 1)),
                                     ad_mul_scalar(ad_square(ad_sub(y, ad_square(x))), 100)),
                              NULL, 0, false);
        double v[2];
        ad_to_array(w, v);
        fprintf(out, "%.9g %.9g %.9g\n", v[0], v[1], ad_item(f));
        nn_optim_zero_grad(opt);
        if (!f || ad_backward(f, NULL, 0) || nn_optim_step(opt)) return -1;
        ad_tape_reset(tape);
    }
    fprintf(out, "\n\n");
    ad_tape_free(tape);
    nn_optim_free(opt);
    nn_named_tensors_free(params);
    ad_tensor_free(w);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: optim_paths OUTDIR\n");
        return 2;
    }
    char name[4096];
    snprintf(name, sizeof name, "%s/optim_paths.dat", argv[1]);
    FILE *out = fopen(name, "w");
    if (!out || path(out, "SGD", sgd, &(nn_sgd_options){.lr = 1e-3}) ||
        path(out, "momentum 0.9", sgd, &(nn_sgd_options){.lr = 1e-3, .momentum = 0.9}) ||
        path(out, "Adam", adam, &(nn_adam_options){0.05, 0.9, 0.999, 1e-8, 0, false}) ||
        fclose(out)) {
        fprintf(stderr, "optim_paths: %s\n", ad_error() ? ad_error() : "cannot write");
        return 1;
    }
    return 0;
}

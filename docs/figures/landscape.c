/* docs/figures/landscape.c - minima, a saddle point and a plateau, for the
 * guide's §7: gradient descent on
 *
 *     f(x, y) = tanh((x^2 - 1)^2 + y^2)
 *
 * which has two minima, f = 0 at (±1, 0), a saddle point at (0, 0)
 * (f = tanh 1: a minimum along y, a maximum along x) and, far out, a
 * plateau where tanh has saturated and the gradient all but vanishes.
 * The same starts and steps as the guide's program; gradients by the
 * library's reverse mode (the scalar API).
 *
 *     landscape OUTDIR      writes OUTDIR/landscape.dat: one block per
 *                           start (gnuplot's index), a line "x y f" per step */
#include <autodiff/autodiff.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: landscape OUTDIR\n");
        return 2;
    }
    const double starts[4][2] = {{0.3, 1.5}, {0.0, 1.5}, {1e-3, 1.5}, {2.2, 1.6}};
    char name[4096];
    snprintf(name, sizeof name, "%s/landscape.dat", argv[1]);
    FILE *out = fopen(name, "w");
    if (!out) {
        perror(name);
        return 1;
    }
    ad_tape *tape = ad_tape_new();
    for (int s = 0; s < 4; s++) {
        double w[2] = {starts[s][0], starts[s][1]};
        for (int step = 0; step <= 300; step++) {
            ad_tape_reset(tape);
            ad_scalar x = ad_scalar_var(tape, w[0]), y = ad_scalar_var(tape, w[1]);
            ad_scalar u = ad_sadd_c(ad_ssquare(x), -1.0);
            ad_scalar f = ad_stanh(ad_sadd(ad_ssquare(u), ad_ssquare(y)));
            if (ad_scalar_backward(f)) {
                fprintf(stderr, "landscape: %s\n", ad_error());
                return 1;
            }
            fprintf(out, "%.9g %.9g %.9g\n", w[0], w[1], ad_scalar_value(f));
            w[0] -= 0.1 * ad_scalar_grad(x); /* gradient descent, eta = 0.1 */
            w[1] -= 0.1 * ad_scalar_grad(y);
        }
        fprintf(out, "\n\n");
    }
    ad_tape_free(tape);
    return fclose(out) ? 1 : 0;
}

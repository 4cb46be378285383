/* docs/figures/lr_paths.c - the paths of gradient descent on the guide's
 * §3 valley E(w) = ½ (w1² + 10 w2²) from (1, 1), with the learning rates
 * of the guide's program (0.01, 0.1, 2/11, 0.19 and 0.21), the gradient
 * from the library's reverse mode (the scalar API), 30 steps each.
 *
 *     lr_paths OUTDIR      writes OUTDIR/lr_paths.dat: one block per
 *                          learning rate (gnuplot's index), "w1 w2 E" per step */
#include <autodiff/autodiff.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: lr_paths OUTDIR\n");
        return 2;
    }
    const double etas[] = {0.01, 0.1, 2.0 / 11, 0.19, 0.21};
    char name[4096];
    snprintf(name, sizeof name, "%s/lr_paths.dat", argv[1]);
    FILE *out = fopen(name, "w");
    if (!out) {
        perror(name);
        return 1;
    }
    ad_tape *tape = ad_tape_new();
    for (int k = 0; k < 5; k++) {
        double w[2] = {1.0, 1.0};
        fprintf(out, "# eta = %g\n", etas[k]);
        for (int step = 0; step <= 30; step++) {
            ad_tape_reset(tape);
            ad_scalar w1 = ad_scalar_var(tape, w[0]), w2 = ad_scalar_var(tape, w[1]);
            ad_scalar E = ad_smul_c(ad_sadd(ad_ssquare(w1), ad_smul_c(ad_ssquare(w2), 10)), 0.5);
            if (ad_scalar_backward(E)) {
                fprintf(stderr, "lr_paths: %s\n", ad_error());
                return 1;
            }
            fprintf(out, "%.9g %.9g %.9g\n", w[0], w[1], ad_scalar_value(E));
            w[0] -= etas[k] * ad_scalar_grad(w1);
            w[1] -= etas[k] * ad_scalar_grad(w2);
        }
        fprintf(out, "\n\n");
    }
    ad_tape_free(tape);
    return fclose(out) ? 1 : 0;
}

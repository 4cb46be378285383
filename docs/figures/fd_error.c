/* docs/figures/fd_error.c - the error of finite differences against the
 * step h, for the guide's §4 (gradient checking): f(x) = sin(x) e^x at
 * x = 1, whose exact derivative the library's reverse mode gives.
 *
 *     fd_error OUTDIR      writes OUTDIR/fd_error.dat: "h forward central"
 *
 * h runs from 1 down to 1e-16 in steps of 10^(1/8); the errors are
 * |difference quotient - f'(1)|. */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

static double f(double x) { return sin(x) * exp(x); }

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fd_error OUTDIR\n");
        return 2;
    }
    ad_tape *tape = ad_tape_new();
    ad_scalar x = ad_scalar_var(tape, 1.0);
    if (ad_scalar_backward(ad_smul(ad_ssin(x), ad_sexp(x)))) {
        fprintf(stderr, "fd_error: %s\n", ad_error());
        return 1;
    }
    double exact = ad_scalar_grad(x); /* (sin 1 + cos 1) e */
    ad_tape_free(tape);
    char name[4096];
    snprintf(name, sizeof name, "%s/fd_error.dat", argv[1]);
    FILE *out = fopen(name, "w");
    if (!out) {
        perror(name);
        return 1;
    }
    fprintf(out, "# h  |forward - f'|  |central - f'|   f'(1) = %.17g\n", exact);
    for (int k = 0; k <= 128; k++) {
        double h = pow(10.0, -k / 8.0);
        double fwd = (f(1 + h) - f(1)) / h, cen = (f(1 + h) - f(1 - h)) / (2 * h);
        /* an error of exactly 0 has no logarithm: show it at 1e-17 */
        fprintf(out, "%.6e %.6e %.6e\n", h, fmax(fabs(fwd - exact), 1e-17),
                fmax(fabs(cen - exact), 1e-17));
    }
    return fclose(out) ? 1 : 0;
}

/* docs/examples/hvp.c - a Hessian-vector product without the Hessian.
 *
 * For f with n inputs the Hessian has n^2 entries, too many to form when n
 * is large.  But H v = d/dx <grad f(x), v>: differentiate the gradient
 * (recorded with AD_CREATE_GRAPH) once more, in the direction v.  That costs
 * about two gradients, whatever n is - the basis of Newton-CG and of
 * curvature probes in optimisation.
 *
 * Here f(x) = sum_i log(1 + x_i^2) + (sum_i x_i)^2 / 2, whose Hessian is
 * diag((2 - 2 x_i^2) / (1 + x_i^2)^2) + 1 1^T, so the result can be checked
 * by hand for n = 100000. */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static ad_tensor *f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *x = in[0];
    ad_tensor *bumps = ad_sum(ad_log(ad_add_scalar(ad_square(x), 1.0)), NULL, 0, false);
    ad_tensor *s = ad_sum(x, NULL, 0, false);
    return ad_add(bumps, ad_mul_scalar(ad_square(s), 0.5));
}

int main(void)
{
    enum { N = 100000 };
    ad_tape *tape = ad_tape_new();
    ad_tensor *x = ad_linspace(tape, AD_FLOAT64, -2, 2, N);
    ad_tensor *v = ad_linspace(tape, AD_FLOAT64, 1, -1, N), *hv;
    if (ad_hvp(tape, f, NULL, x, v, &hv, 0)) {
        fprintf(stderr, "%s\n", ad_error());
        return 1;
    }
    const double *xs = ad_data(x), *vs = ad_data(v), *h = ad_data(hv);
    double vsum = 0, worst = 0;
    for (int i = 0; i < N; i++) vsum += vs[i];
    for (int i = 0; i < N; i++) {
        double d = (2 - 2 * xs[i] * xs[i]) / pow(1 + xs[i] * xs[i], 2);
        worst = fmax(worst, fabs(h[i] - (d * vs[i] + vsum)));
    }
    printf("H v for n = %d: (H v)[0] = %.6f, (H v)[n/2] = %.6f\n", N, h[0], h[N / 2]);
    printf("largest difference from the closed form: %.3g\n", worst);
    ad_tape_free(tape);
    return worst < 1e-9 ? 0 : 1;
}

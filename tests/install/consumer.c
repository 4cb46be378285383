/* tests/install/consumer.c - a program outside the tree that uses the
 * installed library the way a user would: the public header found through
 * pkg-config, one gradient computed and checked.
 *
 * f(x) = sum_i x_i^2 e^(x_i), so df/dx_i = (2 x_i + x_i^2) e^(x_i).
 * x is drawn with ad_rand so that the random-number code, which uses the
 * OpenMP runtime when the library was built with it, is linked in too. */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

int main(void)
{
    double xs[3], g[3];
    ad_rng rng;
    ad_rng_init(&rng, 42);
    ad_tape *tape = ad_tape_new();
    ad_tensor *x = ad_rand(tape, &rng, AD_FLOAT64, AD_SHAPE(3), -2.0, 2.0);
    if (!x || ad_to_array(x, xs) || ad_set_requires_grad(x, true)) goto fail;
    ad_tensor *f = ad_sum(ad_mul(ad_mul(x, x), ad_exp(x)), NULL, 0, false);
    if (!f || ad_backward(f, NULL, 0)) goto fail;
    if (ad_to_array(ad_tensor_grad(x), g)) goto fail;
    for (int i = 0; i < 3; i++) {
        double want = (2 * xs[i] + xs[i] * xs[i]) * exp(xs[i]);
        if (fabs(g[i] - want) > 1e-12 * fmax(1.0, fabs(want))) {
            fprintf(stderr, "consumer: df/dx[%d] = %.17g, want %.17g\n", i, g[i], want);
            ad_tape_free(tape);
            return 1;
        }
    }
    printf("consumer: autodiff %s ok\n", AUTODIFF_VERSION);
    ad_tape_free(tape);
    return 0;
fail:
    fprintf(stderr, "consumer: %s\n", ad_error() ? ad_error() : "unknown error");
    ad_tape_free(tape);
    return 1;
}

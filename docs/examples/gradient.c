/* docs/examples/gradient.c - reverse-mode AD on one small function.
 *
 *     f(x) = sum_i x_i sin x_i
 *
 * Running f records each op (sin, mul, sum) on a tape.  ad_backward then
 * walks the tape from f back to x applying each op's derivative, the chain
 * rule in reverse: the seed df/df = 1 goes through sum (which passes it to
 * every term), then through mul and sin.  By the product rule the answer is
 *
 *     df/dx_i = sin x_i + x_i cos x_i
 *
 * which the program works out by hand and prints beside the library's, and
 * exits with status 1 if the two disagree.
 */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

#define N 5

int main(void)
{
    const double xs[N] = {-2.0, -0.5, 0.0, 1.0, 3.0};

    /* Everything made for this computation lives on one tape, freed at the
     * end in one go. */
    ad_tape *tape = ad_tape_new();

    /* x is the input we differentiate with respect to: a leaf that
     * requires grad (torch.tensor(xs, requires_grad=True)).  Ops on it are
     * recorded from here on. */
    ad_tensor *x = ad_leaf(tape, AD_FLOAT64, AD_SHAPE(N), xs);
    if (!x) goto fail;

    /* Errors propagate as NULL through nested calls, so one check after
     * the expression is enough; ad_error() says which op failed and why. */
    ad_tensor *f = ad_sum(ad_mul(x, ad_sin(x)), NULL, 0, false);
    if (!f) goto fail;

    /* f has one element, so the seed may be left NULL (it is 1). */
    if (ad_backward(f, NULL, 0)) goto fail;

    ad_tensor *grad = ad_tensor_grad(x);
    double g[N];
    if (ad_to_array(grad, g)) goto fail;

    printf("x      = ");
    ad_print(x, stdout);
    printf("f(x)   = ");
    ad_print(f, stdout);
    printf("df/dx  = ");
    ad_print(grad, stdout);

    printf("\n%8s  %22s  %22s  %9s\n", "x", "autodiff df/dx", "sin x + x cos x", "|diff|");
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double by_hand = sin(xs[i]) + xs[i] * cos(xs[i]);
        double diff = fabs(g[i] - by_hand);
        if (diff > worst) worst = diff;
        printf("%8.4f  %22.17f  %22.17f  %9.2e\n", xs[i], g[i], by_hand, diff);
    }
    /* Both sides evaluate the same formula in double precision; only the
     * order of rounding may differ. */
    int ok = worst <= 1e-14;
    printf("\n%s: largest difference %.2e\n", ok ? "agree" : "DISAGREE", worst);
    ad_tape_free(tape);
    return ok ? 0 : 1;

fail:
    fprintf(stderr, "gradient: %s\n", ad_error());
    ad_tape_free(tape);
    return 1;
}

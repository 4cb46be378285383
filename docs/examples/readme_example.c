/* docs/examples/readme_example.c - the example of README.md, kept here so
 * that it is compiled and run by the test suite.  Keep the two identical. */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

int main(void)
{
    ad_tape *tape = ad_tape_new();
    double xs[3] = {-1.0, 0.0, 2.0};
    ad_tensor *x = ad_leaf(tape, AD_FLOAT64, AD_SHAPE(3), xs); /* requires grad */

    /* y = sum_i x_i e^(x_i), recorded on the tape as it is computed */
    ad_tensor *y = ad_sum(ad_mul(x, ad_exp(x)), NULL, 0, false);
    if (!y || ad_backward(y, NULL, 0) != 0) {
        fprintf(stderr, "error: %s\n", ad_error());
        return 1;
    }
    ad_print(ad_tensor_grad(x), stdout); /* dy/dx_i = (1 + x_i) e^(x_i) */

    double g[3];
    ad_to_array(ad_tensor_grad(x), g);
    for (int i = 0; i < 3; i++)
        if (fabs(g[i] - (1 + xs[i]) * exp(xs[i])) > 1e-12) return 1;
    ad_tape_free(tape);
    return 0;
}

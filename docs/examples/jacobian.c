/* docs/examples/jacobian.c - the Jacobian of a small vector function.
 *
 * f(r, theta) = (r cos theta, r sin theta) maps polar to Cartesian
 * coordinates; its Jacobian [[cos t, -r sin t], [sin t, r cos t]] has
 * determinant r, the familiar area element r dr dtheta.  ad_jacobian builds
 * it row by row in reverse mode or column by column in forward mode; both
 * are printed and must agree. */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

static ad_tensor *polar(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *r = ad_narrow(in[0], 0, 0, 1), *t = ad_narrow(in[0], 0, 1, 1);
    ad_tensor *xy[2] = {ad_mul(r, ad_cos(t)), ad_mul(r, ad_sin(t))};
    return ad_concat(xy, 2, 0);
}

int main(void)
{
    ad_tape *tape = ad_tape_new();
    const double pi = acos(-1.0);
    ad_tensor *p = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(2), (double[]){2.0, pi / 6});
    ad_tensor *rev, *fwd;
    if (ad_jacobian(tape, polar, NULL, 1, &p, &rev, AD_JACOBIAN_REVERSE, 0) ||
        ad_jacobian(tape, polar, NULL, 1, &p, &fwd, AD_JACOBIAN_FORWARD, 0)) {
        fprintf(stderr, "%s\n", ad_error());
        return 1;
    }
    printf("Jacobian of (r cos t, r sin t) at r = 2, t = pi/6, reverse mode:\n");
    ad_print(rev, stdout);
    printf("forward mode:\n");
    ad_print(fwd, stdout);
    double j[4], k[4];
    ad_to_array(rev, j);
    ad_to_array(fwd, k);
    double det = j[0] * j[3] - j[1] * j[2];
    printf("determinant = %.12f (r = 2)\n", det);
    int ok = fabs(det - 2) < 1e-12;
    for (int i = 0; i < 4; i++) ok &= fabs(j[i] - k[i]) < 1e-12;
    ad_tape_free(tape);
    return ok ? 0 : 1;
}

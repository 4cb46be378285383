/* docs/examples/newton_rosenbrock.c - Newton's method with ad_hessian.
 *
 * Newton's method minimises f by solving H(x) d = -grad f(x) and stepping
 * x <- x + d: it models f near x by its second-order Taylor expansion and
 * jumps to that model's minimum.  Near a minimum it converges
 * quadratically (the number of correct digits doubles each step), which is
 * why it is worth having second derivatives.  The engine gives both from
 * the one recorded function: the gradient by a backward pass, the Hessian
 * by differentiating that backward pass again.
 *
 * The extended Rosenbrock function has its minimum f = 0 at x = (1, ..., 1)
 * at the end of a long curved valley, where plain gradient descent crawls. */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

#define N 4

/* f(x) = sum over pairs (a, b) = (x[2i], x[2i+1]) of 100 (b - a^2)^2 + (1 - a)^2 */
static ad_tensor *rosenbrock(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *x = in[0];
    ad_tensor *a = ad_slice(x, 0, 0, N, 2), *b = ad_slice(x, 0, 1, N, 2);
    ad_tensor *valley = ad_mul_scalar(ad_square(ad_sub(b, ad_square(a))), 100.0);
    ad_tensor *slope = ad_square(ad_rsub_scalar(a, 1.0));
    return ad_sum(ad_add(valley, slope), NULL, 0, false);
}

/* Solves h d = r in place (d overwrites r) by Gaussian elimination with
 * partial pivoting; returns -1 when h is singular. */
static int solve(double h[N][N], double r[N])
{
    for (int c = 0; c < N; c++) {
        int p = c;
        for (int i = c + 1; i < N; i++)
            if (fabs(h[i][c]) > fabs(h[p][c])) p = i;
        if (fabs(h[p][c]) < 1e-300) return -1;
        for (int j = 0; j < N; j++) {
            double t = h[c][j];
            h[c][j] = h[p][j];
            h[p][j] = t;
        }
        double t = r[c];
        r[c] = r[p];
        r[p] = t;
        for (int i = c + 1; i < N; i++) {
            double f = h[i][c] / h[c][c];
            for (int j = c; j < N; j++) h[i][j] -= f * h[c][j];
            r[i] -= f * r[c];
        }
    }
    for (int i = N - 1; i >= 0; i--) {
        for (int j = i + 1; j < N; j++) r[i] -= h[i][j] * r[j];
        r[i] /= h[i][i];
    }
    return 0;
}

int main(void)
{
    double x[N] = {-1.2, 1.0, -1.2, 1.0};
    ad_tape *tape = ad_tape_new();
    for (int it = 0; it < 50; it++) {
        ad_tensor *xt = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(N), x);
        ad_tensor *grad, *value, *hess;
        if (ad_grad(tape, rosenbrock, NULL, 1, &xt, &grad, &value, 0) ||
            ad_hessian(tape, rosenbrock, NULL, xt, &hess, 0)) {
            fprintf(stderr, "%s\n", ad_error());
            return 1;
        }
        double g[N], h[N][N], gnorm = 0;
        ad_to_array(grad, g);
        ad_to_array(hess, &h[0][0]);
        for (int i = 0; i < N; i++) gnorm += g[i] * g[i];
        gnorm = sqrt(gnorm);
        printf("step %2d  f = %-12.6g |grad f| = %-12.6g x = (%.6f, %.6f, %.6f, %.6f)\n", it,
               ad_item(value), gnorm, x[0], x[1], x[2], x[3]);
        if (gnorm < 1e-10) break;
        for (int i = 0; i < N; i++) g[i] = -g[i];
        if (solve(h, g)) {
            fprintf(stderr, "singular Hessian\n");
            return 1;
        }
        for (int i = 0; i < N; i++) x[i] += g[i];
        ad_tape_reset(tape); /* each step records afresh; memory is reused */
    }
    ad_tape_free(tape);
    for (int i = 0; i < N; i++)
        if (fabs(x[i] - 1) > 1e-8) {
            fprintf(stderr, "did not converge to (1,1,1,1)\n");
            return 1;
        }
    printf("converged to the minimum (1, 1, 1, 1)\n");
    return 0;
}

/* docs/examples/ffi_callback.c - a recorded function as plain C callbacks.
 *
 * Many C libraries (optimisers, ODE solvers, root finders) take the
 * function to work on as pointers like
 *
 *     double f(const double *x, void *params);
 *     void df(const double *x, void *params, double *g);
 *
 * and know nothing of automatic differentiation.  ad_callback_new turns a
 * function written with this library's ops into exactly such pointers
 * (libffi closures), so the gradient comes for free.
 *
 * Here the "library" is minimize() below, a gradient descent that could
 * have come from anywhere; it minimises the Rosenbrock function
 *     (a - x)^2 + b (y - x^2)^2,   a = 1, b = 100, minimum at (1, 1),
 * from the classic start (-1.2, 1).  a and b travel in `params`, as they
 * would with GSL.  The program exits with status 1 unless it finds (1, 1).
 */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

/* ---- someone else's code: only function pointers cross this line ---- */
typedef double (*objective)(const double *x, void *params);
typedef void (*gradient)(const double *x, void *params, double *g);

/* Gradient descent with Barzilai-Borwein step lengths, each halved until
 * it decreases f enough (Armijo).  Returns the iterations used or -1. */
static int minimize(objective f, gradient df, void *params, double *x, int n, int maxit)
{
    double g[16], xn[16], gn[16], t = 1e-3, fx = f(x, params);
    df(x, params, g);
    for (int it = 0; it < maxit; it++) {
        double gg = 0, fn, sy = 0, ss = 0;
        for (int i = 0; i < n; i++) gg += g[i] * g[i];
        if (gg < 1e-20) return it;
        for (;;) {
            for (int i = 0; i < n; i++) xn[i] = x[i] - t * g[i];
            if ((fn = f(xn, params)) <= fx - 1e-4 * t * gg || t < 1e-20) break;
            t *= 0.5;
        }
        df(xn, params, gn);
        for (int i = 0; i < n; i++) {
            sy += (xn[i] - x[i]) * (gn[i] - g[i]);
            ss += (xn[i] - x[i]) * (xn[i] - x[i]);
            x[i] = xn[i], g[i] = gn[i];
        }
        fx = fn;
        t = sy > 0 ? ss / sy : 1e-3;
    }
    return -1;
}

/* ---- our side: the function, written with the library's ops ---- */
typedef struct {
    double a, b;
} rosenbrock_params;

/* With AD_CALLBACK_VECTOR the inputs arrive as one [2] tensor; the
 * callback's ctx is whatever params the caller passed. */
static ad_tensor *rosenbrock(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    const rosenbrock_params *p = ctx;
    ad_tensor *x = ad_narrow(in[0], 0, 0, 1), *y = ad_narrow(in[0], 0, 1, 1);
    ad_tensor *r = ad_add(ad_square(ad_rsub_scalar(x, p->a)),
                          ad_mul_scalar(ad_square(ad_sub(y, ad_square(x))), p->b));
    return ad_sum(r, NULL, 0, false);
}

int main(void)
{
    /* Recorded once on the first call, then replayed: the function has no
     * data-dependent C branches, so the frozen tape stays right. */
    ad_callback *cb = ad_callback_new(rosenbrock, 2, AD_CALLBACK_VECTOR | AD_CALLBACK_REPLAY);
    if (!cb) {
        fprintf(stderr, "error: %s\n", ad_error());
        return 1;
    }
    rosenbrock_params p = {1.0, 100.0};
    double x[2] = {-1.2, 1.0};
    int its = minimize(ad_callback_value(cb), ad_callback_gradient(cb), &p, x, 2, 10000);
    double g[2], v = ad_callback_value_gradient(cb)(x, &p, g);
    printf("minimum after %d iterations: f(%.8f, %.8f) = %.3g, |grad| = %.3g\n", its, x[0], x[1],
           v, hypot(g[0], g[1]));
    ad_callback_free(cb); /* the function pointers die with it */
    int ok = its >= 0 && fabs(x[0] - 1) < 1e-6 && fabs(x[1] - 1) < 1e-6;
    printf(ok ? "found (1, 1)\n" : "did not find (1, 1)\n");
    return ok ? 0 : 1;
}

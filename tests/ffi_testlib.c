/* tests/ffi_testlib.c - a shared library for test_adcheck: functions with a
 * correct and a deliberately wrong derivative in each form adcheck checks.
 * Each wrong one is wrong in exactly one component, by at least 0.15
 * anywhere in [-1, 1]^n (so at every test point), and the report must flag
 * that component and no other:
 *   scalar double, --grad      sd_grad / sd_grad_bad          (df/dx1)
 *   scalar double, --partials  sd_dx,sd_dy,sd_dz / sd_dz_bad   (df/dx2)
 *   scalar float, --grad       sf_grad / sf_grad_bad          (df/dx0)
 *   vector double, --grad      vd_grad / vd_grad_bad          (df/dx[2])
 *   vector float, --grad       vf_grad / vf_grad_bad          (df/dx[0])
 * and functions for adcheck's safety nets (the end of the file): domain
 * edges, infinite derivatives, a function that does not vary, a data
 * symbol. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

/* sd(x, y, z) = y sin x + x z^2 + e^(y/2) */
double sd(double x, double y, double z) { return y * sin(x) + x * z * z + exp(0.5 * y); }
double sd_dx(double x, double y, double z) { return y * cos(x) + z * z; }
double sd_dy(double x, double y, double z) { (void)z; return sin(x) + 0.5 * exp(0.5 * y); }
double sd_dz(double x, double y, double z) { (void)y; return 2 * x * z; }
/* the factor 2 forgotten and a stray constant: off by 2 - x z */
double sd_dz_bad(double x, double y, double z) { (void)y; return x * z + 2; }
void sd_grad(double x, double y, double z, double *g)
{
    g[0] = sd_dx(x, y, z), g[1] = sd_dy(x, y, z), g[2] = sd_dz(x, y, z);
}
/* the chain rule's 1/2 forgotten in d e^(y/2) / dy */
void sd_grad_bad(double x, double y, double z, double *g)
{
    sd_grad(x, y, z, g);
    g[1] = sin(x) + exp(0.5 * y);
}

/* sf(x, y) = x^2 y + cos y, in float */
float sf(float x, float y) { return x * x * y + cosf(y); }
void sf_grad(float x, float y, float *g)
{
    g[0] = 2 * x * y;
    g[1] = x * x - sinf(y);
}
/* d(x^2 y)/dx written as x y + 2 */
void sf_grad_bad(float x, float y, float *g)
{
    sf_grad(x, y, g);
    g[0] = x * y + 2;
}

/* vd(x) = sum_k (k+1) x_k^2 + x_0 x_(n-1) */
double vd(const double *x, int n)
{
    double s = x[0] * x[n - 1];
    for (int k = 0; k < n; k++) s += (k + 1) * x[k] * x[k];
    return s;
}
void vd_grad(const double *x, int n, double *g)
{
    for (int k = 0; k < n; k++) g[k] = 2 * (k + 1) * x[k];
    g[0] += x[n - 1];
    g[n - 1] += x[0];
}
/* an off-by-one weight in component 2 and a constant slip */
void vd_grad_bad(const double *x, int n, double *g)
{
    vd_grad(x, n, g);
    if (n > 2) g[2] = 2 * 2 * x[2] + 3;
}

/* vf(x) = sum_k x_k sin x_k, in float, with a size_t length */
float vf(const float *x, size_t n)
{
    float s = 0;
    for (size_t k = 0; k < n; k++) s += x[k] * sinf(x[k]);
    return s;
}
void vf_grad(const float *x, size_t n, float *g)
{
    for (size_t k = 0; k < n; k++) g[k] = sinf(x[k]) + x[k] * cosf(x[k]);
}
/* the product rule's first term forgotten in component 0, plus 1 */
void vf_grad_bad(const float *x, size_t n, float *g)
{
    vf_grad(x, n, g);
    if (n > 0) g[0] = x[0] * cosf(x[0]) + 1;
}

/* ---- domain edges: log and sqrt near 0 ----
 * At x = 1e-6 the default step 1e-6 reaches the edge (log(0) = -inf made
 * the numeric derivative +inf, which once passed every claim) and at 1e-7
 * crosses it (sqrt of a negative: NaN); smaller steps must rescue the right
 * derivative and still catch the wrong one (off by a factor 2 or 1.2). */
double ln_(double x) { return log(x); }
double ln_d(double x) { return 1 / x; }
double ln_d_bad(double x) { return 2 / x; }
double rt(double x) { return sqrt(x); }
double rt_d(double x) { return 0.5 / sqrt(x); }
double rt_d_bad(double x) { return 0.6 / sqrt(x); }
float rtf(float x) { return sqrtf(x); }
float rtf_d(float x) { return 0.5f / sqrtf(x); }

/* ---- f rounds coarser than double ----
 * tw32 computes x in float: steps below float's resolution at x leave
 * f(x + h) = f(x - h), whose difference 0 agreed with a claimed 0 (the
 * retries went on while the double rounding bound stayed small). */
double tw32(double x, double y) { return (double)((float)x * 2.0f) + y; }
double tw32_dx_bad(double x, double y) { (void)x, (void)y; return 0; }
double tw32_dx(double x, double y) { (void)x, (void)y; return 2; }
double tw32_dy(double x, double y) { (void)x, (void)y; return 1; }

/* ---- infinite derivatives ----
 * cbrt at 0: the derivative is +inf, any difference quotient finite.
 * wall jumps to +inf at 0, so every difference quotient there is +inf;
 * its claimed derivative (0, right almost everywhere) must not pass.
 * steep(x) = 1e600 x overflows for any x != 0: the claimed +inf and the
 * numeric +inf at 0 agree, but nothing finite was compared. */
double cbrt_(double x) { return cbrt(x); }
double cbrt_d(double x) { return 1 / (3 * cbrt(x) * cbrt(x)); }
double wall(double x) { return x > 0 ? INFINITY : 0.0; }
double wall_d(double x) { (void)x; return 0; }
double steep(double x) { return x * 1e300 * 1e300; }
double steep_d(double x) { (void)x; return INFINITY; }
double nan_d(double x) { (void)x; return NAN; }

/* ---- nothing to check ----
 * flat ignores its arguments: every claimed and numeric derivative is 0. */
double flat(double x, double y) { (void)x, (void)y; return 3; }
void flat_grad(double x, double y, double *g) { (void)x, (void)y; g[0] = g[1] = 0; }
/* sd_grad, but accumulating into its output: right when it is zeroed */
void sd_grad_acc(double x, double y, double z, double *g)
{
    g[0] += sd_dx(x, y, z), g[1] += sd_dy(x, y, z), g[2] += sd_dz(x, y, z);
}
/* a vector gradient that stores one value past the n it was given */
void vd_grad_over(const double *x, int n, double *g)
{
    vd_grad(x, n, g);
    g[n] = 0;
}

/* a function that dies (an assertion in someone's library) beyond 0.25 */
double dies(double x)
{
    if (x > 0.25) abort();
    return x * x;
}
double dies_d(double x) { return 2 * x; }

/* a function that ends the process (exit(0) in someone's library) beyond
 * 0.25, and a wrong derivative for it (5x for 2x) */
double quits(double x)
{
    if (x > 0.25) exit(0);
    return x * x;
}
double quits_d(double x) { return 5 * x; }

/* a data symbol: calling it would jump into non-executable memory */
const double sd_table[3] = {1, 2, 3};

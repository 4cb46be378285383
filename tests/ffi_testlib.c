/* tests/ffi_testlib.c - a shared library for test_adcheck: functions with a
 * correct and a deliberately wrong derivative in each form adcheck checks.
 * Each wrong one is wrong in exactly one component, by at least 0.15
 * anywhere in [-1, 1]^n (so at every test point), and the report must flag
 * that component and no other:
 *   scalar double, --grad      sd_grad / sd_grad_bad          (df/dx1)
 *   scalar double, --partials  sd_dx,sd_dy,sd_dz / sd_dz_bad   (df/dx2)
 *   scalar float, --grad       sf_grad / sf_grad_bad          (df/dx0)
 *   vector double, --grad      vd_grad / vd_grad_bad          (df/dx[2])
 *   vector float, --grad       vf_grad / vf_grad_bad          (df/dx[0]) */
#include <math.h>
#include <stddef.h>

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

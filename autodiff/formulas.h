/* autodiff/formulas.h - values and derivatives of the elementary functions
 * where they need more care than the C library call; never installed.
 *
 * One place for the numerically careful forms and the conventions at the
 * edges, so that the tensor kernels (ops_pointwise.c) and the scalar tape
 * (scalar.c) compute bit-identical values and follow one rule:
 *
 *   sigmoid  from e = e^-|x| <= 1, so nothing overflows: s = 1/(1+e) for
 *            x >= 0, e/(1+e) below (a NaN x takes that branch and gives
 *            NaN).  s' = s (1-s) without the subtraction, which would lose
 *            every digit once s rounds to 1 (x > ~37): e s^2 for x >= 0,
 *            s/(1+e) below.
 *   pow      d/dx x^y = y x^(y-1), as IEEE pow gives it also at x = 0 (0
 *            for y > 1, 1 for y = 1, inf for 0 < y < 1), except that y = 0
 *            gives 0: x^0 = 1 is constant in x, where the formula would be
 *            0 * inf at x = 0 (PyTorch makes the same exception).
 *            d/dy x^y = x^y ln x, taken as 0 at x = 0, where x^y is 0 or 1
 *            for every y > 0 (the limit from the right) and ln 0 = -inf
 *            would give 0 * -inf.
 *
 * The tensor ops' backward rules state the same conventions with tensor
 * ops (their formula strings, ad_op_formula). */
#ifndef AUTODIFF_FORMULAS_H
#define AUTODIFF_FORMULAS_H

#include <math.h>

static inline double ad__sigmoid(double x)
{
    double e = exp(-fabs(x));
    return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
/* sigmoid(x), and its derivative in *d. */
static inline double ad__sigmoid_d(double x, double *d)
{
    double e = exp(-fabs(x)), s;
    if (x >= 0.0) {
        s = 1.0 / (1.0 + e);
        *d = e * s * s;
    } else {
        s = e / (1.0 + e);
        *d = s / (1.0 + e);
    }
    return s;
}

/* d/dx x^y, and d/dy x^y given r = x^y. */
static inline double ad__pow_dx(double x, double y) { return y == 0.0 ? 0.0 : y * pow(x, y - 1.0); }
static inline double ad__pow_dy(double x, double r) { return x == 0.0 ? 0.0 : r * log(x); }

#endif

/* tests/closed_forms.h - the elementary functions and their derivatives,
 * derived by hand for the tests that compare the library against them
 * (test_scalar.c for the scalar tape, test_pointwise.c for the tensor ops).
 *
 * Written on purpose in other forms than the library's (formulas.h, the
 * ops' backward rules): tanh' as 1/cosh^2 rather than 1 - tanh^2, sigmoid
 * by its definition rather than from e^-|x|, so that a test checks the
 * library against independent mathematics, not against itself.  cf_dd_*
 * are second derivatives.  Kinks take the library's documented choice away
 * from the kink only (relu and abs are tested off 0). */
#ifndef TESTS_CLOSED_FORMS_H
#define TESTS_CLOSED_FORMS_H

#include <math.h>

static inline double cf_neg(double x) { return -x; }
static inline double cf_d_neg(double x) { (void)x; return -1.0; }
static inline double cf_d_log(double x) { return 1.0 / x; }
static inline double cf_d_sqrt(double x) { return 0.5 / sqrt(x); }
static inline double cf_d_sin(double x) { return cos(x); }
static inline double cf_d_cos(double x) { return -sin(x); }
static inline double cf_d_tan(double x) { return 1.0 / (cos(x) * cos(x)); }
static inline double cf_d_tanh(double x) { return 1.0 / (cosh(x) * cosh(x)); }
static inline double cf_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double cf_d_sigmoid(double x) { return cf_sigmoid(x) * (1.0 - cf_sigmoid(x)); }
static inline double cf_relu(double x) { return x > 0 ? x : 0.0; }
static inline double cf_d_relu(double x) { return x > 0 ? 1.0 : 0.0; }
static inline double cf_d_abs(double x) { return x > 0 ? 1.0 : -1.0; }
static inline double cf_square(double x) { return x * x; }
static inline double cf_d_square(double x) { return 2 * x; }

#endif

/* tests/optest.h - helpers shared by the test programs, and the op rows.
 *
 * An op row names an op of the op table and gives a function that builds
 * that op's output from random inputs of given shapes.  test_ops walks the
 * op table: every op must have at least one row (an op without one fails
 * the suite), and every row is checked with ad_gradcheck and
 * ad_gradgradcheck in float64, and run in float32 against float64. */
#ifndef OPTEST_H
#define OPTEST_H

#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

#include "check_asserts.h"

/* |a - b| <= tol (absolute), with both values in the failure message. */
#define ck_assert_close(a, b, tol)                                                   \
    do {                                                                             \
        double a_ = (a), b_ = (b), t_ = (tol);                                       \
        ck_assert_msg(fabs(a_ - b_) <= t_ || (isnan(a_) && isnan(b_)),               \
                      "%s = %.17g, expected %s = %.17g (tol %g)", #a, a_, #b, b_, t_); \
    } while (0)

/* Asserts that a pointer result is NULL and the error message contains
 * `needle`; clears the error. */
#define ck_assert_error(expr, needle)                                                \
    do {                                                                             \
        ad_clear_error();                                                            \
        const void *r_ = (const void *)(expr);                                       \
        ck_assert_msg(r_ == NULL, "%s should fail", #expr);                          \
        ck_assert_msg(ad_error() != NULL, "%s failed without a message", #expr);     \
        ck_assert_msg(strstr(ad_error(), (needle)) != NULL,                          \
                      "%s: message '%s' lacks '%s'", #expr, ad_error(), (needle));   \
        ad_clear_error();                                                            \
    } while (0)
/* Same for int-returning calls (-1 on error). */
#define ck_assert_error_rc(expr, needle)                                             \
    do {                                                                             \
        ad_clear_error();                                                            \
        int rc_ = (expr);                                                            \
        ck_assert_msg(rc_ == -1, "%s should return -1, got %d", #expr, rc_);         \
        ck_assert_msg(ad_error() && strstr(ad_error(), (needle)),                    \
                      "%s: message '%s' lacks '%s'", #expr,                          \
                      ad_error() ? ad_error() : "(none)", (needle));                 \
        ad_clear_error();                                                            \
    } while (0)

/* A float64 tensor on tape t from literal values. */
ad_tensor *ot_f64(ad_tape *t, int ndim, const int64_t *shape, const double *values);
/* Value of element `flat` (row-major) of any tensor. */
double ot_at(const ad_tensor *x, int64_t flat);
/* A constant on x's tape, of x's dtype, from literal values. */
ad_tensor *ot_const_like(ad_tensor *x, int ndim, const int64_t *shape, const double *values);
/* An int64 index tensor on t from literal values. */
ad_tensor *ot_index(ad_tape *t, int ndim, const int64_t *shape, const int64_t *values);

/* ---- op rows ---- */
enum { OT_GRAD = 0, /* float input that requires grad (the default) */
       OT_CONST,    /* float input, no grad */
       OT_INDEX };  /* int64 input with values in [0, imax) */

typedef struct op_input {
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    int kind;      /* OT_GRAD, OT_CONST or OT_INDEX */
    double lo, hi; /* range of uniform values; both 0 means [-1, 1] */
    int64_t imax;  /* OT_INDEX: values in [0, imax) */
} op_input;

typedef struct op_row {
    const char *op;   /* the op table name this row covers */
    const char *what; /* what the row exercises, shown on failure */
    ad_func f;        /* builds the output; constants it makes must use
                         ad_tensor_dtype(in[0]) so the float32 run works */
    void *ctx;
    int nin;
    op_input in[4];
} op_row;

/* Row sets, one per op family, each ended by a row with op == NULL. */
extern const op_row rows_pointwise[];
extern const op_row rows_reduce[];
extern const op_row rows_shape[];
extern const op_row rows_linalg[];
extern const op_row rows_util[];
extern const op_row rows_decomp[];
extern const op_row rows_loss[];
extern const op_row rows_nn[];
extern const op_row rows_ffi[];
extern const op_row rows_custom[];
extern const op_row rows_checkpoint[];

/* A fresh tape, made active, for each test of a TCase:
 *     tcase_add_checked_fixture(tc, ot_tape_setup, ot_tape_teardown);
 * tests then allocate on ot_tape, and everything is freed after each. */
extern ad_tape *ot_tape;
void ot_tape_setup(void);
void ot_tape_teardown(void);

/* x is non-NULL (else the pending error is shown) and has this shape. */
void ot_assert_shape(const ad_tensor *x, int ndim, const int64_t *shape);
/* x has n elements equal to want[] within an absolute tolerance. */
void ot_assert_values(const ad_tensor *x, const double *want, int64_t n, double tol);

/* A fresh scratch directory "$TMPDIR/<prefix>_XXXXXX" (mkdtemp) written
 * into buf; 0 on success.  ot_remove_tree deletes it and what it holds. */
int ot_make_tmpdir(char *buf, size_t size, const char *prefix);
void ot_remove_tree(const char *dir);

/* Holds every kernel to instruction set name ("portable", "avx2",
 * "avx512": AD_ISA, read again at once) until ot_isa_release, which puts
 * back the environment's AD_ISA that ot_isa_hold returned (and frees it). */
char *ot_isa_hold(const char *name);
void ot_isa_release(char *saved);

/* Runs a Check suite and returns the exit status for main. */
int ot_run(Suite *s);
/* The source tree's file sub/name (headers, for the tests that walk the
 * public API), opened for reading; NULL when it cannot be found. */
FILE *ot_open_source(const char *sub, const char *name);

#endif

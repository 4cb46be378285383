/* tests/test_badinput.c - every public function of the autodiff headers given
 * bad input.
 *
 * Each row calls one function with one bad argument and asserts the
 * documented failure: NULL (or -1, NaN, an invalid scalar handle) and an
 * error message containing the exact substring of the row.  Covered: NULL
 * arguments, mismatched shapes and dtypes, int64 where floats are
 * required, out-of-range axes and indices, non-finite or out-of-range
 * parameters (clamp bounds NaN, arange step 0, rand lo >= hi, ...),
 * backward without grad, backward twice without retain, tensors of two
 * tapes mixed in one op, dead tensors, stale and invalid scalar handles.
 * Functions that cannot fail get a row checking they tolerate the bad
 * input (NULL ignored, a defined fallback result).
 *
 * Generic tables cover the op families (every unary, binary, scalar-form,
 * comparison and reduction op gets the same rows); the rest is one row per
 * case.  Nothing may leak: the suite runs in the sanitizer build, where
 * LeakSanitizer fails a test that leaks.  Rows run inside a few test
 * functions sharing fixtures; the last test checks that every function
 * declared in the public headers has at least one row (it reads the
 * headers), and prints the row count.  nn/ rows are at the end. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../autodiff/alloc.h"
#include "../autodiff/internal.h"
#include "../nn/nn.h"
#include "optest.h"

/* ---- rows ------------------------------------------------------------------------------ */

/* Names of the functions rows have called, for the coverage check.  Each
 * test runs in its own process (Check forks), so the names are appended to
 * a file that the coverage test reads; rows are counted the same way. */
static char log_path[256];

static void log_row(const char *expr)
{
    char name[96];
    size_t n = strcspn(expr, "( ");
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, expr, n);
    name[n] = '\0';
    FILE *f = fopen(log_path, "a");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", name);
    fclose(f);
}

/* Checks a row's outcome: `failed` says the call returned its failure
 * value; the message must contain needle (needle NULL: no message).  With
 * BADINPUT_KEEP_GOING set in the environment every mismatch is printed
 * and the test fails at the end, instead of stopping at the first. */
static int mismatches;

static void row_done(const char *expr, bool failed, const char *needle)
{
    const char *e = ad_error();
    if (getenv("BADINPUT_SHOW")) fprintf(stderr, "ROW %s -> %s\n", expr, e ? e : "(no error)");
    bool ok = needle ? failed && e && strstr(e, needle) : failed && !e;
    if (!ok) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s: %s; message '%s', expected '%s'", expr,
                 failed ? (needle ? "failed" : "held") : (needle ? "did not fail" : "did not hold"),
                 e ? e : "(none)", needle ? needle : "(none)");
        if (getenv("BADINPUT_KEEP_GOING")) {
            fprintf(stderr, "MISMATCH %s\n", msg);
            mismatches++;
        } else {
            ck_abort_msg("%s", msg);
        }
    }
    ad_clear_error();
}

/* expr returns a pointer: NULL, with needle in the message. */
#define ROW(expr, needle)                                                                \
    do {                                                                                 \
        log_row(#expr);                                                                  \
        ad_clear_error();                                                                \
        const void *r_ = (const void *)(expr);                                           \
        row_done(#expr, r_ == NULL, (needle));                                           \
    } while (0)
/* expr returns int: -1, with needle in the message. */
#define ROW_RC(expr, needle)                                                             \
    do {                                                                                 \
        log_row(#expr);                                                                  \
        ad_clear_error();                                                                \
        int r_ = (expr);                                                                 \
        row_done(#expr, r_ == -1, (needle));                                             \
    } while (0)
/* expr returns a value `bad` (compared with ==, or NaN when bad is NaN). */
#define ROW_VAL(type, expr, bad, needle)                                                 \
    do {                                                                                 \
        log_row(#expr);                                                                  \
        ad_clear_error();                                                                \
        type v_ = (expr), b_ = (bad);                                                    \
        row_done(#expr, v_ == b_ || (v_ != v_ && b_ != b_), (needle));                   \
    } while (0)
/* expr returns an ad_scalar: invalid, with needle in the message. */
#define ROW_S(expr, needle)                                                              \
    do {                                                                                 \
        log_row(#expr);                                                                  \
        ad_clear_error();                                                                \
        ad_scalar s_ = (expr);                                                           \
        row_done(#expr, !ad_scalar_ok(s_), (needle));                                    \
    } while (0)
/* A function that tolerates the bad input: cond (which calls it) holds and
 * no error is set. */
#define ROW_OK(expr, cond)                                                               \
    do {                                                                                 \
        log_row(#expr);                                                                  \
        ad_clear_error();                                                                \
        row_done(#expr, (cond), NULL);                                                   \
    } while (0)
/* expr returns nothing: it sets an error with needle. */
#define ROW_VOID(expr, needle)                                                           \
    do {                                                                                 \
        log_row(#expr);                                                                  \
        ad_clear_error();                                                                \
        (expr);                                                                          \
        row_done(#expr, true, (needle));                                                 \
    } while (0)
/* A row run through a function pointer: name given explicitly. */
#define ROW_N(name, expr, needle)                                                        \
    do {                                                                                 \
        log_row(name);                                                                   \
        ad_clear_error();                                                                \
        const void *r_ = (const void *)(expr);                                           \
        char what_[160];                                                                 \
        snprintf(what_, sizeof what_, "%s: %s", name, #expr);                            \
        row_done(what_, r_ == NULL, (needle));                                           \
    } while (0)

/* ---- fixtures --------------------------------------------------------------------------- */
/* A runner for ad_set_parallel_runner's row: never called (parts 1 is refused). */
static void badinput_runner(void *pool, ad_parallel_task task, void *ctx)
{
    (void)pool;
    task(ctx, 0, 2);
    task(ctx, 1, 2);
}

typedef struct fx {
    ad_tape *t, *t2;
    ad_tensor *a, *b;  /* float64 [2,3] on t */
    ad_tensor *f32;    /* float32 [2,3] on t */
    ad_tensor *i64;    /* int64 [3] on t, values 0 1 2 */
    ad_tensor *i64m;   /* int64 [2,3] on t */
    ad_tensor *v3;     /* float64 [3] on t */
    ad_tensor *v4;     /* float64 [4] on t */
    ad_tensor *s0;     /* float64 0-d on t */
    ad_tensor *other;  /* float64 [2,3] on t2 */
    ad_tensor *p;      /* persistent float64 [2,3], requires grad */
    ad_tensor *img;    /* float64 [1,2,4,4] on t */
    ad_tensor *dead;   /* a header whose magic says it was freed */
    ad_tensor *p2a, *p2b; /* float64 [2] requiring grad, on t and on t2 */
} fx;

static struct ad_tensor dead_header = {.magic = AD_DEAD_MAGIC};

static fx setup(void)
{
    fx f;
    f.t = ad_tape_new();
    f.t2 = ad_tape_new();
    double v[6] = {1, 2, 3, 4, 5, 6};
    f.a = ad_from_array(f.t, AD_FLOAT64, AD_SHAPE(2, 3), v);
    f.b = ad_from_array(f.t, AD_FLOAT64, AD_SHAPE(2, 3), v);
    f.f32 = ad_ones(f.t, AD_FLOAT32, AD_SHAPE(2, 3));
    f.i64 = ad_arange(f.t, AD_INT64, 0, 3, 1);
    f.i64m = ad_zeros(f.t, AD_INT64, AD_SHAPE(2, 3));
    f.v3 = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3));
    f.v4 = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(4));
    f.s0 = ad_scalar_tensor(f.t, AD_FLOAT64, 2);
    f.other = ad_ones(f.t2, AD_FLOAT64, AD_SHAPE(2, 3));
    f.p = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2, 3));
    ad_set_requires_grad(f.p, true);
    f.img = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(1, 2, 4, 4));
    f.dead = &dead_header;
    f.p2a = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2));
    f.p2b = ad_ones(f.t2, AD_FLOAT64, AD_SHAPE(2));
    ad_set_requires_grad(f.p2a, true);
    ad_set_requires_grad(f.p2b, true);
    ck_assert(f.a && f.b && f.f32 && f.i64 && f.i64m && f.v3 && f.v4 && f.s0 && f.other &&
              f.p && f.img);
    ad_clear_error();
    return f;
}

static void teardown(fx *f)
{
    ck_assert_msg(mismatches == 0, "%d rows did not match (see MISMATCH lines)", mismatches);
    ad_tape_activate(NULL);
    ad_tensor_free(f->p);
    ad_tape_free(f->t);
    ad_tape_free(f->t2);
    ad_clear_error();
}

/* ---- tensor.h ----------------------------------------------------------------------- */
START_TEST(tensor_h)
{
    fx f = setup();
    double d[8] = {0};
    int64_t sh2[2] = {2, 3};
    /* errors */
    ROW_OK(ad_error(), ad_error() == NULL);
    ROW_OK(ad_clear_error(), (ad_clear_error(), true));
    ROW_RC(ad_set_error(NULL), "ad_set_error: fmt is NULL");
    ROW_RC(ad_set_error_code(AD_ERR_IO, NULL), "ad_set_error: fmt is NULL");
    ROW_RC(ad_set_error_code((ad_error_code)-4, "x: odd code"), "x: odd code");
    ROW_OK(ad_errcode(), ad_errcode() == AD_OK);
    ROW_OK(ad_error_code_name((ad_error_code)42),
           strcmp(ad_error_code_name((ad_error_code)42), "AD_ERR_UNKNOWN") == 0);
    ROW_OK(ad_dtype_name((ad_dtype)7), strcmp(ad_dtype_name((ad_dtype)7), "invalid") == 0 ||
                                            ad_dtype_name((ad_dtype)7) != NULL);
    ROW_VAL(size_t, ad_dtype_size((ad_dtype)7), 0, "ad_dtype_size: invalid dtype 7");
    /* creation: dtype, ndim, shape */
    ROW(ad_empty(NULL, (ad_dtype)7, 1, sh2), "invalid dtype 7");
    ROW(ad_empty(NULL, (ad_dtype)-1, 1, sh2), "invalid dtype -1");
    ROW(ad_zeros(NULL, AD_FLOAT64, -1, sh2), "ndim -1 out of range 0..8");
    ROW(ad_zeros(NULL, AD_FLOAT64, 9, sh2), "ndim 9 out of range 0..8");
    ROW(ad_ones(NULL, AD_FLOAT64, 2, NULL), "shape is NULL for ndim 2");
    ROW(ad_ones(f.t, AD_FLOAT32, 2, (int64_t[]){2, -3}), "negative extent -3 in dimension 1");
    ROW(ad_full(NULL, (ad_dtype)3, 2, sh2, 1.0), "invalid dtype 3");
    ROW(ad_full(NULL, AD_FLOAT64, 2, (int64_t[]){-1, 1}, 1.0), "negative extent -1");
    ROW(ad_scalar_tensor(NULL, (ad_dtype)9, 1.0), "invalid dtype 9");
    ROW(ad_from_array(NULL, AD_FLOAT64, 2, sh2, NULL), "data is NULL");
    ROW(ad_from_array(f.t, AD_INT64, 2, NULL, d), "shape is NULL for ndim 2");
    ROW(ad_from_blob(AD_FLOAT64, 2, sh2, NULL, NULL, NULL), "ad_from_blob: data is NULL");
    ROW(ad_from_blob((ad_dtype)5, 2, sh2, d, NULL, NULL), "ad_from_blob: invalid dtype 5");
    ROW(ad_from_blob(AD_FLOAT64, 2, (int64_t[]){2, -1}, d, NULL, NULL), "negative extent -1");
    ROW(ad_from_blob(AD_FLOAT64, 1, sh2, (char *)d + 4, NULL, NULL),
        "is not aligned to the 8 bytes of a float64");
    ROW(ad_leaf(NULL, AD_FLOAT64, 2, sh2, NULL), "ad_leaf: data is NULL");
    ROW(ad_leaf(f.t, AD_INT64, 2, sh2, d), "ad_leaf: only float32 and float64 tensors can require grad, got int64");
    ROW(ad_leaf(f.t, AD_FLOAT32, 2, NULL, d), "ad_leaf: shape is NULL for ndim 2");
    ROW(ad_arange(NULL, AD_FLOAT64, 0, 10, 0), "step non-zero");
    ROW(ad_arange(NULL, AD_FLOAT64, 0, 10, NAN), "must be finite");
    ROW(ad_arange(NULL, AD_FLOAT64, 0, INFINITY, 1), "must be finite");
    ROW(ad_arange(NULL, AD_FLOAT64, NAN, 1, 1), "must be finite");
    ROW(ad_arange(NULL, (ad_dtype)5, 0, 3, 1), "invalid dtype 5");
    ROW(ad_linspace(NULL, AD_FLOAT64, 0, 1, 0), "need n >= 1");
    ROW(ad_linspace(NULL, AD_FLOAT64, 0, NAN, 3), "finite ends");
    ROW(ad_linspace(NULL, AD_FLOAT64, -INFINITY, 0, 3), "finite ends");
    ROW(ad_eye(NULL, AD_FLOAT64, -1), "negative extent -1");
    ROW(ad_eye(NULL, (ad_dtype)4, 2), "invalid dtype 4");
    /* random numbers */
    ad_rng rng;
    ad_rng_init(&rng, 1);
    ROW_VOID(ad_rng_init(NULL, 1), "ad_rng_init: rng is NULL");
    ROW(ad_rand(NULL, NULL, AD_FLOAT64, 2, sh2, 0, 1), "rng is NULL");
    ROW(ad_rand(NULL, &rng, AD_FLOAT64, 2, sh2, 1, 1), "need finite lo < hi, got [1, 1)");
    ROW(ad_rand(NULL, &rng, AD_FLOAT64, 2, sh2, 2, 1), "need finite lo < hi");
    ROW(ad_rand(NULL, &rng, AD_FLOAT64, 2, sh2, NAN, 1), "need finite lo < hi");
    ROW(ad_rand(NULL, &rng, AD_FLOAT64, 2, sh2, 0, INFINITY), "need finite lo < hi");
    ROW(ad_rand(NULL, &rng, AD_INT64, 2, sh2, 0, 1), "ad_rng_below for random integers");
    ROW(ad_rand(NULL, &rng, AD_FLOAT32, 2, sh2, 1e300, 1e301), "exceed the float32 range");
    ROW(ad_rand(NULL, &rng, AD_FLOAT32, 2, sh2, 1 + 1e-12, 1 + 2e-12), "no float32 value lies in");
    ROW(ad_rand(NULL, &rng, AD_FLOAT64, 2, (int64_t[]){2, -1}, 0, 1), "negative extent");
    ROW(ad_randn(NULL, NULL, AD_FLOAT64, 2, sh2, 0, 1), "rng is NULL");
    ROW(ad_randn(NULL, &rng, AD_FLOAT64, 2, sh2, 0, -1), "a finite std >= 0");
    ROW(ad_randn(NULL, &rng, AD_FLOAT64, 2, sh2, NAN, 1), "need a finite mean");
    ROW(ad_randn(NULL, &rng, AD_FLOAT64, 2, sh2, 0, INFINITY), "a finite std >= 0");
    ROW(ad_randn(NULL, &rng, AD_FLOAT32, 2, sh2, 3e38, 1e37), "overflow float32");
    ROW(ad_randn(NULL, &rng, (ad_dtype)8, 2, sh2, 0, 1), "invalid dtype 8");
    ck_assert_uint_eq(rng.counter, 0); /* no failed draw consumed numbers */
    ROW_VAL(double, ad_rng_uniform(NULL), NAN, "rng is NULL");
    ROW_VAL(uint64_t, ad_rng_below(NULL, 3), 0, "rng is NULL");
    ROW_VAL(uint64_t, ad_rng_below(&rng, 0), 0, "n must be at least 1");
    /* freeing */
    ROW_OK(ad_tensor_free(NULL), ad_tensor_free(NULL) == 0);
    ROW_RC(ad_tensor_free(f.a), "belongs to a tape");
    ROW_RC(ad_tensor_free(f.dead), "not a live tensor");
    /* inspection */
    ROW_VAL(ad_dtype, ad_tensor_dtype(NULL), AD_FLOAT64, "argument 't' is NULL");
    ROW_VAL(ad_dtype, ad_tensor_dtype(f.dead), AD_FLOAT64, "is not a live tensor");
    ROW_RC(ad_ndim(NULL), "argument 't' is NULL");
    ROW_RC(ad_ndim(f.dead), "is not a live tensor");
    ROW_VAL(int64_t, ad_size(NULL, 0), -1, "argument 't' is NULL");
    ROW_VAL(int64_t, ad_size(f.a, 2), -1, "axis 2 out of range for a 2-dimensional tensor");
    ROW_VAL(int64_t, ad_size(f.a, -3), -1, "axis -3 out of range");
    ROW_VAL(int64_t, ad_size(f.s0, 0), -1, "a 0-dimensional tensor has no dimension 0");
    ROW(ad_shape(NULL), "argument 't' is NULL");
    ROW(ad_shape(f.dead), "is not a live tensor");
    ROW(ad_strides(NULL), "argument 't' is NULL");
    ROW_VAL(int64_t, ad_numel(NULL), -1, "argument 't' is NULL");
    ROW_VAL(int64_t, ad_numel(f.dead), -1, "is not a live tensor");
    ROW_VAL(bool, ad_is_contiguous(NULL), false, "argument 't' is NULL");
    ROW(ad_tensor_tape(NULL), "argument 't' is NULL");
    ROW(ad_tensor_tape(f.dead), "is not a live tensor");
    ROW(ad_data(NULL), "argument 't' is NULL");
    ROW(ad_data(ad_transpose(f.a, 0, 1)), "is not contiguous (call ad_contiguous first)");
    ROW_RC(ad_to_array(NULL, d), "argument 't' is NULL");
    ROW_RC(ad_to_array(f.a, NULL), "out is NULL");
    ROW_RC(ad_get(NULL, (int64_t[]){0, 0}, d), "argument 't' is NULL");
    ROW_RC(ad_get(f.a, (int64_t[]){0, 0}, NULL), "value is NULL");
    ROW_RC(ad_get(f.a, NULL, d), "index is NULL");
    ROW_RC(ad_get(f.a, (int64_t[]){2, 0}, d), "index 2 out of range for dimension 0 of shape [2,3]");
    ROW_RC(ad_get(f.a, (int64_t[]){0, -4}, d), "index -4 out of range for dimension 1");
    ROW_RC(ad_set(NULL, (int64_t[]){0, 0}, 1), "argument 't' is NULL");
    ROW_RC(ad_set(f.a, (int64_t[]){0, 3}, 1), "index 3 out of range for dimension 1");
    ROW_RC(ad_set(f.dead, (int64_t[]){0, 0}, 1), "is not a live tensor");
    ROW_VAL(double, ad_item(NULL), NAN, "argument 't' is NULL");
    ROW_VAL(double, ad_item(f.a), NAN, "tensor of shape [2,3] does not have exactly one element");
    /* copies */
    ROW(ad_copy(NULL, NULL), "argument 't' is NULL");
    ROW(ad_copy(f.t, f.dead), "is not a live tensor");
    ROW_RC(ad_copy_into(NULL, f.a), "argument 'dst' is NULL");
    ROW_RC(ad_copy_into(f.a, NULL), "argument 'src' is NULL");
    ROW_RC(ad_copy_into(f.a, f.v3), "shapes differ: dst [2,3], src [3]");
    ROW_RC(ad_fill(NULL, 0), "argument 't' is NULL");
    ROW_RC(ad_fill(f.dead, 0), "is not a live tensor");
    /* a value no int64 holds (the conversion is undefined in C, and stored
     * INT64_MIN), and one element of an expanded view (all changed) */
    ad_tensor *i64 = ad_zeros(f.t, AD_INT64, AD_SHAPE(2));
    ROW(ad_full(f.t, AD_INT64, AD_SHAPE(2), NAN), "ad_full: nan is not a value an int64 holds");
    ROW(ad_scalar_tensor(f.t, AD_INT64, INFINITY), "ad_scalar_tensor: inf is not a value");
    ROW_RC(ad_fill(i64, 1e300), "ad_fill: 1e+300 is not a value an int64 holds");
    ROW_RC(ad_set(i64, (int64_t[]){0}, NAN), "ad_set: nan is not a value an int64 holds");
    ROW_RC(ad_copy_into(i64, ad_full(f.t, AD_FLOAT64, AD_SHAPE(2), 9.3e18)),
           "ad_copy_into: 9.3e+18 is not a value an int64 holds");
    ROW(ad_arange(f.t, AD_INT64, 9.3e18, 9.4e18, 1e16), "ad_arange: 9.3e+18 is not a value");
    ROW_RC(ad_set(ad_expand(f.v3, AD_SHAPE(2, 3)), (int64_t[]){0, 0}, 5),
           "ad_set: t [2,3] has stride 0 in dimension 0 (an expanded view)");
    ROW_VAL(uint32_t, ad_version(NULL), 0, "argument 't' is NULL");
    ROW_RC(ad_mark_modified(NULL), "argument 't' is NULL");
    ROW_RC(ad_mark_modified(f.dead), "is not a live tensor");
    ad_clear_error();
    ROW_OK(ad_check_optional("f", "bias", NULL), ad_check_optional("f", "bias", NULL) == 0);
    ROW_RC(ad_check_optional("f", "bias", f.dead), "f: argument 'bias' is not a live tensor");
    /* printing */
    ROW_RC(ad_print(NULL, stdout), "argument 't' is NULL");
    ROW_RC(ad_print(f.a, NULL), "out is NULL");
    char buf[16] = "x";
    ROW_OK(ad_shape_str(NULL, buf, sizeof buf), (ad_shape_str(NULL, buf, sizeof buf), buf[15] == 0 || true));
    ad_clear_error();
    ROW_OK(ad_shape_str(f.a, NULL, 0), (ad_shape_str(f.a, NULL, 0), true));
    ROW_OK(ad_shape_str(f.a, buf, 3), (ad_shape_str(f.a, buf, 3), strlen(buf) <= 2));
    teardown(&f);
}
END_TEST

/* ---- tape.h ------------------------------------------------------------------------------ */
static ad_tensor *id_fn(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return in[0];
}

START_TEST(tape_h)
{
    fx f = setup();
    ad_tape_stats st;
    ROW_OK(ad_tape_new(), true);
    ROW_OK(ad_tape_free(NULL), (ad_tape_free(NULL), true));
    ROW_RC(ad_tape_reset(NULL), "tape is NULL");
    ROW_OK(ad_tape_activate(NULL), (ad_tape_activate(NULL), ad_tape_active() == NULL));
    ROW_OK(ad_tape_active(), ad_tape_active() == NULL);
    ROW_RC(ad_tape_get_stats(NULL, &st), "tape or stats is NULL");
    ROW_RC(ad_tape_get_stats(f.t, NULL), "tape or stats is NULL");
    ROW_OK(ad_grad_enabled(), ad_grad_enabled());
    ROW_OK(ad_set_grad_enabled(true), ad_set_grad_enabled(true));
    ROW_RC(ad_set_num_threads(-1), "ad_set_num_threads: n must be >= 0, got -1");
    ROW_OK(ad_set_num_threads(1),
           (ad_set_num_threads(1), ad_get_num_threads() == 1 && ad_set_num_threads(0) == 1));
    ROW_OK(ad_get_num_threads(), ad_get_num_threads() >= 1);
    ROW_OK(ad_kernel_isa(), ad_kernel_isa() >= AD_ISA_PORTABLE && ad_kernel_isa() <= AD_ISA_AVX512);
    ROW_OK(ad_isa_name((ad_isa)7), strcmp(ad_isa_name((ad_isa)7), "invalid") == 0);
    ROW_RC(ad_set_parallel_runner(badinput_runner, NULL, 1),
           "ad_set_parallel_runner: parts must be >= 2 with a runner, got 1");
    ROW_OK(ad_set_parallel_runner(NULL, NULL, 0), ad_set_parallel_runner(NULL, NULL, 0) == 0);
    /* composition scopes */
    ad_scope sc;
    ROW_RC(ad_scope_begin(NULL, "f", 0, NULL, false), "argument 's' is NULL");
    ROW_RC(ad_scope_begin(&sc, "f", 1, NULL, false), "inputs is NULL");
    ROW_RC(ad_scope_begin(&sc, "f", 2, (ad_tensor *[]){f.a, f.other}, false), "different tapes");
    ROW_RC(ad_scope_begin(&sc, "f", 1, &f.p, false), "f: no tape to record on");
    ROW_RC(ad_scope_begin(&sc, "f", 1, &f.dead, false), "is not a live tensor");
    ROW(ad_scope_end(NULL, f.a), "argument 's' is NULL");
    /* leaves */
    ROW_RC(ad_set_requires_grad(NULL, true), "argument 't' is NULL");
    ROW_RC(ad_set_requires_grad(f.dead, true), "is not a live tensor");
    ROW_RC(ad_set_requires_grad(f.i64, true), "only float32 and float64 tensors can require grad, got int64");
    ad_tensor *x = ad_from_array(f.t, AD_FLOAT64, AD_SHAPE(2), ((double[]){1, 2}));
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_mul(x, x);
    ROW_RC(ad_set_requires_grad(y, false), "is the result of a recorded op (mul), not a leaf");
    ROW_OK(ad_requires_grad(NULL), !ad_requires_grad(NULL));
    ROW_OK(ad_requires_grad(f.dead), !ad_requires_grad(f.dead));
    ROW_OK(ad_is_leaf(NULL), !ad_is_leaf(NULL));
    ROW(ad_tensor_grad(NULL), "argument 't' is NULL");
    ROW(ad_tensor_grad(f.dead), "is not a live tensor");
    ROW_OK(ad_tensor_grad(f.a), ad_tensor_grad(f.a) == NULL);
    ROW_RC(ad_zero_grad(NULL), "argument 't' is NULL");
    ROW_OK(ad_grad_written(NULL), !ad_grad_written(NULL));
    ROW_OK(ad_grad_written(f.dead), !ad_grad_written(f.dead));
    ROW_RC(ad_set_grad(NULL, NULL), "argument 't' is NULL");
    ROW_RC(ad_set_grad(f.dead, NULL), "is not a live tensor");
    ROW_RC(ad_set_grad(x, f.dead), "argument 'grad' is not a live tensor");
    ROW_RC(ad_set_grad(x, NULL), "t must be a persistent leaf that requires grad");
    ROW_RC(ad_set_grad(f.i64, NULL), "float");
    {   /* one buffer for two leaves (both got the sum), a leaf's values as
         * the buffer (backward added into them) */
        ad_tensor *p = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2)), *q = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2));
        ad_tensor *buf = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(2));
        ad_set_requires_grad(p, true), ad_set_requires_grad(q, true);
        ROW_OK(ad_set_grad(p, buf), ad_set_grad(p, buf) == 0);
        ROW_RC(ad_set_grad(q, buf), "grad is already another leaf's gradient buffer");
        ROW_RC(ad_set_grad(q, p), "grad requires grad: it is a leaf's values");
        ad_tensor_free(p), ad_tensor_free(q); /* (p frees buf) */
    }
    ROW(ad_detach(NULL), "argument 't' is NULL");
    ROW(ad_detach(f.dead), "is not a live tensor");
    ROW_RC(ad_set_label(NULL, "x"), "argument 't' is NULL");
    ROW_RC(ad_set_label(f.a, NULL), "label is NULL");
    ROW_OK(ad_label(NULL), ad_label(NULL) == NULL);
    ROW_OK(ad_label(f.dead), ad_label(f.dead) == NULL);
    /* backward */
    ROW_RC(ad_backward(NULL, NULL, 0), "argument 'out' is NULL");
    ROW_RC(ad_backward(f.dead, NULL, 0), "is not a live tensor");
    ROW_RC(ad_backward(f.a, NULL, 0), "tensor does not require grad");
    ROW_RC(ad_backward(f.i64, NULL, 0), "must be float32 or float64, got int64");
    ROW_RC(ad_backward(y, NULL, 0), "may be NULL only for a one-element output; got [2]");
    ROW_RC(ad_backward(y, f.v3, 0), "grad_output [3] float64 does not match output [2] float64");
    ROW_RC(ad_backward(y, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(2)), 0), "grad_output [2] float32");
    ROW_RC(ad_backward(y, f.dead, 0), "argument 'grad_output' is not a live tensor");
    ROW_RC(ad_backward(y, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2)), 0x80000000u),
           "ad_backward: unknown flags 0x80000000");
    ad_tensor *l = ad_sum(y, NULL, 0, false);
    ck_assert_int_eq(ad_backward(l, NULL, 0), 0);
    ROW_RC(ad_backward(l, NULL, 0), "freed by an earlier backward; pass AD_RETAIN_GRAPH");
    ad_tensor *gr[2];
    ROW_RC(ad_gradients(l, NULL, 1, &x, gr, 0), "freed by an earlier backward");
    ROW_RC(ad_gradients(l, NULL, -1, &x, gr, 0), "need n >= 0 inputs and a grads array");
    ROW_RC(ad_gradients(l, NULL, 1, NULL, gr, 0), "need n >= 0 inputs and a grads array");
    ROW_RC(ad_gradients(l, NULL, 1, &x, NULL, 0), "need n >= 0 inputs and a grads array");
    ROW_RC(ad_gradients(NULL, NULL, 1, &x, gr, 0), "argument 'out' is NULL");
    ROW_RC(ad_gradients(l, NULL, 1, (ad_tensor *[]){f.i64}, gr, 0), "got int64");
    ad_tensor *loose = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(1));
    ROW_RC(ad_gradients(loose, NULL, 1, &x, gr, 0), "out does not require grad and has no tape");
    ad_tensor_free(loose);
    /* replay */
    ROW_RC(ad_tape_set_replayable(NULL, true), "tape is NULL");
    ROW_RC(ad_tape_freeze(NULL), "tape is NULL");
    ROW_RC(ad_tape_freeze(f.t2), "was not recorded as replayable");
    ROW_RC(ad_tape_replay(NULL, 0, NULL, NULL), "tape is NULL");
    ROW_RC(ad_tape_replay(f.t, 0, NULL, NULL), "the tape is not frozen");
    ad_tape *rt = ad_tape_new();
    ad_tape_set_replayable(rt, true);
    ad_tensor *rx = ad_zeros(rt, AD_FLOAT64, AD_SHAPE(2, 3));
    ad_set_requires_grad(rx, true);
    ad_tensor *ry = ad_sum(ad_exp(rx), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(rt), 0);
    ROW_RC(ad_tape_set_replayable(rt, false), "the tape is already frozen");
    ROW_RC(ad_tape_replay(rt, -1, &rx, NULL), "need n >= 0 leaves");
    ROW_RC(ad_tape_replay(rt, 1, NULL, NULL), "need n >= 0 leaves");
    ROW_RC(ad_tape_replay(rt, 1, &ry, NULL), "input 0 is not a leaf");
    ROW_RC(ad_tape_replay(rt, 2, (ad_tensor *[]){rx, rx}, NULL), "inputs 0 and 1 are the same leaf");
    ROW_RC(ad_tape_replay(rt, 1, (ad_tensor *[]){NULL}, NULL), "argument 'leaves[i]' is NULL");
    ROW_RC(ad_tape_replay(rt, 1, &rx, &f.v3),
           "input 0 was recorded as [2,3] float64, got [3] float64");
    ROW_RC(ad_tape_replay(rt, 1, &rx, &f.f32),
           "input 0 was recorded as [2,3] float64, got [2,3] float32");
    ROW_RC(ad_tape_replay(rt, 1, &rx, &f.dead), "argument 'values[i]' is not a live tensor");
    ad_tape_free(rt);
    /* inspection */
    ad_node_info info;
    ROW_OK(ad_tape_num_nodes(NULL), ad_tape_num_nodes(NULL) == 0);
    ROW_RC(ad_tape_node_info(NULL, 0, &info), "tape or info is NULL");
    ROW_RC(ad_tape_node_info(f.t, 0, NULL), "tape or info is NULL");
    ROW_RC(ad_tape_node_info(f.t, 1000, &info), "node 1000 out of range");
    ROW_VAL(long, ad_tensor_node_index(NULL), -1, "argument 't' is NULL");
    ROW_VAL(long, ad_tensor_node_index(f.dead), -1, "is not a live tensor");
    ROW_OK(ad_set_trace(NULL, NULL), ad_set_trace(NULL, NULL) == NULL);
    const ad_grad_ready_hook no_hook = {NULL, NULL};
    ROW_OK(ad_set_grad_ready_hook(no_hook), ad_set_grad_ready_hook(no_hook).fn == NULL);
    ROW_OK(ad_set_anomaly_mode(false), !ad_set_anomaly_mode(false));
    ROW_OK(ad_anomaly_mode(), !ad_anomaly_mode());
    ROW_OK(ad_set_scope_label(NULL), ad_set_scope_label(NULL) == NULL);
    /* Where results go: an input requiring grad with nowhere to record. */
    ROW(ad_exp(f.p), "an input requires grad but no tape is active to record on");
    ROW(ad_add(f.a, f.other), "inputs belong to different tapes");
    (void)id_fn;
    teardown(&f);
}
END_TEST

/* ---- ops: generic tables ------------------------------------------------------------------ */
typedef ad_tensor *(*unary_op)(ad_tensor *);
typedef ad_tensor *(*binary_op)(ad_tensor *, ad_tensor *);
typedef ad_tensor *(*scalar_op)(ad_tensor *, double);
typedef ad_tensor *(*reduce_op)(ad_tensor *, const int *, int, bool);

static ad_tensor *leaky(ad_tensor *x) { return ad_leaky_relu(x, 0.1); }
static ad_tensor *clamp01(ad_tensor *x) { return ad_clamp(x, 0, 1); }
static ad_tensor *sm1(ad_tensor *x) { return ad_softmax(x, -1); }
static ad_tensor *lsm1(ad_tensor *x) { return ad_log_softmax(x, -1); }

static const struct {
    const char *name;
    unary_op f;
} UNARY[] = {
    {"ad_neg", ad_neg},         {"ad_exp", ad_exp},
    {"ad_log", ad_log},         {"ad_sqrt", ad_sqrt},
    {"ad_sin", ad_sin},         {"ad_cos", ad_cos},
    {"ad_tan", ad_tan},         {"ad_tanh", ad_tanh},
    {"ad_sigmoid", ad_sigmoid}, {"ad_relu", ad_relu},
    {"ad_leaky_relu", leaky},   {"ad_gelu", ad_gelu},
    {"ad_erf", ad_erf},         {"ad_erfc", ad_erfc},       {"ad_softplus", ad_softplus},
    {"ad_abs", ad_abs},         {"ad_square", ad_square},
    {"ad_reciprocal", ad_reciprocal}, {"ad_clamp", clamp01},
    {"ad_sign", ad_sign},       {"ad_softmax", sm1},
    {"ad_log_softmax", lsm1},   {"ad_log1p", ad_log1p},
    {"ad_expm1", ad_expm1},
};

static const struct {
    const char *name;
    binary_op f;
} BINARY[] = {
    {"ad_add", ad_add}, {"ad_sub", ad_sub}, {"ad_mul", ad_mul},
    {"ad_div", ad_div}, {"ad_pow", ad_pow}, {"ad_maximum", ad_maximum},
    {"ad_minimum", ad_minimum}, {"ad_gt", ad_gt}, {"ad_ge", ad_ge},
    {"ad_lt", ad_lt}, {"ad_le", ad_le}, {"ad_eq", ad_eq},
    {"ad_atan2", ad_atan2},
};

static const struct {
    const char *name;
    scalar_op f;
} SCALAR[] = {
    {"ad_add_scalar", ad_add_scalar}, {"ad_sub_scalar", ad_sub_scalar},
    {"ad_rsub_scalar", ad_rsub_scalar}, {"ad_mul_scalar", ad_mul_scalar},
    {"ad_div_scalar", ad_div_scalar}, {"ad_rdiv_scalar", ad_rdiv_scalar},
    {"ad_pow_scalar", ad_pow_scalar},
};

static ad_tensor *lse(ad_tensor *x, const int *a, int n, bool k) { return ad_logsumexp(x, a, n, k); }
static ad_tensor *var1(ad_tensor *x, const int *a, int n, bool k) { return ad_var(x, a, n, 1, k); }

static const struct {
    const char *name;
    reduce_op f;
    bool needs_elements;
} REDUCE[] = {
    {"ad_sum", ad_sum, false}, {"ad_mean", ad_mean, false}, {"ad_max", ad_max, true},
    {"ad_min", ad_min, true},  {"ad_logsumexp", lse, true}, {"ad_var", var1, false},
};

#define NELEMS(a) ((int)(sizeof(a) / sizeof *(a)))

START_TEST(op_tables)
{
    fx f = setup();
    for (int i = 0; i < NELEMS(UNARY); i++) {
        const char *n = UNARY[i].name;
        unary_op op = UNARY[i].f;
        ROW_N(n, op(NULL), "argument 'x' is NULL");
        ROW_N(n, op(f.dead), "argument 'x' is not a live tensor");
        ROW_N(n, op(f.i64), "argument 'x' must be float32 or float64, got int64");
        ROW_N(n, op(f.p), "no tape is active to record on");
        /* NULL from a failed inner call keeps the inner message. */
        ad_clear_error();
        ck_assert_ptr_null(op(ad_reshape(f.a, AD_SHAPE(7))));
        ck_assert_msg(strstr(ad_error(), "ad_reshape: cannot reshape"), "%s: %s", n, ad_error());
    }
    for (int i = 0; i < NELEMS(BINARY); i++) {
        const char *n = BINARY[i].name;
        binary_op op = BINARY[i].f;
        ROW_N(n, op(NULL, f.a), "argument 'a' is NULL");
        ROW_N(n, op(f.a, NULL), "argument 'b' is NULL");
        ROW_N(n, op(f.dead, f.a), "argument 'a' is not a live tensor");
        ROW_N(n, op(f.a, f.dead), "argument 'b' is not a live tensor");
        ROW_N(n, op(f.a, f.f32), "dtypes differ: float64 vs float32");
        ROW_N(n, op(f.i64, f.i64), "must be float32 or float64, got int64");
        ROW_N(n, op(f.a, f.v4), "shapes [2,3] and [4] cannot be broadcast together");
        ROW_N(n, op(f.a, f.other), "inputs belong to different tapes");
        ROW_N(n, op(f.p, f.p), "no tape is active to record on");
    }
    for (int i = 0; i < NELEMS(SCALAR); i++) {
        const char *n = SCALAR[i].name;
        scalar_op op = SCALAR[i].f;
        ROW_N(n, op(NULL, 1), "argument 'a' is NULL");
        ROW_N(n, op(f.dead, 1), "is not a live tensor");
        ROW_N(n, op(f.i64, 1), "got int64");
        ROW_N(n, op(f.p, 1), "no tape is active to record on");
    }
    for (int i = 0; i < NELEMS(REDUCE); i++) {
        const char *n = REDUCE[i].name;
        reduce_op op = REDUCE[i].f;
        ROW_N(n, op(NULL, NULL, 0, false), "argument 'x' is NULL");
        ROW_N(n, op(f.dead, NULL, 0, false), "is not a live tensor");
        ROW_N(n, op(f.i64, NULL, 0, false), "got int64");
        ROW_N(n, op(f.a, (int[]){2}, 1, false), "axis 2 out of range for a 2-dimensional tensor");
        ROW_N(n, op(f.a, (int[]){-3}, 1, true), "axis -3 out of range");
        ROW_N(n, op(f.a, (int[]){1, -1}, 2, false), "repeated");
        ROW_N(n, op(f.a, NULL, 1, false), "axes is NULL");
        ROW_N(n, op(f.a, (int[]){0}, -1, false), "naxes");
        ROW_N(n, op(f.a, (int[]){0, 1, 0}, 3, false), "naxes 3 out of range for a 2-dimensional tensor");
        ROW_N(n, op(f.p, NULL, 0, false), "no tape is active to record on");
        if (REDUCE[i].needs_elements)
            ROW_N(n, op(ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(2, 0)), (int[]){1}, 1, false),
                  "empty reduction: a reduced dimension of [2,0] has extent 0");
    }
    teardown(&f);
}
END_TEST

/* ---- ops: one row per case ------------------------------------------------------------------ */
START_TEST(pointwise_and_reduce_specifics)
{
    fx f = setup();
    ROW(ad_clamp(f.a, NAN, 1), "bounds must not be NaN");
    ROW(ad_clamp(f.a, 0, NAN), "bounds must not be NaN");
    ROW(ad_clamp(f.a, 2, 1), "lo 2 > hi 1");
    ROW(ad_leaky_relu(f.a, NAN), "slope must be finite, got nan");
    ROW(ad_leaky_relu(f.a, -INFINITY), "slope must be finite, got -inf");
    ROW(ad_where(NULL, f.a, f.b), "argument 'cond' is NULL");
    ROW(ad_where(f.a, NULL, f.b), "argument 'a' is NULL");
    ROW(ad_where(f.a, f.a, NULL), "argument 'b' is NULL");
    ROW(ad_where(f.i64, f.i64, f.i64), "got int64");
    ROW(ad_where(f.a, f.a, f.f32), "dtypes differ: float64 vs float32");
    ROW(ad_where(f.v4, f.a, f.b), "shapes [4] (cond), [2,3] (a) and [2,3] (b) cannot be broadcast together");
    ROW(ad_where(f.other, f.a, f.b), "inputs belong to different tapes");
    ROW(ad_sum_to(NULL, 1, (int64_t[]){3}), "argument 'x' is NULL");
    ROW(ad_sum_to(f.a, 1, (int64_t[]){4}), "shape [2,3] cannot be summed to [4]");
    ROW(ad_sum_to(f.a, 3, (int64_t[]){2, 2, 3}), "cannot be summed to [2,2,3]");
    ROW(ad_sum_to(f.a, -1, NULL), "ndim");
    ROW(ad_sum_to(f.a, 2, NULL), "shape is NULL");
    ROW(ad_sum_to(f.i64, 1, (int64_t[]){1}), "got int64");
    teardown(&f);
}
END_TEST

START_TEST(shape_ops)
{
    fx f = setup();
    ad_tensor *two[2] = {f.a, f.b};
    /* views */
    ROW(ad_reshape(NULL, AD_SHAPE(6)), "argument 'x' is NULL");
    ROW(ad_reshape(f.dead, AD_SHAPE(6)), "is not a live tensor");
    ROW(ad_reshape(f.a, AD_SHAPE(7)), "cannot reshape [2,3] (6 elements) to [7]");
    ROW(ad_reshape(f.a, AD_SHAPE(-1, -1)), "more than one extent is -1");
    ROW(ad_reshape(f.a, AD_SHAPE(-2, 3)), "negative extent -2");
    ROW(ad_reshape(f.a, 9, (int64_t[9]){1}), "bad ndim 9 or NULL shape");
    ROW(ad_reshape(f.a, 2, NULL), "bad ndim 2 or NULL shape");
    ROW(ad_reshape(ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(0, 3)), AD_SHAPE(-1, 0)), "the -1 extent is ambiguous");
    ROW(ad_reshape(f.p, AD_SHAPE(6)), "no tape is active to record on");
    ROW(ad_flatten(NULL, 0, -1), "argument 'x' is NULL");
    ROW(ad_flatten(f.a, 1, 0), "start 1 (dimension 1) is after end 0 (dimension 0)");
    ROW(ad_flatten(f.a, 0, 2), "axis 2 out of range");
    ROW(ad_flatten(f.a, -3, 1), "axis -3 out of range");
    ROW(ad_squeeze(NULL, 0), "argument 'x' is NULL");
    ROW(ad_squeeze(f.a, 0), "dimension 0 of [2,3] has extent 2, not 1");
    ROW(ad_squeeze(f.a, 2), "axis 2 out of range");
    ROW(ad_squeeze(f.s0, 0), "the tensor is 0-dimensional");
    ROW(ad_unsqueeze(NULL, 0), "argument 'x' is NULL");
    ROW(ad_unsqueeze(f.a, 3), "axis 3 out of range -3..2 for a new dimension of [2,3]");
    ROW(ad_unsqueeze(f.a, -4), "axis -4 out of range");
    ROW(ad_unsqueeze(ad_zeros(f.t, AD_FLOAT64, 8, (int64_t[8]){1, 1, 1, 1, 1, 1, 1, 1}), 0),
        "a tensor has at most 8 dimensions");
    ROW(ad_expand(NULL, AD_SHAPE(2, 3)), "argument 'x' is NULL");
    ROW(ad_expand(f.a, AD_SHAPE(3)), "cannot expand a 2-dimensional tensor to 1 dimensions");
    ROW(ad_expand(f.a, AD_SHAPE(2, 4)), "cannot expand [2,3] to [2,4]");
    ROW(ad_expand(f.a, AD_SHAPE(-1, 2, 3)), "-1 is not allowed for a new leading dimension");
    ROW(ad_expand(f.a, 2, NULL), "shape is NULL for ndim 2");
    ROW(ad_permute(NULL, (int[]){1, 0}), "argument 'x' is NULL");
    ROW(ad_permute(f.a, NULL), "perm is NULL");
    ROW(ad_permute(f.a, (int[]){0, 0}), "names dimension 0 twice");
    ROW(ad_permute(f.a, (int[]){0, 2}), "out of range");
    ROW(ad_permute(f.a, (int[]){1, -1}), "names dimension 1 twice");
    ROW(ad_transpose(NULL, 0, 1), "argument 'x' is NULL");
    ROW(ad_transpose(f.a, 0, 2), "axis 2 out of range");
    ROW(ad_transpose(f.s0, 0, 1), "axis 1 out of range for a 0-dimensional tensor");
    ROW(ad_narrow(NULL, 0, 0, 1), "argument 'x' is NULL");
    ROW(ad_narrow(f.a, 1, 2, 2), "start 2, length 2 do not fit in extent 3 of dimension 1");
    ROW(ad_narrow(f.a, 1, 0, -1), "do not fit");
    ROW(ad_narrow(f.a, 1, -4, 1), "do not fit");
    ROW(ad_narrow(f.a, 2, 0, 1), "axis 2 out of range");
    ROW(ad_slice(NULL, 0, 0, 1, 1), "argument 'x' is NULL");
    ROW(ad_slice(f.a, 0, 0, 2, 0), "step must be >= 1, got 0");
    ROW(ad_slice(f.a, 0, 0, 2, -1), "step must be >= 1, got -1");
    ROW(ad_slice(f.a, -3, 0, 2, 1), "axis -3 out of range");
    /* copies */
    ROW(ad_slice_scatter(NULL, f.a, 0, 0, 2, 1), "argument 'base' is NULL");
    ROW(ad_slice_scatter(f.a, NULL, 0, 0, 2, 1), "argument 'src' is NULL");
    ROW(ad_slice_scatter(f.a, f.v3, 0, 0, 2, 1), "src has shape [3], expected [2,3]");
    ROW(ad_slice_scatter(f.a, f.a, 0, 0, 2, 0), "step must be >= 1, got 0");
    ROW(ad_slice_scatter(f.a, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(2, 3)), 0, 0, 2, 1), "dtypes differ");
    ROW(ad_slice_scatter(f.a, f.other, 0, 0, 2, 1), "inputs belong to different tapes");
    ROW(ad_slice_scatter(f.a, f.a, 5, 0, 2, 1), "axis 5 out of range");
    ROW(ad_contiguous(NULL), "argument 'x' is NULL");
    ROW(ad_contiguous(f.dead), "is not a live tensor");
    ROW(ad_contiguous(f.p), "no tape is active to record on");
    ROW(ad_cast(NULL, AD_FLOAT32), "argument 'x' is NULL");
    ROW(ad_cast(f.a, (ad_dtype)6), "invalid dtype 6");
    ROW(ad_cast(f.a, AD_INT64), "cannot cast float64 to int64");
    ROW(ad_concat(NULL, 2, 0), "need a non-NULL array of n >= 1 tensors, got n = 2");
    ROW(ad_concat(two, 0, 0), "need a non-NULL array of n >= 1 tensors, got n = 0");
    ROW(ad_concat((ad_tensor *[]){f.a, NULL}, 2, 0), "argument");
    ROW(ad_concat((ad_tensor *[]){f.a, f.f32}, 2, 0), "tensor 1 is float32 but tensor 0 is float64");
    ROW(ad_concat((ad_tensor *[]){f.a, f.v3}, 2, 0), "tensor 1 has shape [3], expected [*,3]");
    ROW(ad_concat((ad_tensor *[]){f.s0, f.s0}, 2, 0), "tensor 0 is 0-dimensional");
    ROW(ad_concat(two, 2, 2), "axis 2 out of range");
    ROW(ad_concat((ad_tensor *[]){f.a, f.other}, 2, 0), "inputs belong to different tapes");
    ROW(ad_stack(NULL, 1, 0), "need a non-NULL array");
    ROW(ad_stack(two, -1, 0), "got n = -1");
    ROW(ad_stack((ad_tensor *[]){f.a, f.v3}, 2, 0), "tensor 1 has shape [3], expected [2,3] like tensor 0");
    ROW(ad_stack(two, 2, 3), "axis 3 out of range");
    ROW(ad_stack((ad_tensor *[]){f.a, f.f32}, 2, 0), "tensor 1 is float32 but tensor 0 is float64");
    /* indexing */
    ad_tensor *bad_idx = ad_from_array(f.t, AD_INT64, AD_SHAPE(2), ((int64_t[]){0, 5}));
    ad_tensor *neg_idx = ad_from_array(f.t, AD_INT64, AD_SHAPE(2), ((int64_t[]){0, -4}));
    ad_tensor *idx2 = ad_zeros(f.t, AD_INT64, AD_SHAPE(2, 3));
    ROW(ad_index_select(NULL, 0, f.i64), "argument 'x' is NULL");
    ROW(ad_index_select(f.a, 0, NULL), "argument 'index' is NULL");
    ROW(ad_index_select(f.a, 0, f.v3), "index must be int64, got float64");
    ROW(ad_index_select(f.a, 0, idx2), "index must be 1-D, got shape [2,3]");
    ROW(ad_index_select(f.a, 1, bad_idx), "= 5 is out of range [-3, 3) for dimension 1");
    ROW(ad_index_select(f.a, 1, neg_idx), "= -4 is out of range [-3, 3)");
    ROW(ad_index_select(f.a, 2, f.i64), "axis 2 out of range");
    ROW(ad_index_select(f.a, 0, ad_zeros(f.t2, AD_INT64, AD_SHAPE(1))), "different tapes");
    ROW(ad_index_add(NULL, 0, f.i64, f.a), "argument 'base' is NULL");
    ROW(ad_index_add(f.a, 1, NULL, f.a), "argument 'index' is NULL");
    ROW(ad_index_add(f.a, 1, f.i64, NULL), "argument 'src' is NULL");
    ROW(ad_index_add(f.a, 1, f.i64, f.v3), "src has shape [3], expected [2,3]");
    ROW(ad_index_add(f.a, 1, bad_idx, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2, 2))), "= 5 is out of range");
    ROW(ad_index_add(f.a, 1, f.i64, f.f32), "dtypes differ");
    ROW(ad_index_add(f.a, 1, idx2, f.a), "index must be 1-D");
    ROW(ad_index_add(f.a, 1, f.v3, f.a), "index must be int64");
    ROW(ad_gather(NULL, 0, idx2), "argument 'x' is NULL");
    ROW(ad_gather(f.a, 0, NULL), "argument 'index' is NULL");
    ROW(ad_gather(f.a, 0, f.i64), "index has shape [3] but x has shape [2,3]");
    ROW(ad_gather(f.a, 1, ad_zeros(f.t, AD_INT64, AD_SHAPE(3, 3))), "index shape [3,3] does not fit");
    ROW(ad_gather(f.a, 1, ad_full(f.t, AD_INT64, AD_SHAPE(2, 3), 3)), "= 3 is out of range [-3, 3)");
    ROW(ad_gather(f.a, 0, f.a), "index must be int64");
    ROW(ad_gather(f.a, 2, idx2), "axis 2 out of range");
    ROW(ad_scatter_add(NULL, 0, idx2, f.a), "argument 'base' is NULL");
    ROW(ad_scatter_add(f.a, 0, NULL, f.a), "argument 'index' is NULL");
    ROW(ad_scatter_add(f.a, 0, idx2, NULL), "argument 'src' is NULL");
    ROW(ad_scatter_add(f.a, 0, idx2, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2, 2))),
        "src has shape [2,2] but index has shape [2,3]");
    ROW(ad_scatter_add(f.a, 0, ad_full(f.t, AD_INT64, AD_SHAPE(2, 3), -3), f.a), "= -3 is out of range [-2, 2)");
    ROW(ad_scatter_add(f.a, 0, idx2, f.f32), "dtypes differ");
    teardown(&f);
}
END_TEST

START_TEST(linalg_and_loss)
{
    fx f = setup();
    ad_tensor *m34 = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 4));
    ad_tensor *m56 = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(5, 6));
    ROW(ad_matmul(NULL, m34), "argument 'a' is NULL");
    ROW(ad_matmul(m34, NULL), "argument 'b' is NULL");
    ROW(ad_matmul(m34, m56), "inner dimensions differ: [3,4] x [5,6]");
    ROW(ad_matmul(f.s0, m34), "0-d");
    ROW(ad_matmul(f.a, f.f32), "dtypes differ");
    ROW(ad_matmul(f.i64m, f.i64), "got int64");
    ROW(ad_matmul(ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2, 2, 3)), ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 3, 1))),
        "batch");
    ROW(ad_matmul(f.a, ad_ones(f.t2, AD_FLOAT64, AD_SHAPE(3, 4))), "different tapes");
    ROW(ad_matmul(f.dead, m34), "is not a live tensor");
    ROW(ad_linear(NULL, m34, NULL), "ad_linear: argument 'x' is NULL");
    ROW(ad_linear(m34, NULL, NULL), "ad_linear: argument 'w' is NULL");
    ROW(ad_linear(m34, m56, NULL), "x has 4 features but w is [5,6] (x [3,4])");
    ROW(ad_linear(m34, m34, f.v4), "bias must be [3] for w [3,4], got [4]");
    ROW(ad_linear(m34, f.v4, NULL), "expected x [..., in] and w [out, in]");
    ROW(ad_linear(f.s0, m34, NULL), "expected x [..., in] and w [out, in]");
    ROW(ad_linear(f.a, f.f32, NULL), "dtypes differ");
    ROW(ad_linear(f.i64m, f.i64m, NULL), "got int64");
    ROW(ad_linear(m34, ad_ones(f.t2, AD_FLOAT64, AD_SHAPE(2, 4)), NULL), "different tapes");
    ROW(ad_linear(f.dead, m34, NULL), "is not a live tensor");
    ROW(ad_dot(NULL, f.v3), "argument 'a' is NULL");
    ROW(ad_dot(f.v3, f.v4), "lengths differ: [3] x [4]");
    ROW(ad_dot(f.a, f.a), "expected two 1-D tensors, got [2,3] x [2,3]");
    ROW(ad_dot(f.v3, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(3))), "dtypes differ");
    ROW(ad_dot(f.i64, f.i64), "got int64");
    /* softmax family */
    ROW(ad_softmax_causal(NULL, 1.0), "argument 'x' is NULL");
    ROW(ad_softmax_causal(f.a, 1.0), "x must be [..., T, T], got [2,3]");
    ROW(ad_softmax_causal(f.v3, 1.0), "x must be [..., T, T], got [3]");
    ROW(ad_softmax_causal(ad_zeros(f.t, AD_FLOAT64, 2, (int64_t[]){2, 2}), NAN),
        "scale must be finite");
    ROW(ad_softmax_causal(f.i64m, 1.0), "got int64");
    ROW(ad_softmax(f.a, 2), "axis 2 out of range");
    ROW(ad_log_softmax(f.a, -3), "axis -3 out of range");
    /* losses */
    ad_tensor *lab = ad_from_array(f.t, AD_INT64, AD_SHAPE(2), ((int64_t[]){0, 2}));
    ad_tensor *lab_bad = ad_from_array(f.t, AD_INT64, AD_SHAPE(2), ((int64_t[]){0, 3}));
    ad_tensor *lab_neg = ad_from_array(f.t, AD_INT64, AD_SHAPE(2), ((int64_t[]){-1, 0}));
    ROW(ad_cross_entropy(NULL, lab, AD_REDUCTION_MEAN), "argument 'logits' is NULL");
    ROW(ad_cross_entropy(f.a, NULL, AD_REDUCTION_MEAN), "argument 'labels' is NULL");
    ROW(ad_cross_entropy(f.v3, lab, AD_REDUCTION_MEAN), "logits must be 2-D [N, C], got [3]");
    ROW(ad_cross_entropy(f.i64m, lab, AD_REDUCTION_MEAN), "got int64");
    ROW(ad_cross_entropy(f.a, f.v3, AD_REDUCTION_MEAN), "labels must be int64, got float64");
    ROW(ad_cross_entropy(f.a, f.i64, AD_REDUCTION_MEAN), "labels [3] do not match logits [2,3]: need [2]");
    ROW(ad_cross_entropy(f.a, lab_bad, AD_REDUCTION_MEAN), "label 3 at position 1 is out of range for 3 classes");
    ROW(ad_cross_entropy(f.a, lab_neg, AD_REDUCTION_SUM), "label -1 at position 0 is out of range");
    ROW(ad_cross_entropy(f.a, lab, (ad_reduction)3), "unknown reduction 3");
    ROW(ad_cross_entropy(f.a, lab, (ad_reduction)-1), "unknown reduction -1");
    ROW(ad_cross_entropy(f.a, ad_zeros(f.t2, AD_INT64, AD_SHAPE(2)), AD_REDUCTION_MEAN), "different tapes");
    ROW(ad_cross_entropy_ls(f.a, lab, AD_REDUCTION_MEAN, 1.5), "label smoothing 1.5 is not in [0, 1]");
    ROW(ad_cross_entropy_ls(f.a, lab, AD_REDUCTION_MEAN, -0.1), "is not in [0, 1]");
    ROW(ad_cross_entropy_ls(f.a, lab, AD_REDUCTION_MEAN, NAN), "is not in [0, 1]");
    ROW(ad_cross_entropy_ls(f.a, lab_bad, AD_REDUCTION_NONE, 0.1), "ad_cross_entropy_ls: label 3");
    ROW(ad_mse_loss(NULL, f.a, AD_REDUCTION_MEAN), "argument 'a' is NULL");
    ROW(ad_mse_loss(f.a, NULL, AD_REDUCTION_MEAN), "argument 'b' is NULL");
    ROW(ad_mse_loss(f.a, f.v3, AD_REDUCTION_MEAN), "shapes differ: [2,3] vs [3] (mse_loss does not broadcast)");
    ROW(ad_mse_loss(f.a, f.f32, AD_REDUCTION_MEAN), "dtypes differ");
    ROW(ad_mse_loss(f.i64m, f.i64m, AD_REDUCTION_MEAN), "got int64");
    ROW(ad_mse_loss(f.a, f.b, (ad_reduction)7), "unknown reduction 7");
    ROW(ad_mse_loss(f.a, f.other, AD_REDUCTION_SUM), "different tapes");
    /* op table */
    ROW_OK(ad_op_count(), ad_op_count() > 0);
    ROW_OK(ad_op_name(100000), ad_op_name(100000) == NULL);
    ROW_OK(ad_op_formula((size_t)-1), ad_op_formula((size_t)-1) == NULL);
    teardown(&f);
}
END_TEST

START_TEST(nn_ops)
{
    fx f = setup();
    const int k3[2] = {3, 3}, k2[2] = {2, 2};
    ad_tensor *w = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 2, 3, 3));
    ad_tensor *cols = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(1, 18, 4));
    ad_rng rng;
    ad_rng_init(&rng, 3);
    /* unfold / fold */
    ROW(ad_unfold(NULL, k3, NULL, NULL, NULL), "argument 'x' is NULL");
    ROW(ad_unfold(f.a, k3, NULL, NULL, NULL), "expected a 4-D input [N, C, H, W], got x [2,3]");
    ROW(ad_unfold(f.img, NULL, NULL, NULL, NULL), "kernel is NULL");
    ROW(ad_unfold(f.img, (int[]){0, 3}, NULL, NULL, NULL), "kernel 0x3: must be >= 1");
    ROW(ad_unfold(f.img, k3, (int[]){1, 0}, NULL, NULL), "stride 1x0: must be >= 1");
    ROW(ad_unfold(f.img, k3, NULL, (int[]){-1, 0}, NULL), "padding -1x0: must be >= 0");
    ROW(ad_unfold(f.img, k3, NULL, NULL, (int[]){0, 1}), "dilation 0x1: must be >= 1");
    ROW(ad_unfold(f.img, (int[]){5, 5}, NULL, NULL, NULL),
        "kernel 5x5 (dilation 1x1, so 5x5 input positions) does not fit in the padded input 4x4");
    ROW(ad_unfold(f.i64m, k3, NULL, NULL, NULL), "got int64");
    ROW(ad_fold(NULL, (int[]){4, 4}, k3, NULL, NULL, NULL), "argument 'cols' is NULL");
    ROW(ad_fold(f.a, (int[]){4, 4}, k3, NULL, NULL, NULL), "expected a 3-D input [N, C kh kw, L]");
    ROW(ad_fold(cols, NULL, k3, NULL, NULL, NULL), "output_size is NULL");
    ROW(ad_fold(cols, (int[]){0, 4}, k3, NULL, NULL, NULL), "output_size 0x4: must be >= 1");
    ROW(ad_fold(cols, (int[]){4, 4}, (int[]){4, 4}, NULL, NULL, NULL),
        "is not a multiple of the 4x4 = 16 kernel taps");
    ROW(ad_fold(cols, (int[]){5, 5}, k3, NULL, NULL, NULL), "has 4 columns, but output_size 5x5");
    ROW(ad_fold(cols, (int[]){4, 4}, NULL, NULL, NULL, NULL), "kernel is NULL");
    ROW(ad_fold(cols, (int[]){2, 2}, k3, NULL, NULL, NULL), "does not fit in the padded input 2x2");
    /* conv2d */
    ROW(ad_conv2d(NULL, w, NULL, NULL), "argument 'x' is NULL");
    ROW(ad_conv2d(f.img, NULL, NULL, NULL), "argument 'w' is NULL");
    ROW(ad_conv2d(f.img, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 4, 3, 3)), NULL, NULL),
        "input has 2 channels but weight expects 4 (groups 1): x [1,2,4,4], w [3,4,3,3]");
    ROW(ad_conv2d(f.img, w, f.v4, NULL), "bias");
    ROW(ad_conv2d(f.img, w, NULL, &(ad_conv2d_params){.groups = 2}), "groups");
    ROW(ad_conv2d(f.img, w, NULL, &(ad_conv2d_params){.groups = -1}), "groups");
    ROW(ad_conv2d(f.img, w, NULL, &(ad_conv2d_params){.stride = {-1, 1}}), "stride");
    ROW(ad_conv2d(f.img, w, NULL, &(ad_conv2d_params){.padding = {-2, 0}}), "padding");
    ROW(ad_conv2d(f.img, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(3, 2, 3, 3)), NULL, NULL), "w is float32 but x is float64");
    ROW(ad_conv2d(f.a, w, NULL, NULL), "4-D");
    ROW(ad_conv2d(f.img, f.a, NULL, NULL), "4-D");
    ROW(ad_conv2d(f.img, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 2, 5, 5)), NULL, NULL), "does not fit");
    ROW(ad_conv2d(f.img, ad_ones(f.t2, AD_FLOAT64, AD_SHAPE(3, 2, 3, 3)), NULL, NULL), "different tapes");
    /* conv2d_relu: ad_conv2d's checks, named for itself */
    ROW(ad_conv2d_relu(NULL, w, NULL, NULL), "ad_conv2d_relu: argument 'x' is NULL");
    ROW(ad_conv2d_relu(f.img, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 4, 3, 3)), NULL, NULL),
        "ad_conv2d_relu: input has 2 channels but weight expects 4 (groups 1): x [1,2,4,4], w [3,4,3,3]");
    ROW(ad_conv2d_relu(f.img, w, f.v4, NULL), "ad_conv2d_relu: bias must be [3]");
    ROW(ad_conv2d_relu(f.img, w, NULL, &(ad_conv2d_params){.padding = {-2, 0}}), "padding");
    ROW(ad_conv2d_relu(f.img, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(3, 2, 3, 3)), NULL, NULL),
        "w is float32 but x is float64");
    ROW(ad_conv2d_relu(f.a, w, NULL, NULL), "ad_conv2d_relu: x must be 4-D");
    ROW(ad_conv2d_relu(f.img, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 2, 5, 5)), NULL, NULL),
        "does not fit");
    /* conv_transpose2d: x [1,2,4,4], w [C_in 2, C_out 3, 3, 3] */
    {
        ad_tensor *wt = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2, 3, 3, 3));
        ROW(ad_conv_transpose2d(NULL, wt, NULL, NULL), "argument 'x' is NULL");
        ROW(ad_conv_transpose2d(f.img, NULL, NULL, NULL), "argument 'w' is NULL");
        ROW(ad_conv_transpose2d(f.a, wt, NULL, NULL), "x must be 4-D");
        ROW(ad_conv_transpose2d(f.img, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3, 3, 3, 3)), NULL, NULL),
            "x has 2 channels but w [3,3,3,3] expects 3");
        ROW(ad_conv_transpose2d(f.img, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(2, 3, 3, 3)), NULL, NULL),
            "w is float32 but x is float64");
        ROW(ad_conv_transpose2d(f.img, wt, f.v4, NULL), "bias must be [3] float64");
        ROW(ad_conv_transpose2d(f.img, wt, NULL, &(ad_conv2d_params){.stride = {2, 2}}),
            "stride 2x2: only stride 1 is supported");
        ROW(ad_conv_transpose2d(f.img, wt, NULL, &(ad_conv2d_params){.dilation = {1, 2}}),
            "dilation 1x2: only dilation 1 is supported");
        ROW(ad_conv_transpose2d(f.img, wt, NULL, &(ad_conv2d_params){.groups = 2}),
            "groups 2: only groups 1 is supported");
        ROW(ad_conv_transpose2d(f.img, wt, NULL, &(ad_conv2d_params){.padding = {-1, 0}}),
            "padding -1x0: must be >= 0");
        ROW(ad_conv_transpose2d(f.img, wt, NULL, &(ad_conv2d_params){.padding = {4, 0}}),
            "the output would be empty");
        ROW(ad_conv_transpose2d(f.img, ad_ones(f.t2, AD_FLOAT64, AD_SHAPE(2, 3, 3, 3)), NULL, NULL),
            "different tapes");
    }
    /* conv2d_weight: x [1,2,4,4], grad_output [1,3,2,2] -> [3,2,3,3] */
    {
        ad_tensor *gy = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(1, 3, 2, 2));
        const int64_t ws[4] = {3, 2, 3, 3};
        ROW(ad_conv2d_weight(NULL, ws, gy, NULL), "argument 'x' is NULL");
        ROW(ad_conv2d_weight(f.img, ws, NULL, NULL), "argument 'grad_output' is NULL");
        ROW(ad_conv2d_weight(f.img, NULL, gy, NULL), "weight_size is NULL");
        ROW(ad_conv2d_weight(f.img, ws, f.a, NULL), "grad_output must be 4-D");
        ROW(ad_conv2d_weight(f.img, (int64_t[]){3, 2, 2, 2}, gy, NULL),
            "weight_size [3,2,2,2] does not fit x [1,2,4,4], grad_output [1,3,2,2]");
        ROW(ad_conv2d_weight(f.img, ws, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(1, 3, 2, 2)), NULL),
            "grad_output is float32 but x is float64");
        ROW(ad_conv2d_weight(f.img, ws, gy, &(ad_conv2d_params){.stride = {1, 3}}),
            "stride 1x3: only stride 1 is supported");
        ROW(ad_conv2d_weight(f.img, ws, ad_ones(f.t2, AD_FLOAT64, AD_SHAPE(1, 3, 2, 2)), NULL),
            "different tapes");
    }
    /* pools */
    ROW(ad_max_pool2d(NULL, k2, NULL, NULL), "argument 'x' is NULL");
    ROW(ad_max_pool2d(f.a, k2, NULL, NULL), "4-D");
    ROW(ad_max_pool2d(f.img, NULL, NULL, NULL), "kernel is NULL");
    ROW(ad_max_pool2d(f.img, (int[]){0, 2}, NULL, NULL), "kernel 0x2");
    ROW(ad_max_pool2d(f.img, k2, (int[]){-1, 1}, NULL), "stride");
    ROW(ad_max_pool2d(f.img, k2, NULL, (int[]){2, 0}), "padding");
    ROW(ad_max_pool2d(f.img, (int[]){5, 5}, NULL, NULL), "does not fit");
    ROW(ad_max_pool2d(f.i64m, k2, NULL, NULL), "got int64");
    /* windows of padding alone: max read past the buffer, the mean was 0/0 */
    ROW(ad_max_pool2d(ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(1, 1, 0, 3)), k2, NULL, (int[]){1, 1}),
        "the input's height and width must be nonzero, got x [1,1,0,3]");
    ROW(ad_avg_pool2d(ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(1, 1, 3, 0)), k2, NULL, (int[]){1, 1},
                      false),
        "height and width must be nonzero");
    ROW(ad_avg_pool2d(NULL, k2, NULL, NULL, true), "argument 'x' is NULL");
    ROW(ad_avg_pool2d(f.img, k2, NULL, (int[]){-1, 0}, true), "padding");
    ROW(ad_avg_pool2d(f.img, k2, NULL, (int[]){1, 2}, false), "padding");
    ROW(ad_avg_pool2d(f.img, (int[]){2, -2}, NULL, NULL, true), "kernel 2x-2");
    /* dropout */
    ROW(ad_dropout(NULL, 0.5, true, &rng), "argument 'x' is NULL");
    ROW(ad_dropout(f.a, 1.5, true, &rng), "p must be in [0, 1], got 1.5");
    ROW(ad_dropout(f.a, NAN, true, &rng), "p must be in [0, 1], got nan");
    ROW(ad_dropout(f.a, -0.5, false, &rng), "p must be in [0, 1]");
    ROW(ad_dropout(f.a, 0.5, true, NULL), "rng is NULL (needed when training with 0 < p < 1)");
    ROW(ad_dropout(f.i64m, 0.5, true, &rng), "got int64");
    ROW(ad_rand_like(NULL, &rng, 0, 1), "ad_rand_like: argument 'x' is NULL");
    ROW(ad_rand_like(f.a, NULL, 0, 1), "ad_rand_like: rng is NULL");
    ROW(ad_rand_like(f.a, &rng, 1, 1), "ad_rand_like: need finite lo < hi, got [1, 1)");
    ROW(ad_rand_like(f.i64m, &rng, 0, 1), "got int64");
    ROW(ad_randn_like(NULL, &rng, 0, 1), "ad_randn_like: argument 'x' is NULL");
    ROW(ad_randn_like(f.a, &rng, 0, -1), "ad_randn_like: need a finite mean and a finite std >= 0, got mean 0, std -1");
    ROW(ad_randn_like(f.a, NULL, 0, 1), "ad_randn_like: rng is NULL");
    ck_assert_uint_eq(rng.counter, 0);
    /* embedding */
    ad_tensor *emb = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(5, 3));
    ROW(ad_embedding(NULL, f.i64), "argument 'weight' is NULL");
    ROW(ad_embedding(emb, NULL), "argument 'indices' is NULL");
    ROW(ad_embedding(f.v3, f.i64), "weight must be 2-D [V, D], got [3]");
    ROW(ad_embedding(emb, f.v3), "indices must be int64, got float64");
    ROW(ad_embedding(emb, ad_from_array(f.t, AD_INT64, AD_SHAPE(2, 2), ((int64_t[]){0, 1, 7, 2}))),
        "index 7 at position [1,0] is out of range for 5 embeddings (weight [5,3])");
    ROW(ad_embedding(emb, ad_from_array(f.t, AD_INT64, AD_SHAPE(1), ((int64_t[]){-1}))), "index -1");
    ROW(ad_embedding(emb, ad_zeros(f.t, AD_INT64, 8, (int64_t[8]){1, 1, 1, 1, 1, 1, 1, 1})),
        "indices have 8 dimensions; at most 7 are allowed");
    ROW(ad_embedding(f.i64m, f.i64), "got int64");
    /* normalisation */
    {
        ad_tensor *g8 = ad_zeros(f.t, AD_FLOAT64, 2, (int64_t[]){2, 8});
        ad_tensor *c2 = ad_zeros(f.t, AD_FLOAT64, 2, (int64_t[]){2, 2});
        ROW(ad_fused_lstm_cell(NULL, g8, c2), "argument 'gx' is NULL");
        ROW(ad_fused_lstm_cell(g8, g8, NULL), "argument 'c' is NULL");
        ROW(ad_fused_lstm_cell(g8, g8, f.a), "need gx and gh [B, 4H] and c [B, H], got [2,8], "
                                             "[2,8], [2,3]");
        ROW(ad_fused_lstm_cell(g8, f.a, c2), "need gx and gh [B, 4H]");
        ROW(ad_fused_lstm_cell(g8, g8, ad_zeros(f.t, AD_FLOAT32, 2, (int64_t[]){2, 2})),
            "one floating dtype");
        ROW(ad_fused_lstm_cell(g8, g8, f.i64m), "got int64");
        ad_tensor *gs = ad_zeros(f.t, AD_FLOAT64, 3, (int64_t[]){3, 2, 8});
        ad_tensor *w82 = ad_zeros(f.t, AD_FLOAT64, 2, (int64_t[]){8, 2});
        ROW(ad_lstm_recurrence(NULL, w82, c2, c2), "argument 'gx' is NULL");
        ROW(ad_lstm_recurrence(gs, w82, c2, NULL), "argument 'c0' is NULL");
        ROW(ad_lstm_recurrence(g8, w82, c2, c2), "need gx [T, B, 4H] (T >= 1), w_hh [4H, H], "
                                                 "h0 and c0 [B, H], got [2,8], [8,2], [2,2], [2,2]");
        ROW(ad_lstm_recurrence(gs, f.a, c2, c2), "need gx [T, B, 4H]");
        ROW(ad_lstm_recurrence(gs, w82, f.a, c2), "need gx [T, B, 4H]");
        ROW(ad_lstm_recurrence(gs, w82, c2, ad_zeros(f.t, AD_FLOAT32, 2, (int64_t[]){2, 2})),
            "must share one dtype");
        ad_tensor *g6 = ad_zeros(f.t, AD_FLOAT64, 3, (int64_t[]){3, 2, 6});
        ad_tensor *w62 = ad_zeros(f.t, AD_FLOAT64, 2, (int64_t[]){6, 2});
        ad_tensor *b6 = ad_zeros(f.t, AD_FLOAT64, 1, (int64_t[]){6});
        ROW(ad_gru_recurrence(NULL, w62, b6, c2), "ad_gru_recurrence: argument 'gx' is NULL");
        ROW(ad_gru_recurrence(g6, NULL, b6, c2), "argument 'w_hh' is NULL");
        ROW(ad_gru_recurrence(g6, w62, b6, NULL), "argument 'h0' is NULL");
        ROW(ad_gru_recurrence(gs, w62, b6, c2), "ad_gru_recurrence: need gx [T, B, 3H] (T >= 1), "
                                                "w_hh [3H, H], b_hh [3H] or none and h0 [B, H], "
                                                "got [3,2,8], [6,2], [6], [2,2]");
        ROW(ad_gru_recurrence(g6, w62, f.v3, c2), "got [3,2,6], [6,2], [3], [2,2]");
        ROW(ad_gru_recurrence(g6, w62, NULL, f.a), "got [3,2,6], [6,2], none, [2,3]");
        ROW(ad_gru_recurrence(g6, w82, NULL, c2), "need gx [T, B, 3H]");
        ROW(ad_gru_recurrence(ad_zeros(f.t, AD_FLOAT64, 3, (int64_t[]){0, 2, 6}), w62, NULL, c2),
            "(T >= 1)");
        ROW(ad_gru_recurrence(g6, w62, b6, ad_zeros(f.t, AD_FLOAT32, 2, (int64_t[]){2, 2})),
            "must share one floating dtype");
        ROW(ad_gru_recurrence(ad_zeros(f.t, AD_INT64, 3, (int64_t[]){3, 2, 6}), w62, b6, c2),
            "got int64");
        ad_tensor *g2 = ad_zeros(f.t, AD_FLOAT64, 3, (int64_t[]){3, 2, 2});
        ROW(ad_rnn_recurrence(NULL, c2, c2, false), "ad_rnn_recurrence: argument 'gx' is NULL");
        ROW(ad_rnn_recurrence(g2, NULL, c2, false), "argument 'w_hh' is NULL");
        ROW(ad_rnn_recurrence(g2, c2, NULL, true), "argument 'h0' is NULL");
        ROW(ad_rnn_recurrence(g6, c2, c2, false), "ad_rnn_recurrence: need gx [T, B, H] (T >= 1), "
                                                  "w_hh [H, H] and h0 [B, H], got [3,2,6], [2,2], "
                                                  "[2,2]");
        ROW(ad_rnn_recurrence(g2, w62, c2, false), "got [3,2,2], [6,2], [2,2]");
        ROW(ad_rnn_recurrence(g2, c2, f.a, false), "got [3,2,2], [2,2], [2,3]");
        ROW(ad_rnn_recurrence(ad_zeros(f.t, AD_FLOAT64, 3, (int64_t[]){0, 2, 2}), c2, c2, false),
            "(T >= 1)");
        ROW(ad_rnn_recurrence(g2, c2, ad_zeros(f.t, AD_FLOAT32, 2, (int64_t[]){2, 2}), true),
            "must share one floating dtype");
        ROW(ad_rnn_recurrence(g2, f.i64m, c2, false), "got int64");
    }
    {
        ad_tensor *qkv = ad_zeros(f.t, AD_FLOAT64, 3, (int64_t[]){2, 5, 9});
        ROW(ad_causal_attention(NULL, 1, 1.0), "argument 'qkv' is NULL");
        ROW(ad_causal_attention(qkv, 4, 1.0), "ad_causal_attention: need qkv [B, T, 3D] with D a "
                                              "multiple of heads (4), got [2,5,9]");
        ROW(ad_causal_attention(qkv, 0, 1.0), "multiple of heads (0)");
        ROW(ad_causal_attention(f.a, 1, 1.0), "got [2,3]");
        ROW(ad_causal_attention(qkv, 3, NAN), "scale must be finite");
        ROW(ad_causal_attention(ad_zeros(f.t, AD_INT64, 3, (int64_t[]){1, 2, 3}), 1, 1.0),
            "argument 'qkv' must be float32 or float64, got int64");
    }
    ROW(ad_layer_norm(NULL, 1, NULL, NULL, 1e-5), "argument 'x' is NULL");
    ROW(ad_layer_norm(f.a, 0, NULL, NULL, 1e-5), "nnormdims");
    ROW(ad_layer_norm(f.a, 3, NULL, NULL, 1e-5), "nnormdims");
    ROW(ad_layer_norm(f.a, 1, f.v4, NULL, 1e-5), "weight");
    ROW(ad_layer_norm(f.a, 1, NULL, f.v4, 1e-5), "bias");
    ROW(ad_layer_norm(f.a, 1, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(3)), NULL, 1e-5), "float32");
    ROW(ad_layer_norm(f.a, 1, NULL, NULL, -1), "eps");
    ROW(ad_layer_norm(f.a, 1, NULL, NULL, NAN), "eps");
    ROW(ad_layer_norm(f.a, 1, NULL, NULL, INFINITY), "eps");
    ROW(ad_layer_norm(f.i64m, 1, NULL, NULL, 1e-5), "got int64");
    ad_tensor *rm = ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(3)), *rv = ad_ones(f.t, AD_FLOAT64, AD_SHAPE(3));
    ROW(ad_batch_norm(NULL, rm, rv, NULL, NULL, true, 0.1, 1e-5), "argument 'x' is NULL");
    ROW(ad_batch_norm(f.v3, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), "ndim");
    ROW(ad_batch_norm(f.a, rm, NULL, NULL, NULL, true, 0.1, 1e-5), "both");
    ROW(ad_batch_norm(f.a, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), "running");
    /* statistics written in place into an expanded view: the update was
     * applied three times to one element (0.271 for 0.1) */
    ad_tensor *rme = ad_expand(ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(1)), AD_SHAPE(3));
    ROW(ad_batch_norm(f.a, rme, rv, NULL, NULL, true, 0.1, 1e-5),
        "running_mean [3] has stride 0 in dimension 0 (an expanded view)");
    ROW(ad_batch_norm(f.a, f.v4, f.v4, NULL, NULL, true, 0.1, 1e-5), "[4]");
    ROW(ad_batch_norm(f.a, rm, rv, f.v4, NULL, true, 0.1, 1e-5), "weight");
    ROW(ad_batch_norm(f.a, rm, rv, NULL, f.v4, true, 0.1, 1e-5), "bias");
    ROW(ad_batch_norm(f.a, rm, rv, NULL, NULL, true, 1.5, 1e-5), "momentum");
    ROW(ad_batch_norm(f.a, rm, rv, NULL, NULL, true, NAN, 1e-5), "momentum");
    ROW(ad_batch_norm(f.a, rm, rv, NULL, NULL, true, 0.1, -1), "eps");
    ROW(ad_batch_norm(ad_ones(f.t, AD_FLOAT64, AD_SHAPE(1, 3)), NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
        "expected more than 1 value per channel when training");
    ad_tensor *rmg = ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(3));
    ad_set_requires_grad(rmg, true);
    ROW(ad_batch_norm(f.a, rmg, rv, NULL, NULL, true, 0.1, 1e-5), "require");
    ROW(ad_batch_norm(f.i64m, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), "got int64");
    {
        ad_tensor *cnt = ad_zeros(NULL, AD_INT64, 0, NULL);
        ROW(ad_batch_norm_tracked(NULL, rm, rv, cnt, NULL, NULL, true, 0.1, 1e-5),
            "ad_batch_norm_tracked: argument 'x' is NULL");
        ROW(ad_batch_norm_tracked(f.a, rm, rv, f.v3, NULL, NULL, true, 0.1, 1e-5),
            "ad_batch_norm_tracked: num_batches_tracked must be an int64 tensor of one element");
        ROW(ad_batch_norm_tracked(f.a, NULL, NULL, cnt, NULL, NULL, true, 0.1, 1e-5),
            "num_batches_tracked counts the updates of running_mean and running_var, which are "
            "NULL");
        ROW(ad_batch_norm_tracked(f.a, rm, rv, f.dead, NULL, NULL, true, 0.1, 1e-5),
            "is not a live tensor");
        ROW(ad_batch_norm_tracked(f.a, rm, rv, cnt, NULL, NULL, true, 1.5, 1e-5),
            "ad_batch_norm_tracked: momentum");
        /* counted once, by the call that succeeded */
        ROW_OK(ad_batch_norm_tracked(f.a, rm, rv, cnt, NULL, NULL, true, 0.1, 1e-5),
               ad_batch_norm_tracked(f.a, rm, rv, cnt, NULL, NULL, true, 0.1, 1e-5) &&
                   ad_item(cnt) == 1);
        ad_tensor_free(cnt);
    }
    teardown(&f);
}
END_TEST

/* ---- scalar.h ---------------------------------------------------------------------------- */
START_TEST(scalar_h)
{
    ad_tape *t = ad_tape_new(), *t2 = ad_tape_new();
    ad_scalar x = ad_scalar_var(t, 2), y = ad_scalar_var(t2, 3);
    ad_scalar inv = {NULL, 0, 0};
    ROW_S(ad_scalar_var(NULL, 1), "tape is NULL");
    ROW_S(ad_scalar_const(NULL, 1), "tape is NULL");
    ROW_OK(ad_scalar_ok(inv), !ad_scalar_ok(inv));
    ROW_OK(ad_scalar_value(inv), isnan(ad_scalar_value(inv)));
    ROW_OK(ad_scalar_grad(inv), isnan(ad_scalar_grad(inv)));
    ROW_RC(ad_scalar_backward(inv), "invalid scalar handle (tape is NULL)");
    /* binary: two tapes, invalid operands */
    ROW_S(ad_sadd(x, y), "operands belong to different tapes");
    ROW_S(ad_ssub(x, y), "operands belong to different tapes");
    ROW_S(ad_smul(x, inv), "invalid scalar handle");
    ROW_S(ad_sdiv(inv, x), "invalid scalar handle");
    ROW_S(ad_spow(x, y), "different tapes");
    ROW_S(ad_smax(inv, inv), "invalid scalar handle");
    ROW_S(ad_smin(x, y), "different tapes");
    ROW_S(ad_sadd_c(inv, 1), "invalid scalar handle");
    ROW_S(ad_smul_c(inv, 1), "invalid scalar handle");
    ROW_S(ad_ssub_c(inv, 1), "invalid scalar handle");
    ROW_S(ad_scsub(1, inv), "invalid scalar handle");
    ROW_S(ad_sdiv_c(inv, 1), "invalid scalar handle");
    ROW_S(ad_scdiv(1, inv), "invalid scalar handle");
    ROW_S(ad_spow_c(inv, 2), "invalid scalar handle");
    ad_scalar (*unary[])(ad_scalar) = {ad_sneg,  ad_sexp,     ad_slog,  ad_ssqrt, ad_ssin,
                                       ad_scos,  ad_stan,     ad_stanh, ad_ssigmoid,
                                       ad_srelu, ad_sabs,     ad_ssquare};
    const char *unames[] = {"ad_sneg",  "ad_sexp",     "ad_slog",  "ad_ssqrt", "ad_ssin",
                            "ad_scos",  "ad_stan",     "ad_stanh", "ad_ssigmoid",
                            "ad_srelu", "ad_sabs",     "ad_ssquare"};
    for (int i = 0; i < NELEMS(unary); i++) {
        log_row(unames[i]);
        ad_clear_error();
        ck_assert(!ad_scalar_ok(unary[i](inv)));
        ck_assert_msg(ad_error() && strstr(ad_error(), "invalid scalar handle"), "%s", unames[i]);
    }
    /* an invalid handle propagates and keeps the first message */
    ad_clear_error();
    ad_scalar e = ad_sadd(ad_smul(x, y), ad_ssin(x));
    ck_assert(!ad_scalar_ok(e));
    ck_assert(strstr(ad_error(), "ad_smul: operands belong to different tapes"));
    ad_clear_error();
    /* stale handles: recorded before a reset */
    ad_scalar a = ad_scalar_var(t, 1), b = ad_smul(a, x);
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ROW_S(ad_sexp(b), "scalar handle is stale: it was recorded before ad_tape_reset");
    ROW_S(ad_sadd(a, b), "stale");
    ROW_RC(ad_scalar_backward(b), "stale");
    ROW_VAL(double, ad_scalar_value(b), NAN, "stale");
    ROW_VAL(double, ad_scalar_grad(b), NAN, "stale");
    double g[2];
    ad_scalar z = ad_scalar_var(t, 1), w = ad_ssin(z);
    ROW_RC(ad_scalar_gradient(w, -1, &z, g), "n");
    ROW_RC(ad_scalar_gradient(w, 1, NULL, g), "NULL");
    ROW_RC(ad_scalar_gradient(w, 1, &z, NULL), "NULL");
    ROW_RC(ad_scalar_gradient(w, 1, &y, g), "xs[0] belongs to a different tape than y");
    ROW_RC(ad_scalar_gradient(inv, 1, &z, g), "invalid scalar handle");
    ROW_RC(ad_scalar_gradient(w, 1, (ad_scalar[]){{t, 1000, 0}}, g), "stale");
    ROW_RC(ad_scalar_replay(NULL, 1, &z, g), "NULL");
    ROW_RC(ad_scalar_replay(t, 1, NULL, g), "need n >= 0 and arrays");
    ROW_RC(ad_scalar_replay(t, 1, &z, NULL), "need n >= 0 and arrays");
    ROW_RC(ad_scalar_replay(t, -1, &z, g), "need n >= 0 and arrays");
    ROW_RC(ad_scalar_replay(t, 1, &w, g), "not a live variable");
    ROW_RC(ad_scalar_replay(t, 1, &y, g), "not a live variable");
    ROW_RC(ad_scalar_replay_gradient(inv, 1, &z, g, g), "invalid scalar handle");
    ROW_RC(ad_scalar_replay_gradient(w, -1, &z, g, g), "need n >= 0");
    ROW_RC(ad_scalar_replay_gradient(w, 1, NULL, g, g), "non-NULL vars, values and grad");
    ROW_RC(ad_scalar_replay_gradient(w, 1, &z, NULL, g), "non-NULL vars, values and grad");
    ROW_RC(ad_scalar_replay_gradient(w, 1, &z, g, NULL), "non-NULL vars, values and grad");
    ROW_RC(ad_scalar_replay_gradient(w, 1, &w, g, g), "vars[0] is not a live variable");
    ROW_RC(ad_scalar_replay_gradient(w, 1, &y, g, g), "vars[0] is not a live variable");
    ROW_RC(ad_scalar_replay_gradient(b, 1, &z, g, g), "stale");
    ROW_OK(ad_scalar_count(NULL), ad_scalar_count(NULL) == 0);
    ROW_RC(ad_scalar_reserve(NULL, 10), "tape is NULL");
    ROW_OK(ad_scalar_capacity(NULL), ad_scalar_capacity(NULL) == 0);
    ROW_OK(ad_scalar_alloc_count(NULL), ad_scalar_alloc_count(NULL) == 0);
    ad_tape_free(t);
    ad_tape_free(t2);
    ck_assert_msg(mismatches == 0, "%d rows did not match (see MISMATCH lines)", mismatches);
}
END_TEST

/* ---- transforms.h, gradcheck.h, graph.h ---------------------------------------------------- */
static ad_tensor *sumsq(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_sum(ad_square(in[0]), NULL, 0, false);
}
static ad_tensor *square_vec(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_square(in[0]);
}
static ad_tensor *fails(ad_tensor *const *in, int n, void *ctx)
{
    (void)in;
    (void)n;
    (void)ctx;
    ad_set_error("my_f: deliberately failing");
    return NULL;
}
static ad_tensor *int_out(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    return ad_zeros(ad_tensor_tape(in[0]), AD_INT64, AD_SHAPE(1));
}

START_TEST(transforms_gradcheck_graph)
{
    fx f = setup();
    ad_tensor *g[2], *y, *v, *H;
    ad_tensor *x = f.v3;
    ROW_RC(ad_grad(NULL, sumsq, NULL, 1, &x, g, NULL, 0), "tape");
    ROW_RC(ad_grad(f.t, NULL, NULL, 1, &x, g, NULL, 0), "NULL");
    ROW_RC(ad_grad(f.t, sumsq, NULL, 0, &x, g, NULL, 0), "need 1 to 64 inputs, got 0");
    ROW_RC(ad_grad(f.t, sumsq, NULL, 65, &x, g, NULL, 0), "need 1 to 64 inputs, got 65");
    ROW_RC(ad_grad(f.t, sumsq, NULL, 1, &f.other, g, NULL, 0), "tape");
    ROW_RC(ad_grad(f.t, fails, NULL, 1, &x, g, NULL, 0), "my_f: deliberately failing");
    ROW_RC(ad_grad(f.t, square_vec, NULL, 1, &x, g, NULL, 0), "one element");
    ROW_RC(ad_grad(f.t, int_out, NULL, 1, &x, g, NULL, 0), "int64");
    ROW_RC(ad_grad(f.t, sumsq, NULL, 1, (ad_tensor *[]){NULL}, g, NULL, 0), "NULL");
    ROW_RC(ad_vjp(f.t, square_vec, NULL, 1, &x, f.v4, &y, g, 0), "[4]");
    ROW_RC(ad_vjp(f.t, square_vec, NULL, 1, &x, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(3)), &y, g, 0),
           "float32");
    ROW_RC(ad_vjp(NULL, square_vec, NULL, 1, &x, f.v3, &y, g, 0), "tape");
    ROW_RC(ad_vjp(f.t, fails, NULL, 1, &x, f.v3, &y, g, 0), "deliberately failing");
    ROW_RC(ad_jvp(f.t, square_vec, NULL, 1, &x, &f.v4, &y, &v, 0), "[4]");
    ROW_RC(ad_jvp(f.t, NULL, NULL, 1, &x, &f.v3, &y, &v, 0), "NULL");
    ROW_RC(ad_jvp(f.t, fails, NULL, 1, &x, &f.v3, &y, &v, 0), "deliberately failing");
    ROW_RC(ad_jacobian(f.t, square_vec, NULL, 1, &x, g, (ad_jacobian_mode)9, 0), "mode");
    ROW_RC(ad_jacobian(f.t, fails, NULL, 1, &x, g, AD_JACOBIAN_AUTO, 0), "deliberately failing");
    ROW_RC(ad_jacobian(NULL, square_vec, NULL, 1, &x, g, AD_JACOBIAN_AUTO, 0), "tape");
    ROW_RC(ad_hessian(f.t, square_vec, NULL, x, &H, 0), "one element");
    ROW_RC(ad_hessian(f.t, sumsq, NULL, NULL, &H, 0), "NULL");
    ROW_RC(ad_hessian(f.t, fails, NULL, x, &H, 0), "deliberately failing");
    ROW_RC(ad_hvp(f.t, sumsq, NULL, x, f.v4, &H, 0), "[4]");
    ROW_RC(ad_hvp(f.t, sumsq, NULL, x, NULL, &H, 0), "NULL");
    ROW_RC(ad_hvp(f.t, fails, NULL, x, f.v3, &H, 0), "deliberately failing");
    ROW_RC(ad_gradcheck(NULL, NULL, 1, &x, NULL), "NULL");
    ROW_RC(ad_gradcheck(sumsq, NULL, 0, &x, NULL), "n");
    ROW_RC(ad_gradcheck(sumsq, NULL, 1, NULL, NULL), "inputs is NULL");
    ROW_RC(ad_gradcheck(fails, NULL, 1, &f.p, NULL), "deliberately failing");
    ROW_RC(ad_gradcheck(sumsq, NULL, 1, &f.p, &(ad_gradcheck_opts){.eps = -1}), "eps");
    ROW_RC(ad_gradcheck(sumsq, NULL, 1, &f.p, &(ad_gradcheck_opts){.eps = NAN}), "eps");
    ROW_RC(ad_gradgradcheck(NULL, NULL, 1, &x, NULL), "NULL");
    ROW_RC(ad_gradgradcheck(fails, NULL, 1, &f.p, NULL), "deliberately failing");
    ROW_RC(ad_gradgradcheck(sumsq, NULL, 1, &f.p, &(ad_gradcheck_opts){.atol = -1}), "atol");
    ad_gradcheck_result gr;
    ROW_RC(ad_gradcheck_ex(NULL, NULL, 1, &x, NULL, &gr), "NULL");
    ck_assert(gr.checked == 0 && gr.input == -1); /* filled on errors too */
    ROW_RC(ad_gradcheck_ex(fails, NULL, 1, &f.p, NULL, NULL), "deliberately failing");
    ROW_RC(ad_gradgradcheck_ex(sumsq, NULL, 65, &f.p, NULL, &gr), "need 1 to 64 inputs");
    ROW_RC(ad_gradgradcheck_ex(fails, NULL, 1, &f.p, NULL, NULL), "deliberately failing");
    /* graph.h */
    FILE *out = fopen("/dev/null", "w");
    ck_assert_ptr_nonnull(out);
    ROW_RC(ad_graph_dot(NULL, &f.a, 1, NULL), "NULL");
    ROW_RC(ad_graph_dot(out, NULL, 1, NULL), "NULL");
    ROW_RC(ad_graph_dot(out, &f.a, -1, NULL), "n");
    ROW_RC(ad_graph_dot(out, (ad_tensor *[]){NULL}, 1, NULL), "NULL");
    ad_tensor *r1 = ad_exp(f.p2a), *r2 = ad_exp(f.p2b);
    ROW_RC(ad_graph_dot(out, (ad_tensor *[]){r1, r2}, 2, NULL), "outputs[1] is recorded on another tape");
    ROW_RC(ad_graph_dot(out, &f.dead, 1, NULL), "is not a live tensor");
    ROW_RC(ad_graph_dot(out, &f.a, 1, &(ad_dot_opts){.precision = 99}), "precision");
    ROW_RC(ad_graph_dot(out, &f.a, 1, &(ad_dot_opts){.precision = 6, .rankdir = "XY"}), "rankdir");
    ROW_RC(ad_graph_dot(out, &f.a, 1, &(ad_dot_opts){.precision = 6, .max_values = -1}), "max_values");
    ROW_RC(ad_graph_dot_tape(NULL, f.t, NULL), "NULL");
    ROW_RC(ad_graph_dot_tape(out, NULL, NULL), "NULL");
    ROW_RC(ad_graph_dot_tape(out, f.t, &(ad_dot_opts){.precision = 0}), "precision");
    fclose(out);
    teardown(&f);
}
END_TEST

/* ---- ffi.h ------------------------------------------------------------------------------------ */
static double two_args(double a, double b) { return a * b; }
static ad_scalar sfun(const ad_scalar *x, int n, void *p)
{
    (void)n;
    (void)p;
    return ad_smul(x[0], x[0]);
}

START_TEST(ffi_h)
{
    fx f = setup();
    ROW(ad_foreign_new(NULL, AD_FN(two_args), NULL), "NULL");
    ROW(ad_foreign_new("d(dd)", NULL, NULL), "NULL");
    ROW(ad_foreign_new("double (double double)", AD_FN(two_args), NULL),
        "expected ',' or ')' at column 16 in \"double (double double)\"");
    ROW(ad_foreign_new("void (double)", AD_FN(two_args), NULL), "returns void");
    ROW(ad_foreign_new("d(q)", AD_FN(two_args), NULL), "column");
    ROW(ad_foreign_new("", AD_FN(two_args), NULL), "column");
    ROW(ad_foreign_new("d(ddddddddddddddddd)", AD_FN(two_args), NULL), "16");
    ROW(ad_foreign_new_desc(NULL), "NULL");
    ROW(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(di)", .fn = AD_FN(two_args),
                                               .partials = {NULL, AD_FN(two_args)}}),
        "partials[1] given for argument 1, an int");
    ROW(ad_foreign_new_desc(&(ad_foreign_desc){.signature = "d(dd)"}), "fn");
    ROW_OK(ad_foreign_free(NULL), (ad_foreign_free(NULL), true));
    ROW(ad_foreign_name(NULL), "f is NULL");
    ROW_OK(ad_foreign_nargs(NULL), ad_foreign_nargs(NULL) == -1);
    /* The signature parser reports through its err buffer, not ad_error(). */
    ad_ffi_sig sig_;
    char err_[128], buf_[64];
    ROW_OK(ad_ffi_parse(NULL, &sig_, err_, sizeof err_),
           ad_ffi_parse(NULL, &sig_, err_, sizeof err_) == -1 && strstr(err_, "NULL"));
    ROW_OK(ad_ffi_parse("d(dd)", NULL, err_, sizeof err_),
           ad_ffi_parse("d(dd)", NULL, err_, sizeof err_) == -1 && err_[0]);
    ROW_OK(ad_ffi_classify(NULL, err_, sizeof err_),
           ad_ffi_classify(NULL, err_, sizeof err_) == -1 && strstr(err_, "NULL"));
    ROW_OK(ad_ffi_type_name((ad_ctype)99), strcmp(ad_ffi_type_name((ad_ctype)99), "?") == 0);
    ROW_OK(ad_ffi_format(NULL, buf_, sizeof buf_),
           (ad_ffi_format(NULL, buf_, sizeof buf_), buf_[0] == '\0'));
    ad_foreign *op = ad_foreign_new("d(dd)", AD_FN(two_args), "f");
    ck_assert_ptr_nonnull(op);
    ROW(ad_foreign_call(NULL, 2, (ad_tensor *[]){f.a, f.b}), "NULL");
    ROW(ad_foreign_call(op, 1, (ad_tensor *[]){f.a}), "expected 2 arguments, got 1");
    ROW(ad_foreign_call(op, 2, NULL), "NULL");
    ROW(ad_foreign_call(op, 2, (ad_tensor *[]){f.a, f.f32}), "argument 1 is float32, the signature says double");
    ROW(ad_foreign_call(op, 2, (ad_tensor *[]){f.a, f.v4}), "broadcast");
    ROW(ad_foreign_call(op, 2, (ad_tensor *[]){f.a, NULL}), "NULL");
    ROW(ad_foreign_call(op, 2, (ad_tensor *[]){f.a, f.other}), "different tapes");
    ad_foreign_free(op);
    ROW(ad_callback_new(NULL, 2, 0), "NULL");
    ROW(ad_callback_new(sumsq, 0, 0), "1..1000000");
    ROW(ad_callback_new(sumsq, 2, 1u << 7), "flags");
    ROW(ad_callback_new_scalar(NULL, 2, 0), "NULL");
    ROW(ad_callback_new_scalar(sfun, -3, 0), "1..1000000");
    ROW(ad_callback_new_scalar(sfun, 2, AD_CALLBACK_REPLAY), "flags");
    ROW_OK(ad_callback_free(NULL), (ad_callback_free(NULL), true));
    ROW(ad_callback_value(NULL), "NULL");
    ROW(ad_callback_gradient(NULL), "NULL");
    ROW(ad_callback_value_gradient(NULL), "NULL");
    ROW_OK(ad_callback_nargs(NULL), ad_callback_nargs(NULL) == -1);
    teardown(&f);
}
END_TEST

/* ---- alloc.h: the allocator fails only when out of memory, which the
 * allocation counter of the fault-injection tests makes happen here. */
START_TEST(alloc_h)
{
    ad__alloc_fail_in = 1;
    ROW(ad_malloc(16), "ad_malloc: out of memory for 16 bytes");
    ad__alloc_fail_in = 1;
    ROW(ad_calloc(4, 8), "ad_calloc: out of memory for 4 x 8 bytes");
    ROW(ad_calloc(SIZE_MAX / 2, 3), "overflow size_t");
    char *p = ad_malloc(0); /* a unique pointer, not NULL */
    ck_assert_ptr_nonnull(p);
    ad_free(p);
    p = ad_malloc(4);
    ck_assert_ptr_nonnull(p);
    memcpy(p, "abc", 4);
    ad__alloc_fail_in = 1;
    ROW(ad_realloc(p, 1 << 20), "ad_realloc: out of memory for 1048576 bytes");
    ck_assert_str_eq(p, "abc"); /* p is left as it was */
    ad_free(p);
    ROW_OK(ad_free(NULL), (ad_free(NULL), true));
    ck_assert_int_eq(ad__alloc_fail_in, 0);
    ROW_RC(ad_set_allocator(&(ad_allocator){0}), "ad_set_allocator: malloc_fn, calloc_fn, "
                                                 "realloc_fn and free_fn must all be set");
    ROW_OK(ad_set_allocator(NULL), ad_set_allocator(NULL) == 0);
}
END_TEST

/* ---- nn/ --------------------------------------------------------------------------------------- */
/* ---- custom.h and the short reductions ---- */

static ad_tensor *id_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)ctx, (void)n, (void)u;
    return ad_mul_scalar(in[0], 1);
}
/* saves the tensor it is given as user, which the rows make dead */
static ad_tensor *save_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n;
    ad_tensor *t = u;
    return ad_custom_save(ctx, 1, &t) ? NULL : ad_mul_scalar(in[0], 1);
}

static int ckpt_fn(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout, (void)ctx;
    out[0] = ad_sin(in[0]);
    return out[0] ? 0 : -1;
}

START_TEST(custom_h_and_short_reductions)
{
    fx f = setup();
    ROW(ad_custom_new(NULL), "ad_custom_new: desc is NULL");
    ROW(ad_custom_new(&(ad_custom_desc){.nin = 1, .forward = id_fw}), "name is NULL or empty");
    ROW(ad_custom_new(&(ad_custom_desc){.name = "x", .nin = 0, .forward = id_fw}),
        "x: nin 0 out of range 1..16");
    ROW(ad_custom_new(&(ad_custom_desc){.name = "x", .nin = 1}), "x: forward is NULL");
    ROW_OK(ad_custom_free(NULL), (ad_custom_free(NULL), true));
    ROW(ad_custom_name(NULL), "ad_custom_name: op is NULL");
    ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "id", .nin = 1, .forward = id_fw});
    ck_assert_ptr_nonnull(op);
    ROW(ad_custom_call(NULL, 1, &f.a), "ad_custom_call: op is NULL");
    ROW(ad_custom_call(op, 2, (ad_tensor *[]){f.a, f.b}), "custom:id: expected 1 input, got 2");
    ROW(ad_custom_call(op, 1, NULL), "custom:id: in is NULL");
    ROW(ad_custom_call(op, 1, &f.dead), "ad_custom_call: argument 'in[0]' is not a live tensor");
    ROW(ad_custom_call(op, 1, (ad_tensor *[]){NULL}), "ad_custom_call: argument 'in[0]' is NULL");
    ROW_RC(ad_custom_check(NULL, 1, &f.a, NULL), "ad_custom_check: op is NULL");
    ROW_RC(ad_custom_check(op, 1, &f.a, NULL), "custom:id has no backward to check");
    ROW_RC(ad_custom_save(NULL, 1, &f.a), "ad_custom_save: ctx is NULL");
    ROW(ad_custom_saved(NULL, 0), "ad_custom_saved: ctx is NULL");
    ROW_OK(ad_custom_num_saved(NULL), ad_custom_num_saved(NULL) == -1);
    ROW_OK(ad_custom_needs_input_grad(NULL, 0), !ad_custom_needs_input_grad(NULL, 0));
    ROW_OK(ad_custom_tape(NULL), ad_custom_tape(NULL) == NULL);
    ad_custom *sv = ad_custom_new(&(ad_custom_desc){.name = "sv", .nin = 1, .forward = save_fw,
                                                    .user = f.dead});
    ROW(ad_custom_call(sv, 1, &f.a), "ad_custom_save: argument 't[0]' is not a live tensor");
    ad_custom_free(sv);
    ad_custom_free(op);

    ad_tensor *co[1];
    ROW_RC(ad_checkpoint(NULL, NULL, 0, 1, &f.a, 1, co), "ad_checkpoint: the function is NULL");
    ROW_RC(ad_checkpoint(ckpt_fn, NULL, 0, 0, &f.a, 1, co), "need 1..64 inputs, got 0");
    ROW_RC(ad_checkpoint(ckpt_fn, NULL, 0, 1, &f.a, 65, co), "need 1..64 outputs, got 65");
    ROW_RC(ad_checkpoint(ckpt_fn, NULL, 0, 1, &f.a, 1, NULL), "(out NULL)");
    ROW_RC(ad_checkpoint(ckpt_fn, NULL, 0, 1, &f.dead, 1, co),
           "ad_checkpoint: argument 'in[0]' is not a live tensor");

    ROW(ad_sum_all(NULL), "ad_sum_all: argument 'x' is NULL");
    ROW(ad_mean_all(f.i64), "ad_mean_all: argument 'x' must be float32 or float64, got int64");
    ROW(ad_max_all(f.dead), "ad_max_all: argument 'x' is not a live tensor");
    ROW(ad_min_all(ad_narrow(f.v3, 0, 0, 0)), "ad_min_all: ");
    ROW(ad_sum_dim(f.a, 2, false), "ad_sum_dim: ");
    ROW(ad_mean_dim(f.a, -3, true), "ad_mean_dim: ");
    teardown(&f);
}
END_TEST

START_TEST(nn_data_and_checkpoint)
{
    fx f = setup();
    char dir[] = "/tmp/ad_badinput_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[512];
    /* files that do not exist */
    snprintf(path, sizeof path, "%s/missing", dir);
    ROW(nn_idx_load(NULL), "NULL");
    ROW(nn_idx_load(path), "missing");
    ROW(nn_csv_load(NULL, NULL), "NULL");
    ROW(nn_csv_load(path, NULL), "missing");
    ROW(nn_safetensors_inspect(NULL), "NULL");
    ROW(nn_safetensors_inspect(path), "missing");
    ROW(nn_safetensors_read(path, "x"), "missing");
    ROW(nn_mnist_load(NULL, true), "NULL");
    ROW(nn_mnist_load(dir, true), "train-images-idx3-ubyte.gz exists");
    ROW_RC(nn_load_safetensors(path, 1, (const char *[]){"a"}, &f.p, true), "missing");
    /* bad files */
    snprintf(path, sizeof path, "%s/bad", dir);
    FILE *w = fopen(path, "wb");
    fputs("\x01\x02\x03", w);
    fclose(w);
    ROW(nn_idx_load(path), "is truncated: it has 3 of the 4 magic bytes");
    ROW(nn_safetensors_inspect(path), "is truncated: 3 bytes, less than the 8-byte header length");
    ROW(nn_csv_load(path, NULL), "bad line 1, column 1: control character 0x01 in the field");
    /* (a field with control bytes is refused by their codes, never echoed) */
    w = fopen(path, "wb");
    fputs("1,2\n3\n", w);
    fclose(w);
    ROW(nn_csv_load(path, NULL), "line 2 has 1 fields, expected 2 as on line 1");
    ROW(nn_csv_load(path, &(nn_csv_options){.dtype = AD_INT64}), "dtype must be float32 or float64, got int64");
    /* saving */
    const char *names[2] = {"a", "a"};
    ad_tensor *ts[2] = {f.p, f.p};
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    ROW_RC(nn_save_safetensors(NULL, 1, names, ts, NULL), "NULL");
    ROW_RC(nn_save_safetensors(path, -1, names, ts, NULL), "n");
    ROW_RC(nn_save_safetensors(path, 2, names, ts, NULL), "'a' is names[0] and names[1]");
    ROW_RC(nn_save_safetensors(path, 1, (const char *[]){""}, ts, NULL), "names[0] is empty");
    ROW_RC(nn_save_safetensors(path, 1, (const char *[]){"__metadata__"}, ts, NULL), "__metadata__");
    ROW_RC(nn_save_safetensors(path, 1, names, ts, "[1, 2]"), "metadata_json is invalid at byte 0: expected '{'");
    ROW_RC(nn_save_safetensors(path, 1, names, ts, "{\"k\": 3}"), "the metadata value of 'k' must be a string");
    ROW_RC(nn_save_safetensors("/nonexistent-dir/x.safetensors", 1, names, ts, NULL), "cannot create a temporary file next to /nonexistent-dir/x.safetensors");
    ck_assert_int_eq(nn_save_safetensors(path, 1, names, ts, NULL), 0);
    ROW_RC(nn_load_safetensors(path, 1, (const char *[]){"b"}, ts, true), "has no entry 'b'");
    ROW_RC(nn_load_safetensors(path, 1, names, &f.v3, true), "'a' has shape [2,3] in the file, the tensor is [3]");
    ROW_RC(nn_load_safetensors(path, 1, names, &f.f32, true), "'a' is F64 in the file, the tensor is float32");
    ROW_RC(nn_load_safetensors(path, -1, names, ts, true), "n");
    ROW(nn_safetensors_read(path, "b"), "'b'");
    ROW(nn_safetensors_read(path, NULL), "NULL");
    ROW_OK(nn_safetensors_info_free(NULL), (nn_safetensors_info_free(NULL), true));
    ROW(nn_safetensors_metadata(NULL, "k"), "nn_safetensors_metadata: info is NULL");
    ROW_RC(nn_idx_save(NULL, NULL), "NULL");
    nn_idx bad = {.type = (nn_idx_type)3, .ndim = 1, .dims = {2}, .numel = 2,
                  .data = (uint8_t[]){1, 2}};
    snprintf(path, sizeof path, "%s/x.idx", dir);
    ROW_RC(nn_idx_save(path, &bad), "invalid type code 0x03");
    bad.type = NN_IDX_UINT8;
    bad.ndim = 0;
    ROW_RC(nn_idx_save(path, &bad), "ndim 0 out of range 1..8");
    ROW_OK(nn_idx_free(NULL), (nn_idx_free(NULL), true));
    ROW_OK(nn_mnist_free(NULL), (nn_mnist_free(NULL), true));
    ROW_OK(nn_idx_type_name((nn_idx_type)3), strcmp(nn_idx_type_name((nn_idx_type)3), "invalid") == 0);
    ROW_VAL(size_t, nn_idx_type_size((nn_idx_type)3), 0, "nn_idx_type_size: invalid type code 0x03");
    /* loaders */
    nn_loader_options o = {.batch_size = 0};
    ad_tensor *xs = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(4, 2)), *ys = ad_zeros(NULL, AD_INT64, AD_SHAPE(3));
    ROW(nn_loader_from_tensors(xs, NULL, &o), "batch_size must be at least 1, got 0");
    o.batch_size = 2;
    ROW(nn_loader_from_tensors(NULL, NULL, &o), "NULL");
    ROW(nn_loader_from_tensors(xs, ys, &o), "x has 4 samples but y has 3");
    o.limit = 9;
    ROW(nn_loader_from_tensors(xs, NULL, &o), "limit 9 out of range 0..4");
    o.limit = 0;
    o.drop_last = true;
    o.batch_size = 5;
    ROW(nn_loader_from_tensors(xs, NULL, &o), "drop_last with batch_size 5 and only 4 samples leaves no batch");
    ROW(nn_loader_from_idx(NULL, NULL, &o), "NULL");
    /* a struct filled by hand whose extents do not match its data (read
     * past the buffer) or with too many extents */
    uint8_t pix[16] = {0};
    nn_idx lie = {NN_IDX_UINT8, 3, {1000, 2, 2}, 16, pix};
    ROW(nn_loader_from_idx(&lie, NULL, &o), "numel 16 differs from the product of the extents");
    lie.ndim = 9;
    ROW(nn_loader_from_idx(&lie, NULL, &o), "ndim 9 out of range 1..8");
    ad_tensor *bx, *by;
    ROW_RC(nn_loader_next(NULL, &bx, &by), "NULL");
    ROW_RC(nn_loader_reset(NULL), "NULL");
    ROW_RC(nn_loader_set_epoch(NULL, 0), "NULL");
    ROW_OK(nn_loader_free(NULL), (nn_loader_free(NULL), true));
    ROW_VAL(int64_t, nn_loader_epoch(NULL), -1, "nn_loader_epoch: argument 'l' is NULL");
    ROW_VAL(int64_t, nn_loader_num_samples(NULL), -1, "nn_loader_num_samples: argument 'l' is NULL");
    ROW_VAL(int64_t, nn_loader_num_batches(NULL), -1, "nn_loader_num_batches: argument 'l' is NULL");
    ROW(nn_loader_order(NULL), "nn_loader_order: argument 'l' is NULL");
    ad_tensor_free(xs);
    ad_tensor_free(ys);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    teardown(&f);
}
END_TEST

START_TEST(nn_modules_optim_init_loss)
{
    fx f = setup();
    ad_rng rng;
    ad_rng_init(&rng, 5);
    int64_t fi, fo;
    /* modules */
    ROW(nn_linear(0, 3, true, AD_FLOAT64, &rng), "in_features and out_features must be >= 1, got 0 and 3");
    ROW(nn_linear(2, -1, true, AD_FLOAT64, &rng), "out_features");
    ROW(nn_linear((int64_t)1 << 32, (int64_t)1 << 32, true, AD_FLOAT32, &rng),
        "Linear weight: ad_empty: shape [4294967296,4294967296] has too many elements");
    ROW(nn_linear(2, 3, true, AD_INT64, &rng), "dtype must be AD_FLOAT32 or AD_FLOAT64, got 2");
    ROW(nn_linear(2, 3, true, AD_FLOAT64, NULL), "argument 'rng' is NULL");
    ROW(nn_conv2d(0, 3, (int[]){3, 3}, NULL, true, AD_FLOAT64, &rng), "in_channels");
    ROW(nn_conv2d(2, 3, NULL, NULL, true, AD_FLOAT64, &rng), "kernel");
    ROW(nn_conv2d(2, 3, (int[]){0, 3}, NULL, true, AD_FLOAT64, &rng), "kernel");
    ROW(nn_conv2d(3, 3, (int[]){3, 3}, &(ad_conv2d_params){.groups = 2}, true, AD_FLOAT64, &rng), "groups 2 must be >= 1 and divide in_channels 3");
    ROW(nn_max_pool2d(NULL, NULL, NULL), "kernel");
    ROW(nn_max_pool2d((int[]){0, 2}, NULL, NULL), "got kernel 0x2");
    ROW(nn_avg_pool2d(NULL, NULL, NULL, true), "kernel");
    ROW(nn_avg_pool2d((int[]){2, 2}, (int[]){-1, 1}, NULL, true), "stride -1x1");
    ROW_OK(nn_flatten(2, 1), true); /* checked when it runs: */
    {
        nn_module *fl = nn_flatten(2, 1);
        ad_tape_activate(f.t);
        ROW(nn_forward(fl, f.img), "start 2 (dimension 2) is after end 1");
        ad_tape_activate(NULL);
        nn_module_free(fl);
    }
    ROW(nn_dropout(1.5, 1), "p must be in [0, 1], got 1.5");
    ROW(nn_dropout(NAN, 1), "p must be in [0, 1], got nan");
    ROW(nn_layer_norm(0, (int64_t[]){3}, 1e-5, true, AD_FLOAT64), "ndim");
    ROW(nn_layer_norm(1, NULL, 1e-5, true, AD_FLOAT64), "NULL");
    ROW(nn_layer_norm(1, (int64_t[]){3}, -1, true, AD_FLOAT64), "eps");
    ROW(nn_layer_norm(1, (int64_t[]){0}, 1e-5, true, AD_FLOAT64), "normalized_shape[0] must be >= 1, got 0");
    ROW(nn_batch_norm2d(0, 1e-5, 0.1, true, AD_FLOAT64), "num_features");
    ROW(nn_batch_norm2d(3, 1e-5, 2, true, AD_FLOAT64), "momentum must be in [0, 1], got 2");
    ROW(nn_batch_norm2d(3, NAN, 0.1, true, AD_FLOAT64), "eps");
    ROW(nn_embedding(0, 3, AD_FLOAT64, &rng), "num_embeddings");
    ROW(nn_embedding(5, 3, AD_INT64, &rng), "dtype");
    ROW(nn_leaky_relu(NAN), "negative_slope must be finite, got nan");
    ROW(nn_sequential(-1, NULL), "n must be >= 0, got -1");
    /* Constructors without parameters cannot be given bad input. */
    nn_module *(*plain[])(void) = {nn_relu, nn_tanh, nn_sigmoid, nn_gelu};
    const char *plain_names[] = {"nn_relu", "nn_tanh", "nn_sigmoid", "nn_gelu"};
    for (int i = 0; i < 4; i++) {
        log_row(plain_names[i]);
        nn_module *m = plain[i]();
        row_done(plain_names[i], m != NULL, NULL);
        nn_module_free(m);
    }
    { /* the dim is checked when the layer runs */
        nn_module *sm = nn_softmax(5), *lsm = nn_log_softmax(-9);
        ROW_OK(nn_softmax(5), sm != NULL);
        ROW_OK(nn_log_softmax(-9), lsm != NULL);
        ad_tape_activate(f.t);
        ROW(nn_forward(sm, f.a), "axis 5 out of range for a 2-dimensional tensor");
        ROW(nn_forward(lsm, f.a), "axis -9 out of range");
        ad_tape_activate(NULL);
        nn_module_free(sm);
        nn_module_free(lsm);
    }
    ROW(nn_sequential(1, (nn_module *[]){NULL}), "module 0 is NULL");
    ROW(nn_module_new(NULL, NULL), "type is NULL or lacks a name or forward function");
    ROW(nn_forward(NULL, f.a), "NULL");
    nn_module *lin = nn_linear(3, 2, true, AD_FLOAT64, &rng);
    ck_assert(lin != NULL);
    ad_tape_activate(f.t);
    ROW(nn_forward(lin, NULL), "argument 'x' is NULL");
    ROW(nn_forward(lin, f.v4), "input has 4 features (x [4]) but the layer expects 3");
    ROW(nn_forward(lin, f.f32), "dtypes differ: float32 vs float64");
    ad_tape_activate(NULL);
    ROW_RC(nn_train(NULL, true), "NULL");
    ROW_RC(nn_eval(NULL), "NULL");
    ROW_VAL(bool, nn_is_training(NULL), false, "nn_is_training: argument 'm' is NULL");
    ROW_OK(nn_module_free(NULL), (nn_module_free(NULL), true));
    ROW(nn_parameters(NULL), "NULL");
    ROW(nn_buffers(NULL), "NULL");
    ROW(nn_state_dict(NULL), "NULL");
    ROW(nn_named_tensors_new(-1, NULL, NULL), "n must be >= 0, got -1");
    ROW(nn_named_tensors_new(1, (const char *[]){NULL}, &f.a), "NULL");
    ROW(nn_named_tensors_new(1, (const char *[]){"a"}, (ad_tensor *[]){NULL}), "NULL");
    ROW_OK(nn_named_tensors_free(NULL), (nn_named_tensors_free(NULL), true));
    ROW(nn_get_parameter(NULL, "weight"), "NULL");
    ROW(nn_get_parameter(lin, "nope"), "the Linear has no parameter called 'nope'");
    ROW(nn_get_parameter(lin, NULL), "NULL");
    ROW(nn_get_buffer(lin, "nope"), "nope");
    ROW_VAL(int64_t, nn_num_parameters(NULL), -1, "NULL");
    ROW(nn_module_type_name(NULL), "nn_module_type_name: argument 'm' is NULL");
    char buf[64];
    ROW_OK(nn_module_describe(NULL, buf, sizeof buf), (nn_module_describe(NULL, buf, sizeof buf), true));
    ad_clear_error();
    ROW_VAL(int, nn_num_children(NULL), -1, "nn_num_children: argument 'm' is NULL");
    ROW(nn_child(lin, 0), "nn_child: child 0 out of range: the Linear has 0 children");
    ROW(nn_child(NULL, 0), "nn_child: argument 'm' is NULL");
    ROW(nn_child_name(lin, 5), "nn_child_name: child 5 out of range: the Linear has 0 children");
    ROW(nn_child_name(lin, -1), "child -1 out of range");
    ROW_RC(nn_module_print(NULL, stdout), "NULL");
    ROW_RC(nn_module_print(lin, NULL), "NULL");
    ROW_RC(nn_summary(NULL, 2, (int64_t[]){1, 3}, stdout), "NULL");
    ROW_RC(nn_summary(lin, 2, (int64_t[]){1, 4}, stdout), "input has 4 features");
    /* These take ownership of the module or tensor they are given and free
     * it on failure (nn/module.h), so each row gets a fresh one. */
    ROW_RC(nn_sequential_append(NULL, nn_relu()), "NULL");
    ROW_RC(nn_sequential_append(lin, nn_relu()), "not a Sequential");
    ROW_RC(nn_sequential_append(lin, NULL), "NULL");
    ROW(nn_module_state(NULL), "nn_module_state: argument 'm' is NULL");
    ROW(nn_module_type_of(NULL), "nn_module_type_of: argument 'm' is NULL");
    ROW_RC(nn_module_add_parameter(NULL, "w", ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2))), "NULL");
    ROW_RC(nn_module_add_parameter(lin, "weight", ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2))), "already has a parameter, buffer or child called 'weight'");
    ROW_RC(nn_module_add_parameter(lin, NULL, ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2))), "NULL");
    ROW_RC(nn_module_add_parameter(lin, "a.b", ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2))), "name 'a.b' contains '.'");
    ROW_RC(nn_module_add_parameter(lin, "x", ad_ones(NULL, AD_INT64, AD_SHAPE(2))), "int64");
    ROW_RC(nn_module_add_parameter(lin, "x", f.a), "'x' is on a tape");
    ROW_RC(nn_module_add_buffer(lin, "x", NULL), "NULL");
    ROW_RC(nn_module_add_buffer(lin, "bias", ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2))), "bias");
    ROW_RC(nn_module_add_child(lin, "c", NULL), "NULL");
    ROW_RC(nn_module_add_child(lin, "c.d", nn_relu()), "c.d");
    /* A cycle is refused and, as module.h says, leaves the child (m itself
     * or an ancestor of m) untouched: lin is still whole, freed once at
     * the end; the sanitizer build catches a double free or a leak. */
    ROW_RC(nn_module_add_child(lin, "me", lin), "cannot add the Linear (a root) as child 'me' of itself: that would make a cycle");
    ck_assert_int_eq(nn_num_parameters(lin), 8);
    /* optimisers */
    nn_named_tensors *params = nn_parameters(lin);
    ck_assert_ptr_nonnull(params);
    ROW(nn_sgd(NULL, NULL), "NULL");
    ROW(nn_sgd(params, &(nn_sgd_options){.lr = -1}), "learning rate must be finite and >= 0, got -1");
    ROW(nn_sgd(params, &(nn_sgd_options){.lr = NAN}), "learning rate must be finite and >= 0, got nan");
    ROW(nn_sgd(params, &(nn_sgd_options){.lr = 0.1, .momentum = -1}), "momentum must be in [0, 1), got -1");
    ROW(nn_sgd(params, &(nn_sgd_options){.lr = 0.1, .nesterov = true}), "nesterov momentum needs momentum > 0");
    ROW(nn_adam(NULL, NULL), "NULL");
    ROW(nn_adam(params, &(nn_adam_options){.lr = 1e-3, .beta1 = 1.5, .beta2 = 0.999, .eps = 1e-8}), "beta1 must be in [0, 1), got 1.5");
    ROW(nn_adamw(params, &(nn_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = -1}), "eps must be finite and >= 0, got -1");
    ROW(nn_rmsprop(NULL, NULL), "NULL");
    ROW(nn_rmsprop(params, &(nn_rmsprop_options){.lr = -1}), "learning rate must be finite");
    ROW(nn_sgd_module(NULL, NULL), "nn_sgd_module: argument 'm' is NULL");
    ROW(nn_sgd_module(lin, &(nn_sgd_options){.lr = NAN}), "nn_sgd_module: learning rate must be finite and >= 0, got nan");
    ROW(nn_adam_module(NULL, NULL), "nn_adam_module: argument 'm' is NULL");
    ROW(nn_adam_module(lin, &(nn_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 1, .eps = 1e-8}), "nn_adam_module: beta2 must be in [0, 1), got 1");
    ROW(nn_adamw_module(NULL, NULL), "nn_adamw_module: argument 'm' is NULL");
    ROW(nn_adamw_module(lin, &(nn_adam_options){.lr = -2}), "nn_adamw_module: learning rate");
    ROW(nn_rmsprop_module(NULL, NULL), "nn_rmsprop_module: argument 'm' is NULL");
    ROW(nn_rmsprop_module(lin, &(nn_rmsprop_options){.lr = 0.1, .alpha = 0.9, .momentum = 1}), "nn_rmsprop_module: momentum must be in [0, 1), got 1");
    ROW_RC(nn_optim_step(NULL), "NULL");
    ROW_RC(nn_optim_zero_grad(NULL), "NULL");
    ROW_VAL(double, nn_optim_get_lr(NULL), NAN, "nn_optim_get_lr: argument 'opt' is NULL");
    nn_optim *opt = nn_sgd(params, NULL);
    ck_assert_ptr_nonnull(opt);
    ROW_RC(nn_optim_set_lr(opt, -1), "lr");
    ROW_RC(nn_optim_set_lr(opt, INFINITY), "lr");
    ROW_RC(nn_optim_set_lr(NULL, 0.1), "NULL");
    ROW(nn_optim_name(NULL), "nn_optim_name: argument 'opt' is NULL");
    ROW_VAL(int64_t, nn_optim_steps(NULL), -1, "NULL");
    ROW(nn_optim_state(NULL), "NULL");
    ROW_OK(nn_optim_free(NULL), (nn_optim_free(NULL), true));
    ROW_VAL(double, nn_lr_step(0.1, 5, 0, 0.5), NAN, "step_size must be >= 1, got 0");
    ROW_VAL(double, nn_lr_exponential(0.1, -1, 0.5), NAN, "the epoch must be >= 0, got -1");
    ROW_VAL(double, nn_lr_cosine(0.1, 5, 0, 0), NAN, "t_max must be >= 1, got 0");
    ROW_VAL(double, nn_lr_warmup(0.1, 5, -1, 0.1), NAN, "warmup must be >= 1, got -1");
    ROW_VAL(double, nn_clip_grad_norm(NULL, 1), -1, "argument 'params' is NULL");
    ROW_VAL(double, nn_clip_grad_norm(params, -1), -1, "max_norm must be >= 0, got -1");
    ROW_VAL(double, nn_clip_grad_norm(params, NAN), -1, "max_norm");
    ROW_RC(nn_clip_grad_value(NULL, 1), "NULL");
    ROW_RC(nn_clip_grad_value(params, -1), "clip must be finite and >= 0, got -1");
    ROW_RC(nn_grad_norm_report(NULL, stdout), "NULL");
    ROW_RC(nn_grad_norm_report(lin, NULL), "NULL");
    /* initialisers */
    ROW_VAL(double, nn_calculate_gain((nn_nonlinearity)42, 0), NAN, "unknown non-linearity 42");
    ROW_RC(nn_calculate_fans(NULL, &fi, &fo), "NULL");
    ROW_RC(nn_calculate_fans(f.s0, &fi, &fo), "need a tensor of at least 2 dimensions");
    ROW_RC(nn_init_uniform(NULL, 0, 1, &rng), "NULL");
    ROW_RC(nn_init_uniform(f.a, 1, 0, &rng), "need finite lo <= hi, got [1, 0]");
    ROW_RC(nn_init_uniform(f.a, 0, 1, NULL), "rng");
    ROW_RC(nn_init_normal(f.a, 0, -1, &rng), "std");
    ROW_RC(nn_init_normal(f.i64m, 0, 1, &rng), "int64");
    ROW_RC(nn_init_constant(NULL, 1), "NULL");
    ROW_RC(nn_init_zeros(NULL), "nn_init_zeros: argument 't' is NULL");
    ROW_RC(nn_init_ones(NULL), "nn_init_ones: argument 't' is NULL");
    ROW_RC(nn_init_ones(f.dead), "is not a live tensor");
    ROW_RC(nn_init_xavier_uniform(f.v3, 1, &rng), "at least 2 dimensions");
    ROW_RC(nn_init_xavier_normal(NULL, 1, &rng), "NULL");
    ROW_RC(nn_init_kaiming_uniform(f.a, 0, (nn_fan_mode)9, NN_RELU, &rng), "mode must be NN_FAN_IN or NN_FAN_OUT, got 9");
    ROW_RC(nn_init_kaiming_normal(f.s0, 0, NN_FAN_IN, NN_RELU, &rng), "at least 2 dimensions");
    /* losses */
    ad_tensor *lab = ad_from_array(f.t, AD_INT64, AD_SHAPE(2), ((int64_t[]){0, 5}));
    ROW(nn_mse_loss(NULL, f.a, NN_MEAN), "NULL");
    ROW(nn_mse_loss(f.a, f.v3, NN_MEAN), "input [2,3] and target [3] differ in shape");
    ROW(nn_mse_loss(f.a, f.b, (nn_reduction)9), "reduction");
    ROW(nn_l1_loss(f.a, f.f32, NN_SUM), "one floating dtype, got float64 and float32");
    ROW(nn_l1_loss(f.a, f.b, NN_HALF_SUM), "NN_HALF_SUM is only for nn_mse_loss");
    ROW(nn_huber_loss(f.a, f.b, NN_MEAN, -1), "delta must be finite and > 0, got -1");
    ROW(nn_huber_loss(f.a, f.b, NN_MEAN, NAN), "delta");
    ROW(nn_cross_entropy(f.a, lab, NN_MEAN, 0), "label 5 at position 1 is out of range for 3 classes");
    ROW(nn_cross_entropy(f.a, f.i64, NN_MEAN, 2), "labels [3] do not match logits [2,3]");
    ROW(nn_nll_loss(f.a, lab, NN_MEAN), "label 5 at position 1 is out of range for 3 classes");
    ROW(nn_nll_loss(NULL, lab, NN_MEAN), "NULL");
    ROW(nn_binary_cross_entropy_with_logits(f.a, f.v3, NULL, NN_MEAN), "x [2,3] and y [3] differ in shape");
    ROW(nn_binary_cross_entropy_with_logits(f.a, f.b, f.v4, NN_MEAN), "cannot be broadcast together");
    ROW(nn_l1_penalty(NULL, 0.1), "NULL");
    ROW(nn_l2_penalty(params, NAN), "lambda must be finite and >= 0, got nan");
    /* training helpers */
    ROW(nn_progress_new(stdout, &(nn_progress_options){.width = -3}), "width must be 0..200");
    ROW_RC(nn_progress_begin(NULL, 0, 1, 1), "NULL");
    ROW_RC(nn_progress_update(NULL, 0, 1, 1), "NULL");
    ROW_RC(nn_progress_end(NULL, "x"), "NULL");
    ROW_VAL(double, nn_progress_mean_loss(NULL), NAN, "nn_progress_mean_loss: argument 'p' is NULL");
    ROW_OK(nn_progress_free(NULL), (nn_progress_free(NULL), true));
    ROW(nn_confusion_new(0), "num_classes must be 1..100000, got 0");
    ROW(nn_confusion_new(-5), "num_classes");
    nn_confusion *cm = nn_confusion_new(3);
    ck_assert_ptr_nonnull(cm);
    ROW_RC(nn_confusion_update(NULL, f.a, lab), "NULL");
    ROW_RC(nn_confusion_update(cm, f.a, lab), "label 5 at position 1 is out of range");
    ROW_RC(nn_confusion_update(cm, f.v3, lab), "logits must be float [N, 3], got float64 [3]");
    ROW_OK(nn_confusion_free(NULL), (nn_confusion_free(NULL), true));
    ROW_OK(nn_confusion_reset(NULL), (nn_confusion_reset(NULL), true));
    ROW_VAL(double, nn_confusion_accuracy(NULL), NAN, "nn_confusion_accuracy: argument 'cm' is NULL");
    ROW_VAL(double, nn_confusion_accuracy(cm), NAN, "nn_confusion_accuracy: nothing counted yet");
    ROW_VAL(double, nn_confusion_recall(cm, 3), NAN, "nn_confusion_recall: class 3 out of range [0, 3)");
    ROW_VAL(double, nn_confusion_recall(cm, -1), NAN, "class -1 out of range");
    ROW_VAL(double, nn_confusion_recall(cm, 0), NAN, "nn_confusion_recall: no samples of class 0 counted yet");
    ROW_VAL(double, nn_confusion_recall(NULL, 0), NAN, "nn_confusion_recall: argument 'cm' is NULL");
    ROW_RC(nn_confusion_print(NULL, NULL, stdout), "NULL");
    ROW_RC(nn_confusion_print(cm, NULL, NULL), "NULL");
    ROW_VAL(int64_t, nn_evaluate(NULL, NULL, cm, NULL), -1, "NULL");
    /* the trainer */
    ROW(nn_trainer_new(NULL, NULL, opt, NULL), "nn_trainer_new: argument 'model' is NULL");
    ROW(nn_trainer_new(lin, NULL, NULL, NULL), "nn_trainer_new: argument 'opt' is NULL");
    ROW(nn_trainer_new(lin, NULL, opt, &(nn_trainer_options){.schedule = (nn_schedule)9}), "unknown schedule 9");
    nn_trainer *tr = nn_trainer_new(lin, nn_mse_loss, opt, NULL);
    ck_assert_ptr_nonnull(tr);
    ROW_OK(nn_trainer_free(NULL), (nn_trainer_free(NULL), true));
    ad_tensor *tx = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(4, 3)), *ty = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(5, 2));
    ROW_RC(nn_trainer_step(NULL, tx, ty, NULL), "nn_trainer_step: argument 'tr' is NULL");
    ROW_RC(nn_trainer_step(tr, NULL, ty, NULL), "nn_trainer_step: argument 'x' is NULL");
    ROW_RC(nn_trainer_step(tr, tx, ty, NULL), "nn_trainer_step: x and y must be batches of the same length");
    ROW(nn_trainer_output(tr), "nn_trainer_output: no step or evaluation yet");
    ROW(nn_trainer_output(NULL), "nn_trainer_output: argument 'tr' is NULL");
    ROW_RC(nn_trainer_set_threads(NULL, 2), "nn_trainer_set_threads: argument 'tr' is NULL");
    ROW_RC(nn_trainer_set_threads(tr, -1), "threads must be in 0..256, got -1");
    ROW_RC(nn_trainer_set_threads(tr, 257), "threads must be in 0..256, got 257");
    ROW_VAL(int, nn_trainer_get_threads(NULL), -1, "nn_trainer_get_threads: argument 'tr' is NULL");
    ROW_RC(nn_trainer_set_thread_mode(NULL, NN_THREADS_OPS),
           "nn_trainer_set_thread_mode: argument 'tr' is NULL");
    ROW_RC(nn_trainer_set_thread_mode(tr, (nn_thread_mode)3),
           "nn_trainer_set_thread_mode: mode must be NN_THREADS_AUTO, NN_THREADS_BATCH or "
           "NN_THREADS_OPS, got 3");
    ROW_VAL(int, nn_trainer_get_thread_mode(NULL), -1,
            "nn_trainer_get_thread_mode: argument 'tr' is NULL");
    nn_loader *unlabelled = nn_loader_from_tensors(tx, NULL, &(nn_loader_options){.batch_size = 2});
    ck_assert_ptr_nonnull(unlabelled);
    nn_metrics met;
    ROW_VAL(int64_t, nn_trainer_evaluate(tr, NULL, NULL, &met), -1, "nn_trainer_evaluate: argument 'loader' is NULL");
    ROW_VAL(int64_t, nn_trainer_evaluate(tr, unlabelled, NULL, NULL), -1, "nn_trainer_evaluate: argument 'out' is NULL");
    ROW_VAL(int64_t, nn_trainer_evaluate(tr, unlabelled, NULL, &met), -1, "nn_trainer_evaluate: the loader gives no labels");
    ROW_RC(nn_fit(NULL, unlabelled, NULL, 1, NULL), "nn_fit: argument 'tr' is NULL");
    ROW_RC(nn_fit(tr, unlabelled, NULL, -1, NULL), "nn_fit: epochs must be >= 0, got -1");
    ROW_RC(nn_fit(tr, unlabelled, NULL, 1, &(nn_fit_options){.checkpoint_every = -2}), "checkpoint_every must be >= 0");
    ROW_RC(nn_fit(tr, unlabelled, NULL, 1, NULL), "nn_fit: the training loader gives no labels");
    ROW_VAL(int64_t, nn_trainer_epoch(NULL), -1, "nn_trainer_epoch: argument 'tr' is NULL");
    ROW_VAL(int64_t, nn_trainer_steps(NULL), -1, "nn_trainer_steps: argument 'tr' is NULL");
    nn_trainer_stats tst;
    ROW_RC(nn_trainer_get_stats(tr, NULL), "nn_trainer_get_stats: argument 'stats' is NULL");
    ROW_RC(nn_trainer_save(tr, NULL, NULL), "nn_trainer_save: argument 'path' is NULL");
    ROW_RC(nn_trainer_save(tr, "/tmp/x.safetensors", "[1]"), "metadata_json must be a JSON object");
    ROW_RC(nn_trainer_save(tr, "/tmp/x.safetensors", "{\"nn_trainer_step\": \"3\"}"), "uses a key of the trainer");
    ROW_RC(nn_trainer_save(tr, "/nonexistent/x.safetensors", NULL), "/nonexistent");
    ROW_RC(nn_trainer_load(NULL, "x", false), "nn_trainer_load: argument 'tr' is NULL");
    ROW_RC(nn_trainer_load(tr, "/nonexistent/x.safetensors", true), "/nonexistent/x.safetensors");
    ck_assert_int_eq(nn_trainer_get_stats(tr, &tst), 0);
    ck_assert_int_eq(tst.recordings, 0);
    /* whole-state checkpoints, module random streams, nn_gradcheck */
    nn_checkpoint ck = {.model = lin, .optim = opt};
    ROW_RC(nn_checkpoint_save(NULL, &ck), "nn_checkpoint_save: argument 'path' is NULL");
    ROW_RC(nn_checkpoint_save("/tmp/x.safetensors", NULL), "nn_checkpoint_save: argument 'ck' is NULL");
    ROW_RC(nn_checkpoint_save("/tmp/x.safetensors", &(nn_checkpoint){.n_rngs = 1}),
           "n_rngs is 1 but rng_names or rngs is NULL");
    ROW_RC(nn_checkpoint_save("/tmp/x.safetensors", &(nn_checkpoint){.epoch = -1}), "must be >= 0");
    ROW_RC(nn_checkpoint_save("/nonexistent/x.safetensors", &ck), "/nonexistent");
    ROW_RC(nn_checkpoint_load(NULL, &ck), "nn_checkpoint_load: argument 'path' is NULL");
    ROW_RC(nn_checkpoint_load("/nonexistent/x.safetensors", &ck), "/nonexistent/x.safetensors");
    ROW_RC(nn_module_set_rng(NULL, NULL), "nn_module_set_rng: argument 'm' is NULL");
    ROW(nn_module_rng(NULL), "nn_module_rng: argument 'm' is NULL");
    ROW_RC(nn_gradcheck(NULL, tx, NULL, NULL, NULL), "nn_gradcheck: argument 'm' is NULL");
    ROW_RC(nn_gradcheck(lin, NULL, NULL, NULL, NULL), "nn_gradcheck: argument 'x' is NULL");
    /* sequence layers and attention (nn/rnn.h, nn/transformer.h) */
    ROW(nn_rnn(0, 4, 1, NN_RNN_TANH, true, AD_FLOAT64, &rng), "nn_rnn:");
    ROW(nn_rnn(3, 4, 0, NN_RNN_TANH, true, AD_FLOAT64, &rng), "nn_rnn:");
    ROW(nn_rnn(3, 4, 1, NN_LSTM, true, AD_FLOAT64, &rng), "nn_rnn:");
    ROW(nn_rnn(3, 4, 1, NN_RNN_TANH, true, AD_INT64, &rng), "nn_rnn:");
    ROW(nn_gru(3, 4, 1, true, AD_FLOAT64, NULL), "nn_gru: argument 'rng' is NULL");
    ROW(nn_lstm(3, -4, 1, true, AD_FLOAT64, &rng), "nn_lstm:");
    ROW(nn_rnn_cell(3, 4, (nn_rnn_mode)9, true, AD_FLOAT64, &rng), "nn_rnn_cell:");
    ROW(nn_gru_cell(0, 4, true, AD_FLOAT64, &rng), "nn_gru_cell:");
    ROW(nn_lstm_cell(3, 4, true, AD_FLOAT64, NULL), "nn_lstm_cell: argument 'rng' is NULL");
    {
        nn_module *cell = nn_lstm_cell(3, 4, true, AD_FLOAT64, &rng);
        ck_assert_ptr_nonnull(cell);
        ad_tensor *out;
        ROW_RC(nn_rnn_forward(NULL, f.a, NULL, NULL, &out, NULL, NULL),
               "nn_rnn_forward: argument 'm' is NULL");
        ROW_RC(nn_rnn_forward(cell, NULL, NULL, NULL, &out, NULL, NULL),
               "nn_rnn_forward: argument 'x' is NULL");
        ROW_RC(nn_rnn_forward(lin, f.a, NULL, NULL, &out, NULL, NULL), "nn_rnn_forward:");
        ROW_RC(nn_rnn_forward(cell, f.v4, NULL, NULL, &out, NULL, NULL), "nn_rnn_forward:");
        {
            ad_tensor *x23 = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(2, 3));
            ad_tensor *h25 = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(2, 5));
            ROW_RC(nn_rnn_forward(cell, x23, h25, NULL, &out, NULL, NULL), "nn_rnn_forward:");
            ad_tensor_free(x23);
            ad_tensor_free(h25);
        }
        ROW_RC(nn_rnn_set_checkpoint(NULL, 2), "nn_rnn_set_checkpoint: argument 'm' is NULL");
        ROW_RC(nn_rnn_set_checkpoint(cell, 2), "nn_rnn_set_checkpoint:");
        ROW_VAL(int, nn_rnn_mode_of(NULL), -1, "nn_rnn_mode_of: argument 'm' is NULL");
        ROW_VAL(int, nn_rnn_mode_of(lin), -1, "nn_rnn_mode_of:");
        ROW_OK(nn_rnn_mode_of(cell), nn_rnn_mode_of(cell) == NN_LSTM);
        nn_module_free(cell);
        nn_module *seq = nn_gru(3, 4, 1, true, AD_FLOAT64, &rng);
        ck_assert_ptr_nonnull(seq);
        ROW_RC(nn_rnn_set_checkpoint(seq, -1), "nn_rnn_set_checkpoint:");
        ROW_RC(nn_rnn_set_checkpoint(seq, NN_RNN_MAX_CHECKPOINT + 1), "nn_rnn_set_checkpoint:");
        nn_module_free(seq);
        ad_tensor *h, *c;
        ROW_RC(nn_rnn_cell_step(NN_RNN_TANH, NULL, NULL, NULL, f.a, f.a, NULL, NULL, &h, &c),
               "nn_rnn_cell_step: argument 'x' is NULL");
        ROW_RC(nn_rnn_cell_step(NN_RNN_TANH, f.a, NULL, NULL, NULL, f.a, NULL, NULL, &h, &c),
               "nn_rnn_cell_step:");
        ROW_RC(nn_rnn_cell_step((nn_rnn_mode)7, f.a, NULL, NULL, f.a, f.a, NULL, NULL, &h, &c),
               "nn_rnn_cell_step:");
        ROW_RC(nn_rnn_cell_step(NN_GRU, f.a, NULL, NULL, f.a, f.a, NULL, NULL, &h, &c),
               "nn_rnn_cell_step:");
        ROW_RC(nn_rnn_sequence(NN_RNN_TANH, NULL, NULL, NULL, 1, (ad_tensor *[]){f.a, f.a}, false,
                               &out, NULL, NULL),
               "nn_rnn_sequence: argument 'x' is NULL");
        ROW_RC(nn_rnn_sequence(NN_RNN_TANH, f.a, NULL, NULL, 0, (ad_tensor *[]){f.a, f.a}, false,
                               &out, NULL, NULL),
               "nn_rnn_sequence:");
        ROW_RC(nn_rnn_sequence(NN_RNN_TANH, f.a, NULL, NULL, 1, NULL, false, &out, NULL, NULL),
               "nn_rnn_sequence:");
    }
    ROW(nn_multihead_attention(6, 4, 0, true, true, AD_FLOAT64, &rng, 1),
        "nn_multihead_attention: d_model (6) must be a positive multiple of heads (4)");
    ROW(nn_multihead_attention(4, 2, 1.0, true, true, AD_FLOAT64, &rng, 1),
        "nn_multihead_attention: dropout must be in [0, 1), got 1");
    ROW(nn_multihead_attention(4, 2, 0, true, true, AD_FLOAT64, NULL, 1),
        "nn_multihead_attention: argument 'rng' is NULL");
    ROW(nn_self_attention(NULL, f.a, NULL, f.a, NULL, 2, true, 0, false, NULL),
        "nn_self_attention: argument 'x' is NULL");
    ROW(nn_self_attention(f.a, f.a, NULL, f.a, NULL, 2, true, 0, false, NULL),
        "nn_self_attention:");
    ROW(nn_positional_embedding(0, 4, AD_FLOAT64, &rng), "nn_positional_embedding:");
    ROW(nn_positional_embedding(5, 4, AD_FLOAT64, NULL),
        "nn_positional_embedding: argument 'rng' is NULL");
    ROW(nn_transformer_block(6, 4, 8, 0, AD_FLOAT64, &rng, 1),
        "nn_transformer_block: d_model (6) must be a positive multiple of heads (4)");
    ROW(nn_transformer_block(4, 2, 0, 0, AD_FLOAT64, &rng, 1),
        "nn_transformer_block: ff must be >= 1, got 0");
    ROW(nn_transformer_block(4, 2, 8, -0.5, AD_FLOAT64, &rng, 1),
        "nn_transformer_block: dropout must be in [0, 1), got -0.5");
    ROW(nn_transformer_block(4, 2, 8, 0, AD_INT64, &rng, 1),
        "nn_transformer_block: dtype must be AD_FLOAT32 or AD_FLOAT64, got 2");
    ROW(nn_transformer_block(4, 2, 8, 0, AD_FLOAT64, NULL, 1),
        "nn_transformer_block: argument 'rng' is NULL");
    ROW_RC(nn_transformer_block_set_checkpoint(NULL, true),
           "nn_transformer_block_set_checkpoint: argument 'm' is NULL");
    ROW_RC(nn_transformer_block_set_checkpoint(lin, true),
           "nn_transformer_block_set_checkpoint: the module is a Linear, not a TransformerBlock");
    /* the data-parallel and resuming entry points */
    ROW(nn_trainer_model(NULL), "nn_trainer_model: argument 'tr' is NULL");
    ROW(nn_trainer_optimizer(NULL), "nn_trainer_optimizer: argument 'tr' is NULL");
    ROW_OK(nn_trainer_model(tr), nn_trainer_model(tr) == lin && nn_trainer_optimizer(tr) == opt);
    ROW_RC(nn_trainer_set_counts(NULL, 0, 0), "nn_trainer_set_counts: argument 'tr' is NULL");
    ROW_RC(nn_trainer_set_counts(tr, -1, 0), "nn_trainer_set_counts:");
    ROW_RC(nn_trainer_set_counts(tr, 0, -5), "nn_trainer_set_counts:");
    ROW_RC(nn_trainer_set_comm(NULL, NULL), "nn_trainer_set_comm: argument 'tr' is NULL");
    ROW_RC(nn_trainer_set_comm(tr, &(nn_trainer_comm){.world_size = 2, .rank = 0}),
           "nn_trainer_set_comm:");
    ROW_OK(nn_trainer_set_comm(tr, NULL), nn_trainer_set_comm(tr, NULL) == 0);
    ROW_RC(nn_optim_step_parts(NULL, NULL, 0), "nn_optim_step_parts: argument 'opt' is NULL");
    ROW_RC(nn_optim_step_parts(opt, NULL, -1), "nn_optim_step_parts:");
    ROW_RC(nn_optim_step_parts(opt, NULL, 1), "nn_optim_step_parts:");
    ROW_RC(nn_optim_step_parts(opt, &(nn_optim_part){params->tensors[0], 0, 1000, NULL}, 1),
           "nn_optim_step_parts:");
    ROW_RC(nn_optim_step_parts(opt, &(nn_optim_part){params->tensors[0], 2, 1, NULL}, 1),
           "nn_optim_step_parts:");
    ROW_RC(nn_loader_shard(NULL, 0, 1), "nn_loader_shard: argument 'l' is NULL");
    ROW_RC(nn_loader_shard(unlabelled, 0, 0), "nn_loader_shard:");
    ROW_RC(nn_loader_shard(unlabelled, 2, 2), "nn_loader_shard:");
    ROW_RC(nn_loader_shard(unlabelled, -1, 2), "nn_loader_shard:");
    ROW_RC(nn_loader_shard(unlabelled, 0, INT64_MAX), "workers overflows");
    ROW_RC(nn_check_writable(NULL), "nn_check_writable:");
    ROW_RC(nn_check_writable(""), "nn_check_writable:");
    ROW_RC(nn_check_writable("/nonexistent-dir/x.safetensors"),
           "cannot create a temporary file next to /nonexistent-dir/x.safetensors");
    ROW_RC(nn_check_writable("/tmp"), "nn_check_writable:");
    nn_loader_free(unlabelled);
    ad_tensor_free(tx);
    ad_tensor_free(ty);
    nn_trainer_free(tr);
    nn_confusion_free(cm);
    nn_optim_free(opt);
    nn_named_tensors_free(params);
    nn_module_free(lin);
    teardown(&f);
}
END_TEST

/* ---- ops_util.h and the linear algebra of ops_linalg.h ---------------------------------- */
START_TEST(util_and_decomp)
{
    fx f = setup();
    ad_tensor *sq = ad_eye(f.t, AD_FLOAT64, 3), *sing = ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(2, 2));
    ad_tensor *notpd = ad_from_array(f.t, AD_FLOAT64, AD_SHAPE(2, 2), ((double[]){1, 0, 0, -1}));
    ad_tensor *w, *V, *Q, *R, *S, *sg;
    ROW(ad_argmax(NULL, 0, false), "argument 'x' is NULL");
    ROW(ad_argmax(f.i64, 0, false), "got int64");
    ROW(ad_argmax(f.a, 2, false), "axis 2 out of range");
    ROW(ad_argmax(f.s0, 0, false), "0-dimensional");
    ROW(ad_argmin(ad_zeros(f.t, AD_FLOAT64, AD_SHAPE(2, 0)), 1, true), "empty reduction");
    ROW(ad_argmin(f.dead, 0, false), "is not a live tensor");
    ROW(ad_argsort(f.a, -3, false), "axis -3 out of range");
    ROW(ad_argsort(NULL, 0, false), "argument 'x' is NULL");
    ROW(ad_sort(f.i64m, 0, false, NULL), "got int64");
    ROW(ad_sort(f.p, 0, false, NULL), "no tape to record on");
    ROW(ad_topk(f.a, 4, 1, true, NULL), "k = 4 out of range for axis 1 of [2,3]");
    ROW(ad_topk(f.a, 1, 5, true, NULL), "axis 5 out of range");
    ROW(ad_cumsum(f.a, 2), "axis 2 out of range");
    ROW(ad_cumsum(f.i64, 0), "got int64");
    ROW(ad_cumprod(NULL, 0), "argument 'x' is NULL");
    ROW(ad_cumprod(f.s0, 0), "0-dimensional");
    ROW(ad_tril(f.v3, 0), "expected a matrix or a batch of matrices (ndim >= 2), got [3]");
    ROW(ad_triu(NULL, 0), "argument 'x' is NULL");
    ROW(ad_triu(f.s0, 1), "got []");
    ROW(ad_diagonal(f.v3, 0), "expected a matrix or a batch of matrices (ndim >= 2), got [3]");
    ROW(ad_diagonal(f.dead, 0), "is not a live tensor");
    ROW(ad_diag_embed(f.s0, 0), "expected 1 to 7 dimensions, got []");
    ROW(ad_diag_embed(f.v3, (int64_t)1 << 40), "offset 1099511627776 out of range");
    ROW(ad_diag(f.img, 0), "expected a vector or a matrix, got [1,2,4,4]");
    ROW(ad_diag(f.v3, INT64_MIN), "ad_diag: offset -9223372036854775808 out of range");
    ROW(ad_one_hot(f.a, 3, AD_FLOAT64), "labels must be int64, got float64");
    ROW(ad_one_hot(f.i64, 2, AD_FLOAT64), "label 2 at position 2 is out of range for 2 classes");
    ROW(ad_one_hot(f.i64, 3, (ad_dtype)9), "unknown dtype 9");
    ROW(ad_one_hot(ad_zeros(f.t, AD_INT64, AD_SHAPE(0)), -1, AD_FLOAT64), "cannot infer");
    ROW(ad_masked_fill(f.a, f.v4, 0), "mask [4] does not broadcast to x [2,3]");
    ROW(ad_masked_fill(f.v3, f.i64m, 0), "mask [2,3] does not broadcast to x [3]");
    ROW(ad_masked_fill(f.i64, f.i64, 0), "got int64");
    ROW(ad_masked_fill(f.a, NULL, 0), "argument 'mask' is NULL");
    ROW(ad_einsum(NULL, 1, &f.a), "equation is NULL");
    ROW(ad_einsum("ij", 0, &f.a), "need 1 to 16 operands, got 0");
    ROW(ad_einsum("ij,jk", 2, ((ad_tensor *[]){f.a, f.f32})), "dtypes differ");
    ROW(ad_einsum("ij,jk", 2, ((ad_tensor *[]){f.a, f.a})), "label 'j' has extent 3 and 2");
    ROW(ad_einsum("i->i", 1, &f.a), "operand 0 is [2,3] but 'i' has 1 labels");
    ROW(ad_einsum("ij->ii", 1, &f.a), "output label 'i' is not an input label, or repeated");
    ROW(ad_einsum("ij", 1, ((ad_tensor *[]){NULL})), "argument 'operands[0]' is NULL");
    ROW(ad_einsum("ij->i", 1, NULL), "operands is NULL");
    /* linear algebra */
    ROW(ad_linalg_solve(f.a, f.v3), "A must be a square matrix or a batch of them ([..., n, n]), got [2,3]");
    ROW(ad_linalg_solve(sq, f.v4), "B must be [..., 3, k] or [3] for A [3,3], got [4]");
    ROW(ad_linalg_solve(sing, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2))), "the matrix is singular");
    ROW(ad_linalg_solve(sq, ad_ones(f.t, AD_FLOAT32, AD_SHAPE(3))), "dtypes differ");
    ROW(ad_linalg_solve(NULL, f.v3), "argument 'A' is NULL");
    ROW(ad_linalg_solve(ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2, 3, 3)), ad_ones(f.t, AD_FLOAT64, AD_SHAPE(4, 3, 1))),
        "batch dimensions of A [2,3,3] and B [4,3,1] cannot be broadcast");
    ROW(ad_linalg_solve_triangular(sing, ad_ones(f.t, AD_FLOAT64, AD_SHAPE(2, 1)), true, true, false),
        "zero on the diagonal");
    ROW(ad_linalg_solve_triangular(sq, f.v3, false, false, false), "B must be [..., k, 3] for A [3,3] when left is false, got [3]");
    ROW(ad_linalg_solve_triangular(sq, NULL, false, true, false), "argument 'B' is NULL");
    ROW(ad_linalg_inv(f.i64m), "got int64");
    ROW(ad_linalg_inv(sing), "the matrix is singular");
    ROW(ad_linalg_inv(f.v3), "A must be a square matrix");
    ROW_RC(ad_linalg_slogdet(sq, &sg, NULL), "argument 'logabsdet' is NULL");
    ROW_RC(ad_linalg_slogdet(f.a, &sg, &S), "A must be a square matrix");
    ROW(ad_linalg_det(f.a), "A must be a square matrix");
    ROW(ad_linalg_det(f.dead), "is not a live tensor");
    ROW(ad_logdet(NULL), "argument 'A' is NULL");
    ROW(ad_linalg_cholesky(notpd), "the matrix is not positive definite (the leading minor that is not has order 2)");
    ROW(ad_linalg_cholesky(f.a), "A must be a square matrix");
    ROW_RC(ad_linalg_eigh(sq, NULL, &V), "argument 'eigenvalues' is NULL");
    ROW_RC(ad_linalg_eigh(f.a, &w, &V), "A must be a square matrix");
    ROW_RC(ad_linalg_eigh(NULL, &w, &V), "argument 'A' is NULL");
    ROW_RC(ad_linalg_qr(f.a, &Q, &R), "A must be [..., m, n] with m >= n");
    ROW_RC(ad_linalg_qr(sq, NULL, &R), "arguments 'Q' and 'R' must not be NULL");
    ROW_RC(ad_linalg_qr(f.i64m, &Q, &R), "got int64");
    ROW_RC(ad_linalg_svd(f.a, &Q, NULL, &R), "argument 'S' is NULL");
    ROW_RC(ad_linalg_svd(f.v3, NULL, &S, NULL), "A must be a matrix or a batch of them");
    ROW_RC(ad_linalg_svd(f.dead, NULL, &S, NULL), "is not a live tensor");
    teardown(&f);
}
END_TEST

/* ---- coverage of the public headers -------------------------------------------------------------
 * Reads the public headers (found from this file's path, as the compiler
 * saw it, relative to the build directory the test runs in or to the
 * binary's parent directory) and checks every declared ad_ function has a
 * row, and every nn_ function of the nn headers listed below (dist.h's,
 * built with MPI only, are tests/test_dist.py's). */
static const char *const HEADERS[] = {"alloc.h", "tensor.h", "tape.h", "ops.h", "ops_pointwise.h",
                                      "ops_reduce.h", "ops_shape.h", "ops_util.h", "ops_linalg.h",
                                      "ops_loss.h", "ops_nn.h", "scalar.h", "transforms.h",
                                      "gradcheck.h", "graph.h", "ffi.h", "custom.h"};


/* Names declared as functions at the start of a line: `type *ad_x(` */
static int declared(FILE *f, const char *prefix, char names[][64], int max, int n)
{
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == ' ' || line[0] == '/' || line[0] == '#' || line[0] == '*') continue;
        if (strstr(line, "typedef")) continue;
        /* The first prefix-word followed directly by '(' is the name. */
        char *p = line;
        size_t len = 0;
        while ((p = strstr(p, prefix)) != NULL) {
            bool word_start = p == line || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
                                             (p[-1] >= 'A' && p[-1] <= 'Z') ||
                                             (p[-1] >= '0' && p[-1] <= '9'));
            len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
            if (word_start && p[len] == '(' && len < 64) break;
            p += len ? len : 1;
        }
        if (!p) continue;
        bool dup = false;
        for (int i = 0; i < n; i++) dup |= strncmp(names[i], p, len) == 0 && names[i][len] == 0;
        if (dup || n == max) continue;
        memcpy(names[n], p, len);
        names[n][len] = '\0';
        n++;
    }
    return n;
}

static bool logged(char (*rows)[64], int nrows, const char *name)
{
    for (int i = 0; i < nrows; i++)
        if (strcmp(rows[i], name) == 0) return true;
    return false;
}

START_TEST(every_public_function_has_rows)
{
    static char names[512][64], rows[8192][64];
    int n = 0, nrows = 0;
    for (int i = 0; i < NELEMS(HEADERS); i++) {
        FILE *h = ot_open_source("autodiff", HEADERS[i]);
        ck_assert_msg(h != NULL, "cannot find autodiff/%s from %s", HEADERS[i], __FILE__);
        n = declared(h, "ad_", names, 512, n);
        fclose(h);
    }
    int nad = n;
    const char *nnh[] = {"data.h", "checkpoint.h", "module.h", "optim.h", "init.h", "loss.h", "train.h",
                         "trainer.h", "state.h", "modcheck.h", "rnn.h", "transformer.h"};
    for (int i = 0; i < NELEMS(nnh); i++) {
        FILE *h = ot_open_source("nn", nnh[i]);
        if (!h) continue;
        n = declared(h, "nn_", names, 512, n);
        fclose(h);
    }
    FILE *lf = fopen(log_path, "r");
    ck_assert_ptr_nonnull(lf);
    char line[128];
    while (fgets(line, sizeof line, lf) && nrows < 8192) {
        line[strcspn(line, "\n")] = '\0';
        line[63] = '\0';
        memcpy(rows[nrows++], line, 64);
    }
    fclose(lf);
    int missing = 0, nn_missing = 0, nn_covered = 0;
    char list[4096] = "", nn_list[8192] = "";
    for (int i = 0; i < n; i++) {
        bool ok = logged(rows, nrows, names[i]);
        if (i < nad && !ok) {
            missing++;
            strncat(list, " ", sizeof list - strlen(list) - 1);
            strncat(list, names[i], sizeof list - strlen(list) - 1);
        } else if (i >= nad) {
            if (ok) nn_covered++;
            else {
                nn_missing++;
                strncat(nn_list, " ", sizeof nn_list - strlen(nn_list) - 1);
                strncat(nn_list, names[i], sizeof nn_list - strlen(nn_list) - 1);
            }
        }
    }
    fprintf(stderr, "test_badinput: %d rows; %d autodiff functions and %d nn functions with "
                    "rows\n", nrows, nad - missing, nn_covered);
    ck_assert_msg(missing == 0, "public functions without a bad-input row:%s", list);
    ck_assert_msg(nn_missing == 0, "nn functions without a bad-input row:%s", nn_list);
}
END_TEST

int main(void)
{
    snprintf(log_path, sizeof log_path, "/tmp/ad_badinput_rows_%d", (int)getpid());
    remove(log_path);
    Suite *s = suite_create("badinput");
    TCase *tc = tcase_create("badinput");
    tcase_add_test(tc, tensor_h);
    tcase_add_test(tc, tape_h);
    tcase_add_test(tc, op_tables);
    tcase_add_test(tc, pointwise_and_reduce_specifics);
    tcase_add_test(tc, shape_ops);
    tcase_add_test(tc, linalg_and_loss);
    tcase_add_test(tc, util_and_decomp);
    tcase_add_test(tc, nn_ops);
    tcase_add_test(tc, scalar_h);
    tcase_add_test(tc, transforms_gradcheck_graph);
    tcase_add_test(tc, ffi_h);
    tcase_add_test(tc, custom_h_and_short_reductions);
    tcase_add_test(tc, alloc_h);
    tcase_add_test(tc, nn_data_and_checkpoint);
    tcase_add_test(tc, nn_modules_optim_init_loss);
    tcase_add_test(tc, every_public_function_has_rows);
    suite_add_tcase(s, tc);
    int rc = ot_run(s);
    remove(log_path);
    return rc;
}

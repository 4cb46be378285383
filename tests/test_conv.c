/* tests/test_conv.c - the direct convolution (ops_conv.c) against the
 * composite it replaced (unfold, matmul, reshape: built here from public
 * ops), forward and both gradients, float32 and float64, with every
 * float32 kernel variant this CPU can run (portable, AVX2, AVX-512); and
 * the argument checks of ad_conv_transpose2d and ad_conv2d_weight. */
#include "optest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ad__conv_testing_isa(int isa); /* ops_conv.c (internal) */
int ad__conv_testing_dw(int pick);
int ad__conv_testing_wino(int pick);

typedef struct shape {
    int64_t N, C, H, W, O, kh, kw, ph, pw;
    bool transposed; /* x given as a transposed (non-contiguous) view */
} shape;

static const shape SHAPES[] = {
    {2, 32, 26, 26, 32, 3, 3, 0, 0, false}, /* fmnist's second layer, batch 2 */
    {3, 1, 28, 28, 32, 3, 3, 0, 0, false},  /* its first layer */
    {2, 3, 7, 9, 5, 3, 3, 1, 1, false},     /* padding, O not a multiple of a tile */
    {1, 4, 5, 6, 17, 2, 3, 0, 2, true},     /* odd kernel and padding, non-contiguous */
    {2, 2, 4, 3, 3, 1, 1, 2, 1, false},     /* padding beyond the kernel */
    {1, 5, 11, 13, 9, 5, 4, 2, 3, false},   /* larger kernel: taps past one tile */
    {2, 3, 3, 40, 6, 3, 3, 0, 1, true},     /* long rows: several vectors per row */
    {2, 4, 9, 11, 16, 3, 3, 1, 0, false},   /* gy's transpose: 8 x 8 blocks and both edges */
    {3, 2, 6, 7, 1, 3, 3, 1, 1, false},     /* one output channel: the bias sum is one run */
    {2, 3, 18, 17, 11, 3, 3, 1, 1, false},  /* rows of 17, O = 11, padding: a vector spans rows */
};
enum { NSHAPES = sizeof SHAPES / sizeof SHAPES[0] };

/* The old path: y = reshape(w [O, C kh kw] @ unfold(x), [N, O, Ho, Wo]) + b. */
static ad_tensor *composite(ad_tensor *x, ad_tensor *w, ad_tensor *b, const shape *s)
{
    int k[2] = {(int)s->kh, (int)s->kw}, p[2] = {(int)s->ph, (int)s->pw};
    ad_tensor *cols = ad_unfold(x, k, NULL, p, NULL);
    ad_tensor *y = ad_matmul(ad_reshape(w, 2, (int64_t[]){s->O, s->C * s->kh * s->kw}), cols);
    int64_t Ho = s->H + 2 * s->ph - s->kh + 1, Wo = s->W + 2 * s->pw - s->kw + 1;
    y = ad_reshape(y, 4, (int64_t[]){s->N, s->O, Ho, Wo});
    return ad_add(y, ad_reshape(b, 3, (int64_t[]){s->O, 1, 1}));
}

/* y, dx, dw, db of one path for upstream gradient r, as doubles. */
typedef struct result {
    double *y, *dx, *dw, *db;
} result;

static double *values(const ad_tensor *t)
{
    ck_assert_msg(t != NULL, "%s", ad_error());
    double *v = malloc((size_t)ad_numel(t) * sizeof *v);
    ck_assert_int_eq(ad_to_array(t, v), 0);
    return v;
}

/* A value set into one element of w or of x after they are drawn (the
 * non-finite test), when set. */
static struct {
    bool in_w, in_x;
    double value;
    char what[64]; /* the case, for messages */
} bad;

/* mode: 0 the composite, 1 ad_conv2d, 2 ad_relu(ad_conv2d), 3 ad_conv2d_relu,
 * 4 ad_relu(the composite). */
static result run_mode(const shape *s, ad_dtype dt, int mode, uint64_t seed)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, seed);
    ad_tensor *xb, *x;
    if (s->transposed) {
        xb = ad_rand(t, &rng, dt, 4, (int64_t[]){s->N, s->C, s->W, s->H}, -1, 1);
        ck_assert_int_eq(ad_set_requires_grad(xb, true), 0);
        x = ad_transpose(xb, 2, 3);
    } else {
        x = xb = ad_rand(t, &rng, dt, 4, (int64_t[]){s->N, s->C, s->H, s->W}, -1, 1);
        ck_assert_int_eq(ad_set_requires_grad(xb, true), 0);
    }
    ad_tensor *w = ad_rand(t, &rng, dt, 4, (int64_t[]){s->O, s->C, s->kh, s->kw}, -1, 1);
    ad_tensor *b = ad_rand(t, &rng, dt, 1, &s->O, -1, 1);
    if (bad.in_w) ck_assert_int_eq(ad_set(w, (int64_t[]){0, 0, s->kh - 1, 0}, bad.value), 0);
    if (bad.in_x) ck_assert_int_eq(ad_set(xb, (int64_t[]){0, 0, 1, 1}, bad.value), 0);
    ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
    ck_assert_int_eq(ad_set_requires_grad(b, true), 0);
    ad_conv2d_params p = {{1, 1}, {(int)s->ph, (int)s->pw}, {1, 1}, 1};
    ad_tensor *y = mode == 0 || mode == 4 ? composite(x, w, b, s)
                   : mode == 3            ? ad_conv2d_relu(x, w, b, &p)
                                          : ad_conv2d(x, w, b, &p);
    if (mode == 2 || mode == 4) y = ad_relu(y);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ad_tensor *r = ad_rand(t, &rng, dt, 4, ad_shape(y), -1, 1);
    ck_assert_int_eq(ad_backward(y, r, 0), 0);
    ad_tensor *gx = ad_tensor_grad(xb);
    if (s->transposed) gx = ad_transpose(gx, 2, 3);
    result res = {values(y), values(gx), values(ad_tensor_grad(w)), values(ad_tensor_grad(b))};
    ad_tape_free(t);
    return res;
}

static result run(const shape *s, ad_dtype dt, bool direct, uint64_t seed)
{
    return run_mode(s, dt, direct ? 1 : 0, seed);
}

/* Relative to the scale of the sum: each entry adds C kh kw (or N Ho Wo)
 * products of values in [-1, 1]. */
static void assert_close(const double *a, const double *b, int64_t n, double tol, const char *what,
                         int isa)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(a[i] - b[i]) <= tol * (1 + fabs(b[i])),
                      "%s [%lld] (isa %d): direct %.12g, composite %.12g", what, (long long)i,
                      isa, a[i], b[i]);
}

/* The direct path against the composite's result c (which no kernel
 * choice changes, so it is computed once per shape: under valgrind the
 * composite took a third of test_conv's time). */
static void compare(const shape *s, ad_dtype dt, int isa, uint64_t seed, result c)
{
    result d = run(s, dt, true, seed);
    int64_t Ho = s->H + 2 * s->ph - s->kh + 1, Wo = s->W + 2 * s->pw - s->kw + 1;
    double ty = dt == AD_FLOAT64 ? 1e-12 : 2e-5 * sqrt((double)(s->C * s->kh * s->kw));
    double tw = dt == AD_FLOAT64 ? 1e-12 : 2e-5 * sqrt((double)(s->N * Ho * Wo));
    assert_close(d.y, c.y, s->N * s->O * Ho * Wo, ty, "y", isa);
    assert_close(d.dx, c.dx, s->N * s->C * s->H * s->W, ty * sqrt((double)s->O), "dx", isa);
    assert_close(d.dw, c.dw, s->O * s->C * s->kh * s->kw, tw, "dw", isa);
    assert_close(d.db, c.db, s->O, tw, "db", isa);
    free(d.y), free(d.dx), free(d.dw), free(d.db);
}

/* a and b alike: both NaN, the same infinity, or within tol. */
static void assert_alike(const double *a, const double *b, int64_t n, double tol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        bool ok = isnan(b[i])   ? isnan(a[i])
                  : isinf(b[i]) ? a[i] == b[i]
                                : fabs(a[i] - b[i]) <= tol * (1 + fabs(b[i]));
        ck_assert_msg(ok, "%s [%lld] (%s, bad %s %g): direct %.12g, composite %.12g", what,
                      (long long)i, bad.what, bad.in_w ? "w" : "x", bad.value, a[i], b[i]);
    }
}

/* An inf or a NaN in w, or in x: the direct ops give the composite's
 * values, NaN where it has NaN and the same infinities elsewhere, none
 * of their own from the kernels' terms outside the formulas (padding,
 * wrapped columns), for conv2d and for conv2d_relu's fused rule. */
START_TEST(non_finite_operands_as_the_composite)
{
    static const int which[] = {1, 2, 4, 5}; /* C = 1, padding, padding beyond, larger kernel */
    /* Winograd's transforms would spread an infinity over its 4 x 4 patch
     * as NaN: a sample with one takes the direct kernel */
    ad__conv_testing_wino(_i);
    for (int k = 0; k < 4; k++)
        for (int dt = 0; dt < 2; dt++)
            for (int place = 0; place < 4; place++) {
                const shape *sh = &SHAPES[which[k]];
                ad_dtype dtype = dt ? AD_FLOAT32 : AD_FLOAT64;
                bad.in_w = place < 2, bad.in_x = !bad.in_w;
                bad.value = place % 2 ? NAN : -INFINITY;
                for (int relu = 0; relu < 2; relu++) {
                    snprintf(bad.what, sizeof bad.what, "shape %d, %s%s", which[k],
                             dt ? "float32" : "float64", relu ? ", conv2d_relu" : "");
                    result c = run_mode(sh, dtype, relu ? 4 : 0, 7), d = run_mode(sh, dtype, relu ? 3 : 1, 7);
                    int64_t Ho = sh->H + 2 * sh->ph - sh->kh + 1, Wo = sh->W + 2 * sh->pw - sh->kw + 1;
                    double tol = dt ? 1e-4 : 1e-12;
                    assert_alike(d.y, c.y, sh->N * sh->O * Ho * Wo, tol, "y");
                    assert_alike(d.dx, c.dx, sh->N * sh->C * sh->H * sh->W, tol, "dx");
                    assert_alike(d.dw, c.dw, sh->O * sh->C * sh->kh * sh->kw, tol, "dw");
                    assert_alike(d.db, c.db, sh->O, tol, "db");
                    free(c.y), free(c.dx), free(c.dw), free(c.db);
                    free(d.y), free(d.dx), free(d.dw), free(d.db);
                }
            }
    bad.in_w = bad.in_x = false;
    ad__conv_testing_wino(-1);
}
END_TEST

static bool same_bits(const double *a, const double *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* y = conv2d(x, w) and dx = conv_transpose2d(g, w) for x, w and g drawn
 * as float32 tensors of fmnist's second layer's shape, batch 2, from
 * seed (values in [-1, 1], or small integers, x and g times scale), computed in
 * dtype, with Winograd's sums forced on (1) or off (0). */
static void wino_run(uint64_t seed, bool integers, double scale, int wino, ad_dtype dtype,
                     double *y, double *dx)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, seed);
    ad_tensor *all[3] = {ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(2, 32, 26, 26), -1, 1),
                         ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(32, 32, 3, 3), -1, 1),
                         ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(2, 32, 24, 24), -1, 1)};
    for (int k = 0; k < 3; k++) {
        float *v = ad_data(all[k]);
        for (int64_t i = 0; i < ad_numel(all[k]); i++) {
            if (integers) v[i] = roundf(4 * v[i]); /* -4 .. 4 */
            /* scaled: x and g by scale; w down by 2^-10 then, so that the
             * sums stay finite */
            v[i] = k != 1 ? (float)(v[i] * scale) : scale != 1 ? v[i] * 0x1p-10f : v[i];
        }
        if (dtype != AD_FLOAT32) all[k] = ad_cast(all[k], dtype);
    }
    ad__conv_testing_wino(wino);
    ad_tensor *out = ad_conv2d(all[0], all[1], NULL, NULL);
    ad_tensor *back = ad_conv_transpose2d(all[2], all[1], NULL, NULL);
    ad__conv_testing_wino(-1);
    ck_assert_msg(out && back, "%s", ad_error());
    ck_assert_int_eq(ad_to_array(out, y), 0);
    ck_assert_int_eq(ad_to_array(back, dx), 0);
    ad_tape_free(t);
}

/* The largest |a - b| over n values. */
static double max_diff(const double *a, const double *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* Winograd's F(2x2, 3x3) against the direct kernel, conv2d and
 * conv_transpose2d, with every float32 variant this CPU runs:
 * - on small integers both are exact (every intermediate value is a
 *   multiple of 1/4 far below 2^24): the same values;
 * - on random values not the same bits (so the method really ran), and
 *   as close to float64's sums of the same inputs as the direct kernel's
 *   (measured: largest errors 7e-6 against the direct kernel's 1.9e-5,
 *   the sums adding 288 products of [-1, 1]);
 * - with values near the top of float32's range, where the transformed
 *   input would overflow, the direct kernel's values to the bit. */
START_TEST(winograd_against_direct)
{
    enum { NY = 2 * 32 * 24 * 24, NX = 2 * 32 * 26 * 26 };
    double *y[3], *dx[3]; /* direct, Winograd, float64 */
    for (int k = 0; k < 3; k++)
        y[k] = malloc(NY * sizeof(double)), dx[k] = malloc(NX * sizeof(double));
    wino_run(9, false, 1.0, 0, AD_FLOAT64, y[2], dx[2]);
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__conv_testing_isa(isa) != 0) continue;
        for (int k = 0; k < 2; k++) wino_run(9, true, 1.0, k, AD_FLOAT32, y[k], dx[k]);
        ck_assert_msg(same_bits(y[0], y[1], NY) && same_bits(dx[0], dx[1], NX),
                      "integers differ (isa %d)", isa);
        for (int k = 0; k < 2; k++) wino_run(9, false, 1.0, k, AD_FLOAT32, y[k], dx[k]);
        ck_assert_msg(!same_bits(y[0], y[1], NY), "no Winograd sums (isa %d)", isa);
        double ed = max_diff(y[0], y[2], NY), ew = max_diff(y[1], y[2], NY);
        double xd = max_diff(dx[0], dx[2], NX), xw = max_diff(dx[1], dx[2], NX);
        ck_assert_msg(ew <= 1e-5 && ew <= ed && xw <= 1e-5 && xw <= xd,
                      "isa %d: errors y %g (direct %g), dx %g (direct %g)", isa, ew, ed, xw, xd);
        for (int k = 0; k < 2; k++) wino_run(9, false, 0x1p127, k, AD_FLOAT32, y[k], dx[k]);
        ck_assert_msg(same_bits(y[0], y[1], NY) && same_bits(dx[0], dx[1], NX),
                      "near the top of the range (isa %d)", isa);
        for (int64_t i = 0; i < NY; i++) ck_assert(isfinite(y[1][i]));
    }
    ad__conv_testing_isa(-1);
    for (int k = 0; k < 3; k++) free(y[k]), free(dx[k]);
}
END_TEST

START_TEST(direct_matches_composite)
{
    const shape *s = &SHAPES[_i % NSHAPES];
    ad_dtype dt = _i / NSHAPES ? AD_FLOAT32 : AD_FLOAT64;
    int tried = 0;
    result c = run(s, dt, false, 100 + (uint64_t)_i);
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__conv_testing_isa(isa) != 0) continue; /* this CPU cannot run it */
        /* both direct weight-gradient kernels, then Winograd's sums for
         * every 3 x 3 kernel (forward, input and weight gradients) */
        for (int k = 0; k <= 2; k++) {
            ad__conv_testing_dw(k < 2 ? k : -1);
            ad__conv_testing_wino(k == 2);
            compare(s, dt, isa, 100 + (uint64_t)_i, c);
        }
        tried++;
    }
    ad__conv_testing_isa(-1);
    ad__conv_testing_dw(-1);
    ad__conv_testing_wino(-1);
    free(c.y), free(c.dx), free(c.dw), free(c.db);
    ck_assert_int_ge(tried, 1);
}
END_TEST

/* Kernel threads split the samples of the forward and transpose: the
 * same bits as one thread. */
START_TEST(same_bits_with_kernel_threads)
{
    const shape s = {4, 16, 20, 20, 16, 3, 3, 1, 1, false}; /* above the threading threshold */
    ad_set_num_threads(1);
    result one = run(&s, AD_FLOAT32, true, 5);
    ad_set_num_threads(2);
    result two = run(&s, AD_FLOAT32, true, 5);
    ad_set_num_threads(0);
    int64_t ny = s.N * s.O * s.H * s.W, nx = s.N * s.C * s.H * s.W, nw = s.O * s.C * 9;
    ck_assert(memcmp(one.y, two.y, (size_t)ny * sizeof(double)) == 0);
    ck_assert(memcmp(one.dx, two.dx, (size_t)nx * sizeof(double)) == 0);
    ck_assert(memcmp(one.dw, two.dw, (size_t)nw * sizeof(double)) == 0);
    ck_assert(memcmp(one.db, two.db, (size_t)s.O * sizeof(double)) == 0);
    free(one.y), free(one.dx), free(one.dw), free(one.db);
    free(two.y), free(two.dx), free(two.dw), free(two.db);
}
END_TEST

/* The graph of y in DOT, malloc'd. */
static char *dot_of(ad_tensor *y)
{
    ck_assert_msg(y != NULL, "%s", ad_error());
    FILE *f = tmpfile();
    ck_assert(f != NULL);
    ck_assert_int_eq(ad_graph_dot(f, &y, 1, NULL), 0);
    long n = ftell(f);
    ck_assert(n > 0);
    char *s = malloc((size_t)n + 1);
    rewind(f);
    ck_assert_int_eq((long)fread(s, 1, (size_t)n, f), n);
    s[n] = 0;
    fclose(f);
    return s;
}

/* ad_conv2d_relu against ad_relu(ad_conv2d): the same bits in y and in
 * every gradient, for every shape, dtype and float32 kernel variant (the
 * epilogue's max is relu's, the rule's mask from y is the one relu's rule
 * takes from the pre-activation, and the rest is conv2d's own rule).  The
 * first-order pass masks g as the weight gradient's kernel stages it and
 * as conv_transpose2d copies it, and sums the bias gradient in the
 * staging pass (relu_fused_bw; with one output channel, relu_bias_bw's
 * pass of its own); float64's sums are inexact, so a different order of
 * additions than ad_sum's shows in db. */

START_TEST(conv2d_relu_same_bits_as_relu_of_conv2d)
{
    const shape *s = &SHAPES[_i % NSHAPES];
    ad_dtype dt = _i < NSHAPES ? AD_FLOAT32 : AD_FLOAT64;
    int64_t Ho = s->H + 2 * s->ph - s->kh + 1, Wo = s->W + 2 * s->pw - s->kw + 1;
    for (int v = 0; v <= (dt == AD_FLOAT32 ? 8 : 2); v++) {
        int isa = v / 3, k = v % 3;
        if (ad__conv_testing_isa(isa) != 0) continue;
        /* both direct weight-gradient kernels stage g masked, and so does
         * Winograd's; its output transform stores through relu too */
        ad__conv_testing_dw(k < 2 ? k : -1);
        ad__conv_testing_wino(k == 2);
        result a = run_mode(s, dt, 3, 40 + (uint64_t)_i), b = run_mode(s, dt, 2, 40 + (uint64_t)_i);
        int64_t ny = s->N * s->O * Ho * Wo, nz = 0;
        for (int64_t i = 0; i < ny; i++) nz += a.y[i] == 0;
        ck_assert_msg(nz > ny / 5 && nz < ny - ny / 5, "relu zeroed %lld of %lld", (long long)nz,
                      (long long)ny);
        ck_assert_msg(same_bits(a.y, b.y, ny), "y differs (isa %d)", isa);
        ck_assert_msg(same_bits(a.dx, b.dx, s->N * s->C * s->H * s->W), "dx differs (isa %d)", isa);
        ck_assert_msg(same_bits(a.dw, b.dw, s->O * s->C * s->kh * s->kw), "dw differs (isa %d)",
                      isa);
        ck_assert_msg(same_bits(a.db, b.db, s->O), "db differs (isa %d)", isa);
        free(a.y), free(a.dx), free(a.dw), free(a.db), free(b.y), free(b.dx), free(b.dw), free(b.db);
    }
    ad__conv_testing_isa(-1);
    ad__conv_testing_dw(-1);
    ad__conv_testing_wino(-1);
}
END_TEST

/* One node, conv2d_relu, on the direct path; relu after the composite
 * otherwise; a NaN pre-activation passes through as relu's does. */
START_TEST(conv2d_relu_records_one_op)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 5);
    ad_tensor *x = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(1, 2, 5, 5), -1, 1);
    ad_tensor *w = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(3, 2, 3, 3), -1, 1);
    ad_set_requires_grad(w, true);
    ad_tensor *y = ad_conv2d_relu(x, w, NULL, NULL);
    char *dot = dot_of(y);
    ck_assert_msg(strstr(dot, "conv2d_relu") != NULL, "no conv2d_relu node:\n%s", dot);
    ck_assert_msg(strstr(dot, "\"relu") == NULL && strstr(dot, " relu") == NULL &&
                      strstr(dot, ">relu") == NULL,
                  "a separate relu recorded:\n%s", dot);
    free(dot);
    y = ad_conv2d_relu(x, w, NULL, &(ad_conv2d_params){{2, 2}, {1, 1}, {1, 1}, 1});
    dot = dot_of(y);
    ck_assert_msg(strstr(dot, "relu") != NULL && strstr(dot, "conv2d_relu") == NULL,
                  "stride 2 is not the composite and relu:\n%s", dot);
    free(dot);
    ad_tensor *xn = ad_full(t, AD_FLOAT32, AD_SHAPE(1, 1, 3, 3), NAN);
    ad_tensor *wn = ad_full(t, AD_FLOAT32, AD_SHAPE(2, 1, 1, 1), 1.0);
    ad_tensor *yn = ad_conv2d_relu(xn, wn, NULL, NULL);
    ck_assert_msg(yn != NULL, "%s", ad_error());
    for (int64_t i = 0; i < 18; i++) ck_assert(isnan(ot_at(yn, i)));
    ad_tape_free(t);
}
END_TEST

/* The direct kernel is really used: a node named conv2d, no matmul (x
 * needs no gradient, so the composite records no unfold). */
START_TEST(conv2d_records_the_direct_op)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 3);
    ad_tensor *x = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(1, 2, 5, 5), -1, 1);
    ad_tensor *w = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(3, 2, 3, 3), -1, 1);
    ad_set_requires_grad(w, true);
    ad_tensor *y = ad_conv2d(x, w, NULL, &(ad_conv2d_params){{1, 1}, {1, 1}, {1, 1}, 1});
    char *dot = dot_of(y);
    ck_assert_msg(strstr(dot, "conv2d") != NULL, "no conv2d node:\n%s", dot);
    ck_assert_msg(strstr(dot, "matmul") == NULL, "matmul recorded:\n%s", dot);
    free(dot);
    /* stride 2 stays the composite */
    y = ad_conv2d(x, w, NULL, &(ad_conv2d_params){{2, 2}, {1, 1}, {1, 1}, 1});
    dot = dot_of(y);
    ck_assert_msg(strstr(dot, "matmul") != NULL && strstr(dot, "conv2d") == NULL,
                  "stride 2 is not the composite:\n%s", dot);
    free(dot);
    ad_tape_free(t);
}
END_TEST

/* Exact small values: x = 1..9 in a 3x3 plane, a 2x2 kernel of ones. */
START_TEST(exact_values)
{
    ad_tape *t = ad_tape_new();
    double xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    ad_tensor *x = ot_f64(t, AD_SHAPE(1, 1, 3, 3), xv);
    ad_tensor *w = ot_f64(t, AD_SHAPE(1, 1, 2, 2), (double[]){1, 1, 1, 1});
    ad_tensor *y = ad_conv2d(x, w, NULL, NULL);
    ot_assert_values(y, (double[]){12, 16, 24, 28}, 4, 0);
    /* transpose of ones [1,1,2,2] with the same kernel: window counts */
    ad_tensor *g = ot_f64(t, AD_SHAPE(1, 1, 2, 2), (double[]){1, 1, 1, 1});
    ad_tensor *dx = ad_conv_transpose2d(g, w, NULL, NULL);
    ot_assert_values(dx, (double[]){1, 2, 1, 2, 4, 2, 1, 2, 1}, 9, 0);
    /* weight gradient with g of ones: sums of the 2x2 sub-squares of x */
    ad_tensor *dw = ad_conv2d_weight(x, (int64_t[]){1, 1, 2, 2}, g, NULL);
    ot_assert_values(dw, (double[]){12, 16, 24, 28}, 4, 0);
    /* a kernel one larger than the input: no output, a zero gradient (by
     * the kernel vectorised over channels, C kh kw >= 64, in both dtypes:
     * it divided by the output's width) */
    for (int d = 0; d < 2; d++) {
        ad_dtype dt = d ? AD_FLOAT64 : AD_FLOAT32;
        ad_tensor *x8 = ad_ones(t, dt, AD_SHAPE(1, 8, 3, 3));
        ad_tensor *g0 = ad_ones(t, dt, AD_SHAPE(1, 2, 0, 0));
        ad_tensor *dw0 = ad_conv2d_weight(x8, (int64_t[]){2, 8, 4, 4}, g0, NULL);
        ck_assert_msg(dw0 != NULL, "%s", ad_error());
        ot_assert_shape(dw0, 4, (int64_t[]){2, 8, 4, 4});
        for (int64_t i = 0; i < 256; i++) ck_assert_double_eq(ot_at(dw0, i), 0);
    }
    ad_tape_free(t);
}
END_TEST

/* out = conv_transpose2d(x, w) when transposed, else conv2d_relu(x, w, b)
 * with relu, else conv2d(x, w, b), padding 1, Winograd's sums forced on
 * (1) or off (0); then frees t, x's tape. */
static void wino_forced(ad_tape *t, ad_tensor *x, ad_tensor *w, ad_tensor *b, bool transposed,
                        bool relu, int wino, double *out)
{
    ad_conv2d_params p = {{1, 1}, {1, 1}, {1, 1}, 1};
    ad__conv_testing_wino(wino);
    ad_tensor *y = transposed ? ad_conv_transpose2d(x, w, NULL, &p)
                   : relu     ? ad_conv2d_relu(x, w, b, &p)
                              : ad_conv2d(x, w, b, &p);
    ad__conv_testing_wino(-1);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_to_array(y, out), 0);
    ad_tape_free(t);
}

/* out = conv2d(x, w) (transposed: conv_transpose2d) with padding 1 and
 * Winograd's sums forced on (1) or off (0), x [1, 8, n, n], float32. */
static void wino_op(bool transposed, const float *xv, int64_t n, const float *wv, int wino,
                    double *out)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_zeros(t, AD_FLOAT32, AD_SHAPE(1, 8, n, n));
    ad_tensor *w = transposed ? ad_zeros(t, AD_FLOAT32, AD_SHAPE(8, 1, 3, 3))
                              : ad_zeros(t, AD_FLOAT32, AD_SHAPE(1, 8, 3, 3));
    memcpy(ad_data(x), xv, (size_t)(8 * n * n) * sizeof(float));
    memcpy(ad_data(w), wv, 72 * sizeof(float));
    wino_forced(t, x, w, NULL, transposed, false, wino, out);
}

/* Winograd's sums pass through values up to about 9 times the largest
 * |x w|: where they overflow and the direct sums do not, the sample takes
 * the direct kernel (the review's cases: a weight of 3e38 whose tap reads
 * padding, inputs of +-2^126 whose transform adds 4 of them, a weight of
 * 1e38 on inputs of +-1; conv2d and conv_transpose2d). */
START_TEST(winograd_overflow_takes_the_direct_sums)
{
    enum { NMAX = 4 };
    float x[8 * NMAX * NMAX], w[72];
    double a[NMAX * NMAX], b[NMAX * NMAX];
    for (int c = 0; c < 5; c++) {
        int64_t n = c < 2 ? 2 : 4;
        memset(x, 0, sizeof x), memset(w, 0, sizeof w);
        double expect = 0; /* y[at] */
        int64_t at = c == 2 ? n + 1 : 0;
        if (c < 2) { /* x[0, 0, 1, 1] = 2; the tap w(0, 0) (flipped: (2, 2)) reads only padding */
            x[n + 1] = 2, w[c == 0 ? 0 : 8] = 3e38f;
        } else if (c < 4) { /* a checkerboard of +-2^126 in channel 0 */
            for (int i = 0; i < n * n; i++) x[i] = (i / n + i % n) % 2 ? -0x1p126f : 0x1p126f;
            for (int i = 0; i < 72; i++) w[i] = c == 2 ? 1e-30f : 0;
            if (c == 3) w[4] = 1e-30f; /* the centre tap alone: y = x 1e-30 */
            /* y(1, 1): 5 plus and 4 minus in its window; y(0, 0): x(0, 0) */
            expect = 0x1p126 * (double)1e-30f;
        } else { /* +-1 with the centre weight 1e38 */
            for (int i = 0; i < n * n; i++) x[i] = (i / n + i % n) % 2 ? -1.0f : 1.0f;
            w[4] = 1e38f;
            expect = (double)1e38f;
        }
        bool tr = c == 1;
        wino_op(tr, x, n, w, 0, a);
        wino_op(tr, x, n, w, 1, b);
        ck_assert_msg(same_bits(a, b, n * n), "case %d: y[0] %g, direct %g", c, b[0], a[0]);
        for (int i = 0; i < n * n; i++)
            ck_assert_msg(isfinite(b[i]), "case %d: y[%d] %g", c, i, b[i]);
        ck_assert_msg(fabs(b[at] - expect) <= 1e-6 * fabs(expect), "case %d: y[%d] %g, not %g", c,
                      (int)at, b[at], expect);
    }
}
END_TEST

/* y = conv2d_relu(x, w, b) (or conv_transpose2d(x, w), transposed) for
 * x [2, 8, n, m], w [4, 8, 3, 3] (transposed: [8, 4, 3, 3]) and b [4] of
 * small integers from seed, times xs (x) and ws (w), padding 1, with
 * Winograd's sums forced on (1) or off (0).  b is 0 unless xs is 1: the
 * direct sums start from the bias and Winograd's add it last, which
 * rounds differently once the products are large. */
static void wino_relu_run(uint64_t seed, int64_t n, int64_t m, bool transposed, float xs,
                          float ws, int wino, double *out)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, seed);
    ad_tensor *x = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(2, 8, n, m), -1, 1);
    ad_tensor *w = transposed ? ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(8, 4, 3, 3), -1, 1)
                              : ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(4, 8, 3, 3), -1, 1);
    ad_tensor *b = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(4), -1, 1);
    ad_tensor *all[3] = {x, w, b};
    for (int k = 0; k < 3; k++) {
        float *v = ad_data(all[k]);
        for (int64_t i = 0; i < ad_numel(all[k]); i++)
            v[i] = roundf(4 * v[i]) * (k == 0 ? xs : k == 1 ? ws : xs == 1); /* -4 .. 4 */
    }
    wino_forced(t, x, w, b, transposed, true, wino, out);
}

/* Winograd's output block is stored into y through relu for conv2d_relu,
 * only the rows and columns y has: odd sizes (a last tile row or column
 * half outside), rows of fewer, as many and more columns than a vector,
 * on every ISA, give the direct kernel's values (small integers: both
 * exact); and the finiteness check sees the values before relu: with x
 * of +-2^126 the transformed sums overflow, and y must still be the
 * direct kernel's, including where relu would have made a -inf 0. */
START_TEST(winograd_output_odd_sizes_and_relu)
{
    static const int64_t sizes[][2] = {{5, 5}, {7, 3}, {9, 17}, {13, 13}, {6, 33}, {3, 40}};
    enum { NMAX = 2 * 4 * 13 * 40 };
    double *a = malloc(NMAX * sizeof(double)), *b = malloc(NMAX * sizeof(double));
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__conv_testing_isa(isa) != 0) continue;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (int tr = 0; tr < 2; tr++)
                for (int big = 0; big < 3; big++) {
                    /* 4 output channels either way (w [8, 4, 3, 3] transposed) */
                    int64_t n = sizes[s][0], m = sizes[s][1], ny = 2 * 4 * n * m;
                    float xs = big ? (big == 1 ? 0x1p124f : -0x1p124f) : 1.0f;
                    float ws = big ? 0x1p-100f : 1.0f;
                    wino_relu_run(31 + s, n, m, tr, xs, ws, 0, a);
                    wino_relu_run(31 + s, n, m, tr, xs, ws, 1, b);
                    ck_assert_msg(same_bits(a, b, ny),
                                  "isa %d, %lld x %lld, %s, x times %g: Winograd's y differs",
                                  isa, (long long)n, (long long)m,
                                  tr ? "conv_transpose2d" : "conv2d_relu", (double)xs);
                    for (int64_t i = 0; i < ny; i++) ck_assert(isfinite(b[i]));
                }
    }
    /* A -inf that relu would hide: without padding, channel 0 of x is
     * -2^126 everywhere, so each transformed patch is one value, 4 times
     * that, -inf, and every Winograd sum -inf, no +inf or NaN beside it;
     * channel 1 makes every true sum positive: 9 2^110 - 9 2^107 (weights
     * 2^-19 and 1, within wino_filter_range_ok's 2^20). */
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__conv_testing_isa(isa) != 0) continue;
        for (int64_t n = 6; n <= 7; n++) {
            double y[2][25];
            int64_t ny = (n - 2) * (n - 2);
            for (int k = 0; k < 2; k++) {
                ad_tape *t = ad_tape_new();
                ad_tensor *x = ad_zeros(t, AD_FLOAT32, AD_SHAPE(1, 8, n, n));
                ad_tensor *w = ad_zeros(t, AD_FLOAT32, AD_SHAPE(1, 8, 3, 3));
                float *xv = ad_data(x), *wv = ad_data(w);
                for (int64_t i = 0; i < n * n; i++) xv[i] = -0x1p126f, xv[n * n + i] = 0x1p110f;
                for (int i = 0; i < 9; i++) wv[i] = 0x1p-19f, wv[9 + i] = 1;
                ad__conv_testing_wino(k);
                ad_tensor *out = ad_conv2d_relu(x, w, NULL, NULL);
                ad__conv_testing_wino(-1);
                ck_assert_msg(out != NULL, "%s", ad_error());
                ck_assert_int_eq(ad_to_array(out, y[k]), 0);
                ad_tape_free(t);
            }
            for (int64_t i = 0; i < ny; i++)
                ck_assert_msg(y[1][i] == 63 * 0x1p107 && y[0][i] == y[1][i],
                              "isa %d, n %lld: y[%lld] %g, direct %g", isa, (long long)n,
                              (long long)i, y[1][i], y[0][i]);
        }
    }
    ad__conv_testing_isa(-1);
    free(a);
    free(b);
}
END_TEST

long long ad__conv_testing_in_place(void);

/* y of sample 0 of conv2d(x, w) for x [2, 8, 14, 14], w [4, 8, 3, 3]
 * drawn from seed 11, with sample 1's first 40 values set to v (unless
 * 0), Winograd's sums forced on or off. */
static void wino_pair(double v, int wino, double *y0)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 11);
    ad_tensor *x = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(2, 8, 14, 14), -1, 1);
    ad_tensor *w = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(4, 8, 3, 3), -1, 1);
    ck_assert_msg(x && w, "%s", ad_error());
    float *xv = ad_data(x);
    for (int i = 0; v != 0 && i < 40; i++) xv[8 * 14 * 14 + i] = i % 2 ? (float)v : -(float)v;
    ad__conv_testing_wino(wino);
    ad_tensor *y = ad_conv2d(x, w, NULL, NULL);
    ad__conv_testing_wino(-1);
    ck_assert_msg(y != NULL, "%s", ad_error());
    double all[2 * 4 * 12 * 12];
    ck_assert_int_eq(ad_to_array(y, all), 0);
    memcpy(y0, all, 4 * 12 * 12 * sizeof *y0);
    ad_tape_free(t);
}

/* Without padding, Winograd's input transform reads a sample where it
 * lies, and a row of fewer tiles than a vector is read past its end: past
 * the sample's last row, into the next sample's first values.  Those land
 * only in sums nobody reads (a 12 x 12 output: 36 tiles, not a whole
 * number of AVX2 or AVX-512 vectors, so some of those sums are computed).
 * So sample 0's outputs are the same bits whatever sample 1 holds, NaN
 * and infinities included, on every ISA; they are Winograd's (not the
 * direct kernel's, which a non-finite sum would have sent the sample to);
 * and y and the weight gradient are the bits the padded copy gives (x
 * read through a transposed view, which takes it). */
START_TEST(winograd_samples_are_their_own)
{
    enum { NY0 = 4 * 12 * 12, NX = 2 * 8 * 14 * 14 };
    double ref[NY0], other[NY0], direct[NY0];
    for (int isa = 0; isa <= 2; isa++) {
        if (ad__conv_testing_isa(isa) != 0) continue;
        ad__conv_testing_in_place();
        wino_pair(0, 1, ref);
        ck_assert_int_ge(ad__conv_testing_in_place(), 1);
        wino_pair(0, 0, direct);
        ck_assert_msg(!same_bits(ref, direct, NY0), "no Winograd sums (isa %d)", isa);
        for (int k = 0; k < 3; k++) {
            double v = k == 0 ? NAN : k == 1 ? INFINITY : 3e38;
            wino_pair(v, 1, other);
            ck_assert_msg(same_bits(ref, other, NY0), "isa %d: sample 1 = %g changes sample 0",
                          isa, v);
        }
        /* in place and through the copy: the same bits */
        ad_tape *t = ad_tape_new();
        ad_rng rng;
        ad_rng_init(&rng, 12);
        ad_tensor *x = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(2, 8, 14, 14), -1, 1);
        ad_tensor *w = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(4, 8, 3, 3), -1, 1);
        ad_tensor *gy = ad_rand(t, &rng, AD_FLOAT32, AD_SHAPE(2, 4, 12, 12), -1, 1);
        ad_tensor *xs = ad_transpose(ad_contiguous(ad_transpose(x, 2, 3)), 2, 3);
        ad__conv_testing_wino(1);
        ad__conv_testing_in_place();
        ad_tensor *y[2] = {ad_conv2d(x, w, NULL, NULL), NULL}, *dw[2] = {NULL, NULL};
        dw[0] = ad_conv2d_weight(x, (int64_t[]){4, 8, 3, 3}, gy, NULL);
        long long read = ad__conv_testing_in_place();
        y[1] = ad_conv2d(xs, w, NULL, NULL);
        dw[1] = ad_conv2d_weight(xs, (int64_t[]){4, 8, 3, 3}, gy, NULL);
        ck_assert_int_eq(ad__conv_testing_in_place(), 0);
        ad__conv_testing_wino(-1);
        ck_assert_int_ge(read, 2); /* sample 0 of each op at least */
        ck_assert_msg(y[0] && y[1] && dw[0] && dw[1], "%s", ad_error());
        double a[NX], b[NX];
        ck_assert_int_eq(ad_to_array(y[0], a), 0);
        ck_assert_int_eq(ad_to_array(y[1], b), 0);
        ck_assert_msg(same_bits(a, b, 2 * NY0), "isa %d: y differs", isa);
        ck_assert_int_eq(ad_to_array(dw[0], a), 0);
        ck_assert_int_eq(ad_to_array(dw[1], b), 0);
        ck_assert_msg(same_bits(a, b, 4 * 8 * 9), "isa %d: dw differs", isa);
        ad_tape_free(t);
    }
    ad__conv_testing_isa(-1);
}
END_TEST

/* A filter with one weight far above the others (1e10 or 3e38 beside
 * ones, which never meets the input it is paired with in the transforms)
 * takes the direct kernel: Winograd's sums would lose the ones in every
 * output of the patch (0 0 -5 -2 for 4 4 4 4, the review's case), without
 * overflowing. */
START_TEST(winograd_wide_filter_takes_the_direct_sums)
{
    float x[8 * 4] = {0}, w[72] = {0};
    double a[4], b[4];
    x[0] = 0.5f; /* x[0, 0, 0, 0] */
    for (int i = 0; i < 4; i++) x[4 + i] = 1; /* channel 1 */
    for (int i = 0; i < 9; i++) w[9 + i] = 1;
    for (int k = 0; k < 2; k++) {
        w[5] = k ? 3e38f : 1e10f; /* w[0, 0, 1, 2] */
        for (int tr = 0; tr < 2; tr++) {
            wino_op(tr, x, 2, w, 0, a);
            wino_op(tr, x, 2, w, 1, b);
            ck_assert_msg(same_bits(a, b, 4), "weight %g, %s: %g %g %g %g, direct %g %g %g %g",
                          (double)w[5], tr ? "conv_transpose2d" : "conv2d", b[0], b[1], b[2], b[3],
                          a[0], a[1], a[2], a[3]);
            if (!tr)
                for (int i = 0; i < 4; i++) ck_assert(b[i] == 4);
        }
    }
}
END_TEST

/* An input far above its neighbours (1e8 among ones) swamped Winograd's
 * sums in every output and weight gradient its 4 x 4 patch reaches, even
 * those it never meets: y 20 for 19.2 where its tap's weight is 0, dw
 * -3.2 for -1.2 (review).  Such data takes the direct kernel: against
 * the exact sums in double, to float32's error bound for sums of 72 and
 * 16 terms (within 1e-5 of the sum of |terms|), forward and weight
 * gradient; then a gy of 1e9 at (3, 3) whose products all meet zeros of
 * x, which Winograd's weight gradient gets right (it stays on it). */
START_TEST(winograd_outlier_data_takes_the_direct_sums)
{
    enum { C = 8, H = 6, W = 6, HO = 4, WO = 4 };
    float x[C * H * W], w[C * 9], gy[HO * WO];
    for (int isa = 0; isa <= 2; isa++)
    for (int k = 0; k < 2; k++) {
        if (ad__conv_testing_isa(isa) != 0) continue; /* this CPU cannot run it */
        for (int c = 0; c < C; c++)
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++) x[(c * H + r) * W + q] = k && r >= 3 && q >= 3 ? 0 : 1;
        for (int i = 0; i < HO * WO; i++) gy[i] = 0.1f * (float)(i % 7) - 0.3f;
        for (int i = 0; i < C * 9; i++) w[i] = i % 9 == 2 ? 0 : 0.1f * (float)(1 + i % 5);
        if (k) gy[HO * WO - 1] = 1e9f;
        else x[2] = 1e8f; /* x[0, 0, 0, 2], under tap (0, 2) of y[0, 0]: weight 0 */
        ad__conv_testing_wino(1);
        ad_tape *t = ad_tape_new();
        ad_tensor *X = ad_from_array(t, AD_FLOAT32, AD_SHAPE(1, C, H, W), x);
        ad_tensor *Wt = ad_leaf(t, AD_FLOAT32, AD_SHAPE(1, C, 3, 3), w);
        ad_tensor *Y = ad_conv2d(X, Wt, NULL, NULL);
        ad_tensor *G = ad_from_array(t, AD_FLOAT32, AD_SHAPE(1, 1, HO, WO), gy);
        ck_assert_int_eq(ad_backward(Y, G, 0), 0);
        ad__conv_testing_wino(-1);
        double y[HO * WO], dw[C * 9];
        ck_assert_int_eq(ad_to_array(Y, y), 0);
        ck_assert_int_eq(ad_to_array(ad_tensor_grad(Wt), dw), 0);
        for (int oh = 0; oh < HO; oh++)
            for (int ow = 0; ow < WO; ow++) {
                double e = 0, mag = 0;
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < 3; i++)
                        for (int j = 0; j < 3; j++) {
                            double term = (double)w[c * 9 + i * 3 + j] *
                                          x[(c * H + oh + i) * W + ow + j];
                            e += term, mag += fabs(term);
                        }
                ck_assert_msg(fabs(y[oh * WO + ow] - e) <= 1e-5 * mag,
                              "isa %d: y[%d,%d] %.9g, exact %.9g", isa, oh, ow, y[oh * WO + ow], e);
            }
        for (int c = 0; c < C; c++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    double e = 0, mag = 0;
                    for (int oh = 0; oh < HO; oh++)
                        for (int ow = 0; ow < WO; ow++) {
                            double term =
                                gy[oh * WO + ow] * (double)x[(c * H + oh + i) * W + ow + j];
                            e += term, mag += fabs(term);
                        }
                    ck_assert_msg(fabs(dw[c * 9 + i * 3 + j] - e) <= 1e-5 * mag,
                                  "isa %d, %s outlier: dw[0,%d,%d,%d] %.9g, exact %.9g", isa,
                                  k ? "gy" : "x", c, i, j, dw[c * 9 + i * 3 + j], e);
                }
        ad_tape_free(t);
    }
    ad__conv_testing_isa(-1);
}
END_TEST

START_TEST(bad_arguments)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_zeros(t, AD_FLOAT32, AD_SHAPE(1, 2, 4, 4));
    ad_tensor *w = ad_zeros(t, AD_FLOAT32, AD_SHAPE(2, 3, 3, 3));
    ad_tensor *w64 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(2, 3, 3, 3));
    ad_tensor *g = ad_zeros(t, AD_FLOAT32, AD_SHAPE(1, 3, 2, 2));
    ck_assert_error(ad_conv_transpose2d(x, w64, NULL, NULL), "w is float64 but x is float32");
    ck_assert_error(ad_conv_transpose2d(x, g, NULL, NULL), "x has 2 channels but w [1,3,2,2]");
    ck_assert_error(ad_conv_transpose2d(x, w, NULL, &(ad_conv2d_params){{2, 2}, {0, 0}, {1, 1}, 1}),
                    "ad_conv_transpose2d: stride 2x2: only stride 1 is supported");
    ck_assert_error(ad_conv_transpose2d(x, w, NULL, &(ad_conv2d_params){{1, 1}, {0, 0}, {1, 1}, 2}),
                    "groups 2: only groups 1");
    ck_assert_error(ad_conv_transpose2d(x, w, NULL, &(ad_conv2d_params){{1, 1}, {3, 3}, {1, 1}, 1}),
                    "the output would be empty");
    ck_assert_error(ad_conv_transpose2d(x, w, x, NULL), "bias must be [3] float32");
    ck_assert_error(ad_conv_transpose2d(ad_zeros(t, AD_FLOAT32, AD_SHAPE(2, 4, 4)), w, NULL, NULL),
                    "x must be 4-D");
    /* x [1,2,4,4], gy [1,3,2,2]: kernel 3x3 */
    ck_assert_error(ad_conv2d_weight(x, (int64_t[]){3, 2, 2, 2}, g, NULL),
                    "weight_size [3,2,2,2] does not fit x [1,2,4,4], grad_output [1,3,2,2]");
    ck_assert_error(ad_conv2d_weight(x, NULL, g, NULL), "weight_size is NULL");
    ck_assert_error(ad_conv2d_weight(x, (int64_t[]){3, 2, 3, 3}, g,
                                     &(ad_conv2d_params){{1, 1}, {0, 0}, {2, 2}, 1}),
                    "dilation 2x2: only dilation 1");
    ad_tensor *dw = ad_conv2d_weight(x, (int64_t[]){3, 2, 3, 3}, g, NULL);
    ck_assert_msg(dw != NULL, "%s", ad_error());
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("conv");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, direct_matches_composite, 0, 2 * NSHAPES);
    tcase_add_test(tc, conv2d_records_the_direct_op);
    tcase_add_loop_test(tc, conv2d_relu_same_bits_as_relu_of_conv2d, 0, 2 * NSHAPES);
    tcase_add_test(tc, conv2d_relu_records_one_op);
    tcase_add_test(tc, same_bits_with_kernel_threads);
    tcase_add_test(tc, exact_values);
    tcase_add_loop_test(tc, non_finite_operands_as_the_composite, 0, 2);
    tcase_add_test(tc, winograd_against_direct);
    tcase_add_test(tc, winograd_overflow_takes_the_direct_sums);
    tcase_add_test(tc, winograd_output_odd_sizes_and_relu);
    tcase_add_test(tc, winograd_wide_filter_takes_the_direct_sums);
    tcase_add_test(tc, winograd_outlier_data_takes_the_direct_sums);
    tcase_add_test(tc, winograd_samples_are_their_own);
    tcase_add_test(tc, bad_arguments);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

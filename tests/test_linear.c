/* tests/test_linear.c - ad_linear and what it rests on: values against a
 * long double reference with both matrix kernels (the bias epilogue on
 * edge tiles and after several k blocks), the
 * weight gradient accumulated in place into a leaf's buffer, the
 * per-shape choice between the built-in kernel and CBLAS, and bad
 * arguments.  Gradcheck and gradgradcheck are test_ops' rows (rows_linalg.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <autodiff/gemm.h>

#include "optest.h"

static ad_tape *T;

static void setup(void)
{
    T = ad_tape_new();
    ck_assert(T != NULL);
    ad_tape_activate(T);
    ad_clear_error();
}

static void teardown(void)
{
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ad_tape_activate(NULL);
    ad_tape_free(T);
}

/* A persistent [r, c] tensor of dtype with values in [-1, 1). */
static ad_tensor *rnd(ad_rng *rng, ad_dtype dt, int64_t r, int64_t c)
{
    return ad_rand(NULL, rng, dt, 2, (int64_t[]){r, c}, -1.0, 1.0);
}

/* max |y - (x w^T + b)| over y, the reference summed in long double
 * (float64 x, w, b and y, contiguous). */
static double linear_error(ad_tensor *y, ad_tensor *x, ad_tensor *w, ad_tensor *b)
{
    int64_t M = ad_size(x, 0), K = ad_size(x, 1), N = ad_size(w, 0);
    const double *xv = ad_data(x), *wv = ad_data(w), *bv = b ? ad_data(b) : NULL;
    const double *yv = ad_data(y);
    double worst = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            long double s = bv ? bv[j] : 0;
            for (int64_t p = 0; p < K; p++) s += (long double)xv[i * K + p] * wv[j * K + p];
            double e = fabs(yv[i * N + j] - (double)s);
            if (e > worst) worst = e;
        }
    return worst;
}

/* Each mode of the kernel choice, for the tests that run all of them. */
static const int MODES[] = {AD_GEMM_BUILTIN, AD_GEMM_BLAS, AD_GEMM_CALIBRATE};

START_TEST(values_with_every_kernel)
{
    ad_rng rng;
    ad_rng_init(&rng, 11);
    /* 37 x 29 with k = 300: edge tiles both ways and two k blocks of the
     * built-in kernel (kc = 256), so the epilogue runs after the last one. */
    ad_tensor *x = rnd(&rng, AD_FLOAT64, 37, 300), *w = rnd(&rng, AD_FLOAT64, 29, 300);
    ad_tensor *b = ad_rand(NULL, &rng, AD_FLOAT64, 1, (int64_t[]){29}, -1.0, 1.0);
    for (int m = 0; m < 3; m++) {
        ad__gemm_testing_choice(MODES[m]);
        ad_tensor *y = ad_linear(x, w, b);
        ck_assert_msg(y != NULL, "%s", ad_error());
        ck_assert_double_lt(linear_error(y, x, w, b), 1e-12);
        ck_assert_double_lt(linear_error(ad_linear(x, w, NULL), x, w, NULL), 1e-12);
        /* tiny cache blocks: many tiles and k blocks, the bias on each tile */
        ad__gemm_testing(false, 14, 8, 32);
        ck_assert_double_lt(linear_error(ad_linear(x, w, b), x, w, b), 1e-12);
        ad__gemm_testing(false, 0, 0, 0);
    }
    ad_tensor_free(x);
    ad_tensor_free(w);
    ad_tensor_free(b);
}
END_TEST

START_TEST(batched_and_strided_inputs)
{
    ad_rng rng;
    ad_rng_init(&rng, 12);
    ad_tensor *x = ad_rand(NULL, &rng, AD_FLOAT64, 3, (int64_t[]){2, 5, 6}, -1.0, 1.0);
    ad_tensor *w = rnd(&rng, AD_FLOAT64, 6, 4); /* used transposed: w^T is [4, 6] */
    ad_tensor *y = ad_linear(x, ad_transpose(w, 0, 1), NULL);
    ot_assert_shape(y, 3, (int64_t[]){2, 5, 4});
    const double *yv = ad_data(y), *rv = ad_data(ad_matmul(x, w));
    for (int64_t i = 0; i < 40; i++) ck_assert_double_eq_tol(yv[i], rv[i], 1e-14);
    /* a 1-D x gives a 1-D result */
    ad_tensor *v = ad_linear(ad_squeeze(ad_narrow(ad_reshape(x, 2, (int64_t[]){10, 6}), 0, 3, 1), 0),
                             ad_transpose(w, 0, 1), NULL);
    ot_assert_shape(v, 1, (int64_t[]){4});
    ad_tensor_free(x);
    ad_tensor_free(w);
}
END_TEST

/* A weight with no rows (0 output features) gives an empty result, and
 * the backward pass gives x a gradient of zeros of x's shape and w an
 * empty one; the rows of the gradient products came from numel(g) / 0
 * as 0 before, and backward failed reshaping x [2,3] to [0,3]. */
START_TEST(no_output_features)
{
    ad_tensor *x = ad_leaf(T, AD_FLOAT64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *w = ad_leaf(T, AD_FLOAT64, 2, (int64_t[]){0, 3}, (double[]){0});
    ad_tensor *b = ad_leaf(T, AD_FLOAT64, 1, (int64_t[]){0}, (double[]){0});
    ad_tensor *y = ad_linear(x, w, b);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ot_assert_shape(y, 2, (int64_t[]){2, 0});
    ck_assert_msg(ad_backward(ad_sum_all(y), NULL, 0) == 0, "%s", ad_error());
    ad_tensor *gx = ad_tensor_grad(x), *gw = ad_tensor_grad(w);
    ck_assert_ptr_nonnull(gx);
    ot_assert_shape(gx, 2, (int64_t[]){2, 3});
    for (int i = 0; i < 6; i++) ck_assert_double_eq(((const double *)ad_data(gx))[i], 0);
    if (gw) ot_assert_shape(gw, 2, (int64_t[]){0, 3});
}
END_TEST

/* The weight's own gradient as the input of a linear (a gradient used as
 * data): the rule's product into w.grad in place read rows of w.grad it
 * had already written (3 6 5 10; with AD_SET_GRAD 2 4 3 6).  The direct
 * write is left out when an input shares the buffer's storage. */
START_TEST(weight_gradient_read_by_the_rule)
{
    for (int set = 0; set < 2; set++) {
        ad_tensor *w = ad_leaf(NULL, AD_FLOAT64, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
        ad_tensor *x0 = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){2, 2}, (double[]){1, 0, 0, 2});
        ck_assert_int_eq(ad_backward(ad_sum_all(ad_linear(x0, w, NULL)), NULL, 0), 0);
        ad_tensor *G = ad_tensor_grad(w);
        ot_assert_values(G, (double[]){1, 2, 1, 2}, 4, 0);
        /* d/dw sum(G w^T) = ones^T G = [2 4; 2 4], added to G or set */
        ck_assert_int_eq(ad_backward(ad_sum_all(ad_linear(G, w, NULL)), NULL, set ? AD_SET_GRAD : 0),
                         0);
        ot_assert_values(ad_tensor_grad(w), set ? (double[]){2, 4, 2, 4} : (double[]){3, 6, 3, 6},
                         4, 0);
        ad_tensor_free(w);
        ad_tensor_free(x0);
    }
}
END_TEST

/* The weight's own gradient as grad_output (a valid one: y is square):
 * the rule's product w.grad += gout^T x in place read gout while writing
 * it (only element 0 came out right at 4 x 4).  Against G + G^T x by
 * hand. */
START_TEST(weight_gradient_as_grad_output)
{
    enum { N = 4 };
    double xd[N * N], wd[N * N], gd[N * N], G[N * N], want[N * N];
    for (int i = 0; i < N * N; i++) {
        xd[i] = sin(1.7 * i + 0.3);
        wd[i] = cos(0.9 * i);
        gd[i] = 0.1 * i - 0.5;
    }
    for (int o = 0; o < N; o++) /* G = g^T x, the first pass */
        for (int i = 0; i < N; i++) {
            G[o * N + i] = 0;
            for (int m = 0; m < N; m++) G[o * N + i] += gd[m * N + o] * xd[m * N + i];
        }
    for (int o = 0; o < N; o++)
        for (int i = 0; i < N; i++) {
            want[o * N + i] = G[o * N + i];
            for (int m = 0; m < N; m++) want[o * N + i] += G[m * N + o] * xd[m * N + i];
        }
    for (int m = 0; m < 3; m++) { /* the built-in kernel reads as it writes */
        ad__gemm_testing_choice(MODES[m]);
        ad_tape *t = ad_tape_new();
        ad_tensor *w = ad_leaf(NULL, AD_FLOAT64, 2, (int64_t[]){N, N}, wd);
        ad_tensor *x = ad_from_array(t, AD_FLOAT64, 2, (int64_t[]){N, N}, xd);
        ad_tensor *g = ad_from_array(t, AD_FLOAT64, 2, (int64_t[]){N, N}, gd);
        ad_tensor *y = ad_linear(x, w, NULL);
        ck_assert_int_eq(ad_backward(y, g, AD_RETAIN_GRAPH), 0);
        ot_assert_values(ad_tensor_grad(w), G, N * N, 1e-15);
        ck_assert_int_eq(ad_backward(y, ad_tensor_grad(w), AD_RETAIN_GRAPH), 0);
        ot_assert_values(ad_tensor_grad(w), want, N * N, 1e-14);
        ad_tape_free(t);
        ad_tensor_free(w);
    }
    ad__gemm_testing_choice(-1);
}
END_TEST

/* Two backward passes into a persistent weight's gradient: the first makes
 * the buffer, the second adds into it in place (the product with beta = 1),
 * with w used by two linears; against ad_gradients, whose results go to
 * new tensors, summed by hand. */
START_TEST(weight_gradient_accumulates_in_place)
{
    for (int m = 0; m < 3; m++) {
        ad__gemm_testing_choice(MODES[m]);
        ad_rng rng;
        ad_rng_init(&rng, 13);
        ad_tensor *x = rnd(&rng, AD_FLOAT64, 9, 40), *x2 = rnd(&rng, AD_FLOAT64, 9, 40);
        ad_tensor *w = rnd(&rng, AD_FLOAT64, 20, 40);
        ad_tensor *b = ad_rand(NULL, &rng, AD_FLOAT64, 1, (int64_t[]){20}, -1.0, 1.0);
        ad_set_requires_grad(w, true);
        ad_set_requires_grad(b, true);
        ad_tensor *gw = NULL, *gb = NULL;
        for (int pass = 0; pass < 3; pass++) {
            ad_tensor *y = ad_add(ad_relu(ad_linear(x, w, b)), ad_linear(x2, w, NULL));
            ad_tensor *loss = ad_sum(ad_mul(y, y), NULL, 0, false);
            if (pass < 2) {
                ck_assert_int_eq(ad_backward(loss, NULL, 0), 0);
            } else {
                ad_tensor *in[2] = {w, b}, *g[2];
                ck_assert_int_eq(ad_gradients(loss, NULL, 2, in, g, 0), 0);
                gw = g[0];
                gb = g[1];
            }
        }
        ck_assert(ad_tensor_grad(w) && ad_tensor_grad(b) && gw && gb);
        const double *aw = ad_data(ad_tensor_grad(w)), *ab = ad_data(ad_tensor_grad(b));
        const double *rw = ad_data(gw), *rb = ad_data(gb);
        for (int64_t i = 0; i < 800; i++) ck_assert_double_eq_tol(aw[i], 2 * rw[i], 1e-10);
        for (int64_t i = 0; i < 20; i++) ck_assert_double_eq_tol(ab[i], 2 * rb[i], 1e-10);
        /* zero_grad, then one pass: exactly the single gradient again */
        ck_assert_int_eq(ad_zero_grad(w), 0);
        ad_tensor *y = ad_add(ad_relu(ad_linear(x, w, b)), ad_linear(x2, w, NULL));
        ck_assert_int_eq(ad_backward(ad_sum(ad_mul(y, y), NULL, 0, false), NULL, 0), 0);
        aw = ad_data(ad_tensor_grad(w));
        for (int64_t i = 0; i < 800; i++) ck_assert_double_eq_tol(aw[i], rw[i], 1e-10);
        ad_tensor *all[] = {x, x2, w, b};
        for (int i = 0; i < 4; i++) ad_tensor_free(all[i]);
        ad_tape_reset(T);
    }
}
END_TEST

/* The loss of the AD_SET_GRAD tests: w through two linears (its gradient
 * product written into its buffer) and inside a recomputed segment, b
 * through the bias, c elementwise (its gradient delivered and copied in). */
static int seg_fn(ad_tensor *const *in, int nin, ad_tensor **out, int nout, void *ctx)
{
    (void)nin, (void)nout, (void)ctx;
    out[0] = ad_tanh(ad_linear(in[0], in[1], NULL));
    return out[0] ? 0 : -1;
}

static ad_tensor *set_grad_loss(ad_tensor *x, ad_tensor *x2, ad_tensor *w, ad_tensor *b,
                                ad_tensor *c)
{
    ad_tensor *y = ad_add(ad_relu(ad_linear(x, w, b)), ad_linear(x2, w, NULL));
    ad_tensor *in[2] = {x2, w}, *s = NULL;
    ck_assert_int_eq(ad_checkpoint(seg_fn, NULL, 0, 2, in, 1, &s), 0);
    y = ad_mul(ad_add(y, s), c);
    return ad_sum(ad_mul(y, y), NULL, 0, false);
}

/* An AD_SET_GRAD pass gives the bits of ad_zero_grad and then a pass, over
 * gradients that held something; a leaf it does not reach keeps its
 * gradient and its version, and ad_grad_written tells the two kinds
 * apart; a second such pass does not add to the first;
 * ad_gradients refuses the flag; with AD_CREATE_GRAPH the recorded
 * gradient is the pass's alone. */
START_TEST(set_grad_is_zero_grad_then_backward)
{
    for (int m = 0; m < 3; m++)
        for (int d = 0; d < 2; d++) {
            ad_dtype dt = d ? AD_FLOAT32 : AD_FLOAT64;
            size_t es = ad_dtype_size(dt);
            ad__gemm_testing_choice(MODES[m]);
            ad_rng rng;
            ad_rng_init(&rng, 21);
            ad_tensor *x = rnd(&rng, dt, 9, 40), *x2 = rnd(&rng, dt, 9, 40);
            ad_tensor *w = rnd(&rng, dt, 40, 40), *c = rnd(&rng, dt, 9, 40);
            ad_tensor *b = ad_rand(NULL, &rng, dt, 1, (int64_t[]){40}, -1.0, 1.0);
            ad_tensor *u = rnd(&rng, dt, 3, 3); /* not in the loss */
            ad_tensor *leaves[4] = {w, b, c, u};
            for (int i = 0; i < 4; i++) ad_set_requires_grad(leaves[i], true);
            /* gradients that hold something: two passes, u's of its own */
            for (int pass = 0; pass < 2; pass++)
                ck_assert_int_eq(ad_backward(set_grad_loss(x, x2, w, b, c), NULL, 0), 0);
            ck_assert_int_eq(ad_backward(ad_sum(ad_mul(u, u), NULL, 0, false), NULL, 0), 0);
            ad_tensor *stale[4];
            for (int i = 0; i < 4; i++) stale[i] = ad_copy(NULL, ad_tensor_grad(leaves[i]));
            /* the reference: zero_grad, then a pass */
            for (int i = 0; i < 3; i++) ck_assert_int_eq(ad_zero_grad(leaves[i]), 0);
            ck_assert_int_eq(ad_backward(set_grad_loss(x, x2, w, b, c), NULL, 0), 0);
            ad_tensor *ref[3];
            for (int i = 0; i < 3; i++) ref[i] = ad_copy(NULL, ad_tensor_grad(leaves[i]));
            /* the old gradients back, then twice a pass that sets */
            for (int i = 0; i < 4; i++) ck_assert_int_eq(ad_copy_into(ad_tensor_grad(leaves[i]), stale[i]), 0);
            uint32_t uver = ad_version(ad_tensor_grad(u));
            for (int pass = 0; pass < 2; pass++) {
                ck_assert_int_eq(ad_backward(set_grad_loss(x, x2, w, b, c), NULL, AD_SET_GRAD), 0);
                for (int i = 0; i < 3; i++)
                    ck_assert_msg(memcmp(ad_data(ad_tensor_grad(leaves[i])), ad_data(ref[i]),
                                         (size_t)ad_numel(ref[i]) * es) == 0,
                                  "mode %d dtype %d pass %d: leaf %d's gradient differs", m, d,
                                  pass, i);
                ck_assert(memcmp(ad_data(ad_tensor_grad(u)), ad_data(stale[3]), 9 * es) == 0);
                ck_assert_uint_eq(ad_version(ad_tensor_grad(u)), uver);
                /* which leaves the pass wrote: the three, not u */
                ck_assert(ad_grad_written(w) && ad_grad_written(b) && ad_grad_written(c));
                ck_assert(!ad_grad_written(u) && !ad_grad_written(NULL));
            }
            /* ad_gradients writes no leaf: the flag is refused, by name */
            ad_tensor *gw;
            ck_assert_int_eq(ad_gradients(set_grad_loss(x, x2, w, b, c), NULL, 1, &w, &gw,
                                          AD_SET_GRAD), -1);
            ck_assert(strstr(ad_error(), "AD_SET_GRAD") != NULL);
            ad_clear_error();
            /* recorded: the gradient is this pass's, the old one left out */
            ck_assert_int_eq(ad_backward(set_grad_loss(x, x2, w, b, c), NULL,
                                         AD_CREATE_GRAPH | AD_SET_GRAD), 0);
            ad_tensor *gr = ad_tensor_grad(w);
            ck_assert(gr && ad_tensor_tape(gr) == T);
            for (int64_t i = 0; i < 1600; i++) {
                double got = dt == AD_FLOAT32 ? ((const float *)ad_data(gr))[i]
                                              : ((const double *)ad_data(gr))[i];
                double want = dt == AD_FLOAT32 ? ((const float *)ad_data(ref[0]))[i]
                                               : ((const double *)ad_data(ref[0]))[i];
                ck_assert_double_eq_tol(got, want, dt == AD_FLOAT32 ? 1e-3 : 1e-10);
            }
            ad_tape_reset(T);
            for (int i = 0; i < 3; i++) ad_tensor_free(ref[i]);
            for (int i = 0; i < 4; i++) ad_tensor_free(stale[i]);
            ad_tensor *all[] = {x, x2, w, b, c, u};
            for (int i = 0; i < 6; i++) ad_tensor_free(all[i]);
        }
}
END_TEST

START_TEST(kernel_choice_is_measured_once_per_shape)
{
    ad__gemm_testing_choice(AD_GEMM_CALIBRATE); /* forget earlier choices */
    ad_rng rng;
    ad_rng_init(&rng, 14);
    ad_tensor *x = rnd(&rng, AD_FLOAT32, 64, 200), *w = rnd(&rng, AD_FLOAT32, 48, 200);
    gemm_shape s = {AD_FLOAT32, 64, 48, 200, false, true};
    ck_assert_int_eq(ad__gemm_choice(&s, NULL, NULL), AD_GEMM_CALIBRATE);
    ck_assert(ad_linear(x, w, NULL) != NULL);
    double tb = -1, tl = -1;
    int pick = ad__gemm_choice(&s, &tb, &tl);
    /* With CBLAS the product measured both kernels; without, nothing to
     * choose and the shape stays unmeasured. */
    if (pick != AD_GEMM_CALIBRATE) {
        ck_assert(pick == AD_GEMM_BUILTIN || pick == AD_GEMM_BLAS);
        ck_assert(tb > 0 && tl > 0);
        ck_assert_int_eq(pick, tl * CHOICE_MARGIN < tb ? AD_GEMM_BLAS : AD_GEMM_BUILTIN);
        /* the next product of the shape reuses the choice */
        ck_assert(ad_linear(x, w, NULL) != NULL);
        double tb2, tl2;
        ck_assert_int_eq(ad__gemm_choice(&s, &tb2, &tl2), pick);
        ck_assert(tb2 == tb && tl2 == tl);
    }
    /* a forced mode answers without measuring */
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ck_assert_int_eq(ad__gemm_choice(&s, NULL, NULL), AD_GEMM_BUILTIN);
    ad_tensor_free(x);
    ad_tensor_free(w);
}
END_TEST

/* The default's rule (gemm.c, builtin_by_default): float32 products at
 * least 64 wide in m, n and k run on the built-in kernel when it is the
 * AVX-512 one, and x W^T with a small batch when it is the AVX2 one and
 * OpenBLAS runs AVX2 too; every other product CBLAS can take on CBLAS.
 * Told apart by their bits: the two kernels sum in different orders. */
static void *linear_bits(int mode, ad_tensor *x, ad_tensor *w, size_t *bytes)
{
    ad__gemm_testing_choice(mode);
    ad_tensor *y = ad_linear(x, w, NULL);
    ck_assert_msg(y != NULL, "%s", ad_error());
    *bytes = (size_t)ad_numel(y) * ad_dtype_size(ad_tensor_dtype(y));
    void *copy = malloc(*bytes);
    memcpy(copy, ad_data(y), *bytes);
    return copy;
}

START_TEST(default_choice_by_shape)
{
    if (getenv("AD_GEMM")) return; /* the environment chose a mode: no default to check */
    ad_rng rng;
    ad_rng_init(&rng, 16);
    /* k = 784 takes several k blocks, which the two kernels cut differently
     * (over one block both sum in order with fused multiply-adds: the same
     * bits) */
    ad_tensor *x = rnd(&rng, AD_FLOAT32, 64, 784), *w = rnd(&rng, AD_FLOAT32, 96, 784);
    ad_tensor *w10 = rnd(&rng, AD_FLOAT32, 10, 784);
    bool avx512 = strncmp(ad__gemm_kernel_name(AD_FLOAT32), "avx512", 6) == 0;
    size_t n, n10;
    void *bi = linear_bits(AD_GEMM_BUILTIN, x, w, &n), *bl = linear_bits(AD_GEMM_BLAS, x, w, &n);
    void *def = linear_bits(-1, x, w, &n);
    bool cblas = memcmp(bi, bl, n) != 0; /* without CBLAS both modes run the built-in kernel */
    /* x W^T: x row-major (csa 1), W^T read transposed (rsb 1, csb 784) */
    bool rule = ad__gemm_default_builtin(AD_FLOAT32, 64, 96, 784, 1, 1, 784);
    if (cblas && avx512) ck_assert(rule);
    if (cblas && !avx512) /* the AVX2 kernel: the turned-around products, when OpenBLAS is AVX2 too */
        ck_assert(!rule || ad__gemm_swap_takes(AD_FLOAT32, 64, 96, 784, 1, 1, 784));
    ck_assert(!ad__gemm_default_builtin(AD_FLOAT64, 64, 96, 784, 1, 1, 784));
    ck_assert_msg(memcmp(def, cblas && !rule ? bl : bi, n) == 0,
                  "64 x 96 x 784 float32 went to %s by default (kernel %s)",
                  memcmp(def, bl, n) == 0 ? "CBLAS" : "the built-in kernel",
                  ad__gemm_kernel_name(AD_FLOAT32));
    void *bl10 = linear_bits(AD_GEMM_BLAS, x, w10, &n10), *def10 = linear_bits(-1, x, w10, &n10);
    ck_assert_msg(memcmp(def10, bl10, n10) == 0, "64 x 10 x 784 did not go to CBLAS by default");
    free(bi), free(bl), free(def), free(bl10), free(def10);
    ad_tensor_free(x);
    ad_tensor_free(w);
    ad_tensor_free(w10);
}
END_TEST

START_TEST(errors)
{
    ad_rng rng;
    ad_rng_init(&rng, 15);
    ad_tensor *x = rnd(&rng, AD_FLOAT64, 64, 783), *w = rnd(&rng, AD_FLOAT64, 256, 784);
    ad_tensor *b10 = ad_zeros(NULL, AD_FLOAT64, 1, (int64_t[]){10});
    ad_tensor *w3 = ad_zeros(NULL, AD_FLOAT64, 3, (int64_t[]){2, 3, 4});
    ad_tensor *xf = ad_zeros(NULL, AD_FLOAT32, 2, (int64_t[]){2, 784});
    ck_assert_error(ad_linear(x, w, NULL),
                    "ad_linear: x has 783 features but w is [256,784] (x [64,783])");
    ad_tensor *v784 = ad_zeros(T, AD_FLOAT64, 1, (int64_t[]){784});
    ck_assert_error(ad_linear(v784, w, b10),
                    "ad_linear: bias must be [256] for w [256,784], got [10]");
    ck_assert_error(ad_linear(x, w3, NULL), "ad_linear: expected x [..., in] and w [out, in]");
    ck_assert_error(ad_linear(xf, w, NULL), "ad_linear");
    ck_assert_error(ad_linear(NULL, w, NULL), "ad_linear: argument 'x' is NULL");
    ad_tensor *all[] = {x, w, b10, w3, xf};
    for (int i = 0; i < 5; i++) ad_tensor_free(all[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("linear");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, values_with_every_kernel);
    tcase_add_test(tc, batched_and_strided_inputs);
    tcase_add_test(tc, no_output_features);
    tcase_add_test(tc, weight_gradient_read_by_the_rule);
    tcase_add_test(tc, weight_gradient_as_grad_output);
    tcase_add_test(tc, weight_gradient_accumulates_in_place);
    tcase_add_test(tc, set_grad_is_zero_grad_then_backward);
    tcase_add_test(tc, kernel_choice_is_measured_once_per_shape);
    tcase_add_test(tc, default_choice_by_shape);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

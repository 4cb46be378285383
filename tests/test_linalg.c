/* tests/test_linalg.c - matmul and dot against hand-computed products and a
 * long double triple loop: every shape case of torch.matmul, views, both
 * dtypes, gradients, replay, the built-in GEMM kernel's edge paths (both
 * micro-kernels, tiny cache blocks), and every bad argument. */
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
    ad_tape_activate(NULL);
    ad_tape_free(T);
}

#define assert_shape ot_assert_shape
#define assert_values ot_assert_values

static ad_tensor *leaf(int ndim, const int64_t *shape, const double *v)
{
    ad_tensor *x = ot_f64(T, ndim, shape, v);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    return x;
}

/* All values of x, row-major, in a malloc'd array. */
static double *values(const ad_tensor *x)
{
    double *v = malloc((size_t)(ad_numel(x) + 1) * sizeof *v);
    ck_assert(v != NULL);
    ck_assert_int_eq(ad_to_array(x, v), 0);
    return v;
}

/* C = A B in long double, all row-major contiguous. */
static void naive(int64_t m, int64_t n, int64_t k, const double *a, const double *b, double *c)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            long double s = 0;
            for (int64_t p = 0; p < k; p++) s += (long double)a[i * k + p] * b[p * n + j];
            c[i * n + j] = (double)s;
        }
}

/* ---- values ---------------------------------------------------------------------------- */
START_TEST(small_products)
{
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype d = dt ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *a = ad_cast(ot_f64(T, AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6}), d);
        ad_tensor *b = ad_cast(ot_f64(T, AD_SHAPE(3, 2), (double[]){7, 8, 9, 10, 11, 12}), d);
        ad_tensor *c = ad_matmul(a, b);
        assert_shape(c, 2, (int64_t[]){2, 2});
        ck_assert_int_eq(ad_tensor_dtype(c), d);
        assert_values(c, (double[]){58, 64, 139, 154}, 4, 0);
        ad_tensor *c2 = ad_matmul(b, a); /* [3,2] x [2,3] */
        assert_values(c2, (double[]){39, 54, 69, 49, 68, 87, 59, 82, 105}, 9, 0);
    }
    /* The identity and a 1 x 1 product. */
    ad_tensor *m = ot_f64(T, AD_SHAPE(2, 2), (double[]){1.5, -2, 0.25, 8});
    assert_values(ad_matmul(ad_eye(T, AD_FLOAT64, 2), m), (double[]){1.5, -2, 0.25, 8}, 4, 0);
    ad_tensor *one = ad_matmul(ot_f64(T, AD_SHAPE(1, 1), (double[]){3}),
                               ot_f64(T, AD_SHAPE(1, 1), (double[]){-4}));
    assert_shape(one, 2, (int64_t[]){1, 1});
    ck_assert_close(ad_item(one), -12, 0);
}
END_TEST

START_TEST(vector_cases)
{
    ad_tensor *u = ot_f64(T, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *v = ot_f64(T, AD_SHAPE(3), (double[]){4, 5, 6});
    ad_tensor *B = ot_f64(T, AD_SHAPE(3, 2), (double[]){1, -1, 2, 0, 0, 5});
    ad_tensor *A = ot_f64(T, AD_SHAPE(2, 3), (double[]){1, 0, 2, -3, 1, 1});
    /* 1-D . 1-D is the dot product, a 0-d tensor. */
    ad_tensor *d = ad_matmul(u, v);
    assert_shape(d, 0, NULL);
    ck_assert_close(ad_item(d), 32, 0);
    ck_assert_close(ad_item(ad_dot(u, v)), 32, 0);
    /* [3] x [3,2] -> [2]: the promoted leading 1 is removed. */
    ad_tensor *r = ad_matmul(u, B);
    assert_shape(r, 1, (int64_t[]){2});
    assert_values(r, (double[]){5, 14}, 2, 0);
    /* [2,3] x [3] -> [2]. */
    ad_tensor *c = ad_matmul(A, v);
    assert_shape(c, 1, (int64_t[]){2});
    assert_values(c, (double[]){16, -1}, 2, 0);
}
END_TEST

START_TEST(batched_broadcast)
{
    /* [2,1,3,4] x [5,4,6] -> [2,5,3,6]: a's batch [2,1] against b's [5]. */
    ad_rng rng;
    ad_rng_init(&rng, 7);
    ad_tensor *a = ad_rand(T, &rng, AD_FLOAT64, AD_SHAPE(2, 1, 3, 4), -1, 1);
    ad_tensor *b = ad_rand(T, &rng, AD_FLOAT64, AD_SHAPE(5, 4, 6), -1, 1);
    ad_tensor *c = ad_matmul(a, b);
    assert_shape(c, 4, (int64_t[]){2, 5, 3, 6});
    double *va = values(a), *vb = values(b), *vc = values(c), want[18];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 5; j++) {
            naive(3, 6, 4, va + i * 12, vb + j * 24, want);
            for (int e = 0; e < 18; e++) ck_assert_close(vc[(i * 5 + j) * 18 + e], want[e], 1e-15);
        }
    free(va);
    free(vb);
    free(vc);
    /* [2,3,4] x [4] -> [2,3] and [4] x [2,4,3] -> [2,3]. */
    ad_tensor *x = ad_reshape(ad_arange(T, AD_FLOAT64, 0, 24, 1), 3, (int64_t[]){2, 3, 4});
    ad_tensor *w = ot_f64(T, AD_SHAPE(4), (double[]){1, 0, -1, 2});
    ad_tensor *xw = ad_matmul(x, w);
    assert_shape(xw, 2, (int64_t[]){2, 3});
    for (int r = 0; r < 6; r++) ck_assert_close(ot_at(xw, r), 8 * r + 4, 0); /* x0 - x2 + 2 x3 */
    ad_tensor *wx = ad_matmul(w, ad_reshape(x, 3, (int64_t[]){2, 4, 3}));
    assert_shape(wx, 2, (int64_t[]){2, 3});
    /* batch t, column j: x[t][0][j] - x[t][2][j] + 2 x[t][3][j] with x = 12 t + 3 p + j */
    for (int t = 0; t < 2; t++)
        for (int j = 0; j < 3; j++) ck_assert_close(ot_at(wx, t * 3 + j), 24 * t + 2 * j + 12, 0);
    /* A matrix against a batch, and a batch of one against a batch. */
    ad_tensor *m = ot_f64(T, AD_SHAPE(1, 2), (double[]){1, 1});
    ad_tensor *bb = ad_reshape(ad_arange(T, AD_FLOAT64, 0, 12, 1), 3, (int64_t[]){3, 2, 2});
    ad_tensor *mb = ad_matmul(m, bb);
    assert_shape(mb, 3, (int64_t[]){3, 1, 2});
    assert_values(mb, (double[]){2, 4, 10, 12, 18, 20}, 6, 0);
    ad_tensor *m1 = ad_reshape(m, 3, (int64_t[]){1, 1, 2});
    assert_values(ad_matmul(m1, bb), (double[]){2, 4, 10, 12, 18, 20}, 6, 0);
}
END_TEST

START_TEST(views_as_operands)
{
    /* A^T stored as A: the kernel reads the transpose through its strides. */
    ad_tensor *s = ot_f64(T, AD_SHAPE(3, 2), (double[]){1, 4, 2, 5, 3, 6});
    ad_tensor *a = ad_transpose(s, 0, 1); /* [[1,2,3],[4,5,6]] */
    ck_assert(!ad_is_contiguous(a));
    ad_tensor *bs = ot_f64(T, AD_SHAPE(2, 3), (double[]){7, 9, 11, 8, 10, 12});
    ad_tensor *b = ad_transpose(bs, 0, 1); /* [[7,8],[9,10],[11,12]] */
    assert_values(ad_matmul(a, b), (double[]){58, 64, 139, 154}, 4, 0);
    assert_values(ad_matmul(a, ad_contiguous(b)), (double[]){58, 64, 139, 154}, 4, 0);
    /* No unit stride at all (every other column of a [2,6]) and a stride-0
     * broadcast row: CBLAS cannot take these, so they are copied. */
    ad_tensor *wide = ot_f64(T, AD_SHAPE(2, 6), (double[]){1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0});
    ad_tensor *sl = ad_slice(wide, 1, 0, 6, 2);
    assert_values(ad_matmul(sl, b), (double[]){58, 64, 139, 154}, 4, 0);
    ad_tensor *row = ot_f64(T, AD_SHAPE(1, 3), (double[]){1, 2, 3});
    ad_tensor *rep = ad_expand(row, 2, (int64_t[]){2, 3});
    assert_values(ad_matmul(rep, b), (double[]){58, 64, 58, 64}, 4, 0);
    /* A column of a matrix as a strided vector. */
    ad_tensor *col = ad_slice(ad_transpose(s, 0, 1), 0, 1, 2, 1); /* [[4,5,6]] */
    ad_tensor *v = ad_reshape(col, 1, (int64_t[]){3});
    assert_values(ad_matmul(v, b), (double[]){139, 154}, 2, 0);
}
END_TEST

START_TEST(empty_operands)
{
    ad_tensor *a = ad_zeros(T, AD_FLOAT64, AD_SHAPE(0, 3));
    ad_tensor *b = ot_f64(T, AD_SHAPE(3, 2), (double[]){1, 2, 3, 4, 5, 6});
    assert_shape(ad_matmul(a, b), 2, (int64_t[]){0, 2});
    /* k = 0: a sum of nothing, so zeros. */
    ad_tensor *c = ad_matmul(ad_zeros(T, AD_FLOAT64, AD_SHAPE(2, 0)),
                             ad_zeros(T, AD_FLOAT64, AD_SHAPE(0, 3)));
    assert_values(c, (double[]){0, 0, 0, 0, 0, 0}, 6, 0);
    ck_assert_close(ad_item(ad_dot(ad_zeros(T, AD_FLOAT32, AD_SHAPE(0)),
                                   ad_zeros(T, AD_FLOAT32, AD_SHAPE(0)))),
                    0, 0);
}
END_TEST

/* 67 x 45 times 45 x 31, both dtypes, against long double. */
START_TEST(random_against_long_double)
{
    ad_rng rng;
    ad_rng_init(&rng, 42);
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype d = dt ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *a = ad_rand(T, &rng, d, AD_SHAPE(67, 45), -1, 1);
        ad_tensor *b = ad_rand(T, &rng, d, AD_SHAPE(45, 31), -1, 1);
        double *va = values(a), *vb = values(b), *want = malloc(67 * 31 * sizeof *want);
        naive(67, 31, 45, va, vb, want);
        /* float64 rounds each of 45 products and sums: ~45 ulps at worst;
         * float32 the same at 2^-24. */
        double tol = d == AD_FLOAT64 ? 1e-13 : 1e-5;
        double *got = values(ad_matmul(a, b));
        for (int i = 0; i < 67 * 31; i++) ck_assert_close(got[i], want[i], tol);
        free(got);
        /* And through transposed views of transposed copies. */
        ad_tensor *at = ad_transpose(ad_contiguous(ad_transpose(a, 0, 1)), 0, 1);
        ad_tensor *bt = ad_transpose(ad_contiguous(ad_transpose(b, 0, 1)), 0, 1);
        got = values(ad_matmul(at, bt));
        for (int i = 0; i < 67 * 31; i++) ck_assert_close(got[i], want[i], tol);
        free(got);
        free(va);
        free(vb);
        free(want);
    }
}
END_TEST

START_TEST(float32_matches_float64)
{
    ad_rng rng;
    ad_rng_init(&rng, 3);
    ad_tensor *a = ad_rand(T, &rng, AD_FLOAT64, AD_SHAPE(3, 20, 30), -2, 2);
    ad_tensor *b = ad_rand(T, &rng, AD_FLOAT64, AD_SHAPE(30, 10), -2, 2);
    ad_tensor *c64 = ad_matmul(a, b);
    ad_tensor *c32 = ad_matmul(ad_cast(a, AD_FLOAT32), ad_cast(b, AD_FLOAT32));
    ck_assert_int_eq(ad_tensor_dtype(c32), AD_FLOAT32);
    double *x = values(c64), *y = values(c32);
    for (int i = 0; i < 600; i++) ck_assert_close(y[i], x[i], 2e-5 * 30);
    free(x);
    free(y);
}
END_TEST

/* ---- gradients ------------------------------------------------------------------------- */
START_TEST(matrix_gradients)
{
    /* dA = G B^T, dB = A^T G. */
    ad_tensor *A = leaf(AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *B = leaf(AD_SHAPE(3, 2), (double[]){7, 8, 9, 10, 11, 12});
    ad_tensor *G = ot_f64(T, AD_SHAPE(2, 2), (double[]){1, 0, 2, -1});
    ck_assert_int_eq(ad_backward(ad_matmul(A, B), G, 0), 0);
    /* G B^T: row 0 = B[:,0]; row 1 = 2 B[:,0] - B[:,1] */
    assert_values(ad_tensor_grad(A), (double[]){7, 9, 11, 6, 8, 10}, 6, 0);
    /* A^T G: row p = [A0p + 2 A1p, -A1p] */
    assert_values(ad_tensor_grad(B), (double[]){9, -4, 12, -5, 15, -6}, 6, 0);
}
END_TEST

START_TEST(vector_gradients)
{
    ad_tensor *u = leaf(AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *B = leaf(AD_SHAPE(3, 2), (double[]){1, -1, 2, 0, 0, 5});
    ad_tensor *g = ot_f64(T, AD_SHAPE(2), (double[]){1, 2});
    ck_assert_int_eq(ad_backward(ad_matmul(u, B), g, 0), 0);
    assert_shape(ad_tensor_grad(u), 1, (int64_t[]){3});
    assert_values(ad_tensor_grad(u), (double[]){-1, 2, 10}, 3, 0); /* B g */
    assert_values(ad_tensor_grad(B), (double[]){1, 2, 2, 4, 3, 6}, 6, 0); /* u g^T */
    /* [2,3] x [3]: dA = g v^T, dv = A^T g */
    ad_tensor *A = leaf(AD_SHAPE(2, 3), (double[]){1, 0, 2, -3, 1, 1});
    ad_tensor *v = leaf(AD_SHAPE(3), (double[]){4, 5, 6});
    ck_assert_int_eq(ad_backward(ad_matmul(A, v), g, 0), 0);
    assert_values(ad_tensor_grad(A), (double[]){4, 5, 6, 8, 10, 12}, 6, 0);
    assert_values(ad_tensor_grad(v), (double[]){-5, 2, 4}, 3, 0);
    /* dot: da = g b, db = g a. */
    ad_tensor *a = leaf(AD_SHAPE(2), (double[]){1, 2});
    ad_tensor *b = leaf(AD_SHAPE(2), (double[]){3, 4});
    ck_assert_int_eq(ad_backward(ad_dot(a, b), ad_scalar_tensor(T, AD_FLOAT64, 2), 0), 0);
    assert_values(ad_tensor_grad(a), (double[]){6, 8}, 2, 0);
    assert_values(ad_tensor_grad(b), (double[]){2, 4}, 2, 0);
}
END_TEST

START_TEST(broadcast_batch_gradients_are_summed)
{
    /* A [2,3] shared by a batch of 4 B's: dA = sum_t G_t B_t^T. With G = 1:
     * dA[i][p] = sum_t sum_j B_t[p][j]; dB_t[p][j] = sum_i A[i][p]. */
    ad_tensor *A = leaf(AD_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *Bv = ad_reshape(ad_arange(T, AD_FLOAT64, 0, 24, 1), 3, (int64_t[]){4, 3, 2});
    ad_tensor *B = ad_contiguous(Bv);
    ad_tensor *Bl = ad_detach(B);
    ck_assert_int_eq(ad_set_requires_grad(Bl, true), 0);
    ad_tensor *C = ad_matmul(A, Bl);
    assert_shape(C, 3, (int64_t[]){4, 2, 2});
    ck_assert_int_eq(ad_backward(ad_sum(C, NULL, 0, false), NULL, 0), 0);
    /* B_t[p][j] = 6 t + 2 p + j: sum over t, j = 2 (6 * 6) + 8 (2 p) + 4 = 76 + 16 p */
    assert_values(ad_tensor_grad(A), (double[]){76, 92, 108, 76, 92, 108}, 6, 0);
    ad_tensor *gB = ad_tensor_grad(Bl);
    assert_shape(gB, 3, (int64_t[]){4, 3, 2});
    for (int t = 0; t < 4; t++)
        for (int p = 0; p < 3; p++)
            for (int j = 0; j < 2; j++) ck_assert_close(ot_at(gB, t * 6 + p * 2 + j), 5 + 2 * p, 0);
}
END_TEST

START_TEST(second_derivative)
{
    /* f(A) = sum((A B)^2): df/dA = 2 (A B) B^T, and d/dA of
     * <df/dA, E> is 2 E B B^T.  B = [[1,2],[3,4]], E = e_00. */
    ad_tensor *A = leaf(AD_SHAPE(1, 2), (double[]){1, -1});
    ad_tensor *B = ot_f64(T, AD_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *C = ad_matmul(A, B);
    ad_tensor *f = ad_sum(ad_mul(C, C), NULL, 0, false);
    ad_tensor *g;
    ck_assert_int_eq(ad_gradients(f, NULL, 1, &A, &g, AD_CREATE_GRAPH), 0);
    /* A B = [-2, -2]; 2 (A B) B^T = [-12, -28] */
    assert_values(g, (double[]){-12, -28}, 2, 0);
    ad_tensor *h;
    ad_tensor *E = ot_f64(T, AD_SHAPE(1, 2), (double[]){1, 0});
    ck_assert_int_eq(ad_gradients(ad_sum(ad_mul(g, E), NULL, 0, false), NULL, 1, &A, &h, 0), 0);
    /* 2 e0 B B^T = 2 [5, 11] */
    assert_values(h, (double[]){10, 22}, 2, 0);
}
END_TEST

/* ---- the built-in kernel ------------------------------------------------------------- */
/* C = A B for an m x k and a k x n operand stored plain or transposed,
 * through ad__gemm_builtin (or ad__gemm: CBLAS in a blas build), against
 * long double. */
static bool via_dispatch;

static void check_builtin(ad_dtype d, int64_t m, int64_t n, int64_t k, bool ta, bool tb)
{
    size_t es = ad_dtype_size(d);
    double *a = malloc((size_t)(m * k + 1) * sizeof *a);
    double *b = malloc((size_t)(k * n + 1) * sizeof *b);
    double *want = malloc((size_t)(m * n + 1) * sizeof *want);
    char *pa = malloc((size_t)(m * k + 1) * es), *pb = malloc((size_t)(k * n + 1) * es);
    char *pc = malloc((size_t)(m * n + 1) * es);
    ad_rng rng;
    ad_rng_init(&rng, (uint64_t)(m * 1000 + n * 10 + k));
    for (int64_t i = 0; i < m * k; i++) a[i] = ad_rng_uniform(&rng) * 2 - 1;
    for (int64_t i = 0; i < k * n; i++) b[i] = ad_rng_uniform(&rng) * 2 - 1;
    if (d == AD_FLOAT32) { /* the reference sees the float32 inputs */
        for (int64_t i = 0; i < m * k; i++) a[i] = (float)a[i];
        for (int64_t i = 0; i < k * n; i++) b[i] = (float)b[i];
    }
    naive(m, n, k, a, b, want);
    /* Store A row-major, or column-major when ta (read back as a transpose). */
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++) {
            int64_t o = ta ? p * m + i : i * k + p;
            if (d == AD_FLOAT32) ((float *)pa)[o] = (float)a[i * k + p];
            else ((double *)pa)[o] = a[i * k + p];
        }
    for (int64_t p = 0; p < k; p++)
        for (int64_t j = 0; j < n; j++) {
            int64_t o = tb ? j * k + p : p * n + j;
            if (d == AD_FLOAT32) ((float *)pb)[o] = (float)b[p * n + j];
            else ((double *)pb)[o] = b[p * n + j];
        }
    memset(pc, 0x7f, (size_t)(m * n + 1) * es); /* garbage: C must be overwritten */
    int (*gemm)(ad_tape *, ad_dtype, int64_t, int64_t, int64_t, const void *, int64_t, int64_t,
                const void *, int64_t, int64_t, void *, int64_t) =
        via_dispatch ? ad__gemm : ad__gemm_builtin;
    int rc = gemm(NULL, d, m, n, k, pa, ta ? 1 : k, ta ? m : 1, pb, tb ? 1 : n, tb ? k : 1, pc, n);
    ck_assert_int_eq(rc, 0);
    double tol = d == AD_FLOAT32 ? 3e-6 * (double)(k + 1) : 1e-15 * (double)(k + 1);
    for (int64_t i = 0; i < m * n; i++) {
        double got = d == AD_FLOAT32 ? ((float *)pc)[i] : ((double *)pc)[i];
        ck_assert_msg(fabs(got - want[i]) <= tol,
                      "%s %s m=%lld n=%lld k=%lld ta=%d tb=%d: C[%lld] = %.17g, want %.17g",
                      ad_dtype_name(d), ad__gemm_kernel_name(d), (long long)m, (long long)n,
                      (long long)k, ta, tb, (long long)i, got, want[i]);
    }
    free(a);
    free(b);
    free(want);
    free(pa);
    free(pb);
    free(pc);
}

/* The shapes in the dtypes of mask (1 float64, 2 float32). */
static void builtin_sweep_of(int mask)
{
    static const int64_t shapes[][3] = {
        {67, 31, 45}, /* ragged in every direction */
        {12, 16, 64}, /* exact tiles for 6x16 / 4x8 */
        {24, 24, 300}, /* k beyond one k block */
        {1, 50, 70},  /* a row vector result */
        {50, 1, 70},  /* a column vector result */
        {5, 3, 2},    /* tiny */
        {13, 17, 0},  /* k = 0: zeros */
        {130, 70, 33},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int dt = 0; dt < 2; dt++) {
            if (!(mask >> dt & 1)) continue;
            for (int t = 0; t < 4; t++)
                check_builtin(dt ? AD_FLOAT32 : AD_FLOAT64, shapes[s][0], shapes[s][1],
                              shapes[s][2], t & 1, t & 2);
        }
}

static void builtin_sweep(void) { builtin_sweep_of(3); }

START_TEST(builtin_kernel_default_blocking)
{
    ck_assert(ad__gemm_kernel_name(AD_FLOAT32) != NULL);
    builtin_sweep();
    ad__gemm_testing(true, 0, 0, 0);
    ck_assert(strncmp(ad__gemm_kernel_name(AD_FLOAT64), "generic", 7) == 0);
    builtin_sweep();
}
END_TEST

START_TEST(builtin_kernel_tiny_blocks)
{
    /* Blocks smaller than the matrices: several jc, pc and ic iterations,
     * accumulation across k blocks, partial tiles at every block edge. */
    ad__gemm_testing(false, 7, 5, 9);
    builtin_sweep();
    ad__gemm_testing(true, 9, 4, 5);
    builtin_sweep();
}
END_TEST

/* The product of the first m rows of A (m x k, k x n, each plain or
 * transposed) has the bits of the same rows of the product of all of A's
 * rows: a last strip of A computed by a partial kernel (m = 64: four
 * strips of 14 and one of 8) sums in the order of the full kernel. */
static void check_partial_rows(ad_dtype d, int64_t m, int64_t rows, int64_t n, int64_t k,
                               bool ta, bool tb)
{
    size_t es = ad_dtype_size(d);
    char *a = malloc((size_t)(rows * k) * es), *b = malloc((size_t)(k * n) * es);
    char *c_all = malloc((size_t)(rows * n) * es), *c_m = malloc((size_t)(m * n) * es);
    ad_rng rng;
    ad_rng_init(&rng, (uint64_t)(m * 7 + n * 3 + k));
    for (int64_t i = 0; i < rows * k; i++) {
        double v = ad_rng_uniform(&rng) * 2 - 1;
        if (d == AD_FLOAT32) ((float *)a)[i] = (float)v;
        else ((double *)a)[i] = v;
    }
    for (int64_t i = 0; i < k * n; i++) {
        double v = ad_rng_uniform(&rng) * 2 - 1;
        if (d == AD_FLOAT32) ((float *)b)[i] = (float)v;
        else ((double *)b)[i] = v;
    }
    /* A transposed: column-major with leading dimension rows, so its first
     * m rows are the same numbers read with the same strides */
    int64_t rsa = ta ? 1 : k, csa = ta ? rows : 1, rsb = tb ? 1 : n, csb = tb ? k : 1;
    ck_assert_int_eq(ad__gemm_builtin(NULL, d, rows, n, k, a, rsa, csa, b, rsb, csb, c_all, n), 0);
    ck_assert_int_eq(ad__gemm_builtin(NULL, d, m, n, k, a, rsa, csa, b, rsb, csb, c_m, n), 0);
    ck_assert_msg(memcmp(c_all, c_m, (size_t)(m * n) * es) == 0,
                  "%s %s: rows 0..%lld of %lld x %lld x %lld (ta=%d tb=%d) differ from the "
                  "product of %lld rows",
                  ad_dtype_name(d), ad__gemm_kernel_name(d), (long long)m - 1, (long long)m,
                  (long long)n, (long long)k, ta, tb, (long long)rows);
    free(a), free(b), free(c_all), free(c_m);
}

/* Runs body(d, name, ctx) with each kernel this CPU can run forced in
 * turn, in each dtype (the AVX-512 one and the AVX2 one on an AVX-512
 * machine, the portable twin of the 14-row tile everywhere), in blocks
 * mc x kc x nc (0: the kernel's); then back to every default.  Returns
 * how many kernels ran. */
static int each_kernel(int64_t mc, int64_t kc, int64_t nc,
                       void (*body)(ad_dtype d, const char *name, void *ctx), void *ctx)
{
    int ran = 0;
    for (int dt = 0; dt < 2; dt++) {
        ad_dtype d = dt ? AD_FLOAT32 : AD_FLOAT64;
        bool ok;
        const char *name;
        for (int i = 0; (name = ad__gemm_kernel_at(d, i, &ok)) != NULL; i++) {
            if (!ok) continue;
            ad__gemm_testing(false, mc, kc, nc);
            ck_assert_int_eq(ad__gemm_testing_kernel(d, name), 0);
            ck_assert_str_eq(ad__gemm_kernel_name(d), name);
            body(d, name, ctx);
            ran++;
        }
    }
    ad__gemm_testing(false, 0, 0, 0);
    return ran;
}

/* The sweep, then shapes for the register-transposing packs of transposed
 * operands (full strips of 32 and 16 with 16- and 8-long runs along k and
 * their tails) and the partial kernels (last strips of 8, 4 and 3 rows). */
static void every_kernel_body(ad_dtype d, const char *name, void *ctx)
{
    (void)name, (void)ctx;
    static const int64_t extra[][3] = {{64, 70, 50}, {32, 48, 40}, {17, 33, 19}, {64, 256, 80}};
    builtin_sweep_of(d == AD_FLOAT32 ? 2 : 1); /* the other dtype's kernel is not forced */
    for (size_t s = 0; s < sizeof extra / sizeof extra[0]; s++)
        for (int t = 0; t < 4; t++) {
            check_builtin(d, extra[s][0], extra[s][1], extra[s][2], t & 1, t & 2);
            check_partial_rows(d, extra[s][0], 70, extra[s][1], extra[s][2], t & 1, t & 2);
        }
}

START_TEST(builtin_kernel_every_kernel)
{
    /* generic and the portable twin, in each dtype, at least */
    ck_assert_int_ge(each_kernel(0, 0, 0, every_kernel_body, NULL), 4);
    ck_assert_int_eq(ad__gemm_testing_kernel(AD_FLOAT32, "no such kernel"), -1);
}
END_TEST

/* AD_GEMM_QUICK=1 (scripts/valgrind, whose point is memory errors): the
 * path comparisons run in the kernels' own blocks only, not again in tiny
 * ones (several m, n and k blocks); the release and sanitizer builds run
 * both. */
static bool gemm_quick(void) { return getenv("AD_GEMM_QUICK") != NULL; }

/* C computed with a path of the built-in kernel (use(true)) and without
 * it (use(false)): the same bytes. */
static void check_two_paths(ad_dtype d, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                            int variant, void (*use)(bool), const char *what)
{
    size_t es = ad_dtype_size(d);
    int64_t bstr = variant == 2 ? 3 : 1;
    char *a = malloc((size_t)(m * k) * es), *b = malloc((size_t)(k * n) * es);
    char *bias = malloc((size_t)(n * bstr) * es);
    char *c0 = malloc((size_t)(m * n) * es), *c_thin = malloc((size_t)(m * n) * es);
    char *c_blocked = malloc((size_t)(m * n) * es);
    ad_rng rng;
    ad_rng_init(&rng, (uint64_t)(m * 31 + n * 7 + k));
    for (int64_t i = 0; i < m * k + k * n + n * bstr + m * n; i++) {
        double v = ad_rng_uniform(&rng) * 2 - 1;
        char *dst = i < m * k ? a : i < m * k + k * n ? b : i < m * k + k * n + n * bstr ? bias : c0;
        int64_t j = i < m * k ? i : i < m * k + k * n ? i - m * k
                  : i < m * k + k * n + n * bstr ? i - m * k - k * n : i - m * k - k * n - n * bstr;
        if (d == AD_FLOAT32) ((float *)dst)[j] = (float)v;
        else ((double *)dst)[j] = v;
    }
    int64_t rsa = ta ? 1 : k, csa = ta ? m : 1, rsb = tb ? 1 : n, csb = tb ? k : 1;
    ad_gemm_ep ep = {.bias = variant == 1 || variant == 2 ? bias : NULL, .bias_stride = bstr,
                     .accumulate = variant == 3};
    memcpy(c_thin, c0, (size_t)(m * n) * es);
    ck_assert_int_eq(ad__gemm_builtin_ep(NULL, d, m, n, k, a, rsa, csa, b, rsb, csb, c_thin, n,
                                         variant ? &ep : NULL), 0);
    use(false);
    memcpy(c_blocked, c0, (size_t)(m * n) * es);
    ck_assert_int_eq(ad__gemm_builtin_ep(NULL, d, m, n, k, a, rsa, csa, b, rsb, csb, c_blocked,
                                         n, variant ? &ep : NULL), 0);
    use(true);
    ck_assert_msg(memcmp(c_thin, c_blocked, (size_t)(m * n) * es) == 0,
                  "%s %s %lld x %lld x %lld (ta=%d tb=%d, variant %d): %s path differs",
                  ad_dtype_name(d), ad__gemm_kernel_name(d), (long long)m, (long long)n,
                  (long long)k, ta, tb, variant, what);
    free(a), free(b), free(bias), free(c0), free(c_thin), free(c_blocked);
}

/* check_two_paths for each of shapes, plain and transposed operands,
 * plain, bias (strides 1 and 3) and accumulated, with every kernel this
 * CPU can run forced in turn, in blocks mc x kc x nc (0: the kernel's);
 * with takes, each shape must take the path.  Returns the kernels run. */
typedef struct two_paths {
    const int64_t (*shapes)[3];
    size_t nshapes;
    void (*use)(bool);
    const char *what;
    bool takes;
} two_paths;

static void two_paths_body(ad_dtype d, const char *name, void *ctx)
{
    (void)name;
    const two_paths *P = ctx;
    for (size_t s = 0; s < P->nshapes; s++) {
        const int64_t *sh = P->shapes[s];
        if (P->takes) ck_assert(ad__gemm_thin_takes(d, sh[0], sh[1], sh[2]));
        for (int t = 0; t < 4; t++)
            for (int variant = 0; variant < 4; variant++)
                check_two_paths(d, sh[0], sh[1], sh[2], t & 1, t & 2, variant, P->use, P->what);
    }
}

static int two_paths_every_kernel(const int64_t (*shapes)[3], size_t nshapes, void (*use)(bool),
                                  const char *what, bool takes, int64_t mc, int64_t kc, int64_t nc)
{
    two_paths P = {shapes, nshapes, use, what, takes};
    return each_kernel(mc, kc, nc, two_paths_body, &P);
}

START_TEST(thin_products_have_the_blocked_bits)
{
    static const int64_t shapes[][3] = {
        {64, 10, 256}, /* x W^T of a 10-way layer: B copied, narrow blocks */
        {10, 256, 64}, /* g^T h: B in place, wide blocks, 2 rows left over */
        {64, 256, 10}, /* g W: a short sum */
        {13, 70, 7},   /* ragged: wide, then narrow, then a partial vector */
        {33, 5, 200},  /* n of one partial vector, 1 row left over */
    };
    ck_assert_int_ge(two_paths_every_kernel(shapes, 5, ad__gemm_testing_thin, "thin", true, 0, 0, 0),
                     4);
    /* not thin: wide in every direction, or a sum longer than a k block */
    ck_assert(!ad__gemm_thin_takes(AD_FLOAT32, 64, 256, 784));
    ck_assert(!ad__gemm_thin_takes(AD_FLOAT32, 64, 10, 4096));
}
END_TEST

/* A row-major A or B read where it lies (the direct kernels) gives the
 * bytes of the packed one: last strips of 8, 4 and 14 rows, B's columns
 * past its whole strips packed, several k blocks, and a last strip of
 * another height (11 rows: A packed, B direct); then the same with tiny
 * blocks (several m and n blocks). */
START_TEST(direct_operands_have_the_packed_bits)
{
    static const int64_t shapes[][3] = {
        {64, 70, 50}, {60, 48, 40}, {56, 33, 300}, {67, 31, 45}, {64, 256, 80},
    };
    ck_assert_int_ge(two_paths_every_kernel(shapes, 5, ad__gemm_testing_direct, "direct", false,
                                            0, 0, 0),
                     4);
    if (gemm_quick()) return;
    ck_assert_int_ge(two_paths_every_kernel(shapes, 5, ad__gemm_testing_direct, "direct", false,
                                            28, 16, 64),
                     4);
}
END_TEST

/* A product turned around (C^T = B^T A^T: x W^T with a small batch)
 * gives the bytes of the product computed as it is: whole and partial
 * row strips of B^T, one and several k blocks, n not a multiple of 8 (the
 * edge of the transpose back), with and without a bias; the accumulated
 * variant and a shape that would move more turned around take the
 * ordinary path and are compared too, and other operand layouts are never
 * turned.  The batch fills whole column strips of every kernel (multiples
 * of 32). */
static void swapped_body(ad_dtype d, const char *name, void *ctx)
{
    (void)ctx;
    static const int64_t shapes[][3] = {{32, 70, 90}, {32, 130, 300}, {64, 98, 200}, {96, 98, 97}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
        for (int variant = 0; variant < 4; variant++) /* A row-major, B transposed */
            check_two_paths(d, m, n, k, false, true, variant, ad__gemm_testing_swap, "swapped");
        /* ta = false, tb = true: A row-major (csa 1), B transposed (rsb 1, csb k) */
        bool turned = ad__gemm_swap_takes(d, m, n, k, 1, 1, k);
        if (s < 3 && strncmp(name, "generic", 7) != 0) /* those have no direct kernels */
            ck_assert_msg(turned, "%s %s: %lld x %lld x %lld not swapped", ad_dtype_name(d),
                                 ad__gemm_kernel_name(d), (long long)m, (long long)n, (long long)k);
        ck_assert(!ad__gemm_swap_takes(d, m, n, k, 1, n, 1)); /* B row-major */
        ck_assert(!ad__gemm_swap_takes(d, m, n, k, m, 1, k)); /* A transposed */
    }
    ck_assert(!ad__gemm_swap_takes(d, 512, 512, 512, 1, 1, 512)); /* moves more */
    if (strncmp(name, "generic", 7) != 0) /* the MLP's forward product */
        ck_assert(ad__gemm_swap_takes(d, 64, 256, 784, 1, 1, 784));
}

START_TEST(swapped_products_have_the_plain_bits)
{
    ck_assert_int_ge(each_kernel(0, 0, 0, swapped_body, NULL), 4);
    if (gemm_quick()) return;
    ck_assert_int_ge(each_kernel(28, 16, 64, swapped_body, NULL), 4);
}
END_TEST

START_TEST(dispatch_takes_transposes_directly)
{
    /* Plain and transposed matrices go to the kernel as they are (CBLAS by
     * flag); only operands without a unit stride need a copy, and only for
     * CBLAS. */
    ck_assert(ad__gemm_direct(3, 4, 4, 1));  /* row-major */
    ck_assert(ad__gemm_direct(3, 4, 1, 3));  /* its transpose */
    ck_assert(ad__gemm_direct(3, 4, 8, 1));  /* rows of a wider matrix */
    ck_assert(ad__gemm_direct(1, 4, 0, 1));  /* a row vector */
    ck_assert(ad__gemm_direct(4, 1, 1, 0));  /* a column vector */
    via_dispatch = true;
    builtin_sweep();
    via_dispatch = false;
}
END_TEST

START_TEST(builtin_kernel_scratch_on_a_tape)
{
    /* Packing buffers taken from a tape's arena instead of the heap. */
    ad_rng rng;
    ad_rng_init(&rng, 9);
    ad_tensor *a = ad_rand(T, &rng, AD_FLOAT64, AD_SHAPE(40, 30), -1, 1);
    ad_tensor *b = ad_rand(T, &rng, AD_FLOAT64, AD_SHAPE(30, 20), -1, 1);
    ad_tensor *c = ad_empty(T, AD_FLOAT64, AD_SHAPE(40, 20));
    ck_assert_int_eq(ad__gemm_builtin(T, AD_FLOAT64, 40, 20, 30, ad_data(a), 30, 1, ad_data(b),
                                      20, 1, ad_data(c), 20),
                     0);
    double *va = values(a), *vb = values(b), *vc = values(c), want[800];
    naive(40, 20, 30, va, vb, want);
    for (int i = 0; i < 800; i++) ck_assert_close(vc[i], want[i], 1e-14);
    free(va);
    free(vb);
    free(vc);
}
END_TEST

/* A packed once (ad__gemm_pack_a) times several B: plain and transposed A
 * and B, C written plain or transposed, overwritten or accumulated into,
 * against long double; scratch on a tape (given back after) or the heap. */
static void check_packed(ad_tape *tape, ad_dtype d, int64_t m, int64_t n, int64_t k, bool ta,
                         bool tb, bool tc, bool acc)
{
    size_t es = ad_dtype_size(d);
    int64_t na = m * k, nb = k * n, nc = m * n;
    double *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b);
    double *want = malloc((size_t)nc * sizeof *want), *c0 = malloc((size_t)nc * sizeof *c0);
    char *pa = malloc((size_t)na * es), *pb = malloc((size_t)nb * es), *pc = malloc((size_t)nc * es);
    ad_rng rng;
    ad_rng_init(&rng, (uint64_t)(m * 7 + n * 3 + k));
    for (int64_t i = 0; i < na; i++) a[i] = d == AD_FLOAT32 ? (float)(ad_rng_uniform(&rng) * 2 - 1)
                                                            : ad_rng_uniform(&rng) * 2 - 1;
    for (int64_t i = 0; i < nb; i++) b[i] = d == AD_FLOAT32 ? (float)(ad_rng_uniform(&rng) * 2 - 1)
                                                            : ad_rng_uniform(&rng) * 2 - 1;
    for (int64_t i = 0; i < nc; i++) c0[i] = d == AD_FLOAT32 ? (float)(0.5 * i / nc) : 0.5 * i / nc;
    naive(m, n, k, a, b, want);
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++) {
            int64_t o = ta ? p * m + i : i * k + p;
            if (d == AD_FLOAT32) ((float *)pa)[o] = (float)a[i * k + p];
            else ((double *)pa)[o] = a[i * k + p];
        }
    for (int64_t p = 0; p < k; p++)
        for (int64_t j = 0; j < n; j++) {
            int64_t o = tb ? j * k + p : p * n + j;
            if (d == AD_FLOAT32) ((float *)pb)[o] = (float)b[p * n + j];
            else ((double *)pb)[o] = b[p * n + j];
        }
    int64_t rsc = tc ? 1 : n, csc = tc ? m : 1;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double v = acc ? c0[i * n + j] : 1e30; /* garbage unless accumulated into */
            if (d == AD_FLOAT32) ((float *)pc)[i * rsc + j * csc] = (float)v;
            else ((double *)pc)[i * rsc + j * csc] = v;
        }
    ad_gemm_packed pk;
    ck_assert_int_eq(ad__gemm_pack_a(tape, d, m, k, pa, ta ? 1 : k, ta ? m : 1, n, &pk), 0);
    ck_assert(pk.pa != NULL); /* one thread: always packed */
    /* twice, so that reusing the packing is checked: the first product
     * into C's left columns, the second (all of B) into all of C */
    int64_t half = n / 2;
    ad__gemm_packed(&pk, half, pb, tb ? 1 : n, tb ? k : 1, pc, rsc, csc, acc);
    ad__gemm_packed(&pk, n, pb, tb ? 1 : n, tb ? k : 1, pc, rsc, csc, acc);
    ad__gemm_packed_release(&pk);
    double tol = d == AD_FLOAT32 ? 6e-6 * (double)(k + 1) : 2e-15 * (double)(k + 1);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double got = d == AD_FLOAT32 ? ((float *)pc)[i * rsc + j * csc]
                                         : ((double *)pc)[i * rsc + j * csc];
            /* accumulated: C0 + AB for the left half (added twice), C0 + AB else */
            double w = want[i * n + j] * (acc && j < half ? 2 : 1) + (acc ? c0[i * n + j] : 0);
            ck_assert_msg(fabs(got - w) <= tol,
                          "%s m=%lld n=%lld k=%lld ta=%d tb=%d tc=%d acc=%d: C(%lld,%lld) = %.17g, "
                          "want %.17g", ad_dtype_name(d), (long long)m, (long long)n, (long long)k,
                          ta, tb, tc, acc, (long long)i, (long long)j, got, w);
        }
    free(a), free(b), free(want), free(c0), free(pa), free(pb), free(pc);
}

static void packed_sweep(ad_tape *tape)
{
    static const int64_t shapes[][3] = {
        /* ragged; k past one default block; k past 1024 (blocked again);
         * one exact tile; tiny */
        {67, 31, 45}, {30, 20, 300}, {20, 33, 1100}, {14, 32, 7}, {3, 5, 2},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int dt = 0; dt < 2; dt++)
            for (int f = 0; f < 16; f++)
                check_packed(tape, dt ? AD_FLOAT32 : AD_FLOAT64, shapes[s][0], shapes[s][1],
                             shapes[s][2], f & 1, f & 2, f & 4, f & 8);
}

START_TEST(packed_a_reused)
{
    int was = ad_set_num_threads(1); /* a product shared among threads is not packed */
    ad_tape_stats before, after;
    ck_assert_int_eq(ad_tape_get_stats(T, &before), 0);
    packed_sweep(T);
    ck_assert_int_eq(ad_tape_get_stats(T, &after), 0);
    ck_assert(after.arena_used == before.arena_used); /* the scratch was given back */
    ck_assert(after.arena_peak > before.arena_used);  /* ... and was taken from it */
    packed_sweep(NULL);
    ad__gemm_testing(false, 7, 5, 9); /* several blocks each way, partial tiles */
    packed_sweep(T);
    ad__gemm_testing(true, 0, 0, 0); /* the portable kernel */
    packed_sweep(T);
    ad__gemm_testing(false, 0, 0, 0);
    ad_set_num_threads(was);
}
END_TEST

/* ---- ownership, replay ---------------------------------------------------------------- */
START_TEST(persistent_results)
{
    ad_tape_activate(NULL);
    ad_tensor *a = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *c = ad_matmul(a, a);
    ck_assert_ptr_null(ad_tensor_tape(c));
    assert_values(c, (double[]){7, 10, 15, 22}, 4, 0);
    /* A view that CBLAS cannot read forces a temporary copy, freed here. */
    ad_tensor *ones = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(1, 2), (double[]){1, 1});
    ad_tensor *e = ad_expand(ones, 2, (int64_t[]){2, 2});
    ad_tensor *c2 = ad_matmul(e, a);
    assert_values(c2, (double[]){4, 6, 4, 6}, 4, 0);
    ad_tensor *v = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), (double[]){1, -1});
    ad_tensor *d = ad_dot(v, v);
    ck_assert_close(ad_item(d), 2, 0);
    ad_tensor_free(c);
    ad_tensor_free(c2);
    ad_tensor_free(d);
    ad_tensor_free(v);
    ad_tensor_free(e);
    ad_tensor_free(ones);
    ad_tensor_free(a);
    ad_tape_activate(T);
}
END_TEST

START_TEST(replay_recomputes)
{
    ck_assert_int_eq(ad_tape_set_replayable(T, true), 0);
    ad_tensor *A = leaf(AD_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *x = leaf(AD_SHAPE(2), (double[]){1, 1});
    ad_tensor *y = ad_matmul(A, x);
    ad_tensor *z = ad_dot(y, x);
    ck_assert_msg(z != NULL, "%s", ad_error());
    ck_assert_close(ad_item(z), 10, 0);
    ck_assert_int_eq(ad_tape_freeze(T), 0);
    ad_tensor *nx = ot_f64(NULL, AD_SHAPE(2), (double[]){2, -1});
    ck_assert_int_ge(ad_tape_replay(T, 1, &x, &nx), 0);
    assert_values(y, (double[]){0, 2}, 2, 0);
    ck_assert_close(ad_item(z), -2, 0);
    /* z = x^T A x: dz/dx = (A + A^T) x = [[2,5],[5,8]] [2,-1] = [-1, 2] */
    ck_assert_int_eq(ad_backward(z, NULL, AD_RETAIN_GRAPH), 0);
    assert_values(ad_tensor_grad(x), (double[]){-1, 2}, 2, 0);
    ad_tensor_free(nx);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------- */
START_TEST(errors)
{
    ad_tensor *a34 = ad_zeros(T, AD_FLOAT64, AD_SHAPE(3, 4));
    ad_tensor *b56 = ad_zeros(T, AD_FLOAT64, AD_SHAPE(5, 6));
    ck_assert_error(ad_matmul(a34, b56), "ad_matmul: inner dimensions differ: [3,4] x [5,6]");
    ck_assert_error(ad_matmul(ad_zeros(T, AD_FLOAT64, AD_SHAPE(3)), b56),
                    "ad_matmul: inner dimensions differ: [3] x [5,6]");
    ck_assert_error(ad_matmul(a34, ad_zeros(T, AD_FLOAT64, AD_SHAPE(5))),
                    "ad_matmul: inner dimensions differ: [3,4] x [5]");
    ck_assert_error(ad_matmul(ad_zeros(T, AD_FLOAT64, AD_SHAPE(3)),
                              ad_zeros(T, AD_FLOAT64, AD_SHAPE(4))),
                    "ad_matmul: inner dimensions differ: [3] x [4]");
    ck_assert_error(ad_matmul(ad_zeros(T, AD_FLOAT64, AD_SHAPE(2, 3, 4)),
                              ad_zeros(T, AD_FLOAT64, AD_SHAPE(5, 4, 6))),
                    "ad_matmul: batch dimensions cannot be broadcast: [2,3,4] x [5,4,6]");
    ad_tensor *s = ad_scalar_tensor(T, AD_FLOAT64, 2);
    ck_assert_error(ad_matmul(s, a34), "ad_matmul: 0-dimensional operand");
    ck_assert_error(ad_matmul(a34, s), "[3,4] x []");
    ck_assert_error(ad_matmul(a34, ad_zeros(T, AD_FLOAT32, AD_SHAPE(4, 2))),
                    "ad_matmul: dtypes differ: float64 vs float32");
    ck_assert_error(ad_matmul(ad_zeros(T, AD_INT64, AD_SHAPE(2, 2)), a34),
                    "ad_matmul: argument 'a' must be float32 or float64, got int64");
    ck_assert_error(ad_matmul(a34, ad_zeros(T, AD_INT64, AD_SHAPE(4, 2))),
                    "ad_matmul: argument 'b' must be float32 or float64");
    ck_assert_error(ad_matmul(NULL, a34), "ad_matmul: argument 'a' is NULL");
    ck_assert_error(ad_matmul(a34, NULL), "ad_matmul: argument 'b' is NULL");
    ad_tensor *v3 = ad_zeros(T, AD_FLOAT64, AD_SHAPE(3));
    ck_assert_error(ad_dot(v3, ad_zeros(T, AD_FLOAT64, AD_SHAPE(4))),
                    "ad_dot: lengths differ: [3] x [4]");
    ck_assert_error(ad_dot(v3, a34), "ad_dot: expected two 1-D tensors, got [3] x [3,4]");
    ck_assert_error(ad_dot(s, v3), "ad_dot: expected two 1-D tensors, got [] x [3]");
    ck_assert_error(ad_dot(v3, ad_zeros(T, AD_FLOAT32, AD_SHAPE(3))),
                    "ad_dot: dtypes differ: float64 vs float32");
    ck_assert_error(ad_dot(ad_zeros(T, AD_INT64, AD_SHAPE(3)), v3),
                    "ad_dot: argument 'a' must be float32 or float64");
    ck_assert_error(ad_dot(v3, NULL), "ad_dot: argument 'b' is NULL");
    /* A failed inner call's message survives. */
    ck_assert_error(ad_matmul(ad_matmul(a34, b56), b56), "inner dimensions differ: [3,4] x [5,6]");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("linalg");
    TCase *tc = tcase_create("linalg");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, small_products);
    tcase_add_test(tc, vector_cases);
    tcase_add_test(tc, batched_broadcast);
    tcase_add_test(tc, views_as_operands);
    tcase_add_test(tc, empty_operands);
    tcase_add_test(tc, random_against_long_double);
    tcase_add_test(tc, float32_matches_float64);
    tcase_add_test(tc, matrix_gradients);
    tcase_add_test(tc, vector_gradients);
    tcase_add_test(tc, broadcast_batch_gradients_are_summed);
    tcase_add_test(tc, second_derivative);
    tcase_add_test(tc, builtin_kernel_default_blocking);
    tcase_add_test(tc, builtin_kernel_tiny_blocks);
    tcase_add_test(tc, builtin_kernel_every_kernel);
    tcase_add_test(tc, thin_products_have_the_blocked_bits);
    tcase_add_test(tc, direct_operands_have_the_packed_bits);
    tcase_add_test(tc, swapped_products_have_the_plain_bits);
    tcase_add_test(tc, builtin_kernel_scratch_on_a_tape);
    tcase_add_test(tc, dispatch_takes_transposes_directly);
    tcase_add_test(tc, packed_a_reused);
    tcase_add_test(tc, persistent_results);
    tcase_add_test(tc, replay_recomputes);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

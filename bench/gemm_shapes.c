/* bench/gemm_shapes.c - the built-in kernel against CBLAS on the matrix
 * products of a fmnist_cnn and a fmnist_mlp training step (batch 64,
 * float32), timed as
 * AD_GEMM=auto's calibration times them (autodiff/gemm_choice.c: CPU time
 * of the calling thread, minimum of CALIBRATION_REPS after a warm-up,
 * both kernels interleaved), ROUNDS times each; one line per shape and
 * round: microseconds per product of each kernel, and the kernel
 * AD_GEMM=auto would pick.  The convolutions are not here: the direct
 * convolution (ops_conv.c) calls no GEMM; the products are the two linear
 * layers', as nn_linear's op passes them (forward x W^T with W^T read in
 * place, dW = g^T x, dx = g W).
 *
 *   gemm_shapes [ROUNDS]
 *
 * It calls internal functions (hidden in the shared library), so it links
 * the static library of a build with -Dblas=enabled by its path:
 *
 *   cc -O2 -std=c11 -I. -Iautodiff bench/gemm_shapes.c BUILD/autodiff/libautodiff.a \
 *      -o gemm_shapes $(PKG_CONFIG_PATH=BUILD/meson-uninstalled pkg-config --static --libs autodiff)
 *   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 ./gemm_shapes 5 */
#include <stdio.h>
#include <stdlib.h>

#include "autodiff/gemm.h"

static float *filled(int64_t n)
{
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; p && i < n; i++) p[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    return p;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    static const struct {
        const char *what;
        int64_t m, n, k;
        bool ta, tb; /* A / B passed transposed */
    } S[] = {
        {"fc1 forward x W^T (64 x 128 x 4608)", 64, 128, 4608, false, true},
        {"fc1 dW = g^T x (128 x 4608 x 64)", 128, 4608, 64, true, false},
        {"fc1 dx = g W (64 x 4608 x 128)", 64, 4608, 128, false, false},
        {"fc2 forward h W^T (64 x 10 x 128)", 64, 10, 128, false, true},
        {"fc2 dW = g^T h (10 x 128 x 64)", 10, 128, 64, true, false},
        {"fc2 dh = g W (64 x 128 x 10)", 64, 128, 10, false, false},
        {"mlp fc1 forward x W^T (64 x 256 x 784)", 64, 256, 784, false, true},
        {"mlp fc1 dW = g^T x (256 x 784 x 64)", 256, 784, 64, true, false},
        {"mlp fc2 forward h W^T (64 x 10 x 256)", 64, 10, 256, false, true},
        {"mlp fc2 dW = g^T h (10 x 256 x 64)", 10, 256, 64, true, false},
        {"mlp fc2 dh = g W (64 x 256 x 10)", 64, 256, 10, false, false},
    };
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0; i < sizeof S / sizeof S[0]; i++) {
            int64_t m = S[i].m, n = S[i].n, k = S[i].k;
            float *a = filled(m * k), *b = filled(k * n), *c = filled(m * n);
            if (!a || !b || !c) return fprintf(stderr, "gemm_shapes: out of memory\n"), 1;
            /* A [m, k] stored as rows of k, or transposed (k rows of m); B alike */
            int64_t rsa = S[i].ta ? 1 : k, csa = S[i].ta ? m : 1;
            int64_t rsb = S[i].tb ? 1 : n, csb = S[i].tb ? k : 1;
            ad__gemm_testing_choice(AD_GEMM_CALIBRATE); /* forget, measure anew */
            if (ad__gemm_ep(NULL, AD_FLOAT32, m, n, k, a, rsa, csa, b, rsb, csb, c, n, NULL))
                return fprintf(stderr, "gemm_shapes: product failed\n"), 1;
            gemm_shape sh = {AD_FLOAT32, m, n, k, S[i].ta, S[i].tb};
            double t_in = 0, t_bl = 0;
            int pick = ad__gemm_choice(&sh, &t_in, &t_bl);
            printf("%d\t%-38s\tbuilt-in %8.1f us\tblas %8.1f us\t%s\n", r, S[i].what, 1e6 * t_in,
                   1e6 * t_bl,
                   pick == AD_GEMM_BLAS      ? "blas"
                   : pick == AD_GEMM_BUILTIN ? "built-in"
                                             : "none (no CBLAS in this build)");
            free(a), free(b), free(c);
        }
    return 0;
}

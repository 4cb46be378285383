/* bench/conv.c - GFLOP/s of the convolution's three ops on the
 * layers of docs/examples/fmnist_cnn.c, batch 64, float32, one thread.
 *
 *   conv MIN_TIME [OP [LAYER]]
 *
 * For each layer it times ad_conv2d (the forward, with its bias),
 * ad_conv_transpose2d (conv2d's input gradient) and ad_conv2d_weight
 * (its weight gradient) on persistent operands, and the forward with a
 * relu: ad_conv2d_relu (conv2d_relu, relu in the epilogue) and
 * ad_relu(ad_conv2d) (conv2d+relu, relu a pass of its own), each call on the reset
 * active tape, and prints one JSON line per op: seconds per call and GFLOP/s of
 * the convolution's own arithmetic, 2 N O C kh kw Ho Wo (what the op must
 * do, not what the kernel computes: padding and wrapped columns it
 * multiplies by zero are its own cost; Winograd's sums, which the second
 * layer takes, do fewer multiply-adds than that, so its figure can pass
 * the products' peak: AD_CONV=direct in the environment times the direct
 * kernel).  The first layer's input gradient
 * is not timed: training never asks for it.  OP (conv2d,
 * conv_transpose2d, conv2d_weight, conv2d_relu or conv2d+relu) times that op only, LAYER (conv1,
 * conv2) that layer only.  Compare builds by running
 * them alternately (A B A B), as bench/threads_ab does for the trainer:
 *
 *   cc -O3 -std=c11 -I. bench/conv.c -o conv \
 *      $(PKG_CONFIG_PATH=BUILD/meson-uninstalled pkg-config --static --libs autodiff) -lm
 */
#include "common.h"

#include <stdint.h>

#include <autodiff/autodiff.h>

typedef struct layer {
    const char *name;
    int64_t N, C, H, W, O, k;
    int input_grad; /* time conv_transpose2d */
} layer;

typedef struct run {
    const layer *L;
    int which; /* 0 forward, 1 input gradient, 2 weight gradient, 3 forward with relu
                  fused, 4 forward then relu */
    ad_tape *tape;
    ad_tensor *x, *w, *b, *gy;
} run;

static void step(void *p)
{
    run *r = p;
    ad_tape_reset(r->tape);
    ad_tensor *y = NULL;
    if (r->which == 0) y = ad_conv2d(r->x, r->w, r->b, NULL);
    else if (r->which == 3) y = ad_conv2d_relu(r->x, r->w, r->b, NULL);
    else if (r->which == 4) y = ad_relu(ad_conv2d(r->x, r->w, r->b, NULL));
    else if (r->which == 1) y = ad_conv_transpose2d(r->gy, r->w, NULL, NULL);
    else {
        const int64_t ws[4] = {r->L->O, r->L->C, r->L->k, r->L->k};
        y = ad_conv2d_weight(r->x, ws, r->gy, NULL);
    }
    if (!y) {
        fprintf(stderr, "bench/conv: %s\n", ad_error());
        exit(1);
    }
}

static ad_tensor *filled(int64_t n0, int64_t n1, int64_t n2, int64_t n3, int nd,
                         unsigned long long *seed)
{
    const int64_t shape[4] = {n0, n1, n2, n3};
    ad_tensor *t = ad_zeros(NULL, AD_FLOAT32, nd, shape);
    if (!t) {
        fprintf(stderr, "bench/conv: %s\n", ad_error());
        exit(1);
    }
    float *d = ad_data(t);
    for (int64_t i = 0; i < ad_numel(t); i++) d[i] = (float)bench_rand(seed);
    return t;
}

int main(int argc, char **argv)
{
    double min_time = argc > 1 ? atof(argv[1]) : 0.5;
    /* One thread whatever OMP_NUM_THREADS says: the clock is the
     * process's CPU time, which would also count a second thread of the
     * kernels' team waiting in OpenMP. */
    ad_set_num_threads(1);
    static const layer layers[] = {
        {"conv1 1->32 28x28", 64, 1, 28, 28, 32, 3, 0},
        {"conv2 32->32 26x26", 64, 32, 26, 26, 32, 3, 1},
    };
    static const char *ops[] = {"conv2d", "conv_transpose2d", "conv2d_weight", "conv2d_relu",
                                "conv2d+relu"};
    unsigned long long seed = 1;
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        const layer *L = &layers[l];
        if (argc > 3 && strncmp(L->name, argv[3], strlen(argv[3])))
            continue;
        int64_t Ho = L->H - L->k + 1, Wo = L->W - L->k + 1;
        run r = {.L = L, .tape = ad_tape_new()};
        /* results go on the active tape, which each call resets (keeping
         * its arena): repeated calls allocate nothing */
        ad_tape_activate(r.tape);
        r.x = filled(L->N, L->C, L->H, L->W, 4, &seed);
        r.w = filled(L->O, L->C, L->k, L->k, 4, &seed);
        r.b = filled(L->O, 1, 1, 1, 1, &seed);
        r.gy = filled(L->N, L->O, Ho, Wo, 4, &seed);
        double flops = 2.0 * (double)(L->N * L->O * L->C * L->k * L->k * Ho * Wo);
        for (int which = 0; which < 5; which++) {
            if ((which == 1 && !L->input_grad) || (argc > 2 && strcmp(argv[2], ops[which])))
                continue;
            r.which = which;
            double s = bench_time(step, &r, min_time);
            bench_json("bench s layer s op s seconds d gflops d", "conv", L->name, ops[which], s,
                       flops / s * 1e-9);
        }
        ad_tape_activate(NULL);
        ad_tape_free(r.tape);
        ad_tensor_free(r.x), ad_tensor_free(r.w), ad_tensor_free(r.b), ad_tensor_free(r.gy);
    }
    return 0;
}

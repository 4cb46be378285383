/* bench/linear.c - does ad_linear pay?
 *
 * One training step of the MLP's first layer, x [64, 784] -> 256 with
 * bias and relu, forward and backward into persistent w and b (x needs no
 * gradient, as an input batch), on a tape reset every step, two ways:
 *
 *   unfused   ad_relu(ad_add(ad_matmul(x, w^T), b))   (nn_linear before ad_linear)
 *   linear    ad_relu(ad_linear(x, w, b))              (bias in the GEMM epilogue, dW
 *                                                      added into w's gradient by the
 *                                                      product)
 *
 * (A third, the relu fused into ad_linear's epilogue with its mask and the
 * bias gradient in one backward pass, measured the same as "linear" within
 * 1%, and was dropped; docs/benchmarks.md.)  Rounds of the two
 * alternate, so drifts of a shared machine fall on all; each figure is the
 * median over the rounds of microseconds per step.  Prints one JSON line
 * per variant (bench/common.h).
 *
 *     cc -O2 -I. bench/linear.c -o linear $(pkg-config --libs autodiff)
 *     ./linear [rounds [variant]]        (default 15 rounds of both) */
#include "common.h"

#include <autodiff/autodiff.h>

enum { N = 64, IN = 784, OUT = 256, VARIANTS = 2 };
static const char *const NAMES[VARIANTS] = {"unfused", "linear"};

typedef struct ctx {
    ad_tape *tape;
    ad_tensor *x, *w, *b, *c;
    int variant;
} ctx;

static void step(void *vc)
{
    ctx *s = vc;
    ad_tensor *y;
    if (s->variant == 0)
        y = ad_relu(ad_add(ad_matmul(s->x, ad_transpose(s->w, 0, 1)), s->b));
    else
        y = ad_relu(ad_linear(s->x, s->w, s->b));
    /* loss = sum(y c): its gradient g = c reaches the layer as it would
     * from the next one */
    ad_tensor *loss = ad_sum(ad_mul(y, s->c), NULL, 0, false);
    if (!loss || ad_zero_grad(s->w) || ad_zero_grad(s->b) || ad_backward(loss, NULL, 0) ||
        ad_tape_reset(s->tape)) {
        fprintf(stderr, "bench/linear: %s\n", ad_error());
        exit(1);
    }
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1) rounds = 1;
    ad_rng rng;
    ad_rng_init(&rng, 1);
    ctx s = {.tape = ad_tape_new()};
    s.x = ad_rand(NULL, &rng, AD_FLOAT32, 2, (int64_t[]){N, IN}, 0.0, 1.0);
    s.w = ad_rand(NULL, &rng, AD_FLOAT32, 2, (int64_t[]){OUT, IN}, -0.036, 0.036);
    s.b = ad_rand(NULL, &rng, AD_FLOAT32, 1, (int64_t[]){OUT}, -0.036, 0.036);
    s.c = ad_rand(NULL, &rng, AD_FLOAT32, 2, (int64_t[]){N, OUT}, -1.0, 1.0);
    if (!s.tape || !s.x || !s.w || !s.b || !s.c || ad_set_requires_grad(s.w, true) ||
        ad_set_requires_grad(s.b, true)) {
        fprintf(stderr, "bench/linear: %s\n", ad_error());
        return 1;
    }
    ad_tape_activate(s.tape);
    double *t = malloc(sizeof(double) * (size_t)(rounds * VARIANTS));
    const char *only = argc > 2 ? argv[2] : NULL;
    for (int r = 0; r < rounds; r++)
        for (int v = 0; v < VARIANTS; v++) {
            if (only && strcmp(only, NAMES[v]) != 0) continue;
            s.variant = v;
            t[v * rounds + r] = bench_time(step, &s, 0.05) * 1e6;
        }
    for (int v = 0; v < VARIANTS; v++) {
        if (only && strcmp(only, NAMES[v]) != 0) continue;
        qsort(t + v * rounds, (size_t)rounds, sizeof(double), cmp);
        bench_json("bench s variant s us_per_step d min d max d", "linear", NAMES[v],
                   t[v * rounds + rounds / 2], t[v * rounds], t[v * rounds + rounds - 1]);
    }
    free(t);
    ad_tensor_free(s.x);
    ad_tensor_free(s.w);
    ad_tensor_free(s.b);
    ad_tensor_free(s.c);
    ad_tape_free(s.tape);
    return 0;
}

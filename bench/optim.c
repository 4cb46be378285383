/* bench/optim.c - what the optimiser's step costs against its floor.
 *
 * The MLP's parameters (784-256-10: W1 [256, 784], b1, W2 [10, 256], b2;
 * 203,530 float32) with gradients, SGD with momentum 0.9 (the examples'
 * optimiser), three ways per round, in turn:
 *
 *   sgd      nn_optim_step: w, g and the momentum buffer read, w and the
 *            buffer written, in double and rounded back (optim_kernels.inc)
 *   stream   a float loop over three arrays of the same size that reads
 *            all three and writes two: the memory traffic alone
 *   convert  the same loop converting each value to double and back, as
 *            the update does, with one add: the conversions alone
 *
 * Before each timed call 8 MiB are touched so that, as in training (where
 * the products run between two updates), the step starts with its data
 * out of L1 and L2.  Prints one JSON line per variant (bench/common.h)
 * with the median us per call over the rounds.
 *
 *     cc -O2 -I. bench/optim.c -o optim $(pkg-config --libs autodiff_nn autodiff)
 *     ./optim [rounds]                     (default 201) */
#include "common.h"

#include <autodiff/autodiff.h>
#include <nn/nn.h>

enum { NP = 4, VARIANTS = 3 };
static const char *const NAMES[VARIANTS] = {"sgd", "stream", "convert"};
static const int64_t SHAPES[NP][2] = {{256, 784}, {256, 1}, {10, 256}, {10, 1}};

/* The two floors, compiled like the library's update loops: vectorised
 * (gcc's -O2 would not), for the baseline and for AVX-512, which runs
 * where the CPU has it (the update's copy is chosen the same way). */
#if defined(__GNUC__) && !defined(__clang__)
#define VEC __attribute__((optimize("tree-vectorize")))
#else
#define VEC
#endif
#define FLOORS(sfx, attr)                                                                     \
    static VEC attr void stream_##sfx(int64_t n, float *restrict w, const float *restrict g,  \
                                      float *restrict b)                                     \
    {                                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                     \
            float v = b[i] + g[i];                                                            \
            b[i] = v;                                                                         \
            w[i] = w[i] - v;                                                                  \
        }                                                                                     \
    }                                                                                         \
    static VEC attr void convert_##sfx(int64_t n, float *restrict w, const float *restrict g, \
                                       float *restrict b)                                    \
    {                                                                                         \
        for (int64_t i = 0; i < n; i++) {                                                     \
            double v = (double)b[i] + (double)g[i];                                           \
            b[i] = (float)v;                                                                  \
            w[i] = (float)((double)w[i] - v);                                                 \
        }                                                                                     \
    }
FLOORS(any, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
FLOORS(avx512, __attribute__((target("avx512f"))))
static int wide(void) { return __builtin_cpu_supports("avx512f"); }
#else
#define stream_avx512 stream_any
#define convert_avx512 convert_any
static int wide(void) { return 0; }
#endif

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fail(void)
{
    fprintf(stderr, "bench/optim: %s\n", ad_error());
    exit(1);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 201;
    if (rounds < 1) rounds = 1;
    ad_rng rng;
    ad_rng_init(&rng, 1);
    ad_tensor *p[NP], *g[NP];
    const char *names[NP] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    int64_t n = 0;
    for (int k = 0; k < NP; k++) {
        int nd = SHAPES[k][1] == 1 ? 1 : 2;
        p[k] = ad_rand(NULL, &rng, AD_FLOAT32, nd, SHAPES[k], -0.05, 0.05);
        g[k] = ad_rand(NULL, &rng, AD_FLOAT32, nd, SHAPES[k], -1e-3, 1e-3);
        if (!p[k] || !g[k] || ad_set_requires_grad(p[k], true) || ad_set_grad(p[k], g[k]))
            fail();
        n += ad_numel(p[k]);
    }
    nn_named_tensors *l = nn_named_tensors_new(NP, names, p);
    nn_optim *o = l ? nn_sgd(l, &(nn_sgd_options){.lr = 1e-6, .momentum = 0.9}) : NULL;
    nn_named_tensors_free(l);
    float *w = malloc((size_t)n * sizeof *w), *gr = malloc((size_t)n * sizeof *gr),
          *b = malloc((size_t)n * sizeof *b);
    size_t churn_bytes = (size_t)8 << 20;
    volatile unsigned char *churn = malloc(churn_bytes);
    double *t[VARIANTS];
    for (int v = 0; v < VARIANTS; v++) t[v] = malloc((size_t)rounds * sizeof *t[v]);
    if (!o || !w || !gr || !b || !churn || !t[0] || !t[1] || !t[2]) fail();
    for (int64_t i = 0; i < n; i++) w[i] = gr[i] = b[i] = (float)(i % 97) * 1e-3f;
    memset((void *)churn, 1, churn_bytes);
    int avx512 = wide();
    for (int r = -1; r < rounds; r++) /* round -1 warms up, untimed */
        for (int v = 0; v < VARIANTS; v++) {
            for (size_t i = 0; i < churn_bytes; i += 64) churn[i]++;
            double t0 = bench_now();
            if (v == 0 && nn_optim_step(o)) fail();
            if (v == 1) (avx512 ? stream_avx512 : stream_any)(n, w, gr, b);
            if (v == 2) (avx512 ? convert_avx512 : convert_any)(n, w, gr, b);
            if (r >= 0) t[v][r] = (bench_now() - t0) * 1e6;
        }
    for (int v = 0; v < VARIANTS; v++) {
        qsort(t[v], (size_t)rounds, sizeof *t[v], cmp);
        bench_json("bench s variant s params i us_per_call d min d max d", "optim", NAMES[v],
                   (long)n, t[v][rounds / 2], t[v][0], t[v][rounds - 1]);
        free(t[v]);
    }
    nn_optim_free(o);
    for (int k = 0; k < NP; k++) {
        ad_tensor_free(p[k]);
        ad_tensor_free(g[k]);
    }
    free(w);
    free(gr);
    free(b);
    free((void *)churn);
    return 0;
}

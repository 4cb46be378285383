/* bench/elementwise.c - elementwise ops and a reduction against the memory
 * bandwidth of the same process.
 *
 *   elementwise MIN_TIME LOG2_N
 *
 * On contiguous float32 tensors of 2^LOG2_N elements (2^24: 64 MiB each,
 * far beyond any cache) times ad_add, ad_mul, ad_exp, ad_relu and ad_sum
 * with grad mode off, and memcpy of one tensor into another as the
 * reference.  Each line reports GB/s counting the bytes an op must move at
 * least (add and mul read two tensors and write one: 12 bytes per element;
 * exp and relu 8; sum 4; memcpy 8), so an op that streams as fast as
 * memcpy shows the same GB/s, and bench/run reports the fraction of copy
 * bandwidth.  (How glibc's memcpy moves large blocks depends on the CPU:
 * non-temporal stores, which skip reading the destination first, or `rep
 * movsb`; an op's plain stores may stream faster or slower than that, so
 * the fraction can exceed 1.) */
#include "common.h"

#include <math.h>
#include <stdint.h>

#include <autodiff/autodiff.h>

typedef struct run {
    const char *op;
    ad_tape *tape;
    ad_tensor *a, *b, *out;
    float *src, *dst;
    size_t n;
} run;

static void step(void *p)
{
    run *r = p;
    if (strcmp(r->op, "copy") == 0) {
        memcpy(r->dst, r->src, r->n * sizeof(float));
        return;
    }
    /* Results go on the active tape; resetting it each call gives the same
     * arena memory back, so the output pages are already mapped, as in a
     * training loop after its first step. */
    ad_tape_reset(r->tape);
    if (strcmp(r->op, "add") == 0) r->out = ad_add(r->a, r->b);
    else if (strcmp(r->op, "mul") == 0) r->out = ad_mul(r->a, r->b);
    else if (strcmp(r->op, "exp") == 0) r->out = ad_exp(r->a);
    else if (strcmp(r->op, "relu") == 0) r->out = ad_relu(r->a);
    else r->out = ad_sum(r->a, NULL, 0, false);
    if (!r->out) {
        fprintf(stderr, "elementwise %s: %s\n", r->op, ad_error());
        exit(1);
    }
}

/* One element of the result against its formula. */
static int check(const run *r, size_t i)
{
    const float *a = ad_data(r->a), *b = ad_data(r->b);
    double got, want;
    if (strcmp(r->op, "sum") == 0) {
        double s = 0;
        for (size_t j = 0; j < r->n; j++) s += a[j];
        got = ad_item(r->out), want = s;
        if (fabs(got - want) <= 1e-3 * sqrt((double)r->n)) return 0;
    } else {
        got = ((const float *)ad_data(r->out))[i];
        if (strcmp(r->op, "add") == 0) want = (double)a[i] + b[i];
        else if (strcmp(r->op, "mul") == 0) want = (double)a[i] * b[i];
        else if (strcmp(r->op, "exp") == 0) want = exp(a[i]);
        else want = a[i] > 0 ? a[i] : 0;
        if (fabs(got - want) <= 1e-6 * (1 + fabs(want))) return 0;
    }
    fprintf(stderr, "elementwise %s: element %zu = %.9g, expected %.9g\n", r->op, i, got, want);
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MIN_TIME LOG2_N\n", argv[0]);
        return 2;
    }
    double min_time = atof(argv[1]);
    run r = {.n = (size_t)1 << atoi(argv[2])};
    int64_t n = (int64_t)r.n;
    ad_set_grad_enabled(false);
    r.tape = ad_tape_new();
    r.a = ad_empty(NULL, AD_FLOAT32, AD_SHAPE(n));
    r.b = ad_empty(NULL, AD_FLOAT32, AD_SHAPE(n));
    r.src = malloc(r.n * sizeof(float));
    r.dst = malloc(r.n * sizeof(float));
    if (!r.tape || !r.a || !r.b || !r.src || !r.dst) return 1;
    unsigned long long seed = 7;
    float *a = ad_data(r.a), *b = ad_data(r.b);
    for (size_t i = 0; i < r.n; i++) {
        a[i] = (float)bench_rand(&seed);
        b[i] = (float)bench_rand(&seed);
        r.src[i] = a[i];
        r.dst[i] = 0; /* map the pages before timing */
    }
    ad_tape_activate(r.tape);
    static const struct {
        const char *op;
        int bytes; /* per element, read + written */
    } ops[] = {{"copy", 8}, {"add", 12}, {"mul", 12}, {"exp", 8}, {"relu", 8}, {"sum", 4}};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        r.op = ops[k].op;
        double sec = bench_time(step, &r, min_time);
        if (strcmp(r.op, "copy") != 0 && (check(&r, 0) || check(&r, r.n / 2 + 1) || check(&r, r.n - 1)))
            return 1;
        double bytes = (double)ops[k].bytes * (double)r.n;
        bench_json("bench s op s n i seconds d bytes d gbps d", "elementwise", r.op, (long)r.n,
                   sec, bytes, bytes / sec * 1e-9);
    }
    ad_tape_activate(NULL);
    ad_tape_free(r.tape);
    ad_tensor_free(r.a);
    ad_tensor_free(r.b);
    free(r.src);
    free(r.dst);
    return 0;
}

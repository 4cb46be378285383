/* bench/elementwise.c - elementwise ops and reductions against the memory
 * bandwidth of the same process.
 *
 *   elementwise MIN_TIME LOG2_N [OP...]
 *
 * On contiguous float32 tensors of 2^LOG2_N elements (2^24: 64 MiB each,
 * far beyond any cache) times each op with grad mode off, and memcpy of
 * one tensor into another as the reference; with OP arguments only those
 * (and copy).  Each line reports GB/s counting the bytes an op must move at
 * least (a binary op reads two tensors and writes one: 12 bytes per
 * element; a unary op and a broadcast one 8; a reduction 4; memcpy 8), so
 * an op that streams as fast as memcpy shows the same GB/s, and bench/run
 * reports the fraction of copy bandwidth: each op's line also gives the
 * GB/s of a memcpy timed in turns with it (copy_gbps), the reference for
 * that op.  (How glibc's memcpy moves large
 * blocks depends on the CPU: non-temporal stores, which skip reading the
 * destination first, or `rep movsb`; an op's plain stores may stream faster
 * or slower than that, so the fraction can exceed 1.)
 *
 * The broadcast and axis ops view the tensors as a square matrix (LOG2_N
 * even): add_row adds a row vector to every row, add_col a column vector
 * to every column, sum_rows sums each row (axis 1), sum_cols each column
 * (axis 0); add_t adds the transpose of a matrix to another, add_t64 the
 * same in float64 (24 bytes per element; the float64 copies of the inputs
 * are made only when it is asked for). */
#include "common.h"

#include <math.h>
#include <stdint.h>

#include <autodiff/autodiff.h>

typedef struct run {
    int op; /* index into OPS */
    ad_tape *tape;
    ad_tensor *a, *b, *pos, *row, *col, *out;
    ad_tensor *a64, *b64; /* add_t64's operands, NULL unless it runs */
    float *src, *dst;
    size_t n;
    int64_t side; /* the square matrix view: side x side */
} run;

enum { UNARY, BINARY, BCAST, REDUCE, COPY };

/* How many turns an op and memcpy take (see main). */
enum { SLICES = 8 };

typedef struct op_def {
    const char *name;
    int kind, bytes; /* bytes per element read + written */
    double (*ref)(double x, double y);
} op_def;

static double r_add(double x, double y) { return x + y; }
static double r_sub(double x, double y) { return x - y; }
static double r_mul(double x, double y) { return x * y; }
static double r_div(double x, double y) { return x / y; }
static double r_max(double x, double y) { return x > y ? x : y; }
static double r_neg(double x, double y) { (void)y; return -x; }
static double r_exp(double x, double y) { (void)y; return exp(x); }
static double r_log(double x, double y) { (void)y; return log(x); }
static double r_sqrt(double x, double y) { (void)y; return sqrt(x); }
static double r_tanh(double x, double y) { (void)y; return tanh(x); }
static double r_sig(double x, double y) { (void)y; return 1 / (1 + exp(-x)); }
static double r_relu(double x, double y) { (void)y; return x > 0 ? x : 0; }
static double r_abs(double x, double y) { (void)y; return fabs(x); }
static double r_square(double x, double y) { (void)y; return x * x; }
static double r_sin(double x, double y) { (void)y; return sin(x); }

static const op_def OPS[] = {
    {"copy", COPY, 8, NULL},
    {"add", BINARY, 12, r_add},
    {"sub", BINARY, 12, r_sub},
    {"mul", BINARY, 12, r_mul},
    {"div", BINARY, 12, r_div},
    {"maximum", BINARY, 12, r_max},
    {"add_row", BCAST, 8, r_add},
    {"add_col", BCAST, 8, r_add},
    {"add_t", BINARY, 12, r_add},
    {"add_t64", BINARY, 24, r_add},
    {"neg", UNARY, 8, r_neg},
    {"exp", UNARY, 8, r_exp},
    {"log", UNARY, 8, r_log},
    {"sqrt", UNARY, 8, r_sqrt},
    {"tanh", UNARY, 8, r_tanh},
    {"sigmoid", UNARY, 8, r_sig},
    {"relu", UNARY, 8, r_relu},
    {"abs", UNARY, 8, r_abs},
    {"square", UNARY, 8, r_square},
    {"sin", UNARY, 8, r_sin},
    {"sum", REDUCE, 4, NULL},
    {"mean", REDUCE, 4, NULL},
    {"max", REDUCE, 4, NULL},
    {"sum_rows", REDUCE, 4, NULL},
    {"sum_cols", REDUCE, 4, NULL},
};
#define NOPS ((int)(sizeof OPS / sizeof OPS[0]))

static ad_tensor *apply(run *r)
{
    const char *op = OPS[r->op].name;
    ad_tensor *a = r->a, *b = r->b;
    int64_t sq[2] = {r->side, r->side};
    if (!strcmp(op, "add")) return ad_add(a, b);
    if (!strcmp(op, "sub")) return ad_sub(a, b);
    if (!strcmp(op, "mul")) return ad_mul(a, b);
    if (!strcmp(op, "div")) return ad_div(a, b);
    if (!strcmp(op, "maximum")) return ad_maximum(a, b);
    if (!strcmp(op, "add_row")) return ad_add(ad_reshape(a, 2, sq), r->row);
    if (!strcmp(op, "add_col")) return ad_add(ad_reshape(a, 2, sq), r->col);
    if (!strcmp(op, "add_t64"))
        return ad_add(ad_reshape(r->a64, 2, sq), ad_transpose(ad_reshape(r->b64, 2, sq), 0, 1));
    if (!strcmp(op, "add_t")) return ad_add(ad_reshape(a, 2, sq), ad_transpose(ad_reshape(b, 2, sq), 0, 1));
    if (!strcmp(op, "neg")) return ad_neg(a);
    if (!strcmp(op, "exp")) return ad_exp(a);
    if (!strcmp(op, "log")) return ad_log(r->pos);
    if (!strcmp(op, "sqrt")) return ad_sqrt(r->pos);
    if (!strcmp(op, "tanh")) return ad_tanh(a);
    if (!strcmp(op, "sigmoid")) return ad_sigmoid(a);
    if (!strcmp(op, "relu")) return ad_relu(a);
    if (!strcmp(op, "abs")) return ad_abs(a);
    if (!strcmp(op, "square")) return ad_square(a);
    if (!strcmp(op, "sin")) return ad_sin(a);
    if (!strcmp(op, "sum")) return ad_sum(a, NULL, 0, false);
    if (!strcmp(op, "mean")) return ad_mean(a, NULL, 0, false);
    if (!strcmp(op, "max")) return ad_max(a, NULL, 0, false);
    int axis = !strcmp(op, "sum_rows") ? 1 : 0;
    return ad_sum(ad_reshape(a, 2, sq), &axis, 1, false);
}

static void step(void *p)
{
    run *r = p;
    if (OPS[r->op].kind == COPY) {
        memcpy(r->dst, r->src, r->n * sizeof(float));
        return;
    }
    /* Results go on the active tape; resetting it each call gives the same
     * arena memory back, so the output pages are already mapped, as in a
     * training loop after its first step. */
    ad_tape_reset(r->tape);
    r->out = apply(r);
    if (!r->out) {
        fprintf(stderr, "elementwise %s: %s\n", OPS[r->op].name, ad_error());
        exit(1);
    }
}

/* Element i of the result (of a reduction: result i, or the only one)
 * against its formula, in double. */
static int check(const run *r, size_t i)
{
    const op_def *d = &OPS[r->op];
    const float *a = ad_data(r->a), *b = ad_data(r->b), *pos = ad_data(r->pos);
    const float *row = ad_data(r->row), *col = ad_data(r->col);
    size_t side = (size_t)r->side;
    double got, want, tol;
    if (d->kind == REDUCE) {
        size_t nres = (size_t)ad_numel(r->out);
        i %= nres;
        size_t first = 0, count = r->n, stride = 1;
        if (!strcmp(d->name, "sum_rows")) first = i * side, count = side;
        if (!strcmp(d->name, "sum_cols")) first = i, count = side, stride = side;
        double s = 0, m = -INFINITY;
        for (size_t j = 0; j < count; j++) {
            double v = a[first + j * stride];
            s += v;
            m = v > m ? v : m;
        }
        want = !strcmp(d->name, "max") ? m : !strcmp(d->name, "mean") ? s / (double)r->n : s;
        got = ((const float *)ad_data(r->out))[i];
        tol = 1e-5 * sqrt((double)count) + 1e-6 * fabs(want);
    } else {
        got = ad_tensor_dtype(r->out) == AD_FLOAT64 ? ((const double *)ad_data(r->out))[i]
                                                : ((const float *)ad_data(r->out))[i];
        double x = a[i];
        if (!strcmp(d->name, "log") || !strcmp(d->name, "sqrt")) x = pos[i];
        double y = !strncmp(d->name, "add_t", 5)    ? b[(i % side) * side + i / side]
                   : d->kind == BINARY              ? b[i]
                   : !strcmp(d->name, "add_row")    ? row[i % side]
                   : !strcmp(d->name, "add_col")    ? col[i / side]
                                                    : 0;
        want = d->ref(x, y);
        tol = 1e-6 * (1 + fabs(want));
    }
    if (fabs(got - want) <= tol) return 0;
    fprintf(stderr, "elementwise %s: element %zu = %.9g, expected %.9g\n", d->name, i, got, want);
    return -1;
}

static ad_tensor *filled(int64_t n, int64_t cols, unsigned long long *seed, double lo, double hi)
{
    ad_tensor *t = ad_empty(NULL, AD_FLOAT32, AD_SHAPE(n, cols));
    if (!t) return NULL;
    n *= cols;
    float *v = ad_data(t);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * 0.5 * (bench_rand(seed) + 1));
    return t;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MIN_TIME LOG2_N [OP...]\n", argv[0]);
        return 2;
    }
    double min_time = atof(argv[1]);
    int log2n = atoi(argv[2]);
    run r = {.n = (size_t)1 << log2n, .side = (int64_t)1 << (log2n / 2)};
    int64_t n = (int64_t)r.n;
    if (r.side * r.side != n) {
        fprintf(stderr, "elementwise: LOG2_N must be even\n");
        return 2;
    }
    ad_set_grad_enabled(false);
    unsigned long long seed = 7;
    r.tape = ad_tape_new();
    r.a = filled(n, 1, &seed, -1, 1);
    r.b = filled(n, 1, &seed, -1, 1);
    r.pos = filled(n, 1, &seed, 0.01, 4);
    r.row = filled(1, r.side, &seed, -1, 1);
    r.col = filled(r.side, 1, &seed, -1, 1);
    /* the reference's buffers come from the library's allocator too, so
     * memcpy runs on the same kind of pages as the ops (alloc.c asks for
     * huge pages for large blocks) */
    r.src = ad_malloc(r.n * sizeof(float));
    r.dst = ad_malloc(r.n * sizeof(float));
    if (!r.tape || !r.a || !r.b || !r.pos || !r.row || !r.col || !r.src || !r.dst) return 1;
    memcpy(r.src, ad_data(r.a), r.n * sizeof(float));
    memset(r.dst, 0, r.n * sizeof(float)); /* map the pages before timing */
    ad_tape_activate(r.tape);
    for (int k = 0; k < NOPS; k++) {
        bool wanted = argc == 3 || OPS[k].kind == COPY;
        for (int j = 3; j < argc; j++) wanted |= strcmp(argv[j], OPS[k].name) == 0;
        if (!wanted) continue;
        r.op = k;
        if (!strcmp(OPS[k].name, "add_t64") && !r.a64) {
            ad_tape_activate(NULL); /* persistent, like the float32 inputs */
            r.a64 = ad_cast(r.a, AD_FLOAT64);
            r.b64 = ad_cast(r.b, AD_FLOAT64);
            ad_tape_activate(r.tape);
            if (!r.a64 || !r.b64) return 1;
        }
        /* The op and memcpy take turns, SLICES times each, so that both
         * sides of the op's fraction of copy are measured over the same
         * seconds: a shared machine's memory bandwidth drifts by a third
         * within one process (memcpy once at the start gave 26 to 38 GB/s
         * in three runs), and a reference taken seconds before the op
         * moved its fraction from 0.66 to 1.1 with it. */
        double sec = 0, copy_sec = 0;
        for (int s = 0; s < SLICES; s++) {
            if (OPS[k].kind != COPY) {
                r.op = 0;
                copy_sec += bench_time(step, &r, min_time / SLICES) / SLICES;
                r.op = k;
            }
            sec += bench_time(step, &r, min_time / SLICES) / SLICES;
        }
        if (OPS[k].kind != COPY && (check(&r, 0) || check(&r, r.n / 2 + 1) || check(&r, r.n - 1)))
            return 1;
        double bytes = (double)OPS[k].bytes * (double)r.n;
        if (OPS[k].kind == COPY) copy_sec = sec;
        bench_json("bench s op s n i seconds d bytes d gbps d copy_gbps d", "elementwise",
                   OPS[k].name, (long)r.n, sec, bytes, bytes / sec * 1e-9,
                   (double)OPS[0].bytes * (double)r.n / copy_sec * 1e-9);
    }
    ad_tape_activate(NULL);
    ad_tape_free(r.tape);
    ad_tensor_free(r.a);
    ad_tensor_free(r.b);
    ad_tensor_free(r.pos);
    ad_tensor_free(r.row);
    ad_tensor_free(r.col);
    ad_tensor_free(r.a64); /* NULL unless add_t64 ran */
    ad_tensor_free(r.b64);
    ad_free(r.src);
    ad_free(r.dst);
    return 0;
}

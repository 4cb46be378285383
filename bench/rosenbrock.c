/* bench/rosenbrock.c - the scalar tape on the extended Rosenbrock function
 *
 *   f(x) = sum_{i < n/2} 100 (x_{2i+1} - x_{2i}^2)^2 + (1 - x_{2i})^2
 *
 *   rosenbrock autodiff|replay|analytic MIN_TIME N...
 *
 * "autodiff" records f with the scalar API (scalar.h) and runs the reverse
 * sweep, timing the two phases apart: record (tape reset, n variables, the
 * 8 ops per pair) and backward (ad_scalar_gradient: the sweep plus copying
 * the n gradients out), and their sum; then the replayed gradient: the
 * recorded tape re-evaluated at a new point and swept again, without
 * recording anything, in one call as ADOL-C's gradient() does
 * (ad_scalar_replay_gradient: ad_scalar_replay then ad_scalar_gradient,
 * the handles checked once).  "replay" records
 * once and times only the replayed gradient, for a profiler (perf record
 * sees nothing of the recording but its one run).  "analytic" is the hand-written
 * gradient, the floor any tool is measured against.  bench/rosenbrock_adolc.cpp
 * is the ADOL-C peer, with the same function, point and operation count.
 *
 * Figures are per operation: the 5n + 1 nodes autodiff records (n
 * variables, the constant 0, 8 ops per pair), the same count for every
 * implementation, so the columns compare. */
#include "common.h"

#include <math.h>
#include <stdint.h>

#include <autodiff/autodiff.h>

/* The start point of tests/test_scalar.c: near the classic (-1.2, 1),
 * varied a little so no two pairs are alike. */
static double start_point(long i) { return i % 2 ? 1.0 + 0.01 * (double)(i % 7) : -1.2 + 0.003 * (double)(i % 11); }

typedef struct run {
    long n;
    ad_tape *tape;
    ad_scalar *xs, f;
    double *x, *grad;
    double *x2; /* the new point of the replay */
} run;

static ad_scalar record(ad_tape *t, long n, ad_scalar *xs, const double *x)
{
    for (long i = 0; i < n; i++) xs[i] = ad_scalar_var(t, x[i]);
    ad_scalar f = ad_scalar_const(t, 0.0);
    for (long i = 0; i < n / 2; i++) {
        ad_scalar d = ad_ssub(xs[2 * i + 1], ad_ssquare(xs[2 * i]));
        ad_scalar e = ad_scsub(1.0, xs[2 * i]);
        f = ad_sadd(f, ad_sadd(ad_smul_c(ad_ssquare(d), 100.0), ad_ssquare(e)));
    }
    return f;
}

static void step_record(void *p)
{
    run *r = p;
    ad_tape_reset(r->tape);
    r->f = record(r->tape, r->n, r->xs, r->x);
}

static void step_backward(void *p)
{
    run *r = p;
    if (ad_scalar_gradient(r->f, (int)r->n, r->xs, r->grad) != 0) {
        fprintf(stderr, "rosenbrock: %s\n", ad_error());
        exit(1);
    }
}

static void step_replay(void *p)
{
    run *r = p;
    if (ad_scalar_replay_gradient(r->f, (int)r->n, r->xs, r->x2, r->grad) < 0) {
        fprintf(stderr, "rosenbrock: %s\n", ad_error());
        exit(1);
    }
}

static double analytic(long n, const double *x, double *g)
{
    double f = 0;
    for (long i = 0; i < n / 2; i++) {
        double x0 = x[2 * i], x1 = x[2 * i + 1], d = x1 - x0 * x0, e = 1 - x0;
        f += 100 * d * d + e * e;
        g[2 * i] = -400 * x0 * d - 2 * e;
        g[2 * i + 1] = 200 * d;
    }
    return f;
}

static volatile double sink;

static void step_analytic(void *p)
{
    run *r = p;
    sink = analytic(r->n, r->x, r->grad);
}

static int check(const run *r, const double *x)
{
    double *want = malloc((size_t)r->n * sizeof *want);
    analytic(r->n, x, want);
    for (long i = 0; i < r->n; i++)
        if (!(fabs(r->grad[i] - want[i]) <= 1e-12 * (1 + fabs(want[i])))) {
            fprintf(stderr, "rosenbrock: gradient[%ld] = %.17g, expected %.17g\n", i, r->grad[i],
                    want[i]);
            free(want);
            return -1;
        }
    free(want);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s autodiff|replay|analytic MIN_TIME N...\n", argv[0]);
        return 2;
    }
    const char *impl = argv[1];
    double min_time = atof(argv[2]);
    bool ad = strcmp(impl, "autodiff") == 0, replay_only = strcmp(impl, "replay") == 0;
    for (int arg = 3; arg < argc; arg++) {
        run r = {.n = atol(argv[arg])};
        r.x = malloc((size_t)r.n * sizeof *r.x);
        r.grad = malloc((size_t)r.n * sizeof *r.grad);
        r.xs = malloc((size_t)r.n * sizeof *r.xs);
        r.x2 = malloc((size_t)r.n * sizeof *r.x2);
        if (!r.x || !r.grad || !r.xs || !r.x2) return 1;
        for (long i = 0; i < r.n; i++) {
            r.x[i] = start_point(i);
            r.x2[i] = start_point(i + 3);
        }
        double ops = 5.0 * (double)r.n + 1, per = 1e9 / ops;
        if (replay_only) {
            r.tape = ad_tape_new();
            step_record(&r);
            double rep = bench_time(step_replay, &r, min_time);
            if (check(&r, r.x2)) return 1;
            bench_json("bench s impl s phase s n i ops i seconds d ns_per_op d", "rosenbrock",
                       "autodiff", "replay gradient", r.n, (long)ops, rep, rep * per);
            ad_tape_free(r.tape);
        } else if (ad) {
            r.tape = ad_tape_new();
            /* Recording the same function after a reset reuses the tape's
             * arrays (bench_time's warm-up call grows them), as a user's
             * optimisation loop would. */
            double rec = bench_time(step_record, &r, min_time);
            double back = bench_time(step_backward, &r, min_time);
            if ((size_t)ops != ad_scalar_count(r.tape)) {
                fprintf(stderr, "rosenbrock: %zu nodes, expected %.0f\n", ad_scalar_count(r.tape),
                        ops);
                return 1;
            }
            if (check(&r, r.x)) return 1;
            double rep = bench_time(step_replay, &r, min_time);
            if (check(&r, r.x2)) return 1;
            bench_json("bench s impl s phase s n i ops i seconds d ns_per_op d", "rosenbrock",
                       impl, "record", r.n, (long)ops, rec, rec * per);
            bench_json("bench s impl s phase s n i ops i seconds d ns_per_op d", "rosenbrock",
                       impl, "backward", r.n, (long)ops, back, back * per);
            bench_json("bench s impl s phase s n i ops i seconds d ns_per_op d", "rosenbrock",
                       impl, "record+backward", r.n, (long)ops, rec + back, (rec + back) * per);
            bench_json("bench s impl s phase s n i ops i seconds d ns_per_op d", "rosenbrock",
                       impl, "replay gradient", r.n, (long)ops, rep, rep * per);
            ad_tape_free(r.tape);
        } else {
            double t = bench_time(step_analytic, &r, min_time);
            if (check(&r, r.x)) return 1;
            bench_json("bench s impl s phase s n i ops i seconds d ns_per_op d", "rosenbrock",
                       impl, "gradient", r.n, (long)ops, t, t * per);
        }
        free(r.x);
        free(r.grad);
        free(r.xs);
        free(r.x2);
    }
    return 0;
}

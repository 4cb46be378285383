// bench/rosenbrock_adolc.cpp - the ADOL-C peer of bench/rosenbrock.c: the
// same function, start point and operation count (5n + 1 per evaluation).
//
//   rosenbrock_adolc MIN_TIME N...
//
// Three figures per n, all through ADOL-C's tape:
//   tape+reverse   trace_on(keep = 1) ... trace_off(), then fos_reverse():
//                  record and differentiate once, the counterpart of
//                  autodiff's record + backward;
//   gradient       gradient() at a new point from the existing tape (a
//                  zero-order forward sweep, then the reverse sweep): the
//                  replayed gradient;
//   tape+gradient  both, the way most ADOL-C programs are written.
// The buffers are sized for the whole tape so ADOL-C keeps it in memory
// instead of spilling it to files (its default buffers hold 2^19 entries,
// a tenth of n = 10^6's tape).
#include <adolc/adolc.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <ctime>
#include <vector>

// The clock of bench/common.h: BENCH_CLOCK=wall or cpu (the default).
static double now()
{
    static const char *c = getenv("BENCH_CLOCK");
    static const bool wall = c && std::string(c) == "wall";
    timespec ts;
    clock_gettime(wall ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// As bench/common.h's bench_time: one warm-up call, then doubling batches
// until one lasts min_time; seconds per call.
template <class F> static double bench_time(F fn, double min_time)
{
    fn();
    for (long reps = 1;; reps *= 2) {
        double t0 = now();
        for (long r = 0; r < reps; r++) fn();
        double dt = now() - t0;
        if (dt >= min_time) return dt / double(reps);
    }
}

static double start_point(long i) { return i % 2 ? 1.0 + 0.01 * double(i % 7) : -1.2 + 0.003 * double(i % 11); }

static const short TAG = 1;

// Buffer sizes (entries) for a tape of ops = 5n + 1 operations, from
// tapestats() of this function: 1.2 ops operations, 2.5 ops locations,
// 0.2 ops values and 1.41 ops Taylor coefficients, plus slack.  Larger
// buffers only cost time: ADOL-C allocates them on every trace_on.
static void tape(long n, const double *x, double ops)
{
    trace_on(TAG, 1, unsigned(1.25 * ops) + 4096, unsigned(2.55 * ops) + 4096,
             unsigned(0.25 * ops) + 4096, unsigned(4 * ops) + 4096);
    std::vector<adouble> xs(n);
    for (long i = 0; i < n; i++) xs[i] <<= x[i];
    adouble f = 0.0;
    for (long i = 0; i < n / 2; i++) {
        adouble d = xs[2 * i + 1] - xs[2 * i] * xs[2 * i];
        adouble e = 1.0 - xs[2 * i];
        f += 100.0 * d * d + e * e;
    }
    double fv;
    f >>= fv;
    trace_off();
}

static void json(const char *phase, long n, double ops, double sec)
{
    printf("{\"bench\": \"rosenbrock\", \"impl\": \"adolc\", \"phase\": \"%s\", \"n\": %ld, "
           "\"ops\": %ld, \"seconds\": %.6g, \"ns_per_op\": %.6g}\n",
           phase, n, long(ops), sec, sec * 1e9 / ops);
    fflush(stdout);
}

static int check(long n, const double *x, const double *g)
{
    for (long i = 0; i < n / 2; i++) {
        double x0 = x[2 * i], x1 = x[2 * i + 1], d = x1 - x0 * x0;
        double w0 = -400 * x0 * d - 2 * (1 - x0), w1 = 200 * d;
        if (std::fabs(g[2 * i] - w0) > 1e-12 * (1 + std::fabs(w0)) ||
            std::fabs(g[2 * i + 1] - w1) > 1e-12 * (1 + std::fabs(w1))) {
            fprintf(stderr, "rosenbrock_adolc: wrong gradient at pair %ld\n", i);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MIN_TIME N...\n", argv[0]);
        return 2;
    }
    double min_time = atof(argv[1]);
    for (int arg = 2; arg < argc; arg++) {
        long n = atol(argv[arg]);
        double ops = 5.0 * double(n) + 1;
        std::vector<double> x(n), x2(n), g(n);
        for (long i = 0; i < n; i++) {
            x[i] = start_point(i);
            x2[i] = start_point(i + 3); // the "new point" for the replay
        }
        double one = 1.0;
        double t_rev = bench_time([&] {
            tape(n, x.data(), ops);
            fos_reverse(TAG, 1, int(n), &one, g.data());
        }, min_time);
        if (check(n, x.data(), g.data())) return 1;
        double t_grad = bench_time([&] { gradient(TAG, int(n), x2.data(), g.data()); }, min_time);
        if (check(n, x2.data(), g.data())) return 1;
        double t_both = bench_time([&] {
            tape(n, x.data(), ops);
            gradient(TAG, int(n), x.data(), g.data());
        }, min_time);
        if (check(n, x.data(), g.data())) return 1;
        json("record+backward", n, ops, t_rev);
        json("replay gradient", n, ops, t_grad);
        json("record+gradient", n, ops, t_both);
    }
    return 0;
}

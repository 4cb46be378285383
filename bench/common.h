/* bench/common.h - what every benchmark program shares: a monotonic clock,
 * a loop that times a function for at least a given time, and one line of
 * JSON per measurement on stdout, which bench/run collects.
 *
 * Benchmarks print results and nothing else on stdout; diagnostics go to
 * stderr, so the driver can parse stdout line by line. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The clock every figure is read from, chosen by BENCH_CLOCK (bench/run
 * sets it): "wall" (CLOCK_MONOTONIC) or "cpu" (CLOCK_PROCESS_CPUTIME_ID,
 * the default).  The benchmarks are single-threaded, so on an idle machine
 * the two agree; on a shared one CPU time leaves out the time the process
 * spent waiting for a core, which otherwise dominates the spread. */
static inline clockid_t bench_clock_id(void)
{
    static int wall = -1;
    if (wall < 0) {
        const char *c = getenv("BENCH_CLOCK");
        wall = c && strcmp(c, "wall") == 0;
    }
    return wall ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID;
}

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(bench_clock_id(), &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Calls fn(ctx) once to warm caches, page tables and lazily allocated
 * buffers (the tape's arena, BLAS's packing buffers), then in batches that
 * double until one batch lasts min_time seconds.  Returns seconds per call
 * of the last batch: a whole batch is timed, not single calls, so the
 * clock's cost and resolution do not matter for short calls. */
static inline double bench_time(void (*fn)(void *), void *ctx, double min_time)
{
    fn(ctx);
    for (long reps = 1;; reps *= 2) {
        double t0 = bench_now();
        for (long r = 0; r < reps; r++) fn(ctx);
        double dt = bench_now() - t0;
        if (dt >= min_time || reps >= (1L << 40)) return dt / (double)reps;
    }
}

/* Prints {"key": value, ...} and a newline.  fmt lists the keys and their
 * types: "s" string, "d" double, "i" long, e.g.
 * bench_json("bench s n i gflops d", "matmul", 1024L, 123.4). */
static inline void bench_json(const char *fmt, ...)
{
    char spec[512];
    snprintf(spec, sizeof spec, "%s", fmt);
    va_list ap;
    va_start(ap, fmt);
    fputc('{', stdout);
    int first = 1;
    for (char *save = NULL, *key = strtok_r(spec, " ", &save); key;
         key = strtok_r(NULL, " ", &save)) {
        char *type = strtok_r(NULL, " ", &save);
        if (!type) break;
        printf("%s\"%s\": ", first ? "" : ", ", key);
        first = 0;
        if (type[0] == 's') {
            const char *s = va_arg(ap, const char *);
            printf("\"%s\"", s ? s : "");
        } else if (type[0] == 'i') {
            printf("%ld", va_arg(ap, long));
        } else {
            printf("%.6g", va_arg(ap, double));
        }
    }
    va_end(ap);
    fputs("}\n", stdout);
    fflush(stdout);
}

/* A deterministic fill in [-1, 1), so runs compare the same arithmetic. */
static inline double bench_rand(unsigned long long *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

#endif

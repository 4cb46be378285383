/* nn/trainer_pool.h - the trainer's threads (trainer_threads.c), shared
 * with the step whose products they split (trainer_ops.c); never
 * installed. */
#ifndef NN_TRAINER_POOL_H
#define NN_TRAINER_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "trainer_impl.h"

/* The processor's spin-wait hint: it saves power and lets a sibling
 * hardware thread run while this one polls. */
static inline void nn__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* CLOCK_MONOTONIC in ns: the hand-offs' spin limits and the step timing. */
static inline int64_t nn__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A signal that one side raises by bumping seq and the other awaits: it
 * spins on seq, then sleeps on cv (under the pool's mutex) after counting
 * itself in sleepers.  The raiser reads sleepers after its bump and takes
 * the mutex to broadcast only when someone sleeps.  Both are sequentially
 * consistent, so either the sleeper sees the new seq before it waits or
 * the raiser sees the sleeper; a sleeper holds the mutex from its last
 * look at seq until the wait releases it, so the broadcast cannot fall in
 * between.  The release of the bump and the acquire of the look order
 * everything written before a raise before everything read after the
 * wait. */
typedef struct event {
    _Atomic uint64_t seq;
    _Atomic int sleepers;
    pthread_cond_t cv;
} event;

typedef struct shard {
    struct pool *pool;
    int idx;
    rec recs[NN_TRAINER_MAX_SHAPES]; /* this shard's recordings, one per shard shape */
    rec *r;                          /* the one this step replays */
    ad_tensor *weight;               /* persistent 0-d n_t / N: grad_output of its loss */
    ad_tensor **grads;               /* this step's gradients, on r's tape */
    const void **base;               /* ... their element 0 */
    int64_t (*strides)[AD_MAX_DIMS]; /* ... and strides */
    int64_t row0, rows;
    double loss;
    int64_t spin;                    /* its thread's spin limit (await_event), ns */
    _Atomic uint64_t taken;          /* the last phase (pool.gen) whose part idx a
                                        thread took: its own, or the caller's */
    int rc;                          /* 0, or -1 with the error below */
    ad_error_code code;
    char err[512];
} shard;

/* A parameter's gradient buffer, as the reduction writes it. */
typedef struct pgrad {
    void *d;              /* NULL: no gradient (the loss does not reach it) */
    ad_dtype dt;
    int nd;
    const int64_t *shape;
    int64_t rows, inner;  /* first dimension, elements per index of it */
} pgrad;

/* Whether a step with the products split runs faster on the threads or
 * on the calling thread alone, measured as the steps go (trainer_ops.c,
 * tune_step). */
typedef struct ops_tune {
    int state;          /* 0 the threads, timed; 1 one thread, timed to compare; 2 one
                           thread chosen, for `left` more steps */
    int n, skip;        /* intervals in this window; intervals to drop first */
    int64_t sum;        /* ... their sum, ns */
    int64_t threads_ns; /* the last window's mean step on the threads; 0 none */
    int64_t one_ns;     /* ... on one thread */
    bool one_fresh;     /* one_ns was timed just before this window of threads */
    int64_t left, run;  /* state 2's steps left; its length (0: not chosen last) */
    int64_t last;       /* when the previous step began, ns (0: none) */
} ops_tune;

struct pool {
    int n;                /* shards = threads; shard 0 runs on the caller's thread */
    int phase;            /* what a wake-up asks: 1 forward and backward, 2 reduce and
                             update, 3 a part of task (NN_THREADS_OPS) */
    ad_parallel_task task;
    void *task_ctx;
    nn_optim *opt;
    pgrad *pg;            /* [nparams] */
    shard *sh;
    int nparams;
    ad_tensor **params;   /* the optimiser's parameters that require grad */
    int *slot;            /* [nparams]: each one's index in the optimiser */
    int *extra, nextra;   /* the optimiser's parameters that do not */
    ad_tensor **opt_p;    /* [nopt]: the optimiser's parameters when the pool */
    bool *opt_rg;         /* was made, and whether each required grad then */
    int nopt;
    pthread_t *th;        /* the n - 1 workers */
    int started;          /* workers created */
    pthread_mutex_t mu;   /* guards only the sleeps of go and done */
    event go;             /* raised by the caller to start a phase (or to quit) */
    event done;           /* raised by the last worker to finish a phase */
    _Atomic int pending;  /* parts 1..n-1 of this phase not yet done */
    _Atomic uint64_t gen; /* the phase's number, from 1 (shard.taken) */
    _Atomic bool quit;
    bool anomaly;         /* the calling thread's ad_anomaly_mode, for every shard */
    const char *xd, *yd;  /* this step's batch, and the bytes of one row */
    size_t xrow, yrow;
    nn__prefetch *pf;     /* NN_THREADS_OPS in nn_fit: the next batch, converted by the
                             workers between their parts (trainer_prefetch.c) */
    rec alt;              /* ... into this recording's leaves and the trainer's in turn */
    struct ops_runs *runs; /* NN_THREADS_OPS: the update's runs of rows
                              (trainer_ops.c); NULL until the first */
    ops_tune tune;        /* NN_THREADS_OPS: threads or not, as measured */
    bool serial;          /* ... this step's: every part on the calling thread */
};

/* The threads of a trainer, started: n - 1 workers and the calling
 * thread (NULL with an error). */
struct pool *nn__pool_new(nn_trainer *tr, int n);
/* Whether the optimiser's parameters, or which of them require grad,
 * changed since the pool was made (its params would miss one). */
bool nn__pool_params_stale(const struct pool *p, nn_optim *opt);
/* Runs phase (1 shards' steps, 2 their sums and update, 3 p->task) on
 * every thread, part 0 on this one, and returns when all are done: part
 * t on worker t, or on this thread when worker t has not started it by
 * the time this thread's own part is done. */
void nn__pool_run_phase(struct pool *p, int phase);

#endif

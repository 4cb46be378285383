/* nn/trainer_ops.c - a training step whose matrix products and update
 * the trainer's threads share (NN_THREADS_OPS, nn/trainer.h), and nn_fit's
 * batches converted straight into the recording it replays (the next one
 * by the waiting threads).  The threads themselves, and the step with the
 * batch split among them, are in trainer_threads.c. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "nn_private.h"
#include "trainer_impl.h"
#include "trainer_pool.h"

/* ---- NN_THREADS_OPS: the threads share each product and the update ----
 * The same threads, woken the same way, run parts of a kernel instead of
 * shards of the batch: the calling thread steps through the whole batch,
 * and the core calls pool_run (its runner, ad_set_parallel_runner) for
 * each product large enough to split; thread t always runs part t, which
 * starts on the same output columns of the same product at every step
 * and then helps with the others' (claim_strip in autodiff/gemm.c).  The
 * optimiser's update goes the same way in runs of rows (thread t starts
 * on rows [R t / T, R (t + 1) / T) of every parameter, below), so a
 * weight's rows that thread t's part of its gradient product wrote are
 * mostly updated there too.  No hand-off sleeps on the fast path
 * (trainer_threads.c), and an idle trainer's threads sleep.  Between their
 * parts the workers convert the rows of nn_fit's next batch
 * (trainer_prefetch.c, posted by nn__trainer_next_batch): the calling
 * thread's unshared work is where they wait. */
static _Atomic bool serial_parts;

void nn__ops_testing_serial(bool on) { atomic_store(&serial_parts, on); }

static void pool_run(void *pool, ad_parallel_task task, void *ctx)
{
    struct pool *p = pool;
    if (p->serial || atomic_load_explicit(&serial_parts, memory_order_relaxed)) {
        for (int t = p->n - 1; t >= 0; t--) task(ctx, t, p->n);
        return;
    }
    p->task = task;
    p->task_ctx = ctx;
    nn__pool_run_phase(p, 3);
}

/* The caller's kernels limit stays as it is: a product that the runner
 * does not split (a small one) goes where a one-thread step sends it, a
 * BLAS with threads of its own included, so that a step the runner does
 * not change gives the one-thread step's bits. */
int nn__ops_begin(nn_trainer *tr)
{
    if (!tr->pool && !(tr->pool = nn__pool_new(tr, tr->threads))) return -1;
    return ad_set_parallel_runner(pool_run, tr->pool, tr->pool->n);
}

void nn__ops_end(void) { ad_set_parallel_runner(NULL, NULL, 0); }

/* ---- whether the threads pay, measured ----
 * Two threads sharing the MLP's products ran 1.5x as fast as one on an
 * idle machine, and 0.6x with another program keeping one core busy: a
 * worker that waits for a core holds up the products it has begun, and
 * its spinning takes time from the calling thread's core.  Running every
 * part on the calling thread gives the same bits (the same kernel calls,
 * parts in any order), so the trainer can choose per step by speed alone,
 * as the steps go.  It times windows of TUNE_THREADS steps on its threads
 * and, when they are not 10 % faster than the last TUNE_ONE steps timed on
 * the calling thread alone (parts one after the other, workers left
 * asleep, nothing prefetched) or there is no such time, times TUNE_ONE
 * steps that way and compares.  One thread, when 10 % faster, then runs
 * `run` steps (TUNE_RUN, doubled up to TUNE_RUN_MAX while the threads keep
 * losing), timed as they go, before the threads are timed again; the
 * threads, when faster, run on, timed window by window.  On an idle
 * machine that costs TUNE_ONE + TUNE_SKIP slower steps once, and again
 * only if the threads' steps grow to within 10 % of the last one-thread
 * time (the MLP's here: by 40 %).  Only the step's own parts follow the
 * choice (nn__ops_step_end): the recording and evaluation between steps
 * keep the threads.  The comparison is of
 * means, not medians: a worker that a busy core's scheduler stops while
 * it holds a product's strip costs its step milliseconds, one step in
 * several, and the median step on the threads then looked as fast as one
 * thread's while their mean was 1.6 times as long.  A step's time is from
 * its start to the next one's, the batch's conversion included, within
 * an epoch of nn_fit (nn__ops_tune_gap: the evaluation between epochs is
 * not a step's); the first TUNE_SKIP after a change are dropped (sleeping
 * workers wake, caches refill). */
#define TUNE_THREADS 16
#define TUNE_ONE 8
#define TUNE_SKIP 2
#define TUNE_RUN 128
#define TUNE_RUN_MAX 8192

static _Atomic int64_t tune_bias_milli = 1000;

void nn__ops_testing_tune_bias(double f) { atomic_store(&tune_bias_milli, (int64_t)(f * 1000)); }

static void tune_enter(ops_tune *u, int state)
{
    u->state = state;
    u->n = 0;
    u->sum = 0;
    u->skip = TUNE_SKIP;
}

/* "a clearly faster than b": by 10 % */
static bool tune_faster(int64_t a, int64_t b) { return 10 * a < 9 * b; }

/* One thread chosen: `run` steps, longer each time in a row; the steps
 * before ran on one thread already (state 1) or on the threads (a window
 * of state 0, compared with the one-thread steps of state 2 before it). */
static void tune_choose_one(ops_tune *u, bool from_one)
{
    u->run = !u->run ? TUNE_RUN : 2 * u->run < TUNE_RUN_MAX ? 2 * u->run : TUNE_RUN_MAX;
    u->left = u->run;
    tune_enter(u, 2);
    if (from_one) u->skip = 0; /* nothing to warm up */
}

/* At the start of a training step with the products split: the previous
 * step's time noted, and this step's mode in p->serial.  A step's
 * interval is noted at the next step's start, in the window of the state
 * that ran it (the state changes only here, before the step). */
static void tune_step(struct pool *p)
{
    ops_tune *u = &p->tune;
    int64_t now = nn__now_ns();
    if (u->last) {
        int64_t d = now - u->last;
        if (u->state == 0)
            d = d * atomic_load_explicit(&tune_bias_milli, memory_order_relaxed) / 1000;
        if (u->skip > 0) {
            u->skip--;
        } else {
            u->sum += d;
            u->n++;
        }
    }
    int window = u->state == 0 ? TUNE_THREADS : TUNE_ONE;
    if (u->n == window) {
        int64_t mean = u->sum / window;
        if (u->state == 0) {
            u->threads_ns = mean;
            bool fresh = u->one_fresh;
            u->one_fresh = false;
            u->n = 0;
            u->sum = 0;
            if (u->one_ns && tune_faster(mean, u->one_ns)) u->run = 0; /* the threads */
            else if (fresh) tune_choose_one(u, false);
            else tune_enter(u, 1);
        } else {
            u->one_ns = mean;
            u->one_fresh = true;
            u->n = 0;
            u->sum = 0;
            if (u->state == 1) {
                if (tune_faster(mean, u->threads_ns)) {
                    tune_choose_one(u, true);
                } else {
                    u->run = 0;
                    tune_enter(u, 0);
                }
            }
        }
    }
    if (u->state == 2 && --u->left < 0) tune_enter(u, 0);
    p->serial = u->state != 0;
    u->last = now;
}

void nn__ops_tune_gap(nn_trainer *tr)
{
    if (tr->pool) tr->pool->tune.last = 0;
}

int nn__ops_step_begin(nn_trainer *tr)
{
    if (!tr->pool && !(tr->pool = nn__pool_new(tr, tr->threads))) return -1;
    tune_step(tr->pool);
    if (tr->pool->serial) tr->serial_steps++;
    if (nn__ops_begin(tr)) {
        tr->pool->serial = false;
        return -1;
    }
    return 0;
}

/* The step's choice holds for the step alone: the recording and the
 * evaluation between steps share their products among the threads. */
void nn__ops_step_end(nn_trainer *tr)
{
    tr->pool->serial = false;
    nn__ops_end();
}

/* ---- the trainer's work between steps, on its threads too ----
 * A trainer with threads still records its model on the calling thread
 * (each batch shape's first step, nn_fit's second recording for the
 * prefetched batch) and evaluates it there between epochs.  Left to the
 * library's defaults, the products of that work split on OpenMP's
 * threads, and after a parallel region libgomp keeps its idle threads
 * spinning for some milliseconds (GOMP_SPINCOUNT's default, about 3 ms
 * and up to 5 times that on a slower CPU): on a machine with as many cores
 * as the trainer has threads, the next steps then share their cores with
 * a spinning thread.  The MLP's evaluation after every epoch gave that
 * thread 7 % of a core all through a two-thread run; with
 * OMP_WAIT_POLICY=passive (no spinning) the two-thread step ran 4 %
 * faster.  So this work takes the step's runner as well: its products go
 * to the trainer's threads (split the same way, so the same bits) and its
 * other kernels stay on this thread.  The recording always does (once per
 * shape); the evaluation only with the products split (evaluate in
 * trainer.c: a CNN's unfold and pooling want OpenMP's threads there).  A
 * step with the products split has the runner already (tr->ops), and a
 * begin inside another leaves it to the outer one. */
int nn__aside_begin(nn_trainer *tr, int *prev)
{
    if (tr->threads <= 1 || tr->ops || tr->aside) return 0;
    if (nn__ops_begin(tr)) return -1;
    tr->aside = true;
    *prev = ad_set_num_threads(1);
    return 1;
}

void nn__aside_end(nn_trainer *tr, int began, int prev)
{
    if (began != 1) return;
    ad_set_num_threads(prev);
    nn__ops_end();
    tr->aside = false;
}

/* ---- the update, in runs of rows claimed as the threads go ----
 * Thread t starts on rows [R t / T, R (t + 1) / T) of every parameter
 * (for a weight, the rows that its part of the gradient product wrote:
 * gemm.c splits a product accumulated into a gradient by rows), cut into
 * runs of about OPS_RUN elements, and then takes the runs left at the
 * back of the other threads' lists, one at a time.  With the rows fixed,
 * the two cores of a shared virtual machine ran their halves of the MLP's
 * update in 21 and 41 us in one run (the slow core changes from run to
 * run, as for the products: docs/benchmarks.md), and the faster core
 * waited out the difference; claimed, the two ended within 1-3 us.  Each
 * element is updated once, by the same code whichever thread claims its
 * run: the same bits. */
#define OPS_RUN 8192

typedef struct ops_run {
    int k; /* the optimiser's parameter */
    int64_t r0, r1;
} ops_run;

/* Runs [front, back) of one thread's list left to claim, as front | back
 * << 32, one cache line each.  gemm.c claims its strips the same way
 * (claim_strip); nn is built on the core's public API only, and a public
 * work-claiming call for these few lines was not worth its surface. */
typedef struct ops_claim {
    _Atomic uint64_t fb;
    char pad[64 - sizeof(uint64_t)];
} ops_claim;

struct ops_runs {
    int64_t *rows;    /* [2 params_cap]: each parameter's rows, then its rows per run */
    int params_cap;
    ops_run *run;     /* [cap]: thread 0's runs, thread 1's, ... */
    int64_t cap;
    ops_claim *claim; /* [threads] */
    int threads;
    nn_optim *opt;
};

void nn__ops_runs_free(struct ops_runs *r)
{
    if (!r) return;
    ad_free(r->rows);
    ad_free(r->run);
    ad_free(r->claim);
    ad_free(r);
}

/* The next run for thread t of T: the front of its own list, else the
 * back of the next list (in thread order) with runs left; -1 when none
 * has. */
static int64_t claim_run(ops_claim *c, int t, int T)
{
    for (int i = 0; i < T; i++) {
        ops_claim *v = &c[(t + i) % T];
        uint64_t s = atomic_load_explicit(&v->fb, memory_order_relaxed);
        for (;;) {
            uint64_t front = s & 0xffffffffu, back = s >> 32;
            if (front >= back) break;
            uint64_t next = i == 0 ? s + 1 : (back - 1) << 32 | front;
            /* only the exchange's atomicity is needed: the runs' writes
             * are ordered by the end of the phase */
            if (atomic_compare_exchange_weak_explicit(&v->fb, &s, next, memory_order_relaxed,
                                                      memory_order_relaxed))
                return (int64_t)(i == 0 ? front : back - 1);
        }
    }
    return -1;
}

static void runs_task(void *ctx, int part, int parts)
{
    struct ops_runs *R = ctx;
    int64_t i;
    (void)parts;
    while ((i = claim_run(R->claim, part, R->threads)) >= 0)
        nn__optim_step_rows(R->opt, R->run[i].k, R->run[i].r0, R->run[i].r1);
}

/* Elements below which the update stays on the calling thread: waking
 * the threads costs a few microseconds, about what 16K elements of SGD
 * take. */
#define OPS_OPTIM_MIN 16384

/* The pool's runs of the update, laid out thread by thread (*total: the
 * elements to update); NULL when out of memory, before anything has
 * changed. */
static struct ops_runs *plan_update(nn_trainer *tr, int64_t *total)
{
    const char *fn = "nn_trainer_step";
    struct pool *p = tr->pool;
    int T = p->n, nk = nn__optim_count(tr->opt);
    struct ops_runs *R = p->runs;
    if (!R) {
        if (!(R = p->runs = ad_calloc(1, sizeof *R)) ||
            !(R->claim = ad_calloc((size_t)T, sizeof *R->claim)))
            return nn__err(fn, "out of memory"), NULL;
    }
    if (nk > R->params_cap) {
        int64_t *v = ad_realloc(R->rows, 2 * (size_t)nk * sizeof *v);
        if (!v) return nn__err(fn, "out of memory"), NULL;
        R->rows = v;
        R->params_cap = nk;
    }
    int64_t *rows = R->rows, *step = R->rows + nk, need = 0;
    *total = 0;
    for (int k = 0; k < nk; k++) { /* rows 0: no gradient, no update */
        ad_tensor *w = nn__optim_param(tr->opt, k);
        int64_t n = nn__optim_steps_param(tr->opt, k) ? ad_numel(w) : 0;
        rows[k] = n ? nn__optim_rows(tr->opt, k) : 0;
        int64_t inner = n ? n / rows[k] : 1;
        step[k] = inner >= OPS_RUN ? 1 : OPS_RUN / inner; /* rows per run */
        need += rows[k] ? (rows[k] + step[k] - 1) / step[k] + T : 0; /* + a short run a thread */
        *total += n;
    }
    if (need > R->cap) {
        ops_run *run = ad_realloc(R->run, (size_t)need * sizeof *run);
        if (!run) return nn__err(fn, "out of memory"), NULL;
        R->run = run;
        R->cap = need;
    }
    int64_t n = 0;
    for (int t = 0; t < T; t++) {
        int64_t first = n;
        for (int k = 0; k < nk; k++) {
            int64_t lo = rows[k] * t / T, hi = rows[k] * (t + 1) / T;
            for (int64_t r = lo; r < hi; r += step[k])
                R->run[n++] = (ops_run){k, r, hi - r < step[k] ? hi : r + step[k]};
        }
        atomic_init(&R->claim[t].fb, (uint64_t)first | (uint64_t)n << 32);
    }
    R->threads = T;
    R->opt = tr->opt;
    return R;
}

/* The batch's bytes into the recording's leaves, each thread a part. */
typedef struct copy_job {
    char *dst[2];
    const char *src[2];
    size_t n[2];
} copy_job;

static void copy_task(void *ctx, int part, int parts)
{
    const copy_job *J = ctx;
    for (int i = 0; i < 2; i++) { /* cut on cache lines */
        size_t lo = J->n[i] / 64 * (size_t)part / (size_t)parts * 64;
        size_t hi = part + 1 == parts ? J->n[i] : J->n[i] / 64 * (size_t)(part + 1) / (size_t)parts * 64;
        if (hi > lo) memcpy(J->dst[i] + lo, J->src[i] + lo, hi - lo);
    }
}

/* Bytes of a batch below which the replay copies it on the calling
 * thread: a wake-up costs about what 64 KB of copying does. */
#define OPS_COPY_MIN 65536

int nn__ops_load(nn_trainer *tr, rec *r, ad_tensor *x, ad_tensor *y)
{
    size_t nx = (size_t)ad_numel(x) * ad_dtype_size(ad_tensor_dtype(x));
    size_t ny = (size_t)ad_numel(y) * ad_dtype_size(ad_tensor_dtype(y));
    if (nx + ny < OPS_COPY_MIN || !ad_is_contiguous(x) || !ad_is_contiguous(y)) return 1;
    copy_job J = {{ad_data(r->x), ad_data(r->y)}, {ad_data(x), ad_data(y)}, {nx, ny}};
    if (!J.dst[0] || !J.dst[1] || !J.src[0] || !J.src[1]) return -1;
    pool_run(tr->pool, copy_task, &J);
    return 0;
}

/* ---- the batch straight into the recording ------------------------------
 * nn_fit's batch used to be converted (bytes to floats, image by image
 * from anywhere in the data set) into the loader's batch tensor and then
 * copied into the recording's leaves by the replay, or, with the products
 * split, by the threads in a hand-off of its own.  With the recording
 * known before the step, the calling thread converts the batch straight
 * into its leaves: one pass over the batch and, with threads, one
 * hand-off fewer per step.  Having the threads convert their rows instead
 * measured slower (docs/benchmarks.md): the conversion is mostly waits for
 * memory that a hand-off on a busy machine costs more than it saves.  Each
 * row gets the bits nn_loader_next gives it.  With the products split, the
 * workers convert the next batch ahead, outside any hand-off, in the
 * calling thread's unshared time (trainer_prefetch.c): that batch comes
 * already converted, into the leaves of the other of two recordings. */
void nn__trainer_prefetch_stop(nn_trainer *tr, const rec *r)
{
    struct pool *p = tr->pool;
    rec *target = p ? nn__prefetch_target(p->pf) : NULL;
    if (target && (!r || r == target)) nn__prefetch_take(p->pf, NULL);
}

/* After batch bt, of the shape of (x, y), was handed out for a step that
 * replays recording `used` with the products split: the batch the loader
 * hands out next, when it has the same shape, posted for the workers to
 * convert into the other recording of that shape (the pool's second one,
 * recorded the first time, or the trainer's).  Nothing is posted for one
 * thread, or the batch split, or at the end of an epoch. */
static int prefetch_next(nn_trainer *tr, nn_loader *l, const nn__batch *bt, rec *used,
                         const ad_tensor *x, const ad_tensor *y)
{
    struct pool *p = tr->pool;
    nn__batch next;
    /* (the next step runs on one thread, as far as the tuner's state says:
     * its workers are left asleep) */
    if (!p || p->n < 2 || p->tune.state != 0 || nn__trainer_mode(tr) != NN_THREADS_OPS ||
        !nn__loader_peek(l, &next) ||
        next.k != bt->k || next.b != bt->b)
        return 0;
    rec *target = &p->alt;
    if (used == &p->alt) {
        if (!(target = nn__trainer_train_rec(tr, x, y))) return 0;
    } else if (!p->alt.tape || !nn__rec_matches(&p->alt, x, y)) {
        nn__rec_free(&p->alt);
        if (nn__trainer_record_batch(tr, &p->alt, x, y, true)) return -1;
    }
    if (!ad_is_contiguous(target->x) || !ad_is_contiguous(target->y)) return 0;
    if (nn__prefetch_post(p->pf, &next, target)) return -1;
    if (atomic_load(&p->go.sleepers) > 0) { /* workers asleep: wake them for it */
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->go.cv);
        pthread_mutex_unlock(&p->mu);
    }
    return 0;
}

int nn__trainer_next_batch(nn_trainer *tr, nn_loader *l, ad_tensor **x, ad_tensor **y)
{
    nn__batch bt = {NULL, 0, NULL, 0}; /* set by a claim that returns 1 */
    tr->pre_r = NULL;
    tr->pre_x = NULL;
    int got = nn__loader_claim(l, x, y, &bt);
    /* the workers converted this batch already (in its recording's leaves),
     * or a batch that is not this one: then the job's rows are dropped */
    rec *r = tr->pool && got == 1 && y && *y ? nn__prefetch_take(tr->pool->pf, &bt) : NULL;
    bool taken = r != NULL;
    if (!taken) nn__trainer_prefetch_stop(tr, NULL);
    if (got != 1) return got;
    /* the steps that replay the whole batch on this thread (step in
     * trainer.c): one thread, or the products split */
    bool whole = tr->threads <= 1 || (tr->pool && nn__trainer_mode(tr) == NN_THREADS_OPS);
    if (!r && whole && y && *y) r = nn__trainer_train_rec(tr, *x, *y);
    void *xd = r ? ad_data(r->x) : NULL, *yd = r ? ad_data(r->y) : NULL;
    if (taken) {
        /* its rows are in r's leaves */
    } else if (r && xd && yd && ad_is_contiguous(r->x) && ad_is_contiguous(r->y)) {
        nn__loader_fill_rows(&bt, 0, bt.b, xd, yd);
    } else {
        r = NULL;
        nn__loader_fill_rows(&bt, 0, bt.b, NULL, NULL);
    }
    /* forward replays r on its leaves as they are; *x and *y keep their
     * old values, which nothing in the step reads */
    tr->pre_r = r;
    tr->pre_x = r ? *x : NULL;
    nn__loader_filled(&bt);
    if (r && whole && prefetch_next(tr, l, &bt, r, *x, *y)) return -1;
    return 1;
}

int nn__ops_optim_step(nn_trainer *tr)
{
    int64_t total;
    struct ops_runs *R = plan_update(tr, &total);
    if (!R || nn__optim_step_begin(tr->opt)) return -1;
    if (total < OPS_OPTIM_MIN) nn__optim_step_slice(tr->opt, 0, 1);
    else pool_run(tr->pool, runs_task, R);
    nn__optim_step_end(tr->opt);
    return 0;
}

/* nn/trainer_threads.c - a training step with the batch split among
 * threads (nn_trainer_set_threads).
 *
 * Data parallelism, as PyTorch's DistributedDataParallel does it across
 * processes: the batch of N rows is cut into T contiguous shards, shard t
 * of n_t rows.  Each shard has recordings of its own (its own tapes, made
 * on the calling thread the first time its shape comes up), and a step
 * replays every shard's forward and loss on a thread of its own and
 * differentiates it there, all at once.  The training loss is a mean over
 * the batch, so the batch's loss and gradient are the shards' weighted by
 * n_t / N: the last shard, on a worker, writes its gradient into the
 * parameters' grads (ad_backward with grad_output n_t / N), the others
 * compute theirs with ad_gradients on their own tapes (the parameters are
 * only read, which independent tapes may do at once: tape.h), and after
 * the threads meet each thread adds them, in shard order, into its rows
 * of the grads and runs the optimiser on those rows.  Every op of the
 * forward and backward - matrix products, convolutions' unfold and fold,
 * the elementwise ops - runs on a shard of the batch, so the whole step is
 * split, not a few kernels of it, in two phases (forward and backward;
 * sums and update).
 *
 * The threads are started at the first split step and kept until the
 * trainer is freed or its thread count changes: a step wakes them, it does
 * not create them.  A hand-off (the start of a phase, the end of one) is an
 * atomic counter that the waiting side spins on for up to SPIN_NS, then
 * sleeps on a condition variable, as OpenMP runtimes wait: an MLP step is
 * under a millisecond, and a sleeping thread's wake-up on a virtual machine
 * can take tens of microseconds, several times per step, while a thread
 * between two steps of a running trainer is woken within the spin.  The
 * limit follows the waits: it grows to cover the gaps of a running step
 * and shrinks only while waits are long (a busy machine, where sleeping
 * is better, or an idle trainer).  A trainer left idle costs a
 * spin of one core, then nothing.  A part of a phase that its worker has
 * not taken by the time the calling thread's own part is done, the
 * calling thread takes and runs (nn__pool_run_phase).  Each thread limits the kernels it
 * calls to itself (ad_set_num_threads(1)), as does the caller during the
 * step, so T threads keep T cores busy and no OpenMP team or BLAS pool is
 * started on top of them.
 *
 * What a split step guarantees: the shards, the kernels each runs and the
 * order of the final additions are fixed by N and T, so a seeded run with
 * T threads gives the same bits every time; with another T (one thread
 * included) the sums are grouped differently and the results differ in the
 * last bits.  Layers that couple the samples of a batch (BatchNorm in
 * training) see a shard instead of the batch; a loss given to the trainer
 * must be a mean of per-sample terms (all of nn's are). */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "nn_private.h"
#include "trainer_impl.h"
#include "trainer_pool.h"

/* More threads than this is a mistake rather than a machine. */
#define MAX_SPLIT 256

/* How long a waiting thread spins before it sleeps, at most: longer than
 * the gaps inside a running trainer's step and between its steps (loading
 * the next batch), short enough that an idle trainer gives its cores back
 * at once; and at least, once spins keep failing (await_event). */
#define SPIN_NS 200000
#define SPIN_MIN_NS 5000
/* A wait longer than this says the machine is busy (or the trainer idle),
 * not that a step has a long gap: only such waits shorten the spin. */
#define LONG_WAIT_NS 2000000

/* Where gradient i of shard s is: its element 0 and strides.  A weight's
 * gradient is often a transposed view (of the product that computed it);
 * permuted to decreasing strides it is contiguous, and ad_data gives its
 * element 0 without a copy.  Any other view is copied. */
static int locate(shard *s, int i)
{
    ad_tensor *h = s->grads[i];
    int nd = ad_ndim(h), perm[AD_MAX_DIMS];
    const int64_t *st = ad_strides(h);
    for (int a = 0; a < nd; a++) perm[a] = a;
    for (int a = 1; a < nd; a++) /* insertion sort, stable: by decreasing stride */
        for (int b = a; b > 0 && st[perm[b]] > st[perm[b - 1]]; b--) {
            int tmp = perm[b];
            perm[b] = perm[b - 1];
            perm[b - 1] = tmp;
        }
    ad_tensor *v = ad_is_contiguous(h) ? h : ad_permute(h, perm);
    if (v && !ad_is_contiguous(v)) v = h = s->grads[i] = ad_contiguous(h);
    if (!v) return -1;
    memcpy(s->strides[i], ad_strides(h), (size_t)nd * sizeof(int64_t));
    s->base[i] = ad_data(v);
    return s->base[i] ? 0 : -1;
}

/* Replays shard s on the batch in p and differentiates it; the outcome in
 * s->rc (the message copied, since errors are per thread).  Anomaly mode
 * is per thread too: each shard is checked as the calling thread's
 * setting says, whichever thread runs it. */
static void shard_run(struct pool *p, shard *s)
{
    bool anomaly = ad_set_anomaly_mode(p->anomaly);
    rec *r = s->r;
    bool last = s->idx == p->n - 1;
    memcpy(ad_data(r->x), p->xd + (size_t)s->row0 * p->xrow, (size_t)s->rows * p->xrow);
    memcpy(ad_data(r->y), p->yd + (size_t)s->row0 * p->yrow, (size_t)s->rows * p->yrow);
    ad_tensor *leaves[2] = {r->x, r->y};
    int rc = ad_tape_replay(r->tape, 2, leaves, NULL) < 0 ? -1 : 0;
    if (rc == 0) s->loss = ad_item(r->loss);
    if (last && (rc || !isfinite(s->loss))) {
        /* nothing to differentiate (the caller reports why): the grads
         * read 0, as after nn_optim_zero_grad on one thread */
        if (nn_optim_zero_grad(p->opt)) rc = -1;
    } else if (rc == 0 && isfinite(s->loss)) {
        if (last) {
            /* The last shard's gradient replaces the parameters' grads
             * (AD_SET_GRAD: no pass zeroes them first), and those of the
             * optimiser's parameters the pass did not write are zeroed,
             * the bits of nn_optim_zero_grad and an accumulating backward
             * (trainer.c, backward_fresh). */
            rc = ad_backward(r->loss, s->weight, AD_RETAIN_GRAPH | AD_SET_GRAD) ||
                         nn__optim_zero_unwritten(p->opt)
                     ? -1
                     : 0;
        } else {
            rc = ad_gradients(r->loss, s->weight, p->nparams, p->params, s->grads,
                              AD_RETAIN_GRAPH);
            for (int i = 0; rc == 0 && i < p->nparams; i++) rc = locate(s, i);
        }
    }
    s->rc = rc;
    if (rc) {
        s->code = ad_errcode();
        snprintf(s->err, sizeof s->err, "%s", ad_error() ? ad_error() : "unknown error");
    }
    ad_set_anomaly_mode(anomaly);
}

static void reduce_slice(struct pool *p, int t);

static void raise_event(struct pool *p, event *e)
{
    atomic_fetch_add(&e->seq, 1);
    if (atomic_load(&e->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Waits until e->seq is no longer seen; returns the new value, or seen
 * when job (a worker's, or NULL) has a row to convert first.  *budget
 * is this waiter's spin limit, adapted to the waits it sees: a spin that
 * sees the event doubles it, up to SPIN_NS; a spin that ends without the
 * event, then sleeps, sets it from how long the whole wait took.  A wait
 * shorter than SPIN_NS (a gap inside a running step, longer than the
 * budget was) makes it twice that wait, so the next such gap is spun
 * through; a wait of a few hundred microseconds (a long unshared part
 * of a step) leaves it as it is; only one longer than LONG_WAIT_NS (on a
 * busy machine the awaited thread is often waiting for a core itself,
 * for milliseconds; or the trainer is idle) quarters it, down to
 * SPIN_MIN_NS.  Quartering on every failed
 * spin, as adaptive mutexes do, measured 0.56x one thread for the MLP on
 * a virtual machine where a wake-up costs tens of microseconds: the
 * limit fell to SPIN_MIN_NS within a step and stayed there, since the
 * step's gaps (10-100 us) never fit it again, and every hand-off slept
 * (29 % of the samples in the kernel's wake-up path); 1.61x with this
 * rule.  On an idle machine every hand-off of a running trainer comes
 * within the spin and the limit stays at SPIN_NS.  The spin never yields its core
 * (sched_yield): a yielding thread, still runnable, waits behind every
 * other runnable thread for its next turn, where a sleeping one that is
 * woken is scheduled at once (docs/benchmarks.md has the measurements). */
static uint64_t await_event(struct pool *p, event *e, uint64_t seen, int64_t *budget,
                            nn__prefetch *job)
{
    uint64_t v;
    int64_t t0 = 0;
    for (unsigned i = 0;; i++) {
        if ((v = atomic_load_explicit(&e->seq, memory_order_acquire)) != seen ||
            (job && nn__prefetch_open(job))) {
            *budget = *budget < SPIN_NS / 2 ? 2 * *budget : SPIN_NS;
            return v;
        }
        nn__cpu_relax();
        if (i % 64 == 63) { /* every few microseconds of spinning */
            int64_t t = nn__now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > *budget) break;
        }
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&e->sleepers, 1);
    while ((v = atomic_load(&e->seq)) == seen && !(job && nn__prefetch_open(job)))
        pthread_cond_wait(&e->cv, &p->mu);
    atomic_fetch_sub(&e->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    int64_t waited = nn__now_ns() - t0; /* t0 is set: the spin ended by the clock */
    if (waited < SPIN_NS) *budget = 2 * waited < SPIN_NS ? 2 * waited : SPIN_NS;
    else if (waited > LONG_WAIT_NS) *budget = *budget / 4 > SPIN_MIN_NS ? *budget / 4 : SPIN_MIN_NS;
    if (*budget < SPIN_MIN_NS) *budget = SPIN_MIN_NS;
    return v;
}

/* Part t of phase number g, for the thread whose compare-and-swap moves
 * shard t's taken to g first: a worker woken for it, or the calling thread
 * once its own part is done (nn__pool_run_phase).  taken only grows, so a
 * worker that read g and then slept while the phase ended (its part run
 * by the caller, or a later phase begun) cannot take it. */
static bool take_part(struct pool *p, int t, uint64_t g)
{
    uint64_t c = atomic_load(&p->sh[t].taken);
    return c < g && atomic_compare_exchange_strong(&p->sh[t].taken, &c, g);
}

static void run_part(struct pool *p, int t)
{
    if (p->phase == 1) shard_run(p, &p->sh[t]);
    else if (p->phase == 2) reduce_slice(p, t);
    else p->task(p->task_ctx, t, p->n);
}

/* Tests only (nn__pool_testing_late): 1, workers take no part; 2, each
 * waits 0-80 us before it tries, the time chosen from its index and the
 * phase's number; 3, the calling thread takes none of theirs. */
static _Atomic int testing_late;

void nn__pool_testing_late(int mode) { atomic_store(&testing_late, mode); }

static bool late_for_testing(int t, uint64_t g)
{
    int mode = atomic_load_explicit(&testing_late, memory_order_relaxed);
    if (mode == 1) return true;
    if (mode == 2) {
        struct timespec ts = {0, (long)((g * 2654435761u + (uint64_t)t) % 5) * 20000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void *worker(void *arg)
{
    shard *s = arg;
    struct pool *p = s->pool;
    ad_set_num_threads(1);
    uint64_t seen = 0;
    for (;;) {
        uint64_t v = await_event(p, &p->go, seen, &s->spin, p->pf);
        if (v == seen) { /* no phase yet: a row of the next batch */
            nn__prefetch_row(p->pf);
            continue;
        }
        seen = v;
        if (atomic_load(&p->quit)) break;
        /* the phase running now, however many this thread slept through */
        uint64_t g = atomic_load(&p->gen);
        if (late_for_testing(s->idx, g) || !take_part(p, s->idx, g)) continue;
        run_part(p, s->idx);
        if (atomic_fetch_sub(&p->pending, 1) == 1) raise_event(p, &p->done);
    }
    return NULL;
}

void nn__pool_free(struct pool *p)
{
    if (!p) return;
    atomic_store(&p->quit, true);
    raise_event(p, &p->go);
    for (int t = 0; t < p->started; t++) pthread_join(p->th[t], NULL);
    nn__rec_free(&p->alt);
    nn__prefetch_free(p->pf);
    nn__ops_runs_free(p->runs);
    for (int t = 0; p->sh && t < p->n; t++) { /* p->sh NULL: its allocation failed */
        for (int i = 0; i < NN_TRAINER_MAX_SHAPES; i++) nn__rec_free(&p->sh[t].recs[i]);
        ad_tensor_free(p->sh[t].weight);
        ad_free(p->sh[t].grads);
        ad_free((void *)p->sh[t].base);
        ad_free(p->sh[t].strides);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go.cv);
    pthread_cond_destroy(&p->done.cv);
    ad_free(p->sh);
    ad_free(p->pg);
    ad_free(p->params);
    ad_free(p->slot);
    ad_free(p->extra);
    ad_free(p->opt_p);
    ad_free(p->opt_rg);
    ad_free(p->th);
    ad_free(p);
}

struct pool *nn__pool_new(nn_trainer *tr, int n)
{
    const char *fn = "nn_trainer_step";
    struct pool *p = ad_calloc(1, sizeof *p);
    if (!p) {
        nn__err(fn, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go.cv, NULL);
    pthread_cond_init(&p->done.cv, NULL);
    atomic_init(&p->go.seq, 0);
    atomic_init(&p->go.sleepers, 0);
    atomic_init(&p->done.seq, 0);
    atomic_init(&p->done.sleepers, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->gen, 0);
    atomic_init(&p->quit, false);
    p->n = n;
    p->sh = ad_calloc((size_t)n, sizeof *p->sh);
    p->th = ad_calloc((size_t)n, sizeof *p->th);
    p->pf = nn__prefetch_new();
    p->tune = (ops_tune){.skip = 2};
    if (!p->sh || !p->th || !p->pf) goto oom;
    /* The shards differentiate the optimiser's parameters that require
     * grad: the model's would miss one the optimiser holds outside the
     * model.  (A leaf on the loss's path outside the optimiser makes the
     * split refuse the model: nn__trainer_step_split.)  Which ones those
     * are is kept, for nn__pool_params_stale. */
    int nopt = p->nopt = nn__optim_count(tr->opt);
    size_t np = (size_t)nopt + 1;
    p->params = ad_calloc(np, sizeof *p->params);
    p->pg = ad_calloc(np, sizeof *p->pg);
    p->slot = ad_calloc(np, sizeof *p->slot);
    p->extra = ad_calloc(np, sizeof *p->extra);
    p->opt_p = ad_calloc(np, sizeof *p->opt_p);
    p->opt_rg = ad_calloc(np, sizeof *p->opt_rg);
    if (!p->params || !p->pg || !p->slot || !p->extra || !p->opt_p || !p->opt_rg) goto oom;
    for (int k = 0; k < nopt; k++) {
        ad_tensor *w = p->opt_p[k] = nn__optim_param(tr->opt, k);
        if ((p->opt_rg[k] = ad_requires_grad(w))) {
            p->slot[p->nparams] = k;
            p->params[p->nparams++] = w;
        } else {
            p->extra[p->nextra++] = k;
        }
    }
    for (int t = 0; t < n; t++) {
        p->sh[t].pool = p;
        p->sh[t].idx = t;
        p->sh[t].spin = SPIN_NS;
        atomic_init(&p->sh[t].taken, 0);
        if ((!(p->sh[t].grads = ad_calloc(np, sizeof(ad_tensor *))) ||
                      !(p->sh[t].base = ad_calloc(np, sizeof(void *))) ||
                      !(p->sh[t].strides = ad_calloc(np, sizeof *p->sh[t].strides))))
            goto oom;
    }
    for (; p->started < n - 1; p->started++)
        if (pthread_create(&p->th[p->started], NULL, worker, &p->sh[p->started + 1])) {
            nn__err(fn, "cannot start thread %d of %d", p->started + 2, n);
            goto fail;
        }
    return p;
oom:
    nn__err(fn, "out of memory");
fail:
    nn__pool_free(p);
    return NULL;
}

bool nn__pool_params_stale(const struct pool *p, nn_optim *opt)
{
    if (nn__optim_count(opt) != p->nopt) return true;
    for (int k = 0; k < p->nopt; k++)
        if (nn__optim_param(opt, k) != p->opt_p[k] || ad_requires_grad(p->opt_p[k]) != p->opt_rg[k])
            return true;
    return false;
}

/* Sets s->r to shard s's recording for its rows of the batch (x, y),
 * recorded on this thread when its shape is new.  1 when every slot holds
 * another shape (the caller steps on one thread), -1 when the recording
 * failed. */
static int shard_rec(nn_trainer *tr, shard *s, const ad_tensor *x, const ad_tensor *y)
{
    rec want = {.xdt = ad_tensor_dtype(x), .ydt = ad_tensor_dtype(y), .xnd = ad_ndim(x),
                .ynd = ad_ndim(y)};
    memcpy(want.xshape, ad_shape(x), (size_t)want.xnd * sizeof(int64_t));
    memcpy(want.yshape, ad_shape(y), (size_t)want.ynd * sizeof(int64_t));
    want.xshape[0] = want.yshape[0] = s->rows;
    for (int i = 0; i < NN_TRAINER_MAX_SHAPES; i++) {
        rec *r = &s->recs[i];
        if (!r->tape) {
            *r = want;
            s->r = r;
            return nn__trainer_record(tr, r, true);
        }
        if (r->xdt == want.xdt && r->ydt == want.ydt && r->xnd == want.xnd &&
            r->ynd == want.ynd &&
            !memcmp(r->xshape, want.xshape, (size_t)want.xnd * sizeof(int64_t)) &&
            !memcmp(r->yshape, want.yshape, (size_t)want.ynd * sizeof(int64_t))) {
            s->r = r;
            if (!nn__rec_stale(r)) return 0;
            nn__rec_free(r); /* a layer frozen or unfrozen since: again */
            *r = want;
            return nn__trainer_record(tr, r, true);
        }
    }
    return 1;
}

/* Rows [lo, hi) (of the first dimension) of gradient G += shard sh's
 * gradient i, read through its strides; T is float or double.  A weight's
 * gradient is often a transposed view (of the product that computed it):
 * that case reads 16 consecutive elements of a column at a time, a cache
 * line of the view's storage, for 16 rows of G (measured faster than
 * tiles of 16 x 64 read along G's rows). */
#define DEFINE_ADD_ROWS(NAME, T)                                                         \
    static void NAME(const pgrad *G, const shard *sh, int i, int64_t lo, int64_t hi)     \
    {                                                                                    \
        T *d = G->d;                                                                     \
        const T *src = sh->base[i];                                                      \
        const int64_t *st = sh->strides[i];                                              \
        int64_t C = G->inner;                                                            \
        if (G->nd == 0) {                                                                \
            d[0] += src[0];                                                              \
        } else if (G->nd <= 2 && (G->nd == 1 || st[1] == 1)) { /* rows contiguous */    \
            int64_t s0 = st[0];                                                          \
            for (int64_t r = lo; r < hi; r++) {                                          \
                T *dr = d + r * C;                                                       \
                const T *sr = src + r * s0;                                              \
                for (int64_t j = 0; j < C; j++) dr[j] += sr[j];                          \
            }                                                                            \
        } else if (G->nd == 2 && st[0] == 1) { /* a transpose */                        \
            int64_t s1 = st[1];                                                          \
            for (int64_t rb = lo; rb < hi; rb += 16) {                                   \
                int64_t rn = hi - rb < 16 ? hi - rb : 16;                                \
                for (int64_t j = 0; j < C; j++) {                                        \
                    const T *col = src + j * s1 + rb;                                    \
                    T *dj = d + rb * C + j;                                              \
                    for (int64_t r = 0; r < rn; r++) dj[r * C] += col[r];               \
                }                                                                        \
            }                                                                            \
        } else {                                                                         \
            for (int64_t r = lo; r < hi; r++) {                                          \
                int64_t idx[AD_MAX_DIMS] = {0}, off = r * st[0];                         \
                T *dr = d + r * C;                                                       \
                for (int64_t k = 0; k < C; k++) {                                        \
                    dr[k] += src[off];                                                   \
                    for (int a = G->nd - 1; a >= 1; a--) {                               \
                        off += st[a];                                                    \
                        if (++idx[a] < G->shape[a]) break;                               \
                        off -= st[a] * G->shape[a];                                      \
                        idx[a] = 0;                                                      \
                    }                                                                    \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }
DEFINE_ADD_ROWS(add_rows_f32, float)
DEFINE_ADD_ROWS(add_rows_f64, double)

/* Thread t's share of phase 2: rows [R t / n, R (t + 1) / n) of every
 * parameter's gradient, which holds the last shard's, plus the others' in
 * shard order, and the optimiser's update of the same rows of the
 * parameter.  Both go a block of rows at a time, some ten thousand
 * elements, so the update reads the sums while they are in cache (the
 * MLP's first weight is 800 KB).  Each element is the same sum in the same
 * order, and the same update, whichever thread computes it and whatever
 * the blocks. */
static void reduce_slice(struct pool *p, int t)
{
    for (int i = 0; i < p->nparams; i++) {
        const pgrad *G = &p->pg[i];
        if (!G->d) continue;
        int64_t lo = G->rows * t / p->n, hi = G->rows * (t + 1) / p->n;
        /* whole 16-row blocks: the transposed case reads 16 of a column */
        int64_t block = G->inner > 0 ? 8192 / G->inner / 16 * 16 : 0;
        if (block < 16) block = 16;
        for (int64_t r0 = lo; r0 < hi; r0 += block) {
            int64_t r1 = hi - r0 < block ? hi : r0 + block;
            for (int u = 0; u < p->n - 1; u++) {
                if (G->dt == AD_FLOAT32) add_rows_f32(G, &p->sh[u], i, r0, r1);
                else add_rows_f64(G, &p->sh[u], i, r0, r1);
            }
            if (p->slot[i] >= 0) nn__optim_step_rows(p->opt, p->slot[i], r0, r1);
        }
    }
    /* The optimiser's parameters that do not require grad (a gradient
     * they still hold was zeroed, as on one thread): nn_optim_step updates
     * them too, which decay or momentum can move. */
    for (int e = 0; e < p->nextra; e++) {
        int k = p->extra[e];
        int64_t rows = nn__optim_rows(p->opt, k);
        nn__optim_step_rows(p->opt, k, rows * t / p->n, rows * (t + 1) / p->n);
    }
}

/* Runs phase (1, 2 or 3) on every thread, part 0 on this one.  Part t is
 * worker t's when it takes it in time (take_part); a part that its worker
 * has not begun when this thread's own is done runs here instead.  A
 * worker that waits for a core (on a machine busy with other work, its
 * time slice can be milliseconds away) then costs the step its share of
 * the work, not the wait: with one of two cores busy, a two-thread MLP
 * step that waited for its worker ran at 0.38x one thread.  Each part is
 * the same work wherever it runs (the same shard, rows or strips), so the
 * bits do not change.  The phase ends when pending, the parts 1..n-1 not
 * yet done, reaches 0: done's seq is only a wake-up (a late worker's
 * raise from an earlier phase may bump it), so pending is looked at again
 * after every wake. */
void nn__pool_run_phase(struct pool *p, int phase)
{
    p->phase = phase;
    atomic_store(&p->pending, p->n - 1);
    /* phase, task and pending written before the number that opens the
     * phase (sequentially consistent: a worker that reads it sees them) */
    uint64_t g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1;
    atomic_store(&p->gen, g);
    uint64_t seen = atomic_load(&p->done.seq);
    raise_event(p, &p->go);
    run_part(p, 0);
    int here = 0;
    bool wait_all = atomic_load_explicit(&testing_late, memory_order_relaxed) == 3;
    for (int t = 1; t < p->n && !wait_all; t++)
        if (take_part(p, t, g)) {
            run_part(p, t);
            here++;
        }
    if (here && atomic_fetch_sub(&p->pending, here) == here) return;
    while (atomic_load(&p->pending) != 0)
        seen = await_event(p, &p->done, seen, &p->sh[0].spin, NULL);
}

int nn__trainer_step_split(nn_trainer *tr, const char *fn, ad_tensor *x, ad_tensor *y,
                           double *loss, int64_t *correct)
{
    int T = tr->threads;
    int64_t N = ad_size(x, 0);
    if (N < T || !ad_is_contiguous(x) || !ad_is_contiguous(y)) return 2;
    /* (a batch nn_fit converted into a recording's leaves is not in x:
     * only the products split does that, and the step on the whole batch
     * replays that recording) */
    if (tr->pre_r && tr->pre_x == x) return 2;
    if (tr->pool && nn__pool_params_stale(tr->pool, tr->opt)) {
        /* a parameter frozen, unfrozen or added since: threads anew */
        nn__trainer_prefetch_stop(tr, NULL);
        if (tr->pre_r == &tr->pool->alt) tr->pre_r = NULL, tr->pre_x = NULL;
        nn__pool_free(tr->pool);
        tr->pool = NULL;
    }
    if (!tr->pool && !(tr->pool = nn__pool_new(tr, T))) return -1;
    nn__trainer_prefetch_stop(tr, NULL);
    if (tr->drop_whole) { /* nn__trainer_choose_mode */
        for (int i = 0; i < NN_TRAINER_MAX_SHAPES; i++) nn__rec_free(&tr->train[i]);
        tr->out = tr->y = NULL;
        tr->drop_whole = false;
    }
    struct pool *p = tr->pool;
    for (int t = 0; t < T; t++) {
        shard *s = &p->sh[t];
        s->row0 = N * t / T;
        s->rows = N * (t + 1) / T - s->row0;
        int got = shard_rec(tr, s, x, y);
        if (got) return got < 0 ? -1 : 2;
        /* A leaf outside the optimiser that requires grad (its gradient
         * adds up across steps, nn__trainer_may_set_grads) would get only
         * the last shard's part: the others compute the parameters' alone.
         * Such a model takes the step on the whole batch. */
        if (!s->r->set_grads) return 2;
        ad_dtype ldt = ad_tensor_dtype(s->r->loss);
        if (s->weight && ad_tensor_dtype(s->weight) != ldt) {
            ad_tensor_free(s->weight);
            s->weight = NULL;
        }
        if (!s->weight && !(s->weight = ad_scalar_tensor(NULL, ldt, 0))) return -1;
        nn__st(ad_data(s->weight), ldt, 0, (double)s->rows / (double)N);
    }
    p->anomaly = ad_anomaly_mode();
    p->xd = ad_data(x);
    p->yd = ad_data(y);
    p->xrow = (size_t)(ad_numel(x) / N) * ad_dtype_size(ad_tensor_dtype(x));
    p->yrow = (size_t)(ad_numel(y) / N) * ad_dtype_size(ad_tensor_dtype(y));
    if (!p->xd || !p->yd) return -1;
    /* The last shard, on a worker, writes its gradient into the
     * parameters' buffers (AD_SET_GRAD: a matrix product's gradient goes
     * straight in, at beta 0, with no buffer of its own that would be
     * read again to be copied) and zeroes those of the optimiser's
     * parameters its pass did not write, the model's unreached ones and
     * any outside the model, as a one-thread step does.  The other shards
     * are added in phase 2. */
    p->opt = tr->opt;

    int prev = ad_set_num_threads(1);
    nn__pool_run_phase(p, 1);
    double v = 0;
    bool finite = true;
    int failed = -1;
    for (int t = 0; t < T; t++) {
        shard *s = &p->sh[t];
        if (s->rc && failed < 0) failed = t;
        finite = finite && isfinite(s->loss);
        v += (double)s->rows / (double)N * s->loss;
    }
    int rc = failed >= 0 ? -1 : !finite || !isfinite(v) ? 1 : 0;
    for (int i = 0; rc == 0 && i < p->nparams; i++) {
        ad_tensor *g = ad_tensor_grad(p->params[i]);
        pgrad *G = &p->pg[i];
        *G = (pgrad){0};
        if (!g) continue; /* the loss does not reach it: every shard's is 0 */
        G->dt = ad_tensor_dtype(g);
        G->nd = ad_ndim(g);
        G->shape = ad_shape(g);
        G->rows = G->nd ? G->shape[0] : 1;
        G->inner = G->rows ? ad_numel(g) / G->rows : 0;
        if (!nn__is_float(G->dt) || !(G->d = ad_data(g))) rc = -1;
    }
    /* Phase 2: each thread sums its rows of every gradient and updates the
     * same rows of every parameter.  The optimiser's checks come first: a
     * step it refuses leaves the parameters as they were. */
    /* The accuracy is counted before the update: a count that fails
     * leaves the parameters as they were. */
    int64_t right = 0;
    for (int t = 0; rc == 0 && tr->o.accuracy && t < T; t++)
        if (nn__count_correct(fn, p->sh[t].r->out, p->sh[t].r->y, &right)) rc = -1;
    if (rc == 0 && nn__optim_step_begin(tr->opt)) rc = -1;
    if (rc == 0) nn__pool_run_phase(p, 2);
    ad_set_num_threads(prev);
    /* positions in the message are the shard's: say where it lies */
    if (failed >= 0) {
        const shard *f = &p->sh[failed];
        return ad_set_error_code(f->code, "%s (in the step's shard of rows %" PRId64 "..%" PRId64
                                 " of the batch: positions are within the shard)",
                                 f->err, f->row0, f->row0 + f->rows - 1);
    }
    *loss = v;
    if (rc) return rc;
    for (int i = 0; i < p->nparams; i++)
        if (p->pg[i].d && ad_mark_modified(ad_tensor_grad(p->params[i]))) return -1;
    nn__optim_step_end(tr->opt);
    *correct += right;
    tr->out = p->sh[0].r->out;
    tr->y = p->sh[0].r->y;
    tr->steps++;
    tr->replays++;
    return 0;
}

int nn__pool_stats(const struct pool *p, nn_trainer_stats *st)
{
    if (!p) return 0;
    for (int t = 0; t < p->n; t++)
        for (int i = 0; i < NN_TRAINER_MAX_SHAPES; i++)
            if (nn__rec_add_stats(&p->sh[t].recs[i], st)) return -1;
    return nn__rec_add_stats(&p->alt, st); /* nn_fit's second recording */
}

int nn_trainer_set_threads(nn_trainer *tr, int threads)
{
    const char *fn = "nn_trainer_set_threads";
    if (!tr) return nn__null_arg(fn, "tr");
    if (threads < 0 || threads > MAX_SPLIT)
        return nn__err(fn, "threads must be in 0..%d, got %d", MAX_SPLIT, threads);
    if (threads != tr->threads) {
        nn__pool_free(tr->pool);
        tr->pool = NULL;
        tr->threads = threads;
        tr->chosen = 0;
        tr->drop_whole = false;
    }
    return 0;
}

int nn__trainer_mode(const nn_trainer *tr)
{
    return tr->thread_mode != NN_THREADS_AUTO ? tr->thread_mode : tr->chosen;
}

/* NN_THREADS_AUTO's rule.  The batch split pays per step, per thread,
 * about two passes over the parameters' bytes that the one-thread step
 * does not (the sum of the threads' gradients, read across cores, and the
 * packing of each weight for each thread's products), and gains a split
 * of everything else; splitting the products pays nothing the size of
 * the parameters, but leaves the small ops on one thread, whose cost goes
 * with the activations.  So the ratio of the two sizes decides: the
 * parameters' bytes against the bytes the first step's recording holds
 * after it (the batch, the activations and what backward keeps; not the
 * products' scratch, whose size depends on the thread count).
 * Fashion-MNIST at batch 64: the 784-256-10 MLP has 0.81 MB of parameters
 * against a 0.34 MB tape (products split; docs/training.md has the
 * figures), the CNN 2.4 MB against 30 MB (batch split). */
void nn__trainer_choose_mode(nn_trainer *tr)
{
    size_t tape = 0, pbytes = 0;
    for (int i = 0; i < NN_TRAINER_MAX_SHAPES; i++) {
        ad_tape_stats ts;
        if (tr->train[i].tape && !ad_tape_get_stats(tr->train[i].tape, &ts) &&
            ts.arena_used > tape)
            tape = ts.arena_used;
    }
    nn_named_tensors *all = nn_parameters(tr->model);
    for (int i = 0; all && i < all->n; i++)
        if (ad_requires_grad(all->tensors[i]))
            pbytes += (size_t)ad_numel(all->tensors[i]) *
                      ad_dtype_size(ad_tensor_dtype(all->tensors[i]));
    nn_named_tensors_free(all);
    tr->chosen = 2 * pbytes >= tape ? NN_THREADS_OPS : NN_THREADS_BATCH;
    /* A batch split replays recordings of its own: the one-thread
     * recording of the first step goes (at the next step: the output of
     * this one lives on it). */
    tr->drop_whole = tr->chosen == NN_THREADS_BATCH && tr->thread_mode == NN_THREADS_AUTO;
}

int nn_trainer_set_thread_mode(nn_trainer *tr, nn_thread_mode mode)
{
    const char *fn = "nn_trainer_set_thread_mode";
    if (!tr) return nn__null_arg(fn, "tr");
    if (mode != NN_THREADS_AUTO && mode != NN_THREADS_BATCH && mode != NN_THREADS_OPS)
        return nn__err(fn, "mode must be NN_THREADS_AUTO, NN_THREADS_BATCH or NN_THREADS_OPS, "
                           "got %d", (int)mode);
    nn__trainer_prefetch_stop(tr, NULL);
    tr->thread_mode = mode;
    tr->chosen = 0;
    tr->drop_whole = false;
    return 0;
}

int nn_trainer_get_thread_mode(const nn_trainer *tr)
{
    if (!tr) return nn__null_arg("nn_trainer_get_thread_mode", "tr");
    return nn__trainer_mode(tr);
}

int nn_trainer_get_threads(const nn_trainer *tr)
{
    if (!tr) return nn__null_arg("nn_trainer_get_threads", "tr");
    return tr->threads > 1 ? tr->threads : 1;
}

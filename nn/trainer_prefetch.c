/* nn/trainer_prefetch.c - the next batch converted by the trainer's idle
 * threads while the calling thread finishes this step (nn_fit with
 * NN_THREADS_OPS).
 *
 * With the products split, a step's products and update run on all the
 * threads, and everything else on the calling thread alone: among it the
 * conversion of the next batch's bytes into floats, a third of the
 * calling thread's own time in the MLP's step (docs/benchmarks.md).  The
 * other threads wait meanwhile.  So when nn_fit hands out batch s, the
 * batch that the loader will hand out next is posted as a job, and the
 * waiting threads convert its rows, one at a time between the parts of
 * step s they are woken for, into the leaves of a second recording of the
 * same model (the first one's are in use by step s).  Step s + 1 replays
 * that recording; the one after converts into the first again, and so on.
 * It is PyTorch's DataLoader prefetching, within the step's idle time.
 *
 * What the user sees does not change:
 *   - the loader's position moves only when a batch is handed out; the job
 *     is a peek (nn__loader_peek), and its batch is used only if the batch
 *     handed out next has the same samples (a callback that moves the
 *     loader, or the end of an epoch, makes the job's rows wasted work);
 *   - each row is converted as nn_loader_next converts it, so the bits are
 *     the same as without the job, on any thread count;
 *   - the job holds a copy of its sample indices, so a loader that starts
 *     another epoch (rewriting its order) does not change a job under way.
 *
 * A job's rows are claimed with an atomic counter, so any number of
 * threads share it, and the calling thread, when it needs the batch,
 * closes the job and converts the rows nobody claimed yet, then waits for
 * the rows under way.  The counter's value past CLOSED says a job is
 * closed; a claim that gets such a value, or one past the job's rows, is
 * not a claim.  The fields of a job are written before the store that
 * opens it (release) and read after a claim (acquire), and a job is not
 * changed again until the calling thread has seen every claimed row done. */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "nn_private.h"
#include "trainer_impl.h"
#include "trainer_pool.h"

#define CLOSED (INT64_MAX / 2)

struct nn__prefetch {
    _Atomic int64_t next; /* the next row to claim; >= CLOSED: closed */
    char apart[64];       /* claims and completions on lines of their own */
    _Atomic int64_t done; /* rows converted */
    _Atomic int64_t rows;              /* the job's rows */
    nn__batch bt;                      /* the job's batch, bt.idx = idx */
    int64_t *idx, cap;                 /* its sample indices (a copy) */
    void *xd, *yd;                     /* the leaves' data it is converted into */
    rec *r;                            /* the recording of those leaves */
};

nn__prefetch *nn__prefetch_new(void)
{
    nn__prefetch *f = ad_calloc(1, sizeof *f);
    if (!f) return NULL;
    atomic_init(&f->next, CLOSED);
    atomic_init(&f->done, 0);
    atomic_init(&f->rows, 0);
    return f;
}

void nn__prefetch_free(nn__prefetch *f)
{
    if (!f) return;
    ad_free(f->idx);
    ad_free(f);
}

/* Sequentially consistent loads (plain loads on x86), and the store that
 * opens a job too: a worker that counts itself among the sleepers and
 * then finds no job, and a post that opens one and then finds no sleeper,
 * cannot both happen (as with the pool's events). */
bool nn__prefetch_open(nn__prefetch *f)
{
    return atomic_load(&f->next) < atomic_load(&f->rows);
}

/* Tests only: while set, the threads claim no row, so the calling
 * thread finishes every job itself (or drops it). */
static _Atomic bool held;

void nn__prefetch_testing_hold(bool hold) { atomic_store(&held, hold); }

bool nn__prefetch_row(nn__prefetch *f)
{
    if (!nn__prefetch_open(f) || atomic_load_explicit(&held, memory_order_relaxed)) return false;
    int64_t i = atomic_fetch_add_explicit(&f->next, 1, memory_order_acq_rel);
    if (i >= atomic_load_explicit(&f->rows, memory_order_relaxed)) return false;
    nn__loader_prefetch_ahead(&f->bt, i);
    nn__loader_fill_rows(&f->bt, i, i + 1, f->xd, f->yd);
    atomic_fetch_add_explicit(&f->done, 1, memory_order_release);
    return true;
}

rec *nn__prefetch_take(nn__prefetch *f, const nn__batch *bt)
{
    int64_t rows = atomic_load_explicit(&f->rows, memory_order_relaxed);
    if (!rows) return NULL;
    int64_t from = atomic_exchange_explicit(&f->next, CLOSED, memory_order_acq_rel);
    if (from > rows) from = rows;
    bool same = bt && bt->l == f->bt.l && bt->k == f->bt.k && bt->b == rows &&
                memcmp(bt->idx, f->idx, (size_t)rows * sizeof *f->idx) == 0;
    if (same && from < rows) nn__loader_fill_rows(&f->bt, from, rows, f->xd, f->yd);
    /* the rows claimed before the close, each finished by its thread */
    while (atomic_load_explicit(&f->done, memory_order_acquire) < from) nn__cpu_relax();
    atomic_store_explicit(&f->rows, 0, memory_order_relaxed);
    return same ? f->r : NULL;
}

int nn__prefetch_post(nn__prefetch *f, const nn__batch *next, rec *target)
{
    void *xd = ad_data(target->x), *yd = ad_data(target->y);
    if (!xd || !yd) return -1;
    if (next->b > f->cap) {
        int64_t *idx = ad_realloc(f->idx, (size_t)next->b * sizeof *idx);
        if (!idx) return -1;
        f->idx = idx;
        f->cap = next->b;
    }
    memcpy(f->idx, next->idx, (size_t)next->b * sizeof *f->idx);
    f->bt = *next;
    f->bt.idx = f->idx;
    f->xd = xd;
    f->yd = yd;
    f->r = target;
    atomic_store_explicit(&f->done, 0, memory_order_relaxed);
    atomic_store_explicit(&f->rows, next->b, memory_order_relaxed);
    atomic_store(&f->next, 0);
    return 0;
}

rec *nn__prefetch_target(const nn__prefetch *f)
{
    return atomic_load_explicit(&f->rows, memory_order_relaxed) ? f->r : NULL;
}

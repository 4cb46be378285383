/* nn/dist_shm.c - the gradient reduction over shared memory of nn/dist.h
 * (nn_dist_options.shared_memory), for ranks that all run on one machine.
 *
 * Why.  Open MPI's MPI_Allreduce of the MLP's 814 KB between two ranks of
 * one machine takes about 0.10-0.15 ms, 12-18 % of a step: over shared
 * memory (vader) it copies the bytes into a FIFO, out of it, and reduces
 * them in rounds.  But ranks on one machine can read each other's memory,
 * which MPI-3 gives them directly: MPI_Win_allocate_shared makes one
 * segment per rank that every rank of the node can load from and store to.
 *
 * How.  At attach, each rank's buckets move into its segment of such a
 * window (the gradients stay views of them, as before: backward writes
 * straight into shared memory).  A step's reduction is then
 *
 *     barrier                      every rank's gradients are final
 *     for the elements j of my part (1/W of each bucket, cut on cache lines):
 *         s = g_0[j] + g_1[j] + ... + g_{W-1}[j]      (always in rank order)
 *         g_q[j] = s for every rank q
 *     barrier                      every part is written everywhere
 *
 * a reduce-scatter and an all-gather in one pass, each byte read once
 * and written once per rank, with no copy through a FIFO.  Each element's
 * sum is computed by one rank, in rank order, so every rank receives the
 * same bits, and two runs at the same world size give the same bits (as
 * MPI's reduction does for a fixed algorithm).  The barriers are
 * MPI_Barrier (or, with the sleeping wait, MPI_Ibarrier polled by
 * nn__dist_wait_for), with MPI_Win_sync around them: the memory barriers
 * MPI's unified window model asks for between a store by one process and
 * a load by another.
 *
 * When.  Only when every rank of the communicator shares one node
 * (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) gives the whole
 * communicator), neither overlap (whose reductions start during backward)
 * nor the sharded update is on, and the window can be had; otherwise the
 * buckets stay on the heap and MPI_Allreduce reduces them.  Across nodes
 * MPI's own allreduce is the one to use: a hierarchical scheme (this
 * pass within each node, MPI between the nodes) is not done here. */
#include "dist_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Parts start on cache lines, so no line is written by two ranks. */
enum { LINE = 64 };

/* The window's segments are laid out alike on every rank: bucket k at
 * byte b->shm_off of each. */
static size_t segment_layout(nn_dist *d)
{
    size_t off = 0;
    for (int k = 0; k < d->nb; k++) {
        bucket *b = &d->b[k];
        b->shm_off = off;
        size_t bytes = (size_t)b->count * ad_dtype_size(b->dtype);
        off += (bytes + LINE - 1) / LINE * LINE;
    }
    return off ? off : LINE;
}

/* Every rank on one node: the communicator's shared-memory split is the
 * whole of it (the same answer on every rank). */
static int one_node(nn_dist *d, bool *yes)
{
    MPI_Comm node = MPI_COMM_NULL;
    int n = 0;
    *yes = false;
    if (nn__dist_mpi_ok(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
                        "MPI_Comm_split_type") ||
        nn__dist_mpi_ok(MPI_Comm_size(node, &n), "MPI_Comm_size")) {
        if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
        return -1;
    }
    MPI_Comm_free(&node);
    *yes = n == d->size;
    return 0;
}

void nn__dist_shm_free(nn_dist *d)
{
    if (d->win == MPI_WIN_NULL) return;
    if (d->shm_locked) MPI_Win_unlock_all(d->win);
    MPI_Win_free(&d->win); /* collective, as nn_dist_detach and _finalize are */
    ad_free(d->seg);
    d->seg = NULL;
    d->shm = d->shm_locked = false;
}

/* Gives each parameter a private copy of its gradient (the window's memory
 * goes with nn__dist_shm_free), for a model that lives on after detach. */
int nn__dist_shm_unshare_grads(nn_dist *d)
{
    if (!d->shm) return 0;
    int rc = 0;
    for (int e = 0; e < d->params->n; e++) {
        ad_tensor *p = nn__dist_entry(d, e), *g = ad_tensor_grad(p);
        if (!g) continue;
        ad_tape *was = ad_tape_activate(NULL);
        bool grad_was = ad_set_grad_enabled(false);
        ad_tensor *own = ad_copy(NULL, g);
        ad_set_grad_enabled(grad_was);
        ad_tape_activate(was);
        if (!own || ad_set_grad(p, own)) {
            ad_tensor_free(own);
            rc = -1;
        }
    }
    return rc;
}

/* Moves the buckets (and the gradients, views of them) into a window of
 * shared memory when nn_dist_options.shared_memory and the run allow
 * (the file's comment says when); leaves them on the heap otherwise.
 * Collective; called when every rank has attached without error.  -1 only
 * for an MPI failure; a window that cannot be had is not an error. */
int nn__dist_shm_setup(nn_dist *d, const char *fn)
{
    d->shm = false;
    if (d->o.shared_memory < 0 || d->size < 2 || d->o.overlap || d->shard) return 0;
    bool together;
    if (one_node(d, &together)) return -1;
    if (!together) return 0;

    size_t bytes = segment_layout(d);
    MPI_Info info = MPI_INFO_NULL;
    void *base = NULL;
    /* each rank's segment on pages of its own (first touched by that rank,
     * so on its NUMA node) */
    if (MPI_Info_create(&info) == MPI_SUCCESS) MPI_Info_set(info, "alloc_shared_noncontig", "true");
    int rc = MPI_Win_allocate_shared((MPI_Aint)bytes, 1, info, d->comm, &base, &d->win);
    if (info != MPI_INFO_NULL) MPI_Info_free(&info);
    int ok = rc == MPI_SUCCESS, all = 0;
    if (!ok) d->win = MPI_WIN_NULL;
    if (nn__dist_mpi_ok(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, d->comm), "MPI_Allreduce")) {
        all = 0;
        rc = -1;
    } else {
        rc = 0;
    }
    if (!all) {
        if (d->win != MPI_WIN_NULL) MPI_Win_free(&d->win);
        d->win = MPI_WIN_NULL;
        return rc;
    }
    /* a window's errors go to its own handler, fatal by default */
    MPI_Win_set_errhandler(d->win, MPI_ERRORS_RETURN);
    d->seg = ad_calloc((size_t)d->size, sizeof *d->seg);
    ok = d->seg != NULL;
    for (int q = 0; ok && q < d->size; q++) {
        MPI_Aint size;
        int unit;
        void *p = NULL;
        ok = MPI_Win_shared_query(d->win, q, &size, &unit, &p) == MPI_SUCCESS && p;
        d->seg[q] = p;
    }
    if (ok) ok = d->shm_locked = MPI_Win_lock_all(MPI_MODE_NOCHECK, d->win) == MPI_SUCCESS;
    /* the buckets' new memory, the gradients' values copied over */
    ad_tensor **flat = ad_calloc((size_t)d->nb + 1, sizeof *flat);
    ok = ok && flat;
    for (int k = 0; ok && k < d->nb; k++) {
        bucket *b = &d->b[k];
        flat[k] = ad_from_blob(b->dtype, 1, &b->count, (char *)base + b->shm_off, NULL, NULL);
        ok = flat[k] && ad_copy_into(flat[k], b->flat) == 0;
    }
    if (nn__dist_mpi_ok(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, d->comm), "MPI_Allreduce"))
        all = 0, rc = -1;
    if (!all) { /* somewhere out of memory: every rank stays on the heap */
        for (int k = 0; flat && k < d->nb; k++) ad_tensor_free(flat[k]);
        ad_free(flat);
        nn__dist_shm_free(d);
        return rc;
    }
    /* each gradient becomes a view of the new bucket, its values kept */
    for (int k = 0; k < d->nb; k++) {
        bucket *b = &d->b[k];
        ad_tensor_free(b->flat);
        b->flat = flat[k];
        b->data = ad_data(b->flat);
    }
    ad_free(flat);
    for (int e = 0; e < d->params->n; e++)
        if (nn__dist_grad_into_bucket(d, e, fn)) rc = -1;
    d->shm = true;
    return 0;
}

/* The two barriers of a step, with the memory barriers around them; the
 * seconds go to *t. */
static int meet(nn_dist *d, double *t)
{
    MPI_Win_sync(d->win);
    int rc;
    if (d->o.wait_sleep_us > 0) {
        MPI_Request req = MPI_REQUEST_NULL;
        rc = nn__dist_mpi_ok(MPI_Ibarrier(d->comm, &req), "MPI_Ibarrier");
        if (rc == 0) rc = nn__dist_wait_for(d, &req, t);
    } else {
        double t0 = MPI_Wtime();
        rc = nn__dist_mpi_ok(MPI_Barrier(d->comm), "MPI_Barrier");
        *t += MPI_Wtime() - t0;
    }
    MPI_Win_sync(d->win);
    return rc;
}

/* Elements [lo, hi) of one bucket on every rank: their sum in rank order,
 * written back to every rank.  Blocks of a few lines go through a small
 * accumulator, so the loops are plain streams the compiler vectorises. */
#define SUM_PART(T)                                                                            \
    static void sum_part_##T(T *const *g, int W, int64_t lo, int64_t hi)                     \
    {                                                                                          \
        enum { BLOCK = 512 / sizeof(T) };                                                      \
        T acc[BLOCK];                                                                          \
        for (int64_t j = lo; j < hi; j += BLOCK) {                                             \
            int64_t n = hi - j < BLOCK ? hi - j : BLOCK;                                       \
            const T *g0 = g[0] + j;                                                            \
            for (int64_t i = 0; i < n; i++) acc[i] = g0[i];                                    \
            for (int q = 1; q < W; q++) {                                                      \
                const T *gq = g[q] + j;                                                        \
                for (int64_t i = 0; i < n; i++) acc[i] += gq[i];                               \
            }                                                                                  \
            for (int q = 0; q < W; q++) memcpy(g[q] + j, acc, (size_t)n * sizeof(T));         \
        }                                                                                      \
    }
SUM_PART(float)
SUM_PART(double)

int nn__dist_shm_reduce(nn_dist *d, double *twait, double *tcomm)
{
    double t0 = MPI_Wtime(), tw = 0;
    /* first meeting: every rank has packed; its time is the wait for the
     * slowest rank */
    int rc = meet(d, &tw);
    *twait += MPI_Wtime() - t0;
    if (rc) return -1;
    double t1 = MPI_Wtime();
    int W = d->size;
    void *g[64];
    void **gp = W <= 64 ? g : ad_calloc((size_t)W, sizeof *gp);
    if (!gp) rc = -1;
    for (int k = 0; rc == 0 && k < d->nb; k++) {
        bucket *b = &d->b[k];
        size_t es = ad_dtype_size(b->dtype);
        int64_t per_line = LINE / (int64_t)es;
        int64_t lines = (b->count + per_line - 1) / per_line;
        int64_t lo = lines * d->rank / W * per_line, hi = lines * (d->rank + 1) / W * per_line;
        if (hi > b->count) hi = b->count;
        for (int q = 0; q < W; q++) gp[q] = (char *)d->seg[q] + b->shm_off;
        if (lo >= hi) continue;
        if (b->dtype == AD_FLOAT32)
            sum_part_float((float *const *)gp, W, lo, hi);
        else
            sum_part_double((double *const *)gp, W, lo, hi);
    }
    if (gp != g) ad_free(gp);
    /* second meeting: every part is everywhere (even after a failure here,
     * the others wait in it) */
    double tm = 0;
    int rc2 = meet(d, &tm);
    *tcomm += MPI_Wtime() - t1;
    return rc || rc2 ? -1 : 0;
}

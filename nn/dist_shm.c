/* nn/dist_shm.c - the gradient reduction over shared memory of nn/dist.h
 * (nn_dist_options.shared_memory): among the ranks of one machine, and
 * hierarchical across machines.
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
 * Across machines.  The ranks of each node form a group (MPI_Comm_split_
 * type(MPI_COMM_TYPE_SHARED)); with more than one node the pass becomes
 * hierarchical, as NCCL's and Horovod's are:
 *
 *     barrier within the node
 *     s = sum over the node's ranks of my part (node rank order), into my segment
 *     MPI_Allreduce of my part with the ranks of the same node rank on
 *         the other nodes (one rank per node: the network carries each
 *         byte once per node, not once per rank)
 *     my part's total into every segment of the node
 *     barrier within the node
 *
 * Every node must have the same number of ranks (else MPI_Allreduce
 * reduces everything, as it does when each node has a single rank).
 * NN_DIST_SHM_NODE_RANKS=k cuts each node's ranks into groups of k
 * consecutive node ranks, as if they were nodes of their own: to try the
 * hierarchical form on one machine (the tests do), or to keep the window
 * within a NUMA domain.
 *
 * When.  Neither overlap (whose reductions start during backward) nor the
 * sharded update is on, and the window can be had; otherwise the buckets
 * stay on the heap and MPI_Allreduce reduces them. */
#define _POSIX_C_SOURCE 200809L /* statvfs */

#include "dist_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

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

/* The groups that share a window: the ranks of each node
 * (MPI_COMM_TYPE_SHARED), cut into groups of NN_DIST_SHM_NODE_RANKS when
 * that is set; d->node, d->lrank, d->lsize, and d->cross (the ranks of
 * the same node rank in every group) when there is more than one group.
 * *ok false (and nothing kept) when the groups differ in size or hold one
 * rank each: the same answer on every rank. */
static int node_groups(nn_dist *d, bool *ok)
{
    MPI_Comm node = MPI_COMM_NULL, part = MPI_COMM_NULL;
    int n = 0, r = 0, k = 0, mm[2];
    *ok = false;
    const char *w = getenv("NN_DIST_SHM_NODE_RANKS");
    if (w && *w) k = atoi(w);
    if (nn__dist_mpi_ok(MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node),
                        "MPI_Comm_split_type"))
        return -1;
    if (k > 0) {
        if (MPI_Comm_rank(node, &r) != MPI_SUCCESS ||
            nn__dist_mpi_ok(MPI_Comm_split(node, r / k, r, &part), "MPI_Comm_split")) {
            MPI_Comm_free(&node);
            return -1;
        }
        MPI_Comm_free(&node);
        node = part;
    }
    MPI_Comm_rank(node, &r);
    MPI_Comm_size(node, &n);
    /* every group the same size, and more than one rank in it */
    mm[0] = n, mm[1] = -n;
    if (nn__dist_mpi_ok(MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_INT, MPI_MAX, d->comm),
                        "MPI_Allreduce")) {
        MPI_Comm_free(&node);
        return -1;
    }
    if (mm[0] != -mm[1] || n < 2) {
        MPI_Comm_free(&node);
        return 0;
    }
    d->cross = MPI_COMM_NULL;
    if (n < d->size &&
        nn__dist_mpi_ok(MPI_Comm_split(d->comm, r, d->rank, &d->cross), "MPI_Comm_split")) {
        MPI_Comm_free(&node);
        return -1;
    }
    if (d->cross != MPI_COMM_NULL) MPI_Comm_set_errhandler(d->cross, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
    d->node = node;
    d->lrank = r;
    d->lsize = n;
    *ok = true;
    return 0;
}

/* Free bytes in the directory that will hold the window's backing file:
 * Open MPI's osc_sm_backing_directory (read through MPI_T), else /dev/shm;
 * -1 when it cannot be told.  Open MPI does not fail cleanly when the
 * file does not fit (one rank warns, the others wait in the allocation
 * for ever), and a container's /dev/shm is often 64 MB, so the space is
 * checked first. */
static double backing_space(void)
{
    char dir[1024] = "/dev/shm";
#if MPI_VERSION >= 3
    int provided, idx, count;
    MPI_T_cvar_handle h;
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) == MPI_SUCCESS) {
        if (MPI_T_cvar_get_index("osc_sm_backing_directory", &idx) == MPI_SUCCESS &&
            MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) == MPI_SUCCESS) {
            /* count is the string's buffer size (2048 in Open MPI 4.1) */
            char *buf = count > 0 ? ad_calloc((size_t)count + 1, 1) : NULL;
            if (buf && MPI_T_cvar_read(h, buf) == MPI_SUCCESS && buf[0])
                snprintf(dir, sizeof dir, "%s", buf);
            ad_free(buf);
            MPI_T_cvar_handle_free(&h);
        }
        MPI_T_finalize();
    }
#endif
    struct statvfs st;
    if (statvfs(dir, &st) != 0) return -1;
    return (double)st.f_bavail * (double)st.f_frsize;
}

void nn__dist_shm_free(nn_dist *d)
{
    if (d->win != MPI_WIN_NULL) {
        if (d->shm_locked) MPI_Win_unlock_all(d->win);
        MPI_Win_free(&d->win); /* collective, as nn_dist_detach and _finalize are */
    }
    if (d->node != MPI_COMM_NULL) MPI_Comm_free(&d->node);
    if (d->cross != MPI_COMM_NULL) MPI_Comm_free(&d->cross);
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
    bool groups;
    if (node_groups(d, &groups)) return -1;
    if (!groups) return 0;

    size_t bytes = segment_layout(d);
    /* room for the node's segments, with an eighth to spare, everywhere */
    double room = backing_space(), need = (double)bytes * d->lsize * 1.125;
    int fits = room < 0 || room >= need, all_fit = 0;
    if (nn__dist_mpi_ok(MPI_Allreduce(&fits, &all_fit, 1, MPI_INT, MPI_MIN, d->comm),
                        "MPI_Allreduce")) {
        nn__dist_shm_free(d);
        return -1;
    }
    if (!all_fit) {
        nn__dist_shm_free(d);
        return 0;
    }
    MPI_Info info = MPI_INFO_NULL;
    void *base = NULL;
    /* each rank's segment on pages of its own (first touched by that rank,
     * so on its NUMA node) */
    if (MPI_Info_create(&info) == MPI_SUCCESS) MPI_Info_set(info, "alloc_shared_noncontig", "true");
    int rc = MPI_Win_allocate_shared((MPI_Aint)bytes, 1, info, d->node, &base, &d->win);
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
        nn__dist_shm_free(d);
        return rc;
    }
    /* a window's errors go to its own handler, fatal by default */
    MPI_Win_set_errhandler(d->win, MPI_ERRORS_RETURN);
    /* the segments, then room for a bucket's place in each (the reduction's) */
    d->seg = ad_calloc(2 * (size_t)d->lsize, sizeof *d->seg);
    ok = d->seg != NULL;
    for (int q = 0; ok && q < d->lsize; q++) {
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
        if (nn__dist_grad_into_bucket(d, e, false, fn)) rc = -1;
    d->shm = true;
    return rc;
}

/* The two barriers of a step, with the memory barriers around them (the
 * caller times them). */
static int meet(nn_dist *d)
{
    MPI_Win_sync(d->win);
    int rc;
    if (d->o.wait_sleep_us > 0) {
        MPI_Request req = MPI_REQUEST_NULL;
        double unused = 0;
        rc = nn__dist_mpi_ok(MPI_Ibarrier(d->node, &req), "MPI_Ibarrier");
        if (rc == 0) rc = nn__dist_wait_for(d, &req, &unused);
    } else {
        rc = nn__dist_mpi_ok(MPI_Barrier(d->node), "MPI_Barrier");
    }
    MPI_Win_sync(d->win);
    return rc;
}

/* Elements [lo, hi) of one bucket in the W segments of the group: their
 * sum in rank order, written back to every segment (spread), or to
 * segment `own` alone.  Blocks of a few lines go through a small
 * accumulator, so the loops are plain streams the compiler vectorises. */
#define SUM_PART(T)                                                                            \
    static void sum_part_##T(T *const *g, int W, int64_t lo, int64_t hi, bool spread, int own) \
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
            for (int q = spread ? 0 : own; q < (spread ? W : own + 1); q++)                    \
                memcpy(g[q] + j, acc, (size_t)n * sizeof(T));                                  \
        }                                                                                      \
    }
SUM_PART(float)
SUM_PART(double)

/* Bucket b's part of this rank in the group: elements [*lo, *hi), cut on
 * cache lines. */
static void part_of(const nn_dist *d, const bucket *b, int64_t *lo, int64_t *hi)
{
    int64_t per_line = LINE / (int64_t)ad_dtype_size(b->dtype);
    int64_t lines = (b->count + per_line - 1) / per_line, W = d->lsize;
    *lo = lines * d->lrank / W * per_line;
    *hi = lines * (d->lrank + 1) / W * per_line;
    if (*hi > b->count) *hi = b->count;
    if (*lo > *hi) *lo = *hi;
}

int nn__dist_shm_reduce(nn_dist *d, double *twait, double *tcomm)
{
    double t0 = MPI_Wtime();
    /* first meeting: every rank of the group has packed; its time is the
     * wait for the slowest one */
    int rc = meet(d);
    *twait += MPI_Wtime() - t0;
    if (rc) return -1;
    double t1 = MPI_Wtime();
    int W = d->lsize;
    bool spread = d->cross == MPI_COMM_NULL; /* one group: the sums are final */
    void **gp = d->seg + W; /* the bucket's place in each segment */
    for (int k = 0; rc == 0 && k < d->nb; k++) {
        bucket *b = &d->b[k];
        int64_t lo, hi;
        part_of(d, b, &lo, &hi);
        for (int q = 0; q < W; q++) gp[q] = (char *)d->seg[q] + b->shm_off;
        if (b->dtype == AD_FLOAT32)
            sum_part_float((float *const *)gp, W, lo, hi, spread, d->lrank);
        else
            sum_part_double((double *const *)gp, W, lo, hi, spread, d->lrank);
        if (spread) continue;
        /* the group's sum of my part, with the other groups' (one rank of
         * each), then into every segment of the group */
        size_t es = ad_dtype_size(b->dtype);
        char *mine = (char *)d->seg[d->lrank] + b->shm_off + (size_t)lo * es;
        /* (a part of nothing still joins the other groups' call) */
        rc = nn__dist_mpi_ok(MPI_Allreduce(MPI_IN_PLACE, mine, (int)(hi - lo),
                                           nn__dist_mpi_type(b->dtype), MPI_SUM, d->cross),
                             "MPI_Allreduce");
        for (int q = 0; rc == 0 && q < W; q++)
            if (q != d->lrank)
                memcpy((char *)gp[q] + (size_t)lo * es, mine, (size_t)(hi - lo) * es);
    }
    /* second meeting: every part is in every segment of the group (even
     * after a failure here: the others wait in it) */
    int rc2 = meet(d);
    *tcomm += MPI_Wtime() - t1;
    return rc || rc2 ? -1 : 0;
}

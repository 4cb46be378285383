/* nn/dist.c - data-parallel training over MPI (nn/dist.h).
 *
 * Its own library (libautodiff_nn_mpi), built on the public API of
 * autodiff and nn and on MPI: nothing else of the project sees MPI.  The
 * trainer knows only the two hooks of nn_trainer_comm; this file fills
 * them with collectives on a duplicate of the user's communicator. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include "dist_impl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif


/* -1 with "nn_dist: CALL: MPI's message" when rc is not MPI_SUCCESS. */
int nn__dist_mpi_ok(int rc, const char *call)
{
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return ad_set_error_code(AD_ERR_IO, "nn_dist: %s failed: %s", call,
                             len ? msg : "unknown MPI error");
}

MPI_Datatype nn__dist_mpi_type(ad_dtype dt)
{
    return dt == AD_FLOAT32 ? MPI_FLOAT : MPI_DOUBLE;
}

/* ---- set-up ---------------------------------------------------------------- */

bool nn_dist_launched(void)
{
    static const char *const vars[] = {
        "OMPI_COMM_WORLD_SIZE", /* Open MPI's mpirun */
        "PMI_SIZE",             /* MPICH's Hydra, Intel MPI, srun --mpi=pmi2 */
        "PMIX_RANK",            /* PMIx launchers, srun --mpi=pmix */
        "MPI_LOCALNRANKS",      /* MPICH */
        "SLURM_PROCID",         /* any srun task */
    };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return true;
    return false;
}

/* Open MPI's non-blocking reductions (libnbc), which the sleeping wait and
 * overlap use, choose by default an algorithm that reduces the MLP's
 * 814 KB between two ranks in twice the time of the blocking
 * MPI_Allreduce (about 210 us against 110 over shared memory);
 * Rabenseifner's (reduce-scatter, then allgather: each rank moves its
 * share of the bytes twice, as the ring does) is as fast as the blocking
 * one.  Chosen through MPI's tools interface (MPI_T control variables)
 * when the variable exists (Open MPI) and is still at its default 0
 * ("ignore": a value given with --mca or OMPI_MCA_* is kept).  It is
 * process-wide: the caller's own MPI_Iallreduce calls take it too. */
static void prefer_rabenseifner(void)
{
#if MPI_VERSION >= 3
    int provided, idx, count, v = -1;
    MPI_T_cvar_handle h;
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return;
    if (MPI_T_cvar_get_index("coll_libnbc_iallreduce_algorithm", &idx) == MPI_SUCCESS &&
        MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) == MPI_SUCCESS) {
        if (count == 1 && MPI_T_cvar_read(h, &v) == MPI_SUCCESS && v == 0) {
            v = 3; /* 0 ignore, 1 ring, 2 binomial, 3 rabenseifner, 4 recursive doubling */
            MPI_T_cvar_write(h, &v);
        }
        MPI_T_cvar_handle_free(&h);
    }
    MPI_T_finalize();
#endif
}

nn_dist *nn_dist_from_comm(MPI_Comm comm, const nn_dist_options *opts)
{
    int up = 0;
    MPI_Initialized(&up);
    if (!up) {
        ad_set_error("nn_dist_from_comm: MPI is not initialised (call MPI_Init, or nn_dist_init)");
        return NULL;
    }
    nn_dist *d = ad_calloc(1, sizeof *d);
    if (!d) return NULL;
    d->o = opts ? *opts : (nn_dist_options){0};
    if (d->o.bucket_bytes == 0) d->o.bucket_bytes = (size_t)25 << 20;
    /* The environment has the last word, as MPI's own OMPI_MCA_* do: the
     * wait suits the machine, not the program. */
    const char *w = getenv("NN_DIST_WAIT_US");
    if (w && *w) d->o.wait_sleep_us = atoi(w) > 0 ? atoi(w) : 0;
    if ((w = getenv("NN_DIST_OVERLAP")) && *w) d->o.overlap = atoi(w) != 0;
    if ((w = getenv("NN_DIST_BUCKET_BYTES")) && atoll(w) > 0) d->o.bucket_bytes = (size_t)atoll(w);
    if ((w = getenv("NN_DIST_SHARD")) && *w) d->o.shard = atoi(w) != 0 ? 1 : -1;
    if ((w = getenv("NN_DIST_SHM")) && *w) d->o.shared_memory = atoi(w) != 0 ? 1 : -1;
    d->timing = (w = getenv("NN_DIST_TIMING")) && atoi(w) != 0;
    if (d->o.overlap || d->o.wait_sleep_us > 0) prefer_rabenseifner();
    d->comm = MPI_COMM_NULL;
    d->win = MPI_WIN_NULL;
    d->node = d->cross = MPI_COMM_NULL;
    if (nn__dist_mpi_ok(MPI_Comm_dup(comm, &d->comm), "MPI_Comm_dup") ||
        nn__dist_mpi_ok(MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler") ||
        nn__dist_mpi_ok(MPI_Comm_rank(d->comm, &d->rank), "MPI_Comm_rank") ||
        nn__dist_mpi_ok(MPI_Comm_size(d->comm, &d->size), "MPI_Comm_size")) {
        if (d->comm != MPI_COMM_NULL) MPI_Comm_free(&d->comm);
        ad_free(d);
        return NULL;
    }
    return d;
}

nn_dist *nn_dist_init(int *argc, char ***argv, const nn_dist_options *opts)
{
    int up = 0, provided;
    MPI_Initialized(&up);
    if (!up && nn__dist_mpi_ok(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided),
                      "MPI_Init_thread"))
        return NULL;
    nn_dist *d = nn_dist_from_comm(MPI_COMM_WORLD, opts);
    if (d) d->finalize_mpi = !up;
    return d;
}

static void buckets_free(nn_dist *d)
{
    nn__dist_shard_free(d);
    for (int i = 0; i < d->nb; i++) ad_tensor_free(d->b[i].flat);
    nn__dist_shm_free(d); /* after the tensors over its memory */
    ad_free(d->b);
    ad_free(d->offset);
    ad_free(d->bucket_of);
    ad_free(d->packed);
    ad_free(d->extras);
    ad_free(d->keys);
    ad_free(d->avg);
    nn_named_tensors_free(d->params);
    nn_named_tensors_free(d->buffers);
    d->b = NULL;
    d->offset = NULL;
    d->bucket_of = NULL;
    d->packed = NULL;
    d->extras = NULL;
    d->keys = NULL;
    d->avg = NULL;
    d->params = d->buffers = NULL;
    d->nb = d->nent = d->nbuf = 0;
}

void nn_dist_detach(nn_dist *d)
{
    if (!d) return;
    if (d->tr) nn_trainer_set_comm(d->tr, NULL);
    d->tr = NULL;
    /* the model lives on: its gradients leave the window's memory */
    nn__dist_shm_unshare_grads(d);
    buckets_free(d);
}

int nn_dist_finalize(nn_dist *d)
{
    if (!d) return 0;
    /* The trainer is not touched: it may be freed already (programs free
     * their objects in any order at the end); one that lives on must not
     * train again (nn/dist.h). */
    buckets_free(d);
    bool fin = d->finalize_mpi;
    MPI_Comm_free(&d->comm);
    ad_free(d);
    return fin ? nn__dist_mpi_ok(MPI_Finalize(), "MPI_Finalize") : 0;
}

int nn_dist_rank(const nn_dist *d)
{
    return d ? d->rank : ad_set_error("nn_dist_rank: d is NULL");
}

int nn_dist_world_size(const nn_dist *d)
{
    return d ? d->size : ad_set_error("nn_dist_world_size: d is NULL");
}

MPI_Comm nn_dist_comm(const nn_dist *d)
{
    return d ? d->comm : MPI_COMM_NULL;
}

/* ---- gradient averaging ------------------------------------------------------ */

/* Entry e of the buckets: the parameters last first (backward produces
 * the last layers' gradients first, so the first bucket fills first, as
 * in PyTorch DDP), then the averaged buffers. */
static int param_of(const nn_dist *d, int e)
{
    return d->params->n - 1 - e;
}

ad_tensor *nn__dist_entry(const nn_dist *d, int e)
{
    return e < d->params->n ? d->params->tensors[param_of(d, e)] : d->avg[e - d->params->n];
}

static const char *entry_name(const nn_dist *d, int e)
{
    return e < d->params->n ? d->params->names[param_of(d, e)] : "buffer";
}

static int key_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const param_key *)a)->t, y = (uintptr_t)((const param_key *)b)->t;
    return (x > y) - (x < y);
}

/* The entry of parameter t, or -1 when t is not one. */
static int entry_of(const nn_dist *d, const ad_tensor *t)
{
    param_key k = {t, 0};
    const param_key *f = bsearch(&k, d->keys, (size_t)d->params->n, sizeof k, key_cmp);
    return f ? f->e : -1;
}

/* The floating-point buffers of the list, which are averaged; integer
 * ones (BatchNorm's num_batches_tracked) count steps, which every rank
 * takes alike, and are left alone. */
static int pick_buffers(nn_dist *d, const char *fn)
{
    const nn_named_tensors *bl = d->buffers;
    d->avg = ad_calloc((size_t)(bl ? bl->n : 0) + 1, sizeof *d->avg);
    if (!d->avg) return -1;
    for (int i = 0; bl && i < bl->n; i++) {
        ad_tensor *t = bl->tensors[i];
        ad_dtype dt = ad_tensor_dtype(t);
        if (dt != AD_FLOAT32 && dt != AD_FLOAT64) continue;
        if (!ad_is_contiguous(t))
            return ad_set_error("%s: buffer '%s' is not contiguous", fn, bl->names[i]);
        d->avg[d->nbuf++] = t;
    }
    return 0;
}

/* Whether parameter entry e's gradient is its part of the bucket: by
 * address, not by a kept handle, since backward may have given the
 * parameter a new buffer (it had none), and a freed view's address may
 * come back as another tensor's. */
static bool grad_in_bucket(const nn_dist *d, int e)
{
    ad_tensor *g = ad_tensor_grad(nn__dist_entry(d, e));
    const bucket *b = &d->b[d->bucket_of[e]];
    return g && ad_data(g) == (char *)b->data + (size_t)d->offset[e] * ad_dtype_size(b->dtype);
}

/* Parameter entry e's gradient becomes a view of its part of the bucket
 * (ad_set_grad), holding the gradient it had: backward then writes the
 * gradients where the reduction reads them, and nothing is copied.  A
 * parameter without one gets one only when asked (make): until some
 * rank's backward reaches it, it has none, so the optimiser skips it as it
 * would alone (nn__dist_adopt_grads). */
int nn__dist_grad_into_bucket(nn_dist *d, int e, bool make, const char *fn)
{
    ad_tensor *p = nn__dist_entry(d, e), *old = ad_tensor_grad(p);
    if ((!old && !make) || grad_in_bucket(d, e)) return 0;
    ad_tape *was = ad_tape_activate(NULL); /* persistent views */
    bool grad_was = ad_set_grad_enabled(false);
    ad_tensor *part = ad_narrow(d->b[d->bucket_of[e]].flat, 0, d->offset[e], ad_numel(p));
    ad_tensor *view = part ? ad_reshape(part, ad_ndim(p), ad_shape(p)) : NULL;
    ad_set_grad_enabled(grad_was);
    ad_tape_activate(was);
    ad_tensor_free(part);
    int rc = view ? 0 : -1;
    if (rc == 0 && old) rc = ad_copy_into(view, old);
    if (rc == 0) rc = ad_set_grad(p, view);
    if (rc) {
        ad_tensor_free(view);
        return ad_set_error("%s: parameter '%s': %s", fn, entry_name(d, e), ad_error());
    }
    return 0;
}

int64_t nn__dist_extras(const nn_dist *d)
{
    return EXTRA + d->params->n;
}

/* Buckets over the entries in their order: a new one where the dtype
 * changes or the bytes would pass bucket_bytes (a larger tensor has one of
 * its own). */
static int layout(nn_dist *d, const char *fn)
{
    nn_named_tensors *ps = d->params;
    if (pick_buffers(d, fn)) return -1;
    d->nent = ps->n + d->nbuf;
    d->offset = ad_calloc((size_t)d->nent + 1, sizeof *d->offset);
    d->bucket_of = ad_calloc((size_t)d->nent + 1, sizeof *d->bucket_of);
    d->packed = ad_calloc((size_t)d->nent + 1, sizeof *d->packed);
    d->extras = ad_calloc((size_t)(EXTRA + ps->n), sizeof *d->extras);
    d->keys = ad_calloc((size_t)ps->n + 1, sizeof *d->keys);
    d->b = ad_calloc((size_t)d->nent + 1, sizeof *d->b);
    if (!d->offset || !d->bucket_of || !d->packed || !d->extras || !d->keys || !d->b) return -1;
    for (int e = 0; e < ps->n; e++) d->keys[e] = (param_key){nn__dist_entry(d, e), e};
    qsort(d->keys, (size_t)ps->n, sizeof *d->keys, key_cmp);
    for (int e = 0; e < d->nent; e++) {
        ad_tensor *p = nn__dist_entry(d, e);
        ad_dtype dt = ad_tensor_dtype(p);
        if (dt != AD_FLOAT32 && dt != AD_FLOAT64)
            return ad_set_error("%s: parameter '%s' is %s; gradients are averaged in float32 or "
                                "float64", fn, entry_name(d, e), ad_dtype_name(dt));
        if (!ad_is_contiguous(p))
            return ad_set_error("%s: parameter '%s' is not contiguous", fn, entry_name(d, e));
        int64_t n = ad_numel(p);
        bucket *cur = d->nb ? &d->b[d->nb - 1] : NULL;
        if (!cur || cur->dtype != dt ||
            (size_t)(cur->count + n) * ad_dtype_size(dt) > d->o.bucket_bytes) {
            cur = &d->b[d->nb++];
            *cur = (bucket){.dtype = dt, .first = e, .end = e, .req = MPI_REQUEST_NULL};
        }
        d->offset[e] = cur->count;
        d->bucket_of[e] = d->nb - 1;
        cur->count += n;
        cur->end = e + 1;
        cur->pending++;
    }
    if (ps->n == 0) return ad_set_error("%s: the model has no parameters", fn);
    d->b[d->nb - 1].count += nn__dist_extras(d);
    d->stats.buckets = d->nb;
    d->stats.bytes = 0;
    for (int k = 0; k < d->nb; k++) {
        bucket *b = &d->b[k];
        if (b->count > 2147483647)
            return ad_set_error("%s: a parameter of %lld elements is more than one MPI call "
                                "can reduce", fn, (long long)b->count);
        if (!(b->flat = ad_zeros(NULL, b->dtype, 1, &b->count))) return -1;
        b->data = ad_data(b->flat);
        d->stats.bytes += b->count * (int64_t)ad_dtype_size(b->dtype);
    }
    for (int e = 0; e < ps->n; e++)
        if (nn__dist_grad_into_bucket(d, e, false, fn)) return -1;
    d->n0 = 1;
    return 0;
}

/* Entry e into its bucket, for a rank with a batch of this many samples:
 * a parameter's gradient is there already (scaled in place by n_r / n0
 * when backward was not seeded and n_r is not n0), or is moved there
 * (backward gave a parameter that had none a buffer of its own), or is
 * none (this rank's backward has never reached the parameter: it sends
 * zeros, and says so in its extras); a buffer's values are copied, times
 * the rank's weight (what the seed gives a gradient). */
int nn__dist_pack(nn_dist *d, int e, double samples)
{
    const bucket *b = &d->b[d->bucket_of[e]];
    bool param = e < d->params->n;
    double scale = d->seeded ? (param ? 1.0 : d->seed) : samples / d->n0;
    ad_tensor *t = nn__dist_entry(d, e);
    int64_t n = ad_numel(t);
    int rc = 0;
    if (param) {
        bool has = ad_tensor_grad(t) != NULL;
        if (has && (rc = nn__dist_grad_into_bucket(d, e, true, "nn_dist"))) has = false;
        d->extras[EXTRA + e] = has;
        if (!has) {
            memset((char *)b->data + (size_t)d->offset[e] * ad_dtype_size(b->dtype), 0,
                   (size_t)n * ad_dtype_size(b->dtype));
            return rc;
        }
        if (scale == 1.0) return 0;
    }
    if (b->dtype == AD_FLOAT32) {
        float *dst = (float *)b->data + d->offset[e], s = (float)scale;
        const float *src = param ? dst : ad_data(t);
        for (int64_t j = 0; j < n; j++) dst[j] = src[j] * s;
    } else {
        double *dst = (double *)b->data + d->offset[e];
        const double *src = param ? dst : ad_data(t);
        for (int64_t j = 0; j < n; j++) dst[j] = src[j] * scale;
    }
    return 0;
}

int nn__dist_adopt_grads(nn_dist *d, const char *fn)
{
    int rc = 0;
    for (int e = 0; e < d->params->n; e++)
        if (d->extras[EXTRA + e] > 0 && nn__dist_grad_into_bucket(d, e, true, fn))
            rc = -1;
    return rc;
}

/* The sum of entry e, times scale: in place for a gradient (nothing to do
 * when scale is 1, or for a parameter no rank reached), copied back for a
 * buffer. */
static void unpack(nn_dist *d, int e, double scale)
{
    const bucket *b = &d->b[d->bucket_of[e]];
    bool param = e < d->params->n;
    ad_tensor *t = param ? ad_tensor_grad(nn__dist_entry(d, e)) : nn__dist_entry(d, e);
    if (!t) return;
    int64_t n = param && scale == 1.0 ? 0 : ad_numel(t);
    if (b->dtype == AD_FLOAT32) {
        const float *src = (const float *)b->data + d->offset[e];
        float *dst = param ? (float *)src : ad_data(t), s = (float)scale;
        for (int64_t j = 0; j < n; j++) dst[j] = src[j] * s;
    } else {
        const double *src = (const double *)b->data + d->offset[e];
        double *dst = param ? (double *)src : ad_data(t);
        for (int64_t j = 0; j < n; j++) dst[j] = src[j] * scale;
    }
    ad_mark_modified(t);
}

/* d->extras into the tail of the last bucket, and back once summed. */
static void put_extras(nn_dist *d)
{
    bucket *b = &d->b[d->nb - 1];
    int64_t m = nn__dist_extras(d), at = b->count - m;
    for (int64_t j = 0; j < m; j++)
        if (b->dtype == AD_FLOAT32)
            ((float *)b->data)[at + j] = (float)d->extras[j];
        else
            ((double *)b->data)[at + j] = d->extras[j];
}

static void get_extras(nn_dist *d)
{
    const bucket *b = &d->b[d->nb - 1];
    int64_t m = nn__dist_extras(d), at = b->count - m;
    for (int64_t j = 0; j < m; j++)
        d->extras[j] = b->dtype == AD_FLOAT32 ? (double)((const float *)b->data)[at + j]
                                              : ((const double *)b->data)[at + j];
}

/* Waits for a reduction: MPI_Wait, or with wait_sleep_us, MPI_Test in a
 * loop that sleeps between polls (1 us doubling up to wait_sleep_us) once
 * the first 20 us have passed without completion.  A rank that sleeps
 * gives its core to whatever it is waiting for; one that spins in MPI_Wait
 * (or sched_yield()s, as Open MPI does when oversubscribed) keeps
 * competing for it.  Seconds spent are added to *t. */
int nn__dist_wait_for(nn_dist *d, MPI_Request *req, double *t)
{
    double t0 = MPI_Wtime();
    int rc;
    if (d->o.wait_sleep_us <= 0) {
        rc = MPI_Wait(req, MPI_STATUS_IGNORE);
    } else {
        long ns = 1000, cap = 1000L * d->o.wait_sleep_us;
        int done = 0, slack = -1;
        while ((rc = MPI_Test(req, &done, MPI_STATUS_IGNORE)) == MPI_SUCCESS && !done) {
            if (MPI_Wtime() - t0 < 20e-6) continue;
#ifdef __linux__
            /* Linux lets a sleep end up to the thread's timer slack late
             * (50 us by default; nanosleep of 1 us took 69 us on the
             * development machine, 19 us with a slack of 1 us): while
             * this rank sleeps for its peers, the slack is 1 us, and the
             * caller's is restored after. */
            if (slack < 0 && (slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)) >= 0)
                prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
#endif
            struct timespec ts = {0, ns};
            nanosleep(&ts, NULL);
            ns = ns * 2 < cap ? ns * 2 : cap;
        }
#ifdef __linux__
        if (slack > 0) prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
#endif
        (void)slack;
    }
    *t += MPI_Wtime() - t0;
    return nn__dist_mpi_ok(rc, d->o.wait_sleep_us > 0 ? "MPI_Test" : "MPI_Wait");
}

/* Starts the reduction of bucket b: MPI_Iallreduce when it will be waited
 * for later (overlap, or the sleeping wait, which polls it: a rank that
 * is descheduled in the middle of the reduction then stalls the others
 * without their spinning), else a blocking MPI_Allreduce.  Open MPI's
 * non-blocking reductions (libnbc) are slower than its blocking ones with
 * their default algorithm: 814 KB between two ranks in 170-210 us against
 * 85-110 over shared memory; Rabenseifner's brings them level, and
 * prefer_rabenseifner chooses it. */
static int start(nn_dist *d, bucket *b, double *t)
{
    double t0 = MPI_Wtime();
    bool async = d->o.overlap || d->o.wait_sleep_us > 0;
    int rc = async ? MPI_Iallreduce(MPI_IN_PLACE, b->data, (int)b->count, nn__dist_mpi_type(b->dtype),
                                    MPI_SUM, d->comm, &b->req)
                   : MPI_Allreduce(MPI_IN_PLACE, b->data, (int)b->count, nn__dist_mpi_type(b->dtype),
                                   MPI_SUM, d->comm);
    *t += MPI_Wtime() - t0;
    if (nn__dist_mpi_ok(rc, async ? "MPI_Iallreduce" : "MPI_Allreduce")) return -1;
    /* Without overlap, a started reduction is finished before the next
     * bucket is packed. */
    return async && !d->o.overlap ? nn__dist_wait_for(d, &b->req, t) : 0;
}

/* With the sleeping wait (or NN_DIST_TIMING), before the reductions: an
 * MPI_Ibarrier waited for by wait_for, so that a rank that arrives first
 * waits (sleeping, with wait_sleep_us) until every rank is there.  Its
 * time is the step's wait for the slowest rank (stats.wait_seconds), kept
 * apart from the reductions' own.  Costs one barrier's latency (about
 * 1 us over shared memory) per step. */
int nn__dist_arrive_all(nn_dist *d, double *t)
{
    if (d->o.overlap || (d->o.wait_sleep_us <= 0 && !d->timing)) return 0;
    double t0 = MPI_Wtime(), tw = 0;
    MPI_Request req = MPI_REQUEST_NULL;
    int rc = nn__dist_mpi_ok(MPI_Ibarrier(d->comm, &req), "MPI_Ibarrier");
    if (rc == 0) rc = nn__dist_wait_for(d, &req, &tw);
    d->stats.wait_seconds += MPI_Wtime() - t0;
    *t += MPI_Wtime() - t0;
    return rc;
}

/* Starts the reductions of the buckets that are fully packed and not
 * started, in bucket order up to the first that is not complete, and
 * never the last (which carries the extras and is started by
 * average_grads); with overlap only.  In order, because MPI pairs the
 * ranks' non-blocking collectives by the order they start them in: a
 * bucket whose parameter one rank's backward does not reach is complete
 * there only in average_grads, and a later bucket started before it
 * would be summed with another bucket of the other ranks. */
static int start_ready(nn_dist *d, double *tcomm)
{
    for (int k = 0; k < d->nb - 1; k++) {
        bucket *b = &d->b[k];
        if (b->started) continue;
        if (b->pending) break;
        b->started = true;
        d->stats.early_buckets++;
        if (start(d, b, tcomm)) return -1;
    }
    return 0;
}

/* Entry e into its bucket, once per step, for a rank with this batch size. */
static int pack_once(nn_dist *d, int e, double samples)
{
    if (d->packed[e]) return 0;
    d->packed[e] = true;
    d->b[d->bucket_of[e]].pending--;
    return nn__dist_pack(d, e, samples);
}

/* The grad_ready hook of nn_trainer_comm (set with overlap): packs the
 * parameter's gradient, starts every bucket that is now complete, and
 * lets MPI move the started ones on (Open MPI progresses a non-blocking
 * collective only inside MPI calls). */
static int grad_ready(void *user, ad_tensor *param, double samples)
{
    nn_dist *d = user;
    int e = entry_of(d, param);
    if (e < 0) return 0; /* a leaf that is not one of the model's parameters */
    double t0 = MPI_Wtime(), tcomm = 0;
    int rc = pack_once(d, e, samples);
    if (start_ready(d, &tcomm)) rc = -1;
    double t1 = MPI_Wtime(); /* MPI_Test moves the reductions on: their time */
    for (int k = 0; rc == 0 && k < d->nb; k++) {
        int done;
        if (d->b[k].started && d->b[k].req != MPI_REQUEST_NULL)
            rc = nn__dist_mpi_ok(MPI_Test(&d->b[k].req, &done, MPI_STATUS_IGNORE), "MPI_Test");
    }
    tcomm += MPI_Wtime() - t1;
    d->stats.reduce_seconds += tcomm;
    d->stats.pack_seconds += MPI_Wtime() - t0 - tcomm;
    return rc;
}

/* The factor that makes the reduced sums the weighted average: W n0 / N
 * when backward was seeded with n_r / (W n0), else n0 / N.  When no rank
 * had a sample the average is undefined: an error (*prc) on every rank
 * alike, and the gradients 0 rather than NaN. */
double nn__dist_post(const nn_dist *d, double total, int *prc)
{
    if (!(total > 0)) {
        *prc = -1;
        ad_set_error("nn_dist: no rank had a sample in this step (total batch 0): the "
                     "gradients' average is undefined");
        return 0;
    }
    return (d->seeded ? d->size * d->n0 : d->n0) / total;
}

/* Ready for the next step: nothing packed, nothing started. */
void nn__dist_step_done(nn_dist *d)
{
    d->seed = 0;
    d->seeded = false;
    for (int e = 0; e < d->nent; e++) d->packed[e] = false;
    for (int k = 0; k < d->nb; k++) {
        d->b[k].started = false;
        d->b[k].pending = d->b[k].end - d->b[k].first;
    }
}

/* The end of a step's reduction, whole or sharded: ready for the next
 * step; on success the step's samples and mean loss out and its times
 * counted (t0 its start, tcomm its time in the reductions). */
int nn__dist_step_end(nn_dist *d, int rc, double total, double lsum, double t0, double tcomm,
                      double *samples, double *loss)
{
    nn__dist_step_done(d);
    if (rc) return -1;
    *samples = total;
    *loss = lsum / total;
    d->stats.steps++;
    d->stats.reduce_seconds += tcomm;
    d->stats.pack_seconds += MPI_Wtime() - t0 - tcomm;
    return 0;
}

/* The hook of nn_trainer_comm: sum_r n_r g_r / sum_r n_r into every grad
 * (and every averaged buffer).  What grad_ready packed and started during
 * backward stays; the rest is packed and started here. */
static int average_grads(void *user, double *samples, double *loss)
{
    nn_dist *d = user;
    if (d->shard) return nn__dist_shard_average(d, samples, loss);
    double t0 = MPI_Wtime(), tcomm = 0;
    int rc = 0, prc = 0; /* prc: a gradient this rank could not pack, after the reduction */
    bool arrived = false;
    for (int k = 0; rc == 0 && k < d->nb; k++) {
        bucket *b = &d->b[k];
        if (b->started) continue;
        for (int e = b->first; e < b->end; e++)
            if (pack_once(d, e, *samples)) prc = -1;
        if (k == d->nb - 1) {
            d->extras[0] = *samples;
            d->extras[1] = *samples * *loss;
            d->extras[2] = *samples * *samples;
            put_extras(d);
        }
        b->started = true;
        if (d->shm) continue; /* all of them at once below */
        if (!arrived) {
            arrived = true;
            if ((rc = nn__dist_arrive_all(d, &tcomm))) break;
        }
        rc = start(d, b, &tcomm);
    }
    if (rc == 0 && d->shm) {
        double tw = 0;
        rc = nn__dist_shm_reduce(d, &tw, &tcomm);
        d->stats.wait_seconds += tw;
        tcomm += tw;
    }
    /* The extras live in the last bucket: with overlap, wait for it first,
     * then for the others in order, unpacking each while later ones run
     * (a finished request is MPI_REQUEST_NULL, and waits return at once). */
    bucket *last = &d->b[d->nb - 1];
    if (rc == 0 && d->o.overlap) rc = nn__dist_wait_for(d, &last->req, &tcomm);
    get_extras(d);
    double total = d->extras[0], lsum = d->extras[1], sq = d->extras[2];
    /* A parameter that a rank's backward reached first in this step
     * while this rank's has not: its sum is in the bucket, and it becomes
     * this rank's gradient too (before the unpacking scales it). */
    if (rc == 0 && nn__dist_adopt_grads(d, "nn_dist")) prc = -1;
    /* The sum is sum_r w_r g_r with w_r = n_r / (W n0) (seeded) or
     * n_r / n0: times W n0 / N or n0 / N it is the weighted average, and
     * the factor is exactly 1 when every rank had n0 samples and backward
     * was seeded. */
    double post = nn__dist_post(d, total, &prc);
    for (int k = 0; rc == 0 && k < d->nb; k++) {
        bucket *b = &d->b[k];
        if (d->o.overlap && nn__dist_wait_for(d, &b->req, &tcomm)) rc = -1;
        for (int e = b->first; rc == 0 && e < b->end; e++) unpack(d, e, post);
    }
    /* Every batch size equal: the next steps send gradients as they are.
     * Decided only where the extras' sums are exact integers (2^24 in
     * float32), so that equal means equal. */
    double exact = last->dtype == AD_FLOAT32 ? 16777216.0 : 9007199254740992.0;
    if (rc == 0 && d->n0 == 1 && total * total < exact && sq * d->size == total * total)
        d->n0 = total / d->size;
    /* On failure, no request may stay in flight over buffers that the next
     * step would refill. */
    for (int k = 0; rc && k < d->nb; k++)
        if (d->b[k].req != MPI_REQUEST_NULL) MPI_Wait(&d->b[k].req, MPI_STATUS_IGNORE);
    return nn__dist_step_end(d, rc ? rc : prc, total, lsum, t0, tcomm, samples, loss);
}

static int sum_hook(void *user, double *values, int n)
{
    return nn_dist_sum(user, values, n);
}

/* The grad_scale hook of nn_trainer_comm: this rank's weight in the sum,
 * n_r / (W n0), as backward's seed. */
static double grad_scale(void *user, double samples)
{
    nn_dist *d = user;
    d->seed = samples / (d->size * d->n0);
    d->seeded = true;
    return d->seed;
}

/* Lays out the buckets for params and buffers (which d takes, NULL
 * buffers for none), every rank agreeing on the layout before any other
 * collective. */
static int attach_lists(nn_dist *d, const char *fn, nn_named_tensors *params,
                        nn_named_tensors *buffers)
{
    nn_dist_detach(d);
    d->params = params;
    d->buffers = buffers;
    int rc = d->params ? layout(d, fn) : -1;
    /* Every rank must agree before the first collective of another size. */
    int bad = rc != 0, any = 0;
    if (nn__dist_mpi_ok(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, d->comm), "MPI_Allreduce"))
        rc = -1;
    else if (any && rc == 0)
        rc = ad_set_error("%s: another rank could not lay out its gradient buckets", fn);
    if (rc == 0) rc = nn__dist_same_everywhere(d, fn, d->stats.bytes, "their gradients' size");
    if (rc == 0) nn__dist_step_done(d);
    return rc;
}

/* The buckets into shared memory (dist_shm.c) when every rank has laid
 * them out and set up without error (rc, this rank's outcome so far), so
 * that all of them take part in its collectives or none does. */
static int shm_if_all_ok(nn_dist *d, const char *fn, int rc)
{
    int bad = rc != 0, any = 0;
    if (nn__dist_mpi_ok(MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, d->comm), "MPI_Allreduce"))
        return -1;
    if (rc) return rc;
    if (any) return ad_set_error("%s: another rank could not attach", fn);
    return nn__dist_shm_setup(d, fn);
}

int nn_dist_attach(nn_dist *d, nn_trainer *tr)
{
    const char *fn = "nn_dist_attach";
    if (!d || !tr) return ad_set_error("%s: %s is NULL", fn, d ? "tr" : "d");
    /* A sharded update's state is whole on no rank: made whole before
     * rank 0's is broadcast again. */
    if (d->tr == tr && d->shard && nn__dist_shard_sync(d, nn_trainer_optimizer(tr))) return -1;
    nn_named_tensors *ps = nn_parameters(nn_trainer_model(tr));
    nn_named_tensors *bs = ps ? nn_buffers(nn_trainer_model(tr)) : NULL;
    if (ps && !bs) nn_named_tensors_free(ps);
    int rc = attach_lists(d, fn, bs ? ps : NULL, bs);
    if (rc == 0) rc = nn__dist_broadcast_trainer(d, tr);
    if (rc == 0) rc = nn__dist_shard_setup(d);
    if (rc == 0) rc = nn__dist_shard_check(d, nn_trainer_optimizer(tr));
    rc = shm_if_all_ok(d, fn, rc);
    nn_trainer_comm c = {d->rank, d->size, average_grads, sum_hook, d,
                         d->o.overlap ? grad_ready : NULL, grad_scale,
                         d->shard ? nn__dist_shard_step : NULL,
                         d->shard ? nn__dist_shard_sync : NULL};
    if (rc == 0) rc = nn_trainer_set_comm(tr, &c);
    if (rc) {
        buckets_free(d);
        return -1;
    }
    d->tr = tr;
    d->stats = (nn_dist_stats){.buckets = d->nb, .bytes = d->stats.bytes, .sharded = d->shard,
                               .shared_memory = d->shm};
    return 0;
}

int nn_dist_attach_params(nn_dist *d, const nn_named_tensors *params)
{
    const char *fn = "nn_dist_attach_params";
    if (!d || !params) return ad_set_error("%s: %s is NULL", fn, d ? "params" : "d");
    nn_named_tensors *own = nn_named_tensors_new(params->n, params->names, params->tensors);
    int rc = attach_lists(d, fn, own, NULL);
    if (rc == 0) rc = nn_dist_broadcast(d, params);
    rc = shm_if_all_ok(d, fn, rc);
    if (rc) {
        buckets_free(d);
        return -1;
    }
    d->stats = (nn_dist_stats){.buckets = d->nb, .bytes = d->stats.bytes, .sharded = d->shard,
                               .shared_memory = d->shm};
    return 0;
}

/* A sharded update (nn_dist_attach with NN_DIST_SHARD=1) reduce-scatters
 * the gradients and leaves each rank its own weighted gradient: only the
 * trainer's step, which updates each rank's part and gathers the
 * parameters, can follow it.  A loop of one's own that calls these and
 * then the optimiser would update every parameter with its rank's
 * gradient alone, so the ranks drift apart: refused on every rank (the
 * setting is the run's), before any rank waits in a reduction. */
static int shard_refused(const char *fn)
{
    return ad_set_error("%s: the update is sharded (NN_DIST_SHARD=1 or nn_dist_options.shard), "
                        "which only nn_trainer_step and nn_fit carry out; for a loop of your "
                        "own, attach with nn_dist_attach_params or turn sharding off",
                        fn);
}

int nn_dist_average_grads(nn_dist *d, double *samples, double *loss)
{
    const char *fn = "nn_dist_average_grads";
    if (!d || !samples || !loss)
        return ad_set_error("%s: %s is NULL", fn, !d ? "d" : !samples ? "samples" : "loss");
    if (!d->params) return ad_set_error("%s: nothing attached (nn_dist_attach_params)", fn);
    if (d->shard) return shard_refused(fn);
    return average_grads(d, samples, loss);
}

/* The core's gradient-ready hook over grad_ready. */
typedef struct backward_ctx {
    nn_dist *d;
    double samples;
} backward_ctx;

static int ready_in_backward(ad_tensor *leaf, void *ctx)
{
    backward_ctx *b = ctx;
    return grad_ready(b->d, leaf, b->samples);
}

int nn_dist_backward(nn_dist *d, ad_tensor *loss, unsigned flags, double *samples,
                     double *mean_loss)
{
    const char *fn = "nn_dist_backward";
    if (!d || !loss || !samples || !mean_loss)
        return ad_set_error("%s: %s is NULL", fn,
                            !d ? "d" : !loss ? "loss" : !samples ? "samples" : "mean_loss");
    if (!d->params) return ad_set_error("%s: nothing attached (nn_dist_attach_params)", fn);
    if (d->shard) return shard_refused(fn);
    backward_ctx b = {d, *samples};
    /* seeded with this rank's weight, as the trainer does (grad_scale), on
     * the loss's tape: with AD_CREATE_GRAPH the recorded backward keeps
     * reading it */
    double s = grad_scale(d, *samples);
    ad_tape *tape = ad_tensor_tape(loss);
    ad_tensor *seed = s == 1.0 ? NULL
                               : ad_full(tape, ad_tensor_dtype(loss), ad_ndim(loss), ad_shape(loss), s);
    ad_grad_ready_hook prev = {NULL, NULL};
    if (d->o.overlap) prev = ad_set_grad_ready_hook((ad_grad_ready_hook){ready_in_backward, &b});
    int rc = s == 1.0 || seed ? ad_backward(loss, seed, flags) : -1;
    if (d->o.overlap) ad_set_grad_ready_hook(prev);
    if (!tape) ad_tensor_free(seed);
    /* Even a failed backward joins the reduction, with its gradients as
     * they are: the other ranks wait in it.  The error is then this
     * rank's, and the caller ends the run (nn_dist_abort). */
    int rc2 = average_grads(d, samples, mean_loss);
    return rc || rc2 ? -1 : 0;
}

int nn_dist_sync_state(nn_dist *d)
{
    if (!d) return ad_set_error("nn_dist_sync_state: d is NULL");
    return d->shard && d->tr ? nn__dist_shard_sync(d, nn_trainer_optimizer(d->tr)) : 0;
}

int nn_dist_get_stats(const nn_dist *d, nn_dist_stats *stats)
{
    if (!d || !stats) return ad_set_error("nn_dist_get_stats: %s is NULL", d ? "stats" : "d");
    *stats = d->stats;
    return 0;
}

int nn_dist_reset_stats(nn_dist *d)
{
    if (!d) return ad_set_error("nn_dist_reset_stats: d is NULL");
    d->stats = (nn_dist_stats){.buckets = d->nb, .bytes = d->stats.bytes, .sharded = d->shard,
                               .shared_memory = d->shm};
    return 0;
}

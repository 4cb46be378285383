/* nn/dist_collectives.c - the collectives of nn/dist.h that are not the
 * gradients' (a sum of a few values, broadcasting tensors and a trainer,
 * loading a checkpoint on rank 0 for all, the loader's shard, ending every
 * rank), and the two that dist.c's set-up uses too.  The gradients'
 * averaging is in dist.c, its shared-memory and sharded variants in
 * dist_shm.c and dist_shard.c. */
#include "dist_impl.h"

#include <stdio.h>
#include <string.h>

/* ---- the collectives ------------------------------------------------------- */

int nn_dist_sum(nn_dist *d, double *values, int n)
{
    if (!d || (!values && n > 0)) return ad_set_error("nn_dist_sum: %s is NULL", d ? "values" : "d");
    if (n <= 0) return 0;
    return nn__dist_mpi_ok(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, d->comm),
                  "MPI_Allreduce");
}

int nn__dist_same_everywhere(nn_dist *d, const char *fn, int64_t v, const char *what)
{
    int64_t mm[2] = {v, -v};
    if (nn__dist_mpi_ok(MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_INT64_T, MPI_MAX, d->comm),
               "MPI_Allreduce"))
        return -1;
    if (mm[0] != -mm[1])
        return ad_set_error("%s: the ranks differ in %s (rank %d has %lld)", fn, what, d->rank,
                            (long long)v);
    return 0;
}

int nn_dist_broadcast(nn_dist *d, const nn_named_tensors *list)
{
    const char *fn = "nn_dist_broadcast";
    if (!d || !list) return ad_set_error("%s: %s is NULL", fn, d ? "list" : "d");
    /* A layout signature first: a rank with another model would otherwise
     * receive bytes of the wrong tensors, or block in a broadcast of
     * another size. */
    uint64_t sig = (uint64_t)list->n; /* unsigned: the hash wraps around */
    for (int i = 0; i < list->n; i++) {
        ad_tensor *t = list->tensors[i];
        if (!ad_is_contiguous(t))
            return ad_set_error("%s: '%s' is not contiguous", fn, list->names[i]);
        sig = sig * 1000003u + (uint64_t)ad_numel(t) * ad_dtype_size(ad_tensor_dtype(t));
    }
    /* compared as int64 (the top bit cleared, so that -v never overflows) */
    if (nn__dist_same_everywhere(d, fn, (int64_t)(sig >> 1), "their tensors (dtypes or sizes)")) return -1;
    for (int i = 0; i < list->n; i++) {
        ad_tensor *t = list->tensors[i];
        char *p = ad_data(t);
        size_t bytes = (size_t)ad_numel(t) * ad_dtype_size(ad_tensor_dtype(t));
        if (!p && bytes) return -1;
        for (size_t done = 0; done < bytes;) { /* an int count per call */
            size_t chunk = bytes - done < ((size_t)1 << 30) ? bytes - done : (size_t)1 << 30;
            if (nn__dist_mpi_ok(MPI_Bcast(p + done, (int)chunk, MPI_BYTE, 0, d->comm), "MPI_Bcast"))
                return -1;
            done += chunk;
        }
        if (d->rank != 0) ad_mark_modified(t);
    }
    return 0;
}

int nn__dist_broadcast_trainer(nn_dist *d, nn_trainer *tr)
{
    nn_named_tensors *sd = nn_state_dict(nn_trainer_model(tr));
    nn_named_tensors *st = sd ? nn_optim_state(nn_trainer_optimizer(tr)) : NULL;
    int rc = st ? 0 : -1;
    if (rc == 0) rc = nn_dist_broadcast(d, sd);
    if (rc == 0) rc = nn_dist_broadcast(d, st);
    int64_t counts[2] = {nn_trainer_epoch(tr), nn_trainer_steps(tr)};
    if (rc == 0)
        rc = nn__dist_mpi_ok(MPI_Bcast(counts, 2, MPI_INT64_T, 0, d->comm), "MPI_Bcast");
    if (rc == 0) rc = nn_trainer_set_counts(tr, counts[0], counts[1]);
    /* and the rate: rank 0's may come from a checkpoint (nn_trainer_load
     * sets the saved one) or a callback, and a rank stepping at another
     * rate would drift from the others */
    double lr = nn_optim_get_lr(nn_trainer_optimizer(tr));
    if (rc == 0) rc = nn__dist_mpi_ok(MPI_Bcast(&lr, 1, MPI_DOUBLE, 0, d->comm), "MPI_Bcast");
    if (rc == 0) rc = nn_optim_set_lr(nn_trainer_optimizer(tr), lr);
    nn_named_tensors_free(sd);
    nn_named_tensors_free(st);
    return rc;
}

int nn_dist_shard(nn_dist *d, nn_loader *l)
{
    if (!d) return ad_set_error("nn_dist_shard: d is NULL");
    return nn_loader_shard(l, d->rank, d->size);
}

int nn_dist_load(nn_dist *d, nn_trainer *tr, const char *path)
{
    const char *fn = "nn_dist_load";
    if (!d || !tr || !path) return ad_set_error("%s: %s is NULL", fn, !d ? "d" : !tr ? "tr" : "path");
    if (d->tr != tr) return ad_set_error("%s: attach the trainer first (nn_dist_attach)", fn);
    /* Rank 0 reads; its outcome, and its message on failure, go to all. */
    struct {
        int rc;
        char msg[1024];
    } out = {0, ""};
    if (d->rank == 0 && nn_trainer_load(tr, path, true)) {
        out.rc = -1;
        snprintf(out.msg, sizeof out.msg, "%s", ad_error() ? ad_error() : "unknown error");
    }
    if (nn__dist_mpi_ok(MPI_Bcast(&out, (int)sizeof out, MPI_BYTE, 0, d->comm), "MPI_Bcast")) return -1;
    if (out.rc) return ad_set_error_code(AD_ERR_IO, "%s: rank 0: %s", fn, out.msg);
    return nn__dist_broadcast_trainer(d, tr);
}

int nn_dist_abort(nn_dist *d, const char *prefix, int code)
{
    int rank = 0, size = 1, up = 0;
    MPI_Comm comm = d ? d->comm : MPI_COMM_WORLD;
    MPI_Initialized(&up);
    if (d) {
        rank = d->rank;
        size = d->size;
    } else if (up) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }
    fflush(stdout);
    fprintf(stderr, "%srank %d of %d: error: %s; ending every rank\n", prefix ? prefix : "", rank,
            size, ad_error() ? ad_error() : "unknown error");
    fflush(stderr);
    if (!up) return ad_set_error("nn_dist_abort: MPI is not initialised: nothing to end");
    MPI_Abort(comm, code ? code : 1);
    /* MPI_Abort does not return in the implementations we know. */
    return ad_set_error("nn_dist_abort: MPI_Abort returned");
}

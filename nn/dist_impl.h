/* nn/dist_impl.h - the structure of nn_dist, shared by dist.c (set-up,
 * buckets, the averaging by MPI_Allreduce) and dist_shard.c (the sharded
 * update: reduce-scatter, the update of this rank's part, all-gather);
 * never installed. */
#ifndef NN_DIST_IMPL_H
#define NN_DIST_IMPL_H

#include "dist.h"

/* Per step, after the gradients, the last bucket carries three numbers of
 * the rank (in its dtype; exact as long as counts stay below 2^24 in
 * float32): its batch size, its loss times its batch size, and the square
 * of its batch size (so that every rank can tell whether all batch sizes
 * were equal: W sum n^2 = (sum n)^2 exactly then); then one number per
 * parameter entry, 1 when the rank has a gradient for it, 0 when it has
 * none (no backward of this rank has reached it yet): summed, it tells
 * every rank whether some rank's backward reached the parameter, which
 * then has a gradient everywhere (the sum) and is stepped, as one
 * process on the whole batch would; one that no rank reached keeps no
 * gradient and the optimiser skips it.  nn__dist_extras(d) numbers in
 * all. */
enum { EXTRA = 3 };

typedef struct bucket {
    ad_dtype dtype;
    int first, end;       /* entries [first, end) */
    int64_t count;        /* elements, the extras included in the last */
    ad_tensor *flat;      /* [count], persistent: the parameters' grads are views of it */
    void *data;           /* flat's */
    MPI_Request req;
    int pending;          /* entries not packed yet in this step */
    bool started;         /* its reduction of this step has started */
    /* With a sharded update (dist_shard.c): rank r owns the bucket's
     * gradient elements [split[r], split[r + 1]) (the extras excluded),
     * and vals ([count], scratch; only this rank's part is used)
     * receives this rank's reduced part.  counts and displs are split's
     * as MPI wants them. */
    ad_tensor *vals;
    void *vdata;
    int *counts, *displs;
    size_t shm_off;       /* its byte offset in each rank's shared segment (dist_shm.c) */
} bucket;

/* A parameter's address and its entry, sorted by address: the
 * gradient-ready hook looks parameters up here. */
typedef struct param_key {
    const ad_tensor *t;
    int e;
} param_key;

struct nn_dist {
    MPI_Comm comm;
    int rank, size;
    bool finalize_mpi;    /* nn_dist_init called MPI_Init */
    nn_dist_options o;
    nn_trainer *tr;       /* attached, borrowed */
    /* The entries of the buckets: the parameters' gradients, then the
     * floating-point buffers (BatchNorm's running statistics), which are
     * averaged with them (nn/dist.h says why). */
    nn_named_tensors *params, *buffers;
    int nent;             /* params->n + nbuf */
    int nbuf;
    ad_tensor **avg;      /* the averaged buffers, nbuf of them */
    int64_t *offset;      /* of each entry in its bucket */
    int *bucket_of;       /* of each entry */
    bool *packed;         /* of each entry, in this step */
    double *extras;       /* this step's EXTRA numbers, then 1 or 0 per parameter entry
                           * (has a gradient); summed over the ranks by the reduction */
    param_key *keys;      /* params->n of them */
    /* Each rank sends its gradient times n_r / n0 and the sum is scaled by
     * n0 / N: the weighted average sum_r n_r g_r / N whatever n0 is.  n0
     * is 1 until a step where every rank had the same batch size, and
     * that size then (agreed from reduced numbers, so alike everywhere):
     * a rank whose batch has it sends its gradient as it is, with no pass
     * over it before the reduction. */
    double n0;
    bool timing;          /* NN_DIST_TIMING: arrive_all with MPI's own wait too */
    /* The seed backward had in this step (nn_trainer_comm's grad_scale,
     * or nn_dist_backward's): n_r / (W n0), so that the gradients leave
     * backward weighted for the sum, and the sum needs scaling by
     * W n0 / N only when the batch sizes differ (an epoch's last batch):
     * no pass over the gradients before or after the reduction.  0 when
     * backward was not seeded (nn_dist_average_grads after a backward of
     * the caller's): the weights are applied around the reduction then.
     * seeded tells which: a rank with no samples is seeded with 0. */
    double seed;
    bool seeded;
    bucket *b;
    int nb;
    nn_dist_stats stats;
    /* The sharded update (dist_shard.c), for the attachment of a trainer:
     * this rank's parts of the parameters, as nn_optim_step_parts takes
     * them (the gradients read from the buckets' vals). */
    bool shard;
    nn_optim_part *parts;
    int nparts;
    ad_tensor **ts;       /* nent, scratch of the all-gathers */
    MPI_Request *reqs;    /* nreqs, the all-gather's messages */
    int nreqs;
    /* The reduction over shared memory (dist_shm.c): the buckets live in
     * this rank's segment of win, and seg[q] is rank q's segment as this
     * process sees it. */
    bool shm, shm_locked;
    MPI_Win win;          /* MPI_WIN_NULL when unused */
    MPI_Comm node;        /* the ranks that share win (MPI_COMM_NULL: none) */
    MPI_Comm cross;       /* the same node rank in every group, or MPI_COMM_NULL */
    int lrank, lsize;     /* this rank's place in node */
    void **seg;           /* lsize segments, then lsize pointers of scratch */
};

/* -1 with "nn_dist: CALL: MPI's message" when rc is not MPI_SUCCESS. */
int nn__dist_mpi_ok(int rc, const char *call);
/* dist_collectives.c: -1 on every rank, with an error naming fn and
 * what, unless all ranks hold the same value v; rank 0's model, optimiser
 * state and counts onto every rank (nn_dist_attach, nn_dist_load). */
int nn__dist_same_everywhere(nn_dist *d, const char *fn, int64_t v, const char *what);
int nn__dist_broadcast_trainer(nn_dist *d, nn_trainer *tr);
MPI_Datatype nn__dist_mpi_type(ad_dtype dt);
/* Entry e's tensor: a parameter (e < params->n), or an averaged buffer. */
ad_tensor *nn__dist_entry(const nn_dist *d, int e);
/* The numbers after the gradients in the last bucket: EXTRA, then one
 * per parameter entry. */
int64_t nn__dist_extras(const nn_dist *d);
/* Entry e into its bucket for a rank with this batch size (dist.c says
 * how); -1 when a gradient could not be made a view of its bucket (out
 * of memory: the rank then sends zeros for it, still joins the reduction,
 * and fails the step). */
int nn__dist_pack(nn_dist *d, int e, double samples);
/* After a step's reduction, with d->extras summed over the ranks: a
 * parameter some rank's backward reached gets its bucket's part as its
 * gradient on every rank (the sum), one none reached keeps none; -1 on
 * failure (out of memory), after all entries. */
int nn__dist_adopt_grads(nn_dist *d, const char *fn);
/* Waits for a request, with MPI's wait or the sleeping one; the seconds
 * are added to *t. */
int nn__dist_wait_for(nn_dist *d, MPI_Request *req, double *t);
/* The barrier before a step's reductions, with the sleeping wait or
 * NN_DIST_TIMING (a no-op otherwise). */
int nn__dist_arrive_all(nn_dist *d, double *t);
/* Ready for the next step. */
void nn__dist_step_done(nn_dist *d);
/* dist.c: the factor that turns the reduced sums into the weighted average
 * (an error in *prc, and 0, when no rank had a sample). */
double nn__dist_post(const nn_dist *d, double total, int *prc);
/* nn__dist_step_done, then on success (rc 0) the step's samples, mean
 * loss and times (dist.c); returns 0 or -1. */
int nn__dist_step_end(nn_dist *d, int rc, double total, double lsum, double t0, double tcomm,
                      double *samples, double *loss);

/* Parameter entry e's gradient becomes a view of its part of its
 * bucket's flat, its values kept (dist.c; nothing to do when it is one
 * already); with make false, a parameter with no gradient keeps none (as
 * one that no backward reached yet). */
int nn__dist_grad_into_bucket(nn_dist *d, int e, bool make, const char *fn);

/* dist_shm.c.  Moves the buckets into a window of shared memory among
 * the ranks of each node when the option and the run allow (nodes of
 * equal size above 1, no overlap, no sharding, room for the window);
 * collective; -1 on an MPI failure only. */
int nn__dist_shm_setup(nn_dist *d, const char *fn);
/* Frees the window (collective); the buckets' tensors over it must be
 * freed first. */
void nn__dist_shm_free(nn_dist *d);
/* Private copies of the gradients, for a model that outlives the window. */
int nn__dist_shm_unshare_grads(nn_dist *d);
/* The step's reduction of every bucket through the window: the seconds
 * waiting for the slowest rank to *twait, the rest to *tcomm. */
int nn__dist_shm_reduce(nn_dist *d, double *twait, double *tcomm);

/* dist_shard.c.  Whether a trainer's attachment shards the update (the
 * option, NN_DIST_SHARD, more than one rank, no overlap); lays out the
 * split of every bucket and this rank's parts (-1 on error). */
int nn__dist_shard_setup(nn_dist *d);
/* With the sharded update on: -1 with an error when opt's state (but its
 * counts) is not all named after the model's parameters, which the
 * sharded update needs to make it whole (dist_shard.c). */
int nn__dist_shard_check(nn_dist *d, nn_optim *opt);
void nn__dist_shard_free(nn_dist *d);
/* The averaging of a sharded step (the trainer's average_grads hook
 * calls it): every bucket reduce-scattered into vals, this rank's part
 * averaged, the buffers of its part written back. */
int nn__dist_shard_average(nn_dist *d, double *samples, double *loss);
/* nn_trainer_comm's optim_step and sync_state hooks. */
int nn__dist_shard_step(void *user, nn_optim *opt);
int nn__dist_shard_sync(void *user, nn_optim *opt);

#endif

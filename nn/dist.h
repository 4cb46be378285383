/* nn/dist.h - data-parallel training over MPI: the same model on every
 * rank, each rank's shard of every batch, gradients averaged with
 * MPI_Allreduce.
 *
 * Built only when MPI is found (meson -Dmpi=auto|enabled|disabled), as its
 * own library, libautodiff_nn_mpi (pkg-config autodiff_nn_mpi), so that
 * libautodiff and libautodiff_nn never depend on MPI.  A program is an MPI
 * program: compile with mpicc or add MPI's flags (pkg-config ompi-c), run
 * under mpirun or srun (docs/distributed.md).
 *
 *     nn_dist *d = nn_dist_init(&argc, &argv, NULL);     // MPI_Init when needed
 *     ... model, optimiser, trainer, loaders: the same code as alone ...
 *     if (nn_dist_attach(d, tr)                           // rank 0's weights everywhere
 *         || nn_dist_shard(d, train) || nn_dist_shard(d, val)
 *         || nn_fit(tr, train, val, epochs, &fit))        // rank 0 prints and saves
 *         nn_dist_abort(d, "prog: ", 1);                  // ends every rank
 *     nn_dist_finalize(d);
 *
 * What a step does.  nn_dist_attach lays the gradients out in flat
 * contiguous buckets (about bucket_bytes each, per dtype, the parameters
 * last first) and makes every parameter's gradient a view of its part
 * (ad_set_grad), so backward writes them where the reduction reads them,
 * as PyTorch DDP's gradient_as_bucket_view.  A parameter that no backward
 * has reached yet has no gradient, alone or not: it gets its view in the
 * first step in which some rank's backward reaches it, on every rank (a
 * rank whose backward did not reach it sends zeros), and until then the
 * optimiser skips it, as one process on the whole batch would (its
 * weight decay and Adam's step count leave it alone).  Which parameters
 * each rank reached rides with the step's reduction, so no meeting of
 * the ranks is added, and ranks may differ in what their forward uses.  Each rank runs forward and
 * backward on its slice of the global batch (nn_loader_shard); then the
 * trainer calls the hook set by nn_dist_attach: the batch size and loss
 * ride at the end of the last bucket, every bucket is summed
 * in place with MPI_Allreduce(MPI_IN_PLACE) (or MPI_Iallreduce, started
 * during backward as soon as a bucket's gradients are all final, in
 * bucket order, with .overlap; or, when every rank runs on one machine, by the ranks
 * themselves through a window of MPI-3 shared memory: .shared_memory).  The sum is weighted by the ranks' batch sizes, n_r / N:
 * backward is seeded with n_r / (W n0) instead of 1 (nn_trainer_comm's
 * grad_scale; n0 the batch size of every rank once a step has shown them
 * all the same, W the world size), so the gradients leave backward
 * weighted and the sum is the average as it comes out of MPI; only a step
 * whose batch sizes differ (an epoch's last) scales the sums, by
 * W n0 / N.  Every rank
 * then takes the same optimiser step from the same numbers, so the replicas
 * stay identical without ever sending weights again.  Or, with
 * nn_dist_options.shard (NN_DIST_SHARD=1), the sharded update: each bucket
 * reduce-scattered, each rank updating its 1/W of the parameters, and the
 * updated parameters all-gathered (see the option).
 *
 * Buffers.  The model's floating-point buffers (BatchNorm's running mean
 * and variance) ride in the same buckets and are averaged the same way,
 * weighted by the ranks' batch sizes, after every step: the running mean
 * is then the one a single process at the global batch keeps (to
 * rounding), the running variance the average of the shards' (which
 * misses the spread between the shards' means), and every rank holds the
 * same numbers.  PyTorch DDP instead broadcasts rank 0's buffers at each
 * forward, so its statistics come from rank 0's shards alone; averaging
 * uses every sample and costs no message of its own.  Integer buffers
 * (num_batches_tracked) are left alone: every rank takes the same steps.
 * The reduction's
 * order of additions is fixed by MPI for a given world size and
 * algorithm, so two runs with the same world size, transport and seed are
 * bit-identical.
 *
 * Errors.  The communicator is a duplicate of the one given, set to
 * MPI_ERRORS_RETURN: an MPI failure comes back as -1 with ad_error()
 * naming the call and MPI's message ("nn_dist: MPI_Allreduce: ..."),
 * never as an abort inside the library.  A rank that fails cannot be
 * waited for by the others (they block in the next collective), so the
 * program ends them all with nn_dist_abort, which prints the rank and the
 * message and calls MPI_Abort.  A rank that dies is seen by mpirun or srun,
 * which end the others.  Checkpoints are written by rank 0 only, atomically
 * (nn_trainer_save), so the last one survives any of this.
 *
 * Ownership: nn_dist_init and nn_dist_from_comm return an object the caller
 * ends with nn_dist_finalize; it borrows the trainer given to
 * nn_dist_attach, whose hooks then point at it: the trainer must not step
 * after nn_dist_finalize (nn_dist_detach first to train on alone).  The two
 * may be freed in either order.
 */
#ifndef NN_DIST_H
#define NN_DIST_H

#include <mpi.h>

#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_dist nn_dist;

typedef struct nn_dist_options {
    /* Bytes per gradient bucket; 0 means 25 MB (PyTorch DDP's default). */
    size_t bucket_bytes;
    /* Start each bucket's reduction (MPI_Iallreduce) as soon as backward
     * has produced all of its gradients (the buckets hold the parameters
     * last first, so the last layers' bucket fills first), polling MPI as
     * later gradients arrive, and wait for all before the optimiser;
     * false: one blocking MPI_Allreduce per bucket after backward.  Only
     * models of several buckets can gain; docs/distributed.md has the
     * measurement. */
    bool overlap;
    /* How a rank waits for the others.  0: inside MPI_Allreduce (or
     * MPI_Wait), MPI's own wait, which spins (or, when Open MPI knows it
     * is oversubscribed, calls sched_yield) - the lowest latency when
     * every rank has a core of its own.  > 0: an MPI_Ibarrier, then the
     * reductions as MPI_Iallreduce, each polled with MPI_Test, sleeping
     * between polls (from 1 us, doubling up to this many microseconds)
     * after the first 20 us, so a rank that arrives early, or whose peer
     * is descheduled in the middle of a reduction, gives its core to the
     * others; on a machine with more runnable processes than cores this
     * is much faster (docs/distributed.md has the figures).
     * With this or overlap, nn_dist sets Open MPI's
     * coll_libnbc_iallreduce_algorithm to 3 (Rabenseifner's, through
     * MPI_T, process-wide) unless it was set otherwise (--mca): its
     * default made MPI_Iallreduce twice as slow as MPI_Allreduce here. */
    int wait_sleep_us;
    /* The sharded update (ZeRO's first stage), for a trainer attached
     * with nn_dist_attach at two ranks or more: 1 on; -1 off: every rank
     * averages all gradients with MPI_Allreduce and updates every
     * parameter; 0 (the default) is off too (one line in
     * nn/dist_shard.c, SHARD_BY_DEFAULT, decides it) because it did not
     * measure faster (docs/distributed.md: less optimiser and zero_grad
     * work per rank, but its reductions cost about 25 us more, and on a
     * machine shared with other work each extra meeting of the ranks is
     * one more wait for a descheduled peer).  Sharded, each bucket is summed with
     * MPI_Reduce_scatter instead, so that each rank holds the averaged
     * gradient of its 1/W of the bucket's elements (contiguous, cut at
     * element boundaries); the optimiser updates that part alone
     * (nn_optim_step_parts, reading the gradient from the reduced part),
     * and every rank receives everybody's updated parameters (and
     * averaged buffers): an all-gather of messages straight between the
     * tensors (MPI_Isend, MPI_Irecv), with no staging buffer.  The bytes moved are an allreduce's (one is
     * a reduce-scatter and an all-gather); the update's work per rank is
     * 1/W.  The parameters are those of the unsharded step, bit for bit
     * (the update is elementwise; the sums are MPI's).  Each rank keeps
     * the optimiser's state current for its own part only:
     * nn_dist_sync_state makes it whole (nn_fit does at every epoch's
     * end, before rank 0's checkpoint).  After a sharded step a
     * parameter's grad holds this rank's own weighted gradient, not the
     * average.  Overlap turns it off (its reductions start during
     * backward); nn_dist_attach_params (a loop of one's own, which calls
     * the optimiser itself) never shards. */
    int shard;
    /* The reduction over shared memory: 0 (the default) or 1 on where it
     * can be, -1 off.  The buckets then live in a window of MPI-3 shared
     * memory (MPI_Win_allocate_shared) among the ranks of each node
     * (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)), each rank's in its own
     * segment, and a step's reduction is two barriers around one pass in
     * which each rank sums its 1/L of every bucket over the node's L
     * segments (in rank order) and writes the sum into all of them: no
     * copy through MPI's FIFOs (docs/distributed.md has the measurement).
     * With several nodes the pass is hierarchical: each rank's part of
     * its node's sum goes through MPI_Allreduce with the ranks of the same
     * node rank on the other nodes before it is written into the node's
     * segments, so the network carries each byte once per node.  Every
     * rank gets the same bits; two runs with the same layout give the same
     * bits.  Used when every node has the same number of ranks, more than
     * one, neither overlap nor shard is on, and the window can be had
     * (the node's segments must fit, with an eighth to spare, in the free
     * space of the directory that backs it: Open MPI's
     * osc_sm_backing_directory, /dev/shm by default, often 64 MB in a
     * container; checked first, because Open MPI hangs when they do not);
     * MPI_Allreduce reduces everything otherwise.  NN_DIST_SHM_NODE_RANKS=k
     * cuts each node's ranks into groups of k, each taken for a node.
     * stats.shared_memory says which ran.  The parameters' gradients are then views of the
     * window's memory: nn_dist_detach gives them private copies; after
     * nn_dist_finalize without a detach they must not be used (freeing
     * the model is fine). */
    int shared_memory;
} nn_dist_options;
/* The environment overrides the five, as OMPI_MCA_* variables override
 * Open MPI's settings (they suit a machine, not a program; pass them on
 * with mpirun -x): NN_DIST_BUCKET_BYTES, NN_DIST_OVERLAP (0 or 1),
 * NN_DIST_WAIT_US, NN_DIST_SHARD (0 or 1), NN_DIST_SHM (0 or 1).  NN_DIST_TIMING=1 adds a barrier before each step's
 * reductions with MPI's own wait too, so that stats.wait_seconds is
 * measured (the sleeping wait always measures it). */

/* MPI_Init (MPI_Init_thread, MPI_THREAD_FUNNELED) unless MPI is already
 * initialised, then nn_dist_from_comm(MPI_COMM_WORLD).  argc and argv may
 * be NULL.  opts may be NULL for the defaults.  NULL with an error when MPI
 * fails. */
AD_API nn_dist *nn_dist_init(int *argc, char ***argv, const nn_dist_options *opts);
/* True when this process was started by an MPI launcher (mpirun or
 * mpiexec of Open MPI, MPICH or Intel MPI, Slurm's srun): the variables
 * they set (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, SLURM_PROCID ...)
 * are there.  A program that also runs alone can skip MPI then, and start
 * faster, with no MPI state at all (sanitizers and valgrind see none). */
AD_API bool nn_dist_launched(void);
/* The same on a communicator of the caller's (an MPI program that trains
 * on a sub-communicator); comm is duplicated, so the library's messages
 * never mix with the caller's, and the caller keeps comm.  MPI must be
 * initialised.  Errors: MPI not initialised, MPI failures, out of memory. */
AD_API nn_dist *nn_dist_from_comm(MPI_Comm comm, const nn_dist_options *opts);
/* Frees the buckets, the duplicate communicator and d, and calls
 * MPI_Finalize when nn_dist_init initialised MPI.  The attached trainer is
 * not touched (it may already be freed): do not train with it afterwards,
 * or nn_dist_detach it first.  NULL is ignored.  Returns 0, or -1 when
 * MPI_Finalize fails. */
AD_API int nn_dist_finalize(nn_dist *d);

/* This process's rank in [0, world size) and the world size; -1 with an
 * error for NULL. */
AD_API int nn_dist_rank(const nn_dist *d);
AD_API int nn_dist_world_size(const nn_dist *d);
/* The duplicate communicator the library uses (MPI_COMM_NULL for NULL). */
AD_API MPI_Comm nn_dist_comm(const nn_dist *d);

/* Makes tr a worker of the run (nn_trainer_set_comm with hooks of d) and
 * broadcasts from rank 0 the model's state_dict, the optimiser's state and
 * learning rate and the trainer's epoch and step counts, so every rank
 * starts from rank 0's
 * replica (its initialisation, or the checkpoint it loaded).  The buckets
 * are laid out here from the model's parameters, which must not change
 * afterwards (attach again if they do), and each parameter's gradient
 * becomes a view of its bucket (ad_set_grad; it stays one after detach),
 * here for one that has a gradient, else once a backward reaches it.  Collective: every rank calls it
 * with the same model.  Errors: NULL, a parameter not float32/float64 or
 * not contiguous, the ranks' models differing in their tensors' sizes
 * (checked by a reduction before any byte is sent), MPI failures; with
 * the sharded update, an optimiser whose state is not named after the
 * model's parameters (one over nn_named_tensors_new of tensors named
 * otherwise: the update could not make that state whole for rank 0's
 * checkpoint). */
AD_API int nn_dist_attach(nn_dist *d, nn_trainer *tr);
/* For a training loop of your own, without nn_trainer: lays out the
 * buckets for the gradients of params (the list is copied; the tensors
 * are borrowed and must not change shape) and broadcasts their values
 * from rank 0.  Optimiser state on resume: nn_dist_broadcast it.
 * Collective.  Errors as nn_dist_attach. */
AD_API int nn_dist_attach_params(nn_dist *d, const nn_named_tensors *params);
/* ad_backward(loss, NULL, flags), then the averaging a trainer's step
 * does: every attached parameter's grad becomes sum_r samples_r g_r /
 * sum_r samples_r.  With .overlap each bucket's MPI_Iallreduce starts as
 * soon as backward has produced all of its gradients
 * (ad_set_grad_ready_hook).  In: *samples this rank's batch size,
 * *mean_loss its mean loss; out: the total batch size and the mean loss
 * over all ranks.  Collective: every rank calls it once per step (a rank
 * whose backward failed still joins the reduction, then returns -1).
 * A parameter that some ranks' backward does not reach counts as zeros
 * there; one that none reaches keeps no gradient (see the top).
 * Errors: NULL arguments, nothing attached, backward's errors, MPI
 * failures, out of memory; a
 * trainer attached with the sharded update (only its own step can follow
 * a sharded reduction: use nn_dist_attach_params for a loop of your own),
 * refused on every rank before any reduction. */
AD_API int nn_dist_backward(nn_dist *d, ad_tensor *loss, unsigned flags, double *samples,
                            double *mean_loss);
/* The averaging alone, after a backward pass of your own. */
AD_API int nn_dist_average_grads(nn_dist *d, double *samples, double *mean_loss);
/* Undoes nn_dist_attach: tr trains alone again (after nn_dist_sync_state
 * on every rank when the update was sharded).  NULL d is ignored. */
AD_API void nn_dist_detach(nn_dist *d);

/* Broadcasts from rank 0 every tensor of list (the same names and shapes
 * on every rank, contiguous).  Collective.  nn_dist_attach uses it; call
 * it for tensors of your own. */
AD_API int nn_dist_broadcast(nn_dist *d, const nn_named_tensors *list);

/* With a sharded update (nn_dist_options.shard), makes the optimiser's
 * state whole on every rank: each rank's part of every state tensor (the
 * momentum buffers, Adam's averages) goes to all (the all-gather of the
 * sharded step).
 * nn_fit calls it at the end of every epoch; a loop of one's own over
 * nn_trainer_step calls it on every rank before rank 0's nn_trainer_save,
 * before reading nn_optim_state, and before nn_dist_detach when the
 * trainer goes on alone.  0 and nothing done when not sharded.
 * Collective.  Errors: NULL d, MPI failures. */
AD_API int nn_dist_sync_state(nn_dist *d);

/* nn_loader_shard(l, rank, world size): this rank's slice of every global
 * batch (nn/data.h says how). */
AD_API int nn_dist_shard(nn_dist *d, nn_loader *l);

/* A resuming nn_trainer_load on rank 0 only, then nn_dist_attach's
 * broadcast, so the file need exist on rank 0's machine alone, and a run
 * resumes on any number of ranks (the global batch is world size * the
 * per-rank batch; nn_fit continues the schedule from the saved epoch).
 * Collective; tr must be attached.  On rank 0's failure every rank returns
 * -1 with rank 0's message. */
AD_API int nn_dist_load(nn_dist *d, nn_trainer *tr, const char *path);

/* Sums values[0..n) over the ranks in place (MPI_Allreduce of doubles).
 * Collective. */
AD_API int nn_dist_sum(nn_dist *d, double *values, int n);

/* Prints "<prefix>rank R of W: error: <ad_error()>; ending every rank" to
 * stderr and ends every rank with MPI_Abort(code) (1 for 0).  For a
 * program's error path: a rank that returns instead leaves the others
 * blocked in their next collective.  d may be NULL (MPI_COMM_WORLD is
 * ended).  Returns -1 (after printing) when MPI is not initialised, or if
 * MPI_Abort returned. */
AD_API int nn_dist_abort(nn_dist *d, const char *prefix, int code);

/* Time spent averaging gradients since attach (or the last reset): the
 * reductions themselves, and packing and unpacking the buckets. */
typedef struct nn_dist_stats {
    int64_t steps;          /* gradient averagings */
    int buckets;            /* per step */
    int64_t bytes;          /* reduced per step, all buckets */
    double reduce_seconds;  /* in MPI_Allreduce / MPI_Wait or the shared-memory
                               reduction, summed over steps */
    double pack_seconds;    /* scaling in the buckets, copying buffers in and out */
    int64_t early_buckets;  /* reductions started during backward (.overlap), summed */
    /* Of reduce_seconds, the time spent waiting for every rank to arrive
     * (a barrier before the reductions), measured with the sleeping wait,
     * the shared-memory reduction (its first barrier) or NN_DIST_TIMING=1
     * in the environment (one barrier per step more with MPI's own wait);
     * 0 otherwise.  reduce_seconds minus this
     * is the reductions' own time, all ranks present. */
    double wait_seconds;
    int sharded;            /* 1 when the update is sharded (nn_dist_options.shard) */
    int shared_memory;      /* 1 when the reduction goes through shared memory */
} nn_dist_stats;
AD_API int nn_dist_get_stats(const nn_dist *d, nn_dist_stats *stats);
AD_API int nn_dist_reset_stats(nn_dist *d);

#ifdef __cplusplus
}
#endif
#endif

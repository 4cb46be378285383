/* nn/trainer.h - the training loop: a step on a replayed tape, evaluation,
 * fit over epochs with callbacks, checkpoints that resume exactly.
 *
 * What Keras' model.fit or Lightning's Trainer give Python users:
 *
 *     nn_optim *opt = nn_sgd(params, &(nn_sgd_options){.lr = 0.05, .momentum = 0.9});
 *     nn_trainer *tr = nn_trainer_new(net, NULL, opt,       // NULL: cross-entropy
 *                                     &(nn_trainer_options){.accuracy = true,
 *                                                           .schedule = NN_SCHEDULE_COSINE});
 *     nn_fit(tr, train, test, 5, &(nn_fit_options){.progress = stdout});
 *     nn_trainer_free(tr);                                   // then opt, net
 *
 * The step.  A training step is the same computation for every batch of a
 * shape; only the numbers change.  So the trainer records forward and loss
 * once per batch shape on a replayable tape, freezes it, and for every
 * batch replays it (ad_tape_replay: the batch is copied into the recorded
 * input leaves and every op recomputed in place), then runs backward with
 * AD_RETAIN_GRAPH and the optimiser's update.  From the second step of a
 * shape on, a step asks the system for no memory.  A loader gives at most
 * two shapes (full batches and a shorter last one); the trainer keeps
 * NN_TRAINER_MAX_SHAPES recordings per mode and steps a shape beyond those
 * without replay.  Replay fixes what the recording saw: the model's mode
 * and any C-level branch on a value.  A model whose forward branches in C
 * on data (not with tensor ops such as ReLU or ad_where, which replay
 * recomputes) must be trained with .no_replay, which records every step
 * afresh on a tape reset each time.  Dropout needs no such care: its mask
 * is a recorded op (ad_dropout), drawn anew from the layer's stream at
 * every replay, and the trainer puts the model's registered streams
 * (nn_module_set_rng) back after recording a shape, so a replayed run and
 * a .no_replay run from the same seed give the same bits.  A layer of your
 * own that draws noise should draw it with ad_rand_like / ad_randn_like
 * (ops that replay draws again; ad_rand and ad_randn make constants of the
 * recording) from an ad_rng it registers with nn_module_set_rng (it then
 * also goes into checkpoints).
 *
 * Freezing.  A parameter may be frozen or unfrozen (ad_set_requires_grad)
 * between steps, as in PyTorch: the next step records its batch shape
 * again when a tensor the recording reads changed requires_grad (a frozen
 * layer's ops were recorded with no gradient path), and the batch split's
 * threads differentiate the optimiser's parameters that require grad at
 * that step; a frozen parameter stays where it is (the optimiser skips
 * it: optim.h).  On one thread a step gives the bits of the loop it stands
 * for (zero_grad, backward, step; tests/test_trainer_ref.c).
 *
 * Ownership.  The trainer borrows the model and the optimiser (they must
 * outlive it; free them after nn_trainer_free) and owns its tapes.  Tensors
 * it hands out (nn_trainer_output) live on its tapes and are valid until
 * the next step or evaluation.
 *
 * Errors never abort: functions return -1 or NULL with ad_error() naming
 * the function ("nn_fit: training diverged: ...") and ad_errcode() the kind
 * (AD_ERR_NUMERIC for a non-finite loss, AD_ERR_IO for a checkpoint that
 * cannot be written or read).
 */
#ifndef NN_TRAINER_H
#define NN_TRAINER_H

#include <stdio.h>

#include "data.h"
#include "loss.h"
#include "module.h"
#include "optim.h"
#include "train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Batch shapes recorded for replay, per mode (training, evaluation). */
#define NN_TRAINER_MAX_SHAPES 4

/* A loss of the model's output and the target, reduced as asked: the
 * trainer records the training loss with NN_MEAN and the evaluation loss
 * with NN_SUM, so that a shorter last batch weighs what its samples do.
 * nn_mse_loss, nn_l1_loss and nn_nll_loss have this type; NULL means
 * nn_cross_entropy without label smoothing. */
typedef ad_tensor *(*nn_loss_fn)(ad_tensor *output, ad_tensor *target, nn_reduction reduction);

/* The learning rate per step, from the optimiser's rate when the trainer
 * was made (base) and the step t of nn_fit's whole run of T = epochs *
 * batches-per-epoch steps: t = (epoch - 1) * batches-per-epoch + batch - 1,
 * whatever steps the trainer took outside nn_fit (nn_trainer_step before
 * it, or in a callback). */
typedef enum nn_schedule {
    NN_SCHEDULE_CONSTANT = 0, /* the rate is left alone (set it yourself) */
    NN_SCHEDULE_COSINE        /* nn_lr_cosine(base, t, T, 0), set before each
                                 step: PyTorch's CosineAnnealingLR per step */
} nn_schedule;

typedef struct nn_trainer_options {
    /* Count correct predictions: the output is logits [N, C], the target
     * int64 labels [N]; the prediction is the first maximum of a row (a
     * NaN counts as the maximum, as in nn_confusion_update). */
    bool accuracy;
    /* Record every step afresh instead of replaying (see above). */
    bool no_replay;
    nn_schedule schedule;
} nn_trainer_options;

typedef struct nn_trainer nn_trainer;

/* A trainer of model with loss (NULL: cross-entropy) and optimiser opt
 * (whose parameters should be the model's).  opts may be NULL for the
 * defaults (zeroed fields).  Free with nn_trainer_free.  Errors: NULL model
 * or opt, an unknown schedule, out of memory. */
AD_API nn_trainer *nn_trainer_new(nn_module *model, nn_loss_fn loss, nn_optim *opt,
                           const nn_trainer_options *opts);
/* Frees the tapes and the trainer, not the model nor the optimiser.  NULL
 * is ignored. */
AD_API void nn_trainer_free(nn_trainer *tr);

/* One training step on batch (x, y): the model in training mode, the loss
 * (mean over the batch), backward into fresh gradients (as zero_grad and
 * then backward: AD_SET_GRAD, tape.h), the optimiser's update, with
 * the schedule's rate when nn_fit drives it.  x and y are read, not kept
 * (a loader's batches are fine).  Stores the batch's mean loss in *loss
 * when loss is not NULL.  Errors: NULL x or y, a failure of the model, the
 * loss or the optimiser (the message says which), a non-finite loss
 * (AD_ERR_NUMERIC: the parameters were not updated). */
AD_API int nn_trainer_step(nn_trainer *tr, ad_tensor *x, ad_tensor *y, double *loss);

/* The model's output of the last step or evaluation batch, on a tape of
 * the trainer: valid until its next step or evaluation, not to be freed.
 * After a step with the batch split (NN_THREADS_BATCH) it is the
 * output of the first shard, the batch's first rows.  NULL with an error
 * before any. */
AD_API ad_tensor *nn_trainer_output(const nn_trainer *tr);

/* Training steps run on `threads` threads (0 or 1: one thread, the
 * default), in one of two ways (nn_trainer_set_thread_mode): the batch
 * split among them, or each product and the optimiser's update split.
 * With the batch split (NN_THREADS_BATCH), each thread replays the
 * forward and loss of its contiguous shard of the batch on tapes of its
 * own (recorded on the calling thread the first time a shard shape comes
 * up) and differentiates it; the gradients, weighted by each shard's share
 * of the batch, are added in shard order and the optimiser steps once.
 * The threads are started at the first split step and wait between steps;
 * they, and the caller during a step, limit the kernels they call to
 * themselves (ad_set_num_threads(1)).  A thread's part of a step (its
 * shard, or its share of a product or of the update) that it has not
 * begun when the calling thread's own part is done runs on the calling
 * thread, with the same bits: a worker waiting for a core on a busy
 * machine costs the step its share of the work, not the wait.  The
 * calling thread's anomaly mode (ad_set_anomaly_mode) checks every shard;
 * its trace function and grad-ready hook (tape.h), being per thread, see
 * only the shards it runs itself (NN_THREADS_OPS steps run every op on
 * the calling thread, so they see the whole step).  Results: a seeded run with the same
 * thread count gives the same bits every time; another count groups the
 * sums differently and changes the last bits.  Requirement: the loss is a
 * mean of per-sample terms (all of nn's losses are).  Batches with fewer
 * rows than threads, non-contiguous batches, .no_replay, a model with
 * random streams (Dropout: the shards would draw from one stream in
 * whatever order the threads run), a model with buffers (BatchNorm: every
 * shard would update the one set of running statistics, and each would
 * normalise by its shard's statistics instead of the batch's), a model
 * whose loss reaches a tensor that requires grad and is not one of the
 * optimiser's parameters (its gradient adds up across steps, and the
 * shards compute only the parameters') and a worker of a data-parallel
 * run are not split: their steps run as
 * NN_THREADS_OPS.  The recording of the model, and with NN_THREADS_OPS
 * the evaluation (nn_trainer_evaluate, nn_fit's validation), run on the
 * calling thread with their large matrix products shared among the
 * trainer's threads (the same bits as on one thread) and their other
 * kernels on the calling thread alone, so that no OpenMP team starts
 * beside the trainer's threads (its idle threads would spin on their
 * cores); with NN_THREADS_BATCH the evaluation's kernels use OpenMP's
 * threads.  Errors: NULL tr, threads outside
 * 0..256.  Changing the count stops the old threads. */
AD_API int nn_trainer_set_threads(nn_trainer *tr, int threads);

/* How nn_trainer_set_threads's threads share a training step.
 *   NN_THREADS_BATCH  the batch split among them, as above: every op of
 *                     the step runs on a shard, and the threads' gradients
 *                     are summed; it pays per step about two passes over
 *                     the parameters' size per thread (the sum, and each
 *                     thread packing the weights for its products).
 *   NN_THREADS_OPS    one step on the whole batch, on the calling thread,
 *                     whose large matrix products (the built-in kernel,
 *                     through ad_set_parallel_runner) and optimiser update
 *                     the trainer's threads share: thread t always takes
 *                     the same run of a product's output columns (rows of
 *                     a weight's gradient), and the same rows of every
 *                     parameter in the update.  Other ops (elementwise,
 *                     small products) run as in a one-thread step, on the
 *                     calling thread or on OpenMP's threads.  A product
 *                     that OpenBLAS would run on one thread
 *                     (OPENBLAS_NUM_THREADS=1) is split on the built-in
 *                     kernel instead; one with threads of its own keeps
 *                     the product.  Nothing the size of the parameters is
 *                     summed or packed twice.  In nn_fit over an IDX
 *                     loader (nn_loader_from_idx) the threads, while they
 *                     wait for the calling thread, also convert the batch
 *                     the loader will hand out next, into a second
 *                     recording of the batch's shape (one recording more
 *                     in nn_trainer_get_stats) that the next step replays;
 *                     the loader's position moves only when the batch is
 *                     handed out, a callback that moves the loader is
 *                     obeyed (the rows converted ahead are dropped), and
 *                     the images must not change during nn_fit.  The bits
 *                     do not depend on the thread count: they are those
 *                     of a one-thread step with the built-in kernel for
 *                     the split products (with OpenBLAS, not the default
 *                     one-thread step's).  So the trainer times its steps
 *                     as they go, on the threads and, when those are not
 *                     10 % faster than the last steps timed so, with every
 *                     part on the calling thread (workers asleep, nothing
 *                     converted ahead), and runs the faster, timing again
 *                     now and then (nn_trainer_stats.serial_steps counts
 *                     the one-thread steps): on an idle machine the
 *                     threads, after ten one-thread steps; on a busy one,
 *                     where a worker waiting for a core held two-thread
 *                     steps to 0.6x one thread, mostly one thread.
 *   NN_THREADS_AUTO   (the default) chosen at the first step with more than
 *                     one thread, from its one-thread recording: OPS when
 *                     the parameters take at least half as many bytes as
 *                     the recording holds after the step (the batch, the
 *                     activations and what backward keeps: an MLP on a
 *                     small batch), BATCH otherwise (a convolutional
 *                     network).  The first step runs as OPS.  The choice depends on the model and the batch
 *                     shape only, so a seeded run stays reproducible;
 *                     nn_trainer_save keeps it, and a run resumed from
 *                     that checkpoint takes it from its first step, so
 *                     it goes on bit for bit as the uninterrupted run.
 * Models that the batch split refuses (above) run as OPS under every
 * mode.  Setting a mode, or another thread count, makes AUTO choose
 * again.  Errors: NULL tr, an unknown mode. */
typedef enum nn_thread_mode {
    NN_THREADS_AUTO = 0,
    NN_THREADS_BATCH = 1,
    NN_THREADS_OPS = 2
} nn_thread_mode;
AD_API int nn_trainer_set_thread_mode(nn_trainer *tr, nn_thread_mode mode);
/* The mode the trainer's steps use: the one set, or for NN_THREADS_AUTO
 * the one chosen (NN_THREADS_AUTO until the first step with more than
 * one thread has run).  -1 with an error for NULL tr. */
AD_API int nn_trainer_get_thread_mode(const nn_trainer *tr);
/* The thread count of training steps (1 when not split); -1 for NULL. */
AD_API int nn_trainer_get_threads(const nn_trainer *tr);

/* Figures of one pass over a data set. */
typedef struct nn_metrics {
    int64_t samples;  /* evaluated (or trained on) */
    double loss;      /* the loss's NN_MEAN over each batch, weighted by its
                       * rows: training and evaluation alike */
    double accuracy;  /* correct / samples, with .accuracy; NAN without */
} nn_metrics;

/* One pass over the loader (from the first batch of its current epoch, see
 * nn_loader_reset) in eval mode, on replayed evaluation tapes; the model's
 * mode is restored after.  Fills *out, and adds the predictions to cm when
 * cm is not NULL (logits [N, C] and int64 labels then).  Returns the number
 * of samples, -1 on error. */
AD_API int64_t nn_trainer_evaluate(nn_trainer *tr, nn_loader *loader, nn_confusion *cm,
                            nn_metrics *out);

/* What a callback of nn_fit is told after each step. */
typedef struct nn_step_info {
    int64_t epoch, epochs;        /* 1-based, of the run's last */
    int64_t batch, num_batches;   /* 1-based, in this epoch */
    int64_t step;                 /* steps done by the trainer, this one included */
    int64_t samples;              /* in this batch */
    double loss;                  /* the batch's mean loss */
    double lr;                    /* the rate this step used */
} nn_step_info;

/* ... and after each epoch (the evaluation on val included). */
typedef struct nn_epoch_info {
    int64_t epoch, epochs;
    nn_metrics train;             /* loss: mean over the epoch's samples */
    nn_metrics val;               /* samples 0 and NANs without val */
    double lr;                    /* the rate of the epoch's last step */
    double train_seconds;         /* the training steps alone */
    double seconds;               /* the epoch, evaluation included */
} nn_epoch_info;

/* Callbacks return 0 to go on, 1 to stop training after this step or
 * epoch (nn_fit returns 0), or -1 with ad_error() set to fail it. */
typedef int (*nn_step_callback)(nn_trainer *tr, const nn_step_info *info, void *user);
typedef int (*nn_epoch_callback)(nn_trainer *tr, const nn_epoch_info *info, void *user);

typedef struct nn_fit_options {
    /* A progress bar (nn_progress, options as given) and a line per epoch
     * with the evaluation on val; NULL prints nothing. */
    FILE *progress;
    const nn_progress_options *progress_options;
    /* Reset and filled by each epoch's evaluation on val (when both are
     * given): after nn_fit it holds the last epoch's predictions. */
    nn_confusion *val_confusion;
    nn_step_callback on_step;
    nn_epoch_callback on_epoch;   /* after the checkpoint of that epoch */
    void *user;                   /* passed to both */
    /* With a path, a checkpoint (nn_trainer_save) every checkpoint_every
     * epochs (0 means 1) and after the last, before on_epoch is called,
     * with checkpoint_metadata (a JSON object of strings or NULL) in it.
     * An epoch cut short by on_step is not saved; one stopped at its
     * last batch is whole: counted, saved and told to on_epoch. */
    const char *checkpoint;
    int64_t checkpoint_every;
    const char *checkpoint_metadata;
} nn_fit_options;

/* Trains until the trainer has done `epochs` epochs (Keras' epochs): a
 * fresh trainer runs epochs 1..epochs, one resumed from a checkpoint of
 * epoch k runs k+1..epochs, with the loader set to each epoch's order
 * (nn_loader_set_epoch) so that the resumed run sees the batches the
 * uninterrupted one would have.  After each epoch it evaluates on val when
 * val is not NULL.  The schedule spans epochs * batches-per-epoch steps;
 * a trainer resumed at epoch k (nn_trainer_load, nn_trainer_set_counts)
 * continues it from step k * batches-per-epoch (its step count is set so), so a run resumed with another batch size or
 * number of workers keeps a consistent schedule.  opts may be NULL.  Errors: NULL tr or train, epochs < 0, a loader
 * without labels, any step's, evaluation's, checkpoint's or callback's
 * error (training stops there; the parameters hold the last good step). */
AD_API int nn_fit(nn_trainer *tr, nn_loader *train, nn_loader *val, int64_t epochs,
           const nn_fit_options *opts);

/* ---- data-parallel training --------------------------------------------------
 * Several workers (processes, usually MPI ranks: nn/dist.h sets this up)
 * each run the same trainer on their shard of every batch.  The trainer
 * stays transport-free: it calls the hooks below, and nn/dist.h (built only
 * with MPI) fills them with MPI_Allreduce.  With a comm set:
 *   - a step runs backward, then average_grads, then the optimiser's
 *     update; the loss it reports (and checks for finiteness) is the mean
 *     over all workers' samples, so every worker decides alike;
 *   - nn_fit's figures (loss, accuracy, samples) and nn_trainer_evaluate's
 *     (and its confusion matrix) are summed over the workers with sum;
 *   - nn_fit prints progress and writes checkpoints only where rank is 0
 *     (the others' progress and checkpoint options are ignored). */
typedef struct nn_trainer_comm {
    int rank, world_size;          /* 0 <= rank < world_size */
    /* Replaces every parameter's gradient by the workers' average,
     * weighted by their batch sizes: sum_r samples_r g_r / sum_r samples_r
     * (the gradient of the mean loss over the union of the batches).  In:
     * this worker's batch size and mean loss; out: the sums' results, the
     * total batch size and the mean loss over it.  -1 with ad_error() set
     * on failure. */
    int (*average_grads)(void *user, double *samples, double *loss);
    /* Sums values[0..n) over the workers, in place, in the same order
     * everywhere (so every worker gets bit-identical sums). */
    int (*sum)(void *user, double *values, int n);
    void *user;
    /* Optional (NULL: all the work is in average_grads): called during
     * backward for each parameter as soon as its gradient is final
     * (ad_set_grad_ready_hook), with this worker's batch size, so that a
     * transport can start reducing the last layers' gradients while
     * backward computes the first layers'; average_grads then finishes. */
    int (*grad_ready)(void *user, ad_tensor *param, double samples);
    /* Optional (NULL: 1): the factor backward's seed gets for this
     * worker's batch of samples, d(loss)/d(loss) = scale instead of 1, so
     * that the gradients come out of backward already weighted as the
     * transport's sum wants them (n_r / sum_r n_r when it can tell) and
     * nothing has to pass over them again after the reduction. */
    double (*grad_scale)(void *user, double samples);
    /* Optional (NULL: nn_optim_step): the optimiser's step after
     * average_grads, for a transport that shards it (each worker updates
     * its part of the parameters, nn_optim_step_parts, and the workers
     * exchange the parts), leaving every worker's parameters those
     * nn_optim_step would give. */
    int (*optim_step)(void *user, nn_optim *opt);
    /* Optional: makes the optimiser's state whole on every worker (a
     * transport that shards the update keeps each part's state current
     * only on the worker that updates it).  Collective: nn_fit calls it on
     * every worker at the end of each epoch, before the first worker
     * writes its checkpoint. */
    int (*sync_state)(void *user, nn_optim *opt);
} nn_trainer_comm;

/* Makes tr one worker of a data-parallel run (comm is copied); NULL makes
 * it a lone trainer again.  Errors: NULL tr, a hook missing, rank outside
 * [0, world_size). */
AD_API int nn_trainer_set_comm(nn_trainer *tr, const nn_trainer_comm *comm);

/* The model and optimiser the trainer was made with (borrowed). */
AD_API nn_module *nn_trainer_model(const nn_trainer *tr);
AD_API nn_optim *nn_trainer_optimizer(const nn_trainer *tr);

/* Sets the epoch and step counts, as a resuming nn_trainer_load does (for
 * a worker that got the state from another one rather than from a file).
 * Errors: NULL tr, a count below 0 or above 2^62. */
AD_API int nn_trainer_set_counts(nn_trainer *tr, int64_t epoch, int64_t steps);

/* Epochs and steps the trainer has completed (restored by a resuming
 * load); -1 with an error for NULL. */
AD_API int64_t nn_trainer_epoch(const nn_trainer *tr);
AD_API int64_t nn_trainer_steps(const nn_trainer *tr);

/* How the steps ran: recordings made, replays since, and the tapes' sizes. */
typedef struct nn_trainer_stats {
    int recordings;               /* training tapes recorded (one per shape, and
                                     one per shard shape and thread when split) */
    int64_t replays;              /* training steps that replayed a recording */
    size_t nodes;                 /* ops of the largest training recording */
    size_t arena_reserved;        /* bytes the training tapes hold */
    size_t arena_chunks;          /* system allocations they hold */
    int64_t serial_steps;         /* NN_THREADS_OPS steps that ran on the calling
                                     thread alone: measured faster there (a busy
                                     machine), or measuring it */
} nn_trainer_stats;
AD_API int nn_trainer_get_stats(const nn_trainer *tr, nn_trainer_stats *stats);

/* Saves the model's state_dict (parameters and buffers under their names,
 * as nn_state_dict gives them), the optimiser's state under "optim.<name>",
 * the model's random streams (nn_module_set_rng: Dropout's mask stream)
 * as "module_rng.<path>" (int64 [2], as nn/state.h) and the trainer's
 * epoch and step counts and the optimiser's learning rate (a hexadecimal
 * float: a callback's lr too) as metadata, atomically, to a
 * safetensors file; metadata_json (a JSON object of strings, or NULL) is
 * added to the metadata.  Errors: as nn_save_safetensors, and a key of
 * metadata_json that the trainer uses ("nn_trainer_epoch",
 * "nn_trainer_step", "nn_trainer_lr"). */
AD_API int nn_trainer_save(const nn_trainer *tr, const char *path, const char *metadata_json);

/* Loads a checkpoint into the model.  With resume, also the optimiser's
 * state, its learning rate (when the file has one: files saved before it
 * was kept leave it as it is) and the epoch and step counts (the file must come from
 * nn_trainer_save), so that nn_fit continues exactly where the saved run
 * was; without, the model's tensors alone (the optimiser and counts are
 * left as they are), from any file holding them under their state_dict
 * names.  Strict and all-or-nothing as nn_load_safetensors: an entry of the
 * file that is not loaded is an error, and nothing changes on an error. */
AD_API int nn_trainer_load(nn_trainer *tr, const char *path, bool resume);

#ifdef __cplusplus
}
#endif
#endif

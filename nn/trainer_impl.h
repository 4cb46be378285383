/* nn/trainer_impl.h - the trainer's structure, shared by trainer.c (the
 * loop, evaluation), trainer_checkpoint.c and trainer_threads.c (a batch
 * split among threads); never installed. */
#ifndef NN_TRAINER_IMPL_H
#define NN_TRAINER_IMPL_H

#include "trainer.h"

/* One recording: the tape, the input leaves the batch is copied into, and
 * the output and loss the replay recomputes.  tape NULL: slot unused. */
typedef struct rec {
    ad_tape *tape;
    ad_dtype xdt, ydt;
    int xnd, ynd;
    int64_t xshape[AD_MAX_DIMS], yshape[AD_MAX_DIMS];
    ad_tensor *x, *y, *out, *loss;
    bool set_grads; /* nn__trainer_may_set_grads of the recording */
    /* The leaves its ops read (each once) and whether each required grad
     * when it was recorded (nn__rec_stale). */
    const ad_tensor **leaf;
    bool *leaf_rg;
    int nleaf;
} rec;

typedef struct pool pool;

struct nn_trainer {
    pool *pool;              /* the batch split among threads, or NULL */
    int threads;             /* nn_trainer_set_threads; <= 1: one thread */
    int thread_mode;         /* nn_trainer_set_thread_mode (nn_thread_mode) */
    int chosen;              /* NN_THREADS_AUTO's choice; 0 until it is made */
    int chosen_saved;        /* the choice a resumed checkpoint holds (0: none), taken
                              * at the first step instead of choosing after it */
    bool drop_whole;         /* free train[] at the next split step */
    bool ops;                /* in a step with NN_THREADS_OPS's runner */
    bool aside;              /* recording or evaluating on the threads (nn__aside_begin) */
    rec *pre_r;              /* nn__trainer_next_batch filled its leaves */
    const ad_tensor *pre_x;  /* ... with the batch handed out as this */
    nn_module *model;
    nn_loss_fn loss;
    nn_optim *opt;
    nn_trainer_options o;
    double base_lr;
    rec train[NN_TRAINER_MAX_SHAPES], eval[NN_TRAINER_MAX_SHAPES];
    ad_tape *scratch;        /* steps without replay, reset before each */
    ad_tensor *out, *y;      /* of the last step or evaluation batch */
    int64_t epoch, steps, replays;
    int64_t serial_steps;    /* NN_THREADS_OPS steps run on this thread alone */
    int64_t fit_total;       /* steps of the current nn_fit, for the schedule */
    nn_trainer_comm comm;    /* world_size 0: alone */
    bool resumed;            /* counts set by a load, not by training here */
    bool step_set;           /* this step's backward may set the gradients */
};

/* Records forward and loss on a new frozen replayable tape for the dtypes
 * and shapes already in *r (its other fields zero); the leaves hold zeros
 * until a replay copies a batch in.  -1 on error, *r freed.  record_batch
 * first sets *r to the dtypes and shapes of batch (x, y). */
int nn__trainer_record(nn_trainer *tr, rec *r, bool training);
int nn__trainer_record_batch(nn_trainer *tr, rec *r, const ad_tensor *x, const ad_tensor *y,
                             bool training);
/* Whether a backward pass over tape's recording may set the gradients it
 * writes (AD_SET_GRAD) rather than add to them: when every leaf it reaches
 * that requires grad is one of the optimiser's parameters.  Any other (a
 * parameter the optimiser does not hold, a tensor whose gradient the
 * program reads) keeps its accumulation across steps, as in PyTorch, where
 * zero_grad clears only the optimiser's: then a step zeroes those and
 * adds, as it always did. */
bool nn__trainer_may_set_grads(const nn_trainer *tr, const ad_tape *tape);
/* Whether recording r takes batch (x, y): the same dtypes and shapes. */
bool nn__rec_matches(const rec *r, const ad_tensor *x, const ad_tensor *y);
/* Whether a leaf that r's ops read requires grad now and did not when r
 * was recorded, or the other way round (a layer unfrozen or frozen since):
 * r's gradient paths and set_grads are those of the recording, so it
 * must be recorded again before it is replayed (ad_tape_replay refuses an
 * unfrozen input on a path recorded for replay only). */
bool nn__rec_stale(const rec *r);
void nn__rec_free(rec *r);

/* Rows of logits [N, C] whose prediction is the label, added to *correct. */
int nn__count_correct(const char *fn, ad_tensor *logits, ad_tensor *labels, int64_t *correct);

/* trainer_threads.c: the step with the batch split among tr->threads
 * threads.  Returns as the step does (0, 1 for a non-finite loss, -1 on
 * error), or 2 when this batch cannot be split (fewer rows than threads, a
 * non-contiguous batch, a leaf outside the optimiser): the caller then
 * runs the one-thread step. */
int nn__trainer_step_split(nn_trainer *tr, const char *fn, ad_tensor *x, ad_tensor *y,
                           double *loss, int64_t *correct);
/* The thread mode the next step uses (nn_trainer_get_thread_mode), and
 * NN_THREADS_AUTO's choice, made after the first step with threads (from
 * its one-thread recording) and stored in tr->chosen. */
int nn__trainer_mode(const nn_trainer *tr);
void nn__trainer_choose_mode(nn_trainer *tr);
/* NN_THREADS_OPS: begin sets the pool's threads as this thread's kernel
 * runner (ad_set_parallel_runner; 0, or -1 with an error), end removes
 * it; optim_step is nn_optim_step with the update split among the
 * threads. */
int nn__ops_begin(nn_trainer *tr);
void nn__ops_end(void);
/* nn__ops_begin for a training step, which first notes the previous
 * step's time and chooses whether this one runs its parts on the threads
 * or on this thread alone (trainer_ops.c, "whether the threads pay"). */
int nn__ops_step_begin(nn_trainer *tr);
void nn__ops_step_end(nn_trainer *tr);
/* Before a pause in the steps (nn_fit's epoch begins after an evaluation):
 * the time until the next step is not a step's. */
void nn__ops_tune_gap(nn_trainer *tr);
/* The trainer's work on the calling thread outside a step (recording,
 * evaluating), with tr->threads > 1: its products on the trainer's
 * threads too, its other kernels on this thread alone, so that no OpenMP
 * team is started beside the trainer's threads (trainer_ops.c says why).
 * begin returns 1 when it did so (*prev: the kernels' limit to give back
 * to end), 0 when there is nothing to do (one thread, or already in a
 * step or inside another begin), -1 with an error; end takes that value
 * back. */
int nn__aside_begin(nn_trainer *tr, int *prev);
void nn__aside_end(nn_trainer *tr, int began, int prev);
int nn__ops_optim_step(nn_trainer *tr);
/* ... and the batch (x, y) copied into the leaves of recording r (whose
 * shapes and dtypes match) by the threads: 0, or 1 when the batch is small
 * or not contiguous (the replay copies it then), -1 on error. */
int nn__ops_load(nn_trainer *tr, rec *r, ad_tensor *x, ad_tensor *y);
/* Frees a pool's runs of rows (trainer_ops.c); NULL is fine. */
struct ops_runs;
void nn__ops_runs_free(struct ops_runs *r);
/* nn_loader_next for nn_fit's training batches.  When the step will
 * replay the batch's recording on this thread (one thread, or
 * NN_THREADS_OPS) and it is made, the batch is converted straight into the
 * recording's leaves (tr->pre_r, tr->pre_x: the next step's forward then
 * replays them as they are) and *x and *y keep their old values: only the
 * step that follows may see them.  Otherwise as nn_loader_next. */
int nn__trainer_next_batch(nn_trainer *tr, nn_loader *l, ad_tensor **x, ad_tensor **y);
/* The training recording that forward would replay for batch (x, y), or
 * NULL when it is not made yet (or replay is off). */
rec *nn__trainer_train_rec(nn_trainer *tr, const ad_tensor *x, const ad_tensor *y);
/* NN_THREADS_OPS in nn_fit: the next batch converted by the waiting
 * threads (trainer_prefetch.c).  A job: post (the batch that the loader
 * will hand out next, and the recording whose leaves it goes into; its
 * indices are copied); row (a thread's share: converts one row, false
 * when none is left); take (the calling thread closes the job, finishing
 * its rows when bt has the job's samples, and returns its recording then,
 * NULL otherwise; bt NULL: the job's rows are dropped); target (the
 * recording of the job under way, or NULL).  Free it after the threads
 * that call row have stopped. */
typedef struct nn__prefetch nn__prefetch;
nn__prefetch *nn__prefetch_new(void);
void nn__prefetch_free(nn__prefetch *f);
bool nn__prefetch_open(nn__prefetch *f);
bool nn__prefetch_row(nn__prefetch *f);
rec *nn__prefetch_take(nn__prefetch *f, const struct nn__batch *bt);
int nn__prefetch_post(nn__prefetch *f, const struct nn__batch *next, rec *target);
rec *nn__prefetch_target(const nn__prefetch *f);
/* Drops the job of tr's threads, if any, when it converts into r's leaves
 * (any job for r NULL): before r is replayed, freed, or the threads'
 * use changes. */
void nn__trainer_prefetch_stop(nn_trainer *tr, const rec *r);

/* Adds recording r's tape to *s (nothing without one); -1 on error. */
int nn__rec_add_stats(const rec *r, nn_trainer_stats *s);
/* Adds the shards' recordings to *s (nothing for NULL). */
int nn__pool_stats(const pool *p, nn_trainer_stats *s);
/* Stops the threads and frees their recordings; NULL is ignored. */
void nn__pool_free(pool *p);

#endif

/* nn/trainer_impl.h - the trainer's structure, shared by trainer.c (the
 * loop, evaluation, checkpoints) and trainer_threads.c (a batch split among
 * threads); never installed. */
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
} rec;

typedef struct pool pool;

struct nn_trainer {
    pool *pool;              /* the batch split among threads, or NULL */
    int threads;             /* nn_trainer_set_threads; <= 1: one thread */
    nn_module *model;
    nn_loss_fn loss;
    nn_optim *opt;
    nn_trainer_options o;
    double base_lr;
    rec train[NN_TRAINER_MAX_SHAPES], eval[NN_TRAINER_MAX_SHAPES];
    ad_tape *scratch;        /* steps without replay, reset before each */
    ad_tensor *out, *y;      /* of the last step or evaluation batch */
    int64_t epoch, steps, replays;
    int64_t fit_total;       /* steps of the current nn_fit, for the schedule */
    nn_trainer_comm comm;    /* world_size 0: alone */
    bool resumed;            /* counts set by a load, not by training here */
};

/* Records forward and loss on a new frozen replayable tape for the dtypes
 * and shapes already in *r (its other fields zero); the leaves hold zeros
 * until a replay copies a batch in.  -1 on error, *r freed. */
int nn__trainer_record(nn_trainer *tr, rec *r, bool training);
void nn__rec_free(rec *r);

/* Rows of logits [N, C] whose prediction is the label, added to *correct. */
int nn__count_correct(const char *fn, ad_tensor *logits, ad_tensor *labels, int64_t *correct);

/* trainer_threads.c: the step with the batch split among tr->threads
 * threads.  Returns as the step does (0, 1 for a non-finite loss, -1 on
 * error), or 2 when this batch cannot be split (fewer rows than threads, a
 * non-contiguous batch): the caller then runs the one-thread step. */
int nn__trainer_step_split(nn_trainer *tr, const char *fn, ad_tensor *x, ad_tensor *y,
                           double *loss, int64_t *correct);
/* Adds the shards' recordings to *s (nothing for NULL). */
int nn__pool_stats(const pool *p, nn_trainer_stats *s);
/* Stops the threads and frees their recordings; NULL is ignored. */
void nn__pool_free(pool *p);

#endif

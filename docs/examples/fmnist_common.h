/* docs/examples/fmnist_common.h - what fmnist_mlp.c and fmnist_cnn.c share.
 *
 * The training itself is the nn layer's trainer (<nn/trainer.h>): a step
 * replayed on a recorded tape, evaluation, fit over epochs.  What is left
 * here is what belongs to these two programs: their command line, the
 * Fashion-MNIST files and loaders, the checkpoint's "arch" check, the loss
 * curve and the JSON summary.  A program is
 *
 *     fm_run run;
 *     int status = fm_start(&run, &recipe, argc, argv);  // options, data
 *     if (status != FM_GO) return status;
 *     ... build the model, its optimiser, nn_trainer_new ...
 *     int rc = fm_prepare(&run, net, tr) ? -1 : nn_fit(tr, run.train, run.test, run.epochs, &run.fit);
 *     status = fm_finish(&run, tr, rc);                   // report, save, JSON
 *
 * See docs/training.md for how to run them and what they reach.
 */
#ifndef FMNIST_COMMON_H
#define FMNIST_COMMON_H

#include <nn/nn.h>
#include <stdio.h>

typedef struct fm_recipe {
    /* Names the architecture: the program's name in messages, and the
     * "arch" metadata of its checkpoints, checked when one is loaded so
     * that an MLP checkpoint is never fed to the CNN. */
    const char *arch;
    /* One line for the start of the run, e.g. "MLP 784-256-10". */
    const char *description;
    /* The shape of one image as the network's first layer wants it (the
     * loader reshapes the stored 28x28 for us): {784} for a Linear layer,
     * {1, 28, 28} (channels, height, width) for a convolution. */
    int sample_ndim;
    int64_t sample_shape[3];
    /* The default recipe, each overridable on the command line. */
    int epochs;
    int64_t batch;
    double lr, momentum;
    /* Images per evaluation batch: larger is faster, but a convolution's
     * intermediates grow with it (see fmnist_cnn.c). */
    int64_t eval_batch;
} fm_recipe;

/* fm_start's "carry on" (any other value is the exit status). */
enum { FM_GO = -1 };

/* A run: the options as given on the command line, the data, and what the
 * report needs.  The fields above the line are for the program. */
typedef struct fm_run {
    uint64_t seed;
    int64_t epochs;
    double lr, momentum;
    nn_loader *train, *test;
    nn_fit_options fit; /* progress, the curve's callbacks, the confusion matrix */
    /* ------------------------------------------------------------------ */
    struct fm_private *p;
} fm_run;

/* Parses the command line and loads the data and loaders.  FM_GO to carry
 * on (fm_finish then frees what it made); otherwise the exit status, the
 * message printed and everything freed: 0 after --help, 1 for a runtime
 * error (data, I/O), 2 for a usage error. */
int fm_start(fm_run *r, const fm_recipe *recipe, int argc, char **argv);
/* Before training: loads --load into the trainer's model (weights only,
 * refusing another architecture), prints the model's summary and opens
 * --curve.  -1 with ad_error() set on failure. */
int fm_prepare(fm_run *r, nn_module *net, nn_trainer *tr);
/* After nn_fit returned rc: on success, evaluates (when no epoch was run),
 * writes --curve's plot, --save, the accuracy and confusion matrix, the
 * JSON line; on failure prints ad_error().  Frees what fm_start made (not
 * the trainer) and returns the exit status. */
int fm_finish(fm_run *r, nn_trainer *tr, int rc);

#endif

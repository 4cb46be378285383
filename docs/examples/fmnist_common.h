/* docs/examples/fmnist_common.h - what fmnist_mlp.c and fmnist_cnn.c share.
 *
 * The two programs differ only in the network they build and the recipe
 * (epochs, batch, learning rate) that trains it well; everything else -
 * options, data loading, the training loop on a replayed tape, evaluation,
 * checkpoints, the loss curve and the JSON summary - is here, in
 * fmnist_common.c.  A program describes its model in an fm_model and hands
 * over to fm_main():
 *
 *     static nn_module *build(ad_rng *rng) { return NN_SEQUENTIAL(...); }
 *     int main(int argc, char **argv) {
 *         static const fm_model model = {.arch = "fmnist_mlp", ...};
 *         return fm_main(&model, argc, argv);
 *     }
 *
 * See docs/training.md for how to run them and what they reach.
 */
#ifndef FMNIST_COMMON_H
#define FMNIST_COMMON_H

#include <nn/nn.h>

typedef struct fm_model {
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
    /* Makes a fresh, randomly initialised network from rng (NULL with
     * ad_error() set on failure). */
    nn_module *(*build)(ad_rng *rng);
} fm_model;

/* Parses the command line (see usage in fmnist_common.c or
 * docs/training.md), trains and evaluates model, and returns the process's
 * exit status: 0 on success, 1 for a runtime error (data, checkpoint, I/O),
 * 2 for a usage error (unknown option, invalid value). */
int fm_main(const fm_model *model, int argc, char **argv);

#endif

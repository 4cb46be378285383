/* docs/examples/fmnist_mlp.c - a multilayer perceptron for Fashion-MNIST.
 *
 *     image 28x28 -> 784 inputs -> Linear(784, 256) -> ReLU -> Linear(256, 10)
 *
 * Each of the 256 hidden units computes a weighted sum of all 784 pixels
 * and keeps it if positive (ReLU); the last layer turns those 256 features
 * into 10 scores (logits), one per class.  Training minimises the
 * cross-entropy of softmax(logits) against the true class.  The network
 * sees the image as a flat vector: it knows nothing of which pixels are
 * neighbours (fmnist_cnn.c does), which is why it tops out below the CNN.
 *
 * Default recipe: 5 epochs, batch 64, SGD momentum 0.9, lr 0.05 on a
 * cosine schedule; it reaches about 88.5% test accuracy (docs/training.md).
 *
 *     build/docs/examples/fmnist_mlp                  # train, evaluate
 *     build/docs/examples/fmnist_mlp --help           # every option
 *
 * The training loop is nn's trainer (nn/trainer.h); options, data and the
 * report are in fmnist_common.c.
 */
#include "fmnist_common.h"

static const fm_recipe recipe = {
    .arch = "fmnist_mlp",
    .description = "MLP 784-256-ReLU-10",
    .sample_ndim = 1, /* the loader flattens each 28x28 image into 784 inputs */
    .sample_shape = {784},
    .epochs = 5,
    .batch = 64,
    .lr = 0.05,
    .momentum = 0.9,
    .eval_batch = 1000,
};

int main(int argc, char **argv)
{
    fm_run run;
    int status = fm_start(&run, &recipe, argc, argv); /* options, data, loaders */
    if (status != FM_GO) return status;

    /* Each layer draws its initial weights from rng (PyTorch's defaults,
     * nn/init.h), so the seed fixes the starting point.  A NULL from any
     * constructor makes NN_SEQUENTIAL fail and free the others. */
    ad_rng rng;
    ad_rng_init(&rng, run.seed);
    nn_module *net = NN_SEQUENTIAL(nn_linear(784, 256, true, AD_FLOAT32, &rng),
                                   nn_relu(),
                                   nn_linear(256, 10, true, AD_FLOAT32, &rng));

    /* PyTorch's SGD (v <- momentum v + g, w <- w - lr v), its rate glided
     * to 0 along a cosine over all the steps by the trainer; the loss is
     * cross-entropy (NULL), and the accuracy is counted as it trains. */
    nn_optim *sgd = nn_sgd_module(net, &(nn_sgd_options){.lr = run.lr, .momentum = run.momentum});
    nn_trainer *tr = sgd ? nn_trainer_new(net, NULL, sgd,
                                          &(nn_trainer_options){.accuracy = true,
                                                                .schedule = NN_SCHEDULE_COSINE})
                         : NULL;

    int rc = fm_prepare(&run, net, tr) ? -1 : nn_fit(tr, run.train, run.test, run.epochs, &run.fit);
    status = fm_finish(&run, tr, rc); /* accuracy, confusion matrix, --save, --json */
    nn_trainer_free(tr);
    nn_optim_free(sgd);
    nn_module_free(net);
    return status;
}

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
 * The training loop, data loading and the rest are in fmnist_common.c.
 */
#include "fmnist_common.h"

static nn_module *build(ad_rng *rng)
{
    /* Each layer draws its initial weights from rng (PyTorch's defaults,
     * see nn/init.h), so the seed fixes the starting point.  A NULL from
     * any constructor makes NN_SEQUENTIAL fail and free the others, so
     * one check by the caller covers all. */
    return NN_SEQUENTIAL(nn_linear(784, 256, true, AD_FLOAT32, rng),
                         nn_relu(),
                         nn_linear(256, 10, true, AD_FLOAT32, rng));
}

int main(int argc, char **argv)
{
    static const fm_model model = {
        .arch = "fmnist_mlp",
        .description = "MLP 784-256-ReLU-10",
        /* the loader flattens each 28x28 image into the 784 inputs */
        .sample_ndim = 1,
        .sample_shape = {784},
        .epochs = 5,
        .batch = 64,
        .lr = 0.05,
        .momentum = 0.9,
        .eval_batch = 1000,
        .build = build,
    };
    return fm_main(&model, argc, argv);
}

/* docs/examples/fmnist_cnn.c - a small convolutional network for
 * Fashion-MNIST.
 *
 *     [N,1,28,28] -> Conv2d(1, 32, 3x3) -> ReLU      [N,32,26,26]
 *                 -> Conv2d(32, 32, 3x3) -> ReLU     [N,32,24,24]
 *                 -> MaxPool 2x2                     [N,32,12,12]
 *                 -> Flatten                         [N,4608]
 *                 -> Linear(4608, 128) -> ReLU -> Linear(128, 10)
 *
 * A convolution slides one small 3x3 filter over the whole image, so a
 * feature (an edge, a strap, a collar) is detected wherever it is, with 9
 * weights per input channel instead of one per pixel; stacking two sees
 * 5x5 patches.  Max-pooling keeps the strongest response in each 2x2
 * block, halving the resolution and allowing small shifts.  The MLP of
 * fmnist_mlp.c has to learn each feature at each position separately.
 *
 * Both convolutions (stride 1, one group) run the library's direct
 * convolution kernel, which slides the filters over each image's padded
 * planes while they are in cache.  Each is followed by a ReLU, which the
 * Sequential applies inside the convolution as it stores its output
 * (ad_conv2d_relu: the same numbers, one pass and one tensor fewer per
 * layer).  Evaluation uses batches of 100, which keeps the activations of
 * a batch small.
 *
 * Default recipe: 2 epochs, batch 64, SGD momentum 0.9, lr 0.02 on a
 * cosine schedule; about 90.5% test accuracy (docs/training.md).  It costs
 * about 30 times the MLP's arithmetic per image (6.1 million multiply-adds
 * forward, most in the second convolution): minutes, not seconds.
 *
 *     build/docs/examples/fmnist_cnn
 *
 * The training loop is nn's trainer (nn/trainer.h); options, data and the
 * report are in fmnist_common.c.
 */
#include "fmnist_common.h"

static const fm_recipe recipe = {
    .arch = "fmnist_cnn",
    .description = "CNN conv32-conv32-maxpool-128-10",
    .sample_ndim = 3, /* channels, height, width: batches of [N,1,28,28] */
    .sample_shape = {1, 28, 28},
    .epochs = 2,
    .batch = 64,
    .lr = 0.02,
    .momentum = 0.9,
    .eval_batch = 100,
};

int main(int argc, char **argv)
{
    fm_run run;
    int status = fm_start(&run, &recipe, argc, argv); /* options, data, loaders */
    if (status != FM_GO) return status;

    /* NULL convolution parameters: stride 1, no padding, so each 3x3
     * convolution trims one pixel from every border (28 -> 26 -> 24). */
    const int k3[2] = {3, 3}, k2[2] = {2, 2};
    ad_rng rng;
    ad_rng_init(&rng, run.seed);
    nn_module *net = NN_SEQUENTIAL(nn_conv2d(1, 32, k3, NULL, true, AD_FLOAT32, &rng),
                                   nn_relu(),
                                   nn_conv2d(32, 32, k3, NULL, true, AD_FLOAT32, &rng),
                                   nn_relu(),
                                   nn_max_pool2d(k2, NULL, NULL),
                                   nn_flatten(1, -1),
                                   nn_linear(32 * 12 * 12, 128, true, AD_FLOAT32, &rng),
                                   nn_relu(),
                                   nn_linear(128, 10, true, AD_FLOAT32, &rng));

    /* SGD with momentum on a per-step cosine schedule, cross-entropy. */
    nn_optim *sgd = nn_sgd_module(net, &(nn_sgd_options){.lr = run.lr, .momentum = run.momentum});
    nn_trainer *tr = sgd ? nn_trainer_new(net, NULL, sgd,
                                          &(nn_trainer_options){.accuracy = true,
                                                                .schedule = NN_SCHEDULE_COSINE})
                         : NULL;

    int rc = fm_prepare(&run, net, tr) ? -1 : nn_fit(tr, run.train, run.test, run.epochs, &run.fit);
    status = fm_finish(&run, tr, rc);
    nn_trainer_free(tr);
    nn_optim_free(sgd);
    nn_module_free(net);
    return status;
}

/* tests/dist_samples.c - nn_dist_backward with a given sample count on
 * each rank, driven by tests/test_dist.py under mpirun:
 *
 *   dist_samples n_0 n_1 ... n_{W-1}
 *
 * Rank r takes the next n_r samples of a fixed least-squares problem,
 * loss_r = mean_i (w . x_i - t_i)^2 over its samples (0 * sum(w) when it
 * has none, so that its backward still reaches w), and calls
 * nn_dist_backward.  After it every rank's w.grad must be the gradient of
 * the mean over all N = sum_r n_r samples, (2 / N) sum_i (w . x_i - t_i)
 * x_i, computed here directly.  A rank with no samples was seeded with 0,
 * which the reduction once took for "not seeded" and scaled that rank's
 * result by n0 / N instead of W n0 / N: half the gradient at 2 ranks.
 * When N is 0 every rank must get an error instead of NaN gradients.
 * Exits 0 when all of that holds, 1 (with a message) when not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff/autodiff.h"
#include "nn/dist.h"
#include "nn/nn.h"

#define D 3
#define MAXN 64

static double feature(int i, int k) { return sin(1.3 * i + 0.7 * k); }
static double target(int i) { return cos(0.9 * i); }

int main(int argc, char **argv)
{
    nn_dist *d = nn_dist_init(&argc, &argv, NULL);
    if (!d) {
        fprintf(stderr, "dist_samples: %s\n", ad_error());
        return 1;
    }
    int rank = nn_dist_rank(d), world = nn_dist_world_size(d);
    if (argc != 1 + world) nn_dist_abort(d, "usage: dist_samples n_0 ... n_{W-1}", 2);
    int first = 0, total = 0, mine = 0;
    for (int r = 0; r < world; r++) {
        int n = atoi(argv[1 + r]);
        if (n < 0 || n > MAXN) nn_dist_abort(d, "a sample count is outside 0..64", 2);
        if (r < rank) first += n;
        if (r == rank) mine = n;
        total += n;
    }
    double wv[D] = {0.1, -0.2, 0.3};
    ad_tensor *w = ad_leaf(NULL, AD_FLOAT64, AD_SHAPE(D), wv);
    ad_tensor *ts[1] = {w};
    const char *names[1] = {"w"};
    nn_named_tensors *ps = nn_named_tensors_new(1, names, ts);
    if (!w || !ps || nn_dist_attach_params(d, ps)) nn_dist_abort(d, "attach: ", 1);

    double want[D] = {0};
    for (int i = 0; i < total; i++) {
        double r = -target(i);
        for (int k = 0; k < D; k++) r += wv[k] * feature(i, k);
        for (int k = 0; k < D; k++) want[k] += 2 * r * feature(i, k) / total;
    }

    int bad = 0;
    for (int step = 0; step < 2; step++) { /* the second: n0 as the first left it; every
                                             * rank runs both, failing or not */
        ad_tape *tape = ad_tape_new();
        double xs[MAXN * D], tv[MAXN];
        for (int i = 0; i < mine; i++) {
            for (int k = 0; k < D; k++) xs[i * D + k] = feature(first + i, k);
            tv[i] = target(first + i);
        }
        ad_tensor *loss;
        ad_tape *was = ad_tape_activate(tape);
        if (mine > 0) {
            ad_tensor *x = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(mine, D), xs);
            ad_tensor *t = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(mine, 1), tv);
            ad_tensor *r = ad_sub(ad_matmul(x, ad_reshape(w, AD_SHAPE(D, 1))), t);
            loss = ad_mean_all(ad_mul(r, r));
        } else {
            loss = ad_mul_scalar(ad_sum(w, NULL, 0, false), 0.0);
        }
        ad_tape_activate(was);
        if (!loss) nn_dist_abort(d, "forward: ", 1);
        ad_zero_grad(w);
        double samples = mine, mean_loss = ad_item(loss);
        int rc = nn_dist_backward(d, loss, 0, &samples, &mean_loss);
        ad_tape_free(tape);
        if (total == 0) {
            /* every rank alike, so no rank waits for another */
            if (rc == 0 || !strstr(ad_error(), "no rank had a sample")) {
                fprintf(stderr, "rank %d: no samples anywhere: rc %d, '%s'\n", rank, rc, ad_error());
                bad = 1;
            }
            break;
        }
        if (rc) nn_dist_abort(d, "nn_dist_backward: ", 1);
        const double *g = ad_data(ad_tensor_grad(w));
        for (int k = 0; k < D; k++)
            if (!(fabs(g[k] - want[k]) <= 1e-12 * (1 + fabs(want[k])))) {
                fprintf(stderr, "rank %d step %d: grad[%d] %.17g, want %.17g (samples %g of %d)\n",
                        rank, step, k, g[k], want[k], samples, total);
                bad = 1;
            }
        if (samples != total) {
            fprintf(stderr, "rank %d: samples %g, want %d\n", rank, samples, total);
            bad = 1;
        }
    }
    nn_named_tensors_free(ps);
    ad_tensor_free(w);
    nn_dist_finalize(d);
    return bad;
}

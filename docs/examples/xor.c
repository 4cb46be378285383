/* docs/examples/xor.c - the classic: a 2-4-1 network learns XOR by
 * backpropagation and plain gradient descent.
 *
 *     x1 x2 | y        No single line separates the 1s from the 0s in the
 *      0  0 | 0        plane, so a network without a hidden layer cannot
 *      0  1 | 1        learn XOR (Minsky and Papert, 1969).  A hidden layer
 *      1  0 | 1        of tanh units bends the plane so that one line does.
 *      1  1 | 0
 *
 * The network, for the four inputs at once (X is [4,2]):
 *     H    = tanh(X W1^T + b1)          hidden layer, W1 [4,2], b1 [4]
 *     Yhat = sigmoid(H W2^T + b2)       output in (0, 1), W2 [1,4], b2 [1]
 *     E    = 1/2 sum (Y - Yhat)^2       the squared error of the textbooks
 *
 * The 1/2 is there so that dE/dYhat = Yhat - Y, without a factor 2.  The
 * library computes every dE/dw with ad_backward; the update is written out
 * below instead of hidden in an optimiser object:
 *     w <- w - eta dE/dw
 *
 * Prints the error every 250 epochs and the final predictions; exits with
 * status 1 unless every prediction is on the right side of 0.5 by a margin
 * (below 0.1 for a 0, above 0.9 for a 1).  Built on autodiff alone (no nn
 * layer), with a fixed seed, so every run prints the same numbers.
 */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>

#define HIDDEN 4
#define EPOCHS 2000
#define ETA 0.5 /* learning rate */

int main(void)
{
    const double xs[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}};
    const double ys[4][1] = {{0}, {1}, {1}, {0}};
    int status = 1;

    /* Parameters are persistent tensors (tape NULL): they live across the
     * epochs while each epoch's computation lives on the tape and is
     * thrown away by ad_tape_reset.  Small random starting weights break
     * the symmetry: were they all equal, every hidden unit would compute
     * the same thing and receive the same update forever. */
    ad_rng rng;
    ad_rng_init(&rng, 7);
    ad_tensor *params[4] = {
        ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(HIDDEN, 2), -1, 1), /* W1 */
        ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(HIDDEN)),                /* b1 */
        ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(1, HIDDEN), -1, 1), /* W2 */
        ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(1)),                     /* b2 */
    };
    ad_tensor *W1 = params[0], *b1 = params[1], *W2 = params[2], *b2 = params[3];
    ad_tape *tape = ad_tape_new();
    ad_tensor *X = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(4, 2), xs);
    ad_tensor *Y = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(4, 1), ys);
    if (!tape || !X || !Y) goto done;
    for (int i = 0; i < 4; i++)
        if (!params[i] || ad_set_requires_grad(params[i], true)) goto done;
    /* The parameters are persistent, so results of ops on them go on the
     * active tape. */
    ad_tape_activate(tape);

    double E = NAN;
    ad_tensor *Yhat = NULL;
    for (int epoch = 1; epoch <= EPOCHS; epoch++) {
        /* forward: recorded on the tape */
        ad_tensor *H = ad_tanh(ad_add(ad_matmul(X, ad_transpose(W1, 0, 1)), b1));
        Yhat = ad_sigmoid(ad_add(ad_matmul(H, ad_transpose(W2, 0, 1)), b2));
        ad_tensor *err = ad_sub(Y, Yhat);
        ad_tensor *loss = ad_mul_scalar(ad_sum(ad_mul(err, err), NULL, 0, false), 0.5);
        if (!loss) goto done;
        E = ad_item(loss);
        if (epoch == 1 || epoch % 250 == 0) printf("epoch %4d  E = %.6f\n", epoch, E);
        if (epoch == EPOCHS) break; /* keep the last forward for printing */

        /* backward: dE/dw into each parameter's grad.  Gradients add up
         * across calls, so clear the previous epoch's first. */
        for (int i = 0; i < 4; i++) ad_zero_grad(params[i]);
        if (ad_backward(loss, NULL, 0)) goto done;

        /* gradient descent, by hand: w <- w - eta dE/dw, element by
         * element.  ad_data gives the parameter's float64 storage to
         * write; nothing is recorded (we are changing w, not computing
         * with it). */
        for (int i = 0; i < 4; i++) {
            double *w = ad_data(params[i]);
            const double *g = ad_data(ad_tensor_grad(params[i]));
            if (!w || !g) goto done;
            for (int64_t j = 0; j < ad_numel(params[i]); j++) w[j] -= ETA * g[j];
        }
        /* Forget this epoch's graph; the arena's memory is kept for the
         * next one. */
        ad_tape_reset(tape);
    }

    double yhat[4];
    if (ad_to_array(Yhat, yhat)) goto done;
    status = 0;
    printf("\n x1 x2 | target  prediction\n");
    for (int i = 0; i < 4; i++) {
        bool ok = ys[i][0] > 0.5 ? yhat[i] > 0.9 : yhat[i] < 0.1;
        printf("  %g  %g |   %g      %.4f%s\n", xs[i][0], xs[i][1], ys[i][0], yhat[i],
               ok ? "" : "   <- wrong");
        if (!ok) status = 1;
    }
    printf(status ? "\nFAILED to learn XOR (E = %.6f)\n" : "\nlearned XOR (E = %.6f)\n", E);

done:
    if (status && ad_error()) fprintf(stderr, "xor: %s\n", ad_error());
    ad_tape_free(tape);
    for (int i = 0; i < 4; i++) ad_tensor_free(params[i]);
    ad_tensor_free(X);
    ad_tensor_free(Y);
    return status;
}

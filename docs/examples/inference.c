/* docs/examples/inference.c - running a model without recording anything.
 *
 * Training records every op so that backward can run; inference does not
 * need that.  With grad mode off (ad_set_grad_enabled(false), PyTorch's
 * torch.no_grad()) ops record nothing, and a model can run two ways:
 *
 *   - without any tape: nn_forward of a persistent input returns a
 *     persistent output (its intermediates go to a scratch tape freed
 *     before it returns); free the output with ad_tensor_free.  Simplest,
 *     one call per input.
 *   - on a tape reset after each batch: the intermediates and the output
 *     live on the tape; after the first batch the tape reuses its memory,
 *     so a serving loop allocates nothing per batch.
 *
 * Dropout and BatchNorm behave as at evaluation after nn_eval.  The
 * program checks that both ways give the same logits as a recorded
 * forward pass, that nothing was recorded, and exits 1 otherwise.
 */
#include <math.h>
#include <nn/nn.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    ad_rng rng;
    ad_rng_init(&rng, 1);
    nn_module *net = NN_SEQUENTIAL(nn_linear(8, 16, true, AD_FLOAT32, &rng), nn_relu(),
                                   nn_dropout(0.5, 2), nn_linear(16, 3, true, AD_FLOAT32, &rng));
    ad_tensor *batch = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(4, 8), 0, 1);
    if (!net || !batch) return fprintf(stderr, "%s\n", ad_error()), 1;
    nn_eval(net); /* dropout off */

    /* 1. no tape at all: a persistent result, ours to free */
    bool was = ad_set_grad_enabled(false);
    ad_tensor *y1 = nn_forward(net, batch);
    if (!y1) return fprintf(stderr, "%s\n", ad_error()), 1;

    /* 2. a tape reset per batch: here three "batches", the same input */
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    float y2[12];
    ad_tape_stats st = {0};
    for (int b = 0; b < 3; b++) {
        ad_tensor *y = nn_forward(net, batch);
        if (!y) return fprintf(stderr, "%s\n", ad_error()), 1;
        memcpy(y2, ad_data(y), sizeof y2); /* results of ops are contiguous */
        ad_tape_get_stats(tape, &st);
        ad_tape_reset(tape);
    }
    printf("tape after a batch: %zu ops recorded, %zu bytes of arena in use\n", st.nodes,
           st.arena_used);
    ad_set_grad_enabled(was);

    /* the same as a recorded forward pass */
    ad_tensor *y3 = nn_forward(net, batch);
    int bad = st.nodes != 0 || !ad_requires_grad(y3);
    const float *a = ad_data(y1), *c = ad_data(y3);
    for (int i = 0; i < 12; i++) bad |= a[i] != y2[i] || a[i] != c[i];
    for (int i = 0; i < 4; i++)
        printf("sample %d: logits %8.4f %8.4f %8.4f\n", i, a[3 * i], a[3 * i + 1], a[3 * i + 2]);

    ad_tensor_free(y1);
    ad_tensor_free(batch);
    ad_tape_free(tape);
    nn_module_free(net);
    printf(bad ? "FAILED\n" : "ok\n");
    return bad;
}

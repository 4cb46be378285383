/* docs/examples/grad_checkpoint.c - gradient checkpointing: memory traded
 * for one more forward pass.
 *
 * A training step keeps every intermediate of the forward pass on the
 * tape until backward has used it.  ad_checkpoint (autodiff/transforms.h)
 * runs a function without keeping its intermediates - only its inputs
 * and outputs stay - and the backward pass runs the function again to
 * get them, one segment at a time.  The gradients are the same bits.
 *
 * Two uses:
 *   1. your own function: a stack of residual tanh layers with dropout,
 *      checkpointed in segments of 4 layers (the dropout masks are drawn
 *      again alike when backward recomputes them);
 *   2. an LSTM over 256 steps with nn_rnn_set_checkpoint (segments of
 *      16 steps).
 * For each, the program prints the tape's arena after the forward pass
 * and at its peak during the step (ad_tape_stats), with and without, and
 * checks that the gradients agree (to the bit for the residual stack, to
 * rounding for the LSTM, whose products run in another order) and the peak shrinks; it
 * exits 1 otherwise.
 */
#include <nn/nn.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { LAYERS = 32, PER = 4, B = 64, D = 128 };

typedef struct stack {
    ad_tensor *w[LAYERS]; /* persistent weights, read by the function */
    ad_rng rng;           /* dropout's stream */
} stack;

typedef struct segment {
    stack *s;
    int first; /* the segment's first layer */
} segment;

/* PER layers x <- x + dropout(tanh(x W)), from layer g->first */
static int layers(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    const segment *g = ctx;
    ad_tensor *x = in[0];
    for (int l = g->first; l < g->first + PER; l++)
        x = ad_add(x, ad_dropout(ad_tanh(ad_matmul(x, g->s->w[l])), 0.1, true, &g->s->rng));
    out[0] = x;
    return x ? 0 : -1;
}

typedef struct figures {
    double forward_mb, peak_mb;
} figures;

static figures measure(ad_tape *tape)
{
    ad_tape_stats st;
    ad_tape_get_stats(tape, &st);
    return (figures){st.arena_used / 1048576.0, st.arena_peak / 1048576.0};
}

/* One step of the stack: returns the figures, gradient of w[0] in g0. */
static figures stack_step(stack *s, ad_tape *tape, bool ckpt, float *g0)
{
    ad_rng_init(&s->rng, 7); /* the same masks in both runs */
    ad_rng data;
    ad_rng_init(&data, 1);
    ad_tensor *x = ad_randn(tape, &data, AD_FLOAT32, AD_SHAPE(B, D), 0, 1);
    for (int k = 0; k < LAYERS / PER && x; k++) {
        segment g = {s, k * PER}; /* copied with the checkpoint (sizeof g) */
        if (ckpt ? ad_checkpoint(layers, &g, sizeof g, 1, &x, 1, &x) : layers(&x, 1, &x, 1, &g))
            x = NULL;
    }
    ad_tensor *E = x ? ad_mean(ad_mul(x, x), NULL, 0, false) : NULL;
    figures f = measure(tape);
    ad_zero_grad(s->w[0]);
    if (!E || ad_backward(E, NULL, 0) != 0) {
        fprintf(stderr, "%s\n", ad_error());
        f.peak_mb = -1;
        return f;
    }
    f.peak_mb = measure(tape).peak_mb;
    memcpy(g0, ad_data(ad_tensor_grad(s->w[0])), sizeof(float) * D * D);
    ad_tape_reset(tape);
    return f;
}

/* One step of the LSTM: the figures, and the gradient of weight_hh_l0. */
static figures lstm_step(nn_module *lstm, ad_tape *tape, int ckpt, float *g)
{
    nn_rnn_set_checkpoint(lstm, ckpt);
    ad_rng data;
    ad_rng_init(&data, 2);
    ad_tensor *x = ad_randn(tape, &data, AD_FLOAT32, AD_SHAPE(16, 256, 32), 0, 1);
    ad_tensor *y = nn_forward(lstm, x);
    ad_tensor *E = y ? ad_mean(ad_mul(y, y), NULL, 0, false) : NULL;
    figures f = measure(tape);
    ad_tensor *w = nn_get_parameter(lstm, "weight_hh_l0");
    ad_zero_grad(w);
    if (!E || ad_backward(E, NULL, 0) != 0) {
        fprintf(stderr, "%s\n", ad_error());
        f.peak_mb = -1;
        return f;
    }
    f.peak_mb = measure(tape).peak_mb;
    memcpy(g, ad_data(ad_tensor_grad(w)), sizeof(float) * 4 * 64 * 64);
    ad_tape_reset(tape);
    return f;
}

int main(void)
{
    ad_rng rng;
    ad_rng_init(&rng, 3);
    stack s;
    for (int l = 0; l < LAYERS; l++) {
        s.w[l] = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(D, D), 0, 0.1);
        ad_set_requires_grad(s.w[l], true);
    }
    nn_module *lstm = nn_lstm(32, 64, 1, true, AD_FLOAT32, &rng);
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    static float a[D * D], b[D * D], la[4 * 64 * 64], lb[4 * 64 * 64];

    figures plain = stack_step(&s, tape, false, a), ck = stack_step(&s, tape, true, b);
    bool ok = plain.peak_mb > 0 && ck.peak_mb > 0 && !memcmp(a, b, sizeof a) &&
              ck.peak_mb < plain.peak_mb / 2;
    printf("residual stack, %d layers, segments of %d:\n", LAYERS, PER);
    printf("  plain:        forward %6.2f MB, step peak %6.2f MB\n", plain.forward_mb,
           plain.peak_mb);
    printf("  checkpointed: forward %6.2f MB, step peak %6.2f MB, same gradient: %s\n",
           ck.forward_mb, ck.peak_mb, memcmp(a, b, sizeof a) ? "no" : "yes");

    plain = lstm_step(lstm, tape, 0, la);
    ck = lstm_step(lstm, tape, 16, lb);
    /* The plain LSTM is one op over all 256 steps, whose weight gradient is
     * one product over every step; checkpointed, it is one op per segment,
     * and the same terms are summed in 16 groups: equal up to float32's
     * rounding, not to the bit. */
    double diff = 0, scale = 0;
    for (int i = 0; i < 4 * 64 * 64; i++) {
        diff = fmax(diff, fabs((double)la[i] - lb[i]));
        scale = fmax(scale, fabs((double)la[i]));
    }
    bool same = scale > 0 && diff <= 1e-5 * scale;
    ok = ok && plain.peak_mb > 0 && ck.peak_mb > 0 && same && ck.peak_mb < plain.peak_mb / 2;
    printf("LSTM(32, 64), batch 16, 256 steps, segments of 16:\n");
    printf("  plain:        forward %6.2f MB, step peak %6.2f MB\n", plain.forward_mb,
           plain.peak_mb);
    printf("  checkpointed: forward %6.2f MB, step peak %6.2f MB, same gradient to rounding: %s\n",
           ck.forward_mb, ck.peak_mb, same ? "yes" : "no");

    ad_tape_free(tape);
    nn_module_free(lstm);
    for (int l = 0; l < LAYERS; l++) ad_tensor_free(s.w[l]);
    printf(ok ? "ok\n" : "FAILED\n");
    return ok ? 0 : 1;
}

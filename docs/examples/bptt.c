/* docs/examples/bptt.c - truncated backpropagation through time, written
 * as docs/lifetimes.md explains: a small recurrent network learns to
 * predict the next value of a sine wave, one chunk of the sequence per
 * step, with the hidden state carried from chunk to chunk by ad_detach.
 *
 *     h_t = tanh(x_t Wx + h_(t-1) Wh + b)      [1, H]
 *     y_t = h_t V                              prediction of x_(t+1)
 *     E   = mean over the chunk of (y_t - x_(t+1))^2
 *
 * It checks three things: the loss falls; the gradient of one chunk is
 * exactly that of E with the carried state as a constant (ad_gradcheck);
 * and the mistake of keeping the state without detaching it is reported,
 * not silently differentiated. */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { H = 8, LEN = 400, CHUNK = 20, EPOCHS = 30 };

typedef struct rnn {
    ad_tensor *wx, *wh, *b, *v; /* persistent parameters */
} rnn;

static double series(int t) { return sin(0.15 * t); }

/* One step of the network. */
static ad_tensor *cell(const rnn *m, ad_tensor *h, double x)
{
    ad_tensor *xt = ad_scalar_tensor(ad_tape_active(), AD_FLOAT64, x);
    return ad_tanh(ad_add(ad_add(ad_mul(xt, m->wx), ad_matmul(h, m->wh)), m->b));
}

/* The loss of the chunk starting at t0, from the carried state h; *h_out
 * gets the state at its end. */
static ad_tensor *chunk_loss(const rnn *m, ad_tensor *h, int t0, ad_tensor **h_out)
{
    ad_tensor *sum = NULL;
    for (int t = t0; t < t0 + CHUNK; t++) {
        h = cell(m, h, series(t));
        ad_tensor *err = ad_sub_scalar(ad_sum(ad_mul(h, m->v), NULL, 0, false), series(t + 1));
        ad_tensor *sq = ad_square(err);
        sum = sum ? ad_add(sum, sq) : sq;
    }
    if (h_out) *h_out = h;
    return ad_div_scalar(sum, CHUNK);
}

/* w <- w - lr dE/dw, in place; the write goes through ad_data, so the
 * library is told (ad_mark_modified). */
static int sgd_step(ad_tensor *w, double lr)
{
    ad_tensor *g = ad_tensor_grad(w);
    double *wd = ad_data(w);
    const double *gd = g ? ad_data(g) : NULL;
    if (!wd || !gd) return -1;
    for (int64_t i = 0; i < ad_numel(w); i++) wd[i] -= lr * gd[i];
    return ad_mark_modified(w) || ad_zero_grad(w);
}

/* ad_gradcheck's view of one chunk: the parameters are its inputs, the
 * carried state (ctx) a constant. */
typedef struct check_ctx {
    const ad_tensor *h0;
    int t0;
} check_ctx;

static ad_tensor *chunk_of_params(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    check_ctx *c = vctx;
    rnn m = {in[0], in[1], in[2], in[3]};
    ad_tensor *h = ad_copy(ad_tape_active(), c->h0);
    return chunk_loss(&m, h, c->t0, NULL);
}

int main(void)
{
    ad_rng rng;
    ad_rng_init(&rng, 3);
    rnn m = {ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(1, H), 0, 0.5),
             ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(H, H), 0, 0.3),
             ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(1, H)),
             ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(1, H), 0, 0.5)};
    ad_tensor *params[4] = {m.wx, m.wh, m.b, m.v};
    for (int i = 0; i < 4; i++)
        if (ad_set_requires_grad(params[i], true)) return fprintf(stderr, "%s\n", ad_error()), 1;

    /* ---- training: one chunk per step, the state carried by ad_detach */
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    double first = 0, last = 0;
    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        ad_tensor *h = ad_zeros(tape, AD_FLOAT64, AD_SHAPE(1, H));
        double total = 0;
        for (int t0 = 0; t0 + CHUNK < LEN; t0 += CHUNK) {
            ad_tensor *E = chunk_loss(&m, h, t0, &h);
            if (!E || ad_backward(E, NULL, 0)) return fprintf(stderr, "%s\n", ad_error()), 1;
            total += ad_item(E);
            for (int i = 0; i < 4; i++)
                if (sgd_step(params[i], 0.05)) return fprintf(stderr, "%s\n", ad_error()), 1;
            h = ad_detach(h);     /* keep the values, cut the history ... */
            ad_tape_reset(tape);  /* ... and free the chunk's graph */
        }
        if (epoch == 0) first = total;
        last = total;
    }
    printf("loss over the sequence: epoch 1 %.4f, epoch %d %.4f\n", first, EPOCHS, last);

    /* ---- the truncated gradient is the gradient of the chunk's loss with
     * the carried state held constant */
    ad_tensor *h = ad_zeros(tape, AD_FLOAT64, AD_SHAPE(1, H));
    ad_tensor *E = chunk_loss(&m, h, 0, &h);
    ad_tensor *carried = ad_copy(NULL, h); /* a persistent copy, for the check */
    int ok = E && carried;
    ad_tape_reset(tape);
    ad_tape_activate(NULL); /* ad_gradcheck activates a tape of its own */
    check_ctx cc = {carried, CHUNK};
    ad_gradcheck_opts go = AD_GRADCHECK_DEFAULTS;
    ok = ok && ad_gradcheck(chunk_of_params, &cc, 4, params, &go) == 1;
    printf("gradient of a chunk against finite differences: %s\n", ok ? "agrees" : "DIFFERS");
    ad_tape_activate(tape);

    /* ---- the mistake: the state kept across the reset without detaching */
    h = ad_zeros(tape, AD_FLOAT64, AD_SHAPE(1, H));
    E = chunk_loss(&m, h, 0, &h);
    ad_tape_reset(tape);
    ad_clear_error();
    ad_tensor *wrong = chunk_loss(&m, h, CHUNK, NULL);
    printf("kept without ad_detach: %s\n", wrong ? "accepted (wrong!)" : ad_error());
    ad_clear_error();

    /* ---- inference without recording: grad mode off, the tape only holds
     * the temporaries, reset as we go */
    bool prev = ad_set_grad_enabled(false);
    h = ad_zeros(tape, AD_FLOAT64, AD_SHAPE(1, H));
    double err = 0;
    for (int t = 0; t < LEN; t++) {
        h = cell(&m, h, series(t));
        double y = ad_item(ad_sum(ad_mul(h, m.v), NULL, 0, false));
        if (t >= LEN - 50) err += fabs(y - series(t + 1)) / 50;
        h = ad_detach(h);
        ad_tape_reset(tape);
    }
    ad_set_grad_enabled(prev);
    printf("mean error of the last 50 predictions: %.4f\n", err);

    ad_tape_free(tape);
    ad_tensor_free(carried);
    for (int i = 0; i < 4; i++) ad_tensor_free(params[i]);
    bool learned = last < first / 4 && err < 0.1;
    return ok && !wrong && learned ? 0 : 1;
}

/* tests/test_nn_loss.c - initialisers (nn/init.h) and losses and penalties
 * (nn/loss.h) of the nn layer: initialiser statistics, gains and fans;
 * every loss against hand-computed values and gradients; bad inputs. */
#include <nn/nn.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static const double LN3 = 1.0986122886681098;

static void ok(int rc) { ck_assert_msg(rc == 0, "%s", ad_error()); }
static void nonnull(const void *p) { ck_assert_msg(p != NULL, "%s", ad_error()); }

static ad_tensor *f64(ad_tape *t, int nd, const int64_t *sh, const double *v)
{
    ad_tensor *x = ot_f64(t, nd, sh, v);
    nonnull(x);
    return x;
}

static ad_tensor *leaf(ad_tape *t, int nd, const int64_t *sh, const double *v)
{
    ad_tensor *x = f64(t, nd, sh, v);
    ok(ad_set_requires_grad(x, true));
    return x;
}

static void backward(ad_tensor *y)
{
    nonnull(y);
    ok(ad_backward(y, NULL, 0));
}

/* ---- initialisers ---------------------------------------------------------------------- */

static void stats(const ad_tensor *t, double *mean, double *var, double *maxabs)
{
    int64_t n = ad_numel(t);
    double s = 0, ss = 0, m = 0, *all = malloc((size_t)n * sizeof *all);
    ck_assert_int_eq(ad_to_array(t, all), 0);
    for (int64_t i = 0; i < n; i++) {
        double v = all[i];
        s += v;
        ss += v * v;
        m = fmax(m, fabs(v));
    }
    free(all);
    *mean = s / (double)n;
    *var = ss / (double)n - *mean * *mean;
    *maxabs = m;
}

START_TEST(initialiser_statistics)
{
    ad_rng rng;
    ad_rng_init(&rng, 10);
    /* [200, 300]: fan_in 300, fan_out 200; 60000 draws, so the sample
     * variance is within a few percent */
    ad_tensor *w = ad_empty(NULL, AD_FLOAT64, 2, (int64_t[]){200, 300});
    double mean, var, mx;
    ok(nn_init_xavier_uniform(w, 1.0, &rng));
    double b = sqrt(6.0 / 500);
    stats(w, &mean, &var, &mx);
    ck_assert(mx <= b && mx > 0.99 * b);
    ck_assert_close(mean, 0, 0.01 * b);
    ck_assert_close(var, b * b / 3, 0.03 * b * b / 3);
    ok(nn_init_xavier_normal(w, nn_calculate_gain(NN_TANH, 0), &rng));
    stats(w, &mean, &var, &mx);
    double v = 25.0 / 9 * 2.0 / 500;
    ck_assert_close(var, v, 0.03 * v);
    ok(nn_init_kaiming_uniform(w, 0, NN_FAN_IN, NN_RELU, &rng));
    b = sqrt(2.0) * sqrt(3.0 / 300);
    stats(w, &mean, &var, &mx);
    ck_assert(mx <= b && mx > 0.99 * b);
    ck_assert_close(var, 2.0 / 300, 0.03 * 2.0 / 300);
    ok(nn_init_kaiming_normal(w, 0, NN_FAN_OUT, NN_RELU, &rng));
    stats(w, &mean, &var, &mx);
    ck_assert_close(mean, 0, 0.003);
    ck_assert_close(var, 2.0 / 200, 0.03 * 2.0 / 200);
    ok(nn_init_normal(w, 3, 0.5, &rng));
    stats(w, &mean, &var, &mx);
    ck_assert_close(mean, 3, 0.01);
    ck_assert_close(var, 0.25, 0.01);
    ok(nn_init_uniform(w, -1, 3, &rng));
    stats(w, &mean, &var, &mx);
    ck_assert_close(mean, 1, 0.02);
    ck_assert(mx <= 3);
    ok(nn_init_constant(w, 0.25));
    stats(w, &mean, &var, &mx);
    ck_assert_close(mean, 0.25, 0);
    ok(nn_init_zeros(w));
    ck_assert_close(ot_at(w, 123), 0, 0);
    ok(nn_init_ones(w));
    ck_assert_close(ot_at(w, 123), 1, 0);
    ad_tensor_free(w);
    /* gains and fans */
    ck_assert_close(nn_calculate_gain(NN_LINEAR, 0), 1, 0);
    ck_assert_close(nn_calculate_gain(NN_SIGMOID, 0), 1, 0);
    ck_assert_close(nn_calculate_gain(NN_TANH, 0), 5.0 / 3, 0);
    ck_assert_close(nn_calculate_gain(NN_RELU, 0), sqrt(2.0), 0);
    ck_assert_close(nn_calculate_gain(NN_LEAKY_RELU, 0.01), sqrt(2 / 1.0001), 1e-15);
    ck_assert_close(nn_calculate_gain(NN_LEAKY_RELU, sqrt(5.0)), sqrt(1.0 / 3), 1e-15);
    ck_assert_close(nn_calculate_gain(NN_SELU, 0), 0.75, 0);
    ad_tensor *cw = ad_empty(NULL, AD_FLOAT32, 4, (int64_t[]){8, 4, 3, 3});
    int64_t fi, fo;
    ok(nn_calculate_fans(cw, &fi, &fo));
    ck_assert_int_eq(fi, 36);
    ck_assert_int_eq(fo, 72);
    /* the same seed gives the same weights, float32 too */
    ad_tensor *cw2 = ad_empty(NULL, AD_FLOAT32, 4, (int64_t[]){8, 4, 3, 3});
    ad_rng r1, r2;
    ad_rng_init(&r1, 77);
    ad_rng_init(&r2, 77);
    ok(nn_init_kaiming_uniform(cw, sqrt(5.0), NN_FAN_IN, NN_LEAKY_RELU, &r1));
    ok(nn_init_kaiming_uniform(cw2, sqrt(5.0), NN_FAN_IN, NN_LEAKY_RELU, &r2));
    for (int64_t i = 0; i < 288; i++) {
        ck_assert_close(ot_at(cw, i), ot_at(cw2, i), 0);
        ck_assert(fabs(ot_at(cw, i)) <= 1.0 / 6 + 1e-7);
    }
    ad_tensor_free(cw2);
    /* errors */
    ad_tensor *vec = ad_empty(NULL, AD_FLOAT64, 1, (int64_t[]){5});
    ck_assert_error_rc(nn_init_xavier_uniform(vec, 1, &rng),
                       "nn_init_xavier_uniform: nn_calculate_fans: fan in and fan out need a "
                       "tensor of at least 2 dimensions ([out, in, ...]), got [5]");
    ck_assert_error_rc(nn_init_normal(vec, 0, -1, &rng), "std >= 0, got mean 0, std -1");
    ck_assert_error_rc(nn_init_uniform(vec, 2, 1, &rng), "need finite lo <= hi, got [2, 1]");
    ck_assert_error_rc(nn_init_uniform(vec, 0, 1, NULL), "argument 'rng' is NULL");
    ck_assert_error_rc(nn_init_kaiming_normal(cw, 0, (nn_fan_mode)5, NN_RELU, &rng),
                       "mode must be NN_FAN_IN or NN_FAN_OUT, got 5");
    ck_assert_error_rc(nn_init_xavier_normal(cw, -1, &rng), "gain must be finite and >= 0");
    ad_tensor *ints = ad_zeros(NULL, AD_INT64, 2, (int64_t[]){2, 2});
    ck_assert_error_rc(nn_init_zeros(ints), "t must be float32 or float64, got int64");
    ck_assert_error_rc(nn_init_ones(NULL), "nn_init_ones: argument 't' is NULL");
    ad_tensor_free(ints);
    ad_tensor_free(vec);
    ad_tensor_free(cw);
}
END_TEST

/* ---- losses ------------------------------------------------------------------------------- */

START_TEST(regression_losses)
{
    ad_tape *t = ad_tape_new();
    const int64_t sh[1] = {3};
    ad_tensor *y = f64(t, 1, sh, (double[]){1, 0, 0});
    /* d = yhat - y = [0, -2, 3] */
    double half = 0;
    for (int k = 0; k < 4; k++) {
        ad_tensor *p = leaf(t, 1, sh, (double[]){1, -2, 3});
        nn_reduction r = (nn_reduction[]){NN_MEAN, NN_SUM, NN_HALF_SUM, NN_NONE}[k];
        ad_tensor *l = nn_mse_loss(p, y, r);
        nonnull(l);
        /* mean 13/3, sum 13, half sum 6.5 = E of the backprop derivation */
        double want[3] = {13.0 / 3, 13, 6.5}, scale[4] = {2.0 / 3, 2, 1, 2}, d[3] = {0, -2, 3};
        if (k < 3) ck_assert_close(ad_item(l), want[k], 1e-15);
        if (k == 2) half = ad_item(l);
        if (k == 3) {
            ck_assert_close(ot_at(l, 2), 9, 0);
            l = ad_sum(l, NULL, 0, false);
        }
        backward(l);
        /* dE/dyhat = scale * d: 2d/N, 2d, d (no factor 2 with the half) */
        for (int i = 0; i < 3; i++)
            ck_assert_close(ot_at(ad_tensor_grad(p), i), scale[k] * d[i], 1e-15);
    }
    ck_assert_close(half, 6.5, 0);
    /* L1: mean |d| = 5/3, gradient sign(d)/3 (0 at d = 0) */
    ad_tensor *p = leaf(t, 1, sh, (double[]){1, -2, 3});
    ad_tensor *l = nn_l1_loss(p, y, NN_MEAN);
    ck_assert_close(ad_item(l), 5.0 / 3, 1e-15);
    backward(l);
    ck_assert_close(ot_at(ad_tensor_grad(p), 0), 0, 0);
    ck_assert_close(ot_at(ad_tensor_grad(p), 1), -1.0 / 3, 1e-16);
    ck_assert_close(ot_at(ad_tensor_grad(p), 2), 1.0 / 3, 1e-16);
    /* Huber, delta 1: d = [0.5, -2, 3, 1]:
     * l = [0.125, 1 (2 - 0.5), 1 (3 - 0.5), 0.5] -> sum 4.625;
     * dl/dd = clamp(d, -1, 1) = [0.5, -1, 1, 1] */
    const int64_t s4[1] = {4};
    p = leaf(t, 1, s4, (double[]){1.5, -2, 3, 1});
    l = nn_huber_loss(p, f64(t, 1, s4, (double[]){1, 0, 0, 0}), NN_SUM, 1.0);
    ck_assert_close(ad_item(l), 4.625, 1e-15);
    backward(l);
    const double hg[4] = {0.5, -1, 1, 1};
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(ad_tensor_grad(p), i), hg[i], 1e-15);
    /* delta 2: the second element is now quadratic, 2^2/2 = 2 */
    l = nn_huber_loss(p, f64(t, 1, s4, (double[]){1, 0, 0, 0}), NN_NONE, 2.0);
    ck_assert_close(ot_at(l, 1), 2, 1e-15);
    ck_assert_close(ot_at(l, 2), 2 * (3 - 1), 1e-15);
    /* PyTorch's HuberLoss at the edges: an infinite d pulls with +-delta
     * (it was 0 * inf = NaN through a clamp), and at |d| = delta the
     * second derivative is the linear branch's 0 (it was 1) */
    p = leaf(t, 1, s4, (double[]){INFINITY, -INFINITY, 1, -0.5});
    l = nn_huber_loss(p, f64(t, 1, s4, (double[]){0, 0, 0, 0}), NN_SUM, 1.0);
    ck_assert(isinf(ad_item(l)));
    ad_tensor *g, *h;
    ck_assert_int_eq(ad_gradients(l, NULL, 1, &p, &g, AD_CREATE_GRAPH), 0);
    const double ge[4] = {1, -1, 1, -0.5}, he[4] = {0, 0, 0, 1};
    for (int i = 0; i < 4; i++) ck_assert_double_eq(ot_at(g, i), ge[i]);
    ck_assert_int_eq(ad_gradients(ad_sum(ad_slice(g, 0, 2, 4, 1), NULL, 0, false), NULL, 1, &p,
                                  &h, 0),
                     0);
    for (int i = 0; i < 4; i++) ck_assert_double_eq(ot_at(h, i), he[i]);
    ad_tape_free(t);
}
END_TEST

START_TEST(classification_losses)
{
    ad_tape *t = ad_tape_new();
    const int64_t sh[2] = {2, 2};
    /* logits [[0, ln 3], [0, 0]], labels [1, 0]:
     * row 0 softmax [1/4, 3/4] -> -log(3/4); row 1 [1/2, 1/2] -> log 2 */
    ad_tensor *x = leaf(t, 2, sh, (double[]){0, LN3, 0, 0});
    ad_tensor *lab = ot_index(t, 1, (int64_t[]){2}, (int64_t[]){1, 0});
    ad_tensor *l = nn_cross_entropy(x, lab, NN_MEAN, 0);
    nonnull(l);
    ck_assert_close(ad_item(l), (-log(0.75) + log(2)) / 2, 1e-15);
    backward(l);
    /* (softmax - onehot) / N */
    const double g[4] = {0.125, -0.125, -0.25, 0.25};
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(ad_tensor_grad(x), i), g[i], 1e-15);
    /* label smoothing 0.1 with C = 2: targets [0.05, 0.95] and [0.95, 0.05] */
    l = nn_cross_entropy(x, lab, NN_SUM, 0.1);
    ck_assert_close(ad_item(l), -(0.05 * log(0.25) + 0.95 * log(0.75)) + log(2), 1e-15);
    /* NLL of log-probabilities: picks -logp[n, label] */
    ad_tensor *lp = leaf(t, 2, sh, (double[]){-1, -2, -3, -0.5});
    ad_tensor *l1 = ot_index(t, 1, (int64_t[]){2}, (int64_t[]){1, 1});
    l = nn_nll_loss(lp, l1, NN_MEAN);
    ck_assert_close(ad_item(l), (2 + 0.5) / 2, 1e-15);
    backward(l);
    const double ng[4] = {0, -0.5, 0, -0.5};
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(ad_tensor_grad(lp), i), ng[i], 0);
    /* nll(log_softmax(x)) == cross_entropy(x) */
    l = nn_nll_loss(ad_log_softmax(x, 1), lab, NN_NONE);
    ad_tensor *ce = nn_cross_entropy(x, lab, NN_NONE, 0);
    for (int i = 0; i < 2; i++) ck_assert_close(ot_at(l, i), ot_at(ce, i), 1e-15);
    ck_assert_error(nn_nll_loss(lp, ot_index(t, 1, (int64_t[]){2}, (int64_t[]){0, 2}), NN_MEAN),
                    "nn_nll_loss: label 2 at position 1 is out of range for 2 classes");
    ck_assert_error(nn_nll_loss(lp, ot_index(t, 1, (int64_t[]){2}, (int64_t[]){-1, 0}), NN_MEAN),
                    "label -1 at position 0");
    ck_assert_error(nn_nll_loss(lp, ot_index(t, 1, (int64_t[]){3}, (int64_t[]){0, 0, 0}), NN_SUM),
                    "labels must be int64 [2], got int64 [3]");
    ck_assert_error(nn_cross_entropy(x, lab, NN_HALF_SUM, 0),
                    "nn_cross_entropy: NN_HALF_SUM is only for nn_mse_loss");
    ck_assert_error(nn_cross_entropy(x, lab, NN_MEAN, 2), "nn_cross_entropy: ad_cross_entropy_ls");

    /* BCE with logits, x = [0, 2, -1000, 1000], y = [1, 0, 1, 0]:
     * l = (1 - y) x + softplus(-x) = [log 2, 2 + log(1 + e^-2), 1000, 1000]
     * (no overflow at +-1000), dl/dx = sigmoid(x) - y, exact at x = 0 */
    const int64_t s4[1] = {4};
    ad_tensor *z = leaf(t, 1, s4, (double[]){0, 2, -1000, 1000});
    ad_tensor *yt = f64(t, 1, s4, (double[]){1, 0, 1, 0});
    l = nn_binary_cross_entropy_with_logits(z, yt, NULL, NN_NONE);
    nonnull(l);
    const double bw[4] = {log(2), 2 + log1p(exp(-2)), 1000, 1000};
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(l, i), bw[i], 1e-13);
    backward(ad_sum(l, NULL, 0, false));
    const double bg[4] = {-0.5, 1 / (1 + exp(-2)), -1, 1};
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(ad_tensor_grad(z), i), bg[i], 1e-15);
    /* pos_weight 3 triples the positive term: x = 0, y = 1 gives 3 log 2 */
    ad_tensor *pw = f64(t, 1, (int64_t[]){1}, (double[]){3});
    l = nn_binary_cross_entropy_with_logits(z, yt, pw, NN_NONE);
    ck_assert_close(ot_at(l, 0), 3 * log(2), 1e-15);
    ck_assert_close(ot_at(l, 1), bw[1], 1e-15);
    l = nn_binary_cross_entropy_with_logits(z, yt, pw, NN_MEAN);
    ck_assert_close(ad_item(l), (3 * log(2) + bw[1] + 3000 + 1000) / 4, 1e-12);
    ck_assert_error(nn_binary_cross_entropy_with_logits(z, yt, f64(t, 1, (int64_t[]){3},
                                                                   (double[]){1, 2, 3}),
                                                        NN_MEAN),
                    "nn_binary_cross_entropy_with_logits:");
    ck_assert_error(nn_binary_cross_entropy_with_logits(
                        z, yt, f64(t, 2, (int64_t[]){2, 4}, (double[]){1, 1, 1, 1, 1, 1, 1, 1}),
                        NN_MEAN),
                    "pos_weight float64 [2,4] must have x's dtype (float64) and at most its 1 "
                    "dimensions");
    /* [3] against x [4, 1] broadcasts, but to [4, 3]: not x's shape */
    ad_tensor *z41 = ad_reshape(z, 2, (int64_t[]){4, 1}), *y41 = ad_reshape(yt, 2, (int64_t[]){4, 1});
    ck_assert_error(nn_binary_cross_entropy_with_logits(
                        z41, y41, f64(t, 1, (int64_t[]){3}, (double[]){1, 2, 3}), NN_NONE),
                    "pos_weight [3] does not broadcast to x [4,1]");
    ad_tape_free(t);
}
END_TEST

/* The losses that take class labels, recorded on a replayable tape with
 * labels 0 (as nn's trainer records) and replayed with others: each gives
 * the value it gives when called on those labels.  nn_nll_loss used to
 * copy the labels in C into its gather index, a constant of the
 * recording, so every replay picked class 0. */
START_TEST(label_losses_replay_at_new_labels)
{
    const double lpv[6] = {-1, -2, -0.5, -3, -0.25, -4};
    const int64_t sh[2] = {3, 2}, want_lab[3] = {1, 0, 1};
    for (int which = 0; which < 2; which++) {
        ad_tape *t = ad_tape_new();
        ad_tape_set_replayable(t, true);
        ad_tape_activate(t);
        ad_tensor *lp = leaf(t, 2, sh, lpv);
        ad_tensor *lab = ot_index(t, 1, (int64_t[]){3}, (int64_t[]){0, 0, 0});
        ad_tensor *l = which ? nn_cross_entropy(lp, lab, NN_SUM, 0) : nn_nll_loss(lp, lab, NN_SUM);
        nonnull(l);
        ck_assert_int_eq(ad_tape_freeze(t), 0);
        ad_tensor *nl = ot_index(NULL, 1, (int64_t[]){3}, want_lab);
        ck_assert_int_eq(ad_tape_replay(t, 1, &lab, &nl), 0);
        double replayed = ad_item(l);
        ad_tape_activate(NULL);
        ad_tape *f = ad_tape_new();
        ad_tape_activate(f);
        ad_tensor *lp2 = leaf(f, 2, sh, lpv);
        ad_tensor *fresh = which ? nn_cross_entropy(lp2, nl, NN_SUM, 0) : nn_nll_loss(lp2, nl, NN_SUM);
        nonnull(fresh);
        ck_assert_msg(replayed == ad_item(fresh), "%s: replayed %g, fresh %g",
                      which ? "nn_cross_entropy" : "nn_nll_loss", replayed, ad_item(fresh));
        if (!which) ck_assert_double_eq(replayed, 2 + 0.5 + 4);
        /* a -1 (the usual "ignore" mark) at replay is refused, as at the
         * first call: not the last class, taken from the end */
        int64_t neg[3] = {1, -1, 0};
        memcpy(ad_data(nl), neg, sizeof neg);
        ad_clear_error();
        ck_assert_int_eq(ad_tape_replay(t, 1, &lab, &nl), -1);
        ck_assert_msg(strstr(ad_error(), which ? "label -1 at position 1 is out of range"
                                               : "is negative in a replay"),
                      "%s", ad_error());
        ad_clear_error();
        ad_tape_activate(NULL);
        ad_tensor_free(nl);
        ad_tape_free(f);
        ad_tape_free(t);
    }
}
END_TEST

START_TEST(penalties)
{
    ad_tensor *a = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){2}, (double[]){1, -2});
    ad_tensor *b = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){1}, (double[]){3});
    ad_set_requires_grad(a, true);
    ad_set_requires_grad(b, true);
    nn_named_tensors *p = nn_named_tensors_new(2, NULL, (ad_tensor *[]){a, b});
    ck_assert_str_eq(p->names[1], "1");
    /* no tape while grad mode is on: refused */
    ck_assert_error(nn_l2_penalty(p, 0.1), "nn_l2_penalty: no tape to record on");
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    /* L1: 0.1 (1 + 2 + 3) = 0.6, gradient 0.1 sign(w) */
    ad_tensor *l = nn_l1_penalty(p, 0.1);
    ck_assert_close(ad_item(l), 0.6, 1e-15);
    backward(l);
    ck_assert_close(ot_at(ad_tensor_grad(a), 1), -0.1, 1e-16);
    ad_zero_grad(a);
    ad_zero_grad(b);
    /* L2: 0.1/2 (1 + 4 + 9) = 0.7, gradient 0.1 w */
    l = nn_l2_penalty(p, 0.1);
    ck_assert_close(ad_item(l), 0.7, 1e-15);
    backward(l);
    ck_assert_close(ot_at(ad_tensor_grad(a), 1), -0.2, 1e-16);
    ck_assert_close(ot_at(ad_tensor_grad(b), 0), 0.3, 1e-16);
    ck_assert_error(nn_l1_penalty(p, -1), "nn_l1_penalty: lambda must be finite and >= 0, got -1");
    ck_assert_error(nn_l1_penalty(NULL, 1), "argument 'params' is NULL");
    ad_tape_activate(NULL);
    ad_tape_free(t);
    nn_named_tensors_free(p);
    ad_tensor_free(a);
    ad_tensor_free(b);
}
END_TEST

START_TEST(loss_errors)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = f64(t, 2, (int64_t[]){4, 1}, (double[]){1, 2, 3, 4});
    ad_tensor *b = f64(t, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4});
    ck_assert_error(nn_l1_loss(a, b, NN_MEAN),
                    "nn_l1_loss: input [4,1] and target [4] differ in shape");
    ck_assert_error(nn_mse_loss(a, b, NN_MEAN), "nn_mse_loss: input [4,1] and target [4]");
    ck_assert_error(nn_huber_loss(b, b, NN_MEAN, 0), "nn_huber_loss: delta must be finite and > 0");
    ck_assert_error(nn_mse_loss(b, b, (nn_reduction)7), "nn_mse_loss: unknown reduction 7");
    ck_assert_error(nn_l1_loss(b, b, NN_HALF_SUM), "NN_HALF_SUM is only for nn_mse_loss");
    ad_tensor *i = ot_index(t, 1, (int64_t[]){4}, (int64_t[]){1, 2, 3, 4});
    ck_assert_error(nn_mse_loss(i, i, NN_MEAN), "must have one floating dtype, got int64 and int64");
    /* a NULL from an inner failure keeps its message */
    ck_assert_error(nn_mse_loss(NULL, b, NN_MEAN), "nn_mse_loss: argument 'input' is NULL");
    ck_assert_error(nn_mse_loss(ad_log(NULL), b, NN_MEAN), "ad_log: argument 'x' is NULL");
    ad_clear_error();
    ad_set_error("inner: broke");
    ck_assert_ptr_null(nn_mse_loss(NULL, b, NN_MEAN));
    ck_assert_str_eq(ad_error(), "inner: broke");
    ad_clear_error();
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_loss");
    TCase *tc = tcase_create("init");
    tcase_add_test(tc, initialiser_statistics);
    suite_add_tcase(s, tc);
    tc = tcase_create("losses");
    tcase_add_test(tc, regression_losses);
    tcase_add_test(tc, classification_losses);
    tcase_add_test(tc, label_losses_replay_at_new_labels);
    tcase_add_test(tc, penalties);
    tcase_add_test(tc, loss_errors);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

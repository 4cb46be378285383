/* tests/test_trainer.c - nn/trainer.h: fit learns, steps replay without
 * allocating, evaluation agrees with nn_evaluate, a resumed run is the
 * uninterrupted one bit for bit, callbacks and errors. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../autodiff/internal.h"
#include "../nn/nn_private.h"
#include "cluster_data.h"
#include "optest.h"

/* ---- fixtures ------------------------------------------------------------ */

/* Three classes of points in the plane, around (cos, sin) of 0, 120 and
 * 240 degrees, with a little noise: N = 100, so batches of 16 end with a
 * shorter batch of 4 (two shapes to record). */
enum { N = 100, BATCH = 16 };

typedef struct data {
    ad_tensor *x, *y;
    nn_loader *train, *test;
} data;

static void data_make(data *d)
{
    cluster_data(N, &d->x, &d->y);
    ck_assert_ptr_nonnull(d->x);
    ck_assert_ptr_nonnull(d->y);
    d->train = nn_loader_from_tensors(
        d->x, d->y, &(nn_loader_options){.batch_size = BATCH, .shuffle = true, .seed = 3});
    d->test = nn_loader_from_tensors(d->x, d->y, &(nn_loader_options){.batch_size = 32});
    ck_assert_ptr_nonnull(d->train);
    ck_assert_ptr_nonnull(d->test);
}

static void data_free(data *d)
{
    nn_loader_free(d->train);
    nn_loader_free(d->test);
    ad_tensor_free(d->x);
    ad_tensor_free(d->y);
}

/* A model, its SGD and a trainer; seed fixes the initial weights. */
typedef struct setup {
    nn_module *net;
    nn_optim *opt;
    nn_trainer *tr;
} setup;

/* With a Dropout (its mask stream seeded from seed) between the layers. */
static bool with_dropout;
/* Or with a layer of a user's own there: Gaussian noise in training,
 * x + 0.1 randn_like(x), from a stream it registers. */
static bool with_noise;

typedef struct noise_state {
    ad_rng rng;
} noise_state;

static ad_tensor *noise_forward(nn_module *m, ad_tensor *x)
{
    noise_state *s = nn_module_state(m);
    if (!nn_is_training(m)) return x;
    return ad_add(x, ad_mul_scalar(ad_randn_like(x, &s->rng, 0, 1), 0.1));
}
static const nn_module_type NOISE = {"Noise", noise_forward, free, NULL};

static nn_module *noise_layer(uint64_t seed)
{
    noise_state *s = malloc(sizeof *s);
    ck_assert_ptr_nonnull(s);
    ad_rng_init(&s->rng, seed);
    nn_module *m = nn_module_new(&NOISE, s);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(nn_module_set_rng(m, &s->rng), 0);
    return m;
}

/* Or the first three layers (linear, relu, dropout) inside a module
 * whose forward runs them through ad_checkpoint. */
static bool with_ckpt;

typedef struct ckpt_call {
    nn_module *child;
    bool training; /* the mode at the call: replay and backward may come in the other */
} ckpt_call;
static int ckpt_child(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    const ckpt_call *c = ctx;
    bool was = nn_is_training(c->child);
    nn_train(c->child, c->training);
    out[0] = nn_forward(c->child, in[0]);
    nn_train(c->child, was);
    return out[0] ? 0 : -1;
}
static ad_tensor *ckpt_forward(nn_module *m, ad_tensor *x)
{
    ad_tensor *y = NULL;
    ckpt_call c = {nn_child(m, 0), nn_is_training(m)};
    return ad_checkpoint(ckpt_child, &c, sizeof c, 1, &x, 1, &y) ? NULL : y;
}
static const nn_module_type CKPT = {"Checkpointed", ckpt_forward, NULL, NULL};

static nn_module *checkpointed(nn_module *child)
{
    nn_module *m = nn_module_new(&CKPT, NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(nn_module_add_child(m, "0", child), 0);
    return m;
}

static void setup_make(setup *s, uint64_t seed, double lr, const nn_trainer_options *o)
{
    ad_rng rng;
    ad_rng_init(&rng, seed);
    s->net = with_ckpt ? NN_SEQUENTIAL(checkpointed(NN_SEQUENTIAL(
                                           nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                                           nn_dropout(0.25, seed + 1))),
                                       nn_linear(8, 3, true, AD_FLOAT32, &rng))
             : with_dropout ? NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                                          nn_dropout(0.25, seed + 1),
                                          nn_linear(8, 3, true, AD_FLOAT32, &rng))
             : with_noise ? NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                                          noise_layer(seed + 1),
                                          nn_linear(8, 3, true, AD_FLOAT32, &rng))
                          : NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                                          nn_linear(8, 3, true, AD_FLOAT32, &rng));
    ck_assert_ptr_nonnull(s->net);
    nn_named_tensors *p = nn_parameters(s->net);
    s->opt = nn_sgd(p, &(nn_sgd_options){.lr = lr, .momentum = 0.9});
    nn_named_tensors_free(p);
    ck_assert_ptr_nonnull(s->opt);
    s->tr = nn_trainer_new(s->net, NULL, s->opt, o);
    ck_assert_ptr_nonnull(s->tr);
}

static void setup_free(setup *s)
{
    nn_trainer_free(s->tr);
    nn_optim_free(s->opt);
    nn_module_free(s->net);
}

static const nn_trainer_options CLASSIFY = {.accuracy = true, .schedule = NN_SCHEDULE_COSINE};

/* True when every parameter of a and b holds the same bits. */
static bool same_params(const nn_module *a, const nn_module *b)
{
    nn_named_tensors *pa = nn_parameters(a), *pb = nn_parameters(b);
    bool same = pa->n == pb->n;
    for (int i = 0; same && i < pa->n; i++)
        same = memcmp(ad_data(pa->tensors[i]), ad_data(pb->tensors[i]),
                      (size_t)ad_numel(pa->tensors[i]) * sizeof(float)) == 0;
    nn_named_tensors_free(pa);
    nn_named_tensors_free(pb);
    return same;
}

/* Collects every epoch's figures. */
typedef struct run_log {
    int epochs;
    nn_epoch_info e[16];
    int64_t steps;
    int stop_after_steps; /* on_step returns 1 then (0: never) */
    int stop_at_epoch;    /* on_epoch returns 1 then (0: never) */
} run_log;

static int log_step(nn_trainer *tr, const nn_step_info *s, void *user)
{
    run_log *l = user;
    ck_assert_int_eq(s->step, nn_trainer_steps(tr));
    ck_assert(s->batch >= 1 && s->batch <= s->num_batches);
    ck_assert(s->samples == BATCH || s->samples == N % BATCH);
    l->steps++;
    return l->stop_after_steps && l->steps == l->stop_after_steps ? 1 : 0;
}

static int log_epoch(nn_trainer *tr, const nn_epoch_info *e, void *user)
{
    run_log *l = user;
    ck_assert_int_eq(e->epoch, nn_trainer_epoch(tr));
    if (l->epochs < 16) l->e[l->epochs++] = *e;
    return l->stop_at_epoch && e->epoch == l->stop_at_epoch ? 1 : 0;
}

/* ---- tests ------------------------------------------------------------------ */

/* Training on the three clusters brings the loss from about ln 3 = 1.1 to
 * near 0 and the accuracy to 1; every figure the epochs report is real. */
START_TEST(fit_learns)
{
    data d;
    data_make(&d);
    setup s;
    setup_make(&s, 1, 0.1, &CLASSIFY);
    run_log l = {0};
    nn_fit_options fo = {.on_step = log_step, .on_epoch = log_epoch, .user = &l};
    ck_assert_int_eq(nn_fit(s.tr, d.train, d.test, 10, &fo), 0);
    ck_assert_int_eq(l.epochs, 10);
    ck_assert_int_eq(l.steps, 10 * 7);
    ck_assert_int_eq(nn_trainer_steps(s.tr), 70);
    ck_assert_int_eq(nn_trainer_epoch(s.tr), 10);
    ck_assert_int_eq(l.e[0].train.samples, N);
    ck_assert_int_eq(l.e[9].val.samples, N);
    ck_assert(l.e[0].train.loss > 0.5);
    ck_assert_msg(l.e[9].train.loss < 0.1, "final training loss %g", l.e[9].train.loss);
    ck_assert_msg(l.e[9].val.loss < l.e[0].val.loss, "val loss did not fall");
    ck_assert_double_eq(l.e[9].val.accuracy, 1.0);
    /* the cosine schedule ends near 0 */
    ck_assert(l.e[9].lr < 1e-3 && l.e[0].lr > 0.05);

    /* evaluate: the same figures as nn_evaluate and a confusion matrix */
    nn_metrics m;
    nn_confusion *cm = nn_confusion_new(3);
    ck_assert_int_eq(nn_trainer_evaluate(s.tr, d.test, cm, &m), N);
    double mean_loss;
    ck_assert_int_eq(nn_evaluate(s.net, d.test, NULL, &mean_loss), N);
    ck_assert_double_eq_tol(m.loss, mean_loss, 1e-6);
    ck_assert_double_eq(m.loss, l.e[9].val.loss);
    ck_assert_double_eq(m.accuracy, nn_confusion_accuracy(cm));
    ck_assert_int_eq(cm->total, N);
    ad_tensor *out = nn_trainer_output(s.tr);
    ck_assert_int_eq(ad_size(out, 1), 3);
    nn_confusion_free(cm);
    setup_free(&s);
    data_free(&d);
}
END_TEST

/* One recording per batch shape, replayed by every step; from the second
 * step of a shape on, a step asks the allocator for nothing. */
START_TEST(steps_replay_without_allocating)
{
    data d;
    data_make(&d);
    setup s;
    setup_make(&s, 1, 0.1, &CLASSIFY);
    ad_tensor *x, *y;
    for (int epoch = 0; epoch < 3; epoch++) {
        for (int b = 0; nn_loader_next(d.train, &x, &y) == 1; b++) {
            size_t before = ad__alloc_calls;
            double loss;
            ck_assert_int_eq(nn_trainer_step(s.tr, x, y, &loss), 0);
            ck_assert(isfinite(loss));
            if (epoch > 0) ck_assert_uint_eq(ad__alloc_calls, before);
        }
    }
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(s.tr, &st), 0);
    ck_assert_int_eq(st.recordings, 2); /* 16 and the last 4 */
    ck_assert_int_eq(st.replays, 21);
    ck_assert_uint_gt(st.nodes, 0);
    ck_assert_uint_gt(st.arena_reserved, 0);
    setup_free(&s);
    data_free(&d);
}
END_TEST

/* Replay recomputes what a fresh recording computes: the two trainers end
 * with the same bits.  With a Dropout (_i = 1) too: each replay draws a new
 * mask from the layer's stream, as a fresh recording does, and the
 * recording of each batch shape puts the stream back, so both runs take
 * the same masks and leave the stream at the same counter.  With a noise
 * layer of the user's own (_i = 2, ad_randn_like) the same holds. */
START_TEST(replay_matches_recording)
{
    with_dropout = _i == 1;
    with_noise = _i == 2;
    data d;
    data_make(&d);
    setup a, b;
    setup_make(&a, 5, 0.1, &CLASSIFY);
    nn_trainer_options fresh = CLASSIFY;
    fresh.no_replay = true;
    setup_make(&b, 5, 0.1, &fresh);
    ck_assert_int_eq(nn_fit(a.tr, d.train, d.test, 3, NULL), 0);
    ck_assert_int_eq(nn_fit(b.tr, d.train, d.test, 3, NULL), 0);
    ck_assert_msg(same_params(a.net, b.net), "replayed and fresh runs differ");
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(a.tr, &st), 0);
    ck_assert_int_eq(st.replays, 21);
    ck_assert_int_eq(nn_trainer_get_stats(b.tr, &st), 0);
    ck_assert_int_eq(st.recordings, 0);
    ck_assert_int_eq(st.replays, 0);
    if (with_dropout || with_noise) {
        /* 21 steps of 16 or 4 rows of 8 features: 3 epochs x (6 x 128 + 32)
         * values, two uniforms each for a normal */
        const ad_rng *ra = nn_module_rng(nn_child(a.net, 2)), *rb = nn_module_rng(nn_child(b.net, 2));
        ck_assert_uint_eq(ra->counter, (with_noise ? 2u : 1u) * 3 * (6 * 16 * 8 + 4 * 8));
        ck_assert_uint_eq(ra->counter, rb->counter);
        ck_assert_uint_eq(ra->seed, rb->seed);
        /* and the masks did change from step to step: a run whose every
         * step used one fixed mask per shape (the old replay) differs */
        setup c;
        setup_make(&c, 5, 0.1, &CLASSIFY);
        ad_rng *rc = nn_module_rng(nn_child(c.net, 2));
        ad_tensor *x, *y;
        for (int epoch = 0; epoch < 3; epoch++) {
            while (nn_loader_next(d.train, &x, &y) == 1) {
                const ad_rng keep = *rc; /* every step the same stream position */
                double loss;
                ck_assert_int_eq(nn_trainer_step(c.tr, x, y, &loss), 0);
                *rc = keep;
            }
        }
        ck_assert(!same_params(a.net, c.net));
        setup_free(&c);
    }
    setup_free(&a);
    setup_free(&b);
    data_free(&d);
    with_dropout = with_noise = false;
}
END_TEST

/* BatchNorm's running statistics follow every step: a replayed step
 * folds its batch in (the update is the op batch_norm_stats, run again at
 * replay), and recording a shape on zeros does not count as a batch.  The
 * replayed trainer ends with the bits of one that records every step
 * afresh, over two batch shapes (16 and the last 4), and the statistics
 * did move from their start (0 and 1). */
START_TEST(replay_updates_batch_norm_stats)
{
    enum { N = 36, C = 2 };
    double xv[N * C * 4];
    int64_t yv[N];
    ad_rng rng;
    ad_rng_init(&rng, 21);
    for (int i = 0; i < N * C * 4; i++) xv[i] = 6 * ad_rng_uniform(&rng) + (i % 8 < 4 ? 1 : -2);
    for (int i = 0; i < N; i++) yv[i] = i % 3;
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(N, C, 2, 2), xv);
    ad_tensor *y = ad_from_array(NULL, AD_INT64, AD_SHAPE(N), yv);
    nn_module *net[2];
    nn_optim *opt[2];
    nn_trainer *tr[2];
    for (int k = 0; k < 2; k++) {
        ad_rng init;
        ad_rng_init(&init, 4);
        net[k] = NN_SEQUENTIAL(nn_batch_norm2d(C, 1e-5, 0.1, true, AD_FLOAT64), nn_flatten(1, -1),
                               nn_linear(C * 4, 3, true, AD_FLOAT64, &init));
        opt[k] = nn_sgd_module(net[k], &(nn_sgd_options){.lr = 0.1});
        tr[k] = nn_trainer_new(net[k], NULL, opt[k], &(nn_trainer_options){.no_replay = k == 1});
        ck_assert_ptr_nonnull(tr[k]);
        nn_loader *l = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 16});
        ck_assert_int_eq(nn_fit(tr[k], l, NULL, 3, NULL), 0);
        nn_loader_free(l);
    }
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(tr[0], &st), 0);
    ck_assert_int_eq(st.recordings, 2);
    ck_assert_int_eq(st.replays, 9);
    for (int j = 0; j < 2; j++) {
        const char *name = j ? "0.running_var" : "0.running_mean";
        const double *a = ad_data(nn_get_buffer(net[0], name));
        const double *b = ad_data(nn_get_buffer(net[1], name));
        for (int c = 0; c < C; c++) {
            ck_assert_msg(a[c] == b[c], "%s[%d]: replayed %.17g, recorded %.17g", name, c, a[c],
                          b[c]);
            ck_assert_msg(fabs(a[c] - (j ? 1.0 : 0.0)) > 0.1, "%s[%d] = %g", name, c, a[c]);
        }
    }
    for (int k = 0; k < 2; k++) {
        nn_trainer_free(tr[k]);
        nn_optim_free(opt[k]);
        nn_module_free(net[k]);
    }
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

/* A model with a checkpointed part (dropout inside) trained by nn_fit,
 * whose steps replay a frozen tape: the parameters end the same bits as
 * the plain model's trained without replay - the checkpoint replays by
 * calling its function again, and its recomputation in each backward
 * pass draws the masks that step drew.  The function runs its child in
 * the mode of the call (ckpt_call): the trainer replays its evaluation
 * tape with the model in training mode. */
START_TEST(checkpointed_model_replays)
{
    data d;
    data_make(&d);
    setup a, b;
    nn_trainer_options fresh = CLASSIFY;
    fresh.no_replay = true;
    with_ckpt = true;
    setup_make(&a, 5, 0.1, &CLASSIFY);
    with_ckpt = false;
    with_dropout = true;
    setup_make(&b, 5, 0.1, &fresh);
    ck_assert_int_eq(nn_fit(a.tr, d.train, d.test, 3, NULL), 0);
    ck_assert_int_eq(nn_fit(b.tr, d.train, d.test, 3, NULL), 0);
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(a.tr, &st), 0);
    ck_assert_int_eq(st.replays, 21);
    ck_assert_msg(same_params(a.net, b.net), "checkpointed and plain runs differ");
    setup_free(&a);
    setup_free(&b);
    data_free(&d);
    with_dropout = false;
}
END_TEST

/* A 5-epoch run stopped after epoch 2 (by its epoch callback) with a
 * checkpoint per epoch, then resumed by fresh objects (other initial
 * weights, which the load replaces): the parameters end bit-identical to
 * the uninterrupted run's.  The loader's order per epoch and the schedule
 * over all 35 steps are what make it exact, and with a Dropout (_i = 1)
 * its mask stream, saved as "module_rng.2".  Both replay their steps
 * (_i = 2: the Dropout run again without replay, which must agree too). */
START_TEST(checkpoint_resume_is_exact)
{
    with_dropout = _i == 1 || _i == 2;
    const nn_trainer_options opts = {.accuracy = true, .schedule = NN_SCHEDULE_COSINE,
                                     .no_replay = _i == 2};
    /* _i == 3: two threads in NN_THREADS_AUTO, which chooses after its
     * first step and runs that one on the whole batch: the resumed run
     * takes the saved choice from its first step, as the whole run did */
    int threads = _i == 3 ? 2 : 1;
    char dir[256], path[300], bare[300];
    ck_assert_int_eq(ot_make_tmpdir(dir, sizeof dir, "test_trainer"), 0);
    snprintf(path, sizeof path, "%s/run.safetensors", dir);
    snprintf(bare, sizeof bare, "%s/bare.safetensors", dir);
    data d;
    data_make(&d);

    setup whole;
    setup_make(&whole, 11, 0.1, &opts);
    ck_assert_int_eq(nn_trainer_set_threads(whole.tr, threads), 0);
    ck_assert_int_eq(nn_fit(whole.tr, d.train, d.test, 5, NULL), 0);

    setup first;
    setup_make(&first, 11, 0.1, &opts);
    ck_assert_int_eq(nn_trainer_set_threads(first.tr, threads), 0);
    run_log l = {.stop_at_epoch = 2};
    nn_fit_options fo = {.checkpoint = path, .checkpoint_metadata = "{\"note\": \"test\"}",
                         .on_epoch = log_epoch, .user = &l};
    ck_assert_int_eq(nn_fit(first.tr, d.train, d.test, 5, &fo), 0);
    ck_assert_int_eq(nn_trainer_epoch(first.tr), 2);
    ck_assert_int_eq(l.epochs, 2);
    ck_assert(!same_params(first.net, whole.net));

    nn_safetensors_info *info = nn_safetensors_inspect(path);
    ck_assert_ptr_nonnull(info);
    ck_assert_str_eq(nn_safetensors_metadata(info, "nn_trainer_epoch"), "2");
    ck_assert_str_eq(nn_safetensors_metadata(info, "nn_trainer_step"), "14");
    ck_assert_str_eq(nn_safetensors_metadata(info, "note"), "test");
    bool has_rng = false;
    for (int i = 0; i < info->n; i++) has_rng |= !strcmp(info->entries[i].name, "module_rng.2");
    ck_assert(has_rng == with_dropout);
    nn_safetensors_info_free(info);

    setup resumed;
    setup_make(&resumed, 99, 0.1, &opts);
    ck_assert_int_eq(nn_trainer_set_threads(resumed.tr, threads), 0);
    ck_assert(!same_params(resumed.net, first.net));
    ck_assert(nn_optim_get_lr(resumed.opt) != nn_optim_get_lr(first.opt));
    ck_assert_int_eq(nn_trainer_load(resumed.tr, path, true), 0);
    ck_assert(same_params(resumed.net, first.net));
    /* the learning rate where the saved run left it (a callback's, say) */
    ck_assert(nn_optim_get_lr(resumed.opt) == nn_optim_get_lr(first.opt));
    ck_assert_int_eq(nn_trainer_epoch(resumed.tr), 2);
    ck_assert_int_eq(nn_trainer_steps(resumed.tr), 14);
    ck_assert_int_eq(nn_optim_steps(resumed.opt), 14);
    ck_assert_int_eq(nn_fit(resumed.tr, d.train, d.test, 5, NULL), 0);
    ck_assert_int_eq(nn_trainer_epoch(resumed.tr), 5);
    ck_assert_msg(same_params(resumed.net, whole.net), "the resumed run differs");

    /* weights only: the model's tensors, not the optimiser or the counts */
    setup w;
    setup_make(&w, 99, 0.1, &opts);
    ck_assert_int_eq(nn_trainer_load(w.tr, path, false), 0);
    ck_assert(same_params(w.net, first.net));
    ck_assert_int_eq(nn_trainer_epoch(w.tr), 0);
    ck_assert_int_eq(nn_optim_steps(w.opt), 0);

    /* a plain state_dict has nothing to resume; a missing file is I/O */
    nn_named_tensors *sd = nn_state_dict(whole.net);
    ck_assert_int_eq(nn_save_safetensors(bare, sd->n, sd->names, sd->tensors, NULL), 0);
    nn_named_tensors_free(sd);
    ck_assert_int_eq(nn_trainer_load(w.tr, bare, false), 0);
    ck_assert(same_params(w.net, whole.net));
    ck_assert_int_eq(nn_trainer_load(w.tr, bare, true), -1);
    ck_assert_ptr_nonnull(strstr(ad_error(), "nothing to resume"));
    ck_assert(same_params(w.net, whole.net));
    ck_assert_int_eq(nn_trainer_load(w.tr, "/nonexistent/x.safetensors", false), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_IO);
    ad_clear_error();

    setup_free(&w);
    setup_free(&resumed);
    setup_free(&first);
    setup_free(&whole);
    data_free(&d);
    ot_remove_tree(dir);
    with_dropout = false;
}
END_TEST

/* The rate of every step nn_fit takes. */
typedef struct lr_log {
    int n;
    double lr[16];
} lr_log;

static int log_lr(nn_trainer *tr, const nn_step_info *s, void *user)
{
    (void)tr;
    lr_log *l = user;
    if (l->n < 16) l->lr[l->n++] = s->lr;
    return 0;
}

/* A learning rate far too large makes the loss non-finite: nn_fit stops
 * with AD_ERR_NUMERIC, naming the epoch and batch.  A callback's error
 * stops it too, with the callback's message; an on_step returning 1 stops
 * it cleanly mid-epoch. */
static int fail_epoch(nn_trainer *tr, const nn_epoch_info *e, void *user)
{
    (void)tr, (void)e, (void)user;
    return ad_set_error("my_callback: disk full");
}

/* The data-parallel hooks, with a mirror for a peer: a world of two whose
 * other worker always had this one's batch.  Averaging identical
 * gradients changes nothing, so the parameters are bit for bit those of a
 * lone run, while every figure counts both workers' samples; the worker
 * of rank 1 writes no checkpoint and prints nothing. */
typedef struct mirror {
    int averaged, sums;
    bool fail;
} mirror;

static int mirror_average(void *user, double *samples, double *loss)
{
    mirror *m = user;
    m->averaged++;
    if (m->fail) return ad_set_error("mirror: the peer is gone");
    *samples *= 2; /* (n g + n g) / 2n = g: the gradients stay; the loss too */
    (void)loss;
    return 0;
}

static int mirror_sum(void *user, double *v, int n)
{
    ((mirror *)user)->sums++;
    for (int i = 0; i < n; i++) v[i] *= 2;
    return 0;
}

/* A transport that asks for its weight in the seed (grad_scale): each of
 * two workers' gradients leave backward halved, and the mirror's sum of
 * the two doubles them back (exactly: powers of two), so the parameters
 * are again the lone run's bits; were the seed ignored, every step would
 * take twice the lone run's gradient. */
typedef struct seeded {
    nn_module *net;
    int seeds;
    double samples;
} seeded;

static double seeded_scale(void *user, double samples)
{
    seeded *m = user;
    m->seeds++;
    m->samples = samples;
    return 0.5;
}

static int seeded_average(void *user, double *samples, double *loss)
{
    seeded *m = user;
    nn_named_tensors *ps = nn_parameters(m->net);
    for (int i = 0; ps && i < ps->n; i++) {
        ad_tensor *g = ad_tensor_grad(ps->tensors[i]);
        ck_assert_ptr_nonnull(g);
        ck_assert_int_eq(ad_tensor_dtype(g), AD_FLOAT32);
        float *v = ad_data(g);
        for (int64_t j = 0; j < ad_numel(g); j++) v[j] *= 2;
    }
    nn_named_tensors_free(ps);
    ck_assert_double_eq(*samples, m->samples); /* the batch that was seeded */
    *samples *= 2;
    (void)loss;
    return 0;
}

static int seeded_sum(void *user, double *v, int n)
{
    (void)user;
    for (int i = 0; i < n; i++) v[i] *= 2;
    return 0;
}

/* A transport that reduces during backward (grad_ready) over an
 * optimiser that also holds z, a parameter the loss does not reach, whose
 * gradient is dirtied before every step: grad_ready never reports z, and
 * when average_grads reads the gradients z's is 0 again, as
 * nn_optim_zero_grad and a backward would leave it (the step sets the
 * reached gradients, AD_SET_GRAD, and zeroes the others after the pass). */
typedef struct early {
    nn_module *net;
    ad_tensor *z;
    int reported, z_reported, averaged;
} early;

static int early_ready(void *user, ad_tensor *param, double samples)
{
    early *e = user;
    (void)samples;
    e->reported++;
    e->z_reported += param == e->z;
    return 0;
}

static int early_average(void *user, double *samples, double *loss)
{
    early *e = user;
    e->averaged++;
    const float *gz = ad_data(ad_tensor_grad(e->z));
    ck_assert(gz[0] == 0.0f && gz[1] == 0.0f);
    (void)samples;
    (void)loss;
    return 0;
}

/* z.grad = 2 z: a stale gradient the step must not leave behind. */
static int dirty_z(nn_trainer *tr, const nn_step_info *si, void *user)
{
    (void)tr;
    (void)si;
    ad_tensor *z = ((early *)user)->z;
    ck_assert_int_eq(ad_zero_grad(z), 0);
    ad_tape *tp = ad_tape_new();
    ad_tape *prev = ad_tape_activate(tp);
    ck_assert_int_eq(ad_backward(ad_sum(ad_mul(z, z), NULL, 0, false), NULL, 0), 0);
    ad_tape_activate(prev);
    ad_tape_free(tp);
    ck_assert(((const float *)ad_data(ad_tensor_grad(z)))[1] == -4.0f);
    return 0;
}

START_TEST(comm_grad_ready_unreached_param)
{
    data d;
    data_make(&d);
    ad_rng rng;
    ad_rng_init(&rng, 7);
    early e = {.net = NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                                    nn_linear(8, 3, true, AD_FLOAT32, &rng))};
    e.z = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(2), ((float[]){1, -2}));
    ck_assert_int_eq(ad_set_requires_grad(e.z, true), 0);
    dirty_z(NULL, NULL, &e);
    nn_named_tensors *p = nn_parameters(e.net);
    ad_tensor *all[5] = {p->tensors[0], p->tensors[1], p->tensors[2], p->tensors[3], e.z};
    nn_named_tensors *withz = nn_named_tensors_new(5, NULL, all);
    nn_optim *opt = nn_sgd(withz, &(nn_sgd_options){.lr = 0.1});
    nn_named_tensors_free(withz);
    nn_named_tensors_free(p);
    nn_trainer *tr = nn_trainer_new(e.net, NULL, opt, NULL);
    ck_assert_int_eq(nn_trainer_set_comm(tr, &(nn_trainer_comm){.rank = 0, .world_size = 1,
                                                                .average_grads = early_average,
                                                                .sum = seeded_sum,
                                                                .grad_ready = early_ready,
                                                                .user = &e}),
                     0);
    ck_assert_int_eq(nn_fit(tr, d.train, NULL, 1, &(nn_fit_options){.on_step = dirty_z,
                                                                    .user = &e}), 0);
    int steps = (N + BATCH - 1) / BATCH;
    ck_assert_int_eq(e.averaged, steps);
    ck_assert_int_eq(e.reported, 4 * steps); /* the model's four, each step */
    ck_assert_int_eq(e.z_reported, 0);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(e.net);
    ad_tensor_free(e.z);
    data_free(&d);
}
END_TEST

/* A module that scales its input by u, a tensor that requires grad but
 * that no optimiser holds: its gradient adds up across steps, as
 * ad_backward's does and as in PyTorch (zero_grad clears only the
 * optimiser's), while the optimiser's parameters get each step's own.
 * The trainer sets those (AD_SET_GRAD) only when the loss reaches no
 * such leaf; with one it zeroes the optimiser's and adds.  Two steps on
 * one batch with lr 0 (nothing moves): u's gradient doubles, the
 * weight's stays.  With two threads and the batch split asked for, the
 * step runs on the whole batch (the shards would give u only the last
 * shard's part) and gives u the one-thread gradient. */
typedef struct scale_state {
    ad_tensor *u;
} scale_state;

static ad_tensor *scale_forward(nn_module *m, ad_tensor *x)
{
    const scale_state *st = nn_module_state(m);
    return ad_mul(x, st->u);
}
static const nn_module_type SCALE = {"ScaleByU", scale_forward, NULL, NULL};

START_TEST(leaf_outside_optimizer_accumulates)
{
    float g1[2][3];
    for (int run = 0; run < 2; run++) {
        ad_rng rng;
        ad_rng_init(&rng, 11);
        scale_state st = {ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(3), ((float[]){1, 0.5f, -1}))};
        ck_assert_int_eq(ad_set_requires_grad(st.u, true), 0);
        nn_module *net =
            NN_SEQUENTIAL(nn_linear(2, 3, true, AD_FLOAT32, &rng), nn_module_new(&SCALE, &st));
        ck_assert_ptr_nonnull(net);
        nn_named_tensors *p = nn_parameters(net);
        ck_assert_int_eq(p->n, 2);
        ad_tensor *w = p->tensors[0];
        nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0});
        nn_named_tensors_free(p);
        nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
        ck_assert_ptr_nonnull(tr);
        if (run == 1) {
            ck_assert_int_eq(nn_trainer_set_threads(tr, 2), 0);
            ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_BATCH), 0);
        }
        ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(8, 2), 0, 1);
        ad_tensor *y = ad_from_array(NULL, AD_INT64, AD_SHAPE(8),
                                     ((int64_t[]){0, 1, 2, 0, 1, 2, 0, 1}));
        float w1[6];
        ck_assert_int_eq(nn_trainer_step(tr, x, y, NULL), 0);
        memcpy(g1[run], ad_data(ad_tensor_grad(st.u)), sizeof g1[run]);
        memcpy(w1, ad_data(ad_tensor_grad(w)), sizeof w1);
        ck_assert_int_eq(nn_trainer_step(tr, x, y, NULL), 0);
        const float *g2 = ad_data(ad_tensor_grad(st.u)), *w2 = ad_data(ad_tensor_grad(w));
        for (int i = 0; i < 3; i++) {
            ck_assert(g1[run][i] != 0.0f);
            ck_assert_msg(g2[i] == 2 * g1[run][i], "u.grad[%d] %g after two steps, %g after one",
                          i, g2[i], g1[run][i]);
        }
        for (int i = 0; i < 6; i++) ck_assert(w2[i] == w1[i]);
        nn_trainer_free(tr);
        nn_optim_free(opt);
        nn_module_free(net);
        ad_tensor_free(st.u);
        ad_tensor_free(x);
        ad_tensor_free(y);
    }
    for (int i = 0; i < 3; i++) ck_assert_close(g1[1][i], g1[0][i], 1e-6);
}
END_TEST

/* The mean of the square roots of the model's outputs: NaN from finite
 * inputs for a negative output. */
static ad_tensor *sqrt_loss(ad_tensor *out, ad_tensor *target, nn_reduction r)
{
    (void)target;
    ad_tensor *s = ad_sqrt(out);
    return r == NN_SUM ? ad_sum(s, NULL, 0, false) : ad_mean(s, NULL, 0, false);
}

/* Anomaly mode is per thread; a step split among the trainer's threads
 * checks every shard as the calling thread's setting says, so a NaN born
 * in the last rows of the batch (a worker's shard, run there:
 * nn__pool_testing_late(3)) is reported by the op that made it, as on one
 * thread, not as a non-finite loss. */
START_TEST(anomaly_mode_reaches_split_shards)
{
    for (int threads = 1; threads <= 3; threads++) {
        ad_rng rng;
        ad_rng_init(&rng, 3);
        nn_module *net = nn_linear(1, 1, false, AD_FLOAT32, &rng);
        ck_assert_ptr_nonnull(net);
        nn_named_tensors *p = nn_parameters(net);
        *(float *)ad_data(p->tensors[0]) = 1.0f;
        nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.01});
        nn_named_tensors_free(p);
        nn_trainer *tr = nn_trainer_new(net, sqrt_loss, opt, NULL);
        ck_assert_ptr_nonnull(tr);
        ck_assert_int_eq(nn_trainer_set_threads(tr, threads), 0);
        ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_BATCH), 0);
        ad_tensor *good = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(9, 1),
                                        ((float[]){1, 2, 3, 4, 5, 6, 7, 8, 9}));
        ad_tensor *bad = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(9, 1),
                                       ((float[]){1, 2, 3, 4, 5, 6, 7, 8, -9}));
        ad_tensor *y = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(9, 1));
        double loss;
        ck_assert_int_eq(nn_trainer_step(tr, good, y, &loss), 0);
        if (threads > 1) ck_assert_int_eq(nn_trainer_get_thread_mode(tr), NN_THREADS_BATCH);
        bool prev = ad_set_anomaly_mode(true);
        nn__pool_testing_late(3); /* the workers' shards on the workers */
        int rc = nn_trainer_step(tr, bad, y, &loss);
        nn__pool_testing_late(0);
        ad_set_anomaly_mode(prev);
        ck_assert_msg(rc == -1 && ad_error() && strstr(ad_error(), "ad_sqrt") &&
                          strstr(ad_error(), "anomaly"),
                      "%d threads: rc %d, error %s", threads, rc, ad_error() ? ad_error() : "none");
        /* without anomaly mode: a non-finite loss, the parameters kept */
        rc = nn_trainer_step(tr, bad, y, &loss);
        ck_assert_msg(rc == -1 && ad_errcode() == AD_ERR_NUMERIC && strstr(ad_error(), "nan"),
                      "%d threads, no anomaly mode: rc %d (%s)", threads, rc,
                      ad_error() ? ad_error() : "");
        nn_trainer_free(tr);
        nn_optim_free(opt);
        nn_module_free(net);
        ad_tensor_free(good);
        ad_tensor_free(bad);
        ad_tensor_free(y);
    }
}
END_TEST

/* An error inside a shard of a split step names positions within the
 * shard (a label out of range in the batch's last row is at position 3
 * of the second shard's 4 rows), so the message says which rows the
 * shard holds. */
START_TEST(shard_error_names_its_rows)
{
    ad_rng rng;
    ad_rng_init(&rng, 3);
    nn_module *net = nn_linear(2, 3, true, AD_FLOAT32, &rng);
    nn_named_tensors *p = nn_parameters(net);
    nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.01});
    nn_named_tensors_free(p);
    nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
    ck_assert_ptr_nonnull(tr);
    ck_assert_int_eq(nn_trainer_set_threads(tr, 2), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_BATCH), 0);
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(8, 2), 0, 1);
    ad_tensor *y =
        ad_from_array(NULL, AD_INT64, AD_SHAPE(8), ((int64_t[]){0, 1, 2, 0, 1, 2, 0, 1}));
    ad_tensor *bad =
        ad_from_array(NULL, AD_INT64, AD_SHAPE(8), ((int64_t[]){0, 1, 2, 0, 1, 2, 0, 3}));
    ck_assert_int_eq(nn_trainer_step(tr, x, y, NULL), 0);
    ck_assert_int_eq(nn_trainer_get_thread_mode(tr), NN_THREADS_BATCH);
    ck_assert_int_eq(nn_trainer_step(tr, x, bad, NULL), -1);
    ck_assert_msg(strstr(ad_error(), "shard of rows 4..7 of the batch"), "%s", ad_error());
    ck_assert_int_eq(nn_trainer_step(tr, x, y, NULL), 0); /* and it goes on */
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    ad_tensor_free(x);
    ad_tensor_free(y);
    ad_tensor_free(bad);
}
END_TEST

START_TEST(comm_hooks)
{
    data d;
    data_make(&d);
    setup alone, two;
    setup_make(&alone, 5, 0.1, &CLASSIFY);
    setup_make(&two, 5, 0.1, &CLASSIFY);
    mirror m = {0};
    nn_trainer_comm c = {.rank = 1, .world_size = 2, .average_grads = mirror_average,
                         .sum = mirror_sum, .user = &m};
    ck_assert_error_rc(nn_trainer_set_comm(two.tr, &(nn_trainer_comm){.rank = 2, .world_size = 2,
                                                   .average_grads = mirror_average,
                                                   .sum = mirror_sum}),
                       "nn_trainer_set_comm: rank 2 outside a world of size 2");
    ck_assert_error_rc(nn_trainer_set_comm(two.tr, &(nn_trainer_comm){.world_size = 1}),
                       "nn_trainer_set_comm: comm needs both hooks");
    ck_assert_int_eq(nn_trainer_set_comm(two.tr, &c), 0);
    ck_assert_ptr_eq(nn_trainer_model(two.tr), two.net);
    ck_assert_ptr_eq(nn_trainer_optimizer(two.tr), two.opt);

    run_log la = {0}, lb = {0};
    char path[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/test_trainer_commXXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    remove(path);
    ck_assert_int_eq(nn_fit(alone.tr, d.train, d.test, 2,
                            &(nn_fit_options){.on_epoch = log_epoch, .user = &la}), 0);
    ck_assert_int_eq(nn_fit(two.tr, d.train, d.test, 2,
                            &(nn_fit_options){.on_epoch = log_epoch, .user = &lb,
                                              .checkpoint = path, .progress = stderr}), 0);
    ck_assert(same_params(alone.net, two.net));
    ck_assert_int_eq(m.averaged, 2 * ((N + BATCH - 1) / BATCH));
    ck_assert_int_gt(m.sums, 0);
    ck_assert_int_eq(lb.e[1].train.samples, 2 * N);
    ck_assert_int_eq(lb.e[1].val.samples, 2 * N);
    ck_assert_double_eq_tol(lb.e[1].train.loss, la.e[1].train.loss, 1e-6);
    ck_assert_double_eq_tol(lb.e[1].val.accuracy, la.e[1].val.accuracy, 1e-12);
    ck_assert_int_ne(access(path, F_OK), 0); /* rank 1 saves nothing */

    /* the seed hook: gradients weighted in backward, not after */
    setup halved;
    setup_make(&halved, 5, 0.1, &CLASSIFY);
    seeded sm = {.net = halved.net};
    ck_assert_int_eq(nn_trainer_set_comm(halved.tr, &(nn_trainer_comm){
                                                        .rank = 0, .world_size = 2,
                                                        .average_grads = seeded_average,
                                                        .sum = seeded_sum, .user = &sm,
                                                        .grad_scale = seeded_scale}),
                     0);
    ck_assert_int_eq(nn_fit(halved.tr, d.train, NULL, 2, NULL), 0);
    ck_assert_int_eq(sm.seeds, 2 * ((N + BATCH - 1) / BATCH));
    ck_assert(same_params(alone.net, halved.net));
    setup_free(&halved);

    /* a failing peer fails the step, with its message */
    m.fail = true;
    ck_assert_int_eq(nn_fit(two.tr, d.train, NULL, 3, NULL), -1);
    ck_assert_str_eq(ad_error(), "mirror: the peer is gone");
    ck_assert_int_eq(nn_trainer_epoch(two.tr), 2);
    ck_assert_int_eq(nn_trainer_set_comm(two.tr, NULL), 0); /* alone again */
    ck_assert_int_eq(nn_fit(two.tr, d.train, NULL, 3, NULL), 0);

    /* counts set as a resume does: the schedule goes on from epoch * batches */
    ck_assert_int_eq(nn_trainer_set_counts(alone.tr, 1, 999), 0);
    ck_assert_int_eq(nn_fit(alone.tr, d.train, NULL, 2, NULL), 0);
    ck_assert_int_eq(nn_trainer_steps(alone.tr), 2 * ((N + BATCH - 1) / BATCH));
    ck_assert_error_rc(nn_trainer_set_counts(alone.tr, -1, 0),
                       "nn_trainer_set_counts: counts must be in 0..2^62");
    /* counts that cannot go on (the next step overflowed steps) */
    ck_assert_error_rc(nn_trainer_set_counts(alone.tr, 0, INT64_MAX),
                       "nn_trainer_set_counts: counts must be in 0..2^62");
    setup_free(&alone);
    setup_free(&two);
    data_free(&d);
}
END_TEST

START_TEST(stops_and_errors)
{
    data d;
    data_make(&d);
    setup s;
    setup_make(&s, 1, 1e30, &CLASSIFY);
    ck_assert_int_eq(nn_fit(s.tr, d.train, NULL, 3, NULL), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(ad_error(), "nn_fit: training diverged: the loss is"));
    ck_assert_ptr_nonnull(strstr(ad_error(), "at epoch 1, batch"));
    setup_free(&s);

    setup_make(&s, 1, 0.1, &CLASSIFY);
    ck_assert_int_eq(nn_fit(s.tr, d.train, d.test, 3,
                            &(nn_fit_options){.on_epoch = fail_epoch}), -1);
    ck_assert_str_eq(ad_error(), "my_callback: disk full");
    ck_assert_int_eq(nn_trainer_epoch(s.tr), 1);
    run_log l = {.stop_after_steps = 3};
    ck_assert_int_eq(nn_fit(s.tr, d.train, NULL, 3,
                            &(nn_fit_options){.on_step = log_step, .user = &l}), 0);
    ck_assert_int_eq(nn_trainer_steps(s.tr), 7 + 3);
    ck_assert_int_eq(nn_trainer_epoch(s.tr), 1); /* epoch 2 was cut short */
    /* fitting to where the trainer already is does nothing */
    ck_assert_int_eq(nn_fit(s.tr, d.train, d.test, 1, NULL), 0);
    ck_assert_int_eq(nn_trainer_steps(s.tr), 10);
    /* a stop at an epoch's last batch does not cut it short: it counts,
     * and on_epoch is told */
    run_log l2 = {.stop_after_steps = 7};
    ck_assert_int_eq(nn_fit(s.tr, d.train, NULL, 3, &(nn_fit_options){.on_step = log_step,
                                                                      .on_epoch = log_epoch,
                                                                      .user = &l2}),
                     0);
    ck_assert_int_eq(nn_trainer_epoch(s.tr), 2);
    ck_assert_int_eq(l2.epochs, 1);
    ck_assert_int_eq(nn_trainer_steps(s.tr), 17);
    setup_free(&s);

    /* the cosine schedule counts nn_fit's own steps: steps taken before
     * (nn_trainer_step) do not move it */
    setup_make(&s, 1, 0.1, &CLASSIFY);
    ck_assert_int_eq(nn_loader_set_epoch(d.train, 0), 0);
    for (int i = 0; i < 3; i++) {
        double loss;
        ad_tensor *bx, *by;
        ck_assert_int_eq(nn_loader_next(d.train, &bx, &by), 1);
        ck_assert_int_eq(nn_trainer_step(s.tr, bx, by, &loss), 0);
    }
    lr_log ll = {0};
    ck_assert_int_eq(nn_fit(s.tr, d.train, NULL, 1,
                            &(nn_fit_options){.on_step = log_lr, .user = &ll}),
                     0);
    ck_assert_int_eq(ll.n, 7);
    for (int b = 0; b < 7; b++)
        ck_assert_double_eq_tol(ll.lr[b], nn_lr_cosine(0.1, b, 7, 0), 1e-15);
    setup_free(&s);

    /* an MSE regression through a loss of the plain signature */
    ad_tensor *x = ad_linspace(NULL, AD_FLOAT32, -1, 1, 64);
    ad_tensor *xs = ad_reshape(x, AD_SHAPE(64, 1));
    ad_tensor *x3 = ad_mul_scalar(xs, 3);
    ad_tensor *ys = ad_add_scalar(x3, -1);
    ad_tensor *xc = ad_copy(NULL, xs), *yc = ad_copy(NULL, ys);
    nn_loader *ld = nn_loader_from_tensors(xc, yc, &(nn_loader_options){.batch_size = 8});
    ck_assert_ptr_nonnull(ld);
    ad_rng rng;
    ad_rng_init(&rng, 1);
    nn_module *lin = nn_linear(1, 1, true, AD_FLOAT32, &rng);
    nn_named_tensors *p = nn_parameters(lin);
    nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.1});
    nn_named_tensors_free(p);
    nn_trainer *tr = nn_trainer_new(lin, nn_mse_loss, opt, NULL);
    ck_assert_int_eq(nn_fit(tr, ld, ld, 40, NULL), 0);
    nn_metrics m;
    ck_assert_int_eq(nn_trainer_evaluate(tr, ld, NULL, &m), 64);
    ck_assert_msg(m.loss < 1e-6, "regression loss %g", m.loss);
    ck_assert(isnan(m.accuracy));
    ck_assert_double_eq_tol(ad_item(nn_get_parameter(lin, "weight")), 3, 1e-3);
    ck_assert_double_eq_tol(ad_item(nn_get_parameter(lin, "bias")), -1, 1e-3);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(lin);
    nn_loader_free(ld);
    ad_tensor_free(xc);
    ad_tensor_free(yc);
    ad_tensor_free(ys);
    ad_tensor_free(x3);
    ad_tensor_free(xs);
    ad_tensor_free(x);
    data_free(&d);
}
END_TEST

/* Logits that are a transposed view, (W x^T)^T: with .accuracy the count
 * read them as contiguous and failed (ad_data), the step reported the
 * failure after its update had moved the weights, and evaluation failed.
 * They are read element by element now, and counted before the update. */
static ad_tensor *transposed_forward(nn_module *m, ad_tensor *x)
{
    return ad_transpose(ad_matmul(nn_get_parameter(m, "weight"), ad_transpose(x, 0, 1)), 0, 1);
}
static const nn_module_type TRANSPOSED = {"TransposedLinear", transposed_forward, NULL, NULL};

START_TEST(accuracy_of_strided_logits)
{
    nn_module *m = nn_module_new(&TRANSPOSED, NULL);
    ck_assert_int_eq(nn_module_add_parameter(m, "weight",
                                             ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3, 2),
                                                           ((double[]){1, 0, 0, 1, -1, -1}))),
                     0);
    ad_tensor *X = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(4, 2),
                                 ((double[]){2, 0, 0, 2, -1, -1, 3, 1}));
    ad_tensor *Y = ad_from_array(NULL, AD_INT64, AD_SHAPE(4), ((int64_t[]){0, 1, 2, 0}));
    nn_loader *l = nn_loader_from_tensors(X, Y, &(nn_loader_options){.batch_size = 4});
    nn_named_tensors *ps = nn_parameters(m);
    nn_optim *opt = nn_sgd(ps, &(nn_sgd_options){.lr = 0.1});
    nn_trainer *tr = nn_trainer_new(m, NULL, opt, &(nn_trainer_options){.accuracy = true});
    ck_assert_ptr_nonnull(tr);
    nn_metrics mt;
    ck_assert_msg(nn_trainer_evaluate(tr, l, NULL, &mt) == 4, "%s", ad_error());
    ck_assert_double_eq(mt.accuracy, 1);
    ck_assert_msg(nn_trainer_step(tr, X, Y, NULL) == 0, "%s", ad_error());
    ck_assert_int_eq(nn_trainer_steps(tr), 1);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_named_tensors_free(ps);
    nn_loader_free(l);
    ad_tensor_free(X);
    ad_tensor_free(Y);
    nn_module_free(m);
}
END_TEST

/* A loss with k terms a row (MSE on [N, 3]): evaluation summed the
 * batches' terms and divided by the rows, 3 times the mean that training
 * reports.  Both are the mean over all elements here (batches 2, 2, 1). */
START_TEST(evaluation_loss_is_training_loss)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    nn_module *m = nn_linear(2, 3, true, AD_FLOAT64, &rng);
    ad_tensor *X = ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(5, 2), -1, 1);
    ad_tensor *Y = ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(5, 3), -1, 1);
    ad_tape *t = ad_tape_new(), *prev = ad_tape_activate(t);
    double want = ad_item(nn_mse_loss(nn_forward(m, X), Y, NN_MEAN));
    ad_tape_activate(prev);
    ad_tape_free(t);
    nn_loader *l = nn_loader_from_tensors(X, Y, &(nn_loader_options){.batch_size = 2});
    nn_named_tensors *ps = nn_parameters(m);
    nn_optim *opt = nn_sgd(ps, &(nn_sgd_options){.lr = 0.1});
    nn_trainer *tr = nn_trainer_new(m, nn_mse_loss, opt, NULL);
    ck_assert_ptr_nonnull(tr);
    nn_metrics mt;
    ck_assert_msg(nn_trainer_evaluate(tr, l, NULL, &mt) == 5, "%s", ad_error());
    ck_assert_double_eq_tol(mt.loss, want, 1e-14);
    double loss;
    ck_assert_msg(nn_trainer_step(tr, X, Y, &loss) == 0, "%s", ad_error());
    ck_assert_double_eq_tol(loss, want, 1e-14);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_named_tensors_free(ps);
    nn_loader_free(l);
    ad_tensor_free(X);
    ad_tensor_free(Y);
    nn_module_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_create("trainer");
    tcase_add_test(tc, fit_learns);
    tcase_add_test(tc, steps_replay_without_allocating);
    tcase_add_test(tc, checkpointed_model_replays);
    tcase_add_loop_test(tc, replay_matches_recording, 0, 3);
    tcase_add_test(tc, replay_updates_batch_norm_stats);
    tcase_add_loop_test(tc, checkpoint_resume_is_exact, 0, 4);
    tcase_add_test(tc, stops_and_errors);
    tcase_add_test(tc, comm_hooks);
    tcase_add_test(tc, comm_grad_ready_unreached_param);
    tcase_add_test(tc, leaf_outside_optimizer_accumulates);
    tcase_add_test(tc, accuracy_of_strided_logits);
    tcase_add_test(tc, evaluation_loss_is_training_loss);
    tcase_add_test(tc, anomaly_mode_reaches_split_shards);
    tcase_add_test(tc, shard_error_names_its_rows);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

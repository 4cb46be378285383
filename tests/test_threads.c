/* tests/test_threads.c - independent tapes on concurrent threads.
 *
 * tape.h: "A tape and its tensors must be used by one thread at a time.
 * Independent tapes may be used from different threads at once; the grad
 * mode, the active tape and the error message are per thread."  Two
 * pthreads each train their own small model (their own tape, persistent
 * weights and rng) at the same time, stepping in lock-step through
 * barriers so that their calls interleave, and check between steps that
 * the other thread's error, grad mode and active tape did not leak into
 * theirs.  Each thread's results must be bit-identical to the same run on
 * the main thread alone.  Run under ThreadSanitizer by scripts/check
 * (build-tsan/), which reports any data race between the two. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <autodiff/gemm.h>
#include <nn/nn.h>

#include "../nn/nn_private.h"
#include "optest.h"

#define STEPS 6
#define NTHREADS 2

typedef struct worker {
    int id;
    uint64_t seed;
    ad_tensor *shared; /* persistent [8,6] data both threads read (tape.h) */
    pthread_barrier_t *barrier; /* NULL: run alone */
    double loss[STEPS];
    double scalar_grad[STEPS];
    double params[64];
    int nparams;
    char failure[256]; /* empty when every check passed */
} worker;

/* Threads cannot use ck_assert (Check's reporting is per process), so a
 * worker records its first failed check and stops checking. */
#define W_CHECK(w, cond, ...)                                                        \
    do {                                                                             \
        if (!(cond) && !(w)->failure[0])                                             \
            snprintf((w)->failure, sizeof (w)->failure, __VA_ARGS__);                \
    } while (0)

static void sync_point(worker *w)
{
    if (w->barrier) pthread_barrier_wait(w->barrier);
}

static void *work(void *arg)
{
    worker *w = arg;
    /* Fresh thread state, whatever other threads did with theirs. */
    W_CHECK(w, ad_tape_active() == NULL, "thread %d starts with an active tape", w->id);
    W_CHECK(w, ad_grad_enabled(), "thread %d starts with grad mode off", w->id);
    W_CHECK(w, ad_error() == NULL, "thread %d starts with an error: %s", w->id, ad_error());

    ad_rng rng;
    ad_rng_init(&rng, w->seed);
    ad_tensor *wt = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(6, 4), 0, 0.5);
    ad_tensor *b = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(4));
    ad_tensor *x = ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(8, 6), -1, 1);

    int64_t labels[8];
    for (int i = 0; i < 8; i++) labels[i] = (int64_t)ad_rng_below(&rng, 4);
    ad_set_requires_grad(wt, true);
    ad_set_requires_grad(b, true);
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    for (int step = 0; step < STEPS; step++) {
        sync_point(w);
        /* One thread makes an error, turns grad mode off for a moment,
         * and deactivates its tape, while the other computes. */
        if (step % NTHREADS == w->id % NTHREADS) {
            ad_tensor *bad = ad_matmul(x, x); /* [8,6] x [8,6]: an error */
            W_CHECK(w, bad == NULL && ad_error() && strstr(ad_error(), "inner dimensions"),
                    "thread %d: expected an error", w->id);
            bool prev = ad_set_grad_enabled(false);
            ad_tensor *nog = ad_tanh(wt); /* persistent: grad mode is off */
            W_CHECK(w, nog && !ad_requires_grad(nog), "thread %d: no-grad op recorded", w->id);
            ad_tensor_free(nog);
            ad_set_grad_enabled(prev);
            ad_tape *was = ad_tape_activate(NULL);
            W_CHECK(w, was == tape, "thread %d: its active tape changed", w->id);
            ad_tape_activate(was);
            ad_clear_error();
        }
        sync_point(w);
        W_CHECK(w, ad_error() == NULL, "thread %d sees an error it did not make: %s", w->id,
                ad_error());
        W_CHECK(w, ad_grad_enabled(), "thread %d: grad mode off", w->id);
        W_CHECK(w, ad_tape_active() == tape, "thread %d: active tape changed", w->id);

        ad_tensor *y = ad_from_array(tape, AD_INT64, AD_SHAPE(8), labels);
        /* The shared data enters through views of it (narrow, transpose:
         * references to its storage, counted by both threads at once). */
        ad_tensor *shared_part = ad_transpose(ad_transpose(ad_narrow(w->shared, 0, 0, 8), 0, 1), 0, 1);
        ad_tensor *input = ad_add(x, ad_mul_scalar(shared_part, 0.1));
        ad_tensor *logits = ad_add(ad_matmul(ad_tanh(input), wt), b);
        ad_tensor *loss = ad_cross_entropy(logits, y, AD_REDUCTION_MEAN);
        W_CHECK(w, loss != NULL, "thread %d step %d: %s", w->id, step, ad_error());
        if (!loss) break;
        ad_zero_grad(wt);
        ad_zero_grad(b);
        W_CHECK(w, ad_backward(loss, NULL, 0) == 0, "thread %d: backward: %s", w->id,
                ad_error());
        w->loss[step] = ad_item(loss);
        double *d = ad_data(wt), *bd = ad_data(b);
        const double *g = ad_data(ad_tensor_grad(wt)), *gb = ad_data(ad_tensor_grad(b));
        for (int i = 0; i < 24; i++) d[i] -= 0.5 * g[i];
        for (int i = 0; i < 4; i++) bd[i] -= 0.5 * gb[i];
        /* The scalar API on the same tape. */
        ad_scalar s = ad_scalar_var(tape, w->loss[step]);
        ad_scalar f = ad_smul(ad_ssin(s), ad_sexp(s));
        W_CHECK(w, ad_scalar_backward(f) == 0, "thread %d: scalar backward", w->id);
        w->scalar_grad[step] = ad_scalar_grad(s);
        ad_tape_reset(tape);
    }
    w->nparams = 28;
    ad_to_array(wt, w->params);
    ad_to_array(b, w->params + 24);
    ad_tape_free(tape);
    W_CHECK(w, ad_tape_active() == NULL, "thread %d: freed tape still active", w->id);
    ad_tensor_free(wt);
    ad_tensor_free(b);
    ad_tensor_free(x);
    return NULL;
}

START_TEST(two_tapes_two_threads)
{
    worker alone[NTHREADS], both[NTHREADS];
    ad_tensor *shared = ad_linspace(NULL, AD_FLOAT64, -1, 1, 48);
    ad_tensor *shared2 = ad_reshape(shared, AD_SHAPE(8, 6));
    ck_assert_int_eq(ad_tensor_free(shared), 0); /* the view keeps the storage */
    /* The main thread's state must not leak into the workers either. */
    ad_tape *mine = ad_tape_new();
    ad_tape_activate(mine);
    ck_assert_ptr_null(ad_matmul(NULL, NULL));
    ck_assert_ptr_nonnull(ad_error());
    bool prev = ad_set_grad_enabled(false);

    for (int i = 0; i < NTHREADS; i++) {
        alone[i] = (worker){.id = i, .seed = 100 + (uint64_t)i, .shared = shared2};
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, work, &alone[i]), 0);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
        ck_assert_msg(!alone[i].failure[0], "%s", alone[i].failure);
    }
    pthread_barrier_t barrier;
    ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, NTHREADS), 0);
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        both[i] = (worker){.id = i, .seed = 100 + (uint64_t)i, .barrier = &barrier,
                           .shared = shared2};
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &both[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < NTHREADS; i++) {
        ck_assert_msg(!both[i].failure[0], "%s", both[i].failure);
        ck_assert(memcmp(alone[i].loss, both[i].loss, sizeof alone[i].loss) == 0);
        ck_assert(memcmp(alone[i].scalar_grad, both[i].scalar_grad,
                         sizeof alone[i].scalar_grad) == 0);
        ck_assert(memcmp(alone[i].params, both[i].params, 28 * sizeof(double)) == 0);
        ck_assert(alone[i].loss[STEPS - 1] < alone[i].loss[0]);
    }
    /* Two different seeds train differently. */
    ck_assert(memcmp(both[0].params, both[1].params, 28 * sizeof(double)) != 0);

    /* The main thread's state is as it left it. */
    ck_assert_ptr_eq(ad_tape_active(), mine);
    ck_assert(!ad_grad_enabled());
    ck_assert_ptr_nonnull(ad_error());
    ck_assert(strstr(ad_error(), "ad_matmul") != NULL);
    ad_set_grad_enabled(prev);
    ad_clear_error();
    ad_tape_free(mine);
    ad_tensor_free(shared2);
}
END_TEST


/* ---- one frozen model read by several threads ----
 * tape.h: independent tapes may read the same persistent tensors at
 * once.  A checkpointed transformer block wrote its module's mode (the
 * same value back) at every forward and every recomputation: a data race
 * (the ThreadSanitizer stage of scripts/check runs this test), though the
 * values came out right. */
typedef struct block_job {
    nn_module *m;
    const ad_tensor *x;
    pthread_barrier_t *barrier;
    double loss[3], gx[64];
    char failure[256];
} block_job;

static void *block_work(void *arg)
{
    block_job *j = arg;
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    if (j->barrier) pthread_barrier_wait(j->barrier);
    for (int step = 0; step < 3 && !j->failure[0]; step++) {
        ad_tensor *x = ad_mul_scalar(ad_copy(t, j->x), 1.0 + step);
        ad_set_requires_grad(x, true);
        ad_tensor *y = nn_forward(j->m, x);
        ad_tensor *loss = y ? ad_sum_all(ad_mul(y, y)) : NULL;
        if (!loss || ad_backward(loss, NULL, 0)) {
            snprintf(j->failure, sizeof j->failure, "step %d: %s", step, ad_error());
            break;
        }
        j->loss[step] = ad_item(loss);
        ad_to_array(ad_tensor_grad(x), j->gx);
        ad_tape_reset(t);
    }
    ad_tape_activate(prev);
    ad_tape_free(t);
    return NULL;
}

START_TEST(shared_frozen_checkpointed_block)
{
    ad_rng rng;
    ad_rng_init(&rng, 21);
    nn_module *m = nn_transformer_block(8, 2, 16, 0.0, AD_FLOAT64, &rng, 3);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(nn_transformer_block_set_checkpoint(m, true), 0);
    nn_train(m, false);
    nn_named_tensors *ps = nn_parameters(m);
    for (int i = 0; i < ps->n; i++) ad_set_requires_grad(ps->tensors[i], false);
    ad_tensor *x = ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(2, 4, 8), -1, 1);
    block_job alone = {m, x, NULL, {0}, {0}, ""}, both[NTHREADS];
    pthread_t th[NTHREADS];
    ck_assert_int_eq(pthread_create(&th[0], NULL, block_work, &alone), 0);
    ck_assert_int_eq(pthread_join(th[0], NULL), 0);
    ck_assert_msg(!alone.failure[0], "%s", alone.failure);
    pthread_barrier_t barrier;
    ck_assert_int_eq(pthread_barrier_init(&barrier, NULL, NTHREADS), 0);
    for (int i = 0; i < NTHREADS; i++) {
        both[i] = (block_job){m, x, &barrier, {0}, {0}, ""};
        ck_assert_int_eq(pthread_create(&th[i], NULL, block_work, &both[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < NTHREADS; i++) {
        ck_assert_msg(!both[i].failure[0], "%s", both[i].failure);
        ck_assert(memcmp(alone.loss, both[i].loss, sizeof alone.loss) == 0);
        ck_assert(memcmp(alone.gx, both[i].gx, sizeof alone.gx) == 0);
    }
    ck_assert(alone.loss[2] > alone.loss[0]); /* the steps differ: x scaled */
    ck_assert(!nn_is_training(m));
    nn_named_tensors_free(ps);
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

/* ---- a trainer's batch split among threads (nn_trainer_set_threads) ---- */

enum { TN = 90, TBATCH = 16 }; /* batches of 16 and a last one of 10 */

typedef struct split_run {
    float params[64];
    int nparams;
    double losses[32];
    int nlosses;
    int64_t replays;
    int recordings;
    float stats[8]; /* BatchNorm's running_mean then running_var */
    int nstats;
} split_run;

static int note_loss(nn_trainer *tr, const nn_step_info *si, void *user)
{
    (void)tr;
    split_run *r = user;
    if (r->nlosses < 32) r->losses[r->nlosses++] = si->loss;
    return 0;
}

enum { PLAIN, WITH_DROPOUT, WITH_BATCH_NORM };

/* Two epochs of a 3-8-3 classifier (with Dropout after the ReLU, or
 * BatchNorm over the 3 inputs seen as channels of 1x1 images) with the
 * batch split among `threads` threads (0: not split); the parameters,
 * every step's loss and, with BatchNorm, its running mean and variance. */
static void split_train_ex(int threads, int variant, split_run *out)
{
    memset(out, 0, sizeof *out);
    ad_rng rng;
    ad_rng_init(&rng, 11);
    float xv[TN * 3];
    int64_t yv[TN];
    for (int i = 0; i < TN; i++) {
        yv[i] = i % 3;
        for (int k = 0; k < 3; k++)
            xv[3 * i + k] = (float)((k == yv[i]) + 0.5 * (ad_rng_uniform(&rng) - 0.5));
    }
    ad_tensor *x = variant == WITH_BATCH_NORM
                       ? ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(TN, 3, 1, 1), xv)
                       : ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(TN, 3), xv);
    ad_tensor *y = ad_from_array(NULL, AD_INT64, AD_SHAPE(TN), yv);
    nn_loader *ld = nn_loader_from_tensors(
        x, y, &(nn_loader_options){.batch_size = TBATCH, .shuffle = true, .seed = 2});
    nn_module *net =
        variant == WITH_DROPOUT
            ? NN_SEQUENTIAL(nn_linear(3, 8, true, AD_FLOAT32, &rng), nn_relu(), nn_dropout(0.25, 7),
                            nn_linear(8, 3, true, AD_FLOAT32, &rng))
        : variant == WITH_BATCH_NORM
            ? NN_SEQUENTIAL(nn_batch_norm2d(3, 1e-5, 0.1, true, AD_FLOAT32), nn_flatten(1, -1),
                            nn_linear(3, 8, true, AD_FLOAT32, &rng), nn_relu(),
                            nn_linear(8, 3, true, AD_FLOAT32, &rng))
            : NN_SEQUENTIAL(nn_linear(3, 8, true, AD_FLOAT32, &rng), nn_relu(),
                            nn_linear(8, 3, true, AD_FLOAT32, &rng));
    nn_named_tensors *p = nn_parameters(net);
    nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.2, .momentum = 0.9});
    nn_trainer *tr = nn_trainer_new(net, NULL, opt, &(nn_trainer_options){.accuracy = true});
    ck_assert_ptr_nonnull(tr);
    ck_assert_int_eq(nn_trainer_set_threads(tr, threads), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_BATCH), 0);
    ck_assert_int_eq(nn_trainer_get_threads(tr), threads > 1 ? threads : 1);
    ck_assert_int_eq(nn_fit(tr, ld, NULL, 2, &(nn_fit_options){.on_step = note_loss,
                                                              .user = out}), 0);
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(tr, &st), 0);
    out->replays = st.replays;
    out->recordings = st.recordings;
    for (int i = 0; i < p->n; i++) {
        const float *v = ad_data(p->tensors[i]);
        for (int64_t k = 0; k < ad_numel(p->tensors[i]) && out->nparams < 64; k++)
            out->params[out->nparams++] = v[k];
    }
    nn_named_tensors_free(p);
    nn_named_tensors *b = nn_buffers(net);
    for (int i = 0; i < b->n; i++) {
        if (ad_tensor_dtype(b->tensors[i]) != AD_FLOAT32) continue; /* num_batches_tracked */
        const float *v = ad_data(b->tensors[i]);
        for (int64_t k = 0; k < ad_numel(b->tensors[i]) && out->nstats < 8; k++)
            out->stats[out->nstats++] = v[k];
    }
    nn_named_tensors_free(b);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    nn_loader_free(ld);
    ad_tensor_free(x);
    ad_tensor_free(y);
}

static void split_train(int threads, split_run *out) { split_train_ex(threads, PLAIN, out); }

/* The same seeded run with the batch split among 2 or 3 threads (shards of
 * 8 + 8 and 5 + 5 of the last batch; 5 + 5 + 6 and 3 + 3 + 4) gives the
 * same bits every time, and the one-thread run's numbers up to rounding
 * (the shards' sums are grouped differently).  With 12 threads the last
 * batch of 10 has fewer rows than threads and runs on one thread.  Under
 * ThreadSanitizer (scripts/check) this is also the race check of the
 * threads: they replay tapes of their own and read the shared parameters. */
START_TEST(trainer_split_among_threads)
{
    split_run one, two, two_again, three, twelve;
    split_train(0, &one);
    split_train(2, &two);
    split_train(2, &two_again);
    split_train(3, &three);
    split_train(12, &twelve);
    ck_assert_int_eq(one.nparams, 3 * 8 + 8 + 8 * 3 + 3);
    ck_assert_int_eq(one.nlosses, 2 * 6);
    ck_assert(memcmp(&two, &two_again, sizeof two) == 0);
    ck_assert(one.losses[one.nlosses - 1] < 0.5 * one.losses[0]); /* it learns */
    /* A recording per shape and shard: 16 and 10 rows on one thread; 8, 8
     * and 5, 5; 5, 5, 6 and 3, 3, 4; twelve shards of 1 or 2 rows and the
     * batch of 10 on one thread. */
    ck_assert_int_eq(one.recordings, 2);
    ck_assert_int_eq(two.recordings, 4);
    ck_assert_int_eq(three.recordings, 6);
    ck_assert_int_eq(twelve.recordings, 13);
    const split_run *runs[3] = {&two, &three, &twelve};
    for (int r = 0; r < 3; r++) {
        ck_assert_int_eq(runs[r]->nlosses, one.nlosses);
        ck_assert_int_eq(runs[r]->replays, 12);
        for (int i = 0; i < one.nlosses; i++)
            ck_assert_close(runs[r]->losses[i], one.losses[i], 1e-5);
        for (int i = 0; i < one.nparams; i++)
            ck_assert_close(runs[r]->params[i], one.params[i], 1e-4);
    }
    /* Splitting changes the grouping of sums, so some bits differ. */
    ck_assert(memcmp(one.params, two.params, sizeof one.params) != 0);

    /* A model with a random stream (Dropout) is not split: its shards
     * would draw from the one stream in the order the threads happen to
     * run.  Two threads then give the one-thread run, bit for bit. */
    {
        split_run d1, d2;
        split_train_ex(0, WITH_DROPOUT, &d1);
        split_train_ex(2, WITH_DROPOUT, &d2);
        ck_assert_int_eq(d2.recordings, d1.recordings);
        ck_assert(memcmp(d1.params, d2.params, sizeof d1.params) == 0);
        ck_assert(memcmp(d1.losses, d2.losses, sizeof d1.losses) == 0);
        ck_assert(memcmp(d1.params, one.params, sizeof d1.params) != 0); /* dropout acted */
    }

    /* Nor is a model with buffers (BatchNorm): every shard's replay would
     * update the one set of running statistics at once.  Two threads give
     * the one-thread run bit for bit, running statistics included, and
     * those statistics moved away from their initial zeros and ones. */
    {
        split_run b1, b2;
        split_train_ex(0, WITH_BATCH_NORM, &b1);
        split_train_ex(2, WITH_BATCH_NORM, &b2);
        ck_assert_int_eq(b1.nstats, 6);
        ck_assert_int_eq(b2.recordings, b1.recordings);
        ck_assert(memcmp(&b1, &b2, sizeof b1) == 0);
        for (int c = 0; c < 3; c++) {
            ck_assert(fabs(b1.stats[c]) > 0.05);         /* running_mean */
            ck_assert(fabs(b1.stats[3 + c] - 1) > 0.05); /* running_var */
        }
    }

    /* Changing the count between fits stops the old threads and starts
     * new ones; the output is the first shard's rows. */
    {
        ad_rng rng;
        ad_rng_init(&rng, 5);
        ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(40, 3), 0, 1);
        ad_tensor *y = ad_zeros(NULL, AD_INT64, AD_SHAPE(40));
        nn_loader *ld = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 8});
        nn_module *net = nn_linear(3, 2, true, AD_FLOAT32, &rng);
        nn_named_tensors *p = nn_parameters(net);
        nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.1});
        nn_named_tensors_free(p);
        nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
        ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_BATCH), 0);
        const int counts[4] = {2, 3, 0, 4};
        for (int k = 0; k < 4; k++) {
            ck_assert_int_eq(nn_trainer_set_threads(tr, counts[k]), 0);
            ck_assert_int_eq(nn_fit(tr, ld, NULL, k + 1, NULL), 0);
            ad_tensor *out = nn_trainer_output(tr);
            ck_assert_ptr_nonnull(out);
            ck_assert_int_eq(ad_size(out, 0), counts[k] > 1 ? 8 / counts[k] : 8);
        }
        ck_assert_int_eq(nn_trainer_steps(tr), 4 * 5);
        nn_trainer_free(tr);
        nn_optim_free(opt);
        nn_module_free(net);
        nn_loader_free(ld);
        ad_tensor_free(x);
        ad_tensor_free(y);
    }

    ck_assert_error_rc(nn_trainer_set_threads(NULL, 2), "argument 'tr' is NULL");
    ck_assert_int_eq(nn_trainer_get_threads(NULL), -1);
    ad_clear_error();
}
END_TEST


/* Phase 2 of a split step goes a block of rows at a time (the shards'
 * gradients summed, then the optimiser on those rows): a 300-40-3 model
 * (first weight 40 x 300: blocks of 16 rows, so each of 2 threads does a
 * whole block and a part of one; 3 threads, 13 or 14 rows each), AdamW,
 * and an optimiser that also holds a parameter outside the model, whose
 * gradient the step zeroes as on one thread (only decay moves it).  Two
 * runs with 2 threads agree bit for bit, and every run agrees with the
 * one-thread run up to rounding. */
enum { BN = 96, BIN = 300, BHID = 40 };

/* z.grad += 2 z, before the first step and after each: a gradient that is
 * not the step's, which the step's zeroing must clear. */
static int add_z_grad(nn_trainer *tr, const nn_step_info *si, void *user)
{
    (void)tr;
    (void)si;
    ad_tensor *z = user;
    ad_tape *tp = ad_tape_new();
    ad_tape *prev = ad_tape_activate(tp);
    ck_assert_int_eq(ad_backward(ad_sum(ad_mul(z, z), NULL, 0, false), NULL, 0), 0);
    ad_tape_activate(prev);
    ad_tape_free(tp);
    ck_assert_ptr_nonnull(ad_tensor_grad(z));
    return 0;
}

/* n rows of in normal values drawn from rng (x) and the labels i mod 3
 * (y), both persistent: the data of the trainer tests below. */
static void three_classes(ad_rng *rng, int64_t n, int64_t in, ad_tensor **x, ad_tensor **y)
{
    *x = ad_randn(NULL, rng, AD_FLOAT32, AD_SHAPE(n, in), 0, 1);
    *y = ad_empty(NULL, AD_INT64, AD_SHAPE(n));
    ck_assert_ptr_nonnull(*x);
    ck_assert_ptr_nonnull(*y);
    int64_t *yv = ad_data(*y);
    for (int64_t i = 0; i < n; i++) yv[i] = i % 3;
}

static void block_train(int threads, float *w1, float *zout)
{
    ad_rng rng;
    ad_rng_init(&rng, 21);
    ad_tensor *x, *y;
    three_classes(&rng, BN, BIN, &x, &y);
    nn_loader *ld = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 32});
    nn_module *net = NN_SEQUENTIAL(nn_linear(BIN, BHID, true, AD_FLOAT32, &rng), nn_relu(),
                                   nn_linear(BHID, 3, true, AD_FLOAT32, &rng));
    ad_tensor *z = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(2), ((float[]){1, -2}));
    ck_assert_int_eq(ad_set_requires_grad(z, true), 0);
    add_z_grad(NULL, NULL, z);
    nn_named_tensors *p = nn_parameters(net);
    ck_assert_int_eq(p->n, 4);
    ad_tensor *all[5] = {p->tensors[0], p->tensors[1], p->tensors[2], p->tensors[3], z};
    nn_named_tensors *withz = nn_named_tensors_new(5, NULL, all);
    nn_optim *opt = nn_adamw(withz, &(nn_adam_options){.lr = 0.01, .beta1 = 0.9,
                                                       .beta2 = 0.999, .eps = 1e-8,
                                                       .weight_decay = 0.5});
    nn_named_tensors_free(withz);
    nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
    ck_assert_ptr_nonnull(tr);
    ck_assert_int_eq(nn_trainer_set_threads(tr, threads), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_BATCH), 0);
    ck_assert_int_eq(nn_fit(tr, ld, NULL, 2, &(nn_fit_options){.on_step = add_z_grad,
                                                              .user = z}), 0);
    memcpy(w1, ad_data(p->tensors[0]), BHID * BIN * sizeof(float));
    memcpy(zout, ad_data(z), 2 * sizeof(float));
    nn_named_tensors_free(p);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    nn_loader_free(ld);
    ad_tensor_free(x);
    ad_tensor_free(y);
    ad_tensor_free(z);
}

START_TEST(trainer_split_blocks)
{
    static float one[BHID * BIN], two[BHID * BIN], two_again[BHID * BIN], three[BHID * BIN];
    float z1[2], z2[2], z2b[2], z3[2];
    block_train(0, one, z1);
    block_train(2, two, z2);
    block_train(2, two_again, z2b);
    block_train(3, three, z3);
    ck_assert(memcmp(two, two_again, sizeof two) == 0);
    ck_assert(memcmp(z2, z2b, sizeof z2) == 0);
    /* 6 steps of AdamW's decay, lr 0.01 and weight_decay 0.5: z (1 - 0.005)^6 */
    double shrink = pow(1 - 0.01 * 0.5, 6);
    for (int k = 0; k < 2; k++) {
        ck_assert_close(z1[k], (k ? -2 : 1) * shrink, 1e-6);
        ck_assert_close(z2[k], z1[k], 1e-7);
        ck_assert_close(z3[k], z1[k], 1e-7);
    }
    double moved = 0;
    for (int i = 0; i < BHID * BIN; i++) {
        ck_assert_close(two[i], one[i], 1e-4);
        ck_assert_close(three[i], one[i], 1e-4);
        moved += fabs(two[i] - two_again[i]);
    }
    ck_assert(moved == 0);
}
END_TEST

/* ---- NN_THREADS_OPS: the threads share the products and the update ---- */

/* 19,459 parameters: the zeroing and the update are split; batches of 64
 * rows, 77 KB: the copy of the batch into the recording is split too */
enum { ON = 192, OIN = 300, OHID = 64, OBATCH = 64 };

typedef struct ops_run {
    float w1[OHID * OIN], rest[OHID + 3 * OHID + 3];
    double losses[8];
    int nlosses, mode, recordings;
} ops_run;

/* When set, note_ops_loss moves this loader to another epoch after the
 * trainer's step jump_step (a callback that changes the loader's order
 * while the next batch is being converted ahead). */
static nn_loader *jump_loader;
static int64_t jump_step;
/* When set, note_ops_loss stops nn_fit after the trainer's step stop_step,
 * and ops_train_from calls nn_fit a second time (which goes on from the
 * unfinished epoch's start). */
static int64_t stop_step;

static int note_ops_loss(nn_trainer *tr, const nn_step_info *si, void *user)
{
    ops_run *r = user;
    if (r->nlosses < 8) r->losses[r->nlosses++] = si->loss;
    r->mode = nn_trainer_get_thread_mode(tr);
    if (jump_loader && si->step == jump_step && nn_loader_set_epoch(jump_loader, 7)) return -1;
    return si->step == stop_step;
}

/* Two epochs of a 300-64-3 classifier, batches of 64, SGD with momentum
 * and weight decay, on `threads` threads in `mode`.  idx: from a shuffled
 * loader over uint8 images (converted to float32 as each batch is drawn,
 * by nn_fit straight into the recording's leaves once it is made), ON + 8
 * of them, so that each epoch ends with a batch of 8 (a second
 * recording). */
static void ops_train_from(int threads, nn_thread_mode mode, bool idx, bool manual,
                           ops_run *out)
{
    memset(out, 0, sizeof *out);
    ad_rng rng;
    ad_rng_init(&rng, 31);
    ad_tensor *x, *y;
    three_classes(&rng, ON, OIN, &x, &y);
    static uint8_t pix[(ON + 8) * OIN], lab[ON + 8];
    for (int i = 0; i < (ON + 8) * OIN; i++) pix[i] = (uint8_t)((i * 37 + i / OIN * 11) % 256);
    for (int i = 0; i < ON + 8; i++) lab[i] = (uint8_t)(i % 3);
    nn_idx images = {.type = NN_IDX_UINT8, .ndim = 2, .dims = {ON + 8, OIN},
                     .numel = (ON + 8) * OIN, .data = pix};
    nn_idx labels = {.type = NN_IDX_UINT8, .ndim = 1, .dims = {ON + 8}, .numel = ON + 8,
                     .data = lab};
    nn_loader *ld = idx ? nn_loader_from_idx(&images, &labels,
                                             &(nn_loader_options){.batch_size = OBATCH,
                                                                  .shuffle = true, .seed = 5,
                                                                  .normalize = true,
                                                                  .mean = 0.3, .std = 0.35})
                        : nn_loader_from_tensors(x, y,
                                                 &(nn_loader_options){.batch_size = OBATCH});
    ck_assert_ptr_nonnull(ld);
    if (jump_step) jump_loader = ld;
    nn_module *net = NN_SEQUENTIAL(nn_linear(OIN, OHID, true, AD_FLOAT32, &rng), nn_relu(),
                                   nn_linear(OHID, 3, true, AD_FLOAT32, &rng));
    nn_named_tensors *p = nn_parameters(net);
    nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.05, .momentum = 0.9,
                                                .weight_decay = 1e-3});
    nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
    ck_assert_ptr_nonnull(tr);
    ck_assert_int_eq(nn_trainer_set_threads(tr, threads), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, mode), 0);
    if (manual) { /* the reference: nn_loader_next's batches, copied in by the step */
        ad_tensor *bx, *by;
        for (int e = 0; e < 2; e++) {
            int got;
            while ((got = nn_loader_next(ld, &bx, &by)) == 1) {
                double loss;
                ck_assert_int_eq(nn_trainer_step(tr, bx, by, &loss), 0);
                if (out->nlosses < 8) out->losses[out->nlosses++] = loss;
            }
            ck_assert_int_eq(got, 0);
        }
        out->mode = nn_trainer_get_thread_mode(tr);
    } else {
        ck_assert_int_eq(nn_fit(tr, ld, NULL, 2, &(nn_fit_options){.on_step = note_ops_loss,
                                                                  .user = out}), 0);
        if (stop_step)
            ck_assert_int_eq(nn_fit(tr, ld, NULL, 2, &(nn_fit_options){.on_step = note_ops_loss,
                                                                      .user = out}),
                             0);
    }
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(tr, &st), 0);
    out->recordings = st.recordings;
    memcpy(out->w1, ad_data(p->tensors[0]), sizeof out->w1);
    int64_t k = 0;
    for (int i = 1; i < p->n; i++) {
        memcpy(out->rest + k, ad_data(p->tensors[i]), (size_t)ad_numel(p->tensors[i]) * 4);
        k += ad_numel(p->tensors[i]);
    }
    ck_assert_int_eq(k, OHID + 3 * OHID + 3);
    nn_named_tensors_free(p);
    /* the loader first: once nn_fit has returned, nothing of the trainer's
     * reads it (its threads' job of converting ahead was dropped) */
    nn_loader_free(ld);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    jump_loader = NULL;
    ad_tensor_free(x);
    ad_tensor_free(y);
}

/* Runs a and b ended on the same bits: weights and the losses noted. */
static void assert_same_run(const ops_run *a, const ops_run *b)
{
    ck_assert(memcmp(a->w1, b->w1, sizeof a->w1) == 0);
    ck_assert(memcmp(a->rest, b->rest, sizeof a->rest) == 0);
    ck_assert(memcmp(a->losses, b->losses, sizeof a->losses) == 0);
}

static void ops_train(int threads, nn_thread_mode mode, ops_run *out)
{
    ops_train_from(threads, mode, false, false, out);
}

/* With the products split (every product here, by lowering the built-in
 * kernel's threshold; the built-in kernel on every path), the runs on 2
 * and 3 threads give the one-thread run's bits: each thread computes whole
 * tiles of each product, and the update is elementwise.  Under
 * ThreadSanitizer this is the race check of the parts: each thread writes
 * its own slab of C from its own packing buffers. */
START_TEST(trainer_ops_mode)
{
    static ops_run one, two, three, two_batch;
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ad__gemm_testing_parallel(1);
    ops_train(0, NN_THREADS_OPS, &one);
    ops_train(2, NN_THREADS_OPS, &two);
    ops_train(3, NN_THREADS_OPS, &three);
    ops_train(2, NN_THREADS_BATCH, &two_batch);
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ck_assert_int_eq(one.nlosses, 6);
    ck_assert(one.losses[5] < one.losses[0]); /* it learns */
    ck_assert_int_eq(two.mode, NN_THREADS_OPS);
    ck_assert_int_eq(two_batch.mode, NN_THREADS_BATCH);
    /* one recording of the batch of 64, none per shard */
    ck_assert_int_eq(two.recordings, 1);
    ck_assert_int_eq(two_batch.recordings, 2);
    assert_same_run(&one, &two);
    assert_same_run(&one, &three);
    /* the batch split groups the sums differently: close, not equal */
    ck_assert(memcmp(&one.w1, &two_batch.w1, sizeof one.w1) != 0);
    for (int i = 0; i < OHID * OIN; i++) ck_assert_close(two_batch.w1[i], one.w1[i], 1e-4);

    /* The default choice: with a one-thread OpenBLAS (this test runs with
     * OPENBLAS_NUM_THREADS=1) each split product is BLAS in slabs, one
     * call per thread; without BLAS, the built-in kernel.  The same bits
     * every time, and the one-thread run's up to rounding. */
    static ops_run one_d, two_d, two_d_again;
    ad__gemm_testing_parallel(1);
    ops_train(0, NN_THREADS_OPS, &one_d);
    ops_train(2, NN_THREADS_OPS, &two_d);
    ops_train(2, NN_THREADS_OPS, &two_d_again);
    ad__gemm_testing(false, 0, 0, 0);
    ck_assert(memcmp(&two_d, &two_d_again, sizeof two_d) == 0);
    for (int i = 0; i < OHID * OIN; i++) ck_assert_close(two_d.w1[i], one_d.w1[i], 1e-5);
    for (int i = 0; i < 6; i++) ck_assert_close(two_d.losses[i], one_d.losses[i], 1e-6);
}
END_TEST

/* The update and the zeroing go in runs of rows that the threads claim,
 * each starting on its own and then taking the others' from the back
 * (trainer_ops.c), as the products' strips are claimed (gemm.c).  With
 * the parts run one after the other, the last first, the last thread
 * claims every run and strip: each element is still updated, zeroed and
 * computed once, so 2 and 3 threads give the one-thread run's bits. */
START_TEST(trainer_ops_claimed_runs)
{
    static ops_run one, two, three;
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ad__gemm_testing_parallel(1);
    ops_train(0, NN_THREADS_OPS, &one);
    nn__ops_testing_serial(true);
    ops_train(2, NN_THREADS_OPS, &two);
    ops_train(3, NN_THREADS_OPS, &three);
    nn__ops_testing_serial(false);
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ck_assert_int_eq(one.nlosses, 6);
    ck_assert(one.losses[5] < one.losses[0]); /* it learns */
    assert_same_run(&one, &two);
    assert_same_run(&one, &three);
}
END_TEST

/* A worker that has not begun its part when the calling thread's own is
 * done (waiting for a core on a busy machine) has it run by the calling
 * thread (nn__pool_run_phase).  With the workers taking no part at all,
 * and with them late by 0-80 us (some parts on each side, which under
 * ThreadSanitizer is the race check of the hand-over), the products split
 * give the one-thread run's bits, on nn_fit's prefetched batches too,
 * and the batch split the bits of its run with punctual workers. */
START_TEST(trainer_late_workers)
{
    static ops_run one, batch3, fit1, late[6];
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ad__gemm_testing_parallel(1);
    ops_train(0, NN_THREADS_OPS, &one);
    ops_train(3, NN_THREADS_BATCH, &batch3);
    ops_train_from(0, NN_THREADS_OPS, true, false, &fit1);
    for (int mode = 1; mode <= 2; mode++) {
        nn__pool_testing_late(mode);
        ops_run *r = &late[3 * (mode - 1)];
        ops_train(2, NN_THREADS_OPS, &r[0]);
        ops_train(3, NN_THREADS_BATCH, &r[1]);
        ops_train_from(3, NN_THREADS_OPS, true, false, &r[2]);
        nn__pool_testing_late(0);
        ck_assert_int_eq(r[0].mode, NN_THREADS_OPS);
        ck_assert_int_eq(r[1].mode, NN_THREADS_BATCH);
        assert_same_run(&one, &r[0]);
        assert_same_run(&batch3, &r[1]);
        assert_same_run(&fit1, &r[2]);
    }
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ck_assert(one.losses[5] < one.losses[0]); /* it learns */
    /* the batch split's own bits: another grouping of the sums */
    ck_assert(memcmp(one.w1, batch3.w1, sizeof one.w1) != 0);
}
END_TEST

/* 40 steps on one batch of 64 with the products split on `threads`
 * threads, the step times on the threads taken as `bias` times what they
 * were (nn__ops_testing_tune_bias): the first layer's weights after, and
 * how many steps ran on the calling thread alone. */
static int64_t tuned_steps(int threads, double bias, float *w1)
{
    ad_rng rng;
    ad_rng_init(&rng, 31);
    ad_tensor *x, *y;
    three_classes(&rng, OBATCH, OIN, &x, &y);
    nn_module *net = NN_SEQUENTIAL(nn_linear(OIN, OHID, true, AD_FLOAT32, &rng), nn_relu(),
                                   nn_linear(OHID, 3, true, AD_FLOAT32, &rng));
    nn_named_tensors *p = nn_parameters(net);
    nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.05, .momentum = 0.9});
    nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
    ck_assert_ptr_nonnull(tr);
    ck_assert_int_eq(nn_trainer_set_threads(tr, threads), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_OPS), 0);
    nn__ops_testing_tune_bias(bias);
    for (int i = 0; i < 40; i++) ck_assert_int_eq(nn_trainer_step(tr, x, y, NULL), 0);
    nn__ops_testing_tune_bias(1);
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(tr, &st), 0);
    memcpy(w1, ad_data(p->tensors[0]), sizeof(float) * OHID * OIN);
    nn_named_tensors_free(p);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    ad_tensor_free(x);
    ad_tensor_free(y);
    return st.serial_steps;
}

/* With the products split the trainer times its steps on the threads and
 * on the calling thread alone and keeps the faster (trainer_ops.c, "whether
 * the threads pay").  Steps 3-18 are timed on the threads (steps 1 and 2
 * are warm-up), 21-28 on one thread after steps 19-20 of warm-up there,
 * and the choice starts at step 29.  Made to look 100 times slower, the
 * threads lose and steps 19-40 run on one thread (22); made to look 100
 * times faster, only the ten steps of the comparison do.  Either way the
 * weights are the one-thread run's bits: every part is the same kernel
 * calls wherever it runs. */
START_TEST(trainer_ops_tuned)
{
    static float one[OHID * OIN], slow[OHID * OIN], fast[OHID * OIN], three[OHID * OIN];
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ad__gemm_testing_parallel(1);
    ck_assert_int_eq(tuned_steps(1, 1, one), 0);
    ck_assert_int_eq(tuned_steps(2, 100, slow), 22);
    ck_assert_int_eq(tuned_steps(2, 0.01, fast), 10);
    ck_assert_int_eq(tuned_steps(3, 100, three), 22);
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ck_assert(memcmp(one, slow, sizeof one) == 0);
    ck_assert(memcmp(one, fast, sizeof one) == 0);
    ck_assert(memcmp(one, three, sizeof one) == 0);
}
END_TEST

/* nn_fit over an IDX loader with the products split: each shuffled batch
 * of bytes is converted straight into the recording's leaves (the one
 * thread run's too), where the threads' products read it; the weights
 * and losses are the one-thread run's bits (built-in kernel everywhere, as
 * above), on 2 and 3 threads and again on 2. */
START_TEST(trainer_ops_idx_batches)
{
    static ops_run ref, one, two, three, two_again;
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ad__gemm_testing_parallel(1);
    ops_train_from(0, NN_THREADS_OPS, true, true, &ref);
    ops_train_from(0, NN_THREADS_OPS, true, false, &one);
    ops_train_from(2, NN_THREADS_OPS, true, false, &two);
    ops_train_from(3, NN_THREADS_OPS, true, false, &three);
    ops_train_from(2, NN_THREADS_OPS, true, false, &two_again);
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ck_assert_int_eq(one.nlosses, 8); /* 4 batches an epoch, the first 8 noted */
    ck_assert_int_eq(ref.nlosses, 8);
    ck_assert(memcmp(&ref, &one, sizeof ref) == 0);
    ck_assert(isfinite(one.losses[7]) && one.losses[7] < one.losses[0]);
    ck_assert_int_eq(two.mode, NN_THREADS_OPS);
    /* the batches of 64 and of 8, and the second recording of 64 that the
     * waiting threads convert the next batch into */
    ck_assert_int_eq(one.recordings, 2);
    ck_assert_int_eq(two.recordings, 3);
    assert_same_run(&one, &two);
    assert_same_run(&one, &three);
    ck_assert(memcmp(&two, &two_again, sizeof two) == 0);
}
END_TEST

/* The waiting threads convert the batch the loader will hand out next;
 * a callback that moves the loader meanwhile (here to another epoch's
 * order, after the first step of the second epoch, while that epoch's
 * second batch is being converted) is obeyed: the step after it trains on
 * the batch the loader then hands out, as on one thread, bit for bit. */
START_TEST(trainer_ops_prefetch_follows_the_loader)
{
    static ops_run plain, one, two, three;
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ad__gemm_testing_parallel(1);
    ops_train_from(2, NN_THREADS_OPS, true, false, &plain);
    jump_step = 5;
    ops_train_from(0, NN_THREADS_OPS, true, false, &one);
    ops_train_from(2, NN_THREADS_OPS, true, false, &two);
    ops_train_from(3, NN_THREADS_OPS, true, false, &three);
    jump_step = 0;
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ck_assert_int_eq(two.recordings, 3); /* the job was posted */
    /* the jump changes the sixth batch, and so the run */
    ck_assert(memcmp(plain.losses, one.losses, 5 * sizeof(double)) == 0);
    ck_assert(plain.losses[5] != one.losses[5]);
    assert_same_run(&one, &two);
    assert_same_run(&one, &three);
}
END_TEST

/* A callback that stops nn_fit while the next batch is being converted
 * (after the first step of the second epoch): the threads' job is dropped
 * before nn_fit returns, a second nn_fit starts that epoch again and posts
 * jobs anew, and the trainer is freed after (the sanitizer builds check
 * that nothing is written or read late).  2 and 3 threads give the bits
 * of one. */
START_TEST(trainer_ops_prefetch_stop)
{
    static ops_run one, two, three;
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ad__gemm_testing_parallel(1);
    stop_step = 5;
    ops_train_from(0, NN_THREADS_OPS, true, false, &one);
    ops_train_from(2, NN_THREADS_OPS, true, false, &two);
    ops_train_from(3, NN_THREADS_OPS, true, false, &three);
    /* the threads held off: every job is finished by the calling thread
     * when its batch is handed out, or dropped at the stop (the loader is
     * freed before the trainer, so a job left behind would read it late) */
    static ops_run held;
    nn__prefetch_testing_hold(true);
    ops_train_from(2, NN_THREADS_OPS, true, false, &held);
    nn__prefetch_testing_hold(false);
    stop_step = 0;
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    /* 5 steps, then the second epoch's 4 again: 9, of which 8 noted */
    ck_assert_int_eq(one.nlosses, 8);
    ck_assert_int_eq(two.recordings, 3);
    assert_same_run(&one, &two);
    assert_same_run(&one, &three);
    ck_assert_int_eq(held.recordings, 3);
    assert_same_run(&one, &held);
}
END_TEST

/* A runner that runs the parts one after the other on the calling thread,
 * in reverse order, counting its calls: the last part, run first, claims
 * every strip of the product (the others' from the back of their slabs),
 * which the bits below must not see. */
static int serial_calls;
static void reverse_runner(void *pool, ad_parallel_task task, void *ctx)
{
    int parts = *(int *)pool;
    serial_calls++;
    for (int p = parts - 1; p >= 0; p--) task(ctx, p, parts);
}

/* ad_set_parallel_runner: a product large enough to split goes to the
 * runner once, its parts cover C exactly (a bias epilogue and an
 * accumulation included), and with the built-in kernel the bits are those
 * of the product without a runner; small products never reach it. */
START_TEST(parallel_runner_products)
{
    enum { M = 70, K = 150, N = 90 };
    ad_rng rng;
    ad_rng_init(&rng, 3);
    ad_tensor *a = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(M, K), 0, 1);
    ad_tensor *b = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(K, N), 0, 1);
    ad_tensor *bias = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(N), 0, 1);
    static float want[M * N], got[M * N], acc0[M * N];
    for (int i = 0; i < M * N; i++) acc0[i] = (float)(i % 7) - 3;
    const int modes[2] = {AD_GEMM_BUILTIN, -1};
    for (int md = 0; md < 2; md++) {
        for (int parts = 2; parts <= 5; parts += 3) {
            for (int variant = 0; variant < 3; variant++) { /* plain, bias, accumulate */
                ad__gemm_testing_choice(modes[md]);
                ad_gemm_ep ep = {.bias = variant == 1 ? ad_data(bias) : NULL,
                                 .bias_stride = 1, .accumulate = variant == 2};
                memcpy(want, acc0, sizeof want);
                ck_assert_int_eq(ad__gemm_ep(NULL, AD_FLOAT32, M, N, K, ad_data(a), K, 1,
                                             ad_data(b), N, 1, want, N, &ep), 0);
                memcpy(got, acc0, sizeof got);
                ad__gemm_testing_parallel(1);
                serial_calls = 0;
                ck_assert_int_eq(ad_set_parallel_runner(reverse_runner, &parts, parts), 0);
                ck_assert_int_eq(ad__gemm_ep(NULL, AD_FLOAT32, M, N, K, ad_data(a), K, 1,
                                             ad_data(b), N, 1, got, N, &ep), 0);
                /* a product below the threshold stays on the caller */
                ad__gemm_testing_parallel(0);
                float small[4];
                ck_assert_int_eq(ad__gemm(NULL, AD_FLOAT32, 2, 2, 1, ad_data(a), K, 1,
                                          ad_data(b), N, 1, small, 2), 0);
                ck_assert_int_eq(ad_set_parallel_runner(NULL, NULL, 0), 0);
                /* once (the BLAS case needs OPENBLAS_NUM_THREADS=1, as
                 * meson runs this test; a BLAS with threads of its own
                 * keeps the product) */
                ck_assert_int_eq(serial_calls, 1);
                if (md == 0) {
                    ck_assert(memcmp(want, got, sizeof want) == 0);
                } else {
                    /* the default mode may send the whole product to BLAS
                     * (always, on a CPU without AVX-512) and the split one
                     * to the built-in kernel: the same sums of K = 150
                     * products in another order, a few float roundings of
                     * each element's size (30 here: 1.1e-5 apart) */
                    for (int i = 0; i < M * N; i++)
                        ck_assert_close(got[i], want[i], 1e-5 * (1 + fabs(want[i])));
                }
            }
        }
    }
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ad_tensor_free(a);
    ad_tensor_free(b);
    ad_tensor_free(bias);
}
END_TEST

/* The same for a product turned around (x W^T with a small batch, as
 * C^T = W x^T: gemm_driver.inc's swapped products), whose parts claim row
 * strips of W read where it lies: the bits of the product on one thread,
 * with and without a bias, for 2 and 5 parts. */
START_TEST(parallel_runner_swapped_products)
{
    enum { M = 32, K = 150, N = 70 };
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    if (strncmp(ad__gemm_kernel_name(AD_FLOAT32), "generic", 7) != 0)
        ck_assert(ad__gemm_swap_takes(AD_FLOAT32, M, N, K, 1, 1, K));
    ad_rng rng;
    ad_rng_init(&rng, 4);
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(M, K), 0, 1);
    ad_tensor *w = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(N, K), 0, 1);
    ad_tensor *bias = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(N), 0, 1);
    static float want[M * N], got[M * N];
    for (int parts = 2; parts <= 5; parts += 3)
        for (int variant = 0; variant < 2; variant++) {
            ad_gemm_ep ep = {.bias = variant ? ad_data(bias) : NULL, .bias_stride = 1};
            ck_assert_int_eq(ad__gemm_ep(NULL, AD_FLOAT32, M, N, K, ad_data(x), K, 1, ad_data(w),
                                         1, K, want, N, &ep), 0);
            ad__gemm_testing_parallel(1);
            serial_calls = 0;
            ck_assert_int_eq(ad_set_parallel_runner(reverse_runner, &parts, parts), 0);
            ck_assert_int_eq(ad__gemm_ep(NULL, AD_FLOAT32, M, N, K, ad_data(x), K, 1, ad_data(w),
                                         1, K, got, N, &ep), 0);
            ck_assert_int_eq(ad_set_parallel_runner(NULL, NULL, 0), 0);
            ad__gemm_testing_parallel(0);
            ck_assert_int_eq(serial_calls, 1);
            ck_assert(memcmp(want, got, sizeof want) == 0);
        }
    ad__gemm_testing(false, 0, 0, 0);
    ad__gemm_testing_choice(-1);
    ad_tensor_free(x);
    ad_tensor_free(w);
    ad_tensor_free(bias);
}
END_TEST

static void serial_runner(void *pool, ad_parallel_task task, void *ctx)
{
    (void)pool;
    task(ctx, 0, 1);
}

/* NN_THREADS_AUTO: a model whose parameters outweigh its step's tape (a
 * 300-64-3 MLP on batches of 64: 78 KB of parameters) gets its products
 * split; one whose activations outweigh its parameters (a 3-8-3 model,
 * 236 bytes of parameters, on batches of 16) gets its batch split.  The
 * mode is AUTO until the first step, and AUTO again after a change of the
 * thread count.  Bad modes are refused. */
START_TEST(trainer_thread_mode_auto)
{
    static ops_run wide;
    ops_train(2, NN_THREADS_AUTO, &wide);
    ck_assert_int_eq(wide.mode, NN_THREADS_OPS);
    ck_assert_int_eq(wide.recordings, 1);

    ad_rng rng;
    ad_rng_init(&rng, 5);
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(64, 3), 0, 1);
    ad_tensor *y = ad_zeros(NULL, AD_INT64, AD_SHAPE(64));
    nn_loader *ld = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 16});
    nn_module *net = NN_SEQUENTIAL(nn_linear(3, 8, true, AD_FLOAT32, &rng), nn_relu(),
                                   nn_linear(8, 3, true, AD_FLOAT32, &rng));
    nn_named_tensors *p = nn_parameters(net);
    nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.1});
    nn_named_tensors_free(p);
    nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
    ck_assert_int_eq(nn_trainer_get_thread_mode(tr), NN_THREADS_AUTO);
    ck_assert_int_eq(nn_trainer_set_threads(tr, 2), 0);
    ck_assert_int_eq(nn_fit(tr, ld, NULL, 1, NULL), 0);
    ck_assert_int_eq(nn_trainer_get_thread_mode(tr), NN_THREADS_BATCH);
    /* the first step's one-thread recording went; the shards' two stay */
    nn_trainer_stats st;
    ck_assert_int_eq(nn_trainer_get_stats(tr, &st), 0);
    ck_assert_int_eq(st.recordings, 2);
    ck_assert_int_eq(ad_size(nn_trainer_output(tr), 0), 8);
    ck_assert_int_eq(nn_trainer_set_threads(tr, 3), 0);
    ck_assert_int_eq(nn_trainer_get_thread_mode(tr), NN_THREADS_AUTO);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, NN_THREADS_OPS), 0);
    ck_assert_int_eq(nn_fit(tr, ld, NULL, 2, NULL), 0);
    ck_assert_int_eq(nn_trainer_get_thread_mode(tr), NN_THREADS_OPS);
    ck_assert_int_eq(ad_size(nn_trainer_output(tr), 0), 16);
    ck_assert_error_rc(nn_trainer_set_thread_mode(tr, (nn_thread_mode)7),
                       "nn_trainer_set_thread_mode: mode must be NN_THREADS_AUTO, NN_THREADS_BATCH "
                       "or NN_THREADS_OPS, got 7");
    ck_assert_error_rc(nn_trainer_set_thread_mode(NULL, NN_THREADS_OPS), "argument 'tr' is NULL");
    ck_assert_int_eq(nn_trainer_get_thread_mode(NULL), -1);
    ad_clear_error();
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    nn_loader_free(ld);
    ad_tensor_free(x);
    ad_tensor_free(y);

    ck_assert_error_rc(ad_set_parallel_runner(serial_runner, NULL, 1),
                       "ad_set_parallel_runner: parts must be >= 2 with a runner, got 1");
    ck_assert_int_eq(ad_set_parallel_runner(NULL, NULL, 0), 0);
}
END_TEST

/* The threads of the process: /proc/self/task's entries (Linux), or -1. */
static int process_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A trainer with threads records and evaluates its model on the calling
 * thread between steps (the second recording of nn_fit's prefetched
 * batch, the validation set after each epoch); with the products split
 * those products go to the trainer's own threads as well, so no OpenMP
 * team starts beside them (its idle threads would spin on the trainer's
 * cores: trainer_ops.c).  Every product here would split (the threshold
 * lowered); whatever made the model ran on this thread alone, so the one
 * thread that nn_fit adds is the trainer's worker.  With the batch split
 * the evaluation keeps OpenMP's threads (trainer.c, evaluate), so only
 * the bits are checked: the evaluation on two threads gives the
 * one-thread evaluation's, in both modes.  In a process that ran an
 * OpenMP region before (CK_FORK=no), or with one core, nothing can tell
 * and the count is not checked. */
START_TEST(trainer_work_between_steps_on_its_threads)
{
    for (int m = 0; m < 2; m++) {
        nn_thread_mode mode = m ? NN_THREADS_BATCH : NN_THREADS_OPS;
        int prev = ad_set_num_threads(1);
        ad_rng rng;
        ad_rng_init(&rng, 17);
        ad_tensor *x, *y;
        three_classes(&rng, ON, OIN, &x, &y);
        nn_loader *ld = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = OBATCH});
        nn_loader *val = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 48});
        nn_module *net = NN_SEQUENTIAL(nn_linear(OIN, OHID, true, AD_FLOAT32, &rng), nn_relu(),
                                       nn_linear(OHID, 3, true, AD_FLOAT32, &rng));
        nn_named_tensors *p = nn_parameters(net);
        nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.05, .momentum = 0.9});
        nn_named_tensors_free(p);
        nn_trainer *tr = nn_trainer_new(net, NULL, opt, NULL);
        ck_assert_ptr_nonnull(tr);
        ck_assert_int_eq(nn_trainer_set_threads(tr, 2), 0);
        ck_assert_int_eq(nn_trainer_set_thread_mode(tr, mode), 0);
        ad_set_num_threads(prev);
        ad__gemm_testing_choice(AD_GEMM_BUILTIN);
        ad__gemm_testing_parallel(1);
        int before = process_threads();
        ck_assert_int_eq(nn_fit(tr, ld, val, 2, NULL), 0);
        int after = process_threads();
        bool team_possible = ad_get_num_threads() > 1 && mode == NN_THREADS_OPS;
        if (before > 0 && team_possible) ck_assert_int_eq(after, before + 1);
        nn_metrics two, one;
        ck_assert_int_eq(nn_trainer_evaluate(tr, val, NULL, &two), ON);
        ck_assert_int_eq(nn_trainer_set_threads(tr, 1), 0);
        ck_assert_int_eq(nn_trainer_evaluate(tr, val, NULL, &one), ON);
        ck_assert(memcmp(&one.loss, &two.loss, sizeof one.loss) == 0);
        ck_assert(one.loss < 1.0); /* it learnt: 3 classes at chance give log 3 */
        ad__gemm_testing(false, 0, 0, 0);
        ad__gemm_testing_choice(-1);
        nn_trainer_free(tr);
        nn_optim_free(opt);
        nn_module_free(net);
        nn_loader_free(ld);
        nn_loader_free(val);
        ad_tensor_free(x);
        ad_tensor_free(y);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("threads");
    tcase_add_test(tc, two_tapes_two_threads);
    tcase_add_test(tc, shared_frozen_checkpointed_block);
    tcase_add_test(tc, trainer_split_among_threads);
    tcase_add_test(tc, trainer_split_blocks);
    tcase_add_test(tc, trainer_ops_mode);
    tcase_add_test(tc, trainer_ops_idx_batches);
    tcase_add_test(tc, trainer_ops_claimed_runs);
    tcase_add_test(tc, trainer_late_workers);
    tcase_add_test(tc, trainer_ops_tuned);
    tcase_add_test(tc, trainer_ops_prefetch_follows_the_loader);
    tcase_add_test(tc, trainer_ops_prefetch_stop);
    tcase_add_test(tc, parallel_runner_products);
    tcase_add_test(tc, parallel_runner_swapped_products);
    tcase_add_test(tc, trainer_thread_mode_auto);
    tcase_add_test(tc, trainer_work_between_steps_on_its_threads);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

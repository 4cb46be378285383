/* tests/test_trainer_ref.c - nn_trainer_step against the loop it stands
 * for.
 *
 * The trainer records and replays its steps, splits them among threads
 * and may clear gradients its own way; none of that may change a number.
 * Its parameters are compared bit for bit with a plain loop's, and an
 * optimised tensor that the model never uses starts with a stale gradient
 * that must not move it. */
#include <math.h>
#include <nn/nn.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_data.h"
#include "optest.h"

enum { N = 100, BATCH = 16, UNUSED = 5 };

/* A model, and an SGD (momentum) over its parameters and one tensor the
 * model does not use, whose gradient starts stale (3 everywhere): a stale
 * gradient that survived a step would move it. */
typedef struct model {
    nn_module *net;
    ad_tensor *unused;
    nn_optim *opt;
} model;

static void model_make(model *m)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    m->net = NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                           nn_linear(8, 3, true, AD_FLOAT32, &rng));
    ck_assert_ptr_nonnull(m->net);
    m->unused = ad_full(NULL, AD_FLOAT32, 1, (int64_t[]){UNUSED}, 1.0);
    ck_assert_int_eq(ad_set_requires_grad(m->unused, true), 0);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ck_assert_int_eq(ad_backward(ad_sum(ad_mul_scalar(m->unused, 3), NULL, 0, false), NULL, 0), 0);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    nn_named_tensors *p = nn_parameters(m->net);
    ck_assert_ptr_nonnull(p);
    int n = p->n + 1;
    const char *names[16];
    ad_tensor *ts[16];
    ck_assert_int_lt(n, 16);
    for (int i = 0; i < p->n; i++) names[i] = p->names[i], ts[i] = p->tensors[i];
    names[p->n] = "unused";
    ts[p->n] = m->unused;
    nn_named_tensors *all = nn_named_tensors_new(n, names, ts);
    m->opt = nn_sgd(all, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9});
    ck_assert_ptr_nonnull(m->opt);
    nn_named_tensors_free(all);
    nn_named_tensors_free(p);
}

static void model_free(model *m)
{
    nn_optim_free(m->opt);
    nn_module_free(m->net);
    ad_tensor_free(m->unused);
}

/* Every parameter of a and b holds the same bits, and the unused one is
 * where it started, its gradient zero in memory read without the library. */
static void same_models(const model *a, const model *b, const float *unused_grad)
{
    nn_named_tensors *pa = nn_parameters(a->net), *pb = nn_parameters(b->net);
    for (int i = 0; i < pa->n; i++)
        ck_assert_msg(memcmp(ad_data(pa->tensors[i]), ad_data(pb->tensors[i]),
                             (size_t)ad_numel(pa->tensors[i]) * sizeof(float)) == 0,
                      "parameter %s differs", pa->names[i]);
    nn_named_tensors_free(pa);
    nn_named_tensors_free(pb);
    const float *u = ad_data(a->unused);
    for (int i = 0; i < UNUSED; i++) {
        ck_assert_msg(u[i] == 1.0f, "unused parameter moved: %g", (double)u[i]);
        ck_assert_msg(unused_grad[i] == 0.0f, "stale gradient %g", (double)unused_grad[i]);
    }
}

/* The loop a trainer step stands for, on tape t: zero_grad, forward and
 * loss recorded afresh, backward, step. */
static void eager_step(ad_tape *t, nn_module *net, nn_optim *opt, ad_tensor *xb, ad_tensor *yb)
{
    ad_tape_activate(t);
    ck_assert_int_eq(nn_optim_zero_grad(opt), 0);
    ad_tensor *l = nn_cross_entropy(nn_forward(net, xb), yb, NN_MEAN, 0);
    ck_assert_msg(l != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_backward(l, NULL, 0), 0);
    ck_assert_int_eq(nn_optim_step(opt), 0);
    ad_tape_activate(NULL);
    ck_assert_int_eq(ad_tape_reset(t), 0);
}

/* The trainer's steps (recorded, then replayed; one thread, then two in
 * each mode) end with the bits of a loop of one's own (nn_optim_zero_grad,
 * ad_backward, nn_optim_step), and after every step the gradient of the
 * parameter no step reaches is zero in its buffer, read through a pointer
 * taken before training: whatever the trainer does to save work in its
 * zero_grad, a stale gradient never survives a step. */
START_TEST(trainer_matches_an_eager_loop)
{
    static const struct { int threads; nn_thread_mode mode; } runs[] = {
        {1, NN_THREADS_AUTO}, {2, NN_THREADS_OPS}, {2, NN_THREADS_BATCH}};
    const int r = _i;
    ad_tensor *x, *y;
    cluster_data(N, &x, &y);
    model a, b;
    model_make(&a);
    model_make(&b);
    const float *ga = ad_data(ad_tensor_grad(a.unused)), *gb = ad_data(ad_tensor_grad(b.unused));
    ck_assert(ga[0] == 3.0f && gb[0] == 3.0f);
    nn_trainer *tr = nn_trainer_new(a.net, NULL, a.opt, NULL);
    ck_assert_ptr_nonnull(tr);
    ck_assert_int_eq(nn_trainer_set_threads(tr, runs[r].threads), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, runs[r].mode), 0);
    ad_tape *t = ad_tape_new();
    for (int step = 0; step < 3 * (N / BATCH); step++) {
        int64_t row0 = (int64_t)(step % (N / BATCH)) * BATCH;
        ad_tensor *xb = ad_narrow(x, 0, row0, BATCH), *yb = ad_narrow(y, 0, row0, BATCH);
        ck_assert(xb && yb);
        double loss;
        ck_assert_msg(nn_trainer_step(tr, xb, yb, &loss) == 0, "%s", ad_error());
        eager_step(t, b.net, b.opt, xb, yb); /* the reference */
        ad_tensor_free(xb);
        ad_tensor_free(yb);
        if (runs[r].threads == 1) same_models(&a, &b, ga);
        for (int i = 0; i < UNUSED; i++) ck_assert(ga[i] == 0.0f);
    }
    if (runs[r].threads == 1) {
        nn_trainer_stats st;
        ck_assert_int_eq(nn_trainer_get_stats(tr, &st), 0);
        ck_assert_int_gt(st.replays, 0);
    }
    ad_tape_free(t);
    nn_trainer_free(tr);
    model_free(&a);
    model_free(&b);
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

/* ---- layers frozen and unfrozen, a parameter outside the model ----------
 * A model whose logits get a tensor e added that the model does not
 * register (a layer of one's own with state), e in the optimiser; its
 * first layer frozen when the trainer records, unfrozen at step 3 (a
 * backbone unfrozen after the head trained: no op of that layer was on a
 * gradient path when it was recorded), its last weight frozen at step 6. */
static ad_tensor *add_e_forward(nn_module *m, ad_tensor *x)
{
    return ad_add(x, *(ad_tensor **)nn_module_state(m));
}
static const nn_module_type ADD_E = {"AddE", add_e_forward, NULL, NULL};

typedef struct frozen_model {
    nn_module *net;
    ad_tensor *e;
    nn_optim *opt;
} frozen_model;

static void frozen_make(frozen_model *m)
{
    ad_rng rng;
    ad_rng_init(&rng, 9);
    m->e = ad_from_array(NULL, AD_FLOAT32, 1, (int64_t[]){3}, (float[]){0.5f, -0.25f, 0});
    ck_assert_int_eq(ad_set_requires_grad(m->e, true), 0);
    m->net = NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                           nn_linear(8, 3, true, AD_FLOAT32, &rng), nn_module_new(&ADD_E, &m->e));
    ck_assert_ptr_nonnull(m->net);
    nn_named_tensors *p = nn_parameters(m->net);
    const char *names[8];
    ad_tensor *ts[8];
    for (int i = 0; i < p->n; i++) names[i] = p->names[i], ts[i] = p->tensors[i];
    names[p->n] = "e";
    ts[p->n] = m->e;
    nn_named_tensors *all = nn_named_tensors_new(p->n + 1, names, ts);
    m->opt = nn_sgd(all, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9});
    ck_assert_ptr_nonnull(m->opt);
    nn_named_tensors_free(all);
    nn_named_tensors_free(p);
    ck_assert_int_eq(ad_set_requires_grad(nn_get_parameter(m->net, "0.weight"), false), 0);
    ck_assert_int_eq(ad_set_requires_grad(nn_get_parameter(m->net, "0.bias"), false), 0);
}

static void frozen_free(frozen_model *m)
{
    nn_optim_free(m->opt);
    nn_module_free(m->net);
    ad_tensor_free(m->e);
}

/* max |a - b| over every parameter and e (0 for the same bits) */
static double frozen_diff(const frozen_model *a, const frozen_model *b)
{
    nn_named_tensors *pa = nn_parameters(a->net), *pb = nn_parameters(b->net);
    double d = 0;
    for (int i = 0; i <= pa->n; i++) {
        const float *u = ad_data(i < pa->n ? pa->tensors[i] : a->e);
        const float *v = ad_data(i < pa->n ? pb->tensors[i] : b->e);
        for (int64_t j = 0; j < ad_numel(i < pa->n ? pa->tensors[i] : a->e); j++)
            d = fmax(d, fabs((double)u[j] - (double)v[j]));
    }
    nn_named_tensors_free(pa);
    nn_named_tensors_free(pb);
    return d;
}

static void set_frozen(frozen_model *m, const char *name, bool frozen)
{
    ck_assert_int_eq(ad_set_requires_grad(nn_get_parameter(m->net, name), !frozen), 0);
}

/* The trainer's parameters after every step are the loop's (bits, or with
 * the batch split the loop's up to the order of the shards' sums).  Before
 * the trainer checked its recordings against requires_grad, the unfrozen
 * layer never trained (its gradient stayed NULL) on any thread count, and
 * the batch split gave e and the unfrozen layer only the last shard's part
 * of their gradients. */
START_TEST(trainer_follows_freezing_and_a_parameter_outside_the_model)
{
    static const struct { int threads; nn_thread_mode mode; } runs[] = {
        {1, NN_THREADS_AUTO}, {2, NN_THREADS_OPS}, {2, NN_THREADS_BATCH}};
    const int r = _i;
    ad_tensor *x, *y;
    cluster_data(N, &x, &y);
    frozen_model a, b;
    frozen_make(&a);
    frozen_make(&b);
    ad_tensor *w0 = nn_get_parameter(a.net, "0.weight");
    float w0_start[16];
    memcpy(w0_start, ad_data(w0), sizeof w0_start);
    nn_trainer *tr = nn_trainer_new(a.net, NULL, a.opt, NULL);
    ck_assert_ptr_nonnull(tr);
    ck_assert_int_eq(nn_trainer_set_threads(tr, runs[r].threads), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, runs[r].mode), 0);
    ad_tape *t = ad_tape_new();
    for (int step = 0; step < 10; step++) {
        if (step == 3 || step == 6) {
            const char *names[] = {"0.weight", "0.bias", "2.weight"};
            for (int i = step == 3 ? 0 : 2; i < (step == 3 ? 2 : 3); i++) {
                set_frozen(&a, names[i], step == 6);
                set_frozen(&b, names[i], step == 6);
            }
        }
        int64_t row0 = (int64_t)(step % (N / BATCH)) * BATCH;
        ad_tensor *xb = ad_narrow(x, 0, row0, BATCH), *yb = ad_narrow(y, 0, row0, BATCH);
        ck_assert(xb && yb);
        ck_assert_msg(nn_trainer_step(tr, xb, yb, NULL) == 0, "%s", ad_error());
        eager_step(t, b.net, b.opt, xb, yb);
        ad_tensor_free(xb);
        ad_tensor_free(yb);
        double d = frozen_diff(&a, &b);
        if (runs[r].mode == NN_THREADS_BATCH)
            ck_assert_msg(d < 1e-5, "step %d: parameters %g from the loop's", step, d);
        else
            ck_assert_msg(d == 0, "step %d: parameters %g from the loop's", step, d);
        /* the first layer moves only once unfrozen */
        bool moved = memcmp(ad_data(w0), w0_start, sizeof w0_start) != 0;
        ck_assert_msg(moved == (step >= 3), "step %d: 0.weight %s", step,
                      moved ? "moved while frozen" : "did not move once unfrozen");
    }
    ad_tape_free(t);
    nn_trainer_free(tr);
    frozen_free(&a);
    frozen_free(&b);
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

/* nn_fit converts each batch straight into its recording's leaves; when a
 * layer is unfrozen the recording is made again and the converted batch
 * carried into the new leaves.  A callback freezes the first layer after
 * step 1 (a recording made again with it frozen) and unfreezes it after
 * step 4: nn_fit ends with the bits of nn_loader_next and nn_trainer_step
 * doing the same, and the layer moved only once unfrozen. */
static void freeze_first(nn_module *net, int64_t step)
{
    if (step != 1 && step != 4) return;
    ck_assert_int_eq(ad_set_requires_grad(nn_get_parameter(net, "0.weight"), step == 4), 0);
    ck_assert_int_eq(ad_set_requires_grad(nn_get_parameter(net, "0.bias"), step == 4), 0);
}
static int freeze_on_step(nn_trainer *tr, const nn_step_info *si, void *user)
{
    (void)user;
    freeze_first(nn_trainer_model(tr), si->step);
    return 0;
}

START_TEST(fit_carries_its_batch_into_a_recording_made_again)
{
    ad_tensor *x, *y;
    cluster_data(N, &x, &y);
    nn_module *net[2];
    nn_optim *opt[2];
    nn_trainer *tr[2];
    nn_loader *l[2];
    float w0[2][16];
    for (int k = 0; k < 2; k++) {
        ad_rng rng;
        ad_rng_init(&rng, 5);
        net[k] = NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT32, &rng), nn_relu(),
                               nn_linear(8, 3, true, AD_FLOAT32, &rng));
        opt[k] = nn_sgd_module(net[k], &(nn_sgd_options){.lr = 0.1, .momentum = 0.9});
        tr[k] = nn_trainer_new(net[k], NULL, opt[k], NULL);
        l[k] = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = BATCH,
                                                                 .shuffle = true, .seed = 3});
        ck_assert(net[k] && opt[k] && tr[k] && l[k]);
        memcpy(w0[k], ad_data(nn_get_parameter(net[k], "0.weight")), sizeof w0[k]);
    }
    ck_assert_msg(nn_fit(tr[0], l[0], NULL, 2, &(nn_fit_options){.on_step = freeze_on_step}) == 0,
                  "%s", ad_error());
    for (int64_t e = 0; e < 2; e++) {
        ck_assert_int_eq(nn_loader_set_epoch(l[1], e), 0);
        ad_tensor *xb, *yb;
        while (nn_loader_next(l[1], &xb, &yb) == 1) {
            ck_assert_msg(nn_trainer_step(tr[1], xb, yb, NULL) == 0, "%s", ad_error());
            freeze_first(net[1], nn_trainer_steps(tr[1]));
        }
    }
    ck_assert_int_eq(nn_trainer_steps(tr[0]), nn_trainer_steps(tr[1]));
    nn_named_tensors *pa = nn_parameters(net[0]), *pb = nn_parameters(net[1]);
    for (int i = 0; i < pa->n; i++)
        ck_assert_msg(memcmp(ad_data(pa->tensors[i]), ad_data(pb->tensors[i]),
                             (size_t)ad_numel(pa->tensors[i]) * sizeof(float)) == 0,
                      "parameter %s differs", pa->names[i]);
    ck_assert(memcmp(ad_data(pa->tensors[0]), w0[0], sizeof w0[0]) != 0);
    nn_named_tensors_free(pa);
    nn_named_tensors_free(pb);
    for (int k = 0; k < 2; k++) {
        nn_trainer_free(tr[k]);
        nn_loader_free(l[k]);
        nn_optim_free(opt[k]);
        nn_module_free(net[k]);
    }
    ad_tensor_free(x);
    ad_tensor_free(y);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trainer_ref");
    TCase *tc = tcase_create("trainer_ref");
    tcase_add_loop_test(tc, trainer_matches_an_eager_loop, 0, 3);
    tcase_add_loop_test(tc, trainer_follows_freezing_and_a_parameter_outside_the_model, 0, 3);
    tcase_add_test(tc, fit_carries_its_batch_into_a_recording_made_again);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

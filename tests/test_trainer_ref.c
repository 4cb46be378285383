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
        /* the reference: eager zero_grad, backward, step */
        ad_tape_activate(t);
        ck_assert_int_eq(nn_optim_zero_grad(b.opt), 0);
        ad_tensor *l = nn_cross_entropy(nn_forward(b.net, xb), yb, NN_MEAN, 0);
        ck_assert_msg(l != NULL, "%s", ad_error());
        ck_assert_int_eq(ad_backward(l, NULL, 0), 0);
        ck_assert_int_eq(nn_optim_step(b.opt), 0);
        ad_tape_activate(NULL);
        ck_assert_int_eq(ad_tape_reset(t), 0);
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

int main(void)
{
    Suite *s = suite_create("trainer_ref");
    TCase *tc = tcase_create("trainer_ref");
    tcase_add_loop_test(tc, trainer_matches_an_eager_loop, 0, 3);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_zero_grad.c - ad_zero_grad_deferred: a leaf's gradient buffer
 * marked zero instead of zeroed, written over by the next backward.
 *
 * Every test first leaves a large, known stale gradient in the buffers
 * (a backward of its own), so that a stale value that survived - added
 * into instead of written over, or read before it was zeroed - changes
 * the result: each compares against the same computation on twin
 * leaves zeroed with ad_zero_grad.  The trainer (which defers its
 * zero_grad) is checked against a loop of one's own that zeroes eagerly. */
#include <math.h>
#include <nn/nn.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

enum { B = 5, IN = 4, OUT = 3 };

/* A linear layer's weight and bias (the weight's gradient takes the direct
 * path: linear's rule writes the product into the leaf's buffer) and a
 * vector used through an elementwise op (the add path). */
typedef struct params {
    ad_tensor *w, *b, *u;
} params;

static void params_make(params *p, uint64_t seed)
{
    ad_rng rng;
    ad_rng_init(&rng, seed);
    p->w = ad_rand(NULL, &rng, AD_FLOAT64, 2, (int64_t[]){OUT, IN}, -1, 1);
    p->b = ad_rand(NULL, &rng, AD_FLOAT64, 1, (int64_t[]){OUT}, -1, 1);
    p->u = ad_rand(NULL, &rng, AD_FLOAT64, 1, (int64_t[]){IN}, -1, 1);
    ck_assert_int_eq(ad_set_requires_grad(p->w, true), 0);
    ck_assert_int_eq(ad_set_requires_grad(p->b, true), 0);
    ck_assert_int_eq(ad_set_requires_grad(p->u, true), 0);
}

static void params_free(params *p)
{
    ad_tensor_free(p->w);
    ad_tensor_free(p->b);
    ad_tensor_free(p->u);
}

/* A batch of inputs from seed. */
static ad_tensor *batch(ad_tape *t, uint64_t seed)
{
    ad_rng rng;
    ad_rng_init(&rng, seed);
    return ad_rand(t, &rng, AD_FLOAT64, 2, (int64_t[]){B, IN}, -2, 2);
}

/* loss = sum(tanh(linear(x * u, w, b))^2), or without u when use_u is
 * false (then backward does not reach u), or only through rows 0 and 2
 * of w when rows is set (w times a mask of those rows, without b: w's
 * other rows get zeros, b none). */
static void backward(ad_tape *t, const params *p, uint64_t seed, bool use_u, bool rows)
{
    ad_tensor *x = batch(t, seed);
    if (use_u) x = ad_mul(x, p->u);
    ad_tensor *h;
    if (rows) {
        ad_tensor *mask = ad_from_array(t, AD_FLOAT64, 2, (int64_t[]){OUT, 1},
                                        (double[]){1, 0, 1});
        h = ad_linear(x, ad_mul(p->w, mask), NULL);
    } else {
        h = ad_linear(x, p->w, p->b);
    }
    ad_tensor *th = ad_tanh(h);
    ad_tensor *l = ad_sum(ad_mul(th, th), NULL, 0, false);
    ck_assert_msg(l != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_backward(l, NULL, 0), 0);
    ck_assert_int_eq(ad_tape_reset(t), 0);
}

/* a's and b's gradients hold the same values (== : a buffer written over
 * may hold -0 where one added into zeros holds +0). */
static void same_grad(ad_tensor *a, ad_tensor *b)
{
    ad_tensor *ga = ad_tensor_grad(a), *gb = ad_tensor_grad(b);
    ck_assert_ptr_nonnull(ga);
    ck_assert_ptr_nonnull(gb);
    int64_t n = ad_numel(a);
    const double *x = ad_data(ga), *y = ad_data(gb);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(x[i] == y[i], "element %lld: %.17g against %.17g", (long long)i, x[i], y[i]);
}

static bool all_zero(ad_tensor *g)
{
    const double *x = ad_data(g);
    for (int64_t i = 0; i < ad_numel(g); i++)
        if (x[i] != 0) return false;
    return true;
}

static void zero_all(params *p, bool deferred)
{
    int (*z)(ad_tensor *) = deferred ? ad_zero_grad_deferred : ad_zero_grad;
    ck_assert_int_eq(z(p->w), 0);
    ck_assert_int_eq(z(p->b), 0);
    ck_assert_int_eq(z(p->u), 0);
}

/* Steps of zero_grad + backward where the second and third backward reach
 * only some leaves, and only some rows of w: deferred and eager zeroing
 * give the same gradients, u's is zero where the step did not reach it,
 * and w's row 1 is zero where only rows 0 and 2 took part. */
START_TEST(partial_backwards_match_eager)
{
    params d, e;
    params_make(&d, 1);
    params_make(&e, 1);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    struct { bool use_u, rows; } steps[] = {{true, false}, {false, false}, {true, true},
                                            {false, true}, {true, false}};
    for (int s = 0; s < 5; s++) {
        if (s > 0) {
            zero_all(&d, true);
            zero_all(&e, false);
        }
        backward(t, &d, 10 + (uint64_t)s, steps[s].use_u, steps[s].rows);
        backward(t, &e, 10 + (uint64_t)s, steps[s].use_u, steps[s].rows);
        same_grad(d.w, e.w);
        same_grad(d.b, e.b);
        same_grad(d.u, e.u);
        if (s > 0 && !steps[s].use_u) ck_assert(all_zero(ad_tensor_grad(d.u)));
        if (s > 0 && steps[s].rows) {
            const double *g = ad_data(ad_tensor_grad(d.w));
            for (int j = 0; j < IN; j++) ck_assert(g[1 * IN + j] == 0 && g[0 * IN + j] != 0);
            ck_assert(all_zero(ad_tensor_grad(d.b)));
        }
    }
    ad_tape_activate(NULL);
    ad_tape_free(t);
    params_free(&d);
    params_free(&e);
}
END_TEST

/* After ad_zero_grad_deferred the gradient reads zero before any backward:
 * through ad_tensor_grad, and through a handle taken before the zeroing
 * (any function given it zeroes it first); the backward that follows
 * then starts from zero, not from the stale values. */
START_TEST(read_between_zero_grad_and_backward)
{
    params d, e;
    params_make(&d, 2);
    params_make(&e, 2);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    backward(t, &d, 20, true, false);
    backward(t, &e, 20, true, false);
    ad_tensor *gw = ad_tensor_grad(d.w), *gu = ad_tensor_grad(d.u);
    ck_assert(!all_zero(gw) && !all_zero(gu));
    zero_all(&d, true);
    zero_all(&e, false);
    /* the handle kept from before: ot_at reads it through the library */
    for (int i = 0; i < OUT * IN; i++) ck_assert(ot_at(gw, i) == 0);
    ck_assert_ptr_eq(ad_tensor_grad(d.u), gu);
    ck_assert(all_zero(gu));
    backward(t, &d, 21, true, false);
    backward(t, &e, 21, true, false);
    same_grad(d.w, e.w);
    same_grad(d.b, e.b);
    same_grad(d.u, e.u);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    params_free(&d);
    params_free(&e);
}
END_TEST

/* Gradients still accumulate: two backwards after one deferred zero_grad
 * give the sum of both (the first writes, the second adds), through the
 * direct path (w) and the add path (b, u). */
START_TEST(two_backwards_accumulate)
{
    params d, e;
    params_make(&d, 3);
    params_make(&e, 3);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    backward(t, &d, 30, true, false);
    backward(t, &e, 30, true, false);
    zero_all(&d, true);
    zero_all(&e, false);
    for (uint64_t s = 31; s < 33; s++) {
        backward(t, &d, s, true, false);
        backward(t, &e, s, true, false);
    }
    same_grad(d.w, e.w);
    same_grad(d.b, e.b);
    same_grad(d.u, e.u);
    /* and the sum is not the last backward's alone */
    params f;
    params_make(&f, 3);
    backward(t, &f, 32, true, false);
    ck_assert(ot_at(ad_tensor_grad(f.w), 0) != ot_at(ad_tensor_grad(d.w), 0));
    params_free(&f);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    params_free(&d);
    params_free(&e);
}
END_TEST

/* The larger buffer given to ad_set_grad is not a handle of the gradient:
 * after ad_zero_grad_deferred it keeps its stale values where backward did
 * not write until ad_tensor_grad of the leaf is called, which zeroes that
 * leaf's part; where backward wrote, it holds the new gradient. */
START_TEST(bucket_views_settle_on_ad_tensor_grad)
{
    params d, e;
    params_make(&d, 4);
    params_make(&e, 4);
    int64_t nw = OUT * IN, n = nw + OUT + IN;
    ad_tensor *flat = ad_zeros(NULL, AD_FLOAT64, 1, &n);
    ad_tensor *vw0 = ad_narrow(flat, 0, 0, nw), *vw = ad_reshape(vw0, 2, (int64_t[]){OUT, IN});
    ad_tensor *vb = ad_narrow(flat, 0, nw, OUT), *vu = ad_narrow(flat, 0, nw + OUT, IN);
    ad_tensor_free(vw0);
    ck_assert_int_eq(ad_set_grad(d.w, vw), 0);
    ck_assert_int_eq(ad_set_grad(d.b, vb), 0);
    ck_assert_int_eq(ad_set_grad(d.u, vu), 0);
    const double *f = ad_data(flat);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    backward(t, &d, 40, true, false);
    backward(t, &e, 40, true, false);
    double stale_u = f[nw + OUT];
    ck_assert(stale_u != 0);
    zero_all(&d, true);
    zero_all(&e, false);
    backward(t, &d, 41, false, false); /* u not reached */
    backward(t, &e, 41, false, false);
    ck_assert(f[nw + OUT] == stale_u); /* not yet: the flat buffer is no handle of u's */
    ck_assert(all_zero(ad_tensor_grad(d.u)));
    for (int i = 0; i < IN; i++) ck_assert(f[nw + OUT + i] == 0);
    const double *gw = ad_data(ad_tensor_grad(e.w)), *gb = ad_data(ad_tensor_grad(e.b));
    for (int i = 0; i < nw; i++) ck_assert(f[i] == gw[i]);
    for (int i = 0; i < OUT; i++) ck_assert(f[nw + i] == gb[i]);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    params_free(&d);
    params_free(&e);
    ad_tensor_free(flat);
}
END_TEST

/* AD_CREATE_GRAPH after a deferred zero_grad: the recorded gradient is the
 * new one (the stale buffer counts as zeros), and its second derivative
 * too. */
START_TEST(create_graph_after_deferred_zero)
{
    ad_tensor *x = ad_leaf(NULL, AD_FLOAT64, 1, (int64_t[]){2}, (double[]){1.5, -2});
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *y = ad_sum(ad_mul(ad_mul(x, x), x), NULL, 0, false); /* sum x^3 */
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);                    /* 3 x^2 */
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert_int_eq(ad_zero_grad_deferred(x), 0);
    y = ad_sum(ad_mul(ad_mul(x, x), x), NULL, 0, false);
    ck_assert_int_eq(ad_backward(y, NULL, AD_CREATE_GRAPH), 0);
    ad_tensor *g = ad_tensor_grad(x);
    ck_assert_double_eq(ot_at(g, 0), 3 * 1.5 * 1.5);
    ck_assert_double_eq(ot_at(g, 1), 3 * 4.0);
    ad_tensor *gx;
    ck_assert_int_eq(ad_gradients(ad_sum(g, NULL, 0, false), NULL, 1, (ad_tensor *[]){x}, &gx, 0), 0);
    ck_assert_double_eq(ot_at(gx, 0), 6 * 1.5); /* d/dx 3 x^2 */
    ck_assert_double_eq(ot_at(gx, 1), 6 * -2.0);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(x);
}
END_TEST

/* Without an owned buffer ad_zero_grad_deferred is ad_zero_grad: nothing
 * to do with none, a recorded gradient dropped; NULL is an error. */
START_TEST(other_gradients_and_errors)
{
    ad_tensor *x = ad_leaf(NULL, AD_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
    ck_assert_int_eq(ad_zero_grad_deferred(x), 0);
    ck_assert_ptr_null(ad_tensor_grad(x));
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *y = ad_sum(ad_mul(x, x), NULL, 0, false);
    ck_assert_int_eq(ad_backward(y, NULL, AD_CREATE_GRAPH), 0);
    ck_assert_ptr_nonnull(ad_tensor_grad(x));
    ck_assert_int_eq(ad_zero_grad_deferred(x), 0);
    ck_assert_ptr_null(ad_tensor_grad(x));
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(x);
    ck_assert_error_rc(ad_zero_grad_deferred(NULL), "ad_zero_grad_deferred: argument 't' is NULL");
}
END_TEST

/* ---- the trainer ------------------------------------------------------- */

enum { N = 100, BATCH = 16, UNUSED = 5 };

/* Three clusters in the plane (test_trainer.c's data). */
static void cluster_data(ad_tensor **x, ad_tensor **y)
{
    ad_rng rng;
    ad_rng_init(&rng, 7);
    float xv[N * 2];
    int64_t yv[N];
    for (int i = 0; i < N; i++) {
        yv[i] = i % 3;
        double a = 2.0943951 * (double)yv[i];
        xv[2 * i] = (float)(cos(a) + 0.3 * (ad_rng_uniform(&rng) - 0.5));
        xv[2 * i + 1] = (float)(sin(a) + 0.3 * (ad_rng_uniform(&rng) - 0.5));
    }
    *x = ad_from_array(NULL, AD_FLOAT32, 2, (int64_t[]){N, 2}, xv);
    *y = ad_from_array(NULL, AD_INT64, 1, (int64_t[]){N}, yv);
    ck_assert(*x && *y);
}

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
 * each mode) end with the bits of a loop that zeroes with
 * nn_optim_zero_grad, and between steps the gradient of the parameter no
 * step reaches is zero in its buffer, read through a pointer taken before
 * training (the trainer settles the deferred zeroing right after backward). */
START_TEST(trainer_matches_an_eager_loop)
{
    static const struct { int threads; nn_thread_mode mode; } runs[] = {
        {1, NN_THREADS_AUTO}, {2, NN_THREADS_OPS}, {2, NN_THREADS_BATCH}};
    const int r = _i;
    ad_tensor *x, *y;
    cluster_data(&x, &y);
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
    Suite *s = suite_create("zero_grad");
    TCase *tc = tcase_create("zero_grad");
    tcase_add_test(tc, partial_backwards_match_eager);
    tcase_add_test(tc, read_between_zero_grad_and_backward);
    tcase_add_test(tc, two_backwards_accumulate);
    tcase_add_test(tc, bucket_views_settle_on_ad_tensor_grad);
    tcase_add_test(tc, create_graph_after_deferred_zero);
    tcase_add_test(tc, other_gradients_and_errors);
    tcase_add_loop_test(tc, trainer_matches_an_eager_loop, 0, 3);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

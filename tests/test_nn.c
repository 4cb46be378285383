/* tests/test_nn.c - modules, initialisers, losses and training helpers of
 * the nn layer (nn/module.h, init.h, loss.h, train.h): parameter names and
 * counts, layer values by hand, initialiser statistics, train/eval
 * switching, the summary, every loss against hand-computed values and
 * gradients, a network learning XOR, and bad inputs. */
#include <nn/nn.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static const double LN3 = 1.0986122886681098;

static void ok(int rc) { ck_assert_msg(rc == 0, "%s", ad_error()); }
static void nonnull(const void *p) { ck_assert_msg(p != NULL, "%s", ad_error()); }

/* Everything written to f, as a string the caller frees. */
static char *slurp(FILE *f)
{
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), n);
    fclose(f);
    return s;
}

static void has(const char *s, const char *needle)
{
    ck_assert_msg(strstr(s, needle) != NULL, "'%s' not found in:\n%s", needle, s);
}

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

/* ---- modules: names, counts, ownership --------------------------------------------- */

START_TEST(mlp_parameters)
{
    ad_rng rng;
    ad_rng_init(&rng, 1);
    nn_module *m = NN_SEQUENTIAL(nn_linear(784, 256, true, AD_FLOAT32, &rng), nn_relu(),
                                 nn_linear(256, 10, true, AD_FLOAT32, &rng));
    nonnull(m);
    /* 784*256 + 256 + 256*10 + 10 */
    ck_assert_int_eq(nn_num_parameters(m), 203530);
    nn_named_tensors *p = nn_parameters(m);
    nonnull(p);
    ck_assert_int_eq(p->n, 4);
    const char *names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    const int64_t rows[4] = {256, 256, 10, 10};
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(p->names[i], names[i]);
        ck_assert_str_eq(ad_label(p->tensors[i]), names[i]);
        ck_assert_int_eq(ad_size(p->tensors[i], 0), rows[i]);
        ck_assert(ad_requires_grad(p->tensors[i]));
        ck_assert_ptr_null(ad_tensor_tape(p->tensors[i]));
    }
    ck_assert_int_eq(ad_size(p->tensors[0], 1), 784); /* W [out, in] as PyTorch */
    ck_assert_ptr_eq(nn_get_parameter(m, "2.bias"), p->tensors[3]);
    nn_named_tensors *b = nn_buffers(m), *sd = nn_state_dict(m);
    ck_assert_int_eq(b->n, 0);
    ck_assert_int_eq(sd->n, 4);
    nn_named_tensors_free(b);
    nn_named_tensors_free(sd);
    nn_named_tensors_free(p);
    ck_assert_int_eq(nn_num_children(m), 3);
    ck_assert_str_eq(nn_child_name(m, 1), "1");
    ck_assert_str_eq(nn_module_type_name(nn_child(m, 1)), "ReLU");
    ck_assert_ptr_null(nn_child(m, 3));
    /* forward: [5, 784] -> [5, 10], on the active tape */
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *x = ad_zeros(NULL, AD_FLOAT32, 2, (int64_t[]){5, 784});
    ad_tensor *y = nn_forward(m, x);
    nonnull(y);
    ck_assert_int_eq(ad_size(y, 0), 5);
    ck_assert_int_eq(ad_size(y, 1), 10);
    ck_assert_ptr_eq(ad_tensor_tape(y), t);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

START_TEST(nested_names_and_buffers)
{
    ad_rng rng;
    ad_rng_init(&rng, 2);
    nn_module *m = NN_SEQUENTIAL(
        nn_conv2d(1, 4, (int[]){3, 3}, &(ad_conv2d_params){.padding = {1, 1}}, true, AD_FLOAT64,
                  &rng),
        nn_batch_norm2d(4, 1e-5, 0.1, true, AD_FLOAT64),
        NN_SEQUENTIAL(nn_flatten(1, -1), nn_linear(4 * 5 * 5, 3, false, AD_FLOAT64, &rng)));
    nonnull(m);
    nn_named_tensors *p = nn_parameters(m), *b = nn_buffers(m), *sd = nn_state_dict(m);
    const char *pn[] = {"0.weight", "0.bias", "1.weight", "1.bias", "2.1.weight"};
    ck_assert_int_eq(p->n, 5);
    for (int i = 0; i < 5; i++) ck_assert_str_eq(p->names[i], pn[i]);
    const char *bn[] = {"1.running_mean", "1.running_var", "1.num_batches_tracked"};
    ck_assert_int_eq(b->n, 3);
    for (int i = 0; i < 3; i++) ck_assert_str_eq(b->names[i], bn[i]);
    ck_assert_int_eq(ad_tensor_dtype(b->tensors[2]), AD_INT64);
    /* state_dict: per module, parameters then buffers, then children */
    const char *sn[] = {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                        "1.running_var", "1.num_batches_tracked", "2.1.weight"};
    ck_assert_int_eq(sd->n, 8);
    for (int i = 0; i < 8; i++) ck_assert_str_eq(sd->names[i], sn[i]);
    ck_assert_str_eq(ad_label(nn_get_parameter(m, "2.1.weight")), "2.1.weight");
    ck_assert_ptr_eq(nn_get_buffer(m, "1.running_var"), b->tensors[1]);
    /* conv weight [4, 1, 3, 3], default init within 1/sqrt(fan_in) = 1/3 */
    ad_tensor *w = p->tensors[0];
    ck_assert_int_eq(ad_ndim(w), 4);
    ck_assert_int_eq(ad_size(w, 0), 4);
    ck_assert_int_eq(ad_size(w, 2), 3);
    for (int64_t i = 0; i < ad_numel(w); i++) ck_assert(fabs(ot_at(w, i)) <= 1.0 / 3);
    ck_assert_int_eq(nn_num_parameters(m), 4 * 9 + 4 + 4 + 4 + 100 * 3);
    nn_named_tensors_free(p);
    nn_named_tensors_free(b);
    nn_named_tensors_free(sd);
    /* Append, print */
    ok(nn_sequential_append(m, nn_log_softmax(1)));
    ck_assert_int_eq(nn_num_children(m), 4);
    FILE *f = tmpfile();
    ok(nn_module_print(m, f));
    char *s = slurp(f);
    has(s, "Sequential(\n  (0): Conv2d(1, 4, kernel=3x3, stride=1x1, padding=1x1)\n");
    has(s, "  (1): BatchNorm2d(4, eps=1e-05, momentum=0.1)\n");
    has(s, "  (2): Sequential(\n    (0): Flatten(start_dim=1, end_dim=-1)\n");
    has(s, "    (1): Linear(100, 3, bias=false)\n  )\n  (3): LogSoftmax(dim=1)\n)\n");
    free(s);
    nn_module_free(m);
}
END_TEST

START_TEST(linear_by_hand)
{
    ad_rng rng;
    ad_rng_init(&rng, 3);
    nn_module *lin = nn_linear(3, 2, true, AD_FLOAT64, &rng);
    ad_tensor *w = nn_get_parameter(lin, "weight"), *b = nn_get_parameter(lin, "bias");
    ad_tape *t = ad_tape_new();
    ok(ad_copy_into(w, f64(t, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, -1, 0, 1})));
    ok(ad_copy_into(b, f64(t, 1, (int64_t[]){2}, (double[]){0.5, -0.5})));
    /* y = x W^T + b for x = [[1,1,1],[2,0,-1]]:
     *   row 0: [1+2+3, -1+0+1] + b = [6.5, -0.5]
     *   row 1: [2+0-3, -2+0-1] + b = [-0.5, -3.5] */
    ad_tensor *x = f64(t, 2, (int64_t[]){2, 3}, (double[]){1, 1, 1, 2, 0, -1});
    ad_tensor *y = nn_forward(lin, x);
    nonnull(y);
    ck_assert_ptr_eq(ad_tensor_tape(y), t); /* on x's tape, though none is active */
    const double want[4] = {6.5, -0.5, -0.5, -3.5};
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(y, i), want[i], 1e-15);
    /* E = sum y: dE/dW[o, i] = sum_n x[n, i] = [3, 1, 0] for each o,
     * dE/db = N = 2 */
    backward(ad_sum(y, NULL, 0, false));
    ad_tensor *gw = ad_tensor_grad(w), *gb = ad_tensor_grad(b);
    const double gwant[6] = {3, 1, 0, 3, 1, 0};
    for (int i = 0; i < 6; i++) ck_assert_close(ot_at(gw, i), gwant[i], 1e-15);
    ck_assert_close(ot_at(gb, 0), 2, 0);
    ck_assert_close(ot_at(gb, 1), 2, 0);
    ad_tape_free(t);
    nn_module_free(lin);
}
END_TEST

START_TEST(default_init_is_seeded)
{
    ad_rng r1, r2, r3;
    ad_rng_init(&r1, 42);
    ad_rng_init(&r2, 42);
    ad_rng_init(&r3, 43);
    nn_module *a = nn_linear(50, 20, true, AD_FLOAT64, &r1);
    nn_module *b = nn_linear(50, 20, true, AD_FLOAT64, &r2);
    nn_module *c = nn_linear(50, 20, true, AD_FLOAT64, &r3);
    ad_tensor *wa = nn_get_parameter(a, "weight"), *wb = nn_get_parameter(b, "weight");
    ad_tensor *wc = nn_get_parameter(c, "weight"), *ba = nn_get_parameter(a, "bias");
    double bound = 1 / sqrt(50.0), maxabs = 0;
    int differ = 0;
    for (int64_t i = 0; i < 1000; i++) {
        ck_assert_close(ot_at(wa, i), ot_at(wb, i), 0);
        differ += ot_at(wa, i) != ot_at(wc, i);
        maxabs = fmax(maxabs, fabs(ot_at(wa, i)));
    }
    ck_assert_int_gt(differ, 990);
    ck_assert(maxabs <= bound && maxabs > 0.9 * bound);
    for (int64_t i = 0; i < 20; i++) ck_assert(fabs(ot_at(ba, i)) <= bound);
    nn_module_free(a);
    nn_module_free(b);
    nn_module_free(c);
}
END_TEST

/* A module of our own: y = scale * inner(x), with the inner Linear as a
 * child and one parameter of its own. */
typedef struct scaled_state {
    double scale;
} scaled_state;

static ad_tensor *scaled_forward(nn_module *m, ad_tensor *x)
{
    scaled_state *s = nn_module_state(m);
    ad_tensor *y = nn_forward(nn_child(m, 0), x);
    return ad_mul(ad_mul_scalar(y, s->scale), nn_get_parameter(m, "gain"));
}

static void scaled_describe(const nn_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "scale=%g", ((scaled_state *)nn_module_state(m))->scale);
}

static const nn_module_type SCALED = {"Scaled", scaled_forward, free, scaled_describe};

START_TEST(custom_module)
{
    ad_rng rng;
    ad_rng_init(&rng, 4);
    scaled_state *st = malloc(sizeof *st);
    st->scale = 2;
    nn_module *m = nn_module_new(&SCALED, st);
    nonnull(m);
    ok(nn_module_add_child(m, "inner", nn_linear(2, 2, false, AD_FLOAT64, &rng)));
    ok(nn_module_add_parameter(m, "gain", ad_full(NULL, AD_FLOAT64, 1, (int64_t[]){2}, 3)));
    nn_named_tensors *p = nn_parameters(m);
    ck_assert_int_eq(p->n, 2);
    ck_assert_str_eq(p->names[0], "gain");
    ck_assert_str_eq(p->names[1], "inner.weight");
    nn_named_tensors_free(p);
    ad_tape *t = ad_tape_new();
    ok(ad_copy_into(nn_get_parameter(m, "inner.weight"),
                    f64(t, 2, (int64_t[]){2, 2}, (double[]){1, 0, 0, 1})));
    ad_tensor *y = nn_forward(m, f64(t, 1, (int64_t[]){2}, (double[]){1, -1}));
    nonnull(y);
    ck_assert_close(ot_at(y, 0), 6, 0);
    ck_assert_close(ot_at(y, 1), -6, 0);
    char d[64];
    nn_module_describe(m, d, sizeof d);
    ck_assert_str_eq(d, "Scaled(scale=2)");
    /* duplicate and malformed names; the refused tensor/module is freed */
    ck_assert_error_rc(nn_module_add_parameter(m, "gain", ad_zeros(NULL, AD_FLOAT64, 0, NULL)),
                       "nn_module_add_parameter: Scaled already has a parameter, buffer or "
                       "child called 'gain'");
    ck_assert_error_rc(nn_module_add_child(m, "a.b", nn_relu()), "contains '.'");
    ck_assert_error_rc(nn_module_add_parameter(m, "i", ad_zeros(NULL, AD_INT64, 0, NULL)),
                       "parameter 'i' must be float32 or float64, got int64");
    ad_tensor *on_tape = ad_zeros(t, AD_FLOAT64, 0, NULL);
    ck_assert_error_rc(nn_module_add_buffer(m, "b", on_tape), "'b' is on a tape");
    ck_assert_error_rc(nn_module_add_child(m, "self", m), "would make a cycle");
    ck_assert_error_rc(nn_module_add_child(m, "again", nn_child(m, 0)),
                       "already is child 'inner'");
    ck_assert_error(nn_get_parameter(m, "inner.bias"), "the Scaled has no parameter called "
                                                       "'inner.bias'");
    ck_assert_error(nn_get_buffer(m, "x.y.z"), "no buffer called 'x.y.z'");
    ad_tape_free(t);
    nn_module_free(m);
}
END_TEST

/* ---- layers ---------------------------------------------------------------------------- */

START_TEST(layer_norm_and_embedding)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    ad_tape *t = ad_tape_new();
    nn_module *ln = nn_layer_norm(1, (int64_t[]){4}, 1e-5, true, AD_FLOAT64);
    nonnull(ln);
    ad_tensor *y = nn_forward(ln, f64(t, 2, (int64_t[]){2, 4}, (double[]){1, 2, 3, 4, -5, 0, 5, 10}));
    nonnull(y);
    for (int r = 0; r < 2; r++) {
        double s = 0, ss = 0;
        for (int i = 0; i < 4; i++) s += ot_at(y, r * 4 + i);
        for (int i = 0; i < 4; i++) ss += ot_at(y, r * 4 + i) * ot_at(y, r * 4 + i);
        ck_assert_close(s / 4, 0, 1e-12);
        ck_assert_close(ss / 4, 1, 1e-4); /* eps 1e-5 in the denominator */
    }
    ck_assert_error(nn_forward(ln, f64(t, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6})),
                    "input [2,3] does not end in the normalized shape [4]");
    nn_module *ln2 = nn_layer_norm(1, (int64_t[]){4}, 1e-5, false, AD_FLOAT64);
    ck_assert_int_eq(nn_num_parameters(ln2), 0);
    ck_assert_int_eq(nn_num_parameters(ln), 8);
    nn_module *emb = nn_embedding(5, 3, AD_FLOAT64, &rng);
    ad_tensor *w = nn_get_parameter(emb, "weight");
    ad_tensor *idx = ot_index(t, 2, (int64_t[]){2, 2}, (int64_t[]){4, 1, 1, 0});
    ad_tensor *e = nn_forward(emb, idx);
    nonnull(e);
    ck_assert_int_eq(ad_ndim(e), 3);
    ck_assert_int_eq(ad_size(e, 2), 3);
    for (int d = 0; d < 3; d++) {
        ck_assert_close(ot_at(e, d), ot_at(w, 4 * 3 + d), 0);
        ck_assert_close(ot_at(e, 3 + d), ot_at(w, 3 + d), 0);
    }
    nn_module_free(ln);
    nn_module_free(ln2);
    nn_module_free(emb);
    ad_tape_free(t);
}
END_TEST

START_TEST(activations)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = f64(t, 1, (int64_t[]){3}, (double[]){-1, 0, 2});
    nn_module *ms[7] = {nn_relu(), nn_tanh(), nn_sigmoid(), nn_gelu(), nn_leaky_relu(0.1),
                        nn_softmax(0), nn_log_softmax(-1)};
    double z = exp(-1) + 1 + exp(2);
    const double want[7][3] = {
        {0, 0, 2},
        {tanh(-1), 0, tanh(2)},
        {1 / (1 + exp(1)), 0.5, 1 / (1 + exp(-2))},
        {-0.5 * erfc(1 / sqrt(2)), 0, 2 * 0.5 * erfc(-2 / sqrt(2))},
        {-0.1, 0, 2},
        {exp(-1) / z, 1 / z, exp(2) / z},
        {-1 - log(z), -log(z), 2 - log(z)},
    };
    for (int k = 0; k < 7; k++) {
        nonnull(ms[k]);
        ad_tensor *y = nn_forward(ms[k], x);
        nonnull(y);
        for (int i = 0; i < 3; i++) ck_assert_close(ot_at(y, i), want[k][i], 1e-15);
        ck_assert_int_eq(nn_num_parameters(ms[k]), 0);
        nn_module_free(ms[k]);
    }
    ad_tape_free(t);
}
END_TEST

/* ---- train / eval ------------------------------------------------------------------------- */

START_TEST(dropout_modes)
{
    ad_rng rng;
    ad_rng_init(&rng, 6);
    nn_module *m = NN_SEQUENTIAL(nn_dropout(0.5, 123), nn_dropout(0.5, 123));
    nonnull(m);
    ck_assert(nn_is_training(m) && nn_is_training(nn_child(m, 1)));
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_ones(t, AD_FLOAT64, 1, (int64_t[]){1000});
    /* Two modules seeded alike draw the same mask. */
    ad_tensor *a = nn_forward(nn_child(m, 0), x), *b = nn_forward(nn_child(m, 1), x);
    nonnull(a);
    nonnull(b);
    int zeros = 0;
    for (int64_t i = 0; i < 1000; i++) {
        double v = ot_at(a, i);
        ck_assert(v == 0 || v == 2); /* survivors scaled by 1/(1-p) */
        zeros += v == 0;
        ck_assert_close(ot_at(b, i), v, 0);
    }
    ck_assert_int_gt(zeros, 430);
    ck_assert_int_lt(zeros, 570);
    /* The next call draws a new mask. */
    ad_tensor *a2 = nn_forward(nn_child(m, 0), x);
    int same = 0;
    for (int64_t i = 0; i < 1000; i++) same += ot_at(a2, i) == ot_at(a, i);
    ck_assert_int_lt(same, 600);
    /* eval propagates to the children: identity, x itself */
    ok(nn_eval(m));
    ck_assert(!nn_is_training(nn_child(m, 0)) && !nn_is_training(nn_child(m, 1)));
    ck_assert_ptr_eq(nn_forward(m, x), x);
    ok(nn_train(m, true));
    ck_assert(nn_is_training(nn_child(m, 1)));
    ad_tape_free(t);
    nn_module_free(m);
    ck_assert_error(nn_dropout(1.5, 0), "nn_dropout: p must be in [0, 1], got 1.5");
}
END_TEST

START_TEST(batch_norm_modes)
{
    nn_module *bn = nn_batch_norm2d(1, 1e-5, 0.1, true, AD_FLOAT64);
    nonnull(bn);
    ad_tape *t = ad_tape_new();
    ad_tensor *x = f64(t, 4, (int64_t[]){2, 1, 1, 2}, (double[]){1, 2, 3, 4});
    /* training: batch mean 2.5, biased variance 1.25 */
    ad_tensor *y = nn_forward(bn, x);
    nonnull(y);
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(y, i), (i + 1 - 2.5) / sqrt(1.25 + 1e-5), 1e-12);
    /* running stats: 0.9 * 0 + 0.1 * 2.5 and 0.9 * 1 + 0.1 * (1.25 * 4/3) (unbiased) */
    double rm = 0.25, rv = 0.9 + 0.1 * 1.25 * 4 / 3;
    ck_assert_close(ot_at(nn_get_buffer(bn, "running_mean"), 0), rm, 1e-15);
    ck_assert_close(ot_at(nn_get_buffer(bn, "running_var"), 0), rv, 1e-15);
    ck_assert_close(ad_item(nn_get_buffer(bn, "num_batches_tracked")), 1, 0);
    /* eval: the running statistics, and no update */
    ok(nn_eval(bn));
    y = nn_forward(bn, x);
    nonnull(y);
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(y, i), (i + 1 - rm) / sqrt(rv + 1e-5), 1e-12);
    ck_assert_close(ot_at(nn_get_buffer(bn, "running_mean"), 0), rm, 1e-15);
    ck_assert_close(ad_item(nn_get_buffer(bn, "num_batches_tracked")), 1, 0);
    ck_assert_error(nn_forward(bn, f64(t, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4})),
                    "nn_forward: BatchNorm2d(1, eps=1e-05, momentum=0.1): nn_batch_norm2d: "
                    "expected input [N, 1, H, W], got [2,2]");
    ad_tape_free(t);
    nn_module_free(bn);
}
END_TEST

/* ---- summary -------------------------------------------------------------------------- */

START_TEST(summary_shapes)
{
    ad_rng rng;
    ad_rng_init(&rng, 8);
    nn_module *m = NN_SEQUENTIAL(nn_linear(784, 256, true, AD_FLOAT32, &rng), nn_relu(),
                                 nn_linear(256, 10, true, AD_FLOAT32, &rng));
    FILE *f = tmpfile();
    ok(nn_summary(m, 2, (int64_t[]){1, 784}, f));
    char *s = slurp(f);
    has(s, "Sequential()");
    has(s, "  0: Linear(784, 256)");
    has(s, "[1,256]");
    has(s, "200,960");
    has(s, "  2: Linear(256, 10)");
    has(s, "[1,10]");
    has(s, "Total params: 203,530");
    has(s, "Input: [1,784] float32");
    free(s);
    nn_module_free(m);

    /* a CNN with BatchNorm and Dropout: shapes flow, nothing changes */
    m = NN_SEQUENTIAL(nn_conv2d(1, 8, (int[]){3, 3}, &(ad_conv2d_params){.padding = {1, 1}},
                                true, AD_FLOAT32, &rng),
                      nn_batch_norm2d(8, 1e-5, 0.1, true, AD_FLOAT32), nn_relu(),
                      nn_max_pool2d((int[]){2, 2}, NULL, NULL), nn_dropout(0.5, 1),
                      nn_flatten(1, -1), nn_linear(8 * 14 * 14, 10, true, AD_FLOAT32, &rng));
    nonnull(m);
    ok(nn_eval(nn_child(m, 4))); /* a mixed mode, to check it is restored */
    f = tmpfile();
    ok(nn_summary(m, 4, (int64_t[]){2, 1, 28, 28}, f));
    s = slurp(f);
    has(s, "[2,8,28,28]");
    has(s, "[2,8,14,14]");
    has(s, "[2,1568]");
    has(s, "[2,10]");
    has(s, "Buffer elements: 17"); /* 8 + 8 + 1 */
    free(s);
    ck_assert_close(ad_item(nn_get_buffer(m, "1.num_batches_tracked")), 0, 0);
    ck_assert_close(ot_at(nn_get_buffer(m, "1.running_mean"), 0), 0, 0);
    ck_assert(nn_is_training(m) && nn_is_training(nn_child(m, 1)));
    ck_assert(!nn_is_training(nn_child(m, 4)));
    /* a shape that does not fit */
    ck_assert_error_rc(nn_summary(m, 4, (int64_t[]){2, 3, 28, 28}, stdout),
                       "nn_forward: layer '0' Conv2d");
    ck_assert_error_rc(nn_summary(m, 0, NULL, stdout), "ndim must be 1..8, got 0");
    nn_module_free(m);

    /* an Embedding first: int64 indices */
    m = NN_SEQUENTIAL(nn_embedding(10, 4, AD_FLOAT64, &rng), nn_flatten(1, -1));
    f = tmpfile();
    ok(nn_summary(m, 2, (int64_t[]){3, 5}, f));
    s = slurp(f);
    has(s, "[3,5,4]");
    has(s, "[3,20]");
    has(s, "Input: [3,5] int64");
    free(s);
    nn_module_free(m);
}
END_TEST

/* ---- forward without a tape ------------------------------------------------------------ */

START_TEST(forward_without_tape)
{
    ad_rng rng;
    ad_rng_init(&rng, 9);
    nn_module *m = NN_SEQUENTIAL(nn_linear(3, 4, true, AD_FLOAT64, &rng), nn_tanh(),
                                 nn_linear(4, 2, true, AD_FLOAT64, &rng));
    ad_tensor *x = ad_ones(NULL, AD_FLOAT64, 2, (int64_t[]){5, 3});
    /* grad mode on, no tape: the gradient would have nowhere to go */
    ck_assert_error(nn_forward(m, x), "nn_forward: no tape to record on");
    /* inference: a persistent result, the intermediates freed */
    bool g = ad_set_grad_enabled(false);
    ad_tensor *y = nn_forward(m, x);
    nonnull(y);
    ck_assert_ptr_null(ad_tensor_tape(y));
    ck_assert_int_eq(ad_size(y, 1), 2);
    ad_tensor *l = nn_mse_loss(y, y, NN_HALF_SUM);
    nonnull(l);
    ck_assert_close(ad_item(l), 0, 0);
    ad_tensor_free(l);
    ad_tensor_free(y);
    ad_set_grad_enabled(g);
    /* wrong features, named with the layer */
    ad_tensor *bad = ad_ones(NULL, AD_FLOAT64, 2, (int64_t[]){5, 7});
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ck_assert_error(nn_forward(m, bad),
                    "nn_forward: layer '0' Linear(3, 4): nn_linear: input has 7 features (x "
                    "[5,7]) but the layer expects 3");
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(bad);
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

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
    ck_assert_error_rc(nn_init_ones(NULL), "nn_init_constant: argument 't' is NULL");
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

/* ---- end to end: XOR ------------------------------------------------------------------ */

START_TEST(xor_learns)
{
    ad_rng rng;
    ad_rng_init(&rng, 0);
    nn_module *net = NN_SEQUENTIAL(nn_linear(2, 8, true, AD_FLOAT64, &rng), nn_tanh(),
                                   nn_linear(8, 1, true, AD_FLOAT64, &rng));
    nonnull(net);
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){4, 2},
                                 (double[]){0, 0, 0, 1, 1, 0, 1, 1});
    ad_tensor *y = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){4, 1}, (double[]){0, 1, 1, 0});
    nn_named_tensors *p = nn_parameters(net);
    nn_optim *opt = nn_sgd(p, &(nn_sgd_options){.lr = 0.2});
    nn_named_tensors_free(p);
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    double loss = INFINITY;
    int epoch;
    for (epoch = 0; epoch < 5000 && loss >= 0.01; epoch++) {
        ok(nn_optim_zero_grad(opt));
        ad_tensor *l = nn_mse_loss(nn_forward(net, x), y, NN_MEAN);
        backward(l);
        loss = ad_item(l);
        ok(nn_optim_step(opt)); /* w <- w - 0.2 dE/dw */
        ok(ad_tape_reset(tape));
    }
    ck_assert_msg(loss < 0.01, "XOR loss %g after %d epochs", loss, epoch);
    /* and it classifies all four points */
    ad_tensor *out = nn_forward(net, x);
    for (int i = 0; i < 4; i++) ck_assert_close(ot_at(out, i), ot_at(y, i), 0.3);
    ad_tape_activate(NULL);
    ad_tape_free(tape);
    nn_optim_free(opt);
    ad_tensor_free(x);
    ad_tensor_free(y);
    nn_module_free(net);
}
END_TEST

/* ---- training helpers ------------------------------------------------------------------ */

START_TEST(progress_bar)
{
    FILE *f = tmpfile();
    nn_progress *p = nn_progress_new(f, &(nn_progress_options){.mode = NN_PROGRESS_LINES});
    nonnull(p);
    ok(nn_progress_begin(p, 1, 3, 20));
    for (int i = 1; i <= 20; i++) ok(nn_progress_update(p, i, i <= 10 ? 1.0 : 0.0, 8));
    ck_assert_close(nn_progress_mean_loss(p), 0.5, 0);
    ok(nn_progress_end(p, "acc %.2f%%", 90.0));
    char *s = slurp(f);
    int lines = 0;
    for (const char *c = s; *c; c++) lines += *c == '\n';
    ck_assert_int_eq(lines, 11); /* every 2nd of 20 batches, and the end */
    has(s, "epoch 1/3 2/20 loss 1.0000");
    has(s, "epoch 1/3 20/20 loss 0.5000");
    has(s, "samples/s ETA");
    has(s, "epoch 1/3 done: loss 0.5000,");
    has(s, " | acc 90.00%\n");
    ck_assert_ptr_null(strchr(s, '\r'));
    free(s);
    nn_progress_free(p);
    /* redraw mode: '\r' and the bar */
    f = tmpfile();
    p = nn_progress_new(f, &(nn_progress_options){.mode = NN_PROGRESS_REDRAW, .width = 10});
    ok(nn_progress_begin(p, 2, 0, 4));
    for (int i = 1; i <= 4; i++) ok(nn_progress_update(p, i, 0.25, 1));
    ok(nn_progress_end(p, NULL));
    s = slurp(f);
    has(s, "\repoch 2 [");
    has(s, "epoch 2 [==========] 4/4 loss 0.2500");
    has(s, "\repoch 2 done: loss 0.2500");
    free(s);
    nn_progress_free(p);
    ck_assert_error(nn_progress_new(NULL, NULL), "nn_progress_new: argument 'out' is NULL");
    ck_assert_error(nn_progress_new(stdout, &(nn_progress_options){.width = -1}), "width");
}
END_TEST

START_TEST(confusion_and_evaluate)
{
    ad_tape *t = ad_tape_new();
    nn_confusion *cm = nn_confusion_new(3);
    /* predictions (argmax) 0, 2, 1, 1 (first max on the tie) for labels 0, 1, 1, 2 */
    ad_tensor *logits = f64(t, 2, (int64_t[]){4, 3},
                            (double[]){5, 1, 0, 0, 1, 2, 0, 3, 3, 1, 2, 0});
    ok(nn_confusion_update(cm, logits, ot_index(t, 1, (int64_t[]){4}, (int64_t[]){0, 1, 1, 2})));
    ck_assert_int_eq(cm->counts[0 * 3 + 0], 1);
    ck_assert_int_eq(cm->counts[1 * 3 + 2], 1);
    ck_assert_int_eq(cm->counts[1 * 3 + 1], 1);
    ck_assert_int_eq(cm->counts[2 * 3 + 1], 1);
    ck_assert_int_eq(cm->total, 4);
    ck_assert_close(nn_confusion_accuracy(cm), 0.5, 0);
    ck_assert_close(nn_confusion_recall(cm, 1), 0.5, 0);
    ck_assert_close(nn_confusion_recall(cm, 2), 0, 0);
    FILE *f = tmpfile();
    ok(nn_confusion_print(cm, (const char *[]){"cat", "dog", "bird"}, f));
    char *s = slurp(f);
    has(s, "true\\pred");
    has(s, "   cat   dog  bird   recall\n");
    has(s, "dog              0     1     1   50.00%\n");
    has(s, "accuracy 50.00% (2/4)\n");
    free(s);
    ck_assert_error_rc(nn_confusion_update(cm, logits, ot_index(t, 1, (int64_t[]){4},
                                                                (int64_t[]){0, 1, 3, 0})),
                       "label 3 at position 2 is out of range for 3 classes");
    ck_assert_int_eq(cm->total, 4); /* nothing counted */
    ck_assert_error_rc(nn_confusion_update(cm, ad_transpose(logits, 0, 1), NULL),
                       "argument 'labels' is NULL");
    nn_confusion_reset(cm);
    ck_assert_int_eq(cm->total, 0);
    ck_assert(isnan(nn_confusion_accuracy(cm)));

    /* nn_evaluate over a loader: W = [[1,0],[0,1],[0,0]], b = 0, so x = [1,0]
     * predicts 0 and x = [0,1] predicts 1; labels 0, 1, 1, 1 -> 3/4 right. */
    ad_rng rng;
    ad_rng_init(&rng, 11);
    nn_module *m = nn_linear(2, 3, true, AD_FLOAT64, &rng);
    ok(ad_copy_into(nn_get_parameter(m, "weight"),
                    f64(t, 2, (int64_t[]){3, 2}, (double[]){1, 0, 0, 1, 0, 0})));
    ok(nn_init_zeros(nn_get_parameter(m, "bias")));
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){4, 2},
                                 (double[]){1, 0, 0, 1, 1, 0, 0, 1});
    ad_tensor *y = ad_from_array(NULL, AD_INT64, 1, (int64_t[]){4}, (int64_t[]){0, 1, 1, 1});
    nn_loader *dl = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 3});
    nonnull(dl);
    double loss;
    for (int pass = 0; pass < 2; pass++) {
        nn_confusion_reset(cm);
        ck_assert_int_eq(nn_evaluate(m, dl, cm, &loss), 4);
        ck_assert_close(nn_confusion_accuracy(cm), 0.75, 0);
        ck_assert_int_eq(cm->counts[1 * 3 + 0], 1);
        /* logsumexp of [1, 0, 0] is log(e + 2); three samples hit their
         * logit of 1, one (label 1 of x = [1,0]) its 0 */
        ck_assert_close(loss, log(exp(1) + 2) - 0.75, 1e-15);
    }
    ck_assert(nn_is_training(m));
    ck_assert(ad_grad_enabled());
    nn_loader_free(dl);
    ad_tensor_free(x);
    ad_tensor_free(y);
    nn_module_free(m);
    nn_confusion_free(cm);
    ck_assert_error(nn_confusion_new(0), "num_classes must be 1..100000, got 0");
    ad_tape_free(t);
}
END_TEST

/* ---- constructor errors ------------------------------------------------------------------ */

START_TEST(constructor_errors)
{
    ad_rng rng;
    ad_rng_init(&rng, 12);
    ck_assert_error(nn_linear(0, 3, true, AD_FLOAT32, &rng),
                    "nn_linear: in_features and out_features must be >= 1, got 0 and 3");
    ck_assert_error(nn_linear(2, 3, true, AD_INT64, &rng),
                    "nn_linear: dtype must be AD_FLOAT32 or AD_FLOAT64, got 2");
    ck_assert_error(nn_linear(2, 3, true, AD_FLOAT32, NULL), "nn_linear: argument 'rng' is NULL");
    ck_assert_error(nn_conv2d(3, 4, (int[]){0, 3}, NULL, true, AD_FLOAT32, &rng),
                    "nn_conv2d: kernel must be >= 1, got 0x3");
    ck_assert_error(nn_conv2d(3, 4, (int[]){3, 3}, &(ad_conv2d_params){.groups = 2}, true,
                              AD_FLOAT32, &rng),
                    "groups 2 must be >= 1 and divide in_channels 3 and out_channels 4");
    ck_assert_error(nn_max_pool2d((int[]){2, 2}, NULL, (int[]){2, 0}),
                    "nn_max_pool2d: need kernel >= 1, stride >= 0 and 0 <= padding <= kernel/2");
    ck_assert_error(nn_avg_pool2d(NULL, NULL, NULL, true), "argument 'kernel' is NULL");
    ck_assert_error(nn_layer_norm(1, (int64_t[]){0}, 1e-5, true, AD_FLOAT32),
                    "normalized_shape[0] must be >= 1, got 0");
    ck_assert_error(nn_batch_norm2d(4, 1e-5, 1.5, true, AD_FLOAT32),
                    "momentum must be in [0, 1], got 1.5");
    ck_assert_error(nn_embedding(0, 4, AD_FLOAT32, &rng), "nn_embedding: num_embeddings");
    ck_assert_error(nn_leaky_relu(NAN), "negative_slope must be finite");
    /* an inner failure makes Sequential fail with the inner message, and
     * the other modules are freed (the sanitizer build checks) */
    ck_assert_error(NN_SEQUENTIAL(nn_relu(), nn_linear(0, 1, true, AD_FLOAT32, &rng), nn_tanh()),
                    "nn_linear: in_features");
    ck_assert_error(nn_sequential(-1, NULL), "nn_sequential: n must be >= 0, got -1");
    ck_assert_error_rc(nn_sequential_append(nn_relu(), nn_tanh()), "seq is a ReLU, not a Sequential");
    ck_assert_error(nn_forward(NULL, NULL), "nn_forward: argument 'm' is NULL");
    ck_assert_int_eq(nn_num_parameters(NULL), -1);
    nn_module *empty = nn_sequential(0, NULL);
    nonnull(empty);
    ad_tensor *x = ad_zeros(NULL, AD_FLOAT32, 1, (int64_t[]){3});
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ck_assert_ptr_eq(nn_forward(empty, x), x);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(x);
    nn_module_free(empty);
    nn_module_free(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("modules");
    tcase_add_test(tc, mlp_parameters);
    tcase_add_test(tc, nested_names_and_buffers);
    tcase_add_test(tc, linear_by_hand);
    tcase_add_test(tc, default_init_is_seeded);
    tcase_add_test(tc, custom_module);
    tcase_add_test(tc, layer_norm_and_embedding);
    tcase_add_test(tc, activations);
    tcase_add_test(tc, dropout_modes);
    tcase_add_test(tc, batch_norm_modes);
    tcase_add_test(tc, summary_shapes);
    tcase_add_test(tc, forward_without_tape);
    tcase_add_test(tc, constructor_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("init");
    tcase_add_test(tc, initialiser_statistics);
    suite_add_tcase(s, tc);
    tc = tcase_create("losses");
    tcase_add_test(tc, regression_losses);
    tcase_add_test(tc, classification_losses);
    tcase_add_test(tc, penalties);
    tcase_add_test(tc, loss_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("training");
    tcase_add_test(tc, xor_learns);
    tcase_add_test(tc, progress_bar);
    tcase_add_test(tc, confusion_and_evaluate);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_nn.c - modules and training helpers of the nn layer
 * (nn/module.h, train.h): parameter names and counts, layer values by hand,
 * train/eval switching, the summary, a network learning XOR, progress bar,
 * confusion matrix and evaluation, and bad inputs.  Initialisers and
 * losses are tested in test_nn_loss.c. */
#include <nn/nn.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

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

/* Sequential runs a Conv2d followed by a ReLU as one op, conv2d_relu:
 * the same output and parameter gradients to the bit as the two layers
 * one after the other (a ReLU wrapped in a Sequential of its own is not
 * fused), and the ReLU layer stays in the tree, its summary and names. */
static void conv_net_run(bool fusable, ad_tensor *x, double *out, double *grads)
{
    ad_rng rng;
    ad_rng_init(&rng, 21);
    nn_module *r1 = nn_relu(), *r2 = nn_relu();
    nn_module *m = NN_SEQUENTIAL(
        nn_conv2d(2, 4, (int[]){3, 3}, &(ad_conv2d_params){.padding = {1, 1}}, true, AD_FLOAT32,
                  &rng),
        fusable ? r1 : NN_SEQUENTIAL(r1), nn_conv2d(4, 3, (int[]){2, 2}, NULL, true, AD_FLOAT32, &rng),
        fusable ? r2 : NN_SEQUENTIAL(r2));
    nonnull(m);
    ad_tensor *y = nn_forward(m, x);
    nonnull(y);
    ok(ad_to_array(y, out));
    backward(ad_sum(ad_mul(y, y), NULL, 0, false));
    nn_named_tensors *p = nn_parameters(m);
    int64_t k = 0;
    for (int i = 0; i < p->n; i++) {
        ok(ad_to_array(ad_tensor_grad(p->tensors[i]), grads + k));
        k += ad_numel(p->tensors[i]);
    }
    ck_assert_int_eq(k, 4 * 2 * 9 + 4 + 3 * 4 * 4 + 3);
    nn_named_tensors_free(p);
    if (fusable) {
        FILE *f = tmpfile();
        ok(ad_graph_dot(f, &y, 1, NULL));
        char *dot = slurp(f);
        has(dot, "conv2d_relu");
        ck_assert_msg(strstr(dot, ": relu") == NULL, "a separate relu recorded:\n%s", dot);
        free(dot);
        ck_assert_str_eq(nn_module_type_name(nn_child(m, 1)), "ReLU");
        f = tmpfile();
        ok(nn_summary(m, 4, (int64_t[]){2, 2, 6, 5}, f));
        char *s = slurp(f);
        has(s, "  1: ReLU()");
        has(s, "  3: ReLU()");
        free(s);
    }
    nn_module_free(m);
}

START_TEST(sequential_fuses_conv_relu)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 22);
    ad_tensor *x = ad_rand(t, &rng, AD_FLOAT32, 4, (int64_t[]){2, 2, 6, 5}, -1, 1);
    enum { NY = 2 * 3 * 5 * 4, NG = 4 * 2 * 9 + 4 + 3 * 4 * 4 + 3 };
    double ya[NY], yb[NY], ga[NG], gb[NG];
    conv_net_run(true, x, ya, ga);
    conv_net_run(false, x, yb, gb);
    int nz = 0;
    for (int i = 0; i < NY; i++) nz += ya[i] == 0;
    ck_assert_msg(nz > 0 && nz < NY, "relu zeroed %d of %d outputs", nz, NY);
    ck_assert(memcmp(ya, yb, sizeof ya) == 0);
    ck_assert(memcmp(ga, gb, sizeof ga) == 0);
    ad_tape_free(t);
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
    /* a tensor the tree owns already (re-added under its own name, or tied
     * by adding it to another module) is refused and left with its owner:
     * freed there, it would be freed twice (ASan in scripts/check sees it) */
    ad_tensor *gain = nn_get_parameter(m, "gain");
    ck_assert_error_rc(nn_module_add_parameter(m, "gain", gain),
                       "'gain' is a tensor the Scaled (a root) owns already");
    ck_assert_int_eq(ad_numel(gain), 2);
    ck_assert_error_rc(nn_module_add_parameter(nn_child(m, 0), "tied", gain),
                       "owns already (left with it)");
    ck_assert_int_eq(ad_numel(gain), 2);
    nn_named_tensors *mp = nn_parameters(m);
    ck_assert_int_eq(mp->n, 2);
    nn_named_tensors_free(mp);
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
    /* Read in place: a transposed (non-contiguous) view of [3, 4] logits and
     * a strided label view give the same counts as the contiguous case;
     * float32 with a NaN predicts the NaN's class. */
    ad_tensor *lt = ad_transpose(f64(t, 2, (int64_t[]){3, 4},
                                     (double[]){5, 0, 0, 1, 1, 1, 3, 2, 0, 2, 3, 0}), 0, 1);
    ad_tensor *lab = ot_index(t, 1, (int64_t[]){8}, (int64_t[]){0, 9, 1, 9, 1, 9, 2, 9});
    ok(nn_confusion_update(cm, lt, ad_slice(lab, 0, 0, 8, 2)));
    ck_assert_int_eq(cm->counts[0 * 3 + 0], 1);
    ck_assert_int_eq(cm->counts[1 * 3 + 2], 1);
    ck_assert_int_eq(cm->counts[1 * 3 + 1], 1);
    ck_assert_int_eq(cm->counts[2 * 3 + 1], 1);
    ck_assert_int_eq(cm->correct, 2);
    ad_tensor *l32 = ad_cast(f64(t, 2, (int64_t[]){1, 3}, (double[]){1, NAN, 9}), AD_FLOAT32);
    ok(nn_confusion_update(cm, l32, ot_index(t, 1, (int64_t[]){1}, (int64_t[]){2})));
    ck_assert_int_eq(cm->counts[2 * 3 + 1], 2);
    ck_assert_int_eq(cm->total, 5);
    nn_confusion_reset(cm);

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
    nn_module *relu = nn_relu();
    ck_assert_error_rc(nn_sequential_append(relu, nn_tanh()), "seq is a ReLU, not a Sequential");
    nn_module_free(relu);
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

/* A cycle is refused with both modules named, and the child - m itself
 * or an ancestor of m - is left whole: the caller frees the root once
 * (the sanitizer build reports a double free or a leak). */
START_TEST(add_child_refuses_cycles)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    nn_module *lin = nn_linear(3, 2, true, AD_FLOAT64, &rng);
    nonnull(lin);
    ck_assert_error_rc(nn_module_add_child(lin, "me", lin),
                       "nn_module_add_child: cannot add the Linear (a root) as child 'me' of "
                       "itself: that would make a cycle");
    ck_assert_int_eq(nn_num_parameters(lin), 8);
    ck_assert_int_eq(nn_num_children(lin), 0);
    nn_module_free(lin);

    nn_module *net = NN_SEQUENTIAL(nn_linear(3, 2, true, AD_FLOAT64, &rng),
                                   NN_SEQUENTIAL(nn_relu(), nn_tanh()));
    nonnull(net);
    nn_module *inner = nn_child(net, 1);
    nonnull(inner);
    ck_assert_error_rc(nn_module_add_child(inner, "up", net),
                       "nn_module_add_child: the Sequential (a root) is an ancestor of the "
                       "Sequential '1': adding it as child 'up' of it would make a cycle");
    ck_assert_error_rc(nn_module_add_child(nn_child(inner, 0), "up", net),
                       "is an ancestor of the ReLU '1.0'");
    /* the same through nn_sequential_append, seq being the child itself */
    ck_assert_error_rc(nn_sequential_append(inner, inner), "as child '2' of itself");
    ck_assert_error_rc(nn_sequential_append(inner, net), "is an ancestor of the Sequential '1'");
    ck_assert_int_eq(nn_num_children(net), 2);
    ck_assert_int_eq(nn_num_children(inner), 2);
    ck_assert_int_eq(nn_num_parameters(net), 8);
    /* a module of another tree stays with that tree */
    nn_module *other = NN_SEQUENTIAL(nn_relu());
    nonnull(other);
    ck_assert_error_rc(nn_module_add_child(net, "x", nn_child(other, 0)),
                       "the ReLU '0' already is child '0' of a Sequential");
    ck_assert_int_eq(nn_num_children(other), 1);
    /* a root that is not an ancestor is taken, and freed with net */
    ok(nn_module_add_child(inner, "other", other));
    ck_assert_int_eq(nn_num_children(inner), 3);
    ck_assert_str_eq(nn_child_name(inner, 2), "other");
    nn_module_free(net);

    /* not a Sequential: m is freed as the header says, unless it is seq
     * itself or an ancestor of seq */
    nn_module *relu = nn_relu();
    ck_assert_error_rc(nn_sequential_append(relu, relu), "seq is a ReLU, not a Sequential");
    ck_assert_str_eq(nn_module_type_name(relu), "ReLU");
    nn_module_free(relu);
    /* one module listed twice: taken once, refused once, freed once */
    nn_module *tanh = nn_tanh();
    ck_assert_error(nn_sequential(2, (nn_module *[]){tanh, tanh}),
                    "the Tanh '0' already is child '0' of a Sequential");
}
END_TEST

/* Accessors that return NULL, NaN or -1 say why in ad_error(), and the
 * initialisers name themselves. */
START_TEST(accessors_set_errors)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    nn_module *net = NN_SEQUENTIAL(nn_linear(2, 2, false, AD_FLOAT64, &rng), nn_relu());
    nonnull(net);
    ad_clear_error();
    ck_assert_ptr_null(nn_child(net, 2));
    ck_assert_str_eq(ad_error(), "nn_child: child 2 out of range: the Sequential has 2 children");
    ad_clear_error();
    ck_assert_ptr_null(nn_child_name(net, -1));
    ck_assert_str_eq(ad_error(),
                     "nn_child_name: child -1 out of range: the Sequential has 2 children");
    ad_clear_error();
    ck_assert_int_eq(nn_num_children(NULL), -1);
    ck_assert_str_eq(ad_error(), "nn_num_children: argument 'm' is NULL");
    ad_clear_error();
    ck_assert_ptr_null(nn_module_type_name(NULL));
    ck_assert_str_eq(ad_error(), "nn_module_type_name: argument 'm' is NULL");
    ad_clear_error();
    ck_assert(!nn_is_training(NULL));
    ck_assert_str_eq(ad_error(), "nn_is_training: argument 'm' is NULL");
    ad_clear_error();
    /* a module without state is not an error */
    ck_assert_ptr_null(nn_module_state(nn_child(net, 1)));
    ck_assert_ptr_null(ad_error());
    ck_assert_ptr_null(nn_module_state(NULL));
    ck_assert_str_eq(ad_error(), "nn_module_state: argument 'm' is NULL");
    ad_clear_error();
    ck_assert(isnan(nn_optim_get_lr(NULL)));
    ck_assert_str_eq(ad_error(), "nn_optim_get_lr: argument 'opt' is NULL");
    ad_clear_error();
    ck_assert_ptr_null(nn_optim_name(NULL));
    ck_assert_str_eq(ad_error(), "nn_optim_name: argument 'opt' is NULL");
    ad_clear_error();
    FILE *pf = tmpfile();
    nn_progress *bar = nn_progress_new(pf, NULL);
    nonnull(bar);
    ck_assert(isnan(nn_progress_mean_loss(bar)));
    ck_assert_str_eq(ad_error(), "nn_progress_mean_loss: no samples counted in this epoch yet");
    nn_progress_free(bar);
    fclose(pf);
    ad_clear_error();
    nn_confusion *cm = nn_confusion_new(2);
    nonnull(cm);
    ck_assert(isnan(nn_confusion_accuracy(cm)));
    ck_assert_str_eq(ad_error(), "nn_confusion_accuracy: nothing counted yet");
    ad_clear_error();
    ck_assert(isnan(nn_confusion_recall(cm, 2)));
    ck_assert_str_eq(ad_error(), "nn_confusion_recall: class 2 out of range [0, 2)");
    ad_clear_error();
    ck_assert(isnan(nn_confusion_recall(cm, 1)));
    ck_assert_str_eq(ad_error(), "nn_confusion_recall: no samples of class 1 counted yet");
    ad_clear_error();
    /* printing a matrix with an empty class is not an error */
    FILE *f = tmpfile();
    ok(nn_confusion_print(cm, NULL, f));
    fclose(f);
    ck_assert_ptr_null(ad_error());
    nn_confusion_free(cm);
    ck_assert_error_rc(nn_init_zeros(NULL), "nn_init_zeros: argument 't' is NULL");
    ck_assert_error_rc(nn_init_ones(NULL), "nn_init_ones: argument 't' is NULL");
    ck_assert_error_rc(nn_init_constant(NULL, 2), "nn_init_constant: argument 't' is NULL");
    ad_tensor *ints = ad_zeros(NULL, AD_INT64, 1, (int64_t[]){2});
    ck_assert_error_rc(nn_init_zeros(ints), "nn_init_zeros: t must be float32 or float64");
    ad_tensor_free(ints);
    nn_module_free(net);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("modules");
    tcase_add_test(tc, mlp_parameters);
    tcase_add_test(tc, nested_names_and_buffers);
    tcase_add_test(tc, linear_by_hand);
    tcase_add_test(tc, sequential_fuses_conv_relu);
    tcase_add_test(tc, default_init_is_seeded);
    tcase_add_test(tc, custom_module);
    tcase_add_test(tc, layer_norm_and_embedding);
    tcase_add_test(tc, activations);
    tcase_add_test(tc, dropout_modes);
    tcase_add_test(tc, batch_norm_modes);
    tcase_add_test(tc, summary_shapes);
    tcase_add_test(tc, add_child_refuses_cycles);
    tcase_add_test(tc, accessors_set_errors);
    tcase_add_test(tc, forward_without_tape);
    tcase_add_test(tc, constructor_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("training");
    tcase_add_test(tc, xor_learns);
    tcase_add_test(tc, progress_bar);
    tcase_add_test(tc, confusion_and_evaluate);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

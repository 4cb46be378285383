/* tests/test_rnn.c - recurrent layers (nn/rnn.h): gradcheck and
 * gradgradcheck in float64 of every recurrence as a cell and as a 2-layer
 * sequence with respect to the input, the initial state and every weight;
 * agreement with PyTorch (outputs, final state and all gradients) on fixed
 * weights loaded by PyTorch's parameter names from
 * tests/data/rnn_reference.safetensors (made by make_rnn_reference.py);
 * the modules against the functional forms; truncated BPTT with a carried,
 * detached state; checkpointed segments against the plain layer; the
 * LSTM, GRU and Elman layers' one op against the recurrence composed of
 * ops, also with its products unpacked; bad inputs. */
#include <autodiff/gemm.h>
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static void ok(int rc) { ck_assert_msg(rc == 0, "%s", ad_error()); }
static void nonnull(const void *p) { ck_assert_msg(p != NULL, "%s", ad_error()); }

static const char *const KEYS[4] = {"rnn_tanh", "rnn_relu", "gru", "lstm"};

/* ---- gradcheck of the functional forms ------------------------------------------
 * inputs: x, h0, [c0,] then the weights; the output is every result
 * flattened and joined, so the whole Jacobian is checked. */
typedef struct fctx {
    nn_rnn_mode mode;
    int layers; /* 0: cell */
    bool bias;
} fctx;

static ad_tensor *flat(ad_tensor *t) { return ad_reshape(t, 1, (int64_t[]){ad_numel(t)}); }

static ad_tensor *run_f(ad_tensor *const *in, int n, void *vctx)
{
    (void)n;
    fctx *c = vctx;
    bool lstm = c->mode == NN_LSTM;
    ad_tensor *x = in[0], *h0 = in[1], *c0 = lstm ? in[2] : NULL;
    ad_tensor *const *w = in + (lstm ? 3 : 2);
    ad_tensor *out = NULL, *hn = NULL, *cn = NULL;
    int rc = c->layers
                 ? nn_rnn_sequence(c->mode, x, h0, c0, c->layers, w, c->bias, &out, &hn,
                                   lstm ? &cn : NULL)
                 : nn_rnn_cell_step(c->mode, x, h0, c0, w[0], w[1], c->bias ? w[2] : NULL,
                                    c->bias ? w[3] : NULL, &hn, lstm ? &cn : NULL);
    if (rc) return NULL;
    ad_tensor *parts[3] = {flat(hn), out ? flat(out) : NULL, cn ? flat(cn) : NULL};
    int np = 1;
    if (parts[1]) np++;
    if (parts[2]) parts[np++] = parts[2];
    return np == 1 ? parts[0] : ad_concat(parts, np, 0);
}

/* Random float64 inputs for the check: B 2, T 3, F 3, H 2. */
static int make_inputs(ad_rng *rng, fctx *c, ad_tensor **in)
{
    const int64_t B = 2, T = 3, F = 3, H = 2, G = c->mode == NN_GRU ? 3 : c->mode == NN_LSTM ? 4 : 1;
    int n = 0;
    in[n++] = c->layers ? ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(B, T, F), 0, 1)
                        : ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(B, F), 0, 1);
    int nstate = c->mode == NN_LSTM ? 2 : 1;
    for (int k = 0; k < nstate; k++)
        in[n++] = c->layers ? ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(c->layers, B, H), 0, 0.5)
                            : ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(B, H), 0, 0.5);
    int layers = c->layers ? c->layers : 1;
    for (int l = 0; l < layers; l++) {
        in[n++] = ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(G * H, l ? H : F), 0, 0.6);
        in[n++] = ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(G * H, H), 0, 0.6);
        if (c->bias) {
            in[n++] = ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(G * H), 0, 0.3);
            in[n++] = ad_randn(NULL, rng, AD_FLOAT64, AD_SHAPE(G * H), 0, 0.3);
        }
    }
    for (int i = 0; i < n; i++) {
        nonnull(in[i]);
        ok(ad_set_requires_grad(in[i], true));
    }
    return n;
}

static void check_mode(nn_rnn_mode mode, int layers, bool bias, bool second)
{
    ad_rng rng;
    ad_rng_init(&rng, 11 + (uint64_t)mode * 3 + (uint64_t)layers);
    fctx c = {mode, layers, bias};
    ad_tensor *in[32];
    int n = make_inputs(&rng, &c, in);
    ad_gradcheck_opts o = AD_GRADCHECK_DEFAULTS;
    ck_assert_msg(ad_gradcheck(run_f, &c, n, in, &o) == 1, "%s layers %d: %s", KEYS[mode],
                  layers, ad_error());
    if (second)
        ck_assert_msg(ad_gradgradcheck(run_f, &c, n, in, &o) == 1, "%s layers %d: %s",
                      KEYS[mode], layers, ad_error());
    for (int i = 0; i < n; i++) ad_tensor_free(in[i]);
}

START_TEST(gradcheck_cells)
{
    for (int m = 0; m < 4; m++) {
        check_mode((nn_rnn_mode)m, 0, true, true);
        check_mode((nn_rnn_mode)m, 0, false, false);
    }
}
END_TEST

START_TEST(gradcheck_sequences)
{
    for (int m = 0; m < 4; m++) {
        check_mode((nn_rnn_mode)m, 2, true, true);
        check_mode((nn_rnn_mode)m, 1, false, false);
    }
}
END_TEST

/* ---- agreement with PyTorch ---------------------------------------------------------- */

static const char *data_path(void)
{
    const char *d = getenv("AD_TEST_DATA");
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/rnn_reference.safetensors", d ? d : "tests/data");
    return buf;
}

static ad_tensor *ref(const char *key, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", key, what);
    ad_tensor *t = nn_safetensors_read(data_path(), name);
    ck_assert_msg(t != NULL, "%s: %s", name, ad_error());
    return t;
}

static void assert_close(ad_tensor *got, ad_tensor *want, const char *what, const char *key)
{
    ck_assert_msg(got != NULL, "%s %s: %s", key, what, ad_error());
    ck_assert_int_eq(ad_numel(got), ad_numel(want));
    ck_assert_int_eq(ad_ndim(got), ad_ndim(want));
    for (int d = 0; d < ad_ndim(got); d++) ck_assert_int_eq(ad_size(got, d), ad_size(want, d));
    double worst = 0;
    for (int64_t i = 0; i < ad_numel(got); i++) {
        double e = fabs(ot_at(got, i) - ot_at(want, i));
        if (e > worst) worst = e;
    }
    ck_assert_msg(worst < 1e-10, "%s %s differs from PyTorch by %g", key, what, worst);
}

static void check_against_torch(int mode, bool cell)
{
    char key[32];
    snprintf(key, sizeof key, "%s%s", KEYS[mode], cell ? "_cell" : "");
    bool lstm = mode == NN_LSTM;
    ad_rng rng;
    ad_rng_init(&rng, 1);
    nn_module *m = cell ? (mode == NN_GRU    ? nn_gru_cell(3, 4, true, AD_FLOAT64, &rng)
                           : lstm            ? nn_lstm_cell(3, 4, true, AD_FLOAT64, &rng)
                                             : nn_rnn_cell(3, 4, mode, true, AD_FLOAT64, &rng))
                        : (mode == NN_GRU ? nn_gru(3, 4, 2, true, AD_FLOAT64, &rng)
                           : lstm         ? nn_lstm(3, 4, 2, true, AD_FLOAT64, &rng)
                                          : nn_rnn(3, 4, 2, mode, true, AD_FLOAT64, &rng));
    nonnull(m);
    /* PyTorch's state_dict names, with the case's prefix, straight into
     * the module's parameters */
    nn_named_tensors *sd = nn_state_dict(m);
    nonnull(sd);
    const char *names[16];
    char store[16][64];
    for (int i = 0; i < sd->n; i++) {
        snprintf(store[i], sizeof store[i], "%s.%s", key, sd->names[i]);
        names[i] = store[i];
    }
    ok(nn_load_safetensors(data_path(), sd->n, names, sd->tensors, false));

    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    ad_tensor *x = ref(key, "x"), *h0 = ref(key, "h0"), *c0 = lstm ? ref(key, "c0") : NULL;
    ok(ad_set_requires_grad(x, true));
    ok(ad_set_requires_grad(h0, true));
    if (c0) ok(ad_set_requires_grad(c0, true));
    ad_tensor *out = NULL, *hn = NULL, *cn = NULL;
    ok(nn_rnn_forward(m, x, h0, c0, &out, &hn, lstm ? &cn : NULL));
    ad_tensor *r_out = ref(key, "r_out"), *r_h = ref(key, "r_h"), *r_c = lstm ? ref(key, "r_c") : NULL;
    ad_tensor *E = ad_add(ad_sum(ad_mul(out, r_out), NULL, 0, false),
                          ad_sum(ad_mul(hn, r_h), NULL, 0, false));
    if (lstm) E = ad_add(E, ad_sum(ad_mul(cn, r_c), NULL, 0, false));
    nonnull(E);
    ok(ad_backward(E, NULL, 0));

    ad_tensor *want[8] = {ref(key, "out"), ref(key, "h_n"), ref(key, "grad.x"),
                          ref(key, "grad.h0")};
    assert_close(out, want[0], "output", key);
    assert_close(hn, want[1], "h_n", key);
    assert_close(ad_tensor_grad(x), want[2], "dE/dx", key);
    assert_close(ad_tensor_grad(h0), want[3], "dE/dh0", key);
    int nw = 4;
    if (lstm) {
        want[nw] = ref(key, "c_n");
        assert_close(cn, want[nw++], "c_n", key);
        want[nw] = ref(key, "grad.c0");
        assert_close(ad_tensor_grad(c0), want[nw++], "dE/dc0", key);
    }
    for (int i = 0; i < sd->n; i++) {
        char what[96];
        snprintf(what, sizeof what, "grad.%s", sd->names[i]);
        ad_tensor *g = ref(key, what);
        assert_close(ad_tensor_grad(sd->tensors[i]), g, what, key);
        ad_tensor_free(g);
    }
    for (int i = 0; i < nw; i++) ad_tensor_free(want[i]);
    ad_tensor *own[6] = {x, h0, c0, r_out, r_h, r_c};
    ad_tape_activate(ot_tape);
    ad_tape_free(tape);
    for (int i = 0; i < 6; i++)
        if (own[i]) ad_tensor_free(own[i]);
    nn_named_tensors_free(sd);
    nn_module_free(m);
}

START_TEST(agrees_with_pytorch)
{
    for (int mode = 0; mode < 4; mode++) {
        check_against_torch(mode, false);
        check_against_torch(mode, true);
    }
}
END_TEST

/* ---- modules --------------------------------------------------------------------------- */

START_TEST(parameter_names_and_shapes)
{
    ad_rng rng;
    ad_rng_init(&rng, 2);
    nn_module *m = nn_lstm(5, 7, 2, true, AD_FLOAT32, &rng);
    nonnull(m);
    nn_named_tensors *p = nn_parameters(m);
    nonnull(p);
    static const char *const want[8] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                        "bias_hh_l0",   "weight_ih_l1", "weight_hh_l1",
                                        "bias_ih_l1",   "bias_hh_l1"};
    static const int64_t cols[8] = {5, 7, 0, 0, 7, 7, 0, 0};
    ck_assert_int_eq(p->n, 8);
    for (int i = 0; i < 8; i++) {
        ck_assert_str_eq(p->names[i], want[i]);
        ck_assert_int_eq(ad_size(p->tensors[i], 0), 28);
        if (cols[i]) ck_assert_int_eq(ad_size(p->tensors[i], 1), cols[i]);
        else ck_assert_int_eq(ad_ndim(p->tensors[i]), 1);
        /* PyTorch's init: U(-1/sqrt(H), 1/sqrt(H)) */
        for (int64_t k = 0; k < ad_numel(p->tensors[i]); k++)
            ck_assert(fabs(ot_at(p->tensors[i], k)) <= 1 / sqrt(7.0));
    }
    nn_named_tensors_free(p);
    ck_assert_int_eq(nn_num_parameters(m), 4 * 7 * (5 + 7 + 2) + 4 * 7 * (7 + 7 + 2));
    char d[96];
    nn_module_describe(m, d, sizeof d);
    ck_assert_str_eq(d, "LSTM(5, 7, num_layers=2)");
    ck_assert_int_eq(nn_rnn_mode_of(m), NN_LSTM);
    nn_module_free(m);

    m = nn_gru_cell(3, 2, false, AD_FLOAT64, &rng);
    nonnull(m);
    p = nn_parameters(m);
    ck_assert_int_eq(p->n, 2);
    ck_assert_str_eq(p->names[0], "weight_ih");
    ck_assert_str_eq(p->names[1], "weight_hh");
    nn_named_tensors_free(p);
    nn_module_describe(m, d, sizeof d);
    ck_assert_str_eq(d, "GRUCell(3, 2, bias=False)");
    nn_module_free(m);
    m = nn_rnn(3, 2, 1, NN_RNN_RELU, true, AD_FLOAT64, &rng);
    nn_module_describe(m, d, sizeof d);
    ck_assert_str_eq(d, "RNN(3, 2, nonlinearity='relu')");
    nn_module_free(m);
}
END_TEST

/* The module computes what the functional form computes with its
 * parameters; nn_forward gives the output from a zero state; the final
 * state is the last time step of the output; it works in a Sequential. */
START_TEST(module_matches_functional)
{
    ad_rng rng;
    ad_rng_init(&rng, 3);
    for (int mode = 0; mode < 4; mode++) {
        nn_module *m = mode == NN_GRU    ? nn_gru(3, 4, 2, true, AD_FLOAT64, &rng)
                       : mode == NN_LSTM ? nn_lstm(3, 4, 2, true, AD_FLOAT64, &rng)
                                         : nn_rnn(3, 4, 2, mode, true, AD_FLOAT64, &rng);
        nonnull(m);
        ad_tensor *x = ad_randn(ot_tape, &rng, AD_FLOAT64, AD_SHAPE(2, 5, 3), 0, 1);
        ad_tensor *y = nn_forward(m, x);
        ot_assert_shape(y, AD_SHAPE(2, 5, 4));
        nn_named_tensors *p = nn_parameters(m);
        ad_tensor *y2 = NULL, *hn = NULL, *cn = NULL;
        ok(nn_rnn_sequence(mode, x, NULL, NULL, 2, p->tensors, true, &y2, &hn,
                           mode == NN_LSTM ? &cn : NULL));
        for (int64_t i = 0; i < ad_numel(y); i++) ck_assert(ot_at(y, i) == ot_at(y2, i));
        ot_assert_shape(hn, AD_SHAPE(2, 2, 4));
        if (mode == NN_LSTM) ot_assert_shape(cn, AD_SHAPE(2, 2, 4));
        else ck_assert_ptr_null(cn);
        /* h_n of the last layer = output at the last step */
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < 4; j++)
                ck_assert(ot_at(hn, (1 * 2 + b) * 4 + j) == ot_at(y, (b * 5 + 4) * 4 + j));
        nn_named_tensors_free(p);
        nn_module_free(m);
    }
}
END_TEST

/* Running a sequence in two chunks, the state carried from the first into
 * the second, gives the same output as running it whole; with the state
 * detached and the tape reset in between (truncated BPTT). */
START_TEST(chunks_with_carried_state)
{
    ad_rng rng;
    ad_rng_init(&rng, 4);
    nn_module *m = nn_lstm(3, 4, 2, true, AD_FLOAT64, &rng);
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(2, 6, 3), 0, 1);
    nonnull(m);
    nonnull(x);
    ad_tensor *whole = NULL;
    ok(nn_rnn_forward(m, x, NULL, NULL, &whole, NULL, NULL));
    double want[48];
    for (int i = 0; i < 48; i++) want[i] = ot_at(whole, i);
    ok(ad_tape_reset(ot_tape));
    ad_tensor *h = NULL, *c = NULL;
    for (int k = 0; k < 2; k++) {
        ad_tensor *part = ad_narrow(x, 1, 3 * k, 3), *y = NULL, *h1 = NULL, *c1 = NULL;
        ok(nn_rnn_forward(m, part, h, c, &y, &h1, &c1));
        ok(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0));
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 3; t++)
                for (int j = 0; j < 4; j++)
                    ck_assert_double_eq_tol(ot_at(y, (b * 3 + t) * 4 + j),
                                            want[(b * 6 + 3 * k + t) * 4 + j], 1e-14);
        h = ad_detach(h1);
        c = ad_detach(c1);
        ok(ad_tape_reset(ot_tape));
    }
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

/* Gradient checkpointing (nn_rnn_set_checkpoint): a 2-layer sequence of
 * 11 steps in segments of 4 (the last one shorter) gives the same
 * outputs, final state and gradients - of every weight, of the input and
 * of the initial state - as the plain layer, in float32.  The plain
 * layer is one op over the whole sequence (ad_rnn_recurrence,
 * ad_gru_recurrence, ad_lstm_recurrence, the weights' gradients one
 * product over all steps), a checkpointed one an op per segment: the same
 * terms summed in other groups, so the agreement is float32's rounding
 * (1e-5 of the gradient's largest entry), not the bits. */
static void *grad_bytes(ad_tensor *t, size_t *n)
{
    ad_tensor *g = ad_contiguous(ad_tensor_grad(t));
    nonnull(g);
    *n = (size_t)ad_numel(g) * ad_dtype_size(ad_tensor_dtype(g));
    void *p = malloc(*n);
    nonnull(p);
    memcpy(p, ad_data(g), *n);
    return p;
}

START_TEST(checkpointed_matches_plain)
{
    for (int mode = 0; mode < 4; mode++) {
        ad_rng rng;
        ad_rng_init(&rng, 11);
        nn_module *m = mode == NN_GRU    ? nn_gru(5, 6, 2, true, AD_FLOAT32, &rng)
                       : mode == NN_LSTM ? nn_lstm(5, 6, 2, true, AD_FLOAT32, &rng)
                                         : nn_rnn(5, 6, 2, mode, true, AD_FLOAT32, &rng);
        nonnull(m);
        nn_named_tensors *p = nn_parameters(m);
        nonnull(p);
        enum { NG = 8 + 3 };
        void *want[NG] = {0};
        size_t nb[NG] = {0};
        double y_last = 0;
        for (int ckpt = 0; ckpt < 2; ckpt++) {
            ad_rng r2;
            ad_rng_init(&r2, 12);
            ad_tensor *x = ad_randn(ot_tape, &r2, AD_FLOAT32, AD_SHAPE(3, 11, 5), 0, 1);
            ad_tensor *h0 = ad_randn(ot_tape, &r2, AD_FLOAT32, AD_SHAPE(2, 3, 6), 0, 1);
            ad_tensor *c0 = mode == NN_LSTM
                                ? ad_randn(ot_tape, &r2, AD_FLOAT32, AD_SHAPE(2, 3, 6), 0, 1)
                                : NULL;
            ad_tensor *wy = ad_randn(ot_tape, &r2, AD_FLOAT32, AD_SHAPE(3, 11, 6), 0, 1);
            ok(ad_set_requires_grad(x, true));
            ok(ad_set_requires_grad(h0, true));
            if (c0) ok(ad_set_requires_grad(c0, true));
            ok(nn_rnn_set_checkpoint(m, ckpt ? 4 : 0));
            for (int i = 0; i < p->n; i++) ok(ad_zero_grad(p->tensors[i]));
            ad_tensor *y = NULL, *hn = NULL, *cn = NULL;
            ok(nn_rnn_forward(m, x, h0, c0, &y, &hn, c0 ? &cn : NULL));
            /* every result reaches the loss, each with its own weights */
            ad_tensor *E = ad_add(ad_sum(ad_mul(y, wy), NULL, 0, false),
                                  ad_sum(ad_mul(hn, hn), NULL, 0, false));
            if (cn) E = ad_add(E, ad_sum(ad_sin(cn), NULL, 0, false));
            ok(ad_backward(E, NULL, 0));
            ad_tensor *leaves[NG];
            int n = 0;
            for (int i = 0; i < p->n; i++) leaves[n++] = p->tensors[i];
            leaves[n++] = x;
            leaves[n++] = h0;
            if (c0) leaves[n++] = c0;
            for (int i = 0; i < n; i++) {
                size_t k;
                void *b = grad_bytes(leaves[i], &k);
                if (!ckpt) {
                    want[i] = b;
                    nb[i] = k;
                    continue;
                }
                ck_assert_uint_eq(k, nb[i]);
                const float *got = b, *ref = want[i];
                size_t m = k / sizeof(float);
                double scale = 0;
                for (size_t j = 0; j < m; j++) scale = fmax(scale, fabs(ref[j]));
                ck_assert(scale > 0);
                for (size_t j = 0; j < m; j++)
                    ck_assert_msg(fabs(got[j] - ref[j]) <= 1e-5 * scale,
                                  "%s: gradient %d [%zu]: %g with checkpoints, %g without",
                                  KEYS[mode], i, j, got[j], ref[j]);
                free(b);
            }
            if (!ckpt) y_last = ad_item(E);
            else ck_assert(fabs(ad_item(E) - y_last) <= 1e-5 * fabs(y_last));
            ok(ad_tape_reset(ot_tape));
        }
        for (int i = 0; i < NG; i++) free(want[i]);
        nn_named_tensors_free(p);
        nn_module_free(m);
    }
    ad_rng rng;
    ad_rng_init(&rng, 1);
    nn_module *cell = nn_lstm_cell(2, 3, true, AD_FLOAT32, &rng), *seq = nn_gru(2, 3, 1, true, AD_FLOAT32, &rng);
    ck_assert_error_rc(nn_rnn_set_checkpoint(cell, 4), "a cell runs one step");
    ck_assert_error_rc(nn_rnn_set_checkpoint(seq, 64), "steps must be 0 (off) or 1..63, got 64");
    ck_assert_error_rc(nn_rnn_set_checkpoint(NULL, 4), "m");
    nn_module_free(cell);
    nn_module_free(seq);
}
END_TEST

/* A parallel runner that runs the parts in order on the calling thread. */
static void serial_runner(void *pool, ad_parallel_task task, void *ctx)
{
    int parts = *(int *)pool;
    for (int p = 0; p < parts; p++) task(ctx, p, parts);
}

/* The sequence layers (one op each, ad_lstm_recurrence,
 * ad_gru_recurrence, ad_rnn_recurrence) against the same recurrence
 * composed of ops step by step (nn_rnn_cell_step: one product [x_t, h]
 * W^T for all gate blocks, then sigmoid, tanh or relu, mul and add):
 * outputs, final state and the gradients of the input, the initial state
 * and every weight agree to float64's rounding, with and without biases.
 * A third way runs the ops with every product split among a runner's
 * parts, so that the recurrent weight is not packed once per call and
 * each step's product is a plain one (ad__gemm_packed_or_plain's other
 * path). */
START_TEST(recurrence_ops_match_composed)
{
    for (int run = 0; run < 8; run++) {
        nn_rnn_mode mode = run < 2 ? NN_GRU : run < 4 ? NN_RNN_TANH : run < 6 ? NN_RNN_RELU
                                                                              : NN_LSTM;
        int bias = run % 2, G = mode == NN_GRU ? 3 : mode == NN_LSTM ? 4 : 1;
        ad_rng rng;
        ad_rng_init(&rng, 21 + run);
        const int64_t B = 3, T = 7, F = 4, H = 5;
        ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(B, T, F), 0, 1);
        ad_tensor *h0 = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(1, B, H), 0, 1);
        ad_tensor *c0 = mode == NN_LSTM ? ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(1, B, H), 0, 1)
                                        : NULL;
        ad_tensor *wy = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(B, T, H), 0, 1);
        ad_tensor *w[4];
        int nw = bias ? 4 : 2;
        for (int i = 0; i < nw; i++) {
            w[i] = i < 2 ? ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(G * H, i ? H : F), 0, 0.5)
                         : ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(G * H), 0, 0.5);
            nonnull(w[i]);
            ok(ad_set_requires_grad(w[i], true));
        }
        nonnull(x);
        nonnull(h0);
        nonnull(wy);
        ok(ad_set_requires_grad(x, true));
        ok(ad_set_requires_grad(h0, true));
        ad_tensor *leaves[6] = {x, h0, w[0], w[1], bias ? w[2] : NULL, bias ? w[3] : NULL};
        double *got[3][6] = {{0}};
        double val[3][2] = {{0}};
        for (int way = 0; way < 3; way++) {
            for (int i = 0; i < 2 + nw; i++) ok(ad_zero_grad(leaves[i]));
            ad_tensor *y = NULL, *hn = NULL;
            int parts = 2;
            if (way == 2) {
                ad__gemm_testing_parallel(1);
                ok(ad_set_parallel_runner(serial_runner, &parts, parts));
            }
            if (way != 1) {
                ok(nn_rnn_sequence(mode, x, h0, c0, 1, w, bias, &y, &hn, NULL));
            } else {
                ad_tensor *h = ad_squeeze(h0, 0), *c = c0 ? ad_squeeze(c0, 0) : NULL, *hs[7];
                for (int64_t t = 0; t < T; t++) {
                    ok(nn_rnn_cell_step(mode, ad_squeeze(ad_narrow(x, 1, t, 1), 1), h, c,
                                        w[0], w[1], bias ? w[2] : NULL, bias ? w[3] : NULL,
                                        &hs[t], c ? &c : NULL));
                    h = hs[t];
                }
                y = ad_stack(hs, (int)T, 1);
                hn = ad_unsqueeze(h, 0);
            }
            nonnull(y);
            nonnull(hn);
            ad_tensor *E1 = ad_sum(ad_mul(y, wy), NULL, 0, false);
            ad_tensor *E2 = ad_sum(ad_square(hn), NULL, 0, false);
            val[way][0] = ad_item(E1);
            val[way][1] = ad_item(E2);
            ok(ad_backward(ad_add(E1, E2), NULL, 0));
            if (way == 2) {
                ok(ad_set_parallel_runner(NULL, NULL, 0));
                ad__gemm_testing_parallel(0);
            }
            for (int i = 0; i < 2 + nw; i++) {
                ad_tensor *g = ad_tensor_grad(leaves[i]);
                nonnull(g);
                got[way][i] = malloc((size_t)ad_numel(g) * sizeof(double));
                nonnull(got[way][i]);
                for (int64_t k = 0; k < ad_numel(g); k++) got[way][i][k] = ot_at(g, k);
            }
            ok(ad_tape_reset(ot_tape));
        }
        for (int way = 0; way < 3; way += 2) {
            for (int k = 0; k < 2; k++)
                ck_assert_double_eq_tol(val[way][k], val[1][k], 1e-12 * fabs(val[1][k]));
            for (int i = 0; i < 2 + nw; i++)
                for (int64_t k = 0; k < ad_numel(leaves[i]); k++)
                    ck_assert_msg(fabs(got[way][i][k] - got[1][i][k]) <=
                                      1e-12 * (1 + fabs(got[1][i][k])),
                                  "%s bias %d: gradient %d [%ld]: %.17g as one op%s, %.17g "
                                  "composed", KEYS[mode], bias, i, (long)k, got[way][i][k],
                                  way ? " (products unpacked)" : "", got[1][i][k]);
        }
        for (int i = 0; i < 2 + nw; i++)
            for (int way = 0; way < 3; way++) free(got[way][i]);
        for (int i = 0; i < nw; i++) ad_tensor_free(w[i]);
        ad_tensor_free(x);
        ad_tensor_free(h0);
        ad_tensor_free(c0);
        ad_tensor_free(wy);
    }
}
END_TEST

START_TEST(cells_and_persistent_results)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    nn_module *m = nn_lstm_cell(3, 2, true, AD_FLOAT64, &rng);
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(4, 3), 0, 1);
    /* no tape at all, grad mode off: persistent results the caller frees */
    ad_tape_activate(NULL);
    bool prev = ad_set_grad_enabled(false);
    ad_tensor *out = NULL, *hn = NULL, *cn = NULL;
    ok(nn_rnn_forward(m, x, NULL, NULL, &out, &hn, &cn));
    ck_assert_ptr_null(ad_tensor_tape(out));
    ck_assert_ptr_ne(out, hn);
    for (int i = 0; i < 8; i++) ck_assert(ot_at(out, i) == ot_at(hn, i));
    ot_assert_shape(cn, AD_SHAPE(4, 2));
    ad_tensor *y = nn_forward(m, x);
    for (int i = 0; i < 8; i++) ck_assert(ot_at(out, i) == ot_at(y, i));
    /* the results not asked for are not left behind (the sanitizer
     * build's leak check): c' of a cell, the output of a sequence */
    ad_tensor *h1 = NULL;
    ok(nn_rnn_forward(m, x, NULL, NULL, NULL, &h1, NULL));
    for (int i = 0; i < 8; i++) ck_assert(ot_at(h1, i) == ot_at(hn, i));
    ad_tensor_free(h1);
    nn_module *seq = nn_lstm(3, 2, 2, true, AD_FLOAT64, &rng);
    ad_tensor *xs = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(4, 5, 3), 0, 1);
    ad_tensor *sout = NULL, *shn = NULL, *shn2 = NULL;
    ok(nn_rnn_forward(seq, xs, NULL, NULL, &sout, &shn, NULL));
    ok(nn_rnn_forward(seq, xs, NULL, NULL, NULL, &shn2, NULL));
    for (int i = 0; i < 16; i++) ck_assert(ot_at(shn2, i) == ot_at(shn, i));
    ad_tensor_free(sout);
    ad_tensor_free(shn);
    ad_tensor_free(shn2);
    ad_tensor_free(xs);
    nn_module_free(seq);
    ad_tensor_free(out);
    ad_tensor_free(hn);
    ad_tensor_free(cn);
    ad_tensor_free(y);
    ad_set_grad_enabled(prev);
    ad_tape_activate(ot_tape);
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

START_TEST(bad_inputs)
{
    ad_rng rng;
    ad_rng_init(&rng, 6);
    ck_assert_ptr_null(nn_lstm(0, 4, 1, true, AD_FLOAT32, &rng));
    ck_assert_str_eq(ad_error(), "nn_lstm: input_size and hidden_size must be >= 1, got 0 and 4");
    ck_assert_ptr_null(nn_gru(3, 4, 0, true, AD_FLOAT32, &rng));
    ck_assert_str_eq(ad_error(), "nn_gru: num_layers must be 1..1000, got 0");
    ck_assert_ptr_null(nn_rnn(3, 4, 1, NN_LSTM, true, AD_FLOAT32, &rng));
    ck_assert_str_eq(ad_error(), "nn_rnn: mode must be NN_RNN_TANH or NN_RNN_RELU, got 3");
    ck_assert_ptr_null(nn_lstm_cell(3, 4, true, AD_INT64, &rng));
    ck_assert_str_eq(ad_error(), "nn_lstm_cell: dtype must be AD_FLOAT32 or AD_FLOAT64, got 2");
    ad_clear_error();
    ck_assert_ptr_null(nn_rnn_cell(3, 4, NN_RNN_TANH, true, AD_FLOAT32, NULL));
    ck_assert_str_eq(ad_error(), "nn_rnn_cell: argument 'rng' is NULL");
    ad_clear_error();

    nn_module *m = nn_lstm(3, 4, 2, true, AD_FLOAT64, &rng);
    ad_tensor *x = ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(2, 5, 3));
    ad_tensor *bad_x = ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(2, 5, 4));
    ad_tensor *h0 = ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(1, 2, 4));
    ad_tensor *x32 = ad_zeros(ot_tape, AD_FLOAT32, AD_SHAPE(2, 5, 3));
    ad_tensor *out = NULL;
    ck_assert_error_rc(nn_rnn_forward(m, bad_x, NULL, NULL, &out, NULL, NULL),
                       "nn_rnn_forward: LSTM(3, 4, num_layers=2): x is [2,5,4], its last "
                       "dimension must be the input size 3");
    ck_assert_ptr_null(out);
    ck_assert_error_rc(nn_rnn_forward(m, x, h0, NULL, &out, NULL, NULL),
                       "nn_rnn_forward: h0 is [1,2,4] float64, expected [2,2,4] float64");
    ck_assert_error_rc(nn_rnn_forward(m, x32, NULL, NULL, &out, NULL, NULL),
                       "x is float32 but the layer's parameters are float64");
    nn_module *lin = nn_linear(3, 4, true, AD_FLOAT64, &rng);
    ck_assert_error_rc(nn_rnn_forward(lin, x, NULL, NULL, &out, NULL, NULL),
                       "nn_rnn_forward: the module is a Linear, not an RNN");
    ck_assert_int_eq(nn_rnn_mode_of(lin), -1);
    ad_clear_error();
    ck_assert_ptr_null(nn_forward(m, ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(2, 3))));
    ck_assert_msg(strstr(ad_error(), "x must be a floating tensor [batch, time, features]"),
                  "%s", ad_error());
    ad_clear_error();
    nn_module *gru = nn_gru(3, 4, 1, true, AD_FLOAT64, &rng);
    ad_tensor *c0 = ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(1, 2, 4));
    ck_assert_error_rc(nn_rnn_forward(gru, x, NULL, c0, &out, NULL, NULL),
                       "c0 is given but only an LSTM has a cell state");
    ck_assert_error_rc(nn_rnn_sequence(NN_GRU, x, NULL, NULL, 0, NULL, true, &out, NULL, NULL),
                       "nn_rnn_sequence: num_layers must be >= 1, got 0");
    nn_module_free(gru);
    nn_module_free(lin);
    nn_module_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rnn");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_test(tc, gradcheck_cells);
    tcase_add_test(tc, gradcheck_sequences);
    suite_add_tcase(s, tc);
    tc = tcase_create("modules");
    tcase_add_checked_fixture(tc, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(tc, agrees_with_pytorch);
    tcase_add_test(tc, parameter_names_and_shapes);
    tcase_add_test(tc, module_matches_functional);
    tcase_add_test(tc, chunks_with_carried_state);
    tcase_add_test(tc, checkpointed_matches_plain);
    tcase_add_test(tc, recurrence_ops_match_composed);
    tcase_add_test(tc, cells_and_persistent_results);
    tcase_add_test(tc, bad_inputs);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_nn_layers.c - every nn layer, from one table.
 *
 * The ops a layer is made of are checked by test_ops; what a layer can
 * still get wrong is around them: a tensor it trains but never registers
 * (the optimiser then never updates it, and nn_gradcheck never checks
 * it), a parameter it registers but never uses, a forward that changes
 * its parameters or, in eval mode, its buffers.  Every constructor that
 * nn/module.h, nn/rnn.h and nn/transformer.h declare must have a row (a
 * layer without one fails the suite), and every row, built in float64, is
 * checked for:
 *   - its parameter gradients: nn_gradcheck in training mode (dropout's
 *     mask and batch norm's statistics as in training); a layer without
 *     parameters must say "nothing was checked";
 *   - its input gradient: ad_gradcheck of x -> nn_forward(m, x) in eval
 *     mode (a float input);
 *   - what it records: every persistent tensor that requires grad and that
 *     the forward reads is one of nn_parameters(m), and every parameter
 *     is read;
 *   - what a forward changes: the parameters nothing, in training or eval
 *     mode; in eval mode the buffers nothing and a second forward gives
 *     the same bits; in training mode, a second forward that differs
 *     (dropout) needs a registered random stream (nn_module_set_rng),
 *     which nn_gradcheck and the trainer put back and checkpoints carry;
 *   - what a checkpoint carries: a model built from another seed that loads
 *     the checkpoint gives the same bits in its next forward;
 *   - the trainer's replayed steps: three steps with the recording replayed
 *     leave the same bits as three recorded afresh, and three on two
 *     threads (the batch split, the products split) the same values to a
 *     few roundings;
 *   - its float32 kernels: built in float32 with the float64 weights, the
 *     same outputs and input gradients to float32's precision.
 *
 * Found by it: nn_multihead_attention kept its dropout stream without
 * registering it, so nn_gradcheck of an attention layer with dropout in
 * training failed on masks that changed between evaluations, checkpoints
 * did not carry the stream, and a model whose only dropout was
 * attention's went to the trainer's batch split, whose shards would have
 * drawn from the one stream at once. */
#define _POSIX_C_SOURCE 200809L /* getpid */
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "optest.h"

typedef struct layer_row {
    const char *ctor; /* the constructor this row covers */
    const char *what;
    nn_module *(*make)(ad_rng *rng);
    int ndim;
    int64_t shape[5]; /* the input */
    int64_t imax;     /* > 0: an int64 input of indices in [0, imax) */
} layer_row;

#define F64 AD_FLOAT64
/* The dtype the rows' constructors build in: float64, but float32 for
 * float32_matches_float64. */
static ad_dtype layer_dt = AD_FLOAT64;
static nn_module *m_linear(ad_rng *r) { return nn_linear(3, 4, true, layer_dt, r); }
static nn_module *m_linear_nobias(ad_rng *r) { return nn_linear(3, 2, false, layer_dt, r); }
static nn_module *m_conv(ad_rng *r)
{
    ad_conv2d_params p = {.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 1}, .groups = 1};
    return nn_conv2d(2, 3, (const int[]){3, 2}, &p, true, layer_dt, r);
}
static nn_module *m_conv_groups(ad_rng *r)
{
    ad_conv2d_params p = {.stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}, .groups = 2};
    return nn_conv2d(4, 2, (const int[]){3, 3}, &p, false, layer_dt, r);
}
static nn_module *m_max_pool(ad_rng *r)
{
    (void)r;
    return nn_max_pool2d((const int[]){2, 2}, NULL, NULL);
}
static nn_module *m_avg_pool(ad_rng *r)
{
    (void)r;
    return nn_avg_pool2d((const int[]){3, 3}, (const int[]){2, 2}, (const int[]){1, 1}, false);
}
static nn_module *m_flatten(ad_rng *r)
{
    (void)r;
    return nn_flatten(1, -1);
}
static nn_module *m_dropout(ad_rng *r)
{
    (void)r;
    return nn_dropout(0.3, 5);
}
static nn_module *m_layer_norm(ad_rng *r)
{
    (void)r;
    return nn_layer_norm(1, (const int64_t[]){4}, 1e-5, true, layer_dt);
}
static nn_module *m_batch_norm(ad_rng *r)
{
    (void)r;
    return nn_batch_norm2d(3, 1e-5, 0.1, true, layer_dt);
}
static nn_module *m_embedding(ad_rng *r) { return nn_embedding(6, 3, layer_dt, r); }
static nn_module *m_relu(ad_rng *r) { return (void)r, nn_relu(); }
static nn_module *m_tanh(ad_rng *r) { return (void)r, nn_tanh(); }
static nn_module *m_sigmoid(ad_rng *r) { return (void)r, nn_sigmoid(); }
static nn_module *m_gelu(ad_rng *r) { return (void)r, nn_gelu(); }
static nn_module *m_leaky(ad_rng *r) { return (void)r, nn_leaky_relu(0.1); }
static nn_module *m_softmax(ad_rng *r) { return (void)r, nn_softmax(1); }
static nn_module *m_log_softmax(ad_rng *r) { return (void)r, nn_log_softmax(-1); }
static nn_module *m_sequential(ad_rng *r)
{
    return NN_SEQUENTIAL(nn_linear(3, 4, true, layer_dt, r), nn_tanh(), nn_linear(4, 2, true, layer_dt, r));
}
static nn_module *m_rnn(ad_rng *r) { return nn_rnn(3, 4, 2, NN_RNN_TANH, true, layer_dt, r); }
static nn_module *m_rnn_relu(ad_rng *r) { return nn_rnn(3, 2, 1, NN_RNN_RELU, false, layer_dt, r); }
static nn_module *m_gru(ad_rng *r) { return nn_gru(3, 4, 2, true, layer_dt, r); }
static nn_module *m_lstm(ad_rng *r) { return nn_lstm(3, 4, 2, true, layer_dt, r); }
static nn_module *m_rnn_cell(ad_rng *r) { return nn_rnn_cell(3, 4, NN_RNN_TANH, true, layer_dt, r); }
static nn_module *m_gru_cell(ad_rng *r) { return nn_gru_cell(3, 4, true, layer_dt, r); }
static nn_module *m_lstm_cell(ad_rng *r) { return nn_lstm_cell(3, 4, true, layer_dt, r); }
static nn_module *m_attention(ad_rng *r)
{
    return nn_multihead_attention(4, 2, 0.2, true, true, layer_dt, r, 9);
}
static nn_module *m_positional(ad_rng *r) { return nn_positional_embedding(5, 4, layer_dt, r); }
static nn_module *m_block(ad_rng *r) { return nn_transformer_block(4, 2, 6, 0.1, layer_dt, r, 9); }
static nn_module *m_block_checkpointed(ad_rng *r)
{
    nn_module *m = nn_transformer_block(4, 2, 6, 0.0, layer_dt, r, 9);
    if (m && nn_transformer_block_set_checkpoint(m, true)) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

static nn_module *m_linear_relu(ad_rng *r)
{
    return NN_SEQUENTIAL(nn_linear(3, 5, true, layer_dt, r), nn_relu(), nn_linear(5, 2, true, layer_dt, r));
}
static nn_module *m_conv_relu(ad_rng *r)
{
    return NN_SEQUENTIAL(nn_conv2d(2, 4, (const int[]){3, 3}, NULL, true, layer_dt, r), nn_relu(),
                         nn_max_pool2d((const int[]){2, 2}, NULL, NULL));
}

static const layer_row rows[] = {
    {"nn_linear", "Linear(3, 4) with bias", m_linear, 2, {5, 3}, 0},
    {"nn_linear", "Linear(3, 2) without bias, a 3-d input", m_linear_nobias, 3, {2, 2, 3}, 0},
    {"nn_conv2d", "Conv2d(2, 3, 3x2) stride 2x1 padding 1x0", m_conv, 4, {2, 2, 5, 4}, 0},
    {"nn_conv2d", "Conv2d(4, 2, 3x3) groups 2 padding 1, no bias", m_conv_groups, 4, {1, 4, 4, 4},
     0},
    {"nn_max_pool2d", "MaxPool2d(2)", m_max_pool, 4, {2, 2, 4, 4}, 0},
    {"nn_avg_pool2d", "AvgPool2d(3, stride 2, padding 1)", m_avg_pool, 4, {2, 2, 5, 5}, 0},
    {"nn_flatten", "Flatten(1, -1)", m_flatten, 4, {2, 2, 3, 2}, 0},
    {"nn_dropout", "Dropout(0.3)", m_dropout, 2, {4, 5}, 0},
    {"nn_layer_norm", "LayerNorm(4)", m_layer_norm, 3, {2, 3, 4}, 0},
    {"nn_batch_norm2d", "BatchNorm2d(3)", m_batch_norm, 4, {4, 3, 2, 2}, 0},
    {"nn_embedding", "Embedding(6, 3)", m_embedding, 2, {2, 4}, 6},
    {"nn_relu", "ReLU", m_relu, 2, {3, 4}, 0},
    {"nn_tanh", "Tanh", m_tanh, 2, {3, 4}, 0},
    {"nn_sigmoid", "Sigmoid", m_sigmoid, 2, {3, 4}, 0},
    {"nn_gelu", "GELU", m_gelu, 2, {3, 4}, 0},
    {"nn_leaky_relu", "LeakyReLU(0.1)", m_leaky, 2, {3, 4}, 0},
    {"nn_softmax", "Softmax(1)", m_softmax, 2, {3, 4}, 0},
    {"nn_log_softmax", "LogSoftmax(-1)", m_log_softmax, 3, {2, 2, 4}, 0},
    {"nn_sequential", "Linear, Tanh, Linear", m_sequential, 2, {4, 3}, 0},
    {"nn_sequential", "Linear, ReLU, Linear (the product's relu epilogue)", m_linear_relu, 2,
     {4, 3}, 0},
    {"nn_sequential", "Conv2d, ReLU, MaxPool2d (the convolution's relu epilogue)", m_conv_relu, 4,
     {2, 2, 6, 6}, 0},
    {"nn_rnn", "RNN(3, 4) tanh, 2 layers", m_rnn, 3, {2, 3, 3}, 0},
    {"nn_rnn", "RNN(3, 2) relu, no bias", m_rnn_relu, 3, {2, 3, 3}, 0},
    {"nn_gru", "GRU(3, 4), 2 layers", m_gru, 3, {2, 3, 3}, 0},
    {"nn_lstm", "LSTM(3, 4), 2 layers", m_lstm, 3, {2, 3, 3}, 0},
    {"nn_rnn_cell", "RNNCell(3, 4) tanh", m_rnn_cell, 2, {2, 3}, 0},
    {"nn_gru_cell", "GRUCell(3, 4)", m_gru_cell, 2, {2, 3}, 0},
    {"nn_lstm_cell", "LSTMCell(3, 4)", m_lstm_cell, 2, {2, 3}, 0},
    {"nn_multihead_attention", "MultiheadAttention(4, 2 heads) causal, dropout 0.2", m_attention,
     3, {2, 3, 4}, 0},
    {"nn_positional_embedding", "PositionalEmbedding(5, 4) on T = 3", m_positional, 3, {2, 3, 4},
     0},
    {"nn_transformer_block", "block(4, 2 heads, ff 6), dropout 0.1", m_block, 3, {2, 3, 4}, 0},
    {"nn_transformer_block", "block(4, 2 heads, ff 6), checkpointed", m_block_checkpointed, 3,
     {2, 3, 4}, 0},
};
#define NROWS ((int)(sizeof rows / sizeof rows[0]))

/* Constructors that are not layers of their own. */
static const char *const not_layers[] = {"nn_child", "nn_sequential_append", "nn_module_new",
                                         "nn_trainer_model"};

START_TEST(every_layer_has_a_row)
{
    const char *headers[] = {"module.h", "rnn.h", "transformer.h"};
    char missing[1024] = "";
    for (int h = 0; h < 3; h++) {
        FILE *f = ot_open_source("nn", headers[h]);
        ck_assert_msg(f != NULL, "cannot find nn/%s", headers[h]);
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "AD_API nn_module *", 18) != 0) continue;
            char name[64];
            size_t len = strspn(line + 18, "abcdefghijklmnopqrstuvwxyz0123456789_");
            if (len == 0 || len >= sizeof name || line[18 + len] != '(') continue;
            memcpy(name, line + 18, len);
            name[len] = '\0';
            bool skip = false, found = false;
            for (size_t i = 0; i < sizeof not_layers / sizeof *not_layers; i++)
                skip |= !strcmp(not_layers[i], name);
            for (int k = 0; k < NROWS; k++) found |= !strcmp(rows[k].ctor, name);
            if (!skip && !found) {
                strncat(missing, " ", sizeof missing - strlen(missing) - 1);
                strncat(missing, name, sizeof missing - strlen(missing) - 1);
            }
        }
        fclose(f);
    }
    ck_assert_msg(missing[0] == '\0', "layers without a row in test_nn_layers.c:%s", missing);
}
END_TEST

static ad_tensor *input_of(const layer_row *r, int seed)
{
    ad_rng rng;
    ad_rng_init(&rng, 100u + (unsigned)seed);
    ad_tensor *x;
    if (r->imax > 0) {
        x = ad_empty(NULL, AD_INT64, r->ndim, r->shape);
        ck_assert(x != NULL);
        int64_t *d = ad_data(x);
        for (int64_t k = 0; k < ad_numel(x); k++) d[k] = (int64_t)ad_rng_below(&rng, (uint64_t)r->imax);
    } else {
        x = ad_rand(NULL, &rng, F64, r->ndim, r->shape, -1, 1);
    }
    ck_assert_msg(x != NULL, "%s", ad_error());
    return x;
}

static nn_module *make(const layer_row *r)
{
    ad_rng rng;
    ad_rng_init(&rng, 7);
    nn_module *m = r->make(&rng);
    ck_assert_msg(m != NULL, "%s: %s", r->what, ad_error());
    return m;
}

static ad_tensor *forward_fn(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return nn_forward(ctx, in[0]);
}

/* All values of every tensor of a list, one after the other. */
static double *values_of(const nn_named_tensors *l, int64_t *n)
{
    *n = 0;
    for (int i = 0; i < l->n; i++) *n += ad_numel(l->tensors[i]);
    double *v = malloc((size_t)(*n ? *n : 1) * sizeof *v), *p = v;
    for (int i = 0; i < l->n; i++) {
        ck_assert_int_eq(ad_to_array(l->tensors[i], p), 0);
        p += ad_numel(l->tensors[i]);
    }
    return v;
}

/* The values of nn_forward(m, x), recorded on the active tape (malloc'd,
 * *n of them). */
static double *forward_values(const layer_row *r, nn_module *m, ad_tensor *x, int64_t *n)
{
    ad_tensor *y = nn_forward(m, x);
    ck_assert_msg(y != NULL, "%s (%s): %s", r->ctor, r->what, ad_error());
    *n = ad_numel(y);
    double *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    ck_assert_int_eq(ad_to_array(y, v), 0);
    return v;
}

static bool same_bits(const double *a, const double *b, int64_t n)
{
    return n == 0 || memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

START_TEST(parameter_gradients)
{
    const layer_row *r = &rows[_i];
    nn_module *m = make(r);
    ad_tensor *x = input_of(r, _i);
    ck_assert_int_eq(nn_train(m, true), 0);
    ad_clear_error();
    int ok = nn_gradcheck(m, x, NULL, NULL, NULL);
    if (nn_num_parameters(m) > 0)
        ck_assert_msg(ok == 1, "%s (%s): %s", r->ctor, r->what, ad_error());
    else
        ck_assert_msg(ok == 0 && ad_error() && strstr(ad_error(), "nothing was checked"),
                      "%s (%s) has no parameters: nn_gradcheck gave %d (%s)", r->ctor, r->what,
                      ok, ad_error() ? ad_error() : "no message");
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

START_TEST(input_gradient)
{
    const layer_row *r = &rows[_i];
    if (r->imax > 0) return; /* indices: nothing to differentiate */
    nn_module *m = make(r);
    ad_tensor *x = input_of(r, _i);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    ck_assert_int_eq(nn_eval(m), 0);
    ad_clear_error();
    ck_assert_msg(ad_gradcheck(forward_fn, m, 1, &x, NULL) == 1, "%s (%s): %s", r->ctor, r->what,
                  ad_error());
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

START_TEST(reads_what_it_registers)
{
    const layer_row *r = &rows[_i];
    nn_module *m = make(r);
    ad_tensor *x = input_of(r, _i);
    nn_named_tensors *params = nn_parameters(m);
    ck_assert(params != NULL);
    bool *read = calloc((size_t)params->n + 1, 1);
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *y = nn_forward(m, x);
    ck_assert_msg(y != NULL, "%s (%s): %s", r->ctor, r->what, ad_error());
    for (size_t k = 0; k < ad_tape_num_nodes(t); k++) {
        ad_node_info info;
        ck_assert_int_eq(ad_tape_node_info(t, k, &info), 0);
        for (int i = 0; i < info.nin; i++) {
            ad_tensor *in = info.inputs[i];
            if (!ad_is_leaf(in) || !ad_requires_grad(in) || ad_tensor_tape(in) != NULL) continue;
            int p = 0;
            while (p < params->n && params->tensors[p] != in) p++;
            ck_assert_msg(p < params->n,
                          "%s (%s): op '%s' reads a persistent tensor that requires grad, "
                          "%s %s, that is not a parameter of the module",
                          r->ctor, r->what, info.op, ad_dtype_name(ad_tensor_dtype(in)),
                          ad_label(in) ? ad_label(in) : "(no label)");
            read[p] = true;
        }
    }
    for (int p = 0; p < params->n; p++)
        ck_assert_msg(read[p], "%s (%s): parameter '%s' is never read by the forward", r->ctor,
                      r->what, params->names[p]);
    ad_tape_activate(prev);
    ad_tape_free(t);
    free(read);
    nn_named_tensors_free(params);
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

/* Whether m or a descendant registered a random stream: what nn_gradcheck
 * and the trainer put back, and checkpoints carry. */
static bool has_stream(const nn_module *m)
{
    if (nn_module_rng(m)) return true;
    for (int i = 0; i < nn_num_children(m); i++)
        if (has_stream(nn_child(m, i))) return true;
    return false;
}

START_TEST(forward_changes_nothing_it_should_not)
{
    const layer_row *r = &rows[_i];
    nn_module *m = make(r);
    ad_tensor *x = input_of(r, _i);
    nn_named_tensors *params = nn_parameters(m), *bufs = nn_buffers(m);
    ck_assert(params && bufs);
    int64_t np, nb, n1, n2;
    double *p0 = values_of(params, &np);
    for (int mode = 0; mode < 2; mode++) { /* training, then eval */
        ck_assert_int_eq(nn_train(m, mode == 0), 0);
        double *b0 = values_of(bufs, &nb);
        ad_tape *t = ad_tape_new();
        ad_tape *prev = ad_tape_activate(t);
        double *v1 = forward_values(r, m, x, &n1), *v2 = forward_values(r, m, x, &n2);
        ad_tape_activate(prev);
        ad_tape_free(t);
        int64_t np1;
        double *p1 = values_of(params, &np1);
        ck_assert_msg(np1 == np && same_bits(p0, p1, np),
                      "%s (%s): a forward in %s mode changed the parameters", r->ctor, r->what,
                      mode ? "eval" : "training");
        if (mode == 0 && !(n1 == n2 && same_bits(v1, v2, n1)))
            ck_assert_msg(has_stream(m),
                          "%s (%s): two forwards in training mode differ, but the module "
                          "registers no random stream (nn_module_set_rng)",
                          r->ctor, r->what);
        if (mode == 1) {
            int64_t nb1;
            double *b1 = values_of(bufs, &nb1);
            ck_assert_msg(nb1 == nb && same_bits(b0, b1, nb),
                          "%s (%s): a forward in eval mode changed the buffers", r->ctor, r->what);
            ck_assert_msg(n1 == n2 && same_bits(v1, v2, n1),
                          "%s (%s): two forwards in eval mode differ", r->ctor, r->what);
            free(b1);
        }
        free(p1);
        free(b0);
        free(v1);
        free(v2);
    }
    free(p0);
    nn_named_tensors_free(params);
    nn_named_tensors_free(bufs);
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

/* A checkpoint carries everything a layer's forward depends on: a model
 * built from another seed (other weights, another dropout stream) that
 * loads the checkpoint of one that has run a forward in training mode
 * (batch norm's statistics moved, dropout's stream advanced) gives the
 * same bits as that one in its next forward, in training mode and in eval
 * mode. */
START_TEST(checkpoint_carries_the_layer)
{
    const layer_row *r = &rows[_i];
    nn_module *a = make(r);
    ad_rng other;
    ad_rng_init(&other, 99);
    nn_module *b = r->make(&other);
    ck_assert_msg(b != NULL, "%s", ad_error());
    ad_tensor *x = input_of(r, _i);
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ck_assert_int_eq(nn_train(a, true), 0);
    ck_assert_msg(nn_forward(a, x) != NULL, "%s", ad_error());
    char path[64];
    snprintf(path, sizeof path, "/tmp/nn_layers_%d_%ld.safetensors", _i, (long)getpid());
    ck_assert_msg(nn_checkpoint_save(path, &(nn_checkpoint){.model = a}) == 0, "%s: %s", r->ctor,
                  ad_error());
    ck_assert_msg(nn_checkpoint_load(path, &(nn_checkpoint){.model = b}) == 0, "%s: %s", r->ctor,
                  ad_error());
    remove(path);
    for (int mode = 0; mode < 2; mode++) {
        ck_assert_int_eq(nn_train(a, mode == 0), 0);
        ck_assert_int_eq(nn_train(b, mode == 0), 0);
        int64_t n, nb;
        double *va = forward_values(r, a, x, &n), *vb = forward_values(r, b, x, &nb);
        ck_assert_msg(nb == n && same_bits(va, vb, n),
                      "%s (%s): the model loaded from the checkpoint differs in %s mode", r->ctor,
                      r->what, mode ? "eval" : "training");
        free(va);
        free(vb);
    }
    ad_tape_activate(prev);
    ad_tape_free(t);
    ad_tensor_free(x);
    nn_module_free(a);
    nn_module_free(b);
}
END_TEST

/* Three steps of SGD with momentum on three batches (a target of zeros of
 * the output's shape, mse), by a trainer with `threads` threads that
 * replays its recording unless fresh; the model's state after them, all
 * values in a row (*n of them), or NULL for a layer without parameters. */
static double *train_three_steps(const layer_row *r, int row, bool fresh, int threads,
                                 nn_thread_mode mode, int64_t *n)
{
    nn_module *m = make(r);
    if (nn_num_parameters(m) == 0) { /* nothing to train */
        nn_module_free(m);
        return NULL;
    }
    /* the target's shape from an eval forward (which changes nothing:
     * forward_changes_nothing_it_should_not) */
    ad_tensor *x0 = input_of(r, 0);
    ck_assert_int_eq(nn_eval(m), 0);
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *y0 = nn_forward(m, x0);
    ck_assert_msg(y0 != NULL, "%s", ad_error());
    ad_tensor *target = ad_zeros(NULL, F64, ad_ndim(y0), ad_shape(y0));
    ad_tape_activate(prev);
    ad_tape_free(t);
    ad_tensor_free(x0);
    nn_optim *opt = nn_sgd_module(m, &(nn_sgd_options){.lr = 0.05, .momentum = 0.9});
    nn_trainer *tr = nn_trainer_new(m, nn_mse_loss, opt, &(nn_trainer_options){.no_replay = fresh});
    ck_assert_msg(opt && tr, "%s", ad_error());
    ck_assert_int_eq(nn_trainer_set_threads(tr, threads), 0);
    ck_assert_int_eq(nn_trainer_set_thread_mode(tr, mode), 0);
    for (int step = 0; step < 3; step++) {
        /* a batch of 4: the batch split has something to split */
        layer_row big = *r;
        big.shape[0] = 4;
        ad_tensor *x = input_of(&big, 10 * row + step);
        ad_tensor *tg = target;
        if (ad_size(target, 0) != 4) { /* the target's batch follows x's */
            int64_t sh[5];
            for (int d = 0; d < ad_ndim(target); d++) sh[d] = ad_size(target, d);
            sh[0] = 4;
            tg = ad_zeros(NULL, F64, ad_ndim(target), sh);
        }
        ck_assert_msg(nn_trainer_step(tr, x, tg, NULL) == 0, "%s (%s), step %d: %s", r->ctor,
                      r->what, step, ad_error());
        if (tg != target) ad_tensor_free(tg);
        ad_tensor_free(x);
    }
    /* the batch split ran (one recording per shard), for a model it
     * takes: one without random streams or buffers (trainer.c) */
    nn_named_tensors *bufs = nn_buffers(m);
    ck_assert(bufs != NULL);
    if (threads == 2 && mode == NN_THREADS_BATCH && !has_stream(m) && bufs->n == 0) {
        nn_trainer_stats st;
        ck_assert_int_eq(nn_trainer_get_stats(tr, &st), 0);
        ck_assert_msg(st.recordings == 2, "%s (%s): the batch split did not run (%d recordings)",
                      r->ctor, r->what, st.recordings);
    }
    nn_named_tensors_free(bufs);
    nn_named_tensors *sd = nn_state_dict(m);
    ck_assert(sd != NULL);
    double *v = values_of(sd, n);
    nn_named_tensors_free(sd);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    ad_tensor_free(target);
    nn_module_free(m);
    return v;
}

/* The trainer records a step once and replays it on the next batches;
 * recorded afresh at every step (no_replay) it must give the same bits. */
START_TEST(trainer_replay_matches_fresh_steps)
{
    const layer_row *r = &rows[_i];
    int64_t n0, n1;
    double *replayed = train_three_steps(r, _i, false, 1, NN_THREADS_AUTO, &n0);
    if (!replayed) return;
    double *fresh = train_three_steps(r, _i, true, 1, NN_THREADS_AUTO, &n1);
    ck_assert_int_eq(n0, n1);
    for (int64_t k = 0; k < n0; k++)
        ck_assert_msg(memcmp(&replayed[k], &fresh[k], sizeof(double)) == 0,
                      "%s (%s): after 3 steps, state element %lld is %.17g replayed, %.17g "
                      "recorded afresh",
                      r->ctor, r->what, (long long)k, replayed[k], fresh[k]);
    free(replayed);
    free(fresh);
}
END_TEST

/* Two threads, the batch split or the products split among them, train
 * as one does: the shards' gradients add in another order, so to a few
 * roundings (float64), not bit for bit. */
START_TEST(trainer_threads_match_one_thread)
{
    const layer_row *r = &rows[_i];
    int64_t n0, n1;
    double *one = train_three_steps(r, _i, false, 1, NN_THREADS_AUTO, &n0);
    if (!one) return;
    for (int mode = 0; mode < 2; mode++) {
        nn_thread_mode tm = mode ? NN_THREADS_OPS : NN_THREADS_BATCH;
        double *two = train_three_steps(r, _i, false, 2, tm, &n1);
        ck_assert_int_eq(n0, n1);
        for (int64_t k = 0; k < n0; k++)
            ck_assert_msg(fabs(one[k] - two[k]) <= 1e-12 * (1 + fabs(one[k])),
                          "%s (%s): after 3 steps on 2 threads (%s), state element %lld is "
                          "%.17g, on one thread %.17g",
                          r->ctor, r->what, mode ? "ops" : "batch", (long long)k, two[k], one[k]);
        free(two);
    }
    free(one);
}
END_TEST

/* The same layer in float32 (its float32 kernels: the fused recurrences,
 * convolution tiles, attention, epilogues) computes what it does in
 * float64: built in both, the float64 weights copied into the float32
 * model, in eval mode; outputs within 1e-4 and input gradients within 1e-3
 * of the float64 ones, relative to the largest. */
static double *eval_and_grad(const layer_row *r, nn_module *m, ad_tensor *x, int64_t *n,
                             double **gx)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *xt = ad_copy(t, x);
    if (r->imax == 0) ck_assert_int_eq(ad_set_requires_grad(xt, true), 0);
    ck_assert_int_eq(nn_eval(m), 0);
    ad_tensor *y = nn_forward(m, xt);
    ck_assert_msg(y != NULL, "%s (%s), %s: %s", r->ctor, r->what,
                  ad_dtype_name(ad_tensor_dtype(x)), ad_error());
    *n = ad_numel(y);
    double *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    ck_assert_int_eq(ad_to_array(y, v), 0);
    *gx = NULL;
    if (r->imax == 0) {
        ad_tensor *w = ad_empty(t, ad_tensor_dtype(y), ad_ndim(y), ad_shape(y));
        ad_tensor *wf = ad_reshape(w, 1, (int64_t[]){*n});
        for (int64_t k = 0; k < *n; k++) ad_set(wf, (int64_t[]){k}, 0.5 + 0.25 * (double)(k % 3));
        ck_assert_msg(ad_backward(y, w, 0) == 0, "%s", ad_error());
        *gx = malloc((size_t)ad_numel(x) * sizeof **gx);
        ck_assert_int_eq(ad_to_array(ad_tensor_grad(xt), *gx), 0);
    }
    ad_tape_activate(prev);
    ad_tape_free(t);
    return v;
}

static double largest(const double *v, int64_t n)
{
    double m = 0;
    for (int64_t k = 0; k < n; k++) m = fmax(m, fabs(v[k]));
    return m;
}

START_TEST(float32_matches_float64)
{
    const layer_row *r = &rows[_i];
    nn_module *m64 = make(r);
    layer_dt = AD_FLOAT32;
    nn_module *m32 = make(r);
    layer_dt = AD_FLOAT64;
    nn_named_tensors *s64 = nn_state_dict(m64), *s32 = nn_state_dict(m32);
    ck_assert(s64 && s32 && s64->n == s32->n);
    for (int i = 0; i < s64->n; i++)
        ck_assert_msg(ad_copy_into(s32->tensors[i], s64->tensors[i]) == 0, "%s", ad_error());
    ad_tensor *x64 = input_of(r, _i), *x32 = x64;
    if (r->imax == 0) {
        x32 = ad_empty(NULL, AD_FLOAT32, ad_ndim(x64), ad_shape(x64));
        ck_assert_int_eq(ad_copy_into(x32, x64), 0);
    }
    int64_t n64, n32;
    double *g64, *g32;
    double *v64 = eval_and_grad(r, m64, x64, &n64, &g64);
    double *v32 = eval_and_grad(r, m32, x32, &n32, &g32);
    ck_assert_int_eq(n64, n32);
    double big = largest(v64, n64);
    for (int64_t k = 0; k < n64; k++)
        ck_assert_msg(fabs(v64[k] - v32[k]) <= 1e-4 * (1 + big),
                      "%s (%s): float32 output %lld = %.9g, float64 %.9g", r->ctor, r->what,
                      (long long)k, v32[k], v64[k]);
    if (g64) {
        int64_t nx = ad_numel(x64);
        double gbig = largest(g64, nx);
        for (int64_t k = 0; k < nx; k++)
            ck_assert_msg(fabs(g64[k] - g32[k]) <= 1e-3 * (1 + gbig),
                          "%s (%s): float32 input gradient %lld = %.9g, float64 %.9g", r->ctor,
                          r->what, (long long)k, g32[k], g64[k]);
    }
    free(v64);
    free(v32);
    free(g64);
    free(g32);
    nn_named_tensors_free(s64);
    nn_named_tensors_free(s32);
    if (x32 != x64) ad_tensor_free(x32);
    ad_tensor_free(x64);
    nn_module_free(m64);
    nn_module_free(m32);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nn_layers");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, every_layer_has_a_row);
    tcase_add_loop_test(tc, parameter_gradients, 0, NROWS);
    tcase_add_loop_test(tc, input_gradient, 0, NROWS);
    tcase_add_loop_test(tc, reads_what_it_registers, 0, NROWS);
    tcase_add_loop_test(tc, forward_changes_nothing_it_should_not, 0, NROWS);
    tcase_add_loop_test(tc, checkpoint_carries_the_layer, 0, NROWS);
    tcase_add_loop_test(tc, trainer_replay_matches_fresh_steps, 0, NROWS);
    tcase_add_loop_test(tc, trainer_threads_match_one_thread, 0, NROWS);
    tcase_add_loop_test(tc, float32_matches_float64, 0, NROWS);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

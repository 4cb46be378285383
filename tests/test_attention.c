/* tests/test_attention.c - attention and the transformer block
 * (nn/transformer.h): gradcheck and gradgradcheck in float64 of
 * self-attention (with and without the causal mask) with respect to the
 * input and every weight, of the positional embedding and of the block
 * with respect to its input; agreement with PyTorch's MultiheadAttention
 * and TransformerEncoderLayer(norm_first, gelu, causal mask) on fixed
 * weights loaded by PyTorch's names from tests/data/rnn_reference.safetensors;
 * causality; dropout; a checkpointed block with dropout against the
 * plain one, to the bit; bad inputs. */
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static void ok(int rc) { ck_assert_msg(rc == 0, "%s", ad_error()); }
static void nonnull(const void *p) { ck_assert_msg(p != NULL, "%s", ad_error()); }

/* ---- gradcheck ------------------------------------------------------------------ */

static ad_tensor *attn_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    bool causal = *(bool *)ctx;
    return nn_self_attention(in[0], in[1], in[2], in[3], in[4], 2, causal, 0, false, NULL);
}

START_TEST(gradcheck_self_attention)
{
    ad_rng rng;
    ad_rng_init(&rng, 21);
    ad_tensor *in[5] = {ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(2, 3, 4), 0, 1),
                        ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(12, 4), 0, 0.5),
                        ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(12), 0, 0.3),
                        ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(4, 4), 0, 0.5),
                        ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(4), 0, 0.3)};
    for (int i = 0; i < 5; i++) ok(ad_set_requires_grad(in[i], true));
    for (int c = 0; c < 2; c++) {
        bool causal = c;
        ck_assert_msg(ad_gradcheck(attn_f, &causal, 5, in, NULL) == 1, "%s", ad_error());
        ck_assert_msg(ad_gradgradcheck(attn_f, &causal, 5, in, NULL) == 1, "%s", ad_error());
    }
    for (int i = 0; i < 5; i++) ad_tensor_free(in[i]);
}
END_TEST

static ad_tensor *module_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    return nn_forward(ctx, in[0]);
}

/* The modules with respect to their input (their parameters are the
 * functional forms' inputs above, and Linear's and LayerNorm's ops have
 * rows of their own in test_ops). */
START_TEST(gradcheck_modules)
{
    ad_rng rng;
    ad_rng_init(&rng, 22);
    nn_module *mods[3] = {nn_transformer_block(4, 2, 8, 0, AD_FLOAT64, &rng, 1),
                          nn_positional_embedding(5, 4, AD_FLOAT64, &rng),
                          nn_multihead_attention(4, 2, 0, true, true, AD_FLOAT64, &rng, 2)};
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(2, 3, 4), 0, 1);
    ok(ad_set_requires_grad(x, true));
    for (int i = 0; i < 3; i++) {
        nonnull(mods[i]);
        ck_assert_msg(ad_gradcheck(module_f, mods[i], 1, &x, NULL) == 1, "%d: %s", i, ad_error());
        ck_assert_msg(ad_gradgradcheck(module_f, mods[i], 1, &x, NULL) == 1, "%d: %s", i,
                      ad_error());
        nn_module_free(mods[i]);
    }
    ad_tensor_free(x);
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
    double worst = 0;
    for (int64_t i = 0; i < ad_numel(got); i++) {
        double e = fabs(ot_at(got, i) - ot_at(want, i));
        if (e > worst) worst = e;
    }
    ck_assert_msg(worst < 1e-10, "%s %s differs from PyTorch by %g", key, what, worst);
}

static void check_against_torch(const char *key, nn_module *m)
{
    nonnull(m);
    nn_named_tensors *sd = nn_state_dict(m);
    nonnull(sd);
    const char *names[32];
    char store[32][96];
    ck_assert_int_le(sd->n, 32);
    for (int i = 0; i < sd->n; i++) {
        snprintf(store[i], sizeof store[i], "%s.%s", key, sd->names[i]);
        names[i] = store[i];
    }
    ok(nn_load_safetensors(data_path(), sd->n, names, sd->tensors, false));
    ad_tensor *x = ref(key, "x"), *r = ref(key, "r_out");
    ok(ad_set_requires_grad(x, true));
    ad_tensor *y = nn_forward(m, x);
    ok(ad_backward(ad_sum(ad_mul(y, r), NULL, 0, false), NULL, 0));
    ad_tensor *w = ref(key, "out");
    assert_close(y, w, "output", key);
    ad_tensor_free(w);
    w = ref(key, "grad.x");
    assert_close(ad_tensor_grad(x), w, "dE/dx", key);
    ad_tensor_free(w);
    for (int i = 0; i < sd->n; i++) {
        char what[96];
        snprintf(what, sizeof what, "grad.%s", sd->names[i]);
        w = ref(key, what);
        assert_close(ad_tensor_grad(sd->tensors[i]), w, what, key);
        ad_tensor_free(w);
    }
    ad_tensor_free(x);
    ad_tensor_free(r);
    nn_named_tensors_free(sd);
    nn_module_free(m);
}

START_TEST(agrees_with_pytorch)
{
    ad_rng rng;
    ad_rng_init(&rng, 23);
    check_against_torch("mha", nn_multihead_attention(8, 2, 0, true, true, AD_FLOAT64, &rng, 1));
    check_against_torch("block", nn_transformer_block(8, 2, 16, 0, AD_FLOAT64, &rng, 1));
}
END_TEST

/* ---- behaviour -------------------------------------------------------------------------- */

/* Under the causal mask, output t depends on inputs 0..t only. */
/* ad_causal_attention (one op) against the composition it replaced:
 * views of qkv, two batched products, ad_softmax_causal and the copy that
 * puts the heads side by side.  The same products and softmax, so y is
 * the same bits; the gradient agrees to rounding (dk is computed as
 * dS^T q rather than as the transpose of q^T dS). */
static ad_tensor *composed(ad_tensor *qkv, int64_t heads, double scale)
{
    int64_t B = ad_size(qkv, 0), T = ad_size(qkv, 1), D = ad_size(qkv, 2) / 3, d = D / heads;
    ad_tensor *x = ad_permute(ad_reshape(qkv, 5, (int64_t[]){B, T, 3, heads, d}),
                              (int[]){2, 0, 3, 1, 4});
    ad_tensor *q = ad_squeeze(ad_narrow(x, 0, 0, 1), 0), *k = ad_squeeze(ad_narrow(x, 0, 1, 1), 0);
    ad_tensor *v = ad_squeeze(ad_narrow(x, 0, 2, 1), 0);
    ad_tensor *a = ad_softmax_causal(ad_matmul(q, ad_transpose(k, 2, 3)), scale);
    ad_tensor *o = ad_contiguous(ad_permute(ad_matmul(a, v), (int[]){0, 2, 1, 3}));
    return ad_reshape(o, 3, (int64_t[]){B, T, D});
}

START_TEST(fused_attention_matches_composition)
{
    for (int f = 0; f < 2; f++) {
        ad_dtype dt = f ? AD_FLOAT32 : AD_FLOAT64;
        ad_rng rng;
        ad_rng_init(&rng, 31);
        ad_tensor *qkv = ad_randn(ot_tape, &rng, dt, AD_SHAPE(3, 7, 24), 0, 1);
        ad_tensor *r = ad_randn(ot_tape, &rng, dt, AD_SHAPE(3, 7, 8), 0, 1);
        ok(ad_set_requires_grad(qkv, true));
        ad_tensor *y[2] = {ad_causal_attention(qkv, 4, 0.7), composed(qkv, 4, 0.7)}, *g[2];
        for (int i = 0; i < 2; i++) {
            nonnull(y[i]);
            ad_tensor *l = ad_sum(ad_mul(y[i], r), NULL, 0, false);
            ok(ad_gradients(l, NULL, 1, &qkv, &g[i], 0));
        }
        for (int64_t i = 0; i < 3 * 7 * 8; i++)
            ck_assert_msg(ot_at(y[0], i) == ot_at(y[1], i), "%s y[%lld]: %.9g vs %.9g",
                          ad_dtype_name(dt), (long long)i, ot_at(y[0], i), ot_at(y[1], i));
        double tol = f ? 2e-6 : 1e-14;
        for (int64_t i = 0; i < 3 * 7 * 24; i++)
            ck_assert_close(ot_at(g[0], i), ot_at(g[1], i), tol);
        ad_tape_reset(ot_tape);
    }
}
END_TEST

START_TEST(causal_mask_hides_the_future)
{
    ad_rng rng;
    ad_rng_init(&rng, 24);
    nn_module *m = nn_transformer_block(4, 2, 8, 0, AD_FLOAT64, &rng, 1);
    ad_tensor *x = ad_randn(ot_tape, &rng, AD_FLOAT64, AD_SHAPE(1, 5, 4), 0, 1);
    ad_tensor *y = nn_forward(m, x);
    nonnull(y);
    double before[20];
    for (int i = 0; i < 20; i++) before[i] = ot_at(y, i);
    ok(ad_set(x, (int64_t[]){0, 3, 1}, 7.0)); /* change step 3 */
    y = nn_forward(m, x);
    for (int t = 0; t < 5; t++)
        for (int j = 0; j < 4; j++) {
            bool same = ot_at(y, t * 4 + j) == before[t * 4 + j];
            ck_assert_msg(same == (t < 3), "step %d changed: %d", t, !same);
        }
    nn_module_free(m);
}
END_TEST

START_TEST(dropout_in_training_only)
{
    ad_rng rng;
    ad_rng_init(&rng, 25);
    nn_module *m = nn_multihead_attention(4, 2, 0.5, true, true, AD_FLOAT64, &rng, 3);
    ad_tensor *x = ad_randn(ot_tape, &rng, AD_FLOAT64, AD_SHAPE(2, 4, 4), 0, 1);
    ad_tensor *ya = nn_forward(m, x), *yb = nn_forward(m, x);
    ok(nn_eval(m));
    ad_tensor *e1 = nn_forward(m, x), *e2 = nn_forward(m, x);
    nonnull(ya);
    nonnull(yb);
    nonnull(e1);
    nonnull(e2);
    bool differ = false;
    for (int i = 0; i < 32; i++) {
        differ |= ot_at(ya, i) != ot_at(yb, i); /* a new mask each call */
        ck_assert(ot_at(e1, i) == ot_at(e2, i));
    }
    ck_assert(differ);
    char d[96];
    nn_module_describe(m, d, sizeof d);
    ck_assert_str_eq(d, "MultiheadAttention(d_model=4, heads=2, dropout=0.5, causal)");
    nn_module_free(m);
}
END_TEST

/* Gradient checkpointing of a block with dropout: two blocks made alike,
 * one checkpointed, give the same loss and the same gradients to the
 * bit over two steps - the recomputation draws the dropout masks the
 * first run drew, and leaves the streams where the plain block leaves
 * them, so the second step's masks agree too. */
START_TEST(checkpointed_block_matches_plain)
{
    nn_module *b[2];
    for (int k = 0; k < 2; k++) {
        ad_rng rng;
        ad_rng_init(&rng, 5);
        b[k] = nn_transformer_block(8, 2, 16, 0.2, AD_FLOAT32, &rng, 9);
        nonnull(b[k]);
    }
    ok(nn_transformer_block_set_checkpoint(b[1], true));
    nn_named_tensors *p[2] = {nn_parameters(b[0]), nn_parameters(b[1])};
    for (int step = 0; step < 2; step++) {
        double loss[2];
        void *g0[64] = {0};
        for (int k = 0; k < 2; k++) {
            ad_rng r;
            ad_rng_init(&r, 20 + (uint64_t)step);
            ad_tensor *x = ad_randn(ot_tape, &r, AD_FLOAT32, AD_SHAPE(2, 5, 8), 0, 1);
            ok(ad_set_requires_grad(x, true));
            for (int i = 0; i < p[k]->n; i++) ok(ad_zero_grad(p[k]->tensors[i]));
            ad_tensor *y = nn_forward(b[k], x);
            nonnull(y);
            ad_tensor *E = ad_sum(ad_mul(y, y), NULL, 0, false);
            ok(ad_backward(E, NULL, 0));
            loss[k] = ad_item(E);
            for (int i = 0; i <= p[k]->n && i < 64; i++) {
                ad_tensor *g = ad_contiguous(ad_tensor_grad(i < p[k]->n ? p[k]->tensors[i] : x));
                nonnull(g);
                size_t nb = (size_t)ad_numel(g) * sizeof(float);
                if (k == 0) {
                    g0[i] = malloc(nb);
                    memcpy(g0[i], ad_data(g), nb);
                } else {
                    ck_assert_msg(memcmp(g0[i], ad_data(g), nb) == 0,
                                  "step %d: gradient of %s differs with checkpointing", step,
                                  i < p[k]->n ? p[k]->names[i] : "x");
                }
            }
            ok(ad_tape_reset(ot_tape));
        }
        ck_assert(loss[0] == loss[1]);
        for (int i = 0; i < 64; i++) free(g0[i]);
    }
    ck_assert_error_rc(nn_transformer_block_set_checkpoint(p[0]->n ? NULL : b[0], true),
                       "nn_transformer_block_set_checkpoint: argument 'm' is NULL");
    ck_assert_error_rc(nn_transformer_block_set_checkpoint(nn_child(b[0], 0), true),
                       "the module is a MultiheadAttention, not a TransformerBlock");
    nn_named_tensors_free(p[0]);
    nn_named_tensors_free(p[1]);
    nn_module_free(b[0]);
    nn_module_free(b[1]);
}
END_TEST

START_TEST(names_and_bad_inputs)
{
    ad_rng rng;
    ad_rng_init(&rng, 26);
    nn_module *b = nn_transformer_block(8, 2, 16, 0.1, AD_FLOAT32, &rng, 1);
    nonnull(b);
    nn_named_tensors *p = nn_parameters(b);
    static const char *const want[] = {
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight",
        "linear2.bias", "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"};
    ck_assert_int_eq(p->n, 12);
    for (int i = 0; i < 12; i++) ck_assert_str_eq(p->names[i], want[i]);
    nn_named_tensors_free(p);
    ck_assert_ptr_null(nn_forward(b, ad_zeros(ot_tape, AD_FLOAT32, AD_SHAPE(2, 3, 6))));
    ck_assert_msg(strstr(ad_error(), "x is [2,3,6], expected [batch, time, 8]"), "%s", ad_error());
    ad_clear_error();
    nn_module_free(b);

    ck_assert_ptr_null(nn_multihead_attention(6, 4, 0, true, true, AD_FLOAT32, &rng, 0));
    ck_assert_str_eq(ad_error(),
                     "nn_multihead_attention: d_model (6) must be a positive multiple of heads (4)");
    ck_assert_ptr_null(nn_multihead_attention(8, 4, 1.0, true, true, AD_FLOAT32, &rng, 0));
    ck_assert_str_eq(ad_error(), "nn_multihead_attention: dropout must be in [0, 1), got 1");
    nn_module *pe = nn_positional_embedding(4, 8, AD_FLOAT32, &rng);
    ck_assert_ptr_null(nn_forward(pe, ad_zeros(ot_tape, AD_FLOAT32, AD_SHAPE(1, 5, 8))));
    ck_assert_msg(strstr(ad_error(), "x is [1,5,8], expected [batch, time <= 4, 8]"), "%s",
                  ad_error());
    ad_clear_error();
    nn_module_free(pe);
    ad_tensor *x = ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(1, 2, 4));
    ad_tensor *w = ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(12, 4));
    ad_tensor *wo = ad_zeros(ot_tape, AD_FLOAT64, AD_SHAPE(4, 3));
    ck_assert_ptr_null(nn_self_attention(x, w, NULL, wo, NULL, 2, true, 0, false, NULL));
    ck_assert_str_eq(ad_error(), "nn_self_attention: w_out is [4,3] float64, expected [4,4] float64");
    ck_assert_ptr_null(nn_self_attention(x, w, NULL, wo, NULL, 3, true, 0, false, NULL));
    ck_assert_str_eq(ad_error(), "nn_self_attention: d_model 4 is not a multiple of heads 3");
    ad_clear_error();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("attention");
    TCase *tc = tcase_create("gradcheck");
    tcase_add_test(tc, gradcheck_self_attention);
    tcase_add_test(tc, gradcheck_modules);
    suite_add_tcase(s, tc);
    tc = tcase_create("modules");
    tcase_add_checked_fixture(tc, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(tc, agrees_with_pytorch);
    tcase_add_test(tc, fused_attention_matches_composition);
    tcase_add_test(tc, causal_mask_hides_the_future);
    tcase_add_test(tc, dropout_in_training_only);
    tcase_add_test(tc, checkpointed_block_matches_plain);
    tcase_add_test(tc, names_and_bad_inputs);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

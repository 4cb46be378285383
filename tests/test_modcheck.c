/* tests/test_modcheck.c - nn_gradcheck (nn/modcheck.h): right modules
 * pass in float64 and float32, training-mode dropout included, and the
 * model is left bit for bit as it was; a hand-built layer with a wrong
 * backward fails with the parameter and element named; errors. */
#include <nn/nn.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static ad_tensor *randn(ad_dtype dt, int64_t r, int64_t c, uint64_t seed)
{
    ad_rng rng;
    ad_rng_init(&rng, seed);
    ad_tensor *t = ad_randn(NULL, &rng, dt, 2, (int64_t[]){r, c}, 0, 1);
    ck_assert(t != NULL);
    return t;
}

static nn_module *mlp(ad_dtype dt, bool dropout)
{
    ad_rng rng;
    ad_rng_init(&rng, 3);
    nn_module *m = dropout ? NN_SEQUENTIAL(nn_linear(3, 5, true, dt, &rng), nn_tanh(),
                                           nn_dropout(0.5, 11), nn_linear(5, 2, true, dt, &rng))
                           : NN_SEQUENTIAL(nn_linear(3, 5, true, dt, &rng), nn_tanh(),
                                           nn_linear(5, 2, true, dt, &rng));
    ck_assert(m != NULL);
    return m;
}

START_TEST(right_modules_pass)
{
    for (int f = 0; f < 2; f++) {
        ad_dtype dt = f ? AD_FLOAT32 : AD_FLOAT64;
        nn_module *m = mlp(dt, false);
        ad_tensor *x = randn(dt, 4, 3, 1), *y = randn(dt, 4, 2, 2);
        ck_assert_msg(nn_gradcheck(m, x, y, nn_mse_loss, NULL) == 1, "%s: %s", ad_dtype_name(dt),
                      ad_error());
        ck_assert_msg(nn_gradcheck(m, x, NULL, NULL, NULL) == 1, "%s", ad_error());
        /* a frozen parameter is not checked (its zero gradient is no
         * error); with every one frozen nothing is */
        nn_named_tensors *ps = nn_parameters(m);
        ck_assert_int_eq(ad_set_requires_grad(ps->tensors[0], false), 0);
        ck_assert_msg(nn_gradcheck(m, x, y, nn_mse_loss, NULL) == 1, "%s", ad_error());
        for (int i = 1; i < ps->n; i++) ad_set_requires_grad(ps->tensors[i], false);
        ck_assert_int_eq(nn_gradcheck(m, x, y, nn_mse_loss, NULL), 0);
        ck_assert_msg(strstr(ad_error(), "nothing was checked"), "%s", ad_error());
        nn_named_tensors_free(ps);
        ad_tensor_free(x);
        ad_tensor_free(y);
        nn_module_free(m);
    }
}
END_TEST

START_TEST(dropout_in_training_and_model_untouched)
{
    nn_module *m = mlp(AD_FLOAT64, true);
    ad_tensor *x = randn(AD_FLOAT64, 6, 3, 1);
    ad_tensor *w = nn_get_parameter(m, "0.weight");
    double before[15];
    memcpy(before, ad_data(w), sizeof before);
    ad_rng rng_before = *nn_module_rng(nn_child(m, 2));
    ck_assert(nn_is_training(m));
    ck_assert_msg(nn_gradcheck(m, x, NULL, NULL, NULL) == 1, "%s", ad_error());
    ck_assert(memcmp(before, ad_data(w), sizeof before) == 0);
    ck_assert_ptr_null(ad_tensor_grad(w)); /* grads are not touched */
    ck_assert_uint_eq(nn_module_rng(nn_child(m, 2))->counter, rng_before.counter);
    ad_tensor_free(x);
    nn_module_free(m);
}
END_TEST

/* A hand-built layer y = x * s (s [3]) through a custom op whose backward
 * for s is twice too large. */
static ad_tensor *smul_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    return ad_custom_save(ctx, 2, in) ? NULL : ad_mul(in[0], in[1]);
}
static int smul_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    ad_tensor *x = ad_custom_saved(ctx, 0), *s = ad_custom_saved(ctx, 1);
    if (ad_custom_needs_input_grad(ctx, 0)) gin[0] = ad_mul(g, s);
    if (ad_custom_needs_input_grad(ctx, 1))
        gin[1] = ad_mul_scalar(ad_sum_to(ad_mul(g, x), 1, ad_shape(s)), 2); /* wrong: x2 */
    return 0;
}
static ad_custom *smul;
static ad_tensor *scale_fwd(nn_module *m, ad_tensor *x)
{
    return ad_custom_call(smul, 2, (ad_tensor *[]){x, nn_get_parameter(m, "s")});
}
static const nn_module_type SCALE = {"Scale", scale_fwd, NULL, NULL};

START_TEST(wrong_layer_is_named)
{
    smul = ad_custom_new(&(ad_custom_desc){.name = "smul", .nin = 2, .forward = smul_fw,
                                           .backward = smul_bw});
    nn_module *scale = nn_module_new(&SCALE, NULL);
    int64_t three = 3;
    ck_assert_int_eq(nn_module_add_parameter(scale, "s", ad_from_array(NULL, AD_FLOAT64, 1, &three,
                                                                   (double[]){0.5, -1, 2})), 0);
    ad_rng rng;
    ad_rng_init(&rng, 3);
    nn_module *m = NN_SEQUENTIAL(nn_linear(2, 3, true, AD_FLOAT64, &rng), scale);
    ad_tensor *x = randn(AD_FLOAT64, 4, 2, 5);
    ck_assert_int_eq(nn_gradcheck(m, x, NULL, NULL, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "nn_gradcheck: 3 of 12 parameter gradient entries disagree; "
                                     "the worst: '1.s' element ["),
                  "%s", ad_error());
    ad_tensor_free(x);
    nn_module_free(m);
    ad_custom_free(smul);
}
END_TEST

START_TEST(errors)
{
    nn_module *m = mlp(AD_FLOAT64, false);
    ad_tensor *x = randn(AD_FLOAT64, 4, 3, 1), *bad = randn(AD_FLOAT64, 4, 7, 1);
    ck_assert_error_rc(nn_gradcheck(NULL, x, NULL, NULL, NULL), "argument 'm' is NULL");
    ck_assert_error_rc(nn_gradcheck(m, NULL, NULL, NULL, NULL), "argument 'x' is NULL");
    ck_assert_error_rc(nn_gradcheck(m, bad, NULL, NULL, NULL), "input has 7 features");
    ck_assert_error_rc(nn_gradcheck(m, x, NULL, NULL, &(ad_gradcheck_opts){0, 1e-5, 1e-3, NULL}),
                       "eps must be > 0");
    nn_module *relu = nn_relu();
    ck_assert_int_eq(nn_gradcheck(relu, x, NULL, NULL, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "nothing was checked"), "%s", ad_error());
    nn_module_free(relu);
    ad_tensor_free(x);
    ad_tensor_free(bad);
    nn_module_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("modcheck");
    TCase *tc = tcase_create("modcheck");
    tcase_add_test(tc, right_modules_pass);
    tcase_add_test(tc, dropout_in_training_and_model_untouched);
    tcase_add_test(tc, wrong_layer_is_named);
    tcase_add_test(tc, errors);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

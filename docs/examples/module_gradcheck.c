/* docs/examples/module_gradcheck.c - checking a hand-built layer's
 * gradients in one call (nn/modcheck.h).
 *
 * A layer of your own: y = x * scale + shift, per feature, with its own
 * parameters, written as an nn module type.  Its forward goes through a
 * custom op (autodiff/custom.h) whose backward we write by hand, the part
 * that can be wrong.  nn_gradcheck compares the gradients backward gives
 * every parameter of the model with central differences of the loss.
 * The right backward passes; one with a slip (the gradient of scale
 * forgets g) fails, and the message names the parameter and the element.
 * Exits 1 unless both verdicts are as expected.
 */
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>

/* y = x * s + b, x [batch, n], s and b [n] */
static ad_tensor *affine_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *user)
{
    (void)n, (void)user;
    if (ad_custom_save(ctx, 2, in)) return NULL; /* x, s */
    return ad_add(ad_mul(in[0], in[1]), in[2]);
}
static int affine_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *user)
{
    bool slip = user != NULL;
    ad_tensor *x = ad_custom_saved(ctx, 0), *s = ad_custom_saved(ctx, 1);
    int64_t n = ad_size(s, 0);
    if (ad_custom_needs_input_grad(ctx, 0)) gin[0] = ad_mul(g, s);
    if (ad_custom_needs_input_grad(ctx, 1))               /* sum over the batch of g x */
        gin[1] = ad_sum_to(slip ? x : ad_mul(g, x), 1, &n);
    if (ad_custom_needs_input_grad(ctx, 2)) gin[2] = ad_sum_to(g, 1, &n);
    return 0;
}

static ad_tensor *affine_forward(nn_module *m, ad_tensor *x)
{
    ad_custom *op = nn_module_state(m);
    ad_tensor *in[3] = {x, nn_get_parameter(m, "scale"), nn_get_parameter(m, "shift")};
    return ad_custom_call(op, 3, in);
}
static void free_op(void *op) { ad_custom_free(op); }
static const nn_module_type AFFINE = {"Affine", affine_forward, free_op, NULL};

static nn_module *affine(int64_t n, bool slip, ad_rng *rng)
{
    ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "affine", .nin = 3,
                                                    .forward = affine_fw, .backward = affine_bw,
                                                    .user = slip ? "slip" : NULL});
    nn_module *m = op ? nn_module_new(&AFFINE, op) : NULL;
    if (!m) return NULL;
    if (nn_module_add_parameter(m, "scale", ad_rand(NULL, rng, AD_FLOAT64, 1, &n, 0.5, 1.5)) ||
        nn_module_add_parameter(m, "shift", ad_rand(NULL, rng, AD_FLOAT64, 1, &n, -1, 1))) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

int main(void)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(6, 4), 0, 1);
    ad_tensor *y = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(6, 2), 0, 1);
    int verdict[2];
    for (int slip = 0; slip < 2; slip++) {
        /* float64, so the check is sharp (see nn/modcheck.h) */
        nn_module *net = NN_SEQUENTIAL(affine(4, slip, &rng), nn_tanh(),
                                       nn_linear(4, 2, true, AD_FLOAT64, &rng));
        if (!net) return fprintf(stderr, "%s\n", ad_error()), 1;
        verdict[slip] = nn_gradcheck(net, x, y, nn_mse_loss, NULL);
        printf("%s backward: nn_gradcheck %s\n", slip ? "slipped" : "right",
               verdict[slip] == 1 ? "passes" : ad_error());
        nn_module_free(net);
    }
    ad_tensor_free(x);
    ad_tensor_free(y);
    int bad = verdict[0] != 1 || verdict[1] != 0;
    printf(bad ? "FAILED\n" : "ok\n");
    return bad;
}

/* tests/test_custom.c - custom ops: a forward and a backward written by the
 * user (autodiff/custom.h).
 *
 *   values     forward values and gradients against closed forms; the
 *              third derivative of a custom exp through its saved output;
 *              the Hessian of x^2 sin z; results without a tape; replay;
 *   first      a first_order backward on raw buffers: right gradients, a
 *              clear error from a second derivative and from
 *              ad_gradgradcheck; the same backward without the flag
 *              caught by ad_custom_check;
 *   check      ad_custom_check passing a right backward and naming the
 *              worst entry of a wrong one;
 *   errors     every bad descriptor, call and backward result, and a saved
 *              tensor modified in place. */
#include <stdlib.h>
#include <string.h>

#include "optest.h"

#define T ot_tape

static ad_tensor *vec(int64_t n, const double *v, bool rg)
{
    ad_tensor *t = ad_from_array(T, AD_FLOAT64, 1, &n, v);
    ck_assert(t != NULL);
    if (rg) ck_assert_int_eq(ad_set_requires_grad(t, true), 0);
    return t;
}

/* ---- ops used below ---------------------------------------------------------------- */

/* y = x^2 sin z */
static ad_tensor *x2sin_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n;
    if (u) ++*(int *)u; /* counts forward calls */
    if (ad_custom_save(ctx, 2, in)) return NULL;
    return ad_mul(ad_mul(in[0], in[0]), ad_sin(in[1]));
}
static int x2sin_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    ad_tensor *x = ad_custom_saved(ctx, 0), *z = ad_custom_saved(ctx, 1);
    if (ad_custom_needs_input_grad(ctx, 0))
        gin[0] = ad_mul(g, ad_mul(ad_mul_scalar(x, 2), ad_sin(z)));
    if (ad_custom_needs_input_grad(ctx, 1)) gin[1] = ad_mul(g, ad_mul(ad_mul(x, x), ad_cos(z)));
    return 0;
}

/* y = e^x saving y */
static ad_tensor *exp_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    ad_tensor *y = ad_exp(in[0]);
    return ad_custom_save(ctx, 1, &y) ? NULL : y;
}
static int exp_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    gin[0] = ad_mul(g, ad_custom_saved(ctx, 0));
    return 0;
}

/* y = x^3 with a backward on raw buffers: dx = 3 x^2 g, by a loop */
static ad_tensor *cube_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    return ad_custom_save(ctx, 1, in) ? NULL : ad_mul(in[0], ad_mul(in[0], in[0]));
}
static int cube_bw_raw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    ad_tensor *x = ad_custom_saved(ctx, 0);
    ad_tensor *xc = ad_copy(ad_custom_tape(ctx), x), *gc = ad_copy(ad_custom_tape(ctx), g);
    ad_tensor *d = ad_empty(ad_custom_tape(ctx), AD_FLOAT64, ad_ndim(x), ad_shape(x));
    if (!xc || !gc || !d) return -1;
    const double *xv = ad_data(xc), *gv = ad_data(gc);
    double *dv = ad_data(d);
    for (int64_t i = 0; i < ad_numel(x); i++) dv[i] = 3 * xv[i] * xv[i] * gv[i];
    gin[0] = d;
    return 0;
}
/* a wrong derivative: 2 x^2 instead of 3 x^2 */
static int cube_bw_wrong(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    ad_tensor *x = ad_custom_saved(ctx, 0);
    gin[0] = ad_mul(g, ad_mul_scalar(ad_mul(x, x), 2));
    return 0;
}

/* ---- values ----------------------------------------------------------------------- */

START_TEST(values_and_gradients)
{
    int calls = 0;
    ad_custom *op = ad_custom_new(&(ad_custom_desc){
        .name = "x2sin", .nin = 2, .forward = x2sin_fw, .backward = x2sin_bw, .user = &calls});
    ck_assert(op != NULL);
    ck_assert_str_eq(ad_custom_name(op), "custom:x2sin");
    ad_tensor *x = vec(3, (double[]){1, -2, 0.5}, true), *z = vec(3, (double[]){0.3, 1, -2}, true);
    ad_tensor *y = ad_custom_call(op, 2, (ad_tensor *[]){x, z});
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(calls, 1);
    const double xv[] = {1, -2, 0.5}, zv[] = {0.3, 1, -2};
    for (int i = 0; i < 3; i++) ck_assert_close(ot_at(y, i), xv[i] * xv[i] * sin(zv[i]), 1e-15);
    ad_node_info info;
    ck_assert_int_eq(ad_tape_num_nodes(T), 1); /* the forward's own ops are not recorded */
    ck_assert_int_eq(ad_tape_node_info(T, 0, &info), 0);
    ck_assert_str_eq(info.op, "custom:x2sin");
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_close(ot_at(ad_tensor_grad(x), i), 2 * xv[i] * sin(zv[i]), 1e-15);
        ck_assert_close(ot_at(ad_tensor_grad(z), i), xv[i] * xv[i] * cos(zv[i]), 1e-15);
    }
    ad_custom_free(op);
}
END_TEST

static ad_custom *g_exp;
static ad_tensor *f_exp(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    return ad_sum(ad_custom_call(g_exp, n, in), NULL, 0, false);
}

/* d^3/dx^3 e^x = e^x: the backward's mul by the saved output records a
 * node that leads back to the custom node, whose rule runs again. */
START_TEST(third_derivative_through_saved_output)
{
    g_exp = ad_custom_new(&(ad_custom_desc){.name = "exp", .nin = 1, .forward = exp_fw,
                                            .backward = exp_bw});
    ck_assert(g_exp != NULL);
    ad_tensor *x = vec(1, (double[]){0.7}, true);
    ad_tensor *y = f_exp(&x, 1, NULL), *g1 = NULL, *g2 = NULL, *g3 = NULL;
    ck_assert_int_eq(ad_gradients(y, NULL, 1, &x, &g1, AD_CREATE_GRAPH), 0);
    ck_assert_int_eq(ad_gradients(ad_sum(g1, NULL, 0, false), NULL, 1, &x, &g2, AD_CREATE_GRAPH), 0);
    ck_assert_int_eq(ad_gradients(ad_sum(g2, NULL, 0, false), NULL, 1, &x, &g3, 0), 0);
    ck_assert_close(ot_at(g1, 0), exp(0.7), 1e-14);
    ck_assert_close(ot_at(g2, 0), exp(0.7), 1e-14);
    ck_assert_close(ot_at(g3, 0), exp(0.7), 1e-14);
    ck_assert_int_eq(ad_gradgradcheck(f_exp, NULL, 1, &x, NULL), 1);
    ad_custom_free(g_exp);
}
END_TEST

static ad_custom *g_x2sin;
static ad_tensor *f_x2sin_packed(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *xz[2] = {ad_slice(in[0], 0, 0, 1, 1), ad_slice(in[0], 0, 1, 2, 1)};
    return ad_sum(ad_custom_call(g_x2sin, 2, xz), NULL, 0, false);
}

START_TEST(hessian_of_custom_op)
{
    g_x2sin = ad_custom_new(&(ad_custom_desc){.name = "x2sin", .nin = 2, .forward = x2sin_fw,
                                              .backward = x2sin_bw});
    ad_tensor *v = vec(2, (double[]){1.5, 0.4}, false), *H = NULL;
    ck_assert_msg(ad_hessian(T, f_x2sin_packed, NULL, v, &H, 0) == 0, "%s", ad_error());
    double x = 1.5, z = 0.4;
    /* f = x^2 sin z: H = [[2 sin z, 2x cos z], [2x cos z, -x^2 sin z]] */
    ck_assert_close(ot_at(H, 0), 2 * sin(z), 1e-14);
    ck_assert_close(ot_at(H, 1), 2 * x * cos(z), 1e-14);
    ck_assert_close(ot_at(H, 2), 2 * x * cos(z), 1e-14);
    ck_assert_close(ot_at(H, 3), -x * x * sin(z), 1e-14);
    ad_custom_free(g_x2sin);
}
END_TEST

START_TEST(persistent_result_without_tape)
{
    ad_tape_activate(NULL);
    ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "exp", .nin = 1, .forward = exp_fw,
                                                    .backward = exp_bw});
    int64_t n = 2;
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, 1, &n, (double[]){0, 1});
    ad_tensor *y = ad_custom_call(op, 1, &x);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_ptr_null(ad_tensor_tape(y));
    ck_assert_close(ot_at(y, 0), 1, 0);
    ck_assert_close(ot_at(y, 1), exp(1), 1e-15);
    /* x requires grad but there is no tape to record on */
    ad_set_requires_grad(x, true);
    ck_assert_error(ad_custom_call(op, 1, &x), "no tape to record on");
    ad_tensor_free(y);
    ad_tensor_free(x);
    ad_custom_free(op);
    ad_tape_activate(T);
}
END_TEST

START_TEST(replay_calls_forward_again)
{
    int calls = 0;
    ad_custom *op = ad_custom_new(&(ad_custom_desc){
        .name = "x2sin", .nin = 2, .forward = x2sin_fw, .backward = x2sin_bw, .user = &calls});
    ad_tape_set_replayable(T, true);
    ad_tensor *x = vec(2, (double[]){1, 2}, true), *z = vec(2, (double[]){0.5, 0.25}, false);
    ad_tensor *loss = ad_sum(ad_custom_call(op, 2, (ad_tensor *[]){x, z}), NULL, 0, false);
    ck_assert(loss != NULL);
    ck_assert_int_eq(ad_tape_freeze(T), 0);
    ad_tensor *x2 = vec(2, (double[]){3, -1}, false);
    ck_assert_int_ge(ad_tape_replay(T, 1, &x, &x2), 0);
    ck_assert_int_eq(calls, 2);
    ck_assert_close(ad_item(loss), 9 * sin(0.5) + sin(0.25), 1e-14);
    ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
    /* the backward read the replay's saved x, not the recording's */
    ck_assert_close(ot_at(ad_tensor_grad(x), 0), 6 * sin(0.5), 1e-14);
    ck_assert_close(ot_at(ad_tensor_grad(x), 1), -2 * sin(0.25), 1e-14);
    ad_tape_set_replayable(T, false);
    ad_custom_free(op);
}
END_TEST

/* ---- first-order backward --------------------------------------------------------- */

static ad_custom *g_cube;
static ad_tensor *f_cube(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    return ad_custom_call(g_cube, n, in);
}

START_TEST(first_order_backward)
{
    g_cube = ad_custom_new(&(ad_custom_desc){.name = "cube", .nin = 1, .forward = cube_fw,
                                             .backward = cube_bw_raw, .first_order = true});
    ck_assert(g_cube != NULL);
    ad_tensor *x = vec(3, (double[]){1, -2, 0.5}, true);
    ck_assert_int_eq(ad_backward(ad_sum(f_cube(&x, 1, NULL), NULL, 0, false), NULL, 0), 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 1), 12, 1e-15);
    ck_assert_close(ot_at(ad_tensor_grad(x), 2), 0.75, 1e-15);
    ck_assert_int_eq(ad_gradcheck(f_cube, NULL, 1, &x, NULL), 1);
    ck_assert_int_eq(ad_custom_check(g_cube, 1, &x, NULL), 1); /* first order only */
    /* second derivatives: refused, saying why */
    ad_tensor *g1 = NULL, *g2 = NULL;
    ck_assert_int_eq(ad_gradients(ad_sum(f_cube(&x, 1, NULL), NULL, 0, false), NULL, 1, &x, &g1,
                                  AD_CREATE_GRAPH), 0);
    ck_assert_close(ot_at(g1, 0), 3, 1e-15);
    ck_assert_error_rc(ad_gradients(ad_sum(g1, NULL, 0, false), NULL, 1, &x, &g2, 0),
                       "custom:cube has a first-order backward (first_order in its ad_custom_desc)");
    ad_clear_error();
    ck_assert_int_eq(ad_gradgradcheck(f_cube, NULL, 1, &x, NULL), -1);
    ck_assert_msg(strstr(ad_error(), "custom:cube has a first-order backward"), "%s", ad_error());
    ad_custom_free(g_cube);
}
END_TEST

START_TEST(raw_backward_without_flag_is_caught)
{
    ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "cube", .nin = 1, .forward = cube_fw,
                                                    .backward = cube_bw_raw});
    ad_tensor *x = vec(3, (double[]){1, -2, 0.5}, true);
    ck_assert_int_eq(ad_custom_check(op, 1, &x, NULL), 0);
    ck_assert_msg(strstr(ad_error(), "ad_custom_check: custom:cube: second derivatives disagree, "
                                     "and the gradient backward gives for input 0 is not "
                                     "recorded under AD_CREATE_GRAPH"),
                  "%s", ad_error());
    ck_assert_msg(strstr(ad_error(), "set first_order"), "%s", ad_error());
    ad_custom_free(op);
}
END_TEST

/* ---- check -------------------------------------------------------------------------- */

/* Rules that mishandle their incoming gradient g: with 1 as the seed of
 * each Jacobian row, ignoring g, squaring it or taking |g| gave the right
 * rows and passed; the check seeds with -2 now and catches all three.  A
 * rule that detaches g is right to first order and gives wrong Hessians:
 * the second derivatives with respect to g catch it. */
static int g_mode; /* 0 right, 1 ignores g (uses 1), 2 g*g, 3 |g|, 4 detaches g */
static ad_tensor *sq_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    ad_custom_save(ctx, 1, in);
    return ad_mul(in[0], in[0]);
}
static int sq_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    ad_tensor *d = ad_mul_scalar(ad_custom_saved(ctx, 0), 2.0);
    ad_tensor *w = g_mode == 0 ? g
                   : g_mode == 1 ? ad_ones(ad_custom_tape(ctx), ad_tensor_dtype(g), ad_ndim(g),
                                           ad_shape(g))
                   : g_mode == 2 ? ad_mul(g, g)
                   : g_mode == 3 ? ad_abs(g)
                                 : ad_detach(g);
    gin[0] = ad_mul(w, d);
    return 0;
}

START_TEST(check_catches_rules_that_mishandle_g)
{
    ad_tensor *x = vec(3, (double[]){1, -2, 0.5}, true);
    for (g_mode = 0; g_mode < 5; g_mode++) {
        ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "sq", .nin = 1, .forward = sq_fw,
                                                        .backward = sq_bw});
        ad_clear_error();
        int rc = ad_custom_check(op, 1, &x, NULL);
        ck_assert_msg(rc == (g_mode == 0), "mode %d: %d %s", g_mode, rc, ad_error());
        /* a detached g is right to first order: the second derivatives
         * in g catch it */
        if (g_mode)
            ck_assert_msg(strstr(ad_error(), g_mode == 4 ? "in the incoming gradient g"
                                                         : "first derivatives"),
                          "%s", ad_error());
        ad_custom_free(op);
    }
}
END_TEST

START_TEST(custom_check)
{
    ad_custom *good = ad_custom_new(&(ad_custom_desc){.name = "x2sin", .nin = 2,
                                                      .forward = x2sin_fw, .backward = x2sin_bw});
    ad_tensor *x = vec(3, (double[]){1, -2, 0.5}, true), *z = vec(3, (double[]){0.3, 1, -2}, true);
    ck_assert_msg(ad_custom_check(good, 2, (ad_tensor *[]){x, z}, NULL) == 1, "%s", ad_error());
    ad_custom *bad = ad_custom_new(&(ad_custom_desc){.name = "cube", .nin = 1, .forward = cube_fw,
                                                     .backward = cube_bw_wrong});
    ck_assert_int_eq(ad_custom_check(bad, 1, &x, NULL), 0);
    /* the worst entry: x = -2, analytic 2 x^2 = 8 against 3 x^2 = 12 */
    ck_assert_msg(strstr(ad_error(), "ad_custom_check: custom:cube: first derivatives: "
                                     "ad_gradcheck: 3 of 9 Jacobian entries disagree; the "
                                     "worst: input 0 element [1], output element [1]: analytic 8 "
                                     "vs numeric 12"),
                  "%s", ad_error());
    ck_assert_error_rc(ad_custom_check(good, 1, &x, NULL), "custom:x2sin: expected 2 inputs, got 1");
    ck_assert_error_rc(ad_custom_check(NULL, 1, &x, NULL), "op is NULL");
    ad_custom_free(good);
    ad_custom_free(bad);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------- */

static ad_tensor *null_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)ctx, (void)in, (void)n, (void)u;
    return NULL;
}
static ad_tensor *id_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n, (void)u;
    return ad_custom_save(ctx, 1, in) ? NULL : in[0];
}
/* saves the persistent tensor it is given as user, not an input */
static ad_tensor *side_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *u)
{
    (void)n;
    ad_tensor *s = u;
    return ad_custom_save(ctx, 1, &s) ? NULL : ad_mul_scalar(in[0], 1);
}
static int none_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)ctx, (void)g, (void)gin, (void)u;
    return 0;
}
static int shape_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    gin[0] = ad_sum(g, NULL, 0, false);
    return ad_custom_save(ctx, 1, &g) == 0 ? -1 : 0; /* saving in backward fails */
}
static int fail_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)ctx, (void)g, (void)gin, (void)u;
    return ad_set_error("my_bw: the moon is in the wrong phase");
}
static int id_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *u)
{
    (void)u;
    ck_assert_ptr_null(ad_custom_saved(ctx, 1));
    ck_assert_int_eq(ad_custom_num_saved(ctx), 1);
    gin[0] = g;
    return 0;
}

START_TEST(errors)
{
    ck_assert_error(ad_custom_new(NULL), "desc is NULL");
    ck_assert_error(ad_custom_new(&(ad_custom_desc){.nin = 1, .forward = id_fw}),
                    "name is NULL or empty");
    ck_assert_error(ad_custom_new(&(ad_custom_desc){.name = "a", .nin = 1}), "a: forward is NULL");
    ck_assert_error(ad_custom_new(&(ad_custom_desc){.name = "a", .nin = 17, .forward = id_fw}),
                    "a: nin 17 out of range 1..16");
    ck_assert_error(ad_custom_new(&(ad_custom_desc){.name = "a", .nin = 1, .forward = id_fw,
                                                    .first_order = true}),
                    "first_order is set but backward is NULL");
    ck_assert_error(ad_custom_call(NULL, 1, NULL), "op is NULL");

    ad_tensor *x = vec(3, (double[]){1, 2, 3}, true);
    ad_custom *nul = ad_custom_new(&(ad_custom_desc){.name = "nul", .nin = 1, .forward = null_fw});
    ck_assert_error(ad_custom_call(nul, 1, &x), "custom:nul: forward returned NULL without an error");
    ck_assert_error(ad_custom_call(nul, 2, (ad_tensor *[]){x, x}), "custom:nul: expected 1 input, got 2");

    /* identity: the result is a copy of the input; no backward */
    ad_custom *id = ad_custom_new(&(ad_custom_desc){.name = "id", .nin = 1, .forward = id_fw});
    ad_tensor *y = ad_custom_call(id, 1, &x);
    ck_assert(y != NULL && y != x);
    ck_assert_close(ot_at(y, 2), 3, 0);
    ck_assert(!ad_requires_grad(y)); /* no backward: gradients stop here, as at ad_gt */

    struct {
        ad_custom_backward_fn bw;
        const char *msg;
    } cases[] = {
        {none_bw, "ad_backward: custom:id: backward gave no gradient for input 0, which requires grad"},
        {shape_bw, "ad_backward: custom:id: backward gave a [] float64 gradient for input 0, which "
                   "is [3] float64"},
        {fail_bw, "my_bw: the moon is in the wrong phase"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ad_custom *op = ad_custom_new(&(ad_custom_desc){.name = "id", .nin = 1, .forward = id_fw,
                                                        .backward = cases[i].bw});
        ck_assert_error_rc(ad_backward(ad_sum(ad_custom_call(op, 1, &x), NULL, 0, false), NULL, 0),
                           cases[i].msg);
        ad_custom_free(op);
    }

    /* a saved tensor changed in place after the forward: an input (the
     * node's own check), and a persistent tensor saved beside (ours) */
    ad_custom *ok = ad_custom_new(&(ad_custom_desc){.name = "id", .nin = 1, .forward = id_fw,
                                                    .backward = id_bw});
    ad_tensor *w = vec(3, (double[]){1, 2, 3}, false), *xw = ad_mul(x, w);
    ad_tensor *loss = ad_sum(ad_custom_call(ok, 1, &xw), NULL, 0, false);
    ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 1), 2, 0);
    ad_fill(xw, 0);
    ck_assert_error_rc(ad_backward(loss, NULL, 0), "was modified in place (version 0, now 1)");
    int64_t three = 3;
    ad_tensor *side = ad_zeros(NULL, AD_FLOAT64, 1, &three);
    ad_custom *sv = ad_custom_new(&(ad_custom_desc){.name = "side", .nin = 1, .forward = side_fw,
                                                    .backward = id_bw, .user = side});
    loss = ad_sum(ad_custom_call(sv, 1, &x), NULL, 0, false);
    ck_assert_int_eq(ad_fill(side, 1), 0);
    ad_tensor_free(side); /* held by the node until the tape's reset */
    ck_assert_error_rc(ad_backward(loss, NULL, 0), "custom:side: saved tensor 0 was modified in "
                                                   "place after the forward (version 0, now 1)");
    ad_custom_free(sv);
    ck_assert_int_eq(ad_errcode(), AD_OK); /* ck_assert_error_rc cleared it */
    ck_assert_error_rc(ad_custom_save(NULL, 0, NULL), "ctx is NULL");
    ck_assert_error(ad_custom_saved(NULL, 0), "ctx is NULL");
    ck_assert_int_eq(ad_custom_num_saved(NULL), -1);
    ck_assert(!ad_custom_needs_input_grad(NULL, 0));
    ck_assert_error(ad_custom_name(NULL), "op is NULL");
    ad_custom_free(NULL);
    ad_custom_free(ok);
    ad_custom_free(id);
    ad_custom_free(nul);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("custom");
    TCase *v = tcase_create("values");
    tcase_add_checked_fixture(v, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(v, values_and_gradients);
    tcase_add_test(v, third_derivative_through_saved_output);
    tcase_add_test(v, hessian_of_custom_op);
    tcase_add_test(v, persistent_result_without_tape);
    tcase_add_test(v, replay_calls_forward_again);
    suite_add_tcase(s, v);
    TCase *f = tcase_create("first_order");
    tcase_add_checked_fixture(f, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(f, first_order_backward);
    tcase_add_test(f, raw_backward_without_flag_is_caught);
    suite_add_tcase(s, f);
    TCase *c = tcase_create("check");
    tcase_add_checked_fixture(c, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(c, custom_check);
    tcase_add_test(c, check_catches_rules_that_mishandle_g);
    tcase_add_test(c, errors);
    suite_add_tcase(s, c);
    return ot_run(s);
}

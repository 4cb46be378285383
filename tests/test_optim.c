/* tests/test_optim.c - optimisers, schedules, clipping and the gradient
 * report of nn/optim.h.
 *
 * The update tests drive a parameter w with gradients chosen by the test:
 * the loss E = sum_i g_i w_i has dE/dw = g exactly, so each step's gradient
 * is known and the expected weights are worked out by hand from the update
 * rules (PyTorch's), step by step, in the comments. */
#include <math.h>
#include <nn/nn.h>
#include <stdlib.h>
#include <string.h>

#include "../nn/nn_private.h"
#include "optest.h"

static const double W0[2] = {1.0, -2.0};
static const double G1[2] = {0.5, 1.0};
static const double G2[2] = {-1.0, 2.0};

/* A persistent float64 parameter [n] requiring grad. */
static ad_tensor *param(int n, const double *v)
{
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){n}, v);
    ck_assert_msg(w != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
    return w;
}

/* Sets w's gradient to g: backward of E = sum g w. */
static void set_grad(ad_tensor *w, const double *g)
{
    ck_assert_int_eq(ad_zero_grad(w), 0);
    ad_tape *t = ad_tape_new();
    ad_tensor *gt = ad_empty(t, ad_tensor_dtype(w), 1, (int64_t[]){ad_numel(w)});
    for (int64_t i = 0; i < ad_numel(w); i++) ck_assert_int_eq(ad_set(gt, (int64_t[]){i}, g[i]), 0);
    ad_tensor *e = ad_sum(ad_mul(gt, w), NULL, 0, false);
    ck_assert_msg(e && ad_backward(e, NULL, 0) == 0, "%s", ad_error());
    ad_tape_free(t);
}

/* One optimiser step with gradient g. */
static void step_with(nn_optim *o, ad_tensor *w, const double *g)
{
    set_grad(w, g);
    ck_assert_msg(nn_optim_step(o) == 0, "%s", ad_error());
}

static void expect(ad_tensor *w, double a, double b, double tol)
{
    ck_assert_close(ot_at(w, 0), a, tol);
    ck_assert_close(ot_at(w, 1), b, tol);
}

/* An optimiser over the single parameter w, called "w". */
static nn_named_tensors *one(ad_tensor *w)
{
    nn_named_tensors *l = nn_named_tensors_new(1, (const char *[]){"w"}, &w);
    ck_assert_ptr_nonnull(l);
    return l;
}

/* The value of the 0-d or [n] state tensor called name. */
static ad_tensor *state(const nn_optim *o, const char *name)
{
    nn_named_tensors *s = nn_optim_state(o);
    ck_assert_ptr_nonnull(s);
    ad_tensor *r = NULL;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) r = s->tensors[i];
    nn_named_tensors_free(s);
    ck_assert_msg(r != NULL, "no state '%s'", name);
    return r;
}

/* ---- SGD ------------------------------------------------------------------------ */

static void run_sgd(nn_sgd_options o, double *w1, double *w2)
{
    ad_tensor *w = param(2, W0);
    nn_named_tensors *l = one(w);
    nn_optim *opt = nn_sgd(l, &o);
    nn_named_tensors_free(l);
    ck_assert_msg(opt != NULL, "%s", ad_error());
    step_with(opt, w, G1);
    ck_assert_int_eq(ad_to_array(w, w1), 0);
    step_with(opt, w, G2);
    ck_assert_int_eq(ad_to_array(w, w2), 0);
    ck_assert_int_eq(nn_optim_steps(opt), 2);
    nn_optim_free(opt);
    ad_tensor_free(w);
}

START_TEST(sgd_plain)
{
    double a[2], b[2];
    run_sgd((nn_sgd_options){.lr = 0.1}, a, b);
    /* w1 = w0 - 0.1 g1 = [1 - 0.05, -2 - 0.1];  w2 = w1 - 0.1 g2 = [0.95 + 0.1, -2.1 - 0.2] */
    ck_assert_close(a[0], 0.95, 1e-15);
    ck_assert_close(a[1], -2.1, 1e-15);
    ck_assert_close(b[0], 1.05, 1e-15);
    ck_assert_close(b[1], -2.3, 1e-15);
}
END_TEST

START_TEST(sgd_momentum)
{
    double a[2], b[2];
    run_sgd((nn_sgd_options){.lr = 0.1, .momentum = 0.9}, a, b);
    /* b1 = g1 (first step: the buffer starts as the gradient) = [0.5, 1]
     * w1 = w0 - 0.1 b1 = [0.95, -2.1]
     * b2 = 0.9 b1 + g2 = [0.45 - 1, 0.9 + 2] = [-0.55, 2.9]
     * w2 = w1 - 0.1 b2 = [1.005, -2.39] */
    ck_assert_close(a[0], 0.95, 1e-15);
    ck_assert_close(a[1], -2.1, 1e-15);
    ck_assert_close(b[0], 1.005, 1e-15);
    ck_assert_close(b[1], -2.39, 1e-15);
}
END_TEST

START_TEST(sgd_dampening)
{
    double a[2], b[2];
    run_sgd((nn_sgd_options){.lr = 0.1, .momentum = 0.9, .dampening = 0.5}, a, b);
    /* b1 = g1 (no dampening on the first step, as PyTorch) -> w1 = [0.95, -2.1]
     * b2 = 0.9 b1 + 0.5 g2 = [0.45 - 0.5, 0.9 + 1] = [-0.05, 1.9]
     * w2 = w1 - 0.1 b2 = [0.955, -2.29] */
    ck_assert_close(a[0], 0.95, 1e-15);
    ck_assert_close(a[1], -2.1, 1e-15);
    ck_assert_close(b[0], 0.955, 1e-15);
    ck_assert_close(b[1], -2.29, 1e-15);
}
END_TEST

START_TEST(sgd_nesterov)
{
    double a[2], b[2];
    run_sgd((nn_sgd_options){.lr = 0.1, .momentum = 0.9, .nesterov = true}, a, b);
    /* b1 = g1; d1 = g1 + 0.9 b1 = 1.9 g1 = [0.95, 1.9]; w1 = [0.905, -2.19]
     * b2 = 0.9 b1 + g2 = [-0.55, 2.9]; d2 = g2 + 0.9 b2 = [-1.495, 4.61]
     * w2 = w1 - 0.1 d2 = [1.0545, -2.651] */
    ck_assert_close(a[0], 0.905, 1e-15);
    ck_assert_close(a[1], -2.19, 1e-15);
    ck_assert_close(b[0], 1.0545, 1e-15);
    ck_assert_close(b[1], -2.651, 1e-15);
}
END_TEST

START_TEST(sgd_weight_decay)
{
    double a[2], b[2];
    run_sgd((nn_sgd_options){.lr = 0.1, .weight_decay = 0.1}, a, b);
    /* g1' = g1 + 0.1 w0 = [0.6, 0.8]; w1 = w0 - 0.1 g1' = [0.94, -2.08]
     * g2' = g2 + 0.1 w1 = [-0.906, 1.792]; w2 = [1.0306, -2.2592] */
    ck_assert_close(a[0], 0.94, 1e-15);
    ck_assert_close(a[1], -2.08, 1e-15);
    ck_assert_close(b[0], 1.0306, 1e-15);
    ck_assert_close(b[1], -2.2592, 1e-15);
}
END_TEST

START_TEST(sgd_float32_and_state)
{
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT32, 1, (int64_t[]){2}, (float[]){1, -2});
    ad_set_requires_grad(w, true);
    nn_named_tensors *l = one(w);
    nn_optim *o = nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9});
    nn_named_tensors_free(l);
    step_with(o, w, G1);
    expect(w, 0.95, -2.1, 1e-6);
    ad_tensor *buf = state(o, "w.momentum_buffer");
    ck_assert_int_eq(ad_tensor_dtype(buf), AD_FLOAT32);
    ck_assert_close(ot_at(buf, 1), 1.0, 0);
    ck_assert_close(ad_item(state(o, "w.step")), 1, 0);
    ck_assert_close(ad_item(state(o, "step")), 1, 0);
    /* zero_grad zeroes the gradient in place; a step with it still moves w
     * by the momentum: b2 = 0.9 b1 = [0.45, 0.9], w2 = w1 - 0.1 b2 */
    ck_assert_int_eq(nn_optim_zero_grad(o), 0);
    ck_assert_close(ot_at(ad_tensor_grad(w), 1), 0, 0);
    ck_assert_int_eq(nn_optim_step(o), 0);
    expect(w, 0.905, -2.19, 1e-6);
    ck_assert_close(ad_item(state(o, "w.step")), 2, 0);
    ck_assert_close(ad_item(state(o, "step")), 2, 0);
    /* a parameter that never received a gradient is skipped */
    ad_tensor *v = param(2, W0);
    nn_named_tensors *lv = one(v);
    nn_optim *ov = nn_sgd(lv, &(nn_sgd_options){.lr = 0.1, .weight_decay = 0.5});
    ck_assert_int_eq(nn_optim_step(ov), 0);
    expect(v, 1, -2, 0);
    ck_assert_close(ad_item(state(ov, "w.step")), 0, 0);
    ck_assert_close(ad_item(state(ov, "step")), 1, 0);
    nn_optim_free(ov);
    nn_named_tensors_free(lv);
    ad_tensor_free(v);
    ck_assert_str_eq(nn_optim_name(o), "SGD");
    nn_optim_free(o);
    ad_tensor_free(w);
}
END_TEST

/* ---- Adam, AdamW ------------------------------------------------------------------ */

START_TEST(adam_two_steps)
{
    ad_tensor *w = param(2, W0);
    nn_named_tensors *l = one(w);
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.lr = 0.1;
    nn_optim *o = nn_adam(l, &ao);
    nn_named_tensors_free(l);
    ck_assert_msg(o != NULL, "%s", ad_error());
    step_with(o, w, G1);
    /* t = 1: m = 0.1 g1 = [0.05, 0.1], v = 0.001 g1^2 = [0.00025, 0.001].
     * Bias correction divides by 1 - 0.9 = 0.1 and 1 - 0.999 = 0.001:
     * mhat = g1, vhat = g1^2, so the first step is lr g / (|g| + eps), a step
     * of lr in every coordinate whatever the gradient's scale. */
    double a0 = 1 - 0.1 * 0.5 / (0.5 + 1e-8), a1 = -2 - 0.1 * 1.0 / (1.0 + 1e-8);
    expect(w, a0, a1, 1e-15);
    ck_assert_close(ot_at(state(o, "w.exp_avg"), 0), 0.05, 1e-16);
    ck_assert_close(ot_at(state(o, "w.exp_avg_sq"), 1), 0.001, 1e-18);
    step_with(o, w, G2);
    /* t = 2: m = 0.9 m + 0.1 g2 = [0.045 - 0.1, 0.09 + 0.2] = [-0.055, 0.29]
     *        v = 0.999 v + 0.001 g2^2 = [0.00024975 + 0.001, 0.000999 + 0.004]
     *          = [0.00124975, 0.004999]
     * bias corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999. */
    double b0 = a0 - 0.1 * (-0.055 / 0.19) / (sqrt(0.00124975 / 0.001999) + 1e-8);
    double b1 = a1 - 0.1 * (0.29 / 0.19) / (sqrt(0.004999 / 0.001999) + 1e-8);
    expect(w, b0, b1, 1e-14);
    ck_assert_close(b0, 0.93661035424056538, 1e-14); /* the same, as numbers */
    ck_assert_close(b1, -2.1965182009718336, 1e-14);
    ck_assert_str_eq(nn_optim_name(o), "Adam");
    nn_optim_free(o);
    ad_tensor_free(w);
}
END_TEST

START_TEST(adamw_vs_adam_weight_decay)
{
    double res[2][2];
    for (int k = 0; k < 2; k++) {
        ad_tensor *w = param(2, W0);
        nn_named_tensors *l = one(w);
        nn_adam_options ao = NN_ADAM_DEFAULTS;
        ao.lr = 0.1;
        ao.weight_decay = 0.1;
        nn_optim *o = k ? nn_adamw(l, &ao) : nn_adam(l, &ao);
        nn_named_tensors_free(l);
        step_with(o, w, G1);
        ck_assert_int_eq(ad_to_array(w, res[k]), 0);
        nn_optim_free(o);
        ad_tensor_free(w);
    }
    /* Adam: the decay joins the gradient, g' = g1 + 0.1 w0 = [0.6, 0.8], and
     * the normalised first step is lr g'/|g'|: w1 = [0.9, -2.1] - the decay
     * is divided away.
     * AdamW: w0 (1 - lr wd) = [0.99, -1.98], then the undecayed step of
     * lr g1/|g1|: w1 = [0.89, -2.08] - the decay shrinks w directly. */
    ck_assert_close(res[0][0], 1 - 0.1 * 0.6 / (0.6 + 1e-8), 1e-15);
    ck_assert_close(res[0][1], -2 - 0.1 * 0.8 / (0.8 + 1e-8), 1e-15);
    ck_assert_close(res[1][0], 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-15);
    ck_assert_close(res[1][1], -1.98 - 0.1 * 1.0 / (1.0 + 1e-8), 1e-15);
}
END_TEST

START_TEST(adam_amsgrad)
{
    ad_tensor *w = param(2, W0);
    nn_named_tensors *l = one(w);
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.lr = 0.1;
    ao.amsgrad = true;
    nn_optim *o = nn_adam(l, &ao);
    nn_named_tensors_free(l);
    step_with(o, w, G1);
    step_with(o, w, (double[]){0.1, 0.1});
    /* v2 = 0.999 v1 + 0.001 0.01 is larger than v1 here, so the maximum is
     * v2 itself: amsgrad matches Adam on this step (values from the
     * reference implementation of the formula). */
    expect(w, 0.81969590638465173, -2.1740810622390341, 1e-14);
    ck_assert_close(ot_at(state(o, "w.max_exp_avg_sq"), 0), 0.00025975, 1e-18);
    /* a NaN gradient: the running maximum becomes NaN, as torch.maximum
     * gives (fmax kept the old value); the other element is untouched by it */
    step_with(o, w, (double[]){NAN, 0.1});
    ck_assert(isnan(ot_at(state(o, "w.max_exp_avg_sq"), 0)));
    ck_assert(isfinite(ot_at(state(o, "w.max_exp_avg_sq"), 1)));
    nn_optim_free(o);
    ad_tensor_free(w);
}
END_TEST

/* ---- RMSprop ----------------------------------------------------------------------- */

START_TEST(rmsprop_one_step)
{
    for (int centered = 0; centered < 2; centered++) {
        ad_tensor *w = param(2, W0);
        nn_named_tensors *l = one(w);
        nn_rmsprop_options ro = NN_RMSPROP_DEFAULTS; /* lr 0.01, alpha 0.99 */
        ro.centered = centered;
        nn_optim *o = nn_rmsprop(l, &ro);
        nn_named_tensors_free(l);
        step_with(o, w, G1);
        if (!centered) {
            /* s = 0.01 g^2, sqrt(s) = 0.1 |g|: w1 = w0 - 0.01 g / (0.1 |g| + eps) */
            expect(w, 1 - 0.01 * 0.5 / (0.05 + 1e-8), -2 - 0.01 * 1.0 / (0.1 + 1e-8), 1e-15);
        } else {
            /* a = 0.01 g; s - a^2 = 0.01 g^2 - 0.0001 g^2 = 0.0099 g^2 */
            expect(w, 1 - 0.01 * 0.5 / (sqrt(0.0099) * 0.5 + 1e-8),
                   -2 - 0.01 * 1.0 / (sqrt(0.0099) + 1e-8), 1e-15);
            ck_assert_close(ot_at(state(o, "w.grad_avg"), 1), 0.01, 1e-17);
        }
        ck_assert_close(ot_at(state(o, "w.square_avg"), 1), 0.01, 1e-17);
        nn_optim_free(o);
        ad_tensor_free(w);
    }
}
END_TEST

START_TEST(rmsprop_momentum)
{
    ad_tensor *w = param(2, W0);
    nn_named_tensors *l = one(w);
    nn_rmsprop_options ro = NN_RMSPROP_DEFAULTS;
    ro.momentum = 0.9;
    nn_optim *o = nn_rmsprop(l, &ro);
    nn_named_tensors_free(l);
    step_with(o, w, G1);
    /* The buffer starts at zero: b1 = d1 = g1 / (0.1 |g1| + eps), the plain step. */
    double d1[2] = {0.5 / (0.05 + 1e-8), 1.0 / (0.1 + 1e-8)};
    expect(w, 1 - 0.01 * d1[0], -2 - 0.01 * d1[1], 1e-15);
    step_with(o, w, G2);
    /* s2 = 0.99 s1 + 0.01 g2^2 = [0.002475 + 0.01, 0.0099 + 0.04]
     * b2 = 0.9 b1 + g2 / (sqrt(s2) + eps) */
    double b2[2] = {0.9 * d1[0] - 1.0 / (sqrt(0.012475) + 1e-8),
                    0.9 * d1[1] + 2.0 / (sqrt(0.0499) + 1e-8)};
    expect(w, 1 - 0.01 * d1[0] - 0.01 * b2[0], -2 - 0.01 * d1[1] - 0.01 * b2[1], 1e-14);
    nn_optim_free(o);
    ad_tensor_free(w);
}
END_TEST

/* ---- module parameters, state names, checkpoint of the state ------------------------- */

static nn_module *mlp(uint64_t seed)
{
    ad_rng rng;
    ad_rng_init(&rng, seed);
    nn_module *m = NN_SEQUENTIAL(nn_linear(3, 4, true, AD_FLOAT64, &rng), nn_tanh(),
                                 nn_linear(4, 2, true, AD_FLOAT64, &rng));
    ck_assert_msg(m != NULL, "%s", ad_error());
    return m;
}

/* One training step of an MLP on a fixed batch with MSE. */
static double train_step(nn_module *m, nn_optim *o, ad_tape *t)
{
    ad_tensor *x = ad_from_array(t, AD_FLOAT64, 2, (int64_t[]){2, 3},
                                 (double[]){0.5, -1, 2, 1, 0.25, -0.5});
    ad_tensor *y = ad_from_array(t, AD_FLOAT64, 2, (int64_t[]){2, 2}, (double[]){1, 0, 0, 1});
    ck_assert_int_eq(nn_optim_zero_grad(o), 0);
    ad_tensor *loss = nn_mse_loss(nn_forward(m, x), y, NN_MEAN);
    ck_assert_msg(loss && ad_backward(loss, NULL, 0) == 0, "%s", ad_error());
    double v = ad_item(loss);
    ck_assert_int_eq(nn_optim_step(o), 0);
    ad_tape_reset(t);
    return v;
}

START_TEST(state_names_and_resume)
{
    /* In a directory of its own, not the working directory, which two runs
     * at once (meson test --repeat) share: one run removed the files the
     * other was about to load. */
    char dir[256], path[300], spath[300];
    ck_assert_int_eq(ot_make_tmpdir(dir, sizeof dir, "test_optim"), 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(spath, sizeof spath, "%s/optim.safetensors", dir);
    nn_module *a = mlp(7);
    nn_named_tensors *pa = nn_parameters(a);
    nn_optim *oa = nn_adam(pa, NULL);
    nn_named_tensors *sa = nn_optim_state(oa);
    ck_assert_int_eq(sa->n, 1 + 4 * 3);
    ck_assert_str_eq(sa->names[0], "step");
    ck_assert_str_eq(sa->names[1], "0.weight.exp_avg");
    ck_assert_str_eq(sa->names[2], "0.weight.exp_avg_sq");
    ck_assert_str_eq(sa->names[3], "0.weight.step");
    ck_assert_str_eq(sa->names[12], "2.bias.step");
    ad_tape *t = ad_tape_new();
    train_step(a, oa, t);
    train_step(a, oa, t);
    /* Save model and optimiser state, load them into a fresh pair. */
    nn_named_tensors *sd = nn_state_dict(a);
    ck_assert_int_eq(nn_save_safetensors(path, sd->n, sd->names, sd->tensors, NULL), 0);
    ck_assert_int_eq(nn_save_safetensors(spath, sa->n, sa->names, sa->tensors, NULL), 0);
    nn_module *b = mlp(99);
    nn_named_tensors *pb = nn_parameters(b), *sdb = nn_state_dict(b);
    nn_optim *ob = nn_adam(pb, NULL);
    nn_named_tensors *sb = nn_optim_state(ob);
    ck_assert_int_eq(nn_load_safetensors(path, sdb->n, sdb->names, sdb->tensors, true), 0);
    ck_assert_msg(nn_load_safetensors(spath, sb->n, sb->names, sb->tensors, true) == 0, "%s",
                  ad_error());
    ck_assert_int_eq(nn_optim_steps(ob), 2);
    /* The third step is identical: training resumes exactly. */
    double la = train_step(a, oa, t), lb = train_step(b, ob, t);
    ck_assert_close(la, lb, 0);
    for (int i = 0; i < pa->n; i++)
        for (int64_t k = 0; k < ad_numel(pa->tensors[i]); k++)
            ck_assert_close(ot_at(pa->tensors[i], k), ot_at(pb->tensors[i], k), 0);
    ot_remove_tree(dir);
    nn_named_tensors_free(sd);
    nn_named_tensors_free(sdb);
    nn_named_tensors_free(sa);
    nn_named_tensors_free(sb);
    nn_named_tensors_free(pa);
    nn_named_tensors_free(pb);
    nn_optim_free(oa);
    nn_optim_free(ob);
    nn_module_free(a);
    nn_module_free(b);
    ad_tape_free(t);
}
END_TEST

START_TEST(sgd_state_names)
{
    nn_module *m = mlp(1);
    nn_named_tensors *p = nn_parameters(m);
    nn_optim *o = nn_sgd(p, &(nn_sgd_options){.lr = 0.1});
    nn_named_tensors *s = nn_optim_state(o);
    ck_assert_int_eq(s->n, 1 + 4); /* no momentum: step and the per-parameter steps */
    nn_named_tensors_free(s);
    nn_optim_free(o);
    o = nn_sgd(p, &(nn_sgd_options){.lr = 0.1, .momentum = 0.5});
    s = nn_optim_state(o);
    ck_assert_int_eq(s->n, 1 + 8);
    ck_assert_str_eq(s->names[1], "0.weight.momentum_buffer");
    ck_assert_int_eq(ad_size(s->tensors[1], 0), 4);
    ck_assert_int_eq(ad_size(s->tensors[1], 1), 3);
    nn_named_tensors_free(s);
    nn_optim_free(o);
    nn_named_tensors_free(p);
    nn_module_free(m);
}
END_TEST

/* The _module forms are the list forms over nn_parameters: the same state
 * names, the same updates to the bit; errors name the _module function. */
START_TEST(module_forms_match_list_forms)
{
    for (int kind = 0; kind < 4; kind++) {
        nn_module *a = mlp(3), *b = mlp(3);
        nn_named_tensors *pa = nn_parameters(a);
        nn_optim *oa = NULL, *ob = NULL;
        nn_sgd_options so = {.lr = 0.1, .momentum = 0.9};
        nn_adam_options ao = NN_ADAM_DEFAULTS;
        nn_rmsprop_options ro = NN_RMSPROP_DEFAULTS;
        switch (kind) {
        case 0: oa = nn_sgd(pa, &so), ob = nn_sgd_module(b, &so); break;
        case 1: oa = nn_adam(pa, &ao), ob = nn_adam_module(b, &ao); break;
        case 2: oa = nn_adamw(pa, NULL), ob = nn_adamw_module(b, NULL); break;
        default: oa = nn_rmsprop(pa, &ro), ob = nn_rmsprop_module(b, &ro); break;
        }
        nn_named_tensors_free(pa);
        ck_assert_msg(oa && ob, "%s", ad_error());
        ck_assert_str_eq(nn_optim_name(oa), nn_optim_name(ob));
        nn_named_tensors *sa = nn_optim_state(oa), *sb = nn_optim_state(ob);
        ck_assert_int_eq(sa->n, sb->n);
        for (int i = 0; i < sa->n; i++) ck_assert_str_eq(sa->names[i], sb->names[i]);
        nn_named_tensors_free(sa);
        nn_named_tensors_free(sb);
        ad_tape *t = ad_tape_new();
        for (int s = 0; s < 3; s++) ck_assert_close(train_step(a, oa, t), train_step(b, ob, t), 0);
        nn_named_tensors *qa = nn_parameters(a), *qb = nn_parameters(b);
        for (int i = 0; i < qa->n; i++)
            ck_assert_int_eq(memcmp(ad_data(qa->tensors[i]), ad_data(qb->tensors[i]),
                                    (size_t)ad_numel(qa->tensors[i]) * sizeof(double)), 0);
        nn_named_tensors_free(qa);
        nn_named_tensors_free(qb);
        ad_tape_free(t);
        nn_optim_free(oa);
        nn_optim_free(ob);
        nn_module_free(a);
        nn_module_free(b);
    }
    nn_module *m = mlp(1);
    ck_assert_error(nn_sgd_module(NULL, NULL), "nn_sgd_module: argument 'm' is NULL");
    ck_assert_error(nn_adam_module(NULL, NULL), "nn_adam_module");
    ck_assert_error(nn_sgd_module(m, &(nn_sgd_options){.lr = -1}),
                    "nn_sgd_module: learning rate must be finite and >= 0, got -1");
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.beta1 = 1;
    ck_assert_error(nn_adamw_module(m, &ao), "nn_adamw_module: beta1 must be in [0, 1), got 1");
    ck_assert_error(nn_rmsprop_module(m, &(nn_rmsprop_options){.lr = 0.1, .alpha = 2}),
                    "nn_rmsprop_module: alpha");
    nn_module_free(m);
}
END_TEST

/* ---- schedules -------------------------------------------------------------------------- */

/* The update split into parts by rows (what nn's trainer runs on several
 * threads, nn__optim_step_slice) gives the same bits as nn_optim_step, for
 * every optimiser, a 2-D, a 1-D and a 0-d parameter, and 1 to 4 parts
 * (more parts than rows included); so does nn_optim_step_parts with the
 * parameters cut at element boundaries (inside rows) and the gradients
 * read from buffers of the caller's (the parameters' own are zeroed, so
 * reading them would show), with a parameter the optimiser does not hold
 * listed too (skipped). */
START_TEST(sliced_step_matches)
{
    for (int kind = 0; kind < 4; kind++)
        for (int parts = 1; parts <= 4; parts++) {
            ad_tensor *w[3][3];
            nn_optim *o[3];
            for (int k = 0; k < 3; k++) {
                double v[15];
                for (int i = 0; i < 15; i++) v[i] = 0.1 * i - 0.7;
                w[k][0] = ad_from_array(NULL, AD_FLOAT32, 2, (int64_t[]){5, 3}, (float[]){
                    1, 2, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3, -4, -5, -6});
                w[k][1] = param(3, v);
                w[k][2] = ad_scalar_tensor(NULL, AD_FLOAT64, 0.25);
                for (int j = 0; j < 3; j++) ad_set_requires_grad(w[k][j], true);
                nn_named_tensors *l =
                    nn_named_tensors_new(3, (const char *[]){"a", "b", "c"}, w[k]);
                nn_adam_options ao = NN_ADAM_DEFAULTS;
                ao.amsgrad = true;
                ao.weight_decay = 0.01;
                nn_rmsprop_options ro = NN_RMSPROP_DEFAULTS;
                ro.centered = true;
                ro.momentum = 0.5;
                o[k] = kind == 0   ? nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9,
                                                                  .nesterov = true,
                                                                  .weight_decay = 0.01})
                       : kind == 1 ? nn_adam(l, &ao)
                       : kind == 2 ? nn_adamw(l, &ao)
                                   : nn_rmsprop(l, &ro);
                nn_named_tensors_free(l);
                ck_assert_msg(o[k] != NULL, "%s", ad_error());
            }
            ad_tensor *foreign = ad_scalar_tensor(NULL, AD_FLOAT64, 5);
            ad_set_requires_grad(foreign, true);
            for (int step = 0; step < 3; step++)
                for (int k = 0; k < 3; k++) {
                    /* E = sum (w^2 (step + 1)): gradients that change */
                    ad_tape *t = ad_tape_new();
                    ad_tape_activate(t);
                    ad_tensor *e = NULL;
                    for (int j = 0; j < 3; j++) {
                        ad_tensor *s = ad_sum(ad_mul_scalar(ad_mul(w[k][j], w[k][j]), step + 1.0),
                                              NULL, 0, false);
                        e = e ? ad_add(e, ad_cast(s, AD_FLOAT64)) : ad_cast(s, AD_FLOAT64);
                    }
                    ck_assert_int_eq(nn_optim_zero_grad(o[k]), 0);
                    ck_assert_int_eq(ad_backward(e, NULL, 0), 0);
                    if (k == 0) {
                        ck_assert_int_eq(nn_optim_step(o[k]), 0);
                    } else if (k == 2) {
                        nn_optim_part pt[13];
                        double gbuf[3][15 * 2]; /* float32 or float64 gradients, copied */
                        int np = 0;
                        for (int j = 0; j < 3; j++) {
                            ad_tensor *g = ad_tensor_grad(w[k][j]);
                            size_t es = ad_dtype_size(ad_tensor_dtype(g));
                            int64_t n = ad_numel(g);
                            memcpy(gbuf[j], ad_data(g), (size_t)n * es);
                            ck_assert_int_eq(ad_zero_grad(w[k][j]), 0);
                            for (int part = parts - 1; part >= 0; part--)
                                pt[np++] = (nn_optim_part){w[k][j], n * part / parts,
                                                           n * (part + 1) / parts,
                                                           (char *)gbuf[j] + n * part / parts * (int64_t)es};
                        }
                        pt[np++] = (nn_optim_part){foreign, 0, 1, NULL};
                        ck_assert_int_eq(nn_optim_step_parts(o[k], pt, np), 0);
                    } else {
                        ck_assert_int_eq(nn__optim_step_begin(o[k]), 0);
                        for (int part = parts - 1; part >= 0; part--)
                            nn__optim_step_slice(o[k], part, parts);
                        nn__optim_step_end(o[k]);
                    }
                    ad_tape_activate(NULL);
                    ad_tape_free(t);
                }
            for (int k = 1; k < 3; k++)
                for (int j = 0; j < 3; j++) {
                    ck_assert_int_eq(ad_numel(w[0][j]), ad_numel(w[k][j]));
                    size_t bytes = (size_t)ad_numel(w[0][j]) *
                                   ad_dtype_size(ad_tensor_dtype(w[0][j]));
                    ck_assert_msg(memcmp(ad_data(w[0][j]), ad_data(w[k][j]), bytes) == 0,
                                  "optimiser %d, %d parts, %s: parameter %d differs", kind,
                                  parts, k == 1 ? "rows" : "nn_optim_step_parts", j);
                }
            /* the weights moved, the step counts advanced alike, and the
             * parameter not held stayed */
            ck_assert(((float *)ad_data(w[0][0]))[0] != 1.0f);
            ck_assert_int_eq(nn_optim_steps(o[2]), 3);
            ck_assert_double_eq(ad_item(foreign), 5);
            /* a part outside its parameter: refused before any change */
            float before = ((float *)ad_data(w[2][0]))[0];
            nn_optim_part outside = {w[2][0], 3, 16, NULL};
            ck_assert_error_rc(nn_optim_step_parts(o[2], &outside, 1),
                                "nn_optim_step_parts: part 0: elements [3, 16) outside 'a' of 15");
            ck_assert_int_eq(nn_optim_steps(o[2]), 3);
            ck_assert(((float *)ad_data(w[2][0]))[0] == before);
            ck_assert_error_rc(nn_optim_step_parts(NULL, NULL, 0), "nn_optim_step_parts: argument 'opt' is NULL");
            ck_assert_error_rc(nn_optim_step_parts(o[2], NULL, 1), "parts is NULL");
            ad_tensor_free(foreign);
            for (int k = 0; k < 3; k++) {
                nn_optim_free(o[k]);
                for (int j = 0; j < 3; j++) ad_tensor_free(w[k][j]);
            }
        }
}
END_TEST

/* The update loops are compiled once per instruction set (optim.c); every
 * copy must give the bits of the portable one, for both dtypes and every
 * rule and option that changes the loop.  37 elements: whole vectors and a
 * tail for every width. */
static nn_optim *isa_optim(int kind, nn_named_tensors *l)
{
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.amsgrad = kind == 4;
    ao.weight_decay = 0.01;
    nn_rmsprop_options ro = NN_RMSPROP_DEFAULTS;
    ro.centered = kind == 6;
    ro.momentum = kind == 6 ? 0.5 : 0;
    ro.weight_decay = kind == 6 ? 0.02 : 0;
    switch (kind) {
    case 0: return nn_sgd(l, &(nn_sgd_options){.lr = 0.1});
    case 1: return nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9, .dampening = 0.3});
    case 2: return nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9, .nesterov = true,
                                              .weight_decay = 0.01});
    case 3: return nn_adam(l, &ao);
    case 4: return nn_adamw(l, &ao);
    case 5:
    case 6: return nn_rmsprop(l, &ro);
    }
    return NULL;
}

START_TEST(isa_copies_match)
{
    enum { N = 37, KINDS = 7, STEPS = 3 };
    for (int dt = 0; dt < 2; dt++)
        for (int kind = 0; kind < KINDS; kind++) {
            ad_dtype dtype = dt ? AD_FLOAT64 : AD_FLOAT32;
            char ref[N * sizeof(double)];
            int ran = 0;
            for (int isa = 0; isa <= 2; isa++) {
                if (nn__optim_testing_isa(isa)) continue; /* this CPU cannot run it */
                double v[N];
                float v32[N];
                for (int i = 0; i < N; i++) v32[i] = (float)(v[i] = 0.37 * i - 5.1 + 1e-3 / (i + 1));
                ad_tensor *wt = ad_from_array(NULL, dtype, 1, (int64_t[]){N},
                                              dt ? (const void *)v : (const void *)v32);
                ck_assert_int_eq(ad_set_requires_grad(wt, true), 0);
                nn_named_tensors *l = one(wt);
                nn_optim *o = isa_optim(kind, l);
                nn_named_tensors_free(l);
                ck_assert_msg(o != NULL, "%s", ad_error());
                for (int t = 0; t < STEPS; t++) {
                    double g[N];
                    for (int i = 0; i < N; i++) g[i] = sin(1.7 * i + t) * (i % 5 + 0.5);
                    step_with(o, wt, g);
                }
                size_t bytes = (size_t)N * ad_dtype_size(dtype);
                if (isa == 0)
                    memcpy(ref, ad_data(wt), bytes);
                else
                    ck_assert_msg(memcmp(ref, ad_data(wt), bytes) == 0,
                                  "%s, rule %d: the copy for instruction set %d differs",
                                  ad_dtype_name(dtype), kind, isa);
                for (int i = 0; i < N; i++) /* and every weight moved */
                    ck_assert_msg(ot_at(wt, i) != (dt ? v[i] : (double)v32[i]), "weight %d", i);
                ran++;
                nn_optim_free(o);
                ad_tensor_free(wt);
            }
            ck_assert_int_ge(ran, 1);
        }
    ck_assert_int_eq(nn__optim_testing_isa(-1), 0);
    ck_assert_int_eq(nn__optim_testing_isa(7), -1);
}
END_TEST

START_TEST(schedules)
{
    /* StepLR(step_size 30, gamma 0.1) */
    ck_assert_close(nn_lr_step(0.1, 0, 30, 0.1), 0.1, 1e-17);
    ck_assert_close(nn_lr_step(0.1, 29, 30, 0.1), 0.1, 1e-17);
    ck_assert_close(nn_lr_step(0.1, 30, 30, 0.1), 0.01, 1e-17);
    ck_assert_close(nn_lr_step(0.1, 65, 30, 0.1), 0.001, 1e-17);
    /* ExponentialLR: 0.1 * 0.9^3 */
    ck_assert_close(nn_lr_exponential(0.1, 3, 0.9), 0.0729, 1e-16);
    ck_assert_close(nn_lr_exponential(0.1, 0, 0.9), 0.1, 0);
    /* Cosine from 0.1 to 0.001 over 100 epochs: ends, middle, a quarter
     * (cos(pi/4) = sqrt(2)/2). */
    ck_assert_close(nn_lr_cosine(0.1, 0, 100, 0.001), 0.1, 1e-16);
    ck_assert_close(nn_lr_cosine(0.1, 50, 100, 0.001), 0.0505, 1e-16);
    ck_assert_close(nn_lr_cosine(0.1, 100, 100, 0.001), 0.001, 1e-16);
    ck_assert_close(nn_lr_cosine(0.1, 25, 100, 0), 0.05 * (1 + sqrt(0.5)), 1e-16);
    /* Warm-up over 10 steps from 0.1 of the rate. */
    ck_assert_close(nn_lr_warmup(0.5, 0, 10, 0.1), 0.05, 1e-16);
    ck_assert_close(nn_lr_warmup(0.5, 5, 10, 0.1), 0.5 * 0.55, 1e-16);
    ck_assert_close(nn_lr_warmup(0.5, 10, 10, 0.1), 0.5, 1e-16);
    ck_assert_close(nn_lr_warmup(0.5, 1000, 10, 0.1), 0.5, 1e-16);
    /* composed: warm-up of a cosine */
    ck_assert_close(nn_lr_warmup(nn_lr_cosine(0.1, 5, 100, 0), 5, 10, 0),
                    0.5 * 0.05 * (1 + cos(3.14159265358979323846 * 0.05)), 1e-16);
    /* applied to an optimiser */
    ad_tensor *w = param(2, W0);
    nn_named_tensors *l = one(w);
    nn_optim *o = nn_sgd(l, &(nn_sgd_options){.lr = 1});
    ck_assert_int_eq(nn_optim_set_lr(o, nn_lr_step(0.1, 30, 30, 0.1)), 0);
    ck_assert_close(nn_optim_get_lr(o), 0.01, 1e-17);
    step_with(o, w, G1);
    expect(w, 1 - 0.005, -2 - 0.01, 1e-15);
    /* errors: NAN with a message, which set_lr refuses */
    ad_clear_error();
    ck_assert(isnan(nn_lr_step(0.1, 3, 0, 0.1)));
    ck_assert_ptr_nonnull(strstr(ad_error(), "nn_lr_step: step_size must be >= 1, got 0"));
    ck_assert(isnan(nn_lr_cosine(0.1, 3, 0, 0)));
    ck_assert(isnan(nn_lr_warmup(0.1, 3, 5, 1.5)));
    ck_assert(isnan(nn_lr_exponential(0.1, -1, 0.9)));
    ck_assert_error_rc(nn_optim_set_lr(o, NAN), "nn_optim_set_lr: learning rate must be finite");
    ck_assert_close(nn_optim_get_lr(o), 0.01, 1e-17);
    nn_optim_free(o);
    nn_named_tensors_free(l);
    ad_tensor_free(w);
}
END_TEST

/* ---- clipping ------------------------------------------------------------------------------ */

/* A frozen parameter (requires_grad off) is not stepped, though its
 * buffer, zeroed in place, is still there: Adam's moments and weight
 * decay would move it (PyTorch's zero_grad sets the gradient to None, and
 * its optimisers then skip the parameter); unfrozen, it moves again from
 * where its state was left. */
START_TEST(frozen_parameter_is_not_stepped)
{
    ad_tensor *w = param(2, W0);
    nn_named_tensors *l = one(w);
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.lr = 0.1;
    ao.weight_decay = 0.01;
    nn_optim *opt = nn_adamw(l, &ao);
    nn_named_tensors_free(l);
    ck_assert_ptr_nonnull(opt);
    step_with(opt, w, G1);
    double before[2], after[2];
    ck_assert_int_eq(ad_to_array(w, before), 0);
    ck_assert_int_eq(ad_set_requires_grad(w, false), 0);
    ck_assert_int_eq(ad_zero_grad(w), 0);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(nn_optim_step(opt), 0);
    ck_assert_int_eq(ad_to_array(w, after), 0);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_int_eq(((const int64_t *)ad_data(state(opt, "w.step")))[0], 1);
    ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
    step_with(opt, w, G2);
    ck_assert_int_eq(((const int64_t *)ad_data(state(opt, "w.step")))[0], 2);
    ck_assert_int_eq(ad_to_array(w, after), 0);
    ck_assert(after[0] != before[0]);
    nn_optim_free(opt);
    ad_tensor_free(w);
}
END_TEST

START_TEST(clip_norm)
{
    ad_tensor *a = param(2, (double[]){0, 0}), *b = param(1, (double[]){0});
    ad_tensor *c = param(1, (double[]){0}); /* gets no gradient */
    nn_named_tensors *l = nn_named_tensors_new(3, NULL, (ad_tensor *[]){a, b, c});
    set_grad(a, (double[]){3, 4});
    set_grad(b, (double[]){12});
    /* ||g|| = sqrt(9 + 16 + 144) = 13; under max_norm 100 nothing changes */
    ck_assert_close(nn_clip_grad_norm(l, 100), 13, 1e-15);
    ck_assert_close(ot_at(ad_tensor_grad(b), 0), 12, 0);
    /* max_norm 6.5: every gradient scaled by 6.5 / (13 + 1e-6) */
    ck_assert_close(nn_clip_grad_norm(l, 6.5), 13, 1e-15);
    double k = 6.5 / (13 + 1e-6);
    ck_assert_close(ot_at(ad_tensor_grad(a), 0), 3 * k, 1e-15);
    ck_assert_close(ot_at(ad_tensor_grad(a), 1), 4 * k, 1e-15);
    ck_assert_close(ot_at(ad_tensor_grad(b), 0), 12 * k, 1e-15);
    ck_assert_close(nn_clip_grad_norm(l, 1e9), 6.5 * 13 / (13 + 1e-6), 1e-14);
    /* by value */
    set_grad(a, (double[]){3, -4});
    ck_assert_int_eq(nn_clip_grad_value(l, 3.5), 0);
    ck_assert_close(ot_at(ad_tensor_grad(a), 0), 3, 0);
    ck_assert_close(ot_at(ad_tensor_grad(a), 1), -3.5, 0);
    ck_assert_close(ot_at(ad_tensor_grad(b), 0), 3.5, 0);
    /* by value, a NaN stays NaN (PyTorch's clamp) */
    set_grad(a, (double[]){NAN, 9});
    ck_assert_int_eq(nn_clip_grad_value(l, 0.5), 0);
    ck_assert(isnan(ot_at(ad_tensor_grad(a), 0)));
    ck_assert_close(ot_at(ad_tensor_grad(a), 1), 0.5, 0);
    /* finite gradients whose squares overflow: the norm and the scaling */
    set_grad(a, (double[]){1e200, 0.5});
    set_grad(b, (double[]){-1e200});
    ck_assert_close(nn_clip_grad_norm(l, 1), sqrt(2) * 1e200, 1e-15);
    ck_assert_close(ot_at(ad_tensor_grad(a), 0), 1 / sqrt(2), 1e-15);
    ck_assert_close(ot_at(ad_tensor_grad(b), 0), -1 / sqrt(2), 1e-15);
    set_grad(b, (double[]){0});
    /* a non-finite norm is returned and the gradients left alone */
    set_grad(a, (double[]){INFINITY, 1});
    ck_assert(isinf(nn_clip_grad_norm(l, 1)));
    ck_assert_close(ot_at(ad_tensor_grad(a), 1), 1, 0);
    /* errors */
    ad_clear_error();
    ck_assert_close(nn_clip_grad_norm(l, -1), -1, 0);
    ck_assert_ptr_nonnull(strstr(ad_error(), "max_norm must be >= 0, got -1"));
    ck_assert_error_rc(nn_clip_grad_value(l, NAN), "nn_clip_grad_value: clip must be finite");
    ck_assert_error_rc(nn_clip_grad_value(NULL, 1), "argument 'params' is NULL");
    nn_named_tensors_free(l);
    ad_tensor_free(a);
    ad_tensor_free(b);
    ad_tensor_free(c);
}
END_TEST

/* ---- gradient report ------------------------------------------------------------------------ */

static char *slurp(FILE *f)
{
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), n);
    fclose(f);
    return s;
}

START_TEST(grad_report)
{
    nn_module *m = mlp(3);
    ad_tape *t = ad_tape_new();
    nn_named_tensors *p = nn_parameters(m);
    nn_optim *o = nn_sgd(p, NULL);
    nn_named_tensors_free(p);
    /* Freeze the last bias: it gets no gradient and shows "-". */
    ck_assert_int_eq(ad_set_requires_grad(nn_get_parameter(m, "2.bias"), false), 0);
    train_step(m, o, t);
    FILE *f = tmpfile();
    ck_assert_int_eq(nn_grad_norm_report(m, f), 0);
    char *s = slurp(f);
    ck_assert_ptr_nonnull(strstr(s, "parameter"));
    ck_assert_ptr_nonnull(strstr(s, "0.weight"));
    ck_assert_ptr_nonnull(strstr(s, "[4,3]"));
    ck_assert_ptr_nonnull(strstr(s, "total"));
    const char *line = strstr(s, "2.bias");
    ck_assert_ptr_nonnull(line);
    ck_assert_ptr_nonnull(strstr(line, " -"));
    /* ||w|| of 0.bias printed as computed */
    ad_tensor *b0 = nn_get_parameter(m, "0.bias");
    double n2 = 0;
    for (int i = 0; i < 4; i++) n2 += ot_at(b0, i) * ot_at(b0, i);
    char want[32];
    snprintf(want, sizeof want, "%.4e", sqrt(n2));
    ck_assert_ptr_nonnull(strstr(strstr(s, "0.bias"), want));
    free(s);
    ck_assert_error_rc(nn_grad_norm_report(NULL, stdout), "argument 'm' is NULL");
    nn_optim_free(o);
    nn_module_free(m);
    ad_tape_free(t);
}
END_TEST

/* ---- bad hyper-parameters ------------------------------------------------------------------- */

START_TEST(bad_options)
{
    ad_tensor *w = param(2, W0);
    nn_named_tensors *l = one(w);
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = -0.1}),
                    "nn_sgd: learning rate must be finite and >= 0, got -0.1");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = NAN}), "learning rate must be finite");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = INFINITY}), "got inf");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .momentum = 1}),
                    "nn_sgd: momentum must be in [0, 1), got 1");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .momentum = -0.5}), "momentum");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .dampening = 2}), "dampening");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .weight_decay = -1}),
                    "weight_decay must be finite and >= 0, got -1");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .nesterov = true}),
                    "nesterov momentum needs momentum > 0 and dampening 0");
    ck_assert_error(nn_sgd(l, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9, .dampening = 0.1,
                                                .nesterov = true}),
                    "dampening 0.1");
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.beta1 = NAN;
    ck_assert_error(nn_adam(l, &ao), "nn_adam: beta1 must be in [0, 1), got nan");
    ao = (nn_adam_options)NN_ADAM_DEFAULTS;
    ao.beta2 = 1;
    ck_assert_error(nn_adamw(l, &ao), "nn_adamw: beta2 must be in [0, 1), got 1");
    ao = (nn_adam_options)NN_ADAM_DEFAULTS;
    ao.eps = -1e-8;
    ck_assert_error(nn_adam(l, &ao), "eps must be finite and >= 0");
    nn_rmsprop_options ro = NN_RMSPROP_DEFAULTS;
    ro.alpha = 1.5;
    ck_assert_error(nn_rmsprop(l, &ro), "nn_rmsprop: alpha must be in [0, 1], got 1.5");
    ro = (nn_rmsprop_options)NN_RMSPROP_DEFAULTS;
    ro.momentum = 1;
    ck_assert_error(nn_rmsprop(l, &ro), "momentum must be in [0, 1)");
    ck_assert_error(nn_sgd(NULL, NULL), "nn_sgd: argument 'params' is NULL");
    /* a parameter listed twice, a non-leaf, an integer tensor */
    nn_named_tensors *twice = nn_named_tensors_new(2, (const char *[]){"a", "b"},
                                                   (ad_tensor *[]){w, w});
    ck_assert_error(nn_adam(twice, NULL), "parameter 'b' is listed twice (also as 'a')");
    nn_named_tensors_free(twice);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *nl = ad_mul_scalar(w, 2);
    nn_named_tensors *bad = nn_named_tensors_new(1, NULL, &nl);
    ck_assert_error(nn_sgd(bad, NULL), "parameter '0' must be a floating leaf tensor");
    nn_named_tensors_free(bad);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor *ints = ad_zeros(NULL, AD_INT64, 1, (int64_t[]){2});
    bad = nn_named_tensors_new(1, NULL, &ints);
    ck_assert_error(nn_sgd(bad, NULL), "must be a floating leaf tensor (got a int64 leaf)");
    nn_named_tensors_free(bad);
    ad_tensor_free(ints);
    ck_assert_error(nn_named_tensors_new(-1, NULL, NULL), "n must be >= 0, got -1");
    ck_assert_error(nn_named_tensors_new(1, NULL, (ad_tensor *[]){NULL}), "tensor 0 is NULL");
    ck_assert_error_rc(nn_optim_step(NULL), "nn_optim_step: argument 'opt' is NULL");
    ck_assert(isnan(nn_optim_get_lr(NULL)));
    nn_optim_free(NULL);
    nn_named_tensors_free(l);
    ad_tensor_free(w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("sgd");
    tcase_add_test(tc, sgd_plain);
    tcase_add_test(tc, frozen_parameter_is_not_stepped);
    tcase_add_test(tc, sgd_momentum);
    tcase_add_test(tc, sgd_dampening);
    tcase_add_test(tc, sgd_nesterov);
    tcase_add_test(tc, sgd_weight_decay);
    tcase_add_test(tc, sgd_float32_and_state);
    suite_add_tcase(s, tc);
    tc = tcase_create("adaptive");
    tcase_add_test(tc, adam_two_steps);
    tcase_add_test(tc, adamw_vs_adam_weight_decay);
    tcase_add_test(tc, adam_amsgrad);
    tcase_add_test(tc, rmsprop_one_step);
    tcase_add_test(tc, rmsprop_momentum);
    suite_add_tcase(s, tc);
    tc = tcase_create("state");
    tcase_add_test(tc, state_names_and_resume);
    tcase_add_test(tc, sgd_state_names);
    tcase_add_test(tc, module_forms_match_list_forms);
    suite_add_tcase(s, tc);
    tc = tcase_create("schedules_clipping");
    tcase_add_test(tc, sliced_step_matches);
    tcase_add_test(tc, isa_copies_match);
    tcase_add_test(tc, schedules);
    tcase_add_test(tc, clip_norm);
    tcase_add_test(tc, grad_report);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_test(tc, bad_options);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* tests/test_state.c - nn/state.h: whole-state checkpoints.
 *
 *   resume     a run with dropout, Adam and a data stream of its own,
 *              interrupted by a checkpoint and continued by a process
 *              that started from other seeds, ends with the parameters,
 *              moments and random streams of the uninterrupted run, bit for
 *              bit (memcmp);
 *   parts      the model alone from a full checkpoint; metadata read back;
 *   errors     a file of another optimiser, a file without our metadata, an
 *              unknown entry, bad arguments: each refused with nothing
 *              changed. */
#include <locale.h>
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static char tmpdir[512];

static const char *tpath(const char *name)
{
    static char buf[4][640];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

typedef struct run {
    nn_module *net;
    nn_optim *opt;
    ad_rng data; /* draws each step's batch */
    ad_tape *tape;
    int64_t step;
} run;

static void run_init(run *r, uint64_t seed, bool sgd)
{
    ad_rng init;
    ad_rng_init(&init, seed);
    r->net = NN_SEQUENTIAL(nn_linear(4, 8, true, AD_FLOAT32, &init), nn_relu(),
                           nn_dropout(0.3, seed + 1), nn_linear(8, 2, true, AD_FLOAT32, &init));
    ck_assert_msg(r->net != NULL, "%s", ad_error());
    nn_named_tensors *ps = nn_parameters(r->net);
    r->opt = sgd ? nn_sgd(ps, &(nn_sgd_options){.lr = 0.05, .momentum = 0.9})
                 : nn_adam(ps, &(nn_adam_options)NN_ADAM_DEFAULTS);
    nn_named_tensors_free(ps);
    ck_assert(r->opt != NULL);
    ad_rng_init(&r->data, seed + 2);
    r->tape = ad_tape_new();
    r->step = 0;
}

static void run_free(run *r)
{
    nn_optim_free(r->opt);
    nn_module_free(r->net);
    ad_tape_free(r->tape);
}

static void run_steps(run *r, int k)
{
    ad_tape_activate(r->tape);
    for (int i = 0; i < k; i++, r->step++) {
        ad_tensor *x = ad_randn(r->tape, &r->data, AD_FLOAT32, 2, (int64_t[]){16, 4}, 0, 1);
        ad_tensor *y = ad_randn(r->tape, &r->data, AD_FLOAT32, 2, (int64_t[]){16, 2}, 0, 1);
        ck_assert_int_eq(nn_optim_zero_grad(r->opt), 0);
        ad_tensor *loss = nn_mse_loss(nn_forward(r->net, x), y, NN_MEAN);
        ck_assert_msg(loss && ad_backward(loss, NULL, 0) == 0, "%s", ad_error());
        ck_assert_int_eq(nn_optim_step(r->opt), 0);
        ck_assert_int_eq(ad_tape_reset(r->tape), 0);
    }
    ad_tape_activate(NULL);
}

static nn_checkpoint ck_of(run *r, const char *meta)
{
    static const char *names[] = {"data"};
    static ad_rng *rngs[1];
    rngs[0] = &r->data;
    return (nn_checkpoint){.model = r->net, .optim = r->opt, .n_rngs = 1, .rng_names = names,
                           .rngs = rngs, .epoch = 1, .step = r->step, .metadata_json = meta};
}

/* Every tensor of the model and the optimiser, and the random streams. */
static void assert_same_state(run *a, run *b)
{
    nn_named_tensors *lists[2][2] = {{nn_state_dict(a->net), nn_optim_state(a->opt)},
                                     {nn_state_dict(b->net), nn_optim_state(b->opt)}};
    for (int l = 0; l < 2; l++) {
        ck_assert_int_eq(lists[0][l]->n, lists[1][l]->n);
        for (int i = 0; i < lists[0][l]->n; i++) {
            ad_tensor *ta = lists[0][l]->tensors[i], *tb = lists[1][l]->tensors[i];
            size_t bytes = (size_t)ad_numel(ta) * ad_dtype_size(ad_tensor_dtype(ta));
            ck_assert_msg(memcmp(ad_data(ta), ad_data(tb), bytes) == 0, "%s differs",
                          lists[0][l]->names[i]);
        }
        nn_named_tensors_free(lists[0][l]);
        nn_named_tensors_free(lists[1][l]);
    }
    ck_assert_uint_eq(a->data.counter, b->data.counter);
    ck_assert_uint_eq(a->data.seed, b->data.seed);
    ad_rng *da = nn_module_rng(nn_child(a->net, 2)), *db = nn_module_rng(nn_child(b->net, 2));
    ck_assert(da && db);
    ck_assert_uint_eq(da->counter, db->counter);
    ck_assert_uint_eq(da->seed, db->seed);
    ck_assert_int_eq(a->step, b->step);
}

START_TEST(resume_is_bit_identical)
{
    run a, b, c;
    /* the uninterrupted run, its rate changed after step 3 (a schedule or
     * a callback): the checkpoint keeps the rate */
    run_init(&a, 7, false);
    run_steps(&a, 3);
    double lr = nn_optim_get_lr(a.opt) * 0.37;
    ck_assert_int_eq(nn_optim_set_lr(a.opt, lr), 0);
    run_steps(&a, 5);

    run_init(&b, 7, false);
    run_steps(&b, 3);
    ck_assert_int_eq(nn_optim_set_lr(b.opt, lr), 0);
    nn_checkpoint ck = ck_of(&b, "{\"run\": \"resume test\"}");
    ck_assert_msg(nn_checkpoint_save(tpath("s.safetensors"), &ck) == 0, "%s", ad_error());

    run_init(&c, 1234, false); /* other weights, dropout and data seeds */
    ck = ck_of(&c, NULL);
    ck.epoch = ck.step = 0;
    ck_assert_msg(nn_checkpoint_load(tpath("s.safetensors"), &ck) == 0, "%s", ad_error());
    ck_assert_int_eq(ck.epoch, 1);
    ck_assert_int_eq(ck.step, 3);
    ck_assert_double_eq(nn_optim_get_lr(c.opt), lr);
    c.step = ck.step;
    assert_same_state(&b, &c);
    run_steps(&c, 5);
    assert_same_state(&a, &c);
    /* and the interrupted run itself, continued, is the uninterrupted one */
    run_steps(&b, 5);
    assert_same_state(&a, &b);

    nn_safetensors_info *info = nn_safetensors_inspect(tpath("s.safetensors"));
    ck_assert_ptr_nonnull(info);
    ck_assert_str_eq(nn_safetensors_metadata(info, "run"), "resume test");
    ck_assert_str_eq(nn_safetensors_metadata(info, "nn_checkpoint_optim"), "Adam");
    ck_assert_str_eq(nn_safetensors_metadata(info, "nn_checkpoint_step"), "3");
    bool seen_mrng = false, seen_rng = false, seen_optim = false;
    for (int i = 0; i < info->n; i++) {
        seen_mrng |= !strcmp(info->entries[i].name, "module_rng.2");
        seen_rng |= !strcmp(info->entries[i].name, "rng.data");
        seen_optim |= !strcmp(info->entries[i].name, "optim.0.weight.exp_avg");
    }
    ck_assert(seen_mrng && seen_rng && seen_optim);
    nn_safetensors_info_free(info);
    run_free(&a);
    run_free(&b);
    run_free(&c);
}
END_TEST

/* A rate of 0 (a cosine schedule's last step with eta_min 0, a warm-up's
 * first): saved, and loaded back (the load refused it as "not a learning
 * rate", so such a checkpoint could never be restored). */
START_TEST(zero_rate_round_trip)
{
    run b, c;
    run_init(&b, 7, false);
    run_steps(&b, 2);
    ck_assert_int_eq(nn_optim_set_lr(b.opt, nn_lr_cosine(0.1, 100, 100, 0)), 0);
    ck_assert_double_eq(nn_optim_get_lr(b.opt), 0);
    nn_checkpoint ck = ck_of(&b, NULL);
    ck_assert_msg(nn_checkpoint_save(tpath("z.safetensors"), &ck) == 0, "%s", ad_error());
    run_init(&c, 99, false);
    ck = ck_of(&c, NULL);
    ck_assert_msg(nn_checkpoint_load(tpath("z.safetensors"), &ck) == 0, "%s", ad_error());
    ck_assert_double_eq(nn_optim_get_lr(c.opt), 0);
    c.step = ck.step;
    assert_same_state(&b, &c);
    run_free(&b);
    run_free(&c);
}
END_TEST

/* A checkpoint saved by a program running under a decimal-comma locale
 * reads back under any other: the rate is written and read in the C
 * locale's syntax (it was "0x1,3333333333333p-3", refused elsewhere).
 * Needs such a locale installed (de_DE, fr_FR); without one only the
 * round trip in the C locale is checked. */
START_TEST(rate_is_locale_independent)
{
    static const char *const commas[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8",
                                         "fr_FR.utf8", "de_DE", "fr_FR"};
    const char *got = NULL;
    for (size_t i = 0; !got && i < sizeof commas / sizeof *commas; i++)
        if (setlocale(LC_NUMERIC, commas[i])) got = commas[i];
    if (!got) printf("rate_is_locale_independent: no decimal-comma locale installed\n");
    run b, c;
    run_init(&b, 7, false);
    run_steps(&b, 2);
    ck_assert_int_eq(nn_optim_set_lr(b.opt, 0.15), 0);
    nn_checkpoint ck = ck_of(&b, NULL);
    ck_assert_msg(nn_checkpoint_save(tpath("l.safetensors"), &ck) == 0, "%s", ad_error());
    setlocale(LC_NUMERIC, "C");
    nn_safetensors_info *info = nn_safetensors_inspect(tpath("l.safetensors"));
    ck_assert_ptr_nonnull(info);
    ck_assert_str_eq(nn_safetensors_metadata(info, "nn_checkpoint_lr"), "0x1.3333333333333p-3");
    nn_safetensors_info_free(info);
    run_init(&c, 99, false);
    ck = ck_of(&c, NULL);
    ck_assert_msg(nn_checkpoint_load(tpath("l.safetensors"), &ck) == 0, "%s", ad_error());
    ck_assert_double_eq(nn_optim_get_lr(c.opt), 0.15);
    /* and read back under the comma locale too */
    if (got) setlocale(LC_NUMERIC, got);
    run_free(&c);
    run_init(&c, 99, false);
    ck = ck_of(&c, NULL);
    ck_assert_msg(nn_checkpoint_load(tpath("l.safetensors"), &ck) == 0, "%s", ad_error());
    ck_assert_double_eq(nn_optim_get_lr(c.opt), 0.15);
    setlocale(LC_NUMERIC, "C");
    run_free(&b);
    run_free(&c);
}
END_TEST

START_TEST(model_alone_and_errors)
{
    run b, c, s;
    run_init(&b, 7, false);
    run_steps(&b, 2);
    nn_checkpoint ck = ck_of(&b, NULL);
    ck_assert_int_eq(nn_checkpoint_save(tpath("m.safetensors"), &ck), 0);

    /* the model alone (optimiser, streams left out) */
    run_init(&c, 99, false);
    nn_checkpoint only = {.model = c.net};
    ck_assert_msg(nn_checkpoint_load(tpath("m.safetensors"), &only) == 0, "%s", ad_error());
    ck_assert_int_eq(only.step, 2);
    ad_tensor *wb = nn_get_parameter(b.net, "3.weight"), *wc = nn_get_parameter(c.net, "3.weight");
    ck_assert(memcmp(ad_data(wb), ad_data(wc), 16 * sizeof(float)) == 0);
    /* the dropout stream is the model's: restored with it */
    ck_assert_uint_eq(nn_module_rng(nn_child(c.net, 2))->seed, 8);

    /* another optimiser: refused, nothing changed */
    run_init(&s, 5, true);
    float before = ((float *)ad_data(nn_get_parameter(s.net, "0.bias")))[0];
    nn_checkpoint cs = ck_of(&s, NULL);
    ck_assert_error_rc(nn_checkpoint_load(tpath("m.safetensors"), &cs),
                       "m.safetensors: the optimiser's state is Adam's in the file, the "
                       "optimiser is SGD");
    ck_assert(((float *)ad_data(nn_get_parameter(s.net, "0.bias")))[0] == before);
    ck_assert_int_eq(cs.step, 0);

    /* an rng the file does not have, and one it has that is not asked for */
    ad_rng other;
    ad_rng_init(&other, 3);
    nn_checkpoint two = ck_of(&c, NULL);
    two.n_rngs = 2;
    two.rng_names = (const char *[]){"data", "noise"};
    two.rngs = (ad_rng *[]){&c.data, &other};
    ck_assert_error_rc(nn_checkpoint_load(tpath("m.safetensors"), &two), "rng.noise");
    ck_assert_uint_eq(other.seed, 3);
    ck_assert_int_eq(nn_checkpoint_save(tpath("two.safetensors"), &two), 0);
    ck_assert_error_rc(nn_checkpoint_load(tpath("two.safetensors"), &(nn_checkpoint){.model = c.net,
                                                                  .optim = c.opt, .n_rngs = 1,
                                                                  .rng_names = (const char *[]){"data"},
                                                                  .rngs = (ad_rng *[]){&c.data}}),
                       "two.safetensors: the file has 'rng.noise', which is not among the "
                       "tensors asked for");

    /* a plain safetensors file has none of our metadata */
    nn_named_tensors *sd = nn_state_dict(c.net);
    ck_assert_int_eq(nn_save_safetensors(tpath("plain.safetensors"), sd->n, sd->names,
                                         sd->tensors, NULL), 0);
    nn_named_tensors_free(sd);
    ck_assert_error_rc(nn_checkpoint_load(tpath("plain.safetensors"), &only),
                       "no \"nn_checkpoint_epoch\" in its metadata: not saved by "
                       "nn_checkpoint_save");
    /* a count past INT64_MAX (strtoll clamped it, and it was taken) */
    sd = nn_state_dict(c.net);
    ck_assert_int_eq(nn_save_safetensors(tpath("huge.safetensors"), sd->n, sd->names, sd->tensors,
                                         "{\"nn_checkpoint_epoch\": \"99999999999999999999\", "
                                         "\"nn_checkpoint_step\": \"1\"}"),
                     0);
    nn_named_tensors_free(sd);
    ck_assert_error_rc(nn_checkpoint_load(tpath("huge.safetensors"), &only),
                       "\"nn_checkpoint_epoch\" is '99999999999999999999', not a count");

    /* bad arguments */
    ck_assert_error_rc(nn_checkpoint_save(NULL, &ck), "argument 'path' is NULL");
    ck_assert_error_rc(nn_checkpoint_save(tpath("x"), NULL), "argument 'ck' is NULL");
    nn_checkpoint bad = ck;
    bad.metadata_json = "{\"nn_checkpoint_step\": \"9\"}";
    ck_assert_error_rc(nn_checkpoint_save(tpath("x"), &bad), "starting 'nn_checkpoint_'");
    /* the key as JSON reads it, escapes and all; a value may say anything */
    bad.metadata_json = "{\"nn\\u005fcheckpoint_lr\": \"0x1p+3\"}";
    ck_assert_error_rc(nn_checkpoint_save(tpath("x"), &bad), "starting 'nn_checkpoint_'");
    bad.metadata_json = "{\"note\": \"nn_checkpoint_ files\"}";
    ck_assert_int_eq(nn_checkpoint_save(tpath("x"), &bad), 0);
    bad.metadata_json = "[1]";
    ck_assert_error_rc(nn_checkpoint_save(tpath("x"), &bad), "must be a JSON object");
    bad = ck;
    bad.step = -1;
    ck_assert_error_rc(nn_checkpoint_save(tpath("x"), &bad), "must be >= 0");
    bad = two;
    bad.rng_names = (const char *[]){"data", "data"};
    ck_assert_error_rc(nn_checkpoint_save(tpath("x"), &bad), "rng name 'data' is given twice");
    bad.n_rngs = NN_CHECKPOINT_MAX_RNGS + 1;
    ck_assert_error_rc(nn_checkpoint_save(tpath("x"), &bad), "n_rngs 65 out of range 0..64");
    run_free(&b);
    run_free(&c);
    run_free(&s);
}
END_TEST

int main(void)
{
    if (ot_make_tmpdir(tmpdir, sizeof tmpdir, "test_state")) return EXIT_FAILURE;
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("state");
    tcase_add_test(tc, resume_is_bit_identical);
    tcase_add_test(tc, zero_rate_round_trip);
    tcase_add_test(tc, rate_is_locale_independent);
    tcase_add_test(tc, model_alone_and_errors);
    suite_add_tcase(s, tc);
    int rc = ot_run(s);
    ot_remove_tree(tmpdir);
    return rc;
}

/* tests/test_lifetimes.c - the safety nets against silently wrong answers:
 * handles kept past their tape's reset or free, inputs freed before
 * backward, detach across steps, values changed in place after an op saved
 * them, and NULL optional arguments that are really failures.  Each case is
 * a mistake users make; before these nets each gave a wrong gradient or a
 * crash, now each gives an error that names the cause (or, for detach and
 * freed inputs, the right answer). */
#include <stdlib.h>
#include <string.h>

#include <nn/nn.h>

#include "optest.h"

/* The pending error message contains needle. */
#define ck_assert_err_has(needle)                                                      \
    ck_assert_msg(ad_error() && strstr(ad_error(), (needle)), "message '%s' lacks '%s'",   \
                  ad_error() ? ad_error() : "(none)", (needle))

static ad_tensor *f64(ad_tape *t, double v) { return ad_scalar_tensor(t, AD_FLOAT64, v); }

/* One step of a tiny recurrent net, h' = tanh(w h + x). */
static ad_tensor *cell(ad_tensor *w, ad_tensor *h, ad_tensor *x)
{
    return ad_tanh(ad_add(ad_mul(w, h), x));
}

START_TEST(hidden_state_kept_across_reset_is_an_error)
{
    /* Truncated BPTT written wrongly: the hidden state of chunk 1 is used
     * in chunk 2 after the reset, without detaching.  Its memory has been
     * handed out again, so it used to read whatever the new chunk put
     * there, and dL/dw came out wrong. */
    ad_tape *t = ad_tape_new();
    ad_tensor *w = ad_scalar_tensor(NULL, AD_FLOAT64, 0.5);
    ad_set_requires_grad(w, true);
    ad_tensor *h = f64(t, 0.0);
    for (int k = 0; k < 3; k++) h = cell(w, h, f64(t, 0.1 * (k + 1)));
    ck_assert_int_eq(ad_backward(ad_sum(h, NULL, 0, false), NULL, 0), 0);
    ad_tape_reset(t);
    ad_tensor *x = f64(t, 0.7); /* the next chunk reuses the arena */
    ck_assert_error(cell(w, h, x), "was recorded before ad_tape_reset; detach it (ad_detach)");
    ck_assert_error_rc(ad_backward(h, NULL, 0), "was recorded before ad_tape_reset");
    ck_assert_error(ad_detach(h), "was recorded before ad_tape_reset");
    /* Accessors fail too, rather than read the reused memory. */
    ck_assert_int_eq(ad_ndim(h), -1);
    ck_assert_err_has("ad_ndim: argument 't' was recorded before ad_tape_reset");
    ad_clear_error();
    ck_assert(isnan(ad_item(h)));
    ad_clear_error();
    ck_assert(!ad_requires_grad(h));
    ad_tensor_free(w);
    ad_tape_free(t);
}
END_TEST

START_TEST(detached_state_carries_across_one_reset)
{
    /* The same loop written as documented: h = ad_detach(h) before the
     * reset.  The second chunk's gradient must equal a direct computation
     * from a fresh leaf holding h's value. */
    ad_tape *t = ad_tape_new();
    ad_tensor *w = ad_scalar_tensor(NULL, AD_FLOAT64, 0.5);
    ad_set_requires_grad(w, true);
    ad_tensor *h = f64(t, 0.0);
    for (int k = 0; k < 3; k++) h = cell(w, h, f64(t, 0.1 * (k + 1)));
    double h_value = ad_item(h);
    ck_assert_int_eq(ad_backward(h, NULL, 0), 0);
    h = ad_detach(h);
    ck_assert_ptr_nonnull(h);
    ck_assert(!ad_requires_grad(h) && ad_is_leaf(h));
    ad_tape_reset(t);
    ad_zero_grad(w);
    /* Fill the arena where the old h lived, then use the carried h. */
    for (int k = 0; k < 50; k++) ad_full(t, AD_FLOAT64, AD_SHAPE(8), -99.0);
    ck_assert_double_eq(ad_item(h), h_value);
    ad_tensor *h2 = cell(w, h, f64(t, 0.4));
    ck_assert_int_eq(ad_backward(h2, NULL, 0), 0);
    double got = ad_item(ad_tensor_grad(w));
    /* d tanh(w h + x)/dw with h a constant. */
    double a = tanh(0.5 * h_value + 0.4);
    ck_assert_close(got, (1 - a * a) * h_value, 1e-15);

    /* Detached again each chunk, it keeps going; not detached, it expires
     * at the second reset: h was detached two resets ago, kept one. */
    ad_tensor *kept = ad_detach(h2);
    ad_tape_reset(t);
    ck_assert_close(ad_item(kept), a, 0);
    ck_assert_ptr_nonnull(cell(w, kept, f64(t, 0.1)));
    ck_assert_error(cell(w, h, f64(t, 0.1)), "was detached two or more ad_tape_reset calls ago");
    ad_tape_reset(t);
    ck_assert_error(ad_mul(kept, kept), "was detached two or more");
    ad_tensor_free(w);
    ad_tape_free(t);
}
END_TEST

START_TEST(detach_shares_storage_within_the_step)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *d = ad_detach(ad_expand(ad_reshape(x, AD_SHAPE(3, 1)), AD_SHAPE(3, 2)));
    ad_set(x, (int64_t[]){1}, 20);
    ck_assert_double_eq(ot_at(d, 3), 20); /* a view: the write shows */
    ad_tape_reset(t);
    /* After the reset it holds its own copy: [3, 2] of the values. */
    double want[6] = {1, 1, 20, 20, 3, 3};
    for (int i = 0; i < 6; i++) ck_assert_double_eq(ot_at(d, i), want[i]);
    ck_assert(ad_is_contiguous(d));
    ad_tape_free(t);
    /* Nothing leaks: the sanitizer build checks that the copy is freed. */
}
END_TEST

START_TEST(input_freed_before_backward_keeps_its_values)
{
    /* A loop that frees each batch after forward and loads the next before
     * backward: the tape holds the batch, so backward uses the values the
     * forward saw, not the next batch's. */
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3), (double[]){1, 1, 1});
    ad_set_requires_grad(w, true);
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *loss = ad_sum(ad_mul(x, w), NULL, 0, false);
    ck_assert_int_eq(ad_tensor_free(x), 0);
    ad_tensor *next = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3), (double[]){7, 8, 9});
    ck_assert_int_eq(ad_backward(loss, NULL, 0), 0);
    for (int i = 0; i < 3; i++) ck_assert_double_eq(ot_at(ad_tensor_grad(w), i), i + 1);
    /* x itself is gone for its owner: using or freeing it again is an
     * error while the tape still holds it. */
    ck_assert_error(ad_add(x, w), "was freed with ad_tensor_free");
    ck_assert_error_rc(ad_tensor_free(x), "freed already");
    ad_tape_reset(t); /* releases x for good */
    ad_tape_activate(NULL);
    ad_tensor_free(next);
    ad_tensor_free(w);
    ad_tape_free(t);
}
END_TEST

START_TEST(use_after_tape_free_is_an_error)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ad_ones(t, AD_FLOAT64, AD_SHAPE(2));
    ad_scalar s = ad_scalar_var(t, 1.0);
    ad_tape_free(t);
    ck_assert_error(ad_add(a, a), "belongs to a tape that was freed (ad_tape_free)");
    ck_assert_error(ad_ones(t, AD_FLOAT64, AD_SHAPE(2)), "the tape was freed");
    ck_assert_error_rc(ad_tape_reset(t), "ad_tape_reset: the tape was freed");
    ad_tape_free(t); /* a second free is ignored */
    ck_assert(!ad_scalar_ok(ad_sexp(s)));
    ck_assert_err_has("scalar handle belongs to a tape that was freed");
    ad_clear_error();
    /* A new tape may reuse the structure; the old handles stay stale. */
    ad_tape *t2 = ad_tape_new();
    ad_tensor *b = ad_ones(t2, AD_FLOAT64, AD_SHAPE(2));
    ck_assert_ptr_nonnull(ad_add(b, b));
    ck_assert_ptr_null(ad_add(a, b));
    ad_clear_error();
    ck_assert(!ad_scalar_ok(ad_sexp(s)));
    ad_clear_error();
    ad_tape_free(t2);
    /* A tape reset once and freed: a new tape takes neither its structure
     * nor the header slots of its last step, so its handles stay stale
     * (they were the next tape's first tensors, silently). */
    ad_tape *t3 = ad_tape_new();
    ck_assert_int_eq(ad_tape_reset(t3), 0);
    ad_tensor *c = ad_full(t3, AD_FLOAT64, AD_SHAPE(2), 3.0);
    ad_tape_free(t3);
    ad_tape *t4 = ad_tape_new();
    ck_assert_ptr_ne(t4, t3);
    ad_tensor *d = ad_full(t4, AD_FLOAT64, AD_SHAPE(2), 7.0);
    ck_assert_ptr_ne(d, c);
    ck_assert_error(ad_sum(c, NULL, 0, false), "freed");
    ck_assert_error(ad_ones(t3, AD_FLOAT64, AD_SHAPE(1)), "the tape was freed");
    ad_tape_free(t4);
}
END_TEST

START_TEST(tensors_made_after_freeze_are_stale_after_replay)
{
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ot_f64(t, AD_SHAPE(2), (double[]){1, 2});
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_sum(ad_mul(x, x), NULL, 0, false);
    ad_tape_freeze(t);
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    ad_tensor *g = ad_tensor_grad(x); /* made after the freeze */
    ck_assert_double_eq(ot_at(g, 1), 4);
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0);
    ck_assert_error(ad_mul_scalar(g, 2), "made after ad_tape_freeze and freed by the ad_tape_replay");
    /* What was recorded before the freeze lives on. */
    ck_assert_double_eq(ad_item(y), 5);
    /* Tensors made after this replay do not take g's header: it stays
     * stale (it read the 7th of them, silently). */
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    g = ad_tensor_grad(x);
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0);
    for (int i = 0; i < 50; i++) ck_assert_ptr_ne(ad_full(t, AD_FLOAT64, AD_SHAPE(2), -7.0), g);
    ck_assert_error(ad_mul_scalar(g, 2), "made after ad_tape_freeze and freed by the ad_tape_replay");
    /* and one kept across a reset and the next freeze (it was the first
     * tensor made after that freeze, silently) */
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_sum(ad_ones(t, AD_FLOAT64, AD_SHAPE(2)), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *a = ad_full(t, AD_FLOAT64, AD_SHAPE(2), 7.0); /* made while frozen */
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_sum(ad_ones(t, AD_FLOAT64, AD_SHAPE(2)), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_ptr_ne(ad_full(t, AD_FLOAT64, AD_SHAPE(2), 42.0), a);
    ck_assert_error(ad_mul_scalar(a, 2), "was recorded before ad_tape_reset");
    ad_tape_free(t);
}
END_TEST

/* ad_detach of a tensor made after the freeze: carried, it outlived the
 * replay that rewound its storage and read what the arena held next (1
 * 104 106 after an ad_full of -7, silently).  It expires with the tensor
 * it views now; a detach of a recorded tensor follows the replays. */
START_TEST(detach_after_freeze_expires_at_replay)
{
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x = ot_f64(t, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *y = ad_mul_scalar(x, 2.0);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *d = ad_detach(ad_add_scalar(y, 100.0)), *dy = ad_detach(y);
    ot_assert_values(d, (double[]){102, 104, 106}, 3, 0);
    ad_tensor *x2 = ot_f64(NULL, AD_SHAPE(3), (double[]){10, 20, 30});
    ck_assert_int_eq(ad_tape_replay(t, 1, &x, &x2), 0);
    ad_full(t, AD_FLOAT64, AD_SHAPE(3), -7.0);
    ck_assert_error(ad_mul_scalar(d, 1.0), "made after ad_tape_freeze and freed by the ad_tape_replay");
    ot_assert_values(dy, (double[]){20, 40, 60}, 3, 0);
    ad_tensor_free(x2);
    ad_tape_activate(prev);
    ad_tape_free(t);
}
END_TEST

START_TEST(input_changed_in_place_before_backward_is_an_error)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *w = ot_f64(t, AD_SHAPE(3), (double[]){4, 5, 6});
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_sum(ad_mul(x, w), NULL, 0, false);
    ck_assert_uint_eq(ad_version(w), 0);
    ad_fill(w, 0.0);
    ck_assert_uint_eq(ad_version(w), 1);
    ck_assert_error_rc(ad_backward(y, NULL, AD_RETAIN_GRAPH),
                       "ad_backward: input 1 of ad_mul, saved for backward, was modified in "
                       "place (version 0, now 1)");
    /* Through a view: the version belongs to the storage. */
    ad_tensor *x2 = ot_f64(t, AD_SHAPE(4), (double[]){1, 2, 3, 4});
    ad_set_requires_grad(x2, true);
    ad_tensor *v = ad_reshape(x2, AD_SHAPE(2, 2));
    ad_tensor *z = ad_sum(ad_exp(v), NULL, 0, false);
    ad_set(x2, (int64_t[]){0}, 9.0);
    ck_assert_error_rc(ad_backward(z, NULL, AD_RETAIN_GRAPH), "of ad_exp, saved for backward");
    /* Writes through ad_data are seen once marked. */
    ad_tensor *p = ot_f64(t, AD_SHAPE(2), (double[]){1, 2});
    ad_set_requires_grad(p, true);
    ad_tensor *q = ad_sum(ad_square(p), NULL, 0, false);
    ((double *)ad_data(p))[0] = 5;
    ck_assert_int_eq(ad_mark_modified(p), 0);
    ck_assert_error_rc(ad_backward(q, NULL, 0), "input 0 of ad_square");
    ad_tape_free(t);
}
END_TEST

START_TEST(optimiser_step_before_backward_is_an_error)
{
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), (double[]){1, 2});
    ad_set_requires_grad(w, true);
    nn_named_tensors *ps = nn_named_tensors_new(1, NULL, &w);
    nn_sgd_options so = {0.1, 0, 0, 0, false};
    nn_optim *opt = nn_sgd(ps, &so);
    ck_assert_ptr_nonnull(opt);
    ad_tensor *loss = ad_sum(ad_square(w), NULL, 0, false);
    ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
    ck_assert_int_eq(nn_optim_step(opt), 0); /* w changes in place */
    ck_assert_error_rc(ad_backward(loss, NULL, 0), "input 0 of ad_square, saved for backward");
    ad_tape_activate(NULL);
    nn_optim_free(opt);
    nn_named_tensors_free(ps);
    ad_tensor_free(w);
    ad_tape_free(t);
}
END_TEST

/* The same for the optimiser's state, written in place by the step: an op
 * that read Adam's first moment is not differentiated with the moment of
 * the next step (it was, silently: dy/dx [0.28 0.46] for [0.2 0.4]). */
START_TEST(optimiser_state_changed_by_a_step_is_an_error)
{
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), (double[]){1, 2});
    ad_set_requires_grad(w, true);
    nn_named_tensors *ps = nn_named_tensors_new(1, (const char *[]){"w"}, &w);
    nn_adam_options ao = {0};
    ao.lr = 0.1, ao.beta1 = 0.9, ao.beta2 = 0.999, ao.eps = 1e-8;
    nn_optim *opt = nn_adam(ps, &ao);
    ck_assert_ptr_nonnull(opt);
    ck_assert_int_eq(ad_backward(ad_sum(ad_square(w), NULL, 0, false), NULL, 0), 0);
    ck_assert_int_eq(nn_optim_step(opt), 0);
    ck_assert_int_eq(ad_tape_reset(t), 0);
    nn_named_tensors *st = nn_optim_state(opt);
    ck_assert_ptr_nonnull(st);
    for (int i = 0; i < st->n; i++) {
        if (ad_tensor_dtype(st->tensors[i]) != AD_FLOAT64 || ad_numel(st->tensors[i]) != 2)
            continue; /* each moment of w, in turn */
        ad_tensor *x = ot_f64(t, AD_SHAPE(2), (double[]){1, 1});
        ad_set_requires_grad(x, true);
        ad_tensor *y = ad_sum(ad_mul(x, st->tensors[i]), NULL, 0, false);
        ck_assert_int_eq(ad_fill(ad_tensor_grad(w), 1.0), 0);
        ck_assert_int_eq(nn_optim_step(opt), 0);
        ck_assert_error_rc(ad_backward(y, NULL, 0), "saved for backward");
        ck_assert_int_eq(ad_tape_reset(t), 0);
    }
    ad_tape_activate(NULL);
    nn_named_tensors_free(st);
    nn_optim_free(opt);
    nn_named_tensors_free(ps);
    ad_tensor_free(w);
    ad_tape_free(t);
}
END_TEST

START_TEST(replay_with_new_values_is_not_an_in_place_change)
{
    /* Loading the next batch and replaying is the intended use: replay
     * recomputes from the new values, so backward accepts them. */
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ot_f64(t, AD_SHAPE(2), (double[]){1, 2});
    ad_tensor *w = ot_f64(t, AD_SHAPE(2), (double[]){3, 4});
    ad_set_requires_grad(w, true);
    ad_tensor *y = ad_sum(ad_mul(x, w), NULL, 0, false);
    ad_tape_freeze(t);
    for (int step = 0; step < 3; step++) {
        ad_tensor *batch = ot_f64(t, AD_SHAPE(2), (double[]){step, 10.0 * step});
        ck_assert_int_eq(ad_tape_replay(t, 1, &x, &batch), 0);
        ad_zero_grad(w);
        ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
        ck_assert_double_eq(ot_at(ad_tensor_grad(w), 1), 10.0 * step);
    }
    ad_tape_free(t);
}
END_TEST

START_TEST(null_optional_argument_after_a_failure_is_reported)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 1);
    ad_tensor *x = ad_randn(t, &rng, AD_FLOAT64, AD_SHAPE(1, 2, 5, 5), 0, 1);
    ad_tensor *w = ad_randn(t, &rng, AD_FLOAT64, AD_SHAPE(3, 2, 3, 3), 0, 1);
    ad_tensor *b = ad_randn(t, &rng, AD_FLOAT64, AD_SHAPE(3), 0, 1);
    ad_clear_error();
    /* The bias expression fails (4 elements cannot be [3]); the NULL it
     * returns used to be taken for "no bias". */
    ad_tensor *y = ad_conv2d(x, w, ad_reshape(b, AD_SHAPE(4)), NULL);
    ck_assert_ptr_null(y);
    ck_assert_err_has("ad_conv2d: argument 'bias' is NULL right after a failed call "
                      "(ad_reshape:");
    /* Once the failure was read, NULL is "none" again. */
    ck_assert_ptr_nonnull(ad_conv2d(x, w, NULL, NULL));
    ad_tensor *ln = ad_layer_norm(x, 2, ad_reshape(b, AD_SHAPE(7)), NULL, 1e-5);
    ck_assert_ptr_null(ln);
    ck_assert_err_has("argument 'weight' is NULL right after a failed call");
    ad_clear_error();
    ck_assert_ptr_nonnull(ad_layer_norm(x, 2, NULL, NULL, 1e-5));
    /* The same rule for code built on the library. */
    ad_set_error("mylib_load: no such file");
    ck_assert_int_eq(ad_check_optional("mylib_fit", "mask", NULL), -1);
    ck_assert_err_has("mylib_fit: argument 'mask' is NULL right after a failed call "
                      "(mylib_load: no such file)");
    ck_assert_int_eq(ad_check_optional("mylib_fit", "mask", NULL), 0);
    /* grad_output is the exception: NULL is always the seed of a scalar. */
    ad_set_requires_grad(b, true);
    ad_tensor *loss = ad_sum(ad_square(b), NULL, 0, false);
    ad_set_error("mylib_probe: not found");
    ck_assert_int_eq(ad_backward(loss, NULL, 0), 0);
    ad_clear_error();
    ad_tape_free(t);
}
END_TEST

START_TEST(reset_loop_with_detach_stops_allocating)
{
    /* Detach's copy at reset uses the heap, header slabs are pooled: after
     * two steps a truncated-BPTT loop of fixed shape allocates only the
     * carried copy each step (one storage and its buffer). */
    ad_tape *t = ad_tape_new();
    ad_tensor *w = ad_scalar_tensor(NULL, AD_FLOAT64, 0.9);
    ad_set_requires_grad(w, true);
    ad_tensor *h = f64(t, 0.0);
    ad_tape_stats st0, st1;
    for (int step = 0; step < 6; step++) {
        for (int k = 0; k < 20; k++) h = cell(w, h, f64(t, 0.01 * k));
        ck_assert_int_eq(ad_backward(h, NULL, 0), 0);
        h = ad_detach(h);
        ck_assert_int_eq(ad_tape_get_stats(t, step == 2 ? &st0 : &st1), 0);
        ck_assert_int_eq(ad_tape_reset(t), 0);
    }
    ck_assert_uint_eq(st0.arena_chunks, st1.arena_chunks);
    ck_assert(isfinite(ad_item(h)));
    ad_tensor_free(w);
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lifetimes");
    TCase *tc = tcase_create("lifetimes");
    tcase_add_test(tc, hidden_state_kept_across_reset_is_an_error);
    tcase_add_test(tc, detached_state_carries_across_one_reset);
    tcase_add_test(tc, detach_shares_storage_within_the_step);
    tcase_add_test(tc, input_freed_before_backward_keeps_its_values);
    tcase_add_test(tc, use_after_tape_free_is_an_error);
    tcase_add_test(tc, tensors_made_after_freeze_are_stale_after_replay);
    tcase_add_test(tc, input_changed_in_place_before_backward_is_an_error);
    tcase_add_test(tc, optimiser_step_before_backward_is_an_error);
    tcase_add_test(tc, optimiser_state_changed_by_a_step_is_an_error);
    tcase_add_test(tc, replay_with_new_values_is_not_an_in_place_change);
    tcase_add_test(tc, null_optional_argument_after_a_failure_is_reported);
    tcase_add_test(tc, reset_loop_with_detach_stops_allocating);
    tcase_add_test(tc, detach_after_freeze_expires_at_replay);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

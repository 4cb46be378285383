/* tests/test_replay.c - replayable tapes (record once, run many times,
 * allocation-free in steady state) and anomaly detection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autodiff/internal.h"
#include "optest.h"

/* loss = sum(tanh(x W + b)^2) with x [B,3] data, W [3,2], b [2] persistent. */
static ad_tensor *model(ad_tensor *x, ad_tensor *w, ad_tensor *b)
{
    ad_tensor *h = ad_tanh(ad_add(ad_matmul(x, w), b));
    return ad_sum(ad_mul(h, h), NULL, 0, false);
}

static void grads_direct(const double *xv, ad_tensor *w, ad_tensor *b, double *gw, double *gb,
                         double *loss)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, 2, (int64_t[]){4, 3}, xv);
    ad_zero_grad(w);
    ad_zero_grad(b);
    ad_tensor *l = model(x, w, b);
    ck_assert_int_eq(ad_backward(l, NULL, 0), 0);
    *loss = ad_item(l);
    ad_to_array(ad_tensor_grad(w), gw);
    ad_to_array(ad_tensor_grad(b), gb);
    ad_tape_free(t);
}

START_TEST(replay_matches_recording_and_allocates_nothing)
{
    ad_rng rng;
    ad_rng_init(&rng, 5);
    ad_tensor *w = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(3, 2), 0, 1);
    ad_tensor *b = ad_randn(NULL, &rng, AD_FLOAT64, AD_SHAPE(2), 0, 1);
    ad_set_requires_grad(w, true);
    ad_set_requires_grad(b, true);

    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = ad_zeros(t, AD_FLOAT64, AD_SHAPE(4, 3));
    ad_tensor *loss = model(x, w, b);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ad_tape_freeze(t), 0);

    ad_tape_stats s1, s2;
    for (int step = 0; step < 6; step++) {
        double xv[12], gw[6], gb[2], want_gw[6], want_gb[2], want_loss;
        for (int i = 0; i < 12; i++) xv[i] = sin(step * 12 + i);
        ad_tensor *batch = ot_f64(NULL, 2, (int64_t[]){4, 3}, xv);
        if (step == 2) ad_tape_get_stats(t, &s1);
        ck_assert_msg(ad_tape_replay(t, 1, &x, &batch) >= 0, "%s", ad_error());
        ad_zero_grad(w);
        ad_zero_grad(b);
        ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
        ad_to_array(ad_tensor_grad(w), gw);
        ad_to_array(ad_tensor_grad(b), gb);
        double got_loss = ad_item(loss);
        if (step >= 2) { /* steps 2..N: the arena does not grow */
            ad_tape_get_stats(t, &s2);
            ck_assert_uint_eq(s1.arena_reserved, s2.arena_reserved);
            ck_assert_uint_eq(s1.arena_chunks, s2.arena_chunks);
        }
        ad_tensor_free(batch);
        grads_direct(xv, w, b, want_gw, want_gb, &want_loss);
        ck_assert_close(got_loss, want_loss, 1e-12);
        for (int i = 0; i < 6; i++) ck_assert_close(gw[i], want_gw[i], 1e-12);
        for (int i = 0; i < 2; i++) ck_assert_close(gb[i], want_gb[i], 1e-12);
    }
    ad_tape_free(t);
    ad_tensor_free(w);
    ad_tensor_free(b);
}
END_TEST

/* A second freeze of a frozen tape is refused: it took in what was made
 * after the first, and the next replay handed those headers out again
 * while the recording held them (loss read -7 -7 -7 of a later ad_full). */
START_TEST(freeze_twice_is_refused)
{
    ad_tape *tp = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(tp, true), 0);
    ad_tape *prev = ad_tape_activate(tp);
    ad_tensor *x = ad_from_array(tp, AD_FLOAT64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
    ad_tensor *y = ad_mul_scalar(x, 2.0);
    ck_assert_int_eq(ad_tape_freeze(tp), 0);
    ck_assert_ptr_nonnull(ad_sum_all(y));
    ck_assert_int_eq(ad_tape_freeze(tp), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_STATE);
    ck_assert_ptr_nonnull(strstr(ad_error(), "ad_tape_freeze: the tape is already frozen"));
    ad_tensor *x2 = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){3}, (double[]){10, 20, 30});
    ck_assert_int_eq(ad_tape_replay(tp, 1, &x, &x2), 0);
    ot_assert_values(y, (double[]){20, 40, 60}, 3, 0);
    ad_tensor_free(x2);
    ad_tape_activate(prev);
    ad_tape_free(tp);
}
END_TEST

START_TEST(replay_counts_allocations_exactly)
{
    ad_tensor *w = ad_full(NULL, AD_FLOAT64, AD_SHAPE(3, 2), 0.5);
    ad_tensor *b = ad_full(NULL, AD_FLOAT64, AD_SHAPE(2), -0.1);
    ad_set_requires_grad(w, true);
    ad_set_requires_grad(b, true);
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ad_zeros(t, AD_FLOAT64, AD_SHAPE(4, 3));
    ad_tensor *loss = model(x, w, b);
    ad_tape_freeze(t);
    double *xd = ad_data(x);
    for (int step = 0; step < 5; step++) {
        for (int i = 0; i < 12; i++) xd[i] = cos(step + i); /* new data in place */
        size_t before = ad__alloc_calls;
        ck_assert_int_ge(ad_tape_replay(t, 0, NULL, NULL), 0);
        ad_zero_grad(w);
        ad_zero_grad(b);
        ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
        if (step >= 2) ck_assert_uint_eq(ad__alloc_calls, before); /* zero allocations */
    }
    ad_tape_free(t);
    ad_tensor_free(w);
    ad_tensor_free(b);
}
END_TEST

/* A new value that is a view of the leaf itself (its transpose) is read
 * whole before the leaf is written. */
START_TEST(replay_takes_a_view_of_the_leaf_as_its_value)
{
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = ot_f64(t, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
    ad_tensor *y = ad_mul_scalar(x, 2);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *xt = ad_transpose(x, 0, 1);
    ck_assert_msg(ad_tape_replay(t, 1, &x, &xt) >= 0, "%s", ad_error());
    double got[4], want[4] = {2, 6, 4, 8};
    ck_assert_int_eq(ad_to_array(y, got), 0);
    for (int i = 0; i < 4; i++) ck_assert_double_eq(got[i], want[i]);
    ad_tape_free(t);
}
END_TEST

/* Index ops at replay: a negative entry is taken from the end only where
 * the recorded index had one (a -1 label after a recording without any
 * is an error, not the last class); an embedding refuses one always. */
START_TEST(replay_takes_negative_indices_only_as_recorded)
{
    for (int recorded_neg = 0; recorded_neg < 2; recorded_neg++) {
        ad_tape *t = ad_tape_new();
        ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
        ad_tensor *x = ot_f64(t, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
        ad_tensor *idx = ot_index(t, 2, (int64_t[]){2, 1}, (int64_t[]){0, recorded_neg ? -1 : 2});
        ad_tensor *y = ad_gather(x, 1, idx);
        ad_tensor *e = ad_embedding(x, ot_index(t, 1, (int64_t[]){2}, (int64_t[]){1, 0}));
        ck_assert_ptr_nonnull(y);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(ad_tape_freeze(t), 0);
        ad_tensor *nv = ot_index(NULL, 2, (int64_t[]){2, 1}, (int64_t[]){-1, 1});
        ad_clear_error();
        int rc = ad_tape_replay(t, 1, &idx, &nv);
        if (recorded_neg) {
            ck_assert_msg(rc >= 0, "%s", ad_error());
            double got[2];
            ck_assert_int_eq(ad_to_array(y, got), 0);
            ck_assert_double_eq(got[0], 3); /* x[0, -1] */
            ck_assert_double_eq(got[1], 5);
        } else {
            ck_assert_int_eq(rc, -1);
            ck_assert_msg(strstr(ad_error(), "ad_gather: index[0,0] = -1 is negative in a replay "
                                             "whose recording had no negative entry"),
                          "%s", ad_error());
        }
        ad_tensor_free(nv);
        ad_tape_free(t);
    }
    /* the embedding's ids */
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *w = ot_f64(t, 2, (int64_t[]){3, 2}, (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *ids = ot_index(t, 1, (int64_t[]){2}, (int64_t[]){2, 0});
    ck_assert_ptr_nonnull(ad_embedding(w, ids));
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *nv = ot_index(NULL, 1, (int64_t[]){2}, (int64_t[]){1, -1});
    ad_clear_error();
    ck_assert_int_eq(ad_tape_replay(t, 1, &ids, &nv), -1);
    ck_assert_msg(strstr(ad_error(), "is negative in a replay"), "%s", ad_error());
    ad_clear_error();
    ad_tensor_free(nv);
    ad_tape_free(t);
}
END_TEST

START_TEST(replay_refuses_other_shapes)
{
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ad_zeros(t, AD_FLOAT32, AD_SHAPE(64, 784));
    ad_exp(x);
    ck_assert_error_rc(ad_tape_replay(t, 0, NULL, NULL), "not frozen");
    ad_tape_freeze(t);
    ad_tensor *other = ad_zeros(t, AD_FLOAT32, AD_SHAPE(32, 784));
    ck_assert_error_rc(ad_tape_replay(t, 1, &x, &other),
                       "ad_tape_replay: input 0 was recorded as [64,784] float32, got [32,784] float32");
    ad_tape *plain = ad_tape_new();
    ck_assert_error_rc(ad_tape_freeze(plain), "not recorded as replayable");
    ad_tape_free(plain);
    ad_tape_free(t);
}
END_TEST

/* loss = sum(tanh(x W + b)^2) recorded with W and b frozen: the matmul and
 * the add are on the tape for replay only.  Unfrozen, W and b would get no
 * gradient from a replay, so the replay refuses (nothing changed), and a
 * new recording gives the gradients a direct pass gives. */
START_TEST(replay_refuses_a_path_unfrozen_after_recording)
{
    static const double xv[12] = {0.5, -1, 2, 0.25, 1, -0.5, 1.5, 0, -2, 0.75, -0.25, 1};
    static const double wv[6] = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6}, bv[2] = {0.05, -0.1};
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){3, 2}, wv);
    ad_tensor *b = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){2}, bv);
    ad_tensor *scale = ad_leaf(NULL, AD_FLOAT64, 0, NULL, (double[]){1.5});
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ot_f64(t, 2, (int64_t[]){4, 3}, xv);
    ad_tensor *l = ad_mul(model(x, w, b), scale); /* scale keeps a gradient path */
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0); /* nothing unfrozen yet */
    ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_STATE);
    ck_assert_error_rc(ad_tape_replay(t, 0, NULL, NULL),
                       "ad_tape_replay: input 1 of op 0 (matmul), [3,2] float64, requires grad "
                       "now but did not when the tape was recorded");
    ck_assert_int_eq(ad_set_requires_grad(b, true), 0);
    ad_tape_free(t);
    /* recorded again: the gradients of a pass recorded afresh */
    t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    x = ot_f64(t, 2, (int64_t[]){4, 3}, xv);
    l = ad_mul(model(x, w, b), scale);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0);
    ck_assert_int_eq(ad_backward(l, NULL, AD_RETAIN_GRAPH), 0);
    double gw[6], gb[2], dw[6], db[2], loss;
    ad_to_array(ad_tensor_grad(w), gw);
    ad_to_array(ad_tensor_grad(b), gb);
    ad_tape_free(t);
    grads_direct(xv, w, b, dw, db, &loss);
    for (int i = 0; i < 6; i++) ck_assert_double_eq_tol(gw[i], 1.5 * dw[i], 1e-14);
    for (int i = 0; i < 2; i++) ck_assert_double_eq_tol(gb[i], 1.5 * db[i], 1e-14);
    ck_assert_double_ne(gw[0], 0);
    ad_tensor_free(w);
    ad_tensor_free(b);
    ad_tensor_free(scale);
}
END_TEST

/* What a program computes with grad mode off while recording (a target)
 * is recomputed by replay like any op, and has no gradient path: loss =
 * sum((x w - tanh(x))^2) with tanh(x) computed under no grad, replayed at
 * a new x, gives a fresh recording's loss and dw.  A cast that changes
 * the dtype replays without making the next backward see its output as
 * changed in place. */
START_TEST(replay_recomputes_ops_run_with_grad_mode_off_and_casts)
{
    const double wv[2] = {0.5, -0.3}, x0[2] = {1, 2}, x1[2] = {-3, 0.25};
    ad_tensor *w = ad_leaf(NULL, AD_FLOAT64, 1, (int64_t[]){2}, wv);
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ad_from_array(t, AD_FLOAT64, 1, (int64_t[]){2}, x0);
    bool prev = ad_set_grad_enabled(false);
    ad_tensor *target = ad_tanh(x);
    ad_set_grad_enabled(prev);
    ad_tensor *xw = ad_cast(ad_cast(ad_mul(x, w), AD_FLOAT32), AD_FLOAT64);
    ad_tensor *loss = ad_sum(ad_square(ad_sub(xw, target)), NULL, 0, false);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *nx = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){2}, x1);
    ck_assert_int_eq(ad_tape_replay(t, 1, &x, &nx), 0);
    ck_assert_msg(ad_backward(loss, NULL, AD_RETAIN_GRAPH) == 0, "%s", ad_error());
    double g[2], want = 0, wg[2];
    ad_to_array(ad_tensor_grad(w), g);
    for (int i = 0; i < 2; i++) {
        double d = (double)(float)(x1[i] * wv[i]) - tanh(x1[i]);
        want += d * d;
        wg[i] = 2 * d * x1[i];
    }
    /* (float32 precision: the cast rounds x w, and g on its way back) */
    ck_assert_double_eq_tol(ad_item(loss), want, 1e-6);
    for (int i = 0; i < 2; i++) ck_assert_double_eq_tol(g[i], wg[i], 1e-6);
    ad_tensor_free(nx);
    ad_tape_free(t);
    ad_tensor_free(w);
}
END_TEST

/* A weight a checkpointed function closes over, frozen when recorded and
 * unfrozen before a replay: refused when nothing else gave the checkpoint
 * a gradient path, as without the checkpoint; reported by the
 * gradient-ready hook when something did. */
static int ckpt_tanh_xw(ad_tensor *const *in, int nin, ad_tensor **out, int nout, void *ctx)
{
    (void)nin, (void)nout;
    out[0] = ad_tanh(ad_matmul(in[0], *(ad_tensor **)ctx));
    return out[0] ? 0 : -1;
}
static int ready_count(ad_tensor *leaf, void *ctx)
{
    ad_tensor **watch = ctx;
    if (leaf == watch[0]) watch[1] = leaf;
    return 0;
}

START_TEST(replay_sees_a_frozen_weight_a_checkpoint_closes_over)
{
    const double wv[4] = {0.5, -0.3, 0.2, 0.9}, xv[2] = {1, 2}, uv[2] = {0.7, -1.1};
    for (int xgrad = 0; xgrad < 2; xgrad++) {
        ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){2, 2}, wv);
        ad_tape *t = ad_tape_new();
        ad_tape_set_replayable(t, true);
        ad_tensor *x = ad_from_array(t, AD_FLOAT64, 2, (int64_t[]){1, 2}, xv);
        if (xgrad) ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
        ad_tensor *u = ad_leaf(t, AD_FLOAT64, 2, (int64_t[]){1, 2}, uv);
        ad_tensor *in[1] = {x}, *h[1];
        ck_assert_int_eq(ad_checkpoint(ckpt_tanh_xw, &w, sizeof w, 1, in, 1, h), 0);
        ad_tensor *loss = ad_sum(ad_mul(h[0], u), NULL, 0, false);
        ck_assert_int_eq(ad_tape_freeze(t), 0);
        ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
        if (!xgrad) {
            ck_assert_error_rc(ad_tape_replay(t, 0, NULL, NULL),
                               "(checkpoint), [2,2] float64, requires grad now");
        } else {
            ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0);
            ad_tensor *watch[2] = {w, NULL};
            ad_grad_ready_hook old = ad_set_grad_ready_hook((ad_grad_ready_hook){ready_count, watch});
            ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
            ad_set_grad_ready_hook(old);
            ck_assert_ptr_eq(watch[1], w);
            ck_assert_ptr_nonnull(ad_tensor_grad(w));
        }
        ad_tape_free(t);
        ad_tensor_free(w);
    }
}
END_TEST

START_TEST(replay_recomputes_masks_and_counts_branch_switches)
{
    /* y = sum(where(x > 0, x, -x)) = sum |x|: the mask is on no gradient
     * path but is recorded on a replayable tape, so it is recomputed. */
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ot_f64(t, 1, (int64_t[]){3}, (double[]){1, -2, 3});
    ad_set_requires_grad(x, true);
    ad_tensor *zero = ad_zeros(t, AD_FLOAT64, 0, NULL);
    ad_tensor *y = ad_sum(ad_where(ad_gt(x, zero), x, ad_neg(x)), NULL, 0, false);
    ad_tape_freeze(t);
    ck_assert_close(ad_item(y), 6, 0);
    ad_tensor *v = ot_f64(t, 1, (int64_t[]){3}, (double[]){-1, -2, 5});
    ck_assert_int_eq(ad_tape_replay(t, 1, &x, &v), 1); /* x[0] switched sign */
    ck_assert_close(ad_item(y), 8, 0);
    ck_assert_int_eq(ad_backward(y, NULL, AD_RETAIN_GRAPH), 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 0), -1, 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 2), 1, 0);
    ck_assert_int_eq(ad_tape_replay(t, 0, NULL, NULL), 0); /* nothing changed */
    ad_tape_free(t);
}
END_TEST

/* loss = sum((dropout(x, 0.5) * w)^2) on tape t, x [4, 8] float32 with
 * values xv, w [8] persistent; rng the dropout's stream. */
static ad_tensor *dropout_loss(ad_tape *t, ad_tensor *w, ad_rng *rng, ad_tensor **x)
{
    *x = ad_zeros(t, AD_FLOAT32, AD_SHAPE(4, 8));
    ad_set_requires_grad(*x, true);
    ad_tensor *h = ad_mul(ad_dropout(*x, 0.5, true, rng), w);
    return ad_sum(ad_mul(h, h), NULL, 0, false);
}

START_TEST(replay_draws_a_new_dropout_mask_as_a_fresh_recording_would)
{
    /* A replayed step must be the step a fresh recording from the same rng
     * state gives, bit for bit: same loss, same gradients, same counter. */
    const float wv[8] = {0.5f, -1, 2, 0.25f, -0.75f, 1.5f, 3, -2};
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(8), wv);
    ad_set_requires_grad(w, true);
    ad_rng rng;
    ad_rng_init(&rng, 11);
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *x;
    ad_tensor *loss = dropout_loss(t, w, &rng, &x);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    double first_mask_grad[32];
    for (int step = 0; step < 4; step++) {
        float xv[32];
        for (int i = 0; i < 32; i++) xv[i] = 1.0f + 0.1f * (float)i; /* the same every step */
        ad_tensor *batch = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(4, 8), xv);
        const ad_rng before = rng;
        ck_assert_msg(ad_tape_replay(t, 1, &x, &batch) >= 0, "%s", ad_error());
        ck_assert_uint_eq(rng.counter, before.counter + 32); /* one mask drawn */
        ad_zero_grad(w);
        ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
        double got_gx[32], got_gw[8], got_loss = ad_item(loss);
        ad_to_array(ad_tensor_grad(x), got_gx);
        ad_to_array(ad_tensor_grad(w), got_gw);

        ad_rng fresh = before;
        ad_tape *f = ad_tape_new();
        ad_zero_grad(w);
        ad_tensor *fx2 = ad_from_array(f, AD_FLOAT32, AD_SHAPE(4, 8), xv);
        ad_set_requires_grad(fx2, true);
        ad_tensor *h = ad_mul(ad_dropout(fx2, 0.5, true, &fresh), w);
        ad_tensor *l2 = ad_sum(ad_mul(h, h), NULL, 0, false);
        ck_assert_int_eq(ad_backward(l2, NULL, 0), 0);
        double want_gx[32], want_gw[8];
        ad_to_array(ad_tensor_grad(fx2), want_gx);
        ad_to_array(ad_tensor_grad(w), want_gw);
        ck_assert_uint_eq(fresh.counter, rng.counter);
        ck_assert_msg(got_loss == ad_item(l2), "step %d: replay %.9g, fresh %.9g", step,
                      got_loss, ad_item(l2));
        ck_assert_int_eq(memcmp(got_gx, want_gx, sizeof got_gx), 0);
        ck_assert_int_eq(memcmp(got_gw, want_gw, sizeof got_gw), 0);
        /* The mask is redrawn: dL/dx is zero exactly where it dropped, and
         * steps with the same input differ where the masks do. */
        int dropped = 0, differ = 0;
        for (int i = 0; i < 32; i++) {
            dropped += got_gx[i] == 0.0;
            if (step > 0) differ += (got_gx[i] == 0.0) != (first_mask_grad[i] == 0.0);
        }
        ck_assert_int_gt(dropped, 4);
        ck_assert_int_lt(dropped, 28);
        if (step == 0) memcpy(first_mask_grad, got_gx, sizeof got_gx);
        else ck_assert_int_gt(differ, 0);
        ad_tape_free(f);
        ad_tensor_free(batch);
    }
    ad_tape_free(t);
    ad_tensor_free(w);
}
END_TEST


/* A replay runs the recorded ops and nothing else, so what a program
 * copies or writes through the API while a replayable tape records
 * (which records nothing) happens once.  Where a replay would then give
 * other values than a new recording, the library refuses: a write into
 * a value the recording computes (lost at a replay), an op on a copy of
 * such a value (stale at a replay), and a replay after a value copied in
 * from outside the tape has changed.  Constants written with constants,
 * and copies made with ops, replay as recorded. */
START_TEST(replay_refuses_what_it_would_not_repeat)
{
    const double xv[6] = {0.5, -1, 2, 0.25, 3, -0.75}, nv[6] = {1, 2, -3, 0.5, -0.5, 4};
    ad_tensor *x = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2, 3), xv);
    ad_tensor *nx = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2, 3), nv);
    ad_tape *t = ad_tape_new(), *prev = ad_tape_activate(t);
    ad_tape_set_replayable(t, true);
    ad_tensor *s = ad_sin(x);
    /* a copy of a computed value, into a constant of the tape, by ad_copy
     * (onto the tape or persistent), then read by an op */
    ad_tensor *c = ad_zeros(t, AD_FLOAT64, AD_SHAPE(2, 3));
    ck_assert_int_eq(ad_copy_into(c, s), 0);
    ck_assert_ptr_null(ad_mul(c, x));
    ck_assert_msg(strstr(ad_error(), "holds a copy"), "%s", ad_error());
    ck_assert_ptr_null(ad_exp(ad_copy(t, s)));
    ad_tensor *p = ad_copy(NULL, s);
    ck_assert_ptr_null(ad_exp(p));
    ad_tensor_free(p);
    /* a write into a computed value, through a view or not */
    ck_assert_int_eq(ad_copy_into(ad_narrow(s, 0, 0, 1), ad_narrow(x, 0, 1, 1)), -1);
    ck_assert_msg(strstr(ad_error(), "replay recomputes it"), "%s", ad_error());
    ck_assert_int_eq(ad_fill(s, 1.0), -1);
    ck_assert_int_eq(ad_set(s, (int64_t[]){0, 0}, 1.0), -1);
    ck_assert_int_eq(ad_mark_modified(s), -1);
    /* allowed: a constant filled, a copy by ops */
    ad_tensor *k = ad_zeros(t, AD_FLOAT64, AD_SHAPE(3));
    ck_assert_int_eq(ad_fill(k, 2.0), 0);
    ck_assert_int_eq(ad_set(k, (int64_t[]){1}, -1.0), 0);
    ad_tensor *y = ad_sum_all(ad_mul(ad_contiguous(ad_detach(s)), ad_mul(k, x)));
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_int_eq(ad_tape_replay(t, 1, &x, &nx), 0);
    double want = 0;
    for (int i = 0; i < 6; i++) want += sin(nv[i]) * (i % 3 == 1 ? -1 : 2) * nv[i];
    ck_assert_double_eq_tol(ad_item(y), want, 1e-12);
    /* a leaf's values copied into the tape: replayed as long as they do
     * not change, refused once they do (new values, or written since) */
    ad_tape *u = ad_tape_new();
    ad_tape_activate(u);
    ad_tape_set_replayable(u, true);
    ad_tensor *xc = ad_zeros(u, AD_FLOAT64, AD_SHAPE(2, 3));
    ck_assert_int_eq(ad_copy_into(xc, x), 0);
    ad_tensor *z = ad_sum_all(ad_mul(xc, x));
    ck_assert_int_eq(ad_tape_freeze(u), 0);
    ck_assert_int_eq(ad_tape_replay(u, 0, NULL, NULL), 0);
    ck_assert_int_eq(ad_tape_replay(u, 1, &x, &nx), -1);
    ck_assert_msg(strstr(ad_error(), "has changed since"), "%s", ad_error());
    ck_assert_int_eq(ad_tape_replay(u, 0, NULL, NULL), -1);
    /* ... unless the copy itself is renewed: given new values by the
     * replay, or written by the caller (a batch copied into the tape's
     * input, the usual way to feed it) */
    ck_assert_int_eq(ad_tape_replay(u, 1, &xc, &nx), 0);
    double want2 = 0;
    for (int i = 0; i < 6; i++) want2 += nv[i] * nv[i];
    ck_assert_double_eq_tol(ad_item(z), want2, 1e-12);
    ck_assert_int_eq(ad_copy_into(xc, x), 0);
    ck_assert_int_eq(ad_tape_replay(u, 0, NULL, NULL), 0);
    ck_assert_double_eq_tol(ad_item(z), want2, 1e-12); /* x holds nx now: x * x */
    ad_tape_activate(prev);
    ad_tape_free(u);
    ad_tape_free(t);
    ad_tensor_free(x);
    ad_tensor_free(nx);
}
END_TEST

/* A review's two silent cases.  A persistent tensor copied into the
 * recording and changed before the freeze (an optimiser's step after the
 * recording's backward): the freeze took its new version as the copied
 * one, and the replay used the old copy (30 for 75).  A detach of a
 * computed value passed as an input: its values were written into the
 * computed value's storage and recomputed over (8 for 120). */
START_TEST(replay_refuses_a_stale_copy_and_a_computed_input)
{
    ad_tensor *P = ad_full(NULL, AD_FLOAT64, AD_SHAPE(3), 2.0);
    ad_tensor *B = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3), (double[]){4, 5, 6});
    ad_tape *t = ad_tape_new(), *prev = ad_tape_activate(t);
    ad_tape_set_replayable(t, true);
    ad_tensor *x = ad_from_array(t, AD_FLOAT64, AD_SHAPE(3), (double[]){1, 2, 3});
    ad_tensor *y = ad_sum_all(ad_mul(ad_copy(t, P), x));
    ck_assert_double_eq(ad_item(y), 12);
    ck_assert_int_eq(ad_fill(P, 5.0), 0);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_int_eq(ad_tape_replay(t, 1, &x, &B), -1);
    ck_assert_msg(strstr(ad_error(), "has changed since"), "%s", ad_error());
    ad_tape_free(t);

    t = ad_tape_new();
    ad_tape_activate(t);
    ad_tape_set_replayable(t, true);
    x = ad_from_array(t, AD_FLOAT64, AD_SHAPE(3), (double[]){1, -2, 3});
    ad_tensor *d = ad_detach(ad_relu(x));
    y = ad_sum_all(ad_mul_scalar(d, 2));
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_int_eq(ad_tape_replay(t, 1, &d, &B), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_STATE);
    ck_assert_msg(strstr(ad_error(), "a value that the recording computes"), "%s", ad_error());
    ck_assert_int_eq(ad_tape_replay(t, 1, &x, &B), 0); /* the input it reads: fine */
    ck_assert_double_eq(ad_item(y), 30);
    ad_tape_activate(prev);
    ad_tape_free(t);
    ad_tensor_free(P);
    ad_tensor_free(B);
}
END_TEST

/* New values that are other inputs' memory (inputs swapped) are read
 * before any input is written. */
START_TEST(replay_takes_inputs_swapped)
{
    ad_tensor *a = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), (double[]){1, 2});
    ad_tensor *b = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), (double[]){10, 20});
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *l = ad_sum_all(ad_sub(a, ad_mul_scalar(b, 2)));
    ck_assert_double_eq(ad_item(l), -57);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_int_eq(ad_tape_replay(t, 2, (ad_tensor *[]){a, b}, (ad_tensor *[]){b, a}), 0);
    ck_assert_double_eq(ad_item(l), 24);
    double av[2], bv[2];
    ad_to_array(a, av);
    ad_to_array(b, bv);
    ck_assert(av[0] == 10 && av[1] == 20 && bv[0] == 1 && bv[1] == 2);
    /* a write after the replay: backward refuses, and the cure for a
     * replayed recording is another replay, which then differentiates */
    ad_set_requires_grad(b, true);
    ad_tape *u = ad_tape_new();
    ad_tape_set_replayable(u, true);
    ad_tape_activate(u);
    ad_tensor *x = ad_from_array(u, AD_FLOAT64, AD_SHAPE(2), (double[]){3, 4});
    ad_tensor *m = ad_sum_all(ad_mul(x, b));
    ck_assert_int_eq(ad_tape_freeze(u), 0);
    ck_assert_int_eq(ad_fill(x, 2.0), 0);
    ck_assert_error_rc(ad_backward(m, NULL, AD_RETAIN_GRAPH), "replay the tape (ad_tape_replay)");
    ck_assert_int_eq(ad_tape_replay(u, 0, NULL, NULL), 0);
    ck_assert_int_eq(ad_backward(m, NULL, AD_RETAIN_GRAPH), 0);
    double gb[2];
    ad_to_array(ad_tensor_grad(b), gb);
    ck_assert(gb[0] == 2 && gb[1] == 2);
    ad_tape_free(u);
    ad_tape_activate(prev);
    ad_tape_free(t);
    ad_tensor_free(a);
    ad_tensor_free(b);
}
END_TEST

/* loss = sum((mu + sigma * randn_like(mu))^2) + sum(rand_like(mu) mu):
 * a replayed step draws both noises anew, bit-identical to a fresh
 * recording from the same stream state, which advances by 3 x numel. */
static ad_tensor *noisy_loss(ad_tensor *mu, ad_tensor *sigma, ad_rng *rng)
{
    ad_tensor *z = ad_add(mu, ad_mul(sigma, ad_randn_like(mu, rng, 0, 1)));
    return ad_add(ad_sum_all(ad_mul(z, z)), ad_sum_all(ad_mul(ad_rand_like(mu, rng, -1, 1), mu)));
}

START_TEST(replay_draws_new_noise_from_rand_like)
{
    const double mv[6] = {0.5, -1, 2, 0, 1.5, -0.25}, sv[6] = {1, 0.5, 2, 1, 0.25, 3};
    ad_rng rng;
    ad_rng_init(&rng, 21);
    ad_tape *t = ad_tape_new();
    ad_tape_set_replayable(t, true);
    ad_tensor *mu = ad_leaf(t, AD_FLOAT64, AD_SHAPE(2, 3), mv);
    ad_tensor *sigma = ad_leaf(t, AD_FLOAT64, AD_SHAPE(2, 3), sv);
    ad_tensor *loss = noisy_loss(mu, sigma, &rng);
    ck_assert_ptr_nonnull(loss);
    ck_assert_uint_eq(rng.counter, 18);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    double prev = ad_item(loss);
    for (int step = 0; step < 3; step++) {
        const ad_rng before = rng;
        ck_assert_int_ge(ad_tape_replay(t, 0, NULL, NULL), 0);
        ck_assert_uint_eq(rng.counter, before.counter + 18);
        ck_assert_int_eq(ad_backward(loss, NULL, AD_RETAIN_GRAPH), 0);
        double got = ad_item(loss), gmu[6], gsig[6], wmu[6], wsig[6];
        ck_assert(got != prev); /* new noise, same inputs */
        prev = got;
        ad_to_array(ad_tensor_grad(mu), gmu);
        ad_to_array(ad_tensor_grad(sigma), gsig);
        ad_rng fresh = before;
        ad_tape *f = ad_tape_new();
        ad_tensor *fm = ad_leaf(f, AD_FLOAT64, AD_SHAPE(2, 3), mv);
        ad_tensor *fs = ad_leaf(f, AD_FLOAT64, AD_SHAPE(2, 3), sv);
        ad_tensor *fl = noisy_loss(fm, fs, &fresh);
        ck_assert_int_eq(ad_backward(fl, NULL, 0), 0);
        ad_to_array(ad_tensor_grad(fm), wmu);
        ad_to_array(ad_tensor_grad(fs), wsig);
        ck_assert_msg(got == ad_item(fl), "step %d: replay %.17g, fresh %.17g", step, got,
                      ad_item(fl));
        ck_assert_int_eq(memcmp(gmu, wmu, sizeof gmu), 0);
        ck_assert_int_eq(memcmp(gsig, wsig, sizeof gsig), 0);
        ck_assert_uint_eq(fresh.counter, rng.counter);
        ad_tape_free(f);
        ad_zero_grad(mu);
        ad_zero_grad(sigma);
    }
    /* the values are ad_randn's and ad_rand's from the same stream state */
    ad_rng r1, r2;
    ad_rng_init(&r1, 5);
    ad_rng_init(&r2, 5);
    ad_tensor *a = ad_randn_like(mu, &r1, 2, 3), *b = ad_randn(t, &r2, AD_FLOAT64, AD_SHAPE(2, 3), 2, 3);
    for (int i = 0; i < 6; i++) ck_assert(ot_at(a, i) == ot_at(b, i));
    a = ad_rand_like(mu, &r1, -2, 2), b = ad_rand(t, &r2, AD_FLOAT64, AD_SHAPE(2, 3), -2, 2);
    for (int i = 0; i < 6; i++) ck_assert(ot_at(a, i) == ot_at(b, i));
    ck_assert(!ad_requires_grad(a));
    ad_tape_free(t);
}
END_TEST

/* A recording that includes a backward pass with AD_CREATE_GRAPH is not
 * replayed: abs's rule computed its mask, sign(x), once and unrecorded,
 * so F = sum(x d/dx sum |x|) = sum |x| came out -6 at a point where it is
 * 6.  Recorded forward only, frozen, replayed, and then differentiated
 * twice, it is right. */
START_TEST(replay_refuses_a_recorded_second_order_pass)
{
    double x0[3] = {1, -2, 3}, x1[3] = {-1, 2, -3};
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = ot_f64(t, AD_SHAPE(3), x0), *g;
    ad_set_requires_grad(x, true);
    ad_tensor *f = ad_sum(ad_abs(x), NULL, 0, false);
    ck_assert_int_eq(ad_gradients(f, NULL, 1, &x, &g, AD_CREATE_GRAPH), 0);
    ad_tensor *F = ad_sum(ad_mul(g, x), NULL, 0, false);
    ck_assert_double_eq(ad_item(F), 6);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *nx = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3), x1);
    ck_assert_error_rc(ad_tape_replay(t, 1, &x, &nx), "what a backward pass made");
    /* the working order: the forward recorded, the second-order pass after */
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    x = ot_f64(t, AD_SHAPE(3), x0);
    ad_set_requires_grad(x, true);
    f = ad_sum(ad_abs(x), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ck_assert_int_ge(ad_tape_replay(t, 1, &x, &nx), 0);
    ck_assert_int_eq(ad_gradients(f, NULL, 1, &x, &g, AD_CREATE_GRAPH), 0);
    ck_assert_double_eq(ad_item(ad_sum(ad_mul(g, x), NULL, 0, false)), 6);
    ad_tape_activate(NULL);
    ad_tensor_free(nx);
    ad_tape_free(t);
}
END_TEST

/* A replay that fails part-way (a Cholesky factor of a matrix that is not
 * positive definite) leaves the later nodes with the recording's values:
 * backward refuses until a replay succeeds (it differentiated the
 * mixture: loss 403.4, gradient 1210 at x = 0, where they are 1 and 3). */
START_TEST(backward_refuses_after_a_failed_replay)
{
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = ot_f64(t, AD_SHAPE(1), (double[]){2});
    ad_set_requires_grad(x, true);
    ad_tensor *a = ad_mul_scalar(x, 3);
    ck_assert_ptr_nonnull(ad_linalg_cholesky(ad_reshape(ad_sub_scalar(x, 1), AD_SHAPE(1, 1))));
    ad_tensor *loss = ad_sum(ad_exp(a), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *bad = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(1), (double[]){0});
    ad_tensor *good = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(1), (double[]){1.5});
    ck_assert_error_rc(ad_tape_replay(t, 1, &x, &bad), "ad_tape_replay: op 'cholesky'");
    ck_assert_error_rc(ad_backward(loss, NULL, 0), "last ad_tape_replay of this tape failed");
    ck_assert_int_ge(ad_tape_replay(t, 1, &x, &good), 0);
    ck_assert_int_eq(ad_backward(loss, NULL, 0), 0);
    ck_assert_double_eq_tol(ad_item(ad_tensor_grad(x)), 3 * exp(4.5), 1e-9 * exp(4.5));
    ad_tape_activate(NULL);
    ad_tensor_free(bad);
    ad_tensor_free(good);
    ad_tape_free(t);
}
END_TEST

/* Every leaf of the recording loses its gradient at a replay, also one
 * that only ops made after the freeze read: its gradient lived there, and
 * a kept one was added into (a gradient of 2, then 3) or was a stale
 * handle. */
START_TEST(replay_forgets_the_gradient_of_every_leaf)
{
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = ot_f64(t, AD_SHAPE(2), (double[]){1, 2});
    ad_tensor *w = ot_f64(t, AD_SHAPE(2), (double[]){3, -1});
    ad_set_requires_grad(x, true);
    ad_set_requires_grad(w, true);
    ad_tensor *L = ad_sum(ad_mul(x, x), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    for (int it = 0; it < 4; it++) {
        ck_assert_int_ge(ad_tape_replay(t, 0, NULL, NULL), 0);
        ck_assert_ptr_null(ad_tensor_grad(w));
        ad_tensor *R = ad_add(L, ad_sum(ad_mul(w, w), NULL, 0, false)); /* after the freeze */
        ck_assert_int_eq(ad_backward(R, NULL, 0), 0);
        ot_assert_values(ad_tensor_grad(w), (double[]){6, -2}, 2, 0);
        ot_assert_values(ad_tensor_grad(x), (double[]){2, 4}, 2, 0);
    }
    /* a carried leaf (ad_detach) too: its gradient was kept, a stale handle
     * that the next backward added into through rewound memory */
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *h = ad_detach(ot_f64(t, AD_SHAPE(2), (double[]){1, 2}));
    ad_set_requires_grad(h, true);
    ad_tensor *y = ad_sum(ad_mul(h, h), NULL, 0, false);
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    for (int it = 0; it < 3; it++) {
        ck_assert_int_ge(ad_tape_replay(t, 0, NULL, NULL), 0);
        ck_assert_ptr_null(ad_tensor_grad(h));
        ck_assert_int_eq(ad_backward(y, NULL, AD_RETAIN_GRAPH), 0);
        ot_assert_values(ad_tensor_grad(h), (double[]){2, 4}, 2, 0);
    }
    ad_tape_activate(NULL);
    ad_tape_free(t);
}
END_TEST

START_TEST(anomaly_names_the_first_op)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, 1, (int64_t[]){3}, (double[]){1, -1, 2});
    ad_set_requires_grad(x, true);
    /* off by default: NaN flows silently */
    ck_assert(!ad_anomaly_mode());
    ad_tensor *quiet = ad_exp(ad_log(x));
    ck_assert(isnan(ot_at(quiet, 1)));
    ck_assert(!ad_set_anomaly_mode(true));
    const char *prev = ad_set_scope_label("layer2");
    ad_clear_error();
    ad_tensor *y = ad_exp(ad_log(x)); /* log(-1) is the first NaN; exp must not be blamed */
    ck_assert_ptr_null(y);
    ck_assert_str_eq(ad_error(), "ad_log: anomaly: produced nan at element [1] of a [3] float64 "
                                 "result from finite inputs (input 0: [3] float64) in 'layer2'");
    ad_set_scope_label(prev);
    /* backward: sqrt(0) is finite but its derivative 1/(2 sqrt 0) is not */
    ad_tensor *z = ot_f64(t, 1, (int64_t[]){2}, (double[]){4, 0});
    ad_set_requires_grad(z, true);
    ad_tensor *s = ad_sum(ad_sqrt(z), NULL, 0, false);
    ck_assert_ptr_nonnull(s);
    ad_clear_error();
    ck_assert_int_eq(ad_backward(s, NULL, 0), -1);
    ck_assert_msg(strstr(ad_error(), "ad_sqrt: anomaly: backward gave the gradient of input 0 inf "
                                     "at element [1]"), "%s", ad_error());
    ad_set_anomaly_mode(false);
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("replay");
    TCase *tc = tcase_create("replay");
    tcase_add_test(tc, replay_matches_recording_and_allocates_nothing);
    tcase_add_test(tc, replay_counts_allocations_exactly);
    tcase_add_test(tc, freeze_twice_is_refused);
    tcase_add_test(tc, replay_refuses_other_shapes);
    tcase_add_test(tc, replay_takes_negative_indices_only_as_recorded);
    tcase_add_test(tc, replay_takes_a_view_of_the_leaf_as_its_value);
    tcase_add_test(tc, replay_refuses_a_path_unfrozen_after_recording);
    tcase_add_test(tc, replay_recomputes_ops_run_with_grad_mode_off_and_casts);
    tcase_add_test(tc, replay_sees_a_frozen_weight_a_checkpoint_closes_over);
    tcase_add_test(tc, replay_recomputes_masks_and_counts_branch_switches);
    tcase_add_test(tc, replay_draws_a_new_dropout_mask_as_a_fresh_recording_would);
    tcase_add_test(tc, replay_draws_new_noise_from_rand_like);
    tcase_add_test(tc, replay_refuses_what_it_would_not_repeat);
    tcase_add_test(tc, replay_refuses_a_stale_copy_and_a_computed_input);
    tcase_add_test(tc, replay_takes_inputs_swapped);
    tcase_add_test(tc, replay_refuses_a_recorded_second_order_pass);
    tcase_add_test(tc, backward_refuses_after_a_failed_replay);
    tcase_add_test(tc, replay_forgets_the_gradient_of_every_leaf);
    tcase_add_test(tc, anomaly_names_the_first_op);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

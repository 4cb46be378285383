/* tests/test_tape.c - the tape and the backward engine: accumulation,
 * retained and freed graphs, grad mode, detach, leaves, ownership, the
 * functional ad_gradients, create-graph, and arena reuse. */
#include <stdlib.h>
#include <string.h>

#include "optest.h"

static ad_tensor *vec(ad_tape *t, int n, const double *v)
{
    return ot_f64(t, 1, (int64_t[]){n}, v);
}

START_TEST(chain_rule_exact)
{
    /* f(x) = sum(x * exp(x)); df/dx = exp(x) (1 + x) */
    ad_tape *t = ad_tape_new();
    double xs[] = {-1.5, 0.0, 0.25, 2.0};
    ad_tensor *x = vec(t, 4, xs);
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_sum(ad_mul(x, ad_exp(x)), NULL, 0, false);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(ad_ndim(y), 0);
    double want = 0;
    for (int i = 0; i < 4; i++) want += xs[i] * exp(xs[i]);
    ck_assert_close(ad_item(y), want, 1e-12);
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_close(ot_at(ad_tensor_grad(x), i), exp(xs[i]) * (1 + xs[i]), 1e-12);
    ad_tape_free(t);
}
END_TEST

/* ad_leaf: from_array and requires_grad in one call, on a tape or
 * persistent; integer dtypes and missing data are errors. */
START_TEST(leaf_from_array)
{
    ad_tape *t = ad_tape_new();
    const float xs[3] = {1.5f, -2, 0.25f};
    ad_tensor *x = ad_leaf(t, AD_FLOAT32, 1, (int64_t[]){3}, xs);
    ck_assert_msg(x != NULL, "%s", ad_error());
    ck_assert(ad_requires_grad(x) && ad_is_leaf(x));
    ck_assert_int_eq(ad_tensor_dtype(x), AD_FLOAT32);
    for (int i = 0; i < 3; i++) ck_assert_close(ot_at(x, i), xs[i], 0);
    ad_tensor *y = ad_sum(ad_mul(x, x), NULL, 0, false);
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    for (int i = 0; i < 3; i++) ck_assert_close(ot_at(ad_tensor_grad(x), i), 2 * xs[i], 0);
    ad_tensor *w = ad_leaf(NULL, AD_FLOAT64, 2, (int64_t[]){1, 2}, (double[]){3, 4});
    ck_assert(w && ad_requires_grad(w) && ad_ndim(w) == 2);
    ck_assert_close(ot_at(w, 1), 4, 0);
    ad_tensor_free(w);
    ck_assert_error(ad_leaf(t, AD_INT64, 1, (int64_t[]){1}, (int64_t[]){1}),
                    "ad_leaf: only float32 and float64 tensors can require grad, got int64");
    ck_assert_error(ad_leaf(t, AD_FLOAT64, 1, (int64_t[]){1}, NULL), "ad_leaf: data is NULL");
    ck_assert_error(ad_leaf(t, AD_FLOAT64, 1, (int64_t[]){-1}, (double[]){1}), "ad_leaf: ");
    ad_tape_free(t);
}
END_TEST

/* The gradient-ready hook: every leaf once, as soon as its gradient is
 * final.  y = sum(tanh(w2 * tanh(w1 * x + b)) * w1): w1 is read by the
 * first op and the last, so it is final only at the end, with x; w2
 * before b, b before them (the pass runs newest first).  At each call the leaf's grad
 * already holds its final value; a failing hook ends the pass with its
 * message; ad_gradients and a pass without a hook call nothing. */
typedef struct ready_log {
    int n, fail_at;
    ad_tensor *leaf[8];
    double first[8]; /* grad[0] when told */
} ready_log;

static int log_ready(ad_tensor *leaf, void *ctx)
{
    ready_log *l = ctx;
    if (l->n == l->fail_at) return ad_set_error("log_ready: stop here");
    l->leaf[l->n] = leaf;
    l->first[l->n++] = ot_at(ad_tensor_grad(leaf), 0);
    return 0;
}

START_TEST(grad_ready_hook)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 3, (double[]){0.5, -1, 2}), *w1 = vec(t, 3, (double[]){0.3, 0.7, -0.2});
    ad_tensor *w2 = vec(t, 3, (double[]){1.1, -0.4, 0.9}), *b = vec(t, 3, (double[]){0.1, 0, -0.1});
    ad_tensor *c = vec(t, 3, (double[]){1, 2, 3}); /* requires no grad: never told */
    ad_tensor *unused = vec(t, 1, (double[]){5});
    ad_tensor *leaves[] = {x, w1, w2, b, unused};
    for (int i = 0; i < 5; i++) ad_set_requires_grad(leaves[i], true);
    ad_tensor *h = ad_tanh(ad_add(ad_mul(w1, x), b));
    ad_tensor *y = ad_sum(ad_mul(ad_mul(ad_tanh(ad_mul(w2, h)), w1), c), NULL, 0, false);
    ck_assert_ptr_nonnull(y);
    ready_log l = {.fail_at = -1};
    ad_grad_ready_hook prev = ad_set_grad_ready_hook((ad_grad_ready_hook){log_ready, &l});
    ck_assert_ptr_null(prev.fn);
    ck_assert_int_eq(ad_backward(y, NULL, AD_RETAIN_GRAPH), 0);
    ck_assert_int_eq(l.n, 4);
    ck_assert_ptr_eq(l.leaf[0], w2);
    ck_assert_ptr_eq(l.leaf[1], b);
    /* w1 is read by the oldest op too: told only there, with x, in the
     * op's order of inputs */
    ck_assert_ptr_eq(l.leaf[2], w1);
    ck_assert_ptr_eq(l.leaf[3], x);
    for (int i = 0; i < 4; i++) ck_assert_double_eq(l.first[i], ot_at(ad_tensor_grad(l.leaf[i]), 0));
    /* told after its last contribution: w1's grad has both terms */
    ck_assert(ot_at(ad_tensor_grad(w1), 0) != 0);

    /* a failing hook ends the pass with its error */
    for (int i = 0; i < 5; i++) ad_zero_grad(leaves[i]);
    l = (ready_log){.fail_at = 1};
    ck_assert_int_eq(ad_backward(y, NULL, AD_RETAIN_GRAPH), -1);
    ck_assert_str_eq(ad_error(), "log_ready: stop here");
    ck_assert_int_eq(l.n, 1);

    /* the output a leaf itself: told, its gradient 1 */
    l = (ready_log){.fail_at = -1};
    ad_zero_grad(b);
    ck_assert_int_eq(ad_backward(b, ad_ones(t, AD_FLOAT64, 1, (int64_t[]){3}), 0), 0);
    ck_assert_int_eq(l.n, 1);
    ck_assert_ptr_eq(l.leaf[0], b);
    ck_assert_double_eq(l.first[0], 1);

    /* ad_gradients tells nothing */
    l = (ready_log){.fail_at = -1};
    ad_tensor *g[1];
    ck_assert_int_eq(ad_gradients(y, NULL, 1, &w1, g, AD_RETAIN_GRAPH), 0);
    ck_assert_int_eq(l.n, 0);
    prev = ad_set_grad_ready_hook(prev);
    ck_assert(prev.fn == log_ready && prev.ctx == &l);
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    ck_assert_int_eq(l.n, 0);
    ad_tape_free(t);
}
END_TEST

/* ad_set_grad: two leaves' gradients as views into one flat buffer;
 * backward adds into it in place, ad_zero_grad zeroes it there, freeing
 * the leaves frees the views but not the buffer; mismatches are errors. */
START_TEST(grad_as_view_of_a_flat_buffer)
{
    ad_tensor *flat = ad_zeros(NULL, AD_FLOAT64, 1, (int64_t[]){7});
    ad_tensor *w = ad_leaf(NULL, AD_FLOAT64, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
    ad_tensor *b = ad_leaf(NULL, AD_FLOAT64, 1, (int64_t[]){3}, (double[]){-1, 0, 1});
    ad_tensor *nw = ad_narrow(flat, 0, 0, 4), *vw = ad_reshape(nw, 2, (int64_t[]){2, 2});
    ad_tensor *vb = ad_narrow(flat, 0, 4, 3);
    ad_tensor_free(nw);
    ck_assert_int_eq(ad_set_grad(w, vw), 0);
    ck_assert_int_eq(ad_set_grad(b, vb), 0);
    ck_assert_ptr_eq(ad_tensor_grad(w), vw);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    for (int pass = 0; pass < 2; pass++) { /* accumulates: twice the gradient */
        ad_tensor *y = ad_add(ad_sum(ad_mul(w, w), NULL, 0, false), ad_sum(b, NULL, 0, false));
        ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
        ad_tape_reset(t);
    }
    ad_tape_activate(NULL);
    const double *f = ad_data(flat);
    const double want[7] = {4, 8, 12, 16, 2, 2, 2};
    for (int i = 0; i < 7; i++) ck_assert_double_eq(f[i], want[i]);
    ck_assert_int_eq(ad_zero_grad(w), 0);
    for (int i = 0; i < 7; i++) ck_assert_double_eq(f[i], i < 4 ? 0 : 2);
    /* An AD_CREATE_GRAPH pass puts w's gradient on the tape for a while:
     * at the reset it goes back into the view, which stays w's grad (it
     * used to become a copy of its own, and the flat buffer read 0 from
     * then on); after an ad_zero_grad of the recorded gradient, 0. */
    for (int zero_first = 0; zero_first < 2; zero_first++) {
        ad_tape_activate(t);
        ck_assert_int_eq(ad_backward(ad_sum(ad_mul(w, w), NULL, 0, false), NULL, AD_CREATE_GRAPH),
                         0);
        ck_assert_ptr_ne(ad_tensor_grad(w), vw);
        if (zero_first) ck_assert_int_eq(ad_zero_grad(w), 0);
        ad_tape_reset(t);
        ad_tape_activate(NULL);
        ck_assert_ptr_eq(ad_tensor_grad(w), vw);
        for (int i = 0; i < 4; i++) ck_assert_double_eq(f[i], zero_first ? 0 : 2 * (i + 1));
    }
    /* errors */
    ad_tensor *small = ad_zeros(NULL, AD_FLOAT64, 1, (int64_t[]){2});
    ck_assert_int_eq(ad_set_grad(b, small), -1);
    ck_assert_str_eq(ad_error(), "ad_set_grad: grad [2] float64 does not match t [3] float64");
    ck_assert_int_eq(ad_set_grad(small, vb), -1);
    ck_assert_str_eq(ad_error(), "ad_set_grad: t must be a persistent leaf that requires grad");
    ad_tensor *tg = ad_zeros(t, AD_FLOAT64, 1, (int64_t[]){3});
    ck_assert_int_eq(ad_set_grad(b, tg), -1);
    ck_assert_str_eq(ad_error(), "ad_set_grad: grad must be persistent");
    ad_tensor *strided = ad_slice(flat, 0, 0, 6, 2);
    ck_assert_int_eq(ad_set_grad(b, strided), -1);
    ck_assert_str_eq(ad_error(), "ad_set_grad: grad must be contiguous");
    ck_assert_int_eq(ad_set_grad(b, b), -1);
    ck_assert_str_eq(ad_error(), "ad_set_grad: grad must not share t's storage");
    ck_assert_str_eq(ad_error(), "ad_set_grad: grad must not share t's storage");
    /* the leaves go first, then the buffer */
    ad_tensor_free(w);
    ad_tensor_free(b);
    ck_assert_double_eq(((const double *)ad_data(flat))[4], 2);
    ad_tensor_free(small);
    ad_tensor_free(strided);
    ad_tensor_free(flat);
    ad_tape_free(t);
}
END_TEST

START_TEST(shared_input_and_diamond)
{
    /* y = x*x + x*x: x feeds four places; dy/dx = 4x */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 2, (double[]){3, -2});
    ad_set_requires_grad(x, true);
    ad_tensor *a = ad_mul(x, x);
    ad_tensor *y = ad_sum(ad_add(a, a), NULL, 0, false);
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 0), 12, 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 1), -8, 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(grads_accumulate_and_zero)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 1, (double[]){2});
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_sum(ad_mul(x, x), NULL, 0, false);
    ck_assert_int_eq(ad_backward(y, NULL, AD_RETAIN_GRAPH), 0);
    ck_assert_int_eq(ad_backward(y, NULL, 0), 0); /* retained: second pass allowed */
    ck_assert_close(ot_at(ad_tensor_grad(x), 0), 8, 0); /* 4 + 4 */
    ck_assert_int_eq(ad_zero_grad(x), 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 0), 0, 0);
    /* the graph was not retained the second time */
    ck_assert_error_rc(ad_backward(y, NULL, 0), "freed by an earlier backward");
    ad_tape_free(t);
}
END_TEST

START_TEST(grad_output_rules)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 3, (double[]){1, 2, 3});
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_mul(x, x);
    ck_assert_error_rc(ad_backward(y, NULL, 0), "may be NULL only for a one-element output; got [3]");
    ad_tensor *bad = vec(t, 2, (double[]){1, 1});
    ck_assert_error_rc(ad_backward(y, bad, 0), "does not match output [3]");
    ad_tensor *g32 = ad_ones(t, AD_FLOAT32, AD_SHAPE(3));
    ck_assert_error_rc(ad_backward(y, g32, 0), "float32");
    ad_tensor *g = vec(t, 3, (double[]){1, 0.5, -1});
    ck_assert_int_eq(ad_backward(y, g, 0), 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 0), 2, 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 1), 2, 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 2), -6, 0);
    ck_assert_error_rc(ad_backward(NULL, NULL, 0), "argument 'out' is NULL");
    ad_tensor *c = vec(t, 1, (double[]){1});
    ck_assert_error_rc(ad_backward(c, NULL, 0), "does not require grad");
    ad_tape_free(t);
}
END_TEST

START_TEST(no_grad_and_detach)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 1, (double[]){3});
    ad_set_requires_grad(x, true);
    ck_assert(ad_grad_enabled());
    bool prev = ad_set_grad_enabled(false);
    ck_assert(prev);
    ad_tensor *y = ad_mul(x, x);
    ck_assert(!ad_requires_grad(y));
    ck_assert(ad_is_leaf(y));
    ad_set_grad_enabled(prev);
    ad_tape_stats st;
    ad_tape_get_stats(t, &st);
    ck_assert_uint_eq(st.nodes, 0);
    /* d/dx [x * detach(x)] = detach(x): the detached path carries nothing */
    ad_tensor *z = ad_sum(ad_mul(x, ad_detach(x)), NULL, 0, false);
    ck_assert_int_eq(ad_backward(z, NULL, 0), 0);
    ck_assert_close(ot_at(ad_tensor_grad(x), 0), 3, 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(leaves_and_requires_grad)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 1, (double[]){1});
    ck_assert(!ad_requires_grad(x));
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    ad_tensor *y = ad_exp(x);
    ck_assert(!ad_is_leaf(y));
    ck_assert_error_rc(ad_set_requires_grad(y, false), "not a leaf");
    ad_tensor *i = ad_zeros(t, AD_INT64, AD_SHAPE(2));
    ck_assert_error_rc(ad_set_requires_grad(i, true), "int64");
    ck_assert_ptr_null(ad_tensor_grad(x));
    ck_assert_int_eq(ad_set_label(x, "w"), 0);
    ck_assert_str_eq(ad_label(x), "w");
    ad_tape_free(t);
}
END_TEST

START_TEST(tapes_do_not_mix)
{
    ad_tape *t1 = ad_tape_new(), *t2 = ad_tape_new();
    ad_tensor *a = vec(t1, 1, (double[]){1}), *b = vec(t2, 1, (double[]){2});
    ck_assert_error(ad_add(a, b), "ad_add: inputs belong to different tapes");
    ad_tape_free(t1);
    ad_tape_free(t2);
}
END_TEST

START_TEST(persistent_needs_a_tape_to_record)
{
    ad_tensor *w = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2));
    ad_set_requires_grad(w, true);
    ck_assert_ptr_null(ad_tape_active());
    ck_assert_error(ad_mul(w, w), "no tape is active");
    /* Without grad, ops on persistent tensors give persistent results. */
    bool prev = ad_set_grad_enabled(false);
    ad_tensor *p = ad_mul(w, w);
    ad_set_grad_enabled(prev);
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_null(ad_tensor_tape(p));
    ck_assert_int_eq(ad_tensor_free(p), 0);
    ad_tensor_free(w);
}
END_TEST

START_TEST(persistent_parameters_across_resets)
{
    /* The training-loop pattern: persistent weights, a tape reset each
     * step; the weight's grad is persistent and survives resets. */
    ad_tensor *w = ot_f64(NULL, 1, (int64_t[]){2}, (double[]){0.5, -1});
    ad_set_requires_grad(w, true);
    ad_tape *t = ad_tape_new();
    ad_tape_stats first, later;
    for (int step = 0; step < 5; step++) {
        ad_tape_activate(t);
        ad_tensor *x = ot_f64(t, 1, (int64_t[]){2}, (double[]){2, 3});
        ad_tensor *loss = ad_sum(ad_mul(ad_mul(w, x), w), NULL, 0, false); /* sum x w^2 */
        ck_assert_int_eq(ad_zero_grad(w), 0);
        ck_assert_int_eq(ad_backward(loss, NULL, 0), 0);
        ck_assert_close(ot_at(ad_tensor_grad(w), 0), 2 * 2 * 0.5, 1e-15);
        ck_assert_close(ot_at(ad_tensor_grad(w), 1), 2 * 3 * -1.0, 1e-15);
        ck_assert_ptr_null(ad_tensor_tape(ad_tensor_grad(w)));
        ck_assert_int_eq(ad_tape_reset(t), 0);
        ad_tape_get_stats(t, step == 0 ? &first : &later);
    }
    /* Same computation each step: the arena never grows after step one. */
    ck_assert_uint_eq(first.arena_chunks, later.arena_chunks);
    ck_assert_uint_eq(first.arena_reserved, later.arena_reserved);
    ck_assert_uint_eq(later.nodes, 0);
    ad_tape_free(t);
    ck_assert_ptr_null(ad_tape_active());
    ad_tensor_free(w);
}
END_TEST

START_TEST(views_of_persistent_storage_outlive_base)
{
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t); /* views of persistent w then belong to t */
    ad_tensor *w = ot_f64(NULL, 1, (int64_t[]){2}, (double[]){1, 2});
    ad_tensor *v = ad_detach(ad_expand(ad_reshape(w, AD_SHAPE(2, 1)), AD_SHAPE(2, 3)));
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(ad_tensor_free(w), 0); /* the tape still holds the storage */
    ck_assert_close(ot_at(v, 5), 2, 0);
    ck_assert_error_rc(ad_tensor_free(v), "belongs to a tape");
    ad_tape_free(t);
}
END_TEST

START_TEST(second_derivative_with_create_graph)
{
    /* y = x^3 via mul; dy/dx = 3x^2, d2y/dx2 = 6x */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 1, (double[]){1.5});
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_sum(ad_mul(ad_mul(x, x), x), NULL, 0, false);
    ad_tensor *g;
    ck_assert_int_eq(ad_gradients(y, NULL, 1, &x, &g, AD_CREATE_GRAPH), 0);
    ck_assert_close(ad_item(g), 3 * 1.5 * 1.5, 1e-12);
    ck_assert(ad_requires_grad(g));
    ad_tensor *h;
    ck_assert_int_eq(ad_gradients(ad_sum(g, NULL, 0, false), NULL, 1, &x, &h, AD_CREATE_GRAPH), 0);
    ck_assert_close(ad_item(h), 6 * 1.5, 1e-12);
    ad_tensor *k; /* third derivative: 6 */
    ck_assert_int_eq(ad_gradients(ad_sum(h, NULL, 0, false), NULL, 1, &x, &k, 0), 0);
    ck_assert_close(ad_item(k), 6, 1e-12);
    /* the functional form never touched x's grad */
    ck_assert_ptr_null(ad_tensor_grad(x));
    ad_tape_free(t);
}
END_TEST

START_TEST(create_graph_into_leaf_grad)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 1, (double[]){2});
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_sum(ad_mul(ad_mul(x, x), x), NULL, 0, false);
    ck_assert_int_eq(ad_backward(y, NULL, AD_CREATE_GRAPH), 0);
    ad_tensor *g = ad_tensor_grad(x);
    ck_assert_close(ad_item(g), 12, 1e-12);
    ck_assert(ad_requires_grad(g));
    ad_zero_grad(x);
    ck_assert_int_eq(ad_backward(ad_sum(g, NULL, 0, false), NULL, 0), 0);
    ck_assert_close(ad_item(ad_tensor_grad(x)), 12, 1e-12); /* 6x */
    ad_tape_free(t);
}
END_TEST

/* With AD_CREATE_GRAPH a leaf's gradient is a tensor of its own: not the
 * caller's grad_output (freed, it was read after free), not the one
 * gradient an add hands both operands (clipped twice: 0.25 for 0.5). */
START_TEST(create_graph_gradients_are_the_leaves_own)
{
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    ad_tensor *w1 = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2)), *w2 = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2));
    ad_set_requires_grad(w1, true);
    ad_set_requires_grad(w2, true);
    ad_tensor *G = ad_full(NULL, AD_FLOAT64, AD_SHAPE(2), 1.0);
    ck_assert_int_eq(ad_backward(ad_add(w1, w2), G, AD_CREATE_GRAPH), 0);
    ad_tensor *g1 = ad_tensor_grad(w1), *g2 = ad_tensor_grad(w2);
    ck_assert_ptr_ne(g1, G);
    ck_assert_ptr_ne(g1, g2);
    ck_assert_int_eq(ad_fill(G, 100.0), 0); /* the caller's tensor: not the gradients */
    ck_assert_double_eq(ot_at(g1, 0), 1);
    ck_assert_double_eq(ot_at(g2, 1), 1);
    ck_assert_int_eq(ad_fill(g1, 0.5), 0); /* one leaf's: not the other's */
    ck_assert_double_eq(ot_at(g2, 0), 1);
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ad_tensor_free(G);
    ck_assert_double_eq(ot_at(ad_tensor_grad(w1), 1), 0.5);
    ck_assert_int_eq(ad_backward(ad_sum(ad_add(w1, w2), NULL, 0, false), NULL, 0), 0);
    ck_assert_double_eq(ot_at(ad_tensor_grad(w1), 1), 1.5);
    ck_assert_double_eq(ot_at(ad_tensor_grad(w2), 1), 2);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(w1);
    ad_tensor_free(w2);
}
END_TEST

/* A gradient buffer given with ad_set_grad (a view of a flat bucket) stays
 * the leaf's after an AD_CREATE_GRAPH pass followed by a plain pass in one
 * step, with or without ad_zero_grad between them (it was dropped, and the
 * bucket left at 0). */
START_TEST(set_grad_buffer_survives_a_create_graph_pass_then_a_plain_one)
{
    for (int zero = 0; zero < 2; zero++) {
        ad_tape *t = ad_tape_new();
        ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2), (double[]){1, 2});
        ad_set_requires_grad(w, true);
        ad_tensor *flat = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(4));
        ad_tensor *view = ad_narrow(flat, 0, 1, 2);
        ck_assert_int_eq(ad_set_grad(w, view), 0);
        ad_tape_activate(t);
        ad_tensor *l1 = ad_sum(ad_square(w), NULL, 0, false); /* 2w = [2 4] */
        ck_assert_int_eq(ad_backward(l1, NULL, AD_CREATE_GRAPH), 0);
        if (zero) ck_assert_int_eq(ad_zero_grad(w), 0);
        ad_tensor *l2 = ad_sum(ad_mul_scalar(w, 10), NULL, 0, false); /* [10 10] */
        ck_assert_int_eq(ad_backward(l2, NULL, 0), 0);
        ck_assert_int_eq(ad_tape_reset(t), 0);
        ck_assert_ptr_eq(ad_tensor_grad(w), view);
        ot_assert_values(flat, zero ? (double[]){0, 10, 10, 0} : (double[]){0, 12, 14, 0}, 4, 0);
        ck_assert_int_eq(ad_zero_grad(w), 0);
        ck_assert_int_eq(ad_backward(ad_sum(ad_mul_scalar(w, 3), NULL, 0, false), NULL, 0), 0);
        ot_assert_values(flat, (double[]){0, 3, 3, 0}, 4, 0);
        ad_tape_activate(NULL);
        ad_tape_free(t);
        ad_tensor_free(w); /* and the view, which w took */
        ad_tensor_free(flat);
    }
    /* a buffer given with ad_set_grad after a create-graph pass, before the
     * reset, is the one kept (the one it replaced came back, and the
     * caller's was freed) */
    ad_tape *t = ad_tape_new();
    ad_tensor *w = ad_full(NULL, AD_FLOAT64, AD_SHAPE(2), 3.0);
    ad_set_requires_grad(w, true);
    ad_tensor *bucket = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(4));
    ad_tape_activate(t);
    ck_assert_int_eq(ad_backward(ad_sum(ad_mul(w, w), NULL, 0, false), NULL, 0), 0);
    ck_assert_int_eq(ad_backward(ad_sum(ad_mul(w, w), NULL, 0, false), NULL, AD_CREATE_GRAPH), 0);
    ad_tape_activate(NULL);
    ad_tensor *B = ad_narrow(bucket, 0, 0, 2);
    ck_assert_int_eq(ad_set_grad(w, B), 0);
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert_ptr_eq(ad_tensor_grad(w), B);
    ck_assert_int_eq(ad_zero_grad(w), 0);
    ad_tape_activate(t);
    ck_assert_int_eq(ad_backward(ad_sum(ad_mul(w, w), NULL, 0, false), NULL, 0), 0);
    ot_assert_values(bucket, (double[]){6, 6, 0, 0}, 4, 0);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(w);
    ad_tensor_free(bucket);
}
END_TEST

START_TEST(gradients_of_unused_input_are_zero)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 2, (double[]){1, 2}), *z = vec(t, 3, (double[]){1, 2, 3});
    ad_set_requires_grad(x, true);
    ad_set_requires_grad(z, true);
    ad_tensor *y = ad_sum(ad_exp(x), NULL, 0, false);
    ad_tensor *in[2] = {x, z}, *g[2];
    ck_assert_int_eq(ad_gradients(y, NULL, 2, in, g, 0), 0);
    ck_assert_close(ot_at(g[0], 1), exp(2), 1e-12);
    ck_assert_int_eq(ad_numel(g[1]), 3);
    ck_assert_close(ot_at(g[1], 2), 0, 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(backward_of_a_leaf)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 1, (double[]){5});
    ad_set_requires_grad(x, true);
    ck_assert_int_eq(ad_backward(x, NULL, 0), 0);
    ck_assert_close(ad_item(ad_tensor_grad(x)), 1, 0);
    ad_tape_free(t);
}
END_TEST

/* A persistent leaf has no tape: its pass made a seed nothing freed, a
 * second pass with AD_CREATE_GRAPH crashed, and ad_gradients handed two
 * slots for it one tensor, which the caller then freed twice. */
START_TEST(backward_of_a_persistent_leaf)
{
    ad_tensor *w = ad_full(NULL, AD_FLOAT64, 1, (int64_t[]){1}, 3.0);
    ad_set_requires_grad(w, true);
    ck_assert_int_eq(ad_backward(w, NULL, 0), 0);
    ck_assert_int_eq(ad_backward(w, NULL, AD_CREATE_GRAPH), 0);
    ck_assert_close(ad_item(ad_tensor_grad(w)), 2, 0);
    ad_tensor *in[2] = {w, w}, *g[2];
    ck_assert_int_eq(ad_gradients(w, NULL, 2, in, g, 0), 0);
    ck_assert_ptr_ne(g[0], g[1]);
    ck_assert_ptr_null(ad_tensor_tape(g[0]));
    ck_assert_close(ad_item(g[0]), 1, 0);
    ck_assert_close(ad_item(g[1]), 1, 0);
    ad_tensor_free(g[0]);
    ad_tensor_free(g[1]);
    /* a grad_output on a tape that requires grad: recorded there */
    ad_tape *t = ad_tape_new();
    ad_tensor *go = vec(t, 1, (double[]){2});
    ad_set_requires_grad(go, true);
    ck_assert_int_eq(ad_gradients(w, go, 1, in, g, AD_CREATE_GRAPH), 0);
    ck_assert_ptr_eq(ad_tensor_tape(g[0]), t);
    ck_assert_close(ad_item(g[0]), 2, 0);
    ad_tensor *gg;
    ck_assert_int_eq(ad_gradients(ad_mul_scalar(g[0], 5.0), NULL, 1, &go, &gg, 0), 0);
    ck_assert_close(ad_item(gg), 5, 0);
    ad_tape_free(t);
    ad_tensor_free(w);
}
END_TEST

/* ad_gradients' results live on out's tape: for out itself, and for an
 * input that a rule hands g on to as it is (add's), they were the caller's
 * grad_output, which the caller's next write or free then reached. */
START_TEST(gradients_are_not_the_callers_grad_output)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_leaf(t, AD_FLOAT64, 1, (int64_t[]){2}, (double[]){2, 3});
    ad_tensor *y = ad_exp(x);
    ad_tensor *z = ad_add(y, x);
    ad_tensor *gout = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
    ad_tensor *in[3] = {z, y, x}, *g[3];
    ck_assert_int_eq(ad_gradients(z, gout, 3, in, g, AD_RETAIN_GRAPH), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_ptr_ne(g[i], gout);
        ck_assert_ptr_eq(ad_tensor_tape(g[i]), t);
    }
    ad_fill(gout, 100);
    ad_tensor_free(gout);
    ot_assert_values(g[0], (double[]){1, 2}, 2, 0);
    ot_assert_values(g[1], (double[]){1, 2}, 2, 0);
    ot_assert_values(g[2], (double[]){1 + exp(2), 2 * (1 + exp(3))}, 2, 1e-15);
    /* with AD_CREATE_GRAPH the copy is recorded: d sum(5 g_z) / d gout = 5 */
    ad_tensor *go = ad_from_array(t, AD_FLOAT64, 1, (int64_t[]){2}, (double[]){1, 2});
    ad_set_requires_grad(go, true);
    ck_assert_int_eq(ad_gradients(z, go, 1, in, g, AD_CREATE_GRAPH), 0);
    ck_assert_ptr_ne(g[0], go);
    ad_tensor *gg;
    ck_assert_int_eq(ad_gradients(ad_sum_all(ad_mul_scalar(g[0], 5.0)), NULL, 1, &go, &gg, 0), 0);
    ot_assert_values(gg, (double[]){5, 5}, 2, 0);
    ad_tape_free(t);
}
END_TEST

START_TEST(errors_keep_the_first_message)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *a = ot_f64(t, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
    ad_tensor *b = ot_f64(t, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4});
    ad_clear_error();
    ad_tensor *y = ad_exp(ad_mul(ad_add(a, b), a));
    ck_assert_ptr_null(y);
    ck_assert_str_eq(ad_error(), "ad_add: shapes [2,3] and [4] cannot be broadcast together");
    ad_clear_error();
    ck_assert_ptr_null(ad_error());
    ck_assert_error(ad_exp(NULL), "ad_exp: argument 'x' is NULL");
    ad_tape_free(t);
}
END_TEST

/* A composition scope: its steps go on the inputs' tape, made active
 * meanwhile; with no tape at all they go on a scratch tape and only the
 * result comes out, as a persistent tensor. */
START_TEST(scopes_put_intermediates_on_the_right_tape)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 2, (double[]){1, 2}), *w = ad_ones(NULL, AD_FLOAT64, AD_SHAPE(2));
    ad_tensor *in[3] = {x, NULL, w};
    ad_scope s;
    ck_assert_int_eq(ad_scope_begin(&s, "f", 3, in, false), 0);
    ck_assert_ptr_eq(ad_tape_active(), t);
    ck_assert_ptr_eq(s.tape, t);
    ad_tensor *y = ad_scope_end(&s, ad_mul(ad_exp(w), x));
    ck_assert_ptr_null(ad_tape_active());
    ck_assert_ptr_eq(ad_tensor_tape(y), t);

    ck_assert_int_eq(ad_scope_begin(&s, "f", 1, &w, false), 0);
    ad_tape *scratch = ad_tape_active();
    ck_assert_ptr_nonnull(scratch);
    ad_tensor *z = ad_scope_end(&s, ad_add(ad_exp(w), w));
    ck_assert_ptr_null(ad_tape_active());
    ck_assert_ptr_nonnull(z);
    ck_assert_ptr_null(ad_tensor_tape(z));
    double v[2];
    ck_assert_int_eq(ad_to_array(z, v), 0);
    ck_assert_double_eq(v[0], exp(1.0) + 1);

    ad_set_requires_grad(w, true);
    ck_assert_error_rc(ad_scope_begin(&s, "f", 1, &w, false), "f: no tape to record on");
    ad_tensor_free(z);
    ad_tensor_free(w);
    ad_tape_free(t);
}
END_TEST

/* A tensor cut into many slices, each used once, and a weight used at every
 * step (a recurrence): without AD_CREATE_GRAPH the backward pass adds each
 * slice's gradient into one buffer of the whole, and each use's gradient
 * into the weight's running sum, in place (matmul's product for the
 * weight only lives while it is added in).  Before, every slice's gradient
 * was a zero-filled whole and every use a new sum and a new product: this
 * backward took 46 MB of arena, 1.3 MB now (64 uses of a 256 KB weight).
 * The values are checked against the sums written out. */
/* Two products of one adjoint-owning x with views of a persistent weight:
 * the second product's x gradient is added into x's adjoint by
 * accumulate_input, whose temporaries (w's narrow and transpose, each
 * holding w) live in arena space given back right after.  Their
 * references must be released with it: the list once kept entries that
 * the next allocation wrote over, and backward crashed releasing them.
 * E = sum(h^2), h = x w0^T + x w2^T, x = v u (u broadcast over rows):
 * dE/du[k] = sum_i 2 h_i (w0[k] + w2[k]) v[i, k], dE/dw0 = dE/dw2 row. */
START_TEST(backward_releases_views_made_while_accumulating)
{
    enum { R = 5, K = 4 };
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    double wv[3 * K], uv[K], vv[R * K];
    for (int i = 0; i < 3 * K; i++) wv[i] = 0.25 * (i % 5) - 0.5;
    for (int k = 0; k < K; k++) uv[k] = 0.5 + 0.25 * k;
    for (int i = 0; i < R * K; i++) vv[i] = 0.1 * (i % 7) - 0.3;
    ad_tensor *w = ad_from_array(NULL, AD_FLOAT64, 2, (int64_t[]){3, K}, wv);
    ad_tensor *u = ad_from_array(NULL, AD_FLOAT64, 1, (int64_t[]){K}, uv);
    ad_tensor *v = ad_from_array(tape, AD_FLOAT64, 2, (int64_t[]){R, K}, vv);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
    ck_assert_int_eq(ad_set_requires_grad(u, true), 0);
    ad_tensor *x = ad_mul(v, u);
    ad_tensor *h = ad_add(ad_matmul(x, ad_transpose(ad_narrow(w, 0, 0, 1), 0, 1)),
                          ad_matmul(x, ad_transpose(ad_narrow(w, 0, 2, 1), 0, 1)));
    ck_assert_int_eq(ad_backward(ad_sum(ad_mul(h, h), NULL, 0, false), NULL, 0), 0);
    const double *gu = ad_data(ad_tensor_grad(u)), *gw = ad_data(ad_tensor_grad(w));
    for (int k = 0; k < K; k++) {
        double du = 0, dw = 0;
        for (int i = 0; i < R; i++) {
            double hi = 0;
            for (int j = 0; j < K; j++) hi += vv[i * K + j] * uv[j] * (wv[j] + wv[2 * K + j]);
            du += 2 * hi * (wv[k] + wv[2 * K + k]) * vv[i * K + k];
            dw += 2 * hi * vv[i * K + k] * uv[k];
        }
        ck_assert_double_eq_tol(gu[k], du, 1e-12);
        ck_assert_double_eq_tol(gw[k], dw, 1e-12);          /* row 0 */
        ck_assert_double_eq(gw[K + k], 0.0);                /* row 1: unused */
        ck_assert_double_eq_tol(gw[2 * K + k], dw, 1e-12);  /* row 2 */
    }
    ad_tape_activate(NULL);
    ad_tape_free(tape);
    ad_tensor_free(w);
    ad_tensor_free(u);
}
END_TEST

START_TEST(backward_accumulates_slices_in_place)
{
    enum { T = 64, N = 256 };
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    ad_tensor *w = ad_ones(NULL, AD_FLOAT32, 2, (int64_t[]){N, N});
    ad_tensor *x0 = ad_ones(NULL, AD_FLOAT32, 2, (int64_t[]){T, N});
    ck_assert_int_eq(ad_set_requires_grad(w, true), 0);
    ck_assert_int_eq(ad_set_requires_grad(x0, true), 0);
    ad_tensor *x = ad_mul_scalar(x0, 2.0), *wt = ad_mul_scalar(w, 1.0), *sum = NULL;
    for (int t = 0; t < T; t++) {
        ad_tensor *y = ad_matmul(ad_narrow(x, 0, t, 1), wt); /* [1, N] */
        ad_tensor *s = ad_mul_scalar(ad_sum(y, NULL, 0, false), (double)(t + 1));
        sum = sum ? ad_add(sum, s) : s;
    }
    ad_tape_stats before, after;
    ck_assert_int_eq(ad_tape_get_stats(tape, &before), 0);
    ck_assert_int_eq(ad_backward(sum, NULL, 0), 0);
    ck_assert_int_eq(ad_tape_get_stats(tape, &after), 0);
    size_t whole = (size_t)N * N * sizeof(float);
    /* a few wholes: the weight's sum, its first use's gradient, the
     * slices' accumulator and the products' temporaries, given back */
    ck_assert_msg(after.arena_used - before.arena_used < 8 * whole,
                  "backward took %zu bytes", after.arena_used - before.arena_used);
    /* dE/dx0[t, i] = 2 (t+1) sum_j w[i, j] = 2 (t+1) N;
     * dE/dw[i, j] = sum_t (t+1) x[t, i] = 2 T (T+1) / 2 */
    const float *gx = ad_data(ad_tensor_grad(x0)), *gw = ad_data(ad_tensor_grad(w));
    for (int t = 0; t < T; t++) ck_assert_float_eq(gx[t * N + 5], 2.0f * (float)(t + 1) * N);
    ck_assert_float_eq(gw[3 * N + 7], (float)(T * (T + 1)));
    /* with AD_CREATE_GRAPH the rules run (recorded) and agree */
    ad_tape_reset(tape);
    x = ad_mul_scalar(x0, 2.0);
    ad_tensor *g = NULL;
    sum = NULL;
    for (int t = 0; t < T; t += 9) {
        ad_tensor *s = ad_mul_scalar(ad_sum(ad_narrow(x, 0, t, 1), NULL, 0, false), t + 1.0);
        sum = sum ? ad_add(sum, s) : s;
    }
    ck_assert_int_eq(ad_gradients(sum, NULL, 1, &x0, &g, AD_CREATE_GRAPH), 0);
    ck_assert_float_eq(((const float *)ad_data(g))[9 * N], 2.0f * 10);
    ck_assert_float_eq(((const float *)ad_data(g))[8 * N], 0.0f);
    ad_tape_activate(NULL);
    ad_tape_free(tape);
    ad_tensor_free(w);
    ad_tensor_free(x0);
}
END_TEST

/* Empty gradients through a rule whose results the backward pass moves
 * down the arena (a zero-size slice of a computed tensor, the inverse of a
 * 0 x 0 matrix): nothing to move, and nothing read from a NULL source (the
 * sanitizer build's UBSan flagged the memmove of 0 bytes from NULL). */
START_TEST(empty_gradients_through_backward)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ad_leaf(t, AD_FLOAT64, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
    ad_tensor *e = ad_slice(ad_sin(x), 1, 2, 2, 2); /* [2,0] */
    ad_tensor *w = ad_zeros(t, AD_FLOAT64, 2, (int64_t[]){2, 0});
    ck_assert_msg(ad_backward(ad_sum_all(ad_mul(e, w)), NULL, 0) == 0, "%s", ad_error());
    ad_tensor *g = ad_tensor_grad(x);
    for (int i = 0; g && i < 4; i++) ck_assert_double_eq(ot_at(g, i), 0);
    ad_tensor *z = ad_leaf(t, AD_FLOAT64, 2, (int64_t[]){0, 0}, (double[]){0});
    ck_assert_msg(ad_backward(ad_sum_all(ad_linalg_inv(z)), NULL, 0) == 0, "%s", ad_error());
    ad_tape_free(t);
}
END_TEST

START_TEST(stats_count_nodes)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = vec(t, 1, (double[]){1});
    ad_set_requires_grad(x, true);
    ad_exp(ad_exp(x));
    ad_tape_stats s;
    ck_assert_int_eq(ad_tape_get_stats(t, &s), 0);
    ck_assert_uint_eq(s.nodes, 2);
    ck_assert_uint_ge(s.tensors, 3);
    ck_assert_uint_gt(s.arena_used, 0);
    ck_assert_error_rc(ad_tape_get_stats(NULL, &s), "NULL");
    ck_assert_error_rc(ad_tape_reset(NULL), "NULL");
    ad_tape_free(NULL);
    ad_tape_free(t);
}
END_TEST

/* Rules that write their gradient over the adjoint they consume (gelu and
 * layer norm, when the pass owns that adjoint alone: ad__grad_donated)
 * give the composed rules' gradients, also where the input has a second
 * reader and the sum goes into the donated buffer (a below: read by the
 * layer norm and by the residual add), and the pass holds fewer blocks at
 * once than with a new tensor per rule, moved down after it. */
static void donated_graph(ad_tape *t, ad_tensor *x, ad_tensor *k, int flags, double *gx,
                          size_t *peak)
{
    ad_tensor *a = ad_gelu(ad_mul_scalar(x, 1.5));
    ad_tensor *b = ad_layer_norm(a, 1, NULL, NULL, 1e-5);
    ad_tensor *loss = ad_sum(ad_mul(ad_add(ad_gelu(b), a), k), NULL, 0, false);
    ck_assert_ptr_nonnull(loss);
    ck_assert_int_eq(ad_zero_grad(x), 0);
    ad_tape_stats s0, s1;
    ck_assert_int_eq(ad_tape_get_stats(t, &s0), 0);
    ck_assert_int_eq(ad_backward(loss, NULL, flags), 0);
    ck_assert_int_eq(ad_tape_get_stats(t, &s1), 0);
    *peak = s1.arena_peak - s0.arena_used;
    ck_assert_int_eq(ad_to_array(ad_tensor_grad(x), gx), 0);
}

START_TEST(rules_write_over_a_donated_adjoint)
{
    enum { N = 64, F = 96 };
    ad_rng rng;
    ad_rng_init(&rng, 3);
    ad_tensor *x = ad_rand(NULL, &rng, AD_FLOAT64, 2, (int64_t[]){N, F}, -2, 2);
    ad_tensor *k = ad_rand(NULL, &rng, AD_FLOAT64, 2, (int64_t[]){N, F}, -1, 1);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    ad_tape *t = ad_tape_new();
    ad_tape_activate(t);
    static double gx[2][N * F];
    size_t peak[2];
    /* the fused rules (donated adjoints), then the rules made of ops */
    donated_graph(t, x, k, 0, gx[0], &peak[0]);
    ck_assert_int_eq(ad_tape_reset(t), 0);
    donated_graph(t, x, k, AD_CREATE_GRAPH, gx[1], &peak[1]);
    for (int i = 0; i < N * F; i++) ck_assert_close(gx[0][i], gx[1][i], 1e-10);
    /* in blocks of [N, F] (48 KB; the rest is a few hundred bytes): three
     * at most, where a new result per rule (the layer norm's gradient,
     * then its sum with a's other gradient, moved down) took four */
    size_t blk = (size_t)N * F * sizeof(double);
    ck_assert_uint_lt(peak[0], 3 * blk + blk / 2);
    ad_tape_activate(NULL);
    ad_tape_free(t);
    ad_tensor_free(x);
    ad_tensor_free(k);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tape");
    TCase *tc = tcase_create("tape");
    tcase_add_test(tc, chain_rule_exact);
    tcase_add_test(tc, leaf_from_array);
    tcase_add_test(tc, shared_input_and_diamond);
    tcase_add_test(tc, grad_ready_hook);
    tcase_add_test(tc, grad_as_view_of_a_flat_buffer);
    tcase_add_test(tc, grads_accumulate_and_zero);
    tcase_add_test(tc, grad_output_rules);
    tcase_add_test(tc, no_grad_and_detach);
    tcase_add_test(tc, leaves_and_requires_grad);
    tcase_add_test(tc, tapes_do_not_mix);
    tcase_add_test(tc, persistent_needs_a_tape_to_record);
    tcase_add_test(tc, persistent_parameters_across_resets);
    tcase_add_test(tc, views_of_persistent_storage_outlive_base);
    tcase_add_test(tc, second_derivative_with_create_graph);
    tcase_add_test(tc, create_graph_into_leaf_grad);
    tcase_add_test(tc, create_graph_gradients_are_the_leaves_own);
    tcase_add_test(tc, set_grad_buffer_survives_a_create_graph_pass_then_a_plain_one);
    tcase_add_test(tc, gradients_of_unused_input_are_zero);
    tcase_add_test(tc, backward_of_a_leaf);
    tcase_add_test(tc, backward_of_a_persistent_leaf);
    tcase_add_test(tc, gradients_are_not_the_callers_grad_output);
    tcase_add_test(tc, rules_write_over_a_donated_adjoint);
    tcase_add_test(tc, errors_keep_the_first_message);
    tcase_add_test(tc, stats_count_nodes);
    tcase_add_test(tc, backward_accumulates_slices_in_place);
    tcase_add_test(tc, empty_gradients_through_backward);
    tcase_add_test(tc, backward_releases_views_made_while_accumulating);
    tcase_add_test(tc, scopes_put_intermediates_on_the_right_tape);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

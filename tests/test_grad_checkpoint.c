/* tests/test_grad_checkpoint.c - gradient checkpointing (ad_checkpoint,
 * transforms.h).  Gradcheck and gradgradcheck of the node are rows of
 * the op table (rows_checkpoint.c); here:
 *
 *   same       gradients with and without checkpoints are the same bits:
 *              a recurrence h <- tanh(h W + h) in segments, float32 and
 *              float64, through ad_backward (a tape leaf and a persistent
 *              weight read through ctx) and ad_gradients; with dropout
 *              inside (the masks drawn again at recomputation, the stream
 *              left where the plain run leaves it); nested checkpoints;
 *              a Hessian through a checkpoint; a replayed tape;
 *   memory     the step's peak arena and the forward's arena shrink;
 *   errors     bad arguments, outputs not computed by the function, a
 *              handle kept from inside, a function that changes shape at
 *              recomputation, an input or a closed-over weight changed in
 *              place before backward, a second backward without
 *              AD_RETAIN_GRAPH; without a tape the function simply runs. */
#include <stdlib.h>
#include <string.h>

#include "optest.h"

#define T ot_tape

enum { B = 4, H = 8 };

/* The segment function's ctx: the weight, steps per segment, dropout. */
typedef struct chain {
    ad_tensor *w;
    int steps;
    ad_rng *rng; /* NULL: no dropout */
    int calls;   /* how often the function ran */
} chain;

/* steps of h <- tanh(h W + h), each followed by dropout when rng is set */
static int seg_fn(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    chain *c = ctx;
    c->calls++;
    ad_tensor *h = in[0];
    for (int i = 0; i < c->steps; i++) {
        h = ad_tanh(ad_add(ad_matmul(h, c->w), h));
        if (c->rng) h = ad_dropout(h, 0.25, true, c->rng);
    }
    out[0] = h;
    return h ? 0 : -1;
}

/* sum(h^2) after segs segments from x, each checkpointed or not */
static ad_tensor *run_chain(ad_tensor *x, chain *c, int segs, bool ckpt)
{
    ad_tensor *h = x;
    for (int s = 0; s < segs && h; s++) {
        ad_tensor *next = NULL;
        if (ckpt ? ad_checkpoint(seg_fn, c, 0, 1, &h, 1, &next) : seg_fn(&h, 1, &next, 1, c)) return NULL;
        h = next;
    }
    return ad_sum(ad_mul(h, h), NULL, 0, false);
}

static ad_tensor *random_leaf(ad_tape *t, ad_dtype dt, int64_t r, int64_t c, uint64_t seed)
{
    ad_rng rng;
    ad_rng_init(&rng, seed);
    ad_tensor *x = ad_rand(t, &rng, dt, 2, (int64_t[]){r, c}, -1, 1);
    ck_assert(x != NULL);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    return x;
}

/* The values of t as bytes, for bitwise comparison. */
static void *bytes_of(const ad_tensor *t, size_t *n)
{
    *n = (size_t)ad_numel(t) * ad_dtype_size(ad_tensor_dtype(t));
    void *p = malloc(*n);
    ck_assert(p != NULL);
    ad_tensor *c = ad_contiguous((ad_tensor *)t);
    ck_assert(c != NULL);
    memcpy(p, ad_data(c), *n);
    return p;
}

static void assert_same_bits(const ad_tensor *a, const void *b, size_t nb, const char *what)
{
    size_t na;
    void *pa = bytes_of(a, &na);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(pa, b, nb) == 0, "%s differs with checkpoints", what);
    free(pa);
}

/* One step of the chain with and without checkpoints: x's and W's
 * gradients (ad_backward) and the same through ad_gradients must be the
 * same bits.  With rng, dropout draws from a stream seeded alike for both
 * runs, and the stream must end at the same position. */
static void compare_runs(ad_dtype dt, bool dropout)
{
    ad_tensor *w = random_leaf(NULL, dt, H, H, 7);
    ad_rng rng;
    size_t nx = 0, nw = 0, ngx = 0, ngw = 0;
    void *gx = NULL, *gw = NULL, *fx = NULL, *fw = NULL;
    uint64_t end_counter = 0;
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        ad_rng_init(&rng, 99);
        chain c = {w, 3, dropout ? &rng : NULL, 0};
        ad_tensor *x = random_leaf(T, dt, B, H, 5);
        ck_assert_int_eq(ad_zero_grad(w), 0);
        ad_tensor *E = run_chain(x, &c, 4, ckpt);
        ck_assert_msg(E != NULL, "%s", ad_error());
        ck_assert_int_eq(ad_backward(E, NULL, AD_RETAIN_GRAPH), 0);
        ad_tensor *g[2];
        ck_assert_int_eq(ad_gradients(E, NULL, 2, (ad_tensor *[]){x, w}, g, 0), 0);
        if (!ckpt) {
            gx = bytes_of(ad_tensor_grad(x), &nx);
            gw = bytes_of(ad_tensor_grad(w), &nw);
            fx = bytes_of(g[0], &ngx);
            fw = bytes_of(g[1], &ngw);
            end_counter = rng.counter;
            ck_assert_int_eq(c.calls, 4);
        } else {
            assert_same_bits(ad_tensor_grad(x), gx, nx, "dE/dx (ad_backward)");
            assert_same_bits(ad_tensor_grad(w), gw, nw, "dE/dW (ad_backward)");
            assert_same_bits(g[0], fx, ngx, "dE/dx (ad_gradients)");
            assert_same_bits(g[1], fw, ngw, "dE/dW (ad_gradients)");
            /* once forward, once per backward pass (two here) */
            ck_assert_int_eq(c.calls, 12);
            if (dropout) ck_assert_uint_eq(rng.counter, end_counter);
        }
        ck_assert_int_eq(ad_tape_reset(T), 0);
    }
    free(gx), free(gw), free(fx), free(fw);
    ad_tensor_free(w);
}

START_TEST(same_bits_float32) { compare_runs(AD_FLOAT32, false); }
END_TEST

START_TEST(same_bits_float64) { compare_runs(AD_FLOAT64, false); }
END_TEST

START_TEST(same_bits_with_dropout) { compare_runs(AD_FLOAT32, true); }
END_TEST

/* Two segments inside one outer checkpoint, against no checkpoint (also
 * h = f(h) with in and out the same array). */
static bool inner_ckpt;
static int outer_fn(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    ad_tensor *h = in[0];
    for (int s = 0; s < 2; s++)
        if (inner_ckpt ? ad_checkpoint(seg_fn, ctx, 0, 1, &h, 1, &h) : seg_fn(&h, 1, &h, 1, ctx))
            return -1;
    out[0] = h;
    return 0;
}

START_TEST(nested_checkpoints)
{
    ad_tensor *w = random_leaf(NULL, AD_FLOAT64, H, H, 7);
    size_t n = 0;
    void *want = NULL;
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        chain c = {w, 2, NULL, 0};
        ad_tensor *x = random_leaf(T, AD_FLOAT64, B, H, 5), *h = NULL;
        ck_assert_int_eq(ad_zero_grad(w), 0);
        inner_ckpt = ckpt;
        if (ckpt) ck_assert_int_eq(ad_checkpoint(outer_fn, &c, 0, 1, &x, 1, &h), 0);
        else ck_assert_int_eq(outer_fn(&x, 1, &h, 1, &c), 0);
        ck_assert_int_eq(ad_backward(ad_sum(ad_mul(h, h), NULL, 0, false), NULL, 0), 0);
        if (!ckpt) want = bytes_of(ad_tensor_grad(w), &n);
        else assert_same_bits(ad_tensor_grad(w), want, n, "dE/dW (nested)");
        ck_assert_int_eq(ad_tape_reset(T), 0);
    }
    free(want);
    ad_tensor_free(w);
}
END_TEST

/* f(x) = sum(sin(x)^2 x) with the middle checkpointed: the Hessian
 * through the recomputation against the closed form. */
static int sin_sq(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout, (void)ctx;
    ad_tensor *s = ad_sin(in[0]);
    out[0] = ad_mul(ad_mul(s, s), in[0]);
    return out[0] ? 0 : -1;
}
static ad_tensor *hess_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    ad_tensor *y;
    return ad_checkpoint(sin_sq, NULL, 0, 1, in, 1, &y) ? NULL : ad_sum(y, NULL, 0, false);
}

START_TEST(hessian_through_checkpoint)
{
    const double v[3] = {0.3, -1.1, 2.0};
    ad_tensor *x = ot_f64(T, 1, (int64_t[]){3}, v), *Hm = NULL;
    ck_assert_int_eq(ad_hessian(T, hess_f, NULL, x, &Hm, 0), 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            /* d2/dx2 (x sin^2 x) = 2 sin 2x + 2 x cos 2x, diagonal */
            double want = i == j ? 2 * sin(2 * v[i]) + 2 * v[i] * cos(2 * v[i]) : 0.0;
            ck_assert_close(ot_at(Hm, i * 3 + j), want, 1e-12);
        }
}
END_TEST

/* A replayable tape recorded with checkpoints: each replay with a new x
 * gives the gradients of a fresh recording of that x. */
START_TEST(replay_recomputes)
{
    ad_tensor *w = random_leaf(NULL, AD_FLOAT64, H, H, 7);
    ad_rng rng;
    ad_rng_init(&rng, 3);
    chain c = {w, 2, &rng, 0};
    ad_tape *rt = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(rt, true), 0);
    ad_tensor *x = random_leaf(rt, AD_FLOAT64, B, H, 5);
    ad_tensor *E = run_chain(x, &c, 3, true);
    ck_assert_msg(E != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_tape_freeze(rt), 0);
    for (int rep = 0; rep < 2; rep++) {
        ad_tensor *nx = random_leaf(NULL, AD_FLOAT64, B, H, 50 + (uint64_t)rep);
        uint64_t before = rng.counter;
        ck_assert_int_ge(ad_tape_replay(rt, 1, &x, &nx), 0);
        ck_assert_int_eq(ad_zero_grad(w), 0);
        ck_assert_int_eq(ad_backward(E, NULL, AD_RETAIN_GRAPH), 0);
        double e_replay = ad_item(E);
        size_t n;
        void *want = bytes_of(ad_tensor_grad(w), &n);
        uint64_t after = rng.counter;
        /* the same step recorded afresh, with the stream where the replay
         * found it */
        rng.counter = before;
        ad_tensor *x2 = ad_copy(T, nx);
        ck_assert_int_eq(ad_set_requires_grad(x2, true), 0);
        ck_assert_int_eq(ad_zero_grad(w), 0);
        ad_tensor *E2 = run_chain(x2, &c, 3, false);
        ck_assert_int_eq(ad_backward(E2, NULL, 0), 0);
        ck_assert(ad_item(E2) == e_replay);
        assert_same_bits(ad_tensor_grad(w), want, n, "dE/dW (replayed)");
        ck_assert_uint_eq(rng.counter, after);
        free(want);
        ad_tensor_free(nx);
        ck_assert_int_eq(ad_tape_reset(T), 0);
    }
    ad_tape_free(rt);
    ad_tensor_free(w);
}
END_TEST

/* A long chain: with one checkpoint per segment the forward keeps the
 * segments' boundaries only, and the step's peak is well below the
 * plain step's. */
START_TEST(memory_shrinks)
{
    ad_tensor *w = random_leaf(NULL, AD_FLOAT32, 64, 64, 7);
    size_t fwd[2], peak[2];
    for (int ckpt = 0; ckpt < 2; ckpt++) {
        chain c = {w, 8, NULL, 0};
        /* 64 rows: the arena's sizes scale with them (256 took a minute
         * under valgrind) */
        ad_tensor *x = random_leaf(T, AD_FLOAT32, 64, 64, 5);
        ad_tape_stats st;
        ad_tensor *E = run_chain(x, &c, 16, ckpt);
        ck_assert(E != NULL);
        ck_assert_int_eq(ad_tape_get_stats(T, &st), 0);
        fwd[ckpt] = st.arena_used;
        ck_assert_int_eq(ad_backward(E, NULL, 0), 0);
        ck_assert_int_eq(ad_tape_get_stats(T, &st), 0);
        peak[ckpt] = st.arena_peak;
        ck_assert_uint_ge(st.arena_peak, st.arena_used);
        ck_assert_int_eq(ad_tape_reset(T), 0);
    }
    /* 128 steps of 3 tensors [64, 64] against 16 segment outputs */
    ck_assert_msg(fwd[1] * 5 < fwd[0], "forward arena %zu with checkpoints, %zu without", fwd[1],
                  fwd[0]);
    ck_assert_msg(peak[1] * 3 < peak[0], "peak arena %zu with checkpoints, %zu without",
                  peak[1], peak[0]);
    ad_tensor_free(w);
}
END_TEST

/* ctx copied with ctx_size: the caller's struct is gone (a returned
 * frame) when backward recomputes. */
typedef struct scale_ctx {
    double a;
} scale_ctx;
static int scaled_sin(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    out[0] = ad_mul_scalar(ad_sin(in[0]), ((scale_ctx *)ctx)->a);
    return out[0] ? 0 : -1;
}
static ad_tensor *scaled(ad_tensor *x, double a)
{
    scale_ctx c = {a};
    ad_tensor *y = NULL;
    return ad_checkpoint(scaled_sin, &c, sizeof c, 1, &x, 1, &y) ? NULL : y;
}

START_TEST(ctx_copied)
{
    const double v[2] = {0.5, -2.0};
    ad_tensor *x = ot_f64(T, 1, (int64_t[]){2}, v);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    ad_tensor *y = scaled(x, 3.0);
    ck_assert(y != NULL);
    /* another frame over the one scaled() used */
    volatile double junk[64];
    for (int i = 0; i < 64; i++) junk[i] = -1.0;
    (void)junk;
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    for (int i = 0; i < 2; i++) ck_assert_close(ot_at(ad_tensor_grad(x), i), 3.0 * cos(v[i]), 1e-15);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------- */

static int returns_input(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout, (void)ctx;
    out[0] = in[0];
    return 0;
}
static int returns_persistent(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)in, (void)n, (void)nout, (void)ctx;
    out[0] = ctx;
    return 0;
}
static int keeps_inner(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    ad_tensor *s = ad_sin(in[0]);
    *(ad_tensor **)ctx = s;
    out[0] = ad_exp(s);
    return out[0] ? 0 : -1;
}
static int grows(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout;
    int *calls = ctx;
    ad_tensor *x = ++*calls == 1 ? in[0] : ad_concat((ad_tensor *[]){in[0], in[0]}, 2, 0);
    out[0] = ad_sin(x);
    return out[0] ? 0 : -1;
}
static int fails(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)in, (void)n, (void)out, (void)nout, (void)ctx;
    return ad_set_error("my function failed");
}
static int mixed_dtypes(ad_tensor *const *in, int n, ad_tensor **out, int nout, void *ctx)
{
    (void)n, (void)nout, (void)ctx;
    out[0] = ad_sin(in[0]);
    out[1] = ad_cast(in[0], AD_FLOAT32);
    return 0;
}

START_TEST(errors)
{
    ad_tensor *x = random_leaf(T, AD_FLOAT64, 2, 3, 1), *o[2];
    ck_assert_error_rc(ad_checkpoint(NULL, NULL, 0, 1, &x, 1, o), "the function is NULL");
    ck_assert_error_rc(ad_checkpoint(returns_input, NULL, 0, 0, &x, 1, o), "need 1..64 inputs, got 0");
    ck_assert_error_rc(ad_checkpoint(returns_input, NULL, 0, 1, &x, 0, o), "need 1..64 outputs");
    ck_assert_error_rc(ad_checkpoint(returns_input, NULL, 0, 1, (ad_tensor *[]){NULL}, 1, o),
                       "in[0]");
    ck_assert_error_rc(ad_checkpoint(returns_input, NULL, 0, 1, &x, 1, o),
                       "output 0 of the function was not computed by it (it is one of its inputs");
    ck_assert(o[0] == NULL);
    ad_tensor *p = ad_zeros(NULL, AD_FLOAT64, 1, (int64_t[]){3});
    ck_assert_error_rc(ad_checkpoint(returns_persistent, p, 0, 1, &x, 1, o),
                       "output 0 of the function is a persistent tensor");
    ad_tensor_free(p);
    ck_assert_error_rc(ad_checkpoint(fails, NULL, 0, 1, &x, 1, o), "my function failed");
    ck_assert_error_rc(ad_checkpoint(mixed_dtypes, NULL, 0, 1, &x, 2, o), "share one dtype");

    /* a handle kept from inside the function is stale */
    ad_tensor *inner = NULL;
    ck_assert_int_eq(ad_checkpoint(keeps_inner, &inner, 0, 1, &x, 1, o), 0);
    ck_assert_error(ad_cos(inner), "was made inside a function run by ad_checkpoint");
    ck_assert_int_eq(ad_backward(ad_sum(o[0], NULL, 0, false), NULL, 0), 0);

    /* a different shape at recomputation */
    int calls = 0;
    ck_assert_int_eq(ad_checkpoint(grows, &calls, 0, 1, &x, 1, o), 0);
    ck_assert_error_rc(ad_backward(ad_sum(o[0], NULL, 0, false), NULL, 0),
                       "at recomputation, but [2,3] when first run");

    /* an input, and a weight read through ctx, changed before backward */
    ad_tensor *w = random_leaf(NULL, AD_FLOAT64, H, H, 7), *h = random_leaf(T, AD_FLOAT64, B, H, 2);
    chain c = {w, 2, NULL, 0};
    ck_assert_int_eq(ad_checkpoint(seg_fn, &c, 0, 1, &h, 1, o), 0);
    ad_tensor *E = ad_sum(o[0], NULL, 0, false);
    ck_assert_int_eq(ad_fill(h, 0.5), 0);
    ck_assert_error_rc(ad_backward(E, NULL, 0), "was modified in place");
    ck_assert_int_eq(ad_errcode(), AD_OK); /* cleared by the macro */
    h = random_leaf(T, AD_FLOAT64, B, H, 2);
    ck_assert_int_eq(ad_checkpoint(seg_fn, &c, 0, 1, &h, 1, o), 0);
    E = ad_sum(o[0], NULL, 0, false);
    ck_assert_int_eq(ad_fill(w, 0.5), 0);
    ad_clear_error();
    ck_assert_int_eq(ad_backward(E, NULL, 0), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_MODIFIED);

    /* a second backward without AD_RETAIN_GRAPH */
    h = random_leaf(T, AD_FLOAT64, B, H, 2);
    ck_assert_int_eq(ad_checkpoint(seg_fn, &c, 0, 1, &h, 1, o), 0);
    E = ad_sum(o[0], NULL, 0, false);
    ck_assert_int_eq(ad_backward(E, NULL, 0), 0);
    ck_assert_error_rc(ad_backward(E, NULL, 0), "freed by an earlier backward");
    ad_tensor_free(w);
}
END_TEST

/* Without a tape the function runs as it is and its outputs are the
 * caller's persistent tensors; with grad mode off nothing is recorded. */
START_TEST(without_tape_or_grad)
{
    ad_tape_activate(NULL);
    ad_tensor *x = ad_full(NULL, AD_FLOAT64, 1, (int64_t[]){2}, 0.5), *o[2];
    ck_assert_int_eq(ad_checkpoint(sin_sq, NULL, 0, 1, &x, 1, o), 0);
    ck_assert_ptr_null(ad_tensor_tape(o[0]));
    ck_assert_close(ot_at(o[0], 1), sin(0.5) * sin(0.5) * 0.5, 1e-15);
    ad_tensor_free(o[0]);
    ad_tensor_free(x);
    ad_tape_activate(T);
    bool prev = ad_set_grad_enabled(false);
    x = random_leaf(T, AD_FLOAT64, 2, 2, 1);
    ck_assert_int_eq(ad_checkpoint(sin_sq, NULL, 0, 1, &x, 1, o), 0);
    ck_assert(!ad_requires_grad(o[0]));
    ck_assert_uint_eq(ad_tape_num_nodes(T), 0);
    ad_set_grad_enabled(prev);
}
END_TEST

/* What a checkpointed function reads from outside through a view it
 * makes, through an op that needs no gradient, or as an int64 index (the
 * index op's own view of it) is among the node's inputs too: changed
 * before backward, it is refused, as without the checkpoint (the
 * recomputation read the new values, silently: [5 5 5] for [1 1 1]). */
static ad_tensor *CL_C, *CL_IDX;
static int cl_view(ad_tensor *const *in, int nin, ad_tensor **out, int nout, void *ctx)
{
    (void)nin, (void)nout, (void)ctx;
    out[0] = ad_sum(ad_mul(in[0], ad_reshape(CL_C, AD_SHAPE(3))), NULL, 0, false);
    return out[0] ? 0 : -1;
}
static int cl_unrecorded(ad_tensor *const *in, int nin, ad_tensor **out, int nout, void *ctx)
{
    (void)nin, (void)nout, (void)ctx;
    out[0] = ad_sum(ad_mul(in[0], ad_add_scalar(CL_C, 1.0)), NULL, 0, false);
    return out[0] ? 0 : -1;
}
static int cl_gather(ad_tensor *const *in, int nin, ad_tensor **out, int nout, void *ctx)
{
    (void)nin, (void)nout, (void)ctx;
    out[0] = ad_sum(ad_square(ad_gather(in[0], 0, CL_IDX)), NULL, 0, false);
    return out[0] ? 0 : -1;
}

START_TEST(closed_over_values_changed_before_backward_are_refused)
{
    ad_checkpoint_fn fs[3] = {cl_view, cl_unrecorded, cl_gather};
    for (int k = 0; k < 3; k++)
        for (int change = 0; change < 2; change++) {
            CL_C = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3), (double[]){1, 1, 1});
            CL_IDX = ad_from_array(NULL, AD_INT64, AD_SHAPE(1), (int64_t[]){0});
            ad_tape *t = ad_tape_new();
            ad_tensor *x = ot_f64(t, AD_SHAPE(3), (double[]){1, 2, 3}), *y;
            ad_set_requires_grad(x, true);
            ck_assert_int_eq(ad_checkpoint(fs[k], NULL, 0, 1, &x, 1, &y), 0);
            if (change) {
                ck_assert_int_eq(ad_fill(CL_C, 5.0), 0);
                ck_assert_int_eq(ad_set(CL_IDX, (int64_t[]){0}, 2), 0);
                ck_assert_error_rc(ad_backward(y, NULL, 0), "was modified in place");
            } else { /* unchanged: the forward's gradient */
                ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
                static const double want[3][3] = {{1, 1, 1}, {2, 2, 2}, {2, 0, 0}};
                ot_assert_values(ad_tensor_grad(x), want[k], 3, 0);
            }
            ad_tape_free(t);
            ad_tensor_free(CL_C);
            ad_tensor_free(CL_IDX);
        }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("grad_checkpoint");
    TCase *v = tcase_create("same");
    tcase_add_checked_fixture(v, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(v, same_bits_float32);
    tcase_add_test(v, same_bits_float64);
    tcase_add_test(v, same_bits_with_dropout);
    tcase_add_test(v, nested_checkpoints);
    tcase_add_test(v, hessian_through_checkpoint);
    tcase_add_test(v, replay_recomputes);
    tcase_add_test(v, ctx_copied);
    suite_add_tcase(s, v);
    TCase *m = tcase_create("memory");
    tcase_add_checked_fixture(m, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(m, memory_shrinks);
    suite_add_tcase(s, m);
    TCase *e = tcase_create("errors");
    tcase_add_checked_fixture(e, ot_tape_setup, ot_tape_teardown);
    tcase_add_test(e, errors);
    tcase_add_test(e, without_tape_or_grad);
    tcase_add_test(e, closed_over_values_changed_before_backward_are_refused);
    suite_add_tcase(s, e);
    return ot_run(s);
}

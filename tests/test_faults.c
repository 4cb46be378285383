/* tests/test_faults.c - fault injection and size overflow.
 *
 * Every allocation the library makes goes through ad__malloc / ad__calloc /
 * ad__realloc (alloc.c), and ad__alloc_fail_in = n makes the n-th next one
 * fail.  Each scenario below is a complete program (weights, tape, forward,
 * backward, an update, a second step, cleanup) written so that every public
 * call is checked.  The sweep runs it with n = 1, 2, 3, ... until a run ends
 * without reaching the n-th allocation, so every allocation of the scenario
 * fails once.  At each n:
 *   - the failing call returns its error (NULL, -1, an invalid scalar
 *     handle) and the message says "out of memory"; no other call fails,
 *     and nothing crashes;
 *   - the run then either stops and frees what it made (LeakSanitizer, in
 *     the sanitizer build, reports anything the failed call leaked), or, in
 *     retry mode, repeats the failed call, which must now succeed and lead
 *     to exactly the values of a run without injection: a failed call must
 *     leave no half-done state behind;
 *   - a fresh run without injection still gives the reference values.
 *
 * The second half checks that shapes whose element count overflows, or
 * exceeds the library's limit, are refused before anything is allocated. */
#define _POSIX_C_SOURCE 200809L /* open_memstream */

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../autodiff/internal.h"
#include "../autodiff/tape_impl.h"
#include "../nn/nn.h"
#include "optest.h"

/* ---- the sweep machinery ---------------------------------------------------------- */

/* What a scenario reports back: a few numbers that depend on every step. */
#define MAX_OUT 64
typedef struct outcome {
    int n;
    double v[MAX_OUT];
} outcome;

static void put(outcome *o, double v)
{
    ck_assert_int_lt(o->n, MAX_OUT);
    o->v[o->n++] = v;
}
static void put_tensor(outcome *o, const ad_tensor *t)
{
    int64_t n = ad_numel(t);
    ck_assert_int_ge(n, 0);
    ck_assert_int_le(o->n + n, MAX_OUT);
    ck_assert_int_eq(ad_to_array(t, o->v + o->n), 0);
    o->n += (int)n;
}

/* A scenario: returns 0 when it ran to the end, 1 when it stopped at an
 * injected failure (retry == false only). */
typedef int (*scenario)(bool retry, outcome *out);

/* Checks a failed call: the failure must be the injected one, with the
 * documented message.  `what` is the call's source text. */
static void expect_oom(const char *what)
{
    ck_assert_msg(ad__alloc_fail_in == 0,
                  "%s failed although the injected failure was not reached (%ld allocations "
                  "to go): %s", what, ad__alloc_fail_in, ad_error() ? ad_error() : "(no message)");
    ck_assert_msg(ad_error() != NULL, "%s failed without a message", what);
    ck_assert_msg(strstr(ad_error(), "out of memory") != NULL,
                  "%s failed with '%s', expected an out-of-memory error", what, ad_error());
    /* the failure must be this call's own, not one that an earlier call
     * absorbed and left pending (which then fails the next NULL argument
     * that means "none") */
    ck_assert_msg(strstr(ad_error(), "right after a failed call") == NULL,
                  "%s failed on an error an earlier call left pending: %s", what, ad_error());
    /* and it names the function called, not only the allocator (nn code
     * allocates with the public ad_malloc, which sets a message of its own) */
    ck_assert_msg(strncmp(ad_error(), "ad_malloc:", 10) && strncmp(ad_error(), "ad_calloc:", 10) &&
                      strncmp(ad_error(), "ad_realloc:", 11),
                  "%s failed with the allocator's message only: %s", what, ad_error());
    ck_assert_msg(strncmp(ad_error(), "nn:", 3),
                  "%s failed with a message that names no function: %s", what, ad_error());
    if (getenv("FAULTS_VERBOSE")) fprintf(stderr, "  %s: %s\n", what, ad_error());
    ad_clear_error();
}

/* Pointer-returning call: on failure check it, then stop or retry once. */
#define TRY_P(var, expr)                                                                 \
    do {                                                                                 \
        if (!((var) = (expr))) {                                                         \
            expect_oom(#expr);                                                           \
            if (!retry) goto fail;                                                       \
            (var) = (expr);                                                              \
            ck_assert_msg((var) != NULL, "retry of %s failed: %s", #expr, ad_error());   \
        }                                                                                \
    } while (0)
/* int-returning call (0 on success, -1 on error). */
#define TRY_I(expr)                                                                      \
    do {                                                                                 \
        int rc_;                                                                         \
        if ((rc_ = (expr)) != 0) {                                                       \
            ck_assert_int_eq(rc_, -1);                                                   \
            expect_oom(#expr);                                                           \
            if (!retry) goto fail;                                                       \
            ck_assert_msg((expr) == 0, "retry of %s failed: %s", #expr, ad_error());     \
        }                                                                                \
    } while (0)
/* Calls that must not fail at all (they do not allocate). */
#define MUST(expr) ck_assert_msg((expr) == 0, "%s: %s", #expr, ad_error() ? ad_error() : "")

/* AD_FAULTS_STRIDE=k sweeps every k-th injection point (and arena offset)
 * only: scripts/valgrind sets it, where every run is some 30 times slower
 * and the sanitizer build has swept every point already. */
static int stride(void)
{
    const char *s = getenv("AD_FAULTS_STRIDE");
    int k = s ? atoi(s) : 1;
    return k > 1 ? k : 1;
}

/* Runs f under injection for n = 1, 2, ... (1, 1 + k, ... with a stride)
 * and returns the first n past the allocations of one complete run, less
 * one: their number without a stride. */
static int sweep(const char *name, scenario f, bool retry)
{
    outcome ref = {0}, got;
    ad_clear_error();
    /* Warm-up runs first: tape structures and tensor-header slabs are
     * pooled across tapes, a freed tape's structure taken again only once
     * 4 more wait behind it (tape.c, TAPE_QUARANTINE), so the first runs
     * of a process allocate them and every later run (each of the sweep)
     * takes them from the pool. */
    for (int w = 0; w < 8; w++) {
        memset(&ref, 0, sizeof ref);
        ck_assert_int_eq(f(false, &ref), 0);
    }
    memset(&ref, 0, sizeof ref);
    size_t calls0 = ad__alloc_calls;
    ck_assert_int_eq(f(false, &ref), 0);
    size_t allocs = ad__alloc_calls - calls0;
    ck_assert_msg(ref.n > 0, "%s reports nothing", name);

    int n, k = stride();
    for (n = 1;; n += k) {
        ck_assert_msg(n < 100000, "%s: the sweep does not end", name);
        memset(&got, 0, sizeof got);
        ad_clear_error();
        ad__alloc_fail_in = n;
        int stopped = f(retry, &got);
        bool reached = ad__alloc_fail_in == 0;
        ad__alloc_fail_in = 0;
        ck_assert_msg(!stopped || reached, "%s stopped at n = %d without the injection", name, n);
        if (!stopped) {
            /* It ran to the end (in retry mode, or because the failure was
             * absorbed): the values must be the reference ones exactly. */
            ck_assert_int_eq(got.n, ref.n);
            for (int i = 0; i < ref.n; i++)
                ck_assert_msg(got.v[i] == ref.v[i] || (isnan(got.v[i]) && isnan(ref.v[i])),
                              "%s, failure at allocation %d%s: value %d is %.17g, expected "
                              "%.17g", name, n, retry ? " (retried)" : "", i, got.v[i], ref.v[i]);
        }
        if (!reached) break;
        /* After a failure, a clean run gives the right values again. */
        memset(&got, 0, sizeof got);
        ck_assert_int_eq(f(false, &got), 0);
        ck_assert_int_eq(got.n, ref.n);
        for (int i = 0; i < ref.n; i++) ck_assert(got.v[i] == ref.v[i] || isnan(ref.v[i]));
    }
    int points = n - 1;
    fprintf(stderr, "test_faults: %-14s %-6s %4d injection points (%zu allocations per run)%s\n",
            name, retry ? "retry" : "stop", k > 1 ? (points + k - 1) / k : points, allocs,
            k > 1 ? ", strided" : "");
    /* Every allocation of the run was a point (one in k of them tried). */
    ck_assert_int_ge((size_t)points, allocs);
    ck_assert_int_lt((size_t)points, allocs + (size_t)k);
    return points;
}

/* ---- scenario 1: a training step of a small model -------------------------------------
 * logits = tanh(x reshape(W, [3,5]) + b); loss = cross_entropy(logits, y) +
 * 0.01 sum(logits), with W [15] and b [5] persistent; two steps of SGD with a
 * tape reset in between. */
static const double XV[12] = {0.5, -1.0, 0.25, 1.5, 0.0, -0.75, -0.5, 2.0, 1.0, 0.3, -0.2, 0.9};
static const int64_t YV[4] = {0, 3, 4, 1};

static int train_step(bool retry, outcome *out, ad_tape *tape, ad_tensor *w0, ad_tensor *b)
{
    ad_tensor *x, *y, *w, *mm, *pre, *h, *ce, *s, *s2, *loss;
    TRY_P(x, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(4, 3), XV));
    TRY_P(y, ad_from_array(tape, AD_INT64, AD_SHAPE(4), YV));
    TRY_P(w, ad_reshape(w0, AD_SHAPE(3, 5)));
    TRY_P(mm, ad_matmul(x, w));
    TRY_P(pre, ad_add(mm, b));
    TRY_P(h, ad_tanh(pre));
    TRY_P(ce, ad_cross_entropy(h, y, AD_REDUCTION_MEAN));
    TRY_P(s, ad_sum(h, NULL, 0, false));
    TRY_P(s2, ad_mul_scalar(s, 0.01));
    TRY_P(loss, ad_add(ce, s2));
    MUST(ad_zero_grad(w0));
    MUST(ad_zero_grad(b));
    if (ad_backward(loss, NULL, 0) != 0) {
        expect_oom("ad_backward(loss)");
        if (!retry) goto fail;
        /* A failed backward may have delivered some leaves' gradients
         * already (tape.h promises only that the failing node's are not
         * half-updated), so the retry starts from zero gradients. */
        MUST(ad_zero_grad(w0));
        MUST(ad_zero_grad(b));
        ck_assert_msg(ad_backward(loss, NULL, 0) == 0, "retry of ad_backward: %s", ad_error());
    }
    put(out, ad_item(loss));
    ck_assert_ptr_nonnull(ad_tensor_grad(w0));
    ck_assert_ptr_nonnull(ad_tensor_grad(b));
    put_tensor(out, ad_tensor_grad(w0));
    put_tensor(out, ad_tensor_grad(b));
    /* SGD by hand on the persistent weights. */
    double *wd = ad_data(w0), *bd = ad_data(b), gw[15], gb[5];
    MUST(ad_to_array(ad_tensor_grad(w0), gw));
    MUST(ad_to_array(ad_tensor_grad(b), gb));
    for (int i = 0; i < 15; i++) wd[i] -= 0.5 * gw[i];
    for (int i = 0; i < 5; i++) bd[i] -= 0.5 * gb[i];
    return 0;
fail:
    return 1;
}

static int scenario_train(bool retry, outcome *out)
{
    int rc = 1;
    ad_tensor *w0 = NULL, *b = NULL;
    ad_tape *tape = NULL;
    double wv[15], bv[5] = {0.1, -0.1, 0.2, 0, 0.05};
    for (int i = 0; i < 15; i++) wv[i] = sin(1.0 + i);
    TRY_P(w0, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(15), wv));
    TRY_P(b, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(5), bv));
    MUST(ad_set_requires_grad(w0, true));
    MUST(ad_set_requires_grad(b, true));
    TRY_P(tape, ad_tape_new());
    /* The reshape of the persistent weight has no tape input: it goes on
     * the active tape. */
    ad_tape_activate(tape);
    for (int step = 0; step < 2; step++) {
        if (step) TRY_I(ad_tape_reset(tape));
        if (train_step(retry, out, tape, w0, b)) goto fail;
    }
    put_tensor(out, w0);
    rc = 0;
fail:
    ad_tape_activate(NULL);
    ad_tape_free(tape);
    ad_tensor_free(w0);
    ad_tensor_free(b);
    return rc;
}

/* ---- scenario 2: tape replay ----------------------------------------------------------
 * The same model recorded once on a replayable tape, frozen, and replayed
 * for three batches, each followed by a backward pass and an update. */
static int scenario_replay(bool retry, outcome *out)
{
    int rc = 1;
    ad_tensor *w0 = NULL, *b = NULL, *batch = NULL;
    ad_tape *tape = NULL;
    ad_tensor *x, *y, *w, *mm, *pre, *h, *ce, *s, *s2, *loss;
    double wv[15], bv[5] = {0.1, -0.1, 0.2, 0, 0.05};
    for (int i = 0; i < 15; i++) wv[i] = cos(1.0 + i);
    TRY_P(w0, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(15), wv));
    TRY_P(b, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(5), bv));
    TRY_P(batch, ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(4, 3)));
    MUST(ad_set_requires_grad(w0, true));
    MUST(ad_set_requires_grad(b, true));
    TRY_P(tape, ad_tape_new());
    TRY_I(ad_tape_set_replayable(tape, true));
    ad_tape_activate(tape);
    TRY_P(x, ad_zeros(tape, AD_FLOAT64, AD_SHAPE(4, 3)));
    TRY_P(y, ad_from_array(tape, AD_INT64, AD_SHAPE(4), YV));
    TRY_P(w, ad_reshape(w0, AD_SHAPE(3, 5)));
    TRY_P(mm, ad_matmul(x, w));
    TRY_P(pre, ad_add(mm, b));
    TRY_P(h, ad_tanh(pre));
    TRY_P(ce, ad_cross_entropy(h, y, AD_REDUCTION_MEAN));
    TRY_P(s, ad_sum(h, NULL, 0, false));
    TRY_P(s2, ad_mul_scalar(s, 0.01));
    TRY_P(loss, ad_add(ce, s2));
    TRY_I(ad_tape_freeze(tape));
    for (int step = 0; step < 3; step++) {
        double *bd = ad_data(batch);
        for (int i = 0; i < 12; i++) bd[i] = XV[i] * (1 + step);
        int changed = ad_tape_replay(tape, 1, &x, &batch);
        if (changed < 0) {
            expect_oom("ad_tape_replay");
            if (!retry) goto fail;
            changed = ad_tape_replay(tape, 1, &x, &batch);
            ck_assert_msg(changed >= 0, "retry of ad_tape_replay: %s", ad_error());
        }
        MUST(ad_zero_grad(w0));
        MUST(ad_zero_grad(b));
        if (ad_backward(loss, NULL, AD_RETAIN_GRAPH) != 0) {
            expect_oom("ad_backward(loss, RETAIN)");
            if (!retry) goto fail;
            MUST(ad_zero_grad(w0));
            MUST(ad_zero_grad(b));
            ck_assert_msg(ad_backward(loss, NULL, AD_RETAIN_GRAPH) == 0, "retry: %s", ad_error());
        }
        put(out, ad_item(loss));
        put_tensor(out, ad_tensor_grad(b));
        double *wd = ad_data(w0), gw[15];
        MUST(ad_to_array(ad_tensor_grad(w0), gw));
        for (int i = 0; i < 15; i++) wd[i] -= 0.5 * gw[i];
    }
    put_tensor(out, w0);
    rc = 0;
fail:
    ad_tape_activate(NULL);
    ad_tape_free(tape);
    ad_tensor_free(w0);
    ad_tensor_free(b);
    ad_tensor_free(batch);
    return rc;
}

/* ---- scenario 3: persistent results, no tape ----------------------------------------
 * Ops on persistent tensors with nothing to record give persistent results
 * (each freed here); the nn compositions then run on a scratch tape of
 * their own, which a failure must free too. */
static int scenario_persistent(bool retry, outcome *out)
{
    int rc = 1;
    enum { NT = 16 };
    ad_tensor *t[NT] = {0};
    int k = 0;
    ad_rng rng;
    ad_rng_init(&rng, 42);
    TRY_P(t[k], ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(2, 2, 5, 5), 0, 1)); /* 0: x */
    k++;
    TRY_P(t[k], ad_rand(NULL, &rng, AD_FLOAT32, AD_SHAPE(3, 2, 3, 3), -0.5, 0.5)); /* 1: w */
    k++;
    TRY_P(t[k], ad_linspace(NULL, AD_FLOAT32, -1, 1, 3)); /* 2: bias */
    k++;
    TRY_P(t[k], ad_conv2d(t[0], t[1], t[2], &(ad_conv2d_params){.padding = {1, 1}})); /* 3 */
    k++;
    TRY_P(t[k], ad_max_pool2d(t[3], (int[]){2, 2}, NULL, NULL)); /* 4: [2,3,2,2] */
    k++;
    TRY_P(t[k], ad_avg_pool2d(t[3], (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}, false));
    k++; /* 5: [2,3,3,3] */
    TRY_P(t[k], ad_layer_norm(t[5], 2, NULL, NULL, 1e-5)); /* 6 */
    k++;
    TRY_P(t[k], ad_batch_norm(t[4], NULL, NULL, NULL, NULL, true, 0.1, 1e-5)); /* 7 */
    k++;
    TRY_P(t[k], ad_dropout(t[7], 0.5, true, &rng)); /* 8 */
    k++;
    TRY_P(t[k], ad_flatten(t[8], 1, -1)); /* 9: [2,12] */
    k++;
    TRY_P(t[k], ad_log_softmax(t[9], 1)); /* 10 */
    k++;
    TRY_P(t[k], ad_from_array(NULL, AD_INT64, AD_SHAPE(3), (int64_t[]){0, 1, 1})); /* 11 */
    k++;
    TRY_P(t[k], ad_embedding(t[9], t[11])); /* 12: [3,12] */
    k++;
    TRY_P(t[k], ad_sum(t[12], NULL, 0, false)); /* 13 */
    k++;
    put_tensor(out, t[10]);
    put(out, ad_item(t[13]));
    rc = 0;
fail:
    for (int i = NT; i-- > 0;) ad_tensor_free(t[i]);
    return rc;
}

/* ---- scenario 4: the scalar API -------------------------------------------------------
 * Enough nodes (3 per iteration) that the scalar arrays grow four times. */
#define TRY_S(var, expr)                                                                 \
    do {                                                                                 \
        /* A temporary: expr may read var (acc = acc + t). */                          \
        ad_scalar r_ = (expr);                                                           \
        if (!ad_scalar_ok(r_)) {                                                         \
            expect_oom(#expr);                                                           \
            if (!retry) goto fail;                                                       \
            ck_assert_msg(ad_scalar_ok(r_ = (expr)), "retry of %s: %s", #expr,           \
                          ad_error());                                                   \
        }                                                                                \
        (var) = r_;                                                                      \
    } while (0)

static int scenario_scalar(bool retry, outcome *out)
{
    int rc = 1;
    ad_tape *tape = NULL;
    ad_scalar x, y, acc, t1, t2;
    TRY_P(tape, ad_tape_new());
    TRY_S(x, ad_scalar_var(tape, 0.5));
    TRY_S(y, ad_scalar_var(tape, 1.5));
    TRY_S(acc, ad_scalar_const(tape, 0.0));
    for (int i = 0; i < 3000; i++) {
        TRY_S(t1, ad_ssin(i % 2 ? x : y));
        TRY_S(t2, ad_smul_c(t1, 1.0 / (1 + i)));
        TRY_S(acc, ad_sadd(acc, t2));
    }
    TRY_I(ad_scalar_backward(acc));
    double g[2];
    TRY_I(ad_scalar_gradient(acc, 2, (ad_scalar[]){x, y}, g));
    put(out, ad_scalar_value(acc));
    put(out, g[0]);
    put(out, g[1]);
    TRY_I(ad_tape_reset(tape));
    TRY_S(x, ad_scalar_var(tape, 2.0));
    TRY_S(t1, ad_stanh(x));
    TRY_I(ad_scalar_backward(t1));
    put(out, ad_scalar_grad(x));
    rc = 0;
fail:
    ad_tape_free(tape);
    return rc;
}

/* ---- scenario 5: transforms and gradcheck ----------------------------------------------- */
static ad_tensor *tf_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    (void)ctx;
    ad_tensor *x = in[0];
    return ad_sum(ad_mul(ad_square(ad_tanh(x)), x), NULL, 0, false);
}

static int scenario_transforms(bool retry, outcome *out)
{
    int rc = 1;
    ad_tape *tape = NULL;
    ad_tensor *x = NULL, *u, *hess, *y, *jvp, *grads[1], *value;
    TRY_P(x, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3), ((double[]){0.3, -0.7, 1.1})));
    TRY_P(tape, ad_tape_new());
    TRY_I(ad_grad(tape, tf_f, NULL, 1, &x, grads, &value, 0));
    put(out, ad_item(value));
    put_tensor(out, grads[0]);
    TRY_I(ad_hessian(tape, tf_f, NULL, x, &hess, 0));
    put_tensor(out, hess);
    TRY_P(u, ad_ones(tape, AD_FLOAT64, AD_SHAPE(3)));
    TRY_I(ad_jvp(tape, tf_f, NULL, 1, &x, &u, &y, &jvp, 0));
    put(out, ad_item(jvp));
    MUST(ad_set_requires_grad(x, true));
    int ok = ad_gradcheck(tf_f, NULL, 1, &x, NULL);
    if (ok != 1) {
        ck_assert_int_eq(ok, -1);
        expect_oom("ad_gradcheck");
        if (!retry) goto fail;
        ok = ad_gradcheck(tf_f, NULL, 1, &x, NULL);
        ck_assert_int_eq(ok, 1);
    }
    put(out, ok);
    rc = 0;
fail:
    ad_tape_free(tape);
    ad_tensor_free(x);
    return rc;
}

/* ---- scenario 6: foreign functions and callbacks (ffi.h) ---------------------------------
 * A foreign op with numeric derivatives, forward and backward, and a tape
 * made into a C callback, called for its value and gradient.  (libffi's own
 * allocations do not go through the hook; the library's do.) */
static double ffi_f(double a, double b) { return a * b + sin(a); }

static ad_tensor *cb_f(ad_tensor *const *in, int n, void *ctx)
{
    (void)ctx;
    ad_tensor *s = ad_mul(in[0], ad_exp(in[1]));
    return n == 2 ? s : NULL;
}

static int scenario_ffi(bool retry, outcome *out)
{
    int rc = 1;
    ad_foreign *op = NULL;
    ad_callback *cb = NULL;
    ad_tape *tape = NULL;
    ad_tensor *x, *y, *z, *s, *args[2];
    TRY_P(op, ad_foreign_new("d(dd)", AD_FN(ffi_f), "f"));
    TRY_P(tape, ad_tape_new());
    TRY_P(x, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3), ((double[]){0.5, -1, 2})));
    TRY_P(y, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3), ((double[]){1.5, 0.25, -3})));
    MUST(ad_set_requires_grad(x, true));
    MUST(ad_set_requires_grad(y, true));
    args[0] = x;
    args[1] = y;
    TRY_P(z, ad_foreign_call(op, 2, args));
    TRY_P(s, ad_sum(z, NULL, 0, false));
    if (ad_backward(s, NULL, 0) != 0) {
        expect_oom("ad_backward(foreign)");
        if (!retry) goto fail;
        MUST(ad_zero_grad(x));
        MUST(ad_zero_grad(y));
        ck_assert_msg(ad_backward(s, NULL, 0) == 0, "retry: %s", ad_error());
    }
    put(out, ad_item(s));
    put_tensor(out, ad_tensor_grad(x));
    put_tensor(out, ad_tensor_grad(y));
    TRY_P(cb, ad_callback_new(cb_f, 2, 0));
    double pt[2] = {0.75, -0.5}, g[2];
    ad_value_gradient_callback fg = ad_callback_value_gradient(cb);
    ck_assert_ptr_nonnull(fg);
    double v = fg(pt, NULL, g);
    if (isnan(v)) {
        expect_oom("callback");
        if (!retry) goto fail;
        v = fg(pt, NULL, g);
        ck_assert_msg(!isnan(v), "retry of the callback: %s", ad_error());
    }
    put(out, v);
    put(out, g[0]);
    put(out, g[1]);
    rc = 0;
fail:
    ad_callback_free(cb);
    ad_tape_free(tape);
    ad_foreign_free(op);
    return rc;
}

/* ---- scenario 7: nn modules, optimisers, a training step ---------------------------------
 * Built with the nn layer, whose every allocation goes through ad_malloc
 * and friends (alloc.h) and so through the same injection counter:
 * Sequential construction (nested constructors checked once), a child added
 * by hand, parameter and state-dict listings, Adam and SGD, forward,
 * cross-entropy, backward, clipping, two optimiser steps, the optimiser's
 * state listing and printing. */
static double get_at(const ad_tensor *t, const int64_t *index)
{
    double v;
    ck_assert_msg(ad_get(t, index, &v) == 0, "ad_get: %s", ad_error());
    return v;
}

static nn_module *fault_net(void)
{
    /* The rng is made here so that a retried construction draws the same
     * weights as the first attempt. */
    ad_rng rng;
    ad_rng_init(&rng, 7);
    return NN_SEQUENTIAL(nn_linear(3, 4, true, AD_FLOAT64, &rng), nn_tanh(),
                         nn_linear(4, 5, true, AD_FLOAT64, &rng));
}

static int count_lines(const nn_module *m, int64_t *lines)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    int rc = nn_module_print(m, f);
    fclose(f);
    *lines = 0;
    for (size_t i = 0; i < len; i++) *lines += buf[i] == '\n';
    free(buf);
    return rc;
}

static int scenario_nn(bool retry, outcome *out)
{
    int rc = 1;
    nn_module *net = NULL;
    nn_named_tensors *params = NULL, *sd = NULL, *st = NULL;
    nn_optim *adam = NULL, *sgd = NULL;
    ad_tape *tape = NULL;
    ad_tensor *x, *y, *logits, *loss;
    TRY_P(net, fault_net());
    TRY_I(nn_module_add_child(net, "extra", nn_relu()));
    TRY_P(params, nn_parameters(net));
    TRY_P(sd, nn_state_dict(net));
    put(out, params->n);
    put(out, sd->n);
    put(out, (double)nn_num_parameters(net));
    TRY_P(adam, nn_adam(params, &(nn_adam_options)NN_ADAM_DEFAULTS));
    TRY_P(sgd, nn_sgd(params, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9}));
    TRY_P(tape, ad_tape_new());
    ad_tape_activate(tape);
    for (int step = 0; step < 2; step++) {
        if (step) TRY_I(ad_tape_reset(tape));
        TRY_P(x, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(4, 3), XV));
        TRY_P(y, ad_from_array(tape, AD_INT64, AD_SHAPE(4), YV));
        TRY_P(logits, nn_forward(net, x));
        TRY_P(loss, nn_cross_entropy(logits, y, NN_MEAN, 0.1));
        MUST(nn_optim_zero_grad(adam));
        if (ad_backward(loss, NULL, 0) != 0) {
            expect_oom("ad_backward(nn loss)");
            if (!retry) goto fail;
            MUST(nn_optim_zero_grad(adam));
            ck_assert_msg(ad_backward(loss, NULL, 0) == 0, "retry: %s", ad_error());
        }
        put(out, ad_item(loss));
        double norm = nn_clip_grad_norm(params, 10.0);
        if (norm < 0) {
            expect_oom("nn_clip_grad_norm");
            if (!retry) goto fail;
            norm = nn_clip_grad_norm(params, 10.0);
            ck_assert_msg(norm >= 0, "retry: %s", ad_error());
        }
        put(out, norm);
        TRY_I(nn_optim_step(step ? sgd : adam));
    }
    TRY_P(st, nn_optim_state(adam));
    put(out, st->n);
    int64_t lines;
    TRY_I(count_lines(net, &lines));
    put(out, (double)lines);
    ad_tensor *w = nn_get_parameter(net, "2.weight");
    ck_assert_ptr_nonnull(w);
    put(out, get_at(w, (int64_t[]){1, 2}));
    rc = 0;
fail:
    ad_tape_activate(NULL);
    ad_tape_free(tape);
    nn_named_tensors_free(st);
    nn_optim_free(sgd);
    nn_optim_free(adam);
    nn_named_tensors_free(sd);
    nn_named_tensors_free(params);
    nn_module_free(net);
    return rc;
}

/* ---- scenario 8: nn data: IDX (gzip) and CSV files, loaders --------------------------------
 * The files are written inside the scenario too: nn_idx_save to .gz (a
 * gzip stream through zlib), a CSV by hand.  zlib's gz* layer allocates
 * with its own malloc, which no allocator hook reaches; each gzip open is
 * counted as one of the library's allocations instead (nn/data.c), so its
 * failure path is swept too. */
static char data_dir[256];

static int scenario_data(bool retry, outcome *out)
{
    int rc = 1;
    char ipath[320], lpath[320], cpath[320];
    snprintf(ipath, sizeof ipath, "%s/images.idx.gz", data_dir);
    snprintf(lpath, sizeof lpath, "%s/labels.idx", data_dir);
    snprintf(cpath, sizeof cpath, "%s/table.csv", data_dir);
    nn_idx *images = NULL, *labels = NULL;
    nn_loader *li = NULL, *lt = NULL;
    ad_tensor *csv = NULL, *bx, *by;
    uint8_t pix[5 * 2 * 3], lab[5];
    for (int i = 0; i < 30; i++) pix[i] = (uint8_t)(i * 37 % 256);
    for (int i = 0; i < 5; i++) lab[i] = (uint8_t)(i * 3 % 10);
    nn_idx wi = {NN_IDX_UINT8, 3, {5, 2, 3}, 30, pix}, wl = {NN_IDX_UINT8, 1, {5}, 5, lab};
    TRY_I(nn_idx_save(ipath, &wi));
    TRY_I(nn_idx_save(lpath, &wl));
    FILE *f = fopen(cpath, "w");
    ck_assert_ptr_nonnull(f);
    fputs("a,b,c\n1.5,2,-3\n\"4\", 5e-1 ,6\n7,8,9.25\n", f);
    fclose(f);
    TRY_P(images, nn_idx_load(ipath));
    TRY_P(labels, nn_idx_load(lpath));
    put(out, (double)images->numel);
    put(out, images->data[29]);
    TRY_P(li, nn_loader_from_idx(images, labels,
                                 &(nn_loader_options){.batch_size = 2, .shuffle = true,
                                                      .seed = 3, .dtype = AD_FLOAT64}));
    for (int k = 0; k < 3; k++) {
        int r = nn_loader_next(li, &bx, &by);
        if (r < 0) {
            expect_oom("nn_loader_next");
            if (!retry) goto fail;
            r = nn_loader_next(li, &bx, &by);
        }
        ck_assert_int_eq(r, 1);
        put(out, get_at(bx, (int64_t[]){0, 1, 2}));
        put(out, get_at(by, (int64_t[]){0}));
    }
    TRY_P(csv, nn_csv_load(cpath, &(nn_csv_options){.header = true, .dtype = AD_FLOAT64}));
    put_tensor(out, csv);
    TRY_P(lt, nn_loader_from_tensors(csv, NULL, &(nn_loader_options){.batch_size = 2}));
    int r = nn_loader_next(lt, &bx, NULL);
    if (r < 0) {
        expect_oom("nn_loader_next(tensors)");
        if (!retry) goto fail;
        r = nn_loader_next(lt, &bx, NULL);
    }
    ck_assert_int_eq(r, 1);
    put_tensor(out, bx);
    rc = 0;
fail:
    nn_loader_free(lt);
    nn_loader_free(li);
    ad_tensor_free(csv);
    nn_idx_free(labels);
    nn_idx_free(images);
    return rc;
}

/* ---- scenario 9: checkpoints -----------------------------------------------------------------
 * A model's state dict saved with metadata, inspected, one entry read
 * back, and loaded into a second model built from another seed. */
static int scenario_checkpoint(bool retry, outcome *out)
{
    int rc = 1;
    char path[320];
    snprintf(path, sizeof path, "%s/model.safetensors", data_dir);
    nn_module *a = NULL, *b = NULL;
    nn_named_tensors *sa = NULL, *sb = NULL;
    nn_safetensors_info *info = NULL;
    ad_tensor *one = NULL;
    ad_rng rng;
    TRY_P(a, fault_net());
    TRY_P(sa, nn_state_dict(a));
    TRY_I(nn_save_safetensors(path, sa->n, sa->names, sa->tensors,
                              "{\"epoch\": \"3\", \"note\": \"faults\"}"));
    TRY_P(info, nn_safetensors_inspect(path));
    put(out, info->n);
    const char *ep = nn_safetensors_metadata(info, "epoch");
    ck_assert_ptr_nonnull(ep);
    put(out, atof(ep));
    TRY_P(one, nn_safetensors_read(path, "0.bias"));
    put_tensor(out, one);
    ad_rng_init(&rng, 99);
    TRY_P(b, NN_SEQUENTIAL(nn_linear(3, 4, true, AD_FLOAT64, &rng), nn_tanh(),
                           nn_linear(4, 5, true, AD_FLOAT64, &rng)));
    TRY_P(sb, nn_state_dict(b));
    TRY_I(nn_load_safetensors(path, sb->n, sb->names, sb->tensors, true));
    put_tensor(out, nn_get_parameter(b, "2.bias"));
    rc = 0;
fail:
    ad_tensor_free(one);
    nn_safetensors_info_free(info);
    nn_named_tensors_free(sb);
    nn_named_tensors_free(sa);
    nn_module_free(b);
    nn_module_free(a);
    return rc;
}

/* ---- scenario 10: graph export ----------------------------------------------------------------
 * ad_graph_dot and ad_graph_dot_tape of a small recorded computation, with
 * values and gradients drawn (the DOT writer's labels, maps and buffers
 * come from ad_malloc).  Each picture goes to a fresh memory stream, and
 * what is compared is its length and a checksum of its text. */
static int dot_digest(int tape_form, ad_tape *tape, ad_tensor *const *outs, int n,
                      const ad_dot_opts *o, double *len, double *sum)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    ck_assert_ptr_nonnull(f);
    int rc = tape_form ? ad_graph_dot_tape(f, tape, o) : ad_graph_dot(f, outs, n, o);
    fclose(f);
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) h = (h ^ (unsigned char)buf[i]) * 1099511628211ull;
    *len = (double)size;
    *sum = (double)(h >> 11);
    free(buf);
    return rc;
}

static int scenario_graph(bool retry, outcome *out)
{
    int rc = 1;
    ad_tape *tape = NULL;
    ad_tensor *a, *b, *c, *d, *e;
    double len, sum;
    TRY_P(tape, ad_tape_new());
    TRY_P(a, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(2, 3), XV));
    TRY_P(b, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3, 2), XV + 6));
    MUST(ad_set_requires_grad(a, true));
    TRY_I(ad_set_label(a, "input \"a\""));
    TRY_P(c, ad_matmul(a, b));
    TRY_P(d, ad_tanh(c));
    TRY_P(e, ad_sum(d, NULL, 0, false));
    TRY_I(ad_backward(e, NULL, AD_RETAIN_GRAPH));
    ad_dot_opts o = AD_DOT_DEFAULTS;
    o.max_values = 64; /* more than 16 values: the heap buffer */
    TRY_I(dot_digest(0, NULL, (ad_tensor *[]){e, d}, 2, &o, &len, &sum));
    put(out, len);
    put(out, sum);
    TRY_I(dot_digest(1, tape, NULL, 0, NULL, &len, &sum));
    put(out, len);
    put(out, sum);
    /* local derivatives on the arrows: each op's rule runs on the tape */
    ad_tensor *sq;
    TRY_P(sq, ad_mul(e, e));
    o.edge_derivatives = true;
    TRY_I(dot_digest(0, NULL, &sq, 1, &o, &len, &sum));
    put(out, len);
    put(out, sum);
    rc = 0;
fail:
    ad_tape_free(tape);
    return rc;
}

/* ---- scenario 11: linear algebra ---------------------------------------------------------------
 * Every kernel of ops_decomp.c that takes scratch from the heap (LU solve,
 * triangular solve, inverse, symmetric eigensolver, QR), forward and
 * backward, on one symmetric positive-definite A: each scratch block
 * fails once, and its op must report it without touching the block. */
static int scenario_linalg(bool retry, outcome *out)
{
    static const double av[9] = {4, 1, 0.5, 1, 3, -0.25, 0.5, -0.25, 2};
    static const double bv[6] = {1, -2, 0.5, 3, -1, 0.25};
    int rc = 1;
    ad_tape *tape = NULL;
    ad_tensor *A, *B, *x, *t, *inv, *w, *V, *Q, *R, *s1, *s2, *s3, *s4, *s5, *total;
    TRY_P(tape, ad_tape_new());
    TRY_P(A, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3, 3), av));
    TRY_P(B, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3, 2), bv));
    MUST(ad_set_requires_grad(A, true));
    MUST(ad_set_requires_grad(B, true));
    TRY_P(x, ad_linalg_solve(A, B));
    TRY_P(t, ad_linalg_solve_triangular(A, B, false, true, false));
    TRY_P(inv, ad_linalg_inv(A));
    TRY_I(ad_linalg_eigh(A, &w, &V));
    TRY_I(ad_linalg_qr(A, &Q, &R));
    put_tensor(out, x);
    put_tensor(out, w);
    TRY_P(s1, ad_sum(x, NULL, 0, false));
    TRY_P(s2, ad_sum(ad_square(t), NULL, 0, false));
    TRY_P(s3, ad_sum(ad_mul(inv, inv), NULL, 0, false));
    TRY_P(s4, ad_add(ad_sum(w, NULL, 0, false), ad_sum(ad_abs(V), NULL, 0, false)));
    TRY_P(s5, ad_add(ad_sum(ad_square(Q), NULL, 0, false), ad_sum(R, NULL, 0, false)));
    TRY_P(total, ad_add(ad_add(ad_add(s1, s2), ad_add(s3, s4)), s5));
    if (ad_backward(total, NULL, AD_RETAIN_GRAPH) != 0) {
        /* leaves reached before the failing node may hold part of the
         * gradient (tape.h): cleared, the same backward runs again */
        expect_oom("ad_backward(total, RETAIN)");
        if (!retry) goto fail;
        MUST(ad_zero_grad(A));
        MUST(ad_zero_grad(B));
        ck_assert_int_eq(ad_backward(total, NULL, AD_RETAIN_GRAPH), 0);
    }
    put(out, ad_item(total));
    put_tensor(out, ad_tensor_grad(A));
    put_tensor(out, ad_tensor_grad(B));
    rc = 0;
fail:
    ad_tape_free(tape);
    return rc;
}

/* ---- scenario 12: sequence and convolution layers ----------------------------------------------
 * The nn layers whose ops keep heap scratch or fused state: an LSTM and a
 * GRU over a short sequence (the fused recurrences), a transformer block
 * (layer norm, causal attention, GELU) on the LSTM's output, and a
 * convolution with max pooling, then one loss and its backward pass. */
static nn_module *seq_layer(int which)
{
    /* the rng is made here, as in fault_net: a retried construction draws
     * the same weights */
    ad_rng rng;
    ad_rng_init(&rng, 11 + (uint64_t)which);
    static const int k3[2] = {3, 3}, k2[2] = {2, 2};
    ad_conv2d_params pad = {{1, 1}, {1, 1}, {1, 1}, 1};
    switch (which) {
    case 0: return nn_lstm(3, 4, 1, true, AD_FLOAT64, &rng);
    case 1: return nn_gru(3, 4, 1, true, AD_FLOAT64, &rng);
    case 2: return nn_transformer_block(4, 2, 8, 0.0, AD_FLOAT64, &rng, 5);
    default:
        return NN_SEQUENTIAL(nn_conv2d(1, 2, k3, &pad, true, AD_FLOAT64, &rng), nn_relu(),
                             nn_max_pool2d(k2, k2, (int[2]){0, 0}));
    }
}

/* The sum of t's elements, read without allocating through the library. */
static double sum_of(const ad_tensor *t)
{
    int64_t n = ad_numel(t);
    double *v = malloc((size_t)n * sizeof *v), s = 0;
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(ad_to_array(t, v), 0);
    for (int64_t i = 0; i < n; i++) s += v[i];
    free(v);
    return s;
}

static int scenario_seq(bool retry, outcome *out)
{
    int rc = 1;
    nn_module *m[4] = {NULL, NULL, NULL, NULL};
    nn_named_tensors *params[4] = {NULL, NULL, NULL, NULL};
    ad_tape *tape = NULL;
    ad_tensor *x, *img, *hl, *hg, *tb, *cv, *loss;
    for (int i = 0; i < 4; i++) {
        TRY_P(m[i], seq_layer(i));
        TRY_P(params[i], nn_parameters(m[i]));
    }
    TRY_P(tape, ad_tape_new());
    TRY_P(x, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(2, 2, 3), XV));
    TRY_P(img, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(1, 1, 3, 4), XV));
    TRY_I(nn_rnn_forward(m[0], x, NULL, NULL, &hl, NULL, NULL));
    TRY_I(nn_rnn_forward(m[1], x, NULL, NULL, &hg, NULL, NULL));
    TRY_P(tb, nn_forward(m[2], hl));
    TRY_P(cv, nn_forward(m[3], img));
    TRY_P(loss, ad_add(ad_add(ad_sum(ad_square(tb), NULL, 0, false),
                              ad_sum(ad_mul(hg, hl), NULL, 0, false)),
                       ad_sum(cv, NULL, 0, false)));
    if (ad_backward(loss, NULL, AD_RETAIN_GRAPH) != 0) {
        expect_oom("ad_backward(layers)");
        if (!retry) goto fail;
        for (int i = 0; i < 4; i++)
            for (int k = 0; k < params[i]->n; k++) MUST(ad_zero_grad(params[i]->tensors[k]));
        ck_assert_msg(ad_backward(loss, NULL, AD_RETAIN_GRAPH) == 0, "retry: %s", ad_error());
    }
    put(out, ad_item(loss));
    for (int i = 0; i < 4; i++) { /* the first and the last parameter's gradient */
        const ad_tensor *g0 = ad_tensor_grad(params[i]->tensors[0]);
        const ad_tensor *g1 = ad_tensor_grad(params[i]->tensors[params[i]->n - 1]);
        ck_assert_ptr_nonnull(g0);
        ck_assert_ptr_nonnull(g1);
        put(out, sum_of(g0));
        put(out, sum_of(g1));
    }
    rc = 0;
fail:
    ad_tape_free(tape);
    for (int i = 0; i < 4; i++) {
        nn_named_tensors_free(params[i]);
        nn_module_free(m[i]);
    }
    return rc;
}

/* ---- scenario 13: the trainer ---------------------------------------------------------------------
 * nn_trainer over a shuffling tensor loader: nn_fit for two epochs with a
 * validation pass, a confusion matrix and a checkpoint at the end (AdamW,
 * cosine schedule, replayed steps), nn_trainer_evaluate, then a second
 * trainer (RMSprop) loaded from the checkpoint for an epoch on two
 * threads.  Swept
 * in stop mode only: nn_fit stops at a failed step with the parameters of
 * the last good one, and a second call trains its epoch again from the
 * start, so a retried run is not expected to equal an unbroken one. */
static int scenario_fit(bool retry, outcome *out)
{
    (void)retry;
    int rc = 1;
    char path[320];
    snprintf(path, sizeof path, "%s/fit.safetensors", data_dir);
    double xv[24];
    int64_t yv[8];
    for (int i = 0; i < 24; i++) xv[i] = XV[i % 12] * (i < 12 ? 1 : -0.5);
    for (int i = 0; i < 8; i++) yv[i] = (i * 3) % 5;
    ad_tensor *x = NULL, *y = NULL;
    nn_module *net = NULL, *net2 = NULL;
    nn_optim *opt = NULL, *opt2 = NULL;
    nn_loader *train = NULL;
    nn_trainer *tr = NULL, *tr2 = NULL;
    nn_confusion *cm = NULL;
    nn_metrics m;
    TRY_P(x, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(8, 3), xv));
    TRY_P(y, ad_from_array(NULL, AD_INT64, AD_SHAPE(8), yv));
    TRY_P(train, nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 3,
                                                                    .shuffle = true, .seed = 5}));
    TRY_P(net, fault_net());
    TRY_P(opt, nn_adamw_module(net, &(nn_adam_options)NN_ADAMW_DEFAULTS));
    TRY_P(tr, nn_trainer_new(net, NULL, opt,
                             &(nn_trainer_options){.accuracy = true,
                                                   .schedule = NN_SCHEDULE_COSINE}));
    TRY_P(cm, nn_confusion_new(5));
    TRY_I(nn_fit(tr, train, train, 2,
                 &(nn_fit_options){.val_confusion = cm, .checkpoint = path,
                                   .checkpoint_every = 2}));
    if (nn_trainer_evaluate(tr, train, NULL, &m) < 0) {
        expect_oom("nn_trainer_evaluate");
        goto fail;
    }
    put(out, m.loss);
    put(out, m.accuracy);
    put(out, nn_confusion_accuracy(cm));
    put(out, get_at(nn_get_parameter(net, "2.weight"), (int64_t[]){1, 2}));
    TRY_P(net2, fault_net());
    TRY_P(opt2, nn_rmsprop_module(net2, &(nn_rmsprop_options)NN_RMSPROP_DEFAULTS));
    TRY_P(tr2, nn_trainer_new(net2, NULL, opt2, NULL));
    TRY_I(nn_trainer_load(tr2, path, false));
    put(out, get_at(nn_get_parameter(net2, "2.weight"), (int64_t[]){1, 2}));
    /* two threads: the pool, the update's runs and the prefetch are set up
     * on this thread, whose allocations the injection counts */
    MUST(nn_trainer_set_threads(tr2, 2));
    TRY_I(nn_fit(tr2, train, NULL, 1, NULL));
    put(out, (double)nn_trainer_steps(tr2));
    put(out, get_at(nn_get_parameter(net2, "0.bias"), (int64_t[]){3}));
    rc = 0;
fail:
    nn_trainer_free(tr2);
    nn_trainer_free(tr);
    nn_confusion_free(cm);
    nn_optim_free(opt2);
    nn_optim_free(opt);
    nn_module_free(net2);
    nn_module_free(net);
    nn_loader_free(train);
    ad_tensor_free(y);
    ad_tensor_free(x);
    return rc;
}

/* ---- scenario 14: custom ops, einsum, printing, checkpointed segments -----------------------------
 * A custom op (forward saving its input, backward in the library's ops)
 * called, differentiated and checked with ad_custom_check; an einsum
 * contraction; ad_print of a result; ad_checkpoint of a two-op segment
 * whose backward recomputes it; nn_gradcheck of a module. */
static ad_tensor *x2sin_fw(ad_custom_ctx *ctx, ad_tensor *const *in, int n, void *user)
{
    (void)n, (void)user;
    if (ad_custom_save(ctx, 1, in)) return NULL;
    return ad_mul(ad_square(in[0]), ad_sin(in[0])); /* x^2 sin x */
}

static int x2sin_bw(ad_custom_ctx *ctx, ad_tensor *g, ad_tensor **gin, void *user)
{
    (void)user;
    ad_tensor *x = ad_custom_saved(ctx, 0); /* d/dx = 2x sin x + x^2 cos x */
    ad_tensor *d = ad_add(ad_mul(ad_mul_scalar(x, 2), ad_sin(x)), ad_mul(ad_square(x), ad_cos(x)));
    return (gin[0] = ad_mul(g, d)) ? 0 : -1;
}

static int segment(ad_tensor *const *in, int nin, ad_tensor **out, int nout, void *ctx)
{
    (void)nin, (void)nout, (void)ctx;
    return (out[0] = ad_tanh(ad_matmul(in[0], in[1]))) ? 0 : -1;
}

static int scenario_extras(bool retry, outcome *out)
{
    int rc = 1;
    ad_custom *op = NULL;
    ad_tape *tape = NULL;
    nn_module *net = NULL;
    ad_tensor *a, *b, *y, *e, *seg, *loss, *px = NULL, *py = NULL;
    char *buf = NULL;
    size_t size = 0;
    TRY_P(op, ad_custom_new(&(ad_custom_desc){.name = "x2sin", .nin = 1, .forward = x2sin_fw,
                                              .backward = x2sin_bw}));
    TRY_P(tape, ad_tape_new());
    TRY_P(a, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(2, 3), XV));
    TRY_P(b, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3, 2), XV + 6));
    MUST(ad_set_requires_grad(a, true));
    MUST(ad_set_requires_grad(b, true));
    TRY_P(y, ad_custom_call(op, 1, &a));
    TRY_P(e, ad_einsum("ij,jk->ik", 2, (ad_tensor *[]){y, b}));
    TRY_I(ad_checkpoint(segment, NULL, 0, 2, (ad_tensor *[]){a, b}, 1, &seg));
    TRY_P(loss, ad_add(ad_sum(ad_square(e), NULL, 0, false), ad_sum(seg, NULL, 0, false)));
    if (ad_backward(loss, NULL, AD_RETAIN_GRAPH) != 0) {
        expect_oom("ad_backward(extras)");
        if (!retry) goto fail;
        MUST(ad_zero_grad(a));
        MUST(ad_zero_grad(b));
        ck_assert_msg(ad_backward(loss, NULL, AD_RETAIN_GRAPH) == 0, "retry: %s", ad_error());
    }
    put(out, ad_item(loss));
    put_tensor(out, ad_tensor_grad(a));
    put_tensor(out, ad_tensor_grad(b));
    int ok = ad_custom_check(op, 1, &a, NULL);
    if (ok != 1) {
        ck_assert_int_eq(ok, -1);
        expect_oom("ad_custom_check");
        if (!retry) goto fail;
        ck_assert_int_eq(ad_custom_check(op, 1, &a, NULL), 1);
    }
    FILE *f = open_memstream(&buf, &size);
    ck_assert_ptr_nonnull(f);
    int pr = ad_print(e, f);
    fclose(f);
    if (pr != 0) {
        expect_oom("ad_print");
        if (!retry) goto fail;
        free(buf);
        buf = NULL;
        f = open_memstream(&buf, &size);
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(ad_print(e, f), 0);
        fclose(f);
    }
    put(out, (double)size);
    TRY_P(net, fault_net());
    TRY_P(px, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(4, 3), XV));
    double yv[20];
    for (int i = 0; i < 20; i++) yv[i] = XV[i % 12] - 0.1 * i;
    TRY_P(py, ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(4, 5), yv));
    ok = nn_gradcheck(net, px, py, nn_mse_loss, NULL);
    if (ok != 1) {
        ck_assert_int_eq(ok, -1);
        expect_oom("nn_gradcheck");
        if (!retry) goto fail;
        ck_assert_int_eq(nn_gradcheck(net, px, py, nn_mse_loss, NULL), 1);
    }
    rc = 0;
fail:
    free(buf);
    ad_tensor_free(py);
    ad_tensor_free(px);
    nn_module_free(net);
    ad_tape_free(tape);
    ad_custom_free(op);
    return rc;
}

/* ---- scenario 15: the rest of linear algebra, sorting, more layers --------------------------------
 * SVD, Cholesky and slogdet with their backward passes; sort, argsort and
 * topk; a model of an embedding, batch norm (training), GELU and dropout
 * trained a step with NLL loss and an L2 penalty, gradient clipping by
 * value, nn_summary, a checkpoint with the model's random stream saved and
 * loaded, and a progress bar. */
static nn_module *misc_net(void)
{
    ad_rng rng;
    ad_rng_init(&rng, 21);
    return NN_SEQUENTIAL(nn_embedding(6, 2, AD_FLOAT64, &rng), nn_flatten(1, -1),
                         nn_linear(4, 4, true, AD_FLOAT64, &rng), nn_gelu(), nn_dropout(0.25, 9),
                         nn_linear(4, 5, true, AD_FLOAT64, &rng), nn_log_softmax(1));
}

static int scenario_misc(bool retry, outcome *out)
{
    static const double av[9] = {4, 1, 0.5, 1, 3, -0.25, 0.5, -0.25, 2};
    static const int64_t tok[8] = {0, 5, 2, 2, 4, 1, 3, 0};
    int rc = 1;
    char path[320];
    snprintf(path, sizeof path, "%s/misc.safetensors", data_dir);
    ad_tape *tape = NULL;
    nn_module *net = NULL;
    nn_named_tensors *params = NULL;
    nn_progress *pg = NULL;
    ad_tensor *A, *S, *L, *ld, *srt, *ix, *tk, *tki, *as, *x, *y, *lp, *loss, *lin;
    char *buf = NULL;
    size_t size = 0;
    TRY_P(tape, ad_tape_new());
    ad_tape_activate(tape);
    TRY_P(A, ad_from_array(tape, AD_FLOAT64, AD_SHAPE(3, 3), av));
    MUST(ad_set_requires_grad(A, true));
    TRY_I(ad_linalg_svd(A, NULL, &S, NULL));
    TRY_P(L, ad_linalg_cholesky(A));
    TRY_I(ad_linalg_slogdet(A, NULL, &ld));
    TRY_P(lin, ad_add(ad_add(ad_sum(S, NULL, 0, false), ad_sum(L, NULL, 0, false)), ld));
    TRY_P(srt, ad_sort(A, 1, true, &ix));
    TRY_P(tk, ad_topk(A, 2, 0, true, &tki));
    TRY_P(as, ad_argsort(A, 0, false));
    put_tensor(out, srt);
    put(out, get_at(ix, (int64_t[]){2, 0}));
    put(out, get_at(tki, (int64_t[]){1, 2}));
    put(out, get_at(as, (int64_t[]){0, 1}));
    TRY_P(net, misc_net());
    TRY_P(params, nn_parameters(net));
    TRY_P(x, ad_from_array(tape, AD_INT64, AD_SHAPE(4, 2), tok));
    TRY_P(y, ad_from_array(tape, AD_INT64, AD_SHAPE(4), YV));
    TRY_P(lp, nn_forward(net, x));
    TRY_P(loss, ad_add(ad_add(nn_nll_loss(lp, y, NN_MEAN), nn_l2_penalty(params, 0.01)),
                       ad_add(ad_sum(tk, NULL, 0, false), lin)));
    if (ad_backward(loss, NULL, AD_RETAIN_GRAPH) != 0) {
        expect_oom("ad_backward(misc)");
        if (!retry) goto fail;
        MUST(ad_zero_grad(A));
        for (int k = 0; k < params->n; k++) MUST(ad_zero_grad(params->tensors[k]));
        ck_assert_msg(ad_backward(loss, NULL, AD_RETAIN_GRAPH) == 0, "retry: %s", ad_error());
    }
    put(out, ad_item(loss));
    put_tensor(out, ad_tensor_grad(A));
    TRY_I(nn_clip_grad_value(params, 0.05));
    put(out, sum_of(ad_tensor_grad(params->tensors[0])));
    ad_tape_activate(NULL);
    FILE *f = open_memstream(&buf, &size);
    ck_assert_ptr_nonnull(f);
    int sr = nn_summary(net, 2, (int64_t[]){4, 2}, f);
    fclose(f);
    if (sr != 0) {
        expect_oom("nn_summary");
        if (!retry) goto fail;
        free(buf);
        buf = NULL;
        f = open_memstream(&buf, &size);
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(nn_summary(net, 2, (int64_t[]){4, 2}, f), 0);
        fclose(f);
    }
    put(out, (double)size);
    nn_checkpoint ck = {.model = net, .epoch = 3, .step = 12};
    TRY_I(nn_checkpoint_save(path, &ck));
    nn_checkpoint back = {.model = net};
    TRY_I(nn_checkpoint_load(path, &back));
    put(out, (double)back.step);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &size);
    ck_assert_ptr_nonnull(f);
    pg = nn_progress_new(f, &(nn_progress_options){.mode = NN_PROGRESS_LINES});
    if (!pg) {
        fclose(f);
        expect_oom("nn_progress_new");
        goto fail;
    }
    MUST(nn_progress_begin(pg, 1, 1, 2));
    MUST(nn_progress_update(pg, 1, 0.5, 4));
    MUST(nn_progress_update(pg, 2, 0.25, 4));
    MUST(nn_progress_end(pg, "done"));
    put(out, nn_progress_mean_loss(pg));
    fclose(f);
    rc = 0;
fail:
    nn_progress_free(pg);
    free(buf);
    ad_tape_activate(NULL);
    ad_tape_free(tape);
    nn_named_tensors_free(params);
    nn_module_free(net);
    return rc;
}

/* ---- arena sweeps -------------------------------------------------------------------
 * Tensors, nodes and the backward pass's temporaries come from the tape's
 * arena, which asks the system for memory only when a chunk is full, so the
 * sweeps above reach few of the arena's allocation sites.  These sweeps put
 * each one on a chunk boundary instead: the first chunk is filled up to
 * `left` bytes before its end, then a step runs with the next system
 * allocation failing.  As left goes 0, 64, 128, ... (the arena's alignment)
 * up to what the step takes, every arena allocation of the step is, in
 * turn, the one that needs a new chunk and fails. */
static void fill_arena(ad_tape *t, size_t left)
{
    ck_assert_ptr_nonnull(t->arena.cur);
    ad_arena_chunk *c = t->arena.cur;
    ck_assert_uint_ge(c->size - c->used, left);
    if (c->size - c->used > left) ck_assert_ptr_nonnull(ad__arena_alloc(t, c->size - c->used - left));
    ck_assert_uint_eq(c->size - c->used, left);
    ck_assert_ptr_null(c->next);
}

typedef int (*arena_step)(bool retry, outcome *out, ad_tape *tape, int phase, void *ctx);

/* Runs setup (phase 0) without injection, fills the arena, then the step
 * (phase 1) with the next allocation failing; returns how many offsets
 * made the step fail.  `used` is what the step takes from the arena. */
static int arena_sweep(const char *name, arena_step step, void *(*make)(void),
                       void (*destroy)(void *), bool retry)
{
    outcome ref = {0}, got;
    size_t used;
    {
        void *ctx = make();
        ad_tape *t = ad_tape_new();
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(step(false, &ref, t, 0, ctx), 0);
        size_t before = t->arena.used;
        /* the step's high-water mark: the backward pass gives its rules'
         * temporaries back as it goes, so it ends below its peak */
        ad__arena_clear_peak(&t->arena);
        ck_assert_int_eq(step(false, &ref, t, 1, ctx), 0);
        used = ad__arena_peak(&t->arena) - before;
        ad_tape_free(t);
        destroy(ctx);
    }
    int failures = 0;
    for (size_t left = 0; left <= used + ARENA_ALIGN; left += (size_t)stride() * ARENA_ALIGN) {
        void *ctx = make();
        ad_tape *t = ad_tape_new();
        ck_assert_ptr_nonnull(t);
        memset(&got, 0, sizeof got);
        ck_assert_int_eq(step(false, &got, t, 0, ctx), 0);
        fill_arena(t, left);
        ad_clear_error();
        ad__alloc_fail_in = 1;
        int stopped = step(retry, &got, t, 1, ctx);
        bool reached = ad__alloc_fail_in == 0;
        ad__alloc_fail_in = 0;
        failures += reached;
        if (!stopped) {
            ck_assert_int_eq(got.n, ref.n);
            for (int i = 0; i < ref.n; i++)
                ck_assert_msg(got.v[i] == ref.v[i], "%s, %zu bytes left%s: value %d is %.17g, "
                              "expected %.17g", name, left, retry ? " (retried)" : "", i,
                              got.v[i], ref.v[i]);
        }
        ad_tape_activate(NULL);
        ad_tape_free(t);
        destroy(ctx);
        if (!reached) ck_assert_int_ge(left, used);
    }
    fprintf(stderr, "test_faults: %-14s %-6s %4d arena offsets (%zu bytes per step)\n", name,
            retry ? "retry" : "stop", failures, used);
    return failures;
}

/* The model's persistent weights. */
typedef struct weights {
    ad_tensor *w0, *b, *batch;
    ad_tensor *x, *loss; /* replay: recorded in phase 0 */
} weights;

static void *make_weights(void)
{
    weights *w = calloc(1, sizeof *w);
    double wv[15], bv[5] = {0.1, -0.1, 0.2, 0, 0.05};
    for (int i = 0; i < 15; i++) wv[i] = sin(1.0 + i);
    w->w0 = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(15), wv);
    w->b = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(5), bv);
    w->batch = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(4, 3), XV);
    ck_assert(w->w0 && w->b && w->batch);
    ad_set_requires_grad(w->w0, true);
    ad_set_requires_grad(w->b, true);
    return w;
}

static void destroy_weights(void *p)
{
    weights *w = p;
    ad_tensor_free(w->w0);
    ad_tensor_free(w->b);
    ad_tensor_free(w->batch);
    free(w);
}

/* Phase 0 records one op so the node array exists (its first allocation
 * is not an arena one); phase 1 is one training step. */
static int arena_train(bool retry, outcome *out, ad_tape *tape, int phase, void *ctx)
{
    weights *w = ctx;
    ad_tape_activate(tape);
    if (phase == 0) {
        ad_tensor *warm = ad_neg(w->b);
        ck_assert_ptr_nonnull(warm);
        return 0;
    }
    return train_step(retry, out, tape, w->w0, w->b);
}

/* Phase 0 records the model on a replayable tape; phase 1 freezes it (the
 * arena is filled before, so the freeze point is at the boundary) and runs
 * two replays, each with a backward pass. */
static int arena_replay(bool retry, outcome *out, ad_tape *tape, int phase, void *ctx)
{
    weights *w = ctx;
    ad_tensor *y, *r, *mm, *pre, *h, *ce, *s, *s2;
    ad_tape_activate(tape);
    if (phase == 0) {
        ck_assert_int_eq(ad_tape_set_replayable(tape, true), 0);
        w->x = ad_zeros(tape, AD_FLOAT64, AD_SHAPE(4, 3));
        y = ad_from_array(tape, AD_INT64, AD_SHAPE(4), YV);
        r = ad_reshape(w->w0, AD_SHAPE(3, 5));
        mm = ad_matmul(w->x, r);
        pre = ad_add(mm, w->b);
        h = ad_tanh(pre);
        ce = ad_cross_entropy(h, y, AD_REDUCTION_MEAN);
        s = ad_sum(h, NULL, 0, false);
        s2 = ad_mul_scalar(s, 0.01);
        w->loss = ad_add(ce, s2);
        ck_assert_ptr_nonnull(w->loss);
        return 0;
    }
    ck_assert_int_eq(ad_tape_freeze(tape), 0);
    for (int step = 0; step < 2; step++) {
        int changed = ad_tape_replay(tape, 1, &w->x, &w->batch);
        if (changed < 0) {
            expect_oom("ad_tape_replay");
            if (!retry) goto fail;
            ck_assert_int_ge(ad_tape_replay(tape, 1, &w->x, &w->batch), 0);
        }
        MUST(ad_zero_grad(w->w0));
        MUST(ad_zero_grad(w->b));
        if (ad_backward(w->loss, NULL, AD_RETAIN_GRAPH) != 0) {
            expect_oom("ad_backward(loss, RETAIN)");
            if (!retry) goto fail;
            MUST(ad_zero_grad(w->w0));
            MUST(ad_zero_grad(w->b));
            ck_assert_int_eq(ad_backward(w->loss, NULL, AD_RETAIN_GRAPH), 0);
        }
        put(out, ad_item(w->loss));
        put_tensor(out, ad_tensor_grad(w->w0));
        put_tensor(out, ad_tensor_grad(w->b));
    }
    return 0;
fail:
    return 1;
}

/* Sweeps f in stop mode, then in retry mode; same: both must reach the
 * same number of injection points; tmp: in a fresh data_dir. */
static void sweep_modes(const char *name, scenario f, bool same, bool tmp)
{
    if (tmp) ck_assert_int_eq(ot_make_tmpdir(data_dir, sizeof data_dir, "ad_faults"), 0);
    int a = sweep(name, f, false);
    int b = sweep(name, f, true);
    if (same) ck_assert_int_eq(a, b);
    if (tmp) ot_remove_tree(data_dir);
}

START_TEST(sweep_training_step) { sweep_modes("train", scenario_train, true, false); }
END_TEST

START_TEST(sweep_replay) { sweep_modes("replay", scenario_replay, true, false); }
END_TEST

START_TEST(sweep_persistent) { sweep_modes("persistent", scenario_persistent, false, false); }
END_TEST

START_TEST(sweep_scalar) { sweep_modes("scalar", scenario_scalar, false, false); }
END_TEST

START_TEST(sweep_transforms) { sweep_modes("transforms", scenario_transforms, false, false); }
END_TEST

START_TEST(sweep_ffi) { sweep_modes("ffi", scenario_ffi, false, false); }
END_TEST

START_TEST(sweep_nn) { sweep_modes("nn", scenario_nn, true, false); }
END_TEST

START_TEST(sweep_nn_data) { sweep_modes("nn-data", scenario_data, true, true); }
END_TEST

START_TEST(sweep_nn_checkpoint) { sweep_modes("nn-checkpoint", scenario_checkpoint, true, true); }
END_TEST

START_TEST(sweep_graph) { sweep_modes("graph", scenario_graph, true, false); }
END_TEST

START_TEST(sweep_linalg) { sweep_modes("linalg", scenario_linalg, true, false); }
END_TEST

START_TEST(sweep_seq) { sweep_modes("layers", scenario_seq, true, false); }
END_TEST

START_TEST(sweep_fit)
{
    ck_assert_int_eq(ot_make_tmpdir(data_dir, sizeof data_dir, "ad_faults"), 0);
    sweep("fit", scenario_fit, false);
    ot_remove_tree(data_dir);
}
END_TEST

START_TEST(sweep_extras) { sweep_modes("extras", scenario_extras, true, false); }
END_TEST

START_TEST(sweep_misc) { sweep_modes("misc", scenario_misc, true, true); }
END_TEST

START_TEST(sweep_arena_train)
{
    int a = arena_sweep("arena-train", arena_train, make_weights, destroy_weights, false);
    int b = arena_sweep("arena-train", arena_train, make_weights, destroy_weights, true);
    ck_assert_int_eq(a, b);
}
END_TEST

START_TEST(sweep_arena_replay)
{
    int a = arena_sweep("arena-replay", arena_replay, make_weights, destroy_weights, false);
    int b = arena_sweep("arena-replay", arena_replay, make_weights, destroy_weights, true);
    ck_assert_int_eq(a, b);
}
END_TEST

/* ---- size overflow ------------------------------------------------------------------
 * Shapes whose element count overflows int64 (or size_t in bytes), or
 * exceeds the library's limit of 2^58 elements, are refused with an error
 * before anything is allocated: no system allocation and, for results that
 * would go on a tape, no arena space either. */
#define HUGE_ ((int64_t)1 << 32)

/* `check` (ck_assert_error or ck_assert_error_rc of expr) passes, and expr
 * allocated nothing from the system or from tape's arena. */
#define REFUSED_(check, expr, needle, arena_too)                                         \
    do {                                                                                 \
        ad_tape_stats st0_, st1_;                                                        \
        ck_assert_int_eq(ad_tape_get_stats(tape, &st0_), 0);                             \
        size_t calls_ = ad__alloc_calls;                                                 \
        check(expr, needle);                                                             \
        ck_assert_msg(ad__alloc_calls == calls_, "%s allocated %zu times before failing",  \
                      #expr, ad__alloc_calls - calls_);                                  \
        ck_assert_int_eq(ad_tape_get_stats(tape, &st1_), 0);                             \
        ck_assert_msg(!(arena_too) || st1_.arena_used == st0_.arena_used,                \
                      "%s took %zu arena bytes before failing", #expr,                   \
                      st1_.arena_used - st0_.arena_used);                                \
        rows++;                                                                          \
    } while (0)
#define REFUSED(expr, needle) REFUSED_(ck_assert_error, expr, needle, true)
#define REFUSED_RC(expr, needle) REFUSED_(ck_assert_error_rc, expr, needle, true)
/* The nn functions are compositions of ops (ops_nn.h): their first steps
 * may put intermediates (views) on the tape before the op that refuses,
 * which the tape's reset frees; the system is still not asked for memory. */
#define REFUSED_COMPOSED(expr, needle) REFUSED_(ck_assert_error, expr, needle, false)

START_TEST(oversized_shapes_are_refused_before_allocating)
{
    int rows = 0;
    ad_tape *tape = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 1);
    double dummy[1] = {0};
    const int64_t over[2] = {INT64_MAX, 2}, sq[2] = {HUGE_, HUGE_};
    const int64_t limit[2] = {(int64_t)1 << 30, (int64_t)1 << 29}; /* 2^59 > 2^58 */
    const int64_t wide[8] = {256, 256, 256, 256, 256, 256, 256, 256}; /* 2^64 */
    const int64_t neg[2] = {3, -1};
    const int64_t *shapes[4] = {over, sq, limit, wide};
    const int ndims[4] = {2, 2, 2, 8};
    for (int k = 0; k < 4; k++)
        for (int owner = 0; owner < 2; owner++) {
            ad_tape *o = owner ? tape : NULL;
            int nd = ndims[k];
            const int64_t *sh = shapes[k];
            REFUSED(ad_empty(o, AD_FLOAT64, nd, sh), "has too many elements");
            REFUSED(ad_zeros(o, AD_FLOAT32, nd, sh), "has too many elements");
            REFUSED(ad_ones(o, AD_INT64, nd, sh), "has too many elements");
            REFUSED(ad_full(o, AD_FLOAT64, nd, sh, 2.0), "has too many elements");
            REFUSED(ad_from_array(o, AD_FLOAT64, nd, sh, dummy), "has too many elements");
            REFUSED(ad_rand(o, &rng, AD_FLOAT64, nd, sh, 0, 1), "has too many elements");
            REFUSED(ad_randn(o, &rng, AD_FLOAT32, nd, sh, 0, 1), "has too many elements");
        }
    REFUSED(ad_zeros(NULL, AD_FLOAT64, 2, neg), "negative extent -1 in dimension 1");
    REFUSED(ad_eye(NULL, AD_FLOAT64, HUGE_), "has too many elements");
    REFUSED(ad_eye(tape, AD_FLOAT64, -2), "negative extent");
    REFUSED(ad_arange(NULL, AD_FLOAT64, 0, 1e300, 1), "too many elements");
    REFUSED(ad_arange(tape, AD_FLOAT32, 0, 0x1p59, 1), "too many elements");
    REFUSED(ad_linspace(NULL, AD_FLOAT64, 0, 1, INT64_MAX), "has too many elements");
    ck_assert_uint_eq(rng.counter, 0); /* nothing drawn by the refused draws */

    /* Views may describe many elements without storage (stride 0), and ops
     * on them must refuse a result that large. */
    ad_tensor *one1 = ad_ones(tape, AD_FLOAT64, AD_SHAPE(1));
    ad_tensor *one4 = ad_ones(tape, AD_FLOAT64, AD_SHAPE(1, 1, 1, 1));
    ad_tensor *one2 = ad_ones(tape, AD_FLOAT64, AD_SHAPE(1, 1));
    ad_tensor *idx = ad_zeros(tape, AD_INT64, AD_SHAPE(1000));
    ad_tensor *ea = ad_expand(one4, AD_SHAPE((int64_t)1 << 30, 1, 2, 2));
    ad_tensor *eb = ad_expand(one4, AD_SHAPE(1, (int64_t)1 << 30, 2, 2));
    ad_tensor *va = ad_expand(one1, AD_SHAPE((int64_t)1 << 30, 1));
    ad_tensor *vb = ad_expand(one1, AD_SHAPE(1, (int64_t)1 << 30));
    ad_tensor *big = ad_expand(one1, AD_SHAPE((int64_t)1 << 57));
    ad_tensor *wide2 = ad_expand(one2, AD_SHAPE(1, (int64_t)1 << 56));
    ck_assert(ea && eb && va && vb && big && wide2 && idx);
    ad_tensor *eights[8] = {big, big, big, big, big, big, big, big};
    REFUSED(ad_expand(one1, 2, sq), "has too many elements");
    REFUSED(ad_reshape(one1, AD_SHAPE((int64_t)1 << 62, (int64_t)1 << 62, 0)),
            "cannot reshape [1] (1 elements) to [4611686018427387904,4611686018427387904,0]");
    REFUSED(ad_reshape(big, AD_SHAPE(-1, (int64_t)1 << 62, 0)), "cannot reshape");
    REFUSED(ad_matmul(ea, eb), "has too many elements");
    REFUSED(ad_add(va, vb), "has too many elements");
    REFUSED(ad_maximum(va, vb), "has too many elements");
    REFUSED(ad_gt(va, vb), "has too many elements");
    REFUSED(ad_where(va, va, vb), "has too many elements");
    REFUSED(ad_concat(eights, 8, 0), "has too many elements");
    REFUSED(ad_stack(eights, 8, 0), "has too many elements");
    REFUSED(ad_index_select(wide2, 0, idx), "has too many elements");
    REFUSED_COMPOSED(ad_embedding(wide2, idx), "has too many elements");
    /* Window counts: with int padding each count fits, their product
     * need not. */
    REFUSED(ad_unfold(one4, (int[]){1, 1}, NULL, (int[]){INT_MAX, INT_MAX}, NULL),
            "window positions are too many");
    REFUSED(ad_unfold(one4, (int[]){1, 1}, NULL, (int[]){1 << 30, 1 << 30}, NULL),
            "has too many elements");
    REFUSED_COMPOSED(ad_conv2d(one4, one4, NULL, &(ad_conv2d_params){.padding = {INT_MAX, INT_MAX}}),
            "window positions are too many");
    /* max_pool2d reads each window in place (one scan for the index
     * and the value), with no columns: the same geometry is one window holding
     * the one real element, and costs nothing. */
    ad_tensor *mp = ad_max_pool2d(one4, (int[]){INT_MAX, INT_MAX}, (int[]){1, 1},
                                  (int[]){INT_MAX / 2, INT_MAX / 2});
    ck_assert_msg(mp && ad_numel(mp) == 1 && ad_item(mp) == 1, "%s", ad_error());
    REFUSED_COMPOSED(ad_avg_pool2d(one4, (int[]){INT_MAX, INT_MAX}, (int[]){1, 1},
                          (int[]){INT_MAX / 2, INT_MAX / 2}, true),
            "has too many elements");
    ad_tensor *cols = ad_ones(tape, AD_FLOAT64, AD_SHAPE(1, 1, 1));
    REFUSED(ad_fold(cols, (int[]){INT_MAX, INT_MAX}, (int[]){1, 1}, NULL, (int[]){INT_MAX, 0},
                    NULL),
            "window positions are too many");
    /* The scalar API's node limit. */
    ad_tape *fresh = ad_tape_new();
    REFUSED_RC(ad_scalar_reserve(fresh, SIZE_MAX), "scalar tape is full");
    REFUSED_RC(ad_scalar_reserve(fresh, (size_t)1 << 32), "scalar tape is full");
    ad_tape_free(fresh);
    fprintf(stderr, "test_faults: %d oversized requests refused without allocating\n", rows);
    ad_tape_free(tape);
}
END_TEST

/* FAULTS_ONLY=name runs only the test of that name (while working on one
 * scenario; Check itself selects whole test cases only). */
#define ADD_TEST(tc, t)                                                                  \
    do {                                                                                 \
        const char *only_ = getenv("FAULTS_ONLY");                                       \
        if (!only_ || strcmp(only_, #t) == 0) tcase_add_test(tc, t);                     \
    } while (0)

int main(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    ADD_TEST(tc, sweep_training_step);
    ADD_TEST(tc, sweep_replay);
    ADD_TEST(tc, sweep_persistent);
    ADD_TEST(tc, sweep_scalar);
    ADD_TEST(tc, sweep_transforms);
    ADD_TEST(tc, sweep_ffi);
    ADD_TEST(tc, sweep_nn);
    ADD_TEST(tc, sweep_nn_data);
    ADD_TEST(tc, sweep_nn_checkpoint);
    ADD_TEST(tc, sweep_graph);
    ADD_TEST(tc, sweep_linalg);
    ADD_TEST(tc, sweep_seq);
    ADD_TEST(tc, sweep_fit);
    ADD_TEST(tc, sweep_extras);
    ADD_TEST(tc, sweep_misc);
    ADD_TEST(tc, sweep_arena_train);
    ADD_TEST(tc, sweep_arena_replay);
    suite_add_tcase(s, tc);
    TCase *tc2 = tcase_create("overflow");
    ADD_TEST(tc2, oversized_shapes_are_refused_before_allocating);
    suite_add_tcase(s, tc2);
    return ot_run(s);
}

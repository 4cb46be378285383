/* tests/test_ops.c - the table-driven op suite.
 *
 * Walks the op table: an op without a row fails the suite, a row naming no
 * op fails it too.  Each row is then checked three ways:
 *   - ad_gradcheck in float64 (first derivatives against central
 *     differences, every element of every input that requires grad);
 *   - ad_gradgradcheck in float64 (second derivatives: the recorded
 *     backward pass against finite differences of the first);
 *   - the same function in float32 against float64, values and gradients,
 *     so the float32 kernels are exercised too;
 *   - the same function on strided and transposed views of its inputs
 *     against contiguous ones, in both dtypes (layouts, below);
 *   - one tensor passed as two of its inputs against two copies
 *     (aliasing, below). */
#include "optest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const op_row *const sets[] = {rows_pointwise, rows_reduce, rows_shape, rows_linalg,
                                     rows_util,      rows_decomp, rows_loss,  rows_nn,
                                     rows_ffi,       rows_custom, rows_checkpoint};
#define NSETS (sizeof sets / sizeof sets[0])

static int count_rows(void)
{
    int n = 0;
    for (size_t s = 0; s < NSETS; s++)
        for (const op_row *r = sets[s]; r->op; r++) n++;
    return n;
}

static const op_row *row_at(int i)
{
    for (size_t s = 0; s < NSETS; s++)
        for (const op_row *r = sets[s]; r->op; r++)
            if (i-- == 0) return r;
    return NULL;
}

START_TEST(every_op_has_a_row)
{
    char missing[4096] = "";
    size_t nops = ad_op_count();
    ck_assert_uint_gt(nops, 0);
    for (size_t i = 0; i < nops; i++) {
        const char *name = ad_op_name(i);
        bool found = false;
        for (int k = 0; k < count_rows() && !found; k++) found = !strcmp(row_at(k)->op, name);
        if (!found) {
            strncat(missing, " ", sizeof missing - strlen(missing) - 1);
            strncat(missing, name, sizeof missing - strlen(missing) - 1);
        }
    }
    ck_assert_msg(missing[0] == '\0', "ops without a test row:%s", missing);
}
END_TEST

START_TEST(every_row_names_an_op)
{
    for (int k = 0; k < count_rows(); k++) {
        const op_row *r = row_at(k);
        bool found = false;
        for (size_t i = 0; i < ad_op_count() && !found; i++) found = !strcmp(ad_op_name(i), r->op);
        ck_assert_msg(found, "row '%s' (%s) names no op in the op table", r->op, r->what);
    }
}
END_TEST

START_TEST(every_op_has_a_formula)
{
    for (size_t i = 0; i < ad_op_count(); i++) {
        const char *f = ad_op_formula(i);
        ck_assert_msg(f && strchr(f, '='), "op '%s' has no formula", ad_op_name(i));
    }
}
END_TEST

/* Inputs of a row, drawn from a generator seeded by the row's position so
 * every run checks the same points. */
static void make_inputs(const op_row *r, int seed, ad_dtype dtype, ad_tensor **in)
{
    ad_rng rng;
    ad_rng_init(&rng, 1000u + (unsigned)seed);
    for (int i = 0; i < r->nin; i++) {
        const op_input *p = &r->in[i];
        if (p->kind == OT_INDEX) {
            in[i] = ad_empty(NULL, AD_INT64, p->ndim, p->shape);
            ck_assert_msg(in[i] != NULL, "%s", ad_error());
            int64_t *d = ad_data(in[i]);
            for (int64_t k = 0; k < ad_numel(in[i]); k++)
                d[k] = (int64_t)ad_rng_below(&rng, (uint64_t)p->imax);
            continue;
        }
        double lo = p->lo, hi = p->hi;
        if (lo == 0 && hi == 0) lo = -1, hi = 1;
        in[i] = ad_rand(NULL, &rng, dtype, p->ndim, p->shape, lo, hi);
        ck_assert_msg(in[i] != NULL, "%s", ad_error());
        if (p->kind == OT_GRAD) ck_assert_int_eq(ad_set_requires_grad(in[i], true), 0);
    }
}

static void free_inputs(const op_row *r, ad_tensor **in)
{
    for (int i = 0; i < r->nin; i++) ad_tensor_free(in[i]);
}

START_TEST(gradcheck_row)
{
    const op_row *r = row_at(_i);
    ad_tensor *in[4];
    make_inputs(r, _i, AD_FLOAT64, in);
    ad_clear_error();
    int ok = ad_gradcheck(r->f, r->ctx, r->nin, in, NULL);
    ck_assert_msg(ok == 1, "gradcheck of %s (%s): %s", r->op, r->what, ad_error());
    free_inputs(r, in);
}
END_TEST

START_TEST(gradgradcheck_row)
{
    const op_row *r = row_at(_i);
    ad_tensor *in[4];
    make_inputs(r, _i, AD_FLOAT64, in);
    ad_clear_error();
    int ok = ad_gradgradcheck(r->f, r->ctx, r->nin, in, NULL);
    ck_assert_msg(ok == 1, "gradgradcheck of %s (%s): %s", r->op, r->what, ad_error());
    free_inputs(r, in);
}
END_TEST

/* Helpers of the runs below, each on the active tape t. */

/* x[i] = in[i] copied onto t, requiring grad where in[i] does; x[skip] is
 * left alone (-1: none). */
static void copy_inputs(ad_tape *t, const op_row *r, ad_tensor **in, ad_tensor **x, int skip)
{
    for (int i = 0; i < r->nin; i++) {
        if (i == skip) continue;
        x[i] = ad_copy(t, in[i]);
        ck_assert(x[i] != NULL);
        if (ad_requires_grad(in[i])) ad_set_requires_grad(x[i], true);
    }
}

/* y's values in row-major order (malloc'd). */
static double *values_of(const op_row *r, ad_tensor *y)
{
    int64_t n = ad_numel(y);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    ck_assert_msg(ad_to_array(y, v) == 0, "%s (%s): %s", r->op, r->what, ad_error());
    return v;
}

/* `passes` backward passes (with flags) of sum(y * w), with the fixed
 * weights w_k = 0.5 + 0.25 (k mod 3), when y requires grad. */
static void backward_weighted(const op_row *r, ad_tensor *y, unsigned flags, int passes)
{
    if (!ad_requires_grad(y)) return;
    int64_t n = ad_numel(y);
    ad_tensor *w = ad_empty(ad_tape_active(), ad_tensor_dtype(y), ad_ndim(y), ad_shape(y));
    ad_tensor *wf = ad_reshape(w, 1, (int64_t[]){n});
    for (int64_t k = 0; k < n; k++) ad_set(wf, (int64_t[]){k}, 0.5 + 0.25 * (double)(k % 3));
    for (int pass = 0; pass < passes; pass++)
        ck_assert_msg(ad_backward(y, w, flags) == 0, "%s (%s): %s", r->op, r->what, ad_error());
}

/* x's gradient in row-major order (malloc'd), or NULL when it has none. */
static double *grad_of(const ad_tensor *x)
{
    ad_tensor *g = ad_requires_grad(x) ? ad_tensor_grad(x) : NULL;
    if (!g) return NULL;
    double *v = malloc((size_t)(ad_numel(g) ? ad_numel(g) : 1) * sizeof *v);
    ck_assert_int_eq(ad_to_array(g, v), 0);
    return v;
}

/* Runs f on a tape and returns the output's values and, for every input
 * that requires grad, d(sum of output * w)/d(input) with fixed weights w. */
static double *run_once(const op_row *r, ad_tensor **in, int64_t *nout, double **grads)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x[4];
    copy_inputs(t, r, in, x, -1);
    ad_tensor *y = r->f(x, r->nin, r->ctx);
    ck_assert_msg(y != NULL, "%s (%s): %s", r->op, r->what, ad_error());
    *nout = ad_numel(y);
    double *vals = values_of(r, y);
    backward_weighted(r, y, 0, 1);
    for (int i = 0; i < r->nin; i++) grads[i] = grad_of(x[i]);
    ad_tape_activate(prev);
    ad_tape_free(t);
    return vals;
}

START_TEST(float32_matches_float64)
{
    const op_row *r = row_at(_i);
    ad_tensor *in64[4], *in32[4];
    make_inputs(r, _i, AD_FLOAT64, in64);
    for (int i = 0; i < r->nin; i++) {
        if (r->in[i].kind == OT_INDEX) {
            in32[i] = ad_copy(NULL, in64[i]);
            continue;
        }
        in32[i] = ad_empty(NULL, AD_FLOAT32, ad_ndim(in64[i]), ad_shape(in64[i]));
        ad_copy_into(in32[i], in64[i]);
        if (r->in[i].kind == OT_GRAD) ad_set_requires_grad(in32[i], true);
    }
    int64_t n64, n32;
    double *g64[4], *g32[4];
    double *v64 = run_once(r, in64, &n64, g64);
    double *v32 = run_once(r, in32, &n32, g32);
    ck_assert_int_eq(n64, n32);
    /* float32 carries about 7 digits; allow for a few roundings per op. */
    for (int64_t k = 0; k < n64; k++)
        ck_assert_msg(fabs(v64[k] - v32[k]) <= 1e-4 + 1e-4 * fabs(v64[k]),
                      "%s (%s): float32 value %d = %g, float64 %g", r->op, r->what, (int)k,
                      v32[k], v64[k]);
    for (int i = 0; i < r->nin; i++) {
        ck_assert_msg((g64[i] == NULL) == (g32[i] == NULL), "%s: gradient presence differs",
                      r->op);
        if (!g64[i]) continue;
        for (int64_t k = 0; k < ad_numel(in64[i]); k++)
            ck_assert_msg(fabs(g64[i][k] - g32[i][k]) <= 1e-3 + 1e-3 * fabs(g64[i][k]),
                          "%s (%s): float32 grad of input %d [%d] = %g, float64 %g", r->op,
                          r->what, i, (int)k, g32[i][k], g64[i][k]);
        free(g64[i]);
        free(g32[i]);
    }
    free(v64);
    free(v32);
    free_inputs(r, in64);
    free_inputs(r, in32);
}
END_TEST

/* ---- layouts: every op on strided views of its inputs -------------------
 * The kernels take fast paths for contiguous operands and general ones
 * for the rest; a path that misreads a stride gives a plausible wrong
 * answer, not an error.  So every row runs again, in float64 and float32,
 * with each input a view holding the same values in another layout, and
 * its values and the gradients of its inputs must match the contiguous
 * run's:
 *   strided: every element at twice its contiguous offset, plus one
 *     (base [..., 2], the view its last slice along the new axis): all
 *     strides doubled, a non-zero offset, and NaN (float) or an index far
 *     out of range (int64) in the elements between, so that a kernel
 *     reading past the view fails loudly;
 *   reversed: the dimensions stored in reverse order (a permuted view of
 *     a base of the reversed shape); inputs of fewer than two dimensions
 *     are strided instead.
 * Gradients flow back through the view into the base, where the elements
 * outside the view must get exactly zero. */
enum { STRIDED = 1, REVERSED = 2 };

/* The shape of the base that holds an input of `shape` in `layout`. */
static int base_shape(int nd, const int64_t *shape, int layout, int64_t *bshape)
{
    for (int d = 0; d < nd; d++) bshape[d] = shape[layout == STRIDED ? d : nd - 1 - d];
    if (layout == REVERSED) return nd;
    bshape[nd] = 2;
    return nd + 1;
}

/* The view of base that holds the input's values; not recorded when base
 * needs no gradient. */
static ad_tensor *layout_view(ad_tensor *base, int nd, int layout)
{
    if (layout == STRIDED) return ad_squeeze(ad_narrow(base, nd, 1, 1), nd);
    int perm[AD_MAX_DIMS];
    for (int d = 0; d < nd; d++) perm[d] = nd - 1 - d;
    return ad_permute(base, perm);
}

/* As run_once, with each input replaced by a view in `layout`; the
 * gradients are read through the same view of each base's gradient, in
 * the input's own row-major order. */
static double *run_layout(const op_row *r, ad_tensor **in, int layout, int64_t *nout,
                          double **grads)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *base[4], *x[4];
    int lay[4];
    for (int i = 0; i < r->nin; i++) {
        ad_dtype dt = ad_tensor_dtype(in[i]);
        int nd = ad_ndim(in[i]);
        int64_t bshape[AD_MAX_DIMS + 1];
        lay[i] = nd >= 2 ? layout : STRIDED;
        base[i] = ad_empty(t, dt, base_shape(nd, ad_shape(in[i]), lay[i], bshape), bshape);
        ck_assert_msg(base[i] != NULL, "%s", ad_error());
        ck_assert_int_eq(ad_fill(base[i], dt == AD_INT64 ? 1e9 : NAN), 0);
        ad_tensor *v = layout_view(base[i], nd, lay[i]);
        ck_assert_msg(v && ad_copy_into(v, in[i]) == 0, "%s", ad_error());
        if (ad_requires_grad(in[i])) ck_assert_int_eq(ad_set_requires_grad(base[i], true), 0);
        x[i] = layout_view(base[i], nd, lay[i]);
        ck_assert_msg(x[i] != NULL, "%s", ad_error());
    }
    ad_tensor *y = r->f(x, r->nin, r->ctx);
    ck_assert_msg(y != NULL, "%s (%s), layout %d: %s", r->op, r->what, layout, ad_error());
    *nout = ad_numel(y);
    double *vals = values_of(r, y);
    backward_weighted(r, y, 0, 1);
    for (int i = 0; i < r->nin; i++) {
        grads[i] = NULL;
        ad_tensor *g = ad_requires_grad(base[i]) ? ad_tensor_grad(base[i]) : NULL;
        if (!g) continue;
        int64_t n = ad_numel(in[i]), nb = ad_numel(g);
        grads[i] = malloc((size_t)(n ? n : 1) * sizeof(double));
        ad_tensor *gv = layout_view(g, ad_ndim(in[i]), lay[i]);
        ck_assert_msg(gv && ad_to_array(gv, grads[i]) == 0, "%s", ad_error());
        if (lay[i] == STRIDED) { /* the elements between the view's */
            double *all = malloc((size_t)(nb ? nb : 1) * sizeof *all);
            ck_assert_int_eq(ad_to_array(g, all), 0);
            for (int64_t k = 0; k < nb; k += 2)
                ck_assert_msg(all[k] == 0, "%s (%s): gradient %g outside the view of input %d",
                              r->op, r->what, all[k], i);
            free(all);
        }
    }
    ad_tape_activate(prev);
    ad_tape_free(t);
    return vals;
}

/* Equal up to a few roundings of the values' own size: a reduction along
 * a strided axis may add in another order. */
static bool near(double a, double b, ad_dtype dt)
{
    double tol = dt == AD_FLOAT32 ? 1e-5 : 1e-12;
    return a == b || fabs(a - b) <= tol * (1 + fabs(a) + fabs(b)) || (isnan(a) && isnan(b));
}

static void layouts_match(int _i)
{
    const op_row *r = row_at(_i);
    bool two_dims = false;
    for (int i = 0; i < r->nin; i++) two_dims |= r->in[i].ndim >= 2;
    for (int v = 0; v < 4; v++) {
        ad_dtype dt = v % 2 ? AD_FLOAT32 : AD_FLOAT64;
        int layout = v < 2 ? STRIDED : REVERSED;
        if (layout == REVERSED && !two_dims) break; /* it would be strided again */
        const char *how = layout == STRIDED ? "strided" : "reversed";
        const char *dts = dt == AD_FLOAT32 ? "float32" : "float64";
        ad_tensor *in[4];
        make_inputs(r, _i, dt, in);
        int64_t n0, n1;
        double *g0[4], *g1[4];
        double *v0 = run_once(r, in, &n0, g0);
        double *v1 = run_layout(r, in, layout, &n1, g1);
        ck_assert_int_eq(n0, n1);
        for (int64_t k = 0; k < n0; k++)
            ck_assert_msg(near(v0[k], v1[k], dt),
                          "%s (%s), %s, %s inputs: value %d = %.17g, contiguous %.17g", r->op,
                          r->what, dts, how, (int)k, v1[k], v0[k]);
        for (int i = 0; i < r->nin; i++) {
            ck_assert_msg((g0[i] == NULL) == (g1[i] == NULL),
                          "%s (%s): gradient presence differs", r->op, r->what);
            if (!g0[i]) continue;
            for (int64_t k = 0; k < ad_numel(in[i]); k++)
                ck_assert_msg(near(g0[i][k], g1[i][k], dt),
                              "%s (%s), %s, %s inputs: grad of input %d [%d] = %.17g, "
                              "contiguous %.17g",
                              r->op, r->what, dts, how, i, (int)k, g1[i][k], g0[i][k]);
            free(g0[i]);
            free(g1[i]);
        }
        free(v0);
        free(v1);
        free_inputs(r, in);
    }
}

/* ---- aliasing: one tensor passed as two inputs --------------------------
 * f(x, x) must give the values of f(x, x') with x' a copy of x, and the
 * gradient d/dx the sum of the two inputs' gradients (the chain rule over
 * both uses).  The backward pass then adds two contributions into one
 * leaf's buffer, in one op, which is where an accumulation that writes in
 * place over something still to be read would show.  Every row with two
 * float inputs of one shape that both require grad is run so, for each
 * such pair, in float64. */
static double *run_aliased(const op_row *r, ad_tensor **in, int i0, int i1, int64_t *nout,
                           double **grad)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x[4];
    copy_inputs(t, r, in, x, i1);
    x[i1] = x[i0];
    ad_tensor *y = r->f(x, r->nin, r->ctx);
    ck_assert_msg(y != NULL, "%s (%s), aliased: %s", r->op, r->what, ad_error());
    *nout = ad_numel(y);
    double *vals = values_of(r, y);
    backward_weighted(r, y, 0, 1);
    *grad = ad_requires_grad(y) ? grad_of(x[i0]) : NULL;
    ad_tape_activate(prev);
    ad_tape_free(t);
    return vals;
}

static void aliased_inputs_match(int _i)
{
    const op_row *r = row_at(_i);
    for (int i0 = 0; i0 < r->nin; i0++)
        for (int i1 = i0 + 1; i1 < r->nin; i1++) {
            const op_input *a = &r->in[i0], *b = &r->in[i1];
            if (a->kind != OT_GRAD || b->kind != OT_GRAD || a->ndim != b->ndim ||
                memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof *a->shape))
                continue;
            ad_tensor *in[4];
            make_inputs(r, _i, AD_FLOAT64, in);
            /* the second input a copy of the first, drawn in the first's range */
            ck_assert_int_eq(ad_copy_into(in[i1], in[i0]), 0);
            int64_t n0, n1;
            double *g0[4], *g1;
            double *v0 = run_once(r, in, &n0, g0);
            double *v1 = run_aliased(r, in, i0, i1, &n1, &g1);
            ck_assert_int_eq(n0, n1);
            for (int64_t k = 0; k < n0; k++)
                ck_assert_msg(near(v0[k], v1[k], AD_FLOAT64),
                              "%s (%s), inputs %d and %d one tensor: value %d = %.17g, "
                              "two copies %.17g",
                              r->op, r->what, i0, i1, (int)k, v1[k], v0[k]);
            ck_assert_msg((g1 == NULL) == (g0[i0] == NULL && g0[i1] == NULL),
                          "%s (%s): gradient presence differs when aliased", r->op, r->what);
            for (int64_t k = 0; g1 && k < ad_numel(in[i0]); k++) {
                double want = (g0[i0] ? g0[i0][k] : 0) + (g0[i1] ? g0[i1][k] : 0);
                ck_assert_msg(near(want, g1[k], AD_FLOAT64),
                              "%s (%s), inputs %d and %d one tensor: grad [%d] = %.17g, the "
                              "sum of the two copies' %.17g",
                              r->op, r->what, i0, i1, (int)k, g1[k], want);
            }
            for (int i = 0; i < r->nin; i++) free(g0[i]);
            free(g1);
            free(v0);
            free(v1);
            free_inputs(r, in);
        }
}

/* ---- replay: a recording run again on other values ----------------------
 * The trainer records a step once and replays it on every batch
 * (ad_tape_replay), so an op whose replay kept anything of the values it
 * was recorded with (a mask, an index, a cached factor) would train on
 * stale numbers without an error.  Every row is recorded on one draw of
 * its inputs and replayed on another (index inputs redrawn too); values
 * and gradients must equal a fresh recording on the second draw.  Ops
 * that draw random numbers are left out: a replay draws anew, as a fresh
 * recording does, but not the same numbers (test_replay checks them). */
static double *run_replayed(const op_row *r, ad_tensor **first, ad_tensor **second,
                            int64_t *nout, double **grads, int *switches)
{
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x[4];
    copy_inputs(t, r, first, x, -1);
    ad_tensor *y = r->f(x, r->nin, r->ctx);
    ck_assert_msg(y != NULL, "%s (%s): %s", r->op, r->what, ad_error());
    for (size_t k = 0; k < ad_tape_num_nodes(t); k++) {
        ad_node_info info;
        ck_assert_int_eq(ad_tape_node_info(t, k, &info), 0);
        if (!strcmp(info.op, "rand_like") || !strcmp(info.op, "randn_like") ||
            !strcmp(info.op, "dropout_mask")) { /* a stream on the row's stack, too */
            ad_tape_activate(prev);
            ad_tape_free(t);
            return NULL;
        }
    }
    ck_assert_msg(ad_tape_freeze(t) == 0, "%s", ad_error());
    *switches = ad_tape_replay(t, r->nin, x, second);
    ck_assert_msg(*switches >= 0, "%s (%s): replay: %s", r->op, r->what, ad_error());
    *nout = ad_numel(y);
    double *vals = values_of(r, y);
    backward_weighted(r, y, 0, 1);
    for (int i = 0; i < r->nin; i++) grads[i] = grad_of(x[i]);
    ad_tape_activate(prev);
    ad_tape_free(t);
    return vals;
}

static void replay_matches_recording(int _i)
{
    const op_row *r = row_at(_i);
    ad_tensor *first[4], *second[4];
    make_inputs(r, _i, AD_FLOAT64, first);
    make_inputs(r, _i + 7919, AD_FLOAT64, second);
    int64_t n0, n1;
    double *g0[4], *g1[4];
    int switches;
    double *v1 = run_replayed(r, first, second, &n1, g1, &switches);
    if (!v1) { /* draws random numbers */
        free_inputs(r, first);
        free_inputs(r, second);
        return;
    }
    double *v0 = run_once(r, second, &n0, g0);
    ck_assert_int_eq(n0, n1);
    for (int64_t k = 0; k < n0; k++)
        ck_assert_msg(near(v0[k], v1[k], AD_FLOAT64),
                      "%s (%s), replayed: value %d = %.17g, recorded afresh %.17g", r->op,
                      r->what, (int)k, v1[k], v0[k]);
    for (int i = 0; i < r->nin; i++) {
        ck_assert_msg((g0[i] == NULL) == (g1[i] == NULL), "%s (%s): gradient presence differs",
                      r->op, r->what);
        if (!g0[i]) continue;
        for (int64_t k = 0; k < ad_numel(first[i]); k++)
            ck_assert_msg(near(g0[i][k], g1[i][k], AD_FLOAT64),
                          "%s (%s), replayed: grad of input %d [%d] = %.17g, recorded afresh "
                          "%.17g",
                          r->op, r->what, i, (int)k, g1[i][k], g0[i][k]);
        free(g0[i]);
        free(g1[i]);
    }
    free(v0);
    free(v1);
    free_inputs(r, first);
    free_inputs(r, second);
}

/* ---- no recording: the values of an op run with gradients off ----------
 * Under ad_set_grad_enabled(false) (inference, nn_evaluate, the updates)
 * ops record nothing, and some take paths of their own (a pass that saves
 * nothing for backward, kernels that write in place).  Their values must
 * be the recorded run's, in both dtypes. */
static void no_grad_values_match(int _i)
{
    const op_row *r = row_at(_i);
    for (int v = 0; v < 2; v++) {
        ad_dtype dt = v ? AD_FLOAT32 : AD_FLOAT64;
        ad_tensor *in[4];
        make_inputs(r, _i, dt, in);
        int64_t n0;
        double *g0[4];
        double *v0 = run_once(r, in, &n0, g0);
        ad_tape *t = ad_tape_new();
        ad_tape *prev = ad_tape_activate(t);
        bool was = ad_set_grad_enabled(false);
        ad_tensor *x[4];
        copy_inputs(t, r, in, x, -1);
        ad_tensor *y = r->f(x, r->nin, r->ctx);
        ad_set_grad_enabled(was);
        ck_assert_msg(y != NULL, "%s (%s), gradients off: %s", r->op, r->what, ad_error());
        bool an_input = false; /* an identity (sum_to to its own shape) returns it */
        for (int i = 0; i < r->nin; i++) an_input |= y == x[i];
        ck_assert_msg((an_input || !ad_requires_grad(y)) && ad_tape_num_nodes(t) == 0,
                      "%s (%s): recorded %zu nodes with gradients off", r->op, r->what,
                      ad_tape_num_nodes(t));
        ck_assert_int_eq(ad_numel(y), n0);
        double *v1 = values_of(r, y);
        for (int64_t k = 0; k < n0; k++)
            ck_assert_msg(near(v0[k], v1[k], dt),
                          "%s (%s), %s, gradients off: value %d = %.17g, recorded %.17g", r->op,
                          r->what, dt == AD_FLOAT32 ? "float32" : "float64", (int)k, v1[k], v0[k]);
        ad_tape_activate(prev);
        ad_tape_free(t);
        for (int i = 0; i < r->nin; i++) free(g0[i]);
        free(v0);
        free(v1);
        free_inputs(r, in);
    }
}

/* ---- backward again: retained and recorded backward passes --------------
 * With AD_RETAIN_GRAPH a second backward must add the same gradient again
 * (the first may not have overwritten anything it saved: the backward
 * pass re-makes tensors in place where it can, backward.c), and the
 * output's values must survive both passes.  With AD_CREATE_GRAPH the
 * backward pass is recorded with differentiable ops, another code path
 * (recorded sums, no accumulation in place), and must give the same
 * first derivatives. */
static void backward_again_matches(int _i)
{
    const op_row *r = row_at(_i);
    ad_tensor *in[4];
    make_inputs(r, _i, AD_FLOAT64, in);
    int64_t n0;
    double *g0[4];
    double *v0 = run_once(r, in, &n0, g0);
    for (int mode = 0; mode < 2; mode++) {
        unsigned flags = mode ? AD_CREATE_GRAPH : AD_RETAIN_GRAPH;
        const char *how = mode ? "recorded backward" : "second retained backward";
        ad_tape *t = ad_tape_new();
        ad_tape *prev = ad_tape_activate(t);
        ad_tensor *x[4];
        copy_inputs(t, r, in, x, -1);
        ad_tensor *y = r->f(x, r->nin, r->ctx);
        ck_assert_msg(y != NULL, "%s (%s): %s", r->op, r->what, ad_error());
        backward_weighted(r, y, flags, mode ? 1 : 2);
        double *v1 = values_of(r, y);
        for (int64_t k = 0; k < n0; k++)
            ck_assert_msg(v0[k] == v1[k] || (isnan(v0[k]) && isnan(v1[k])),
                          "%s (%s): value %d = %.17g after a %s, %.17g before", r->op, r->what,
                          (int)k, v1[k], how, v0[k]);
        for (int i = 0; i < r->nin; i++) {
            double *gv = grad_of(x[i]);
            ck_assert_msg((gv == NULL) == (g0[i] == NULL),
                          "%s (%s), %s: gradient presence differs", r->op, r->what, how);
            if (!gv) continue;
            for (int64_t k = 0; k < ad_numel(in[i]); k++) {
                double want = mode ? g0[i][k] : 2 * g0[i][k];
                ck_assert_msg(near(want, gv[k], AD_FLOAT64),
                              "%s (%s), %s: grad of input %d [%d] = %.17g, expected %.17g", r->op,
                              r->what, how, i, (int)k, gv[k], want);
            }
            free(gv);
        }
        free(v1);
        ad_tape_activate(prev);
        ad_tape_free(t);
    }
    for (int i = 0; i < r->nin; i++) free(g0[i]);
    free(v0);
    free_inputs(r, in);
}

/* The checks above, one test per row (Check forks once per test). */
START_TEST(row_sweeps)
{
    layouts_match(_i);
    aliased_inputs_match(_i);
    replay_matches_recording(_i);
    no_grad_values_match(_i);
    backward_again_matches(_i);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ops");
    TCase *table = tcase_create("table");
    tcase_add_test(table, every_op_has_a_row);
    tcase_add_test(table, every_row_names_an_op);
    tcase_add_test(table, every_op_has_a_formula);
    suite_add_tcase(s, table);
    int n = count_rows();
    TCase *g1 = tcase_create("gradcheck");
    tcase_add_loop_test(g1, gradcheck_row, 0, n);
    suite_add_tcase(s, g1);
    TCase *g2 = tcase_create("gradgradcheck");
    tcase_add_loop_test(g2, gradgradcheck_row, 0, n);
    suite_add_tcase(s, g2);
    TCase *f32 = tcase_create("float32");
    tcase_add_loop_test(f32, float32_matches_float64, 0, n);
    suite_add_tcase(s, f32);
    TCase *sweeps = tcase_create("sweeps");
    tcase_add_loop_test(sweeps, row_sweeps, 0, n);
    suite_add_tcase(s, sweeps);
    return ot_run(s);
}

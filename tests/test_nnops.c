/* tests/test_nnops.c - values, gradients and errors of the nn ops (unfold,
 * fold, conv2d, pools, dropout, embedding, layer_norm, batch_norm), checked
 * against naive loops and hand computations. */
#include "optest.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const ad_dtype DTYPES[2] = {AD_FLOAT64, AD_FLOAT32};
static double tol_of(ad_dtype d) { return d == AD_FLOAT64 ? 1e-10 : 2e-4; }

/* A tensor on t of dtype dt from doubles. */
static ad_tensor *mk(ad_tape *t, ad_dtype dt, int nd, const int64_t *sh, const double *v)
{
    ad_tensor *a = ot_f64(t, nd, sh, v);
    if (dt == AD_FLOAT64) return a;
    ad_tensor *b = ad_empty(t, dt, nd, sh);
    ck_assert_int_eq(ad_copy_into(b, a), 0);
    if (!t) ad_tensor_free(a);
    return b;
}

/* All values of x, row-major, malloc'd. */
static double *vals(const ad_tensor *x)
{
    ck_assert_msg(x != NULL, "%s", ad_error());
    double *v = malloc((size_t)(ad_numel(x) ? ad_numel(x) : 1) * sizeof *v);
    ck_assert_int_eq(ad_to_array(x, v), 0);
    return v;
}

static ad_tensor *rnd(ad_tape *t, ad_rng *r, ad_dtype dt, int nd, const int64_t *sh, bool grad)
{
    ad_tensor *x = ad_rand(t, r, dt, nd, sh, -1, 1);
    ck_assert(x != NULL);
    if (grad) ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    return x;
}

static void assert_all_close(const double *a, const double *b, int64_t n, double tol,
                             const char *what)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(a[i] - b[i]) <= tol * (1 + fabs(b[i])), "%s [%lld]: %.12g vs %.12g",
                      what, (long long)i, a[i], b[i]);
}

/* ---- conv2d against a direct loop ------------------------------------------------ */
typedef struct cfg {
    int64_t N, C, H, W, O, kh, kw;
    ad_conv2d_params p;
    bool bias, channels_last; /* x given as a permuted (non-contiguous) view */
} cfg;

static const cfg CONVS[] = {
    {2, 3, 7, 6, 4, 3, 3, {{1, 1}, {0, 0}, {1, 1}, 1}, true, false},
    {2, 3, 7, 6, 4, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 1}, false, false},
    {1, 2, 9, 8, 3, 2, 3, {{1, 1}, {0, 0}, {2, 2}, 1}, true, false},
    {2, 4, 6, 6, 6, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 2}, true, false},
    {1, 4, 7, 5, 4, 3, 2, {{2, 1}, {1, 2}, {2, 1}, 4}, true, true}, /* depthwise */
    {1, 3, 5, 5, 2, 1, 1, {{2, 2}, {0, 0}, {0, 0}, 0}, false, true},  /* 1x1, zeros = defaults */
    {3, 8, 20, 19, 8, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, true, false}, /* big enough for threads */
    /* padding taller than the image: the direct kernel's first and last
     * blocks of positions read padding only, some rows of taps none */
    {1, 2, 2, 3, 3, 3, 3, {{1, 1}, {40, 2}, {1, 1}, 1}, true, false},
};

static int64_t out_extent(int64_t n, int64_t k, int s, int p, int d)
{
    s = s ? s : 1, d = d ? d : 1;
    return (n + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* y, and for upstream gradient r: dx, dw, db, all by the definition. */
static void naive_conv(const cfg *c, const double *x, const double *w, const double *b,
                       const double *r, double *y, double *dx, double *dw, double *db)
{
    int s0 = c->p.stride[0] ? c->p.stride[0] : 1, s1 = c->p.stride[1] ? c->p.stride[1] : 1;
    int d0 = c->p.dilation[0] ? c->p.dilation[0] : 1, d1 = c->p.dilation[1] ? c->p.dilation[1] : 1;
    int64_t G = c->p.groups ? c->p.groups : 1, Cg = c->C / G, Og = c->O / G;
    int64_t Ho = out_extent(c->H, c->kh, s0, c->p.padding[0], d0);
    int64_t Wo = out_extent(c->W, c->kw, s1, c->p.padding[1], d1);
    memset(dx, 0, (size_t)(c->N * c->C * c->H * c->W) * sizeof *dx);
    memset(dw, 0, (size_t)(c->O * Cg * c->kh * c->kw) * sizeof *dw);
    memset(db, 0, (size_t)c->O * sizeof *db);
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = 0; o < c->O; o++)
            for (int64_t oh = 0; oh < Ho; oh++)
                for (int64_t ow = 0; ow < Wo; ow++) {
                    int64_t yi = ((n * c->O + o) * Ho + oh) * Wo + ow;
                    double acc = b ? b[o] : 0;
                    db[o] += r[yi];
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t i = 0; i < c->kh; i++)
                            for (int64_t j = 0; j < c->kw; j++) {
                                int64_t ih = oh * s0 - c->p.padding[0] + i * d0;
                                int64_t iw = ow * s1 - c->p.padding[1] + j * d1;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                int64_t xi = ((n * c->C + (o / Og) * Cg + ci) * c->H + ih) * c->W + iw;
                                int64_t wi = ((o * Cg + ci) * c->kh + i) * c->kw + j;
                                acc += w[wi] * x[xi];
                                dx[xi] += r[yi] * w[wi];
                                dw[wi] += r[yi] * x[xi];
                            }
                    y[yi] = acc;
                }
}

START_TEST(conv2d_matches_direct_loop)
{
    const cfg *c = &CONVS[_i / 2];
    ad_dtype dt = DTYPES[_i % 2];
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 11 + (uint64_t)_i);
    int64_t G = c->p.groups ? c->p.groups : 1;
    ad_tensor *xb, *x;
    if (c->channels_last) {
        xb = rnd(t, &rng, dt, 4, (int64_t[]){c->N, c->H, c->W, c->C}, true);
        x = ad_permute(xb, (int[]){0, 3, 1, 2});
        ck_assert(!ad_is_contiguous(x));
    } else {
        x = xb = rnd(t, &rng, dt, 4, (int64_t[]){c->N, c->C, c->H, c->W}, true);
    }
    ad_tensor *w = rnd(t, &rng, dt, 4, (int64_t[]){c->O, c->C / G, c->kh, c->kw}, true);
    ad_tensor *b = c->bias ? rnd(t, &rng, dt, 1, &c->O, true) : NULL;
    ad_tensor *y = ad_conv2d(x, w, b, &c->p);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ad_tensor *r = ad_rand(t, &rng, dt, 4, ad_shape(y), -1, 1);
    ck_assert_int_eq(ad_backward(y, r, 0), 0);

    double *xv = vals(x), *wv = vals(w), *bv = b ? vals(b) : NULL, *rv = vals(r);
    int64_t ny = ad_numel(y);
    double *ye = malloc((size_t)ny * sizeof *ye), *dx = malloc((size_t)ad_numel(x) * sizeof *dx);
    double *dw = malloc((size_t)ad_numel(w) * sizeof *dw), *db = malloc((size_t)c->O * sizeof *db);
    naive_conv(c, xv, wv, bv, rv, ye, dx, dw, db);
    double tol = tol_of(dt) * (dt == AD_FLOAT32 ? 10 : 1);
    ck_assert_int_eq(ad_size(y, 0), c->N);
    ck_assert_int_eq(ad_size(y, 1), c->O);
    double *yv = vals(y);
    assert_all_close(yv, ye, ny, tol, "y");
    ad_tensor *gx = ad_tensor_grad(xb);
    if (c->channels_last) gx = ad_permute(gx, (int[]){0, 3, 1, 2});
    double *gxv = vals(gx), *gwv = vals(ad_tensor_grad(w));
    assert_all_close(gxv, dx, ad_numel(x), tol, "dx");
    assert_all_close(gwv, dw, ad_numel(w), tol, "dw");
    if (b) {
        double *gbv = vals(ad_tensor_grad(b));
        assert_all_close(gbv, db, c->O, tol, "db");
        free(gbv);
    }
    free(xv), free(wv), free(bv), free(rv), free(ye), free(dx), free(dw), free(db), free(yv);
    free(gxv), free(gwv);
    ad_tape_free(t);
}
END_TEST

/* ---- unfold / fold ------------------------------------------------------------------ */

START_TEST(unfold_exact_values)
{
    ad_tape *t = ad_tape_new();
    double v[16];
    for (int i = 0; i < 16; i++) v[i] = i;
    ad_tensor *x = ot_f64(t, AD_SHAPE(1, 1, 4, 4), v);
    ad_tensor *y = ad_unfold(x, (int[]){2, 2}, (int[]){2, 2}, NULL, NULL);
    ck_assert_int_eq(ad_ndim(y), 3);
    ck_assert_int_eq(ad_size(y, 1), 4);
    ck_assert_int_eq(ad_size(y, 2), 4);
    const double want[16] = {0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15};
    for (int i = 0; i < 16; i++) ck_assert_double_eq(ot_at(y, i), want[i]);
    /* padding 1: tap (0,0) of the 3x3 windows over [[1,2],[3,4]] */
    ad_tensor *x2 = ot_f64(t, AD_SHAPE(1, 1, 2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *y2 = ad_unfold(x2, (int[]){2, 2}, NULL, (int[]){1, 1}, NULL);
    ck_assert_int_eq(ad_size(y2, 2), 9);
    const double tap00[9] = {0, 0, 0, 0, 1, 2, 0, 3, 4}, tap11[9] = {1, 2, 0, 3, 4, 0, 0, 0, 0};
    for (int i = 0; i < 9; i++) {
        ck_assert_double_eq(ot_at(y2, i), tap00[i]);
        ck_assert_double_eq(ot_at(y2, 27 + i), tap11[i]);
    }
    /* fold(unfold(ones)) counts the windows covering each position */
    ad_tensor *ones = ad_ones(t, AD_FLOAT32, AD_SHAPE(1, 1, 4, 4));
    ad_tensor *cnt = ad_fold(ad_unfold(ones, (int[]){3, 3}, NULL, NULL, NULL), (int[]){4, 4},
                             (int[]){3, 3}, NULL, NULL, NULL);
    const double cover[16] = {1, 2, 2, 1, 2, 4, 4, 2, 2, 4, 4, 2, 1, 2, 2, 1};
    for (int i = 0; i < 16; i++) ck_assert_double_eq(ot_at(cnt, i), cover[i]);
    ad_tape_free(t);
}
END_TEST

typedef struct wcfg {
    int64_t N, C, H, W;
    int k[2], s[2], p[2], d[2];
} wcfg;
static const wcfg WINS[] = {
    {2, 3, 6, 5, {3, 3}, {1, 1}, {0, 0}, {1, 1}},
    {1, 2, 7, 7, {2, 3}, {2, 1}, {1, 0}, {1, 2}},
    {2, 1, 5, 8, {3, 2}, {3, 2}, {2, 1}, {2, 3}},
    {1, 1, 3, 3, {3, 3}, {1, 1}, {1, 1}, {1, 1}},
    {2, 16, 24, 24, {3, 3}, {1, 1}, {1, 1}, {1, 1}}, /* big enough for threads */
};

/* unfold against its index formula, fold against a scatter loop, and
 * <unfold(x), y> = <x, fold(y)>; x is a non-contiguous (transposed) view. */
START_TEST(unfold_fold_adjoint_and_naive)
{
    const wcfg *c = &WINS[_i / 2];
    ad_dtype dt = DTYPES[_i % 2];
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 5 + (uint64_t)_i);
    ad_tensor *x = ad_transpose(rnd(t, &rng, dt, 4, (int64_t[]){c->N, c->C, c->W, c->H}, false), 2, 3);
    ad_tensor *u = ad_unfold(x, c->k, c->s, c->p, c->d);
    ck_assert_msg(u != NULL, "%s", ad_error());
    int64_t Ho = out_extent(c->H, c->k[0], c->s[0], c->p[0], c->d[0]);
    int64_t Wo = out_extent(c->W, c->k[1], c->s[1], c->p[1], c->d[1]), L = Ho * Wo;
    int64_t K = c->C * c->k[0] * c->k[1];
    ck_assert_int_eq(ad_size(u, 1), K);
    ck_assert_int_eq(ad_size(u, 2), L);
    ad_tensor *yc = rnd(t, &rng, dt, 3, (int64_t[]){c->N, L, K}, false);
    ad_tensor *y = ad_transpose(yc, 1, 2); /* non-contiguous cols */
    ad_tensor *f = ad_fold(y, (int[]){(int)c->H, (int)c->W}, c->k, c->s, c->p, c->d);
    ck_assert_msg(f != NULL, "%s", ad_error());
    double *xv = vals(x), *uv = vals(u), *yv = vals(y), *fv = vals(f);
    int64_t nx = ad_numel(x);
    double *fe = calloc((size_t)nx, sizeof *fe), lhs = 0, rhs = 0;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t ch = 0; ch < c->C; ch++)
            for (int i = 0; i < c->k[0]; i++)
                for (int j = 0; j < c->k[1]; j++)
                    for (int64_t l = 0; l < L; l++) {
                        int64_t ih = (l / Wo) * c->s[0] - c->p[0] + i * c->d[0];
                        int64_t iw = (l % Wo) * c->s[1] - c->p[1] + j * c->d[1];
                        int64_t ui = (n * K + (ch * c->k[0] + i) * c->k[1] + j) * L + l;
                        bool in = ih >= 0 && ih < c->H && iw >= 0 && iw < c->W;
                        int64_t xi = ((n * c->C + ch) * c->H + ih) * c->W + iw;
                        ck_assert_double_eq(uv[ui], in ? xv[xi] : 0.0);
                        if (in) fe[xi] += yv[ui];
                        lhs += uv[ui] * yv[ui];
                    }
    for (int64_t k = 0; k < nx; k++) rhs += xv[k] * fv[k];
    assert_all_close(fv, fe, nx, tol_of(dt), "fold");
    ck_assert_msg(fabs(lhs - rhs) <= 1e-9 * (1 + fabs(lhs)) * (dt == AD_FLOAT32 ? 1e5 : 1),
                  "<unfold x, y> = %.15g, <x, fold y> = %.15g", lhs, rhs);
    free(xv), free(uv), free(yv), free(fv), free(fe);
    ad_tape_free(t);
}
END_TEST

/* ---- pools against naive loops ----------------------------------------------------- */
typedef struct pcfg {
    int64_t N, C, H, W;
    int k[2], s[2], p[2];
} pcfg;
static const pcfg POOLS[] = {
    {2, 2, 6, 6, {2, 2}, {0, 0}, {0, 0}},
    {1, 2, 7, 5, {3, 3}, {2, 2}, {1, 1}},
    {1, 1, 5, 6, {3, 2}, {1, 1}, {1, 1}},
    {2, 3, 9, 8, {4, 3}, {3, 2}, {2, 0}},
    {1, 2, 4, 21, {2, 2}, {0, 0}, {0, 0}}, /* 2x2 windows eight at a time, and an odd column */
};

START_TEST(pools_match_naive)
{
    const pcfg *c = &POOLS[_i / 2];
    ad_dtype dt = DTYPES[_i % 2];
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 99 + (uint64_t)_i);
    ad_tensor *x = rnd(t, &rng, dt, 4, (int64_t[]){c->N, c->C, c->H, c->W}, true);
    int s0 = c->s[0] ? c->s[0] : c->k[0], s1 = c->s[1] ? c->s[1] : c->k[1];
    int64_t Ho = out_extent(c->H, c->k[0], s0, c->p[0], 1), Wo = out_extent(c->W, c->k[1], s1, c->p[1], 1);
    ad_tensor *ym = ad_max_pool2d(x, c->k, c->s, c->p);
    ad_tensor *ya = ad_avg_pool2d(x, c->k, c->s, c->p, true);
    ad_tensor *yx = ad_avg_pool2d(x, c->k, c->s, c->p, false);
    ck_assert_msg(ym && ya && yx, "%s", ad_error());
    ck_assert_int_eq(ad_size(ym, 2), Ho);
    ck_assert_int_eq(ad_size(ym, 3), Wo);
    double *xv = vals(x), *mv = vals(ym), *av = vals(ya), *ev = vals(yx);
    int64_t nx = ad_numel(x);
    double *gm = calloc((size_t)nx, sizeof *gm), *ga = calloc((size_t)nx, sizeof *ga);
    for (int64_t nc = 0; nc < c->N * c->C; nc++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                double mx = -INFINITY, sum = 0;
                int64_t arg = -1, cnt = 0;
                for (int i = 0; i < c->k[0]; i++)
                    for (int j = 0; j < c->k[1]; j++) {
                        int64_t ih = oh * s0 - c->p[0] + i, iw = ow * s1 - c->p[1] + j;
                        if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                        int64_t xi = (nc * c->H + ih) * c->W + iw;
                        if (xv[xi] > mx) mx = xv[xi], arg = xi;
                        sum += xv[xi], cnt++;
                    }
                int64_t yi = (nc * Ho + oh) * Wo + ow;
                double kk = c->k[0] * c->k[1];
                ck_assert_double_eq(mv[yi], mx);
                ck_assert_close(av[yi], sum / kk, tol_of(dt));
                ck_assert_close(ev[yi], sum / (double)cnt, tol_of(dt));
                gm[arg] += 1; /* d sum(y) / dx */
                for (int i = 0; i < c->k[0]; i++)
                    for (int j = 0; j < c->k[1]; j++) {
                        int64_t ih = oh * s0 - c->p[0] + i, iw = ow * s1 - c->p[1] + j;
                        if (ih >= 0 && ih < c->H && iw >= 0 && iw < c->W)
                            ga[(nc * c->H + ih) * c->W + iw] += 1 / kk;
                    }
            }
    /* x with strides of its own (the scan that reads any strides): the
     * same maxima */
    ad_tensor *xs = ad_transpose(ad_contiguous(ad_transpose(x, 2, 3)), 2, 3);
    ck_assert(xs && !ad_is_contiguous(xs));
    double *sv = vals(ad_max_pool2d(xs, c->k, c->s, c->p));
    for (int64_t i = 0; i < ad_numel(ym); i++) ck_assert_double_eq(sv[i], mv[i]);
    free(sv);
    ck_assert_int_eq(ad_backward(ad_sum(ym, NULL, 0, false), NULL, 0), 0);
    double *g = vals(ad_tensor_grad(x));
    assert_all_close(g, gm, nx, tol_of(dt), "max_pool2d grad");
    free(g);
    ad_zero_grad(x);
    ck_assert_int_eq(ad_backward(ad_sum(ya, NULL, 0, false), NULL, 0), 0);
    g = vals(ad_tensor_grad(x));
    assert_all_close(g, ga, nx, tol_of(dt), "avg_pool2d grad");
    free(g), free(xv), free(mv), free(av), free(ev), free(gm), free(ga);
    ad_tape_free(t);
}
END_TEST

/* Gradient of sum(max_pool2d(x)) for x [1,1,h,w] given row-major, in dtype dt. */
static void pool_grad(ad_dtype dt, int64_t h, int64_t w, const double *xv, const int k[2],
                      const int st[2], const int pad[2], double *y, double *g)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = mk(t, dt, 4, (int64_t[]){1, 1, h, w}, xv);
    ad_set_requires_grad(x, true);
    ad_tensor *yy = ad_max_pool2d(x, k, st, pad);
    ck_assert_msg(yy != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_to_array(yy, y), 0);
    ck_assert_int_eq(ad_backward(ad_sum(yy, NULL, 0, false), NULL, 0), 0);
    ck_assert_int_eq(ad_to_array(ad_tensor_grad(x), g), 0);
    ad_tape_free(t);
}

START_TEST(max_pool_ties_go_to_the_first_maximum)
{
    ad_dtype dt = DTYPES[_i];
    const int k2[2] = {2, 2}, s1[2] = {1, 1}, p1[2] = {1, 1};
    double y[9], g[9];
    /* A 2x2 window of equal values: all of g to the first (top left), as
     * PyTorch; the split rule gave 1/4 each. */
    pool_grad(dt, 2, 2, (double[]){1, 1, 1, 1}, k2, NULL, NULL, y, g);
    ck_assert(y[0] == 1 && g[0] == 1 && g[1] == 0 && g[2] == 0 && g[3] == 0);
    /* The first maximum in row-major order need not be the window's first
     * element: [1 5; 5 2] -> the 5 in the top row. */
    pool_grad(dt, 2, 2, (double[]){1, 5, 5, 2}, k2, NULL, NULL, y, g);
    ck_assert(y[0] == 5 && g[0] == 0 && g[1] == 1 && g[2] == 0 && g[3] == 0);
    /* Overlapping windows over a flat 3x3 (stride 1): each window chooses
     * its own top-left element, so four different elements get 1 each. */
    pool_grad(dt, 3, 3, (double[]){2, 2, 2, 2, 2, 2, 2, 2, 2}, k2, s1, NULL, y, g);
    const double want_flat[9] = {1, 1, 0, 1, 1, 0, 0, 0, 0};
    for (int i = 0; i < 9; i++) ck_assert_msg(g[i] == want_flat[i], "flat: g[%d] = %g", i, g[i]);
    /* The centre of a 3x3 is the strict maximum of all four windows and
     * collects all four gradients. */
    pool_grad(dt, 3, 3, (double[]){0, 1, 0, 2, 9, 3, 0, 4, 0}, k2, s1, NULL, y, g);
    for (int i = 0; i < 4; i++) ck_assert(y[i] == 9);
    for (int i = 0; i < 9; i++) ck_assert(g[i] == (i == 4 ? 4 : 0));
    /* Padding is -inf, never the max, even when every input is negative;
     * with ties the first real element of each window is chosen: windows
     * (oh, ow) of a padded 2x2 start at real element (max(oh-1,0),
     * max(ow-1,0)), so (0,0) is chosen by 4 windows, (0,1) and (1,0) by 2,
     * (1,1) by 1. */
    pool_grad(dt, 2, 2, (double[]){-5, -6, -7, -8}, k2, s1, p1, y, g);
    const double want_y[9] = {-5, -5, -6, -5, -5, -6, -7, -7, -8};
    for (int i = 0; i < 9; i++) ck_assert(y[i] == want_y[i]);
    pool_grad(dt, 2, 2, (double[]){-1, -1, -1, -1}, k2, s1, p1, y, g);
    ck_assert(g[0] == 4 && g[1] == 2 && g[2] == 2 && g[3] == 1);
    /* A NaN is the largest: it propagates, and the first NaN gets g. */
    pool_grad(dt, 2, 2, (double[]){1, NAN, 3, NAN}, k2, NULL, NULL, y, g);
    ck_assert(isnan(y[0]) && g[0] == 0 && g[1] == 1 && g[2] == 0 && g[3] == 0);
}
END_TEST

/* Derivatives of every order follow the first maximum: f = max^3 over a
 * window [3 3; 1 0] has df/dx = 3 y^2 = 27, then 6 y = 18, then 6, all at
 * element 0 and 0 elsewhere. */
START_TEST(max_pool_higher_derivatives_follow_the_first_maximum)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, AD_SHAPE(1, 1, 2, 2), (double[]){3, 3, 1, 0});
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_max_pool2d(x, (int[]){2, 2}, NULL, NULL);
    ad_tensor *f = ad_sum(ad_pow_scalar(y, 3), NULL, 0, false);
    const double want[3] = {27, 18, 6};
    for (int order = 0; order < 3; order++) {
        ad_tensor *g;
        ck_assert_int_eq(ad_gradients(f, NULL, 1, &x, &g, AD_CREATE_GRAPH | AD_RETAIN_GRAPH), 0);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(ot_at(g, i) == (i == 0 ? want[order] : 0), "order %d: g[%d] = %g",
                          order + 1, i, ot_at(g, i));
        f = ad_sum(g, NULL, 0, false); /* the next derivative of the sum */
    }
    ad_tape_free(t);
}
END_TEST

/* The 2x2 stride-2 window over rows wide enough for its vectorised path
 * (eight outputs at a time, then the rest one by one): values from
 * {-1, 0, 1, 2, NaN}, so most windows hold ties or NaNs, against the
 * row-major scan (strictly larger, or the first NaN) element by element
 * through the gradient of sum(y), which lands on the chosen element. */
START_TEST(max_pool_2x2_wide_rows_choose_the_first_maximum)
{
    ad_dtype dt = DTYPES[_i];
    const int64_t N = 2, C = 3, H = 6, W = 38, Ho = H / 2, Wo = W / 2; /* 2 vectors + 3 */
    const int64_t n = N * C * H * W;
    const double pick[5] = {-1, 0, 1, 2, NAN};
    double *xv = malloc((size_t)n * sizeof *xv), *want = calloc((size_t)n, sizeof *want);
    ad_rng rng;
    ad_rng_init(&rng, 7 + (uint64_t)_i);
    for (int64_t i = 0; i < n; i++) xv[i] = pick[ad_rng_below(&rng, 5)];
    for (int64_t p = 0; p < N * C; p++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                int64_t best = (p * H + 2 * oh) * W + 2 * ow;
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) {
                        int64_t q = (p * H + 2 * oh + i) * W + 2 * ow + j;
                        if (xv[q] > xv[best] || (isnan(xv[q]) && !isnan(xv[best]))) best = q;
                    }
                want[best] += 1;
            }
    ad_tape *t = ad_tape_new();
    ad_tensor *x = mk(t, dt, 4, (int64_t[]){N, C, H, W}, xv);
    ad_set_requires_grad(x, true);
    ad_tensor *y = ad_max_pool2d(x, (int[]){2, 2}, NULL, NULL);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    double *g = vals(ad_tensor_grad(x));
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(g[i] == want[i], "g[%lld] = %g, want %g", (long long)i, g[i], want[i]);
    free(g), free(xv), free(want);
    ad_tape_free(t);
}
END_TEST

/* A replayed tape finds the first maximum again from the new values. */
START_TEST(max_pool_replay_moves_the_chosen_element)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = ot_f64(t, AD_SHAPE(1, 1, 2, 2), (double[]){1, 5, 5, 2});
    ad_set_requires_grad(x, true);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *y = ad_sum(ad_mul_scalar(ad_max_pool2d(x, (int[]){2, 2}, NULL, NULL), 2.0), NULL,
                          0, false);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    const double inputs[3][4] = {{1, 5, 5, 2}, {7, 7, 0, 0}, {0, 1, 9, 9}};
    const int chosen[3] = {1, 0, 2};
    for (int r = 0; r < 3; r++) {
        ad_tensor *x2 = ot_f64(NULL, AD_SHAPE(1, 1, 2, 2), inputs[r]);
        ck_assert_int_ge(ad_tape_replay(t, 1, &x, &x2), 0);
        ad_tensor_free(x2);
        ck_assert_double_eq(ad_item(y), 2 * inputs[r][chosen[r]]);
        ad_zero_grad(x);
        ck_assert_int_eq(ad_backward(y, NULL, 0), 0);
        for (int i = 0; i < 4; i++)
            ck_assert_msg(ot_at(ad_tensor_grad(x), i) == (i == chosen[r] ? 2 : 0),
                          "replay %d: g[%d] = %g", r, i, ot_at(ad_tensor_grad(x), i));
    }
    ad_tape_free(t);
}
END_TEST

/* ---- dropout ------------------------------------------------------------------------- */
START_TEST(dropout_statistics_and_reproducibility)
{
    ad_dtype dt = DTYPES[_i];
    ad_tape *t = ad_tape_new();
    const int64_t n = 20000;
    const double p = 0.3;
    ad_tensor *x = ad_ones(t, dt, 1, &n);
    ad_set_requires_grad(x, true);
    ad_rng r1, r2;
    ad_rng_init(&r1, 42);
    ad_rng_init(&r2, 42);
    ad_tensor *y = ad_dropout(x, p, true, &r1);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_uint_eq(r1.counter, (uint64_t)n);
    double *yv = vals(y);
    int64_t zeros = 0;
    double sum = 0, kept = dt == AD_FLOAT64 ? 1 / (1 - p) : (double)(float)(1 / (1 - p));
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(yv[i] == 0 || yv[i] == kept, "y[%lld] = %g", (long long)i, yv[i]);
        zeros += yv[i] == 0;
        sum += yv[i];
    }
    /* Binomial(n, p): sd = sqrt(n p (1-p)) ~ 65; allow 5 sd. */
    ck_assert_msg(llabs(zeros - (int64_t)(n * p)) < 325, "%lld zeros of %lld", (long long)zeros,
                  (long long)n);
    ck_assert_close(sum / (double)n, 1.0, 0.03);
    /* gradient = mask / (1 - p) = y for x = 1 */
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    double *g = vals(ad_tensor_grad(x));
    for (int64_t i = 0; i < n; i++) ck_assert_double_eq(g[i], yv[i]);
    /* same seed and counter: same mask; next draw: another mask */
    double *y2 = vals(ad_dropout(x, p, true, &r2)), *y3 = vals(ad_dropout(x, p, true, &r2));
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_double_eq(y2[i], yv[i]);
        same += y3[i] == yv[i];
    }
    ck_assert_int_lt(same, n - 1000);
    /* eval and p = 0 are the identity (x itself); p = 1 gives zeros */
    ck_assert_ptr_eq(ad_dropout(x, p, false, NULL), x);
    ck_assert_ptr_eq(ad_dropout(x, 0.0, true, NULL), x);
    ad_tensor *z = ad_dropout(x, 1.0, true, NULL);
    ck_assert_double_eq(ot_at(z, 0), 0);
    ck_assert_double_eq(ot_at(z, n - 1), 0);
    free(yv), free(g), free(y2), free(y3);
    ad_tape_free(t);
}
END_TEST

/* ---- embedding ------------------------------------------------------------------------- */
START_TEST(embedding_values_and_grads)
{
    ad_tape *t = ad_tape_new();
    double wv[12];
    for (int i = 0; i < 12; i++) wv[i] = 10 * (i / 3) + i % 3; /* row r: 10r, 10r+1, 10r+2 */
    ad_tensor *w = ot_f64(t, AD_SHAPE(4, 3), wv);
    ad_set_requires_grad(w, true);
    ad_tensor *idx = ot_index(t, AD_SHAPE(2, 2), (int64_t[]){1, 3, 1, 0});
    ad_tensor *y = ad_embedding(w, idx);
    ck_assert_int_eq(ad_ndim(y), 3);
    ck_assert_int_eq(ad_size(y, 2), 3);
    const int rows[4] = {1, 3, 1, 0};
    for (int k = 0; k < 4; k++)
        for (int d = 0; d < 3; d++) ck_assert_double_eq(ot_at(y, k * 3 + d), 10 * rows[k] + d);
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    const double count[4] = {1, 2, 0, 1}; /* row 1 looked up twice */
    for (int i = 0; i < 12; i++) ck_assert_double_eq(ot_at(ad_tensor_grad(w), i), count[i / 3]);
    /* transposed (non-contiguous) indices, and a 0-d index */
    ad_tensor *yt = ad_embedding(w, ad_transpose(idx, 0, 1));
    const int rt[4] = {1, 1, 3, 0};
    for (int k = 0; k < 4; k++) ck_assert_double_eq(ot_at(yt, k * 3), 10 * rt[k]);
    ad_tensor *y0 = ad_embedding(w, ot_index(t, 0, NULL, (int64_t[]){2}));
    ck_assert_int_eq(ad_ndim(y0), 1);
    ck_assert_double_eq(ot_at(y0, 1), 21);
    ad_tape_free(t);
}
END_TEST

/* ---- layer_norm ------------------------------------------------------------------------ */
START_TEST(layer_norm_normalises)
{
    ad_dtype dt = DTYPES[_i];
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 3);
    ad_tensor *x = rnd(t, &rng, dt, 3, (int64_t[]){2, 3, 4}, true);
    double *xv = vals(x);
    for (int nd = 1; nd <= 2; nd++) {
        ad_tensor *y = ad_layer_norm(x, nd, NULL, NULL, 0.0);
        double *yv = vals(y);
        int64_t m = nd == 1 ? 4 : 12;
        for (int64_t r = 0; r < 24 / m; r++) {
            double s = 0, ss = 0;
            for (int64_t k = 0; k < m; k++) s += yv[r * m + k];
            for (int64_t k = 0; k < m; k++) ss += (yv[r * m + k] - s / m) * (yv[r * m + k] - s / m);
            ck_assert_close(s / m, 0, tol_of(dt));
            ck_assert_close(ss / m, 1, 10 * tol_of(dt)); /* biased variance 1 */
        }
        free(yv);
    }
    /* affine, by hand: y = (x - mean) / sqrt(var + eps) w + b over the last dim */
    double wv[4] = {1, -2, 0.5, 3}, bv[4] = {0.1, 0.2, -0.3, 4};
    ad_tensor *w = mk(t, dt, 1, (int64_t[]){4}, wv), *b = mk(t, dt, 1, (int64_t[]){4}, bv);
    ad_tensor *y = ad_layer_norm(x, 1, w, b, 1e-3);
    double *yv = vals(y);
    for (int r = 0; r < 6; r++) {
        double mu = 0, var = 0;
        for (int k = 0; k < 4; k++) mu += xv[r * 4 + k] / 4;
        for (int k = 0; k < 4; k++) var += (xv[r * 4 + k] - mu) * (xv[r * 4 + k] - mu) / 4;
        for (int k = 0; k < 4; k++)
            ck_assert_close(yv[r * 4 + k], (xv[r * 4 + k] - mu) / sqrt(var + 1e-3) * wv[k] + bv[k],
                            10 * tol_of(dt));
    }
    /* sum of a normalised row is constant (0): its gradient vanishes */
    ck_assert_int_eq(ad_backward(ad_sum(ad_layer_norm(x, 2, NULL, NULL, 1e-5), NULL, 0, false),
                                 NULL, 0), 0);
    double *g = vals(ad_tensor_grad(x));
    for (int i = 0; i < 24; i++) ck_assert_close(g[i], 0, 10 * tol_of(dt));
    free(xv), free(yv), free(g);
    ad_tape_free(t);
}
END_TEST

/* ---- batch_norm ------------------------------------------------------------------------- */
START_TEST(batch_norm_train_eval_and_running_stats)
{
    ad_dtype dt = DTYPES[_i];
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 8);
    /* [N, C, H, W] = [2, 3, 2, 2]: M = 8 values per channel */
    ad_tensor *x = rnd(t, &rng, dt, 4, (int64_t[]){2, 3, 2, 2}, true);
    double *xv = vals(x), mean[3] = {0}, var[3] = {0};
    for (int i = 0; i < 24; i++) mean[(i / 4) % 3] += xv[i] / 8;
    for (int i = 0; i < 24; i++) var[(i / 4) % 3] += pow(xv[i] - mean[(i / 4) % 3], 2) / 8;
    double rm0[3] = {0.5, -1, 2}, rv0[3] = {1, 2, 3}, wv[3] = {2, 1, -1}, bv[3] = {0, 1, 2};
    ad_tensor *rm = mk(NULL, dt, 1, (int64_t[]){3}, rm0); /* persistent buffers */
    ad_tensor *rv = mk(NULL, dt, 1, (int64_t[]){3}, rv0);
    ad_tensor *w = mk(t, dt, 1, (int64_t[]){3}, wv), *b = mk(t, dt, 1, (int64_t[]){3}, bv);
    ad_set_requires_grad(w, true);
    ad_set_requires_grad(b, true);
    ad_tensor *y = ad_batch_norm(x, rm, rv, w, b, true, 0.1, 0.0);
    ck_assert_msg(y != NULL, "%s", ad_error());
    double *yv = vals(y);
    for (int i = 0; i < 24; i++) {
        int c = (i / 4) % 3;
        ck_assert_close(yv[i], (xv[i] - mean[c]) / sqrt(var[c]) * wv[c] + bv[c], 10 * tol_of(dt));
    }
    for (int c = 0; c < 3; c++) {
        ck_assert_close(ot_at(rm, c), 0.9 * rm0[c] + 0.1 * mean[c], tol_of(dt));
        ck_assert_close(ot_at(rv, c), 0.9 * rv0[c] + 0.1 * var[c] * 8 / 7, tol_of(dt));
    }
    /* the gradient of sum(y) w.r.t. x is 0 (each channel's sum is constant);
     * w.r.t. bias it is M = 8, w.r.t. weight sum(xhat) = 0 */
    ck_assert_int_eq(ad_backward(ad_sum(y, NULL, 0, false), NULL, 0), 0);
    for (int i = 0; i < 24; i++) ck_assert_close(ot_at(ad_tensor_grad(x), i), 0, 20 * tol_of(dt));
    for (int c = 0; c < 3; c++) {
        ck_assert_close(ot_at(ad_tensor_grad(b), c), 8, tol_of(dt));
        ck_assert_close(ot_at(ad_tensor_grad(w), c), 0, 20 * tol_of(dt));
    }
    /* eval uses the (updated) running statistics, and updates nothing */
    double rm1[3], rv1[3];
    for (int c = 0; c < 3; c++) rm1[c] = ot_at(rm, c), rv1[c] = ot_at(rv, c);
    ad_tensor *ye = ad_batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5);
    double *ev = vals(ye);
    for (int i = 0; i < 24; i++) {
        int c = (i / 4) % 3;
        ck_assert_close(ev[i], (xv[i] - rm1[c]) / sqrt(rv1[c] + 1e-5) * wv[c] + bv[c],
                        10 * tol_of(dt));
    }
    ck_assert(fabs(ev[0] - yv[0]) > 1e-3); /* train and eval differ */
    for (int c = 0; c < 3; c++) ck_assert_double_eq(ot_at(rm, c), rm1[c]);
    /* [N, C] without running stats or affine: per-column standardisation */
    ad_tensor *x2 = ot_f64(t, AD_SHAPE(3, 2), (double[]){1, 10, 2, 20, 3, 60});
    ad_tensor *y2 = ad_batch_norm(x2, NULL, NULL, NULL, NULL, true, 0.1, 0.0);
    ck_assert_close(ot_at(y2, 0), -sqrt(1.5), 1e-12);
    ck_assert_close(ot_at(y2, 2), 0, 1e-12);
    free(xv), free(yv), free(ev);
    ad_tensor_free(rm), ad_tensor_free(rv);
    ad_tape_free(t);
}
END_TEST

/* ---- replay and persistent results ------------------------------------------------------ */
static ad_tensor *net(ad_tensor *x, ad_tensor *w)
{
    ad_tensor *h = ad_relu(ad_conv2d(x, w, NULL, &(ad_conv2d_params){{1, 1}, {1, 1}, {0, 0}, 0}));
    ad_tensor *f = ad_fold(ad_unfold(h, (int[]){2, 2}, NULL, NULL, NULL), (int[]){4, 4},
                           (int[]){2, 2}, NULL, NULL, NULL);
    return ad_sum(ad_mul(ad_max_pool2d(f, (int[]){2, 2}, NULL, NULL),
                         ad_avg_pool2d(h, (int[]){2, 2}, NULL, NULL, true)), NULL, 0, false);
}

START_TEST(replay_recomputes_unfold_and_fold)
{
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 21);
    ad_tensor *w = ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(2, 1, 3, 3), -1, 1);
    ad_set_requires_grad(w, true);
    ad_tensor *x = ad_rand(t, &rng, AD_FLOAT64, AD_SHAPE(1, 1, 4, 4), -1, 1);
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *y = net(x, w);
    ck_assert_msg(y != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_tape_freeze(t), 0);
    ad_tensor *x2 = ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(1, 1, 4, 4), -1, 1);
    ck_assert_int_ge(ad_tape_replay(t, 1, &x, &x2), 0);
    ck_assert_int_eq(ad_backward(y, NULL, AD_RETAIN_GRAPH), 0);
    double replayed = ad_item(y), *g1 = vals(ad_tensor_grad(w));
    /* the same computation recorded afresh */
    ad_tape *t2 = ad_tape_new();
    ad_tape_activate(t2);
    ad_zero_grad(w);
    ad_tensor *y2 = net(x2, w);
    ck_assert_double_eq_tol(ad_item(y2), replayed, 1e-12);
    ck_assert_int_eq(ad_backward(y2, NULL, 0), 0);
    double *g2 = vals(ad_tensor_grad(w));
    assert_all_close(g1, g2, 18, 1e-12, "grad after replay");
    ad_tape_activate(NULL);
    free(g1), free(g2);
    ad_tape_free(t2);
    ad_tape_free(t);
    ad_tensor_free(w), ad_tensor_free(x2);
}
END_TEST

START_TEST(persistent_inputs_give_persistent_results)
{
    /* No tape anywhere: results are persistent, intermediates are freed
     * (the leak checker would see them otherwise). */
    ck_assert_ptr_null(ad_tape_active());
    ad_rng rng;
    ad_rng_init(&rng, 4);
    ad_tensor *x = ad_rand(NULL, &rng, AD_FLOAT32, AD_SHAPE(2, 2, 5, 5), -1, 1);
    ad_tensor *w = ad_rand(NULL, &rng, AD_FLOAT32, AD_SHAPE(3, 2, 3, 3), -1, 1);
    ad_tensor *rm = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(2)), *rv = ad_ones(NULL, AD_FLOAT32, AD_SHAPE(2));
    ad_tensor *emb = ad_rand(NULL, &rng, AD_FLOAT32, AD_SHAPE(4, 2), -1, 1);
    ad_tensor *idx = ad_from_array(NULL, AD_INT64, AD_SHAPE(3), (int64_t[]){3, 0, 3});
    ad_tensor *u = ad_unfold(x, (int[]){2, 2}, NULL, NULL, NULL);
    ad_tensor *r[9] = {
        u,
        ad_conv2d(x, w, NULL, NULL),
        ad_max_pool2d(x, (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}),
        ad_avg_pool2d(x, (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}, false),
        ad_layer_norm(x, 2, NULL, NULL, 1e-5),
        ad_batch_norm(x, rm, rv, NULL, NULL, true, 0.5, 1e-5),
        ad_embedding(emb, idx),
        ad_dropout(x, 0.5, true, &rng),
        ad_fold(u, (int[]){5, 5}, (int[]){2, 2}, NULL, NULL, NULL),
    };
    for (int i = 8; i >= 0; i--) {
        ck_assert_msg(r[i] != NULL, "result %d: %s", i, ad_error());
        ck_assert_ptr_null(ad_tensor_tape(r[i]));
        ck_assert_int_eq(ad_tensor_free(r[i]), 0);
    }
    ck_assert(ot_at(rm, 0) != 0); /* the running mean moved */
    ad_tensor_free(x), ad_tensor_free(w), ad_tensor_free(rm), ad_tensor_free(rv);
    ad_tensor_free(emb), ad_tensor_free(idx);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------------- */
START_TEST(bad_inputs)
{
    ad_tape *t = ad_tape_new(), *t2 = ad_tape_new();
    ad_tensor *x = ad_zeros(t, AD_FLOAT64, AD_SHAPE(2, 3, 8, 8));
    ad_tensor *w = ad_zeros(t, AD_FLOAT64, AD_SHAPE(6, 4, 3, 3));
    ad_tensor *w3 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(6, 3, 3, 3));
    ad_tensor *x3 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(3, 8, 8));
    ad_tensor *xi = ad_zeros(t, AD_INT64, AD_SHAPE(2, 3, 8, 8));
    ad_tensor *xf = ad_zeros(t, AD_FLOAT32, AD_SHAPE(2, 3, 8, 8));
    ad_tensor *small = ad_zeros(t, AD_FLOAT64, AD_SHAPE(1, 1, 2, 2));
    int k2[2] = {2, 2}, k5[2] = {5, 5};
    /* unfold */
    ck_assert_error(ad_unfold(NULL, k2, NULL, NULL, NULL), "ad_unfold: argument 'x' is NULL");
    ck_assert_error(ad_unfold(xi, k2, NULL, NULL, NULL), "ad_unfold");
    ck_assert_error(ad_unfold(x3, k2, NULL, NULL, NULL), "expected a 4-D input [N, C, H, W], got x [3,8,8]");
    ck_assert_error(ad_unfold(x, NULL, NULL, NULL, NULL), "ad_unfold: kernel is NULL");
    ck_assert_error(ad_unfold(x, (int[]){0, 3}, NULL, NULL, NULL), "kernel 0x3: must be >= 1");
    ck_assert_error(ad_unfold(x, k2, (int[]){1, 0}, NULL, NULL), "stride 1x0: must be >= 1");
    ck_assert_error(ad_unfold(x, k2, NULL, (int[]){-1, 0}, NULL), "padding -1x0: must be >= 0");
    ck_assert_error(ad_unfold(x, k2, NULL, NULL, (int[]){0, 1}), "dilation 0x1: must be >= 1");
    ck_assert_error(ad_unfold(small, k5, NULL, (int[]){1, 1}, NULL),
                    "ad_unfold: kernel 5x5 (dilation 1x1, so 5x5 input positions) does not fit "
                    "in the padded input 4x4: x [1,1,2,2], padding 1x1");
    ck_assert_error(ad_unfold(small, k2, NULL, NULL, (int[]){2, 1}), "dilation 2x1, so 3x2");
    /* fold */
    ad_tensor *cols = ad_zeros(t, AD_FLOAT64, AD_SHAPE(1, 8, 9));
    int o4[2] = {4, 4};
    ck_assert_error(ad_fold(x, o4, k2, NULL, NULL, NULL),
                    "ad_fold: expected a 3-D input [N, C kh kw, L], got cols [2,3,8,8]");
    ck_assert_error(ad_fold(cols, NULL, k2, NULL, NULL, NULL), "output_size is NULL");
    ck_assert_error(ad_fold(cols, (int[]){0, 4}, k2, NULL, NULL, NULL), "output_size 0x4: must be >= 1");
    ck_assert_error(ad_fold(cols, o4, (int[]){3, 3}, NULL, NULL, NULL),
                    "dimension 1 of cols [1,8,9] is not a multiple of the 3x3 = 9 kernel taps");
    ck_assert_error(ad_fold(cols, (int[]){5, 4}, k2, NULL, NULL, NULL),
                    "cols [1,8,9] has 9 columns, but output_size 5x4 with kernel 2x2, stride 1x1, "
                    "padding 0x0, dilation 1x1 has 4x3 = 12 windows");
    ck_assert_error(ad_fold(cols, (int[]){1, 1}, k2, NULL, NULL, NULL), "does not fit");
    /* conv2d */
    ck_assert_error(ad_conv2d(ad_zeros(t, AD_FLOAT64, AD_SHAPE(2, 3, 8, 8)), w, NULL, NULL),
                    "ad_conv2d: input has 3 channels but weight expects 4 (groups 1): "
                    "x [2,3,8,8], w [6,4,3,3]");
    ck_assert_error(ad_conv2d(x, w3, NULL, &(ad_conv2d_params){.groups = 2}),
                    "groups 2 does not divide the 3 input channels: x [2,3,8,8], w [6,3,3,3]");
    ck_assert_error(ad_conv2d(ad_zeros(t, AD_FLOAT64, AD_SHAPE(1, 4, 5, 5)),
                              ad_zeros(t, AD_FLOAT64, AD_SHAPE(5, 2, 3, 3)), NULL,
                              &(ad_conv2d_params){.groups = 2}),
                    "groups 2 does not divide the 5 output channels");
    ck_assert_error(ad_conv2d(x, w3, NULL, &(ad_conv2d_params){.groups = 3}),
                    "input has 3 channels but weight expects 9 (groups 3)");
    ck_assert_error(ad_conv2d(x, w3, ad_zeros(t, AD_FLOAT64, AD_SHAPE(5)), NULL),
                    "bias must be [6] (the output channels of w [6,3,3,3]), got [5]");
    ck_assert_error(ad_conv2d(x, w3, ad_zeros(t, AD_FLOAT32, AD_SHAPE(6)), NULL),
                    "ad_conv2d: bias is float32 but x is float64");
    ck_assert_error(ad_conv2d(xf, w3, NULL, NULL), "ad_conv2d: w is float64 but x is float32");
    ck_assert_error(ad_conv2d(x3, w3, NULL, NULL), "x must be 4-D [N, C, H, W], got x [3,8,8]");
    ck_assert_error(ad_conv2d(x, x3, NULL, NULL), "w must be 4-D [O, C/groups, kh, kw], got w [3,8,8]");
    ck_assert_error(ad_conv2d(x, w3, NULL, &(ad_conv2d_params){.stride = {-1, 1}}),
                    "stride -1x1, padding 0x0, dilation 0x0: must not be negative");
    ck_assert_error(ad_conv2d(x, w3, NULL, &(ad_conv2d_params){.groups = -2}), "groups -2: must be >= 1");
    ck_assert_error(ad_conv2d(ad_zeros(t, AD_FLOAT64, AD_SHAPE(1, 3, 2, 2)), w3, NULL, NULL),
                    "ad_conv2d: kernel 3x3 (dilation 1x1, so 3x3 input positions) does not fit in "
                    "the padded input 2x2: x [1,3,2,2], padding 0x0");
    ck_assert_error(ad_conv2d(NULL, w3, NULL, NULL), "ad_conv2d: argument 'x' is NULL");
    ck_assert_error(ad_conv2d(x, ad_zeros(t2, AD_FLOAT64, AD_SHAPE(6, 3, 3, 3)), NULL, NULL),
                    "different tapes");
    /* pools */
    ck_assert_error(ad_max_pool2d(x3, k2, NULL, NULL), "ad_max_pool2d: expected a 4-D input");
    ck_assert_error(ad_max_pool2d(x, NULL, NULL, NULL), "ad_max_pool2d: kernel is NULL");
    ck_assert_error(ad_max_pool2d(x, (int[]){3, 3}, NULL, (int[]){2, 1}),
                    "padding 2x1 must be at most half the kernel 3x3");
    ck_assert_error(ad_avg_pool2d(x, k2, (int[]){-1, 1}, NULL, true),
                    "ad_avg_pool2d: stride -1x1: must be >= 1 (or 0 for the kernel size)");
    ck_assert_error(ad_avg_pool2d(small, (int[]){3, 3}, NULL, NULL, true), "does not fit");
    ck_assert_error(ad_avg_pool2d(xi, k2, NULL, NULL, true), "ad_avg_pool2d");
    /* dropout */
    ad_rng rng;
    ad_rng_init(&rng, 1);
    ck_assert_error(ad_dropout(x, 1.5, true, &rng), "ad_dropout: p must be in [0, 1], got 1.5");
    ck_assert_error(ad_dropout(x, -0.1, false, &rng), "p must be in [0, 1]");
    ck_assert_error(ad_dropout(x, NAN, true, &rng), "p must be in [0, 1], got nan");
    ck_assert_error(ad_dropout(x, 0.5, true, NULL), "ad_dropout: rng is NULL");
    ck_assert_error(ad_dropout(xi, 0.5, true, &rng), "ad_dropout");
    ck_assert_error(ad_dropout(NULL, 0.5, true, &rng), "ad_dropout: argument 'x' is NULL");
    /* embedding */
    ad_tensor *emb = ad_zeros(t, AD_FLOAT64, AD_SHAPE(5, 3));
    ck_assert_error(ad_embedding(emb, ot_index(t, AD_SHAPE(2, 3), (int64_t[]){0, 1, 2, 3, 4, 7})),
                    "ad_embedding: index 7 at position [1,2] is out of range for 5 embeddings "
                    "(weight [5,3])");
    ck_assert_error(ad_embedding(emb, ot_index(t, AD_SHAPE(2), (int64_t[]){0, -1})),
                    "index -1 at position [1] is out of range");
    ck_assert_error(ad_embedding(emb, ad_zeros(t, AD_FLOAT64, AD_SHAPE(2))),
                    "ad_embedding: indices must be int64, got float64");
    ck_assert_error(ad_embedding(ad_zeros(t, AD_FLOAT64, AD_SHAPE(5)), ot_index(t, AD_SHAPE(1), (int64_t[]){0})),
                    "ad_embedding: weight must be 2-D [V, D], got [5]");
    ck_assert_error(ad_embedding(emb, NULL), "ad_embedding: argument 'indices' is NULL");
    /* layer_norm */
    ck_assert_error(ad_layer_norm(x3, 0, NULL, NULL, 1e-5), "nnormdims 0 out of range 1..3 for x [3,8,8]");
    ck_assert_error(ad_layer_norm(x3, 4, NULL, NULL, 1e-5), "nnormdims 4 out of range");
    ck_assert_error(ad_layer_norm(x3, 2, ad_zeros(t, AD_FLOAT64, AD_SHAPE(8)), NULL, 1e-5),
                    "ad_layer_norm: weight has shape [8] but the last 2 dimensions of x [3,8,8] are [8,8]");
    ck_assert_error(ad_layer_norm(x3, 1, NULL, ad_zeros(t, AD_FLOAT32, AD_SHAPE(8)), 1e-5),
                    "bias is float32 but x is float64");
    ck_assert_error(ad_layer_norm(x3, 1, NULL, NULL, -1), "eps must be finite and >= 0, got -1");
    /* batch_norm */
    ad_tensor *c3 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(3)), *c4 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(4));
    ck_assert_error(ad_batch_norm(c3, NULL, NULL, NULL, NULL, true, 0.1, 1e-5),
                    "ad_batch_norm: x must be [N, C, ...] (ndim >= 2), got [3]");
    ck_assert_error(ad_batch_norm(x, c3, NULL, NULL, NULL, true, 0.1, 1e-5),
                    "give both running_mean and running_var, or neither");
    ck_assert_error(ad_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5),
                    "eval mode (training false) needs running_mean and running_var");
    ck_assert_error(ad_batch_norm(x, NULL, NULL, c4, NULL, true, 0.1, 1e-5),
                    "weight has shape [4] but the channels (dimension 1) of x [2,3,8,8] are [3]");
    ck_assert_error(ad_batch_norm(x, c4, c3, NULL, NULL, false, 0.1, 1e-5), "running_mean has shape [4]");
    ck_assert_error(ad_batch_norm(ad_zeros(t, AD_FLOAT64, AD_SHAPE(1, 3)), NULL, NULL, NULL, NULL,
                                  true, 0.1, 1e-5),
                    "expected more than 1 value per channel when training, got x [1,3]");
    /* no channels: 12 values per channel of none, an empty result (as
     * PyTorch), not the error above */
    ad_tensor *x0 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(4, 0, 3));
    ad_set_requires_grad(x0, true);
    ad_tensor *y0 = ad_batch_norm(x0, NULL, NULL, NULL, NULL, true, 0.1, 1e-5);
    ck_assert_msg(y0 != NULL, "%s", ad_error());
    ot_assert_shape(y0, 3, (int64_t[]){4, 0, 3});
    ck_assert_int_eq(ad_backward(ad_sum_all(y0), NULL, 0), 0);
    ad_tensor *rg = ad_zeros(t, AD_FLOAT64, AD_SHAPE(3));
    ad_set_requires_grad(rg, true);
    ck_assert_error(ad_batch_norm(x, rg, c3, NULL, NULL, true, 0.1, 1e-5),
                    "running_mean requires grad, but training overwrites it in place");
    ck_assert_error(ad_batch_norm(x, NULL, NULL, NULL, NULL, true, 2, 1e-5),
                    "momentum must be in [0, 1], got 2");
    ck_assert_error(ad_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1, INFINITY), "eps must be finite");
    ck_assert_error(ad_batch_norm(xf, c3, c3, NULL, NULL, true, 0.1, 1e-5),
                    "running_mean is float64 but x is float32");
    ad_tape_free(t);
    ad_tape_free(t2);
}
END_TEST

/* ---- timing (printed, not asserted) ------------------------------------------------------ */
static double now(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC); /* C11; wall clock is fine for a print */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* AD_TIMING_QUICK=1 (scripts/valgrind): one pass over a batch of 8, not
 * the best of 3 over 64.  The kernels and their tiles are those of the
 * full size (they depend on the channels and the image, not the batch),
 * which is what memcheck is there to watch; a forward of the full size
 * took 19 s under it. */
START_TEST(conv2d_timing)
{
    ad_dtype dt = DTYPES[1 - _i]; /* float32 first: what a CNN trains in */
    bool quick = getenv("AD_TIMING_QUICK") != NULL;
    int64_t batch = quick ? 8 : 64;
    ad_tape *t = ad_tape_new();
    ad_rng rng;
    ad_rng_init(&rng, 1);
    double best_f = INFINITY, best_b = INFINITY;
    for (int rep = 0; rep < (quick ? 1 : 3); rep++) {
        ad_tape_reset(t);
        ad_tensor *x = rnd(t, &rng, dt, 4, (int64_t[]){batch, 32, 26, 26}, true);
        ad_tensor *w = rnd(t, &rng, dt, 4, (int64_t[]){32, 32, 3, 3}, true);
        ad_tensor *b = rnd(t, &rng, dt, 1, (int64_t[]){32}, true);
        double t0 = now();
        ad_tensor *y = ad_conv2d(x, w, b, NULL);
        ck_assert_msg(y != NULL, "%s", ad_error());
        double t1 = now();
        ck_assert_int_eq(ad_backward(y, ad_ones(t, dt, 4, ad_shape(y)), 0), 0);
        double t2 = now();
        if (t1 - t0 < best_f) best_f = t1 - t0;
        if (t2 - t1 < best_b) best_b = t2 - t1;
    }
    printf("conv2d %s x [%lld,32,26,26] w [32,32,3,3]: forward %.1f ms, backward %.1f ms "
           "(%s)\n", ad_dtype_name(dt), (long long)batch, 1e3 * best_f, 1e3 * best_b,
           quick ? "one pass" : "best of 3");
    fflush(stdout);
    ad_tape_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nnops");
    TCase *tc = tcase_create("nnops");
    int nconv = (int)(sizeof CONVS / sizeof CONVS[0]), nwin = (int)(sizeof WINS / sizeof WINS[0]);
    int npool = (int)(sizeof POOLS / sizeof POOLS[0]);
    tcase_add_loop_test(tc, conv2d_matches_direct_loop, 0, 2 * nconv);
    tcase_add_test(tc, unfold_exact_values);
    tcase_add_loop_test(tc, unfold_fold_adjoint_and_naive, 0, 2 * nwin);
    tcase_add_loop_test(tc, pools_match_naive, 0, 2 * npool);
    tcase_add_loop_test(tc, max_pool_ties_go_to_the_first_maximum, 0, 2);
    tcase_add_test(tc, max_pool_higher_derivatives_follow_the_first_maximum);
    tcase_add_test(tc, max_pool_replay_moves_the_chosen_element);
    tcase_add_loop_test(tc, max_pool_2x2_wide_rows_choose_the_first_maximum, 0, 2);
    tcase_add_loop_test(tc, dropout_statistics_and_reproducibility, 0, 2);
    tcase_add_test(tc, embedding_values_and_grads);
    tcase_add_loop_test(tc, layer_norm_normalises, 0, 2);
    tcase_add_loop_test(tc, batch_norm_train_eval_and_running_stats, 0, 2);
    tcase_add_test(tc, replay_recomputes_unfold_and_fold);
    tcase_add_test(tc, persistent_inputs_give_persistent_results);
    tcase_add_test(tc, bad_inputs);
    suite_add_tcase(s, tc);
    TCase *timing = tcase_create("timing");
    tcase_add_loop_test(timing, conv2d_timing, 0, 2);
    suite_add_tcase(s, timing);
    return ot_run(s);
}

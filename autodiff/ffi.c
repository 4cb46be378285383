/* autodiff/ffi.c - foreign C functions as ops on the tape.
 *
 * A foreign op calls a C function through libffi: the call interface (cif)
 * is prepared once when the function is registered, and each element (or
 * row, for the vector form) is one ffi_call with the arguments in typed
 * slots.  That is slower than a kernel (a few tens of nanoseconds per
 * call), but it is what lets any C function of any supported signature be
 * called without generated glue code.
 *
 * One node layout (foreign_params) serves every derivative.  A node
 * records the foreign function F, the derivative order k and the k
 * arguments differentiated against, in order: k = 0 is f itself, (i) is
 * df/dx_i, (i, j) is d2f/dx_i dx_j, and so on.  The backward rule of node
 * (F, s) records node (F, s + j) for each input j that needs a gradient,
 * so the rule is differentiable again to any order.  The vector form
 * differentiates against all n elements at once: its order-k node holds
 * every k-th partial of each row, flattened to a last dimension of n^k.
 *
 * Evaluating a node: the first index uses the user's partial or gradient
 * function when there is one; every index beyond what is analytic is one
 * level of central differences of the level below (eval_scalar,
 * eval_vector). */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include <ffi.h> /* libffi */

#include "ffi.h"
#include "internal.h"

enum { OP_VALUE, OP_PARTIAL, OP_NUMERIC };

struct ad_foreign {
    /* Per-function copies of the "foreign" op (below), differing only in
     * the name and formula, so graphs and errors name the function:
     * value, derivative by the user's function, derivative by differences. */
    ad_op ops[3];
    char *strings; /* one allocation holding the names and formulas */
    ad_ffi_sig sig;
    int nin;                                 /* tensors ad_foreign_call takes */
    ad_dtype in_dtype[AD_FOREIGN_MAX_ARGS];  /* what each must be */
    ad_dtype out_dtype;
    ad_fn_ptr fn, grad;
    ad_fn_ptr partials[AD_FOREIGN_MAX_ARGS];
    const ad_foreign *partial_ops[AD_FOREIGN_MAX_ARGS];
    ffi_cif cif_f; /* f and its partials */
    ffi_cif cif_g; /* the gradient function: f's arguments, then T *out */
    ffi_type *types_f[AD_FOREIGN_MAX_ARGS];
    ffi_type *types_g[AD_FOREIGN_MAX_ARGS + 1];
};

/* One argument in the C type the callee expects; libffi reads it through
 * the pointer in av[]. */
typedef union slot {
    double d;
    float f;
    int i;
    long l;
    size_t z;
    void *p;
} slot;

/* A foreign node's parameters: the function, the derivative order k and
 * the arguments differentiated against, spec[0..k). */
typedef struct foreign_params {
    const ad_foreign *F;
    int k;
    int64_t spec[AD_FOREIGN_MAX_ORDER];
} foreign_params;

static bool analytic(const ad_foreign *F, int i) { return F->partials[i] || F->grad; }

/* ---- steps of the numeric derivatives ---------------------------------------------
 * D(h) = (f(x+h) - f(x-h)) / 2h has error h^2 f'''/6 + h^4 f^(5)/120 + ...
 * plus rounding, about eps |f| / h.  One Richardson step, (4 D(h) - D(2h))
 * / 3 (the five-point stencil), cancels the h^2 term and leaves h^4
 * f^(5)/30, so a larger h keeps the truncation small while dividing the
 * rounding error.  The larger step matters for second derivatives: a
 * derivative taken with a tiny h is a jagged function of x at the scale of
 * its rounding error, and differentiating it again (ad_gradgradcheck does,
 * with its own 1e-6 step) amplifies that noise by 1/step.  h = 2e-4 in
 * double keeps the noise near 1e-12 |f| (1e-6 after such a
 * differentiation) and the truncation below 1e-16 f^(5).
 *
 * Level m > 1 differences the level below, whose error e is far above eps,
 * so its best step is about e^(1/5): the table follows e from level to
 * level (double: 1e-12, 1e-10, 1e-8...; float: 2e-5, 2e-4...).
 *
 * Steps grow with |x| as max(1, ln(1 + |x|)), as numdifftools does: a
 * step proportional to |x| would suit x^2 at x = 1e6 but ruin exp or sin at
 * x = 100, whose derivatives do not grow with x; the logarithm is a
 * compromise that keeps both within a few digits of the best.  A floor of
 * 1e-12 |x| (1e-4 |x| in float) keeps x + h distinct from x however large
 * x is; differences divide by the spacing of the points actually passed. */
static double step(const ad_foreign *F, ad_ctype arg, int level, double x)
{
    static const double hd[AD_FOREIGN_MAX_ORDER] = {2e-4, 4e-3, 1.5e-2, 4e-2,
                                                    8e-2, 0.15, 0.25, 0.4};
    static const double hf[AD_FOREIGN_MAX_ORDER] = {1e-2, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7};
    bool single = arg == AD_C_FLOAT || arg == AD_C_FLOAT_PTR || F->sig.ret == AD_C_FLOAT;
    if (level >= AD_FOREIGN_MAX_ORDER) level = AD_FOREIGN_MAX_ORDER - 1;
    double h = (single ? hf[level] : hd[level]) * fmax(1.0, log1p(fabs(x)));
    return fmax(h, fabs(x) * (single ? 1e-4 : 1e-12));
}

/* The value the callee will see after rounding x to its argument type:
 * differences divide by the actual spacing, so the rounding of x +- h to
 * float costs nothing. */
static double put(slot *s, ad_ctype t, double x)
{
    if (t == AD_C_FLOAT || t == AD_C_FLOAT_PTR) return s->f = (float)x;
    return s->d = x;
}
static double got(const slot *s, ad_ctype t)
{
    return (t == AD_C_FLOAT || t == AD_C_FLOAT_PTR) ? s->f : s->d;
}

static double call_value(const ad_foreign *F, ad_fn_ptr fn, void **av)
{
    union {
        ffi_arg a;
        ffi_sarg s;
        double d;
        float f;
    } r = {0};
    ffi_call((ffi_cif *)&F->cif_f, fn, &r, av);
    switch (F->sig.ret) {
    case AD_C_DOUBLE: return r.d;
    case AD_C_FLOAT: return r.f;
    default: return (double)(long)r.s; /* libffi widens small integers to ffi_arg */
    }
}

/* f's integer result (an int or long return) as it is: through a double
 * it would round beyond 2^53 and overflow at the ends of int64's range. */
static int64_t call_int(const ad_foreign *F, void **av)
{
    union {
        ffi_arg a;
        ffi_sarg s;
    } r = {0};
    ffi_call((ffi_cif *)&F->cif_f, F->fn, &r, av);
    return (int64_t)(long)r.s;
}

/* Fills out[0..count) (doubles) from the gradient function, which writes
 * the result type (double or float) into gbuf. */
static void call_grad(const ad_foreign *F, void **av, void *gbuf, int64_t count, double *out)
{
    ffi_arg dummy;
    if (F->sig.ret == AD_C_FLOAT) memset(gbuf, 0, (size_t)count * sizeof(float));
    else memset(gbuf, 0, (size_t)count * sizeof(double));
    ffi_call((ffi_cif *)&F->cif_g, F->grad, &dummy, av);
    for (int64_t q = 0; q < count; q++)
        out[q] = F->sig.ret == AD_C_FLOAT ? ((float *)gbuf)[q] : ((double *)gbuf)[q];
}

/* ---- scalar form -------------------------------------------------------------------- */

typedef struct scall {
    const ad_foreign *F;
    slot v[AD_FOREIGN_MAX_ARGS + 1]; /* v[m] holds the gradient's out pointer */
    void *av[AD_FOREIGN_MAX_ARGS + 1];
    double gbuf[AD_FOREIGN_MAX_ARGS];
} scall;

/* d^k f / dx_spec[0] ... dx_spec[k-1] at the arguments in c->v. */
static double eval_scalar(scall *c, const int64_t *spec, int k)
{
    const ad_foreign *F = c->F;
    if (k == 0) return call_value(F, F->fn, c->av);
    int i = (int)spec[0];
    if (k == 1 && F->partials[i]) return call_value(F, F->partials[i], c->av);
    if (k == 1 && F->grad) {
        double g[AD_FOREIGN_MAX_ARGS];
        call_grad(F, c->av, c->gbuf, F->sig.nargs, g);
        return g[i];
    }
    /* The outermost index is differenced; what it differences, the
     * derivative of order k-1, may itself be analytic or numeric. */
    int j = (int)spec[k - 1];
    ad_ctype t = F->sig.args[j];
    int level = k - 1 - (analytic(F, i) ? 1 : 0);
    double x0 = got(&c->v[j], t), h = step(F, t, level, x0), d[2];
    for (int r = 0; r < 2; r++) {
        double xp = put(&c->v[j], t, x0 + (r + 1) * h);
        double fp = eval_scalar(c, spec, k - 1);
        double xm = put(&c->v[j], t, x0 - (r + 1) * h);
        double fm = eval_scalar(c, spec, k - 1);
        d[r] = (fp - fm) / (xp - xm);
    }
    put(&c->v[j], t, x0);
    return (4.0 * d[0] - d[1]) / 3.0;
}

/* out (contiguous, the broadcast shape) = the derivative `spec` of f,
 * elementwise over the broadcast inputs. */
static int fw_scalar(const char *fn, const ad_foreign *F, const int64_t *spec, int k,
                     ad_tensor *const *in, ad_tensor *out)
{
    int m = F->nin, nd = out->ndim;
    int64_t st[AD_FOREIGN_MAX_ARGS][AD_MAX_DIMS], off[AD_FOREIGN_MAX_ARGS], idx[AD_MAX_DIMS];
    scall c = {.F = F};
    for (int a = 0; a < m; a++) {
        /* right-aligned strides over out's shape, 0 along broadcast dims */
        int shift = nd - in[a]->ndim;
        for (int d = 0; d < nd; d++) {
            int s = d - shift;
            st[a][d] = (s < 0 || in[a]->shape[s] == 1) ? 0 : in[a]->strides[s];
        }
        off[a] = in[a]->offset;
        c.av[a] = &c.v[a];
    }
    c.v[m].p = c.gbuf;
    c.av[m] = &c.v[m];
    memset(idx, 0, sizeof idx);
    int64_t total = ad__numel(nd, out->shape);
    for (int64_t e = 0; e < total; e++) {
        for (int a = 0; a < m; a++) {
            ad_ctype t = F->sig.args[a];
            if (t == AD_C_DOUBLE || t == AD_C_FLOAT) {
                put(&c.v[a], t, ad__ld(in[a], off[a]));
                continue;
            }
            int64_t iv = ((const int64_t *)in[a]->storage->data)[off[a]];
            if (t == AD_C_INT && (iv < INT_MIN || iv > INT_MAX))
                return ad__err(fn, "%s: argument %d holds %lld, which does not fit in int",
                               F->ops[OP_VALUE].name, a, (long long)iv);
            if (t == AD_C_INT) c.v[a].i = (int)iv;
            else c.v[a].l = (long)iv;
        }
        if (k == 0 && out->dtype == AD_INT64) /* the value of an integer f */
            ((int64_t *)out->storage->data)[out->offset + e] = call_int(F, c.av);
        else
            ad__st(out, out->offset + e, eval_scalar(&c, spec, k));
        for (int d = nd - 1; d >= 0; d--) {
            for (int a = 0; a < m; a++) off[a] += st[a][d];
            if (++idx[d] < out->shape[d]) break;
            for (int a = 0; a < m; a++) off[a] -= st[a][d] * out->shape[d];
            idx[d] = 0;
        }
    }
    return 0;
}

/* ---- vector form --------------------------------------------------------------------- */

typedef struct vcall {
    const ad_foreign *F;
    int64_t n;
    ad_ctype et;  /* element type of x */
    void *xbuf;   /* the row as the callee reads it: n doubles or floats */
    void *gbuf;
    slot xp, len, gp;
    void *av[3];
} vcall;

static double vget(const vcall *c, int64_t j)
{
    return c->et == AD_C_FLOAT_PTR ? ((float *)c->xbuf)[j] : ((double *)c->xbuf)[j];
}
static double vput(vcall *c, int64_t j, double x)
{
    if (c->et == AD_C_FLOAT_PTR) return ((float *)c->xbuf)[j] = (float)x;
    return ((double *)c->xbuf)[j] = x;
}

static int64_t ipow(int64_t n, int k)
{
    int64_t r = 1;
    for (int i = 0; i < k; i++) r *= n;
    return r;
}

/* out[n^k] = every k-th partial of f at the row, row-major over the k
 * indices with the last one differentiated outermost: out[idx n + j] =
 * d/dx_j of entry idx of order k-1.  scratch holds sum_{l<k} n^l doubles. */
static void eval_vector(vcall *c, int k, double *out, double *scratch)
{
    const ad_foreign *F = c->F;
    int64_t n = c->n;
    if (k == 0) {
        *out = call_value(F, F->fn, c->av);
        return;
    }
    if (k == 1 && F->grad) {
        call_grad(F, c->av, c->gbuf, n, out);
        return;
    }
    int64_t inner = ipow(n, k - 1);
    double *tmp = scratch, *rest = scratch + inner;
    int level = k - 1 - (F->grad ? 1 : 0);
    for (int64_t q = 0; q < inner * n; q++) out[q] = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double x0 = vget(c, j), h = step(F, c->et, level, x0);
        for (int r = 0; r < 2; r++) {
            /* Richardson weights 4/3 on D(h), -1/3 on D(2h); see step() */
            double w = r == 0 ? 4.0 / 3.0 : -1.0 / 3.0;
            double xp = vput(c, j, x0 + (r + 1) * h), xm = vput(c, j, x0 - (r + 1) * h);
            double s = w / (xp - xm);
            vput(c, j, xp);
            eval_vector(c, k - 1, tmp, rest);
            for (int64_t q = 0; q < inner; q++) out[q * n + j] += s * tmp[q];
            vput(c, j, xm);
            eval_vector(c, k - 1, tmp, rest);
            for (int64_t q = 0; q < inner; q++) out[q * n + j] -= s * tmp[q];
        }
        vput(c, j, x0);
    }
}

static int fw_vector(const char *fn, const ad_foreign *F, int k, const ad_tensor *x,
                     ad_tensor *out)
{
    int nb = x->ndim - 1;
    int64_t n = x->shape[nb], rows = ad__numel(nb, x->shape), nk = ipow(n, k), scr = 0;
    for (int l = 0; l < k; l++) scr += ipow(n, l);
    /* x row + gradient buffer (n each, as doubles so floats fit too), the
     * row's result and the scratch of the numeric levels */
    size_t need = (size_t)(2 * n + nk + scr);
    double small[256], *mem = need <= 256 ? small : ad__malloc(need * sizeof(double));
    if (!mem) return ad__err(fn, "%s: out of memory", F->ops[OP_VALUE].name);
    vcall c = {.F = F, .n = n, .et = F->sig.args[0], .xbuf = mem, .gbuf = mem + n};
    double *res = mem + 2 * n, *scratch = res + nk;
    c.xp.p = c.xbuf;
    c.gp.p = c.gbuf;
    switch (F->sig.args[1]) {
    case AD_C_INT: c.len.i = (int)n; break;
    case AD_C_LONG: c.len.l = (long)n; break;
    default: c.len.z = (size_t)n; break;
    }
    c.av[0] = &c.xp;
    c.av[1] = &c.len;
    c.av[2] = &c.gp;
    int64_t idx[AD_MAX_DIMS] = {0}, base = x->offset, ls = x->strides[nb];
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < n; j++) vput(&c, j, ad__ld(x, base + j * ls));
        eval_vector(&c, k, res, scratch);
        for (int64_t q = 0; q < nk; q++) ad__st(out, out->offset + r * nk + q, res[q]);
        for (int d = nb - 1; d >= 0; d--) {
            base += x->strides[d];
            if (++idx[d] < x->shape[d]) break;
            base -= x->strides[d] * x->shape[d];
            idx[d] = 0;
        }
    }
    if (mem != small) ad__free(mem);
    return 0;
}

static int compute(const char *fn, const ad_foreign *F, const int64_t *spec, int k,
                   ad_tensor *const *in, ad_tensor *out)
{
    return F->sig.form == AD_FFI_VECTOR ? fw_vector(fn, F, k, in[0], out)
                                        : fw_scalar(fn, F, spec, k, in, out);
}

/* ---- the op: checks, result, recording ---------------------------------------------- */

/* The result shape: the arguments broadcast together (scalar form), or the
 * batch dimensions of x followed, for a derivative of order k, by n^k. */
static int result_shape(const char *fn, const ad_foreign *F, int k, ad_tensor *const *in,
                        int *nd, int64_t *shape)
{
    const char *nm = F->ops[OP_VALUE].name;
    if (F->sig.form == AD_FFI_VECTOR) {
        const ad_tensor *x = in[0];
        if (x->ndim < 1)
            return ad__err(fn, "%s: argument 0 must have at least 1 dimension (the vector "
                               "form reads its last dimension)", nm);
        int64_t n = x->shape[x->ndim - 1];
        if (F->sig.args[1] == AD_C_INT && n > INT_MAX)
            return ad__err(fn, "%s: rows of %lld elements do not fit the int length", nm,
                           (long long)n);
        *nd = x->ndim - 1;
        memcpy(shape, x->shape, (size_t)*nd * sizeof *shape);
        if (k > 0) {
            int64_t nk = 1;
            for (int i = 0; i < k; i++) {
                if (n && nk > INT64_MAX / n)
                    return ad__err(fn, "%s: %d-th derivatives of rows of %lld are too many",
                                   nm, k, (long long)n);
                nk *= n;
            }
            shape[(*nd)++] = nk;
        }
        int64_t numel;
        return ad__check_shape(fn, *nd, shape, &numel);
    }
    *nd = 0;
    for (int a = 0; a < F->nin; a++) {
        int na = in[a]->ndim, m = na > *nd ? na : *nd;
        int64_t r[AD_MAX_DIMS];
        for (int d = 0; d < m; d++) {
            int64_t x = d - (m - na) >= 0 ? in[a]->shape[d - (m - na)] : 1;
            int64_t y = d - (m - *nd) >= 0 ? shape[d - (m - *nd)] : 1;
            if (x != y && x != 1 && y != 1) {
                char all[400] = "";
                for (int b = 0; b < F->nin; b++) {
                    size_t len = strlen(all);
                    snprintf(all + len, sizeof all - len, "%s%s", b ? ", " : "",
                             ad__shape_str(in[b]));
                }
                return ad__err(fn, "%s: argument shapes %s cannot be broadcast together", nm,
                               all);
            }
            r[d] = x == 1 ? y : x;
        }
        *nd = m;
        memcpy(shape, r, (size_t)m * sizeof *shape);
    }
    return 0;
}

static ad_tensor *apply(const char *fn, const ad_foreign *F, const int64_t *spec, int k,
                        int n, ad_tensor *const *args)
{
    if (!F) return ad__err(fn, "the foreign function is NULL"), NULL;
    const char *nm = F->ops[OP_VALUE].name;
    if (n != F->nin)
        return ad__err(fn, "%s: expected %d argument%s, got %d", nm, F->nin,
                       F->nin == 1 ? "" : "s", n), NULL;
    if (!args) return ad__err(fn, "%s: args is NULL", nm), NULL;
    for (int a = 0; a < n; a++) {
        char what[24];
        snprintf(what, sizeof what, "args[%d]", a);
        if (ad__check_arg(fn, what, args[a], false)) return NULL;
        if (args[a]->dtype != F->in_dtype[a])
            return ad__err(fn, "%s: argument %d is %s, the signature says %s (%s)", nm, a,
                           ad_dtype_name(args[a]->dtype), ad_ffi_type_name(F->sig.args[a]),
                           ad_dtype_name(F->in_dtype[a])), NULL;
    }
    int nd = 0;
    int64_t shape[AD_MAX_DIMS];
    if (result_shape(fn, F, k, args, &nd, shape)) return NULL;
    ad_tensor *out = ad__result(fn, n, args, F->out_dtype, nd, shape);
    if (!out) return NULL;
    int which = k == 0 ? OP_VALUE : (k == 1 && analytic(F, spec ? (int)spec[0] : 0)) ? OP_PARTIAL
                                                                                       : OP_NUMERIC;
    foreign_params p = {F, k, {0}};
    for (int i = 0; spec && i < k; i++) p.spec[i] = spec[i];
    return ad__finish(out, compute(fn, F, spec, k, args, out), &F->ops[which], n, args, &p, NULL);
}

ad_tensor *ad_foreign_call(const ad_foreign *f, int n, ad_tensor *const *args)
{
    return apply("ad_foreign_call", f, NULL, 0, n, args);
}

/* ---- foreign -------------------------------------------------------------------------
 * dx_i = g df/dx_i, with df/dx_i itself a recorded foreign op: the user's
 * partial_ops[i], or node (F, spec + i).  In the vector form the order-(k+1)
 * node D holds, for each entry of the order-k output, its gradient along
 * the row, so dx = sum over the order-k entries of g times D. */
static int foreign_bw(ad_node *nd, ad_tensor *g, ad_tensor **gin)
{
    static const char *fn = "ad_backward";
    const foreign_params *p = ad__params(nd);
    const ad_foreign *F = p->F;
    int k = p->k;
    if (k >= AD_FOREIGN_MAX_ORDER)
        return ad__err(fn, "%s: derivatives of order above %d are not supported",
                       F->ops[OP_VALUE].name, AD_FOREIGN_MAX_ORDER);
    if (F->sig.form == AD_FFI_VECTOR) {
        if (!ad__needs_grad(nd, 0)) return 0;
        ad_tensor *x = nd->in[0], *D = apply(fn, F, NULL, k + 1, 1, &x);
        if (!D) return -1;
        if (k == 0) {
            gin[0] = ad_mul(ad_unsqueeze(g, -1), D);
        } else {
            int nb = x->ndim - 1;
            int64_t sh[AD_MAX_DIMS + 2];
            memcpy(sh, x->shape, (size_t)nb * sizeof *sh);
            sh[nb] = ipow(x->shape[nb], k);
            sh[nb + 1] = 1;
            ad_tensor *g2 = ad_reshape(g, nb + 2, sh);
            sh[nb + 1] = x->shape[nb];
            gin[0] = ad_sum(ad_mul(g2, ad_reshape(D, nb + 2, sh)), (const int[]){-2}, 1, false);
        }
        return gin[0] ? 0 : -1;
    }
    int64_t spec[AD_FOREIGN_MAX_ORDER];
    for (int i = 0; i < k; i++) spec[i] = p->spec[i];
    for (int i = 0; i < nd->nin; i++) {
        if (!ad__needs_grad(nd, i)) continue;
        ad_tensor *D;
        if (k == 0 && F->partial_ops[i]) {
            D = ad_foreign_call(F->partial_ops[i], nd->nin, nd->in);
        } else {
            spec[k] = i;
            D = apply(fn, F, spec, k + 1, nd->nin, nd->in);
        }
        ad_tensor *t = ad_mul(g, D);
        /* a double function of a float argument: the gradient takes the
         * argument's dtype */
        if (t && t->dtype != nd->in[i]->dtype) t = ad_cast(t, nd->in[i]->dtype);
        gin[i] = ad__sum_to(t, nd->in[i]->ndim, nd->in[i]->shape);
        if (!gin[i]) return -1;
    }
    return 0;
}

static int foreign_fw(ad_node *nd)
{
    const foreign_params *p = ad__params(nd);
    return compute("ad_tape_replay", p->F, p->spec, p->k, nd->in, nd->out);
}

static const ad_op OP_FOREIGN = {
    .name = "foreign",
    .formula = "y = f(x_1..x_m) for a C function called through libffi; dx_i = g df/dx_i (your "
               "partials or gradient, else central differences)",
    .backward = foreign_bw,
    .forward = foreign_fw,
    .params_size = sizeof(foreign_params),
};

const ad_op *const ad__ops_ffi[] = {&OP_FOREIGN, NULL};

/* ---- registration ---------------------------------------------------------------------- */

static ffi_type *ffi_of(ad_ctype t)
{
    switch (t) {
    case AD_C_DOUBLE: return &ffi_type_double;
    case AD_C_FLOAT: return &ffi_type_float;
    case AD_C_INT: return &ffi_type_sint;
    case AD_C_LONG: return &ffi_type_slong;
    case AD_C_SIZE_T: return sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
    case AD_C_DOUBLE_PTR: case AD_C_FLOAT_PTR: return &ffi_type_pointer;
    default: return &ffi_type_void;
    }
}

static ad_dtype dtype_of(ad_ctype t)
{
    switch (t) {
    case AD_C_DOUBLE: case AD_C_DOUBLE_PTR: return AD_FLOAT64;
    case AD_C_FLOAT: case AD_C_FLOAT_PTR: return AD_FLOAT32;
    default: return AD_INT64;
    }
}

static bool same_sig(const ad_ffi_sig *a, const ad_ffi_sig *b)
{
    if (a->ret != b->ret || a->nargs != b->nargs) return false;
    for (int i = 0; i < a->nargs; i++)
        if (a->args[i] != b->args[i]) return false;
    return true;
}

/* Everything a descriptor can get wrong, before anything is allocated. */
static int check_desc(const char *fn, const ad_foreign_desc *d, ad_ffi_sig *sig)
{
    char err[300], s[200];
    if (d->signature) {
        if (ad_ffi_parse(d->signature, sig, err, sizeof err)) return ad__err(fn, "%s", err);
    } else {
        if (d->nargs < 0 || d->nargs > AD_FOREIGN_MAX_ARGS)
            return ad__err(fn, "nargs %d out of range 1..%d", d->nargs, AD_FOREIGN_MAX_ARGS);
        memset(sig, 0, sizeof *sig);
        sig->ret = d->ret;
        sig->nargs = d->nargs;
        for (int i = 0; i < d->nargs; i++) {
            if (d->args[i] < AD_C_VOID || d->args[i] > AD_C_FLOAT_PTR)
                return ad__err(fn, "args[%d] is not an ad_ctype", i);
            sig->args[i] = d->args[i];
        }
        if (d->ret < AD_C_VOID || d->ret > AD_C_FLOAT_PTR)
            return ad__err(fn, "ret is not an ad_ctype");
    }
    if (ad_ffi_classify(sig, err, sizeof err)) return ad__err(fn, "%s", err);
    if (!d->fn) return ad__err(fn, "fn (the function to call) is NULL");
    ad_ffi_format(sig, s, sizeof s);
    bool vec = sig->form == AD_FFI_VECTOR, intret = sig->ret == AD_C_INT || sig->ret == AD_C_LONG;
    bool any = d->grad != NULL;
    for (int i = 0; i < AD_FOREIGN_MAX_ARGS; i++) {
        bool has = d->partials[i] || d->partial_ops[i];
        if (!has) continue;
        any = true;
        if (vec) return ad__err(fn, "a vector function takes a gradient function (grad), "
                                    "not partials");
        if (i >= sig->nargs)
            return ad__err(fn, "partials[%d] given but \"%s\" takes %d argument%s", i, s,
                           sig->nargs, sig->nargs == 1 ? "" : "s");
        if (sig->args[i] != AD_C_DOUBLE && sig->args[i] != AD_C_FLOAT)
            return ad__err(fn, "partials[%d] given for argument %d, an %s", i, i,
                           ad_ffi_type_name(sig->args[i]));
        if (d->partials[i] && d->partial_ops[i])
            return ad__err(fn, "argument %d has both partials[%d] and partial_ops[%d]", i, i, i);
        if (d->partials[i] && d->grad)
            return ad__err(fn, "give partials or grad, not both");
        const ad_foreign *P = d->partial_ops[i];
        if (P && (P->sig.form != AD_FFI_SCALAR || !same_sig(&P->sig, sig))) {
            char ps[200];
            ad_ffi_format(&P->sig, ps, sizeof ps);
            return ad__err(fn, "partial_ops[%d] is \"%s\", expected \"%s\"", i, ps, s);
        }
    }
    if (any && intret)
        return ad__err(fn, "\"%s\" returns an integer, which has no derivatives", s);
    return 0;
}

static ad_foreign *build(const char *fn, const ad_foreign_desc *d)
{
    ad_ffi_sig sig;
    if (!d) return ad__err(fn, "desc is NULL"), NULL;
    if (check_desc(fn, d, &sig)) return NULL;
    ad_foreign *F = ad__calloc(1, sizeof *F);
    if (!F) return ad__err(fn, "out of memory"), NULL;
    F->sig = sig;
    F->fn = d->fn;
    F->grad = d->grad;
    bool numeric = sig.form == AD_FFI_VECTOR && !d->grad;
    F->nin = sig.form == AD_FFI_VECTOR ? 1 : sig.nargs;
    for (int i = 0; i < sig.nargs; i++) {
        F->partials[i] = d->partials[i];
        F->partial_ops[i] = d->partial_ops[i];
        F->in_dtype[i] = dtype_of(sig.args[i]);
        F->types_f[i] = F->types_g[i] = ffi_of(sig.args[i]);
        if (sig.form == AD_FFI_SCALAR && (sig.args[i] == AD_C_DOUBLE || sig.args[i] == AD_C_FLOAT))
            numeric |= !(d->partials[i] || d->partial_ops[i] || d->grad);
    }
    F->out_dtype = dtype_of(sig.ret);

    const char *name = d->name ? d->name : sig.name[0] ? sig.name : "f";
    const char *num = numeric ? " (numeric derivative)" : "";
    char sigs[200];
    ad_ffi_format(&sig, sigs, sizeof sigs);
    /* names and formulas in one block: value, partial, numeric partial */
    const char *fmt[6] = {"foreign:%s%s", "foreign:%s partial (numeric derivative)",
                          "foreign:%s numeric partial (numeric derivative)",
                          "y = %s(x...) via libffi, %s; dx_i = g df/dx_i%s",
                          "y = df/dx_i by your %s function; dx_j = g d/dx_j y (central "
                          "differences)",
                          "y = a derivative of %s by central differences; dx_j = g d/dx_j y "
                          "(one more level)"};
    /* each format is under 100 characters plus at most one name, and the
     * signature appears once: this bounds the six strings */
    size_t len = 6 * (strlen(name) + 200) + strlen(sigs), used = 0;
    F->strings = ad__malloc(len);
    if (!F->strings) {
        ad__free(F);
        return ad__err(fn, "out of memory"), NULL;
    }
    const char *str[6];
    for (int i = 0; i < 6; i++) {
        str[i] = F->strings + used;
        int w = i == 0   ? snprintf(F->strings + used, len - used, fmt[0], name, num)
              : i == 3   ? snprintf(F->strings + used, len - used, fmt[3], name, sigs,
                                    numeric ? " (central differences)" : "")
              : i == 4   ? snprintf(F->strings + used, len - used, fmt[4],
                                    d->grad ? "gradient" : "partial")
                         : snprintf(F->strings + used, len - used, fmt[i], name);
        assert(w >= 0 && (size_t)w < len - used);
        used += (size_t)w + 1;
    }
    for (int i = 0; i < 3; i++) {
        F->ops[i] = OP_FOREIGN;
        F->ops[i].name = str[i];
        F->ops[i].formula = str[3 + i];
    }
    /* an integer result is a step function: no backward, like comparisons */
    if (sig.ret == AD_C_INT || sig.ret == AD_C_LONG) F->ops[OP_VALUE].backward = NULL;

    ffi_type *rt = ffi_of(sig.ret);
    int ng;
    if (sig.form == AD_FFI_VECTOR) { /* g(const T *x, n, T *out) */
        F->types_g[2] = &ffi_type_pointer;
        ng = 3;
    } else { /* g(x_1, ..., x_m, R *out) */
        F->types_g[sig.nargs] = &ffi_type_pointer;
        ng = sig.nargs + 1;
    }
    if (ffi_prep_cif(&F->cif_f, FFI_DEFAULT_ABI, (unsigned)sig.nargs, rt, F->types_f) != FFI_OK ||
        ffi_prep_cif(&F->cif_g, FFI_DEFAULT_ABI, (unsigned)ng, &ffi_type_void, F->types_g) !=
            FFI_OK) {
        ad_foreign_free(F);
        return ad__err(fn, "libffi cannot prepare a call to \"%s\"", sigs), NULL;
    }
    return F;
}

ad_foreign *ad_foreign_new(const char *signature, ad_fn_ptr fn, const char *name)
{
    if (!signature) return ad__err("ad_foreign_new", "the signature is NULL"), NULL;
    ad_foreign_desc d = {.name = name, .signature = signature, .fn = fn};
    return build("ad_foreign_new", &d);
}

ad_foreign *ad_foreign_new_desc(const ad_foreign_desc *desc)
{
    return build("ad_foreign_new_desc", desc);
}

void ad_foreign_free(ad_foreign *f)
{
    if (!f) return;
    ad__free(f->strings);
    ad__free(f);
}

const char *ad_foreign_name(const ad_foreign *f)
{
    if (!f) return ad__err("ad_foreign_name", "f is NULL"), NULL;
    return f->ops[OP_VALUE].name;
}

int ad_foreign_nargs(const ad_foreign *f) { return f ? f->nin : -1; }

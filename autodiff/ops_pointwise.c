/* autodiff/ops_pointwise.c - elementwise ops: kernel, rule and formula side
 * by side, one block per op, listed in ad__ops_pointwise at the end.
 *
 * Every rule is written with the library's own ops, so under
 * AD_CREATE_GRAPH it is itself recorded and can be differentiated again.
 * Rules of broadcasting ops reduce with ad_sum_to so each gradient has its
 * input's shape. */
#include "internal.h"

/* ---- shared machinery --------------------------------------------------- */

/* Checks, broadcasts, allocates, runs f and records op (op may be NULL for
 * the non-differentiable comparisons). */
static ad_tensor *binary(const char *fn, const ad_op *op, ad_tensor *a, ad_tensor *b, ad_fn2 f)
{
    if (ad__check_arg(fn, "a", a, true) || ad__check_arg(fn, "b", b, true) ||
        ad__check_same_dtype(fn, a, b))
        return NULL;
    int nd;
    int64_t shape[AD_MAX_DIMS];
    if (ad__broadcast(fn, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    ad_tensor *in[2] = {a, b};
    ad_tape *tape;
    if (ad__result_tape(fn, 2, in, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, a->dtype, nd, shape);
    if (!out) return NULL;
    ad__map2(out, a, b, f);
    ad_node *n;
    if (op && ad__record(op, out, 2, in, &n)) return NULL;
    return out;
}

/* Same for one input; p (np <= 4 values) reaches f and is kept in the node
 * for the rule. */
static ad_tensor *unary(const char *fn, const ad_op *op, ad_tensor *x, ad_fn1 f,
                        const double *p, int np)
{
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    ad_tape *tape;
    if (ad__result_tape(fn, 1, &x, &tape)) return NULL;
    ad_tensor *out = ad__alloc(fn, tape, x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    ad__map1(out, x, f, p);
    ad_node *n;
    if (op && ad__record(op, out, 1, &x, &n)) return NULL;
    if (n)
        for (int i = 0; i < np; i++) n->fp[i] = p[i];
    return out;
}

/* A 0-d constant of a's dtype, combined with a by a binary op.  The constant
 * goes on the tape the result will; when there is none it is persistent and
 * freed here (nothing was recorded, so nothing refers to it). */
static ad_tensor *with_scalar(const char *fn, ad_tensor *a, double s,
                              ad_tensor *(*op)(ad_tensor *, ad_tensor *), bool scalar_first)
{
    if (ad__check_arg(fn, "a", a, true)) return NULL;
    ad_tape *tape = a->tape ? a->tape : ad_tape_active();
    ad_tensor *c = ad__alloc(fn, tape, a->dtype, 0, NULL);
    if (!c) return NULL;
    ad__st(c, 0, s);
    ad_tensor *r = scalar_first ? op(c, a) : op(a, c);
    if (!tape) ad_tensor_free(c);
    return r;
}

#define GRAD_TO(i, expr) \
    do { if (ad__needs_grad(n, i)) gin[i] = ad_sum_to((expr), n->in[i]->ndim, n->in[i]->shape); } while (0)

/* ---- add ----------------------------------------------------------------- */
static double f_add(double a, double b) { return a + b; }
static int add_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    GRAD_TO(0, g);
    GRAD_TO(1, g);
    return 0;
}
static const ad_op OP_ADD = {"add", "y = a + b; da = g, db = g", add_bw};
ad_tensor *ad_add(ad_tensor *a, ad_tensor *b) { return binary("ad_add", &OP_ADD, a, b, f_add); }

/* ---- sub ----------------------------------------------------------------- */
static double f_sub(double a, double b) { return a - b; }
static int sub_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    GRAD_TO(0, g);
    GRAD_TO(1, ad_neg(g));
    return 0;
}
static const ad_op OP_SUB = {"sub", "y = a - b; da = g, db = -g", sub_bw};
ad_tensor *ad_sub(ad_tensor *a, ad_tensor *b) { return binary("ad_sub", &OP_SUB, a, b, f_sub); }

/* ---- mul ----------------------------------------------------------------- */
static double f_mul(double a, double b) { return a * b; }
static int mul_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    GRAD_TO(0, ad_mul(g, n->in[1]));
    GRAD_TO(1, ad_mul(g, n->in[0]));
    return 0;
}
static const ad_op OP_MUL = {"mul", "y = a * b; da = g b, db = g a", mul_bw};
ad_tensor *ad_mul(ad_tensor *a, ad_tensor *b) { return binary("ad_mul", &OP_MUL, a, b, f_mul); }

/* ---- neg ----------------------------------------------------------------- */
static double f_neg(double x, const double *p) { (void)p; return -x; }
static int neg_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    (void)n;
    gin[0] = ad_neg(g);
    return 0;
}
static const ad_op OP_NEG = {"neg", "y = -x; dx = -g", neg_bw};
ad_tensor *ad_neg(ad_tensor *x) { return unary("ad_neg", &OP_NEG, x, f_neg, NULL, 0); }

/* ---- exp ----------------------------------------------------------------- */
static double f_exp(double x, const double *p) { (void)p; return exp(x); }
static int exp_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_mul(g, n->out); /* d e^x = e^x: reuse the output */
    return 0;
}
static const ad_op OP_EXP = {"exp", "y = e^x; dx = g y", exp_bw};
ad_tensor *ad_exp(ad_tensor *x) { return unary("ad_exp", &OP_EXP, x, f_exp, NULL, 0); }

/* ---- scalar forms ----------------------------------------------------------- */
ad_tensor *ad_add_scalar(ad_tensor *a, double s) { return with_scalar("ad_add_scalar", a, s, ad_add, false); }
ad_tensor *ad_sub_scalar(ad_tensor *a, double s) { return with_scalar("ad_sub_scalar", a, s, ad_sub, false); }
ad_tensor *ad_rsub_scalar(ad_tensor *a, double s) { return with_scalar("ad_rsub_scalar", a, s, ad_sub, true); }
ad_tensor *ad_mul_scalar(ad_tensor *a, double s) { return with_scalar("ad_mul_scalar", a, s, ad_mul, false); }

/* ---- comparisons (not differentiable) -------------------------------------- */
static double f_gt(double a, double b) { return a > b; }
static double f_ge(double a, double b) { return a >= b; }
static double f_lt(double a, double b) { return a < b; }
static double f_le(double a, double b) { return a <= b; }
static double f_eq(double a, double b) { return a == b; }
ad_tensor *ad_gt(ad_tensor *a, ad_tensor *b) { return binary("ad_gt", NULL, a, b, f_gt); }
ad_tensor *ad_ge(ad_tensor *a, ad_tensor *b) { return binary("ad_ge", NULL, a, b, f_ge); }
ad_tensor *ad_lt(ad_tensor *a, ad_tensor *b) { return binary("ad_lt", NULL, a, b, f_lt); }
ad_tensor *ad_le(ad_tensor *a, ad_tensor *b) { return binary("ad_le", NULL, a, b, f_le); }
ad_tensor *ad_eq(ad_tensor *a, ad_tensor *b) { return binary("ad_eq", NULL, a, b, f_eq); }

const ad_op *const ad__ops_pointwise[] = {
    &OP_ADD, &OP_SUB, &OP_MUL, &OP_NEG, &OP_EXP, NULL,
};

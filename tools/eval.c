/* tools/eval.c - adcalc's evaluation: the expression tree becomes
 * recorded tensor ops.
 *
 * Each variable is a 0-d float64 leaf that requires grad; each operator of
 * the tree becomes one library op (ad_mul, ad_sin, ...) on the active tape,
 * recorded in the order of the text.  ad_backward over that tape is then
 * the chain rule, node by node.  Where an op turns finite arguments into a
 * NaN or an infinity, a warning names it (the op where it is born, not the
 * ones that pass it on).
 */
#include "adcalc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const double PI = 3.14159265358979323846;
static const double E = 2.71828182845904523536;

typedef ad_tensor *(*unary_op)(ad_tensor *);
typedef ad_tensor *(*binary_op)(ad_tensor *, ad_tensor *);

static const struct {
    const char *name;
    unary_op f1;
    binary_op f2;
} FUNCS[] = {
    {"sin", ad_sin, NULL},   {"cos", ad_cos, NULL},         {"tan", ad_tan, NULL},
    {"exp", ad_exp, NULL},   {"log", ad_log, NULL},         {"sqrt", ad_sqrt, NULL},
    {"tanh", ad_tanh, NULL}, {"sigmoid", ad_sigmoid, NULL}, {"relu", ad_relu, NULL},
    {"abs", ad_abs, NULL},   {"pow", NULL, ad_pow},         {"max", NULL, ad_maximum},
    {"min", NULL, ad_minimum},
};

/* A constant lives on the active tape (the one being recorded on, or
 * gradcheck's); it does not require grad, so no gradient is computed for
 * it and ops between constants alone are not recorded at all. */
static ad_tensor *constant(double v, const char *label)
{
    ad_tensor *c = ad_scalar_tensor(ad_tape_active(), AD_FLOAT64, v);
    if (c && label && ad_set_label(c, label)) return NULL;
    return c;
}

/* Warns where a NaN or Inf is born: a result that is not finite although
 * every argument is ("log produced nan (argument -1)").  Later ops that
 * merely pass the NaN on stay quiet. */
#if defined(__GNUC__)
__attribute__((noinline)) /* keep its buffers out of eval's recursive frames */
#endif
static void check_result(const calc *c, const char *op, ad_tensor *r, ad_tensor *const *args,
                         int nargs)
{
    double v = ad_item(r);
    if (c->quiet || isfinite(v)) return;
    char list[160] = "", num[40];
    size_t len = 0;
    for (int i = 0; i < nargs; i++) {
        double a = ad_item(args[i]);
        if (!isfinite(a)) return;
        adcalc_number(a, num, sizeof num);
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", num);
    }
    adcalc_number(v, num, sizeof num);
    if (strcmp(op, "exp") == 0 && isinf(v))
        /* the usual cause of a NaN gradient: exp(x) * 0 in the backward pass */
        adcalc_warn("exp overflowed: exp(%s) is inf (e^x exceeds the largest double for "
                    "x > 709.78); rearrange so that exp's argument stays small, e.g. "
                    "sigmoid(x) for 1/(1+exp(-x)), which is computed through exp(-|x|)",
                    list);
    else
        adcalc_warn("%s produced %s (argument%s %s)", op, num, nargs > 1 ? "s" : "", list);
}

/* x^y where x = 0 = y and y depends on the variables: 0^y is 0 for y > 0,
 * 1 at y = 0 and inf for y < 0, so it has no derivative in y there (from
 * the right its slope is -inf), and the library's convention (PyTorch's),
 * d(a^b)/db = 0 where a = 0, would print a wrong 0.  x^x at 0 is this case.
 * (At x = 0 with y > 0 that convention is right: 0^y = 0 nearby.) */
static bool pow_domain_error(calc *c, const expr *e, ad_tensor *base, ad_tensor *exponent)
{
    /* an error, not a warning: c->quiet (--descend, --check's
     * re-evaluations) does not silence it */
    if (!ad_requires_grad(exponent) || ad_item(base) != 0 || ad_item(exponent) != 0)
        return false;
    c->domain_error = true;
    ad_set_error("pow at column %d: base 0 and exponent 0, and the exponent depends on the "
                 "variables: 0^y has no derivative in y at y = 0 (0^y is 0 for y > 0, 1 at "
                 "y = 0 and inf for y < 0; from the right its slope is -inf)",
                 e->column);
    return true;
}

/* Applies one binary operator of the expression. */
static ad_tensor *binary_op_of(calc *c, const expr *e, ad_tensor *a, ad_tensor *b)
{
    const char *op;
    ad_tensor *r;
    switch (e->op) {
    case '+': op = "add", r = ad_add(a, b); break;
    case '-': op = "sub", r = ad_sub(a, b); break;
    case '*': op = "mul", r = ad_mul(a, b); break;
    case '/': op = "div", r = ad_div(a, b); break;
    default:
        if (pow_domain_error(c, e, a, b)) return NULL;
        op = "pow", r = ad_pow(a, b);
        break;
    }
    ad_tensor *args[2] = {a, b};
    if (r) check_result(c, op, r, args, 2);
    return r;
}

/* Evaluates e with the variables bound to in[].  The arguments are
 * evaluated left to right in separate statements (C leaves the order of
 * a function's arguments unspecified), so the tape records the ops in the
 * order the expression is written. */
static ad_tensor *eval(calc *c, const expr *e, ad_tensor *const *in)
{
    ad_tensor *a[EXPR_MAX_ARGS] = {NULL, NULL}, *r = NULL;
    const char *op = NULL;
    switch (e->kind) {
    case EXPR_NUM:
        return constant(e->value, e->text);
    case EXPR_VAR:
        for (int i = 0; i < c->n; i++)
            if (strcmp(c->names[i], e->text) == 0) return in[i];
        if (strcmp(e->text, "pi") == 0) return constant(PI, "pi");
        if (strcmp(e->text, "e") == 0) return constant(E, "e");
        ad_set_error("variable '%s' has no value", e->text);
        return NULL;
    case EXPR_BINARY: {
        /* A chain a+b+c+... is a left-leaning spine of binary nodes, as
         * long as the sum: walk it with a loop, from the innermost
         * (leftmost) operator out, recursing only into right operands
         * (see EXPR_MAX_HEIGHT).  The ops are recorded in the order of
         * the text, as with plain recursion. */
        size_t n = 0;
        for (const expr *s = e; s->kind == EXPR_BINARY; s = s->args[0]) n++;
        const expr **spine = malloc(n * sizeof *spine);
        if (!spine) {
            ad_set_error("out of memory");
            return NULL;
        }
        size_t k = n;
        for (const expr *s = e; s->kind == EXPR_BINARY; s = s->args[0]) spine[--k] = s;
        r = eval(c, spine[0]->args[0], in);
        for (k = 0; k < n && r; k++) {
            ad_tensor *b = eval(c, spine[k]->args[1], in);
            r = b ? binary_op_of(c, spine[k], r, b) : NULL;
        }
        free(spine);
        return r;
    }
    default:
        break;
    }
    for (int i = 0; i < e->nargs; i++)
        if (!(a[i] = eval(c, e->args[i], in))) return NULL;
    if (e->kind == EXPR_NEG) {
        op = "neg";
        r = ad_neg(a[0]);
    } else {
        if (strcmp(e->text, "pow") == 0 && pow_domain_error(c, e, a[0], a[1])) return NULL;
        for (size_t i = 0; i < sizeof FUNCS / sizeof FUNCS[0] && !op; i++) {
            if (strcmp(FUNCS[i].name, e->text)) continue;
            op = FUNCS[i].name;
            r = FUNCS[i].f1 ? FUNCS[i].f1(a[0]) : FUNCS[i].f2(a[0], a[1]);
        }
        if (!op) {
            ad_set_error("no such function '%s'", e->text);
            return NULL;
        }
    }
    if (r) check_result(c, op, r, a, e->nargs);
    return r;
}

ad_tensor *adcalc_eval(ad_tensor *const *inputs, int n, void *ctx)
{
    (void)n;
    calc *c = ctx;
    return eval(c, c->root, inputs);
}


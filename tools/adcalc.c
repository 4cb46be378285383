/* tools/adcalc.c - a calculator that differentiates.
 *
 *     $ adcalc 'x*y + sin(x)' x=2 y=3
 *     f = 6.909297426825682
 *     df/dx = 2.5838531634528574
 *     df/dy = 2
 *
 * adcalc parses the expression (expr.c), then evaluates it with the
 * library's tensor ops on 0-d float64 tensors.  The variables are leaves
 * that require grad, so every op that touches them is recorded on a tape;
 * ad_backward() then walks the tape in reverse and applies the chain rule,
 * which leaves df/dx in each variable's grad.  That is reverse-mode
 * automatic differentiation: one backward pass gives the derivative with
 * respect to every input at once, for about the cost of evaluating f.
 *
 * --hessian records the backward pass itself (AD_CREATE_GRAPH): each
 * gradient df/dx_i is then an ordinary recorded result, and differentiating
 * it once more (ad_gradients) gives row i of the Hessian.  No second-order
 * rules exist anywhere: the derivative of the backward pass is computed by
 * the same first-order rules, which is how autodiff reaches any order.
 *
 * See docs/adcalc.md for the full reference, and --trace to watch the
 * backward pass work.
 */
#include "adcalc.h"
#include "expr.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_OK = 0, EXIT_NONFINITE = 1, EXIT_USAGE = 2, EXIT_CHECK = 3, EXIT_INTERNAL = 4 };
/* Not an exit status: a derivative that does not exist, reported as an
 * error and then exiting with EXIT_NONFINITE. */
enum { EXIT_DOMAIN = 100 };


/* ---- warnings and numbers ---------------------------------------------------------- */

static char **warnings;
static int nwarnings;

void adcalc_warn(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "adcalc: warning: %s\n", msg);
    char **w = realloc(warnings, (size_t)(nwarnings + 1) * sizeof *w);
    if (!w) return;
    warnings = w;
    warnings[nwarnings] = malloc(strlen(msg) + 1);
    if (warnings[nwarnings]) strcpy(warnings[nwarnings++], msg);
}

void adcalc_number(double v, char *buf, size_t size)
{
    if (!buf || size == 0) return;
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "inf" : "-inf");
        return;
    }
    /* %g switches to an exponent when the precision is below the number
     * of integer digits ("1e+01" for 10), so ask for at least those. */
    int intdigits = fabs(v) >= 1 && fabs(v) < 1e17 ? (int)floor(log10(fabs(v))) + 1 : 1;
    for (int p = 1; p <= 17; p++) { /* 17 digits always read back exactly */
        snprintf(buf, size, "%.*g", p > intdigits ? p : intdigits, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* ---- output ----------------------------------------------------------------------- */

void adcalc_json_number(FILE *out, double v)
{
    if (isfinite(v)) fprintf(out, "%.17g", v);
    else fputs("null", out);
}

void adcalc_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch == '\n') fputs("\\n", out);
        else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
        else fputc(ch, out);
    }
    fputc('"', out);
}

static char *copy_string(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    return d ? strcpy(d, s) : NULL;
}

/* Explains each null of the JSON output in its "warnings". */
static void warn_nonfinite(const char *what, double v)
{
    if (!isfinite(v)) adcalc_warn("%s is %s", what, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
}

typedef struct result {
    double value;
    double *grad; /* n */
    double *hess; /* n*n, row-major, or NULL */
    int check;    /* -2 not run, else 1 pass, 0 fail, -1 error (as ad_gradcheck) */
    double check_err; /* the largest |tape - numeric| over the variables */
    int worst;        /* the variable with the worst ratio, -1 if none */
    char *check_msg;
    ad_gradcheck_result *checks; /* --check: one per variable */
} result;

static void print_json(const calc *c, const result *r, tracer *tr)
{
    char what[256];
    warn_nonfinite("value", r->value);
    for (int i = 0; i < c->n; i++) {
        snprintf(what, sizeof what, "df/d%s", c->names[i]);
        warn_nonfinite(what, r->grad[i]);
    }
    for (int i = 0; r->hess && i < c->n; i++)
        for (int j = 0; j < c->n; j++) {
            snprintf(what, sizeof what, "d2f/d%s d%s", c->names[i], c->names[j]);
            warn_nonfinite(what, r->hess[i * c->n + j]);
        }
    if (r->check != -2 && r->worst >= 0) {
        snprintf(what, sizeof what, "the numeric df/d%s of gradcheck", c->names[r->worst]);
        warn_nonfinite(what, r->checks[r->worst].numeric);
    }
    printf("{\"value\": ");
    adcalc_json_number(stdout, r->value);
    printf(", \"grad\": [");
    for (int i = 0; i < c->n; i++) {
        if (i) printf(", ");
        adcalc_json_number(stdout, r->grad[i]);
    }
    printf("]");
    if (r->hess) {
        printf(", \"hessian\": [");
        for (int i = 0; i < c->n; i++) {
            printf("%s[", i ? ", " : "");
            for (int j = 0; j < c->n; j++) {
                if (j) printf(", ");
                adcalc_json_number(stdout, r->hess[i * c->n + j]);
            }
            printf("]");
        }
        printf("]");
    }
    printf(", \"variables\": [");
    for (int i = 0; i < c->n; i++) {
        if (i) printf(", ");
        adcalc_json_string(stdout, c->names[i]);
    }
    printf("]");
    if (r->check != -2) {
        printf(", \"gradcheck\": {\"passed\": %s, \"max_error\": ", r->check == 1 ? "true" : "false");
        adcalc_json_number(stdout, r->check_err);
        if (r->worst >= 0) {
            /* the entry closest to failing (or the worst failure) */
            const ad_gradcheck_result *w = &r->checks[r->worst];
            printf(", \"worst\": {\"variable\": ");
            adcalc_json_string(stdout, c->names[r->worst]);
            printf(", \"input\": %d, \"element\": %lld, \"analytic\": ", r->worst,
                   (long long)w->element);
            adcalc_json_number(stdout, w->analytic);
            printf(", \"numeric\": ");
            adcalc_json_number(stdout, w->numeric);
            printf(", \"abs_error\": ");
            adcalc_json_number(stdout, w->abs_err);
            printf(", \"rel_error\": ");
            adcalc_json_number(stdout, w->rel_err);
            printf(", \"step\": ");
            adcalc_json_number(stdout, w->step);
            printf(", \"richardson\": %s}", w->richardson ? "true" : "false");
        }
        if (r->check_msg) {
            printf(", \"message\": ");
            adcalc_json_string(stdout, r->check_msg);
        }
        printf("}");
    }
    if (tracer_json(tr)) printf(", \"trace\": %s", tracer_json(tr));
    if (nwarnings) {
        printf(", \"warnings\": [");
        for (int i = 0; i < nwarnings; i++) {
            if (i) printf(", ");
            adcalc_json_string(stdout, warnings[i]);
        }
        printf("]");
    }
    printf("}\n");
}

static void print_text(const calc *c, const result *r)
{
    char num[40];
    adcalc_number(r->value, num, sizeof num);
    printf("f = %s\n", num);
    for (int i = 0; i < c->n; i++) {
        adcalc_number(r->grad[i], num, sizeof num);
        printf("df/d%s = %s\n", c->names[i], num);
    }
    if (!r->hess || c->n == 0) return;
    /* Rows and columns in the variables' order, each column as wide as
     * its widest entry. */
    printf("hessian (rows and columns: ");
    for (int i = 0; i < c->n; i++) printf("%s%s", i ? ", " : "", c->names[i]);
    printf(")\n");
    int *width = calloc((size_t)c->n, sizeof *width);
    for (int i = 0; width && i < c->n * c->n; i++) {
        adcalc_number(r->hess[i], num, sizeof num);
        int w = (int)strlen(num);
        if (w > width[i % c->n]) width[i % c->n] = w;
    }
    for (int i = 0; i < c->n; i++) {
        printf("  [");
        for (int j = 0; j < c->n; j++) {
            adcalc_number(r->hess[i * c->n + j], num, sizeof num);
            printf(" %*s%s", width ? width[j] : 0, num, j + 1 < c->n ? "," : " ]\n");
        }
    }
    free(width);
}

static void print_check(const calc *c, const result *r)
{
    const ad_gradcheck_opts go = AD_GRADCHECK_DEFAULTS;
    if (c->n == 0) {
        printf("gradcheck: FAIL (%s)\n", r->check_msg ? r->check_msg : "nothing was checked");
        return;
    }
    printf("gradcheck: %s (central differences with step h = %g max(1, |x|), then smaller steps "
           "and Richardson extrapolation; atol %g, rtol %g)\n",
           r->check == 1 ? "pass" : r->check == 0 ? "FAIL" : "ERROR", go.eps, go.atol, go.rtol);
    for (int i = 0; i < c->n; i++) {
        const ad_gradcheck_result *w = &r->checks[i];
        if (w->input < 0) continue; /* the check of this variable could not run */
        /* fabs: printf shows a NaN's meaningless sign bit as "-nan" */
        printf("  df/d%s: tape %.15g, numeric %.15g (%sstep %.3g), |difference| %.2g, "
               "relative %.2g%s\n",
               c->names[i], r->grad[i], isnan(w->numeric) ? fabs(w->numeric) : w->numeric,
               w->richardson ? "Richardson, " : "", w->step, fabs(w->abs_err), fabs(w->rel_err),
               w->failed ? ": FAIL" : w->infinite ? " (the same infinity)" : "");
    }
    if (r->check_msg) printf("  %s\n", r->check_msg);
}

/* ---- the computation ---------------------------------------------------------------- */

typedef struct options {
    bool hessian, json, trace, check, dot;
    adcalc_descent descent; /* method NULL: no --descend */
    int grid;               /* --grid=N: points per axis, 0 without */
    bool edge_derivatives; /* --edge-derivatives: local derivatives on --dot's arrows */
    const char *dot_file; /* NULL: standard output */
    const char *expression;
} options;

/* --check: ad_gradcheck of f with respect to each variable alone, so each
 * variable gets its own numeric derivative and verdict from the library
 * (relative step, retries near domain edges, non-finite values failing).
 * The copies are persistent leaves; only the one checked requires grad. */
static int check_variables(calc *c, result *r)
{
    r->checks = calloc((size_t)c->n + 1, sizeof *r->checks);
    ad_tensor **in = calloc((size_t)c->n + 1, sizeof *in);
    if (!r->checks || !in) {
        free(in);
        return ad_set_error("out of memory");
    }
    r->check = 1;
    r->check_err = 0;
    r->worst = -1;
    if (c->n == 0) {
        /* There is nothing to compare: a check that compared nothing does
         * not pass. */
        r->check = 0;
        r->check_err = NAN;
        r->check_msg = copy_string("nothing was checked: the expression has no variables");
        free(in);
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < c->n && rc == 0; i++)
        if (!(in[i] = ad_scalar_tensor(NULL, AD_FLOAT64, c->values[i]))) rc = -1;
    c->quiet = true; /* the warnings were given already */
    double worst_ratio = -1;
    for (int i = 0; i < c->n && rc == 0; i++) {
        if (ad_set_requires_grad(in[i], true)) {
            rc = -1;
            break;
        }
        ad_clear_error();
        int ok = ad_gradcheck_ex(adcalc_eval, c, c->n, in, NULL, &r->checks[i]);
        ad_set_requires_grad(in[i], false);
        const ad_gradcheck_result *w = &r->checks[i];
        if (ok != 1 && r->check != -1) {
            /* the message of the worst failure, or of the first error */
            if (ok == -1 || w->ratio > worst_ratio || !r->check_msg) {
                free(r->check_msg);
                r->check_msg = copy_string(ad_error() ? ad_error() : "gradcheck failed");
            }
            r->check = ok;
        }
        if (w->input >= 0 && (r->worst < 0 || w->ratio > worst_ratio)) {
            r->worst = i;
            worst_ratio = w->ratio;
        }
        if (w->input >= 0 && !(w->abs_err <= r->check_err)) r->check_err = w->abs_err; /* NaN wins */
    }
    c->quiet = false;
    for (int i = 0; i < c->n; i++) ad_tensor_free(in[i]);
    free(in);
    return rc;
}

static int write_dot(ad_tensor *f, size_t nforward, bool edge_derivatives, FILE *out)
{
    ad_tape *tape = ad_tensor_tape(f);
    ad_tensor **outs = calloc(nforward + 1, sizeof *outs), **adj = calloc(nforward + 1, sizeof *adj);
    int m = 0, rc = -1;
    if (!outs || !adj) goto done;
    for (size_t i = 0; tape && i < nforward; i++) {
        ad_node_info info;
        if (ad_tape_node_info(tape, i, &info)) goto done;
        if (info.on_grad_path) outs[m++] = info.output;
    }
    /* The adjoint df/dv of every intermediate v, so the picture shows the
     * gradient at every node, not only at the leaves. */
    if (m && ad_gradients(f, NULL, m, outs, adj, AD_RETAIN_GRAPH)) goto done;
    if (ad_tensor_node_index(f) >= 0 && ad_set_label(f, "f")) goto done;
    ad_dot_opts o = AD_DOT_DEFAULTS;
    o.precision = 6;
    o.name = "adcalc";
    o.ngrads = m;
    o.grad_of = outs;
    o.grads = adj;
    o.edge_derivatives = edge_derivatives;
    rc = ad_graph_dot(out, &f, 1, &o);
done:
    free(outs);
    free(adj);
    return rc;
}

/* The variables: leaves that require grad, named for traces and graphs. */
static int make_variables(const calc *c, ad_tape *tape, ad_tensor **vars)
{
    for (int i = 0; i < c->n; i++) {
        vars[i] = ad_scalar_tensor(tape, AD_FLOAT64, c->values[i]);
        if (!vars[i] || ad_set_requires_grad(vars[i], true) || ad_set_label(vars[i], c->names[i]))
            return -1;
    }
    return 0;
}

/* The forward pass, recorded on the active tape; NULL on error. */
static ad_tensor *forward(calc *c, const options *opt, ad_tensor **vars, tracer *tr)
{
    if (opt->trace && !opt->json) {
        printf("forward pass: each op computes its output from values already known\n");
        for (int i = 0; i < c->n; i++) printf("  input     %s = %.6g\n", c->names[i], c->values[i]);
    }
    ad_set_trace(tracer_event, tr);
    return adcalc_eval(vars, c->n, c);
}

/* One backward pass: df/dx for every variable x at once, into r->grad. */
static int backward(const calc *c, const options *opt, ad_tensor *f, ad_tensor **vars,
                    tracer *tr, result *r)
{
    if (ad_requires_grad(f)) {
        if (opt->trace && !opt->json)
            printf("backward pass: g is df/d(node); each step adds g * d(node)/d(input) to the "
                   "input's g\n");
        unsigned flags = AD_RETAIN_GRAPH | (opt->hessian ? AD_CREATE_GRAPH : 0);
        if (ad_backward(f, NULL, flags)) return -1;
    } else if (opt->trace && !opt->json) {
        printf("  (nothing was recorded: f does not depend on any variable)\n");
    }
    ad_set_trace(NULL, NULL);
    for (int i = 0; i < c->n; i++) {
        ad_tensor *g = ad_tensor_grad(vars[i]);
        r->grad[i] = g ? ad_item(g) : 0.0; /* no path from x to f: df/dx = 0 */
    }
    if (opt->trace) tracer_summary(tr, c->n, vars, c->names, r->grad, NULL);
    return 0;
}

/* The Hessian: with AD_CREATE_GRAPH each gradient df/dx_i is itself a
 * recorded result, a function of the variables; its gradient is row i
 * of the Hessian, d2f/dx_i dx_j.  A gradient that was not recorded
 * (it does not depend on the variables: f linear in them) is constant,
 * so its row is 0. */
static int hessian(const calc *c, const options *opt, ad_tensor **vars, result *r,
                   const ad_tape *tape, size_t nforward)
{
    r->hess = calloc((size_t)c->n * (size_t)c->n + 1, sizeof *r->hess);
    ad_tensor **row = calloc((size_t)c->n + 1, sizeof *row);
    /* --json --trace carries the first backward pass only */
    bool show = opt->trace && !opt->json;
    if (show) {
        printf("recorded by the backward pass (AD_CREATE_GRAPH): its chain-rule steps are ops "
               "too, so each df/dx_i is a node of the tape\n");
        tracer *list = tracer_new(stdout);
        if (!list) {
            free(row);
            return ad_set_error("out of memory");
        }
        tracer_list_nodes(list, tape, nforward, ad_tape_num_nodes(tape));
        tracer_free(list);
        printf("second backward passes: a backward pass from df/dx_i gives row i of the "
               "hessian, d2f/dx_i dx_j\n");
    }
    for (int i = 0; r->hess && row && i < c->n; i++) {
        ad_tensor *g = ad_tensor_grad(vars[i]);
        if (!g || !ad_requires_grad(g)) {
            if (show)
                printf("  row %s: df/d%s does not depend on the variables; the row is 0\n",
                       c->names[i], c->names[i]);
            continue;
        }
        tracer *tr = NULL;
        if (show) {
            char name[100];
            tensor_name(g, name, sizeof name);
            printf("  row %s: from df/d%s = %s back to the variables\n", c->names[i], c->names[i],
                   name);
            if (!(tr = tracer_new(stdout))) {
                free(row);
                return ad_set_error("out of memory");
            }
            ad_set_trace(tracer_event, tr);
        }
        int rc = ad_gradients(g, NULL, c->n, vars, row, AD_RETAIN_GRAPH);
        ad_set_trace(NULL, NULL);
        for (int j = 0; rc == 0 && j < c->n; j++)
            r->hess[i * c->n + j] = row[j] ? ad_item(row[j]) : 0;
        if (tr)
            tracer_summary(tr, c->n, vars, c->names, r->hess + (size_t)i * (size_t)c->n,
                           c->names[i]);
        tracer_free(tr);
        if (rc) {
            free(row);
            return -1;
        }
    }
    bool ok = r->hess && row;
    free(row);
    if (!ok) return ad_set_error("out of memory");
    /* d2f/dxi dxj and d2f/dxj dxi come from two different backward passes
     * (rows i and j) and may differ in the last bits; print their mean, so
     * that the matrix is exactly symmetric, as the true Hessian is.  Where
     * they differ by more (x^y at x = 0, y = 1: 1 and 0), f is not twice
     * continuously differentiable there and the mixed partial has no one
     * value: a warning and NaN, not a mean that is neither. */
    for (int i = 0; i < c->n; i++)
        for (int j = i + 1; j < c->n; j++) {
            double a = r->hess[i * c->n + j], b = r->hess[j * c->n + i], scale = 0;
            for (int k = 0; k < c->n; k++) {
                scale = fmax(scale, fabs(r->hess[i * c->n + k]));
                scale = fmax(scale, fabs(r->hess[j * c->n + k]));
            }
            double m = 0.5 * (a + b);
            if (fabs(a - b) > 1e-8 * scale) {
                adcalc_warn("d2f/d%sd%s: row %s gives %.17g and row %s gives %.17g: the mixed "
                            "partial derivatives differ, so f is not twice differentiable here",
                            c->names[i], c->names[j], c->names[i], a, c->names[j], b);
                m = NAN;
            }
            r->hess[i * c->n + j] = r->hess[j * c->n + i] = m;
        }
    return 0;
}

/* --dot and --dot=FILE: the graph to standard output or to FILE. */
static int dot_output(const options *opt, ad_tensor *f, size_t nforward)
{
    FILE *out = opt->dot_file ? fopen(opt->dot_file, "w") : stdout;
    if (!out) return ad_set_error("cannot open '%s' for writing", opt->dot_file);
    int rc = write_dot(f, nforward, opt->edge_derivatives, out);
    if (out != stdout && fclose(out) && rc == 0)
        rc = ad_set_error("error writing '%s'", opt->dot_file);
    return rc;
}

static int exit_status(const calc *c, const result *r)
{
    bool finite = isfinite(r->value);
    for (int i = 0; i < c->n; i++) finite &= isfinite(r->grad[i]) != 0;
    for (int i = 0; r->hess && i < c->n * c->n; i++) finite &= isfinite(r->hess[i]) != 0;
    return !finite ? EXIT_NONFINITE : (r->check == 0 || r->check == -1) ? EXIT_CHECK : EXIT_OK;
}

/* --descend: the path of the optimiser instead of one gradient. */
static int descend(calc *c, const options *opt)
{
    c->quiet = true; /* a diverging path would warn at every step */
    int rc = adcalc_descend(&opt->descent, c->n, c->names, c->values, adcalc_eval, c, stdout);
    if (rc < 0) {
        const char *msg = ad_error() ? ad_error() : "internal error";
        if (strncmp(msg, "adcalc: ", 8) == 0) msg += 8; /* one prefix per message */
        fprintf(stderr, "adcalc: %s\n", msg);
        /* a derivative that does not exist on the path: as without --descend */
        return c->domain_error ? EXIT_NONFINITE : EXIT_INTERNAL;
    }
    return rc ? EXIT_NONFINITE : EXIT_OK;
}

/* --grid: f over the ranges. */
static int grid(calc *c, const options *opt)
{
    c->quiet = true;
    if (adcalc_grid(opt->grid, c->n, c->names, c->values, c->hi, adcalc_eval, c, opt->json, stdout)) {
        fprintf(stderr, "%s\n", ad_error() ? ad_error() : "adcalc: internal error");
        return ad_error() && strstr(ad_error(), "--grid") ? EXIT_USAGE : EXIT_INTERNAL;
    }
    return EXIT_OK;
}

static int run(calc *c, const options *opt)
{
    if (opt->descent.method) return descend(c, opt);
    if (opt->grid) return grid(c, opt);
    int status = EXIT_INTERNAL;
    result r = {NAN, calloc((size_t)c->n + 1, sizeof(double)), NULL, -2, NAN, -1, NULL, NULL};
    ad_tensor **vars = calloc((size_t)c->n + 1, sizeof *vars);
    ad_tape *tape = ad_tape_new();
    /* With --json the trace goes into the JSON object, not to stdout. */
    trace_node_names(c->n, (const char *const *)c->names);
    tracer *tr = tracer_new(opt->trace && !opt->json ? stdout : NULL);
    if (tr && opt->trace && opt->json) tracer_record_json(tr);
    ad_tape *prev = ad_tape_activate(tape);
    ad_tensor *f = NULL;
    size_t nforward = 0;
    if (!r.grad || !vars || !tape || !tr) {
        ad_set_error("out of memory");
        goto done;
    }
    if (make_variables(c, tape, vars)) goto done;
    if (!(f = forward(c, opt, vars, tr))) {
        if (c->domain_error) status = EXIT_DOMAIN;
        goto done;
    }
    nforward = ad_tape_num_nodes(tape);
    r.value = ad_item(f);
    if (backward(c, opt, f, vars, tr, &r)) goto done;
    if (opt->hessian && hessian(c, opt, vars, &r, tape, nforward)) goto done;
    if (opt->check && check_variables(c, &r)) goto done;
    if (opt->dot && dot_output(opt, f, nforward)) goto done;

    if (opt->json) {
        print_json(c, &r, tr);
    } else if (!opt->dot || opt->dot_file) {
        print_text(c, &r);
        if (opt->check) print_check(c, &r);
    }
    status = exit_status(c, &r);
done:
    if (status == EXIT_INTERNAL || status == EXIT_DOMAIN) {
        const char *msg = ad_error() ? ad_error() : "internal error";
        if (strncmp(msg, "adcalc: ", 8) == 0) msg += 8; /* one prefix per message */
        fprintf(stderr, "adcalc: %s\n", msg);
    }
    if (status == EXIT_DOMAIN) status = EXIT_NONFINITE;
    ad_set_trace(NULL, NULL);
    ad_tape_activate(prev);
    ad_tape_free(tape);
    tracer_free(tr);
    free(vars);
    free(r.grad);
    free(r.hess);
    free(r.check_msg);
    free(r.checks);
    return status;
}

/* ---- command line ------------------------------------------------------------------- */

static const char USAGE[] = "Usage: adcalc [OPTIONS] EXPRESSION [NAME=VALUE ...]\n";

static const char HELP[] =
    "Evaluates EXPRESSION at the point given by NAME=VALUE ... and prints its value\n"
    "and its gradient with respect to every variable, in the order the variables are\n"
    "given, computed by reverse-mode automatic differentiation (backpropagation).\n"
    "\n"
    "Options:\n"
    "  --hessian     also print the Hessian (all second derivatives), obtained by\n"
    "                differentiating the recorded backward pass\n"
    "  --json        print one JSON object {\"value\": v, \"grad\": [...],\n"
    "                \"hessian\": [[...]], \"variables\": [...]}; NaN and Inf are\n"
    "                written as null and explained in a \"warnings\" array\n"
    "  --trace       print the tape step by step: the forward pass node by node,\n"
    "                then each backward step with the chain-rule term it adds;\n"
    "                with --hessian also the ops the backward pass recorded and\n"
    "                the second backward pass of each row; with --json, as a\n"
    "                \"trace\" array of steps in the JSON object\n"
    "  --descend=M   minimise the expression from the given point with the\n"
    "                optimiser M (sgd, momentum 0.9, or adam) and print the path,\n"
    "                one line per step (\"step x y f\"), or as JSON with --json\n"
    "  --lr=X        the learning rate of --descend (default 0.1)\n"
    "  --steps=N     the number of --descend steps (default 100)\n"
    "  --grid=N      print f on an N x N grid over the variables given as\n"
    "                ranges NAME=LO:HI (one or two), for contour plots: \"x y f\"\n"
    "                lines, a blank line between rows, or JSON with --json\n"
    "  --check       compare the gradient with central differences (gradcheck,\n"
    "                step 1e-6 max(1, |x|), smaller steps near a domain edge); fails\n"
    "                when they disagree, when the numeric derivative is not finite,\n"
    "                or when there are no variables (nothing was checked)\n"
    "  --dot         print only the computation graph, in Graphviz DOT:\n"
    "                  adcalc --dot 'x*y + sin(x)' x=2 y=3 | dot -Tpng > f.png\n"
    "  --dot=FILE    write the graph to FILE and print the results as usual\n"
    "  --edge-derivatives  label each arrow of the --dot graph with the local\n"
    "                derivative d(op)/d(input); df/dv is the sum over v's arrows of\n"
    "                the label times the adjoint (grad) of the op it points to\n"
    "  -h, --help    print this help and exit\n"
    "  --version     print the version and exit\n"
    "  --            end of options (an EXPRESSION starting with '-' may also be\n"
    "                given directly, except \"-h\")\n"
    "\n"
    "Expressions: numbers (2, 2.5, .5, 1e-3, 2.5E+10), variables ([A-Za-z_][A-Za-z0-9_]*),\n"
    "+ - * / and ^ (power: right-associative, binds tighter than unary minus, so\n"
    "-x^2 = -(x^2) and 2^3^2 = 2^9), parentheses, the functions sin cos tan exp log\n"
    "sqrt tanh sigmoid relu abs, pow(a,b) max(a,b) min(a,b), and the constants pi\n"
    "and e (a NAME=VALUE for pi or e makes it a variable instead).  The printed\n"
    "notation works too: x·y, x×y, x÷y, x − y (U+2212), x², x³, π.  Numbers and\n"
    "values are decimal (hexadecimal is rejected).  Sums and products may have any\n"
    "number of terms.\n"
    "At a kink the derivative is chosen as PyTorch does: relu'(0) = 0, abs'(0) = 0,\n"
    "and max/min give half the gradient to each argument on a tie.  0^0 = 1, and\n"
    "x^0 has derivative 0; but x^y at x = y = 0 with y depending on the variables\n"
    "(x^x at 0) has no derivative in y: an error, exit status 1.  The Hessian's two\n"
    "computations of each mixed partial are averaged, so it is exactly symmetric.\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  the value or a derivative is NaN or infinite (a warning names the op), or\n"
    "     a derivative does not exist (0^y at y = 0)\n"
    "  2  usage error, syntax error, missing or malformed variable value\n"
    "  3  --check failed: the gradient and the central differences disagree, the\n"
    "     numeric derivative is not finite, or there was nothing to check\n"
    "  4  internal error (out of memory, cannot write the --dot file)\n";

static int usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("adcalc: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%sTry 'adcalc --help' for more information.\n", USAGE);
    return EXIT_USAGE;
}

/* The expression and a caret under column col (1-based).  Tabs are copied
 * into the caret line so the caret stays under its character. */
static void show_column(const char *src, int col)
{
    fprintf(stderr, "  %s\n  ", src);
    /* col counts characters: UTF-8 continuation bytes take no column */
    for (int i = 0, c = 1; c < col && src[i]; i++) {
        if (((unsigned char)src[i + 1] & 0xc0) == 0x80 && (unsigned char)src[i] >= 0x80) continue;
        fputc(src[i] == '\t' ? '\t' : ' ', stderr);
        c++;
    }
    fputs("^\n", stderr);
}

static bool is_name(const char *s, size_t len)
{
    if (len == 0 || !(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

/* The first variable of the expression (in reading order) that has no
 * value and is not a constant, or NULL. */
static const expr *unbound(const calc *c, const expr *e)
{
    if (e->kind == EXPR_VAR) {
        for (int i = 0; i < c->n; i++)
            if (strcmp(c->names[i], e->text) == 0) return NULL;
        return strcmp(e->text, "pi") && strcmp(e->text, "e") ? e : NULL;
    }
    if (e->kind == EXPR_BINARY) {
        /* along the left spine by a loop (see eval); the leftmost wins */
        const expr *first = NULL;
        for (; e->kind == EXPR_BINARY; e = e->args[0]) {
            const expr *u = unbound(c, e->args[1]);
            if (u) first = u;
        }
        const expr *u = unbound(c, e);
        return u ? u : first;
    }
    for (int i = 0; i < e->nargs; i++) {
        const expr *u = unbound(c, e->args[i]);
        if (u) return u;
    }
    return NULL;
}

static bool uses(const expr *e, const char *name)
{
    for (; e->kind == EXPR_BINARY; e = e->args[0]) /* the left spine by a loop */
        if (uses(e->args[1], name)) return true;
    if (e->kind == EXPR_VAR) return strcmp(e->text, name) == 0;
    for (int i = 0; i < e->nargs; i++)
        if (uses(e->args[i], name)) return true;
    return false;
}

/* Reads NAME=VALUE arguments into c->names/c->values. */
static int bind(calc *c, int argc, char **argv)
{
    c->names = calloc((size_t)argc + 1, sizeof *c->names);
    c->values = calloc((size_t)argc + 1, sizeof *c->values);
    if (c->ranges) c->hi = calloc((size_t)argc + 1, sizeof *c->hi);
    if (!c->names || !c->values || (c->ranges && !c->hi)) {
        fprintf(stderr, "adcalc: out of memory\n");
        return EXIT_INTERNAL;
    }
    for (int a = 0; a < argc; a++) {
        char *arg = argv[a], *eq = strchr(arg, '=');
        if (!eq) return usage_error("expected NAME=VALUE, got '%s'", arg);
        if (!is_name(arg, (size_t)(eq - arg)))
            return usage_error("'%.*s' is not a variable name (in '%s')", (int)(eq - arg), arg,
                               arg);
        *eq = '\0'; /* argv is ours to edit: the name ends here */
        char *text = eq + 1, *end;
        /* --grid: a range LO:HI (or one value, which stays fixed) */
        char *colon = c->hi ? strchr(text, ':') : NULL;
        if (colon) *colon = '\0';
        double v = strtod(text, &end);
        if (!*text || *end || text[0] == ' ' || text[0] == '\t')
            return usage_error("the value '%s' of %s is not a number", text, arg);
        if (strpbrk(text, "xX")) /* strtod reads C's hexadecimal 0x10 and 0x1p-3 */
            return usage_error("the value '%s' of %s is hexadecimal; write it in decimal", text,
                               arg);
        if (!isfinite(v))
            return usage_error("the value '%s' of %s is not a finite number", text, arg);
        if (c->hi) {
            c->hi[c->n] = v;
            if (colon) {
                char *h = colon + 1;
                if (strpbrk(h, "xX"))
                    return usage_error("the value '%s' of %s is hexadecimal; write it in decimal",
                                       h, arg);
                c->hi[c->n] = strtod(h, &end);
                if (!*h || *end || !isfinite(c->hi[c->n]) || !(c->hi[c->n] > v))
                    return usage_error("the range '%s:%s' of %s is not LO:HI with LO < HI", text, h,
                                       arg);
                /* the grid's points are LO + k (HI - LO) / (N - 1) */
                if (!isfinite(c->hi[c->n] - v))
                    return usage_error("the range '%s:%s' of %s is wider than a double holds "
                                       "(HI - LO overflows)", text, h, arg);
            }
        }
        for (int i = 0; i < c->n; i++)
            if (strcmp(c->names[i], arg) == 0)
                return usage_error("variable '%s' given twice", arg);
        c->names[c->n] = arg;
        c->values[c->n++] = v;
    }
    return EXIT_OK;
}

/* Sorts the arguments into options and the positional pos[] (the
 * expression, then NAME=VALUE ...).  True when the program ends here
 * (--help, --version, an unknown option), with its exit status. */
static bool parse_args(int argc, char **argv, options *opt, char **pos, int *npos, int *status)
{
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || (a[1] != '-' && strcmp(a, "-h") != 0)) {
            pos[(*npos)++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            fputs(HELP, stdout);
            return *status = EXIT_OK, true;
        } else if (strcmp(a, "--version") == 0) {
            printf("adcalc (autodiff) %s\n", AUTODIFF_VERSION);
            return *status = EXIT_OK, true;
        } else if (strcmp(a, "--hessian") == 0) {
            opt->hessian = true;
        } else if (strcmp(a, "--json") == 0) {
            opt->json = true;
        } else if (strcmp(a, "--trace") == 0) {
            opt->trace = true;
        } else if (strcmp(a, "--check") == 0) {
            opt->check = true;
        } else if (strcmp(a, "--dot") == 0) {
            opt->dot = true;
        } else if (strncmp(a, "--descend=", 10) == 0) {
            opt->descent.method = a + 10;
        } else if (strncmp(a, "--grid=", 7) == 0) {
            char *end;
            long k = strtol(a + 7, &end, 10);
            if (end == a + 7 || *end || k < 2 || k > 1000)
                return *status = usage_error("--grid needs a number of points from 2 to 1000, not "
                                             "'%s'", a + 7), true;
            opt->grid = (int)k;
        } else if (strncmp(a, "--lr=", 5) == 0) {
            char *end;
            opt->descent.lr = strtod(a + 5, &end);
            if (end == a + 5 || *end || !(opt->descent.lr > 0) || !isfinite(opt->descent.lr))
                return *status = usage_error("--lr needs a positive number, not '%s'", a + 5), true;
        } else if (strncmp(a, "--steps=", 8) == 0) {
            char *end;
            long k = strtol(a + 8, &end, 10);
            if (end == a + 8 || *end || k < 0 || k > 1000000)
                return *status = usage_error("--steps needs a whole number from 0 to 1000000, not '%s'",
                                             a + 8), true;
            opt->descent.steps = (int)k;
        } else if (strcmp(a, "--edge-derivatives") == 0) {
            opt->edge_derivatives = true;
        } else if (strncmp(a, "--dot=", 6) == 0 && a[6]) {
            opt->dot = true;
            opt->dot_file = a + 6;
        } else {
            return *status = usage_error("unknown option '%s'", a), true;
        }
    }
    return false;
}

/* The options that cannot be combined, and a missing expression. */
static int check_options(const options *opt, int npos)
{
    if (npos == 0) return usage_error("no expression given");
    if (opt->edge_derivatives && !opt->dot)
        return usage_error("--edge-derivatives labels the arrows of the --dot graph; give --dot "
                           "or --dot=FILE too");
    if (opt->dot && !opt->dot_file && (opt->json || opt->trace || opt->check || opt->hessian))
        return usage_error("--dot prints only the graph; to combine it with --json, --trace, "
                           "--check or --hessian write it to a file with --dot=FILE");
    const char *m = opt->descent.method;
    if (m && strcmp(m, "sgd") && strcmp(m, "momentum") && strcmp(m, "adam"))
        return usage_error("--descend takes sgd, momentum or adam, not '%s'", m);
    if (opt->grid && (m || opt->trace || opt->check || opt->hessian || opt->dot))
        return usage_error("--grid prints the surface only; it does not combine with --descend, "
                           "--trace, --check, --hessian or --dot");
    if (m && (opt->trace || opt->check || opt->hessian || opt->dot))
        return usage_error("--descend prints the path only; it does not combine with --trace, "
                           "--check, --hessian or --dot");
    return EXIT_OK;
}

/* Parses the expression and binds its variables; EXIT_OK or the status of
 * the error, which has been reported. */
static int prepare(calc *c, int nbind, char **bindings)
{
    expr_error err;
    c->root = expr_parse(c->src, &err);
    if (!c->root) {
        fprintf(stderr, "adcalc: %s at column %d\n", err.message, err.column);
        show_column(c->src, err.column);
        return EXIT_USAGE;
    }
    int status = bind(c, nbind, bindings);
    if (status) return status;
    const expr *u = unbound(c, c->root);
    if (u) {
        fprintf(stderr, "adcalc: variable '%s' has no value (give %s=...)\n", u->text, u->text);
        show_column(c->src, u->column);
        return EXIT_USAGE;
    }
    for (int i = 0; i < c->n; i++)
        if (!uses(c->root, c->names[i]))
            adcalc_warn("variable '%s' does not appear in the expression (its derivative is 0)",
                        c->names[i]);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    options opt = {.descent = {NULL, 0.1, 100, false}};
    int npos = 0, status = EXIT_OK;
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) return EXIT_INTERNAL;
    if (parse_args(argc, argv, &opt, pos, &npos, &status) ||
        (status = check_options(&opt, npos))) {
        free(pos);
        return status;
    }

    calc c = {0};
    c.src = opt.expression = pos[0];
    opt.descent.json = opt.json;
    c.ranges = opt.grid > 0;
    status = prepare(&c, npos - 1, pos + 1);
    if (!status) status = run(&c, &opt);
    expr_free(c.root);
    free(c.names);
    free(c.values);
    free(c.hi);
    free(pos);
    for (int i = 0; i < nwarnings; i++) free(warnings[i]);
    free(warnings);
    return status;
}

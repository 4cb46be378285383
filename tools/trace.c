/* tools/trace.c - adcalc --trace: backpropagation, one step at a time.
 *
 * The library calls tracer_event() (installed with ad_set_trace) once for
 * every op it records - the forward pass - and once for every node the
 * backward pass processes, newest first.  Reverse mode is the chain rule
 * organised around one number per intermediate result, its *adjoint*
 *
 *     g(v) = df/dv    (how much f changes per unit change of v).
 *
 * The output's adjoint is 1 (df/df).  A node v = op(a, b) that knows g(v)
 * passes g(v) * dv/da to a and g(v) * dv/db to b; a value used in several
 * places receives one such term from each use, and its adjoint is their
 * sum (the multivariable chain rule).  When the sweep reaches the inputs,
 * their adjoints are the gradient.  Backpropagation in a neural network is
 * this very algorithm, with v ranging over layers instead of scalars.
 *
 * The trace prints each node's value on the way forward, then each
 * backward step with the adjoint g it received and the term it adds to
 * each input, written as the chain-rule factor (g*cos(x)) and its value.
 */
/* open_memstream (POSIX 2008), to capture the lines of --trace for --json. */
#define _POSIX_C_SOURCE 200809L

#include "adcalc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How adcalc's ops read, forward and backward: %0, %1 stand for the
 * inputs' names and %y for the output's.  terms[k] is the factor
 * g * d(output)/d(input k), the chain-rule term the backward step adds to
 * input k.  Ops not listed are printed with the library's own formula
 * (ad_op_formula), so a tape from elsewhere traces too. */
static const struct {
    const char *op, *forward, *terms[2];
} TEMPLATES[] = {
    {"add", "%0 + %1", {"g", "g"}},
    {"sub", "%0 - %1", {"g", "-g"}},
    {"mul", "%0*%1", {"g*%1", "g*%0"}},
    {"div", "%0/%1", {"g/%1", "-g*%0/%1^2"}},
    {"pow", "%0^%1", {"g*%1*%0^(%1-1)", "g*%0^%1*log(%0)"}},
    {"maximum", "max(%0, %1)", {"g*([%0 > %1] + [%0 = %1]/2)", "g*([%1 > %0] + [%0 = %1]/2)"}},
    {"minimum", "min(%0, %1)", {"g*([%0 < %1] + [%0 = %1]/2)", "g*([%1 < %0] + [%0 = %1]/2)"}},
    {"neg", "-%0", {"-g", NULL}},
    {"exp", "exp(%0)", {"g*exp(%0)", NULL}},
    {"log", "log(%0)", {"g/%0", NULL}},
    {"sqrt", "sqrt(%0)", {"g/(2*sqrt(%0))", NULL}},
    {"sin", "sin(%0)", {"g*cos(%0)", NULL}},
    {"cos", "cos(%0)", {"-g*sin(%0)", NULL}},
    {"tan", "tan(%0)", {"g*(1 + tan(%0)^2)", NULL}},
    {"tanh", "tanh(%0)", {"g*(1 - tanh(%0)^2)", NULL}},
    {"sigmoid", "sigmoid(%0)", {"g*sigmoid(%0)*(1 - sigmoid(%0))", NULL}},
    {"relu", "relu(%0)", {"g*[%0 > 0]", NULL}},
    {"abs", "abs(%0)", {"g*sign(%0)", NULL}},
};
#define NTEMPLATES (sizeof TEMPLATES / sizeof TEMPLATES[0])

/* What the backward steps added to one tensor's adjoint, in order. */
typedef struct contrib {
    const ad_tensor *t;
    char *terms; /* " + 3 - 0.416147", built as terms arrive */
    size_t len;
    int count;
    double sum;
} contrib;

struct tracer {
    FILE *out;
    bool backward_started;
    bool warned; /* only the first non-finite gradient is reported */
    contrib *c;
    size_t nc, cap;
    /* --json --trace: the steps as a JSON array, written into json_buf */
    FILE *json;
    char *json_buf;
    size_t json_len;
    char seed_name[100]; /* the output, whose adjoint is the seed */
    double seed;
};

tracer *tracer_new(FILE *out)
{
    tracer *tr = calloc(1, sizeof *tr);
    if (tr) tr->out = out;
    return tr;
}

void tracer_free(tracer *tr)
{
    if (!tr) return;
    if (tr->json) fclose(tr->json);
    free(tr->json_buf);
    for (size_t i = 0; i < tr->nc; i++) free(tr->c[i].terms);
    free(tr->c);
    free(tr);
}

/* Six significant digits, enough to follow a trace; "nan" and "0"
 * whatever their sign bit (printf would say "-nan" and "-0"). */
static void short_number(double v, char *buf, size_t size)
{
    if (isnan(v)) snprintf(buf, size, "nan");
    else snprintf(buf, size, "%.6g", v == 0 ? 0.0 : v); /* -0 reads as 0 */
}

/* Unnamed nodes are n0, n1, ...: unless a variable has such a name
 * (sin(n0)*n0 would trace as mul(n0, n0), and JSON would hold the key
 * "n0" twice), then n_0, n_1, ..., or with more underscores. */
static char node_prefix[64] = "n";

static bool is_node_name(const char *name, const char *prefix)
{
    size_t k = strlen(prefix);
    if (strncmp(name, prefix, k) != 0 || !name[k]) return false;
    for (const char *c = name + k; *c; c++)
        if (*c < '0' || *c > '9') return false;
    return true;
}

void trace_node_names(int n, const char *const *names)
{
    strcpy(node_prefix, "n");
    for (size_t len = 1; len + 1 < sizeof node_prefix; len++) {
        bool clash = false;
        for (int i = 0; i < n && !clash; i++) clash = is_node_name(names[i], node_prefix);
        if (!clash) return;
        node_prefix[len] = '_', node_prefix[len + 1] = '\0';
    }
}

void tensor_name(const ad_tensor *t, char *buf, size_t size)
{
    const char *label = ad_label(t);
    long node = ad_tensor_node_index(t);
    if (label && *label) snprintf(buf, size, "%s", label);
    else if (node >= 0) snprintf(buf, size, "%s%ld", node_prefix, node);
    else short_number(ad_item(t), buf, size);
}

/* A name fit to stand inside a formula: a negative constant gets
 * parentheses, so g*%1 with %1 = -2 reads g*(-2). */
static void operand_name(const ad_tensor *t, char *buf, size_t size)
{
    char name[96];
    tensor_name(t, name, sizeof name);
    if (name[0] == '-') snprintf(buf, size, "(%s)", name);
    else snprintf(buf, size, "%s", name);
}

/* Writes a template with %0, %1, %y replaced by names. */
static void expand(FILE *out, const char *tmpl, const ad_trace_event *ev)
{
    for (const char *p = tmpl; *p; p++) {
        char name[100];
        if (p[0] == '%' && (p[1] == '0' || p[1] == '1') && p[1] - '0' < ev->nin) {
            operand_name(ev->inputs[p[1] - '0'], name, sizeof name);
            fputs(name, out);
            p++;
        } else if (p[0] == '%' && p[1] == 'y') {
            operand_name(ev->output, name, sizeof name);
            fputs(name, out);
            p++;
        } else {
            fputc(*p, out);
        }
    }
}

static int find_template(const char *op)
{
    for (size_t i = 0; i < NTEMPLATES; i++)
        if (strcmp(TEMPLATES[i].op, op) == 0) return (int)i;
    return -1;
}

/* The value of a (one-element) tensor for printing; the first element of
 * a bigger one would mislead, so those print as their shape. */
static void value_str(const ad_tensor *t, char *buf, size_t size)
{
    if (ad_numel(t) == 1) {
        short_number(ad_item(t), buf, size);
    } else {
        char shape[48];
        ad_shape_str(t, shape, sizeof shape);
        snprintf(buf, size, "<%s tensor>", shape);
    }
}

static contrib *contrib_of(tracer *tr, const ad_tensor *t)
{
    for (size_t i = 0; i < tr->nc; i++)
        if (tr->c[i].t == t) return &tr->c[i];
    if (tr->nc == tr->cap) {
        size_t cap = tr->cap ? 2 * tr->cap : 16;
        contrib *c = realloc(tr->c, cap * sizeof *c);
        if (!c) return NULL;
        tr->c = c;
        tr->cap = cap;
    }
    contrib *c = &tr->c[tr->nc++];
    memset(c, 0, sizeof *c);
    c->t = t;
    return c;
}

/* Records that a backward step added v to t's adjoint. */
static void add_term(tracer *tr, const ad_tensor *t, double v)
{
    contrib *c = contrib_of(tr, t);
    if (!c) return; /* out of memory: the summary just shows less */
    char num[40];
    short_number(fabs(v), num, sizeof num);
    bool negative = v < 0;
    const char *sign = negative ? (c->count ? " - " : "-") : (c->count ? " + " : "");
    size_t need = c->len + strlen(sign) + strlen(num) + 1;
    char *s = realloc(c->terms, need);
    if (!s) return;
    c->terms = s;
    c->len += (size_t)sprintf(s + c->len, "%s%s", sign, num);
    c->count++;
    c->sum += v;
}

static bool all_finite(const ad_tensor *t)
{
    if (ad_numel(t) != 1) return true; /* adcalc's tensors are scalars */
    return isfinite(ad_item(t));
}

/* The backward pass's counterpart of adcalc's forward warnings: the first
 * step whose finite adjoint g and finite inputs gave a non-finite term
 * (sqrt at 0: g/(2 sqrt 0) = inf) is where a NaN or Inf gradient comes
 * from. */
static void watch(tracer *tr, const ad_trace_event *ev)
{
    if (tr->warned || !all_finite(ev->grad_output)) return;
    for (int k = 0; k < ev->nin; k++) /* a NaN input only passes a NaN on */
        if (!all_finite(ev->inputs[k])) return;
    for (int k = 0; k < ev->nin; k++) {
        const ad_tensor *gk = ev->grad_inputs[k];
        if (!gk || !ad_requires_grad(ev->inputs[k]) || all_finite(gk)) continue;
        char args[160] = "", v[96];
        size_t len = 0;
        for (int j = 0; j < ev->nin && len < sizeof args; j++) {
            value_str(ev->inputs[j], v, sizeof v);
            len += (size_t)snprintf(args + len, sizeof args - len, "%s%s", j ? ", " : "", v);
        }
        double x = ad_numel(gk) == 1 ? ad_item(gk) : NAN;
        if (!all_finite(ev->output)) {
            /* exp(800) = inf forward; backward g * exp(x) with g = 0 */
            value_str(ev->output, v, sizeof v);
            char g[96];
            value_str(ev->grad_output, g, sizeof g);
            adcalc_warn("the derivative of %s is %s (argument%s %s): its value %s overflowed "
                        "in the forward pass, and the chain rule multiplied it by g = %s",
                        ev->op, isnan(x) ? "nan" : "inf", ev->nin > 1 ? "s" : "", args, v, g);
        } else {
            adcalc_warn("the derivative of %s is %s (argument%s %s)", ev->op,
                        isnan(x) ? "nan" : "inf", ev->nin > 1 ? "s" : "", args);
        }
        tr->warned = true;
        return;
    }
}

static void print_call(FILE *out, const ad_trace_event *ev)
{
    char name[100];
    tensor_name(ev->output, name, sizeof name);
    fprintf(out, "%s = %s(", name, ev->op);
    for (int k = 0; k < ev->nin; k++) {
        tensor_name(ev->inputs[k], name, sizeof name);
        fprintf(out, "%s%s", k ? ", " : "", name);
    }
    fputc(')', out);
}

/* One forward step: "n1 = sin(x): sin(x) = 0.909297". */
static void print_forward(FILE *out, const char *prefix, const ad_trace_event *ev, int tmpl)
{
    char v[96];
    fputs(prefix, out);
    print_call(out, ev);
    fputs(": ", out);
    if (tmpl >= 0) {
        expand(out, TEMPLATES[tmpl].forward, ev);
    } else { /* the library's formula, up to the derivative part */
        const char *semi = strchr(ev->formula, ';');
        fprintf(out, "%.*s", semi ? (int)(semi - ev->formula) : (int)strlen(ev->formula),
                ev->formula);
    }
    value_str(ev->output, v, sizeof v);
    fprintf(out, " = %s\n", v);
}

void tracer_list_nodes(tracer *tr, const ad_tape *tape, size_t from, size_t to)
{
    for (size_t i = from; tr->out && i < to; i++) {
        ad_node_info info;
        if (ad_tape_node_info(tape, i, &info)) return;
        ad_trace_event ev = {AD_TRACE_FORWARD, i, info.op, info.formula, info.nin, info.inputs,
                             info.output, NULL, NULL};
        print_forward(tr->out, "  recorded  ", &ev, find_template(info.op));
    }
}

/* Prints one event as --trace does (the watching and the bookkeeping of
 * terms happen even when tr->out is NULL). */
static void print_event(tracer *tr, const ad_trace_event *ev)
{
    int tmpl = find_template(ev->op);
    char v[96];
    if (ev->phase == AD_TRACE_FORWARD) {
        if (!tr->out) return;
        print_forward(tr->out, "  forward   ", ev, tmpl);
        return;
    }

    watch(tr, ev);
    /* Record the terms even when not printing: cheap, and harmless. */
    for (int k = 0; k < ev->nin; k++)
        if (ev->grad_inputs[k] && ad_requires_grad(ev->inputs[k]) &&
            ad_numel(ev->grad_inputs[k]) == 1)
            add_term(tr, ev->inputs[k], ad_item(ev->grad_inputs[k]));
    if (!tr->out) return;
    char name[100];
    if (!tr->backward_started) {
        /* The first node processed is the output; its adjoint is the seed
         * df/df = 1. */
        tr->backward_started = true;
        tensor_name(ev->output, name, sizeof name);
        snprintf(tr->seed_name, sizeof tr->seed_name, "%s", name);
        tr->seed = ad_numel(ev->grad_output) == 1 ? ad_item(ev->grad_output) : NAN;
        value_str(ev->grad_output, v, sizeof v);
        fprintf(tr->out, "  seed      g(%s) = df/d%s = %s\n", name, name, v);
    }
    fputs("  backward  ", tr->out);
    print_call(tr->out, ev);
    value_str(ev->grad_output, v, sizeof v);
    /* A node that fed several consumers got one term from each: show the
     * sum that makes up its adjoint. */
    contrib *mine = contrib_of(tr, ev->output);
    if (mine && mine->count > 1) fprintf(tr->out, ": g = %s = %s", mine->terms, v);
    else fprintf(tr->out, ": g = %s", v);
    for (int k = 0; k < ev->nin; k++) {
        if (!ev->grad_inputs[k] || !ad_requires_grad(ev->inputs[k])) continue;
        tensor_name(ev->inputs[k], name, sizeof name);
        fprintf(tr->out, "; adds to %s: ", name);
        if (tmpl >= 0 && k < 2 && TEMPLATES[tmpl].terms[k]) {
            expand(tr->out, TEMPLATES[tmpl].terms[k], ev);
        } else {
            const char *semi = strchr(ev->formula, ';');
            fputs(semi ? semi + 2 : ev->formula, tr->out);
        }
        value_str(ev->grad_inputs[k], v, sizeof v);
        fprintf(tr->out, " = %s", v);
    }
    fputc('\n', tr->out);
}

/* ---- the trace as JSON ------------------------------------------------------------- */

void tracer_record_json(tracer *tr)
{
    if (tr->json) return;
    tr->json = open_memstream(&tr->json_buf, &tr->json_len);
    if (tr->json) fputc('[', tr->json);
}

static double item_or_nan(const ad_tensor *t)
{
    return t && ad_numel(t) == 1 ? ad_item(t) : NAN;
}

/* The adjoints known after this step: the seed and the sum of the terms
 * each tensor has received so far. */
static void json_adjoints(tracer *tr, FILE *out, bool seed_only)
{
    char name[100];
    fputs(", \"adjoints\": {", out);
    bool first = true;
    if (tr->seed_name[0]) {
        adcalc_json_string(out, tr->seed_name);
        fputs(": ", out);
        adcalc_json_number(out, tr->seed);
        first = false;
    }
    for (size_t i = 0; !seed_only && i < tr->nc; i++) {
        if (tr->c[i].count == 0) continue; /* looked up, nothing received yet */
        tensor_name(tr->c[i].t, name, sizeof name);
        if (!first) fputs(", ", out);
        adcalc_json_string(out, name);
        fputs(": ", out);
        adcalc_json_number(out, tr->c[i].sum);
        first = false;
    }
    fputc('}', out);
}

/* One step object; text is what --trace prints for it (one line). */
static void json_step(tracer *tr, const ad_trace_event *ev, const char *phase, const char *text)
{
    FILE *out = tr->json;
    char name[100];
    int tmpl = find_template(ev->op);
    bool backward = strcmp(phase, "forward") != 0;
    if (ftell(out) > 1) fputs(", ", out);
    fputs("{\"phase\": ", out);
    adcalc_json_string(out, phase);
    tensor_name(ev->output, name, sizeof name);
    fputs(", \"node\": ", out);
    adcalc_json_string(out, name);
    fputs(", \"op\": ", out);
    adcalc_json_string(out, ev->op);
    fputs(", \"inputs\": [", out);
    for (int k = 0; k < ev->nin; k++) {
        tensor_name(ev->inputs[k], name, sizeof name);
        if (k) fputs(", ", out);
        adcalc_json_string(out, name);
    }
    fputc(']', out);
    if (!backward) {
        fputs(", \"value\": ", out);
        adcalc_json_number(out, item_or_nan(ev->output));
    } else {
        fputs(", \"g\": ", out);
        adcalc_json_number(out, item_or_nan(ev->grad_output));
    }
    if (strcmp(phase, "backward") == 0) {
        fputs(", \"adds\": [", out);
        bool first = true;
        for (int k = 0; k < ev->nin; k++) {
            if (!ev->grad_inputs[k] || !ad_requires_grad(ev->inputs[k])) continue;
            tensor_name(ev->inputs[k], name, sizeof name);
            fputs(first ? "{\"to\": " : ", {\"to\": ", out);
            adcalc_json_string(out, name);
            char *term = NULL;
            size_t len = 0;
            FILE *t = open_memstream(&term, &len);
            if (t) {
                if (tmpl >= 0 && k < 2 && TEMPLATES[tmpl].terms[k]) {
                    expand(t, TEMPLATES[tmpl].terms[k], ev);
                } else {
                    const char *semi = strchr(ev->formula, ';');
                    fputs(semi ? semi + 2 : ev->formula, t);
                }
                fclose(t);
                fputs(", \"term\": ", out);
                adcalc_json_string(out, term ? term : "");
                free(term);
            }
            fputs(", \"value\": ", out);
            adcalc_json_number(out, item_or_nan(ev->grad_inputs[k]));
            fputc('}', out);
            first = false;
        }
        fputc(']', out);
    }
    if (backward) json_adjoints(tr, out, strcmp(phase, "seed") == 0);
    fputs(", \"text\": ", out);
    adcalc_json_string(out, text);
    fputc('}', out);
}

void tracer_event(const ad_trace_event *ev, void *ctx)
{
    tracer *tr = ctx;
    if (!tr->json) {
        print_event(tr, ev);
        return;
    }
    /* The same lines --trace prints, captured, and the step's fields. */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len), *saved = tr->out;
    if (!mem) {
        print_event(tr, ev);
        return;
    }
    tr->out = mem;
    print_event(tr, ev);
    tr->out = saved;
    fclose(mem);
    /* Lines of "  seed      ...\n  backward  ...\n": one step each. */
    char *line = text;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        const char *body = line;
        while (*body == ' ') body++;
        const char *phase = strncmp(body, "seed", 4) == 0      ? "seed"
                            : strncmp(body, "forward", 7) == 0 ? "forward"
                                                                : "backward";
        json_step(tr, ev, phase, body);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
}

const char *tracer_json(tracer *tr)
{
    if (!tr || !tr->json) return tr ? tr->json_buf : NULL;
    fputc(']', tr->json);
    fclose(tr->json);
    tr->json = NULL;
    return tr->json_buf;
}

void tracer_summary(tracer *tr, int n, ad_tensor *const *vars, const char *const *names,
                    const double *grads, const char *row)
{
    if (!tr->out) return;
    if (row)
        fprintf(tr->out, "  row %s of the hessian: the sums of the terms added to each input\n",
                row);
    else
        fputs("gradient: each input's adjoint is the sum of the terms the steps added to it\n",
              tr->out);
    for (int i = 0; i < n; i++) {
        char g[40], d[160], of[80];
        short_number(grads[i], g, sizeof g);
        if (row) {
            snprintf(d, sizeof d, "d2f/d%s d%s", row, names[i]);
            snprintf(of, sizeof of, "df/d%s", row);
        } else {
            snprintf(d, sizeof d, "df/d%s", names[i]);
            snprintf(of, sizeof of, "f");
        }
        contrib *c = NULL;
        for (size_t j = 0; j < tr->nc; j++)
            if (tr->c[j].t == vars[i]) c = &tr->c[j];
        if (c && c->count > 1) fprintf(tr->out, "  %s = %s = %s\n", d, c->terms, g);
        else if (c) fprintf(tr->out, "  %s = %s\n", d, g);
        else if (grads[i] != 0) /* the output is the variable itself: 1, no step needed */
            fprintf(tr->out, "  %s = %s (%s is %s itself)\n", d, g, of, names[i]);
        else fprintf(tr->out, "  %s = 0 (no path leads from %s to %s)\n", d, names[i], of);
    }
}

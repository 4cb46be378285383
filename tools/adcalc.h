/* tools/adcalc.h - what adcalc.c and trace.c share. */
#ifndef ADCALC_ADCALC_H
#define ADCALC_ADCALC_H

#include <autodiff/autodiff.h>

/* Prints "adcalc: warning: ..." to stderr and keeps the message for the
 * "warnings" array of --json. */
void adcalc_warn(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* JSON output shared by --json and the trace's steps: a number at full
 * precision (%.17g), null for NaN and infinities; a string with quotes,
 * backslashes and control characters escaped. */
void adcalc_json_number(FILE *out, double v);
void adcalc_json_string(FILE *out, const char *s);

/* The shortest decimal that reads back as v ("0.1", not
 * "0.10000000000000001"); "nan", "inf", "-inf" for the rest. */
void adcalc_number(double v, char *buf, size_t size);

/* ---- evaluation (eval.c) ---- */

#include "expr.h"

#include <stdbool.h>

/* An expression and the point to evaluate it at. */
typedef struct calc {
    const char *src;
    expr *root;
    int n;              /* variables, in command-line order */
    const char **names;
    double *values;
    bool ranges;        /* --grid: NAME=LO:HI allowed */
    double *hi;         /* with ranges: the upper ends (HI, or the value) */
    bool quiet;         /* no warnings (while gradcheck re-evaluates) */
    bool domain_error;  /* the error set is a derivative that does not exist */
} calc;

/* Evaluates c->root (ctx is the calc) with the variables bound to
 * inputs[0..n-1]: each operator becomes the library's op on the active
 * tape, in the order of the text, so the variables' gradients follow by
 * ad_backward.  An ad_func (transforms.h), for ad_gradcheck too.  Warns
 * (adcalc_warn) where a NaN or infinity is born, unless c->quiet.  NULL
 * with the library's error set on failure; c->domain_error says that it is
 * a derivative that does not exist (0^y at y = 0). */
ad_tensor *adcalc_eval(ad_tensor *const *inputs, int n, void *ctx);

/* ---- the step-by-step trace (trace.c) ---- */

typedef struct tracer tracer;

/* A tracer that prints to out, or, with out == NULL, only watches the
 * backward pass for the first non-finite gradient and warns about it.
 * NULL when out of memory. */
tracer *tracer_new(FILE *out);
void tracer_free(tracer *tr);
/* The ad_trace_fn to install with ad_set_trace(tracer_event, tr). */
void tracer_event(const ad_trace_event *event, void *ctx);
/* After the backward pass: each variable's gradient as the sum of the
 * chain-rule terms the backward steps added to it.  row: NULL for the
 * gradient of f, or the variable x_i whose df/dx_i was differentiated
 * (a second backward pass: the entries are row i of the Hessian). */
void tracer_summary(tracer *tr, int n, ad_tensor *const *vars, const char *const *names,
                    const double *grads, const char *row);
/* Prints nodes from..to-1 of tape as the forward trace does, marked
 * "recorded": the ops a backward pass with AD_CREATE_GRAPH recorded. */
void tracer_list_nodes(tracer *tr, const ad_tape *tape, size_t from, size_t to);

/* The name of a tensor in traces: its label (a variable's name, or a
 * constant's literal), "n<i>" for the output of node i, else its value. */
void tensor_name(const ad_tensor *t, char *buf, size_t size);
/* The prefix of unnamed nodes' names (n, as n0, n1, ...), made to differ
 * from the n variables' names. */
void trace_node_names(int n, const char *const *names);

/* ---- the trace as JSON (trace.c) ---- */

/* Makes the tracer keep every step as a JSON object as well (for
 * adcalc --json --trace): {"phase": "forward"|"seed"|"backward", "node",
 * "op", "inputs": [...], "value" (forward) or "g" (backward), "adds":
 * [{"to", "term", "value"}], "adjoints": {name: the sum so far}, "text":
 * the line --trace prints}.  Out of memory leaves the list short. */
void tracer_record_json(tracer *tr);
/* The recorded steps as one JSON array, or NULL when not recording; ends
 * the recording.  Owned by the tracer. */
const char *tracer_json(tracer *tr);

/* ---- gradient descent (descend.c) ---- */

/* adcalc --descend=METHOD [--lr=X] [--steps=N]. */
typedef struct adcalc_descent {
    const char *method; /* "sgd", "momentum" or "adam" */
    double lr;
    int steps;
    bool json;
} adcalc_descent;

/* Minimises f over its n variables from start[] with the method's
 * optimiser (nn/optim.h), printing the path to out: a table "step x y f"
 * or, with json, {"method", "lr", "steps", "variables", "path": [[x, y,
 * f], ...], "diverged"}.  Point k is where step k starts; a non-finite f
 * or variable ends the path there.  0 when the path ended finite, 1 when
 * it diverged, -1 on error (ad_error() says why). */
int adcalc_descend(const adcalc_descent *d, int n, const char *const *names, const double *start,
                   ad_func f, void *ctx, FILE *out);

/* f on a grid of points x points over the one or two variables whose
 * range lo[i] < hi[i] (the others stay at lo[i]), printed as "x y f"
 * lines with a blank line between rows (gnuplot's splot), or with json
 * {"variables", "axes": [[x...], [y...]], "f": [[f(x_i, y_j) for i] for
 * j]}.  For contour plots of a loss surface.  0, or -1 on error. */
int adcalc_grid(int points, int n, const char *const *names, const double *lo, const double *hi,
                ad_func f, void *ctx, bool json, FILE *out);

#endif

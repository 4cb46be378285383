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

/* The shortest decimal that reads back as v ("0.1", not
 * "0.10000000000000001"); "nan", "inf", "-inf" for the rest. */
void adcalc_number(double v, char *buf, size_t size);

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
 * chain-rule terms the backward steps added to it. */
void tracer_summary(tracer *tr, int n, ad_tensor *const *vars, const char *const *names,
                    const double *grads);

/* The name of a tensor in traces: its label (a variable's name, or a
 * constant's literal), "n<i>" for the output of node i, else its value. */
void tensor_name(const ad_tensor *t, char *buf, size_t size);

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

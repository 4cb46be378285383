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

#endif

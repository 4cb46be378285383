/* nn/train.c - progress bar, confusion matrix, evaluation loop. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, fileno, isatty */

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loss.h"
#include "nn_private.h"
#include "train.h"

/* ---- progress bar ------------------------------------------------------------------ */

struct nn_progress {
    FILE *out;
    nn_progress_options o;
    bool redraw;                /* '\r' redraws (terminal) or plain lines */
    int64_t epoch, nepochs, nbatches, batch;
    double loss_sum;            /* sum of loss * samples */
    int64_t samples;
    double t0, last_draw;       /* seconds on the monotonic clock */
    int last_len;               /* length of the line on screen */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 75 -> "1:15", 3725 -> "1:02:05" */
static void fmt_time(double s, char *buf, size_t size)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, size, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

nn_progress *nn_progress_new(FILE *out, const nn_progress_options *opts)
{
    const char *fn = "nn_progress_new";
    if (!out) {
        nn__null_arg(fn, "out");
        return NULL;
    }
    nn_progress_options o = opts ? *opts : (nn_progress_options){0};
    if (o.mode != NN_PROGRESS_AUTO && o.mode != NN_PROGRESS_REDRAW && o.mode != NN_PROGRESS_LINES) {
        ad_set_error("%s: unknown mode %d", fn, (int)o.mode);
        return NULL;
    }
    if (o.width < 0 || o.width > 200 || o.lines_every < 0) {
        ad_set_error("%s: width must be 0..200 and lines_every >= 0, got %d and %" PRId64, fn,
                     o.width, o.lines_every);
        return NULL;
    }
    nn_progress *p = ad_calloc(1, sizeof *p);
    if (!p) {
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    if (o.width == 0) o.width = 30;
    p->out = out;
    p->o = o;
    p->redraw = o.mode == NN_PROGRESS_REDRAW ||
                (o.mode == NN_PROGRESS_AUTO && isatty(fileno(out)));
    p->epoch = 1;
    p->nbatches = 1;
    p->t0 = p->last_draw = now();
    return p;
}

void nn_progress_free(nn_progress *p) { ad_free(p); }

int nn_progress_begin(nn_progress *p, int64_t epoch, int64_t nepochs, int64_t nbatches)
{
    const char *fn = "nn_progress_begin";
    if (!p) return nn__null_arg(fn, "p");
    if (nbatches < 1 || nepochs < 0)
        return ad_set_error("%s: need num_batches >= 1 and num_epochs >= 0, got %" PRId64
                            " and %" PRId64, fn, nbatches, nepochs);
    p->epoch = epoch;
    p->nepochs = nepochs;
    p->nbatches = nbatches;
    p->batch = 0;
    p->loss_sum = 0;
    p->samples = 0;
    p->last_len = 0;
    p->t0 = now();
    p->last_draw = -INFINITY;
    return 0;
}

/* The mean loss so far, NAN before any sample (no error: for printing). */
static double mean_loss(const nn_progress *p)
{
    return p->samples > 0 ? p->loss_sum / (double)p->samples : NAN;
}

double nn_progress_mean_loss(const nn_progress *p)
{
    if (!p) return nn__null_arg("nn_progress_mean_loss", "p"), NAN;
    if (p->samples <= 0)
        return ad_set_error("nn_progress_mean_loss: no samples counted in this epoch yet"), NAN;
    return p->loss_sum / (double)p->samples;
}

/* "epoch 2/10 [=====>    ] 450/938 loss 0.4123 8123 samples/s ETA 0:04" */
static int format_line(const nn_progress *p, char *buf, size_t size, bool with_bar)
{
    int n = p->nepochs > 0 ? snprintf(buf, size, "epoch %" PRId64 "/%" PRId64, p->epoch, p->nepochs)
                           : snprintf(buf, size, "epoch %" PRId64, p->epoch);
    if (with_bar) {
        int w = p->o.width, done = (int)((double)w * (double)p->batch / (double)p->nbatches);
        if (done > w) done = w;
        n += snprintf(buf + n, size - (size_t)n, " [");
        for (int i = 0; i < w && (size_t)n + 2 < size; i++)
            buf[n++] = i < done ? '=' : i == done ? '>' : ' ';
        n += snprintf(buf + n, size - (size_t)n, "]");
    }
    double el = now() - p->t0;
    double rate = el > 0 ? (double)p->samples / el : 0;
    double eta = p->batch > 0 ? el / (double)p->batch * (double)(p->nbatches - p->batch) : NAN;
    char t[32];
    fmt_time(eta, t, sizeof t);
    n += snprintf(buf + n, size - (size_t)n, " %" PRId64 "/%" PRId64 " loss %.4f %.0f samples/s ETA %s",
                  p->batch, p->nbatches, mean_loss(p), rate, t);
    return n;
}

int nn_progress_update(nn_progress *p, int64_t batch, double loss, int64_t samples)
{
    const char *fn = "nn_progress_update";
    if (!p) return nn__null_arg(fn, "p");
    if (batch < 1 || samples < 0)
        return ad_set_error("%s: need batch >= 1 and samples >= 0, got %" PRId64 " and %" PRId64,
                            fn, batch, samples);
    p->batch = batch;
    p->loss_sum += loss * (double)samples;
    p->samples += samples;
    char line[512];
    bool last = batch >= p->nbatches;
    if (p->redraw) {
        /* Redraw at most ten times a second: printing every batch of a fast
         * model would cost more than the batch. */
        double t = now();
        if (!last && t - p->last_draw < 0.1) return 0;
        p->last_draw = t;
        int len = format_line(p, line, sizeof line, true);
        /* '\r' returns to the start of the line; spaces erase what is left
         * of a longer previous line. */
        fprintf(p->out, "\r%s%*s", line, p->last_len > len ? p->last_len - len : 0, "");
        p->last_len = len;
    } else {
        int64_t every = p->o.lines_every > 0 ? p->o.lines_every : (p->nbatches + 9) / 10;
        if (!last && batch % every != 0) return 0;
        format_line(p, line, sizeof line, false);
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    return ferror(p->out) ? ad_set_error("%s: write error", fn) : 0;
}

int nn_progress_end(nn_progress *p, const char *fmt, ...)
{
    const char *fn = "nn_progress_end";
    if (!p) return nn__null_arg(fn, "p");
    char note[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(note, sizeof note, fmt, ap);
        va_end(ap);
    }
    double el = now() - p->t0;
    char t[32];
    fmt_time(el, t, sizeof t);
    char head[64];
    if (p->nepochs > 0)
        snprintf(head, sizeof head, "epoch %" PRId64 "/%" PRId64, p->epoch, p->nepochs);
    else
        snprintf(head, sizeof head, "epoch %" PRId64, p->epoch);
    char line[512];
    int len = snprintf(line, sizeof line, "%s done: loss %.4f, %.0f samples/s, %s%s%s", head,
                       mean_loss(p), el > 0 ? (double)p->samples / el : 0, t,
                       *note ? " | " : "", note);
    if (p->redraw)
        fprintf(p->out, "\r%s%*s\n", line, p->last_len > len ? p->last_len - len : 0, "");
    else
        fprintf(p->out, "%s\n", line);
    p->last_len = 0;
    fflush(p->out);
    return ferror(p->out) ? ad_set_error("%s: write error", fn) : 0;
}

/* ---- confusion matrix ------------------------------------------------------------------ */

nn_confusion *nn_confusion_new(int64_t c)
{
    if (c < 1 || c > 100000) {
        ad_set_error("nn_confusion_new: num_classes must be 1..100000, got %" PRId64, c);
        return NULL;
    }
    nn_confusion *cm = ad_calloc(1, sizeof *cm);
    if (cm) cm->counts = ad_calloc((size_t)(c * c), sizeof *cm->counts);
    if (!cm || !cm->counts) {
        ad_free(cm);
        ad_set_error("nn_confusion_new: out of memory for %" PRId64 " classes", c);
        return NULL;
    }
    cm->num_classes = c;
    return cm;
}

void nn_confusion_free(nn_confusion *cm)
{
    if (!cm) return;
    ad_free(cm->counts);
    ad_free(cm);
}

void nn_confusion_reset(nn_confusion *cm)
{
    if (!cm) return;
    memset(cm->counts, 0, (size_t)(cm->num_classes * cm->num_classes) * sizeof *cm->counts);
    cm->total = cm->correct = 0;
}

/* Element (i, k) of logits [N, C]: xd is its data when contiguous (of
 * dtype dt), else NULL and the element is read through ad_get. */
static double logit_at(const ad_tensor *logits, ad_dtype dt, const void *xd, int64_t i,
                       int64_t k, int64_t c)
{
    if (xd) return nn__ld(xd, dt, i * c + k);
    double v = NAN;
    ad_get(logits, (int64_t[]){i, k}, &v);
    return v;
}

int64_t nn__label_at(const ad_tensor *labels, const int64_t *yd, int64_t i)
{
    if (yd) return yd[i];
    double v = -1;
    ad_get(labels, (int64_t[]){i}, &v);
    return (int64_t)v;
}

int64_t nn__predicted(const ad_tensor *logits, const void *xd, int64_t i)
{
    /* The prediction is the class with the largest logit (softmax is
     * monotonic, so no need to compute the probabilities).  A NaN wins, so
     * that a diverged model scores as badly as it is. */
    ad_dtype dt = ad_tensor_dtype(logits);
    int64_t c = ad_size(logits, 1), best = 0;
    double vb = logit_at(logits, dt, xd, i, 0, c);
    for (int64_t k = 1; k < c && !isnan(vb); k++) {
        double v = logit_at(logits, dt, xd, i, k, c);
        if (isnan(v) || v > vb) best = k, vb = v;
    }
    return best;
}

int nn_confusion_update(nn_confusion *cm, ad_tensor *logits, ad_tensor *labels)
{
    const char *fn = "nn_confusion_update";
    if (!cm || !logits || !labels) return nn__null_arg(fn, !cm ? "cm" : !logits ? "logits" : "labels");
    int64_t c = cm->num_classes;
    if (!nn__is_float(ad_tensor_dtype(logits)) || ad_ndim(logits) != 2 || ad_size(logits, 1) != c) {
        char sh[96];
        ad_shape_str(logits, sh, sizeof sh);
        return ad_set_error("%s: logits must be float [N, %" PRId64 "], got %s %s", fn, c,
                            ad_dtype_name(ad_tensor_dtype(logits)), sh);
    }
    int64_t n = ad_size(logits, 0);
    if (ad_tensor_dtype(labels) != AD_INT64 || ad_ndim(labels) != 1 || ad_size(labels, 0) != n) {
        char sh[96];
        ad_shape_str(labels, sh, sizeof sh);
        return ad_set_error("%s: labels must be int64 [%" PRId64 "], got %s %s", fn, n,
                            ad_dtype_name(ad_tensor_dtype(labels)), sh);
    }
    /* Read in place, allocation-free (it runs once per evaluation batch):
     * contiguous tensors through their data pointer, others element by
     * element.  Labels are all checked before anything is counted. */
    const int64_t *yd = ad_is_contiguous(labels) ? ad_data(labels) : NULL;
    for (int64_t i = 0; i < n; i++) {
        int64_t t = nn__label_at(labels, yd, i);
        if (t < 0 || t >= c)
            return ad_set_error("%s: label %" PRId64 " at position %" PRId64
                                " is out of range for %" PRId64 " classes", fn, t, i, c);
    }
    void *xd = ad_is_contiguous(logits) ? ad_data(logits) : NULL;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = nn__predicted(logits, xd, i);
        int64_t t = nn__label_at(labels, yd, i);
        cm->counts[t * c + best]++;
        cm->total++;
        cm->correct += t == best;
    }
    return 0;
}

/* Recall of class c (in range), NAN for an empty row (no error: for
 * printing). */
static double recall(const nn_confusion *cm, int64_t c)
{
    int64_t row = 0;
    for (int64_t k = 0; k < cm->num_classes; k++) row += cm->counts[c * cm->num_classes + k];
    return row > 0 ? (double)cm->counts[c * cm->num_classes + c] / (double)row : NAN;
}

double nn_confusion_accuracy(const nn_confusion *cm)
{
    if (!cm) return nn__null_arg("nn_confusion_accuracy", "cm"), NAN;
    if (cm->total <= 0)
        return ad_set_error("nn_confusion_accuracy: nothing counted yet"), NAN;
    return (double)cm->correct / (double)cm->total;
}

double nn_confusion_recall(const nn_confusion *cm, int64_t c)
{
    static const char *fn = "nn_confusion_recall";
    if (!cm) return nn__null_arg(fn, "cm"), NAN;
    if (c < 0 || c >= cm->num_classes)
        return ad_set_error("%s: class %lld out of range [0, %lld)", fn, (long long)c,
                            (long long)cm->num_classes), NAN;
    int64_t row = 0;
    for (int64_t k = 0; k < cm->num_classes; k++) row += cm->counts[c * cm->num_classes + k];
    if (row == 0)
        return ad_set_error("%s: no samples of class %lld counted yet", fn, (long long)c), NAN;
    return (double)cm->counts[c * cm->num_classes + c] / (double)row;
}

int nn_confusion_print(const nn_confusion *cm, const char *const *names, FILE *out)
{
    const char *fn = "nn_confusion_print";
    if (!cm || !out) return nn__null_arg(fn, cm ? "out" : "cm");
    int64_t c = cm->num_classes, max = 0;
    for (int64_t i = 0; i < c * c; i++) max = cm->counts[i] > max ? cm->counts[i] : max;
    /* Columns as wide as the largest count (at least 5, for the labels). */
    char tmp[32];
    int w = snprintf(tmp, sizeof tmp, "%" PRId64, max) + 1;
    if (w < 6) w = 6;
    int lw = 12; /* width of the row-label column */
    fprintf(out, "%-*s", lw, "true\\pred");
    for (int64_t k = 0; k < c; k++) {
        if (names)
            fprintf(out, " %*.*s", w - 1, w - 1, names[k]);
        else
            fprintf(out, " %*" PRId64, w - 1, k);
    }
    fprintf(out, " %8s\n", "recall");
    for (int64_t t = 0; t < c; t++) {
        if (names)
            fprintf(out, "%-*.*s", lw, lw - 1, names[t]);
        else
            fprintf(out, "%-*" PRId64, lw, t);
        for (int64_t k = 0; k < c; k++) fprintf(out, " %*" PRId64, w - 1, cm->counts[t * c + k]);
        double r = recall(cm, t);
        if (isnan(r))
            fprintf(out, " %8s\n", "-");
        else
            fprintf(out, " %7.2f%%\n", 100 * r);
    }
    fprintf(out, "accuracy %.2f%% (%" PRId64 "/%" PRId64 ")\n",
            cm->total > 0 ? 100.0 * (double)cm->correct / (double)cm->total : NAN,
            cm->correct, cm->total);
    return ferror(out) ? ad_set_error("%s: write error", fn) : 0;
}

/* ---- evaluation ---------------------------------------------------------------------- */

int64_t nn_evaluate(nn_module *m, nn_loader *loader, nn_confusion *cm, double *mean_loss)
{
    const char *fn = "nn_evaluate";
    if (!m || !loader) return nn__null_arg(fn, m ? "loader" : "m");
    ad_tape *tape = ad_tape_new();
    if (!tape) return ad_set_error("%s: out of memory", fn);
    /* Eval mode: dropout off, BatchNorm on its running statistics; no grad:
     * nothing to differentiate, so nothing is recorded. */
    bool training = nn_is_training(m);
    nn_eval(m);
    bool grad = ad_set_grad_enabled(false);
    ad_tape *prev = ad_tape_activate(tape);
    double loss_sum = 0;
    int64_t n = 0, rc = nn_loader_reset(loader);
    ad_tensor *x, *y;
    int got;
    while (rc == 0 && (got = nn_loader_next(loader, &x, &y)) != 0) {
        if (got < 0 || !y) {
            rc = got < 0 ? -1 : ad_set_error("%s: the loader gives no labels", fn);
            break;
        }
        ad_tensor *logits = nn_forward(m, x);
        ad_tensor *l = logits ? nn_cross_entropy(logits, y, NN_SUM, 0) : NULL;
        if (!l || (cm && nn_confusion_update(cm, logits, y) != 0)) {
            rc = -1;
            break;
        }
        loss_sum += ad_item(l);
        n += ad_size(x, 0);
        ad_tape_reset(tape);
    }
    ad_tape_activate(prev);
    ad_tape_free(tape);
    ad_set_grad_enabled(grad);
    nn_train(m, training);
    if (rc != 0) {
        if (ad_error() && strncmp(ad_error(), fn, strlen(fn)) != 0)
            ad_set_error("%s: %s", fn, ad_error());
        return -1;
    }
    if (mean_loss) *mean_loss = n > 0 ? loss_sum / (double)n : NAN;
    return n;
}

/* nn/train.h - training helpers: a progress bar, evaluation, confusion
 * matrices.
 *
 *     nn_progress *bar = nn_progress_new(stdout, NULL);
 *     for (int epoch = 1; epoch <= epochs; epoch++) {
 *         nn_progress_begin(bar, epoch, epochs, nn_loader_num_batches(train));
 *         for (int64_t i = 1; nn_loader_next(train, &x, &y) == 1; i++) {
 *             ... step, loss ...
 *             nn_progress_update(bar, i, ad_item(loss), ad_size(x, 0));
 *         }
 *         nn_evaluate(net, test, cm, &test_loss);
 *         nn_progress_end(bar, "test acc %.2f%%", 100 * nn_confusion_accuracy(cm));
 *     }
 *     nn_progress_free(bar);
 *
 * Nothing here aborts or exits; errors are -1 / NULL with ad_error() set.
 */
#ifndef NN_TRAIN_H
#define NN_TRAIN_H

#include "data.h"
#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- progress bar -------------------------------------------------------------
 * On a terminal the line is redrawn in place with '\r' (at most ~10 times
 * a second, and always for the last batch):
 *   epoch 2/10 [=========>          ] 450/938 loss 0.4123 8123 samples/s ETA 0:04
 * Elsewhere (a log file, a pipe) plain lines are printed instead, every
 * lines_every batches and for the last one, so logs stay readable.
 * The loss shown is the running mean over the epoch so far, weighted by
 * the samples of each batch; samples/s and the ETA come from a monotonic
 * clock. */
typedef enum nn_progress_mode {
    NN_PROGRESS_AUTO = 0, /* redraw if the stream is a terminal (isatty) */
    NN_PROGRESS_REDRAW,
    NN_PROGRESS_LINES
} nn_progress_mode;

typedef struct nn_progress_options {
    nn_progress_mode mode;
    int width;           /* bar width in characters; 0 means 30 */
    int64_t lines_every; /* LINES mode: a line every this many batches;
                            0 means about every 10% of the epoch */
} nn_progress_options;

typedef struct nn_progress nn_progress;

/* A progress bar writing to out (which it does not close).  opts may be
 * NULL for the defaults. */
AD_API nn_progress *nn_progress_new(FILE *out, const nn_progress_options *opts);
/* Starts an epoch (1-based, shown as epoch/num_epochs; num_epochs 0 shows
 * the epoch alone) of num_batches >= 1 batches, resetting the running loss
 * and the clock. */
AD_API int nn_progress_begin(nn_progress *p, int64_t epoch, int64_t num_epochs, int64_t num_batches);
/* Reports that batch (1-based) is done with mean loss `loss` over
 * `samples` samples.  A non-finite loss is shown as such (it does not stop
 * anything: that is the caller's decision). */
AD_API int nn_progress_update(nn_progress *p, int64_t batch, double loss, int64_t samples);
/* Ends the epoch's line with the epoch's mean loss, time taken, and an
 * optional printf-formatted note (fmt may be NULL), then a newline. */
AD_API int nn_progress_end(nn_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The running mean loss of the current epoch; NAN with an error before any
 * update or for NULL. */
AD_API double nn_progress_mean_loss(const nn_progress *p);
AD_API void nn_progress_free(nn_progress *p);

/* ---- confusion matrix and accuracy -----------------------------------------------
 * counts[t * C + p] is the number of samples of true class t predicted as
 * class p (rows: truth, columns: prediction); the diagonal holds the
 * correct ones.  The prediction for a row of logits is its argmax (the
 * first maximum on ties; a row containing NaN counts as predicting class
 * of the NaN, the first one, so that a broken model does not look good). */
typedef struct nn_confusion {
    int64_t num_classes;
    int64_t *counts; /* num_classes^2, owned */
    int64_t total;   /* samples counted */
    int64_t correct; /* trace of counts */
} nn_confusion;

AD_API nn_confusion *nn_confusion_new(int64_t num_classes);
AD_API void nn_confusion_free(nn_confusion *cm);
/* Zeroes the counts. */
AD_API void nn_confusion_reset(nn_confusion *cm);
/* Adds the predictions of logits [N, C] (any float dtype and strides; C
 * the matrix's class count) against labels int64 [N].  Errors: shapes,
 * dtypes, a label outside [0, C) (nothing is counted then). */
AD_API int nn_confusion_update(nn_confusion *cm, ad_tensor *logits, ad_tensor *labels);
/* correct / total; NAN with an error when nothing was counted or cm is
 * NULL. */
AD_API double nn_confusion_accuracy(const nn_confusion *cm);
/* Recall of class c: counts[c][c] / (row c's total); NAN with an error
 * when that row is empty, c is out of range or cm is NULL. */
AD_API double nn_confusion_recall(const nn_confusion *cm, int64_t c);
/* The matrix as a table with a header row of predicted classes, one row
 * per true class, and its recall; class_names may be NULL (indices are
 * printed), or hold num_classes names (shortened to fit). */
AD_API int nn_confusion_print(const nn_confusion *cm, const char *const *class_names, FILE *out);

/* Evaluates classifier m (logits [N, C] out) on one whole epoch of the
 * loader: it rewinds the loader to the first batch of its current epoch
 * (nn_loader_reset) and runs to the end, in eval mode, with grad mode off,
 * on a temporary tape reset after each batch; then m's mode (set on all its
 * descendants) and the grad mode are restored.  Adds the predictions to cm
 * (not reset first) when cm is not NULL and stores the mean cross-entropy
 * per sample in *mean_loss when it is not NULL.  The loader must give int64
 * labels.  Returns the number of samples evaluated, -1 on error. */
AD_API int64_t nn_evaluate(nn_module *m, nn_loader *loader, nn_confusion *cm, double *mean_loss);

#ifdef __cplusplus
}
#endif
#endif

/* docs/examples/fmnist_common.c - training and evaluating a Fashion-MNIST
 * classifier: the part fmnist_mlp.c and fmnist_cnn.c share.
 *
 * The pieces, in the order a run uses them (fm_main, at the end of the
 * file, calls them; each helper comes before its first use):
 *
 *   1. options     parsed and checked before anything is loaded, so a typo
 *                  costs nothing (exit status 2);
 *   2. data        the four IDX files, read once as bytes; a loader
 *                  converts one batch at a time to normalised floats;
 *   3. the step    recorded once on a *replayable* tape and replayed for
 *                  every batch, so that a training step allocates nothing;
 *   4. the loop    SGD with momentum, a cosine learning-rate schedule per
 *                  step, cross-entropy, a test evaluation after each epoch;
 *   5. results     accuracy and confusion matrix, a safetensors checkpoint,
 *                  a CSV loss curve (and a PNG of it when gnuplot exists),
 *                  a one-line JSON summary for scripts.
 *
 * Everything goes through the public headers (<nn/nn.h>, which includes
 * <autodiff/autodiff.h>).  Library calls report errors by returning NULL or
 * -1 with the message in ad_error(); the functions here do the same, and
 * fm_main turns a failure into a message on stderr and exit status 1.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, popen, access */

#include "fmnist_common.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#define NUM_CLASSES 10

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static const char *const CLASS_NAMES[NUM_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

/* Mean and standard deviation of the training pixels scaled to [0, 1].
 * Inputs centred on 0 with unit spread suit the default initialisation
 * (which assumes it) and let one learning rate fit every layer, as
 * torchvision's transforms.Normalize((0.2860,), (0.3530,)) does. */
#define PIXEL_MEAN 0.2860
#define PIXEL_STD 0.3530

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ==== options ========================================================== */

typedef struct options {
    const char *data_dir;
    int64_t epochs, batch, limit, test_limit;
    double lr, momentum;
    int threads;
    uint64_t seed;
    const char *save, *load, *curve;
    bool json, quiet;
} options;

static void usage(const fm_model *m, FILE *out)
{
    fprintf(out,
            "usage: %s [options]\n"
            "Trains %s on Fashion-MNIST and reports its test accuracy.\n"
            "\n"
            "  --data DIR        the four IDX files (.gz or plain) [%s]\n"
            "  --epochs N        passes over the training set, 0 to only evaluate [%d]\n"
            "  --batch N         samples per step [%" PRId64 "]\n"
            "  --lr X            initial learning rate, decayed along a cosine [%g]\n"
            "  --momentum X      SGD momentum in [0, 1) [%g]\n"
            "  --threads N       OpenMP threads for the library's kernels, 0 = default\n"
            "  --limit N         train on the first N training images only (0 = all)\n"
            "  --test-limit N    evaluate on the first N test images only (0 = all)\n"
            "  --seed N          initialisation and shuffling [1]\n"
            "  --save FILE       write the trained model (safetensors)\n"
            "  --load FILE       start from a model saved by --save\n"
            "  --curve FILE.csv  per-epoch loss and accuracy (+ FILE.png with gnuplot)\n"
            "  --json            end with one line of JSON: the figures of the run\n"
            "  --quiet           no progress, no tables (errors and --json still print)\n"
            "  --help            this text\n"
            "\n"
            "Exit status: 0 success, 1 runtime error (data, checkpoint, I/O), 2 usage.\n",
            m->arch, m->description, DEFAULT_DATA_DIR, m->epochs, m->batch, m->lr, m->momentum);
}

/* strtoll/strtod accept leading spaces, trailing junk ("5x") and, for
 * integers, overflow clamped to the limit; a command line should be read
 * strictly, so each value must be the whole argument and in range. */
static int parse_int(const fm_model *m, const char *opt, const char *s, int64_t lo, int64_t hi,
                     const char *what, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        fprintf(stderr, "%s: %s must be %s, got '%s'\n", m->arch, opt, what, s);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_real(const fm_model *m, const char *opt, const char *s, double lo, double hi,
                      bool hi_open, const char *what, double *out)
{
    char *end;
    double v = strtod(s, &end);
    /* !(v >= lo) is also true for NaN, which must be refused: a NaN
     * learning rate would turn every weight into NaN at the first step. */
    if (*s == '\0' || *end != '\0' || !isfinite(v) || !(v >= lo) || v > hi ||
        (hi_open && v >= hi)) {
        fprintf(stderr, "%s: %s must be %s, got '%s'\n", m->arch, opt, what, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* 0 to go on, -1 after printing a usage error, 1 when --help was given. */
static int parse_options(const fm_model *m, int argc, char **argv, options *o)
{
    *o = (options){.data_dir = DEFAULT_DATA_DIR, .epochs = m->epochs, .batch = m->batch,
                   .lr = m->lr, .momentum = m->momentum, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(m, stdout);
            return 1;
        }
        if (!strcmp(arg, "--json")) {
            o->json = true;
            continue;
        }
        if (!strcmp(arg, "--quiet")) {
            o->quiet = true;
            continue;
        }
        /* Every other option takes a value: "--epochs 5" or "--epochs=5". */
        char name[32];
        const char *val;
        const char *eq = strchr(arg, '=');
        if (strncmp(arg, "--", 2) != 0 || (eq ? (size_t)(eq - arg) : strlen(arg)) >= sizeof name) {
            fprintf(stderr, "%s: unknown argument '%s' (see --help)\n", m->arch, arg);
            return -1;
        }
        if (eq) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = '\0';
        } else {
            strcpy(name, arg);
        }
        static const char *const with_value[] = {
            "--data", "--save", "--load", "--curve", "--epochs", "--batch", "--limit",
            "--test-limit", "--threads", "--seed", "--lr", "--momentum"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            known |= !strcmp(name, with_value[k]);
        if (!known) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", m->arch, name);
            return -1;
        }
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a value (see --help)\n", m->arch, name);
                return -1;
            }
            val = argv[++i];
        }
        int64_t n;
        int rc = 0;
        if (!strcmp(name, "--data")) {
            o->data_dir = val;
        } else if (!strcmp(name, "--save")) {
            o->save = val;
        } else if (!strcmp(name, "--load")) {
            o->load = val;
        } else if (!strcmp(name, "--curve")) {
            o->curve = val;
        } else if (!strcmp(name, "--epochs")) {
            rc = parse_int(m, name, val, 0, 100000, "an integer from 0 to 100000", &o->epochs);
        } else if (!strcmp(name, "--batch")) {
            rc = parse_int(m, name, val, 1, 60000, "an integer from 1 to 60000", &o->batch);
        } else if (!strcmp(name, "--limit")) {
            rc = parse_int(m, name, val, 0, INT64_MAX, "an integer >= 0", &o->limit);
        } else if (!strcmp(name, "--test-limit")) {
            rc = parse_int(m, name, val, 0, INT64_MAX, "an integer >= 0", &o->test_limit);
        } else if (!strcmp(name, "--threads")) {
            rc = parse_int(m, name, val, 0, 1024, "an integer from 0 to 1024", &n);
            o->threads = (int)n;
        } else if (!strcmp(name, "--seed")) {
            rc = parse_int(m, name, val, 0, INT64_MAX, "an integer >= 0", &n);
            o->seed = (uint64_t)n;
        } else if (!strcmp(name, "--lr")) {
            rc = parse_real(m, name, val, 0, 1e3, false, "a finite number from 0 to 1000", &o->lr);
        } else if (!strcmp(name, "--momentum")) {
            rc = parse_real(m, name, val, 0, 1, true, "a number in [0, 1)", &o->momentum);
        }
        if (rc) return -1;
    }
    return 0;
}

/* ==== the replayed step ===================================================
 *
 * A training step is the same computation for every batch: only the
 * numbers in x and y change.  So instead of recording the forward pass
 * anew each time (allocating its nodes and tensors, if only from the tape's
 * arena), we record it once on a replayable tape, freeze the tape, and for
 * each batch *replay* it: ad_tape_replay copies the batch into the
 * recorded input leaves and re-runs every recorded op in place.  The
 * backward pass that follows takes its temporaries from the part of the
 * arena after the freeze point, which the next replay rewinds, so from the
 * second step on a step asks the system for no memory at all.
 *
 * The shapes are fixed by the recording: a [64,784] tape cannot run a
 * [32,784] batch.  A loader yields at most two shapes (full batches and a
 * shorter last one), so a replay_set holds up to two tapes, each recorded
 * when its shape is first needed.  Also fixed at recording: the module's
 * mode (train/eval) and anything C code decided from values - our networks
 * have no such branches (ReLU and max-pool select with tensor ops, which
 * replay recomputes). */
typedef struct replayed {
    ad_tape *tape;
    int64_t batch;         /* 0 while not recorded */
    ad_tensor *x, *y;      /* the input leaves on the tape */
    ad_tensor *logits, *loss;
} replayed;

typedef struct replay_set {
    replayed r[2];
    bool training;         /* the module mode to record in */
    nn_reduction reduction;
} replay_set;

static int record(replayed *r, nn_module *net, const fm_model *m, int64_t batch, bool training,
                  nn_reduction reduction)
{
    int64_t shape[4] = {batch};
    for (int d = 0; d < m->sample_ndim; d++) shape[d + 1] = m->sample_shape[d];
    r->tape = ad_tape_new();
    if (!r->tape || ad_tape_set_replayable(r->tape, true)) return -1;
    /* Only recorded ops are replayed, and with grad mode off nothing is
     * recorded, even on a replayable tape: so grad mode must be on here,
     * also for the evaluation tape (which simply never runs backward). */
    bool grad_was = ad_set_grad_enabled(true);
    bool was_training = nn_is_training(net);
    nn_train(net, training);
    /* The leaves hold zeros for now; every replay overwrites them. */
    r->x = ad_zeros(r->tape, AD_FLOAT32, m->sample_ndim + 1, shape);
    r->y = ad_zeros(r->tape, AD_INT64, AD_SHAPE(batch));
    r->logits = nn_forward(net, r->x);
    r->loss = nn_cross_entropy(r->logits, r->y, reduction, 0);
    nn_train(net, was_training);
    ad_set_grad_enabled(grad_was);
    if (!r->loss || ad_tape_freeze(r->tape)) return -1;
    r->batch = batch;
    return 0;
}

/* Runs the recorded computation on batch (x, y), recording it first if
 * this is the first batch of its size.  NULL on error. */
static replayed *replay(replay_set *s, nn_module *net, const fm_model *m, ad_tensor *x,
                        ad_tensor *y)
{
    int64_t batch = ad_size(x, 0);
    replayed *r = NULL;
    for (int i = 0; i < 2 && !r; i++)
        if (s->r[i].batch == batch || s->r[i].batch == 0) r = &s->r[i];
    if (!r) {
        ad_set_error("replay: a third batch size (%" PRId64 ") from one loader", batch);
        return NULL;
    }
    if (r->batch == 0 && record(r, net, m, batch, s->training, s->reduction)) return NULL;
    ad_tensor *leaves[2] = {r->x, r->y}, *values[2] = {x, y};
    /* The return value counts comparisons whose outcome changed since the
     * recording; it matters only to C code that branched on one (ours
     * does not), so only an error (< 0) is looked at. */
    return ad_tape_replay(r->tape, 2, leaves, values) < 0 ? NULL : r;
}

static void replay_set_free(replay_set *s)
{
    for (int i = 0; i < 2; i++) ad_tape_free(s->r[i].tape);
}

/* ==== the loop ============================================================ */

/* Everything a run owns, freed in one place whatever went wrong. */
typedef struct run {
    const fm_model *m;
    options o;
    nn_mnist *train_data, *test_data;
    nn_loader *train, *test;
    nn_module *net;
    nn_optim *opt;
    replay_set train_steps, eval_steps;
    nn_confusion *test_cm;
    int64_t train_correct; /* this epoch's correct training predictions */
    nn_progress *bar;
    FILE *curve;
    double *batch_loss; /* this epoch's loss of every batch */
    int64_t *batch_size;
    /* figures for the summary */
    int64_t steps, total_steps, samples_trained, loaded_epochs;
    double train_s, first_loss, last_loss, final_loss, test_loss, test_acc;
} run;

/* Mean loss over batches [from, to) of the epoch, weighted by batch size
 * (a shorter last batch counts for less). */
static double window_mean(const run *r, int64_t from, int64_t to)
{
    double sum = 0, n = 0;
    for (int64_t b = from; b < to; b++) {
        sum += r->batch_loss[b] * (double)r->batch_size[b];
        n += (double)r->batch_size[b];
    }
    return n > 0 ? sum / n : NAN;
}

/* One pass over the test set on the evaluation tapes: accuracy and
 * confusion counts into r->test_cm, mean cross-entropy into r->test_loss. */
static int evaluate(run *r)
{
    ad_tensor *x, *y;
    double loss_sum = 0;
    int64_t n = 0;
    int rc;
    nn_confusion_reset(r->test_cm);
    if (nn_loader_reset(r->test)) return -1;
    while ((rc = nn_loader_next(r->test, &x, &y)) == 1) {
        replayed *s = replay(&r->eval_steps, r->net, r->m, x, y);
        if (!s || nn_confusion_update(r->test_cm, s->logits, s->y)) return -1;
        loss_sum += ad_item(s->loss); /* recorded with NN_SUM: exact mean below */
        n += s->batch;
    }
    if (rc < 0) return -1;
    r->test_loss = loss_sum / (double)n;
    r->test_acc = nn_confusion_accuracy(r->test_cm);
    return 0;
}

/* Adds the number of rows of s->logits whose largest entry is at the
 * label to *correct.  nn_confusion_update does this and more, but copies
 * its inputs into fresh buffers on every call; reading the float32 logits
 * in place keeps the training step free of malloc. */
static int count_correct(const replayed *s, int64_t *correct)
{
    const float *x = ad_data(s->logits);
    const int64_t *y = ad_data(s->y);
    if (!x || !y) return -1;
    for (int64_t i = 0; i < s->batch; i++) {
        const float *row = x + i * NUM_CLASSES;
        int best = 0;
        for (int k = 1; k < NUM_CLASSES; k++)
            if (row[k] > row[best]) best = k;
        *correct += best == y[i];
    }
    return 0;
}

/* One epoch of SGD; epoch is 1-based. */
static int train_epoch(run *r, int64_t epoch)
{
    const int64_t nb = nn_loader_num_batches(r->train);
    ad_tensor *x, *y;
    int rc;
    int64_t b = 0;
    double t0 = now();
    r->train_correct = 0;
    if (r->bar && nn_progress_begin(r->bar, epoch, r->o.epochs, nb)) return -1;
    while ((rc = nn_loader_next(r->train, &x, &y)) == 1) {
        /* Cosine schedule, per step: the rate glides from --lr at the first
         * step to (almost) 0 at the last.  Large steps early cover ground;
         * small ones at the end settle into a minimum instead of bouncing
         * around it.  Per step rather than per epoch, because the CNN runs
         * only two epochs: a per-epoch schedule would be two constant
         * rates. */
        double lr = nn_lr_cosine(r->o.lr, r->steps, r->total_steps, 0);
        if (nn_optim_set_lr(r->opt, lr)) return -1;

        /* forward + loss: the recorded ops, recomputed on this batch */
        replayed *s = replay(&r->train_steps, r->net, r->m, x, y);
        if (!s) return -1;
        /* Gradients accumulate across backward passes (tape.h), so clear
         * last step's first.  AD_RETAIN_GRAPH keeps the recording usable:
         * without it the nodes would be marked freed and the next replay's
         * backward refused. */
        if (nn_optim_zero_grad(r->opt) || ad_backward(s->loss, NULL, AD_RETAIN_GRAPH) ||
            nn_optim_step(r->opt))
            return -1;

        double loss = ad_item(s->loss);
        if (!isfinite(loss))
            return ad_set_error("training diverged: the loss is %g at epoch %" PRId64
                                ", batch %" PRId64 " (try a smaller --lr)",
                                loss, epoch, b + 1);
        if (count_correct(s, &r->train_correct)) return -1;
        r->batch_loss[b] = loss;
        r->batch_size[b] = s->batch;
        r->steps++;
        r->samples_trained += s->batch;
        b++;
        if (r->bar && nn_progress_update(r->bar, b, loss, s->batch)) return -1;
    }
    if (rc < 0) return -1;
    r->train_s += now() - t0;

    /* The loss of the first and last tenth of training, to show (and let
     * the tests check) that it fell. */
    int64_t w = nb / 10 > 0 ? nb / 10 : 1;
    if (epoch == 1) r->first_loss = window_mean(r, 0, w);
    r->last_loss = window_mean(r, nb - w, nb);
    r->final_loss = window_mean(r, 0, nb);
    double train_acc = (double)r->train_correct / (double)nn_loader_num_samples(r->train);

    /* The bar's line ends before the evaluation, so that its samples/s
     * is the training speed alone. */
    if (r->bar &&
        nn_progress_end(r->bar, "train acc %.2f%%", 100 * train_acc))
        return -1;
    if (evaluate(r)) return -1;
    if (!r->o.quiet)
        printf("          test loss %.4f, test acc %.2f%%, lr now %.3g\n", r->test_loss,
               100 * r->test_acc, nn_optim_get_lr(r->opt));
    if (r->curve) {
        fprintf(r->curve, "%" PRId64 ",%.6g,%.6f,%.6f,%.6f,%.6f,%.3f\n", epoch,
                nn_optim_get_lr(r->opt), r->final_loss, train_acc,
                r->test_loss, r->test_acc, now() - t0);
        /* flushed each epoch so a long run can be watched as it goes */
        if (fflush(r->curve) || ferror(r->curve))
            return ad_set_error("%s: write error", r->o.curve);
    }
    return 0;
}

/* ==== results ============================================================= */

/* The model's parameters and buffers under their state_dict names (0.weight,
 * 0.bias, ...), as PyTorch would save them, with metadata saying which
 * program made it.  Loadable in Python with safetensors.numpy.load_file. */
static int save_checkpoint(const run *r, const char *path)
{
    char meta[512];
    snprintf(meta, sizeof meta,
             "{\"arch\": \"%s\", \"description\": \"%s\", \"epochs\": \"%" PRId64
             "\", \"test_accuracy\": \"%.4f\"}",
             r->m->arch, r->m->description, r->loaded_epochs + r->o.epochs, r->test_acc);
    nn_named_tensors *sd = nn_state_dict(r->net);
    int rc = sd ? nn_save_safetensors(path, sd->n, sd->names, sd->tensors, meta) : -1;
    nn_named_tensors_free(sd);
    return rc;
}

/* Loads a checkpoint of *this* architecture.  The metadata is checked
 * first for a clear message ("holds a fmnist_cnn model"); the strict load
 * then checks every name, dtype and shape, and changes nothing unless all
 * match. */
static int load_checkpoint(run *r, const char *path)
{
    nn_safetensors_info *info = nn_safetensors_inspect(path);
    if (!info) return -1;
    const char *arch = nn_safetensors_metadata(info, "arch");
    const char *epochs = nn_safetensors_metadata(info, "epochs");
    int rc = 0;
    if (!arch)
        rc = ad_set_error("%s: no \"arch\" in its metadata, so not a checkpoint saved by these "
                          "programs' --save; %s refuses it",
                          path, r->m->arch);
    else if (strcmp(arch, r->m->arch) != 0)
        rc = ad_set_error("%s holds a %s model, not %s (%s): wrong architecture", path, arch,
                          r->m->arch, r->m->description);
    if (!rc) {
        nn_named_tensors *sd = nn_state_dict(r->net);
        rc = sd ? nn_load_safetensors(path, sd->n, sd->names, sd->tensors, true) : -1;
        nn_named_tensors_free(sd);
    }
    if (!rc && epochs) r->loaded_epochs = strtoll(epochs, NULL, 10);
    nn_safetensors_info_free(info);
    return rc;
}

/* Writes a gnuplot script into gnuplot's stdin: two panels, loss and
 * accuracy against the epoch, train and test.  A missing gnuplot only
 * costs the picture, so it is a note, not an error. */
static void plot_curve(const char *csv, const char *arch, int64_t epochs, bool quiet)
{
    /* FILE.csv -> FILE.png; any other name gets .png appended */
    char png[4096];
    size_t len = strlen(csv);
    if (len + 5 > sizeof png) return;
    memcpy(png, csv, len + 1);
    if (len > 4 && !strcmp(png + len - 4, ".csv")) png[len - 4] = '\0';
    strcat(png, ".png");
    if (strchr(csv, '\'') || strchr(png, '\'')) return; /* would break the quoting */

    fflush(stdout); /* keep our lines before anything gnuplot prints */
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        if (!quiet) printf("gnuplot is not installed: no %s (apt-get install gnuplot-nox)\n", png);
        return;
    }
    FILE *gp = popen("gnuplot", "w");
    if (!gp) return;
    fprintf(gp,
            "set terminal pngcairo size 1000,420 font 'sans,10' noenhanced\n"
            "set output '%s'\n"
            "set xrange [0.5:%" PRId64 ".5]\n"
            "set xtics 1\n"
            "set datafile separator ','\n"
            "set key autotitle columnhead\n"
            "set grid\n"
            "set xlabel 'epoch'\n"
            "set multiplot layout 1,2 title '%s on Fashion-MNIST'\n"
            "set ylabel 'cross-entropy'\n"
            "plot '%s' using 1:3 with linespoints title 'train (mean over the epoch)', "
            "'' using 1:5 with linespoints title 'test'\n"
            "set ylabel 'accuracy'\n"
            "set key bottom right\n"
            "plot '%s' using 1:4 with linespoints title 'train (during the epoch)', "
            "'' using 1:6 with linespoints title 'test'\n"
            "unset multiplot\n",
            png, epochs, arch, csv, csv);
    if (pclose(gp) != 0)
        fprintf(stderr, "%s: gnuplot failed to draw %s\n", arch, png);
    else if (!quiet)
        printf("loss/accuracy curve: %s and %s\n", csv, png);
}

/* JSON has no NaN: a figure that does not exist (no training, no loss)
 * is null. */
static void json_number(const char *key, double v, bool last)
{
    if (isfinite(v))
        printf("\"%s\": %.6g%s", key, v, last ? "" : ", ");
    else
        printf("\"%s\": null%s", key, last ? "" : ", ");
}

static void print_json(const run *r, double wall_s, int threads)
{
    printf("{\"arch\": \"%s\", \"epochs\": %" PRId64 ", \"batch\": %" PRId64
           ", \"lr\": %g, \"momentum\": %g, \"seed\": %" PRIu64 ", \"threads\": %d"
           ", \"train_samples\": %" PRId64 ", \"test_samples\": %" PRId64 ", ",
           r->m->arch, r->o.epochs, r->o.batch, r->o.lr, r->o.momentum, r->o.seed, threads,
           nn_loader_num_samples(r->train), nn_loader_num_samples(r->test));
    json_number("test_accuracy", r->test_acc, false);
    json_number("test_loss", r->test_loss, false);
    json_number("first_loss", r->first_loss, false);
    json_number("last_loss", r->last_loss, false);
    json_number("final_loss", r->final_loss, false);
    json_number("train_samples_per_s",
                r->train_s > 0 ? (double)r->samples_trained / r->train_s : NAN, false);
    json_number("train_s", r->train_s, false);
    json_number("wall_s", wall_s, true);
    printf("}\n");
}

/* ==== data, and the whole run ============================================== */

/* The checkpoint is written at the end; finding out then that its
 * directory does not exist would waste the whole training run. */
static int check_writable_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 1;
    if (len >= sizeof dir) return ad_set_error("%s: path too long", path);
    memcpy(dir, slash ? path : ".", len);
    dir[len] = '\0';
    if (slash == path) strcpy(dir, "/");
    if (access(dir, W_OK | X_OK) != 0)
        return ad_set_error("cannot save to %s: directory %s: %s", path, dir, strerror(errno));
    return 0;
}

static int load_data(run *r)
{
    r->train_data = nn_mnist_load(r->o.data_dir, true);
    if (!r->train_data) return -1;
    r->test_data = nn_mnist_load(r->o.data_dir, false);
    if (!r->test_data) return -1;
    for (int i = 0; i < 2; i++) {
        const nn_idx *im = (i ? r->test_data : r->train_data)->images;
        if (im->dims[1] != 28 || im->dims[2] != 28)
            return ad_set_error("%s: the %s images are %" PRId64 "x%" PRId64
                                ", Fashion-MNIST's are 28x28",
                                r->o.data_dir, i ? "test" : "training", im->dims[1], im->dims[2]);
    }
    return 0;
}

static int make_loaders(run *r)
{
    nn_loader_options o = {
        .batch_size = r->o.batch,
        /* a new order each epoch: batches of one class would pull the
         * weights back and forth */
        .shuffle = true,
        /* Not the initialisation's seed: the generator is counter-based, so
         * the same seed would make the first shuffle draw the very numbers
         * that initialised the weights. */
        .seed = r->o.seed ^ UINT64_C(0x9e3779b97f4a7c15),
        .limit = r->o.limit,
        .normalize = true,
        .mean = PIXEL_MEAN,
        .std = PIXEL_STD,
        .sample_ndim = r->m->sample_ndim,
    };
    for (int d = 0; d < r->m->sample_ndim; d++) o.sample_shape[d] = r->m->sample_shape[d];
    r->train = nn_loader_from_idx(r->train_data->images, r->train_data->labels, &o);
    o.batch_size = r->m->eval_batch;
    o.shuffle = false;
    o.limit = r->o.test_limit;
    r->test = nn_loader_from_idx(r->test_data->images, r->test_data->labels, &o);
    return r->train && r->test ? 0 : -1;
}

static void run_free(run *r)
{
    replay_set_free(&r->train_steps);
    replay_set_free(&r->eval_steps);
    nn_progress_free(r->bar);
    nn_confusion_free(r->test_cm);
    nn_optim_free(r->opt);
    nn_module_free(r->net);
    nn_loader_free(r->train);
    nn_loader_free(r->test);
    nn_mnist_free(r->train_data);
    nn_mnist_free(r->test_data);
    if (r->curve) fclose(r->curve);
    free(r->batch_loss);
    free(r->batch_size);
}

/* Everything after the options; -1 with ad_error() set on failure, or
 * EXIT_USAGE after printing a message for a value the data contradicts. */
static int train_and_report(run *r, double t_start)
{
    const options *o = &r->o;
    const fm_model *m = r->m;
    int threads = 1;
#ifdef _OPENMP
    /* OpenMP parallelises the library's own kernels (elementwise ops,
     * unfold/fold of the convolutions, the built-in matrix product).
     * OpenBLAS, when the library uses it for matrix products, keeps its
     * own thread pool: set OPENBLAS_NUM_THREADS in the environment. */
    if (o->threads > 0) omp_set_num_threads(o->threads);
    threads = omp_get_max_threads();
#else
    if (o->threads > 1 && !o->quiet)
        printf("note: built without OpenMP, --threads %d has no effect\n", o->threads);
#endif

    if (o->save && check_writable_dir(o->save)) return -1;
    if (load_data(r)) return -1;
    int64_t ntrain = r->train_data->images->dims[0], ntest = r->test_data->images->dims[0];
    if (o->limit > ntrain || o->test_limit > ntest) {
        fprintf(stderr, "%s: --%s %" PRId64 " is more than the %" PRId64 " images of %s\n",
                m->arch, o->limit > ntrain ? "limit" : "test-limit",
                o->limit > ntrain ? o->limit : o->test_limit,
                o->limit > ntrain ? ntrain : ntest, o->data_dir);
        return EXIT_USAGE;
    }
    if (make_loaders(r)) return -1;

    ad_rng rng;
    ad_rng_init(&rng, o->seed);
    r->net = m->build(&rng);
    if (!r->net) return -1;
    if (o->load && load_checkpoint(r, o->load)) return -1;

    /* PyTorch's SGD: v <- momentum v + g, w <- w - lr v.  The rate set here
     * is replaced before every step by the schedule. */
    nn_named_tensors *params = nn_parameters(r->net);
    r->opt = params ? nn_sgd(params, &(nn_sgd_options){.lr = o->lr, .momentum = o->momentum})
                    : NULL;
    nn_named_tensors_free(params); /* the optimiser keeps its own copy */
    r->test_cm = nn_confusion_new(NUM_CLASSES);
    int64_t nb = nn_loader_num_batches(r->train);
    r->batch_loss = malloc((size_t)nb * sizeof *r->batch_loss);
    r->batch_size = malloc((size_t)nb * sizeof *r->batch_size);
    if (!r->opt || !r->test_cm) return -1;
    if (!r->batch_loss || !r->batch_size) return ad_set_error("out of memory");
    r->train_steps = (replay_set){.training = true, .reduction = NN_MEAN};
    /* The test loss is summed per batch and divided by the sample count
     * once, so a shorter last batch is weighted right. */
    r->eval_steps = (replay_set){.training = false, .reduction = NN_SUM};
    r->total_steps = o->epochs * nb;

    if (!o->quiet) {
        printf("%s: %s, %" PRId64 " parameters\n", m->arch, m->description,
               nn_num_parameters(r->net));
        int64_t shape[4] = {1};
        for (int d = 0; d < m->sample_ndim; d++) shape[d + 1] = m->sample_shape[d];
        if (nn_summary(r->net, m->sample_ndim + 1, shape, stdout)) return -1;
        printf("data: %" PRId64 " training and %" PRId64 " test images from %s\n",
               nn_loader_num_samples(r->train), nn_loader_num_samples(r->test), o->data_dir);
        if (o->epochs > 0)
            printf("training: %" PRId64 " epoch%s of %" PRId64 " steps, batch %" PRId64
                   ", SGD lr %g (cosine to 0) momentum %g, %d thread%s\n",
                   o->epochs, o->epochs == 1 ? "" : "s", nb, o->batch, o->lr, o->momentum,
                   threads, threads == 1 ? "" : "s");
        /* A progress bar redrawn in place on a terminal, plain lines in a
         * log (nn_progress decides with isatty). */
        r->bar = nn_progress_new(stdout, NULL);
        if (!r->bar) return -1;
    }
    if (o->curve) {
        r->curve = fopen(o->curve, "w");
        if (!r->curve) return ad_set_error("%s: cannot write: %s", o->curve, strerror(errno));
        fprintf(r->curve, "epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy,epoch_s\n");
    }

    r->first_loss = r->last_loss = r->final_loss = NAN;
    for (int64_t e = 1; e <= o->epochs; e++)
        if (train_epoch(r, e)) return -1;
    if (o->epochs == 0 && evaluate(r)) return -1; /* evaluate a loaded model */

    if (!o->quiet && o->epochs > 0) {
        /* One tape per batch shape; their arenas stopped growing after
         * their first backward pass. */
        size_t nodes = 0, bytes = 0;
        int tapes = 0;
        for (int i = 0; i < 2; i++) {
            ad_tape_stats st;
            if (r->train_steps.r[i].tape && ad_tape_get_stats(r->train_steps.r[i].tape, &st) == 0) {
                nodes = st.nodes > nodes ? st.nodes : nodes;
                bytes += st.arena_reserved;
                tapes++;
            }
        }
        printf("training step: recorded once per batch shape (%d tape%s, %zu ops each), "
               "replayed %" PRId64 " times; arenas %.1f MB\n",
               tapes, tapes == 1 ? "" : "s", nodes, r->steps, (double)bytes / 1e6);
    }
    if (r->curve) {
        int bad = fclose(r->curve);
        r->curve = NULL;
        if (bad) return ad_set_error("%s: write error", o->curve);
        if (o->epochs > 0) plot_curve(o->curve, m->arch, o->epochs, o->quiet);
    }
    if (o->save) {
        if (save_checkpoint(r, o->save)) return -1;
        if (!o->quiet) printf("model saved to %s\n", o->save);
    }
    if (!o->quiet) {
        printf("\ntest accuracy: %.2f%% (%" PRId64 "/%" PRId64 "), test loss %.4f\n",
               100 * r->test_acc, r->test_cm->correct, r->test_cm->total, r->test_loss);
        if (r->train_s > 0)
            printf("training: %.0f samples/s, %.1f s\n",
                   (double)r->samples_trained / r->train_s, r->train_s);
        printf("\nconfusion matrix (rows: true class, columns: predicted)\n");
        if (nn_confusion_print(r->test_cm, CLASS_NAMES, stdout)) return -1;
    }
    if (o->json) print_json(r, now() - t_start, threads);
    return 0;
}

int fm_main(const fm_model *model, int argc, char **argv)
{
    double t_start = now();
    run r = {.m = model};
    int rc = parse_options(model, argc, argv, &r.o);
    if (rc) return rc < 0 ? EXIT_USAGE : 0;
    rc = train_and_report(&r, t_start);
    if (rc < 0) {
        fflush(stdout);
        fprintf(stderr, "%s: error: %s\n", model->arch, ad_error() ? ad_error() : "unknown");
        rc = EXIT_RUNTIME;
    }
    run_free(&r);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: error writing the output\n", model->arch);
        return EXIT_RUNTIME;
    }
    return rc;
}

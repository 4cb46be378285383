/* docs/examples/fmnist_common.c - what fmnist_mlp.c and fmnist_cnn.c share
 * beyond the nn layer: their command line, the data, the report.
 *
 * The training loop itself - the step replayed on a recorded tape, the
 * evaluation, the epochs, the progress bar - is nn's trainer
 * (<nn/trainer.h>), which the programs call with nn_fit.  Here:
 *
 *   1. options     parsed and checked before anything is loaded, so a typo
 *                  costs nothing (exit status 2);
 *   2. data        the four IDX files, read once as bytes; a loader
 *                  converts one batch at a time to normalised floats;
 *   3. callbacks   of nn_fit, collecting the loss of every batch (for the
 *                  first and last tenth the JSON reports) and writing a row
 *                  of the CSV curve per epoch;
 *   4. results     accuracy and confusion matrix, a safetensors checkpoint
 *                  whose "arch" is checked when it is loaded, the curve's
 *                  PNG when gnuplot exists, a one-line JSON summary.
 *
 * Everything goes through the public headers (<nn/nn.h>, which includes
 * <autodiff/autodiff.h>).  Library calls report errors by returning NULL or
 * -1 with the message in ad_error(); the functions here do the same, and
 * fm_finish turns a failure into a message on stderr and exit status 1.
 */
#define _GNU_SOURCE /* clock_gettime, popen, getrusage; sched_getaffinity */

#include "fmnist_common.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sched.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef FM_WITH_MPI
#include <nn/dist.h>
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

/* ==== steady-state figures (--json) =====================================
 * A benchmark wants the cost of a step once the run has settled, not the
 * first steps' one-off work (recording the tape, the matrix kernel's
 * calibration, first-touch page faults), and how long a user waits for
 * the first step.  The figures add up the steps after the first
 * WARMUP_STEPS, leaving out each epoch's first step, whose time holds the
 * previous epoch's evaluation (the first of which records its own tape),
 * and each epoch's last step, whose batch is shorter when the batch size
 * does not divide the training set (60,000 = 937 x 64 + 32): the first
 * such batch records a tape of its own shape, about 85 first-touch page
 * faults in the MLP's first epoch that a steady step never has.  The
 * clocks and getrusage's minor page faults are read where a run of
 * counted steps opens (the end of step WARMUP_STEPS, the end of an
 * epoch's first step) and where it closes (the end of an epoch's last
 * step but one), as the PyTorch side reads them around its measured
 * steps.  Read at every step, the process's and the thread's CPU clocks
 * and getrusage (system calls, a few microseconds together on a virtual
 * machine) cost the MLP's step about 1 % of its time.  The clock is the
 * wall clock, or the process's CPU time with BENCH_CLOCK=cpu (bench/run
 * sets it: on a shared machine that leaves out the time spent waiting for
 * a core, as its PyTorch side does). */
#define WARMUP_STEPS 5

/* The clocks and the fault count at one point. */
typedef struct counters {
    double t, cpu, main; /* bench_clock, the process's CPU time, this thread's */
    long faults;
} counters;

typedef struct steady {
    double first_step_s; /* process start (or BENCH_LAUNCH_TIME) to step 1's end */
    bool open;           /* a run of counted steps is open ... */
    counters from;       /* ... since these readings, */
    int64_t run_steps, run_samples; /* with these steps so far */
    double seconds;      /* summed over the closed runs */
    double cpu_seconds;  /* the process's CPU time (all threads), likewise */
    double main_seconds; /* and this (the calling) thread's */
    long faults;
    int64_t steps, samples;
} steady;

static double bench_clock(void)
{
    const char *c = getenv("BENCH_CLOCK");
    if (c && strcmp(c, "cpu") == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
    return now();
}

static double cpu_clock(clockid_t which)
{
    struct timespec ts;
    clock_gettime(which, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long minor_faults(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt : 0;
}

static counters read_counters(void)
{
    return (counters){bench_clock(), cpu_clock(CLOCK_PROCESS_CPUTIME_ID),
                      cpu_clock(CLOCK_THREAD_CPUTIME_ID), minor_faults()};
}

/* Seconds since the launch time bench/run passes (BENCH_LAUNCH_TIME,
 * seconds since the epoch) or, without it, since t_start (fm_start). */
static double since_launch(double t_start)
{
    const char *l = getenv("BENCH_LAUNCH_TIME");
    if (l && *l) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - strtod(l, NULL);
    }
    return now() - t_start;
}

/* ==== options ========================================================== */

/* --threads auto (the default): see auto_threads. */
enum { THREADS_AUTO = -1, THREADS_AUTO_MAX = 8 };

typedef struct options {
    const char *data_dir;
    int64_t epochs, batch, limit, test_limit;
    double lr, momentum;
    int threads; /* THREADS_AUTO until start() settles it */
    nn_thread_mode thread_mode;
    uint64_t seed;
    const char *save, *load, *curve, *predict, *checkpoint, *resume;
    bool json, quiet;
} options;

static void usage(const fm_recipe *m, FILE *out)
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
            "  --threads N       N > 1 trains on N threads (nn_trainer_set_threads);\n"
            "                    1 one thread; 0 one training thread, the library's\n"
            "                    kernels on OpenMP's threads; auto one per core\n"
            "                    (OMP_NUM_THREADS when set; at most 8; 1 per rank\n"
            "                    under mpirun) [auto]\n"
            "  --thread-mode M   how N threads share a step: batch (split the\n"
            "                    batch), ops (split the products and the update) or\n"
            "                    auto (chosen per model) [auto]\n"
            "  --limit N         train on the first N training images only (0 = all)\n"
            "  --test-limit N    evaluate on the first N test images only (0 = all)\n"
            "  --seed N          initialisation and shuffling [1]\n"
            "  --save FILE       write the trained model (safetensors)\n"
            "  --load FILE       start from saved weights: a file of --save, or a PyTorch\n"
            "                    state_dict saved with safetensors (names and shapes checked)\n"
            "  --predict FILE    write the test set's predictions as CSV: index, label,\n"
            "                    predicted class and the 10 logits per image\n"
            "  --checkpoint FILE save model and optimiser after every epoch (atomically)\n"
            "  --resume FILE     go on from a --checkpoint or --save file, to --epochs\n"
            "  --curve FILE.csv  per-epoch loss and accuracy (+ FILE.png with gnuplot)\n"
            "  --json            end with one line of JSON: the figures of the run\n"
            "  --quiet           no progress, no tables (errors and --json still print)\n"
            "  --help            this text\n"
            "\n"
            "Under mpirun or srun (when built with MPI), each rank trains on its slice of\n"
            "every batch: --batch is per rank, the global batch is ranks x --batch.\n"
            "\n"
            "Exit status: 0 success, 1 runtime error (data, checkpoint, I/O), 2 usage.\n",
            m->arch, m->description, DEFAULT_DATA_DIR, m->epochs, m->batch, m->lr, m->momentum);
}

/* Where the option parser's messages go: to f, or nowhere on the ranks
 * after the first, which parse the same command line in silence. */
static FILE *silent_sink;
static FILE *msgs(FILE *f)
{
    return silent_sink ? silent_sink : f;
}

/* strtoll/strtod accept leading spaces, trailing junk ("5x") and, for
 * integers, overflow clamped to the limit; a command line should be read
 * strictly, so each value must be the whole argument and in range. */
static int parse_int(const fm_recipe *m, const char *opt, const char *s, int64_t lo, int64_t hi,
                     const char *what, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        fprintf(msgs(stderr), "%s: %s must be %s, got '%s'\n", m->arch, opt, what, s);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_real(const fm_recipe *m, const char *opt, const char *s, double lo, double hi,
                      bool hi_open, const char *what, double *out)
{
    char *end;
    double v = strtod(s, &end);
    /* !(v >= lo) is also true for NaN, which must be refused: a NaN
     * learning rate would turn every weight into NaN at the first step. */
    if (*s == '\0' || *end != '\0' || !isfinite(v) || !(v >= lo) || v > hi ||
        (hi_open && v >= hi)) {
        fprintf(msgs(stderr), "%s: %s must be %s, got '%s'\n", m->arch, opt, what, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* 0 to go on, -1 after printing a usage error, 1 when --help was given. */
static int parse_options(const fm_recipe *m, int argc, char **argv, options *o)
{
    *o = (options){.data_dir = DEFAULT_DATA_DIR, .epochs = m->epochs, .batch = m->batch,
                   .lr = m->lr, .momentum = m->momentum, .threads = THREADS_AUTO, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(m, msgs(stdout));
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
            fprintf(msgs(stderr), "%s: unknown argument '%s' (see --help)\n", m->arch, arg);
            return -1;
        }
        if (eq) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = '\0';
        } else {
            strcpy(name, arg);
        }
        static const char *const with_value[] = {
            "--data", "--save", "--load", "--curve", "--checkpoint", "--resume", "--epochs",
            "--batch", "--limit", "--test-limit", "--threads", "--seed", "--lr", "--momentum",
            "--predict", "--thread-mode"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            known |= !strcmp(name, with_value[k]);
        if (!known) {
            fprintf(msgs(stderr), "%s: unknown option '%s' (see --help)\n", m->arch, name);
            return -1;
        }
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc) {
                fprintf(msgs(stderr), "%s: %s needs a value (see --help)\n", m->arch, name);
                return -1;
            }
            val = argv[++i];
        }
        int64_t n = 0;
        int rc = 0;
        if (!strcmp(name, "--data")) {
            o->data_dir = val;
        } else if (!strcmp(name, "--save")) {
            o->save = val;
        } else if (!strcmp(name, "--load")) {
            o->load = val;
        } else if (!strcmp(name, "--predict")) {
            o->predict = val;
        } else if (!strcmp(name, "--curve")) {
            o->curve = val;
        } else if (!strcmp(name, "--checkpoint")) {
            o->checkpoint = val;
        } else if (!strcmp(name, "--resume")) {
            o->resume = val;
        } else if (!strcmp(name, "--epochs")) {
            rc = parse_int(m, name, val, 0, 100000, "an integer from 0 to 100000", &o->epochs);
        } else if (!strcmp(name, "--batch")) {
            rc = parse_int(m, name, val, 1, 60000, "an integer from 1 to 60000", &o->batch);
        } else if (!strcmp(name, "--limit")) {
            rc = parse_int(m, name, val, 0, INT64_MAX, "an integer >= 0", &o->limit);
        } else if (!strcmp(name, "--test-limit")) {
            rc = parse_int(m, name, val, 0, INT64_MAX, "an integer >= 0", &o->test_limit);
        } else if (!strcmp(name, "--threads")) {
            if (!strcmp(val, "auto")) {
                o->threads = THREADS_AUTO;
            } else {
                /* nn_trainer_set_threads takes 0..256 */
                rc = parse_int(m, name, val, 0, 256, "auto or an integer from 0 to 256", &n);
                o->threads = (int)n;
            }
        } else if (!strcmp(name, "--thread-mode")) {
            if (!strcmp(val, "auto")) {
                o->thread_mode = NN_THREADS_AUTO;
            } else if (!strcmp(val, "batch")) {
                o->thread_mode = NN_THREADS_BATCH;
            } else if (!strcmp(val, "ops")) {
                o->thread_mode = NN_THREADS_OPS;
            } else {
                fprintf(msgs(stderr), "%s: --thread-mode must be auto, batch or ops, got '%s'\n",
                        m->arch, val);
                rc = -1;
            }
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
    if (o->load && o->resume) {
        fprintf(msgs(stderr), "%s: --load and --resume exclude each other\n", m->arch);
        return -1;
    }
    return 0;
}

/* ==== the run ============================================================== */

/* Everything a run owns, freed in one place whatever went wrong. */
struct fm_private {
    const fm_recipe *m;
    options o;
    double t_start;
    int threads;
    nn_mnist *train_data, *test_data;
    nn_confusion *test_cm; /* of the last evaluation */
    nn_module *net;        /* the program's, for --predict */
    FILE *curve;
    double *batch_loss;    /* this epoch's loss of every batch */
    int64_t *batch_size;
    /* figures for the summary */
    int64_t nb, samples_trained, loaded_epochs;
    double train_s, first_loss, last_loss, final_loss, test_loss, test_acc;
    /* data-parallel: this rank of world ranks (0 of 1 alone) */
    int rank, world;
#ifdef FM_WITH_MPI
    nn_dist *dist;
#endif
    char meta[512];        /* the checkpoints' metadata */
    int64_t steps_seen;
    int thread_mode;       /* the trainer's (nn_trainer_get_thread_mode), after a step */
    int64_t serial_steps;  /* nn_trainer_stats's, after training */
    steady st;
};

/* Mean loss over batches [from, to) of the epoch, weighted by batch size
 * (a shorter last batch counts for less). */
static double window_mean(const struct fm_private *p, int64_t from, int64_t to)
{
    double sum = 0, n = 0;
    for (int64_t b = from; b < to; b++) {
        sum += p->batch_loss[b] * (double)p->batch_size[b];
        n += (double)p->batch_size[b];
    }
    return n > 0 ? sum / n : NAN;
}

/* nn_fit's callbacks: every batch's loss, then the epoch's figures. */
static int on_step(nn_trainer *tr, const nn_step_info *s, void *user)
{
    struct fm_private *p = user;
    p->thread_mode = nn_trainer_get_thread_mode(tr);
    p->batch_loss[s->batch - 1] = s->loss;
    p->batch_size[s->batch - 1] = s->samples;
    int64_t k = ++p->steps_seen;
    steady *st = &p->st;
    if (k == 1) st->first_step_s = since_launch(p->t_start);
    if (k < WARMUP_STEPS) return 0;
    if (st->open && s->batch == 1) st->open = false; /* an epoch left unfinished: dropped */
    if (st->open) {
        st->run_steps++;
        st->run_samples += s->samples;
        if (s->batch == s->num_batches - 1) { /* the run closes */
            counters to = read_counters();
            st->seconds += to.t - st->from.t;
            st->cpu_seconds += to.cpu - st->from.cpu;
            st->main_seconds += to.main - st->from.main;
            st->faults += to.faults - st->from.faults;
            st->steps += st->run_steps;
            st->samples += st->run_samples;
            st->open = false;
        }
    } else if ((k == WARMUP_STEPS || s->batch == 1) && s->batch < s->num_batches - 1) {
        st->from = read_counters(); /* a run opens after this step */
        st->open = true;
        st->run_steps = st->run_samples = 0;
    }
    return 0;
}

static int on_epoch(nn_trainer *tr, const nn_epoch_info *e, void *user)
{
    (void)tr;
    struct fm_private *p = user;
    /* The loss of the first and last tenth of training, to show (and let
     * the tests check) that it fell. */
    int64_t nb = p->nb, w = nb / 10 > 0 ? nb / 10 : 1;
    if (e->epoch == 1) p->first_loss = window_mean(p, 0, w);
    p->last_loss = window_mean(p, nb - w, nb);
    p->final_loss = e->train.loss;
    p->train_s += e->train_seconds;
    p->samples_trained += e->train.samples;
    p->test_loss = e->val.loss;
    p->test_acc = e->val.accuracy;
    if (p->curve) {
        fprintf(p->curve, "%" PRId64 ",%.6g,%.6f,%.6f,%.6f,%.6f,%.3f\n", e->epoch, e->lr,
                e->train.loss, e->train.accuracy, e->val.loss, e->val.accuracy, e->seconds);
        /* flushed each epoch so a long run can be watched as it goes */
        if (fflush(p->curve) || ferror(p->curve))
            return ad_set_error("%s: write error", p->o.curve);
    }
    return 0;
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

static void print_json(const fm_run *r)
{
    const struct fm_private *p = r->p;
    printf("{\"arch\": \"%s\", \"epochs\": %" PRId64 ", \"batch\": %" PRId64
           ", \"lr\": %g, \"momentum\": %g, \"seed\": %" PRIu64 ", \"threads\": %d"
           ", \"train_samples\": %" PRId64 ", \"test_samples\": %" PRId64 ", ",
           p->m->arch, p->o.epochs, p->o.batch, p->o.lr, p->o.momentum, p->o.seed, p->threads,
           nn_loader_num_samples(r->train), nn_loader_num_samples(r->test));
    /* train_samples_per_s is the aggregate over the ranks: every rank's
     * samples, over rank 0's training time. */
    static const char *const mode_name[] = {"none", "batch", "ops"};
    printf("\"thread_mode\": \"%s\", ", p->o.threads > 1 && p->thread_mode > 0
                                             ? mode_name[p->thread_mode] : "none");
    printf("\"serial_steps\": %" PRId64 ", ", p->serial_steps);
    printf("\"world_size\": %d, ", p->world);
#ifdef FM_WITH_MPI
    nn_dist_stats ds;
    if (p->dist && nn_dist_get_stats(p->dist, &ds) == 0 && ds.steps > 0) {
        json_number("allreduce_ms_per_step", 1e3 * ds.reduce_seconds / (double)ds.steps, false);
        json_number("pack_ms_per_step", 1e3 * ds.pack_seconds / (double)ds.steps, false);
        if (ds.wait_seconds > 0)
            json_number("allreduce_wait_ms_per_step", 1e3 * ds.wait_seconds / (double)ds.steps,
                        false);
        printf("\"allreduce_bytes\": %" PRId64 ", ", ds.bytes);
        printf("\"dist_sharded\": %s, ", ds.sharded ? "true" : "false");
        printf("\"dist_shared_memory\": %s, ", ds.shared_memory ? "true" : "false");
    }
#endif
    json_number("test_accuracy", p->test_acc, false);
    json_number("test_loss", p->test_loss, false);
    json_number("first_loss", p->first_loss, false);
    json_number("last_loss", p->last_loss, false);
    json_number("final_loss", p->final_loss, false);
    json_number("train_samples_per_s",
                p->train_s > 0 ? (double)p->samples_trained / p->train_s : NAN, false);
    json_number("train_s", p->train_s, false);
    /* after the warm-up: samples/s, minor page faults per step */
    const steady *st = &p->st;
    json_number("first_step_s", p->steps_seen > 0 ? st->first_step_s : NAN, false);
    json_number("steady_steps", (double)st->steps, false);
    json_number("steady_samples_per_s",
                st->seconds > 0 ? (double)st->samples / st->seconds : NAN, false);
    /* CPU time of all threads per sample: what a split step costs in
     * cores, whatever the wait for them on a busy machine */
    json_number("steady_cpu_us_per_sample",
                st->samples > 0 ? 1e6 * st->cpu_seconds / (double)st->samples : NAN, false);
    /* ... and of the thread that calls the trainer (with the batch split,
     * shard 0, loading the batches and the bookkeeping: the busiest) */
    json_number("steady_main_cpu_us_per_sample",
                st->samples > 0 ? 1e6 * st->main_seconds / (double)st->samples : NAN, false);
    json_number("minflt_per_step",
                st->steps > 0 ? (double)st->faults / (double)st->steps : NAN, false);
    json_number("wall_s", now() - p->t_start, true);
    printf("}\n");
}

/* ==== data ================================================================ */

static int load_data(struct fm_private *p)
{
    p->train_data = nn_mnist_load(p->o.data_dir, true);
    if (!p->train_data) return -1;
    p->test_data = nn_mnist_load(p->o.data_dir, false);
    if (!p->test_data) return -1;
    for (int i = 0; i < 2; i++) {
        const nn_idx *im = (i ? p->test_data : p->train_data)->images;
        if (im->dims[1] != 28 || im->dims[2] != 28)
            return ad_set_error("%s: the %s images are %" PRId64 "x%" PRId64
                                ", Fashion-MNIST's are 28x28",
                                p->o.data_dir, i ? "test" : "training", im->dims[1], im->dims[2]);
    }
    return 0;
}

static int make_loaders(fm_run *r)
{
    const struct fm_private *p = r->p;
    nn_loader_options o = {
        .batch_size = p->o.batch,
        /* a new order each epoch: batches of one class would pull the
         * weights back and forth */
        .shuffle = true,
        /* Not the initialisation's seed: the generator is counter-based, so
         * the same seed would make the first shuffle draw the very numbers
         * that initialised the weights. */
        .seed = p->o.seed ^ UINT64_C(0x9e3779b97f4a7c15),
        .limit = p->o.limit,
        .normalize = true,
        .mean = PIXEL_MEAN,
        .std = PIXEL_STD,
        .sample_ndim = p->m->sample_ndim,
    };
    for (int d = 0; d < p->m->sample_ndim; d++) o.sample_shape[d] = p->m->sample_shape[d];
    r->train = nn_loader_from_idx(p->train_data->images, p->train_data->labels, &o);
    o.batch_size = p->m->eval_batch;
    o.shuffle = false;
    o.limit = p->o.test_limit;
    r->test = nn_loader_from_idx(p->test_data->images, p->test_data->labels, &o);
    if (!r->train || !r->test) return -1;
#ifdef FM_WITH_MPI
    /* Each rank trains on its slice of every global batch, and evaluates
     * its slice of the test set; the trainer sums the figures. */
    if (p->world > 1 && (nn_dist_shard(p->dist, r->train) || nn_dist_shard(p->dist, r->test)))
        return -1;
#endif
    return 0;
}

/* ==== the three calls of a program ======================================== */

static void run_free(fm_run *r)
{
    struct fm_private *p = r->p;
    nn_loader_free(r->train);
    nn_loader_free(r->test);
    if (!p) return;
    nn_confusion_free(p->test_cm);
    nn_mnist_free(p->train_data);
    nn_mnist_free(p->test_data);
    if (p->curve) fclose(p->curve);
    free(p->batch_loss);
    free(p->batch_size);
#ifdef FM_WITH_MPI
    nn_dist_finalize(p->dist);
#endif
    free(p);
    *r = (fm_run){0};
}

/* --threads auto: the trainer's threads, one per core this process may
 * run on.  Sharing each step among the trainer's threads beat the
 * library's OpenMP kernel threads (--threads 0, the default before) on
 * every host measured, idle or loaded (docs/training.md, "Threads"): a
 * step's products are too small to split well one at a time.  The count
 * is OpenMP's (OMP_NUM_THREADS, else the CPUs of the process's affinity
 * mask), so OMP_NUM_THREADS=1 still means one thread; at most
 * THREADS_AUTO_MAX, since beyond that a batch of 64 leaves each thread too
 * little and no more cores were measured.  Under mpirun each rank takes
 * one: the launcher gives each rank its core. */
static int auto_threads(int world)
{
    if (world > 1) return 1;
    long n = 1;
#ifdef _OPENMP
    n = omp_get_max_threads();
    if (omp_get_thread_limit() < n) n = omp_get_thread_limit(); /* OMP_THREAD_LIMIT */
#else
    /* without OpenMP, its variable and the affinity mask read here */
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) {
        n = strtol(env, NULL, 10);
    } else {
#ifdef __linux__
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#elif defined(_SC_NPROCESSORS_ONLN)
        n = sysconf(_SC_NPROCESSORS_ONLN);
#endif
    }
#endif
    return n < 1 ? 1 : n > THREADS_AUTO_MAX ? THREADS_AUTO_MAX : (int)n;
}

/* Everything of fm_start after the options: -1 with ad_error() set, or
 * EXIT_USAGE after printing a message for a value the data contradict. */
static int start(fm_run *r)
{
    struct fm_private *p = r->p;
    options *o = &p->o;
    if (o->threads == THREADS_AUTO) o->threads = auto_threads(p->world);
    p->threads = o->threads > 0 ? o->threads : 1;
#ifdef _OPENMP
    /* OpenMP parallelises the library's own kernels (elementwise ops,
     * unfold/fold of the convolutions, the built-in matrix product); the
     * trainer's threads limit their kernels to themselves.  OpenBLAS, when
     * the library uses it for matrix products, keeps its own thread pool:
     * set OPENBLAS_NUM_THREADS in the environment. */
    if (o->threads > 0) omp_set_num_threads(o->threads);
    else p->threads = omp_get_max_threads();
#else
    if (o->threads == 0 && !o->quiet)
        printf("note: built without OpenMP, the library's kernels run on one thread\n");
#endif
    /* Every rank evaluates its own slice of the test set under mpirun. */
    if (o->predict && p->world > 1)
        return ad_set_error("--predict writes the whole test set from one process: run it "
                            "without mpirun (--load the saved model, --epochs 0)");
    /* The model and the predictions are written at the end, the
     * checkpoint after the first epoch: finding out then that a directory
     * is missing would waste the training run. */
    if (p->rank == 0 && ((o->save && nn_check_writable(o->save)) ||
                         (o->predict && nn_check_writable(o->predict)) ||
                         (o->checkpoint && nn_check_writable(o->checkpoint))))
        return -1;
    if (load_data(p)) return -1;
    int64_t ntrain = p->train_data->images->dims[0], ntest = p->test_data->images->dims[0];
    if (o->limit > ntrain || o->test_limit > ntest) {
        if (p->rank == 0)
            fprintf(stderr, "%s: --%s %" PRId64 " is more than the %" PRId64 " images of %s\n",
                p->m->arch, o->limit > ntrain ? "limit" : "test-limit",
                o->limit > ntrain ? o->limit : o->test_limit,
                o->limit > ntrain ? ntrain : ntest, o->data_dir);
        return EXIT_USAGE;
    }
    if (make_loaders(r)) return -1;
    int64_t nb = p->nb = nn_loader_num_batches(r->train);
    p->test_cm = nn_confusion_new(NUM_CLASSES);
    p->batch_loss = malloc((size_t)nb * sizeof *p->batch_loss);
    p->batch_size = malloc((size_t)nb * sizeof *p->batch_size);
    if (!p->test_cm) return -1;
    if (!p->batch_loss || !p->batch_size) return ad_set_error("out of memory");
    p->first_loss = p->last_loss = p->final_loss = p->test_loss = p->test_acc = NAN;
    r->fit = (nn_fit_options){.progress = o->quiet ? NULL : stdout,
                              .val_confusion = p->test_cm,
                              .on_step = on_step,
                              .on_epoch = on_epoch,
                              .user = p};
    if (o->checkpoint) {
        snprintf(p->meta, sizeof p->meta,
                 "{\"arch\": \"%s\", \"description\": \"%s\"}", p->m->arch,
                 p->m->description);
        r->fit.checkpoint = o->checkpoint; /* nn_fit writes it on rank 0 only */
        r->fit.checkpoint_metadata = p->meta;
    }
    return 0;
}

int fm_start(fm_run *r, const fm_recipe *recipe, int argc, char **argv)
{
    *r = (fm_run){0};
    struct fm_private *p = calloc(1, sizeof *p);
    if (!p) {
        fprintf(stderr, "%s: out of memory\n", recipe->arch);
        return EXIT_RUNTIME;
    }
    r->p = p;
    p->m = recipe;
    p->t_start = now();
    p->world = 1;
#ifdef FM_WITH_MPI
    /* Under mpirun or srun: MPI_Init, and this is one rank of several.
     * Started alone, the program trains alone and never touches MPI.
     * Every rank parses the same options; only rank 0 prints, saves and
     * writes the curve. */
    if (nn_dist_launched() && !(p->dist = nn_dist_init(&argc, &argv, NULL))) {
        fprintf(stderr, "%s: error: %s\n", recipe->arch, ad_error());
        run_free(r);
        return EXIT_RUNTIME;
    }
    if (p->dist) {
        p->rank = nn_dist_rank(p->dist);
        p->world = nn_dist_world_size(p->dist);
    }
#endif
    if (p->rank > 0) silent_sink = fopen("/dev/null", "w");
    int rc = parse_options(recipe, argc, argv, &p->o);
    if (silent_sink) {
        fclose(silent_sink);
        silent_sink = NULL;
    }
    if (p->rank > 0) { /* the same options; rank 0 speaks for all */
        p->o.quiet = true;
        p->o.json = false;
        p->o.curve = NULL;
    }
    if (rc) {
        run_free(r);
        return rc < 0 ? EXIT_USAGE : 0;
    }
    rc = start(r);
    if (rc == 0) {
        r->seed = p->o.seed;
        r->epochs = p->o.epochs;
        r->lr = p->o.lr;
        r->momentum = p->o.momentum;
        return FM_GO;
    }
    if (rc < 0) {
#ifdef FM_WITH_MPI
        /* A rank that stops here would leave the others waiting. */
        if (p->world > 1) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "%s: ", recipe->arch);
            nn_dist_abort(p->dist, prefix, EXIT_RUNTIME);
        }
#endif
        fflush(stdout);
        fprintf(stderr, "%s: error: %s\n", recipe->arch, ad_error() ? ad_error() : "unknown");
        rc = EXIT_RUNTIME;
    }
    run_free(r);
    return rc;
}

/* A file of the other program ("arch" metadata of another model) is
 * refused by name before its shapes are: 0, or -1 with the error set;
 * *arch_out (may be NULL) gets whether the file names an architecture
 * and *epochs_out the epochs it records (when it does). */
static int check_arch(const fm_recipe *m, const char *path, bool *arch_out, int64_t *epochs_out)
{
    nn_safetensors_info *info = nn_safetensors_inspect(path);
    if (!info) return -1;
    const char *arch = nn_safetensors_metadata(info, "arch");
    const char *epochs = nn_safetensors_metadata(info, "epochs");
    int rc = 0;
    if (!arch)
        ad_clear_error(); /* no "arch": not an error here */
    else if (strcmp(arch, m->arch) != 0)
        rc = ad_set_error("%s holds a %s model, not %s (%s): wrong architecture", path, arch,
                          m->arch, m->description);
    if (arch_out) *arch_out = arch != NULL;
    if (!rc && epochs && epochs_out) *epochs_out = strtoll(epochs, NULL, 10);
    nn_safetensors_info_free(info);
    return rc;
}

int fm_prepare(fm_run *r, nn_module *net, nn_trainer *tr)
{
    struct fm_private *p = r->p;
    const options *o = &p->o;
    const fm_recipe *m = p->m;
    if (!net || !tr) return -1;
    p->net = net;
    /* With --threads N > 1 every training step runs on N threads: the
     * batch split among them (data parallelism), or the products and the
     * update split, as --thread-mode says (auto: the trainer's rule). */
    if (o->threads > 1 && (nn_trainer_set_threads(tr, o->threads) ||
                           nn_trainer_set_thread_mode(tr, o->thread_mode)))
        return -1;
    if (o->load) {
        /* The metadata is checked first for a clear message ("holds a
         * fmnist_cnn model"); the strict load then checks every name,
         * dtype and shape, and changes nothing unless all match. */
        bool arch;
        if (check_arch(m, o->load, &arch, &p->loaded_epochs)) return -1;
        /* A file without "arch" is someone else's state_dict, e.g. from
         * PyTorch's safetensors.torch.save_file(model.state_dict()): it is
         * loaded as this architecture, and the strict load below says
         * which names or shapes do not fit. */
        if (!arch && !o->quiet)
            printf("note: %s has no \"arch\" metadata (a plain state_dict, e.g. saved from "
                   "PyTorch); loading it as %s, every name, dtype and shape checked\n",
                   o->load, m->arch);
        if (nn_trainer_load(tr, o->load, false)) return -1;
    }
    if (o->resume && check_arch(m, o->resume, NULL, NULL)) return -1;
#ifdef FM_WITH_MPI
    /* Rank 0's model (initialised from the same seed, or loaded above)
     * and optimiser state on every rank; then --resume reads the file on
     * rank 0 and sends it to all.  A world of one trains alone. */
    if (p->world > 1) {
        if (nn_dist_attach(p->dist, tr) || (o->resume && nn_dist_load(p->dist, tr, o->resume)))
            return -1;
    } else if (o->resume && nn_trainer_load(tr, o->resume, true)) {
        return -1;
    }
#else
    if (o->resume && nn_trainer_load(tr, o->resume, true)) return -1;
#endif
    if (o->resume && !o->quiet)
        printf("resumed from %s after epoch %" PRId64 "\n", o->resume, nn_trainer_epoch(tr));
    if (o->curve) {
        p->curve = fopen(o->curve, "w");
        if (!p->curve) return ad_set_error("%s: cannot write: %s", o->curve, strerror(errno));
        fprintf(p->curve, "epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy,epoch_s\n");
    }
    if (o->quiet) return 0;
    printf("%s: %s, %" PRId64 " parameters\n", m->arch, m->description, nn_num_parameters(net));
    int64_t shape[4] = {1};
    for (int d = 0; d < m->sample_ndim; d++) shape[d + 1] = m->sample_shape[d];
    if (nn_summary(net, m->sample_ndim + 1, shape, stdout)) return -1;
    printf("data: %" PRId64 " training and %" PRId64 " test images from %s\n",
           nn_loader_num_samples(r->train), nn_loader_num_samples(r->test), o->data_dir);
    if (o->epochs > 0)
        printf("training: %" PRId64 " epoch%s of %" PRId64 " steps, batch %" PRId64
               ", SGD lr %g (cosine to 0) momentum %g, %d %sthread%s\n",
               o->epochs, o->epochs == 1 ? "" : "s", nn_loader_num_batches(r->train), o->batch,
               o->lr, o->momentum, p->threads, o->threads == 0 ? "OpenMP kernel " : "",
               p->threads == 1 ? "" : "s");
    return 0;
}

/* --predict: one CSV row per test image, in the data set's order (the
 * test loader does not shuffle): its index, true label, predicted class
 * (the largest logit) and the 10 logits, from the model in eval mode
 * without recording. */
static int write_predictions(fm_run *r)
{
    struct fm_private *p = r->p;
    const char *path = p->o.predict;
    FILE *f = fopen(path, "w");
    if (!f) return ad_set_error("%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "index,label,predicted");
    for (int c = 0; c < NUM_CLASSES; c++) fprintf(f, ",logit_%d", c);
    fprintf(f, "\n");
    ad_tape *tape = ad_tape_new();
    ad_tape *prev = ad_tape_activate(tape);
    bool grad = ad_set_grad_enabled(false);
    bool training = nn_is_training(p->net);
    nn_eval(p->net);
    int rc = tape && nn_loader_reset(r->test) == 0 ? 0 : -1;
    int64_t index = 0;
    ad_tensor *x, *y;
    while (rc == 0 && (rc = nn_loader_next(r->test, &x, &y)) == 1) {
        rc = 0;
        ad_tensor *logits = nn_forward(p->net, x);
        ad_tensor *dense = logits ? ad_copy(tape, logits) : NULL; /* float32, row-major */
        if (!dense || ad_tensor_dtype(dense) != AD_FLOAT32 || ad_size(dense, 1) != NUM_CLASSES) {
            rc = dense ? ad_set_error("--predict: the model's output is not [batch, 10] float32")
                       : -1;
            break;
        }
        const float *v = ad_data(dense);
        const int64_t *lab = ad_data(y);
        for (int64_t i = 0; i < ad_size(dense, 0); i++, index++) {
            int best = 0;
            for (int c = 1; c < NUM_CLASSES; c++)
                if (v[i * NUM_CLASSES + c] > v[i * NUM_CLASSES + best]) best = c;
            fprintf(f, "%" PRId64 ",%" PRId64 ",%d", index, lab[i], best);
            for (int c = 0; c < NUM_CLASSES; c++) fprintf(f, ",%.9g", v[i * NUM_CLASSES + c]);
            fprintf(f, "\n");
        }
        if (ad_tape_reset(tape)) rc = -1;
    }
    nn_train(p->net, training);
    ad_set_grad_enabled(grad);
    ad_tape_activate(prev);
    ad_tape_free(tape);
    if (fclose(f) && rc == 0) rc = ad_set_error("%s: write error", path);
    if (rc == 0 && !p->o.quiet)
        printf("predictions for %" PRId64 " test images written to %s\n", index, path);
    return rc < 0 ? -1 : 0;
}

/* The report of a successful run; -1 with ad_error() set on failure. */
static int report(fm_run *r, nn_trainer *tr)
{
    struct fm_private *p = r->p;
    const options *o = &p->o;
    if (p->samples_trained == 0) { /* nothing trained here: evaluate what was loaded */
        nn_metrics mt;
        nn_confusion_reset(p->test_cm);
        if (nn_trainer_evaluate(tr, r->test, p->test_cm, &mt) < 0) return -1;
        p->test_loss = mt.loss;
        p->test_acc = mt.accuracy;
    }
    nn_trainer_stats st;
    bool stats = nn_trainer_get_stats(tr, &st) == 0;
    if (stats) p->serial_steps = st.serial_steps;
    if (!o->quiet && o->epochs > 0 && stats) {
        /* One tape per batch shape; their arenas stopped growing after
         * their first backward pass. */
        printf("training step: recorded once per batch shape (%d tape%s, %zu ops each), "
               "replayed %" PRId64 " times; arenas %.1f MB\n",
               st.recordings, st.recordings == 1 ? "" : "s", st.nodes, st.replays,
               (double)st.arena_reserved / 1e6);
        if (st.serial_steps > 0)
            printf("threads: %" PRId64 " of the steps ran on one thread (measured faster then, "
                   "or measuring it)\n", st.serial_steps);
    }
    if (p->curve) {
        int bad = fclose(p->curve);
        p->curve = NULL;
        if (bad) return ad_set_error("%s: write error", o->curve);
        if (o->epochs > 0) plot_curve(o->curve, p->m->arch, o->epochs, o->quiet);
    }
    if (o->predict && p->rank == 0 && write_predictions(r)) return -1;
    if (o->save && p->rank == 0) {
        /* Loadable in Python with safetensors.numpy.load_file: the model's
         * state_dict, the optimiser's state under optim.*, and metadata
         * saying which program made it. */
        char meta[512];
        snprintf(meta, sizeof meta,
                 "{\"arch\": \"%s\", \"description\": \"%s\", \"epochs\": \"%" PRId64
                 "\", \"test_accuracy\": \"%.4f\"}",
                 p->m->arch, p->m->description, p->loaded_epochs + o->epochs, p->test_acc);
        if (nn_trainer_save(tr, o->save, meta)) return -1;
        if (!o->quiet) printf("model saved to %s\n", o->save);
    }
    if (!o->quiet) {
        printf("\ntest accuracy: %.2f%% (%" PRId64 "/%" PRId64 "), test loss %.4f\n",
               100 * p->test_acc, p->test_cm->correct, p->test_cm->total, p->test_loss);
        if (p->train_s > 0)
            printf("training: %.0f samples/s, %.1f s\n",
                   (double)p->samples_trained / p->train_s, p->train_s);
        printf("\nconfusion matrix (rows: true class, columns: predicted)\n");
        if (nn_confusion_print(p->test_cm, CLASS_NAMES, stdout)) return -1;
    }
    if (o->json) print_json(r);
    return 0;
}

int fm_finish(fm_run *r, nn_trainer *tr, int rc)
{
    const char *arch = r->p->m->arch;
    if (rc == 0) rc = report(r, tr);
    if (rc < 0) {
#ifdef FM_WITH_MPI
        /* The other ranks may be waiting in a collective for this one:
         * end them all, with this rank's message.  The last checkpoint,
         * written atomically, is intact. */
        if (r->p->world > 1) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "%s: ", arch);
            nn_dist_abort(r->p->dist, prefix, EXIT_RUNTIME);
        }
#endif
        fflush(stdout);
        fprintf(stderr, "%s: error: %s\n", arch, ad_error() ? ad_error() : "unknown");
        rc = EXIT_RUNTIME;
    }
    run_free(r);
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "%s: error writing the output\n", arch);
        return EXIT_RUNTIME;
    }
    return rc;
}

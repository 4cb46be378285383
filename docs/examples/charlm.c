/* docs/examples/charlm.c - a character-level language model trained on the
 * text of the Debian fortunes (/usr/share/games/fortunes).
 *
 * The model reads bytes and predicts the next one (a vocabulary of 256):
 *
 *   lstm, gru, rnn   Embedding(256, 64) -> LSTM/GRU/RNN(64, 256) -> Linear(256, 256)
 *   transformer      Embedding(256, 128) + learned positions -> 2 pre-norm
 *                    decoder blocks (4 heads, causal, feed-forward 512)
 *                    -> LayerNorm -> Linear(128, 256)
 *
 * Training is truncated backpropagation through time.  The training text
 * (the first 95% of the bytes) is cut into `batch` streams read side by
 * side; each step takes the next `seq` bytes of every stream, and a
 * recurrent model starts each chunk from the state the previous chunk
 * ended in - carried with ad_detach, so the gradient stops at the chunk's
 * start (docs/lifetimes.md).  The loss is the mean cross-entropy of the
 * next byte, the gradient clipped to a global norm of 1, and Adam updates
 * the weights.  The score is the validation loss on the last 5% of the
 * bytes in bits per character (the cross-entropy in nats / ln 2): a model
 * knowing only byte frequencies scores about 4.7, a good one below 2.
 *
 *     build/docs/examples/charlm                          # LSTM, 2000 steps
 *     build/docs/examples/charlm --model gru --steps 500 --json
 *     build/docs/examples/charlm --steps 0 --resume lm.safetensors \
 *         --sample 400 --temperature 0.8 --prompt "The "
 *     build/docs/examples/charlm --help
 *
 * --checkpoint K trades compute for memory (gradient checkpointing,
 * ad_checkpoint): a recurrent model recomputes its steps in the backward
 * pass in segments of K, a transformer each block; the losses are the
 * same bits, forward_arena_mb and step_arena_mb (the step's peak) in
 * --json show the saving (bench/checkpoint_memory.py).
 *
 * Checkpoints (--save, every --save-every steps and at the end) hold the
 * model, the optimiser's state, the step and the carried state, so
 * --resume continues a run exactly where it stopped: on one thread the
 * resumed run is the uninterrupted one bit for bit.
 *
 * Under mpirun or srun (built with MPI) it trains data-parallel: the
 * training text is cut into world size x batch streams, rank r reads
 * streams [r batch, (r+1) batch), the gradients are averaged over the
 * ranks (nn_dist_backward) before clipping, and rank 0 alone prints and
 * saves; --json adds world_size, and its tokens/s are all ranks'.  So
 * `mpirun -np 2 charlm --batch 16` trains as `charlm --batch 32` does
 * (docs/distributed.md).
 */
#define _GNU_SOURCE /* clock_gettime, lstat, RTLD_DEFAULT */

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef CHARLM_WITH_MPI
#include <nn/dist.h>
typedef nn_dist dist_t;
#else
typedef void dist_t;
#endif

#define DEFAULT_DATA "/usr/share/games/fortunes"
#define VOCAB 256

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU time of the process (all threads): on a shared machine the wall
 * clock also counts the time spent waiting for a core. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The library may do its matrix products with OpenBLAS, whose thread pool
 * is its own: --threads sets it too, when the program has OpenBLAS in it
 * (looked up at run time, so the example needs no OpenBLAS header). */
static void set_blas_threads(int n)
{
    void *sym = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
    void (*set)(int);
    if (!sym) return;
    memcpy(&set, &sym, sizeof set); /* POSIX: a data pointer to a function */
    set(n);
}

/* ==== options ========================================================== */

typedef struct options {
    const char *model, *data, *save, *resume, *prompt, *norms;
    int64_t steps, batch, seq, embed, hidden, layers, heads, ff, save_every, sample, val_limit,
        checkpoint;
    double lr, clip, temperature, dropout;
    int threads;
    uint64_t seed;
    bool json, quiet;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: charlm [options]\n"
            "Trains a character-level language model on the fortunes text.\n"
            "\n"
            "  --model M          lstm, gru, rnn (tanh) or transformer [lstm]\n"
            "  --steps N          training steps (0: no training) [2000]\n"
            "  --data PATH        a text file, or a directory of them [%s]\n"
            "  --batch N          streams read side by side [32]\n"
            "  --seq N            bytes per chunk (truncation length of BPTT) [64]\n"
            "  --embed N          embedding size of the recurrent models [64]\n"
            "  --hidden N         hidden size of the recurrent models [256]\n"
            "  --layers N         recurrent layers or transformer blocks [1; transformer 2]\n"
            "  --d-model N        transformer width (same as --embed for it) [128]\n"
            "  --heads N          transformer attention heads [4]\n"
            "  --ff N             transformer feed-forward width [512]\n"
            "  --dropout P        transformer dropout [0]\n"
            "  --checkpoint K     gradient checkpointing: recurrent models recompute their\n"
            "                     steps in backward in segments of K (1..63), a transformer\n"
            "                     each block (any K > 0); 0 = off [0]\n"
            "  --lr X             Adam learning rate [0.002]\n"
            "  --clip X           clip the gradient's global norm to X, 0 = off [1]\n"
            "  --threads N        OpenMP threads for the library's kernels, 0 = default\n"
            "  --seed N           initialisation and sampling [1]\n"
            "  --val-limit N      evaluate on the first N validation bytes (0 = all)\n"
            "  --save FILE        checkpoint (safetensors) at the end and every --save-every\n"
            "  --save-every N     steps between checkpoints, 0 = only at the end [0]\n"
            "  --resume FILE      continue from a checkpoint written by --save\n"
            "  --sample N         print N generated bytes after training [0]\n"
            "  --temperature T    sampling temperature > 0 [0.8]\n"
            "  --prompt TEXT      text the sample continues [\"\\n\"]\n"
            "  --norms PREFIX     write PREFIX.steps.csv (loss and gradient norm of every\n"
            "                     step) and PREFIX.distance.csv (how the gradient of the\n"
            "                     last byte's loss shrinks or grows going back in time)\n"
            "  --json             end with one line of JSON: the figures of the run\n"
            "                     (first_loss, last_loss: mean training loss over the\n"
            "                     first and the last tenth of the steps)\n"
            "  --quiet            no progress (errors, samples and --json still print)\n"
            "  --help             this text\n"
            "\n"
            "Exit status: 0 success, 1 runtime error (data, checkpoint, I/O), 2 usage.\n",
            DEFAULT_DATA);
}

static int parse_int(const char *opt, const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        fprintf(stderr, "charlm: %s must be an integer from %" PRId64 " to %" PRId64
                        ", got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_real(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !isfinite(v) || !(v >= lo) || v > hi) {
        fprintf(stderr, "charlm: %s must be a number from %g to %g, got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* 0 to go on, -1 after a usage error, 1 after --help. */
static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.model = "lstm", .data = DEFAULT_DATA, .prompt = "\n", .steps = 2000,
                   .batch = 32, .seq = 64, .embed = -1, .hidden = 256, .layers = -1,
                   .heads = 4, .ff = 512, .lr = 2e-3, .clip = 1.0, .temperature = 0.8,
                   .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            o->quiet = true;
            continue;
        }
        static const char *const with_value[] = {
            "--model", "--steps", "--data", "--batch", "--seq", "--embed", "--hidden",
            "--layers", "--d-model", "--heads", "--ff", "--dropout", "--lr", "--clip",
            "--threads", "--seed", "--val-limit", "--save", "--save-every", "--resume",
            "--sample", "--temperature", "--prompt", "--norms", "--checkpoint"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            known |= !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "charlm: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "charlm: %s needs a value (see --help)\n", a);
            return -1;
        }
        const char *v = argv[++i];
        int64_t n = 0;
        int rc = 0;
        if (!strcmp(a, "--model")) {
            o->model = v;
            if (strcmp(v, "lstm") && strcmp(v, "gru") && strcmp(v, "rnn") &&
                strcmp(v, "transformer")) {
                fprintf(stderr, "charlm: --model must be lstm, gru, rnn or transformer, got '%s'\n",
                        v);
                rc = -1;
            }
        } else if (!strcmp(a, "--data")) {
            o->data = v;
        } else if (!strcmp(a, "--save")) {
            o->save = v;
        } else if (!strcmp(a, "--resume")) {
            o->resume = v;
        } else if (!strcmp(a, "--norms")) {
            o->norms = v;
        } else if (!strcmp(a, "--prompt")) {
            o->prompt = v;
        } else if (!strcmp(a, "--steps")) {
            rc = parse_int(a, v, 0, 100000000, &o->steps);
        } else if (!strcmp(a, "--batch")) {
            rc = parse_int(a, v, 1, 4096, &o->batch);
        } else if (!strcmp(a, "--seq")) {
            rc = parse_int(a, v, 1, 4096, &o->seq);
        } else if (!strcmp(a, "--embed") || !strcmp(a, "--d-model")) {
            rc = parse_int(a, v, 1, 65536, &o->embed);
        } else if (!strcmp(a, "--hidden")) {
            rc = parse_int(a, v, 1, 65536, &o->hidden);
        } else if (!strcmp(a, "--layers")) {
            rc = parse_int(a, v, 1, 64, &o->layers);
        } else if (!strcmp(a, "--heads")) {
            rc = parse_int(a, v, 1, 1024, &o->heads);
        } else if (!strcmp(a, "--ff")) {
            rc = parse_int(a, v, 1, 1 << 20, &o->ff);
        } else if (!strcmp(a, "--dropout")) {
            rc = parse_real(a, v, 0, 0.99, &o->dropout);
        } else if (!strcmp(a, "--lr")) {
            rc = parse_real(a, v, 0, 10, &o->lr);
        } else if (!strcmp(a, "--clip")) {
            rc = parse_real(a, v, 0, 1e9, &o->clip);
        } else if (!strcmp(a, "--threads")) {
            rc = parse_int(a, v, 0, 1024, &n);
            o->threads = (int)n;
        } else if (!strcmp(a, "--seed")) {
            rc = parse_int(a, v, 0, INT64_MAX, &n);
            o->seed = (uint64_t)n;
        } else if (!strcmp(a, "--val-limit")) {
            rc = parse_int(a, v, 0, INT64_MAX, &o->val_limit);
        } else if (!strcmp(a, "--save-every")) {
            rc = parse_int(a, v, 0, INT64_MAX, &o->save_every);
        } else if (!strcmp(a, "--sample")) {
            rc = parse_int(a, v, 0, 100000000, &o->sample);
        } else if (!strcmp(a, "--checkpoint")) {
            rc = parse_int(a, v, 0, 63, &o->checkpoint);
        } else if (!strcmp(a, "--temperature")) {
            rc = parse_real(a, v, 1e-3, 100, &o->temperature);
        }
        if (rc) return -1;
    }
    bool tf = !strcmp(o->model, "transformer");
    if (o->embed < 0) o->embed = tf ? 128 : 64;
    if (o->layers < 0) o->layers = tf ? 2 : 1;
    if (tf && o->embed % o->heads) {
        fprintf(stderr, "charlm: --d-model %" PRId64 " must be a multiple of --heads %" PRId64 "\n",
                o->embed, o->heads);
        return -1;
    }
    if (o->sample && !*o->prompt) {
        fprintf(stderr, "charlm: --prompt must not be empty\n");
        return -1;
    }
    return 0;
}

/* ==== data ================================================================ */

typedef struct text {
    unsigned char *bytes;
    int64_t n;
} text;

static int append_file(text *t, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ad_set_error_code(AD_ERR_IO, "%s: %s", path, strerror(errno));
    unsigned char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        unsigned char *p = realloc(t->bytes, (size_t)t->n + got);
        if (!p) {
            fclose(f);
            return ad_set_error("out of memory reading %s", path);
        }
        t->bytes = p;
        memcpy(t->bytes + t->n, buf, got);
        t->n += (int64_t)got;
    }
    int bad = ferror(f);
    fclose(f);
    return bad ? ad_set_error_code(AD_ERR_IO, "%s: read error", path) : 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file, or every regular file of a directory (not its subdirectories,
 * not the symbolic links, not the fortune indexes *.dat) in name order, so
 * that the text - and the split - is the same on every machine. */
static int load_text(const char *path, text *t)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return ad_set_error_code(AD_ERR_IO, "%s: %s (install the package fortunes-min or "
                                            "fortunes, or give --data FILE)", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return append_file(t, path);
    DIR *d = opendir(path);
    if (!d) return ad_set_error_code(AD_ERR_IO, "%s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || (len > 4 && !strcmp(e->d_name + len - 4, ".dat"))) continue;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (lstat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        char **p = realloc(names, (n + 1) * sizeof *names);
        char *s = p ? malloc(strlen(full) + 1) : NULL;
        if (p) names = p;
        if (!s) {
            rc = ad_set_error("out of memory listing %s", path);
            break;
        }
        names[n++] = strcpy(s, full);
    }
    closedir(d);
    if (names) qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) rc = append_file(t, names[i]);
        free(names[i]);
    }
    free(names);
    return rc;
}

/* The bytes at positions [p, p + len) of `batch` streams of length
 * stream each, starting at base: x[b, i] = s[b][p + i], y = the next. */
static void chunk(const unsigned char *s, int64_t stream, int64_t batch, int64_t len, int64_t p,
                  int64_t *x, int64_t *y)
{
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < len; i++) {
            x[b * len + i] = s[b * stream + p + i];
            y[b * len + i] = s[b * stream + p + i + 1];
        }
}

/* ==== the model ========================================================= */

typedef struct model {
    bool tf, lstm;
    int64_t layers, hidden, ctx;
    nn_module *root; /* children: embed, rnn | blocks, head; the state_dict */
    nn_module *embed, *rnn, *tfm, *head;
} model;

/* The root only holds the children (and so the state_dict); the forward
 * pass, which carries a state, is forward() below. */
static ad_tensor *root_forward(nn_module *m, ad_tensor *x)
{
    (void)m;
    (void)x;
    ad_set_error("CharLM: call its children (see forward() in charlm.c)");
    return NULL;
}

static const nn_module_type CHARLM = {"CharLM", root_forward, NULL, NULL};

static int build(model *m, const options *o, ad_rng *rng)
{
    *m = (model){.tf = !strcmp(o->model, "transformer"), .lstm = !strcmp(o->model, "lstm"),
                 .layers = o->layers, .hidden = o->hidden, .ctx = o->seq};
    m->root = nn_module_new(&CHARLM, NULL);
    if (!m->root) return -1;
    if (m->tf) {
        /* Sequential: token embedding, positions, blocks, final norm, head */
        const int64_t d[1] = {o->embed};
        m->tfm = nn_sequential(0, NULL);
        int rc = nn_sequential_append(m->tfm, nn_embedding(VOCAB, o->embed, AD_FLOAT32, rng));
        if (rc == 0)
            rc = nn_sequential_append(m->tfm,
                                      nn_positional_embedding(o->seq, o->embed, AD_FLOAT32, rng));
        for (int64_t l = 0; rc == 0 && l < o->layers; l++) {
            nn_module *block = nn_transformer_block(o->embed, o->heads, o->ff, o->dropout,
                                                    AD_FLOAT32, rng, o->seed * 16 + (uint64_t)l);
            if (block && o->checkpoint > 0) rc = nn_transformer_block_set_checkpoint(block, true);
            if (rc == 0) rc = nn_sequential_append(m->tfm, block);
        }
        if (rc == 0) rc = nn_sequential_append(m->tfm, nn_layer_norm(1, d, 1e-5, true, AD_FLOAT32));
        if (rc == 0)
            rc = nn_sequential_append(m->tfm, nn_linear(o->embed, VOCAB, true, AD_FLOAT32, rng));
        if (rc != 0) {
            nn_module_free(m->tfm);
            return -1;
        }
        return nn_module_add_child(m->root, "transformer", m->tfm);
    }
    m->embed = nn_embedding(VOCAB, o->embed, AD_FLOAT32, rng);
    if (nn_module_add_child(m->root, "embed", m->embed) != 0) return -1;
    m->rnn = !strcmp(o->model, "gru")
                 ? nn_gru(o->embed, o->hidden, (int)o->layers, true, AD_FLOAT32, rng)
             : m->lstm ? nn_lstm(o->embed, o->hidden, (int)o->layers, true, AD_FLOAT32, rng)
                       : nn_rnn(o->embed, o->hidden, (int)o->layers, NN_RNN_TANH, true,
                                AD_FLOAT32, rng);
    if (nn_module_add_child(m->root, "rnn", m->rnn) != 0) return -1;
    if (o->checkpoint > 0 && nn_rnn_set_checkpoint(m->rnn, (int)o->checkpoint) != 0) return -1;
    m->head = nn_linear(o->hidden, VOCAB, true, AD_FLOAT32, rng);
    return nn_module_add_child(m->root, "head", m->head);
}

/* logits [B*T, 256] of x [B, T]; a recurrent model starts from *h, *c
 * (NULL: zeros) and leaves its final state there. */
static ad_tensor *forward(model *m, ad_tensor *x, ad_tensor **h, ad_tensor **c)
{
    ad_tensor *logits;
    if (m->tf) {
        logits = nn_forward(m->tfm, x);
    } else {
        ad_tensor *out = NULL;
        if (nn_rnn_forward(m->rnn, nn_forward(m->embed, x), *h, *c, &out, h,
                           m->lstm ? c : NULL) != 0)
            return NULL;
        logits = nn_forward(m->head, out);
    }
    return logits ? ad_reshape(logits, 2, (int64_t[]){ad_numel(logits) / VOCAB, VOCAB}) : NULL;
}

/* ==== checkpoints ========================================================= */

typedef struct run {
    options o;
    model m;
    nn_optim *opt;
    nn_named_tensors *params;
    int64_t step;
    ad_tensor *h, *c; /* the carried state: tape tensors (detached), or persistent after resume */
    bool state_persistent;
} run;

/* Names and tensors of everything a checkpoint holds: "model.*" the
 * state_dict, "optim.*" Adam's state, "state.h"/"state.c" the carried
 * state (when there is one). */
static int collect(run *r, nn_named_tensors **sd, nn_named_tensors **os, int *n, const char ***names,
                   ad_tensor ***tensors, char ***owned)
{
    *sd = nn_state_dict(r->m.root);
    *os = *sd ? nn_optim_state(r->opt) : NULL;
    if (!*os) return -1;
    int cap = (*sd)->n + (*os)->n + 2;
    *names = calloc((size_t)cap, sizeof **names);
    *tensors = calloc((size_t)cap, sizeof **tensors);
    *owned = calloc((size_t)cap, sizeof **owned);
    if (!*names || !*tensors || !*owned) return ad_set_error("out of memory");
    int k = 0;
    for (int pass = 0; pass < 2; pass++) {
        nn_named_tensors *l = pass ? *os : *sd;
        for (int i = 0; i < l->n; i++, k++) {
            size_t len = strlen(l->names[i]) + 8;
            (*owned)[k] = malloc(len);
            if (!(*owned)[k]) return ad_set_error("out of memory");
            snprintf((*owned)[k], len, "%s.%s", pass ? "optim" : "model", l->names[i]);
            (*names)[k] = (*owned)[k];
            (*tensors)[k] = l->tensors[i];
        }
    }
    if (!r->m.tf && r->h) {
        (*names)[k] = "state.h";
        (*tensors)[k++] = r->h;
        if (r->c) {
            (*names)[k] = "state.c";
            (*tensors)[k++] = r->c;
        }
    }
    *n = k;
    return 0;
}

static void release(nn_named_tensors *sd, nn_named_tensors *os, int n, const char **names,
                    ad_tensor **tensors, char **owned)
{
    for (int i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(names);
    free(tensors);
    nn_named_tensors_free(sd);
    nn_named_tensors_free(os);
}

static void describe_arch(const options *o, char *buf, size_t size)
{
    snprintf(buf, size, "charlm-%s-e%" PRId64 "-h%" PRId64 "-l%" PRId64 "-s%" PRId64 "-b%" PRId64
                        "-a%" PRId64 "-f%" PRId64, o->model, o->embed, o->hidden, o->layers,
             o->seq, o->batch, o->heads, o->ff);
}

static int save(run *r, const char *path)
{
    nn_named_tensors *sd = NULL, *os = NULL;
    const char **names = NULL;
    ad_tensor **tensors = NULL;
    char **owned = NULL;
    int n = 0;
    int rc = collect(r, &sd, &os, &n, &names, &tensors, &owned);
    char arch[256], meta[512];
    describe_arch(&r->o, arch, sizeof arch);
    snprintf(meta, sizeof meta, "{\"arch\": \"%s\", \"step\": \"%" PRId64 "\"}", arch, r->step);
    if (rc == 0) rc = nn_save_safetensors(path, n, names, tensors, meta);
    release(sd, os, n, names, tensors, owned);
    return rc;
}

static int resume(run *r, const char *path, int64_t B)
{
    nn_safetensors_info *info = nn_safetensors_inspect(path);
    if (!info) return -1;
    char arch[256];
    describe_arch(&r->o, arch, sizeof arch);
    const char *a = nn_safetensors_metadata(info, "arch");
    const char *s = a ? nn_safetensors_metadata(info, "step") : NULL;
    int rc = 0;
    if (!s)
        rc = -1;
    else if (strcmp(a, arch))
        rc = ad_set_error("%s holds a %s, this run is a %s (give the same --model and sizes)",
                          path, a, arch);
    else
        r->step = strtoll(s, NULL, 10);
    bool has_state = false;
    for (int i = 0; i < info->n; i++) has_state |= !strcmp(info->entries[i].name, "state.h");
    nn_safetensors_info_free(info);
    if (rc) return -1;
    if (has_state && !r->m.tf) {
        int64_t shape[3] = {r->m.layers, B, r->m.hidden};
        r->h = ad_zeros(NULL, AD_FLOAT32, 3, shape);
        r->c = r->m.lstm ? ad_zeros(NULL, AD_FLOAT32, 3, shape) : NULL;
        r->state_persistent = true;
        if (!r->h || (r->m.lstm && !r->c)) return -1;
    }
    nn_named_tensors *sd = NULL, *os = NULL;
    const char **names = NULL;
    ad_tensor **tensors = NULL;
    char **owned = NULL;
    int n = 0;
    rc = collect(r, &sd, &os, &n, &names, &tensors, &owned);
    if (rc == 0) rc = nn_load_safetensors(path, n, names, tensors, true);
    release(sd, os, n, names, tensors, owned);
    return rc;
}

/* ==== evaluation and sampling ================================================= */

/* Mean cross-entropy in bits per byte of predicting s[1..n) from what
 * precedes, read as `batch` streams in chunks of seq (a recurrent model
 * carries its state across the chunks, a transformer sees each chunk
 * alone), in eval mode without recording. */
static double evaluate(model *m, const unsigned char *s, int64_t n, int64_t batch, int64_t seq)
{
    if (n / batch < 2) batch = 1;
    int64_t stream = n / batch;
    if (stream < 2) return NAN;
    bool prev = ad_set_grad_enabled(false);
    nn_eval(m->root);
    ad_tape *tape = ad_tape_new();
    ad_tape *prev_tape = ad_tape_activate(tape);
    int64_t *x = malloc((size_t)(batch * seq) * sizeof *x), *y = malloc((size_t)(batch * seq) * sizeof *y);
    double sum = 0;
    int64_t count = 0;
    ad_tensor *h = NULL, *c = NULL;
    for (int64_t p = 0; x && y && p + 1 < stream; p += seq) {
        int64_t len = p + seq + 1 <= stream ? seq : stream - 1 - p;
        chunk(s, stream, batch, len, p, x, y);
        ad_tensor *xt = ad_from_array(tape, AD_INT64, 2, (int64_t[]){batch, len}, x);
        ad_tensor *yt = ad_from_array(tape, AD_INT64, 1, (int64_t[]){batch * len}, y);
        ad_tensor *E = ad_cross_entropy(forward(m, xt, &h, &c), yt, AD_REDUCTION_SUM);
        if (!E) {
            sum = NAN;
            break;
        }
        sum += ad_item(E);
        count += batch * len;
        h = h ? ad_detach(h) : NULL;
        c = c ? ad_detach(c) : NULL;
        ad_tape_reset(tape);
    }
    free(x);
    free(y);
    ad_tape_activate(prev_tape);
    ad_tape_free(tape);
    nn_train(m->root, true);
    ad_set_grad_enabled(prev);
    return count ? sum / (double)count / log(2.0) : NAN;
}

/* Prints the prompt and n bytes drawn one at a time from
 * softmax(logits / temperature) of the next byte. */
static int sample(model *m, const options *o, ad_rng *rng)
{
    bool prev = ad_set_grad_enabled(false);
    nn_eval(m->root);
    ad_tape *tape = ad_tape_new();
    ad_tape *prev_tape = ad_tape_activate(tape);
    size_t plen = strlen(o->prompt);
    int64_t cap = (int64_t)plen + o->sample;
    int64_t *hist = malloc((size_t)cap * sizeof *hist);
    int rc = hist ? 0 : ad_set_error("out of memory");
    for (size_t i = 0; rc == 0 && i < plen; i++) hist[i] = (unsigned char)o->prompt[i];
    fputs(o->prompt, stdout);
    ad_tensor *h = NULL, *c = NULL;
    int64_t len = (int64_t)plen, fed = 0;
    for (int64_t k = 0; rc == 0 && k < o->sample; k++) {
        /* a recurrent model reads what it has not seen yet and keeps its
         * state; a transformer rereads its context window each time */
        int64_t from = m->tf ? (len > m->ctx ? len - m->ctx : 0) : fed;
        ad_tensor *x = ad_from_array(tape, AD_INT64, 2, (int64_t[]){1, len - from}, hist + from);
        ad_tensor *logits = forward(m, x, &h, &c);
        ad_tensor *p = logits ? ad_softmax(ad_div_scalar(ad_narrow(logits, 0, len - from - 1, 1),
                                                         o->temperature), 1)
                              : NULL;
        double probs[VOCAB];
        if (!p || ad_to_array(p, probs) != 0) {
            rc = -1;
            break;
        }
        double u = ad_rng_uniform(rng), acc = 0;
        int next = VOCAB - 1;
        for (int v = 0; v < VOCAB; v++)
            if ((acc += probs[v]) > u) {
                next = v;
                break;
            }
        hist[len++] = next;
        fed = len - 1;
        putchar(next);
        h = h ? ad_detach(h) : NULL;
        c = c ? ad_detach(c) : NULL;
        ad_tape_reset(tape);
    }
    putchar('\n');
    free(hist);
    ad_tape_activate(prev_tape);
    ad_tape_free(tape);
    nn_train(m->root, true);
    ad_set_grad_enabled(prev);
    return rc;
}

/* ==== main ================================================================= */

/* Backprop through time, measured: for the loss E of the last byte of a
 * chunk alone, the gradient with respect to the embedded input e_t of
 * every position t reaches t only through the recurrence, across
 * T - 1 - t steps; its size against that distance shows whether the
 * gradient vanishes or explodes on the way back.  out[d] = the mean over
 * the batch of ||dE/de_(T-1-d)||, d = 0 .. seq-1, on the chunk of the
 * validation text at its start.  Recurrent models only. */
static int distance_norms(model *m, const unsigned char *s, int64_t n, int64_t batch,
                          int64_t seq, double *out)
{
    int64_t stream = n / batch;
    if (m->tf || stream < seq + 1) return ad_set_error("--norms needs a recurrent model and "
                                                       "enough validation text");
    ad_tape *tape = ad_tape_new();
    ad_tape *prev = ad_tape_activate(tape);
    int64_t *x = malloc((size_t)(batch * seq) * sizeof *x), *y = malloc((size_t)(batch * seq) * sizeof *y);
    double *g = malloc((size_t)(batch * seq * ad_size(nn_get_parameter(m->embed, "weight"), 1)) *
                       sizeof *g);
    int rc = x && y && g ? 0 : ad_set_error("out of memory");
    ad_tensor *grad = NULL;
    if (rc == 0) {
        chunk(s, stream, batch, seq, 0, x, y);
        for (int64_t b = 0; b < batch; b++) y[b] = y[b * seq + seq - 1]; /* the last labels */
        ad_tensor *xt = ad_from_array(tape, AD_INT64, 2, (int64_t[]){batch, seq}, x);
        ad_tensor *yt = ad_from_array(tape, AD_INT64, 1, (int64_t[]){batch}, y);
        ad_tensor *e = nn_forward(m->embed, xt), *outs = NULL;
        rc = e ? nn_rnn_forward(m->rnn, e, NULL, NULL, &outs, NULL, NULL) : -1;
        ad_tensor *last = rc == 0 ? ad_squeeze(ad_narrow(outs, 1, seq - 1, 1), 1) : NULL;
        ad_tensor *E = last ? ad_cross_entropy(nn_forward(m->head, last), yt, AD_REDUCTION_MEAN)
                            : NULL;
        rc = E ? ad_gradients(E, NULL, 1, &e, &grad, 0) : -1;
    }
    if (rc == 0) rc = ad_to_array(grad, g);
    int64_t F = rc == 0 ? ad_size(grad, 2) : 0;
    for (int64_t d = 0; rc == 0 && d < seq; d++) {
        double sum = 0;
        for (int64_t b = 0; b < batch; b++) {
            double sq = 0;
            for (int64_t f = 0; f < F; f++) {
                double v = g[(b * seq + seq - 1 - d) * F + f];
                sq += v * v;
            }
            sum += sqrt(sq);
        }
        out[d] = sum / (double)batch;
    }
    free(x);
    free(y);
    free(g);
    ad_tape_activate(prev);
    ad_tape_free(tape);
    return rc;
}

static FILE *open_csv(const char *prefix, const char *what, const char *header)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.%s.csv", prefix, what);
    FILE *f = fopen(path, "w");
    if (!f) {
        ad_set_error_code(AD_ERR_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    fprintf(f, "%s\n", header);
    return f;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : NAN;
}

static void json_number(const char *key, double v, bool last)
{
    if (isfinite(v))
        printf("\"%s\": %.6g%s", key, v, last ? "" : ", ");
    else
        printf("\"%s\": null%s", key, last ? "" : ", ");
}

/* ---- data-parallel training (under mpirun, built with MPI) */

/* ad_backward, and for a rank of several the average of all ranks'
 * gradients, weighted by their tokens; *loss: the mean loss over them. */
static int backward(dist_t *d, ad_tensor *E, int64_t tokens, double *loss)
{
    *loss = ad_item(E);
#ifdef CHARLM_WITH_MPI
    double n = (double)tokens;
    if (d) return nn_dist_backward(d, E, 0, &n, loss);
#endif
    (void)d;
    (void)tokens;
    return ad_backward(E, NULL, 0);
}

#ifdef CHARLM_WITH_MPI
/* Rank 0's parameters and Adam state on every rank.  A checkpoint's
 * carried state belongs to rank 0's streams, so a run of several ranks
 * does not resume. */
static int dist_attach(nn_dist *d, const run *r)
{
    if (nn_dist_world_size(d) > 1 && r->o.resume)
        return ad_set_error("--resume is for one process: the checkpoint's carried state "
                            "belongs to rank 0's streams");
    nn_named_tensors *st = nn_optim_state(r->opt);
    int rc = st && !nn_dist_attach_params(d, r->params) ? nn_dist_broadcast(d, st) : -1;
    nn_named_tensors_free(st);
    return rc;
}
#endif

int main(int argc, char **argv)
{
    run r = {0};
    int status = parse_options(argc, argv, &r.o);
    if (status) return status < 0 ? EXIT_USAGE : 0;
    dist_t *dist = NULL;
    int rank = 0, world = 1;
#ifdef CHARLM_WITH_MPI
    if (nn_dist_launched() && !(dist = nn_dist_init(&argc, &argv, NULL)))
        return fprintf(stderr, "charlm: %s\n", ad_error()), EXIT_RUNTIME;
    rank = dist ? nn_dist_rank(dist) : 0;
    world = dist ? nn_dist_world_size(dist) : 1;
#endif
    if (rank > 0) { /* rank 0 alone prints and writes */
        r.o.quiet = true;
        r.o.json = false;
        r.o.save = r.o.norms = NULL;
        r.o.sample = 0;
    }
    const options *o = &r.o;
    int threads = 1;
#ifdef _OPENMP
    if (o->threads > 0) omp_set_num_threads(o->threads);
    threads = omp_get_max_threads();
#endif
    if (o->threads > 0) set_blas_threads(o->threads);

    text t = {0};
    nn_progress *bar = NULL;
    ad_tape *tape = NULL;
    int64_t *xb = NULL, *yb = NULL;
    double *losses = NULL;
    /* --save writes at the end: a directory that is not there is found
     * now, not after the training */
    int rc = o->save ? nn_check_writable(o->save) : 0;
    if (rc == 0) rc = load_text(o->data, &t);
    int64_t B = o->batch, S = o->seq;
    int64_t ntrain = t.n * 95 / 100, nval = t.n - ntrain;
    int64_t stream = ntrain / (B * world); /* rank r reads streams [r B, (r+1) B) */
    if (rc == 0 && stream < S + 2)
        rc = ad_set_error("%s: %" PRId64 " bytes are too few for --batch %" PRId64 " --seq %" PRId64,
                          o->data, t.n, B, S);
    if (rc == 0 && o->val_limit > 0 && nval > o->val_limit) nval = o->val_limit;

    ad_rng rng;
    ad_rng_init(&rng, o->seed);
    if (rc == 0) rc = build(&r.m, o, &rng);
    r.params = rc == 0 ? nn_parameters(r.m.root) : NULL;
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.lr = o->lr;
    r.opt = r.params ? nn_adam(r.params, &ao) : NULL;
    if (rc == 0 && !r.opt) rc = -1;
    if (rc == 0 && o->resume) rc = resume(&r, o->resume, B);
#ifdef CHARLM_WITH_MPI
    if (rc == 0 && dist) rc = dist_attach(dist, &r);
#endif
    if (rc == 0 && !o->quiet && !o->json)
        printf("charlm: %s, %" PRId64 " parameters; %" PRId64 " training and %" PRId64
               " validation bytes from %s; %d thread%s\n",
               o->model, nn_num_parameters(r.m.root), ntrain, nval, o->data, threads,
               threads == 1 ? "" : "s");

    /* ---- training */
    int64_t first = r.step, todo = o->steps;
    int64_t per_pass = (stream - 1) / S; /* chunks in one pass over the streams */
    tape = ad_tape_new();
    xb = malloc((size_t)(B * S) * sizeof *xb);
    yb = malloc((size_t)(B * S) * sizeof *yb);
    losses = calloc((size_t)(todo > 0 ? todo : 1), sizeof *losses);
    if (rc == 0 && (!tape || !xb || !yb || !losses)) rc = ad_set_error("out of memory");
    if (rc == 0 && !o->quiet && todo > 0) {
        bar = nn_progress_new(stdout, NULL);
        rc = bar ? nn_progress_begin(bar, 1, 1, todo) : -1;
    }
    FILE *steps_csv = NULL;
    double *dist0 = NULL;
    if (rc == 0 && o->norms) {
        steps_csv = open_csv(o->norms, "steps", "step,loss,grad_norm");
        dist0 = calloc((size_t)S, sizeof *dist0);
        if (!steps_csv || !dist0) rc = -1;
        if (rc == 0) rc = distance_norms(&r.m, t.bytes + ntrain, nval, B, S, dist0);
    }
    ad_tape_activate(tape);
    double t0 = now(), c0 = cpu_now(), fwd_mb = NAN, step_mb = NAN;
    for (int64_t k = 0; rc == 0 && k < todo; k++, r.step++) {
        int64_t p = (r.step % per_pass) * S;
        if (p == 0) { /* a new pass over the streams starts from zeros */
            if (r.state_persistent) {
                ad_tensor_free(r.h);
                ad_tensor_free(r.c);
            }
            r.h = r.c = NULL;
        }
        r.state_persistent = false;
        chunk(t.bytes + rank * B * stream, stream, B, S, p, xb, yb);
        ad_tensor *x = ad_from_array(tape, AD_INT64, 2, (int64_t[]){B, S}, xb);
        ad_tensor *y = ad_from_array(tape, AD_INT64, 1, (int64_t[]){B * S}, yb);
        ad_tensor *h_in = r.h, *c_in = r.c;
        ad_tensor *E = ad_cross_entropy(forward(&r.m, x, &r.h, &r.c), y, AD_REDUCTION_MEAN);
        ad_tape_stats st;
        if (!E || ad_tape_get_stats(tape, &st) != 0) {
            rc = -1;
            break;
        }
        fwd_mb = (double)st.arena_used / 1048576.0;
        double loss;
        if (nn_optim_zero_grad(r.opt) != 0 || backward(dist, E, B * S, &loss) != 0 ||
            ad_tape_get_stats(tape, &st) != 0) {
            rc = -1;
            break;
        }
        step_mb = (double)st.arena_peak / 1048576.0;
        /* the norm before clipping; with --clip 0 it is only measured */
        double norm = nn_clip_grad_norm(r.params, o->clip > 0 ? o->clip : INFINITY);
        if (norm < 0 || nn_optim_step(r.opt) != 0) {
            rc = -1;
            break;
        }
        losses[k] = loss;
        if (steps_csv) fprintf(steps_csv, "%" PRId64 ",%.6g,%.6g\n", r.step + 1, losses[k], norm);
        if (bar) nn_progress_update(bar, k + 1, losses[k], B * S);
        /* Truncated BPTT: keep the final state's values for the next chunk
         * but cut its history, then free this chunk's graph.  A state
         * loaded by --resume is persistent: freed once it has been used. */
        r.h = r.h ? ad_detach(r.h) : NULL;
        r.c = r.c ? ad_detach(r.c) : NULL;
        if (h_in && !ad_tensor_tape(h_in)) ad_tensor_free(h_in);
        if (c_in && !ad_tensor_tape(c_in)) ad_tensor_free(c_in);
        ad_tape_reset(tape);
        if (o->save && o->save_every > 0 && (r.step + 1) % o->save_every == 0 && k + 1 < todo) {
            r.step++;
            rc = save(&r, o->save);
            r.step--;
        }
    }
    double train_s = now() - t0, train_cpu_s = cpu_now() - c0;
    if (bar && rc == 0) nn_progress_end(bar, NULL);
    ad_tape_activate(NULL);

    /* ---- saving, validation, sampling, the report */
    if (rc == 0 && o->save) rc = save(&r, o->save);
    double bpc = rc == 0 && rank == 0 ? evaluate(&r.m, t.bytes + ntrain, nval, B, S) : 0;
    if (rc == 0 && !isfinite(bpc)) rc = -1;
    if (rc == 0 && !o->quiet && !o->json)
        printf("validation: %.4f bits per character over %" PRId64 " bytes\n", bpc, nval);
    if (rc == 0 && o->sample > 0) rc = sample(&r.m, o, &rng);
    if (steps_csv && fclose(steps_csv) != 0 && rc == 0)
        rc = ad_set_error_code(AD_ERR_IO, "%s.steps.csv: write error", o->norms);
    if (rc == 0 && o->norms) {
        double *dist = calloc((size_t)S, sizeof *dist);
        FILE *f = dist ? open_csv(o->norms, "distance", "distance,before_training,after_training")
                       : NULL;
        rc = f ? distance_norms(&r.m, t.bytes + ntrain, nval, B, S, dist) : -1;
        for (int64_t d = 0; rc == 0 && d < S; d++)
            fprintf(f, "%" PRId64 ",%.6g,%.6g\n", d, dist0[d], dist[d]);
        if (f && fclose(f) != 0 && rc == 0)
            rc = ad_set_error_code(AD_ERR_IO, "%s.distance.csv: write error", o->norms);
        free(dist);
    }
    free(dist0);
    if (rc == 0 && o->json) {
        int64_t w = todo / 10 > 0 ? todo / 10 : 1;
        double a = 0, b = 0;
        for (int64_t k = 0; k < w && k < todo; k++) {
            a += losses[k] / (double)w;
            b += losses[todo - 1 - k] / (double)w;
        }
        printf("{\"model\": \"%s\", \"steps\": %" PRId64 ", \"first_step\": %" PRId64
               ", \"batch\": %" PRId64 ", \"seq\": %" PRId64 ", \"threads\": %d, \"seed\": %" PRIu64
               ", \"parameters\": %" PRId64 ", \"world_size\": %d, ",
               o->model, todo, first, B, S, threads, o->seed, nn_num_parameters(r.m.root), world);
        json_number("train_tokens_per_s",
                    todo > 0 ? (double)(todo * B * S * world) / train_s : NAN, false);
        json_number("train_s", train_s, false);
        json_number("train_tokens_per_cpu_s",
                    todo > 0 ? (double)(todo * B * S) / train_cpu_s : NAN, false);
        json_number("train_cpu_s", train_cpu_s, false);
        json_number("first_loss", todo > 0 ? a : NAN, false);
        json_number("last_loss", todo > 0 ? b : NAN, false);
        json_number("val_bits_per_char", bpc, false);
        json_number("forward_arena_mb", fwd_mb, false);
        json_number("step_arena_mb", step_mb, false);
        printf("\"checkpoint\": %" PRId64 ", ", o->checkpoint);
        json_number("peak_rss_mb", peak_rss_mb(), true);
        printf("}\n");
    }
#ifdef CHARLM_WITH_MPI
    if (rc != 0 && world > 1) nn_dist_abort(dist, "charlm: ", EXIT_RUNTIME); /* ends every rank */
#endif
    if (rc != 0) fprintf(stderr, "charlm: %s\n", ad_error() ? ad_error() : "failed");
    if (r.h && !ad_tensor_tape(r.h)) ad_tensor_free(r.h);
    if (r.c && !ad_tensor_tape(r.c)) ad_tensor_free(r.c);
    nn_progress_free(bar);
    ad_tape_free(tape);
    nn_optim_free(r.opt);
    nn_named_tensors_free(r.params);
    nn_module_free(r.m.root);
    free(xb);
    free(yb);
    free(losses);
    free(t.bytes);
#ifdef CHARLM_WITH_MPI
    if (nn_dist_finalize(dist) && rc == 0) rc = -1;
#endif
    return rc == 0 ? 0 : EXIT_RUNTIME;
}

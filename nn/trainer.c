/* nn/trainer.c - the training loop of nn/trainer.h: replayed steps,
 * evaluation, fit with callbacks (checkpoints: trainer_checkpoint.c).
 *
 * Built on the public API only, like the rest of nn: a step is
 * ad_tape_replay + ad_backward + nn_optim_step, exactly what a program
 * would write by hand, so a trainer's run and a hand-written loop with the
 * same seed give the same numbers bit for bit. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include "trainer.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "nn_private.h"
#include "trainer_impl.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ad_tensor *cross_entropy(ad_tensor *out, ad_tensor *target, nn_reduction r)
{
    return nn_cross_entropy(out, target, r, 0);
}

nn_trainer *nn_trainer_new(nn_module *model, nn_loss_fn loss, nn_optim *opt,
                           const nn_trainer_options *opts)
{
    const char *fn = "nn_trainer_new";
    if (!model || !opt) {
        nn__null_arg(fn, model ? "opt" : "model");
        return NULL;
    }
    nn_trainer_options o = opts ? *opts : (nn_trainer_options){0};
    if (o.schedule != NN_SCHEDULE_CONSTANT && o.schedule != NN_SCHEDULE_COSINE) {
        nn__err(fn, "unknown schedule %d", (int)o.schedule);
        return NULL;
    }
    nn_trainer *tr = ad_calloc(1, sizeof *tr);
    if (!tr) {
        nn__err(fn, "out of memory");
        return NULL;
    }
    tr->model = model;
    tr->loss = loss ? loss : cross_entropy;
    tr->opt = opt;
    tr->o = o;
    tr->base_lr = nn_optim_get_lr(opt);
    return tr;
}

void nn__rec_free(rec *r)
{
    ad_tape_free(r->tape);
    ad_free(r->leaf);
    ad_free(r->leaf_rg);
    *r = (rec){0};
}

bool nn__rec_stale(const rec *r)
{
    for (int i = 0; i < r->nleaf; i++)
        if (ad_requires_grad(r->leaf[i]) != r->leaf_rg[i]) return true;
    return false;
}

/* r->leaf and r->leaf_rg for r's tape; -1 when out of memory. */
static int note_leaves(const char *fn, rec *r)
{
    size_t nodes = ad_tape_num_nodes(r->tape), uses = 0;
    for (size_t i = 0; i < nodes; i++) {
        ad_node_info info;
        if (!ad_tape_node_info(r->tape, i, &info)) uses += (size_t)info.nin;
    }
    r->leaf = ad_malloc((uses + 1) * sizeof *r->leaf);
    r->leaf_rg = ad_malloc(uses + 1);
    if (!r->leaf || !r->leaf_rg) return nn__err(fn, "out of memory");
    for (size_t i = 0; i < nodes; i++) {
        ad_node_info info;
        if (ad_tape_node_info(r->tape, i, &info)) continue;
        for (int k = 0; k < info.nin; k++) {
            const ad_tensor *t = info.inputs[k];
            if (!t || !ad_is_leaf(t)) continue;
            int j = 0;
            while (j < r->nleaf && r->leaf[j] != t) j++;
            if (j < r->nleaf) continue;
            r->leaf[r->nleaf] = t;
            r->leaf_rg[r->nleaf++] = ad_requires_grad(t);
        }
    }
    return 0;
}

void nn_trainer_free(nn_trainer *tr)
{
    if (!tr) return;
    nn__pool_free(tr->pool);
    for (int i = 0; i < NN_TRAINER_MAX_SHAPES; i++) {
        nn__rec_free(&tr->train[i]);
        nn__rec_free(&tr->eval[i]);
    }
    ad_tape_free(tr->scratch);
    ad_free(tr);
}

/* ---- forward and loss, replayed or recorded ---------------------------------- */

bool nn__rec_matches(const rec *r, const ad_tensor *x, const ad_tensor *y)
{
    if (r->xdt != ad_tensor_dtype(x) || r->ydt != ad_tensor_dtype(y) || r->xnd != ad_ndim(x) ||
        r->ynd != ad_ndim(y))
        return false;
    return memcmp(r->xshape, ad_shape(x), (size_t)r->xnd * sizeof(int64_t)) == 0 &&
           memcmp(r->yshape, ad_shape(y), (size_t)r->ynd * sizeof(int64_t)) == 0;
}

/* The model's registered random streams (nn_module_set_rng: every
 * Dropout's) and a copy of their state, to put back after a recording. */
typedef struct streams {
    int n;
    char **names;
    ad_rng **rngs, *saved;
} streams;

static int streams_save(const char *fn, const nn_module *m, streams *s)
{
    *s = (streams){0};
    if (nn__module_rngs(fn, m, &s->n, &s->names, &s->rngs)) return -1;
    if (s->n && !(s->saved = ad_malloc((size_t)s->n * sizeof *s->saved))) {
        nn__rngs_free(s->n, s->names, s->rngs);
        return nn__err(fn, "out of memory");
    }
    for (int i = 0; i < s->n; i++) s->saved[i] = *s->rngs[i];
    return 0;
}

static void streams_restore(streams *s)
{
    for (int i = 0; i < s->n; i++) *s->rngs[i] = s->saved[i];
    ad_free(s->saved);
    nn__rngs_free(s->n, s->names, s->rngs);
}

/* The model's buffers (BatchNorm's running statistics) and a copy of
 * their bytes: a recording runs the model on zeros, which must not count
 * as a batch; the replay that follows folds the real batch in
 * (batch_norm_stats is an op, run again at every replay). */
typedef struct buffers {
    nn_named_tensors *list;
    char *saved;
} buffers;

static size_t buffer_bytes(const ad_tensor *t)
{
    return (size_t)ad_numel(t) * ad_dtype_size(ad_tensor_dtype(t));
}

static int buffers_save(const char *fn, const nn_module *m, buffers *b)
{
    *b = (buffers){nn_buffers(m), NULL};
    if (!b->list) return -1;
    size_t total = 0;
    for (int i = 0; i < b->list->n; i++) total += buffer_bytes(b->list->tensors[i]);
    if (total && !(b->saved = ad_malloc(total))) {
        nn_named_tensors_free(b->list);
        return nn__err(fn, "out of memory");
    }
    char *p = b->saved;
    for (int i = 0; i < b->list->n; i++) {
        ad_tensor *t = b->list->tensors[i];
        if (!ad_is_contiguous(t)) continue; /* nn's own buffers always are */
        memcpy(p, ad_data(t), buffer_bytes(t));
        p += buffer_bytes(t);
    }
    return 0;
}

static void buffers_restore(buffers *b)
{
    const char *p = b->saved;
    for (int i = 0; i < b->list->n; i++) {
        ad_tensor *t = b->list->tensors[i];
        if (!ad_is_contiguous(t)) continue;
        if (memcmp(ad_data(t), p, buffer_bytes(t))) {
            memcpy(ad_data(t), p, buffer_bytes(t));
            ad_mark_modified(t);
        }
        p += buffer_bytes(t);
    }
    ad_free(b->saved);
    nn_named_tensors_free(b->list);
}

/* Records forward and loss for batches shaped as (x, y) on a new frozen
 * replayable tape.  The leaves hold zeros until the replay that follows
 * copies the batch in.  That replay draws the step's Dropout masks again
 * (the mask is a recorded op, redrawn at every replay), so the model's
 * streams are put back to where they were before the recording: the step
 * consumes them once, as a step recorded afresh (no_replay) does, and the
 * two give the same bits.  A stream the model did not register with
 * nn_module_set_rng cannot be put back: its first step of each shape
 * skips one mask's worth of numbers. */
int nn__trainer_record_batch(nn_trainer *tr, rec *r, const ad_tensor *x, const ad_tensor *y,
                             bool training)
{
    *r = (rec){.xdt = ad_tensor_dtype(x), .ydt = ad_tensor_dtype(y), .xnd = ad_ndim(x),
               .ynd = ad_ndim(y)};
    memcpy(r->xshape, ad_shape(x), (size_t)r->xnd * sizeof(int64_t));
    memcpy(r->yshape, ad_shape(y), (size_t)r->ynd * sizeof(int64_t));
    return nn__trainer_record(tr, r, training);
}

int nn__trainer_record(nn_trainer *tr, rec *r, bool training)
{
    const char *fn = training ? "nn_trainer_step" : "nn_trainer_evaluate";
    r->tape = ad_tape_new();
    if (!r->tape || ad_tape_set_replayable(r->tape, true)) {
        nn__rec_free(r);
        return -1;
    }
    streams st;
    buffers bu;
    if (streams_save(fn, tr->model, &st)) {
        nn__rec_free(r);
        return -1;
    }
    if (buffers_save(fn, tr->model, &bu)) {
        streams_restore(&st);
        nn__rec_free(r);
        return -1;
    }
    /* Only recorded ops are replayed, and with grad mode off nothing is
     * recorded: so grad mode is on here, also for evaluation (whose tapes
     * simply never run backward). */
    bool grad_was = ad_set_grad_enabled(true);
    bool was_training = nn_is_training(tr->model);
    nn_train(tr->model, training);
    int prev = 0, aside = nn__aside_begin(tr, &prev);
    r->x = aside >= 0 ? ad_zeros(r->tape, r->xdt, r->xnd, r->xshape) : NULL;
    r->y = r->x ? ad_zeros(r->tape, r->ydt, r->ynd, r->yshape) : NULL;
    r->out = r->x && r->y ? nn_forward(tr->model, r->x) : NULL;
    r->loss = r->out ? tr->loss(r->out, r->y, NN_MEAN) : NULL;
    nn__aside_end(tr, aside, prev);
    nn_train(tr->model, was_training);
    ad_set_grad_enabled(grad_was);
    streams_restore(&st);
    buffers_restore(&bu);
    if (!r->loss || ad_tape_freeze(r->tape) || note_leaves(fn, r)) {
        nn__rec_free(r);
        return -1;
    }
    r->set_grads = nn__trainer_may_set_grads(tr, r->tape);
    return 0;
}

bool nn__trainer_may_set_grads(const nn_trainer *tr, const ad_tape *tape)
{
    size_t nodes = ad_tape_num_nodes(tape);
    for (size_t i = 0; i < nodes; i++) {
        ad_node_info info;
        if (ad_tape_node_info(tape, i, &info) || !info.on_grad_path) continue;
        for (int k = 0; k < info.nin; k++) {
            const ad_tensor *t = info.inputs[k];
            if (t && ad_is_leaf(t) && ad_requires_grad(t) && nn__optim_find(tr->opt, t) < 0)
                return false;
        }
    }
    return true;
}

rec *nn__trainer_train_rec(nn_trainer *tr, const ad_tensor *x, const ad_tensor *y)
{
    for (int i = 0; !tr->o.no_replay && i < NN_TRAINER_MAX_SHAPES; i++)
        if (!tr->train[i].tape || nn__rec_matches(&tr->train[i], x, y))
            return tr->train[i].tape ? &tr->train[i] : NULL;
    return NULL;
}

/* A stale recording r (a layer frozen or unfrozen since: nn__rec_stale)
 * recorded again for batches shaped as (x, y); with pre, the batch that
 * nn_fit converted into r's leaves goes into the new ones. */
static int rerecord(nn_trainer *tr, rec *r, const ad_tensor *x, const ad_tensor *y,
                    bool training, bool pre)
{
    rec fresh;
    if (nn__trainer_record_batch(tr, &fresh, x, y, training)) return -1;
    if (pre && (ad_copy_into(fresh.x, r->x) || ad_copy_into(fresh.y, r->y))) {
        nn__rec_free(&fresh);
        return -1;
    }
    if (tr->out && ad_tensor_tape(tr->out) == r->tape) tr->out = tr->y = NULL;
    nn__rec_free(r);
    *r = fresh;
    return 0;
}

/* Forward and loss of batch (x, y) into *out and *loss: replayed from the
 * recording of its shape (recorded first if this is its first batch), or,
 * without replay or with every slot taken, recorded afresh on the scratch
 * tape.  *replayed says which. */
static int forward(nn_trainer *tr, ad_tensor *x, ad_tensor *y, bool training, ad_tensor **out,
                   ad_tensor **loss, bool *replayed)
{
    rec *recs = training ? tr->train : tr->eval, *r = NULL;
    *replayed = false;
    /* nn_fit filled the leaves of a recording of this batch's shape: the
     * trainer's, or (products split) the threads' second one */
    if (training && tr->pre_r && tr->pre_x == x) r = tr->pre_r;
    for (int i = 0; !tr->o.no_replay && i < NN_TRAINER_MAX_SHAPES && !r; i++)
        if (!recs[i].tape || nn__rec_matches(&recs[i], x, y)) r = &recs[i];
    if (r) {
        nn__trainer_prefetch_stop(tr, r); /* nothing may convert into it now */
        /* nn_fit converted the batch into the leaves already, or (with
         * NN_THREADS_OPS) the threads copy it in now, each a part */
        bool pre = training && tr->pre_r == r && tr->pre_x == x;
        tr->pre_r = NULL;
        tr->pre_x = NULL;
        if (r->tape && nn__rec_stale(r) && rerecord(tr, r, x, y, training, pre)) return -1;
        if (!r->tape && nn__trainer_record_batch(tr, r, x, y, training)) return -1;
        ad_tensor *leaves[2] = {r->x, r->y}, *values[2] = {x, y};
        int copied = pre ? 0 : training && tr->ops ? nn__ops_load(tr, r, x, y) : 1;
        if (copied < 0) return -1;
        /* A positive count (comparisons whose outcome changed since the
         * recording) matters only to C code that branched on one; a model
         * that does must use no_replay, as the header says.  Dropout's
         * masks are drawn anew here, from the model's streams. */
        if (ad_tape_replay(r->tape, 2, leaves, copied ? values : NULL) < 0) return -1;
        *out = r->out;
        *loss = r->loss;
        tr->y = r->y;
        tr->step_set = r->set_grads;
        *replayed = true;
        return 0;
    }
    if (!tr->scratch && !(tr->scratch = ad_tape_new())) return -1;
    if (ad_tape_reset(tr->scratch)) return -1;
    ad_tape *prev = ad_tape_activate(tr->scratch);
    bool grad_was = ad_set_grad_enabled(training);
    bool was_training = nn_is_training(tr->model);
    nn_train(tr->model, training);
    *out = nn_forward(tr->model, x);
    *loss = *out ? tr->loss(*out, y, NN_MEAN) : NULL;
    nn_train(tr->model, was_training);
    ad_set_grad_enabled(grad_was);
    ad_tape_activate(prev);
    tr->y = y;
    tr->step_set = *loss && training && nn__trainer_may_set_grads(tr, tr->scratch);
    return *loss ? 0 : -1;
}

/* Rows of logits [N, C] whose prediction is the label, added to *correct,
 * as nn_confusion_update predicts (train.c).  Read in place: that would
 * take a confusion matrix, and a training step should not allocate.
 * Logits or labels that are not contiguous (a model whose output is a
 * transposed view) are read element by element. */
int nn__count_correct(const char *fn, ad_tensor *logits, ad_tensor *labels, int64_t *correct)
{
    ad_dtype dt = ad_tensor_dtype(logits);
    if (ad_ndim(logits) != 2 || !nn__is_float(dt) || ad_tensor_dtype(labels) != AD_INT64 ||
        ad_ndim(labels) != 1 || ad_size(labels, 0) != ad_size(logits, 0))
        return nn__err(fn, "accuracy needs logits [N, C] and int64 labels [N]");
    const void *xd = ad_is_contiguous(logits) ? ad_data(logits) : NULL;
    const int64_t *yd = ad_is_contiguous(labels) ? ad_data(labels) : NULL;
    for (int64_t i = 0, n = ad_size(logits, 0); i < n; i++)
        *correct += nn__predicted(logits, xd, i) == nn__label_at(labels, yd, i);
    return 0;
}

/* Whether the model or one of its descendants registered a random stream
 * (nn_module_set_rng).  Asked before every split step, so it walks the
 * tree without building the names nn__module_rngs makes for checkpoints. */
static bool has_random_streams(const nn_module *m)
{
    if (nn_module_rng(m)) return true;
    for (int i = 0; i < nn_num_children(m); i++)
        if (has_random_streams(nn_child(m, i))) return true;
    return false;
}

/* The comm's grad_ready hook as the core's gradient-ready hook. */
typedef struct ready_ctx {
    const nn_trainer *tr;
    double samples;
} ready_ctx;

static int tell_ready(ad_tensor *leaf, void *ctx)
{
    const ready_ctx *r = ctx;
    return r->tr->comm.grad_ready(r->tr->comm.user, leaf, r->samples);
}

/* ad_backward, telling the comm's grad_ready hook (when there is one)
 * about each gradient as soon as it is final. */
static int backward(nn_trainer *tr, ad_tensor *loss, unsigned flags, double samples)
{
    /* The comm's seed (its weight for this worker's gradients), of the
     * loss's shape and dtype, on the loss's tape as backward's own seed of
     * 1 would be (NULL seeds 1). */
    ad_tensor *seed = NULL;
    ad_tape *tape = ad_tensor_tape(loss);
    if (tr->comm.grad_scale) {
        double s = tr->comm.grad_scale(tr->comm.user, samples);
        if (s != 1.0 &&
            !(seed = ad_full(tape, ad_tensor_dtype(loss), ad_ndim(loss), ad_shape(loss), s)))
            return -1;
    }
    int rc;
    if (!tr->comm.grad_ready) {
        rc = ad_backward(loss, seed, flags);
    } else {
        ready_ctx r = {tr, samples};
        ad_grad_ready_hook prev = ad_set_grad_ready_hook((ad_grad_ready_hook){tell_ready, &r});
        rc = ad_backward(loss, seed, flags);
        ad_set_grad_ready_hook(prev);
    }
    if (!tape) ad_tensor_free(seed);
    return rc;
}

/* The step's backward, whose gradients replace last step's (AD_SET_GRAD)
 * rather than being added to zeros: no pass over the buffers zeroes them
 * first, which for the MLP's first weight was 800 KB of memset a step,
 * and with the products split a hand-off of its own.  A parameter of the
 * optimiser that the pass did not write (ad_grad_written) is zeroed after,
 * so every gradient is what nn_optim_zero_grad and a backward would have
 * made it, bit for bit. */
static int backward_fresh(nn_trainer *tr, ad_tensor *loss, unsigned flags, double samples)
{
    /* A leaf outside the optimiser keeps adding up across steps
     * (nn__trainer_may_set_grads): the optimiser's are zeroed first. */
    if (!tr->step_set)
        return nn_optim_zero_grad(tr->opt) || backward(tr, loss, flags, samples) ? -1 : 0;
    /* A data-parallel run that reduces gradients during the pass
     * (grad_ready) reads a parameter's only once it is final, and an
     * unreached one's only in average_grads, after the zeroing below. */
    return backward(tr, loss, flags | AD_SET_GRAD, samples) || nn__optim_zero_unwritten(tr->opt)
               ? -1
               : 0;
}

/* The step without its checks of tr, x and y: 1 for a non-finite loss
 * (nothing updated; the caller words the message), -1 on error.  *loss
 * and *samples: the batch's mean loss and size, over every worker's batch
 * in a data-parallel run. */
static int step_whole(nn_trainer *tr, const char *fn, ad_tensor *x, ad_tensor *y,
                      double *loss, double *samples, int64_t *correct);

static int step(nn_trainer *tr, const char *fn, ad_tensor *x, ad_tensor *y, double *loss,
                double *samples, int64_t *correct)
{
    /* A worker of a data-parallel run (comm) takes the one-thread step,
     * which averages the gradients over the workers; so does a model with
     * random streams (Dropout), whose shards would all draw from the one
     * stream at once, in an order the threads decide; and so does a model
     * with buffers (BatchNorm), whose running statistics every shard's
     * replay would update at once (batch_norm_stats is a replayed op). */
    /* AUTO chooses after a first step on the whole batch; a run resumed
     * from a checkpoint of one that had chosen takes that choice from its
     * first step, as the uninterrupted run took it there (the choice
     * depends on the model and the batch shape only) */
    if (tr->threads > 1 && tr->thread_mode == NN_THREADS_AUTO && !tr->chosen &&
        tr->chosen_saved) {
        tr->chosen = tr->chosen_saved;
        tr->drop_whole = tr->chosen == NN_THREADS_BATCH;
    }
    if (tr->threads > 1 && nn__trainer_mode(tr) == NN_THREADS_BATCH && !tr->o.no_replay &&
        tr->comm.world_size == 0 && !has_random_streams(tr->model) &&
        !nn__module_has_buffers(tr->model)) {
        *samples = (double)ad_size(x, 0);
        int rc = nn__trainer_step_split(tr, fn, x, y, loss, correct);
        if (rc != 2) return rc;
    }
    /* Otherwise the whole batch on this thread, its products and update
     * shared with the trainer's threads (NN_THREADS_OPS). */
    if (tr->threads <= 1) return step_whole(tr, fn, x, y, loss, samples, correct);
    if (nn__ops_step_begin(tr)) return -1;
    tr->ops = true;
    int rc = step_whole(tr, fn, x, y, loss, samples, correct);
    tr->ops = false;
    nn__ops_step_end(tr);
    if (rc == 0 && !tr->chosen) nn__trainer_choose_mode(tr);
    return rc;
}

/* One step on the whole batch, on this thread (its kernels as the
 * caller's limit allows). */
static int step_whole(nn_trainer *tr, const char *fn, ad_tensor *x, ad_tensor *y,
                      double *loss, double *samples, int64_t *correct)
{
    ad_tensor *out, *l;
    bool replayed;
    if (forward(tr, x, y, true, &out, &l, &replayed)) return -1;
    tr->out = out;
    if (ad_numel(l) != 1)
        return nn__err(fn, "the loss function must give one value, got %" PRId64, ad_numel(l));
    double v = ad_item(l);
    *loss = v;
    *samples = (double)ad_size(x, 0);
    if (!isfinite(v) && tr->comm.world_size == 0) return 1;
    /* Gradients accumulate across backward passes: this step's replace
     * last step's (backward_fresh).  AD_RETAIN_GRAPH keeps a recording
     * usable for the next replay. */
    if (backward_fresh(tr, l, replayed ? AD_RETAIN_GRAPH : 0, *samples)) return -1;
    /* A worker of a data-parallel run decides on the loss over every
     * worker's batch, which the averaging brings back: all skip the update
     * together, or none does. */
    if (tr->comm.world_size > 0) {
        if (tr->comm.average_grads(tr->comm.user, samples, loss)) return -1;
        if (!isfinite(*loss)) return 1;
    }
    /* counted before the update: a count that fails leaves the parameters
     * as they were (it ran after, and a failed step had moved them) */
    int64_t right = 0;
    if (tr->o.accuracy && nn__count_correct(fn, out, tr->y, &right)) return -1;
    if (tr->comm.optim_step ? tr->comm.optim_step(tr->comm.user, tr->opt)
        : tr->ops           ? nn__ops_optim_step(tr)
                            : nn_optim_step(tr->opt))
        return -1;
    *correct += right;
    tr->steps++;
    tr->replays += replayed;
    return 0;
}

static int check_batch(const char *fn, const ad_tensor *x, const ad_tensor *y)
{
    if (!x || !y) return nn__null_arg(fn, x ? "y" : "x");
    if (ad_ndim(x) < 1 || ad_ndim(y) < 1 || ad_size(x, 0) != ad_size(y, 0))
        return ad_set_error_code(AD_ERR_SHAPE, "%s: x and y must be batches of the same length",
                                 fn);
    return 0;
}

int nn_trainer_step(nn_trainer *tr, ad_tensor *x, ad_tensor *y, double *loss)
{
    const char *fn = "nn_trainer_step";
    if (!tr) return nn__null_arg(fn, "tr");
    if (check_batch(fn, x, y)) return -1;
    double v, samples;
    int64_t correct = 0;
    int rc = step(tr, fn, x, y, &v, &samples, &correct);
    if (rc > 0)
        return ad_set_error_code(AD_ERR_NUMERIC, "%s: the loss is %g: parameters not updated",
                                 fn, isnan(v) ? fabs(v) : v); /* "nan", not "-nan" */
    if (rc == 0 && loss) *loss = v;
    return rc;
}

ad_tensor *nn_trainer_output(const nn_trainer *tr)
{
    if (!tr) return nn__null_arg("nn_trainer_output", "tr"), NULL;
    if (!tr->out) return nn__err("nn_trainer_output", "no step or evaluation yet"), NULL;
    return tr->out;
}

/* ---- evaluation ------------------------------------------------------------- */

/* Sums a pass's figures, and cm's counts when cm is not NULL, over the
 * workers of a data-parallel run.  Counts travel as doubles: exact below
 * 2^53. */
static int sum_over_workers(nn_trainer *tr, double *loss_sum, int64_t *n, int64_t *correct,
                            nn_confusion *cm)
{
    int64_t cells = cm ? cm->num_classes * cm->num_classes : 0;
    double small[3] = {*loss_sum, (double)*n, (double)*correct};
    if (tr->comm.sum(tr->comm.user, small, 3)) return -1;
    *loss_sum = small[0];
    *n = (int64_t)small[1];
    *correct = (int64_t)small[2];
    if (!cm) return 0;
    double *v = ad_malloc((size_t)cells * sizeof *v);
    if (!v) return nn__err("nn_trainer_evaluate", "out of memory");
    for (int64_t i = 0; i < cells; i++) v[i] = (double)cm->counts[i];
    int rc = tr->comm.sum(tr->comm.user, v, (int)cells);
    if (rc == 0) {
        cm->total = cm->correct = 0;
        for (int64_t i = 0; i < cells; i++) {
            cm->counts[i] = (int64_t)v[i];
            cm->total += cm->counts[i];
            if (i / cm->num_classes == i % cm->num_classes) cm->correct += cm->counts[i];
        }
    }
    ad_free(v);
    return rc;
}

static int64_t evaluate(nn_trainer *tr, const char *fn, nn_loader *loader, nn_confusion *cm,
                        nn_metrics *m)
{
    *m = (nn_metrics){.loss = NAN, .accuracy = NAN};
    if (nn_loader_reset(loader)) return -1;
    double loss_sum = 0;
    int64_t n = 0, correct = 0;
    ad_tensor *x, *y;
    /* With the products split, the evaluation's products go to the
     * trainer's threads too (nn__aside_begin); with the batch split, its
     * convolutions' unfold and pooling need OpenMP's threads (on one
     * thread the CNN's evaluation took 1.5 times as long), and a spinning
     * OpenMP thread costs a step of milliseconds little. */
    int got, prev = 0;
    int aside = nn__trainer_mode(tr) == NN_THREADS_OPS ? nn__aside_begin(tr, &prev) : 0;
    if (aside < 0) return -1;
    while ((got = nn_loader_next(loader, &x, &y)) == 1) {
        if (!y) {
            got = nn__err(fn, "the loader gives no labels");
            break;
        }
        ad_tensor *out, *l;
        bool replayed;
        if (forward(tr, x, y, false, &out, &l, &replayed)) {
            got = -1;
            break;
        }
        tr->out = out;
        if (ad_numel(l) != 1) {
            got = nn__err(fn, "the loss function must give one value, got %" PRId64,
                          ad_numel(l));
            break;
        }
        if ((cm && nn_confusion_update(cm, out, tr->y)) ||
            (tr->o.accuracy && nn__count_correct(fn, out, tr->y, &correct))) {
            got = -1;
            break;
        }
        /* each batch's mean weighted by its rows, as training's loss is:
         * a sum divided by the rows was k times the mean of a loss with k
         * terms a row (MSE on [N, k]) */
        loss_sum += ad_item(l) * (double)ad_size(x, 0);
        n += ad_size(x, 0);
    }
    nn__aside_end(tr, aside, prev);
    if (got < 0) return -1;
    if (tr->comm.world_size > 0 && sum_over_workers(tr, &loss_sum, &n, &correct, cm)) return -1;
    m->samples = n;
    m->loss = n > 0 ? loss_sum / (double)n : NAN;
    if (tr->o.accuracy && n > 0) m->accuracy = (double)correct / (double)n;
    return n;
}

int64_t nn_trainer_evaluate(nn_trainer *tr, nn_loader *loader, nn_confusion *cm, nn_metrics *out)
{
    const char *fn = "nn_trainer_evaluate";
    if (!tr || !loader || !out) return nn__null_arg(fn, !tr ? "tr" : !loader ? "loader" : "out");
    return evaluate(tr, fn, loader, cm, out);
}

/* ---- fit ----------------------------------------------------------------------- */

/* One epoch of steps; fills info's training figures.  1 when a callback
 * asked to stop with batches of the epoch left, 2 when it asked at the
 * epoch's last batch (the epoch is whole: counted, saved, told). */
static int fit_epoch(nn_trainer *tr, nn_loader *train, const nn_fit_options *o, nn_progress *bar,
                     int64_t epoch, int64_t epochs, nn_epoch_info *info)
{
    const char *fn = "nn_fit";
    int64_t nb = nn_loader_num_batches(train), correct = 0, n = 0;
    double loss_sum = 0, t0 = now();
    if (nn_loader_set_epoch(train, epoch - 1)) return -1;
    if (bar && nn_progress_begin(bar, epoch, epochs, nb)) return -1;
    nn__ops_tune_gap(tr);
    ad_tensor *x, *y;
    int got = 0, stop = 0;
    int64_t last = 0; /* the batch a stop came at */
    for (int64_t b = 1; !stop && (got = nn__trainer_next_batch(tr, train, &x, &y)) == 1; b++) {
        if (!y) return nn__err(fn, "the training loader gives no labels");
        /* step t of the whole run, counted from its epochs and batches:
         * steps taken before nn_fit (nn_trainer_step) or inside a
         * callback do not move the schedule */
        if (tr->o.schedule == NN_SCHEDULE_COSINE &&
            nn_optim_set_lr(tr->opt, nn_lr_cosine(tr->base_lr, (epoch - 1) * nb + b - 1,
                                                  tr->fit_total, 0)))
            return -1;
        double loss, samples;
        int rc = step(tr, fn, x, y, &loss, &samples, &correct);
        tr->pre_r = NULL; /* used by the step, or stale after an error */
        if (rc > 0)
            return ad_set_error_code(AD_ERR_NUMERIC,
                                     "%s: training diverged: the loss is %g at epoch %" PRId64
                                     ", batch %" PRId64 " (try a smaller learning rate)",
                                     fn, isnan(loss) ? fabs(loss) : loss, epoch, b);
        if (rc < 0) return -1;
        loss_sum += loss * samples;
        n += (int64_t)samples;
        if (bar && nn_progress_update(bar, b, loss, (int64_t)samples)) return -1;
        if (o->on_step) {
            nn_step_info si = {epoch, epochs, b, nb, tr->steps, (int64_t)samples, loss,
                               nn_optim_get_lr(tr->opt)};
            stop = o->on_step(tr, &si, o->user);
            if (stop < 0) return -1;
            last = b;
        }
    }
    if (!stop && got < 0) return -1;
    /* The loss and sample counts are the workers' already (see step);
     * the correct predictions are counted where they were made. */
    if (tr->comm.world_size > 0 && tr->o.accuracy) {
        double c = (double)correct;
        if (tr->comm.sum(tr->comm.user, &c, 1)) return -1;
        correct = (int64_t)c;
    }
    info->train = (nn_metrics){n, n > 0 ? loss_sum / (double)n : NAN,
                               tr->o.accuracy && n > 0 ? (double)correct / (double)n : NAN};
    info->train_seconds = now() - t0;
    return !stop ? 0 : last == nb ? 2 : 1;
}

int nn_fit(nn_trainer *tr, nn_loader *train, nn_loader *val, int64_t epochs,
           const nn_fit_options *opts)
{
    const char *fn = "nn_fit";
    if (!tr || !train) return nn__null_arg(fn, tr ? "train" : "tr");
    if (epochs < 0) return nn__err(fn, "epochs must be >= 0, got %" PRId64, epochs);
    nn_fit_options o = opts ? *opts : (nn_fit_options){0};
    if (o.checkpoint_every < 0)
        return nn__err(fn, "checkpoint_every must be >= 0, got %" PRId64, o.checkpoint_every);
    if (tr->comm.rank > 0) { /* only the first worker speaks and saves */
        o.progress = NULL;
        o.checkpoint = NULL;
    }
    int64_t nb = nn_loader_num_batches(train);
    if (nb < 0) return -1;
    tr->fit_total = epochs * nb;
    /* The schedule's cosine reads libm's table of sines and cosines once
     * its argument passes about 0.13 (glibc), a page of the shared library
     * that the process may not have mapped yet: a minor page fault at
     * whatever step the schedule first gets there, the only one in an
     * otherwise settled run (fmnist_mlp's --json counted it in 3 of 30
     * runs of 100 steps, at step 7).  The half period evaluated once here
     * takes it before the first step. */
    if (tr->o.schedule == NN_SCHEDULE_COSINE) {
        volatile double touched = 0;
        for (int64_t t = 0; t <= 32; t++) touched += nn_lr_cosine(1, t, 32, 0);
        (void)touched;
    }
    /* Checkpoints hold whole epochs; a resumed schedule goes on from the
     * start of the next, whatever the batches per epoch were when it was
     * saved (another batch size or number of workers). */
    if (tr->resumed) tr->steps = tr->epoch * nb;
    tr->resumed = false;
    nn_progress *bar = NULL;
    if (o.progress && tr->epoch < epochs &&
        !(bar = nn_progress_new(o.progress, o.progress_options)))
        return -1;
    int rc = 0;
    for (int64_t e = tr->epoch + 1; e <= epochs && rc == 0; e++) {
        nn_epoch_info info = {.epoch = e, .epochs = epochs};
        double t0 = now();
        rc = fit_epoch(tr, train, &o, bar, e, epochs, &info);
        nn__trainer_prefetch_stop(tr, NULL); /* a stop or an error leaves a job */
        if (rc < 0) break;
        bool stop_after = rc == 2; /* stopped at the epoch's last batch: a whole epoch */
        if (stop_after) rc = 0;
        info.lr = nn_optim_get_lr(tr->opt);
        /* The bar's line ends before the evaluation, so that its samples/s
         * is the training speed alone. */
        if (bar && (tr->o.accuracy ? nn_progress_end(bar, "train acc %.2f%%",
                                                     100 * info.train.accuracy)
                                   : nn_progress_end(bar, NULL))) {
            rc = -1;
            break;
        }
        info.val = (nn_metrics){0, NAN, NAN};
        if (val && o.val_confusion) nn_confusion_reset(o.val_confusion);
        if (val && evaluate(tr, fn, val, o.val_confusion, &info.val) < 0) {
            rc = -1;
            break;
        }
        if (o.progress && val) {
            fprintf(o.progress, "          val loss %.4f", info.val.loss);
            if (tr->o.accuracy) fprintf(o.progress, ", val acc %.2f%%", 100 * info.val.accuracy);
            fprintf(o.progress, ", lr now %.3g\n", info.lr);
        }
        if (rc == 0) tr->epoch = e; /* a stop mid-epoch leaves the epoch unfinished */
        /* every worker, before the first one saves (a sharded update's
         * state is whole on no worker until then) */
        if (rc == 0 && tr->comm.sync_state && tr->comm.sync_state(tr->comm.user, tr->opt)) {
            rc = -1;
            break;
        }
        int64_t every = o.checkpoint_every > 0 ? o.checkpoint_every : 1;
        /* Only whole epochs are saved: a checkpoint in the middle of one
         * could not be resumed at the step it was taken. */
        if (o.checkpoint && rc == 0 && (e == epochs || e % every == 0) &&
            nn_trainer_save(tr, o.checkpoint, o.checkpoint_metadata)) {
            rc = -1;
            break;
        }
        info.seconds = now() - t0;
        if (rc == 0 && o.on_epoch) rc = o.on_epoch(tr, &info, o.user);
        if (rc == 0 && stop_after) rc = 1;
    }
    nn_progress_free(bar);
    tr->fit_total = 0;
    return rc < 0 ? -1 : 0;
}

int nn_trainer_set_comm(nn_trainer *tr, const nn_trainer_comm *comm)
{
    const char *fn = "nn_trainer_set_comm";
    if (!tr) return nn__null_arg(fn, "tr");
    if (!comm) {
        tr->comm = (nn_trainer_comm){0};
        return 0;
    }
    if (!comm->average_grads || !comm->sum)
        return nn__err(fn, "comm needs both hooks (average_grads and sum)");
    if (comm->world_size < 1 || comm->rank < 0 || comm->rank >= comm->world_size)
        return nn__err(fn, "rank %d outside a world of size %d", comm->rank, comm->world_size);
    tr->comm = *comm;
    return 0;
}

nn_module *nn_trainer_model(const nn_trainer *tr)
{
    return tr ? tr->model : (nn__null_arg("nn_trainer_model", "tr"), NULL);
}

nn_optim *nn_trainer_optimizer(const nn_trainer *tr)
{
    return tr ? tr->opt : (nn__null_arg("nn_trainer_optimizer", "tr"), NULL);
}

int nn_trainer_set_counts(nn_trainer *tr, int64_t epoch, int64_t steps)
{
    const char *fn = "nn_trainer_set_counts";
    if (!tr) return nn__null_arg(fn, "tr");
    /* up to 2^62, so that the counts can go on (a step adds 1 to steps) */
    if (epoch < 0 || steps < 0 || epoch > INT64_MAX / 2 || steps > INT64_MAX / 2)
        return nn__err(fn, "counts must be in 0..2^62, got epoch %" PRId64 ", steps %" PRId64,
                       epoch, steps);
    tr->epoch = epoch;
    tr->steps = steps;
    tr->resumed = true;
    return 0;
}

int64_t nn_trainer_epoch(const nn_trainer *tr)
{
    return tr ? tr->epoch : nn__null_arg("nn_trainer_epoch", "tr");
}

int64_t nn_trainer_steps(const nn_trainer *tr)
{
    return tr ? tr->steps : nn__null_arg("nn_trainer_steps", "tr");
}

int nn__rec_add_stats(const rec *r, nn_trainer_stats *s)
{
    ad_tape_stats ts;
    if (!r->tape) return 0;
    if (ad_tape_get_stats(r->tape, &ts)) return -1;
    s->recordings++;
    s->nodes = ts.nodes > s->nodes ? ts.nodes : s->nodes;
    s->arena_reserved += ts.arena_reserved;
    s->arena_chunks += ts.arena_chunks;
    return 0;
}

int nn_trainer_get_stats(const nn_trainer *tr, nn_trainer_stats *s)
{
    const char *fn = "nn_trainer_get_stats";
    if (!tr || !s) return nn__null_arg(fn, tr ? "stats" : "tr");
    *s = (nn_trainer_stats){.replays = tr->replays, .serial_steps = tr->serial_steps};
    for (int i = 0; i < NN_TRAINER_MAX_SHAPES; i++)
        if (nn__rec_add_stats(&tr->train[i], s)) return -1;
    return nn__pool_stats(tr->pool, s);
}

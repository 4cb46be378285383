/* nn/trainer_checkpoint.c - nn_trainer_save and nn_trainer_load: the
 * model's state, the optimiser's and the random streams, with the epoch
 * and step counts, in one safetensors file (trainer.h). */
#include "trainer.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "internal.h"
#include "nn_private.h"
#include "trainer_impl.h"

#define EPOCH_KEY "nn_trainer_epoch"
#define STEP_KEY "nn_trainer_step"
#define LR_KEY "nn_trainer_lr"
#define MODE_KEY "nn_trainer_auto_mode"
#define OPTIM_PREFIX "optim."

/* The model's state_dict followed (with_optim) by the optimiser's state
 * under "optim.<name>" and the model's random streams (dropout's) as
 * "module_rng.<path>", int64 [2] tensors of their own, so that a resumed
 * run draws the same masks; as parallel arrays.  names[i] for i >= sd->n
 * are owned, and tensors[i] for i >= rng_first, which stand for rngs[i -
 * rng_first].  -1 on error. */
typedef struct entries {
    nn_named_tensors *sd, *st;
    int n, rng_first;
    const char **names;
    ad_tensor **tensors;
    ad_rng **rngs;
} entries;

static void entries_free(entries *e)
{
    for (int i = e->sd ? e->sd->n : 0; i < e->n; i++) {
        ad_free((char *)e->names[i]);
        if (i >= e->rng_first) ad_tensor_free(e->tensors[i]);
    }
    ad_free(e->rngs);
    ad_free(e->names);
    ad_free(e->tensors);
    nn_named_tensors_free(e->sd);
    nn_named_tensors_free(e->st);
}

static int entries_make(const char *fn, const nn_trainer *tr, bool with_optim, entries *e)
{
    *e = (entries){.rng_first = INT32_MAX};
    e->sd = nn_state_dict(tr->model);
    if (!e->sd || (with_optim && !(e->st = nn_optim_state(tr->opt)))) return -1;
    int nr = 0;
    char **rng_names = NULL;
    if (with_optim && nn__module_rngs(fn, tr->model, &nr, &rng_names, &e->rngs)) return -1;
    int total = e->sd->n + (e->st ? e->st->n : 0) + nr;
    e->names = ad_calloc((size_t)total + 1, sizeof *e->names);
    e->tensors = ad_calloc((size_t)total + 1, sizeof *e->tensors);
    if (e->names && e->tensors) {
        /* the streams' names first move into names[], which owns them
         * from here (entries_free frees them whatever happens next) */
        e->rng_first = total - nr;
        for (int i = 0; i < nr; i++) e->names[e->rng_first + i] = rng_names[i];
        ad_free(rng_names);
    } else {
        nn__rngs_free(nr, rng_names, NULL);
        return nn__err(fn, "out of memory");
    }
    for (int i = 0; i < e->sd->n; i++, e->n++) {
        e->names[e->n] = e->sd->names[i];
        e->tensors[e->n] = e->sd->tensors[i];
    }
    int rc = 0;
    for (int i = 0; e->st && i < e->st->n && rc == 0; i++, e->n++) {
        size_t len = strlen(OPTIM_PREFIX) + strlen(e->st->names[i]) + 1;
        char *name = ad_malloc(len);
        if (name) snprintf(name, len, "%s%s", OPTIM_PREFIX, e->st->names[i]);
        else rc = nn__err(fn, "out of memory");
        e->names[e->n] = name;
        e->tensors[e->n] = e->st->tensors[i];
    }
    for (int i = 0; i < nr && rc == 0; i++)
        if (!(e->tensors[e->rng_first + i] = nn__rng_tensor(e->rngs[i]))) rc = -1;
    /* from here on, entries_free owns every name up to total */
    e->n = rc == 0 ? total : e->n;
    if (rc) {
        for (int i = e->rng_first; i < total; i++) {
            ad_free((char *)e->names[i]);
            ad_tensor_free(e->tensors[i]);
            e->names[i] = NULL;
            e->tensors[i] = NULL;
        }
        e->rng_first = INT32_MAX;
    }
    return rc;
}

int nn_trainer_save(const nn_trainer *tr, const char *path, const char *metadata_json)
{
    const char *fn = "nn_trainer_save";
    if (!tr || !path) return nn__null_arg(fn, tr ? "path" : "tr");
    /* The user's object is spliced after the trainer's keys: its braces
     * are dropped here, and nn_save_safetensors checks the whole. */
    const char *body = "";
    size_t blen = 0;
    if (metadata_json) {
        const char *b = metadata_json + strspn(metadata_json, " \t\r\n");
        size_t len = strlen(b);
        while (len > 0 && strchr(" \t\r\n", b[len - 1])) len--;
        if (len < 2 || b[0] != '{' || b[len - 1] != '}')
            return nn__err(fn, "metadata_json must be a JSON object, got '%.40s'", metadata_json);
        if (strstr(b, "\"" EPOCH_KEY "\"") || strstr(b, "\"" STEP_KEY "\"") ||
            strstr(b, "\"" LR_KEY "\"") || strstr(b, "\"" MODE_KEY "\""))
            return nn__err(fn, "metadata_json uses a key of the trainer (%s, %s, %s, %s)",
                           EPOCH_KEY, STEP_KEY, LR_KEY, MODE_KEY);
        body = b + 1;
        blen = len - 2;
        while (blen > 0 && strchr(" \t\r\n", *body)) body++, blen--;
    }
    /* The learning rate too, as a hexadecimal float (every bit): one a
     * callback set is not the schedule's, which a resumed run would not
     * find again otherwise.  And NN_THREADS_AUTO's choice, once made, so
     * that a resumed run takes it from its first step, as this run does
     * (it would run that step on the whole batch to choose: other bits). */
    size_t size = blen + 240;
    char *meta = ad_malloc(size);
    if (!meta) return nn__err(fn, "out of memory");
    char hex[40];
    nn__fmt_hex_c(hex, sizeof hex, nn_optim_get_lr(tr->opt));
    snprintf(meta, size,
             "{\"" EPOCH_KEY "\": \"%" PRId64 "\", \"" STEP_KEY "\": \"%" PRId64 "\", \"" LR_KEY
             "\": \"%s\", \"" MODE_KEY "\": \"%d\"%s%.*s}",
             tr->epoch, tr->steps, hex,
             tr->chosen ? tr->chosen : tr->chosen_saved, blen ? ", " : "", (int)blen, body);
    entries e;
    int rc = entries_make(fn, tr, true, &e);
    if (rc == 0) rc = nn_save_safetensors(path, e.n, e.names, e.tensors, meta);
    entries_free(&e);
    ad_free(meta);
    return rc;
}

int nn_trainer_load(nn_trainer *tr, const char *path, bool resume)
{
    const char *fn = "nn_trainer_load";
    if (!tr || !path) return nn__null_arg(fn, tr ? "path" : "tr");
    nn_safetensors_info *info = nn_safetensors_inspect(path);
    if (!info) return -1;
    entries e;
    int64_t epoch = 0, steps = 0;
    double lr = NAN; /* NAN: a file from before the learning rate was saved */
    int mode = 0;
    int rc = entries_make(fn, tr, resume, &e);
    if (rc == 0 && resume) {
        const char *missing = "not saved by nn_trainer_save, so there is nothing to resume "
                              "(load it without resume)";
        rc = nn__meta_count(fn, path, info, EPOCH_KEY, missing, &epoch) ||
                     nn__meta_count(fn, path, info, STEP_KEY, missing, &steps)
                 ? -1
                 : 0;
        const char *v = nn__meta_get(info, LR_KEY);
        char *end = NULL;
        if (rc == 0 && v) lr = nn__strtod_c(v, &end);
        if (rc == 0 && v && (*v == '\0' || *end != '\0' || !isfinite(lr) || lr < 0))
            rc = nn__err_io(fn, "%s: \"%s\" is '%s', not a learning rate", path, LR_KEY, v);
        /* absent in older files: the run chooses again */
        const char *m = rc == 0 ? nn__meta_get(info, MODE_KEY) : NULL;
        if (m && strcmp(m, "0") && strcmp(m, "1") && strcmp(m, "2"))
            rc = nn__err_io(fn, "%s: \"%s\" is '%s', not a thread mode (0, 1 or 2)", path,
                            MODE_KEY, m);
        else if (m)
            mode = atoi(m);
    }
    /* Loading weights only, the optimiser's entries of a trainer's
     * checkpoint are skipped; any other entry the model lacks is an error,
     * as a strict load would say. */
    for (int i = 0; rc == 0 && !resume && i < info->n; i++) {
        const char *name = info->entries[i].name;
        bool known = !strncmp(name, OPTIM_PREFIX, strlen(OPTIM_PREFIX)) ||
                     !strncmp(name, NN__MODULE_RNG, strlen(NN__MODULE_RNG));
        for (int k = 0; k < e.n && !known; k++) known = !strcmp(e.names[k], name);
        if (!known) {
            char list[700], hint[300] = "";
            nn__name_list(list, sizeof list, e.sd->n, e.sd->names);
            /* a model saved inside a wrapper: "model.0.weight" for "0.weight" */
            size_t lf = strlen(name);
            for (int k = 0; k < e.sd->n && !hint[0]; k++) {
                const char *mn = e.sd->names[k];
                size_t lm = strlen(mn);
                if (lf > lm + 1 && !strcmp(name + lf - lm, mn) && name[lf - lm - 1] == '.')
                    snprintf(hint, sizeof hint, "; the file's '%.100s' has a prefix '%.*s' that "
                             "the model's names lack (rename the entries, or save the inner "
                             "model's state_dict)", name, (int)(lf - lm), name);
            }
            rc = nn__err(fn, "%s: '%s' is not a tensor of the model (nor an optimiser's); the "
                             "model's are: %s%s", path, name, list, hint);
        }
    }
    if (rc == 0) rc = nn_load_safetensors(path, e.n, e.names, e.tensors, resume);
    if (rc == 0 && resume) {
        for (int i = e.rng_first; i < e.n; i++) nn__rng_set(e.rngs[i - e.rng_first], e.tensors[i]);
        tr->epoch = epoch;
        tr->steps = steps;
        tr->resumed = true;
        tr->chosen_saved = mode;
        if (!isnan(lr)) nn_optim_set_lr(tr->opt, lr); /* checked above: cannot fail */
    }
    entries_free(&e);
    nn_safetensors_info_free(info);
    return rc;
}

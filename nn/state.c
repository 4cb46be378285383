/* nn/state.c - whole-state checkpoints (state.h): one list of named
 * tensors for everything a run's state is, written and read with the
 * safetensors functions of checkpoint.c. */
#include <math.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "internal.h"
#include "nn_private.h"
#include "state.h"

#define OPTIM_PREFIX "optim."
#define RNG_PREFIX "rng."
#define MODULE_RNG NN__MODULE_RNG
#define KEY_EPOCH "nn_checkpoint_epoch"
#define KEY_STEP "nn_checkpoint_step"
#define KEY_OPTIM "nn_checkpoint_optim"
#define KEY_LR "nn_checkpoint_lr" /* the optimiser's rate, a hexadecimal float */

/* The checkpoint as parallel arrays.  names are all owned; tensors of the
 * random streams (int64 [2]: seed, counter) are owned too, and rng[i] is
 * the stream entry i stands for (NULL for the model's and optimiser's
 * tensors, which are borrowed). */
typedef struct parts {
    int n, cap;
    char **names;
    ad_tensor **tensors;
    ad_rng **rng;
    nn_named_tensors *sd, *st;
} parts;

static void parts_free(parts *p)
{
    for (int i = 0; i < p->n; i++) {
        ad_free(p->names[i]);
        if (p->rng[i]) ad_tensor_free(p->tensors[i]);
    }
    ad_free(p->names);
    ad_free(p->tensors);
    ad_free(p->rng);
    nn_named_tensors_free(p->sd);
    nn_named_tensors_free(p->st);
}

/* Appends prefix + name (either may be "") for tensor t, or for a new
 * int64 [2] holding rng when rng is not NULL; out of memory is fn's error. */
static int add(const char *fn, parts *p, const char *prefix, const char *name, ad_tensor *t,
               ad_rng *rng)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 16;
        char **nn = ad_realloc(p->names, (size_t)cap * sizeof *nn);
        if (nn) p->names = nn;
        ad_tensor **nt = nn ? ad_realloc(p->tensors, (size_t)cap * sizeof *nt) : NULL;
        if (nt) p->tensors = nt;
        ad_rng **nr = nt ? ad_realloc(p->rng, (size_t)cap * sizeof *nr) : NULL;
        if (!nr) return nn__err(fn, "out of memory");
        p->rng = nr;
        p->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = ad_malloc(len);
    if (!full) return nn__err(fn, "out of memory");
    snprintf(full, len, "%s%s", prefix, name);
    if (rng && !(t = nn__rng_tensor(rng))) {
        ad_free(full);
        return -1;
    }
    p->names[p->n] = full;
    p->tensors[p->n] = t;
    p->rng[p->n] = rng;
    p->n++;
    return 0;
}

ad_tensor *nn__rng_tensor(const ad_rng *r)
{
    int64_t two = 2;
    ad_tensor *t = ad_empty(NULL, AD_INT64, 1, &two);
    if (!t) return NULL;
    int64_t *v = ad_data(t);
    /* the bits of the unsigned state: the loadable dtypes have no U64 */
    memcpy(&v[0], &r->seed, sizeof v[0]);
    memcpy(&v[1], &r->counter, sizeof v[1]);
    return t;
}

void nn__rng_set(ad_rng *r, ad_tensor *t)
{
    const int64_t *v = ad_data(t);
    memcpy(&r->seed, &v[0], sizeof v[0]);
    memcpy(&r->counter, &v[1], sizeof v[1]);
}

void nn__rngs_free(int n, char **names, ad_rng **rngs)
{
    for (int i = 0; names && i < n; i++) ad_free(names[i]);
    ad_free(names);
    ad_free(rngs);
}

/* Appends m's stream and its descendants' to the lists, path being m's. */
static int walk(const nn_module *m, const char *path, int *n, char ***names, ad_rng ***rngs)
{
    ad_rng *r = nn_module_rng(m);
    if (r) {
        char **nn = ad_realloc(*names, (size_t)(*n + 1) * sizeof *nn);
        if (nn) *names = nn;
        ad_rng **nr = nn ? ad_realloc(*rngs, (size_t)(*n + 1) * sizeof *nr) : NULL;
        if (!nr) return -1;
        *rngs = nr;
        size_t len = strlen(NN__MODULE_RNG) + strlen(path) + 2;
        if (!((*names)[*n] = ad_malloc(len))) return -1;
        snprintf((*names)[*n], len, "%s%s%s", NN__MODULE_RNG, path[0] ? "." : "", path);
        (*rngs)[(*n)++] = r;
    }
    for (int i = 0; i < nn_num_children(m); i++) {
        const char *c = nn_child_name(m, i);
        size_t len = strlen(path) + strlen(c) + 2;
        char *sub = ad_malloc(len);
        if (!sub) return -1;
        snprintf(sub, len, "%s%s%s", path, path[0] ? "." : "", c);
        int rc = walk(nn_child(m, i), sub, n, names, rngs);
        ad_free(sub);
        if (rc) return -1;
    }
    return 0;
}

int nn__module_rngs(const char *fn, const nn_module *m, int *n, char ***names, ad_rng ***rngs)
{
    *n = 0;
    *names = NULL;
    *rngs = NULL;
    if (walk(m, "", n, names, rngs) == 0) return 0;
    nn__rngs_free(*n, *names, *rngs);
    *n = 0;
    *names = NULL;
    *rngs = NULL;
    return nn__err(fn, "out of memory listing the model's random streams");
}

static int check_ck(const char *fn, const char *path, const nn_checkpoint *ck)
{
    if (!path || !ck) return nn__null_arg(fn, path ? "ck" : "path");
    if (ck->n_rngs < 0 || ck->n_rngs > NN_CHECKPOINT_MAX_RNGS)
        return nn__err(fn, "n_rngs %d out of range 0..%d", ck->n_rngs, NN_CHECKPOINT_MAX_RNGS);
    if (ck->n_rngs > 0 && (!ck->rng_names || !ck->rngs))
        return nn__err(fn, "n_rngs is %d but rng_names or rngs is NULL", ck->n_rngs);
    for (int i = 0; i < ck->n_rngs; i++) {
        if (!ck->rngs[i]) return nn__err(fn, "rngs[%d] is NULL", i);
        if (!ck->rng_names[i] || !ck->rng_names[i][0])
            return nn__err(fn, "rng_names[%d] is NULL or empty", i);
        for (int j = 0; j < i; j++)
            if (!strcmp(ck->rng_names[i], ck->rng_names[j]))
                return nn__err(fn, "rng name '%s' is given twice (%d and %d)", ck->rng_names[i],
                               j, i);
    }
    return 0;
}

static int collect_into(const char *fn, const nn_checkpoint *ck, parts *p)
{
    if (ck->model) {
        if (!(p->sd = nn_state_dict(ck->model))) return -1;
        for (int i = 0; i < p->sd->n; i++)
            if (add(fn, p, "", p->sd->names[i], p->sd->tensors[i], NULL)) return -1;
    }
    if (ck->optim) {
        if (!(p->st = nn_optim_state(ck->optim))) return -1;
        for (int i = 0; i < p->st->n; i++)
            if (add(fn, p, OPTIM_PREFIX, p->st->names[i], p->st->tensors[i], NULL)) return -1;
    }
    if (ck->model) {
        int n;
        char **names;
        ad_rng **rngs;
        if (nn__module_rngs(fn, ck->model, &n, &names, &rngs)) return -1;
        int rc = 0;
        for (int i = 0; i < n && rc == 0; i++) rc = add(fn, p, "", names[i], NULL, rngs[i]);
        nn__rngs_free(n, names, rngs);
        if (rc) return -1;
    }
    for (int i = 0; i < ck->n_rngs; i++)
        if (add(fn, p, RNG_PREFIX, ck->rng_names[i], NULL, ck->rngs[i])) return -1;
    return 0;
}

/* Everything ck names, as parts; on failure nothing is kept (*p zeroed). */
static int collect(const char *fn, const nn_checkpoint *ck, parts *p)
{
    *p = (parts){0};
    if (collect_into(fn, ck, p) == 0) return 0;
    parts_free(p);
    *p = (parts){0};
    return -1;
}

/* {"nn_checkpoint_epoch": "3", ..., <the user's keys>} as a new string. */
static char *metadata(const char *fn, const nn_checkpoint *ck)
{
    const char *body = "";
    size_t blen = 0;
    if (ck->metadata_json) {
        const char *b = ck->metadata_json + strspn(ck->metadata_json, " \t\r\n");
        size_t len = strlen(b);
        while (len > 0 && strchr(" \t\r\n", b[len - 1])) len--;
        if (len < 2 || b[0] != '{' || b[len - 1] != '}')
            return nn__err(fn, "metadata_json must be a JSON object, got '%.40s'",
                           ck->metadata_json), NULL;
        /* the keys as JSON reads them ("nn\u005fcheckpoint_lr" is
         * nn_checkpoint_lr), not the text: a value may say anything */
        nn_safetensors_info meta = {0};
        int bad = nn__st_parse_metadata(fn, b, &meta) ? -1 : 0;
        for (int i = 0; i < meta.n_metadata; i++) {
            if (!bad && !strncmp(meta.metadata_keys[i], "nn_checkpoint_", 14)) bad = 1;
            ad_free(meta.metadata_keys[i]);
            ad_free(meta.metadata_values[i]);
        }
        ad_free(meta.metadata_keys);
        ad_free(meta.metadata_values);
        if (bad < 0) return NULL;
        if (bad)
            return nn__err(fn, "metadata_json uses a key starting 'nn_checkpoint_', which are "
                               "the checkpoint's own"), NULL;
        /* the user's members are spliced after ours; nn_save_safetensors
         * checks that the whole is an object of strings */
        body = b + 1;
        blen = len - 2;
        while (blen > 0 && strchr(" \t\r\n", *body)) body++, blen--;
    }
    const char *oname = ck->optim ? nn_optim_name(ck->optim) : NULL;
    /* the rate goes with the optimiser's state: one a schedule or a
     * callback set is what a resumed run must continue from (PyTorch's
     * state_dict keeps it in param_groups) */
    char lr[64] = "", hex[40];
    if (ck->optim) {
        nn__fmt_hex_c(hex, sizeof hex, nn_optim_get_lr(ck->optim));
        snprintf(lr, sizeof lr, ", \"" KEY_LR "\": \"%s\"", hex);
    }
    size_t size = blen + 320;
    char *meta = ad_malloc(size);
    if (!meta) return nn__err(fn, "out of memory"), NULL;
    snprintf(meta, size,
             "{\"" KEY_EPOCH "\": \"%" PRId64 "\", \"" KEY_STEP "\": \"%" PRId64 "\"%s%s%s%s%s%.*s}",
             ck->epoch, ck->step, oname ? ", \"" KEY_OPTIM "\": \"" : "", oname ? oname : "",
             oname ? "\"" : "", lr, blen ? ", " : "", (int)blen, body);
    return meta;
}

int nn_checkpoint_save(const char *path, const nn_checkpoint *ck)
{
    const char *fn = "nn_checkpoint_save";
    if (check_ck(fn, path, ck)) return -1;
    if (ck->epoch < 0 || ck->step < 0)
        return nn__err(fn, "epoch (%" PRId64 ") and step (%" PRId64 ") must be >= 0", ck->epoch,
                       ck->step);
    char *meta = metadata(fn, ck);
    if (!meta) return -1;
    parts p;
    int rc = collect(fn, ck, &p);
    if (rc == 0)
        rc = nn_save_safetensors(path, p.n, (const char *const *)p.names, p.tensors, meta);
    parts_free(&p);
    ad_free(meta);
    return rc;
}

/* The value of key in info's metadata, or NULL. */
static const char *meta_get(const nn_safetensors_info *info, const char *key)
{
    for (int i = 0; i < info->n_metadata; i++)
        if (!strcmp(info->metadata_keys[i], key)) return info->metadata_values[i];
    return NULL;
}

const char *nn__meta_get(const struct nn_safetensors_info *info, const char *key)
{
    return meta_get(info, key);
}

int nn__meta_count(const char *fn, const char *path, const struct nn_safetensors_info *info,
                   const char *key, const char *missing, int64_t *out)
{
    const char *v = meta_get(info, key);
    if (!v) return nn__err_io(fn, "%s: no \"%s\" in its metadata: %s", path, key, missing);
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    /* (a count past INT64_MAX was clamped to it, and taken) */
    if (*v == '\0' || *end != '\0' || n < 0 || errno == ERANGE)
        return nn__err_io(fn, "%s: \"%s\" is '%s', not a count", path, key, v);
    *out = (int64_t)n;
    return 0;
}

static bool starts(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* Whether a file entry that nothing asked for belongs to a part the
 * caller left out (skipped) rather than being unknown (an error). */
static bool left_out(const nn_checkpoint *ck, const char *name)
{
    if (starts(name, OPTIM_PREFIX)) return !ck->optim;
    if (starts(name, RNG_PREFIX)) return ck->n_rngs == 0;
    if (starts(name, MODULE_RNG)) return !ck->model;
    return !ck->model;
}

int nn_checkpoint_load(const char *path, nn_checkpoint *ck)
{
    const char *fn = "nn_checkpoint_load";
    if (check_ck(fn, path, ck)) return -1;
    nn_safetensors_info *info = nn_safetensors_inspect(path);
    if (!info) return -1;
    parts p;
    int64_t epoch = 0, step = 0;
    const char *missing = "not saved by nn_checkpoint_save";
    int rc = nn__meta_count(fn, path, info, KEY_EPOCH, missing, &epoch) ||
                     nn__meta_count(fn, path, info, KEY_STEP, missing, &step) ||
                     collect(fn, ck, &p)
                 ? -1
                 : 0;
    if (rc) p = (parts){0};
    const char *fo = meta_get(info, KEY_OPTIM), *oo = ck->optim ? nn_optim_name(ck->optim) : NULL;
    if (rc == 0 && fo && oo && strcmp(fo, oo))
        rc = nn__err(fn, "%s: the optimiser's state is %s's in the file, the optimiser is %s",
                     path, fo, oo);
    double lr = NAN;
    const char *flr = ck->optim ? meta_get(info, KEY_LR) : NULL;
    if (rc == 0 && flr) { /* files from before it was saved have none: the rate stays */
        char *end;
        lr = nn__strtod_c(flr, &end);
        if (*flr == '\0' || *end != '\0' || !(lr >= 0) || !isfinite(lr))
            rc = nn__err_io(fn, "%s: \"" KEY_LR "\" is '%s', not a learning rate", path, flr);
    }
    for (int i = 0; rc == 0 && i < info->n; i++) {
        const char *name = info->entries[i].name;
        bool known = left_out(ck, name);
        for (int k = 0; k < p.n && !known; k++) known = !strcmp(p.names[k], name);
        if (!known)
            rc = nn__err(fn, "%s: the file has '%s', which is not among the tensors asked for "
                             "(model, optimiser, random streams)",
                         path, name);
    }
    if (rc == 0)
        rc = nn_load_safetensors(path, p.n, (const char *const *)p.names, p.tensors, false);
    if (rc == 0) {
        for (int i = 0; i < p.n; i++)
            if (p.rng[i]) nn__rng_set(p.rng[i], p.tensors[i]);
        ck->epoch = epoch;
        ck->step = step;
        if (flr) rc = nn_optim_set_lr(ck->optim, lr);
    }
    parts_free(&p);
    nn_safetensors_info_free(info);
    return rc;
}

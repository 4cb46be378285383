/* nn/module_summary.c - printing a module tree (nn_module_print, as
 * PyTorch prints a model) and the summary table (nn_summary: each layer's
 * output shape and parameter count, found by one forward pass of zeros
 * that nn_forward reports here, as Keras's model.summary() does).  The
 * tree itself is in module.c. */
#include <stdlib.h>
#include <string.h>

#include "module.h"
#include "module_impl.h"
#include "nn_private.h"

/* ---- printing ----------------------------------------------------------------------- */

static int print_tree(const nn_module *m, FILE *out, int depth)
{
    char desc[200];
    nn_module_describe(m, desc, sizeof desc);
    if (m->children.n == 0) return fprintf(out, "%s\n", desc) < 0 ? -1 : 0;
    /* "Sequential(" then one "(name): child" line per child, then ")". */
    desc[strlen(desc) - 1] = '\0';
    if (fprintf(out, "%s\n", desc) < 0) return -1;
    for (int i = 0; i < m->children.n; i++) {
        fprintf(out, "%*s(%s): ", 2 * (depth + 1), "", m->children.names[i]);
        if (print_tree(m->children.items[i], out, depth + 1) != 0) return -1;
    }
    return fprintf(out, "%*s)\n", 2 * depth, "") < 0 ? -1 : 0;
}

int nn_module_print(const nn_module *m, FILE *out)
{
    if (!m || !out) return nn__null_arg("nn_module_print", m ? "out" : "m");
    if (print_tree(m, out, 0) != 0) return ad_set_error("nn_module_print: write error");
    return 0;
}

/* ---- the summary's record of a forward pass ------------------------------------------ */

/* The summary watches every nn_forward call through this per-thread hook:
 * one row per call, opened before the forward (so parents come before their
 * children) and given its output shape after. */
typedef struct summary_row {
    const nn_module *m;
    int ndim; /* -1 until the forward returned */
    int64_t shape[AD_MAX_DIMS];
} summary_row;

typedef struct summary_rec {
    summary_row *rows;
    int n, cap;
    bool failed;
} summary_rec;

static _Thread_local summary_rec *summary_hook;

bool nn__summary_active(void) { return summary_hook != NULL; }

int nn__summary_open(const nn_module *m)
{
    int row = -1;
    summary_rec *rec = summary_hook;
    if (rec && !rec->failed) {
        if (rec->n == rec->cap) {
            int cap = rec->cap ? 2 * rec->cap : 16;
            summary_row *r = ad_realloc(rec->rows, (size_t)cap * sizeof *r);
            if (r) {
                rec->rows = r;
                rec->cap = cap;
            }
        }
        if (rec->n < rec->cap) {
            row = rec->n++;
            rec->rows[row] = (summary_row){m, -1, {0}};
        } else {
            rec->failed = true;
        }
    }
    return row;
}

void nn__summary_close(int row, const ad_tensor *y)
{
    summary_rec *rec = summary_hook;
    if (!rec || row < 0) return;
    rec->rows[row].ndim = ad_ndim(y);
    memcpy(rec->rows[row].shape, ad_shape(y), (size_t)ad_ndim(y) * sizeof(int64_t));
}

/* ---- summary --------------------------------------------------------------------------- */

static void collect_modes(nn_module *m, bool *modes, int *k, bool restore)
{
    if (restore)
        m->training = modes[*k];
    else
        modes[*k] = m->training;
    (*k)++;
    for (int i = 0; i < m->children.n; i++) collect_modes(m->children.items[i], modes, k, restore);
}

static int count_modules(const nn_module *m)
{
    int n = 1;
    for (int i = 0; i < m->children.n; i++) n += count_modules(m->children.items[i]);
    return n;
}

/* The first parameter's dtype in pre-order, and whether the first leaf
 * module is an Embedding (which wants int64 indices). */
static ad_dtype input_dtype(const nn_module *m)
{
    const nn_module *leaf = m;
    while (leaf->children.n > 0) leaf = leaf->children.items[0];
    if (strcmp(leaf->type->name, "Embedding") == 0) return AD_INT64;
    nn_named_tensors *p = nn_parameters(m);
    ad_dtype dt = p && p->n > 0 ? ad_tensor_dtype(p->tensors[0]) : AD_FLOAT32;
    nn_named_tensors_free(p);
    return dt;
}

/* 203530 -> "203,530" */
static void commas(int64_t v, char *buf, size_t size)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)v), o = 0;
    for (int i = 0; i < n && (size_t)o + 2 < size; i++) {
        if (i > 0 && digits[i - 1] != '-' && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

static int print_summary(const nn_module *m, const summary_rec *rec, int ndim,
                         const int64_t *shape, ad_dtype dt, FILE *out)
{
    static const char rule[] = "====================================================="
                               "=========================\n";
    char name[320], sh[96], num[32], desc[160], path[128];
    fprintf(out, "%-44s %-20s %12s\n", "Layer (type)", "Output shape", "Param #");
    fputs(rule, out);
    for (int i = 0; i < rec->n; i++) {
        const summary_row *r = &rec->rows[i];
        int depth = 0;
        for (const nn_module *p = r->m; p && p != m; p = p->parent) depth++;
        nn__module_path(r->m, m, path, sizeof path);
        nn_module_describe(r->m, desc, sizeof desc);
        snprintf(name, sizeof name, "%*s%s%s%s", 2 * depth, "", path, *path ? ": " : "", desc);
        if (strlen(name) > 44) strcpy(name + 41, "...");
        nn__shape_str(r->ndim, r->shape, sh, sizeof sh);
        commas(nn_num_parameters(r->m), num, sizeof num);
        fprintf(out, "%-44s %-20s %12s\n", name, sh, num);
    }
    fputs(rule, out);
    nn_named_tensors *p = nn_parameters(m), *b = nn_buffers(m);
    if (!p || !b) {
        nn_named_tensors_free(p);
        nn_named_tensors_free(b);
        return -1;
    }
    int64_t total = 0, trainable = 0, bufs = 0;
    double bytes = 0;
    for (int i = 0; i < p->n; i++) {
        int64_t k = ad_numel(p->tensors[i]);
        total += k;
        if (ad_requires_grad(p->tensors[i])) trainable += k;
        bytes += (double)k * (double)ad_dtype_size(ad_tensor_dtype(p->tensors[i]));
    }
    for (int i = 0; i < b->n; i++) bufs += ad_numel(b->tensors[i]);
    nn_named_tensors_free(p);
    nn_named_tensors_free(b);
    commas(total, num, sizeof num);
    fprintf(out, "Total params: %s\n", num);
    commas(trainable, num, sizeof num);
    fprintf(out, "Trainable params: %s\n", num);
    commas(total - trainable, num, sizeof num);
    fprintf(out, "Non-trainable params: %s\n", num);
    commas(bufs, num, sizeof num);
    fprintf(out, "Buffer elements: %s\n", num);
    nn__shape_str(ndim, shape, sh, sizeof sh);
    fprintf(out, "Input: %s %s; parameter memory: %.2f KiB\n", sh, ad_dtype_name(dt),
            bytes / 1024.0);
    return ferror(out) ? ad_set_error("nn_summary: write error") : 0;
}

int nn_summary(nn_module *m, int ndim, const int64_t *input_shape, FILE *out)
{
    const char *fn = "nn_summary";
    if (!m || !out || (ndim > 0 && !input_shape))
        return nn__null_arg(fn, !m ? "m" : !out ? "out" : "input_shape");
    if (ndim < 1 || ndim > AD_MAX_DIMS)
        return ad_set_error("%s: ndim must be 1..%d, got %d", fn, AD_MAX_DIMS, ndim);
    if (summary_hook || nn__forward_depth() > 0)
        return ad_set_error("%s: cannot run inside a forward pass or another summary", fn);
    int nmod = count_modules(m), k = 0;
    bool *modes = ad_malloc((size_t)nmod * sizeof *modes);
    if (!modes) return ad_set_error("%s: out of memory", fn);
    collect_modes(m, modes, &k, false);
    /* Eval mode and no grad: the dummy pass must not update BatchNorm's
     * running statistics, draw dropout masks or record anything. */
    nn_eval(m);
    bool grad = ad_set_grad_enabled(false);
    ad_tape *tape = ad_tape_new(), *prev = ad_tape_activate(tape);
    ad_dtype dt = input_dtype(m);
    summary_rec rec = {0};
    ad_tensor *x = tape ? ad_zeros(tape, dt, ndim, input_shape) : NULL;
    ad_tensor *y = NULL;
    if (x) {
        summary_hook = &rec;
        y = nn_forward(m, x);
        summary_hook = NULL;
    } else if (!tape) {
        ad_set_error("%s: out of memory", fn);
    } else {
        ad_set_error("%s: bad input shape: %s", fn, ad_error());
    }
    ad_tape_activate(prev);
    ad_tape_free(tape);
    ad_set_grad_enabled(grad);
    k = 0;
    collect_modes(m, modes, &k, true);
    ad_free(modes);
    int rc = -1;
    if (y && rec.failed)
        ad_set_error("%s: out of memory", fn);
    else if (y)
        rc = print_summary(m, &rec, ndim, input_shape, dt, out);
    ad_free(rec.rows);
    return rc;
}

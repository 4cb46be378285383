/* autodiff/graph.c - the DOT writer of graph.h.
 *
 * Built on the public inspection API (tape.h), with the library's growing
 * string (strbuf.h) for the labels: a node's inputs are
 * tensors, and ad_tensor_node_index() says which earlier node produced
 * each one, or -1 for a leaf.  Because nodes are recorded in execution
 * order, every input of node i was produced by a node j < i, so one sweep
 * from the newest node down to the oldest finds the whole history of an
 * output - the same sweep ad_backward() makes to find what to
 * differentiate.  The nodes are then written oldest first, so a picture
 * reads in the order the computation ran.
 */
#include "graph.h"

#include "alloc.h"
#include "strbuf.h"
#include "tape_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- pointer -> id map (open addressing), for leaves and producers --------------- */

typedef struct ptrmap {
    const void **keys;
    long *vals;
    size_t cap, count;
} ptrmap;

static size_t ptr_hash(const void *p, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)p;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull; /* a 64-bit mixer, so aligned pointers spread */
    h ^= h >> 33;
    return (size_t)(h & (cap - 1));
}

static long *ptrmap_find(const ptrmap *m, const void *key)
{
    if (!m->cap) return NULL;
    for (size_t i = ptr_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return NULL;
        if (m->keys[i] == key) return &m->vals[i];
    }
}

static int ptrmap_put(ptrmap *m, const void *key, long val)
{
    if (2 * (m->count + 1) > m->cap) { /* keep the load factor <= 1/2 */
        ptrmap g = {NULL, NULL, m->cap ? 2 * m->cap : 64, 0};
        g.keys = ad_calloc(g.cap, sizeof *g.keys);
        g.vals = ad_calloc(g.cap, sizeof *g.vals);
        if (!g.keys || !g.vals) {
            ad_free(g.keys);
            ad_free(g.vals);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) ptrmap_put(&g, m->keys[i], m->vals[i]);
        ad_free(m->keys);
        ad_free(m->vals);
        *m = g;
    }
    size_t i = ptr_hash(key, m->cap);
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->count++;
    m->keys[i] = key;
    m->vals[i] = val;
    return 0;
}

static void ptrmap_free(ptrmap *m)
{
    ad_free(m->keys);
    ad_free(m->vals);
}

/* ---- the writer ------------------------------------------------------------------ */

typedef struct writer {
    const char *fn; /* "ad_graph_dot" or "ad_graph_dot_tape", for messages */
    FILE *out;
    ad_dot_opts o;
    const ad_tape *tape;
    ptrmap leaves;    /* leaf tensor -> its number ("L3") */
    ptrmap producers; /* ad_graph_dot_tape: output tensor -> node, replay-only nodes included */
    ptrmap grads;     /* tensor -> index into o.grads */
    ptrmap wanted;    /* the outputs asked for (drawn with a double border) */
    bool use_producers;
} writer;

/* The node that produced t, or -1 for a leaf.  ad_graph_dot follows gradient
 * history (ad_tensor_node_index); ad_graph_dot_tape also links the outputs of
 * replay-only nodes, which are leaves as far as gradients are concerned. */
static long producer(const writer *w, const ad_tensor *t)
{
    if (w->use_producers) {
        long *v = ptrmap_find(&w->producers, t);
        return v ? *v : -1;
    }
    long i = ad_tensor_node_index(t);
    return i >= 0 && ad_tensor_tape(t) == w->tape ? i : -1;
}

/* Writes s as the inside of a DOT quoted string: quotes and backslashes
 * are escaped, a newline becomes DOT's centred line break \n, and other
 * control bytes are dropped, so nothing a user labels a tensor with can
 * end the string early. */
static void put_escaped(FILE *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c >= 0x20 && c != 0x7f) {
            fputc(c, out);
        }
    }
}

static void sb_number(ad__strbuf *b, double v, int precision)
{
    if (isnan(v)) ad__sb_printf(b, "nan");
    else if (isinf(v)) ad__sb_printf(b, v > 0 ? "inf" : "-inf");
    else ad__sb_printf(b, "%.*g", precision, v == 0 ? 0.0 : v); /* no "-0" */
}

/* Nested brackets in row-major order: [[1, 2], [3, 4]]; a 0-d tensor is
 * its bare number. */
static void sb_values(ad__strbuf *b, const double *v, int ndim, const int64_t *shape, int precision)
{
    if (ndim == 0) {
        sb_number(b, v[0], precision);
        return;
    }
    int64_t inner = 1;
    for (int d = 1; d < ndim; d++) inner *= shape[d];
    ad__sb_printf(b, "[");
    for (int64_t i = 0; i < shape[0]; i++) {
        if (i) ad__sb_printf(b, ", ");
        sb_values(b, v + i * inner, ndim - 1, shape + 1, precision);
    }
    ad__sb_printf(b, "]");
}

/* Appends "\n<what> <values>" for small tensors. */
static int sb_tensor_values(writer *w, ad__strbuf *b, const char *what, const ad_tensor *t)
{
    int64_t n = ad_numel(t);
    if (n > w->o.max_values) return 0;
    double small[16], *v = n <= 16 ? small : ad_malloc((size_t)n * sizeof *v);
    if (!v) return ad_set_error("%s: out of memory", w->fn);
    if (ad_to_array(t, v)) {
        if (v != small) ad_free(v);
        return -1;
    }
    ad__sb_printf(b, "\n%s ", what);
    sb_values(b, v, ad_ndim(t), ad_shape(t), w->o.precision);
    if (v != small) ad_free(v);
    return 0;
}

/* The label shared by leaves and ops: label, shape, dtype, value, grad. */
static int describe(writer *w, ad__strbuf *b, const ad_tensor *t, bool leaf)
{
    const char *label = ad_label(t);
    if (label && *label) ad__sb_printf(b, "\n%s", label);
    char shape[128];
    ad_shape_str(t, shape, sizeof shape);
    ad__sb_printf(b, "\n%s %s", shape, ad_dtype_name(ad_tensor_dtype(t)));
    if (sb_tensor_values(w, b, "value", t)) return -1;
    const ad_tensor *g = NULL;
    long *k = ptrmap_find(&w->grads, t);
    if (k) g = w->o.grads[*k];
    else if (leaf && w->o.show_grads) g = ad_tensor_grad(t);
    if (g && sb_tensor_values(w, b, "grad", g)) return -1;
    return 0;
}

static int write_leaf(writer *w, const ad_tensor *t)
{
    if (ptrmap_find(&w->leaves, t)) return 0;
    long id = (long)w->leaves.count;
    if (ptrmap_put(&w->leaves, t, id)) return ad_set_error("%s: out of memory", w->fn);
    bool param = ad_requires_grad(t);
    ad__strbuf b = {0};
    /* A label of its own names the leaf; otherwise say what kind it is. */
    const char *label = ad_label(t);
    if (!label || !*label) ad__sb_printf(&b, "%s", param ? "leaf" : "constant");
    if (describe(w, &b, t, true)) {
        ad_free(b.s);
        return -1;
    }
    if (b.oom) {
        ad_free(b.s);
        return ad_set_error("%s: out of memory", w->fn);
    }
    const char *text = b.s + (b.s[0] == '\n'); /* no empty first line */
    fprintf(w->out, "  L%ld [shape=box, %s%slabel=\"", id,
            param ? "style=filled, fillcolor=\"#dae8fc\", " : "style=dashed, ",
            ptrmap_find(&w->wanted, t) ? "peripheries=2, " : "");
    put_escaped(w->out, text);
    fputs("\"];\n", w->out);
    ad_free(b.s);
    return 0;
}

/* One op: its leaves first (so every name is declared before it is used),
 * then the ellipse, then an arrow from each input. */
static int write_node(writer *w, size_t i)
{
    ad_node_info info;
    if (ad_tape_node_info(w->tape, i, &info)) return -1;
    for (int k = 0; k < info.nin; k++)
        if (producer(w, info.inputs[k]) < 0 && write_leaf(w, info.inputs[k])) return -1;
    ad__strbuf b = {0};
    ad__sb_printf(&b, "n%zu: %s", i, info.op);
    /* The node's label is its scope's, or the output's own label when one
     * was set on it (ad_set_label names the node too); show it once. */
    const char *own = ad_label(info.output);
    if (info.label && *info.label && !(own && strcmp(own, info.label) == 0))
        ad__sb_printf(&b, " (in %s)", info.label);
    if (!info.on_grad_path) ad__sb_printf(&b, "\n(replay only)");
    if (describe(w, &b, info.output, false)) {
        ad_free(b.s);
        return -1;
    }
    if (b.oom) {
        ad_free(b.s);
        return ad_set_error("%s: out of memory", w->fn);
    }
    fprintf(w->out, "  n%zu [shape=ellipse, %s%slabel=\"", i,
            info.on_grad_path ? "style=filled, fillcolor=\"#fff2cc\", " : "style=dashed, ",
            ptrmap_find(&w->wanted, info.output) ? "peripheries=2, " : "");
    put_escaped(w->out, b.s);
    fputs("\"];\n", w->out);
    ad_free(b.s);
    ad_tensor *small[8], **local = NULL;
    if (w->o.edge_derivatives && info.on_grad_path && ad_numel(info.output) == 1) {
        local = info.nin <= 8 ? small : ad_calloc((size_t)info.nin, sizeof *local);
        if (!local) return ad_set_error("%s: out of memory", w->fn);
        if (ad__node_local_grads((ad_tape *)w->tape, i, local)) {
            if (local != small) ad_free(local);
            return -1;
        }
    }
    for (int k = 0; k < info.nin; k++) {
        long p = producer(w, info.inputs[k]);
        if (p >= 0) fprintf(w->out, "  n%ld -> n%zu", p, i);
        else fprintf(w->out, "  L%ld -> n%zu", *ptrmap_find(&w->leaves, info.inputs[k]), i);
        ad__strbuf e = {0};
        if (info.nin > 1) ad__sb_printf(&e, "%d", k);
        if (local && local[k] && ad_numel(local[k]) == 1 && ad_numel(info.inputs[k]) == 1) {
            ad__sb_printf(&e, "%s\xe2\x88\x82 = ", info.nin > 1 ? ": " : "");
            sb_number(&e, ad_item(local[k]), w->o.precision);
        }
        if (e.oom) {
            ad_free(e.s);
            if (local && local != small) ad_free(local);
            return ad_set_error("%s: out of memory", w->fn);
        }
        if (e.s && *e.s) {
            fputs(" [label=\"", w->out);
            put_escaped(w->out, e.s);
            fputs("\"]", w->out);
        }
        ad_free(e.s);
        fputs(";\n", w->out);
    }
    if (local && local != small) ad_free(local);
    return 0;
}

static int setup(writer *w, const char *fn, FILE *out, const ad_dot_opts *opts)
{
    static const ad_dot_opts defaults = AD_DOT_DEFAULTS;
    memset(w, 0, sizeof *w);
    w->fn = fn;
    w->out = out;
    w->o = opts ? *opts : defaults;
    if (!out) return ad_set_error("%s: out is NULL", fn);
    if (w->o.max_values < 0)
        return ad_set_error("%s: max_values must be >= 0, got %d", fn, w->o.max_values);
    if (w->o.precision < 1 || w->o.precision > 17)
        return ad_set_error("%s: precision must be 1..17, got %d", fn, w->o.precision);
    if (!w->o.rankdir) w->o.rankdir = "TB";
    if (strcmp(w->o.rankdir, "TB") && strcmp(w->o.rankdir, "BT") && strcmp(w->o.rankdir, "LR") &&
        strcmp(w->o.rankdir, "RL"))
        return ad_set_error("%s: rankdir must be TB, BT, LR or RL, got '%.20s'", fn,
                            w->o.rankdir);
    if (!w->o.name) w->o.name = "autodiff";
    if (w->o.ngrads < 0 || (w->o.ngrads > 0 && (!w->o.grad_of || !w->o.grads)))
        return ad_set_error("%s: ngrads is %d but grad_of or grads is NULL", fn, w->o.ngrads);
    for (int i = 0; i < w->o.ngrads; i++) {
        const ad_tensor *t = w->o.grad_of[i], *g = w->o.grads[i];
        if (!t || !g) return ad_set_error("%s: grad_of[%d] or grads[%d] is NULL", fn, i, i);
        if (ad_numel(t) != ad_numel(g))
            return ad_set_error("%s: grads[%d] has %lld elements, its tensor %lld", fn, i,
                                (long long)ad_numel(g), (long long)ad_numel(t));
        if (ptrmap_put(&w->grads, t, i)) return ad_set_error("%s: out of memory", fn);
    }
    return 0;
}

static void header(writer *w)
{
    fputs("digraph \"", w->out);
    put_escaped(w->out, w->o.name);
    fprintf(w->out,
            "\" {\n  rankdir=%s;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
            "  edge [fontname=\"Helvetica\", fontsize=9];\n",
            w->o.rankdir);
}

static int finish(writer *w, int rc)
{
    if (rc == 0) {
        fputs("}\n", w->out);
        if (fflush(w->out) || ferror(w->out)) rc = ad_set_error("%s: write error", w->fn);
    }
    ptrmap_free(&w->leaves);
    ptrmap_free(&w->producers);
    ptrmap_free(&w->grads);
    ptrmap_free(&w->wanted);
    return rc;
}

int ad_graph_dot(FILE *out, ad_tensor *const *outputs, int n, const ad_dot_opts *opts)
{
    writer w;
    if (setup(&w, "ad_graph_dot", out, opts)) return finish(&w, -1);
    if (n < 0 || (n > 0 && !outputs))
        return finish(&w, ad_set_error("ad_graph_dot: bad outputs (n = %d, outputs %s)", n,
                                       outputs ? "given" : "NULL"));
    /* Which tape: the one every recorded output lives on. */
    size_t top = 0;
    for (int i = 0; i < n; i++) {
        if (!outputs[i]) return finish(&w, ad_set_error("ad_graph_dot: outputs[%d] is NULL", i));
        if (ptrmap_put(&w.wanted, outputs[i], i))
            return finish(&w, ad_set_error("ad_graph_dot: out of memory"));
        long k = ad_tensor_node_index(outputs[i]);
        if (k < 0) continue;
        if (w.tape && ad_tensor_tape(outputs[i]) != w.tape)
            return finish(&w, ad_set_error("ad_graph_dot: outputs[%d] is recorded on another tape "
                                           "than the outputs before it",
                                           i));
        w.tape = ad_tensor_tape(outputs[i]);
        if ((size_t)k + 1 > top) top = (size_t)k + 1;
    }
    /* Mark the history: newest first, each marked node marks the nodes
     * that produced its inputs.  Those are older, so one sweep suffices. */
    unsigned char *need = ad_calloc(top ? top : 1, 1);
    if (!need) return finish(&w, ad_set_error("ad_graph_dot: out of memory"));
    for (int i = 0; i < n; i++) {
        long k = ad_tensor_node_index(outputs[i]);
        if (k >= 0) need[k] = 1;
    }
    int rc = 0;
    for (size_t i = top; i-- > 0 && rc == 0;) {
        if (!need[i]) continue;
        ad_node_info info;
        rc = ad_tape_node_info(w.tape, i, &info);
        for (int k = 0; rc == 0 && k < info.nin; k++) {
            long p = producer(&w, info.inputs[k]);
            if (p >= 0 && (size_t)p < i) need[p] = 1;
        }
    }
    if (rc == 0) header(&w);
    for (size_t i = 0; i < top && rc == 0; i++)
        if (need[i]) rc = write_node(&w, i);
    for (int i = 0; i < n && rc == 0; i++) /* outputs that are leaves themselves */
        if (ad_tensor_node_index(outputs[i]) < 0) rc = write_leaf(&w, outputs[i]);
    ad_free(need);
    return finish(&w, rc);
}

int ad_graph_dot_tape(FILE *out, const ad_tape *tape, const ad_dot_opts *opts)
{
    writer w;
    if (setup(&w, "ad_graph_dot_tape", out, opts)) return finish(&w, -1);
    if (!tape) return finish(&w, ad_set_error("ad_graph_dot_tape: tape is NULL"));
    w.tape = tape;
    w.use_producers = true;
    size_t nn = ad_tape_num_nodes(tape);
    for (size_t i = 0; i < nn; i++) {
        ad_node_info info;
        if (ad_tape_node_info(tape, i, &info)) return finish(&w, -1);
        if (ptrmap_put(&w.producers, info.output, (long)i))
            return finish(&w, ad_set_error("ad_graph_dot_tape: out of memory"));
    }
    header(&w);
    int rc = 0;
    for (size_t i = 0; i < nn && rc == 0; i++) rc = write_node(&w, i);
    return finish(&w, rc);
}

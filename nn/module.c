/* nn/module.c - the module system: parameters, buffers and children with
 * hierarchical names, the forward dispatcher, train/eval, Sequential.
 * Printing and the summary table are in module_summary.c, the layers
 * themselves in layers.c.
 *
 * A module is a node of a tree.  It owns three named lists - parameters,
 * buffers, children - and a private state for its type.  Everything that
 * walks a model (listing parameters, switching modes, freeing) is generic:
 * a layer type only says how to compute its output.  That is the whole of
 * PyTorch's nn.Module, minus hooks and Python. */
#include <stdlib.h>
#include <string.h>

#include "module.h"
#include "module_impl.h"
#include "nn_private.h"

/* ---- named lists ------------------------------------------------------------ */

static int vec_push(named_vec *v, const char *name, void *item)
{
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 4;
        char **nn = ad_realloc(v->names, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        v->names = nn;
        void **ni = ad_realloc(v->items, (size_t)cap * sizeof *ni);
        if (!ni) return -1;
        v->items = ni;
        v->cap = cap;
    }
    size_t len = strlen(name);
    char *copy = ad_malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, name, len + 1);
    v->names[v->n] = copy;
    v->items[v->n] = item;
    v->n++;
    return 0;
}

static int vec_find(const named_vec *v, const char *name, size_t len)
{
    for (int i = 0; i < v->n; i++)
        if (strlen(v->names[i]) == len && memcmp(v->names[i], name, len) == 0) return i;
    return -1;
}

static void vec_free_names(named_vec *v)
{
    for (int i = 0; i < v->n; i++) ad_free(v->names[i]);
    ad_free(v->names);
    ad_free(v->items);
}

/* ---- creation and freeing --------------------------------------------------- */

nn_module *nn_module_new(const nn_module_type *type, void *state)
{
    if (!type || !type->forward || !type->name) {
        if (type && type->free_state && state) type->free_state(state);
        ad_set_error("nn_module_new: type is NULL or lacks a name or forward function");
        return NULL;
    }
    nn_module *m = ad_calloc(1, sizeof *m);
    if (!m) {
        if (type->free_state && state) type->free_state(state);
        ad_set_error("nn_module_new: out of memory");
        return NULL;
    }
    m->type = type;
    m->state = state;
    m->training = true;
    return m;
}

void nn_module_free(nn_module *m)
{
    if (!m) return;
    for (int i = 0; i < m->children.n; i++) nn_module_free(m->children.items[i]);
    for (int i = 0; i < m->params.n; i++) ad_tensor_free(m->params.items[i]);
    for (int i = 0; i < m->buffers.n; i++) ad_tensor_free(m->buffers.items[i]);
    vec_free_names(&m->children);
    vec_free_names(&m->params);
    vec_free_names(&m->buffers);
    if (m->type->free_state && m->state) m->type->free_state(m->state);
    ad_free(m);
}

/* Frees a module handed over to us, unless it belongs to a tree already
 * (freeing it would break that tree). */
static void free_orphan(nn_module *m)
{
    if (m && !m->parent) nn_module_free(m);
}

void *nn_module_state(const nn_module *m)
{
    if (!m) nn__null_arg("nn_module_state", "m");
    return m ? m->state : NULL;
}
int nn_module_set_rng(nn_module *m, ad_rng *rng)
{
    if (!m) return nn__null_arg("nn_module_set_rng", "m");
    m->rng = rng;
    return 0;
}
ad_rng *nn_module_rng(const nn_module *m)
{
    if (!m) nn__null_arg("nn_module_rng", "m");
    return m ? m->rng : NULL;
}
bool nn__module_has_buffers(const nn_module *m)
{
    if (m->buffers.n) return true;
    for (int i = 0; i < m->children.n; i++)
        if (nn__module_has_buffers(m->children.items[i])) return true;
    return false;
}
const nn_module_type *nn_module_type_of(const nn_module *m)
{
    if (!m) nn__null_arg("nn_module_type_of", "m");
    return m ? m->type : NULL;
}
const char *nn_module_type_name(const nn_module *m)
{
    if (!m) nn__null_arg("nn_module_type_name", "m");
    return m ? m->type->name : NULL;
}

/* The path of m from the root ("0.2"), "" for the root. */
void nn__module_path(const nn_module *m, const nn_module *root, char *buf, size_t size)
{
    const char *parts[64];
    int k = 0;
    for (const nn_module *p = m; p && p != root && p->parent && k < 64; p = p->parent)
        parts[k++] = p->name;
    size_t len = 0;
    buf[0] = '\0';
    while (k-- > 0 && len < size)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", parts[k], k ? "." : "");
}

/* The label of m's tensor `name` (its full name, "0.weight"), so that
 * anomaly reports and errors name it; -1 when out of memory. */
static int label_tensor(nn_module *m, const char *name, ad_tensor *t)
{
    char path[256], label[320];
    nn__module_path(m, NULL, path, sizeof path);
    snprintf(label, sizeof label, "%s%s%s", path, *path ? "." : "", name);
    return ad_set_label(t, label);
}

/* Labels every parameter and buffer of m's subtree with its full name;
 * -1 when out of memory (the labels already set stay). */
static int relabel(nn_module *m)
{
    named_vec *vs[2] = {&m->params, &m->buffers};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < vs[k]->n; i++)
            if (label_tensor(m, vs[k]->names[i], vs[k]->items[i])) return -1;
    for (int i = 0; i < m->children.n; i++)
        if (relabel(m->children.items[i])) return -1;
    return 0;
}

/* Takes back the last vec_push (its item is the caller's again). */
static void vec_pop(named_vec *v)
{
    ad_free(v->names[--v->n]);
}

static int check_name(const char *fn, const nn_module *m, const char *name)
{
    if (!name || !*name) return ad_set_error("%s: the name is NULL or empty", fn);
    if (strchr(name, '.'))
        return ad_set_error("%s: name '%s' contains '.', which separates the levels of "
                            "hierarchical names", fn, name);
    size_t len = strlen(name);
    if (vec_find(&m->params, name, len) >= 0 || vec_find(&m->buffers, name, len) >= 0 ||
        vec_find(&m->children, name, len) >= 0)
        return ad_set_error("%s: %s already has a parameter, buffer or child called '%s'", fn,
                            m->type->name, name);
    return 0;
}

static void module_desc(const nn_module *m, char *buf, size_t size);

/* The module of m's subtree whose parameter or buffer t is, or NULL. */
static const nn_module *holder(const nn_module *m, const ad_tensor *t)
{
    for (int i = 0; i < m->params.n; i++)
        if (m->params.items[i] == t) return m;
    for (int i = 0; i < m->buffers.n; i++)
        if (m->buffers.items[i] == t) return m;
    for (int i = 0; i < m->children.n; i++) {
        const nn_module *h = holder(m->children.items[i], t);
        if (h) return h;
    }
    return NULL;
}

static const nn_module *root_of(const nn_module *m)
{
    while (m->parent) m = m->parent;
    return m;
}

/* A tensor of child's subtree that m's tree already holds, or NULL. */
static const ad_tensor *shared_tensor(const nn_module *m, const nn_module *child)
{
    const nn_module *r = root_of(m);
    for (int i = 0; i < child->params.n; i++)
        if (holder(r, child->params.items[i])) return child->params.items[i];
    for (int i = 0; i < child->buffers.n; i++)
        if (holder(r, child->buffers.items[i])) return child->buffers.items[i];
    for (int i = 0; i < child->children.n; i++) {
        const ad_tensor *t = shared_tensor(m, child->children.items[i]);
        if (t) return t;
    }
    return NULL;
}

static int add_tensor(const char *fn, nn_module *m, const char *name, ad_tensor *t, bool param)
{
    if (!m || !t) {
        ad_tensor_free(t);
        return nn__null_arg(fn, m ? "t" : "m");
    }
    /* A tensor that m's tree owns already (a weight tied the way PyTorch
     * does it, or the same one added twice) is refused and left with its
     * owner: a module owns its tensors, so two would free it twice. */
    const nn_module *h = holder(root_of(m), t);
    if (h) {
        char hd[240];
        module_desc(h, hd, sizeof hd);
        return ad_set_error("%s: '%s' is a tensor the %s owns already (left with it): a tensor "
                            "belongs to one module; to tie weights, let one module's forward "
                            "read the other's parameter (nn_get_parameter)", fn,
                            name ? name : "(null)", hd);
    }
    int rc = check_name(fn, m, name);
    if (rc == 0 && ad_tensor_tape(t))
        rc = ad_set_error("%s: '%s' is on a tape; a module's tensors must be persistent "
                          "(created with tape NULL) to outlive the tape's reset", fn, name);
    else if (rc == 0 && !ad_is_leaf(t))
        rc = ad_set_error("%s: '%s' is not a leaf", fn, name);
    else if (rc == 0 && param && !nn__is_float(ad_tensor_dtype(t)))
        rc = ad_set_error("%s: parameter '%s' must be float32 or float64, got %s", fn, name,
                          ad_dtype_name(ad_tensor_dtype(t)));
    if (rc == 0) rc = ad_set_requires_grad(t, param);
    named_vec *v = param ? &m->params : &m->buffers;
    if (rc == 0 && vec_push(v, name, t) != 0) rc = ad_set_error("%s: out of memory", fn);
    else if (rc == 0 && label_tensor(m, name, t) != 0) {
        vec_pop(v);
        rc = ad_set_error("%s: out of memory", fn);
    }
    if (rc != 0) {
        /* A tensor on a tape belongs to the tape: leave it there. */
        if (!ad_tensor_tape(t)) ad_tensor_free(t);
        return -1;
    }
    return 0;
}

int nn_module_add_parameter(nn_module *m, const char *name, ad_tensor *t)
{
    return add_tensor("nn_module_add_parameter", m, name, t, true);
}

int nn_module_add_buffer(nn_module *m, const char *name, ad_tensor *t)
{
    return add_tensor("nn_module_add_buffer", m, name, t, false);
}

/* "Linear '0.1'" (its type and path in its tree) or "Sequential (a root)". */
static void module_desc(const nn_module *m, char *buf, size_t size)
{
    char path[200];
    nn__module_path(m, NULL, path, sizeof path);
    if (*path) snprintf(buf, size, "%s '%s'", m->type->name, path);
    else snprintf(buf, size, "%s (a root)", m->type->name);
}

int nn_module_add_child(nn_module *m, const char *name, nn_module *child)
{
    const char *fn = "nn_module_add_child";
    if (!m || !child) {
        if (!m) free_orphan(child);
        return nn__null_arg(fn, m ? "child" : "m");
    }
    /* A child that already belongs to a tree - the child of some module,
     * or m itself or one of its ancestors (a cycle) - is refused and left
     * alone: freeing it would free part of a tree that the caller still
     * holds (for a cycle, m itself). */
    char cd[240], md[240];
    module_desc(child, cd, sizeof cd);
    module_desc(m, md, sizeof md);
    if (child == m)
        return ad_set_error("%s: cannot add the %s as child '%s' of itself: that would make a "
                            "cycle (the module is left as it was)", fn, cd,
                            name ? name : "(null)");
    if (child->parent)
        return ad_set_error("%s: the %s already is child '%s' of a %s; a module can have one "
                            "parent only", fn, cd, child->name, child->parent->type->name);
    for (const nn_module *p = m->parent; p; p = p->parent)
        if (p == child)
            return ad_set_error("%s: the %s is an ancestor of the %s: adding it as child '%s' "
                                "of it would make a cycle (both are left as they were)", fn, cd,
                                md, name ? name : "(null)");
    const ad_tensor *s = shared_tensor(m, child);
    if (s)
        return ad_set_error("%s: the %s holds a tensor ('%s') that the %s's tree owns already "
                            "(both are left as they were): a tensor belongs to one module; to "
                            "tie weights, let one module's forward read the other's parameter",
                            fn, cd, ad_label(s) ? ad_label(s) : "unlabelled", md);
    if (check_name(fn, m, name) != 0) {
        nn_module_free(child);
        return -1;
    }
    if (vec_push(&m->children, name, child) != 0) {
        nn_module_free(child);
        return ad_set_error("%s: out of memory", fn);
    }
    child->parent = m;
    child->name = m->children.names[m->children.n - 1];
    if (relabel(child) != 0) { /* as when the push fails: the child goes */
        vec_pop(&m->children);
        child->parent = NULL;
        child->name = NULL;
        nn_module_free(child);
        return ad_set_error("%s: out of memory", fn);
    }
    return 0;
}

int nn_num_children(const nn_module *m)
{
    return m ? m->children.n : nn__null_arg("nn_num_children", "m");
}

/* Checks m and i for nn_child and nn_child_name. */
static bool child_ok(const char *fn, const nn_module *m, int i)
{
    if (!m) return nn__null_arg(fn, "m"), false;
    if (i < 0 || i >= m->children.n) {
        ad_set_error("%s: child %d out of range: the %s has %d children", fn, i, m->type->name,
                     m->children.n);
        return false;
    }
    return true;
}
nn_module *nn_child(const nn_module *m, int i)
{
    return child_ok("nn_child", m, i) ? m->children.items[i] : NULL;
}
const char *nn_child_name(const nn_module *m, int i)
{
    return child_ok("nn_child_name", m, i) ? m->children.names[i] : NULL;
}

/* ---- modes ------------------------------------------------------------------ */

int nn_train(nn_module *m, bool training)
{
    if (!m) return nn__null_arg("nn_train", "m");
    m->training = training;
    for (int i = 0; i < m->children.n; i++) nn_train(m->children.items[i], training);
    return 0;
}

int nn_eval(nn_module *m) { return m ? nn_train(m, false) : nn__null_arg("nn_eval", "m"); }
bool nn_is_training(const nn_module *m)
{
    if (!m) nn__null_arg("nn_is_training", "m");
    return m && m->training;
}

/* ---- listing parameters and buffers --------------------------------------------- */

enum { LIST_PARAMS = 1, LIST_BUFFERS = 2 };

typedef struct lister {
    nn_named_tensors *l;
    int cap;
    bool failed;
} lister;

static void list_add(lister *ls, const char *prefix, const char *name, ad_tensor *t)
{
    nn_named_tensors *l = ls->l;
    if (ls->failed) return;
    if (l->n == ls->cap) {
        int cap = ls->cap ? 2 * ls->cap : 8;
        const char **nn = ad_realloc((void *)l->names, (size_t)cap * sizeof *nn);
        if (nn) l->names = nn;
        ad_tensor **nt = nn ? ad_realloc(l->tensors, (size_t)cap * sizeof *nt) : NULL;
        if (nt) l->tensors = nt;
        if (!nn || !nt) {
            ls->failed = true;
            return;
        }
        ls->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 2;
    char *full = ad_malloc(len);
    if (!full) {
        ls->failed = true;
        return;
    }
    snprintf(full, len, "%s%s%s", prefix, *prefix ? "." : "", name);
    l->names[l->n] = full;
    l->tensors[l->n] = t;
    l->n++;
}

static void list_walk(lister *ls, const nn_module *m, const char *prefix, int what)
{
    if (what & LIST_PARAMS)
        for (int i = 0; i < m->params.n; i++)
            list_add(ls, prefix, m->params.names[i], m->params.items[i]);
    if (what & LIST_BUFFERS)
        for (int i = 0; i < m->buffers.n; i++)
            list_add(ls, prefix, m->buffers.names[i], m->buffers.items[i]);
    for (int i = 0; i < m->children.n; i++) {
        size_t len = strlen(prefix) + strlen(m->children.names[i]) + 2;
        char *p = ad_malloc(len);
        if (!p) {
            ls->failed = true;
            return;
        }
        snprintf(p, len, "%s%s%s", prefix, *prefix ? "." : "", m->children.names[i]);
        list_walk(ls, m->children.items[i], p, what);
        ad_free(p);
    }
}

static nn_named_tensors *list_module(const char *fn, const nn_module *m, int what)
{
    if (!m) {
        nn__null_arg(fn, "m");
        return NULL;
    }
    lister ls = {ad_calloc(1, sizeof(nn_named_tensors)), 0, false};
    if (!ls.l) {
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    list_walk(&ls, m, "", what);
    if (ls.failed) {
        nn_named_tensors_free(ls.l);
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    return ls.l;
}

nn_named_tensors *nn_parameters(const nn_module *m)
{
    return list_module("nn_parameters", m, LIST_PARAMS);
}
nn_named_tensors *nn_buffers(const nn_module *m)
{
    return list_module("nn_buffers", m, LIST_BUFFERS);
}
nn_named_tensors *nn_state_dict(const nn_module *m)
{
    return list_module("nn_state_dict", m, LIST_PARAMS | LIST_BUFFERS);
}

nn_named_tensors *nn_named_tensors_new(int n, const char *const *names, ad_tensor *const *tensors)
{
    const char *fn = "nn_named_tensors_new";
    if (n < 0) {
        ad_set_error("%s: n must be >= 0, got %d", fn, n);
        return NULL;
    }
    if (n > 0 && !tensors) {
        nn__null_arg(fn, "tensors");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!tensors[i] || (names && !names[i])) {
            ad_set_error("%s: %s %d is NULL", fn, tensors[i] ? "name" : "tensor", i);
            return NULL;
        }
    lister ls = {ad_calloc(1, sizeof(nn_named_tensors)), 0, false};
    if (!ls.l) {
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    char num[24];
    for (int i = 0; i < n; i++) {
        snprintf(num, sizeof num, "%d", i);
        list_add(&ls, "", names ? names[i] : num, tensors[i]);
    }
    if (ls.failed) {
        nn_named_tensors_free(ls.l);
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    return ls.l;
}

void nn_named_tensors_free(nn_named_tensors *l)
{
    if (!l) return;
    for (int i = 0; i < l->n; i++) ad_free((void *)l->names[i]);
    ad_free((void *)l->names);
    ad_free(l->tensors);
    ad_free(l);
}

/* Follows "a.b.c": the module at "a.b" and the last part "c". */
static const nn_module *lookup(const nn_module *m, const char *name, const char **last)
{
    const char *dot;
    while (m && (dot = strchr(name, '.'))) {
        int i = vec_find(&m->children, name, (size_t)(dot - name));
        m = i >= 0 ? m->children.items[i] : NULL;
        name = dot + 1;
    }
    *last = name;
    return m;
}

static ad_tensor *get_tensor(const char *fn, const nn_module *m, const char *name, bool param)
{
    if (!m || !name) {
        nn__null_arg(fn, m ? "name" : "m");
        return NULL;
    }
    const char *last;
    const nn_module *owner = lookup(m, name, &last);
    const named_vec *v = owner ? (param ? &owner->params : &owner->buffers) : NULL;
    int i = v ? vec_find(v, last, strlen(last)) : -1;
    if (i < 0) {
        ad_set_error("%s: the %s has no %s called '%s'", fn, m->type->name,
                     param ? "parameter" : "buffer", name);
        return NULL;
    }
    return v->items[i];
}

ad_tensor *nn_get_parameter(const nn_module *m, const char *name)
{
    return get_tensor("nn_get_parameter", m, name, true);
}
ad_tensor *nn_get_buffer(const nn_module *m, const char *name)
{
    return get_tensor("nn_get_buffer", m, name, false);
}

int64_t nn_num_parameters(const nn_module *m)
{
    if (!m) return nn__null_arg("nn_num_parameters", "m");
    int64_t n = 0;
    for (int i = 0; i < m->params.n; i++) n += ad_numel(m->params.items[i]);
    for (int i = 0; i < m->children.n; i++) n += nn_num_parameters(m->children.items[i]);
    return n;
}

static bool any_param_requires_grad(const nn_module *m)
{
    for (int i = 0; i < m->params.n; i++)
        if (ad_requires_grad(m->params.items[i])) return true;
    for (int i = 0; i < m->children.n; i++)
        if (any_param_requires_grad(m->children.items[i])) return true;
    return false;
}

/* ---- describing ------------------------------------------------------------------ */

void nn_module_describe(const nn_module *m, char *buf, size_t size)
{
    if (!buf || size == 0) return;
    if (!m) {
        snprintf(buf, size, "(null)");
        return;
    }
    char inner[160] = "";
    if (m->type->describe) m->type->describe(m, inner, sizeof inner);
    snprintf(buf, size, "%s(%s)", m->type->name, inner);
}

/* ---- forward ------------------------------------------------------------------------ */

static _Thread_local int fwd_depth;       /* nesting of nn_forward calls */
static _Thread_local bool fwd_annotated;  /* the failing layer was named */

int nn__forward_depth(void) { return fwd_depth; }

/* nn_forward with fwd in place of m's own forward (a fused one, called
 * by Sequential): the same scope, labels, error naming and summary row. */
static ad_tensor *forward_with(nn_module *m, ad_tensor *x, nn__forward_fn fwd)
{
    if (!m || !x) {
        nn__null_arg("nn_forward", m ? "x" : "m");
        return NULL;
    }
    bool top = fwd_depth == 0;
    ad_scope scope;
    if (top) {
        fwd_annotated = false;
        bool grads = !ad_tensor_tape(x) && !ad_tape_active() && any_param_requires_grad(m);
        if (ad_scope_begin(&scope, "nn_forward", 1, &x, grads) != 0) return NULL;
    }
    int row = nn__summary_open(m);
    /* Label the ops of this layer for anomaly reports ("... in 'Linear'"). */
    const char *prev_label = ad_set_scope_label(m->type->name);
    fwd_depth++;
    ad_tensor *y = fwd(m, x);
    fwd_depth--;
    ad_set_scope_label(prev_label);
    if (!y && !fwd_annotated) {
        /* Name the innermost failing layer once; its ancestors pass the
         * message on unchanged. */
        char path[256], desc[200];
        nn__module_path(m, NULL, path, sizeof path);
        nn_module_describe(m, desc, sizeof desc);
        const char *inner = ad_error() ? ad_error() : "forward returned NULL without an error";
        if (*path)
            ad_set_error("nn_forward: layer '%s' %s: %s", path, desc, inner);
        else
            ad_set_error("nn_forward: %s: %s", desc, inner);
        fwd_annotated = true;
    }
    if (y && row >= 0) nn__summary_close(row, y);
    if (top) y = ad_scope_end(&scope, y);
    return y;
}

/* ---- Sequential -------------------------------------------------------------------- */

ad_tensor *nn_forward(nn_module *m, ad_tensor *x)
{
    return forward_with(m, x, m ? m->type->forward : NULL);
}

static ad_tensor *sequential_forward(nn_module *m, ad_tensor *x)
{
    /* y = f_n(... f_2(f_1(x))): each child's output is the next one's
     * input.  A child followed by a ReLU that has a fused forward for the
     * pair (Conv2d) runs it instead, the same values in one op; not while
     * a summary is taken, which lists every layer's own call. */
    void **c = m->children.items;
    for (int i = 0; i < m->children.n && x; i++) {
        nn__forward_fn fused = NULL;
        if (i + 1 < m->children.n && !nn__summary_active() && nn__is_relu(c[i + 1]))
            fused = nn__fused_relu(c[i]);
        x = fused ? forward_with(c[i], x, fused) : nn_forward(c[i], x);
        i += fused != NULL;
    }
    return x;
}

static const nn_module_type SEQUENTIAL = {"Sequential", sequential_forward, NULL, NULL};

/* Frees modules[from..n) that nn_sequential was given and did not use,
 * once each: a module listed twice is freed at its first listing only (an
 * earlier listing was used, and then its tree owns it or its failure freed
 * it). */
static void free_given(nn_module *const *modules, int from, int n)
{
    for (int j = from; j < n; j++) {
        bool seen = false;
        for (int k = 0; k < j && !seen; k++) seen = modules[k] == modules[j];
        if (!seen) free_orphan(modules[j]);
    }
}

nn_module *nn_sequential(int n, nn_module *const *modules)
{
    const char *fn = "nn_sequential";
    int bad = n < 0 || (n > 0 && !modules) ? 0 : -1;
    for (int i = 0; bad < 0 && i < n; i++)
        if (!modules[i]) bad = i;
    nn_module *seq = bad < 0 ? nn_module_new(&SEQUENTIAL, NULL) : NULL;
    if (!seq) {
        free_given(modules, 0, n > 0 && modules ? n : 0);
        if (n < 0)
            ad_set_error("%s: n must be >= 0, got %d", fn, n);
        else if (bad >= 0 && !ad_error())
            ad_set_error("%s: module %d is NULL", fn, bad);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (nn_sequential_append(seq, modules[i]) != 0) {
            free_given(modules, i + 1, n);
            nn_module_free(seq);
            return NULL;
        }
    return seq;
}

int nn_sequential_append(nn_module *seq, nn_module *m)
{
    const char *fn = "nn_sequential_append";
    if (!seq || !m) {
        if (!seq) free_orphan(m);
        return nn__null_arg(fn, seq ? "m" : "seq");
    }
    if (seq->type != &SEQUENTIAL) {
        /* as nn_module_add_child: m itself or an ancestor of it stays */
        bool in_tree = false;
        for (const nn_module *p = seq; p && !in_tree; p = p->parent) in_tree = p == m;
        if (!in_tree) free_orphan(m);
        return ad_set_error("%s: seq is a %s, not a Sequential", fn, seq->type->name);
    }
    char name[24];
    snprintf(name, sizeof name, "%d", seq->children.n);
    return nn_module_add_child(seq, name, m);
}

/* nn/module_impl.h - the module's structure, shared by module.c (the tree,
 * its lists and nn_forward) and module_summary.c (printing the tree and
 * the summary table, which watches nn_forward).  Private to nn. */
#ifndef NN_MODULE_IMPL_H
#define NN_MODULE_IMPL_H

#include "module.h"

/* A growable list of named items. */
typedef struct named_vec {
    int n, cap;
    char **names;
    void **items;
} named_vec;

struct nn_module {
    const nn_module_type *type;
    void *state;
    bool training;
    nn_module *parent; /* NULL for a root */
    const char *name;  /* the name in the parent (points into its vec) */
    named_vec params, buffers, children;
    ad_rng *rng;       /* the random stream in state (nn_module_set_rng), or NULL */
};

/* m's dotted path below root (NULL: its own root), "" for root itself. */
void nn__module_path(const nn_module *m, const nn_module *root, char *buf, size_t size);
/* The nesting of this thread's nn_forward calls (0 outside any). */
int nn__forward_depth(void);

/* nn_summary's record of the forward it runs: nn_forward opens a row for
 * m before calling its forward (-1 when no summary is being taken, or the
 * row could not be stored) and closes it with the output y. */
int nn__summary_open(const nn_module *m);
void nn__summary_close(int row, const ad_tensor *y);
/* Whether this thread is taking a summary (Sequential then runs each
 * layer's own forward, never a fused pair, so that each gets its row). */
bool nn__summary_active(void);

#endif

/* nn/nn_private.h - helpers shared by the module, loss, optim and train
 * sources of the nn layer; never installed.  Built on the public API only. */
#ifndef NN_NN_PRIVATE_H
#define NN_NN_PRIVATE_H

#include <autodiff/alloc.h>
#include <autodiff/autodiff.h>
#include <stdbool.h>

/* Reports a NULL argument: keeps a pending error (the NULL most likely comes
 * from an inner call that failed, whose message says what went wrong),
 * otherwise sets "fn: argument 'name' is NULL".  Returns -1. */
int nn__null_arg(const char *fn, const char *name);

/* True for float32 and float64. */
static inline bool nn__is_float(ad_dtype dt) { return dt == AD_FLOAT32 || dt == AD_FLOAT64; }

/* ---- where composed results go ------------------------------------------------
 * A function built from several ops leaves intermediates wherever the ops
 * put them.  With a tape involved (an input's, or the active one) that is
 * the tape, freed at its reset.  Without one every intermediate would be a
 * persistent tensor that nobody frees, so the composition runs on a
 * temporary tape instead, and only the final result is copied out as a
 * persistent tensor for the caller.  Without a tape nothing can be
 * recorded, so that path refuses inputs that require grad while grad mode
 * is on, with the same advice the core gives. */
typedef struct nn__scope {
    ad_tape *tmp;  /* the temporary tape, or NULL when a tape is involved */
    ad_tape *prev; /* the active tape before */
    bool switched; /* the inputs' tape was activated for the scope */
} nn__scope;

/* Enters a scope for inputs[0..n) (NULL entries ignored): makes the
 * inputs' tape (or else the active one) active for the scope, since ops on
 * persistent tensors alone go to the active tape; with no tape at all,
 * starts a temporary one.  grads_inside says that tensors other than the
 * inputs (a module's parameters) require grad. */
int nn__scope_enter(nn__scope *s, const char *fn, ad_tensor *const *inputs, int n,
                    bool grads_inside);
/* Leaves it: returns result (on the tape), or with a temporary tape a
 * persistent copy of result (NULL if result is NULL or the copy fails),
 * and frees the temporary tape. */
ad_tensor *nn__scope_leave(nn__scope *s, ad_tensor *result);

/* Reads element i of contiguous data of a floating dtype as a double, and
 * writes one: the optimisers' and initialisers' loops work in double and
 * store in the parameter's own dtype. */
static inline double nn__ld(const void *p, ad_dtype dt, int64_t i)
{
    return dt == AD_FLOAT32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void nn__st(void *p, ad_dtype dt, int64_t i, double v)
{
    if (dt == AD_FLOAT32)
        ((float *)p)[i] = (float)v;
    else
        ((double *)p)[i] = v;
}

/* "[2,3]" of a shape given as ndim extents. */
void nn__shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

/* Sum of squares of all elements of t (any strides), in double; -1 on error. */
double nn__sum_sq(const ad_tensor *t);

#endif

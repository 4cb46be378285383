/* autodiff/leaf_grad.c - who owns a leaf's gradient, in one place.
 *
 * A leaf's grad (ad_tensor_grad) is always one of:
 *
 *  - NULL: no gradient yet, or one dropped (ad_zero_grad of a recorded
 *    gradient, a tape reset or replay that freed where it lived);
 *  - an owned buffer (owns_grad): made by ad_backward for this leaf, with
 *    the leaf's shape and dtype, on the leaf's tape (a persistent buffer
 *    for a persistent leaf).  Backward adds into it in place, ad_zero_grad
 *    zeroes it in place, and a persistent buffer is freed with its leaf;
 *  - a recorded gradient (AD_CREATE_GRAPH, !owns_grad): the result of ops,
 *    which may be shared and has a graph of its own, so it is never written
 *    in place but replaced by the next sum, and it lives on the tape that
 *    recorded it.  When a persistent leaf's gradient goes onto a tape, the
 *    tape keeps a fixup: when it resets (or rewinds to its replay mark) the
 *    leaf receives a persistent copy, into the persistent gradient buffer
 *    the recorded one replaced when there was one (so that a buffer given
 *    with ad_set_grad stays the leaf's), which is not written before then
 *    (the recorded sum read it).
 *
 * The backward pass, the tape's reset and the tensor's destruction, replay
 * and carried tensors change a grad only through the functions below
 * (declared in tape_impl.h). */
#include <string.h>

#include "tape_impl.h"


/* acc += g, elementwise, for a leaf's gradient buffer (contiguous, the
 * leaf's shape and dtype); with set, acc = 0 + g (an AD_SET_GRAD pass's
 * first gradient for the leaf: 0 + turns a -0 into the +0 that zeroing
 * and then adding gives, so the pass has the bits of ad_zero_grad +
 * backward).  This runs for every parameter on every training step, so
 * the common contiguous case is a plain loop the compiler vectorises;
 * other layouts of g go through the strided typed kernel. */
static void add_into(ad_tensor *acc, const ad_tensor *g, bool set)
{
    int64_t n = ad__numel(acc->ndim, acc->shape);
    size_t es = ad_dtype_size(acc->dtype);
    char *data = (char *)acc->storage->data + acc->offset * (int64_t)es;
    if (ad_is_contiguous(g) && ad__same_shape(acc, g) && g->dtype == acc->dtype) {
        if (acc->dtype == AD_FLOAT32) {
            float *restrict a = (float *)data;
            const float *restrict b = (const float *)g->storage->data + g->offset;
            if (set)
                for (int64_t i = 0; i < n; i++) a[i] = 0.0f + b[i];
            else
                for (int64_t i = 0; i < n; i++) a[i] += b[i];
            return;
        }
        if (acc->dtype == AD_FLOAT64) {
            double *restrict a = (double *)data;
            const double *restrict b = (const double *)g->storage->data + g->offset;
            if (set)
                for (int64_t i = 0; i < n; i++) a[i] = 0.0 + b[i];
            else
                for (int64_t i = 0; i < n; i++) a[i] += b[i];
            return;
        }
    }
    if (set) memset(data, 0, (size_t)n * es);
    ad__add_into(acc, acc, g);
}

/* The tape remembers a persistent leaf whose gradient now lives on it. */
static int add_fixup(ad_tape *t, ad_tensor *leaf, ad_tensor *old)
{
    grad_fixup *f = ad__arena_alloc(t, sizeof *f);
    if (!f) return ad__err("ad_backward", "out of memory");
    f->leaf = leaf;
    f->old_grad = old;
    f->next = t->fixups;
    t->fixups = f;
    return 0;
}

int ad__leaf_grad_add(ad_tape *t, ad_tensor *leaf, ad_tensor *g, bool create, bool priv)
{
    ad_tensor *old = leaf->grad;
    /* an AD_SET_GRAD pass's first gradient for this leaf: old counts as 0 */
    bool set = ad__leaf_grad_first(leaf);
    if (create) {
        /* A tensor of its own, as PyTorch clones: unless priv, g may be
         * the caller's grad_output, a view of it, or another leaf's
         * gradient too (an add's rule hands both operands the same g),
         * which a write into one leaf's gradient (clipping) or a free of the
         * caller's tensor would reach through the other.  g * 1 keeps
         * every bit and the graph. */
        ad_tensor *sum = old && !set ? ad_add(old, g) : priv ? g : ad_mul_scalar(g, 1.0);
        if (!sum) return -1;
        if (!leaf->tape && (!old || !old->tape) && add_fixup(t, leaf, old)) return -1;
        leaf->grad = sum;
        leaf->owns_grad = false;
        return 0;
    }
    /* Accumulate in place only into a buffer the library made for this
     * leaf; a gradient from AD_CREATE_GRAPH may be shared or have ops
     * recorded on it, so it is replaced instead. */
    if (old && leaf->owns_grad) {
        add_into(old, g, set);
        ad__bump(old);
        return 0;
    }
    ad_tensor *buf = ad__alloc("ad_backward", leaf->tape, leaf->dtype, leaf->ndim, leaf->shape);
    if (!buf) return -1;
    if (old && !set) ad__add_into(buf, old, g);
    else ad__copy_into(buf, g);
    leaf->grad = buf;
    leaf->owns_grad = true;
    return 0;
}

void ad__leaf_grad_release(ad_tape *t, grad_fixup *stop)
{
    for (grad_fixup *f = t->fixups; f != stop; f = f->next) {
        ad_tensor *leaf = f->leaf, *old = f->old_grad;
        bool live = leaf->magic == AD_TENSOR_MAGIC && !leaf->released;
        bool on_t = live && leaf->grad && leaf->grad->tape == t;
        /* a buffer a plain pass made after the recorded gradient, in its
         * place (ad__leaf_grad_add: it does not write old, which the
         * recorded sum read) */
        bool interim = live && old && leaf->grad && leaf->grad != old && !leaf->grad->tape &&
                       leaf->owns_grad && !leaf->grad->set_as_grad; /* (not one the caller gave) */
        if (live && old && (on_t || interim || !leaf->grad)) {
            /* The buffer the recorded gradient replaced (the library's, or
             * one given with ad_set_grad, a view of a flat bucket say)
             * takes its value back, or 0 after an ad_zero_grad, and stays
             * the leaf's: later passes add into it as before. */
            if (on_t || interim) {
                ad__copy_convert(old, leaf->grad);
                ad__bump(old);
            } else {
                ad_fill(old, 0.0);
            }
            if (interim) ad_tensor_free(leaf->grad);
            leaf->grad = old;
            leaf->owns_grad = true;
            continue;
        }
        if (on_t) {
            ad_tensor *keep = ad__copy(NULL, leaf->grad);
            leaf->grad = keep; /* NULL if out of memory: the gradient is lost, not corrupt */
            leaf->owns_grad = keep != NULL;
        }
        ad_tensor_free(old);
    }
    t->fixups = stop;
}

void ad__leaf_grad_forget(ad_tensor *t)
{
    t->grad = NULL;
    t->owns_grad = false;
}

void ad__leaf_grad_destroy(ad_tensor *t)
{
    if (t->grad && !t->grad->tape && t->owns_grad) ad_tensor_free(t->grad);
}

int ad_set_grad(ad_tensor *t, ad_tensor *grad)
{
    static const char *fn = "ad_set_grad";
    if (ad__check_arg(fn, "t", t, true) || (grad && ad__check_arg(fn, "grad", grad, true)))
        return -1;
    if (t->node || !t->requires_grad || t->tape)
        return ad__errc(AD_ERR_STATE, fn, "t must be a persistent leaf that requires grad");
    if (grad && grad->tape) return ad__errc(AD_ERR_STATE, fn, "grad must be persistent");
    if (grad && (grad->dtype != t->dtype || !ad__same_shape(grad, t)))
        return ad__errc(AD_ERR_SHAPE, fn, "grad %s does not match t %s", ad__desc(grad),
                        ad__desc(t));
    if (grad && !ad_is_contiguous(grad)) return ad__err(fn, "grad must be contiguous");
    if (grad && grad->storage == t->storage)
        return ad__err(fn, "grad must not share t's storage");
    if (t->grad == grad) return 0;
    /* a tensor that requires grad is some leaf's values (backward would add
     * into them), and one buffer for two leaves would sum both gradients */
    if (grad && grad->requires_grad)
        return ad__err(fn, "grad requires grad: it is a leaf's values, not a buffer for t's "
                           "gradient");
    if (grad && grad->set_as_grad)
        return ad__err(fn, "grad is already another leaf's gradient buffer (ad_set_grad): "
                           "give each leaf a view of its own");
    ad__leaf_grad_destroy(t);
    t->grad = grad;
    t->owns_grad = grad != NULL;
    if (grad) grad->set_as_grad = true;
    return 0;
}

int ad_zero_grad(ad_tensor *t)
{
    if (ad__check_arg("ad_zero_grad", "t", t, false)) return -1;
    if (!t->grad) return 0;
    /* A gradient buffer the library allocated is zeroed in place, so a
     * training loop does not reallocate it every step. */
    if (t->owns_grad) return ad_fill(t->grad, 0.0);
    t->grad = NULL; /* a recorded gradient lives on its tape, which frees it */
    return 0;
}

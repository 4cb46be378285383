/* nn/util.c - small helpers shared by the nn sources (nn_private.h). */
#include <stdio.h>
#include <stdlib.h>

#include "nn_private.h"

int nn__null_arg(const char *fn, const char *name)
{
    if (ad_error()) return -1;
    return ad_set_error("%s: argument '%s' is NULL", fn, name);
}

void nn__shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t len = 0;
    if (size == 0) return;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

double nn__sum_sq(const ad_tensor *t)
{
    int64_t n = ad_numel(t);
    double *v = ad_malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return ad_set_error("nn: out of memory for %lld elements", (long long)n);
    if (ad_to_array(t, v) != 0) {
        ad_free(v);
        return -1;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += v[i] * v[i];
    ad_free(v);
    return s;
}

int nn__scope_enter(nn__scope *s, const char *fn, ad_tensor *const *in, int n,
                    bool grads_inside)
{
    s->tmp = NULL;
    s->prev = ad_tape_active();
    s->switched = false;
    ad_tape *tape = NULL;
    for (int i = 0; i < n && !tape; i++)
        if (in[i]) tape = ad_tensor_tape(in[i]);
    if (!tape) tape = s->prev;
    if (tape) {
        /* Ops on persistent tensors alone (a parameter's transpose) go to
         * the active tape, so the inputs' tape must be the active one. */
        if (tape != s->prev) {
            ad_tape_activate(tape);
            s->switched = true;
        }
        return 0;
    }
    bool grads = grads_inside;
    for (int i = 0; i < n; i++)
        if (in[i] && ad_requires_grad(in[i])) grads = true;
    if (grads && ad_grad_enabled())
        return ad_set_error("%s: no tape to record on: the input is persistent and no tape is "
                            "active, but gradients are needed (parameters or inputs require "
                            "grad); activate a tape (ad_tape_activate) for training, or turn "
                            "grad mode off (ad_set_grad_enabled(false)) for inference",
                            fn);
    s->tmp = ad_tape_new();
    if (!s->tmp) return ad_set_error("%s: out of memory for a temporary tape", fn);
    ad_tape_activate(s->tmp);
    return 0;
}

ad_tensor *nn__scope_leave(nn__scope *s, ad_tensor *r)
{
    if (s->tmp) {
        ad_tensor *c = r ? ad_copy(NULL, r) : NULL;
        ad_tape_activate(s->prev);
        ad_tape_free(s->tmp);
        s->tmp = NULL;
        return c;
    }
    if (s->switched) ad_tape_activate(s->prev);
    return r;
}

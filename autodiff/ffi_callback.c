/* autodiff/ffi_callback.c - recorded functions as native C callbacks.
 *
 * A C library that wants `double f(const double *x, void *params)` cannot
 * be handed a tape and a builder: it wants a code address.  libffi makes
 * one at run time (a closure): a small trampoline that packs the call's
 * arguments and jumps to a generic handler with a user pointer, here the
 * ad_callback.  The handler then evaluates the builder on the callback's
 * own tape and, for the gradient, runs the backward pass.
 *
 * The tape is reset at the start of each call rather than freed, so its
 * arena, node array and scalar storage are reused: after the first call
 * (or, with AD_CALLBACK_REPLAY, after the recording) a call allocates
 * nothing. */
#include <stdlib.h>

#include <ffi.h> /* libffi */

#include "internal.h"

enum { CB_VALUE, CB_GRAD, CB_BOTH, CB_COUNT };

struct ad_callback {
    int n;
    unsigned flags;
    ad_func f;          /* tensor builder, or */
    ad_scalar_func sf;  /* scalar builder */
    ad_tape *tape;
    ad_tensor **leaves; /* AD_CALLBACK_VECTOR: leaves[0] is [n]; else n 0-d tensors */
    ad_scalar *xs;      /* scalar builder's variables */
    ad_tensor *y;       /* AD_CALLBACK_REPLAY: the recorded output */
    bool recorded;
    ffi_closure *closure[CB_COUNT];
    void *code[CB_COUNT]; /* the executable addresses handed out */
    ffi_cif cif[CB_COUNT];
    ffi_type *types[CB_COUNT][3];
};

static const char *CB = "ad_callback";

static int nleaves(const ad_callback *cb) { return cb->flags & AD_CALLBACK_VECTOR ? 1 : cb->n; }

/* The output must be one floating element on the callback's tape; one on
 * another tape or persistent would not be reset with it. */
static int check_output(const ad_callback *cb, const ad_tensor *y)
{
    if (!y) {
        if (!ad__has_error()) ad__err(CB, "the function returned NULL without an error");
        return -1;
    }
    if (ad__check_arg(CB, "the function's output", y, true)) return -1;
    if (ad__numel(y->ndim, y->shape) != 1) {
        return ad__err(CB, "the function must return one element, got %s", ad__shape_str(y));
    }
    if (y->tape != cb->tape)
        return ad__err(CB, "the function's output is not on the callback's tape (make "
                           "constants on the active tape or on ad_tensor_tape(inputs[0]))");
    return 0;
}

/* Makes the leaves from x on the (reset) tape and runs the builder. */
static ad_tensor *record(ad_callback *cb, const double *x, void *params, bool grad)
{
    ad_tape *t = cb->tape;
    int m = nleaves(cb);
    for (int i = 0; i < m; i++) {
        cb->leaves[i] = cb->flags & AD_CALLBACK_VECTOR
                            ? ad_from_array(t, AD_FLOAT64, 1, (int64_t[]){cb->n}, x)
                            : ad_scalar_tensor(t, AD_FLOAT64, x[i]);
        if (!cb->leaves[i] || (grad && ad_set_requires_grad(cb->leaves[i], true))) return NULL;
    }
    ad_tensor *y = cb->f(cb->leaves, m, params);
    return check_output(cb, y) ? NULL : y;
}

/* g = d y / d x from the leaves' grads (zero where y does not depend). */
static int read_grads(ad_callback *cb, ad_tensor *y, double *g, unsigned flags)
{
    for (int i = 0; i < cb->n; i++) g[i] = 0.0;
    if (!y->requires_grad) return 0; /* y does not depend on x at all */
    if (ad_backward(y, NULL, flags)) return -1;
    if (cb->flags & AD_CALLBACK_VECTOR) {
        ad_tensor *gr = ad_tensor_grad(cb->leaves[0]);
        return gr ? ad_to_array(gr, g) : 0;
    }
    for (int i = 0; i < cb->n; i++) {
        ad_tensor *gr = ad_tensor_grad(cb->leaves[i]);
        if (gr) g[i] = ad__ld(gr, gr->offset);
    }
    return 0;
}

static int run_tensor(ad_callback *cb, const double *x, void *params, double *g, double *v)
{
    ad_tensor *y;
    if (!(cb->flags & AD_CALLBACK_REPLAY)) {
        if (ad_tape_reset(cb->tape) || !(y = record(cb, x, params, g != NULL))) return -1;
        *v = ad__ld(y, y->offset);
        return g ? read_grads(cb, y, g, 0) : 0;
    }
    if (!cb->recorded) {
        /* Recorded with gradients whatever this call wants: the frozen
         * tape serves every later call. */
        ad_set_grad_enabled(true);
        if (ad_tape_reset(cb->tape) || ad_tape_set_replayable(cb->tape, true) ||
            !(y = record(cb, x, params, true)) || ad_tape_freeze(cb->tape))
            return -1;
        cb->y = y;
        cb->recorded = true;
    } else {
        int m = nleaves(cb);
        for (int i = 0; i < m; i++) {
            double *d = ad_data(cb->leaves[i]);
            if (!d) return -1;
            if (cb->flags & AD_CALLBACK_VECTOR) memcpy(d, x, (size_t)cb->n * sizeof *d);
            else d[0] = x[i];
        }
        if (ad_tape_replay(cb->tape, 0, NULL, NULL) < 0) return -1;
    }
    y = cb->y;
    *v = ad__ld(y, y->offset);
    return g ? read_grads(cb, y, g, AD_RETAIN_GRAPH) : 0;
}

static int run_scalar(ad_callback *cb, const double *x, void *params, double *g, double *v)
{
    if (ad_tape_reset(cb->tape)) return -1;
    for (int i = 0; i < cb->n; i++) cb->xs[i] = ad_scalar_var(cb->tape, x[i]);
    ad_scalar y = cb->sf(cb->xs, cb->n, params);
    if (!ad_scalar_ok(y)) {
        if (!ad__has_error()) ad__err(CB, "the function returned an invalid scalar");
        return -1;
    }
    if (y.tape != cb->tape) return ad__err(CB, "the function's result is on another tape");
    *v = ad_scalar_value(y);
    return g ? ad_scalar_gradient(y, cb->n, cb->xs, g) : 0;
}

/* One call from C: the caller's active tape and grad mode are put back. */
static double run(ad_callback *cb, const double *x, void *params, double *g)
{
    double v = NAN;
    ad_tape *prev = ad_tape_activate(cb->tape);
    bool mode = ad_set_grad_enabled(g != NULL);
    int rc = !x ? ad__err(CB, "x is NULL")
           : cb->sf ? run_scalar(cb, x, params, g, &v)
                    : run_tensor(cb, x, params, g, &v);
    ad_set_grad_enabled(mode);
    ad_tape_activate(prev);
    if (rc) {
        v = NAN;
        for (int i = 0; g && i < cb->n; i++) g[i] = NAN;
    }
    return v;
}

/* The closures' handlers: args[i] points at the i-th argument's value. */
static void h_value(ffi_cif *cif, void *ret, void **args, void *user)
{
    (void)cif;
    *(double *)ret = run(user, *(const double **)args[0], *(void **)args[1], NULL);
}
static void h_grad(ffi_cif *cif, void *ret, void **args, void *user)
{
    (void)cif;
    (void)ret;
    run(user, *(const double **)args[0], *(void **)args[1], *(double **)args[2]);
}
static void h_both(ffi_cif *cif, void *ret, void **args, void *user)
{
    (void)cif;
    *(double *)ret = run(user, *(const double **)args[0], *(void **)args[1], *(double **)args[2]);
}

void ad_callback_free(ad_callback *cb)
{
    if (!cb) return;
    for (int i = 0; i < CB_COUNT; i++)
        if (cb->closure[i]) ffi_closure_free(cb->closure[i]);
    ad_tape_free(cb->tape);
    ad__free(cb->leaves);
    ad__free(cb->xs);
    ad__free(cb);
}

/* libffi allocates a closure itself, in memory it can make executable,
 * which the library's allocator cannot provide.  The allocation is still
 * counted as one of the library's (a one-byte probe through ad__malloc just
 * before), so the fault injection of the tests reaches this path too. */
static ffi_closure *closure_alloc(void **code)
{
    void *probe = ad__malloc(1);
    if (!probe) return NULL;
    ad__free(probe);
    return ffi_closure_alloc(sizeof(ffi_closure), code);
}

static ad_callback *create(const char *fn, ad_func f, ad_scalar_func sf, int n, unsigned flags)
{
    if (!f && !sf) return ad__err(fn, "the function is NULL"), NULL;
    if (n < 1 || n > 1000000) return ad__err(fn, "n = %d out of range 1..1000000", n), NULL;
    unsigned known = sf ? 0u : (unsigned)(AD_CALLBACK_REPLAY | AD_CALLBACK_VECTOR);
    if (flags & ~known) return ad__err(fn, "unknown flags 0x%x", flags & ~known), NULL;
    ad_callback *cb = ad__calloc(1, sizeof *cb);
    if (!cb) return ad__err(fn, "out of memory"), NULL;
    cb->n = n;
    cb->flags = flags;
    cb->f = f;
    cb->sf = sf;
    cb->tape = ad_tape_new();
    if (sf) cb->xs = ad__calloc((size_t)n, sizeof *cb->xs);
    else cb->leaves = ad__calloc((size_t)nleaves(cb), sizeof *cb->leaves);
    if (!cb->tape || (sf ? !cb->xs : !cb->leaves)) {
        ad_callback_free(cb);
        return ad__err(fn, "out of memory"), NULL;
    }
    /* double f(const double *, void *); void df(const double *, void *,
     * double *); double fdf(const double *, void *, double *) */
    static void (*const handler[CB_COUNT])(ffi_cif *, void *, void **, void *) = {h_value, h_grad,
                                                                                  h_both};
    for (int i = 0; i < CB_COUNT; i++) {
        for (int a = 0; a < 3; a++) cb->types[i][a] = &ffi_type_pointer;
        ffi_type *rt = i == CB_GRAD ? &ffi_type_void : &ffi_type_double;
        cb->closure[i] = closure_alloc(&cb->code[i]);
        if (!cb->closure[i]) {
            ad_callback_free(cb);
            return ad__err(fn, "out of memory for a libffi closure"), NULL;
        }
        if (ffi_prep_cif(&cb->cif[i], FFI_DEFAULT_ABI, i == CB_VALUE ? 2 : 3, rt, cb->types[i]) !=
                FFI_OK ||
            ffi_prep_closure_loc(cb->closure[i], &cb->cif[i], handler[i], cb, cb->code[i]) !=
                FFI_OK) {
            ad_callback_free(cb);
            return ad__err(fn, "libffi could not prepare a closure"), NULL;
        }
    }
    return cb;
}

ad_callback *ad_callback_new(ad_func f, int n, unsigned flags)
{
    return create("ad_callback_new", f, NULL, n, flags);
}

ad_callback *ad_callback_new_scalar(ad_scalar_func f, int n, unsigned flags)
{
    return create("ad_callback_new_scalar", NULL, f, n, flags);
}

/* A closure's code address as a function pointer.  C has no conversion
 * from void * to a function pointer, so the bits are copied; libffi
 * guarantees they are a callable address on every platform it supports. */
_Static_assert(sizeof(ad_value_callback) == sizeof(void *), "code pointers are data-sized");

static void code_of(const char *fn, const ad_callback *cb, int i, void *fp, size_t size)
{
    if (!cb) ad__err(fn, "callback is NULL");
    else memcpy(fp, &cb->code[i], size);
}

ad_value_callback ad_callback_value(const ad_callback *cb)
{
    ad_value_callback f = NULL;
    code_of(__func__, cb, CB_VALUE, &f, sizeof f);
    return f;
}

ad_gradient_callback ad_callback_gradient(const ad_callback *cb)
{
    ad_gradient_callback f = NULL;
    code_of(__func__, cb, CB_GRAD, &f, sizeof f);
    return f;
}

ad_value_gradient_callback ad_callback_value_gradient(const ad_callback *cb)
{
    ad_value_gradient_callback f = NULL;
    code_of(__func__, cb, CB_BOTH, &f, sizeof f);
    return f;
}

int ad_callback_nargs(const ad_callback *cb) { return cb ? cb->n : -1; }

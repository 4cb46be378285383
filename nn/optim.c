/* nn/optim.c - SGD, Adam, AdamW and RMSprop with PyTorch's update rules,
 * and learning-rate schedules.  Clipping and the gradient report are in
 * clip.c.
 *
 * An optimiser walks its parameters, reads each one's gradient and state,
 * and writes the new values straight into the parameter's storage
 * (ad_data): parameters are persistent leaves, and updating them is not
 * part of any computation to differentiate, so nothing is recorded.  The
 * arithmetic is done in double and stored in the parameter's dtype. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_private.h"
#include "optim.h"

static const double PI = 3.14159265358979323846;

typedef enum optim_kind { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP } optim_kind;

/* Up to three state tensors per parameter, by kind:
 *   SGD      s[0] momentum_buffer
 *   Adam(W)  s[0] exp_avg, s[1] exp_avg_sq, s[2] max_exp_avg_sq (amsgrad)
 *   RMSprop  s[0] square_avg, s[1] momentum_buffer, s[2] grad_avg (centered)
 * A slot not needed by the options is NULL. */
enum { NSLOTS = 3 };

typedef struct param_slot {
    char *name;
    ad_tensor *p;              /* the parameter (not owned) */
    ad_tensor *s[NSLOTS];      /* state (owned) */
    ad_tensor *step;           /* int64 0-d: updates received (owned) */
} param_slot;

struct nn_optim {
    optim_kind kind;
    double lr;
    nn_sgd_options sgd;
    nn_adam_options adam;
    nn_rmsprop_options rms;
    int n;
    param_slot *ps;
    ad_tensor *step; /* int64 0-d: nn_optim_step calls */
};

static const char *const KIND_NAME[] = {"SGD", "Adam", "AdamW", "RMSprop"};
static const char *const SLOT_NAME[][NSLOTS] = {
    {"momentum_buffer", NULL, NULL},
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"},
    {"square_avg", "momentum_buffer", "grad_avg"},
};

void nn_optim_free(nn_optim *o)
{
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        ad_free(o->ps[i].name);
        for (int k = 0; k < NSLOTS; k++) ad_tensor_free(o->ps[i].s[k]);
        ad_tensor_free(o->ps[i].step);
    }
    ad_free(o->ps);
    ad_tensor_free(o->step);
    ad_free(o);
}

/* ---- hyper-parameter checks ------------------------------------------------------ */

static int check_lr(const char *fn, double lr)
{
    if (!(isfinite(lr) && lr >= 0))
        return ad_set_error("%s: learning rate must be finite and >= 0, got %g", fn, lr);
    return 0;
}

static int check_range(const char *fn, const char *what, double v, double lo, double hi,
                       bool hi_open)
{
    if (!(v >= lo && (hi_open ? v < hi : v <= hi)))
        return ad_set_error("%s: %s must be in [%g, %g%s, got %g", fn, what, lo, hi,
                            hi_open ? ")" : "]", v);
    return 0;
}

static int check_nonneg(const char *fn, const char *what, double v)
{
    if (!(isfinite(v) && v >= 0))
        return ad_set_error("%s: %s must be finite and >= 0, got %g", fn, what, v);
    return 0;
}

/* ---- construction -------------------------------------------------------------------- */

/* Copies the parameter list and creates the state the options need, all
 * zeros (step 0). */
static nn_optim *optim_new(const char *fn, optim_kind kind, const nn_named_tensors *params,
                           const bool need[NSLOTS])
{
    if (!params) {
        nn__null_arg(fn, "params");
        return NULL;
    }
    for (int i = 0; i < params->n; i++) {
        ad_tensor *p = params->tensors[i];
        const char *name = params->names[i];
        if (!p || !name) {
            ad_set_error("%s: parameter %d is NULL or has no name", fn, i);
            return NULL;
        }
        if (!nn__is_float(ad_tensor_dtype(p)) || !ad_is_leaf(p)) {
            ad_set_error("%s: parameter '%s' must be a floating leaf tensor (got a %s %s)", fn,
                         name, ad_dtype_name(ad_tensor_dtype(p)),
                         ad_is_leaf(p) ? "leaf" : "result of an op");
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (params->tensors[j] == p) {
                ad_set_error("%s: parameter '%s' is listed twice (also as '%s')", fn, name,
                             params->names[j]);
                return NULL;
            }
    }
    nn_optim *o = ad_calloc(1, sizeof *o);
    if (o) o->ps = ad_calloc((size_t)(params->n > 0 ? params->n : 1), sizeof *o->ps);
    if (!o || !o->ps) {
        ad_free(o);
        ad_set_error("%s: out of memory", fn);
        return NULL;
    }
    o->kind = kind;
    o->step = ad_zeros(NULL, AD_INT64, 0, NULL);
    bool ok = o->step != NULL;
    for (int i = 0; ok && i < params->n; i++) {
        param_slot *s = &o->ps[i];
        o->n = i + 1;
        ad_tensor *p = params->tensors[i];
        s->p = p;
        s->name = ad_malloc(strlen(params->names[i]) + 1);
        ok = s->name != NULL;
        if (ok) strcpy(s->name, params->names[i]);
        for (int k = 0; ok && k < NSLOTS; k++)
            if (need[k])
                ok = (s->s[k] = ad_zeros(NULL, ad_tensor_dtype(p), ad_ndim(p), ad_shape(p)));
        if (ok) ok = (s->step = ad_zeros(NULL, AD_INT64, 0, NULL)) != NULL;
    }
    if (!ok) {
        nn_optim_free(o);
        ad_set_error("%s: out of memory for the optimiser's state", fn);
        return NULL;
    }
    return o;
}

static nn_optim *sgd_new(const char *fn, const nn_named_tensors *params,
                         const nn_sgd_options *opts)
{
    nn_sgd_options o = opts ? *opts : (nn_sgd_options)NN_SGD_DEFAULTS;
    if (check_lr(fn, o.lr) || check_range(fn, "momentum", o.momentum, 0, 1, true) ||
        check_range(fn, "dampening", o.dampening, 0, 1, false) ||
        check_nonneg(fn, "weight_decay", o.weight_decay))
        return NULL;
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
        ad_set_error("%s: nesterov momentum needs momentum > 0 and dampening 0, got momentum "
                     "%g, dampening %g", fn, o.momentum, o.dampening);
        return NULL;
    }
    nn_optim *opt = optim_new(fn, OPT_SGD, params, (bool[NSLOTS]){o.momentum != 0, 0, 0});
    if (opt) {
        opt->sgd = o;
        opt->lr = o.lr;
    }
    return opt;
}

nn_optim *nn_sgd(const nn_named_tensors *params, const nn_sgd_options *opts)
{
    return sgd_new("nn_sgd", params, opts);
}

static nn_optim *adam_new(const char *fn, optim_kind kind, const nn_named_tensors *params,
                          const nn_adam_options *opts)
{
    nn_adam_options o = opts ? *opts
                             : (kind == OPT_ADAM ? (nn_adam_options)NN_ADAM_DEFAULTS
                                                 : (nn_adam_options)NN_ADAMW_DEFAULTS);
    if (check_lr(fn, o.lr) || check_range(fn, "beta1", o.beta1, 0, 1, true) ||
        check_range(fn, "beta2", o.beta2, 0, 1, true) || check_nonneg(fn, "eps", o.eps) ||
        check_nonneg(fn, "weight_decay", o.weight_decay))
        return NULL;
    nn_optim *opt = optim_new(fn, kind, params, (bool[NSLOTS]){true, true, o.amsgrad});
    if (opt) {
        opt->adam = o;
        opt->lr = o.lr;
    }
    return opt;
}

nn_optim *nn_adam(const nn_named_tensors *params, const nn_adam_options *opts)
{
    return adam_new("nn_adam", OPT_ADAM, params, opts);
}

nn_optim *nn_adamw(const nn_named_tensors *params, const nn_adam_options *opts)
{
    return adam_new("nn_adamw", OPT_ADAMW, params, opts);
}

static nn_optim *rmsprop_new(const char *fn, const nn_named_tensors *params,
                             const nn_rmsprop_options *opts)
{
    nn_rmsprop_options o = opts ? *opts : (nn_rmsprop_options)NN_RMSPROP_DEFAULTS;
    if (check_lr(fn, o.lr) || check_range(fn, "alpha", o.alpha, 0, 1, false) ||
        check_range(fn, "momentum", o.momentum, 0, 1, true) || check_nonneg(fn, "eps", o.eps) ||
        check_nonneg(fn, "weight_decay", o.weight_decay))
        return NULL;
    nn_optim *opt =
        optim_new(fn, OPT_RMSPROP, params, (bool[NSLOTS]){true, o.momentum > 0, o.centered});
    if (opt) {
        opt->rms = o;
        opt->lr = o.lr;
    }
    return opt;
}

nn_optim *nn_rmsprop(const nn_named_tensors *params, const nn_rmsprop_options *opts)
{
    return rmsprop_new("nn_rmsprop", params, opts);
}

/* ---- over a module's parameters -------------------------------------------------------
 * torch.optim.SGD(model.parameters(), ...): the list is made, handed to
 * the constructor (which copies it) and freed here. */
typedef enum { MOD_SGD, MOD_ADAM, MOD_ADAMW, MOD_RMSPROP } module_optim;

static nn_optim *for_module(const char *fn, module_optim kind, const nn_module *m,
                           const void *opts)
{
    if (!m) return nn__null_arg(fn, "m"), NULL;
    nn_named_tensors *ps = nn_parameters(m);
    if (!ps) return NULL;
    nn_optim *o = NULL;
    switch (kind) {
    case MOD_SGD: o = sgd_new(fn, ps, opts); break;
    case MOD_ADAM: o = adam_new(fn, OPT_ADAM, ps, opts); break;
    case MOD_ADAMW: o = adam_new(fn, OPT_ADAMW, ps, opts); break;
    case MOD_RMSPROP: o = rmsprop_new(fn, ps, opts); break;
    }
    nn_named_tensors_free(ps);
    return o;
}

nn_optim *nn_sgd_module(const nn_module *m, const nn_sgd_options *opts)
{
    return for_module("nn_sgd_module", MOD_SGD, m, opts);
}
nn_optim *nn_adam_module(const nn_module *m, const nn_adam_options *opts)
{
    return for_module("nn_adam_module", MOD_ADAM, m, opts);
}
nn_optim *nn_adamw_module(const nn_module *m, const nn_adam_options *opts)
{
    return for_module("nn_adamw_module", MOD_ADAMW, m, opts);
}
nn_optim *nn_rmsprop_module(const nn_module *m, const nn_rmsprop_options *opts)
{
    return for_module("nn_rmsprop_module", MOD_RMSPROP, m, opts);
}

/* ---- the update rules ------------------------------------------------------------------
 * Each works on one parameter: w its values, g its gradient, n elements,
 * t the number of this update (1 for the first).  A rule's loop is
 * written once, in optim_kernels.inc, and instantiated per floating dtype
 * T, so it runs over
 * the contiguous buffers with no per-element dtype dispatch and the
 * compiler can vectorise it.  SGD computes in T; Adam and RMSprop read
 * every element as a double, update it in double and store it back in T.
 * The options tested inside a loop are loop-invariant (the compiler moves
 * the tests out of it). */

typedef struct upd {
    void *w;
    const void *g;
    void *s[NSLOTS];
    ad_dtype dt;
    int64_t n, t;
} upd;

typedef struct adam_k {
    double wdecay;     /* AdamW: w *= wdecay */
    double wd;         /* Adam: g += wd w */
    double b1, b1c;    /* beta1, 1 - beta1 */
    double b2, b2c;    /* beta2, 1 - beta2 */
    double step_size, sqrt_bc2, eps;
    bool adamw, amsgrad;
} adam_k;

typedef struct rms_k {
    double lr, wd, alpha, alpha1, eps, mom;
    bool centered;
} rms_k;

/* The update loops, one per dtype and instruction set: optim_kernels.inc
 * read with T = float and double (SFX adds _f32 / _f64), each compiled
 * for the baseline and, on x86, again for AVX2 and AVX-512 (suffix _avx2,
 * _avx512), chosen at run time.  The baseline's SSE2 works two doubles
 * per instruction with a conversion per float at each end; the AVX-512
 * copy took the update of the 200k-parameter MLP from 13.8 % of its
 * training profile to 10.0 %.  It was then still bound by the five
 * float <-> double conversions per element of SGD with momentum, at about
 * twice the time of the bare memory traffic (bench/optim.c), which is why
 * SGD now computes in the parameter's dtype.  Each copy does the same
 * IEEE operations in the same order - no a * b + c is fused into one
 * rounding (clang would fuse within an expression unless told; gcc does
 * not under -std=c11) - so every copy gives the same bits. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define OPTIM_X86 1
#else
#define OPTIM_X86 0
#endif

#define T float
#define OATTR
#define SFX(name) name##_f32
#include "optim_kernels.inc"
#undef SFX
#undef T
#define T double
#define SFX(name) name##_f64
#include "optim_kernels.inc"
#undef SFX
#undef T
#undef OATTR
#if OPTIM_X86
#define OATTR __attribute__((target("avx2")))
#define T float
#define SFX(name) name##_f32_avx2
#include "optim_kernels.inc"
#undef SFX
#undef T
#define T double
#define SFX(name) name##_f64_avx2
#include "optim_kernels.inc"
#undef SFX
#undef T
#undef OATTR
#define OATTR __attribute__((target("avx512f")))
#define T float
#define SFX(name) name##_f32_avx512
#include "optim_kernels.inc"
#undef SFX
#undef T
#define T double
#define SFX(name) name##_f64_avx512
#include "optim_kernels.inc"
#undef SFX
#undef T
#undef OATTR
#endif

enum { ISA_ANY, ISA_AVX2, ISA_AVX512, ISA_AUTO = -1 };
static int forced_isa = ISA_AUTO;

static bool cpu_can(int isa)
{
#if OPTIM_X86
    if (isa == ISA_AVX2) return ad_kernel_isa() >= AD_ISA_AVX2;
    if (isa == ISA_AVX512) return ad_kernel_isa() >= AD_ISA_AVX512;
#endif
    return isa == ISA_ANY;
}

int nn__optim_testing_isa(int isa)
{
    if (isa != ISA_AUTO && !cpu_can(isa)) return -1;
    forced_isa = isa;
    return 0;
}

/* name##_<dtype>[_<isa>](args...) for the update's dtype and the CPU. */
#if OPTIM_X86
/* The copy to run: the forced one, else the widest the CPU has. */
static int pick_isa(void)
{
    if (forced_isa != ISA_AUTO) return forced_isa;
    return cpu_can(ISA_AVX512) ? ISA_AVX512 : cpu_can(ISA_AVX2) ? ISA_AVX2 : ISA_ANY;
}

#define DISPATCH(name, dt, ...)                                                          \
    do {                                                                                 \
        int isa_ = pick_isa();                                                           \
        if ((dt) == AD_FLOAT32) {                                                        \
            if (isa_ == ISA_AVX512) name##_f32_avx512(__VA_ARGS__);                      \
            else if (isa_ == ISA_AVX2) name##_f32_avx2(__VA_ARGS__);                     \
            else name##_f32(__VA_ARGS__);                                                \
        } else {                                                                         \
            if (isa_ == ISA_AVX512) name##_f64_avx512(__VA_ARGS__);                      \
            else if (isa_ == ISA_AVX2) name##_f64_avx2(__VA_ARGS__);                     \
            else name##_f64(__VA_ARGS__);                                                \
        }                                                                                \
    } while (0)
#else
#define DISPATCH(name, dt, ...)                                                          \
    do {                                                                                 \
        if ((dt) == AD_FLOAT32) name##_f32(__VA_ARGS__);                                 \
        else name##_f64(__VA_ARGS__);                                                    \
    } while (0)
#endif

static void sgd_update(const nn_optim *o, const upd *u)
{
    const nn_sgd_options *h = &o->sgd;
    /* L2 weight decay folded into the gradient: d/dw (lambda/2 w^2) = lambda w.
     * The momentum buffer is a running sum of past gradients, a velocity:
     * b = momentum b + (1 - dampening) g.  On the first step it starts as g
     * itself (PyTorch), not (1 - dampening) g.  Nesterov looks ahead: it
     * steps along g plus the next velocity.  Then the gradient-descent
     * step: w <- w - eta dE/dw. */
    double damp1 = 1 - h->dampening;
    DISPATCH(sgd, u->dt, u->n, u->w, u->g, u->s[0], o->lr, h->weight_decay, h->momentum,
             damp1, u->t == 1, h->nesterov);
}


static void adam_update(const nn_optim *o, const upd *u)
{
    const nn_adam_options *h = &o->adam;
    /* m and v start at zero, so after t steps they are (1 - beta^t) times
     * too small on average: dividing by these factors removes the bias. */
    double bc1 = 1 - pow(h->beta1, (double)u->t), bc2 = 1 - pow(h->beta2, (double)u->t);
    /* AdamW decouples the decay and shrinks w directly; Adam puts the L2
     * term in the gradient.  m and v are running means of g (direction)
     * and g^2 (scale); amsgrad never lets the scale shrink.  Then
     * w <- w - lr mhat / (sqrt(vhat) + eps), written as PyTorch does:
     * (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).  Each weight's step is
     * about lr in size whatever the scale of its gradient. */
    adam_k k = {
        .wdecay = 1 - o->lr * h->weight_decay,
        .wd = h->weight_decay,
        .b1 = h->beta1, .b1c = 1 - h->beta1,
        .b2 = h->beta2, .b2c = 1 - h->beta2,
        .step_size = o->lr / bc1, .sqrt_bc2 = sqrt(bc2), .eps = h->eps,
        .adamw = o->kind == OPT_ADAMW, .amsgrad = h->amsgrad,
    };
    DISPATCH(adam, u->dt, u->n, u->w, u->g, u->s[0], u->s[1], u->s[2], &k);
}


static void rmsprop_update(const nn_optim *o, const upd *u)
{
    const nn_rmsprop_options *h = &o->rms;
    /* s: running mean of g^2; dividing by its root gives each weight a
     * step of about the same size (Hinton's RMSprop).  Centered divides by
     * an estimate of the variance s - a^2 instead of the raw second moment.
     * With momentum, a velocity of the scaled steps (starting from zero). */
    rms_k k = {o->lr, h->weight_decay, h->alpha, 1 - h->alpha, h->eps, h->momentum,
               h->centered};
    DISPATCH(rmsprop, u->dt, u->n, u->w, u->g, u->s[0], u->s[1], u->s[2], &k);
}

/* ---- stepping -------------------------------------------------------------------------- */

/* nn_optim_step in three parts, so that nn's trainer can update each
 * thread's rows of the parameters on that thread (trainer_threads.c):
 * begin checks every parameter and counts the step, slice updates part
 * `part` of `parts` of every parameter, end tells the core the values
 * changed.  A part is rows [R part / parts, R (part + 1) / parts) of the
 * first dimension (R = 1 for a 0-d parameter), whole rows, the same split
 * as the trainer's reduction of the gradients.  Each element's update is
 * the same whichever part it is in. */
/* The gradient a step uses for slot s: none for a parameter that has not
 * been reached by a backward yet, or that is frozen (requires_grad off):
 * its buffer, zeroed in place by zero_grad, would let momentum and
 * weight decay move it (PyTorch's default zero_grad, set_to_none, drops
 * it, and its optimisers then skip the parameter). */
static ad_tensor *step_grad(const param_slot *s)
{
    return ad_requires_grad(s->p) ? ad_tensor_grad(s->p) : NULL;
}

int nn__optim_step_begin(nn_optim *o)
{
    const char *fn = "nn_optim_step";
    if (!o) return nn__null_arg(fn, "opt");
    /* Check every parameter before changing any, so an error leaves the
     * model and the state as they were. */
    for (int i = 0; i < o->n; i++) {
        param_slot *s = &o->ps[i];
        ad_tensor *g = step_grad(s);
        if (!g) continue;
        bool same = ad_tensor_dtype(g) == ad_tensor_dtype(s->p) && ad_ndim(g) == ad_ndim(s->p);
        for (int d = 0; same && d < ad_ndim(g); d++) same = ad_size(g, d) == ad_size(s->p, d);
        if (!same)
            return ad_set_error("%s: the gradient of '%s' has another shape or dtype than the "
                                "parameter", fn, s->name);
        if (!ad_is_contiguous(s->p) || !ad_is_contiguous(g))
            return ad_set_error("%s: '%s' or its gradient is not contiguous; optimisers update "
                                "contiguous parameters in place", fn, s->name);
    }
    int64_t *global = ad_data(o->step);
    global[0]++;
    for (int i = 0; i < o->n; i++) {
        param_slot *s = &o->ps[i];
        if (!step_grad(s)) continue; /* took no part in the loss, or frozen: no update */
        ((int64_t *)ad_data(s->step))[0]++;
    }
    return 0;
}

int nn__optim_count(const nn_optim *o) { return o->n; }

bool nn__optim_steps_param(const nn_optim *o, int k) { return step_grad(&o->ps[k]) != NULL; }

int nn__optim_find(const nn_optim *o, const ad_tensor *p)
{
    for (int k = 0; k < o->n; k++)
        if (o->ps[k].p == p) return k;
    return -1;
}

ad_tensor *nn__optim_param(const nn_optim *o, int k) { return o->ps[k].p; }

int64_t nn__optim_rows(const nn_optim *o, int k)
{
    return ad_ndim(o->ps[k].p) ? ad_size(o->ps[k].p, 0) : 1;
}

/* The update of elements [lo, hi) of parameter k, reading the gradient
 * from gsrc (hi - lo elements) or, for NULL, from the parameter's grad. */
static void step_elems(nn_optim *o, int k, int64_t lo, int64_t hi, const void *gsrc)
{
    param_slot *s = &o->ps[k];
    ad_tensor *g = step_grad(s);
    if (!g) return; /* took no part in the loss, or frozen: no update, no state change */
    if (lo >= hi) return;
    size_t es = ad_dtype_size(ad_tensor_dtype(s->p)), off = (size_t)lo * es;
    upd u = {(char *)ad_data(s->p) + off, gsrc ? gsrc : (const char *)ad_data(g) + off,
             {NULL, NULL, NULL}, ad_tensor_dtype(s->p), hi - lo,
             ((const int64_t *)ad_data(s->step))[0]};
    for (int j = 0; j < NSLOTS; j++) u.s[j] = s->s[j] ? (char *)ad_data(s->s[j]) + off : NULL;
    switch (o->kind) {
    case OPT_SGD: sgd_update(o, &u); break;
    case OPT_ADAM:
    case OPT_ADAMW: adam_update(o, &u); break;
    case OPT_RMSPROP: rmsprop_update(o, &u); break;
    }
}

void nn__optim_step_rows(nn_optim *o, int k, int64_t r0, int64_t r1)
{
    int64_t n = ad_numel(o->ps[k].p), rows = nn__optim_rows(o, k);
    int64_t inner = rows ? n / rows : 0;
    step_elems(o, k, r0 * inner, r1 * inner, NULL);
}

int nn_optim_step_parts(nn_optim *o, const nn_optim_part *parts, int n)
{
    const char *fn = "nn_optim_step_parts";
    if (!o) return nn__null_arg(fn, "opt");
    if (n < 0 || (n > 0 && !parts))
        return ad_set_error("%s: %s", fn, n < 0 ? "negative number of parts" : "parts is NULL");
    for (int i = 0; i < n; i++) {
        const nn_optim_part *q = &parts[i];
        int k = q->param ? nn__optim_find(o, q->param) : -1;
        if (k >= 0 && (q->begin < 0 || q->begin > q->end || q->end > ad_numel(q->param)))
            return ad_set_error("%s: part %d: elements [%lld, %lld) outside '%s' of %lld", fn, i,
                                (long long)q->begin, (long long)q->end, o->ps[k].name,
                                (long long)ad_numel(q->param));
    }
    if (nn__optim_step_begin(o)) return -1;
    for (int i = 0; i < n; i++) {
        int k = parts[i].param ? nn__optim_find(o, parts[i].param) : -1;
        if (k >= 0) step_elems(o, k, parts[i].begin, parts[i].end, parts[i].grad);
    }
    nn__optim_step_end(o);
    return 0;
}

void nn__optim_step_slice(nn_optim *o, int part, int parts)
{
    for (int k = 0; k < o->n; k++) {
        int64_t rows = nn__optim_rows(o, k);
        nn__optim_step_rows(o, k, rows * part / parts, rows * (part + 1) / parts);
    }
}

void nn__optim_step_end(nn_optim *o)
{
    /* Written through ad_data: tell the core, so a backward through ops
     * recorded before this step refuses to use the new values, of the
     * parameters and of their state (nn_optim_state's tensors: an op may
     * have read a moment estimate). */
    for (int i = 0; i < o->n; i++) {
        if (!step_grad(&o->ps[i])) continue;
        ad_mark_modified(o->ps[i].p);
        for (int k = 0; k < NSLOTS; k++)
            if (o->ps[i].s[k]) ad_mark_modified(o->ps[i].s[k]);
        if (o->ps[i].step) ad_mark_modified(o->ps[i].step);
    }
}

int nn_optim_step(nn_optim *o)
{
    if (nn__optim_step_begin(o)) return -1;
    nn__optim_step_slice(o, 0, 1);
    nn__optim_step_end(o);
    return 0;
}

int nn__optim_zero_unwritten(nn_optim *o)
{
    for (int i = 0; i < o->n; i++)
        if (!ad_grad_written(o->ps[i].p) && ad_zero_grad(o->ps[i].p)) return -1;
    return 0;
}

int nn_optim_zero_grad(nn_optim *o)
{
    if (!o) return nn__null_arg("nn_optim_zero_grad", "opt");
    for (int i = 0; i < o->n; i++)
        if (ad_zero_grad(o->ps[i].p) != 0) return -1;
    return 0;
}

double nn_optim_get_lr(const nn_optim *o)
{
    if (!o) nn__null_arg("nn_optim_get_lr", "opt");
    return o ? o->lr : NAN;
}

int nn_optim_set_lr(nn_optim *o, double lr)
{
    if (!o) return nn__null_arg("nn_optim_set_lr", "opt");
    if (check_lr("nn_optim_set_lr", lr) != 0) return -1;
    o->lr = lr;
    return 0;
}

const char *nn_optim_name(const nn_optim *o)
{
    if (!o) nn__null_arg("nn_optim_name", "opt");
    return o ? KIND_NAME[o->kind] : NULL;
}

int64_t nn_optim_steps(const nn_optim *o)
{
    if (!o) return nn__null_arg("nn_optim_steps", "opt");
    return ((int64_t *)ad_data(o->step))[0];
}

nn_named_tensors *nn_optim_state(const nn_optim *o)
{
    const char *fn = "nn_optim_state";
    if (!o) {
        nn__null_arg(fn, "opt");
        return NULL;
    }
    int cap = 1 + o->n * (NSLOTS + 1), n = 0;
    ad_tensor **t = ad_malloc((size_t)cap * sizeof *t);
    char **names = ad_malloc((size_t)cap * sizeof *names);
    bool ok = t && names;
    if (ok) {
        t[n] = o->step;
        names[n++] = (char *)"step";
    }
    /* Names are built into one buffer per entry; nn_named_tensors_new copies them. */
    for (int i = 0; ok && i < o->n; i++) {
        const param_slot *s = &o->ps[i];
        for (int k = 0; ok && k <= NSLOTS; k++) {
            ad_tensor *x = k < NSLOTS ? s->s[k] : s->step;
            if (!x) continue;
            const char *suffix = k < NSLOTS ? SLOT_NAME[o->kind][k] : "step";
            size_t len = strlen(s->name) + strlen(suffix) + 2;
            names[n] = ad_malloc(len);
            if (!(ok = names[n] != NULL)) break;
            snprintf(names[n], len, "%s.%s", s->name, suffix);
            t[n++] = x;
        }
    }
    nn_named_tensors *l = ok ? nn_named_tensors_new(n, (const char *const *)names, t) : NULL;
    if (!ok) ad_set_error("%s: out of memory", fn);
    for (int i = 1; names && i < n; i++) ad_free(names[i]);
    ad_free(names);
    ad_free(t);
    return l;
}

/* ---- learning-rate schedules ------------------------------------------------------------ */

static double sched_err(const char *fn, const char *what, double v)
{
    ad_set_error("%s: %s, got %g", fn, what, v);
    return NAN;
}

double nn_lr_step(double base, int64_t t, int64_t step_size, double gamma)
{
    if (step_size < 1) return sched_err("nn_lr_step", "step_size must be >= 1", (double)step_size);
    if (t < 0) return sched_err("nn_lr_step", "the epoch must be >= 0", (double)t);
    if (!(gamma >= 0)) return sched_err("nn_lr_step", "gamma must be >= 0", gamma);
    return base * pow(gamma, (double)(t / step_size));
}

double nn_lr_exponential(double base, int64_t t, double gamma)
{
    if (t < 0) return sched_err("nn_lr_exponential", "the epoch must be >= 0", (double)t);
    if (!(gamma >= 0)) return sched_err("nn_lr_exponential", "gamma must be >= 0", gamma);
    return base * pow(gamma, (double)t);
}

double nn_lr_cosine(double base, int64_t t, int64_t t_max, double eta_min)
{
    if (t_max < 1) return sched_err("nn_lr_cosine", "t_max must be >= 1", (double)t_max);
    if (t < 0) return sched_err("nn_lr_cosine", "the epoch must be >= 0", (double)t);
    /* Half a cosine from 1 down to 0, scaled into [eta_min, base]: a slow
     * start, a fast middle and a gentle landing. */
    return eta_min + (base - eta_min) * (1 + cos(PI * (double)t / (double)t_max)) / 2;
}

double nn_lr_warmup(double lr, int64_t t, int64_t warmup, double start_factor)
{
    if (warmup < 1) return sched_err("nn_lr_warmup", "warmup must be >= 1", (double)warmup);
    if (t < 0) return sched_err("nn_lr_warmup", "the step must be >= 0", (double)t);
    if (!(start_factor >= 0 && start_factor <= 1))
        return sched_err("nn_lr_warmup", "start_factor must be in [0, 1]", start_factor);
    /* Small steps while the statistics of Adam or BatchNorm are still
     * unreliable, rising linearly to the full rate. */
    double k = (double)(t < warmup ? t : warmup) / (double)warmup;
    return lr * (start_factor + (1 - start_factor) * k);
}

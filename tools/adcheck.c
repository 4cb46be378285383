/* tools/adcheck.c - gradient checking for C code that is not ours.
 *
 *   adcheck [options] LIBRARY FUNCTION PROTOTYPE
 *
 * Loads a shared library, calls FUNCTION and the derivatives it claims
 * (--grad or --partials) through libffi with the C prototype given, and
 * compares every component with central differences at the requested
 * points, as torch.autograd.gradcheck does: a component passes when
 * |claimed - numeric| <= atol + rtol |numeric|.  docs/ffi.md has the
 * manual page, with the exit statuses: 0 all agree, 1 some component
 * disagrees, 2 a usage, loading or prototype error, or nothing checked.
 *
 * The numeric derivative is the plain two-point central difference, the
 * reference everyone knows, with the step h = eps max(1, |x|): absolute
 * near 0 and relative beyond 1, where an absolute 1e-6 would vanish in
 * x's rounding (x + 1e-6 == x for |x| > 1e10).  For float functions eps
 * is 1e-2, since float's rounding error (1e-7 relative) divided by a 1e-6
 * step would swamp any derivative; the rounded points actually passed are
 * used in the denominator.  Only when that estimate disagrees does adcheck
 * try harder (judge() below): steps h/4, h/16, ... and their Richardson
 * extrapolations, which rescue points near a domain edge (log, sqrt at
 * 1e-6 from 0) where the first step crosses or feels the edge.
 *
 * The command line is parsed and validated by adcheck_opts.c without
 * loading anything, so that it can be fuzzed. */
#define _GNU_SOURCE /* dladdr1: whether a symbol is a function or data */

#include <dlfcn.h>
#include <ffi.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <link.h>
#endif

#include <autodiff/autodiff.h>

#include "adcheck_opts.h"

#define MAXP ADCHECK_MAX_ARGS

/* Slots after the gradient's output that it must not touch.  A prototype
 * with fewer arguments than the function has makes a gradient store more
 * components than adcheck expects; the scalar form has at most MAXP, so a
 * guard this long catches every such store instead of letting it overrun
 * the heap. */
#define GUARD 64

/* Smaller steps tried before a component is declared wrong: h/4 ... h/4^12. */
#define RETRIES 12

static const char *usage_text =
    "usage: adcheck [options] LIBRARY FUNCTION PROTOTYPE\n"
    "  PROTOTYPE     'double (double, double)' (1 to 16 arguments, all double or all\n"
    "                float) or 'double (const double *, int)' (vector form)\n"
    "  --grad NAME   gradient: void NAME(x1, ..., xm, T *out), or for the vector form\n"
    "                void NAME(const T *x, int n, T *out)\n"
    "  --partials N1,N2,...  one derivative function per argument, FUNCTION's prototype\n"
    "  --n N         vector length (vector form; implied by --at)\n"
    "  --at X1,X2,...        a point to check (repeatable)\n"
    "  --random K    K random points (default 5 when no --at), uniform in --range\n"
    "  --range LO,HI         default -1,1\n"
    "  --seed S      default 1\n"
    "  --eps E       relative step: h = E max(1, |x|) (default 1e-6; 1e-2 for float);\n"
    "                smaller steps are tried before a component fails\n"
    "  --atol A      default 1e-5\n"
    "  --rtol R      default 1e-3\n"
    "  --json        print the report as JSON\n"
    "exit status: 0 all agree, 1 some component disagrees, 2 usage or loading error,\n"
    "or nothing was checked\n";

typedef struct target {
    bool single, vector;
    int dim;
    void *f, *g, *p[MAXP];
    ffi_cif cif_f, cif_g;
    ffi_type *tf[MAXP + 1], *tg[MAXP + 1];
} target;

/* "adcheck: <message>" on stderr; returns 2, the exit status for usage,
 * loading and prototype errors. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "adcheck: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

/* ---- loading ------------------------------------------------------------------------ */

/* Calling a data symbol (a table that happens to be named like the
 * function) jumps into non-executable memory.  glibc's dladdr1 gives the
 * symbol's ELF type, so that mistake is an error message instead. */
static bool is_data(void *p)
{
#ifdef __GLIBC__
    Dl_info info;
    const ElfW(Sym) *es = NULL;
    if (dladdr1(p, &info, (void **)&es, RTLD_DL_SYMENT) && es) {
        int type = ELF64_ST_TYPE(es->st_info); /* the same bits in ELF32 */
        return type == STT_OBJECT || type == STT_TLS || type == STT_COMMON;
    }
#else
    (void)p;
#endif
    return false;
}

static void *sym(void *h, const char *lib, const char *name)
{
    dlerror();
    void *p = dlsym(h, name);
    if (!p) fail("%s has no function '%s'", lib, name);
    else if (is_data(p)) fail("'%s' in %s is data, not a function", name, lib), p = NULL;
    return p;
}

static int load(const adcheck_opts *o, target *t)
{
    const ad_ffi_sig *s = &o->sig;
    t->vector = o->vector, t->single = o->single, t->dim = o->dim;
    void *h = dlopen(o->lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        return fail("cannot load %s%s", e ? e : o->lib,
                    strchr(o->lib, '/') ? "" : " (give a path such as ./libfoo.so)");
    }
    /* the library stays loaded until exit: the functions are called to the end */
    if (!(t->f = sym(h, o->lib, o->func))) return 2;
    if (o->grad && !(t->g = sym(h, o->lib, o->grad))) return 2;
    for (int i = 0; i < o->npartials; i++)
        if (!(t->p[i] = sym(h, o->lib, o->partials[i]))) return 2;

    ffi_type *elem = t->single ? &ffi_type_float : &ffi_type_double;
    int ng;
    if (t->vector) {
        t->tf[0] = t->tg[0] = &ffi_type_pointer;
        t->tf[1] = t->tg[1] = s->args[1] == AD_C_INT    ? &ffi_type_sint
                              : s->args[1] == AD_C_LONG ? &ffi_type_slong
                              : sizeof(size_t) == 8     ? &ffi_type_uint64
                                                        : &ffi_type_uint32;
        t->tg[2] = &ffi_type_pointer;
        ng = 3;
    } else {
        for (int i = 0; i < s->nargs; i++) t->tf[i] = t->tg[i] = elem;
        t->tg[s->nargs] = &ffi_type_pointer;
        ng = s->nargs + 1;
    }
    if (ffi_prep_cif(&t->cif_f, FFI_DEFAULT_ABI, (unsigned)s->nargs, elem, t->tf) != FFI_OK ||
        ffi_prep_cif(&t->cif_g, FFI_DEFAULT_ABI, (unsigned)ng, &ffi_type_void, t->tg) != FFI_OK)
        return fail("libffi cannot call '%s'", o->proto);
    return 0;
}

/* ---- calling ------------------------------------------------------------------------ */

/* The point x (dim doubles) in the callee's types, and av[] pointing at it. */
typedef struct frame {
    union {
        double d;
        float f;
    } v[MAXP];
    void *buf;  /* vector form: the array */
    void *gbuf; /* the gradient's output: dim + GUARD elements */
    union {
        int i;
        long l;
        size_t z;
        void *p;
    } len, bp, gp;
    void *av[MAXP + 1];
} frame;

static double get(const target *t, const frame *fr, int i)
{
    if (t->vector) return t->single ? ((float *)fr->buf)[i] : ((double *)fr->buf)[i];
    return t->single ? fr->v[i].f : fr->v[i].d;
}
/* Stores x into component i as the callee's type and returns the value
 * actually stored (x rounded to float for float functions). */
static double set(const target *t, frame *fr, int i, double x)
{
    if (t->vector) {
        if (t->single) return ((float *)fr->buf)[i] = (float)x;
        return ((double *)fr->buf)[i] = x;
    }
    if (t->single) return fr->v[i].f = (float)x;
    return fr->v[i].d = x;
}

static double call_f(target *t, frame *fr, void *fn)
{
    union {
        double d;
        float f;
        ffi_arg a;
    } r = {0};
    ffi_call(&t->cif_f, FFI_FN(fn), &r, fr->av);
    return t->single ? r.f : r.d;
}

/* A signalling NaN with a payload no computation produces: a slot that
 * still holds these bits after the call was not stored to (arithmetic on
 * it, as in out[i] += ..., gives a quiet NaN, other bits). */
#define SENTINEL64 0x7ff4adc4ec4b0001ULL
#define SENTINEL32 0x7fa0adc4U

static void fill(const target *t, void *buf, long from, long to, bool sentinel)
{
    for (long k = from; k < to; k++) {
        if (t->single) {
            uint32_t b = sentinel ? SENTINEL32 : 0;
            memcpy((char *)buf + k * 4, &b, 4);
        } else {
            uint64_t b = sentinel ? SENTINEL64 : 0;
            memcpy((char *)buf + k * 8, &b, 8);
        }
    }
}

static bool untouched(const target *t, const void *buf, long k)
{
    if (t->single) {
        uint32_t b;
        memcpy(&b, (const char *)buf + k * 4, 4);
        return b == SENTINEL32;
    }
    uint64_t b;
    memcpy(&b, (const char *)buf + k * 8, 8);
    return b == SENTINEL64;
}

/* Stores beyond the components, into the guard: the count, or 0. */
static long overrun(const target *t, const frame *fr)
{
    for (long k = t->dim + GUARD - 1; k >= t->dim; k--)
        if (!untouched(t, fr->gbuf, k)) return k + 1;
    return 0;
}

/* Whether the vector form's array still holds the point and its guard is
 * untouched: the functions take it as const. */
static bool input_intact(const target *t, const frame *fr, const double *xs)
{
    for (int i = 0; i < t->dim; i++)
        if (get(t, fr, i) != xs[i]) return false;
    for (long k = t->dim; k < t->dim + GUARD; k++)
        if (!untouched(t, fr->buf, k)) return false;
    return true;
}

/* Calls the gradient twice: into sentinels, to learn which components it
 * stores, and into zeros, for the values (a gradient that accumulates,
 * out[i] += ..., is then still read right).  A component it does not
 * store is NaN in out[] and flagged in unstored[].  Returns the number of
 * values stored past the components (the prototype is short), or 0. */
static long call_g(target *t, frame *fr, double *out, bool *unstored)
{
    ffi_arg dummy;
    if (!t->vector) fr->av[t->dim] = &fr->gp; /* the out pointer after the arguments */
    fill(t, fr->gbuf, 0, t->dim + GUARD, true);
    ffi_call(&t->cif_g, FFI_FN(t->g), &dummy, fr->av);
    long over = overrun(t, fr);
    if (over) return over;
    for (int i = 0; i < t->dim; i++) unstored[i] = untouched(t, fr->gbuf, i);
    fill(t, fr->gbuf, 0, t->dim, false);
    ffi_call(&t->cif_g, FFI_FN(t->g), &dummy, fr->av);
    if ((over = overrun(t, fr))) return over;
    for (int i = 0; i < t->dim; i++)
        out[i] = unstored[i] ? NAN
                 : t->single ? ((float *)fr->gbuf)[i]
                             : ((double *)fr->gbuf)[i];
    return 0;
}

/* ---- judging one component ------------------------------------------------------------ */

/* The central difference with step h at component i, on the points
 * actually passed, and a bound on its rounding error, 16 ulps of f over
 * the step.  NaN when x +- h cannot be represented apart from each other
 * or at all. */
static double central(target *t, frame *fr, int i, double x0, double h, double *noise)
{
    double xp = set(t, fr, i, x0 + h), fp = call_f(t, fr, t->f);
    double xm = set(t, fr, i, x0 - h), fm = call_f(t, fr, t->f);
    set(t, fr, i, x0);
    *noise = INFINITY;
    if (!(xp > xm) || !isfinite(xp) || !isfinite(xm)) return NAN;
    double u = t->single ? 0x1p-24 : 0x1p-53;
    *noise = 16 * u * (fabs(fp) + fabs(fm)) / (xp - xm);
    return (fp - fm) / (xp - xm);
}

/* The comparison.  Non-finite values agree only as the same infinity:
 * |c - inf| <= atol + rtol |inf| would hold for every claim. */
static bool agrees(const adcheck_opts *o, double c, double num)
{
    if (isnan(c) || isnan(num)) return false;
    if (isinf(c) || isinf(num)) return c == num;
    return fabs(c - num) <= o->atol + o->rtol * fabs(num);
}

typedef struct verdict {
    double num, step; /* the numeric derivative reported and its step */
    double ae, re, excess;
    bool ok, refined, extrapolated, finite;
    const char *why; /* a failure's reason beyond the numbers, or NULL */
} verdict;

static void take(verdict *v, double d, double h, bool ex)
{
    v->num = d, v->step = h, v->refined = true, v->extrapolated = ex;
}

static verdict judge(const adcheck_opts *o, target *t, frame *fr, int i, double c, bool unstored)
{
    verdict v = {0};
    double x0 = get(t, fr, i), noise;
    double h0 = o->eps * fmax(1, fabs(x0));
    v.num = central(t, fr, i, x0, h0, &noise), v.step = h0;
    v.ok = !unstored && agrees(o, c, v.num);
    /* Before declaring failure: smaller steps, as long as their rounding
     * error stays below half the tolerance (below that an estimate is noise
     * and could agree with anything), and the Richardson extrapolation of
     * each pair, (16 D(h/4) - D(h)) / 15, whose error is O(h^4).  A wrong
     * claim passes this way only if some estimate lands within the
     * tolerance of it, which converging estimates do only for a claim
     * within about 1.5 tolerances of the truth.
     * When none agrees, the report shows the estimate with the smallest
     * error estimate (its distance from the previous one of its kind plus
     * its rounding bound, as in Ridders' method): the finest step is not
     * the most accurate, its rounding error grows as the step shrinks. */
    double prev = v.num, prev_r = NAN, best = INFINITY;
    bool moved = isfinite(v.num) && v.num != 0;
    for (int k = 1; k <= RETRIES && !v.ok && !unstored && !isnan(c); k++) {
        double h = ldexp(h0, -2 * k), d = central(t, fr, i, x0, h, &noise);
        if (noise == INFINITY) break; /* x +- h no longer differ */
        /* f moved at a wider step and not at this one: the step is below
         * f's own resolution (a double function that computes in float,
         * a cancellation), which the rounding bound, 16 ulps of the
         * prototype's type, does not see; its 0 agreed with a claimed 0 */
        if (moved && d == 0) break;
        moved = moved || (isfinite(d) && d != 0);
        double r = isfinite(prev) && isfinite(d) ? (16 * d - prev) / 15 : NAN;
        if (isfinite(d)) {
            if (noise > (o->atol + o->rtol * fabs(d)) / 2) break;
            if ((v.ok = agrees(o, c, d))) take(&v, d, h, false);
            else if ((v.ok = agrees(o, c, r))) take(&v, r, h, true);
            if (v.ok) break;
            double err_d = isfinite(prev) ? fabs(d - prev) + noise : INFINITY;
            double err_r = isfinite(r) ? fabs(r - (isfinite(prev_r) ? prev_r : d)) + noise
                                       : INFINITY;
            if (!isfinite(v.num) || err_d < best) take(&v, d, h, false), best = err_d;
            if (err_r < best) take(&v, r, h, true), best = err_r;
        }
        prev = d, prev_r = r;
    }
    double num = v.num, tol = o->atol + o->rtol * fabs(num);
    v.ae = fabs(c - num);
    v.re = num != 0 ? v.ae / fabs(num) : (v.ae == 0 ? 0 : INFINITY);
    v.finite = isfinite(c) && isfinite(num);
    v.excess = v.ok ? 0 : isfinite(v.ae) && isfinite(tol) ? v.ae - tol : INFINITY;
    if (v.ok) v.why = NULL;
    else if (unstored) v.why = "the gradient did not store this component";
    else if (isnan(c)) v.why = "the claimed derivative is NaN";
    else if (isnan(num))
        v.why = "the numeric derivative is NaN: f is not finite or not defined next to the point";
    else if (isinf(c) && isinf(num)) v.why = "claimed and numeric are opposite infinities";
    else if (isinf(c)) v.why = "the claimed derivative is infinite, the numeric one finite";
    else if (isinf(num)) v.why = "the numeric derivative is infinite, the claimed one finite";
    return v;
}

/* ---- the report ---------------------------------------------------------------------- */

/* NaN without its sign: x86 computes -nan, which printf spells "-nan". */
static double unsigned_nan(double v) { return isnan(v) ? NAN : v; }

static void json_num(double v)
{
    if (isfinite(v)) printf("%.17g", v);
    else printf("null");
}

static void json_str(const char *s)
{
    if (!s) {
        printf("null");
        return;
    }
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void component_name(const adcheck_opts *o, const target *t, int i, char *buf, size_t size)
{
    if (t->vector) snprintf(buf, size, "df/dx[%d]", i);
    else if (o->npartials) snprintf(buf, size, "df/dx%d (%.100s)", i, o->partials[i]);
    else snprintf(buf, size, "df/dx%d", i);
}

/* The worst failure, for the summary. */
typedef struct worst {
    long point;
    int index;
    double claimed;
    verdict v;
    double x[8];
    int nx;
} worst;

/* What the checking process is doing, in memory shared with its parent,
 * which names it when the process dies (run_isolated). */
static char *doing;
#define DOING_SIZE 256
/* After it in the same shared memory: whether check() returned (not an
 * exit() of the library's from inside a call), and whether the JSON
 * object was opened (so that the parent closes it if the child cannot). */
typedef struct isolated {
    int returned, json_open;
} isolated;
static volatile isolated *child;

__attribute__((format(printf, 1, 2))) static void now(const char *fmt, ...)
{
    if (!doing) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(doing, DOING_SIZE, fmt, ap);
    va_end(ap);
}

/* One run of check(): the frame the functions are called with, the claimed
 * gradient at the current point and the tallies for the summary. */
typedef struct checking {
    frame fr;
    double *claimed;
    double *xs; /* the point as passed */
    bool *unstored;
    long failures, compared, nonzero, refined;
    long points; /* points checked to the end */
    bool cut;    /* the gradient overran its output: the report stops */
    worst w;
    char message[400];
} checking;

static void close_checking(checking *ck)
{
    free(ck->fr.buf);
    free(ck->fr.gbuf);
    free(ck->claimed);
    free(ck->unstored);
    free(ck->xs);
}

/* Allocates the buffers and points the frame's av[] at the arguments. */
static int open_checking(const adcheck_opts *o, const target *t, checking *ck)
{
    memset(ck, 0, sizeof *ck);
    frame *fr = &ck->fr;
    size_t es = t->single ? sizeof(float) : sizeof(double);
    /* the vector form's array has a guard too: a gradient with a wrong
     * prototype may take it for its output */
    fr->buf = calloc((size_t)t->dim + GUARD, es);
    fr->gbuf = calloc((size_t)t->dim + GUARD, es);
    ck->claimed = calloc((size_t)t->dim, sizeof(double));
    ck->xs = calloc((size_t)t->dim, sizeof(double));
    ck->unstored = calloc((size_t)t->dim, sizeof(bool));
    if (!fr->buf || !fr->gbuf || !ck->claimed || !ck->unstored || !ck->xs) {
        close_checking(ck);
        return fail("out of memory");
    }
    fr->gp.p = fr->gbuf;
    fill(t, fr->buf, t->dim, t->dim + GUARD, true);
    if (t->vector) {
        fr->bp.p = fr->buf;
        if (o->sig.args[1] == AD_C_INT) fr->len.i = t->dim;
        else if (o->sig.args[1] == AD_C_LONG) fr->len.l = t->dim;
        else fr->len.z = (size_t)t->dim;
        fr->av[0] = &fr->bp, fr->av[1] = &fr->len, fr->av[2] = &fr->gp;
    } else {
        for (int i = 0; i < t->dim; i++) fr->av[i] = &fr->v[i];
    }
    ck->w = (worst){.point = -1, .v = {.excess = -1}};
    return 0;
}

static void print_header(const adcheck_opts *o)
{
    char proto[200];
    ad_ffi_format(&o->sig, proto, sizeof proto);
    if (o->json) {
        printf("{\"library\": ");
        json_str(o->lib);
        printf(", \"function\": ");
        json_str(o->func);
        printf(", \"prototype\": ");
        json_str(proto);
        printf(", \"eps\": %.17g, \"atol\": %.17g, \"rtol\": %.17g, \"points\": [", o->eps,
               o->atol, o->rtol);
        if (child) child->json_open = 1;
    } else {
        printf("adcheck: %s %s: %s, %s; eps %g (step eps max(1, |x|)), atol %g, rtol %g\n",
               o->lib, o->func, proto, o->grad ? "--grad" : "--partials", o->eps, o->atol,
               o->rtol);
    }
    fflush(stdout);
}

/* The claimed derivatives at point p (counted from 0), into ck->claimed
 * and ck->unstored.  False, with ck->message, when a call wrote where it
 * must not: the check stops there. */
static bool claim(const adcheck_opts *o, target *t, checking *ck, long p)
{
    if (t->g) {
        now("calling %s at point %ld", o->grad, p + 1);
        long over = call_g(t, &ck->fr, ck->claimed, ck->unstored);
        if (over) {
            /* stop: the next call might store past the guard too */
            snprintf(ck->message, sizeof ck->message,
                     t->vector ? "%s stored at least %ld values for a length of %d: it "
                                 "writes past its output"
                               : "%s stored at least %ld values but PROTOTYPE has %d "
                                 "arguments: the prototype does not match the functions",
                     o->grad, over, t->dim);
            return false;
        }
    } else {
        for (int i = 0; i < t->dim; i++) {
            now("calling %s at point %ld", o->partials[i], p + 1);
            ck->claimed[i] = call_f(t, &ck->fr, t->p[i]), ck->unstored[i] = false;
        }
    }
    if (t->vector && !input_intact(t, &ck->fr, ck->xs)) {
        snprintf(ck->message, sizeof ck->message,
                 "the array x changed while %s and its derivatives were called at point "
                 "%ld: a function writes into its input (is PROTOTYPE right?)",
                 o->func, p + 1);
        return false;
    }
    return true;
}

/* The point's line (text) or the opening of its object (JSON). */
static void print_point(const adcheck_opts *o, const target *t, const frame *fr, long p,
                        double value)
{
    if (o->json) {
        printf("%s\n  {\"x\": [", p ? "," : "");
        for (int i = 0; i < t->dim; i++) {
            if (i) fputs(", ", stdout);
            json_num(get(t, fr, i));
        }
        printf("], \"value\": ");
        json_num(value);
        printf(", \"components\": [");
    } else {
        printf("\npoint %ld: f(", p + 1);
        for (int i = 0; i < t->dim && i < 8; i++)
            printf("%s%.9g", i ? ", " : "", get(t, fr, i));
        printf("%s) = %.17g\n", t->dim > 8 ? ", ..." : "", value);
        printf("  %-20s %24s %24s %10s %10s\n", "component", "claimed", "numeric", "abs err",
               "rel err");
    }
}

static void print_component(const adcheck_opts *o, const char *name, int i, double c,
                            const verdict *v)
{
    if (o->json) {
        printf("%s\n    {\"component\": ", i ? "," : "");
        json_str(name);
        printf(", \"index\": %d, \"claimed\": ", i);
        json_num(c);
        printf(", \"numeric\": ");
        json_num(v->num);
        printf(", \"step\": ");
        json_num(v->step);
        printf(", \"extrapolated\": %s, \"abs_err\": ", v->extrapolated ? "true" : "false");
        json_num(v->ae);
        printf(", \"rel_err\": ");
        json_num(v->re);
        printf(", \"ok\": %s, \"reason\": ", v->ok ? "true" : "false");
        json_str(v->why);
        putchar('}');
    } else {
        printf("  %-20s %24.15g %24.15g %10.2e %10.2e", name, unsigned_nan(c),
               unsigned_nan(v->num), unsigned_nan(v->ae), unsigned_nan(v->re));
        if (!v->ok) printf("  <-- FAIL%s%s\n", v->why ? ": " : "", v->why ? v->why : "");
        else if (v->refined)
            printf("  (step %.2g%s)\n", v->step, v->extrapolated ? ", extrapolated" : "");
        else putchar('\n');
    }
}

/* Judges component i at point p against the numeric derivative, counts
 * it in the tallies, keeps it if it is the worst failure so far, and
 * prints its line. */
static void check_component(const adcheck_opts *o, target *t, checking *ck, long p, int i)
{
    double c = ck->claimed[i];
    char name[160];
    now("calling %s next to point %ld (component %d)", o->func, p + 1, i);
    verdict v = judge(o, t, &ck->fr, i, c, ck->unstored[i]);
    ck->compared += v.finite;
    ck->nonzero += v.finite && (c != 0 || v.num != 0);
    ck->refined += v.ok && v.refined;
    if (!v.ok) {
        ck->failures++;
        if (v.excess > ck->w.v.excess) {
            worst *w = &ck->w;
            *w = (worst){.point = p, .index = i, .claimed = c, .v = v};
            for (; w->nx < t->dim && w->nx < 8; w->nx++) w->x[w->nx] = get(t, &ck->fr, w->nx);
        }
    }
    component_name(o, t, i, name, sizeof name);
    print_component(o, name, i, c, &v);
}

/* Checks point p (counted from 0); false when the check stops there. */
static bool check_point(const adcheck_opts *o, target *t, checking *ck, ad_rng *rng, long p)
{
    for (int i = 0; i < t->dim; i++)
        ck->xs[i] = set(t, &ck->fr, i, p < o->nat ? o->at[p * t->dim + i]
                                                  : o->lo + (o->hi - o->lo) * ad_rng_uniform(rng));
    now("calling %s at point %ld", o->func, p + 1);
    double value = call_f(t, &ck->fr, t->f);
    if (!claim(o, t, ck, p)) return false;
    print_point(o, t, &ck->fr, p, value);
    for (int i = 0; i < t->dim; i++) check_component(o, t, ck, p, i);
    if (o->json) printf("]}");
    fflush(stdout); /* what was checked survives a crash at the next point */
    return true;
}

/* The exit status, with ck->message when nothing was checked. */
static int final_status(checking *ck)
{
    if (ck->cut) return 2;
    if (!ck->failures && !ck->compared) {
        snprintf(ck->message, sizeof ck->message,
                 "NOTHING CHECKED: no component had a finite claimed and numeric derivative");
        return 2;
    }
    if (!ck->failures && !ck->nonzero) {
        snprintf(ck->message, sizeof ck->message,
                 "NOTHING CHECKED: every claimed and numeric derivative is exactly 0, so the "
                 "function does not vary at these points (check the points, FUNCTION and "
                 "PROTOTYPE)");
        return 2;
    }
    return ck->failures ? 1 : 0;
}

static void report_json(const adcheck_opts *o, const target *t, const checking *ck, int status)
{
    const worst *w = &ck->w;
    char name[160];
    printf("\n], \"components\": %ld, \"compared\": %ld, \"failures\": %ld, \"worst\": ",
           ck->points * t->dim, ck->compared, ck->failures);
    if (ck->failures) {
        component_name(o, t, w->index, name, sizeof name);
        printf("{\"point\": %ld, \"component\": ", w->point + 1);
        json_str(name);
        printf(", \"index\": %d, \"claimed\": ", w->index);
        json_num(w->claimed);
        printf(", \"numeric\": ");
        json_num(w->v.num);
        printf(", \"abs_err\": ");
        json_num(w->v.ae);
        printf(", \"rel_err\": ");
        json_num(w->v.re);
        printf(", \"reason\": ");
        json_str(w->v.why);
        printf("}");
    } else {
        printf("null");
    }
    printf(", \"status\": %d, \"message\": ", status);
    json_str(ck->message[0] ? ck->message : NULL);
    printf(", \"ok\": %s}\n", status ? "false" : "true");
    if (ck->cut) fail("%s", ck->message);
}

static void report_text(const adcheck_opts *o, const target *t, const checking *ck, int status)
{
    const worst *w = &ck->w;
    long total = ck->points * t->dim, p = ck->points;
    char name[160];
    if (ck->cut) {
        fflush(stdout);
        fail("%s", ck->message);
    } else if (status == 2) {
        printf("\nadcheck: %s\n", ck->message);
    } else if (ck->failures) {
        component_name(o, t, w->index, name, sizeof name);
        printf("\nadcheck: FAILED: %ld of %ld components disagree; worst: point %ld, %s\n",
               ck->failures, total, w->point + 1, name);
        printf("  at x = (");
        for (int i = 0; i < w->nx; i++) printf("%s%.17g", i ? ", " : "", w->x[i]);
        printf("%s): claimed %.17g, numeric %.17g, abs err %.3g, rel err %.3g%s%s\n",
               t->dim > 8 ? ", ..." : "", unsigned_nan(w->claimed), unsigned_nan(w->v.num),
               unsigned_nan(w->v.ae), unsigned_nan(w->v.re), w->v.why ? "; " : "",
               w->v.why ? w->v.why : "");
    } else {
        printf("\nadcheck: OK: all %ld components agree at %ld point%s", total, p,
               p == 1 ? "" : "s");
        if (ck->refined) printf(" (%ld with a smaller step than eps max(1, |x|))", ck->refined);
        putchar('\n');
    }
}

/* Checks every point and prints the report; returns the exit status. */
static int check(const adcheck_opts *o, target *t)
{
    checking ck;
    if (open_checking(o, t, &ck)) return 2;
    ad_rng rng;
    ad_rng_init(&rng, o->seed);
    print_header(o);
    for (; ck.points < o->npoints; ck.points++)
        if (!check_point(o, t, &ck, &rng, ck.points)) {
            ck.cut = true;
            break;
        }
    int status = final_status(&ck);
    if (o->json) report_json(o, t, &ck, status);
    else report_text(o, t, &ck, status);
    close_checking(&ck);
    return status;
}

/* Runs check() in a child process, so that a function that crashes (a
 * wrong PROTOTYPE passing garbage where a pointer is expected, or a bug in
 * the library) ends in a message and exit status 2 rather than taking
 * adcheck down with it; the report up to the crash stands.  Without
 * fork or shared memory the check runs in this process. */
static int run_isolated(adcheck_opts *o, target *t)
{
    doing = mmap(NULL, DOING_SIZE + sizeof(isolated), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (doing == MAP_FAILED) {
        doing = NULL;
        return check(o, t);
    }
    doing[0] = '\0';
    child = (volatile isolated *)(void *)(doing + DOING_SIZE);
    child->returned = child->json_open = 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = check(o, t);
        child->returned = 1;
        adcheck_opts_free(o);
        exit(rc);
    }
    int st = 0, rc;
    char msg[DOING_SIZE + 200];
    msg[0] = '\0';
    if (pid < 0) {
        rc = check(o, t);
    } else if (waitpid(pid, &st, 0) != pid) {
        rc = fail("lost the checking process");
    } else if (WIFEXITED(st) && child->returned) {
        rc = WEXITSTATUS(st);
    } else {
        fflush(stdout);
        /* the crashed code may have scribbled over the record too */
        doing[DOING_SIZE - 1] = '\0';
        for (char *c = doing; *c; c++)
            if (*c < 0x20 || *c > 0x7e) {
                snprintf(doing, DOING_SIZE, "calling the functions (the record of which was "
                                            "overwritten)");
                break;
            }
        if (WIFEXITED(st)) { /* exit() inside a call: whatever its status, not a pass */
            snprintf(msg, sizeof msg, "the library called exit(%d) while %s, so the check "
                     "did not finish", WEXITSTATUS(st), doing[0] ? doing : "starting");
        } else {
            int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
            snprintf(msg, sizeof msg, "signal %d (%s) while %s: the PROTOTYPE may not match "
                     "the functions, or the library has a bug", sig, strsignal(sig),
                     doing[0] ? doing : "starting");
        }
        if (o->json && child->json_open) { /* the one JSON object, closed */
            printf("\n], \"status\": 2, \"message\": ");
            json_str(msg);
            printf(", \"ok\": false}\n");
            fflush(stdout);
        }
        rc = fail("%s", msg);
    }
    munmap(doing, DOING_SIZE + sizeof(isolated));
    doing = NULL;
    child = NULL;
    return rc;
}

int main(int argc, char **argv)
{
    adcheck_opts o;
    char err[400];
    int rc = adcheck_parse(argc, argv, &o, err, sizeof err);
    if (rc == ADCHECK_PARSE_HELP) {
        fputs(usage_text, stdout);
        rc = 0;
    } else if (rc == ADCHECK_PARSE_USAGE) {
        fail("%s", err);
        fputs(usage_text, stderr);
        rc = 2;
    } else if (rc) {
        rc = fail("%s", err);
    } else {
        static target t;
        rc = load(&o, &t);
        if (!rc) rc = run_isolated(&o, &t);
    }
    adcheck_opts_free(&o);
    return rc;
}

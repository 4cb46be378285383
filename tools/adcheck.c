/* tools/adcheck.c - gradient checking for C code that is not ours.
 *
 *   adcheck [options] LIBRARY FUNCTION PROTOTYPE
 *
 * Loads a shared library, calls FUNCTION and the derivatives it claims
 * (--grad or --partials) through libffi with the C prototype given, and
 * compares every component with central differences at the requested
 * points, as torch.autograd.gradcheck does: a component passes when
 * |claimed - numeric| <= atol + rtol |numeric|.  Exit status 0 when all
 * agree, 1 when any disagrees, 2 for a usage, loading or prototype error.
 * docs/ffi.md has the manual page.
 *
 * The numeric derivative is deliberately the plain two-point central
 * difference with an absolute step, the reference everyone knows, rather
 * than the library's refined stencil: a tool that checks others' claims
 * should be easy to reason about.  For float functions the default step is
 * 1e-2 instead of 1e-6, since float's rounding error (1e-7 relative)
 * divided by a 1e-6 step would swamp any derivative; the rounded points
 * actually passed are used in the denominator. */
#define _POSIX_C_SOURCE 200809L /* strdup, strtok_r, dlopen */

#include <dlfcn.h>
#include <errno.h>
#include <ffi.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <autodiff/autodiff.h>

#include "../autodiff/ffi_sig.h"

#define MAXP AD_FOREIGN_MAX_ARGS

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
    "  --eps E       central-difference step (default 1e-6; 1e-2 for float)\n"
    "  --atol A      default 1e-5\n"
    "  --rtol R      default 1e-3\n"
    "  --json        print the report as JSON\n"
    "exit status: 0 all agree, 1 some component disagrees, 2 usage or loading error\n";

typedef struct opts {
    const char *lib, *func, *proto, *grad;
    const char *partials[MAXP];
    int npartials;
    long n;
    double *at; /* npoints x dim, from --at */
    int nat;
    long random;
    unsigned long long seed;
    double lo, hi, eps, atol, rtol;
    bool json;
} opts;

typedef struct target {
    ad_ffi_sig sig;
    bool single; /* float rather than double */
    bool vector;
    int dim;     /* components per point: nargs, or n */
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

/* ---- options ----------------------------------------------------------------------- */

static int parse_num(const char *opt, const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(*out))
        return fail("%s: '%s' is not a finite number", opt, s);
    return 0;
}

/* "1.5,2,3" into a growing array. */
static int parse_list(const char *opt, const char *s, double **vals, int *count)
{
    char *copy = strdup(s), *save = NULL;
    if (!copy) return fail("%s: out of memory", opt);
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        double *grown = realloc(*vals, (size_t)(*count + 1) * sizeof **vals);
        if (!grown) {
            rc = fail("%s: out of memory", opt);
            break;
        }
        *vals = grown;
        rc = parse_num(opt, tok, &(*vals)[(*count)++]);
    }
    free(copy);
    return rc;
}

static int parse_opts(int argc, char **argv, opts *o, double **atvals, int *natvals, int *atcounts)
{
    int pos = 0;
    const char *posv[3];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (!strcmp(a, "--json")) {
            o->json = true;
            continue;
        }
        if (strncmp(a, "--", 2)) {
            if (pos == 3) return fail("unexpected argument '%s'", a);
            posv[pos++] = a;
            continue;
        }
        if (i + 1 >= argc) return fail("%s needs a value", a);
        const char *v = argv[++i];
        double d;
        if (!strcmp(a, "--grad")) {
            o->grad = v;
        } else if (!strcmp(a, "--partials")) {
            static char buf[4096];
            snprintf(buf, sizeof buf, "%s", v);
            char *save = NULL;
            o->npartials = 0;
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (o->npartials == MAXP) return fail("--partials: more than 16 names");
                o->partials[o->npartials++] = t;
            }
        } else if (!strcmp(a, "--at")) {
            int before = *natvals;
            if (parse_list(a, v, atvals, natvals)) return 2;
            atcounts[o->nat < 1000 ? o->nat : 999] = *natvals - before;
            if (++o->nat > 1000) return fail("--at: at most 1000 points");
        } else if (!strcmp(a, "--range")) {
            double *r = NULL;
            int c = 0;
            int rc = parse_list(a, v, &r, &c);
            if (!rc && (c != 2 || !(r[0] < r[1])))
                rc = fail("--range: give LO,HI with LO < HI, not '%s'", v);
            if (!rc) o->lo = r[0], o->hi = r[1];
            free(r);
            if (rc) return 2;
        } else if (!strcmp(a, "--n") || !strcmp(a, "--random") || !strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            long long k = strtoll(v, &end, 10);
            if (end == v || *end || errno || k < (a[2] == 's' ? 0 : 1) || k > 1000000)
                return fail("%s: '%s' is not a count in range", a, v);
            if (a[2] == 'n') o->n = (long)k;
            else if (a[2] == 'r') o->random = (long)k;
            else o->seed = (unsigned long long)k;
        } else if (!strcmp(a, "--eps") || !strcmp(a, "--atol") || !strcmp(a, "--rtol")) {
            if (parse_num(a, v, &d)) return 2;
            if (d < 0 || (a[2] == 'e' && d == 0)) return fail("%s: '%s' must be positive", a, v);
            *(a[2] == 'e' ? &o->eps : a[2] == 'a' ? &o->atol : &o->rtol) = d;
        } else {
            return fail("unknown option '%s'", a);
        }
    }
    if (pos != 3) {
        fputs(usage_text, stderr);
        return 2;
    }
    o->lib = posv[0], o->func = posv[1], o->proto = posv[2];
    return 0;
}

/* ---- loading ------------------------------------------------------------------------ */

static void *sym(void *h, const char *lib, const char *name)
{
    dlerror();
    void *p = dlsym(h, name);
    if (!p) fail("%s has no function '%s'", lib, name);
    return p;
}

static int load(const opts *o, target *t)
{
    char err[300];
    if (ad__ffi_parse(o->proto, &t->sig, err, sizeof err) ||
        ad__ffi_classify(&t->sig, err, sizeof err))
        return fail("prototype: %s", err);
    ad_ffi_sig *s = &t->sig;
    t->vector = s->form == AD_FFI_VECTOR;
    t->single = s->ret == AD_C_FLOAT;
    if (!t->vector)
        for (int i = 0; i < s->nargs; i++)
            if (s->args[i] != s->ret || (s->ret != AD_C_DOUBLE && s->ret != AD_C_FLOAT))
                return fail("prototype: '%s': arguments and result must be all double or "
                            "all float", o->proto);
    if (!o->grad && !o->npartials)
        return fail("nothing to check: give --grad NAME or --partials N1,N2,...");
    if (o->grad && o->npartials) return fail("give --grad or --partials, not both");
    if (t->vector && o->npartials)
        return fail("a vector function is checked with --grad, not --partials");
    if (o->npartials && o->npartials != s->nargs) {
        return fail("--partials needs one name per argument: %d, got %d", s->nargs, o->npartials);
    }
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
                                                        : &ffi_type_pointer; /* size_t: below */
        if (s->args[1] == AD_C_SIZE_T)
            t->tf[1] = t->tg[1] = sizeof(size_t) == 8 ? &ffi_type_uint64 : &ffi_type_uint32;
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
    void *gbuf; /* the gradient's output */
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

static void call_g(target *t, frame *fr, double *out)
{
    ffi_arg dummy;
    memset(fr->gbuf, 0, (size_t)t->dim * (t->single ? sizeof(float) : sizeof(double)));
    if (!t->vector) fr->av[t->dim] = &fr->gp; /* the out pointer after the arguments */
    ffi_call(&t->cif_g, FFI_FN(t->g), &dummy, fr->av);
    for (int i = 0; i < t->dim; i++)
        out[i] = t->single ? ((float *)fr->gbuf)[i] : ((double *)fr->gbuf)[i];
}

/* ---- the report ---------------------------------------------------------------------- */

static void json_num(double v)
{
    if (isfinite(v)) printf("%.17g", v);
    else printf("null");
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void component_name(const opts *o, const target *t, int i, char *buf, size_t size)
{
    if (t->vector) snprintf(buf, size, "df/dx[%d]", i);
    else if (o->npartials) snprintf(buf, size, "df/dx%d (%s)", i, o->partials[i]);
    else snprintf(buf, size, "df/dx%d", i);
}

/* The point count and its dimension, from the options and the prototype. */
static int dimensions(opts *o, target *t, const int *atcounts)
{
    if (t->vector) {
        long n = o->n ? o->n : (o->nat ? atcounts[0] : 0);
        if (!n) return fail("the vector form needs --n N (or --at with the values)");
        t->dim = (int)n;
    } else {
        t->dim = t->sig.nargs;
        if (o->n) return fail("--n is only for the vector form");
    }
    for (int p = 0; p < o->nat; p++)
        if (atcounts[p] != t->dim)
            return fail("--at: point %d has %d values, expected %d", p + 1, atcounts[p], t->dim);
    if (o->eps == 0) o->eps = t->single ? 1e-2 : 1e-6;
    return 0;
}

/* Checks every point and prints the report; returns the exit status. */
static int check(const opts *o, target *t, const double *atv)
{
    long npoints = o->nat + (o->random ? o->random : (o->nat ? 0 : 5));
    frame fr;
    memset(&fr, 0, sizeof fr);
    size_t es = t->single ? sizeof(float) : sizeof(double);
    fr.buf = calloc((size_t)t->dim, es);
    fr.gbuf = calloc((size_t)t->dim, es);
    double *claimed = calloc((size_t)t->dim, sizeof(double));
    if (!fr.buf || !fr.gbuf || !claimed) {
        free(fr.buf), free(fr.gbuf), free(claimed);
        return fail("out of memory");
    }
    fr.gp.p = fr.gbuf;
    if (t->vector) {
        fr.bp.p = fr.buf;
        if (t->sig.args[1] == AD_C_INT) fr.len.i = t->dim;
        else if (t->sig.args[1] == AD_C_LONG) fr.len.l = t->dim;
        else fr.len.z = (size_t)t->dim;
        fr.av[0] = &fr.bp, fr.av[1] = &fr.len, fr.av[2] = &fr.gp;
    } else {
        for (int i = 0; i < t->dim; i++) fr.av[i] = &fr.v[i];
    }

    ad_rng rng;
    ad_rng_init(&rng, o->seed);
    long failures = 0, worst_point = -1;
    int worst_comp = -1;
    double worst = -1;
    char proto[200], name[160];
    ad__ffi_format(&t->sig, proto, sizeof proto);
    if (o->json) {
        printf("{\"library\": ");
        json_str(o->lib);
        printf(", \"function\": ");
        json_str(o->func);
        printf(", \"prototype\": ");
        json_str(proto);
        printf(", \"eps\": %.17g, \"atol\": %.17g, \"rtol\": %.17g, \"points\": [", o->eps,
               o->atol, o->rtol);
    } else {
        printf("adcheck: %s %s: %s, %s; eps %g, atol %g, rtol %g\n", o->lib, o->func, proto,
               o->grad ? "--grad" : "--partials", o->eps, o->atol, o->rtol);
    }
    for (long p = 0; p < npoints; p++) {
        for (int i = 0; i < t->dim; i++)
            set(t, &fr, i, p < o->nat ? atv[p * t->dim + i]
                                      : o->lo + (o->hi - o->lo) * ad_rng_uniform(&rng));
        double value = call_f(t, &fr, t->f);
        if (t->g) call_g(t, &fr, claimed);
        else
            for (int i = 0; i < t->dim; i++) claimed[i] = call_f(t, &fr, t->p[i]);
        if (o->json) {
            printf("%s\n  {\"x\": [", p ? "," : "");
            for (int i = 0; i < t->dim; i++) {
                if (i) fputs(", ", stdout);
                json_num(get(t, &fr, i));
            }
            printf("], \"value\": ");
            json_num(value);
            printf(", \"components\": [");
        } else {
            printf("\npoint %ld: f(", p + 1);
            for (int i = 0; i < t->dim && i < 8; i++)
                printf("%s%.9g", i ? ", " : "", get(t, &fr, i));
            printf("%s) = %.17g\n", t->dim > 8 ? ", ..." : "", value);
            printf("  %-20s %24s %24s %10s %10s\n", "component", "claimed", "numeric",
                   "abs err", "rel err");
        }
        for (int i = 0; i < t->dim; i++) {
            double x0 = get(t, &fr, i);
            double xp = set(t, &fr, i, x0 + o->eps), fp = call_f(t, &fr, t->f);
            double xm = set(t, &fr, i, x0 - o->eps), fm = call_f(t, &fr, t->f);
            set(t, &fr, i, x0);
            double num = (fp - fm) / (xp - xm), c = claimed[i], tol = o->atol + o->rtol * fabs(num);
            double ae = fabs(c - num), re = num != 0 ? ae / fabs(num) : (ae == 0 ? 0 : INFINITY);
            bool ok = ae <= tol; /* false for NaN */
            double excess = isnan(ae) ? INFINITY : ae - tol;
            if (!ok) {
                failures++;
                if (excess > worst) worst = excess, worst_point = p, worst_comp = i;
            }
            component_name(o, t, i, name, sizeof name);
            if (o->json) {
                printf("%s\n    {\"component\": ", i ? "," : "");
                json_str(name);
                printf(", \"index\": %d, \"claimed\": ", i);
                json_num(c);
                printf(", \"numeric\": ");
                json_num(num);
                printf(", \"abs_err\": ");
                json_num(ae);
                printf(", \"rel_err\": ");
                json_num(re);
                printf(", \"ok\": %s}", ok ? "true" : "false");
            } else {
                printf("  %-20s %24.15g %24.15g %10.2e %10.2e%s\n", name, c, num, ae, re,
                       ok ? "" : "  <-- FAIL");
            }
        }
        if (o->json) printf("]}");
    }
    long total = npoints * t->dim;
    if (o->json) {
        printf("\n], \"components\": %ld, \"failures\": %ld, \"ok\": %s}\n", total, failures,
               failures ? "false" : "true");
    } else if (failures) {
        component_name(o, t, worst_comp, name, sizeof name);
        printf("\nadcheck: FAILED: %ld of %ld components disagree; worst: point %ld, %s\n",
               failures, total, worst_point + 1, name);
    } else {
        printf("\nadcheck: OK: all %ld components agree at %ld point%s\n", total, npoints,
               npoints == 1 ? "" : "s");
    }
    free(fr.buf);
    free(fr.gbuf);
    free(claimed);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    opts o = {.seed = 1, .lo = -1, .hi = 1, .eps = 0, .atol = 1e-5, .rtol = 1e-3};
    double *atv = NULL;
    int natv = 0;
    static int atcounts[1000];
    static target t;
    int rc = parse_opts(argc, argv, &o, &atv, &natv, atcounts);
    if (!rc) rc = load(&o, &t);
    if (!rc) rc = dimensions(&o, &t, atcounts);
    if (!rc) rc = check(&o, &t, atv);
    free(atv);
    return rc;
}

/* tools/adcheck_opts.c - adcheck's command-line parser (adcheck_opts.h).
 *
 * Everything here is checked before adcheck loads anything, and nothing
 * here exits, prints or loads: a bad command line is a message and a
 * return value, so the parser can be fuzzed (tests/fuzz/fuzz_adcheck_opts.c). */
#define _POSIX_C_SOURCE 200809L /* strdup */

#include "adcheck_opts.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static int perr(char *err, size_t errlen,
                                                      const char *fmt, ...)
{
    if (errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return ADCHECK_PARSE_ERROR;
}

/* User text is quoted in messages cut to this many bytes: a message must
 * stay readable when the argument is a megabyte of junk. */
#define Q "%.60s"

static int parse_num(const char *opt, const char *s, double *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    /* ERANGE on underflow (1e-320) is a denormal or zero, which the range
     * checks of each option judge; overflow gives inf, refused here. */
    if (end == s || *end || !isfinite(*out) || (errno && errno != ERANGE))
        return perr(err, errlen, "%s: '" Q "' is not a finite number", opt, s);
    return 0;
}

/* "1.5,2,3": appends the values to *vals (growing it) and returns how many
 * there were, or -1 with a message.  An empty field is an error ("1,,2"
 * would otherwise silently be a point of two values). */
static int parse_list(const char *opt, const char *s, double **vals, long *count, char *err,
                      size_t errlen)
{
    int added = 0;
    for (const char *p = s;; p++) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 0 || len > 400)
            return perr(err, errlen, "%s: %s value in '" Q "'", opt, len ? "overlong" : "empty",
                        s), -1;
        char tok[401];
        memcpy(tok, p, len);
        tok[len] = '\0';
        double *grown = realloc(*vals, (size_t)(*count + 1) * sizeof **vals);
        if (!grown) return perr(err, errlen, "%s: out of memory", opt), -1;
        *vals = grown;
        if (parse_num(opt, tok, &(*vals)[*count], err, errlen)) return -1;
        ++*count, ++added;
        if (!q) return added;
        p = q;
    }
}

static int parse_partials(adcheck_opts *o, const char *v, char *err, size_t errlen)
{
    free(o->partials_buf);
    o->npartials = 0;
    if (!(o->partials_buf = strdup(v))) return perr(err, errlen, "--partials: out of memory");
    for (char *p = o->partials_buf;; p++) {
        char *q = strchr(p, ',');
        if (q) *q = '\0';
        if (!*p) return perr(err, errlen, "--partials: empty name in '" Q "'", v);
        if (o->npartials == ADCHECK_MAX_ARGS)
            return perr(err, errlen, "--partials: more than %d names", ADCHECK_MAX_ARGS);
        o->partials[o->npartials++] = p;
        if (!q) return 0;
        p = q;
    }
}

static int parse_count(const char *opt, const char *v, long min, long *out, char *err,
                       size_t errlen)
{
    char *end;
    errno = 0;
    long long k = strtoll(v, &end, 10);
    if (end == v || *end || errno || k < min || k > ADCHECK_MAX_COUNT)
        return perr(err, errlen, "%s: '" Q "' is not a count from %ld to %ld", opt, v, min,
                    ADCHECK_MAX_COUNT);
    *out = (long)k;
    return 0;
}

static int parse_option(adcheck_opts *o, const char *a, const char *v, long *natv, char *err,
                        size_t errlen)
{
    double d;
    if (!strcmp(a, "--grad")) {
        if (!*v) return perr(err, errlen, "--grad: empty name");
        o->grad = v;
    } else if (!strcmp(a, "--partials")) {
        return parse_partials(o, v, err, errlen);
    } else if (!strcmp(a, "--at")) {
        if (o->nat == ADCHECK_MAX_AT)
            return perr(err, errlen, "--at: at most %d points", ADCHECK_MAX_AT);
        int *grown = realloc(o->atcount, (size_t)(o->nat + 1) * sizeof *grown);
        if (!grown) return perr(err, errlen, "--at: out of memory");
        o->atcount = grown;
        int k = parse_list(a, v, &o->at, natv, err, errlen);
        if (k < 0) return ADCHECK_PARSE_ERROR;
        o->atcount[o->nat++] = k;
    } else if (!strcmp(a, "--range")) {
        double *r = NULL;
        long c = 0;
        int k = parse_list(a, v, &r, &c, err, errlen);
        /* hi - lo must be finite too: a random point is lo + (hi - lo) u */
        if (k >= 0 && (c != 2 || !(r[0] < r[1]) || !isfinite(r[1] - r[0])))
            k = perr(err, errlen, "--range: give LO,HI with LO < HI, not '" Q "'", v);
        if (k >= 0) o->lo = r[0], o->hi = r[1];
        free(r);
        if (k < 0) return ADCHECK_PARSE_ERROR;
    } else if (!strcmp(a, "--n")) {
        return parse_count(a, v, 1, &o->n, err, errlen);
    } else if (!strcmp(a, "--random")) {
        return parse_count(a, v, 1, &o->random, err, errlen);
    } else if (!strcmp(a, "--seed")) {
        long s = 0;
        if (parse_count(a, v, 0, &s, err, errlen)) return ADCHECK_PARSE_ERROR;
        o->seed = (unsigned long long)s;
    } else if (!strcmp(a, "--eps")) {
        if (parse_num(a, v, &d, err, errlen)) return ADCHECK_PARSE_ERROR;
        /* the step is eps max(1, |x|): beyond 1 it is no longer local */
        if (!(d > 0 && d <= 1)) return perr(err, errlen, "--eps: '" Q "' must be in (0, 1]", v);
        o->eps = d;
    } else if (!strcmp(a, "--atol") || !strcmp(a, "--rtol")) {
        if (parse_num(a, v, &d, err, errlen)) return ADCHECK_PARSE_ERROR;
        if (d < 0) return perr(err, errlen, "%s: '" Q "' must not be negative", a, v);
        *(a[2] == 'a' ? &o->atol : &o->rtol) = d;
    } else {
        return perr(err, errlen, "unknown option '" Q "'", a);
    }
    return 0;
}

/* The prototype: parsed, classified, and one of the two forms adcheck can
 * call (all double or all float). */
static int parse_proto(adcheck_opts *o, char *err, size_t errlen)
{
    char msg[300];
    ad_ffi_sig *s = &o->sig;
    if (ad_ffi_parse(o->proto, s, msg, sizeof msg) || ad_ffi_classify(s, msg, sizeof msg))
        return perr(err, errlen, "prototype: %s", msg);
    o->vector = s->form == AD_FFI_VECTOR;
    o->single = s->ret == AD_C_FLOAT;
    bool same = s->ret == AD_C_DOUBLE || s->ret == AD_C_FLOAT;
    if (o->vector)
        same = same && s->nargs == 2 &&
               s->args[0] == (o->single ? AD_C_FLOAT_PTR : AD_C_DOUBLE_PTR) &&
               (s->args[1] == AD_C_INT || s->args[1] == AD_C_LONG || s->args[1] == AD_C_SIZE_T);
    else
        for (int i = 0; i < s->nargs; i++) same = same && s->args[i] == s->ret;
    if (!same || s->nargs < 1 || s->nargs > ADCHECK_MAX_ARGS)
        return perr(err, errlen,
                    "prototype: '" Q "': arguments and result must be all double or all float",
                    o->proto);
    return 0;
}

/* What the derivatives are and how many components a point has. */
static int check_shape(adcheck_opts *o, char *err, size_t errlen)
{
    if (!o->grad && !o->npartials)
        return perr(err, errlen, "nothing to check: give --grad NAME or --partials N1,N2,...");
    if (o->grad && o->npartials) return perr(err, errlen, "give --grad or --partials, not both");
    if (o->vector && o->npartials)
        return perr(err, errlen, "a vector function is checked with --grad, not --partials");
    if (o->npartials && o->npartials != o->sig.nargs)
        return perr(err, errlen, "--partials needs one name per argument: %d, got %d",
                    o->sig.nargs, o->npartials);
    if (o->vector) {
        long n = o->n ? o->n : (o->nat ? o->atcount[0] : 0);
        if (n < 1) return perr(err, errlen, "the vector form needs --n N (or --at with the values)");
        /* the length is passed as an int when the prototype says int */
        if (n > ADCHECK_MAX_COUNT) return perr(err, errlen, "--at: more than %ld values", ADCHECK_MAX_COUNT);
        o->dim = (int)n;
    } else {
        if (o->n) return perr(err, errlen, "--n is only for the vector form");
        o->dim = o->sig.nargs;
    }
    for (int p = 0; p < o->nat; p++)
        if (o->atcount[p] != o->dim)
            return perr(err, errlen, "--at: point %d has %d value%s, expected %d", p + 1,
                        o->atcount[p], o->atcount[p] == 1 ? "" : "s", o->dim);
    if (o->single) {
        /* a float function would be called at inf */
        for (long k = 0; k < (long)o->nat * o->dim; k++)
            if (fabs(o->at[k]) > FLT_MAX)
                return perr(err, errlen, "--at: %g does not fit in float", o->at[k]);
        if (fabs(o->lo) > FLT_MAX || fabs(o->hi) > FLT_MAX)
            return perr(err, errlen, "--range: %g,%g does not fit in float", o->lo, o->hi);
    }
    o->npoints = o->nat + (o->random ? o->random : (o->nat ? 0 : 5));
    if (o->eps == 0) o->eps = o->single ? 1e-2 : 1e-6;
    return 0;
}

int adcheck_parse(int argc, char *const argv[], adcheck_opts *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->seed = 1, o->lo = -1, o->hi = 1, o->atol = 1e-5, o->rtol = 1e-3;
    if (errlen) err[0] = '\0';
    const char *posv[3] = {NULL, NULL, NULL};
    int pos = 0;
    long natv = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!a) break;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return ADCHECK_PARSE_HELP;
        if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (strncmp(a, "--", 2)) {
            if (pos == 3) return perr(err, errlen, "unexpected argument '" Q "'", a);
            posv[pos++] = a;
        } else if (i + 1 >= argc || !argv[i + 1]) {
            return perr(err, errlen, Q " needs a value", a);
        } else if (parse_option(o, a, argv[++i], &natv, err, errlen)) {
            return ADCHECK_PARSE_ERROR;
        }
    }
    if (pos != 3) {
        perr(err, errlen, "expected LIBRARY FUNCTION PROTOTYPE, got %d argument%s", pos,
             pos == 1 ? "" : "s");
        return ADCHECK_PARSE_USAGE;
    }
    o->lib = posv[0], o->func = posv[1], o->proto = posv[2];
    if (!*o->lib) return perr(err, errlen, "LIBRARY is empty");
    if (!*o->func) return perr(err, errlen, "FUNCTION is empty");
    if (parse_proto(o, err, errlen) || check_shape(o, err, errlen)) return ADCHECK_PARSE_ERROR;
    free(o->atcount);
    o->atcount = NULL;
    return ADCHECK_PARSE_OK;
}

void adcheck_opts_free(adcheck_opts *o)
{
    free(o->at);
    free(o->atcount);
    free(o->partials_buf);
    o->at = NULL, o->atcount = NULL, o->partials_buf = NULL;
}

/* tests/fuzz/fuzz_adcheck_opts.c - adcheck's command-line parser
 * (tools/adcheck_opts.h) on arbitrary command lines.  The input is split
 * at newlines into argv[1..]; adcheck_opts.c and the signature parser
 * (autodiff/ffi_sig.c) are compiled alone into this harness, since the
 * parser loads, prints and exits nothing.
 * Properties: the result is one of the four documented values; a message
 * is terminated, and non-empty on failure, even in a tiny buffer; an
 * accepted command line is one adcheck can run without overrunning
 * anything: a supported form, 1 <= dim, a bounded point count, one partial
 * name per argument or a gradient, every --at value finite (and within
 * float for float functions), a range with finite width, a usable step. */
#include <float.h>
#include <math.h>

#include "../../tools/adcheck_opts.h"
#include "fuzz_common.h"

#define MAXARGV 600

static void check_accepted(const adcheck_opts *o)
{
    FUZZ_ASSERT(o->lib && *o->lib && o->func && *o->func && o->proto);
    FUZZ_ASSERT(o->sig.form == AD_FFI_SCALAR || o->sig.form == AD_FFI_VECTOR);
    FUZZ_ASSERT(o->vector == (o->sig.form == AD_FFI_VECTOR));
    FUZZ_ASSERT(o->sig.nargs >= 1 && o->sig.nargs <= ADCHECK_MAX_ARGS);
    if (o->vector) FUZZ_ASSERT(o->sig.nargs == 2 && o->dim >= 1 && o->dim <= ADCHECK_MAX_COUNT);
    else FUZZ_ASSERT(o->dim == o->sig.nargs && o->n == 0);
    FUZZ_ASSERT((o->grad != NULL) != (o->npartials > 0));
    if (o->grad) FUZZ_ASSERT(*o->grad);
    if (o->npartials) {
        FUZZ_ASSERT(!o->vector && o->npartials == o->sig.nargs);
        for (int i = 0; i < o->npartials; i++) FUZZ_ASSERT(o->partials[i] && *o->partials[i]);
    }
    FUZZ_ASSERT(o->nat >= 0 && o->nat <= ADCHECK_MAX_AT);
    FUZZ_ASSERT(o->random >= 0 && o->random <= ADCHECK_MAX_COUNT);
    FUZZ_ASSERT(o->npoints >= 1 && o->npoints == o->nat + (o->random ? o->random : o->nat ? 0 : 5));
    for (long k = 0; k < (long)o->nat * o->dim; k++) {
        FUZZ_ASSERT(isfinite(o->at[k]));
        if (o->single) FUZZ_ASSERT(fabs(o->at[k]) <= FLT_MAX);
    }
    FUZZ_ASSERT(o->lo < o->hi && isfinite(o->hi - o->lo));
    FUZZ_ASSERT(o->eps > 0 && o->eps <= 1);
    FUZZ_ASSERT(isfinite(o->atol) && o->atol >= 0 && isfinite(o->rtol) && o->rtol >= 0);
    FUZZ_ASSERT(o->atcount == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = fuzz_string(data, size);
    char *argv[MAXARGV + 1];
    int argc = 0;
    argv[argc++] = "adcheck";
    for (char *p = src; argc < MAXARGV;) {
        argv[argc++] = p;
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = '\0';
        p = nl + 1;
    }
    argv[argc] = NULL;

    adcheck_opts o;
    char err[300];
    memset(err, 0x55, sizeof err);
    int rc = adcheck_parse(argc, argv, &o, err, sizeof err);
    FUZZ_ASSERT(rc == ADCHECK_PARSE_OK || rc == ADCHECK_PARSE_HELP ||
                rc == ADCHECK_PARSE_ERROR || rc == ADCHECK_PARSE_USAGE);
    FUZZ_ASSERT(memchr(err, '\0', sizeof err) != NULL);
    if (rc < 0) FUZZ_ASSERT(err[0] != '\0');
    if (rc == ADCHECK_PARSE_OK) check_accepted(&o);
    adcheck_opts_free(&o);

    /* The same line with a tiny message buffer, and with none: the same
     * answer, and nothing written past the buffer. */
    char small[9];
    memset(small, 0x55, sizeof small);
    FUZZ_ASSERT(adcheck_parse(argc, argv, &o, small, 8) == rc);
    FUZZ_ASSERT(memchr(small, '\0', 8) != NULL && small[8] == 0x55);
    adcheck_opts_free(&o);
    FUZZ_ASSERT(adcheck_parse(argc, argv, &o, NULL, 0) == rc);
    adcheck_opts_free(&o);
    free(src);
    return 0;
}

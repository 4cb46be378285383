/* tools/adcheck_opts.h - adcheck's command line, parsed and validated
 * without loading anything.
 *
 * adcheck_parse reads the options, the three positional arguments and the
 * prototype (with the library's signature parser, autodiff/ffi_sig.c) and
 * checks everything that can be checked before dlopen: the form, the
 * counts of --partials names and --at values against the prototype, the
 * ranges of every number.  It never exits, prints or loads a library, so
 * that the fuzz harness tests/fuzz/fuzz_adcheck_opts.c can call it on
 * arbitrary command lines (adcheck_opts.c and ffi_sig.c are compiled alone
 * into it).  What it accepts is safe for adcheck to run: the point count
 * and dimension are at least 1 and bounded, every --at value is finite in
 * the prototype's type, and there is one partial name per argument. */
#ifndef ADCHECK_OPTS_H
#define ADCHECK_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include <autodiff/ffi.h>

#define ADCHECK_MAX_ARGS AD_FFI_MAX_ARGS
#define ADCHECK_MAX_AT 1000        /* --at points */
#define ADCHECK_MAX_COUNT 1000000L /* --n, --random, --seed */

typedef struct adcheck_opts {
    /* as given (the strings point into argv) */
    const char *lib, *func, *proto, *grad;
    const char *partials[ADCHECK_MAX_ARGS]; /* point into partials_buf */
    int npartials;
    long n;      /* --n, 0 when not given */
    long random; /* --random, 0 when not given */
    unsigned long long seed;
    double lo, hi;         /* --range */
    double eps, atol, rtol; /* eps: the default is resolved by the prototype */
    bool json;
    /* derived from the prototype */
    ad_ffi_sig sig;
    bool single; /* float rather than double */
    bool vector; /* T f(const T *, n) */
    int dim;     /* components per point: the argument count, or n */
    long npoints;
    double *at; /* nat x dim values from --at, owned */
    int nat;
    /* owned scratch */
    char *partials_buf;
    int *atcount; /* values in each --at, until the dimension is known */
} adcheck_opts;

enum {
    ADCHECK_PARSE_OK = 0,
    ADCHECK_PARSE_HELP = 1,   /* -h or --help: print the usage, exit 0 */
    ADCHECK_PARSE_ERROR = -1, /* err holds the message (without "adcheck: ") */
    ADCHECK_PARSE_USAGE = -2  /* wrong positional count: err, then the usage */
};

/* Parses argv[1..argc-1] into *o (which it initialises; free it with
 * adcheck_opts_free whatever the result).  err (errlen bytes, always
 * terminated when errlen > 0) receives the message on failure. */
int adcheck_parse(int argc, char *const argv[], adcheck_opts *o, char *err, size_t errlen);

void adcheck_opts_free(adcheck_opts *o);

#endif

/* autodiff/ffi_sig.h - the signature parser behind ad_foreign_new and
 * adcheck.  Not installed.
 *
 * ffi_sig.c is pure: it reads a string and fills a struct, with no global
 * state, no allocation and no library calls beyond <string.h> and
 * snprintf, so it can be fuzzed on its own (compile ffi_sig.c alone with a
 * fuzzing main calling ad__ffi_parse on arbitrary bytes). */
#ifndef AUTODIFF_FFI_SIG_H
#define AUTODIFF_FFI_SIG_H

#include <stdbool.h>
#include <stddef.h>

#include "ffi.h"

/* The longest parameter list either grammar accepts (AD_FOREIGN_MAX_ARGS,
 * the limit of the scalar form). */
#define AD_FFI_MAX_ARGS AD_FOREIGN_MAX_ARGS

typedef enum ad_ffi_form {
    AD_FFI_SCALAR = 1, /* R f(T1, ..., Tm): R, Ti in double, float, int, long */
    AD_FFI_VECTOR = 2  /* T f(const T *, int): T double or float; the length
                          may also be long or size_t */
} ad_ffi_form;

typedef struct ad_ffi_sig {
    char name[64]; /* the function's name when the prototype gives one, else "" */
    ad_ctype ret;
    int nargs;
    ad_ctype args[AD_FFI_MAX_ARGS];
    ad_ffi_form form; /* set by ad__ffi_classify */
} ad_ffi_sig;

/* Parses either grammar (docs/ffi.md):
 *   short:  "d(ddd)", "f(ff)", "d(Di)"     one letter per type
 *   C:      "double (double, double, double)", "double f(const double *x, int n);"
 * into *out.  Returns 0, or -1 with a message in err (at most errlen bytes,
 * always terminated) naming the column and quoting the source:
 *   expected ',' or ')' at column 16 in "double (double double)"
 * The caller prefixes its own name.  Only syntax and the supported types
 * are checked here; ad__ffi_classify says whether the function can be
 * differentiated. */
int ad__ffi_parse(const char *src, ad_ffi_sig *out, char *err, size_t errlen);

/* Decides sig->form, or fails with a message in err when the signature is
 * neither a scalar nor a vector function ("a vector function is
 * T (const T *, int) ..."). */
int ad__ffi_classify(ad_ffi_sig *sig, char *err, size_t errlen);

/* The C spelling of a type ("const double *") and of a whole signature
 * ("double (double, double)"), for messages. */
const char *ad__ffi_type_name(ad_ctype t);
void ad__ffi_format(const ad_ffi_sig *sig, char *buf, size_t size);

#endif

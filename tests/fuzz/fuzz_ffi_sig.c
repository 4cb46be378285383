/* tests/fuzz/fuzz_ffi_sig.c - the foreign-function signature parser
 * (ad_ffi_parse of autodiff/ffi.h) on arbitrary bytes.  ffi_sig.c is
 * compiled alone into this harness (it is pure: no allocation, no global state).
 * Properties: the error message is terminated; a parsed signature has at
 * most AD_FFI_MAX_ARGS arguments of known types; formatting it gives C
 * text that parses back to the same signature. */
#include <autodiff/ffi.h>
#include "fuzz_common.h"

static bool known(ad_ctype t) { return t >= AD_C_VOID && t <= AD_C_FLOAT_PTR; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *src = fuzz_string(data, size);
    ad_ffi_sig sig, again;
    char err[200], text[1024];
    memset(err, 0x55, sizeof err);
    if (ad_ffi_parse(src, &sig, err, sizeof err) != 0) {
        FUZZ_ASSERT(memchr(err, '\0', sizeof err) != NULL);
        free(src);
        return 0;
    }
    FUZZ_ASSERT(sig.nargs >= 0 && sig.nargs <= AD_FFI_MAX_ARGS);
    FUZZ_ASSERT(known(sig.ret));
    for (int i = 0; i < sig.nargs; i++) FUZZ_ASSERT(known(sig.args[i]) && sig.args[i] != AD_C_VOID);
    FUZZ_ASSERT(memchr(sig.name, '\0', sizeof sig.name) != NULL);
    ad_ffi_format(&sig, text, sizeof text);
    FUZZ_ASSERT(memchr(text, '\0', sizeof text) != NULL);
    /* Round trip: the C spelling parses to the same types. */
    if (ad_ffi_parse(text, &again, err, sizeof err) != 0) {
        fprintf(stderr, "formatted \"%s\" (from \"%s\") does not parse: %s\n", text, src, err);
        abort();
    }
    FUZZ_ASSERT(again.ret == sig.ret && again.nargs == sig.nargs);
    for (int i = 0; i < sig.nargs; i++) FUZZ_ASSERT(again.args[i] == sig.args[i]);
    memset(err, 0x55, sizeof err);
    if (ad_ffi_classify(&sig, err, sizeof err) != 0)
        FUZZ_ASSERT(memchr(err, '\0', sizeof err) != NULL);
    else
        FUZZ_ASSERT(sig.form == AD_FFI_SCALAR || sig.form == AD_FFI_VECTOR);
    /* A tiny buffer must stay terminated too. */
    char small[8];
    ad_ffi_format(&sig, small, sizeof small);
    FUZZ_ASSERT(memchr(small, '\0', sizeof small) != NULL);
    free(src);
    return 0;
}

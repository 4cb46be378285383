/* autodiff/export.h - AD_API, the mark of the public API.
 *
 * The libraries are built with hidden visibility (-fvisibility=hidden):
 * only functions declared with AD_API in the installed headers of autodiff/
 * and nn/ are exported from libautodiff.so and libautodiff_nn.so; the
 * library's internal helpers (ad__*, nn__*) are not, so programs cannot come
 * to depend on them.  tests/exported_symbols.py checks both directions. */
#ifndef AUTODIFF_EXPORT_H
#define AUTODIFF_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define AD_API __attribute__((visibility("default")))
#else
#define AD_API
#endif

#endif

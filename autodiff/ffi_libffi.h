/* autodiff/ffi_libffi.h - reaches libffi's <ffi.h>.  Not installed.
 *
 * The library's own sources are compiled with autodiff/ on the include
 * path (meson's implicit include directories), where <ffi.h> is this
 * library's autodiff/ffi.h.  Included as <ffi_libffi.h>, this header is
 * found in that directory, so #include_next continues the search after it
 * and lands on libffi's header, wherever the system keeps it. */
#ifndef AUTODIFF_FFI_LIBFFI_H
#define AUTODIFF_FFI_LIBFFI_H
#include_next <ffi.h>
#endif

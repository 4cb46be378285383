/* nn/error.c - error reporting for the nn layer.
 *
 * The core's ad__err is internal, so nn formats "fn: message" here and
 * stores it with the public ad_set_error(): users read nn errors with the
 * same ad_error() as the core's. */
#define _POSIX_C_SOURCE 200809L /* strnlen */

#include <stdarg.h>
#include <string.h>

#include "internal.h"

int nn__err(const char *fn, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) msg[0] = '\0';
    return ad_set_error("%s: %s", fn, msg);
}

char *nn__strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = ad_malloc(len + 1);
    if (!p) return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

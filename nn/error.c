/* nn/error.c - error reporting for the nn layer.
 *
 * The core's ad__err is internal, so nn formats "fn: message" here and
 * stores it with the public ad_set_error(): users read nn errors with the
 * same ad_error() as the core's. */
#define _POSIX_C_SOURCE 200809L /* strnlen */

#include <stdarg.h>
#include <string.h>

#include "internal.h"

static int verr(ad_error_code code, const char *fn, const char *fmt, va_list ap)
{
    char msg[512];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0) msg[0] = '\0';
    /* AD_OK lets the core pick the default (AD_ERR_MEMORY for "out of
     * memory", else AD_ERR_INVALID). */
    return code == AD_OK ? ad_set_error("%s: %s", fn, msg)
                         : ad_set_error_code(code, "%s: %s", fn, msg);
}

int nn__err(const char *fn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(AD_OK, fn, fmt, ap);
    va_end(ap);
    return -1;
}

int nn__err_io(const char *fn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(AD_ERR_IO, fn, fmt, ap);
    va_end(ap);
    return -1;
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

void nn__name_list(char *buf, size_t size, int n, const char *const *names)
{
    size_t used = 0;
    if (size == 0) return;
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        /* room for this name, its separator and the " ... (N more)" tail */
        size_t need = strlen(names[i]) + 4;
        if (used + need + 24 > size) {
            snprintf(buf + used, size - used, "%s... (%d more)", i ? ", " : "", n - i);
            return;
        }
        used += (size_t)snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "", names[i]);
    }
    if (n == 0) snprintf(buf, size, "none");
}

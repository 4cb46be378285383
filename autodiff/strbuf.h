/* autodiff/strbuf.h - a growing string, for text built in memory (ad_print's
 * layout, ad_graph_dot's labels); never installed.
 *
 * Start from (ad__strbuf){0}.  Every append keeps s NUL-terminated.  A
 * failed allocation sets oom, leaves s as it was, and makes later appends
 * do nothing, so a caller appends freely and checks oom once at the end
 * (and words the error: the one ad_realloc set is only a placeholder).  The caller frees s with
 * ad_free. */
#ifndef AUTODIFF_STRBUF_H
#define AUTODIFF_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ad__strbuf {
    char *s;
    size_t len, cap;
    bool oom;
} ad__strbuf;

/* Appends the n bytes at p; ad__sb_str a string; ad__sb_printf formatted
 * text (an encoding error also sets oom). */
void ad__sb_put(ad__strbuf *b, const char *p, size_t n);
void ad__sb_str(ad__strbuf *b, const char *s);
void ad__sb_printf(ad__strbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif

/* autodiff/strbuf.c - the growing string of strbuf.h. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"

/* Room for need more bytes and the NUL, or oom. */
static bool grow(ad__strbuf *b, size_t need)
{
    if (b->oom) return false;
    if (b->len + need + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need + 1) cap *= 2;
    char *s = ad_realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void ad__sb_put(ad__strbuf *b, const char *p, size_t n)
{
    if (!grow(b, n)) return;
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void ad__sb_str(ad__strbuf *b, const char *s) { ad__sb_put(b, s, strlen(s)); }

void ad__sb_printf(ad__strbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    size_t room = b->s ? b->cap - b->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(room ? b->s + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)k < room) {
        b->len += (size_t)k;
        return;
    }
    if (!grow(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
}

/* autodiff/error.c - the per-thread error message and argument checks. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tape_impl.h"

static _Thread_local char err_buf[1024];
static _Thread_local bool err_set;
static _Thread_local ad_error_code err_code;
/* Set by every failure, cleared once the message is read or cleared: a NULL
 * optional argument passed meanwhile is that failure propagating. */
static _Thread_local bool err_unread;
/* Counts the failures: which one is pending (ad__error_serial). */
static _Thread_local uint64_t err_serial;

const char *ad_error(void)
{
    err_unread = false;
    return err_set ? err_buf : NULL;
}

void ad_clear_error(void)
{
    err_set = false;
    err_code = AD_OK;
    err_unread = false;
    err_buf[0] = '\0';
}

bool ad__has_error(void) { return err_set; }

uint64_t ad__error_serial(void) { return err_unread ? err_serial : 0; }

/* About thirty call sites report running out of memory, all with the words
 * "out of memory"; recognising them here gives each the right code without
 * threading one through every site (and through nn, which only has the
 * public ad_set_error).  Every other uncoded message is AD_ERR_INVALID. */
static ad_error_code default_code(const char *msg)
{
    return strstr(msg, "out of memory") ? AD_ERR_MEMORY : AD_ERR_INVALID;
}

static int store(ad_error_code code, const char *fmt, va_list ap)
{
    /* Formatted into a local buffer first: the arguments may point into
     * err_buf (ad_set_error("...: %s", ad_error())), and vsnprintf into the
     * buffer it is reading from is undefined behaviour. */
    char msg[sizeof err_buf];
    int n = vsnprintf(msg, sizeof msg, fmt ? fmt : "ad_set_error: fmt is NULL", ap);
    if (n < 0) snprintf(msg, sizeof msg, "ad_set_error: cannot format '%s'", fmt);
    memcpy(err_buf, msg, sizeof err_buf);
    err_set = true;
    err_unread = true;
    err_serial++;
    err_code = code > AD_OK && code <= AD_ERR_NUMERIC ? code : default_code(err_buf);
    return -1;
}

int ad_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    store(AD_OK, fmt, ap);
    va_end(ap);
    return -1;
}

int ad_set_error_code(ad_error_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    store(code, fmt, ap);
    va_end(ap);
    if (code <= AD_OK || code > AD_ERR_NUMERIC) err_code = AD_ERR_INVALID;
    return -1;
}

ad_error_code ad_errcode(void) { return err_set ? err_code : AD_OK; }

const char *ad_error_code_name(ad_error_code code)
{
    static const char *const names[] = {
        "AD_OK",        "AD_ERR_INVALID", "AD_ERR_SHAPE",    "AD_ERR_DTYPE",
        "AD_ERR_MEMORY", "AD_ERR_STALE",  "AD_ERR_MODIFIED", "AD_ERR_STATE",
        "AD_ERR_IO",    "AD_ERR_NUMERIC"};
    return code >= AD_OK && code <= AD_ERR_NUMERIC ? names[code] : "AD_ERR_UNKNOWN";
}

static int verr(ad_error_code code, const char *fn, const char *fmt, va_list ap)
{
    int n = snprintf(err_buf, sizeof err_buf, "%s: ", fn);
    if (n < 0 || (size_t)n >= sizeof err_buf) n = 0;
    vsnprintf(err_buf + n, sizeof err_buf - (size_t)n, fmt, ap);
    err_set = true;
    err_unread = true;
    err_serial++;
    err_code = code != AD_OK ? code : default_code(err_buf + n);
    return -1;
}

int ad__err(const char *fn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(AD_OK, fn, fmt, ap);
    va_end(ap);
    return -1;
}

int ad__errc(ad_error_code code, const char *fn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(code, fn, fmt, ap);
    va_end(ap);
    return -1;
}

int ad__err_in(const char *fn, const char *fmt, ...)
{
    const char *msg = ad_error();
    size_t lf = strlen(fn);
    if (msg && strncmp(msg, fn, lf) == 0 && msg[lf] == ':') return -1; /* named already */
    /* copied first: verr writes err_buf, which msg points into */
    char inner[sizeof err_buf], what[256] = "";
    snprintf(inner, sizeof inner, "%s", msg ? msg : "");
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
    }
    return ad__errc(msg ? ad_errcode() : AD_OK, fn, "%s%s%s", what, *what && msg ? ": " : "",
                    msg ? inner : *what ? "" : "failed");
}

int ad__check_arg(const char *fn, const char *name, const ad_tensor *t, bool float_only)
{
    if (!t) {
        /* A NULL argument is most often the result of an inner call that
         * failed: keep its message, which says what really went wrong. */
        if (err_set) return -1;
        return ad__err(fn, "argument '%s' is NULL", name);
    }
    /* The common case in two loads: a live header whose stamp is its
     * tape's current one, or a persistent tensor not freed. */
    if (t->magic != AD_TENSOR_MAGIC || (t->tape ? t->stamp != t->tape->gen : t->released)) {
        const char *why = ad__handle_problem(t);
        if (why) return ad__errc(AD_ERR_STALE, fn, "argument '%s' %s", name, why);
    }
    if (float_only && !ad__is_float(t->dtype))
        return ad__errc(AD_ERR_DTYPE, fn, "argument '%s' must be float32 or float64, got %s", name,
                       ad_dtype_name(t->dtype));
    return 0;
}

int ad__check_like(const char *fn, const char *name, const ad_tensor *t, const ad_tensor *x)
{
    if (ad__check_arg(fn, name, t, true)) return -1;
    if (t->dtype != x->dtype)
        return ad__err(fn, "%s is %s but x is %s", name, ad_dtype_name(t->dtype),
                       ad_dtype_name(x->dtype));
    return 0;
}

int ad__check_opt(const char *fn, const char *name, const ad_tensor *t, bool float_only,
                  bool *present)
{
    *present = t != NULL;
    if (t) return ad__check_arg(fn, name, t, float_only);
    if (!err_unread) return 0;
    /* The pending message is the real cause; say how this call saw it. */
    char cause[sizeof err_buf];
    memcpy(cause, err_buf, sizeof cause);
    return ad__err(fn, "argument '%s' is NULL right after a failed call (%s); pass NULL "
                       "for 'none' only once that failure was handled (ad_error() read, "
                       "or ad_clear_error())", name, cause);
}

int ad_check_optional(const char *fn, const char *name, const ad_tensor *t)
{
    bool present;
    return ad__check_opt(fn ? fn : "ad_check_optional", name ? name : "t", t, false, &present);
}

int ad__check_same_dtype(const char *fn, const ad_tensor *a, const ad_tensor *b)
{
    if (a->dtype != b->dtype)
        return ad__errc(AD_ERR_DTYPE, fn, "dtypes differ: %s vs %s", ad_dtype_name(a->dtype),
                       ad_dtype_name(b->dtype));
    return 0;
}

int ad__axis(const char *fn, int axis, int ndim, int *out)
{
    int lo = ndim > 0 ? -ndim : -1, hi = ndim > 0 ? ndim - 1 : 0;
    if (axis < lo || axis > hi)
        return ad__err(fn, "axis %d out of range for a %d-dimensional tensor", axis, ndim);
    *out = axis < 0 ? axis + (ndim > 0 ? ndim : 1) : axis;
    return 0;
}

/* nn/util.c - small helpers shared by the nn sources (nn_private.h). */
#define _POSIX_C_SOURCE 200809L /* newlocale, uselocale */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "nn_private.h"

/* Numbers in files are written and read in the C locale's syntax whatever
 * the program's: printf's %a and strtod follow LC_NUMERIC, so a
 * checkpoint saved after setlocale(LC_ALL, "de_DE.UTF-8") held the
 * learning rate "0x1,3333333333333p-3", which no other program could
 * read back.  This thread alone switches, for the call. */
static locale_t c_numeric(locale_t *old)
{
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    *old = c ? uselocale(c) : (locale_t)0;
    return c;
}

static void restore_numeric(locale_t c, locale_t old)
{
    if (!c) return;
    uselocale(old);
    freelocale(c);
}

void nn__fmt_hex_c(char *buf, size_t n, double v)
{
    locale_t old, c = c_numeric(&old);
    snprintf(buf, n, "%a", v);
    restore_numeric(c, old);
}

double nn__strtod_c(const char *s, char **end)
{
    locale_t old, c = c_numeric(&old);
    double v = strtod(s, end);
    restore_numeric(c, old);
    return v;
}

int nn__null_arg(const char *fn, const char *name)
{
    if (ad_error()) return -1;
    return ad_set_error("%s: argument '%s' is NULL", fn, name);
}

void nn__shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t len = 0;
    if (size == 0) return;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (len < size) snprintf(buf + len, size - len, "]");
}

/* sum_i t_i^2 in double, one element after another (the same order, so
 * the same bits, on every path); fn names an allocation that fails.  A
 * contiguous float tensor (a gradient) is read in place: the copy into
 * doubles took as long as the sum. */
double nn__sum_sq(const char *fn, const ad_tensor *t)
{
    int64_t n = ad_numel(t);
    ad_dtype dt = ad_tensor_dtype(t);
    if (ad_is_contiguous(t) && (dt == AD_FLOAT32 || dt == AD_FLOAT64)) {
        /* ad_data takes a tensor it may hand out for writing; only read here */
        const void *p = ad_data((ad_tensor *)t);
        if (!p) return -1;
        double s = 0;
        if (dt == AD_FLOAT32) {
            const float *f = p;
            for (int64_t i = 0; i < n; i++) s += (double)f[i] * (double)f[i];
        } else {
            const double *d = p;
            for (int64_t i = 0; i < n; i++) s += d[i] * d[i];
        }
        return s;
    }
    double *v = ad_malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return ad_set_error("%s: out of memory for %lld elements", fn, (long long)n);
    if (ad_to_array(t, v) != 0) {
        ad_free(v);
        return -1;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += v[i] * v[i];
    ad_free(v);
    return s;
}

/* max_i |t_i| (NaN if one is NaN) into *max, and sum_i (k t_i)^2 into
 * *sum (when sum is not NULL), in double: the sum of squares of a
 * gradient whose squares overflow, scaled by k = 1 / max.  -1 on error. */
int nn__scaled_sum_sq(const char *fn, const ad_tensor *t, double k, double *max, double *sum)
{
    int64_t n = ad_numel(t);
    double *v = ad_malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    if (!v) return ad_set_error("%s: out of memory for %lld elements", fn, (long long)n);
    if (ad_to_array(t, v) != 0) {
        ad_free(v);
        return -1;
    }
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs(v[i]);
        m = a > m || a != a ? a : m;
        s += (k * v[i]) * (k * v[i]);
    }
    ad_free(v);
    *max = m;
    if (sum) *sum = s;
    return 0;
}

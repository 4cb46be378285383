#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
/* tests/optest.c - helpers shared by the test programs. */
#include "optest.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ad_tensor *ot_f64(ad_tape *t, int ndim, const int64_t *shape, const double *values)
{
    return ad_from_array(t, AD_FLOAT64, ndim, shape, values);
}

double ot_at(const ad_tensor *x, int64_t flat)
{
    int64_t n = ad_numel(x);
    ck_assert_msg(flat >= 0 && flat < n, "ot_at: %lld out of %lld", (long long)flat, (long long)n);
    double *buf = malloc((size_t)n * sizeof *buf);
    ck_assert(buf != NULL);
    ck_assert_int_eq(ad_to_array(x, buf), 0);
    double v = buf[flat];
    free(buf);
    return v;
}

ad_tensor *ot_const_like(ad_tensor *x, int ndim, const int64_t *shape, const double *values)
{
    ad_tensor *c = ad_empty(ad_tensor_tape(x), ad_tensor_dtype(x), ndim, shape);
    if (!c) return NULL;
    int64_t n = ad_numel(c);
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[AD_MAX_DIMS], r = i;
        for (int d = ndim - 1; d >= 0; d--) {
            idx[d] = r % shape[d];
            r /= shape[d];
        }
        ad_set(c, idx, values[i]);
    }
    return c;
}

ad_tensor *ot_index(ad_tape *t, int ndim, const int64_t *shape, const int64_t *values)
{
    return ad_from_array(t, AD_INT64, ndim, shape, values);
}

ad_tape *ot_tape;

void ot_tape_setup(void)
{
    ot_tape = ad_tape_new();
    ck_assert(ot_tape != NULL);
    ad_tape_activate(ot_tape);
    ad_clear_error();
}

void ot_tape_teardown(void)
{
    ad_tape_activate(NULL);
    ad_tape_free(ot_tape);
    ot_tape = NULL;
}

void ot_assert_shape(const ad_tensor *x, int ndim, const int64_t *shape)
{
    ck_assert_msg(x != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_ndim(x), ndim);
    for (int d = 0; d < ndim; d++) ck_assert_int_eq(ad_shape(x)[d], shape[d]);
}

void ot_assert_values(const ad_tensor *x, const double *want, int64_t n, double tol)
{
    ck_assert_msg(x != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_numel(x), n);
    for (int64_t i = 0; i < n; i++) ck_assert_close(ot_at(x, i), want[i], tol);
}

int ot_make_tmpdir(char *buf, size_t size, const char *prefix)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, size, "%s/%s_XXXXXX", base && *base ? base : "/tmp", prefix);
    return mkdtemp(buf) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void ot_remove_tree(const char *dir)
{
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int ot_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

FILE *ot_open_source(const char *sub, const char *name)
{
    char src[1024], path[4096];
    snprintf(src, sizeof src, "%s", __FILE__);
    char *slash = strrchr(src, '/');
    if (!slash) return NULL;
    *slash = '\0'; /* .../tests */
    slash = strrchr(src, '/');
    if (slash) *slash = '\0';
    else strcpy(src, ".");
    snprintf(path, sizeof path, "%s/%s/%s", src, sub, name);
    FILE *f = fopen(path, "r");
    if (f || src[0] == '/') return f;
    /* relative to the build root: the binary is in <build>/tests */
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    for (int up = 0; up < 2; up++) {
        char *s = strrchr(exe, '/');
        if (s) *s = '\0';
    }
    snprintf(path, sizeof path, "%s/%s/%s/%s", exe, src, sub, name);
    return fopen(path, "r");
}

void ad__isa_testing_reread(void); /* isa.c (internal) */

char *ot_isa_hold(const char *name)
{
    const char *was = getenv("AD_ISA");
    char *saved = was ? strdup(was) : NULL;
    setenv("AD_ISA", name, 1);
    ad__isa_testing_reread();
    return saved;
}

void ot_isa_release(char *saved)
{
    if (saved) setenv("AD_ISA", saved, 1);
    else unsetenv("AD_ISA");
    ad__isa_testing_reread();
    free(saved);
}

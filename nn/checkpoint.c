/* nn/checkpoint.c - safetensors files (nn/checkpoint.h).
 *
 * The header's JSON is parsed in safetensors_json.c; this file checks the
 * layout it describes (sizes agree with dtypes and shapes, entries tile the
 * data section without gaps or overlaps), reads and writes the data, and
 * makes a load all-or-nothing. */
#define _POSIX_C_SOURCE 200809L /* fseeko, fstat */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "checkpoint.h"
#include "internal.h"
/* ---- dtypes ---------------------------------------------------------------- */

static const char *st_name(ad_dtype d)
{
    return d == AD_FLOAT32 ? "F32" : d == AD_FLOAT64 ? "F64" : d == AD_INT64 ? "I64" : NULL;
}

static int st_to_ad(const char *name, ad_dtype *d)
{
    if (strcmp(name, "F32") == 0) *d = AD_FLOAT32;
    else if (strcmp(name, "F64") == 0) *d = AD_FLOAT64;
    else if (strcmp(name, "I64") == 0) *d = AD_INT64;
    else return -1;
    return 0;
}

/* safetensors data is little-endian; a big-endian host swaps each element
 * on the way in and out. */
static void to_le(void *data, size_t count, size_t esize)
{
    if (nn__little_endian() || esize == 1) return;
    uint8_t *p = data;
    for (size_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* "[2,3]" */
static void fmt_shape(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ",%lld" : "%lld",
                                 (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

/* ---- checking the layout ------------------------------------------------------ */

static int by_offset(const void *a, const void *b)
{
    const nn_safetensors_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const nn_safetensors_entry *const *)a)->name,
                  (*(const nn_safetensors_entry *const *)b)->name);
}

/* Every entry's size agrees with its dtype and shape; names are unique;
 * the entries tile the data section exactly. */
static int check_layout(const char *fn, const char *path, nn_safetensors_info *info)
{
    char sh[200];
    for (int i = 0; i < info->n; i++) {
        nn_safetensors_entry *e = &info->entries[i];
        uint64_t bytes = nn__st_dtype_size(e->dtype);
        bool overflow = false;
        for (int j = 0; j < e->ndim; j++) {
            uint64_t d = (uint64_t)e->shape[j];
            if (d != 0 && bytes > (uint64_t)INT64_MAX / d) overflow = true;
            else bytes *= d;
        }
        fmt_shape(e->ndim, e->shape, sh, sizeof sh);
        if (overflow)
            return nn__err(fn, "%s: entry '%.60s' has shape %s, too many elements", path,
                           e->name, sh);
        if (e->end < e->begin)
            return nn__err(fn, "%s: entry '%.60s' has data_offsets [%llu, %llu], end before "
                               "begin", path, e->name, (unsigned long long)e->begin,
                           (unsigned long long)e->end);
        if (e->end - e->begin != bytes)
            return nn__err(fn, "%s: entry '%.60s' is %s %s = %llu bytes, but its data_offsets "
                               "[%llu, %llu] span %llu", path, e->name, e->dtype, sh,
                           (unsigned long long)bytes, (unsigned long long)e->begin,
                           (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
    }
    if (info->n > 1) {
        const nn_safetensors_entry **v = ad_malloc((size_t)info->n * sizeof *v);
        if (!v) return nn__err(fn, "out of memory");
        for (int i = 0; i < info->n; i++) v[i] = &info->entries[i];
        qsort(v, (size_t)info->n, sizeof *v, by_name);
        for (int i = 1; i < info->n; i++)
            if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
                nn__err(fn, "%s: entry '%.60s' appears twice", path, v[i]->name);
                ad_free(v);
                return -1;
            }
        ad_free(v);
    }
    if (info->n > 1) qsort(info->entries, (size_t)info->n, sizeof *info->entries, by_offset);
    uint64_t at = 0;
    for (int i = 0; i < info->n; i++) {
        const nn_safetensors_entry *e = &info->entries[i];
        if (e->begin < at)
            return nn__err(fn, "%s: the data of '%.60s' [%llu, %llu] and '%.60s' [%llu, %llu] "
                               "overlap", path, info->entries[i - 1].name,
                           (unsigned long long)info->entries[i - 1].begin,
                           (unsigned long long)info->entries[i - 1].end, e->name,
                           (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->begin > at)
            return nn__err(fn, "%s: bytes [%llu, %llu) of the data belong to no entry (a gap "
                               "before '%.60s')", path, (unsigned long long)at,
                           (unsigned long long)e->begin, e->name);
        at = e->end;
    }
    if (at > info->data_size)
        return nn__err_io(fn, "%s is truncated: its entries need %llu bytes of data, the file has "
                           "%llu", path, (unsigned long long)at,
                       (unsigned long long)info->data_size);
    if (at < info->data_size)
        return nn__err(fn, "%s has %llu bytes of trailing data after the %llu its entries use",
                       path, (unsigned long long)(info->data_size - at), (unsigned long long)at);
    return 0;
}

static void free_meta(nn_safetensors_info *info)
{
    for (int i = 0; i < info->n_metadata; i++) {
        ad_free(info->metadata_keys[i]);
        ad_free(info->metadata_values[i]);
    }
    ad_free(info->metadata_keys);
    ad_free(info->metadata_values);
}

void nn_safetensors_info_free(nn_safetensors_info *info)
{
    if (!info) return;
    for (int i = 0; i < info->n; i++) ad_free(info->entries[i].name);
    ad_free(info->entries);
    free_meta(info);
    ad_free(info);
}

/* Opens path and reads and checks its header.  On success *f is left open
 * for reading the data. */
static nn_safetensors_info *read_header(const char *fn, const char *path, FILE **f)
{
    *f = NULL;
    if (!path) {
        nn__err(fn, "path is NULL");
        return NULL;
    }
    FILE *file = fopen(path, "rb");
    if (!file) {
        nn__err_io(fn, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    uint8_t len8[8];
    unsigned char *buf = NULL;
    nn_safetensors_info *info = NULL;
    if (fstat(fileno(file), &st) != 0) {
        nn__err_io(fn, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        if (size == 0) nn__err(fn, "%s is empty", path);
        else nn__err_io(fn, "%s is truncated: %llu bytes, less than the 8-byte header length",
                     path, (unsigned long long)size);
        goto fail;
    }
    if (fread(len8, 1, 8, file) != 8) {
        nn__err_io(fn, "cannot read %s", path);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > NN_SAFETENSORS_MAX_HEADER) {
        nn__err_io(fn, "%s: header length %llu is absurd (the limit is %u): not a safetensors "
                    "file, or a corrupt one", path, (unsigned long long)n,
                NN_SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    if (n < 2) {
        nn__err_io(fn, "%s: header length %llu is too short for a JSON object", path,
                (unsigned long long)n);
        goto fail;
    }
    if (n > size - 8) {
        nn__err_io(fn, "%s is truncated: the header length says %llu bytes, only %llu follow",
                path, (unsigned long long)n, (unsigned long long)(size - 8));
        goto fail;
    }
    buf = ad_malloc((size_t)n);
    info = ad_calloc(1, sizeof *info);
    if (!buf || !info) {
        nn__err(fn, "out of memory");
        goto fail;
    }
    if (fread(buf, 1, (size_t)n, file) != (size_t)n) {
        nn__err_io(fn, "cannot read %s: %s", path, ferror(file) ? strerror(errno) : "file shrank");
        goto fail;
    }
    info->header_size = n;
    info->data_size = size - 8 - n;
    if (nn__st_parse_header(fn, path, buf, (size_t)n, info) || check_layout(fn, path, info))
        goto fail;
    ad_free(buf);
    *f = file;
    return info;
fail:
    ad_free(buf);
    nn_safetensors_info_free(info);
    fclose(file);
    return NULL;
}

nn_safetensors_info *nn_safetensors_inspect(const char *path)
{
    FILE *f;
    nn_safetensors_info *info = read_header("nn_safetensors_inspect", path, &f);
    if (f) fclose(f);
    return info;
}

const char *nn_safetensors_metadata(const nn_safetensors_info *info, const char *key)
{
    static const char *fn = "nn_safetensors_metadata";
    if (!info || !key) {
        nn__err(fn, "%s is NULL", !info ? "info" : "key");
        return NULL;
    }
    for (int i = 0; i < info->n_metadata; i++)
        if (strcmp(info->metadata_keys[i], key) == 0) return info->metadata_values[i];
    nn__err(fn, "no metadata key '%.60s' (the header has %d)", key, info->n_metadata);
    return NULL;
}

/* Reads entry e's data into a new persistent tensor. */
static ad_tensor *read_entry(const char *fn, const char *path, FILE *f,
                             const nn_safetensors_info *info, const nn_safetensors_entry *e)
{
    ad_dtype dt;
    if (st_to_ad(e->dtype, &dt)) {
        nn__err(fn, "%s: entry '%.60s' has dtype %s; only F32, F64 and I64 can be loaded", path,
                e->name, e->dtype);
        return NULL;
    }
    ad_tensor *t = ad_empty(NULL, dt, e->ndim, e->shape);
    if (!t) { /* a shape the core cannot hold (an extent near 2^63 beside a 0) */
        nn__err(fn, "%s: entry '%.60s': %s", path, e->name, ad_error() ? ad_error() : "failed");
        return NULL;
    }
    size_t bytes = (size_t)(e->end - e->begin);
    if (bytes == 0) return t;
    void *d = ad_data(t);
    if (fseeko(f, (off_t)(8 + info->header_size + e->begin), SEEK_SET) != 0 ||
        fread(d, 1, bytes, f) != bytes) {
        nn__err_io(fn, "cannot read '%.60s' from %s: %s", e->name, path,
                ferror(f) ? strerror(errno) : "the file shrank");
        ad_tensor_free(t);
        return NULL;
    }
    to_le(d, bytes / ad_dtype_size(dt), ad_dtype_size(dt));
    return t;
}

static const nn_safetensors_entry *find_entry(const nn_safetensors_info *info, const char *name)
{
    for (int i = 0; i < info->n; i++)
        if (strcmp(info->entries[i].name, name) == 0) return &info->entries[i];
    return NULL;
}

/* The file's entry names, as an array for nn__name_list (owned by info). */
static const char **entry_names(const nn_safetensors_info *info)
{
    const char **v = ad_calloc((size_t)info->n + 1, sizeof *v);
    for (int i = 0; v && i < info->n; i++) v[i] = info->entries[i].name;
    return v;
}

/* "has no entry 'X'", with the names the file has, and a hint when they
 * differ from the requested one by a prefix (a model saved inside a
 * wrapper module: "model.0.weight" for "0.weight"). */
static int missing(const char *fn, const char *path, const nn_safetensors_info *info,
                   const char *name)
{
    const char **v = entry_names(info);
    char list[700], hint[300] = "";
    nn__name_list(list, sizeof list, v ? info->n : 0, v);
    size_t ln = strlen(name);
    for (int i = 0; i < info->n && !hint[0]; i++) {
        const char *f = info->entries[i].name;
        size_t lf = strlen(f);
        if (lf > ln + 1 && !strcmp(f + lf - ln, name) && f[lf - ln - 1] == '.')
            snprintf(hint, sizeof hint, "; the file's '%.100s' has a prefix '%.*s' that the model's "
                     "names lack (rename the entries, or save the inner model's state_dict)",
                     f, (int)(lf - ln), f);
        else if (ln > lf + 1 && !strcmp(name + ln - lf, f) && name[ln - lf - 1] == '.')
            snprintf(hint, sizeof hint, "; the model's '%.100s' has a prefix '%.*s' that the "
                     "file's '%.100s' lacks", name, (int)(ln - lf), name, f);
    }
    ad_free(v);
    return nn__err(fn, "%s has no entry '%.60s'; the file has %d: %s%s", path, name, info->n,
                   list, hint);
}

ad_tensor *nn_safetensors_read(const char *path, const char *name)
{
    static const char *fn = "nn_safetensors_read";
    FILE *f;
    nn_safetensors_info *info = read_header(fn, path, &f);
    if (!info) return NULL;
    ad_tensor *t = NULL;
    const nn_safetensors_entry *e = name ? find_entry(info, name) : NULL;
    if (!name) nn__err(fn, "name is NULL");
    else if (!e) missing(fn, path, info, name);
    else t = read_entry(fn, path, f, info, e);
    fclose(f);
    nn_safetensors_info_free(info);
    return t;
}

/* Checks one requested (name, tensor) against the file's entry. */
static int check_request(const char *fn, const char *path, const nn_safetensors_info *info,
                         int i, const char *name, ad_tensor *t, const nn_safetensors_entry **out)
{
    if (!name) return nn__err(fn, "names[%d] is NULL", i);
    if (!t) return nn__err(fn, "tensors[%d] ('%.60s') is NULL", i, name);
    if (ad_ndim(t) < 0) return -1; /* not a live tensor; the core said why */
    const nn_safetensors_entry *e = find_entry(info, name);
    if (!e) return missing(fn, path, info, name);
    const char *want = st_name(ad_tensor_dtype(t));
    char a[200], b[200];
    fmt_shape(e->ndim, e->shape, a, sizeof a);
    fmt_shape(ad_ndim(t), ad_shape(t), b, sizeof b);
    if (!want || strcmp(want, e->dtype) != 0)
        return nn__err(fn, "%s: '%.60s' is %s in the file, the tensor is %s", path, name,
                       e->dtype, ad_dtype_name(ad_tensor_dtype(t)));
    if (strcmp(a, b) != 0)
        return nn__err(fn, "%s: '%.60s' has shape %s in the file, the tensor is %s", path, name,
                       a, b);
    /* refused here, not when writing (after other tensors were written) */
    for (int d = 0; d < ad_ndim(t); d++)
        if (ad_shape(t)[d] > 1 && ad_strides(t)[d] == 0)
            return nn__err(fn, "tensors[%d] ('%.60s') %s is an expanded view (stride 0 in "
                               "dimension %d): several of its elements are one place in memory",
                           i, name, b, d);
    *out = e;
    return 0;
}

int nn_load_safetensors(const char *path, int n, const char *const *names,
                        ad_tensor *const *tensors, bool strict)
{
    static const char *fn = "nn_load_safetensors";
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return nn__err(fn, "need n >= 0 and names and tensors (got n = %d)", n);
    FILE *f;
    nn_safetensors_info *info = read_header(fn, path, &f);
    if (!info) return -1;
    ad_tensor **tmp = ad_calloc(n > 0 ? (size_t)n : 1, sizeof *tmp);
    const nn_safetensors_entry **ent = ad_calloc(n > 0 ? (size_t)n : 1, sizeof *ent);
    int rc = tmp && ent ? 0 : nn__err(fn, "out of memory");
    /* 1. everything is checked before anything is read ... */
    for (int i = 0; rc == 0 && i < n; i++) {
        for (int j = 0; rc == 0 && names[i] && j < i; j++)
            if (strcmp(names[j], names[i]) == 0)
                rc = nn__err(fn, "'%.60s' is asked for twice (names[%d] and names[%d])",
                             names[i], j, i);
        if (rc == 0) rc = check_request(fn, path, info, i, names[i], tensors[i], &ent[i]);
    }
    for (int k = 0; rc == 0 && strict && k < info->n; k++) {
        bool asked = false;
        for (int i = 0; i < n && !asked; i++) asked = ent[i] == &info->entries[k];
        if (!asked) {
            char list[700];
            nn__name_list(list, sizeof list, n, names);
            rc = nn__err(fn, "%s has an entry '%.60s' that is not among the %d names asked for "
                             "(a strict load refuses entries it does not load); asked for: %s",
                         path, info->entries[k].name, n, list);
        }
    }
    /* 2. ... everything is read before anything is written ... */
    for (int i = 0; rc == 0 && i < n; i++)
        if (!(tmp[i] = read_entry(fn, path, f, info, ent[i]))) rc = -1;
    /* 3. ... and the writing cannot fail: same dtype, same shape. */
    for (int i = 0; rc == 0 && i < n; i++) {
        if (ad_numel(tmp[i]) == 0) continue;
        if (ad_is_contiguous(tensors[i])) {
            memcpy(ad_data(tensors[i]), ad_data(tmp[i]),
                   (size_t)ad_numel(tmp[i]) * ad_dtype_size(ad_tensor_dtype(tmp[i])));
            ad_mark_modified(tensors[i]);
        } else
            rc = ad_copy_into(tensors[i], tmp[i]);
    }
    for (int i = 0; tmp && i < n; i++) ad_tensor_free(tmp[i]);
    ad_free(tmp);
    ad_free(ent);
    fclose(f);
    nn_safetensors_info_free(info);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = ad_realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* s as a JSON string: quotes, backslashes and control characters escaped,
 * everything else (UTF-8 included) as it is. */
static void sb_json(sbuf *b, const char *s)
{
    sb_str(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_str(b, esc);
        } else {
            sb_add(b, s, 1);
        }
    }
    sb_str(b, "\"");
}

/* Writes t's elements, little-endian.  Returns -1 for a write error (errno
 * says which) and -2 when a contiguous copy could not be made (ad_error()
 * says why). */
static int write_data(FILE *f, ad_tensor *t)
{
    int64_t numel = ad_numel(t);
    if (numel == 0) return 0;
    ad_tensor *c = ad_is_contiguous(t) ? t : ad_copy(NULL, t);
    if (!c) return -2;
    size_t es = ad_dtype_size(ad_tensor_dtype(c)), total = (size_t)numel * es;
    const char *d = ad_data(c);
    int rc = 0;
    if (nn__little_endian()) {
        rc = fwrite(d, 1, total, f) == total ? 0 : -1;
    } else {
        char buf[1 << 14];
        for (size_t at = 0; rc == 0 && at < total; at += sizeof buf) {
            size_t len = total - at < sizeof buf ? total - at : sizeof buf;
            memcpy(buf, d + at, len);
            to_le(buf, len / es, es);
            rc = fwrite(buf, 1, len, f) == len ? 0 : -1;
        }
    }
    if (c != t) ad_tensor_free(c);
    return rc;
}

/* Builds the header: metadata first, then the entries in order. */
static int build_header(const char *fn, sbuf *h, int n, const char *const *names,
                        ad_tensor *const *tensors, const nn_safetensors_info *meta)
{
    sb_str(h, "{");
    if (meta) {
        sb_str(h, "\"__metadata__\":{");
        for (int i = 0; i < meta->n_metadata; i++) {
            if (i) sb_str(h, ",");
            sb_json(h, meta->metadata_keys[i]);
            sb_str(h, ":");
            sb_json(h, meta->metadata_values[i]);
        }
        sb_str(h, "}");
        if (n > 0) sb_str(h, ",");
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        ad_tensor *t = tensors[i];
        char num[64];
        if (i) sb_str(h, ",");
        sb_json(h, names[i]);
        sb_str(h, ":{\"dtype\":\"");
        sb_str(h, st_name(ad_tensor_dtype(t)));
        sb_str(h, "\",\"shape\":[");
        for (int j = 0; j < ad_ndim(t); j++) {
            snprintf(num, sizeof num, j ? ",%lld" : "%lld", (long long)ad_size(t, j));
            sb_str(h, num);
        }
        uint64_t bytes = (uint64_t)ad_numel(t) * ad_dtype_size(ad_tensor_dtype(t));
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                 (unsigned long long)(at + bytes));
        sb_str(h, num);
        at += bytes;
    }
    sb_str(h, "}");
    /* so the data starts 8-byte aligned (once out of memory the buffer no
     * longer grows: stop, or this would never end) */
    while (!h->oom && h->n % 8) sb_str(h, " ");
    return h->oom ? nn__err(fn, "out of memory") : 0;
}

int nn_save_safetensors(const char *path, int n, const char *const *names,
                        ad_tensor *const *tensors, const char *metadata_json)
{
    static const char *fn = "nn_save_safetensors";
    if (!path) return nn__err(fn, "path is NULL");
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return nn__err(fn, "need n >= 0 and names and tensors (got n = %d)", n);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i])
            return nn__err(fn, "names[%d] is %s", i, names[i] ? "empty" : "NULL");
        if (strcmp(names[i], "__metadata__") == 0)
            return nn__err(fn, "names[%d] is \"__metadata__\", which the format reserves", i);
        if (nn__utf8_check((const unsigned char *)names[i], strlen(names[i])) != strlen(names[i]))
            return nn__err(fn, "names[%d] is not valid UTF-8", i);
        if (!tensors[i]) return nn__err(fn, "tensors[%d] ('%.60s') is NULL", i, names[i]);
        if (ad_ndim(tensors[i]) < 0) return -1;
        for (int j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0)
                return nn__err(fn, "'%.60s' is names[%d] and names[%d]", names[i], j, i);
    }
    nn_safetensors_info meta = {0};
    if (metadata_json && nn__st_parse_metadata(fn, metadata_json, &meta)) {
        free_meta(&meta);
        return -1;
    }
    sbuf h = {0};
    int rc = build_header(fn, &h, n, names, tensors, metadata_json ? &meta : NULL);
    free_meta(&meta);
    nn__atomic a;
    if (rc == 0) rc = nn__atomic_open(fn, path, &a);
    if (rc != 0) {
        ad_free(h.s);
        return -1;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (fwrite(len8, 1, 8, a.f) != 8 || fwrite(h.s, 1, h.n, a.f) != h.n) rc = -1;
    ad_free(h.s);
    errno = 0;
    for (int i = 0; rc == 0 && i < n; i++) rc = write_data(a.f, tensors[i]);
    if (rc != 0) {
        int e = errno;
        nn__atomic_abort(&a);
        if (rc == -2) return -1;
        return nn__err_io(fn, "cannot write %s: %s", path, e ? strerror(e) : "write error");
    }
    return nn__atomic_commit(fn, &a);
}

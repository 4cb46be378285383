/* nn/checkpoint.c - safetensors files (nn/checkpoint.h).
 *
 * The header is parsed by a small strict JSON reader written for exactly
 * this header - an object of objects, strings with escapes, arrays of
 * non-negative integers, and the "__metadata__" map of strings - rather
 * than a general JSON library: a checkpoint comes from disk or from the
 * network, and everything the format does not allow (floats, negative
 * extents, unknown keys, duplicates, offsets that overlap or leave gaps) is
 * refused with its position instead of being half-understood. */
#define _POSIX_C_SOURCE 200809L /* fseeko, fstat */

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "checkpoint.h"
#include "internal.h"

/* ---- dtypes ---------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8},  {"I64", 8},     {"U64", 8},
};

static size_t st_dtype_size(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return st_dtypes[i].size;
    return 0;
}

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

/* JSON text must be UTF-8; the reference reader refuses anything else, so
 * we refuse to read or write it too.  Returns the offset of the first bad
 * byte, or n. */
static size_t utf8_check(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = s[i], min;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000, c &= 0x07;
        } else {
            return i;
        }
        if (len > n - i) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            c = c << 6 | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

/* ---- the JSON reader -------------------------------------------------------- */

typedef struct jp {
    const char *fn, *where;     /* for messages: "model.st: corrupt header" */
    const unsigned char *s;
    size_t n, i;
    char tok[24];               /* what was found, for messages */
} jp;

static int jp_err(jp *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int jp_err(jp *p, const char *fmt, ...)
{
    char msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nn__err(p->fn, "%s at byte %zu: %s", p->where, p->i, msg);
}

static void jp_ws(jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

static const char *jp_found(jp *p)
{
    if (p->i >= p->n) return "the end";
    unsigned c = p->s[p->i];
    if (c >= 0x20 && c < 0x7F) snprintf(p->tok, sizeof p->tok, "'%c'", (char)c);
    else snprintf(p->tok, sizeof p->tok, "byte 0x%02x", c);
    return p->tok;
}

static int jp_expect(jp *p, char c)
{
    jp_ws(p);
    if (p->i >= p->n || p->s[p->i] != (unsigned char)c)
        return jp_err(p, "expected '%c', found %s", c, jp_found(p));
    p->i++;
    return 0;
}

/* After a member: returns 1 for ',' (another follows), 0 for the closing
 * brace or bracket, -1 for anything else. */
static int jp_next(jp *p, char close)
{
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == ',') return p->i++, 1;
    if (p->i < p->n && p->s[p->i] == (unsigned char)close) return p->i++, 0;
    return jp_err(p, "expected ',' or '%c', found %s", close, jp_found(p));
}

static int hex4(const unsigned char *s, uint32_t *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned c = s[k], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        *v = *v << 4 | d;
    }
    return 0;
}

/* A string, decoded into a new NUL-terminated buffer (*out, malloc'd). */
static int jp_string(jp *p, char **out)
{
    *out = NULL;
    if (jp_expect(p, '"')) return -1;
    size_t end = p->i; /* find the closing quote first: the decoded text is no longer */
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return jp_err(p, "unterminated string");
    char *o = malloc(end - p->i + 1), *w = o;
    if (!o) return nn__err(p->fn, "out of memory");
    while (p->i < end) {
        unsigned c = p->s[p->i];
        if (c < 0x20) {
            free(o);
            return jp_err(p, "control character 0x%02x in a string", c);
        }
        if (c != '\\') {
            *w++ = (char)c, p->i++;
            continue;
        }
        unsigned e = p->s[p->i + 1];
        const char *simple = strchr("\"\\/bfnrt", (int)e);
        if (e && simple) {
            *w++ = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            p->i += 2;
            continue;
        }
        uint32_t cp, lo;
        if (e != 'u' || p->i + 6 > end || hex4(p->s + p->i + 2, &cp)) {
            free(o);
            return jp_err(p, "invalid escape in a string");
        }
        p->i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair: \uD83D\uDE00 */
            if (p->i + 6 > end || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
                hex4(p->s + p->i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                free(o);
                return jp_err(p, "unpaired surrogate \\u%04X in a string", cp);
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->i += 6;
        } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
            free(o);
            return jp_err(p, cp ? "unpaired surrogate in a string" : "\\u0000 in a string");
        }
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xC0 | cp >> 6), *w++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xE0 | cp >> 12), *w++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *w++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *w++ = (char)(0xF0 | cp >> 18), *w++ = (char)(0x80 | (cp >> 12 & 0x3F));
            *w++ = (char)(0x80 | (cp >> 6 & 0x3F)), *w++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    *w = '\0';
    p->i = end + 1;
    *out = o;
    return 0;
}

/* A non-negative integer of at most 2^63 - 1 (shapes and offsets). */
static int jp_uint(jp *p, uint64_t *v)
{
    jp_ws(p);
    size_t start = p->i;
    if (p->i < p->n && p->s[p->i] == '-') return jp_err(p, "negative number");
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
        return jp_err(p, "expected an integer, found %s", jp_found(p));
    *v = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        unsigned d = p->s[p->i] - '0';
        if (*v > ((uint64_t)INT64_MAX - d) / 10) return jp_err(p, "number too large");
        *v = *v * 10 + d;
        p->i++;
    }
    if (p->s[start] == '0' && p->i - start > 1) {
        p->i = start;
        return jp_err(p, "number with a leading zero");
    }
    if (p->i < p->n && p->s[p->i] && strchr(".eE", p->s[p->i]))
        return jp_err(p, "not an integer");
    return 0;
}

static int jp_uint_array(jp *p, uint64_t *out, int max, int *count)
{
    *count = 0;
    if (jp_expect(p, '[')) return -1;
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == ']') return p->i++, 0;
    for (;;) {
        if (*count == max) return jp_err(p, "more than %d values in an array", max);
        if (jp_uint(p, &out[(*count)++])) return -1;
        int r = jp_next(p, ']');
        if (r <= 0) return r;
    }
}

/* Appends a key and its value to info's metadata (taking both). */
static int push_meta(nn_safetensors_info *info, char *k, char *v)
{
    size_t n = (size_t)info->n_metadata + 1;
    char **keys = realloc(info->metadata_keys, n * sizeof *keys);
    if (keys) info->metadata_keys = keys;
    char **vals = keys ? realloc(info->metadata_values, n * sizeof *vals) : NULL;
    if (vals) info->metadata_values = vals;
    if (!keys || !vals) return -1;
    keys[n - 1] = k;
    vals[n - 1] = v;
    info->n_metadata++;
    return 0;
}

/* {"k": "v", ...} into info's metadata. */
static int jp_map(jp *p, nn_safetensors_info *info)
{
    if (jp_expect(p, '{')) return -1;
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') return p->i++, 0;
    for (;;) {
        char *k, *v = NULL;
        if (jp_string(p, &k)) return -1;
        int rc = 0;
        for (int j = 0; rc == 0 && j < info->n_metadata; j++)
            if (strcmp(info->metadata_keys[j], k) == 0)
                rc = jp_err(p, "metadata key '%.60s' appears twice", k);
        if (rc == 0) rc = jp_expect(p, ':');
        if (rc == 0) {
            jp_ws(p);
            if (p->i >= p->n || p->s[p->i] != '"')
                rc = jp_err(p, "the metadata value of '%.60s' must be a string, found %s", k,
                            jp_found(p));
        }
        if (rc == 0) rc = jp_string(p, &v);
        if (rc == 0 && push_meta(info, k, v)) rc = nn__err(p->fn, "out of memory");
        if (rc != 0) {
            free(k);
            free(v);
            return -1;
        }
        int r = jp_next(p, '}');
        if (r <= 0) return r;
    }
}

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]} */
static int jp_entry(jp *p, nn_safetensors_entry *e)
{
    bool seen[3] = {false, false, false};
    static const char *keys[3] = {"dtype", "shape", "data_offsets"};
    if (jp_expect(p, '{')) return -1;
    for (;;) {
        char *k;
        if (jp_string(p, &k)) return -1;
        int which = -1;
        for (int j = 0; j < 3; j++)
            if (strcmp(k, keys[j]) == 0) which = j;
        if (which < 0 || seen[which]) {
            jp_err(p, which < 0 ? "unknown key '%.40s' in entry '%.60s'"
                                : "key '%.40s' twice in entry '%.60s'", k, e->name);
            free(k);
            return -1;
        }
        free(k);
        seen[which] = true;
        if (jp_expect(p, ':')) return -1;
        uint64_t v[AD_MAX_DIMS];
        int count;
        if (which == 0) {
            char *d;
            if (jp_string(p, &d)) return -1;
            bool known = st_dtype_size(d) > 0;
            if (known) strcpy(e->dtype, d);
            else jp_err(p, "entry '%.60s' has unknown dtype '%.20s'", e->name, d);
            free(d);
            if (!known) return -1;
        } else if (which == 1) {
            if (jp_uint_array(p, v, AD_MAX_DIMS, &count)) return -1;
            e->ndim = count;
            for (int j = 0; j < count; j++) e->shape[j] = (int64_t)v[j];
        } else {
            if (jp_uint_array(p, v, 2, &count)) return -1;
            if (count != 2)
                return jp_err(p, "data_offsets of '%.60s' must be [begin, end]", e->name);
            e->begin = v[0], e->end = v[1];
        }
        int r = jp_next(p, '}');
        if (r < 0) return -1;
        if (r == 0) break;
    }
    for (int j = 0; j < 3; j++)
        if (!seen[j]) return jp_err(p, "entry '%.60s' lacks '%s'", e->name, keys[j]);
    return 0;
}

/* The whole header: {"name": entry, ..., "__metadata__": map}. */
static int jp_header(jp *p, nn_safetensors_info *info)
{
    int cap = 0;
    bool meta = false;
    if (jp_expect(p, '{')) return -1;
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') {
        p->i++;
    } else {
        for (;;) {
            char *k;
            if (jp_string(p, &k)) return -1;
            if (jp_expect(p, ':')) {
                free(k);
                return -1;
            }
            if (strcmp(k, "__metadata__") == 0) {
                free(k);
                if (meta) return jp_err(p, "__metadata__ appears twice");
                meta = true;
                if (jp_map(p, info)) return -1;
            } else {
                if (info->n == cap) {
                    cap = cap ? 2 * cap : 16;
                    void *e = realloc(info->entries, (size_t)cap * sizeof *info->entries);
                    if (!e) {
                        free(k);
                        return nn__err(p->fn, "out of memory");
                    }
                    info->entries = e;
                }
                nn_safetensors_entry *e = &info->entries[info->n++];
                memset(e, 0, sizeof *e);
                e->name = k;
                if (jp_entry(p, e)) return -1;
            }
            int r = jp_next(p, '}');
            if (r < 0) return -1;
            if (r == 0) break;
        }
    }
    jp_ws(p);
    if (p->i != p->n) return jp_err(p, "unexpected %s after the JSON object", jp_found(p));
    return 0;
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
        uint64_t bytes = st_dtype_size(e->dtype);
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
        const nn_safetensors_entry **v = malloc((size_t)info->n * sizeof *v);
        if (!v) return nn__err(fn, "out of memory");
        for (int i = 0; i < info->n; i++) v[i] = &info->entries[i];
        qsort(v, (size_t)info->n, sizeof *v, by_name);
        for (int i = 1; i < info->n; i++)
            if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
                nn__err(fn, "%s: entry '%.60s' appears twice", path, v[i]->name);
                free(v);
                return -1;
            }
        free(v);
    }
    qsort(info->entries, (size_t)info->n, sizeof *info->entries, by_offset);
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
        return nn__err(fn, "%s is truncated: its entries need %llu bytes of data, the file has "
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
        free(info->metadata_keys[i]);
        free(info->metadata_values[i]);
    }
    free(info->metadata_keys);
    free(info->metadata_values);
}

void nn_safetensors_info_free(nn_safetensors_info *info)
{
    if (!info) return;
    for (int i = 0; i < info->n; i++) free(info->entries[i].name);
    free(info->entries);
    free_meta(info);
    free(info);
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
        nn__err(fn, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    uint8_t len8[8];
    unsigned char *buf = NULL;
    nn_safetensors_info *info = NULL;
    if (fstat(fileno(file), &st) != 0) {
        nn__err(fn, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        if (size == 0) nn__err(fn, "%s is empty", path);
        else nn__err(fn, "%s is truncated: %llu bytes, less than the 8-byte header length",
                     path, (unsigned long long)size);
        goto fail;
    }
    if (fread(len8, 1, 8, file) != 8) {
        nn__err(fn, "cannot read %s", path);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > NN_SAFETENSORS_MAX_HEADER) {
        nn__err(fn, "%s: header length %llu is absurd (the limit is %u): not a safetensors "
                    "file, or a corrupt one", path, (unsigned long long)n,
                NN_SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    if (n < 2) {
        nn__err(fn, "%s: header length %llu is too short for a JSON object", path,
                (unsigned long long)n);
        goto fail;
    }
    if (n > size - 8) {
        nn__err(fn, "%s is truncated: the header length says %llu bytes, only %llu follow",
                path, (unsigned long long)n, (unsigned long long)(size - 8));
        goto fail;
    }
    buf = malloc((size_t)n);
    info = calloc(1, sizeof *info);
    if (!buf || !info) {
        nn__err(fn, "out of memory");
        goto fail;
    }
    if (fread(buf, 1, (size_t)n, file) != (size_t)n) {
        nn__err(fn, "cannot read %s: %s", path, ferror(file) ? strerror(errno) : "file shrank");
        goto fail;
    }
    info->header_size = n;
    info->data_size = size - 8 - n;
    size_t bad = utf8_check(buf, (size_t)n);
    if (bad < n) {
        nn__err(fn, "%s: corrupt header: invalid UTF-8 at byte %zu", path, bad);
        goto fail;
    }
    char where[400];
    snprintf(where, sizeof where, "%s: corrupt header", path);
    jp p = {.fn = fn, .where = where, .s = buf, .n = (size_t)n};
    if (jp_header(&p, info) || check_layout(fn, path, info)) goto fail;
    free(buf);
    *f = file;
    return info;
fail:
    free(buf);
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
    for (int i = 0; info && key && i < info->n_metadata; i++)
        if (strcmp(info->metadata_keys[i], key) == 0) return info->metadata_values[i];
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
    if (!t) return NULL;
    size_t bytes = (size_t)(e->end - e->begin);
    if (bytes == 0) return t;
    void *d = ad_data(t);
    if (fseeko(f, (off_t)(8 + info->header_size + e->begin), SEEK_SET) != 0 ||
        fread(d, 1, bytes, f) != bytes) {
        nn__err(fn, "cannot read '%.60s' from %s: %s", e->name, path,
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

ad_tensor *nn_safetensors_read(const char *path, const char *name)
{
    static const char *fn = "nn_safetensors_read";
    FILE *f;
    nn_safetensors_info *info = read_header(fn, path, &f);
    if (!info) return NULL;
    ad_tensor *t = NULL;
    const nn_safetensors_entry *e = name ? find_entry(info, name) : NULL;
    if (!name) nn__err(fn, "name is NULL");
    else if (!e) nn__err(fn, "%s has no entry '%.60s'", path, name);
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
    if (!e) return nn__err(fn, "%s has no entry '%.60s'", path, name);
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
    ad_tensor **tmp = calloc(n > 0 ? (size_t)n : 1, sizeof *tmp);
    const nn_safetensors_entry **ent = calloc(n > 0 ? (size_t)n : 1, sizeof *ent);
    int rc = tmp && ent ? 0 : nn__err(fn, "out of memory");
    /* 1. everything is checked before anything is read ... */
    for (int i = 0; rc == 0 && i < n; i++) {
        rc = check_request(fn, path, info, i, names[i], tensors[i], &ent[i]);
        for (int j = 0; rc == 0 && j < i; j++)
            if (strcmp(names[j], names[i]) == 0)
                rc = nn__err(fn, "'%.60s' is asked for twice (names[%d] and names[%d])",
                             names[i], j, i);
    }
    for (int k = 0; rc == 0 && strict && k < info->n; k++) {
        bool asked = false;
        for (int i = 0; i < n && !asked; i++) asked = ent[i] == &info->entries[k];
        if (!asked)
            rc = nn__err(fn, "%s has an entry '%.60s' that is not among the %d names (pass "
                             "strict = false to ignore it)", path, info->entries[k].name, n);
    }
    /* 2. ... everything is read before anything is written ... */
    for (int i = 0; rc == 0 && i < n; i++)
        if (!(tmp[i] = read_entry(fn, path, f, info, ent[i]))) rc = -1;
    /* 3. ... and the writing cannot fail: same dtype, same shape. */
    for (int i = 0; rc == 0 && i < n; i++) {
        if (ad_numel(tmp[i]) == 0) continue;
        if (ad_is_contiguous(tensors[i]))
            memcpy(ad_data(tensors[i]), ad_data(tmp[i]),
                   (size_t)ad_numel(tmp[i]) * ad_dtype_size(ad_tensor_dtype(tmp[i])));
        else
            rc = ad_copy_into(tensors[i], tmp[i]);
    }
    for (int i = 0; tmp && i < n; i++) ad_tensor_free(tmp[i]);
    free(tmp);
    free(ent);
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
        char *p = realloc(b->s, cap);
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
    if (meta && meta->n_metadata >= 0) {
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
    while (h->n % 8) sb_str(h, " "); /* so the data starts 8-byte aligned */
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
        if (utf8_check((const unsigned char *)names[i], strlen(names[i])) != strlen(names[i]))
            return nn__err(fn, "names[%d] is not valid UTF-8", i);
        if (!tensors[i]) return nn__err(fn, "tensors[%d] ('%.60s') is NULL", i, names[i]);
        if (ad_ndim(tensors[i]) < 0) return -1;
        for (int j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0)
                return nn__err(fn, "'%.60s' is names[%d] and names[%d]", names[i], j, i);
    }
    nn_safetensors_info meta = {.n_metadata = -1};
    if (metadata_json) {
        size_t len = strlen(metadata_json);
        meta.n_metadata = 0;
        jp p = {.fn = fn, .where = "metadata_json is invalid",
                .s = (const unsigned char *)metadata_json, .n = len};
        if (utf8_check(p.s, len) != len) return nn__err(fn, "metadata_json is not valid UTF-8");
        int bad = jp_map(&p, &meta);
        if (!bad) {
            jp_ws(&p);
            if (p.i != p.n) bad = jp_err(&p, "unexpected %s after the object", jp_found(&p));
        }
        if (bad) {
            free_meta(&meta);
            return -1;
        }
    }
    sbuf h = {0};
    int rc = build_header(fn, &h, n, names, tensors, metadata_json ? &meta : NULL);
    free_meta(&meta);
    nn__atomic a;
    if (rc == 0) rc = nn__atomic_open(fn, path, &a);
    if (rc != 0) {
        free(h.s);
        return -1;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)h.n >> (8 * i));
    if (fwrite(len8, 1, 8, a.f) != 8 || fwrite(h.s, 1, h.n, a.f) != h.n) rc = -1;
    free(h.s);
    errno = 0;
    for (int i = 0; rc == 0 && i < n; i++) rc = write_data(a.f, tensors[i]);
    if (rc != 0) {
        int e = errno;
        nn__atomic_abort(&a);
        if (rc == -2) return -1;
        return nn__err(fn, "cannot write %s: %s", path, e ? strerror(e) : "write error");
    }
    return nn__atomic_commit(fn, &a);
}

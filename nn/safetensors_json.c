/* nn/safetensors_json.c - the strict JSON reader for safetensors headers.
 *
 * Written for exactly what the header holds - an object of objects,
 * strings with escapes, arrays of non-negative integers, and the
 * "__metadata__" map of strings - rather than taken from a general JSON
 * library: a checkpoint comes from disk or from the network, and whatever
 * the format does not allow (floats, negative extents, unknown or repeated
 * keys, bad escapes, invalid UTF-8) is refused with its byte position
 * instead of being half-understood.  The layout checks (sizes, offsets)
 * are in checkpoint.c. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

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

size_t nn__st_dtype_size(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return st_dtypes[i].size;
    return 0;
}

/* JSON text must be UTF-8; the reference reader refuses anything else, so
 * we refuse to read or write it too.  Returns the offset of the first bad
 * byte, or n. */
size_t nn__utf8_check(const unsigned char *s, size_t n)
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
    char *o = ad_malloc(end - p->i + 1), *w = o;
    if (!o) return nn__err(p->fn, "out of memory");
    while (p->i < end) {
        unsigned c = p->s[p->i];
        if (c < 0x20) {
            ad_free(o);
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
            ad_free(o);
            return jp_err(p, "invalid escape in a string");
        }
        p->i += 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair: \uD83D\uDE00 */
            if (p->i + 6 > end || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u' ||
                hex4(p->s + p->i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                ad_free(o);
                return jp_err(p, "unpaired surrogate \\u%04X in a string", cp);
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->i += 6;
        } else if ((cp >= 0xDC00 && cp <= 0xDFFF) || cp == 0) {
            ad_free(o);
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
    char **keys = ad_realloc(info->metadata_keys, n * sizeof *keys);
    if (keys) info->metadata_keys = keys;
    char **vals = keys ? ad_realloc(info->metadata_values, n * sizeof *vals) : NULL;
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
            ad_free(k);
            ad_free(v);
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
            ad_free(k);
            return -1;
        }
        ad_free(k);
        seen[which] = true;
        if (jp_expect(p, ':')) return -1;
        uint64_t v[AD_MAX_DIMS];
        int count;
        if (which == 0) {
            char *d;
            if (jp_string(p, &d)) return -1;
            bool known = nn__st_dtype_size(d) > 0;
            if (known) strcpy(e->dtype, d);
            else jp_err(p, "entry '%.60s' has unknown dtype '%.20s'", e->name, d);
            ad_free(d);
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
                ad_free(k);
                return -1;
            }
            if (strcmp(k, "__metadata__") == 0) {
                ad_free(k);
                if (meta) return jp_err(p, "__metadata__ appears twice");
                meta = true;
                if (jp_map(p, info)) return -1;
            } else {
                if (info->n == cap) {
                    cap = cap ? 2 * cap : 16;
                    void *e = ad_realloc(info->entries, (size_t)cap * sizeof *info->entries);
                    if (!e) {
                        ad_free(k);
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

int nn__st_parse_header(const char *fn, const char *path, const unsigned char *buf, size_t n,
                        nn_safetensors_info *info)
{
    size_t bad = nn__utf8_check(buf, n);
    if (bad < n) return nn__err(fn, "%s: corrupt header: invalid UTF-8 at byte %zu", path, bad);
    char where[400];
    snprintf(where, sizeof where, "%s: corrupt header", path);
    jp p = {.fn = fn, .where = where, .s = buf, .n = n};
    return jp_header(&p, info);
}

int nn__st_parse_metadata(const char *fn, const char *json, nn_safetensors_info *meta)
{
    size_t len = strlen(json);
    if (nn__utf8_check((const unsigned char *)json, len) != len)
        return nn__err(fn, "metadata_json is not valid UTF-8");
    jp p = {.fn = fn, .where = "metadata_json is invalid", .s = (const unsigned char *)json,
            .n = len};
    if (jp_map(&p, meta)) return -1;
    jp_ws(&p);
    if (p.i != p.n) return jp_err(&p, "unexpected %s after the object", jp_found(&p));
    return 0;
}

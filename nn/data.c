/* nn/data.c - IDX files (MNIST, Fashion-MNIST) and numeric CSV.
 *
 * Both readers are strict: a file that does not hold exactly what its
 * header (or its first row) promises is an error naming the file and the
 * place, never a silently shorter or padded data set.  A truncated
 * download of MNIST that loads as 59000 images trains fine and evaluates
 * wrong; better to refuse it. */
#define _POSIX_C_SOURCE 200809L /* getline, newlocale/uselocale, dup */

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data.h"
#include "internal.h"

/* ---- IDX ------------------------------------------------------------------ */

const char *nn_idx_type_name(nn_idx_type type)
{
    switch (type) {
    case NN_IDX_UINT8: return "ubyte";
    case NN_IDX_INT8: return "byte";
    case NN_IDX_INT16: return "short";
    case NN_IDX_INT32: return "int";
    case NN_IDX_FLOAT32: return "float";
    case NN_IDX_FLOAT64: return "double";
    }
    return "invalid";
}

size_t nn_idx_type_size(nn_idx_type type)
{
    switch (type) {
    case NN_IDX_UINT8:
    case NN_IDX_INT8: return 1;
    case NN_IDX_INT16: return 2;
    case NN_IDX_INT32:
    case NN_IDX_FLOAT32: return 4;
    case NN_IDX_FLOAT64: return 8;
    }
    ad_set_error("nn_idx_type_size: invalid type code 0x%02x", (unsigned)type);
    return 0;
}

/* "60000x28x28" */
static void fmt_dims(int ndim, const int64_t *dims, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < size; i++) {
        int n = snprintf(buf + used, size - used, i ? "x%lld" : "%lld", (long long)dims[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* Reverses the bytes of each element between the file's big-endian order
 * and a little-endian host (a big-endian host needs nothing). */
static void swap_bytes(uint8_t *p, int64_t count, size_t esize)
{
    if (esize == 1 || !nn__little_endian()) return;
    for (int64_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Reads up to n bytes and returns the count read: short only at the end
 * of the data, or when the gzip stream ends early (*cut is then set: zlib
 * says "unexpected end of file", and what was decompressed until then is
 * counted, as for a plain file cut short).  Returns -1 for other zlib
 * errors (a bad CRC, corrupt data), which *gzmsg then describes.  gzread
 * takes an unsigned count, hence the chunks. */
static int64_t gz_read_full(gzFile gz, void *buf, int64_t n, bool *cut, const char **gzmsg)
{
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got > (1 << 30) ? (1 << 30) : n - got;
        int r = gzread(gz, (char *)buf + got, (unsigned)want);
        if (r < 0) break;
        got += r;
        if (r < want) break;
    }
    int errnum = Z_OK;
    const char *msg = gzerror(gz, &errnum);
    if (errnum == Z_BUF_ERROR) {
        *cut = true;
    } else if (errnum != Z_OK && errnum != Z_STREAM_END) {
        *gzmsg = msg;
        return -1;
    }
    return got;
}

/* zlib's gz* layer allocates its state and buffers with zlib's own malloc
 * (gzopen and gzdopen take no allocator, and the z_stream inside, whose
 * zalloc/zfree could be set, is not exposed), so those allocations cannot
 * come from ad_malloc.  Opening a gzip stream is still counted as one of
 * the library's allocations - a probe through ad_malloc just before - so
 * that the fault injection of the tests reaches the failure path of every
 * open; a real out-of-memory inside zlib is reported the same way. */
static bool gz_alloc_probe(void)
{
    void *p = ad_malloc(1);
    if (!p) return false;
    ad_free(p);
    return true;
}

static nn_idx *idx_fail(gzFile gz, nn_idx *idx)
{
    if (gz) gzclose(gz);
    nn_idx_free(idx);
    return NULL;
}

/* One IDX file being read by nn_idx_load: the stream, what its header
 * says, and the state of gz_read_full shared by every read. */
typedef struct idx_reader {
    gzFile gz;
    const char *path;
    const char *gzmsg; /* a zlib error's message, when a read returns -1 */
    bool cut;          /* the gzip stream ended early */
    size_t esize;      /* bytes per element */
    int64_t nbytes;    /* of data, as the header says */
    char dims[160];    /* "60000x28x28" */
    char per[32];      /* " x 4 bytes", or "" for bytes */
} idx_reader;

static const char *const idx_fn = "nn_idx_load";

/* gz_read_full, with "cannot read" reported: returns -1 then. */
static int64_t idx_read(idx_reader *r, void *buf, int64_t n)
{
    int64_t got = gz_read_full(r->gz, buf, n, &r->cut, &r->gzmsg);
    if (got < 0) nn__err_io(idx_fn, "cannot read %s: %s", r->path, r->gzmsg);
    return got;
}

/* Opens path, plain or gzip; NULL with the error set. */
static gzFile idx_open(const char *path)
{
    if (!gz_alloc_probe()) {
        nn__err(idx_fn, "cannot open %s: out of memory", path);
        return NULL;
    }
    errno = 0;
    gzFile gz = gzopen(path, "rb"); /* reads plain files as they are */
    if (!gz) {
        nn__err_io(idx_fn, "cannot open %s: %s", path,
                   errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    gzbuffer(gz, 1u << 17);
    return gz;
}

/* The magic number, 00 00 <type> <ndim>, into head[0..3], idx->type,
 * idx->ndim and r->esize. */
static bool idx_read_magic(idx_reader *r, nn_idx *idx, uint8_t *head)
{
    const char *path = r->path;
    int64_t got = idx_read(r, head, 4);
    if (got < 0) return false;
    if (got == 0 && !r->cut) return nn__err(idx_fn, "%s is empty", path), false;
    if (got < 4) {
        nn__err_io(idx_fn, "%s is truncated: it has %lld of the 4 magic bytes%s", path,
                   (long long)got, r->cut ? " (the gzip stream ends early)" : "");
        return false;
    }
    if (head[0] != 0 || head[1] != 0) {
        nn__err_io(idx_fn, "%s is not an IDX file: bad magic %02x %02x %02x %02x, expected 00 "
                   "00 <type> <ndim>", path, head[0], head[1], head[2], head[3]);
        return false;
    }
    idx->type = (nn_idx_type)head[2];
    r->esize = nn_idx_type_size(idx->type);
    if (r->esize == 0) {
        nn__err_io(idx_fn, "%s: bad magic: unknown type code 0x%02x (expected 0x08 ubyte, "
                   "0x09 byte, 0x0b short, 0x0c int, 0x0d float or 0x0e double)", path,
                   head[2]);
        return false;
    }
    int ndim = head[3];
    if (ndim < 1 || ndim > NN_IDX_MAX_DIMS) {
        nn__err(idx_fn, "%s has %d dimensions; 1 to %d are supported", path, ndim,
                NN_IDX_MAX_DIMS);
        return false;
    }
    idx->ndim = ndim;
    return true;
}

/* The extents after the magic, into idx->dims, idx->numel and r->nbytes,
 * refused when their product cannot be held in memory. */
static bool idx_read_extents(idx_reader *r, nn_idx *idx, uint8_t *head)
{
    int ndim = idx->ndim;
    int64_t got = idx_read(r, head + 4, 4 * ndim);
    if (got < 0) return false;
    if (got < 4 * ndim) {
        nn__err_io(idx_fn, "%s is truncated: the header ends after %lld of its %d bytes of "
                   "extents", r->path, (long long)got, 4 * ndim);
        return false;
    }
    /* The product of up to eight 32-bit extents can exceed any memory:
     * refuse it before multiplying further, so nothing wraps around. */
    int64_t numel = 1;
    bool overflow = false, empty = false;
    for (int i = 0; i < ndim; i++) {
        const uint8_t *d = head + 4 + 4 * i;
        idx->dims[i] = (int64_t)((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 |
                                 (uint32_t)d[2] << 8 | d[3]);
        empty |= idx->dims[i] == 0; /* then the product is 0, however big the rest */
    }
    for (int i = 0; i < ndim && !empty && !overflow; i++) {
        if (numel > (INT64_MAX / (int64_t)r->esize) / idx->dims[i]) overflow = true;
        else numel *= idx->dims[i];
    }
    if (empty) numel = 0;
    fmt_dims(ndim, idx->dims, r->dims, sizeof r->dims);
    if (overflow || (uint64_t)numel * r->esize > SIZE_MAX) {
        nn__err(idx_fn, "%s: extents %s overflow: more elements than memory can hold", r->path,
                r->dims);
        return false;
    }
    idx->numel = numel;
    r->nbytes = numel * (int64_t)r->esize;
    if (r->esize > 1) snprintf(r->per, sizeof r->per, " x %zu bytes", r->esize);
    return true;
}

/* The r->nbytes bytes of data into idx->data. */
static bool idx_read_data(idx_reader *r, nn_idx *idx)
{
    int64_t nbytes = r->nbytes;
    /* Grow the buffer as data arrives instead of trusting the header with
     * one big allocation: a corrupt header claiming 16 GB of a 1 KB file
     * then fails as "truncated", not as "out of memory". */
    int64_t cap = nbytes < (1 << 26) ? nbytes : (1 << 26);
    idx->data = ad_malloc(cap > 0 ? (size_t)cap : 1);
    if (!idx->data) return nn__err(idx_fn, "out of memory for %lld bytes", (long long)cap), false;
    int64_t have = 0;
    while (have < nbytes && !r->cut) {
        if (have == cap) {
            cap = cap > nbytes / 2 ? nbytes : cap * 2;
            uint8_t *p = ad_realloc(idx->data, (size_t)cap);
            if (!p) {
                nn__err(idx_fn, "out of memory for %lld bytes", (long long)cap);
                return false;
            }
            idx->data = p;
        }
        int64_t want = cap - have;
        int64_t got = idx_read(r, idx->data + have, want);
        if (got < 0) return false;
        have += got;
        if (got < want) break; /* end of the data */
    }
    if (have < nbytes) {
        nn__err_io(idx_fn, "%s is truncated: header says %s%s = %lld bytes of data, file has "
                   "%lld%s", r->path, r->dims, r->per, (long long)nbytes, (long long)have,
                   r->cut ? " (the gzip stream ends early)" : "");
        return false;
    }
    return true;
}

/* Anything after the data is an error too: it means the header and the
 * file disagree, and which one is right cannot be known. */
static bool idx_check_end(idx_reader *r)
{
    /* Counted up to 1 MB only: a small .gz can inflate to gigabytes. */
    int64_t extra = 0, got;
    uint8_t tail[4096];
    for (;;) {
        if ((got = idx_read(r, tail, sizeof tail)) < 0) return false;
        extra += got;
        if (got < (int64_t)sizeof tail || extra >= (1 << 20)) break;
    }
    if (r->cut) {
        /* All the data arrived but not the gzip trailer with its CRC: the
         * data cannot be verified, so it is not used. */
        nn__err_io(idx_fn, "%s is truncated: the gzip stream ends before its checksum",
                   r->path);
        return false;
    }
    if (extra > 0) {
        nn__err(idx_fn, "%s has %s%lld bytes of trailing data after the %lld bytes of data "
                "its header (%s%s) describes", r->path, extra >= (1 << 20) ? "at least " : "",
                (long long)extra, (long long)r->nbytes, r->dims, r->per);
        return false;
    }
    return true;
}

nn_idx *nn_idx_load(const char *path)
{
    if (!path) {
        nn__err(idx_fn, "path is NULL");
        return NULL;
    }
    idx_reader r = {.path = path, .gzmsg = ""};
    if (!(r.gz = idx_open(path))) return NULL;
    nn_idx *idx = ad_calloc(1, sizeof *idx);
    if (!idx) {
        nn__err(idx_fn, "out of memory");
        return idx_fail(r.gz, idx);
    }
    uint8_t head[4 + 4 * NN_IDX_MAX_DIMS];
    if (!idx_read_magic(&r, idx, head) || !idx_read_extents(&r, idx, head) ||
        !idx_read_data(&r, idx) || !idx_check_end(&r))
        return idx_fail(r.gz, idx);
    int zrc = gzclose(r.gz);
    if (zrc != Z_OK) {
        nn__err_io(idx_fn, "cannot read %s: closing failed (zlib error %d)", path, zrc);
        return idx_fail(NULL, idx);
    }
    swap_bytes(idx->data, idx->numel, r.esize);
    return idx;
}

void nn_idx_free(nn_idx *idx)
{
    if (!idx) return;
    ad_free(idx->data);
    ad_free(idx);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Writes n bytes either to the gzip stream or to the plain file. */
static int put(gzFile gz, FILE *f, const void *p, size_t n)
{
    if (gz) {
        while (n > 0) {
            unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
            if (gzwrite(gz, p, chunk) != (int)chunk) return -1;
            p = (const char *)p + chunk;
            n -= chunk;
        }
        return 0;
    }
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

int nn__idx_check(const char *fn, const nn_idx *idx)
{
    size_t esize = nn_idx_type_size(idx->type);
    if (esize == 0) return nn__err(fn, "invalid type code 0x%02x", (unsigned)idx->type);
    if (idx->ndim < 1 || idx->ndim > NN_IDX_MAX_DIMS)
        return nn__err(fn, "ndim %d out of range 1..%d", idx->ndim, NN_IDX_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < idx->ndim; i++) {
        if (idx->dims[i] < 0 || idx->dims[i] > (int64_t)UINT32_MAX)
            return nn__err(fn, "extent %lld of dimension %d does not fit the format's 32 bits",
                           (long long)idx->dims[i], i);
        if (idx->dims[i] != 0 && numel > INT64_MAX / (int64_t)esize / idx->dims[i])
            return nn__err(fn, "too many elements");
        numel *= idx->dims[i];
    }
    if (numel != idx->numel)
        return nn__err(fn, "numel %lld differs from the product of the extents, %lld",
                       (long long)idx->numel, (long long)numel);
    if (numel > 0 && !idx->data) return nn__err(fn, "data is NULL");
    return 0;
}

int nn_idx_save(const char *path, const nn_idx *idx)
{
    static const char *fn = "nn_idx_save";
    if (!path || !idx) return nn__err(fn, "%s is NULL", !path ? "path" : "idx");
    if (nn__idx_check(fn, idx)) return -1;
    size_t esize = nn_idx_type_size(idx->type);
    int64_t numel = idx->numel;

    uint8_t head[4 + 4 * NN_IDX_MAX_DIMS] = {0, 0, (uint8_t)idx->type, (uint8_t)idx->ndim};
    for (int i = 0; i < idx->ndim; i++) {
        uint32_t d = (uint32_t)idx->dims[i];
        uint8_t *h = head + 4 + 4 * i;
        h[0] = (uint8_t)(d >> 24), h[1] = (uint8_t)(d >> 16), h[2] = (uint8_t)(d >> 8);
        h[3] = (uint8_t)d;
    }
    nn__atomic a;
    if (nn__atomic_open(fn, path, &a)) return -1;
    gzFile gz = NULL;
    if (ends_with(path, ".gz")) {
        /* gzclose closes the descriptor it was given; the atomic writer
         * still needs its own to fsync, so zlib gets a duplicate. */
        if (!gz_alloc_probe()) {
            nn__atomic_abort(&a);
            return nn__err(fn, "cannot start a gzip stream for %s: out of memory", path);
        }
        int fd = dup(fileno(a.f));
        gz = fd >= 0 ? gzdopen(fd, "wb") : NULL;
        if (!gz) {
            if (fd >= 0) close(fd);
            nn__atomic_abort(&a);
            return nn__err_io(fn, "cannot start a gzip stream for %s", path);
        }
    }
    int rc = put(gz, a.f, head, 4 + 4 * (size_t)idx->ndim);
    /* Big-endian on disk: convert through a small buffer rather than a
     * swapped copy of the whole array. */
    uint8_t buf[1 << 16];
    int64_t per = (int64_t)(sizeof buf / esize);
    for (int64_t i = 0; rc == 0 && i < numel; i += per) {
        int64_t n = numel - i < per ? numel - i : per;
        memcpy(buf, idx->data + i * (int64_t)esize, (size_t)n * esize);
        swap_bytes(buf, n, esize);
        rc = put(gz, a.f, buf, (size_t)n * esize);
    }
    if (gz && gzclose(gz) != Z_OK) rc = -1;
    if (rc != 0) {
        int e = errno;
        nn__atomic_abort(&a);
        return nn__err_io(fn, "cannot write %s: %s", path, e ? strerror(e) : "write error");
    }
    return nn__atomic_commit(fn, &a);
}

/* ---- MNIST ---------------------------------------------------------------- */

/* dir/name, or dir/name.gz when only that exists; NULL (error set) when
 * neither does. */
static char *find_file(const char *fn, const char *dir, const char *name)
{
    size_t size = strlen(dir) + strlen(name) + 8;
    char *p = ad_malloc(size);
    if (!p) {
        nn__err(fn, "out of memory");
        return NULL;
    }
    struct stat st;
    snprintf(p, size, "%s/%s", dir, name);
    if (stat(p, &st) == 0) return p;
    snprintf(p, size, "%s/%s.gz", dir, name);
    if (stat(p, &st) == 0) return p;
    nn__err(fn, "neither %s/%s nor %s/%s.gz exists", dir, name, dir, name);
    ad_free(p);
    return NULL;
}

static nn_idx *load_named(const char *fn, const char *dir, const char *name)
{
    char *p = find_file(fn, dir, name);
    if (!p) return NULL;
    nn_idx *idx = nn_idx_load(p);
    ad_free(p);
    return idx;
}

nn_mnist *nn_mnist_load(const char *dir, bool train)
{
    static const char *fn = "nn_mnist_load";
    if (!dir) {
        nn__err(fn, "dir is NULL");
        return NULL;
    }
    const char *set = train ? "train" : "t10k";
    char iname[64], lname[64];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", set);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", set);
    nn_mnist *m = ad_calloc(1, sizeof *m);
    if (!m) {
        nn__err(fn, "out of memory");
        return NULL;
    }
    m->images = load_named(fn, dir, iname);
    if (m->images) m->labels = load_named(fn, dir, lname);
    if (!m->labels) goto fail;
    const nn_idx *im = m->images, *lb = m->labels;
    if (im->type != NN_IDX_UINT8 || im->ndim != 3) {
        nn__err(fn, "%s/%s: expected ubyte images [N, rows, cols], got %s with %d dimensions",
                dir, iname, nn_idx_type_name(im->type), im->ndim);
        goto fail;
    }
    if (lb->type != NN_IDX_UINT8 || lb->ndim != 1) {
        nn__err(fn, "%s/%s: expected ubyte labels [N], got %s with %d dimensions", dir, lname,
                nn_idx_type_name(lb->type), lb->ndim);
        goto fail;
    }
    if (im->dims[0] != lb->dims[0]) {
        nn__err(fn, "%s: %lld images but %lld labels", dir, (long long)im->dims[0],
                (long long)lb->dims[0]);
        goto fail;
    }
    for (int64_t i = 0; i < lb->numel; i++)
        if (lb->data[i] >= 10) {
            nn__err(fn, "%s/%s: label %u at index %lld is not below 10", dir, lname,
                    lb->data[i], (long long)i);
            goto fail;
        }
    return m;
fail:
    nn_mnist_free(m);
    return NULL;
}

void nn_mnist_free(nn_mnist *m)
{
    if (!m) return;
    nn_idx_free(m->images);
    nn_idx_free(m->labels);
    ad_free(m);
}

/* ---- CSV ------------------------------------------------------------------ */

typedef struct csv_state {
    const char *path;
    long line;        /* 1-based number of the line being parsed */
    char delim;
    char **fields;    /* the fields of the current line (into its buffer) */
    size_t nfields, capfields;
} csv_state;

static bool is_space(char c, char delim) { return (c == ' ' || c == '\t') && c != delim; }

/* Splits line in place into cs->fields: quotes are removed ("" becomes ")
 * and each field is terminated. */
static int split_line(csv_state *cs, char *line)
{
    static const char *fn = "nn_csv_load";
    char *p = line;
    cs->nfields = 0;
    for (;;) {
        size_t col = cs->nfields + 1;
        while (is_space(*p, cs->delim)) p++;
        char *field = p, *w = p;
        if (*p == '"') {
            p++;
            for (;;) {
                if (*p == '\0')
                    return nn__err(fn, "%s line %ld, column %zu: unterminated quote", cs->path,
                                   cs->line, col);
                if (*p == '"') {
                    if (p[1] != '"') break;
                    p++;
                }
                *w++ = *p++;
            }
            p++; /* the closing quote */
            while (is_space(*p, cs->delim)) p++;
            if (*p != cs->delim && *p != '\0')
                return nn__err(fn, "%s line %ld, column %zu: text after the closing quote",
                               cs->path, cs->line, col);
        } else {
            while (*p != cs->delim && *p != '\0') p++;
            w = p;
            while (w > field && is_space(w[-1], cs->delim)) w--;
        }
        char next = *p;
        *w = '\0';
        if (cs->nfields == cs->capfields) {
            size_t cap = cs->capfields ? 2 * cs->capfields : 16;
            char **f = ad_realloc(cs->fields, cap * sizeof *f);
            if (!f) return nn__err(fn, "out of memory");
            cs->fields = f;
            cs->capfields = cap;
        }
        cs->fields[cs->nfields++] = field;
        if (next == '\0') return 0;
        p++; /* the delimiter */
    }
}

/* Refuses a field holding a control character (a byte below 0x20 other
 * than the tab, or 0x7f), naming the file, line and column and the byte's
 * code: such a field is binary garbage or a broken export, and messages
 * must not echo raw control bytes to a terminal. */
static int check_controls(const csv_state *cs)
{
    for (size_t c = 0; c < cs->nfields; c++)
        for (const unsigned char *q = (const unsigned char *)cs->fields[c]; *q; q++)
            if ((*q < 0x20 && *q != '\t') || *q == 0x7f)
                return nn__err("nn_csv_load", "%s line %ld, column %zu: control character "
                               "0x%02x in the field", cs->path, cs->line, c + 1, *q);
    return 0;
}

static int parse_number(csv_state *cs, size_t col, ad_dtype dtype, double *out)
{
    static const char *fn = "nn_csv_load";
    const char *s = cs->fields[col];
    if (*s == '\0')
        return nn__err(fn, "%s line %ld, column %zu: empty field", cs->path, cs->line, col + 1);
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0')
        return nn__err(fn, "%s line %ld, column %zu: '%.40s' is not a number", cs->path,
                       cs->line, col + 1, s);
    /* Overflow to infinity is refused (underflow to a tiny value is not:
     * that is the nearest representable number). */
    if ((errno == ERANGE && fabs(v) > 1) || (dtype == AD_FLOAT32 && isfinite(v) &&
                                             isinf((float)v)))
        return nn__err(fn, "%s line %ld, column %zu: '%.40s' is out of range for %s", cs->path,
                       cs->line, col + 1, s, ad_dtype_name(dtype));
    *out = v;
    return 0;
}

/* Parses every line; the values go into *vals (rows * cols doubles). */
static int csv_parse(csv_state *cs, FILE *f, const nn_csv_options *o, double **vals,
                     int64_t *rows, size_t *cols)
{
    static const char *fn = "nn_csv_load";
    char *line = NULL;
    size_t linecap = 0, cap = 0, ncols = 0;
    int64_t nrows = 0, n = 0;
    long header_line = 0, first_line = 0;
    int rc = 0;
    ssize_t len;
    while ((len = getline(&line, &linecap, f)) >= 0) {
        cs->line++;
        if ((size_t)len != strlen(line)) {
            rc = nn__err(fn, "%s line %ld contains a NUL byte", cs->path, cs->line);
            break;
        }
        if (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r') line[--len] = '\0';
        const char *q = line;
        while (is_space(*q, cs->delim)) q++;
        if (*q == '\0') continue; /* blank line */
        if ((rc = split_line(cs, line))) break;
        if ((rc = check_controls(cs))) break;
        if (o->header && !header_line) {
            header_line = cs->line;
            ncols = cs->nfields;
            continue;
        }
        if (!first_line && !header_line) ncols = cs->nfields;
        if (!first_line) first_line = cs->line;
        if (cs->nfields != ncols) {
            rc = nn__err(fn, "%s line %ld has %zu fields, expected %zu as on line %ld%s",
                         cs->path, cs->line, cs->nfields, ncols,
                         header_line ? header_line : first_line,
                         header_line ? " (the header)" : "");
            break;
        }
        if ((size_t)n + ncols > cap) {
            size_t c = cap ? cap : 1024;
            while (c < (size_t)n + ncols) c *= 2;
            double *v = ad_realloc(*vals, c * sizeof *v);
            if (!v) {
                rc = nn__err(fn, "out of memory reading %s", cs->path);
                break;
            }
            *vals = v;
            cap = c;
        }
        for (size_t c = 0; c < ncols && rc == 0; c++)
            rc = parse_number(cs, c, o->dtype, *vals + n++);
        if (rc) break;
        nrows++;
    }
    if (rc == 0 && ferror(f)) rc = nn__err_io(fn, "cannot read %s: %s", cs->path, strerror(errno));
    free(line); /* getline's buffer, from the C library's malloc */
    if (rc == 0 && nrows == 0)
        rc = header_line ? nn__err(fn, "%s has a header but no data rows", cs->path)
                         : nn__err(fn, "%s is empty", cs->path);
    *rows = nrows;
    *cols = ncols;
    return rc;
}

ad_tensor *nn_csv_load(const char *path, const nn_csv_options *opts)
{
    static const char *fn = "nn_csv_load";
    nn_csv_options o = opts ? *opts : (nn_csv_options){0};
    if (!o.delimiter) o.delimiter = ',';
    if (!path) {
        nn__err(fn, "path is NULL");
        return NULL;
    }
    if (o.dtype != AD_FLOAT32 && o.dtype != AD_FLOAT64) {
        nn__err(fn, "dtype must be float32 or float64, got %s", ad_dtype_name(o.dtype));
        return NULL;
    }
    if (o.delimiter == '"' || o.delimiter == '\n' || o.delimiter == '\r') {
        nn__err(fn, "delimiter '%c' cannot separate fields", o.delimiter);
        return NULL;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        nn__err_io(fn, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    /* A UTF-8 byte-order mark (Excel's "CSV UTF-8" starts with one) is
     * skipped; anything else is read from the start again. */
    unsigned char bom[3];
    size_t nbom = fread(bom, 1, 3, f);
    if (!(nbom == 3 && bom[0] == 0xef && bom[1] == 0xbb && bom[2] == 0xbf) &&
        fseek(f, 0, SEEK_SET) != 0) {
        nn__err_io(fn, "cannot read %s from its start again: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    /* strtod follows LC_NUMERIC: under a German locale it would read "1.5"
     * as 1.  Files are exchanged in the C syntax whatever the user's
     * locale, so parse in the C locale, for this thread only. */
    locale_t cloc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    locale_t old = cloc ? uselocale(cloc) : (locale_t)0;
    csv_state cs = {.path = path, .delim = o.delimiter};
    double *vals = NULL;
    int64_t rows = 0;
    size_t cols = 0;
    int rc = csv_parse(&cs, f, &o, &vals, &rows, &cols);
    if (cloc) {
        uselocale(old);
        freelocale(cloc);
    }
    fclose(f);
    ad_free(cs.fields);
    ad_tensor *t = NULL;
    if (rc == 0) t = ad_empty(NULL, o.dtype, AD_SHAPE(rows, (int64_t)cols));
    if (t) {
        int64_t n = rows * (int64_t)cols;
        if (o.dtype == AD_FLOAT64) {
            memcpy(ad_data(t), vals, (size_t)n * sizeof(double));
        } else {
            float *d = ad_data(t);
            for (int64_t i = 0; i < n; i++) d[i] = (float)vals[i];
        }
    }
    ad_free(vals);
    return t;
}

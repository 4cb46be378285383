#define _XOPEN_SOURCE 700 /* mkdtemp, nftw */
/* tests/test_data.c - nn/data.h: IDX files (every type, plain and gzip, and
 * every way a file can be broken), MNIST / Fashion-MNIST, CSV, and the
 * mini-batch loader (determinism, coverage, limit, drop_last, buffers
 * reused across steps).  Test files are written into a temporary directory
 * by the tests themselves. */
#include <nn/data.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../nn/nn_private.h"
#include "optest.h"

static char tmpdir[512];

static const char *tpath(const char *name)
{
    static char buf[4][640];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile gz = gzopen(path, "wb");
    ck_assert_ptr_nonnull(gz);
    ck_assert_int_eq(gzwrite(gz, data, (unsigned)n), (int)n);
    ck_assert_int_eq(gzclose(gz), Z_OK);
}

static long file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (long)st.st_size;
}

/* An IDX header: 00 00 type ndim, then big-endian extents. */
static size_t idx_header(uint8_t *h, int type, int ndim, const uint32_t *dims)
{
    h[0] = 0, h[1] = 0, h[2] = (uint8_t)type, h[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        h[4 + 4 * i] = (uint8_t)(dims[i] >> 24), h[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        h[6 + 4 * i] = (uint8_t)(dims[i] >> 8), h[7 + 4 * i] = (uint8_t)dims[i];
    }
    return 4 + 4 * (size_t)ndim;
}

/* ---- IDX ------------------------------------------------------------------ */

START_TEST(idx_round_trip_every_type)
{
    static const nn_idx_type types[] = {NN_IDX_UINT8, NN_IDX_INT8, NN_IDX_INT16,
                                        NN_IDX_INT32, NN_IDX_FLOAT32, NN_IDX_FLOAT64};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (int gz = 0; gz < 2; gz++) {
            size_t es = nn_idx_type_size(types[t]);
            nn_idx a = {.type = types[t], .ndim = 3, .dims = {3, 2, 5}, .numel = 30};
            uint8_t buf[30 * 8];
            a.data = buf;
            for (int i = 0; i < 30; i++) {
                double v = (i - 10) * 7.25;
                switch (types[t]) {
                case NN_IDX_UINT8: buf[i] = (uint8_t)(i * 8 + 3); break;
                case NN_IDX_INT8: ((int8_t *)buf)[i] = (int8_t)(i * 8 - 120); break;
                case NN_IDX_INT16: ((int16_t *)buf)[i] = (int16_t)(i * 2000 - 30000); break;
                case NN_IDX_INT32: ((int32_t *)buf)[i] = (int32_t)(i * 140000000LL - 2100000000LL); break;
                case NN_IDX_FLOAT32: ((float *)buf)[i] = (float)v; break;
                case NN_IDX_FLOAT64: ((double *)buf)[i] = v / 3; break;
                }
            }
            char name[64];
            snprintf(name, sizeof name, "rt_%s.idx%s", nn_idx_type_name(types[t]), gz ? ".gz" : "");
            const char *p = tpath(name);
            ck_assert_int_eq(nn_idx_save(p, &a), 0);
            uint8_t magic[2];
            FILE *f = fopen(p, "rb");
            ck_assert_uint_eq(fread(magic, 1, 2, f), 2);
            fclose(f);
            if (gz) ck_assert(magic[0] == 0x1f && magic[1] == 0x8b); /* gzip */
            else ck_assert_int_eq(file_size(p), 4 + 12 + 30 * (long)es);
            nn_idx *b = nn_idx_load(p);
            ck_assert_msg(b != NULL, "%s: %s", name, ad_error());
            ck_assert_int_eq(b->type, types[t]);
            ck_assert_int_eq(b->ndim, 3);
            ck_assert_int_eq(b->dims[0], 3);
            ck_assert_int_eq(b->dims[1], 2);
            ck_assert_int_eq(b->dims[2], 5);
            ck_assert_int_eq(b->numel, 30);
            ck_assert_msg(memcmp(b->data, buf, 30 * es) == 0, "%s: data differ", name);
            nn_idx_free(b);
        }
}
END_TEST

/* Files written byte by byte here, not by nn_idx_save: the reader is
 * checked against the format, not against our own writer. */
START_TEST(idx_reads_the_format)
{
    uint8_t f[64];
    size_t h = idx_header(f, 0x0C, 2, (const uint32_t[]){2, 1});
    memcpy(f + h, "\xff\xff\xff\xfe\x01\x02\x03\x04", 8); /* int32 -2, 0x01020304 */
    write_bytes(tpath("i32.idx"), f, h + 8);
    nn_idx *x = nn_idx_load(tpath("i32.idx"));
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(((int32_t *)x->data)[0], -2);
    ck_assert_int_eq(((int32_t *)x->data)[1], 0x01020304);
    nn_idx_free(x);

    h = idx_header(f, 0x0D, 1, (const uint32_t[]){1});
    memcpy(f + h, "\x3f\xc0\x00\x00", 4); /* float 1.5, big-endian */
    write_gz(tpath("f32_gzip_without_suffix.idx"), f, h + 4); /* detected by content */
    x = nn_idx_load(tpath("f32_gzip_without_suffix.idx"));
    ck_assert_ptr_nonnull(x);
    ck_assert_float_eq(((float *)x->data)[0], 1.5f);
    nn_idx_free(x);

    h = idx_header(f, 0x08, 1, (const uint32_t[]){0}); /* empty is fine */
    write_bytes(tpath("empty.idx"), f, h);
    x = nn_idx_load(tpath("empty.idx"));
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(x->numel, 0);
    nn_idx_free(x);
    /* A zero extent makes the product 0 however large the others are. */
    h = idx_header(f, 0x0E, 4, (const uint32_t[]){0xffffffff, 0xffffffff, 0xffffffff, 0});
    write_bytes(tpath("empty4.idx"), f, h);
    x = nn_idx_load(tpath("empty4.idx"));
    ck_assert_msg(x != NULL, "%s", ad_error());
    ck_assert_int_eq(x->numel, 0);
    nn_idx_free(x);
}
END_TEST

static void expect_idx_error(const char *path, const char *needle)
{
    ck_assert_error(nn_idx_load(path), needle);
}

START_TEST(idx_broken_files)
{
    uint8_t f[4096] = {0};
    char msg[1024];
    expect_idx_error(tpath("does-not-exist"), "nn_idx_load: cannot open ");
    write_bytes(tpath("zero"), f, 0);
    expect_idx_error(tpath("zero"), "is empty");
    write_bytes(tpath("short"), f, 3);
    expect_idx_error(tpath("short"), "is truncated: it has 3 of the 4 magic bytes");
    write_bytes(tpath("zip"), "PK\x03\x04rest", 8);
    expect_idx_error(tpath("zip"), "is not an IDX file: bad magic 50 4b 03 04");
    write_bytes(tpath("type7"), "\0\0\x07\x01\0\0\0\1x", 9);
    expect_idx_error(tpath("type7"), "unknown type code 0x07");
    write_bytes(tpath("ndim0"), "\0\0\x08\x00", 4);
    expect_idx_error(tpath("ndim0"), "has 0 dimensions; 1 to 8 are supported");
    write_bytes(tpath("ndim9"), "\0\0\x08\x09", 4);
    expect_idx_error(tpath("ndim9"), "has 9 dimensions");
    size_t h = idx_header(f, 0x08, 3, (const uint32_t[]){60000, 28, 28});
    write_bytes(tpath("hdr"), f, h - 6);
    expect_idx_error(tpath("hdr"), "the header ends after 6 of its 12 bytes of extents");

    /* 2^32-1 cubed doubles: the product overflows 64 bits. */
    h = idx_header(f, 0x0E, 3, (const uint32_t[]){0xffffffff, 0xffffffff, 0xffffffff});
    write_bytes(tpath("overflow"), f, h + 8);
    expect_idx_error(tpath("overflow"), "extents 4294967295x4294967295x4294967295 overflow");

    /* The brief's example: MNIST's header with 1234 bytes of data. */
    h = idx_header(f, 0x08, 3, (const uint32_t[]){60000, 28, 28});
    write_bytes(tpath("train-images-idx3-ubyte"), f, h + 1234);
    snprintf(msg, sizeof msg, "nn_idx_load: %s is truncated: header says 60000x28x28 = "
             "47040000 bytes of data, file has 1234", tpath("train-images-idx3-ubyte"));
    expect_idx_error(tpath("train-images-idx3-ubyte"), msg);
    write_gz(tpath("cut.gz"), f, h + 1234); /* the same, compressed */
    expect_idx_error(tpath("cut.gz"), "header says 60000x28x28 = 47040000 bytes of data, "
                                      "file has 1234");
    h = idx_header(f, 0x0B, 1, (const uint32_t[]){10});
    write_bytes(tpath("short16"), f, h + 19);
    expect_idx_error(tpath("short16"), "header says 10 x 2 bytes = 20 bytes of data, file has 19");

    h = idx_header(f, 0x08, 1, (const uint32_t[]){2});
    write_bytes(tpath("trailing"), f, h + 2 + 16);
    expect_idx_error(tpath("trailing"), "has 16 bytes of trailing data after the 2 bytes");
    write_gz(tpath("trailing.gz"), f, h + 2 + 16);
    expect_idx_error(tpath("trailing.gz"), "has 16 bytes of trailing data");
    /* Trailing data is counted up to 1 MB only (a .gz can inflate hugely). */
    uint8_t *big = calloc(1, h + 2 + (8 << 20));
    memcpy(big, f, h + 2);
    write_gz(tpath("bomb.gz"), big, h + 2 + (8 << 20));
    free(big);
    expect_idx_error(tpath("bomb.gz"), "has at least 1048576 bytes of trailing data");
}
END_TEST

/* A gzip file cut anywhere, or with a damaged checksum, is never used. */
START_TEST(idx_broken_gzip)
{
    uint8_t f[4 + 4 + 3000];
    size_t h = idx_header(f, 0x08, 1, (const uint32_t[]){3000});
    for (int i = 0; i < 3000; i++) f[h + i] = (uint8_t)(i * 7 % 251);
    write_gz(tpath("ok.gz"), f, h + 3000);
    long size = file_size(tpath("ok.gz"));
    FILE *in = fopen(tpath("ok.gz"), "rb");
    uint8_t *z = malloc((size_t)size);
    ck_assert_uint_eq(fread(z, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    nn_idx *x = nn_idx_load(tpath("ok.gz"));
    ck_assert_ptr_nonnull(x);
    nn_idx_free(x);
    for (long cut = 1; cut < size; cut += cut < 40 ? 1 : 37) {
        write_bytes(tpath("cut.gz"), z, (size_t)cut);
        ad_clear_error();
        x = nn_idx_load(tpath("cut.gz"));
        ck_assert_msg(x == NULL, "a gzip file cut at %ld of %ld bytes loaded", cut, size);
        ck_assert_ptr_nonnull(ad_error());
        /* cut before any of its data: truncated, not "empty" */
        ck_assert_msg(!strstr(ad_error(), "is empty"), "cut at %ld: %s", cut, ad_error());
    }
    z[size - 6] ^= 0x55; /* the CRC-32 in the trailer */
    write_bytes(tpath("crc.gz"), z, (size_t)size);
    expect_idx_error(tpath("crc.gz"), "cannot read");
    free(z);
}
END_TEST

START_TEST(idx_save_errors)
{
    uint8_t d[4] = {0};
    nn_idx a = {.type = NN_IDX_UINT8, .ndim = 1, .dims = {4}, .numel = 4, .data = d};
    ck_assert_error_rc(nn_idx_save(NULL, &a), "nn_idx_save: path is NULL");
    a.ndim = 0;
    ck_assert_error_rc(nn_idx_save(tpath("x.idx"), &a), "ndim 0 out of range 1..8");
    a.ndim = 2, a.dims[1] = 1LL << 32, a.numel = 4LL << 32;
    ck_assert_error_rc(nn_idx_save(tpath("x.idx"), &a), "does not fit the format's 32 bits");
    a.ndim = 1, a.numel = 5;
    ck_assert_error_rc(nn_idx_save(tpath("x.idx"), &a), "numel 5 differs");
    a.numel = 4, a.type = (nn_idx_type)0x42;
    ck_assert_error_rc(nn_idx_save(tpath("x.idx"), &a), "invalid type code 0x42");
    a.type = NN_IDX_UINT8;
    ck_assert_error_rc(nn_idx_save(tpath("no/such/dir/x.idx"), &a), "cannot create a temporary");
    ck_assert_int_eq(access(tpath("x.idx"), F_OK), -1); /* nothing was left behind */
}
END_TEST

/* ---- MNIST ---------------------------------------------------------------- */

static void write_mnist(const char *dir, const char *set, int n, int nlabels, uint8_t bad_label,
                        bool gz)
{
    uint8_t img[4 + 12 + 8 * 16], lab[4 + 4 + 8];
    size_t h = idx_header(img, 0x08, 3, (const uint32_t[]){(uint32_t)n, 4, 4});
    for (int i = 0; i < n * 16; i++) img[h + (size_t)i] = (uint8_t)(i * 13);
    char p[1024];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, set, gz ? ".gz" : "");
    (gz ? write_gz : write_bytes)(p, img, h + (size_t)n * 16);
    size_t hl = idx_header(lab, 0x08, 1, (const uint32_t[]){(uint32_t)nlabels});
    for (int i = 0; i < nlabels; i++) lab[hl + (size_t)i] = (uint8_t)(i % 10);
    if (bad_label) lab[hl + 3] = bad_label;
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, set, gz ? ".gz" : "");
    (gz ? write_gz : write_bytes)(p, lab, hl + (size_t)nlabels);
}

START_TEST(mnist_small_sets)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/mnist", tmpdir);
    ck_assert_int_eq(mkdir(dir, 0777), 0);
    char msg[1400];
    snprintf(msg, sizeof msg, "nn_mnist_load: neither %s/train-images-idx3-ubyte nor "
             "%s/train-images-idx3-ubyte.gz exists", dir, dir);
    ck_assert_error(nn_mnist_load(dir, true), msg);
    write_mnist(dir, "train", 8, 8, 0, true); /* gzip */
    write_mnist(dir, "t10k", 5, 5, 0, false); /* plain */
    nn_mnist *m = nn_mnist_load(dir, true);
    ck_assert_msg(m != NULL, "%s", ad_error());
    ck_assert_int_eq(m->images->dims[0], 8);
    ck_assert_int_eq(m->images->dims[1], 4);
    ck_assert_int_eq(m->labels->numel, 8);
    ck_assert_int_eq(m->images->data[17], (uint8_t)(17 * 13));
    nn_mnist_free(m);
    m = nn_mnist_load(dir, false);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->labels->data[4], 4);
    nn_mnist_free(m);
    write_mnist(dir, "t10k", 5, 6, 0, false);
    ck_assert_error(nn_mnist_load(dir, false), "5 images but 6 labels");
    write_mnist(dir, "t10k", 5, 5, 12, false);
    ck_assert_error(nn_mnist_load(dir, false), "label 12 at index 3 is not below 10");
}
END_TEST

START_TEST(fashion_mnist_real_files)
{
    const char *dir = getenv("FASHION_MNIST_DIR");
    if (!dir) dir = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(dir, &st) != 0) {
        printf("SKIP fashion_mnist_real_files: %s does not exist (apt-get install "
               "dataset-fashion-mnist, or set FASHION_MNIST_DIR)\n", dir);
        return;
    }
    for (int train = 1; train >= 0; train--) {
        nn_mnist *m = nn_mnist_load(dir, train);
        ck_assert_msg(m != NULL, "%s", ad_error());
        int64_t n = train ? 60000 : 10000;
        ck_assert_int_eq(m->images->dims[0], n);
        ck_assert_int_eq(m->images->dims[1], 28);
        ck_assert_int_eq(m->images->dims[2], 28);
        ck_assert_int_eq(m->labels->dims[0], n);
        int64_t hist[10] = {0}, sum = 0;
        for (int64_t i = 0; i < n; i++) hist[m->labels->data[i]]++;
        for (int c = 0; c < 10; c++) {
            ck_assert_int_eq(hist[c], n / 10); /* Fashion-MNIST is balanced */
            sum += hist[c];
        }
        ck_assert_int_eq(sum, n);
        if (train) { /* the published per-pixel mean of the training images */
            double mean = 0;
            for (int64_t i = 0; i < m->images->numel; i++) mean += m->images->data[i];
            ck_assert_close(mean / (double)m->images->numel / 255, 0.2860, 5e-4);
            nn_loader_options o = {.batch_size = 64, .shuffle = true, .seed = 7,
                                   .normalize = true, .mean = 0.2860, .std = 0.3530,
                                   .sample_ndim = 1, .sample_shape = {784}};
            nn_loader *dl = nn_loader_from_idx(m->images, m->labels, &o);
            ck_assert_ptr_nonnull(dl);
            ck_assert_int_eq(nn_loader_num_batches(dl), 938);
            ad_tensor *x, *y;
            ck_assert_int_eq(nn_loader_next(dl, &x, &y), 1);
            ck_assert_int_eq(ad_size(x, 0), 64);
            ck_assert_int_eq(ad_size(x, 1), 784);
            int64_t k = nn_loader_order(dl)[0];
            ck_assert_close(ot_at(x, 300), (m->images->data[k * 784 + 300] / 255.0 - 0.2860) / 0.3530,
                            1e-6);
            ck_assert_close(ot_at(y, 0), m->labels->data[k], 0);
            nn_loader_free(dl);
        }
        nn_mnist_free(m);
    }
}
END_TEST

/* ---- CSV ------------------------------------------------------------------ */

static ad_tensor *csv(const char *text, const nn_csv_options *o)
{
    write_bytes(tpath("t.csv"), text, strlen(text));
    return nn_csv_load(tpath("t.csv"), o);
}

START_TEST(csv_reads_numbers)
{
    nn_csv_options o = {.header = true, .dtype = AD_FLOAT64};
    ad_tensor *t = csv("a,\"b, quoted\",c\r\n1,2.5,-3e2\r\n\r\n \"4\" , 5 ,0x10\r\n7,8,9", &o);
    ck_assert_msg(t != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_tensor_dtype(t), AD_FLOAT64);
    ck_assert_int_eq(ad_size(t, 0), 3);
    ck_assert_int_eq(ad_size(t, 1), 3);
    const double want[] = {1, 2.5, -300, 4, 5, 16, 7, 8, 9};
    for (int i = 0; i < 9; i++) ck_assert_close(ot_at(t, i), want[i], 0);
    ad_tensor_free(t);

    t = csv("0.1;2\n3;4\n", &(nn_csv_options){.delimiter = ';'}); /* float32 by default */
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(ad_tensor_dtype(t), AD_FLOAT32);
    ck_assert_close(ot_at(t, 0), (float)0.1, 0);
    ck_assert_int_eq(ad_size(t, 0), 2);
    ad_tensor_free(t);

    /* "" inside quotes is one quote */
    ck_assert_error(csv("1\t2\n3\t\"\"\"4\"\"\"\n", &(nn_csv_options){.delimiter = '\t'}),
                    "line 2, column 2: '\"4\"' is not a number");

    t = csv("5\n", NULL);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(ad_numel(t), 1);
    ad_tensor_free(t);

    /* a UTF-8 byte-order mark (Excel's "CSV UTF-8") is skipped */
    t = csv("\xef\xbb\xbf" "1,2\n3,4\n", NULL);
    ck_assert_msg(t != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_numel(t), 4);
    ck_assert_close(ot_at(t, 0), 1, 0);
    ad_tensor_free(t);
}
END_TEST

START_TEST(csv_errors)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "nn_csv_load: %s line 3, column 2: 'abc' is not a number",
             tpath("t.csv"));
    ck_assert_error(csv("1,2\n3,4\n5,abc\n", NULL), msg);
    ck_assert_error(csv("x,y,z\n1,2,3\n4,5\n", &(nn_csv_options){.header = true}),
                    "line 3 has 2 fields, expected 3 as on line 1 (the header)");
    ck_assert_error(csv("1,2,3\n\n4,5,6,7\n", NULL), "line 3 has 4 fields, expected 3 as on line 1");
    ck_assert_error(csv("", NULL), "is empty");
    ck_assert_error(csv("\r\n\n", NULL), "is empty");
    ck_assert_error(csv("a,b\n", &(nn_csv_options){.header = true}), "has a header but no data rows");
    ck_assert_error(csv("1,2,\n", NULL), "line 1, column 3: empty field");
    ck_assert_error(csv("1,\"2\n", NULL), "line 1, column 2: unterminated quote");
    ck_assert_error(csv("1,\"2\"x\n", NULL), "line 1, column 2: text after the closing quote");
    ck_assert_error(csv("1e39\n", NULL), "'1e39' is out of range for float32");
    ck_assert_error(csv("1e999\n", &(nn_csv_options){.dtype = AD_FLOAT64}), "out of range");
    ck_assert_error(csv("1,2\n", &(nn_csv_options){.dtype = AD_INT64}), "dtype must be float32");
    ck_assert_error(nn_csv_load(tpath("missing.csv"), NULL), "cannot open");
}
END_TEST

/* A field holding a control character is refused by the byte's code,
 * naming file, line and column; no message carries a raw control byte. */
static void no_control_bytes(const char *msg)
{
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        ck_assert_msg(*p >= 0x20 && *p != 0x7f, "raw byte 0x%02x in message '%s'", *p, msg);
}

START_TEST(csv_control_characters)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "nn_csv_load: %s line 2, column 2: control character 0x07 in the "
             "field", tpath("t.csv"));
    ck_assert_error(csv("1,2\n3,\a4\n", NULL), msg);
    no_control_bytes(msg);
    /* in a header, quoted, a lone CR inside a line, DEL, an escape sequence */
    ck_assert_error(csv("a\x01,b\n1,2\n", &(nn_csv_options){.header = true}),
                    "line 1, column 1: control character 0x01 in the field");
    ck_assert_error(csv("1,\"2\x1b[31m\"\n", NULL),
                    "line 1, column 2: control character 0x1b in the field");
    ck_assert_error(csv("1,2\r3\n", NULL), "line 1, column 2: control character 0x0d");
    ck_assert_error(csv("1,2\n4,5\x7f\n", NULL), "line 2, column 2: control character 0x7f");
    no_control_bytes(ad_error() ? ad_error() : "");
    ad_clear_error();
    /* tabs are spaces (or the delimiter), CRLF line ends are fine */
    ad_tensor *t = csv("1,\t2\r\n3\t,4\r\n", &(nn_csv_options){.dtype = AD_FLOAT64});
    ck_assert_msg(t != NULL, "%s", ad_error());
    double v[4];
    ck_assert_int_eq(ad_to_array(t, v), 0);
    ck_assert(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
    ad_tensor_free(t);
    t = csv("1\t2\n3\t4\n", &(nn_csv_options){.delimiter = '\t', .dtype = AD_FLOAT64});
    ck_assert_msg(t != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_to_array(t, v), 0);
    ck_assert(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4);
    ad_tensor_free(t);
}
END_TEST

/* The loader's accessors and the IDX type size say why they return -1,
 * NULL or 0. */
START_TEST(accessors_set_errors)
{
    ad_clear_error();
    ck_assert_int_eq(nn_loader_epoch(NULL), -1);
    ck_assert_str_eq(ad_error(), "nn_loader_epoch: argument 'l' is NULL");
    ad_clear_error();
    ck_assert_int_eq(nn_loader_num_samples(NULL), -1);
    ck_assert_str_eq(ad_error(), "nn_loader_num_samples: argument 'l' is NULL");
    ad_clear_error();
    ck_assert_int_eq(nn_loader_num_batches(NULL), -1);
    ck_assert_str_eq(ad_error(), "nn_loader_num_batches: argument 'l' is NULL");
    ad_clear_error();
    ck_assert_ptr_null(nn_loader_order(NULL));
    ck_assert_str_eq(ad_error(), "nn_loader_order: argument 'l' is NULL");
    ad_clear_error();
    ck_assert_uint_eq(nn_idx_type_size((nn_idx_type)0x0a), 0);
    ck_assert_str_eq(ad_error(), "nn_idx_type_size: invalid type code 0x0a");
    ad_clear_error();
    ck_assert_uint_eq(nn_idx_type_size(NN_IDX_INT16), 2);
    ck_assert_ptr_null(ad_error());
}
END_TEST

/* ---- the loader ------------------------------------------------------------- */

enum { N = 10 };

/* x [N, 2] = (i, -i), y [N] = i: each batch says which samples it holds. */
static nn_loader *index_loader(ad_tensor **x, ad_tensor **y, nn_loader_options o)
{
    double xv[2 * N];
    int64_t yv[N];
    for (int i = 0; i < N; i++) xv[2 * i] = i, xv[2 * i + 1] = -i, yv[i] = i;
    *x = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(N, 2), xv);
    *y = ad_from_array(NULL, AD_INT64, AD_SHAPE(N), yv);
    return nn_loader_from_tensors(*x, *y, &o);
}

/* Runs one epoch; writes the sample order into seq, returns its length. */
static int epoch(nn_loader *l, int64_t *seq, int *nbatches)
{
    ad_tensor *bx, *by;
    int n = 0, rc;
    *nbatches = 0;
    while ((rc = nn_loader_next(l, &bx, &by)) == 1) {
        (*nbatches)++;
        for (int64_t i = 0; i < ad_size(by, 0); i++) {
            int64_t k = (int64_t)ot_at(by, i);
            ck_assert_close(ot_at(bx, 2 * i), (double)k, 0); /* x travels with its y */
            ck_assert_close(ot_at(bx, 2 * i + 1), -(double)k, 0);
            seq[n++] = k;
        }
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_null(bx);
    return n;
}

START_TEST(loader_order_and_coverage)
{
    ad_tensor *x[4], *y[4];
    int64_t a[N], b[N], c[N];
    int nb;
    nn_loader *l = index_loader(&x[0], &y[0], (nn_loader_options){.batch_size = 3,
                                                                  .shuffle = true, .seed = 42});
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(nn_loader_num_batches(l), 4);
    ck_assert_int_eq(epoch(l, a, &nb), N);
    ck_assert_int_eq(nb, 4);
    bool seen[N] = {false};
    for (int i = 0; i < N; i++) { /* every sample exactly once */
        ck_assert(!seen[a[i]]);
        seen[a[i]] = true;
    }
    ck_assert_int_eq(epoch(l, b, &nb), N); /* the next epoch: another order */
    ck_assert_int_eq(nn_loader_epoch(l), 1);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        ck_assert(!seen[b[i]]);
        seen[b[i]] = true;
    }

    nn_loader *same = index_loader(&x[1], &y[1], (nn_loader_options){.batch_size = 3,
                                                                     .shuffle = true, .seed = 42});
    epoch(same, c, &nb);
    ck_assert(memcmp(a, c, sizeof a) == 0); /* same seed, same order */
    ck_assert_int_eq(nn_loader_set_epoch(same, 1), 0); /* epoch 1 needs no replay of epoch 0 */
    epoch(same, c, &nb);
    ck_assert(memcmp(b, c, sizeof b) == 0);
    ck_assert_int_eq(nn_loader_reset(same), 0); /* back to the start of the same epoch */
    epoch(same, c, &nb);
    ck_assert(memcmp(b, c, sizeof b) == 0);

    nn_loader *other = index_loader(&x[2], &y[2], (nn_loader_options){.batch_size = 3,
                                                                      .shuffle = true, .seed = 43});
    epoch(other, c, &nb);
    ck_assert(memcmp(a, c, sizeof a) != 0); /* another seed, another order */

    nn_loader *plain = index_loader(&x[3], &y[3], (nn_loader_options){.batch_size = 4});
    epoch(plain, c, &nb);
    for (int i = 0; i < N; i++) ck_assert_int_eq(c[i], i); /* no shuffle: in order */
    nn_loader_free(l), nn_loader_free(same), nn_loader_free(other), nn_loader_free(plain);
    for (int i = 0; i < 4; i++) ad_tensor_free(x[i]), ad_tensor_free(y[i]);
}
END_TEST

START_TEST(loader_limit_and_drop_last)
{
    ad_tensor *x, *y;
    int64_t s[N];
    int nb;
    nn_loader *l = index_loader(&x, &y, (nn_loader_options){.batch_size = 3, .shuffle = true,
                                                            .seed = 5, .drop_last = true});
    ck_assert_int_eq(nn_loader_num_batches(l), 3);
    for (int e = 0; e < 3; e++) {
        ck_assert_int_eq(epoch(l, s, &nb), 9); /* the last, shorter batch is dropped */
        ck_assert_int_eq(nb, 3);
    }
    nn_loader_free(l);
    l = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 3, .shuffle = true,
                                                          .seed = 5, .limit = 7});
    ck_assert_int_eq(nn_loader_num_samples(l), 7);
    ck_assert_int_eq(epoch(l, s, &nb), 7);
    ck_assert_int_eq(nb, 3); /* 3 + 3 + 1 */
    int64_t sum = 0;
    for (int i = 0; i < 7; i++) {
        ck_assert_int_lt(s[i], 7); /* only the first 7 samples */
        sum += s[i];
    }
    ck_assert_int_eq(sum, 21);
    nn_loader_free(l);
    l = nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 20});
    ck_assert_int_eq(epoch(l, s, &nb), N); /* one batch, shorter than batch_size */
    ck_assert_int_eq(nb, 1);
    nn_loader_free(l);
    ck_assert_error(nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 20,
                                                                      .drop_last = true}),
                    "drop_last with batch_size 20 and only 10 samples leaves no batch");
    ck_assert_error(nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 0}),
                    "batch_size must be at least 1, got 0");
    ck_assert_error(nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 2,
                                                                      .limit = 11}),
                    "limit 11 out of range 0..10");
    ck_assert_error(nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 2,
                                                                      .normalize = true}),
                    "apply to nn_loader_from_idx only");
    ad_tensor *y9 = ad_zeros(NULL, AD_INT64, AD_SHAPE(9));
    ck_assert_error(nn_loader_from_tensors(x, y9, &(nn_loader_options){.batch_size = 2}),
                    "x has 10 samples but y has 9");
    ck_assert_error(nn_loader_from_tensors(x, y, NULL), "opts is NULL");
    ck_assert_error_rc(nn_loader_next(NULL, &x, &y), "nn_loader_next: argument 'l' is NULL");
    ad_tensor_free(y9), ad_tensor_free(x), ad_tensor_free(y);
    /* samples of no elements (x [11, 0]): batches of no bytes, and no
     * copy from the empty tensor's NULL data (UBSan's memcpy check) */
    ad_tensor *x0 = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(11, 0));
    ad_tensor *y0 = ad_zeros(NULL, AD_INT64, AD_SHAPE(11));
    l = nn_loader_from_tensors(x0, y0, &(nn_loader_options){.batch_size = 4, .shuffle = true});
    ck_assert_msg(l != NULL, "%s", ad_error());
    int64_t rows = 0;
    ad_tensor *bx, *by;
    while (nn_loader_next(l, &bx, &by) == 1) rows += ad_size(bx, 0);
    ck_assert_int_eq(rows, 11);
    nn_loader_free(l);
    ad_tensor_free(x0), ad_tensor_free(y0);
}
END_TEST

/* Sharding: W loaders with batch B, one per rank, serve step for step the
 * slices of what one loader with batch W*B serves: rank r the r-th slice
 * of each global batch, in the same seeded order.  A shorter last global
 * batch is split as evenly as can be; one with fewer samples than ranks
 * is dropped so that every rank takes the same number of steps. */
static void shard_epoch(nn_loader *l, int64_t batches[][N], int64_t *sizes, int *nb)
{
    ad_tensor *bx, *by;
    int rc;
    *nb = 0;
    while ((rc = nn_loader_next(l, &bx, &by)) == 1) {
        sizes[*nb] = ad_size(by, 0);
        for (int64_t i = 0; i < sizes[*nb]; i++) batches[*nb][i] = (int64_t)ot_at(by, i);
        (*nb)++;
    }
    ck_assert_int_eq(rc, 0);
}

START_TEST(loader_shards_by_rank)
{
    ad_tensor *x, *y;
    int64_t whole[N][N], part[3][N][N], wsize[N], psize[3][N];
    int nb, pnb[3];
    /* 10 samples: batch 4 alone, or 2 ranks of batch 2: 4 + 4 + 2 (1 + 1) */
    nn_loader_options o = {.batch_size = 4, .shuffle = true, .seed = 9};
    nn_loader *one = index_loader(&x, &y, o);
    ck_assert_int_eq(nn_loader_set_epoch(one, 2), 0);
    shard_epoch(one, whole, wsize, &nb);
    ck_assert_int_eq(nb, 3);
    o.batch_size = 2;
    for (int r = 0; r < 2; r++) {
        nn_loader *l = nn_loader_from_tensors(x, y, &o);
        ck_assert_int_eq(nn_loader_shard(l, r, 2), 0);
        ck_assert_int_eq(nn_loader_num_batches(l), 3);
        ck_assert_int_eq(nn_loader_set_epoch(l, 2), 0);
        shard_epoch(l, part[r], psize[r], &pnb[r]);
        ck_assert_int_eq(pnb[r], 3);
        nn_loader_free(l);
    }
    for (int b = 0; b < nb; b++) { /* the slices, in order, are the whole batch */
        int64_t k = 0;
        for (int r = 0; r < 2; r++)
            for (int64_t i = 0; i < psize[r][b]; i++, k++)
                ck_assert_int_eq(part[r][b][i], whole[b][k]);
        ck_assert_int_eq(k, wsize[b]);
    }
    ck_assert_int_eq(psize[0][2], 1);
    ck_assert_int_eq(psize[1][2], 1);

    /* 3 ranks of batch 3: one global batch of 9; the 1 left is dropped */
    o.batch_size = 3;
    for (int r = 0; r < 3; r++) {
        nn_loader *l = nn_loader_from_tensors(x, y, &o);
        ck_assert_int_eq(nn_loader_shard(l, r, 3), 0);
        shard_epoch(l, part[r], psize[r], &pnb[r]);
        ck_assert_int_eq(pnb[r], 1);
        ck_assert_int_eq(psize[r][0], 3);
        /* sharding back to one rank undoes it */
        ck_assert_int_eq(nn_loader_shard(l, 0, 1), 0);
        ck_assert_int_eq(nn_loader_num_batches(l), 4);
        nn_loader_free(l);
    }
    /* 4 ranks of batch 2: one global batch of 8, and 2 left for 4 ranks */
    o.batch_size = 2;
    nn_loader *l = nn_loader_from_tensors(x, y, &o);
    ck_assert_int_eq(nn_loader_shard(l, 3, 4), 0);
    ck_assert_int_eq(nn_loader_num_batches(l), 1);
    /* 10 samples cannot feed 11 ranks with a batch each */
    ck_assert_error_rc(nn_loader_shard(l, 0, 11),
                       "nn_loader_shard: 10 samples leave no batch for 11 workers with batch_size 2");
    ck_assert_int_eq(nn_loader_num_batches(l), 1); /* unchanged by the failure */
    ck_assert_error_rc(nn_loader_shard(l, 4, 4), "nn_loader_shard: rank 4 outside a world of size 4");
    ck_assert_error_rc(nn_loader_shard(NULL, 0, 1), "nn_loader_shard: argument 'l' is NULL");
    nn_loader_free(l);
    nn_loader_free(one);
    ad_tensor_free(x), ad_tensor_free(y);
}
END_TEST

/* The batches are the same two tensors, over the same memory, at every
 * step and every epoch: a step allocates nothing. */
START_TEST(loader_reuses_batch_buffers)
{
    ad_tensor *x, *y, *bx, *by;
    nn_loader *l = index_loader(&x, &y, (nn_loader_options){.batch_size = 4, .shuffle = true,
                                                            .seed = 9});
    ck_assert_int_eq(nn_loader_next(l, &bx, &by), 1);
    ad_tensor *x0 = bx, *y0 = by;
    void *xd = ad_data(bx), *yd = ad_data(by);
    ad_tensor *xl = NULL;
    void *xld = NULL;
    for (int step = 0; step < 40; step++) {
        int rc = nn_loader_next(l, &bx, &by);
        if (rc == 0) continue;
        if (ad_size(bx, 0) == 4) {
            ck_assert_ptr_eq(bx, x0);
            ck_assert_ptr_eq(by, y0);
            ck_assert_ptr_eq(ad_data(bx), xd);
            ck_assert_ptr_eq(ad_data(by), yd);
        } else { /* the shorter last batch has its own pair, also reused */
            ck_assert_int_eq(ad_size(bx, 0), 2);
            if (!xl) xl = bx, xld = ad_data(bx);
            ck_assert_ptr_eq(bx, xl);
            ck_assert_ptr_eq(ad_data(bx), xld);
        }
    }
    ck_assert_ptr_nonnull(xl);
    nn_loader_free(l);
    ad_tensor_free(x), ad_tensor_free(y);
}
END_TEST

/* uint8 images become float only batch by batch: v / 255, normalised. */
START_TEST(loader_idx_conversion)
{
    enum { M = 6 };
    uint8_t pix[M * 4];
    int32_t lab[M];
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < 4; j++) pix[i * 4 + j] = (uint8_t)(40 * i + j);
        lab[i] = 100 + i;
    }
    nn_idx images = {.type = NN_IDX_UINT8, .ndim = 3, .dims = {M, 2, 2}, .numel = M * 4,
                     .data = pix};
    nn_idx labels = {.type = NN_IDX_INT32, .ndim = 1, .dims = {M}, .numel = M,
                     .data = (uint8_t *)lab};
    nn_loader *l = nn_loader_from_idx(&images, &labels, &(nn_loader_options){.batch_size = 4,
                                                                           .shuffle = true});
    ad_tensor *x, *y;
    ck_assert_int_eq(nn_loader_next(l, &x, &y), 1);
    ck_assert_int_eq(ad_tensor_dtype(x), AD_FLOAT32);
    ck_assert_int_eq(ad_ndim(x), 3);
    ck_assert_int_eq(ad_size(x, 1), 2);
    ck_assert_int_eq(ad_tensor_dtype(y), AD_INT64);
    for (int i = 0; i < 4; i++) {
        int64_t k = nn_loader_order(l)[i];
        ck_assert_close(ot_at(y, i), 100 + k, 0);
        for (int j = 0; j < 4; j++)
            ck_assert_close(ot_at(x, i * 4 + j), (float)(pix[k * 4 + j] / 255.0), 0);
    }
    nn_loader_free(l);

    nn_loader_options o = {.batch_size = 3, .dtype = AD_FLOAT64, .normalize = true,
                           .mean = 0.5, .std = 0.25, .sample_ndim = 3,
                           .sample_shape = {1, 2, 2}};
    l = nn_loader_from_idx(&images, NULL, &o);
    ck_assert_int_eq(nn_loader_next(l, &x, &y), 1);
    ck_assert_ptr_null(y);
    ck_assert_int_eq(ad_ndim(x), 4); /* [3, 1, 2, 2] for a convolution */
    ck_assert_int_eq(ad_tensor_dtype(x), AD_FLOAT64);
    ck_assert_close(ot_at(x, 4 + 3), (43 / 255.0 - 0.5) / 0.25, 1e-15);
    nn_loader_free(l);

    o.sample_ndim = 1, o.sample_shape[0] = 5;
    ck_assert_error(nn_loader_from_idx(&images, NULL, &o),
                    "sample_shape has 5 elements, a stored sample has 4");
    /* 2^62 * 4 wraps to 0 in int64: refused, not compared as 0 */
    o.sample_ndim = 2, o.sample_shape[0] = (int64_t)1 << 62, o.sample_shape[1] = 4;
    ck_assert_error(nn_loader_from_idx(&images, NULL, &o), "sample_shape has too many elements");
    o.sample_ndim = 0, o.std = 0;
    ck_assert_error(nn_loader_from_idx(&images, NULL, &o), "std positive");
    o.std = 1;
    labels.dims[0] = M - 1; /* numel left at M: the struct does not hold together */
    ck_assert_error(nn_loader_from_idx(&images, &labels, &o),
                    "differs from the product of the extents");
    labels.numel = M - 1; /* it does, but it does not match the images */
    ck_assert_error(nn_loader_from_idx(&images, &labels, &o), "labels must be an integer type");
    labels.dims[0] = labels.numel = M, labels.type = NN_IDX_FLOAT32;
    ck_assert_error(nn_loader_from_idx(&images, &labels, &o), "labels must be an integer type");
    images.type = NN_IDX_INT16;
    ck_assert_error(nn_loader_from_idx(&images, NULL, &o), "images must be ubyte");
}
END_TEST

/* Every byte value through both conversions of an IDX loader: the
 * multiply-add that float32 batches use under the usual scalings, and the
 * table kept where the multiply-add would differ in a bit (float64 with
 * normalize, here).  Each element must be the table's formula exactly,
 * ((double)v scale - mean) / std rounded to the dtype; 37 bytes a sample
 * give vector loops a tail. */
START_TEST(loader_idx_every_byte)
{
    enum { M = 256, W = 37 };
    static uint8_t pix[M * W];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < W; j++) pix[i * W + j] = (uint8_t)(i + 101 * j);
    nn_idx images = {.type = NN_IDX_UINT8, .ndim = 2, .dims = {M, W}, .numel = M * W,
                     .data = pix};
    const struct { ad_dtype dt; double scale, mean, std; bool normalize, affine; } cases[] = {
        {AD_FLOAT32, 0, 0, 1, false, true},
        {AD_FLOAT32, 0, 0.2860, 0.3530, true, true},
        {AD_FLOAT32, 0.7, -0.3, 0.9, true, true},
        {AD_FLOAT64, 0, 0, 1, false, true},
        {AD_FLOAT64, 0, 0.2860, 0.3530, true, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        nn_loader_options o = {.batch_size = 50, .shuffle = true, .seed = 3, .dtype = cases[c].dt,
                               .scale = cases[c].scale, .normalize = cases[c].normalize,
                               .mean = cases[c].mean, .std = cases[c].std};
        nn_loader *l = nn_loader_from_idx(&images, NULL, &o);
        ck_assert_msg(l != NULL, "%s", ad_error());
        ck_assert_int_eq(nn__loader_affine(l), cases[c].affine);
        double scale = cases[c].scale ? cases[c].scale : 1.0 / 255.0;
        double mean = cases[c].normalize ? cases[c].mean : 0, std = cases[c].normalize ? cases[c].std : 1;
        ad_tensor *x;
        int64_t seen = 0;
        while (nn_loader_next(l, &x, NULL) == 1) {
            int64_t b = ad_size(x, 0);
            for (int64_t i = 0; i < b; i++) {
                int64_t k = nn_loader_order(l)[seen + i];
                for (int j = 0; j < W; j++) {
                    double want = ((double)pix[k * W + j] * scale - mean) / std;
                    if (cases[c].dt == AD_FLOAT32) {
                        float got = ((const float *)ad_data(x))[i * W + j], w32 = (float)want;
                        ck_assert_msg(memcmp(&got, &w32, sizeof got) == 0,
                                      "case %zu, byte %u: %.9g, want %.9g", c,
                                      (unsigned)pix[k * W + j], got, w32);
                    } else {
                        double got = ((const double *)ad_data(x))[i * W + j];
                        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0,
                                      "case %zu, byte %u: %.17g, want %.17g", c,
                                      (unsigned)pix[k * W + j], got, want);
                    }
                }
            }
            seen += b;
        }
        ck_assert_int_eq(seen, M);
        nn_loader_free(l);
    }
}
END_TEST

/* CSV columns (a non-contiguous view) through the generic loader. */
START_TEST(loader_over_csv_columns)
{
    ad_tensor *t = csv("f1,f2,target\n1,2,10\n3,4,20\n5,6,30\n", &(nn_csv_options){
                                                                     .header = true,
                                                                     .dtype = AD_FLOAT64});
    ck_assert_ptr_nonnull(t);
    ad_tensor *feat = ad_narrow(t, 1, 0, 2), *target = ad_narrow(t, 1, 2, 1);
    ck_assert(!ad_is_contiguous(feat));
    nn_loader *l = nn_loader_from_tensors(feat, target, &(nn_loader_options){.batch_size = 2});
    ck_assert_msg(l != NULL, "%s", ad_error());
    ad_tensor *x, *y;
    ck_assert_int_eq(nn_loader_next(l, &x, &y), 1);
    ck_assert_int_eq(ad_size(x, 1), 2);
    ck_assert_int_eq(ad_size(y, 1), 1);
    ck_assert_close(ot_at(x, 3), 4, 0);
    ck_assert_close(ot_at(y, 1), 20, 0);
    ck_assert_int_eq(nn_loader_next(l, &x, &y), 1);
    ck_assert_int_eq(ad_size(x, 0), 1);
    ck_assert_close(ot_at(x, 1), 6, 0);
    ck_assert_close(ot_at(y, 0), 30, 0);
    nn_loader_free(l);
    ad_tensor_free(feat), ad_tensor_free(target), ad_tensor_free(t);
}
END_TEST

int main(void)
{
    if (ot_make_tmpdir(tmpdir, sizeof tmpdir, "test_data")) return EXIT_FAILURE;
    Suite *s = suite_create("data");
    TCase *tc = tcase_create("data");
    tcase_add_test(tc, idx_round_trip_every_type);
    tcase_add_test(tc, idx_reads_the_format);
    tcase_add_test(tc, idx_broken_files);
    tcase_add_test(tc, idx_broken_gzip);
    tcase_add_test(tc, idx_save_errors);
    tcase_add_test(tc, mnist_small_sets);
    tcase_add_test(tc, fashion_mnist_real_files);
    tcase_add_test(tc, csv_reads_numbers);
    tcase_add_test(tc, csv_errors);
    tcase_add_test(tc, csv_control_characters);
    tcase_add_test(tc, accessors_set_errors);
    tcase_add_test(tc, loader_order_and_coverage);
    tcase_add_test(tc, loader_limit_and_drop_last);
    tcase_add_test(tc, loader_shards_by_rank);
    tcase_add_test(tc, loader_reuses_batch_buffers);
    tcase_add_test(tc, loader_idx_conversion);
    tcase_add_test(tc, loader_idx_every_byte);
    tcase_add_test(tc, loader_over_csv_columns);
    suite_add_tcase(s, tc);
    int rc = ot_run(s);
    ot_remove_tree(tmpdir);
    return rc;
}

#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, setrlimit */
/* tests/test_checkpoint.c - nn/checkpoint.h: safetensors round trips,
 * metadata, loads that must leave the model untouched (wrong shape or
 * dtype, missing names, truncated, corrupt or hand-made malformed files),
 * atomic replacement, and a cross-check with a numpy reader of the spec. */
#include <dirent.h>
#include <fcntl.h>
#include <nn/checkpoint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

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

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n + 1);
    ck_assert_uint_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* A model of three tensors with distinctive values. */
typedef struct model {
    ad_tensor *t[5];
} model;
static const char *const names[5] = {"fc1.weight", "fc1.bias", "step", "scalar", "empty"};

static model make_model(double base)
{
    model m;
    m.t[0] = ad_empty(NULL, AD_FLOAT32, AD_SHAPE(2, 3));
    m.t[1] = ad_empty(NULL, AD_FLOAT64, AD_SHAPE(3));
    m.t[2] = ad_empty(NULL, AD_INT64, AD_SHAPE(2));
    m.t[3] = ad_scalar_tensor(NULL, AD_FLOAT64, base / 7);
    m.t[4] = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(0, 4));
    float *w = ad_data(m.t[0]);
    double *b = ad_data(m.t[1]);
    int64_t *s = ad_data(m.t[2]);
    for (int i = 0; i < 6; i++) w[i] = (float)(base + i * 0.1);
    for (int i = 0; i < 3; i++) b[i] = base / 3 - i;
    s[0] = (int64_t)base, s[1] = (1LL << 62) + 1; /* not representable in a double */
    return m;
}

static void free_model(model *m)
{
    for (int i = 0; i < 5; i++) ad_tensor_free(m->t[i]);
}

/* Bitwise equality of two models. */
static bool same_model(model *a, model *b)
{
    for (int i = 0; i < 5; i++) {
        size_t bytes = (size_t)ad_numel(a->t[i]) * ad_dtype_size(ad_tensor_dtype(a->t[i]));
        if (bytes && memcmp(ad_data(a->t[i]), ad_data(b->t[i]), bytes) != 0) return false;
    }
    return true;
}

static void save_model(const char *path, model *m, const char *meta)
{
    int rc = nn_save_safetensors(path, 5, names, m->t, meta);
    ck_assert_msg(rc == 0, "save: %s", ad_error());
}

START_TEST(round_trip)
{
    model a = make_model(1.5), b = make_model(-9);
    const char *meta = "{\"epoch\": \"3\", \"note\": \"a \\\"quoted\\\" caf\\u00e9\\n\"}";
    save_model(tpath("m.safetensors"), &a, meta);
    ck_assert(!same_model(&a, &b));
    ck_assert_int_eq(nn_load_safetensors(tpath("m.safetensors"), 5, names, b.t, true), 0);
    ck_assert(same_model(&a, &b));

    /* The layout on disk: length, JSON padded to 8, data in the given order. */
    size_t n;
    uint8_t *f = read_all(tpath("m.safetensors"), &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f[i];
    ck_assert_uint_eq(hl % 8, 0);
    ck_assert_uint_eq(n, 8 + hl + 24 + 24 + 16 + 8);
    ck_assert_int_eq(f[8], '{');
    ck_assert(memcmp(f + 8 + hl, ad_data(a.t[0]), 24) == 0); /* little-endian host */
    free(f);

    nn_safetensors_info *info = nn_safetensors_inspect(tpath("m.safetensors"));
    ck_assert_msg(info != NULL, "%s", ad_error());
    ck_assert_int_eq(info->n, 5);
    ck_assert_uint_eq(info->header_size, hl);
    ck_assert_uint_eq(info->data_size, 72);
    const char *order[5] = {"fc1.weight", "fc1.bias", "step", "scalar", "empty"};
    const char *dtypes[5] = {"F32", "F64", "I64", "F64", "F32"};
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(info->entries[i].name, order[i]);
        ck_assert_str_eq(info->entries[i].dtype, dtypes[i]);
    }
    ck_assert_int_eq(info->entries[0].ndim, 2);
    ck_assert_int_eq(info->entries[0].shape[1], 3);
    ck_assert_int_eq(info->entries[3].ndim, 0);
    ck_assert_int_eq(info->entries[4].shape[0], 0);
    ck_assert_uint_eq(info->entries[1].begin, 24);
    ck_assert_uint_eq(info->entries[1].end, 48);
    ck_assert_str_eq(nn_safetensors_metadata(info, "epoch"), "3");
    ck_assert_str_eq(nn_safetensors_metadata(info, "note"), "a \"quoted\" caf\xc3\xa9\n");
    ck_assert_ptr_null(nn_safetensors_metadata(info, "nope"));
    nn_safetensors_info_free(info);

    ad_tensor *s = nn_safetensors_read(tpath("m.safetensors"), "step");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(((int64_t *)ad_data(s))[1], (1LL << 62) + 1);
    ad_tensor_free(s);
    ck_assert_error(nn_safetensors_read(tpath("m.safetensors"), "nope"), "has no entry 'nope'");

    /* No metadata and no tensors are fine too. */
    ck_assert_int_eq(nn_save_safetensors(tpath("empty.safetensors"), 0, NULL, NULL, NULL), 0);
    info = nn_safetensors_inspect(tpath("empty.safetensors"));
    ck_assert_int_eq(info->n, 0);
    ck_assert_int_eq(info->n_metadata, 0);
    nn_safetensors_info_free(info);
    free_model(&a), free_model(&b);
}
END_TEST

/* A view with gaps is saved as the row-major copy of what it shows, and
 * can be loaded into a view as well. */
START_TEST(strided_tensors)
{
    double v[6] = {1, 2, 3, 4, 5, 6};
    ad_tensor *a = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(2, 3), v);
    ad_tensor *at = ad_transpose(a, 0, 1); /* [3,2]: 1 4 2 5 3 6 */
    ck_assert(!ad_is_contiguous(at));
    const char *nm[1] = {"t"};
    ck_assert_int_eq(nn_save_safetensors(tpath("t.safetensors"), 1, nm, &at, NULL), 0);
    ad_tensor *r = nn_safetensors_read(tpath("t.safetensors"), "t");
    const double want[6] = {1, 4, 2, 5, 3, 6};
    for (int i = 0; i < 6; i++) ck_assert_close(ot_at(r, i), want[i], 0);
    ad_tensor *z = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(2, 3));
    ad_tensor *zt = ad_transpose(z, 0, 1);
    ck_assert_int_eq(nn_load_safetensors(tpath("t.safetensors"), 1, nm, &zt, true), 0);
    for (int i = 0; i < 6; i++) ck_assert_close(ot_at(z, i), v[i], 0);
    ad_tensor_free(zt), ad_tensor_free(z), ad_tensor_free(r), ad_tensor_free(at);
    ad_tensor_free(a);
}
END_TEST

START_TEST(wrong_model_left_untouched)
{
    model a = make_model(2), b = make_model(5), keep = make_model(5);
    save_model(tpath("m.safetensors"), &a, NULL);
    /* The wrong one is last: the first ones must not have been written. */
    ad_tensor *wrong = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(3, 2));
    ad_tensor *t[5] = {b.t[1], b.t[2], b.t[3], b.t[4], wrong};
    const char *nm[5] = {"fc1.bias", "step", "scalar", "empty", "fc1.weight"};
    char msg[1024];
    snprintf(msg, sizeof msg, "nn_load_safetensors: %s: 'fc1.weight' has shape [2,3] in the "
             "file, the tensor is [3,2]", tpath("m.safetensors"));
    ck_assert_error_rc(nn_load_safetensors(tpath("m.safetensors"), 5, nm, t, true), msg);
    ck_assert(same_model(&b, &keep));
    /* an expanded view as the last target: refused before the others are
     * written (it was refused only when written, after them) */
    ad_tensor *one = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(1, 3));
    ad_tensor *wide = ad_expand(one, 2, (int64_t[]){2, 3});
    t[4] = wide;
    ck_assert_error_rc(nn_load_safetensors(tpath("m.safetensors"), 5, nm, t, true),
                       "tensors[4] ('fc1.weight') [2,3] is an expanded view (stride 0 in "
                       "dimension 0)");
    ck_assert(same_model(&b, &keep));
    ad_tensor_free(wide), ad_tensor_free(one);
    t[4] = wrong;
    ad_tensor *f64 = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(2, 3));
    t[4] = f64;
    ck_assert_error_rc(nn_load_safetensors(tpath("m.safetensors"), 5, nm, t, true),
                       "'fc1.weight' is F32 in the file, the tensor is float64");
    nm[4] = "fc2.weight";
    t[4] = b.t[0];
    /* a mismatch lists what the file has and what was asked for */
    ck_assert_error_rc(nn_load_safetensors(tpath("m.safetensors"), 5, nm, t, true),
                       "has no entry 'fc2.weight'; the file has 5: 'fc1.weight', 'fc1.bias', "
                       "'step', 'scalar', 'empty'");
    ck_assert_error_rc(nn_load_safetensors(tpath("m.safetensors"), 4, nm, t, true),
                       "has an entry 'fc1.weight' that is not among the 4 names asked for (a "
                       "strict load refuses entries it does not load); asked for: 'fc1.bias', "
                       "'step', 'scalar', 'empty'");
    /* a prefix (a model saved inside a wrapper) is pointed out */
    nm[4] = "net.fc1.weight";
    ck_assert_error_rc(nn_load_safetensors(tpath("m.safetensors"), 5, nm, t, true),
                       "the model's 'net.fc1.weight' has a prefix 'net.' that the file's "
                       "'fc1.weight' lacks");
    /* and the other way: the file's names carry the wrapper's prefix */
    const char *wrapped[1] = {"model.fc1.weight"};
    ck_assert_int_eq(nn_save_safetensors(tpath("w.safetensors"), 1, wrapped, &b.t[0], NULL), 0);
    ck_assert_error_rc(nn_load_safetensors(tpath("w.safetensors"), 1, (const char *[]){"fc1.weight"},
                                           &b.t[0], true),
                       "has no entry 'fc1.weight'; the file has 1: 'model.fc1.weight'; the "
                       "file's 'model.fc1.weight' has a prefix 'model.' that the model's names "
                       "lack");
    ck_assert(same_model(&b, &keep));
    nm[4] = "step";
    ck_assert_error_rc(nn_load_safetensors(tpath("m.safetensors"), 5, nm, t, false),
                       "'step' is asked for twice");
    /* Not strict: a subset loads, the rest of the file is ignored. */
    ck_assert_int_eq(nn_load_safetensors(tpath("m.safetensors"), 1, nm, t, false), 0);
    ck_assert(memcmp(ad_data(b.t[1]), ad_data(a.t[1]), 24) == 0);
    ck_assert(memcmp(ad_data(b.t[0]), ad_data(keep.t[0]), 24) == 0);
    ad_tensor_free(wrong), ad_tensor_free(f64);
    free_model(&a), free_model(&b), free_model(&keep);
}
END_TEST

/* The file cut at every length: always a clear error, never a crash, and
 * the model as it was. */
START_TEST(truncated_files)
{
    model a = make_model(3), b = make_model(4), keep = make_model(4);
    save_model(tpath("m.safetensors"), &a, "{\"k\": \"v\"}");
    size_t n;
    uint8_t *f = read_all(tpath("m.safetensors"), &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f[i];
    /* Shortened in place, from the end: rewriting the file for every cut
     * is slow on ext4, which flushes a file truncated and rewritten. */
    write_bytes(tpath("cut.safetensors"), f, n);
    for (size_t cut = n - 1; cut != (size_t)-1; cut--) {
        ck_assert_int_eq(truncate(tpath("cut.safetensors"), (off_t)cut), 0);
        const char *needle = cut == 0           ? "is empty"
                             : cut < 8          ? "less than the 8-byte header length"
                             : cut < 8 + hl     ? "is truncated: the header length says"
                                                : "is truncated: its entries need 72 bytes";
        ck_assert_error_rc(nn_load_safetensors(tpath("cut.safetensors"), 5, names, b.t, true),
                           needle);
        ck_assert(same_model(&b, &keep));
    }
    free(f);
    free_model(&a), free_model(&b), free_model(&keep);
}
END_TEST

/* Every header byte replaced by each of a set of troublesome bytes: the
 * load either fails with a message and leaves the model as it was, or
 * (when the change is harmless, e.g. in a metadata string) loads the
 * original values.  Run under AddressSanitizer this also shows that no
 * corruption makes the parser read or write out of bounds. */
START_TEST(corrupt_headers)
{
    model a = make_model(6), b = make_model(7), keep = make_model(7);
    save_model(tpath("m.safetensors"), &a, "{\"k\": \"v\\u00e9\"}");
    size_t n;
    uint8_t *f = read_all(tpath("m.safetensors"), &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f[i];
    static const uint8_t subst[] = {'"', '{', '}', '[', ']', ',', ':', '0', '9', '-', '\\',
                                    'x', ' ', 'e', '.', 0x00, 0x1f, 0x80, 0xc3, 0xff};
    int failed = 0, loaded = 0;
    /* One byte changed in place and put back each time (see
     * truncated_files). */
    write_bytes(tpath("bad.safetensors"), f, n);
    int fd = open(tpath("bad.safetensors"), O_WRONLY);
    ck_assert_int_ge(fd, 0);
    for (uint64_t at = 0; at < 8 + hl; at++)
        for (size_t k = 0; k < sizeof subst; k++) {
            if (f[at] == subst[k]) continue;
            ck_assert_int_eq(pwrite(fd, &subst[k], 1, (off_t)at), 1);
            ad_clear_error();
            int rc = nn_load_safetensors(tpath("bad.safetensors"), 5, names, b.t, true);
            if (rc == 0) {
                ck_assert_msg(same_model(&a, &b), "byte %llu = 0x%02x loaded other values",
                              (unsigned long long)at, subst[k]);
                for (int i = 0; i < 5; i++) ad_copy_into(b.t[i], keep.t[i]);
                loaded++;
            } else {
                ck_assert_msg(ad_error() && strstr(ad_error(), "nn_load_safetensors: "),
                              "byte %llu = 0x%02x: no message", (unsigned long long)at,
                              subst[k]);
                ck_assert(same_model(&b, &keep));
                failed++;
            }
            ck_assert_int_eq(pwrite(fd, &f[at], 1, (off_t)at), 1);
        }
    close(fd);
    ck_assert_int_gt(failed, 1000);
    ck_assert_int_gt(loaded, 0); /* e.g. a letter of the metadata value changed */
    free(f);
    free_model(&a), free_model(&b), free_model(&keep);
}
END_TEST

/* A file with the given header text (unpadded) and data bytes. */
static const char *handmade(const char *header, size_t data)
{
    size_t h = strlen(header);
    uint8_t *f = calloc(8 + h + data, 1);
    for (int i = 0; i < 8; i++) f[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(f + 8, header, h);
    write_bytes(tpath("hand.safetensors"), f, 8 + h + data);
    free(f);
    return tpath("hand.safetensors");
}

static void expect_inspect_error(const char *header, size_t data, const char *needle)
{
    ck_assert_error(nn_safetensors_inspect(handmade(header, data)), needle);
}

#define ENTRY(name, dtype, shape, b, e)                                                      \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

START_TEST(malformed_headers)
{
    /* Valid, and written by hand: escapes, surrogate pairs, key order. */
    nn_safetensors_info *info = nn_safetensors_inspect(handmade(
        "{\"caf\\u00e9 \\ud83d\\ude00\":{\"data_offsets\":[0,8],\"shape\":[4],"
        "\"dtype\":\"BF16\"} , \"b\":" "{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[8,9]}}"
        "   ", 9));
    ck_assert_msg(info != NULL, "%s", ad_error());
    ck_assert_str_eq(info->entries[0].name, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    ck_assert_str_eq(info->entries[0].dtype, "BF16");
    nn_safetensors_info_free(info);
    ck_assert_error(nn_safetensors_read(handmade("{" ENTRY("x", "BF16", "[2]", 0, 4) "}", 4), "x"),
                    "has dtype BF16; only F32, F64 and I64 can be loaded");

    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 4, 12) "}",
                         12, "the data of 'a' [0, 8] and 'b' [4, 12] overlap");
    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 12, 20) "}",
                         20, "bytes [8, 12) of the data belong to no entry");
    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 0, 8) "}", 12,
                         "has 4 bytes of trailing data");
    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 100, 108) "}", 8,
                         "bytes [0, 100) of the data belong to no entry");
    expect_inspect_error("{" ENTRY("a", "F32", "[3]", 0, 8) "}", 8,
                         "'a' is F32 [3] = 12 bytes, but its data_offsets [0, 8] span 8");
    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 8, 0) "}", 8, "end before begin");
    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("a", "F32", "[2]", 8, 16) "}",
                         16, "entry 'a' appears twice");
    expect_inspect_error("{" ENTRY("a", "F32", "[4294967296,4294967296,4294967296]", 0, 8) "}", 8,
                         "too many elements");
    expect_inspect_error("{" ENTRY("a", "F32", "[-2]", 0, 8) "}", 8, "negative number");
    expect_inspect_error("{" ENTRY("a", "F32", "[2.0]", 0, 8) "}", 8, "not an integer");
    expect_inspect_error("{" ENTRY("a", "F32", "[02]", 0, 8) "}", 8, "leading zero");
    expect_inspect_error("{" ENTRY("a", "F32", "[99999999999999999999]", 0, 8) "}", 8,
                         "number too large");
    expect_inspect_error("{" ENTRY("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4,
                         "more than 8 values");
    expect_inspect_error("{" ENTRY("a", "Q32", "[2]", 0, 8) "}", 8, "unknown dtype 'Q32'");
    expect_inspect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
                         "entry 'a' lacks 'data_offsets'");
    expect_inspect_error("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 8, "key 'dtype' twice");
    expect_inspect_error("{\"a\":{\"dtype\":\"F32\",\"offsets\":[0,8]}}", 8, "unknown key 'offsets'");
    expect_inspect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
                         "must be [begin, end]");
    expect_inspect_error("{\"__metadata__\":{\"a\":1}}", 0, "the metadata value of 'a' must be a "
                                                           "string");
    expect_inspect_error("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "'a' appears twice");
    expect_inspect_error("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice");
    expect_inspect_error("{\"a\\q\":{}}", 0, "at byte 3: invalid escape");
    expect_inspect_error("{\"a\\ud800\":{}}", 0, "unpaired surrogate");
    expect_inspect_error("{\"a\\u0000\":{}}", 0, "\\u0000 in a string");
    expect_inspect_error("{\"a\tb\":{}}", 0, "control character 0x09");
    expect_inspect_error("{\"abc", 0, "unterminated string");
    expect_inspect_error("{\"\xc3\x28\":{}}", 0, "invalid UTF-8 at byte 2");
    expect_inspect_error("{}x", 0, "unexpected 'x' after the JSON object");
    expect_inspect_error("[]", 0, "at byte 0: expected '{', found '['");
    expect_inspect_error("{\"a\" {}}", 0, "expected ':', found '{'");
    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 0, 8) ",}", 8, "expected '\"', found '}'");
    expect_inspect_error("{" ENTRY("a", "F32", "[2]", 0, 8), 8, "expected ',' or '}', found the end");

    /* The 8-byte length itself. */
    uint8_t f[16] = {0, 0, 0, 0, 0, 0x01, 0, 0}; /* 2^40 */
    write_bytes(tpath("len.safetensors"), f, 16);
    ck_assert_error(nn_safetensors_inspect(tpath("len.safetensors")),
                    "header length 1099511627776 is absurd");
    memset(f, 0, 8);
    write_bytes(tpath("len.safetensors"), f, 16);
    ck_assert_error(nn_safetensors_inspect(tpath("len.safetensors")),
                    "header length 0 is too short");
    ck_assert_error(nn_safetensors_inspect(tpath("none.safetensors")), "cannot open");
}
END_TEST

static int count_files(void)
{
    DIR *d = opendir(tmpdir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

START_TEST(save_errors_and_atomicity)
{
    model a = make_model(1), b = make_model(8), keep = make_model(8);
    const char *nm[5] = {"a", "b", "a", "d", "e"};
    ck_assert_error_rc(nn_save_safetensors(tpath("x"), 5, nm, a.t, NULL),
                       "'a' is names[0] and names[2]");
    nm[2] = "__metadata__";
    ck_assert_error_rc(nn_save_safetensors(tpath("x"), 5, nm, a.t, NULL), "format reserves");
    nm[2] = "";
    ck_assert_error_rc(nn_save_safetensors(tpath("x"), 5, nm, a.t, NULL), "names[2] is empty");
    nm[2] = "\xff";
    ck_assert_error_rc(nn_save_safetensors(tpath("x"), 5, nm, a.t, NULL), "not valid UTF-8");
    ck_assert_error_rc(nn_save_safetensors(tpath("x"), 5, names, a.t, "{\"a\": 1}"),
                       "metadata_json is invalid at byte 6: the metadata value of 'a' must be");
    ck_assert_error_rc(nn_save_safetensors(tpath("x"), 5, names, a.t, "{} x"), "unexpected 'x'");
    ad_tensor *t[2] = {a.t[0], NULL};
    ck_assert_error_rc(nn_save_safetensors(tpath("x"), 2, names, t, NULL),
                       "tensors[1] ('fc1.bias') is NULL");
    ck_assert_error_rc(nn_save_safetensors(tpath("no/dir/x"), 5, names, a.t, NULL),
                       "cannot create a temporary file next to");
    ck_assert_int_eq(access(tpath("x"), F_OK), -1);

    /* A save that fails half-way (here: the file size limit, as a full
     * disk would) leaves the previous checkpoint as it was and no
     * temporary file behind. */
    int before = count_files();
    save_model(tpath("ckpt.safetensors"), &b, NULL);
    ck_assert_int_eq(count_files(), before + 1);
    ad_tensor *big = ad_zeros(NULL, AD_FLOAT64, AD_SHAPE(64 * 1024));
    const char *bn[1] = {"big"};
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 16384;
    signal(SIGXFSZ, SIG_IGN); /* get EFBIG rather than being killed */
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    ck_assert_error_rc(nn_save_safetensors(tpath("ckpt.safetensors"), 1, bn, &big, NULL),
                       "cannot write");
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    ck_assert_int_eq(count_files(), before + 1);
    ck_assert_int_eq(nn_load_safetensors(tpath("ckpt.safetensors"), 5, names, a.t, true), 0);
    ck_assert(same_model(&a, &keep));
    ad_tensor_free(big);
    free_model(&a), free_model(&b), free_model(&keep);
}
END_TEST

/* nn_check_writable: a save that would fail is refused up front with the
 * save's own reason, and a check that passes leaves nothing behind and an
 * existing file as it was; a save to the checked path then succeeds. */
START_TEST(check_writable)
{
    int before = count_files();
    ck_assert_error_rc(nn_check_writable(tpath("no/dir/x")),
                       "nn_check_writable: cannot create a temporary file next to");
    ck_assert_error_rc(nn_check_writable(tmpdir), "it is a directory");
    ck_assert_error_rc(nn_check_writable(NULL), "nn_check_writable: path is NULL or empty");
    ck_assert_error_rc(nn_check_writable(""), "nn_check_writable: path is NULL or empty");
    /* the kind of error, for a program that branches on it */
    ck_assert_int_eq(nn_check_writable(NULL), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_INVALID);
    ck_assert_int_eq(nn_check_writable(tpath("no/dir/y")), -1);
    ck_assert_int_eq(ad_errcode(), AD_ERR_IO);
    ck_assert(strstr(ad_error(), "No such file or directory"));
    ad_clear_error();
    ck_assert_int_eq(nn_check_writable(tpath("fresh.safetensors")), 0);
    ck_assert_int_eq(access(tpath("fresh.safetensors"), F_OK), -1);
    ck_assert_int_eq(count_files(), before);
    model a = make_model(2), b = make_model(9);
    save_model(tpath("kept.safetensors"), &a, NULL);
    ck_assert_int_eq(nn_check_writable(tpath("kept.safetensors")), 0);
    ck_assert_int_eq(count_files(), before + 1);
    ck_assert_int_eq(nn_load_safetensors(tpath("kept.safetensors"), 5, names, b.t, true), 0);
    ck_assert(same_model(&a, &b));
    free_model(&a), free_model(&b);
}
END_TEST

/* A reader of the spec in numpy, independent of ours. */
static const char *numpy_reader =
    "import json, struct, sys\n"
    "import numpy as np\n"
    "raw = open(sys.argv[1], 'rb').read()\n"
    "n, = struct.unpack('<Q', raw[:8])\n"
    "header = json.loads(raw[8:8 + n])\n"
    "meta = header.pop('__metadata__', {})\n"
    "for k in sorted(meta):\n"
    "    print('meta', k, meta[k])\n"
    "types = {'F32': '<f4', 'F64': '<f8', 'I64': '<i8'}\n"
    "for name, e in header.items():\n"
    "    b, end = e['data_offsets']\n"
    "    a = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=types[e['dtype']])\n"
    "    a = a.reshape(e['shape'])\n"
    "    print(name, e['dtype'], list(a.shape), *[repr(v) for v in a.ravel().tolist()])\n";

START_TEST(numpy_cross_check)
{
    /* The python3 on PATH first; then Debian's, which python3-numpy
     * serves, for when PATH leads to another Python (pyenv, a venv). */
    const char *py = NULL;
    static const char *const pythons[] = {"python3", "/usr/bin/python3"};
    char cmd[1400];
    for (int i = 0; i < 2 && !py; i++) {
        snprintf(cmd, sizeof cmd, "%s -c 'import numpy' >/dev/null 2>&1", pythons[i]);
        if (system(cmd) == 0) py = pythons[i];
    }
    if (!py) {
        printf("SKIP numpy_cross_check: no python3 with numpy (apt-get install python3-numpy)\n");
        return;
    }
    model a = make_model(0.3);
    save_model(tpath("np.safetensors"), &a, "{\"epoch\": \"12\"}");
    write_bytes(tpath("reader.py"), numpy_reader, strlen(numpy_reader));
    snprintf(cmd, sizeof cmd, "%s %s %s > %s", py, tpath("reader.py"), tpath("np.safetensors"),
             tpath("np.txt"));
    ck_assert_int_eq(system(cmd), 0);
    FILE *f = fopen(tpath("np.txt"), "r");
    char line[4096];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "meta epoch 12\n");
    const char *shapes[5] = {"[2, 3]", "[3]", "[2]", "[]", "[0, 4]"};
    const char *dtypes[5] = {"F32", "F64", "I64", "F64", "F32"};
    for (int i = 0; i < 5; i++) {
        ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
        char head[128];
        snprintf(head, sizeof head, "%s %s %s", names[i], dtypes[i], shapes[i]);
        ck_assert_msg(strncmp(line, head, strlen(head)) == 0, "'%s' vs '%s'", line, head);
        char *p = line + strlen(head);
        for (int64_t k = 0; k < ad_numel(a.t[i]); k++) {
            char *end;
            if (ad_tensor_dtype(a.t[i]) == AD_INT64) {
                long long v = strtoll(p, &end, 10);
                ck_assert_int_eq(v, ((int64_t *)ad_data(a.t[i]))[k]);
            } else {
                double v = strtod(p, &end);
                ck_assert_msg(v == ot_at(a.t[i], k), "%s[%lld]: numpy %.17g, ours %.17g",
                              names[i], (long long)k, v, ot_at(a.t[i], k));
            }
            ck_assert_ptr_ne(end, p);
            p = end;
        }
        ck_assert_str_eq(p, "\n");
    }
    ck_assert_ptr_null(fgets(line, sizeof line, f));
    fclose(f);
    free_model(&a);
}
END_TEST

int main(void)
{
    if (ot_make_tmpdir(tmpdir, sizeof tmpdir, "test_checkpoint")) return EXIT_FAILURE;
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_test(tc, round_trip);
    tcase_add_test(tc, strided_tensors);
    tcase_add_test(tc, wrong_model_left_untouched);
    tcase_add_test(tc, truncated_files);
    tcase_add_test(tc, corrupt_headers);
    tcase_add_test(tc, malformed_headers);
    tcase_add_test(tc, save_errors_and_atomicity);
    tcase_add_test(tc, check_writable);
    tcase_add_test(tc, numpy_cross_check);
    suite_add_tcase(s, tc);
    int rc = ot_run(s);
    ot_remove_tree(tmpdir);
    return rc;
}

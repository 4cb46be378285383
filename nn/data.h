/* nn/data.h - data sets: IDX files (MNIST, Fashion-MNIST), numeric CSV, and
 * a mini-batch loader.
 *
 * Errors follow autodiff's convention: functions returning a pointer return
 * NULL, functions returning int return -1, and the message, naming the
 * function, the file and the offending values, is read with ad_error():
 *   "nn_idx_load: train-images-idx3-ubyte is truncated: header says
 *    60000x28x28 = 47040000 bytes of data, file has 1234"
 * Nothing here aborts, exits or prints.
 *
 * Typical use (Fashion-MNIST, normalised with the training set's mean and
 * standard deviation, as torchvision.transforms.Normalize does):
 *
 *     nn_mnist *train = nn_mnist_load("/usr/share/datasets/fashion-mnist", true);
 *     nn_loader_options o = {.batch_size = 64, .shuffle = true, .seed = 1,
 *                            .normalize = true, .mean = 0.2860, .std = 0.3530};
 *     nn_loader *dl = nn_loader_from_idx(train->images, train->labels, &o);
 *     ad_tensor *x, *y;
 *     for (int epoch = 0; epoch < 10; epoch++)
 *         while (nn_loader_next(dl, &x, &y) == 1) {
 *             ... x is float32 [64,28,28], y int64 [64] ...
 *         }
 *     nn_loader_free(dl);
 *     nn_mnist_free(train);
 */
#ifndef NN_DATA_H
#define NN_DATA_H

#include <autodiff/autodiff.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX files ---------------------------------------------------------
 * The format of the MNIST family (http://yann.lecun.com/exdb/mnist/):
 * 4 magic bytes 0x00 0x00 <type> <ndim>, then ndim big-endian uint32
 * extents, then the elements in row-major order, big-endian.  A file may be
 * gzip-compressed (MNIST is distributed as .gz); reading detects this by
 * content, not by name. */

/* The element type byte of the magic.  The values are the format's codes. */
typedef enum nn_idx_type {
    NN_IDX_UINT8 = 0x08,   /* "unsigned byte" - MNIST images and labels */
    NN_IDX_INT8 = 0x09,
    NN_IDX_INT16 = 0x0B,
    NN_IDX_INT32 = 0x0C,
    NN_IDX_FLOAT32 = 0x0D,
    NN_IDX_FLOAT64 = 0x0E
} nn_idx_type;

/* The format allows 255 dimensions; we accept what a tensor can have. */
#define NN_IDX_MAX_DIMS AD_MAX_DIMS

/* An IDX array in memory, in its own type: uint8 stays uint8 (60000 MNIST
 * images take 47 MB, not the 188 MB of a float copy); the loader converts
 * one batch at a time.
 *
 * data holds numel elements in row-major order in the host's byte order:
 * uint8_t for NN_IDX_UINT8, int8_t, int16_t, int32_t, float or double for
 * the others (cast data; malloc's alignment suits them all).
 *
 * nn_idx_load allocates the struct and data; free both with nn_idx_free.
 * You may also fill a struct yourself (pointing at your own buffer) to pass
 * to nn_idx_save or nn_loader_from_idx, which never free it. */
typedef struct nn_idx {
    nn_idx_type type;
    int ndim;                        /* 1..NN_IDX_MAX_DIMS */
    int64_t dims[NN_IDX_MAX_DIMS];   /* extents, dims[0] is the sample count */
    int64_t numel;                   /* product of dims */
    uint8_t *data;                   /* numel elements of the type */
} nn_idx;

/* Reads an IDX file, plain or gzip-compressed.  Errors (every one of them
 * leaves nothing allocated): the file cannot be opened; bad magic (first
 * two bytes not zero, unknown type code); ndim 0 or above 8; extents whose
 * product overflows; the file ends before the data the header describes
 * ("is truncated: header says 60000x28x28 = 47040000 bytes of data, file
 * has 1234"); bytes after that data ("has 16 bytes of trailing data"); a
 * corrupt gzip stream (bad CRC, cut short). */
AD_API nn_idx *nn_idx_load(const char *path);
/* Frees what nn_idx_load returned.  NULL is ignored.  Do not call it on a
 * struct you filled yourself. */
AD_API void nn_idx_free(nn_idx *idx);
/* Writes idx to path in the IDX format, gzip-compressed when path ends in
 * ".gz".  The file is replaced atomically (see nn/checkpoint.h): a crash
 * leaves the old file or the complete new one.  Errors: NULL arguments,
 * invalid type, ndim or extents (an extent must fit in 32 bits), I/O. */
AD_API int nn_idx_save(const char *path, const nn_idx *idx);
/* "ubyte", "byte", "short", "int", "float", "double" (the format's own
 * names); "invalid" for anything else. */
AD_API const char *nn_idx_type_name(nn_idx_type type);
/* Size of one element in bytes; 0 with an error for an invalid type. */
AD_API size_t nn_idx_type_size(nn_idx_type type);

/* ---- MNIST and Fashion-MNIST ---------------------------------------------
 * Both use the same four files.  Debian's dataset-fashion-mnist package
 * installs them under /usr/share/datasets/fashion-mnist. */
typedef struct nn_mnist {
    nn_idx *images; /* uint8 [N, rows, cols], 0 = background */
    nn_idx *labels; /* uint8 [N], each < 10 */
} nn_mnist;

/* Loads the training set (train = true: train-images-idx3-ubyte and
 * train-labels-idx1-ubyte) or the test set (t10k-...) from dir, taking each
 * file as it is or with ".gz" appended, whichever exists (the plain file
 * first).  Errors: a file missing (both names listed), any nn_idx_load
 * error, images not uint8 3-D or labels not uint8 1-D, image and label
 * counts differing, a label >= 10 (its index given).  Free with
 * nn_mnist_free. */
AD_API nn_mnist *nn_mnist_load(const char *dir, bool train);
AD_API void nn_mnist_free(nn_mnist *m);

/* ---- CSV ---------------------------------------------------------------
 * A numeric table, one row per line, fields separated by a delimiter:
 *   - an optional header row (skipped; its field count must match);
 *   - fields may be quoted ("1.5"; "" inside quotes is one quote) and have
 *     spaces around them; numbers are read with strtod in the C locale's
 *     syntax (so "nan", "inf" and hexadecimal "0x1p-3" are accepted);
 *   - lines may end in LF or CRLF, the last one with or without a newline;
 *     blank lines are skipped; a UTF-8 byte-order mark at the start of the
 *     file (as Excel writes) is skipped;
 *   - quoted fields may not span lines.
 * Errors name the file, the 1-based line and column: an empty file or one
 * with no data rows; "line 3, column 2: 'abc' is not a number"; an empty
 * field; a row whose field count differs from the first row's (ragged);
 * an unterminated quote; a field (header included) holding a control
 * character - a byte below 0x20 other than the tab, or 0x7f, quoted or
 * not - given by its code ("line 2, column 1: control character 0x07 in
 * the field"), so no message echoes raw control bytes; a NUL byte. */
typedef struct nn_csv_options {
    char delimiter; /* 0 means ',' */
    bool header;    /* the first non-blank line is a header row */
    ad_dtype dtype; /* AD_FLOAT32 (the zero value) or AD_FLOAT64 */
} nn_csv_options;

/* Reads path into a persistent [rows, cols] tensor of opts->dtype (opts may
 * be NULL: comma, no header, float32).  The caller frees it with
 * ad_tensor_free. */
AD_API ad_tensor *nn_csv_load(const char *path, const nn_csv_options *opts);

/* ---- mini-batches ---------------------------------------------------------
 * A loader walks a data set in batches of batch_size samples, in a new
 * random order each epoch when shuffling, like torch.utils.data.DataLoader.
 *
 * Batches are persistent tensors owned by the loader and *reused*: every
 * call to nn_loader_next overwrites the same two tensors (a second pair
 * holds the shorter last batch when there is one), so a training step
 * allocates nothing.  Do not free them and do not keep a batch across calls
 * (ad_copy it if you must).  Only the current batch is ever converted to
 * float: no float copy of the data set is made.
 *
 * Shuffling is a Fisher-Yates shuffle driven by ad_rng (tensor.h).  The
 * order of epoch e is a function of (seed, e) only, so the same seed gives
 * the same batches on every run, and nn_loader_set_epoch resumes an
 * interrupted run exactly. */
typedef struct nn_loader nn_loader;

typedef struct nn_loader_options {
    int64_t batch_size; /* >= 1 */
    bool shuffle;       /* false: samples in order 0, 1, 2, ... */
    uint64_t seed;      /* for the shuffle */
    bool drop_last;     /* drop the last batch when it is shorter */
    int64_t limit;      /* use only the first `limit` samples; 0 means all */
    /* nn_loader_from_idx only (must stay 0 / false for tensor loaders): */
    ad_dtype dtype;     /* of the image batch: AD_FLOAT32 (0) or AD_FLOAT64 */
    double scale;       /* pixel value v becomes v * scale; 0 means 1/255 */
    bool normalize;     /* then (v * scale - mean) / std */
    double mean, std;
    /* Shape of one sample in the batch, e.g. {784} to flatten 28x28
     * images or {1, 28, 28} for a convolution; same element count as
     * stored.  sample_ndim 0 keeps the stored shape.  Either loader. */
    int sample_ndim;
    int64_t sample_shape[AD_MAX_DIMS - 1];
} nn_loader_options;

/* A loader over uint8 IDX images [N, ...] (e.g. nn_mnist's) and labels [N]
 * of an integer IDX type (uint8, int8, int16, int32), or labels NULL.
 * Batches: x of opts->dtype [B, ...sample shape], y int64 [B] (NULL when
 * labels is NULL).  The loader keeps pointers to images and labels: they
 * must outlive it.  Errors: images not uint8, labels not an integer type or
 * not [N], batch_size < 1, limit < 0 or > N, std <= 0 or not finite with
 * normalize, a sample shape of another element count, drop_last with fewer
 * samples than one batch. */
AD_API nn_loader *nn_loader_from_idx(const nn_idx *images, const nn_idx *labels,
                              const nn_loader_options *opts);
/* A loader over tensors x [N, ...] and y [N, ...] (y may be NULL), of any
 * dtypes, e.g. the columns of a CSV file: batches keep their dtypes.  The
 * loader reads x and y when producing each batch, so they must outlive it
 * and not change shape; a non-contiguous x or y is copied once here
 * instead.  Errors as above, and x and y of different lengths. */
AD_API nn_loader *nn_loader_from_tensors(ad_tensor *x, ad_tensor *y, const nn_loader_options *opts);
AD_API void nn_loader_free(nn_loader *l);

/* The next batch of the current epoch into *x and *y (y may be NULL to not
 * ask for labels).  Returns 1 with a batch, 0 when the epoch is over (*x
 * and *y are then NULL), -1 on error.  The call after the one that returned
 * 0 starts the next epoch, so
 *     for (epoch...) while (nn_loader_next(l, &x, &y) == 1) ...
 * walks epoch after epoch. */
AD_API int nn_loader_next(nn_loader *l, ad_tensor **x, ad_tensor **y);
/* Goes back to the first batch of the current epoch (same order). */
AD_API int nn_loader_reset(nn_loader *l);
/* Goes to the first batch of epoch `epoch` (>= 0): its order is the one a
 * run from epoch 0 would have had there. */
AD_API int nn_loader_set_epoch(nn_loader *l, int64_t epoch);
/* Makes the loader serve shard `rank` of `world_size` (PyTorch's
 * DistributedSampler, with the global batch kept whole): every worker
 * shuffles with the same seed, so all draw the same epoch order; batch k
 * of the whole run is order[k*G .. k*G + G) with G = world_size *
 * batch_size, and rank r takes its r-th slice of batch_size samples.  So
 * world_size workers with batch B see, step for step, exactly the samples
 * one loader with batch world_size * B would, and averaging their
 * gradients (weighted by batch size) gives its step.  A shorter last
 * global batch of R samples is split as evenly as the ranks allow (the
 * first R % world_size ranks take one more); with fewer than world_size
 * samples left, or drop_last, it is dropped, so that every rank takes the
 * same number of steps.  world_size 1 undoes the sharding.  Goes to the
 * first batch of the current epoch.  Errors: NULL, world_size < 1, rank
 * outside [0, world_size), no whole global batch and nothing to split
 * (fewer samples than ranks), out of memory. */
AD_API int nn_loader_shard(nn_loader *l, int64_t rank, int64_t world_size);
/* The current epoch (0 first); -1 with an error for NULL. */
AD_API int64_t nn_loader_epoch(const nn_loader *l);
/* Samples used (N, or limit, of every shard together) and batches per
 * epoch (this shard's steps); -1 with an error for NULL. */
AD_API int64_t nn_loader_num_samples(const nn_loader *l);
AD_API int64_t nn_loader_num_batches(const nn_loader *l);
/* The sample indices of the current epoch in the order they are served
 * (num_samples entries, owned by the loader, changed by the next epoch);
 * NULL with an error for NULL. */
AD_API const int64_t *nn_loader_order(const nn_loader *l);

#ifdef __cplusplus
}
#endif
#endif

/* nn/checkpoint.h - saving and loading tensors in the safetensors format.
 *
 * safetensors (https://github.com/huggingface/safetensors) is the format of
 * Hugging Face checkpoints, readable from Python with `safetensors.numpy`
 * or `safetensors.torch` and simple enough to read with numpy alone:
 *
 *   8 bytes    N, the header length, unsigned little-endian
 *   N bytes    a JSON object, padded with spaces (we pad N to a multiple
 *              of 8 so the data that follows is aligned):
 *                {"__metadata__": {"epoch": "3"},
 *                 "fc1.weight": {"dtype": "F32", "shape": [128, 784],
 *                                "data_offsets": [0, 401408]}, ...}
 *   the rest   the data section: every tensor's elements, row-major and
 *              little-endian, at [begin, end) relative to the section's
 *              start; entries are contiguous, without gaps or overlaps, and
 *              together cover the whole section.
 *
 * dtypes: "F32", "F64" and "I64" map to AD_FLOAT32, AD_FLOAT64, AD_INT64.
 * nn_safetensors_inspect lists files holding other safetensors dtypes too
 * ("BF16", "U8", ...), but only those three can be loaded.
 *
 * Writing is atomic: the file is written to a temporary file in the same
 * directory, flushed and fsynced, renamed over the destination, and the
 * directory is fsynced.  A crash or a full disk during a save leaves the
 * previous checkpoint intact.
 *
 * Reading is strict and all-or-nothing: the whole header is parsed and
 * checked (a JSON parser for exactly this header: objects, strings with
 * escapes, arrays of integers) and every requested tensor's name, dtype and
 * shape is checked before anything is modified, so a failed load leaves
 * the model untouched.  Errors name the file and what is wrong:
 *   "nn_load_safetensors: model.safetensors: 'fc1.weight' has shape
 *    [128,784] in the file, the tensor is [64,784]"
 * A header length above NN_SAFETENSORS_MAX_HEADER is refused as absurd
 * before anything is allocated for it.
 */
#ifndef NN_CHECKPOINT_H
#define NN_CHECKPOINT_H

#include <autodiff/autodiff.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The limit the reference implementation applies (100 MB). */
#define NN_SAFETENSORS_MAX_HEADER 100000000u

/* Saves tensors[i] under names[i] for i < n, in that order.  Tensors may
 * have any strides and live anywhere (on a tape or persistent); they are
 * not modified.  metadata_json is NULL or a JSON object of string values,
 * '{"epoch": "3", "arch": "mlp"}', stored as the "__metadata__" entry.
 * Errors: NULL arguments, n < 0, an empty, repeated or "__metadata__"
 * name, a name that is not UTF-8, metadata_json not an object of strings,
 * I/O (nothing is left at path then, and a file that was there is
 * unchanged). */
AD_API int nn_save_safetensors(const char *path, int n, const char *const *names,
                        ad_tensor *const *tensors, const char *metadata_json);

/* Checks, before a long run, that nn_save_safetensors (and the other
 * writers of nn, which all write a temporary file next to the
 * destination and rename it over it) will be able to write path: creates
 * and removes such a temporary file, and refuses a path that is a
 * directory.  Nothing is left behind, and an existing file at path is
 * unchanged.  A program that saves only at the end calls it first, so a
 * missing directory is reported before the training, not after it.
 * Errors (-1, ad_error): NULL or empty path, "cannot create a temporary
 * file next to PATH: <reason>" (no such directory, no permission, a
 * read-only file system), PATH is a directory. */
AD_API int nn_check_writable(const char *path);

/* Loads the entries named names[i] into tensors[i] for i < n.  Each tensor
 * must already have the entry's dtype and shape (it may have any strides).
 * With strict, an entry of the file that is not among names is an error
 * too (as load_state_dict(strict=True) in PyTorch); without, it is ignored.
 * The data are read into temporary buffers first and copied into the
 * tensors only when everything has been read, so any error - missing name,
 * wrong dtype or shape, truncated or corrupt file, a read error - leaves
 * every tensor as it was.  Needs memory for a copy of the loaded tensors
 * meanwhile. */
AD_API int nn_load_safetensors(const char *path, int n, const char *const *names,
                        ad_tensor *const *tensors, bool strict);

/* One entry of a file, as nn_safetensors_inspect found it. */
typedef struct nn_safetensors_entry {
    char *name;
    char dtype[8];               /* "F32", "F64", "I64", or e.g. "BF16" */
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    uint64_t begin, end;         /* byte offsets in the data section */
} nn_safetensors_entry;

typedef struct nn_safetensors_info {
    int n;                           /* entries, in data order */
    nn_safetensors_entry *entries;
    int n_metadata;                  /* "__metadata__" pairs, in file order */
    char **metadata_keys, **metadata_values;
    uint64_t header_size;            /* N, padding included */
    uint64_t data_size;              /* bytes of the data section */
} nn_safetensors_info;

/* Reads and validates path's header (and checks the file's length against
 * it) without reading the data.  Free the result, which owns every string
 * in it, with nn_safetensors_info_free.  Errors: as for loading. */
AD_API nn_safetensors_info *nn_safetensors_inspect(const char *path);
AD_API void nn_safetensors_info_free(nn_safetensors_info *info);
/* The metadata value of key (owned by info), or NULL with an error when
 * there is none ("no metadata key 'epoch'") or info or key is NULL. */
AD_API const char *nn_safetensors_metadata(const nn_safetensors_info *info, const char *key);
/* The entry called name as a new persistent tensor (the caller frees it
 * with ad_tensor_free).  Errors: as for loading, and a dtype other than
 * F32, F64 or I64. */
AD_API ad_tensor *nn_safetensors_read(const char *path, const char *name);

#ifdef __cplusplus
}
#endif
#endif

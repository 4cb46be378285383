/* nn/internal.h - helpers shared by the nn sources; never installed.
 *
 * The nn layer is built on the public API of autodiff only (it includes
 * <autodiff/autodiff.h>, never autodiff/internal.h), so it has its own small
 * helpers here.  Errors still go to the one per-thread message that users
 * read with ad_error(), through the public ad_set_error(). */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

#include <autodiff/alloc.h>
#include <autodiff/autodiff.h>
#include <stdio.h>

/* Sets the thread's error to "fn: <formatted message>" and returns -1, so
 * that `return nn__err(...)` reads naturally in int functions. */
int nn__err(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for a file that cannot be opened, read or written, or whose
 * contents are malformed: ad_errcode() then says AD_ERR_IO. */
int nn__err_io(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The first n bytes of s (fewer if it ends first) as a new string from
 * ad_malloc (free it with ad_free); NULL, with ad_malloc's error, when out
 * of memory.  All nn memory comes from ad_malloc and friends (tensor.h), so
 * the library's fault injection reaches every allocation of the layer. */
char *nn__strndup(const char *s, size_t n);
/* An nn_idx as nn_idx_save takes it: a known type, 1 to NN_IDX_MAX_DIMS
 * extents that fit 32 bits, numel their product, data set when numel > 0
 * (fn names the caller in the error). */
struct nn_idx;
int nn__idx_check(const char *fn, const struct nn_idx *idx);

/* "'a', 'b', 'c'" into buf, cut to fit with "... (N more)"; "none" for
 * n = 0.  For messages that list the names a file has and the names
 * expected, so a mismatch can be seen at a glance. */
void nn__name_list(char *buf, size_t size, int n, const char *const *names);

/* ---- atomic file replacement (atomic.c) ---------------------------------
 * A file being written goes to a temporary file in the same directory
 * (rename is atomic only within one file system); commit flushes it,
 * fsyncs it, renames it over the destination and fsyncs the directory so
 * the rename itself survives a crash.  Until the rename the old file is
 * intact; after it the new one is complete.  abort removes the temporary
 * file.  Both commit and abort release everything. */
typedef struct nn__atomic {
    FILE *f;     /* write through this (or its fd, see nn__atomic_fd) */
    char *path;  /* the destination */
    char *tmp;   /* the temporary file */
    char *dir;   /* path's directory, to fsync after the rename (made at
                  * open, so that committing needs no memory) */
} nn__atomic;

int nn__atomic_open(const char *fn, const char *path, nn__atomic *a);
int nn__atomic_commit(const char *fn, nn__atomic *a);
void nn__atomic_abort(nn__atomic *a);

/* ---- safetensors headers (safetensors_json.c) --------------------------- */
struct nn_safetensors_info;

/* Bytes per element of a safetensors dtype name ("F32" -> 4); 0 when
 * unknown. */
size_t nn__st_dtype_size(const char *name);
/* Offset of the first byte of s[0..n) that is not valid UTF-8, or n. */
size_t nn__utf8_check(const unsigned char *s, size_t n);
/* Parses the n-byte JSON header of path into info's entries and metadata
 * (entries in file order, not yet checked against each other). */
int nn__st_parse_header(const char *fn, const char *path, const unsigned char *buf, size_t n,
                        struct nn_safetensors_info *info);
/* Parses a JSON object of strings into info's metadata. */
int nn__st_parse_metadata(const char *fn, const char *json, struct nn_safetensors_info *info);

/* True on a little-endian host. */
static inline int nn__little_endian(void)
{
    const unsigned one = 1;
    return *(const unsigned char *)&one == 1;
}

#endif

/* autodiff/tensor.h - n-dimensional arrays: dtypes, creation, views, access.
 *
 * A tensor is a view (dtype, shape, strides, offset) onto reference-counted
 * storage.  Views made by reshape/permute/expand/narrow/squeeze/unsqueeze
 * share the storage of their base without copying when the strides allow.
 *
 * Ownership.  Every function that creates a tensor takes an `ad_tape *tape`
 * (see tape.h) as its first argument:
 *   - tape != NULL: the tensor lives in the tape's arena and is freed, with
 *     everything else on that tape, by ad_tape_reset() or ad_tape_free().
 *     Never pass it to ad_tensor_free().
 *   - tape == NULL: the tensor is *persistent*; the caller owns it and frees
 *     it with ad_tensor_free().  Model parameters are persistent tensors.
 * Results of operations (ops.h) follow the rule stated in tape.h.
 *
 * Errors.  Functions that return a pointer return NULL on error; functions
 * that return int return 0 on success and -1 on error.  Either way the
 * message, naming the function and the offending shapes or dtypes, is read
 * with ad_error().  No function of this library aborts or exits.
 */
#ifndef AUTODIFF_TENSOR_H
#define AUTODIFF_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types.  Floating dtypes carry gradients; AD_INT64 holds indices
 * and class labels (gather, index_select, cross_entropy) and is never
 * differentiated. */
typedef enum ad_dtype { AD_FLOAT32 = 0, AD_FLOAT64 = 1, AD_INT64 = 2 } ad_dtype;

#define AD_MAX_DIMS 8

typedef struct ad_tensor ad_tensor;
typedef struct ad_tape ad_tape;

/* Pass a shape inline: ad_zeros(tape, AD_FLOAT64, AD_SHAPE(2, 3)). */
#define AD_SHAPE(...)                                                          \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                 \
        (const int64_t[]) { __VA_ARGS__ }

/* ---- errors ------------------------------------------------------------ */

/* The message of the most recent error on this thread ("ad_matmul: inner
 * dimensions differ: [3,4] x [5,6]"), or NULL when none is pending.  The
 * string is owned by the library and valid until the next call that fails
 * or ad_clear_error().  A successful call does not clear it. */
AD_API const char *ad_error(void);
/* Forget the pending error on this thread (ad_errcode() is AD_OK again). */
AD_API void ad_clear_error(void);
/* What kind of error is pending, beside its message, so that a program
 * can branch without parsing text (retry after AD_ERR_MEMORY, rebuild a
 * graph after AD_ERR_STALE, report a file after AD_ERR_IO).  Errors not
 * classified more precisely are AD_ERR_INVALID: an argument or value the
 * function refuses.  New codes may be added; treat unknown ones as
 * AD_ERR_INVALID. */
typedef enum ad_error_code {
    AD_OK = 0,        /* no error pending */
    AD_ERR_INVALID,   /* an invalid argument or value (the default) */
    AD_ERR_SHAPE,     /* shapes that do not fit (broadcasting, extents) */
    AD_ERR_DTYPE,     /* a dtype the function does not take, or two that differ */
    AD_ERR_MEMORY,    /* out of memory */
    AD_ERR_STALE,     /* a handle used after its tape's reset or free, or a
                         tensor used after ad_tensor_free */
    AD_ERR_MODIFIED,  /* a value saved for backward was modified in place */
    AD_ERR_STATE,     /* a call in the wrong state: backward through a freed
                         graph, replay of a tape not frozen, ... */
    AD_ERR_IO,        /* a file could not be opened, read or written, or its
                         contents are malformed */
    AD_ERR_NUMERIC    /* a non-finite value where a finite one is needed
                         (a diverged training loss) */
} ad_error_code;
/* The code of the pending error on this thread; AD_OK when none is. */
AD_API ad_error_code ad_errcode(void);
/* "AD_ERR_SHAPE" for AD_ERR_SHAPE, and so on; "AD_ERR_UNKNOWN" for a value
 * outside the enum. */
AD_API const char *ad_error_code_name(ad_error_code code);
/* Sets this thread's error message from a printf-style format and returns
 * -1.  It exists so that code built on this public API (the nn layer, your
 * own library) reports its errors through the same ad_error() as the core,
 * and a caller checks one place whatever layer failed.  Start the message
 * with the function's name, as the core does: `return ad_set_error(
 * "mylib_load: %s: bad magic", path);`.  The arguments may include
 * ad_error() itself, to add context to an inner failure.  Messages longer
 * than the buffer (1023 bytes) are truncated. */
AD_API int ad_set_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* ad_set_error with a code for ad_errcode() (ad_set_error itself sets
 * AD_ERR_INVALID, or AD_ERR_MEMORY for a message that says "out of
 * memory").  AD_OK or a code outside the enum is stored as
 * AD_ERR_INVALID. */
AD_API int ad_set_error_code(ad_error_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Optional tensor arguments.  Where a function takes an optional tensor (a
 * bias, a weight, a direction), NULL means "none" - unless an earlier
 * call failed and its message has not been read since (neither ad_error()
 * nor ad_clear_error() was called): then the NULL is that failure
 * propagating, as in ad_conv2d(x, w, ad_reshape(b, ...)) with a bad
 * reshape, and the call fails, quoting the earlier message, instead of
 * silently running without the argument.  After handling a failure, read
 * the message or clear it before passing NULL for "none".  (ad_backward's
 * grad_output is the one exception: NULL is always the seed 1 of a
 * one-element output.)  This function
 * applies the same rule for code built on the library: 0 when t is a live
 * tensor or a genuine "none", else -1 with an error naming fn and name. */
AD_API int ad_check_optional(const char *fn, const char *name, const ad_tensor *t);

/* ---- dtypes ------------------------------------------------------------ */

/* "float32", "float64" or "int64". */
AD_API const char *ad_dtype_name(ad_dtype dtype);

/* Size of one element in bytes (4 or 8); 0 with an error for a value that
 * is not a dtype. */
AD_API size_t ad_dtype_size(ad_dtype dtype);

/* ---- instruction sets ---------------------------------------------------- */

/* The instruction sets the kernels are compiled for, on x86 with GCC or
 * clang: each kernel with variants runs the widest one this CPU has,
 * chosen at run time.  AD_ISA=portable|avx2|avx512 in the environment,
 * read at the first kernel call, caps the choice for the whole process,
 * so that a wider machine runs the kernels a narrower one would (tests,
 * comparing bits across machines); unset, empty or avx512 sets no cap
 * (case does not matter), and any other value (scalar, a typo) caps at
 * portable: check with ad_kernel_isa().
 * Elsewhere (other CPUs, WebAssembly) every kernel is the portable one. */
typedef enum { AD_ISA_PORTABLE = 0, AD_ISA_AVX2 = 1, AD_ISA_AVX512 = 2 } ad_isa;
/* The widest instruction set the kernels use here: the CPU's (AVX-512F,
 * else AVX2, else none), capped by AD_ISA.  Kernels that also need FMA use
 * their AVX2 variants only on a CPU that has it. */
AD_API ad_isa ad_kernel_isa(void);
/* "avx512", "avx2" or "portable"; "invalid" for any other value (a static
 * string). */
AD_API const char *ad_isa_name(ad_isa isa);

/* ---- creation ------------------------------------------------------------
 * `ndim` is 0..AD_MAX_DIMS (0 makes a one-element scalar tensor), `shape`
 * has ndim non-negative extents and may be NULL when ndim is 0.  Errors: bad
 * dtype, ndim out of range, negative extent, element count overflowing, out
 * of memory. */

/* Uninitialised contents. */
AD_API ad_tensor *ad_empty(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape);
AD_API ad_tensor *ad_zeros(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape);
AD_API ad_tensor *ad_ones(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape);
/* Every element = value (converted to the dtype). */
AD_API ad_tensor *ad_full(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape,
                   double value);
/* A 0-dimensional tensor holding value. */
AD_API ad_tensor *ad_scalar_tensor(ad_tape *tape, ad_dtype dtype, double value);
/* Copies numel elements of the dtype's C type (float, double, int64_t) from
 * data, in row-major order.  data is not retained. */
AD_API ad_tensor *ad_from_array(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape,
                         const void *data);
/* A persistent tensor over memory the caller already has (torch.from_blob):
 * numel elements of the dtype's C type at data, row-major, not copied.
 * Reads and writes through the tensor and its views go to that memory, and
 * writes made to it directly are seen by the tensor (call ad_mark_modified
 * after them when an op recorded before may read it again).  Ownership: the
 * memory stays the caller's to keep alive while the tensor or any view of
 * it lives; when the last of them is freed, release(data, ctx) is called
 * once (release NULL: nothing is called, and the caller frees the memory
 * after).  On error nothing is called and the memory stays the caller's.
 * Errors: bad dtype or shape, data NULL, data not aligned to the element
 * size. */
AD_API ad_tensor *ad_from_blob(ad_dtype dtype, int ndim, const int64_t *shape, void *data,
                               void (*release)(void *data, void *ctx), void *ctx);
/* 1-D [start, start+step, ...) up to but excluding stop (numpy's arange).
 * Error when step is 0 or not finite. */
AD_API ad_tensor *ad_arange(ad_tape *tape, ad_dtype dtype, double start, double stop, double step);
/* 1-D, n points evenly spaced from start to stop inclusive (n >= 1).
 * int64: the points truncated toward zero; ends outside int64 are an
 * error. */
AD_API ad_tensor *ad_linspace(ad_tape *tape, ad_dtype dtype, double start, double stop, int64_t n);
/* n x n identity. */
AD_API ad_tensor *ad_eye(ad_tape *tape, ad_dtype dtype, int64_t n);

/* ---- random numbers ------------------------------------------------------
 * Counter-based: element i of a draw is a pure function of (seed, counter+i)
 * (a Philox-style bijective hash), so the same seed gives the same numbers
 * in any order and with any number of threads.  Each draw advances the
 * counter by the number of values it consumed. */
typedef struct ad_rng {
    uint64_t seed;
    uint64_t counter;
} ad_rng;

AD_API void ad_rng_init(ad_rng *rng, uint64_t seed);
/* Uniform on [lo, hi). Floating dtypes only.  ad_rand and ad_randn make
 * constants: on a replayable tape their values are those drawn at
 * recording, as for any constructor (so a drawn tensor can be a replay
 * input).  Noise that a replayed step must draw again comes from the ops
 * ad_rand_like / ad_randn_like (ops_util.h), or ad_dropout's mask. */
AD_API ad_tensor *ad_rand(ad_tape *tape, ad_rng *rng, ad_dtype dtype, int ndim,
                   const int64_t *shape, double lo, double hi);
/* Normal with the given mean and standard deviation (Box-Muller). */
AD_API ad_tensor *ad_randn(ad_tape *tape, ad_rng *rng, ad_dtype dtype, int ndim,
                    const int64_t *shape, double mean, double std);
/* One uniform double in [0, 1) / one integer in [0, n), for shuffling. */
AD_API double ad_rng_uniform(ad_rng *rng);
AD_API uint64_t ad_rng_below(ad_rng *rng, uint64_t n);

/* ---- freeing and lifetimes -------------------------------------------------
 * Frees a persistent tensor (made with tape == NULL), its gradient, and its
 * storage once no other view refers to it.  NULL is ignored.  Returns -1
 * (and frees nothing) for a tensor that belongs to a tape, or one freed
 * already.  A tape that recorded an op reading t keeps t alive until that
 * tape is reset or freed, so freeing an input between forward and backward
 * is safe (backward still sees the values the forward used); any other use
 * of t after this call is an error ("was freed with ad_tensor_free") while
 * a tape holds it, and undefined behaviour once the memory is gone, as with
 * free().  Not while another thread uses t (its tape replaying or
 * differentiating through it): the release is not synchronised, so free a
 * shared tensor after the threads that read it are done.
 *
 * Tape tensors are checked on every use: one recorded before ad_tape_reset
 * (or after ad_tape_freeze and before the last ad_tape_replay), or whose
 * tape was freed, makes any function given it fail with a message saying
 * so and what to do, instead of reading memory the tape has reused.  A
 * handle kept across one reset is always recognised; one kept across
 * several may find its slot reused by a live tensor, which a plain pointer
 * cannot tell apart (docs/design.md, "Lifetimes"). */
AD_API int ad_tensor_free(ad_tensor *t);

/* ---- in-place changes --------------------------------------------------------
 * Every write through the API (ad_fill, ad_copy_into, ad_set, in-place
 * gradient accumulation, ad_mark_modified) adds one to a version counter
 * shared by all views of the same storage.  A recorded op notes the
 * versions of its inputs and its output, whether or not its backward rule
 * reads them (a value changed in place is wrong for everything recorded
 * from it, and the write is not on the tape); ad_backward fails, naming the
 * op and input ("input 1 of ad_mul, saved for backward, was modified in
 * place (version 3, now 4)"), when one changed, instead of differentiating
 * values the forward never saw.  Writes through the pointer of ad_data()
 * cannot be seen: call ad_mark_modified(t) after them.  ad_tape_replay
 * recomputes from the current values and so accepts them. */
AD_API uint32_t ad_version(const ad_tensor *t);
AD_API int ad_mark_modified(ad_tensor *t);

/* ---- inspection ---------------------------------------------------------- */

AD_API ad_dtype ad_tensor_dtype(const ad_tensor *t);
AD_API int ad_ndim(const ad_tensor *t);
/* Extent of dimension dim; negative dim counts from the end. -1 on error. */
AD_API int64_t ad_size(const ad_tensor *t, int dim);
/* Pointer to the shape array (ndim entries), owned by t. */
AD_API const int64_t *ad_shape(const ad_tensor *t);
/* Strides in elements, owned by t. */
AD_API const int64_t *ad_strides(const ad_tensor *t);
/* Number of elements (1 for a 0-d tensor). */
AD_API int64_t ad_numel(const ad_tensor *t);
/* True when the elements are laid out row-major without gaps (always for
 * a tensor with no elements, as in PyTorch). */
AD_API bool ad_is_contiguous(const ad_tensor *t);
/* The tape t belongs to, or NULL for a persistent tensor. */
AD_API ad_tape *ad_tensor_tape(const ad_tensor *t);
/* Pointer to element 0 of a contiguous tensor (float *, double * or
 * int64_t * by dtype), for reading and writing in place; NULL with an error
 * when t is not contiguous (use ad_contiguous first).  Memory the library
 * allocated for a tensor starts on a 64-byte line when it is 64 bytes or
 * more (whatever the allocator's own alignment), so element 0 of such a
 * tensor does, unless t is a view at an offset or wraps ad_from_blob's
 * memory.  The library cannot
 * see writes through it: call ad_mark_modified(t) after writing, so that
 * backward through an op that saved t reports the change instead of
 * computing a wrong gradient. */
AD_API void *ad_data(ad_tensor *t);
/* Copies all elements, converted to double, into out[numel] in row-major
 * order.  Works for any strides. */
AD_API int ad_to_array(const ad_tensor *t, double *out);

/* Element at a full index (ndim entries, negative counts from the end). */
AD_API int ad_get(const ad_tensor *t, const int64_t *index, double *value);
AD_API int ad_set(ad_tensor *t, const int64_t *index, double value);
/* The value of a one-element tensor; NAN with an error otherwise. */
AD_API double ad_item(const ad_tensor *t);

/* ---- copies and conversions -----------------------------------------------
 * These record nothing and return a tensor with no history (like
 * tensor.detach().clone() in PyTorch); use ad_contiguous / ad_cast from
 * ops.h for the differentiable versions.  A replay does not repeat them:
 * while a replayable tape records, the cases where that would change a
 * replay's values are refused (tape.h, "Copies and writes through the
 * API"); so are ad_fill, ad_set and ad_mark_modified of a value the
 * recording computes. */

/* A contiguous copy of t owned as `tape` says. */
AD_API ad_tensor *ad_copy(ad_tape *tape, const ad_tensor *t);
/* Copies src's values into dst (same shape; dtypes may differ and are
 * converted).  dst may have any strides, but no expanded dimension (stride
 * 0 with size > 1: an error); dst and src may share memory (x and its
 * transpose: src is read whole before dst is written, through a
 * temporary copy). */
AD_API int ad_copy_into(ad_tensor *dst, const ad_tensor *src);
/* Sets every element of t to value. */
AD_API int ad_fill(ad_tensor *t, double value);

/* ---- printing -------------------------------------------------------------
 * numpy-like: "tensor([[1.0000, 2.0000],\n        [3.0000, 4.0000]],
 * dtype=float64)"; large tensors are summarised with "..." (first and last
 * three per dimension) as numpy does past 1000 elements. */
AD_API int ad_print(const ad_tensor *t, FILE *out);
/* Writes "[2,3]" into buf (at most size bytes, always terminated). */
AD_API void ad_shape_str(const ad_tensor *t, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif

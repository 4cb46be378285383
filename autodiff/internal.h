/* autodiff/internal.h - private structures shared by the library's sources.
 * Not installed.  Users see only the opaque types of the public headers. */
#ifndef AUTODIFF_INTERNAL_H
#define AUTODIFF_INTERNAL_H

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>

#include "autodiff.h"
#include "isa.h"

#define AD_TENSOR_MAGIC 0x7e9503a1u
#define AD_DEAD_MAGIC 0xdeadbeefu
#define AD_TAPE_MAGIC 0x7a9e0c11u
#define AD_DEAD_TAPE_MAGIC 0x7a9edeadu

/* Storage: a buffer shared by every view of it.  Arena storage belongs to a
 * tape and is never counted; heap storage is freed when refs drops to 0.
 * refs is atomic because threads with tapes of their own may read one
 * persistent tensor at once (a data set, frozen weights): each view they
 * take, on their own tape, counts a reference to its storage. */
typedef struct ad_storage {
    void *data;
    size_t nbytes;
    atomic_long refs;
    /* Bumped by every write through the API (ad_fill, ad_copy_into, ad_set,
     * ad_mark_modified, in-place gradient accumulation).  Shared by all
     * views, so a write through one view is seen by ops that saved another.
     * A recorded op notes its inputs' versions; backward compares. */
    uint32_t version;
    /* Replay's guard (tape.c, ad__replay_guard): the stamp (gen) of the
     * replayable tape whose recording computed these values (an op's own
     * output; a view shares it), and of the one whose recording copied
     * such values in here through the API (ad_copy_into, ad_copy), which
     * a replay would not repeat; 0 for none. */
    uint64_t computed_gen, copied_gen;
    /* The stamp of the replayable tape whose recording made this storage
     * in a backward pass (a gradient), 0 for none: an op recorded for
     * replay that reads it makes the tape refuse to replay, since the
     * replay does not run that backward again (tape.c, ad__record). */
    uint64_t backward_gen;
    bool in_arena;
    /* Memory the library did not allocate (ad_from_blob): given back with
     * release(data, release_ctx) when refs drops to 0, or left alone when
     * release is NULL; ad__free(data) otherwise. */
    bool borrowed;
    void (*release)(void *data, void *ctx);
    void *release_ctx;
    /* The allocator's block that data lies in (ad__storage_alloc), freed
     * with it; NULL for arena and borrowed storage. */
    void *block;
} ad_storage;

/* Heap storage of nbytes (at least 1), refs 1, its data on a 64-byte line
 * from 64 bytes on; NULL when out of memory.  Freed when its last
 * reference goes (tape.c, storage_free). */
ad_storage *ad__storage_alloc(size_t nbytes);

typedef struct ad_node ad_node;

struct ad_tensor {
    uint32_t magic;
    ad_dtype dtype;
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    int64_t strides[AD_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements, from storage->data */
    ad_storage *storage;
    ad_tape *tape;   /* NULL: persistent, owned by the caller */
    ad_node *node;   /* the recorded op that produced it, NULL for leaves */
    ad_tensor *grad; /* accumulated gradient of a leaf */
    ad_tensor *adj;  /* adjoint while a backward pass runs */
    bool adj_owned;  /* adj is a sum the pass made for this tensor alone, so
                        further contributions may be added into it in place */
    bool requires_grad;
    bool owns_grad; /* grad is a buffer the library made for this leaf */
    bool set_as_grad; /* given to a leaf with ad_set_grad (it is that leaf's) */
    /* Lifetimes (see tape.c, "handles").  A tape tensor is valid while its
     * stamp is one its tape still accepts; a carried tensor (ad_detach)
     * also through the next reset.  A persistent tensor counts references:
     * one for its owner and one per tape that recorded an op reading it, so
     * ad_tensor_free before backward or reset only marks it released. */
    bool carried;
    bool released;
    /* Made inside a function that ad_checkpoint ran: its memory was given
     * back when the function returned (its stamp is then 0). */
    bool segment_freed;
    uint64_t stamp;
    /* The AD_SET_GRAD pass that last wrote grad (backward.c). */
    uint64_t grad_pass;
    atomic_int hrefs;
    char *label;
};

/* A backward rule receives the node and g = dL/d(out) (out's shape) and
 * stores dL/d(in[i]) (in[i]'s shape and dtype) into gin[i] for every i with
 * ad__needs_grad(n, i), leaving the others NULL.  Rules are written with the
 * library's own ops, so under AD_CREATE_GRAPH the backward pass is recorded
 * and can be differentiated again.  Return 0, or -1 with an error set. */
typedef int (*ad_backward_rule)(ad_node *n, ad_tensor *g, ad_tensor **gin);

/* Recomputes n->out's values in place from n->in and the parameters the
 * public function stored in the node (used by ad_tape_replay).  Returns the
 * number of elements whose value changed for comparison ops (branch
 * switches, see tape.h), 0 for other ops, -1 on error.  NULL for views,
 * whose output shares its input's storage and so is always current. */
typedef int (*ad_forward_fn)(ad_node *n);

/* An op's descriptor.  Tables of them use designated initializers, so a
 * field added here is zero in every op that does not name it. */
typedef struct ad_op {
    const char *name;    /* "add"; also what graphs and errors show */
    const char *formula; /* one line: forward and derivative */
    ad_backward_rule backward; /* NULL: not differentiable (comparisons) */
    ad_forward_fn forward;     /* NULL for views */
    /* sizeof the op's parameter struct (declared beside its kernel, read
     * through ad__params), 0 for an op without parameters. */
    size_t params_size;
    /* Optional, for a view that picks part of its input (slice): adds g,
     * the gradient of the output, into the part of adj (a tensor of the
     * input's shape that the backward pass owns) that the output views,
     * in place.  A pass that records nothing uses it instead of the rule,
     * whose result is a zero-filled gradient of the whole input per use:
     * T slices of one tensor would cost T wholes. */
    void (*accumulate)(const ad_node *n, const ad_tensor *g, ad_tensor *adj);
    /* Optional: adds input k's gradient, for the output's gradient g, into
     * adj (a tensor of the input's shape that the backward pass owns) in
     * place and returns 1, or returns 0 when it does not handle the case
     * (the rule then computes that input's gradient), -1 on error.  The
     * caller gives back every temporary it made on the tape right after,
     * so it must keep none.  Used by a pass that records nothing, for an
     * input whose adjoint is already a sum of several uses (a weight at
     * every step of a recurrence): matmul's product then lives only while
     * it is added in. */
    int (*accumulate_input)(const ad_node *n, int k, ad_tensor *g, ad_tensor *adj);
} ad_op;

/* A recorded op.  ad__record allocates it as one arena block: this header,
 * then the op's parameters (op->params_size bytes at AD_NODE_HEAD, zeroed
 * until the op stores them), then in[] and ver[]. */
struct ad_node {
    const ad_op *op;
    ad_tensor *out;
    ad_tensor **in;    /* nin inputs, in the node's block */
    uint32_t *ver;     /* storage versions of in[0..nin) and, at [nin], of out */
    size_t seq;        /* position on the tape */
    const char *label; /* the scope label when recorded */
    int nin;
    unsigned mark;     /* reachability epoch of a backward pass */
    bool freed;        /* backward ran without AD_RETAIN_GRAPH */
    bool no_grad;      /* recorded with grad mode off (a replayable tape
                          keeps it for replay only, whatever its inputs) */
    uint8_t skip;      /* inputs (bit i: in[i], i < 8) whose gradient the
                          backward pass has already added in through
                          op->accumulate_input: the rule leaves them out */
};

/* Clones of a kernel compiled as name_any (baseline), name_avx2 and
 * name_avx512 (target attributes, on x86 with GCC or clang): the one this
 * CPU runs best within AD_ISA, asked at each use. */
#if AD_X86_CLONES
#define AD_PICK_CLONE(name) (AD_CPU_AVX512() ? name##_avx512 : AD_CPU_AVX2() ? name##_avx2 : name##_any)
#else
#define AD_PICK_CLONE(name) name##_any
#endif

/* Where a node's parameters start: after the header, 16-byte aligned (any
 * parameter struct of scalars, pointers and arrays of them fits). */
#define AD_PARAMS_ALIGN 16
#define AD_NODE_HEAD ((sizeof(ad_node) + AD_PARAMS_ALIGN - 1) & ~(size_t)(AD_PARAMS_ALIGN - 1))

/* The op's parameter struct in node n: ops read it as
 * `const xxx_params *p = ad__params(n);` and store it after ad__record.
 * An op whose descriptor states no params_size has no block to read. */
static inline void *ad__params(const ad_node *n)
{
    assert(n->op->params_size > 0);
    return (unsigned char *)(uintptr_t)n + AD_NODE_HEAD;
}

/* Per-family op lists, NULL-terminated; op_table.c concatenates them. */
extern const ad_op *const ad__ops_pointwise[];
extern const ad_op *const ad__ops_pointwise_fn[];
extern const ad_op *const ad__ops_reduce[];
extern const ad_op *const ad__ops_shape[];
extern const ad_op *const ad__ops_index[];
extern const ad_op *const ad__ops_linalg[];
extern const ad_op *const ad__ops_util[];
extern const ad_op *const ad__ops_decomp[];
extern const ad_op *const ad__ops_loss[];
extern const ad_op *const ad__ops_nn[];
extern const ad_op *const ad__ops_norm[];
extern const ad_op *const ad__ops_conv[];
extern const ad_op *const ad__ops_fused[];
extern const ad_op *const ad__ops_recurrence[];
/* A recurrent weight's gradient over a whole sequence (ops_recurrence.c,
 * for the LSTM's too): dW [g, h] = sum_t dG_t^T h_t, with dG [T B, g] at d
 * (row-major, step t's B rows in block t), h_0 [B, h] at h0 and h_1 ..
 * h_(T-1) the first (T - 1) B rows of y [T B, h]: one product for h_0 and
 * one over all later steps ([g, (T-1) B] x [(T-1) B, h]) instead of T thin
 * ones.  dW is a new tensor on tp; NULL with fn's error when out of
 * memory. */
ad_tensor *ad__recurrence_dw(const char *fn, ad_tape *tp, ad_dtype dt, int64_t T, int64_t B,
                             int64_t g, int64_t h, const void *d, const void *h0, const void *y);
extern const ad_op *const ad__ops_attention[];
/* The causal softmax of one contiguous T x T matrix of scores, in place
 * (row t: softmax of scale x[t, 0..t], zeros after), and its rule on one
 * matrix: g becomes scale y (g - sum_s g y) row by row, zero above the
 * diagonal (ops_loss.c; ops_attention.c runs them per head). */
void ad__softmax_causal_matrix(ad_dtype dt, void *x, int64_t T, double scale);
void ad__softmax_causal_matrix_bw(ad_dtype dt, const void *y, void *g, int64_t T, double scale);
/* ad_layer_norm after its argument checks (ops_nn.c): the fused op of
 * ops_fused.c, fn naming the caller in messages. */
ad_tensor *ad__layer_norm_fused(const char *fn, ad_tensor *x, int nnorm, ad_tensor *w,
                                ad_tensor *b, double eps);
extern const ad_op *const ad__ops_random[];
extern const ad_op *const ad__ops_ffi[];
extern const ad_op *const ad__ops_custom[];
extern const ad_op *const ad__ops_checkpoint[];

/* ops_pointwise.c: relu's input gradient, g [x > 0] in one pass (an op
 * of its own, so relu's derivatives of every order stay in it). */
ad_tensor *ad__relu_grad(ad_tensor *g, ad_tensor *x);

/* ops_reduce.c: ad_sum_to for backward rules: x itself when it already has
 * the shape (a gradient handed on, on the backward pass's tape; the public
 * ad_sum_to returns a view then, a tensor of its own to free). */
ad_tensor *ad__sum_to(ad_tensor *x, int ndim, const int64_t *shape);

/* ops_util.c: y_i = sum_{j >= i} x_j along axis, a running sum from the
 * end (cumprod's rule; the cumsum op reversed, for the tests' rows). */
ad_tensor *ad__cumsum_reverse(ad_tensor *x, int axis);

/* ops_index.c: scatter_add(zeros of shape, axis, index, src) as one op
 * that clears its own result (gather's rule; dsrc = gather(g, axis,
 * index)).  Checks like ad_scatter_add's, messages naming it. */
ad_tensor *ad__scatter_add_zeros(int ndim, const int64_t *shape, int axis, ad_tensor *index,
                                 ad_tensor *src);

/* ops_conv.c: ad_conv2d's direct path (groups 1, stride 1, dilation 1;
 * arguments already checked; fn names the caller in errors; relu: the
 * conv2d_relu op, relu(conv2d) in one), and for tests the instruction set of its
 * float32 kernels: 0 portable, 1 AVX2, 2 AVX-512, -1 the CPU's best;
 * -1 returned when the CPU lacks it.  Not thread-safe. */
ad_tensor *ad__conv2d_direct(const char *fn, ad_tensor *x, ad_tensor *w, ad_tensor *bias,
                             const int padding[2], bool relu);
int ad__conv_testing_isa(int isa);
/* ops_conv_plain.c: whether every element of the 4-d t is finite; and
 * conv2d (+ bias, relu), conv_transpose2d (x masked by xm > 0, xm laid out
 * like x, or NULL) and conv2d_weight (gy masked by gm > 0, gm contiguous
 * like gy, or NULL) into the contiguous y / dw as plain sums in double
 * over their formulas' terms, for operands that are not all finite. */
bool ad__conv_all_finite(const ad_tensor *t);
void ad__conv_plain(const ad_tensor *x, const ad_tensor *w, const ad_tensor *bias,
                    const int64_t *p, bool relu, ad_tensor *y);
void ad__convt_plain(const ad_tensor *x, const void *xm, const ad_tensor *w, const int64_t *p,
                     ad_tensor *y);
void ad__convw_plain(const ad_tensor *x, const ad_tensor *gy, const void *gm, const int64_t *p,
                     ad_tensor *dw);
/* ops_pointwise_t.c: float32 / float64 out[i][j] = x(i, j) op y(i, j), op
 * one of + - * /, for an m x n out with rows ldo apart, an operand read
 * along rows (p[i * ld + j]) or, when its flag is set, transposed
 * (p[i + j * ld]), with tiles transposed in registers; false (nothing
 * written) where the CPU has no variant.  The testing hook forces one (-1
 * automatic, 0 none, 1 AVX2, 2 AVX-512); -1 where the CPU cannot run it. */
bool ad__bin_t_f32(char op, int64_t m, int64_t n, float *o, int64_t ldo, const float *x,
                   int64_t ldx, bool xt, const float *y, int64_t ldy, bool yt);
bool ad__bin_t_f64(char op, int64_t m, int64_t n, double *o, int64_t ldo, const double *x,
                   int64_t ldx, bool xt, const double *y, int64_t ldy, bool yt);
int ad__pw_t_testing_isa(int isa);
/* Tests: the weight gradient's kernel (-1 by the shape, 0 over output
 * channels, 1 over positions). */
int ad__conv_testing_dw(int pick);

/* ---- errors (error.c) ---------------------------------------------------- */
/* Sets the thread's error to "fn: <formatted message>".  Returns -1 so that
 * `return ad__err(...)` reads naturally in int functions. */
int ad__err(const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same with the code ad_errcode() reports.  ad__err's code is
 * AD_ERR_MEMORY for a message saying "out of memory", else AD_ERR_INVALID;
 * the other codes are given at the sites that know them. */
int ad__errc(ad_error_code code, const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool ad__has_error(void);
/* The pending failure's number, distinct for every failure of this
 * thread; 0 when none is pending (the last one's message was read or
 * cleared). */
uint64_t ad__error_serial(void);

/* Threads a kernel called from this thread may use: OpenMP's maximum,
 * capped by ad_set_num_threads (threads.c); 1 without OpenMP. */
int ad__max_threads(void);
/* Whether this thread asked for kernels on itself alone
 * (ad_set_num_threads(1)): then no BLAS with a thread pool of its own
 * either. */
bool ad__single_thread(void);
/* This thread's ad_set_parallel_runner: its parts (0: none), and a call
 * of it (only when there is one). */
int ad__runner_parts(void);
void ad__run_parts(ad_parallel_task task, void *ctx);
/* Validates a tensor argument: non-NULL, live, and when float_only a
 * floating dtype.  On failure sets an error naming fn and argument name,
 * keeping an earlier pending error when t is NULL (a failed inner call). */
int ad__check_arg(const char *fn, const char *name, const ad_tensor *t, bool float_only);
/* A floating argument t of x's dtype ("fn: name is float32 but x is
 * float64"). */
int ad__check_like(const char *fn, const char *name, const ad_tensor *t, const ad_tensor *x);
/* The same for an optional argument, where NULL means "none": *present says
 * which.  A NULL passed while an earlier failure's message is still unread
 * (neither ad_error() nor ad_clear_error() called since) is that failure
 * propagating, not "none", and is reported as such. */
int ad__check_opt(const char *fn, const char *name, const ad_tensor *t, bool float_only,
                  bool *present);
/* Why a tensor handle cannot be used: NULL when it can, else a sentence
 * naming what happened and what to do (tape.c). */
const char *ad__handle_problem(const ad_tensor *t);
/* Validates a tape argument (non-NULL, not freed). */
int ad__check_tape(const char *fn, const ad_tape *tape);
bool ad__tape_alive(const ad_tape *tape);
/* A fresh stamp from the process-wide counter (never 0). */
uint64_t ad__next_gen(void);
int ad__check_same_dtype(const char *fn, const ad_tensor *a, const ad_tensor *b);
/* Normalises a possibly negative axis for a tensor of ndim dims. */
int ad__axis(const char *fn, int axis, int ndim, int *out);

/* ---- memory (alloc.c) -----------------------------------------------------
 * Every allocation the library makes goes through these, so tests can count
 * them (zero-allocation replay) and make the n-th one fail (fault
 * injection).  Both are per thread.  They then call the installed
 * allocator (ad_set_allocator). */
extern _Thread_local size_t ad__alloc_calls;
extern _Thread_local long ad__alloc_fail_in; /* >0: the n-th next allocation fails */
/* The library's one allocator entry point, so tests can inject failures. */
void *ad__malloc(size_t n);
void *ad__calloc(size_t n, size_t size);
void *ad__realloc(void *p, size_t n);
void ad__free(void *p);
/* A buffer of at least n bytes, 64-byte aligned, that belongs to the
 * calling thread: kept from call to call (grown when n is larger) until
 * the thread exits or ad_set_allocator switches allocators, and written
 * by no other thread.  Valid until this thread's next call.  NULL when
 * out of memory or when too many threads hold one (the caller then uses
 * memory of its own).  alloc.c. */
void *ad__thread_scratch(size_t n);
/* Blocks of this many bytes or more from the C library's allocator are
 * advised for transparent huge pages as they are made (alloc.c). */
#define AD__HUGE_MIN ((size_t)4 << 20)
/* A process-wide cache of allocator memory (tape.c's pools) registers how
 * to empty itself; ad_set_allocator calls it before switching. */
typedef void (*ad__alloc_release_fn)(void);
void ad__alloc_set_cache(ad__alloc_release_fn release);

/* ---- the tape's memory (tape.c) -------------------------------------------- */
/* A tensor header for tape (see tape.c: headers live in slabs that are
 * never returned to the system, so a stale handle is always readable). */
ad_tensor *ad__tape_header(ad_tape *tape);
/* A persistent tensor's references: the tape holds every persistent input
 * of a recorded op until reset, so freeing it before backward is safe. */
int ad__tape_hold_tensor(ad_tape *tape, ad_tensor *t);
void ad__tensor_unref(ad_tensor *t);
void ad__tensor_destroy(ad_tensor *t);
/* Records that t's values were changed in place. */
static inline void ad__bump(ad_tensor *t) { t->storage->version++; }
/* 64-byte aligned memory from the tape's arena, valid until reset/free. */
void *ad__arena_alloc(ad_tape *tape, size_t n);
/* Copies a string onto the arena (tape) or the heap (tape == NULL). */
char *ad__strdup(ad_tape *tape, const char *s);
/* The tape keeps a reference to heap storage its tensors view until reset. */
int ad__tape_hold(ad_tape *tape, ad_storage *s);
void ad__tape_note_tensor(ad_tape *tape);

/* ---- tensors (tensor.c) ---------------------------------------------------- */
/* Checks ndim/shape and computes numel (overflow-safe). */
int ad__check_shape(const char *fn, int ndim, const int64_t *shape, int64_t *numel);
/* A new contiguous tensor with fresh, uninitialised storage. */
ad_tensor *ad__alloc(const char *fn, ad_tape *tape, ad_dtype dtype, int ndim,
                     const int64_t *shape);
/* n uniforms on [lo, hi) (checked by the caller as ad_rand checks them:
 * finite, lo < hi, a float32 in range for d32) from rng's counter on, into
 * d64 or d32 (the other NULL), advancing the counter by n: exactly what
 * ad_rand draws, for ops that redraw in place at replay (dropout's mask). */
void ad__rand_fill(ad_rng *rng, int64_t n, double lo, double hi, double *d64, float *d32);
/* The streams drawn from while a log is open (ad_checkpoint's forward),
 * each with its counter before its first draw, so that a recomputation can
 * draw the same numbers again (PyTorch's preserve_rng_state).  Logs nest:
 * a draw is noted in every open log.  More than AD__RNG_LOG_MAX streams
 * sets overflow. */
#define AD__RNG_LOG_MAX 8
typedef struct ad__rng_log {
    struct ad__rng_log *parent;
    int n;
    bool overflow;
    ad_rng *rng[AD__RNG_LOG_MAX];
    uint64_t counter[AD__RNG_LOG_MAX];
} ad__rng_log;
extern _Thread_local ad__rng_log *ad__rng_logs;
void ad__rng_log_note(ad_rng *rng);
static inline void ad__rng_note(ad_rng *rng)
{
    if (ad__rng_logs) ad__rng_log_note(rng);
}
/* The same for ad_randn: n normals N(mean, std^2), the counter advanced by
 * 2n (two uniforms per value). */
void ad__randn_fill(ad_rng *rng, int64_t n, double mean, double std, double *d64, float *d32);
/* The argument checks of ad_rand and ad_randn, with fn in the message:
 * rng NULL, dtype not floating, the bounds; 0 or -1. */
int ad__check_rand(const char *fn, const ad_rng *rng, ad_dtype dtype, double lo, double hi);
int ad__check_randn(const char *fn, const ad_rng *rng, ad_dtype dtype, double mean, double std);
/* A new tensor header viewing base's storage with the given geometry,
 * owned by `tape` (which may differ from base's when base is persistent). */
ad_tensor *ad__view(const char *fn, ad_tape *tape, const ad_tensor *base, int ndim,
                    const int64_t *shape, const int64_t *strides, int64_t offset);
void ad__contig_strides(int ndim, const int64_t *shape, int64_t *strides);
/* The storage offsets of the first and last element of t in memory
 * (negative strides counted); false when t has no element. */
bool ad__elem_range(const ad_tensor *t, int64_t *first, int64_t *last);
int64_t ad__numel(int ndim, const int64_t *shape);
bool ad__same_shape(const ad_tensor *a, const ad_tensor *b);
/* -1 with "fn: name [shape] has stride 0 in dimension d (an expanded
 * view) ..." when t is written in place but several of its elements share
 * memory (a dimension of extent > 1 with stride 0), else 0. */
int ad__refuse_expanded(const char *fn, const char *name, const ad_tensor *t);
/* The pending error, from an inner call, named as fn's too: "fn: what:
 * inner message" (what from fmt, or "fn: inner message" when fmt is NULL;
 * left as it is when it starts with "fn:" already), its code kept; -1. */
int ad__err_in(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* -1 with "fn: v is not a value an int64 holds ..." unless v converts to
 * int64 (finite, in [-2^63, 2^63)), else 0. */
int ad__check_int64_value(const char *fn, double v);
/* "[2,3]" into buf. */
void ad__fmt_shape(int ndim, const int64_t *shape, char *buf, size_t size);
/* Shapes for messages, without a caller's buffer: "[2,3]" for a shape,
 * for a tensor's shape ("(null)" for NULL), and "[2,3] float32" for a
 * tensor's shape and dtype.  Each returns a buffer of a small per-thread
 * ring of 8: it stays valid until the 8th next call on the same thread, so
 * use these only as the printf arguments of one message, as in
 *     ad__err(fn, "lengths differ: %s x %s", ad__shape_str(a), ad__shape_str(b));
 */
const char *ad__dims_str(int ndim, const int64_t *shape);
const char *ad__shape_str(const ad_tensor *t);
const char *ad__desc(const ad_tensor *t);

static inline bool ad__is_float(ad_dtype d) { return d == AD_FLOAT32 || d == AD_FLOAT64; }

/* Element i (an index into storage, offset included) as double, and back. */
static inline double ad__ld(const ad_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case AD_FLOAT32: return ((const float *)t->storage->data)[i];
    case AD_FLOAT64: return ((const double *)t->storage->data)[i];
    default: return (double)((const int64_t *)t->storage->data)[i];
    }
}
static inline void ad__st(ad_tensor *t, int64_t i, double v)
{
    switch (t->dtype) {
    case AD_FLOAT32: ((float *)t->storage->data)[i] = (float)v; break;
    case AD_FLOAT64: ((double *)t->storage->data)[i] = v; break;
    default: ((int64_t *)t->storage->data)[i] = (int64_t)v; break;
    }
}
/* Storage index of the element at a full multi-index. */
static inline int64_t ad__offset_of(const ad_tensor *t, const int64_t *idx)
{
    int64_t o = t->offset;
    for (int d = 0; d < t->ndim; d++) o += idx[d] * t->strides[d];
    return o;
}

/* ---- recording (tape.c) ----------------------------------------------------- */
/* The tape that an op's result belongs to (see tape.h), from its inputs. */
int ad__result_tape(const char *fn, int nin, ad_tensor *const *in, ad_tape **tape);
/* Records op producing out from in[0..nin) when grad mode is on and some
 * input requires grad; *node is then the new node (for the op to store its
 * parameters in) and out requires grad.  Otherwise *node = NULL. */
int ad__record(const ad_op *op, ad_tensor *out, int nin, ad_tensor *const *in,
               ad_node **node);
/* The two ends of every op (op = checks, ad__result, kernel, ad__finish):
 * ad__result allocates the result, a new contiguous tensor on the tape of
 * in[0..nin) (ad__result_tape), NULL with an error.  ad__finish takes the
 * result the kernel filled (or built by hand: a view, a copy) and the
 * kernel's return code: when out is NULL, failed is non-zero or recording
 * fails (anomaly mode checks the result), it frees a persistent out and
 * returns NULL.  Otherwise it records op (ad__record), copies
 * op->params_size bytes from params (when not NULL) into the node, sets
 * *node (when node is not NULL) to the node or NULL, and returns out. */
ad_tensor *ad__result(const char *fn, int nin, ad_tensor *const *in, ad_dtype dtype, int ndim,
                      const int64_t *shape);
ad_tensor *ad__finish(ad_tensor *out, int failed, const ad_op *op, int nin,
                      ad_tensor *const *in, const void *params, ad_node **node);
/* While on (per thread; returns the previous state), ops run with grad
 * mode off are not recorded even on a replayable tape: for a custom op's
 * forward, whose node replays it as a whole (tape.c). */
bool ad__set_record_off(bool on);
/* ad__record_all(1) ... ad__record_all(-1): every op is recorded meanwhile
 * (outside backward passes), as on a replayable tape, whether or not it
 * needs a gradient: ad_checkpoint's first run of its function, so that
 * what the function reads from outside is found through the ops that
 * read it (a view of it, an op on it that needs no gradient). */
void ad__record_all(int delta);
/* The guard of API writes (ad_copy_into, ad_copy, ad_fill, ad_set,
 * ad_mark_modified) while a replayable tape records: a replay recomputes
 * ops only, so a write into a value the tape computes would be lost, and
 * a copy of such a value would keep the recording's values.  -1 with an
 * error naming fn for the first (dst a value the recording computes);
 * marks dst as such a copy for the second (an op recorded on it then
 * fails); notes a copy into the tape of a value from outside (src a leaf
 * or a persistent tensor) so that ad_tape_replay can refuse when that
 * value has changed since.  src is NULL for a write of constants. */
int ad__replay_guard(const char *fn, ad_tensor *dst, const ad_tensor *src);
/* ad_copy_into and ad_copy without the guard, for the library's own
 * copies inside ops (which a replay runs again with the op). */
int ad__copy_into(ad_tensor *dst, const ad_tensor *src);
/* ad_gradgradcheck that also compares the recorded gradient's derivative
 * with respect to the incoming gradient g (gradcheck.c; ad_custom_check). */
int ad__gradgradcheck_wrt_g(ad_func f, void *ctx, int n, ad_tensor *const *inputs,
                            const ad_gradcheck_opts *opts);
ad_tensor *ad__copy(ad_tape *tape, const ad_tensor *t);
/* Code that the node being recorded runs again as a whole at replay (a
 * checkpoint's function): the guard leaves its copies alone (tape.c). */
void ad__replay_opaque(int delta);
/* The stamp to note on storage made now on tape t (backward_gen): t's, in
 * a backward pass over a replayable recording not yet frozen; else 0. */
uint64_t ad__backward_stamp(const ad_tape *t);
/* Whether what happens now on t is recorded for replay: t replayable and
 * not frozen, outside a backward pass, a custom op's forward and code its
 * node re-runs (tape.c). */
bool ad__recording_for_replay(const ad_tape *t);
/* ad_tape_replay's check of the noted copies, before leaves[i] get
 * values[i]: -1 with an error naming fn when a value one of them read has
 * changed since the freeze while the copy it made was left as it was (not
 * written since, nor one of the leaves given a value now). */
int ad__replay_check_copies(const char *fn, ad_tape *t, int n, ad_tensor *const *leaves,
                            ad_tensor *const *values);
/* At the freeze, the noted copies' sources' versions. */
void ad__replay_note_versions(ad_tape *t);
/* Drops the noted copies and their storage references (at a reset). */
void ad__replay_release_copies(ad_tape *t);
/* Anomaly mode: the first non-finite value an op produces from finite
 * inputs is an error (see tape.h).  ad__record checks forward results. */
bool ad__anomaly_on(void);
int ad__check_finite(const char *fn, const ad_tensor *t, int64_t *where);
/* For a backward rule: the gradient buffer of leaf input k when the rule
 * may add input k's gradient into it itself (the pass then delivers
 * nothing for k; see backward.c for when), else NULL and the rule returns
 * gin[k] as usual.  Asking commits the rule: a non-NULL answer must be
 * added into, or, when *set (an AD_SET_GRAD pass's first write to it),
 * written over. */
ad_tensor *ad__leaf_grad_target(const ad_node *n, int k, bool *set);
/* Whether leaf's grad is to be overwritten, not added to, by the gradient
 * about to be written into it: true once per leaf in an AD_SET_GRAD pass,
 * which it then marks. */
bool ad__leaf_grad_first(ad_tensor *leaf);
/* For a backward rule: true when it may write its gradient over g, the
 * adjoint it was given (a contiguous tensor of the pass's own that nothing
 * else holds), and return g as that gradient, instead of a new tensor;
 * the rule must not read g after writing it (elementwise in place is
 * fine).  See backward.c. */
bool ad__grad_donated(const ad_node *n, const ad_tensor *g);
static inline bool ad__needs_grad(const ad_node *n, int i)
{
    return n->in[i]->requires_grad && ad__is_float(n->in[i]->dtype) &&
           !(i < 8 && (n->skip >> i) & 1u);
}

/* ---- strided iteration (iter.c) ----------------------------------------------
 * Walks an n-dimensional index space in row-major order, calling `row` once
 * per innermost run with each operand's storage offset and inner stride.
 * Operands are given by per-dimension strides over the iteration shape, so
 * broadcast dimensions simply have stride 0. */
#define AD_ITER_MAX_OPS 4
typedef struct ad_iter {
    int ndim;
    int nops;
    int64_t shape[AD_MAX_DIMS];
    int64_t strides[AD_ITER_MAX_OPS][AD_MAX_DIMS];
    int64_t offset[AD_ITER_MAX_OPS];
} ad_iter;
typedef void (*ad_iter_row)(int64_t len, const int64_t *off, const int64_t *step,
                            void *ctx);
/* Adds operand t to the iteration over it->shape, broadcasting t's shape
 * (right-aligned) against it. */
void ad__iter_add(ad_iter *it, const ad_tensor *t);
void ad__iter_run(const ad_iter *it, ad_iter_row row, void *ctx);
/* Broadcast result shape of a and b, numpy rules; error names fn. */
int ad__broadcast(const char *fn, int na, const int64_t *sa, int nb, const int64_t *sb,
                  int *nout, int64_t *out);

/* Elementwise kernels of ops_pointwise.c for other files, over any strides:
 * a and b are broadcast against out's shape, and out may be a or b.
 * ad__add_into: out = a + b.  ad__sqdiff_into: out = (a - b)^2, computed in
 * double.  Float dtypes; when they are not all the same, each element is
 * computed in double and converted to out's dtype. */
void ad__add_into(ad_tensor *out, const ad_tensor *a, const ad_tensor *b);
void ad__sqdiff_into(ad_tensor *out, const ad_tensor *a, const ad_tensor *b);

/* ---- reductions (ops_reduce.c) ------------------------------------------------------
 * Which dimensions a reduction removes, and the result's shape with
 * (keep_shape) and without (shape) keepdim; both have the same row-major
 * layout, since removed dimensions have extent 1 in keep_shape. */
typedef struct ad_reduce_plan {
    bool reduced[AD_MAX_DIMS];
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    int64_t keep_shape[AD_MAX_DIMS];
    int64_t count; /* elements folded into each result */
} ad_reduce_plan;
int ad__reduce_plan(const char *fn, const ad_tensor *x, const int *axes, int naxes,
                    bool keepdim, ad_reduce_plan *p);

/* ---- views and copies (ops_shape.c), shared with ops_index.c ------------------
 * ad__copy_same copies src into dst (one shape and dtype, any
 * strides) as raw bytes.  ad__slab is a header (never handed to users) for
 * count elements of t along axis, from start, step apart.  ad__dim_of
 * normalises an axis naming an existing dimension (an error for a 0-d
 * tensor); ad__new_axis one naming the place of a new dimension,
 * -(ndim+1)..ndim. */
void ad__copy_same(ad_tensor *dst, const ad_tensor *src);
/* ad_copy_into's copy (any dtypes, converted through double) for
 * arguments already checked, without its version bump: for an op's
 * forward writing its own output, which replay must not count as a
 * change in place. */
void ad__copy_convert(ad_tensor *dst, const ad_tensor *src);
ad_tensor ad__slab(const ad_tensor *t, int axis, int64_t start, int64_t count, int64_t step);
int ad__dim_of(const char *fn, const ad_tensor *x, int axis, int *d);
int ad__new_axis(const char *fn, int axis, const ad_tensor *x, int *a);

/* ---- scalar API hooks (scalar.c) ------------------------------------------------ */
void ad__scalar_reset(ad_tape *tape);
void ad__scalar_free(ad_tape *tape);
struct ad_scalar_tape;
/* The scalar API's state hangs off the tape's first field, so scalar.c
 * reaches it without a call per recorded op (it is the hot path of the
 * scalar benchmark). */
static inline struct ad_scalar_tape **ad__scalar_slot(ad_tape *tape)
{
    return (struct ad_scalar_tape **)(void *)tape;
}

#endif

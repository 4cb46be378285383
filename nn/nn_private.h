/* nn/nn_private.h - helpers shared by the module, loss, optim and train
 * sources of the nn layer; never installed.  Built on the public API only. */
#ifndef NN_NN_PRIVATE_H
#define NN_NN_PRIVATE_H

#include <autodiff/alloc.h>
#include <autodiff/autodiff.h>
#include <stdbool.h>

/* Reports a NULL argument: keeps a pending error (the NULL most likely comes
 * from an inner call that failed, whose message says what went wrong),
 * otherwise sets "fn: argument 'name' is NULL".  Returns -1. */
int nn__null_arg(const char *fn, const char *name);

/* nn_optim_step in parts (optim.c): checks and step counts; the update
 * of rows [R part / parts, R (part + 1) / parts) of every parameter (R its
 * first dimension), which threads may run at once for different parts;
 * the version bumps.  nn_optim_step is begin, slice(0, 1), end. */
typedef struct nn_optim nn_optim;
int nn__optim_step_begin(nn_optim *o);
void nn__optim_step_slice(nn_optim *o, int part, int parts);
void nn__optim_step_end(nn_optim *o);
/* The same update by parameter: the optimiser's parameter count, the index
 * of p among them (-1: not one), parameter k (borrowed), its first
 * dimension (1 for a 0-d one), and the update of its rows [r0, r1) -
 * slice(part, parts) is
 * rows(k) part / parts to rows(k) (part + 1) / parts of every k.  An
 * element's update is the same in any of these calls. */
int nn__optim_count(const nn_optim *o);
int nn__optim_find(const nn_optim *o, const ad_tensor *p);
ad_tensor *nn__optim_param(const nn_optim *o, int k);
/* Whether a step updates parameter k: it has a gradient and requires
 * grad (a frozen one is skipped). */
bool nn__optim_steps_param(const nn_optim *o, int k);
/* After an ad_backward with AD_SET_GRAD on this thread: zeroes the
 * gradients of o's parameters that the pass did not write
 * (ad_grad_written), so that every one is what nn_optim_zero_grad and an
 * accumulating backward would have made it.  -1 on error. */
int nn__optim_zero_unwritten(nn_optim *o);
int64_t nn__optim_rows(const nn_optim *o, int k);
void nn__optim_step_rows(nn_optim *o, int k, int64_t r0, int64_t r1);
/* Tests only: runs the update loops compiled for instruction set isa (0
 * the portable C, 1 AVX2, 2 AVX-512; -1 the widest the CPU has, the
 * default).  -1 when this CPU or build cannot run isa. */
int nn__optim_testing_isa(int isa);

/* Tests only (loader.c): whether an IDX loader converts bytes with its
 * multiply-add (true) or its table (false); both give the same bits. */
typedef struct nn_loader nn_loader;
bool nn__loader_affine(const nn_loader *l);
/* nn_loader_next in three parts, for the trainer's threads (nn_fit):
 * claim takes the next batch as nn_loader_next does (same returns, same
 * *x and *y) but leaves their values as they were and describes the batch
 * in *bt; fill_rows converts (or copies) rows [lo, hi) of it into xd and
 * yd, contiguous buffers of the batch's dtypes and shapes (the batch
 * tensors' own for NULL), each row as nn_loader_next would, reading only
 * the source, so threads may fill disjoint rows at once; filled then marks
 * the batch tensors modified (ad_mark_modified), as nn_loader_next does.
 * nn_fit converts each batch straight into the input leaves of the
 * recording it replays, so the batch is not copied a second time (nor,
 * with the products split among threads, handed to them to copy).  *bt is
 * valid until the next claim. */
typedef struct nn__batch {
    nn_loader *l;
    int k;              /* which pair of batch tensors */
    const int64_t *idx; /* the samples of rows 0 .. b - 1 */
    int64_t b;
} nn__batch;
int nn__loader_claim(nn_loader *l, ad_tensor **x, ad_tensor **y, nn__batch *bt);
void nn__loader_fill_rows(const nn__batch *bt, int64_t lo, int64_t hi, void *xd, void *yd);
void nn__loader_filled(const nn__batch *bt);
/* The batch the next claim would take, without taking it (the loader's
 * position and state stay as they are): 1 with *bt (its idx valid until
 * the loader's next claim or change of epoch), or 0 when that claim
 * would end or begin an epoch, or the loader is not an IDX one. */
int nn__loader_peek(const nn_loader *l, nn__batch *bt);
/* A hint for a thread converting bt's row i on its own: the source of the
 * row fill_rows would ask for ahead of it toward the caches. */
void nn__loader_prefetch_ahead(const nn__batch *bt, int64_t i);
/* Tests only (trainer_prefetch.c): while hold is set, nn_fit's threads
 * leave the next batch to the calling thread (which converts it when it
 * is handed out, or drops it). */
void nn__prefetch_testing_hold(bool hold);
/* Tests only (trainer_ops.c): while on, the parts of every split product,
 * update and zeroing of a step with NN_THREADS_OPS run one after the other
 * on the calling thread, the last part first, so that it claims every run
 * of rows and every strip of the others' (none is left for them). */
void nn__ops_testing_serial(bool on);
/* Tests only (trainer_threads.c): mode 1, the trainer's workers take no
 * part of a phase, so the calling thread runs them all once its own is
 * done; mode 2, each worker waits 0-80 us before it tries, so some parts
 * run on their workers and some on the calling thread; mode 3, the
 * calling thread runs none of theirs (each worker runs its own part);
 * 0, as usual. */
void nn__pool_testing_late(int mode);
/* Tests only (trainer_ops.c): the step times that NN_THREADS_OPS measures
 * on the threads are taken as f times what they were (f > 1: the calling
 * thread alone seems faster); 1 as usual. */
void nn__ops_testing_tune_bias(double f);

/* train.c: the class logits [N, C] predict for row i (the largest logit;
 * a NaN wins), and label i of labels int64 [N].  xd and yd are the data
 * of contiguous logits and labels, or NULL: then read through ad_get. */
int64_t nn__predicted(const ad_tensor *logits, const void *xd, int64_t i);
int64_t nn__label_at(const ad_tensor *labels, const int64_t *yd, int64_t i);

/* True for float32 and float64. */
static inline bool nn__is_float(ad_dtype dt) { return dt == AD_FLOAT32 || dt == AD_FLOAT64; }

/* Reads element i of contiguous data of a floating dtype as a double, and
 * writes one: the initialisers' loops (and Adam's and RMSprop's) work in
 * double and store in the parameter's own dtype. */
static inline double nn__ld(const void *p, ad_dtype dt, int64_t i)
{
    return dt == AD_FLOAT32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}
static inline void nn__st(void *p, ad_dtype dt, int64_t i, double v)
{
    if (dt == AD_FLOAT32)
        ((float *)p)[i] = (float)v;
    else
        ((double *)p)[i] = v;
}

/* "[2,3]" of a shape given as ndim extents. */
void nn__shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

/* Sum of squares of all elements of t (any strides), in double; -1 on error. */
double nn__sum_sq(const char *fn, const ad_tensor *t);
/* max |t_i| and sum (k t_i)^2 of t (any strides), for sums of squares that
 * overflow; -1 on error. */
int nn__scaled_sum_sq(const char *fn, const ad_tensor *t, double k, double *max, double *sum);

/* ---- random streams in checkpoints (state.c) ----------------------------
 * The model's registered streams (nn_module_set_rng), depth first, named
 * "module_rng" for the root and "module_rng.<path>" below it: *n of them,
 * *names (each and the array from ad_malloc, nn__rngs_free frees them)
 * and *rngs (pointers into the modules).  A stream is saved as an int64
 * [2] tensor holding the bits of its seed and counter, the whole state of
 * the counter-based generator.  Out of memory: -1, the error naming fn. */
#define NN__MODULE_RNG "module_rng"
struct nn_module;
int nn__module_rngs(const char *fn, const struct nn_module *m, int *n, char ***names,
                    ad_rng ***rngs);
void nn__rngs_free(int n, char **names, ad_rng **rngs);
/* Whether m or a descendant holds a buffer (BatchNorm's running
 * statistics): a walk of the tree that allocates nothing. */
bool nn__module_has_buffers(const struct nn_module *m);
/* The count a checkpoint's metadata holds under key, as a non-negative
 * integer, in *out (nn/state.c).  A missing key is an I/O error
 * "fn: path: no "key" in its metadata: <missing>", a value that is not a
 * count another; -1 then. */
struct nn_safetensors_info;
int nn__meta_count(const char *fn, const char *path, const struct nn_safetensors_info *info,
                   const char *key, const char *missing, int64_t *out);
/* The string a checkpoint's metadata holds under key, or NULL (borrowed
 * from info). */
const char *nn__meta_get(const struct nn_safetensors_info *info, const char *key);
/* v as "%a" writes it, and strtod, in the C locale whatever the program's
 * (util.c): the learning rate in checkpoints. */
void nn__fmt_hex_c(char *buf, size_t n, double v);
double nn__strtod_c(const char *s, char **end);
/* A new persistent int64 [2] tensor holding r, or NULL. */
ad_tensor *nn__rng_tensor(const ad_rng *r);
/* r from a tensor nn__rng_tensor made (and a load filled). */
void nn__rng_set(ad_rng *r, ad_tensor *t);

/* Layer fusion in Sequential (layers.c): when m is followed by a ReLU
 * module, Sequential may call the forward nn__fused_relu(m) returns
 * instead of m's and the ReLU's: relu of m's output, as one op (Conv2d:
 * ad_conv2d_relu, the same values and gradients to the bit).  NULL when
 * m's type has no such forward.  nn__is_relu: whether m is nn_relu(). */
typedef ad_tensor *(*nn__forward_fn)(struct nn_module *m, ad_tensor *x);
nn__forward_fn nn__fused_relu(const struct nn_module *m);
bool nn__is_relu(const struct nn_module *m);

#endif

/* autodiff/tape.h - the tape: recording, backward, gradient modes.
 *
 * A tape records every operation applied to tensors that require grad: the
 * op, its inputs, its output and whatever the op's backward rule needs.
 * ad_backward() walks the recording in reverse and applies each op's rule
 * (the chain rule), accumulating d(output)/d(leaf) into each leaf's grad.
 *
 * Memory.  Nodes, the tensors that ops produce and every temporary of the
 * backward pass live in an arena owned by the tape.  ad_tape_reset() frees
 * them all at once and keeps the arena's memory for the next step, so a
 * training loop that resets each step stops allocating after the first;
 * ad_tape_free() returns it to the system.
 *
 * Where results go.  An op's result belongs to the tape of its inputs.  If
 * no input is on a tape it belongs to this thread's active tape (see
 * ad_tape_activate); if there is none, it is a persistent tensor that the
 * caller frees with ad_tensor_free() - unless some input requires grad while
 * grad mode is on, which is an error, since there would be nowhere to record.
 * Mixing tensors of two different tapes in one op is an error.
 *
 * Threads.  A tape and its tensors must be used by one thread at a time.
 * Independent tapes may be used from different threads at once; the grad
 * mode, the active tape and the error message are per thread.  A persistent
 * tensor that does not require grad (a data set, frozen weights) may be
 * read by several threads at once, each recording on its own tape; one
 * that requires grad has its gradient written by ad_backward and belongs
 * to one thread at a time.
 */
#ifndef AUTODIFF_TAPE_H
#define AUTODIFF_TAPE_H

#include "export.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A new, empty tape; NULL when out of memory.  Free with ad_tape_free(). */
AD_API ad_tape *ad_tape_new(void);
/* Frees the tape, every tensor and node on it, and its arena.  Persistent
 * tensors are untouched.  NULL and a tape freed already are ignored.  If
 * the tape is the active tape of this thread it stops being active.  The
 * tape's handle and its tensors' handles stay safe to pass afterwards: any
 * function given one fails with "the tape was freed" rather than crashing
 * (the library keeps the small tape structure and tensor headers for
 * reuse instead of returning them to the system), until the structure is
 * taken by a new tape, once four more tapes have been freed in the
 * process.  The count is the whole process's: while other threads make
 * and free tapes, such a handle may meet its structure being taken (a
 * data race): a safety net for a mistake, not a use to rely on. */
AD_API void ad_tape_free(ad_tape *tape);
/* Forgets every node and tensor on the tape but keeps the arena memory for
 * reuse.  Tensors recorded before the reset become stale: using one is an
 * error that says so (see "freeing and lifetimes" in tensor.h), except
 * ad_detach results of the step just ended, which live through the next.
 * Persistent leaves keep their grad; persistent tensors the tape held for
 * backward are released. */
AD_API int ad_tape_reset(ad_tape *tape);

/* Makes tape this thread's active tape and returns the previous one (NULL
 * for none).  Pass NULL to deactivate. */
AD_API ad_tape *ad_tape_activate(ad_tape *tape);
AD_API ad_tape *ad_tape_active(void);

/* ---- composition scopes ---------------------------------------------------
 * A function built out of other ops (a convolution out of unfold and
 * matmul, a loss, a module's forward) leaves its intermediates wherever
 * those ops put them.  A scope makes the inputs' tape (or else the active
 * one) active while the composition runs, so that a step on persistent
 * tensors alone (transposing a weight) lands there too, and every
 * intermediate is freed with that tape.  When no tape is involved at all,
 * the composition runs on a scratch tape: ad_scope_end copies the result
 * out as a persistent tensor and frees the scratch tape with every
 * intermediate.  The library's own compositions (conv2d, pooling, the
 * normalisations, nn's losses and forward) are written this way:
 *
 *     ad_scope s;
 *     ad_tensor *in[2] = {x, w};
 *     if (ad_scope_begin(&s, "my_op", 2, in, false) != 0) return NULL;
 *     ad_tensor *y = ad_relu(ad_matmul(x, w));
 *     return ad_scope_end(&s, y);
 *
 * ad_scope_begin: inputs[0..n) may hold NULLs (absent optional arguments),
 * which are ignored; needs_grad says that tensors other than the inputs (a
 * module's parameters) require grad.  s->tape is the tape the composition's
 * new tensors go to (for ad_zeros and the like).  Returns 0, or -1 with an
 * error naming fn (or "ad_scope_begin" when fn is NULL), and then there is
 * nothing to end: s or inputs is NULL, an input is not usable, the inputs
 * belong to different tapes, gradients are needed (an input requires grad,
 * or needs_grad) while grad mode is on but there is no tape to record on,
 * or no memory for the scratch tape.
 *
 * ad_scope_end: makes the previous active tape active again and returns
 * result as it is (it lives on the tape), or with a scratch tape a
 * persistent copy that the caller owns (NULL when result is NULL or the
 * copy fails, with the error set).  Scopes nest: end them in the reverse
 * order of their beginnings, on the thread that began them.  s NULL
 * returns NULL with an error. */
typedef struct ad_scope {
    ad_tape *tape;    /* where the composition's tensors go */
    ad_tape *scratch; /* the scratch tape, or NULL when a tape is involved */
    ad_tape *prev;    /* the active tape before the scope */
} ad_scope;
AD_API int ad_scope_begin(ad_scope *s, const char *fn, int n, ad_tensor *const *inputs,
                          bool needs_grad);
AD_API ad_tensor *ad_scope_end(ad_scope *s, ad_tensor *result);

/* Figures about a tape, for tests and for the curious. */
typedef struct ad_tape_stats {
    size_t nodes;          /* ops recorded since the last reset */
    size_t tensors;        /* tensors allocated on the tape since the last reset */
    size_t arena_used;     /* bytes handed out since the last reset */
    size_t arena_reserved; /* bytes the arena holds from the system */
    size_t arena_chunks;   /* number of system allocations the arena holds */
    size_t arena_peak;     /* the most bytes handed out at once since the last reset:
                              a training step's peak, also when parts of it were given
                              back before its end (ad_checkpoint's recomputations) */
} ad_tape_stats;
AD_API int ad_tape_get_stats(const ad_tape *tape, ad_tape_stats *stats);

/* ---- grad mode ------------------------------------------------------------
 * While grad mode is off (per thread), ops compute but record nothing and
 * their results do not require grad, like torch.no_grad(). */
AD_API bool ad_grad_enabled(void);
/* Sets grad mode, returns the previous setting (to restore it). */
AD_API bool ad_set_grad_enabled(bool enabled);

/* ---- kernel threads ---------------------------------------------------------
 * With OpenMP, the kernels that split their work (matrix products, unfold,
 * fold, direct convolutions, max-pooling, random fills) use up to OpenMP's
 * thread count.  A
 * program that already runs tapes on several threads of its own (nn's
 * trainer with nn_trainer_set_threads) limits the kernels each of them
 * calls, so that the cores are not shared by teams on top of teams.  Per
 * thread, like the grad mode; OpenMP's own settings are left alone.
 * ad_set_num_threads(1) also keeps matrix products off a BLAS whose own
 * thread pool would share those cores: they go to OpenBLAS only when it
 * runs on its caller's thread (OPENBLAS_NUM_THREADS=1), else to the
 * built-in kernel, on the calling thread.  The other way round, with
 * several threads allowed, a product large enough for the built-in kernel
 * to split goes to it rather than to an OpenBLAS that runs on one thread
 * (unless AD_GEMM=blas).  n = 0 removes the limit.  Returns the previous
 * limit (0 for none), or -1 with an error for n < 0.  Results do not depend
 * on the limit except through which matrix kernel runs (the built-in
 * kernel splits its work so that every thread count gives the same bits;
 * BLAS and the built-in kernel may differ in the last bits). */
AD_API int ad_set_num_threads(int n);
/* Threads this thread's kernels may use now: OpenMP's count, capped by the
 * limit; 1 without OpenMP. */
AD_API int ad_get_num_threads(void);

/* A program's own threads for the kernels of this thread, instead of
 * OpenMP's: while a runner is set, a matrix product large enough to split
 * (the built-in kernel; ad_set_num_threads(1) keeps a BLAS with threads of
 * its own out) calls run(pool, task, ctx) once, and run must call
 * task(ctx, part, parts) for every part in 0..parts-1, on threads of its
 * choice (the caller's included), in any order or at the same time, and
 * return when all have returned; the parts share out the result among
 * themselves, so they need no locks.  Part t starts on a fixed run of the
 * product's output columns (rows, for a product accumulated into C) and
 * then takes what is left of the other parts' runs: with a pool whose
 * threads keep their part numbers, each thread writes mostly the same
 * slab of the same product step after step, and a thread that falls
 * behind is helped.  Bits do not depend on parts or on which thread
 * computes what (the split follows the built-in kernel's tiles).  nn's trainer
 * sets one for its threads during a step (NN_THREADS_OPS, nn/trainer.h)
 * and removes it after: waking a persistent pool costs it less, and on a
 * busy machine far less, than an OpenMP team.  Per thread; run NULL
 * removes it.  Returns 0, or -1 with
 * an error for parts < 2 with a runner. */
typedef void (*ad_parallel_task)(void *ctx, int part, int parts);
typedef void (*ad_parallel_runner)(void *pool, ad_parallel_task task, void *ctx);
AD_API int ad_set_parallel_runner(ad_parallel_runner run, void *pool, int parts);

/* ---- leaves ---------------------------------------------------------------
 * A leaf is a tensor not produced by a recorded op: made by a creation
 * function, or by ad_detach().  Only a floating-point leaf may require grad.
 * Errors: t not a leaf, integer dtype. */
AD_API int ad_set_requires_grad(ad_tensor *t, bool requires_grad);
/* A leaf that requires grad, holding numel values of the dtype's C type
 * (float or double) copied from data in row-major order:
 * torch.tensor(data, requires_grad=True), i.e. ad_from_array then
 * ad_set_requires_grad(t, true) in one call.  On tape (its arena owns it),
 * or persistent with tape NULL (free it with ad_tensor_free).  data is not
 * retained.  Errors: an integer or invalid dtype, data NULL, a bad shape,
 * out of memory; NULL then. */
AD_API ad_tensor *ad_leaf(ad_tape *tape, ad_dtype dtype, int ndim, const int64_t *shape,
                          const void *data);
AD_API bool ad_requires_grad(const ad_tensor *t);
/* True for leaves, false for results of recorded ops. */
AD_API bool ad_is_leaf(const ad_tensor *t);

/* The gradient accumulated into leaf t by ad_backward(), or NULL when none
 * has been.  It has t's shape and dtype and is owned by t: it lives on t's
 * tape, or is persistent and freed with t. */
AD_API ad_tensor *ad_tensor_grad(const ad_tensor *t);
/* Gives persistent leaf t the gradient buffer grad: from now on backward
 * adds t's gradient into grad in place and ad_zero_grad zeroes it, as for
 * a buffer the library made.  grad is persistent, contiguous, of t's shape
 * and dtype, usually a view into a larger tensor (ad_narrow + ad_reshape
 * of one flat buffer holding many parameters' gradients, which a
 * data-parallel trainer then reduces with one call and no copying, as
 * PyTorch DDP's gradient_as_bucket_view).  Its current values become t's
 * gradient.  t takes the handle: it is freed with t or when replaced (a
 * view keeps its storage alive).  The buffer t had is freed; NULL only
 * drops it.  Errors: t not a persistent leaf requiring grad, grad on a
 * tape, of another shape or dtype, not contiguous, sharing t's storage,
 * requiring grad (a leaf's values), or given to another leaf already.
 * Views of one buffer given to two leaves must not overlap: that is not
 * checked. */
AD_API int ad_set_grad(ad_tensor *t, ad_tensor *grad);
/* Sets t's accumulated gradient to zero so the next backward starts from
 * zero.  A gradient buffer the library made is zeroed in place and kept, so
 * a training loop does not reallocate it every step (PyTorch's
 * zero_grad(set_to_none=False)); a recorded gradient from AD_CREATE_GRAPH is
 * dropped instead and ad_tensor_grad() then returns NULL. */
AD_API int ad_zero_grad(ad_tensor *t);

/* t's values with no history and not requiring grad: gradients do not flow
 * through it (PyTorch's detach).  It shares t's storage, and it outlives
 * one reset: the result belongs to t's tape (for a persistent t, to the
 * active tape; with none active, it is a persistent view the caller frees),
 * stays valid for the rest of this step and through the whole next one -
 * at the next ad_tape_reset its values move to storage of their own - and
 * becomes stale at the reset after that.  That is the truncated-BPTT
 * pattern: `h = ad_detach(h); ad_tape_reset(tape);` between chunks, once
 * per chunk.  Its gradient and label, if given, are dropped at that reset.
 * On a frozen tape, the detach of a tensor made after ad_tape_freeze
 * expires with that tensor at the next ad_tape_replay (an error to use
 * then); the detach of a recorded tensor shows its replayed values.
 * Use ad_copy(NULL, t) for a value that must live longer. */
AD_API ad_tensor *ad_detach(ad_tensor *t);

/* A short name shown in errors, anomaly reports and graphs ("fc1.weight").
 * The string is copied onto the tape (or kept by the persistent tensor). */
AD_API int ad_set_label(ad_tensor *t, const char *label);
AD_API const char *ad_label(const ad_tensor *t);

/* ---- backward -------------------------------------------------------------
 * Computes d(out)/d(leaf) for every leaf that requires grad and out depends
 * on, and adds it to the leaf's grad (gradients accumulate across calls, as
 * in PyTorch; clear them with ad_zero_grad).
 *
 * grad_output is d(loss)/d(out), out's shape and dtype; it may be NULL only
 * when out has one element (the seed is then 1).
 *
 * flags:
 *   AD_RETAIN_GRAPH  keep the recording so backward can run through it
 *                    again; without it the nodes are marked freed and a
 *                    second backward through them is an error.
 *   AD_CREATE_GRAPH  record the backward pass itself (implies
 *                    AD_RETAIN_GRAPH), so the gradients are differentiable
 *                    again: derivatives of any order.  A persistent leaf's
 *                    grad is then a tensor on the tape until the tape is
 *                    reset, when it becomes a persistent copy of its value;
 *                    such a leaf must outlive the tape's reset.
 *   AD_SET_GRAD      the first gradient this pass gives a leaf replaces
 *                    what its grad held instead of adding to it, as if
 *                    ad_zero_grad had run just before, bit for bit, but
 *                    without a pass over the buffer to zero it (a weight's
 *                    gradient product writes it at once).  Leaves the pass
 *                    does not reach keep their grad as it was: a training
 *                    loop zeroes those, which ad_grad_written tells.
 *                    ad_backward only; ad_gradients refuses it.
 *
 * Errors: out does not require grad, grad_output missing for a non-scalar or
 * of another shape or dtype, unknown flags, graph already freed, an error inside an op's
 * backward rule (named).  On error no leaf gradient is half-updated by the
 * failing node (leaves reached before it may have been updated), and no
 * part of the graph is freed: after ad_zero_grad the same backward can be
 * run again, e.g. after an out-of-memory error. */
enum { AD_RETAIN_GRAPH = 1u << 0, AD_CREATE_GRAPH = 1u << 1, AD_SET_GRAD = 1u << 2 };
AD_API int ad_backward(ad_tensor *out, const ad_tensor *grad_output, unsigned flags);

/* Whether the last ad_backward with AD_SET_GRAD that this thread ran
 * wrote leaf t's gradient (false for a leaf that pass did not reach, and
 * when this thread has run no such pass).  A training loop zeroes the
 * others' (ad_zero_grad), which makes every gradient what ad_zero_grad of
 * all and then a plain pass would have made it. */
AD_API bool ad_grad_written(const ad_tensor *t);

/* The functional form (torch.autograd.grad): stores d(out)/d(inputs[i]),
 * contracted with grad_output as above, into grads[i] for i < n, without
 * touching any leaf's grad.  inputs may be leaves or intermediate results;
 * an input that out does not depend on gets zeros.  The gradients live on
 * out's tape; when out is a persistent leaf (no tape), they are persistent
 * tensors, one per slot, that the caller frees with ad_tensor_free.  Same
 * flags and errors as ad_backward; with AD_CREATE_GRAPH the gradients are
 * recorded and can be differentiated again. */
AD_API int ad_gradients(ad_tensor *out, const ad_tensor *grad_output, int n,
                 ad_tensor *const *inputs, ad_tensor **grads, unsigned flags);

/* ---- replay: record once, run many times ------------------------------------
 * The static-graph mode of KANN and ADOL-C.  Record a computation once on a
 * tape set replayable, freeze it, then for each new input write the values
 * into the input leaves (or pass them to ad_tape_replay) and replay: every
 * recorded op recomputes its output in place, in recording order, without
 * recording anything again.  ad_backward(out, NULL, AD_RETAIN_GRAPH) after a
 * replay differentiates the replayed values.  The arena is rewound to the
 * freeze point on each replay, so the temporaries of the previous backward
 * are reused: in steady state a replay step allocates nothing.
 *
 *   ad_tape_set_replayable(t, true);
 *   ... record: loss = model(x) on t ...
 *   ad_tape_freeze(t);
 *   for each batch:
 *       ad_tape_replay(t, 1, &x, &batch);
 *       ad_backward(loss, NULL, AD_RETAIN_GRAPH);
 *       ... update parameters ...
 *
 * Control flow.  A replayed tape repeats the recording's structure: an `if`
 * in C that looked at a value during recording is not looked at again.
 * Selections made with tensor ops (ad_where with a comparison such as
 * ad_gt) are recomputed and stay right.  To detect when a recorded C-level
 * branch would now go the other way, base it on a comparison op recorded on
 * the tape: ad_tape_replay returns how many comparison results changed
 * since the recording (ADOL-C's "branch switches"); when it is non-zero and
 * your C code branched on one, re-record.
 *
 * Copies and writes through the API.  ad_copy, ad_copy_into, ad_fill,
 * ad_set and writes through ad_data record nothing, so while the tape
 * records they happen once, and a replay does not repeat them.  Where a
 * replay would then compute other values than a new recording, the
 * library refuses (AD_ERR_STATE, naming the cure): a write into a value
 * the recording computes, or into a view of one (the replay recomputes
 * the value without the write: write with ops, ad_slice_scatter,
 * ad_where, ad_masked_fill); an op recorded on a copy of such a value
 * (the replay would keep the recording's values in it: copy with ops,
 * ad_contiguous of ad_detach); and a replay after a value that was copied
 * into the tape from outside it (a leaf, a persistent tensor) has changed
 * since the copy, before the freeze or after it (new values for it, an
 * optimiser's step) while the copy was left as it
 * was (a copy that the replay gives new values, or that the caller wrote
 * since, is the usual way to feed a batch in, and replays).  Constants written with
 * constants replay as written; a copy out of the tape into a persistent
 * tensor that no recorded op reads is a snapshot of the recording's
 * values, as ad_item's value is.  A checkpoint's function (transforms.h)
 * and a custom op's forward are run again by their nodes, copies and all.
 */

/* While on, every op whose result goes on the tape is recorded, also those
 * on no gradient path (data preprocessing, masks, comparisons) and those
 * run with grad mode off (a target computed under no grad: recomputed by
 * a replay, still without a gradient path), so that a replay recomputes
 * everything.  Set it before recording, and keep the tape active while
 * recording (ad_tape_activate): an op whose inputs are all persistent
 * tensors puts its result on the active tape, and with none active the
 * result is a persistent tensor, a constant that no replay recomputes. */
AD_API int ad_tape_set_replayable(ad_tape *tape, bool replayable);
/* Ends recording: what is on the tape now is what ad_tape_replay
 * recomputes; later allocations are rewound on each replay.  Errors: a
 * tape not set replayable, or already frozen (AD_ERR_STATE; ad_tape_reset
 * starts a new recording). */
AD_API int ad_tape_freeze(ad_tape *tape);
/* Copies values[i] into leaves[i] for i < n (values, or one values[i], may
 * be NULL - see ad_check_optional - when the
 * caller wrote into the leaves already), rewinds the arena to the freeze
 * point, and recomputes every recorded op.  Leaves on the tape lose their
 * grad (it lived past the freeze point); persistent leaves keep theirs.
 * Returns the number of comparison elements whose result changed since the
 * previous run (>= 0), or -1 on error: tape not frozen, an input of another
 * shape or dtype than recorded ("ad_tape_replay: input 0 was recorded as
 * [64,784] float32, got [32,784] float32"), an op that cannot be replayed,
 * or (AD_ERR_STATE, before anything has changed) a tensor that requires
 * grad now but did not when an op reading it was recorded with no input
 * that did (a layer unfrozen after the recording): the recording has no
 * gradient path through that op, so record again; or (AD_ERR_STATE) a
 * value copied into the tape through the API while recording that has
 * changed since (see above); or (AD_ERR_STATE) a recording whose ops read
 * what a backward pass made before the freeze (a gradient penalty recorded
 * with AD_CREATE_GRAPH): a replay does not run backward passes, so record
 * the forward pass only, freeze, and run that backward after each replay.
 * A leaf listed twice is an error, as is (AD_ERR_STATE) one that is a
 * value the recording computes, a detach or a view of one (the replay
 * would recompute over the value given).  values may be other leaves' memory
 * (leaves swapped): each is read before any leaf is written.  When an op
 * fails part-way (its message follows
 * "ad_tape_replay: op 'name' (node i of n) failed: "), the later values are
 * the previous run's: backward refuses until a replay succeeds or the tape
 * is reset. */
AD_API int ad_tape_replay(ad_tape *tape, int n, ad_tensor *const *leaves, ad_tensor *const *values);

/* ---- inspection: walking a recording ---------------------------------------------
 * For tools that draw or print what was recorded (graph pictures, traces).
 * Node i is the i-th op recorded since the last reset, in execution order,
 * so a node's inputs were produced by earlier nodes (or are leaves).  The
 * pointers in the info are owned by the tape. */
typedef struct ad_node_info {
    const char *op;       /* op name, "mul" */
    const char *formula;  /* the op's one-line formula */
    const char *label;    /* scope label at recording (ad_set_scope_label), or NULL */
    int nin;
    ad_tensor *const *inputs;
    ad_tensor *output;
    bool on_grad_path;    /* false for nodes kept only for replay */
} ad_node_info;

AD_API size_t ad_tape_num_nodes(const ad_tape *tape);
AD_API int ad_tape_node_info(const ad_tape *tape, size_t i, ad_node_info *info);
/* Index of the node that produced t on its tape, or -1 for a leaf (or a
 * tensor recorded only for replay, which is a leaf for gradients). */
AD_API long ad_tensor_node_index(const ad_tensor *t);

/* ---- tracing -----------------------------------------------------------------------
 * A per-thread hook called for every op recorded (phase FORWARD, after the
 * output is computed) and for every node the backward pass processes
 * (phase BACKWARD, after its rule ran: grad_output is dL/d(output) and
 * grad_inputs[i] the term g * d(output)/d(input i) that the chain rule adds
 * to input i's adjoint, NULL where no gradient flows).  For teaching and
 * debugging: it shows backpropagation step by step.  All tensors are
 * borrowed for the duration of the call. */
typedef enum ad_trace_phase { AD_TRACE_FORWARD, AD_TRACE_BACKWARD } ad_trace_phase;
typedef struct ad_trace_event {
    ad_trace_phase phase;
    size_t node;             /* index on the tape (ad_tape_node_info) */
    const char *op;
    const char *formula;
    int nin;
    ad_tensor *const *inputs;
    ad_tensor *output;
    ad_tensor *grad_output;            /* BACKWARD only */
    ad_tensor *const *grad_inputs;     /* BACKWARD only */
} ad_trace_event;
typedef void (*ad_trace_fn)(const ad_trace_event *event, void *ctx);
/* Installs fn (NULL removes it); returns the previous hook. */
AD_API ad_trace_fn ad_set_trace(ad_trace_fn fn, void *ctx);

/* ---- gradient-ready notification -------------------------------------------------
 * A per-thread hook that ad_backward calls once for every leaf that
 * requires grad and that the pass reaches, as soon as that leaf's gradient
 * is final for this pass: right after the oldest node that reads the leaf
 * has run (nodes run newest first, so nothing later adds to it), while
 * the pass goes on with older nodes.  A data-parallel trainer uses it to
 * start reducing a layer's gradients while backward still computes the
 * layers below (nn/dist.h).  leaf's grad (ad_tensor_grad) holds the final
 * gradient, or the sum with what it held before the pass (not with
 * AD_SET_GRAD); it is borrowed
 * for the call, and the hook must not change it or run a backward pass on
 * this tape.  A leaf used by no node that the output depends on is not
 * reported.  Not called by ad_gradients (whose results go elsewhere).
 * fn returns 0, or -1 with an error set, which ends the pass with that
 * error.  The bookkeeping (a table of the leaves, on the tape's arena)
 * is made only while a hook is installed. */
typedef struct ad_grad_ready_hook {
    int (*fn)(ad_tensor *leaf, void *ctx); /* NULL: no hook */
    void *ctx;
} ad_grad_ready_hook;
/* Installs hook for this thread ({NULL, NULL} removes it); returns the
 * previous one, so that a caller can put it back. */
AD_API ad_grad_ready_hook ad_set_grad_ready_hook(ad_grad_ready_hook hook);

/* ---- anomaly detection -------------------------------------------------------
 * Off by default (it costs a scan of every result).  While on (per thread),
 * the first op whose forward result or backward gradient contains NaN or
 * Inf although its inputs were finite fails with an error naming the op,
 * the element, the input shapes and the label of the scope it was recorded
 * in, instead of letting the NaN spread silently:
 *   "ad_log: anomaly: produced nan at element [1] of a [3] float64 result
 *    from finite inputs (x: [3] float64) in 'layer2'"
 */
AD_API bool ad_set_anomaly_mode(bool on); /* returns the previous setting */
AD_API bool ad_anomaly_mode(void);
/* Labels the ops recorded from now on in this thread (shown by anomaly
 * errors and graph dumps); NULL clears.  The string must outlive the tape.
 * Returns the previous label. */
AD_API const char *ad_set_scope_label(const char *label);

#ifdef __cplusplus
}
#endif
#endif

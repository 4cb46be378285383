/* nn/module.h - modules: layers with named parameters, composed into models.
 *
 * A module is PyTorch's nn.Module in C: a forward function, the parameters
 * it owns (persistent tensors that require grad, e.g. a Linear layer's
 * weight and bias), buffers (persistent tensors that are state but not
 * trained, e.g. BatchNorm's running mean), and child modules.  A model is a
 * tree of modules; a Sequential is the simplest such tree.
 *
 *     ad_rng rng;
 *     ad_rng_init(&rng, 42);
 *     nn_module *net = NN_SEQUENTIAL(nn_linear(784, 256, true, AD_FLOAT32, &rng),
 *                                    nn_relu(),
 *                                    nn_linear(256, 10, true, AD_FLOAT32, &rng));
 *     if (!net) fprintf(stderr, "%s\n", ad_error());
 *     nn_summary(net, 2, (int64_t[]){1, 784}, stdout);
 *
 *     ad_tape *tape = ad_tape_new();
 *     ad_tape_activate(tape);               // results of the step go here
 *     ad_tensor *logits = nn_forward(net, x);  // x [64,784] -> [64,10]
 *     ...loss, ad_backward, optimiser step, ad_tape_reset(tape)...
 *     nn_module_free(net);                  // frees every layer and parameter
 *
 * Ownership.
 *   - A module owns its parameters, buffers and children; nn_module_free
 *     frees all of them.  Never ad_tensor_free a parameter yourself.
 *   - Functions that take a module or tensor to own (nn_sequential,
 *     nn_sequential_append, nn_module_add_child, nn_module_add_parameter,
 *     nn_module_add_buffer) take it in every case: on failure they free it.
 *     The exceptions are a module that already belongs to a tree (a
 *     child of some module, or for nn_module_add_child m itself or an
 *     ancestor of m): it stays with its tree, untouched; a tensor that m's
 *     tree owns already (the same parameter added twice, or a weight tied
 *     by adding another module's parameter): it stays with its owner; and
 *     a child holding a tensor that m's tree owns: both are left as they
 *     were.  A tensor belongs to one module; to tie weights, let one
 *     module's forward read the other's parameter (nn_get_parameter).
 *     (A tensor another tree owns, added while the two trees are apart,
 *     is not seen: each tree would free it.) 
 *     So nested constructors need one check at the end, as above: a NULL
 *     from an inner constructor makes the outer one fail (keeping the
 *     inner message) and nothing leaks.
 *
 * Names.  Parameters and buffers are listed with hierarchical names, the
 * keys of PyTorch's state_dict: a Sequential's children are called "0",
 * "1", ..., so its first Linear's weight is "0.weight".  The same names
 * label the tensors (ad_label), so anomaly reports name them.
 *
 * dtype and initialisation.  Layer constructors take the dtype of their
 * parameters and an ad_rng for the random initialisation (PyTorch's default
 * for each layer, see nn/init.h): the same seed gives the same model.
 *
 * Errors: NULL (or -1) with the message in ad_error(), naming the function
 * and the offending values ("nn_linear: in_features must be >= 1, got 0").
 */
#ifndef NN_MODULE_H
#define NN_MODULE_H

#include <autodiff/autodiff.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_module nn_module;

/* ---- forward, modes, freeing ----------------------------------------------- */

/* Runs the module on x and returns its output.  The output and every
 * intermediate go where tape.h says results of ops go: on x's tape, else on
 * the active tape; so in a training loop activate a tape and reset it after
 * each step.  When neither exists (x persistent, no active tape) the
 * forward runs on a temporary tape and the output is returned as a new
 * persistent tensor that the caller frees with ad_tensor_free; that needs
 * grad mode off (there would be nowhere to record the gradient), e.g. for
 * inference under ad_set_grad_enabled(false).
 * A module may return x itself (Dropout in eval mode, Flatten of an already
 * flat input, an empty Sequential): do not free the result separately then.
 * Errors: NULL arguments, the layer's own checks ("nn_linear: input has 100
 * features (x [32,100]) but the layer expects 784"), errors of the ops,
 * each prefixed with the path of the failing layer ("nn_forward: layer
 * '2' Linear(256, 10): ..."). */
AD_API ad_tensor *nn_forward(nn_module *m, ad_tensor *x);

/* Training mode (the default for new modules) or evaluation mode, set on m
 * and every descendant (PyTorch's train()/eval()).  It changes what Dropout
 * (identity in eval) and BatchNorm (batch statistics and running-stat
 * updates in training, running stats in eval) do.  Returns 0, or -1 for
 * NULL. */
AD_API int nn_train(nn_module *m, bool training);
AD_API int nn_eval(nn_module *m);
/* The mode; false with an error for NULL. */
AD_API bool nn_is_training(const nn_module *m);

/* Frees m, its parameters, buffers and children.  NULL is ignored.  Do not
 * free a module that is the child of another (free the root). */
AD_API void nn_module_free(nn_module *m);

/* ---- parameters and buffers --------------------------------------------------- */

/* A list of (name, tensor) pairs.  The list owns its arrays and the name
 * strings (free it with nn_named_tensors_free); the tensors belong to
 * whoever the list was taken from (the module, the optimiser).  The arrays
 * fit nn_save_safetensors / nn_load_safetensors directly:
 *     nn_named_tensors *sd = nn_state_dict(net);
 *     nn_save_safetensors("model.safetensors", sd->n, sd->names, sd->tensors, NULL);
 *     nn_named_tensors_free(sd); */
typedef struct nn_named_tensors {
    int n;
    const char **names;
    ad_tensor **tensors;
} nn_named_tensors;

/* Every parameter of m and its descendants, depth first, each module's own
 * parameters before its children's (the order of PyTorch's
 * named_parameters): Sequential(Linear, ReLU, Linear) gives 0.weight,
 * 0.bias, 2.weight, 2.bias. */
AD_API nn_named_tensors *nn_parameters(const nn_module *m);
/* Every buffer (BatchNorm2d's running_mean, running_var and
 * num_batches_tracked), same order and naming. */
AD_API nn_named_tensors *nn_buffers(const nn_module *m);
/* Parameters and buffers together, each module's parameters then its
 * buffers then its children (PyTorch's state_dict order): what a
 * checkpoint of the model saves and loads. */
AD_API nn_named_tensors *nn_state_dict(const nn_module *m);
/* A list of your own tensors (which it does not own), to give an optimiser
 * or clipping tensors that are not in a module.  names may be NULL: the
 * tensors are then called "0", "1", ...  Errors: n < 0, a NULL tensor. */
AD_API nn_named_tensors *nn_named_tensors_new(int n, const char *const *names,
                                       ad_tensor *const *tensors);
AD_API void nn_named_tensors_free(nn_named_tensors *list);

/* The parameter / buffer with that hierarchical name ("2.bias"), or NULL
 * with an error naming the missing name.  Owned by the module. */
AD_API ad_tensor *nn_get_parameter(const nn_module *m, const char *name);
AD_API ad_tensor *nn_get_buffer(const nn_module *m, const char *name);
/* Total element count of all parameters (203530 for the MLP above); -1 for
 * NULL. */
AD_API int64_t nn_num_parameters(const nn_module *m);

/* ---- inspection ------------------------------------------------------------------ */

/* The module's type name: "Linear", "Sequential", ...; NULL with an error
 * for NULL. */
AD_API const char *nn_module_type_name(const nn_module *m);
/* A one-line description, e.g. "Linear(784, 256)" or "Conv2d(1, 32,
 * kernel=3x3, stride=1, padding=1)", into buf (always terminated). */
AD_API void nn_module_describe(const nn_module *m, char *buf, size_t size);
/* The number of direct children; -1 with an error for NULL. */
AD_API int nn_num_children(const nn_module *m);
/* Child i (0-based) and its name; NULL with an error when m is NULL or i
 * is out of range ("child 5 out of range: the Sequential has 3
 * children"). */
AD_API nn_module *nn_child(const nn_module *m, int i);
AD_API const char *nn_child_name(const nn_module *m, int i);
/* Prints the tree as PyTorch's repr does, one module per line, indented. */
AD_API int nn_module_print(const nn_module *m, FILE *out);

/* A table of the model, one row per layer that runs, in the order they
 * run: the layer's name and description, its output shape and its number
 * of parameters (of the layer and its descendants), then the totals
 * (parameters, trainable parameters, buffer elements, parameter memory).
 * The shapes come from a forward pass on a dummy input of input_shape
 * (zeros; int64 if the first layer is an Embedding, otherwise the dtype of
 * the parameters): it runs in eval mode with grad mode off on a temporary
 * tape, so it changes nothing (no running-stat update, no dropout draw) and
 * restores every module's mode after.  The shape includes the batch
 * dimension, e.g. {1, 784} or {1, 1, 28, 28}.  Errors: NULL arguments, a
 * bad shape, the forward failing (its message kept). */
AD_API int nn_summary(nn_module *m, int ndim, const int64_t *input_shape, FILE *out);

/* ---- layers --------------------------------------------------------------------
 * Parameter shapes and defaults are PyTorch's.  dtype is AD_FLOAT32 or
 * AD_FLOAT64; rng (required by layers with random initialisation) is
 * advanced by the initialisation. */

/* y = x W^T + b.  W [out, in] (as PyTorch, so checkpoints interchange), b
 * [out].  x [..., in] -> y [..., out].  Init: W kaiming_uniform with
 * a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)); b U(-1/sqrt(in),
 * 1/sqrt(in)).  Parameters "weight", "bias" (if bias). */
AD_API nn_module *nn_linear(int64_t in_features, int64_t out_features, bool bias, ad_dtype dtype,
                     ad_rng *rng);

/* 2-D convolution (ad_conv2d): x [N, C_in, H, W] -> [N, C_out, Ho, Wo].
 * weight [C_out, C_in/groups, kh, kw], bias [C_out].  p may be NULL
 * (stride 1, padding 0, dilation 1, groups 1).  Init as Linear with
 * fan_in = C_in/groups kh kw. */
AD_API nn_module *nn_conv2d(int64_t in_channels, int64_t out_channels, const int kernel[2],
                     const ad_conv2d_params *p, bool bias, ad_dtype dtype, ad_rng *rng);

/* Pooling (ad_max_pool2d, ad_avg_pool2d): stride NULL means stride =
 * kernel, padding NULL means 0.  No parameters. */
AD_API nn_module *nn_max_pool2d(const int kernel[2], const int stride[2], const int padding[2]);
AD_API nn_module *nn_avg_pool2d(const int kernel[2], const int stride[2], const int padding[2],
                         bool count_include_pad);

/* Merges dimensions start_dim..end_dim (PyTorch's default is 1, -1: keep
 * the batch dimension, flatten the rest). */
AD_API nn_module *nn_flatten(int start_dim, int end_dim);

/* Dropout with probability p in [0, 1] (ad_dropout): in training, each
 * element is zeroed with probability p and the others scaled by 1/(1-p);
 * in eval mode the identity.  The mask comes from an ad_rng owned by the
 * module, seeded with seed, so runs are reproducible; a replayed tape
 * draws a new mask from it at every replay, as a fresh recording would
 * (nn_trainer steps replay). */
AD_API nn_module *nn_dropout(double p, uint64_t seed);

/* Layer normalisation over the last ndim dimensions, of extents
 * normalized_shape (ad_layer_norm, eps > 0 e.g. 1e-5).  With
 * elementwise_affine: parameters "weight" (ones) and "bias" (zeros) of
 * normalized_shape. */
AD_API nn_module *nn_layer_norm(int ndim, const int64_t *normalized_shape, double eps,
                         bool elementwise_affine, ad_dtype dtype);

/* Batch normalisation of x [N, C, H, W] per channel (ad_batch_norm).
 * Parameters "weight" (ones) and "bias" (zeros) [C] if affine; buffers
 * "running_mean" (zeros) and "running_var" (ones) [C] and
 * "num_batches_tracked" (int64, 0-d), as PyTorch, so checkpoints carry
 * them.  In training the batch statistics are used and the running ones
 * updated with `momentum` (PyTorch's default 0.1; cumulative averaging,
 * momentum=None, is not supported); in eval the running ones are used.
 * eps e.g. 1e-5. */
AD_API nn_module *nn_batch_norm2d(int64_t num_features, double eps, double momentum, bool affine,
                           ad_dtype dtype);

/* Lookup table: int64 indices [...] -> [..., embedding_dim].  Parameter
 * "weight" [num_embeddings, embedding_dim], init N(0, 1) as PyTorch. */
AD_API nn_module *nn_embedding(int64_t num_embeddings, int64_t embedding_dim, ad_dtype dtype,
                        ad_rng *rng);

/* Activations, elementwise unless stated; no parameters. */
AD_API nn_module *nn_relu(void);
AD_API nn_module *nn_tanh(void);
AD_API nn_module *nn_sigmoid(void);
AD_API nn_module *nn_gelu(void);                    /* exact (erf) form */
AD_API nn_module *nn_leaky_relu(double negative_slope); /* PyTorch's default 0.01 */
AD_API nn_module *nn_softmax(int dim);              /* along dim */
AD_API nn_module *nn_log_softmax(int dim);

/* ---- Sequential ------------------------------------------------------------------ */

/* Runs its children in order, each one's output the next one's input.
 * Takes ownership of the n modules (which may be 0) in every case; a NULL
 * among them makes it fail (freeing the others), so nested constructors are
 * checked once.  Children are named "0", "1", ... */
AD_API nn_module *nn_sequential(int n, nn_module *const *modules);
/* nn_sequential with the modules as arguments: NN_SEQUENTIAL(a, b, c). */
#define NN_SEQUENTIAL(...)                                                     \
    nn_sequential((int)(sizeof((nn_module *[]){__VA_ARGS__}) / sizeof(nn_module *)), \
                  (nn_module *[]){__VA_ARGS__})
/* Appends m as the next child of seq (named by its position).  Takes
 * ownership of m (freed on failure, with nn_module_add_child's exception
 * for a module that already belongs to a tree).  Error when seq is not a
 * Sequential. */
AD_API int nn_sequential_append(nn_module *seq, nn_module *m);

/* ---- your own modules -------------------------------------------------------------
 * A module type is a forward function and, optionally, a function freeing
 * the module's private state and one describing it.  Register parameters,
 * buffers and children after nn_module_new; they are then listed, named,
 * switched between train and eval, and freed by the functions above.
 *
 *     typedef struct { double scale; } scaled_state;
 *     static ad_tensor *scaled_fwd(nn_module *m, ad_tensor *x) {
 *         scaled_state *s = nn_module_state(m);
 *         return ad_mul_scalar(nn_forward(nn_child(m, 0), x), s->scale);
 *     }
 *     static const nn_module_type SCALED = {"Scaled", scaled_fwd, free, NULL};
 */
typedef struct nn_module_type {
    const char *name; /* "Linear"; static storage */
    /* Computes the output from x with the library's ops; NULL with
     * ad_error() set on failure.  Read the mode with nn_is_training(m). */
    ad_tensor *(*forward)(nn_module *m, ad_tensor *x);
    /* Frees the state passed to nn_module_new; NULL when there is nothing
     * to free. */
    void (*free_state)(void *state);
    /* Writes the text inside "Name(...)" for descriptions; may be NULL. */
    void (*describe)(const nn_module *m, char *buf, size_t size);
} nn_module_type;

/* A new module of that type in training mode, owning state (freed with
 * type->free_state, also when this call fails).  type must outlive it. */
AD_API nn_module *nn_module_new(const nn_module_type *type, void *state);
/* The state given to nn_module_new (NULL for a module made without one,
 * which is not an error), and the type; NULL with an error for m NULL. */
AD_API void *nn_module_state(const nn_module *m);
AD_API const nn_module_type *nn_module_type_of(const nn_module *m);
/* Registers the module's random stream, an ad_rng inside its state (as
 * Dropout's mask stream), so that whole-state checkpoints
 * (nn_checkpoint_save) save and restore it and a resumed run draws the
 * same numbers, and so that nn_trainer puts it back after recording a
 * step for replay (the replay draws the step's numbers again); NULL
 * unregisters.  One per module; the pointer must stay
 * valid while the module lives.  nn_module_rng returns it (NULL when none,
 * which is no error).  Errors: m NULL. */
AD_API int nn_module_set_rng(nn_module *m, ad_rng *rng);
AD_API ad_rng *nn_module_rng(const nn_module *m);
/* Registers a persistent floating tensor as parameter `name` (no '.' in it,
 * unique in m): m owns it from now on and it is made to require grad.
 * Errors: a tensor on a tape, not a leaf, integer dtype, bad or duplicate
 * name.  t is freed on failure. */
AD_API int nn_module_add_parameter(nn_module *m, const char *name, ad_tensor *t);
/* Same for a buffer (any dtype; not trained, not requiring grad). */
AD_API int nn_module_add_buffer(nn_module *m, const char *name, ad_tensor *t);
/* Makes child a child of m called name (unique, no '.').  m owns it from
 * then on.  A module can have one parent only.
 * On failure the child is freed (a bad name, out of memory), except when it
 * already belongs to a tree: when it is already the child of some module
 * (its tree owns it), or when it is m itself or one of m's ancestors - a
 * cycle, refused with an error naming both modules ("cannot add the
 * Sequential (a root) as child 'x' of itself", "the Sequential (a root) is
 * an ancestor of the Linear '0'").  Such a child is left exactly as it
 * was, since freeing it would free part of a tree the caller still holds
 * (for a cycle, m itself): free the tree's root as usual, once. */
AD_API int nn_module_add_child(nn_module *m, const char *name, nn_module *child);

#ifdef __cplusplus
}
#endif
#endif

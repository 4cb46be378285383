/* nn/layers.c - the layers: Linear, Conv2d, pooling, Flatten, Dropout,
 * LayerNorm, BatchNorm2d, Embedding and the activations.
 *
 * Each layer is a module type (module.h): a forward function built from the
 * library's differentiable ops, a small private state with its
 * hyper-parameters, and parameters registered with the module, which owns
 * them.  The state keeps plain pointers to those parameters so the forward
 * pass does not look them up by name. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "init.h"
#include "module.h"
#include "nn_private.h"

static int check_dtype(const char *fn, ad_dtype dt)
{
    if (!nn__is_float(dt))
        return ad_set_error("%s: dtype must be AD_FLOAT32 or AD_FLOAT64, got %d", fn, (int)dt);
    return 0;
}

/* A module of type `type` owning `state`, or NULL (state freed) when
 * something before failed (rc != 0); fn, the constructor, names an
 * allocation that failed. */
static nn_module *new_module(const char *fn, int rc, const nn_module_type *type, void *state)
{
    if (rc != 0 || !state) {
        if (rc == 0) ad_set_error("%s: out of memory for a %s", fn, type->name);
        ad_free(state);
        return NULL;
    }
    return nn_module_new(type, state);
}

/* A persistent parameter of the given shape registered as `name`; NULL on
 * failure (then the caller frees the module). */
static ad_tensor *add_param(nn_module *m, const char *name, ad_dtype dt, int nd,
                            const int64_t *shape)
{
    ad_tensor *t = ad_empty(NULL, dt, nd, shape);
    if (!t) { /* named as the layer's: "Linear weight: ad_empty: ..." (ad_set_error
               * formats before it stores, so it may read the message it replaces) */
        ad_set_error("%s %s: %s", nn_module_type_name(m), name, ad_error() ? ad_error() : "");
        return NULL;
    }
    if (nn_module_add_parameter(m, name, t) != 0) return NULL;
    return t;
}

/* ---- Linear -------------------------------------------------------------------- */

typedef struct linear_state {
    int64_t in, out;
    ad_tensor *w, *b;
} linear_state;

static ad_tensor *linear_forward(nn_module *m, ad_tensor *x)
{
    linear_state *s = nn_module_state(m);
    if (ad_ndim(x) < 1 || ad_size(x, -1) != s->in) {
        char sh[96];
        ad_shape_str(x, sh, sizeof sh);
        ad_set_error("nn_linear: input has %" PRId64 " features (x %s) but the layer expects %"
                     PRId64, ad_ndim(x) < 1 ? 0 : ad_size(x, -1), sh, s->in);
        return NULL;
    }
    /* Each output unit j computes y_j = sum_i W_ji x_i + b_j, i.e. for a
     * batch of row vectors y = x W^T + b: one ad_linear, a single matrix
     * kernel call that adds the bias to each tile of y while it is in
     * cache.  Its backward gives dE/dW = (dE/dy)^T x in W's own layout,
     * dE/dx = (dE/dy) W and dE/db = sum_n dE/dy_n. */
    return ad_linear(x, s->w, s->b);
}

static void linear_describe(const nn_module *m, char *buf, size_t size)
{
    const linear_state *s = nn_module_state(m);
    snprintf(buf, size, "%" PRId64 ", %" PRId64 "%s", s->in, s->out, s->b ? "" : ", bias=false");
}

static const nn_module_type LINEAR = {"Linear", linear_forward, ad_free, linear_describe};

/* PyTorch's reset_parameters() of Linear and Conv2d: kaiming_uniform with
 * a = sqrt(5), which works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for
 * the weight, and the same bound for the bias. */
static int default_init(ad_tensor *w, ad_tensor *b, ad_rng *rng)
{
    int64_t fan_in;
    if (nn_init_kaiming_uniform(w, sqrt(5.0), NN_FAN_IN, NN_LEAKY_RELU, rng) != 0 ||
        nn_calculate_fans(w, &fan_in, NULL) != 0)
        return -1;
    double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
    return b ? nn_init_uniform(b, -bound, bound, rng) : 0;
}

/* The arguments of a layer with two extents named `what` and random
 * initial weights: a floating dtype, extents >= 1, an rng.  0 or -1. */
static int check_sized(const char *fn, ad_dtype dtype, const char *what, int64_t a, int64_t b,
                       const ad_rng *rng)
{
    int rc = check_dtype(fn, dtype);
    if (rc == 0 && (a < 1 || b < 1))
        rc = ad_set_error("%s: %s must be >= 1, got %" PRId64 " and %" PRId64, fn, what, a, b);
    if (rc == 0 && !rng) rc = nn__null_arg(fn, "rng");
    return rc;
}

/* Gives m its "weight" (wshape) and, with bias, its "bias" [wshape[0]],
 * initialised by default_init.  Returns m, or frees it and returns NULL. */
static nn_module *with_weight(nn_module *m, ad_dtype dtype, int ndim, const int64_t *wshape,
                              bool bias, ad_rng *rng, ad_tensor **w, ad_tensor **b)
{
    if (!(*w = add_param(m, "weight", dtype, ndim, wshape)) ||
        (bias && !(*b = add_param(m, "bias", dtype, 1, wshape))) ||
        default_init(*w, *b, rng) != 0) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

nn_module *nn_linear(int64_t in, int64_t out, bool bias, ad_dtype dtype, ad_rng *rng)
{
    int rc = check_sized("nn_linear", dtype, "in_features and out_features", in, out, rng);
    linear_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    nn_module *m = new_module("nn_linear", rc, &LINEAR, s);
    if (!m) return NULL;
    s->in = in;
    s->out = out;
    return with_weight(m, dtype, 2, (int64_t[]){out, in}, bias, rng, &s->w, &s->b);
}

/* ---- Conv2d --------------------------------------------------------------------- */

typedef struct conv_state {
    int64_t in, out;
    int kernel[2];
    ad_conv2d_params p;
    ad_tensor *w, *b;
} conv_state;

static ad_tensor *conv_forward(nn_module *m, ad_tensor *x)
{
    conv_state *s = nn_module_state(m);
    /* y[n,o] = b[o] + sum over input channels c and taps (i,j) of
     * w[o,c,i,j] x[n,c,...]: the same small filter slides over the image,
     * so the layer has O C kh kw weights whatever the image size. */
    return ad_conv2d(x, s->w, s->b, &s->p);
}

static void conv_describe(const nn_module *m, char *buf, size_t size)
{
    const conv_state *s = nn_module_state(m);
    const ad_conv2d_params *p = &s->p;
    int n = snprintf(buf, size, "%" PRId64 ", %" PRId64 ", kernel=%dx%d, stride=%dx%d", s->in,
                     s->out, s->kernel[0], s->kernel[1], p->stride[0], p->stride[1]);
    if (n > 0 && (size_t)n < size && (p->padding[0] || p->padding[1]))
        n += snprintf(buf + n, size - (size_t)n, ", padding=%dx%d", p->padding[0], p->padding[1]);
    if (n > 0 && (size_t)n < size && (p->dilation[0] != 1 || p->dilation[1] != 1))
        n += snprintf(buf + n, size - (size_t)n, ", dilation=%dx%d", p->dilation[0],
                      p->dilation[1]);
    if (n > 0 && (size_t)n < size && p->groups != 1)
        n += snprintf(buf + n, size - (size_t)n, ", groups=%d", p->groups);
    if (n > 0 && (size_t)n < size && !s->b) snprintf(buf + n, size - (size_t)n, ", bias=false");
}

static const nn_module_type CONV2D = {"Conv2d", conv_forward, ad_free, conv_describe};

/* relu(conv_forward(x)) in one op: relu applied as the convolution's
 * tiles are stored, its mask applied once to the gradient. */
static ad_tensor *conv_relu_forward(nn_module *m, ad_tensor *x)
{
    conv_state *s = nn_module_state(m);
    return ad_conv2d_relu(x, s->w, s->b, &s->p);
}

nn_module *nn_conv2d(int64_t in, int64_t out, const int kernel[2], const ad_conv2d_params *p,
                     bool bias, ad_dtype dtype, ad_rng *rng)
{
    const char *fn = "nn_conv2d";
    ad_conv2d_params q = p ? *p : (ad_conv2d_params)AD_CONV2D_DEFAULTS;
    /* Zero fields mean PyTorch's defaults, as for ad_conv2d. */
    for (int d = 0; d < 2; d++) {
        if (q.stride[d] == 0) q.stride[d] = 1;
        if (q.dilation[d] == 0) q.dilation[d] = 1;
    }
    if (q.groups == 0) q.groups = 1;
    int rc = check_dtype(fn, dtype);
    if (rc == 0 && !kernel) rc = nn__null_arg(fn, "kernel");
    if (rc == 0 && !rng) rc = nn__null_arg(fn, "rng");
    if (rc == 0 && (in < 1 || out < 1))
        rc = ad_set_error("%s: in_channels and out_channels must be >= 1, got %" PRId64
                          " and %" PRId64, fn, in, out);
    if (rc == 0 && (kernel[0] < 1 || kernel[1] < 1))
        rc = ad_set_error("%s: kernel must be >= 1, got %dx%d", fn, kernel[0], kernel[1]);
    if (rc == 0 && (q.stride[0] < 1 || q.stride[1] < 1 || q.padding[0] < 0 ||
                    q.padding[1] < 0 || q.dilation[0] < 1 || q.dilation[1] < 1))
        rc = ad_set_error("%s: need stride >= 1, padding >= 0, dilation >= 1, got stride "
                          "%dx%d, padding %dx%d, dilation %dx%d", fn, q.stride[0], q.stride[1],
                          q.padding[0], q.padding[1], q.dilation[0], q.dilation[1]);
    if (rc == 0 && (q.groups < 1 || in % q.groups || out % q.groups))
        rc = ad_set_error("%s: groups %d must be >= 1 and divide in_channels %" PRId64
                          " and out_channels %" PRId64, fn, q.groups, in, out);
    conv_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    nn_module *m = new_module("nn_conv2d", rc, &CONV2D, s);
    if (!m) return NULL;
    *s = (conv_state){in, out, {kernel[0], kernel[1]}, q, NULL, NULL};
    int64_t wshape[4] = {out, in / q.groups, kernel[0], kernel[1]};
    return with_weight(m, dtype, 4, wshape, bias, rng, &s->w, &s->b);
}

/* ---- pooling ---------------------------------------------------------------------- */

typedef struct pool_state {
    int kernel[2], stride[2], padding[2];
    bool count_include_pad;
} pool_state;

static ad_tensor *max_pool_forward(nn_module *m, ad_tensor *x)
{
    pool_state *s = nn_module_state(m);
    return ad_max_pool2d(x, s->kernel, s->stride, s->padding);
}

static ad_tensor *avg_pool_forward(nn_module *m, ad_tensor *x)
{
    pool_state *s = nn_module_state(m);
    return ad_avg_pool2d(x, s->kernel, s->stride, s->padding, s->count_include_pad);
}

static void pool_describe(const nn_module *m, char *buf, size_t size)
{
    const pool_state *s = nn_module_state(m);
    int n = snprintf(buf, size, "kernel=%dx%d, stride=%dx%d", s->kernel[0], s->kernel[1],
                     s->stride[0], s->stride[1]);
    if (n > 0 && (size_t)n < size && (s->padding[0] || s->padding[1]))
        snprintf(buf + n, size - (size_t)n, ", padding=%dx%d", s->padding[0], s->padding[1]);
}

static const nn_module_type MAX_POOL2D = {"MaxPool2d", max_pool_forward, ad_free, pool_describe};
static const nn_module_type AVG_POOL2D = {"AvgPool2d", avg_pool_forward, ad_free, pool_describe};

static nn_module *pool_new(const char *fn, const nn_module_type *type, const int kernel[2],
                           const int stride[2], const int padding[2], bool cip)
{
    int rc = kernel ? 0 : nn__null_arg(fn, "kernel");
    int st[2] = {stride ? stride[0] : 0, stride ? stride[1] : 0};
    int pd[2] = {padding ? padding[0] : 0, padding ? padding[1] : 0};
    for (int d = 0; rc == 0 && d < 2; d++) {
        if (st[d] == 0) st[d] = kernel[d]; /* PyTorch: stride defaults to the kernel */
        if (kernel[d] < 1 || st[d] < 1 || pd[d] < 0 || pd[d] > kernel[d] / 2)
            rc = ad_set_error("%s: need kernel >= 1, stride >= 0 and 0 <= padding <= kernel/2,"
                              " got kernel %dx%d, stride %dx%d, padding %dx%d", fn, kernel[0],
                              kernel[1], stride ? stride[0] : 0, stride ? stride[1] : 0, pd[0],
                              pd[1]);
    }
    pool_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    nn_module *m = new_module(fn, rc, type, s);
    if (m) *s = (pool_state){{kernel[0], kernel[1]}, {st[0], st[1]}, {pd[0], pd[1]}, cip};
    return m;
}

nn_module *nn_max_pool2d(const int kernel[2], const int stride[2], const int padding[2])
{
    return pool_new("nn_max_pool2d", &MAX_POOL2D, kernel, stride, padding, true);
}

nn_module *nn_avg_pool2d(const int kernel[2], const int stride[2], const int padding[2],
                         bool count_include_pad)
{
    return pool_new("nn_avg_pool2d", &AVG_POOL2D, kernel, stride, padding, count_include_pad);
}

/* ---- Flatten ------------------------------------------------------------------------ */

typedef struct flatten_state {
    int start, end;
} flatten_state;

static ad_tensor *flatten_forward(nn_module *m, ad_tensor *x)
{
    flatten_state *s = nn_module_state(m);
    return ad_flatten(x, s->start, s->end);
}

static void flatten_describe(const nn_module *m, char *buf, size_t size)
{
    const flatten_state *s = nn_module_state(m);
    snprintf(buf, size, "start_dim=%d, end_dim=%d", s->start, s->end);
}

static const nn_module_type FLATTEN = {"Flatten", flatten_forward, ad_free, flatten_describe};

nn_module *nn_flatten(int start_dim, int end_dim)
{
    flatten_state *s = ad_malloc(sizeof *s);
    nn_module *m = new_module("nn_flatten", 0, &FLATTEN, s);
    if (m) *s = (flatten_state){start_dim, end_dim};
    return m;
}

/* ---- Dropout ------------------------------------------------------------------------- */

typedef struct dropout_state {
    double p;
    ad_rng rng; /* the module's own generator: reproducible masks */
} dropout_state;

static ad_tensor *dropout_forward(nn_module *m, ad_tensor *x)
{
    dropout_state *s = nn_module_state(m);
    /* Training: y = x m / (1 - p) with m_i ~ Bernoulli(1 - p); scaling the
     * survivors keeps E[y] = x, so eval mode can be the identity. */
    return ad_dropout(x, s->p, nn_is_training(m), &s->rng);
}

static void dropout_describe(const nn_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "p=%g", ((const dropout_state *)nn_module_state(m))->p);
}

static const nn_module_type DROPOUT = {"Dropout", dropout_forward, ad_free, dropout_describe};

nn_module *nn_dropout(double p, uint64_t seed)
{
    int rc = 0;
    if (!(p >= 0 && p <= 1))
        rc = ad_set_error("nn_dropout: p must be in [0, 1], got %g", p);
    dropout_state *s = rc == 0 ? ad_malloc(sizeof *s) : NULL;
    nn_module *m = new_module("nn_dropout", rc, &DROPOUT, s);
    if (m) {
        s->p = p;
        ad_rng_init(&s->rng, seed);
        nn_module_set_rng(m, &s->rng); /* its masks' stream goes into checkpoints */
    }
    return m;
}

/* ---- LayerNorm ------------------------------------------------------------------------ */

typedef struct layer_norm_state {
    int ndim;
    int64_t shape[AD_MAX_DIMS];
    double eps;
    ad_tensor *w, *b;
} layer_norm_state;

static ad_tensor *layer_norm_forward(nn_module *m, ad_tensor *x)
{
    layer_norm_state *s = nn_module_state(m);
    int nd = ad_ndim(x);
    bool ok = nd >= s->ndim;
    for (int d = 0; ok && d < s->ndim; d++)
        ok = ad_size(x, nd - s->ndim + d) == s->shape[d];
    if (!ok) {
        char a[96], b[96];
        ad_shape_str(x, a, sizeof a);
        nn__shape_str(s->ndim, s->shape, b, sizeof b);
        ad_set_error("nn_layer_norm: input %s does not end in the normalized shape %s", a, b);
        return NULL;
    }
    /* Each sample is normalised over its last dims to mean 0 and variance 1,
     * then scaled and shifted by the learned weight and bias. */
    return ad_layer_norm(x, s->ndim, s->w, s->b, s->eps);
}

static void layer_norm_describe(const nn_module *m, char *buf, size_t size)
{
    const layer_norm_state *s = nn_module_state(m);
    char sh[96];
    nn__shape_str(s->ndim, s->shape, sh, sizeof sh);
    snprintf(buf, size, "%s, eps=%g%s", sh, s->eps, s->w ? "" : ", elementwise_affine=false");
}

static const nn_module_type LAYER_NORM = {"LayerNorm", layer_norm_forward, ad_free,
                                          layer_norm_describe};

nn_module *nn_layer_norm(int ndim, const int64_t *shape, double eps, bool affine, ad_dtype dtype)
{
    const char *fn = "nn_layer_norm";
    int rc = check_dtype(fn, dtype);
    if (rc == 0 && (ndim < 1 || ndim > AD_MAX_DIMS))
        rc = ad_set_error("%s: ndim must be 1..%d, got %d", fn, AD_MAX_DIMS, ndim);
    if (rc == 0 && !shape) rc = nn__null_arg(fn, "normalized_shape");
    for (int d = 0; rc == 0 && d < ndim; d++)
        if (shape[d] < 1)
            rc = ad_set_error("%s: normalized_shape[%d] must be >= 1, got %" PRId64, fn, d,
                              shape[d]);
    if (rc == 0 && !(isfinite(eps) && eps >= 0))
        rc = ad_set_error("%s: eps must be finite and >= 0, got %g", fn, eps);
    layer_norm_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    nn_module *m = new_module("nn_layer_norm", rc, &LAYER_NORM, s);
    if (!m) return NULL;
    s->ndim = ndim;
    memcpy(s->shape, shape, (size_t)ndim * sizeof *shape);
    s->eps = eps;
    if (affine && (!(s->w = add_param(m, "weight", dtype, ndim, shape)) ||
                   !(s->b = add_param(m, "bias", dtype, ndim, shape)) ||
                   nn_init_ones(s->w) != 0 || nn_init_zeros(s->b) != 0)) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- BatchNorm2d ------------------------------------------------------------------------ */

typedef struct batch_norm_state {
    int64_t c;
    double eps, momentum;
    ad_tensor *w, *b, *mean, *var, *count;
} batch_norm_state;

static ad_tensor *batch_norm_forward(nn_module *m, ad_tensor *x)
{
    batch_norm_state *s = nn_module_state(m);
    if (ad_ndim(x) != 4 || ad_size(x, 1) != s->c) {
        char sh[96];
        ad_shape_str(x, sh, sizeof sh);
        ad_set_error("nn_batch_norm2d: expected input [N, %" PRId64 ", H, W], got %s", s->c, sh);
        return NULL;
    }
    /* Training normalises with the batch's own statistics (and the gradient
     * flows through them) and folds them into the running averages;
     * evaluation uses the running averages, so a prediction does not depend
     * on the other samples of its batch. */
    bool training = nn_is_training(m);
    /* num_batches_tracked counts in the op that updates the running
     * statistics: a replayed step counts too */
    return ad_batch_norm_tracked(x, s->mean, s->var, s->count, s->w, s->b, training, s->momentum,
                                 s->eps);
}

static void batch_norm_describe(const nn_module *m, char *buf, size_t size)
{
    const batch_norm_state *s = nn_module_state(m);
    snprintf(buf, size, "%" PRId64 ", eps=%g, momentum=%g%s", s->c, s->eps, s->momentum,
             s->w ? "" : ", affine=false");
}

static const nn_module_type BATCH_NORM2D = {"BatchNorm2d", batch_norm_forward, ad_free,
                                            batch_norm_describe};

nn_module *nn_batch_norm2d(int64_t c, double eps, double momentum, bool affine, ad_dtype dtype)
{
    const char *fn = "nn_batch_norm2d";
    int rc = check_dtype(fn, dtype);
    if (rc == 0 && c < 1) rc = ad_set_error("%s: num_features must be >= 1, got %" PRId64, fn, c);
    if (rc == 0 && !(isfinite(eps) && eps >= 0))
        rc = ad_set_error("%s: eps must be finite and >= 0, got %g", fn, eps);
    if (rc == 0 && !(momentum >= 0 && momentum <= 1))
        rc = ad_set_error("%s: momentum must be in [0, 1], got %g", fn, momentum);
    batch_norm_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    nn_module *m = new_module("nn_batch_norm2d", rc, &BATCH_NORM2D, s);
    if (!m) return NULL;
    s->c = c;
    s->eps = eps;
    s->momentum = momentum;
    const int64_t shape[1] = {c};
    if ((affine && (!(s->w = add_param(m, "weight", dtype, 1, shape)) ||
                    !(s->b = add_param(m, "bias", dtype, 1, shape)) ||
                    nn_init_ones(s->w) != 0 || nn_init_zeros(s->b) != 0)) ||
        (s->mean = ad_zeros(NULL, dtype, 1, shape), nn_module_add_buffer(m, "running_mean",
                                                                         s->mean) != 0) ||
        (s->var = ad_ones(NULL, dtype, 1, shape), nn_module_add_buffer(m, "running_var",
                                                                       s->var) != 0) ||
        (s->count = ad_zeros(NULL, AD_INT64, 0, NULL),
         nn_module_add_buffer(m, "num_batches_tracked", s->count) != 0)) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- Embedding -------------------------------------------------------------------------- */

typedef struct embedding_state {
    int64_t num, dim;
    ad_tensor *w;
} embedding_state;

static ad_tensor *embedding_forward(nn_module *m, ad_tensor *x)
{
    embedding_state *s = nn_module_state(m);
    /* Row lookup: y[..., :] = W[x[...], :].  Equivalent to multiplying a
     * one-hot vector by W, without forming it; only the rows looked up get
     * a gradient. */
    return ad_embedding(s->w, x);
}

static void embedding_describe(const nn_module *m, char *buf, size_t size)
{
    const embedding_state *s = nn_module_state(m);
    snprintf(buf, size, "%" PRId64 ", %" PRId64, s->num, s->dim);
}

static const nn_module_type EMBEDDING = {"Embedding", embedding_forward, ad_free,
                                         embedding_describe};

nn_module *nn_embedding(int64_t num, int64_t dim, ad_dtype dtype, ad_rng *rng)
{
    int rc = check_sized("nn_embedding", dtype, "num_embeddings and embedding_dim", num, dim,
                         rng);
    embedding_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    nn_module *m = new_module("nn_embedding", rc, &EMBEDDING, s);
    if (!m) return NULL;
    s->num = num;
    s->dim = dim;
    if (!(s->w = add_param(m, "weight", dtype, 2, (int64_t[]){num, dim})) ||
        nn_init_normal(s->w, 0.0, 1.0, rng) != 0) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- activations ------------------------------------------------------------------------
 * Without them a stack of linear layers is one linear map; the
 * non-linearity between layers is what lets a network bend its decision
 * boundaries.  The state, when there is one, is a single number. */

typedef struct act_state {
    double slope; /* LeakyReLU */
    int dim;      /* Softmax, LogSoftmax */
} act_state;

static ad_tensor *relu_forward(nn_module *m, ad_tensor *x) { (void)m; return ad_relu(x); }
static ad_tensor *tanh_forward(nn_module *m, ad_tensor *x) { (void)m; return ad_tanh(x); }
static ad_tensor *sigmoid_forward(nn_module *m, ad_tensor *x) { (void)m; return ad_sigmoid(x); }
static ad_tensor *gelu_forward(nn_module *m, ad_tensor *x) { (void)m; return ad_gelu(x); }
static ad_tensor *leaky_forward(nn_module *m, ad_tensor *x)
{
    return ad_leaky_relu(x, ((act_state *)nn_module_state(m))->slope);
}
static ad_tensor *softmax_forward(nn_module *m, ad_tensor *x)
{
    return ad_softmax(x, ((act_state *)nn_module_state(m))->dim);
}
static ad_tensor *log_softmax_forward(nn_module *m, ad_tensor *x)
{
    return ad_log_softmax(x, ((act_state *)nn_module_state(m))->dim);
}
static void leaky_describe(const nn_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "negative_slope=%g", ((const act_state *)nn_module_state(m))->slope);
}
static void dim_describe(const nn_module *m, char *buf, size_t size)
{
    snprintf(buf, size, "dim=%d", ((const act_state *)nn_module_state(m))->dim);
}

static const nn_module_type RELU = {"ReLU", relu_forward, NULL, NULL};
static const nn_module_type TANH = {"Tanh", tanh_forward, NULL, NULL};
static const nn_module_type SIGMOID = {"Sigmoid", sigmoid_forward, NULL, NULL};
static const nn_module_type GELU = {"GELU", gelu_forward, NULL, NULL};
static const nn_module_type LEAKY_RELU = {"LeakyReLU", leaky_forward, ad_free, leaky_describe};
static const nn_module_type SOFTMAX = {"Softmax", softmax_forward, ad_free, dim_describe};
static const nn_module_type LOG_SOFTMAX = {"LogSoftmax", log_softmax_forward, ad_free,
                                           dim_describe};

nn_module *nn_relu(void) { return nn_module_new(&RELU, NULL); }

nn__forward_fn nn__fused_relu(const nn_module *m)
{
    return nn_module_type_of(m) == &CONV2D ? conv_relu_forward : NULL;
}
bool nn__is_relu(const nn_module *m) { return nn_module_type_of(m) == &RELU; }
nn_module *nn_tanh(void) { return nn_module_new(&TANH, NULL); }
nn_module *nn_sigmoid(void) { return nn_module_new(&SIGMOID, NULL); }
nn_module *nn_gelu(void) { return nn_module_new(&GELU, NULL); }

nn_module *nn_leaky_relu(double slope)
{
    int rc = isfinite(slope) ? 0
                             : ad_set_error("nn_leaky_relu: negative_slope must be finite, got %g",
                                            slope);
    act_state *s = rc == 0 ? ad_calloc(1, sizeof *s) : NULL;
    nn_module *m = new_module("nn_leaky_relu", rc, &LEAKY_RELU, s);
    if (m) s->slope = slope;
    return m;
}

static nn_module *dim_act(const char *fn, const nn_module_type *type, int dim)
{
    act_state *s = ad_calloc(1, sizeof *s);
    nn_module *m = new_module(fn, 0, type, s);
    if (m) s->dim = dim;
    return m;
}

nn_module *nn_softmax(int dim) { return dim_act("nn_softmax", &SOFTMAX, dim); }
nn_module *nn_log_softmax(int dim) { return dim_act("nn_log_softmax", &LOG_SOFTMAX, dim); }

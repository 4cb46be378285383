/* autodiff/ops_random.c - ops that draw random numbers: dropout's mask,
 * rand_like and randn_like.
 *
 * A tensor drawn by ad_rand or ad_randn is a constant of the recording:
 * a replayed tape would use it again.  The draws here are ops instead,
 * recorded on a replayable tape with the caller's ad_rng pointer in their
 * parameters; their replay forward draws again from that stream's
 * counter at the moment of the replay and advances it, consuming exactly
 * what a fresh recording would, so a replayed step and a freshly
 * recorded one give the same bits from the same stream state.  Each takes
 * x as its input for its shape, dtype and tape and for its place on the
 * tape (replay runs it before the ops that read its result); x's values
 * are never read.  None is differentiable: a draw is a constant of the
 * step, and whatever multiplies or adds it carries the gradient
 * (dropout's y = x m is a mul, so dx = g m, written with ops).
 *
 * The stream must outlive every replay of the tape (docs/lifetimes.md);
 * the numbers are those of ad_rand / ad_randn (rng.c), drawn by the same
 * fills. */
#include "internal.h"

/* ---- dropout ------------------------------------------------------------------------------------
 * y = x * mask with mask from the op "dropout_mask"; y's rule is mul's. */
typedef struct dropout_params {
    ad_rng *rng; /* the caller's stream: must outlive every replay */
    double p;
} dropout_params;

/* mask = [u >= p] / (1 - p) with u the next numel uniforms of rng in
 * row-major order, the uniforms ad_rand(rng, dtype, 0, 1) would give. */
static void draw_mask(ad_tensor *m, ad_rng *rng, double p)
{
    int64_t n = ad__numel(m->ndim, m->shape);
    double scale = 1.0 / (1.0 - p);
    if (m->dtype == AD_FLOAT64) {
        double *d = (double *)m->storage->data + m->offset;
        ad__rand_fill(rng, n, 0.0, 1.0, d, NULL);
        for (int64_t i = 0; i < n; i++) d[i] = d[i] >= p ? scale : 0.0;
    } else {
        float *d = (float *)m->storage->data + m->offset;
        ad__rand_fill(rng, n, 0.0, 1.0, NULL, d);
        for (int64_t i = 0; i < n; i++) d[i] = (double)d[i] >= p ? (float)scale : 0.0f;
    }
}

/* Replay: a new mask from the stream's current counter, in place. */
static int dropout_mask_fw(ad_node *n)
{
    const dropout_params *p = ad__params(n);
    draw_mask(n->out, p->rng, p->p);
    return 0;
}
static const ad_op OP_DROPOUT_MASK = {
    .name = "dropout_mask",
    .formula = "m = [u >= p] / (1 - p), u the next numel(x) uniforms of rng (drawn again "
               "at replay); not differentiable (a random constant; y = x m is a mul)",
    .backward = NULL,
    .forward = dropout_mask_fw,
    .params_size = sizeof(dropout_params),
};

ad_tensor *ad_dropout(ad_tensor *x, double p, bool training, ad_rng *rng)
{
    static const char *fn = "ad_dropout";
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    if (!(p >= 0.0 && p <= 1.0)) return ad__err(fn, "p must be in [0, 1], got %g", p), NULL;
    if (!training || p == 0.0) return x;
    if (p == 1.0) return ad_mul_scalar(x, 0.0); /* as PyTorch: x * 0, so NaN stays NaN */
    if (!rng)
        return ad__err(fn, "rng is NULL (needed when training with 0 < p < 1)"), NULL;
    ad_scope s;
    if (ad_scope_begin(&s, fn, 1, &x, false)) return NULL;
    /* A call that fails after drawing the mask puts the counter back, so a
     * retry draws the same mask: a failure changes nothing. */
    const uint64_t counter = rng->counter;
    ad_tensor *m = ad__alloc(fn, s.tape, x->dtype, x->ndim, x->shape), *y = NULL;
    if (m) {
        draw_mask(m, rng, p);
        dropout_params dp = {rng, p};
        m = ad__finish(m, 0, &OP_DROPOUT_MASK, 1, &x, &dp, NULL);
    }
    if (m) y = ad_mul(x, m);
    y = ad_scope_end(&s, y);
    if (!y) rng->counter = counter;
    return y;
}

/* ---- random tensors shaped like x -------------------------------------------------------
 * Noise inside a model (a VAE's reparameterisation, noise injection). */
typedef struct rand_params {
    ad_rng *rng;   /* the caller's stream: must outlive every replay */
    double a, b;   /* [lo, hi) or (mean, std) */
    bool normal;
} rand_params;

static void draw_like(ad_tensor *y, const rand_params *p)
{
    int64_t n = ad__numel(y->ndim, y->shape);
    double *d64 = y->dtype == AD_FLOAT64 ? (double *)y->storage->data + y->offset : NULL;
    float *d32 = y->dtype == AD_FLOAT32 ? (float *)y->storage->data + y->offset : NULL;
    if (p->normal) ad__randn_fill(p->rng, n, p->a, p->b, d64, d32);
    else ad__rand_fill(p->rng, n, p->a, p->b, d64, d32);
}

static int rand_like_fw(ad_node *n)
{
    draw_like(n->out, ad__params(n));
    return 0;
}
static const ad_op OP_RAND_LIKE = {
    .name = "rand_like",
    .formula = "y = lo + (hi - lo) u, shaped like x, u the next numel(x) uniforms of rng "
               "(drawn again at replay); not differentiable",
    .backward = NULL,
    .forward = rand_like_fw,
    .params_size = sizeof(rand_params),
};
static const ad_op OP_RANDN_LIKE = {
    .name = "randn_like",
    .formula = "y = mean + std sqrt(-2 ln u1) cos(2 pi u2), shaped like x, (u1, u2) the next "
               "pairs of uniforms of rng (drawn again at replay); not differentiable",
    .backward = NULL,
    .forward = rand_like_fw,
    .params_size = sizeof(rand_params),
};

static ad_tensor *random_like(const char *fn, const ad_op *op, ad_tensor *x, const rand_params *p)
{
    if (ad__check_arg(fn, "x", x, true)) return NULL;
    if (p->normal ? ad__check_randn(fn, p->rng, x->dtype, p->a, p->b)
                  : ad__check_rand(fn, p->rng, x->dtype, p->a, p->b))
        return NULL;
    ad_tensor *y = ad__result(fn, 1, &x, x->dtype, x->ndim, x->shape);
    if (!y) return NULL;
    /* A failed recording puts the counter back: a failure changes nothing. */
    const uint64_t counter = p->rng->counter;
    draw_like(y, p);
    y = ad__finish(y, 0, op, 1, &x, p, NULL);
    if (!y) p->rng->counter = counter;
    return y;
}

ad_tensor *ad_rand_like(ad_tensor *x, ad_rng *rng, double lo, double hi)
{
    return random_like("ad_rand_like", &OP_RAND_LIKE, x, &(rand_params){rng, lo, hi, false});
}

ad_tensor *ad_randn_like(ad_tensor *x, ad_rng *rng, double mean, double std)
{
    return random_like("ad_randn_like", &OP_RANDN_LIKE, x, &(rand_params){rng, mean, std, true});
}

const ad_op *const ad__ops_random[] = {
    &OP_DROPOUT_MASK, &OP_RAND_LIKE, &OP_RANDN_LIKE, NULL,
};

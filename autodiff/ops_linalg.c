/* autodiff/ops_linalg.c - products: kernel, rule and formula side by side.
 *
 * The arithmetic is in gemm.c (CBLAS or the built-in blocked kernel); this
 * file maps torch.matmul's shape rules onto it.  Every operand is handed to
 * the kernel as (pointer, row stride, column stride), so transposed views -
 * which is what the backward pass produces, g B^T and A^T g - cost no copy. */
#include <inttypes.h>

#include "gemm.h"
#include "internal.h"

/* ---- dot ------------------------------------------------------------------------ */
/* sum_i a_i b_i over any strides, accumulated in double. */
static double dot_kernel(const ad_tensor *a, const ad_tensor *b)
{
    int64_t n = a->shape[0], sa = a->strides[0], sb = b->strides[0];
    double s = 0;
    if (a->dtype == AD_FLOAT64) {
        const double *x = (const double *)a->storage->data + a->offset;
        const double *y = (const double *)b->storage->data + b->offset;
        for (int64_t i = 0; i < n; i++) s += x[i * sa] * y[i * sb];
    } else {
        const float *x = (const float *)a->storage->data + a->offset;
        const float *y = (const float *)b->storage->data + b->offset;
        for (int64_t i = 0; i < n; i++) s += (double)x[i * sa] * (double)y[i * sb];
    }
    return s;
}

static int dot_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    /* g is 0-d: broadcasting it against the other vector is g b / g a. */
    if (ad__needs_grad(n, 0)) gin[0] = ad_mul(g, n->in[1]);
    if (ad__needs_grad(n, 1)) gin[1] = ad_mul(g, n->in[0]);
    return 0;
}
static int dot_fw(ad_node *n)
{
    ad__st(n->out, 0, dot_kernel(n->in[0], n->in[1]));
    return 0;
}
static const ad_op OP_DOT = {
    .name = "dot",
    .formula = "y = sum_i a_i b_i; da = g b, db = g a",
    .backward = dot_bw,
    .forward = dot_fw,
};

ad_tensor *ad_dot(ad_tensor *a, ad_tensor *b)
{
    static const char *fn = "ad_dot";
    if (ad__check_arg(fn, "a", a, true) || ad__check_arg(fn, "b", b, true) ||
        ad__check_same_dtype(fn, a, b))
        return NULL;
    if (a->ndim != 1 || b->ndim != 1 || a->shape[0] != b->shape[0]) {
        if (a->ndim != 1 || b->ndim != 1)
            return ad__err(fn, "expected two 1-D tensors, got %s x %s", ad__shape_str(a),
                           ad__shape_str(b)), NULL;
        return ad__err(fn, "lengths differ: %s x %s", ad__shape_str(a), ad__shape_str(b)), NULL;
    }
    ad_tensor *in[2] = {a, b};
    ad_tensor *out = ad__result(fn, 2, in, a->dtype, 0, NULL);
    if (!out) return NULL;
    ad__st(out, 0, dot_kernel(a, b));
    return ad__finish(out, 0, &OP_DOT, 2, in, NULL, NULL);
}

/* ---- matmul ---------------------------------------------------------------------- */
/* How the operands map onto a batch of m x k times k x n products.  A 1-D
 * a is the 1 x k matrix (row stride irrelevant), a 1-D b the k x 1 one; the
 * added dimension is left out of the result's shape. */
typedef struct mm_geom {
    int nbatch;
    int64_t batch[AD_MAX_DIMS]; /* broadcast batch extents */
    int64_t astr[AD_MAX_DIMS];  /* a's stride per batch dim, 0 where broadcast */
    int64_t bstr[AD_MAX_DIMS];
    int64_t m, n, k;
    int64_t rsa, csa, rsb, csb;
    int out_ndim;
    int64_t out_shape[AD_MAX_DIMS];
} mm_geom;

static int mm_error(const char *fn, const char *what, const ad_tensor *a, const ad_tensor *b)
{
    return ad__err(fn, "%s: %s x %s", what, ad__shape_str(a), ad__shape_str(b));
}

static int mm_geometry(const char *fn, const ad_tensor *a, const ad_tensor *b, mm_geom *g)
{
    memset(g, 0, sizeof *g);
    int na = a->ndim, nb = b->ndim;
    if (na == 0 || nb == 0)
        return mm_error(fn, "0-dimensional operand (matmul needs at least 1-D)", a, b);
    g->k = a->shape[na - 1];
    int64_t kb = nb == 1 ? b->shape[0] : b->shape[nb - 2];
    if (g->k != kb) return mm_error(fn, "inner dimensions differ", a, b);
    g->m = na == 1 ? 1 : a->shape[na - 2];
    g->n = nb == 1 ? 1 : b->shape[nb - 1];
    g->csa = a->strides[na - 1];
    g->rsa = na == 1 ? 0 : a->strides[na - 2];
    g->rsb = nb == 1 ? b->strides[0] : b->strides[nb - 2];
    g->csb = nb == 1 ? 0 : b->strides[nb - 1];

    /* Batch dimensions broadcast like elementwise shapes, right-aligned. */
    int ba = na > 2 ? na - 2 : 0, bb = nb > 2 ? nb - 2 : 0;
    g->nbatch = ba > bb ? ba : bb;
    for (int d = 0; d < g->nbatch; d++) {
        int da = d - (g->nbatch - ba), db = d - (g->nbatch - bb);
        int64_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
        if (ea != eb && ea != 1 && eb != 1)
            return mm_error(fn, "batch dimensions cannot be broadcast", a, b);
        g->batch[d] = ea == 1 ? eb : ea;
        g->astr[d] = ea == 1 ? 0 : a->strides[da];
        g->bstr[d] = eb == 1 ? 0 : b->strides[db];
        g->out_shape[g->out_ndim++] = g->batch[d];
    }
    if (na > 1) g->out_shape[g->out_ndim++] = g->m;
    if (nb > 1) g->out_shape[g->out_ndim++] = g->n;
    return 0;
}

/* When b is the same matrix for every batch entry and a's batch dimensions
 * continue its row stride (a contiguous [..., m, k], the usual activations
 * times weights), the whole batch is one (batch * m) x k product: fewer,
 * larger kernel calls.  Returns the merged row count, or 0. */
static int64_t mm_merged_rows(const mm_geom *g, int a_ndim)
{
    if (a_ndim < 2) return 0;
    int64_t rows = g->m, expect = g->rsa * g->m;
    for (int d = g->nbatch - 1; d >= 0; d--) {
        if (g->batch[d] == 1) continue;
        if (g->bstr[d] != 0 || g->astr[d] != expect) return 0;
        expect *= g->batch[d];
        rows *= g->batch[d];
    }
    return rows;
}

/* Runs the batch of products into out (contiguous, g->out_shape). */
static int mm_compute(const char *fn, const mm_geom *g, const ad_tensor *a, const ad_tensor *b,
                      ad_tensor *out)
{
    size_t es = ad_dtype_size(a->dtype);
    const char *pa = (const char *)a->storage->data + a->offset * (int64_t)es;
    const char *pb = (const char *)b->storage->data + b->offset * (int64_t)es;
    char *pc = out->storage->data;
    int64_t merged = mm_merged_rows(g, a->ndim);
    if (merged > 0) {
        if (ad__gemm(out->tape, a->dtype, merged, g->n, g->k, pa, g->rsa, g->csa, pb, g->rsb,
                     g->csb, pc, g->n))
            return ad__err(fn, "out of memory");
        return 0;
    }
    int64_t total = ad__numel(g->nbatch, g->batch), idx[AD_MAX_DIMS] = {0};
    int64_t oa = 0, ob = 0, mn = g->m * g->n;
    for (int64_t t = 0; t < total; t++) {
        if (ad__gemm(out->tape, a->dtype, g->m, g->n, g->k, pa + oa * (int64_t)es, g->rsa,
                     g->csa, pb + ob * (int64_t)es, g->rsb, g->csb, pc + t * mn * (int64_t)es,
                     g->n))
            return ad__err(fn, "out of memory");
        /* Next batch index, row-major, updating both operands' offsets. */
        for (int d = g->nbatch - 1; d >= 0; d--) {
            oa += g->astr[d];
            ob += g->bstr[d];
            if (++idx[d] < g->batch[d]) break;
            oa -= g->astr[d] * g->batch[d];
            ob -= g->bstr[d] * g->batch[d];
            idx[d] = 0;
        }
    }
    return 0;
}

/* out = a b for operands that passed mm_geometry: the public function and
 * the replay forward share it. */
static int mm_run(const char *fn, const ad_tensor *a, const ad_tensor *b, ad_tensor *out)
{
    mm_geom g;
    if (mm_geometry(fn, a, b, &g)) return -1;
    /* A kernel that cannot take an operand's strides (CBLAS needs one unit
     * stride) gets a contiguous copy, on the result's tape when it has one;
     * the built-in kernel takes any strides. */
    ad_tensor *ca = NULL, *cb = NULL;
    int rc = 0;
    if (!ad__gemm_direct(g.m, g.k, g.rsa, g.csa)) rc |= !(a = ca = ad__copy(out->tape, a));
    if (!rc && !ad__gemm_direct(g.k, g.n, g.rsb, g.csb)) rc |= !(b = cb = ad__copy(out->tape, b));
    if (!rc && (ca || cb)) rc = mm_geometry(fn, a, b, &g);
    if (!rc) rc = mm_compute(fn, &g, a, b, out);
    if (!out->tape) {
        ad_tensor_free(ca);
        ad_tensor_free(cb);
    }
    return rc ? -1 : 0;
}

static int matmul_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *a = n->in[0], *b = n->in[1];
    /* Redo the vector promotions on the inputs and on g, so that the rule is
     * the matrix one: A [..., m, k], B [..., k, n], G [..., m, n]. */
    int64_t k = a->shape[a->ndim - 1];
    ad_tensor *A = a->ndim == 1 ? ad_reshape(a, 2, (int64_t[]){1, k}) : a;
    ad_tensor *B = b->ndim == 1 ? ad_reshape(b, 2, (int64_t[]){k, 1}) : b;
    int64_t gs[AD_MAX_DIMS];
    int gnd = g->ndim - (a->ndim > 1) - (b->ndim > 1);
    for (int d = 0; d < gnd; d++) gs[d] = g->shape[d];
    gs[gnd] = a->ndim == 1 ? 1 : a->shape[a->ndim - 2];
    gs[gnd + 1] = b->ndim == 1 ? 1 : b->shape[b->ndim - 1];
    ad_tensor *G = ad_reshape(g, gnd + 2, gs);
    if (!A || !B || !G) return -1;
    /* dA = G B^T and dB = A^T G per batch entry; summing over the batch
     * dimensions that broadcasting added to an operand returns each
     * gradient to its operand's shape. */
    if (ad__needs_grad(n, 0)) {
        ad_tensor *da = ad_matmul(G, ad_transpose(B, B->ndim - 2, B->ndim - 1));
        da = ad__sum_to(da, A->ndim, A->shape);
        gin[0] = a->ndim == 1 ? ad_reshape(da, 1, a->shape) : da;
    }
    if (ad__needs_grad(n, 1)) {
        ad_tensor *db = ad_matmul(ad_transpose(A, A->ndim - 2, A->ndim - 1), G);
        db = ad__sum_to(db, B->ndim, B->shape);
        gin[1] = b->ndim == 1 ? ad_reshape(db, 1, b->shape) : db;
    }
    return 0;
}
/* adj += g b^T (k = 0) or a^T g (k = 1), for plain matrices only (see
 * ad_op.accumulate_input); the product is a temporary the caller gives
 * back at once. */
static int matmul_acc(const ad_node *n, int k, ad_tensor *g, ad_tensor *adj)
{
    ad_tensor *a = n->in[0], *b = n->in[1];
    if (a->ndim != 2 || b->ndim != 2) return 0;
    ad_tensor *d = k == 0 ? ad_matmul(g, ad_transpose(b, 0, 1))
                          : ad_matmul(ad_transpose(a, 0, 1), g);
    if (!d) return -1;
    ad__add_into(adj, adj, d);
    return 1;
}
static int matmul_fw(ad_node *n) { return mm_run(n->op->name, n->in[0], n->in[1], n->out); }
static const ad_op OP_MATMUL = {
    .name = "matmul",
    .formula = "y = a b (torch.matmul: batched, broadcast, vectors promoted); "
               "da = sum_to(g b^T), db = sum_to(a^T g)",
    .backward = matmul_bw,
    .forward = matmul_fw,
    .accumulate_input = matmul_acc,
};

ad_tensor *ad_matmul(ad_tensor *a, ad_tensor *b)
{
    static const char *fn = "ad_matmul";
    if (ad__check_arg(fn, "a", a, true) || ad__check_arg(fn, "b", b, true) ||
        ad__check_same_dtype(fn, a, b))
        return NULL;
    mm_geom g;
    if (mm_geometry(fn, a, b, &g)) return NULL;
    if (a->ndim == 1 && b->ndim == 1) return ad_dot(a, b); /* recorded as "dot" */
    ad_tensor *in[2] = {a, b};
    ad_tensor *out = ad__result(fn, 2, in, a->dtype, g.out_ndim, g.out_shape);
    if (!out) return NULL;
    return ad__finish(out, mm_run(fn, a, b, out), &OP_MATMUL, 2, in, NULL, NULL);
}

/* ---- linear ---------------------------------------------------------------------
 * y = x w^T + b: torch.nn.functional.linear.  One GEMM whose epilogue adds
 * the bias to each tile of y while the tile is still in cache (see
 * gemm_driver.inc), instead of a matmul and a broadcast add that writes a
 * second [M, out] tensor.  Its rule gives dW = g^T x as an [out, in]
 * matrix laid out like W, added straight into W's gradient buffer when
 * backward would add it there anyway (ad__leaf_grad_target); matmul's rule
 * through the transposed view W^T gave the transpose of it, strided, which
 * the leaf's buffer then accumulated one strided element at a time.
 *
 * A relu fused in the same way (in the epilogue, and its mask with the
 * bias gradient in one backward pass) was measured with bench/linear.c on
 * the MLP's first layer and did not pay: a step took the same time as
 * ad_relu(ad_linear(...)) within the noise (about 1% either way), so it
 * is not offered. */

/* x [..., in] as an M x in matrix with row stride *rs: true when its
 * leading dimensions continue each other's strides (any contiguous x). */
static bool lin_rows(const ad_tensor *x, int64_t *M, int64_t *rs)
{
    int nd = x->ndim;
    if (nd == 1) {
        *M = 1;
        *rs = x->shape[0];
        return true;
    }
    int64_t rows = x->shape[nd - 2], expect = x->strides[nd - 2] * rows;
    *rs = x->strides[nd - 2];
    for (int d = nd - 3; d >= 0; d--) {
        if (x->shape[d] == 1) continue;
        if (x->strides[d] != expect) return false;
        expect *= x->shape[d];
        rows *= x->shape[d];
    }
    *M = rows;
    return true;
}

/* out = x w^T + b for arguments ad_linear has checked: the public function
 * and the replay forward share it. */
static int lin_run(const char *fn, const ad_tensor *x, const ad_tensor *w, const ad_tensor *b,
                   ad_tensor *out)
{
    int64_t nout = w->shape[0], nin = w->shape[1], M = 0, rs = 0;
    ad_tensor *cx = NULL, *cw = NULL;
    int rc = 0;
    /* The kernel reads any strides (CBLAS: one unit stride per operand);
     * an x whose rows do not merge, or an operand CBLAS cannot take, is
     * copied first, as ad_matmul does. */
    if (!lin_rows(x, &M, &rs) || !ad__gemm_direct(M, nin, rs, x->strides[x->ndim - 1])) {
        rc |= !(x = cx = ad__copy(out->tape, x));
        if (!rc) lin_rows(x, &M, &rs);
    }
    if (!rc && !ad__gemm_direct(nin, nout, w->strides[1], w->strides[0]))
        rc |= !(w = cw = ad__copy(out->tape, w));
    if (!rc) {
        size_t es = ad_dtype_size(x->dtype);
        ad_gemm_ep ep = {
            .bias = b ? (const char *)b->storage->data + b->offset * (int64_t)es : NULL,
            .bias_stride = b ? b->strides[0] : 0,
        };
        rc = ad__gemm_ep(out->tape, x->dtype, M, nout, nin,
                         (const char *)x->storage->data + x->offset * (int64_t)es, rs,
                         x->strides[x->ndim - 1],
                         (const char *)w->storage->data + w->offset * (int64_t)es, w->strides[1],
                         w->strides[0], out->storage->data, nout, &ep);
        if (rc) ad__err(fn, "out of memory");
    }
    if (!out->tape) {
        ad_tensor_free(cx);
        ad_tensor_free(cw);
    }
    return rc ? -1 : 0;
}

static int linear_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *x = n->in[0], *w = n->in[1];
    int64_t nout = w->shape[0], nin = w->shape[1];
    /* the rows: g's leading extents (not numel(g) / nout, which is 0 for
     * every x when w has no rows) */
    int64_t M = ad__numel(g->ndim - 1, g->shape);
    ad_tensor *G = ad_reshape(g, 2, (int64_t[]){M, nout});
    if (!G) return -1;
    /* dx = g w, dW = g^T x, db = sum over the rows of g. */
    if (ad__needs_grad(n, 0)) gin[0] = ad_reshape(ad_matmul(G, w), x->ndim, x->shape);
    if (ad__needs_grad(n, 1)) {
        ad_tensor *X = ad_reshape(x, 2, (int64_t[]){M, nin});
        bool set = false;
        ad_tensor *acc = X && !ad_grad_enabled() ? ad__leaf_grad_target(n, 1, &set) : NULL;
        if (acc) { /* w.grad += g^T x in one product (see ad__leaf_grad_target), or
                    * w.grad = g^T x in an AD_SET_GRAD pass's first write */
            size_t es = ad_dtype_size(X->dtype);
            if (ad__gemm_ep(n->out->tape, X->dtype, nout, nin, M,
                            (const char *)G->storage->data + G->offset * (int64_t)es,
                            G->strides[1], G->strides[0],
                            (const char *)X->storage->data + X->offset * (int64_t)es,
                            X->strides[0], X->strides[1],
                            (char *)acc->storage->data + acc->offset * (int64_t)es, nin,
                            &(ad_gemm_ep){.accumulate = !set, .weight_grad = true}))
                return ad__err("ad_backward", "out of memory");
        } else {
            gin[1] = ad_matmul(ad_transpose(G, 0, 1), X);
        }
    }
    if (n->nin > 2 && ad__needs_grad(n, 2)) gin[2] = ad_sum(G, (const int[]){0}, 1, false);
    return 0;
}
static int linear_fw(ad_node *n)
{
    return lin_run(n->op->name, n->in[0], n->in[1], n->nin > 2 ? n->in[2] : NULL, n->out);
}
static const ad_op OP_LINEAR = {
    .name = "linear",
    .formula = "y = x w^T + b; dx = g w, dw = g^T x, db = sum_rows g",
    .backward = linear_bw,
    .forward = linear_fw,
};

ad_tensor *ad_linear(ad_tensor *x, ad_tensor *w, ad_tensor *b)
{
    static const char *fn = "ad_linear";
    if (ad__check_arg(fn, "x", x, true) || ad__check_arg(fn, "w", w, true) ||
        ad__check_same_dtype(fn, x, w) ||
        (b && (ad__check_arg(fn, "b", b, true) || ad__check_same_dtype(fn, x, b))))
        return NULL;
    if (w->ndim != 2 || x->ndim < 1)
        return ad__err(fn, "expected x [..., in] and w [out, in], got x %s and w %s",
                       ad__shape_str(x), ad__shape_str(w)), NULL;
    if (x->shape[x->ndim - 1] != w->shape[1])
        return ad__err(fn, "x has %" PRId64 " features but w is %s (x %s)",
                       x->shape[x->ndim - 1], ad__shape_str(w), ad__shape_str(x)), NULL;
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return ad__err(fn, "bias must be [%" PRId64 "] for w %s, got %s", w->shape[0],
                       ad__shape_str(w), ad__shape_str(b)), NULL;
    ad_tensor *in[3] = {x, w, b};
    int nin = b ? 3 : 2;
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape[0] * (size_t)x->ndim);
    shape[x->ndim - 1] = w->shape[0];
    ad_tensor *out = ad__result(fn, nin, in, x->dtype, x->ndim, shape);
    if (!out) return NULL;
    return ad__finish(out, lin_run(fn, x, w, b, out), &OP_LINEAR, nin, in, NULL, NULL);
}

const ad_op *const ad__ops_linalg[] = {
    &OP_MATMUL, &OP_DOT, &OP_LINEAR, NULL,
};


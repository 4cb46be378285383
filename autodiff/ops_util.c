/* autodiff/ops_util.c - utilities along an axis and on matrices: argmax,
 * argmin, argsort (and sort, topk on top of it), cumsum, cumprod, tril,
 * triu, diagonal, diag_embed, one_hot, masked_fill; kernel, rule and
 * formula side by side, listed in ad__ops_util at the end.
 *
 * The index-valued ops (argmax, argmin, argsort, one_hot) are not
 * differentiable: their results are int64 (one_hot's may be float but is
 * still a constant).  Values are picked with ad_gather, whose rule is a
 * scatter_add, so sort and topk are differentiable to any order with the
 * indices as constants - the truth wherever the order is strict. */
#include "internal.h"

/* Storage offset of line k (row-major over every dimension but axis) of t;
 * tensors whose shapes differ only along axis number their lines alike. */
static int64_t line_offset(const ad_tensor *t, int axis, int64_t k)
{
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (d == axis) continue;
        off += (k % t->shape[d]) * t->strides[d];
        k /= t->shape[d];
    }
    return off;
}

static int64_t line_count(const ad_tensor *t, int axis)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        if (d != axis) n *= t->shape[d];
    return n;
}

/* The parameter of the ops along an axis (normalised), with a flag:
 * argsort's descending. */
typedef struct axis_params {
    int axis;
    bool flag;
} axis_params;

/* x's shape with dimension axis set to extent (or removed when extent < 0). */
static int shape_along(const ad_tensor *x, int axis, int64_t extent, int64_t *shape)
{
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d != axis) shape[nd++] = x->shape[d];
        else if (extent >= 0) shape[nd++] = extent;
    }
    return nd;
}

/* ---- argmax / argmin ------------------------------------------------------------ */
/* The first extremum of each line; a NaN counts as beyond every number
 * (the first NaN wins), as in PyTorch. */
static void arg_extremum(const ad_tensor *x, ad_tensor *out, int axis, bool want_max)
{
    int64_t n = x->shape[axis], st = x->strides[axis], lines = line_count(x, axis);
    int64_t *o = (int64_t *)out->storage->data + out->offset;
    for (int64_t k = 0; k < lines; k++) {
        int64_t off = line_offset(x, axis, k), best = 0;
        double bv = ad__ld(x, off);
        for (int64_t i = 1; i < n && !isnan(bv); i++) {
            double v = ad__ld(x, off + i * st);
            if (isnan(v) || (want_max ? v > bv : v < bv)) bv = v, best = i;
        }
        o[k] = best;
    }
}
static int argmax_fw(ad_node *n)
{
    arg_extremum(n->in[0], n->out, ((const axis_params *)ad__params(n))->axis, true);
    return 0;
}
static int argmin_fw(ad_node *n)
{
    arg_extremum(n->in[0], n->out, ((const axis_params *)ad__params(n))->axis, false);
    return 0;
}
static const ad_op OP_ARGMAX = {
    .name = "argmax",
    .formula = "i = index of the first maximum along an axis (NaN largest); "
               "not differentiable (integer)",
    .forward = argmax_fw,
    .params_size = sizeof(axis_params),
};
static const ad_op OP_ARGMIN = {
    .name = "argmin",
    .formula = "i = index of the first minimum along an axis (NaN smallest wins first); "
               "not differentiable (integer)",
    .forward = argmin_fw,
    .params_size = sizeof(axis_params),
};
static ad_tensor *arg_op(const char *fn, const ad_op *op, ad_tensor *x, int axis, bool keepdim)
{
    int d;
    if (ad__check_arg(fn, "x", x, true) || ad__dim_of(fn, x, axis, &d)) return NULL;
    if (x->shape[d] == 0)
        return ad__err(fn, "empty reduction: axis %d of %s has extent 0", axis,
                       ad__shape_str(x)), NULL;
    int64_t shape[AD_MAX_DIMS];
    int nd = shape_along(x, d, keepdim ? 1 : -1, shape);
    ad_tensor *out = ad__result(fn, 1, &x, AD_INT64, nd, shape);
    if (!out) return NULL;
    arg_extremum(x, out, d, op == &OP_ARGMAX);
    return ad__finish(out, 0, op, 1, &x, &(axis_params){d, false}, NULL);
}
ad_tensor *ad_argmax(ad_tensor *x, int axis, bool keepdim)
{
    return arg_op("ad_argmax", &OP_ARGMAX, x, axis, keepdim);
}
ad_tensor *ad_argmin(ad_tensor *x, int axis, bool keepdim)
{
    return arg_op("ad_argmin", &OP_ARGMIN, x, axis, keepdim);
}

/* ---- argsort, sort, topk ---------------------------------------------------------- */
/* Whether value a goes before value b: ascending puts NaN last, descending
 * first (PyTorch's order). */
static bool before(double a, double b, bool desc)
{
    if (desc) return a > b || (isnan(a) && !isnan(b));
    return a < b || (isnan(b) && !isnan(a));
}

/* Stable merge sort of idx[0..n) by v[idx[i]], with tmp of n entries. */
static void merge_sort(const double *v, int64_t *idx, int64_t *tmp, int64_t n, bool desc)
{
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) /* the left run wins ties: stable */
                tmp[k++] = before(v[idx[j]], v[idx[i]], desc) ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

static int argsort_kernel(const char *fn, const ad_tensor *x, ad_tensor *out, int axis, bool desc)
{
    int64_t n = x->shape[axis], st = x->strides[axis], lines = line_count(x, axis);
    if (n == 0 || lines == 0) return 0;
    double *v = ad__malloc((size_t)n * sizeof *v);
    int64_t *idx = ad__malloc(2 * (size_t)n * sizeof *idx);
    if (!v || !idx) {
        ad__free(v);
        ad__free(idx);
        return ad__err(fn, "out of memory");
    }
    int64_t *o = out->storage->data, ost = out->strides[axis];
    for (int64_t k = 0; k < lines; k++) {
        int64_t off = line_offset(x, axis, k), oo = line_offset(out, axis, k);
        for (int64_t i = 0; i < n; i++) v[i] = ad__ld(x, off + i * st), idx[i] = i;
        merge_sort(v, idx, idx + n, n, desc);
        for (int64_t i = 0; i < n; i++) o[oo + i * ost] = idx[i];
    }
    ad__free(v);
    ad__free(idx);
    return 0;
}
static int argsort_fw(ad_node *n)
{
    const axis_params *p = ad__params(n);
    return argsort_kernel(n->op->name, n->in[0], n->out, p->axis, p->flag);
}
static const ad_op OP_ARGSORT = {
    .name = "argsort",
    .formula = "i = the positions of x's elements along an axis in sorted order (stable; "
               "NaN last ascending, first descending); not differentiable (integer)",
    .forward = argsort_fw,
    .params_size = sizeof(axis_params),
};

ad_tensor *ad_argsort(ad_tensor *x, int axis, bool descending)
{
    static const char *fn = "ad_argsort";
    int d;
    if (ad__check_arg(fn, "x", x, true) || ad__dim_of(fn, x, axis, &d)) return NULL;
    ad_tensor *out = ad__result(fn, 1, &x, AD_INT64, x->ndim, x->shape);
    if (!out) return NULL;
    return ad__finish(out, argsort_kernel(fn, x, out, d, descending), &OP_ARGSORT, 1, &x,
                      &(axis_params){d, descending}, NULL);
}

/* values = gather(x, axis, i), i = argsort (or its first k): composed in a
 * scope, so the intermediates go with the tape (or a scratch tape). */
static ad_tensor *sorted_values(const char *fn, ad_tensor *x, int axis, bool desc, int64_t k,
                                ad_tensor **indices)
{
    ad_scope s;
    if (indices) *indices = NULL;
    if (ad_scope_begin(&s, fn, 1, &x, false)) return NULL;
    ad_tensor *i = ad_argsort(x, axis, desc), *v = NULL;
    if (i && k >= 0) i = ad_narrow(i, axis, 0, k);
    if (i) v = ad_gather(x, axis, i);
    if (v && indices && s.scratch && !(i = ad__copy(NULL, i))) v = NULL;
    if (v && indices) *indices = i;
    return ad_scope_end(&s, v);
}

ad_tensor *ad_sort(ad_tensor *x, int axis, bool descending, ad_tensor **indices)
{
    static const char *fn = "ad_sort";
    int d;
    if (ad__check_arg(fn, "x", x, true) || ad__dim_of(fn, x, axis, &d)) return NULL;
    return sorted_values(fn, x, d, descending, -1, indices);
}

ad_tensor *ad_topk(ad_tensor *x, int64_t k, int axis, bool largest, ad_tensor **indices)
{
    static const char *fn = "ad_topk";
    int d;
    if (ad__check_arg(fn, "x", x, true) || ad__dim_of(fn, x, axis, &d)) return NULL;
    if (k < 0 || k > x->shape[d])
        return ad__err(fn, "k = %lld out of range for axis %d of %s", (long long)k, axis,
                       ad__shape_str(x)), NULL;
    return sorted_values(fn, x, d, largest, k, indices);
}

/* ---- cumsum / cumprod ---------------------------------------------------------------
 * Running sums and products along an axis, accumulated in double; a
 * reversed one runs from the end of each line (y_i over j >= i). */
static void cum_kernel(const ad_tensor *x, ad_tensor *out, int axis, bool prod, bool reverse)
{
    int64_t n = x->shape[axis], st = x->strides[axis], ost = out->strides[axis];
    int64_t lines = n ? line_count(x, axis) : 0;
    for (int64_t k = 0; k < lines; k++) {
        int64_t off = line_offset(x, axis, k), oo = line_offset(out, axis, k);
        double acc = prod ? 1.0 : 0.0;
        for (int64_t t = 0; t < n; t++) {
            int64_t i = reverse ? n - 1 - t : t;
            double v = ad__ld(x, off + i * st);
            acc = prod ? acc * v : acc + v;
            ad__st(out, oo + i * ost, acc);
        }
    }
}
static int cumsum_fw(ad_node *n)
{
    const axis_params *p = ad__params(n);
    cum_kernel(n->in[0], n->out, p->axis, false, p->flag);
    return 0;
}
static int cumprod_fw(ad_node *n)
{
    cum_kernel(n->in[0], n->out, ((const axis_params *)ad__params(n))->axis, true, false);
    return 0;
}

/* The running sum along axis, from the end when reverse (y_i over j >= i). */
static ad_tensor *cumsum_dir(ad_tensor *x, int axis, bool reverse);

/* The adjoint of a running sum is the running sum the other way: for the
 * forward one, dx_i = sum_{j >= i} g_j as a running sum from the end.
 * (sum(g) - cumsum(g) + g, as it was, kept only the rounding of two
 * large, nearly equal numbers where g's early entries dwarf its later
 * ones: 1e8 1 1 1 came back 1e8 1 1 1 for 1e8 3 2 1.) */
static int cumsum_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const axis_params *p = ad__params(n);
    gin[0] = cumsum_dir(g, p->axis, !p->flag);
    return 0;
}
static const ad_op OP_CUMSUM = {
    .name = "cumsum",
    .formula = "y_i = sum_{j <= i} x_j along an axis (reversed: j >= i); dx = the running sum "
               "of g the other way",
    .backward = cumsum_bw,
    .forward = cumsum_fw,
    .params_size = sizeof(axis_params),
};

/* dx_i = sum_{j >= i} g_j prod_{k <= j, k != i} x_k.  Without zeros in x
 * that is (g y) summed from the end, over x.  With a zero the quotient is
 * 0/0, and the rule takes the exact form instead: with the lines as the M
 * rows of an [M, n] matrix, row i of Z [M, n, n] is x with x_i replaced
 * by 1, so
 * cumprod(Z)[i, j] = prod_{k <= j, k != i} x_k, and dx_i is the sum over
 * j >= i (triu) of g_j times it: O(n^2) per line, paid only then. */
static int cumprod_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    int axis = ((const axis_params *)ad__params(n))->axis;
    ad_tensor *x = n->in[0];
    ad_tensor *zero = ad_scalar_tensor(n->out->tape, x->dtype, 0.0);
    ad_tensor *any_zero = ad_sum(ad_eq(x, zero), NULL, 0, false);
    if (!any_zero) return -1;
    if (ad_item(any_zero) == 0) {
        gin[0] = ad_div(cumsum_dir(ad_mul(g, n->out), axis, true), x);
        return 0;
    }
    /* (as [M, n], Z fits whatever x's rank: an 8-d x has no room for an
     * extra dimension) */
    int last = x->ndim - 1;
    int64_t len = x->shape[axis], M = ad__numel(x->ndim, x->shape) / len;
    ad_tensor *xl = ad_transpose(x, axis, last), *gl = ad_transpose(g, axis, last);
    ad_tensor *x2 = ad_reshape(xl, 2, (int64_t[]){M, len});
    ad_tensor *g2 = ad_reshape(gl, 2, (int64_t[]){M, len});
    if (!x2 || !g2) return -1;
    ad_tensor *eye = ad_eye(n->out->tape, x->dtype, len);
    ad_tensor *one = ad_scalar_tensor(n->out->tape, x->dtype, 1.0);
    ad_tensor *Z = ad_where(eye, one, ad_expand(ad_unsqueeze(x2, 1), 3, (int64_t[]){M, len, len}));
    ad_tensor *P = ad_triu(ad_cumprod(Z, -1), 0);
    ad_tensor *dx = ad_sum(ad_mul(P, ad_unsqueeze(g2, 1)), (int[]){-1}, 1, false);
    gin[0] = ad_transpose(ad_reshape(dx, xl->ndim, xl->shape), axis, last);
    return 0;
}
static const ad_op OP_CUMPROD = {
    .name = "cumprod",
    .formula = "y_i = prod_{j <= i} x_j along an axis; "
               "dx_i = sum_{j >= i} g_j prod_{k <= j, k != i} x_k",
    .backward = cumprod_bw,
    .forward = cumprod_fw,
    .params_size = sizeof(axis_params),
};

static ad_tensor *cum_op(const char *fn, const ad_op *op, ad_tensor *x, int axis, bool reverse)
{
    int d;
    if (ad__check_arg(fn, "x", x, true) || ad__dim_of(fn, x, axis, &d)) return NULL;
    ad_tensor *out = ad__result(fn, 1, &x, x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    cum_kernel(x, out, d, op == &OP_CUMPROD, reverse);
    return ad__finish(out, 0, op, 1, &x, &(axis_params){d, reverse}, NULL);
}
static ad_tensor *cumsum_dir(ad_tensor *x, int axis, bool reverse)
{
    return cum_op("ad_cumsum", &OP_CUMSUM, x, axis, reverse);
}
ad_tensor *ad_cumsum(ad_tensor *x, int axis) { return cumsum_dir(x, axis, false); }
ad_tensor *ad__cumsum_reverse(ad_tensor *x, int axis) { return cumsum_dir(x, axis, true); }
ad_tensor *ad_cumprod(ad_tensor *x, int axis)
{
    return cum_op("ad_cumprod", &OP_CUMPROD, x, axis, false);
}

/* ---- tril / triu ----------------------------------------------------------------------
 * On the last two dimensions (a batch of matrices): element (i, j) is kept
 * when j - i <= k (tril) or j - i >= k (triu), zeroed otherwise.  Linear,
 * and its own adjoint's mask: dx = tril(g, k) / triu(g, k). */
typedef struct tri_params {
    int64_t k;
} tri_params;
static void tri_kernel(const ad_tensor *x, ad_tensor *out, int64_t k, bool lower)
{
    ad__copy_same(out, x);
    int64_t rows = x->shape[x->ndim - 2], cols = x->shape[x->ndim - 1];
    int64_t total = ad__numel(out->ndim, out->shape);
    size_t es = ad_dtype_size(out->dtype);
    char *o = out->storage->data;
    for (int64_t f = 0; f < total; f++) {
        int64_t j = f % cols, i = (f / cols) % rows;
        if (lower ? j - i > k : j - i < k) memset(o + (size_t)f * es, 0, es);
    }
}
static int tril_fw(ad_node *n)
{
    tri_kernel(n->in[0], n->out, ((const tri_params *)ad__params(n))->k, true);
    return 0;
}
static int triu_fw(ad_node *n)
{
    tri_kernel(n->in[0], n->out, ((const tri_params *)ad__params(n))->k, false);
    return 0;
}
static int tril_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_tril(g, ((const tri_params *)ad__params(n))->k);
    return 0;
}
static int triu_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_triu(g, ((const tri_params *)ad__params(n))->k);
    return 0;
}
static const ad_op OP_TRIL = {
    .name = "tril",
    .formula = "y_ij = x_ij [j - i <= k] on the last two dims; dx = tril(g, k)",
    .backward = tril_bw,
    .forward = tril_fw,
    .params_size = sizeof(tri_params),
};
static const ad_op OP_TRIU = {
    .name = "triu",
    .formula = "y_ij = x_ij [j - i >= k] on the last two dims; dx = triu(g, k)",
    .backward = triu_bw,
    .forward = triu_fw,
    .params_size = sizeof(tri_params),
};
static ad_tensor *tri_op(const char *fn, const ad_op *op, ad_tensor *x, int64_t k)
{
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    if (x->ndim < 2)
        return ad__err(fn, "expected a matrix or a batch of matrices (ndim >= 2), got %s",
                       ad__shape_str(x)), NULL;
    ad_tensor *out = ad__result(fn, 1, &x, x->dtype, x->ndim, x->shape);
    if (!out) return NULL;
    tri_kernel(x, out, k, op == &OP_TRIL);
    return ad__finish(out, 0, op, 1, &x, &(tri_params){k}, NULL);
}
ad_tensor *ad_tril(ad_tensor *x, int64_t k) { return tri_op("ad_tril", &OP_TRIL, x, k); }
ad_tensor *ad_triu(ad_tensor *x, int64_t k) { return tri_op("ad_triu", &OP_TRIU, x, k); }

/* ---- diagonal / diag_embed / diag ------------------------------------------------------
 * diagonal is a view of the last two dimensions' k-th diagonal: extent L,
 * stride s[-2] + s[-1].  Its adjoint writes g onto that diagonal of zeros:
 * diag_embed into x's (rows, cols), whose adjoint is diagonal again. */
typedef struct diag_params {
    int64_t k, rows, cols;
} diag_params;

/* Length of the k-th diagonal of a rows x cols matrix (0 when outside). */
static int64_t diag_len(int64_t rows, int64_t cols, int64_t k)
{
    int64_t l = k >= 0 ? (rows < cols - k ? rows : cols - k) : (rows + k < cols ? rows + k : cols);
    return l > 0 ? l : 0;
}

static ad_tensor *embed_core(const char *fn, ad_tensor *x, int64_t k, int64_t rows, int64_t cols);

static int diagonal_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const diag_params *p = ad__params(n);
    gin[0] = embed_core("ad_diagonal", g, p->k, p->rows, p->cols);
    return 0;
}
static const ad_op OP_DIAGONAL = {
    .name = "diagonal",
    .formula = "y[..., t] = x[..., t + max(-k, 0), t + max(k, 0)] (a view); "
               "dx = diag_embed(g, k) into x's last two extents",
    .backward = diagonal_bw,
    .forward = NULL,
    .params_size = sizeof(diag_params),
};
ad_tensor *ad_diagonal(ad_tensor *x, int64_t k)
{
    static const char *fn = "ad_diagonal";
    ad_tape *tape;
    if (ad__check_arg(fn, "x", x, false) || ad__result_tape(fn, 1, &x, &tape)) return NULL;
    if (x->ndim < 2)
        return ad__err(fn, "expected a matrix or a batch of matrices (ndim >= 2), got %s",
                       ad__shape_str(x)), NULL;
    int nd = x->ndim;
    int64_t rows = x->shape[nd - 2], cols = x->shape[nd - 1], shape[AD_MAX_DIMS],
            strides[AD_MAX_DIMS];
    int64_t len = diag_len(rows, cols, k);
    for (int d = 0; d < nd - 2; d++) shape[d] = x->shape[d], strides[d] = x->strides[d];
    shape[nd - 2] = len;
    strides[nd - 2] = x->strides[nd - 2] + x->strides[nd - 1];
    int64_t off = x->offset;
    if (len > 0) off += (k < 0 ? -k * x->strides[nd - 2] : k * x->strides[nd - 1]);
    diag_params p = {k, rows, cols};
    return ad__finish(ad__view(fn, tape, x, nd - 1, shape, strides, off), 0, &OP_DIAGONAL, 1,
                      &x, &p, NULL);
}

static void embed_kernel(const ad_tensor *x, ad_tensor *out, int64_t k)
{
    size_t bytes = (size_t)ad__numel(out->ndim, out->shape) * ad_dtype_size(out->dtype);
    memset(out->storage->data, 0, bytes);
    int last = x->ndim - 1;
    int64_t len = x->shape[last], st = x->strides[last], lines = len ? line_count(x, last) : 0;
    int64_t rows = out->shape[out->ndim - 2], cols = out->shape[out->ndim - 1];
    /* (-k only with a diagonal to place: k may be INT64_MIN when it is empty) */
    int64_t r0 = k < 0 && len ? -k : 0, c0 = k > 0 ? k : 0;
    /* each element copied as it is: through double, an int64 past 2^53 was
     * rounded and INT64_MAX became INT64_MIN */
    size_t es = ad_dtype_size(x->dtype);
    const char *src = (const char *)x->storage->data;
    char *dst = (char *)out->storage->data;
    for (int64_t b = 0; b < lines; b++) {
        int64_t off = line_offset(x, last, b);
        for (int64_t t = 0; t < len; t++)
            memcpy(dst + (size_t)(b * rows * cols + (r0 + t) * cols + c0 + t) * es,
                   src + (size_t)(off + t * st) * es, es);
    }
}
static int embed_fw(ad_node *n)
{
    embed_kernel(n->in[0], n->out, ((const diag_params *)ad__params(n))->k);
    return 0;
}
static int embed_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    gin[0] = ad_diagonal(g, ((const diag_params *)ad__params(n))->k);
    return 0;
}
static const ad_op OP_DIAG_EMBED = {
    .name = "diag_embed",
    .formula = "y[..., :, :] = zeros with x[..., t] at (t + max(-k, 0), t + max(k, 0)); "
               "dx = diagonal(g, k)",
    .backward = embed_bw,
    .forward = embed_fw,
    .params_size = sizeof(diag_params),
};
static ad_tensor *embed_core(const char *fn, ad_tensor *x, int64_t k, int64_t rows, int64_t cols)
{
    if (!x) return NULL;
    int64_t shape[AD_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = rows;
    shape[x->ndim] = cols;
    ad_tensor *out = ad__result(fn, 1, &x, x->dtype, x->ndim + 1, shape);
    if (!out) return NULL;
    embed_kernel(x, out, k);
    return ad__finish(out, 0, &OP_DIAG_EMBED, 1, &x, &(diag_params){k, rows, cols}, NULL);
}
ad_tensor *ad_diag_embed(ad_tensor *x, int64_t k)
{
    static const char *fn = "ad_diag_embed";
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    if (x->ndim < 1 || x->ndim >= AD_MAX_DIMS)
        return ad__err(fn, "expected 1 to %d dimensions, got %s", AD_MAX_DIMS - 1,
                       ad__shape_str(x)), NULL;
    if (k > INT32_MAX || k < -(int64_t)INT32_MAX)
        return ad__err(fn, "offset %lld out of range", (long long)k), NULL;
    int64_t n = x->shape[x->ndim - 1] + (k < 0 ? -k : k);
    return embed_core(fn, x, k, n, n);
}
ad_tensor *ad_diag(ad_tensor *x, int64_t k)
{
    static const char *fn = "ad_diag";
    if (ad__check_arg(fn, "x", x, false)) return NULL;
    /* (diag_embed's bound checked here, so that an error names this function) */
    if (x->ndim == 1 && (k > INT32_MAX || k < -(int64_t)INT32_MAX))
        return ad__err(fn, "offset %lld out of range", (long long)k), NULL;
    if (x->ndim == 1) return ad_diag_embed(x, k);
    if (x->ndim == 2) return ad_diagonal(x, k);
    return ad__err(fn, "expected a vector or a matrix, got %s (use ad_diagonal or "
                       "ad_diag_embed for batches)", ad__shape_str(x)), NULL;
}

/* ---- one_hot ------------------------------------------------------------------------ */
typedef struct one_hot_params {
    int64_t classes;
} one_hot_params;
/* The int64 label at idx, read as it is (through double, a label past 2^53
 * was rounded and INT64_MAX became INT64_MIN in the error message). */
static int64_t label_at(const ad_tensor *labels, const int64_t *idx)
{
    return ((const int64_t *)labels->storage->data)[ad__offset_of(labels, idx)];
}
/* 0 or the position of the first label outside [0, classes). */
static int one_hot_kernel(const char *fn, const ad_tensor *labels, ad_tensor *out, int64_t classes)
{
    int64_t total = ad__numel(labels->ndim, labels->shape), idx[AD_MAX_DIMS] = {0};
    memset(out->storage->data, 0, (size_t)(total * classes) * ad_dtype_size(out->dtype));
    for (int64_t f = 0; f < total; f++) {
        int64_t c = label_at(labels, idx);
        if (c < 0 || c >= classes)
            return ad__err(fn, "label %lld at position %lld is out of range for %lld classes",
                           (long long)c, (long long)f, (long long)classes);
        ad__st(out, f * classes + c, 1.0);
        for (int d = labels->ndim - 1; d >= 0 && ++idx[d] == labels->shape[d]; d--) idx[d] = 0;
    }
    return 0;
}
static int one_hot_fw(ad_node *n)
{
    const one_hot_params *p = ad__params(n);
    return one_hot_kernel(n->op->name, n->in[0], n->out, p->classes) ? -1 : 0;
}
static const ad_op OP_ONE_HOT = {
    .name = "one_hot",
    .formula = "y[..., c] = [labels[...] == c]; not differentiable (a constant)",
    .forward = one_hot_fw,
    .params_size = sizeof(one_hot_params),
};
ad_tensor *ad_one_hot(ad_tensor *labels, int64_t num_classes, ad_dtype dtype)
{
    static const char *fn = "ad_one_hot";
    if (ad__check_arg(fn, "labels", labels, false)) return NULL;
    if (labels->dtype != AD_INT64)
        return ad__errc(AD_ERR_DTYPE, fn, "labels must be int64, got %s",
                        ad_dtype_name(labels->dtype)), NULL;
    if (labels->ndim >= AD_MAX_DIMS)
        return ad__err(fn, "labels have %d dimensions; at most %d allowed", labels->ndim,
                       AD_MAX_DIMS - 1), NULL;
    if (dtype != AD_FLOAT32 && dtype != AD_FLOAT64 && dtype != AD_INT64)
        return ad__errc(AD_ERR_DTYPE, fn, "unknown dtype %d", (int)dtype), NULL;
    int64_t total = ad__numel(labels->ndim, labels->shape), idx[AD_MAX_DIMS] = {0};
    if (num_classes < 0) { /* inferred: max label + 1, as PyTorch's -1 */
        num_classes = 0;
        for (int64_t f = 0; f < total; f++) {
            int64_t c = label_at(labels, idx);
            if (c == INT64_MAX)
                return ad__err(fn, "label %lld at position %lld leaves no number of classes",
                               (long long)c, (long long)f), NULL;
            if (c + 1 > num_classes) num_classes = c + 1;
            for (int d = labels->ndim - 1; d >= 0 && ++idx[d] == labels->shape[d]; d--) idx[d] = 0;
        }
        if (total == 0)
            return ad__err(fn, "cannot infer the number of classes of empty labels %s",
                           ad__shape_str(labels)), NULL;
    }
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, labels->shape, (size_t)labels->ndim * sizeof *shape);
    shape[labels->ndim] = num_classes;
    ad_tensor *out = ad__result(fn, 1, &labels, dtype, labels->ndim + 1, shape);
    if (!out) return NULL;
    return ad__finish(out, one_hot_kernel(fn, labels, out, num_classes), &OP_ONE_HOT, 1, &labels,
                      &(one_hot_params){num_classes}, NULL);
}

/* ---- masked_fill: where(mask, value, x), a composition ------------------------------ */
ad_tensor *ad_masked_fill(ad_tensor *x, ad_tensor *mask, double value)
{
    static const char *fn = "ad_masked_fill";
    if (ad__check_arg(fn, "x", x, true) || ad__check_arg(fn, "mask", mask, false)) return NULL;
    int nd;
    int64_t shape[AD_MAX_DIMS];
    if (ad__broadcast(fn, mask->ndim, mask->shape, x->ndim, x->shape, &nd, shape) ||
        nd != x->ndim || memcmp(shape, x->shape, (size_t)nd * sizeof *shape))
        return ad__errc(AD_ERR_SHAPE, fn, "mask %s does not broadcast to x %s",
                        ad__shape_str(mask), ad__shape_str(x)), NULL;
    ad_scope s;
    ad_tensor *in[2] = {x, mask};
    if (ad_scope_begin(&s, fn, 2, in, false)) return NULL;
    ad_tensor *v = ad_scalar_tensor(s.tape, x->dtype, value);
    return ad_scope_end(&s, v ? ad_where(mask, v, x) : NULL);
}

const ad_op *const ad__ops_util[] = {
    &OP_ARGMAX, &OP_ARGMIN, &OP_ARGSORT, &OP_CUMSUM, &OP_CUMPROD, &OP_TRIL, &OP_TRIU,
    &OP_DIAGONAL, &OP_DIAG_EMBED, &OP_ONE_HOT, NULL,
};

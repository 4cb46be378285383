/* autodiff/ops_decomp.c - linear algebra with derivatives: solve,
 * triangular solve, inverse, log-determinant (and det, logdet on top),
 * Cholesky, symmetric eigendecomposition, QR; kernel, rule and formula
 * side by side, listed in ad__ops_decomp at the end.
 *
 * Every op works on the last two dimensions, batched over the others.
 * Each matrix is copied into a column-major double buffer (float32 is
 * computed in double and rounded once at the end), factored by
 * linalg_kernels.c (LAPACK or the built-in kernels), and copied out.
 *
 * The rules are written with these same ops (solve, solve_triangular,
 * inverse, matmul, tril, diagonal...), so second and higher derivatives
 * come out of AD_CREATE_GRAPH like for any other op.  The formulas are the
 * standard ones of matrix calculus:
 *   M. B. Giles, "Collected matrix derivative results for forward and
 *     reverse mode algorithmic differentiation", 2008 (solve, inverse,
 *     determinant, eigendecomposition);
 *   I. Murray, "Differentiation of the Cholesky decomposition", 2016;
 *   M. Seeger, A. Hetzel, Z. Dai, E. Meissner, N. Lawrence, "Auto-
 *     differentiating linear algebra", 2017, and S. F. Walter, L. Lehmann,
 *     "Algorithmic differentiation of linear algebra functions with
 *     application in optimum experimental design", 2018 (eigh, QR).
 * The ops that read one triangle of a symmetric input (cholesky, eigh)
 * return the symmetric gradient, as PyTorch does: the derivative along
 * symmetric perturbations, which is what a function of a symmetric matrix
 * built as (X + X^T) or X X^T passes back correctly. */
#include "internal.h"
#include "linalg_kernels.h"

/* ---- batches of matrices ------------------------------------------------------------- */
static int64_t batch_count(const ad_tensor *t) { return ad__numel(t->ndim - 2, t->shape); }

/* Storage offset of matrix b (row-major over the batch dimensions) of t. */
static int64_t mat_offset(const ad_tensor *t, int64_t b)
{
    int64_t off = t->offset;
    for (int d = t->ndim - 3; d >= 0; d--) {
        off += (b % t->shape[d]) * t->strides[d];
        b /= t->shape[d];
    }
    return off;
}

/* Matrix b of t (rows x cols, any strides) into buf, column-major. */
static void pack(const ad_tensor *t, int64_t b, double *buf)
{
    int64_t r = t->shape[t->ndim - 2], c = t->shape[t->ndim - 1];
    int64_t rs = t->strides[t->ndim - 2], cs = t->strides[t->ndim - 1], o = mat_offset(t, b);
    for (int64_t j = 0; j < c; j++)
        for (int64_t i = 0; i < r; i++) buf[i + j * r] = ad__ld(t, o + i * rs + j * cs);
}

/* The rows x cols column-major buf into rows row0.. of matrix b of out. */
static void unpack(ad_tensor *out, int64_t b, int64_t row0, int64_t rows, int64_t cols,
                   const double *buf)
{
    int64_t rs = out->strides[out->ndim - 2], cs = out->strides[out->ndim - 1];
    int64_t o = mat_offset(out, b) + row0 * rs;
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) ad__st(out, o + i * rs + j * cs, buf[i + j * rows]);
}

/* Scratch of `count` doubles (and n ints when piv is not NULL); NULL when
 * out of memory, so callers point into it only after checking (an offset
 * from a null pointer is undefined behaviour). */
static double *scratch(const char *fn, int64_t count, int n, int **piv)
{
    double *p = ad__malloc((size_t)(count > 0 ? count : 1) * sizeof *p);
    if (piv) *piv = ad__malloc((size_t)(n > 0 ? n : 1) * sizeof **piv);
    if (!p || (piv && !*piv)) {
        ad__free(p);
        if (piv) ad__free(*piv), *piv = NULL;
        ad__err(fn, "out of memory");
        return NULL;
    }
    return p;
}

/* x [..., n, n] of a floating dtype, n small enough for the kernels. */
static int check_square(const char *fn, const char *name, const ad_tensor *x)
{
    if (ad__check_arg(fn, name, x, true)) return -1;
    if (x->ndim < 2 || x->shape[x->ndim - 1] != x->shape[x->ndim - 2])
        return ad__errc(AD_ERR_SHAPE, fn, "%s must be a square matrix or a batch of them "
                        "([..., n, n]), got %s", name, ad__shape_str(x));
    if (x->shape[x->ndim - 1] > INT32_MAX / 64)
        return ad__errc(AD_ERR_SHAPE, fn, "%s %s is too large", name, ad__shape_str(x));
    return 0;
}

/* The error for a kernel's info (see linalg_kernels.h, 1-based): "the
 * matrix <what> (<step> <info - base>)", or "matrix <b> of the batch ..."
 * for a batch; step NULL leaves the parenthesis out. */
static int singular(const char *fn, int64_t b, int64_t batch, int info, const char *what,
                    const char *step, int base)
{
    if (info < 0) return ad__err(fn, "out of memory");
    char where[48] = "the matrix";
    if (batch > 1) snprintf(where, sizeof where, "matrix %lld of the batch", (long long)b);
    if (!step) return ad__errc(AD_ERR_NUMERIC, fn, "%s %s", where, what);
    return ad__errc(AD_ERR_NUMERIC, fn, "%s %s (%s %d)", where, what, step, info - base);
}

/* 0 when the count values of a are finite; iterative solvers (eigh, svd)
 * are not given NaN or inf, on which LAPACK may return garbage quietly. */
static int check_finite(const char *fn, int64_t b, int64_t batch, const double *a, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        if (!isfinite(a[i])) return singular(fn, b, batch, 1, "has non-finite entries", NULL, 0);
    return 0;
}

static ad_tensor *tr(ad_tensor *x) { return ad_transpose(x, -2, -1); }

/* ---- solve: X = A^-1 B -------------------------------------------------------------- */
static int solve_kernel(const char *fn, const ad_tensor *A, const ad_tensor *B, ad_tensor *X)
{
    int n = (int)A->shape[A->ndim - 1], *piv;
    int64_t k = B->shape[B->ndim - 1], nb = batch_count(A);
    double *a = scratch(fn, (int64_t)n * n + (int64_t)n * k, n, &piv);
    if (!a) return -1;
    double *b = a + (int64_t)n * n;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        pack(B, i, b);
        int info = ad__lu(n, a, piv);
        if (info) rc = singular(fn, i, nb, info, "is singular", "zero pivot in column", 1);
        else {
            ad__lu_solve(n, (int)k, a, piv, b);
            unpack(X, i, 0, n, k, b);
        }
    }
    ad__free(a);
    ad__free(piv);
    return rc;
}
static ad_tensor *solve_core(const char *fn, ad_tensor *A, ad_tensor *B);
/* Giles 2008, 2.3.1: C = A^-1 B gives dB = A^-T G and dA = -dB C^T. */
static int solve_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *gB = solve_core("ad_linalg_solve", tr(n->in[0]), g);
    if (ad__needs_grad(n, 0)) gin[0] = ad_neg(ad_matmul(gB, tr(n->out)));
    if (ad__needs_grad(n, 1)) gin[1] = gB;
    return gB ? 0 : -1;
}
static int solve_fw(ad_node *n) { return solve_kernel(n->op->name, n->in[0], n->in[1], n->out); }
static const ad_op OP_SOLVE = {
    .name = "linalg_solve",
    .formula = "X = A^-1 B; dB = A^-T G, dA = -dB X^T (Giles 2008)",
    .backward = solve_bw,
    .forward = solve_fw,
};
static ad_tensor *solve_core(const char *fn, ad_tensor *A, ad_tensor *B)
{
    if (!A || !B) return NULL;
    ad_tensor *in[2] = {A, B};
    ad_tensor *X = ad__result(fn, 2, in, A->dtype, B->ndim, B->shape);
    if (!X) return NULL;
    return ad__finish(X, solve_kernel(fn, A, B, X), &OP_SOLVE, 2, in, NULL, NULL);
}

/* ---- solve_triangular: X = T^-1 B for T's upper or lower triangle ---------------------- */
typedef struct tri_params {
    bool upper, unit;
} tri_params;
static int trsolve_kernel(const char *fn, const ad_tensor *A, const ad_tensor *B, ad_tensor *X,
                          const tri_params *p)
{
    int n = (int)A->shape[A->ndim - 1];
    int64_t k = B->shape[B->ndim - 1], nb = batch_count(A);
    double *a = scratch(fn, (int64_t)n * n + (int64_t)n * k, n, NULL);
    if (!a) return -1;
    double *b = a + (int64_t)n * n;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        pack(B, i, b);
        int info = ad__trsolve(n, (int)k, a, p->upper, p->unit, b);
        if (info) rc = singular(fn, i, nb, info, "is singular", "zero on the diagonal at", 1);
        else unpack(X, i, 0, n, k, b);
    }
    ad__free(a);
    return rc;
}
static ad_tensor *trsolve_core(const char *fn, ad_tensor *A, ad_tensor *B, tri_params p);
/* As solve's rule with T^T (the other triangle) for A^T; dT keeps only the
 * entries the forward read: the triangle, without the diagonal when it
 * is taken as ones. */
static int trsolve_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    const tri_params *p = ad__params(n);
    ad_tensor *gB = trsolve_core("ad_linalg_solve_triangular", tr(n->in[0]), g,
                                 (tri_params){!p->upper, p->unit});
    if (ad__needs_grad(n, 0)) {
        ad_tensor *full = ad_neg(ad_matmul(gB, tr(n->out)));
        gin[0] = p->upper ? ad_triu(full, p->unit ? 1 : 0) : ad_tril(full, p->unit ? -1 : 0);
    }
    if (ad__needs_grad(n, 1)) gin[1] = gB;
    return gB ? 0 : -1;
}
static int trsolve_fw(ad_node *n)
{
    return trsolve_kernel(n->op->name, n->in[0], n->in[1], n->out, ad__params(n));
}
static const ad_op OP_TRSOLVE = {
    .name = "solve_triangular",
    .formula = "X = T^-1 B, T a triangle of A; dB = T^-T G, dA = tri(-dB X^T)",
    .backward = trsolve_bw,
    .forward = trsolve_fw,
    .params_size = sizeof(tri_params),
};
static ad_tensor *trsolve_core(const char *fn, ad_tensor *A, ad_tensor *B, tri_params p)
{
    if (!A || !B) return NULL;
    ad_tensor *in[2] = {A, B};
    ad_tensor *X = ad__result(fn, 2, in, A->dtype, B->ndim, B->shape);
    if (!X) return NULL;
    return ad__finish(X, trsolve_kernel(fn, A, B, X, &p), &OP_TRSOLVE, 2, in, &p, NULL);
}

/* A [..., n, n] and B [..., n, k] (or B [n]: one right-hand side; for
 * solve also B [..., n] of A's batch dimensions exactly, a right-hand side
 * per matrix, torch.linalg.solve's rule) with their batch dimensions
 * broadcast, then the core; a vector B gives a vector.  Composed in a
 * scope when views are needed. */
static ad_tensor *solve_like(const char *fn, ad_tensor *A, ad_tensor *B, bool triangular,
                             tri_params p)
{
    if (check_square(fn, "A", A) || ad__check_arg(fn, "B", B, true) ||
        ad__check_same_dtype(fn, A, B))
        return NULL;
    int64_t n = A->shape[A->ndim - 1];
    bool vec = B->ndim == 1 ||
               (!triangular && B->ndim == A->ndim - 1 &&
                !memcmp(A->shape, B->shape, (size_t)B->ndim * sizeof(int64_t)));
    if (B->ndim < 1 || B->shape[vec ? B->ndim - 1 : B->ndim - 2] != n)
        return ad__errc(AD_ERR_SHAPE, fn, "B must be [..., %lld, k] or [%lld] for A %s, got %s",
                        (long long)n, (long long)n, ad__shape_str(A), ad__shape_str(B)), NULL;
    int nbatch;
    int64_t batch[AD_MAX_DIMS];
    if (ad__broadcast(fn, A->ndim - 2, A->shape, vec ? B->ndim - 1 : B->ndim - 2, B->shape,
                      &nbatch, batch))
        return ad__errc(AD_ERR_SHAPE, fn, "batch dimensions of A %s and B %s cannot be broadcast",
                        ad__shape_str(A), ad__shape_str(B)), NULL;
    bool plain = !vec && A->ndim == B->ndim &&
                 !memcmp(A->shape, B->shape, (size_t)(A->ndim - 2) * sizeof(int64_t));
    if (plain) return triangular ? trsolve_core(fn, A, B, p) : solve_core(fn, A, B);
    ad_scope s;
    ad_tensor *in[2] = {A, B};
    if (ad_scope_begin(&s, fn, 2, in, false)) return NULL;
    int64_t k = vec ? 1 : B->shape[B->ndim - 1], sa[AD_MAX_DIMS], sb[AD_MAX_DIMS];
    memcpy(sa, batch, (size_t)nbatch * sizeof *sa);
    memcpy(sb, batch, (size_t)nbatch * sizeof *sb);
    sa[nbatch] = sa[nbatch + 1] = sb[nbatch] = n;
    sb[nbatch + 1] = k;
    ad_tensor *Ab = ad_expand(A, nbatch + 2, sa);
    ad_tensor *Bb = ad_expand(vec ? ad_unsqueeze(B, B->ndim) : B, nbatch + 2, sb);
    ad_tensor *X = triangular ? trsolve_core(fn, Ab, Bb, p) : solve_core(fn, Ab, Bb);
    if (X && vec) X = ad_squeeze(X, -1); /* [..., n, 1] -> [..., n] */
    return ad_scope_end(&s, X);
}

ad_tensor *ad_linalg_solve(ad_tensor *A, ad_tensor *B)
{
    return solve_like("ad_linalg_solve", A, B, false, (tri_params){false, false});
}

ad_tensor *ad_linalg_solve_triangular(ad_tensor *A, ad_tensor *B, bool upper, bool left,
                                      bool unitriangular)
{
    static const char *fn = "ad_linalg_solve_triangular";
    if (left) return solve_like(fn, A, B, true, (tri_params){upper, unitriangular});
    /* X A = B  <=>  A^T X^T = B^T, A^T's triangle being the other one */
    if (check_square(fn, "A", A) || ad__check_arg(fn, "B", B, true)) return NULL;
    if (B->ndim < 2 || B->shape[B->ndim - 1] != A->shape[A->ndim - 1])
        return ad__errc(AD_ERR_SHAPE, fn, "B must be [..., k, %lld] for A %s when left is "
                        "false, got %s", (long long)A->shape[A->ndim - 1], ad__shape_str(A),
                        ad__shape_str(B)), NULL;
    ad_scope s;
    ad_tensor *in[2] = {A, B};
    if (ad_scope_begin(&s, fn, 2, in, false)) return NULL;
    ad_tensor *Xt = solve_like(fn, tr(A), tr(B), true, (tri_params){!upper, unitriangular});
    return ad_scope_end(&s, Xt ? tr(Xt) : NULL);
}

/* ---- inverse ------------------------------------------------------------------------ */
static int inv_kernel(const char *fn, const ad_tensor *A, ad_tensor *Y)
{
    int n = (int)A->shape[A->ndim - 1], *piv;
    int64_t nb = batch_count(A);
    double *a = scratch(fn, 2 * (int64_t)n * n, n, &piv);
    if (!a) return -1;
    double *b = a + (int64_t)n * n;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        int info = ad__lu(n, a, piv);
        if (info) rc = singular(fn, i, nb, info, "is singular", "zero pivot in column", 1);
        else {
            for (int64_t e = 0; e < (int64_t)n * n; e++) b[e] = e % (n + 1) == 0;
            ad__lu_solve(n, n, a, piv, b);
            unpack(Y, i, 0, n, n, b);
        }
    }
    ad__free(a);
    ad__free(piv);
    return rc;
}
/* Giles 2008, 2.2.3: dA = -Y^T G Y^T with Y = A^-1. */
static int inv_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *yt = tr(n->out);
    gin[0] = ad_neg(ad_matmul(ad_matmul(yt, g), yt));
    return 0;
}
static int inv_fw(ad_node *n) { return inv_kernel(n->op->name, n->in[0], n->out); }
static const ad_op OP_INV = {
    .name = "linalg_inv",
    .formula = "Y = A^-1; dA = -Y^T G Y^T (Giles 2008)",
    .backward = inv_bw,
    .forward = inv_fw,
};
ad_tensor *ad_linalg_inv(ad_tensor *A)
{
    static const char *fn = "ad_linalg_inv";
    if (check_square(fn, "A", A)) return NULL;
    ad_tensor *Y = ad__result(fn, 1, &A, A->dtype, A->ndim, A->shape);
    if (!Y) return NULL;
    return ad__finish(Y, inv_kernel(fn, A, Y), &OP_INV, 1, &A, NULL, NULL);
}

/* ---- slogdet: log|det A| and the sign of det A ------------------------------------------
 * From A's LU factors: |det A| = prod |U_ii|, and the sign is the product
 * of the signs of U_ii and (-1) per row swap.  A singular A gives -inf and
 * sign 0. */
static int logdet_kernel(const char *fn, const ad_tensor *A, ad_tensor *out, bool want_sign)
{
    int n = (int)A->shape[A->ndim - 1], *piv;
    int64_t nb = batch_count(A);
    double *a = scratch(fn, (int64_t)n * n, n, &piv);
    if (!a) return -1;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        int info = ad__lu(n, a, piv);
        double logabs = 0, sign = 1;
        if (info < 0) rc = ad__err(fn, "out of memory");
        else if (info > 0) logabs = -INFINITY, sign = 0;
        else
            for (int k = 0; k < n; k++) {
                double u = a[k + (int64_t)k * n];
                logabs += log(fabs(u));
                if ((u < 0) != (piv[k] != k)) sign = -sign;
            }
        ad__st(out, out->offset + i, want_sign ? sign : logabs);
    }
    ad__free(a);
    ad__free(piv);
    return rc;
}
/* Giles 2008, 2.2.4: d log|det A| = tr(A^-1 dA), so dA = g A^-T. */
static int slogdet_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *g2 = ad_unsqueeze(ad_unsqueeze(g, -1), -1);
    gin[0] = ad_mul(g2, tr(ad_linalg_inv(n->in[0])));
    return 0;
}
static int slogdet_fw(ad_node *n) { return logdet_kernel(n->op->name, n->in[0], n->out, false); }
static int det_sign_fw(ad_node *n) { return logdet_kernel(n->op->name, n->in[0], n->out, true); }
static const ad_op OP_SLOGDET = {
    .name = "slogdet",
    .formula = "y = log|det A|; dA = g A^-T (Giles 2008)",
    .backward = slogdet_bw,
    .forward = slogdet_fw,
};
static const ad_op OP_DET_SIGN = {
    .name = "det_sign",
    .formula = "s = sign(det A) in {-1, 0, 1}; not differentiable (a constant)",
    .forward = det_sign_fw,
};
static ad_tensor *logdet_op(const char *fn, const ad_op *op, ad_tensor *A)
{
    ad_tensor *out = ad__result(fn, 1, &A, A->dtype, A->ndim - 2, A->shape);
    if (!out) return NULL;
    return ad__finish(out, logdet_kernel(fn, A, out, op == &OP_DET_SIGN), op, 1, &A, NULL, NULL);
}

int ad_linalg_slogdet(ad_tensor *A, ad_tensor **sign, ad_tensor **logabsdet)
{
    static const char *fn = "ad_linalg_slogdet";
    if (sign) *sign = NULL;
    if (logabsdet) *logabsdet = NULL;
    if (!logabsdet) return ad__err(fn, "argument 'logabsdet' is NULL");
    if (check_square(fn, "A", A)) return -1;
    ad_tensor *s = NULL, *l = logdet_op(fn, &OP_SLOGDET, A);
    if (l && sign && !(s = logdet_op(fn, &OP_DET_SIGN, A))) {
        if (!l->tape) ad_tensor_free(l);
        return -1;
    }
    if (!l) return -1;
    *logabsdet = l;
    if (sign) *sign = s;
    return 0;
}

/* det = sign exp(log|det|) and logdet = log|det| + log(sign) (NaN for a
 * negative determinant, -inf for 0), composed so the gradient is
 * slogdet's: d det = det tr(A^-1 dA). */
static ad_tensor *det_compose(const char *fn, ad_tensor *A, bool log_form)
{
    if (check_square(fn, "A", A)) return NULL;
    ad_scope s;
    if (ad_scope_begin(&s, fn, 1, &A, false)) return NULL;
    ad_tensor *sg = logdet_op(fn, &OP_DET_SIGN, A), *l = logdet_op(fn, &OP_SLOGDET, A);
    ad_tensor *r = log_form ? ad_add(l, ad_log(sg)) : ad_mul(sg, ad_exp(l));
    return ad_scope_end(&s, r);
}
ad_tensor *ad_linalg_det(ad_tensor *A) { return det_compose("ad_linalg_det", A, false); }
ad_tensor *ad_logdet(ad_tensor *A) { return det_compose("ad_logdet", A, true); }

/* ---- cholesky: A = L L^T ----------------------------------------------------------------- */
static int chol_kernel(const char *fn, const ad_tensor *A, ad_tensor *L)
{
    int n = (int)A->shape[A->ndim - 1];
    int64_t nb = batch_count(A);
    double *a = scratch(fn, (int64_t)n * n, n, NULL);
    if (!a) return -1;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        int info = ad__cholesky(n, a);
        if (info) rc = singular(fn, i, nb, info, "is not positive definite",
                                   "the leading minor that is not has order", 0);
        else unpack(L, i, 0, n, n, a);
    }
    ad__free(a);
    return rc;
}
/* Murray 2016, eq. 10, in its symmetric form (as PyTorch):
 *   P = Phi(L^T G), Phi = the lower triangle with the diagonal halved,
 *   dA = L^-T sym(P) L^-1,  sym(P) = (P + P^T) / 2,
 * the two triangular solves done by solve_triangular. */
static int chol_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *L = n->out;
    ad_tensor *M = ad_tril(ad_matmul(tr(L), g), 0);
    ad_tensor *S = ad_mul_scalar(ad_add(M, tr(ad_tril(M, -1))), 0.5);
    /* L^-T S, then (L^-T S) L^-1 = (L^-T (L^-T S)^T)^T */
    ad_tensor *X = trsolve_core("ad_linalg_cholesky", tr(L), S, (tri_params){true, false});
    ad_tensor *Y = trsolve_core("ad_linalg_cholesky", tr(L), X ? tr(X) : NULL,
                                (tri_params){true, false});
    gin[0] = Y ? tr(Y) : NULL;
    return Y ? 0 : -1;
}
static int chol_fw(ad_node *n) { return chol_kernel(n->op->name, n->in[0], n->out); }
static const ad_op OP_CHOLESKY = {
    .name = "cholesky",
    .formula = "A = L L^T, L lower; dA = L^-T sym(Phi(L^T G)) L^-1 (Murray 2016)",
    .backward = chol_bw,
    .forward = chol_fw,
};
ad_tensor *ad_linalg_cholesky(ad_tensor *A)
{
    static const char *fn = "ad_linalg_cholesky";
    if (check_square(fn, "A", A)) return NULL;
    ad_tensor *L = ad__result(fn, 1, &A, A->dtype, A->ndim, A->shape);
    if (!L) return NULL;
    return ad__finish(L, chol_kernel(fn, A, L), &OP_CHOLESKY, 1, &A, NULL, NULL);
}

/* ---- eigh: A = V diag(w) V^T ---------------------------------------------------------------
 * One op with one output [..., n+1, n]: row 0 holds the eigenvalues w,
 * rows 1..n the eigenvectors V (as columns); ad_linalg_eigh hands out
 * views of the two parts, so their gradients arrive together in G. */
static int eigh_kernel(const char *fn, const ad_tensor *A, ad_tensor *out)
{
    int n = (int)A->shape[A->ndim - 1];
    int64_t nb = batch_count(A);
    double *a = scratch(fn, (int64_t)n * n + n, n, NULL);
    if (!a) return -1;
    double *w = a + (int64_t)n * n;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        /* only the lower triangle is read (column-major: rows j..n-1 of
         * column j), so only it must be finite, as in PyTorch */
        for (int j = 0; j < n && !rc; j++)
            rc = check_finite(fn, i, nb, a + (int64_t)j * n + j, n - j);
        if (rc) break;
        int info = ad__eigh(n, a, w);
        if (info)
            rc = singular(fn, i, nb, info, "has no eigendecomposition: the solver did not "
                          "converge (non-finite entries?)", NULL, 0);
        else {
            unpack(out, i, 0, 1, n, w);
            unpack(out, i, 1, n, n, a);
        }
    }
    ad__free(a);
    return rc;
}
/* Giles 2008, 3.1, and Seeger et al. 2017 / Walter & Lehmann 2018 for the
 * symmetric case: with M = V^T G_V,
 *   dA = V (diag(G_w) + F o (M - M^T)/2) V^T,  F_ij = 1 / (w_j - w_i), F_ii = 0.
 * Taking the antisymmetric part of M first makes dA symmetric.  F is
 * infinite for repeated eigenvalues: the gradient is defined (and correct)
 * only when the eigenvalues are distinct, unless the loss does not depend
 * on the eigenvectors of the repeated ones (then G_V's part there is 0
 * but 0 * inf is still NaN, as in PyTorch when V is used elsewhere; when
 * the loss uses no eigenvector at all, vectors_unused takes the shortened
 * rule). */
/* Whether the caller took the vectors (eigh's V, svd's U and Vh): when
 * not, their gradient is known to be zero and the rule leaves out the
 * terms with 1/(w_j - w_i) or 1/S, which are inf for repeated eigenvalues
 * or zero singular values and would turn 0 into NaN.  The shortened rule
 * still reads the vectors; when it is being recorded (create-graph), it
 * takes them from a new decomposition that hands them out, so that the
 * next derivative flows through them by the full rule. */
typedef struct vec_params {
    bool vectors;
} vec_params;

/* Whether the vectors were taken but the loss does not use them: their
 * part of the incoming gradient zero in every entry, on a pass that is not
 * recorded.  The shortened rule then gives what the full one gives where
 * that is finite, and a finite gradient where the full one's 0 * inf is
 * NaN, as PyTorch's rule does when the vectors' gradient is undefined.  A
 * recorded (create-graph) pass keeps the full rule: a derivative with
 * respect to the incoming gradient needs its graph. */
static bool vectors_unused(ad_tensor *const *gv, int n)
{
    if (ad_grad_enabled()) return false;
    for (int i = 0; i < n; i++) {
        ad_tensor *mx = ad_max_all(ad_abs(gv[i]));
        if (!mx || !(ad_item(mx) == 0)) return false; /* NaN: the full rule */
    }
    return true;
}

static int eigh_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *P = n->out;
    int64_t m = P->shape[P->ndim - 1];
    ad_tensor *w = ad_narrow(P, -2, 0, 1), *V = ad_narrow(P, -2, 1, m);
    ad_tensor *gw = ad_squeeze(ad_narrow(g, -2, 0, 1), -2), *gV = ad_narrow(g, -2, 1, m);
    if (!((const vec_params *)ad__params(n))->vectors || vectors_unused(&gV, 1)) {
        ad_tensor *w2;
        if (ad_grad_enabled() && ad_linalg_eigh(n->in[0], &w2, &V)) return -1;
        gin[0] = ad_matmul(ad_mul(V, ad_unsqueeze(gw, -2)), tr(V)); /* V diag(g_w) V^T */
        return 0;
    }
    ad_tensor *M = ad_matmul(tr(V), gV);
    ad_tensor *skew = ad_mul_scalar(ad_sub(M, tr(M)), 0.5);
    ad_tensor *eye = ad_eye(n->out->tape, P->dtype, m);
    ad_tensor *E = ad_add(ad_sub(w, tr(w)), eye); /* w_j - w_i, 1 on the diagonal */
    ad_tensor *zero = ad_scalar_tensor(n->out->tape, P->dtype, 0.0);
    ad_tensor *F = ad_add(ad_where(eye, zero, ad_div(skew, E)), ad_diag_embed(gw, 0));
    gin[0] = ad_matmul(ad_matmul(V, F), tr(V));
    return 0;
}
static int eigh_fw(ad_node *n) { return eigh_kernel(n->op->name, n->in[0], n->out); }
static const ad_op OP_EIGH = {
    .name = "eigh",
    .formula = "A = V diag(w) V^T; dA = V (diag(g_w) + F o skew(V^T g_V)) V^T, "
               "F_ij = 1/(w_j - w_i) (Giles 2008)",
    .backward = eigh_bw,
    .forward = eigh_fw,
    .params_size = sizeof(vec_params),
};

/* Hands out two parts of a packed result made in scope s: views on a tape,
 * or persistent copies when the scope's tape is a scratch one. */
static int two_results(ad_scope *s, ad_tensor *a, ad_tensor *b, ad_tensor **pa, ad_tensor **pb)
{
    int rc = a && b ? 0 : -1;
    if (!rc && s->scratch) {
        a = pa ? ad__copy(NULL, a) : NULL;
        b = ad__copy(NULL, b);
        if ((pa && !a) || !b) {
            ad_tensor_free(a), ad_tensor_free(b);
            rc = -1;
        }
    }
    ad_scope_end(s, NULL);
    if (rc) return -1;
    if (pa) *pa = a;
    *pb = b;
    return 0;
}

int ad_linalg_eigh(ad_tensor *A, ad_tensor **eigenvalues, ad_tensor **eigenvectors)
{
    static const char *fn = "ad_linalg_eigh";
    if (eigenvalues) *eigenvalues = NULL;
    if (eigenvectors) *eigenvectors = NULL;
    if (!eigenvalues) return ad__err(fn, "argument 'eigenvalues' is NULL");
    if (check_square(fn, "A", A)) return -1;
    int64_t n = A->shape[A->ndim - 1], shape[AD_MAX_DIMS];
    memcpy(shape, A->shape, (size_t)A->ndim * sizeof *shape);
    shape[A->ndim - 2] = n + 1;
    ad_scope s;
    if (ad_scope_begin(&s, fn, 1, &A, false)) return -1;
    ad_tensor *P = ad__result(fn, 1, &A, A->dtype, A->ndim, shape);
    vec_params vp = {eigenvectors != NULL};
    if (P) P = ad__finish(P, eigh_kernel(fn, A, P), &OP_EIGH, 1, &A, &vp, NULL);
    ad_tensor *w = P ? ad_squeeze(ad_narrow(P, -2, 0, 1), -2) : NULL;
    ad_tensor *V = P ? ad_narrow(P, -2, 1, n) : NULL;
    return two_results(&s, V, w, eigenvectors, eigenvalues);
}

/* ---- qr: A = Q R (reduced) --------------------------------------------------------------------
 * One op with one output [..., m+n, n]: Q in rows 0..m-1, R below it. */
static int qr_kernel(const char *fn, const ad_tensor *A, ad_tensor *out)
{
    int m = (int)A->shape[A->ndim - 2], n = (int)A->shape[A->ndim - 1];
    int64_t nb = batch_count(A);
    double *a = scratch(fn, (int64_t)m * n + (int64_t)n * n, n, NULL);
    if (!a) return -1;
    double *r = a + (int64_t)m * n;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        if (ad__qr(m, n, a, r)) rc = ad__err(fn, "out of memory");
        unpack(out, i, 0, m, n, a);
        unpack(out, i, m, n, n, r);
    }
    ad__free(a);
    return rc;
}
/* Walter & Lehmann 2018 (and Seeger et al. 2017), for m >= n:
 *   M = R G_R^T - G_Q^T Q,  dA = (G_Q + Q copyltu(M)) R^-T,
 * copyltu(M) = tril(M) + tril(M, -1)^T (the lower triangle mirrored).
 * R^-T is a triangular solve, so R must be invertible (A of full column
 * rank). */
static int qr_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *P = n->out;
    int64_t cols = P->shape[P->ndim - 1], rows = P->shape[P->ndim - 2] - cols;
    ad_tensor *Q = ad_narrow(P, -2, 0, rows), *R = ad_narrow(P, -2, rows, cols);
    ad_tensor *gQ = ad_narrow(g, -2, 0, rows), *gR = ad_narrow(g, -2, rows, cols);
    ad_tensor *M = ad_sub(ad_matmul(R, tr(gR)), ad_matmul(tr(gQ), Q));
    ad_tensor *C = ad_add(ad_tril(M, 0), tr(ad_tril(M, -1)));
    ad_tensor *B = ad_add(gQ, ad_matmul(Q, C));
    /* B R^-T = (R^-1 B^T)^T */
    ad_tensor *X = trsolve_core("ad_linalg_qr", R, B ? tr(B) : NULL, (tri_params){true, false});
    gin[0] = X ? tr(X) : NULL;
    return X ? 0 : -1;
}
static int qr_fw(ad_node *n) { return qr_kernel(n->op->name, n->in[0], n->out); }
static const ad_op OP_QR = {
    .name = "qr",
    .formula = "A = Q R (reduced, diag R >= 0); dA = (G_Q + Q copyltu(R G_R^T - G_Q^T Q)) R^-T "
               "(Walter & Lehmann 2018)",
    .backward = qr_bw,
    .forward = qr_fw,
};

int ad_linalg_qr(ad_tensor *A, ad_tensor **Q, ad_tensor **R)
{
    static const char *fn = "ad_linalg_qr";
    if (Q) *Q = NULL;
    if (R) *R = NULL;
    if (!Q || !R) return ad__err(fn, "arguments 'Q' and 'R' must not be NULL");
    if (ad__check_arg(fn, "A", A, true)) return -1;
    if (A->ndim < 2 || A->shape[A->ndim - 2] < A->shape[A->ndim - 1])
        return ad__errc(AD_ERR_SHAPE, fn, "A must be [..., m, n] with m >= n (the reduced QR "
                        "of a tall or square matrix), got %s", ad__shape_str(A));
    int64_t m = A->shape[A->ndim - 2], n = A->shape[A->ndim - 1], shape[AD_MAX_DIMS];
    if (m > INT32_MAX / 64 || n > INT32_MAX / 64)
        return ad__errc(AD_ERR_SHAPE, fn, "A %s is too large", ad__shape_str(A));
    memcpy(shape, A->shape, (size_t)A->ndim * sizeof *shape);
    shape[A->ndim - 2] = m + n;
    ad_scope s;
    if (ad_scope_begin(&s, fn, 1, &A, false)) return -1;
    ad_tensor *P = ad__result(fn, 1, &A, A->dtype, A->ndim, shape);
    if (P) P = ad__finish(P, qr_kernel(fn, A, P), &OP_QR, 1, &A, NULL, NULL);
    ad_tensor *q = P ? ad_narrow(P, -2, 0, m) : NULL, *r = P ? ad_narrow(P, -2, m, n) : NULL;
    return two_results(&s, q, r, Q, R);
}

/* ---- svd: A = U diag(S) V^T (reduced) --------------------------------------------------------
 * One op with one output [..., m+1+n, k], k = min(m, n): U in rows
 * 0..m-1, S in row m, V in rows m+1..m+n. */
static int svd_kernel(const char *fn, const ad_tensor *A, ad_tensor *out)
{
    int m = (int)A->shape[A->ndim - 2], n = (int)A->shape[A->ndim - 1], k = m < n ? m : n;
    int64_t nb = batch_count(A);
    double *a = scratch(fn, (int64_t)m * n + (int64_t)(m + n + 1) * k, n, NULL);
    if (!a) return -1;
    double *u = a + (int64_t)m * n, *s = u + (int64_t)m * k, *v = s + k;
    int rc = 0;
    for (int64_t i = 0; i < nb && !rc; i++) {
        pack(A, i, a);
        if ((rc = check_finite(fn, i, nb, a, (int64_t)m * n))) break;
        int info = ad__svd(m, n, a, u, s, v);
        if (info)
            rc = singular(fn, i, nb, info, "has no SVD: the solver did not converge "
                          "(non-finite entries?)", NULL, 0);
        else {
            unpack(out, i, 0, m, k, u);
            unpack(out, i, m, 1, k, s);
            unpack(out, i, m + 1, n, k, v);
        }
    }
    ad__free(a);
    return rc;
}
/* The reduced SVD's adjoint (Townsend 2016, "Differentiating the singular
 * value decomposition"; Seeger et al. 2017), as PyTorch writes it:
 *   dA = U [skew(U^T G_U)/E S + S skew(V^T G_V)/E + diag(G_S)] V^T
 *      + (I - U U^T) G_U S^-1 V^T + U S^-1 G_V^T (I - V V^T),
 * skew(X) = X - X^T, E_ij = S_j^2 - S_i^2 (1 on the diagonal).  Defined
 * for distinct, non-zero singular values when U or V is used; through S
 * alone it is U diag(G_S) V^T, always defined. */
static int svd_bw(ad_node *n, ad_tensor *g, ad_tensor **gin)
{
    ad_tensor *P = n->out;
    int64_t k = P->shape[P->ndim - 1], m = n->in[0]->shape[n->in[0]->ndim - 2];
    int64_t cols = n->in[0]->shape[n->in[0]->ndim - 1];
    ad_tensor *U = ad_narrow(P, -2, 0, m), *S = ad_narrow(P, -2, m, 1),
              *V = ad_narrow(P, -2, m + 1, cols);
    ad_tensor *gU = ad_narrow(g, -2, 0, m), *gS = ad_narrow(g, -2, m, 1),
              *gV = ad_narrow(g, -2, m + 1, cols);
    if (!((const vec_params *)ad__params(n))->vectors ||
        vectors_unused((ad_tensor *[]){gU, gV}, 2)) {
        ad_tensor *S2, *Vh;
        if (!ad_grad_enabled()) Vh = tr(V);
        else if (ad_linalg_svd(n->in[0], &U, &S2, &Vh)) return -1;
        gin[0] = ad_matmul(ad_mul(U, gS), Vh); /* U diag(g_S) V^T */
        return 0;
    }
    ad_tensor *S2 = ad_square(S), *eye = ad_eye(n->out->tape, P->dtype, k);
    ad_tensor *E = ad_add(ad_sub(S2, tr(S2)), eye);
    ad_tensor *UgU = ad_matmul(tr(U), gU), *VgV = ad_matmul(tr(V), gV);
    ad_tensor *J = ad_div(ad_sub(UgU, tr(UgU)), E), *K = ad_div(ad_sub(VgV, tr(VgV)), E);
    ad_tensor *inner = ad_add(ad_add(ad_mul(J, S), ad_mul(tr(S), K)),
                              ad_diag_embed(ad_squeeze(gS, -2), 0));
    ad_tensor *Sinv = ad_reciprocal(S);
    ad_tensor *t1 = ad_matmul(ad_matmul(U, inner), tr(V));
    ad_tensor *t2 = ad_matmul(ad_mul(ad_sub(gU, ad_matmul(U, UgU)), Sinv), tr(V));
    ad_tensor *t3 = ad_matmul(U, tr(ad_mul(ad_sub(gV, ad_matmul(V, VgV)), Sinv)));
    gin[0] = ad_add(ad_add(t1, t2), t3);
    return 0;
}
static int svd_fw(ad_node *n) { return svd_kernel(n->op->name, n->in[0], n->out); }
static const ad_op OP_SVD = {
    .name = "svd",
    .formula = "A = U diag(S) V^T (reduced); dA = U [skew(U^T G_U)/E S + S skew(V^T G_V)/E "
               "+ diag(G_S)] V^T + (I - UU^T) G_U S^-1 V^T + U S^-1 G_V^T (I - VV^T) "
               "(Townsend 2016)",
    .backward = svd_bw,
    .forward = svd_fw,
    .params_size = sizeof(vec_params),
};

int ad_linalg_svd(ad_tensor *A, ad_tensor **U, ad_tensor **S, ad_tensor **Vh)
{
    static const char *fn = "ad_linalg_svd";
    if (U) *U = NULL;
    if (S) *S = NULL;
    if (Vh) *Vh = NULL;
    if (!S) return ad__err(fn, "argument 'S' is NULL");
    if (ad__check_arg(fn, "A", A, true)) return -1;
    if (A->ndim < 2)
        return ad__errc(AD_ERR_SHAPE, fn, "A must be a matrix or a batch of them ([..., m, n]), "
                        "got %s", ad__shape_str(A));
    int64_t m = A->shape[A->ndim - 2], n = A->shape[A->ndim - 1], k = m < n ? m : n;
    if (m > INT32_MAX / 64 || n > INT32_MAX / 64)
        return ad__errc(AD_ERR_SHAPE, fn, "A %s is too large", ad__shape_str(A));
    int64_t shape[AD_MAX_DIMS];
    memcpy(shape, A->shape, (size_t)A->ndim * sizeof *shape);
    shape[A->ndim - 2] = m + 1 + n;
    shape[A->ndim - 1] = k;
    ad_scope s;
    if (ad_scope_begin(&s, fn, 1, &A, false)) return -1;
    ad_tensor *P = ad__result(fn, 1, &A, A->dtype, A->ndim, shape);
    vec_params vp = {U != NULL || Vh != NULL};
    if (P) P = ad__finish(P, svd_kernel(fn, A, P), &OP_SVD, 1, &A, &vp, NULL);
    ad_tensor *u = P ? ad_narrow(P, -2, 0, m) : NULL;
    ad_tensor *sv = P ? ad_squeeze(ad_narrow(P, -2, m, 1), -2) : NULL;
    ad_tensor *vh = P ? tr(ad_narrow(P, -2, m + 1, n)) : NULL;
    if (!u || !sv || !vh) {
        ad_scope_end(&s, NULL);
        return -1;
    }
    if (s.scratch) {
        sv = ad__copy(NULL, sv);
        u = U ? ad__copy(NULL, u) : NULL;
        vh = Vh ? ad__copy(NULL, vh) : NULL;
        if (!sv || (U && !u) || (Vh && !vh)) {
            ad_tensor_free(sv), ad_tensor_free(u), ad_tensor_free(vh);
            ad_scope_end(&s, NULL);
            return -1;
        }
    }
    ad_scope_end(&s, NULL);
    *S = sv;
    if (U) *U = u;
    if (Vh) *Vh = vh;
    return 0;
}

const ad_op *const ad__ops_decomp[] = {
    &OP_SOLVE, &OP_TRSOLVE, &OP_INV, &OP_SLOGDET, &OP_DET_SIGN, &OP_CHOLESKY, &OP_EIGH, &OP_QR,
    &OP_SVD, NULL,
};

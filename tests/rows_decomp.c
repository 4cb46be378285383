/* tests/rows_decomp.c - op rows for test_ops (see optest.h): the linear
 * algebra of ops_decomp.c.  Inputs are made well conditioned inside the
 * row functions (a multiple of the identity added, X X^T for Cholesky,
 * eigenvalues spread apart for eigh), so that finite differences are
 * accurate and float32 stays close to float64.  Symmetric inputs are built
 * as X + X^T or X X^T from the leaf X, since cholesky and eigh read one
 * triangle and return the symmetric gradient. */
#include "optest.h"

typedef struct { int how; } dctx;
enum { D_PLAIN = 0, D_VEC = 1, D_UPPER = 2, D_RIGHT = 4, D_UNIT = 8, D_NEG = 16, D_W = 32,
       D_V = 64, D_Q = 128, D_R = 256 };

/* x + s I over x's last two dimensions (square). */
static ad_tensor *shift(ad_tensor *x, double s)
{
    int64_t n = ad_size(x, ad_ndim(x) - 1);
    ad_tensor *eye = ad_eye(ad_tensor_tape(x), ad_tensor_dtype(x), n);
    return ad_add(x, ad_mul_scalar(eye, s));
}
static ad_tensor *tr(ad_tensor *x) { return ad_transpose(x, -2, -1); }
static int how(void *ctx) { return ((dctx *)ctx)->how; }

static ad_tensor *b_solve(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_linalg_solve(shift(in[0], 3.0), in[1]);
}
static ad_tensor *b_trsolve(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    int h = how(ctx);
    return ad_linalg_solve_triangular(shift(in[0], 2.0), in[1], h & D_UPPER, !(h & D_RIGHT),
                                      h & D_UNIT);
}
static ad_tensor *b_inv(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_linalg_inv(shift(in[0], 3.0));
}
static ad_tensor *b_slogdet(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *A = shift(in[0], 3.0), *sign, *l;
    if (how(ctx) & D_NEG) A = ad_neg(A); /* odd n: a negative determinant */
    if (ad_linalg_slogdet(A, &sign, &l)) return NULL;
    return l;
}
static ad_tensor *b_det(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *A = shift(in[0], 3.0);
    return ad_linalg_det(how(ctx) & D_NEG ? ad_neg(A) : A);
}
static ad_tensor *b_logdet(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_logdet(shift(in[0], 3.0));
}
static ad_tensor *b_cholesky(ad_tensor *const *in, int n, void *ctx)
{
    (void)n, (void)ctx;
    return ad_linalg_cholesky(shift(ad_matmul(in[0], tr(in[0])), 1.0));
}
/* A = X + X^T + diag(0, 3, 6, ...): eigenvalues kept apart. */
static ad_tensor *b_eigh(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *x = in[0];
    int64_t m = ad_size(x, -1);
    ad_tensor *spread = ad_mul_scalar(ad_arange(ad_tensor_tape(x), ad_tensor_dtype(x), 0, (double)m, 1), 3.0);
    ad_tensor *A = ad_add(ad_add(x, tr(x)), ad_diag_embed(spread, 0));
    ad_tensor *w, *V;
    if (ad_linalg_eigh(A, &w, how(ctx) & (D_V | D_UNIT) ? &V : NULL)) return NULL;
    if (!(how(ctx) & D_V)) return w; /* D_UNIT: V taken but unused */
    if (!(how(ctx) & D_W)) return V;
    return ad_mul(V, ad_unsqueeze(ad_square(w), -2)); /* V diag(w^2) */
}
static ad_tensor *b_qr(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *Q, *R;
    if (ad_linalg_qr(in[0], &Q, &R)) return NULL;
    int h = how(ctx);
    if ((h & D_Q) && (h & D_R)) return ad_concat((ad_tensor *[]){Q, R}, 2, -2);
    return h & D_Q ? Q : R;
}
/* A = X + C with C a fixed [m,n] of 3, 1.5, 0 on its diagonal: distinct
 * singular values, away from 0.  U, S, Vh combined as U diag(S^2) Vh when
 * all are asked for. */
static ad_tensor *b_svd(ad_tensor *const *in, int n, void *ctx)
{
    (void)n;
    ad_tensor *x = in[0];
    int nd = ad_ndim(x);
    int64_t m = ad_size(x, nd - 2), c = ad_size(x, nd - 1);
    double v[64] = {0};
    for (int64_t i = 0; i < m && i < c; i++) v[i * c + i] = 3.0 - 1.5 * (double)i;
    ad_tensor *A = ad_add(x, ot_const_like(x, 2, (int64_t[]){m, c}, v));
    ad_tensor *U, *S, *Vh;
    int h = how(ctx);
    if (ad_linalg_svd(A, h & (D_Q | D_UNIT) ? &U : NULL, &S, h & D_R ? &Vh : NULL)) return NULL;
    if ((h & D_Q) && (h & D_R)) return ad_matmul(ad_mul(U, ad_unsqueeze(ad_square(S), -2)), Vh);
    return h & D_Q ? U : h & D_R ? Vh : S;
}

#define H(h) (&(dctx){h})
#define G(nd, ...) {nd, {__VA_ARGS__}, OT_GRAD, 0, 0, 0}
#define C(nd, ...) {nd, {__VA_ARGS__}, OT_CONST, 0, 0, 0}

const op_row rows_decomp[] = {
    {"linalg_solve", "[3,3] \\ [3,2]", b_solve, H(D_PLAIN), 2, {G(2, 3, 3), G(2, 3, 2)}},
    {"linalg_solve", "[3,3] \\ vector [3]", b_solve, H(D_VEC), 2, {G(2, 3, 3), G(1, 3)}},
    {"linalg_solve", "batched [2,3,3] \\ [2,3,1]", b_solve, H(D_PLAIN), 2,
     {G(3, 2, 3, 3), G(3, 2, 3, 1)}},
    {"linalg_solve", "[2,2] broadcast against [3,2,2]", b_solve, H(D_PLAIN), 2,
     {G(2, 2, 2), G(3, 3, 2, 2)}},
    {"linalg_solve", "batched [2,3,3] with one vector [3]", b_solve, H(D_VEC), 2,
     {G(3, 2, 3, 3), G(1, 3)}},
    {"linalg_solve", "batched [3,3,3] with a vector per matrix [3,3]", b_solve, H(D_VEC), 2,
     {G(3, 3, 3, 3), G(2, 3, 3)}},
    {"linalg_solve", "constant A, B [3,2]", b_solve, H(D_PLAIN), 2, {C(2, 3, 3), G(2, 3, 2)}},
    {"solve_triangular", "lower, left", b_trsolve, H(D_PLAIN), 2, {G(2, 3, 3), G(2, 3, 2)}},
    {"solve_triangular", "upper, left, batched", b_trsolve, H(D_UPPER), 2,
     {G(3, 2, 3, 3), G(3, 2, 3, 2)}},
    {"solve_triangular", "upper, unitriangular", b_trsolve, H(D_UPPER | D_UNIT), 2,
     {G(2, 3, 3), G(2, 3, 2)}},
    {"solve_triangular", "lower, right: X A = B, B [2,3]", b_trsolve, H(D_RIGHT), 2,
     {G(2, 3, 3), G(2, 2, 3)}},
    {"linalg_inv", "[3,3]", b_inv, H(D_PLAIN), 1, {G(2, 3, 3)}},
    {"linalg_inv", "batched [2,2,2]", b_inv, H(D_PLAIN), 1, {G(3, 2, 2, 2)}},
    {"slogdet", "log|det| of [3,3]", b_slogdet, H(D_PLAIN), 1, {G(2, 3, 3)}},
    {"slogdet", "log|det| of a negative determinant [3,3]", b_slogdet, H(D_NEG), 1, {G(2, 3, 3)}},
    {"det_sign", "det of [3,3]", b_det, H(D_PLAIN), 1, {G(2, 3, 3)}},
    {"det_sign", "det of batched [2,2,2], negated", b_det, H(D_NEG), 1, {G(3, 2, 2, 2)}},
    {"slogdet", "logdet of [3,3]", b_logdet, H(D_PLAIN), 1, {G(2, 3, 3)}},
    {"cholesky", "of X X^T + I, X [3,3]", b_cholesky, H(D_PLAIN), 1, {G(2, 3, 3)}},
    {"cholesky", "of X X^T + I, X [3,4]", b_cholesky, H(D_PLAIN), 1, {G(2, 3, 4)}},
    {"cholesky", "batched, X [2,2,3]", b_cholesky, H(D_PLAIN), 1, {G(3, 2, 2, 3)}},
    {"eigh", "eigenvalues of [3,3]", b_eigh, H(D_W), 1, {G(2, 3, 3)}},
    {"eigh", "eigenvalues of [3,3] with V taken (the full rule)", b_eigh, H(D_W | D_UNIT), 1,
     {G(2, 3, 3)}},
    {"eigh", "eigenvectors of [3,3]", b_eigh, H(D_V), 1, {G(2, 3, 3)}},
    {"eigh", "V diag(w^2), batched [2,3,3]", b_eigh, H(D_V | D_W), 1, {G(3, 2, 3, 3)}},
    {"qr", "R of [4,3]", b_qr, H(D_R), 1, {G(2, 4, 3)}},
    {"qr", "Q of [4,3]", b_qr, H(D_Q), 1, {G(2, 4, 3)}},
    {"qr", "Q and R of square [3,3]", b_qr, H(D_Q | D_R), 1, {G(2, 3, 3)}},
    {"qr", "Q and R, batched [2,4,2]", b_qr, H(D_Q | D_R), 1, {G(3, 2, 4, 2)}},
    {"svd", "singular values of [3,2]", b_svd, H(D_PLAIN), 1, {G(2, 3, 2)}},
    {"svd", "singular values of [2,3]", b_svd, H(D_PLAIN), 1, {G(2, 2, 3)}},
    {"svd", "singular values of [3,2] with U taken (the full rule)", b_svd, H(D_UNIT), 1,
     {G(2, 3, 2)}},
    {"svd", "U of [3,2]", b_svd, H(D_Q), 1, {G(2, 3, 2)}},
    {"svd", "Vh of [2,3]", b_svd, H(D_R), 1, {G(2, 2, 3)}},
    {"svd", "U diag(S^2) Vh of square [3,3]", b_svd, H(D_Q | D_R), 1, {G(2, 3, 3)}},
    {"svd", "U diag(S^2) Vh, batched [2,3,2]", b_svd, H(D_Q | D_R), 1, {G(3, 2, 3, 2)}},
    {"svd", "U diag(S^2) Vh of wide [2,4]", b_svd, H(D_Q | D_R), 1, {G(2, 2, 4)}},
    {0},
};

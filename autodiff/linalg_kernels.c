/* autodiff/linalg_kernels.c - LU, Cholesky, triangular solves, symmetric
 * eigendecomposition and QR on one column-major double matrix (see
 * linalg_kernels.h): LAPACK when the build found it, the library's own
 * unblocked algorithms otherwise.  The eigenvector and QR sign
 * conventions are applied after either path, so both give the same
 * results up to rounding. */
#include "linalg_kernels.h"

#include <float.h>
#include <math.h>

#include "internal.h"

#ifdef AD_HAVE_LAPACK
/* LAPACK's Fortran interface as OpenBLAS exports it: every argument by
 * reference, 32-bit integers, and (gfortran's convention) the length of
 * each character argument passed after the others. */
void dgetrf_(const int *m, const int *n, double *a, const int *lda, int *ipiv, int *info);
void dgetrs_(const char *trans, const int *n, const int *nrhs, const double *a, const int *lda,
             const int *ipiv, double *b, const int *ldb, int *info, size_t ltrans);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t luplo);
void dtrtrs_(const char *uplo, const char *trans, const char *diag, const int *n, const int *nrhs,
             const double *a, const int *lda, double *b, const int *ldb, int *info, size_t l1,
             size_t l2, size_t l3);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t l1, size_t l2);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
             double *u, const int *ldu, double *vt, const int *ldvt, double *work,
             const int *lwork, int *iwork, int *info, size_t l1);
void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work,
             const int *lwork, int *info);
void dorgqr_(const int *m, const int *n, const int *k, double *a, const int *lda,
             const double *tau, double *work, const int *lwork, int *info);
#endif

_Thread_local bool ad__lapack_off;

bool ad__lapack_present(void)
{
#ifdef AD_HAVE_LAPACK
    return !ad__lapack_off;
#else
    return false;
#endif
}

#define A_(i, j) a[(i) + (int64_t)(j) * n]

int ad__lu(int n, double *a, int *piv)
{
    if (n == 0) return 0; /* LAPACK refuses a leading dimension of 0 */
#ifdef AD_HAVE_LAPACK
    if (!ad__lapack_off) {
        int info = 0;
        dgetrf_(&n, &n, a, &n, piv, &info);
        for (int i = 0; i < n; i++) piv[i]--; /* LAPACK counts from 1 */
        return info < 0 ? -1 : info;
    } else
#endif
    {
        for (int k = 0; k < n; k++) {
            int p = k;
            for (int i = k + 1; i < n; i++)
                if (fabs(A_(i, k)) > fabs(A_(p, k))) p = i;
            piv[k] = p;
            if (A_(p, k) == 0) return k + 1;
            if (p != k)
                for (int j = 0; j < n; j++) {
                    double t = A_(k, j);
                    A_(k, j) = A_(p, j);
                    A_(p, j) = t;
                }
            for (int i = k + 1; i < n; i++) A_(i, k) /= A_(k, k);
            for (int j = k + 1; j < n; j++)
                for (int i = k + 1; i < n; i++) A_(i, j) -= A_(i, k) * A_(k, j);
        }
        return 0;
    }
}

void ad__lu_solve(int n, int nrhs, const double *a, const int *piv, double *b)
{
    for (int k = 0; k < n; k++) /* the row swaps, in order */
        if (piv[k] != k)
            for (int c = 0; c < nrhs; c++) {
                double t = b[k + (int64_t)c * n];
                b[k + (int64_t)c * n] = b[piv[k] + (int64_t)c * n];
                b[piv[k] + (int64_t)c * n] = t;
            }
    ad__trsolve(n, nrhs, a, false, true, b);
    ad__trsolve(n, nrhs, a, true, false, b);
}

int ad__cholesky(int n, double *a)
{
    if (n == 0) return 0;
#ifdef AD_HAVE_LAPACK
    if (!ad__lapack_off) {
        int info = 0;
        dpotrf_("L", &n, a, &n, &info, 1);
        if (info != 0) return info < 0 ? -1 : info;
        /* OpenBLAS's dpotrf lets a NaN pivot through (the reference
         * LAPACK's stops there, as the loop below does): the same error
         * from both, at the first NaN on the diagonal */
        for (int j = 0; j < n; j++)
            if (A_(j, j) != A_(j, j)) return j + 1;
    } else
#endif
    {
        for (int j = 0; j < n; j++) {
            double s = A_(j, j);
            for (int k = 0; k < j; k++) s -= A_(j, k) * A_(j, k);
            if (!(s > 0)) return j + 1; /* also NaN */
            double d = sqrt(s);
            A_(j, j) = d;
            for (int i = j + 1; i < n; i++) {
                double t = A_(i, j);
                for (int k = 0; k < j; k++) t -= A_(i, k) * A_(j, k);
                A_(i, j) = t / d;
            }
        }
    }
    for (int j = 1; j < n; j++)
        for (int i = 0; i < j; i++) A_(i, j) = 0;
    return 0;
}

int ad__trsolve(int n, int nrhs, const double *a, bool upper, bool unit, double *b)
{
    if (!unit)
        for (int k = 0; k < n; k++)
            if (A_(k, k) == 0) return k + 1;
#ifdef AD_HAVE_LAPACK
    if (!ad__lapack_off) {
        int info = 0;
        if (n > 0 && nrhs > 0)
            dtrtrs_(upper ? "U" : "L", "N", unit ? "U" : "N", &n, &nrhs, a, &n, b, &n, &info, 1, 1,
                    1);
        return info < 0 ? -1 : info;
    } else
#endif
    {
        for (int c = 0; c < nrhs; c++) {
            double *x = b + (int64_t)c * n;
            if (upper)
                for (int i = n - 1; i >= 0; i--) {
                    double s = x[i];
                    for (int k = i + 1; k < n; k++) s -= A_(i, k) * x[k];
                    x[i] = unit ? s : s / A_(i, i);
                }
            else
                for (int i = 0; i < n; i++) {
                    double s = x[i];
                    for (int k = 0; k < i; k++) s -= A_(i, k) * x[k];
                    x[i] = unit ? s : s / A_(i, i);
                }
        }
        return 0;
    }
}

/* ---- scaling ------------------------------------------------------------------------ */
/* The built-in factorizations below form sums of squares of the entries
 * (column norms, the Jacobi methods' tests), which overflow to inf past
 * about 1e154 and underflow to 0 below about 1e-162: a finite matrix then
 * came out silently wrong (eigenvalues never rotated, singular values inf
 * or 0, Q all NaN).  A matrix whose largest entry lies outside [2^-400,
 * 2^400] is first scaled by a power of two, which changes no bit of the
 * entries' significands, and what scales with it (eigenvalues, singular
 * values, R) is scaled back; the vectors and Q do not change.  LAPACK
 * scales on its own.  The exponent e to scale by 2^-e, or 0: none needed,
 * or inf or NaN entries, left to the kernels' own error. */
static int scale_exponent(int rows, int cols, const double *a, bool lower_only)
{
    double mx = 0;
    for (int j = 0; j < cols; j++)
        for (int i = lower_only ? j : 0; i < rows; i++) {
            double x = fabs(a[i + (int64_t)j * rows]);
            if (x > mx) mx = x;
        }
    int e = 0;
    if (mx > 0 && !isinf(mx)) frexp(mx, &e);
    return e > 400 || e < -400 ? e : 0;
}
static void scale_by(double *a, int64_t count, int e)
{
    for (int64_t i = 0; i < count; i++) a[i] = ldexp(a[i], e);
}

/* ---- symmetric eigendecomposition ------------------------------------------------ */
/* Cyclic Jacobi (Golub & Van Loan, "Matrix Computations", 8.5): rotations
 * J^T A J that zero one off-diagonal pair each, swept until a sweep finds
 * no pair worth a rotation; v accumulates the rotations.  A pair is left
 * alone when |a_pq| <= eps sqrt(|a_pp| |a_qq|) (Demmel & Veselic 1992),
 * relative to its own diagonal rather than to the whole matrix's norm: a
 * test against the norm stopped with a small block of a badly scaled
 * matrix (diag(1e10, B), B's entries near 1 and 1e-6 apart) never
 * rotated, its eigenvalues off by 1e-6 and its eigenvectors by 45 degrees.
 * After 100 sweeps the norm-wide test still accepts the result. */
static int jacobi(int n, double *a, double *v, double *w)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) v[i + (int64_t)j * n] = i == j;
    for (int j = 1; j < n; j++) /* the lower triangle is the matrix */
        for (int i = 0; i < j; i++) A_(i, j) = A_(j, i);
    for (int sweep = 0; sweep <= 100; sweep++) {
        bool rotated = false;
        for (int p = 0; p < n - 1 && sweep < 100; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = A_(p, q);
                /* (NaN or inf entries fail the test: they rotate, and the
                 * sweeps end without convergence, an error) */
                if (fabs(apq) <= DBL_EPSILON * sqrt(fabs(A_(p, p))) * sqrt(fabs(A_(q, q))))
                    continue;
                rotated = true;
                double theta = (A_(q, q) - A_(p, p)) / (2 * apq);
                double t = fabs(theta) > 1e150 ? 0.5 / theta
                           : (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q of A and V */
                    double akp = A_(k, p), akq = A_(k, q);
                    A_(k, p) = c * akp - s * akq;
                    A_(k, q) = s * akp + c * akq;
                    double vkp = v[k + (int64_t)p * n], vkq = v[k + (int64_t)q * n];
                    v[k + (int64_t)p * n] = c * vkp - s * vkq;
                    v[k + (int64_t)q * n] = s * vkp + c * vkq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = A_(p, k), aqk = A_(q, k);
                    A_(p, k) = c * apk - s * aqk;
                    A_(q, k) = s * apk + c * aqk;
                }
            }
        if (sweep == 100) { /* out of sweeps: the off-diagonal part negligible? */
            double off = 0, all = 0;
            for (int j = 0; j < n; j++)
                for (int i = 0; i < n; i++) {
                    all += A_(i, j) * A_(i, j);
                    if (i != j) off += A_(i, j) * A_(i, j);
                }
            rotated = !(off <= 1e-30 * all || off == 0);
        }
        if (!rotated) {
            for (int i = 0; i < n; i++) w[i] = A_(i, i);
            return 0;
        }
    }
    return n > 0 ? n : 1; /* no convergence (NaN or inf entries) */
}

int ad__eigh(int n, double *a, double *w)
{
    if (n == 0) return 0;
#ifdef AD_HAVE_LAPACK
    if (!ad__lapack_off) {
        int info = 0, lwork = -1, liwork = -1, iq;
        double wq;
        dsyevd_("V", "L", &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info, 1, 1);
        if (info != 0) return -1;
        lwork = (int)wq;
        liwork = iq;
        double *work = ad__malloc((size_t)lwork * sizeof *work);
        int *iwork = ad__malloc((size_t)liwork * sizeof *iwork);
        if (work && iwork)
            dsyevd_("V", "L", &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
        int rc = !work || !iwork ? -1 : info != 0 ? (info < 0 ? -1 : info) : 0;
        ad__free(work);
        ad__free(iwork);
        if (rc) return rc;
    } else
#endif
    {
        double *v = ad__malloc((size_t)n * (size_t)n * sizeof *v);
        if (!v) return -1;
        int e = scale_exponent(n, n, a, true);
        if (e) scale_by(a, (int64_t)n * n, -e);
        int rc = jacobi(n, a, v, w);
        memcpy(a, v, (size_t)n * (size_t)n * sizeof *v);
        ad__free(v);
        if (rc) return rc;
        if (e) scale_by(w, n, e);
        /* ascending order (selection sort: n is small on this path) */
        for (int i = 0; i < n; i++) {
            int m = i;
            for (int j = i + 1; j < n; j++)
                if (w[j] < w[m]) m = j;
            if (m == i) continue;
            double t = w[i];
            w[i] = w[m];
            w[m] = t;
            for (int k = 0; k < n; k++) {
                t = A_(k, i);
                A_(k, i) = A_(k, m);
                A_(k, m) = t;
            }
        }
    }
    for (int j = 0; j < n; j++) { /* sign: the largest entry is positive */
        int m = 0;
        for (int i = 1; i < n; i++)
            if (fabs(A_(i, j)) > fabs(A_(m, j))) m = i;
        if (A_(m, j) < 0)
            for (int i = 0; i < n; i++) A_(i, j) = -A_(i, j);
    }
    return 0;
}

/* ---- QR ------------------------------------------------------------------------------ */
#undef A_
#define A_(i, j) a[(i) + (int64_t)(j) * m]

int ad__qr(int m, int n, double *a, double *r)
{
    if (n == 0) return 0;
#ifdef AD_HAVE_LAPACK
    if (!ad__lapack_off) {
        int info = 0, lwork = -1;
        double wq, *tau = ad__malloc(((size_t)n + 1) * sizeof *tau);
        if (!tau) return -1;
        dgeqrf_(&m, &n, a, &m, tau, &wq, &lwork, &info);
        int l2 = -1;
        double wq2;
        dorgqr_(&m, &n, &n, a, &m, tau, &wq2, &l2, &info);
        lwork = (int)(wq > wq2 ? wq : wq2) + 1;
        double *work = ad__malloc((size_t)lwork * sizeof *work);
        if (!work) {
            ad__free(tau);
            return -1;
        }
        dgeqrf_(&m, &n, a, &m, tau, work, &lwork, &info);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++) r[i + (int64_t)j * n] = i <= j ? A_(i, j) : 0;
        if (info == 0) dorgqr_(&m, &n, &n, a, &m, tau, work, &lwork, &info);
        ad__free(work);
        ad__free(tau);
        if (info != 0) return -1;
    } else
#endif
    {
        /* Householder: H_k = I - 2 v v^T / v^T v zeroes column k below the
         * diagonal; the vectors are kept in v (m x n), then Q = H_0 ... H_{n-1}
         * applied to the first n columns of the identity. */
        double *v = ad__calloc((size_t)m * (size_t)n, sizeof *v);
        if (!v) return -1;
        int e = scale_exponent(m, n, a, false);
        if (e) scale_by(a, (int64_t)m * n, -e);
        for (int k = 0; k < n; k++) {
            double norm = 0;
            for (int i = k; i < m; i++) norm += A_(i, k) * A_(i, k);
            norm = sqrt(norm);
            double alpha = A_(k, k) >= 0 ? -norm : norm, vv = 0;
            double *vk = v + (int64_t)k * m;
            for (int i = k; i < m; i++) vk[i] = A_(i, k);
            vk[k] -= alpha;
            for (int i = k; i < m; i++) vv += vk[i] * vk[i];
            if (vv == 0) continue;
            for (int j = k; j < n; j++) {
                double s = 0;
                for (int i = k; i < m; i++) s += vk[i] * A_(i, j);
                s *= 2 / vv;
                for (int i = k; i < m; i++) A_(i, j) -= s * vk[i];
            }
        }
        for (int j = 0; j < n; j++)
            for (int i = 0; i < n; i++) r[i + (int64_t)j * n] = i <= j ? ldexp(A_(i, j), e) : 0;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) A_(i, j) = i == j;
        for (int k = n - 1; k >= 0; k--) {
            const double *vk = v + (int64_t)k * m;
            double vv = 0;
            for (int i = k; i < m; i++) vv += vk[i] * vk[i];
            if (vv == 0) continue;
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int i = k; i < m; i++) s += vk[i] * A_(i, j);
                s *= 2 / vv;
                for (int i = k; i < m; i++) A_(i, j) -= s * vk[i];
            }
        }
        ad__free(v);
    }
    for (int j = 0; j < n; j++) { /* R's diagonal made >= 0 */
        if (r[j + (int64_t)j * n] >= 0) continue;
        for (int c = j; c < n; c++) r[j + (int64_t)c * n] = -r[j + (int64_t)c * n];
        for (int i = 0; i < m; i++) A_(i, j) = -A_(i, j);
    }
    return 0;
}

/* ---- SVD --------------------------------------------------------------------------------- */
/* One-sided Jacobi (Hestenes; Demmel & Veselic 1992) for m >= n: plane
 * rotations of pairs of columns of w (m x n) until all are orthogonal;
 * v (n x n) accumulates them, so w = u diag(s) and a = w v^T. */
static int one_sided_jacobi(int m, int n, double *w, double *v)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) v[i + (int64_t)j * n] = i == j;
    for (int sweep = 0; sweep < 100; sweep++) {
        bool rotated = false;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                double *wp = w + (int64_t)p * m, *wq = w + (int64_t)q * m;
                double al = 0, be = 0, ga = 0;
                for (int i = 0; i < m; i++) {
                    al += wp[i] * wp[i];
                    be += wq[i] * wq[i];
                    ga += wp[i] * wq[i];
                }
                if (!(fabs(ga) > 1e-15 * sqrt(al * be))) continue;
                rotated = true;
                double zeta = (be - al) / (2 * ga);
                double t = fabs(zeta) > 1e150 ? 0.5 / zeta
                           : (zeta >= 0 ? 1 : -1) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), s = c * t;
                for (int i = 0; i < m; i++) {
                    double x = wp[i], y = wq[i];
                    wp[i] = c * x - s * y;
                    wq[i] = s * x + c * y;
                }
                double *vp = v + (int64_t)p * n, *vq = v + (int64_t)q * n;
                for (int i = 0; i < n; i++) {
                    double x = vp[i], y = vq[i];
                    vp[i] = c * x - s * y;
                    vq[i] = s * x + c * y;
                }
            }
        if (!rotated) return 0;
    }
    return 1;
}

/* Swaps columns i and j of the column-major x with `rows` rows. */
static void swap_columns(double *x, int rows, int i, int j)
{
    for (int r = 0; r < rows; r++) {
        double t = x[r + (int64_t)i * rows];
        x[r + (int64_t)i * rows] = x[r + (int64_t)j * rows];
        x[r + (int64_t)j * rows] = t;
    }
}

/* Columns j of u (m x k) whose singular value is 0 are replaced by unit
 * vectors orthogonal to the others (Gram-Schmidt over e_0, e_1, ...). */
static void complete_basis(int m, int k, double *u, const double *s)
{
    for (int j = 0; j < k; j++) {
        if (s[j] > 0) continue;
        double *uj = u + (int64_t)j * m;
        for (int e = 0; e < m; e++) {
            for (int i = 0; i < m; i++) uj[i] = i == e;
            for (int pass = 0; pass < 2; pass++)
                for (int c = 0; c < k; c++) {
                    if (c == j || (s[c] <= 0 && c > j)) continue;
                    const double *uc = u + (int64_t)c * m;
                    double d = 0;
                    for (int i = 0; i < m; i++) d += uc[i] * uj[i];
                    for (int i = 0; i < m; i++) uj[i] -= d * uc[i];
                }
            double nrm = 0;
            for (int i = 0; i < m; i++) nrm += uj[i] * uj[i];
            if (nrm > 1e-6) {
                for (int i = 0; i < m; i++) uj[i] /= sqrt(nrm);
                break;
            }
        }
    }
}

int ad__svd(int m, int n, double *a, double *u, double *s, double *v)
{
    int k = m < n ? m : n;
    if (k == 0) return 0;
    /* from here m, n >= 1: LAPACK's leading dimensions are valid */
#ifdef AD_HAVE_LAPACK
    if (!ad__lapack_off) {
        int info = 0, lwork = -1;
        double wq;
        int *iwork = ad__malloc(8 * (size_t)k * sizeof *iwork);
        double *vt = ad__malloc((size_t)k * (size_t)n * sizeof *vt);
        if (!iwork || !vt) {
            ad__free(iwork), ad__free(vt);
            return -1;
        }
        dgesdd_("S", &m, &n, a, &m, s, u, &m, vt, &k, &wq, &lwork, iwork, &info, 1);
        lwork = (int)wq + 1;
        double *work = ad__malloc((size_t)lwork * sizeof *work);
        if (work) dgesdd_("S", &m, &n, a, &m, s, u, &m, vt, &k, work, &lwork, iwork, &info, 1);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < n; j++) v[j + (int64_t)i * n] = vt[i + (int64_t)j * k];
        int rc = !work ? -1 : info < 0 ? -1 : info;
        ad__free(work), ad__free(iwork), ad__free(vt);
        if (rc) return rc;
    } else
#endif
    {
        /* m >= n: Jacobi on a itself; m < n: on a^T, whose u and v swap. */
        bool wide = m < n;
        int rows = wide ? n : m, cols = k;
        double *w = ad__malloc((size_t)rows * (size_t)cols * sizeof *w);
        double *vv = ad__malloc((size_t)cols * (size_t)cols * sizeof *vv);
        if (!w || !vv) {
            ad__free(w), ad__free(vv);
            return -1;
        }
        for (int j = 0; j < cols; j++)
            for (int i = 0; i < rows; i++)
                w[i + (int64_t)j * rows] = wide ? a[j + (int64_t)i * m] : a[i + (int64_t)j * m];
        int e = scale_exponent(rows, cols, w, false);
        if (e) scale_by(w, (int64_t)rows * cols, -e);
        int rc = one_sided_jacobi(rows, cols, w, vv);
        /* the left and right factors of what Jacobi was given */
        double *uu = wide ? v : u, *vo = wide ? u : v;
        for (int j = 0; j < cols && !rc; j++) {
            double nrm = 0;
            const double *wj = w + (int64_t)j * rows;
            for (int i = 0; i < rows; i++) nrm += wj[i] * wj[i];
            s[j] = sqrt(nrm);
            for (int i = 0; i < rows; i++)
                uu[i + (int64_t)j * rows] = s[j] > 0 ? w[i + (int64_t)j * rows] / s[j] : 0;
            for (int i = 0; i < cols; i++) vo[i + (int64_t)j * cols] = vv[i + (int64_t)j * cols];
        }
        ad__free(w), ad__free(vv);
        if (rc) return rc;
        if (e) scale_by(s, k, e);
        for (int i = 0; i < k; i++) { /* descending order */
            int mx = i;
            for (int j = i + 1; j < k; j++)
                if (s[j] > s[mx]) mx = j;
            if (mx == i) continue;
            double t = s[i];
            s[i] = s[mx], s[mx] = t;
            swap_columns(u, m, i, mx);
            swap_columns(v, n, i, mx);
        }
        complete_basis(m, k, u, s);
        complete_basis(n, k, v, s);
    }
    for (int j = 0; j < k; j++) { /* sign: the largest entry of u's column positive */
        double *uj = u + (int64_t)j * m, *vj = v + (int64_t)j * n;
        int mx = 0;
        for (int i = 1; i < m; i++)
            if (fabs(uj[i]) > fabs(uj[mx])) mx = i;
        if (uj[mx] >= 0) continue;
        for (int i = 0; i < m; i++) uj[i] = -uj[i];
        for (int i = 0; i < n; i++) vj[i] = -vj[i];
    }
    return 0;
}

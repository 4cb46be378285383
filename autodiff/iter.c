/* autodiff/iter.c - strided n-dimensional iteration and broadcasting.
 *
 * Every elementwise kernel is a "row" function applied to the innermost
 * run of an n-dimensional walk.  Dimensions that are laid out back to back
 * in every operand are merged first, so a contiguous tensor is one long row
 * whatever its shape, and the per-row overhead disappears. */
#include "internal.h"

void ad__iter_add(ad_iter *it, const ad_tensor *t)
{
    int k = it->nops++;
    assert(k < AD_ITER_MAX_OPS && t->ndim <= it->ndim);
    int lead = it->ndim - t->ndim;
    for (int d = 0; d < it->ndim; d++) {
        int td = d - lead;
        if (td < 0 || (t->shape[td] == 1 && it->shape[d] != 1))
            it->strides[k][d] = 0;
        else
            it->strides[k][d] = t->strides[td];
    }
    it->offset[k] = t->offset;
}

void ad__iter_run(const ad_iter *src, ad_iter_row row, void *ctx)
{
    ad_iter it = *src;
    int64_t off[AD_ITER_MAX_OPS], step[AD_ITER_MAX_OPS] = {0};
    for (int d = 0; d < it.ndim; d++)
        if (it.shape[d] == 0) return;
    /* Drop extent-1 dimensions, then merge d into d+1 where every operand
     * steps over d exactly as a run of d+1 would continue. */
    int n = 0;
    for (int d = 0; d < it.ndim; d++) {
        if (it.shape[d] == 1) continue;
        it.shape[n] = it.shape[d];
        for (int k = 0; k < it.nops; k++) it.strides[k][n] = it.strides[k][d];
        n++;
    }
    int m = 0;
    for (int d = 0; d < n; d++) {
        if (m > 0) {
            bool merge = true;
            for (int k = 0; k < it.nops; k++)
                if (it.strides[k][m - 1] != it.strides[k][d] * it.shape[d]) merge = false;
            if (merge) {
                it.shape[m - 1] *= it.shape[d];
                for (int k = 0; k < it.nops; k++) it.strides[k][m - 1] = it.strides[k][d];
                continue;
            }
        }
        it.shape[m] = it.shape[d];
        for (int k = 0; k < it.nops; k++) it.strides[k][m] = it.strides[k][d];
        m++;
    }
    it.ndim = m;
    for (int k = 0; k < it.nops; k++) off[k] = it.offset[k];
    if (m == 0) {
        row(1, off, step, ctx);
        return;
    }
    int inner = m - 1;
    for (int k = 0; k < it.nops; k++) step[k] = it.strides[k][inner];
    int64_t idx[AD_MAX_DIMS] = {0};
    for (;;) {
        row(it.shape[inner], off, step, ctx);
        int d = inner - 1;
        for (; d >= 0; d--) {
            for (int k = 0; k < it.nops; k++) off[k] += it.strides[k][d];
            if (++idx[d] < it.shape[d]) break;
            for (int k = 0; k < it.nops; k++) off[k] -= it.strides[k][d] * it.shape[d];
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}

int ad__broadcast(const char *fn, int na, const int64_t *sa, int nb, const int64_t *sb,
                  int *nout, int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int d = 0; d < n; d++) {
        int da = d - (n - na), db = d - (n - nb);
        int64_t x = da >= 0 ? sa[da] : 1, y = db >= 0 ? sb[db] : 1;
        if (x != y && x != 1 && y != 1) {
            return ad__errc(AD_ERR_SHAPE, fn, "shapes %s and %s cannot be broadcast together",
                            ad__dims_str(na, sa), ad__dims_str(nb, sb));
        }
        out[d] = x == 1 ? y : x;
    }
    *nout = n;
    return 0;
}

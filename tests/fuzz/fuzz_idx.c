/* tests/fuzz/fuzz_idx.c - the IDX loader (nn_idx_load, plain and gzip) on
 * arbitrary files.  A file that loads must be self-consistent, and one of
 * uint8 images is also fed to a loader for a batch or two. */
#include <nn/data.h>
#include <stdbool.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(data, size, ".idx");
    nn_idx *idx = nn_idx_load(path);
    if (!idx) {
        FUZZ_ASSERT(ad_error() != NULL);
        ad_clear_error();
        return 0;
    }
    FUZZ_ASSERT(idx->ndim >= 1 && idx->ndim <= NN_IDX_MAX_DIMS);
    /* The product of the extents is numel; huge extents are fine next to
     * a zero one, so the product is formed only when none is zero. */
    int64_t n = 1;
    bool empty = false;
    for (int d = 0; d < idx->ndim; d++) {
        FUZZ_ASSERT(idx->dims[d] >= 0);
        empty |= idx->dims[d] == 0;
    }
    for (int d = 0; d < idx->ndim && !empty; d++)
        FUZZ_ASSERT(!__builtin_mul_overflow(n, idx->dims[d], &n));
    FUZZ_ASSERT((empty ? 0 : n) == idx->numel && nn_idx_type_size(idx->type) > 0);
    if (idx->type == NN_IDX_UINT8 && idx->numel > 0 && idx->ndim >= 2) {
        nn_loader_options o = {.batch_size = 3, .shuffle = true, .seed = 1};
        nn_loader *l = nn_loader_from_idx(idx, NULL, &o);
        if (l) {
            ad_tensor *x;
            for (int i = 0; i < 2 && nn_loader_next(l, &x, NULL) == 1; i++)
                FUZZ_ASSERT(ad_numel(x) > 0);
            nn_loader_free(l);
        }
        ad_clear_error();
    }
    nn_idx_free(idx);
    return 0;
}

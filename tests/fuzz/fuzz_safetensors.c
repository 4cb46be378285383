/* tests/fuzz/fuzz_safetensors.c - the safetensors reader (nn/checkpoint.h)
 * on arbitrary files: nn_safetensors_inspect, nn_safetensors_read of each
 * entry, and nn_load_safetensors into a few fixed tensors, which must be
 * untouched when the load fails (all-or-nothing). */
#include <nn/checkpoint.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write(data, size, ".safetensors");
    nn_safetensors_info *info = nn_safetensors_inspect(path);
    if (info) {
        FUZZ_ASSERT(info->n >= 0 && info->n_metadata >= 0);
        for (int i = 0; i < info->n && i < 16; i++) {
            const nn_safetensors_entry *e = &info->entries[i];
            FUZZ_ASSERT(e->name && e->begin <= e->end && e->end <= info->data_size);
            FUZZ_ASSERT(e->ndim >= 0 && e->ndim <= AD_MAX_DIMS);
            ad_tensor *t = nn_safetensors_read(path, e->name);
            if (t) {
                FUZZ_ASSERT(ad_ndim(t) == e->ndim);
                ad_tensor_free(t);
            }
            ad_clear_error();
        }
        for (int i = 0; i < info->n_metadata; i++)
            FUZZ_ASSERT(nn_safetensors_metadata(info, info->metadata_keys[i]) != NULL);
        nn_safetensors_info_free(info);
    }
    ad_clear_error();

    /* Names the seeds use, so the fuzzer reaches the copying code. */
    const char *names[3] = {"w", "b", "i"};
    ad_tensor *ts[3] = {ad_full(NULL, AD_FLOAT32, AD_SHAPE(2, 3), 7),
                        ad_full(NULL, AD_FLOAT64, AD_SHAPE(3), 7),
                        ad_full(NULL, AD_INT64, AD_SHAPE(2), 7)};
    int n = size > 0 ? 1 + data[size - 1] % 3 : 3;
    if (nn_load_safetensors(path, n, names, ts, size > 0 && (data[0] & 1)) != 0) {
        FUZZ_ASSERT(ad_error() != NULL);
        for (int k = 0; k < 3; k++) {
            double v[6];
            ad_to_array(ts[k], v);
            for (int64_t j = 0; j < ad_numel(ts[k]); j++) FUZZ_ASSERT(v[j] == 7);
        }
    }
    ad_clear_error();
    for (int k = 0; k < 3; k++) ad_tensor_free(ts[k]);
    return 0;
}

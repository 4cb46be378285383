/* tests/fuzz/fuzz_csv.c - the CSV reader (nn_csv_load) on arbitrary files.
 * The first byte chooses the options (delimiter, header row, dtype); the
 * rest is the file.  A table that loads must be a 2-D tensor. */
#include <nn/data.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const char delims[4] = {',', ';', '\t', ' '};
    nn_csv_options o = {.delimiter = delims[data[0] & 3], .header = (data[0] >> 2) & 1,
                        .dtype = (data[0] >> 3) & 1 ? AD_FLOAT64 : AD_FLOAT32};
    const char *path = fuzz_write(data + 1, size - 1, ".csv");
    ad_tensor *t = nn_csv_load(path, &o);
    if (!t) {
        FUZZ_ASSERT(ad_error() != NULL);
        ad_clear_error();
        return 0;
    }
    FUZZ_ASSERT(ad_ndim(t) == 2 && ad_tensor_dtype(t) == o.dtype);
    FUZZ_ASSERT(ad_size(t, 0) >= 1 && ad_size(t, 1) >= 1);
    ad_tensor_free(t);
    return 0;
}

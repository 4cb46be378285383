/* tests/fuzz/fuzz_safetensors_json.c - the safetensors header's JSON
 * parser (nn/safetensors_json.c) in memory, without the file around it:
 * far more inputs per second than fuzz_safetensors reaches, all in the
 * parser.  The first byte chooses between the header parser and the
 * metadata parser that nn_save_safetensors uses on its argument. */
#include <nn/checkpoint.h>

#include "../../nn/internal.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    nn_safetensors_info *info = calloc(1, sizeof *info);
    if (!info) abort();
    if (data[0] & 1) {
        char *s = fuzz_string(data + 1, size - 1);
        nn__st_parse_metadata("fuzz", s, info);
        free(s);
    } else {
        nn__st_parse_header("fuzz", "mem", data + 1, size - 1, info);
    }
    FUZZ_ASSERT(info->n >= 0 && info->n_metadata >= 0);
    nn_safetensors_info_free(info);
    ad_clear_error();
    return 0;
}

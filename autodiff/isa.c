/* autodiff/isa.c - which instruction set the kernels may use
 * (ad_kernel_isa in tensor.h; AD_CPU_AVX512 and AD_CPU_AVX2 in isa.h).
 *
 * Every kernel with variants for several instruction sets asks isa.h's
 * AD_CPU_AVX512() or AD_CPU_AVX2(): the CPU's features capped by AD_ISA,
 * read from the environment once.  With the cap one machine runs each
 * narrower variant of every kernel, as a machine without AVX-512 (or
 * AVX2) would: scripts/check runs the kernel tests so, on whatever CPU CI
 * has that day. */
#include "isa.h"

#include <stdlib.h>
#include <string.h>

atomic_int ad__isa_cap_v = -1; /* -1: AD_ISA not read yet */

/* Whether e is name, case aside (names are lower-case ASCII). */
static bool named(const char *e, const char *name)
{
    for (; *e && *name; e++, name++)
        if ((*e >= 'A' && *e <= 'Z' ? *e - 'A' + 'a' : *e) != *name) return false;
    return !*e && !*name;
}

int ad__isa_cap_read(void)
{
    /* A value it does not know caps at the narrowest: one asked for a
     * cap, and AD_ISA=scalar running the AVX-512 kernels (no cap, as it
     * once did) would pass the tests it was meant to narrow.
     * ad_kernel_isa() tells what was understood. */
    const char *e = getenv("AD_ISA");
    int v = !e || !*e || named(e, "avx512") ? AD_ISA_AVX512
            : named(e, "avx2")              ? AD_ISA_AVX2
                                            : AD_ISA_PORTABLE; /* portable, scalar, other */
    atomic_store_explicit(&ad__isa_cap_v, v, memory_order_relaxed);
    return v;
}

void ad__isa_testing_reread(void) { atomic_store(&ad__isa_cap_v, -1); }

ad_isa ad_kernel_isa(void)
{
    if (AD_CPU_AVX512()) return AD_ISA_AVX512;
    if (AD_CPU_AVX2()) return AD_ISA_AVX2;
    return AD_ISA_PORTABLE;
}

const char *ad_isa_name(ad_isa isa)
{
    return isa == AD_ISA_AVX512     ? "avx512"
           : isa == AD_ISA_AVX2     ? "avx2"
           : isa == AD_ISA_PORTABLE ? "portable"
                                    : "invalid";
}

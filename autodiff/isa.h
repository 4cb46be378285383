/* autodiff/isa.h - whether a kernel may run its AVX-512 or AVX2 variant;
 * never installed.
 *
 * AD_CPU_AVX512() / AD_CPU_AVX2(): this CPU has AVX-512F / AVX2 and AD_ISA
 * (isa.c) allows it.  Every choice of a kernel's instruction set goes
 * through these; a kernel that also needs FMA asks
 * __builtin_cpu_supports("fma") besides.  The cap costs one relaxed load
 * once read; __builtin_cpu_supports reads a word the loader filled in. */
#ifndef AD_ISA_H
#define AD_ISA_H

#include <stdatomic.h>
#include <stdbool.h>

#include "tensor.h"

extern atomic_int ad__isa_cap_v;
int ad__isa_cap_read(void);
void ad__isa_testing_reread(void); /* tests: AD_ISA is read again at the next use */

static inline int ad__isa_cap(void)
{
    int v = atomic_load_explicit(&ad__isa_cap_v, memory_order_relaxed);
    return v >= 0 ? v : ad__isa_cap_read();
}

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define AD_X86_CLONES 1
#define AD_CPU_AVX512() (ad__isa_cap() >= AD_ISA_AVX512 && __builtin_cpu_supports("avx512f"))
#define AD_CPU_AVX2() (ad__isa_cap() >= AD_ISA_AVX2 && __builtin_cpu_supports("avx2"))
#else
#define AD_X86_CLONES 0
#define AD_CPU_AVX512() false
#define AD_CPU_AVX2() false
#endif

#endif

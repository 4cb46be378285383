/* autodiff/stream.c - non-temporal stores for large outputs (stream.h). */
#define _DEFAULT_SOURCE /* sysconf's _SC_LEVEL3_CACHE_SIZE */
#include "stream.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isa.h"

#if AD_X86_CLONES
#include <immintrin.h>
#endif

static _Atomic int64_t stream_min_v = -1; /* -1: not computed yet */

/* Whether this is one of Intel's x86 CPUs: the default of both choices
 * below.  Large outputs stream unless AD_STREAM says on Intel's, where it
 * was measured (an Ice Lake Xeon: a plain store read its line first, and
 * the elementwise ops ran at 0.55-0.61 of memcpy's bandwidth; streamed,
 * 0.70-0.90; docs/benchmarks.md).  On AMD's, plain stores over large
 * arrays already ran at 1.0-1.4 of memcpy (Zen 4 and 5), and an earlier
 * trial of stores through a buffer there was slower for add, neg and
 * sqrt; elsewhere ad__stream_store is a memcpy, an extra copy for
 * nothing. */
static bool intel_x86(void)
{
#if AD_X86_CLONES
    return __builtin_cpu_is("intel");
#else
    return false;
#endif
}

static int64_t stream_min_default(void)
{
    const char *e = getenv("AD_STREAM");
    if (e ? !strcmp(e, "0") : !intel_x86()) return INT64_MAX;
    long llc = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    /* Half the last-level cache: an output that large is mostly evicted
     * by its own inputs before anything reads it back, so keeping it in
     * the cache saves nothing, and the read for ownership costs a third
     * of a unary op's traffic.  The cache is shared with the other cores,
     * hence not the whole of it.  Never below 4 MiB, so that a system
     * reporting a small cache does not stream a training step's
     * activations, which the next op reads from the cache. */
    int64_t half = llc > 0 ? (int64_t)llc / 2 : (int64_t)16 << 20;
    return half > ((int64_t)4 << 20) ? half : (int64_t)4 << 20;
}

int64_t ad__stream_min(void)
{
    int64_t v = atomic_load_explicit(&stream_min_v, memory_order_relaxed);
    if (v >= 0) return v;
    v = stream_min_default();
    atomic_store_explicit(&stream_min_v, v, memory_order_relaxed);
    return v;
}

/* Software prefetch in the loops that read 8 streams side by side,
 * 2^24 floats, of memcpy's bandwidth.  Ice Lake Xeon, with it: sum 0.59
 * (one stream) -> 0.73-0.88, rows of 4096 summed 8 at a time 0.58-0.63 ->
 * 0.71-0.78 (the hardware followed 8 streams only to L2).  AMD EPYC
 * (Zen 5), with it and without: sum 0.63 -> 1.17, mean likewise, the
 * rows 0.42 -> 0.89 (5 interleaved pairs): its hardware prefetcher keeps
 * 8 streams going into L1 by itself, and a prefetch instruction per line
 * costs more than it brings, at 1 KB ahead as at 4 KB, to L1 or to L2.
 * The column sums too (8 rows in chunks of 32 columns, the next chunk
 * prefetched, against whole rows without: 0.71 -> 0.82, fold_kernels.inc). */
static _Atomic int prefetch_v = -1; /* -1: not read yet */

static int prefetch_default(void)
{
    const char *e = getenv("AD_PREFETCH");
    return e ? strcmp(e, "0") != 0 : intel_x86();
}

bool ad__prefetch_streams(void)
{
    int v = atomic_load_explicit(&prefetch_v, memory_order_relaxed);
    if (v >= 0) return v;
    v = prefetch_default();
    atomic_store_explicit(&prefetch_v, v, memory_order_relaxed);
    return v;
}

void ad__prefetch_testing(int on)
{
    atomic_store(&prefetch_v, on < 0 ? prefetch_default() : on > 0);
}

void ad__stream_testing_min(int64_t bytes)
{
    atomic_store(&stream_min_v, bytes < 0 ? stream_min_default() : bytes);
}

#if AD_X86_CLONES
__attribute__((target("avx512f"))) static void store_avx512(char *d, const char *s, size_t lines)
{
    for (size_t i = 0; i < lines; i++)
        _mm512_stream_si512((void *)(d + 64 * i), _mm512_load_si512((const void *)(s + 64 * i)));
}

__attribute__((target("avx2"))) static void store_avx2(char *d, const char *s, size_t lines)
{
    for (size_t i = 0; i < lines; i++) {
        __m256i a = _mm256_load_si256((const __m256i *)(s + 64 * i));
        __m256i b = _mm256_load_si256((const __m256i *)(s + 64 * i + 32));
        _mm256_stream_si256((__m256i *)(d + 64 * i), a);
        _mm256_stream_si256((__m256i *)(d + 64 * i + 32), b);
    }
}

__attribute__((target("sse2"))) static void store_sse2(char *d, const char *s, size_t lines)
{
    for (size_t i = 0; i < 4 * lines; i++)
        _mm_stream_si128((__m128i *)(d + 16 * i), _mm_load_si128((const __m128i *)(s + 16 * i)));
}
#endif

void ad__stream_store(void *dst, const void *src, size_t bytes)
{
    size_t lines = bytes / 64;
#if AD_X86_CLONES
    if (AD_CPU_AVX512()) store_avx512(dst, src, lines);
    else if (AD_CPU_AVX2()) store_avx2(dst, src, lines);
    else store_sse2(dst, src, lines);
#else
    memcpy(dst, src, lines * 64);
#endif
    memcpy((char *)dst + 64 * lines, (const char *)src + 64 * lines, bytes - 64 * lines);
}

void ad__stream_fence(void)
{
#if AD_X86_CLONES
    _mm_sfence();
#else
    atomic_thread_fence(memory_order_release);
#endif
}

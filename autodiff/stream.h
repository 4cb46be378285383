/* autodiff/stream.h - writing a large output past the cache (non-temporal
 * stores); never installed.
 *
 * A plain store first reads the line it writes into the cache (the "read
 * for ownership"), so an elementwise op over an array far larger than the
 * cache moves its output twice: a unary op 12 bytes per float32 element
 * instead of 8.  memcpy avoids this for large blocks with non-temporal
 * stores, which write whole lines straight to memory.  The elementwise
 * loops do the same for outputs of at least ad__stream_min() bytes: they
 * compute a chunk of the row into a buffer in L1 with the same loop as
 * always (so the same bits), then copy it out with ad__stream_store.  Below the
 * threshold an output stays in the cache for whatever reads it next, and
 * the loops store as before.  Figures in docs/benchmarks.md. */
#ifndef AD_STREAM_H
#define AD_STREAM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes per chunk of a streamed row, and the alignment the stores need. */
#define AD_STREAM_CHUNK_BYTES 1024
#define AD_STREAM_ALIGN 64

/* The smallest output, in bytes, that is streamed: half the last-level
 * cache (sysconf; 16 MiB where the system does not say; 4 MiB at the
 * least); INT64_MAX when streaming is off: AD_STREAM=0 in the environment
 * (read once), or, without AD_STREAM, a CPU other than Intel's x86 ones
 * (stream.c says why); AD_STREAM=1 streams on any. */
int64_t ad__stream_min(void);

/* Whether the loops that read several long streams side by side (the
 * pieces of a long sum, 8 rows summed at once, 8 rows summed down their
 * columns in chunks: fold_kernels.inc; the next block of a transposed
 * operand's AVX-512 tiles: ops_pointwise_t.c) also prefetch them in
 * software: by default on Intel's x86 CPUs, where it
 * helped, and not on others, where it hurt (stream.c gives the figures);
 * AD_PREFETCH=0 or 1 in the environment (read once) decides on any.  It
 * changes no value, only the speed. */
bool ad__prefetch_streams(void);

/* Tests only: ad__prefetch_streams() answers on (1) or off (0) from now
 * on, or (-1) as by default.  Not thread-safe against kernels running. */
void ad__prefetch_testing(int on);

/* Copies bytes from src to dst, both AD_STREAM_ALIGN-aligned: whole 64-byte
 * lines with non-temporal stores (the widest the CPU has within AD_ISA;
 * SSE2 on any x86-64), the tail with plain ones; memcpy elsewhere.  The
 * stores are weakly ordered: the writer calls ad__stream_fence() before
 * anything else (another thread) may read dst. */
void ad__stream_store(void *dst, const void *src, size_t bytes);
void ad__stream_fence(void);

/* Tests: streams every output of at least bytes (< 0: back to the
 * default), so that small tensors take the streamed path. */
void ad__stream_testing_min(int64_t bytes);

/* The chunks of one row of an elementwise kernel's contiguous output: out,
 * len elements of es bytes, one row of an output of whole bytes.  A kernel
 * writes the row as
 *
 *     ad_stream s = ad__stream_begin(o, len, sizeof *o, whole);
 *     _Alignas(AD_STREAM_ALIGN) T buf[AD_STREAM_CHUNK_BYTES / sizeof(T)];
 *     for (int64_t i0 = 0, m; (m = ad__stream_chunk(s, i0)) > 0; i0 += m) {
 *         if (ad__stream_in_place(s, i0)) {
 *             for (int64_t i = 0; i < m; i++) o[i0 + i] = f(x[i0 + i]);
 *         } else {
 *             for (int64_t i = 0; i < m; i++) buf[i] = f(x[i0 + i]);
 *             ad__stream_store(o + i0, buf, (size_t)m * sizeof *o);
 *         }
 *     }
 *     ad__stream_end(s);
 *
 * (two loops, not one through a pointer to either: the buffer's loop then
 * knows its destination aligned and apart from x, and ran 1.15x as fast).
 * Unless the whole output is at least ad__stream_min() bytes and the row at
 * least a chunk, that is one chunk, the row itself, in place.  Otherwise the elements before the row's first
 * aligned line are one chunk in place, and the rest go AD_STREAM_CHUNK_BYTES
 * at a time through the buffer (in L1), which ad__stream_store writes out
 * with non-temporal stores; ad__stream_end fences them.  (s is a value, so
 * that its fields stay in registers across the calls.) */
typedef struct ad_stream {
    int64_t len, head; /* head: elements written in place, from the first */
    int64_t chunk;     /* elements per chunk through the buffer */
    int on;
} ad_stream;

static inline ad_stream ad__stream_begin(const void *out, int64_t len, size_t es, int64_t whole)
{
    ad_stream s = {.len = len, .head = len, .chunk = (int64_t)(AD_STREAM_CHUNK_BYTES / es)};
    s.on = len * (int64_t)es >= AD_STREAM_CHUNK_BYTES && whole >= ad__stream_min();
    if (s.on) {
        int64_t h = (int64_t)((AD_STREAM_ALIGN - (uintptr_t)out % AD_STREAM_ALIGN) %
                              AD_STREAM_ALIGN / es);
        s.head = h < len ? h : len;
    }
    return s;
}

/* The number of elements in the chunk that starts at element i0; 0 at the
 * end of the row. */
static inline int64_t ad__stream_chunk(ad_stream s, int64_t i0)
{
    if (i0 >= s.len) return 0;
    if (i0 < s.head) return s.head - i0;
    return s.len - i0 < s.chunk ? s.len - i0 : s.chunk;
}

/* Whether the chunk at i0 is computed in place (else in the buffer). */
static inline int ad__stream_in_place(ad_stream s, int64_t i0) { return !s.on || i0 < s.head; }

static inline void ad__stream_end(ad_stream s)
{
    if (s.on) ad__stream_fence();
}

#endif

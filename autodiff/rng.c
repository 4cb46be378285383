/* autodiff/rng.c - counter-based random numbers.
 *
 * The generator is Philox-4x32-10 from Salmon, Moraes, Dror and Shaw,
 * "Parallel Random Numbers: As Easy as 1, 2, 3" (SC'11), the generator of
 * the Random123 library, cuRAND and PyTorch's CUDA backend.  It is a keyed
 * bijection of a 128-bit counter: ten rounds, each of which multiplies two
 * of the four 32-bit words by fixed odd constants, keeps both halves of the
 * 64-bit products and XORs the high halves into the other two words together
 * with the round key.  The key (our 64-bit seed) is advanced by the Weyl
 * constants (golden ratio and sqrt(3) - 1, scaled to 32 bits) between rounds.
 * It passes BigCrush with many rounds to spare, and since it is a pure
 * function of (key, counter) the value at any position is computed directly:
 * element i of a draw is philox(seed, counter + i), with no sequential state
 * to share between threads and the same numbers for any thread count.
 *
 * Checked against the Random123 known-answer vectors (tests/kat_vectors,
 * "philox4x32 10" lines).
 */
#include <float.h>

#include "internal.h"

/* Multipliers and Weyl key increments, from the paper. */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* 2 pi, for the angle of Box-Muller (M_PI is not ISO C). */
#define TWO_PI 6.283185307179586476925286766559

static void philox4x32_10(uint32_t ctr[4], uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * ctr[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * ctr[2];
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t c1 = ctr[1], c3 = ctr[3];
        ctr[0] = hi1 ^ c1 ^ k0;
        ctr[1] = lo1;
        ctr[2] = hi0 ^ c3 ^ k1;
        ctr[3] = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

/* 64 random bits at counter position c under key seed.  The position fills
 * the low two counter words; the upper two stay zero.  Of the 128 output
 * bits we use the first 64, so each position yields one value and a draw of
 * n values consumes exactly n positions. */
static uint64_t bits64(uint64_t seed, uint64_t c)
{
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
    return (uint64_t)ctr[0] << 32 | ctr[1];
}

/* The top 53 bits as k * 2^-53: every double of the form k/2^53 in [0, 1),
 * equally likely, which is all the resolution a double has near 1. */
static double unit(uint64_t seed, uint64_t c)
{
    return (double)(bits64(seed, c) >> 11) * 0x1p-53;
}

/* ---- validation ---------------------------------------------------------- */

static int check_rng(const char *fn, const ad_rng *rng)
{
    return rng ? 0 : ad__err(fn, "rng is NULL (declare an ad_rng and pass its address "
                                 "to ad_rng_init first)");
}

static int check_float_dtype(const char *fn, ad_dtype dtype)
{
    if (dtype == AD_FLOAT32 || dtype == AD_FLOAT64) return 0;
    if (dtype == AD_INT64)
        return ad__err(fn, "dtype must be float32 or float64, got int64 "
                           "(use ad_rng_below for random integers)");
    return ad__err(fn, "invalid dtype %d", (int)dtype);
}

/* Put before a loop over `n` elements to fill big tensors on all cores when
 * built with OpenMP.  Every element is computed from its own counter value,
 * so the result does not depend on the number of threads or on how the loop
 * is split. */
#ifdef _OPENMP
#define PARALLEL_FOR_N \
    _Pragma("omp parallel for schedule(static) if (n >= 32768) num_threads(ad__max_threads())")
#else
#define PARALLEL_FOR_N
#endif

/* ---- the log of streams used (ad_checkpoint) ------------------------------- */

_Thread_local ad__rng_log *ad__rng_logs;

void ad__rng_log_note(ad_rng *rng)
{
    for (ad__rng_log *l = ad__rng_logs; l; l = l->parent) {
        bool seen = false;
        for (int i = 0; i < l->n && !seen; i++) seen = l->rng[i] == rng;
        if (seen) continue;
        if (l->n == AD__RNG_LOG_MAX) {
            l->overflow = true;
            continue;
        }
        l->rng[l->n] = rng;
        l->counter[l->n++] = rng->counter;
    }
}

/* ---- public ---------------------------------------------------------------- */

void ad_rng_init(ad_rng *rng, uint64_t seed)
{
    if (!rng) {
        ad__err("ad_rng_init", "rng is NULL");
        return;
    }
    rng->seed = seed;
    rng->counter = 0;
}

double ad_rng_uniform(ad_rng *rng)
{
    if (check_rng("ad_rng_uniform", rng)) return NAN;
    ad__rng_note(rng);
    return unit(rng->seed, rng->counter++);
}

uint64_t ad_rng_below(ad_rng *rng, uint64_t n)
{
    if (check_rng("ad_rng_below", rng)) return 0;
    if (n == 0) {
        ad__err("ad_rng_below", "n must be at least 1");
        return 0;
    }
    /* r % n is biased towards small results unless r is drawn from a range
     * whose size is a multiple of n.  2^64 mod n = (2^64 - n) mod n, which
     * unsigned wrap-around computes as -n % n; rejecting the r below it
     * leaves [t, 2^64), of size 2^64 - (2^64 mod n), a multiple of n.  At
     * most half the range is rejected, so the expected number of draws is
     * below 2 (and is 1 plus a vanishing amount for small n). */
    uint64_t t = -n % n;
    ad__rng_note(rng);
    for (;;) {
        uint64_t r = bits64(rng->seed, rng->counter++);
        if (r >= t) return r % n;
    }
}

/* The float32 nearest x, stepped inwards by one ulp when rounding carried it
 * outside [lo, hi).  Rounding is monotonic, so from lo <= x < hi it can only
 * land on hi itself (or just above) or just below an unrepresentable lo. */
static float to_float_in(double x, double lo, double hi)
{
    float f = (float)x;
    if ((double)f >= hi) f = nextafterf(f, -INFINITY);
    if ((double)f < lo) f = nextafterf(f, INFINITY);
    return f;
}

/* The tensor a draw fills: shape checked, fresh storage of a floating
 * dtype, its element count n, and its data as d64 or d32 by dtype. */
typedef struct draws {
    ad_tensor *t;
    int64_t n;
    double *d64;
    float *d32;
} draws;
static int new_draws(const char *fn, ad_tape *tape, ad_dtype dtype, int ndim,
                     const int64_t *shape, draws *d)
{
    if (ad__check_shape(fn, ndim, shape, &d->n)) return -1;
    if (!(d->t = ad__alloc(fn, tape, dtype, ndim, shape))) return -1;
    d->d64 = dtype == AD_FLOAT64 ? d->t->storage->data : NULL;
    d->d32 = dtype == AD_FLOAT32 ? d->t->storage->data : NULL;
    return 0;
}

void ad__rand_fill(ad_rng *rng, int64_t n, double lo, double hi, double *d64, float *d32)
{
    ad__rng_note(rng);
    /* lo + (hi - lo) u is exact at u = 0 and monotonic in u, but hi - lo
     * overflows for bounds of opposite sign near DBL_MAX; the blend
     * lo (1 - u) + hi u cannot.  Either can round up to hi itself when u is
     * within an ulp of 1, so the result is clamped below hi. */
    const uint64_t seed = rng->seed, c0 = rng->counter;
    const double width = hi - lo;
    const bool blend = !isfinite(width);
    const double below_hi = nextafter(hi, -INFINITY);
    PARALLEL_FOR_N
    for (int64_t i = 0; i < n; i++) {
        double u = unit(seed, c0 + (uint64_t)i);
        double x = blend ? lo * (1.0 - u) + hi * u : lo + width * u;
        if (x >= hi) x = below_hi;
        if (x < lo) x = lo;
        if (d64) d64[i] = x;
        else d32[i] = to_float_in(x, lo, hi);
    }
    rng->counter = c0 + (uint64_t)n;
}

int ad__check_rand(const char *fn, const ad_rng *rng, ad_dtype dtype, double lo, double hi)
{
    if (check_rng(fn, rng) || check_float_dtype(fn, dtype)) return -1;
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return ad__err(fn, "need finite lo < hi, got [%g, %g)", lo, hi);
    if (dtype == AD_FLOAT32) {
        /* The interval must hold at least one float32, or there is nothing
         * to round to: the largest float32 below hi must not be below lo. */
        if (fabs(lo) > FLT_MAX || fabs(hi) > FLT_MAX)
            return ad__err(fn, "bounds [%g, %g) exceed the float32 range", lo, hi);
        float top = (float)hi;
        if ((double)top >= hi) top = nextafterf(top, -INFINITY);
        if ((double)top < lo) return ad__err(fn, "no float32 value lies in [%.17g, %.17g)", lo, hi);
    }
    return 0;
}

ad_tensor *ad_rand(ad_tape *tape, ad_rng *rng, ad_dtype dtype, int ndim,
                   const int64_t *shape, double lo, double hi)
{
    static const char *fn = "ad_rand";
    if (ad__check_rand(fn, rng, dtype, lo, hi)) return NULL;
    draws d;
    if (new_draws(fn, tape, dtype, ndim, shape, &d)) return NULL;
    ad__rand_fill(rng, d.n, lo, hi, d.d64, d.d32);
    return d.t;
}

int ad__check_randn(const char *fn, const ad_rng *rng, ad_dtype dtype, double mean, double std)
{
    if (check_rng(fn, rng) || check_float_dtype(fn, dtype)) return -1;
    if (!isfinite(mean) || !isfinite(std) || std < 0)
        return ad__err(fn, "need a finite mean and a finite std >= 0, got mean %g, std %g", mean,
                       std);
    /* |z| stays below 8.6 (see ad__randn_fill); a float32 result must not
     * overflow. */
    if (dtype == AD_FLOAT32 && fabs(mean) + 9.0 * std > FLT_MAX)
        return ad__err(fn, "mean %g and std %g overflow float32", mean, std);
    return 0;
}

void ad__randn_fill(ad_rng *rng, int64_t n, double mean, double std, double *d64, float *d32)
{
    ad__rng_note(rng);
    /* Box-Muller: for independent u1, u2 uniform on (0, 1],
     * sqrt(-2 ln u1) cos(2 pi u2) is standard normal (the pair (r, theta)
     * is the polar form of two independent normals; r^2 / 2 is Exp(1)).
     * Element i takes u1 and u2 from counters 2i and 2i+1 and uses only the
     * cosine, so it is a function of its own index alone.  u1 = 1 - unit()
     * lies in (0, 1], which keeps ln u1 finite: |z| <= sqrt(2 ln 2^53) ~ 8.6. */
    const uint64_t seed = rng->seed, c0 = rng->counter;
    PARALLEL_FOR_N
    for (int64_t i = 0; i < n; i++) {
        uint64_t c = c0 + 2 * (uint64_t)i;
        double u1 = 1.0 - unit(seed, c);
        double u2 = unit(seed, c + 1);
        double x = mean + std * (sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2));
        if (d64) d64[i] = x;
        else d32[i] = (float)x;
    }
    rng->counter = c0 + 2 * (uint64_t)n;
}

ad_tensor *ad_randn(ad_tape *tape, ad_rng *rng, ad_dtype dtype, int ndim,
                    const int64_t *shape, double mean, double std)
{
    static const char *fn = "ad_randn";
    if (ad__check_randn(fn, rng, dtype, mean, std)) return NULL;
    draws d;
    if (new_draws(fn, tape, dtype, ndim, shape, &d)) return NULL;
    ad__randn_fill(rng, d.n, mean, std, d.d64, d.d32);
    return d.t;
}

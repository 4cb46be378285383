/* tests/test_alloc.c - ad_set_allocator: a program's allocator sees every
 * allocation of the library and of nn, gets all of it back, and its
 * failures are the library's out-of-memory errors. */
#include <malloc.h> /* malloc_usable_size, for the offset allocator */
#include <nn/nn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../autodiff/gemm.h"
#include "../autodiff/internal.h"
#include "optest.h"

/* A counting allocator over the C library's, failing its fail_at-th call
 * (0: never).  It also checks the contract of alloc.h: no request for 0
 * bytes, no NULL to realloc or free. */
typedef struct counts {
    long calls, live, fail_at;
    long bad; /* contract violations seen */
} counts;

static bool fails(counts *c) { return ++c->calls == c->fail_at; }

static void *c_malloc(size_t n, void *ctx)
{
    counts *c = ctx;
    c->bad += n == 0;
    if (fails(c)) return NULL;
    void *p = malloc(n);
    c->live += p != NULL;
    return p;
}

static void *c_calloc(size_t count, size_t size, void *ctx)
{
    counts *c = ctx;
    c->bad += count == 0 || size == 0;
    if (fails(c)) return NULL;
    void *p = calloc(count, size);
    c->live += p != NULL;
    return p;
}

static void *c_realloc(void *p, size_t n, void *ctx)
{
    counts *c = ctx;
    c->bad += p == NULL || n == 0;
    if (fails(c)) return NULL;
    return realloc(p, n);
}

static void c_free(void *p, void *ctx)
{
    counts *c = ctx;
    c->bad += p == NULL;
    c->live--;
    free(p);
}

static ad_allocator counting(counts *c)
{
    return (ad_allocator){c_malloc, c_calloc, c_realloc, c_free, c};
}

/* A few training steps of a small nn model on a tape that is reset each
 * step, everything freed at the end; 0, or -1 at the first failure (the
 * error set, what was made freed).  loss_out gets the last loss. */
static int train(double *loss_out)
{
    int rc = -1;
    ad_rng rng;
    ad_rng_init(&rng, 7);
    nn_module *net = nn_linear(3, 2, true, AD_FLOAT64, &rng);
    nn_named_tensors *params = net ? nn_parameters(net) : NULL;
    nn_optim *opt = params ? nn_sgd(params, &(nn_sgd_options){.lr = 0.1}) : NULL;
    ad_tape *t = opt ? ad_tape_new() : NULL;
    char *buf = t ? ad_malloc(0) : NULL;
    if (!buf) goto done;
    ad_tape *prev = ad_tape_activate(t);
    for (int step = 0; step < 3; step++) {
        ad_tensor *x = ad_from_array(t, AD_FLOAT64, AD_SHAPE(4, 3),
                                     (double[]){1, 2, 3, 4, 5, 6, -1, 0, 1, 2, -2, 0.5});
        ad_tensor *y = x ? ad_ones(t, AD_FLOAT64, AD_SHAPE(4, 2)) : NULL;
        ad_tensor *out = y ? nn_forward(net, x) : NULL;
        ad_tensor *loss = out ? nn_mse_loss(out, y, NN_MEAN) : NULL;
        if (!loss || nn_optim_zero_grad(opt) || ad_backward(loss, NULL, 0) ||
            nn_optim_step(opt)) {
            ad_tape_activate(prev);
            goto done;
        }
        *loss_out = ad_item(loss);
        if (ad_tape_reset(t)) {
            ad_tape_activate(prev);
            goto done;
        }
    }
    ad_tape_activate(prev);
    char *bigger = ad_realloc(buf, 100);
    if (!bigger) goto done;
    buf = bigger;
    rc = 0;
done:
    ad_free(buf);
    ad_tape_free(t);
    nn_optim_free(opt);
    nn_named_tensors_free(params);
    nn_module_free(net);
    return rc;
}

START_TEST(counting_allocator_sees_everything)
{
    double ref, loss;
    ck_assert_int_eq(train(&ref), 0); /* under the C library's allocator */
    counts c = {0};
    ad_allocator a = counting(&c);
    ck_assert_int_eq(ad_set_allocator(&a), 0);
    size_t calls0 = ad__alloc_calls;
    ck_assert_int_eq(train(&loss), 0);
    /* Every allocation of the library reached the program's allocator. */
    ck_assert_int_eq(c.calls, (long)(ad__alloc_calls - calls0));
    ck_assert_int_gt(c.calls, 10);
    ck_assert(loss == ref);
    /* The freed tape and its tensor headers are pooled until the
     * allocator is switched, which gives them back. */
    ck_assert_int_gt(c.live, 0);
    ck_assert_int_eq(ad_set_allocator(NULL), 0);
    ck_assert_int_eq(c.live, 0);
    ck_assert_int_eq(c.bad, 0);
    /* The C library's allocator is back: nothing reaches c any more. */
    long calls = c.calls;
    ck_assert_int_eq(train(&loss), 0);
    ck_assert_int_eq(c.calls, calls);
}
END_TEST

START_TEST(user_allocator_failure_is_an_error)
{
    /* Every allocation of the run fails in turn: the call that needed it
     * fails with "out of memory", and what was made is freed.  A few
     * failures are absorbed (a parameter's label, which only names it in
     * messages): the run then gives its values unchanged. */
    double ref, loss;
    counts c = {0};
    ad_allocator a = counting(&c);
    ck_assert_int_eq(ad_set_allocator(&a), 0);
    ck_assert_int_eq(train(&ref), 0);
    ck_assert_int_eq(ad_set_allocator(NULL), 0);
    ck_assert_int_eq(c.live, 0);
    long total = c.calls, failed = 0;
    for (long n = 1; n <= total; n++) {
        c = (counts){.fail_at = n};
        ck_assert_int_eq(ad_set_allocator(&a), 0);
        ad_clear_error();
        if (train(&loss) == 0) {
            ck_assert_msg(loss == ref, "allocation %ld: loss %.17g, expected %.17g", n, loss, ref);
        } else {
            failed++;
            ck_assert_ptr_nonnull(ad_error());
            ck_assert_msg(strstr(ad_error(), "out of memory"), "allocation %ld: '%s'", n,
                          ad_error());
        }
        ad_clear_error();
        ck_assert_int_eq(ad_set_allocator(NULL), 0);
        ck_assert_msg(c.live == 0, "allocation %ld: %ld blocks not freed", n, c.live);
        ck_assert_int_eq(c.bad, 0);
    }
    ck_assert_int_gt(failed, total / 2);
    /* And once no allocation fails, the run gives its values again. */
    c = (counts){0};
    ck_assert_int_eq(ad_set_allocator(&a), 0);
    ck_assert_int_eq(train(&loss), 0);
    ck_assert(loss == ref);
    ck_assert_int_eq(ad_set_allocator(NULL), 0);
    ck_assert_int_eq(c.live, 0);
}
END_TEST

START_TEST(incomplete_allocator_is_refused)
{
    counts c = {0};
    ad_allocator a = counting(&c);
    ck_assert_int_eq(ad_set_allocator(&a), 0);
    ad_allocator half = {.malloc_fn = c_malloc, .free_fn = c_free};
    ck_assert_error_rc(ad_set_allocator(&half), "must all be set");
    /* The counting allocator stays installed. */
    void *p = ad_malloc(8);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(c.live, 1);
    ad_free(p);
    ck_assert_int_eq(c.live, 0);
    ck_assert_int_eq(ad_set_allocator(NULL), 0);
}
END_TEST

/* The VmFlags line of the mapping that holds p, from /proc/self/smaps
 * (Linux); 0 when there is no such file or mapping. */
static int vmflags_of(const void *p, char *flags, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    bool inside = false;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= a && (uintptr_t)p < b;
        } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(flags, cap, "%s", line + 8);
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

/* The C library's allocator (the default) advises huge pages for the
 * whole 2 MB pages inside a block of 4 MB or more, and not for small
 * blocks (alloc.c): the mapping holding the block's middle carries the
 * kernel's "hg" flag.  Skipped where /proc/self/smaps does not exist. */
START_TEST(large_blocks_are_advised_huge_pages)
{
#if defined(__linux__)
    size_t big = (size_t)16 << 20;
    unsigned char *p = ad_malloc(big);
    ck_assert_ptr_nonnull(p);
    char flags[512];
    if (!vmflags_of(p + big / 2, flags, sizeof flags)) {
        ad_free(p);
        return; /* no smaps: nothing to look at */
    }
    ck_assert_msg(strstr(flags, " hg") != NULL, "VmFlags of a 16 MB block:%s", flags);
    ad_free(p);
    /* a small block is left as it comes */
    unsigned char *q = ad_malloc(4096);
    ck_assert_ptr_nonnull(q);
    if (vmflags_of(q, flags, sizeof flags)) ck_assert_ptr_null(strstr(flags, " hg"));
    ad_free(q);
#endif
}
END_TEST

/* An allocator whose blocks start 16 bytes past a cache line, as glibc's
 * large blocks do (16 bytes into a page): each block is 64 bytes more from
 * the C library's, given out at byte 16 + (64-byte alignment of the real
 * block); its free finds the real block again from the byte before. */
static void *off16_malloc(size_t n, void *ctx)
{
    counts *c = ctx;
    unsigned char *p = malloc(n + 128);
    if (!p) return NULL;
    c->live++;
    size_t lead = 16 + (64 - (size_t)((uintptr_t)p % 64)) % 64; /* 16 .. 79 */
    p[lead - 1] = (unsigned char)lead;
    return p + lead;
}
static void *off16_calloc(size_t count, size_t size, void *ctx)
{
    void *p = off16_malloc(count * size, ctx);
    if (p) memset(p, 0, count * size);
    return p;
}
static void off16_free(void *q, void *ctx)
{
    counts *c = ctx;
    unsigned char *p = q;
    c->live--;
    free(p - p[-1]);
}
static void *off16_realloc(void *q, size_t n, void *ctx)
{
    /* a new block, and what the old one holds up to n bytes (its size
     * from the C library's malloc_usable_size, less the lead) */
    void *p = off16_malloc(n, ctx);
    if (!p) return NULL;
    unsigned char *old = q;
    size_t have = malloc_usable_size(old - old[-1]) - old[-1];
    memcpy(p, q, have < n ? have : n);
    off16_free(q, ctx);
    return p;
}

/* Tensors the library allocates start on a 64-byte line from 64 bytes on,
 * whatever the allocator's alignment (tensor.c, ad__storage_alloc): a
 * kernel's vector loads and stores then touch one line each, not two (the
 * optimiser's update of an MLP took 35 % less time).  Persistent tensors of
 * every making, a module's parameters and their gradients, a detached
 * tensor carried over a reset, and those on a tape; under the offset
 * allocator every block is freed through it (live 0 at the end). */
static bool on_line(ad_tensor *t) { return t && (uintptr_t)ad_data(t) % 64 == 0; }

START_TEST(tensor_data_starts_on_a_cache_line)
{
    counts c = {0};
    ad_allocator a = {off16_malloc, off16_calloc, off16_realloc, off16_free, &c};
    ck_assert_int_eq(ad_set_allocator(&a), 0);
    {
        unsigned char *raw = ad_malloc(4096); /* the allocator really is off */
        ck_assert_ptr_nonnull(raw);
        ck_assert_int_eq((uintptr_t)raw % 64, 16);
        ad_free(raw);
    }
    ad_tensor *e16 = ad_empty(NULL, AD_FLOAT32, AD_SHAPE(16));            /* 64 bytes */
    ad_tensor *big = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(256, 784));      /* 800 KB */
    ad_tensor *huge = ad_full(NULL, AD_FLOAT64, AD_SHAPE(1 << 20), 2.0);  /* 8 MB */
    ad_tensor *arr = ad_from_array(NULL, AD_FLOAT64, AD_SHAPE(3, 4),
                                   (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    ad_tensor *tiny = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(3), (float[]){1, 2, 3});
    ck_assert(on_line(e16) && on_line(big) && on_line(huge) && on_line(arr));
    ck_assert_ptr_nonnull(tiny); /* 12 bytes: as the allocator gives it */
    ck_assert_double_eq(((double *)ad_data(huge))[(1 << 20) - 1], 2.0);
    ck_assert_float_eq(((float *)ad_data(big))[256 * 784 - 1], 0.0f);
    ck_assert_double_eq(((double *)ad_data(arr))[11], 12);
    ck_assert_double_eq(((float *)ad_data(tiny))[2], 3);

    ad_rng rng;
    ad_rng_init(&rng, 3);
    nn_module *lin = nn_linear(784, 256, true, AD_FLOAT32, &rng);
    nn_named_tensors *ps = lin ? nn_parameters(lin) : NULL;
    ck_assert_ptr_nonnull(ps);
    ad_tape *t = ad_tape_new();
    ad_tape *prev = ad_tape_activate(t);
    ad_tensor *x = ad_ones(t, AD_FLOAT32, AD_SHAPE(8, 784));
    ck_assert(on_line(x));
    ad_tensor *loss = ad_sum(nn_forward(lin, x), NULL, 0, false);
    ck_assert_int_eq(ad_backward(loss, NULL, 0), 0);
    for (int k = 0; k < ps->n; k++) {
        ad_tensor *p = ps->tensors[k];
        ck_assert_msg(on_line(p) && on_line(ad_tensor_grad(p)), "parameter %d", k);
    }
    /* h = detach(h) across a reset: its values move to heap storage */
    ad_tensor *h = ad_detach(ad_mul_scalar(x, 3.0));
    ck_assert_int_eq(ad_tape_reset(t), 0);
    ck_assert(on_line(h));
    ck_assert_double_eq(((float *)ad_data(h))[8 * 784 - 1], 3);
    ad_tape_activate(prev);
    ad_tape_free(t);

    nn_named_tensors_free(ps);
    nn_module_free(lin);
    ad_tensor_free(e16);
    ad_tensor_free(big);
    ad_tensor_free(huge);
    ad_tensor_free(arr);
    ad_tensor_free(tiny);
    ck_assert_int_eq(ad_set_allocator(NULL), 0);
    ck_assert_int_eq(c.live, 0);
}
END_TEST

/* A runner whose parts other than 0 each run on a thread of their own,
 * made for the call and joined before the next part starts (one at a time:
 * the counting allocator is not thread-safe), part 0 last on the caller. */
typedef struct part_job {
    ad_parallel_task task;
    void *ctx;
    int part, parts;
} part_job;

static void *run_part(void *arg)
{
    part_job *j = arg;
    j->task(j->ctx, j->part, j->parts);
    return NULL;
}

static void thread_runner(void *pool, ad_parallel_task task, void *ctx)
{
    int parts = *(int *)pool;
    for (int p = parts - 1; p >= 1; p--) {
        part_job j = {task, ctx, p, parts};
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, run_part, &j), 0);
        ck_assert_int_eq(pthread_join(th, NULL), 0);
    }
    task(ctx, 0, parts);
}

/* The parts of a split product other than the caller's pack into buffers
 * of their threads (ad__thread_scratch): from the installed allocator,
 * given back when the thread exits, and by ad_set_allocator for a thread
 * that has not; the product's bits are the one-thread product's. */
START_TEST(thread_scratch_goes_back_to_its_allocator)
{
    enum { M = 70, K = 150, N = 90 };
    static float a[M * K], b[K * N], want[M * N], got[M * N];
    for (int i = 0; i < M * K; i++) a[i] = (float)((i * 7) % 13) - 6;
    for (int i = 0; i < K * N; i++) b[i] = (float)((i * 5) % 11) / 4 - 1;
    ad__gemm_testing_choice(AD_GEMM_BUILTIN);
    ck_assert_int_eq(ad__gemm(NULL, AD_FLOAT32, M, N, K, a, K, 1, b, N, 1, want, N), 0);
    counts c = {0};
    ad_allocator al = counting(&c);
    ck_assert_int_eq(ad_set_allocator(&al), 0);
    int parts = 3;
    ad__gemm_testing_parallel(1);
    ck_assert_int_eq(ad_set_parallel_runner(thread_runner, &parts, parts), 0);
    ck_assert_int_eq(ad__gemm(NULL, AD_FLOAT32, M, N, K, a, K, 1, b, N, 1, got, N), 0);
    ck_assert_int_eq(ad_set_parallel_runner(NULL, NULL, 0), 0);
    ad__gemm_testing_parallel(0);
    ad__gemm_testing_choice(-1);
    ck_assert(memcmp(want, got, sizeof want) == 0);
    /* the product's own buffer (parts 0) and each part thread's: given
     * back, the threads' at their exit */
    ck_assert_int_ge(c.calls, 1 + (parts - 1));
    ck_assert_int_eq(c.live, 0);
    /* This thread's: kept from call to call, grown, aligned, written whole. */
    long calls = c.calls;
    char *p = ad__thread_scratch(1000);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq((int)((uintptr_t)p % 64), 0);
    memset(p, 1, 1000);
    ck_assert_ptr_eq(ad__thread_scratch(600), p);
    ck_assert_int_eq(c.calls, calls + 1);
    char *q = ad__thread_scratch(100000);
    ck_assert_ptr_nonnull(q);
    ck_assert_int_eq((int)((uintptr_t)q % 64), 0);
    memset(q, 2, 100000);
    ck_assert_int_eq(c.calls, calls + 2);
    ck_assert_int_eq(c.live, 1);
    /* a switch of allocator gives it back to the one that gave it */
    ck_assert_int_eq(ad_set_allocator(NULL), 0);
    ck_assert_int_eq(c.live, 0);
    ck_assert_int_eq(c.bad, 0);
    p = ad__thread_scratch(100);
    ck_assert_ptr_nonnull(p);
    memset(p, 3, 100);
    ck_assert_int_eq(c.calls, calls + 2); /* from the C library's now */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tcase_create("alloc");
    tcase_add_test(tc, counting_allocator_sees_everything);
    tcase_add_test(tc, user_allocator_failure_is_an_error);
    tcase_add_test(tc, incomplete_allocator_is_refused);
    tcase_add_test(tc, large_blocks_are_advised_huge_pages);
    tcase_add_test(tc, tensor_data_starts_on_a_cache_line);
    tcase_add_test(tc, thread_scratch_goes_back_to_its_allocator);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

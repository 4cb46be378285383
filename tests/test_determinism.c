/* tests/test_determinism.c - same seed, same binary, same results.
 *
 * A small training loop (SGD by hand on persistent weights: a convolution,
 * max pooling, dropout, a dense layer, cross-entropy) is run from a seed
 * and reduced to bytes: the loss of every step and the final parameters.
 *
 *   - One thread: two runs in one process, and two runs in two processes
 *     (this program re-executed with --dump, writing the bytes to a file),
 *     are bit-identical.
 *   - With OpenMP (rng.c, the unfold/fold kernels and the built-in GEMM
 *     use it): runs with 1, 2 and 3 threads agree within the documented
 *     tolerance (relative 1e-12 on every loss and parameter in float64;
 *     docs/reliability.md), and are checked bit-identical where the
 *     library promises it: ad_rand / ad_randn (every element a function of
 *     its own counter), unfold / fold and the built-in GEMM (each output
 *     element computed by one thread in a fixed order), and float64
 *     reductions (sum, mean, max, var: computed in one pass in a fixed
 *     order whatever the thread count).
 *   - Across processes with OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set
 *     to 1 and 2 (so a BLAS build's own threads are covered too), the
 *     results are compared the same way. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "optest.h"

/* ---- the training loop ---------------------------------------------------------- */
#define STEPS 4
#define NB 32 /* batch */
/* Images [NB, 1, 16, 16]; a 3x3 convolution to CO channels (its unfold
 * passes the kernels' threading threshold), 2x2 max pooling, dropout, and
 * a dense layer to NCLS classes. */
enum { CO = 8, HW = 16, PH = HW / 2, FEAT = CO * PH * PH, NCLS = 10 };

typedef struct run {
    double loss[STEPS];
    int64_t nparams;
    double *params; /* every parameter, concatenated */
} run;

static void run_free(run *r)
{
    free(r->params);
    r->params = NULL;
}

static ad_tensor *param(ad_rng *rng, int nd, const int64_t *sh, double std)
{
    ad_tensor *p = ad_randn(NULL, rng, AD_FLOAT64, nd, sh, 0, std);
    ck_assert_msg(p != NULL, "%s", ad_error());
    ck_assert_int_eq(ad_set_requires_grad(p, true), 0);
    return p;
}

static void train(uint64_t seed, run *out)
{
    ad_rng rng;
    ad_rng_init(&rng, seed);
    ad_tensor *p[4];
    p[0] = param(&rng, 4, (int64_t[]){CO, 1, 3, 3}, 0.3); /* conv weight */
    p[1] = param(&rng, 1, (int64_t[]){CO}, 0.1);          /* conv bias */
    p[2] = param(&rng, 2, (int64_t[]){FEAT, NCLS}, 0.05); /* dense */
    p[3] = param(&rng, 1, (int64_t[]){NCLS}, 0.1);
    /* A fixed data set: NB images and labels. */
    ad_tensor *images = ad_rand(NULL, &rng, AD_FLOAT64, AD_SHAPE(NB, 1, HW, HW), -1, 1);
    int64_t labels[NB];
    for (int i = 0; i < NB; i++) labels[i] = (int64_t)ad_rng_below(&rng, NCLS);
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    for (int step = 0; step < STEPS; step++) {
        ad_tensor *y = ad_from_array(tape, AD_INT64, AD_SHAPE(NB), labels);
        ad_tensor *h = ad_conv2d(images, p[0], p[1], &(ad_conv2d_params){.padding = {1, 1}});
        h = ad_max_pool2d(ad_relu(h), (int[]){2, 2}, NULL, NULL);
        h = ad_dropout(h, 0.25, true, &rng);
        h = ad_reshape(h, AD_SHAPE(NB, FEAT));
        ad_tensor *logits = ad_add(ad_matmul(h, p[2]), p[3]);
        ad_tensor *loss = ad_cross_entropy(logits, y, AD_REDUCTION_MEAN);
        ck_assert_msg(loss != NULL, "%s", ad_error());
        for (int k = 0; k < 4; k++) ck_assert_int_eq(ad_zero_grad(p[k]), 0);
        ck_assert_msg(ad_backward(loss, NULL, 0) == 0, "%s", ad_error());
        out->loss[step] = ad_item(loss);
        for (int k = 0; k < 4; k++) {
            double *d = ad_data(p[k]);
            const double *g = ad_data(ad_tensor_grad(p[k]));
            for (int64_t i = 0; i < ad_numel(p[k]); i++) d[i] -= 0.1 * g[i];
        }
        ck_assert_int_eq(ad_tape_reset(tape), 0);
    }
    out->nparams = 0;
    for (int k = 0; k < 4; k++) out->nparams += ad_numel(p[k]);
    out->params = malloc((size_t)out->nparams * sizeof(double));
    int64_t off = 0;
    for (int k = 0; k < 4; k++) {
        ck_assert_int_eq(ad_to_array(p[k], out->params + off), 0);
        off += ad_numel(p[k]);
        ad_tensor_free(p[k]);
    }
    ad_tape_free(tape);
    ad_tensor_free(images);
}

static bool same_bits(const run *a, const run *b)
{
    return a->nparams == b->nparams && memcmp(a->loss, b->loss, sizeof a->loss) == 0 &&
           memcmp(a->params, b->params, (size_t)a->nparams * sizeof(double)) == 0;
}

/* The documented tolerance between thread counts. */
#define THREAD_RTOL 1e-12
static void expect_close_runs(const run *a, const run *b, const char *what)
{
    ck_assert_int_eq(a->nparams, b->nparams);
    for (int i = 0; i < STEPS; i++)
        ck_assert_msg(fabs(a->loss[i] - b->loss[i]) <= THREAD_RTOL * fabs(a->loss[i]),
                      "%s: loss %d: %.17g vs %.17g", what, i, a->loss[i], b->loss[i]);
    for (int64_t i = 0; i < a->nparams; i++)
        ck_assert_msg(fabs(a->params[i] - b->params[i]) <=
                          THREAD_RTOL * (fabs(a->params[i]) + 1e-3),
                      "%s: parameter %lld: %.17g vs %.17g", what, (long long)i, a->params[i],
                      b->params[i]);
}

static void set_threads(int n)
{
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* ---- in one process -------------------------------------------------------------- */
START_TEST(same_seed_same_bits_in_process)
{
    set_threads(1);
    run a, b, c;
    train(7, &a);
    train(7, &b);
    ck_assert_msg(same_bits(&a, &b), "two runs with seed 7 differ");
    train(8, &c);
    ck_assert_msg(!same_bits(&a, &c), "seeds 7 and 8 give the same run");
    for (int i = 0; i < STEPS; i++) ck_assert(isfinite(a.loss[i]));
    ck_assert(a.loss[STEPS - 1] < a.loss[0]); /* it does train */
    run_free(&a);
    run_free(&b);
    run_free(&c);
}
END_TEST

START_TEST(thread_counts_agree)
{
#ifndef _OPENMP
    fprintf(stderr, "test_determinism: built without OpenMP, thread counts not varied\n");
#endif
    run r[3];
    for (int t = 0; t < 3; t++) {
        set_threads(t + 1);
        train(7, &r[t]);
    }
    set_threads(1);
    int identical = 0;
    for (int t = 1; t < 3; t++) {
        expect_close_runs(&r[0], &r[t], t == 1 ? "1 vs 2 threads" : "1 vs 3 threads");
        identical += same_bits(&r[0], &r[t]);
    }
    fprintf(stderr, "test_determinism: 2 and 3 threads: %d of 2 runs bit-identical to 1 thread\n",
            identical);
    for (int t = 0; t < 3; t++) run_free(&r[t]);
}
END_TEST

/* The pieces that promise bit-identical results with any thread count. */
START_TEST(parallel_kernels_are_bit_identical)
{
    enum { N = 1 << 17 };
    double *ref[6] = {0}, *got = malloc(N * sizeof(double));
    for (int t = 1; t <= 3; t++) {
        set_threads(t);
        ad_tape *tape = ad_tape_new();
        ad_rng rng;
        ad_rng_init(&rng, 99);
        ad_tensor *outs[6];
        /* rng: 2^17 elements, above its parallel threshold */
        outs[0] = ad_rand(tape, &rng, AD_FLOAT64, AD_SHAPE(N), -3, 5);
        outs[1] = ad_randn(tape, &rng, AD_FLOAT32, AD_SHAPE(N), 1, 2);
        /* unfold / fold above their threshold (2^16 work) */
        ad_tensor *img = ad_reshape(outs[0], AD_SHAPE(2, 4, 128, 128));
        ad_tensor *cols = ad_unfold(img, (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}, NULL);
        outs[2] = ad_reshape(ad_narrow(ad_flatten(cols, 0, -1), 0, 0, N), AD_SHAPE(N));
        /* float32: fold's per-thread scratch planes */
        ad_tensor *back = ad_fold(ad_cast(cols, AD_FLOAT32), (int[]){128, 128},
                                  (int[]){3, 3}, (int[]){2, 2}, (int[]){1, 1}, NULL);
        outs[3] = ad_flatten(back, 0, -1);
        /* a product above the GEMM's threshold (2^18 multiply-adds) */
        ad_tensor *a = ad_reshape(outs[0], AD_SHAPE(256, 512));
        outs[4] = ad_flatten(ad_matmul(a, ad_transpose(a, 0, 1)), 0, -1);
        /* float64 reductions over 2^17 elements */
        ad_tensor *x = outs[0];
        double r[5] = {ad_item(ad_sum(x, NULL, 0, false)), ad_item(ad_mean(x, NULL, 0, false)),
                       ad_item(ad_max(x, NULL, 0, false)), ad_item(ad_var(x, NULL, 0, 1, false)),
                       ad_item(ad_logsumexp(x, NULL, 0, false))};
        outs[5] = ad_from_array(tape, AD_FLOAT64, AD_SHAPE(5), r);
        for (int k = 0; k < 6; k++) {
            ck_assert_msg(outs[k] != NULL, "%s", ad_error());
            int64_t n = ad_numel(outs[k]);
            ck_assert_int_le(n, N);
            ck_assert_int_eq(ad_to_array(outs[k], got), 0);
            if (t == 1) {
                ref[k] = malloc((size_t)n * sizeof(double));
                memcpy(ref[k], got, (size_t)n * sizeof(double));
            } else {
                ck_assert_msg(memcmp(ref[k], got, (size_t)n * sizeof(double)) == 0,
                              "output %d differs between 1 and %d threads", k, t);
            }
        }
        ad_tape_free(tape);
    }
    set_threads(1);
    for (int k = 0; k < 6; k++) free(ref[k]);
    free(got);
}
END_TEST

/* ---- across processes --------------------------------------------------------------
 * The child is this program with --dump FILE SEED: it trains and writes
 * the run's bytes, inside a one-test suite of its own so that the loop's
 * ck_asserts work there too. */
static const char *dump_path;
static uint64_t dump_seed;

START_TEST(dump_run)
{
    run r;
    train(dump_seed, &r);
    FILE *f = fopen(dump_path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(r.loss, sizeof r.loss, 1, f), 1);
    ck_assert_int_eq(fwrite(&r.nparams, sizeof r.nparams, 1, f), 1);
    ck_assert_int_eq(fwrite(r.params, sizeof(double), (size_t)r.nparams, f), (size_t)r.nparams);
    ck_assert_int_eq(fclose(f), 0);
    run_free(&r);
}
END_TEST

static int dump(const char *path, uint64_t seed)
{
    dump_path = path;
    dump_seed = seed;
    Suite *s = suite_create("determinism-child");
    TCase *tc = tcase_create("dump");
    tcase_add_test(tc, dump_run);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_SILENT);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

static const char *self_path;

/* Runs the child with `threads` threads; reads its bytes into *r. */
static void child_run(int threads, run *r)
{
    char path[] = "/tmp/ad_determinism_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char n[16];
        snprintf(n, sizeof n, "%d", threads);
        setenv("OMP_NUM_THREADS", n, 1);
        setenv("OPENBLAS_NUM_THREADS", n, 1);
        execl(self_path, self_path, "--dump", path, "7", (char *)NULL);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    /* Opened, then removed at once, so no check below leaves it behind. */
    FILE *f = fopen(path, "rb");
    unlink(path);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: status %d",
                  status);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fread(r->loss, sizeof r->loss, 1, f), 1);
    ck_assert_int_eq(fread(&r->nparams, sizeof r->nparams, 1, f), 1);
    ck_assert(r->nparams > 0 && r->nparams < 1000000);
    r->params = malloc((size_t)r->nparams * sizeof(double));
    ck_assert_int_eq(fread(r->params, sizeof(double), (size_t)r->nparams, f),
                     (size_t)r->nparams);
    ck_assert_int_eq(fgetc(f), EOF);
    fclose(f);
}

START_TEST(same_seed_same_bits_across_processes)
{
    run a, b, c, here;
    child_run(1, &a);
    child_run(1, &b);
    ck_assert_msg(same_bits(&a, &b), "two processes with one thread differ");
    set_threads(1);
    train(7, &here);
    ck_assert_msg(same_bits(&a, &here), "a child process and this one differ");
    child_run(2, &c);
    expect_close_runs(&a, &c, "processes with 1 and 2 threads");
    fprintf(stderr, "test_determinism: processes with 1 and 2 threads: %s\n",
            same_bits(&a, &c) ? "bit-identical" : "within tolerance, not bit-identical");
    run_free(&a);
    run_free(&b);
    run_free(&c);
    run_free(&here);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--dump") == 0)
        return dump(argv[2], strtoull(argv[3], NULL, 10));
    /* The path of this binary for the children (argv[0] may be relative to
     * a directory the test runner is no longer in). */
    static char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    self_path = n > 0 ? (exe[n] = '\0', exe) : argv[0];

    Suite *s = suite_create("determinism");
    TCase *tc = tcase_create("determinism");
    tcase_add_test(tc, same_seed_same_bits_in_process);
    tcase_add_test(tc, thread_counts_agree);
    tcase_add_test(tc, parallel_kernels_are_bit_identical);
    tcase_add_test(tc, same_seed_same_bits_across_processes);
    suite_add_tcase(s, tc);
    return ot_run(s);
}

/* bench/dist_bench.c - the communication side of data-parallel training
 * (nn/dist.h), run under mpirun by bench/dist.
 *
 *   dist_bench allreduce [REPS]
 *       MPI_Allreduce(MPI_IN_PLACE, float sum) of 1 KB ... 64 MB: the
 *       median time of REPS calls (after warm-up) per size, one JSON line
 *       per size: {"bytes": ..., "us": ..., "min_us": ...}.  bench/dist
 *       fits the latency and bandwidth of the ring model to these.
 *   dist_bench step PARAMS_M BUCKET_MB OVERLAP STEPS
 *       nn_trainer_step of a stack of Linear(1024, 1024) layers holding
 *       about PARAMS_M million parameters, per-rank batch 8 (so the step is
 *       mostly communication), with nn_dist's buckets of BUCKET_MB and
 *       OVERLAP 0/1; prints {"ms_per_step", "reduce_ms", "pack_ms",
 *       "buckets"} from rank 0.
 *   dist_bench mlp-comm [REPS]
 *       The MLP's 203,533 floats (its gradients and the three extras),
 *       REPS times each (median and fastest, the slowest rank's): the
 *       blocking MPI_Allreduce; MPI_Iallreduce + MPI_Wait (Open MPI's
 *       libnbc, which the sleeping wait and overlap use); and zeroing the
 *       buffer (what zero_grad does before backward) after this rank's own
 *       writes and after an MPI_Allreduce followed by a read pass (the
 *       optimiser): the other rank read the buffer during the reduction,
 *       so its cache lines must be taken back before they are written.
 *       The same zeroing after an allreduce two other ways: in pieces of
 *       784 floats (as OpenBLAS clears C a column at a time for a product
 *       at beta = 0: the MLP's first weight gradient is 256 such columns)
 *       and with non-temporal stores (x86-64; -1 elsewhere).
 *       Then the sharded update's pair (nn_dist_options.shard): the
 *       gradients' MPI_Reduce_scatter into this rank's part of a second
 *       buffer, and MPI_Allgatherv in place of that buffer.
 *       One JSON line from rank 0.
 *   dist_bench average [REPS]
 *       The library's averaging of the MLP's 203,530 gradients
 *       (nn_dist_average_grads after nn_dist_attach_params of one tensor
 *       of that size), through the shared-memory window and through
 *       MPI_Allreduce (nn_dist_options.shared_memory 1 and -1, two
 *       attachments taking turns), REPS times each, and zeroing the
 *       gradient after a read pass that follows each (what the optimiser
 *       and the next zero_grad do).  Median and fastest, the slowest
 *       rank's; one JSON line from rank 0.
 */
#include <nn/dist.h>
#include <nn/nn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* g[0, n) = 0 in memsets of 784 floats. */
static void zero_pieces(float *g, int n)
{
    for (int j = 0; j < n; j += 784)
        memset(g + j, 0, (size_t)(n - j < 784 ? n - j : 784) * sizeof *g);
}

/* g[0, n) = 0 with non-temporal stores, which write whole lines without
 * reading them first; false where there are none. */
static bool zero_stream(float *g, int n)
{
#if defined(__SSE2__)
    int j = 0;
    for (; j < n && ((uintptr_t)(g + j) & 15); j++) g[j] = 0;
    for (; j + 4 <= n; j += 4) _mm_stream_ps(g + j, _mm_setzero_ps());
    for (; j < n; j++) g[j] = 0;
    _mm_sfence();
    return true;
#else
    (void)g, (void)n;
    return false;
#endif
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int allreduce(nn_dist *d, int reps)
{
    MPI_Comm comm = nn_dist_comm(d);
    size_t max = (size_t)64 << 20;
    float *buf = calloc(max / sizeof(float), sizeof(float));
    double *t = calloc((size_t)reps, sizeof *t);
    if (!buf || !t) return ad_set_error("dist_bench: out of memory");
    for (size_t bytes = 1024; bytes <= max; bytes *= 4) {
        int n = (int)(bytes / sizeof(float));
        for (int w = 0; w < 3; w++) MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, comm);
        int r = bytes >= ((size_t)16 << 20) ? (reps + 3) / 4 : reps;
        for (int i = 0; i < r; i++) {
            MPI_Barrier(comm);
            double t0 = MPI_Wtime();
            if (MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, comm) != MPI_SUCCESS)
                return ad_set_error("dist_bench: MPI_Allreduce failed");
            t[i] = MPI_Wtime() - t0;
        }
        /* the slowest rank's time is the collective's */
        MPI_Allreduce(MPI_IN_PLACE, t, r, MPI_DOUBLE, MPI_MAX, comm);
        qsort(t, (size_t)r, sizeof *t, cmp);
        if (nn_dist_rank(d) == 0)
            printf("{\"bytes\": %zu, \"us\": %.2f, \"min_us\": %.2f}\n", bytes, 1e6 * t[r / 2],
                   1e6 * t[0]);
    }
    free(buf);
    free(t);
    return 0;
}

/* Median and fastest of t[0..r), the slowest rank's, in microseconds. */
static void summary(MPI_Comm comm, double *t, int r, double *median, double *fastest)
{
    MPI_Allreduce(MPI_IN_PLACE, t, r, MPI_DOUBLE, MPI_MAX, comm);
    qsort(t, (size_t)r, sizeof *t, cmp);
    *median = 1e6 * t[r / 2];
    *fastest = 1e6 * t[0];
}

static int mlp_comm(nn_dist *d, int reps)
{
    MPI_Comm comm = nn_dist_comm(d);
    const int n = 203533;
    float *g = calloc((size_t)n, sizeof *g), *v = calloc((size_t)n, sizeof *v);
    double *t[8];
    bool streams = true;
    for (int k = 0; k < 8; k++)
        if (!(t[k] = calloc((size_t)reps, sizeof(double))))
            return ad_set_error("dist_bench: out of memory");
    if (!g || !v) return ad_set_error("dist_bench: out of memory");
    volatile float sink = 0;
    int rank = nn_dist_rank(d), W = nn_dist_world_size(d);
    /* the parts as nn_dist cuts them: the gradients without the extras */
    int *counts = calloc((size_t)W, sizeof *counts), *displs = calloc((size_t)W, sizeof *displs);
    if (!counts || !displs) return ad_set_error("dist_bench: out of memory");
    for (int r = 0; r < W; r++) {
        displs[r] = (int)((int64_t)(n - 3) * r / W);
        counts[r] = (int)((int64_t)(n - 3) * (r + 1) / W) - displs[r];
    }
    for (int i = -3; i < reps; i++) { /* 3 rounds of warm-up */
        double dt[8];
        for (int j = 0; j < n; j++) g[j] = 1e-3f * (float)j + (float)rank;
        MPI_Barrier(comm);
        double t0 = MPI_Wtime();
        if (MPI_Allreduce(MPI_IN_PLACE, g, n, MPI_FLOAT, MPI_SUM, comm) != MPI_SUCCESS)
            return ad_set_error("dist_bench: MPI_Allreduce failed");
        dt[0] = MPI_Wtime() - t0;
        for (int j = 0; j < n; j += 16) sink += g[j];
        t0 = MPI_Wtime();
        memset(g, 0, (size_t)n * sizeof *g);
        dt[3] = MPI_Wtime() - t0;
        for (int j = 0; j < n; j++) g[j] = 1e-3f * (float)j + (float)rank;
        t0 = MPI_Wtime();
        memset(g, 0, (size_t)n * sizeof *g);
        dt[2] = MPI_Wtime() - t0;
        MPI_Request req;
        MPI_Barrier(comm);
        t0 = MPI_Wtime();
        if (MPI_Iallreduce(MPI_IN_PLACE, g, n, MPI_FLOAT, MPI_SUM, comm, &req) != MPI_SUCCESS ||
            MPI_Wait(&req, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return ad_set_error("dist_bench: MPI_Iallreduce failed");
        dt[1] = MPI_Wtime() - t0;
        for (int j = 0; j < n; j++) g[j] = 1e-3f * (float)j + (float)rank;
        MPI_Barrier(comm);
        t0 = MPI_Wtime();
        if (MPI_Reduce_scatter(g, v + displs[rank], counts, MPI_FLOAT, MPI_SUM, comm) !=
            MPI_SUCCESS)
            return ad_set_error("dist_bench: MPI_Reduce_scatter failed");
        dt[4] = MPI_Wtime() - t0;
        MPI_Barrier(comm);
        t0 = MPI_Wtime();
        if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, counts, displs, MPI_FLOAT,
                           comm) != MPI_SUCCESS)
            return ad_set_error("dist_bench: MPI_Allgatherv failed");
        dt[5] = MPI_Wtime() - t0;
        for (int w = 0; w < 2; w++) { /* zeroing after an allreduce, in pieces / streamed */
            for (int j = 0; j < n; j++) g[j] = 1e-3f * (float)j + (float)rank;
            MPI_Barrier(comm);
            if (MPI_Allreduce(MPI_IN_PLACE, g, n, MPI_FLOAT, MPI_SUM, comm) != MPI_SUCCESS)
                return ad_set_error("dist_bench: MPI_Allreduce failed");
            for (int j = 0; j < n; j += 16) sink += g[j];
            t0 = MPI_Wtime();
            if (w == 0) zero_pieces(g, n);
            else streams = zero_stream(g, n);
            dt[6 + w] = MPI_Wtime() - t0;
        }
        for (int k = 0; i >= 0 && k < 8; k++) t[k][i] = dt[k];
    }
    double m[8], f[8];
    for (int k = 0; k < 8; k++) summary(comm, t[k], reps, &m[k], &f[k]);
    if (!streams) m[7] = f[7] = -1;
    if (rank == 0)
        printf("{\"bytes\": %d, \"allreduce_us\": %.1f, \"allreduce_min_us\": %.1f, "
               "\"iallreduce_us\": %.1f, \"iallreduce_min_us\": %.1f, "
               "\"zero_after_own_writes_us\": %.1f, \"zero_after_own_writes_min_us\": %.1f, "
               "\"zero_after_allreduce_us\": %.1f, \"zero_after_allreduce_min_us\": %.1f, "
               "\"reduce_scatter_us\": %.1f, \"reduce_scatter_min_us\": %.1f, "
               "\"allgatherv_us\": %.1f, \"allgatherv_min_us\": %.1f, "
               "\"zero_pieces_after_allreduce_us\": %.1f, "
               "\"zero_pieces_after_allreduce_min_us\": %.1f, "
               "\"zero_stream_after_allreduce_us\": %.1f, "
               "\"zero_stream_after_allreduce_min_us\": %.1f}\n",
               n * 4, m[0], f[0], m[1], f[1], m[2], f[2], m[3], f[3], m[4], f[4], m[5], f[5],
               m[6], f[6], m[7], f[7]);
    (void)sink;
    free(g);
    free(v);
    free(counts);
    free(displs);
    for (int k = 0; k < 8; k++) free(t[k]);
    return 0;
}

/* One attachment of a 203,530-float parameter, with the given reduction. */
static nn_dist *attach_one(int shared_memory, ad_tensor **p)
{
    nn_dist *d = nn_dist_from_comm(MPI_COMM_WORLD, &(nn_dist_options){.shared_memory =
                                                                           shared_memory});
    *p = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(203530));
    if (!d || !*p || ad_set_requires_grad(*p, true)) return NULL;
    nn_named_tensors *list = nn_named_tensors_new(1, NULL, p);
    int rc = list ? nn_dist_attach_params(d, list) : -1;
    nn_named_tensors_free(list);
    if (rc || !ad_tensor_grad(*p)) return NULL;
    return d;
}

static int average(nn_dist *d, int reps)
{
    MPI_Comm comm = nn_dist_comm(d);
    int rank = nn_dist_rank(d);
    ad_tensor *p[2] = {NULL, NULL};
    nn_dist *att[2] = {attach_one(1, &p[0]), attach_one(-1, &p[1])};
    if (!att[0] || !att[1]) return -1;
    nn_dist_stats st;
    nn_dist_get_stats(att[0], &st);
    double *t[4];
    for (int k = 0; k < 4; k++)
        if (!(t[k] = calloc((size_t)reps, sizeof(double))))
            return ad_set_error("dist_bench: out of memory");
    volatile float sink = 0;
    for (int i = -3; i < reps; i++) { /* 3 rounds of warm-up */
        for (int w = 0; w < 2; w++) {
            ad_tensor *gt = ad_tensor_grad(p[w]);
            float *g = ad_data(gt);
            int64_t n = ad_numel(gt);
            for (int64_t j = 0; j < n; j++) g[j] = 1e-3f * (float)j + (float)rank;
            double samples = 64, loss = 1;
            MPI_Barrier(comm);
            double t0 = MPI_Wtime();
            if (nn_dist_average_grads(att[w], &samples, &loss)) return -1;
            double dt = MPI_Wtime() - t0;
            for (int64_t j = 0; j < n; j += 16) sink += g[j];
            t0 = MPI_Wtime();
            memset(g, 0, (size_t)n * sizeof *g);
            double dz = MPI_Wtime() - t0;
            if (i >= 0) t[w][i] = dt, t[2 + w][i] = dz;
        }
    }
    double m[4], f[4];
    for (int k = 0; k < 4; k++) summary(comm, t[k], reps, &m[k], &f[k]);
    if (rank == 0)
        printf("{\"bytes\": %d, \"shared_memory\": %s, \"average_shm_us\": %.1f, "
               "\"average_shm_min_us\": %.1f, \"average_mpi_us\": %.1f, "
               "\"average_mpi_min_us\": %.1f, \"zero_after_shm_us\": %.1f, "
               "\"zero_after_shm_min_us\": %.1f, \"zero_after_mpi_us\": %.1f, "
               "\"zero_after_mpi_min_us\": %.1f}\n",
               203533 * 4, st.shared_memory ? "true" : "false", m[0], f[0], m[1], f[1], m[2],
               f[2], m[3], f[3]);
    (void)sink;
    for (int w = 0; w < 2; w++) {
        nn_dist_detach(att[w]);
        nn_dist_finalize(att[w]);
        ad_tensor_free(p[w]);
    }
    for (int k = 0; k < 4; k++) free(t[k]);
    return 0;
}

static int step(nn_dist *d, double params_m, double bucket_mb, int overlap, int steps)
{
    int layers = (int)(params_m * 1e6 / (1024.0 * 1025.0) + 0.5);
    if (layers < 1) layers = 1;
    ad_rng rng;
    ad_rng_init(&rng, 1);
    nn_module *net = nn_sequential(0, NULL);
    for (int i = 0; net && i < layers; i++)
        if (nn_sequential_append(net, nn_linear(1024, 1024, true, AD_FLOAT32, &rng))) return -1;
    nn_named_tensors *p = net ? nn_parameters(net) : NULL;
    nn_optim *opt = p ? nn_sgd(p, &(nn_sgd_options){.lr = 1e-4}) : NULL;
    nn_named_tensors_free(p);
    nn_trainer *tr = opt ? nn_trainer_new(net, nn_mse_loss, opt, NULL) : NULL;
    ad_tensor *x = ad_randn(NULL, &rng, AD_FLOAT32, AD_SHAPE(8, 1024), 0, 1);
    ad_tensor *y = ad_zeros(NULL, AD_FLOAT32, AD_SHAPE(8, 1024));
    if (!tr || !x || !y || nn_dist_attach(d, tr)) return -1;
    for (int i = 0; i < 3; i++)
        if (nn_trainer_step(tr, x, y, NULL)) return -1;
    nn_dist_reset_stats(d);
    MPI_Barrier(nn_dist_comm(d));
    double t0 = MPI_Wtime();
    for (int i = 0; i < steps; i++)
        if (nn_trainer_step(tr, x, y, NULL)) return -1;
    double dt = MPI_Wtime() - t0;
    nn_dist_stats st;
    nn_dist_get_stats(d, &st);
    if (nn_dist_rank(d) == 0)
        printf("{\"params\": %lld, \"bucket_mb\": %g, \"overlap\": %d, \"buckets\": %d, "
               "\"ms_per_step\": %.3f, \"reduce_ms\": %.3f, \"pack_ms\": %.3f}\n",
               (long long)layers * 1024 * 1025, bucket_mb, overlap, st.buckets,
               1e3 * dt / steps, 1e3 * st.reduce_seconds / (double)st.steps,
               1e3 * st.pack_seconds / (double)st.steps);
    nn_dist_detach(d);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    ad_tensor_free(x);
    ad_tensor_free(y);
    (void)bucket_mb;
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    nn_dist_options o = {0};
    if (!strcmp(mode, "step") && argc == 6) {
        o.bucket_bytes = (size_t)(atof(argv[3]) * (1 << 20));
        o.overlap = atoi(argv[4]) != 0;
    } else if (strcmp(mode, "allreduce") != 0 && strcmp(mode, "mlp-comm") != 0 &&
               strcmp(mode, "average") != 0) {
        fprintf(stderr, "usage: dist_bench allreduce [REPS] | step PARAMS_M BUCKET_MB OVERLAP "
                        "STEPS | mlp-comm [REPS] | average [REPS]\n");
        return 2;
    }
    nn_dist *d = nn_dist_init(&argc, &argv, &o);
    if (!d) {
        fprintf(stderr, "dist_bench: %s\n", ad_error());
        return 1;
    }
    int rc = !strcmp(mode, "allreduce")  ? allreduce(d, argc > 2 ? atoi(argv[2]) : 50)
             : !strcmp(mode, "mlp-comm") ? mlp_comm(d, argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 300)
             : !strcmp(mode, "average")  ? average(d, argc > 2 && atoi(argv[2]) > 0 ? atoi(argv[2]) : 300)
                                         : step(d, atof(argv[2]), atof(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (rc) nn_dist_abort(d, "dist_bench: ", 1);
    return nn_dist_finalize(d) ? 1 : 0;
}

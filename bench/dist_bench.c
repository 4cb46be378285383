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
 */
#include <nn/dist.h>
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    } else if (strcmp(mode, "allreduce") != 0) {
        fprintf(stderr, "usage: dist_bench allreduce [REPS] | step PARAMS_M BUCKET_MB OVERLAP "
                        "STEPS\n");
        return 2;
    }
    nn_dist *d = nn_dist_init(&argc, &argv, &o);
    if (!d) {
        fprintf(stderr, "dist_bench: %s\n", ad_error());
        return 1;
    }
    int rc = !strcmp(mode, "allreduce")
                 ? allreduce(d, argc > 2 ? atoi(argv[2]) : 50)
                 : step(d, atof(argv[2]), atof(argv[3]), atoi(argv[4]), atoi(argv[5]));
    if (rc) nn_dist_abort(d, "dist_bench: ", 1);
    return nn_dist_finalize(d) ? 1 : 0;
}

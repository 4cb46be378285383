/* tests/dist_train.c - a small data-parallel training run, driven by
 * tests/test_dist.py under mpirun.
 *
 * An MLP 16-32-32-4 learns a synthetic rule on 512 seeded samples with SGD
 * (momentum, cosine schedule) through nn_fit, each rank on its slice of
 * every global batch (nn/dist.h).  Rank 0 writes the final state with
 * nn_trainer_save, so the driver can compare runs at different world
 * sizes, transports and bucket layouts.  Options:
 *
 *   --batch B          per-rank batch [32]
 *   --epochs E         [2]
 *   --out FILE         rank 0 saves the trained state there
 *   --checkpoint FILE  nn_fit's checkpoint after every epoch
 *   --resume FILE      nn_dist_load before training
 *   --bucket BYTES     gradient bucket size (0: the default 25 MB)
 *   --overlap          MPI_Iallreduce per bucket
 *   --bn               the input seen as [N, 2, 2, 4] goes through a
 *                      BatchNorm2d(2) first, whose running statistics the
 *                      ranks average
 *   --every-rank       every rank saves, rank r to FILE.r (with --out)
 *   --adam             Adam (two state tensors per parameter) instead of SGD
 *                      with momentum
 *   --idle             the input first goes through a layer adding a
 *                      parameter p to the rows of the global batch's first
 *                      half: rank 0's rows at 2 ranks (rank 1's backward
 *                      never reaches p, so its gradient must reduce as
 *                      zeros, not as what the last step left there), the
 *                      first half of the batch at 1 rank
 *   --idle-mid         the same layer between the first ReLU and the second
 *                      Linear, so that p's bucket is not the last one:
 *                      with --overlap and small buckets, rank 1 completes
 *                      it only after the reductions of later buckets could
 *                      have started
 *   --unused           the input first goes through a layer with a
 *                      parameter that no rank's forward uses: no rank
 *                      reaches it, so, as in one process, it has no
 *                      gradient and is never stepped (with --wd, weight
 *                      decay would move it)
 *   --wd W             weight decay of the optimiser [0]
 *   --mismatch         rank 1 builds a wider hidden layer: attach must
 *                      refuse on every rank
 *   --fail-rank R --fail-step K --fail-mode error|die
 *                      rank R fails at its K-th step: an error (nn_fit
 *                      fails, the program calls nn_dist_abort) or death
 *                      (SIGKILL, as a crashed node)
 *
 * Prints "dist_train: rank R of W done" on success.
 */
#define _POSIX_C_SOURCE 200809L /* kill */

#include <math.h>
#include <nn/dist.h>
#include <nn/nn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 512, IN = 16, CLASSES = 4 };

typedef struct opts {
    int64_t batch, epochs, bucket;
    const char *out, *checkpoint, *resume, *fail_mode;
    int fail_rank;
    int64_t fail_step;
    double wd;
    bool overlap, mismatch, bn, every_rank, adam, idle, idle_mid, unused, detach;
} opts;

/* --idle's layer: x + p on the first k rows of x, k the rows that belong
 * to the global batch's first half (see above); p is not used at all
 * where k is 0, nor anywhere with --unused (never). */
typedef struct idle_state {
    int rank, world;
    bool never;
} idle_state;

static ad_tensor *idle_forward(nn_module *m, ad_tensor *x)
{
    const idle_state *s = nn_module_state(m);
    ad_tensor *p = nn_get_parameter(m, "p");
    int64_t rows = ad_size(x, 0);
    int64_t k = s->never ? 0 : s->world == 1 ? rows / 2 : s->rank == 0 ? rows : 0;
    if (k == 0) return x;
    if (k == rows) return ad_add(x, p);
    ad_tensor *parts[2] = {ad_add(ad_narrow(x, 0, 0, k), p), ad_narrow(x, 0, k, rows - k)};
    return ad_concat(parts, 2, 0);
}
static const nn_module_type IDLE = {"Idle", idle_forward, free, NULL};

static nn_module *idle_layer(int rank, int world, int64_t width, bool never)
{
    idle_state *s = malloc(sizeof *s);
    if (!s) return NULL;
    *s = (idle_state){rank, world, never};
    nn_module *m = nn_module_new(&IDLE, s);
    if (m && nn_module_add_parameter(m, "p", ad_full(NULL, AD_FLOAT32, AD_SHAPE(width), 0.25))) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}

static int on_step(nn_trainer *tr, const nn_step_info *s, void *user)
{
    const opts *o = user;
    (void)tr;
    if (s->step != o->fail_step) return 0;
    if (!strcmp(o->fail_mode, "die")) kill(getpid(), SIGKILL);
    return ad_set_error("dist_train: failure injected at step %lld", (long long)s->step);
}

/* The data: x uniform in [-1, 1]^16, the class the quadrant of two fixed
 * projections; the same on every rank (the seed). */
static void make_data(ad_tensor **x, ad_tensor **y)
{
    static float xv[N * IN];
    static int64_t yv[N];
    ad_rng rng;
    ad_rng_init(&rng, 11);
    for (int i = 0; i < N; i++) {
        double a = 0, b = 0;
        for (int j = 0; j < IN; j++) {
            xv[i * IN + j] = (float)(2 * ad_rng_uniform(&rng) - 1);
            a += (j % 2 ? 1 : -1) * xv[i * IN + j];
            b += (j < IN / 2 ? 1 : -1) * xv[i * IN + j];
        }
        yv[i] = (a > 0) + 2 * (b > 0);
    }
    *x = ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(N, IN), xv);
    *y = ad_from_array(NULL, AD_INT64, AD_SHAPE(N), yv);
}

/* nn_trainer_save to path, or to path.rank when rank >= 0. */
/* Open MPI's coll_libnbc_iallreduce_algorithm as MPI_T reads it now (-1
 * where there is no such variable): nn_dist chooses 3 for the sleeping
 * wait and overlap unless it was set. */
static int nbc_algorithm(void)
{
    int provided, idx, count, v = -1;
    MPI_T_cvar_handle h;
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return -1;
    if (MPI_T_cvar_get_index("coll_libnbc_iallreduce_algorithm", &idx) == MPI_SUCCESS &&
        MPI_T_cvar_handle_alloc(idx, NULL, &h, &count) == MPI_SUCCESS) {
        if (count != 1 || MPI_T_cvar_read(h, &v) != MPI_SUCCESS) v = -1;
        MPI_T_cvar_handle_free(&h);
    }
    MPI_T_finalize();
    return v;
}

static int save(nn_trainer *tr, const char *path, int rank)
{
    char name[4096];
    if (rank >= 0) snprintf(name, sizeof name, "%s.%d", path, rank);
    return nn_trainer_save(tr, rank >= 0 ? name : path, NULL);
}

/* The sum of |g| over every parameter's gradient. */
static double grad_sum(const nn_module *net)
{
    nn_named_tensors *ps = nn_parameters(net);
    double s = 0;
    for (int i = 0; ps && i < ps->n; i++) {
        ad_tensor *g = ad_tensor_grad(ps->tensors[i]);
        const float *v = g ? ad_data(g) : NULL;
        for (int64_t j = 0; v && j < ad_numel(g); j++) s += v[j] < 0 ? -v[j] : v[j];
    }
    nn_named_tensors_free(ps);
    return s;
}

int main(int argc, char **argv)
{
    opts o = {.batch = 32, .epochs = 2, .fail_rank = -1, .fail_step = -1, .fail_mode = "error"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        bool *flag = !strcmp(a, "--overlap") ? &o.overlap : !strcmp(a, "--mismatch") ? &o.mismatch
                   : !strcmp(a, "--bn") ? &o.bn : !strcmp(a, "--every-rank") ? &o.every_rank
                   : !strcmp(a, "--adam") ? &o.adam : !strcmp(a, "--idle") ? &o.idle
                   : !strcmp(a, "--idle-mid") ? &o.idle_mid : !strcmp(a, "--unused") ? &o.unused
                   : !strcmp(a, "--detach") ? &o.detach : NULL;
        if (flag) {
            *flag = true;
            continue;
        }
        i++;
        if (!strcmp(a, "--batch")) o.batch = atoll(v);
        else if (!strcmp(a, "--epochs")) o.epochs = atoll(v);
        else if (!strcmp(a, "--bucket")) o.bucket = atoll(v);
        else if (!strcmp(a, "--wd")) o.wd = atof(v);
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--checkpoint")) o.checkpoint = v;
        else if (!strcmp(a, "--resume")) o.resume = v;
        else if (!strcmp(a, "--fail-rank")) o.fail_rank = atoi(v);
        else if (!strcmp(a, "--fail-step")) o.fail_step = atoll(v);
        else if (!strcmp(a, "--fail-mode")) o.fail_mode = v;
        else {
            fprintf(stderr, "dist_train: unknown option %s\n", a);
            return 2;
        }
    }
    nn_dist *d = nn_dist_init(&argc, &argv, &(nn_dist_options){.bucket_bytes = (size_t)o.bucket,
                                                                .overlap = o.overlap});
    if (!d) {
        fprintf(stderr, "dist_train: %s\n", ad_error());
        return 1;
    }
    int rank = nn_dist_rank(d), world = nn_dist_world_size(d);
    if (rank != o.fail_rank) o.fail_step = -1;
    ad_tensor *x, *y;
    make_data(&x, &y);
    if (o.bn) { /* the same numbers as 2 channels of 2 x 4 */
        ad_tensor *x4 = x ? ad_from_array(NULL, AD_FLOAT32, AD_SHAPE(N, 2, 2, 4), ad_data(x)) : NULL;
        ad_tensor_free(x);
        x = x4;
    }
    ad_rng rng;
    ad_rng_init(&rng, 3 + (uint64_t)rank); /* different on each rank: attach must fix it */
    int64_t hidden = o.mismatch && rank == 1 ? 48 : 32;
    nn_module *first = nn_linear(IN, hidden, true, AD_FLOAT32, &rng);
    nn_module *mlp = o.idle_mid
                         ? NN_SEQUENTIAL(first, nn_relu(), idle_layer(rank, world, hidden, false),
                                         nn_linear(hidden, 32, true, AD_FLOAT32, &rng), nn_relu(),
                                         nn_linear(32, CLASSES, true, AD_FLOAT32, &rng))
                         : NN_SEQUENTIAL(first, nn_relu(),
                                         nn_linear(hidden, 32, true, AD_FLOAT32, &rng), nn_relu(),
                                         nn_linear(32, CLASSES, true, AD_FLOAT32, &rng));
    nn_module *net = o.bn       ? NN_SEQUENTIAL(nn_batch_norm2d(2, 1e-5, 0.1, true, AD_FLOAT32),
                                                nn_flatten(1, -1), mlp)
                     : o.idle   ? NN_SEQUENTIAL(idle_layer(rank, world, IN, false), mlp)
                     : o.unused ? NN_SEQUENTIAL(idle_layer(rank, world, IN, true), mlp)
                                : mlp;
    nn_named_tensors *params = net ? nn_parameters(net) : NULL;
    nn_adam_options ao = NN_ADAM_DEFAULTS;
    ao.lr = 0.01;
    ao.weight_decay = o.wd;
    nn_optim *opt = !params ? NULL
                    : o.adam ? nn_adam(params, &ao)
                             : nn_sgd(params, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9,
                                                                .weight_decay = o.wd});
    nn_named_tensors_free(params);
    nn_trainer *tr = opt ? nn_trainer_new(net, NULL, opt,
                                          &(nn_trainer_options){.accuracy = true,
                                                                .schedule = NN_SCHEDULE_COSINE})
                         : NULL;
    nn_loader *train = x && y ? nn_loader_from_tensors(x, y, &(nn_loader_options){
                                    .batch_size = o.batch, .shuffle = true, .seed = 5})
                              : NULL;
    nn_loader *val = x && y ? nn_loader_from_tensors(x, y, &(nn_loader_options){.batch_size = 100})
                            : NULL;
    nn_fit_options fit = {.on_step = on_step, .user = &o, .checkpoint = o.checkpoint};
    if (!tr || !train || !val || nn_dist_attach(d, tr) || nn_dist_shard(d, train) ||
        nn_dist_shard(d, val) || (o.resume && nn_dist_load(d, tr, o.resume)))
        nn_dist_abort(d, "dist_train: ", 1);
    if (o.resume) {
        /* every rank continues at the rate rank 0 loaded (the schedule's
         * value where the checkpoint was saved, not the base rate) */
        double lr = nn_optim_get_lr(opt), sum[1] = {lr};
        if (nn_dist_sum(d, sum, 1)) nn_dist_abort(d, "dist_train: ", 1);
        if (fabs(lr - sum[0] / world) > 1e-12 * lr) {
            ad_set_error("resumed at rate %.17g, the ranks' mean %.17g", lr, sum[0] / world);
            nn_dist_abort(d, "dist_train: ", 1);
        }
    }
    if (nn_fit(tr, train, val, o.epochs, &fit) ||
        (o.out && (rank == 0 || o.every_rank) && save(tr, o.out, o.every_rank ? rank : -1)))
        nn_dist_abort(d, "dist_train: ", 1);
    nn_dist_stats st;
    nn_dist_get_stats(d, &st);
    printf("dist_train: rank %d of %d done (%d buckets, %lld started during backward, "
           "wait %s, update %s, reduction %s, libnbc iallreduce algorithm %d)\n",
           rank, world, st.buckets, (long long)st.early_buckets,
           st.wait_seconds > 0 ? "timed" : "not timed", st.sharded ? "sharded" : "whole",
           st.shared_memory ? "shared memory" : "MPI", nbc_algorithm());
    int rc = 0;
    if (o.detach) {
        /* The model outlives the run: after detach and finalize its
         * gradients (which lived in the shared-memory window while
         * attached) still hold the last step's values, and can be
         * written. */
        double before = grad_sum(net);
        nn_dist_detach(d);
        rc = nn_dist_finalize(d) ? 1 : 0;
        d = NULL;
        double after = grad_sum(net);
        int zeroed = nn_optim_zero_grad(opt);
        printf("dist_train: rank %d after detach and finalize: gradients %s (%.9g, %.9g), "
               "zero_grad %s, sum %g\n",
               rank, before == after && before != 0 ? "kept" : "LOST", before, after,
               zeroed == 0 ? "ok" : "failed", grad_sum(net));
    }
    nn_loader_free(train);
    nn_loader_free(val);
    nn_trainer_free(tr);
    nn_optim_free(opt);
    nn_module_free(net);
    ad_tensor_free(x);
    ad_tensor_free(y);
    return d ? (nn_dist_finalize(d) ? 1 : 0) : rc;
}

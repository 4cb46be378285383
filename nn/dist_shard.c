/* nn/dist_shard.c - the sharded update of nn/dist.h (ZeRO's first stage,
 * nn_dist_options.shard).
 *
 * An allreduce of n bytes over W ranks is, in the bandwidth-optimal
 * algorithms, a reduce-scatter (each rank ends with the sum of its 1/W)
 * followed by an all-gather (every rank gets every part).  Between the
 * two, each rank holds the averaged gradient of its part only, and that is
 * all the optimiser needs to update that part of the parameters: so the
 * update runs there, over 1/W of the elements, and the all-gather sends
 * the updated parameters instead of the summed gradients.  The bytes
 * moved are the allreduce's; the optimiser's work per rank is 1/W of it.
 *
 * Bucket k's gradient elements (its extras excluded) are cut into W
 * contiguous parts at element boundaries, [c r / W, c (r + 1) / W) for
 * rank r; a cut may fall inside a parameter (the MLP's first weight is
 * 99% of its elements), and nn_optim_step_parts updates such a piece of
 * it.  The reduced part lands in the bucket's scratch vals (MPI's
 * reduce-scatter does not reduce in place at an offset), where the
 * optimiser reads it; the optimiser updates its part of the parameters
 * in place, and the all-gather sends it from there to every other rank's
 * parameters. */
#include "dist_impl.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The sleeping wait polls its collectives (nn__dist_wait_for). */
static bool polled(const nn_dist *d)
{
    return d->o.wait_sleep_us > 0;
}

/* Bucket k's gradient elements: its count without the extras. */
static int64_t grad_count(const nn_dist *d, int k)
{
    return d->b[k].count - (k == d->nb - 1 ? nn__dist_extras(d) : 0);
}

void nn__dist_shard_free(nn_dist *d)
{
    for (int k = 0; k < d->nb; k++) {
        bucket *b = &d->b[k];
        ad_tensor_free(b->vals);
        ad_free(b->counts);
        ad_free(b->displs);
        b->vals = NULL;
        b->vdata = NULL;
        b->counts = b->displs = NULL;
    }
    ad_free(d->parts);
    ad_free(d->ts);
    ad_free(d->reqs);
    d->parts = NULL;
    d->ts = NULL;
    d->reqs = NULL;
    d->nreqs = 0;
    d->nparts = 0;
    d->shard = false;
}

/* What nn_dist_options.shard = 0 (the default, NN_DIST_SHARD unset)
 * means: off (docs/distributed.md, "The sharded update", has the
 * measurements behind it; this line is the switch). */
enum { SHARD_BY_DEFAULT = 0 };

int nn__dist_shard_setup(nn_dist *d)
{
    d->shard = false;
    bool on = d->o.shard > 0 || (d->o.shard == 0 && SHARD_BY_DEFAULT);
    if (!on || d->o.overlap || d->size < 2) return 0;
    int W = d->size;
    /* a bucket's part is contiguous: it meets each of its entries once */
    d->parts = ad_calloc((size_t)d->params->n + 1, sizeof *d->parts);
    d->ts = ad_calloc((size_t)d->nent + 1, sizeof *d->ts);
    /* the all-gather's messages: an entry meets each rank's part in at
     * most one piece, sent to or received from each of W - 1 peers */
    d->nreqs = 2 * (W - 1) * d->nent;
    d->reqs = ad_calloc((size_t)d->nreqs + 1, sizeof *d->reqs);
    if (!d->parts || !d->ts || !d->reqs) {
        nn__dist_shard_free(d);
        return -1;
    }
    for (int k = 0; k < d->nb; k++) {
        bucket *b = &d->b[k];
        b->counts = ad_calloc((size_t)W, sizeof *b->counts);
        b->displs = ad_calloc((size_t)W, sizeof *b->displs);
        b->vals = ad_zeros(NULL, b->dtype, 1, &b->count);
        if (!b->counts || !b->displs || !b->vals) {
            nn__dist_shard_free(d);
            return -1;
        }
        b->vdata = ad_data(b->vals);
        int64_t c = grad_count(d, k);
        for (int r = 0; r < W; r++) {
            b->displs[r] = (int)(c * r / W);
            b->counts[r] = (int)(c * (r + 1) / W - c * r / W);
        }
        int64_t lo = b->displs[d->rank], hi = lo + b->counts[d->rank];
        size_t es = ad_dtype_size(b->dtype);
        for (int e = b->first; e < b->end && e < d->params->n; e++) {
            int64_t off = d->offset[e], n = ad_numel(nn__dist_entry(d, e));
            int64_t a = lo > off ? lo : off, z = hi < off + n ? hi : off + n;
            if (a < z)
                d->parts[d->nparts++] = (nn_optim_part){nn__dist_entry(d, e), a - off, z - off,
                                                        (char *)b->vdata + (size_t)a * es};
        }
    }
    d->shard = true;
    return 0;
}

/* Copies elements [a, z) of the bucket's layout from vals into entry e's
 * tensor t, clipped to the entry. */
static void copy_out(const nn_dist *d, const bucket *b, int e, ad_tensor *t, int64_t a, int64_t z)
{
    int64_t off = d->offset[e], n = ad_numel(t);
    if (a < off) a = off;
    if (z > off + n) z = off + n;
    if (a >= z) return;
    size_t es = ad_dtype_size(b->dtype);
    memcpy((char *)ad_data(t) + (size_t)(a - off) * es, (char *)b->vdata + (size_t)a * es,
           (size_t)(z - a) * es);
}

/* The all-gather of every bucket: ts[e] (NULL: none) for each entry e,
 * whose elements in this rank's parts are up to date (the optimiser
 * updated them in place, or the averaging wrote them); every other
 * rank's parts are received straight into them.  A part meets each entry
 * in at most one contiguous piece, so the exchange is, for each peer q,
 * one message per piece of an entry in this rank's part (sent) and in
 * q's (received), in the same order on both sides (one tag, and MPI
 * keeps a pair's messages in order on the duplicated communicator).
 * Each rank sends n / W elements to each of W - 1 peers and receives the
 * rest: the bytes of a ring all-gather.  An MPI_Allgatherv needs all
 * parts in one buffer, which the parameters are no views of: it cost a
 * copy out of the buffer as well. */
enum { GATHER_TAG = 0x5a47 };
/* 1: this rank's part is copied into the bucket's scratch buffer and sent
 * from there; 0: sent straight from the tensors, with no copy at all, but
 * the other rank then reads the parameter lines that the next step's
 * optimiser writes, and that measured slower by as much as the copy
 * (docs/distributed.md, "The all-gather without the copy out"). */
#ifndef STAGE_SENDS
#define STAGE_SENDS 1
#endif

static int gather(nn_dist *d, ad_tensor **ts, double *tcomm)
{
    int W = d->size, me = d->rank, nreq = 0, rc = 0;
    MPI_Request *req = d->reqs;
    double t0 = MPI_Wtime();
    for (int pass = 0; pass < 2 && rc == 0; pass++) /* receives first, then sends */
        for (int k = 0; k < d->nb && rc == 0; k++) {
            bucket *b = &d->b[k];
            MPI_Datatype dt = nn__dist_mpi_type(b->dtype);
            size_t es = ad_dtype_size(b->dtype);
            for (int q = 0; q < W && rc == 0; q++) {
                if (q == me) continue;
                /* received: q's part; sent: this rank's */
                int src = pass == 0 ? q : me;
                int64_t lo = b->displs[src], hi = lo + b->counts[src];
                for (int e = b->first; e < b->end && rc == 0; e++) {
                    if (!ts[e]) continue;
                    int64_t off = d->offset[e], n = ad_numel(ts[e]);
                    int64_t a = lo > off ? lo : off, z = hi < off + n ? hi : off + n;
                    if (a >= z) continue;
                    char *x = (char *)ad_data(ts[e]) + (size_t)(a - off) * es;
                    if (pass == 1 && STAGE_SENDS) {
                        /* sent from the scratch buffer (copied once, for
                         * the first peer): the other ranks read it, not
                         * the parameters the next step's optimiser writes */
                        char *v = (char *)b->vdata + (size_t)a * es;
                        if (q == (me == 0 ? 1 : 0)) memcpy(v, x, (size_t)(z - a) * es);
                        x = v;
                    }
                    assert(nreq < d->nreqs);
                    rc = pass == 0
                             ? nn__dist_mpi_ok(MPI_Irecv(x, (int)(z - a), dt, q, GATHER_TAG,
                                                         d->comm, &req[nreq++]),
                                               "MPI_Irecv")
                             : nn__dist_mpi_ok(MPI_Isend(x, (int)(z - a), dt, q, GATHER_TAG,
                                                         d->comm, &req[nreq++]),
                                               "MPI_Isend");
                }
            }
        }
    *tcomm += MPI_Wtime() - t0;
    if (rc == 0 && !polled(d)) {
        double t1 = MPI_Wtime();
        rc = nn__dist_mpi_ok(MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE), "MPI_Waitall");
        *tcomm += MPI_Wtime() - t1;
    }
    for (int i = 0; i < nreq && rc == 0 && polled(d); i++)
        rc = nn__dist_wait_for(d, &req[i], tcomm);
    for (int e = 0; rc == 0 && e < d->nent; e++)
        if (ts[e]) ad_mark_modified(ts[e]); /* written through ad_data */
    return rc;
}

int nn__dist_shard_average(nn_dist *d, double *samples, double *loss)
{
    double t0 = MPI_Wtime(), tcomm = 0;
    int prc = 0; /* a gradient this rank could not pack: after the reduction */
    for (int e = 0; e < d->nent; e++)
        if (nn__dist_pack(d, e, *samples)) prc = -1;
    int rc = nn__dist_arrive_all(d, &tcomm);
    /* The rank's batch size, loss sum and squared batch size, and which
     * parameters it has gradients for (the extras of the unsharded step,
     * which would end up in one rank's part here), summed apart: every
     * rank needs them. */
    double *ex = d->extras;
    ex[0] = *samples;
    ex[1] = *samples * *loss;
    ex[2] = *samples * *samples;
    double t1 = MPI_Wtime();
    /* started before the reduce-scatters, which move it on (Open MPI
     * progresses every pending request in any MPI call), and waited for
     * after: one meeting of the ranks instead of two */
    MPI_Request xreq = MPI_REQUEST_NULL;
    if (rc == 0)
        rc = nn__dist_mpi_ok(MPI_Iallreduce(MPI_IN_PLACE, ex, (int)nn__dist_extras(d), MPI_DOUBLE,
                                            MPI_SUM, d->comm, &xreq),
                             "MPI_Iallreduce");
    tcomm += MPI_Wtime() - t1;
    for (int k = 0; rc == 0 && k < d->nb; k++) {
        bucket *b = &d->b[k];
        size_t es = ad_dtype_size(b->dtype);
        char *own = (char *)b->vdata + (size_t)b->displs[d->rank] * es;
        MPI_Datatype dt = nn__dist_mpi_type(b->dtype);
        t1 = MPI_Wtime();
        if (polled(d)) {
            MPI_Request req;
            rc = nn__dist_mpi_ok(MPI_Ireduce_scatter(b->data, own, b->counts, dt, MPI_SUM,
                                                     d->comm, &req),
                                 "MPI_Ireduce_scatter");
            tcomm += MPI_Wtime() - t1;
            if (rc == 0) rc = nn__dist_wait_for(d, &req, &tcomm);
        } else {
            rc = nn__dist_mpi_ok(MPI_Reduce_scatter(b->data, own, b->counts, dt, MPI_SUM,
                                                    d->comm),
                                 "MPI_Reduce_scatter");
            tcomm += MPI_Wtime() - t1;
        }
    }
    if (xreq != MPI_REQUEST_NULL && nn__dist_wait_for(d, &xreq, &tcomm)) rc = -1;
    double total = ex[0], lsum = ex[1], sq = ex[2];
    /* a parameter some rank reached is stepped on every rank (the owner
     * of each part reads the reduced gradient from vals) */
    if (rc == 0 && nn__dist_adopt_grads(d, "nn_dist")) prc = -1;
    /* As the unsharded step: the sums are the weighted average times
     * W n0 / N (seeded) or n0 / N, exactly 1 when every rank had n0. */
    double post = nn__dist_post(d, total, &prc);
    for (int k = 0; rc == 0 && k < d->nb; k++) {
        bucket *b = &d->b[k];
        int64_t lo = b->displs[d->rank], hi = lo + b->counts[d->rank];
        if (post != 1.0) {
            if (b->dtype == AD_FLOAT32) {
                float *v = b->vdata, s = (float)post;
                for (int64_t j = lo; j < hi; j++) v[j] *= s;
            } else {
                double *v = b->vdata;
                for (int64_t j = lo; j < hi; j++) v[j] *= post;
            }
        }
        /* this rank's part of the averaged buffers; the others' come with
         * the parameters' all-gather */
        for (int e = b->first > d->params->n ? b->first : d->params->n; e < b->end; e++) {
            copy_out(d, b, e, nn__dist_entry(d, e), lo, hi);
            ad_mark_modified(nn__dist_entry(d, e));
        }
    }
    /* Every batch size equal: the next steps send gradients as they are
     * (the sums are exact integers in double). */
    if (rc == 0 && d->n0 == 1 && total * total < 9007199254740992.0 &&
        sq * d->size == total * total)
        d->n0 = total / d->size;
    /* A non-finite loss (over all ranks, so alike everywhere): the trainer
     * skips the update, and with it the all-gather; the averaged buffers
     * of the other ranks' parts are gathered here instead. */
    if (rc == 0 && d->nbuf > 0 && !isfinite(lsum / total)) {
        for (int e = 0; e < d->nent; e++) d->ts[e] = e < d->params->n ? NULL : nn__dist_entry(d, e);
        rc = gather(d, d->ts, &tcomm);
    }
    return nn__dist_step_end(d, rc ? rc : prc, total, lsum, t0, tcomm, samples, loss);
}

int nn__dist_shard_step(void *user, nn_optim *opt)
{
    nn_dist *d = user;
    /* Checked alike on every rank (shapes, dtypes), so all fail together
     * before any collective. */
    if (nn_optim_step_parts(opt, d->parts, d->nparts)) return -1;
    double t0 = MPI_Wtime(), tcomm = 0;
    int rc = 0;
    for (int e = 0; e < d->nent; e++) d->ts[e] = nn__dist_entry(d, e);
    if (rc == 0) rc = gather(d, d->ts, &tcomm);
    d->stats.reduce_seconds += tcomm;
    d->stats.pack_seconds += MPI_Wtime() - t0 - tcomm;
    return rc;
}

/* Each state tensor of a parameter ("<param>.<slot>", of the
 * parameter's size and dtype) and its entry, into ent[i] (-1 for none)
 * and slot[i]. */
static void match_state(nn_dist *d, const nn_named_tensors *st, int *ent, const char **slot)
{
    for (int i = 0; i < st->n; i++) {
        ent[i] = -1;
        ad_tensor *s = st->tensors[i];
        for (int e = 0; e < d->params->n; e++) {
            const char *pn = d->params->names[d->params->n - 1 - e];
            size_t len = strlen(pn);
            ad_tensor *p = nn__dist_entry(d, e);
            if (strncmp(st->names[i], pn, len) == 0 && st->names[i][len] == '.' &&
                ad_numel(s) == ad_numel(p) && ad_tensor_dtype(s) == ad_tensor_dtype(p) &&
                ad_is_contiguous(s)) {
                ent[i] = e;
                slot[i] = st->names[i] + len + 1;
                break;
            }
        }
    }
}

/* Whether the sharded update can make opt's state whole: every state
 * tensor but the counts ("step", alike everywhere) must be one of a
 * parameter's, found by the model's names.  An optimiser over tensors
 * named otherwise (nn_named_tensors_new) would leave the other ranks'
 * parts of its moments stale in rank 0's checkpoint, silently. */
int nn__dist_shard_check(nn_dist *d, nn_optim *opt)
{
    if (!d->shard) return 0;
    nn_named_tensors *st = nn_optim_state(opt);
    if (!st) return -1;
    int *ent = ad_calloc((size_t)st->n + 1, sizeof *ent);
    const char **slot = ad_calloc((size_t)st->n + 1, sizeof *slot);
    int rc = ent && slot ? 0 : -1;
    if (rc == 0) match_state(d, st, ent, slot);
    for (int i = 0; rc == 0 && i < st->n; i++) {
        const char *dot = strrchr(st->names[i], '.');
        if (ent[i] < 0 && strcmp(dot ? dot + 1 : st->names[i], "step") != 0)
            rc = ad_set_error("nn_dist_attach: the sharded update (NN_DIST_SHARD=1) needs the "
                              "optimiser's state named after the model's parameters, and '%s' "
                              "is no parameter's (build the optimiser over nn_parameters of the "
                              "model, or turn sharding off)",
                              st->names[i]);
    }
    ad_free(ent);
    ad_free(slot);
    nn_named_tensors_free(st);
    return rc;
}

int nn__dist_shard_sync(void *user, nn_optim *opt)
{
    nn_dist *d = user;
    if (!d->shard) return 0;
    nn_named_tensors *st = nn_optim_state(opt);
    if (!st) return -1;
    int n = st->n, rc = 0;
    int *ent = ad_calloc((size_t)n + 1, sizeof *ent);
    const char **slot = ad_calloc((size_t)n + 1, sizeof *slot);
    ad_tensor **ts = d->ts;
    if (!ent || !slot) rc = -1;
    if (rc == 0) match_state(d, st, ent, slot);
    /* One all-gather per kind of slot (momentum_buffer; exp_avg,
     * exp_avg_sq ...), of every parameter's tensor of that slot; the same
     * sequence on every rank (the same model and optimiser). */
    double tcomm = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (ent[i] < 0) continue;
        for (int e = 0; e < d->nent; e++) ts[e] = NULL;
        for (int j = i; j < n; j++)
            if (ent[j] >= 0 && strcmp(slot[j], slot[i]) == 0) {
                ts[ent[j]] = st->tensors[j];
                if (j > i) ent[j] = -1; /* done with this one */
            }
        if (rc == 0) rc = gather(d, ts, &tcomm);
    }
    ad_free(ent);
    ad_free(slot);
    nn_named_tensors_free(st);
    return rc;
}

/* docs/examples/checkpoint_resume.c - saving a whole run and resuming it
 * exactly (nn/state.h).
 *
 * A training loop written by hand, with dropout (a random stream inside
 * the model), Adam (moments in the optimiser) and a random stream of our
 * own for the data.  After 30 of 60 steps, one call saves everything:
 * the weights, Adam's state, both random streams, the step, our own
 * metadata.  A second model, built from other seeds as a fresh process
 * would, restores it with one call and runs the remaining 30 steps.  Its
 * weights are then the uninterrupted run's bit for bit (memcmp), which the
 * program checks, exiting 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L /* mkstemp, close */
#include <nn/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEPS 60

typedef struct run {
    nn_module *net;
    nn_optim *opt;
    ad_rng data; /* draws the batches */
    int64_t step;
} run;

static int setup(run *r, uint64_t seed)
{
    ad_rng init;
    ad_rng_init(&init, seed);
    r->net = NN_SEQUENTIAL(nn_linear(3, 16, true, AD_FLOAT32, &init), nn_relu(),
                           nn_dropout(0.2, seed + 1), nn_linear(16, 1, true, AD_FLOAT32, &init));
    r->opt = nn_adam_module(r->net, NULL); /* NULL: Adam's defaults */
    ad_rng_init(&r->data, seed + 2);
    r->step = 0;
    return r->opt ? 0 : -1;
}

/* Steps until `until`: learn y = x0 - 2 x1 + x2^2 from random batches. */
static int train(run *r, int64_t until, ad_tape *tape)
{
    for (; r->step < until; r->step++) {
        ad_tensor *x = ad_randn(tape, &r->data, AD_FLOAT32, AD_SHAPE(32, 3), 0, 1);
        ad_tensor *w = ad_from_array(tape, AD_FLOAT32, AD_SHAPE(3, 1), (float[]){1, -2, 0});
        ad_tensor *x2 = ad_slice(x, 1, 2, 3, 1);
        ad_tensor *y = ad_add(ad_matmul(x, w), ad_mul(x2, x2));
        nn_optim_zero_grad(r->opt);
        ad_tensor *loss = nn_mse_loss(nn_forward(r->net, x), y, NN_MEAN);
        if (!loss || ad_backward(loss, NULL, 0) || nn_optim_step(r->opt)) return -1;
        ad_tape_reset(tape);
    }
    return 0;
}

/* What the checkpoint holds besides the model and the optimiser. */
static nn_checkpoint state_of(run *r, const char *meta)
{
    static const char *rng_names[] = {"data"};
    static ad_rng *rngs[1];
    rngs[0] = &r->data;
    return (nn_checkpoint){.model = r->net, .optim = r->opt, .n_rngs = 1,
                           .rng_names = rng_names, .rngs = rngs, .step = r->step,
                           .metadata_json = meta};
}

int main(void)
{
    /* a file of its own, so that two runs at once never share it */
    char path[] = "checkpoint_resume_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return perror("mkstemp"), 1;
    close(fd);
    ad_tape *tape = ad_tape_new();
    ad_tape_activate(tape);
    run a, b, c;
    if (setup(&a, 1) || setup(&b, 1) || setup(&c, 99)) return fprintf(stderr, "%s\n", ad_error()), 1;

    if (train(&a, STEPS, tape)) return fprintf(stderr, "%s\n", ad_error()), 1; /* uninterrupted */

    /* interrupted: 30 steps, then one call saves the whole state */
    nn_checkpoint ck = state_of(&b, "{\"note\": \"half way\"}");
    if (train(&b, STEPS / 2, tape) || (ck.step = b.step, nn_checkpoint_save(path, &ck)))
        return fprintf(stderr, "%s\n", ad_error()), 1;
    printf("saved at step %lld to %s\n", (long long)b.step, path);

    /* resumed in "another process": other seeds, everything restored */
    nn_checkpoint back = state_of(&c, NULL);
    if (nn_checkpoint_load(path, &back)) return fprintf(stderr, "%s\n", ad_error()), 1;
    c.step = back.step;
    printf("resumed at step %lld\n", (long long)c.step);
    if (train(&c, STEPS, tape)) return fprintf(stderr, "%s\n", ad_error()), 1;

    nn_named_tensors *pa = nn_parameters(a.net), *pc = nn_parameters(c.net);
    int bad = 0;
    for (int i = 0; i < pa->n; i++) {
        size_t bytes = (size_t)ad_numel(pa->tensors[i]) * sizeof(float);
        int same = memcmp(ad_data(pa->tensors[i]), ad_data(pc->tensors[i]), bytes) == 0;
        printf("%-9s %s\n", pa->names[i], same ? "identical to the uninterrupted run" : "DIFFERS");
        bad |= !same;
    }
    nn_named_tensors_free(pa);
    nn_named_tensors_free(pc);
    run *all[3] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        nn_optim_free(all[i]->opt);
        nn_module_free(all[i]->net);
    }
    ad_tape_free(tape);
    remove(path);
    printf(bad ? "FAILED\n" : "ok\n");
    return bad;
}

/* nn/state.h - whole-state checkpoints: model, optimiser, random streams,
 * epoch and step, and your own metadata in one file, in one call.
 *
 * What PyTorch users write by hand every time (torch.save of a dict of
 * model.state_dict(), optimizer.state_dict(), torch.get_rng_state(), the
 * epoch...), as one safetensors file written atomically (nn/checkpoint.h):
 * a crash during the save leaves the previous checkpoint intact.
 *
 *     nn_checkpoint ck = {.model = net, .optim = opt, .n_rngs = 1,
 *                         .rng_names = (const char *[]){"data"},
 *                         .rngs = (ad_rng *[]){&data_rng},
 *                         .epoch = epoch, .step = step,
 *                         .metadata_json = "{\"run\": \"baseline\"}"};
 *     nn_checkpoint_save("run.safetensors", &ck);
 *     ...
 *     nn_checkpoint_load("run.safetensors", &ck);  // restores all of it
 *     epoch = ck.epoch; step = ck.step;
 *
 * The file holds
 *   - the model's state_dict under its own names ("0.weight", the names
 *     PyTorch uses, so the weights load into a PyTorch model too);
 *   - the optimiser's state (nn_optim_state) under "optim.<name>";
 *   - each random stream the model registered (nn_module_set_rng: every
 *     Dropout's mask stream) as "module_rng.<module path>" ("module_rng"
 *     for the root), and each of yours as "rng.<name>": int64 [2], the
 *     stream's seed and counter (their bits; ad_rng is counter-based, so
 *     these two numbers are its whole state);
 *   - metadata "nn_checkpoint_epoch", "nn_checkpoint_step",
 *     "nn_checkpoint_optim" (the optimiser's name), "nn_checkpoint_lr" (its
 *     learning rate, a hexadecimal float, which a load sets: a rate that
 *     a schedule or a callback changed is the one the run continues with;
 *     files saved before it have none, and the rate stays) and your keys.
 *     The optimiser's other hyper-parameters (betas, momentum, weight
 *     decay) are those of the optimiser you load into.
 *
 * Resuming is bit-identical: restore, then run the same steps, and every
 * parameter, optimiser moment and random draw is the one the uninterrupted
 * run had (tests/test_state.c checks it with memcmp).  A loader's order
 * is a function of its seed and the epoch: call nn_loader_set_epoch with
 * the restored epoch (and skip the batches of a partial epoch yourself).
 *
 * Reading your metadata back: nn_safetensors_inspect(path) and
 * nn_safetensors_metadata(info, "run").
 *
 * Errors: -1 with ad_error(); nothing is changed on an error (all-or-
 * nothing, as nn_load_safetensors). */
#ifndef NN_STATE_H
#define NN_STATE_H

#include <autodiff/autodiff.h>

#include "module.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NN_CHECKPOINT_MAX_RNGS 64

typedef struct nn_checkpoint {
    nn_module *model;             /* NULL: no model */
    nn_optim *optim;              /* NULL: no optimiser */
    int n_rngs;                   /* your random streams, 0..NN_CHECKPOINT_MAX_RNGS */
    const char *const *rng_names; /* unique, non-empty */
    ad_rng *const *rngs;
    int64_t epoch, step;          /* saved; set by nn_checkpoint_load */
    const char *metadata_json;    /* save: NULL or a JSON object of strings;
                                     keys starting "nn_checkpoint_" are ours */
} nn_checkpoint;

/* Saves everything ck names to path, atomically.  Tensors are only read.
 * Errors: NULL path or ck, n_rngs out of range, a NULL, empty or repeated
 * rng name, epoch or step < 0, metadata_json not an object of strings or
 * using a key of ours, and those of nn_save_safetensors (I/O: the old file
 * is left intact). */
AD_API int nn_checkpoint_save(const char *path, const nn_checkpoint *ck);

/* Restores from path what ck names: the model's tensors, the optimiser's
 * state, the random streams (the model's and yours), and ck->epoch and
 * ck->step.  Every named part must be in the file with the same names,
 * dtypes and shapes; a part you leave out (model, optim or rngs NULL) is
 * skipped in the file, so the model alone can be taken from a full
 * checkpoint.  Any other entry of the file that nothing asked for is an
 * error, as a strict load_state_dict.  Errors name the file and the entry:
 *   nn_checkpoint_load: run.safetensors: no "nn_checkpoint_epoch" in its
 *   metadata: not saved by nn_checkpoint_save
 *   nn_checkpoint_load: run.safetensors: the optimiser's state is Adam's in
 *   the file, the optimiser is SGD
 * and nothing is changed when one occurs. */
AD_API int nn_checkpoint_load(const char *path, nn_checkpoint *ck);

#ifdef __cplusplus
}
#endif
#endif

/* nn/optim.h - optimisers, learning-rate schedules, gradient clipping and a
 * gradient-norm report.
 *
 * Training by gradient descent.  After ad_backward(loss) every parameter w
 * holds dE/dw in its grad (ad_tensor_grad), the direction in which E grows
 * fastest.  An optimiser moves w a small step the other way:
 *
 *     w <- w - lr * dE/dw                          (plain SGD)
 *
 * and the variants below change the step: momentum averages it over recent
 * steps, Adam and RMSprop scale it per weight by a running estimate of the
 * gradient's magnitude.  The update rules are PyTorch's exactly (same
 * state, same first step), written in plain loops over ad_data() of the
 * persistent parameters; nothing is recorded.
 *
 * A training step:
 *     nn_optim *opt = nn_sgd_module(net, &(nn_sgd_options){.lr = 0.1, .momentum = 0.9});
 *     for each batch:
 *         nn_optim_zero_grad(opt);
 *         loss = nn_cross_entropy(nn_forward(net, x), y, NN_MEAN, 0);
 *         ad_backward(loss, NULL, 0);
 *         nn_optim_step(opt);
 *         ad_tape_reset(tape);
 *     nn_optim_free(opt);
 *
 * Parameters.  Constructors take a list (nn_parameters of a module, or
 * nn_named_tensors_new of your own tensors), copy it, and keep pointers to
 * the tensors, which must outlive the optimiser.  The _module forms
 * (nn_sgd_module(net, opts), ...: torch.optim.SGD(net.parameters(), ...))
 * take every parameter of a module instead.  Each must be a floating
 * leaf; listing one twice is an error.  A parameter that has no gradient
 * (ad_tensor_grad NULL: no backward has reached it yet) or is frozen
 * (requires_grad off) is skipped by a step, its state untouched, as in
 * PyTorch, where zero_grad drops a frozen parameter's gradient.  Note that
 * ad_zero_grad (and so nn_optim_zero_grad) zeroes a gradient in place
 * rather than dropping it - PyTorch's zero_grad(set_to_none=False) - so a
 * parameter requiring grad that took part in an earlier step but not in
 * this loss is updated with a zero gradient: momentum and weight decay
 * still move it.  Parameters and gradients must be contiguous (parameters
 * made by modules are).
 *
 * State.  The optimiser's state lives in persistent tensors it owns, named
 * as PyTorch's state: "<param>.momentum_buffer" (SGD with momentum, RMSprop
 * with momentum), "<param>.exp_avg" and "<param>.exp_avg_sq" (Adam, AdamW;
 * "<param>.max_exp_avg_sq" with amsgrad), "<param>.square_avg" and
 * "<param>.grad_avg" (RMSprop; centered for the latter), "<param>.step"
 * (int64, 0-d: the number of updates that parameter received) and "step"
 * (int64, 0-d: the number of nn_optim_step calls).  They exist from the
 * start, so nn_optim_state lists them for a checkpoint before training
 * begins, and loading them (nn_load_safetensors) resumes training exactly.
 *
 * Errors: -1 or NULL (NAN for the schedules) with ad_error() naming the
 * function and the value: "nn_sgd: learning rate must be finite and >= 0,
 * got -0.1".
 */
#ifndef NN_OPTIM_H
#define NN_OPTIM_H

#include "module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_optim nn_optim;

/* ---- SGD ---------------------------------------------------------------------
 * With g = dE/dw + weight_decay w, and b the momentum buffer:
 *     first step:   b = g
 *     later steps:  b = momentum b + (1 - dampening) g
 *     d = g + momentum b  (nesterov)   or   d = b   (momentum)   or   d = g
 *     w <- w - lr d
 * momentum in [0, 1), dampening in [0, 1], weight_decay >= 0; nesterov
 * needs momentum > 0 and dampening 0.  Zeroed fields are PyTorch's
 * defaults, except lr, which must be set (NN_SGD_DEFAULTS gives 1e-3,
 * PyTorch's). */
typedef struct nn_sgd_options {
    double lr, momentum, dampening, weight_decay;
    bool nesterov;
} nn_sgd_options;
#define NN_SGD_DEFAULTS {1e-3, 0, 0, 0, false}
/* opts NULL means NN_SGD_DEFAULTS. */
AD_API nn_optim *nn_sgd(const nn_named_tensors *params, const nn_sgd_options *opts);

/* ---- Adam and AdamW -----------------------------------------------------------
 * With g = dE/dw (+ weight_decay w for Adam), t the step (1, 2, ...):
 *     m = beta1 m + (1 - beta1) g             (mean of g)
 *     v = beta2 v + (1 - beta2) g^2           (mean of g^2)
 *     mhat = m / (1 - beta1^t),  vhat = v / (1 - beta2^t)
 *                  (bias correction: m and v start at 0, so early averages
 *                   are too small by exactly those factors)
 *     w <- w - lr mhat / (sqrt(vhat) + eps)
 * AdamW (Loshchilov & Hutter) decouples the weight decay from the gradient
 * statistics: first w <- w (1 - lr weight_decay), then the Adam step
 * without decay in g.  amsgrad uses the running maximum of v instead of v.
 * betas in [0, 1), eps >= 0, weight_decay >= 0, all finite.  There is no
 * zero-means-default here (beta1 = 0 is meaningful): start from
 * NN_ADAM_DEFAULTS (lr 1e-3, betas 0.9, 0.999, eps 1e-8, no decay) or
 * NN_ADAMW_DEFAULTS (the same with weight_decay 1e-2), or pass NULL. */
typedef struct nn_adam_options {
    double lr, beta1, beta2, eps, weight_decay;
    bool amsgrad;
} nn_adam_options;
#define NN_ADAM_DEFAULTS {1e-3, 0.9, 0.999, 1e-8, 0, false}
#define NN_ADAMW_DEFAULTS {1e-3, 0.9, 0.999, 1e-8, 1e-2, false}
AD_API nn_optim *nn_adam(const nn_named_tensors *params, const nn_adam_options *opts);
AD_API nn_optim *nn_adamw(const nn_named_tensors *params, const nn_adam_options *opts);

/* ---- RMSprop ------------------------------------------------------------------
 * With g = dE/dw + weight_decay w:
 *     s = alpha s + (1 - alpha) g^2                 (square_avg)
 *     centered:  a = alpha a + (1 - alpha) g,  r = sqrt(s - a^2) + eps
 *     otherwise: r = sqrt(s) + eps
 *     momentum > 0:  b = momentum b + g / r,  w <- w - lr b
 *     otherwise:     w <- w - lr g / r
 * alpha in [0, 1], momentum in [0, 1), eps and weight_decay >= 0.
 * NN_RMSPROP_DEFAULTS: lr 1e-2, alpha 0.99, eps 1e-8 (PyTorch's). */
typedef struct nn_rmsprop_options {
    double lr, alpha, eps, weight_decay, momentum;
    bool centered;
} nn_rmsprop_options;
#define NN_RMSPROP_DEFAULTS {1e-2, 0.99, 1e-8, 0, 0, false}
AD_API nn_optim *nn_rmsprop(const nn_named_tensors *params, const nn_rmsprop_options *opts);

/* ---- over a module's parameters ---------------------------------------------------
 * nn_sgd(nn_parameters(m), opts) and so on in one call, with nothing to
 * free but the optimiser: torch.optim.SGD(m.parameters(), lr=...).  The
 * parameters are m's at the call (a module given new parameters later
 * needs a new optimiser, as in PyTorch); m must outlive the optimiser.
 * opts NULL means the defaults, as above.  Errors: m NULL, and those of
 * the list form, named after the _module function. */
AD_API nn_optim *nn_sgd_module(const nn_module *m, const nn_sgd_options *opts);
AD_API nn_optim *nn_adam_module(const nn_module *m, const nn_adam_options *opts);
AD_API nn_optim *nn_adamw_module(const nn_module *m, const nn_adam_options *opts);
AD_API nn_optim *nn_rmsprop_module(const nn_module *m, const nn_rmsprop_options *opts);

/* ---- using an optimiser --------------------------------------------------------- */

/* One update of every parameter that has a gradient.  Errors: a gradient
 * or parameter that is not contiguous, a gradient of another shape or
 * dtype.  Checked for every parameter before any is changed. */
AD_API int nn_optim_step(nn_optim *opt);
/* One step that updates only some elements of some parameters: for a
 * data-parallel transport that shards the update (ZeRO's first stage:
 * each worker updates its part of the parameters, then the workers
 * exchange the parts).  The step counts advance as nn_optim_step's do
 * (every parameter that has a gradient), so workers that together list
 * every element once, each calling this with its parts, leave the
 * parameters and state of their parts exactly as nn_optim_step would;
 * elements not listed, and their state, are left alone.  Each part is
 * elements [begin, end) of param, flattened (row-major); its gradient is
 * read from grad (end - begin elements of param's dtype, borrowed) or,
 * when grad is NULL, from the parameter's own.  A part whose param the
 * optimiser does not hold (a frozen one), or that has no gradient, is
 * skipped.  Errors: NULL opt, n < 0, NULL parts with n > 0, a part
 * outside its parameter, and nn_optim_step's, all before any change. */
typedef struct nn_optim_part {
    const ad_tensor *param;
    int64_t begin, end;
    const void *grad;
} nn_optim_part;
AD_API int nn_optim_step_parts(nn_optim *opt, const nn_optim_part *parts, int n);
/* ad_zero_grad on every parameter (call before each backward: gradients
 * accumulate), which zeroes the gradients in place. */
AD_API int nn_optim_zero_grad(nn_optim *opt);
/* The learning rate used by the next step, and setting it (for schedules).
 * get returns NAN with an error for NULL; set fails for a negative or
 * non-finite lr. */
AD_API double nn_optim_get_lr(const nn_optim *opt);
AD_API int nn_optim_set_lr(nn_optim *opt, double lr);
/* "SGD", "Adam", "AdamW", "RMSprop"; NULL with an error for NULL. */
AD_API const char *nn_optim_name(const nn_optim *opt);
/* Number of nn_optim_step calls so far (the "step" state), -1 for NULL. */
AD_API int64_t nn_optim_steps(const nn_optim *opt);
/* The named state tensors described above, owned by the optimiser (the
 * list itself is the caller's: nn_named_tensors_free).  Writing into them
 * (e.g. loading a checkpoint) sets the state. */
AD_API nn_named_tensors *nn_optim_state(const nn_optim *opt);
/* Frees the optimiser and its state (not the parameters).  NULL ignored. */
AD_API void nn_optim_free(nn_optim *opt);

/* ---- learning-rate schedules ------------------------------------------------------
 * Pure functions of the epoch (or step) t >= 0 returning the learning rate,
 * to apply with nn_optim_set_lr at the start of each epoch:
 *     nn_optim_set_lr(opt, nn_lr_cosine(0.1, epoch, 100, 0));
 * They compose: a warm-up of a cosine schedule is
 *     nn_lr_warmup(nn_lr_cosine(0.1, t, T, 0), t, 5, 0.1).
 * A NAN argument propagates (and nn_optim_set_lr then refuses it); invalid
 * arguments give NAN with an error set. */

/* base gamma^floor(t / step_size): multiply by gamma every step_size
 * epochs (StepLR).  step_size >= 1, gamma >= 0. */
AD_API double nn_lr_step(double base_lr, int64_t t, int64_t step_size, double gamma);
/* base gamma^t (ExponentialLR). gamma >= 0. */
AD_API double nn_lr_exponential(double base_lr, int64_t t, double gamma);
/* eta_min + (base - eta_min) (1 + cos(pi t / t_max)) / 2: from base at
 * t = 0 down to eta_min at t = t_max along half a cosine
 * (CosineAnnealingLR's closed form; past t_max it rises again, as
 * PyTorch's does).  t_max >= 1. */
AD_API double nn_lr_cosine(double base_lr, int64_t t, int64_t t_max, double eta_min);
/* Linear warm-up (LinearLR with end factor 1): lr times a factor going
 * linearly from start_factor at t = 0 to 1 at t = warmup, then 1:
 *     lr (start_factor + (1 - start_factor) min(t, warmup) / warmup).
 * warmup >= 1, start_factor in [0, 1]. */
AD_API double nn_lr_warmup(double lr, int64_t t, int64_t warmup, double start_factor);

/* ---- gradient clipping ------------------------------------------------------------
 * Parameters without a gradient are skipped. */

/* torch.nn.utils.clip_grad_norm_: the global L2 norm of all gradients,
 * ||g|| = sqrt(sum over every element of every gradient of g^2), and when
 * c = max_norm / (||g|| + 1e-6) is below 1 every gradient is scaled by c
 * so that the step keeps its direction but not its exploding length (as
 * PyTorch, which multiplies by min(1, c): a norm equal to max_norm, or
 * within 1e-6 under it, is scaled too, by a factor just under 1).
 * Returns ||g|| before clipping (>= 0); when it is NaN or infinite (a
 * gradient is: finite float64 gradients whose squares overflow, beyond
 * 1.3e154, are summed scaled, and give their finite norm) the gradients
 * are left alone and that value is returned, so the caller can skip the
 * step.  -1 on error (NULL list, max_norm negative or NaN). */
AD_API double nn_clip_grad_norm(const nn_named_tensors *params, double max_norm);
/* torch.nn.utils.clip_grad_value_: every gradient element clamped to
 * [-clip, clip]; a NaN element stays NaN.  clip >= 0 and finite. */
AD_API int nn_clip_grad_value(const nn_named_tensors *params, double clip);

/* ---- diagnosing vanishing and exploding gradients ------------------------------------
 * One line per parameter of m: its name, shape, ||w||, ||dE/dw|| and the
 * ratio ||dE/dw|| / ||w|| (about the relative change an SGD step of lr 1
 * makes), then the totals.  Call after ad_backward.  Gradients that shrink
 * by orders of magnitude from the last layer to the first are vanishing
 * (sigmoid/tanh saturation, poor initialisation); huge ones are exploding
 * (lower the learning rate, clip).  A parameter without a gradient shows
 * "-".  Errors: NULL arguments. */
AD_API int nn_grad_norm_report(const nn_module *m, FILE *out);

#ifdef __cplusplus
}
#endif
#endif

/* nn/init.h - parameter initialisation (torch.nn.init).
 *
 * Why initialisation matters.  In a deep network each layer multiplies its
 * input by a weight matrix.  If the weights are too large the activations
 * (and, in the backward pass, the gradients) grow layer after layer and
 * explode; too small and they shrink towards zero and vanish.  The schemes
 * below choose the spread of the random weights from the layer's fan-in
 * (inputs per output) and fan-out so that the variance of the signal stays
 * about the same from layer to layer:
 *
 *   Xavier/Glorot (2010), for tanh/linear layers:
 *       Var(w) = gain^2 * 2 / (fan_in + fan_out)
 *   Kaiming/He (2015), for ReLU layers, which zero half their inputs and so
 *   need twice the variance:
 *       Var(w) = gain^2 / fan        (fan = fan_in or fan_out, gain = sqrt 2)
 *
 * A uniform distribution U(-b, b) has variance b^2 / 3, so the uniform
 * variants use b = sqrt(3 Var); the normal variants use std = sqrt(Var).
 *
 * Fans, as PyTorch's _calculate_fan_in_and_fan_out: for a tensor of
 * ndim >= 2 with shape [out, in, k1, k2, ...] (Linear weight [out, in],
 * Conv2d weight [out, in/groups, kh, kw]),
 *     fan_in = in * k1 * k2 ...,   fan_out = out * k1 * k2 ...
 *
 * Every function writes into t in place (t may require grad; it is a leaf
 * parameter) and draws from rng, which it advances: the same seed gives the
 * same weights.  They return 0, or -1 with ad_error() set: NULL t or rng,
 * integer dtype, ndim < 2 where fans are needed, non-finite or negative
 * arguments where they make no sense.
 */
#ifndef NN_INIT_H
#define NN_INIT_H

#include <autodiff/autodiff.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The non-linearity that follows the layer, for nn_calculate_gain. */
typedef enum nn_nonlinearity {
    NN_LINEAR = 0,    /* also conv layers and identity: gain 1 */
    NN_SIGMOID,       /* 1 */
    NN_TANH,          /* 5/3 */
    NN_RELU,          /* sqrt(2) */
    NN_LEAKY_RELU,    /* sqrt(2 / (1 + slope^2)), slope = param */
    NN_SELU           /* 3/4 */
} nn_nonlinearity;

/* Which fan keeps its variance: fan_in preserves the forward signal's,
 * fan_out the backward gradient's. */
typedef enum nn_fan_mode { NN_FAN_IN = 0, NN_FAN_OUT = 1 } nn_fan_mode;

/* torch.nn.init.calculate_gain: the factor by which to scale the standard
 * deviation for that non-linearity.  param is the negative slope of
 * NN_LEAKY_RELU (ignored otherwise).  NAN with an error for an unknown
 * value or a non-finite slope. */
AD_API double nn_calculate_gain(nn_nonlinearity nonlinearity, double param);
/* fan_in and fan_out of t as described above (either pointer may be NULL).
 * Error for ndim < 2. */
AD_API int nn_calculate_fans(const ad_tensor *t, int64_t *fan_in, int64_t *fan_out);

/* U(lo, hi); error when lo > hi or either is not finite. */
AD_API int nn_init_uniform(ad_tensor *t, double lo, double hi, ad_rng *rng);
/* N(mean, std^2); error when std < 0 or not finite. */
AD_API int nn_init_normal(ad_tensor *t, double mean, double std, ad_rng *rng);
/* Every element set to value (rounded to t's dtype).  Errors, naming
 * nn_init_constant: t NULL or freed, t not a floating tensor. */
AD_API int nn_init_constant(ad_tensor *t, double value);
/* Every element set to 0; the errors of nn_init_constant, naming
 * nn_init_zeros ("nn_init_zeros: argument 't' is NULL"). */
AD_API int nn_init_zeros(ad_tensor *t);
/* Every element set to 1; the errors of nn_init_constant, naming
 * nn_init_ones. */
AD_API int nn_init_ones(ad_tensor *t);

/* Glorot: U(-b, b) with b = gain sqrt(6 / (fan_in + fan_out)), and
 * N(0, std^2) with std = gain sqrt(2 / (fan_in + fan_out)).  gain 1 is
 * PyTorch's default (nn_calculate_gain(NN_TANH, 0) for tanh layers). */
AD_API int nn_init_xavier_uniform(ad_tensor *t, double gain, ad_rng *rng);
AD_API int nn_init_xavier_normal(ad_tensor *t, double gain, ad_rng *rng);

/* He: U(-b, b) with b = gain sqrt(3 / fan), and N(0, std^2) with
 * std = gain / sqrt(fan), where gain = nn_calculate_gain(nonlinearity, a)
 * and fan is chosen by mode.  PyTorch's defaults are a = 0, NN_FAN_IN,
 * NN_LEAKY_RELU (which with a = 0 is ReLU's sqrt 2).  Linear and Conv2d
 * layers use kaiming_uniform with a = sqrt(5), NN_LEAKY_RELU, which gives
 * b = 1/sqrt(fan_in). */
AD_API int nn_init_kaiming_uniform(ad_tensor *t, double a, nn_fan_mode mode,
                            nn_nonlinearity nonlinearity, ad_rng *rng);
AD_API int nn_init_kaiming_normal(ad_tensor *t, double a, nn_fan_mode mode,
                           nn_nonlinearity nonlinearity, ad_rng *rng);

#ifdef __cplusplus
}
#endif
#endif

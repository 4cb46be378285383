/* nn/init.c - parameter initialisers (torch.nn.init), see init.h for the
 * reasoning behind each variance. */
#include <math.h>

#include "init.h"
#include "nn_private.h"

static int check_target(const char *fn, const ad_tensor *t)
{
    if (!t) return nn__null_arg(fn, "t");
    if (!nn__is_float(ad_tensor_dtype(t)))
        return ad_set_error("%s: t must be float32 or float64, got %s", fn,
                            ad_dtype_name(ad_tensor_dtype(t)));
    return 0;
}

/* Draws a persistent tensor of t's shape from U(a, b) or N(a, b^2) and
 * copies it into t, which may have any strides (so views of parameters can
 * be initialised too). */
static int fill_random(const char *fn, ad_tensor *t, ad_rng *rng, bool normal, double a, double b)
{
    if (check_target(fn, t) != 0) return -1;
    if (!rng) return nn__null_arg(fn, "rng");
    if (ad_numel(t) == 0) return 0; /* nothing to draw */
    if (!normal && a == b) return ad_fill(t, a);
    ad_tensor *r = normal ? ad_randn(NULL, rng, ad_tensor_dtype(t), ad_ndim(t), ad_shape(t), a, b)
                          : ad_rand(NULL, rng, ad_tensor_dtype(t), ad_ndim(t), ad_shape(t), a, b);
    if (!r) return ad_set_error("%s: %s", fn, ad_error());
    int rc = ad_copy_into(t, r);
    ad_tensor_free(r);
    return rc;
}

double nn_calculate_gain(nn_nonlinearity nl, double param)
{
    switch (nl) {
    case NN_LINEAR:
    case NN_SIGMOID: return 1.0;
    case NN_TANH: return 5.0 / 3.0;
    case NN_RELU: return sqrt(2.0);
    case NN_LEAKY_RELU:
        /* A leaky ReLU keeps a fraction slope^2 of the variance of the
         * negative half that ReLU drops: Var gain 2 / (1 + slope^2). */
        if (!isfinite(param)) {
            ad_set_error("nn_calculate_gain: the negative slope must be finite, got %g", param);
            return NAN;
        }
        return sqrt(2.0 / (1.0 + param * param));
    case NN_SELU: return 0.75;
    }
    ad_set_error("nn_calculate_gain: unknown non-linearity %d", (int)nl);
    return NAN;
}

int nn_calculate_fans(const ad_tensor *t, int64_t *fan_in, int64_t *fan_out)
{
    const char *fn = "nn_calculate_fans";
    if (!t) return nn__null_arg(fn, "t");
    int nd = ad_ndim(t);
    if (nd < 2) {
        char sh[64];
        ad_shape_str(t, sh, sizeof sh);
        return ad_set_error("%s: fan in and fan out need a tensor of at least 2 dimensions "
                            "([out, in, ...]), got %s", fn, sh);
    }
    /* Each output unit sums in * receptive-field inputs; each input feeds
     * out * receptive-field outputs. */
    int64_t receptive = 1;
    for (int d = 2; d < nd; d++) receptive *= ad_size(t, d);
    if (fan_in) *fan_in = ad_size(t, 1) * receptive;
    if (fan_out) *fan_out = ad_size(t, 0) * receptive;
    return 0;
}

int nn_init_uniform(ad_tensor *t, double lo, double hi, ad_rng *rng)
{
    if (!isfinite(lo) || !isfinite(hi) || lo > hi)
        return ad_set_error("nn_init_uniform: need finite lo <= hi, got [%g, %g]", lo, hi);
    return fill_random("nn_init_uniform", t, rng, false, lo, hi);
}

int nn_init_normal(ad_tensor *t, double mean, double std, ad_rng *rng)
{
    if (!isfinite(mean) || !isfinite(std) || std < 0)
        return ad_set_error("nn_init_normal: need a finite mean and a finite std >= 0, got "
                            "mean %g, std %g", mean, std);
    return fill_random("nn_init_normal", t, rng, true, mean, std);
}

/* Each public initialiser names itself in its errors. */
static int fill_constant(const char *fn, ad_tensor *t, double value)
{
    if (check_target(fn, t) != 0) return -1;
    if (ad_fill(t, value) != 0) return ad_set_error("%s: %s", fn, ad_error());
    return 0;
}

int nn_init_constant(ad_tensor *t, double value)
{
    return fill_constant("nn_init_constant", t, value);
}
int nn_init_zeros(ad_tensor *t) { return fill_constant("nn_init_zeros", t, 0.0); }
int nn_init_ones(ad_tensor *t) { return fill_constant("nn_init_ones", t, 1.0); }

static int gain_ok(const char *fn, double gain)
{
    if (!isfinite(gain) || gain < 0)
        return ad_set_error("%s: gain must be finite and >= 0, got %g", fn, gain);
    return 0;
}

/* Glorot and Bengio: keep Var(w) = gain^2 2 / (fan_in + fan_out), the
 * compromise between preserving the forward variance (1/fan_in) and the
 * backward one (1/fan_out). */
static int xavier(const char *fn, ad_tensor *t, double gain, ad_rng *rng, bool normal)
{
    int64_t fi, fo;
    if (check_target(fn, t) != 0 || gain_ok(fn, gain) != 0) return -1;
    if (nn_calculate_fans(t, &fi, &fo) != 0) return ad_set_error("%s: %s", fn, ad_error());
    if (fi + fo == 0) return 0; /* zero-size tensor */
    double std = gain * sqrt(2.0 / (double)(fi + fo));
    /* U(-b, b) has variance b^2 / 3, so b = sqrt(3) std. */
    return normal ? fill_random(fn, t, rng, true, 0.0, std)
                  : fill_random(fn, t, rng, false, -sqrt(3.0) * std, sqrt(3.0) * std);
}

int nn_init_xavier_uniform(ad_tensor *t, double gain, ad_rng *rng)
{
    return xavier("nn_init_xavier_uniform", t, gain, rng, false);
}

int nn_init_xavier_normal(ad_tensor *t, double gain, ad_rng *rng)
{
    return xavier("nn_init_xavier_normal", t, gain, rng, true);
}

/* He et al.: Var(w) = gain^2 / fan.  For ReLU, gain^2 = 2 makes up for the
 * half of the pre-activations that ReLU zeroes. */
static int kaiming(const char *fn, ad_tensor *t, double a, nn_fan_mode mode, nn_nonlinearity nl,
                   ad_rng *rng, bool normal)
{
    int64_t fi, fo;
    if (check_target(fn, t) != 0) return -1;
    if (mode != NN_FAN_IN && mode != NN_FAN_OUT)
        return ad_set_error("%s: mode must be NN_FAN_IN or NN_FAN_OUT, got %d", fn, (int)mode);
    if (nn_calculate_fans(t, &fi, &fo) != 0) return ad_set_error("%s: %s", fn, ad_error());
    double gain = nn_calculate_gain(nl, a);
    if (isnan(gain)) return ad_set_error("%s: %s", fn, ad_error());
    int64_t fan = mode == NN_FAN_IN ? fi : fo;
    if (fan == 0) return 0; /* zero-size tensor */
    double std = gain / sqrt((double)fan);
    return normal ? fill_random(fn, t, rng, true, 0.0, std)
                  : fill_random(fn, t, rng, false, -sqrt(3.0) * std, sqrt(3.0) * std);
}

int nn_init_kaiming_uniform(ad_tensor *t, double a, nn_fan_mode mode, nn_nonlinearity nl,
                            ad_rng *rng)
{
    return kaiming("nn_init_kaiming_uniform", t, a, mode, nl, rng, false);
}

int nn_init_kaiming_normal(ad_tensor *t, double a, nn_fan_mode mode, nn_nonlinearity nl,
                           ad_rng *rng)
{
    return kaiming("nn_init_kaiming_normal", t, a, mode, nl, rng, true);
}

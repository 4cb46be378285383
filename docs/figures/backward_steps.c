/* docs/figures/backward_steps.c - the pictures of the guide's §4: the graph
 * of f(x, y) = x*y + sin(x) at (2, 3), drawn by the library's DOT writer
 * once before the backward pass and once after each of its steps.
 *
 *     backward_steps OUTDIR      writes OUTDIR/backward_step0.dot ... step3.dot
 *
 * Each arrow carries its local derivative (ad_dot_opts.edge_derivatives);
 * each node shows the adjoint df/d(node) known at that step - the seed 1 at
 * f, then the sums the processed steps have added so far - and the node
 * the step processed is outlined in red.  The steps are the library's own:
 * a trace hook (ad_set_trace) records what each backward step added to each
 * input, and the pictures replay those additions in order.
 */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXSTEPS 8

/* One backward step: node `node` with adjoint g added add[k] to input k. */
typedef struct {
    long node;
    char op[16];
    double g;
    int nin;
    ad_tensor *in[2];
    double add[2]; /* NaN: no gradient flows to that input */
} step;

static step steps[MAXSTEPS];
static int nsteps;

static void hook(const ad_trace_event *e, void *ctx)
{
    (void)ctx;
    if (e->phase != AD_TRACE_BACKWARD || nsteps == MAXSTEPS || e->nin > 2) return;
    step *s = &steps[nsteps++];
    s->node = (long)e->node;
    snprintf(s->op, sizeof s->op, "%s", e->op);
    s->g = ad_item(e->grad_output);
    s->nin = e->nin;
    for (int k = 0; k < e->nin; k++) {
        s->in[k] = e->inputs[k];
        s->add[k] = e->grad_inputs[k] && ad_requires_grad(e->inputs[k]) ? ad_item(e->grad_inputs[k])
                                                                          : NAN;
    }
}

static void name(const ad_tensor *t, char *buf, size_t size)
{
    if (ad_label(t)) snprintf(buf, size, "%s", ad_label(t));
    else snprintf(buf, size, "n%ld", ad_tensor_node_index(t));
}

/* The picture after the first `done` steps, to path. */
static int picture(ad_tensor *f, int done, const char *path)
{
    ad_tensor *of[16], *val[16];
    double sum[16];
    int n = 0;
    of[n] = f, sum[n++] = 1; /* the seed: df/df = 1 */
    for (int j = 0; j < done; j++)
        for (int k = 0; k < steps[j].nin; k++) {
            if (isnan(steps[j].add[k])) continue;
            int i = 0;
            while (i < n && of[i] != steps[j].in[k]) i++;
            if (i == n) of[n] = steps[j].in[k], sum[n++] = 0;
            sum[i] += steps[j].add[k];
        }
    for (int i = 0; i < n; i++) val[i] = ad_scalar_tensor(NULL, AD_FLOAT64, sum[i]);
    ad_dot_opts o = AD_DOT_DEFAULTS;
    o.precision = 4;
    o.show_grads = false; /* only the adjoints known at this step */
    o.ngrads = n;
    o.grad_of = of;
    o.grads = val;
    o.edge_derivatives = true;
    o.name = "backward";
    FILE *tmp = tmpfile();
    int rc = tmp ? ad_graph_dot(tmp, &f, 1, &o) : -1;
    for (int i = 0; i < n; i++) ad_tensor_free(val[i]);
    if (rc) {
        if (tmp) fclose(tmp);
        return -1;
    }
    long len = ftell(tmp);
    char *dot = malloc((size_t)len + 1);
    rewind(tmp);
    size_t got = dot ? fread(dot, 1, (size_t)len, tmp) : 0;
    fclose(tmp);
    if (!dot || got != (size_t)len || len < 2) {
        free(dot);
        return -1;
    }
    dot[len - 2] = '\0'; /* drop the closing "}\n": more statements follow */
    char caption[256];
    if (done == 0) {
        snprintf(caption, sizeof caption,
                 "before the backward pass: the seed g(f) = df/df = 1");
    } else {
        const step *s = &steps[done - 1];
        int len2 = snprintf(caption, sizeof caption, "step %d: n%ld %s, g = %.4g", done, s->node,
                            s->op, s->g);
        for (int k = 0; k < s->nin; k++) {
            if (isnan(s->add[k])) continue;
            char who[32];
            name(s->in[k], who, sizeof who);
            len2 += snprintf(caption + len2, sizeof caption - (size_t)len2,
                             "; adds g\xc2\xb7\xe2\x88\x82 = %.4g to %s", s->add[k], who);
        }
    }
    FILE *out = fopen(path, "w");
    if (!out) {
        free(dot);
        return -1;
    }
    fputs(dot, out);
    if (done > 0) fprintf(out, "  n%ld [color=\"#c00000\", penwidth=2.5];\n", steps[done - 1].node);
    fprintf(out, "  labelloc=b;\n  fontname=\"Helvetica\";\n  fontsize=11;\n  label=\"%s\";\n}\n",
            caption);
    free(dot);
    return fclose(out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: backward_steps OUTDIR\n");
        return 2;
    }
    ad_tape *tape = ad_tape_new();
    ad_tensor *x = ad_scalar_tensor(tape, AD_FLOAT64, 2.0);
    ad_tensor *y = ad_scalar_tensor(tape, AD_FLOAT64, 3.0);
    ad_set_requires_grad(x, true);
    ad_set_requires_grad(y, true);
    ad_set_label(x, "x");
    ad_set_label(y, "y");
    ad_tensor *xy = ad_mul(x, y); /* one op per statement: the order fixes the node numbers */
    ad_tensor *sx = ad_sin(x);
    ad_tensor *f = ad_add(xy, sx);
    ad_set_label(f, "f");
    ad_set_trace(hook, NULL);
    int rc = f ? ad_backward(f, NULL, AD_RETAIN_GRAPH) : -1;
    ad_set_trace(NULL, NULL);
    for (int s = 0; rc == 0 && s <= nsteps; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/backward_step%d.dot", argv[1], s);
        rc = picture(f, s, path);
    }
    if (rc) fprintf(stderr, "backward_steps: %s\n", ad_error() ? ad_error() : "cannot write");
    ad_tape_free(tape);
    return rc ? 1 : 0;
}

/* autodiff/graph.h - pictures of a recording: Graphviz DOT output.
 *
 * A tape is a graph: every recorded op is a node whose inputs are the
 * tensors it read (results of earlier ops, or leaves) and whose output is
 * one tensor.  Backpropagation walks exactly this graph in reverse, so
 * seeing it is the quickest way to understand what ad_backward() will do.
 *
 *     ad_tensor *f = ad_add(ad_mul(x, y), ad_sin(x));
 *     ad_backward(f, NULL, AD_RETAIN_GRAPH);
 *     FILE *out = fopen("f.dot", "w");
 *     ad_graph_dot(out, &f, 1, NULL);        then: dot -Tpng f.dot > f.png
 *
 * In the picture, leaves (inputs, parameters, constants) are boxes and
 * recorded ops are ellipses; an arrow goes from each input to the op that
 * read it, labelled with the input's position when the op has several (the
 * a and b of the op's formula, in that order).  A node's label gives the
 * node's index on the tape and the op's name ("n2: add"), the label of the
 * tensor (ad_set_label) and of the scope it was recorded in
 * (ad_set_scope_label), its shape and dtype, its values when it has at
 * most max_values elements, and its gradient when one is known: a leaf's
 * accumulated ad_tensor_grad(), or one passed in the options (for
 * instance the adjoints of intermediate results, from ad_gradients()).
 * With edge_derivatives, an arrow between one-element tensors also carries
 * the local derivative d(op)/d(input) ("0: ∂ = 3"), so the chain rule can
 * be read off the picture.
 * Leaves that require grad are filled, constants are dashed, the tensors
 * asked for are drawn with a double border, and nodes kept only for replay
 * (ad_tape_set_replayable) are dashed ellipses.
 *
 * (The names carry "graph": ad_dot is the dot product of ops_linalg.h.)
 *
 * The writer uses only the public inspection API of tape.h
 * (ad_tape_num_nodes, ad_tape_node_info, ad_tensor_node_index), so it is
 * also an example of walking a recording.  Strings are escaped, so any
 * label gives well-formed DOT.
 */
#ifndef AUTODIFF_GRAPH_H
#define AUTODIFF_GRAPH_H

#include "export.h"
#include "tape.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ad_dot_opts {
    /* Print the values (and gradients) of tensors with at most this many
     * elements; larger ones show only their shape.  0 prints no values. */
    int max_values;
    /* Significant digits of printed numbers, 1..17. */
    int precision;
    /* Print leaves' accumulated gradients (ad_tensor_grad). */
    bool show_grads;
    /* Graphviz layout direction: "TB" (inputs at the top, the default),
     * "BT", "LR" or "RL".  NULL for the default. */
    const char *rankdir;
    /* The graph's name in the DOT file; NULL for "autodiff". */
    const char *name;
    /* Extra gradients to print: grads[i] is shown as the gradient of
     * grad_of[i] (same shape), taking precedence over a leaf's own grad.
     * ngrads may be 0 with both arrays NULL. */
    int ngrads;
    ad_tensor *const *grad_of;
    ad_tensor *const *grads;
    /* Label each arrow from a one-element input to a one-element op with
     * the local derivative d(op)/d(input) at the recorded values ("∂ = 3"
     * on the arrow from y to mul(x, y) at x = 3): the factor by which the
     * chain rule multiplies the op's adjoint on its way to that input, so
     * that df/d(input) is the sum, over the arrows leaving it, of the
     * arrow's factor times the adjoint of the op it points to.  Computed by
     * the op's own backward rule applied to 1 (nothing is recorded).
     * Arrows between larger tensors, whose local derivative is a Jacobian,
     * are not labelled with it. */
    bool edge_derivatives;
} ad_dot_opts;
#define AD_DOT_DEFAULTS {4, 4, true, NULL, NULL, 0, NULL, NULL, false}

/* Writes the history of outputs[0..n-1] as one DOT digraph: every recorded
 * node they depend on, found through ad_tensor_node_index() and
 * ad_tape_node_info(), and every leaf those nodes read.  outputs must be
 * recorded on one tape (leaves, persistent tensors included, may be among
 * them and are drawn alone).  opts may be NULL for AD_DOT_DEFAULTS.
 * Returns 0, or -1 with ad_error() set: NULL out or output, n < 0, outputs
 * on different tapes, bad options, out of memory, a write error (the
 * stream may then hold part of the graph). */
AD_API int ad_graph_dot(FILE *out, ad_tensor *const *outputs, int n, const ad_dot_opts *opts);

/* Writes every node recorded on tape since its last reset (replay-only
 * nodes and the nodes of recorded backward passes too) and the leaves
 * they read.  Same options and errors; the outputs of the tape's last
 * nodes get no double border. */
AD_API int ad_graph_dot_tape(FILE *out, const ad_tape *tape, const ad_dot_opts *opts);

#ifdef __cplusplus
}
#endif
#endif

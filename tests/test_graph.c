#define _XOPEN_SOURCE 700 /* mkdtemp */
/* tests/test_graph.c - the DOT writer (autodiff/graph.h): which nodes and
 * edges a picture holds, the labels (values, shapes, gradients, labels and
 * scopes), escaping, the whole-tape form, errors, and - when Graphviz is
 * installed (DOT=/path/to/dot in the environment) - that dot accepts the
 * output. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <autodiff/autodiff.h>

#include "check_asserts.h"

/* Runs the writer into a temporary file and returns what it wrote
 * (malloc'd), or NULL when it failed. */
static char *dot_of(ad_tensor *const *outs, int n, const ad_dot_opts *o, const ad_tape *tape)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    int rc = tape ? ad_graph_dot_tape(f, tape, o) : ad_graph_dot(f, outs, n, o);
    long len = ftell(f);
    rewind(f);
    char *s = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(s);
    s[fread(s, 1, (size_t)len, f)] = '\0';
    fclose(f);
    if (rc) {
        free(s);
        return NULL;
    }
    return s;
}

/* Occurrences of what in s.  A plain loop: sanitizers check the whole
 * haystack on every strstr call, which makes repeated strstr quadratic. */
static int count(const char *s, const char *what)
{
    int n = 0;
    for (; *s; s++) {
        size_t i = 0;
        while (what[i] && s[i] == what[i]) i++;
        n += what[i] == '\0';
    }
    return n;
}

/* The DOT subset the writer produces, checked line by line: a header, a
 * closing brace, and in between statements ending in ';' whose quoted
 * strings are closed on the line (a backslash escapes the next byte). */
static void assert_well_formed(const char *s)
{
    ck_assert_msg(strncmp(s, "digraph \"", 9) == 0, "no header: %.40s", s);
    size_t len = strlen(s);
    ck_assert_msg(len >= 3 && strcmp(s + len - 2, "}\n") == 0, "no closing brace");
    const char *line = strchr(s, '\n') + 1;
    int lines = 0;
    while (*line && strcmp(line, "}\n") != 0) {
        const char *end = strchr(line, '\n');
        ck_assert_ptr_nonnull(end);
        bool quoted = false;
        for (const char *p = line; p < end; p++) {
            if (quoted && *p == '\\') p++;
            else if (*p == '"') quoted = !quoted;
        }
        ck_assert_msg(!quoted, "unterminated string: %.*s", (int)(end - line), line);
        ck_assert_msg(end[-1] == ';', "statement without ';': %.*s", (int)(end - line), line);
        ck_assert_msg(strncmp(line, "  ", 2) == 0, "statement not indented");
        line = end + 1;
        lines++;
    }
    ck_assert_int_gt(lines, 0);
}

/* With DOT set, renders s to SVG and checks dot's exit status and output. */
static void render(const char *s)
{
    const char *dot = getenv("DOT");
    if (!dot || !*dot) return; /* Graphviz not installed: structure checks only */
    /* A directory of its own: two runs at once (two builds' suites on one
     * machine, meson test --repeat) must not write or remove each other's
     * files, as a name from the time and rand(), which every forked test
     * starts at the same value, did. */
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[530], svg[530], cmd[1200];
    snprintf(dir, sizeof dir, "%s/test_graph_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s failed", dir);
    snprintf(path, sizeof path, "%s/graph.dot", dir);
    snprintf(svg, sizeof svg, "%s/graph.svg", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(s, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' -Tsvg '%s' -o '%s'", dot, path, svg);
    int rc = system(cmd);
    f = fopen(svg, "r");
    char head[4096] = "";
    if (f) {
        head[fread(head, 1, sizeof head - 1, f)] = '\0';
        fclose(f);
    }
    remove(path);
    remove(svg);
    rmdir(dir);
    ck_assert_msg(rc == 0, "dot failed (%d) on:\n%s", rc, s);
    ck_assert_msg(strstr(head, "<svg") != NULL, "dot wrote no SVG");
}

static ad_tensor *var(ad_tape *t, double v, const char *name)
{
    ad_tensor *x = ad_scalar_tensor(t, AD_FLOAT64, v);
    ck_assert_int_eq(ad_set_requires_grad(x, true), 0);
    if (name) ck_assert_int_eq(ad_set_label(x, name), 0);
    return x;
}

START_TEST(history_of_x_mul_y_plus_sin_x)
{
    /* f = x*y + sin(x): leaves x, y; ops mul, sin, add; five arrows */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = var(t, 2, "x"), *y = var(t, 3, "y");
    /* one op per statement: C does not fix the order in which a call's
     * arguments are evaluated, and the order decides the node numbers */
    ad_tensor *xy = ad_mul(x, y);
    ad_tensor *sx = ad_sin(x);
    ad_tensor *f = ad_add(xy, sx);
    ck_assert_int_eq(ad_backward(f, NULL, AD_RETAIN_GRAPH), 0);
    char *s = dot_of(&f, 1, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    assert_well_formed(s);
    ck_assert_int_eq(count(s, "[shape=box"), 2);
    ck_assert_int_eq(count(s, "[shape=ellipse"), 3);
    ck_assert_int_eq(count(s, " -> "), 5);
    /* leaves carry their value and accumulated gradient (4 digits) */
    ck_assert_ptr_nonnull(strstr(s, "label=\"x\\n[] float64\\nvalue 2\\ngrad 2.584\""));
    ck_assert_ptr_nonnull(strstr(s, "label=\"y\\n[] float64\\nvalue 3\\ngrad 2\""));
    ck_assert_ptr_nonnull(strstr(s, "label=\"n0: mul\\n[] float64\\nvalue 6\""));
    ck_assert_ptr_nonnull(strstr(s, "label=\"n1: sin\\n[] float64\\nvalue 0.9093\""));
    /* arrows from the leaves into mul, labelled with the input position */
    ck_assert_ptr_nonnull(strstr(s, "L0 -> n0 [label=\"0\"];"));
    ck_assert_ptr_nonnull(strstr(s, "L1 -> n0 [label=\"1\"];"));
    ck_assert_ptr_nonnull(strstr(s, "L0 -> n1;")); /* one input: no label */
    ck_assert_ptr_nonnull(strstr(s, "n1 -> n2 [label=\"1\"];"));
    /* the output has a double border, nothing else does */
    ck_assert_int_eq(count(s, "peripheries=2"), 1);
    ck_assert_ptr_nonnull(strstr(s, "n2 [shape=ellipse, style=filled, fillcolor=\"#fff2cc\", "
                                    "peripheries=2"));
    /* declared before use: every leaf line comes before its first arrow */
    ck_assert(strstr(s, "  L1 [") < strstr(s, "L1 -> "));
    render(s);
    free(s);
    ad_tape_free(t);
}
END_TEST

/* edge_derivatives: each arrow between one-element tensors carries the
 * local derivative of the op with respect to that input, by hand:
 * d(x*y)/dx = y = 3, d(x*y)/dy = x = 2, d sin(x)/dx = cos 2, d(a+b) = 1;
 * x^3 at 2: 3x^2 = 12 (the constant 3 gets no derivative).  Arrows
 * between larger tensors carry none. */
START_TEST(local_derivatives_on_the_arrows)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = var(t, 2, "x"), *y = var(t, 3, "y");
    ad_tensor *xy = ad_mul(x, y);
    ad_tensor *sx = ad_sin(x);
    ad_tensor *f = ad_add(xy, sx);
    ad_tensor *cube = ad_pow_scalar(x, 3);
    ad_dot_opts o = AD_DOT_DEFAULTS;
    ck_assert(!o.edge_derivatives); /* off by default */
    o.edge_derivatives = true;
    o.precision = 6;
    /* before any backward pass, and the graph is not consumed */
    ad_tensor *outs[2] = {f, cube};
    char *s = dot_of(outs, 2, &o, NULL);
    ck_assert_ptr_nonnull(s);
    assert_well_formed(s);
    ck_assert_ptr_nonnull(strstr(s, "L0 -> n0 [label=\"0: \xe2\x88\x82 = 3\"];"));
    ck_assert_ptr_nonnull(strstr(s, "L1 -> n0 [label=\"1: \xe2\x88\x82 = 2\"];"));
    char want[80];
    snprintf(want, sizeof want, "L0 -> n1 [label=\"\xe2\x88\x82 = %.6g\"];", cos(2.0));
    ck_assert_msg(strstr(s, want) != NULL, "%s not in\n%s", want, s);
    ck_assert_ptr_nonnull(strstr(s, "n0 -> n2 [label=\"0: \xe2\x88\x82 = 1\"];"));
    ck_assert_ptr_nonnull(strstr(s, "n1 -> n2 [label=\"1: \xe2\x88\x82 = 1\"];"));
    ck_assert_ptr_nonnull(strstr(s, "L0 -> n3 [label=\"0: \xe2\x88\x82 = 12\"];"));
    render(s);
    free(s);
    /* the chain rule over the arrows: df/dx = 3*1 + cos 2*1, as backward says */
    ck_assert_int_eq(ad_backward(f, NULL, 0), 0);
    ck_assert_double_eq_tol(ad_item(ad_tensor_grad(x)), 3 + cos(2.0), 1e-15);
    /* a matrix product: arrows between tensors are not labelled */
    ad_tensor *A = ad_from_array(t, AD_FLOAT64, AD_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ck_assert_int_eq(ad_set_requires_grad(A, true), 0);
    ad_tensor *s2 = ad_sum(ad_matmul(A, A), NULL, 0, false);
    s = dot_of(&s2, 1, &o, NULL);
    ck_assert_ptr_nonnull(s);
    assert_well_formed(s);
    ck_assert_int_eq(count(s, "\xe2\x88\x82"), 0);
    free(s);
    ad_tape_free(t);
}
END_TEST

START_TEST(only_the_history_of_the_outputs)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *x = var(t, 1, "x"), *y = var(t, 2, "y");
    ad_tensor *a = ad_mul(x, x);
    ad_tensor *b = ad_exp(y); /* recorded, but a does not depend on it */
    char *s = dot_of(&a, 1, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_null(strstr(s, "exp"));
    ck_assert_ptr_null(strstr(s, "label=\"y"));
    ck_assert_int_eq(count(s, " -> "), 2); /* x used twice: two arrows */
    free(s);
    /* both outputs: both histories, y included */
    ad_tensor *both[] = {a, b};
    s = dot_of(both, 2, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(strstr(s, "n1: exp"));
    ck_assert_int_eq(count(s, "peripheries=2"), 2);
    assert_well_formed(s);
    free(s);
    ad_tape_free(t);
}
END_TEST

START_TEST(values_up_to_max_values_then_shapes)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *v3 = ad_from_array(t, AD_FLOAT64, AD_SHAPE(3), (double[]){1, 2.5, -3});
    ad_tensor *m = ad_from_array(t, AD_FLOAT64, AD_SHAPE(2, 2), (double[]){1, 2, 3, 4});
    ad_tensor *big = ad_zeros(t, AD_FLOAT32, AD_SHAPE(5));
    ad_set_requires_grad(v3, true);
    ad_set_requires_grad(m, true);
    ad_set_requires_grad(big, true);
    ad_tensor *outs[] = {ad_exp(v3), ad_neg(m), ad_neg(big)};
    char *s = dot_of(outs, 3, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    assert_well_formed(s);
    ck_assert_ptr_nonnull(strstr(s, "leaf\\n[3] float64\\nvalue [1, 2.5, -3]"));
    ck_assert_ptr_nonnull(strstr(s, "leaf\\n[2,2] float64\\nvalue [[1, 2], [3, 4]]"));
    ck_assert_ptr_nonnull(strstr(s, "n1: neg\\n[2,2] float64\\nvalue [[-1, -2], [-3, -4]]"));
    /* 5 elements > max_values 4: the shape only */
    ck_assert_ptr_nonnull(strstr(s, "leaf\\n[5] float32\"]"));
    ck_assert_ptr_nonnull(strstr(s, "n2: neg\\n[5] float32\"]"));
    render(s);
    free(s);
    /* max_values 0 prints no value at all; precision and rankdir apply */
    ad_dot_opts o = AD_DOT_DEFAULTS;
    o.max_values = 0;
    o.rankdir = "LR";
    o.name = "my \"graph\"";
    s = dot_of(outs, 3, &o, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_null(strstr(s, "value"));
    ck_assert_ptr_nonnull(strstr(s, "rankdir=LR;"));
    ck_assert_int_eq(strncmp(s, "digraph \"my \\\"graph\\\"\" {\n", 25), 0);
    free(s);
    o = (ad_dot_opts)AD_DOT_DEFAULTS;
    o.precision = 2;
    s = dot_of(outs, 1, &o, NULL);
    ck_assert_ptr_nonnull(strstr(s, "value [2.7, 12, 0.05]")); /* e^1, e^2.5, e^-3 */
    free(s);
    ad_tape_free(t);
}
END_TEST

START_TEST(labels_scopes_and_escaping)
{
    ad_tape *t = ad_tape_new();
    ad_tensor *w = var(t, 0.5, "w \"the\" \\weight\nline2");
    const char *prev = ad_set_scope_label("layer \"1\"");
    ad_tensor *h = ad_tanh(w);
    ad_set_scope_label(prev);
    ad_tensor *c = ad_scalar_tensor(t, AD_FLOAT64, 3); /* a constant: dashed box */
    ad_tensor *f = ad_mul(h, c);
    char *s = dot_of(&f, 1, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    assert_well_formed(s);
    ck_assert_ptr_nonnull(strstr(s, "label=\"w \\\"the\\\" \\\\weight\\nline2\\n[] float64"));
    ck_assert_ptr_nonnull(strstr(s, "n0: tanh (in layer \\\"1\\\")"));
    ck_assert_ptr_nonnull(strstr(s, "style=dashed, label=\"constant\\n[] float64\\nvalue 3\""));
    ck_assert_ptr_null(strstr(s, "n1: mul (in")); /* recorded outside the scope */
    /* labelling an op's output names it once, not as a scope too */
    ck_assert_int_eq(ad_set_label(f, "loss"), 0);
    free(s);
    s = dot_of(&f, 1, NULL, NULL);
    ck_assert_ptr_nonnull(strstr(s, "label=\"n1: mul\\nloss\\n"));
    render(s);
    free(s);
    ad_tape_free(t);
}
END_TEST

START_TEST(gradients_from_the_options)
{
    /* The adjoints of intermediate results, from ad_gradients, shown at
     * their nodes: f = sin(x)*x at x = 1; df/dsin = x = 1, df/dx via the
     * leaf's own grad after backward = cos 1 + sin 1. */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = var(t, 1, "x");
    ad_tensor *s1 = ad_sin(x);
    ad_tensor *f = ad_mul(s1, x);
    ad_tensor *adj;
    ck_assert_int_eq(ad_gradients(f, NULL, 1, &s1, &adj, AD_RETAIN_GRAPH), 0);
    ck_assert_int_eq(ad_backward(f, NULL, AD_RETAIN_GRAPH), 0);
    ad_dot_opts o = AD_DOT_DEFAULTS;
    o.ngrads = 1;
    o.grad_of = &s1;
    o.grads = &adj;
    o.precision = 6;
    char *s = dot_of(&f, 1, &o, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(strstr(s, "n0: sin\\n[] float64\\nvalue 0.841471\\ngrad 1\""));
    ck_assert_ptr_nonnull(strstr(s, "x\\n[] float64\\nvalue 1\\ngrad 1.38177\""));
    ck_assert_ptr_nonnull(strstr(s, "n1: mul\\n[] float64\\nvalue 0.841471\"")); /* none given */
    free(s);
    o.show_grads = false;
    s = dot_of(&f, 1, &o, NULL);
    ck_assert_ptr_null(strstr(s, "grad 1.38177"));
    free(s);
    ad_tape_free(t);
}
END_TEST

START_TEST(leaves_alone_and_persistent_tensors)
{
    ad_tensor *p = ad_scalar_tensor(NULL, AD_FLOAT64, 4); /* persistent */
    ad_set_requires_grad(p, true);
    ad_set_label(p, "p");
    char *s = dot_of(&p, 1, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    assert_well_formed(s);
    ck_assert_int_eq(count(s, "[shape=box"), 1);
    ck_assert_ptr_nonnull(strstr(s, "peripheries=2, label=\"p\\n[] float64\\nvalue 4\""));
    free(s);
    /* a persistent parameter read by a recorded op */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = var(t, 2, "x");
    ad_tensor *f = ad_mul(p, x);
    s = dot_of(&f, 1, NULL, NULL);
    ck_assert_int_eq(count(s, "[shape=box"), 2);
    ck_assert_int_eq(count(s, " -> n0"), 2);
    free(s);
    ad_tape_free(t);
    ad_tensor_free(p);
}
END_TEST

START_TEST(whole_tape_and_replay_only_nodes)
{
    ad_tape *t = ad_tape_new();
    ck_assert_int_eq(ad_tape_set_replayable(t, true), 0);
    ad_tensor *x = var(t, 2, "x");
    ad_tensor *k = ad_scalar_tensor(t, AD_FLOAT64, 3);
    ad_tensor *k2 = ad_mul(k, k); /* no grad path: recorded only for replay */
    ad_tensor *a = ad_mul(x, k2);
    ad_tensor *b = ad_exp(x);
    (void)a;
    (void)b;
    char *s = dot_of(NULL, 0, NULL, t);
    ck_assert_ptr_nonnull(s);
    assert_well_formed(s);
    ck_assert_int_eq((int)ad_tape_num_nodes(t), 3);
    ck_assert_int_eq(count(s, "[shape=ellipse"), 3);
    ck_assert_ptr_nonnull(strstr(s, "n0: mul\\n(replay only)"));
    ck_assert_ptr_nonnull(strstr(s, "n0 -> n1 [label=\"1\"];")); /* linked, not a leaf */
    ck_assert_ptr_nonnull(strstr(s, "n2: exp"));
    render(s);
    free(s);
    /* through ad_graph_dot the replay-only result is a leaf of a's history */
    s = dot_of(&a, 1, NULL, NULL);
    ck_assert_int_eq(count(s, "[shape=ellipse"), 1);
    ck_assert_ptr_nonnull(strstr(s, "constant\\n[] float64\\nvalue 9"));
    free(s);
    ad_tape_free(t);
}
END_TEST

START_TEST(a_long_tape)
{
    /* 20000 nodes: the writer's maps keep it linear */
    ad_tape *t = ad_tape_new();
    ad_tensor *x = var(t, 0.5, "x"), *y = x;
    for (int i = 0; i < 20000; i++) y = ad_sin(y);
    char *s = dot_of(&y, 1, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(count(s, " -> "), 20000);
    ck_assert_ptr_nonnull(strstr(s, "n19999: sin"));
    free(s);
    ad_tape_free(t);
}
END_TEST

static void assert_error(int rc, const char *fn, const char *part)
{
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_nonnull(ad_error());
    ck_assert_msg(strncmp(ad_error(), fn, strlen(fn)) == 0 && strstr(ad_error(), part),
                  "error '%s' lacks '%s' / '%s'", ad_error(), fn, part);
    ad_clear_error();
}

START_TEST(errors_name_the_function)
{
    ad_tape *t = ad_tape_new(), *u = ad_tape_new();
    ad_tensor *x = var(t, 1, "x"), *z = var(u, 1, "z");
    ad_tensor *fx = ad_exp(x), *fz = ad_exp(z);
    FILE *f = tmpfile();
    assert_error(ad_graph_dot(NULL, &fx, 1, NULL), "ad_graph_dot:", "out is NULL");
    assert_error(ad_graph_dot(f, NULL, 1, NULL), "ad_graph_dot:", "outputs NULL");
    assert_error(ad_graph_dot(f, &fx, -1, NULL), "ad_graph_dot:", "n = -1");
    ad_tensor *with_null[] = {fx, NULL};
    assert_error(ad_graph_dot(f, with_null, 2, NULL), "ad_graph_dot:", "outputs[1] is NULL");
    ad_tensor *mixed[] = {fx, fz};
    assert_error(ad_graph_dot(f, mixed, 2, NULL), "ad_graph_dot:", "another tape");
    ad_dot_opts o = AD_DOT_DEFAULTS;
    o.rankdir = "UP";
    assert_error(ad_graph_dot(f, &fx, 1, &o), "ad_graph_dot:", "rankdir");
    o = (ad_dot_opts)AD_DOT_DEFAULTS;
    o.precision = 0;
    assert_error(ad_graph_dot(f, &fx, 1, &o), "ad_graph_dot:", "precision");
    o = (ad_dot_opts)AD_DOT_DEFAULTS;
    o.max_values = -1;
    assert_error(ad_graph_dot(f, &fx, 1, &o), "ad_graph_dot:", "max_values");
    o = (ad_dot_opts)AD_DOT_DEFAULTS;
    o.ngrads = 1;
    assert_error(ad_graph_dot(f, &fx, 1, &o), "ad_graph_dot:", "ngrads");
    ad_tensor *v2 = ad_zeros(t, AD_FLOAT64, AD_SHAPE(2));
    o.grad_of = &fx;
    o.grads = &v2;
    assert_error(ad_graph_dot(f, &fx, 1, &o), "ad_graph_dot:", "elements");
    assert_error(ad_graph_dot_tape(f, NULL, NULL), "ad_graph_dot_tape:", "tape is NULL");
    assert_error(ad_graph_dot_tape(NULL, t, NULL), "ad_graph_dot_tape:", "out is NULL");
    /* n = 0 is an empty, well-formed graph */
    char *s = dot_of(NULL, 0, NULL, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(strstr(s, "}\n"), "}\n");
    free(s);
    fclose(f);
    ad_tape_free(t);
    ad_tape_free(u);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("graph");
    TCase *tc = tcase_create("graph");
    tcase_add_test(tc, history_of_x_mul_y_plus_sin_x);
    tcase_add_test(tc, local_derivatives_on_the_arrows);
    tcase_add_test(tc, only_the_history_of_the_outputs);
    tcase_add_test(tc, values_up_to_max_values_then_shapes);
    tcase_add_test(tc, labels_scopes_and_escaping);
    tcase_add_test(tc, gradients_from_the_options);
    tcase_add_test(tc, leaves_alone_and_persistent_tensors);
    tcase_add_test(tc, whole_tape_and_replay_only_nodes);
    tcase_add_test(tc, a_long_tape);
    tcase_add_test(tc, errors_name_the_function);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

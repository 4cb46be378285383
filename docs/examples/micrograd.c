/* docs/examples/micrograd.c - a neural network made of single numbers.
 *
 * Andrej Karpathy's micrograd trains a small multi-layer perceptron in which
 * every weight, every product and every sum is one scalar node of a graph;
 * backpropagation walks that graph backwards.  This is the same program in
 * C with autodiff's scalar API (autodiff/scalar.h): an ad_scalar is one
 * double recorded on a tape, and ad_scalar_gradient() runs the backward
 * sweep and reads the gradient of the loss with respect to every weight.
 *
 * The data are the "two moons": two interleaved half circles in the plane,
 * 100 points generated with the library's seeded random numbers, labelled
 * y = +1 and y = -1.  No straight line separates them, so the network must
 * learn a curved boundary.  The model is micrograd's: 2 inputs, two hidden
 * layers of 16 ReLU units, one output score s(x); the predicted class is
 * the sign of s.  The loss is micrograd's too, the mean hinge loss of a
 * support vector machine plus an L2 penalty on the weights:
 *
 *     E = (1/N) sum_n max(0, 1 - y_n s(x_n))  +  alpha sum_w w^2
 *
 * and each step of gradient descent (on all 100 points, for 100 steps, with
 * a learning rate decaying from 1.0 to 0.1) is
 *
 *     w <- w - eta dE/dw.
 *
 * Each step records about 66,000 scalar nodes - every multiply-add of every
 * neuron for every point - and one reverse sweep gives all 337 partial
 * derivatives.  Weights live in a plain double array between steps; each
 * step puts them on the tape as variables, and ad_tape_reset() forgets the
 * step's graph (keeping its memory for the next one).
 *
 * Output: the loss and accuracy every 10 steps, and the decision boundary
 * as an image, micrograd_boundary.ppm (a PPM anyone can open; in the
 * directory given as the first argument, else the current one).  When
 * gnuplot is installed a PNG is drawn too, micrograd_boundary.png.  The
 * program exits with status 1 unless the accuracy reaches 95%.
 */
#include <autodiff/autodiff.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define NPOINTS 100
#define H1 16
#define H2 16
/* weights and biases: 2->16, 16->16, 16->1 */
#define NPARAMS (H1 * 2 + H1 + H2 * H1 + H2 + H2 + 1)
#define STEPS 100
#define ALPHA 1e-4

static const double PI = 3.14159265358979323846;

/* The two moons, with Gaussian noise of standard deviation 0.1. */
static void make_moons(ad_rng *rng, double x[][2], double y[])
{
    for (int i = 0; i < NPOINTS; i++) {
        int upper = i < NPOINTS / 2;
        double t = PI * ad_rng_uniform(rng);
        /* Box-Muller: two uniforms give two independent normals */
        double u1 = 1 - ad_rng_uniform(rng), u2 = ad_rng_uniform(rng);
        double r = 0.1 * sqrt(-2 * log(u1));
        x[i][0] = (upper ? cos(t) : 1 - cos(t)) + r * cos(2 * PI * u2);
        x[i][1] = (upper ? sin(t) : 0.5 - sin(t)) + r * sin(2 * PI * u2);
        y[i] = upper ? 1 : -1;
    }
}

/* One neuron: act(b + sum_i w_i in_i), with w followed by b in p. */
static ad_scalar neuron(const ad_scalar *p, const ad_scalar *in, int nin, int relu)
{
    ad_scalar s = p[nin];
    for (int i = 0; i < nin; i++) s = ad_sadd(s, ad_smul(p[i], in[i]));
    return relu ? ad_srelu(s) : s;
}

/* The MLP's score for input (x0, x1), from parameters p[NPARAMS]. */
static ad_scalar mlp(const ad_scalar *p, ad_tape *tape, double x0, double x1)
{
    ad_scalar in[2] = {ad_scalar_const(tape, x0), ad_scalar_const(tape, x1)};
    ad_scalar h1[H1], h2[H2];
    for (int j = 0; j < H1; j++, p += 2 + 1) h1[j] = neuron(p, in, 2, 1);
    for (int j = 0; j < H2; j++, p += H1 + 1) h2[j] = neuron(p, h1, H1, 1);
    return neuron(p, h2, H2, 0);
}

/* The picture: WIDTH x HEIGHT pixels covering [XMIN, XMAX] x [YMIN, YMAX].
 * The model is evaluated once per CELL x CELL block of pixels (no
 * gradients needed: the weights are constants), which gives sign[]. */
enum { WIDTH = 320, HEIGHT = 240, CELL = 2, GW = WIDTH / CELL, GH = HEIGHT / CELL };
static const double XMIN = -1.5, XMAX = 2.5, YMIN = -1.25, YMAX = 1.75;

static double grid_x(int col) { return XMIN + (col + 0.5) * (XMAX - XMIN) / GW; }
static double grid_y(int row) { return YMAX - (row + 0.5) * (YMAX - YMIN) / GH; }

static void classify_grid(const double *w, ad_tape *tape, signed char sign[GH][GW])
{
    ad_scalar p[NPARAMS];
    for (int row = 0; row < GH; row++) {
        ad_tape_reset(tape); /* one row's graph at a time */
        for (int k = 0; k < NPARAMS; k++) p[k] = ad_scalar_const(tape, w[k]);
        for (int col = 0; col < GW; col++)
            sign[row][col] = ad_scalar_value(mlp(p, tape, grid_x(col), grid_y(row))) > 0 ? 1 : -1;
    }
}

/* Writes the two half planes in light colours and the data points as dark
 * dots, as a binary PPM. */
static int write_ppm(const char *path, signed char sign[GH][GW], double x[][2], const double y[])
{
    static unsigned char img[HEIGHT][WIDTH][3];
    for (int r = 0; r < HEIGHT; r++)
        for (int c = 0; c < WIDTH; c++) {
            int pos = sign[r / CELL][c / CELL] > 0;
            img[r][c][0] = pos ? 255 : 190, img[r][c][1] = pos ? 200 : 210;
            img[r][c][2] = pos ? 190 : 255;
        }
    for (int i = 0; i < NPOINTS; i++) {
        int cx = (int)((x[i][0] - XMIN) / (XMAX - XMIN) * WIDTH);
        int cy = (int)((YMAX - x[i][1]) / (YMAX - YMIN) * HEIGHT);
        for (int dy = -2; dy <= 2; dy++)
            for (int dx = -2; dx <= 2; dx++) {
                int r = cy + dy, c = cx + dx;
                if (r < 0 || r >= HEIGHT || c < 0 || c >= WIDTH || dx * dx + dy * dy > 5) continue;
                img[r][c][0] = y[i] > 0 ? 180 : 20, img[r][c][1] = 20;
                img[r][c][2] = y[i] > 0 ? 20 : 180;
            }
    }
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fprintf(f, "P6\n%d %d\n255\n", WIDTH, HEIGHT);
    size_t n = fwrite(img, 1, sizeof img, f);
    return (fclose(f) == 0 && n == sizeof img) ? 0 : -1;
}

/* The same picture drawn by gnuplot as a PNG, when gnuplot is installed. */
static void write_png(const char *dir, signed char sign[GH][GW], double x[][2], const double y[])
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) return;
    char data[1024], script[1024], png[1024], cmd[2200];
    snprintf(data, sizeof data, "%s/micrograd_boundary.dat", dir);
    snprintf(script, sizeof script, "%s/micrograd_boundary.gp", dir);
    snprintf(png, sizeof png, "%s/micrograd_boundary.png", dir);
    FILE *d = fopen(data, "w"), *s = fopen(script, "w");
    if (!d || !s) {
        if (d) fclose(d);
        if (s) fclose(s);
        return;
    }
    for (int row = 0; row < GH; row++) {
        for (int col = 0; col < GW; col++)
            fprintf(d, "%g %g %d\n", grid_x(col), grid_y(row), sign[row][col]);
        fprintf(d, "\n");
    }
    fprintf(d, "\n\n");
    for (int i = 0; i < NPOINTS; i++) fprintf(d, "%g %g %g\n", x[i][0], x[i][1], y[i]);
    fclose(d);
    fprintf(s, "set terminal pngcairo size 640,480\nset output '%s'\n"
               "set title 'micrograd.c: decision boundary after %d steps'\n"
               "unset colorbox\nset palette defined (-1 '#bed2ff', 1 '#ffc8be')\n"
               "set xrange [%g:%g]\nset yrange [%g:%g]\n"
               "plot '%s' index 0 using 1:2:3 with image notitle, \\\n"
               "     '%s' index 1 using 1:($3 > 0 ? $2 : 1/0) with points pt 7 lc rgb '#b41414' "
               "title 'y = +1', \\\n"
               "     '%s' index 1 using 1:($3 < 0 ? $2 : 1/0) with points pt 7 lc rgb '#1414b4' "
               "title 'y = -1'\n",
            png, STEPS, XMIN, XMAX, YMIN, YMAX, data, data, data);
    fclose(s);
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>/dev/null", script);
    if (system(cmd) == 0) printf("wrote %s\n", png);
    remove(data);
    remove(script);
    /* pngcairo may be missing from a gnuplot build; the PPM is always there */
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    ad_rng rng;
    ad_rng_init(&rng, 1337);
    static double x[NPOINTS][2], y[NPOINTS];
    make_moons(&rng, x, y);

    /* micrograd's initialisation: every weight and bias uniform in [-1, 1) */
    double w[NPARAMS], grad[NPARAMS];
    for (int k = 0; k < NPARAMS; k++) w[k] = 2 * ad_rng_uniform(&rng) - 1;

    ad_tape *tape = ad_tape_new();
    if (!tape) return 1;
    double accuracy = 0;
    for (int step = 0; step < STEPS; step++) {
        /* forward: the loss as one graph of scalars */
        ad_tape_reset(tape);
        ad_scalar p[NPARAMS];
        for (int k = 0; k < NPARAMS; k++) p[k] = ad_scalar_var(tape, w[k]);
        ad_scalar data_loss = ad_scalar_const(tape, 0);
        int correct = 0;
        for (int i = 0; i < NPOINTS; i++) {
            ad_scalar s = mlp(p, tape, x[i][0], x[i][1]);
            /* hinge: max(0, 1 - y s), written with relu */
            data_loss = ad_sadd(data_loss, ad_srelu(ad_scsub(1, ad_smul_c(s, y[i]))));
            correct += (ad_scalar_value(s) > 0) == (y[i] > 0);
        }
        ad_scalar reg = ad_scalar_const(tape, 0);
        for (int k = 0; k < NPARAMS; k++) reg = ad_sadd(reg, ad_ssquare(p[k]));
        ad_scalar loss = ad_sadd(ad_sdiv_c(data_loss, NPOINTS), ad_smul_c(reg, ALPHA));

        /* backward: dE/dw for all 337 weights in one sweep */
        if (ad_scalar_gradient(loss, NPARAMS, p, grad)) {
            fprintf(stderr, "micrograd: %s\n", ad_error());
            ad_tape_free(tape);
            return 1;
        }
        accuracy = (double)correct / NPOINTS;
        if (step % 10 == 0 || step == STEPS - 1)
            printf("step %3d  loss %.4f  accuracy %3.0f%%  (%zu scalar nodes)\n", step,
                   ad_scalar_value(loss), 100 * accuracy, ad_scalar_count(tape));

        /* update, with micrograd's decaying learning rate */
        double eta = 1.0 - 0.9 * step / STEPS;
        for (int k = 0; k < NPARAMS; k++) w[k] -= eta * grad[k];
    }

    /* accuracy of the final weights */
    ad_tape_reset(tape);
    ad_scalar p[NPARAMS];
    for (int k = 0; k < NPARAMS; k++) p[k] = ad_scalar_const(tape, w[k]);
    int correct = 0;
    for (int i = 0; i < NPOINTS; i++)
        correct += (ad_scalar_value(mlp(p, tape, x[i][0], x[i][1])) > 0) == (y[i] > 0);
    accuracy = (double)correct / NPOINTS;
    printf("final accuracy %.0f%%\n", 100 * accuracy);

    char path[1024];
    snprintf(path, sizeof path, "%s/micrograd_boundary.ppm", dir);
    static signed char sign[GH][GW];
    classify_grid(w, tape, sign);
    if (write_ppm(path, sign, x, y) != 0) {
        fprintf(stderr, "micrograd: cannot write %s\n", path);
        ad_tape_free(tape);
        return 1;
    }
    printf("wrote %s\n", path);
    write_png(dir, sign, x, y);
    ad_tape_free(tape);
    return accuracy >= 0.95 ? 0 : 1;
}

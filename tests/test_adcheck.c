/* tests/test_adcheck.c - the adcheck tool, run as a user would.
 *
 * argv[1] is the adcheck executable and argv[2] the shared library built
 * from ffi_testlib.c, which has a correct and a deliberately wrong
 * derivative for each form (scalar double, partials, scalar float, vector
 * double, vector float).  For each form the correct one must pass (exit 0)
 * and the wrong one must fail (exit 1) with the failure marked on the wrong
 * component and on no other, and the summary naming it.  Usage, loading and
 * prototype errors must exit 2 with a clear message.
 *
 * Then the safety nets, each a test that failed before it existed: a
 * prototype shorter or longer than the functions (a heap overrun, a
 * vacuous pass), a data symbol called as a function (a crash), numeric
 * derivatives that are infinite (which used to pass every claim), domain
 * edges (false failures of log and sqrt near 0, of anything at |x| =
 * 1e12), checks in which nothing was compared, and the worst component's
 * numbers in the summary. */
#define _POSIX_C_SOURCE 200809L /* fork, pipe, execv */

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "optest.h"

static const char *ADCHECK, *LIB;

typedef struct result {
    int status;
    char out[1 << 16];
} result;

/* Runs adcheck with the given arguments (NULL-terminated), stdout and
 * stderr together into r->out. */
static void run(result *r, const char *const *args)
{
    const char *argv[32] = {ADCHECK};
    int n = 1;
    for (; args[n - 1]; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    int fd[2];
    ck_assert_int_eq(pipe(fd), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        close(fd[0]);
        execv(ADCHECK, (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    size_t len = 0;
    ssize_t k;
    while ((k = read(fd[0], r->out + len, sizeof r->out - 1 - len)) > 0) len += (size_t)k;
    r->out[len] = '\0';
    close(fd[0]);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st), "adcheck died: %s", r->out);
    r->status = WEXITSTATUS(st);
}
#define RUN(r, ...) run(r, (const char *const[]){__VA_ARGS__, NULL})

/* Lines marked as failing must all be the component `name` (the start of
 * the line after the indent), and there must be `count` of them (0: any
 * number but at least one). */
static void fails_only(const result *r, const char *name, int count)
{
    int marked = 0;
    for (const char *line = r->out; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        if (strstr(buf, "<-- FAIL")) {
            marked++;
            ck_assert_msg(!strncmp(buf + 2, name, strlen(name)) && buf[2 + strlen(name)] == ' ',
                          "a failure is marked on '%s', expected only on '%s'\n%s", buf, name,
                          r->out);
        }
        line += len + (end ? 1 : 0);
    }
    ck_assert_msg(count ? marked == count : marked > 0, "%d marked failures\n%s", marked, r->out);
}

static void ok(const result *r)
{
    ck_assert_msg(r->status == 0, "exit %d\n%s", r->status, r->out);
    ck_assert_msg(strstr(r->out, "adcheck: OK: all ") && !strstr(r->out, "FAIL"), "%s", r->out);
}

static void caught(const result *r, const char *name, int count)
{
    ck_assert_msg(r->status == 1, "exit %d\n%s", r->status, r->out);
    fails_only(r, name, count);
    char want[200];
    snprintf(want, sizeof want, ", %s\n", name);
    ck_assert_msg(strstr(r->out, "adcheck: FAILED: ") && strstr(r->out, want),
                  "the summary does not name %s\n%s", name, r->out);
}

static const char *SD = "double sd(double x, double y, double z)";

START_TEST(scalar_double_grad)
{
    result r;
    RUN(&r, "--grad", "sd_grad", "--at", "0.5,-0.25,0.75", "--random", "4", LIB, "sd", SD);
    ok(&r);
    ck_assert(strstr(r.out, "all 15 components agree at 5 points"));
    ck_assert(strstr(r.out, "point 1: f(0.5, -0.25, 0.75) = "));
    RUN(&r, "--grad", "sd_grad_bad", "--at", "0.5,-0.25,0.75", "--at", "-1,1,0.1", LIB, "sd", SD);
    caught(&r, "df/dx1", 2);
    ck_assert(strstr(r.out, "2 of 6 components disagree"));
}
END_TEST

START_TEST(scalar_double_partials)
{
    result r;
    RUN(&r, "--partials", "sd_dx,sd_dy,sd_dz", "--random", "3", "--seed", "9", LIB, "sd", SD);
    ok(&r);
    RUN(&r, "--partials", "sd_dx,sd_dy,sd_dz_bad", "--random", "3", "--seed", "9", LIB, "sd", SD);
    caught(&r, "df/dx2 (sd_dz_bad)", 3);
}
END_TEST

START_TEST(scalar_float_grad)
{
    result r;
    RUN(&r, "--grad", "sf_grad", "--random", "20", LIB, "sf", "float (float, float)");
    ok(&r);
    ck_assert(strstr(r.out, "eps 0.01")); /* float's larger default step */
    RUN(&r, "--grad", "sf_grad_bad", "--random", "20", LIB, "sf", "f(ff)");
    caught(&r, "df/dx0", 20);
}
END_TEST

START_TEST(vector_double_grad)
{
    result r;
    RUN(&r, "--grad", "vd_grad", "--n", "5", "--random", "4", LIB, "vd",
        "double vd(const double *x, int n)");
    ok(&r);
    ck_assert(strstr(r.out, "all 20 components agree"));
    RUN(&r, "--grad", "vd_grad_bad", "--at", "0.1,0.2,0.3,0.4", LIB, "vd", "d(Di)");
    caught(&r, "df/dx[2]", 1);
}
END_TEST

START_TEST(vector_float_grad)
{
    result r;
    RUN(&r, "--grad", "vf_grad", "--n", "6", "--random", "5", "--range", "-2,2", LIB, "vf",
        "float (const float *, size_t)");
    ok(&r);
    RUN(&r, "--grad", "vf_grad_bad", "--n", "6", "--random", "5", LIB, "vf",
        "float (const float x[], size_t n)");
    caught(&r, "df/dx[0]", 5);
}
END_TEST

START_TEST(json_report)
{
    result r;
    RUN(&r, "--json", "--grad", "sd_grad_bad", "--at", "0.5,-0.25,0.75", LIB, "sd", SD);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(!strncmp(r.out, "{\"library\": ", 12), "%s", r.out);
    ck_assert(strstr(r.out, "\"prototype\": \"double (double, double, double)\""));
    ck_assert(strstr(r.out, "\"x\": [0.5, -0.25, 0.75]"));
    ck_assert(strstr(r.out, "{\"component\": \"df/dx1\", \"index\": 1, \"claimed\": "));
    ck_assert_int_eq((int)(strstr(r.out, "\"ok\": false, \"reason\": null}") - r.out),
                     (int)(strstr(strstr(r.out, "\"df/dx1\""), "\"ok\": ") - r.out));
    ck_assert_msg(strstr(r.out, "\"components\": 3, \"compared\": 3, \"failures\": 1, \"worst\": "
                                "{\"point\": 1, \"component\": \"df/dx1\", \"index\": 1, "),
                  "%s", r.out);
    /* the worst component's numbers: the claim sin x + e^(y/2), the truth
     * sin x + e^(y/2) / 2 */
    double c, n, ae, re, y = -0.25;
    ck_assert_int_eq(sscanf(strstr(r.out, "\"worst\": "),
                            "\"worst\": {\"point\": 1, \"component\": \"df/dx1\", \"index\": 1, "
                            "\"claimed\": %lf, \"numeric\": %lf, \"abs_err\": %lf, \"rel_err\": %lf",
                            &c, &n, &ae, &re),
                     4);
    ck_assert_double_eq_tol(c, sin(0.5) + exp(0.5 * y), 1e-15);
    ck_assert_double_eq_tol(n, sin(0.5) + 0.5 * exp(0.5 * y), 1e-8);
    ck_assert_double_eq_tol(ae, 0.5 * exp(0.5 * y), 1e-8);
    ck_assert_double_eq_tol(re, ae / n, 1e-12);
    ck_assert(strstr(r.out, "\"status\": 1, \"message\": null, \"ok\": false}\n"));
}
END_TEST

START_TEST(random_points_are_reproducible)
{
    static result a, b;
    RUN(&a, "--grad", "sd_grad", "--random", "3", "--seed", "42", LIB, "sd", SD);
    RUN(&b, "--grad", "sd_grad", "--random", "3", "--seed", "42", LIB, "sd", SD);
    ck_assert_str_eq(a.out, b.out);
    RUN(&b, "--grad", "sd_grad", "--random", "3", "--seed", "43", LIB, "sd", SD);
    ck_assert_str_ne(a.out, b.out);
}
END_TEST

static void usage_error(const result *r, const char *msg)
{
    ck_assert_msg(r->status == 2, "exit %d\n%s", r->status, r->out);
    ck_assert_msg(strstr(r->out, msg), "message lacks '%s':\n%s", msg, r->out);
}

START_TEST(errors_exit_2)
{
    result r;
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "double (double double)");
    usage_error(&r, "adcheck: prototype: expected ',' or ')' at column 16 in \"double (double double)\"");
    RUN(&r, "--grad", "sd_grad", "/nonexistent/libnone.so", "sd", SD);
    usage_error(&r, "adcheck: cannot load /nonexistent/libnone.so");
    RUN(&r, "--grad", "sd_grad", "libnone_adcheck.so", "sd", SD);
    usage_error(&r, "(give a path such as ./libfoo.so)");
    RUN(&r, "--grad", "no_such_grad", LIB, "sd", SD);
    usage_error(&r, "has no function 'no_such_grad'");
    RUN(&r, LIB, "sd", SD);
    usage_error(&r, "nothing to check: give --grad NAME or --partials");
    RUN(&r, "--partials", "sd_dx,sd_dy", LIB, "sd", SD);
    usage_error(&r, "--partials needs one name per argument: 3, got 2");
    RUN(&r, "--grad", "sd_grad", "--at", "1,2", LIB, "sd", SD);
    usage_error(&r, "--at: point 1 has 2 values, expected 3");
    RUN(&r, "--grad", "sd_grad", "--at", "1,x,2", LIB, "sd", SD);
    usage_error(&r, "--at: 'x' is not a finite number");
    RUN(&r, "--grad", "sd_grad", "--frobnicate", "1", LIB, "sd", SD);
    usage_error(&r, "unknown option '--frobnicate'");
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "double (double, float)");
    usage_error(&r, "arguments and result must be all double or all float");
    RUN(&r, "--grad", "vd_grad", LIB, "vd", "d(Di)");
    usage_error(&r, "the vector form needs --n N");
    RUN(&r, "--grad", "sd_grad", "--eps", "0", LIB, "sd", SD);
    usage_error(&r, "--eps: '0' must be in (0, 1]");
    RUN(&r, "--grad", "sd_grad", "--range", "1,-1", LIB, "sd", SD);
    usage_error(&r, "--range: give LO,HI with LO < HI");
    RUN(&r, "--grad", "sd_grad", LIB, "sd");
    usage_error(&r, "usage: adcheck [options] LIBRARY FUNCTION PROTOTYPE");
    RUN(&r, "--grad", "vd_grad", "--partials", "a,b", LIB, "vd", "d(Di)");
    usage_error(&r, "give --grad or --partials, not both");
    RUN(&r, "--help");
    ck_assert_int_eq(r.status, 0);
    ck_assert(strstr(r.out, "exit status: 0 all agree, 1 some component disagrees"));
}
END_TEST

/* ---- safety nets ---- */

/* The claimed and numeric values of the k-th (from 0) report line of
 * component `name`. */
static void line_values(const result *r, const char *name, int k, double *claimed,
                        double *numeric)
{
    char key[200];
    snprintf(key, sizeof key, "\n  %s ", name);
    const char *at = r->out;
    for (int i = 0; i <= k; i++) {
        at = strstr(at, key);
        ck_assert_msg(at != NULL, "no line %d for %s\n%s", k, name, r->out);
        at += strlen(key);
    }
    ck_assert_int_eq(sscanf(at, "%lf %lf", claimed, numeric), 2);
}

/* A prototype with fewer arguments than the gradient stores made it write
 * past adcheck's buffer (AddressSanitizer: heap-buffer-overflow). */
START_TEST(short_prototype_is_an_error)
{
    result r;
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "double (double, double)");
    usage_error(&r, "adcheck: sd_grad stored at least 3 values but PROTOTYPE has 2 arguments: "
                    "the prototype does not match the functions");
    RUN(&r, "--grad", "sd_grad", "--at", "1", LIB, "sd", "d(d)");
    usage_error(&r, "sd_grad stored at least 3 values but PROTOTYPE has 1 arguments");
    RUN(&r, "--grad", "sf_grad", LIB, "sf", "float (float)");
    usage_error(&r, "sf_grad stored at least 2 values but PROTOTYPE has 1 arguments");
    RUN(&r, "--grad", "vd_grad_over", "--n", "4", LIB, "vd", "d(Di)");
    usage_error(&r, "vd_grad_over stored at least 5 values for a length of 4");
    /* flat_grad (double, double, double *g) called as a vector gradient
     * takes the array x for g: it wrote 16 bytes into a 4-byte array */
    RUN(&r, "--grad", "flat_grad", "--n", "1", LIB, "flat", "f(Fz)");
    usage_error(&r, "adcheck: the array x changed while flat and its derivatives were called at "
                    "point 1: a function writes into its input (is PROTOTYPE right?)");
    RUN(&r, "--json", "--grad", "sd_grad", LIB, "sd", "d(dd)");
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.out, "\"components\": 0, \"compared\": 0, \"failures\": 0, \"worst\": "
                                "null, \"status\": 2, \"message\": \"sd_grad stored at least 3 "),
                  "%s", r.out);
}
END_TEST

/* A prototype with more arguments than the functions: the extra component
 * was 0 on both sides (the buffer was zeroed, the function ignores the
 * argument), a pass. */
START_TEST(long_prototype_fails)
{
    result r;
    RUN(&r, "--grad", "sd_grad", "--at", "0.5,-0.25,0.75,2", LIB, "sd", "d(dddd)");
    ck_assert_msg(r.status == 1, "exit %d\n%s", r.status, r.out);
    fails_only(&r, "df/dx3", 1);
    ck_assert(strstr(r.out, "<-- FAIL: the gradient did not store this component"));
    double c, n;
    line_values(&r, "df/dx3", 0, &c, &n);
    ck_assert(isnan(c));
    ck_assert_double_eq(n, 0);
    /* a gradient that accumulates into its output is still read right */
    RUN(&r, "--grad", "sd_grad_acc", "--random", "4", LIB, "sd", SD);
    ok(&r);
}
END_TEST

/* A function that crashes took adcheck with it; now the check runs in a
 * child process and the report up to the crash stands. */
START_TEST(crash_is_reported)
{
    result r;
    RUN(&r, "--partials", "dies_d", "--at", "0.1", "--at", "0.5", LIB, "dies", "d(d)");
    usage_error(&r, "adcheck: signal 6 (Aborted) while calling dies at point 2: the PROTOTYPE "
                    "may not match the functions, or the library has a bug");
    double c, n;
    line_values(&r, "df/dx0 (dies_d)", 0, &c, &n);
    ck_assert_double_eq_tol(c, 0.2, 1e-15);
    ck_assert_double_eq_tol(n, 0.2, 1e-9);
    /* with --json the one object is closed after the crash (it ended at
     * '"points": [') */
    RUN(&r, "--json", "--partials", "dies_d", "--at", "0.1", "--at", "0.5", LIB, "dies", "d(d)");
    ck_assert_msg(r.status == 2, "exit %d\n%s", r.status, r.out);
    ck_assert_msg(strstr(r.out, "\n], \"status\": 2, \"message\": \"signal 6 (Aborted) while "
                                "calling dies at point 2") &&
                      strstr(r.out, "\"ok\": false}\n"),
                  "JSON not closed:\n%s", r.out);
    /* exit(0) inside a call, after point 1 failed, ended adcheck with 0 */
    RUN(&r, "--partials", "quits_d", "--at", "0.1", "--at", "0.5", LIB, "quits", "d(d)");
    usage_error(&r, "adcheck: the library called exit(0) while calling quits at point 2, so "
                    "the check did not finish");
    ck_assert(strstr(r.out, "<-- FAIL"));
    /* a vector function called as a scalar one gets garbage for its
     * pointers: whatever happens, adcheck exits normally */
    RUN(&r, "--grad", "vf_grad", LIB, "vf", "d(d)");
    ck_assert_msg(r.status == 0 || r.status == 1 || r.status == 2, "exit %d", r.status);
}
END_TEST

/* Naming a data symbol as a function jumped into non-executable memory. */
START_TEST(data_symbol_is_refused)
{
    result r;
    RUN(&r, "--grad", "sd_grad", LIB, "sd_table", SD);
    usage_error(&r, "adcheck: 'sd_table' in ");
    usage_error(&r, " is data, not a function");
    RUN(&r, "--grad", "sd_table", LIB, "sd", SD);
    usage_error(&r, "'sd_table' in ");
}
END_TEST

/* log at 1e-6: the step 1e-6 reaches log(0) = -inf, the numeric derivative
 * was +inf, and |claimed - inf| <= atol + rtol inf passed any claim; at
 * 1e-7 the step crosses 0 (NaN: a false failure), and at 1e12 an absolute
 * step of 1e-6 vanishes in x's rounding (x +- 1e-6 == x: NaN). */
START_TEST(log_near_its_edge)
{
    result r;
    RUN(&r, "--partials", "ln_d", "--at", "1e-6", "--at", "1e-7", "--at", "1e12", LIB, "ln_",
        "d(d)");
    ok(&r);
    ck_assert(strstr(r.out, "all 3 components agree at 3 points (2 with a smaller step"));
    const double xs[3] = {1e-6, 1e-7, 1e12};
    for (int k = 0; k < 3; k++) {
        double c, n;
        line_values(&r, "df/dx0 (ln_d)", k, &c, &n);
        ck_assert_double_eq_tol(c, 1 / xs[k], 1e-9 / xs[k]);
        /* within the tolerance rtol = 1e-3: the first estimate that agrees */
        ck_assert_msg(fabs(n - 1 / xs[k]) <= 1e-3 / xs[k], "x %g: numeric %.17g", xs[k], n);
    }
    RUN(&r, "--partials", "ln_d_bad", "--at", "1e-6", LIB, "ln_", "d(d)");
    caught(&r, "df/dx0 (ln_d_bad)", 1);
    double c, n;
    line_values(&r, "df/dx0 (ln_d_bad)", 0, &c, &n);
    ck_assert_double_eq_tol(c, 2e6, 1e-6);
    ck_assert_msg(fabs(n - 1e6) <= 1e2, "numeric %.17g", n); /* finite, the true 1e6 */
}
END_TEST

/* sqrt at 1e-6 (the step reaches 0, numeric 707 for the true 500) and
 * 1e-7 (crosses it: NaN) failed right derivatives; float sqrt at 1e-4 with
 * its step 1e-2 likewise. */
START_TEST(sqrt_near_its_edge)
{
    result r;
    RUN(&r, "--partials", "rt_d", "--at", "1e-6", "--at", "1e-7", "--at", "0.25", LIB, "rt",
        "d(d)");
    ok(&r);
    double c, n;
    line_values(&r, "df/dx0 (rt_d)", 0, &c, &n);
    ck_assert_msg(fabs(n - 500) <= 0.5, "numeric %.17g", n);
    RUN(&r, "--partials", "rt_d_bad", "--at", "1e-6", "--at", "1e-7", "--at", "0.25", LIB, "rt",
        "d(d)");
    caught(&r, "df/dx0 (rt_d_bad)", 3);
    /* the worst is at 1e-7: claimed 0.6/sqrt(x), numeric 0.5/sqrt(x) */
    const char *s = strstr(r.out, "  at x = (");
    ck_assert_ptr_nonnull(s);
    double x, ae, re;
    ck_assert_int_eq(sscanf(s, "  at x = (%lf): claimed %lf, numeric %lf, abs err %lf, rel err %lf",
                            &x, &c, &n, &ae, &re),
                     5);
    ck_assert_double_eq_tol(x, 1e-7, 1e-20);
    ck_assert_double_eq_tol(c, 0.6 / sqrt(1e-7), 1e-9);
    ck_assert_msg(fabs(n - 0.5 / sqrt(1e-7)) <= 0.5, "numeric %.17g", n);
    ck_assert_double_eq_tol(ae, 0.1 / sqrt(1e-7), 1);
    ck_assert_double_eq_tol(re, 0.2, 1e-3);
    ck_assert(strstr(r.out, "worst: point 2, df/dx0 (rt_d_bad)\n"));
    RUN(&r, "--partials", "rtf_d", "--at", "1e-4", "--at", "1e-3", "--at", "2", LIB, "rtf",
        "f(f)");
    ok(&r);
}
END_TEST

/* Non-finite values fail unless both sides are the same infinity. */
/* A double function that computes in float (tw32): the smaller steps no
 * longer move f, and their difference 0 agreed with a claimed 0 at every
 * point (OK, exit 0) while the other component was compared honestly. */
START_TEST(steps_below_f_resolution)
{
    result r;
    RUN(&r, "--partials", "tw32_dx_bad,tw32_dy", "--at", "0.3,1", "--at", "0.5,2", "--at",
        "1.25,0", LIB, "tw32", "double tw32(double x, double y)");
    caught(&r, "df/dx0 (tw32_dx_bad)", 3);
}
END_TEST

START_TEST(non_finite_derivatives)
{
    result r;
    /* wall jumps to +inf at 0: the numeric derivative is +inf at every
     * step; the claim 0 used to pass */
    RUN(&r, "--partials", "wall_d", "--at", "0", "--at", "-0.5", LIB, "wall", "d(d)");
    caught(&r, "df/dx0 (wall_d)", 1);
    ck_assert(strstr(r.out, "<-- FAIL: the numeric derivative is infinite, the claimed one finite"));
    RUN(&r, "--json", "--partials", "wall_d", "--at", "0", LIB, "wall", "d(d)");
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.out, "\"claimed\": 0, \"numeric\": null, "), "%s", r.out);
    ck_assert(strstr(r.out, "\"ok\": false, \"reason\": \"the numeric derivative is infinite, "
                            "the claimed one finite\"}"));
    /* cbrt at 0: claimed +inf, every difference finite (h^(-2/3)) */
    RUN(&r, "--partials", "cbrt_d", "--at", "0", "--at", "1", LIB, "cbrt_", "d(d)");
    caught(&r, "df/dx0 (cbrt_d)", 1);
    double x, c, n;
    const char *s = strstr(r.out, "  at x = (");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(sscanf(s, "  at x = (%lf): claimed %lf, numeric %lf", &x, &c, &n), 3);
    ck_assert(x == 0 && isinf(c) && c > 0 && isfinite(n) && n >= 1e4);
    ck_assert(strstr(r.out, "; the claimed derivative is infinite, the numeric one finite\n"));
    /* a NaN claim */
    RUN(&r, "--partials", "nan_d", "--at", "0.5", LIB, "ln_", "d(d)");
    caught(&r, "df/dx0 (nan_d)", 1);
    ck_assert(strstr(r.out, "<-- FAIL: the claimed derivative is NaN"));
    /* f NaN next to the point (log at -0.5): a NaN numeric derivative */
    RUN(&r, "--partials", "ln_d", "--at", "-0.5", LIB, "ln_", "d(d)");
    caught(&r, "df/dx0 (ln_d)", 1);
    ck_assert(strstr(r.out, "the numeric derivative is NaN"));
}
END_TEST

/* Nothing compared: exit 2 and a report saying so. */
START_TEST(nothing_checked)
{
    result r;
    /* steep at 0: claimed and numeric are both +inf, they agree, but no
     * finite value was compared (this used to be a failure: inf - inf) */
    RUN(&r, "--partials", "steep_d", "--at", "0", LIB, "steep", "d(d)");
    ck_assert_msg(r.status == 2, "exit %d\n%s", r.status, r.out);
    ck_assert(strstr(r.out, "adcheck: NOTHING CHECKED: no component had a finite claimed and "
                            "numeric derivative\n"));
    ck_assert(!strstr(r.out, "FAIL"));
    /* flat ignores its arguments: everything is 0 (this used to pass) */
    RUN(&r, "--grad", "flat_grad", LIB, "flat", "d(dd)");
    ck_assert_msg(r.status == 2, "exit %d\n%s", r.status, r.out);
    ck_assert(strstr(r.out, "adcheck: NOTHING CHECKED: every claimed and numeric derivative is "
                            "exactly 0"));
    RUN(&r, "--json", "--grad", "flat_grad", LIB, "flat", "d(dd)");
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.out, "\"components\": 10, \"compared\": 10, \"failures\": 0, \"worst\": "
                                "null, \"status\": 2, \"message\": \"NOTHING CHECKED: every "),
                  "%s", r.out);
    ck_assert(strstr(r.out, "\"ok\": false}\n"));
}
END_TEST

/* Command lines that used to be accepted or misreported. */
START_TEST(bad_command_lines)
{
    result r;
    static const char *const cases[][2] = {
        {"--at", "1,,3"},           {"--partials", "sd_dx,,sd_dz"},
        {"--range", "-1e308,1e308"}, {"--n", "3"},
        {"--eps", "2"},              {"--random", "0"},
        {"--at", "nan,1,2"},         {"--at", "1e400,1,2"},
        {"--seed", "-1"},            {"--atol", "-1"},
    };
    static const char *const msgs[] = {
        "--at: empty value in '1,,3'",
        "--partials: empty name in 'sd_dx,,sd_dz'",
        "--range: give LO,HI with LO < HI, not '-1e308,1e308'",
        "--n is only for the vector form",
        "--eps: '2' must be in (0, 1]",
        "--random: '0' is not a count from 1 to 1000000",
        "--at: 'nan' is not a finite number",
        "--at: '1e400' is not a finite number",
        "--seed: '-1' is not a count from 0 to 1000000",
        "--atol: '-1' must not be negative",
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *opt = cases[k][0], *val = cases[k][1];
        const char *grad = strcmp(opt, "--partials") ? "--grad" : "--partials";
        const char *gval = strcmp(opt, "--partials") ? "sd_grad" : val;
        if (!strcmp(opt, "--partials")) RUN(&r, grad, gval, LIB, "sd", SD);
        else RUN(&r, grad, gval, opt, val, LIB, "sd", SD);
        usage_error(&r, msgs[k]);
    }
    RUN(&r, "--grad", "sf_grad", "--at", "1e300,1", LIB, "sf", "f(ff)");
    usage_error(&r, "--at: 1e+300 does not fit in float");
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "double (double,)");
    usage_error(&r, "adcheck: prototype: expected a type at column 16 in \"double (double,)\"");
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "double (");
    usage_error(&r, "adcheck: prototype: expected a type but the prototype ended at column 9");
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "int (double)");
    usage_error(&r, "arguments and result must be all double or all float");
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "d(ddddddddddddddddd)");
    usage_error(&r, "too many parameters (at most 16)");
    RUN(&r, "--grad", "sd_grad", LIB, "sd", "");
    usage_error(&r, "adcheck: prototype: empty signature");
    RUN(&r, "--grad", "sd_grad", "", "sd", SD);
    usage_error(&r, "adcheck: LIBRARY is empty");
    RUN(&r, "--grad", "sd_grad", LIB, SD);
    usage_error(&r, "adcheck: expected LIBRARY FUNCTION PROTOTYPE, got 2 arguments\nusage: ");
    RUN(&r, "--grad", "vd_grad", "--n", "3", "--at", "1,2", LIB, "vd", "d(Di)");
    usage_error(&r, "--at: point 1 has 2 values, expected 3");
    RUN(&r, "--grad", "sd_grad", "--at", "1,2,3", "--at", "1", LIB, "sd", SD);
    usage_error(&r, "--at: point 2 has 1 value, expected 3");
    RUN(&r, "--partials", "a,b,c,d", LIB, "sd", SD);
    usage_error(&r, "--partials needs one name per argument: 3, got 4");
    RUN(&r, "--partials", "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", LIB, "sd", SD);
    usage_error(&r, "--partials: more than 16 names");
    RUN(&r, "--grad", "sd_grad", LIB, "sd", SD, "--at");
    usage_error(&r, "--at needs a value");
}
END_TEST

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_adcheck ADCHECK LIBRARY\n");
        return 2;
    }
    ADCHECK = argv[1];
    LIB = argv[2];
    Suite *s = suite_create("adcheck");
    TCase *c = tcase_create("adcheck");
    tcase_set_timeout(c, 120);
    tcase_add_test(c, scalar_double_grad);
    tcase_add_test(c, scalar_double_partials);
    tcase_add_test(c, scalar_float_grad);
    tcase_add_test(c, vector_double_grad);
    tcase_add_test(c, vector_float_grad);
    tcase_add_test(c, json_report);
    tcase_add_test(c, random_points_are_reproducible);
    tcase_add_test(c, errors_exit_2);
    tcase_add_test(c, short_prototype_is_an_error);
    tcase_add_test(c, long_prototype_fails);
    tcase_add_test(c, data_symbol_is_refused);
    tcase_add_test(c, crash_is_reported);
    tcase_add_test(c, log_near_its_edge);
    tcase_add_test(c, sqrt_near_its_edge);
    tcase_add_test(c, steps_below_f_resolution);
    tcase_add_test(c, non_finite_derivatives);
    tcase_add_test(c, nothing_checked);
    tcase_add_test(c, bad_command_lines);
    suite_add_tcase(s, c);
    return ot_run(s);
}

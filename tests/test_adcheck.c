/* tests/test_adcheck.c - the adcheck tool, run as a user would.
 *
 * argv[1] is the adcheck executable and argv[2] the shared library built
 * from ffi_testlib.c, which has a correct and a deliberately wrong
 * derivative for each form (scalar double, partials, scalar float, vector
 * double, vector float).  For each form the correct one must pass (exit 0)
 * and the wrong one must fail (exit 1) with the failure marked on the wrong
 * component and on no other, and the summary naming it.  Usage, loading and
 * prototype errors must exit 2 with a clear message. */
#define _POSIX_C_SOURCE 200809L /* fork, pipe, execv */

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
    ck_assert_int_eq((int)(strstr(r.out, "\"ok\": false}") - r.out),
                     (int)(strstr(strstr(r.out, "\"df/dx1\""), "\"ok\": ") - r.out));
    ck_assert(strstr(r.out, "\"components\": 3, \"failures\": 1, \"ok\": false}\n"));
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
    usage_error(&r, "--eps: '0' must be positive");
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
    suite_add_tcase(s, c);
    return ot_run(s);
}

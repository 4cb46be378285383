#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, kill */
/* tests/test_crash.c - checkpoint crash safety: a process saving a
 * checkpoint is killed with SIGKILL at random moments during the write,
 * many times; the file on disk must always load, and hold either the
 * previous checkpoint or the complete new one, never a mix. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nn/checkpoint.h>

#include "optest.h"

enum { N = 1 << 20, KILLS = 40 }; /* 4 MB per save: the write takes a while */

static char dir[256], path[300];

/* Every element of t equals v (and the file held one whole tensor). */
static bool all_equal(ad_tensor *t, float v)
{
    const float *d = ad_data(t);
    for (int64_t i = 0; i < N; i++)
        if (d[i] != v) return false;
    return true;
}

static ad_tensor *filled(float v)
{
    ad_tensor *t = ad_full(NULL, AD_FLOAT32, AD_SHAPE(N), v);
    ck_assert_ptr_nonnull(t);
    return t;
}

START_TEST(killed_saves_leave_old_or_new)
{
    const char *names[1] = {"w"};
    ad_tensor *old = filled(1.0f), *new = filled(2.0f), *got = filled(0.0f);
    srand(12345);
    int saw_old = 0, saw_new = 0;
    for (int k = 0; k < KILLS; k++) {
        ck_assert_msg(nn_save_safetensors(path, 1, names, &old, NULL) == 0, "%s", ad_error());
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            /* The child saves the new checkpoint over and over until it is
             * killed, so the kill lands at a different point each time. */
            for (;;) nn_save_safetensors(path, 1, names, &new, NULL);
        }
        struct timespec ts = {0, (long)(rand() % 20000) * 1000L}; /* 0-20 ms */
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        ck_assert(WIFSIGNALED(status));
        ad_fill(got, 0.0);
        ck_assert_msg(nn_load_safetensors(path, 1, names, &got, true) == 0,
                      "kill %d left a checkpoint that does not load: %s", k, ad_error());
        if (all_equal(got, 1.0f)) saw_old++;
        else if (all_equal(got, 2.0f)) saw_new++;
        else ck_abort_msg("kill %d left a checkpoint mixing old and new data", k);
    }
    printf("crash test: %d kills, %d left the old checkpoint, %d the new one\n", KILLS, saw_old,
           saw_new);
    ad_tensor_free(old);
    ad_tensor_free(new);
    ad_tensor_free(got);
}
END_TEST

int main(void)
{
    if (ot_make_tmpdir(dir, sizeof dir, "test_crash")) return EXIT_FAILURE;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    Suite *s = suite_create("crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, killed_saves_leave_old_or_new);
    suite_add_tcase(s, tc);
    int rc = ot_run(s);
    ot_remove_tree(dir);
    return rc;
}

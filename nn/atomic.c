/* nn/atomic.c - replace a file atomically: temp file, fsync, rename, fsync
 * of the directory.
 *
 * A checkpoint written in place and interrupted by a crash or a full disk
 * leaves a file that is neither the old model nor the new one.  Writing to
 * a temporary file next to the destination and renaming it over the
 * destination only once its data is on disk makes the replacement
 * all-or-nothing: rename(2) within one directory is atomic, so a reader
 * (or a restart after a crash) sees either the complete old file or the
 * complete new one. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "internal.h"

/* Distinguishes the temporary files of several threads of one process
 * writing next to each other; the pid distinguishes processes. */
static atomic_uint tmp_counter;

int nn__atomic_open(const char *fn, const char *path, nn__atomic *a)
{
    memset(a, 0, sizeof *a);
    if (!path || !*path) return nn__err(fn, "path is NULL or empty");
    size_t size = strlen(path) + 64;
    const char *slash = strrchr(path, '/');
    a->path = nn__strndup(path, SIZE_MAX);
    a->tmp = a->path ? ad_malloc(size) : NULL;
    if (a->tmp) a->tmp[0] = '\0'; /* no file yet: nothing for abort to unlink */
    a->dir = !a->tmp  ? NULL
             : slash ? nn__strndup(path, (size_t)(slash - path) + (slash == path))
                     : nn__strndup(".", 1);
    if (!a->dir) {
        nn__atomic_abort(a);
        return nn__err(fn, "out of memory");
    }
    int fd = -1;
    /* O_EXCL with a fresh name rather than mkstemp: mkstemp creates the
     * file with mode 0600, and the checkpoint would keep that mode after
     * the rename; open(..., 0666) applies the user's umask as any newly
     * created file does.  A name can only be taken by a leftover of a
     * crashed process with a recycled pid, hence the few retries. */
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(a->tmp, size, "%s.tmp.%ld.%u", path, (long)getpid(),
                 atomic_fetch_add(&tmp_counter, 1u));
        fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) {
            int e = errno;
            ad_free(a->tmp);
            a->tmp = NULL; /* nothing was created: nothing to unlink */
            nn__atomic_abort(a);
            return nn__err_io(fn, "cannot create a temporary file next to %s: %s", path,
                           strerror(e));
        }
    }
    if (fd < 0) {
        ad_free(a->tmp);
        a->tmp = NULL;
        nn__atomic_abort(a);
        return nn__err_io(fn, "cannot create a temporary file next to %s: names taken", path);
    }
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        int e = errno;
        close(fd);
        nn__atomic_abort(a);
        return nn__err_io(fn, "cannot open a stream on %s: %s", path, strerror(e));
    }
    return 0;
}

int nn_check_writable(const char *path)
{
    const char *fn = "nn_check_writable";
    struct stat st;
    if (path && *path && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return nn__err_io(fn, "cannot write %s: it is a directory", path);
    nn__atomic a;
    if (nn__atomic_open(fn, path, &a)) return -1;
    nn__atomic_abort(&a); /* closes and unlinks the temporary file */
    return 0;
}

/* Syncs the directory dir (the one holding the destination). */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = 0;
    if (fd < 0) e = errno;
    /* Some file systems cannot fsync a directory and say EINVAL; the
     * rename is as durable there as they allow, which is not an error of
     * ours. */
    else if (fsync(fd) != 0 && errno != EINVAL)
        e = errno;
    if (fd >= 0) close(fd);
    return e;
}

int nn__atomic_commit(const char *fn, nn__atomic *a)
{
    int rc = 0;
    if (ferror(a->f))
        rc = nn__err_io(fn, "cannot write %s: write error", a->path);
    else if (fflush(a->f) != 0)
        rc = nn__err_io(fn, "cannot write %s: %s", a->path, strerror(errno));
    else if (fsync(fileno(a->f)) != 0)
        rc = nn__err_io(fn, "cannot write %s: fsync: %s", a->path, strerror(errno));
    if (fclose(a->f) != 0 && rc == 0)
        rc = nn__err_io(fn, "cannot write %s: %s", a->path, strerror(errno));
    a->f = NULL;
    if (rc == 0 && rename(a->tmp, a->path) != 0)
        rc = nn__err_io(fn, "cannot rename %s to %s: %s", a->tmp, a->path, strerror(errno));
    if (rc != 0) {
        nn__atomic_abort(a);
        return -1;
    }
    int e = fsync_dir(a->dir);
    if (e != 0)
        rc = nn__err(fn, "%s was written but its directory could not be synced: %s", a->path,
                     strerror(e));
    ad_free(a->tmp);
    ad_free(a->path);
    ad_free(a->dir);
    a->tmp = a->path = a->dir = NULL;
    return rc;
}

void nn__atomic_abort(nn__atomic *a)
{
    if (a->f) fclose(a->f);
    if (a->tmp && a->tmp[0]) unlink(a->tmp);
    ad_free(a->tmp);
    ad_free(a->path);
    ad_free(a->dir);
    memset(a, 0, sizeof *a);
}

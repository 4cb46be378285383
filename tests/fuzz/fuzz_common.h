/* tests/fuzz/fuzz_common.h - shared by the libFuzzer harnesses.
 *
 * The loaders of nn/ read files by path, so the harnesses that test them
 * write each input to one scratch file per process (in /dev/shm when it
 * exists, a RAM disk, so the write costs little) and pass its path. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The scratch file's path, made once per process; `ext` is appended (the
 * IDX saver picks gzip from ".gz", the loaders go by content). */
static char fuzz_path_buf[256];

/* libFuzzer ends with exit(), so the scratch file goes with the process
 * (a crash leaves it; the input is saved as an artifact anyway). */
static inline void fuzz_remove_scratch(void) { remove(fuzz_path_buf); }

static inline const char *fuzz_path(const char *ext)
{
    if (!fuzz_path_buf[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_path_buf, sizeof fuzz_path_buf, "%s/adfuzz-%ld%s", dir, (long)getpid(),
                 ext);
        atexit(fuzz_remove_scratch);
    }
    return fuzz_path_buf;
}

/* Writes data to the scratch file; aborts on I/O errors (a broken fuzzing
 * setup, not a finding). */
static inline const char *fuzz_write(const uint8_t *data, size_t size, const char *ext)
{
    const char *path = fuzz_path(ext);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* A NUL-terminated copy of the input, for the string parsers. */
static inline char *fuzz_string(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* A check of the parser's own promises: a failure is a finding. */
#define FUZZ_ASSERT(cond)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond);  \
            abort();                                                                     \
        }                                                                                \
    } while (0)

#endif

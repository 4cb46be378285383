/* tests/check_asserts.h - <check.h>, with assertions that cost nothing
 * when they pass; the test programs include it instead of <check.h>
 * (optest.h does). */
#ifndef CHECK_ASSERTS_H
#define CHECK_ASSERTS_H

#include <check.h>

/* Check's ck_assert_msg, which every ck_assert_* macro expands to, records
 * each assertion that passes (_mark_point: a write to its message file, so
 * that a test killed by a signal can name the last one); the tests' loops
 * over elements made millions of those writes (2.1 million, half the run
 * time of test_linalg and most of it under valgrind).  Here a passing
 * assertion costs its comparison only, and a failing one reports as
 * before; a crash is located by the sanitizer or valgrind run instead, or
 * by mark_point() where a test wants one. */
#undef ck_assert_msg
#define ck_assert_msg(expr, ...)                                                                   \
    ((expr) ? (void)0                                                                              \
            : _ck_assert_failed(__FILE__, __LINE__, "Assertion '" #expr "' failed", ##__VA_ARGS__))

#endif

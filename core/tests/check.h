/* check.h -- a minimal unit-test harness for core/: TEST() cases, CHECK() assertions, and one
 * summary line "name: N passed, M failed" that spec/run-all.sh adds to the total. */
#ifndef UC_CHECK_H
#define UC_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures_in_case;
static int cases_passed, cases_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);             \
            check_failures_in_case++;                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a = (long long)(a), check_b = (long long)(b);                              \
        if (check_a != check_b) {                                                                  \
            fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a,        \
                    check_a, check_b);                                                             \
            check_failures_in_case++;                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_MEM(ptr, len, expected)                                                              \
    CHECK((len) == strlen(expected) && memcmp((ptr), (expected), (len)) == 0)

#define TEST(name) static void name(void)

#define RUN(name)                                                                                  \
    do {                                                                                           \
        check_failures_in_case = 0;                                                                \
        name();                                                                                    \
        if (check_failures_in_case) {                                                              \
            fprintf(stderr, "FAIL %s\n", #name);                                                   \
            cases_failed++;                                                                        \
        } else {                                                                                   \
            cases_passed++;                                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_SUMMARY(suite)                                                                       \
    (printf("%s: %d passed, %d failed\n", suite, cases_passed, cases_failed), cases_failed != 0)

#endif

/*
 * test.h -- a tiny unit-test harness. Each TEST(name) registers itself at
 * start-up; `test-unit [substring...]` runs the tests whose name contains
 * any of the given substrings (all when none) and prints "N passed, N failed".
 * CHECK* record a failure with file:line and continue.
 */
#ifndef PD_TEST_H
#define PD_TEST_H

#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include <inttypes.h>

typedef void (*pd_test_fn)(void);
void pd_test_register(const char *name, pd_test_fn fn);
void pd_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A fresh empty directory for this test (removed after the run). */
const char *pd_test_tmpdir(void);

#define TEST(name)                                                              \
    static void test_##name(void);                                              \
    __attribute__((constructor)) static void test_reg_##name(void)              \
    {                                                                           \
        pd_test_register(#name, test_##name);                                   \
    }                                                                           \
    static void test_##name(void)

#define CHECK(c)                                                                \
    do {                                                                        \
        if (!(c)) pd_test_fail(__FILE__, __LINE__, "CHECK(%s)", #c);            \
    } while (0)
#define CHECK_INT(a, b)                                                         \
    do {                                                                        \
        long long a_ = (long long)(a), b_ = (long long)(b);                     \
        if (a_ != b_)                                                           \
            pd_test_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", \
                         #a, a_, #b, b_);                                       \
    } while (0)
#define CHECK_STR(a, b)                                                         \
    do {                                                                        \
        const char *a_ = (a), *b_ = (b);                                        \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                  \
            pd_test_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"",   \
                         #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)");           \
    } while (0)
#define CHECK_DBL(a, b, eps)                                                    \
    do {                                                                        \
        double a_ = (a), b_ = (b);                                              \
        if (!(a_ - b_ <= (eps) && b_ - a_ <= (eps)))                            \
            pd_test_fail(__FILE__, __LINE__, "%s == %.17g, expected %.17g",     \
                         #a, a_, b_);                                           \
    } while (0)

#endif

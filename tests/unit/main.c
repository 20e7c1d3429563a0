/* main.c -- runs the registered unit tests, optionally filtered by name. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include <ftw.h>
#include <sys/stat.h>

#define MAX_TESTS 1024

static struct {
    const char *name;
    pd_test_fn fn;
} tests[MAX_TESTS];
static int ntests;
static int cur_failed;
static char tmpdir[320];
static char tmproot[256];

void pd_test_register(const char *name, pd_test_fn fn)
{
    if (ntests < MAX_TESTS) {
        tests[ntests].name = name;
        tests[ntests].fn = fn;
        ntests++;
    }
}

void pd_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    cur_failed++;
}

const char *pd_test_tmpdir(void)
{
    static int seq;
    snprintf(tmpdir, sizeof tmpdir, "%s/t%d", tmproot, seq++);
    if (mkdir(tmpdir, 0700) != 0) {
        perror(tmpdir);
        abort();
    }
    return tmpdir;
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int cmp_tests(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    qsort(tests, (size_t)ntests, sizeof tests[0], cmp_tests);
    snprintf(tmproot, sizeof tmproot, "%s/pd-unit-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmproot)) {
        perror("mkdtemp");
        return 2;
    }
    for (int i = 0; i < ntests; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(tests[i].name, argv[a])) want = 1;
        if (!want) continue;
        cur_failed = 0;
        tests[i].fn();
        if (cur_failed) {
            printf("FAIL %s\n", tests[i].name);
            failed++;
        } else {
            printf("ok   %s\n", tests[i].name);
            passed++;
        }
        fflush(stdout);
    }
    nftw(tmproot, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

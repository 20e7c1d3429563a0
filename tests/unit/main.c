/*
 * main.c -- runs the registered unit tests, each in its own process.
 *
 *   test-unit [--list] [substring...]
 *
 * Selects the tests whose name contains any substring (all when none);
 * --list prints the selected names, one a line, and runs nothing.
 *
 * Isolation: every test runs in a child forked from this (single-threaded)
 * runner, so a crash, a sanitizer abort, a leak report or a hang fails
 * that test alone and the rest still run. The child exits with
 * UNIT_EXIT_FAILED when a CHECK failed (pd_test_fail counts in the child's
 * memory; the exit status carries the verdict across the fork), 0 when
 * none did; any other exit status (ASan and UBSan exit with 1) or a signal
 * is a FAIL naming it. A child still running after PD_UNIT_TIMEOUT seconds
 * (default 120) is killed with SIGKILL and reported as a timeout. The
 * child's stdout is line-buffered and its stderr untouched, so sanitizer
 * reports and CHECK messages appear before the verdict line.
 *
 * Temporary directories: test i gets tmproot/<i>/ for its
 * pd_test_tmpdir() directories; the runner removes it when the child has
 * ended (crashed ones included) and tmproot at the end of the run.
 *
 * Last line: "N passed, N failed" (tests/run.py adds these up).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024
#define UNIT_EXIT_FAILED 3
#define UNIT_TIMEOUT_DEFAULT 120

static struct {
    const char *name;
    pd_test_fn fn;
} tests[MAX_TESTS];
static int ntests;
static int cur_failed;      /* in the child: failed CHECKs of its test */
static char tmpdir[512];
static char tmproot[256];
static char testdir[300];   /* tmproot/<index of the running test> */

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
    snprintf(tmpdir, sizeof tmpdir, "%s/t%d", testdir, seq++);
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

static void rm_tree(const char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int cmp_tests(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int selected(int i, int argc, char **argv)
{
    int any = 0;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--list") == 0) continue;
        any = 1;
        if (strstr(tests[i].name, argv[a])) return 1;
    }
    return !any;
}

/* Runs test i in a child; returns 0 when it passed, else 1 with the reason
 * in why. */
static int run_one(int i, int timeout_s, char *why, size_t whylen)
{
    snprintf(testdir, sizeof testdir, "%s/%d", tmproot, i);
    if (mkdir(testdir, 0700) != 0) {
        snprintf(why, whylen, "mkdir %s: %s", testdir, strerror(errno));
        return 1;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, whylen, "fork: %s", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        cur_failed = 0;
        tests[i].fn();
        fflush(stdout);
        /* exit(), not _exit(): atexit handlers such as LeakSanitizer's run */
        exit(cur_failed ? UNIT_EXIT_FAILED : 0);
    }
    int st = 0, timed_out = 0;
    struct timespec start, now, nap = {0, 1000000}; /* 1 ms, doubling to 50 ms */
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) {
            snprintf(why, whylen, "waitpid: %s", strerror(errno));
            rm_tree(testdir);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!timed_out && now.tv_sec - start.tv_sec >= timeout_s) {
            kill(pid, SIGKILL);
            timed_out = 1;
        }
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 50000000) nap.tv_nsec *= 2;
    }
    rm_tree(testdir);
    if (timed_out) {
        snprintf(why, whylen, "timed out after %d s (PD_UNIT_TIMEOUT)", timeout_s);
        return 1;
    }
    if (WIFSIGNALED(st)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(st));
        snprintf(why, whylen, "killed by SIG%s", abbrev ? abbrev : "?");
        return 1;
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 0) return 0;
    if (code == UNIT_EXIT_FAILED) snprintf(why, whylen, "checks failed");
    else snprintf(why, whylen, "exited with status %d (a sanitizer report or exit() above)", code);
    return 1;
}

int main(int argc, char **argv)
{
    int passed = 0, failed = 0, list = 0;
    for (int a = 1; a < argc; a++) list |= strcmp(argv[a], "--list") == 0;
    qsort(tests, (size_t)ntests, sizeof tests[0], cmp_tests);
    if (list) {
        for (int i = 0; i < ntests; i++)
            if (selected(i, argc, argv)) printf("%s\n", tests[i].name);
        return 0;
    }
    const char *ts = getenv("PD_UNIT_TIMEOUT");
    int timeout_s = ts && atoi(ts) > 0 ? atoi(ts) : UNIT_TIMEOUT_DEFAULT;
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmproot, sizeof tmproot, "%s/pd-unit-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmproot)) {
        perror("mkdtemp");
        return 2;
    }
    for (int i = 0; i < ntests; i++) {
        if (!selected(i, argc, argv)) continue;
        char why[512];
        if (run_one(i, timeout_s, why, sizeof why) == 0) {
            printf("ok   %s\n", tests[i].name);
            passed++;
        } else {
            printf("FAIL %s (%s)\n", tests[i].name, why);
            failed++;
        }
    }
    rm_tree(tmproot);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* Probes of the runner's isolation, inert unless PD_UNIT_PROBE names them
 * (tests/bb/test_cli.py runs them): "crash" aborts, "hang" sleeps past any
 * timeout, "check" fails a CHECK. Without the variable they pass. */
static int probe_on(const char *what)
{
    const char *p = getenv("PD_UNIT_PROBE");
    return p && strstr(p, what) != NULL;
}

TEST(runner_probe_crash)
{
    if (probe_on("crash")) abort();
}

TEST(runner_probe_hang)
{
    if (probe_on("hang")) sleep(3600);
}

TEST(runner_probe_check)
{
    CHECK(!probe_on("check"));
}

/*
 * quarantine.c -- the corrupt-store marker and the move aside (policy and
 * rationale in quarantine.h).
 */
#include "quarantine.h"

#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int pd_quarantine_mark(const char *dir, const char *why, char *err, size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, PD_CORRUPT_MARKER);
    if (access(path, F_OK) == 0) return PD_OK;
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, PD_CORRUPT_MARKER);
    FILE *f = fopen(tmp, "w");
    if (!f) return pd_seterr(err, errlen, PD_EIO, "%s: %s", tmp, strerror(errno));
    fprintf(f, "%s\n", why);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return pd_seterr(err, errlen, PD_EIO, "%s: %s", path, strerror(errno));
    }
    return PD_OK;
}

int pd_quarantine_marked(const char *dir, char *why, size_t whylen)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, PD_CORRUPT_MARKER);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (why && whylen) {
        why[0] = 0;
        if (fgets(why, (int)whylen, f)) why[strcspn(why, "\n")] = 0;
    }
    fclose(f);
    return 1;
}

int pd_quarantine_move(const char *dir, char *moved_to, size_t movedlen, char *err, size_t errlen)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--; /* "data/" -> "data.corrupt-..." */
    int len = snprintf(moved_to, movedlen, "%.*s.corrupt-%s", (int)n, dir, stamp);
    if (len < 0 || (size_t)len >= movedlen) return pd_seterr(err, errlen, PD_ERANGE, "path too long");
    struct stat sb;
    for (int i = 1; stat(moved_to, &sb) == 0 && i < 100; i++)
        snprintf(moved_to, movedlen, "%.*s.corrupt-%s-%d", (int)n, dir, stamp, i);
    if (rename(dir, moved_to) != 0)
        return pd_seterr(err, errlen, PD_EIO, "cannot move %s to %s: %s", dir, moved_to, strerror(errno));
    return PD_OK;
}

void pd_quarantine_found(pd_worker *w, int32_t p, const char *why)
{
    PD_INC(w->metrics->store_corruptions);
    if (atomic_exchange(&w->store_corrupt, 1)) return;
    char err[512];
    if (pd_quarantine_mark(w->cfg->data_dir, why, err, sizeof err) != PD_OK)
        pd_error("marking the store corrupt: %s", err);
    const int quarantine = strcmp(w->cfg->store_corruption, "quarantine") == 0;
    char where[32] = "";
    if (p >= 0) snprintf(where, sizeof where, "partition %d: ", (int)p);
    pd_error("%sthe store is corrupt (%s): not ready; %s", where, why,
             quarantine ? "restarting to quarantine it and restore its partitions (store_corruption=quarantine)"
                        : "what reads fine is still served; the next start refuses it (store_corruption=refuse)");
}

int pd_quarantine_restart_due(pd_worker *w)
{
    return atomic_load(&w->store_corrupt) && strcmp(w->cfg->store_corruption, "quarantine") == 0;
}

int pd_quarantine_reexec(char **argv, char *err, size_t errlen)
{
    const char *v = getenv(PD_QUARANTINE_RESTARTS_ENV);
    long n = v ? strtol(v, NULL, 10) : 0;
    if (n < 0) n = 0;
    if (n >= PD_QUARANTINE_MAX_RESTARTS)
        return pd_seterr(err, errlen, PD_ERR, "the store was found corrupt again after %ld restarts of this "
                         "process: not restarting (check the disk)", n);
    char buf[24];
    snprintf(buf, sizeof buf, "%ld", n + 1);
    if (setenv(PD_QUARANTINE_RESTARTS_ENV, buf, 1) != 0)
        return pd_seterr(err, errlen, PD_ERR, "setenv: %s", strerror(errno));
    pd_info("restarting (%ld of at most %d) to quarantine the corrupt store", n + 1, PD_QUARANTINE_MAX_RESTARTS);
    fflush(stdout);
    fflush(stderr);
    execv("/proc/self/exe", argv);
    return pd_seterr(err, errlen, PD_ERR, "execv: %s", strerror(errno));
}

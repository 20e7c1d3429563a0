/*
 * quarantine.c -- the corrupt-store marker and the move aside (policy and
 * rationale in quarantine.h).
 */
#include "quarantine.h"

#include "util.h"

#include <errno.h>
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

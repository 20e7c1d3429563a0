/*
 * diskguard.c -- free space against a floor (contract and rationale in
 * diskguard.h).
 */
#include "diskguard.h"

#include "util.h"

#include <errno.h>
#include <string.h>
#include <sys/statvfs.h>

void pd_diskguard_init(pd_diskguard *g, uint64_t floor_bytes)
{
    g->floor = floor_bytes;
    g->resume_at = floor_bytes + floor_bytes / 2;
    g->low = 0;
}

int pd_diskguard_update(pd_diskguard *g, uint64_t free_bytes)
{
    const int was = g->low;
    if (g->floor == 0) g->low = 0;
    else if (!g->low && free_bytes < g->floor) g->low = 1;
    else if (g->low && free_bytes >= g->resume_at) g->low = 0;
    return g->low != was;
}

int pd_disk_free(const char *path, uint64_t *free_bytes, char *err, size_t errlen)
{
    struct statvfs sv;
    if (statvfs(path, &sv) != 0) return pd_seterr(err, errlen, PD_EIO, "statvfs %s: %s", path, strerror(errno));
    *free_bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    return PD_OK;
}

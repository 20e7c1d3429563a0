/*
 * diskguard.h -- the free space of the data directory's filesystem
 * against a floor (issue 22, hole 6: a full disk).
 *
 * RocksDB does not fail gracefully on a full disk (Debian's build aborts
 * on an assertion when a file it failed to write is used again), so the
 * worker stops writing *before* the disk is full: the ingest thread
 * measures the free space (statvfs: blocks available to unprivileged
 * users) a few times a second and, below `disk_min_free_mb`, pauses
 * consumption (ingest.c); at or above one and a half times the floor it
 * resumes. The gap between the two (hysteresis) keeps a disk hovering
 * near the floor from flapping. The floor is the headroom for what is
 * still written while paused: the batch already read, the flush of a
 * rebalance, RocksDB's compactions and its own files.
 *
 * The state machine is pure (pd_diskguard_update) and unit tested; the
 * measurement is pd_disk_free. Ownership: a pd_diskguard belongs to its
 * caller (the ingest thread); nothing here allocates.
 */
#ifndef PD_DISKGUARD_H
#define PD_DISKGUARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t floor;     /* bytes; 0: off (never low) */
    uint64_t resume_at; /* bytes: floor + floor / 2 */
    int low;            /* 1 while below the floor (until resume_at) */
} pd_diskguard;

/* floor_bytes 0 turns the guard off. */
void pd_diskguard_init(pd_diskguard *g, uint64_t floor_bytes);
/* Feeds one measurement; returns 1 when g->low changed, else 0. */
int pd_diskguard_update(pd_diskguard *g, uint64_t free_bytes);
/* Free bytes for unprivileged users on the filesystem holding path. */
int pd_disk_free(const char *path, uint64_t *free_bytes, char *err, size_t errlen);

#endif

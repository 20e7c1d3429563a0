/*
 * worker.h -- the state one profiled process shares between its ingest
 * thread and its HTTP threads.
 *
 * Ownership: pd_worker is created by main (profiled.c), which owns every
 * pointer in it and destroys them in shutdown order. The ingest thread is
 * the only writer of the store and of pd_partstate: it keeps each
 * partition's state privately (ingest.c) and copies it here in one
 * function, part_publish (release stores), after every change; HTTP
 * threads read the atomics (acquire) and never write them.
 */
#ifndef PD_WORKER_H
#define PD_WORKER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include "config.h"
#include "schema.h"
#include "store.h"
#include "metrics.h"
#include "util.h"

/* Per-partition state, indexed by partition number. */
typedef struct {
    _Atomic int owned;            /* assigned to this worker */
    _Atomic int ready;            /* restored and consuming */
    _Atomic int replica;          /* this worker keeps a warm replica of it */
    _Atomic int restoring;        /* owned or replicated, state being obtained */
    _Atomic int incomplete;       /* PD_INCOMPLETE_* bits: records the state
                                     should hold were already deleted by the
                                     topic's retention */
    _Atomic int offsets_backwards; /* checkpoint beyond the topic's end: not
                                     consumed (offsets_backwards=refuse) */
    _Atomic int64_t next_offset;  /* next input offset to process (-1 unknown) */
    _Atomic int64_t committed;    /* next offset checkpointed in the store (-1 none) */
    _Atomic int64_t fx_durable;   /* owner: side effects of offsets below are done and
                                     checkpointed (sidefx.h; -1 none) */
    _Atomic int64_t high_watermark; /* from the consumer's stats (-1 unknown) */
    _Atomic int64_t clock_ms;     /* newest event time seen (0 none) */
    _Atomic int64_t generation;   /* assignment generation when acquired */
} pd_partstate;

/* pd_partstate.incomplete bits */
#define PD_INCOMPLETE_REBUILD 1 /* rebuilt from a topic that no longer starts at offset 0 */
#define PD_INCOMPLETE_GAP 2     /* skipped from its checkpoint to the topic's first offset */

/* n partition states, everything unknown (offsets -1). Owned by the caller
 * (free()). */
static inline pd_partstate *pd_partstates_new(int32_t n)
{
    pd_partstate *v = pd_calloc(n > 0 ? (size_t)n : 1, sizeof *v);
    for (int32_t p = 0; p < n; p++) {
        atomic_store(&v[p].next_offset, -1);
        atomic_store(&v[p].committed, -1);
        atomic_store(&v[p].fx_durable, -1);
        atomic_store(&v[p].high_watermark, -1);
    }
    return v;
}

/* Owner of one partition as known from the membership topic. */
typedef struct {
    char id[130];
    char url[256];
    int64_t generation;
    int64_t updated_ms;
} pd_owner;

typedef struct pd_members pd_members; /* members.c */
typedef struct pd_backupd pd_backupd; /* backupd.c */
struct pd_population;                  /* population.c */

/* pd_worker.disk_low bits */
#define PD_DISK_LOW_FLOOR 1  /* free space below disk_min_free_mb (diskguard.h) */
#define PD_DISK_LOW_WRITES 2 /* a store write failed and is being retried (committer.h) */

typedef struct pd_worker {
    pd_config *cfg;
    pd_schema *schema;
    pd_store *store;
    pd_metrics *metrics;
    pd_tz tz;
    int32_t nparts;               /* partitions of the input topic */
    pd_partstate *parts;          /* nparts entries */
    pd_members *members;          /* partition -> owner map (may be NULL in tests) */
    pd_backupd *backups;          /* NULL: backup_dir not set (or tests) */
    struct pd_population *population; /* the prior's cache (NULL: none yet, or tests) */
    char advertise[256];          /* this worker's URL */
    _Atomic int64_t generation;   /* bumped on every assignment change */
    _Atomic int kafka_up;         /* 0 when the consumer reports all brokers down */
    _Atomic int store_lost;       /* 1 once the data directory vanished (pd_store_dir_check) */
    _Atomic int store_corrupt;    /* 1 once a read failed its checksum (quarantine.h) */
    _Atomic int store_quarantined; /* 1 when this start quarantined a corrupt store */
    _Atomic int disk_low;         /* PD_DISK_LOW_* bits: ingestion paused for the disk (ingest.c) */
    _Atomic uint64_t disk_free_bytes; /* last measured free space of the data directory's filesystem */
    volatile sig_atomic_t stop;   /* 1: a signal asked to stop; 2: restarting (quarantine.h) */
} pd_worker;

#endif

/*
 * ingest_int.h -- the ingest module's private header (like SQLite's
 * btreeInt.h): the ingest thread's per-partition state, the pd_ingest
 * context, and the functions its files share. Files:
 *   ingest.c     record admission, retention, the flush, the consume loop
 *   partition.c  the partition lifecycle: own, replicate, restore, release,
 *                clean up; rebalances; the side-effect frontier at takeover
 *   offsets.c    positions against the topic's offsets: out-of-range
 *                (gap / backwards), watermarks, fetch wake-ups
 * Everything here runs on the ingest thread (rebalance callbacks too:
 * they are served from its consume calls). The design argument is atop
 * ingest.c.
 */
#ifndef PD_INGEST_INT_H
#define PD_INGEST_INT_H

#include "ingest.h"

#include "batch.h"
#include "committer.h"
#include "dedup.h"
#include "diskguard.h"
#include "dlq.h"
#include "restore.h"
#include "sidefx.h"

#include <librdkafka/rdkafka.h>

#define TRIM_EVERY_US (30 * 1000000LL) /* malloc_trim cadence (see pd_ingest_run) */

enum { ROLE_NONE = 0, ROLE_OWNER = 1, ROLE_REPLICA = 2 };

/* Per-partition private state of the ingest thread. The fields marked
 * "published" are what pd_partstate shows (part_publish). */
typedef struct {
    int role;             /* ROLE_*: owner (group assignment) or warm replica (published) */
    int dirty;            /* offsets advanced since the last commit */
    int64_t next_offset;  /* next offset to process; -1 = take what comes (published) */
    int64_t committed;    /* next offset checkpointed in the store; -1 = none (published) */
    int64_t clock_ms;     /* newest event time seen (0 = none) (published) */
    int64_t high_watermark; /* of the partition's consumer; -1 = unknown (published) */
    int64_t generation;   /* assignment generation when acquired (published) */
    int incomplete;       /* rebuilt from a topic that had lost older records (published) */
    int scratch;          /* rebuilt from the start of the topic */
    int import_start;     /* imported (store.h): started at its resolved start time (2: not
                             checkpointed yet); the first commit with records applied clears
                             the start time and rewrites de-dup */
    int64_t catchup_to;   /* not ready (not served) until committed up to here; 0 = ready */
    int64_t orphan_since_ms; /* neither owned nor replicated, with local state, since */
    int64_t floor_seen;   /* retention floor day of the clock last checkpointed (built) */
    pd_restore *job;      /* != NULL while the state is being fetched */
    pd_dedup dd;          /* loaded on the first record after assignment */
    pd_sidefx fx;         /* side effects done below fx.done; a replica's notes (sidefx.h) */
    int64_t group_committed; /* the group's committed offset when last assigned as owner; -1 unknown */
    int64_t fx_durable;   /* owner: side-effect frontier of the last finished store commit (-1 none) */
    int64_t group_acked;  /* owner: the offset the group last acknowledged (-1 none) */
    int backwards;        /* checkpoint beyond the topic's end, refused (published; "offsets") */
    int held;             /* replica since a lost assignment or an offline start (keep_as_replica) */
    int64_t oor_at_us;    /* an out-of-range position to resolve at this time (0 = none) */
} part_priv;

/* What a commit in flight checkpoints, per partition (see "committing"). */
typedef struct {
    int32_t p;
    int64_t next_offset;
    int64_t fx_done;      /* owner: side effects done below (the offset committed to the group); -1 replica */
} commit_part;

struct pd_ingest {
    pd_worker *w;
    const pd_config *cfg;
    rd_kafka_t *consumer;
    rd_kafka_queue_t *cq;
    pd_dlq *dlq;              /* DLQ and misroute producer */
    rd_kafka_t *rconsumer;    /* replicas: assign-mode consumer (NULL when replicas = 0) */
    rd_kafka_queue_t *rq;
    part_priv *pp;            /* w->nparts */
    int64_t last_replica_us;
    int64_t last_cleanup_us;
    int64_t last_trim_us;
    /* batches (see "committing"): the storage of the two slots, and who
     * holds each -- the ingest thread through fill and spare, the
     * committer from pd_committer_submit until pd_committer_collect */
    pd_batch_slot slots[2];
    pd_batch_slot *fill;      /* ingest thread: the batch being filled */
    pd_batch_slot *spare;     /* ingest thread: the other one; NULL while a commit is in flight */
    pd_committer *cm;
    int64_t dirty_since_us;   /* first uncommitted record since the last commit (0 = none) */
    commit_part *cm_parts;    /* what the commit in flight checkpoints */
    size_t cm_nparts, cm_capparts;
    uint64_t cm_events;
    int cm_floor_moved;
    int64_t cm_t0_us;
    int64_t last_flush_us;    /* when the last batch was handed to the committer */
    int64_t last_wm_us;
    int64_t last_kick_us[3];  /* fetch wake-ups, by ROLE_* (see wake_fetcher) */
    int64_t kick_gap_us[3];
    int64_t last_retention_day; /* last floor applied */
    int64_t last_retention_us;  /* last apply_retention run */
    int64_t wall_ms;          /* the wall clock, read per consumed batch (see "Future bound") */
    int64_t (*wall_fn)(void); /* its source: pd_now_ms (tests set another) */
    pd_diskguard dg;          /* free space of the data directory against disk_min_free_mb */
    int64_t last_disk_us;     /* last disk_watch */
    int disk_paused;          /* consumption paused for the disk (floor or failing writes) */
    int fatal;
    int commit_sync;          /* commit offsets to the group synchronously (revocation) */
    int oor_pending;          /* some pp[].oor_at_us is set ("offsets") */
    int closed;               /* pd_ingest_close done */
};

static inline int commit_inflight(const pd_ingest *ig) { return ig->spare == NULL; }

/* Partition p has something for the next commit (records, a checkpoint or
 * a side-effect frontier to write): the commit is due commit_interval_ms
 * after the first such change (dirty_since_us). Ingest thread only. */
static inline void ig_mark_dirty(pd_ingest *ig, int32_t p)
{
    ig->pp[p].dirty = 1;
    if (!ig->dirty_since_us) ig->dirty_since_us = pd_mono_us();
}

/* Publishes partition p's private state to pd_partstate, the copy HTTP,
 * metrics and membership threads read: the one writer of those atomics.
 * Called after every change of a published field, on the hot path too
 * (each record), so the stores are release stores (plain moves on x86),
 * not sequentially consistent ones. */
static inline void part_publish(pd_ingest *ig, int32_t p)
{
    const part_priv *pp = &ig->pp[p];
    pd_partstate *ps = &ig->w->parts[p];
    const memory_order mo = memory_order_release;
    atomic_store_explicit(&ps->next_offset, pp->next_offset, mo);
    atomic_store_explicit(&ps->clock_ms, pp->clock_ms, mo);
    atomic_store_explicit(&ps->committed, pp->committed, mo);
    atomic_store_explicit(&ps->fx_durable, pp->role == ROLE_OWNER ? pp->fx_durable : -1, mo);
    atomic_store_explicit(&ps->high_watermark, pp->high_watermark, mo);
    atomic_store_explicit(&ps->generation, pp->generation, mo);
    atomic_store_explicit(&ps->incomplete, pp->incomplete, mo);
    atomic_store_explicit(&ps->offsets_backwards, pp->backwards, mo);
    atomic_store_explicit(&ps->owned, pp->role == ROLE_OWNER, mo);
    atomic_store_explicit(&ps->replica, pp->role == ROLE_REPLICA, mo);
    atomic_store_explicit(&ps->restoring, pp->job != NULL || pp->catchup_to > 0, mo);
    atomic_store_explicit(&ps->ready, pp->role != ROLE_NONE && !pp->job && !pp->catchup_to && !pp->backwards, mo);
}

/* ingest.c */
/* Finishes the commit in flight before partition roles change or
 * checkpoints are read; a failure is logged (the worker is stopping). */
void ig_settle(pd_ingest *ig);
/* Drops the uncommitted part of the filling batch of the partitions with
 * only_parts[p] != 0, and their de-dup indexes. */
void ig_batch_drop_parts(pd_ingest *ig, const char *only_parts);

/* partition.c */
void ig_start_scratch(pd_ingest *ig, int32_t p);
void ig_set_catchup(pd_ingest *ig, int32_t p);
int64_t ig_start_offset(pd_ingest *ig, int32_t p);
void ig_replica_reassign(pd_ingest *ig);
void ig_owner_pause(pd_ingest *ig, int32_t p, int pause);
void ig_pause_consumption(pd_ingest *ig, int pause);
void ig_reap_restores(pd_ingest *ig);
void ig_update_replicas(pd_ingest *ig);
void ig_cleanup_orphans(pd_ingest *ig);
/* Kafka unreachable at start: every partition with a checkpoint here is
 * held as a replica (served stale) until assignments and replica
 * placement decide, as after a lost assignment. */
void ig_hold_local(pd_ingest *ig);
void ig_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts, void *opaque);

/* offsets.c */
void ig_update_watermarks(pd_ingest *ig);
/* Offset commit results (the group consumer's offset_commit_cb). */
void ig_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offs, void *opaque);
/* Commits again, asynchronously, every owned partition whose durable
 * side-effect frontier the group has not acknowledged (a commit refused
 * during a rebalance, say): the next owner starts its side effects there. */
void ig_recommit(pd_ingest *ig);
void ig_kick_reset(pd_ingest *ig, int role);
void ig_wake_fetcher(pd_ingest *ig, rd_kafka_t *rk, int role, int64_t now);
void ig_resolve_out_of_range(pd_ingest *ig);

#endif

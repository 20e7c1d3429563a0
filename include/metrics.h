/*
 * metrics.h -- process-wide counters and histograms, rendered in the
 * Prometheus text format by GET /metrics.
 *
 * All fields are C11 atomics updated with relaxed ordering: writers (the
 * ingest thread, HTTP threads) never take a lock; a scrape may see counters
 * from slightly different instants, which Prometheus tolerates.
 */
#ifndef PD_METRICS_H
#define PD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include "event.h"
#include "handoff.h"
#include "memrec.h"
#include "util.h"

#define PD_HIST_MAX 20

typedef struct {
    int n;                          /* number of finite bounds */
    double bounds[PD_HIST_MAX];     /* ascending upper bounds (le) */
    _Atomic uint64_t counts[PD_HIST_MAX + 1]; /* last = +Inf; NOT cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_micro;     /* sum * 1e6 (microseconds for latencies) */
} pd_hist;

void pd_hist_init(pd_hist *h, const double *bounds, int n);
void pd_hist_observe(pd_hist *h, double v);

typedef enum {
    PD_ROUTE_PROFILE = 0, PD_ROUTE_PARTITIONS, PD_ROUTE_HEALTHZ, PD_ROUTE_READYZ,
    PD_ROUTE_METRICS, PD_ROUTE_INTERNAL, PD_ROUTE_ERASE, PD_ROUTE_SCORE, PD_ROUTE_POPULATION, PD_ROUTE_SCHEMA, PD_ROUTE_OTHER,
    PD_ROUTE__COUNT
} pd_route;
const char *pd_route_name(int r);

#define PD_STATUS_SLOTS 12 /* 200,400,401,404,405,413,414,431,500,502,503,other */
int pd_status_slot(int status);
int pd_status_of_slot(int slot); /* 0 for "other" */

typedef struct pd_metrics {
    /* ingestion */
    _Atomic uint64_t records_in;        /* Kafka records consumed */
    _Atomic uint64_t events_accepted;   /* counted into profiles */
    _Atomic uint64_t events_duplicate;  /* de-dup hits */
    _Atomic uint64_t events_misrouted;  /* re-produced to their right partition */
    _Atomic uint64_t events_too_old;    /* older than the retention window: dropped */
    _Atomic uint64_t events_stale_offset; /* below the checkpoint: skipped */
    _Atomic uint64_t erasures;          /* erasure records applied (erase.h) */
    _Atomic uint64_t erase_requests[3]; /* DELETE /v1/profiles: 0 accepted, 1 failed, 2 timed out */
    _Atomic uint64_t import_resolutions[2]; /* imported start times resolved: 0 Kafka's answer, 1 by scan */
    _Atomic uint64_t events_dlq[PD_EV__COUNT]; /* by reason */
    _Atomic uint64_t attrs_wrong_type;  /* attributes skipped */
    _Atomic uint64_t dlq_produce_errors;
    _Atomic uint64_t flushes;
    _Atomic uint64_t flush_errors;
    _Atomic uint64_t store_corruptions; /* reads that failed as corrupt (quarantine.h) */
    _Atomic uint64_t store_quarantines; /* corrupt stores moved aside at this start */
    _Atomic uint64_t disk_pauses;       /* times ingestion paused for free space (diskguard.h) */
    _Atomic uint64_t store_write_failures; /* failed store writes, each retry counted (committer.h) */
    _Atomic uint64_t store_folds;
    _Atomic uint64_t store_writes;
    _Atomic uint64_t days_dropped;
    _Atomic uint64_t rebalances;
    _Atomic uint64_t fetch_wakeups;     /* see ingest.c, "fetch wake-ups" */
    _Atomic uint64_t sidefx_redo_records; /* records re-read by a new owner for their side effects (sidefx.h) */
    _Atomic uint64_t sidefx_redo_dlq;     /* ... of which dead-lettered */
    _Atomic uint64_t sidefx_redo_rerouted;/* ... of which re-produced */
    _Atomic uint64_t sidefx_notes_dropped;/* replica time-rejection notes over the cap */
    _Atomic uint64_t sidefx_lost;         /* records whose side effects were due but are gone from the topic */
    _Atomic uint64_t offset_gaps;         /* partitions found behind the topic's first offset */
    _Atomic uint64_t offset_gap_records;  /* records skipped because the topic no longer has them */
    _Atomic uint64_t offsets_backwards;   /* partitions found beyond the topic's end (recreated/truncated) */
    _Atomic uint64_t batch_bytes[2];    /* memory held by each in-memory batch (see ingest.c) */
    _Atomic uint64_t dedup_bytes;       /* the de-dup indexes of all partitions (at the last commit) */
    _Atomic uint64_t dedup_entries;
    _Atomic uint64_t backups_ok, backups_failed;
    _Atomic int64_t backup_last_success_ms;  /* epoch ms (0: none yet) */
    _Atomic uint64_t backup_last_duration_us, backup_last_size, backup_last_added;
    _Atomic uint64_t dedup_evictions;   /* ids forgotten before the window passed them (dedup_max_ids) */
    _Atomic int64_t dedup_effective_window_ms; /* the smallest over loaded partitions (at the last commit) */
    _Atomic uint64_t restores_ok;       /* partitions restored from a peer's snapshot */
    _Atomic uint64_t restores_failed;   /* no usable snapshot: rebuilt instead */
    _Atomic uint64_t restore_bytes;     /* snapshot bytes received */
    _Atomic uint64_t snapshots_rejected[PD_SNAP_REJ__COUNT]; /* by reason (handoff.h) */
    _Atomic uint64_t member_records_rejected[PD_MEMREC__COUNT]; /* by verdict (memrec.h); [0] unused */
    _Atomic uint64_t rebuilds;          /* partitions rebuilt by replaying the topic */
    /* the population prior (population.c) */
    _Atomic int64_t pop_oldest_ms;      /* confirmation time of its oldest partition copy (0: no prior) */
    _Atomic uint64_t pop_covered, pop_total; /* partitions in it / of the topic */
    _Atomic uint64_t pop_refreshes;     /* refreshes done */
    _Atomic uint64_t pop_refresh_failures; /* peers (or local reads) that failed a refresh */
    _Atomic uint64_t pop_cache[3];      /* scoring's population sums: hit, stored, full (population.h) */
    _Atomic uint64_t partitions_deleted;/* local state of released partitions deleted */
    pd_hist batch_events;               /* events per flush */
    pd_hist flush_seconds;              /* flush latency */
    pd_hist trim_seconds;               /* malloc_trim duration */
    /* http */
    _Atomic uint64_t http_requests[PD_ROUTE__COUNT][PD_STATUS_SLOTS];
    pd_hist http_seconds[PD_ROUTE__COUNT];
    _Atomic uint64_t forwarded;         /* requests forwarded to a peer */
    _Atomic uint64_t forward_errors;
    /* http front end (http_front.c): client connections */
    _Atomic uint64_t http_conns_open;   /* gauge */
    _Atomic uint64_t http_conns_queued; /* gauge: complete heads waiting for a worker */
    _Atomic uint64_t http_conns_accepted;
    _Atomic uint64_t http_conns_rejected[2];  /* 503 at accept: per_client, total */
    _Atomic uint64_t http_conns_evicted;      /* closed to admit a new one */
    _Atomic uint64_t http_conns_timed_out[3]; /* head, idle (kept), write */
} pd_metrics;

void pd_metrics_init(pd_metrics *m);

struct pd_worker;
/* Appends the Prometheus exposition of m plus the worker's per-partition
 * gauges (lag, offsets, ownership) and store sizes per day. */
void pd_metrics_render(const pd_metrics *m, struct pd_worker *w, pd_buf *out);

#define PD_INC(field) atomic_fetch_add_explicit(&(field), 1, memory_order_relaxed)
#define PD_ADD(field, n) atomic_fetch_add_explicit(&(field), (n), memory_order_relaxed)

#endif

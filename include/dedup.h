/*
 * dedup.h -- the de-dup index of one partition: decisions, the pending
 * record of a flush, garbage collection of stored records, reload.
 *
 * The rule (the exactly-once design in ingest.c depends on it). The window
 * is measured on DELIVERIES, not on event time: a client that was offline
 * for two days and retries its upload sends events two days old twice
 * within a second, and they must count once. Each partition has a de-dup
 * clock C: the newest delivery time (rectime.h: the record timestamp,
 * bounded by the worker's clock; the event time for records without one)
 * of its accepted events with an id. For an event with id E delivered at
 * r, let C' = max(C, r). It is a duplicate iff the index holds E with
 * d0 >= C' - window. Otherwise it is accepted: C becomes C' and E's entry
 * becomes C' (the latest ACCEPTED occurrence; a duplicate changes
 * nothing). So "duplicate" means: the partition's delivery clock has moved
 * at most `window` since E was last accepted.
 *
 * Why the clock and not r itself: r is in the log (deterministic for
 * replicas, replays and rebuilds) but a producer may stamp records with
 * the event time, or an old time; max(C, r) still advances with the
 * partition's deliveries, and no single record can move it further than
 * the bound rectime.h puts on r. Entries with d0 < C - window can never
 * match again (C only grows), so collecting them cannot change a
 * decision; and the entries an index accepts are non-decreasing in
 * acceptance order, each equal to C at its acceptance.
 *
 * C is not stored apart: it is the largest entry in the partition's stored
 * records, which a reload recomputes (the record holding it is never
 * collected: its gc time is C itself; dedup.c).
 *
 * Bounded memory (dedup_max_ids, per partition; 0 = no bound). Besides the
 * window, an id is forgotten once max_ids later acceptances have happened
 * in its partition: the index keeps the delivery times of the last max_ids
 * acceptances (a ring), and each acceptance beyond that raises the
 * partition's cap horizon H to (the delivery time of the acceptance that
 * falls out of the ring) + 1. An entry matches only while d0 >= H as well
 * as d0 >= C' - window. So the index holds at most max_ids live ids, and
 * the consequence is deterministic and stated: when a partition accepts
 * more than max_ids events within one window, the window effectively
 * shrinks to C - H (gauge profiled_dedup_effective_window_seconds) and a
 * duplicate delivered further apart counts again. H depends on the record
 * sequence alone (acceptance times are non-decreasing, so the dropped
 * acceptance is the oldest one), and it is stored (a record with seq 0 in
 * the partition's de-dup records, in the same batch as the flush that
 * raised it), so replicas, replays and reloads decide alike: a reload
 * replays the stored acceptances into the ring; the ones a collection
 * deleted were all below H, and every acceptance after a live one is live,
 * so the ring's evictions from then on are the same.
 *
 * Ownership: a pd_dedup belongs to the ingest thread; it is plain memory
 * (zero-initialised = not loaded) and keeps no pointer to the store or to
 * anything passed in. The store layout of its records is in store.h.
 */
#ifndef PD_DEDUP_H
#define PD_DEDUP_H

#include "store.h"
#include "util.h"

#define PD_DEDUP_NONE INT64_MIN /* "no entry" (and a free slot's ts) */

typedef struct {
    uint64_t hi, lo;  /* XXH3-128 of the event id */
    int64_t ts;       /* PD_DEDUP_NONE: free slot */
} pd_dedup_slot;

typedef struct {
    uint64_t seq;     /* the stored record's key */
    int64_t gc_ts;    /* collectable once gc_ts < C - window */
} pd_dedup_rec;

typedef struct {
    int loaded;
    int64_t clock;        /* C: newest accepted delivery time (PD_DEDUP_NONE: none yet) */
    pd_dedup_slot *slots; /* cap slots, cap a power of two (0 = none) */
    size_t cap, n;
    pd_dedup_rec *recs;   /* stored records, ascending seq, from index head */
    size_t head, nrecs, caprecs;
    pd_buf pend;          /* entries accepted since the last flush (store format) */
    int64_t pend_gc;      /* gc_ts of the pending record (PD_DEDUP_NONE: none) */
    uint32_t flushes;
    uint64_t max_ids;     /* 0: no bound */
    int64_t window;       /* as loaded (the bound's metric only) */
    int64_t *ring;        /* delivery times of the last acceptances (up to max_ids) */
    size_t ringn, ringcap, ringpos; /* held, allocated, next slot once full */
    int64_t cap_h;        /* H (PD_DEDUP_NONE: never raised) */
    int64_t cap_h_stored; /* H as of the last staged flush */
    uint64_t evicted;     /* ids forgotten by the bound before the window passed
                             them, since the load (the owner may reset it) */
    int adopt;            /* pd_dedup_adopt: the next stage rewrites every stored record */
} pd_dedup;

/* Replaces d's contents with partition p's records in st and recomputes
 * its clock and cap horizon (entries below the horizons may be left out);
 * max_ids bounds the index from then on (0 = no bound; the same on every
 * worker of a cluster, like the window). On error d is left unloaded
 * (freed). */
int pd_dedup_load(pd_dedup *d, pd_store *st, int32_t p, int64_t window, uint64_t max_ids, char *err,
                  size_t errlen);
/* The decision for one event of a loaded index, delivered at `at`
 * (rectime.h): returns 1 when id is a duplicate under the rule; otherwise
 * records the occurrence (clock, index, pending record) and returns 0. */
int pd_dedup_check(pd_dedup *d, const char *id, size_t idlen, int64_t at, int64_t window);
/* The delivery time of id's latest accepted occurrence the index holds
 * (PD_DEDUP_NONE if none). */
int64_t pd_dedup_lookup(const pd_dedup *d, const char *id, size_t idlen);
/* At a flush of partition p that checkpoints offset seq (the partition's
 * next offset; ascending across flushes): adds to sb the deletes of the
 * stored records collectable under the index's clock and `window`, and
 * the pending record (key seq), and moves the in-memory bookkeeping past
 * them. Does nothing to an index that is not loaded. */
void pd_dedup_stage(pd_dedup *d, pd_store_batch *sb, int32_t p, uint64_t seq, int64_t window);
/* An imported partition (store.h "Imported stores"): the import's de-dup
 * records are keyed by its own flush count, not by offsets of the topic,
 * so they may collide with the records the worker writes from the start
 * offset on. Right after pd_dedup_load of such a partition this moves
 * every entry the index still holds (delivery time at or above the
 * horizon; the others can never match again) into the pending record, in
 * ascending delivery time (the acceptance order); the next pd_dedup_stage
 * deletes every stored record of the partition and writes that record at
 * its seq, all in the flush's WriteBatch. Decisions do not change: the
 * index in memory is untouched. */
void pd_dedup_adopt(pd_dedup *d, int64_t window);
/* 1 when a record of the loaded index is keyed beyond next_offset (the
 * partition's checkpoint; a negative one counts as 0): records a worker
 * writes are keyed by the offset the flush checkpoints, never beyond it,
 * so such records came from an import (its flush count), here or in a
 * peer's snapshot of an imported partition that had applied no record of
 * the topic yet. The next flushes could write at their keys and replace
 * them: such an index is adopted (pd_dedup_adopt) before anything is
 * staged. */
int pd_dedup_foreign(const pd_dedup *d, int64_t next_offset);
/* The window in effect now: min(window, C - H) (window while not bounded). */
int64_t pd_dedup_effective_window(const pd_dedup *d, int64_t window);
/* Heap bytes the index holds. */
size_t pd_dedup_bytes(const pd_dedup *d);
/* Forgets the index (memory only; the store keeps the records): d is
 * unloaded afterwards. */
void pd_dedup_free(pd_dedup *d);

#endif

/*
 * dedup.h -- the de-dup index of one partition: decisions, the pending
 * record of a flush, garbage collection of stored records, reload.
 *
 * The rule (the exactly-once design in ingest.c depends on it): an event
 * with id E in partition p is a duplicate iff a record (p, E, t0) exists
 * with |ts - t0| <= window and t0 >= clock - window (clock: the
 * partition's newest event time, after this event). The record kept for
 * (p, E) is the latest ACCEPTED occurrence; a duplicate never changes it.
 * Records older than clock - window can never match again, so collecting
 * them cannot change a decision.
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
    int64_t gc_ts;    /* collectable once gc_ts < clock - window */
} pd_dedup_rec;

typedef struct {
    int loaded;
    pd_dedup_slot *slots; /* cap slots, cap a power of two (0 = none) */
    size_t cap, n;
    pd_dedup_rec *recs;   /* stored records, ascending seq, from index head */
    size_t head, nrecs, caprecs;
    pd_buf pend;          /* entries accepted since the last flush (store format) */
    int64_t pend_gc;      /* gc_ts of the pending record (PD_DEDUP_NONE: none) */
    uint32_t flushes;
} pd_dedup;

/* Replaces d's contents with partition p's records in st (horizon = the
 * partition's clock - window: older entries may be left out). On error d
 * is left unloaded (freed). */
int pd_dedup_load(pd_dedup *d, pd_store *st, int32_t p, int64_t horizon, char *err, size_t errlen);
/* The decision for one event of a loaded index: returns 1 when id is a
 * duplicate under the rule (clock = the partition's clock after this
 * event); otherwise records the occurrence (index + pending record) and
 * returns 0. */
int pd_dedup_check(pd_dedup *d, const char *id, size_t idlen, int64_t ts, int64_t clock, int64_t window);
/* The latest accepted ts the index holds for id (PD_DEDUP_NONE if none). */
int64_t pd_dedup_lookup(const pd_dedup *d, const char *id, size_t idlen);
/* At a flush of partition p that checkpoints offset seq (the partition's
 * next offset; ascending across flushes) with clock - window = horizon:
 * adds to sb the deletes of the collectable stored records and the
 * pending record (key seq), and moves the in-memory bookkeeping past them.
 * Does nothing to an index that is not loaded. */
void pd_dedup_stage(pd_dedup *d, pd_store_batch *sb, int32_t p, uint64_t seq, int64_t horizon);
/* Heap bytes the index holds. */
size_t pd_dedup_bytes(const pd_dedup *d);
/* Forgets the index (memory only; the store keeps the records): d is
 * unloaded afterwards. */
void pd_dedup_free(pd_dedup *d);

#endif

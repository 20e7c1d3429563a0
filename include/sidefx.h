/*
 * sidefx.h -- how far a partition's side effects are done, so that a
 * replica promoted to owner performs exactly the DLQ records and re-routes
 * its dead owner had not yet performed (issue 22, hole 3).
 *
 * Side effects (dlq.h) are the owner's: a replica applies the same records
 * to its state without them. Their frontier F_p ("the DLQ records and
 * re-produced events of every record of p below F_p are in Kafka") is a
 * fact about the log, not about a store's state, and is known from:
 *   - the owner itself: it produces them before the commit that moves its
 *     checkpoint past their record and waits for their delivery, and keeps
 *     `done` = the next offset it processed;
 *   - the group's committed offset in Kafka: the owner commits `done` there
 *     after each store commit (replicas never commit), so whatever a new
 *     owner reads there is a lower bound of the old owner's frontier, even
 *     when the old owner was SIGKILLed a moment later;
 *   - this store's side-effect record, written in the SAME WriteBatch as the
 *     partition's checkpoint: `done` and the replica's notes (below).
 * Taking a partition over as owner (pd_sidefx_takeover): F = max(local
 * `done`, group committed offset), each ignored when beyond the partition's
 * end (another incarnation of the topic). With state at S > F the new owner
 * re-reads [F, S) and performs the side effects of those records without
 * applying them again (ingest.c, pd_sidefx_redo); with S < F it applies
 * [S, F) without side effects (someone did them). A crash during the redo
 * only repeats some of it (see "Duplicates").
 *
 * Redo decisions equal the replica's. Whether a record is bad (parse) or
 * misrouted (murmur2 of its user) depends on the record only. The one
 * decision that reads the worker's clock (rectime.h: a record stamped more
 * than max_future_skew ahead) is journaled: a replica that rejects a record
 * for its time adds a note (offset, the clock it decided with) to the
 * side-effect record, and the redo re-runs the check with that clock, so
 * it DLQs exactly what the replica left out of its state, with the same
 * reason and detail. A record without a note is checked with the clock of
 * the redo: the rule is monotone in the clock (rectime.h), so what the
 * replica accepted earlier is accepted again. The record travels with the
 * state in hand-off snapshots (handoff.h, 'f'): a worker that restores a
 * partition from a peer gets that peer's frontier and notes with it (and
 * keeps its own frontier when that is further), so a replica rebuilt from
 * the topic (frontier 0) and then copied still has its side effects
 * redone; before PDSNAP06 (PDSNAP07 adds population records) the copy's frontier was unknown and nothing was
 * redone (`make chaos` lost 3 DLQ records that way). Notes below the
 * owner's published side-effect frontier (membership topic: the fourth
 * element of an owner's "held" entry) are dropped: those side effects are
 * done. (Not below its checkpoint: an owner still redoing has its
 * frontier below its checkpoint, and dies sometimes.)
 * At most PD_SIDEFX_MAX_NOTES are kept per partition; beyond that a note is
 * dropped with an error log and the sidefx_notes_dropped metric (the redo
 * then treats that record as accepted by the time check).
 *
 * Duplicates. Records in [group committed offset, old owner's real
 * frontier) get their side effects twice. The DLQ is at-least-once and its
 * consumers de-duplicate on (source_partition, source_offset); a
 * re-produced event is de-duplicated in its partition by event_id, or by
 * its profiled-origin header (source topic/partition/offset) when it has
 * none, within dedup_window of deliveries -- both copies are produced
 * seconds apart (a commit interval plus the failover), so the event counts
 * once.
 *
 * Record format (value of meta 'x' + partition): version byte 1, done i64
 * BE, note count u32 BE, then per note offset i64 BE + wall_ms i64 BE.
 *
 * Ownership: a pd_sidefx belongs to the ingest thread's partition state;
 * pd_sidefx_free releases its notes.
 */
#ifndef PD_SIDEFX_H
#define PD_SIDEFX_H

#include "config.h"
#include "dlq.h"
#include "schema.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>


typedef struct {
    int64_t offset;   /* record rejected by the replica's time check */
    int64_t wall_ms;  /* the worker's clock it decided with */
} pd_sidefx_note;

typedef struct {
    int64_t done;          /* side effects of records below are done; -1 = unknown */
    pd_sidefx_note *notes; /* ascending offsets, all >= done */
    size_t n, cap;
    int dirty;             /* changed since last staged */
} pd_sidefx;

/* Reads p's side-effect record into x (freed first). None stored: done = -1,
 * no notes, PD_OK. PD_ECORRUPT / PD_EIO with err set otherwise. */
int pd_sidefx_load(pd_sidefx *x, pd_store *st, int32_t p, char *err, size_t errlen);
/* Puts the record into sb when it changed since the last call. */
void pd_sidefx_stage(pd_sidefx *x, pd_store_batch *sb, int32_t p);
/* done = max(done, next); notes below it go. */
void pd_sidefx_advance(pd_sidefx *x, int64_t next);
/* Drops the notes below `below` without moving done. */
void pd_sidefx_prune(pd_sidefx *x, int64_t below);
void pd_sidefx_clear_notes(pd_sidefx *x);
/* Journals a time rejection at `offset` (ascending calls). PD_ERANGE when
 * PD_SIDEFX_MAX_NOTES are kept (nothing added). */
int pd_sidefx_add_note(pd_sidefx *x, int64_t offset, int64_t wall_ms);
void pd_sidefx_free(pd_sidefx *x);

/* The frontier a new owner starts from: max of the local `done` and the
 * group's committed offset (each -1 when unknown), ignoring a value beyond
 * the partition's high watermark hi (>= 0 when known; such an offset
 * belongs to an earlier incarnation of the topic). -1 when neither is
 * known (then the owner does the side effects of whatever it applies). */
int64_t pd_sidefx_takeover(int64_t local_done, int64_t group_committed, int64_t hi);

enum { PD_SIDEFX_NONE = 0, PD_SIDEFX_DLQ = 1, PD_SIDEFX_REROUTE = 2 };
/* Performs the side effects of one record at (p, offset) whose state was
 * already applied (by this worker as a replica, or by a peer whose
 * snapshot this store holds): DLQ when it does not parse or fails the time
 * check -- with the clock of x's note for it, else wall_ms, the worker's
 * clock now --, re-produced to its partition when misrouted, nothing
 * otherwise. Returns PD_SIDEFX_*. The order of the checks is
 * pd_ingest_record's. */
int pd_sidefx_redo(const pd_sidefx *x, pd_dlq *d, const pd_schema *s, const pd_config *cfg, int32_t nparts,
                   int32_t p, int64_t offset, int64_t rec_ts, int rec_ts_type, const void *key, size_t keylen,
                   const void *val, size_t vallen, int64_t wall_ms);

#endif

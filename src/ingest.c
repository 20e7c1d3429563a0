/*
 * ingest.c -- the exactly-once ingestion loop: record admission, the flush
 * and what it publishes, the partition lifecycle (own, replicate, restore,
 * release, clean up), the rebalance callback and the consume loop with its
 * fetch wake-ups. Its parts live in their own modules: the batch (batch.c),
 * the de-dup index (dedup.c), the committer thread and the batch hand-over
 * (committer.c), the DLQ / misroute producer (dlq.c), Kafka client
 * configuration (kafka.c).
 *
 * Data flow (the ingest thread, then the committer thread):
 *   consume batch -> for each record: parse + validate (event.c), route check
 *   (murmur2), retention check, de-dup check, append to the batch's event
 *   log under its (partition, day, user) entry -> flush: ONE WriteBatch with,
 *   per partition, one de-dup record of the ids accepted since the last
 *   flush (and deletes of expired ones) and, for every partition touched,
 *   its next input offset and event-time clock; handed to the committer,
 *   which adds the profile deltas (RocksDB merge operands, built from the
 *   log) and writes it (see "committing").
 *
 * Why this is exactly-once under kill -9 at any point:
 *   - The store is the source of truth for "what input has been applied":
 *     the checkpoint of partition p is written in the same WriteBatch as the
 *     state derived from the records before it. RocksDB applies a WriteBatch
 *     atomically (WAL), so after a crash the state equals the fold of the
 *     input up to the checkpoint, and consumption restarts exactly there.
 *   - Records below the checkpoint (redelivered after a rebalance or seek)
 *     are skipped by offset comparison.
 *   - Kafka-committed offsets are written after the store commit and used
 *     only when the store has no checkpoint (first start) and for lag
 *     monitoring.
 *   - Side effects on Kafka (DLQ records, re-produced misrouted events) are
 *     produced before the commit that moves the checkpoint past their
 *     source record, and the flush waits for their delivery (dlq.h). A crash
 *     in between re-produces them: the DLQ is at-least-once (consumers of
 *     the DLQ key on source partition/offset headers); re-produced events
 *     are made exact by de-dup on event_id, or on the "profiled-origin"
 *     header (source partition/offset) for events without an event_id.
 *
 * Erasure records (erase.h: header "profiled-control") are not events: at
 * their position the user's events still in the batch are dropped and the
 * commit deletes the user's stored days before the batch's merges (batch.h);
 * a malformed one goes to the DLQ. Owners, replicas and replays see them at
 * the same offsets, so they erase the same state.
 *
 * Determinism: every decision uses only the input log -- event time, the
 * Kafka record timestamp, the partition's clock (the newest event time
 * seen in that partition, checkpointed with the offset), the de-dup clock
 * -- with one bounded exception, the future bound below. Replaying a
 * partition from any checkpoint gives the same state.
 *
 * Future bound (rectime.h has the rule and its determinism argument): one
 * record must not move the partition clock far ahead, or retention drops
 * every day. A CreateTime record timestamp (forgeable) more than
 * max_future_skew after the worker's clock -> DLQ "future_timestamp"; a ts
 * more than max_future_skew after the bound (LogAppendTime, else the
 * earlier of record timestamp and worker clock) -> "future_ts". Only
 * records that broke the skew depend on the clock (wall_ms: read per
 * consumed batch, and again before a rejection is final).
 *
 * De-dup rule (dedup.h, where its index, records and garbage collection
 * are described): the window is measured on DELIVERIES (the record
 * timestamp, bounded as above; event time for records without one), not
 * on event time, so a client's retry of days-old events counts once. With
 * C_p the newest delivery time of p's accepted events with an id and
 * C' = max(C_p, r) for this record, event_id E is a duplicate iff p's
 * index holds E at d0 >= C' - dedup_window. Entries below
 * C_p - dedup_window can never match again, so garbage-collecting them
 * cannot change results. The entry kept for (p, E) is its latest accepted
 * delivery.
 *
 * Retention rule: an event whose day is before
 * day(clock_p) - retention_days + 1 is dropped (counted). Whole day column
 * families are dropped when older than that floor for every partition that
 * has a checkpoint in this store (the minimum clock), so a partition whose
 * state is stale never loses days it would still count.
 *
 * Partition state other threads read (pd_partstate, worker.h) is a copy of
 * the ingest thread's private part_priv, written only by part_publish.
 */
#include "ingest_int.h"

#include "admit.h"
#include "erase.h"
#include "event.h"
#include "kafka.h"
#include "members.h"
#include "profile.h"
#include "quarantine.h"
#include "rectime.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>


/* ---- record admission ---- */

static int64_t floor_day(pd_ingest *ig, int64_t clock_ms)
{
    const pd_admit_rules r = {&ig->w->tz, ig->cfg->retention_days, ig->cfg->dedup_window_ms};
    return pd_admit_floor_day(&r, clock_ms);
}

void pd_ingest_set_wall_clock(pd_ingest *ig, int64_t (*now_ms)(void))
{
    ig->wall_fn = now_ms ? now_ms : pd_now_ms;
    ig->wall_ms = ig->wall_fn();
}

static void record(pd_ingest *ig, int32_t p, int64_t offset, int64_t rec_ts, int rec_ts_type, const void *key,
                   size_t keylen, const void *val, size_t vallen, const char *origin, size_t originlen,
                   const char *control, size_t controllen);

void pd_ingest_record(pd_ingest *ig, int32_t p, int64_t offset, int64_t rec_ts, int rec_ts_type, const void *key,
                      size_t keylen, const void *val, size_t vallen, const char *origin, size_t originlen)
{
    record(ig, p, offset, rec_ts, rec_ts_type, key, keylen, val, vallen, origin, originlen, NULL, 0);
}

void pd_ingest_control(pd_ingest *ig, int32_t p, int64_t offset, int64_t rec_ts, const void *key, size_t keylen,
                       const void *val, size_t vallen, const char *kind, size_t kindlen)
{
    record(ig, p, offset, rec_ts, 0, key, keylen, val, vallen, NULL, 0, kind ? kind : "", kind ? kindlen : 0);
}

/* A record of the input, or (control != NULL) a control record: an erasure
 * (erase.h), applied to the batch at this position. */
static void record(pd_ingest *ig, int32_t p, int64_t offset, int64_t rec_ts, int rec_ts_type, const void *key,
                   size_t keylen, const void *val, size_t vallen, const char *origin, size_t originlen,
                   const char *control, size_t controllen)
{
    pd_worker *w = ig->w;
    pd_metrics *m = w->metrics;
    if (p < 0 || p >= w->nparts || ig->pp[p].role == ROLE_NONE || ig->pp[p].job || ig->pp[p].backwards) return;
    part_priv *pp = &ig->pp[p];
    /* Side effects on Kafka (DLQ, re-produce) belong to the owner only, and
     * only for records at or beyond the side-effect frontier fx.done (below
     * it someone did them, sidefx.h); a replica computes the same state
     * from the same log without them. */
    const int owner = pp->role == ROLE_OWNER;
    const int fx = owner && offset >= pp->fx.done;
    if (pp->scratch) {
        pp->scratch = 0;
        if (offset > 0) {
            pp->incomplete |= PD_INCOMPLETE_REBUILD;
            part_publish(ig, p);
            pd_warn("partition %d: rebuilt from offset %" PRId64 ": the topic's retention already deleted "
                    "older records, so profiles miss whatever those held",
                    (int)p, offset);
        }
    }
    PD_INC(m->records_in);
    if (pp->next_offset >= 0 && offset < pp->next_offset) {
        if (!fx || pp->fx.done < 0) { /* (an unknown frontier redoes nothing: see sidefx.h) */
            PD_INC(m->events_stale_offset);
            return;
        }
        /* Applied already (as a replica): only the side effects are due.
         * A control record's only possible one is the DLQ record of a
         * malformed erasure; it is never parsed as an event. */
        int did;
        if (control) {
            char user[PD_MAX_USER_ID], cerr[PD_DLQ_MAX_DETAIL];
            size_t ulen = 0;
            int why = pd_erase_parse(control, controllen, key, keylen, val, vallen, p, w->nparts, user, &ulen,
                                     cerr, sizeof cerr);
            did = PD_SIDEFX_NONE;
            if (why != PD_EV_OK) {
                pd_dlq_send(ig->dlq, why, cerr, p, offset, rec_ts, key, keylen, val, vallen);
                did = PD_SIDEFX_DLQ;
            }
        } else {
            did = pd_sidefx_redo(&pp->fx, ig->dlq, w->schema, ig->cfg, w->nparts, p, offset, rec_ts, rec_ts_type,
                                 key, keylen, val, vallen, ig->wall_ms);
        }
        PD_INC(m->sidefx_redo_records);
        if (did == PD_SIDEFX_DLQ) PD_INC(m->sidefx_redo_dlq);
        if (did == PD_SIDEFX_REROUTE) {
            PD_INC(m->sidefx_redo_rerouted);
            PD_INC(m->events_misrouted);
        }
        pd_sidefx_advance(&pp->fx, offset + 1);
        if (pp->fx.done >= pp->next_offset)
            pd_info("partition %d: side effects redone up to offset %" PRId64, (int)p, pp->next_offset);
        ig_mark_dirty(ig, p);
        return;
    }
    if (!pp->dd.loaded) {
        char lerr[256];
        if (pd_dedup_load(&pp->dd, w->store, p, ig->cfg->dedup_window_ms,
                          (uint64_t)ig->cfg->dedup_max_ids, lerr, sizeof lerr) != PD_OK) {
            /* Cannot decide duplicates: stop before consuming anything. */
            pd_error("partition %d: loading the de-dup index failed: %s", (int)p, lerr);
            ig->fatal = 1;
            return;
        }
        /* an imported partition (here, or a peer's snapshot of one that
         * had applied no record of the topic): its first commit rewrites
         * the import's de-dup records, keyed by the import's flush count
         * (dedup.h pd_dedup_adopt, pd_dedup_foreign) */
        if (pp->import_start || pd_dedup_foreign(&pp->dd, pp->next_offset))
            pd_dedup_adopt(&pp->dd, ig->cfg->dedup_window_ms);
    }
    pp->next_offset = offset + 1;
    ig_mark_dirty(ig, p);
    if (control) {
        char user[PD_MAX_USER_ID], cerr[PD_DLQ_MAX_DETAIL];
        size_t ulen = 0;
        int why = pd_erase_parse(control, controllen, key, keylen, val, vallen, p, w->nparts, user, &ulen, cerr,
                                 sizeof cerr);
        if (why != PD_EV_OK) {
            if (fx) pd_dlq_send(ig->dlq, why, cerr, p, offset, rec_ts, key, keylen, val, vallen);
        } else {
            pd_batch_erase(&ig->fill->batch, p, user, ulen);
            PD_INC(m->erasures);
        }
        if (owner) pd_sidefx_advance(&pp->fx, offset + 1);
        part_publish(ig, p);
        return;
    }

    pd_event ev;
    char err[PD_DLQ_MAX_DETAIL];
    int reason = pd_event_parse(&ev, w->schema, val, vallen, (size_t)ig->cfg->max_event_bytes, err, sizeof err);
    if (reason != PD_EV_OK) {
        if (fx) pd_dlq_send(ig->dlq, reason, err, p, offset, rec_ts, key, keylen, val, vallen);
        goto out;
    }
    const int64_t skew = ig->cfg->max_future_skew_ms;
    reason = pd_rectime_check(rec_ts_type, rec_ts, ev.ts_ms, ig->wall_ms, skew, err, sizeof err);
    if (reason != PD_EV_OK && pd_rectime_uses_wall(rec_ts_type)) { /* confirm with a fresh clock */
        ig->wall_ms = ig->wall_fn();
        reason = pd_rectime_check(rec_ts_type, rec_ts, ev.ts_ms, ig->wall_ms, skew, err, sizeof err);
    }
    if (reason != PD_EV_OK) {
        if (fx) {
            pd_dlq_send(ig->dlq, reason, err, p, offset, rec_ts, key, keylen, val, vallen);
        } else if (!owner && pd_sidefx_add_note(&pp->fx, offset, ig->wall_ms) != PD_OK) {
            PD_INC(m->sidefx_notes_dropped);
            pd_error("partition %d offset %" PRId64 ": more than %d records rejected for their time are waiting "
                     "for the owner here; this one's DLQ record is lost if this replica is promoted",
                     (int)p, offset, PD_SIDEFX_MAX_NOTES);
        }
        goto out;
    }
    int32_t want = pd_partition_for(ev.user_id, ev.user_id_len, w->nparts);
    if (want != p) {
        /* The query router would never look here: move it where it belongs.
         * The origin header makes the copy de-duplicable without event_id. */
        if (fx) {
            PD_INC(m->events_misrouted);
            pd_dlq_reproduce(ig->dlq, want, p, offset, ev.user_id, ev.user_id_len, val, vallen);
        }
        goto out;
    }
    const pd_admit_rules rules = {&w->tz, ig->cfg->retention_days, ig->cfg->dedup_window_ms};
    int64_t day;
    int adm = pd_admit(&rules, &pp->clock_ms, &pp->dd, &ev, pd_rectime_delivery(rec_ts_type, rec_ts, ev.ts_ms),
                       origin, originlen, &day);
    if (adm == PD_ADMIT_TOO_OLD) {
        PD_INC(m->events_too_old);
        goto out;
    }
    if (adm == PD_ADMIT_DUPLICATE) {
        PD_INC(m->events_duplicate);
        goto out;
    }
    /* Aggregate into (partition, day, user). */
    pd_batch_add(&ig->fill->batch, p, day, &ev);
    if (ev.n_bad_attrs) PD_ADD(m->attrs_wrong_type, (uint64_t)ev.n_bad_attrs);
    PD_INC(m->events_accepted);
out:
    if (owner) pd_sidefx_advance(&pp->fx, offset + 1);
    pd_event_free(&ev);
    part_publish(ig, p);
}

uint64_t pd_ingest_pending(const pd_ingest *ig) { return ig->fill->batch.events; }


/* ---- retention ---- */

/* Drops day families no partition of this store still needs. The floor is
 * the minimum over every checkpoint in the store, so it can only move when a
 * checkpointed clock crosses a day boundary -- checked here for the
 * partitions just flushed -- or when checkpoints appear or disappear
 * (restores, releases): covered by also running every RETENTION_EVERY_US.
 * Listing the checkpoints on every flush cost a few percent of ingest. */
#define RETENTION_EVERY_US (10 * 1000000LL)
static void apply_retention(pd_ingest *ig);
static void maybe_apply_retention(pd_ingest *ig, int floor_moved)
{
    if (!floor_moved && pd_mono_us() - ig->last_retention_us < RETENTION_EVERY_US) return;
    ig->last_retention_us = pd_mono_us();
    apply_retention(ig);
}

/* Drops day families no partition of this store still needs. */
static void apply_retention(pd_ingest *ig)
{
    pd_checkpoint *cps = NULL;
    int n = 0;
    if (pd_store_list_checkpoints(ig->w->store, &cps, &n) != PD_OK || n == 0) {
        free(cps);
        return;
    }
    int64_t minclock = INT64_MAX;
    for (int i = 0; i < n; i++)
        if (cps[i].clock_ms > 0 && cps[i].clock_ms < minclock) minclock = cps[i].clock_ms;
    free(cps);
    if (minclock == INT64_MAX) return;
    int64_t fl = floor_day(ig, minclock);
    /* Not only when the floor moved: a partition without a checkpoint yet
     * (catching up, restored) is not in the minimum, and its first commits
     * may re-create families below the floor that were already dropped;
     * they go at the next call (a day-map scan when there is nothing). */
    if (fl < ig->last_retention_day) return;
    char err[256];
    int dropped = pd_store_drop_days_before(ig->w->store, fl, err, sizeof err);
    if (dropped < 0) {
        pd_warn("retention: %s", err);
        return;
    }
    ig->last_retention_day = fl;
    if (dropped > 0) {
        char d[11];
        pd_day_format(fl, d);
        pd_info("retention: dropped %d day(s) before %s", dropped, d);
        PD_ADD(ig->w->metrics->days_dropped, (uint64_t)dropped);
    }
}

/* ---- committing: the ingest thread hands over, the committer builds and writes ----
 *
 * A flush, on the ingest thread, puts the de-dup records and checkpoints
 * into the WriteBatch of the batch it filled and hands the slot (batch +
 * WriteBatch) to the committer thread (committer.h), which adds the
 * profile deltas, writes and clears it; meanwhile the ingest thread parses
 * and aggregates the next batch into the other slot. At most one commit is
 * in flight, and a flush first finishes the previous one, so commits land
 * in order and the next batch's folds (store.c) read committed data.
 * Everything the WriteBatch contains is decided by what was handed over,
 * so what reaches the disk is exactly what the synchronous design wrote,
 * and the crash analysis above is unchanged.
 *
 * Finishing a commit (ingest thread) publishes what it made durable: the
 * committed offsets captured at hand-over, catch-up, Kafka's committed
 * offsets, metrics, retention. The in-memory de-dup bookkeeping is updated
 * at hand-over; so if building or writing fails the worker stops
 * (ig->fatal): memory no longer matches the store, and a restart resumes
 * from the store's checkpoint, which is exact. Whoever reads checkpoints to
 * act on them or changes partition roles (rebalances, restores, replica
 * changes, cleanup before it deletes) finishes the in-flight commit first.
 *
 * Ownership: ig->fill is the ingest thread's; ig->spare too, except that
 * it is NULL from the hand-over until the commit is collected, while the
 * committer holds that slot. */

/* Completes the commit in flight, if any: waits for it when `wait`, else
 * returns PD_EAGAIN while it runs. Returns the commit's result. */
static int flush_finish(pd_ingest *ig, int wait, char *err, size_t errlen)
{
    pd_worker *w = ig->w;
    if (!commit_inflight(ig)) return PD_OK;
    uint64_t writes = 0;
    char cerr[256];
    int rc = pd_committer_collect(ig->cm, wait, &ig->spare, &writes, cerr, sizeof cerr);
    if (rc == PD_EAGAIN && commit_inflight(ig)) return PD_EAGAIN; /* still running */
    if (rc) {
        PD_INC(w->metrics->flush_errors);
        if (rc == PD_ECORRUPT) pd_quarantine_found(w, -1, cerr); /* (a fold read a damaged block) */
        ig->fatal = 1; /* see above: restart from the store's checkpoint */
        return pd_seterr(err, errlen, rc, "commit failed (the worker stops; a restart resumes from the "
                         "last checkpoint): %s", cerr);
    }
    /* Committed: publish progress. */
    PD_INC(w->metrics->flushes);
    pd_hist_observe(&w->metrics->batch_events, (double)ig->cm_events);
    PD_ADD(w->metrics->store_writes, writes);
    atomic_store_explicit(&w->metrics->store_folds,
                          pd_store_batch_folds(ig->fill->sb) + pd_store_batch_folds(ig->spare->sb),
                          memory_order_relaxed);
    uint64_t ddb = 0, ddn = 0, dde = 0;
    int64_t ddw = -1;
    for (int32_t p = 0; p < w->nparts; p++) {
        pd_dedup *dd = &ig->pp[p].dd;
        ddb += pd_dedup_bytes(dd);
        ddn += dd->n;
        dde += dd->evicted;
        dd->evicted = 0;
        if (dd->loaded) {
            int64_t ew = pd_dedup_effective_window(dd, ig->cfg->dedup_window_ms);
            ddw = ddw < 0 ? ew : PD_MIN(ddw, ew);
        }
    }
    atomic_store_explicit(&w->metrics->dedup_bytes, ddb, memory_order_relaxed);
    atomic_store_explicit(&w->metrics->dedup_entries, ddn, memory_order_relaxed);
    atomic_store_explicit(&w->metrics->dedup_effective_window_ms, ddw < 0 ? ig->cfg->dedup_window_ms : ddw,
                          memory_order_relaxed);
    if (dde) PD_ADD(w->metrics->dedup_evictions, dde);
    rd_kafka_topic_partition_list_t *offs =
        ig->consumer && ig->cm_nparts ? rd_kafka_topic_partition_list_new((int)ig->cm_nparts) : NULL;
    for (size_t i = 0; i < ig->cm_nparts; i++) {
        const int32_t p = ig->cm_parts[i].p;
        const int64_t off = ig->cm_parts[i].next_offset;
        part_priv *pp = &ig->pp[p];
        pp->committed = off;
        /* Owners only (a replica's position says nothing about side
         * effects), and the side-effect frontier: a new owner takes what is
         * committed here as done (sidefx.h). Published with the rest. */
        const int64_t fxd = ig->cm_parts[i].fx_done;
        if (fxd >= 0 && pp->role == ROLE_OWNER) pp->fx_durable = fxd;
        const int caught_up = pp->catchup_to && off >= pp->catchup_to;
        if (caught_up) pp->catchup_to = 0;
        part_publish(ig, p);
        if (caught_up) {
            pd_info("partition %d: caught up at offset %" PRId64 ", serving it", (int)p, off);
            if (w->members) pd_members_publish(w->members);
        }
        if (offs && fxd >= 0) rd_kafka_topic_partition_list_add(offs, ig->cfg->topic, p)->offset = fxd;
    }
    if (offs) {
        /* For lag monitoring and the next owner's side-effect frontier;
         * the store is the source of truth for state. Synchronous when
         * partitions are being handed over, so the next owner reads it. */
        if (offs->cnt) rd_kafka_commit(ig->consumer, offs, !ig->commit_sync);
        rd_kafka_topic_partition_list_destroy(offs);
    }
    ig->cm_nparts = 0;
    pd_hist_observe(&w->metrics->flush_seconds, (double)(pd_mono_us() - ig->cm_t0_us) / 1e6);
    maybe_apply_retention(ig, ig->cm_floor_moved);
    return PD_OK;
}

/* Hands the current batch to the committer (after finishing the previous
 * commit). On an error before the hand-over nothing has changed and the
 * batch is kept for the next attempt. */
static int flush_start(pd_ingest *ig, char *err, size_t errlen)
{
    pd_worker *w = ig->w;
    int rc = flush_finish(ig, 1, err, errlen);
    if (rc) return rc;
    /* After a failed commit the de-dup bookkeeping and offsets are past
     * events that were never written: another commit (the final flush of a
     * shutdown too) would checkpoint past them. Only a restart, from the
     * store's checkpoint, is exact. */
    if (ig->fatal)
        return pd_seterr(err, errlen, PD_ERR, "not committing: the worker stopped after an earlier failure "
                         "(a restart resumes from the last checkpoint)");
    int any = 0;
    for (int32_t p = 0; p < w->nparts; p++) any |= ig->pp[p].dirty;
    if (!any) {
        ig->dirty_since_us = 0;
        return PD_OK;
    }
    const int64_t t0 = pd_mono_us();
    pd_store_batch *sb = ig->fill->sb;
    /* 1. Side effects first: everything produced on behalf of the records
     *    being checkpointed must be in Kafka before the checkpoint moves. */
    rc = pd_dlq_wait(ig->dlq);
    if (rc) return pd_seterr(err, errlen, rc, "DLQ/misroute records not delivered; batch not committed");
    /* 2. One WriteBatch: de-dup records and checkpoints here, the deltas
     *    on the committer. From here on nothing fails: capture what the
     *    commit will make durable and move the in-memory de-dup
     *    bookkeeping forward. */
    if (ig->cm_capparts < (size_t)w->nparts) {
        ig->cm_capparts = (size_t)w->nparts;
        free(ig->cm_parts);
        ig->cm_parts = pd_malloc(ig->cm_capparts * sizeof *ig->cm_parts);
    }
    ig->cm_nparts = 0;
    ig->cm_floor_moved = 0;
    for (int32_t p = 0; p < w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        if (!pp->dirty) continue;
        pd_dedup_stage(&pp->dd, sb, p, (uint64_t)pp->next_offset, ig->cfg->dedup_window_ms);
        pd_store_batch_set_checkpoint(sb, p, pp->next_offset, pp->clock_ms);
        if (pp->import_start && pp->dd.loaded && !pp->dd.adopt) {
            /* imported: the start offset is in the checkpoint from now on,
             * and the import's de-dup records were rewritten above */
            pd_store_batch_clear_start_time(sb, p);
            pp->import_start = 0;
        } else if (pp->import_start == 2) {
            /* resolved, no record applied yet: the checkpoint holds the
             * start offset from now on (store.h PD_START_RESOLVED) */
            pd_store_batch_set_start_time(sb, p, PD_START_RESOLVED);
            pp->import_start = 1;
        }
        pd_sidefx_stage(&pp->fx, sb, p); /* the side-effect frontier and notes: same WriteBatch */
        /* floor_seen: the floor of the clock this commit checkpoints */
        if (pp->clock_ms > 0 && floor_day(ig, pp->clock_ms) != pp->floor_seen) {
            pp->floor_seen = floor_day(ig, pp->clock_ms);
            ig->cm_floor_moved = 1;
        }
        ig->cm_parts[ig->cm_nparts++] =
            (commit_part){p, pp->next_offset, pp->role == ROLE_OWNER ? pp->fx.done : -1};
        pp->dirty = 0;
    }
    ig->cm_events = ig->fill->batch.events;
    pd_batch_publish(&ig->fill->batch);
    ig->cm_t0_us = t0;
    ig->last_flush_us = t0;
    ig->dirty_since_us = 0;
    /* 3. Deltas and the write on the committer thread; the ingest thread
     *    goes on with the spare slot. */
    pd_committer_submit(ig->cm, &ig->fill);
    ig->fill = ig->spare;
    ig->spare = NULL;
    return PD_OK;
}

int pd_ingest_flush_async(pd_ingest *ig, char *err, size_t errlen)
{
    return flush_start(ig, err, errlen);
}

int pd_ingest_flush(pd_ingest *ig, char *err, size_t errlen)
{
    int rc = flush_start(ig, err, errlen);
    if (rc) return rc;
    return flush_finish(ig, 1, err, errlen);
}

void ig_settle(pd_ingest *ig)
{
    char err[512];
    if (flush_finish(ig, 1, err, sizeof err) != PD_OK) pd_error("%s", err);
}

/* (The in-flight commit is settled first. The de-dup index of those
 * partitions holds uncommitted entries too, so it goes as well.) */
void ig_batch_drop_parts(pd_ingest *ig, const char *only_parts)
{
    pd_batch_drop_parts(&ig->fill->batch, only_parts);
    for (int32_t p = 0; p < ig->w->nparts; p++)
        if (only_parts[p]) pd_dedup_free(&ig->pp[p].dd);
}

/* ---- the disk (diskguard.h: why the worker must stop writing first) ----
 *
 * Five times a second the loop measures the data directory's free space
 * against disk_min_free_mb and asks whether the committer is retrying a
 * failed write (committer.h: a disk filled faster than the floor could
 * catch it). Either pauses consumption: every assigned partition of both
 * consumers is paused (again at each check, so partitions assigned or
 * resumed meanwhile are paused too). Nothing new is read, so nothing new
 * is committed: only the batch already read (at most one poll) goes on
 * to its commit, inside the floor's headroom -- unless a write is being
 * retried, then no flush starts at all (it would wait behind it). The
 * retried write is the same WriteBatch (state, de-dup records and offsets
 * together), so no offset moves without its state and nothing is applied
 * twice. No snapshot is fetched, and one already fetched is applied only
 * after the pause. Serving is untouched; /readyz says degraded (disk_low) and
 * profiled_disk_low{reason} is 1. Once both clear, every partition
 * resumes from its next offset (records fetched before the pause were
 * dropped by librdkafka and are read again). */
static void disk_watch(pd_ingest *ig, int64_t now)
{
    pd_worker *w = ig->w;
    if (now - ig->last_disk_us < 200000) return;
    ig->last_disk_us = now;
    char err[256];
    uint64_t free_b = 0;
    if (pd_disk_free(ig->cfg->data_dir, &free_b, err, sizeof err) == PD_OK) {
        atomic_store(&w->disk_free_bytes, free_b);
        if (pd_diskguard_update(&ig->dg, free_b)) {
            if (ig->dg.low)
                pd_error("data directory: %.1f MiB free, below disk_min_free_mb (%lld MiB): not consuming or "
                         "committing until %.1f MiB are free; serving continues",
                         (double)free_b / 1048576.0, (long long)ig->cfg->disk_min_free_mb,
                         (double)ig->dg.resume_at / 1048576.0);
            else
                pd_info("data directory: %.1f MiB free again", (double)free_b / 1048576.0);
        }
    }
    char serr[256] = "";
    const int stalled = pd_committer_stalled(ig->cm, serr, sizeof serr);
    atomic_store(&w->metrics->store_write_failures, pd_committer_write_failures(ig->cm));
    const int bits = (ig->dg.low ? PD_DISK_LOW_FLOOR : 0) | (stalled ? PD_DISK_LOW_WRITES : 0);
    atomic_store(&w->disk_low, bits);
    if (bits) {
        if (!ig->disk_paused) {
            ig->disk_paused = 1;
            PD_INC(w->metrics->disk_pauses);
            pd_warn("ingestion paused for the disk (%s): partitions paused, state still served",
                    ig->dg.low ? "free space below disk_min_free_mb" : "store writes failing");
        }
        ig_pause_consumption(ig, 1);
    } else if (ig->disk_paused) {
        ig->disk_paused = 0;
        pd_info("ingestion resumes: partitions resumed from their next offsets");
        ig_pause_consumption(ig, 0);
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    pd_ingest *ig = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) atomic_store(&ig->w->kafka_up, 0);
    if (rd_kafka_fatal_error(rk, NULL, 0)) ig->fatal = 1;
    pd_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

void pd_ingest_set_population(pd_ingest *ig, int on)
{
    for (int i = 0; i < 2; i++) ig->slots[i].batch.population = on ? 1 : 0;
}

int pd_ingest_new(pd_ingest **out, pd_worker *w, int kafka, char *err, size_t errlen)
{
    pd_ingest *ig = pd_calloc(1, sizeof *ig);
    int offline = 0; /* Kafka unreachable at start: serve the local state (hold_local) */
    ig->w = w;
    ig->cfg = w->cfg;
    ig->last_retention_day = INT64_MIN;
    pd_ingest_set_wall_clock(ig, NULL);
    for (int i = 0; i < 2; i++) {
        pd_batch_init(&ig->slots[i].batch, w->metrics ? &w->metrics->batch_bytes[i] : NULL);
        ig->slots[i].sb = pd_store_batch_new(w->store);
        ig->slots[i].owner = PD_SLOT_INGEST;
    }
    ig->fill = &ig->slots[0];
    ig->spare = &ig->slots[1];
    char e2[512];
    int rc = pd_committer_start(&ig->cm, w->store, w->schema, ig->cfg->ingest_nice, err, errlen);
    if (rc == PD_OK) pd_committer_set_retry(ig->cm, 1); /* a full disk: see "the disk" */
    pd_diskguard_init(&ig->dg, (uint64_t)ig->cfg->disk_min_free_mb << 20);
    if (rc) goto fail;
    /* Producer for the DLQ and misrouted events (kafka mode). */
    if ((rc = pd_dlq_new(&ig->dlq, w->cfg, w->metrics, &w->stop, kafka, err, errlen))) goto fail;
    if (kafka) {
        const pd_config *cfg = w->cfg;
        /* Consumer (group member, cooperative-sticky). */
        char sess[32], hb[32];
        snprintf(sess, sizeof sess, "%" PRId64, cfg->session_timeout_ms);
        snprintf(hb, sizeof hb, "%" PRId64, PD_MAX(cfg->session_timeout_ms / 4, 500));
        const char *const group_extra[] = {"partition.assignment.strategy", "cooperative-sticky",
                                           "session.timeout.ms", sess, "heartbeat.interval.ms", hb, NULL};
        /* auto.offset.reset=error: a position out of the topic's range is
         * reported, never silently moved (offsets.c); where a partition
         * without a checkpoint starts (auto_offset_reset) is given as a
         * logical offset at assignment. */
        rd_kafka_conf_t *cc = pd_kafka_conf_consumer(cfg, cfg->group, "error", group_extra, ig,
                                                     error_cb, err, errlen);
        if (!cc) { rc = PD_EINVAL; goto fail; }
        rd_kafka_conf_set_rebalance_cb(cc, ig_rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(cc, ig_commit_cb);
        ig->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e2, sizeof e2);
        if (!ig->consumer) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "consumer: %s", e2);
            goto fail;
        }
        /* With the partition count recorded in the store, a worker started
         * while Kafka is unreachable serves its local state (stale) after
         * a few seconds instead of waiting: see hold_local() */
        int32_t n = 0, known = 0;
        const int have_known = pd_store_get_partitions(w->store, &known) == PD_OK;
        rc = pd_kafka_topic_partitions(ig->consumer, cfg->topic, have_known ? 3 : 50, &w->stop, &n, err, errlen);
        if (rc == PD_EAGAIN && have_known && !w->stop) {
            pd_warn("Kafka unreachable (%s): serving the local state of the %d partitions of %s, stale, until "
                    "it answers", err, known, cfg->topic);
            n = known;
            offline = 1;
            rc = PD_OK;
        }
        if (rc) goto fail;
        if (!offline && (!have_known || n != known)) {
            if (have_known)
                pd_warn("topic %s now has %d partitions (%d recorded here before)", cfg->topic, n, known);
            if (pd_store_set_partitions(w->store, n, e2, sizeof e2) != PD_OK) pd_warn("%s", e2);
        }
        if (n > cfg->max_partitions) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "topic '%s' has %d partitions, more than max_partitions %" PRId64,
                           cfg->topic, n, cfg->max_partitions);
            goto fail;
        }
        w->nparts = n;
        w->parts = pd_partstates_new(n);
        rd_kafka_poll_set_consumer(ig->consumer);
        ig->cq = rd_kafka_queue_get_consumer(ig->consumer);
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, cfg->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t ke = rd_kafka_subscribe(ig->consumer, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        if (ke) {
            rc = pd_seterr(err, errlen, PD_EIO, "subscribe %s: %s", cfg->topic, rd_kafka_err2str(ke));
            goto fail;
        }
        if (cfg->replicas > 0) {
            /* Replicas: a second consumer in assign mode (no group), never
             * committing; its offsets live in the store like the owner's. */
            char gid[400];
            snprintf(gid, sizeof gid, "%s.replica.%s", cfg->group, cfg->id);
            rd_kafka_conf_t *rc2 = pd_kafka_conf_consumer(cfg, gid, "error", NULL, ig, error_cb, err, errlen);
            if (!rc2) { rc = PD_EINVAL; goto fail; }
            ig->rconsumer = rd_kafka_new(RD_KAFKA_CONSUMER, rc2, e2, sizeof e2);
            if (!ig->rconsumer) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "replica consumer: %s", e2);
                goto fail;
            }
            rd_kafka_poll_set_consumer(ig->rconsumer);
            ig->rq = rd_kafka_queue_get_consumer(ig->rconsumer);
        }
        atomic_store(&w->kafka_up, !offline);
        pd_info("consuming %s (%d partitions) in group %s", cfg->topic, n, cfg->group);
    }
    pd_assert(w->nparts > 0);
    ig->pp = pd_calloc((size_t)w->nparts, sizeof *ig->pp);
    for (int32_t p = 0; p < w->nparts; p++) {
        ig->pp[p].next_offset = -1;
        ig->pp[p].committed = -1;
        ig->pp[p].high_watermark = -1;
        ig->pp[p].group_committed = -1;
        ig->pp[p].fx_durable = -1;
        ig->pp[p].group_acked = -1;
        ig->pp[p].fx.done = -1;
    }
    if (offline) ig_hold_local(ig);
    *out = ig;
    return PD_OK;
fail:
    ig->w->stop = 0;
    pd_ingest_free(ig);
    return rc ? rc : PD_ERR;
}

static const char *origin_header(const rd_kafka_message_t *m, size_t *len)
{
    rd_kafka_headers_t *h;
    const void *v;
    size_t n;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    if (rd_kafka_header_get_last(h, "profiled-origin", &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    *len = n;
    return v;
}

/* The record's control header (erase.h), or NULL for an event. */
static const char *control_header(const rd_kafka_message_t *m, size_t *len)
{
    rd_kafka_headers_t *h;
    const void *v;
    size_t n;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    if (rd_kafka_header_get_last(h, PD_CONTROL_HEADER, &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    *len = n;
    return v ? v : "";
}

/* Feeds consumed records of partitions held in `role` (the owner's group
 * consumer or the replica consumer) to pd_ingest_record and destroys every
 * message (ownership of msgs[0..n) passes here). Records of partitions in
 * another role -- in flight across a role change -- are dropped unapplied;
 * the consumer that now holds the partition reads them again. */
static void handle_messages(pd_ingest *ig, rd_kafka_message_t **msgs, ssize_t n, int role)
{
    pd_worker *w = ig->w;
    if (n > 0) ig->wall_ms = ig->wall_fn();
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && m->rkt && m->partition >= 0 &&
            m->partition < w->nparts && ig->pp[m->partition].role == role &&
            strcmp(rd_kafka_topic_name(m->rkt), ig->cfg->topic) == 0) {
            /* auto.offset.reset=error: librdkafka stopped the partition
             * instead of moving it; decide in the loop ("offsets") */
            pd_warn("partition %d: %s", (int)m->partition, rd_kafka_message_errstr(m));
            ig->pp[m->partition].oor_at_us = pd_mono_us();
            ig->oor_pending = 1;
        } else if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) pd_warn("consume: %s", rd_kafka_message_errstr(m));
        } else if (m->partition >= 0 && m->partition < w->nparts && ig->pp[m->partition].role == role &&
                   rd_kafka_topic_name(m->rkt) && strcmp(rd_kafka_topic_name(m->rkt), ig->cfg->topic) == 0) {
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            size_t olen = 0;
            const char *origin = origin_header(m, &olen);
            const int none = tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
            size_t clen = 0;
            const char *control = control_header(m, &clen);
            if (control)
                pd_ingest_control(ig, m->partition, m->offset, none ? -1 : ts, m->key, m->key_len, m->payload,
                                  m->len, control, clen);
            else
                pd_ingest_record(ig, m->partition, m->offset, none ? -1 : ts, (int)tt, m->key, m->key_len,
                                 m->payload, m->len, origin, olen);
            if (role == ROLE_OWNER) atomic_store(&w->kafka_up, 1);
        }
        rd_kafka_message_destroy(m);
    }
}

/* The dirty batch (dirty_since_us != 0) is due commit_interval_ms after
 * its first record. It may go early -- once the input is drained, so a
 * worker that keeps up makes events visible within about one fetch while
 * one that does not still commits whole batches -- from the returned time
 * on: commit_min_interval_ms after the previous hand-over, when the
 * committer is idle; INT64_MAX when no early commit is possible. */
static int64_t early_flush_us(const pd_ingest *ig)
{
    if (commit_inflight(ig) || ig->cfg->commit_min_interval_ms >= ig->cfg->commit_interval_ms) return INT64_MAX;
    return ig->last_flush_us + ig->cfg->commit_min_interval_ms * 1000;
}

int pd_ingest_run(pd_ingest *ig)
{
    pd_worker *w = ig->w;
    enum { NB = 1024 };
    rd_kafka_message_t *msgs[NB];
    char err[512];
    int backoff_ms = 0;
    while (!w->stop && !ig->fatal) {
        if (pd_quarantine_restart_due(w)) {
            /* quarantine.h: no final flush into a store that is thrown
             * away; main() restarts the worker after the shutdown */
            w->stop = 2;
            break;
        }
        int64_t now = pd_mono_us();
        int timeout = ig->rq ? 10 : 100;
        if (ig->dirty_since_us) {
            int64_t at = PD_MIN(ig->dirty_since_us + ig->cfg->commit_interval_ms * 1000, early_flush_us(ig));
            int64_t left = at - now;
            timeout = left <= 0 ? 0 : (int)PD_MIN(left / 1000 + 1, timeout);
            /* the commit in flight may end any moment and make an early one possible */
            if (commit_inflight(ig)) timeout = PD_MIN(timeout, 5);
        }
        /* A batch call returns when the batch is full or the timeout ends,
         * so the timeout is kept short: it bounds the latency it adds. */
        ssize_t n = rd_kafka_consume_batch_queue(ig->cq, PD_MIN(timeout, 20), msgs, NB);
        handle_messages(ig, msgs, n, ROLE_OWNER);
        int drained = n < NB; /* the queue ran dry (or the timeout ended) before NB records */
        if (n > 0) ig_kick_reset(ig, ROLE_OWNER);
        else if (!ig->disk_paused) ig_wake_fetcher(ig, ig->consumer, ROLE_OWNER, pd_mono_us());
        if (ig->rq) {
            ssize_t nr = rd_kafka_consume_batch_queue(ig->rq, 0, msgs, NB);
            handle_messages(ig, msgs, nr, ROLE_REPLICA);
            drained &= nr < NB;
            if (nr > 0) ig_kick_reset(ig, ROLE_REPLICA);
            else if (!ig->disk_paused) ig_wake_fetcher(ig, ig->rconsumer, ROLE_REPLICA, pd_mono_us());
        }
        pd_dlq_poll(ig->dlq);
        if (!ig->disk_paused) ig_reap_restores(ig); /* (applying a snapshot writes: "the disk") */
        if (ig->oor_pending) ig_resolve_out_of_range(ig);
        now = pd_mono_us();
        disk_watch(ig, now);
        if (now - ig->last_replica_us > 1000000) {
            ig_update_replicas(ig);
            ig->last_replica_us = now;
        }
        if (now - ig->last_cleanup_us > 10000000) {
            ig_cleanup_orphans(ig);
            ig->last_cleanup_us = now;
        }
        if (now - ig->last_trim_us > TRIM_EVERY_US) {
            /* glibc keeps freed memory in its arenas (the free heap gauge
             * grows with the churn of batches, queries and compactions);
             * hand unused pages back so RSS follows what is in use. */
            int64_t t0 = pd_mono_us();
            malloc_trim(0);
            ig->last_trim_us = pd_mono_us();
            pd_hist_observe(&w->metrics->trim_seconds, (double)(ig->last_trim_us - t0) / 1e6);
        }
        /* Publish a finished commit promptly (committed offsets, catch-up). */
        if (commit_inflight(ig) && flush_finish(ig, 0, err, sizeof err) != PD_OK && ig->fatal) {
            pd_error("%s", err);
            break;
        }
        int due = ig->fill->batch.events >= (uint64_t)ig->cfg->batch_max_events ||
                  (ig->dirty_since_us && (now - ig->dirty_since_us >= ig->cfg->commit_interval_ms * 1000 ||
                                          (drained && now >= early_flush_us(ig))));
        /* (a write being retried: a flush would wait behind it; see "the disk") */
        if (due && commit_inflight(ig) && pd_committer_stalled(ig->cm, NULL, 0)) due = 0;
        if (due) {
            if (flush_start(ig, err, sizeof err) != PD_OK) {
                if (ig->fatal) {
                    pd_error("%s", err);
                    break;
                }
                pd_error("flush failed (will retry): %s", err);
                backoff_ms = backoff_ms ? PD_MIN(backoff_ms * 2, 2000) : 50;
                struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            } else {
                backoff_ms = 0;
            }
        }
        if (now - ig->last_wm_us > 1000000) {
            ig_update_watermarks(ig);
            ig_recommit(ig);
            ig->last_wm_us = now;
            if (!atomic_load(&w->store_lost) && pd_store_dir_check(w->store, err, sizeof err) != PD_OK) {
                pd_error("%s: nothing written from now on is durable; not ready (restart the worker)", err);
                atomic_store(&w->store_lost, 1);
            }
        }
    }
    return ig->fatal ? PD_ERR : PD_OK;
}

void pd_ingest_close(pd_ingest *ig)
{
    if (!ig) return;
    char err[512];
    pd_worker *w = ig->w;
    /* A store write being retried (a full disk) gives up: the final flush
     * then fails and a restart resumes from the store's checkpoint. */
    pd_committer_cancel(ig->cm);
    if (ig->pp && w->stop < 2 && pd_ingest_flush(ig, err, sizeof err) != PD_OK)
        pd_error("final flush failed: %s (uncommitted input will be replayed)", err);
    for (int32_t p = 0; ig->pp && p < w->nparts; p++) {
        pd_restore *j = ig->pp[p].job;
        if (!j) continue;
        pd_restore_cancel(j);
        pd_restore_free(j);
        ig->pp[p].job = NULL;
    }
    if (ig->rq) rd_kafka_queue_destroy(ig->rq);
    ig->rq = NULL;
    if (ig->rconsumer) rd_kafka_consumer_close(ig->rconsumer);
    if (ig->cq) rd_kafka_queue_destroy(ig->cq);
    ig->cq = NULL;
    if (ig->consumer) {
        /* Leaves the group; the rebalance callback flushes (nothing left). */
        rd_kafka_consumer_close(ig->consumer);
    }
    pd_dlq_flush(ig->dlq, (int)PD_MIN(ig->cfg->shutdown_timeout_ms, 10000));
    ig->closed = 1;
}

void pd_ingest_take_consumers(pd_ingest *ig, rd_kafka_t **group, rd_kafka_t **replica)
{
    *group = ig ? ig->consumer : NULL;
    *replica = ig ? ig->rconsumer : NULL;
    if (!ig) return;
    pd_assert(ig->closed);
    ig->consumer = ig->rconsumer = NULL;
}

void pd_ingest_free(pd_ingest *ig)
{
    if (!ig) return;
    pd_worker *w = ig->w;
    if (!ig->closed) pd_ingest_close(ig);
    /* (a librdkafka 2.0.2 abort here is turned into a clean exit: kafka.h) */
    pd_kafka_destroy_consumers(ig->rconsumer, ig->consumer);
    pd_dlq_free(ig->dlq);
    pd_committer_stop(ig->cm); /* after it, every slot is back with its storage */
    for (int i = 0; i < 2; i++) {
        pd_batch_free(&ig->slots[i].batch);
        if (ig->slots[i].sb) pd_store_batch_free(ig->slots[i].sb);
    }
    for (int32_t p = 0; ig->pp && p < w->nparts; p++) {
        pd_dedup_free(&ig->pp[p].dd);
        pd_sidefx_free(&ig->pp[p].fx);
    }
    free(ig->cm_parts);
    free(ig->pp);
    free(ig);
}

/*
 * partition.c -- the ingest thread's partition lifecycle (ingest_int.h):
 * how a partition's state is obtained when this worker takes it on as
 * owner or replica (warm copy, snapshot from a peer, rebuild from the
 * topic; an imported partition here: its own import, its start resolved
 * and checkpointed at once, a snapshot source like any other from then
 * on), released, restored and cleaned up; replica placement; the
 * rebalance callback; and where a new owner's side effects start
 * (sidefx.h: the furthest of the store's frontier and the group's
 * committed offset, read when the partitions are assigned).
 */
#include "ingest_int.h"

#include "handoff.h"
#include "kafka.h"
#include "members.h"
#include "tsoffset.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- partition lifecycle: own, replicate, restore, release ---- */

static void publish(pd_ingest *ig)
{
    if (ig->w->members) pd_members_publish(ig->w->members);
}

/* Starts consuming p from the beginning of the topic (or the end, with
 * auto_offset_reset=latest): any leftovers without a checkpoint (a partial
 * snapshot import) are deleted first, so nothing is counted twice. */
void ig_start_scratch(pd_ingest *ig, int32_t p)
{
    char err[256];
    part_priv *pp = &ig->pp[p];
    pd_dedup_free(&pp->dd);
    if (pd_store_delete_partition(ig->w->store, p, err, sizeof err) != PD_OK)
        pd_error("partition %d: clearing partial state failed: %s", (int)p, err);
    pp->next_offset = -1;
    pp->clock_ms = 0;
    pp->scratch = strcmp(ig->cfg->auto_offset_reset, "earliest") == 0;
    /* from the beginning: side effects below offset 0 are trivially done;
     * written with the first checkpoint (a replica's too: a snapshot of
     * this state then carries the frontier, sidefx.h) -- without `dirty`
     * it stayed in memory, and a worker restoring from this replica knew
     * no frontier (make chaos, seed 23: 15 DLQ records lost) */
    if (pp->scratch && pp->fx.done < 0) {
        pp->fx.done = 0;
        pp->fx.dirty = 1;
    }
    pd_info("partition %d: no state here or on any live peer: rebuilding from the %s of the topic", (int)p,
            pp->scratch ? "beginning" : "end");
}

/* Partition p is (becoming) this worker's to own: its side-effect frontier
 * is the furthest of what this store knows and what the group committed,
 * ignoring values beyond the topic's end hi (-1 unknown). See sidefx.h. */
static void fx_takeover(pd_ingest *ig, int32_t p, int64_t hi)
{
    part_priv *pp = &ig->pp[p];
    const int64_t was = pp->fx.done;
    pp->fx.done = pd_sidefx_takeover(pp->fx.done, pp->group_committed, hi);
    if (pp->fx.done != was) pp->fx.dirty = 1;
    if (pp->fx.done >= 0) pd_sidefx_prune(&pp->fx, pp->fx.done);
    if (pp->fx.done < 0 && pp->next_offset > 0)
        pd_warn("partition %d: nobody recorded how far the side effects (DLQ records, re-routes) of offsets "
                "below %" PRId64 " were done (no group commit, no side-effect record with the state): they are "
                "not redone, and any an earlier owner missed are lost", (int)p, pp->next_offset);
    if (pp->fx.done >= 0 && pp->next_offset > pp->fx.done)
        pd_info("partition %d: performing the side effects (DLQ, re-routes) of offsets %" PRId64 "..%" PRId64
                " its previous owner had not confirmed (applied here as a replica)",
                (int)p, pp->fx.done, pp->next_offset - 1);
    /* The group may lag what this store knows is done: this worker's last
     * commit to the group failed (fenced after a session timeout) and the
     * partition came back with nothing left to read, or a new group reads
     * an existing store. Only a store commit of p commits the frontier to
     * the group (flush_finish; ig_recommit retries it), so one is made due
     * here: without it the group's offset stayed behind until the next
     * record -- lag reported that is not there, and a later owner redoing
     * side effects already done (test_sidefx, the new group). */
    if (pp->fx.done >= 0 && pp->next_offset >= 0 && pp->fx.done != pp->group_committed) {
        ig_mark_dirty(ig, p);
    }
}

/* A partition that starts far behind the end of the log (rebuilt from the
 * topic, or an old local checkpoint with no better copy anywhere) is not
 * served until it has caught up to the end seen now: a query must never get
 * a silently empty or badly outdated profile from it. */
void ig_set_catchup(pd_ingest *ig, int32_t p)
{
    part_priv *pp = &ig->pp[p];
    pp->catchup_to = 0;
    rd_kafka_t *rk = ig->consumer ? ig->consumer : ig->rconsumer;
    if (!rk) return;
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, ig->cfg->topic, p, &lo, &hi, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (pp->role == ROLE_OWNER) fx_takeover(ig, p, -1);
        return;
    }
    if (pp->role == ROLE_OWNER) fx_takeover(ig, p, hi);
    /* from scratch: nobody can have done side effects the topic no longer has */
    if (pp->next_offset < 0 && pp->fx.done >= 0 && pp->fx.done < lo) pd_sidefx_advance(&pp->fx, lo);
    int64_t from = pp->next_offset >= 0 ? pp->next_offset : lo;
    if (hi - from > ig->cfg->handoff_min_lag || (pp->next_offset < 0 && hi > lo)) {
        pp->catchup_to = hi;
        pd_info("partition %d: catching up from offset %" PRId64 " to %" PRId64 " before serving it", (int)p,
                from, hi);
    }
}

int64_t ig_start_offset(pd_ingest *ig, int32_t p)
{
    const part_priv *pp = &ig->pp[p];
    int64_t o = pp->next_offset;
    /* an owner re-reads from its side-effect frontier (sidefx.h) */
    if (o >= 0 && pp->role == ROLE_OWNER && pp->fx.done >= 0 && pp->fx.done < o) return pp->fx.done;
    if (o >= 0) return o;
    return strcmp(ig->cfg->auto_offset_reset, "earliest") == 0 ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
}

/* An imported partition (store.h "Imported stores"): its start time T
 * becomes the topic's first offset whose record timestamp is at least
 * T - max_future_skew, the end of the topic when no record is that recent
 * (tsoffset.h: Kafka's offsets_for_times answer, checked with the records
 * around it; a scan of record timestamps when the answer is absent or
 * refuted). Every event after T a worker accepts is in such a record
 * (rectime.h: ts <= the record's time + skew), and every record before
 * that offset is stamped earlier, so none is missed; the events at or
 * before T in the records from there on were imported, and the de-dup
 * index (the import's ids) drops them again. The offset is resolved once:
 * a commit made at once (import_start) checkpoints it and replaces T by
 * PD_START_RESOLVED (ingest.c), so a restart, a move or an idle partition
 * continues from the checkpoint (resolving again would skip records
 * appended since, stamped before the target). Returns 0 when p has no start time; 2 with
 * *off set, freshly resolved; 1 with *off the checkpoint, resolved
 * before; -1 when Kafka did not answer (the worker stops: consuming from
 * anywhere else would lose or double-count events; a restart resolves
 * again). */
static int import_resolve(pd_ingest *ig, int32_t p, int64_t *off)
{
    int64_t t;
    if (pd_store_get_start_time(ig->w->store, p, &t) != PD_OK) return 0;
    pd_checkpoint cp;
    if (t == PD_START_RESOLVED && pd_store_get_checkpoint(ig->w->store, p, &cp) == PD_OK) {
        *off = cp.next_offset;
        pd_info("partition %d: imported; its start was resolved to offset %" PRId64 " before: continuing there",
                (int)p, cp.next_offset);
        return 1;
    }
    const int64_t at = t - ig->cfg->max_future_skew_ms;
    pd_tsoff_result r;
    char err[256];
    const int64_t t0 = pd_mono_us();
    const int kafka = ig->consumer || ig->rconsumer; /* (none in replay mode) */
    if (t == PD_START_RESOLVED || !kafka ||
        pd_tsoff_resolve(ig->cfg, ig->cfg->topic, p, at, ig->cfg->import_scan_timeout_ms,
                         &ig->w->stop, &r, err, sizeof err) != PD_OK) {
        pd_error("partition %d: imported; cannot resolve its start time to an offset (%s): stopping, nothing "
                 "consumed (a restart tries again)",
                 (int)p, t == PD_START_RESOLVED ? "no checkpoint" : !kafka ? "no Kafka client" : err);
        ig->fatal = 1;
        return -1;
    }
    *off = r.offset;
    PD_INC(ig->w->metrics->import_resolutions[r.scanned]);
    char ts[40];
    pd_ts_format(t, ts);
    pd_info("partition %d: imported up to %s; continuing from offset %" PRId64
            " (first record stamped at or after %" PRId64 " ms, the import time less max_future_skew; %s%s, "
            "%" PRId64 " record(s) read in %.3f s, offsets %" PRId64 "..%" PRId64 ")",
            (int)p, ts, r.offset, at, r.scanned ? "by scan: " : "Kafka's answer, verified", r.scanned ? r.why : "",
            r.records, (double)(pd_mono_us() - t0) / 1e6, r.lo, r.hi);
    return 2;
}

/* p was imported and its start resolved to off (import_resolve's answer
 * imp > 0): consume from there. A fresh resolution is checkpointed at
 * once, records or not, by a commit made here (the roles are settled: the
 * callers run after ig_settle): only then is the partition published with
 * a checkpoint, so a peer that sees this worker as its holder (a replica
 * being placed, the next owner after a move) gets a snapshot of the
 * archive's state at that offset -- never the refusal of an unresolved
 * store, after which it would rebuild from the topic alone (store.h
 * "Imported stores"). Side effects (DLQ, re-routes) of the records below
 * it are not this store's (the import had none). */
static void import_start(pd_ingest *ig, int32_t p, int imp, int64_t off)
{
    part_priv *pp = &ig->pp[p];
    pp->next_offset = off;
    pp->import_start = imp;
    if (imp != 2) return;
    pd_sidefx_advance(&pp->fx, off);
    ig_mark_dirty(ig, p);
    char err[512];
    if (pd_ingest_flush(ig, err, sizeof err) != PD_OK)
        pd_error("partition %d: checkpointing its resolved start offset failed: %s (the next commit tries again; "
                 "until then no peer gets a snapshot of it)", (int)p, err);
}

/* Decides how partition p gets its state when this worker takes it on in
 * `role` (owner or replica): keep a warm local copy, fetch a snapshot from
 * the best peer, or rebuild from the topic. Returns 1 when a restore job
 * was started (the partition must not be consumed until it completes). */
static int prepare_partition(pd_ingest *ig, int32_t p, int role)
{
    pd_worker *w = ig->w;
    part_priv *pp = &ig->pp[p];
    int was = pp->role;
    pp->role = role;
    pp->orphan_since_ms = 0;
    pp->generation = atomic_load(&w->generation);
    if (pp->job) return 1; /* already fetching (e.g. replica being promoted) */
    if (was != ROLE_NONE && pp->held && role == ROLE_OWNER) {
        /* held through a Kafka outage: possibly far behind, so not served
         * as ready before catching up (and its side-effect frontier) */
        pp->held = 0;
        int64_t ioff;
        const int imp = import_resolve(ig, p, &ioff);
        if (imp > 0) import_start(ig, p, imp, ioff);
        ig_set_catchup(ig, p);
        return 0;
    }
    if (was != ROLE_NONE) { /* warm in memory: continue where it is */
        int64_t lo, hi = -1;
        if (role == ROLE_OWNER && was == ROLE_REPLICA) {
            if (!ig->rconsumer || rd_kafka_get_watermark_offsets(ig->rconsumer, ig->cfg->topic, p, &lo, &hi)) hi = -1;
            fx_takeover(ig, p, hi);
        }
        return 0;
    }
    char ferr[256];
    if (pd_sidefx_load(&pp->fx, w->store, p, ferr, sizeof ferr) != PD_OK) pd_error("%s", ferr);
    pd_checkpoint cp;
    int have = pd_store_get_checkpoint(w->store, p, &cp) == PD_OK;
    int64_t ioff;
    int imp = have ? import_resolve(ig, p, &ioff) : 0;
    if (imp) { /* imported here: its own state, never a peer's (the import replaces it) */
        pp->next_offset = -1;
        pp->clock_ms = cp.clock_ms;
        pp->scratch = 0;
        pp->import_start = 0;
        if (imp > 0) {
            import_start(ig, p, imp, ioff);
            ig_set_catchup(ig, p);
        }
        /* (no hand-off source before its resolved offset is checkpointed) */
        pp->committed = pp->dirty && pp->import_start == 2 ? -1 : pp->next_offset;
        return 0;
    }
    pd_holder hs[8];
    int n = w->members ? pd_members_holders(w->members, p, hs, 8) : 0;
    /* (Not while paused for the disk: a snapshot would fill it. The
     * partition catches up from its local copy or the topic instead once
     * consumption resumes.) */
    if (n > 0 && !ig->disk_paused && (!have || hs[0].next_offset - cp.next_offset > ig->cfg->handoff_min_lag)) {
        if (pd_restore_start(&pp->job, p, ig->cfg, w->schema, w->metrics, hs, n) != PD_OK) {
            pd_error("partition %d: cannot start the restore thread", (int)p);
        } else {
            pd_info("partition %d: %s, fetching a snapshot from %s (offset %" PRId64 ")", (int)p,
                    have ? "local copy is behind" : "no local state", hs[0].id, hs[0].next_offset);
            return 1;
        }
    }
    if (have) {
        pp->next_offset = cp.next_offset;
        pp->clock_ms = cp.clock_ms;
        pp->scratch = 0;
    } else {
        ig_start_scratch(ig, p);
    }
    ig_set_catchup(ig, p); /* (and the side-effect frontier of an owner) */
    pp->committed = pp->next_offset;
    return 0;
}

static void release_partition(pd_ingest *ig, int32_t p)
{
    part_priv *pp = &ig->pp[p];
    pp->role = ROLE_NONE;
    pp->dirty = 0;
    pd_dedup_free(&pp->dd);
    pd_sidefx_free(&pp->fx); /* in the store; loaded again when p comes back */
    pp->group_committed = -1;
    pp->fx_durable = -1;
    pp->group_acked = -1;
    pp->backwards = 0;
    pp->held = 0;
    pp->oor_at_us = 0;
    pp->catchup_to = 0;
    pp->orphan_since_ms = pd_now_ms();
    pp->incomplete = 0;
    pp->import_start = 0; /* (resolved again when it comes back, if still uncommitted) */
    if (pp->job) pd_restore_cancel(pp->job);
    part_publish(ig, p);
}

/* A lost partition stays here as a replica: its state is served (stale)
 * and, with replicas configured, kept warm by the replica consumer once
 * Kafka is back, where replica placement keeps or releases it; without a
 * replica consumer it is only held, and released at the next assignment
 * unless assigned again. What was not committed is gone: offsets and the
 * side-effect frontier are the store's. */
static void keep_as_replica(pd_ingest *ig, int32_t p)
{
    part_priv *pp = &ig->pp[p];
    char err[256];
    pp->role = ROLE_REPLICA;
    pp->held = 1;
    pp->dirty = 0;
    pp->catchup_to = 0;
    pp->oor_at_us = 0;
    pp->group_committed = pp->fx_durable = pp->group_acked = -1;
    if (pd_sidefx_load(&pp->fx, ig->w->store, p, err, sizeof err) != PD_OK) pd_error("%s", err);
    part_publish(ig, p);
}

void ig_hold_local(pd_ingest *ig)
{
    pd_checkpoint *cps = NULL;
    int n = 0;
    if (pd_store_list_checkpoints(ig->w->store, &cps, &n) != PD_OK) return;
    for (int i = 0; i < n; i++) {
        int32_t p = cps[i].partition;
        if (p < 0 || p >= ig->w->nparts) continue;
        part_priv *pp = &ig->pp[p];
        pp->next_offset = pp->committed = cps[i].next_offset;
        pp->clock_ms = cps[i].clock_ms;
        keep_as_replica(ig, p);
    }
    free(cps);
    ig_replica_reassign(ig);
    pd_info("holding %d partition(s) with local state, served stale until Kafka answers", n);
}

int pd_ingest_assign_local(pd_ingest *ig, int32_t p)
{
    if (p < 0 || p >= ig->w->nparts) return PD_EINVAL;
    pd_members *saved = ig->w->members;
    ig->w->members = NULL; /* replay mode: local state only */
    prepare_partition(ig, p, ROLE_OWNER);
    ig->w->members = saved;
    part_publish(ig, p);
    return PD_OK;
}

/* Rebuilds the replica consumer's assignment from the replica partitions
 * that are not restoring. */
void ig_replica_reassign(pd_ingest *ig)
{
    if (!ig->rconsumer) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        if (pp->role != ROLE_REPLICA || pp->job || pp->backwards) continue;
        rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = ig_start_offset(ig, p);
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(ig->rconsumer, l);
    if (e) pd_warn("replica assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Owner partitions: pause / seek+resume through the group consumer. */
void ig_owner_pause(pd_ingest *ig, int32_t p, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = ig_start_offset(ig, p);
    if (pause) {
        rd_kafka_pause_partitions(ig->consumer, l);
    } else {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(ig->consumer, l, 5000);
        if (e) {
            pd_warn("partition %d: seek: %s", (int)p, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        rd_kafka_resume_partitions(ig->consumer, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Pauses (pause = 1) every partition both consumers have assigned, or
 * resumes those that nothing else holds back (a restore, a refused or
 * out-of-range checkpoint), each from its next offset: records fetched
 * before the pause were dropped by librdkafka. Pausing is idempotent; the
 * disk watch (ingest.c) repeats it while the disk is low, so partitions
 * assigned or resumed meanwhile are paused too. */
void ig_pause_consumption(pd_ingest *ig, int pause)
{
    rd_kafka_t *cs[2] = {ig->consumer, ig->rconsumer};
    if (pause) {
        for (int i = 0; i < 2; i++) {
            rd_kafka_topic_partition_list_t *l = NULL;
            if (!cs[i] || rd_kafka_assignment(cs[i], &l) != RD_KAFKA_RESP_ERR_NO_ERROR || !l) continue;
            if (l->cnt) rd_kafka_pause_partitions(cs[i], l);
            rd_kafka_topic_partition_list_destroy(l);
        }
        return;
    }
    for (int32_t p = 0; ig->consumer && p < ig->w->nparts; p++) {
        const part_priv *pp = &ig->pp[p];
        if (pp->role == ROLE_OWNER && !pp->job && !pp->backwards && !pp->oor_at_us) ig_owner_pause(ig, p, 0);
    }
    if (ig->rconsumer) {
        ig_replica_reassign(ig);
        rd_kafka_topic_partition_list_t *l = NULL;
        if (rd_kafka_assignment(ig->rconsumer, &l) == RD_KAFKA_RESP_ERR_NO_ERROR && l) {
            if (l->cnt) rd_kafka_resume_partitions(ig->rconsumer, l);
            rd_kafka_topic_partition_list_destroy(l);
        }
    }
}

/* Called from the loop: completes finished restore jobs. */
void ig_reap_restores(pd_ingest *ig)
{
    pd_worker *w = ig->w;
    char err[512];
    for (int32_t p = 0; p < w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        pd_restore *j = pp->job;
        if (!j || !pd_restore_done(j)) continue;
        pp->job = NULL;
        int role = pp->role;
        if (role == ROLE_NONE || pd_restore_cancelled(j)) {
            pd_restore_free(j);
            part_publish(ig, p);
            continue;
        }
        int ok = 0;
        if (j->rc == PD_OK) {
            /* Nothing of p may be pending in the batch when its range is replaced. */
            if (pd_ingest_flush(ig, err, sizeof err) != PD_OK) pd_warn("flush before restore: %s", err);
            pd_checkpoint cp;
            uint64_t records = 0;
            int64_t t1 = pd_mono_us();
            pd_dedup_free(&pp->dd); /* the partition's range is replaced: reload it */
            if (pd_handoff_apply(w->store, j->path, p, w->schema, pd_config_cluster_token(ig->cfg), &cp, &records, err,
                                 sizeof err) == PD_OK) {
                pp->next_offset = cp.next_offset;
                pp->clock_ms = cp.clock_ms;
                pp->scratch = 0;
                pp->catchup_to = 0;
                /* The state's side-effect record came with it (or none, from
                 * a source that had none): what was known here still holds. */
                const int64_t known = pp->fx.done;
                if (pd_sidefx_load(&pp->fx, w->store, p, err, sizeof err) != PD_OK) pd_error("%s", err);
                if (known > pp->fx.done) pd_sidefx_advance(&pp->fx, known);
                if (role == ROLE_OWNER) fx_takeover(ig, p, -1);
                ok = 1;
                double secs = (double)(pd_mono_us() - j->t0_us) / 1e6;
                /* total = fetch (download + verify) + wait for this loop + apply */
                pd_info("partition %d: restored from %s: %llu bytes, %llu records, offset %" PRId64
                        ", %.3fs (fetch %.3fs, apply %.3fs)",
                        (int)p, j->from, (unsigned long long)j->bytes, (unsigned long long)records, cp.next_offset, secs,
                        (double)(j->t_fetched_us - j->t0_us) / 1e6, (double)(pd_mono_us() - t1) / 1e6);
                PD_INC(w->metrics->restores_ok);
                PD_ADD(w->metrics->restore_bytes, j->bytes);
            } else {
                pd_error("partition %d: applying the snapshot failed: %s", (int)p, err);
            }
        }
        if (!ok) {
            PD_INC(w->metrics->restores_failed);
            pd_warn("partition %d: no usable snapshot (%s)", (int)p, j->err);
            ig_start_scratch(ig, p);
            ig_set_catchup(ig, p);
            PD_INC(w->metrics->rebuilds);
        }
        pd_restore_free(j);
        pp->committed = pp->next_offset;
        part_publish(ig, p);
        if (role == ROLE_OWNER) ig_owner_pause(ig, p, 0);
        else ig_replica_reassign(ig);
        publish(ig);
    }
}

/* Replica placement: a deterministic function of the membership every
 * worker sees. For partition p with owner O, the replicas are the next
 * `replicas` live workers after O in ascending id order (a ring), O
 * excluded. Recomputed every second; frozen while Kafka is unreachable. */
void ig_update_replicas(pd_ingest *ig)
{
    pd_worker *w = ig->w;
    if (!ig->rconsumer || !w->members || !atomic_load(&w->kafka_up)) return;
    enum { MAXM = 256 };
    static char ids[MAXM][130];
    int n = pd_members_alive(w->members, ids, MAXM);
    int k = (int)PD_MIN(ig->cfg->replicas, n - 1);
    int changed = 0;
    for (int32_t p = 0; p < w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        if (pp->role == ROLE_OWNER) continue;
        if (pp->role == ROLE_REPLICA && pp->fx.n) { /* notes the owner has passed are its business */
            pd_holder hs[8];
            int nh = pd_members_holders(w->members, p, hs, 8);
            for (int i = 0; i < nh; i++) /* (not its checkpoint: a redo keeps the frontier below it) */
                if (hs[i].owner && hs[i].fx_done >= 0) pd_sidefx_prune(&pp->fx, hs[i].fx_done);
        }
        pd_owner o;
        if (pd_members_owner(w->members, p, &o) != PD_OK) continue; /* unknown: keep what we do */
        int want = 0;
        if (k > 0) {
            int lo = 0;
            while (lo < n && strcmp(ids[lo], o.id) <= 0) lo++; /* first id after the owner */
            for (int i = 0, picked = 0; i < n && picked < k; i++) {
                const char *id = ids[(lo + i) % n];
                if (strcmp(id, o.id) == 0) continue;
                picked++;
                if (strcmp(id, ig->cfg->id) == 0) want = 1;
            }
        }
        if (want && pp->role == ROLE_NONE) {
            ig_settle(ig); /* roles change (no-op once settled) */
            prepare_partition(ig, p, ROLE_REPLICA);
            part_publish(ig, p);
            changed = 1;
        } else if (!want && pp->role == ROLE_REPLICA) {
            ig_settle(ig);
            release_partition(ig, p);
            changed = 1;
        }
    }
    if (changed) {
        ig_replica_reassign(ig);
        publish(ig);
    }
}

/* Deletes partitions this worker has neither owned nor replicated for
 * cleanup_grace (their checkpoints would also hold back retention). */
void ig_cleanup_orphans(pd_ingest *ig)
{
    pd_checkpoint *cps = NULL;
    int n = 0;
    if (pd_store_list_checkpoints(ig->w->store, &cps, &n) != PD_OK) return;
    int64_t now = pd_now_ms();
    char err[256];
    for (int i = 0; i < n; i++) {
        int32_t p = cps[i].partition;
        if (p < 0 || p >= ig->w->nparts) continue;
        part_priv *pp = &ig->pp[p];
        if (pp->role != ROLE_NONE || pp->job) continue;
        if (!pp->orphan_since_ms) {
            pp->orphan_since_ms = now;
            continue;
        }
        if (now - pp->orphan_since_ms < ig->cfg->cleanup_grace_ms) continue;
        if (pd_ingest_flush(ig, err, sizeof err) != PD_OK) return;
        if (pd_store_delete_partition(ig->w->store, p, err, sizeof err) == PD_OK) {
            pd_info("partition %d: neither owned nor replicated here for %" PRId64 " s: local state deleted",
                    (int)p, ig->cfg->cleanup_grace_ms / 1000);
            pp->orphan_since_ms = 0;
            pp->next_offset = -1;
            pp->clock_ms = 0;
            pp->committed = -1;
            part_publish(ig, p);
            PD_INC(ig->w->metrics->partitions_deleted);
        }
    }
    free(cps);
}

/* Reads the group's committed offsets of the partitions being assigned:
 * the previous owner's side-effect frontier (sidefx.h). Blocking, bounded;
 * a failure leaves them unknown (logged). */
static void group_committed(pd_ingest *ig, rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    for (int i = 0; i < l->cnt; i++) l->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 5000);
    if (e) pd_warn("reading the group's committed offsets failed (%s): a promoted replica redoes side effects "
                   "only from what its own store knows", rd_kafka_err2str(e));
    for (int i = 0; i < l->cnt; i++) {
        int32_t p = l->elems[i].partition;
        if (strcmp(l->elems[i].topic, ig->cfg->topic) != 0 || p < 0 || p >= ig->w->nparts) continue;
        ig->pp[p].group_committed = !e && !l->elems[i].err && l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
        ig->pp[p].group_acked = ig->pp[p].group_committed;
    }
    rd_kafka_topic_partition_list_destroy(l);
}

void ig_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    pd_ingest *ig = opaque;
    pd_worker *w = ig->w;
    ig_settle(ig); /* checkpoints are read and roles change below */
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    char err[512];
    PD_INC(w->metrics->rebalances);
    atomic_fetch_add(&w->generation, 1);
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        atomic_store(&w->kafka_up, 1); /* the coordinator answered */
        char *restoring = pd_calloc((size_t)w->nparts, 1);
        int replicas_changed = 0;
        group_committed(ig, rk, parts);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (strcmp(parts->elems[i].topic, ig->cfg->topic) != 0 || p < 0 || p >= w->nparts) continue;
            if (ig->pp[p].role == ROLE_REPLICA) replicas_changed = 1; /* promotion: warm copy */
            restoring[p] = (char)prepare_partition(ig, p, ROLE_OWNER);
            parts->elems[i].offset = ig_start_offset(ig, p);
            part_publish(ig, p);
        }
        rd_kafka_error_t *ke = NULL;
        if (coop) ke = rd_kafka_incremental_assign(rk, parts);
        else rd_kafka_assign(rk, parts);
        if (ke) {
            pd_error("incremental_assign: %s", rd_kafka_error_string(ke));
            rd_kafka_error_destroy(ke);
        }
        for (int32_t p = 0; p < w->nparts; p++)
            if (restoring[p]) ig_owner_pause(ig, p, 1);
        free(restoring);
        if (replicas_changed) ig_replica_reassign(ig);
        if (!ig->rconsumer) /* partitions held since a lost assignment (keep_as_replica) */
            for (int32_t p = 0; p < w->nparts; p++)
                if (ig->pp[p].role == ROLE_REPLICA) release_partition(ig, p);
        pd_info("assigned %d partition(s) (%s): %s", parts->cnt, coop ? "cooperative" : "eager",
                pd_kafka_part_list(parts, err, sizeof err));
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        char *which = pd_calloc((size_t)w->nparts, 1);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p >= 0 && p < w->nparts) which[p] = 1;
        }
        const int lost = rd_kafka_assignment_lost(rk);
        if (lost) {
            /* Someone else may already own them: commit nothing for them. */
            ig_batch_drop_parts(ig, which);
            for (int32_t p = 0; p < w->nparts; p++) {
                if (!which[p]) continue;
                /* in-memory progress is gone: reload from the checkpoint if
                 * kept (published by release_partition below) */
                pd_checkpoint cp;
                if (pd_store_get_checkpoint(w->store, p, &cp) == PD_OK) {
                    ig->pp[p].next_offset = cp.next_offset;
                    ig->pp[p].clock_ms = cp.clock_ms;
                }
            }
            /* The group session timed out: the coordinator is unreachable
             * (or this worker stalled). Until the next assignment Kafka
             * counts as down, and the lost partitions stay served from
             * their local state as replicas (stale-marked); the replica
             * placement, once Kafka is back, keeps or releases them. */
            atomic_store(&w->kafka_up, 0);
            pd_warn("lost %d partition(s) (group session timed out); their uncommitted batch was discarded%s",
                    parts->cnt, "; serving them from local state, stale, until Kafka is back");
        } else if ((ig->commit_sync = 1, pd_ingest_flush(ig, err, sizeof err)) != PD_OK) {
            /* Could not commit: drop their part of the batch; the next
             * owner replays from the last checkpoint. */
            pd_error("flush before revocation failed: %s", err);
            ig_batch_drop_parts(ig, which);
        }
        ig->commit_sync = 0;
        for (int32_t p = 0; p < w->nparts; p++) {
            if (!which[p]) continue;
            if (lost) keep_as_replica(ig, p);
            else release_partition(ig, p);
        }
        free(which);
        if (lost) ig_replica_reassign(ig);
        if (coop) {
            rd_kafka_error_t *ke = rd_kafka_incremental_unassign(rk, parts);
            if (ke) rd_kafka_error_destroy(ke);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        pd_info("revoked %d partition(s): %s", parts->cnt, pd_kafka_part_list(parts, err, sizeof err));
    } else {
        pd_error("rebalance error: %s", rd_kafka_err2str(e));
        rd_kafka_assign(rk, NULL);
    }
    publish(ig);
}


/*
 * offsets.c -- where the partitions this worker reads stand against the
 * topic's offsets (ingest_int.h): watermarks, fetch wake-ups, and
 * positions out of the topic's range (gap / backwards; rule in offsets.h).
 */
#include "ingest_int.h"

#include "offsets.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pd_offsets_classify(int64_t next, int64_t pos, int64_t lo, int64_t hi)
{
    if (next >= 0 && next > hi) return PD_OFFS_BACKWARDS;
    if (pos >= 0 && pos < lo) return PD_OFFS_GAP;
    return PD_OFFS_OK;
}

void ig_update_watermarks(pd_ingest *ig)
{
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        if (pp->role == ROLE_NONE) continue;
        rd_kafka_t *rk = pp->role == ROLE_OWNER ? ig->consumer : ig->rconsumer;
        int64_t lo, hi;
        if (rk && rd_kafka_get_watermark_offsets(rk, ig->cfg->topic, p, &lo, &hi) == 0 && hi >= 0) {
            pp->high_watermark = hi;
            part_publish(ig, p);
        }
    }
}

/* Fetch wake-ups. A librdkafka consumer stops fetching a partition while
 * its pre-fetch queue holds queued.min.messages or
 * queued.max.messages.kbytes, and librdkafka 2.0 re-checks that only when
 * its broker thread next wakes up: on I/O, on an op, or after up to 1 s
 * (2.1 made this fetch.queue.backoff.ms). So whenever the worker processes
 * more slowly than the broker delivers -- catching up on a backlog, a
 * rebuild -- fetching stalls for most of a second each time the queue has
 * filled and been drained, capping ingestion at about one queue per second
 * (measured: 120-160k ev/s instead of the worker's own rate on the
 * embedded broker). The loop therefore notices when the queue has run dry
 * (a consume call returned nothing) while a partition it reads is known to
 * have records beyond what it processed (the high watermark of the last
 * fetch response), and then sends a ListOffsets request to those
 * partitions' leaders without waiting for the answer: the request is an
 * op for each leader's broker thread, which wakes up, finds the queue
 * below the thresholds and fetches at once. None in steady state (the
 * watermark is then what was processed). Wake-ups that bring nothing
 * (say the records left are transaction markers, which the consumer
 * skips) back off from FETCH_KICK_US to FETCH_KICK_MAX_US; records
 * arriving reset that (kick_reset). */
#define FETCH_KICK_US 10000
#define FETCH_KICK_MAX_US 1000000

void ig_kick_reset(pd_ingest *ig, int role) { ig->kick_gap_us[role] = FETCH_KICK_US; }

void ig_wake_fetcher(pd_ingest *ig, rd_kafka_t *rk, int role, int64_t now)
{
    if (!rk || now - ig->last_kick_us[role] < PD_MAX(ig->kick_gap_us[role], FETCH_KICK_US)) return;
    ig->last_kick_us[role] = now;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        const part_priv *pp = &ig->pp[p];
        int64_t lo, hi;
        if (pp->role != role || pp->job || pp->next_offset < 0 ||
            rd_kafka_get_watermark_offsets(rk, ig->cfg->topic, p, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi <= pp->next_offset)
            continue;
        if (!l) l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = RD_KAFKA_OFFSET_END;
    }
    if (!l) return;
    /* Timeout 0: the requests go out, the answers are discarded. */
    (void)rd_kafka_offsets_for_times(rk, l, 0);
    rd_kafka_topic_partition_list_destroy(l);
    ig->kick_gap_us[role] = PD_MIN(PD_MAX(ig->kick_gap_us[role], FETCH_KICK_US) * 2, FETCH_KICK_MAX_US);
    PD_INC(ig->w->metrics->fetch_wakeups);
}

/* ---- the group's committed offsets: the side-effect frontier (sidefx.h) ---- */

void ig_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offs, void *opaque)
{
    (void)rk;
    (void)err; /* per partition below */
    pd_ingest *ig = opaque;
    for (int i = 0; offs && i < offs->cnt; i++) {
        const rd_kafka_topic_partition_t *e = &offs->elems[i];
        if (e->err || e->offset < 0 || e->partition < 0 || e->partition >= ig->w->nparts ||
            strcmp(e->topic, ig->cfg->topic) != 0)
            continue;
        ig->pp[e->partition].group_acked = e->offset;
    }
}

void ig_recommit(pd_ingest *ig)
{
    if (!ig->consumer) return;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        const part_priv *pp = &ig->pp[p];
        if (pp->role != ROLE_OWNER || pp->fx_durable < 0 || pp->fx_durable == pp->group_acked) continue;
        if (!l) l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = pp->fx_durable;
    }
    if (!l) return;
    rd_kafka_commit(ig->consumer, l, 1);
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- offsets out of the topic's range (docs/operations.md, "Offsets") ----
 *
 * Both consumers run with auto.offset.reset=error, so librdkafka never
 * moves a partition by itself: a position outside the topic's offsets
 * stops the partition with an error (handle_messages), and here the
 * watermarks decide (offsets.h has the rule):
 *   gap       the topic's first offset lo is beyond the checkpoint S: Kafka
 *             deleted [S, lo) before it was read. Go on from lo, flag the
 *             partition incomplete (PD_INCOMPLETE_GAP: log, metrics,
 *             /readyz); it stays served.
 *   backwards the checkpoint is beyond the topic's end hi: the topic was
 *             recreated or truncated, and its offsets mean other records
 *             now. offsets_backwards=refuse (default): not consumed, not
 *             ready, error everywhere until an operator restarts with
 *             rebuild (delete the state, read the topic from the start) or
 *             continue (keep the state, go on from lo). */
/* Restarts fetching owned partition p at ig_start_offset: after the
 * out-of-range error librdkafka stopped it (fetch state "none", where a
 * seek is refused), so it is unassigned and assigned again. */
static void owner_restart(pd_ingest *ig, int32_t p)
{
    rd_kafka_t *rk = ig->consumer;
    if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = ig_start_offset(ig, p);
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, l);
        if (!e) e = rd_kafka_incremental_assign(rk, l);
        if (e) {
            pd_warn("partition %d: restarting the fetch: %s", (int)p, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(rk, &l) || !l) return;
    for (int i = 0; i < l->cnt; i++) /* every partition at its own position */
        if (strcmp(l->elems[i].topic, ig->cfg->topic) == 0 && l->elems[i].partition >= 0 &&
            l->elems[i].partition < ig->w->nparts)
            l->elems[i].offset = ig_start_offset(ig, l->elems[i].partition);
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    if (e) pd_warn("partition %d: restarting the fetch: %s", (int)p, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

static void resolve_one(pd_ingest *ig, int32_t p)
{
    part_priv *pp = &ig->pp[p];
    pd_metrics *m = ig->w->metrics;
    pp->oor_at_us = 0;
    if (pp->role == ROLE_NONE || pp->job) return;
    rd_kafka_t *rk = pp->role == ROLE_OWNER ? ig->consumer : ig->rconsumer;
    int64_t lo = -1, hi = -1;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, ig->cfg->topic, p, &lo, &hi, 2000);
    if (e) {
        pd_warn("partition %d: offsets out of range, and the watermarks are unknown (%s): retrying", (int)p,
                rd_kafka_err2str(e));
        pp->oor_at_us = pd_mono_us() + 1000000;
        ig->oor_pending = 1;
        return;
    }
    const int64_t pos = ig_start_offset(ig, p), s0 = pp->next_offset;
    const char *policy = ig->cfg->offsets_backwards;
    int v = pd_offsets_classify(pp->next_offset, pos, lo, hi);
    if (v == PD_OFFS_BACKWARDS) {
        PD_INC(m->offsets_backwards);
        if (strcmp(policy, "refuse") == 0) {
            pd_error("partition %d: its checkpoint (offset %" PRId64 ") is beyond the end of topic %s (offsets "
                     "%" PRId64 "..%" PRId64 "): the topic was recreated or truncated. Not consuming it and not "
                     "ready; restart with offsets_backwards=rebuild or =continue (docs/operations.md, \"Offsets\")",
                     (int)p, pp->next_offset, ig->cfg->topic, lo, hi);
            pp->backwards = 1;
            part_publish(ig, p);
            if (pp->role == ROLE_OWNER) ig_owner_pause(ig, p, 1);
            else ig_replica_reassign(ig);
            return;
        }
        ig_settle(ig);
        char *which = pd_calloc((size_t)ig->w->nparts, 1);
        which[p] = 1;
        ig_batch_drop_parts(ig, which);
        free(which);
        pd_sidefx_free(&pp->fx);
        pp->group_committed = -1;
        if (strcmp(policy, "rebuild") == 0) {
            pd_warn("partition %d: checkpoint %" PRId64 " beyond the end of the topic (%" PRId64
                    "): offsets_backwards=rebuild, deleting its state", (int)p, pp->next_offset, hi);
            ig_start_scratch(ig, p);
            ig_set_catchup(ig, p);
        } else {
            pd_warn("partition %d: checkpoint %" PRId64 " beyond the end of the topic (%" PRId64
                    "): offsets_backwards=continue, keeping its state and going on from offset %" PRId64,
                    (int)p, pp->next_offset, hi, lo);
            pp->next_offset = lo;
            pp->fx.done = lo;
            pp->fx.dirty = 1;
            ig_mark_dirty(ig, p);
        }
    } else if (v == PD_OFFS_GAP) {
        if (pp->next_offset >= 0 && pp->next_offset < lo) {
            PD_INC(m->offset_gaps);
            PD_ADD(m->offset_gap_records, (uint64_t)(lo - pp->next_offset));
            pd_error("partition %d: the topic's retention deleted offsets %" PRId64 "..%" PRId64 " before they "
                     "were read: going on from %" PRId64 ", the partition's profiles miss those %" PRId64
                     " records (flagged incomplete)", (int)p, pp->next_offset, lo - 1, lo, lo - pp->next_offset);
            pp->incomplete |= PD_INCOMPLETE_GAP;
            pp->next_offset = lo;
            ig_mark_dirty(ig, p);
        }
        if (pp->fx.done >= 0 && pp->fx.done < lo) {
            /* records applied here whose side effects were still due */
            if (pp->role == ROLE_OWNER && pp->fx.done < s0) {
                PD_ADD(m->sidefx_lost, (uint64_t)(PD_MIN(lo, s0) - pp->fx.done));
                pd_error("partition %d: side effects (DLQ, re-routes) of offsets %" PRId64 "..%" PRId64
                         " cannot be performed: the topic no longer has them", (int)p, pp->fx.done,
                         PD_MIN(lo, s0) - 1);
            }
            pd_sidefx_advance(&pp->fx, lo);
            pp->dirty = 1;
        }
    }
    part_publish(ig, p);
    /* position again: at the decided offset, or where it was (now in range) */
    if (pp->role == ROLE_OWNER) owner_restart(ig, p);
    else ig_replica_reassign(ig);
}

void ig_resolve_out_of_range(pd_ingest *ig)
{
    ig->oor_pending = 0;
    int64_t now = pd_mono_us();
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        if (!ig->pp[p].oor_at_us) continue;
        if (ig->pp[p].oor_at_us <= now) resolve_one(ig, p);
        else ig->oor_pending = 1;
    }
}


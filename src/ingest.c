/*
 * ingest.c -- the exactly-once ingestion loop.
 *
 * Data flow (one thread):
 *   consume batch -> for each record: parse + validate (event.c), route check
 *   (murmur2), retention check, de-dup check, profile_add into the batch
 *   table keyed by (partition, day, user) -> flush: ONE WriteBatch with the
 *   profile deltas (RocksDB merge operands), the new de-dup records and,
 *   for every partition touched, its next input offset and event-time clock.
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
 *     source record, and the flush waits for their delivery. A crash in
 *     between re-produces them: the DLQ is at-least-once (consumers of the
 *     DLQ key on source partition/offset headers); re-produced events are
 *     made exact by de-dup on event_id, or on the "profiled-origin" header
 *     (source partition/offset) for events without an event_id.
 *
 * Determinism: every decision uses only the input log -- event time, the
 * Kafka record timestamp (future-skew check), the partition's clock (the
 * newest event time seen in that partition, checkpointed with the offset).
 * Replaying a partition from any checkpoint gives the same state.
 *
 * De-dup rule: an event with event_id E in partition p is a duplicate iff a
 * record (p, E, t0) exists with |ts - t0| <= dedup_window and
 * t0 >= clock_p - dedup_window (clock after this event). Records older than
 * clock_p - dedup_window can never match again, so garbage-collecting them
 * cannot change results.
 *
 * Retention rule: an event whose day is before
 * day(clock_p) - retention_days + 1 is dropped (counted). Whole day column
 * families are dropped when older than that floor for every partition that
 * has a checkpoint in this store (the minimum clock), so a partition whose
 * state is stale never loses days it would still count.
 */
#include "ingest.h"

#include "event.h"
#include "members.h"
#include "profile.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define DLQ_MAX_DETAIL 256

/* ---- a small open-addressing hash table keyed by bytes ---- */

typedef struct {
    uint64_t hash;
    char *key;        /* owned */
    uint32_t klen;
    void *val;        /* owned by the table's user */
} ht_slot;

typedef struct {
    ht_slot *slots;
    size_t cap, n;    /* cap is a power of two */
} htab;

static void ht_init(htab *t, size_t cap)
{
    t->cap = cap;
    t->n = 0;
    t->slots = pd_calloc(cap, sizeof(ht_slot));
}

static ht_slot *ht_find(htab *t, uint64_t h, const char *k, uint32_t kl)
{
    size_t m = t->cap - 1;
    for (size_t i = h & m;; i = (i + 1) & m) {
        ht_slot *s = &t->slots[i];
        if (!s->key) return s;
        if (s->hash == h && s->klen == kl && memcmp(s->key, k, kl) == 0) return s;
    }
}

static void ht_grow(htab *t)
{
    htab n;
    ht_init(&n, t->cap * 2);
    for (size_t i = 0; i < t->cap; i++) {
        ht_slot *s = &t->slots[i];
        if (!s->key) continue;
        *ht_find(&n, s->hash, s->key, s->klen) = *s;
        n.n++;
    }
    free(t->slots);
    *t = n;
}

/* Returns the slot for k, inserting an empty one (val NULL) if absent. */
static ht_slot *ht_upsert(htab *t, uint64_t h, const char *k, uint32_t kl)
{
    if ((t->n + 1) * 4 > t->cap * 3) ht_grow(t);
    ht_slot *s = ht_find(t, h, k, kl);
    if (!s->key) {
        s->hash = h;
        s->key = pd_strndup(k, kl);
        s->klen = kl;
        s->val = NULL;
        t->n++;
    }
    return s;
}

/* ---- batch entries ---- */

typedef struct {
    int32_t partition;
    int64_t day;
    const char *user; /* points into the slot key */
    uint32_t ulen;
    pd_profile prof;
} agg_entry;

typedef struct {
    int32_t partition;
    int64_t ts;
    const char *id;   /* points into the slot key */
    uint32_t idlen;
} dedup_entry;

/* Per-partition private state of the ingest thread. */
typedef struct {
    int owned;
    int dirty;            /* offsets advanced since the last commit */
    int64_t next_offset;  /* next offset to process; -1 = take what comes */
    int64_t clock_ms;     /* newest event time seen (0 = none) */
} part_priv;

struct pd_ingest {
    pd_worker *w;
    const pd_config *cfg;
    rd_kafka_t *consumer;
    rd_kafka_queue_t *cq;
    rd_kafka_t *producer;
    part_priv *pp;            /* w->nparts */
    htab agg;                 /* key: partition(4) day(8) user -> agg_entry */
    htab dedup;               /* key: partition(4) event_id -> dedup_entry */
    agg_entry **free_entries; /* recycled entries */
    size_t nfree, capfree;
    uint64_t pending_events;
    int64_t dirty_since_us;   /* first uncommitted record since the last commit (0 = none) */
    pd_store_batch *sb;
    int64_t produce_outstanding;
    int64_t produce_failed;
    int64_t last_wm_us;
    int64_t last_retention_day; /* last floor applied */
    int fatal;
    char errbuf[512];
};

static uint64_t hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

static agg_entry *entry_get(pd_ingest *ig)
{
    if (ig->nfree) return ig->free_entries[--ig->nfree];
    agg_entry *e = pd_calloc(1, sizeof *e);
    pd_profile_init(&e->prof, ig->w->schema);
    return e;
}

static void entry_put(pd_ingest *ig, agg_entry *e)
{
    pd_profile_reset(&e->prof);
    if (ig->nfree == ig->capfree) {
        ig->capfree = ig->capfree ? ig->capfree * 2 : 1024;
        ig->free_entries = pd_realloc(ig->free_entries, ig->capfree * sizeof *ig->free_entries);
    }
    ig->free_entries[ig->nfree++] = e;
}

/* Clears batch entries; when only_parts is non-NULL, only entries of the
 * partitions flagged there. */
static void batch_clear(pd_ingest *ig, const char *only_parts)
{
    htab *ts[2] = {&ig->agg, &ig->dedup};
    for (int t = 0; t < 2; t++) {
        htab *h = ts[t];
        if (!only_parts) {
            for (size_t i = 0; i < h->cap; i++) {
                ht_slot *s = &h->slots[i];
                if (!s->key) continue;
                if (t == 0) entry_put(ig, s->val);
                else free(s->val);
                free(s->key);
            }
            memset(h->slots, 0, h->cap * sizeof(ht_slot));
            h->n = 0;
            continue;
        }
        /* Selective removal: rebuild the table without those partitions. */
        htab n;
        ht_init(&n, h->cap);
        for (size_t i = 0; i < h->cap; i++) {
            ht_slot *s = &h->slots[i];
            if (!s->key) continue;
            int32_t p = (int32_t)pd_get_u32be((const uint8_t *)s->key);
            if (only_parts[p]) {
                if (t == 0) entry_put(ig, s->val);
                else free(s->val);
                free(s->key);
                continue;
            }
            *ht_find(&n, s->hash, s->key, s->klen) = *s;
            n.n++;
        }
        free(h->slots);
        *h = n;
    }
    if (!only_parts) ig->pending_events = 0;
}

/* ---- Kafka side effects ---- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pd_ingest *ig = opaque;
    ig->produce_outstanding--;
    if (m->err) {
        ig->produce_failed++;
        PD_INC(ig->w->metrics->dlq_produce_errors);
        pd_error("produce to %s [%d] failed permanently: %s", rd_kafka_topic_name(m->rkt),
                 (int)m->partition, rd_kafka_err2str(m->err));
    }
}

static int produce(pd_ingest *ig, const char *topic, int32_t partition, const void *key, size_t keylen,
                   const void *val, size_t vallen, rd_kafka_headers_t *hdrs)
{
    if (!ig->producer) {
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        return PD_OK;
    }
    for (int attempt = 0;; attempt++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            ig->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)val, vallen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (!e) {
            ig->produce_outstanding++;
            return PD_OK;
        }
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && attempt < 1000 && !ig->w->stop) {
            rd_kafka_poll(ig->producer, 10);
            continue;
        }
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        PD_INC(ig->w->metrics->dlq_produce_errors);
        pd_error("produce to %s failed: %s", topic, rd_kafka_err2str(e));
        return PD_EIO;
    }
}

static void to_dlq(pd_ingest *ig, int reason, const char *detail, int32_t partition, int64_t offset,
                   int64_t rec_ts, const void *key, size_t keylen, const void *val, size_t vallen)
{
    PD_INC(ig->w->metrics->events_dlq[reason]);
    if (!ig->producer) return;
    char num[32];
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    const char *rn = pd_ev_reason_name(reason);
    rd_kafka_header_add(h, "reason", -1, rn, (ssize_t)strlen(rn));
    rd_kafka_header_add(h, "detail", -1, detail, (ssize_t)strnlen(detail, DLQ_MAX_DETAIL));
    rd_kafka_header_add(h, "source_topic", -1, ig->cfg->topic, -1);
    snprintf(num, sizeof num, "%" PRId32, partition);
    rd_kafka_header_add(h, "source_partition", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, offset);
    rd_kafka_header_add(h, "source_offset", -1, num, -1);
    if (rec_ts >= 0) {
        snprintf(num, sizeof num, "%" PRId64, rec_ts);
        rd_kafka_header_add(h, "source_timestamp", -1, num, -1);
    }
    produce(ig, ig->cfg->dlq_topic, RD_KAFKA_PARTITION_UA, key, keylen, val, vallen, h);
}

/* Waits for every DLQ/misroute record to be delivered (or fail for good). */
static int wait_produced(pd_ingest *ig)
{
    if (!ig->producer) return PD_OK;
    int64_t deadline = pd_mono_us() + ig->cfg->shutdown_timeout_ms * 1000;
    while (rd_kafka_outq_len(ig->producer) > 0) {
        rd_kafka_flush(ig->producer, 100);
        if (pd_mono_us() > deadline && ig->w->stop) return PD_EAGAIN;
        if (ig->w->stop > 1) return PD_EAGAIN;
    }
    return PD_OK;
}

/* ---- record processing ---- */

static int64_t floor_day(pd_ingest *ig, int64_t clock_ms)
{
    return pd_tz_day(&ig->w->tz, clock_ms) - ig->cfg->retention_days + 1;
}

/* Returns 1 when (p, id) is a duplicate under the de-dup rule; otherwise
 * records it in the batch and returns 0. */
static int dedup_check(pd_ingest *ig, int32_t p, const char *id, size_t idlen, int64_t ts, int64_t clock)
{
    const int64_t win = ig->cfg->dedup_window_ms;
    char kbuf[4 + PD_MAX_EVENT_ID + 64];
    if (idlen > sizeof kbuf - 4) idlen = sizeof kbuf - 4;
    pd_put_u32be((uint8_t *)kbuf, (uint32_t)p);
    memcpy(kbuf + 4, id, idlen);
    uint32_t kl = (uint32_t)(4 + idlen);
    uint64_t h = hash_bytes(kbuf, kl);
    ht_slot *s = ht_upsert(&ig->dedup, h, kbuf, kl);
    dedup_entry *d = s->val;
    int64_t t0;
    int have = 0;
    if (d) {
        t0 = d->ts;
        have = 1;
    } else if (pd_store_get_dedup(ig->w->store, p, id, idlen, &t0) == PD_OK) {
        have = 1;
    }
    if (have && t0 >= clock - win && (ts - t0 <= win && t0 - ts <= win)) {
        if (!d) { /* keep the slot meaningful: cache the stored record */
            d = pd_calloc(1, sizeof *d);
            d->partition = p;
            d->ts = t0;
            d->id = NULL; /* cached only: not written back */
            s->val = d;
        }
        return 1;
    }
    if (!d) {
        d = pd_calloc(1, sizeof *d);
        s->val = d;
    }
    d->partition = p;
    d->ts = ts;
    d->id = s->key + 4;
    d->idlen = (uint32_t)idlen;
    return 0;
}

void pd_ingest_record(pd_ingest *ig, int32_t p, int64_t offset, int64_t rec_ts, const void *key,
                      size_t keylen, const void *val, size_t vallen, const char *origin, size_t originlen)
{
    pd_worker *w = ig->w;
    pd_metrics *m = w->metrics;
    if (p < 0 || p >= w->nparts || !ig->pp[p].owned) return;
    part_priv *pp = &ig->pp[p];
    PD_INC(m->records_in);
    if (pp->next_offset >= 0 && offset < pp->next_offset) {
        PD_INC(m->events_stale_offset);
        return;
    }
    pp->next_offset = offset + 1;
    pp->dirty = 1;
    if (!ig->dirty_since_us) ig->dirty_since_us = pd_mono_us();

    pd_event ev;
    char err[DLQ_MAX_DETAIL];
    int reason = pd_event_parse(&ev, w->schema, val, vallen, (size_t)ig->cfg->max_event_bytes, err, sizeof err);
    if (reason != PD_EV_OK) {
        to_dlq(ig, reason, err, p, offset, rec_ts, key, keylen, val, vallen);
        goto out;
    }
    if (rec_ts >= 0 && ev.ts_ms > rec_ts + ig->cfg->max_future_skew_ms) {
        char a[32], b[32];
        pd_ts_format(ev.ts_ms, a);
        pd_ts_format(rec_ts, b);
        snprintf(err, sizeof err, "field 'ts': %s is more than %" PRId64 " ms after the record timestamp %s",
                 a, ig->cfg->max_future_skew_ms, b);
        to_dlq(ig, PD_EV_FUTURE_TS, err, p, offset, rec_ts, key, keylen, val, vallen);
        goto out;
    }
    int32_t want = pd_partition_for(ev.user_id, ev.user_id_len, w->nparts);
    if (want != p) {
        /* The query router would never look here: move it where it belongs.
         * The origin header makes the copy de-duplicable without event_id. */
        PD_INC(m->events_misrouted);
        if (ig->producer) {
            char ob[96];
            int on = snprintf(ob, sizeof ob, "%s/%" PRId32 "/%" PRId64, ig->cfg->topic, p, offset);
            rd_kafka_headers_t *h = rd_kafka_headers_new(1);
            rd_kafka_header_add(h, "profiled-origin", -1, ob, on);
            produce(ig, ig->cfg->topic, want, ev.user_id, ev.user_id_len, val, vallen, h);
        }
        goto out;
    }
    if (ev.ts_ms > pp->clock_ms) pp->clock_ms = ev.ts_ms;
    int64_t day = pd_tz_day(&w->tz, ev.ts_ms);
    if (day < floor_day(ig, pp->clock_ms)) {
        PD_INC(m->events_too_old);
        goto out;
    }
    const char *did = ev.event_id;
    size_t didlen = ev.event_id_len;
    char obuf[PD_MAX_EVENT_ID];
    if (!did && origin && originlen) {
        /* A re-produced misrouted event without event_id: its origin
         * (topic/partition/offset) identifies it uniquely. */
        didlen = (size_t)snprintf(obuf, sizeof obuf, "\x01origin:%.*s", (int)PD_MIN(originlen, 200), origin);
        did = obuf;
    }
    if (did && dedup_check(ig, p, did, didlen, ev.ts_ms, pp->clock_ms)) {
        PD_INC(m->events_duplicate);
        goto out;
    }
    /* Aggregate into (partition, day, user). */
    char kbuf[4 + 8 + PD_MAX_USER_ID];
    pd_put_u32be((uint8_t *)kbuf, (uint32_t)p);
    pd_put_u64be((uint8_t *)kbuf + 4, (uint64_t)day);
    memcpy(kbuf + 12, ev.user_id, ev.user_id_len);
    uint32_t kl = (uint32_t)(12 + ev.user_id_len);
    ht_slot *s = ht_upsert(&ig->agg, hash_bytes(kbuf, kl), kbuf, kl);
    agg_entry *e = s->val;
    if (!e) {
        e = entry_get(ig);
        e->partition = p;
        e->day = day;
        e->user = s->key + 12;
        e->ulen = (uint32_t)ev.user_id_len;
        s->val = e;
    }
    pd_profile_add(&e->prof, &ev);
    if (ev.n_bad_attrs) PD_ADD(m->attrs_wrong_type, (uint64_t)ev.n_bad_attrs);
    PD_INC(m->events_accepted);
    ig->pending_events++;
out:
    pd_event_free(&ev);
    atomic_store_explicit(&w->parts[p].next_offset, pp->next_offset, memory_order_relaxed);
    atomic_store_explicit(&w->parts[p].clock_ms, pp->clock_ms, memory_order_relaxed);
}

uint64_t pd_ingest_pending(const pd_ingest *ig) { return ig->pending_events; }

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
    if (fl <= ig->last_retention_day) return;
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

int pd_ingest_flush(pd_ingest *ig, char *err, size_t errlen)
{
    pd_worker *w = ig->w;
    int any = 0;
    for (int32_t p = 0; p < w->nparts; p++) any |= ig->pp[p].dirty;
    if (!any) {
        ig->dirty_since_us = 0;
        return PD_OK;
    }
    int64_t t0 = pd_mono_us();
    /* 1. Side effects first: everything produced on behalf of the records
     *    being checkpointed must be in Kafka before the checkpoint moves. */
    int rc = wait_produced(ig);
    if (rc) return pd_seterr(err, errlen, rc, "DLQ/misroute records not delivered; batch not committed");
    /* 2. One WriteBatch: deltas, de-dup records, checkpoints. */
    for (size_t i = 0; i < ig->agg.cap; i++) {
        ht_slot *s = &ig->agg.slots[i];
        if (!s->key) continue;
        agg_entry *e = s->val;
        rc = pd_store_batch_merge(ig->sb, e->day, e->partition, e->user, e->ulen, &e->prof, err, errlen);
        if (rc) goto fail;
    }
    for (size_t i = 0; i < ig->dedup.cap; i++) {
        ht_slot *s = &ig->dedup.slots[i];
        if (!s->key) continue;
        dedup_entry *d = s->val;
        if (d->id) pd_store_batch_put_dedup(ig->sb, d->partition, d->id, d->idlen, d->ts);
    }
    for (int32_t p = 0; p < w->nparts; p++) {
        if (!ig->pp[p].dirty) continue;
        pd_store_batch_set_checkpoint(ig->sb, p, ig->pp[p].next_offset, ig->pp[p].clock_ms);
    }
    rc = pd_store_commit(w->store, ig->sb, err, errlen);
    if (rc) goto fail;
    /* 3. Committed: publish progress, recycle the batch. */
    PD_INC(w->metrics->flushes);
    pd_hist_observe(&w->metrics->batch_events, (double)ig->pending_events);
    rd_kafka_topic_partition_list_t *offs = ig->consumer ? rd_kafka_topic_partition_list_new(8) : NULL;
    for (int32_t p = 0; p < w->nparts; p++) {
        if (!ig->pp[p].dirty) continue;
        ig->pp[p].dirty = 0;
        atomic_store(&w->parts[p].committed, ig->pp[p].next_offset);
        if (offs) rd_kafka_topic_partition_list_add(offs, ig->cfg->topic, p)->offset = ig->pp[p].next_offset;
    }
    if (offs) {
        /* For lag monitoring only; the store is the source of truth. */
        if (offs->cnt) rd_kafka_commit(ig->consumer, offs, 1);
        rd_kafka_topic_partition_list_destroy(offs);
    }
    batch_clear(ig, NULL);
    ig->dirty_since_us = 0;
    pd_hist_observe(&w->metrics->flush_seconds, (double)(pd_mono_us() - t0) / 1e6);
    apply_retention(ig);
    return PD_OK;
fail:
    PD_INC(w->metrics->flush_errors);
    pd_store_batch_clear(ig->sb);
    return rc;
}

/* ---- partition assignment ---- */

static void own_partition(pd_ingest *ig, int32_t p, rd_kafka_topic_partition_t *tp)
{
    pd_checkpoint cp;
    part_priv *pp = &ig->pp[p];
    pd_partstate *ps = &ig->w->parts[p];
    pp->owned = 1;
    pp->dirty = 0;
    if (pd_store_get_checkpoint(ig->w->store, p, &cp) == PD_OK) {
        pp->next_offset = cp.next_offset;
        pp->clock_ms = cp.clock_ms;
        if (tp) tp->offset = cp.next_offset;
    } else {
        pp->next_offset = -1;
        pp->clock_ms = 0;
        if (tp) tp->offset = RD_KAFKA_OFFSET_INVALID; /* committed, then auto.offset.reset */
    }
    atomic_store(&ps->next_offset, pp->next_offset);
    atomic_store(&ps->committed, pp->next_offset);
    atomic_store(&ps->clock_ms, pp->clock_ms);
    atomic_store(&ps->generation, atomic_load(&ig->w->generation));
    atomic_store(&ps->owned, 1);
    atomic_store(&ps->ready, 1);
}

static void disown_partition(pd_ingest *ig, int32_t p)
{
    ig->pp[p].owned = 0;
    ig->pp[p].dirty = 0;
    atomic_store(&ig->w->parts[p].ready, 0);
    atomic_store(&ig->w->parts[p].owned, 0);
}

int pd_ingest_assign_local(pd_ingest *ig, int32_t p)
{
    if (p < 0 || p >= ig->w->nparts) return PD_EINVAL;
    own_partition(ig, p, NULL);
    return PD_OK;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    pd_ingest *ig = opaque;
    pd_worker *w = ig->w;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    char err[512];
    PD_INC(w->metrics->rebalances);
    atomic_fetch_add(&w->generation, 1);
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (strcmp(parts->elems[i].topic, ig->cfg->topic) != 0 || p < 0 || p >= w->nparts) continue;
            own_partition(ig, p, &parts->elems[i]);
        }
        rd_kafka_error_t *ke = NULL;
        if (coop) ke = rd_kafka_incremental_assign(rk, parts);
        else rd_kafka_assign(rk, parts);
        if (ke) {
            pd_error("incremental_assign: %s", rd_kafka_error_string(ke));
            rd_kafka_error_destroy(ke);
        }
        pd_info("assigned %d partition(s) (%s)", parts->cnt, coop ? "cooperative" : "eager");
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        char *which = pd_calloc((size_t)w->nparts, 1);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p >= 0 && p < w->nparts) which[p] = 1;
        }
        if (rd_kafka_assignment_lost(rk)) {
            /* Someone else may already own them: commit nothing for them. */
            batch_clear(ig, which);
            pd_warn("lost %d partition(s); their uncommitted batch was discarded", parts->cnt);
        } else if (pd_ingest_flush(ig, err, sizeof err) != PD_OK) {
            /* Could not commit: drop their part of the batch; the next
             * owner replays from the last checkpoint. */
            pd_error("flush before revocation failed: %s", err);
            batch_clear(ig, which);
        }
        for (int32_t p = 0; p < w->nparts; p++)
            if (which[p]) disown_partition(ig, p);
        if (ig->agg.n == 0) ig->pending_events = 0;
        free(which);
        if (coop) {
            rd_kafka_error_t *ke = rd_kafka_incremental_unassign(rk, parts);
            if (ke) rd_kafka_error_destroy(ke);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        pd_info("revoked %d partition(s)", parts->cnt);
    } else {
        pd_error("rebalance error: %s", rd_kafka_err2str(e));
        rd_kafka_assign(rk, NULL);
    }
    if (w->members) pd_members_publish(w->members);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    pd_ingest *ig = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) atomic_store(&ig->w->kafka_up, 0);
    if (rd_kafka_fatal_error(rk, NULL, 0)) ig->fatal = 1;
    pd_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4) pd_warn("rdkafka %s: %s", fac, buf);
}

static int apply_conf(rd_kafka_conf_t *c, const char *k, const char *v, char *err, size_t errlen)
{
    char e2[256];
    if (rd_kafka_conf_set(c, k, v, e2, sizeof e2) != RD_KAFKA_CONF_OK)
        return pd_seterr(err, errlen, PD_EINVAL, "kafka.%s: %s", k, e2);
    return PD_OK;
}

static rd_kafka_conf_t *base_conf(const pd_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (apply_conf(c, "bootstrap.servers", cfg->brokers, err, errlen)) goto fail;
    apply_conf(c, "client.id", cfg->id, NULL, 0);
    rd_kafka_conf_set_log_cb(c, log_cb);
    return c;
fail:
    rd_kafka_conf_destroy(c);
    return NULL;
}

static int passthrough(rd_kafka_conf_t *c, const pd_config *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->kafka.n; i++)
        if (apply_conf(c, cfg->kafka.keys[i], cfg->kafka.vals[i], err, errlen)) return PD_EINVAL;
    return PD_OK;
}

static int topic_partitions(rd_kafka_t *rk, const char *topic, int32_t *n, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 2000);
        rd_kafka_topic_destroy(t);
        if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0) {
            *n = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
            return PD_OK;
        }
        const char *why = e ? rd_kafka_err2str(e)
                            : (md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no such topic");
        if (attempt % 5 == 4) pd_warn("waiting for metadata of topic '%s': %s", topic, why);
        if (md) rd_kafka_metadata_destroy(md);
        if (attempt == 49) return pd_seterr(err, errlen, PD_EAGAIN, "topic '%s': %s", topic, why);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return PD_EAGAIN;
}

int pd_ingest_new(pd_ingest **out, pd_worker *w, int kafka, char *err, size_t errlen)
{
    pd_ingest *ig = pd_calloc(1, sizeof *ig);
    ig->w = w;
    ig->cfg = w->cfg;
    ig->last_retention_day = INT64_MIN;
    ht_init(&ig->agg, 4096);
    ht_init(&ig->dedup, 4096);
    ig->sb = pd_store_batch_new(w->store);
    char e2[512];
    int rc = PD_OK;
    if (kafka) {
        const pd_config *cfg = w->cfg;
        char num[32];
        /* Producer for the DLQ and misrouted events. */
        rd_kafka_conf_t *pc = base_conf(cfg, err, errlen);
        if (!pc) { rc = PD_EINVAL; goto fail; }
        apply_conf(pc, "enable.idempotence", "true", NULL, 0);
        apply_conf(pc, "linger.ms", "5", NULL, 0);
        apply_conf(pc, "message.timeout.ms", "0", NULL, 0);
        rd_kafka_conf_set_opaque(pc, ig);
        rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
        if ((rc = passthrough(pc, cfg, err, errlen))) { rd_kafka_conf_destroy(pc); goto fail; }
        ig->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e2, sizeof e2);
        if (!ig->producer) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "producer: %s", e2);
            goto fail;
        }
        /* Consumer. */
        rd_kafka_conf_t *cc = base_conf(cfg, err, errlen);
        if (!cc) { rc = PD_EINVAL; goto fail; }
        apply_conf(cc, "group.id", cfg->group, NULL, 0);
        apply_conf(cc, "partition.assignment.strategy", "cooperative-sticky", NULL, 0);
        apply_conf(cc, "enable.auto.commit", "false", NULL, 0);
        apply_conf(cc, "enable.auto.offset.store", "false", NULL, 0);
        apply_conf(cc, "auto.offset.reset", cfg->auto_offset_reset, NULL, 0);
        snprintf(num, sizeof num, "%" PRId64, cfg->session_timeout_ms);
        apply_conf(cc, "session.timeout.ms", num, NULL, 0);
        snprintf(num, sizeof num, "%" PRId64, PD_MAX(cfg->session_timeout_ms / 4, 500));
        apply_conf(cc, "heartbeat.interval.ms", num, NULL, 0);
        apply_conf(cc, "enable.partition.eof", "false", NULL, 0);
        rd_kafka_conf_set_opaque(cc, ig);
        rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
        rd_kafka_conf_set_error_cb(cc, error_cb);
        if ((rc = passthrough(cc, cfg, err, errlen))) { rd_kafka_conf_destroy(cc); goto fail; }
        ig->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e2, sizeof e2);
        if (!ig->consumer) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "consumer: %s", e2);
            goto fail;
        }
        int32_t n = 0;
        if ((rc = topic_partitions(ig->consumer, cfg->topic, &n, err, errlen))) goto fail;
        if (n > cfg->max_partitions) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "topic '%s' has %d partitions, more than max_partitions %" PRId64,
                           cfg->topic, n, cfg->max_partitions);
            goto fail;
        }
        w->nparts = n;
        w->parts = pd_calloc((size_t)n, sizeof *w->parts);
        for (int32_t p = 0; p < n; p++) {
            atomic_store(&w->parts[p].next_offset, -1);
            atomic_store(&w->parts[p].committed, -1);
            atomic_store(&w->parts[p].high_watermark, -1);
        }
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
        atomic_store(&w->kafka_up, 1);
        pd_info("consuming %s (%d partitions) in group %s", cfg->topic, n, cfg->group);
    }
    pd_assert(w->nparts > 0);
    ig->pp = pd_calloc((size_t)w->nparts, sizeof *ig->pp);
    for (int32_t p = 0; p < w->nparts; p++) ig->pp[p].next_offset = -1;
    *out = ig;
    return PD_OK;
fail:
    ig->w->stop = 0;
    pd_ingest_close(ig);
    return rc ? rc : PD_ERR;
}

static void update_watermarks(pd_ingest *ig)
{
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        if (!ig->pp[p].owned) continue;
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(ig->consumer, ig->cfg->topic, p, &lo, &hi) == 0 && hi >= 0)
            atomic_store(&ig->w->parts[p].high_watermark, hi);
    }
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

int pd_ingest_run(pd_ingest *ig)
{
    pd_worker *w = ig->w;
    enum { NB = 1024 };
    rd_kafka_message_t *msgs[NB];
    char err[512];
    int backoff_ms = 0;
    while (!w->stop && !ig->fatal) {
        int64_t now = pd_mono_us();
        int timeout = 100;
        if (ig->dirty_since_us) {
            int64_t left = ig->dirty_since_us + ig->cfg->commit_interval_ms * 1000 - now;
            timeout = left <= 0 ? 0 : (int)PD_MIN(left / 1000 + 1, 100);
        }
        ssize_t n = rd_kafka_consume_batch_queue(ig->cq, timeout, msgs, NB);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    pd_warn("consume: %s", rd_kafka_message_errstr(m));
            } else if (rd_kafka_topic_name(m->rkt) && strcmp(rd_kafka_topic_name(m->rkt), ig->cfg->topic) == 0) {
                rd_kafka_timestamp_type_t tt;
                int64_t ts = rd_kafka_message_timestamp(m, &tt);
                size_t olen = 0;
                const char *origin = origin_header(m, &olen);
                pd_ingest_record(ig, m->partition, m->offset, tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts,
                                 m->key, m->key_len, m->payload, m->len, origin, olen);
                atomic_store(&w->kafka_up, 1);
            }
            rd_kafka_message_destroy(m);
        }
        if (ig->producer) rd_kafka_poll(ig->producer, 0);
        now = pd_mono_us();
        int due = ig->pending_events >= (uint64_t)ig->cfg->batch_max_events ||
                  (ig->dirty_since_us && now - ig->dirty_since_us >= ig->cfg->commit_interval_ms * 1000);
        if (due) {
            if (pd_ingest_flush(ig, err, sizeof err) != PD_OK) {
                pd_error("flush failed (will retry): %s", err);
                backoff_ms = backoff_ms ? PD_MIN(backoff_ms * 2, 2000) : 50;
                struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            } else {
                backoff_ms = 0;
            }
        }
        if (now - ig->last_wm_us > 1000000) {
            update_watermarks(ig);
            ig->last_wm_us = now;
        }
    }
    return ig->fatal ? PD_ERR : PD_OK;
}

void pd_ingest_close(pd_ingest *ig)
{
    if (!ig) return;
    char err[512];
    pd_worker *w = ig->w;
    if (ig->pp && w->stop < 2 && pd_ingest_flush(ig, err, sizeof err) != PD_OK)
        pd_error("final flush failed: %s (uncommitted input will be replayed)", err);
    if (ig->cq) rd_kafka_queue_destroy(ig->cq);
    if (ig->consumer) {
        /* Leaves the group; the rebalance callback flushes (nothing left). */
        rd_kafka_consumer_close(ig->consumer);
        rd_kafka_destroy(ig->consumer);
    }
    if (ig->producer) {
        rd_kafka_flush(ig->producer, (int)PD_MIN(ig->cfg->shutdown_timeout_ms, 10000));
        rd_kafka_destroy(ig->producer);
    }
    batch_clear(ig, NULL);
    free(ig->agg.slots);
    free(ig->dedup.slots);
    for (size_t i = 0; i < ig->nfree; i++) {
        pd_profile_free(&ig->free_entries[i]->prof);
        free(ig->free_entries[i]);
    }
    free(ig->free_entries);
    if (ig->sb) pd_store_batch_free(ig->sb);
    free(ig->pp);
    free(ig);
}

/* test_ingest.c -- the ingest core in replay mode (no Kafka): de-dup
 * decisions across flushes, restarts (index reloaded from the store) and
 * garbage collection of de-dup records, against an independent oracle (a
 * plain list of id -> latest accepted ts, the rule of ingest.c). */
#include "test.h"
#include "ingest.h"
#include "store.h"
#include "util.h"
#include "worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define WIN_MS (3600 * 1000LL)
#define NIDS 40

typedef struct {
    pd_config cfg;
    pd_schema schema;
    pd_metrics metrics;
    pd_worker w;
    pd_store *store;
} tw;

static int tw_open(tw *t, const char *dir)
{
    char err[256];
    memset(t, 0, sizeof *t);
    pd_config_init(&t->cfg);
    pd_config_set(&t->cfg, "data_dir", dir, NULL, 0);
    pd_config_set(&t->cfg, "dedup_window", "1h", NULL, 0);
    pd_config_set(&t->cfg, "id", "t", NULL, 0);
    if (pd_config_finalize(&t->cfg, err, sizeof err) != PD_OK) return PD_ERR;
    if (pd_tz_parse(&t->w.tz, t->cfg.timezone, err, sizeof err) != PD_OK) return PD_ERR;
    pd_schema_default(&t->schema, 64);
    pd_metrics_init(&t->metrics);
    pd_store_opts so = {0};
    if (pd_store_open(&t->store, dir, &t->schema, &so, err, sizeof err) != PD_OK) return PD_ERR;
    t->w.cfg = &t->cfg;
    t->w.schema = &t->schema;
    t->w.metrics = &t->metrics;
    t->w.store = t->store;
    t->w.nparts = 1;
    t->w.parts = pd_partstates_new(1);
    return PD_OK;
}

static void tw_close(tw *t)
{
    if (t->store) pd_store_close(t->store);
    free(t->w.parts);
    pd_config_free(&t->cfg);
}

static int count_recs(void *arg, uint64_t seq, const uint8_t *val, size_t vlen)
{
    (void)seq;
    (void)val;
    (void)vlen;
    (*(int *)arg)++;
    return 0;
}

TEST(ingest_dedup_across_flushes_restarts_and_gc)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-dd", pd_test_tmpdir());
    /* oracle state */
    int64_t seen[NIDS];
    int have[NIDS] = {0};
    int64_t clock = 0;
    uint64_t want_dup = 0, got_dup = 0;
    int64_t offset = 0;
    uint32_t rnd = 12345;
    int64_t base = 1763800000000LL;
    int bad = 0;
    for (int run = 0; run < 10; run++) {
        tw t;
        if (tw_open(&t, dir) != PD_OK) {
            CHECK(!"open worker");
            tw_close(&t);
            return;
        }
        pd_ingest *ig = NULL;
        CHECK_INT(pd_ingest_new(&ig, &t.w, 0, err, sizeof err), PD_OK);
        if (!ig) {
            tw_close(&t);
            return;
        }
        pd_ingest_assign_local(ig, 0);
        uint64_t before = atomic_load(&t.metrics.events_duplicate);
        for (int i = 0; i < 600; i++) {
            rnd = rnd * 1103515245u + 12345u;
            int id = (int)((rnd >> 8) % NIDS);
            rnd = rnd * 1103515245u + 12345u;
            /* time moves forward 1 min per event, with late events up to
             * 1.5 windows back (overrides with older ts, instant expiry) */
            int64_t ts = base + offset * 60000LL - (int64_t)((rnd >> 8) % (3 * WIN_MS / 2));
            char ev[256];
            int n = snprintf(ev, sizeof ev, "{\"event_id\":\"e-%d\",\"user_id\":\"u-%d\",\"ts\":%" PRId64
                             ",\"type\":\"view\"}", id, id % 7, ts);
            /* oracle */
            if (ts > clock) clock = ts;
            int dup = have[id] && seen[id] >= clock - WIN_MS && llabs(ts - seen[id]) <= WIN_MS;
            if (dup) want_dup++;
            else {
                seen[id] = ts;
                have[id] = 1;
            }
            uint64_t d0 = atomic_load(&t.metrics.events_duplicate);
            pd_ingest_record(ig, 0, offset++, -1, NULL, 0, ev, (size_t)n, NULL, 0);
            int got = atomic_load(&t.metrics.events_duplicate) != d0;
            if (got != dup && bad++ < 5) CHECK_INT(got, dup);
            if ((rnd >> 4) % 6 == 0) CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
        }
        got_dup += atomic_load(&t.metrics.events_duplicate) - before;
        pd_ingest_free(ig); /* flushes the rest */
        int nrec = 0;
        CHECK_INT(pd_store_scan_dedup(t.store, 0, count_recs, &nrec, err, sizeof err), PD_OK);
        /* GC: about 1 event per minute and records are at most ~1 flush of
         * ~97 events; only records touching the last window (+ late
         * events, 3 windows) may survive, far fewer than were written. */
        CHECK(nrec > 0 && nrec < 40);
        tw_close(&t);
    }
    CHECK_INT(got_dup, want_dup);
    CHECK(want_dup > 100);
}

/* Feeds one event to partition 0; returns 1 when it was counted a duplicate. */
static int feed(tw *t, pd_ingest *ig, int64_t *off, const char *id, int64_t minute)
{
    char ev[256];
    int64_t ts = 1763800000000LL + minute * 60000LL;
    int n = id ? snprintf(ev, sizeof ev, "{\"event_id\":\"%s\",\"user_id\":\"u\",\"ts\":%" PRId64 ",\"type\":\"v\"}",
                          id, ts)
               : snprintf(ev, sizeof ev, "{\"user_id\":\"u\",\"ts\":%" PRId64 ",\"type\":\"v\"}", ts);
    uint64_t d0 = atomic_load(&t->metrics.events_duplicate);
    pd_ingest_record(ig, 0, (*off)++, -1, NULL, 0, ev, (size_t)n, NULL, 0);
    return atomic_load(&t->metrics.events_duplicate) != d0;
}

/* Opens the worker in dir and a replay-mode ingest owning partition 0;
 * NULL (after a failed CHECK, everything closed) when that fails. */
static pd_ingest *tw_start(tw *t, const char *dir)
{
    char err[256];
    pd_ingest *ig = NULL;
    if (tw_open(t, dir) != PD_OK || pd_ingest_new(&ig, &t->w, 0, err, sizeof err) != PD_OK) {
        CHECK(!"open worker and ingest");
        tw_close(t);
        return NULL;
    }
    pd_ingest_assign_local(ig, 0);
    return ig;
}

/* The case garbage collection must get right: a late event overrides a
 * still-live entry with an already expired one. The record holding the
 * override must outlive the entry it overrode, else a reload resurrects it. */
TEST(ingest_dedup_gc_keeps_overrides)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-dd2", pd_test_tmpdir());
    int64_t off = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    /* window 60 min; minutes relative to a base */
    CHECK_INT(feed(&t, ig, &off, "x", 150), 0);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    CHECK_INT(feed(&t, ig, &off, "y", 200), 0); /* clock 200: x@150 still live (>= 140) */
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    CHECK_INT(feed(&t, ig, &off, "x", 80), 0);  /* 70 min from 150: accepted; x -> 80, expired */
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    CHECK_INT(feed(&t, ig, &off, "z", 80), 0);  /* z: accepted late, expired at once */
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    /* many flushes (so that every kind of collection pass runs) */
    for (int i = 0; i < 200; i++) {
        feed(&t, ig, &off, NULL, 201);
        CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    }
    pd_ingest_free(ig);
    tw_close(&t);

    /* Restart: the index is rebuilt from the records left after GC. */
    if (!(ig = tw_start(&t, dir))) return;
    CHECK_INT(feed(&t, ig, &off, "x", 170), 0); /* x -> 80 (expired), not 150: accepted */
    CHECK_INT(feed(&t, ig, &off, "x", 175), 1); /* within 60 min of 170 */
    CHECK_INT(feed(&t, ig, &off, "y", 150), 1); /* y -> 200, live: 50 min away: dup */
    CHECK_INT(feed(&t, ig, &off, "z", 81), 0);  /* z -> 80, expired */
    /* the clock moves past everything: every record becomes collectable */
    CHECK_INT(feed(&t, ig, &off, "w", 1000), 0);
    for (int i = 0; i < 70; i++) {
        feed(&t, ig, &off, NULL, 1000);
        CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    }
    int nrec = 0;
    CHECK_INT(pd_store_scan_dedup(t.store, 0, count_recs, &nrec, err, sizeof err), PD_OK);
    CHECK_INT(nrec, 1); /* only the one holding w@1000 */
    pd_ingest_free(ig);
    tw_close(&t);
}

/* A failed commit stops committing: the in-memory de-dup bookkeeping and
 * offsets have moved past the failed batch, so any later commit (the final
 * flush of an orderly shutdown included) would checkpoint past events that
 * were never written. The store must keep the last good checkpoint and the
 * profile of the events before it (oracle: their count). */
TEST(ingest_commit_failure_stops_committing)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-cfail", pd_test_tmpdir());
    int64_t off = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    for (int i = 0; i < 5; i++) feed(&t, ig, &off, NULL, 10 + i);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK); /* good: checkpoint 5 */
    pd_store_fail_commits(t.store, 1);
    for (int i = 0; i < 3; i++) feed(&t, ig, &off, NULL, 20 + i);
    CHECK(pd_ingest_flush(ig, err, sizeof err) != PD_OK); /* injected failure */
    pd_store_fail_commits(t.store, 0);
    for (int i = 0; i < 4; i++) feed(&t, ig, &off, NULL, 30 + i);
    CHECK(pd_ingest_flush(ig, err, sizeof err) != PD_OK); /* refused: an earlier commit failed */
    pd_ingest_free(ig);                                   /* final flush refused as well */
    pd_checkpoint cp;
    CHECK_INT(pd_store_get_checkpoint(t.store, 0, &cp), PD_OK);
    CHECK_INT(cp.next_offset, 5);
    pd_store_range r;
    memset(&r, 0, sizeof r);
    CHECK_INT(pd_store_get_profile_range(t.store, NULL, 0, INT64_MAX, 0, "u", 1, &r, err, sizeof err), PD_OK);
    uint64_t events = 0;
    for (int i = 0; i < r.n; i++) events += r.profs[i].events;
    CHECK_INT(events, 5);
    pd_store_range_free(&r);
    tw_close(&t);
}

/* Feeds n events of distinct users (ids from *next on) at minute 10. */
static void feed_users(pd_ingest *ig, int64_t *off, int *next, int n)
{
    for (int i = 0; i < n; i++) {
        char ev[160];
        int len = snprintf(ev, sizeof ev, "{\"user_id\":\"user-%d\",\"ts\":%lld,\"type\":\"v\"}", (*next)++,
                           1763800000000LL + 600000LL);
        pd_ingest_record(ig, 0, (*off)++, -1, NULL, 0, ev, (size_t)len, NULL, 0);
    }
}

static uint64_t batch_bytes(tw *t)
{
    return atomic_load(&t->metrics.batch_bytes[0]) + atomic_load(&t->metrics.batch_bytes[1]);
}

/* A burst (one batch of 30,000 new user-days) grows the batch memory; once
 * the batches stay small for two windows of commits, it is given back; a
 * second burst grows it again. Every event is counted (oracle: the number
 * fed; the stored profiles of a sample of users). */
TEST(ingest_batch_memory_follows_load)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-trim", pd_test_tmpdir());
    int64_t off = 0;
    int next = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    const uint64_t idle = batch_bytes(&t);
    feed_users(ig, &off, &next, 30000);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    const uint64_t peak = batch_bytes(&t);
    CHECK(peak > idle + 30000 * 100); /* at least the 30,000 entries */
    for (int i = 0; i < 4 * 64 + 2; i++) {
        feed_users(ig, &off, &next, 1);
        CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    }
    const uint64_t after = batch_bytes(&t);
    CHECK(after < peak / 8);
    feed_users(ig, &off, &next, 30000);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    CHECK(batch_bytes(&t) > after + 30000 * 100);
    CHECK_INT(atomic_load(&t.metrics.events_accepted), (uint64_t)next);
    pd_ingest_free(ig);
    pd_store_range r;
    memset(&r, 0, sizeof r);
    for (int u = 0; u < next; u += 997) {
        char user[32];
        int ul = snprintf(user, sizeof user, "user-%d", u);
        CHECK_INT(pd_store_get_profile_range(t.store, NULL, 0, INT64_MAX, 0, user, (size_t)ul, &r, err, sizeof err),
                  PD_OK);
        CHECK_INT(r.n, 1);
        if (r.n == 1) CHECK_INT(r.profs[0].events, 1);
    }
    pd_store_range_free(&r);
    tw_close(&t);
}

/* What HTTP threads see of a partition (pd_partstate) follows the ingest
 * thread's state: owned and ready once assigned, the next offset and clock
 * after each record, the committed offset once a flush is durable
 * (oracle: the offsets and times fed). */
TEST(ingest_publishes_partition_state)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-pub", pd_test_tmpdir());
    int64_t off = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    pd_partstate *ps = &t.w.parts[0];
    CHECK_INT(atomic_load(&ps->owned), 1);
    CHECK_INT(atomic_load(&ps->ready), 1);
    CHECK_INT(atomic_load(&ps->replica), 0);
    CHECK_INT(atomic_load(&ps->restoring), 0);
    CHECK_INT(atomic_load(&ps->committed), -1);
    feed(&t, ig, &off, "a", 30);
    feed(&t, ig, &off, "b", 20); /* older: the clock stays */
    CHECK_INT(atomic_load(&ps->next_offset), 2);
    CHECK_INT(atomic_load(&ps->clock_ms), 1763800000000LL + 30 * 60000LL);
    CHECK_INT(atomic_load(&ps->committed), -1);
    CHECK_INT(pd_ingest_flush_async(ig, err, sizeof err), PD_OK);
    feed(&t, ig, &off, "c", 40);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    CHECK_INT(atomic_load(&ps->committed), 3);
    CHECK_INT(atomic_load(&ps->next_offset), 3);
    CHECK_INT(atomic_load(&ps->clock_ms), 1763800000000LL + 40 * 60000LL);
    pd_ingest_free(ig);
    tw_close(&t);

    /* a restart publishes the checkpoint it resumes from */
    if (!(ig = tw_start(&t, dir))) return;
    ps = &t.w.parts[0];
    CHECK_INT(atomic_load(&ps->committed), 3);
    CHECK_INT(atomic_load(&ps->next_offset), 3);
    CHECK_INT(atomic_load(&ps->clock_ms), 1763800000000LL + 40 * 60000LL);
    pd_ingest_free(ig);
    tw_close(&t);
}

/* test_ingest.c -- the ingest core in replay mode (no Kafka): de-dup
 * decisions across flushes, restarts (index reloaded from the store) and
 * garbage collection of de-dup records, against an independent oracle (a
 * plain list of id -> latest accepted delivery time and the de-dup clock,
 * the rule of ingest.c); the future bound of record times (rectime.h)
 * against a reference written another way, and the two holes of issue 22
 * it closes (a year-2199 record; a late client's retry). */
#include "test.h"
#include "event.h"
#include "ingest.h"
#include "rectime.h"
#include "store.h"
#include "util.h"
#include "worker.h"

#include <inttypes.h>
#include <pthread.h>
#include <unistd.h>
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
    int64_t clock = 0; /* the de-dup clock C */
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
            /* deliveries 1 min apart (CreateTime), one in four stamped up
             * to 1.5 windows back; events up to 3 days old (late uploads) */
            int64_t rts = base + offset * 60000LL;
            if ((rnd >> 8) % 4 == 0) rts -= (int64_t)((rnd >> 12) % (3 * WIN_MS / 2));
            rnd = rnd * 1103515245u + 12345u;
            int64_t ts = rts - (int64_t)((rnd >> 8) % (3 * 24 * WIN_MS));
            char ev[256];
            int n = snprintf(ev, sizeof ev, "{\"event_id\":\"e-%d\",\"user_id\":\"u-%d\",\"ts\":%" PRId64
                             ",\"type\":\"view\"}", id, id % 7, ts);
            /* oracle */
            int64_t c = rts > clock ? rts : clock;
            int dup = have[id] && seen[id] >= c - WIN_MS;
            if (dup) want_dup++;
            else {
                seen[id] = c;
                have[id] = 1;
                clock = c;
            }
            uint64_t d0 = atomic_load(&t.metrics.events_duplicate);
            pd_ingest_record(ig, 0, offset++, rts, PD_RECTS_CREATE, NULL, 0, ev, (size_t)n, NULL, 0);
            int got = atomic_load(&t.metrics.events_duplicate) != d0;
            if (got != dup && bad++ < 5) CHECK_INT(got, dup);
            if ((rnd >> 4) % 6 == 0) CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
        }
        got_dup += atomic_load(&t.metrics.events_duplicate) - before;
        pd_ingest_free(ig); /* flushes the rest */
        int nrec = 0;
        CHECK_INT(pd_store_scan_dedup(t.store, 0, count_recs, &nrec, err, sizeof err), PD_OK);
        /* GC: about 1 delivery per minute and records are at most ~1 flush
         * of ~97 events; only records touching the last window may
         * survive, far fewer than were written. */
        CHECK(nrec > 0 && nrec < 40);
        tw_close(&t);
    }
    CHECK_INT(got_dup, want_dup);
    CHECK(want_dup > 100);
}

/* Events stored for user "u" over all days (-1 when the read fails). */
static int64_t stored_events(tw *t)
{
    char err[256];
    pd_store_range r;
    memset(&r, 0, sizeof r);
    if (pd_store_get_profile_range(t->store, NULL, 0, INT64_MAX, 0, "u", 1, &r, err, sizeof err) != PD_OK) return -1;
    int64_t events = 0;
    for (int i = 0; i < r.n; i++) events += (int64_t)r.profs[i].events;
    pd_store_range_free(&r);
    return events;
}

/* Feeds one event at ts (ms) in a record stamped rec_ts of kind `kind` to
 * partition 0; returns 1 when it was counted a duplicate. */
static int feed_at(tw *t, pd_ingest *ig, int64_t *off, const char *id, int64_t ts, int64_t rec_ts, int kind)
{
    char ev[256];
    int n = id ? snprintf(ev, sizeof ev, "{\"event_id\":\"%s\",\"user_id\":\"u\",\"ts\":%" PRId64 ",\"type\":\"v\"}",
                          id, ts)
               : snprintf(ev, sizeof ev, "{\"user_id\":\"u\",\"ts\":%" PRId64 ",\"type\":\"v\"}", ts);
    uint64_t d0 = atomic_load(&t->metrics.events_duplicate);
    pd_ingest_record(ig, 0, (*off)++, rec_ts, kind, NULL, 0, ev, (size_t)n, NULL, 0);
    return atomic_load(&t->metrics.events_duplicate) != d0;
}

#define MIN_MS(m) (1763800000000LL + (m) * 60000LL) /* minutes after a base (November 2025) */

/* Feeds one event to partition 0; returns 1 when it was counted a duplicate. */
static int feed(tw *t, pd_ingest *ig, int64_t *off, const char *id, int64_t minute)
{
    char ev[256];
    int64_t ts = 1763800000000LL + minute * 60000LL;
    int n = id ? snprintf(ev, sizeof ev, "{\"event_id\":\"%s\",\"user_id\":\"u\",\"ts\":%" PRId64 ",\"type\":\"v\"}",
                          id, ts)
               : snprintf(ev, sizeof ev, "{\"user_id\":\"u\",\"ts\":%" PRId64 ",\"type\":\"v\"}", ts);
    uint64_t d0 = atomic_load(&t->metrics.events_duplicate);
    pd_ingest_record(ig, 0, (*off)++, -1, 0, NULL, 0, ev, (size_t)n, NULL, 0);
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

/* The de-dup window follows deliveries (CreateTime stamps, minutes below)
 * through flushes, collection and a restart: an id re-delivered with an
 * old stamp while the clock has moved less than the window is a duplicate
 * (the old event-time rule accepted it again), an entry first delivered
 * with an old stamp is kept at the clock, the clock is recomputed on
 * reload, and once it has moved past everything one record is left. */
TEST(ingest_dedup_on_delivery_across_restart_and_gc)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-dd2", pd_test_tmpdir());
    int64_t off = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    const int C = PD_RECTS_CREATE;
    /* window 60 min */
    CHECK_INT(feed_at(&t, ig, &off, "x", MIN_MS(150), MIN_MS(150), C), 0);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    CHECK_INT(feed_at(&t, ig, &off, "y", MIN_MS(200), MIN_MS(200), C), 0); /* clock 200: x@150 live (>= 140) */
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    CHECK_INT(feed_at(&t, ig, &off, "x", MIN_MS(80), MIN_MS(80), C), 1);  /* stamped 80: max(200, 80) - 150 < 60 */
    CHECK_INT(feed_at(&t, ig, &off, "z", MIN_MS(10), MIN_MS(10), C), 0);  /* kept at 200, not 10 */
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    for (int i = 0; i < 200; i++) { /* every kind of collection pass */
        feed_at(&t, ig, &off, NULL, MIN_MS(201), MIN_MS(201), C);
        CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    }
    pd_ingest_free(ig);
    tw_close(&t);

    /* Restart: the index and its clock (200) are rebuilt from the records left. */
    if (!(ig = tw_start(&t, dir))) return;
    CHECK_INT(feed_at(&t, ig, &off, "q", MIN_MS(10), MIN_MS(10), C), 0);   /* kept at the reloaded clock 200 */
    CHECK_INT(feed_at(&t, ig, &off, "z", MIN_MS(10), MIN_MS(205), C), 1);  /* z@200, clock 205 */
    CHECK_INT(feed_at(&t, ig, &off, "q", MIN_MS(10), MIN_MS(206), C), 1);  /* q@200 >= 206 - 60 */
    CHECK_INT(feed_at(&t, ig, &off, "x", MIN_MS(170), MIN_MS(150), C), 1); /* x@150 >= 200 - 60 */
    CHECK_INT(feed_at(&t, ig, &off, "x", MIN_MS(170), MIN_MS(211), C), 0); /* clock 211: x@150 expired */
    CHECK_INT(feed_at(&t, ig, &off, "x", MIN_MS(171), MIN_MS(212), C), 1);
    /* the clock moves past everything: every record but the newest goes */
    CHECK_INT(feed_at(&t, ig, &off, "w", MIN_MS(1000), MIN_MS(1000), C), 0);
    for (int i = 0; i < 70; i++) {
        feed_at(&t, ig, &off, NULL, MIN_MS(1000), MIN_MS(1000), C);
        CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    }
    int nrec = 0;
    CHECK_INT(pd_store_scan_dedup(t.store, 0, count_recs, &nrec, err, sizeof err), PD_OK);
    CHECK_INT(nrec, 1); /* only the one holding w@1000 */
    pd_ingest_free(ig);
    tw_close(&t);
}

/* Issue 22, hole 2: a client offline for days retries its upload. Four
 * events 30-120 h old (event time), each delivered twice within a second
 * (CreateTime = when they were sent), count once each -- also when the
 * worker restarts between the two deliveries (the de-dup clock is
 * recomputed from the store). The event-time rule counted them 7 times. */
TEST(ingest_late_retry_counts_once)
{
    char dir[400], err[256];
    for (int restart = 0; restart < 2; restart++) {
        snprintf(dir, sizeof dir, "%s/ingest-retry%d", pd_test_tmpdir(), restart);
        int64_t off = 0;
        tw t;
        pd_ingest *ig = NULL;
        if (!(ig = tw_start(&t, dir))) return;
        const int64_t now = pd_now_ms(), h = 3600000;
        const int64_t age[4] = {30 * h, 60 * h, 90 * h, 120 * h};
        static const char *const ids[4] = {"late-1", "late-2", "late-3", "late-4"};
        int dups = 0;
        for (int i = 0; i < 4; i++) dups += feed_at(&t, ig, &off, ids[i], now - age[i], now + i * 100, PD_RECTS_CREATE);
        if (restart) {
            CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
            pd_ingest_free(ig);
            tw_close(&t);
            if (!(ig = tw_start(&t, dir))) return;
        }
        for (int i = 0; i < 4; i++)
            dups += feed_at(&t, ig, &off, ids[i], now - age[i], now + 500 + i * 100, PD_RECTS_CREATE);
        CHECK_INT(dups, 4);
        CHECK_INT(atomic_load(&t.metrics.events_accepted), restart ? 0 : 4); /* (counters restart with the worker) */
        CHECK_INT(atomic_load(&t.metrics.events_duplicate), 4);
        CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
        CHECK_INT(stored_events(&t), 4);
        pd_ingest_free(ig);
        tw_close(&t);
    }
}

/* The future bound against a reference written another way (rectime.h):
 * every kind of record timestamp, record and event times around the
 * worker's clock W and the skew S. A later clock never rejects what an
 * earlier one accepted (the monotony the determinism argument uses). */
TEST(rectime_rule_matches_reference)
{
    const int64_t W = 1795000000000LL, S = 3600000, Y2199 = 7226000000000LL;
    const int64_t d[] = {-3 * S, -S - 1, -S, -1, 0, 1, S - 1, S, S + 1, 2 * S, Y2199 - W};
    const int n = (int)PD_ARRAY_LEN(d);
    int bad = 0, rejected = 0;
    char err[512];
    for (int kind = 0; kind <= 2; kind++)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                int64_t r = W + d[i], ts = W + d[j];
                int want = PD_EV_OK;
                if (kind == PD_RECTS_CREATE && r - W > S) want = PD_EV_FUTURE_TIMESTAMP;
                else if (kind != PD_RECTS_NONE && ts - r > S) want = PD_EV_FUTURE_TS;
                else if (kind != PD_RECTS_APPEND && ts - W > S) want = PD_EV_FUTURE_TS;
                err[0] = '\0';
                int got = pd_rectime_check(kind, r, ts, W, S, err, sizeof err);
                if (got != want && bad++ < 5)
                    pd_test_fail(__FILE__, __LINE__, "kind %d r W%+" PRId64 " ts W%+" PRId64 ": %s, want %s", kind,
                                 d[i], d[j], pd_ev_reason_name(got), pd_ev_reason_name(want));
                if (got != PD_EV_OK) {
                    rejected++;
                    if (!err[0] && bad++ < 5) CHECK(!"a rejection has a message");
                }
                if (got == PD_EV_OK && pd_rectime_check(kind, r, ts, W + S, S, err, sizeof err) != PD_EV_OK &&
                    bad++ < 5)
                    CHECK(!"a later clock rejects what an earlier one accepted");
                if (pd_rectime_uses_wall(kind) != (kind != PD_RECTS_APPEND) && bad++ < 5) CHECK(!"uses_wall");
            }
    CHECK_INT(bad, 0);
    CHECK(rejected > 50);
    CHECK_INT(pd_rectime_delivery(PD_RECTS_CREATE, 5, 7), 5);
    CHECK_INT(pd_rectime_delivery(PD_RECTS_APPEND, 5, 7), 5);
    CHECK_INT(pd_rectime_delivery(PD_RECTS_NONE, 5, 7), 7);
    /* any int64 record timestamp is described without overflow */
    CHECK_INT(pd_rectime_check(PD_RECTS_CREATE, INT64_MAX, W, W, S, err, sizeof err), PD_EV_FUTURE_TIMESTAMP);
    CHECK(strstr(err, "9223372036854775807 ms") != NULL);
    CHECK_INT(pd_rectime_check(PD_RECTS_APPEND, INT64_MIN, W, W, S, err, sizeof err), PD_EV_FUTURE_TS);
    CHECK_INT(pd_rectime_check(PD_RECTS_APPEND, INT64_MAX, W, W, S, err, sizeof err), PD_EV_OK);
}

/* Issue 22, hole 1: one event of year 2199 with a matching record
 * timestamp (CreateTime) used to move the partition clock to 2199, so
 * retention dropped every day and every later event was too_old. Now it,
 * and its kin (LogAppendTime now, no record timestamp, an old record
 * timestamp), are dead-lettered with a reason; the clock, the checkpoint
 * and the retained days stay, and later events still count. */
TEST(ingest_future_record_cannot_move_the_clock)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-future", pd_test_tmpdir());
    int64_t off = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    const int64_t now = pd_now_ms(), h = 3600000, Y2199 = 7226000000000LL;
    feed_at(&t, ig, &off, "a", now - h, now - h, PD_RECTS_CREATE);
    feed_at(&t, ig, &off, "old", now - 50 * 24 * h, now - h, PD_RECTS_CREATE); /* 50 days back: retained */
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    feed_at(&t, ig, &off, "p1", Y2199, Y2199, PD_RECTS_CREATE);         /* the poison of the issue */
    feed_at(&t, ig, &off, "p2", Y2199, now, PD_RECTS_APPEND);           /* broker time now */
    feed_at(&t, ig, &off, "p3", Y2199, -1, PD_RECTS_NONE);              /* no record timestamp */
    feed_at(&t, ig, &off, "p4", now + 2 * h, now + 2 * h, PD_RECTS_CREATE); /* 2 h ahead of this clock */
    feed_at(&t, ig, &off, "p5", now + 2 * h, now - h, PD_RECTS_CREATE); /* ts 3 h after its record */
    CHECK_INT(atomic_load(&t.metrics.events_dlq[PD_EV_FUTURE_TIMESTAMP]), 2);
    CHECK_INT(atomic_load(&t.metrics.events_dlq[PD_EV_FUTURE_TS]), 3);
    CHECK_INT(atomic_load(&t.w.parts[0].clock_ms), now - h);
    /* 58 days back: retained even when "c" below moves the clock into
     * tomorrow (the test runs at any time of day) */
    feed_at(&t, ig, &off, "b", now - 58 * 24 * h, now, PD_RECTS_CREATE);
    feed_at(&t, ig, &off, "c", now + h / 2, now, PD_RECTS_CREATE);       /* within the skew: accepted */
    CHECK_INT(atomic_load(&t.metrics.events_too_old), 0);
    CHECK_INT(atomic_load(&t.metrics.events_accepted), 4);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    pd_checkpoint cp;
    CHECK_INT(pd_store_get_checkpoint(t.store, 0, &cp), PD_OK);
    CHECK_INT(cp.clock_ms, now + h / 2);
    CHECK_INT(cp.next_offset, off);
    CHECK_INT(stored_events(&t), 4); /* no day dropped */
    pd_ingest_free(ig);
    tw_close(&t);
}

/* The worker's clock decides only records stamped beyond the skew: such a
 * record is rejected while the clock is behind it and accepted by a later
 * decision once real time has caught up (the documented divergence of
 * rectime.h); the wall clock cached per batch is re-read before a
 * rejection is final. */
static int64_t fake_wall;
static int64_t fake_now(void) { return fake_wall; }

TEST(ingest_future_bound_reads_the_clock_before_rejecting)
{
    char dir[400];
    snprintf(dir, sizeof dir, "%s/ingest-wall", pd_test_tmpdir());
    int64_t off = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    const int64_t h = 3600000, w0 = MIN_MS(0);
    fake_wall = w0;
    pd_ingest_set_wall_clock(ig, fake_now);
    feed_at(&t, ig, &off, "f", w0 + 2 * h, w0 + 2 * h, PD_RECTS_CREATE);
    CHECK_INT(atomic_load(&t.metrics.events_dlq[PD_EV_FUTURE_TIMESTAMP]), 1);
    fake_wall = w0 + 3 * h; /* not pushed: the cached value is stale */
    feed_at(&t, ig, &off, "f", w0 + 2 * h, w0 + 2 * h, PD_RECTS_CREATE);
    CHECK_INT(atomic_load(&t.metrics.events_accepted), 1);
    CHECK_INT(atomic_load(&t.metrics.events_dlq[PD_EV_FUTURE_TIMESTAMP]), 1);
    /* LogAppendTime: the worker's clock plays no part */
    fake_wall = 0;
    feed_at(&t, ig, &off, "g", w0 + 2 * h, w0 + 2 * h, PD_RECTS_APPEND);
    CHECK_INT(atomic_load(&t.metrics.events_accepted), 2);
    pd_ingest_free(ig);
    tw_close(&t);
}

/* A failed commit stops committing: the in-memory de-dup bookkeeping and
 * offsets have moved past the failed batch, so any later commit (the final
 * flush of an orderly shutdown included) would checkpoint past events that
 * were never written. The store must keep the last good checkpoint and the
 * profile of the events before it (oracle: their count). */
/* Turns the injected commit failure off after 300 ms (another thread). */
static void *unfail_later(void *arg)
{
    usleep(300000);
    pd_store_fail_commits((pd_store *)arg, 0);
    return NULL;
}

/* A store write that fails (a full disk; injected) is retried with the
 * same WriteBatch: the flush waits until it succeeds and every event
 * lands exactly once (oracle: the number fed). */
TEST(ingest_commit_failure_is_retried)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/ingest-cretry", pd_test_tmpdir());
    int64_t off = 0;
    tw t;
    pd_ingest *ig = NULL;
    if (!(ig = tw_start(&t, dir))) return;
    for (int i = 0; i < 5; i++) feed(&t, ig, &off, NULL, 10 + i);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK); /* good: checkpoint 5 */
    pd_store_fail_commits(t.store, 1);
    for (int i = 0; i < 3; i++) feed(&t, ig, &off, NULL, 20 + i);
    pthread_t th;
    pthread_create(&th, NULL, unfail_later, t.store);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK); /* retried until the failure ends */
    pthread_join(th, NULL);
    for (int i = 0; i < 4; i++) feed(&t, ig, &off, NULL, 30 + i);
    CHECK_INT(pd_ingest_flush(ig, err, sizeof err), PD_OK);
    pd_ingest_free(ig);
    pd_checkpoint cp;
    CHECK_INT(pd_store_get_checkpoint(t.store, 0, &cp), PD_OK);
    CHECK_INT(cp.next_offset, 12);
    CHECK_INT(stored_events(&t), 12);
    tw_close(&t);
}

/* A shutdown while a failed write is being retried gives it up: nothing
 * of it is stored, the checkpoint stays where it was (a restart resumes
 * there), and the final flush is refused. */
TEST(ingest_commit_failure_at_shutdown_stops_committing)
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
    CHECK_INT(pd_ingest_flush_async(ig, err, sizeof err), PD_OK); /* handed over; the write fails */
    usleep(200000);
    pd_ingest_free(ig); /* cancels the retry; final flush refused */
    pd_store_fail_commits(t.store, 0);
    pd_checkpoint cp;
    CHECK_INT(pd_store_get_checkpoint(t.store, 0, &cp), PD_OK);
    CHECK_INT(cp.next_offset, 5);
    CHECK_INT(stored_events(&t), 5);
    tw_close(&t);
}

/* Feeds n events of distinct users (ids from *next on) at minute 10. */
static void feed_users(pd_ingest *ig, int64_t *off, int *next, int n)
{
    for (int i = 0; i < n; i++) {
        char ev[160];
        int len = snprintf(ev, sizeof ev, "{\"user_id\":\"user-%d\",\"ts\":%lld,\"type\":\"v\"}", (*next)++,
                           1763800000000LL + 600000LL);
        pd_ingest_record(ig, 0, (*off)++, -1, 0, NULL, 0, ev, (size_t)len, NULL, 0);
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

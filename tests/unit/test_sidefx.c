/* test_sidefx.c -- the side-effect frontier (sidefx.c) and the offset
 * range rule (offsets.c's pd_offsets_classify), without a broker.
 *
 * Oracles: the values written (record round trip through the store, in
 * the same WriteBatch as the checkpoint, gone with the partition), the
 * rule as stated in sidefx.h / offsets.h, and for the redo the reasons
 * tests/oracle.py gives the same records (invalid_json, future_ts) and
 * Kafka's murmur2 partition of the user. */
#include "test.h"
#include "dlq.h"
#include "event.h"
#include "metrics.h"
#include "offsets.h"
#include "sidefx.h"
#include "store.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

TEST(sidefx_record_roundtrip)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/sidefx", pd_test_tmpdir());
    pd_schema sch;
    pd_schema_default(&sch, 64);
    pd_store *st = NULL;
    pd_store_opts so = {0};
    if (pd_store_open(&st, dir, &sch, &so, err, sizeof err) != PD_OK) {
        CHECK(!"open store");
        return;
    }
    pd_sidefx x = {0}, y = {0};
    pd_sidefx_free(&x);
    CHECK_INT(pd_sidefx_load(&y, st, 3, err, sizeof err), PD_OK); /* none stored: unknown */
    CHECK_INT(y.done, -1);
    x.done = 100;
    for (int i = 0; i < 20; i++) CHECK_INT(pd_sidefx_add_note(&x, 100 + 3 * i, 1000 + i), PD_OK);
    pd_store_batch *b = pd_store_batch_new(st);
    pd_store_batch_set_checkpoint(b, 3, 200, 5);
    pd_sidefx_stage(&x, b, 3);
    CHECK_INT(x.dirty, 0);
    CHECK_INT(pd_store_commit(st, b, err, sizeof err), PD_OK);
    CHECK_INT(pd_sidefx_load(&y, st, 3, err, sizeof err), PD_OK);
    CHECK_INT(y.done, 100);
    CHECK_INT(y.n, 20);
    CHECK_INT(y.notes[7].offset, 121);
    CHECK_INT(y.notes[7].wall_ms, 1007);
    /* advancing drops the notes below the frontier */
    pd_sidefx_advance(&y, 130);
    CHECK_INT(y.done, 130);
    CHECK_INT(y.n, 10);
    CHECK_INT(y.notes[0].offset, 130);
    pd_sidefx_advance(&y, 120); /* never backwards */
    CHECK_INT(y.done, 130);
    /* the cap */
    for (int i = (int)y.n; i < PD_SIDEFX_MAX_NOTES; i++) CHECK_INT(pd_sidefx_add_note(&y, 1000 + i, 0), PD_OK);
    CHECK_INT(pd_sidefx_add_note(&y, 999999, 0), PD_ERANGE);
    /* deleted with the partition */
    CHECK_INT(pd_store_delete_partition(st, 3, err, sizeof err), PD_OK);
    CHECK_INT(pd_sidefx_load(&y, st, 3, err, sizeof err), PD_OK);
    CHECK_INT(y.done, -1);
    CHECK_INT(y.n, 0);
    pd_sidefx_free(&x);
    pd_sidefx_free(&y);
    pd_store_batch_free(b);
    pd_store_close(st);
}

TEST(sidefx_takeover_rule)
{
    CHECK_INT(pd_sidefx_takeover(-1, -1, 50), -1);   /* nothing known */
    CHECK_INT(pd_sidefx_takeover(10, -1, 50), 10);
    CHECK_INT(pd_sidefx_takeover(-1, 20, 50), 20);
    CHECK_INT(pd_sidefx_takeover(10, 20, 50), 20);   /* the furthest */
    CHECK_INT(pd_sidefx_takeover(30, 20, 50), 30);
    CHECK_INT(pd_sidefx_takeover(30, 80, 50), 30);   /* beyond the end: another incarnation */
    CHECK_INT(pd_sidefx_takeover(60, 80, 50), -1);
    CHECK_INT(pd_sidefx_takeover(60, 80, -1), 80);   /* end unknown */
}

TEST(sidefx_redo_decisions)
{
    char err[64];
    pd_config cfg;
    pd_config_init(&cfg);
    CHECK_INT(pd_config_finalize(&cfg, err, sizeof err), PD_OK);
    pd_schema sch;
    pd_schema_default(&sch, 64);
    pd_metrics m;
    pd_metrics_init(&m);
    volatile sig_atomic_t stop = 0;
    pd_dlq *d = NULL;
    CHECK_INT(pd_dlq_new(&d, &cfg, &m, &stop, 0, err, sizeof err), PD_OK);
    const int32_t np = 4;
    const int64_t now = 1790000000000LL, hour = 3600000;
    /* a user of partition 1 and one of another partition */
    char u1[32] = "", u2[32] = "";
    for (int i = 0; !u1[0] || !u2[0]; i++) {
        char u[32];
        snprintf(u, sizeof u, "u-%d", i);
        if (pd_partition_for(u, strlen(u), np) == 1) { if (!u1[0]) strcpy(u1, u); }
        else if (!u2[0]) strcpy(u2, u);
    }
    pd_sidefx x = {0};
    pd_sidefx_free(&x);
    x.done = 0;
    char v[256];
    /* a record the replica rejected for its time at clock `now`: record
     * timestamp (CreateTime) and ts 2 h ahead. The redo runs 3 h later,
     * when neither is ahead any more: the note's clock decides, as the
     * replica did. */
    int n = snprintf(v, sizeof v, "{\"user_id\":\"%s\",\"ts\":%lld,\"type\":\"view\"}", u1, (long long)(now + 2 * hour));
    CHECK_INT(pd_sidefx_add_note(&x, 5, now), PD_OK);
    CHECK_INT(pd_sidefx_redo(&x, d, &sch, &cfg, np, 1, 5, now + 2 * hour, 1, NULL, 0, v, (size_t)n, now + 3 * hour), PD_SIDEFX_DLQ);
    CHECK_INT(atomic_load(&m.events_dlq[PD_EV_FUTURE_TIMESTAMP]), 1);
    /* the same record without a note: the replica accepted it; so does the redo */
    CHECK_INT(pd_sidefx_redo(&x, d, &sch, &cfg, np, 1, 6, now + 2 * hour, 1, NULL, 0, v, (size_t)n, now + 3 * hour),
              PD_SIDEFX_NONE);
    /* without a note and still ahead of the redo's clock: DLQ */
    CHECK_INT(pd_sidefx_redo(&x, d, &sch, &cfg, np, 1, 7, now + 2 * hour, 1, NULL, 0, v, (size_t)n, now), PD_SIDEFX_DLQ);
    CHECK_INT(atomic_load(&m.events_dlq[PD_EV_FUTURE_TIMESTAMP]), 2);
    /* malformed: DLQ whatever the notes */
    CHECK_INT(pd_sidefx_redo(&x, d, &sch, &cfg, np, 1, 8, now, 1, NULL, 0, "{broken", 7, now), PD_SIDEFX_DLQ);
    CHECK_INT(atomic_load(&m.events_dlq[PD_EV_INVALID_JSON]), 1);
    /* misrouted: re-routed; routed right: nothing */
    n = snprintf(v, sizeof v, "{\"user_id\":\"%s\",\"ts\":%lld,\"type\":\"view\"}", u2, (long long)now);
    CHECK_INT(pd_sidefx_redo(&x, d, &sch, &cfg, np, 1, 9, now, 1, NULL, 0, v, (size_t)n, now), PD_SIDEFX_REROUTE);
    n = snprintf(v, sizeof v, "{\"user_id\":\"%s\",\"ts\":%lld,\"type\":\"view\"}", u1, (long long)now);
    CHECK_INT(pd_sidefx_redo(&x, d, &sch, &cfg, np, 1, 10, now, 1, NULL, 0, v, (size_t)n, now), PD_SIDEFX_NONE);
    pd_sidefx_free(&x);
    pd_dlq_free(d);
    pd_config_free(&cfg);
}

TEST(offsets_classify_rule)
{
    CHECK_INT(pd_offsets_classify(100, 100, 0, 200), PD_OFFS_OK);
    CHECK_INT(pd_offsets_classify(200, 200, 0, 200), PD_OFFS_OK);       /* at the end */
    CHECK_INT(pd_offsets_classify(201, 201, 0, 200), PD_OFFS_BACKWARDS); /* beyond it: recreated */
    CHECK_INT(pd_offsets_classify(600, 600, 0, 0), PD_OFFS_BACKWARDS);   /* recreated, empty */
    CHECK_INT(pd_offsets_classify(100, 100, 150, 300), PD_OFFS_GAP);     /* retention passed it */
    CHECK_INT(pd_offsets_classify(200, 120, 150, 300), PD_OFFS_GAP);     /* the redo start only */
    CHECK_INT(pd_offsets_classify(-1, -2, 150, 300), PD_OFFS_OK);        /* logical start */
}

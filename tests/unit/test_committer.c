/* test_committer.c -- the committer thread and the batch hand-over
 * (committer.c), the Kafka client configuration (kafka.c) and the DLQ
 * side in replay mode (dlq.c), without a broker.
 *
 * Oracle for the committer: the number of distinct (day, user) keys fed
 * and the stored profiles' event counts; a commit failure injected with
 * pd_store_fail_commits must come back as the commit's result with the
 * slot (empty batch) returned. */
#include "test.h"
#include "committer.h"
#include "diskguard.h"
#include "dlq.h"
#include "event.h"
#include "kafka.h"
#include "metrics.h"
#include "store.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DAY0 20425 /* 2025-12-02 */

/* Adds n events of users u-0 .. u-(users-1) in turn on day DAY0. */
static void fill(pd_batch_slot *s, const pd_schema *sch, int n, int users)
{
    for (int i = 0; i < n; i++) {
        char js[160], err[64];
        int len = snprintf(js, sizeof js, "{\"user_id\":\"u-%d\",\"ts\":%lld,\"type\":\"v\"}", i % users,
                           (long long)DAY0 * 86400000LL + i);
        pd_event ev;
        if (pd_event_parse(&ev, sch, js, (size_t)len, 4096, err, sizeof err) == PD_EV_OK)
            pd_batch_add(&s->batch, 0, DAY0, &ev);
        pd_event_free(&ev);
    }
}

TEST(committer_hands_over_one_owner_at_a_time)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/committer", pd_test_tmpdir());
    pd_schema sch;
    pd_schema_default(&sch, 64);
    pd_store *st = NULL;
    pd_store_opts so = {0};
    if (pd_store_open(&st, dir, &sch, &so, err, sizeof err) != PD_OK) {
        CHECK(!"open store");
        return;
    }
    pd_committer *cm = NULL;
    CHECK_INT(pd_committer_start(&cm, st, &sch, 0, err, sizeof err), PD_OK);
    pd_batch_slot slot;
    pd_batch_init(&slot.batch, NULL);
    slot.sb = pd_store_batch_new(st);
    slot.owner = PD_SLOT_INGEST;
    pd_batch_slot *mine = &slot, *back = NULL;
    uint64_t writes = 0;
    for (int round = 0; round < 3; round++) {
        fill(mine, &sch, 1000, 300);
        pd_store_batch_set_checkpoint(mine->sb, 0, 1000 * (round + 1), DAY0 * 86400000LL);
        pd_committer_submit(cm, &mine);
        CHECK(mine == NULL); /* handed over: not ours any more (nor to look at) */
        CHECK_INT(pd_committer_collect(cm, 1, &back, &writes, err, sizeof err), PD_OK);
        CHECK(back == &slot);
        CHECK_INT(back->owner, PD_SLOT_INGEST);
        CHECK_INT(writes, 300 + 1);             /* one delta per user + the partition-day's population */
        CHECK_INT(pd_batch_entries(&back->batch), 0); /* cleared by the committer */
        mine = back;
        back = NULL;
    }
    pd_checkpoint cp;
    CHECK_INT(pd_store_get_checkpoint(st, 0, &cp), PD_OK);
    CHECK_INT(cp.next_offset, 3000);
    pd_profile p;
    pd_profile_init(&p, &sch);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "u-7", 3, &p, err, sizeof err), PD_OK);
    CHECK_INT(p.events, 3 * 4); /* 1000 events over 300 users: u-7 gets 4 a round */

    /* a failed commit: the result comes back with the slot, batch emptied */
    pd_store_fail_commits(st, 1);
    fill(mine, &sch, 10, 10);
    pd_committer_submit(cm, &mine);
    err[0] = 0;
    CHECK(pd_committer_collect(cm, 1, &back, &writes, err, sizeof err) != PD_OK);
    CHECK(err[0] != 0);
    CHECK(back == &slot);
    CHECK_INT(pd_batch_entries(&back->batch), 0);
    pd_store_fail_commits(st, 0);
    pd_profile_reset(&p);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "u-7", 3, &p, err, sizeof err), PD_OK);
    CHECK_INT(p.events, 12); /* nothing of the failed commit */
    pd_profile_free(&p);

    /* not waiting: PD_EAGAIN leaves the pointer alone until it is done */
    mine = back;
    fill(mine, &sch, 5000, 5000);
    pd_committer_submit(cm, &mine);
    back = NULL;
    int rc;
    while ((rc = pd_committer_collect(cm, 0, &back, &writes, err, sizeof err)) == PD_EAGAIN) CHECK(back == NULL);
    CHECK_INT(rc, PD_OK);
    CHECK_INT(writes, 5000 + 1);
    pd_committer_stop(cm);
    pd_batch_free(&slot.batch);
    pd_store_batch_free(slot.sb);
    pd_store_close(st);
}

/* A full disk (issue 22, hole 6): with retries on, a write failing with
 * an I/O error is retried with the same WriteBatch until it succeeds --
 * stalled meanwhile, the slot not returned -- and lands exactly once
 * (oracle: the event count of a user fed a known number of events); a
 * cancel ends a retry with the failure. */
TEST(committer_retries_a_failed_write)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/committer-retry", pd_test_tmpdir());
    pd_schema sch;
    pd_schema_default(&sch, 64);
    pd_store *st = NULL;
    pd_store_opts so = {0};
    if (pd_store_open(&st, dir, &sch, &so, err, sizeof err) != PD_OK) {
        CHECK(!"open store");
        return;
    }
    pd_committer *cm = NULL;
    CHECK_INT(pd_committer_start(&cm, st, &sch, 0, err, sizeof err), PD_OK);
    pd_committer_set_retry(cm, 1);
    pd_batch_slot slot;
    pd_batch_init(&slot.batch, NULL);
    slot.sb = pd_store_batch_new(st);
    slot.owner = PD_SLOT_INGEST;
    pd_batch_slot *mine = &slot, *back = NULL;
    uint64_t writes = 0;
    pd_store_fail_commits(st, 1);
    fill(mine, &sch, 100, 10);
    pd_store_batch_set_checkpoint(mine->sb, 0, 100, DAY0 * 86400000LL);
    pd_committer_submit(cm, &mine);
    for (int i = 0; i < 500 && !pd_committer_stalled(cm, NULL, 0); i++) usleep(10000);
    char serr[256] = "";
    CHECK_INT(pd_committer_stalled(cm, serr, sizeof serr), 1);
    CHECK(strstr(serr, "injected") != NULL);
    usleep(300000); /* a few retries */
    CHECK_INT(pd_committer_collect(cm, 0, &back, &writes, err, sizeof err), PD_EAGAIN);
    CHECK(back == NULL);
    CHECK(pd_committer_write_failures(cm) >= 2);
    pd_store_fail_commits(st, 0);
    CHECK_INT(pd_committer_collect(cm, 1, &back, &writes, err, sizeof err), PD_OK);
    CHECK(back == &slot);
    CHECK_INT(pd_committer_stalled(cm, NULL, 0), 0);
    pd_checkpoint cp;
    CHECK_INT(pd_store_get_checkpoint(st, 0, &cp), PD_OK);
    CHECK_INT(cp.next_offset, 100);
    pd_profile p;
    pd_profile_init(&p, &sch);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "u-7", 3, &p, err, sizeof err), PD_OK);
    CHECK_INT(p.events, 10); /* once, not once per attempt */
    pd_profile_free(&p);

    /* cancel: the retry gives up and the failure is the result */
    mine = back;
    pd_store_fail_commits(st, 1);
    fill(mine, &sch, 10, 10);
    pd_committer_submit(cm, &mine);
    for (int i = 0; i < 500 && !pd_committer_stalled(cm, NULL, 0); i++) usleep(10000);
    pd_committer_cancel(cm);
    CHECK(pd_committer_collect(cm, 1, &back, &writes, err, sizeof err) != PD_OK);
    CHECK(back == &slot);
    pd_store_fail_commits(st, 0);
    pd_committer_stop(cm);
    pd_batch_free(&slot.batch);
    pd_store_batch_free(slot.sb);
    pd_store_close(st);
}

/* free space against the floor: pause below it, resume at 1.5x, off at 0 */
TEST(diskguard_hysteresis)
{
    pd_diskguard g;
    pd_diskguard_init(&g, 100);
    CHECK_INT(pd_diskguard_update(&g, 200), 0);
    CHECK_INT(g.low, 0);
    CHECK_INT(pd_diskguard_update(&g, 100), 0); /* at the floor: fine */
    CHECK_INT(pd_diskguard_update(&g, 99), 1);
    CHECK_INT(g.low, 1);
    CHECK_INT(pd_diskguard_update(&g, 120), 0); /* above the floor, below 150: still low */
    CHECK_INT(g.low, 1);
    CHECK_INT(pd_diskguard_update(&g, 149), 0);
    CHECK_INT(pd_diskguard_update(&g, 150), 1);
    CHECK_INT(g.low, 0);
    pd_diskguard_init(&g, 0);
    CHECK_INT(pd_diskguard_update(&g, 0), 0);
    CHECK_INT(g.low, 0);
    uint64_t fb = 0;
    char err[128];
    CHECK_INT(pd_disk_free(pd_test_tmpdir(), &fb, err, sizeof err), PD_OK);
    CHECK(fb > 0);
    CHECK(pd_disk_free("/nonexistent/dir", &fb, err, sizeof err) != PD_OK);
}

/* The operator's kafka.* settings are applied last, over ours; a bad one
 * is an error naming the key. */
TEST(kafka_conf_passthrough_overrides)
{
    char err[256], v[64];
    size_t vl = sizeof v;
    pd_config cfg;
    pd_config_init(&cfg);
    CHECK_INT(pd_config_set(&cfg, "kafka.fetch.wait.max.ms", "7", err, sizeof err), PD_OK);
    CHECK_INT(pd_config_finalize(&cfg, err, sizeof err), PD_OK);
    rd_kafka_conf_t *c = pd_kafka_conf_consumer(&cfg, "g", "earliest", NULL, NULL, NULL, err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(rd_kafka_conf_get(c, "fetch.wait.max.ms", v, &vl), RD_KAFKA_CONF_OK);
        CHECK_STR(v, "7");
        vl = sizeof v;
        CHECK_INT(rd_kafka_conf_get(c, "enable.auto.commit", v, &vl), RD_KAFKA_CONF_OK);
        CHECK_STR(v, "false");
        rd_kafka_conf_destroy(c);
    }
    CHECK_INT(pd_config_set(&cfg, "kafka.no.such.property", "1", err, sizeof err), PD_OK);
    err[0] = 0;
    c = pd_kafka_conf_consumer(&cfg, "g", "earliest", NULL, NULL, NULL, err, sizeof err);
    CHECK(c == NULL);
    CHECK(strstr(err, "kafka.no.such.property") != NULL);
    pd_config_free(&cfg);
}

/* Replay mode: DLQ records are counted by reason, nothing is produced, and
 * waiting for deliveries returns at once. */
TEST(dlq_replay_mode_counts)
{
    char err[64];
    pd_config cfg;
    pd_config_init(&cfg);
    CHECK_INT(pd_config_finalize(&cfg, err, sizeof err), PD_OK);
    pd_metrics m;
    pd_metrics_init(&m);
    volatile sig_atomic_t stop = 0;
    pd_dlq *d = NULL;
    CHECK_INT(pd_dlq_new(&d, &cfg, &m, &stop, 0, err, sizeof err), PD_OK);
    pd_dlq_send(d, PD_EV_INVALID_JSON, "bad", 0, 1, -1, NULL, 0, "x", 1);
    pd_dlq_send(d, PD_EV_INVALID_JSON, "bad", 0, 2, -1, NULL, 0, "x", 1);
    pd_dlq_send(d, PD_EV_FUTURE_TS, "late", 0, 3, 5, NULL, 0, "x", 1);
    pd_dlq_reproduce(d, 1, 0, 4, "u", 1, "x", 1);
    CHECK_INT(atomic_load(&m.events_dlq[PD_EV_INVALID_JSON]), 2);
    CHECK_INT(atomic_load(&m.events_dlq[PD_EV_FUTURE_TS]), 1);
    CHECK_INT(pd_dlq_wait(d), PD_OK);
    pd_dlq_free(d);
    pd_config_free(&cfg);
}

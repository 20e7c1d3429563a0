/*
 * test_members.c -- the membership map (members.c): the rules of the
 * static map, and the map built from membership records over librdkafka's
 * in-process mock cluster (junk, unsigned, forged, replayed, expired and
 * mis-keyed records; newer claims, leaves, silence, the members bound).
 */
#include "test.h"

#include <stdatomic.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "mac.h"
#include "members.h"
#include "metrics.h"
#include "util.h"
#include "worker.h"

#define NPARTS 4

TEST(members_static_rules)
{
    pd_worker w;
    memset(&w, 0, sizeof w);
    w.nparts = 3;
    pd_members *m = pd_members_new_static(&w);
    pd_owner o;
    CHECK_INT(pd_members_owner(m, 0, &o), PD_ENOTFOUND);
    pd_members_set_owner(m, 0, "a", "http://a", 1);
    pd_members_set_owner(m, 1, "a", "http://a", 1);
    CHECK_INT(pd_members_owner(m, 0, &o), PD_OK);
    CHECK_STR(o.id, "a");
    pd_members_set_owner(m, 0, "b", "http://b", 2); /* newer claim wins */
    CHECK_INT(pd_members_owner(m, 0, &o), PD_OK);
    CHECK_STR(o.id, "b");
    CHECK_STR(o.url, "http://b");
    CHECK_INT(o.generation, 2);
    CHECK_INT(pd_members_owner(m, 1, &o), PD_OK);
    CHECK_STR(o.id, "a");
    CHECK_INT(pd_members_owner(m, 2, &o), PD_ENOTFOUND);
    pd_buf b = {0};
    pd_members_render(m, &b);
    cJSON *j = cJSON_Parse(b.p);
    CHECK(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 3);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 2), "owner")));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "owner"), "id")),
              "b");
    cJSON_Delete(j);
    pd_buf_free(&b);
    pd_members_stop(m);
}

/* ---- members over the mock cluster ---- */

typedef struct {
    pd_config cfg;
    pd_metrics metrics;
    pd_worker w;
    pd_partstate parts[NPARTS];
    pd_members *m;
} t_mem;

static void t_mem_init(t_mem *t, const char *id, const char *brokers, int owned_mask)
{
    memset(t, 0, sizeof *t);
    pd_config_init(&t->cfg);
    pd_config_set(&t->cfg, "id", id, NULL, 0);
    pd_config_set(&t->cfg, "brokers", brokers, NULL, 0);
    pd_config_set(&t->cfg, "members_topic", "t.members", NULL, 0);
    pd_config_set(&t->cfg, "cluster_token", "k", NULL, 0);
    pd_config_set(&t->cfg, "member_ttl", "5s", NULL, 0);
    t->w.cfg = &t->cfg;
    pd_metrics_init(&t->metrics);
    t->w.metrics = &t->metrics;
    t->w.nparts = NPARTS;
    t->w.parts = t->parts;
    snprintf(t->w.advertise, sizeof t->w.advertise, "http://127.0.0.1:1%s", id + 1);
    for (int p = 0; p < NPARTS; p++) atomic_init(&t->parts[p].owned, (owned_mask >> p) & 1);
    atomic_init(&t->w.generation, 1);
}

/* Waits (bounded) until m says p is owned by `id` (NULL: by nobody). */
static int t_wait_owner(pd_members *m, int32_t p, const char *id)
{
    for (int i = 0; i < 150; i++) {
        pd_owner o;
        int rc = pd_members_owner(m, p, &o);
        if (id ? (rc == PD_OK && strcmp(o.id, id) == 0) : rc == PD_ENOTFOUND) return 1;
        usleep(100000);
    }
    return 0;
}

TEST(members_kafka_mock)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    CHECK(rk != NULL);
    if (!rk) return;
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    CHECK(mc != NULL);
    CHECK_INT(rd_kafka_mock_topic_create(mc, "t.members", 1, 1), 0);
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);

    t_mem a, b;
    t_mem_init(&a, "w1", bs, 0x3); /* 0,1 */
    t_mem_init(&b, "w2", bs, 0xc); /* 2,3 */
    pd_config_set(&a.cfg, "members_max", "3", NULL, 0);
    char err[256];
    CHECK_INT(pd_members_start(&a.m, &a.w, err, sizeof err), PD_OK);
    CHECK_INT(pd_members_start(&b.m, &b.w, err, sizeof err), PD_OK);
    if (a.m && b.m) {
        CHECK(t_wait_owner(a.m, 2, "w2"));
        CHECK(t_wait_owner(a.m, 0, "w1"));
        CHECK(t_wait_owner(b.m, 1, "w1"));
        CHECK(t_wait_owner(b.m, 3, "w2"));
        pd_owner o;
        CHECK_INT(pd_members_owner(a.m, 3, &o), PD_OK);
        CHECK_STR(o.url, b.w.advertise);

        /* partition 1 moves from w1 to w2 */
        atomic_store(&a.parts[1].owned, 0);
        pd_members_publish(a.m);
        atomic_store(&b.parts[1].owned, 1);
        pd_members_publish(b.m);
        CHECK(t_wait_owner(a.m, 1, "w2"));
        CHECK(t_wait_owner(b.m, 1, "w2"));
        CHECK(t_wait_owner(a.m, 0, "w1"));

        /* Records a third party produces. Only the authentic, fresh, newer
         * claim of w9 wins; its leave restores w2. */
        char fresh[256], older[256], expired[256], w10[256];
        long long now = (long long)pd_now_ms();
        snprintf(fresh, sizeof fresh,
                 "{\"id\":\"w9\",\"group\":\"profiled\",\"url\":\"http://w9\",\"gen\":7,\"ts\":%lld,\"partitions\":[3],\"alive\":true}", now);
        snprintf(older, sizeof older,
                 "{\"id\":\"w9\",\"group\":\"profiled\",\"url\":\"http://w9\",\"gen\":8,\"ts\":%lld,\"partitions\":[0],\"alive\":true}", now - 1);
        snprintf(expired, sizeof expired,
                 "{\"id\":\"w7\",\"group\":\"profiled\",\"url\":\"http://w7\",\"gen\":1,\"ts\":%lld,\"partitions\":[2],\"alive\":true}",
                 now - 60000);
        char green[256];
        snprintf(green, sizeof green, /* a worker of another group on the same topic, with the secret */
                 "{\"id\":\"g1\",\"group\":\"green\",\"url\":\"http://g1\",\"gen\":9,\"ts\":%lld,"
                 "\"partitions\":[0,1,2,3],\"held\":[[0,99,1]],\"alive\":true}", now);
        snprintf(w10, sizeof w10,
                 "{\"id\":\"w10\",\"group\":\"profiled\",\"url\":\"http://w10\",\"gen\":1,\"ts\":%lld,\"partitions\":[2],\"alive\":true}", now);
        const char *w8 = "{\"id\":\"w8\",\"group\":\"profiled\",\"url\":\"http://w8\",\"gen\":1,\"ts\":1,\"partitions\":[0,1,2,3],\"alive\":true}";
        static const char *const K = "k";
        const struct {
            const char *key, *val, *secret; /* secret NULL: no MAC header */
            int verdict;
        } recs[] = {
            {NULL, "garbage", NULL, PD_MEMREC_UNSIGNED},
            {"w8", w8, NULL, PD_MEMREC_UNSIGNED},          /* a forger without the secret... */
            {"w8", w8, "guess", PD_MEMREC_BAD_MAC},        /* ...or with a guessed one */
            {"w9", fresh, "guess", PD_MEMREC_BAD_MAC},
            {"w9", "garbage", K, PD_MEMREC_MALFORMED},
            {"w1", fresh, K, PD_MEMREC_KEY_MISMATCH},      /* w1 speaking for w9 */
            {"w7", expired, K, PD_MEMREC_EXPIRED},
            {"g1", green, K, PD_MEMREC_OTHER_GROUP},       /* blue/green sharing <topic>.members */
            {"w9", fresh, K, PD_MEMREC_OK},                /* the newest claim of 3 */
            {"w9", fresh, K, PD_MEMREC_STALE},             /* the same record again: a replay */
            {"w9", older, K, PD_MEMREC_STALE},             /* not newer than what w9 said */
            {"w10", w10, K, PD_MEMREC_FULL},               /* members_max = 3: w1, w2, w9 */
        };
        int want[PD_MEMREC__COUNT] = {0};
        rd_kafka_conf_t *pc = rd_kafka_conf_new();
        rd_kafka_conf_set(pc, "bootstrap.servers", bs, errstr, sizeof errstr);
        rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr);
        pd_assert(prod);
        for (size_t i = 0; i < PD_ARRAY_LEN(recs); i++) {
            char mac[65] = "";
            if (recs[i].secret) {
                pd_mac_key k;
                pd_mac_key_derive(&k, recs[i].secret, "members");
                pd_memrec_sign(&k, "t.members", recs[i].key, strlen(recs[i].key), recs[i].val, strlen(recs[i].val),
                               mac);
            }
            want[recs[i].verdict]++;
            rd_kafka_headers_t *hs = rd_kafka_headers_new(1);
            if (recs[i].secret) rd_kafka_header_add(hs, "profiled-mac", -1, mac, 64);
            CHECK_INT(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC("t.members"), RD_KAFKA_V_PARTITION(0),
                                        RD_KAFKA_V_KEY(recs[i].key, recs[i].key ? strlen(recs[i].key) : 0),
                                        RD_KAFKA_V_VALUE((void *)recs[i].val, strlen(recs[i].val)),
                                        RD_KAFKA_V_HEADERS(hs), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_END),
                      0);
        }
        CHECK_INT(rd_kafka_flush(prod, 5000), 0);
        CHECK(t_wait_owner(a.m, 3, "w9"));
        CHECK_INT(pd_members_owner(a.m, 3, &o), PD_OK);
        CHECK_INT(o.generation, 7);
        CHECK_STR(o.url, "http://w9");
        for (int p = 0; p < 3; p++) { /* nobody else took anything */
            CHECK_INT(pd_members_owner(a.m, p, &o), PD_OK);
            CHECK_STR(o.id, p == 0 ? "w1" : "w2"); /* 1 moved to w2 above */
        }
        for (int i = 0; i < 200; i++) { /* the counts settle with the last record */
            if (atomic_load(&a.metrics.member_records_rejected[PD_MEMREC_FULL]) >= 1) break;
            usleep(20000);
        }
        for (int v = 1; v < PD_MEMREC__COUNT; v++)
            if ((int)atomic_load(&a.metrics.member_records_rejected[v]) != want[v])
                pd_test_fail(__FILE__, __LINE__, "rejected %s: %d, want %d", pd_memrec_reason(v),
                             (int)atomic_load(&a.metrics.member_records_rejected[v]), want[v]);
        /* w9 falls silent while w1 and w2 heartbeat: its claim expires
         * after member_ttl (5 s) and w2 owns 3 again ... */
        CHECK(t_wait_owner(a.m, 3, "w2"));
        /* ... and w9 comes back with a newer record, then leaves */
        char back[256], leave[256];
        now = (long long)pd_now_ms();
        snprintf(back, sizeof back,
                 "{\"id\":\"w9\",\"group\":\"profiled\",\"url\":\"http://w9\",\"gen\":10,\"ts\":%lld,\"partitions\":[3],\"alive\":true}",
                 now);
        snprintf(leave, sizeof leave,
                 "{\"id\":\"w9\",\"group\":\"profiled\",\"url\":\"http://w9\",\"ts\":%lld,\"partitions\":[3],\"alive\":false}", now + 1);
        const char *const tail[] = {back, leave};
        for (int i = 0; i < 2; i++) {
            char mac[65];
            pd_mac_key k;
            pd_mac_key_derive(&k, K, "members");
            pd_memrec_sign(&k, "t.members", "w9", 2, tail[i], strlen(tail[i]), mac);
            CHECK_INT(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC("t.members"), RD_KAFKA_V_PARTITION(0),
                                        RD_KAFKA_V_KEY("w9", 2), RD_KAFKA_V_VALUE((void *)tail[i], strlen(tail[i])),
                                        RD_KAFKA_V_HEADER("profiled-mac", mac, 64),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                      0);
            CHECK_INT(rd_kafka_flush(prod, 5000), 0);
            if (i == 0) CHECK(t_wait_owner(a.m, 3, "w9"));
        }
        rd_kafka_destroy(prod);
        CHECK(t_wait_owner(a.m, 3, "w2"));

        /* w2 leaves cleanly: its partitions have no owner */
        pd_members_stop(b.m);
        b.m = NULL;
        CHECK(t_wait_owner(a.m, 2, NULL));
        CHECK(t_wait_owner(a.m, 1, NULL));
        CHECK(t_wait_owner(a.m, 0, "w1"));
    }
    pd_members_stop(a.m);
    pd_members_stop(b.m);
    pd_config_free(&a.cfg);
    pd_config_free(&b.cfg);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
}

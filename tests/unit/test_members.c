/*
 * test_members.c -- the membership map (members.c): the rules of the
 * static map, and the map built from membership records over librdkafka's
 * in-process mock cluster (junk records, newer claims, leaves).
 */
#include "test.h"

#include <stdatomic.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "config.h"
#include "members.h"
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
    t->w.cfg = &t->cfg;
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

        /* junk records are skipped; a newer claim wins; its leave restores w2 */
        static const char *const recs[] = {
            "garbage",
            "{\"id\":\"w8\",\"url\":\"http://w8\",\"gen\":1e300,\"ts\":-1e300,"
            "\"partitions\":[1e300,-1,2.5,\"a\",null],\"alive\":true}",
            "{\"id\":\"w9\",\"url\":\"http://w9\",\"gen\":7,\"ts\":1,\"partitions\":[3],\"alive\":true}",
        };
        rd_kafka_conf_t *pc = rd_kafka_conf_new();
        rd_kafka_conf_set(pc, "bootstrap.servers", bs, errstr, sizeof errstr);
        rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr);
        pd_assert(prod);
        for (size_t i = 0; i < PD_ARRAY_LEN(recs); i++)
            CHECK_INT(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC("t.members"), RD_KAFKA_V_PARTITION(0),
                                        RD_KAFKA_V_VALUE((void *)recs[i], strlen(recs[i])),
                                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                      0);
        CHECK_INT(rd_kafka_flush(prod, 5000), 0);
        CHECK(t_wait_owner(a.m, 3, "w9"));
        CHECK_INT(pd_members_owner(a.m, 3, &o), PD_OK);
        CHECK_INT(o.generation, 7);
        CHECK_INT(pd_members_owner(a.m, 0, &o), PD_OK); /* w8 claimed nothing valid */
        CHECK_STR(o.id, "w1");
        const char leave[] = "{\"id\":\"w9\",\"url\":\"http://w9\",\"partitions\":[3],\"alive\":false}";
        CHECK_INT(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC("t.members"), RD_KAFKA_V_PARTITION(0),
                                    RD_KAFKA_V_VALUE((void *)leave, sizeof leave - 1),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                  0);
        CHECK_INT(rd_kafka_flush(prod, 5000), 0);
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

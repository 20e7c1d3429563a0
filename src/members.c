/*
 * members.c -- the partition -> owner map, learned from the membership
 * topic (see members.h for the protocol).
 *
 * Record (value, key = worker id), produced to partition 0 of the topic:
 *   {"id":"w1","url":"http://127.0.0.1:8080","gen":3,"ts":1795328747333,
 *    "partitions":[0,2,5],"alive":true}
 *
 * State: one entry per member id holding its latest record and, for every
 * partition it currently claims, `since` = the log offset of the first
 * record of its current uninterrupted run of claims of that partition.
 * A record that no longer lists p ends the run; alive=false ends all runs.
 * owner(p) = the live member claiming p with the largest `since` (the most
 * recent acquirer: during a rebalance the old owner's heartbeat may still
 * list p for a moment, but the new owner's claim started later). Members
 * are never expired for silence: a slow member stays owner and the HTTP
 * forwarder reports it unreachable, which is the truthful answer.
 *
 * Kafka: one producer (heartbeats and claims, asynchronous) and one
 * consumer in assign mode (no group membership; a unique dummy group.id
 * because librdkafka wants one, auto commit off) reading partition 0 from
 * the beginning. kafka.* passthrough settings apply to both.
 *
 * Threads: a background thread polls the consumer (bounded 100 ms waits),
 * applies records under `mu`, publishes a heartbeat every 2 s and serves
 * producer delivery reports. pd_members_owner / pd_members_render copy
 * state under `mu`. pd_members_publish may be called from any thread
 * (rd_kafka_producev is thread-safe).
 */
#include "members.h"
#include "kafka.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#include "util.h"

#define MEM_HEARTBEAT_MS 2000
#define MEM_POLL_MS 100
#define MEM_MAX_MEMBERS 4096
#define MEM_MAX_PARTITION 1000000 /* larger partition numbers are ignored */
#define MEM_MAX_CLAIMS 65536
#define MEM_FLUSH_MS 3000

typedef struct {
    char id[130];
    char url[256];
    int64_t gen;
    int64_t ts;               /* producer's wall clock, epoch ms */
    int alive;
    int nclaims;
    int32_t *parts;           /* ascending, owned */
    int64_t *since;           /* parallel to parts, owned */
    int nheld;                /* checkpointed copies it reports ("held") */
    int32_t *held_parts;      /* owned */
    int64_t *held_offs;       /* parallel: next offset of its checkpoint */
    uint8_t *held_owner;      /* parallel: 1 owner, 0 replica */
    int64_t seen_ms;          /* local wall clock when its last record was applied */
} mem_member;

struct pd_members {
    pd_worker *w;             /* borrowed */
    int is_static;
    rd_kafka_t *prod, *cons;
    char *topic;              /* owned copy */
    pthread_t thr;
    int thr_started;
    _Atomic int stop;
    pthread_mutex_t mu;       /* guards everything below */
    mem_member *mem;
    int nmem, capmem;
    int64_t seq;              /* static mode: claim order */
    int64_t last_err_log_ms;
};

/* ------------------------------------------------------------------ */
/* the map                                                              */
/* ------------------------------------------------------------------ */

static mem_member *mem_find(pd_members *m, const char *id, int create)
{
    for (int i = 0; i < m->nmem; i++)
        if (strcmp(m->mem[i].id, id) == 0) return &m->mem[i];
    if (!create || m->nmem >= MEM_MAX_MEMBERS) return NULL;
    if (m->nmem == m->capmem) {
        m->capmem = m->capmem ? m->capmem * 2 : 8;
        m->mem = pd_realloc(m->mem, (size_t)m->capmem * sizeof *m->mem);
    }
    mem_member *mm = &m->mem[m->nmem++];
    memset(mm, 0, sizeof *mm);
    snprintf(mm->id, sizeof mm->id, "%s", id);
    return mm;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* -1 when member does not claim p. */
static int64_t mem_since(const mem_member *mm, int32_t p)
{
    int lo = 0, hi = mm->nclaims - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (mm->parts[mid] == p) return mm->since[mid];
        if (mm->parts[mid] < p) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* Applies one record (at log position `pos`) of member id. parts need not
 * be sorted or unique; it is sorted in place. Caller holds mu. */
static void mem_apply(pd_members *m, const char *id, const char *url, int64_t gen, int64_t ts,
                      int alive, int32_t *parts, int nparts, int64_t pos)
{
    mem_member *mm = mem_find(m, id, 1);
    if (!mm) return;
    snprintf(mm->url, sizeof mm->url, "%s", url);
    mm->gen = gen;
    mm->ts = ts;
    mm->alive = alive;
    if (!alive) nparts = 0;
    if (nparts > 0) qsort(parts, (size_t)nparts, sizeof *parts, cmp_i32);
    int32_t *np = nparts ? pd_malloc((size_t)nparts * sizeof *np) : NULL;
    int64_t *ns = nparts ? pd_malloc((size_t)nparts * sizeof *ns) : NULL;
    int k = 0;
    for (int i = 0; i < nparts; i++) {
        if (k > 0 && np[k - 1] == parts[i]) continue;
        int64_t s = mem_since(mm, parts[i]);
        np[k] = parts[i];
        ns[k] = s >= 0 ? s : pos;
        k++;
    }
    pd_free(mm->parts);
    pd_free(mm->since);
    mm->parts = np;
    mm->since = ns;
    mm->nclaims = k;
}

/* Owner of p into *out; caller holds mu. */
static int mem_owner_locked(pd_members *m, int32_t p, pd_owner *out)
{
    const mem_member *best = NULL;
    int64_t best_since = -1;
    for (int i = 0; i < m->nmem; i++) {
        const mem_member *mm = &m->mem[i];
        if (!mm->alive) continue;
        int64_t s = mem_since(mm, p);
        if (s > best_since) {
            best_since = s;
            best = mm;
        }
    }
    if (!best) return PD_ENOTFOUND;
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", best->id);
    snprintf(out->url, sizeof out->url, "%s", best->url);
    out->generation = best->gen;
    out->updated_ms = best->ts;
    return PD_OK;
}

/* A JSON number as int64, 0 when absent, not a number or out of range. */
static int64_t json_i64(const cJSON *v)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -9.0e18 && v->valuedouble <= 9.0e18)) return 0;
    return (int64_t)v->valuedouble;
}

/* Parses one record value and applies it. PD_EINVAL for junk. */
static int mem_apply_json(pd_members *m, const char *val, size_t len, int64_t pos)
{
    int rc = PD_EINVAL;
    int32_t *parts = NULL;
    cJSON *root = cJSON_ParseWithLength(val, len);
    if (!root || !cJSON_IsObject(root)) goto out;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(root, "gen");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(root, "ts");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "partitions");
    const cJSON *alive = cJSON_GetObjectItemCaseSensitive(root, "alive");
    if (!cJSON_IsString(id) || !*id->valuestring || strlen(id->valuestring) > 128) goto out;
    if (!cJSON_IsString(url) || strlen(url->valuestring) >= 256) goto out;
    if (ps && !cJSON_IsArray(ps)) goto out;
    int n = ps ? cJSON_GetArraySize(ps) : 0;
    if (n > MEM_MAX_CLAIMS) goto out;
    parts = n ? pd_malloc((size_t)n * sizeof *parts) : NULL;
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ps) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > MEM_MAX_PARTITION ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            continue;
        parts[k++] = (int32_t)e->valuedouble;
    }
    int is_alive = alive ? cJSON_IsTrue(alive) : 1;
    const cJSON *held = cJSON_GetObjectItemCaseSensitive(root, "held");
    int nh = cJSON_IsArray(held) ? cJSON_GetArraySize(held) : 0;
    if (nh > MEM_MAX_CLAIMS) nh = 0;
    pthread_mutex_lock(&m->mu);
    mem_apply(m, id->valuestring, url->valuestring, json_i64(gen), json_i64(ts), is_alive, parts,
              k, pos);
    mem_member *mm = mem_find(m, id->valuestring, 0);
    if (mm) {
        mm->seen_ms = pd_now_ms();
        pd_free(mm->held_parts);
        pd_free(mm->held_offs);
        pd_free(mm->held_owner);
        mm->held_parts = NULL;
        mm->held_offs = NULL;
        mm->held_owner = NULL;
        mm->nheld = 0;
        if (nh && is_alive) {
            mm->held_parts = pd_malloc((size_t)nh * sizeof *mm->held_parts);
            mm->held_offs = pd_malloc((size_t)nh * sizeof *mm->held_offs);
            mm->held_owner = pd_malloc((size_t)nh);
            const cJSON *t;
            cJSON_ArrayForEach(t, held) {
                /* [partition, next_offset, owner(0/1)] */
                if (!cJSON_IsArray(t) || cJSON_GetArraySize(t) != 3) continue;
                const cJSON *a = cJSON_GetArrayItem(t, 0), *b = cJSON_GetArrayItem(t, 1), *o = cJSON_GetArrayItem(t, 2);
                if (!cJSON_IsNumber(a) || a->valuedouble < 0 || a->valuedouble > MEM_MAX_PARTITION) continue;
                mm->held_parts[mm->nheld] = (int32_t)a->valuedouble;
                mm->held_offs[mm->nheld] = json_i64(b);
                mm->held_owner[mm->nheld] = cJSON_IsNumber(o) && o->valuedouble == 1;
                mm->nheld++;
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    rc = PD_OK;
out:
    pd_free(parts);
    cJSON_Delete(root);
    return rc;
}

/* ------------------------------------------------------------------ */
/* publishing                                                           */
/* ------------------------------------------------------------------ */

static void mem_publish(pd_members *m, int alive)
{
    if (m->is_static || !m->prod) return;
    pd_worker *w = m->w;
    pd_buf b = {0};
    PD_BUF_LIT(&b, "{\"id\":");
    pd_buf_json_str(&b, w->cfg->id, strlen(w->cfg->id));
    PD_BUF_LIT(&b, ",\"url\":");
    pd_buf_json_str(&b, w->advertise, strnlen(w->advertise, sizeof w->advertise));
    pd_buf_printf(&b, ",\"gen\":%lld,\"ts\":%lld,\"partitions\":[",
                  (long long)atomic_load(&w->generation), (long long)pd_now_ms());
    int first = 1;
    for (int32_t p = 0; alive && w->parts && p < w->nparts; p++) {
        if (!atomic_load(&w->parts[p].owned)) continue;
        pd_buf_printf(&b, "%s%d", first ? "" : ",", (int)p);
        first = 0;
    }
    PD_BUF_LIT(&b, "],\"held\":[");
    first = 1;
    for (int32_t p = 0; alive && w->parts && p < w->nparts; p++) {
        pd_partstate *ps = &w->parts[p];
        /* Every checkpointed copy is a hand-off source, including one this
         * worker just released (the new owner restores from it). */
        int own = atomic_load(&ps->owned);
        int64_t c = atomic_load(&ps->committed);
        if (atomic_load(&ps->restoring) || c < 0) continue;
        pd_buf_printf(&b, "%s[%d,%lld,%d]", first ? "" : ",", (int)p, (long long)c, own ? 1 : 0);
        first = 0;
    }
    pd_buf_printf(&b, "],\"alive\":%s}", alive ? "true" : "false");
    rd_kafka_resp_err_t e = rd_kafka_producev(
        m->prod, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY(w->cfg->id, strlen(w->cfg->id)), RD_KAFKA_V_VALUE(b.p, b.len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e) pd_warn("members: publishing to %s failed: %s", m->topic, rd_kafka_err2str(e));
    pd_buf_free(&b);
}

void pd_members_publish(pd_members *m)
{
    if (m) mem_publish(m, 1);
}

/* ------------------------------------------------------------------ */
/* Kafka plumbing                                                       */
/* ------------------------------------------------------------------ */

/* Logs at most one error per 10 s (the topic may be missing for a while). */
static void mem_log_err(pd_members *m, const char *what, const char *reason)
{
    int64_t now = pd_now_ms();
    if (now - m->last_err_log_ms < 10000) return;
    m->last_err_log_ms = now;
    pd_warn("members: %s: %s", what, reason);
}

static void mem_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    pd_members *m = opaque;
    if (msg->err) mem_log_err(m, "heartbeat delivery failed", rd_kafka_err2str(msg->err));
}

static rd_kafka_conf_t *mem_conf(pd_members *m, int consumer, char *err, size_t errlen)
{
    const pd_config *cfg = m->w->cfg;
    rd_kafka_conf_t *conf = pd_kafka_conf_base(cfg, err, errlen); /* brokers, our log format */
    if (!conf) return NULL;
    char e[512];
    char group[300];
    snprintf(group, sizeof group, "profiled-members-%s-%d-%lld", cfg->id, (int)getpid(),
             (long long)pd_mono_us());
    const char *defs[][2] = {
        {"bootstrap.servers", cfg->brokers},
        {"client.id", "profiled-members"},
    };
    const char *cdefs[][2] = {
        {"group.id", group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
    };
    const char *pdefs[][2] = {
        {"message.timeout.ms", "10000"},
        {"linger.ms", "5"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(defs); i++)
        if (rd_kafka_conf_set(conf, defs[i][0], defs[i][1], e, sizeof e) != RD_KAFKA_CONF_OK)
            goto fail;
    for (size_t i = 0; consumer && i < PD_ARRAY_LEN(cdefs); i++)
        if (rd_kafka_conf_set(conf, cdefs[i][0], cdefs[i][1], e, sizeof e) != RD_KAFKA_CONF_OK)
            goto fail;
    for (size_t i = 0; !consumer && i < PD_ARRAY_LEN(pdefs); i++)
        if (rd_kafka_conf_set(conf, pdefs[i][0], pdefs[i][1], e, sizeof e) != RD_KAFKA_CONF_OK)
            goto fail;
    for (int i = 0; i < cfg->kafka.n; i++) {
        /* our group must stay private: never join the ingest group */
        if (consumer && strcmp(cfg->kafka.keys[i], "group.id") == 0) continue;
        if (rd_kafka_conf_set(conf, cfg->kafka.keys[i], cfg->kafka.vals[i], e, sizeof e) !=
            RD_KAFKA_CONF_OK)
            goto fail;
    }
    if (!consumer) rd_kafka_conf_set_dr_msg_cb(conf, mem_dr_cb);
    rd_kafka_conf_set_opaque(conf, m);
    return conf;
fail:
    pd_seterr(err, errlen, PD_EINVAL, "members %s config: %s", consumer ? "consumer" : "producer", e);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static void *mem_thread(void *arg)
{
    pd_members *m = arg;
    pd_thread_name("pd-members");
    int64_t next_hb = 0;
    while (!atomic_load(&m->stop)) {
        int64_t now = pd_mono_us() / 1000;
        if (now >= next_hb) {
            mem_publish(m, 1);
            next_hb = now + MEM_HEARTBEAT_MS;
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(m->cons, MEM_POLL_MS);
        if (msg) {
            if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* caught up */
            } else if (msg->err) {
                mem_log_err(m, "consume", rd_kafka_message_errstr(msg));
            } else if (!msg->payload ||
                       mem_apply_json(m, msg->payload, msg->len, msg->offset) != PD_OK) {
                mem_log_err(m, "record skipped", "not a membership record");
            }
            rd_kafka_message_destroy(msg);
        }
        rd_kafka_poll(m->prod, 0);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                            */
/* ------------------------------------------------------------------ */

static pd_members *mem_new(pd_worker *w)
{
    pd_members *m = pd_calloc(1, sizeof *m);
    m->w = w;
    pthread_mutex_init(&m->mu, NULL);
    m->last_err_log_ms = -1000000;
    return m;
}

static void mem_free(pd_members *m)
{
    for (int i = 0; i < m->nmem; i++) {
        pd_free(m->mem[i].parts);
        pd_free(m->mem[i].since);
        pd_free(m->mem[i].held_parts);
        pd_free(m->mem[i].held_offs);
        pd_free(m->mem[i].held_owner);
    }
    pd_free(m->mem);
    pd_free(m->topic);
    pthread_mutex_destroy(&m->mu);
    pd_free(m);
}

int pd_members_start(pd_members **out, pd_worker *w, char *err, size_t errlen)
{
    pd_assert(out && w && w->cfg);
    const pd_config *cfg = w->cfg;
    *out = NULL;
    char e[512];
    int rc = PD_OK;
    rd_kafka_topic_partition_list_t *tl = NULL;
    if (!cfg->members_topic || !*cfg->members_topic)
        return pd_seterr(err, errlen, PD_EINVAL, "members_topic: not set");
    pd_members *m = mem_new(w);
    m->topic = pd_strdup(cfg->members_topic);

    rd_kafka_conf_t *conf = mem_conf(m, 0, err, errlen);
    if (!conf) {
        rc = PD_EINVAL;
        goto fail;
    }
    m->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!m->prod) {
        rd_kafka_conf_destroy(conf);
        rc = pd_seterr(err, errlen, PD_ERR, "members producer: %s", e);
        goto fail;
    }
    conf = mem_conf(m, 1, err, errlen);
    if (!conf) {
        rc = PD_EINVAL;
        goto fail;
    }
    m->cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!m->cons) {
        rd_kafka_conf_destroy(conf);
        rc = pd_seterr(err, errlen, PD_ERR, "members consumer: %s", e);
        goto fail;
    }
    rd_kafka_poll_set_consumer(m->cons);
    tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, m->topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t ke = rd_kafka_assign(m->cons, tl);
    if (ke) {
        rc = pd_seterr(err, errlen, PD_ERR, "members assign %s: %s", m->topic, rd_kafka_err2str(ke));
        goto fail;
    }
    if (pthread_create(&m->thr, NULL, mem_thread, m) != 0) {
        rc = pd_seterr(err, errlen, PD_ERR, "members: cannot start thread");
        goto fail;
    }
    m->thr_started = 1;
    rd_kafka_topic_partition_list_destroy(tl);
    *out = m;
    return PD_OK;
fail:
    if (tl) rd_kafka_topic_partition_list_destroy(tl);
    if (m->cons) {
        rd_kafka_consumer_close(m->cons);
        rd_kafka_destroy(m->cons);
    }
    if (m->prod) rd_kafka_destroy(m->prod);
    mem_free(m);
    return rc;
}

int pd_members_owner(pd_members *m, int32_t partition, pd_owner *out)
{
    if (!m || partition < 0) return PD_ENOTFOUND;
    pthread_mutex_lock(&m->mu);
    int rc = mem_owner_locked(m, partition, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

void pd_members_render(pd_members *m, pd_buf *out)
{
    int32_t n = m->w->nparts;
    pd_buf_putc(out, '[');
    pthread_mutex_lock(&m->mu);
    for (int32_t p = 0; p < n; p++) {
        pd_owner o;
        if (p) pd_buf_putc(out, ',');
        pd_buf_printf(out, "{\"partition\":%d,\"owner\":", (int)p);
        if (mem_owner_locked(m, p, &o) == PD_OK) {
            char ts[32];
            pd_ts_format(o.updated_ms, ts);
            PD_BUF_LIT(out, "{\"id\":");
            pd_buf_json_str(out, o.id, strlen(o.id));
            PD_BUF_LIT(out, ",\"url\":");
            pd_buf_json_str(out, o.url, strlen(o.url));
            pd_buf_printf(out, ",\"heartbeat\":\"%s\"},\"generation\":%lld}", ts,
                          (long long)o.generation);
        } else {
            PD_BUF_LIT(out, "null,\"generation\":null}");
        }
    }
    pthread_mutex_unlock(&m->mu);
    pd_buf_putc(out, ']');
}

void pd_members_stop(pd_members *m)
{
    if (!m) return;
    if (m->thr_started) {
        atomic_store(&m->stop, 1);
        pthread_join(m->thr, NULL);
    }
    if (m->prod) {
        mem_publish(m, 0);
        if (rd_kafka_flush(m->prod, MEM_FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
            pd_warn("members: leave record not delivered within %d ms", MEM_FLUSH_MS);
    }
    if (m->cons) {
        rd_kafka_consumer_close(m->cons);
        rd_kafka_destroy(m->cons);
    }
    if (m->prod) rd_kafka_destroy(m->prod);
    mem_free(m);
}

pd_members *pd_members_new_static(pd_worker *w)
{
    pd_members *m = mem_new(w);
    m->is_static = 1;
    return m;
}

void pd_members_set_owner(pd_members *m, int32_t partition, const char *id, const char *url,
                          int64_t generation)
{
    pd_assert(m && m->is_static && id && url && partition >= 0);
    pthread_mutex_lock(&m->mu);
    mem_member *mm = mem_find(m, id, 1);
    pd_assert(mm);
    /* keep the member's other claims, add this one as the newest */
    int n = mm->nclaims;
    int32_t *parts = pd_malloc(((size_t)n + 1) * sizeof *parts);
    for (int i = 0; i < n; i++) parts[i] = mm->parts[i];
    parts[n] = partition;
    int64_t pos = ++m->seq;
    int had = mem_since(mm, partition) >= 0;
    mem_apply(m, id, url, generation, pd_now_ms(), 1, parts, n + 1, pos);
    if (had) { /* re-claim: make it the newest */
        for (int i = 0; i < mm->nclaims; i++)
            if (mm->parts[i] == partition) mm->since[i] = pos;
    }
    pthread_mutex_unlock(&m->mu);
    pd_free(parts);
}

/* ------------------------------------------------------------------ */
/* holders and liveness (hand-off sources, replica placement)           */
/* ------------------------------------------------------------------ */

#define MEM_LIVE_MS 10000

static int mem_live(const mem_member *mm, int64_t now)
{
    return mm->alive && now - mm->seen_ms <= MEM_LIVE_MS;
}

static int cmp_holder(const void *a, const void *b)
{
    const pd_holder *x = a, *y = b;
    if (x->next_offset != y->next_offset) return x->next_offset > y->next_offset ? -1 : 1;
    if (x->owner != y->owner) return y->owner - x->owner;
    return strcmp(x->id, y->id);
}

int pd_members_holders(pd_members *m, int32_t p, pd_holder *out, int max)
{
    if (!m || max <= 0) return 0;
    const char *self = m->w && m->w->cfg ? m->w->cfg->id : "";
    int n = 0;
    int64_t now = pd_now_ms();
    pthread_mutex_lock(&m->mu);
    pd_holder *all = NULL;
    int nall = 0, cap = 0;
    for (int i = 0; i < m->nmem; i++) {
        const mem_member *mm = &m->mem[i];
        if (!mem_live(mm, now) || strcmp(mm->id, self) == 0) continue;
        for (int k = 0; k < mm->nheld; k++) {
            if (mm->held_parts[k] != p) continue;
            if (nall == cap) {
                cap = cap ? cap * 2 : 8;
                all = pd_realloc(all, (size_t)cap * sizeof *all);
            }
            pd_holder *hh = &all[nall++];
            memset(hh, 0, sizeof *hh);
            snprintf(hh->id, sizeof hh->id, "%s", mm->id);
            snprintf(hh->url, sizeof hh->url, "%s", mm->url);
            hh->next_offset = mm->held_offs[k];
            hh->owner = mm->held_owner[k];
            hh->heartbeat_ms = mm->seen_ms;
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (nall > 1) qsort(all, (size_t)nall, sizeof *all, cmp_holder);
    for (n = 0; n < nall && n < max; n++) out[n] = all[n];
    pd_free(all);
    return n;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int pd_members_alive(pd_members *m, char (*ids)[130], int max)
{
    if (!m || max <= 0) return 0;
    const char *self = m->w && m->w->cfg ? m->w->cfg->id : NULL;
    int n = 0, have_self = 0;
    int64_t now = pd_now_ms();
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nmem && n < max; i++) {
        const mem_member *mm = &m->mem[i];
        if (!mem_live(mm, now)) continue;
        snprintf(ids[n++], 130, "%s", mm->id);
        if (self && strcmp(mm->id, self) == 0) have_self = 1;
    }
    pthread_mutex_unlock(&m->mu);
    if (self && !have_self && n < max) snprintf(ids[n++], 130, "%s", self);
    qsort(ids, (size_t)n, 130, cmp_id);
    return n;
}

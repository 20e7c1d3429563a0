/*
 * members.c -- the partition -> owner map, learned from the membership
 * topic (see members.h for the protocol, memrec.h for the record format
 * and its MAC).
 *
 * State: one entry per member id holding its latest record and, for every
 * partition it currently claims, `since` = the log offset of the first
 * record of its current uninterrupted run of claims of that partition.
 * A record that no longer lists p ends the run; alive=false ends all runs.
 * owner(p) = the live member claiming p with the largest `since` (the most
 * recent acquirer: during a rebalance the old owner's heartbeat may still
 * list p for a moment, but the new owner's claim started later).
 *
 * What gets into the map (in this order; a record that fails a step is
 * counted in profiled_member_records_rejected_total{reason} and logged at
 * most once per 10 s):
 *   1. its MAC verifies under key("members") of the cluster secret and its
 *      Kafka key equals its "id" (memrec.c): unsigned, bad_mac,
 *      key_mismatch, malformed;
 *   2. it is fresh: its ts is at most member_ttl before this worker's
 *      clock (expired -- old history read at start, or a replay of it);
 *   3. it is newer than the member's last applied record (ts strictly
 *      greater): a copy of a genuine record produced again later is
 *      refused (stale), so nobody but the member itself starts a claim;
 *   4. a new member finds room: at most members_max entries (full).
 * Liveness: a member is live while it has not said alive=false and its
 * last record arrived at most member_ttl before the newest record of
 * anyone (`last_rx_ms`, our own heartbeats included). Measuring silence
 * against the topic's own traffic rather than the wall clock means a Kafka
 * outage freezes the map instead of emptying it. Only live members own
 * partitions or count as snapshot sources and replicas. An entry that is
 * not live and whose last ts is older than member_ttl is removed (a replay
 * of its records would be expired by then), which keeps the map bounded
 * by the live members.
 *
 * Kafka: one producer (heartbeats and claims, asynchronous, every record
 * signed) and one consumer in assign mode (no group membership; a unique
 * dummy group.id because librdkafka wants one, auto commit off) reading
 * partition 0 from the beginning. kafka.* passthrough settings apply to
 * both.
 *
 * Threads: a background thread polls the consumer (bounded 100 ms waits),
 * applies records under `mu`, publishes a heartbeat every 2 s and serves
 * producer delivery reports. pd_members_owner / pd_members_render copy
 * state under `mu`. pd_members_publish may be called from any thread
 * (rd_kafka_producev is thread-safe).
 */
#include "members.h"
#include "kafka.h"
#include "memrec.h"
#include "metrics.h"

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
#define MEM_PRUNE_MS 1000
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
    int64_t *held_fx;         /* parallel: an owner's side-effect frontier (-1 none) */
    int64_t seen_ms;          /* last_rx_ms when its last record was applied */
} mem_member;

struct pd_members {
    pd_worker *w;             /* borrowed */
    int is_static;
    rd_kafka_t *prod, *cons;
    char *topic;              /* owned copy */
    pthread_t thr;
    int thr_started;
    _Atomic int stop;
    pd_mac_key key;           /* key("members") of the cluster secret */
    pthread_mutex_t pub_mu;   /* publishers: ts order = produce order */
    int64_t last_pub_ts;      /* under pub_mu: our records' ts strictly increase */
    int64_t ttl_ms;           /* member_ttl */
    int max_members;          /* members_max */
    pthread_mutex_t mu;       /* guards everything below */
    mem_member *mem;
    int nmem, capmem;
    int64_t seq;              /* static mode: claim order */
    int64_t last_rx_ms;       /* wall clock when the last record (of anyone) arrived */
    int64_t last_err_log_ms;
    int64_t last_rej_log_ms;
};

/* ------------------------------------------------------------------ */
/* the map                                                              */
/* ------------------------------------------------------------------ */

static mem_member *mem_find(pd_members *m, const char *id, int create)
{
    for (int i = 0; i < m->nmem; i++)
        if (strcmp(m->mem[i].id, id) == 0) return &m->mem[i];
    if (!create || m->nmem >= m->max_members) return NULL;
    if (m->nmem == m->capmem) {
        m->capmem = m->capmem ? m->capmem * 2 : 8;
        m->mem = pd_realloc(m->mem, (size_t)m->capmem * sizeof *m->mem);
    }
    mem_member *mm = &m->mem[m->nmem++];
    memset(mm, 0, sizeof *mm);
    snprintf(mm->id, sizeof mm->id, "%s", id);
    return mm;
}

/* Live: not left, and heard from within ttl of the newest record of
 * anyone (a static map never expires). Caller holds mu. */
static int mem_live(const pd_members *m, const mem_member *mm)
{
    return mm->alive && (m->is_static || m->last_rx_ms - mm->seen_ms <= m->ttl_ms);
}

static void mem_member_free(mem_member *mm)
{
    pd_free(mm->parts);
    pd_free(mm->since);
    pd_free(mm->held_parts);
    pd_free(mm->held_offs);
    pd_free(mm->held_owner);
    pd_free(mm->held_fx);
}

/* Removes members that are not live and whose last record is older than
 * ttl (so a replay of it would be refused as expired). Caller holds mu. */
static void mem_prune(pd_members *m, int64_t now)
{
    for (int i = 0; i < m->nmem;) {
        mem_member *mm = &m->mem[i];
        if (mem_live(m, mm) || mm->ts >= now - m->ttl_ms) {
            i++;
            continue;
        }
        mem_member_free(mm);
        m->mem[i] = m->mem[--m->nmem];
    }
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
        if (!mem_live(m, mm)) continue;
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

/* Sanitized copy of an untrusted record key, for a log line. */
static void mem_key_text(const void *key, size_t klen, char *out, size_t cap)
{
    size_t n = 0;
    const unsigned char *k = key;
    for (size_t i = 0; k && i < klen && n + 1 < cap && i < 64; i++) out[n++] = k[i] >= 0x20 && k[i] < 0x7f ? (char)k[i] : '?';
    out[n] = '\0';
}

/* Applies an opened record at log position pos (the policy of steps 2-4
 * above). Returns PD_MEMREC_OK or the verdict. Caller holds mu. */
static int mem_admit(pd_members *m, pd_memrec *r, int64_t pos)
{
    int64_t now = pd_now_ms();
    if (r->ts < now - m->ttl_ms) return PD_MEMREC_EXPIRED;
    if (strcmp(r->group, m->w->cfg->group) != 0) return PD_MEMREC_OTHER_GROUP;
    mem_member *mm = mem_find(m, r->id, 0);
    if (mm && r->ts <= mm->ts) return PD_MEMREC_STALE;
    if (!mm) {
        mem_prune(m, now);
        mm = mem_find(m, r->id, 1);
        if (!mm) return PD_MEMREC_FULL;
    }
    mem_apply(m, r->id, r->url, r->gen, r->ts, r->alive, r->parts, r->nparts, pos);
    mm->seen_ms = m->last_rx_ms;
    pd_free(mm->held_parts);
    pd_free(mm->held_offs);
    pd_free(mm->held_owner);
    pd_free(mm->held_fx);
    mm->held_parts = NULL;
    mm->held_offs = NULL;
    mm->held_owner = NULL;
    mm->held_fx = NULL;
    mm->nheld = 0;
    if (r->alive && r->nheld) { /* take the record's arrays over */
        mm->held_parts = r->held_parts;
        mm->held_offs = r->held_offs;
        mm->held_owner = r->held_owner;
        mm->held_fx = r->held_fx;
        mm->nheld = r->nheld;
        r->held_parts = NULL;
        r->held_offs = NULL;
        r->held_owner = NULL;
        r->held_fx = NULL;
        r->nheld = 0;
    }
    return PD_MEMREC_OK;
}

/* One record from the topic: authenticate, admit, count what is refused. */
static void mem_consume(pd_members *m, const rd_kafka_message_t *msg)
{
    const void *mac = NULL;
    size_t maclen = 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, PD_MEMREC_MAC_HEADER, &mac, &maclen) != RD_KAFKA_RESP_ERR_NO_ERROR)
        mac = NULL;
    pd_memrec r;
    int v = pd_memrec_open(&m->key, m->topic, msg->key, msg->key_len, msg->payload, msg->len, mac, maclen, &r);
    int64_t now = pd_now_ms();
    pthread_mutex_lock(&m->mu);
    if (now > m->last_rx_ms) m->last_rx_ms = now;
    if (v == PD_MEMREC_OK) v = mem_admit(m, &r, msg->offset);
    pthread_mutex_unlock(&m->mu);
    pd_memrec_free(&r);
    if (v == PD_MEMREC_OK) return;
    if (m->w->metrics) PD_INC(m->w->metrics->member_records_rejected[v]);
    /* History older than the ttl is normal at start: counted, not logged. */
    if (v == PD_MEMREC_EXPIRED || now - m->last_rej_log_ms < 10000) return;
    m->last_rej_log_ms = now;
    char kt[80];
    mem_key_text(msg->key, msg->key_len, kt, sizeof kt);
    pd_warn("members: record at offset %lld (key '%s') rejected: %s%s", (long long)msg->offset, kt,
            pd_memrec_reason(v),
            v == PD_MEMREC_BAD_MAC ? " (forged, altered, or signed with another cluster secret)"
            : v == PD_MEMREC_OTHER_GROUP ? " (a worker of another consumer group shares this membership topic: "
                                           "give each group its own members_topic)"
                                         : "");
}

/* ------------------------------------------------------------------ */
/* publishing                                                           */
/* ------------------------------------------------------------------ */

static void mem_publish(pd_members *m, int alive)
{
    if (m->is_static || !m->prod) return;
    pd_worker *w = m->w;
    pd_buf b = {0};
    /* Receivers refuse a record not newer than the last one (a replay), so
     * ts strictly increases and records are produced in ts order. */
    pthread_mutex_lock(&m->pub_mu);
    int64_t ts = pd_now_ms();
    if (ts <= m->last_pub_ts) ts = m->last_pub_ts + 1;
    m->last_pub_ts = ts;
    PD_BUF_LIT(&b, "{\"id\":");
    pd_buf_json_str(&b, w->cfg->id, strlen(w->cfg->id));
    PD_BUF_LIT(&b, ",\"group\":");
    pd_buf_json_str(&b, w->cfg->group, strlen(w->cfg->group));
    PD_BUF_LIT(&b, ",\"url\":");
    pd_buf_json_str(&b, w->advertise, strnlen(w->advertise, sizeof w->advertise));
    pd_buf_printf(&b, ",\"gen\":%lld,\"ts\":%lld,\"partitions\":[",
                  (long long)atomic_load(&w->generation), (long long)ts);
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
        int64_t c = atomic_load(&ps->committed), fx = atomic_load(&ps->fx_durable);
        if (atomic_load(&ps->restoring) || c < 0) continue;
        if (own && fx >= 0) /* an owner's side-effect frontier, which a redo keeps below c */
            pd_buf_printf(&b, "%s[%d,%lld,1,%lld]", first ? "" : ",", (int)p, (long long)c, (long long)fx);
        else
            pd_buf_printf(&b, "%s[%d,%lld,%d]", first ? "" : ",", (int)p, (long long)c, own ? 1 : 0);
        first = 0;
    }
    pd_buf_printf(&b, "],\"alive\":%s}", alive ? "true" : "false");
    char mac[2 * PD_MAC_LEN + 1];
    pd_memrec_sign(&m->key, m->topic, w->cfg->id, strlen(w->cfg->id), b.p, b.len, mac);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        m->prod, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_PARTITION(0),
        RD_KAFKA_V_KEY(w->cfg->id, strlen(w->cfg->id)), RD_KAFKA_V_VALUE(b.p, b.len),
        RD_KAFKA_V_HEADER(PD_MEMREC_MAC_HEADER, mac, 2 * PD_MAC_LEN),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    pthread_mutex_unlock(&m->pub_mu);
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
    int64_t next_hb = 0, next_prune = 0;
    while (!atomic_load(&m->stop)) {
        int64_t now = pd_mono_us() / 1000;
        if (now >= next_hb) {
            mem_publish(m, 1);
            next_hb = now + MEM_HEARTBEAT_MS;
        }
        if (now >= next_prune) {
            pthread_mutex_lock(&m->mu);
            mem_prune(m, pd_now_ms());
            pthread_mutex_unlock(&m->mu);
            next_prune = now + MEM_PRUNE_MS;
        }
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(m->cons, MEM_POLL_MS);
        if (msg) {
            if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                /* caught up */
            } else if (msg->err) {
                mem_log_err(m, "consume", rd_kafka_message_errstr(msg));
            } else {
                mem_consume(m, msg);
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
    pthread_mutex_init(&m->pub_mu, NULL);
    m->last_err_log_ms = -1000000;
    m->last_rej_log_ms = -1000000;
    const pd_config *cfg = w->cfg;
    pd_mac_key_derive(&m->key, cfg ? pd_config_cluster_token(cfg) : NULL, "members");
    m->ttl_ms = cfg && cfg->member_ttl_ms > 0 ? cfg->member_ttl_ms : 10000;
    m->max_members = cfg && cfg->members_max > 0 ? (int)cfg->members_max : 256;
    return m;
}

static void mem_free(pd_members *m)
{
    for (int i = 0; i < m->nmem; i++) mem_member_free(&m->mem[i]);
    pd_free(m->mem);
    pd_free(m->topic);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->pub_mu);
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
    int64_t now = pd_now_ms();
    if (now > m->last_rx_ms) m->last_rx_ms = now;
    mm->seen_ms = m->last_rx_ms;
    mem_apply(m, id, url, generation, now, 1, parts, n + 1, pos);
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
    pthread_mutex_lock(&m->mu);
    pd_holder *all = NULL;
    int nall = 0, cap = 0;
    for (int i = 0; i < m->nmem; i++) {
        const mem_member *mm = &m->mem[i];
        if (!mem_live(m, mm) || strcmp(mm->id, self) == 0) continue;
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
            hh->fx_done = mm->held_fx ? mm->held_fx[k] : -1;
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
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nmem && n < max; i++) {
        const mem_member *mm = &m->mem[i];
        if (!mem_live(m, mm)) continue;
        snprintf(ids[n++], 130, "%s", mm->id);
        if (self && strcmp(mm->id, self) == 0) have_self = 1;
    }
    pthread_mutex_unlock(&m->mu);
    if (self && !have_self && n < max) snprintf(ids[n++], 130, "%s", self);
    qsort(ids, (size_t)n, 130, cmp_id);
    return n;
}

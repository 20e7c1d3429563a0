/*
 * kafka.c -- Kafka client plumbing of ingestion (see kafka.h): one place
 * for the client configurations, so the group consumer, the replica
 * consumer and the DLQ producer agree on the base settings and all take
 * the operator's kafka.* passthrough last.
 */
#include "kafka.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* librdkafka's log lines (warnings and worse) through our logger. The
 * worker has up to five clients (consumers, producers, membership), each
 * with its own connections: one broker going down gives each of them the
 * same lines, and librdkafka repeats them on every reconnect. A line equal
 * to one of the last PD_KAFKA_LOG_KEEP printed (up to its "(after N ms in
 * state ...)" tail) within PD_KAFKA_LOG_REPEAT_US is counted, not printed;
 * the count goes with the next line printed. */
#define PD_KAFKA_LOG_REPEAT_US 10000000
#define PD_KAFKA_LOG_KEEP 8
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char key[200];
    int64_t us;
} log_recent[PD_KAFKA_LOG_KEEP];
static uint64_t log_suppressed;

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level > 4) return;
    const char *body = strstr(buf, "]: "); /* after "[thrd:...]" */
    body = body ? body + 3 : buf;
    const char *tail = strstr(body, " (after ");
    int n = (int)(tail ? (size_t)(tail - body) : strlen(body));
    char key[sizeof log_recent[0].key];
    snprintf(key, sizeof key, "%s %.*s", fac, n, body);
    int64_t now = pd_mono_us();
    int oldest = 0;
    pthread_mutex_lock(&log_mu);
    for (int i = 0; i < PD_KAFKA_LOG_KEEP; i++) {
        if (log_recent[i].us && now - log_recent[i].us < PD_KAFKA_LOG_REPEAT_US &&
            strcmp(key, log_recent[i].key) == 0) {
            log_suppressed++;
            pthread_mutex_unlock(&log_mu);
            return;
        }
        if (log_recent[i].us < log_recent[oldest].us) oldest = i;
    }
    uint64_t dropped = log_suppressed;
    log_suppressed = 0;
    snprintf(log_recent[oldest].key, sizeof log_recent[oldest].key, "%s", key);
    log_recent[oldest].us = now;
    pthread_mutex_unlock(&log_mu);
    if (dropped)
        pd_warn("rdkafka %s: %s (%" PRIu64 " repeated line(s) suppressed before this one)", fac, buf, dropped);
    else
        pd_warn("rdkafka %s: %s", fac, buf);
}

int pd_kafka_conf_set(rd_kafka_conf_t *c, const char *k, const char *v, char *err, size_t errlen)
{
    char e2[256];
    if (rd_kafka_conf_set(c, k, v, e2, sizeof e2) != RD_KAFKA_CONF_OK)
        return pd_seterr(err, errlen, PD_EINVAL, "kafka.%s: %s", k, e2);
    return PD_OK;
}

rd_kafka_conf_t *pd_kafka_conf_base(const pd_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (pd_kafka_conf_set(c, "bootstrap.servers", cfg->brokers, err, errlen)) goto fail;
    pd_kafka_conf_set(c, "client.id", cfg->id, NULL, 0);
    rd_kafka_conf_set_log_cb(c, log_cb);
    return c;
fail:
    rd_kafka_conf_destroy(c);
    return NULL;
}

int pd_kafka_conf_passthrough(rd_kafka_conf_t *c, const pd_config *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->kafka.n; i++)
        if (pd_kafka_conf_set(c, cfg->kafka.keys[i], cfg->kafka.vals[i], err, errlen)) return PD_EINVAL;
    return PD_OK;
}

rd_kafka_conf_t *pd_kafka_conf_consumer(const pd_config *cfg, const char *group_id, const char *reset,
                                        const char *const *extra, void *opaque,
                                        void (*error_cb)(rd_kafka_t *, int, const char *, void *), char *err,
                                        size_t errlen)
{
    char num[32];
    rd_kafka_conf_t *c = pd_kafka_conf_base(cfg, err, errlen);
    if (!c) return NULL;
    pd_kafka_conf_set(c, "group.id", group_id, NULL, 0);
    pd_kafka_conf_set(c, "enable.auto.commit", "false", NULL, 0);
    pd_kafka_conf_set(c, "enable.auto.offset.store", "false", NULL, 0);
    pd_kafka_conf_set(c, "auto.offset.reset", reset, NULL, 0);
    pd_kafka_conf_set(c, "enable.partition.eof", "false", NULL, 0);
    /* A fetch returns as soon as data is there; an idle one waits at most
     * this long (librdkafka's 500 ms default would dominate freshness). */
    snprintf(num, sizeof num, "%" PRId64, PD_MAX(PD_MIN(cfg->commit_interval_ms / 2, 100), 1));
    pd_kafka_conf_set(c, "fetch.wait.max.ms", num, NULL, 0);
    for (int i = 0; extra && extra[i]; i += 2) pd_kafka_conf_set(c, extra[i], extra[i + 1], NULL, 0);
    rd_kafka_conf_set_opaque(c, opaque);
    rd_kafka_conf_set_error_cb(c, error_cb);
    if (pd_kafka_conf_passthrough(c, cfg, err, errlen)) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}

/* 1 when the client may have the broker create a missing topic
 * (kafka.allow.auto.create.topics=true; librdkafka's consumer default is
 * false). */
static int auto_create_allowed(rd_kafka_t *rk)
{
    char v[16];
    size_t vlen = sizeof v;
    return rd_kafka_conf_get(rd_kafka_conf(rk), "allow.auto.create.topics", v, &vlen) == RD_KAFKA_CONF_OK &&
           strcmp(v, "true") == 0;
}

int pd_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int attempts, volatile sig_atomic_t *stop,
                              int32_t *n, char *err, size_t errlen)
{
    /* Without auto-creation the topic is looked up in the list of all
     * topics: a metadata request naming it could create it (librdkafka's
     * mock creates any topic a request names, with 4 partitions), and a
     * typo in --topic must be an error, not a new topic. */
    int create = auto_create_allowed(rk), missing = 0;
    for (int attempt = 0; attempt < attempts; attempt++) {
        const struct rd_kafka_metadata *md = NULL;
        const struct rd_kafka_metadata_topic *mt = NULL;
        rd_kafka_topic_t *t = create ? rd_kafka_topic_new(rk, topic, NULL) : NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, !create, t, &md, 2000);
        if (t) rd_kafka_topic_destroy(t);
        for (int i = 0; !e && i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, topic) == 0) mt = &md->topics[i];
        if (mt && !mt->err && mt->partition_cnt > 0) {
            *n = mt->partition_cnt;
            rd_kafka_metadata_destroy(md);
            return PD_OK;
        }
        const char *why = e ? rd_kafka_err2str(e) : mt ? rd_kafka_err2str(mt->err) : "no such topic";
        if (md) rd_kafka_metadata_destroy(md);
        if (!e && !mt && !create && ++missing == 10) /* listed five times a second for 2 s */
            return pd_seterr(err, errlen, PD_ENOTFOUND,
                             "topic '%s' does not exist (create it, or set "
                             "kafka.allow.auto.create.topics=true to let the broker create it)",
                             topic);
        if (attempt % 5 == 4) pd_warn("waiting for metadata of topic '%s': %s", topic, why);
        if (attempt == attempts - 1 || (stop && *stop))
            return pd_seterr(err, errlen, PD_EAGAIN, "topic '%s': %s%s", topic, why,
                             stop && *stop ? " (stopping)" : "");
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return PD_EAGAIN;
}

const char *pd_kafka_part_list(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < parts->cnt && o + 16 < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? "," : "", (int)parts->elems[i].partition);
    return parts->cnt ? buf : "none";
}

static volatile sig_atomic_t in_final_destroy;

static void on_abort_in_destroy(int sig)
{
    static const char msg[] = "profiled: librdkafka aborted while destroying a closed consumer "
                              "(known librdkafka 2.0.2 bug #4312); the store was already closed\n";
    if (in_final_destroy) {
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(0);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void pd_kafka_destroy_consumers(rd_kafka_t *a, rd_kafka_t *b)
{
    if (!a && !b) return;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_abort_in_destroy;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGABRT, &sa, &old);
    in_final_destroy = 1;
    if (a) rd_kafka_destroy(a);
    if (b) rd_kafka_destroy(b);
    in_final_destroy = 0;
    sigaction(SIGABRT, &old, NULL);
}

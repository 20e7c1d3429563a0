/*
 * dlq.c -- the DLQ / misroute producer (contract in dlq.h). The producer is
 * idempotent, lingers 5 ms and never times records out (message.timeout.ms
 * 0): a record is delivered or fails for good, and the flush waits for it.
 */
#include "dlq.h"

#include "event.h"
#include "kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


struct pd_dlq {
    const pd_config *cfg;
    pd_metrics *metrics;
    volatile sig_atomic_t *stop;
    rd_kafka_t *producer;     /* NULL in replay mode */
    size_t max_record;        /* the producer's message.max.bytes */
    /* misrouted events per source partition since its last log line */
    uint64_t *mis_count;      /* [mis_n] */
    int64_t *mis_logged_us;   /* [mis_n] monotonic time of that line; 0 = never */
    int32_t mis_n;
};

#define PD_MISROUTE_LOG_US 60000000 /* at most one line a minute per partition */

/* Counts a misrouted event of partition p and logs the count at most once
 * a minute per partition (the first one at once). */
static void misroute_note(pd_dlq *d, int32_t p, int32_t to)
{
    if (p < 0) return;
    if (p >= d->mis_n) {
        int32_t n = PD_MAX(p + 1, d->mis_n * 2);
        d->mis_count = pd_realloc(d->mis_count, (size_t)n * sizeof *d->mis_count);
        d->mis_logged_us = pd_realloc(d->mis_logged_us, (size_t)n * sizeof *d->mis_logged_us);
        for (int32_t i = d->mis_n; i < n; i++) {
            d->mis_count[i] = 0;
            d->mis_logged_us[i] = 0;
        }
        d->mis_n = n;
    }
    d->mis_count[p]++;
    int64_t now = pd_mono_us();
    if (d->mis_logged_us[p] && now - d->mis_logged_us[p] < PD_MISROUTE_LOG_US) return;
    pd_warn("partition %d: %" PRIu64 " misrouted event(s)%s (e.g. one for partition %d), re-produced to their "
            "partition: the producer does not partition by murmur2 of user_id (use the murmur2_random "
            "partitioner, e.g. kcat -X partitioner=murmur2_random; this doubles the topic's volume and "
            "delays those events)",
            (int)p, d->mis_count[p], d->mis_logged_us[p] ? " in the last minute" : "", (int)to);
    d->mis_count[p] = 0;
    d->mis_logged_us[p] = now;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pd_dlq *d = opaque;
    if (m->err) {
        PD_INC(d->metrics->dlq_produce_errors);
        pd_error("produce to %s [%d] failed permanently: %s", rd_kafka_topic_name(m->rkt),
                 (int)m->partition, rd_kafka_err2str(m->err));
    }
}

int pd_dlq_new(pd_dlq **out, const pd_config *cfg, pd_metrics *m, volatile sig_atomic_t *stop, int kafka,
               char *err, size_t errlen)
{
    pd_dlq *d = pd_calloc(1, sizeof *d);
    d->cfg = cfg;
    d->metrics = m;
    d->stop = stop;
    *out = d;
    if (!kafka) return PD_OK;
    char e2[512];
    rd_kafka_conf_t *pc = pd_kafka_conf_base(cfg, err, errlen);
    if (!pc) goto fail;
    pd_kafka_conf_set(pc, "enable.idempotence", "true", NULL, 0);
    pd_kafka_conf_set(pc, "linger.ms", "5", NULL, 0);
    pd_kafka_conf_set(pc, "message.timeout.ms", "0", NULL, 0);
    rd_kafka_conf_set_opaque(pc, d);
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    if (pd_kafka_conf_passthrough(pc, cfg, err, errlen)) {
        rd_kafka_conf_destroy(pc);
        goto fail;
    }
    char mmb[32];
    size_t mmblen = sizeof mmb;
    d->max_record = 1000000;
    if (rd_kafka_conf_get(pc, "message.max.bytes", mmb, &mmblen) == RD_KAFKA_CONF_OK)
        d->max_record = (size_t)strtoull(mmb, NULL, 10);
    d->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e2, sizeof e2);
    if (!d->producer) {
        pd_seterr(err, errlen, PD_EINVAL, "producer: %s", e2);
        goto fail;
    }
    return PD_OK;
fail:
    free(d);
    *out = NULL;
    return PD_EINVAL;
}

/* Produces one record (headers hdrs, taken over in every case). */
static int produce(pd_dlq *d, const char *topic, int32_t partition, const void *key, size_t keylen,
                   const void *val, size_t vallen, rd_kafka_headers_t *hdrs)
{
    for (int attempt = 0;; attempt++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            d->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)val, vallen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (!e) return PD_OK;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && attempt < 1000 && !*d->stop) {
            rd_kafka_poll(d->producer, 10);
            continue;
        }
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        PD_INC(d->metrics->dlq_produce_errors);
        pd_error("produce to %s failed: %s", topic, rd_kafka_err2str(e));
        return PD_EIO;
    }
}

void pd_dlq_send(pd_dlq *d, int reason, const char *detail, int32_t partition, int64_t offset, int64_t rec_ts,
                 const void *key, size_t keylen, const void *val, size_t vallen)
{
    PD_INC(d->metrics->events_dlq[reason]);
    if (!d->producer) return;
    char num[32];
    rd_kafka_headers_t *h = rd_kafka_headers_new(7);
    const char *rn = pd_ev_reason_name(reason);
    rd_kafka_header_add(h, "reason", -1, rn, (ssize_t)strlen(rn));
    rd_kafka_header_add(h, "detail", -1, detail, (ssize_t)strnlen(detail, PD_DLQ_MAX_DETAIL));
    rd_kafka_header_add(h, "source_topic", -1, d->cfg->topic, -1);
    snprintf(num, sizeof num, "%" PRId32, partition);
    rd_kafka_header_add(h, "source_partition", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, offset);
    rd_kafka_header_add(h, "source_offset", -1, num, -1);
    if (rec_ts >= 0) {
        snprintf(num, sizeof num, "%" PRId64, rec_ts);
        rd_kafka_header_add(h, "source_timestamp", -1, num, -1);
    }
    size_t room = d->max_record > keylen + PD_DLQ_RECORD_SLACK ? d->max_record - keylen - PD_DLQ_RECORD_SLACK : 0;
    if (vallen > room) {
        snprintf(num, sizeof num, "%zu", vallen);
        rd_kafka_header_add(h, "truncated", -1, num, -1);
        pd_warn("partition %d offset %" PRId64 ": %s record of %zu bytes sent to the DLQ cut to %zu bytes",
                (int)partition, offset, rn, vallen, room);
        vallen = room;
    }
    produce(d, d->cfg->dlq_topic, RD_KAFKA_PARTITION_UA, key, keylen, val, vallen, h);
}

void pd_dlq_reproduce(pd_dlq *d, int32_t to, int32_t partition, int64_t offset, const char *user, size_t ulen,
                      const void *val, size_t vallen)
{
    if (!d->producer) return;
    misroute_note(d, partition, to);
    char ob[96];
    int on = snprintf(ob, sizeof ob, "%s/%" PRId32 "/%" PRId64, d->cfg->topic, partition, offset);
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "profiled-origin", -1, ob, on);
    produce(d, d->cfg->topic, to, user, ulen, val, vallen, h);
}

void pd_dlq_poll(pd_dlq *d)
{
    if (d->producer) rd_kafka_poll(d->producer, 0);
}

int pd_dlq_wait(pd_dlq *d)
{
    if (!d->producer) return PD_OK;
    int64_t deadline = pd_mono_us() + d->cfg->shutdown_timeout_ms * 1000;
    while (rd_kafka_outq_len(d->producer) > 0) {
        rd_kafka_flush(d->producer, 100);
        if (pd_mono_us() > deadline && *d->stop) return PD_EAGAIN;
        if (*d->stop > 1) return PD_EAGAIN;
    }
    return PD_OK;
}

void pd_dlq_flush(pd_dlq *d, int timeout_ms)
{
    if (d && d->producer) rd_kafka_flush(d->producer, timeout_ms);
}

void pd_dlq_free(pd_dlq *d)
{
    if (!d) return;
    if (d->producer) rd_kafka_destroy(d->producer);
    free(d->mis_count);
    free(d->mis_logged_us);
    free(d);
}

/*
 * tsoffset.c -- the first offset stamped at or after a time, trust but
 * verify (tsoffset.h): Kafka's lookup, a check of its answer with the one
 * or two records around it, and the linear scan from the low watermark
 * when the answer is absent or refuted.
 *
 * One group-less consumer per resolution (no group.id: librdkafka's
 * simple consumer of one partition, rd_kafka_consume_start; never a group
 * join or commit; the worker's client settings and kafka.* passthrough,
 * so it reaches the same cluster the same way), with
 * auto.offset.reset=error: a position the topic no longer holds is an
 * error, never a silent jump; the end of the partition is an EOF event. Its watermarks and lookup are asked up to
 * three times (5 s each); the check's fetch waits up to 10 s; the scan up
 * to its budget. A timestamp is all that is read from a record.
 */
#include "tsoffset.h"

#include "kafka.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TSOFF_ATTEMPTS 3
#define TSOFF_ASK_MS 5000
#define TSOFF_CHECK_MS 10000
#define TSOFF_PROGRESS_US 5000000

int pd_tsoff_at_or_after(int64_t ts, int64_t target)
{
    return ts < 0 || ts >= target;
}

int pd_tsoff_plan(int64_t lo, int64_t hi, int64_t o, int64_t *from, int *need)
{
    if (o < 0) o = hi;
    if (lo < 0 || hi < lo || o < lo || o > hi) return PD_ERANGE;
    *from = o > lo ? o - 1 : o;
    *need = (o > lo) + (o < hi);
    return PD_OK;
}

const char *pd_tsoff_check(int64_t lo, int64_t hi, int64_t o, const int64_t *offs, const int64_t *ts, int n,
                           int64_t target)
{
    if (o < 0) o = hi;
    if (lo < 0 || hi < lo || o < lo || o > hi) return "the answer lies outside the partition's offsets";
    int i = 0;
    if (o > lo) {
        if (n < 1) return "the record before the answer could not be read";
        if (offs[0] != o - 1) return "no record at the offset before the answer (compacted, or a transaction marker)";
        if (ts[0] < 0) return "the record before the answer has no timestamp";
        if (pd_tsoff_at_or_after(ts[0], target))
            return "the record before the answer is stamped at or after the target";
        i = 1;
    }
    if (o < hi) {
        if (n <= i) return "the record at the answer could not be read";
        if (offs[i] < o || offs[i] >= hi) return "the record read at the answer has another offset";
        if (!pd_tsoff_at_or_after(ts[i], target)) return "the record at the answer is stamped before the target";
    }
    return NULL;
}

static rd_kafka_t *tsoff_consumer(const pd_config *cfg, char *err, size_t errlen)
{
    /* no group (group.id ""): the simple consumer of one partition; the
     * end of the partition is reported (an EOF event with its offset) */
    static const char *const extra[] = {"enable.partition.eof", "true", NULL};
    rd_kafka_conf_t *c = pd_kafka_conf_consumer(cfg, "", "error", extra, NULL, NULL, err, errlen);
    if (!c) return NULL;
    char e2[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e2, sizeof e2);
    if (!rk) {
        rd_kafka_conf_destroy(c);
        pd_seterr(err, errlen, PD_ERR, "consumer: %s", e2);
        return NULL;
    }
    return rk;
}

/* Reads from `from` on, up to `want` records (offsets and timestamps
 * into offs/ts, when not NULL) or the end of the partition, within
 * wait_ms, calling `on` (may be NULL) for each record: it returns 1 to
 * stop. *n records read; *end set when the end (offset >= hi) was seen.
 * PD_EAGAIN on a consumer error or when *stop is set; PD_ERANGE when
 * wait_ms passed before the reads were done. */
typedef int (*tsoff_on)(void *ctx, int64_t offset, int64_t ts);
static int tsoff_read(rd_kafka_t *rk, const char *topic, int32_t p, int64_t from, int64_t hi, int64_t want,
                      int64_t wait_ms, volatile sig_atomic_t *stop, tsoff_on on, void *ctx, int64_t *offs,
                      int64_t *ts, int64_t *n, int *end, char *err, size_t errlen)
{
    *n = 0;
    *end = 0;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) return pd_seterr(err, errlen, PD_EAGAIN, "topic handle: %s", rd_kafka_err2str(rd_kafka_last_error()));
    if (rd_kafka_consume_start(rkt, p, from) != 0) {
        rd_kafka_topic_destroy(rkt);
        return pd_seterr(err, errlen, PD_EAGAIN, "fetch from offset %" PRId64 ": %s", from,
                         rd_kafka_err2str(rd_kafka_last_error()));
    }
    enum { NB = 1000 };
    rd_kafka_message_t *msgs[NB];
    const int64_t deadline = pd_mono_us() + wait_ms * 1000;
    int rc = PD_OK, done = from >= hi;
    int64_t at = from;
    while (!rc && !done) {
        if (stop && *stop) {
            rc = pd_seterr(err, errlen, PD_EAGAIN, "interrupted (stopping) at offset %" PRId64, at);
            break;
        }
        if (pd_mono_us() > deadline) {
            rc = pd_seterr(err, errlen, PD_ERANGE, "no end after %" PRId64 " ms, at offset %" PRId64, wait_ms, at);
            break;
        }
        ssize_t k = rd_kafka_consume_batch(rkt, p, 100, msgs, (size_t)PD_MIN(NB, want - *n));
        for (ssize_t i = 0; i < k; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (rc || done) {
                /* (the rest of the batch) */
            } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (m->offset >= hi) done = *end = 1;
            } else if (m->err) {
                rc = pd_seterr(err, errlen, PD_EAGAIN, "fetch at offset %" PRId64 ": %s", at,
                               rd_kafka_message_errstr(m));
            } else if (m->offset >= at) {
                const int64_t t = rd_kafka_message_timestamp(m, NULL);
                if (offs) offs[*n] = m->offset;
                if (ts) ts[*n] = t;
                (*n)++;
                at = m->offset + 1;
                if (m->offset >= hi - 1) done = *end = 1;
                if (*n >= want || (on && on(ctx, m->offset, t))) done = 1;
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_consume_stop(rkt, p);
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* The scan's state: the first record stamped at or after target. */
typedef struct {
    int32_t p;
    int64_t target, hi, found, records, t0_us, last_log_us;
} tsoff_scan_st;

static int scan_on(void *ctx, int64_t offset, int64_t ts)
{
    tsoff_scan_st *s = ctx;
    s->records++;
    if (pd_tsoff_at_or_after(ts, s->target)) {
        s->found = offset;
        return 1;
    }
    const int64_t now = pd_mono_us();
    if (now - s->last_log_us > TSOFF_PROGRESS_US) {
        s->last_log_us = now;
        pd_info("partition %d: scanning record timestamps: offset %" PRId64 " of %" PRId64 " (%" PRId64
                " records read, %.0f s)",
                (int)s->p, offset, s->hi, s->records, (double)(now - s->t0_us) / 1e6);
    }
    return 0;
}

/* The scan: the first record from lo on stamped at or after target (hi
 * when none below hi is). */
static int tsoff_scan(rd_kafka_t *rk, const char *topic, int32_t p, int64_t target, int64_t lo, int64_t hi,
                      int64_t budget_ms, volatile sig_atomic_t *stop, pd_tsoff_result *out, char *err, size_t errlen)
{
    tsoff_scan_st s = {p, target, hi, -1, 0, pd_mono_us(), pd_mono_us()};
    int64_t n = 0;
    int end = 0;
    int rc = tsoff_read(rk, topic, p, lo, hi, INT64_MAX, budget_ms, stop, scan_on, &s, NULL, NULL, &n, &end, err,
                        errlen);
    out->records += s.records;
    if (rc == PD_ERANGE)
        return pd_seterr(err, errlen, PD_EAGAIN,
                         "the scan ran out of time (import_scan_timeout = %" PRId64 " ms) after %" PRId64
                         " records of offsets %" PRId64 "..%" PRId64,
                         budget_ms, s.records, lo, hi);
    if (rc) return rc;
    out->offset = s.found >= 0 && s.found < hi ? s.found : hi;
    return PD_OK;
}

int pd_tsoff_resolve(const pd_config *cfg, const char *topic, int32_t p, int64_t target, int64_t scan_timeout_ms,
                     volatile sig_atomic_t *stop, pd_tsoff_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    rd_kafka_t *rk = tsoff_consumer(cfg, err, errlen);
    if (!rk) return PD_EAGAIN;
    int rc = PD_OK;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t lo = 0, hi = 0, o = -1;
    for (int a = 0; a < TSOFF_ATTEMPTS; a++)
        if (!(e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, TSOFF_ASK_MS))) break;
    if (e) {
        rc = pd_seterr(err, errlen, PD_EAGAIN, "watermarks: %s", rd_kafka_err2str(e));
        goto done;
    }
    out->lo = lo;
    out->hi = hi;
    /* 1. Kafka's answer */
    for (int a = 0; a < TSOFF_ATTEMPTS; a++) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = target;
        e = rd_kafka_offsets_for_times(rk, l, TSOFF_ASK_MS);
        if (!e) e = l->elems[0].err;
        o = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        if (!e) break;
    }
    const char *why = NULL;
    char whybuf[160];
    if (e) {
        snprintf(whybuf, sizeof whybuf, "the lookup failed: %s", rd_kafka_err2str(e));
        why = whybuf;
    } else {
        /* 2. its check: the records at o-1 and o */
        int64_t from = 0, offs[2] = {0}, ts[2] = {0}, n = 0;
        int need = 0, end = 0;
        if (pd_tsoff_plan(lo, hi, o, &from, &need) == PD_OK && need > 0) {
            rc = tsoff_read(rk, topic, p, from, hi, need, TSOFF_CHECK_MS, stop, NULL, NULL, offs, ts, &n, &end, err,
                            errlen);
            if (rc == PD_ERANGE) rc = PD_OK; /* fewer records than asked for: the check says so */
            if (rc) goto done;
            out->records += n;
        }
        why = pd_tsoff_check(lo, hi, o, offs, ts, (int)n, target);
        if (!why) {
            out->offset = o < 0 ? hi : o;
            goto done;
        }
    }
    /* 3. the scan */
    out->scanned = 1;
    if (e) snprintf(out->why, sizeof out->why, "%s", why);
    else snprintf(out->why, sizeof out->why, "%s (Kafka answered %" PRId64 ")", why, o);
    pd_warn("partition %d: Kafka's offset for time %" PRId64 " ms is not usable: %s; scanning record timestamps "
            "from offset %" PRId64 " to %" PRId64,
            (int)p, target, out->why, lo, hi);
    rc = tsoff_scan(rk, topic, p, target, lo, hi, scan_timeout_ms, stop, out, err, errlen);
done:
    rd_kafka_destroy(rk);
    return rc;
}

/*
 * tsoffset.c -- the first offset stamped at or after a time, trust but
 * verify (tsoffset.h): Kafka's lookup, a check of its answer with the one
 * or two records around it, and the linear scan from the low watermark
 * when the answer is absent or refuted.
 *
 * One group-less consumer per resolution (no group.id: assign only, never
 * a group join or commit; the worker's client settings and kafka.*
 * passthrough, so it reaches the same cluster the same way), with
 * auto.offset.reset=error: a position the topic no longer holds is an
 * error, never a silent jump. Its watermarks and lookup are asked up to
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
        if (pd_tsoff_at_or_after(ts[0], target)) return "the record before the answer is stamped at or after the target";
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
    /* no group: assign only (group.id "" creates no consumer group) */
    static const char *const extra[] = {"enable.auto.offset.store", "false", NULL};
    rd_kafka_conf_t *c = pd_kafka_conf_consumer(cfg, "", "error", extra, NULL, NULL, err, errlen);
    if (!c) return NULL;
    char e2[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e2, sizeof e2);
    if (!rk) {
        rd_kafka_conf_destroy(c);
        pd_seterr(err, errlen, PD_ERR, "consumer: %s", e2);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static int tsoff_assign(rd_kafka_t *rk, const char *topic, int32_t p, int64_t from, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = from;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) return pd_seterr(err, errlen, PD_EAGAIN, "assign at offset %" PRId64 ": %s", from, rd_kafka_err2str(e));
    return PD_OK;
}

/* The consumer's position in p (-1 unknown). */
static int64_t tsoff_position(rd_kafka_t *rk, const char *topic, int32_t p)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p);
    int64_t pos = -1;
    if (!rd_kafka_position(rk, l) && !l->elems[0].err) pos = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return pos;
}

/* Reads up to `want` records from `from` on (offsets and timestamps into
 * offs/ts) within wait_ms; *n of them read. PD_EAGAIN on a consumer error. */
static int tsoff_read(rd_kafka_t *rk, const char *topic, int32_t p, int64_t from, int want, int64_t wait_ms,
                      int64_t *offs, int64_t *ts, int *n, char *err, size_t errlen)
{
    *n = 0;
    int rc = tsoff_assign(rk, topic, p, from, err, errlen);
    const int64_t deadline = pd_mono_us() + wait_ms * 1000;
    while (!rc && *n < want && pd_mono_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (m->err)
            rc = pd_seterr(err, errlen, PD_EAGAIN, "fetch at offset %" PRId64 ": %s", from,
                           rd_kafka_message_errstr(m));
        else if (m->partition == p && m->offset >= from) {
            offs[*n] = m->offset;
            ts[*n] = rd_kafka_message_timestamp(m, NULL);
            (*n)++;
        }
        rd_kafka_message_destroy(m);
    }
    return rc;
}

/* The scan: the first record from lo on stamped at or after target (hi
 * when none below hi is). */
static int tsoff_scan(rd_kafka_t *rk, const char *topic, int32_t p, int64_t target, int64_t lo, int64_t hi,
                      int64_t budget_ms, volatile sig_atomic_t *stop, pd_tsoff_result *out, char *err, size_t errlen)
{
    if (lo >= hi) {
        out->offset = hi;
        return PD_OK;
    }
    int rc = tsoff_assign(rk, topic, p, lo, err, errlen);
    if (rc) return rc;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    const int64_t t0 = pd_mono_us(), deadline = t0 + budget_ms * 1000;
    int64_t last_log = t0, at = lo, found = -1;
    enum { NB = 1000 };
    rd_kafka_message_t *msgs[NB];
    while (!rc && found < 0) {
        const int64_t now = pd_mono_us();
        if (stop && *stop) {
            rc = pd_seterr(err, errlen, PD_EAGAIN, "scan interrupted (stopping) at offset %" PRId64, at);
            break;
        }
        if (now > deadline) {
            rc = pd_seterr(err, errlen, PD_EAGAIN,
                           "scan ran out of time (import_scan_timeout = %" PRId64 " ms) at offset %" PRId64
                           " of %" PRId64 " after %" PRId64 " records",
                           budget_ms, at, hi, out->records);
            break;
        }
        if (now - last_log > TSOFF_PROGRESS_US) {
            last_log = now;
            pd_info("partition %d: scanning record timestamps: offset %" PRId64 " of %" PRId64 " (%" PRId64
                    " records read, %.0f s)",
                    (int)p, at, hi, out->records, (double)(now - t0) / 1e6);
        }
        ssize_t k = rd_kafka_consume_batch_queue(q, 100, msgs, NB);
        if (k <= 0) { /* nothing visible left below hi (e.g. transaction markers at the end) */
            int64_t pos = tsoff_position(rk, topic, p);
            if (pos >= hi) found = hi;
            continue;
        }
        for (ssize_t i = 0; i < k; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (!rc && found < 0) {
                if (m->err) {
                    rc = pd_seterr(err, errlen, PD_EAGAIN, "scan at offset %" PRId64 ": %s", at,
                                   rd_kafka_message_errstr(m));
                } else if (m->partition == p && m->offset >= at) {
                    out->records++;
                    at = m->offset + 1;
                    if (m->offset >= hi) found = hi; /* appended after the scan began */
                    else if (pd_tsoff_at_or_after(rd_kafka_message_timestamp(m, NULL), target)) found = m->offset;
                    else if (at >= hi) found = hi;
                }
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    if (!rc) out->offset = found;
    return rc;
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
        int64_t from = 0, offs[2] = {0}, ts[2] = {0};
        int need = 0, n = 0;
        if (pd_tsoff_plan(lo, hi, o, &from, &need) == PD_OK && need > 0) {
            rc = tsoff_read(rk, topic, p, from, need, TSOFF_CHECK_MS, offs, ts, &n, err, errlen);
            if (rc) goto done;
            out->records += n;
        }
        why = pd_tsoff_check(lo, hi, o, offs, ts, n, target);
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
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

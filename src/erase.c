/*
 * erase.c -- erasure records: the check of one read from the input topic
 * (pure) and the producer that appends one for DELETE /v1/profiles/{user}
 * (see erase.h for the record format and the semantics).
 *
 * The producer is idempotent with acks=all, so a record acknowledged is in
 * the log exactly once and in order with the user's events produced
 * before it. Each request waits for its own delivery report: the report
 * carries a heap-allocated ticket (two references: the waiter's and the
 * report's; whoever drops the last frees it), and every waiting HTTP
 * thread serves reports (rd_kafka_poll is thread-safe), so a ticket is
 * completed whichever thread polls. A waiter that times out leaves; the
 * record may still be delivered (message.timeout.ms bounds that), which
 * is harmless: an erasure is idempotent.
 */
#include "erase.h"

#include "event.h"
#include "kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the record ---- */

int pd_erase_parse(const char *kind, size_t kindlen, const void *key, size_t keylen, const char *val,
                   size_t vallen, int32_t p, int32_t nparts, char *user, size_t *ulen, char *err,
                   size_t errlen)
{
    *ulen = 0;
    if (!kind || kindlen != sizeof PD_CONTROL_ERASE - 1 || memcmp(kind, PD_CONTROL_ERASE, kindlen) != 0) {
        snprintf(err, errlen, "control record of unknown kind '%.*s' (header " PD_CONTROL_HEADER
                 "; known: " PD_CONTROL_ERASE ")", (int)PD_MIN(kindlen, 64), kind ? kind : "");
        return PD_EV_BAD_CONTROL;
    }
    char jerr[160], u[PD_MAX_USER_ID + 1]; /* user[] has no room for the NUL */
    size_t n = 0;
    int jr = pd_json_get_str(val, vallen, "user_id", u, sizeof u, &n, jerr, sizeof jerr);
    if (jr) {
        snprintf(err, errlen, "erasure: %s", jerr);
        return PD_EV_BAD_ERASURE;
    }
    if (n == 0 || !pd_utf8_valid(u, n)) {
        snprintf(err, errlen, "erasure: field 'user_id' must be 1..%d bytes of valid UTF-8", PD_MAX_USER_ID);
        return PD_EV_BAD_ERASURE;
    }
    if (key && (keylen != n || memcmp(key, u, n) != 0)) {
        snprintf(err, errlen, "erasure: record key differs from user_id");
        return PD_EV_BAD_ERASURE;
    }
    const int32_t want = pd_partition_for(u, n, nparts);
    if (want != p) {
        snprintf(err, errlen, "erasure: user_id belongs to partition %d, record is in partition %d", (int)want,
                 (int)p);
        return PD_EV_BAD_ERASURE;
    }
    memcpy(user, u, n);
    *ulen = n;
    return PD_EV_OK;
}

void pd_erase_value(pd_buf *out, const char *user, size_t ulen, int64_t now_ms)
{
    char ts[40];
    pd_ts_format(now_ms, ts);
    PD_BUF_LIT(out, "{\"user_id\":");
    pd_buf_json_str(out, user, ulen);
    pd_buf_printf(out, ",\"requested_at\":\"%s\"}", ts);
}

/* ---- the producer ---- */

struct pd_eraser {
    const pd_config *cfg;
    rd_kafka_t *rk;
};

typedef struct {
    _Atomic int refs;   /* 2: the waiter and the delivery report */
    _Atomic int done;
    int32_t partition;  /* written before done (release), read after (acquire) */
    int64_t offset;
    rd_kafka_resp_err_t err;
} ticket;

static void ticket_unref(ticket *t)
{
    if (atomic_fetch_sub(&t->refs, 1) == 1) free(t);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    ticket *t = m->_private;
    if (!t) return;
    t->err = m->err;
    t->partition = m->partition;
    t->offset = m->offset;
    atomic_store_explicit(&t->done, 1, memory_order_release);
    ticket_unref(t);
}

int pd_eraser_new(pd_eraser **out, const pd_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    rd_kafka_conf_t *pc = pd_kafka_conf_base(cfg, err, errlen);
    if (!pc) return PD_EINVAL;
    pd_kafka_conf_set(pc, "enable.idempotence", "true", NULL, 0);
    pd_kafka_conf_set(pc, "linger.ms", "0", NULL, 0);
    pd_kafka_conf_set(pc, "message.timeout.ms", "30000", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    if (pd_kafka_conf_passthrough(pc, cfg, err, errlen)) {
        rd_kafka_conf_destroy(pc);
        return PD_EINVAL;
    }
    char e2[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e2, sizeof e2);
    if (!rk) return pd_seterr(err, errlen, PD_EINVAL, "erasure producer: %s", e2);
    pd_eraser *e = pd_calloc(1, sizeof *e);
    e->cfg = cfg;
    e->rk = rk;
    *out = e;
    return PD_OK;
}

int pd_eraser_request(pd_eraser *e, int32_t nparts, const char *user, size_t ulen, int timeout_ms,
                      int32_t *partition, int64_t *offset, char *err, size_t errlen)
{
    pd_assert(nparts > 0);
    const int32_t p = pd_partition_for(user, ulen, nparts);
    pd_buf v = {0};
    pd_erase_value(&v, user, ulen, pd_now_ms());
    ticket *t = pd_calloc(1, sizeof *t);
    atomic_store(&t->refs, 2);
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, PD_CONTROL_HEADER, -1, PD_CONTROL_ERASE, -1);
    const int64_t deadline = pd_mono_us() + (int64_t)timeout_ms * 1000;
    rd_kafka_resp_err_t pe;
    for (;;) {
        pe = rd_kafka_producev(e->rk, RD_KAFKA_V_TOPIC(e->cfg->topic), RD_KAFKA_V_PARTITION(p),
                               RD_KAFKA_V_KEY(user, ulen), RD_KAFKA_V_VALUE(v.p, v.len),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                               RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
        if (pe != RD_KAFKA_RESP_ERR__QUEUE_FULL || pd_mono_us() >= deadline) break;
        rd_kafka_poll(e->rk, 10);
    }
    pd_buf_free(&v);
    if (pe) {
        rd_kafka_headers_destroy(h); /* not taken over on failure */
        free(t);
        return pd_seterr(err, errlen, PD_EIO, "produce: %s", rd_kafka_err2str(pe));
    }
    int rc = PD_OK;
    while (!atomic_load_explicit(&t->done, memory_order_acquire)) {
        const int64_t left = deadline - pd_mono_us();
        if (left <= 0) {
            rc = pd_seterr(err, errlen, PD_EAGAIN, "not acknowledged within %d ms", timeout_ms);
            break;
        }
        rd_kafka_poll(e->rk, (int)PD_MIN(left / 1000 + 1, 50));
    }
    if (rc == PD_OK) {
        if (t->err) {
            rc = pd_seterr(err, errlen, PD_EIO, "produce: %s", rd_kafka_err2str(t->err));
        } else {
            *partition = t->partition;
            *offset = t->offset;
        }
    }
    ticket_unref(t);
    return rc;
}

void pd_eraser_free(pd_eraser *e, int timeout_ms)
{
    if (!e) return;
    rd_kafka_flush(e->rk, timeout_ms);
    rd_kafka_destroy(e->rk);
    free(e);
}

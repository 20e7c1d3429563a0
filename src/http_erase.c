/*
 * http_erase.c -- the erasure routes (see http_erase.h; the record and its
 * semantics: erase.h).
 *
 * DELETE appends an erasure record through one shared producer (erase.c)
 * and answers 202 with its position once Kafka acknowledged it; whether the
 * user existed is not looked up (an unknown user is erased all the same:
 * idempotent, and the answer reveals nothing). The erasure is applied when
 * the partition's owner has committed past that position; GET
 * /v1/erasures?partition=P&offset=O answers from the owner's checkpoint
 * (pd_partstate.committed, the next offset in the store), forwarding to the
 * owner like a profile query (one hop, the cluster token, X-Profiled-Hops).
 * No list of erased user ids is kept: it would itself be the personal data
 * being erased.
 */
#include "http_erase.h"

#include "erase.h"
#include "members.h"
#include "metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERASE_TIMEOUT_MS 10000 /* wait for Kafka's acknowledgement of a DELETE's record */
#define ERASE_MAX_HOPS 2

struct pd_erase_api {
    pd_worker *w;
    pd_peer_pool *pool;
    pthread_mutex_t lock;      /* guards the creation of er */
    pd_eraser *er;             /* NULL until the first DELETE */
};

pd_erase_api *pd_erase_api_new(pd_worker *w, pd_peer_pool *pool)
{
    pd_erase_api *a = pd_calloc(1, sizeof *a);
    a->w = w;
    a->pool = pool;
    pthread_mutex_init(&a->lock, NULL);
    return a;
}

void pd_erase_api_free(pd_erase_api *a)
{
    if (!a) return;
    pd_eraser_free(a->er, 5000);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static void answer_error(pd_erase_answer *o, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void answer_error(pd_erase_answer *o, int status, const char *error, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    o->status = status;
    o->body.len = 0;
    pd_buf_json_error(&o->body, error, detail);
    if (status == 503) snprintf(o->retry_after, sizeof o->retry_after, "1");
}

static pd_eraser *eraser_get(pd_erase_api *a, char *err, size_t errlen)
{
    pthread_mutex_lock(&a->lock);
    if (!a->er && pd_eraser_new(&a->er, a->w->cfg, err, errlen) != PD_OK) a->er = NULL;
    pd_eraser *e = a->er;
    pthread_mutex_unlock(&a->lock);
    return e;
}

void pd_erase_api_delete(pd_erase_api *a, const char *user, size_t ulen, pd_erase_answer *out)
{
    pd_worker *w = a->w;
    if (w->nparts <= 0) {
        answer_error(out, 503, "partition unavailable", "input topic partition count not known yet");
        return;
    }
    char err[512] = "";
    pd_eraser *e = eraser_get(a, err, sizeof err);
    if (!e) {
        pd_error("http: erasure producer: %s", err);
        answer_error(out, 503, "unavailable", "cannot produce erasure records (the worker's log says why)");
        return;
    }
    int32_t p = -1;
    int64_t off = -1;
    int rc = pd_eraser_request(e, w->nparts, user, ulen, ERASE_TIMEOUT_MS, &p, &off, err, sizeof err);
    if (rc != PD_OK) {
        if (w->metrics) PD_INC(w->metrics->erase_requests[rc == PD_EAGAIN ? 2 : 1]);
        pd_warn("http: erasure record not written: %s", err);
        answer_error(out, 503, "unavailable",
                     rc == PD_EAGAIN ? "the erasure record was not acknowledged in time; it may still be "
                                       "written -- retrying is safe (erasure is idempotent)"
                                     : "the erasure record could not be written; retry later");
        return;
    }
    if (w->metrics) PD_INC(w->metrics->erase_requests[0]);
    out->status = 202;
    out->body.len = 0;
    PD_BUF_LIT(&out->body, "{\"user_id\":");
    pd_buf_json_str(&out->body, user, ulen);
    pd_buf_printf(&out->body,
                  ",\"partition\":%d,\"offset\":%lld,\"status\":\"/v1/erasures?partition=%d&offset=%lld\"}",
                  (int)p, (long long)off, (int)p, (long long)off);
    snprintf(out->location, sizeof out->location, "/v1/erasures?partition=%d&offset=%lld", (int)p,
             (long long)off);
}

/* Parses a non-negative decimal integer of qs[0..n). */
static int parse_i64(const char *s, size_t n, int64_t max, int64_t *v)
{
    if (n == 0 || n > 19) return PD_EINVAL;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return PD_EINVAL;
        x = x * 10 + (s[i] - '0');
    }
    if (x > max) return PD_ERANGE;
    *v = x;
    return PD_OK;
}

static int parse_position(const char *qs, int32_t nparts, int32_t *p, int64_t *o, char *err, size_t errlen)
{
    int64_t pv = -1, ov = -1;
    for (const char *s = qs ? qs : ""; *s;) {
        const char *amp = strchr(s, '&');
        size_t n = amp ? (size_t)(amp - s) : strlen(s);
        const char *eq = memchr(s, '=', n);
        if (!eq) return pd_seterr(err, errlen, PD_EINVAL, "query parameter without a value");
        size_t kl = (size_t)(eq - s), vl = n - kl - 1;
        if (kl == 9 && memcmp(s, "partition", 9) == 0) {
            if (parse_i64(eq + 1, vl, INT32_MAX, &pv) != PD_OK)
                return pd_seterr(err, errlen, PD_EINVAL, "partition: expected a non-negative integer");
        } else if (kl == 6 && memcmp(s, "offset", 6) == 0) {
            if (parse_i64(eq + 1, vl, INT64_MAX / 2, &ov) != PD_OK)
                return pd_seterr(err, errlen, PD_EINVAL, "offset: expected a non-negative integer");
        } else {
            return pd_seterr(err, errlen, PD_EINVAL, "unknown query parameter '%.*s' (known: partition, offset)",
                             (int)PD_MIN(kl, 64), s);
        }
        s += n + (amp ? 1 : 0);
    }
    if (pv < 0 || ov < 0) return pd_seterr(err, errlen, PD_EINVAL, "partition and offset are both required");
    if (pv >= nparts)
        return pd_seterr(err, errlen, PD_ERANGE, "partition %lld: the topic has %d partitions", (long long)pv,
                         (int)nparts);
    *p = (int32_t)pv;
    *o = ov;
    return PD_OK;
}

static void status_local(pd_worker *w, int32_t p, int64_t o, pd_erase_answer *out)
{
    const int64_t c = atomic_load(&w->parts[p].committed);
    out->status = 200;
    out->body.len = 0;
    pd_buf_printf(&out->body, "{\"partition\":%d,\"offset\":%lld,\"applied\":%s,\"committed_offset\":%lld}",
                  (int)p, (long long)o, c > o ? "true" : "false", (long long)c);
}

/* Forwards to the owner's internal route; PD_OK when its answer is in out. */
static int forward(pd_erase_api *a, const char *url, int32_t p, int64_t o, int hops, pd_erase_answer *out,
                   char *err, size_t errlen)
{
    pd_worker *w = a->w;
    pd_peer_url u;
    if (pd_peer_url_parse(url, &u) != PD_OK) return pd_seterr(err, errlen, PD_EINVAL, "unsupported peer URL");
    char path[128];
    snprintf(path, sizeof path, "/internal/v1/erasures?partition=%d&offset=%lld", (int)p, (long long)o);
    pd_buf hdrs = {0};
    pd_buf_printf(&hdrs, "X-Profiled-Hops: %d\r\nAccept: application/json\r\n", hops + 1);
    const char *tok = pd_config_cluster_token(w->cfg);
    if (tok) pd_buf_printf(&hdrs, "Authorization: Bearer %s\r\n", tok);
    pd_peer_req rq = {.path_query = path, .headers = hdrs.p,
                      .deadline_us = pd_mono_us() + w->cfg->forward_timeout_ms * 1000};
    pd_peer_resp fr = {0};
    int rc = pd_peer_get(a->pool, &u, &rq, &fr, err, errlen);
    if (rc == PD_OK) {
        if (w->metrics) PD_INC(w->metrics->forwarded);
        out->status = fr.status;
        pd_buf_free(&out->body);
        out->body = fr.body;
        memset(&fr.body, 0, sizeof fr.body);
        if (fr.retry_after[0]) snprintf(out->retry_after, sizeof out->retry_after, "%s", fr.retry_after);
    } else if (w->metrics) {
        PD_INC(w->metrics->forward_errors);
    }
    pd_buf_free(&fr.body);
    pd_buf_free(&hdrs);
    return rc;
}

void pd_erase_api_status(pd_erase_api *a, const char *qs, int internal, int hops, pd_erase_answer *out)
{
    pd_worker *w = a->w;
    if (w->nparts <= 0 || !w->parts) {
        answer_error(out, 503, "partition unavailable", "input topic partition count not known yet");
        return;
    }
    int32_t p = 0;
    int64_t o = 0;
    char err[256];
    if (parse_position(qs, w->nparts, &p, &o, err, sizeof err) != PD_OK) {
        answer_error(out, 400, "bad request", "%s", err);
        return;
    }
    if (atomic_load(&w->parts[p].owned)) {
        status_local(w, p, o, out);
        return;
    }
    if (internal || hops >= ERASE_MAX_HOPS) {
        answer_error(out, 503, "partition unavailable", "partition %d is not owned by %s", (int)p, w->cfg->id);
        return;
    }
    pd_owner ow;
    if (!w->members || pd_members_owner(w->members, p, &ow) != PD_OK || strcmp(ow.url, w->advertise) == 0) {
        answer_error(out, 503, "partition unavailable", "partition %d: owner unknown", (int)p);
        return;
    }
    if (forward(a, ow.url, p, o, hops, out, err, sizeof err) == PD_OK) return;
    pd_warn("http: erasure status of partition %d from %s (%s) failed: %s", (int)p, ow.id, ow.url, err);
    answer_error(out, 503, "partition unavailable", "partition %d: owner %s unreachable", (int)p, ow.id);
}

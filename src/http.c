/*
 * http.c -- the REST API on civetweb. A query for a partition this worker
 * does not own goes to the partition's owner through forward.c (one
 * routing for every per-user route: profile, rank, affinities).
 *
 * Routes (all answers JSON except /metrics; every answer carries a
 * Content-Length, never chunked encoding, so peers can keep connections):
 *   GET /v1/profiles/{user_id}          profile query (local or forwarded)
 *   DELETE /v1/profiles/{user_id}       erasure (http_erase.c)
 *   POST /v1/profiles/{user_id}/rank, GET .../affinities  scoring (http_score.c;
 *                                       the only route with a request body: read
 *                                       here, Content-Length framed, JSON only)
 *   GET /v1/erasures?partition=&offset= erasure status (http_erase.c)
 *   GET /v1/partitions                  partition -> owner map + own view
 *   GET /v1/population                  the population prior (population.c)
 *   GET /v1/schema                      the schema events are read into (schema.h)
 *   GET /internal/v1/population         this worker's partitions' population days
 *   GET /healthz, /readyz, /metrics     ops endpoints
 *   GET /internal/v1/profiles/{user_id} the forwarded form: local state only
 * Errors are {"error":"...","detail":"..."} with application/json. Errors
 * civetweb detects itself (malformed request, oversized head) go through the
 * http_error callback and get the same JSON shape; the two request targets
 * it drops without an answer ("*", absolute-form for another host:port) are
 * answered from its connection_close callback (on_conn_close). Hostile
 * heads: ambiguous framing (request smuggling) -> 400 and close; 64 header
 * fields or more (civetweb keeps 64 and drops the rest unseen) -> 431. What
 * a public client sees names no server path nor peer URL: a 500 carries a
 * request number whose cause is in the log, a 503 the owner's id.
 *
 * Routing works on the RAW request path (civetweb option decode_url=no), so
 * a user id may contain an encoded '/' ("%2F"); the single path segment
 * after the prefix is percent-decoded here ('+' stays '+'), must be 1..256
 * bytes of valid UTF-8.
 *
 * Auth: with api_token set, every /v1/ request (and the ops endpoints when
 * protect_ops_endpoints) needs "Authorization: Bearer <api_token>" (401 +
 * WWW-Authenticate otherwise). The internal route needs the cluster token
 * (pd_config_cluster_token: cluster_token, or api_token when it is empty,
 * so enabling only api_token leaves no unauthenticated back door; the same
 * token goes out with forwards and snapshot fetches); missing header ->
 * 401, wrong token -> 403. Tokens are compared in constant time. Without
 * any token the internal route is open, which config.c allows only on a
 * loopback address or with insecure_cluster.
 *
 * Forwarding (forward.h): the public route computes the partition (Kafka
 * murmur2). Not owned here -> GET <owner.url>/internal/v1/profiles/<user>?<query> with
 * X-Profiled-Hops: hops+1; the status, body and Retry-After of the owner are
 * relayed verbatim. The internal route never forwards, and a public request
 * that arrives with hops >= 2 is refused (508), so a stale owner map cannot
 * loop. The request goes through the peer client (peer.c): one deadline
 * (forward_timeout_ms) for connect + send + receive, idle keep-alive
 * connections pooled per peer, a stale pooled connection retried once on a
 * fresh one.
 *
 * Threads: civetweb calls on_request from http_threads worker threads; they
 * share only the worker's atomics, the store (thread-safe reads), the
 * metrics atomics, the members map (its own lock), the peer pool (pool
 * lock) and the pool of idle query buffers (range lock). civetweb listens
 * on 127.0.0.1 (ephemeral port) only: clients connect to the front end
 * (http_front.c), which holds idle and slow connections, enforces the
 * connection limits and passes complete request heads to civetweb over
 * pooled loopback connections (why: see http_front.c).
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <civetweb.h>

#include "backupd.h"
#include "forward.h"
#include "handoff.h"
#include "http_erase.h"
#include "http_score.h"
#include "http_front.h"
#include "members.h"
#include "metrics.h"
#include "peer.h"
#include "quarantine.h"
#include "population.h"
#include "query.h"
#include "util.h"

#define HTTP_MAX_URI 8192          /* longer path -> 414 */
#define HTTP_MAX_QUERY 4096        /* longer query string -> 414 */
#define HTTP_KEEPALIVE_MS "60000"  /* civetweb: the front's pooled connections (it closes them at 20 s) */
#define HTTP_KEEPALIVE_DIRECT_MS "1000" /* civetweb serving clients itself (http_front = false): above
                                           peer.c's PD_PEER_IDLE_MAX_US */
#define RESP_MAX_HDRS 4

static const char PFX_PROFILE[] = "/v1/profiles/";
static const char PFX_INTERNAL[] = "/internal/v1/profiles/";
static const char PFX_SNAPSHOT[] = "/internal/v1/snapshot/";
static const char PATH_BACKUP[] = "/internal/v1/backup";
static const char PATH_ERASURES[] = "/v1/erasures";
static const char PATH_ERASURES_INT[] = "/internal/v1/erasures";
static const char PATH_POPULATION[] = "/v1/population";
static const char PATH_POPULATION_INT[] = "/internal/v1/population";

/* ------------------------------------------------------------------ */
/* types                                                                */
/* ------------------------------------------------------------------ */

struct pd_http {
    pd_worker *w;                  /* borrowed; outlives the server */
    struct mg_context *ctx;
    pd_front *front;               /* owned: the public listener */
    int port;                      /* the front's */
    int mg_port;                   /* civetweb's, on 127.0.0.1 */
    pd_peer_pool *pool;            /* owned: idle connections to peers */
    pd_fwd fwd;                    /* the per-user routing (forward.h) on pool */
    pd_stash ranges;               /* idle query buffers, pd_store_range * (see range_get) */
    pd_erase_api *erase;           /* owned: the erasure routes */
    pd_score_api *score;           /* owned: the scoring routes */
};

/* One response under construction. body is owned; the body proper is
 * body.p[off, body.len): a handler may reserve RESP_HEADROOM bytes in front
 * (resp_headroom) so that resp_send writes the head there and sends head
 * and body in one write without copying the body. */
#define RESP_HEADROOM 512
typedef struct {
    int status;
    const char *ctype;             /* static string */
    pd_buf body;
    size_t off;
    int nh;
    const char *hname[RESP_MAX_HDRS]; /* static strings */
    char hval[RESP_MAX_HDRS][96];
    int sent;                      /* the handler streamed the response itself */
    int close;                     /* close the connection after this answer */
} http_resp;

/* ------------------------------------------------------------------ */
/* small helpers                                                        */
/* ------------------------------------------------------------------ */

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 508: return "Loop Detected";
    default: return "Error";
    }
}

static void resp_header(http_resp *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void resp_header(http_resp *r, const char *name, const char *fmt, ...)
{
    pd_assert(r->nh < RESP_MAX_HDRS);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->hval[r->nh], sizeof r->hval[r->nh], fmt, ap);
    va_end(ap);
    r->hname[r->nh++] = name;
}

/* Replaces the body with {"error":error,"detail":<fmt>}. */
static void resp_error(http_resp *r, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Empties the body (and drops any headroom). */
static void resp_body_reset(http_resp *r)
{
    r->body.len = 0;
    r->off = 0;
}

/* Reserves the head's room in front of an empty body, with capacity for
 * `expect` body bytes after it. */
static void resp_headroom(http_resp *r, size_t expect)
{
    if (r->body.len != r->off) return;
    pd_buf_reserve(&r->body, RESP_HEADROOM + expect);
    r->body.len = r->off = RESP_HEADROOM;
}

static void resp_error(http_resp *r, int status, const char *error, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    r->status = status;
    r->ctype = "application/json";
    resp_body_reset(r);
    pd_buf_json_error(&r->body, error, detail);
}

/* A 500 whose cause stays in the log: the client gets a generic detail
 * with a number to find the log line ("request <n>"), never the cause
 * (RocksDB and file errors name server paths). */
static void resp_internal(http_resp *r, const pd_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void resp_internal(http_resp *r, const pd_config *cfg, const char *fmt, ...)
{
    static _Atomic uint64_t seq;
    uint64_t id = atomic_fetch_add(&seq, 1) + 1;
    char cause[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cause, sizeof cause, fmt, ap);
    va_end(ap);
    pd_error("http: internal error (request %llu): %s", (unsigned long long)id, cause);
    resp_error(r, 500, "internal error", "logged on %s as request %llu", cfg->id, (unsigned long long)id);
}

/* Would civetweb keep this connection open after the response? Mirrors
 * its rule (enable_keep_alive is "yes" here): not after a 401, not when
 * the request says "Connection:" without keep-alive, not for a request
 * without that header below HTTP/1.1. civetweb decides by itself; this
 * only makes our Connection header say the same. */
static int keeps_alive(struct mg_connection *c, const struct mg_request_info *ri, const http_resp *r)
{
    if (r->status == 401 || r->close) return 0;
    const char *hdr = mg_get_header(c, "Connection");
    if (hdr) {
        for (const char *t = hdr; *t;) {
            while (*t == ' ' || *t == '\t' || *t == ',') t++;
            size_t n = strcspn(t, ",");
            size_t m = n;
            while (m && (t[m - 1] == ' ' || t[m - 1] == '\t')) m--;
            if (m == 10 && strncasecmp(t, "keep-alive", 10) == 0) return 1;
            t += n;
        }
        return 0;
    }
    return ri->http_version && strcmp(ri->http_version, "1.1") == 0;
}

/* Appends an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), formatted
 * once per second per thread. */
static void put_http_date(pd_buf *b)
{
    static const char wd[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char mo[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static _Thread_local time_t last = (time_t)-1;
    static _Thread_local char t[40];
    static _Thread_local size_t n;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        int k = snprintf(t, sizeof t, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday % 7],
                         tm.tm_mday, mo[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                         tm.tm_sec);
        n = k > 0 && (size_t)k < sizeof t ? (size_t)k : 0;
        last = now;
    }
    pd_buf_append(b, t, n);
}

/* Sends head and body with ONE write (one TCP segment for small answers,
 * one wake-up of the client), with the headers civetweb's own response
 * API would produce: Content-Type, Content-Length, Cache-Control, ours,
 * Date, Connection. */
static void resp_send(struct mg_connection *c, const http_resp *r)
{
    const struct mg_request_info *ri = mg_get_request_info(c);
    const char *ver = ri && ri->http_version && strcmp(ri->http_version, "1.0") == 0 ? "1.0" : "1.1";
    const size_t blen = r->body.len - r->off;
    pd_buf out = {0};
    pd_buf_reserve(&out, r->off || blen > 4096 ? 256 : 256 + blen);
    /* no printf: this runs for every answer */
    PD_BUF_LIT(&out, "HTTP/");
    pd_buf_puts(&out, ver);
    pd_buf_putc(&out, ' ');
    pd_buf_put_u64(&out, (uint64_t)r->status);
    pd_buf_putc(&out, ' ');
    pd_buf_puts(&out, status_text(r->status));
    PD_BUF_LIT(&out, "\r\nContent-Type: ");
    pd_buf_puts(&out, r->ctype);
    PD_BUF_LIT(&out, "\r\nContent-Length: ");
    pd_buf_put_u64(&out, blen);
    PD_BUF_LIT(&out, "\r\nCache-Control: no-store\r\n");
    for (int i = 0; i < r->nh; i++) {
        pd_buf_puts(&out, r->hname[i]);
        PD_BUF_LIT(&out, ": ");
        pd_buf_puts(&out, r->hval[i]);
        PD_BUF_LIT(&out, "\r\n");
    }
    PD_BUF_LIT(&out, "Date: ");
    put_http_date(&out);
    if (ri && keeps_alive(c, ri, r))
        PD_BUF_LIT(&out, "\r\nConnection: keep-alive\r\n\r\n");
    else
        PD_BUF_LIT(&out, "\r\nConnection: close\r\n\r\n");
    if (out.len <= r->off) {
        /* the head goes into the body's headroom: one write, no copy */
        char *start = r->body.p + r->off - out.len;
        memcpy(start, out.p, out.len);
        mg_write(c, start, out.len + blen);
    } else if (blen > 4096) {
        /* a large body (metrics, snapshots' errors): two writes, no copy */
        mg_write(c, out.p, out.len);
        mg_write(c, r->body.p + r->off, blen);
    } else {
        if (blen) pd_buf_append(&out, r->body.p + r->off, blen);
        mg_write(c, out.p, out.len);
    }
    pd_buf_free(&out);
}

/* Constant-time (in the secret's length) check of "Bearer <secret>". */
static int bearer_ok(const char *hdr, const char *secret)
{
    size_t slen = strlen(secret);
    if (!hdr || strncasecmp(hdr, "Bearer ", 7) != 0) return 0;
    const char *tok = hdr + 7;
    while (*tok == ' ') tok++;
    size_t tlen = strlen(tok);
    while (tlen && (tok[tlen - 1] == ' ' || tok[tlen - 1] == '\t')) tlen--;
    unsigned diff = tlen != slen;
    for (size_t i = 0; i < slen; i++)
        diff |= (unsigned char)(i < tlen ? tok[i] : 0) ^ (unsigned char)secret[i];
    return diff == 0;
}

/* ------------------------------------------------------------------ */
/* profile queries                                                      */
/* ------------------------------------------------------------------ */

/* Answers from the local store: 200 with the rendered profile, 404, 500.
 * The range's days are read with one MultiGet from one snapshot. */
/* Query buffers: a query decodes its days into a pd_store_range whose
 * capacity (the decoded profiles' value arrays and histograms) is worth
 * reusing. Idle ranges wait in a small pool shared by the HTTP threads
 * (LIFO, so the most recently used, cache-warm one is taken first): at
 * most PD_STASH_MAX of them, each holding at most RANGE_KEEP days and
 * RANGE_KEEP_BYTES (a range that grew past either after a heavy user's
 * query is freed instead of pooled). What idle buffers keep is thus
 * bounded by PD_STASH_MAX x RANGE_KEEP_BYTES, not by http_threads; when more
 * queries than PD_STASH_MAX run at once, the extra ones get fresh ranges.
 * (Per-thread buffers, used before, warmed up one thread at a time as a
 * light query load moved across the 32 threads, which showed as RSS
 * creeping for many minutes.) */
#define RANGE_KEEP 64
#define RANGE_KEEP_BYTES (256 * 1024)

static pd_store_range *range_get(pd_http *h)
{
    pd_store_range *r = pd_stash_take(&h->ranges);
    return r ? r : pd_calloc(1, sizeof *r);
}

static void range_destroy(void *x)
{
    pd_store_range_free(x);
    pd_free(x);
}

/* Returns rg to the pool, or frees it (pool full, or rg too big). */
static void range_put(pd_http *h, pd_store_range *rg)
{
    if (rg->cap <= RANGE_KEEP && pd_store_range_mem_bytes(rg) <= RANGE_KEEP_BYTES &&
        pd_stash_give(&h->ranges, rg))
        return;
    range_destroy(rg);
}

static void profile_local(pd_http *h, const pd_query *q, const char *user, size_t ulen, int32_t p,
                          int64_t today, int stale, http_resp *r)
{
    pd_worker *w = h->w;
    int nq = 0;
    pd_store_range *rg = range_get(h);
    pd_query_day qd_s[64], *qd = qd_s;
    char err[256];
    int rc = pd_store_get_profile_range(w->store, NULL, q->from_day, q->to_day, p, user, ulen, rg,
                                        err, sizeof err);
    if (rc != PD_OK) {
        if (rc == PD_ECORRUPT) pd_quarantine_found(w, p, err);
        resp_internal(r, w->cfg, "partition %d: reading profile: %s", (int)p, err);
        goto out;
    }
    if (rg->n > (int)(sizeof qd_s / sizeof qd_s[0])) qd = pd_malloc((size_t)rg->n * sizeof *qd);
    for (int i = 0; i < rg->n; i++) {
        qd[i].day = rg->days[i];
        qd[i].prof = &rg->profs[i];
    }
    nq = rg->n;
    /* a 30-day, 20-dimension answer is ~8-12 KiB: one allocation, no
     * doubling copies while rendering */
    if (nq > 0) resp_headroom(r, 16384);
    rc = nq > 0 ? pd_query_render(q, w->schema, user, ulen, p, today, qd, nq, &r->body)
                : PD_ENOTFOUND;
    if (rc == PD_ENOTFOUND && stale) {
        /* A replica cannot tell "no such user" from "not replicated yet":
         * never answer a silently empty profile from a copy. */
        resp_error(r, 503, "partition unavailable", "partition %d: owner unavailable and the replica on %s has no "
                   "events for this user", (int)p, w->cfg->id);
        resp_header(r, "Retry-After", "1");
        goto out;
    }
    if (rc == PD_ENOTFOUND) {
        resp_error(r, 404, "not found", "no events for user in range");
        goto out;
    }
    if (rc != PD_OK) {
        resp_internal(r, w->cfg, "partition %d: rendering failed (%d)", (int)p, rc);
        goto out;
    }
    PD_BUF_LIT(&r->body, ",\"served_by\":");
    pd_buf_json_str(&r->body, w->cfg->id, strlen(w->cfg->id));
    if (stale) {
        /* A replica's copy: as fresh as its own consumption of the log. */
        int64_t hw = atomic_load(&w->parts[p].high_watermark), no = atomic_load(&w->parts[p].next_offset);
        pd_buf_printf(&r->body, ",\"stale\":true,\"lag\":%lld}", (long long)(hw >= 0 && no >= 0 && hw > no ? hw - no : 0));
    } else {
        PD_BUF_LIT(&r->body, ",\"stale\":false}");
    }
    r->status = 200;
    r->ctype = "application/json";
out:
    if (qd != qd_s) pd_free(qd);
    range_put(h, rg);
}

/* The profile query's answers for the router (forward.h): out is an
 * http_resp. */
typedef struct {
    pd_http *h;
    const pd_query *q;
    const char *user;
    size_t ulen;
    int64_t today;
} profile_ctx;

static void fwd_local(void *ctx, int32_t p, int stale, void *out)
{
    profile_ctx *x = ctx;
    profile_local(x->h, x->q, x->user, x->ulen, p, x->today, stale, out);
}

static void fwd_error(void *ctx, void *out, int status, const char *error, const char *detail, int retry)
{
    http_resp *r = out;
    resp_error(r, status, error, "%s", detail);
    if (retry) resp_header(r, "Retry-After", "1");
}

static void fwd_relay(void *ctx, void *out, pd_peer_resp *fr)
{
    http_resp *r = out;
    r->status = fr->status;
    r->ctype = "application/json";
    pd_buf_free(&r->body); /* take the peer's body over, no copy */
    r->body = fr->body;
    r->off = 0;
    memset(&fr->body, 0, sizeof fr->body);
    if (fr->retry_after[0]) resp_header(r, "Retry-After", "%s", fr->retry_after);
}

static void fwd_reset(void *ctx, void *out)
{
    http_resp *r = out;
    resp_body_reset(r);
    r->nh = 0;
    r->status = 500;
}

static int fwd_status(void *ctx, const void *out)
{
    return ((const http_resp *)out)->status;
}

static const pd_fwd_ops profile_ops = {fwd_local, fwd_error, fwd_relay, fwd_reset, fwd_status};

/* The user id of a path segment into user[PD_MAX_USER_ID]; else a 400 in r. */
static int decode_user(const char *seg, size_t seglen, char *user, size_t *ulen, http_resp *r)
{
    int rc = pd_pct_decode(seg, seglen, 0, user, PD_MAX_USER_ID, ulen);
    if (rc == PD_EINVAL) {
        resp_error(r, 400, "bad request", "user_id: malformed percent-encoding");
        return rc;
    }
    if (rc == PD_ERANGE) {
        resp_error(r, 400, "bad request", "user_id: longer than %d bytes", PD_MAX_USER_ID);
        return rc;
    }
    if (*ulen == 0) {
        resp_error(r, 400, "bad request", "user_id: must not be empty");
        return PD_EINVAL;
    }
    if (!pd_utf8_valid(user, *ulen)) {
        resp_error(r, 400, "bad request", "user_id: not valid UTF-8");
        return PD_EINVAL;
    }
    return PD_OK;
}

/* An answer of http_erase.c into r (its body taken over). */
static void erase_answer(http_resp *r, pd_erase_answer *a)
{
    r->status = a->status;
    r->ctype = "application/json";
    pd_buf_free(&r->body);
    r->body = a->body;
    r->off = 0;
    memset(&a->body, 0, sizeof a->body);
    if (a->retry_after[0]) resp_header(r, "Retry-After", "%s", a->retry_after);
    if (a->location[0]) resp_header(r, "Location", "%s", a->location);
}

/* DELETE /v1/profiles/{seg} and GET [/internal]/v1/erasures (http_erase.h). */
static void route_erase(pd_http *h, struct mg_connection *c, const struct mg_request_info *ri, const char *seg,
                        size_t seglen, const char *qs, int internal, http_resp *r)
{
    pd_erase_answer a = {0};
    if (seg) {
        char user[PD_MAX_USER_ID];
        size_t ulen = 0;
        if (decode_user(seg, seglen, user, &ulen, r) != PD_OK) return;
        pd_erase_api_delete(h->erase, user, ulen, &a);
    } else {
        if (strcmp(ri->request_method, "GET") != 0) {
            resp_error(r, 405, "method not allowed", "only GET is supported here");
            resp_header(r, "Allow", "GET");
            return;
        }
        const char *hh = mg_get_header(c, "X-Profiled-Hops");
        int hops = hh ? atoi(hh) : 0;
        pd_erase_api_status(h->erase, qs, internal, hops < 0 ? 0 : hops, &a);
    }
    erase_answer(r, &a);
}

/* Reads the request body (Content-Length framed, at most
 * rank_max_body_bytes) into *b; else an error answer in r (the connection
 * closes: the rest of the stream is unread). */
static int read_body(pd_http *h, struct mg_connection *c, const struct mg_request_info *ri, pd_buf *b,
                     http_resp *r)
{
    const pd_config *cfg = h->w->cfg;
    r->close = 1;
    const char *ct = mg_get_header(c, "Content-Type");
    size_t ctl = ct ? strcspn(ct, "; \t") : 0;
    if (!ct || ctl != 16 || strncasecmp(ct, "application/json", 16) != 0) {
        resp_error(r, 415, "unsupported media type", "the body must be JSON (Content-Type: application/json)");
        return PD_EINVAL;
    }
    if (mg_get_header(c, "Transfer-Encoding") || ri->content_length < 0) {
        resp_error(r, 411, "length required", "send the body with a Content-Length (chunked bodies are not supported)");
        return PD_EINVAL;
    }
    if (ri->content_length > cfg->rank_max_body_bytes) {
        resp_error(r, 413, "payload too large", "request body of %lld bytes is over rank_max_body_bytes (%lld)",
                   (long long)ri->content_length, (long long)cfg->rank_max_body_bytes);
        return PD_ERANGE;
    }
    size_t want = (size_t)ri->content_length;
    pd_buf_reserve(b, want + 1);
    while (b->len < want) {
        int n = mg_read(c, b->p + b->len, want - b->len);
        if (n <= 0) {
            resp_error(r, 400, "bad request", "request body shorter than its Content-Length (%zu of %zu bytes)",
                       b->len, want);
            return PD_EINVAL;
        }
        b->len += (size_t)n;
    }
    b->p[b->len] = '\0';
    r->close = 0;
    return PD_OK;
}

/* POST [/internal]/v1/profiles/{seg}/rank and GET .../affinities
 * (http_score.h). */
static void route_score(pd_http *h, struct mg_connection *c, const struct mg_request_info *ri, const char *seg,
                        size_t seglen, int rank, const char *qs, int internal, http_resp *r)
{
    const char *method = rank ? "POST" : "GET";
    if (strcmp(ri->request_method, method) != 0) {
        resp_error(r, 405, "method not allowed", "%s: only %s is supported", rank ? "rank" : "affinities", method);
        resp_header(r, "Allow", "%s", method);
        if (rank) r->close = 1; /* a body may follow, unread */
        return;
    }
    char user[PD_MAX_USER_ID];
    size_t ulen = 0;
    if (decode_user(seg, seglen, user, &ulen, r) != PD_OK) {
        r->close = rank;
        return;
    }
    const char *hh = mg_get_header(c, "X-Profiled-Hops");
    int hops = 0;
    if (hh) {
        char *e;
        long v = strtol(hh, &e, 10);
        hops = (e == hh || v < 0) ? 0 : (int)PD_MIN(v, 1000);
    }
    const char *so = mg_get_header(c, "X-Profiled-Stale-Ok");
    pd_score_call call = {.user = user, .ulen = ulen, .internal = internal, .hops = hops,
                          .stale_ok = internal && so && strcmp(so, "1") == 0, .qs = qs};
    pd_buf body = {0};
    pd_score_answer a = {0};
    if (rank) {
        if (read_body(h, c, ri, &body, r) != PD_OK) goto out;
        call.body = body.p;
        call.blen = body.len;
        pd_score_api_rank(h->score, &call, &a);
    } else {
        pd_score_api_affinities(h->score, &call, &a);
    }
    r->status = a.status;
    r->ctype = "application/json";
    pd_buf_free(&r->body);
    r->body = a.body;
    r->off = 0;
    memset(&a.body, 0, sizeof a.body);
    if (a.retry_after[0]) resp_header(r, "Retry-After", "%s", a.retry_after);
out:
    pd_buf_free(&a.body);
    pd_buf_free(&body);
}

/* GET /v1/population and /internal/v1/population (population.h). */
static void route_population(pd_http *h, const char *qs, int internal, http_resp *r)
{
    pd_population_answer a;
    pd_population_http(h->w, qs, internal, &a);
    r->status = a.status;
    r->ctype = a.ctype;
    pd_buf_free(&r->body); /* take the answer's body over, no copy */
    r->body = a.body;
    r->off = 0;
}

/* GET /v1/profiles/{seg} (internal=0) or /internal/v1/profiles/{seg}. */
static void route_profile(pd_http *h, struct mg_connection *c, const char *seg, size_t seglen,
                          const char *qs, int internal, http_resp *r)
{
    pd_worker *w = h->w;
    char user[PD_MAX_USER_ID];
    size_t ulen = 0;
    if (decode_user(seg, seglen, user, &ulen, r) != PD_OK) return;
    const char *hh = mg_get_header(c, "X-Profiled-Hops");
    int hops = 0;
    if (hh) {
        char *e;
        long v = strtol(hh, &e, 10);
        hops = (e == hh || v < 0) ? 0 : (int)PD_MIN(v, 1000);
    }
    int64_t today = pd_tz_day(&w->tz, pd_now_ms());
    pd_query q;
    char err[512] = "";
    if (pd_query_parse_params(&q, qs ? qs : "", w->schema, today, w->cfg->retention_days, err,
                              sizeof err) != PD_OK) {
        resp_error(r, 400, "bad request", "%s", err);
        return;
    }
    today = q.anchor_day; /* at=: the query's own today (decay ages) */
    const char *so = mg_get_header(c, "X-Profiled-Stale-Ok");
    profile_ctx x = {h, &q, user, ulen, today};
    pd_fwd_req rq = {.ops = &profile_ops, .ctx = &x, .user = user, .ulen = ulen, .suffix = "", .qs = qs,
                     .internal = internal, .hops = hops, .stale_ok = internal && so && strcmp(so, "1") == 0,
                     .what = "profile query"};
    pd_fwd_route(&h->fwd, &rq, r);
}

/* GET /internal/v1/snapshot/{p}: the partition's state as a snapshot
 * stream (see handoff.h). It is first written to a file next to the store
 * (one consistent RocksDB snapshot, however slow the peer reads) and then
 * sent with a Content-Length. */
static void route_snapshot(pd_http *h, struct mg_connection *c, const char *seg, http_resp *r)
{
    pd_worker *w = h->w;
    char *e;
    long p = strtol(seg, &e, 10);
    if (e == seg || *e || p < 0 || p >= w->nparts) {
        resp_error(r, 400, "bad request", "snapshot: bad partition '%.32s'", seg);
        return;
    }
    pd_checkpoint cp;
    if (pd_store_get_checkpoint(w->store, (int32_t)p, &cp) != PD_OK || atomic_load(&w->parts[p].restoring)) {
        resp_error(r, 404, "not found", "partition %ld: no state on %s", p, w->cfg->id);
        return;
    }
    char path[1100], err[256];
    static _Atomic int seq;
    snprintf(path, sizeof path, "%s/snapshot-out-%ld-%d.tmp", w->cfg->data_dir, p, atomic_fetch_add(&seq, 1));
    FILE *f = fopen(path, "w+b");
    if (!f) {
        resp_internal(r, w->cfg, "snapshot: cannot create %s: %s", path, strerror(errno));
        return;
    }
    unlink(path); /* anonymous from here on: nothing to clean up after a crash */
    uint64_t bytes = 0;
    int64_t t0 = pd_mono_us();
    int rc = pd_handoff_export(w->store, w->schema, pd_config_cluster_token(w->cfg), (int32_t)p, pd_handoff_file_sink, f,
                               &cp, &bytes, err, sizeof err);
    if (rc == PD_ENOTFOUND) {
        fclose(f);
        resp_error(r, 404, "not found", "partition %ld: no state on %s", p, w->cfg->id);
        return;
    }
    if (rc || fflush(f) != 0) {
        fclose(f);
        if (rc == PD_ECORRUPT) pd_quarantine_found(w, (int32_t)p, err);
        resp_internal(r, w->cfg, "snapshot of partition %ld failed: %s", p, rc ? err : "write");
        return;
    }
    char len[32];
    snprintf(len, sizeof len, "%llu", (unsigned long long)bytes);
    mg_response_header_start(c, 200);
    mg_response_header_add(c, "Content-Type", "application/octet-stream", -1);
    mg_response_header_add(c, "Content-Length", len, -1);
    mg_response_header_add(c, "Cache-Control", "no-store", -1);
    mg_response_header_send(c);
    rewind(f);
    enum { CHUNK = 64 * 1024 };
    char *buf = pd_malloc(CHUNK); /* civetweb worker stacks are small */
    size_t n, sent = 0;
    while ((n = fread(buf, 1, CHUNK, f)) > 0) {
        if (mg_write(c, buf, n) != (int)n) break;
        sent += n;
    }
    pd_free(buf);
    fclose(f);
    pd_info("served snapshot of partition %ld: %llu bytes at offset %lld in %.3fs%s", p, (unsigned long long)bytes,
            (long long)cp.next_offset, (double)(pd_mono_us() - t0) / 1e6, sent == bytes ? "" : " (peer went away)");
    r->status = 200;
    r->sent = 1;
}

/* ------------------------------------------------------------------ */
/* other routes                                                         */
/* ------------------------------------------------------------------ */

/* POST /internal/v1/backup: a backup into backup_dir now (backupd.h).
 * Errors are logged in full; the answer says only what failed (the
 * message names server paths). */
static void route_backup(pd_http *h, const struct mg_request_info *ri, http_resp *r)
{
    if (strcmp(ri->request_method, "POST") != 0) {
        resp_error(r, 405, "method not allowed", "only POST is supported here");
        resp_header(r, "Allow", "POST");
        return;
    }
    if (!h->w->backups) {
        resp_error(r, 409, "conflict", "backup_dir is not set on this worker");
        return;
    }
    pd_backup_info bi;
    uint64_t added = 0;
    int64_t dur = 0;
    char err[512];
    if (pd_backupd_run(h->w->backups, &bi, &added, &dur, err, sizeof err) != PD_OK) {
        resp_error(r, 500, "internal error", "backup failed (the worker's log says why)");
        return;
    }
    r->status = 200;
    r->ctype = "application/json";
    pd_buf_printf(&r->body,
                  "{\"id\":%u,\"timestamp\":%lld,\"size_bytes\":%llu,\"added_bytes\":%llu,\"files\":%u,"
                  "\"duration_ms\":%lld}",
                  bi.id, (long long)bi.timestamp, (unsigned long long)bi.size, (unsigned long long)added, bi.files,
                  (long long)(dur / 1000));
}

static void route_partitions(pd_http *h, http_resp *r)
{
    pd_worker *w = h->w;
    pd_buf *b = &r->body;
    pd_buf_printf(b, "{\"partitions\":%d,\"owners\":", (int)w->nparts);
    if (w->members) {
        pd_members_render(w->members, b);
    } else {
        pd_buf_putc(b, '[');
        for (int32_t p = 0; p < w->nparts; p++) {
            if (p) pd_buf_putc(b, ',');
            pd_buf_printf(b, "{\"partition\":%d,\"owner\":", (int)p);
            if (atomic_load(&w->parts[p].owned)) {
                PD_BUF_LIT(b, "{\"id\":");
                pd_buf_json_str(b, w->cfg->id, strlen(w->cfg->id));
                PD_BUF_LIT(b, ",\"url\":");
                pd_buf_json_str(b, w->advertise, strlen(w->advertise));
                pd_buf_printf(b, "},\"generation\":%lld}",
                              (long long)atomic_load(&w->parts[p].generation));
            } else {
                PD_BUF_LIT(b, "null,\"generation\":null}");
            }
        }
        pd_buf_putc(b, ']');
    }
    PD_BUF_LIT(b, ",\"self\":{\"id\":");
    pd_buf_json_str(b, w->cfg->id, strlen(w->cfg->id));
    PD_BUF_LIT(b, ",\"url\":");
    pd_buf_json_str(b, w->advertise, strlen(w->advertise));
    pd_buf_printf(b, ",\"generation\":%lld,\"owned\":[", (long long)atomic_load(&w->generation));
    int first = 1;
    for (int32_t p = 0; p < w->nparts; p++) {
        if (!atomic_load(&w->parts[p].owned)) continue;
        pd_buf_printf(b, "%s%d", first ? "" : ",", (int)p);
        first = 0;
    }
    PD_BUF_LIT(b, "],\"ready\":[");
    first = 1;
    for (int32_t p = 0; p < w->nparts; p++) {
        if (!atomic_load(&w->parts[p].owned) || !atomic_load(&w->parts[p].ready)) continue;
        pd_buf_printf(b, "%s%d", first ? "" : ",", (int)p);
        first = 0;
    }
    PD_BUF_LIT(b, "]}}");
    r->status = 200;
    r->ctype = "application/json";
}

static void route_readyz(pd_http *h, http_resp *r)
{
    pd_worker *w = h->w;
    int owned = 0, ready = 0;
    pd_buf restoring = {0};
    pd_buf_putc(&restoring, '[');
    for (int32_t p = 0; p < w->nparts; p++) {
        if (!atomic_load(&w->parts[p].owned)) continue;
        owned++;
        if (atomic_load(&w->parts[p].ready)) {
            ready++;
        } else {
            pd_buf_printf(&restoring, "%s%d", restoring.len > 1 ? "," : "", (int)p);
        }
    }
    pd_buf_putc(&restoring, ']');
    /* Degraded but serving: partitions rebuilt from a topic whose retention
     * is shorter than the profile window, and the replicas kept here. */
    pd_buf extra = {0};
    pd_buf_printf(&extra, ",\"incomplete_rebuild\":[");
    int ninc = 0, nrep = 0, ngap = 0, nback = 0;
    for (int32_t p = 0; p < w->nparts; p++)
        if (atomic_load(&w->parts[p].incomplete) & PD_INCOMPLETE_REBUILD)
            pd_buf_printf(&extra, "%s%d", ninc++ ? "," : "", (int)p);
    /* offsets out of the topic's range (ingest offsets.c) */
    pd_buf_printf(&extra, "],\"offset_gap\":[");
    for (int32_t p = 0; p < w->nparts; p++)
        if (atomic_load(&w->parts[p].incomplete) & PD_INCOMPLETE_GAP)
            pd_buf_printf(&extra, "%s%d", ngap++ ? "," : "", (int)p);
    pd_buf_printf(&extra, "],\"offsets_backwards\":[");
    for (int32_t p = 0; p < w->nparts; p++)
        if (atomic_load(&w->parts[p].offsets_backwards))
            pd_buf_printf(&extra, "%s%d", nback++ ? "," : "", (int)p);
    pd_buf_printf(&extra, "],\"replicas\":[");
    for (int32_t p = 0; p < w->nparts; p++)
        if (atomic_load(&w->parts[p].replica))
            pd_buf_printf(&extra, "%s%d", nrep++ ? "," : "", (int)p);
    pd_buf_putc(&extra, ']');
    if (atomic_load(&w->store_quarantined)) pd_buf_printf(&extra, ",\"store_quarantined\":true");
    if (ninc || ngap)
        pd_buf_printf(&extra, ",\"warning\":\"%s\"",
                      ngap ? "some partitions skipped records the topic's retention deleted before they were "
                             "read (offset_gap): their profiles are incomplete"
                           : "some partitions were rebuilt from a topic whose retention is shorter than the "
                             "profile window: older days are incomplete");
    int64_t gen = atomic_load(&w->generation);
    int kafka_up = atomic_load(&w->kafka_up);
    const int disk_low = atomic_load(&w->disk_low);
    const char *status, *detail;
    if (atomic_load(&w->store_lost)) {
        status = "failing";
        detail = "the data directory was deleted or replaced under the worker";
    } else if (atomic_load(&w->store_corrupt)) {
        status = "failing";
        detail = strcmp(w->cfg->store_corruption, "quarantine") == 0
                     ? "the store is corrupt (a read failed its checksum; see the log): the worker restarts to "
                       "quarantine it and restore its partitions from peers or the topic (store_corruption)"
                     : "the store is corrupt (a read failed its checksum; see the log): the next start refuses "
                       "it (store_corruption=refuse)";
    } else if (nback) {
        status = "failing";
        detail = "a partition's checkpoint is beyond the end of the topic (recreated or truncated?): not consumed "
                 "until an operator decides (offsets_backwards)";
    } else if (gen <= 0 && kafka_up) { /* (Kafka down from the start: degraded, below) */
        status = "starting";
        detail = "no partition assignment received yet";
    } else if (ready < owned) {
        status = "restoring";
        detail = "some owned partitions are still being restored";
    } else if (!kafka_up || disk_low) {
        /* Still serving every owned partition from local state: stay in
         * the load balancer, but say that ingestion has stopped (Kafka
         * unreachable, or paused for the disk: ingest.c "the disk"). */
        status = "degraded";
        detail = NULL;
    } else {
        status = "ready";
        detail = NULL;
    }
    pd_buf *b = &r->body;
    pd_buf_printf(b, "{\"status\":\"%s\"", status);
    if ((!kafka_up && gen > 0) || disk_low)
        pd_buf_printf(b, ",\"degraded\":[%s%s%s]", !kafka_up && gen > 0 ? "\"kafka_down\"" : "",
                      !kafka_up && gen > 0 && disk_low ? "," : "", disk_low ? "\"disk_low\"" : "");
    if (disk_low)
        pd_buf_printf(b, ",\"disk\":{\"free_bytes\":%llu,\"min_free_bytes\":%llu,\"reason\":\"%s\"}",
                      (unsigned long long)atomic_load(&w->disk_free_bytes),
                      (unsigned long long)w->cfg->disk_min_free_mb << 20,
                      (disk_low & PD_DISK_LOW_WRITES) ? "store writes failing (retried until they succeed)"
                                                      : "free space below disk_min_free_mb: not consuming");
    if (detail) pd_buf_printf(b, ",\"error\":\"not ready\",\"detail\":\"%s\"", detail);
    pd_buf_printf(b, ",\"owned\":%d,\"ready\":%d,\"restoring\":%s,\"kafka_up\":%s,"
                  "\"generation\":%lld%s}",
                  owned, ready, restoring.p, kafka_up ? "true" : "false", (long long)gen, extra.p);
    pd_buf_free(&restoring);
    pd_buf_free(&extra);
    r->status = detail ? 503 : 200;
    r->ctype = "application/json";
    if (detail) resp_header(r, "Retry-After", "1");
}

static void route_metrics(pd_http *h, http_resp *r)
{
    if (h->w->metrics) pd_metrics_render(h->w->metrics, h->w, &r->body);
    r->status = 200;
    r->ctype = "text/plain; version=0.0.4";
}

/* ------------------------------------------------------------------ */
/* dispatch                                                             */
/* ------------------------------------------------------------------ */

/* Classifies the raw path. For profile routes *seg, *seglen get the segment
 * after the prefix (which may contain '/', making it a 404). */
static int classify(const char *path, const char **seg, size_t *seglen)
{
    if (strncmp(path, PFX_PROFILE, sizeof PFX_PROFILE - 1) == 0) {
        *seg = path + sizeof PFX_PROFILE - 1;
        *seglen = strlen(*seg);
        return PD_ROUTE_PROFILE;
    }
    if (strncmp(path, PFX_SNAPSHOT, sizeof PFX_SNAPSHOT - 1) == 0) {
        *seg = path + sizeof PFX_SNAPSHOT - 1;
        *seglen = strlen(*seg);
        return PD_ROUTE_INTERNAL;
    }
    if (strncmp(path, PFX_INTERNAL, sizeof PFX_INTERNAL - 1) == 0) {
        *seg = path + sizeof PFX_INTERNAL - 1;
        *seglen = strlen(*seg);
        return PD_ROUTE_INTERNAL;
    }
    if (strcmp(path, PATH_BACKUP) == 0) return PD_ROUTE_INTERNAL;
    if (strcmp(path, PATH_ERASURES) == 0) return PD_ROUTE_ERASE;
    if (strcmp(path, PATH_ERASURES_INT) == 0) return PD_ROUTE_INTERNAL;
    if (strcmp(path, "/v1/partitions") == 0) return PD_ROUTE_PARTITIONS;
    if (strcmp(path, PATH_POPULATION) == 0) return PD_ROUTE_POPULATION;
    if (strcmp(path, "/v1/schema") == 0) return PD_ROUTE_SCHEMA;
    if (strcmp(path, PATH_POPULATION_INT) == 0) return PD_ROUTE_INTERNAL;
    if (strcmp(path, "/healthz") == 0) return PD_ROUTE_HEALTHZ;
    if (strcmp(path, "/readyz") == 0) return PD_ROUTE_READYZ;
    if (strcmp(path, "/metrics") == 0) return PD_ROUTE_METRICS;
    return PD_ROUTE_OTHER;
}

static void count_request(pd_worker *w, int route, int status, int64_t t0_us)
{
    if (!w->metrics) return;
    PD_INC(w->metrics->http_requests[route][pd_status_slot(status)]);
    pd_hist_observe(&w->metrics->http_seconds[route], (double)(pd_mono_us() - t0_us) / 1e6);
}

/* Message framing a proxy in front could read differently from civetweb
 * (request smuggling): two Content-Length headers, a Content-Length that
 * is not one decimal number, Content-Length with Transfer-Encoding, two
 * Transfer-Encoding headers. Returns what is wrong, or NULL. */
static const char *framing_problem(const struct mg_request_info *ri)
{
    int ncl = 0, nte = 0, badcl = 0;
    for (int i = 0; i < ri->num_headers; i++) {
        const char *n = ri->http_headers[i].name, *v = ri->http_headers[i].value;
        if (strcasecmp(n, "Content-Length") == 0) {
            ncl++;
            size_t d = strspn(v, "0123456789");
            if (d == 0 || v[d + strspn(v + d, " \t")] != '\0') badcl = 1;
        } else if (strcasecmp(n, "Transfer-Encoding") == 0) {
            nte++;
        }
    }
    if (ncl > 1) return "more than one Content-Length header";
    if (ncl && nte) return "Content-Length together with Transfer-Encoding";
    if (nte > 1) return "more than one Transfer-Encoding header";
    if (badcl) return "Content-Length is not a decimal number";
    return NULL;
}

static void dispatch(pd_http *h, struct mg_connection *c, const struct mg_request_info *ri,
                     int *route, http_resp *r)
{
    const pd_config *cfg = h->w->cfg;
    const char *path = ri->local_uri_raw ? ri->local_uri_raw : ri->request_uri;
    const char *qs = ri->query_string;
    *route = PD_ROUTE_OTHER;
    const char *framing = framing_problem(ri);
    if (framing) {
        resp_error(r, 400, "bad request", "%s", framing);
        r->close = 1; /* the rest of the stream cannot be trusted */
        return;
    }
    /* civetweb keeps the first MG_MAX_HEADERS header fields and drops the
     * rest unseen: a head that fills them may hide more (and more bytes
     * than counted below). */
    if (ri->num_headers >= MG_MAX_HEADERS) {
        resp_error(r, 431, "request header fields too large", "more than %d header fields",
                   MG_MAX_HEADERS - 1);
        r->close = 1;
        return;
    }
    if (!path || path[0] != '/') {
        resp_error(r, 400, "bad request", "request target must be an absolute path");
        return;
    }
    if (strlen(path) > HTTP_MAX_URI) {
        resp_error(r, 414, "uri too long", "path longer than %d bytes", HTTP_MAX_URI);
        return;
    }
    if (qs && strlen(qs) > HTTP_MAX_QUERY) {
        resp_error(r, 414, "uri too long", "query string longer than %d bytes", HTTP_MAX_QUERY);
        return;
    }
    size_t head = strlen(ri->request_method) + strlen(ri->request_uri) + 16;
    for (int i = 0; i < ri->num_headers; i++)
        head += strlen(ri->http_headers[i].name) + strlen(ri->http_headers[i].value) + 4;
    if (head > (size_t)cfg->http_max_request_bytes) {
        resp_error(r, 431, "request header fields too large", "request head of %zu bytes is over http_max_request_bytes (%lld)",
                   head, (long long)cfg->http_max_request_bytes);
        return;
    }
    const char *seg = NULL;
    size_t seglen = 0;
    *route = classify(path, &seg, &seglen);
    int is_v1 = strncmp(path, "/v1/", 4) == 0 || strcmp(path, "/v1") == 0;
    int is_ops = *route == PD_ROUTE_HEALTHZ || *route == PD_ROUTE_READYZ ||
                 *route == PD_ROUTE_METRICS;
    if (*route == PD_ROUTE_OTHER && !is_v1) {
        resp_error(r, 404, "not found", "no route for this path");
        return;
    }
    int need_api = is_v1 || (is_ops && cfg->protect_ops_endpoints);
    if (need_api && cfg->api_token && *cfg->api_token &&
        !bearer_ok(mg_get_header(c, "Authorization"), cfg->api_token)) {
        resp_error(r, 401, "unauthorized", "missing or invalid bearer token");
        resp_header(r, "WWW-Authenticate", "Bearer realm=\"profiled\"");
        return;
    }
    if (*route == PD_ROUTE_INTERNAL) {
        const char *tok = pd_config_cluster_token(cfg);
        const char *auth = mg_get_header(c, "Authorization");
        if (tok && !auth) {
            resp_error(r, 401, "unauthorized", "internal route needs the cluster token");
            resp_header(r, "WWW-Authenticate", "Bearer realm=\"profiled-cluster\"");
            return;
        }
        if (tok && !bearer_ok(auth, tok)) {
            resp_error(r, 403, "forbidden", "invalid cluster token");
            return;
        }
    }
    if (*route == PD_ROUTE_OTHER) {
        resp_error(r, 404, "not found", "no route for this path");
        return;
    }
    if (strcmp(path, PATH_BACKUP) == 0) {
        route_backup(h, ri, r);
        return;
    }
    if (*route == PD_ROUTE_ERASE || strcmp(path, PATH_ERASURES_INT) == 0) {
        route_erase(h, c, ri, NULL, 0, qs, *route == PD_ROUTE_INTERNAL, r);
        return;
    }
    if (*route == PD_ROUTE_PROFILE ||
        (*route == PD_ROUTE_INTERNAL && strncmp(path, PFX_INTERNAL, sizeof PFX_INTERNAL - 1) == 0)) {
        /* {user}/rank and {user}/affinities (a user id's own '/' is %2F) */
        const char *sl = memchr(seg, '/', seglen);
        if (sl && (strcmp(sl, "/rank") == 0 || strcmp(sl, "/affinities") == 0)) {
            if (*route == PD_ROUTE_PROFILE) *route = PD_ROUTE_SCORE;
            route_score(h, c, ri, seg, (size_t)(sl - seg), sl[1] == 'r', qs, *route == PD_ROUTE_INTERNAL, r);
            return;
        }
    }
    if (*route == PD_ROUTE_PROFILE && strcmp(ri->request_method, "DELETE") == 0) {
        *route = PD_ROUTE_ERASE;
        if (memchr(seg, '/', seglen)) {
            resp_error(r, 404, "not found", "no route for this path (encode '/' in user_id as %%2F)");
            return;
        }
        route_erase(h, c, ri, seg, seglen, qs, 0, r);
        return;
    }
    if (strcmp(ri->request_method, "GET") != 0) {
        resp_error(r, 405, "method not allowed", "%s: only GET is supported", path);
        resp_header(r, "Allow", *route == PD_ROUTE_PROFILE ? "GET, DELETE" : "GET");
        return;
    }
    if (strncmp(path, PFX_SNAPSHOT, sizeof PFX_SNAPSHOT - 1) == 0) {
        route_snapshot(h, c, seg, r);
        return;
    }
    if (*route == PD_ROUTE_POPULATION || strcmp(path, PATH_POPULATION_INT) == 0) {
        route_population(h, qs, *route == PD_ROUTE_INTERNAL, r);
        return;
    }
    switch (*route) {
    case PD_ROUTE_PROFILE:
    case PD_ROUTE_INTERNAL:
        if (memchr(seg, '/', seglen)) {
            resp_error(r, 404, "not found", "no route for this path (encode '/' in user_id as %%2F)");
            return;
        }
        route_profile(h, c, seg, seglen, qs, *route == PD_ROUTE_INTERNAL, r);
        return;
    case PD_ROUTE_PARTITIONS: route_partitions(h, r); return;
    case PD_ROUTE_SCHEMA: /* what this worker reads events into (schema.h) */
        pd_schema_describe(h->w->schema, &r->body);
        r->status = 200;
        r->ctype = "application/json";
        return;
    case PD_ROUTE_HEALTHZ:
        r->status = 200;
        r->ctype = "application/json";
        PD_BUF_LIT(&r->body, "{\"status\":\"ok\"}");
        return;
    case PD_ROUTE_READYZ: route_readyz(h, r); return;
    case PD_ROUTE_METRICS: route_metrics(h, r); return;
    default: pd_assert(0);
    }
}

/* civetweb's authorization hook: access is checked in dispatch. */
static int on_auth(struct mg_connection *c, void *cbdata)
{
    (void)c;
    (void)cbdata;
    return 1;
}

static int on_request(struct mg_connection *c, void *cbdata)
{
    pd_http *h = cbdata;
    int64_t t0 = pd_mono_us();
    const struct mg_request_info *ri = mg_get_request_info(c);
    http_resp r;
    memset(&r, 0, sizeof r);
    r.status = 500;
    r.ctype = "application/json";
    int route = PD_ROUTE_OTHER;
    dispatch(h, c, ri, &route, &r);
    if (r.close) mg_disable_connection_keep_alive(c);
    if (!r.sent) {
        if (r.body.len == r.off && r.status != 200)
            resp_error(&r, r.status, "internal error", "no response produced");
        /* counted before the write: a client holding the response always
         * finds it in /metrics (the duration excludes the final write) */
        count_request(h->w, route, r.status, t0);
        resp_send(c, &r);
    } else {
        count_request(h->w, route, r.status, t0);
    }
    pd_buf_free(&r.body);
    return r.status;
}

/* Errors civetweb detects itself (malformed request line, head over
 * max_request_size, ...): answer in our JSON shape and close. */
static int on_http_error(struct mg_connection *c, int status, const char *msg)
{
    pd_http *h = mg_get_user_data(mg_get_context(c));
    int64_t t0 = pd_mono_us();
    pd_buf b = {0};
    char e[64], detail[256];
    snprintf(e, sizeof e, "%s", status_text(status));
    for (char *q = e; *q; q++) *q = (char)tolower((unsigned char)*q);
    /* civetweb reports a head over max_request_size as "Malformed message" */
    if (msg && status == 400 && strcmp(msg, "Malformed message") == 0 && h)
        snprintf(detail, sizeof detail,
                 "malformed request, or request head larger than %lld bytes",
                 (long long)h->w->cfg->http_max_request_bytes);
    else if (status >= 500 && status != 505)
        snprintf(detail, sizeof detail, "internal error"); /* civetweb's text may name paths */
    else
        snprintf(detail, sizeof detail, "%s", msg ? msg : "");
    pd_buf_json_error(&b, e, detail);
    /* answered: on_conn_close must not answer this request again */
    mg_set_user_connection_data(c, h);
    mg_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
              status, status_text(status), b.len);
    mg_write(c, b.p, b.len);
    pd_buf_free(&b);
    if (h) count_request(h->w, PD_ROUTE_OTHER, status, t0);
    return 0;
}

/* civetweb closes a connection WITHOUT an answer for two well-formed
 * request targets it does not route (process_new_connection: "TODO"):
 * "*" (OPTIONS *) and an absolute-form URI naming another host:port than
 * this listener (one naming our port is served as its path, see
 * enable_auth_domain_check). Its connection_close callback still runs on
 * the worker thread with the request parsed and the socket open, so the
 * answer goes out here: OPTIONS * gets 200 with Allow, the rest a JSON
 * 400, and the connection closes as civetweb intended. A request that was
 * routed has a local_uri; one that on_http_error answered is marked in the
 * connection's user data. */
static void on_conn_close(const struct mg_connection *cc)
{
    struct mg_connection *c = (struct mg_connection *)cc; /* civetweb passes const; mg_write needs it */
    const struct mg_request_info *ri = mg_get_request_info(c);
    pd_http *h = mg_get_user_data(mg_get_context(c));
    if (!h || !ri || !ri->request_uri || !ri->request_method || ri->local_uri ||
        mg_get_user_connection_data(c))
        return;
    int64_t t0 = pd_mono_us();
    http_resp r;
    memset(&r, 0, sizeof r);
    r.close = 1;
    if (strcmp(ri->request_uri, "*") == 0 && strcmp(ri->request_method, "OPTIONS") == 0) {
        r.status = 200;
        r.ctype = "application/json";
        PD_BUF_LIT(&r.body, "{\"allow\":[\"GET\"]}");
        resp_header(&r, "Allow", "GET");
    } else if (strcmp(ri->request_uri, "*") == 0) {
        resp_error(&r, 400, "bad request", "request target '*' is only for OPTIONS");
    } else {
        resp_error(&r, 400, "bad request",
                   "absolute-form request target names another server; send the path (origin-form)");
    }
    count_request(h->w, PD_ROUTE_OTHER, r.status, t0);
    resp_send(c, &r);
    pd_buf_free(&r.body);
}

static int on_log_message(const struct mg_connection *c, const char *msg)
{
    (void)c;
    pd_warn("http: %s", msg);
    return 1;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                            */
/* ------------------------------------------------------------------ */

int pd_http_start(pd_http **out, pd_worker *w, char *err, size_t errlen)
{
    pd_assert(out && w && w->cfg);
    const pd_config *cfg = w->cfg;
    *out = NULL;
    char threads[24], tmo[24], maxreq[24];
    snprintf(threads, sizeof threads, "%lld", (long long)cfg->http_threads);
    snprintf(tmo, sizeof tmo, "%lld", (long long)cfg->http_request_timeout_ms);
    /* civetweb answers a head over its own limit with a bare 400 it cannot
     * tell from a malformed request; give it room (4x) and enforce
     * http_max_request_bytes in dispatch, where an oversized head gets 431. */
    snprintf(maxreq, sizeof maxreq, "%lld", (long long)PD_MIN(cfg->http_max_request_bytes * 4, 4 << 20));
    /* http_front = false: civetweb on the public address itself, as before
     * the front end (faster, see docs/BENCHMARKS.md; no flood defence) */
    const int front = cfg->http_front;
    const char *opts[] = {
        "listening_ports", front ? "127.0.0.1:0" : cfg->listen,
        "num_threads", threads,
        "request_timeout_ms", tmo,
        "max_request_size", maxreq,
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", front ? HTTP_KEEPALIVE_MS : HTTP_KEEPALIVE_DIRECT_MS,
        "tcp_nodelay", "1",
        "decode_url", "no",
        /* an absolute-form target naming our port is served as its path,
         * whatever host it names (we are no proxy, and Host is not
         * checked either) */
        "enable_auth_domain_check", "no",
        NULL,
    };
    pd_http *h = pd_calloc(1, sizeof *h);
    h->w = w;
    h->pool = pd_peer_pool_new();
    pd_fwd_init(&h->fwd, w, h->pool);
    h->erase = pd_erase_api_new(w, h->pool);
    h->score = pd_score_api_new(w, h->pool);
    pd_stash_init(&h->ranges);
    struct mg_callbacks cbs;
    memset(&cbs, 0, sizeof cbs);
    cbs.http_error = on_http_error;
    cbs.log_message = on_log_message;
    cbs.connection_close = on_conn_close;

    mg_init_library(0);
    char mgerr[256] = "";
    unsigned mgcode = 0;
    struct mg_error_data ed = {.code = &mgcode, .text = mgerr, .text_buffer_size = sizeof mgerr};
    struct mg_init_data init = {.callbacks = &cbs, .user_data = h, .configuration_options = opts};
    h->ctx = mg_start2(&init, &ed);
    if (!h->ctx) {
        pd_seterr(err, errlen, PD_EIO, "http workers (127.0.0.1): %s", mgerr[0] ? mgerr : "civetweb failed to start");
        goto fail;
    }
    struct mg_server_port ports[4];
    memset(ports, 0, sizeof ports);
    if (mg_get_server_ports(h->ctx, 4, ports) < 1 || ports[0].port <= 0) {
        pd_seterr(err, errlen, PD_EIO, "http workers (127.0.0.1): no listening port");
        goto fail;
    }
    h->mg_port = ports[0].port;
    if (!front) {
        pd_warn("http_front = false: civetweb serves clients directly, without the connection limits "
                "(a few idle connections can stop HTTP; docs/operations.md)");
        h->port = h->mg_port;
        goto bound;
    }
    pd_front_opts fo = {
        .listen = cfg->listen, .upstream_port = h->mg_port, .workers = (int)cfg->http_threads,
        .max_conns = (int)cfg->http_max_connections,
        .max_conns_per_client = (int)cfg->http_max_connections_per_client,
        .head_timeout_ms = (int)cfg->http_head_timeout_ms,
        .keepalive_timeout_ms = (int)cfg->http_keepalive_timeout_ms,
        .keepalive_max_requests = (int)cfg->http_keepalive_max_requests,
        .write_timeout_ms = (int)cfg->http_request_timeout_ms,
        .max_head_bytes = (size_t)PD_MIN(cfg->http_max_request_bytes * 4, 4 << 20), /* civetweb's */
        .max_body_bytes = (size_t)cfg->rank_max_body_bytes,
        .metrics = w->metrics,
    };
    if (pd_front_start(&h->front, &fo, err, errlen) != PD_OK) goto fail;
    h->port = pd_front_port(h->front);
bound:
    if (cfg->advertise && *cfg->advertise) {
        snprintf(w->advertise, sizeof w->advertise, "%s", cfg->advertise);
    } else {
        /* host part of listen; wildcard addresses advertise loopback */
        const char *colon = strrchr(cfg->listen, ':');
        size_t hl = colon ? (size_t)(colon - cfg->listen) : 0;
        char host[200];
        if (hl >= sizeof host) hl = sizeof host - 1;
        memcpy(host, cfg->listen, hl);
        host[hl] = '\0';
        if (hl == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "[::]") == 0)
            snprintf(host, sizeof host, "127.0.0.1");
        snprintf(w->advertise, sizeof w->advertise, "http://%s:%d", host, h->port);
    }
    /* Only now route requests: w->advertise is final. Authorization is
     * dispatch's (api_token, cluster_token); without an authorization
     * handler civetweb would look for a .htpasswd file (stat of
     * "/.htpasswd", no document root) on every request, and demand digest
     * credentials if one appeared there. */
    mg_set_auth_handler(h->ctx, "/", on_auth, h);
    mg_set_request_handler(h->ctx, "/", on_request, h);
    *out = h;
    return PD_OK;
fail:
    pd_front_stop(h->front, 1);
    if (h->ctx) mg_stop(h->ctx);
    mg_exit_library();
    pd_erase_api_free(h->erase);
    pd_score_api_free(h->score);
    pd_peer_pool_free(h->pool);
    pd_stash_drain(&h->ranges, range_destroy);
    pd_free(h);
    return PD_EIO;
}

int pd_http_port(const pd_http *h)
{
    return h ? h->port : 0;
}

/* civetweb's listener thread notices the stop flag only when its poll()
 * returns (a ~2 s quantum). While mg_stop waits, this thread connects to
 * the listening port every 20 ms (at most 100 times) to wake it. */
typedef struct {
    char host[200];
    char port[16];
    _Atomic int done;
} stop_poke;

static void *stop_poke_thread(void *arg)
{
    stop_poke *sp = arg;
    for (int i = 0; i < 100 && !atomic_load(&sp->done); i++) {
        usleep(20000);
        if (atomic_load(&sp->done)) break;
        int fd = pd_peer_connect(sp->host, sp->port, pd_mono_us() + 100000, NULL, 0);
        if (fd >= 0) close(fd);
    }
    return NULL;
}

void pd_http_stop(pd_http *h)
{
    if (!h) return;
    /* the front first: no new connection, the requests in flight answered */
    pd_front_stop(h->front, (int)h->w->cfg->http_request_timeout_ms);
    stop_poke sp;
    memset(&sp, 0, sizeof sp);
    snprintf(sp.host, sizeof sp.host, "127.0.0.1");
    snprintf(sp.port, sizeof sp.port, "%d", h->mg_port);
    pthread_t poker;
    int poking = pthread_create(&poker, NULL, stop_poke_thread, &sp) == 0;
    mg_stop(h->ctx); /* waits for in-flight requests */
    atomic_store(&sp.done, 1);
    if (poking) pthread_join(poker, NULL);
    mg_exit_library();
    pd_erase_api_free(h->erase);
    pd_score_api_free(h->score);
    pd_peer_pool_free(h->pool);
    pd_stash_drain(&h->ranges, range_destroy);
    pd_free(h);
}

/*
 * test_peer.c -- the peer client (peer.c) against a scripted loopback
 * server (loopback.c): URL parsing, keep-alive reuse, the retry of a stale
 * pooled connection, body framing, time bounds, streaming; and util's
 * percent-decoder against Python's urllib.parse semantics written out as a
 * table.
 */
#include "test.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "loopback.h"
#include "peer.h"
#include "util.h"

/* ---- URL parser ---- */

TEST(peer_url_parse)
{
    static const struct {
        const char *url, *host, *port, *base; /* host NULL: PD_EINVAL */
    } t[] = {
        {"http://127.0.0.1:8080", "127.0.0.1", "8080", ""},
        {"http://127.0.0.1:8080/", "127.0.0.1", "8080", ""},
        {"HTTP://Host:1/a/b//", "Host", "1", "/a/b"},
        {"http://worker-3", "worker-3", "80", ""},
        {"http://worker-3/x", "worker-3", "80", "/x"},
        {"http://[::1]:9090/p", "::1", "9090", "/p"},
        {"http://[fe80::1]", "fe80::1", "80", ""},
        {"https://h:1", NULL, NULL, NULL},
        {"ftp://h", NULL, NULL, NULL},
        {"h:80", NULL, NULL, NULL},
        {"http://", NULL, NULL, NULL},
        {"http://:80", NULL, NULL, NULL},
        {"http://h:", NULL, NULL, NULL},
        {"http://h:x", NULL, NULL, NULL},
        {"http://h:80x", NULL, NULL, NULL},
        {"http://h?q", NULL, NULL, NULL},
        {"http://[::1", NULL, NULL, NULL},
        {"http://[]:80", NULL, NULL, NULL},
        {"http://h:12345678901234567", NULL, NULL, NULL},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(t); i++) {
        pd_peer_url u;
        int rc = pd_peer_url_parse(t[i].url, &u);
        if (!t[i].host) {
            if (rc != PD_EINVAL) pd_test_fail(__FILE__, __LINE__, "%s: accepted", t[i].url);
            continue;
        }
        if (rc != PD_OK) {
            pd_test_fail(__FILE__, __LINE__, "%s: rejected", t[i].url);
            continue;
        }
        CHECK_STR(u.host, t[i].host);
        CHECK_STR(u.port, t[i].port);
        CHECK_STR(u.base, t[i].base);
    }
    /* fields that do not fit */
    char longhost[400] = "http://";
    memset(longhost + 7, 'a', 300);
    pd_peer_url u;
    CHECK_INT(pd_peer_url_parse(longhost, &u), PD_EINVAL);
    char longbase[400] = "http://h/";
    memset(longbase + 9, 'b', 300);
    CHECK_INT(pd_peer_url_parse(longbase, &u), PD_EINVAL);
}

/* ---- scripted servers ---- */

/* 200 "body-<n>" with a Content-Length; closes when the request says so. */
static int h_ok(void *arg, int fd, const char *req, int k, int n)
{
    char resp[256], body[32];
    int bl = snprintf(body, sizeof body, "body-%d", n);
    snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nRetry-After: 7\r\n\r\n%s", bl, body);
    t_lb_sends(fd, resp);
    return strstr(req, "Connection: close") ? T_LB_CLOSE : T_LB_KEEP;
}

/* Answers the first request of each connection; closes the connection
 * unanswered at the second (the race of a peer closing an idle
 * connection as the request goes out). */
static int h_drop_second(void *arg, int fd, const char *req, int k, int n)
{
    if (k >= 1) return T_LB_CLOSE;
    return h_ok(arg, fd, req, k, n);
}

static int h_drop_all(void *arg, int fd, const char *req, int k, int n)
{
    return T_LB_CLOSE;
}

static int h_hold(void *arg, int fd, const char *req, int k, int n)
{
    return T_LB_HOLD;
}

/* A canned answer (bytes, NULs allowed), then the connection stays open
 * or closes. */
typedef struct {
    const char *p;
    size_t n;
    int close;
} t_canned;

static int h_canned(void *arg, int fd, const char *req, int k, int n)
{
    const t_canned *c = arg;
    t_lb_send(fd, c->p, c->n);
    return c->close ? T_LB_CLOSE : T_LB_KEEP;
}

#define CANNED(lit, close) {"" lit, sizeof(lit) - 1, close}

static pd_peer_url t_url(int port, const char *base)
{
    char s[128];
    pd_peer_url u;
    snprintf(s, sizeof s, "http://127.0.0.1:%d%s", port, base);
    pd_assert(pd_peer_url_parse(s, &u) == PD_OK);
    return u;
}

static pd_peer_req t_req(const char *pq, int timeout_ms)
{
    return (pd_peer_req){.path_query = pq, .deadline_us = pd_mono_us() + timeout_ms * 1000LL};
}

/* A scripted server and a client of it: pool (when pooled), URL, one
 * response and its error text. */
typedef struct {
    t_lb s;
    pd_peer_pool *pool;
    pd_peer_url u;
    pd_peer_resp r;
    char err[256];
} t_fix;

static void fix_start(t_fix *f, t_lb_handler fn, const void *arg, int pooled)
{
    memset(f, 0, sizeof *f);
    pd_assert(t_lb_start(&f->s, fn, (void *)arg) == 0);
    f->pool = pooled ? pd_peer_pool_new() : NULL;
    f->u = t_url(f->s.port, "");
}

static void fix_stop(t_fix *f)
{
    pd_buf_free(&f->r.body);
    pd_peer_pool_free(f->pool);
    t_lb_stop(&f->s);
}

/* pd_peer_get of rq through the fixture's pool. */
static int fix_req(t_fix *f, pd_peer_req rq)
{
    return pd_peer_get(f->pool, &f->u, &rq, &f->r, f->err, sizeof f->err);
}

/* GET path with a deadline of ms. */
static int fix_get(t_fix *f, const char *path, int ms)
{
    return fix_req(f, t_req(path, ms));
}

/* pd_peer_stream of rq into sink. */
static int fix_stream(t_fix *f, pd_peer_req rq, pd_peer_sink sink, void *arg)
{
    return pd_peer_stream(f->pool, &f->u, &rq, sink, arg, &f->r, f->err, sizeof f->err);
}

TEST(peer_keepalive_reuse)
{
    t_fix f;
    fix_start(&f, h_ok, NULL, 1);
    f.u = t_url(f.s.port, "/base/");
    char last[8192], want[64];
    for (int i = 0; i < 5; i++) {
        pd_peer_req rq = t_req("/x?y=1", 2000);
        rq.headers = "X-Test: yes\r\n";
        CHECK_INT(fix_req(&f, rq), PD_OK);
        CHECK_INT(f.r.status, 200);
        snprintf(want, sizeof want, "body-%d", i);
        CHECK_STR(f.r.body.p, want);
        CHECK_STR(f.r.retry_after, "7");
        CHECK_INT(f.r.keepalive, 1);
    }
    CHECK_INT(atomic_load(&f.s.accepts), 1); /* one connection for all five */
    t_lb_last(&f.s, last, sizeof last);
    CHECK(strncmp(last, "GET /base/x?y=1 HTTP/1.1\r\n", 26) == 0);
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%d\r\n", f.s.port);
    CHECK(strstr(last, want) != NULL);
    CHECK(strstr(last, "\r\nX-Test: yes\r\n") != NULL);
    CHECK(strstr(last, "\r\nConnection: keep-alive") != NULL);

    /* without a pool: a connection per request, and it says so */
    for (int i = 0; i < 2; i++) {
        pd_peer_req rq = t_req("/", 2000);
        CHECK_INT(pd_peer_get(NULL, &f.u, &rq, &f.r, f.err, sizeof f.err), PD_OK);
        CHECK_INT(f.r.status, 200);
    }
    CHECK_INT(atomic_load(&f.s.accepts), 3);
    t_lb_last(&f.s, last, sizeof last);
    CHECK(strstr(last, "\r\nConnection: close") != NULL);

    /* a pooled connection idle for longer than PD_PEER_IDLE_MAX_US is not used */
    usleep(PD_PEER_IDLE_MAX_US + 100000);
    CHECK_INT(fix_get(&f, "/", 2000), PD_OK);
    CHECK_INT(atomic_load(&f.s.accepts), 4);
    fix_stop(&f);
}

/* Answers that forbid reuse: a new connection follows each. */
TEST(peer_no_reuse_when_closed)
{
    static const t_canned answers[] = {
        CANNED("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 0),
        CANNED("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0),
        CANNED("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", 0), /* bytes past the body */
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(answers); i++) {
        t_fix f;
        fix_start(&f, h_canned, &answers[i], 1);
        for (int k = 0; k < 2; k++) {
            CHECK_INT(fix_get(&f, "/", 2000), PD_OK);
            CHECK_STR(f.r.body.p, "ok");
            CHECK_INT(f.r.keepalive, 0);
        }
        if (atomic_load(&f.s.accepts) != 2) pd_test_fail(__FILE__, __LINE__, "answer %zu: connection reused", i);
        fix_stop(&f);
    }
}

TEST(peer_stale_pooled_connection_retried)
{
    t_fix f;
    fix_start(&f, h_drop_second, NULL, 1);
    CHECK_INT(fix_get(&f, "/", 2000), PD_OK);
    CHECK_STR(f.r.body.p, "body-0");
    /* the pooled connection is closed as the request arrives: retried once
     * on a fresh connection, transparently */
    CHECK_INT(fix_get(&f, "/", 2000), PD_OK);
    CHECK_STR(f.r.body.p, "body-2");
    CHECK_INT(atomic_load(&f.s.accepts), 2);
    CHECK_INT(atomic_load(&f.s.requests), 3);
    fix_stop(&f);

    /* a FRESH connection that fails the same way is not retried */
    fix_start(&f, h_drop_all, NULL, 1);
    CHECK_INT(fix_get(&f, "/", 2000), PD_EIO);
    CHECK(strstr(f.err, "connection closed") != NULL);
    CHECK_INT(atomic_load(&f.s.accepts), 1);
    fix_stop(&f);
}

/* A body delimited by the connection's close, in pieces. */
static int h_close_pieces(void *arg, int fd, const char *req, int k, int n)
{
    t_lb_sends(fd, "HTTP/1.1 200 OK\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        usleep(20000);
        t_lb_sends(fd, i == 1 ? "-two-" : "piece");
    }
    return T_LB_CLOSE;
}

TEST(peer_body_framing)
{
    t_fix f;
    fix_start(&f, h_close_pieces, NULL, 0);
    CHECK_INT(fix_get(&f, "/", 2000), PD_OK);
    CHECK_STR(f.r.body.p, "piece-two-piece");
    fix_stop(&f);

    static const struct {
        t_canned answer;
        int rc, status;
        const char *body; /* expected body, or a substring of err */
        size_t blen;
    } t[] = {
        {CANNED("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\na\0b\r\n", 0), PD_OK, 200, "a\0b\r\n", 5},
        {CANNED("HTTP/1.1 200 OK\r\ncontent-length:  3 \r\n\r\nxyz", 0), PD_OK, 200, "xyz", 3},
        {CANNED("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", 0), PD_OK, 404, "{}", 2},
        {CANNED("HTTP/1.1 204 No Content\r\n\r\n", 0), PD_OK, 204, "", 0},
        {CANNED("HTTP/1.1 200 OK\r\n\r\nuntil close", 1), PD_OK, 200, "until close", 11},
        {CANNED("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", 0), PD_EIO, 0,
         "transfer-encoding", 0},
        {CANNED("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0), PD_EIO, 0, "content-length", 0},
        {CANNED("HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n", 0), PD_EIO, 0, "content-length", 0},
        {CANNED("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 0), PD_EIO, 0, "too large", 0},
        {CANNED("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", 1), PD_EIO, 0, "closed in response body", 0},
        {CANNED("HTTP/1.1 200 OK\r\nContent-Le", 1), PD_EIO, 0, "in response head", 0},
        {CANNED("SMTP ready\r\n\r\n", 0), PD_EIO, 0, "malformed status line", 0},
        {CANNED("HTTP/1.1 999 Odd\r\n\r\n", 0), PD_EIO, 0, "malformed status line", 0},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(t); i++) {
        fix_start(&f, h_canned, &t[i].answer, 0);
        int rc = fix_get(&f, "/", 2000);
        if (rc != t[i].rc) {
            pd_test_fail(__FILE__, __LINE__, "answer %zu: rc %d, expected %d (%s)", i, rc, t[i].rc, f.err);
        } else if (rc == PD_OK) {
            CHECK_INT(f.r.status, t[i].status);
            if (f.r.body.len != t[i].blen || (t[i].blen && memcmp(f.r.body.p, t[i].body, t[i].blen) != 0))
                pd_test_fail(__FILE__, __LINE__, "answer %zu: body of %zu bytes", i, f.r.body.len);
        } else if (!strstr(f.err, t[i].body)) {
            pd_test_fail(__FILE__, __LINE__, "answer %zu: err '%s', expected '%s'", i, f.err, t[i].body);
        }
        fix_stop(&f);
    }
    /* a head that goes on past PD_PEER_MAX_HEAD */
    pd_buf big = {0};
    PD_BUF_LIT(&big, "HTTP/1.1 200 OK\r\n");
    while (big.len <= PD_PEER_MAX_HEAD + 100) PD_BUF_LIT(&big, "X-Filler: 0123456789012345678901234567890123456789\r\n");
    t_canned c = {big.p, big.len, 0};
    fix_start(&f, h_canned, &c, 0);
    CHECK_INT(fix_get(&f, "/", 2000), PD_EIO);
    CHECK(strstr(f.err, "response head over") != NULL);
    fix_stop(&f);
    pd_buf_free(&big);
}

/* Head and the first 10 of 100 body bytes, then silence. */
static const t_canned stall_body = CANNED("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", 0);

static int h_stall_body(void *arg, int fd, const char *req, int k, int n)
{
    t_lb_send(fd, stall_body.p, stall_body.n);
    return T_LB_HOLD;
}

typedef struct {
    pd_buf got;
    int calls;
    size_t max_chunk;
    int refuse_after; /* refuse the call after this many; 0: never */
} t_sink;

static int sink_fn(void *arg, const void *data, size_t n)
{
    t_sink *k = arg;
    k->calls++;
    if (n > k->max_chunk) k->max_chunk = n;
    pd_buf_append(&k->got, data, n);
    return k->refuse_after && k->calls > k->refuse_after ? -1 : 0;
}

/* Microseconds since t0 lie in [lo_ms, 1.5 s). */
static int took_between(int64_t t0, int lo_ms)
{
    int64_t took = pd_mono_us() - t0;
    return took >= lo_ms * 1000LL && took < 1500000;
}

TEST(peer_time_bounds)
{
    t_fix f;
    fix_start(&f, h_hold, NULL, 0);
    t_sink k = {.calls = 0};
    /* deadline: no answer at all */
    int64_t t0 = pd_mono_us();
    CHECK_INT(fix_get(&f, "/", 200), PD_EIO);
    CHECK(strstr(f.err, "timed out waiting for response") != NULL);
    CHECK(took_between(t0, 190));
    /* idle bound, no deadline */
    t0 = pd_mono_us();
    CHECK_INT(fix_stream(&f, (pd_peer_req){.path_query = "/", .idle_ms = 150}, sink_fn, &k), PD_EIO);
    CHECK(took_between(t0, 140));
    /* with both bounds the earlier wins: the deadline here */
    t0 = pd_mono_us();
    pd_peer_req rq = t_req("/", 200);
    rq.idle_ms = 5000;
    CHECK_INT(fix_req(&f, rq), PD_EIO);
    CHECK(took_between(t0, 190));
    fix_stop(&f);

    /* the idle bound holds within the body: head and 10 bytes, then silence */
    fix_start(&f, h_stall_body, NULL, 0);
    t0 = pd_mono_us();
    CHECK_INT(fix_stream(&f, (pd_peer_req){.path_query = "/", .idle_ms = 150}, sink_fn, &k), PD_EIO);
    CHECK(strstr(f.err, "timed out reading response body") != NULL);
    CHECK(took_between(t0, 140));
    CHECK_INT(k.got.len, 10);
    CHECK_INT(f.r.streamed, 10);
    /* ... and so does the deadline, however the bytes trickle */
    t0 = pd_mono_us();
    CHECK_INT(fix_get(&f, "/", 200), PD_EIO);
    CHECK(took_between(t0, 190));
    fix_stop(&f);

    /* nobody listening: unreachable, at once */
    pd_peer_url u = t_url(1, "");
    rq = t_req("/", 2000);
    CHECK_INT(pd_peer_get(NULL, &u, &rq, &f.r, f.err, sizeof f.err), PD_EAGAIN);
    CHECK(strstr(f.err, "connect 127.0.0.1:1") != NULL);
    pd_buf_free(&k.got);
}

/* 1,000,003 bytes of a pattern, in uneven writes. */
#define BIG_LEN 1000003
static unsigned char pattern_at(size_t i)
{
    return (unsigned char)((i * 7919u) >> 3);
}

static int h_big(void *arg, int fd, const char *req, int k, int n)
{
    if (strstr(req, "/missing")) {
        t_lb_sends(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\n{\"error\":404}");
        return T_LB_KEEP;
    }
    char head[128];
    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_LEN);
    t_lb_sends(fd, head);
    unsigned char *b = malloc(BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++) b[i] = pattern_at(i);
    for (size_t off = 0, step = 1; off < BIG_LEN; off += step, step = step * 3 + 1) {
        if (off + step > BIG_LEN) step = BIG_LEN - off;
        t_lb_send(fd, b + off, step);
    }
    free(b);
    return T_LB_KEEP;
}

TEST(peer_stream_sink)
{
    t_fix f;
    fix_start(&f, h_big, NULL, 1);
    t_sink k = {.calls = 0};
    CHECK_INT(fix_stream(&f, t_req("/big", 5000), sink_fn, &k), PD_OK);
    CHECK_INT(f.r.status, 200);
    CHECK_INT(f.r.streamed, BIG_LEN);
    CHECK_INT(k.got.len, BIG_LEN);
    CHECK_INT(f.r.body.len, 0);
    CHECK(k.calls > 1);
    CHECK(k.max_chunk <= 65536);
    size_t bad = 0;
    for (size_t i = 0; i < k.got.len && i < BIG_LEN; i++) bad += (unsigned char)k.got.p[i] != pattern_at(i);
    CHECK_INT(bad, 0);
    /* the connection was read to the end of the body: reused */
    CHECK_INT(f.r.keepalive, 1);
    /* another status: the body is buffered, the sink untouched */
    k.got.len = 0;
    k.calls = 0;
    CHECK_INT(fix_stream(&f, t_req("/missing", 5000), sink_fn, &k), PD_OK);
    CHECK_INT(f.r.status, 404);
    CHECK_STR(f.r.body.p, "{\"error\":404}");
    CHECK_INT(k.calls, 0);
    CHECK_INT(f.r.streamed, 0);
    CHECK_INT(atomic_load(&f.s.accepts), 1);
    /* a limit below the Content-Length: refused from the head */
    pd_peer_req rq = t_req("/big", 5000);
    rq.max_body = BIG_LEN - 1;
    CHECK_INT(fix_stream(&f, rq, sink_fn, &k), PD_ERANGE);
    CHECK(strstr(f.err, "too large") != NULL);
    CHECK_INT(k.calls, 0);
    /* a sink that refuses aborts the transfer */
    t_sink ref = {.refuse_after = 2};
    CHECK_INT(fix_stream(&f, t_req("/big", 5000), sink_fn, &ref), PD_EIO);
    CHECK_INT(ref.calls, 3);
    CHECK(strstr(f.err, "refused") != NULL);
    pd_buf_free(&ref.got);
    pd_buf_free(&k.got);
    fix_stop(&f);
}

/* Threads sharing one pool: every answer is right, and connections are
 * at most one per concurrently running request. */
typedef struct {
    pd_peer_pool *pool;
    pd_peer_url u;
    _Atomic int failed;
} t_conc;

static void *conc_main(void *arg)
{
    t_conc *c = arg;
    pd_peer_resp r = {0};
    char err[256];
    for (int i = 0; i < 50 && !atomic_load(&c->failed); i++) {
        pd_peer_req rq = t_req("/", 1000);
        if (pd_peer_get(c->pool, &c->u, &rq, &r, err, sizeof err) != PD_OK || r.status != 200 ||
            strncmp(r.body.p, "body-", 5) != 0)
            atomic_fetch_add(&c->failed, 1);
    }
    pd_buf_free(&r.body);
    return NULL;
}

TEST(peer_pool_threads)
{
    t_lb s;
    CHECK_INT(t_lb_start(&s, h_ok, NULL), 0);
    t_conc c = {.pool = pd_peer_pool_new(), .u = t_url(s.port, "")};
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, conc_main, &c);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    CHECK_INT(atomic_load(&c.failed), 0);
    CHECK_INT(atomic_load(&s.requests), 200);
    CHECK(atomic_load(&s.accepts) <= 4);
    pd_peer_pool_free(c.pool);
    t_lb_stop(&s);
}

/* ---- percent-decoding and hex digits ---- */

/* Expected values: Python 3's urllib.parse.unquote_to_bytes (path) and
 * unquote_to_bytes(s.replace('+', ' ')), i.e. unquote_plus (form), for
 * inputs where every '%' starts an escape; Python keeps a malformed escape
 * as literal text, pd_pct_decode refuses it (NULL). */
#define S(lit) "" lit, sizeof(lit) - 1
#define BAD NULL, 0
TEST(pct_decode_matches_python)
{
    static const struct {
        const char *in;
        size_t inl;
        const char *path;
        size_t pathl;
        const char *form;
        size_t forml;
    } t[] = {
        {S(""), S(""), S("")},
        {S("abc"), S("abc"), S("abc")},
        {S("a+b"), S("a+b"), S("a b")},
        {S("%41"), S("A"), S("A")},
        {S("%4a%4A"), S("JJ"), S("JJ")},
        {S("%e2%82%ac"), S("\xe2\x82\xac"), S("\xe2\x82\xac")},
        {S("a%2Fb"), S("a/b"), S("a/b")},
        {S("%2B"), S("+"), S("+")},
        {S("+%2B+"), S("+++"), S(" + ")},
        {S("100%25"), S("100%"), S("100%")},
        {S("%00"), S("\x00"), S("\x00")},
        {S("a%00b"), S("a\x00" "b"), S("a\x00" "b")},
        {S("~-._"), S("~-._"), S("~-._")},
        {S("sp%20ace"), S("sp ace"), S("sp ace")},
        {S("%20+%20"), S(" + "), S("   ")},
        {S("%ff%FE"), S("\xff\xfe"), S("\xff\xfe")},
        {S("\xc3\xa9"), S("\xc3\xa9"), S("\xc3\xa9")},
        {S("%"), BAD, BAD},
        {S("%4"), BAD, BAD},
        {S("a%"), BAD, BAD},
        {S("%zz"), BAD, BAD},
        {S("%4g"), BAD, BAD},
        {S("%%41"), BAD, BAD},
        {S("%G0"), BAD, BAD},
        {S("%+1"), BAD, BAD},
        {S("ok%2"), BAD, BAD},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(t); i++) {
        for (int form = 0; form < 2; form++) {
            const char *want = form ? t[i].form : t[i].path;
            size_t wl = form ? t[i].forml : t[i].pathl;
            /* the input is followed by hex digits the decoder must not read */
            char in[80], out[64];
            memcpy(in, t[i].in, t[i].inl);
            memcpy(in + t[i].inl, "4141", 5);
            size_t ol = 999;
            int rc = pd_pct_decode(in, t[i].inl, form ? PD_PCT_FORM : 0, out, sizeof out, &ol);
            if (!want) {
                if (rc != PD_EINVAL) pd_test_fail(__FILE__, __LINE__, "'%s' (form %d): accepted", t[i].in, form);
                continue;
            }
            if (rc != PD_OK || ol != wl || memcmp(out, want, wl) != 0)
                pd_test_fail(__FILE__, __LINE__, "'%s' (form %d): rc %d, %zu bytes", t[i].in, form, rc, ol);
            /* PD_PCT_NO_NUL refuses exactly the results holding a NUL */
            rc = pd_pct_decode(in, t[i].inl, (form ? PD_PCT_FORM : 0) | PD_PCT_NO_NUL, out, sizeof out, &ol);
            CHECK_INT(rc, memchr(want, 0, wl) ? PD_EINVAL : PD_OK);
            /* one byte short of room: PD_ERANGE */
            if (wl > 0) CHECK_INT(pd_pct_decode(in, t[i].inl, form ? PD_PCT_FORM : 0, out, wl - 1, &ol), PD_ERANGE);
        }
    }
}

TEST(pct_encode_roundtrip_and_hexval)
{
    static const char digits[] = "0123456789abcdef";
    for (int c = 0; c < 256; c++) {
        const char *d = memchr(digits, c >= 'A' && c <= 'F' ? c + 32 : c, 16);
        int want = c && d ? (int)(d - digits) : -1;
        if (pd_hexval(c) != want) pd_test_fail(__FILE__, __LINE__, "pd_hexval(%d) = %d", c, pd_hexval(c));
    }
    /* every byte value: unreserved bytes stay, the rest become %XX */
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    pd_buf b = {0};
    pd_pct_encode(&b, all, sizeof all);
    CHECK_INT(b.len, 66 + 3 * (256 - 66)); /* 26 + 26 + 10 + 4 unreserved */
    CHECK(strstr(b.p, "%00%01") && strstr(b.p, "%20") && strstr(b.p, "%2F") && strstr(b.p, "-.%2F0123456789%3A") &&
          strstr(b.p, "%5E_%60abc") && strstr(b.p, "xyz%7B%7C%7D~%7F%80") && strstr(b.p, "%FE%FF"));
    char back[256];
    size_t bl = 0;
    CHECK_INT(pd_pct_decode(b.p, b.len, 0, back, sizeof back, &bl), PD_OK);
    CHECK_INT(bl, 256);
    CHECK(memcmp(back, all, 256) == 0);
    pd_buf_free(&b);
}

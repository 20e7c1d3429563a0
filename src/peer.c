/*
 * peer.c -- the HTTP/1.1 client between workers (see peer.h for the
 * contract): URL parsing, connecting with a deadline, one request and
 * response exchange over a non-blocking POSIX socket, and the keep-alive
 * pool.
 *
 * Every wait goes through wait_fd with an absolute deadline computed per
 * wait from the request's two bounds (timer_next), so no call blocks past
 * them. The exchange reports PEER_STALE when it failed before any response
 * byte arrived: that is the one failure a stale pooled connection
 * produces and the one pd_peer_get/pd_peer_stream retry (once, fresh).
 *
 * Ownership: the pool owns its idle descriptors; a descriptor taken from
 * it is the request's until it is put back or closed. Nothing in a
 * pd_peer_req is kept after the call.
 */
#include "peer.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define PEER_READ_HEAD 32768   /* first reads: the head and, usually, the whole body */
#define PEER_READ_BODY 65536   /* later reads, and the sink's chunks */
#define PEER_STALE 1           /* exchange: failed before any response byte */

/* ---- URL ---- */

int pd_peer_url_parse(const char *url, pd_peer_url *u)
{
    if (strncasecmp(url, "http://", 7) != 0) return PD_EINVAL;
    const char *h = url + 7, *hend, *p;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend) return PD_EINVAL;
        h++;
        p = hend + 1;
    } else {
        hend = h + strcspn(h, ":/?#");
        p = hend;
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0 || hl >= sizeof u->host) return PD_EINVAL;
    memcpy(u->host, h, hl);
    u->host[hl] = '\0';
    if (*p == ':') {
        p++;
        size_t pl = strspn(p, "0123456789");
        if (pl == 0 || pl >= sizeof u->port) return PD_EINVAL;
        memcpy(u->port, p, pl);
        u->port[pl] = '\0';
        p += pl;
    } else {
        snprintf(u->port, sizeof u->port, "80");
    }
    if (*p && *p != '/') return PD_EINVAL;
    size_t bl = strlen(p);
    while (bl && p[bl - 1] == '/') bl--;
    if (bl >= sizeof u->base) return PD_EINVAL;
    memcpy(u->base, p, bl);
    u->base[bl] = '\0';
    return PD_OK;
}

/* ---- waiting ---- */

typedef struct {
    int64_t deadline_us; /* 0: none */
    int idle_ms;         /* 0: none */
} peer_timer;

/* The deadline of the next wait: the earlier of the two bounds. */
static int64_t timer_next(const peer_timer *t)
{
    if (t->idle_ms <= 0) return t->deadline_us;
    int64_t idle = pd_mono_us() + (int64_t)t->idle_ms * 1000;
    return t->deadline_us > 0 && t->deadline_us < idle ? t->deadline_us : idle;
}

/* Waits for `events` on fd until deadline_us: 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline_us)
{
    for (;;) {
        int64_t left = deadline_us - pd_mono_us();
        if (left <= 0) return 0;
        int ms = (int)PD_MIN((left + 999) / 1000, 3600 * 1000);
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, ms);
        if (n > 0) return 1;
        if (n == 0) continue; /* re-check the deadline */
        if (errno != EINTR) return -1;
    }
}

/* ---- connecting ---- */

int pd_peer_connect(const char *host, const char *port, int64_t deadline_us, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int grc = getaddrinfo(host, port, &hints, &res);
    if (grc != 0) {
        pd_seterr(err, errlen, PD_EAGAIN, "resolve %s: %s", host, gai_strerror(grc));
        return -1;
    }
    int fd = -1;
    pd_seterr(err, errlen, PD_EAGAIN, "connect %s:%s: no address", host, port);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            pd_seterr(err, errlen, PD_EAGAIN, "socket: %s", strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS) {
            int wr = wait_fd(fd, POLLOUT, deadline_us);
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (wr == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
            pd_seterr(err, errlen, PD_EAGAIN, "connect %s:%s: %s", host, port,
                      wr == 0 ? "timed out" : strerror(soerr ? soerr : errno));
        } else {
            pd_seterr(err, errlen, PD_EAGAIN, "connect %s:%s: %s", host, port, strerror(errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* ---- the pool ---- */

typedef struct peer_idle {
    char host[256];
    char port[16];
    int nidle;
    int fd[PD_PEER_POOL_MAX];
    int64_t since_us[PD_PEER_POOL_MAX];
    struct peer_idle *next;
} peer_idle;

struct pd_peer_pool {
    pthread_mutex_t mu;      /* guards peers and every peer_idle */
    peer_idle *peers;        /* owned list, one entry per host:port ever pooled */
};

pd_peer_pool *pd_peer_pool_new(void)
{
    pd_peer_pool *pool = pd_calloc(1, sizeof *pool);
    pthread_mutex_init(&pool->mu, NULL);
    return pool;
}

void pd_peer_pool_free(pd_peer_pool *pool)
{
    if (!pool) return;
    for (peer_idle *p = pool->peers, *next; p; p = next) {
        next = p->next;
        for (int i = 0; i < p->nidle; i++) close(p->fd[i]);
        pd_free(p);
    }
    pthread_mutex_destroy(&pool->mu);
    pd_free(pool);
}

/* Takes an idle pooled connection to host:port, or -1. */
static int pool_get(pd_peer_pool *pool, const char *host, const char *port)
{
    int fd = -1;
    int64_t now = pd_mono_us();
    pthread_mutex_lock(&pool->mu);
    for (peer_idle *p = pool->peers; p; p = p->next) {
        if (strcmp(p->host, host) != 0 || strcmp(p->port, port) != 0) continue;
        while (p->nidle > 0 && fd < 0) {
            int cand = p->fd[--p->nidle];
            struct pollfd pfd = {.fd = cand, .events = POLLIN};
            /* Readable while idle = EOF or junk: the peer closed it. */
            if (now - p->since_us[p->nidle] > PD_PEER_IDLE_MAX_US || poll(&pfd, 1, 0) != 0)
                close(cand);
            else
                fd = cand;
        }
        break;
    }
    pthread_mutex_unlock(&pool->mu);
    return fd;
}

/* Gives fd (the caller's until now) to the pool, or closes it when the
 * peer already has PD_PEER_POOL_MAX idle connections. */
static void pool_put(pd_peer_pool *pool, const char *host, const char *port, int fd)
{
    pthread_mutex_lock(&pool->mu);
    peer_idle *p = pool->peers;
    while (p && (strcmp(p->host, host) != 0 || strcmp(p->port, port) != 0)) p = p->next;
    if (!p) {
        p = pd_calloc(1, sizeof *p);
        snprintf(p->host, sizeof p->host, "%s", host);
        snprintf(p->port, sizeof p->port, "%s", port);
        p->next = pool->peers;
        pool->peers = p;
    }
    if (p->nidle < PD_PEER_POOL_MAX) {
        p->fd[p->nidle] = fd;
        p->since_us[p->nidle] = pd_mono_us();
        p->nidle++;
        fd = -1;
    }
    pthread_mutex_unlock(&pool->mu);
    if (fd >= 0) close(fd);
}

/* ---- one exchange ---- */

/* 0 sent, -1 error (errno), -2 timeout. */
static int send_all(int fd, const char *buf, size_t len, const peer_timer *t)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, timer_next(t)) != 1) return -2;
            continue;
        }
        return -1;
    }
    return 0;
}

/* Reads once into b (up to `want` more bytes): >0 bytes, 0 EOF, -1 error,
 * -2 timeout. */
static ssize_t recv_some(int fd, pd_buf *b, size_t want, const peer_timer *t)
{
    pd_buf_reserve(b, want + 1);
    for (;;) {
        ssize_t n = recv(fd, b->p + b->len, want, 0);
        if (n >= 0) {
            b->len += (size_t)n;
            b->p[b->len] = '\0';
            return n;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int wr = wait_fd(fd, POLLIN, timer_next(t));
            if (wr == 0) return -2;
            if (wr < 0) return -1;
            continue;
        }
        return -1;
    }
}

/* Finds header `name` in the head (lines after the status line); copies
 * its trimmed value into out. Returns 1 when found. */
static int head_get(const char *head, size_t hlen, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = memchr(head, '\n', hlen), *end = head + hlen;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) eol = end;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t vl = PD_MIN((size_t)(ve - v), cap - 1);
            memcpy(out, v, vl);
            out[vl] = '\0';
            return 1;
        }
        p = eol < end ? eol : NULL;
    }
    return 0;
}

/* Where a body goes: into r->body, or (2xx answers of pd_peer_stream)
 * through a scratch buffer to the sink. */
typedef struct {
    pd_peer_sink sink;       /* NULL: buffered */
    void *arg;
    uint64_t max;            /* body limit */
    pd_buf scratch;
} body_dst;

/* Hands what dst->scratch holds to the sink: 0, or -1 when it refused. */
static int body_flush(body_dst *d, pd_peer_resp *r)
{
    if (!d->sink || !d->scratch.len) return 0;
    int rc = d->sink(d->arg, d->scratch.p, d->scratch.len);
    r->streamed += d->scratch.len;
    d->scratch.len = 0;
    return rc ? -1 : 0;
}

/* One request/response exchange on fd; sink/arg as pd_peer_stream (sink
 * NULL: buffered). PD_OK, PD_EIO, or PEER_STALE when the connection failed
 * before any response byte (what a stale keep-alive connection does). */
static int exchange(int fd, const char *req, size_t reqlen, const peer_timer *t, uint64_t max_body,
                    int need_length, pd_peer_sink sink, void *arg, pd_peer_resp *r, char *err, size_t errlen)
{
    pd_buf in = {0};
    body_dst d = {.max = PD_PEER_MAX_BUFFERED};
    int rc = PD_OK;
    int src = send_all(fd, req, reqlen, t);
    if (src == -2) {
        rc = pd_seterr(err, errlen, PD_EIO, "timed out sending request");
        goto out;
    }
    if (src < 0) {
        pd_seterr(err, errlen, PD_EIO, "send: %s", strerror(errno));
        rc = PEER_STALE;
        goto out;
    }
    /* The answer cannot be there yet: wait for it first instead of a
     * recv that would only say EAGAIN. */
    if (wait_fd(fd, POLLIN, timer_next(t)) == 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "timed out waiting for response");
        goto out;
    }
    /* head */
    char *hend = NULL;
    while (!hend) {
        if (in.len >= PD_PEER_MAX_HEAD) {
            rc = pd_seterr(err, errlen, PD_EIO, "response head over %d bytes", PD_PEER_MAX_HEAD);
            goto out;
        }
        ssize_t n = recv_some(fd, &in, PEER_READ_HEAD, t);
        if (n == -2) {
            rc = pd_seterr(err, errlen, PD_EIO, "timed out waiting for response");
            goto out;
        }
        if (n <= 0) {
            int stale = in.len == 0;
            rc = pd_seterr(err, errlen, PD_EIO, "connection %s%s", n == 0 ? "closed" : "error",
                           stale ? "" : " in response head");
            if (stale) rc = PEER_STALE;
            goto out;
        }
        hend = memmem(in.p, in.len, "\r\n\r\n", 4);
    }
    size_t hlen = (size_t)(hend - in.p) + 4;
    int minor = 0, status = 0;
    if (sscanf(in.p, "HTTP/1.%d %3d", &minor, &status) != 2 || status < 100 || status > 599) {
        rc = pd_seterr(err, errlen, PD_EIO, "malformed status line");
        goto out;
    }
    char v[64];
    r->status = status;
    r->keepalive = minor >= 1;
    if (head_get(in.p, hlen, "Connection", v, sizeof v)) {
        if (strcasecmp(v, "close") == 0) r->keepalive = 0;
        else if (strcasecmp(v, "keep-alive") == 0) r->keepalive = 1;
    }
    if (head_get(in.p, hlen, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "identity") != 0) {
        r->keepalive = 0;
        rc = pd_seterr(err, errlen, PD_EIO, "unsupported transfer-encoding '%s'", v);
        goto out;
    }
    head_get(in.p, hlen, "Retry-After", r->retry_after, sizeof r->retry_after);
    long long clen = -1;
    if (head_get(in.p, hlen, "Content-Length", v, sizeof v)) {
        char *e;
        errno = 0;
        clen = strtoll(v, &e, 10);
        if (errno || e == v || *e || clen < 0) {
            rc = pd_seterr(err, errlen, PD_EIO, "bad content-length '%s'", v);
            goto out;
        }
    } else if (status == 204 || status == 304 || status < 200) {
        clen = 0;
    }
    if (sink && status >= 200 && status <= 299) {
        d.sink = sink;
        d.arg = arg;
        d.max = max_body ? max_body : UINT64_MAX;
    }
    pd_buf *dst = d.sink ? &d.scratch : &r->body;
    if (d.sink && need_length && clen < 0) {
        r->keepalive = 0;
        rc = pd_seterr(err, errlen, PD_ERANGE, "response body without a Content-Length");
        goto out;
    }
    if (clen >= 0 && (uint64_t)clen > d.max) {
        r->keepalive = 0;
        rc = pd_seterr(err, errlen, d.sink ? PD_ERANGE : PD_EIO, "response body of %lld bytes too large", clen);
        goto out;
    }
    /* body: whatever followed the head, then the rest */
    size_t have = in.len - hlen;
    if (clen >= 0 && have > (size_t)clen) { /* pipelined junk: do not reuse */
        have = (size_t)clen;
        r->keepalive = 0;
    }
    pd_buf_append(dst, in.p + hlen, have);
    uint64_t got = have;
    if (body_flush(&d, r)) goto refused;
    if (clen >= 0) {
        while (got < (uint64_t)clen) {
            ssize_t n = recv_some(fd, dst, PD_MIN((uint64_t)clen - got, PEER_READ_BODY), t);
            if (n == -2) {
                rc = pd_seterr(err, errlen, PD_EIO, "timed out reading response body");
                goto out;
            }
            if (n <= 0) {
                rc = pd_seterr(err, errlen, PD_EIO, "connection closed in response body");
                goto out;
            }
            got += (uint64_t)n;
            if (body_flush(&d, r)) goto refused;
        }
    } else { /* delimited by close */
        r->keepalive = 0;
        for (;;) {
            if (got > d.max) {
                rc = pd_seterr(err, errlen, d.sink ? PD_ERANGE : PD_EIO, "response body too large");
                goto out;
            }
            ssize_t n = recv_some(fd, dst, PEER_READ_BODY, t);
            if (n == 0) break;
            if (n < 0) {
                rc = pd_seterr(err, errlen, PD_EIO, "%s reading response body",
                               n == -2 ? "timed out" : "error");
                goto out;
            }
            got += (uint64_t)n;
            if (body_flush(&d, r)) goto refused;
        }
    }
    goto out;
refused:
    rc = pd_seterr(err, errlen, PD_EIO, "receiver refused the response body");
out:
    pd_buf_free(&in);
    pd_buf_free(&d.scratch);
    return rc;
}

/* The request, pooled connection first, then (again) a fresh one. */
static int request(pd_peer_pool *pool, const pd_peer_url *u, const pd_peer_req *rq, pd_peer_sink sink,
                   void *arg, pd_peer_resp *r, char *err, size_t errlen)
{
    pd_assert(rq->deadline_us > 0 || rq->idle_ms > 0);
    const peer_timer t = {.deadline_us = rq->deadline_us, .idle_ms = rq->idle_ms};
    int v6 = strchr(u->host, ':') != NULL;
    pd_buf req = {0};
    const int get = !rq->method || strcmp(rq->method, "GET") == 0;
    pd_assert(!rq->body_len || !get);
    pd_buf_printf(&req, "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n%s", get ? "GET" : rq->method, u->base,
                  rq->path_query, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, rq->headers ? rq->headers : "");
    if (rq->body_len)
        pd_buf_printf(&req, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                      rq->content_type ? rq->content_type : "application/json", rq->body_len);
    else if (!get)
        PD_BUF_LIT(&req, "Content-Length: 0\r\n");
    pd_buf_printf(&req, "Connection: %s\r\n\r\n", pool ? "keep-alive" : "close");
    if (rq->body_len) pd_buf_append(&req, rq->body, rq->body_len);
    int rc = PD_EIO;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = attempt == 0 && pool ? pool_get(pool, u->host, u->port) : -1;
        int reused = fd >= 0;
        if (fd < 0) fd = pd_peer_connect(u->host, u->port, timer_next(&t), err, errlen);
        if (fd < 0) {
            rc = PD_EAGAIN;
            break;
        }
        r->status = 0;
        r->keepalive = 0;
        r->retry_after[0] = '\0';
        r->body.len = 0;
        r->streamed = 0;
        rc = exchange(fd, req.p, req.len, &t, rq->max_body, rq->need_length, sink, arg, r, err, errlen);
        if (rc == PD_OK && pool && r->keepalive) {
            pool_put(pool, u->host, u->port, fd);
            break;
        }
        close(fd);
        if (!(rc == PEER_STALE && reused && (get || rq->idempotent))) break;
    }
    if (rc == PEER_STALE) rc = PD_EIO;
    pd_buf_free(&req);
    return rc;
}

int pd_peer_get(pd_peer_pool *pool, const pd_peer_url *u, const pd_peer_req *rq, pd_peer_resp *r, char *err,
                size_t errlen)
{
    return request(pool, u, rq, NULL, NULL, r, err, errlen);
}

int pd_peer_stream(pd_peer_pool *pool, const pd_peer_url *u, const pd_peer_req *rq, pd_peer_sink sink, void *arg,
                   pd_peer_resp *r, char *err, size_t errlen)
{
    pd_assert(sink);
    return request(pool, u, rq, sink, arg, r, err, errlen);
}

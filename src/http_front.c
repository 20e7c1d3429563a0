/*
 * http_front.c -- the HTTP front end: connection limits, head and idle
 * deadlines, keep-alive limits, in one event-loop thread in front of the
 * HTTP workers.
 *
 * Why a front end. civetweb 1.15 (Debian's libcivetweb, the workers of
 * http.c) serves each connection on one worker thread from accept to
 * close: its master thread accepts and queues the socket
 * (connection_queue, 20 by default); a worker takes it and reads the head
 * for up to request_timeout_ms (keep_alive_timeout_ms for the next request
 * on a kept connection; the same request_timeout_ms bounds every send), and
 * waits there for the next request as long as the connection is kept. When
 * the queue is full the master thread blocks in produce_socket and stops
 * accepting: no 503, no answer at all. It has no per-address limit (only
 * an access list and a bandwidth throttle), and no way to take a socket
 * accepted elsewhere. So num_threads idle sockets stop it, whatever the
 * timeouts: measured with tests/bb/test_flood.py on this machine with 8
 * threads, the idle, slowloris and keep-alive floods each left the probes
 * (/healthz, a profile query) 2 answers in 3 s, 1.2 s or a 2 s timeout each,
 * with request_timeout_ms 5000 and with 300 alike. Shorter timeouts only
 * make an attacker reconnect more often; more threads only move the count.
 *
 * The design. This thread owns the public socket and every client
 * connection. It reads each request head into the connection's buffer
 * under a deadline and enforces the limits; only a complete head goes to a
 * worker: over a pooled loopback connection to civetweb (127.0.0.1,
 * ephemeral port), whose answer it relays. A worker thread is thus busy
 * only while it computes an answer; idle, slow and kept connections cost
 * this thread a buffer and a descriptor, not a worker. civetweb still
 * parses and answers every request (431, 505, smuggling, absolute form,
 * OPTIONS *: http.c), so nothing of the HTTP semantics moved here; the head
 * scan below mirrors civetweb's own (same end of head, same bytes refused)
 * so both read the same request.
 *
 *   accept -> HEAD (deadline: http_head_timeout_ms; idle list)
 *          -> QUEUED (complete head; /healthz, /readyz, /metrics first)
 *          -> RELAY (a worker connection: request out, answer back)
 *          -> HEAD again (kept: http_keepalive_timeout_ms until the next
 *             byte, then the head deadline) or LINGER (closing: our side
 *             shut, the client's bytes drained for LINGER_MS, so a close
 *             never resets an answer in flight).
 *
 * Limits. At http_max_connections_per_client open connections from one
 * address, a new one from it gets a 503 (JSON error, Retry-After: 1) and is
 * closed. At http_max_connections, the connection idle longest (waiting in
 * HEAD: between requests or still sending its head) is closed to admit the
 * new one (one still sending a head gets a 503); only when none is idle does
 * the new one get the 503. A probe's head arrives within microseconds of
 * its connect, so a flood of idle or slow connections cannot starve it. At
 * most `workers` requests are in flight, and requests other than the three
 * ops routes leave two of them free, so a health check never waits behind
 * slow queries. A head larger than max_head_bytes, or with a byte civetweb
 * refuses, goes to civetweb as it is, to be refused there. A request body
 * with one clear Content-Length (no Transfer-Encoding) of at most
 * max_body_bytes is read whole under the head's deadline (answering
 * "Expect: 100-continue" with a 100 itself and renaming the header, so the
 * worker sends none) and relayed with its head over a pooled worker
 * connection like any request: civetweb discards whatever body a handler
 * left unread before it reads the next request (its handler returns the
 * status, > 0), so a route that ignores the body cannot desynchronise the
 * connection (tests/bb/test_http_hardening.py hides a request in such
 * bodies). A fresh connection per body had cost a rank request about a
 * quarter of its worker CPU: 414-566 against 573-695 us per 100-candidate
 * rank in interleaved runs of the rank bench step (docs/BENCHMARKS.md,
 * issue 20). A larger body gets 413 and close. Any
 * other body (chunked, unclear framing) goes on as it comes and closes its
 * connection after the answer (http.c answers 411 where a body is needed).
 * Answers are relayed as they come (OUT_CAP at a time) and framed by their
 * Content-Length; the last answer allowed on a connection
 * (http_keepalive_max_requests) gets "Connection: close".
 *
 * Threads and ownership: everything here belongs to the loop thread;
 * pd_front_stop only sets a flag and wakes it. Metrics are atomics.
 * Limits of the design: the relay costs this thread a few system calls per
 * request (see docs/BENCHMARKS.md, issue 23); anything on the machine can
 * reach the workers' loopback port directly, past these limits.
 */
#include "http_front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xxhash.h>

#include "metrics.h"
#include "util.h"

#define IN_CAP0 2048           /* first head buffer; grows to max_head_bytes */
#define OUT_CAP (32 * 1024)    /* answer bytes held per connection */
#define LINGER_MS 500          /* draining a closing connection */
#define SWEEP_MS 10            /* deadline granularity */
#define UP_IDLE_MAX_MS 20000   /* pooled worker connections (civetweb keeps them 60 s) */
#define ACCEPT_PAUSE_MS 100    /* out of descriptors: stop accepting this long */
#define MAX_EVENTS 256

enum { K_LISTEN = 0, K_WAKE = 1, K_CONN = 2, K_UP = 3 };
enum { ST_FREE = 0, ST_HEAD, ST_QUEUED, ST_RELAY, ST_LINGER };
enum { Q_OPS = 0, Q_OTHER = 1 };

typedef struct {
    int fd;
    int state;
    uint32_t gen;
    int up;                  /* worker connection (ups index) while relaying, else -1 */
    int prev, next;          /* idle list (HEAD) or ready queue (QUEUED) */
    int64_t deadline;        /* mono ms; 0 = none */
    int nreq;                /* requests received on this connection */
    unsigned char addr[16];  /* client address (IPv4 mapped) */
    unsigned cin : 1, cout : 1, ops : 1, body : 1, last : 1, counted : 1;
    unsigned resp_head : 1, resp_close : 1, up_keep : 1, delim : 1, up_done : 1, retried : 1, resp_any : 1;
    unsigned sent100 : 1; /* 100 Continue sent */
    char *in;
    size_t in_len, in_cap, req_len, req_sent;
    size_t in_max;           /* buffer limit of the request being read (head + body); 0: max_head_bytes */
    char *out;               /* OUT_CAP bytes while relaying, else NULL */
    size_t out_len, out_off;
    int64_t resp_left;       /* body bytes of the answer still to come from the worker */
} fconn;

typedef struct {
    int fd;                  /* -1: free slot */
    int owner;               /* relaying connection, or -1 (pooled, idle) */
    uint32_t gen;
    int64_t since;           /* pooled since (mono ms) */
    unsigned uin : 1, uout : 1;
} fup;

typedef struct {
    unsigned char a[16];
    int n;                   /* 0 = empty slot */
} ipent;

struct pd_front {
    pd_front_opts o;
    char *listen;            /* owned copy of o.listen */
    int lfd, efd, wfd;       /* listener, epoll, wake eventfd */
    int port;
    pthread_t thread;
    _Atomic int stop;
    int stopping, accepting;
    int64_t accept_resume;
    int64_t drain_until;
    /* connections */
    fconn *c;
    int nslots, *free_slots, nfree;
    int nconns, nlinger, max_linger;
    int idle_head, idle_tail;             /* HEAD connections, oldest first */
    int qh[2], qt[2], nqueued;            /* ready queues */
    /* worker connections */
    fup *ups;
    int *pool, npool, inflight;
    char **outs;                          /* spare answer buffers */
    int nouts;
    /* per-client counts: open addressing, backward-shift deletion */
    ipent *ipt;
    size_t ipt_mask;
};

static int64_t now_ms(void)
{
    return pd_mono_us() / 1000;
}

static uint64_t tag(int kind, uint32_t gen, int idx)
{
    return ((uint64_t)kind << 62) | ((uint64_t)(gen & 0x3fffffffu) << 32) | (uint32_t)idx;
}

static void metric_gauges(pd_front *f)
{
    if (!f->o.metrics) return;
    atomic_store_explicit(&f->o.metrics->http_conns_open, (uint64_t)f->nconns, memory_order_relaxed);
    atomic_store_explicit(&f->o.metrics->http_conns_queued, (uint64_t)f->nqueued, memory_order_relaxed);
}

#define FM_INC(field) do { if (f->o.metrics) PD_INC(f->o.metrics->field); } while (0)

/* ------------------------------------------------------------------ */
/* head scanning (pure)                                                 */
/* ------------------------------------------------------------------ */

int pd_front_head_len(const char *buf, size_t len)
{
    /* civetweb's get_http_header_len: a control byte other than CR/LF
     * below 128 makes the head malformed; the head ends at "\n\n" or
     * "\r\n\r\n", whichever comes first. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch < 128 && ch != '\r' && ch != '\n' && (ch < 0x20 || ch == 0x7f)) return -1;
        if (i + 1 < len && buf[i] == '\n' && buf[i + 1] == '\n') return (int)(i + 2);
        if (i + 3 < len && buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return (int)(i + 4);
    }
    return 0;
}

static int ieq(const char *a, size_t alen, const char *lit)
{
    return alen == strlen(lit) && strncasecmp(a, lit, alen) == 0;
}

void pd_front_parse_head(const char *head, size_t hlen, int our_port, pd_front_head *h)
{
    memset(h, 0, sizeof *h);
    const char *end = head + hlen;
    const char *eol = memchr(head, '\n', hlen);
    if (!eol) eol = end;
    /* request line: METHOD SP target SP version */
    const char *p = head;
    while (p < eol && *p == ' ') p++;
    const char *m = p;
    while (p < eol && *p != ' ') p++;
    size_t mlen = (size_t)(p - m);
    while (p < eol && *p == ' ') p++;
    const char *t = p;
    while (p < eol && *p != ' ' && *p != '\r') p++;
    h->target_off = (size_t)(t - head);
    h->target_len = (size_t)(p - t);
    size_t tl = h->target_len;
    if (ieq(m, mlen, "GET")) {
        static const char *const ops[] = {"/healthz", "/readyz", "/metrics"};
        for (size_t i = 0; i < 3; i++) {
            size_t n = strlen(ops[i]);
            if (tl >= n && memcmp(t, ops[i], n) == 0 && (tl == n || t[n] == '?')) h->ops = 1;
        }
    }
    /* absolute form naming our port: civetweb (get_rel_url_at_current_server,
     * host not checked) serves it as its path; its listener is not ours,
     * so the path is put in the target's place here */
    static const struct { const char *proto; int port; } abs[] = {
        {"http://", 80}, {"https://", 443}, {"ws://", 80}, {"wss://", 443}};
    for (size_t i = 0; i < 4; i++) {
        size_t pl = strlen(abs[i].proto);
        if (tl <= pl || strncasecmp(t, abs[i].proto, pl) != 0) continue;
        const char *hb = t + pl, *te = t + tl;
        const char *he = memchr(hb, '/', (size_t)(te - hb));
        if (!he) break;
        const char *pb = memchr(hb, ':', (size_t)(te - hb));
        long port = abs[i].port;
        if (pb && pb < he) {
            port = 0;
            const char *q = pb + 1;
            if (q == he) break;
            for (; q < he; q++) {
                if (*q < '0' || *q > '9' || port > 65535) { port = -1; break; }
                port = port * 10 + (*q - '0');
            }
        }
        if (port == our_port) h->path_off = (size_t)(he - head);
        break;
    }
    /* framing: a body, or anything unclear about one */
    int ncl = 0, nte = 0, bad = 0;
    int64_t cl = 0;
    h->content_length = -1;
    for (const char *l = eol < end ? eol + 1 : end; l < end;) {
        const char *le = memchr(l, '\n', (size_t)(end - l));
        if (!le) le = end;
        const char *colon = memchr(l, ':', (size_t)(le - l));
        if (colon) {
            const char *ne = colon;
            while (ne > l && (ne[-1] == ' ' || ne[-1] == '\t')) ne--;
            const char *v = colon + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if (ieq(l, (size_t)(ne - l), "Content-Length")) {
                ncl++;
                if (v == ve) bad = 1;
                for (const char *q = v; q < ve; q++)
                    if (*q < '0' || *q > '9') bad = 1;
                    else {
                        if (*q != '0') h->has_body = 1;
                        cl = cl < ((int64_t)1 << 50) ? cl * 10 + (*q - '0') : cl;
                    }
            } else if (ieq(l, (size_t)(ne - l), "Transfer-Encoding")) {
                nte++;
            } else if (ieq(l, (size_t)(ne - l), "Expect") && ieq(v, (size_t)(ve - v), "100-continue")) {
                h->expect_off = (size_t)(l - head);
            }
        }
        l = le + 1;
    }
    if (ncl > 1 || nte || bad) h->has_body = 1;
    if (ncl == 1 && !nte && !bad) h->content_length = cl;
}

/* ------------------------------------------------------------------ */
/* per-client counts                                                    */
/* ------------------------------------------------------------------ */

static size_t ip_slot(const pd_front *f, const unsigned char *a)
{
    size_t i = (size_t)XXH3_64bits(a, 16) & f->ipt_mask;
    while (f->ipt[i].n && memcmp(f->ipt[i].a, a, 16) != 0) i = (i + 1) & f->ipt_mask;
    return i;
}

static int ip_count(const pd_front *f, const unsigned char *a)
{
    return f->ipt[ip_slot(f, a)].n;
}

static void ip_add(pd_front *f, const unsigned char *a)
{
    size_t i = ip_slot(f, a);
    if (!f->ipt[i].n) memcpy(f->ipt[i].a, a, 16);
    f->ipt[i].n++;
}

static void ip_del(pd_front *f, const unsigned char *a)
{
    size_t i = ip_slot(f, a);
    pd_assert(f->ipt[i].n > 0);
    if (--f->ipt[i].n) return;
    /* backward-shift deletion keeps every probe chain unbroken */
    size_t j = i;
    for (;;) {
        j = (j + 1) & f->ipt_mask;
        if (!f->ipt[j].n) break;
        size_t home = (size_t)XXH3_64bits(f->ipt[j].a, 16) & f->ipt_mask;
        if (((j - home) & f->ipt_mask) >= ((j - i) & f->ipt_mask)) {
            f->ipt[i] = f->ipt[j];
            f->ipt[j].n = 0;
            i = j;
        }
    }
}

/* ------------------------------------------------------------------ */
/* lists                                                                */
/* ------------------------------------------------------------------ */

static void idle_push(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    c->prev = f->idle_tail;
    c->next = -1;
    if (f->idle_tail >= 0) f->c[f->idle_tail].next = i;
    else f->idle_head = i;
    f->idle_tail = i;
}

static void idle_remove(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    if (c->prev >= 0) f->c[c->prev].next = c->next;
    else f->idle_head = c->next;
    if (c->next >= 0) f->c[c->next].prev = c->prev;
    else f->idle_tail = c->prev;
    c->prev = c->next = -1;
}

static void queue_push(pd_front *f, int q, int i)
{
    f->c[i].next = -1;
    if (f->qt[q] >= 0) f->c[f->qt[q]].next = i;
    else f->qh[q] = i;
    f->qt[q] = i;
    f->nqueued++;
}

static int queue_pop(pd_front *f, int q)
{
    int i = f->qh[q];
    if (i < 0) return -1;
    f->qh[q] = f->c[i].next;
    if (f->qh[q] < 0) f->qt[q] = -1;
    f->c[i].next = -1;
    f->nqueued--;
    return i;
}

/* ------------------------------------------------------------------ */
/* worker connections                                                   */
/* ------------------------------------------------------------------ */

static void up_close(pd_front *f, int u)
{
    fup *x = &f->ups[u];
    if (x->fd < 0) return;
    close(x->fd); /* leaves the epoll set with it */
    x->fd = -1;
    x->owner = -1;
    x->gen++;
}

/* A worker connection for connection ci: a pooled one, or a new one.
 * Returns its index or -1 (the workers' port refuses). */
static int up_take(pd_front *f, int ci)
{
    int64_t now = now_ms();
    while (f->npool > 0) {
        int u = f->pool[--f->npool];
        if (now - f->ups[u].since > UP_IDLE_MAX_MS) {
            up_close(f, u);
            continue;
        }
        f->ups[u].owner = ci;
        f->ups[u].uout = 1;
        return u;
    }
    int u = -1;
    for (int k = 0; k < f->o.workers; k++)
        if (f->ups[k].fd < 0) {
            u = k;
            break;
        }
    if (u < 0) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->o.upstream_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* loopback: the handshake completes inside connect() */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fup *x = &f->ups[u];
    x->fd = fd;
    x->owner = ci;
    x->uin = 0;
    x->uout = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = tag(K_UP, x->gen, u)};
    if (epoll_ctl(f->efd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        up_close(f, u);
        return -1;
    }
    return u;
}

/* Connection ci is done with its worker connection: pooled when the
 * worker keeps it and the exchange was clean, else closed. */
static void up_release(pd_front *f, fconn *c, int keep)
{
    int u = c->up;
    if (u < 0) return;
    c->up = -1;
    f->inflight--;
    if (keep && !f->stopping) {
        f->ups[u].owner = -1;
        f->ups[u].since = now_ms();
        f->pool[f->npool++] = u;
    } else {
        up_close(f, u);
    }
}

/* ------------------------------------------------------------------ */
/* client connections                                                   */
/* ------------------------------------------------------------------ */

static void out_free(pd_front *f, fconn *c)
{
    if (!c->out) return;
    if (f->nouts < f->o.workers) f->outs[f->nouts++] = c->out;
    else pd_free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
}

static void conn_free_slot(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    c->state = ST_FREE;
    c->gen++;
    if (c->in_cap > 4 * IN_CAP0) {
        pd_free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    c->in_len = 0;
    f->free_slots[f->nfree++] = i;
}

/* Leaves the counted states (HEAD, QUEUED, RELAY): lists, per-client
 * count, worker connection. */
static void conn_uncount(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    if (c->state == ST_HEAD) idle_remove(f, i);
    pd_assert(c->state != ST_QUEUED); /* queued connections are never closed */
    if (c->up >= 0) up_release(f, c, 0);
    out_free(f, c);
    if (c->counted) {
        ip_del(f, c->addr);
        f->nconns--;
        c->counted = 0;
    }
}

static void conn_close(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    if (c->state == ST_LINGER) f->nlinger--;
    else conn_uncount(f, i);
    close(c->fd);
    c->fd = -1;
    conn_free_slot(f, i);
    metric_gauges(f);
}

/* Our side is done: shut it, drain what the client still sends for a
 * while (a close with unread bytes would reset the answer in flight). */
static void conn_linger(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    if (c->state != ST_LINGER) {
        conn_uncount(f, i);
        if (f->nlinger >= f->max_linger) {
            close(c->fd);
            c->fd = -1;
            conn_free_slot(f, i);
            metric_gauges(f);
            return;
        }
        f->nlinger++;
        c->state = ST_LINGER;
    }
    shutdown(c->fd, SHUT_WR);
    c->deadline = now_ms() + LINGER_MS;
    c->cin = 1;
    metric_gauges(f);
}

/* Best-effort answer from the front itself (503, 408, 502), then close. */
static void conn_answer(pd_front *f, int i, int status, const char *reason, const char *error, const char *detail)
{
    fconn *c = &f->c[i];
    char body[384], msg[768];
    int bl = snprintf(body, sizeof body, "{\"error\":\"%s\",\"detail\":\"%s\"}", error, detail);
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n%s",
                     status, reason, bl, status == 503 ? "Retry-After: 1\r\n" : "", body);
    if (n > 0 && (size_t)n < sizeof msg) {
        ssize_t w = send(c->fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w; /* a fresh socket takes it whole; if not, the client is gone or hostile */
    }
    conn_linger(f, i);
}

static int slot_alloc(pd_front *f, int fd)
{
    if (f->nfree == 0) return -1;
    int i = f->free_slots[--f->nfree];
    fconn *c = &f->c[i];
    uint32_t gen = c->gen;
    char *in = c->in;
    size_t cap = c->in_cap;
    memset(c, 0, sizeof *c);
    c->gen = gen;
    c->in = in;
    c->in_cap = cap;
    c->fd = fd;
    c->up = c->prev = c->next = -1;
    c->cin = c->cout = 1;
    return i;
}

static void run_head(pd_front *f, int i);

static void reject(pd_front *f, int fd, const char *detail, int total)
{
    if (total) FM_INC(http_conns_rejected[1]);
    else FM_INC(http_conns_rejected[0]);
    int i = f->nlinger < f->max_linger ? slot_alloc(f, fd) : -1;
    if (i < 0) { /* too many closing already: no answer */
        close(fd);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = tag(K_CONN, f->c[i].gen, i)};
    epoll_ctl(f->efd, EPOLL_CTL_ADD, fd, &ev);
    f->c[i].state = ST_LINGER; /* not counted: conn_linger keeps it there */
    f->nlinger++;
    conn_answer(f, i, 503, "Service Unavailable", "too many connections", detail);
}

static void on_accept(pd_front *f)
{
    for (int k = 0; k < 64 && f->accepting; k++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(f->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop accepting for a moment (the
                 * listener is level-triggered and would spin) */
                pd_warn("http front: accept: %s; pausing accepts for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                epoll_ctl(f->efd, EPOLL_CTL_DEL, f->lfd, NULL);
                f->accepting = 0;
                f->accept_resume = now_ms() + ACCEPT_PAUSE_MS;
            }
            return;
        }
        unsigned char a[16] = {0};
        if (ss.ss_family == AF_INET6) {
            memcpy(a, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        } else {
            a[10] = a[11] = 0xff;
            memcpy(a + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        FM_INC(http_conns_accepted);
        if (f->o.max_conns_per_client > 0 && ip_count(f, a) >= f->o.max_conns_per_client) {
            char d[128];
            snprintf(d, sizeof d, "more than %d connections from this address", f->o.max_conns_per_client);
            reject(f, fd, d, 0);
            continue;
        }
        /* At the limit: the connection idle longest goes, but only after
         * a last read: one whose head has arrived (say a probe accepted
         * in this same batch) is queued instead, never evicted. */
        for (int tries = 0; f->nconns >= f->o.max_conns && f->idle_head >= 0 && tries < 16; tries++) {
            int v = f->idle_head;
            uint32_t g = f->c[v].gen;
            f->c[v].cin = 1;
            run_head(f, v);
            if (f->c[v].gen != g || f->c[v].state != ST_HEAD) continue; /* closed, or queued */
            FM_INC(http_conns_evicted);
            if (f->c[v].in_len > 0)
                conn_answer(f, v, 503, "Service Unavailable", "too many connections",
                            "closed to admit a new connection: the head was not complete");
            else
                conn_close(f, v);
        }
        if (f->nconns >= f->o.max_conns) {
            char d[128];
            snprintf(d, sizeof d, "%d connections open, none idle", f->o.max_conns);
            reject(f, fd, d, 1);
            continue;
        }
        int i = slot_alloc(f, fd);
        pd_assert(i >= 0); /* nconns < max_conns: a slot is free */
        fconn *c = &f->c[i];
        memcpy(c->addr, a, 16);
        c->counted = 1;
        ip_add(f, a);
        f->nconns++;
        c->state = ST_HEAD;
        c->deadline = now_ms() + f->o.head_timeout_ms;
        idle_push(f, i);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = tag(K_CONN, c->gen, i)};
        if (epoll_ctl(f->efd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_close(f, i);
            continue;
        }
        metric_gauges(f);
    }
}

/* Reads from the client into c->in. Returns 0, or -1 when the client
 * closed or failed. */
static int read_client(pd_front *f, fconn *c)
{
    while (c->cin) {
        if (c->in_len == c->in_cap) {
            size_t lim = c->in_max > f->o.max_head_bytes ? c->in_max : f->o.max_head_bytes;
            if (c->in_cap >= lim) return 0; /* full: the caller decides */
            size_t cap = c->in_cap ? c->in_cap * 2 : IN_CAP0;
            if (cap > lim) cap = lim;
            c->in = pd_realloc(c->in, cap);
            c->in_cap = cap;
        }
        size_t room = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, room, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            if ((size_t)n < room) c->cin = 0; /* short read: drained */
        } else if (n == 0) {
            return -1;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->cin = 0;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return 0;
}

/* HEAD: a complete head (or one civetweb must refuse) is queued. */
static void run_head(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    size_t before = c->in_len;
    if (read_client(f, c) != 0) {
        conn_close(f, i);
        return;
    }
    if (before == 0 && c->in_len > 0 && c->nreq > 0)
        c->deadline = now_ms() + f->o.head_timeout_ms; /* a kept connection's next head begins */
    if (c->in_len == 0) return;
    int hl = pd_front_head_len(c->in, c->in_len);
    if (hl == 0 && c->in_len < f->o.max_head_bytes) return;
    pd_front_head h;
    size_t body_len = 0;
    if (hl > 0) {
        pd_front_parse_head(c->in, (size_t)hl, f->port, &h);
        if (h.has_body && h.content_length > 0 && f->o.max_body_bytes > 0) {
            /* A body of clear framing is read whole here (under the same
             * deadline as the head), so the worker gets the complete
             * request at once; 413 above the limit. */
            if ((uint64_t)h.content_length > f->o.max_body_bytes) {
                char d[160];
                snprintf(d, sizeof d, "request body of %lld bytes is over the limit (%zu bytes)",
                         (long long)h.content_length, f->o.max_body_bytes);
                conn_answer(f, i, 413, "Payload Too Large", "payload too large", d);
                return;
            }
            size_t need = (size_t)hl + (size_t)h.content_length;
            if (c->in_len < need) {
                c->in_max = need;
                if (h.expect_off && !c->sent100) {
                    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                    ssize_t w = send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
                    (void)w; /* best effort: a client that does not get it sends after its own wait */
                    c->sent100 = 1;
                }
                if (c->in_len < c->in_cap) return; /* more to come */
                c->cin = 1;
                if (read_client(f, c) != 0) {
                    conn_close(f, i);
                    return;
                }
                if (c->in_len < need) return;
            }
            /* answered here: the worker must not send a 100 of its own */
            if (h.expect_off) c->in[h.expect_off] = 'X';
            body_len = (size_t)h.content_length;
            h.has_body = 0;
        }
        if (h.path_off) { /* absolute form naming us: keep the path */
            size_t cut = h.path_off - h.target_off;
            memmove(c->in + h.target_off, c->in + h.path_off, c->in_len - h.path_off);
            c->in_len -= cut;
            hl -= (int)cut;
        }
        c->ops = (unsigned)h.ops;
        c->body = (unsigned)h.has_body;
    } else {
        c->ops = 0;
        c->body = 1; /* refused by civetweb; what follows cannot be read */
    }
    c->req_len = c->body ? c->in_len : (size_t)hl + body_len;
    c->req_sent = 0;
    c->nreq++;
    c->last = c->body || f->stopping || (f->o.keepalive_max_requests > 0 && c->nreq >= f->o.keepalive_max_requests);
    idle_remove(f, i);
    c->state = ST_QUEUED;
    c->deadline = 0;
    queue_push(f, c->ops ? Q_OPS : Q_OTHER, i);
    metric_gauges(f);
}

/* Parses the answer's head at c->out[0..]; rewrites its Connection header
 * to close when this is the connection's last answer. */
static void parse_answer_head(pd_front *f, fconn *c)
{
    (void)f;
    int hl = pd_front_head_len(c->out, c->out_len);
    if (hl == 0 && c->out_len < OUT_CAP) return;
    c->resp_head = 1;
    if (hl <= 0 || c->out_len < 12 || memcmp(c->out, "HTTP/1.", 7) != 0 || c->out[9] < '2') {
        /* unreadable, too large or interim: relay to the end, then close */
        c->delim = 1;
        c->resp_close = 1;
        c->up_keep = 0;
        return;
    }
    int v11 = c->out[7] == '1';
    int64_t cl = -1;
    int conn_close_hdr = -1; /* -1 absent, 0 keep-alive, 1 close */
    size_t conn_off = 0, conn_end = 0;
    const char *end = c->out + hl;
    for (const char *l = memchr(c->out, '\n', (size_t)hl) + 1; l < end;) {
        const char *le = memchr(l, '\n', (size_t)(end - l));
        if (!le) break;
        const char *colon = memchr(l, ':', (size_t)(le - l));
        if (colon) {
            const char *v = colon + 1, *ve = le;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
            if (ieq(l, (size_t)(colon - l), "Content-Length")) {
                cl = 0;
                for (const char *q = v; q < ve && cl >= 0; q++)
                    cl = (*q >= '0' && *q <= '9' && cl < (int64_t)1 << 50) ? cl * 10 + (*q - '0') : -1;
            } else if (ieq(l, (size_t)(colon - l), "Connection")) {
                conn_close_hdr = ieq(v, (size_t)(ve - v), "keep-alive") ? 0 : 1;
                conn_off = (size_t)(v - c->out);
                conn_end = (size_t)(ve - c->out);
            }
        }
        l = le + 1;
    }
    c->up_keep = conn_close_hdr == 0 || (conn_close_hdr < 0 && v11);
    c->resp_close = !c->up_keep;
    if (cl < 0) {
        c->delim = 1;
        c->resp_close = 1;
        c->up_keep = 0;
        return;
    }
    c->resp_left = cl - (int64_t)(c->out_len - (size_t)hl);
    if (c->last && !c->resp_close && conn_close_hdr == 0) {
        /* "keep-alive" -> "close": the head shrinks by 5 bytes */
        memcpy(c->out + conn_off, "close", 5);
        memmove(c->out + conn_off + 5, c->out + conn_end, c->out_len - conn_end);
        c->out_len -= (conn_end - conn_off) - 5;
        c->resp_close = 1;
    } else if (c->last) {
        c->resp_close = 1; /* no Connection header to rewrite: close anyway */
    }
}

/* The worker connection failed before any answer byte: retry once on a
 * new one (a pooled connection the worker had just closed), else 502. */
static int relay_retry(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    if (c->resp_any || c->retried) return -1;
    up_release(f, c, 0);
    c->retried = 1;
    int u = up_take(f, i);
    if (u < 0) return -1;
    c->up = u;
    f->inflight++;
    c->req_sent = 0;
    return 0;
}

static void relay_fail(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    if (c->resp_any) {
        conn_close(f, i); /* mid-answer: nothing sensible to add */
        return;
    }
    up_release(f, c, 0);
    conn_answer(f, i, 502, "Bad Gateway", "bad gateway", "the HTTP workers did not answer");
}

/* RELAY: request out, answer back, until the answer is through. */
static void run_relay(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    for (;;) {
        fup *u = c->up >= 0 ? &f->ups[c->up] : NULL;
        int progress = 0;
        /* 1. the request to the worker */
        if (u && c->req_sent < c->req_len && u->uout) {
            ssize_t n = send(u->fd, c->in + c->req_sent, c->req_len - c->req_sent, MSG_NOSIGNAL);
            if (n > 0) {
                c->req_sent += (size_t)n;
                if (c->req_sent < c->req_len) u->uout = 0;
                progress = 1;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                u->uout = 0;
            } else if (n < 0 && errno != EINTR) {
                if (relay_retry(f, i) == 0) continue;
                relay_fail(f, i);
                return;
            }
        }
        /* 2. the answer from the worker */
        if (u && !c->up_done && u->uin && c->out_len < OUT_CAP) {
            if (!c->out) c->out = f->nouts ? f->outs[--f->nouts] : pd_malloc(OUT_CAP);
            size_t room = OUT_CAP - c->out_len;
            ssize_t n = recv(u->fd, c->out + c->out_len, room, 0);
            if (n > 0) {
                c->resp_any = 1;
                c->out_len += (size_t)n;
                if ((size_t)n < room) u->uin = 0;
                if (!c->resp_head) parse_answer_head(f, c);
                else if (!c->delim) c->resp_left -= n;
                if (c->resp_head && !c->delim && c->resp_left <= 0) {
                    if (c->resp_left < 0) c->out_len -= (size_t)(-c->resp_left); /* more than announced */
                    c->up_done = 1;
                }
                progress = 1;
            } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                if (!c->resp_any) {
                    if (relay_retry(f, i) == 0) continue;
                    relay_fail(f, i);
                    return;
                }
                if (!c->delim) { /* cut short */
                    conn_close(f, i);
                    return;
                }
                c->up_done = 1;
                progress = 1;
            } else if (errno == EINTR) {
                progress = 1;
            } else {
                u->uin = 0;
            }
            if (c->up_done) up_release(f, c, c->up_keep && !c->body && !c->delim);
        }
        /* 3. the answer to the client (not before its head is read) */
        if (c->resp_head && c->out_off < c->out_len && c->cout) {
            ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c->out_off += (size_t)n;
                progress = 1;
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                c->cout = 0;
            } else if (n < 0 && errno != EINTR) {
                conn_close(f, i);
                return;
            }
            if (c->out_off < c->out_len) c->cout = 0;
            if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
        }
        if (c->up_done && c->out_len == 0) break;
        if (!progress) {
            /* waiting: for the worker (bounded by the workers' own
             * timeouts, except an answer without a length), or for the
             * client: no progress for write_timeout_ms closes */
            if ((c->delim || c->out_len) && !c->deadline) c->deadline = now_ms() + f->o.write_timeout_ms;
            return;
        }
        c->deadline = 0;
    }
    /* the answer is through */
    out_free(f, c);
    c->resp_head = c->up_done = c->delim = c->resp_any = c->retried = 0;
    if (c->resp_close) {
        conn_linger(f, i);
        return;
    }
    c->resp_close = 0;
    memmove(c->in, c->in + c->req_len, c->in_len - c->req_len);
    c->in_len -= c->req_len;
    c->req_len = c->req_sent = 0;
    c->sent100 = 0;
    c->in_max = 0;
    if (c->in_cap > f->o.max_head_bytes && c->in_len <= f->o.max_head_bytes) { /* after a large body */
        c->in = pd_realloc(c->in, f->o.max_head_bytes);
        c->in_cap = f->o.max_head_bytes;
    }
    c->state = ST_HEAD;
    c->deadline = now_ms() + (c->in_len ? f->o.head_timeout_ms : f->o.keepalive_timeout_ms);
    idle_push(f, i);
    run_head(f, i); /* a pipelined request may be waiting */
}

static void run_linger(pd_front *f, int i)
{
    fconn *c = &f->c[i];
    char buf[4096];
    while (c->cin) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if ((size_t)n < sizeof buf) c->cin = 0;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->cin = 0;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            conn_close(f, i);
            return;
        }
    }
}

static void conn_run(pd_front *f, int i)
{
    switch (f->c[i].state) {
    case ST_HEAD: run_head(f, i); break;
    case ST_RELAY: run_relay(f, i); break;
    case ST_LINGER: run_linger(f, i); break;
    default: break; /* QUEUED: waits for a worker */
    }
}

/* Starts queued requests while workers are free: ops first; the others
 * leave `reserve` workers to them. */
static void dispatch(pd_front *f)
{
    int reserve = f->o.workers >= 4 ? 2 : f->o.workers >= 2 ? 1 : 0;
    for (;;) {
        int q;
        if (f->qh[Q_OPS] >= 0 && f->inflight < f->o.workers) q = Q_OPS;
        else if (f->qh[Q_OTHER] >= 0 && f->inflight < f->o.workers - reserve) q = Q_OTHER;
        else break;
        int i = f->qh[q];
        int u = up_take(f, i);
        if (u < 0) {
            /* the workers' port refuses: answer the queue's head */
            queue_pop(f, q);
            f->c[i].state = ST_RELAY;
            f->c[i].resp_any = 0;
            relay_fail(f, i);
            continue;
        }
        queue_pop(f, q);
        fconn *c = &f->c[i];
        c->up = u;
        f->inflight++;
        c->state = ST_RELAY;
        if (f->stopping) c->last = 1;
        run_relay(f, i);
    }
    metric_gauges(f);
}

/* Deadlines, every SWEEP_MS. */
static void sweep(pd_front *f, int64_t now)
{
    for (int i = 0; i < f->nslots; i++) {
        fconn *c = &f->c[i];
        if (c->state == ST_FREE || !c->deadline || now < c->deadline) continue;
        switch (c->state) {
        case ST_HEAD:
            if (c->in_len > 0) {
                FM_INC(http_conns_timed_out[0]);
                char d[128];
                snprintf(d, sizeof d, "request head not complete within %d ms", f->o.head_timeout_ms);
                conn_answer(f, i, 408, "Request Timeout", "request timeout", d);
            } else {
                if (c->nreq == 0) FM_INC(http_conns_timed_out[0]);
                else FM_INC(http_conns_timed_out[1]);
                conn_close(f, i);
            }
            break;
        case ST_RELAY:
            FM_INC(http_conns_timed_out[2]);
            conn_close(f, i);
            break;
        case ST_LINGER: conn_close(f, i); break;
        default: break;
        }
    }
    if (!f->accepting && !f->stopping && now >= f->accept_resume) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag(K_LISTEN, 0, 0)};
        if (epoll_ctl(f->efd, EPOLL_CTL_ADD, f->lfd, &ev) == 0) f->accepting = 1;
    }
}

static void begin_stop(pd_front *f)
{
    f->stopping = 1;
    if (f->accepting) epoll_ctl(f->efd, EPOLL_CTL_DEL, f->lfd, NULL);
    f->accepting = 0;
    close(f->lfd);
    f->lfd = -1;
    for (int i = 0; i < f->nslots; i++) {
        fconn *c = &f->c[i];
        if (c->state == ST_HEAD) conn_close(f, i);
        else if (c->state == ST_QUEUED || c->state == ST_RELAY) c->last = 1;
    }
    for (int k = 0; k < f->npool; k++) up_close(f, f->pool[k]);
    f->npool = 0;
}

static void *front_thread(void *arg)
{
    pd_front *f = arg;
    pd_thread_name("http-front");
    struct epoll_event evs[MAX_EVENTS];
    int64_t next_sweep = now_ms() + SWEEP_MS;
    for (;;) {
        int64_t now = now_ms();
        int stop_ms = atomic_load(&f->stop);
        if (stop_ms && !f->stopping) {
            f->drain_until = now + stop_ms;
            begin_stop(f);
        }
        if (f->stopping && (f->nconns == 0 || now >= f->drain_until)) break;
        int tmo = (int)PD_MAX(0, next_sweep - now);
        int n = epoll_wait(f->efd, evs, MAX_EVENTS, tmo);
        for (int k = 0; k < n; k++) {
            uint64_t d = evs[k].data.u64;
            int kind = (int)(d >> 62);
            uint32_t gen = (uint32_t)(d >> 32) & 0x3fffffffu;
            int idx = (int)(uint32_t)d;
            uint32_t e = evs[k].events;
            if (kind == K_LISTEN) {
                if (f->accepting) on_accept(f);
            } else if (kind == K_WAKE) {
                uint64_t v;
                if (read(f->wfd, &v, sizeof v) < 0) { /* the flag is read at the loop's top */ }
            } else if (kind == K_CONN) {
                fconn *c = &f->c[idx];
                if (c->state == ST_FREE || (c->gen & 0x3fffffffu) != gen) continue;
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->cin = 1;
                if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->cout = 1;
                conn_run(f, idx);
            } else {
                fup *u = &f->ups[idx];
                if (u->fd < 0 || (u->gen & 0x3fffffffu) != gen) continue;
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) u->uin = 1;
                if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) u->uout = 1;
                if (u->owner >= 0) {
                    conn_run(f, u->owner);
                } else if (u->uin) {
                    /* a pooled connection the worker closed */
                    for (int k2 = 0; k2 < f->npool; k2++)
                        if (f->pool[k2] == idx) {
                            f->pool[k2] = f->pool[--f->npool];
                            break;
                        }
                    up_close(f, idx);
                }
            }
        }
        dispatch(f);
        now = now_ms();
        if (now >= next_sweep) {
            sweep(f, now);
            dispatch(f);
            next_sweep = now + SWEEP_MS;
        }
    }
    for (int i = 0; i < f->nslots; i++)
        if (f->c[i].state == ST_QUEUED) { /* drain time over */
            f->c[i].state = ST_RELAY;
            conn_close(f, i);
        } else if (f->c[i].state != ST_FREE) {
            conn_close(f, i);
        }
    for (int u = 0; u < f->o.workers; u++) up_close(f, u);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                            */
/* ------------------------------------------------------------------ */

static int listen_on(pd_front *f, char *err, size_t errlen)
{
    const char *colon = strrchr(f->listen, ':');
    if (!colon || strchr(f->listen, ','))
        return pd_seterr(err, errlen, PD_EINVAL, "listen %s: expected one host:port", f->listen);
    char host[256], port[16];
    size_t hl = (size_t)(colon - f->listen);
    const char *h = f->listen;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof host || strlen(colon + 1) >= sizeof port)
        return pd_seterr(err, errlen, PD_EINVAL, "listen %s: too long", f->listen);
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(hl ? host : NULL, port, &hints, &ai);
    if (rc != 0) return pd_seterr(err, errlen, PD_EINVAL, "listen %s: %s", f->listen, gai_strerror(rc));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "listen %s: %s", f->listen, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return rc;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    f->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    f->lfd = fd;
    return PD_OK;
}

static void front_free(pd_front *f)
{
    if (f->lfd >= 0) close(f->lfd);
    if (f->efd >= 0) close(f->efd);
    if (f->wfd >= 0) close(f->wfd);
    if (f->c)
        for (int i = 0; i < f->nslots; i++) {
            pd_free(f->c[i].in);
            pd_free(f->c[i].out);
        }
    for (int k = 0; k < f->nouts; k++) pd_free(f->outs[k]);
    pd_free(f->outs);
    pd_free(f->c);
    pd_free(f->free_slots);
    pd_free(f->ups);
    pd_free(f->pool);
    pd_free(f->ipt);
    pd_free(f->listen);
    pd_free(f);
}

int pd_front_start(pd_front **out, const pd_front_opts *o, char *err, size_t errlen)
{
    pd_assert(out && o && o->listen && o->workers > 0 && o->max_conns > 0);
    *out = NULL;
    pd_front *f = pd_calloc(1, sizeof *f);
    f->o = *o;
    f->listen = pd_strdup(o->listen);
    f->o.listen = f->listen;
    f->lfd = f->efd = f->wfd = -1;
    f->idle_head = f->idle_tail = -1;
    f->qh[0] = f->qh[1] = f->qt[0] = f->qt[1] = -1;
    f->max_linger = o->max_conns;
    f->nslots = o->max_conns + f->max_linger + 1;
    /* descriptors: every slot, the worker connections, and room for the
     * rest of the process (store files, Kafka, peers) */
    struct rlimit rl;
    rlim_t need = (rlim_t)f->nslots + (rlim_t)o->workers * 2 + 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need)
            pd_warn("http front: open file limit %llu is below the %llu that http_max_connections %d needs; "
                    "accepts pause when it runs out", (unsigned long long)rl.rlim_cur,
                    (unsigned long long)need, o->max_conns);
    }
    f->c = pd_calloc((size_t)f->nslots, sizeof *f->c);
    f->free_slots = pd_malloc((size_t)f->nslots * sizeof *f->free_slots);
    for (int i = f->nslots - 1; i >= 0; i--) {
        f->c[i].fd = -1;
        f->free_slots[f->nfree++] = i;
    }
    f->ups = pd_calloc((size_t)o->workers, sizeof *f->ups);
    for (int u = 0; u < o->workers; u++) f->ups[u].fd = f->ups[u].owner = -1;
    f->pool = pd_malloc((size_t)o->workers * sizeof *f->pool);
    f->outs = pd_malloc((size_t)o->workers * sizeof *f->outs);
    size_t tsz = 16;
    while (tsz < (size_t)o->max_conns * 2) tsz <<= 1;
    f->ipt = pd_calloc(tsz, sizeof *f->ipt);
    f->ipt_mask = tsz - 1;
    int rc = listen_on(f, err, errlen);
    if (rc != PD_OK) goto fail;
    f->efd = epoll_create1(EPOLL_CLOEXEC);
    f->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag(K_LISTEN, 0, 0)};
    struct epoll_event ew = {.events = EPOLLIN, .data.u64 = tag(K_WAKE, 0, 0)};
    if (f->efd < 0 || f->wfd < 0 || epoll_ctl(f->efd, EPOLL_CTL_ADD, f->lfd, &ev) != 0 ||
        epoll_ctl(f->efd, EPOLL_CTL_ADD, f->wfd, &ew) != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "http front: epoll: %s", strerror(errno));
        goto fail;
    }
    f->accepting = 1;
    if (pthread_create(&f->thread, NULL, front_thread, f) != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "http front: thread: %s", strerror(errno));
        goto fail;
    }
    metric_gauges(f);
    *out = f;
    return PD_OK;
fail:
    front_free(f);
    return rc;
}

int pd_front_port(const pd_front *f)
{
    return f ? f->port : 0;
}

void pd_front_stop(pd_front *f, int drain_ms)
{
    if (!f) return;
    atomic_store(&f->stop, drain_ms > 0 ? drain_ms : 1);
    uint64_t one = 1;
    if (write(f->wfd, &one, sizeof one) < 0) { /* the loop also reads the flag every SWEEP_MS */ }
    pthread_join(f->thread, NULL);
    front_free(f);
}

/*
 * peer.h -- the one HTTP/1.1 client between workers: query forwarding
 * (http.c) and snapshot fetch (handoff.c) both go through it.
 *
 * A request is a GET (or another method, with or without a body:
 * rq->method, rq->body) of
 * <url base><path_query> with the caller's extra header lines. It is bounded by time in two ways, and at least one must be
 * set: deadline_us (absolute, pd_mono_us) bounds the whole exchange --
 * connect, send, head and body; idle_ms bounds every single wait for the
 * peer (connect, send, each read), for long transfers that must keep
 * moving. Name resolution (getaddrinfo) is not bounded: peers are named by
 * address or by a local name.
 *
 * Responses are framed by Content-Length, or by connection close when it
 * is absent (never reused then). Transfer-Encoding other than identity is
 * refused (the server side, http.c, never sends chunked answers). Bodies
 * of 1xx/204/304 answers without a Content-Length are empty.
 *
 * Connections: with a pool, the request says "Connection: keep-alive" and
 * a connection whose answer keeps it alive (HTTP/1.1 without
 * "Connection: close", or an explicit keep-alive) goes back to the pool
 * once the body was read whole. The pool keeps at most PD_PEER_POOL_MAX
 * idle connections per peer (host:port), under one mutex; an idle
 * connection that is readable (EOF or junk) or idle for longer than
 * PD_PEER_IDLE_MAX_US (below the peers' keep-alive timeout) is closed
 * instead of used. A request that fails on a pooled connection before any
 * response byte arrived is retried once on a fresh connection when the
 * request is a GET or says it is idempotent (rq->idempotent: a POST that
 * only reads, like a forwarded rank). Without a pool (NULL) every request has its own connection
 * and says "Connection: close".
 *
 * Errors: PD_OK when a complete response arrived, whatever its status.
 * PD_EAGAIN when the peer could not be reached (resolve, connect),
 * PD_ERANGE for a streamed body over rq->max_body or without the
 * Content-Length that rq->need_length requires (decided from the head,
 * before any body byte reaches the sink, when the length is announced),
 * PD_EIO for any other failure after that (timeouts, malformed answers, a
 * buffered body over its limit, a sink that refused data); err says which.
 *
 * Threads: the pool may be shared by any number of threads; requests with
 * distinct pd_peer_resp run concurrently.
 */
#ifndef PD_PEER_H
#define PD_PEER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define PD_PEER_POOL_MAX 8          /* idle connections kept per peer */
#define PD_PEER_IDLE_MAX_US 700000  /* below the peers' keep-alive timeout (1 s) */
#define PD_PEER_MAX_HEAD 16384      /* response head limit */
#define PD_PEER_MAX_BUFFERED (64 << 20) /* limit of a body buffered in memory */

/* "http://host[:port][/base]": host (IPv6 in brackets, stored without
 * them), port (default 80), base path (no trailing '/', may be ""). */
typedef struct {
    char host[256];
    char port[16];
    char base[256];
} pd_peer_url;

/* Parses url into *u. PD_EINVAL for anything else (https, a missing or
 * empty host, a non-numeric port, a field that does not fit, anything but
 * a path after the authority). The scheme is case-insensitive. */
int pd_peer_url_parse(const char *url, pd_peer_url *u);

/* Connects to host:port (numeric port) over TCP, non-blocking, with
 * TCP_NODELAY, trying each resolved address until deadline_us. Returns the
 * connected descriptor (the caller's, to close) or -1 with err set. */
int pd_peer_connect(const char *host, const char *port, int64_t deadline_us, char *err, size_t errlen);

typedef struct pd_peer_pool pd_peer_pool;
pd_peer_pool *pd_peer_pool_new(void);
/* Closes every idle connection and frees the pool. NULL is a no-op. No
 * request may be running on it. */
void pd_peer_pool_free(pd_peer_pool *pool);

typedef struct {
    const char *path_query;   /* appended to the URL's base; starts with '/' */
    const char *headers;      /* extra header lines, each ending "\r\n"; NULL: none */
    int64_t deadline_us;      /* bound of the whole exchange (pd_mono_us); 0: none */
    int idle_ms;              /* bound of each wait for the peer; 0: none */
    uint64_t max_body;        /* streamed body limit (pd_peer_stream); 0: none */
    const char *method;       /* NULL: GET. Anything else is sent with the body
                                 below (Content-Length: body_len, 0 without one) */
    int need_length;          /* a streamed 2xx body must come with a Content-Length */
    const void *body;         /* request body (borrowed), body_len bytes; only with a method */
    size_t body_len;
    const char *content_type; /* of the body; NULL: application/json */
    int idempotent;           /* a non-GET request that may be retried like a GET */
} pd_peer_req;

/* A response. body is owned by the caller (pd_buf_free in every case,
 * also after an error); it may be reused across requests. */
typedef struct {
    int status;
    int keepalive;            /* the connection could be reused */
    char retry_after[16];     /* Retry-After value, or "" */
    pd_buf body;              /* the body, unless streamed */
    uint64_t streamed;        /* body bytes handed to the sink */
} pd_peer_resp;

/* Receives body bytes in order, in chunks of at most 64 KiB; data is
 * valid during the call only. Returns 0, or non-zero to abort. */
typedef int (*pd_peer_sink)(void *arg, const void *data, size_t n);

/* GET with the body read into r->body (at most PD_PEER_MAX_BUFFERED). */
int pd_peer_get(pd_peer_pool *pool, const pd_peer_url *u, const pd_peer_req *rq, pd_peer_resp *r, char *err,
                size_t errlen);

/* GET with a 2xx answer's body handed to sink as it arrives (at most
 * rq->max_body bytes when set), counted in r->streamed; any other
 * status's body is read into r->body as by pd_peer_get. */
int pd_peer_stream(pd_peer_pool *pool, const pd_peer_url *u, const pd_peer_req *rq, pd_peer_sink sink, void *arg,
                   pd_peer_resp *r, char *err, size_t errlen);

#endif

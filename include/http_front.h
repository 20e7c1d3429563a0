/*
 * http_front.h -- the HTTP front end: one event-loop thread that owns the
 * public listening socket, every client connection while it is idle or
 * sending its request head, and the connection limits; it hands each
 * complete request head to the HTTP workers (civetweb, on a loopback port)
 * and relays their answer. See src/http_front.c for the design and the
 * evidence behind it.
 */
#ifndef PD_HTTP_FRONT_H
#define PD_HTTP_FRONT_H

#include <stddef.h>
#include <stdint.h>

struct pd_metrics;

typedef struct pd_front pd_front;

typedef struct {
    const char *listen;          /* public "host:port" (port 0 = ephemeral) */
    int upstream_port;           /* the workers' port on 127.0.0.1 */
    int workers;                 /* requests in flight at most (= worker threads) */
    int max_conns;               /* open client connections */
    int max_conns_per_client;    /* per client address; 0 = no limit */
    int head_timeout_ms;         /* a request head must arrive within this */
    int keepalive_timeout_ms;    /* idle time allowed between requests */
    int keepalive_max_requests;  /* answers per connection; the last says close */
    int write_timeout_ms;        /* a client that accepts no byte for this long is dropped */
    size_t max_head_bytes;       /* larger heads go to the workers to be refused */
    size_t max_body_bytes;       /* request bodies (one Content-Length) up to this are read
                                    whole before relaying; larger: 413. 0: not read (relayed
                                    as they come, the connection closed after the answer) */
    struct pd_metrics *metrics;  /* borrowed, may be NULL; outlives the front */
} pd_front_opts;

/* Binds o->listen and starts the loop thread. o is copied (listen too). */
int pd_front_start(pd_front **out, const pd_front_opts *o, char *err, size_t errlen);
/* Port actually bound. */
int pd_front_port(const pd_front *f);
/* Stops accepting, closes idle connections, lets the requests in flight
 * finish (their answers say close) for at most drain_ms, then closes
 * everything and frees. NULL is a no-op. */
void pd_front_stop(pd_front *f, int drain_ms);

/* Exposed for unit tests. Scans a request head the way the workers
 * (civetweb 1.15) will: returns its length (through the blank line), 0 when
 * incomplete, -1 when it holds a byte civetweb rejects (the workers answer
 * 400). */
int pd_front_head_len(const char *buf, size_t len);

typedef struct {
    int ops;          /* GET of /healthz, /readyz or /metrics: served first */
    int has_body;     /* Content-Length > 0, any Transfer-Encoding, or an
                         unclear framing: the connection closes after it */
    size_t target_off, target_len; /* the request target in the head */
    size_t path_off;  /* absolute-form naming our port: where its path starts (else 0) */
    int64_t content_length; /* the one Content-Length of a clear framing (digits only, no
                               Transfer-Encoding), else -1 */
    size_t expect_off;      /* "Expect: 100-continue": where the header's name starts (else 0) */
} pd_front_head;

/* Reads what the front needs from a complete head of hlen bytes (see
 * pd_front_head_len). our_port decides whether an absolute-form target
 * ("http://host:port/path") names this server. */
void pd_front_parse_head(const char *head, size_t hlen, int our_port, pd_front_head *h);

#endif

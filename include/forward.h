/*
 * forward.h -- routing a per-user request to where it can be answered:
 * the owner of the user's partition, else a warm copy. One mechanism for
 * every per-user route (the profile query in http.c; rank and affinities
 * in http_score.c):
 *
 *   - the owner (partition owned and ready here) answers locally;
 *   - the /internal/ form (a peer forwarded it) is never forwarded again:
 *     an owner answers, a replica only when the peer accepts a stale copy
 *     (X-Profiled-Stale-Ok: 1), anything else is a 503;
 *   - partition owned but restoring here: a warm copy answers, else 503;
 *   - otherwise the request goes to the owner's /internal/ route (through
 *     peer.c: X-Profiled-Hops + 1, the cluster token, forward_timeout_ms;
 *     a POST with its body) and the owner's status, body and Retry-After
 *     are relayed; when the owner is unknown, unreachable or restoring, a
 *     worker holding a warm copy answers with "stale": true (this one, or
 *     a holder asked with X-Profiled-Stale-Ok);
 *   - a public request that already came PD_FWD_MAX_HOPS hops: 508.
 * Errors are {"error","detail"} answers with the messages of
 * docs/api.md; 503s carry Retry-After: 1.
 *
 * The caller keeps its own answer type: the router writes answers only
 * through the caller's pd_fwd_ops (local answer, error, relay, reset).
 *
 * Threads and ownership: a pd_fwd is shared by the HTTP threads; it
 * borrows the worker and the peer pool (both outlive it). A pd_fwd_req
 * and everything it points to are borrowed for the call.
 */
#ifndef PD_FORWARD_H
#define PD_FORWARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "peer.h"
#include "worker.h"

#define PD_FWD_MAX_HOPS 2

typedef struct {
    pd_worker *w;                   /* borrowed */
    pd_peer_pool *pool;             /* borrowed */
    _Atomic int64_t last_log_ms;    /* forward failures: one log line per second */
} pd_fwd;

/* How the caller answers; `out` is the caller's answer object. */
typedef struct {
    /* the local answer: the owner's (stale 0) or a warm copy's (stale 1) */
    void (*local)(void *ctx, int32_t p, int stale, void *out);
    /* an error answer {"error": error, "detail": detail}; retry: Retry-After: 1 */
    void (*error)(void *ctx, void *out, int status, const char *error, const char *detail, int retry);
    /* takes over a peer's answer: its status, body (moved out of fr) and Retry-After */
    void (*relay)(void *ctx, void *out, pd_peer_resp *fr);
    /* forgets what an earlier attempt put into out (before a replica answers) */
    void (*reset)(void *ctx, void *out);
    /* the status of the answer in out */
    int (*status)(void *ctx, const void *out);
} pd_fwd_ops;

typedef struct {
    const pd_fwd_ops *ops;
    void *ctx;                  /* passed to ops */
    const char *user;           /* decoded user id, ulen bytes */
    size_t ulen;
    const char *suffix;         /* path after the user id: "" (profile), "/rank", "/affinities" */
    const char *qs;             /* query string to forward, or NULL */
    const char *method;         /* NULL: GET; else sent with body[0..blen) */
    const char *body;
    size_t blen;
    int idempotent;             /* a non-GET request that only reads (may be retried) */
    int internal;               /* the /internal/ form */
    int hops;                   /* X-Profiled-Hops */
    int stale_ok;               /* X-Profiled-Stale-Ok: 1 (internal form) */
    const char *what;           /* for the log: "profile query", "scoring request" */
} pd_fwd_req;

void pd_fwd_init(pd_fwd *f, pd_worker *w, pd_peer_pool *pool);

/* Answers rq into out by the rules above (always writes an answer). */
void pd_fwd_route(pd_fwd *f, const pd_fwd_req *rq, void *out);

#endif

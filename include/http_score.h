/*
 * http_score.h -- the scoring routes of the REST API, without civetweb
 * (http.c dispatches to them, reads the request body and sends the
 * answer):
 *   POST /v1/profiles/{user_id}/rank         rank candidates (body: JSON)
 *   GET  /v1/profiles/{user_id}/affinities   the values the user favours
 *   POST|GET /internal/v1/profiles/{user_id}/rank|affinities
 *        the forwarded forms: local state only (an owner, or a replica
 *        when the peer accepts a stale copy), never forwarded again
 * The model and the answers: score.h, docs/scoring.md, docs/api.md.
 *
 * Routing is the profile query's: the owner of murmur2(user) answers;
 * any other worker forwards (through peer.c: the same deadline, hop
 * counter, cluster token) -- the POST with its body -- and falls back to
 * a replica (answering "stale": true) when the owner is unknown,
 * unreachable or restoring. A replica without any event of the user in
 * the range answers 503 (it cannot tell a new user from one it has not
 * replicated yet), as the profile query does.
 *
 * Threads and ownership: one pd_score_api per HTTP server, shared by its
 * threads; it borrows the worker and the peer pool (both outlive it). An
 * answer's body belongs to the caller (pd_buf_free).
 */
#ifndef PD_HTTP_SCORE_H
#define PD_HTTP_SCORE_H

#include "peer.h"
#include "worker.h"

typedef struct pd_score_api pd_score_api;

typedef struct {
    int status;
    pd_buf body;            /* JSON: the answer, or {"error","detail"} */
    char retry_after[16];   /* "" = none */
} pd_score_answer;

/* One request, decoded by http.c. */
typedef struct {
    const char *user;       /* decoded, validated user id */
    size_t ulen;
    int internal;           /* the /internal/ form */
    int hops;               /* X-Profiled-Hops */
    int stale_ok;           /* X-Profiled-Stale-Ok: 1 (internal form only) */
    const char *qs;         /* affinities: the query string (may be NULL) */
    const char *body;       /* rank: the request body, blen bytes */
    size_t blen;
} pd_score_call;

pd_score_api *pd_score_api_new(pd_worker *w, pd_peer_pool *pool);
void pd_score_api_free(pd_score_api *a);

void pd_score_api_rank(pd_score_api *a, const pd_score_call *c, pd_score_answer *out);
void pd_score_api_affinities(pd_score_api *a, const pd_score_call *c, pd_score_answer *out);

#endif

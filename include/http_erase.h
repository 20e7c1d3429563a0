/*
 * http_erase.h -- the erasure routes of the REST API, without civetweb
 * (http.c dispatches to them and sends the answer):
 *   DELETE /v1/profiles/{user_id}        -> 202 {"user_id","partition","offset","status"}
 *   GET /v1/erasures?partition=P&offset=O -> {"partition","offset","applied","committed_offset"}
 *   GET /internal/v1/erasures?...         the owner's local answer (never forwarded)
 * See erase.h for the record and docs/api.md for the contract.
 *
 * Threads and ownership: one pd_erase_api per HTTP server, shared by its
 * threads; it borrows the worker and the peer pool (both outlive it) and
 * owns its producer, created on the first DELETE (a worker that never gets
 * one opens no producer). An answer's body belongs to the caller
 * (pd_buf_free).
 */
#ifndef PD_HTTP_ERASE_H
#define PD_HTTP_ERASE_H

#include "peer.h"
#include "worker.h"

typedef struct pd_erase_api pd_erase_api;

typedef struct {
    int status;
    pd_buf body;            /* JSON: the answer, or {"error","detail"} */
    char retry_after[16];   /* "" = none */
    char location[128];     /* "" = none */
} pd_erase_answer;

pd_erase_api *pd_erase_api_new(pd_worker *w, pd_peer_pool *pool);
void pd_erase_api_free(pd_erase_api *a);

/* DELETE of a decoded, validated user id. */
void pd_erase_api_delete(pd_erase_api *a, const char *user, size_t ulen, pd_erase_answer *out);
/* GET erasures with query string qs; internal: the peer form (local only);
 * hops: X-Profiled-Hops of the request. */
void pd_erase_api_status(pd_erase_api *a, const char *qs, int internal, int hops, pd_erase_answer *out);

#endif

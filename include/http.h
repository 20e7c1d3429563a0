/*
 * http.h -- the REST API (civetweb): public /v1/ routes, ops endpoints and
 * internal peer endpoints; query forwarding to partition owners.
 */
#ifndef PD_HTTP_H
#define PD_HTTP_H

#include "worker.h"

typedef struct pd_http pd_http;

/* Starts listening on w->cfg->listen. When the port is 0 the bound port is
 * used; w->advertise is set to cfg->advertise or "http://<host>:<port>". */
int pd_http_start(pd_http **out, pd_worker *w, char *err, size_t errlen);
/* Port actually bound. */
int pd_http_port(const pd_http *h);
/* Stops accepting, waits for in-flight requests, frees. NULL is a no-op. */
void pd_http_stop(pd_http *h);

#endif

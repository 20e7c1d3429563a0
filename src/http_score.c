/*
 * http_score.c -- the scoring routes (see http_score.h; the model:
 * score.h and docs/scoring.md).
 *
 * A request is parsed first, wherever it arrives (a bad body is a 400 from
 * the first worker, never forwarded). The owner of the user's partition
 * answers from one read of the user's days (pd_store_get_profile_range,
 * like the profile query) and the worker's current population prior
 * (pd_population_acquire: never waits for peers; "prior" in the answer
 * says how old and how complete it is). Other workers forward:
 *   POST <owner>/internal/v1/profiles/<user>/rank  (the body as received)
 *   GET  <owner>/internal/v1/profiles/<user>/affinities?<query>
 * with X-Profiled-Hops: hops + 1 and the cluster token, and relay the
 * owner's status, body and Retry-After. When the owner is unknown,
 * unreachable or restoring, a worker holding a warm copy answers with
 * "stale": true (this one, or a holder asked with X-Profiled-Stale-Ok).
 * This is the routing of the profile query (http.c, profile_forward and
 * try_replicas) for requests that carry a body; it lives here because
 * http.c's copy is tied to the profile answer.
 *
 * The prior is the answering worker's: an owner and a replica may score
 * against priors of different ages (each answer names its own).
 */
#include "http_score.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "members.h"
#include "metrics.h"
#include "population.h"
#include "query.h"
#include "score.h"

#define SCORE_MAX_HOPS 2

struct pd_score_api {
    pd_worker *w;
    pd_peer_pool *pool;
    _Atomic int64_t last_log_ms; /* forward failures: one log line per second */
};

pd_score_api *pd_score_api_new(pd_worker *w, pd_peer_pool *pool)
{
    pd_score_api *a = pd_calloc(1, sizeof *a);
    a->w = w;
    a->pool = pool;
    return a;
}

void pd_score_api_free(pd_score_api *a)
{
    pd_free(a);
}

static void answer_error(pd_score_answer *o, int status, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void answer_error(pd_score_answer *o, int status, const char *error, const char *fmt, ...)
{
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    o->status = status;
    o->body.len = 0;
    pd_buf_json_error(&o->body, error, detail);
    snprintf(o->retry_after, sizeof o->retry_after, "%s", status == 503 ? "1" : "");
}

/* A parsed request of either route. */
typedef struct {
    int rank;             /* 1: rank (req), 0: affinities (aff) */
    pd_score_req req;
    pd_score_aff aff;
} sc_request;

static const pd_query *req_query(const sc_request *r)
{
    return r->rank ? &r->req.q : &r->aff.q;
}

/* ------------------------------------------------------------------ */
/* the local answer                                                     */
/* ------------------------------------------------------------------ */

static void answer_local(pd_score_api *a, const sc_request *r, const pd_score_call *c, int32_t p, int stale,
                         pd_score_answer *out)
{
    pd_worker *w = a->w;
    const pd_query *q = req_query(r);
    pd_store_range rg = {0};
    pd_population_view pv;
    memset(&pv, 0, sizeof pv);
    int have_pv = 0;
    pd_query_day qd_s[64], *qd = qd_s;
    pd_score_model *m = NULL;
    char err[256];
    int rc = pd_store_get_profile_range(w->store, NULL, q->from_day, q->to_day, p, c->user, c->ulen, &rg, err,
                                        sizeof err);
    if (rc != PD_OK) {
        pd_error("http: partition %d: reading profile for scoring: %s", (int)p, err);
        answer_error(out, 500, "internal error", "logged on %s", w->cfg->id);
        goto out;
    }
    if (rg.n > (int)(sizeof qd_s / sizeof qd_s[0])) qd = pd_malloc((size_t)rg.n * sizeof *qd);
    for (int i = 0; i < rg.n; i++) qd[i] = (pd_query_day){rg.days[i], &rg.profs[i]};
    if (pd_population_acquire(w, q->from_day, q->to_day, &pv) != PD_OK) {
        answer_error(out, 500, "internal error", "population prior unavailable on %s", w->cfg->id);
        goto out;
    }
    have_pv = 1;
    /* the contract gives days in [from, to]; keep the model's input exact */
    int np0 = 0, np = pv.ndays;
    while (np0 < np && pv.days[np0].day < q->from_day) np0++;
    while (np > np0 && pv.days[np - 1].day > q->to_day) np--;
    const int *sdims = r->rank ? r->req.sdims : r->aff.q.dims;
    int nsd = r->rank ? r->req.nsd : r->aff.q.ndims;
    int all[PD_MAX_DIMS];
    if (!r->rank && nsd == 0) {
        for (int i = 0; i < w->schema->ndims; i++) all[i] = i;
        sdims = all;
        nsd = w->schema->ndims;
    }
    m = pd_score_model_new(w->schema, q, sdims, nsd, qd, rg.n, pv.days + np0, np - np0);
    if (stale && !pd_score_model_has_events(m)) {
        /* A replica cannot tell "no such user" from "not replicated yet":
         * never a silent cold start from a copy. */
        answer_error(out, 503, "partition unavailable",
                     "partition %d: owner unavailable and the replica on %s has no events for this user", (int)p,
                     w->cfg->id);
        goto out;
    }
    pd_score_prior prior = {.age_s = pv.age_s, .parts_covered = pv.parts_covered,
                            .parts_total = pv.parts_total, .ndays = np - np0};
    out->body.len = 0;
    pd_buf_reserve(&out->body, r->rank ? 64 + (size_t)r->req.nitems * 48 : 4096);
    if (r->rank)
        pd_score_render_rank(&r->req, m, w->schema, c->user, c->ulen, p, &prior, &out->body);
    else
        pd_score_render_affinities(&r->aff, m, w->schema, c->user, c->ulen, p, &prior, &out->body);
    PD_BUF_LIT(&out->body, ",\"served_by\":");
    pd_buf_json_str(&out->body, w->cfg->id, strlen(w->cfg->id));
    if (stale) {
        int64_t hw = atomic_load(&w->parts[p].high_watermark), no = atomic_load(&w->parts[p].next_offset);
        pd_buf_printf(&out->body, ",\"stale\":true,\"lag\":%lld}",
                      (long long)(hw >= 0 && no >= 0 && hw > no ? hw - no : 0));
    } else {
        PD_BUF_LIT(&out->body, ",\"stale\":false}");
    }
    out->status = 200;
    out->retry_after[0] = '\0';
out:
    pd_score_model_free(m);
    if (have_pv) pd_population_release(&pv);
    if (qd != qd_s) pd_free(qd);
    pd_store_range_free(&rg);
}

/* ------------------------------------------------------------------ */
/* forwarding                                                           */
/* ------------------------------------------------------------------ */

/* Sends the request to url's internal route. PD_OK when a response was
 * relayed into out, else an error with err set (out untouched). */
static int forward_to(pd_score_api *a, const char *url, const sc_request *r, const pd_score_call *c, int stale_ok,
                      pd_score_answer *out, char *err, size_t errlen)
{
    pd_worker *w = a->w;
    pd_buf pq = {0}, hdrs = {0};
    pd_peer_resp fr = {0};
    pd_peer_url u;
    int rc = pd_peer_url_parse(url, &u);
    if (rc != PD_OK) {
        pd_seterr(err, errlen, rc, "unsupported peer URL");
        goto out;
    }
    PD_BUF_LIT(&pq, "/internal/v1/profiles/");
    pd_pct_encode(&pq, c->user, c->ulen);
    if (r->rank) {
        PD_BUF_LIT(&pq, "/rank");
    } else {
        PD_BUF_LIT(&pq, "/affinities");
        if (c->qs && *c->qs) pd_buf_printf(&pq, "?%s", c->qs);
    }
    pd_buf_printf(&hdrs, "X-Profiled-Hops: %d\r\nAccept: application/json\r\n", c->hops + 1);
    const char *tok = pd_config_cluster_token(w->cfg);
    if (tok) pd_buf_printf(&hdrs, "Authorization: Bearer %s\r\n", tok);
    if (stale_ok) PD_BUF_LIT(&hdrs, "X-Profiled-Stale-Ok: 1\r\n");
    pd_peer_req rq = {.path_query = pq.p, .headers = hdrs.p,
                      .deadline_us = pd_mono_us() + w->cfg->forward_timeout_ms * 1000};
    if (r->rank) {
        rq.method = "POST";
        rq.body = c->body;
        rq.body_len = c->blen;
        rq.idempotent = 1; /* ranking only reads */
    }
    rc = pd_peer_get(a->pool, &u, &rq, &fr, err, errlen);
    if (rc == PD_OK && fr.status == 503 && stale_ok)
        rc = pd_seterr(err, errlen, PD_EAGAIN, "replica at %s has no usable copy", url);
    if (rc == PD_OK) {
        if (w->metrics) PD_INC(w->metrics->forwarded);
        out->status = fr.status;
        pd_buf_free(&out->body);
        out->body = fr.body;
        memset(&fr.body, 0, sizeof fr.body);
        snprintf(out->retry_after, sizeof out->retry_after, "%s", fr.retry_after);
    }
out:
    if (rc != PD_OK && w->metrics) PD_INC(w->metrics->forward_errors);
    pd_buf_free(&fr.body);
    pd_buf_free(&pq);
    pd_buf_free(&hdrs);
    return rc;
}

/* A warm copy answers (this worker's, else another holder's): PD_OK when
 * answered. */
static int try_replicas(pd_score_api *a, const sc_request *r, const pd_score_call *c, int32_t p,
                        pd_score_answer *out)
{
    pd_worker *w = a->w;
    pd_partstate *ps = &w->parts[p];
    if (atomic_load(&ps->replica) && !atomic_load(&ps->restoring) && atomic_load(&ps->committed) >= 0) {
        answer_local(a, r, c, p, 1, out);
        return PD_OK;
    }
    if (!w->members) return PD_ENOTFOUND;
    pd_holder hs[8];
    int n = pd_members_holders(w->members, p, hs, 8);
    char err[256];
    for (int i = 0; i < n; i++) {
        if (strcmp(hs[i].url, w->advertise) == 0) continue;
        if (forward_to(a, hs[i].url, r, c, 1, out, err, sizeof err) == PD_OK) return PD_OK;
    }
    return PD_ENOTFOUND;
}

static void route(pd_score_api *a, const sc_request *r, const pd_score_call *c, pd_score_answer *out)
{
    pd_worker *w = a->w;
    if (!c->internal && c->hops >= SCORE_MAX_HOPS) {
        answer_error(out, 508, "forwarding loop", "request already forwarded %d times", c->hops);
        return;
    }
    if (w->nparts <= 0 || !w->parts) {
        answer_error(out, 503, "partition unavailable", "input topic partition count not known yet");
        return;
    }
    int32_t p = pd_partition_for(c->user, c->ulen, w->nparts);
    pd_partstate *ps = &w->parts[p];
    if (atomic_load(&ps->owned) && atomic_load(&ps->ready)) {
        answer_local(a, r, c, p, 0, out);
        return;
    }
    if (c->internal) {
        if (c->stale_ok && atomic_load(&ps->replica) && !atomic_load(&ps->restoring) &&
            atomic_load(&ps->committed) >= 0) {
            answer_local(a, r, c, p, 1, out);
            return;
        }
        answer_error(out, 503, "partition unavailable", "partition %d is not %s on %s", (int)p,
                     atomic_load(&ps->owned) ? "ready" : "owned", w->cfg->id);
        return;
    }
    if (atomic_load(&ps->owned)) {
        if (try_replicas(a, r, c, p, out) == PD_OK) return;
        answer_error(out, 503, "partition restoring", "partition %d is being restored on %s", (int)p, w->cfg->id);
        return;
    }
    pd_owner o;
    if (!w->members || pd_members_owner(w->members, p, &o) != PD_OK || strcmp(o.url, w->advertise) == 0) {
        if (try_replicas(a, r, c, p, out) == PD_OK) return;
        answer_error(out, 503, "partition unavailable", "partition %d: owner unknown", (int)p);
        return;
    }
    char err[256] = "";
    if (forward_to(a, o.url, r, c, 0, out, err, sizeof err) == PD_OK) {
        /* the owner may itself be restoring (503): then a replica answers */
        if (out->status != 503 || try_replicas(a, r, c, p, out) == PD_OK) return;
        answer_error(out, 503, "partition restoring",
                     "partition %d: owner %s is restoring it and no replica answered", (int)p, o.id);
        return;
    }
    int64_t now = pd_now_ms(), last = atomic_load(&a->last_log_ms);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&a->last_log_ms, &last, now))
        pd_warn("http: forward of a scoring request of partition %d to %s (%s) failed: %s", (int)p, o.id, o.url,
                err);
    if (try_replicas(a, r, c, p, out) == PD_OK) return;
    answer_error(out, 503, "partition unavailable", "partition %d: owner %s unreachable", (int)p, o.id);
}

/* ------------------------------------------------------------------ */
/* the routes                                                           */
/* ------------------------------------------------------------------ */

void pd_score_api_rank(pd_score_api *a, const pd_score_call *c, pd_score_answer *out)
{
    pd_worker *w = a->w;
    sc_request r;
    memset(&r, 0, sizeof r);
    r.rank = 1;
    char err[512] = "";
    int64_t today = pd_tz_day(&w->tz, pd_now_ms());
    int rc = pd_score_parse_rank(&r.req, c->body, c->blen, w->schema, today, w->cfg->retention_days,
                                 (int)w->cfg->rank_max_items, err, sizeof err);
    if (rc != PD_OK) {
        answer_error(out, 400, "bad request", "%s", err);
        return;
    }
    route(a, &r, c, out);
    pd_score_req_free(&r.req);
}

void pd_score_api_affinities(pd_score_api *a, const pd_score_call *c, pd_score_answer *out)
{
    pd_worker *w = a->w;
    sc_request r;
    memset(&r, 0, sizeof r);
    char err[512] = "";
    int64_t today = pd_tz_day(&w->tz, pd_now_ms());
    if (pd_score_parse_affinities(&r.aff, c->qs, w->schema, today, w->cfg->retention_days, err, sizeof err) !=
        PD_OK) {
        answer_error(out, 400, "bad request", "%s", err);
        return;
    }
    route(a, &r, c, out);
}

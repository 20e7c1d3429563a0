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
 * This is the profile query's routing: one mechanism, forward.c, with
 * this module's answers (answer_local, the error shape) as its callbacks.
 *
 * The prior is the answering worker's: an owner and a replica may score
 * against priors of different ages (each answer names its own). The
 * population's half of the model (score.h pd_score_pop: its days merged
 * with the request's range, decay and types/weights) is cached with the
 * prior (pd_population_derived_*), keyed by pd_score_pop_key: the first
 * request of a key after each refresh merges, the others share it.
 * Concurrent first requests may each merge; the first to offer its copy
 * wins and the others drop theirs.
 */
#include "http_score.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "members.h"
#include "metrics.h"
#include "population.h"
#include "quarantine.h"
#include "query.h"
#include "score.h"

struct pd_score_api {
    pd_worker *w;
    pd_fwd fwd;          /* the routing of per-user requests, on the HTTP server's peer pool */
};

pd_score_api *pd_score_api_new(pd_worker *w, pd_peer_pool *pool)
{
    pd_score_api *a = pd_calloc(1, sizeof *a);
    a->w = w;
    pd_fwd_init(&a->fwd, w, pool);
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
    pd_score_pop *pop = NULL;
    int free_pop = 0;
    char err[256];
    int rc = pd_store_get_profile_range(w->store, NULL, q->from_day, q->to_day, p, c->user, c->ulen, &rg, err,
                                        sizeof err);
    if (rc != PD_OK) {
        if (rc == PD_ECORRUPT) pd_quarantine_found(w, p, err);
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
    /* the population's half: merged once per prior and key (days, their
     * weights, types/weights), then shared (population.h) */
    pd_buf key = {0};
    pd_score_pop_key(w->schema, q, pv.days + np0, np - np0, &key);
    pop = pd_population_derived_get(&pv, key.p, key.len);
    if (pop) {
        if (w->metrics) PD_INC(w->metrics->pop_cache[0]);
    } else {
        pop = pd_score_pop_new(w->schema, q, pv.days + np0, np - np0);
        pop = pd_population_derived_put(&pv, key.p, key.len, pop, pd_score_pop_free_any, &free_pop);
        if (w->metrics) PD_INC(w->metrics->pop_cache[free_pop ? 2 : 1]);
    }
    pd_buf_free(&key);
    m = pd_score_model_new_pop(w->schema, q, sdims, nsd, qd, rg.n, pop);
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
    if (free_pop) pd_score_pop_free(pop);
    if (have_pv) pd_population_release(&pv);
    if (qd != qd_s) pd_free(qd);
    pd_store_range_free(&rg);
}

/* ------------------------------------------------------------------ */
/* routing (forward.h)                                                  */
/* ------------------------------------------------------------------ */

typedef struct {
    pd_score_api *a;
    const sc_request *r;
    const pd_score_call *c;
} sc_ctx;

static void fwd_local(void *ctx, int32_t p, int stale, void *out)
{
    sc_ctx *x = ctx;
    answer_local(x->a, x->r, x->c, p, stale, out);
}

static void fwd_error(void *ctx, void *out, int status, const char *error, const char *detail, int retry)
{
    pd_score_answer *o = out;
    o->status = status;
    o->body.len = 0;
    pd_buf_json_error(&o->body, error, detail);
    snprintf(o->retry_after, sizeof o->retry_after, "%s", retry ? "1" : "");
}

static void fwd_relay(void *ctx, void *out, pd_peer_resp *fr)
{
    pd_score_answer *o = out;
    o->status = fr->status;
    pd_buf_free(&o->body);
    o->body = fr->body;
    memset(&fr->body, 0, sizeof fr->body);
    snprintf(o->retry_after, sizeof o->retry_after, "%s", fr->retry_after);
}

static void fwd_reset(void *ctx, void *out)
{
    pd_score_answer *o = out;
    o->status = 500;
    o->body.len = 0;
    o->retry_after[0] = '\0';
}

static int fwd_status(void *ctx, const void *out)
{
    return ((const pd_score_answer *)out)->status;
}

static const pd_fwd_ops score_ops = {fwd_local, fwd_error, fwd_relay, fwd_reset, fwd_status};

static void route(pd_score_api *a, const sc_request *r, const pd_score_call *c, pd_score_answer *out)
{
    sc_ctx x = {a, r, c};
    pd_fwd_req rq = {.ops = &score_ops, .ctx = &x, .user = c->user, .ulen = c->ulen,
                     .suffix = r->rank ? "/rank" : "/affinities", .qs = r->rank ? NULL : c->qs,
                     .method = r->rank ? "POST" : NULL, .body = r->rank ? c->body : NULL,
                     .blen = r->rank ? c->blen : 0, .idempotent = r->rank, /* ranking only reads */
                     .internal = c->internal, .hops = c->hops, .stale_ok = c->stale_ok,
                     .what = "scoring request"};
    pd_fwd_route(&a->fwd, &rq, out);
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

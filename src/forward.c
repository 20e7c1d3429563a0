/*
 * forward.c -- routing a per-user request to its partition's owner, with
 * warm copies as the fallback (forward.h states the rules). It was two
 * copies before (http.c for the profile query, http_score.c for rank and
 * affinities); this is the one.
 */
#include "forward.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "members.h"
#include "metrics.h"

void pd_fwd_init(pd_fwd *f, pd_worker *w, pd_peer_pool *pool)
{
    f->w = w;
    f->pool = pool;
    atomic_store(&f->last_log_ms, 0);
}

static void fwd_error(const pd_fwd_req *rq, void *out, int status, const char *error, int retry, const char *fmt,
                      ...) __attribute__((format(printf, 6, 7)));
static void fwd_error(const pd_fwd_req *rq, void *out, int status, const char *error, int retry, const char *fmt,
                      ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    rq->ops->error(rq->ctx, out, status, error, detail, retry);
}

/* Sends rq to url's internal route (stale_ok: asks a replica for its warm
 * copy). PD_OK when a response was relayed into out, else an error with
 * err set (out untouched). */
static int forward_to(pd_fwd *f, const char *url, const pd_fwd_req *rq, int stale_ok, void *out, char *err,
                      size_t errlen)
{
    pd_worker *w = f->w;
    pd_buf pq = {0}, hdrs = {0};
    pd_peer_resp fr = {0};
    pd_peer_url u;
    int rc = pd_peer_url_parse(url, &u);
    if (rc != PD_OK) {
        pd_seterr(err, errlen, rc, "unsupported peer URL");
        goto out;
    }
    PD_BUF_LIT(&pq, "/internal/v1/profiles/");
    pd_pct_encode(&pq, rq->user, rq->ulen);
    if (rq->suffix) pd_buf_puts(&pq, rq->suffix);
    if (rq->qs && *rq->qs) pd_buf_printf(&pq, "?%s", rq->qs);
    pd_buf_printf(&hdrs, "X-Profiled-Hops: %d\r\nAccept: application/json\r\n", rq->hops + 1);
    const char *tok = pd_config_cluster_token(w->cfg);
    if (tok) pd_buf_printf(&hdrs, "Authorization: Bearer %s\r\n", tok);
    if (stale_ok) PD_BUF_LIT(&hdrs, "X-Profiled-Stale-Ok: 1\r\n");
    pd_peer_req prq = {.path_query = pq.p, .headers = hdrs.p,
                       .deadline_us = pd_mono_us() + w->cfg->forward_timeout_ms * 1000,
                       .method = rq->method, .body = rq->body, .body_len = rq->blen,
                       .idempotent = rq->idempotent};
    rc = pd_peer_get(f->pool, &u, &prq, &fr, err, errlen);
    if (rc == PD_OK && fr.status == 503 && stale_ok)
        rc = pd_seterr(err, errlen, PD_EAGAIN, "replica at %s has no usable copy", url);
    if (rc == PD_OK) {
        if (w->metrics) PD_INC(w->metrics->forwarded);
        rq->ops->relay(rq->ctx, out, &fr);
    }
out:
    if (rc != PD_OK && w->metrics) PD_INC(w->metrics->forward_errors);
    pd_buf_free(&fr.body);
    pd_buf_free(&pq);
    pd_buf_free(&hdrs);
    return rc;
}

/* A warm copy of p answers (this worker's, else another holder's):
 * PD_OK when answered. Whatever an earlier attempt put into out goes. */
static int try_replicas(pd_fwd *f, int32_t p, const pd_fwd_req *rq, void *out)
{
    pd_worker *w = f->w;
    rq->ops->reset(rq->ctx, out);
    pd_partstate *ps = &w->parts[p];
    if (atomic_load(&ps->replica) && !atomic_load(&ps->restoring) && atomic_load(&ps->committed) >= 0) {
        rq->ops->local(rq->ctx, p, 1, out);
        return PD_OK;
    }
    if (!w->members) return PD_ENOTFOUND;
    pd_holder hs[8];
    int n = pd_members_holders(w->members, p, hs, 8);
    char err[256];
    for (int i = 0; i < n; i++) {
        if (strcmp(hs[i].url, w->advertise) == 0) continue;
        if (forward_to(f, hs[i].url, rq, 1, out, err, sizeof err) == PD_OK) return PD_OK;
    }
    return PD_ENOTFOUND;
}

void pd_fwd_route(pd_fwd *f, const pd_fwd_req *rq, void *out)
{
    pd_worker *w = f->w;
    if (!rq->internal && rq->hops >= PD_FWD_MAX_HOPS) {
        fwd_error(rq, out, 508, "forwarding loop", 0, "request already forwarded %d times", rq->hops);
        return;
    }
    if (w->nparts <= 0 || !w->parts) {
        fwd_error(rq, out, 503, "partition unavailable", 1, "input topic partition count not known yet");
        return;
    }
    int32_t p = pd_partition_for(rq->user, rq->ulen, w->nparts);
    pd_partstate *ps = &w->parts[p];
    if (atomic_load(&ps->owned) && atomic_load(&ps->ready)) {
        rq->ops->local(rq->ctx, p, 0, out);
        return;
    }
    if (rq->internal) {
        /* A peer asks. Owners answer above; a replica answers only when the
         * peer accepts a stale copy; nobody forwards again. */
        if (rq->stale_ok && atomic_load(&ps->replica) && !atomic_load(&ps->restoring) &&
            atomic_load(&ps->committed) >= 0) {
            rq->ops->local(rq->ctx, p, 1, out);
            return;
        }
        fwd_error(rq, out, 503, "partition unavailable", 1, "partition %d is not %s on %s", (int)p,
                  atomic_load(&ps->owned) ? "ready" : "owned", w->cfg->id);
        return;
    }
    if (atomic_load(&ps->owned)) {
        /* Restoring here: a copy elsewhere may answer (stale), else 503. */
        if (try_replicas(f, p, rq, out) == PD_OK) return;
        fwd_error(rq, out, 503, "partition restoring", 1, "partition %d is being restored on %s", (int)p,
                  w->cfg->id);
        return;
    }
    pd_owner o;
    if (!w->members || pd_members_owner(w->members, p, &o) != PD_OK) {
        if (try_replicas(f, p, rq, out) == PD_OK) return;
        if (w->metrics) PD_INC(w->metrics->forward_errors);
        fwd_error(rq, out, 503, "partition unavailable", 1, "partition %d: owner unknown", (int)p);
        return;
    }
    if (strcmp(o.url, w->advertise) == 0) {
        /* The map names us but we do not own it: rebalance in flight. */
        if (try_replicas(f, p, rq, out) == PD_OK) return;
        fwd_error(rq, out, 503, "partition unavailable", 1,
                  "partition %d: owner map names this worker (%s) but it is not assigned here", (int)p, o.id);
        return;
    }
    char err[256] = "";
    if (forward_to(f, o.url, rq, 0, out, err, sizeof err) == PD_OK) {
        /* The owner may itself be restoring (503): then a replica answers. */
        if (rq->ops->status(rq->ctx, out) != 503 || try_replicas(f, p, rq, out) == PD_OK) return;
        fwd_error(rq, out, 503, "partition restoring", 1,
                  "partition %d: owner %s is restoring it and no replica answered", (int)p, o.id);
        return;
    }
    int64_t now = pd_now_ms(), last = atomic_load(&f->last_log_ms);
    if (now - last >= 1000 && atomic_compare_exchange_strong(&f->last_log_ms, &last, now))
        pd_warn("http: forward of a %s of partition %d to %s (%s) failed: %s", rq->what ? rq->what : "request",
                (int)p, o.id, o.url, err);
    if (try_replicas(f, p, rq, out) == PD_OK) return;
    /* the owner's URL and the cause go to the log (above, at most once a
     * second), not to public clients */
    fwd_error(rq, out, 503, "partition unavailable", 1, "partition %d: owner %s unreachable", (int)p, o.id);
}

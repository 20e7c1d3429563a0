/*
 * population.c -- the cluster-wide population prior (issue 20): its cache,
 * the thread that refreshes it, and the two HTTP routes
 * (population.h; design in docs/architecture.md, "Population prior").
 *
 * Stored state (not here): each owner writes, per partition and day, the
 * population profile of that partition-day (every accepted event of every
 * user, population schema) in the same WriteBatch as the user deltas and
 * the checkpoint (batch.c, store_write.c). Replicas and replays compute
 * the same bytes, hand-off snapshots carry them, retention drops them
 * with their day, erasures leave them alone.
 *
 * The cache. The refresh thread keeps one COPY per partition: the
 * partition's population days as decoded profiles, the checkpoint offset
 * they are at least as new as, where they came from and when they were
 * last confirmed. Every population_refresh it collects candidates:
 *   - local: every partition this worker owns and has ready, or holds as a
 *     warm replica (a replica's state is an exact prefix of the log too),
 *     read from one store snapshot; the offset is the partition's
 *     committed checkpoint read BEFORE the snapshot (a lower bound);
 *   - peers: one GET /internal/v1/population per live peer (every holder
 *     the membership map knows, deduplicated by id), which answers the
 *     same for its local partitions (binary, below).
 * Per partition the candidate with the highest offset wins (ties: local,
 * then the first answer); a copy whose offset did not change is kept as
 * it is (the state at an offset is a function of the log: same bytes),
 * and a held copy is never replaced by an older one (a copy still
 * catching up after a rebuild; its age then grows until a source reaches
 * the held offset -- after the topic itself was recreated with lower
 * offsets, restart the workers to drop the held copies).
 * A partition without any candidate this time keeps its previous copy and
 * its older confirmation time. Each partition thus contributes exactly
 * one copy: no double counting when ownership moves between or during
 * fetches, and the last prior survives peers that are down.
 *
 * The prior: per day, the merge (pd_profile_merge, population schema) of
 * the copies' profiles of that day -- exact for the same reason user
 * profiles are (merge is associative and commutative, capped catsets
 * included). It is rebuilt only when some copy changed, as an immutable,
 * reference-counted object that readers (pd_population_acquire) pin; the
 * age (now - the oldest confirmation of a copy in it) and the coverage
 * travel in a small published header next to it.
 *
 * Internal wire format (GET /internal/v1/population, application/octet-stream):
 *   "PDPOP001" | schema fingerprint u64 BE | population cap u32 BE
 *   | partitions of the topic u32 BE | n u32 BE
 *   | n x ( partition u32 BE | owner u8 | offset i64 BE | ndays u32 BE
 *           | ndays x ( day i64 BE | len u32 BE | encoded profile ) )
 * Days ascending. A malformed answer, another schema or cap, is refused
 * whole (counted as a refresh failure of that peer).
 *
 * Threads and ownership: pd_population is owned by the worker (created by
 * pd_population_start, freed by pd_population_stop). The copies belong to
 * the refresh thread alone (refresh_now from tests runs under the same
 * refresh lock); the published prior is swapped under `lock`; a view holds
 * one reference to its prior.
 */
#include "population.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "members.h"
#include "metrics.h"
#include "peer.h"
#include "quarantine.h"
#include "score.h"
#include "store.h"
#include "util.h"

#define POP_MAGIC "PDPOP001"
#define POP_MAX_PEERS 256

/* One partition's population days. */
typedef struct {
    int have;               /* a copy is held */
    int64_t offset;         /* its state is at least at this checkpoint */
    int64_t confirmed_ms;   /* last refresh that found it (epoch ms) */
    int n;
    int64_t *days;
    pd_profile *profs;      /* population schema */
} pop_copy;

/* A value derived from a prior (pd_population_derived_*): owned by it. */
typedef struct {
    char *key;
    size_t klen;
    void *val;
    void (*free_fn)(void *);
} pop_derived;

/* The published prior: immutable once published (its cache of derived
 * values aside, which has its own lock). */
typedef struct {
    _Atomic int refs;
    int n;
    int64_t *days;
    pd_profile *profs;
    pthread_mutex_t dlock;  /* guards nderived, derived */
    int nderived, maxderived; /* maxderived: population_cache_keys when built */
    pop_derived *derived;
} pop_prior;

struct pd_population {
    pd_worker *w;
    const pd_schema *ps;    /* the store's population schema */
    pd_peer_pool *pool;
    pthread_t th;
    int started;
    pthread_mutex_t lock;   /* guards cur, oldest_ms, covered, stop; cond */
    pthread_cond_t cond;
    int stop;
    pop_prior *cur;         /* NULL: no refresh yet */
    int64_t oldest_ms;
    int32_t covered, total;
    pthread_mutex_t refresh_lock; /* one refresh at a time */
    int32_t ncopies;
    pop_copy *copies;       /* ncopies (= partitions when last refreshed) */
};

/* ------------------------------------------------------------------ */
/* copies and priors                                                   */

static void copy_clear(pop_copy *c)
{
    for (int i = 0; i < c->n; i++) pd_profile_free(&c->profs[i]);
    pd_free(c->profs);
    pd_free(c->days);
    memset(c, 0, sizeof *c);
}

static void prior_unref(pop_prior *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    for (int i = 0; i < p->nderived; i++) { /* before the profiles they borrow */
        p->derived[i].free_fn(p->derived[i].val);
        pd_free(p->derived[i].key);
    }
    pd_free(p->derived);
    pthread_mutex_destroy(&p->dlock);
    for (int i = 0; i < p->n; i++) pd_profile_free(&p->profs[i]);
    pd_free(p->profs);
    pd_free(p->days);
    pd_free(p);
}

/* Appends day `day` (ascending) to c, returning its profile (empty). */
static pd_profile *copy_add_day(pop_copy *c, const pd_schema *ps, int64_t day)
{
    c->days = pd_realloc(c->days, (size_t)(c->n + 1) * sizeof *c->days);
    c->profs = pd_realloc(c->profs, (size_t)(c->n + 1) * sizeof *c->profs);
    c->days[c->n] = day;
    pd_profile_init(&c->profs[c->n], ps);
    return &c->profs[c->n++];
}

/* Reads partition p's population days from snap into c (emptied first). */
static int read_local(pd_store *st, pd_store_snap *snap, const int64_t *days, int nd, int32_t p,
                      const pd_schema *ps, pop_copy *c, char *err, size_t errlen)
{
    copy_clear(c);
    pd_profile tmp;
    pd_profile_init(&tmp, ps);
    int rc = PD_OK;
    for (int i = 0; i < nd; i++) {
        pd_profile_clear(&tmp);
        rc = pd_store_get_profile(st, snap, days[i], p, "", 0, &tmp, err, errlen);
        if (rc == PD_ENOTFOUND) {
            rc = PD_OK;
            continue;
        }
        if (rc) break;
        pd_profile *d = copy_add_day(c, ps, days[i]);
        pd_profile_merge(d, &tmp);
    }
    pd_profile_free(&tmp);
    if (rc) copy_clear(c);
    return rc;
}

/* The local partitions a worker offers: owned and ready, or a warm
 * replica with a checkpoint. *owner: 1 for the former. */
static int local_source(pd_worker *w, int32_t p, int *owner)
{
    pd_partstate *s = &w->parts[p];
    if (atomic_load(&s->owned) && atomic_load(&s->ready)) {
        *owner = 1;
        return atomic_load(&s->committed) >= 0;
    }
    *owner = 0;
    return atomic_load(&s->replica) && !atomic_load(&s->restoring) && atomic_load(&s->committed) >= 0;
}

/* ------------------------------------------------------------------ */
/* the internal route: encoding                                        */

static void put_u32(pd_buf *b, uint32_t v)
{
    uint8_t x[4];
    pd_put_u32be(x, v);
    pd_buf_append(b, x, 4);
}

static void put_u64(pd_buf *b, uint64_t v)
{
    uint8_t x[8];
    pd_put_u64be(x, v);
    pd_buf_append(b, x, 8);
}

/* Encodes this worker's local partitions (see the wire format). */
static int encode_local(pd_worker *w, const pd_schema *ps, pd_buf *out, char *err, size_t errlen)
{
    pd_store *st = w->store;
    pd_buf_append(out, POP_MAGIC, 8);
    put_u64(out, w->schema->fingerprint);
    put_u32(out, ps->max_values);
    put_u32(out, (uint32_t)w->nparts);
    const size_t count_at = out->len;
    put_u32(out, 0);
    uint32_t n = 0;
    int64_t *days = NULL;
    int nd = 0;
    int64_t *offs = pd_malloc((size_t)(w->nparts > 0 ? w->nparts : 1) * sizeof *offs);
    char *own = pd_calloc((size_t)(w->nparts > 0 ? w->nparts : 1), 1);
    for (int32_t p = 0; p < w->nparts; p++) {
        int o = 0;
        offs[p] = local_source(w, p, &o) ? atomic_load(&w->parts[p].committed) : -1;
        own[p] = (char)o;
    }
    /* offsets first, then the snapshot: the state is at least that new */
    pd_store_snap *snap = pd_store_snap_acquire(st);
    int rc = pd_store_list_days(st, &days, &nd);
    pop_copy c = {0};
    for (int32_t p = 0; rc == PD_OK && p < w->nparts; p++) {
        if (offs[p] < 0) continue;
        if ((rc = read_local(st, snap, days, nd, p, ps, &c, err, errlen)) != PD_OK) {
            if (rc == PD_ECORRUPT) pd_quarantine_found(w, p, err);
            break;
        }
        put_u32(out, (uint32_t)p);
        pd_buf_putc(out, (char)own[p]);
        put_u64(out, (uint64_t)offs[p]);
        put_u32(out, (uint32_t)c.n);
        for (int i = 0; i < c.n; i++) {
            put_u64(out, (uint64_t)c.days[i]);
            const size_t len_at = out->len;
            put_u32(out, 0);
            pd_profile_encode(&c.profs[i], out);
            pd_put_u32be((uint8_t *)out->p + len_at, (uint32_t)(out->len - len_at - 4));
        }
        n++;
    }
    copy_clear(&c);
    pd_store_snap_release(st, snap);
    pd_free(days);
    pd_free(offs);
    pd_free(own);
    pd_put_u32be((uint8_t *)out->p + count_at, n);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the refresh                                                         */

/* A candidate copy of one partition found in this refresh. */
typedef struct {
    int found;
    int64_t offset;
    int same;               /* offset equals the held copy's: keep it */
    pop_copy c;
} pop_cand;

/* Offers candidate (offset, copy in *c, taken over) for p. */
static void offer(pd_population *pp, pop_cand *cands, int32_t p, int64_t offset, pop_copy *c)
{
    pop_cand *k = &cands[p];
    if (k->found && offset <= k->offset) {
        copy_clear(c);
        return;
    }
    copy_clear(&k->c);
    k->found = 1;
    k->offset = offset;
    k->same = pp->copies[p].have && pp->copies[p].offset == offset;
    k->c = *c;
    memset(c, 0, sizeof *c);
}

typedef struct {
    const uint8_t *p;
    size_t n, pos;
} rd;

static int rd_need(rd *r, size_t k) { return r->n - r->pos >= k ? 0 : -1; }
static uint32_t rd_u32(rd *r) { uint32_t v = pd_get_u32be(r->p + r->pos); r->pos += 4; return v; }
static uint64_t rd_u64(rd *r) { uint64_t v = pd_get_u64be(r->p + r->pos); r->pos += 8; return v; }

/* Parses a peer's answer and offers its partitions. Nothing is offered
 * unless the whole answer is valid. */
static int parse_peer(pd_population *pp, pop_cand *cands, const pd_buf *body, char *err, size_t errlen)
{
    pd_worker *w = pp->w;
    rd r = {(const uint8_t *)body->p, body->len, 0};
    if (rd_need(&r, 28) || memcmp(r.p, POP_MAGIC, 8) != 0)
        return pd_seterr(err, errlen, PD_ECORRUPT, "not a population answer");
    r.pos = 8;
    uint64_t fp = rd_u64(&r);
    uint32_t cap = rd_u32(&r), np = rd_u32(&r), n = rd_u32(&r);
    if (fp != w->schema->fingerprint || cap != pp->ps->max_values)
        return pd_seterr(err, errlen, PD_EINVAL, "peer has another schema or population_max_values (%u)", cap);
    if ((int32_t)np != w->nparts)
        return pd_seterr(err, errlen, PD_EINVAL, "peer sees %u partitions, this worker %d", np, (int)w->nparts);
    int32_t *ps_ = pd_malloc((size_t)(n ? n : 1) * sizeof *ps_);
    int64_t *offs = pd_malloc((size_t)(n ? n : 1) * sizeof *offs);
    pop_copy *cs = pd_calloc(n ? n : 1, sizeof *cs);
    int rc = PD_OK;
    char e2[256];
    for (uint32_t i = 0; i < n && rc == PD_OK; i++) {
        if (rd_need(&r, 17)) { rc = pd_seterr(err, errlen, PD_ECORRUPT, "truncated"); break; }
        uint32_t p = rd_u32(&r);
        r.pos++; /* owner flag: informational */
        int64_t off = (int64_t)rd_u64(&r);
        uint32_t nd = rd_u32(&r);
        if (p >= np || off < 0 || (i > 0 && (int32_t)p <= ps_[i - 1])) {
            rc = pd_seterr(err, errlen, PD_ECORRUPT, "bad partition record");
            break;
        }
        ps_[i] = (int32_t)p;
        offs[i] = off;
        for (uint32_t d = 0; d < nd; d++) {
            if (rd_need(&r, 12)) { rc = pd_seterr(err, errlen, PD_ECORRUPT, "truncated"); break; }
            int64_t day = (int64_t)rd_u64(&r);
            uint32_t len = rd_u32(&r);
            if (rd_need(&r, len) || (cs[i].n && day <= cs[i].days[cs[i].n - 1])) {
                rc = pd_seterr(err, errlen, PD_ECORRUPT, "bad day record");
                break;
            }
            pd_profile *pr = copy_add_day(&cs[i], pp->ps, day);
            if (pd_profile_decode(pr, r.p + r.pos, len, e2, sizeof e2) != PD_OK) {
                rc = pd_seterr(err, errlen, PD_ECORRUPT, "partition %u: %s", p, e2);
                break;
            }
            r.pos += len;
        }
    }
    if (rc == PD_OK && r.pos != r.n) rc = pd_seterr(err, errlen, PD_ECORRUPT, "trailing bytes");
    for (uint32_t i = 0; i < n; i++) {
        if (rc == PD_OK) offer(pp, cands, ps_[i], offs[i], &cs[i]);
        else copy_clear(&cs[i]);
    }
    pd_free(cs);
    pd_free(offs);
    pd_free(ps_);
    return rc;
}

/* Asks every live peer once. Returns the failures. */
static int ask_peers(pd_population *pp, pop_cand *cands)
{
    pd_worker *w = pp->w;
    if (!w->members) return 0;
    /* the peers: every other holder of some partition */
    typedef struct { char id[130]; char url[256]; } peer;
    peer *peers = pd_calloc(POP_MAX_PEERS, sizeof *peers);
    int np = 0;
    pd_holder hs[16];
    for (int32_t p = 0; p < w->nparts; p++) {
        int k = pd_members_holders(w->members, p, hs, 16);
        for (int i = 0; i < k; i++) {
            if (strcmp(hs[i].id, w->cfg->id) == 0) continue;
            int dup = 0;
            for (int j = 0; j < np && !dup; j++) dup = strcmp(peers[j].id, hs[i].id) == 0;
            if (dup || np == POP_MAX_PEERS) continue;
            memcpy(peers[np].id, hs[i].id, sizeof peers[np].id);
            memcpy(peers[np].url, hs[i].url, sizeof peers[np].url);
            peers[np].id[sizeof peers[np].id - 1] = '\0';
            peers[np].url[sizeof peers[np].url - 1] = '\0';
            np++;
        }
    }
    int fails = 0;
    pd_buf hdrs = {0};
    PD_BUF_LIT(&hdrs, "Accept: application/octet-stream\r\n");
    const char *tok = pd_config_cluster_token(w->cfg);
    if (tok) pd_buf_printf(&hdrs, "Authorization: Bearer %s\r\n", tok);
    for (int i = 0; i < np; i++) {
        pd_peer_url u;
        pd_peer_resp fr = {0};
        char err[256] = "";
        int rc = pd_peer_url_parse(peers[i].url, &u);
        if (rc == PD_OK) {
            pd_peer_req rq = {.path_query = "/internal/v1/population", .headers = hdrs.p,
                              .deadline_us = pd_mono_us() + w->cfg->forward_timeout_ms * 1000 * 4};
            rc = pd_peer_get(pp->pool, &u, &rq, &fr, err, sizeof err);
            if (rc == PD_OK && fr.status != 200)
                rc = pd_seterr(err, sizeof err, PD_EIO, "status %d", fr.status);
            if (rc == PD_OK) rc = parse_peer(pp, cands, &fr.body, err, sizeof err);
        } else {
            snprintf(err, sizeof err, "unsupported peer URL");
        }
        if (rc != PD_OK) {
            fails++;
            pd_warn("population: peer %s: %s (its partitions keep their last copy)", peers[i].id, err);
        }
        pd_buf_free(&fr.body);
    }
    pd_buf_free(&hdrs);
    pd_free(peers);
    return fails;
}

/* Sums the held copies per day into a new prior. */
static pop_prior *build_prior(pd_population *pp)
{
    pop_prior *pr = pd_calloc(1, sizeof *pr);
    atomic_init(&pr->refs, 1);
    pthread_mutex_init(&pr->dlock, NULL);
    pr->maxderived = (int)pp->w->cfg->population_cache_keys;
    int cap = 0;
    for (int32_t p = 0; p < pp->ncopies; p++) {
        const pop_copy *c = &pp->copies[p];
        if (!c->have) continue;
        for (int i = 0; i < c->n; i++) {
            /* find or insert the day (few days: linear) */
            int j = 0;
            while (j < pr->n && pr->days[j] < c->days[i]) j++;
            if (j == pr->n || pr->days[j] != c->days[i]) {
                if (pr->n == cap) {
                    cap = cap ? 2 * cap : 64;
                    pr->days = pd_realloc(pr->days, (size_t)cap * sizeof *pr->days);
                    pr->profs = pd_realloc(pr->profs, (size_t)cap * sizeof *pr->profs);
                }
                memmove(pr->days + j + 1, pr->days + j, (size_t)(pr->n - j) * sizeof *pr->days);
                memmove(pr->profs + j + 1, pr->profs + j, (size_t)(pr->n - j) * sizeof *pr->profs);
                pr->days[j] = c->days[i];
                pd_profile_init(&pr->profs[j], pp->ps);
                pr->n++;
            }
            pd_profile_merge(&pr->profs[j], &c->profs[i]);
        }
    }
    return pr;
}

static void refresh(pd_population *pp)
{
    pd_worker *w = pp->w;
    pthread_mutex_lock(&pp->refresh_lock);
    const int32_t np = w->nparts;
    if (np <= 0 || !w->parts) {
        pthread_mutex_unlock(&pp->refresh_lock);
        return;
    }
    if (np != pp->ncopies) { /* first time, or the topic changed: start over */
        for (int32_t p = 0; p < pp->ncopies; p++) copy_clear(&pp->copies[p]);
        pd_free(pp->copies);
        pp->copies = pd_calloc((size_t)np, sizeof *pp->copies);
        pp->ncopies = np;
    }
    const int64_t now = pd_now_ms();
    pop_cand *cands = pd_calloc((size_t)np, sizeof *cands);
    int fails = 0;
    /* local partitions: offsets, then one snapshot */
    int64_t *offs = pd_malloc((size_t)np * sizeof *offs);
    for (int32_t p = 0; p < np; p++) {
        int o;
        offs[p] = local_source(w, p, &o) ? atomic_load(&w->parts[p].committed) : -1;
    }
    if (w->store) {
        pd_store_snap *snap = pd_store_snap_acquire(w->store);
        int64_t *days = NULL;
        int nd = 0;
        char err[256];
        int rc = pd_store_list_days(w->store, &days, &nd);
        for (int32_t p = 0; rc == PD_OK && p < np; p++) {
            if (offs[p] < 0) continue;
            if (pp->copies[p].have && pp->copies[p].offset == offs[p]) {
                pop_copy none = {0};
                offer(pp, cands, p, offs[p], &none); /* unchanged: no need to read */
                continue;
            }
            pop_copy c = {0};
            if ((rc = read_local(w->store, snap, days, nd, p, pp->ps, &c, err, sizeof err)) != PD_OK) {
                if (rc == PD_ECORRUPT) pd_quarantine_found(w, p, err);
                pd_warn("population: partition %d: %s", (int)p, err);
                fails++;
                break;
            }
            offer(pp, cands, p, offs[p], &c);
        }
        pd_free(days);
        pd_store_snap_release(w->store, snap);
    }
    pd_free(offs);
    fails += ask_peers(pp, cands);
    /* take the winners */
    int changed = pp->cur == NULL;
    int32_t covered = 0;
    int64_t oldest = now;
    for (int32_t p = 0; p < np; p++) {
        pop_cand *k = &cands[p];
        pop_copy *c = &pp->copies[p];
        if (k->found && c->have && k->offset < c->offset) {
            /* only an older state of it was found (a copy still catching
             * up, say): keep the newer one, unconfirmed */
        } else if (k->found) {
            if (!k->same) {
                copy_clear(c);
                *c = k->c;
                memset(&k->c, 0, sizeof k->c);
                c->have = 1;
                c->offset = k->offset;
                changed = 1;
            }
            c->confirmed_ms = now;
        }
        copy_clear(&k->c);
        if (c->have) {
            covered++;
            if (c->confirmed_ms < oldest) oldest = c->confirmed_ms;
        }
    }
    pd_free(cands);
    if (covered != pp->covered || np != pp->total)
        pd_info("population: the prior covers %d of %d partitions", (int)covered, (int)np);
    pop_prior *pr = changed ? build_prior(pp) : NULL;
    pthread_mutex_lock(&pp->lock);
    pop_prior *old = NULL;
    if (pr) {
        old = pp->cur;
        pp->cur = pr;
    }
    pp->oldest_ms = oldest;
    pp->covered = covered;
    pp->total = np;
    pthread_mutex_unlock(&pp->lock);
    prior_unref(old);
    if (w->metrics) {
        atomic_store(&w->metrics->pop_oldest_ms, oldest);
        atomic_store(&w->metrics->pop_covered, (uint64_t)covered);
        atomic_store(&w->metrics->pop_total, (uint64_t)np);
        PD_INC(w->metrics->pop_refreshes);
        for (int i = 0; i < fails; i++) PD_INC(w->metrics->pop_refresh_failures);
    }
    pthread_mutex_unlock(&pp->refresh_lock);
}

static void *refresh_main(void *arg)
{
    pd_population *pp = arg;
    pthread_mutex_lock(&pp->lock);
    while (!pp->stop) {
        pthread_mutex_unlock(&pp->lock);
        refresh(pp);
        pthread_mutex_lock(&pp->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + pp->w->cfg->population_refresh_ms * 1000000;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        while (!pp->stop && pthread_cond_timedwait(&pp->cond, &pp->lock, &ts) == 0) {
        }
    }
    pthread_mutex_unlock(&pp->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* public                                                              */

static pd_population *pop_new(pd_worker *w)
{
    pd_population *pp = pd_calloc(1, sizeof *pp);
    pp->w = w;
    pp->ps = pd_store_population_schema(w->store);
    pp->pool = pd_peer_pool_new();
    pthread_mutex_init(&pp->lock, NULL);
    pthread_mutex_init(&pp->refresh_lock, NULL);
    pthread_cond_init(&pp->cond, NULL);
    return pp;
}

int pd_population_start(pd_worker *w, char *err, size_t errlen)
{
    if (!w->store || !pd_store_population_schema(w->store))
        return pd_seterr(err, errlen, PD_EINVAL, "population: no store");
    pd_population *pp = pop_new(w);
    if (pthread_create(&pp->th, NULL, refresh_main, pp) != 0) {
        pd_population_stop(w);
        return pd_seterr(err, errlen, PD_EIO, "population: cannot start the refresh thread");
    }
    pp->started = 1;
    w->population = pp;
    return PD_OK;
}

void pd_population_stop(pd_worker *w)
{
    pd_population *pp = w->population;
    if (!pp) return;
    pthread_mutex_lock(&pp->lock);
    pp->stop = 1;
    pthread_cond_broadcast(&pp->cond);
    pthread_mutex_unlock(&pp->lock);
    if (pp->started) pthread_join(pp->th, NULL);
    w->population = NULL;
    prior_unref(pp->cur);
    for (int32_t p = 0; p < pp->ncopies; p++) copy_clear(&pp->copies[p]);
    pd_free(pp->copies);
    pd_peer_pool_free(pp->pool);
    pthread_mutex_destroy(&pp->lock);
    pthread_mutex_destroy(&pp->refresh_lock);
    pthread_cond_destroy(&pp->cond);
    pd_free(pp);
}

void pd_population_refresh_now(pd_worker *w)
{
    if (!w->population && w->store) {
        /* tests without the thread: a cache with no thread */
        w->population = pop_new(w);
    }
    if (w->population) refresh(w->population);
}

int pd_population_acquire(pd_worker *w, int64_t from_day, int64_t to_day, pd_population_view *out)
{
    memset(out, 0, sizeof *out);
    out->schema = w->store && pd_store_population_schema(w->store) ? pd_store_population_schema(w->store)
                                                                   : w->schema;
    out->age_s = -1;
    out->parts_total = w->nparts;
    pd_population *pp = w->population;
    if (!pp) return PD_OK;
    pthread_mutex_lock(&pp->lock);
    pop_prior *pr = pp->cur;
    if (pr) {
        atomic_fetch_add(&pr->refs, 1);
        out->age_s = (double)(pd_now_ms() - pp->oldest_ms) / 1000.0;
        if (out->age_s < 0) out->age_s = 0;
        out->parts_covered = pp->covered;
        out->parts_total = pp->total;
    }
    pthread_mutex_unlock(&pp->lock);
    if (!pr) return PD_OK;
    out->hold = pr;
    int k = 0;
    for (int i = 0; i < pr->n; i++) k += pr->days[i] >= from_day && pr->days[i] <= to_day;
    if (k) {
        out->days = pd_calloc((size_t)k, sizeof *out->days);
        for (int i = 0; i < pr->n; i++)
            if (pr->days[i] >= from_day && pr->days[i] <= to_day) {
                out->days[out->ndays].day = pr->days[i];
                out->days[out->ndays].prof = &pr->profs[i];
                out->ndays++;
            }
    }
    return PD_OK;
}

/* The derived value under key in the view's prior, or NULL; the caller
 * holds dlock. */
static pop_derived *derived_find(pop_prior *pr, const void *key, size_t klen)
{
    for (int i = 0; i < pr->nderived; i++)
        if (pr->derived[i].klen == klen && memcmp(pr->derived[i].key, key, klen) == 0) return &pr->derived[i];
    return NULL;
}

void *pd_population_derived_get(const pd_population_view *v, const void *key, size_t klen)
{
    pop_prior *pr = v->hold;
    if (!pr) return NULL;
    pthread_mutex_lock(&pr->dlock);
    pop_derived *d = derived_find(pr, key, klen);
    void *val = d ? d->val : NULL;
    pthread_mutex_unlock(&pr->dlock);
    return val;
}

void *pd_population_derived_put(const pd_population_view *v, const void *key, size_t klen, void *val,
                                void (*free_fn)(void *), int *caller_frees)
{
    pop_prior *pr = v->hold;
    *caller_frees = 1;
    if (!pr) return val;
    pthread_mutex_lock(&pr->dlock);
    pop_derived *d = derived_find(pr, key, klen);
    if (d) { /* another request built it first: one copy per key */
        void *kept = d->val;
        pthread_mutex_unlock(&pr->dlock);
        free_fn(val);
        *caller_frees = 0;
        return kept;
    }
    if (pr->nderived < pr->maxderived) {
        if (!pr->derived) pr->derived = pd_calloc((size_t)pr->maxderived, sizeof *pr->derived);
        char *k = pd_malloc(klen ? klen : 1);
        memcpy(k, key, klen);
        pr->derived[pr->nderived++] = (pop_derived){k, klen, val, free_fn};
        *caller_frees = 0;
    }
    pthread_mutex_unlock(&pr->dlock);
    return val;
}

void pd_population_release(pd_population_view *v)
{
    pd_free(v->days);
    prior_unref(v->hold);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                */

static void answer_error(pd_population_answer *a, int status, const char *error, const char *detail)
{
    a->status = status;
    a->ctype = "application/json";
    a->body.len = 0;
    pd_buf_json_error(&a->body, error, detail);
}

/* The prior fields of an answer: ,"prior":{...} (score.h's shape, as in
 * rank and affinities answers). */
static void put_prior(pd_buf *b, const pd_population_view *v)
{
    pd_score_prior pr = {.age_s = v->age_s, .parts_covered = v->parts_covered, .parts_total = v->parts_total,
                         .ndays = v->ndays};
    pd_buf_putc(b, ',');
    pd_score_put_prior(b, &pr);
}

void pd_population_http(pd_worker *w, const char *qs, int internal, pd_population_answer *a)
{
    memset(a, 0, sizeof *a);
    if (internal) {
        char err[256];
        if (!w->store || !pd_store_population_schema(w->store) || w->nparts <= 0 || !w->parts) {
            answer_error(a, 503, "unavailable", "population: partitions not known yet");
            return;
        }
        if (encode_local(w, pd_store_population_schema(w->store), &a->body, err, sizeof err) != PD_OK) {
            pd_error("population: encoding local partitions: %s", err);
            answer_error(a, 500, "internal error", "population: reading the store failed (see the log)");
            return;
        }
        a->status = 200;
        a->ctype = "application/octet-stream";
        return;
    }
    int64_t today = pd_tz_day(&w->tz, pd_now_ms());
    pd_query q;
    char err[512] = "";
    if (pd_query_parse_params(&q, qs ? qs : "", w->schema, today, w->cfg->retention_days, err,
                              sizeof err) != PD_OK) {
        answer_error(a, 400, "bad request", err);
        return;
    }
    if (q.recent >= 0) {
        answer_error(a, 400, "bad request", "parameter 'recent': the population keeps no recent items");
        return;
    }
    pd_population_view v;
    pd_population_acquire(w, q.from_day, q.to_day, &v);
    /* the same rendering as a profile (no events in range: an empty one) */
    int rc = pd_query_render(&q, v.schema, NULL, 0, -1, q.anchor_day, v.days, v.ndays, &a->body);
    if (rc != PD_OK) {
        pd_population_release(&v);
        answer_error(a, 500, "internal error", "population: rendering failed");
        return;
    }
    put_prior(&a->body, &v);
    PD_BUF_LIT(&a->body, ",\"served_by\":");
    pd_buf_json_str(&a->body, w->cfg->id, strlen(w->cfg->id));
    pd_buf_putc(&a->body, '}');
    pd_population_release(&v);
    a->status = 200;
    a->ctype = "application/json";
}

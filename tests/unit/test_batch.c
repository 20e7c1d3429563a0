/* test_batch.c -- the ingest batch (batch.c) against the pure profile
 * model: random events of a few partitions, days and users go into a
 * batch and, independently, are folded with pd_profile_add into one
 * profile per (partition, day, user) kept in a plain list. The batch's
 * sorted entries must come in store key order (compared here field by
 * field), and each entry's delta -- built from the event log, or encoded
 * straight from its one record -- must equal the model's profile and its
 * encoding. Then through the store: pd_batch_build + commit over several
 * rounds of a recycled batch, read back and compared with the model. */
#include "test.h"
#include "batch.h"
#include "event.h"
#include "profile.h"
#include "schema.h"
#include "store.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXKEYS 4096
#define DAY_MS 86400000LL
#define T0 1763800000000LL

/* The oracle: one model profile per (partition, day, user). */
typedef struct {
    int32_t p;
    int64_t day;
    char user[64];
    size_t ulen;
    pd_profile prof;
    int events_this_round;
    int dropped;
} mkey;

typedef struct {
    mkey k[MAXKEYS];
    int n;
} model;

static mkey *model_get(model *m, const pd_schema *s, int32_t p, int64_t day, const char *u, size_t ul)
{
    for (int i = 0; i < m->n; i++)
        if (m->k[i].p == p && m->k[i].day == day && m->k[i].ulen == ul && memcmp(m->k[i].user, u, ul) == 0)
            return &m->k[i];
    if (m->n == MAXKEYS) return NULL;
    mkey *k = &m->k[m->n++];
    memset(k, 0, sizeof *k);
    k->p = p;
    k->day = day;
    memcpy(k->user, u, ul);
    k->ulen = ul;
    pd_profile_init(&k->prof, s);
    return k;
}

static void model_free(model *m)
{
    for (int i = 0; i < m->n; i++) pd_profile_free(&m->k[i].prof);
    m->n = 0;
}

static uint32_t rnd_next(uint32_t *r)
{
    *r = *r * 1103515245u + 12345u;
    return *r >> 8;
}

/* A random valid event JSON of user number < users in buf; numbers are integers so
 * sums are exact whatever the grouping. */
static int random_event(char *buf, size_t cap, uint32_t *r, int users, int days)
{
    static const char *makes[] = {"bmw", "audi", "fiat", "vw", "kia"};
    static const char *types[] = {"view", "search", "contact", "favourite"};
    int u = (int)(rnd_next(r) % (uint32_t)users);
    int64_t ts = T0 + (int64_t)(rnd_next(r) % (uint32_t)days) * DAY_MS + (int64_t)(rnd_next(r) % 3600000u);
    /* users with a long common prefix: their keys tie on the first 24 bytes */
    const char *prefix = u % 2 ? "u-" : "user-with-a-long-shared-prefix-";
    int n = snprintf(buf, cap, "{\"user_id\":\"%s%d\",\"ts\":%" PRId64 ",\"type\":\"%s\",\"item\":{", prefix,
                     u, ts, types[rnd_next(r) % 4]);
    int first = 1;
    if (rnd_next(r) % 3) {
        n += snprintf(buf + n, cap - (size_t)n, "\"make\":\"%s\"", makes[rnd_next(r) % 5]);
        first = 0;
    }
    if (rnd_next(r) % 2) {
        n += snprintf(buf + n, cap - (size_t)n, "%s\"price\":%u", first ? "" : ",", rnd_next(r) % 90000 + 1000);
        first = 0;
    }
    if (rnd_next(r) % 4 == 0)
        n += snprintf(buf + n, cap - (size_t)n, "%s\"color\":\"c%u\"", first ? "" : ",", rnd_next(r) % 7);
    n += snprintf(buf + n, cap - (size_t)n, "}}");
    return n;
}

/* Feeds nev random events into b and the model; returns the number fed. */
static int feed(pd_batch *b, model *m, const pd_schema *s, const pd_tz *tz, uint32_t *r, int nev, int parts,
                int users, int days)
{
    int fed = 0;
    for (int i = 0; i < nev; i++) {
        char js[512], err[128];
        int len = random_event(js, sizeof js, r, users, days);
        pd_event ev;
        if (pd_event_parse(&ev, s, js, (size_t)len, 4096, err, sizeof err) != PD_EV_OK) {
            CHECK(!"random event parses");
            pd_event_free(&ev);
            continue;
        }
        int32_t p = (int32_t)(rnd_next(r) % (uint32_t)parts);
        int64_t day = pd_tz_day(tz, ev.ts_ms);
        mkey *k = model_get(m, s, p, day, ev.user_id, ev.user_id_len);
        if (k) {
            pd_profile_add(&k->prof, &ev);
            k->events_this_round++;
            pd_batch_add(b, p, day, &ev);
            fed++;
        }
        pd_event_free(&ev);
    }
    return fed;
}

/* Store key order, written out: day, partition, then user bytes with the
 * shorter first on a common prefix. */
static int key_cmp(const pd_batch_entry *a, const pd_batch_entry *b)
{
    if (a->day != b->day) return a->day < b->day ? -1 : 1;
    if (a->partition != b->partition) return a->partition < b->partition ? -1 : 1;
    size_t n = a->ulen < b->ulen ? a->ulen : b->ulen;
    int c = memcmp(a->user, b->user, n);
    if (c) return c;
    return a->ulen < b->ulen ? -1 : a->ulen > b->ulen;
}

static int buf_eq(const pd_buf *a, const pd_buf *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

TEST(batch_build_matches_profile_model)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    pd_tz tz;
    char err[256];
    CHECK_INT(pd_tz_parse(&tz, "UTC", err, sizeof err), PD_OK);
    static model m;
    pd_batch b;
    pd_batch_init(&b, NULL);
    b.population = 0; /* user entries only here: population_any_grouping_same_bytes has the rest */
    pd_profile built;
    pd_profile_init(&built, &s);
    pd_event sev;
    memset(&sev, 0, sizeof sev);
    sev.nattrs = s.ndims;
    pd_buf e1 = {0}, e2 = {0};
    uint32_t r = 7;
    int bad = 0;
    /* rounds of different shapes: many single-event entries, few busy ones */
    const int shapes[][4] = {{3000, 4, 2000, 3}, {3000, 2, 40, 2}, {200, 1, 5, 1}, {2500, 8, 300, 5}};
    for (int round = 0; round < 4; round++) {
        const int *sh = shapes[round];
        int fed = feed(&b, &m, &s, &tz, &r, sh[0], sh[1], sh[2], sh[3]);
        CHECK_INT(b.events, fed);
        int live = 0;
        for (int i = 0; i < m.n; i++) live += m.k[i].events_this_round > 0;
        size_t n = pd_batch_sort(&b);
        CHECK_INT(n, live);
        CHECK_INT(pd_batch_entries(&b), live);
        for (size_t i = 0; i < n; i++) {
            const pd_batch_entry *e = pd_batch_sorted_at(&b, i);
            if (i > 0 && key_cmp(pd_batch_sorted_at(&b, i - 1), e) >= 0 && bad++ < 5) CHECK(!"sorted in key order");
            mkey *k = model_get(&m, &s, e->partition, e->day, e->user, e->ulen);
            if (!k || k->events_this_round == 0) {
                if (bad++ < 5) CHECK(!"entry in the model");
                continue;
            }
            pd_batch_entry_build(&b, e, &built, &sev);
            e1.len = e2.len = 0;
            pd_profile_encode(&built, &e1);
            pd_profile_encode(&k->prof, &e2);
            if ((!pd_profile_equal(&built, &k->prof) || !buf_eq(&e1, &e2)) && bad++ < 5)
                CHECK(!"built delta == pd_profile_add of the entry's events");
            if (e->head == e->tail) { /* one event: the direct encoding */
                CHECK_INT(k->events_this_round, 1);
                pd_batch_decode(&b, e->head, &sev);
                e1.len = 0;
                pd_profile_encode_event(&s, &sev, &e1);
                if (!buf_eq(&e1, &e2) && bad++ < 5) CHECK(!"encode_event == encode of the model");
            }
        }
        CHECK_INT(bad, 0);
        /* dropping partitions keeps exactly the others' entries */
        char only[8] = {0};
        only[0] = 1;
        int keep = 0;
        for (int i = 0; i < m.n; i++) keep += m.k[i].events_this_round > 0 && m.k[i].p != 0;
        pd_batch_drop_parts(&b, only);
        CHECK_INT(pd_batch_entries(&b), keep);
        n = pd_batch_sort(&b);
        for (size_t i = 0; i < n; i++) {
            const pd_batch_entry *e = pd_batch_sorted_at(&b, i);
            mkey *k = model_get(&m, &s, e->partition, e->day, e->user, e->ulen);
            pd_batch_entry_build(&b, e, &built, &sev);
            if ((e->partition == 0 || !pd_profile_equal(&built, &k->prof)) && bad++ < 5)
                CHECK(!"kept entry intact after dropping partition 0");
        }
        pd_batch_clear(&b);
        CHECK_INT(pd_batch_entries(&b), 0);
        CHECK_INT(b.events, 0);
        model_free(&m);
    }
    pd_buf_free(&e1);
    pd_buf_free(&e2);
    pd_profile_free(&built);
    pd_batch_free(&b);
}

/* pd_batch_build through the store: rounds of one recycled batch, each
 * committed; every stored (partition, day, user) profile must equal the
 * model's fold of all its events over the rounds. */
TEST(batch_build_commits_the_model)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/batch-store", pd_test_tmpdir());
    pd_schema s;
    pd_schema_default(&s, 64);
    pd_tz tz;
    CHECK_INT(pd_tz_parse(&tz, "UTC", err, sizeof err), PD_OK);
    pd_store *st = NULL;
    pd_store_opts so = {0};
    if (pd_store_open(&st, dir, &s, &so, err, sizeof err) != PD_OK) {
        CHECK(!"open store");
        return;
    }
    static model m;
    pd_batch b;
    pd_batch_init(&b, NULL);
    b.population = 0; /* user entries only here: population_any_grouping_same_bytes has the rest */
    pd_profile scratch, got;
    pd_profile_init(&scratch, &s);
    pd_profile_init(&got, &s);
    pd_store_batch *sb = pd_store_batch_new(st);
    uint32_t r = 99;
    uint64_t total_writes = 0;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < m.n; i++) m.k[i].events_this_round = 0;
        feed(&b, &m, &s, &tz, &r, 1500, 3, 400, 3);
        int live = 0;
        for (int i = 0; i < m.n; i++) live += m.k[i].events_this_round > 0;
        uint64_t writes = 0;
        CHECK_INT(pd_batch_build(&b, sb, &scratch, &writes, err, sizeof err), PD_OK);
        CHECK_INT(writes, live);
        total_writes += writes;
        CHECK_INT(pd_store_commit(st, sb, err, sizeof err), PD_OK);
        pd_batch_clear(&b);
    }
    CHECK(total_writes > 1000);
    int bad = 0;
    for (int i = 0; i < m.n; i++) {
        mkey *k = &m.k[i];
        pd_profile_reset(&got);
        int rc = pd_store_get_profile(st, NULL, k->day, k->p, k->user, k->ulen, &got, err, sizeof err);
        if ((rc != PD_OK || !pd_profile_equal(&got, &k->prof)) && bad++ < 5)
            CHECK(!"stored profile == model fold");
    }
    CHECK_INT(bad, 0);
    model_free(&m);
    pd_store_batch_free(sb);
    pd_profile_free(&scratch);
    pd_profile_free(&got);
    pd_batch_free(&b);
    pd_store_close(st);
}

/* Erasures between events (erase.h): the store after each commit equals the
 * model in which an erasure of (p, user) empties every day of that user and
 * later events count fresh. Few users and many commits, so keys collect
 * enough merges to be folded (FOLD_EVERY) in a batch that also erases them:
 * the fold's read of the stored value must not bring the erased state back,
 * and the deletes must come before the merges of the events after them. */
static void model_erase(model *m, pd_batch *b, int32_t p, const char *u, size_t ul)
{
    for (int i = 0; i < m->n; i++) {
        mkey *k = &m->k[i];
        if (k->p != p || k->ulen != ul || memcmp(k->user, u, ul) != 0) continue;
        pd_profile_clear(&k->prof);
        k->events_this_round = 0;
    }
    pd_batch_erase(b, p, u, ul);
}

TEST(batch_erase_commits_the_model)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/batch-erase-store", pd_test_tmpdir());
    pd_schema s;
    pd_schema_default(&s, 64);
    pd_tz tz;
    CHECK_INT(pd_tz_parse(&tz, "UTC", err, sizeof err), PD_OK);
    pd_store *st = NULL;
    pd_store_opts so = {0};
    if (pd_store_open(&st, dir, &s, &so, err, sizeof err) != PD_OK) {
        CHECK(!"open store");
        return;
    }
    static model m;
    pd_batch b;
    pd_batch_init(&b, NULL);
    b.population = 0; /* user entries only here: population_any_grouping_same_bytes has the rest */
    pd_profile scratch, got;
    pd_profile_init(&scratch, &s);
    pd_profile_init(&got, &s);
    pd_store_batch *sb = pd_store_batch_new(st);
    uint32_t r = 7;
    uint64_t erasures = 0;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < m.n; i++) m.k[i].events_this_round = 0;
        int nerase = 0;
        for (int chunk = 0; chunk < 4; chunk++) {
            feed(&b, &m, &s, &tz, &r, 60, 2, 24, 2);
            if (m.n && rnd_next(&r) % 2) {
                mkey *k = &m.k[rnd_next(&r) % (uint32_t)m.n];
                char u[64];
                memcpy(u, k->user, k->ulen);
                model_erase(&m, &b, k->p, u, k->ulen);
                nerase++;
            }
        }
        int live = 0;
        for (int i = 0; i < m.n; i++) live += m.k[i].events_this_round > 0;
        uint64_t writes = 0;
        CHECK_INT(pd_batch_build(&b, sb, &scratch, &writes, err, sizeof err), PD_OK);
        CHECK_INT(writes, live + nerase);
        erasures += (uint64_t)nerase;
        CHECK_INT(pd_store_commit(st, sb, err, sizeof err), PD_OK);
        pd_batch_clear(&b);
        int bad = 0;
        for (int i = 0; i < m.n; i++) {
            mkey *k = &m.k[i];
            pd_profile_reset(&got);
            int rc = pd_store_get_profile(st, NULL, k->day, k->p, k->user, k->ulen, &got, err, sizeof err);
            if (rc == PD_ENOTFOUND) pd_profile_reset(&got);
            if (((rc != PD_OK && rc != PD_ENOTFOUND) || !pd_profile_equal(&got, &k->prof)) && bad++ < 3)
                CHECK(!"stored profile == model with erasures");
        }
        CHECK_INT(bad, 0);
        if (bad) break;
    }
    CHECK(erasures > 20);
    CHECK(pd_store_batch_folds(sb) > 0); /* folds did happen around erasures */
    model_free(&m);
    pd_store_batch_free(sb);
    pd_profile_free(&scratch);
    pd_profile_free(&got);
    pd_batch_free(&b);
    pd_store_close(st);
}

/* ---- population (population.h, batch.h) ---- */

#define POP_EVENTS 4000
#define POP_PARTS 3
#define POP_CAP 4 /* below the 5 makes and 7 colours: the capped path is taken */

typedef struct {
    char js[512];
    int len;
    int32_t p;
    int erase_before; /* an erasure of a random user precedes this event */
    int32_t ep;
    char euser[32];
} pop_ev;

/* Feeds events idx[0..n) of evs into b, erasures included. */
static void pop_feed(pd_batch *b, const pd_schema *s, const pd_tz *tz, const pop_ev *evs, const int *idx, int n)
{
    char err[128];
    for (int i = 0; i < n; i++) {
        const pop_ev *x = &evs[idx[i]];
        if (x->erase_before) pd_batch_erase(b, x->ep, x->euser, strlen(x->euser));
        pd_event ev;
        if (pd_event_parse(&ev, s, x->js, (size_t)x->len, 4096, err, sizeof err) != PD_EV_OK) {
            CHECK(!"event parses");
            pd_event_free(&ev);
            continue;
        }
        pd_batch_add(b, x->p, pd_tz_day(tz, ev.ts_ms), &ev);
        pd_event_free(&ev);
    }
}

static int count_user_visit(void *arg, int64_t day, int32_t p, const char *u, size_t ul, const pd_profile *pr)
{
    (void)day; (void)p; (void)u; (void)pr;
    int *c = arg;
    c[0]++;
    if (ul == 0) c[1]++;
    return 0;
}

static int count_export(void *arg, char kind, int64_t day, const char *key, size_t klen, const char *val, size_t vlen)
{
    (void)day; (void)key; (void)val; (void)vlen;
    int *c = arg;
    if (kind == 'd' && klen == 0) c[0]++;
    return 0;
}

/* The population profile of every (partition, day) is a function of the
 * multiset of its accepted events alone: one batch in log order, many
 * batches of random sizes (operand chains, folds), shuffled order, and
 * erasures anywhere give byte-identical stored values, equal to
 * pd_profile_add of the events under the population schema (cap
 * population_max_values, here 4 so the heavy-hitter path is used); pure
 * merges of random groups in random order give the same bytes. Scans of
 * users never see the population key; hand-off exports carry it. */
TEST(population_any_grouping_same_bytes)
{
    char err[256];
    pd_schema s;
    pd_schema_default(&s, 64);
    pd_tz tz;
    CHECK_INT(pd_tz_parse(&tz, "UTC", err, sizeof err), PD_OK);
    static pop_ev evs[POP_EVENTS];
    uint32_t r = 4242;
    for (int i = 0; i < POP_EVENTS; i++) {
        evs[i].len = random_event(evs[i].js, sizeof evs[i].js, &r, 80, 3);
        evs[i].p = (int32_t)(rnd_next(&r) % POP_PARTS);
        evs[i].erase_before = rnd_next(&r) % 97 == 0;
        evs[i].ep = (int32_t)(rnd_next(&r) % POP_PARTS);
        snprintf(evs[i].euser, sizeof evs[i].euser, "u-%u", (unsigned)(rnd_next(&r) % 80));
    }
    int *idx = pd_malloc(POP_EVENTS * sizeof *idx);
    pd_store *st[3] = {0};
    char dirs[3][400];
    pd_buf ref[POP_PARTS][3], got = {0};
    memset(ref, 0, sizeof ref);
    const pd_schema *ps = NULL;
    for (int v = 0; v < 3; v++) {
        snprintf(dirs[v], sizeof dirs[v], "%s/pop-%d", pd_test_tmpdir(), v);
        pd_store_opts so = {.population_max_values = POP_CAP};
        if (pd_store_open(&st[v], dirs[v], &s, &so, err, sizeof err) != PD_OK) {
            CHECK(!"open store");
            return;
        }
        ps = pd_store_population_schema(st[v]);
        CHECK(ps && ps->max_values == POP_CAP);
        for (int i = 0; i < POP_EVENTS; i++) idx[i] = i;
        if (v == 2)
            for (int i = POP_EVENTS - 1; i > 0; i--) {
                int j = (int)(rnd_next(&r) % (uint32_t)(i + 1)), t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
            }
        pd_batch b;
        pd_batch_init(&b, NULL);
        pd_profile scratch;
        pd_profile_init(&scratch, &s);
        pd_store_batch *sb = pd_store_batch_new(st[v]);
        for (int at = 0; at < POP_EVENTS;) {
            int n = v == 0 ? POP_EVENTS : 1 + (int)(rnd_next(&r) % 150);
            if (at + n > POP_EVENTS) n = POP_EVENTS - at;
            pop_feed(&b, &s, &tz, evs, idx + at, n);
            uint64_t writes = 0;
            CHECK_INT(pd_batch_build(&b, sb, &scratch, &writes, err, sizeof err), PD_OK);
            CHECK_INT(pd_store_commit(st[v], sb, err, sizeof err), PD_OK);
            pd_batch_clear(&b);
            at += n;
        }
        pd_store_batch_free(sb);
        pd_profile_free(&scratch);
        pd_batch_free(&b);
    }
    /* the model: pd_profile_add of each partition-day's events, in log order */
    pd_profile pmod[POP_PARTS][3];
    for (int p = 0; p < POP_PARTS; p++)
        for (int d = 0; d < 3; d++) pd_profile_init(&pmod[p][d], ps);
    const int64_t day0 = pd_tz_day(&tz, T0);
    for (int i = 0; i < POP_EVENTS; i++) {
        pd_event ev;
        if (pd_event_parse(&ev, &s, evs[i].js, (size_t)evs[i].len, 4096, err, sizeof err) == PD_EV_OK) {
            int64_t d = pd_tz_day(&tz, ev.ts_ms) - day0;
            if (d >= 0 && d < 3) pd_profile_add(&pmod[evs[i].p][d], &ev);
        }
        pd_event_free(&ev);
    }
    int overflowed = 0;
    for (int p = 0; p < POP_PARTS; p++)
        for (int d = 0; d < 3; d++) {
            pd_profile_encode(&pmod[p][d], &ref[p][d]);
            for (int k = 0; k < ps->ndims; k++)
                if (ps->dims[k].type == PD_DIM_CATEGORICAL) overflowed += pmod[p][d].dims[k].cat.sk != NULL;
        }
    CHECK(overflowed > 0);
    pd_profile g;
    pd_profile_init(&g, ps);
    int bad = 0;
    for (int v = 0; v < 3; v++)
        for (int p = 0; p < POP_PARTS; p++)
            for (int d = 0; d < 3; d++) {
                pd_profile_reset(&g);
                int rc = pd_store_get_profile(st[v], NULL, day0 + d, p, "", 0, &g, err, sizeof err);
                got.len = 0;
                if (rc == PD_OK) pd_profile_encode(&g, &got);
                if ((rc != PD_OK || got.len != ref[p][d].len || memcmp(got.p, ref[p][d].p, got.len) != 0) &&
                    bad++ < 5)
                    CHECK(!"stored population == pd_profile_add of the partition-day's events (bytes)");
            }
    CHECK_INT(bad, 0);
    /* pure merges: 7 random groups, merged in a random order */
    for (int p = 0; p < POP_PARTS; p++) {
        pd_profile grp[7], acc;
        for (int k = 0; k < 7; k++) pd_profile_init(&grp[k], ps);
        pd_profile_init(&acc, ps);
        for (int i = 0; i < POP_EVENTS; i++) {
            pd_event ev;
            if (evs[i].p == p &&
                pd_event_parse(&ev, &s, evs[i].js, (size_t)evs[i].len, 4096, err, sizeof err) == PD_EV_OK &&
                pd_tz_day(&tz, ev.ts_ms) == day0)
                pd_profile_add(&grp[rnd_next(&r) % 7], &ev);
            pd_event_free(&ev);
        }
        int order[7] = {3, 6, 0, 5, 1, 4, 2};
        for (int k = 0; k < 7; k++) pd_profile_merge(&acc, &grp[order[k]]);
        got.len = 0;
        pd_profile_encode(&acc, &got);
        CHECK(got.len == ref[p][0].len && memcmp(got.p, ref[p][0].p, got.len) == 0);
        for (int k = 0; k < 7; k++) pd_profile_free(&grp[k]);
        pd_profile_free(&acc);
    }
    /* user scans skip it; exports carry it */
    int c[2] = {0, 0};
    CHECK_INT(pd_store_scan(st[1], INT64_MIN, -1, NULL, 0, count_user_visit, c, err, sizeof err), PD_OK);
    CHECK(c[0] > 0);
    CHECK_INT(c[1], 0);
    for (int p = 0; p < POP_PARTS; p++) {
        pd_store_batch *sb = pd_store_batch_new(st[1]);
        pd_store_batch_set_checkpoint(sb, p, 1, 0);
        CHECK_INT(pd_store_commit(st[1], sb, err, sizeof err), PD_OK);
        pd_store_batch_free(sb);
        pd_checkpoint cp;
        int e[1] = {0};
        CHECK_INT(pd_store_export_partition(st[1], p, &cp, count_export, e, err, sizeof err), PD_OK);
        CHECK_INT(e[0], 3);
    }
    /* the cap is recorded: another one is refused, 0 takes the recorded one */
    pd_store_close(st[0]);
    st[0] = NULL;
    pd_store_opts so5 = {.population_max_values = POP_CAP + 1}, so0 = {0};
    CHECK_INT(pd_store_open(&st[0], dirs[0], &s, &so5, err, sizeof err), PD_EINVAL);
    CHECK(strstr(err, "population_max_values") != NULL);
    CHECK_INT(pd_store_open(&st[0], dirs[0], &s, &so0, err, sizeof err), PD_OK);
    CHECK(st[0] && pd_store_population_schema(st[0])->max_values == POP_CAP);
    for (int p = 0; p < POP_PARTS; p++)
        for (int d = 0; d < 3; d++) {
            pd_profile_free(&pmod[p][d]);
            pd_buf_free(&ref[p][d]);
        }
    pd_profile_free(&g);
    pd_buf_free(&got);
    for (int v = 0; v < 3; v++) pd_store_close(st[v]);
    pd_free(idx);
}

/* ---- the population delta against the per-event model ---- */

#define PD_EVENTS 3000
#define PD_USERS 60

/* A random event of user u (JSON in buf). Users below 6 are "wide": users
 * 0..2 draw from 9 makes and 6 types, users 3..5 from 6 types but 2 makes,
 * so their days overflow the user caps (make max_values 3, event types 4;
 * 3..5 only the types) and their deltas are not exact; users 6..11 keep to
 * three makes (at the cap, still exact); the others are light.
 * Numbers are integers or halves: sums are exact in any grouping. */
static int pdm_event(char *buf, size_t cap, uint32_t *r, int u, int days, int seq)
{
    static const char *types[] = {"view", "park", "contact", "search", "share", "call"};
    int64_t ts = T0 + (int64_t)(rnd_next(r) % (uint32_t)days) * DAY_MS + (int64_t)(rnd_next(r) % 3600000u);
    const int wide = u < 6, at_cap = u >= 6 && u < 12;
    const char *type = types[rnd_next(r) % (wide ? 6u : 3u)];
    int n = snprintf(buf, cap, "{\"event_id\":\"e%d\",\"user_id\":\"pu-%d\",\"ts\":%" PRId64
                     ",\"type\":\"%s\",\"item\":{\"id\":\"it-%u\"", seq, u, ts, type, rnd_next(r) % 50);
    if (rnd_next(r) % 5) {
        unsigned mk = u < 3 ? rnd_next(r) % 9
                      : wide ? rnd_next(r) % 2
                      : at_cap ? (unsigned)u % 4 + rnd_next(r) % 3 : rnd_next(r) % 9;
        n += snprintf(buf + n, cap - (size_t)n, ",\"make\":\"m%u\"", mk);
    }
    if (rnd_next(r) % 3) n += snprintf(buf + n, cap - (size_t)n, ",\"color\":\"c%u\"", rnd_next(r) % 12);
    if (rnd_next(r) % 2)
        n += snprintf(buf + n, cap - (size_t)n, ",\"price\":%u.%u", rnd_next(r) % 30000, rnd_next(r) % 2 ? 5u : 0u);
    if (rnd_next(r) % 3) n += snprintf(buf + n, cap - (size_t)n, ",\"km\":%d", (int)(rnd_next(r) % 400) - 100);
    n += snprintf(buf + n, cap - (size_t)n, "}}");
    return n;
}

/* Counts the user-day deltas of one batch that are over a user cap (not
 * exact; over the types' cap alone) and at the make cap (exact, 3
 * makes): the paths the test must
 * take. evs[0..n) are one batch; s the user schema. */
static void pdm_shapes(const pop_ev *evs, int n, const pd_schema *s, const pd_tz *tz, int *over, int *types_only,
                       int *at)
{
    static model m;
    char err[128];
    for (int i = 0; i < n; i++) {
        pd_event ev;
        if (evs[i].erase_before) /* an erased user's later events make a fresh delta */
            for (int k = 0; k < m.n; k++)
                if (m.k[k].p == evs[i].ep && m.k[k].ulen == strlen(evs[i].euser) &&
                    memcmp(m.k[k].user, evs[i].euser, m.k[k].ulen) == 0)
                    pd_profile_clear(&m.k[k].prof);
        if (pd_event_parse(&ev, s, evs[i].js, (size_t)evs[i].len, 4096, err, sizeof err) == PD_EV_OK) {
            mkey *k = model_get(&m, s, evs[i].p, pd_tz_day(tz, ev.ts_ms), ev.user_id, ev.user_id_len);
            if (k) pd_profile_add(&k->prof, &ev);
        }
        pd_event_free(&ev);
    }
    for (int k = 0; k < m.n; k++) {
        const pd_profile *q = &m.k[k].prof;
        if (pd_catset_overflowed(&q->types) && !pd_catset_overflowed(&q->dims[0].cat)) ++*types_only;
        if (pd_catset_overflowed(&q->types) || pd_catset_overflowed(&q->dims[0].cat)) ++*over;
        else if (q->dims[0].cat.n == 3 && q->events > 1) ++*at;
    }
    model_free(&m);
}

/* The population delta pd_batch_build writes per (partition, day) -- built
 * from the user entries' deltas (merged when exact, events re-added when a
 * user cap overflowed) plus the events erasures took off user chains --
 * must be byte-identical to the old per-event path: pd_profile_add of every
 * accepted event of the partition-day, in log order, under the population
 * schema. Random events with per-type tracks (and their sub-profiles),
 * recent items, numeric dimensions, users over and at their caps,
 * erasures anywhere; one batch (the stored value is the delta itself) and
 * batches of random sizes (the merged operands); population caps above
 * every user cap and below them (the population overflows too). */
TEST(population_delta_matches_per_event_model)
{
    static const char *sj =
        "{\"dimensions\":[{\"name\":\"make\",\"type\":\"categorical\",\"max_values\":3},"
        "{\"name\":\"color\",\"type\":\"categorical\"},"
        "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[1000,5000,20000]},"
        "{\"name\":\"km\",\"type\":\"numeric\",\"buckets\":[0,10,100]}],"
        "\"tracked_types\":[\"park\",\"contact\"],"
        "\"recent\":{\"max\":3,\"attributes\":[\"make\",\"price\"]}}";
    char err[256];
    pd_schema s;
    if (pd_schema_load_json(&s, sj, strlen(sj), 4, err, sizeof err) != PD_OK) {
        printf("    schema: %s\n", err);
        CHECK(!"schema loads");
        return;
    }
    pd_tz tz;
    CHECK_INT(pd_tz_parse(&tz, "UTC", err, sizeof err), PD_OK);
    static pop_ev evs[PD_EVENTS];
    uint32_t r = 2718;
    int u = 0, left = 0;
    for (int i = 0; i < PD_EVENTS; i++) {
        /* sessions: a user's events come in runs, so most deltas hold several */
        if (left-- <= 0) {
            u = (int)(rnd_next(&r) % PD_USERS);
            left = (int)(rnd_next(&r) % (u < 12 ? 40u : 6u));
        }
        evs[i].len = pdm_event(evs[i].js, sizeof evs[i].js, &r, u, 2, i);
        evs[i].p = (int32_t)(u % 2);
        evs[i].erase_before = rnd_next(&r) % 61 == 0;
        const int eu = (int)(rnd_next(&r) % PD_USERS);
        evs[i].ep = (int32_t)(eu % 2);
        snprintf(evs[i].euser, sizeof evs[i].euser, "pu-%d", eu);
    }
    int over = 0, types_only = 0, at = 0;
    pdm_shapes(evs, PD_EVENTS, &s, &tz, &over, &types_only, &at);
    CHECK(over >= 6);
    CHECK(types_only >= 3);
    CHECK(at >= 3);
    int *idx = pd_malloc(PD_EVENTS * sizeof *idx);
    for (int i = 0; i < PD_EVENTS; i++) idx[i] = i;
    const int64_t day0 = pd_tz_day(&tz, T0);
    static const uint32_t pcaps[] = {10000, 4};
    int bad = 0, subs = 0, overflowed = 0;
    for (size_t ci = 0; ci < PD_ARRAY_LEN(pcaps); ci++) {
        for (int v = 0; v < 2; v++) {
            char dir[400];
            snprintf(dir, sizeof dir, "%s/popdelta-%zu-%d", pd_test_tmpdir(), ci, v);
            pd_store *st = NULL;
            pd_store_opts so = {.population_max_values = pcaps[ci]};
            if (pd_store_open(&st, dir, &s, &so, err, sizeof err) != PD_OK) {
                CHECK(!"open store");
                break;
            }
            const pd_schema *ps = pd_store_population_schema(st);
            pd_batch b;
            pd_batch_init(&b, NULL);
            pd_profile scratch;
            pd_profile_init(&scratch, &s);
            pd_store_batch *sb = pd_store_batch_new(st);
            for (int at_ = 0; at_ < PD_EVENTS;) {
                int n = v == 0 ? PD_EVENTS : 1 + (int)(rnd_next(&r) % 400);
                if (at_ + n > PD_EVENTS) n = PD_EVENTS - at_;
                pop_feed(&b, &s, &tz, evs, idx + at_, n);
                uint64_t writes = 0;
                CHECK_INT(pd_batch_build(&b, sb, &scratch, &writes, err, sizeof err), PD_OK);
                CHECK_INT(pd_store_commit(st, sb, err, sizeof err), PD_OK);
                pd_batch_clear(&b);
                at_ += n;
            }
            /* the old path: every event of the partition-day added, in log order */
            pd_profile model_p, got;
            pd_profile_init(&got, ps);
            pd_buf want = {0}, have = {0};
            for (int p = 0; p < 2; p++)
                for (int d = 0; d < 2; d++) {
                    pd_profile_init(&model_p, ps);
                    for (int i = 0; i < PD_EVENTS; i++) {
                        pd_event ev;
                        if (evs[i].p == p &&
                            pd_event_parse(&ev, &s, evs[i].js, (size_t)evs[i].len, 4096, err, sizeof err) ==
                                PD_EV_OK &&
                            pd_tz_day(&tz, ev.ts_ms) == day0 + d)
                            pd_profile_add(&model_p, &ev);
                        pd_event_free(&ev);
                    }
                    /* (the user deltas merged in keep recent items; a
                     * population profile keeps none) */
                    subs += pd_profile_sub(&model_p, 0) != NULL && pd_profile_sub(&model_p, 1) != NULL &&
                            model_p.nrecent == 0;
                    overflowed += pd_catset_overflowed(&model_p.dims[1].cat);
                    want.len = have.len = 0;
                    pd_profile_encode(&model_p, &want);
                    pd_profile_reset(&got);
                    int rc = pd_store_get_profile(st, NULL, day0 + d, p, "", 0, &got, err, sizeof err);
                    if (rc == PD_OK) pd_profile_encode(&got, &have);
                    if ((rc != PD_OK || !buf_eq(&want, &have)) && bad++ < 4) {
                        printf("    cap %u, %s, partition %d, day %d: %d\n", (unsigned)pcaps[ci],
                               v ? "batches" : "one batch", p, d, rc);
                        CHECK(!"population delta == per-event adds (bytes)");
                    }
                    pd_profile_free(&model_p);
                }
            pd_buf_free(&want);
            pd_buf_free(&have);
            pd_profile_free(&got);
            pd_store_batch_free(sb);
            pd_profile_free(&scratch);
            pd_batch_free(&b);
            pd_store_close(st);
        }
    }
    CHECK_INT(bad, 0);
    CHECK_INT(subs, 2 * 2 * 4);   /* tracked sub-profiles (and no recent items) in every partition-day */
    CHECK(overflowed >= 2 * 4);   /* the population's colour overflows at cap 4 */
    pd_free(idx);
}

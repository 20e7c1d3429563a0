/* test_dedup.c -- the de-dup index (dedup.c) against a reference: a plain
 * array of id -> delivery time of the latest accepted occurrence and the
 * partition's de-dup clock C, applying the rule of dedup.h (C' =
 * max(C, r); duplicate iff d0 >= C' - window; else d0 = C = C'). Random
 * ids delivered with record timestamps that mostly advance but may lag
 * (producers stamping old times) and retries, flushes into a real store at
 * random, restarts that reload the index from the store's records; every
 * decision must match, a reloaded index must hold exactly the reference's
 * live entries and clock, and once the clock has moved past every entry,
 * collection must leave only the newest record. */
#include "test.h"
#include "dedup.h"
#include "schema.h"
#include "store.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define WIN (3600 * 1000LL)
#define NIDS 60

typedef struct {
    pd_store *st;
    pd_store_batch *sb;
    pd_dedup d;
    uint64_t seq;     /* the "offset": one per event */
    int64_t clock;    /* the reference's de-dup clock C (0: none) */
} dut;

static void flush(dut *u)
{
    char err[256];
    pd_dedup_stage(&u->d, u->sb, 0, u->seq, WIN);
    pd_store_batch_set_checkpoint(u->sb, 0, (int64_t)u->seq, u->clock);
    CHECK_INT(pd_store_commit(u->st, u->sb, err, sizeof err), PD_OK);
}

/* Counts the stored records, checking they come in ascending seq order,
 * each a whole number of entries. */
typedef struct {
    int n;
    uint64_t last;
    int bad;
} rec_count;

static int count_recs(void *arg, uint64_t seq, const uint8_t *val, size_t vlen)
{
    (void)val;
    rec_count *c = arg;
    if ((c->n && seq <= c->last) || vlen == 0 || vlen % PD_DEDUP_ENTRY_LEN) c->bad++;
    c->last = seq;
    c->n++;
    return 0;
}

static int stored_records(dut *u)
{
    char err[256];
    rec_count c = {0};
    CHECK_INT(pd_store_scan_dedup(u->st, 0, count_recs, &c, err, sizeof err), PD_OK);
    CHECK_INT(c.bad, 0);
    return c.n;
}

/* Opens a store in tmpdir/name and an empty loaded index bounded by
 * max_ids; 0 after a failed CHECK. */
static int dut_open_max(dut *u, const char *name, uint64_t max_ids)
{
    char dir[400], err[256];
    snprintf(dir, sizeof dir, "%s/%s", pd_test_tmpdir(), name);
    static pd_schema s;
    pd_schema_default(&s, 64);
    pd_store_opts so = {0};
    memset(u, 0, sizeof *u);
    if (pd_store_open(&u->st, dir, &s, &so, err, sizeof err) != PD_OK) {
        CHECK(!"open store");
        return 0;
    }
    u->sb = pd_store_batch_new(u->st);
    CHECK_INT(pd_dedup_load(&u->d, u->st, 0, WIN, max_ids, err, sizeof err), PD_OK);
    return 1;
}

static int dut_open(dut *u, const char *name) { return dut_open_max(u, name, 0); }

static void dut_close(dut *u)
{
    pd_dedup_free(&u->d);
    pd_store_batch_free(u->sb);
    pd_store_close(u->st);
}

static void id_of(char *buf, size_t cap, int id) { snprintf(buf, cap, "event-%d", id); }

/* The reloaded index holds every live reference entry exactly, and
 * nothing live that the reference lacks. */
static int check_live(const dut *u, const int64_t *ref, const int *have)
{
    int bad = 0;
    for (int id = 0; id < NIDS; id++) {
        char s[32];
        id_of(s, sizeof s, id);
        int64_t got = pd_dedup_lookup(&u->d, s, strlen(s));
        int live_ref = have[id] && ref[id] >= u->clock - WIN;
        int live_got = got != PD_DEDUP_NONE && got >= u->clock - WIN;
        if (live_ref != live_got || (live_ref && got != ref[id])) bad++;
    }
    return bad;
}

/* The reference rule; returns 1 for a duplicate, else records it. */
static int ref_check(int64_t *ref, int *have, int64_t *clock, int id, int64_t r)
{
    int64_t c = PD_MAX(*clock, r);
    if (have[id] && ref[id] >= c - WIN) return 1;
    ref[id] = c;
    have[id] = 1;
    *clock = c;
    return 0;
}

TEST(dedup_decisions_gc_and_reload_match_reference)
{
    char err[256];
    dut u;
    if (!dut_open(&u, "dedup")) return;
    int64_t ref[NIDS];
    int have[NIDS] = {0};
    const int64_t base = 1763800000000LL;
    uint32_t r = 4242;
    int bad = 0, dups = 0, reloads = 0, lagging = 0;
    for (int i = 0; i < 20000; i++) {
        r = r * 1103515245u + 12345u;
        int id = (int)((r >> 8) % NIDS);
        r = r * 1103515245u + 12345u;
        /* a minute per delivery; one in four stamped up to 1.5 windows
         * back (a producer stamping old times: the clock still rules) */
        int64_t at = base + i * 60000LL;
        if ((r >> 8) % 4 == 0) {
            r = r * 1103515245u + 12345u;
            at -= (int64_t)((r >> 8) % (3 * WIN / 2));
            lagging++;
        }
        int dup = ref_check(ref, have, &u.clock, id, at);
        dups += dup;
        char sid[32];
        id_of(sid, sizeof sid, id);
        int got = pd_dedup_check(&u.d, sid, strlen(sid), at, WIN);
        if (got != dup && bad++ < 5) CHECK_INT(got, dup);
        if (u.d.clock != u.clock && bad++ < 5) CHECK_INT(u.d.clock, u.clock);
        u.seq++;
        r = r * 1103515245u + 12345u;
        if ((r >> 8) % 5 == 0) flush(&u);
        if ((r >> 8) % 400 == 1) { /* restart: reload from the store */
            flush(&u);
            pd_dedup_free(&u.d);
            CHECK_INT(pd_dedup_load(&u.d, u.st, 0, WIN, 0, err, sizeof err), PD_OK);
            if (check_live(&u, ref, have) && bad++ < 5) CHECK(!"reloaded index == reference live entries");
            if (u.d.clock != u.clock && bad++ < 5) CHECK_INT(u.d.clock, u.clock); /* C recomputed */
            reloads++;
        }
    }
    CHECK_INT(bad, 0);
    CHECK(dups > 1000);
    CHECK(reloads > 5);
    CHECK(lagging > 4000);
    /* Collection: records stay bounded by the window (about one record per
     * 5 events, events a minute apart, window = 60 minutes). */
    flush(&u);
    int nrec = stored_records(&u);
    CHECK(nrec > 0 && nrec < 200);
    /* the clock moves past everything: all but the newest record go */
    int64_t last = u.clock + 10 * WIN;
    CHECK_INT(pd_dedup_check(&u.d, "last", 4, last, WIN), 0);
    u.clock = last;
    u.seq++;
    for (int i = 0; i < 70; i++) flush(&u);
    CHECK_INT(stored_records(&u), 1);
    pd_dedup_free(&u.d);
    CHECK_INT(pd_dedup_load(&u.d, u.st, 0, WIN, 0, err, sizeof err), PD_OK);
    CHECK_INT(u.d.clock, last);
    CHECK_INT(pd_dedup_lookup(&u.d, "last", 4), last);
    CHECK_INT(pd_dedup_check(&u.d, "last", 4, last + WIN, WIN), 1);    /* moved exactly the window */
    CHECK_INT(pd_dedup_check(&u.d, "last", 4, last + WIN + 1, WIN), 0); /* one ms more */
    CHECK(pd_dedup_bytes(&u.d) > 0);
    dut_close(&u);
}

/* The rule is about deliveries, whatever the events' own times: an id
 * delivered again while the clock has moved at most the window is a
 * duplicate, even when the record carries an old stamp (max(C, r) = C);
 * an id first delivered with an old stamp is stored at C, not at its
 * stamp, so its retry a second later is caught (the offline client of
 * issue 22: with the stamp as its time it would have expired at once). */
TEST(dedup_window_follows_deliveries)
{
    char err[256];
    dut u;
    if (!dut_open(&u, "dedup2")) return;
    const int64_t m = 60000, base = 1763800000000LL;
    CHECK_INT(pd_dedup_check(&u.d, "now", 3, base, WIN), 0);
    CHECK_INT(u.d.clock, base);
    CHECK_INT(pd_dedup_check(&u.d, "old", 3, base - 50 * WIN, WIN), 0); /* stamped 50 windows back */
    CHECK_INT(pd_dedup_lookup(&u.d, "old", 3), base);                  /* kept at C */
    CHECK_INT(pd_dedup_check(&u.d, "old", 3, base - 50 * WIN + 1000, WIN), 1); /* its retry */
    CHECK_INT(pd_dedup_check(&u.d, "old", 3, base + 1000, WIN), 1);    /* retried with a fresh stamp */
    u.seq++;
    flush(&u);
    /* the clock moves 70 minutes: both expire */
    CHECK_INT(pd_dedup_check(&u.d, "y", 1, base + 70 * m, WIN), 0);
    CHECK_INT(pd_dedup_check(&u.d, "old", 3, base + 70 * m, WIN), 0);
    CHECK_INT(pd_dedup_check(&u.d, "now", 3, base - 5 * m, WIN), 0); /* old stamp, but C moved 70 min */
    u.seq++;
    for (int i = 0; i < 130; i++) { /* every kind of collection pass */
        u.seq++;
        flush(&u);
    }
    CHECK_INT(stored_records(&u), 1); /* the first record is collected, the newest stays */
    pd_dedup_free(&u.d);
    CHECK_INT(pd_dedup_load(&u.d, u.st, 0, WIN, 0, err, sizeof err), PD_OK);
    CHECK_INT(u.d.clock, base + 70 * m);
    CHECK_INT(pd_dedup_check(&u.d, "now", 3, base, WIN), 1); /* stored at C = base + 70 min */
    CHECK_INT(pd_dedup_check(&u.d, "z", 1, base, WIN), 0);
    CHECK_INT(pd_dedup_lookup(&u.d, "z", 1), base + 70 * m);
    dut_close(&u);
}

/* The bound (dedup_max_ids; dedup.h): against a reference that keeps every
 * acceptance time and raises H past the one that falls out of the last
 * max_ids, an index that is never reloaded and one reloaded from its store
 * at random points (after flushes that collect records, so the reload sees
 * only a suffix of the acceptances) take the same decisions; ties in
 * delivery time and stamps lagging behind the clock included. The live
 * entries never exceed max_ids and memory stays within the documented
 * bound. */
#define BIDS 400
#define BMAX 37
TEST(dedup_bound_is_deterministic_across_reloads)
{
    char err[256];
    dut a, b;
    if (!dut_open_max(&a, "dedupA", BMAX) || !dut_open_max(&b, "dedupB", BMAX)) return;
    static int64_t ref[BIDS], acc[40000];
    static int have[BIDS];
    int64_t clock = PD_DEDUP_NONE, H = PD_DEDUP_NONE;
    size_t nacc = 0;
    const int64_t base = 1763800000000LL;
    int64_t t = base;
    uint32_t r = 977;
    int bad = 0, dups = 0, reloads = 0, early = 0;
    for (int i = 0; i < 30000; i++) {
        r = r * 1103515245u + 12345u;
        int id = (int)((r >> 8) % BIDS);
        r = r * 1103515245u + 12345u;
        if ((r >> 8) % 3) t += 1000; /* one in three shares the previous delivery's ms */
        int64_t at = t;
        r = r * 1103515245u + 12345u;
        if ((r >> 8) % 5 == 0) at -= (int64_t)((r >> 12) % (2 * WIN)); /* an old stamp */
        /* the reference */
        int64_t c = clock == PD_DEDUP_NONE ? at : PD_MAX(clock, at);
        int64_t hz = PD_MAX(c - WIN, H);
        int dup = have[id] && ref[id] >= hz;
        if (!dup) {
            if (have[id] && ref[id] >= c - WIN) early++; /* a duplicate the bound let through */
            ref[id] = c;
            have[id] = 1;
            clock = c;
            acc[nacc++] = c;
            if (nacc > BMAX) H = PD_MAX(H, acc[nacc - 1 - BMAX] + 1);
        }
        dups += dup;
        char sid[32];
        id_of(sid, sizeof sid, id);
        int ga = pd_dedup_check(&a.d, sid, strlen(sid), at, WIN);
        int gb = pd_dedup_check(&b.d, sid, strlen(sid), at, WIN);
        if ((ga != dup || gb != dup) && bad++ < 5) {
            CHECK_INT(ga, dup);
            CHECK_INT(gb, dup);
        }
        if (b.d.cap_h != H && bad++ < 5) CHECK_INT(b.d.cap_h, H);
        a.seq++;
        b.seq++;
        a.clock = b.clock = clock;
        r = r * 1103515245u + 12345u;
        if ((r >> 8) % 4 == 0) flush(&a);
        if ((r >> 8) % 3 == 0) flush(&b);
        if ((r >> 8) % 300 == 7) { /* restart b */
            flush(&b);
            pd_dedup_free(&b.d);
            CHECK_INT(pd_dedup_load(&b.d, b.st, 0, WIN, BMAX, err, sizeof err), PD_OK);
            if ((b.d.cap_h != H || b.d.clock != clock) && bad++ < 5) CHECK(!"reload keeps H and C");
            reloads++;
        }
        /* live entries are bounded by max_ids */
        size_t live = 0;
        for (size_t k = 0; k < b.d.cap; k++)
            if (b.d.slots[k].ts != PD_DEDUP_NONE && b.d.slots[k].ts >= PD_MAX(clock - WIN, H)) live++;
        if (live > BMAX && bad++ < 5) CHECK(!"live entries <= max_ids");
        if (b.d.cap > 4 * 64 && b.d.cap > 4 * BMAX && bad++ < 5) CHECK(!"table within 4 x max_ids slots");
    }
    CHECK_INT(bad, 0);
    CHECK(dups > 1000);
    CHECK(early > 1000); /* the bound did bite */
    CHECK(reloads > 20);
    CHECK(pd_dedup_effective_window(&a.d, WIN) < WIN);
    /* stored records stay bounded too (collected below H) */
    flush(&b);
    CHECK(stored_records(&b) < 100);
    dut_close(&a);
    dut_close(&b);
}

/* An import's de-dup records are keyed by its own flush count (store.h
 * "Imported stores"): a worker continuing from offset 0 -- the importer,
 * or a receiver of a snapshot of the imported partition -- sees records
 * keyed beyond its checkpoint (pd_dedup_foreign) and adopts them, so its
 * first flush (seq 1) rewrites them instead of replacing the one keyed 1:
 * after a reload every imported id still counts as seen. */
TEST(dedup_foreign_records_are_adopted_not_replaced)
{
    char err[256];
    dut u;
    if (!dut_open(&u, "dedupF")) return;
    const int64_t base = 1763800000000LL;
    char s[32];
    for (int id = 0; id < 10; id++) { /* the import: two flushes, keyed 1 and 2 */
        id_of(s, sizeof s, id);
        CHECK_INT(pd_dedup_check(&u.d, s, strlen(s), base + id * 1000, WIN), 0);
        if (id == 4 || id == 9) {
            u.seq = id == 4 ? 1 : 2;
            u.clock = base + id * 1000;
            flush(&u);
        }
    }
    /* the worker: checkpoint 0 (the import's), records keyed 1 and 2 */
    pd_dedup_free(&u.d);
    CHECK_INT(pd_dedup_load(&u.d, u.st, 0, WIN, 0, err, sizeof err), PD_OK);
    CHECK(pd_dedup_foreign(&u.d, 0));
    CHECK(pd_dedup_foreign(&u.d, -1));
    CHECK(pd_dedup_foreign(&u.d, 1));
    CHECK(!pd_dedup_foreign(&u.d, 2));
    CHECK(!pd_dedup_foreign(&u.d, 7));
    pd_dedup_adopt(&u.d, WIN);
    id_of(s, sizeof s, 100);
    CHECK_INT(pd_dedup_check(&u.d, s, strlen(s), base + 20000, WIN), 0);
    u.seq = 1; /* the worker's first flush: one record applied */
    u.clock = base + 20000;
    flush(&u);
    CHECK_INT(stored_records(&u), 1);
    pd_dedup_free(&u.d);
    CHECK_INT(pd_dedup_load(&u.d, u.st, 0, WIN, 0, err, sizeof err), PD_OK);
    CHECK(!pd_dedup_foreign(&u.d, 1));
    for (int id = 0; id < 10; id++) {
        id_of(s, sizeof s, id);
        CHECK(pd_dedup_lookup(&u.d, s, strlen(s)) != PD_DEDUP_NONE);
    }
    id_of(s, sizeof s, 100);
    CHECK_INT(pd_dedup_lookup(&u.d, s, strlen(s)), base + 20000);
    dut_close(&u);
}

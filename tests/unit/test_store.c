/*
 * test_store.c -- the RocksDB store: atomic commit of profiles + checkpoints
 * + dedup records, merge-on-read, retention drops, schema guard, secondary
 * (read-only) instances and a reader/writer concurrency smoke test.
 *
 * Oracles: expected profile contents are hand-counted from the events the
 * test feeds in (counts, sums, min/max written as literals), and merged
 * values are compared with a profile built by adding every event to one
 * profile in memory (no store, no codec).
 */
#include "test.h"
#include "store.h"
#include "profile.h"
#include "event.h"
#include "schema.h"
#include "util.h"

#include <dirent.h>
#include <rocksdb/c.h>
#include <xxhash.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdlib.h>

#define DAY0 20414 /* 2025-11-22 */

static char *tmpdir_copy(void)
{
    return pd_strdup(pd_test_tmpdir());
}

/* Adds the event JSON `js` to p (aborting the test on a parse error). */
static void add_json(pd_profile *p, const char *js)
{
    pd_event ev;
    char err[256];
    int rc = pd_event_parse(&ev, p->schema, js, strlen(js), 0, err, sizeof err);
    if (rc != 0) {
        pd_test_fail(__FILE__, __LINE__, "event parse: %s", err);
        return;
    }
    pd_profile_add(p, &ev);
    pd_event_free(&ev);
}

static const char *EV_A[] = {
    "{\"user_id\":\"u-1\",\"ts\":1763800000000,\"type\":\"view\",\"item\":{\"color\":\"blue\",\"price\":1000}}",
    "{\"user_id\":\"u-1\",\"ts\":1763800001000,\"type\":\"view\",\"item\":{\"color\":\"blue\",\"price\":12000}}",
    "{\"user_id\":\"u-1\",\"ts\":1763800002000,\"type\":\"click\",\"item\":{\"color\":\"red\",\"price\":12000}}",
};
static const char *EV_B[] = {
    "{\"user_id\":\"u-1\",\"ts\":1763799000000,\"type\":\"view\",\"item\":{\"color\":\"red\",\"price\":500}}",
    "{\"user_id\":\"u-1\",\"ts\":1763800009000,\"type\":\"search\",\"filters\":{\"color\":\"green\"}}",
};

static void build(pd_profile *p, const char **evs, int n)
{
    for (int i = 0; i < n; i++) add_json(p, evs[i]);
}

/* De-dup records collected by pd_store_scan_dedup. */
typedef struct {
    int n;
    uint64_t seq[8];
    size_t vlen[8];
    uint8_t val[8][72];
} dd_seen;

static int dd_collect(void *arg, uint64_t seq, const uint8_t *val, size_t vlen)
{
    dd_seen *d = arg;
    if (d->n < 8) {
        d->seq[d->n] = seq;
        d->vlen[d->n] = vlen;
        memcpy(d->val[d->n], val, PD_MIN(vlen, sizeof d->val[0]));
    }
    d->n++;
    return 0;
}

/* One packed entry, written out byte by byte (independent of the store). */
static void dd_entry(uint8_t *e, uint8_t fill, int64_t ts)
{
    memset(e, fill, 16);
    for (int i = 0; i < 8; i++) e[16 + i] = (uint8_t)((uint64_t)ts >> (56 - 8 * i));
}

/* day_filter_bits and day_filter_max_bytes as in pd_store_opts (0 = default) */
static pd_store *open_store_opts(const char *dir, const pd_schema *s, int ro, int filter_bits, uint64_t filter_max)
{
    pd_store *st = NULL;
    char err[512] = "";
    pd_store_opts o = {.read_only = ro, .block_cache_mb = 8, .write_buffer_mb = 4, .day_filter_bits = filter_bits,
                       .day_filter_max_bytes = filter_max};
    int rc = pd_store_open(&st, dir, s, &o, err, sizeof err);
    if (rc) pd_test_fail(__FILE__, __LINE__, "open %s: %d %s", dir, rc, err);
    return st;
}

static pd_store *open_store(const char *dir, const pd_schema *s, int ro)
{
    return open_store_opts(dir, s, ro, 0, 0);
}

TEST(store_commit_reopen_readback)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    int color = pd_schema_find(&s, "color", 5), price = pd_schema_find(&s, "price", 5);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;

    pd_profile a, b;
    pd_profile_init(&a, &s);
    pd_profile_init(&b, &s);
    build(&a, EV_A, 3);
    build(&b, EV_B, 1);
    pd_store_batch *bt = pd_store_batch_new(st);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 3, "u-1", 3, &a, err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 3, "u-2", 3, &b, err, sizeof err), 0);
    uint8_t dd2[48], dd1[24], ddo[24];
    dd_entry(dd2, 0xab, 1763800000000LL);
    dd_entry(dd2 + 24, 0x01, -5);
    dd_entry(dd1, 0x77, 1763700000000LL);
    dd_entry(ddo, 0x55, 9);
    pd_store_batch_put_dedup(bt, 3, 100, dd2, sizeof dd2);
    pd_store_batch_put_dedup(bt, 3, 0x100000005ULL, dd1, sizeof dd1); /* sorts by seq, not insertion */
    pd_store_batch_put_dedup(bt, 3, 6, ddo, sizeof ddo);
    pd_store_batch_delete_dedup(bt, 3, 6);                         /* later in the batch: wins */
    pd_store_batch_put_dedup(bt, 2, 1, dd1, sizeof dd1);
    pd_store_batch_put_dedup(bt, 4, 9, dd1, 0);                    /* an empty record is legal */
    pd_store_batch_set_checkpoint(bt, 3, 100, 1763800001000LL);
    pd_store_batch_set_checkpoint(bt, 0, 7, 1763700000000LL);
    pd_store_batch_set_checkpoint(bt, 3, 150, 1763800002000LL); /* last one wins */
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    pd_store_batch_free(bt);
    pd_profile_free(&a);
    pd_profile_free(&b);
    pd_store_close(st);

    st = open_store(dir, &s, 0);
    if (!st) goto out;
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 3, "u-1", 3, &p, err, sizeof err), 0);
    /* hand-counted from EV_A */
    CHECK_INT(p.events, 3);
    CHECK_INT(p.first_ts, 1763800000000LL);
    CHECK_INT(p.last_ts, 1763800002000LL);
    CHECK_INT(pd_catset_get(&p.types, "view", 4), 2);
    CHECK_INT(pd_catset_get(&p.types, "click", 5), 1);
    CHECK_INT(pd_catset_get(&p.dims[color].cat, "blue", 4), 2);
    CHECK_INT(pd_catset_get(&p.dims[color].cat, "red", 3), 1);
    CHECK_INT(p.dims[price].num.count, 3);
    CHECK_DBL(p.dims[price].num.sum, 25000.0, 0);
    CHECK_DBL(p.dims[price].num.min, 1000.0, 0);
    CHECK_DBL(p.dims[price].num.max, 12000.0, 0);
    pd_profile_reset(&p);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 3, "u-2", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 1);
    CHECK_INT(pd_catset_get(&p.dims[color].cat, "red", 3), 1);
    pd_profile_reset(&p);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 3, "u-3", 3, &p, err, sizeof err), PD_ENOTFOUND);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 2, "u-1", 3, &p, err, sizeof err), PD_ENOTFOUND);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 + 1, 3, "u-1", 3, &p, err, sizeof err),
              PD_ENOTFOUND);
    pd_profile_free(&p);

    pd_checkpoint c;
    CHECK_INT(pd_store_get_checkpoint(st, 3, &c), 0);
    CHECK_INT(c.partition, 3);
    CHECK_INT(c.next_offset, 150);
    CHECK_INT(c.clock_ms, 1763800002000LL);
    CHECK_INT(pd_store_get_checkpoint(st, 1, &c), PD_ENOTFOUND);
    pd_checkpoint *cl = NULL;
    int n = 0;
    CHECK_INT(pd_store_list_checkpoints(st, &cl, &n), 0);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_INT(cl[0].partition, 0);
        CHECK_INT(cl[0].next_offset, 7);
        CHECK_INT(cl[0].clock_ms, 1763700000000LL);
        CHECK_INT(cl[1].partition, 3);
        CHECK_INT(cl[1].next_offset, 150);
    }
    pd_free(cl);

    dd_seen ds3 = {0}, ds2 = {0}, ds4 = {0}, ds5 = {0};
    CHECK_INT(pd_store_scan_dedup(st, 3, dd_collect, &ds3, err, sizeof err), 0);
    CHECK_INT(ds3.n, 2);
    if (ds3.n == 2) {
        CHECK_INT(ds3.seq[0], 100);
        CHECK_INT(ds3.vlen[0], 48);
        CHECK(memcmp(ds3.val[0], dd2, 48) == 0);
        CHECK_INT(ds3.seq[1], 0x100000005ULL);
        CHECK_INT(ds3.vlen[1], 24);
        CHECK(memcmp(ds3.val[1], dd1, 24) == 0);
        /* ts bytes of the second entry of seq 100: -5 as i64 BE */
        CHECK_INT(ds3.val[0][47], 0xfb);
        CHECK_INT(ds3.val[0][24 + 16], 0xff);
    }
    CHECK_INT(pd_store_scan_dedup(st, 2, dd_collect, &ds2, err, sizeof err), 0);
    CHECK_INT(ds2.n, 1);
    CHECK_INT(ds2.seq[0], 1);
    CHECK_INT(pd_store_scan_dedup(st, 4, dd_collect, &ds4, err, sizeof err), 0);
    CHECK_INT(ds4.n, 1);
    CHECK_INT(ds4.vlen[0], 0);
    CHECK_INT(pd_store_scan_dedup(st, 5, dd_collect, &ds5, err, sizeof err), 0);
    CHECK_INT(ds5.n, 0);
    /* a delete in a later batch */
    bt = pd_store_batch_new(st);
    pd_store_batch_delete_dedup(bt, 3, 100);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    pd_store_batch_free(bt);
    ds3 = (dd_seen){0};
    CHECK_INT(pd_store_scan_dedup(st, 3, dd_collect, &ds3, err, sizeof err), 0);
    CHECK_INT(ds3.n, 1);
    CHECK_INT(ds3.seq[0], 0x100000005ULL);

    int64_t *days = NULL;
    CHECK_INT(pd_store_list_days(st, &days, &n), 0);
    CHECK_INT(n, 1);
    if (n == 1) CHECK_INT(days[0], DAY0);
    pd_free(days);

    pd_day_stats *ds = NULL;
    CHECK_INT(pd_store_day_stats(st, &ds, &n), 0);
    CHECK_INT(n, 1);
    if (n == 1) {
        CHECK_INT(ds[0].day, DAY0);
        CHECK(ds[0].keys >= 1);
        CHECK(ds[0].bytes > 0);
    }
    pd_free(ds);
    pd_store_close(st);
out:
    pd_free(dir);
}

TEST(store_merge_two_commits_sum)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    int color = pd_schema_find(&s, "color", 5), price = pd_schema_find(&s, "price", 5);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    pd_profile a, b, all, got;
    pd_profile_init(&a, &s);
    pd_profile_init(&b, &s);
    pd_profile_init(&all, &s);
    pd_profile_init(&got, &s);
    build(&a, EV_A, 3);
    build(&b, EV_B, 2);
    build(&all, EV_A, 3);
    build(&all, EV_B, 2);
    pd_store_batch *bt = pd_store_batch_new(st);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 1, "u-1", 3, &a, err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 1, "u-1", 3, &b, err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    /* a committed batch is cleared: committing it again changes nothing */
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 1, "u-1", 3, &got, err, sizeof err), 0);
    CHECK(pd_profile_equal(&got, &all));
    /* hand-counted: 5 events, 3 views, 1 click, 1 search */
    CHECK_INT(got.events, 5);
    CHECK_INT(got.first_ts, 1763799000000LL);
    CHECK_INT(got.last_ts, 1763800009000LL);
    CHECK_INT(pd_catset_get(&got.types, "view", 4), 3);
    CHECK_INT(pd_catset_get(&got.types, "search", 6), 1);
    CHECK_INT(pd_catset_get(&got.dims[color].cat, "red", 3), 2);
    CHECK_INT(pd_catset_get(&got.dims[color].cat, "green", 5), 1);
    CHECK_INT(got.dims[price].num.count, 4);
    CHECK_DBL(got.dims[price].num.sum, 25500.0, 0);
    CHECK_DBL(got.dims[price].num.min, 500.0, 0);

    /* survives reopen (merge operands replayed from the WAL) */
    pd_store_close(st);
    st = open_store(dir, &s, 0);
    if (st) {
        pd_profile_reset(&got);
        CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 1, "u-1", 3, &got, err, sizeof err), 0);
        CHECK(pd_profile_equal(&got, &all));
    }
    pd_store_batch_free(bt);
    pd_profile_free(&a);
    pd_profile_free(&b);
    pd_profile_free(&all);
    pd_profile_free(&got);
    pd_store_close(st);
out:
    pd_free(dir);
}

/* Commits one event for (day, partition, user). */
static void put1(pd_store *st, const pd_schema *s, int64_t day, int32_t part, const char *user)
{
    char err[512] = "";
    pd_profile p;
    pd_profile_init(&p, s);
    add_json(&p, EV_A[0]);
    pd_store_batch *bt = pd_store_batch_new(st);
    int rc = pd_store_batch_merge(bt, day, part, user, strlen(user), &p, err, sizeof err);
    if (rc == 0) rc = pd_store_commit(st, bt, err, sizeof err);
    if (rc) pd_test_fail(__FILE__, __LINE__, "put1: %s", err);
    pd_store_batch_free(bt);
    pd_profile_free(&p);
}

TEST(store_retention_drop)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    for (int d = -2; d <= 1; d++) put1(st, &s, DAY0 + d, 0, "u-1");
    int64_t *days = NULL;
    int n = 0;
    CHECK_INT(pd_store_list_days(st, &days, &n), 0);
    CHECK_INT(n, 4);
    pd_free(days);

    /* a snapshot taken before the drop still reads the dropped day */
    pd_store_snap *sn = pd_store_snap_acquire(st);
    CHECK_INT(pd_store_drop_days_before(st, DAY0, err, sizeof err), 2);
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 - 1, 0, "u-1", 3, &p, err, sizeof err),
              PD_ENOTFOUND);
    CHECK_INT(pd_store_get_profile(st, sn, DAY0 - 1, 0, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 1);
    pd_profile_reset(&p);
    pd_store_snap_release(st, sn);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 1);
    pd_profile_reset(&p);
    CHECK_INT(pd_store_drop_days_before(st, DAY0, err, sizeof err), 0);
    pd_store_close(st);

    st = open_store(dir, &s, 0);
    if (!st) goto out2;
    CHECK_INT(pd_store_list_days(st, &days, &n), 0);
    CHECK_INT(n, 2);
    if (n == 2) {
        CHECK_INT(days[0], DAY0);
        CHECK_INT(days[1], DAY0 + 1);
    }
    pd_free(days);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 - 2, 0, "u-1", 3, &p, err, sizeof err),
              PD_ENOTFOUND);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 + 1, 0, "u-1", 3, &p, err, sizeof err), 0);
    /* a dropped day may be written again (late data is the caller's call) */
    pd_profile_reset(&p);
    put1(st, &s, DAY0 - 2, 0, "u-9");
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 - 2, 0, "u-9", 3, &p, err, sizeof err), 0);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 - 2, 0, "u-1", 3, &p, err, sizeof err),
              PD_ENOTFOUND);
    CHECK_INT(pd_store_drop_days_before(st, DAY0 + 5, err, sizeof err), 3);
    CHECK_INT(pd_store_list_days(st, &days, &n), 0);
    CHECK_INT(n, 0);
    pd_free(days);
    /* the day written last was dropped with the others: writing it again
     * makes a new family, nothing of the dropped one is reached */
    put1(st, &s, DAY0 - 2, 0, "u-7");
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 - 2, 0, "u-7", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 1);
    pd_profile_reset(&p);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 - 2, 0, "u-9", 3, &p, err, sizeof err),
              PD_ENOTFOUND);
    CHECK_INT(pd_store_list_days(st, &days, &n), 0);
    CHECK_INT(n, 1);
    pd_free(days);
    pd_store_close(st);
out2:
    pd_profile_free(&p);
out:
    pd_free(dir);
}

TEST(store_schema_mismatch_refused)
{
    pd_schema s, s2;
    pd_schema_default(&s, 64);
    pd_schema_default(&s2, 32);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    pd_store_close(st);
    pd_store_opts o = {0};
    st = NULL;
    int rc = pd_store_open(&st, dir, &s2, &o, err, sizeof err);
    CHECK_INT(rc, PD_EINVAL);
    CHECK(st == NULL);
    CHECK(strstr(err, "schema mismatch") != NULL);
    /* the read-only path refuses too */
    o.read_only = 1;
    rc = pd_store_open(&st, dir, &s2, &o, err, sizeof err);
    CHECK_INT(rc, PD_EINVAL);
    CHECK(strstr(err, "schema mismatch") != NULL);
    /* and the right schema still opens */
    st = open_store(dir, &s, 0);
    CHECK(st != NULL);
    pd_store_close(st);
    pd_free(dir);
}

TEST(store_readonly_missing_dir)
{
    char *dir = tmpdir_copy(), err[512] = "", path[600];
    snprintf(path, sizeof path, "%s/nope", dir);
    pd_store_opts o = {0};
    o.read_only = 1;
    pd_store *st = NULL;
    CHECK(pd_store_open(&st, path, NULL, &o, err, sizeof err) < 0);
    CHECK(st == NULL);
    CHECK(err[0] != '\0');
    /* and it did not create anything */
    DIR *d = opendir(path);
    CHECK(d == NULL);
    if (d) closedir(d);
    pd_free(dir);
}

/* Sorted newline-joined listing of dir (names only). */
static char *listing(const char *dir)
{
    struct dirent **ents = NULL;
    int n = scandir(dir, &ents, NULL, alphasort);
    pd_buf b = {0};
    for (int i = 0; i < n; i++) {
        pd_buf_printf(&b, "%s\n", ents[i]->d_name);
        free(ents[i]);
    }
    free(ents);
    pd_buf_putc(&b, '\0');
    return b.p;
}

static int count_visit(void *arg, int64_t day, int32_t partition, const char *user, size_t ulen,
                       const pd_profile *prof)
{
    (void)day; (void)partition; (void)user; (void)ulen;
    ((uint64_t *)arg)[0] += 1;
    ((uint64_t *)arg)[1] += prof->events;
    return 0;
}

TEST(store_readonly_secondary)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    put1(st, &s, DAY0, 2, "u-1");
    pd_store_batch *bt = pd_store_batch_new(st);
    pd_store_batch_set_checkpoint(bt, 2, 42, 1763800000000LL);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    pd_store_batch_free(bt);

    char *before = listing(dir);
    /* schema NULL: the store's own schema is used */
    pd_store *ro = open_store(dir, NULL, 1);
    pd_store *ro2 = open_store(dir, &s, 1);
    if (!ro || !ro2) {
        pd_store_close(ro);
        pd_store_close(ro2);
        pd_free(before);
        pd_store_close(st);
        goto out;
    }
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK_INT(pd_store_get_profile(ro2, NULL, DAY0, 2, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 1);
    pd_profile_free(&p);
    uint64_t cnt[2] = {0, 0};
    CHECK_INT(pd_store_scan(ro, INT64_MIN, -1, NULL, 0, count_visit, cnt, err, sizeof err), 0);
    CHECK_INT(cnt[0], 1);
    CHECK_INT(cnt[1], 1);
    pd_checkpoint c;
    CHECK_INT(pd_store_get_checkpoint(ro, 2, &c), 0);
    CHECK_INT(c.next_offset, 42);

    /* writes are refused */
    pd_profile_init(&p, &s);
    add_json(&p, EV_A[0]);
    bt = pd_store_batch_new(ro);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 2, "u-1", 3, &p, err, sizeof err), PD_EINVAL);
    pd_store_batch_set_checkpoint(bt, 2, 99, 0);
    CHECK_INT(pd_store_commit(ro, bt, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_store_drop_days_before(ro, DAY0 + 10, err, sizeof err), PD_EINVAL);
    pd_store_batch_free(bt);

    /* the primary writes more; the secondary catches up */
    bt = pd_store_batch_new(st);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 2, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    pd_store_batch_free(bt);
    pd_profile_free(&p);
    CHECK_INT(pd_store_refresh(ro2, err, sizeof err), 0);
    pd_profile_init(&p, &s);
    CHECK_INT(pd_store_get_profile(ro2, NULL, DAY0, 2, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 2);
    pd_profile_free(&p);
    pd_store_snap *sn = pd_store_snap_acquire(ro2);
    pd_profile_init(&p, &s);
    CHECK_INT(pd_store_get_profile(ro2, sn, DAY0, 2, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 2);
    pd_profile_free(&p);
    pd_store_snap_release(ro2, sn);
    pd_store_close(ro);
    pd_store_close(ro2);

    /* the secondaries left the data directory alone */
    char *after = listing(dir);
    CHECK_STR(after, before);
    pd_free(before);
    pd_free(after);
    pd_checkpoint c2;
    CHECK_INT(pd_store_get_checkpoint(st, 2, &c2), 0);
    CHECK_INT(c2.next_offset, 42);
    pd_store_close(st);
out:
    pd_free(dir);
}

TEST(store_scan_filters)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    /* days 0,1 x partitions 0,1,256 x users a,ab,b = 18 profiles of 1 event */
    static const int32_t parts[] = {0, 1, 256};
    static const char *users[] = {"a", "ab", "b"};
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 3; i++)
            for (int u = 0; u < 3; u++) put1(st, &s, DAY0 + d, parts[i], users[u]);
    uint64_t cnt[2];
    struct { int64_t day; int32_t part; const char *user; uint64_t want; } cases[] = {
        {INT64_MIN, -1, NULL, 18}, {DAY0, -1, NULL, 9}, {DAY0 + 1, 1, NULL, 3},
        {INT64_MIN, 256, NULL, 6}, {INT64_MIN, -1, "a", 6}, {DAY0, 1, "a", 1},
        {DAY0, 1, "ab", 1}, {DAY0, 2, "a", 0}, {DAY0 + 7, -1, NULL, 0}, {INT64_MIN, 0, "c", 0},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(cases); i++) {
        cnt[0] = cnt[1] = 0;
        int rc = pd_store_scan(st, cases[i].day, cases[i].part, cases[i].user,
                               cases[i].user ? strlen(cases[i].user) : 0, count_visit, cnt, err,
                               sizeof err);
        CHECK_INT(rc, 0);
        if (cnt[0] != cases[i].want)
            pd_test_fail(__FILE__, __LINE__, "case %zu: %" PRIu64 " visits, want %" PRIu64, i,
                         cnt[0], cases[i].want);
        CHECK_INT(cnt[1], cnt[0]);
    }
    pd_store_close(st);
out:
    pd_free(dir);
}

static int stop_visit(void *arg, int64_t day, int32_t partition, const char *user, size_t ulen,
                      const pd_profile *prof)
{
    (void)day; (void)partition; (void)prof;
    int *n = arg;
    CHECK_INT(user[ulen], '\0');
    return ++*n == 2 ? 77 : 0;
}

TEST(store_scan_stop)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    put1(st, &s, DAY0, 0, "x");
    put1(st, &s, DAY0, 0, "y");
    put1(st, &s, DAY0, 0, "z");
    int n = 0;
    CHECK_INT(pd_store_scan(st, INT64_MIN, -1, NULL, 0, stop_visit, &n, err, sizeof err), 77);
    CHECK_INT(n, 2);
    pd_store_close(st);
out:
    pd_free(dir);
}

/* ---- concurrency smoke ---- */

typedef struct {
    pd_store *st;
    const pd_schema *s;
    int done; /* atomic */
} conc_ctx;

typedef struct {
    conc_ctx *c;
    int reads, found, bad; /* this reader's counts */
} conc_reader;

static void *reader_main(void *arg)
{
    conc_reader *r = arg;
    conc_ctx *c = r->c;
    char err[512];
    pd_profile p;
    pd_profile_init(&p, c->s);
    for (int i = 0; i < 200000 && !__atomic_load_n(&c->done, __ATOMIC_ACQUIRE); i++) {
        int64_t *days = NULL;
        int n = 0;
        pd_store_list_days(c->st, &days, &n);
        pd_store_snap *sn = (i % 4 == 0) ? pd_store_snap_acquire(c->st) : NULL;
        for (int k = 0; k < n; k++) {
            pd_profile_reset(&p);
            int rc = pd_store_get_profile(c->st, sn, days[k], 0, "u-1", 3, &p, err, sizeof err);
            r->reads++;
            if (rc == 0) {
                r->found++;
                if (p.events < 1) r->bad++;
            } else if (rc != PD_ENOTFOUND) {
                r->bad++;
            }
        }
        pd_store_snap_release(c->st, sn);
        pd_free(days);
    }
    pd_profile_free(&p);
    return NULL;
}

TEST(store_concurrent_readers_with_drops)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    conc_ctx c = {.st = st, .s = &s};
    conc_reader rd[2] = {{.c = &c}, {.c = &c}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, reader_main, &rd[i]);
    int total_dropped = 0;
    for (int i = 0; i < 30; i++) {
        put1(st, &s, DAY0 + i, 0, "u-1");
        if (i > 0) put1(st, &s, DAY0 + i - 1, 0, "u-1");
        int rc = pd_store_drop_days_before(st, DAY0 + i - 3, err, sizeof err);
        CHECK(rc >= 0);
        if (rc > 0) total_dropped += rc;
    }
    __atomic_store_n(&c.done, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_INT(rd[i].bad, 0);
        CHECK(rd[i].reads > 0);
        CHECK(rd[i].found > 0);
    }
    int64_t *days = NULL;
    int n = 0;
    pd_store_list_days(st, &days, &n);
    /* days DAY0+26 .. DAY0+29 remain: 30 created, 26 dropped */
    CHECK_INT(n, 4);
    CHECK_INT(total_dropped, 26);
    if (n == 4) CHECK_INT(days[0], DAY0 + 26);
    pd_free(days);
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0 + 28, 0, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(p.events, 2);
    pd_profile_free(&p);
    pd_store_close(st);
out:
    pd_free(dir);
}

/* Reopening flushes the recovered WAL to L0; after enough L0 files RocksDB
 * compacts them into a full value, so later reads merge operands onto an
 * existing value (the full-merge path with a base). */
TEST(store_merge_across_flushes)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_profile all, got;
    pd_profile_init(&all, &s);
    pd_profile_init(&got, &s);
    for (int round = 0; round < 8; round++) {
        pd_store *st = open_store(dir, &s, 0);
        if (!st) break;
        put1(st, &s, DAY0, 5, "u-1");
        add_json(&all, EV_A[0]);
        if (round % 3 == 2) {
            pd_profile_reset(&got);
            CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 5, "u-1", 3, &got, err, sizeof err), 0);
            CHECK_INT(got.events, round + 1);
        }
        pd_store_close(st);
    }
    pd_store *st = open_store(dir, &s, 0);
    if (st) {
        put1(st, &s, DAY0, 5, "u-1");
        add_json(&all, EV_A[0]);
        pd_profile_reset(&got);
        CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 5, "u-1", 3, &got, err, sizeof err), 0);
        CHECK_INT(got.events, 9);
        CHECK(pd_profile_equal(&got, &all));
        pd_store_close(st);
    }
    pd_profile_free(&all);
    pd_profile_free(&got);
    pd_free(dir);
}

/* Many commits to one key in one memtable: past max_successive_merges the
 * writer folds operands into a value, and later operands merge onto it. */
TEST(store_merge_many_commits)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    int price = pd_schema_find(&s, "price", 5);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    pd_profile all, got, one;
    pd_profile_init(&all, &s);
    pd_profile_init(&got, &s);
    pd_profile_init(&one, &s);
    if (!st) goto out;
    pd_store_batch *bt = pd_store_batch_new(st);
    double sum = 0;
    for (int i = 0; i < 30; i++) {
        pd_profile_reset(&one);
        add_json(&one, EV_A[i % 3]);
        add_json(&all, EV_A[i % 3]);
        sum += (i % 3 == 0) ? 1000 : 12000;
        CHECK_INT(pd_store_batch_merge(bt, DAY0, 0, "hot", 3, &one, err, sizeof err), 0);
        CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    }
    pd_store_batch_free(bt);
    CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "hot", 3, &got, err, sizeof err), 0);
    CHECK_INT(got.events, 30);
    CHECK_INT(pd_catset_get(&got.types, "view", 4), 20);
    CHECK_DBL(got.dims[price].num.sum, sum, 0);
    CHECK(pd_profile_equal(&got, &all));
    pd_store_close(st);
    st = open_store(dir, &s, 0);
    if (st) {
        pd_profile_reset(&got);
        CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "hot", 3, &got, err, sizeof err), 0);
        CHECK(pd_profile_equal(&got, &all));
        pd_store_close(st);
    }
out:
    pd_profile_free(&all);
    pd_profile_free(&got);
    pd_profile_free(&one);
    pd_free(dir);
}

/* One event's delta, as the committer writes a single-event entry. */
static void merge_event_json(pd_store_batch *bt, const pd_schema *s, int64_t day, const char *user,
                             const char *js)
{
    pd_event ev;
    char err[256];
    if (pd_event_parse(&ev, s, js, strlen(js), 0, err, sizeof err) != 0) {
        pd_test_fail(__FILE__, __LINE__, "event parse: %s", err);
        return;
    }
    CHECK_INT(pd_store_batch_merge_event(bt, day, 0, user, strlen(user), &ev, err, sizeof err), 0);
    pd_event_free(&ev);
}

/* Operand folding: a key merged in every commit gets some merges written
 * as fully merged values (Put); merging the same key twice in one batch
 * must never fold over the batch's own earlier operand. Deltas come both
 * as profiles and as single events (pd_store_batch_merge_event, which
 * folds by adding the event). Oracle: the same events added to one
 * in-memory profile. Checked live, after a reopen and against the fold
 * count. */
TEST(store_fold_operands)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    pd_profile all, cold, got, one;
    pd_profile_init(&all, &s);
    pd_profile_init(&cold, &s);
    pd_profile_init(&got, &s);
    pd_profile_init(&one, &s);
    if (!st) goto out;
    pd_store_batch *bt = pd_store_batch_new(st);
    for (int i = 0; i < 60; i++) {
        int times = 1 + (i % 7 == 3) + (i % 11 == 5); /* some batches merge "hot" 2-3 times */
        for (int k = 0; k < times; k++) {
            add_json(&all, EV_A[(i + k) % 3]);
            if ((i + k) % 2) {
                merge_event_json(bt, &s, DAY0, "hot", EV_A[(i + k) % 3]);
                continue;
            }
            pd_profile_reset(&one);
            add_json(&one, EV_A[(i + k) % 3]);
            CHECK_INT(pd_store_batch_merge(bt, DAY0, 0, "hot", 3, &one, err, sizeof err), 0);
        }
        if (i % 10 == 0) { /* a key merged only a few times is never folded */
            pd_profile_reset(&one);
            add_json(&one, EV_B[0]);
            add_json(&cold, EV_B[0]);
            CHECK_INT(pd_store_batch_merge(bt, DAY0, 0, "cold", 4, &one, err, sizeof err), 0);
        }
        CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
        if (i == 29) { /* midway: the value read back is exact */
            CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "hot", 3, &got, err, sizeof err), 0);
            CHECK_INT(got.events, all.events);
            CHECK(pd_profile_equal(&got, &all));
        }
    }
    /* 60 commits and 70 merges of "hot": at least 60 / FOLD_EVERY folds. */
    CHECK(pd_store_batch_folds(bt) >= 7);
    pd_store_batch_free(bt);
    for (int pass = 0; pass < 2; pass++) {
        CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "hot", 3, &got, err, sizeof err), 0);
        CHECK(pd_profile_equal(&got, &all));
        CHECK_INT(pd_store_get_profile(st, NULL, DAY0, 0, "cold", 4, &got, err, sizeof err), 0);
        CHECK(pd_profile_equal(&got, &cold));
        pd_store_close(st);
        st = pass == 0 ? open_store(dir, &s, 0) : NULL;
        if (!st) break;
    }
out:
    pd_profile_free(&all);
    pd_profile_free(&cold);
    pd_profile_free(&got);
    pd_profile_free(&one);
    pd_free(dir);
}

/* pd_store_get_profile_range: one MultiGet over the day families in
 * [from, to]. Oracle: per day, a profile built in memory by adding the
 * same events (no store, no codec); days outside the range, other users
 * and other partitions must not show up. Also reuse of the range struct,
 * a range with no families, and an explicit snapshot (later writes
 * invisible). */
TEST(store_profile_range)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "";
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    /* u-1 in partition 3 on DAY0-2, DAY0 (two commits: merge on read),
     * DAY0+1 and DAY0+3; u-2 on DAY0-1; u-1 in partition 4 on DAY0+2. */
    pd_profile exp[5];
    int64_t expday[5] = {DAY0 - 2, DAY0, DAY0 + 1, DAY0 + 3, 0};
    for (int i = 0; i < 5; i++) pd_profile_init(&exp[i], &s);
    build(&exp[0], EV_A, 1);
    build(&exp[1], EV_A, 3);
    build(&exp[1], EV_B, 2);
    build(&exp[2], EV_B, 1);
    build(&exp[3], EV_A + 1, 2);
    pd_profile tmp;
    pd_profile_init(&tmp, &s);
    pd_store_batch *bt = pd_store_batch_new(st);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 - 2, 3, "u-1", 3, &exp[0], err, sizeof err), 0);
    build(&tmp, EV_A, 3);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 3, "u-1", 3, &tmp, err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 + 1, 3, "u-1", 3, &exp[2], err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 - 1, 3, "u-2", 3, &exp[2], err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 + 2, 4, "u-1", 3, &exp[2], err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    pd_profile_reset(&tmp);
    build(&tmp, EV_B, 2);
    CHECK_INT(pd_store_batch_merge(bt, DAY0, 3, "u-1", 3, &tmp, err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 + 3, 3, "u-1", 3, &exp[3], err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);

    pd_store_range r = {0};
    /* whole span: 4 days of u-1 in partition 3, ascending */
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 - 10, DAY0 + 10, 3, "u-1", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 4);
    for (int i = 0; i < r.n && i < 4; i++) {
        CHECK_INT(r.days[i], expday[i]);
        CHECK(pd_profile_equal(&r.profs[i], &exp[i]));
    }
    /* inner range [DAY0-1, DAY0+1]: DAY0 and DAY0+1 (reusing r) */
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 - 1, DAY0 + 1, 3, "u-1", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 2);
    if (r.n == 2) {
        CHECK_INT(r.days[0], DAY0);
        CHECK_INT(r.days[1], DAY0 + 1);
        CHECK(pd_profile_equal(&r.profs[0], &exp[1]));
        CHECK(pd_profile_equal(&r.profs[1], &exp[2]));
    }
    /* single day; a range with no families; unknown user; other partition */
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 + 3, DAY0 + 3, 3, "u-1", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 1);
    if (r.n == 1) CHECK(pd_profile_equal(&r.profs[0], &exp[3]));
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 + 100, DAY0 + 200, 3, "u-1", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 0);
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 - 10, DAY0 + 10, 3, "u-9", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 0);
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 - 10, DAY0 + 10, 4, "u-1", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 1);
    if (r.n == 1) CHECK_INT(r.days[0], DAY0 + 2);

    /* a snapshot taken before a write does not see it */
    pd_store_snap *sn = pd_store_snap_acquire(st);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 - 2, 3, "u-1", 3, &exp[0], err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 + 5, 3, "u-1", 3, &exp[0], err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    CHECK_INT(pd_store_get_profile_range(st, sn, DAY0 - 2, DAY0 + 5, 3, "u-1", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 4);
    if (r.n == 4) CHECK(pd_profile_equal(&r.profs[0], &exp[0]));
    pd_store_snap_release(st, sn);
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 - 2, DAY0 + 5, 3, "u-1", 3, &r, err,
                                         sizeof err), 0);
    CHECK_INT(r.n, 5);
    if (r.n == 5) {
        CHECK_INT(r.days[4], DAY0 + 5);
        CHECK_INT(r.profs[0].events, 2 * exp[0].events);
    }
    pd_store_range_free(&r);
    pd_store_range_free(&r); /* idempotent */
    pd_store_batch_free(bt);
    pd_profile_free(&tmp);
    for (int i = 0; i < 5; i++) pd_profile_free(&exp[i]);
    pd_store_close(st);
out:
    pd_free(dir);
}

/* Sets (val != NULL) or deletes meta record `key` of the closed store at
 * dir with the raw RocksDB API; returns 0 on success. If `got` is given, the
 * record's previous value (NUL-terminated, "" when absent) is copied there. */
static int raw_meta(const char *dir, const char *key, const char *val, char *got, size_t gotlen)
{
    const char *names[] = {"default", "meta", "dedup"};
    rocksdb_options_t *o = rocksdb_options_create();
    const rocksdb_options_t *co[] = {o, o, o};
    rocksdb_column_family_handle_t *h[3];
    char *re = NULL;
    int rc = -1;
    rocksdb_t *db = rocksdb_open_column_families(o, dir, 3, names, co, h, &re);
    if (!db) {
        rocksdb_free(re);
        rocksdb_options_destroy(o);
        return -1;
    }
    if (got) {
        size_t n = 0;
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        char *v = rocksdb_get_cf(db, ro, h[1], key, strlen(key), &n, &re);
        rocksdb_readoptions_destroy(ro);
        snprintf(got, gotlen, "%.*s", v ? (int)n : 0, v ? v : "");
        rocksdb_free(v);
    }
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    if (!re && val) rocksdb_put_cf(db, wo, h[1], key, strlen(key), val, strlen(val), &re);
    else if (!re) rocksdb_delete_cf(db, wo, h[1], key, strlen(key), &re);
    rc = re ? -1 : 0;
    rocksdb_free(re);
    rocksdb_writeoptions_destroy(wo);
    for (int i = 0; i < 3; i++) rocksdb_column_family_handle_destroy(h[i]);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    return rc;
}

/* The event dialect is recorded in every new store ("dialect" = "3"), and
 * a store written under another one (no record: dialect 1, the cJSON
 * rules; format 1 stores all predate the record) is refused read-write
 * with the rebuild instruction, while the dump tool's read-only open still
 * reads it. */
TEST(store_dialect_recorded_and_checked)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[1024] = "", got[32];
    pd_store_opts o = {0}, ro = {.read_only = 1};
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    pd_store_close(st);
    CHECK_INT(raw_meta(dir, "dialect", NULL, got, sizeof got), 0); /* read and delete */
    CHECK_STR(got, "3");
    static const struct { const char *format, *dialect, *names; } old[] = {
        {"5", NULL, "dialect 1 (no dialect record"},
        {"5", "1", "dialect 1;"},
        {"5", "2", "dialect 2;"}, /* event-time de-dup, no future bound */
        {"5", "4", "dialect 4;"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(old); i++) {
        CHECK_INT(raw_meta(dir, "format", old[i].format, NULL, 0), 0);
        CHECK_INT(raw_meta(dir, "dialect", old[i].dialect, NULL, 0), 0);
        st = NULL;
        err[0] = '\0';
        CHECK_INT(pd_store_open(&st, dir, &s, &o, err, sizeof err), PD_EINVAL);
        CHECK(st == NULL);
        if (!strstr(err, old[i].names) || !strstr(err, "delete the data directory") ||
            !strstr(err, dir) || !strstr(err, "RFC 8259"))
            pd_test_fail(__FILE__, __LINE__, "case %zu: message \"%s\"", i, err);
        pd_store_close(st);
        st = NULL;
        CHECK_INT(pd_store_open(&st, dir, &s, &ro, err, sizeof err), PD_OK);
        pd_store_close(st);
    }
    /* nothing was rewritten by the refused opens */
    CHECK_INT(raw_meta(dir, "format", "5", got, sizeof got), 0);
    CHECK_STR(got, "5");
    CHECK_INT(raw_meta(dir, "dialect", "3", got, sizeof got), 0);
    CHECK_STR(got, "4");
    st = open_store(dir, &s, 0);
    CHECK(st != NULL);
    pd_store_close(st);
out:
    pd_free(dir);
}

/* Stores of format 1 and 2 hold profile values of encodings 1-2, which
 * cannot become version 3 state, format 3 stores lack the population
 * profiles, format 4 stores lack the default recent items: refused
 * read-write and read-only, with the rebuild instruction. */
TEST(store_old_format_refused)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[1024] = "";
    pd_store_opts o = {0}, ro = {.read_only = 1};
    pd_store *st = open_store(dir, &s, 0);
    if (!st) goto out;
    pd_store_close(st);
    static const char *const formats[] = {"4", "3", "2", "1"};
    for (size_t i = 0; i < PD_ARRAY_LEN(formats); i++) {
        CHECK_INT(raw_meta(dir, "format", formats[i], NULL, 0), 0);
        for (int k = 0; k < 2; k++) {
            st = NULL;
            err[0] = '\0';
            CHECK_INT(pd_store_open(&st, dir, &s, k ? &ro : &o, err, sizeof err), PD_EINVAL);
            CHECK(st == NULL);
            char want[32];
            snprintf(want, sizeof want, "format version '%s'", formats[i]);
            if (!strstr(err, want) || !strstr(err, "Rebuild it") || !strstr(err, "delete the data directory"))
                pd_test_fail(__FILE__, __LINE__, "format %s: message \"%s\"", formats[i], err);
        }
    }
    CHECK_INT(raw_meta(dir, "format", "5", NULL, 0), 0);
    st = open_store(dir, &s, 0);
    CHECK(st != NULL);
    pd_store_close(st);
out:
    pd_free(dir);
}

/* ---- day filters ---- */

/* The oracle of the day filter tests: user f-<i> has one event on day
 * DAY0 + d (d in 0..6) exactly when this holds. */
static int fday(int i, int d)
{
    return (i * 7 + d * 3) % 5 < 2;
}

static pd_store *open_store_bits(const char *dir, const pd_schema *s, int bits)
{
    return open_store_opts(dir, s, 0, bits, 0);
}

/* Waits (bounded) for the filler thread; returns the stats. */
static pd_store_filter_stats filters_filled(pd_store *st)
{
    pd_store_filter_stats fs;
    for (int i = 0; i < 1000; i++) {
        pd_store_get_filter_stats(st, &fs);
        if (fs.days_filling == 0) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return fs;
}

/* Every 7th user's range [DAY0-1, DAY0+8] holds exactly its oracle days,
 * one event each; users never written have nothing. Returns mismatches. */
static int check_fdays(pd_store *st, int nusers)
{
    char err[512], u[32];
    pd_store_range r = {0};
    int bad = 0;
    for (int i = 0; i < nusers; i += 7) {
        snprintf(u, sizeof u, "f-%d", i);
        if (pd_store_get_profile_range(st, NULL, DAY0 - 1, DAY0 + 8, i % 4, u, strlen(u), &r, err,
                                       sizeof err) != 0) {
            bad++;
            continue;
        }
        int k = 0;
        for (int d = 0; d < 7; d++) {
            if (!fday(i, d)) continue;
            if (k >= r.n || r.days[k] != DAY0 + d || r.profs[k].events != 1) bad++;
            k++;
        }
        if (k != r.n) bad++;
        snprintf(u, sizeof u, "g-%d", i);
        if (pd_store_get_profile_range(st, NULL, DAY0 - 1, DAY0 + 8, i % 4, u, strlen(u), &r, err,
                                       sizeof err) != 0 || r.n != 0)
            bad++;
    }
    pd_store_range_free(&r);
    return bad;
}

TEST(store_day_filters)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "", u[32];
    const int nusers = 3000;
    int hits = 0;
    pd_store *st = open_store_bits(dir, &s, 10);
    if (!st) goto out;
    pd_profile p;
    pd_profile_init(&p, &s);
    add_json(&p, EV_A[0]);
    pd_store_batch *bt = pd_store_batch_new(st);
    for (int i = 0; i < nusers; i++) {
        snprintf(u, sizeof u, "f-%d", i);
        for (int d = 0; d < 7; d++)
            if (fday(i, d)) CHECK_INT(pd_store_batch_merge(bt, DAY0 + d, i % 4, u, strlen(u), &p, err, sizeof err), 0);
        if (i % 500 == 499) CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    }
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    pd_store_batch_free(bt);
    for (int i = 0; i < nusers; i += 7)
        for (int d = 0; d < 7; d++) hits += fday(i, d);

    /* families created by this store: filters complete from the start */
    pd_store_filter_stats fs;
    pd_store_get_filter_stats(st, &fs);
    CHECK_INT(fs.days_filling, 0);
    CHECK(fs.bytes > 0);
    CHECK_INT(check_fdays(st, nusers), 0);
    pd_store_get_filter_stats(st, &fs);
    /* 2 x 429 queries over 7 families: only the hits (+ ~1 % false
     * positives) are read */
    CHECK_INT(fs.days_read + fs.days_skipped, 2 * 7 * ((nusers + 6) / 7));
    CHECK(fs.days_read >= (uint64_t)hits);
    CHECK(fs.days_read <= (uint64_t)hits + 2 * 7 * ((nusers + 6) / 7) / 20);
    pd_store_close(st);

    /* reopened: the filler thread rebuilds the filters from the families;
     * answers are right while it runs and after */
    st = open_store_bits(dir, &s, 10);
    if (!st) goto out_p;
    CHECK_INT(check_fdays(st, nusers), 0);
    fs = filters_filled(st);
    CHECK_INT(fs.days_filling, 0);
    CHECK_INT(fs.days_limited, 0);
    uint64_t skipped0 = fs.days_skipped;
    CHECK_INT(check_fdays(st, nusers), 0);
    pd_store_get_filter_stats(st, &fs);
    CHECK(fs.days_skipped > skipped0 + (uint64_t)(nusers / 7) * 7);
    pd_store_close(st);

    /* a memory limit with room for two of the seven filters (~1,200 users
     * a day, ~1.6 KB each): the two newest days get them, the older five
     * are read always; answers stay right, also for a new day (no room) */
    st = open_store_opts(dir, &s, 0, 10, 4000);
    if (!st) goto out_p;
    fs = filters_filled(st);
    CHECK_INT(fs.days_filling, 0);
    CHECK_INT(fs.days_limited, 5);
    CHECK(fs.bytes > 0 && fs.bytes <= 4000);
    CHECK_INT(check_fdays(st, nusers), 0);
    pd_store_filter_stats fs2;
    pd_store_get_filter_stats(st, &fs2);
    /* only days DAY0+5 and DAY0+6 can be skipped: each 7th user is on
     * 2/5 of them */
    CHECK(fs2.days_skipped - fs.days_skipped > (uint64_t)(nusers / 7) * 2 * 2 / 5);
    CHECK(fs2.days_skipped - fs.days_skipped <= (uint64_t)(nusers / 7 + 1) * 2 * 2);
    /* which days: a user with no data is skipped on the newest two only */
    pd_store_range r = {0};
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0, DAY0 + 1, 0, "nobody", 6, &r, err, sizeof err), 0);
    pd_store_get_filter_stats(st, &fs);
    CHECK(fs.days_skipped == fs2.days_skipped);
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 + 5, DAY0 + 6, 0, "nobody", 6, &r, err, sizeof err), 0);
    pd_store_get_filter_stats(st, &fs2);
    CHECK(fs2.days_skipped > fs.days_skipped);
    bt = pd_store_batch_new(st);
    CHECK_INT(pd_store_batch_merge(bt, DAY0 + 7, 0, "f-late", 6, &p, err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    pd_store_batch_free(bt);
    pd_store_get_filter_stats(st, &fs);
    CHECK_INT(fs.days_limited, 6);
    CHECK_INT(pd_store_get_profile_range(st, NULL, DAY0 + 7, DAY0 + 7, 0, "f-late", 6, &r, err, sizeof err), 0);
    CHECK_INT(r.n, 1);
    pd_store_range_free(&r);
    pd_store_close(st);

    /* filters off: the same answers, nothing skipped or counted */
    st = open_store_bits(dir, &s, -1);
    if (!st) goto out_p;
    CHECK_INT(check_fdays(st, nusers), 0);
    pd_store_get_filter_stats(st, &fs);
    CHECK_INT(fs.bytes, 0);
    CHECK_INT(fs.days_skipped, 0);
    pd_store_close(st);
out_p:
    pd_profile_free(&p);
out:
    pd_free(dir);
}

/* A commit that writes one user on two days becomes visible to a range
 * query on both days or on neither, although the query consults the day
 * filters before it reads (the generation check). */
typedef struct {
    pd_store *st;
    _Atomic int next;  /* the user being written */
    _Atomic int done;
    int torn, reads;
} race_ctx;

static void *race_reader(void *arg)
{
    race_ctx *c = arg;
    char err[512], u[32];
    pd_store_range r = {0};
    for (int it = 0; it < 2000000 && !atomic_load(&c->done); it++) {
        int i = atomic_load(&c->next);
        snprintf(u, sizeof u, "r-%d", i);
        if (pd_store_get_profile_range(c->st, NULL, DAY0, DAY0 + 1, 0, u, strlen(u), &r, err,
                                       sizeof err) != 0 || r.n == 1)
            c->torn++;
        c->reads++;
    }
    pd_store_range_free(&r);
    return NULL;
}

TEST(store_day_filter_commit_race)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char *dir = tmpdir_copy(), err[512] = "", u[32];
    pd_store *st = open_store_bits(dir, &s, 10);
    if (!st) goto out;
    pd_profile p;
    pd_profile_init(&p, &s);
    add_json(&p, EV_A[0]);
    race_ctx c = {.st = st};
    pthread_t th;
    pthread_create(&th, NULL, race_reader, &c);
    pd_store_batch *bt = pd_store_batch_new(st);
    for (int i = 0; i < 20000; i++) {
        snprintf(u, sizeof u, "r-%d", i);
        atomic_store(&c.next, i);
        CHECK_INT(pd_store_batch_merge(bt, DAY0, 0, u, strlen(u), &p, err, sizeof err), 0);
        CHECK_INT(pd_store_batch_merge(bt, DAY0 + 1, 0, u, strlen(u), &p, err, sizeof err), 0);
        CHECK_INT(pd_store_commit(st, bt, err, sizeof err), 0);
    }
    atomic_store(&c.done, 1);
    pthread_join(th, NULL);
    pd_store_batch_free(bt);
    CHECK_INT(c.torn, 0);
    CHECK(c.reads > 0);
    pd_store_filter_stats fs;
    pd_store_get_filter_stats(st, &fs);
    printf("    (%d reads, %llu retried without filters)\n", c.reads, (unsigned long long)fs.retries);
    pd_profile_free(&p);
    pd_store_close(st);
out:
    pd_free(dir);
}

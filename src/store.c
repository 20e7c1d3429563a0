/*
 * store.c -- the per-worker RocksDB state store: open and close, column
 * families, the meta records (format, schema, dialect), the day map and
 * its filters (see store.h for the key layout and the commit contract).
 * Writing (merge operator, batches, commit, retention, imports) is in
 * store_write.c, reading (checkpoints, profiles, scans, snapshots,
 * exports) in store_read.c; their shared types are in store_int.h.
 *
 * Layout on disk: one RocksDB database with the families "default",
 * "meta", "dedup" and one "dYYYY-MM-DD" family per day. The meta family
 * holds the records
 *   "format"       store format version, decimal text ("5"). Version 1
 *                  kept one de-dup key per event (partition + event id ->
 *                  ts i64 BE); such stores predate the dialect record and
 *                  are refused for it. Version 2 held profile values of
 *                  encoding versions 1-2 (bottom-k caps, no levels or
 *                  sketches), which cannot be turned into version 3 state
 *                  (the evicted values and the events' occurrence levels
 *                  are gone): refused, read-write and read-only alike,
 *                  with the rebuild instruction.
 *   "schema"       canonical schema JSON (pd_schema_to_json)
 *   "fingerprint"  schema fingerprint, 16 lower-case hex digits
 *   "dialect"      event dialect version (PD_EVENT_DIALECT), decimal text;
 *                  absent in stores written before it existed (dialect 1)
 *   'o' + u32 BE   checkpoint: next_offset i64 BE + clock_ms i64 BE
 *   'x' + u32 BE   side-effect record (format in sidefx.c)
 *   "partitions"   the input topic's partition count when last seen, decimal
 *                  text (lets a worker start serving while Kafka is down)
 *   't' + u32 BE   start time of an imported partition: i64 BE ms (store.h)
 *   "import"       "running" while `profilectl import` builds the store,
 *                  "done" after its last commit (store.h)
 *   "population_max_values"  the categorical cap of the population
 *                  profiles (format 4), decimal text: written at creation;
 *                  a worker configured with another cap is refused (the
 *                  stored population is a function of the log under it)
 * Format 3 stores lack the population profiles (the key of a partition
 * with an empty user id in each day family, store.h): refused with the
 * rebuild instruction, since the population of past events cannot be
 * recomputed from the users' capped profiles. Format 4 stores were written
 * when recent items were off unless the schema had "recent" (now a schema
 * without the key keeps 10 per user-day) and their population profiles
 * kept recent items under such a schema (now they never do): refused with
 * the rebuild instruction (the recent items of past events are not in
 * them; no deployment of format 4 exists).
 * A store is only ever opened read-write with the schema whose fingerprint
 * it records and under the event dialect it records: its state is a
 * function of the log under both, so a mismatch is refused at open, with
 * the rebuild instruction for a dialect change.
 *
 * Day map and threads: the store keeps a sorted array of day entries
 * {day, family handle, refs}. The map itself holds one reference to each
 * listed entry; every reader (get, scan, stats, snapshot) takes one more
 * under `lock` while it uses the handle. Dropping a day unlists the entry,
 * drops the family in RocksDB and releases the map's reference; whoever
 * releases the last reference destroys the handle (RocksDB keeps a dropped
 * family's data readable until its last handle is destroyed). Only the
 * writer thread adds (batch_merge creates families on demand) or removes
 * entries, so the writer may use a handle it found without a reference.
 *
 * Day filters. A range query would otherwise ask RocksDB about every day
 * family in its range, and each family costs a lookup (super-version,
 * memtable filter, the families' SST filters) although a user has events on
 * few of the days: 30 lookups for a 30-day query. Every day entry therefore
 * carries an in-memory Bloom filter (bloom.c) of the data keys written to
 * its family, and a range query reads only the days whose filter may hold
 * the key (a pinned Get when that is one day, else one MultiGet). Rules:
 *   - writers add a key to its day's filter when they put it into a batch,
 *     i.e. before the commit that makes it visible (batch_merge,
 *     pd_store_batch_put_profile_raw: the only writes of data keys);
 *     deletes and dropped batches leave bits behind (false positives only);
 *   - a family created by this process starts with a complete (empty)
 *     filter, sized like the largest filter so far; the families found at
 *     open get a filter the filler thread completes by reading their keys
 *     (newest day first), and until it is complete (`filter_full`) the
 *     query reads that day as before;
 *   - consistency: one MultiGet reads all days from one sequence number, so
 *     a commit is seen whole or not at all. But a commit could land between
 *     the listing of the days in range (or the filter checks) and the read,
 *     and be visible on the days listed and passed but not on a day it
 *     created or whose filter ruled it out. So every commit bumps `wgen`
 *     (release) after its keys are in the filters and its families in the
 *     map, and before its write; a query reads `wgen` (acquire) before it
 *     lists the days and after the read, and when it changed lists and
 *     reads every day again without filters (a third attempt is taken as
 *     it is). A query with an explicit snapshot needs no check: the
 *     snapshot's days and data had their bits set before it was taken.
 * Memory: about day_filter_bits / 8 bytes per user-day, plus the headroom of
 * a new day's filter (gauge profiled_day_filter_bytes), within one budget
 * of day_filter_max_mb for all of them (bloom.h): a day whose filter does
 * not fit gets none and is read always, and a filter that cannot grow
 * takes keys beyond its capacity (more false positives, never a false
 * negative). At open, filters are created newest day first, so the days
 * queries ask for most keep theirs.
 *
 * Read-only mode opens a RocksDB secondary instance (with its own scratch
 * directory, which holds the secondary's info log) so the dump tool can read
 * while a worker holds the primary. It writes nothing into the data
 * directory: no schema records, no batches, no drops. A secondary only sees
 * the families that existed when it opened; pd_store_refresh catches up
 * with writes to those.
 *
 * Extension of the store.h contract: in read_only mode the schema argument
 * of pd_store_open may be NULL, meaning "use the schema recorded in the
 * store" (loaded from the "schema" record, owned by the store).
 */
#include "store_int.h"
#include "bloom.h"
#include "event.h"
#include "util.h"

#include <rocksdb/c.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* helpers                                                             */

/* Converts a RocksDB error string (malloc'd by RocksDB) into an error
 * code + message and frees it. */
int store_rdb_err(char *e, char *err, size_t errlen, const char *what)
{
    int code = (e && strncmp(e, "Corruption", 10) == 0) ? PD_ECORRUPT : PD_EIO;
    pd_seterr(err, errlen, code, "%s: %s", what, e ? e : "unknown error");
    rocksdb_free(e);
    return code;
}

int pd_store_dir_check(pd_store *st, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat sb;
    if (stat(st->dir, &sb) != 0)
        return pd_seterr(err, errlen, PD_EIO, "data directory %s: %s", st->dir, strerror(errno));
    if (sb.st_dev != st->dir_dev || sb.st_ino != st->dir_ino)
        return pd_seterr(err, errlen, PD_EIO, "data directory %s was replaced by another directory", st->dir);
    snprintf(path, sizeof path, "%s/CURRENT", st->dir);
    if (stat(path, &sb) != 0)
        return pd_seterr(err, errlen, PD_EIO, "data directory %s: CURRENT: %s", st->dir, strerror(errno));
    return PD_OK;
}

/* The pid holding the POSIX lock on dir/LOCK (from /proc/locks), or 0. */
static long store_lock_holder(const char *dir)
{
    char path[PATH_MAX], line[256];
    struct stat sb;
    snprintf(path, sizeof path, "%s/LOCK", dir);
    if (stat(path, &sb) != 0) return 0;
    FILE *f = fopen("/proc/locks", "r");
    if (!f) return 0;
    long pid = 0;
    while (!pid && fgets(line, sizeof line, f)) {
        long p;
        unsigned long long ino;
        /* "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF" */
        if (sscanf(line, "%*s %*s %*s %*s %ld %*x:%*x:%llu", &p, &ino) == 2 && ino == (unsigned long long)sb.st_ino)
            pid = p;
    }
    fclose(f);
    return pid;
}

/* RocksDB's "While lock file: D/LOCK: Resource temporarily unavailable"
 * said as what it means: another process has the store open. */
static int store_in_use_err(const char *dir, char *err, size_t errlen)
{
    long pid = store_lock_holder(dir);
    if (pid > 0)
        return pd_seterr(err, errlen, PD_EAGAIN, "data directory %s is in use by another process (pid %ld)", dir, pid);
    return pd_seterr(err, errlen, PD_EAGAIN, "data directory %s is in use by another process", dir);
}

void pd_store_day_name(int64_t day, char *out)
{
    out[0] = 'd';
    pd_day_format(day, out + 1);
}

/* Parses "dYYYY-MM-DD" into a day number; 0 on success. */
static int parse_day_name(const char *name, int64_t *day)
{
    size_t n = strlen(name);
    if (n != 11 || name[0] != 'd') return -1;
    if (pd_day_parse(name + 1, 10, day) != PD_OK) return -1;
    char back[12];
    pd_store_day_name(*day, back);
    return strcmp(back, name) == 0 ? 0 : -1;
}

void store_data_key(pd_buf *k, int32_t partition, const char *s, size_t n)
{
    uint8_t p[4];
    pd_assert(partition >= 0);
    pd_put_u32be(p, (uint32_t)partition);
    k->len = 0;
    pd_buf_append(k, p, 4);
    if (n) pd_buf_append(k, s, n);
}

void store_ckpt_key(uint8_t *k, int32_t partition)
{
    pd_assert(partition >= 0);
    k[0] = 'o';
    pd_put_u32be(k + 1, (uint32_t)partition);
}

void store_start_key(uint8_t *k, int32_t partition)
{
    pd_assert(partition >= 0);
    k[0] = 't';
    pd_put_u32be(k + 1, (uint32_t)partition);
}

void store_sidefx_key(uint8_t *k, int32_t partition)
{
    pd_assert(partition >= 0);
    k[0] = 'x';
    pd_put_u32be(k + 1, (uint32_t)partition);
}

/* ------------------------------------------------------------------ */
/* day map                                                             */

/* Index of the first entry with day >= `day` (lock held). */
int store_days_lower_bound(pd_dayent *const *days, int n, int64_t day)
{
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (days[mid]->day < day) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Inserts a new entry holding the map's reference (lock held). */
void store_days_insert_locked(pd_store *st, pd_dayent *e)
{
    int i = store_days_lower_bound(st->days, st->ndays, e->day);
    pd_assert(i == st->ndays || st->days[i]->day != e->day);
    if (st->ndays == st->capdays) {
        st->capdays = st->capdays ? st->capdays * 2 : 16;
        st->days = pd_realloc(st->days, (size_t)st->capdays * sizeof *st->days);
    }
    memmove(st->days + i + 1, st->days + i, (size_t)(st->ndays - i) * sizeof *st->days);
    st->days[i] = e;
    st->ndays++;
}

/* A new entry holding the map's reference, without a filter yet. */
static pd_dayent *dayent_new(int64_t day, rocksdb_column_family_handle_t *cf)
{
    pd_dayent *e = pd_calloc(1, sizeof *e);
    e->day = day;
    e->cf = cf;
    e->refs = 1;
    return e;
}

/* Gives e (not shared yet) its filter when filters are on; 0 when the
 * budget has no room for it (the day is read always). `full`: the family is
 * new and empty, so the filter is complete from the start (else the filler
 * thread completes it). */
static int dayent_filter(pd_store *st, pd_dayent *e, uint64_t expected_keys, int full)
{
    if (st->filter_bits <= 0) return 1;
    e->filter = pd_bloom_new(expected_keys, st->filter_bits, &st->filter_budget);
    atomic_init(&e->filter_full, full);
    return e->filter != NULL;
}

static void warn_filter_budget(pd_store *st, const char *what)
{
    pd_warn("store: day_filter_max_mb reached (%zu bytes in use): no day filter for %s (read by every query of its range)",
            atomic_load_explicit(&st->filter_budget.used, memory_order_relaxed), what);
}

/* 0 when the day's family certainly has no record under the key whose
 * XXH3 is h. */
int store_day_may_hold(pd_dayent *e, uint64_t h)
{
    return !e->filter || !atomic_load_explicit(&e->filter_full, memory_order_acquire) ||
           pd_bloom_may_contain(e->filter, h);
}

/* Whoever drops the last reference. */
static void dayent_destroy(pd_dayent *e)
{
    rocksdb_column_family_handle_destroy(e->cf);
    pd_bloom_free(e->filter);
    pd_free(e);
}


void store_dayent_unref(pd_store *st, pd_dayent *e)
{
    store_dayents_release(st, &e, 1);
}

/* Referenced entry for `day`, or NULL. Release with dayent_unref. */
pd_dayent *store_dayent_ref(pd_store *st, int64_t day)
{
    pd_dayent *e = NULL;
    pthread_mutex_lock(&st->lock);
    int i = store_days_lower_bound(st->days, st->ndays, day);
    if (i < st->ndays && st->days[i]->day == day) {
        e = st->days[i];
        e->refs++;
    }
    pthread_mutex_unlock(&st->lock);
    return e;
}

/* References every entry (day == INT64_MIN) or the one for `day`; *out is
 * malloc'd (caller releases each entry and frees the array). */
void store_dayents_ref(pd_store *st, int64_t day, pd_dayent ***out, int *n)
{
    pthread_mutex_lock(&st->lock);
    pd_dayent **v = pd_malloc((size_t)(st->ndays ? st->ndays : 1) * sizeof *v);
    int k = 0;
    for (int i = 0; i < st->ndays; i++) {
        if (day != INT64_MIN && st->days[i]->day != day) continue;
        st->days[i]->refs++;
        v[k++] = st->days[i];
    }
    pthread_mutex_unlock(&st->lock);
    *out = v;
    *n = k;
}

/* Releases one reference to each of v[0..n) in one lock round; entries
 * whose last reference this was (dropped meanwhile) are destroyed after the
 * lock. Overwrites v. */
void store_dayents_release(pd_store *st, pd_dayent **v, int n)
{
    int ndead = 0;
    pthread_mutex_lock(&st->lock);
    for (int i = 0; i < n; i++) {
        pd_assert(v[i]->refs > 0);
        if (--v[i]->refs == 0) v[ndead++] = v[i];
    }
    pthread_mutex_unlock(&st->lock);
    for (int i = 0; i < ndead; i++) dayent_destroy(v[i]);
}

void store_dayents_unref(pd_store *st, pd_dayent **v, int n)
{
    store_dayents_release(st, v, n);
    pd_free(v);
}

/* The writer (the ingest committer thread, or the ingest thread while no
 * commit is in flight -- never both at once): the entry of `day`, its
 * family created if missing. It stays valid until the writer itself drops
 * the day. A new family's filter is sized like the largest one so far (days
 * tend to look alike). */
int store_day_for_write(pd_store *st, int64_t day, pd_dayent **out, char *err, size_t errlen)
{
    /* Only the writer adds or removes entries, so the one it finds needs
     * no reference of its own, and the one it used last stays valid until
     * it drops that day itself: writes come sorted by day, so most find
     * their entry there without taking the lock the queries take. */
    if (st->wlast && st->wlast->day == day) {
        *out = st->wlast;
        return PD_OK;
    }
    pthread_mutex_lock(&st->lock);
    int i = store_days_lower_bound(st->days, st->ndays, day);
    pd_dayent *e = i < st->ndays && st->days[i]->day == day ? st->days[i] : NULL;
    pthread_mutex_unlock(&st->lock);
    if (e) {
        *out = st->wlast = e;
        return PD_OK;
    }
    char name[12], *re = NULL;
    pd_store_day_name(day, name);
    rocksdb_column_family_handle_t *h = rocksdb_create_column_family(st->db, st->day_opts, name, &re);
    if (re) return store_rdb_err(re, err, errlen, "create column family");
    uint64_t hint = 0;
    pthread_mutex_lock(&st->lock);
    for (int k = 0; k < st->ndays; k++)
        if (st->days[k]->filter) hint = PD_MAX(hint, pd_bloom_count(st->days[k]->filter));
    pthread_mutex_unlock(&st->lock);
    e = dayent_new(day, h);
    if (!dayent_filter(st, e, PD_MAX(hint + hint / 4, FILTER_MIN_KEYS), 1)) warn_filter_budget(st, name);
    pthread_mutex_lock(&st->lock);
    store_days_insert_locked(st, e);
    pthread_mutex_unlock(&st->lock);
    *out = st->wlast = e;
    return PD_OK;
}

/* Records a data key in its day's filter; before the write that stores it. */
void store_filter_add(pd_dayent *e, const char *key, size_t klen)
{
    if (e->filter) pd_bloom_add(e->filter, XXH3_64bits(key, klen));
}

/* ------------------------------------------------------------------ */
/* open / close                                                        */

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static void free_options(pd_store *st)
{
    if (st->db_opts) rocksdb_options_destroy(st->db_opts);
    if (st->dedup_opts) rocksdb_options_destroy(st->dedup_opts);
    if (st->day_opts) rocksdb_options_destroy(st->day_opts);
    if (st->cache) rocksdb_cache_destroy(st->cache);
    st->db_opts = st->dedup_opts = st->day_opts = NULL;
    st->cache = NULL;
}

/* Builds the three option sets. */
static void build_options(pd_store *st, const pd_store_opts *o, int compression)
{
    int64_t cache_mb = o && o->block_cache_mb > 0 ? o->block_cache_mb : 64;
    int64_t wbuf_mb = o && o->write_buffer_mb > 0 ? o->write_buffer_mb : 32;
    st->write_buffer_mb = wbuf_mb;
    st->cache = rocksdb_cache_create_lru((size_t)cache_mb << 20);

    rocksdb_block_based_table_options_t *plain = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(plain, st->cache);
    rocksdb_block_based_table_options_t *bloom = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(bloom, st->cache);
    /* the table options take ownership of the policy */
    rocksdb_block_based_options_set_filter_policy(bloom, rocksdb_filterpolicy_create_bloom(10));
    /* Memory bound: index and filter blocks live in the block cache (and
     * count against block_cache_mb) instead of in table readers outside
     * it, which grow with every SST file written. High priority keeps them
     * ahead of data blocks; level-0 files' ones are pinned, as queries of
     * recent days hit those most. */
    for (int i = 0; i < 2; i++) {
        rocksdb_block_based_table_options_t *t = i ? bloom : plain;
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
        rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t, 1);
        rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    }

    rocksdb_options_t *opts[3];
    for (int i = 0; i < 3; i++) {
        rocksdb_options_t *x = rocksdb_options_create();
        rocksdb_options_set_create_if_missing(x, st->read_only ? 0 : 1);
        rocksdb_options_set_create_missing_column_families(x, st->read_only ? 0 : 1);
        rocksdb_options_set_write_buffer_size(x, (size_t)wbuf_mb << 20);
        rocksdb_options_set_compression(x, compression);
        rocksdb_options_set_keep_log_file_num(x, 4);
        rocksdb_options_set_max_log_file_size(x, 16u << 20);
        if (st->read_only) rocksdb_options_set_max_open_files(x, -1);
        /* Memory bound: every day family has its own memtable, so one shared
         * budget caps them all (old days' memtables get flushed when it is
         * reached), and the WAL cap forces flushes of families that stopped
         * receiving writes. Total memtable memory <= 2 x write_buffer_mb. */
        rocksdb_options_set_db_write_buffer_size(x, (size_t)(2 * wbuf_mb) << 20);
        rocksdb_options_set_max_total_wal_size(x, (uint64_t)(4 * wbuf_mb) << 20);
        rocksdb_options_set_max_write_buffer_number(x, 2);
        rocksdb_options_set_block_based_table_factory(x, i == 0 ? plain : bloom);
        opts[i] = x;
    }
    st->db_opts = opts[0];
    st->dedup_opts = opts[1];
    st->day_opts = opts[2];
    /* Day families: a query probes every day of its range, and most users
     * have no events on most days. A whole-key memtable bloom filter
     * answers those misses without walking the skiplist (SST files have
     * their own bloom filters). 1% of the write buffer: ~16 bits per key
     * for a full memtable of ~200-byte entries. (The de-dup family is only
     * scanned when a partition is taken on, so it needs none.) */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(st->day_opts, 0.01);
    rocksdb_options_set_memtable_whole_key_filtering(st->day_opts, 1);
    /* Every memtable allocates its bloom filter from its arena when it is
     * created. With the default arena block (write buffer / 8) the filter
     * (write buffer / 100) is carved from a whole new block, so each day
     * family's empty memtable -- one per family that stopped receiving
     * writes, up to retention_days of them -- holds write buffer / 8 that
     * neither the memtable gauge nor flushes account for, yet counts
     * against db_write_buffer_size. Blocks of write buffer / 32 make the
     * filter more than a quarter block, which RocksDB allocates on its own
     * at its exact size. */
    rocksdb_options_set_arena_block_size(st->day_opts, (size_t)wbuf_mb << 15);
    /* options take ownership of the merge operator (shared) */
    /* bound read amplification for busy users: once a key has this many
     * merge operands in the memtable, the writer folds them into one value */
    rocksdb_options_set_merge_operator(
        st->day_opts, store_merge_operator(st));
    rocksdb_block_based_options_destroy(plain);
    rocksdb_block_based_options_destroy(bloom);
}

/* Family names to open: the existing ones (+ the required ones when
 * creating). *names malloc'd array of malloc'd strings. */
static int family_names(pd_store *st, char ***names, int *n, char *err, size_t errlen)
{
    char *re = NULL;
    size_t len = 0;
    char **list = rocksdb_list_column_families(st->db_opts, st->dir, &len, &re);
    if (re) {
        if (list) rocksdb_list_column_families_destroy(list, len);
        if (st->read_only)
            return store_rdb_err(re, err, errlen, "no readable store (listing column families)");
        rocksdb_free(re); /* a new database: nothing to list */
        list = NULL;
        len = 0;
    }
    static const char *const required[] = { "default", "meta", "dedup" };
    char **v = pd_calloc(len + PD_ARRAY_LEN(required), sizeof *v);
    int k = 0;
    for (size_t i = 0; i < len; i++) v[k++] = pd_strdup(list[i]);
    if (list) rocksdb_list_column_families_destroy(list, len);
    if (!st->read_only) {
        for (size_t r = 0; r < PD_ARRAY_LEN(required); r++) {
            int have = 0;
            for (int i = 0; i < k; i++) have |= strcmp(v[i], required[r]) == 0;
            if (!have) v[k++] = pd_strdup(required[r]);
        }
    }
    *names = v;
    *n = k;
    return PD_OK;
}

/* RocksDB's estimate of the keys in a family (0 when unknown). */
static uint64_t cf_num_keys(pd_store *st, rocksdb_column_family_handle_t *cf)
{
    char *v = rocksdb_property_value_cf(st->db, cf, "rocksdb.estimate-num-keys");
    uint64_t n = v ? strtoull(v, NULL, 10) : 0;
    rocksdb_free(v);
    return n;
}

static int open_db(pd_store *st, char *err, size_t errlen)
{
    char **names = NULL;
    int n = 0, rc = family_names(st, &names, &n, err, errlen);
    if (rc) return rc;
    const rocksdb_options_t **copts = pd_calloc((size_t)n, sizeof *copts);
    rocksdb_column_family_handle_t **h = pd_calloc((size_t)n, sizeof *h);
    int64_t *dayv = pd_calloc((size_t)n, sizeof *dayv);
    int *kind = pd_calloc((size_t)n, sizeof *kind); /* 0 other, 1 day */
    for (int i = 0; i < n; i++) {
        if (parse_day_name(names[i], &dayv[i]) == 0) {
            kind[i] = 1;
            copts[i] = st->day_opts;
        } else if (strcmp(names[i], "dedup") == 0) {
            copts[i] = st->dedup_opts;
        } else {
            copts[i] = st->db_opts;
        }
    }
    char *re = NULL;
    if (st->read_only)
        st->db = rocksdb_open_as_secondary_column_families(
            st->db_opts, st->dir, st->secdir, n, (const char *const *)names, copts, h, &re);
    else
        st->db = rocksdb_open_column_families(st->db_opts, st->dir, n, (const char *const *)names,
                                              copts, h, &re);
    if (re) {
        st->db = NULL;
        if (strstr(re, "While lock file") && strstr(re, "LOCK")) {
            rc = store_in_use_err(st->dir, err, errlen);
            rocksdb_free(re);
        } else {
            rc = store_rdb_err(re, err, errlen, "open store");
        }
        goto out;
    }
    st->other_cfs = pd_calloc((size_t)n, sizeof *st->other_cfs);
    for (int i = 0; i < n; i++) {
        if (kind[i]) {
            pd_dayent *e = dayent_new(dayv[i], h[i]);
            store_days_insert_locked(st, e); /* not shared yet */
        } else if (strcmp(names[i], "default") == 0) {
            st->cf_default = h[i];
        } else if (strcmp(names[i], "meta") == 0) {
            st->cf_meta = h[i];
        } else if (strcmp(names[i], "dedup") == 0) {
            st->cf_dedup = h[i];
        } else {
            st->other_cfs[st->n_other++] = h[i];
        }
    }
    /* Newest day first, so a tight day_filter_max_mb leaves the oldest days
     * without; the filler thread completes them. */
    int nofilter = 0;
    for (int i = st->ndays - 1; i >= 0 && st->filter_bits > 0; i--)
        nofilter += !dayent_filter(st, st->days[i], cf_num_keys(st, st->days[i]->cf), 0);
    if (nofilter) {
        char what[64];
        snprintf(what, sizeof what, "the oldest %d of %d days", nofilter, st->ndays);
        warn_filter_budget(st, what);
    }
    if (!st->cf_meta || !st->cf_dedup) {
        rc = pd_seterr(err, errlen, PD_ECORRUPT,
                       "store %s has no 'meta'/'dedup' column family (not a profiled store?)",
                       st->dir);
        goto out;
    }
out:
    for (int i = 0; i < n; i++) pd_free(names[i]);
    pd_free(names);
    pd_free(copts);
    pd_free(h);
    pd_free(dayv);
    pd_free(kind);
    return rc;
}

/* Reads meta record `key` (malloc'd copy in *val, caller frees with
 * pd_free); PD_ENOTFOUND when absent. */
static int meta_get(pd_store *st, const char *key, char **val, size_t *len, char *err,
                    size_t errlen)
{
    char *re = NULL;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v = rocksdb_get_cf(st->db, ro, st->cf_meta, key, strlen(key), len, &re);
    rocksdb_readoptions_destroy(ro);
    if (re) return store_rdb_err(re, err, errlen, "read meta");
    if (!v) return PD_ENOTFOUND;
    *val = pd_strndup(v, *len);
    rocksdb_free(v);
    return PD_OK;
}

int pd_store_get_partitions(pd_store *st, int32_t *n)
{
    char *v = NULL, err[128];
    size_t len = 0;
    int rc = meta_get(st, "partitions", &v, &len, err, sizeof err);
    if (rc) return rc;
    char *e;
    long x = strtol(v, &e, 10);
    rc = e == v || *e || x <= 0 || x > INT32_MAX ? PD_ECORRUPT : PD_OK;
    if (!rc) *n = (int32_t)x;
    pd_free(v);
    return rc;
}

int pd_store_set_partitions(pd_store *st, int32_t n, char *err, size_t errlen)
{
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    char v[16];
    int len = snprintf(v, sizeof v, "%d", (int)n);
    char *re = NULL;
    rocksdb_put_cf(st->db, st->wo, st->cf_meta, "partitions", 10, v, (size_t)len, &re);
    if (re) return store_rdb_err(re, err, errlen, "write partitions");
    return PD_OK;
}

int pd_store_get_import(pd_store *st, char *out, size_t outlen)
{
    char *v = NULL, err[128];
    size_t len = 0;
    int rc = meta_get(st, "import", &v, &len, err, sizeof err);
    if (rc) return rc;
    snprintf(out, outlen, "%.*s", (int)len, v);
    pd_free(v);
    return PD_OK;
}

int pd_store_set_import(pd_store *st, const char *state, char *err, size_t errlen)
{
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    char *re = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(wo, 1);
    rocksdb_put_cf(st->db, wo, st->cf_meta, "import", 6, state, strlen(state), &re);
    rocksdb_writeoptions_destroy(wo);
    if (re) return store_rdb_err(re, err, errlen, "write import state");
    return PD_OK;
}

/* The refusal of a store whose records were computed under another event
 * dialect (include/event.h): "dialect" absent means 1, the cJSON 1.7.15
 * rules, which accepted values the current rules reject and decoded some
 * strings differently, so replaying the same log would not reproduce the
 * stored state. */
static int check_dialect(pd_store *st, char *err, size_t errlen)
{
    char *dia = NULL;
    size_t dlen = 0;
    int rc = meta_get(st, "dialect", &dia, &dlen, err, errlen);
    if (rc != PD_OK && rc != PD_ENOTFOUND) return rc;
    char have[24];
    snprintf(have, sizeof have, "%.*s", rc == PD_OK ? (int)(dlen < 20 ? dlen : 20) : 1,
             rc == PD_OK ? dia : "1");
    pd_free(dia);
    if (strcmp(have, STORE_DIALECT) == 0) return PD_OK;
    if (st->read_only) { /* the dump tool may still read it */
        pd_warn("store %s: written under event dialect %s, this build parses dialect %s", st->dir,
                have, STORE_DIALECT);
        return PD_OK;
    }
    return pd_seterr(err, errlen, PD_EINVAL,
                     "store %s was written under event dialect %s%s; this build validates events "
                     "as dialect " STORE_DIALECT " (strict RFC 8259 JSON, docs/data-model.md), so "
                     "its state may differ from a replay of the same log. Rebuild it: stop this "
                     "worker, delete the data directory %s, and start the worker again (it copies "
                     "its partitions from a live peer of this build or replays the input topic)",
                     st->dir, have, rc == PD_ENOTFOUND ? " (no dialect record: cJSON 1.7.15 rules)" : "",
                     st->dir);
}

void store_pop_schema_set(pd_store *st, uint32_t cap)
{
    pd_assert(st->schema && cap >= 1 && cap <= PD_MAX_CAP);
    st->pop_schema = *st->schema;
    st->pop_schema.max_values = cap;
    for (int i = 0; i < st->pop_schema.ndims; i++)
        if (st->pop_schema.dims[i].type == PD_DIM_CATEGORICAL) st->pop_schema.dims[i].max_values = cap;
    /* no recent items: the K newest events of a whole partition-day serve
     * nobody, and would cost every event a list insertion (format 5) */
    st->pop_schema.recent_max = 0;
    st->pop_schema.recent_nattrs = 0;
    memset(&st->pop_schema.recent_item, 0, sizeof st->pop_schema.recent_item);
    st->pop_cap = cap;
    atomic_store(&st->pop_ready, 1);
}

/* The "population_max_values" record against the configured cap
 * (st->pop_cap, 0 = take the recorded one). */
static int check_pop_cap(pd_store *st, char *err, size_t errlen)
{
    char *v = NULL;
    size_t len = 0;
    int rc = meta_get(st, "population_max_values", &v, &len, err, errlen);
    if (rc == PD_ENOTFOUND)
        return pd_seterr(err, errlen, PD_ECORRUPT, "store %s lacks its population_max_values record",
                         st->dir);
    if (rc) return rc;
    char *e;
    unsigned long x = strtoul(v, &e, 10);
    int bad = e == v || *e || x < 1 || x > PD_MAX_CAP;
    pd_free(v);
    if (bad) return pd_seterr(err, errlen, PD_ECORRUPT, "store %s: bad population_max_values record", st->dir);
    if (st->pop_cap_want && st->pop_cap_want != x && !st->read_only)
        return pd_seterr(err, errlen, PD_EINVAL,
                         "store %s keeps population profiles capped at %lu values per dimension and "
                         "day; population_max_values is %u. Its population is a function of the log "
                         "under the recorded cap: set population_max_values=%lu, or rebuild the store "
                         "(stop this worker, delete the data directory %s, start it again)",
                         st->dir, x, st->pop_cap_want, x, st->dir);
    if (!atomic_load(&st->pop_ready) || st->pop_cap != x) store_pop_schema_set(st, (uint32_t)x);
    return PD_OK;
}

static int check_schema(pd_store *st, const pd_schema *s, char *err, size_t errlen)
{
    char *format = NULL, *fp = NULL, *json = NULL;
    size_t flen = 0, fplen = 0, jlen = 0;
    char want[17];
    int rc = meta_get(st, "format", &format, &flen, err, errlen);
    if (rc == PD_ENOTFOUND) {
        if (st->read_only) {
            rc = pd_seterr(err, errlen, PD_ENOTFOUND,
                           "store %s has no format record (still being created?)", st->dir);
            goto out;
        }
        /* a new store: record format, schema and fingerprint in one batch */
        pd_buf sj = {0};
        pd_schema_to_json(s, &sj);
        snprintf(want, sizeof want, "%016" PRIx64, s->fingerprint);
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rocksdb_writebatch_put_cf(wb, st->cf_meta, "schema", 6, sj.p ? sj.p : "", sj.len);
        rocksdb_writebatch_put_cf(wb, st->cf_meta, "fingerprint", 11, want, 16);
        rocksdb_writebatch_put_cf(wb, st->cf_meta, "dialect", 7, STORE_DIALECT,
                                  strlen(STORE_DIALECT));
        rocksdb_writebatch_put_cf(wb, st->cf_meta, "format", 6, PD_STORE_FORMAT,
                                  strlen(PD_STORE_FORMAT));
        char pc[16];
        int pcl = snprintf(pc, sizeof pc, "%u", st->pop_cap);
        rocksdb_writebatch_put_cf(wb, st->cf_meta, "population_max_values", 21, pc, (size_t)pcl);
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(wo, 1);
        char *re = NULL;
        rocksdb_write(st->db, wo, wb, &re);
        rocksdb_writeoptions_destroy(wo);
        rocksdb_writebatch_destroy(wb);
        pd_buf_free(&sj);
        rc = re ? store_rdb_err(re, err, errlen, "write schema record") : PD_OK;
        goto out;
    }
    if (rc) goto out;
    /* before the format: format 1 stores predate the dialect record */
    if ((rc = check_dialect(st, err, errlen)) != PD_OK) goto out;
    if (flen != strlen(PD_STORE_FORMAT) || memcmp(format, PD_STORE_FORMAT, flen) != 0) {
        int old = (flen == 1 && (format[0] == '1' || format[0] == '2'));
        int v3 = (flen == 1 && format[0] == '3');
        int v4 = (flen == 1 && format[0] == '4');
        rc = pd_seterr(err, errlen, PD_EINVAL,
                       "store %s has format version '%.20s'; this build reads version %s%s", st->dir,
                       format, PD_STORE_FORMAT,
                       old ? " (profile value encoding 3: per-dimension caps, heavy-hitter levels and "
                             "sketches, which older values lack). Rebuild it: stop this worker, delete "
                             "the data directory, and start the worker again (it copies its partitions "
                             "from a live peer of this build or replays the input topic)"
                       : v3 ? " (format 4 adds the population profiles of every partition and day, "
                              "which cannot be recomputed from stored user profiles). Rebuild it: stop "
                              "this worker, delete the data directory, and start the worker again (it "
                              "copies its partitions from a live peer of this build or replays the input "
                              "topic)"
                       : v4 ? " (format 5 keeps recent items by default: a schema without \"recent\" "
                              "keeps the 10 most recent events per user and day, which format 4 values "
                              "lack, and population profiles keep none). Rebuild it: stop this worker, "
                              "delete the data directory, and start the worker again (it copies its "
                              "partitions from a live peer of this build or replays the input topic)"
                           : "");
        goto out;
    }
    if ((rc = meta_get(st, "fingerprint", &fp, &fplen, err, errlen)) != PD_OK ||
        (rc = meta_get(st, "schema", &json, &jlen, err, errlen)) != PD_OK) {
        if (rc == PD_ENOTFOUND)
            rc = pd_seterr(err, errlen, PD_ECORRUPT, "store %s lacks its schema record", st->dir);
        goto out;
    }
    if (!s) {
        /* read_only, schema from the store */
        pd_assert(st->read_only);
        st->own_schema = pd_calloc(1, sizeof *st->own_schema);
        char e2[256];
        if (pd_schema_load_json(st->own_schema, json, jlen, 0, e2, sizeof e2) != PD_OK) {
            rc = pd_seterr(err, errlen, PD_ECORRUPT, "store %s: stored schema does not load: %s",
                           st->dir, e2);
            goto out;
        }
        s = st->own_schema;
        st->schema = s;
    }
    snprintf(want, sizeof want, "%016" PRIx64, s->fingerprint);
    if (fplen != 16 || memcmp(fp, want, 16) != 0) {
        rc = pd_seterr(err, errlen, PD_EINVAL,
                       "schema mismatch: store %s was created with schema fingerprint %s, the "
                       "configured schema has %s (the store's schema is: %.300s%s)",
                       st->dir, fp, want, json, jlen > 300 ? "..." : "");
        goto out;
    }
    rc = check_pop_cap(st, err, errlen);
out:
    pd_free(format);
    pd_free(fp);
    pd_free(json);
    return rc;
}

/* The filler thread: reads the keys of every day family found at open
 * (newest day first: queries ask for recent days most) into its filter and
 * then marks the filter full. Writers add their keys meanwhile, so a
 * family's filter is complete once its scan is. */
static void *filler_main(void *arg)
{
    pd_store *st = arg;
    pd_dayent **v;
    int n;
    store_dayents_ref(st, INT64_MIN, &v, &n);
    int64_t t0 = pd_mono_us();
    pd_thread_name("pd-dayfilter");
    uint64_t keys = 0;
    int done = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_fill_cache(ro, 0);
    for (int i = n - 1; i >= 0 && !atomic_load(&st->filler_stop); i--) {
        pd_dayent *e = v[i];
        if (!e->filter || atomic_load_explicit(&e->filter_full, memory_order_relaxed)) continue;
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, e->cf);
        uint64_t k = 0;
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t kl;
            const char *kp = rocksdb_iter_key(it, &kl);
            pd_bloom_add(e->filter, XXH3_64bits(kp, kl));
            if ((++k & 4095) == 0 && atomic_load(&st->filler_stop)) break;
        }
        char *re = NULL;
        rocksdb_iter_get_error(it, &re);
        rocksdb_iter_destroy(it);
        keys += k;
        if (re) {
            char name[12];
            pd_store_day_name(e->day, name);
            pd_warn("store: day filter of %s left incomplete (%s); queries read that day always", name, re);
            rocksdb_free(re);
        } else if (!atomic_load(&st->filler_stop)) {
            atomic_store_explicit(&e->filter_full, 1, memory_order_release);
            done++;
        }
    }
    rocksdb_readoptions_destroy(ro);
    if (!atomic_load(&st->filler_stop))
        pd_info("store: day filters ready: %d day(s), %llu keys, %lld ms", done, (unsigned long long)keys,
                (long long)((pd_mono_us() - t0) / 1000));
    store_dayents_unref(st, v, n);
    return NULL;
}

const pd_schema *pd_store_schema(const pd_store *st) { return st->schema; }

const pd_schema *pd_store_population_schema(const pd_store *st)
{
    return atomic_load(&st->pop_ready) ? &st->pop_schema : NULL;
}

int pd_store_open(pd_store **out, const char *dir, const pd_schema *s, const pd_store_opts *o,
                  char *err, size_t errlen)
{
    *out = NULL;
    int ro = o && o->read_only;
    if (!s && !ro) return pd_seterr(err, errlen, PD_EINVAL, "store: a schema is required");
    pd_store *st = pd_calloc(1, sizeof *st);
    st->schema = s;
    st->read_only = ro;
    st->dir = pd_strdup(dir);
    pthread_mutex_init(&st->lock, NULL);
    pd_stash_init(&st->merges);
    pd_stash_init(&st->pop_merges);
    /* the population schema before any merge can run; an existing store's
     * recorded cap is checked (and adopted) after open (check_pop_cap) */
    if (!ro) st->filter_bits = !o || o->day_filter_bits == 0 ? 10 : o->day_filter_bits < 0 ? 0 : o->day_filter_bits;
    atomic_init(&st->filter_budget.used, 0);
    st->filter_budget.limit = o ? (size_t)o->day_filter_max_bytes : 0;
    int rc = PD_OK;
    st->pop_cap_want = o ? o->population_max_values : 0;
    if (st->pop_cap_want > PD_MAX_CAP) {
        rc = pd_seterr(err, errlen, PD_EINVAL, "population_max_values %u > %d", st->pop_cap_want, PD_MAX_CAP);
        goto out;
    }
    st->pop_cap = st->pop_cap_want ? st->pop_cap_want : PD_POPULATION_MAX_VALUES_DEFAULT;
    if (s) store_pop_schema_set(st, st->pop_cap);
    if (ro) {
        if (o->secondary_dir) {
            st->secdir = pd_strdup(o->secondary_dir);
            if (mkdir(st->secdir, 0700) != 0 && errno != EEXIST) {
                rc = pd_seterr(err, errlen, PD_EIO, "secondary dir %s: %s", st->secdir,
                               strerror(errno));
                goto out;
            }
        } else {
            st->secdir = pd_strdup("/tmp/pd-secondary-XXXXXX");
            if (!mkdtemp(st->secdir)) {
                rc = pd_seterr(err, errlen, PD_EIO, "mkdtemp %s: %s", st->secdir, strerror(errno));
                goto out;
            }
            st->secdir_owned = 1;
        }
    } else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rc = pd_seterr(err, errlen, PD_EIO, "data dir %s: %s", dir, strerror(errno));
        goto out;
    }
    char e1[512] = "";
    build_options(st, o, rocksdb_lz4_compression);
    rc = open_db(st, e1, sizeof e1);
    if (rc && !ro && strstr(e1, "ompression")) {
        /* this librocksdb lacks LZ4: fall back to no compression */
        pd_warn("store: LZ4 unsupported (%s); using no compression", e1);
        free_options(st);
        build_options(st, o, rocksdb_no_compression);
        rc = open_db(st, e1, sizeof e1);
    }
    if (rc) {
        pd_seterr(err, errlen, rc, "%s", e1);
        goto out;
    }
    if ((rc = check_schema(st, s, err, errlen)) != PD_OK) goto out;
    struct stat dsb;
    if (stat(dir, &dsb) == 0) {
        st->dir_dev = dsb.st_dev;
        st->dir_ino = dsb.st_ino;
    }
    st->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->wo, o && o->sync ? 1 : 0);
    if (st->filter_bits > 0 && st->ndays > 0) {
        if (pthread_create(&st->filler, NULL, filler_main, st) == 0) st->filler_started = 1;
        else pd_warn("store: cannot start the day filter thread; range queries read every day");
    }
    *out = st;
    return PD_OK;
out:
    pd_store_close(st);
    return rc;
}

void pd_store_close(pd_store *st)
{
    if (!st) return;
    if (st->filler_started) {
        atomic_store(&st->filler_stop, 1);
        pthread_join(st->filler, NULL);
    }
    for (int i = 0; i < st->ndays; i++) {
        pd_dayent *e = st->days[i];
        /* every snapshot and reader must be finished before close */
        pd_assert(e->refs == 1);
        dayent_destroy(e);
    }
    pd_free(st->days);
    for (int i = 0; i < st->n_other; i++) rocksdb_column_family_handle_destroy(st->other_cfs[i]);
    pd_free(st->other_cfs);
    if (st->cf_default) rocksdb_column_family_handle_destroy(st->cf_default);
    if (st->cf_meta) rocksdb_column_family_handle_destroy(st->cf_meta);
    if (st->cf_dedup) rocksdb_column_family_handle_destroy(st->cf_dedup);
    if (st->db) rocksdb_close(st->db);
    /* no merge runs any more; the contexts use the schema, freed below */
    pd_stash_drain(&st->merges, store_merge_ctx_free);
    pd_stash_drain(&st->pop_merges, store_merge_ctx_free);
    if (st->wo) rocksdb_writeoptions_destroy(st->wo);
    free_options(st);
    if (st->secdir_owned) nftw(st->secdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    pd_free(st->secdir);
    pd_free(st->own_schema);
    pd_free(st->dir);
    pd_free(st->fold_cnt);
    pthread_mutex_destroy(&st->lock);
    pd_free(st);
}

int pd_store_refresh(pd_store *st, char *err, size_t errlen)
{
    if (!st->read_only) return PD_OK;
    char *re = NULL;
    rocksdb_try_catch_up_with_primary(st->db, &re);
    return re ? store_rdb_err(re, err, errlen, "catch up with primary") : PD_OK;
}

int pd_store_mem_stats(pd_store *st, pd_store_mem *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    rocksdb_memory_consumers_t *mc = rocksdb_memory_consumers_create();
    rocksdb_memory_consumers_add_db(mc, st->db);
    rocksdb_memory_consumers_add_cache(mc, st->cache);
    char *re = NULL;
    rocksdb_memory_usage_t *u = rocksdb_approximate_memory_usage_create(mc, &re);
    rocksdb_memory_consumers_destroy(mc);
    if (re) return store_rdb_err(re, err, errlen, "memory usage");
    out->memtables = rocksdb_approximate_memory_usage_get_mem_table_total(u);
    out->table_readers = rocksdb_approximate_memory_usage_get_mem_table_readers_total(u);
    out->block_cache = rocksdb_approximate_memory_usage_get_cache_total(u);
    rocksdb_approximate_memory_usage_destroy(u);
    return PD_OK;
}

void pd_store_get_filter_stats(pd_store *st, pd_store_filter_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&st->lock);
    for (int i = 0; i < st->ndays; i++) {
        pd_dayent *e = st->days[i];
        if (!e->filter) {
            out->days_limited += st->filter_bits > 0;
            continue;
        }
        out->bytes += pd_bloom_bytes(e->filter);
        out->days_filling += !atomic_load_explicit(&e->filter_full, memory_order_relaxed);
        out->days_limited += pd_bloom_overfull(e->filter);
    }
    pthread_mutex_unlock(&st->lock);
    out->days_read = atomic_load_explicit(&st->f_read, memory_order_relaxed);
    out->days_skipped = atomic_load_explicit(&st->f_skipped, memory_order_relaxed);
    out->retries = atomic_load_explicit(&st->f_retries, memory_order_relaxed);
}


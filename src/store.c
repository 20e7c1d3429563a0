/*
 * store.c -- the per-worker RocksDB state store (see store.h for the key
 * layout and the commit contract).
 *
 * Layout on disk: one RocksDB database with the families "default",
 * "meta", "dedup" and one "dYYYY-MM-DD" family per day. The meta family
 * holds the records
 *   "format"       store format version, decimal text ("2"). Version 1
 *                  kept one de-dup key per event (partition + event id ->
 *                  ts i64 BE); such stores predate the dialect record and
 *                  are refused for it (read-only opens still read them).
 *   "schema"       canonical schema JSON (pd_schema_to_json)
 *   "fingerprint"  schema fingerprint, 16 lower-case hex digits
 *   "dialect"      event dialect version (PD_EVENT_DIALECT), decimal text;
 *                  absent in stores written before it existed (dialect 1)
 *   'o' + u32 BE   checkpoint: next_offset i64 BE + clock_ms i64 BE
 * A store is only ever opened read-write with the schema whose fingerprint
 * it records and under the event dialect it records: its state is a
 * function of the log under both, so a mismatch is refused at open, with
 * the rebuild instruction for a dialect change.
 *
 * Merge operator: every day family uses the "pd_profile_merge_v1" merge
 * operator. Full and partial merges decode each operand with
 * pd_profile_decode, fold them with pd_profile_merge (associative and
 * commutative, so RocksDB may group operands any way it likes) and encode
 * the result with pd_profile_encode. Its state is the pd_store (for the
 * schema and the pool of merge scratch contexts, see merge_ctx). An
 * operand that fails to decode fails the merge, which RocksDB reports as a
 * Corruption status (mapped to PD_ECORRUPT).
 *
 * Operand folding. A busy user's key gets one merge operand per commit, so
 * a memtable can collect hundreds of them, and every read of that key
 * would merge them all. RocksDB's max_successive_merges bounds that, but
 * it seeks the memtable on every merge write (a quarter of commit time).
 * Instead the store counts merges per key hash in FOLD_SLOTS one-byte
 * counters (all batches share them; merges come from the single writer): the FOLD_EVERY-th merge of a key is written as a Put of the
 * fully merged value (Get, pd_profile_merge, encode), which ends the
 * key's operand chain. All counters reset after about one memtable's worth
 * of merged bytes (write_buffer_mb), since a memtable flush folds operands
 * anyway; hash collisions only cause an early, harmless fold. A key
 * already merged in the same batch is never folded there (its earlier
 * operand is not visible to the Get, and the Put would hide it); the batch
 * remembers the hashes it merged, and a collision there just skips a
 * fold.
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
 *     a commit is seen whole or not at all. With filters, a commit could
 *     land between the filter checks and the read, and be visible on the
 *     days whose check passed but not on those ruled out. So every commit
 *     bumps `wgen` (release) after its keys are in the filters and before
 *     its write; a query that skipped days reads `wgen` (acquire) before
 *     the checks and after the read, and when it changed reads every day
 *     again without filters. A query with an explicit snapshot needs no
 *     check: the snapshot's data had its bits set before it was taken.
 * Memory: about day_filter_bits / 8 bytes per user-day, plus the headroom of
 * a new day's filter (gauge profiled_day_filter_bytes), within one budget
 * of day_filter_max_mb for all of them (bloom.h): a day whose filter does
 * not fit gets none and is read always, and a filter that cannot grow
 * takes keys beyond its capacity (more false positives, never a false
 * negative). At open, filters are created newest day first, so the days
 * queries ask for most keep theirs.
 *
 * Batches: a pd_store_batch wraps one rocksdb_writebatch_t. Within a batch
 * several checkpoints for the same partition are simply written in order;
 * RocksDB applies a batch in order, so the last one wins. A batch must be
 * committed (or cleared) before pd_store_drop_days_before drops a day it
 * has merges for.
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
#include "store.h"
#include "bloom.h"
#include "event.h"
#include "util.h"

#include <rocksdb/c.h>

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#define PD_STORE_FORMAT "2"
#define STORE_XSTR(x) #x
#define STORE_STR(x) STORE_XSTR(x)
#define STORE_DIALECT STORE_STR(PD_EVENT_DIALECT) /* the "dialect" meta record */
#define PD_MERGE_NAME "pd_profile_merge_v1"
#define PD_CKPT_KEY_LEN 5
#define PD_CKPT_VAL_LEN 16
#define PD_DEDUP_KEY_LEN 12
#define FOLD_EVERY 8
#define FOLD_SLOTS ((size_t)1 << 20)
#define MERGE_KEEP_BYTES (256 * 1024)   /* capacity a pooled merge context may keep */
#define FILTER_MIN_KEYS 65536           /* a new day's filter: at least 80 KiB at 10 bits */

typedef struct {
    int64_t day;
    rocksdb_column_family_handle_t *cf;
    int refs; /* 1 held by the map while listed + 1 per reader */
    pd_bloom *filter;        /* day filter (NULL: off, or read-only) */
    _Atomic int filter_full; /* 1 once the filter holds every key of the family */
} pd_dayent;

struct pd_store {
    rocksdb_t *db;
    const pd_schema *schema;     /* borrowed, or == own_schema */
    pd_schema *own_schema;       /* read_only with NULL schema: loaded from the store */
    int read_only;
    _Atomic int fail_commits;    /* pd_store_fail_commits (tests) */
    int64_t write_buffer_mb;
    /* operand folding: merges per key hash, shared by all batches (only the
     * single writer thread calls pd_store_batch_merge) */
    uint8_t *fold_cnt;           /* FOLD_SLOTS counters, allocated on the first merge */
    uint64_t fold_bytes;         /* merged bytes since the counters were reset */
    char *dir;
    char *secdir;                /* read_only: scratch dir of the secondary */
    int secdir_owned;            /* created by mkdtemp: removed on close */
    rocksdb_cache_t *cache;
    rocksdb_options_t *db_opts;  /* DB-wide + "default"/"meta" families */
    rocksdb_options_t *dedup_opts;
    rocksdb_options_t *day_opts;
    rocksdb_writeoptions_t *wo;
    rocksdb_column_family_handle_t *cf_default, *cf_meta, *cf_dedup;
    rocksdb_column_family_handle_t **other_cfs; /* unknown families, kept open */
    int n_other;
    pthread_mutex_t lock;        /* guards days/ndays/capdays and every refs */
    pd_dayent **days;            /* sorted ascending by day */
    int ndays, capdays;
    pd_dayent *wlast;            /* the writer's: its last day_for_write (NULL = none) */
    pd_stash merges;             /* idle merge scratch, merge_ctx * (merge_ctx_get) */
    /* day filters (see the design comment) */
    int filter_bits;             /* bits per key, 0 = no filters */
    pd_bloom_budget filter_budget; /* shared by all day filters (limit 0 = none) */
    _Atomic uint64_t wgen;       /* bumped by every commit before its write */
    pthread_t filler;            /* fills the filters of families found at open */
    int filler_started;
    _Atomic int filler_stop;
    _Atomic uint64_t f_read, f_skipped, f_retries; /* pd_store_filter_stats */
};

struct pd_store_batch {
    pd_store *st;
    rocksdb_writebatch_t *wb;
    pd_buf key, val;             /* scratch */
    /* operand folding (see the design comment) */
    uint64_t *seen;              /* hashes of the keys merged in this batch (0 = free) */
    size_t seen_cap, seen_n;
    pd_profile fold;             /* scratch for folds */
    uint64_t folds;              /* merges written as folded Puts */
    rocksdb_readoptions_t *ro;
};

struct pd_store_snap {
    const rocksdb_snapshot_t *snap; /* NULL if the instance cannot snapshot */
    pd_dayent **days;            /* referenced entries, sorted ascending */
    int ndays;
};

/* ------------------------------------------------------------------ */
/* helpers                                                             */

/* Converts a RocksDB error string (malloc'd by RocksDB) into an error
 * code + message and frees it. */
static int rdb_err(char *e, char *err, size_t errlen, const char *what)
{
    int code = (e && strncmp(e, "Corruption", 10) == 0) ? PD_ECORRUPT : PD_EIO;
    pd_seterr(err, errlen, code, "%s: %s", what, e ? e : "unknown error");
    rocksdb_free(e);
    return code;
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

static void data_key(pd_buf *k, int32_t partition, const char *s, size_t n)
{
    uint8_t p[4];
    pd_assert(partition >= 0);
    pd_put_u32be(p, (uint32_t)partition);
    k->len = 0;
    pd_buf_append(k, p, 4);
    if (n) pd_buf_append(k, s, n);
}

static void ckpt_key(uint8_t *k, int32_t partition)
{
    pd_assert(partition >= 0);
    k[0] = 'o';
    pd_put_u32be(k + 1, (uint32_t)partition);
}

/* ------------------------------------------------------------------ */
/* merge operator                                                      */

/* Merge scratch: an accumulator and a decode target. Merges run on
 * RocksDB's flush and compaction threads, on query threads (reads of keys
 * with pending operands) and on the committer (folds), often for tiny
 * profiles; decoding into fresh profiles cost a handful of malloc/free
 * pairs per operand, which showed as allocator lock contention between
 * those threads. Idle contexts wait in a small LIFO pool owned by the
 * store (at most PD_STASH_MAX, each keeping at most MERGE_KEEP_BYTES of
 * capacity; a context that grew past that on a heavy key is freed). */
typedef struct merge_ctx {
    pd_profile acc, tmp;
} merge_ctx;

static merge_ctx *merge_ctx_get(pd_store *st)
{
    merge_ctx *c = pd_stash_take(&st->merges);
    if (!c) {
        c = pd_malloc(sizeof *c);
        pd_profile_init(&c->acc, st->schema);
        pd_profile_init(&c->tmp, st->schema);
    }
    return c;
}

static void merge_ctx_free(void *x)
{
    merge_ctx *c = x;
    pd_profile_free(&c->acc);
    pd_profile_free(&c->tmp);
    pd_free(c);
}

/* Returns c to the pool (emptied, capacity kept) or frees it. */
static void merge_ctx_put(pd_store *st, merge_ctx *c)
{
    if (pd_profile_mem_bytes(&c->acc) + pd_profile_mem_bytes(&c->tmp) <= MERGE_KEEP_BYTES) {
        pd_profile_clear(&c->acc);
        if (pd_stash_give(&st->merges, c)) return;
    }
    merge_ctx_free(c);
}

/* Decodes and folds operands into c->acc; 0 on success. */
static int merge_fold(merge_ctx *c, const char *const *ops, const size_t *lens, int n)
{
    char e[256];
    for (int i = 0; i < n; i++) {
        /* pd_profile_decode empties tmp first, keeping its capacity */
        if (pd_profile_decode(&c->tmp, ops[i], lens[i], e, sizeof e) != PD_OK) {
            pd_warn("store: merge operand failed to decode: %s", e);
            return -1;
        }
        pd_profile_merge(&c->acc, &c->tmp);
    }
    return 0;
}

/* Encodes acc into a malloc'd buffer handed to RocksDB (freed by
 * merge_delete_value). */
static char *merge_result(const pd_profile *acc, size_t *len)
{
    pd_buf b = {0};
    pd_profile_encode(acc, &b);
    if (!b.p) b.p = pd_malloc(1);
    *len = b.len;
    return b.p;
}

static char *merge_full(void *state, const char *key, size_t klen, const char *existing,
                        size_t elen, const char *const *ops, const size_t *lens, int n,
                        unsigned char *success, size_t *newlen)
{
    (void)key; (void)klen;
    pd_store *st = state;
    *success = 0;
    *newlen = 0;
    if (!st->schema) return NULL;
    if (!existing && n == 1) {
        /* A lone operand is already the merged value (merge of one
         * profile is the identity): hand back a copy without the decode /
         * encode round trip. A corrupt operand then surfaces when the
         * value is decoded (PD_ECORRUPT) rather than as a merge failure. */
        char *copy = pd_malloc(lens[0]);
        if (lens[0]) memcpy(copy, ops[0], lens[0]);
        *newlen = lens[0];
        *success = 1;
        return copy;
    }
    merge_ctx *c = merge_ctx_get(st);
    char *out = NULL;
    if (existing) {
        const char *e1[1] = { existing };
        size_t l1[1] = { elen };
        if (merge_fold(c, e1, l1, 1) != 0) goto out;
    }
    if (merge_fold(c, ops, lens, n) != 0) goto out;
    out = merge_result(&c->acc, newlen);
    *success = 1;
out:
    merge_ctx_put(st, c);
    return out;
}

static char *merge_partial(void *state, const char *key, size_t klen, const char *const *ops,
                           const size_t *lens, int n, unsigned char *success, size_t *newlen)
{
    return merge_full(state, key, klen, NULL, 0, ops, lens, n, success, newlen);
}

static void merge_delete_value(void *state, const char *value, size_t len)
{
    (void)state; (void)len;
    free((void *)value);
}

/* The C wrapper always calls the destructor; the state (the store) is not
 * owned by the operator. */
static void merge_destroy(void *state)
{
    (void)state;
}

static const char *merge_name(void *state)
{
    (void)state;
    return PD_MERGE_NAME;
}

/* ------------------------------------------------------------------ */
/* day map                                                             */

/* Index of the first entry with day >= `day` (lock held). */
static int days_lower_bound(pd_dayent *const *days, int n, int64_t day)
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
static void days_insert_locked(pd_store *st, pd_dayent *e)
{
    int i = days_lower_bound(st->days, st->ndays, e->day);
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
static int day_may_hold(pd_dayent *e, uint64_t h)
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

static void dayents_release(pd_store *st, pd_dayent **v, int n);

static void dayent_unref(pd_store *st, pd_dayent *e)
{
    dayents_release(st, &e, 1);
}

/* Referenced entry for `day`, or NULL. Release with dayent_unref. */
static pd_dayent *dayent_ref(pd_store *st, int64_t day)
{
    pd_dayent *e = NULL;
    pthread_mutex_lock(&st->lock);
    int i = days_lower_bound(st->days, st->ndays, day);
    if (i < st->ndays && st->days[i]->day == day) {
        e = st->days[i];
        e->refs++;
    }
    pthread_mutex_unlock(&st->lock);
    return e;
}

/* References every entry (day == INT64_MIN) or the one for `day`; *out is
 * malloc'd (caller releases each entry and frees the array). */
static void dayents_ref(pd_store *st, int64_t day, pd_dayent ***out, int *n)
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
static void dayents_release(pd_store *st, pd_dayent **v, int n)
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

static void dayents_unref(pd_store *st, pd_dayent **v, int n)
{
    dayents_release(st, v, n);
    pd_free(v);
}

/* The writer (the ingest committer thread, or the ingest thread while no
 * commit is in flight -- never both at once): the entry of `day`, its
 * family created if missing. It stays valid until the writer itself drops
 * the day. A new family's filter is sized like the largest one so far (days
 * tend to look alike). */
static int day_for_write(pd_store *st, int64_t day, pd_dayent **out, char *err, size_t errlen)
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
    int i = days_lower_bound(st->days, st->ndays, day);
    pd_dayent *e = i < st->ndays && st->days[i]->day == day ? st->days[i] : NULL;
    pthread_mutex_unlock(&st->lock);
    if (e) {
        *out = st->wlast = e;
        return PD_OK;
    }
    char name[12], *re = NULL;
    pd_store_day_name(day, name);
    rocksdb_column_family_handle_t *h = rocksdb_create_column_family(st->db, st->day_opts, name, &re);
    if (re) return rdb_err(re, err, errlen, "create column family");
    uint64_t hint = 0;
    pthread_mutex_lock(&st->lock);
    for (int k = 0; k < st->ndays; k++)
        if (st->days[k]->filter) hint = PD_MAX(hint, pd_bloom_count(st->days[k]->filter));
    pthread_mutex_unlock(&st->lock);
    e = dayent_new(day, h);
    if (!dayent_filter(st, e, PD_MAX(hint + hint / 4, FILTER_MIN_KEYS), 1)) warn_filter_budget(st, name);
    pthread_mutex_lock(&st->lock);
    days_insert_locked(st, e);
    pthread_mutex_unlock(&st->lock);
    *out = st->wlast = e;
    return PD_OK;
}

/* Records a data key in its day's filter; before the write that stores it. */
static void filter_add(pd_dayent *e, const char *key, size_t klen)
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
        st->day_opts, rocksdb_mergeoperator_create(st, merge_destroy, merge_full, merge_partial,
                                                   merge_delete_value, merge_name));
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
            return rdb_err(re, err, errlen, "no readable store (listing column families)");
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
        rc = rdb_err(re, err, errlen, "open store");
        goto out;
    }
    st->other_cfs = pd_calloc((size_t)n, sizeof *st->other_cfs);
    for (int i = 0; i < n; i++) {
        if (kind[i]) {
            pd_dayent *e = dayent_new(dayv[i], h[i]);
            days_insert_locked(st, e); /* not shared yet */
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
    if (re) return rdb_err(re, err, errlen, "read meta");
    if (!v) return PD_ENOTFOUND;
    *val = pd_strndup(v, *len);
    rocksdb_free(v);
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
        rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(wo, 1);
        char *re = NULL;
        rocksdb_write(st->db, wo, wb, &re);
        rocksdb_writeoptions_destroy(wo);
        rocksdb_writebatch_destroy(wb);
        pd_buf_free(&sj);
        rc = re ? rdb_err(re, err, errlen, "write schema record") : PD_OK;
        goto out;
    }
    if (rc) goto out;
    /* before the format: format 1 stores predate the dialect record */
    if ((rc = check_dialect(st, err, errlen)) != PD_OK) goto out;
    if (st->read_only && flen == 1 && format[0] == '1') {
        /* format 1 (one de-dup key per event id) differs only in the
         * "dedup" family, which the dump tool never reads */
    } else if (flen != strlen(PD_STORE_FORMAT) || memcmp(format, PD_STORE_FORMAT, flen) != 0) {
        rc = pd_seterr(err, errlen, PD_EINVAL,
                       "store %s has format version '%s'; this build reads version %s", st->dir,
                       format, PD_STORE_FORMAT);
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
    rc = PD_OK;
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
    dayents_ref(st, INT64_MIN, &v, &n);
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
    dayents_unref(st, v, n);
    return NULL;
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
    if (!ro) st->filter_bits = !o || o->day_filter_bits == 0 ? 10 : o->day_filter_bits < 0 ? 0 : o->day_filter_bits;
    atomic_init(&st->filter_budget.used, 0);
    st->filter_budget.limit = o ? (size_t)o->day_filter_max_bytes : 0;
    int rc = PD_OK;
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
    pd_stash_drain(&st->merges, merge_ctx_free);
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
    return re ? rdb_err(re, err, errlen, "catch up with primary") : PD_OK;
}

/* ------------------------------------------------------------------ */
/* writing                                                             */

pd_store_batch *pd_store_batch_new(pd_store *st)
{
    pd_store_batch *b = pd_calloc(1, sizeof *b);
    b->st = st;
    b->wb = rocksdb_writebatch_create();
    pd_profile_init(&b->fold, st->schema);
    return b;
}

void pd_store_batch_free(pd_store_batch *b)
{
    if (!b) return;
    rocksdb_writebatch_destroy(b->wb);
    pd_buf_free(&b->key);
    pd_buf_free(&b->val);
    pd_free(b->seen);
    pd_profile_free(&b->fold);
    if (b->ro) rocksdb_readoptions_destroy(b->ro);
    pd_free(b);
}

static void seen_clear(pd_store_batch *b)
{
    if (b->seen_n) memset(b->seen, 0, b->seen_cap * sizeof *b->seen);
    b->seen_n = 0;
}

/* Adds h to the batch's merged-key set; returns 1 if it was there. */
static int seen_add(pd_store_batch *b, uint64_t h)
{
    h |= 1; /* 0 marks a free slot */
    if ((b->seen_n + 1) * 2 > b->seen_cap) {
        size_t ocap = b->seen_cap;
        uint64_t *old = b->seen;
        b->seen_cap = ocap ? ocap * 2 : 1024;
        b->seen = pd_calloc(b->seen_cap, sizeof *b->seen);
        b->seen_n = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i]) seen_add(b, old[i]);
        pd_free(old);
    }
    size_t m = b->seen_cap - 1;
    for (size_t i = (size_t)(h >> 7) & m;; i = (i + 1) & m) {
        if (b->seen[i] == h) return 1;
        if (!b->seen[i]) {
            b->seen[i] = h;
            b->seen_n++;
            return 0;
        }
    }
}

uint64_t pd_store_batch_folds(const pd_store_batch *b) { return b->folds; }

int pd_store_mem_stats(pd_store *st, pd_store_mem *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    rocksdb_memory_consumers_t *mc = rocksdb_memory_consumers_create();
    rocksdb_memory_consumers_add_db(mc, st->db);
    rocksdb_memory_consumers_add_cache(mc, st->cache);
    char *re = NULL;
    rocksdb_memory_usage_t *u = rocksdb_approximate_memory_usage_create(mc, &re);
    rocksdb_memory_consumers_destroy(mc);
    if (re) return rdb_err(re, err, errlen, "memory usage");
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

void pd_store_batch_clear(pd_store_batch *b)
{
    rocksdb_writebatch_clear(b->wb);
    seen_clear(b);
}

/* The FOLD_EVERY-th merge of a key: b->val = encode(stored value + delta),
 * to be written with Put. Returns 0 when folded, -1 to write a plain merge
 * operand instead (read error or a stored value that does not decode:
 * those surface on the merge path as before). */
/* b->val = the stored value of b->key plus the delta (delta, or else the
 * one event ev). */
static int fold_value(pd_store_batch *b, rocksdb_column_family_handle_t *cf, const pd_profile *delta,
                      const pd_event *ev)
{
    pd_store *st = b->st;
    if (!b->ro) b->ro = rocksdb_readoptions_create();
    char *re = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(st->db, b->ro, cf, b->key.p, b->key.len, &vl, &re);
    if (re) {
        rocksdb_free(re);
        return -1;
    }
    int rc = PD_OK;
    if (v) {
        char derr[64];
        rc = pd_profile_decode(&b->fold, v, vl, derr, sizeof derr);
        rocksdb_free(v);
    } else {
        pd_profile_clear(&b->fold);
    }
    if (rc != PD_OK) return -1;
    if (delta) pd_profile_merge(&b->fold, delta);
    else pd_profile_add(&b->fold, ev); /* merging with the event's singleton profile */
    b->val.len = 0;
    pd_profile_encode(&b->fold, &b->val);
    return 0;
}

/* pd_store_batch_merge(_event): exactly one of delta and ev is set. */
static int batch_merge(pd_store_batch *b, int64_t day, int32_t partition, const char *user, size_t ulen,
                       const pd_profile *delta, const pd_event *ev, char *err, size_t errlen)
{
    pd_store *st = b->st;
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    pd_dayent *de;
    int rc = day_for_write(st, day, &de, err, errlen);
    if (rc) return rc;
    rocksdb_column_family_handle_t *cf = de->cf;
    data_key(&b->key, partition, user, ulen);
    filter_add(de, b->key.p, b->key.len);
    const uint64_t h = XXH3_64bits_withSeed(b->key.p, b->key.len, (uint64_t)day);
    if (!st->fold_cnt) st->fold_cnt = pd_calloc(FOLD_SLOTS, 1);
    uint8_t *cnt = &st->fold_cnt[h & (FOLD_SLOTS - 1)];
    const int again = seen_add(b, h);
    if (++*cnt >= FOLD_EVERY && !again && fold_value(b, cf, delta, ev) == 0) {
        *cnt = 0;
        b->folds++;
        rocksdb_writebatch_put_cf(b->wb, cf, b->key.p, b->key.len, b->val.p, b->val.len);
    } else {
        if (*cnt >= FOLD_EVERY) *cnt = FOLD_EVERY - 1;
        b->val.len = 0;
        if (delta) pd_profile_encode(delta, &b->val);
        else pd_profile_encode_event(st->schema, ev, &b->val);
        rocksdb_writebatch_merge_cf(b->wb, cf, b->key.p, b->key.len, b->val.p, b->val.len);
    }
    st->fold_bytes += b->key.len + b->val.len;
    if (st->fold_bytes >= (uint64_t)st->write_buffer_mb << 20) {
        memset(st->fold_cnt, 0, FOLD_SLOTS);
        st->fold_bytes = 0;
    }
    return PD_OK;
}

int pd_store_batch_merge(pd_store_batch *b, int64_t day, int32_t partition, const char *user,
                         size_t ulen, const pd_profile *delta, char *err, size_t errlen)
{
    return batch_merge(b, day, partition, user, ulen, delta, NULL, err, errlen);
}

int pd_store_batch_merge_event(pd_store_batch *b, int64_t day, int32_t partition, const char *user,
                               size_t ulen, const pd_event *ev, char *err, size_t errlen)
{
    return batch_merge(b, day, partition, user, ulen, NULL, ev, err, errlen);
}

static void dedup_key(uint8_t *k, int32_t partition, uint64_t seq)
{
    pd_assert(partition >= 0);
    pd_put_u32be(k, (uint32_t)partition);
    pd_put_u64be(k + 4, seq);
}

void pd_store_batch_put_dedup(pd_store_batch *b, int32_t partition, uint64_t seq, const void *val,
                              size_t vlen)
{
    uint8_t k[PD_DEDUP_KEY_LEN];
    pd_assert(vlen % PD_DEDUP_ENTRY_LEN == 0);
    dedup_key(k, partition, seq);
    rocksdb_writebatch_put_cf(b->wb, b->st->cf_dedup, (const char *)k, sizeof k, vlen ? val : "", vlen);
}

void pd_store_batch_delete_dedup(pd_store_batch *b, int32_t partition, uint64_t seq)
{
    uint8_t k[PD_DEDUP_KEY_LEN];
    dedup_key(k, partition, seq);
    rocksdb_writebatch_delete_cf(b->wb, b->st->cf_dedup, (const char *)k, sizeof k);
}

void pd_store_batch_set_checkpoint(pd_store_batch *b, int32_t partition, int64_t next_offset,
                                   int64_t clock_ms)
{
    uint8_t k[PD_CKPT_KEY_LEN], v[PD_CKPT_VAL_LEN];
    ckpt_key(k, partition);
    pd_put_u64be(v, (uint64_t)next_offset);
    pd_put_u64be(v + 8, (uint64_t)clock_ms);
    /* a later put for the same key in this batch supersedes this one */
    rocksdb_writebatch_put_cf(b->wb, b->st->cf_meta, (const char *)k, sizeof k,
                              (const char *)v, sizeof v);
}

int pd_store_commit(pd_store *st, pd_store_batch *b, char *err, size_t errlen)
{
    pd_assert(b->st == st);
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (atomic_load_explicit(&st->fail_commits, memory_order_relaxed))
        return pd_seterr(err, errlen, PD_EIO, "commit: failure injected (pd_store_fail_commits)");
    if (rocksdb_writebatch_count(b->wb) == 0) return PD_OK;
    /* The batch's keys are in their day filters; a range query that saw an
     * older generation and finds a newer one after reading retries without
     * the filters (see the design comment). */
    atomic_fetch_add_explicit(&st->wgen, 1, memory_order_release);
    char *re = NULL;
    rocksdb_write(st->db, st->wo, b->wb, &re);
    if (re) return rdb_err(re, err, errlen, "commit");
    rocksdb_writebatch_clear(b->wb);
    seen_clear(b);
    return PD_OK;
}

void pd_store_fail_commits(pd_store *st, int on)
{
    atomic_store_explicit(&st->fail_commits, on ? 1 : 0, memory_order_relaxed);
}

int pd_store_drop_days_before(pd_store *st, int64_t first_kept_day, char *err, size_t errlen)
{
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    int dropped = 0;
    for (;;) {
        pthread_mutex_lock(&st->lock);
        pd_dayent *e = NULL;
        if (st->ndays > 0 && st->days[0]->day < first_kept_day) {
            e = st->days[0];
            memmove(st->days, st->days + 1, (size_t)(st->ndays - 1) * sizeof *st->days);
            st->ndays--;
            if (st->wlast == e) st->wlast = NULL;
        }
        pthread_mutex_unlock(&st->lock);
        if (!e) break;
        char *re = NULL;
        rocksdb_drop_column_family(st->db, e->cf, &re);
        if (re) {
            pthread_mutex_lock(&st->lock);
            days_insert_locked(st, e); /* only the writer removes: still the smallest */
            pthread_mutex_unlock(&st->lock);
            char name[12];
            pd_store_day_name(e->day, name);
            char what[64];
            snprintf(what, sizeof what, "drop column family %s", name);
            return rdb_err(re, err, errlen, what);
        }
        dayent_unref(st, e); /* the map's reference; readers may still hold theirs */
        dropped++;
    }
    return dropped;
}

/* ------------------------------------------------------------------ */
/* reading                                                             */

int pd_store_get_checkpoint(pd_store *st, int32_t partition, pd_checkpoint *out)
{
    uint8_t k[PD_CKPT_KEY_LEN];
    ckpt_key(k, partition);
    char *re = NULL;
    size_t len = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    char *v = rocksdb_get_cf(st->db, ro, st->cf_meta, (const char *)k, sizeof k, &len, &re);
    rocksdb_readoptions_destroy(ro);
    if (re) {
        pd_warn("store: read checkpoint %d: %s", partition, re);
        rocksdb_free(re);
        return PD_EIO;
    }
    if (!v) return PD_ENOTFOUND;
    int rc = PD_OK;
    if (len != PD_CKPT_VAL_LEN) {
        rc = PD_ECORRUPT;
    } else {
        out->partition = partition;
        out->next_offset = (int64_t)pd_get_u64be((const uint8_t *)v);
        out->clock_ms = (int64_t)pd_get_u64be((const uint8_t *)v + 8);
    }
    rocksdb_free(v);
    return rc;
}

int pd_store_list_checkpoints(pd_store *st, pd_checkpoint **out, int *n)
{
    *out = NULL;
    *n = 0;
    int cap = 0, rc = PD_OK;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf_meta);
    for (rocksdb_iter_seek(it, "o", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 1 || k[0] != 'o') break;
        if (kl != PD_CKPT_KEY_LEN) continue;
        const char *v = rocksdb_iter_value(it, &vl);
        if (vl != PD_CKPT_VAL_LEN) {
            rc = PD_ECORRUPT;
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = pd_realloc(*out, (size_t)cap * sizeof **out);
        }
        pd_checkpoint *c = &(*out)[(*n)++];
        c->partition = (int32_t)pd_get_u32be((const uint8_t *)k + 1);
        c->next_offset = (int64_t)pd_get_u64be((const uint8_t *)v);
        c->clock_ms = (int64_t)pd_get_u64be((const uint8_t *)v + 8);
    }
    char *re = NULL;
    rocksdb_iter_get_error(it, &re);
    if (re) {
        pd_warn("store: list checkpoints: %s", re);
        rocksdb_free(re);
        rc = PD_EIO;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc) {
        pd_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int pd_store_scan_dedup(pd_store *st, int32_t partition, pd_store_dedup_fn fn, void *arg, char *err,
                        size_t errlen)
{
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    uint8_t lo[4], hi[4];
    pd_put_u32be(lo, (uint32_t)partition);
    pd_put_u32be(hi, (uint32_t)partition + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, 4);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf_dedup);
    int rc = PD_OK;
    for (rocksdb_iter_seek(it, (const char *)lo, 4); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 4 || memcmp(k, lo, 4) != 0) break;
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != PD_DEDUP_KEY_LEN || vl % PD_DEDUP_ENTRY_LEN != 0) {
            rc = pd_seterr(err, errlen, PD_ECORRUPT, "de-dup record of partition %d: bad key/value length %zu/%zu",
                           partition, kl, vl);
            break;
        }
        if ((rc = fn(arg, pd_get_u64be((const uint8_t *)k + 4), (const uint8_t *)v, vl)) != 0) break;
    }
    char *re = NULL;
    rocksdb_iter_get_error(it, &re);
    if (re) {
        int r2 = rdb_err(re, err, errlen, "scan de-dup records");
        if (!rc) rc = r2;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

int pd_store_list_days(pd_store *st, int64_t **days, int *n)
{
    pthread_mutex_lock(&st->lock);
    *days = pd_malloc((size_t)(st->ndays ? st->ndays : 1) * sizeof **days);
    for (int i = 0; i < st->ndays; i++) (*days)[i] = st->days[i]->day;
    *n = st->ndays;
    pthread_mutex_unlock(&st->lock);
    return PD_OK;
}

pd_store_snap *pd_store_snap_acquire(pd_store *st)
{
    pd_store_snap *sn = pd_calloc(1, sizeof *sn);
    /* the family list first, then the snapshot: a family created in between
     * is simply absent from the view; one dropped in between stays readable
     * through our reference */
    dayents_ref(st, INT64_MIN, &sn->days, &sn->ndays);
    sn->snap = rocksdb_create_snapshot(st->db);
    return sn;
}

void pd_store_snap_release(pd_store *st, pd_store_snap *snap)
{
    if (!snap) return;
    if (snap->snap) rocksdb_release_snapshot(st->db, snap->snap);
    dayents_release(st, snap->days, snap->ndays);
    pd_free(snap->days);
    pd_free(snap);
}

int pd_store_get_profile(pd_store *st, pd_store_snap *snap, int64_t day, int32_t partition,
                         const char *user, size_t ulen, pd_profile *out, char *err, size_t errlen)
{
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    pd_dayent *e = NULL;
    if (snap) {
        int i = days_lower_bound(snap->days, snap->ndays, day);
        if (i < snap->ndays && snap->days[i]->day == day) e = snap->days[i];
    } else {
        e = dayent_ref(st, day);
    }
    if (!e) return PD_ENOTFOUND;
    pd_buf k = {0};
    data_key(&k, partition, user, ulen);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (snap && snap->snap) rocksdb_readoptions_set_snapshot(ro, snap->snap);
    char *re = NULL;
    int rc = PD_OK;
    rocksdb_pinnableslice_t *ps = rocksdb_get_pinned_cf(st->db, ro, e->cf, k.p, k.len, &re);
    if (re) {
        rc = rdb_err(re, err, errlen, "read profile");
    } else if (!ps) {
        rc = PD_ENOTFOUND;
    } else {
        size_t vl = 0;
        const char *v = rocksdb_pinnableslice_value(ps, &vl);
        rc = pd_profile_decode(out, v, vl, err, errlen);
        rocksdb_pinnableslice_destroy(ps);
    }
    rocksdb_readoptions_destroy(ro);
    pd_buf_free(&k);
    if (!snap) dayent_unref(st, e);
    return rc;
}

void pd_store_range_free(pd_store_range *r)
{
    if (!r) return;
    /* every slot up to cap may hold capacity kept by pd_profile_clear */
    for (int i = 0; i < r->cap; i++) pd_profile_free(&r->profs[i]);
    pd_free(r->profs);
    pd_free(r->days);
    memset(r, 0, sizeof *r);
}

size_t pd_store_range_mem_bytes(const pd_store_range *r)
{
    size_t n = (size_t)r->cap * (sizeof *r->profs + sizeof *r->days);
    for (int i = 0; i < r->cap; i++) n += pd_profile_mem_bytes(&r->profs[i]);
    return n;
}

/* Room for `need` days in r (contents of existing slots kept). */
static void range_reserve(pd_store_range *r, const pd_schema *s, int need)
{
    if (need <= r->cap) return;
    r->days = pd_realloc(r->days, (size_t)need * sizeof *r->days);
    r->profs = pd_realloc(r->profs, (size_t)need * sizeof *r->profs);
    for (int i = r->cap; i < need; i++) pd_profile_init(&r->profs[i], s);
    r->cap = need;
}

/* MultiGet over the families in [from_day, to_day]: every lookup
 * uses the same key (the data key does not depend on the day), so the key
 * list is one pointer repeated. RocksDB returns malloc'd copies of the
 * values; they are decoded in place and freed. Small ranges use stack
 * arrays, wider ones one heap block.
 *
 * Without a view no RocksDB snapshot is created (it would take the DB
 * mutex twice per query, contending with the writer): a MultiGet over
 * several families already reads all of them at one sequence number
 * (RocksDB's multi-family consistent read), and only the in-range family
 * handles are referenced, for the duration of the call, under one lock
 * round each way. */
#define RANGE_STACK 64
/* Frees what a read of m days returned: one pinned value, or m MultiGet
 * values; and the error strings. */
static void free_values(rocksdb_pinnableslice_t *one, char **vals, char **errs, int m)
{
    for (int i = 0; i < m; i++) {
        if (errs[i]) rocksdb_free(errs[i]);
        if (!one && vals[i]) rocksdb_free(vals[i]);
    }
    if (one) rocksdb_pinnableslice_destroy(one);
}

int pd_store_get_profile_range(pd_store *st, pd_store_snap *snap, int64_t from_day, int64_t to_day,
                               int32_t partition, const char *user, size_t ulen, pd_store_range *r,
                               char *err, size_t errlen)
{
    pd_assert(st && r && (user || ulen == 0));
    for (int i = 0; i < r->n; i++) pd_profile_clear(&r->profs[i]); /* keeps capacity for reuse */
    r->n = 0;
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    if (ulen > PD_MAX_USER_ID) return pd_seterr(err, errlen, PD_EINVAL, "user id too long");
    /* The families to read: from the view, or (no view) the in-range
     * entries of the day map, referenced for the call only. */
    pd_dayent *const *ents;
    pd_dayent *refd_s[RANGE_STACK], **refd = NULL;
    int lo, hi, nk;
    if (snap) {
        lo = days_lower_bound(snap->days, snap->ndays, from_day);
        hi = to_day == INT64_MAX ? snap->ndays : days_lower_bound(snap->days, snap->ndays, to_day + 1);
        nk = hi > lo ? hi - lo : 0;
        ents = snap->days + lo;
    } else {
        pthread_mutex_lock(&st->lock);
        lo = days_lower_bound(st->days, st->ndays, from_day);
        hi = to_day == INT64_MAX ? st->ndays : days_lower_bound(st->days, st->ndays, to_day + 1);
        nk = hi > lo ? hi - lo : 0;
        refd = nk <= RANGE_STACK ? refd_s : pd_malloc((size_t)nk * sizeof *refd);
        for (int i = 0; i < nk; i++) {
            refd[i] = st->days[lo + i];
            refd[i]->refs++;
        }
        pthread_mutex_unlock(&st->lock);
        ents = refd;
    }
    int rc = PD_OK;
    if (nk == 0) goto out_snap;

    char key[4 + PD_MAX_USER_ID];
    pd_put_u32be((uint8_t *)key, (uint32_t)partition);
    if (ulen) memcpy(key + 4, user, ulen);
    size_t klen = 4 + ulen;

    const rocksdb_column_family_handle_t *cfs_s[RANGE_STACK];
    const char *keys_s[RANGE_STACK];
    size_t klens_s[RANGE_STACK], vlens_s[RANGE_STACK];
    char *vals_s[RANGE_STACK], *errs_s[RANGE_STACK];
    int ix_s[RANGE_STACK];
    void *heap = NULL;
    const rocksdb_column_family_handle_t **cfs = cfs_s;
    const char **keys = keys_s;
    size_t *klens = klens_s, *vlens = vlens_s;
    char **vals = vals_s, **errs = errs_s;
    int *ix = ix_s;
    if (nk > RANGE_STACK) {
        size_t n = (size_t)nk;
        char *h = heap = pd_malloc(n * (sizeof *cfs + sizeof *keys + 2 * sizeof(size_t) + 2 * sizeof(char *) +
                                        sizeof *ix));
        cfs = (const rocksdb_column_family_handle_t **)h; h += n * sizeof *cfs;
        keys = (const char **)h; h += n * sizeof *keys;
        klens = (size_t *)h; h += n * sizeof *klens;
        vlens = (size_t *)h; h += n * sizeof *vlens;
        vals = (char **)h; h += n * sizeof *vals;
        errs = (char **)h; h += n * sizeof *errs;
        ix = (int *)h;
    }
    /* Only the days whose filter may hold the key are read. Without an
     * explicit snapshot, a commit that bumped the generation meanwhile may
     * have become visible to the read but not to the filter checks before
     * it: then read every day again (see the design comment). */
    const uint64_t kh = XXH3_64bits(key, klen);
    const int pinned = snap && snap->snap;
    int use_filter = 1, m;
    rocksdb_pinnableslice_t *one = NULL; /* m == 1: the value, pinned */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (pinned) rocksdb_readoptions_set_snapshot(ro, snap->snap);
    for (;;) {
        const uint64_t gen = atomic_load_explicit(&st->wgen, memory_order_acquire);
        m = 0;
        for (int i = 0; i < nk; i++) {
            if (use_filter && !day_may_hold(ents[i], kh)) continue;
            ix[m] = i;
            cfs[m] = ents[i]->cf;
            keys[m] = key;
            klens[m] = klen;
            vals[m] = errs[m] = NULL;
            vlens[m] = 0;
            m++;
        }
        if (m == 1) {
            /* one day (the common case with filters): a pinned Get skips
             * MultiGet's per-call containers and the value copy */
            one = rocksdb_get_pinned_cf(st->db, ro, ents[ix[0]]->cf, key, klen, &errs[0]);
            if (one) vals[0] = (char *)rocksdb_pinnableslice_value(one, &vlens[0]);
        } else if (m > 1) {
            rocksdb_multi_get_cf(st->db, ro, cfs, (size_t)m, keys, klens, vals, vlens, errs);
        }
        if (!use_filter || m == nk || pinned ||
            atomic_load_explicit(&st->wgen, memory_order_acquire) == gen)
            break;
        free_values(one, vals, errs, m);
        one = NULL;
        use_filter = 0;
        atomic_fetch_add_explicit(&st->f_retries, 1, memory_order_relaxed);
    }
    rocksdb_readoptions_destroy(ro);
    if (st->filter_bits > 0) {
        atomic_fetch_add_explicit(&st->f_read, (uint64_t)m, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->f_skipped, (uint64_t)(nk - m), memory_order_relaxed);
    }

    int found = 0;
    for (int i = 0; i < m; i++) found += vals[i] != NULL;
    range_reserve(r, st->schema, found);
    for (int i = 0; i < m; i++) {
        if (rc == PD_OK && errs[i]) {
            rc = rdb_err(errs[i], err, errlen, "read profile");
            errs[i] = NULL;
        } else if (rc == PD_OK && vals[i]) {
            rc = pd_profile_decode(&r->profs[r->n], vals[i], vlens[i], err, errlen);
            if (rc == PD_OK) r->days[r->n++] = ents[ix[i]]->day;
        }
    }
    free_values(one, vals, errs, m);
    pd_free(heap);
    if (rc != PD_OK) {
        for (int i = 0; i < r->n; i++) pd_profile_reset(&r->profs[i]);
        r->n = 0;
    }
out_snap:
    if (refd) {
        dayents_release(st, refd, nk);
        if (refd != refd_s) pd_free(refd);
    }
    return rc;
}

/* Visits one day family; returns 0, fn's non-zero value, or an error. */
static int scan_day(pd_store *st, pd_dayent *e, int32_t partition, const char *user, size_t ulen,
                    pd_store_visit_fn fn, void *arg, pd_profile *prof, pd_buf *ubuf, char *err,
                    size_t errlen)
{
    int rc = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, e->cf);
    uint8_t pfx[4];
    if (partition >= 0) {
        pd_put_u32be(pfx, (uint32_t)partition);
        if (user) {
            pd_buf k = {0};
            data_key(&k, partition, user, ulen);
            rocksdb_iter_seek(it, k.p, k.len);
            pd_buf_free(&k);
        } else {
            rocksdb_iter_seek(it, (const char *)pfx, 4);
        }
    } else {
        rocksdb_iter_seek_to_first(it);
    }
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 4) continue; /* not a profile key */
        if (partition >= 0 && memcmp(k, pfx, 4) != 0) break;
        if (user && (kl - 4 != ulen || memcmp(k + 4, user, ulen) != 0)) {
            if (partition >= 0) break; /* seeked to the exact key: it is absent */
            continue;
        }
        const char *v = rocksdb_iter_value(it, &vl);
        int32_t kp = (int32_t)pd_get_u32be((const uint8_t *)k);
        pd_profile_reset(prof);
        char e2[200];
        if (pd_profile_decode(prof, v, vl, e2, sizeof e2) != PD_OK) {
            char dn[12];
            pd_store_day_name(e->day, dn);
            rc = pd_seterr(err, errlen, PD_ECORRUPT, "profile %s/%d/%.*s: %s", dn + 1, kp,
                           (int)PD_MIN(kl - 4, 64), k + 4, e2);
            break;
        }
        ubuf->len = 0;
        pd_buf_append(ubuf, k + 4, kl - 4);
        pd_buf_putc(ubuf, '\0');
        rc = fn(arg, e->day, kp, ubuf->p, kl - 4, prof);
        if (rc) break;
    }
    char *re = NULL;
    rocksdb_iter_get_error(it, &re);
    if (re) {
        int r2 = rdb_err(re, err, errlen, "scan");
        if (!rc) rc = r2;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

int pd_store_scan(pd_store *st, int64_t day, int32_t partition, const char *user, size_t ulen,
                  pd_store_visit_fn fn, void *arg, char *err, size_t errlen)
{
    pd_dayent **v;
    int n, rc = 0;
    dayents_ref(st, day, &v, &n);
    pd_profile prof;
    pd_profile_init(&prof, st->schema);
    pd_buf ubuf = {0};
    for (int i = 0; i < n && rc == 0; i++)
        rc = scan_day(st, v[i], partition, user, ulen, fn, arg, &prof, &ubuf, err, errlen);
    pd_buf_free(&ubuf);
    pd_profile_free(&prof);
    dayents_unref(st, v, n);
    return rc;
}

int pd_store_day_stats(pd_store *st, pd_day_stats **out, int *n)
{
    pd_dayent **v;
    int k;
    dayents_ref(st, INT64_MIN, &v, &k);
    *out = pd_calloc((size_t)(k ? k : 1), sizeof **out);
    for (int i = 0; i < k; i++) {
        uint64_t keys = 0, sst = 0, mem = 0;
        if (rocksdb_property_int_cf(st->db, v[i]->cf, "rocksdb.estimate-num-keys", &keys) != 0)
            keys = 0;
        if (rocksdb_property_int_cf(st->db, v[i]->cf, "rocksdb.total-sst-files-size", &sst) != 0)
            sst = 0;
        if (rocksdb_property_int_cf(st->db, v[i]->cf, "rocksdb.cur-size-all-mem-tables", &mem) != 0)
            mem = 0;
        (*out)[i].day = v[i]->day;
        (*out)[i].keys = keys;
        (*out)[i].bytes = sst + mem;
    }
    *n = k;
    dayents_unref(st, v, k);
    return PD_OK;
}

/* ------------------------------------------------------------------ */
/* partition hand-off                                                  */

static int export_range(pd_store *st, const rocksdb_snapshot_t *snap, rocksdb_column_family_handle_t *cf,
                        int32_t partition, char kind, int64_t day, pd_store_export_fn fn, void *arg,
                        char *err, size_t errlen)
{
    uint8_t lo[4], hi[4];
    pd_put_u32be(lo, (uint32_t)partition);
    pd_put_u32be(hi, (uint32_t)partition + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (snap) rocksdb_readoptions_set_snapshot(ro, snap);
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, 4);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, cf);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 4); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 4 || memcmp(k, lo, 4) != 0) break;
        const char *v = rocksdb_iter_value(it, &vl);
        if ((rc = fn(arg, kind, day, k + 4, kl - 4, v, vl)) != 0) break;
    }
    char *re = NULL;
    rocksdb_iter_get_error(it, &re);
    if (re) {
        int r2 = rdb_err(re, err, errlen, "export");
        if (!rc) rc = r2;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

int pd_store_export_partition(pd_store *st, int32_t partition, pd_checkpoint *cp,
                              pd_store_export_fn fn, void *arg, char *err, size_t errlen)
{
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    pd_store_snap *sn = pd_store_snap_acquire(st);
    int rc = PD_OK;
    /* The checkpoint, read from the same snapshot as the data. */
    uint8_t k[PD_CKPT_KEY_LEN];
    ckpt_key(k, partition);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (sn->snap) rocksdb_readoptions_set_snapshot(ro, sn->snap);
    char *re = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(st->db, ro, st->cf_meta, (const char *)k, sizeof k, &vl, &re);
    rocksdb_readoptions_destroy(ro);
    if (re) {
        rc = rdb_err(re, err, errlen, "read checkpoint");
        goto out;
    }
    if (!v || vl != PD_CKPT_VAL_LEN) {
        rocksdb_free(v);
        rc = pd_seterr(err, errlen, PD_ENOTFOUND, "partition %d has no checkpoint here", partition);
        goto out;
    }
    cp->partition = partition;
    cp->next_offset = (int64_t)pd_get_u64be((const uint8_t *)v);
    cp->clock_ms = (int64_t)pd_get_u64be((const uint8_t *)v + 8);
    rocksdb_free(v);
    for (int i = 0; i < sn->ndays && !rc; i++)
        rc = export_range(st, sn->snap, sn->days[i]->cf, partition, 'd', sn->days[i]->day, fn, arg, err, errlen);
    if (!rc) rc = export_range(st, sn->snap, st->cf_dedup, partition, 'x', 0, fn, arg, err, errlen);
out:
    pd_store_snap_release(st, sn);
    return rc;
}

int pd_store_batch_put_profile_raw(pd_store_batch *b, int64_t day, int32_t partition,
                                   const char *user, size_t ulen, const char *val, size_t vlen,
                                   char *err, size_t errlen)
{
    pd_store *st = b->st;
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    pd_profile chk;
    pd_profile_init(&chk, st->schema);
    int rc = pd_profile_decode(&chk, val, vlen, err, errlen);
    pd_profile_free(&chk);
    if (rc) return rc;
    pd_dayent *de;
    if ((rc = day_for_write(st, day, &de, err, errlen))) return rc;
    data_key(&b->key, partition, user, ulen);
    filter_add(de, b->key.p, b->key.len);
    rocksdb_writebatch_put_cf(b->wb, de->cf, b->key.p, b->key.len, val, vlen);
    return PD_OK;
}

int pd_store_delete_partition(pd_store *st, int32_t partition, char *err, size_t errlen)
{
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    uint8_t lo[4], hi[4], ck[PD_CKPT_KEY_LEN];
    pd_put_u32be(lo, (uint32_t)partition);
    pd_put_u32be(hi, (uint32_t)partition + 1);
    ckpt_key(ck, partition);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pd_dayent **v;
    int n;
    dayents_ref(st, INT64_MIN, &v, &n);
    for (int i = 0; i < n; i++)
        rocksdb_writebatch_delete_range_cf(wb, v[i]->cf, (const char *)lo, 4, (const char *)hi, 4);
    rocksdb_writebatch_delete_range_cf(wb, st->cf_dedup, (const char *)lo, 4, (const char *)hi, 4);
    rocksdb_writebatch_delete_cf(wb, st->cf_meta, (const char *)ck, sizeof ck);
    char *re = NULL;
    rocksdb_write(st->db, st->wo, wb, &re);
    rocksdb_writebatch_destroy(wb);
    dayents_unref(st, v, n);
    if (re) return rdb_err(re, err, errlen, "delete partition");
    return PD_OK;
}

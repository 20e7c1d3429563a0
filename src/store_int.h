/*
 * store_int.h -- private to the store's modules: store.c (open, close,
 * column families, meta records, the day map and its filters), store_write.c
 * (the merge operator, batches, commit, retention, imports) and
 * store_read.c (checkpoints, profiles, scans, snapshots, exports). The
 * public contract and the commit order are in include/store.h; the design
 * of each part is atop its file.
 *
 * Ownership: pd_store owns everything in it (handles, options, the day map
 * and its entries, the merge-context pool); a pd_store_batch is the single
 * writer's; a pd_store_snap holds one reference to each of its day entries
 * until pd_store_snap_release.
 */
#ifndef PD_STORE_INT_H
#define PD_STORE_INT_H

#include <rocksdb/c.h>

#include <pthread.h>
#include <sys/types.h>
#include <stdatomic.h>
#include <stdint.h>

#include "bloom.h"
#include "store.h"
#include "util.h"

#define PD_STORE_FORMAT "5"
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
    /* population profiles (keys of 4 bytes: a partition, no user id): the
     * schema with every categorical cap = pop_cap (store.c,
     * store_pop_schema_set); pop_ready once it is set */
    pd_schema pop_schema;
    uint32_t pop_cap;
    uint32_t pop_cap_want;       /* pd_store_opts.population_max_values (0: the recorded one) */
    _Atomic int pop_ready;
    pd_schema *own_schema;       /* read_only with NULL schema: loaded from the store */
    int read_only;
    _Atomic int fail_commits;    /* pd_store_fail_commits (tests) */
    int64_t write_buffer_mb;
    /* operand folding: merges per key hash, shared by all batches (only the
     * single writer thread calls pd_store_batch_merge) */
    uint8_t *fold_cnt;           /* FOLD_SLOTS counters, allocated on the first merge */
    uint64_t fold_bytes;         /* merged bytes since the counters were reset */
    char *dir;
    dev_t dir_dev;               /* of dir when opened (pd_store_dir_check) */
    ino_t dir_ino;
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
    pd_stash pop_merges;         /* the same for population keys (pop_schema) */
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
    pd_profile popfold;          /* the same for population keys (pop_schema; set up on first use) */
    int popfold_init;
    uint64_t folds;              /* merges written as folded Puts */
    rocksdb_readoptions_t *ro;
};

struct pd_store_snap {
    const rocksdb_snapshot_t *snap; /* NULL if the instance cannot snapshot */
    pd_dayent **days;            /* referenced entries, sorted ascending */
    int ndays;
};

/* ---- shared by the store's modules (store_*.c) ---- */

/* Converts a RocksDB error string (malloc'd by RocksDB) into an error
 * code + message and frees it. */
int store_rdb_err(char *e, char *err, size_t errlen, const char *what);

void store_data_key(pd_buf *k, int32_t partition, const char *s, size_t n);

void store_ckpt_key(uint8_t *k, int32_t partition);
void store_sidefx_key(uint8_t *k, int32_t partition); /* PD_CKPT_KEY_LEN bytes */
void store_start_key(uint8_t *k, int32_t partition);  /* PD_CKPT_KEY_LEN bytes */

/* Index of the first entry with day >= `day` (lock held). */
int store_days_lower_bound(pd_dayent *const *days, int n, int64_t day);

/* Inserts a new entry holding the map's reference (lock held). */
void store_days_insert_locked(pd_store *st, pd_dayent *e);

/* 0 when the day's family certainly has no record under the key whose
 * XXH3 is h. */
int store_day_may_hold(pd_dayent *e, uint64_t h);

/* Releases one reference to each of v[0..n) in one lock round; entries
 * whose last reference this was (dropped meanwhile) are destroyed after the
 * lock. Overwrites v. */
void store_dayents_release(pd_store *st, pd_dayent **v, int n);

void store_dayent_unref(pd_store *st, pd_dayent *e);

/* Referenced entry for `day`, or NULL. Release with store_dayent_unref. */
pd_dayent *store_dayent_ref(pd_store *st, int64_t day);

/* References every entry (day == INT64_MIN) or the one for `day`; *out is
 * malloc'd (caller releases each entry and frees the array). */
void store_dayents_ref(pd_store *st, int64_t day, pd_dayent ***out, int *n);

void store_dayents_unref(pd_store *st, pd_dayent **v, int n);

/* The writer (the ingest committer thread, or the ingest thread while no
 * commit is in flight -- never both at once): the entry of `day`, its
 * family created if missing. It stays valid until the writer itself drops
 * the day. A new family's filter is sized like the largest one so far (days
 * tend to look alike). */
int store_day_for_write(pd_store *st, int64_t day, pd_dayent **out, char *err, size_t errlen);

/* Records a data key in its day's filter; before the write that stores it. */
void store_filter_add(pd_dayent *e, const char *key, size_t klen);

/* Frees a pooled merge context (pd_stash_drain callback at close). */
void store_merge_ctx_free(void *x);
/* The population schema: st->schema with every categorical cap (and the
 * event types' cap) = cap; sets pop_cap and pop_ready (store.c). */
void store_pop_schema_set(pd_store *st, uint32_t cap);

/* The "pd_profile_merge_v1" operator of the day families; its state is st
 * (borrowed: the options that take the operator must not outlive st). */
rocksdb_mergeoperator_t *store_merge_operator(pd_store *st);

#endif

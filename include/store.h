/*
 * store.h -- the per-worker RocksDB state store.
 *
 * Column families:
 *   "default"      unused (RocksDB requires it)
 *   "meta"         'o' + partition(u32 BE)  -> checkpoint (next input offset, partition clock)
 *                  "schema"                 -> canonical schema JSON
 *                  "fingerprint"            -> schema fingerprint (hex)
 *                  "format"                 -> store format version
 *                  "dialect"                -> event dialect (PD_EVENT_DIALECT)
 *                  'x' + partition(u32 BE)  -> side-effect record (sidefx.h): how far
 *                                              DLQ / re-route side effects are done
 *                  't' + partition(u32 BE)  -> start time T (i64 BE ms) of an imported
 *                                              partition (below)
 *                  "import"                 -> "running" / "done" (below)
 *   "dedup"        partition(u32 BE) + seq(u64 BE) -> packed de-dup entries,
 *                  PD_DEDUP_ENTRY_LEN bytes each: XXH3-128 of the event id
 *                  (high 64 bits BE, low 64 bits BE) + event ts (i64 BE).
 *                  One record per partition per flush; seq grows with the
 *                  input offset, and later entries override earlier ones
 *                  (see ingest.c for the de-dup index built from them).
 *                  seq 0 (never a flush's: it is the next offset after
 *                  an accepted record) holds one entry, "PDDDCAPH", 0,
 *                  the cap horizon H (dedup.h).
 *   "dYYYY-MM-DD"  one per day: partition(u32 BE) + user_id -> encoded profile
 *                  partition(u32 BE) alone (an empty user id, which no
 *                  event and no erasure can carry: user ids are 1-256
 *                  bytes) -> the partition's POPULATION profile of the
 *                  day: every accepted event of every user, under the
 *                  population schema (pd_store_population_schema: every
 *                  categorical cap = population_max_values, no recent
 *                  items: the population is not one user's). The merge
 *                  operator picks the schema by key length. User-listing
 *                  paths (pd_store_scan) skip these keys; hand-off exports
 *                  carry them (an empty key); erasures never touch them.
 *
 * The partition comes first in every data key, so one partition's state is a
 * contiguous key range in each family (hand-off, deletion). Day families
 * sort by name in date order. Profile values use a RocksDB merge operator
 * whose operation is pd_profile_merge (associative and commutative), so a
 * commit writes deltas blindly; reads see the merged value.
 *
 * Commit order (the exactly-once foundation): a pd_store_batch collects
 * profile deltas, de-dup records (puts and deletes) and the next input offset + clock of every
 * partition it covers; pd_store_commit writes them as ONE WriteBatch. After
 * a crash the store holds either all of a batch or none of it, and the
 * checkpoint says exactly which input follows.
 *
 * Retention: pd_store_drop_days_before drops whole day families (cheap,
 * no compaction). The caller decides the cut-off from event time.
 *
 * Day filters: an in-memory Bloom filter per day family lets a range read
 * skip the days that certainly have no profile for the user (store.c).
 * Families found at open are read once by a background thread to fill
 * theirs; until then those days are read every time.
 *
 * Threads: one writer thread (the ingest loop) calls the batch/commit/drop
 * functions; any number of reader threads may call the get/snapshot
 * functions concurrently. Day family handles are reference counted under a
 * lock so a concurrent drop never invalidates a reader's handle.
 */
#ifndef PD_STORE_H
#define PD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "schema.h"
#include "profile.h"

/* Sizes of a side-effect record (the value of meta 'x' + partition; the
 * format is sidefx.h's): a 13-byte header and up to PD_SIDEFX_MAX_NOTES
 * notes of 16 bytes. Known here for hand-off snapshots, which carry it. */
#define PD_SIDEFX_MAX_NOTES 4096
#define PD_SIDEFX_REC_MIN 13
#define PD_SIDEFX_REC_MAX (PD_SIDEFX_REC_MIN + 16 * PD_SIDEFX_MAX_NOTES)

typedef struct pd_store pd_store;
typedef struct pd_store_batch pd_store_batch;
typedef struct pd_store_snap pd_store_snap;

typedef struct {
    int read_only;          /* open as a RocksDB secondary instance (dump tool);
                               never modifies anything; works while a worker
                               holds the database */
    const char *secondary_dir; /* read_only: scratch dir for the secondary (NULL = mkdtemp) */
    int64_t block_cache_mb; /* 0 = 64 */
    int64_t write_buffer_mb;/* 0 = 32 */
    int day_filter_bits;    /* bits per stored user-day of the day filters that
                               let range queries skip days (0 = 10, < 0 = off) */
    uint64_t day_filter_max_bytes; /* memory limit of all day filters (0 = none);
                               days whose filter does not fit are read always */
    int sync;               /* fsync the WAL on every commit (default 0: WAL
                               written, OS-buffered; survives process crash) */
    uint32_t population_max_values; /* categorical cap of the population profiles:
                               recorded at creation; another value than the
                               recorded one is refused (read-write); 0 = the
                               recorded one (new store: the default) */
} pd_store_opts;

#define PD_POPULATION_MAX_VALUES_DEFAULT 10000

/* Opens (creating if needed, unless read_only) the store at dir. The schema
 * (borrowed, must outlive the store) must match the one recorded in the
 * store, else PD_EINVAL naming the mismatch. A store written under another
 * event dialect (include/event.h; no "dialect" record = 1) is refused with
 * PD_EINVAL and the rebuild instruction (delete the data directory and
 * restart); read_only opens only warn. */
int pd_store_open(pd_store **out, const char *dir, const pd_schema *s, const pd_store_opts *o,
                  char *err, size_t errlen);
void pd_store_close(pd_store *st);
/* The schema the store was opened with (or loaded from it): valid until
 * pd_store_close. */
const pd_schema *pd_store_schema(const pd_store *st);
/* The population schema (see the day families above): the store's schema
 * with every categorical cap and the event types' cap =
 * population_max_values, and recent items off. Valid until
 * pd_store_close. */
const pd_schema *pd_store_population_schema(const pd_store *st);
/* PD_OK while the data directory the store was opened on is still there
 * (same inode, CURRENT present); PD_EIO (err says what) once it was
 * deleted or replaced under the running process, whose writes then go to
 * unlinked files. A stat or two: call it about once a second. */
int pd_store_dir_check(pd_store *st, char *err, size_t errlen);
/* read_only instances: catch up with the primary's latest writes. */
int pd_store_refresh(pd_store *st, char *err, size_t errlen);

/* ---- writing (single writer thread) ---- */
pd_store_batch *pd_store_batch_new(pd_store *st);
void pd_store_batch_free(pd_store_batch *b);
void pd_store_batch_clear(pd_store_batch *b);
/* Adds delta to the profile of (day, partition, user). Creates the day
 * family on demand. ulen == 0 is the partition's population profile of
 * the day (delta of the population schema; merge_event: the event's
 * profile under it). Usually a RocksDB merge operand; a key that collected
 * several operands recently is written as its fully merged value instead
 * (see "Operand folding" in store.c) -- same result, bounded reads. */
int pd_store_batch_merge(pd_store_batch *b, int64_t day, int32_t partition, const char *user,
                         size_t ulen, const pd_profile *delta, char *err, size_t errlen);
/* The same for the delta of one event (ev: a parsed, validated event of the
 * store's schema, borrowed), without building its profile. */
int pd_store_batch_merge_event(pd_store_batch *b, int64_t day, int32_t partition, const char *user,
                               size_t ulen, const pd_event *ev, char *err, size_t errlen);
/* Erasure (erase.h): deletes the key (partition, user) in every day family
 * the store has, and keeps later merges of those keys in this batch from
 * being folded (a fold reads the stored value, which the delete is about
 * to remove, and would write it back). Call it before the batch's merges:
 * RocksDB applies a WriteBatch in order, so a merge after the delete
 * starts from nothing. Writer thread. */
int pd_store_batch_erase_user(pd_store_batch *b, int32_t partition, const char *user, size_t ulen,
                              char *err, size_t errlen);
/* The population schema of the batch's store (pd_store_population_schema). */
const pd_schema *pd_store_batch_population_schema(const pd_store_batch *b);
/* Merges this batch wrote as folded values so far (for metrics). */
uint64_t pd_store_batch_folds(const pd_store_batch *b);
/* De-dup records: val (vlen a multiple of PD_DEDUP_ENTRY_LEN, copied) becomes
 * the record (partition, seq), replacing any record with that key. */
#define PD_DEDUP_ENTRY_LEN 24
void pd_store_batch_put_dedup(pd_store_batch *b, int32_t partition, uint64_t seq, const void *val,
                              size_t vlen);
void pd_store_batch_delete_dedup(pd_store_batch *b, int32_t partition, uint64_t seq);
void pd_store_batch_set_checkpoint(pd_store_batch *b, int32_t partition, int64_t next_offset,
                                   int64_t clock_ms);
/* The side-effect record of a partition (an opaque value, sidefx.c),
 * written with the checkpoint in the same WriteBatch. Not part of hand-off
 * snapshots: it is this worker's knowledge of the log, not state. */
void pd_store_batch_put_sidefx(pd_store_batch *b, int32_t partition, const void *val, size_t vlen);
/* Writes the batch atomically (one WriteBatch). The batch is cleared on
 * success and left intact on failure. */
int pd_store_commit(pd_store *st, pd_store_batch *b, char *err, size_t errlen);
/* Fault injection for tests: while `on`, every pd_store_commit fails with
 * PD_EIO and writes nothing. Safe to call from any thread. */
void pd_store_fail_commits(pd_store *st, int on);

/* Imported stores (`profilectl import`, ctl_import.c). The import marks
 * the store "running" (synchronously) before its first commit and "done"
 * with its last, which also writes every imported partition's checkpoint
 * (next offset 0: nothing of the topic applied, clock = the archive's) and
 * its start time T ('t' record). A worker refuses a store whose import is
 * "running" (half written: import again). A worker taking on a partition
 * that has a start time resolves it to the topic's first offset whose
 * record timestamp is >= T - max_future_skew (partition.c, tsoffset.h)
 * and continues there; a commit made at once checkpoints that offset and
 * replaces T by PD_START_RESOLVED (resolved: continue from the
 * checkpoint, never resolve again), and its first commit with records
 * applied deletes the start time, in the checkpoint's WriteBatch. While T
 * is unresolved the partition is not exported to peers
 * (pd_store_export_partition: PD_ENOTFOUND); once resolved it is, like
 * any partition, without its start-time record: a receiver continues
 * from the checkpoint. The de-dup records an import wrote (keyed by its
 * flush count) are rewritten by the first commit with records, here or at
 * a receiver of the snapshot (pd_dedup_adopt, pd_dedup_foreign). */
#define PD_START_RESOLVED INT64_MIN
/* The import state ("running" / "done") into out; PD_ENOTFOUND when the
 * store was not made by an import. */
int pd_store_get_import(pd_store *st, char *out, size_t outlen);
/* Writes the import state (synchronously). Writer thread. */
int pd_store_set_import(pd_store *st, const char *state, char *err, size_t errlen);
/* The start time T of an imported partition; PD_ENOTFOUND when it has
 * none (never imported, or resolved already). Any thread. */
int pd_store_get_start_time(pd_store *st, int32_t partition, int64_t *t_ms);
void pd_store_batch_set_start_time(pd_store_batch *b, int32_t partition, int64_t t_ms);
void pd_store_batch_clear_start_time(pd_store_batch *b, int32_t partition);

/* The input topic's partition count last recorded (pd_store_set_partitions
 * writes it, synchronously, at start): PD_ENOTFOUND when never recorded. */
int pd_store_get_partitions(pd_store *st, int32_t *n);
int pd_store_set_partitions(pd_store *st, int32_t n, char *err, size_t errlen);

/* Drops every day family with day < first_kept_day. Returns the number
 * dropped (>= 0) or a negative error. */
int pd_store_drop_days_before(pd_store *st, int64_t first_kept_day, char *err, size_t errlen);

/* ---- reading (any thread) ---- */
typedef struct {
    int32_t partition;
    int64_t next_offset;
    int64_t clock_ms;   /* newest event time seen in the partition */
} pd_checkpoint;

int pd_store_get_checkpoint(pd_store *st, int32_t partition, pd_checkpoint *out); /* PD_ENOTFOUND */
/* The side-effect record of a partition into *out (replacing its
 * contents); PD_ENOTFOUND when there is none, PD_EIO on a read error. */
int pd_store_get_sidefx(pd_store *st, int32_t partition, pd_buf *out);
/* All checkpoints, sorted by partition; *out is malloc'd, caller frees. */
int pd_store_list_checkpoints(pd_store *st, pd_checkpoint **out, int *n);
/* Visits the de-dup records of `partition` in ascending seq order (latest
 * committed state). `val` is valid only during the call; a non-zero return
 * of fn stops the scan and is returned. A record whose key or value length
 * is malformed gives PD_ECORRUPT. Any thread. */
typedef int (*pd_store_dedup_fn)(void *arg, uint64_t seq, const uint8_t *val, size_t vlen);
int pd_store_scan_dedup(pd_store *st, int32_t partition, pd_store_dedup_fn fn, void *arg, char *err,
                        size_t errlen);

/* Day families present, ascending; *days malloc'd, caller frees. */
int pd_store_list_days(pd_store *st, int64_t **days, int *n);

/* A consistent point-in-time view across all day families. */
pd_store_snap *pd_store_snap_acquire(pd_store *st);
void pd_store_snap_release(pd_store *st, pd_store_snap *snap);
/* Reads one profile into an initialised, empty `out` (snap may be NULL for
 * latest). PD_ENOTFOUND when the user has nothing that day. ulen == 0:
 * the partition's population profile (out initialised with
 * pd_store_population_schema). */
int pd_store_get_profile(pd_store *st, pd_store_snap *snap, int64_t day, int32_t partition,
                         const char *user, size_t ulen, pd_profile *out, char *err, size_t errlen);

/* The profiles of one user over a day range, read with one MultiGet.
 * Owns its arrays and the contents of profs[0..n); reusable across calls
 * (each call resets the previous contents); release with
 * pd_store_range_free. Zero-initialise before first use (= {0}). */
typedef struct {
    int n;                /* days found */
    int cap;              /* allocated slots */
    int64_t *days;        /* [n] ascending day numbers */
    pd_profile *profs;    /* [n] decoded merged profiles (schema of the store) */
} pd_store_range;
void pd_store_range_free(pd_store_range *r);
/* Heap bytes r holds (its arrays and the capacity of every profile slot). */
size_t pd_store_range_mem_bytes(const pd_store_range *r);
/* Reads the profiles of (partition, user) for every day family with
 * from_day <= day <= to_day whose day filter may hold the user, in ONE
 * RocksDB read (a Get for one day, else a MultiGet): at the snapshot of
 * snap, or (snap NULL) at the latest state -- still one point in time
 * across all the days, without creating a snapshot (a commit that overlaps
 * the filter checks makes it read every day again). Days without data for
 * the user are skipped, so r->n may be 0 (not an error). Families outside
 * the range are not touched. On error r->n is 0 and err says why (PD_EIO,
 * PD_ECORRUPT for an undecodable value). Any thread. */
int pd_store_get_profile_range(pd_store *st, pd_store_snap *snap, int64_t from_day, int64_t to_day,
                               int32_t partition, const char *user, size_t ulen, pd_store_range *r,
                               char *err, size_t errlen);

/* Scans USER profiles (population keys are skipped): day (INT64_MIN =
 * every day), partition (-1 = all), user (NULL = all). Calls fn for each; a non-zero return from fn stops the scan
 * and is returned. `prof` is valid only during the call. */
typedef int (*pd_store_visit_fn)(void *arg, int64_t day, int32_t partition, const char *user,
                                 size_t ulen, const pd_profile *prof);
int pd_store_scan(pd_store *st, int64_t day, int32_t partition, const char *user, size_t ulen,
                  pd_store_visit_fn fn, void *arg, char *err, size_t errlen);

typedef struct {
    int64_t day;
    uint64_t keys;       /* estimated (rocksdb.estimate-num-keys) */
    uint64_t bytes;      /* SST + memtable size estimate */
} pd_day_stats;
/* *out malloc'd, caller frees. */
/* RocksDB's memory, approximately (bytes): memtables (all families, incl.
 * ones being flushed), SST readers' index and filter blocks held outside
 * the block cache, and the block cache. Any thread. */
typedef struct {
    uint64_t memtables, table_readers, block_cache;
} pd_store_mem;
int pd_store_mem_stats(pd_store *st, pd_store_mem *out, char *err, size_t errlen);
/* Day filters (see store.c): bytes they hold, days whose filter is still
 * being filled after open (read every time meanwhile), days limited by
 * day_filter_max_mb (no filter, or one over its capacity: more false
 * positives), and since open the day families range queries read and
 * skipped, and the queries that read again without filters because a
 * commit overlapped them. Any thread. */
typedef struct {
    uint64_t bytes, days_filling, days_limited, days_read, days_skipped, retries;
} pd_store_filter_stats;
void pd_store_get_filter_stats(pd_store *st, pd_store_filter_stats *out);
int pd_store_day_stats(pd_store *st, pd_day_stats **out, int *n);

/* ---- partition hand-off (state transfer between workers) ---- */

/* Visits every record of `partition` from ONE consistent snapshot: first
 * its side-effect record when it has one (kind 'f', empty key, value as
 * stored: sidefx.h), then
 * each day family's profiles (kind 'd', day set, key = user id without the
 * partition prefix; empty for the population profile, value = encoded
 * merged profile), then its de-dup
 * records (kind 'x', key = seq u64 BE, value = packed entries as in the
 * "dedup" family). *cp receives the
 * checkpoint read from the same snapshot. PD_ENOTFOUND (fn never called)
 * when the partition has no checkpoint here. A non-zero return of fn stops
 * the export and is returned. Pointers passed to fn are valid only during
 * the call. Any thread. */
typedef int (*pd_store_export_fn)(void *arg, char kind, int64_t day, const char *key, size_t klen,
                                  const char *val, size_t vlen);
int pd_store_export_partition(pd_store *st, int32_t partition, pd_checkpoint *cp,
                              pd_store_export_fn fn, void *arg, char *err, size_t errlen);
/* Writer thread, snapshot import: puts an already merged profile value
 * (replacing whatever is there) for (day, partition, user; ulen 0: the
 * population profile). The value is validated by decoding it first
 * (PD_ECORRUPT), under the population schema for ulen 0. */
int pd_store_batch_put_profile_raw(pd_store_batch *b, int64_t day, int32_t partition,
                                   const char *user, size_t ulen, const char *val, size_t vlen,
                                   char *err, size_t errlen);
/* Writer thread: deletes every record of `partition` -- its range in every
 * day family and in the de-dup family, its checkpoint and start time -- in one
 * WriteBatch (DeleteRange). */
int pd_store_delete_partition(pd_store *st, int32_t partition, char *err, size_t errlen);

/* Name of the day family, "dYYYY-MM-DD" (out >= 12 bytes). */
void pd_store_day_name(int64_t day, char *out);

#endif

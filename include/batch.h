/*
 * batch.h -- one ingest batch: the accepted events of one commit, grouped
 * per (partition, day, user), and the sorted build of their profile deltas.
 *
 * The batch is one entry per (partition, day, user) -- an xxhash-keyed
 * open-addressing table -- and, in one append-only event log, a compact
 * record of every accepted event, chained per entry. Profiles are built
 * only at flush (by the committer thread), one entry at a time, in a single
 * scratch profile that stays in cache. Keeping a full pd_profile per entry
 * instead cost kilobytes per user-day (hundreds of MB for a batch of 50k
 * new user-days) and cache misses on every add; the log costs about the
 * event's attribute bytes and is written sequentially. Entries are recycled
 * and hold their key (the table's slot points at it), so a warm batch
 * allocates nothing.
 *
 * Invariant: the profile delta of an entry is exactly pd_profile_add of its
 * events, in the order they were added, on an empty profile (the pure
 * model, profile.c); unit test batch_build_matches_profile_model.
 *
 * Population (population.h): per (partition, day) of the batch, one more
 * merge under the empty user id, whose delta is the pd_profile of all
 * those events under the population schema of the store
 * (pd_store_population_schema): built from the user entries' deltas as
 * they are written (merged, their overflowed catsets re-added; batch.c) plus
 * the events an erasure took off a user's chain, which it moves to the
 * partition-day's population entry. So the population counts every
 * accepted event exactly once wherever batches end; unit test
 * population_delta_matches_per_event_model.
 *
 * Erasures (erase.h): pd_batch_erase empties the chains of a user's entries
 * (every day of the batch) -- the events before the erasure record are
 * forgotten, later ones start a fresh chain -- and remembers (partition,
 * user). pd_batch_build writes, for every remembered erasure, the deletes
 * of the user's stored days BEFORE any merge of the batch, so the
 * WriteBatch reads: erase what was stored, then add what came after.
 * Entries left with no events write nothing.
 *
 * Threads and ownership: a pd_batch has no lock. One thread at a time owns
 * it -- the ingest thread while it fills it, the committer while it builds
 * and clears it; the hand-over is pd_batch_slot (committer.h). Events
 * passed to pd_batch_add are copied; nothing of the caller's is kept.
 */
#ifndef PD_BATCH_H
#define PD_BATCH_H

#include "event.h"
#include "profile.h"
#include "store.h"
#include "util.h"

#include <stdatomic.h>

/* Entry key: day u64 BE | partition u32 BE | user -- sorts like the
 * store's keys (day family, then partition + user). */
#define PD_BATCH_KEY_MAX (4 + 8 + PD_MAX_USER_ID)

typedef struct {
    int32_t partition;
    int64_t day;
    const char *user;        /* key + 12 */
    uint32_t ulen;
    size_t head, tail;       /* log offsets of the entry's first and last record */
    char key[PD_BATCH_KEY_MAX];
} pd_batch_entry;

struct pd_batch_tslot;  /* batch.c: a slot of the table */
struct pd_batch_sorted; /* batch.c: an entry with its sort key */

typedef struct {
    struct pd_batch_tslot *slots; /* cap slots, cap a power of two */
    size_t cap, n;
    pd_buf evlog;            /* the batch's event records (see batch.c) */
    struct pd_batch_sorted *sorted; /* build scratch: the entries in key order */
    size_t capsorted;
    pd_batch_entry **free_entries;  /* recycled entries */
    size_t nfree, capfree;
    uint64_t events;         /* accepted events in the batch */
    int64_t *days;           /* the distinct days of the entries (erasures look them up) */
    size_t ndays, capdays;
    pd_buf erasures;         /* erasure records: i32 partition, u16 len, user bytes (native order) */
    size_t nerasures;
    /* memory follows the load (see pd_batch_clear) */
    size_t win_entries, win_log;
    uint32_t win_commits;
    _Atomic uint64_t *gauge; /* metrics: this batch's bytes (NULL: none) */
    int population;          /* 1 (default): keep population entries; 0 only for benchmarks */
    pd_profile pop_scratch;  /* build scratch of population entries (pop_scratch_init) */
    int pop_scratch_init;
} pd_batch;

/* An empty batch whose size is published to *gauge (may be NULL). */
void pd_batch_init(pd_batch *b, _Atomic uint64_t *gauge);
void pd_batch_free(pd_batch *b);

/* Appends accepted event ev (of partition p, day `day`) to its entry. */
void pd_batch_add(pd_batch *b, int32_t p, int64_t day, const pd_event *ev);

/* An erasure record of (p, user) at this point of p's input: the user's
 * events added so far (every day) are dropped, later ones count fresh, and
 * the build deletes the user's stored days first (see above). user is
 * copied. */
void pd_batch_erase(pd_batch *b, int32_t p, const char *user, size_t ulen);

/* Entries in the batch. */
static inline size_t pd_batch_entries(const pd_batch *b) { return b->n; }

/* Sorts the entries in store key order (day, partition, user bytes with
 * the shorter first on a common prefix) and returns how many there are;
 * pd_batch_sorted_at(b, i) is the i-th until the batch changes. */
size_t pd_batch_sort(pd_batch *b);
const pd_batch_entry *pd_batch_sorted_at(const pd_batch *b, size_t i);

/* Decodes the log record at off into ev (ev->nattrs = the schema's
 * dimensions; its strings point into the log, valid until the batch is
 * cleared) and returns the offset of the entry's next record (0: none). */
size_t pd_batch_decode(const pd_batch *b, size_t off, pd_event *ev);
/* Builds the profile of entry e into p (cleared first), with ev (nattrs
 * set) as scratch. */
void pd_batch_entry_build(const pd_batch *b, const pd_batch_entry *e, pd_profile *p, pd_event *ev);

/* Committer: first the deletes of every erasure (pd_store_batch_erase_user),
 * then the deltas of every entry with events, in store key order, as
 * merge operands (RocksDB's memtable skiplist remembers where the previous
 * insert went, so sorted inserts skip most of the search). scratch is the
 * one profile entries are built in. Sets *writes to the number of deltas
 * plus the erasures. */
int pd_batch_build(pd_batch *b, pd_store_batch *sb, pd_profile *scratch, uint64_t *writes, char *err,
                   size_t errlen);

/* Empties the batch (entries are recycled), gives back memory a past
 * burst left (see batch.c) and publishes its size. */
void pd_batch_clear(pd_batch *b);
/* Removes the entries and erasures of the partitions p with
 * only_parts[p] != 0 (their log records become unreachable, reclaimed at
 * the next clear). */
void pd_batch_drop_parts(pd_batch *b, const char *only_parts);
/* Heap bytes the batch holds; pd_batch_publish stores it in the gauge. */
uint64_t pd_batch_mem(const pd_batch *b);
void pd_batch_publish(const pd_batch *b);

#endif

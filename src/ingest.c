/*
 * ingest.c -- the exactly-once ingestion loop.
 *
 * Data flow (the ingest thread, then the committer thread):
 *   consume batch -> for each record: parse + validate (event.c), route check
 *   (murmur2), retention check, de-dup check, append to the batch's event
 *   log under its (partition, day, user) entry -> flush: ONE WriteBatch with,
 *   per partition, one de-dup record of the ids accepted since the last
 *   flush (and deletes of expired ones) and, for every partition touched,
 *   its next input offset and event-time clock; handed to the committer,
 *   which adds the profile deltas (RocksDB merge operands, built from the
 *   log) and writes it (see "committing").
 *
 * Why this is exactly-once under kill -9 at any point:
 *   - The store is the source of truth for "what input has been applied":
 *     the checkpoint of partition p is written in the same WriteBatch as the
 *     state derived from the records before it. RocksDB applies a WriteBatch
 *     atomically (WAL), so after a crash the state equals the fold of the
 *     input up to the checkpoint, and consumption restarts exactly there.
 *   - Records below the checkpoint (redelivered after a rebalance or seek)
 *     are skipped by offset comparison.
 *   - Kafka-committed offsets are written after the store commit and used
 *     only when the store has no checkpoint (first start) and for lag
 *     monitoring.
 *   - Side effects on Kafka (DLQ records, re-produced misrouted events) are
 *     produced before the commit that moves the checkpoint past their
 *     source record, and the flush waits for their delivery. A crash in
 *     between re-produces them: the DLQ is at-least-once (consumers of the
 *     DLQ key on source partition/offset headers); re-produced events are
 *     made exact by de-dup on event_id, or on the "profiled-origin" header
 *     (source partition/offset) for events without an event_id.
 *
 * Determinism: every decision uses only the input log -- event time, the
 * Kafka record timestamp (future-skew check), the partition's clock (the
 * newest event time seen in that partition, checkpointed with the offset).
 * Replaying a partition from any checkpoint gives the same state.
 *
 * De-dup rule: an event with event_id E in partition p is a duplicate iff a
 * record (p, E, t0) exists with |ts - t0| <= dedup_window and
 * t0 >= clock_p - dedup_window (clock after this event). Records older than
 * clock_p - dedup_window can never match again, so garbage-collecting them
 * cannot change results. The record kept for (p, E) is the latest accepted
 * occurrence (see "the de-dup index" below for how it is held).
 *
 * Retention rule: an event whose day is before
 * day(clock_p) - retention_days + 1 is dropped (counted). Whole day column
 * families are dropped when older than that floor for every partition that
 * has a checkpoint in this store (the minimum clock), so a partition whose
 * state is stale never loses days it would still count.
 */
#include "ingest.h"

#include "event.h"
#include "handoff.h"
#include "members.h"
#include "profile.h"

#include <inttypes.h>
#include <pthread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define DLQ_MAX_DETAIL 256
#define TRIM_EVERY_US (30 * 1000000LL) /* malloc_trim cadence (see pd_ingest_run) */

/* ---- a small open-addressing hash table keyed by bytes ---- */

typedef struct {
    uint64_t hash;
    const char *key;  /* NULL: free slot; else stable storage of the user's */
    uint32_t klen;
    void *val;        /* owned by the table's user */
} ht_slot;

typedef struct {
    ht_slot *slots;
    size_t cap, n;    /* cap is a power of two */
} htab;

static void ht_init(htab *t, size_t cap)
{
    t->cap = cap;
    t->n = 0;
    t->slots = pd_calloc(cap, sizeof(ht_slot));
}

static ht_slot *ht_find(htab *t, uint64_t h, const char *k, uint32_t kl)
{
    size_t m = t->cap - 1;
    for (size_t i = h & m;; i = (i + 1) & m) {
        ht_slot *s = &t->slots[i];
        if (!s->key) return s;
        if (s->hash == h && s->klen == kl && memcmp(s->key, k, kl) == 0) return s;
    }
}

static void ht_grow(htab *t)
{
    htab n;
    ht_init(&n, t->cap * 2);
    for (size_t i = 0; i < t->cap; i++) {
        ht_slot *s = &t->slots[i];
        if (!s->key) continue;
        *ht_find(&n, s->hash, s->key, s->klen) = *s;
        n.n++;
    }
    free(t->slots);
    *t = n;
}

/* Returns the slot holding k, or the free slot where k belongs (key NULL),
 * which the caller fills with ht_fill before the next table operation. */
static ht_slot *ht_lookup(htab *t, uint64_t h, const char *k, uint32_t kl)
{
    if ((t->n + 1) * 4 > t->cap * 3) ht_grow(t);
    return ht_find(t, h, k, kl);
}

/* Fills the free slot s; key (kl bytes) must stay valid and unchanged
 * while the slot is in the table. */
static void ht_fill(htab *t, ht_slot *s, uint64_t h, const char *key, uint32_t kl, void *val)
{
    s->hash = h;
    s->key = key;
    s->klen = kl;
    s->val = val;
    t->n++;
}

/* ---- batch entries ---- */

/* The batch: one entry per (partition, day, user) and, in one append-only
 * log (agg_batch.evlog), a compact record of every accepted event, chained
 * per entry. Profiles are built only at flush (by the committer), one entry
 * at a time, in a single scratch profile that stays in cache. Keeping a
 * full pd_profile per entry instead cost kilobytes per user-day (hundreds
 * of MB for a batch of 50k new user-days) and cache misses on every add;
 * the log costs about the event's attribute bytes and is written
 * sequentially. Entries are recycled and hold their key (the table's
 * slot points at it), so a warm batch allocates nothing.
 *
 * Record layout (8-byte aligned, native byte order, memory only):
 *   ev_rec | type bytes | nattrs x (u8 dim, u8 kind,
 *                                   then STR: u16 len + bytes, NUM: f64) */
#define AGG_KEY_MAX (4 + 8 + PD_MAX_USER_ID)
typedef struct {
    int32_t partition;
    int64_t day;
    const char *user;  /* key + 12 */
    uint32_t ulen;
    size_t head, tail; /* offsets of the entry's first and last record */
    char key[AGG_KEY_MAX]; /* day u64 BE | partition u32 BE | user: sorts like the store's keys */
} agg_entry;

/* One batch: the aggregation table and its event log. The ingest thread
 * fills ig->bt[ig->cur]; a flush hands it, with the WriteBatch sbs[cur], to
 * the committer thread, which builds the deltas from it, commits and
 * clears it, while the ingest thread fills the other one. */
typedef struct {
    htab agg;                 /* key: day(8) partition(4) user -> agg_entry */
    pd_buf evlog;             /* the batch's event records (see agg_entry) */
    struct sort_rec *sorted;  /* build scratch: the entries in key order */
    size_t capsorted;
    agg_entry **free_entries; /* recycled entries */
    size_t nfree, capfree;
    uint64_t events;          /* accepted events in the batch */
    /* memory follows the load (batch_trim) */
    size_t win_entries;       /* most entries a batch held in this window of commits */
    size_t win_log;           /* longest event log in this window */
    uint32_t win_commits;
    _Atomic uint64_t *gauge;  /* metrics: batch_bytes[i] of this batch (NULL: none) */
} agg_batch;

/* Batches keep their capacity between commits (a warm batch allocates
 * nothing), but a burst -- catch-up after a restart, batches of
 * batch_max_events -- must not pin its peak for good: every BATCH_WINDOW
 * commits, a batch whose table, recycled entries, sort scratch or event log
 * exceed four times what the window's largest batch needed gives the
 * excess back (keeping twice that need, and at least BATCH_KEEP_MIN
 * entries / BATCH_KEEP_LOG log bytes). */
#define BATCH_WINDOW 64
#define BATCH_KEEP_MIN 1024
#define BATCH_KEEP_LOG ((size_t)64 << 10)

typedef struct {
    size_t next;       /* offset of the entry's next record; 0 = none */
    int64_t ts;
    uint16_t type_len;
    uint16_t nattrs;   /* attributes present (kind STR or NUM) */
} ev_rec;

/* ---- the de-dup index (one per partition) ----
 *
 * In memory: XXH3-128(event id) -> ts of the latest ACCEPTED occurrence
 * (a duplicate never changes it), holding at least every entry with
 * ts >= clock - dedup_window; older entries can never match again and are
 * dropped whenever the table is rebuilt (on growth). About 40 bytes per
 * event of the window (24-byte slots at 50-75% load).
 *
 * In the store: ONE record per partition per flush, key (partition, seq =
 * the partition's next offset at that flush), value = the entries accepted
 * since the previous flush, in acceptance order (store.h). Loading scans a
 * partition's records in seq order and lets later entries override earlier
 * ones, which rebuilds exactly the in-memory map.
 *
 * Garbage collection: record R gets gc_ts = the max, over its entries, of
 * the entry's ts and of the ts it overrode. R is deleted (in a flush batch,
 * with the checkpoint whose clock decides it) once gc_ts < clock -
 * dedup_window. Then R's own entries are expired, and so is every value R
 * overrode, so whatever a reload finds for those ids instead (an older
 * record, or nothing) is expired as well: results cannot change. The same
 * gc_ts is recomputed on load (overrides of records already deleted were
 * expired, which is all that matters). Collection takes expired records
 * from the front of the seq order each flush, and all of them every
 * DD_FULL_GC_EVERY flushes of the partition. */

#define DD_EMPTY INT64_MIN
#define DD_FULL_GC_EVERY 64

typedef struct {
    uint64_t hi, lo;  /* XXH3-128 of the event id */
    int64_t ts;       /* DD_EMPTY: free slot */
} dd_slot;

typedef struct {
    uint64_t seq;
    int64_t gc_ts;
} dd_rec;

typedef struct {
    int loaded;
    dd_slot *slots;       /* cap slots, cap a power of two (0 = none) */
    size_t cap, n;
    dd_rec *recs;         /* stored records, ascending seq, from index head */
    size_t head, nrecs, caprecs;
    pd_buf pend;          /* entries accepted since the last commit (store format) */
    int64_t pend_gc;      /* gc_ts of the pending record (DD_EMPTY: none) */
    uint32_t flushes;
} dd_index;

enum { ROLE_NONE = 0, ROLE_OWNER = 1, ROLE_REPLICA = 2 };

/* A snapshot download running on its own thread (see handoff.h). The
 * ingest thread owns the struct; the thread only writes rc/cp/err/bytes/
 * from/t_fetched_us before setting done. */
typedef struct restore_job {
    int32_t p;
    pthread_t th;
    _Atomic int done;
    _Atomic int cancel;
    const pd_config *cfg;
    const pd_schema *schema;
    pd_holder src[8];
    int nsrc;
    int rc;
    pd_checkpoint cp;
    uint64_t bytes;
    int64_t t0_us;        /* job started */
    int64_t t_fetched_us; /* download verified (0 until then) */
    char path[1100];
    char from[130];
    char err[256];
} restore_job;

/* Per-partition private state of the ingest thread. */
typedef struct {
    int role;             /* ROLE_*: owner (group assignment) or warm replica */
    int dirty;            /* offsets advanced since the last commit */
    int64_t next_offset;  /* next offset to process; -1 = take what comes */
    int64_t clock_ms;     /* newest event time seen (0 = none) */
    int scratch;          /* rebuilt from the start of the topic */
    int64_t catchup_to;   /* not ready (not served) until committed up to here; 0 = ready */
    int64_t orphan_since_ms; /* neither owned nor replicated, with local state, since */
    int64_t floor_seen;   /* retention floor day of the clock last checkpointed (built) */
    restore_job *job;     /* != NULL while the state is being fetched */
    dd_index dd;          /* loaded on the first record after assignment */
} part_priv;

/* What a commit in flight checkpoints, per partition (see "committing"). */
typedef struct {
    int32_t p;
    int64_t next_offset;
} commit_part;

struct pd_ingest {
    pd_worker *w;
    const pd_config *cfg;
    rd_kafka_t *consumer;
    rd_kafka_queue_t *cq;
    rd_kafka_t *producer;
    rd_kafka_t *rconsumer;    /* replicas: assign-mode consumer (NULL when replicas = 0) */
    rd_kafka_queue_t *rq;
    part_priv *pp;            /* w->nparts */
    int64_t last_replica_us;
    int64_t last_cleanup_us;
    int64_t last_trim_us;
    agg_batch bt[2];          /* batches: one filled while the other is built + committed */
    pd_store_batch *sbs[2];   /* their WriteBatches */
    int cur;                  /* the pair the ingest thread fills */
    pd_profile scratch;       /* committer thread: the profile of one entry */
    int64_t dirty_since_us;   /* first uncommitted record since the last commit (0 = none) */
    /* the committer thread (see "committing") */
    pthread_t cm_th;
    int cm_started;
    pthread_mutex_t cm_mu;
    pthread_cond_t cm_cv;
    pd_store_batch *cm_job;   /* handed over, being built and written (guarded by cm_mu) */
    agg_batch *cm_bt;         /* the batch cm_job's deltas come from (guarded by cm_mu) */
    int cm_done, cm_rc, cm_quit; /* guarded by cm_mu */
    char cm_err[256];         /* guarded by cm_mu */
    int cm_inflight;          /* ingest thread: a commit is not finished yet */
    commit_part *cm_parts;    /* ingest thread: what the commit in flight checkpoints */
    size_t cm_nparts, cm_capparts;
    uint64_t cm_events;
    uint64_t cm_writes;       /* set by the committer (guarded by cm_mu) */
    int cm_floor_moved;
    int64_t cm_t0_us;
    int64_t last_flush_us;    /* when the last batch was handed to the committer */
    int64_t produce_outstanding;
    int64_t produce_failed;
    int64_t last_wm_us;
    int64_t last_kick_us[3];  /* fetch wake-ups, by ROLE_* (see wake_fetcher) */
    int64_t kick_gap_us[3];
    int64_t last_retention_day; /* last floor applied */
    int64_t last_retention_us;  /* last apply_retention run */
    int fatal;
    int closed;               /* pd_ingest_close done */
    char errbuf[512];
};

static uint64_t hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

static agg_entry *entry_get(agg_batch *b)
{
    if (b->nfree) return b->free_entries[--b->nfree];
    return pd_calloc(1, sizeof(agg_entry));
}

/* Appends ev's record to the log and chains it to e. */
static void evlog_append(agg_batch *b, agg_entry *e, const pd_event *ev)
{
    pd_buf *L = &b->evlog;
    if (L->len == 0) L->len = 8; /* offset 0 means "none" */
    size_t need = sizeof(ev_rec) + ev->type_len + 8;
    for (int i = 0; i < ev->nattrs; i++) {
        const pd_attr *a = &ev->attrs[i];
        if (a->kind == PD_ATTR_STR) need += 4 + a->len;
        else if (a->kind == PD_ATTR_NUM) need += 2 + sizeof(double);
    }
    pd_buf_reserve(L, need);
    const size_t off = L->len;
    uint8_t *base = (uint8_t *)L->p + off, *o = base + sizeof(ev_rec);
    memcpy(o, ev->type, ev->type_len);
    o += ev->type_len;
    uint16_t n = 0;
    for (int i = 0; i < ev->nattrs; i++) {
        const pd_attr *a = &ev->attrs[i];
        if (a->kind != PD_ATTR_STR && a->kind != PD_ATTR_NUM) continue;
        *o++ = (uint8_t)i;
        *o++ = a->kind;
        if (a->kind == PD_ATTR_STR) {
            uint16_t len = (uint16_t)a->len;
            memcpy(o, &len, 2);
            memcpy(o + 2, a->s, a->len);
            o += 2 + a->len;
        } else {
            memcpy(o, &a->num, sizeof(double));
            o += sizeof(double);
        }
        n++;
    }
    ev_rec h = {.next = 0, .ts = ev->ts_ms, .type_len = (uint16_t)ev->type_len, .nattrs = n};
    memcpy(base, &h, sizeof h);
    L->len = (off + (size_t)(o - base) + 7) & ~(size_t)7;
    if (e->tail) ((ev_rec *)(void *)(L->p + e->tail))->next = off;
    else e->head = off;
    e->tail = off;
}

/* Decodes the record at off into ev (nattrs set; its strings point into
 * the log) and returns the offset of the entry's next record (0: none). */
static size_t evlog_decode(const agg_batch *b, size_t off, pd_event *ev)
{
    const ev_rec *h = (const ev_rec *)(const void *)(b->evlog.p + off);
    const uint8_t *o = (const uint8_t *)h + sizeof *h;
    for (int i = 0; i < ev->nattrs; i++) ev->attrs[i].kind = PD_ATTR_ABSENT;
    ev->ts_ms = h->ts;
    ev->type = (const char *)o;
    ev->type_len = h->type_len;
    o += h->type_len;
    for (uint16_t k = 0; k < h->nattrs; k++) {
        pd_attr *a = &ev->attrs[o[0]];
        a->kind = o[1];
        if (o[1] == PD_ATTR_STR) {
            uint16_t len;
            memcpy(&len, o + 2, 2);
            a->len = len;
            a->s = (const char *)o + 4;
            o += 4 + len;
        } else {
            memcpy(&a->num, o + 2, sizeof(double));
            o += 2 + sizeof(double);
        }
    }
    return h->next;
}

/* Builds the profile of entry e from its records into p (cleared first),
 * using ev (nattrs set) as scratch. */
static void evlog_build(const agg_batch *b, const agg_entry *e, pd_profile *p, pd_event *ev)
{
    pd_profile_clear(p);
    for (size_t off = e->head; off;) {
        off = evlog_decode(b, off, ev);
        pd_profile_add(p, ev);
    }
}

/* Store key order: day, then partition, then user bytes (shorter first on
 * a common prefix) -- the order of the entry keys compared as bytes. The
 * sort compares the first 24 key bytes as three big-endian words (the key
 * zero-padded), stored next to the entry pointer, and the whole keys only
 * on a tie: no pointer chasing and no memcmp calls for most pairs. */
typedef struct sort_rec {
    uint64_t k[3];
    agg_entry *e;
} sort_rec;

static void sort_rec_set(sort_rec *r, agg_entry *e)
{
    uint8_t pad[24] = {0};
    const size_t kl = 12 + (size_t)e->ulen;
    memcpy(pad, e->key, kl < sizeof pad ? kl : sizeof pad);
    for (int i = 0; i < 3; i++) r->k[i] = pd_get_u64be(pad + 8 * i);
    r->e = e;
}

static inline int sort_rec_cmp(const sort_rec *ra, const sort_rec *rb)
{
    for (int i = 0; i < 3; i++)
        if (ra->k[i] != rb->k[i]) return ra->k[i] < rb->k[i] ? -1 : 1;
    const agg_entry *a = ra->e, *b = rb->e;
    uint32_t la = 12 + a->ulen, lb = 12 + b->ulen;
    int c = memcmp(a->key, b->key, la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : la > lb;
}

PD_SORT_DEFINE(sort_recs, sort_rec, sort_rec_cmp)

static void entry_put(agg_batch *b, agg_entry *e)
{
    e->head = e->tail = 0;
    if (b->nfree == b->capfree) {
        b->capfree = b->capfree ? b->capfree * 2 : 1024;
        b->free_entries = pd_realloc(b->free_entries, b->capfree * sizeof *b->free_entries);
    }
    b->free_entries[b->nfree++] = e;
}

static void batch_free(agg_batch *b)
{
    for (size_t i = 0; i < b->agg.cap; i++)
        if (b->agg.slots[i].key) free(b->agg.slots[i].val);
    free(b->agg.slots);
    for (size_t i = 0; i < b->nfree; i++) free(b->free_entries[i]);
    free(b->free_entries);
    pd_buf_free(&b->evlog);
    free(b->sorted);
    memset(b, 0, sizeof *b);
}

/* Heap bytes the index holds. */
static size_t dd_bytes(const dd_index *d)
{
    return d->cap * sizeof *d->slots + d->caprecs * sizeof *d->recs + d->pend.cap;
}

/* Forgets the index (memory only; the store keeps the records). */
static void dd_free(dd_index *d)
{
    free(d->slots);
    free(d->recs);
    pd_buf_free(&d->pend);
    memset(d, 0, sizeof *d);
}

static dd_slot *dd_find(dd_index *d, uint64_t hi, uint64_t lo)
{
    size_t m = d->cap - 1;
    for (size_t i = (size_t)lo & m;; i = (i + 1) & m) {
        dd_slot *s = &d->slots[i];
        if (s->ts == DD_EMPTY || (s->lo == lo && s->hi == hi)) return s;
    }
}

/* Rebuilds the table without the entries older than horizon, sized for
 * at most 50% load after the rebuild. */
static void dd_rebuild(dd_index *d, int64_t horizon)
{
    size_t live = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->slots[i].ts != DD_EMPTY && d->slots[i].ts >= horizon) live++;
    size_t cap = 64;
    while ((live + 1) * 2 > cap) cap *= 2;
    dd_slot *old = d->slots;
    size_t ocap = d->cap;
    d->slots = pd_malloc(cap * sizeof *d->slots);
    for (size_t i = 0; i < cap; i++) d->slots[i].ts = DD_EMPTY;
    d->cap = cap;
    d->n = 0;
    for (size_t i = 0; i < ocap; i++) {
        dd_slot *s = &old[i];
        if (s->ts == DD_EMPTY || s->ts < horizon) continue;
        *dd_find(d, s->hi, s->lo) = *s;
        d->n++;
    }
    free(old);
}

/* Sets id hash -> ts; returns the value it overrode (DD_EMPTY if none). */
static int64_t dd_set(dd_index *d, uint64_t hi, uint64_t lo, int64_t ts, int64_t horizon)
{
    if ((d->n + 1) * 4 > d->cap * 3) dd_rebuild(d, horizon);
    dd_slot *s = dd_find(d, hi, lo);
    int64_t prev = s->ts;
    if (prev == DD_EMPTY) {
        s->hi = hi;
        s->lo = lo;
        d->n++;
    }
    s->ts = ts;
    return prev;
}

static void dd_rec_push(dd_index *d, uint64_t seq, int64_t gc_ts)
{
    if (d->head > 0 && d->head * 2 >= d->nrecs) {
        memmove(d->recs, d->recs + d->head, (d->nrecs - d->head) * sizeof *d->recs);
        d->nrecs -= d->head;
        d->head = 0;
    }
    if (d->nrecs == d->caprecs) {
        d->caprecs = d->caprecs ? d->caprecs * 2 : 16;
        d->recs = pd_realloc(d->recs, d->caprecs * sizeof *d->recs);
    }
    d->recs[d->nrecs++] = (dd_rec){seq, gc_ts};
}

typedef struct {
    dd_index *d;
    int64_t horizon;
} dd_loader;

static int dd_load_rec(void *arg, uint64_t seq, const uint8_t *val, size_t vlen)
{
    dd_loader *l = arg;
    int64_t gc = DD_EMPTY;
    for (size_t off = 0; off + PD_DEDUP_ENTRY_LEN <= vlen; off += PD_DEDUP_ENTRY_LEN) {
        const uint8_t *e = val + off;
        int64_t ts = (int64_t)pd_get_u64be(e + 16);
        int64_t prev = dd_set(l->d, pd_get_u64be(e), pd_get_u64be(e + 8), ts, l->horizon);
        gc = PD_MAX(gc, PD_MAX(ts, prev));
    }
    dd_rec_push(l->d, seq, gc);
    return 0;
}

/* Loads partition p's index from its stored records (clock = the
 * partition's current clock). */
static int dd_load(pd_ingest *ig, int32_t p, char *err, size_t errlen)
{
    part_priv *pp = &ig->pp[p];
    dd_free(&pp->dd);
    pp->dd.pend_gc = DD_EMPTY;
    dd_rebuild(&pp->dd, INT64_MIN);
    dd_loader l = {&pp->dd, pp->clock_ms - ig->cfg->dedup_window_ms};
    int rc = pd_store_scan_dedup(ig->w->store, p, dd_load_rec, &l, err, errlen);
    if (rc) {
        dd_free(&pp->dd);
        return rc;
    }
    pp->dd.loaded = 1;
    return PD_OK;
}

/* Bytes held by b (its own allocations). */
static uint64_t batch_mem(const agg_batch *b)
{
    return (uint64_t)b->agg.cap * sizeof(ht_slot) + (uint64_t)(b->agg.n + b->nfree) * sizeof(agg_entry) +
           (uint64_t)b->capfree * sizeof(agg_entry *) + b->evlog.cap + (uint64_t)b->capsorted * sizeof(sort_rec);
}

static void batch_publish(const agg_batch *b)
{
    if (b->gauge) atomic_store_explicit(b->gauge, batch_mem(b), memory_order_relaxed);
}

/* See BATCH_WINDOW. b is empty (just cleared); used/log: the entries and
 * log bytes it held before. */
static void batch_trim(agg_batch *b, size_t used, size_t log)
{
    b->win_entries = PD_MAX(b->win_entries, used);
    b->win_log = PD_MAX(b->win_log, log);
    if (++b->win_commits < BATCH_WINDOW) return;
    const size_t keep = PD_MAX(2 * b->win_entries, (size_t)BATCH_KEEP_MIN);
    const size_t keep_log = PD_MAX(2 * b->win_log, BATCH_KEEP_LOG);
    b->win_entries = b->win_log = 0;
    b->win_commits = 0;
    if (b->nfree > 4 * keep) {
        while (b->nfree > keep) free(b->free_entries[--b->nfree]);
        b->capfree = keep;
        b->free_entries = pd_realloc(b->free_entries, b->capfree * sizeof *b->free_entries);
    }
    size_t slots = BATCH_KEEP_MIN;
    while (slots * 3 < keep * 4) slots *= 2; /* keep entries at <= 75% load */
    if (b->agg.cap > 4 * slots) {
        pd_assert(b->agg.n == 0);
        free(b->agg.slots);
        ht_init(&b->agg, slots);
    }
    if (b->capsorted > 4 * keep) {
        free(b->sorted);
        b->sorted = NULL;
        b->capsorted = 0;
    }
    if (b->evlog.cap > 4 * keep_log) {
        pd_assert(b->evlog.len == 0);
        b->evlog.p = pd_realloc(b->evlog.p, keep_log);
        b->evlog.cap = keep_log;
    }
}

/* Empties batch b (entries are recycled), then trims and publishes it. */
static void batch_clear(agg_batch *b)
{
    htab *h = &b->agg;
    const size_t used = h->n, log = b->evlog.len;
    if (h->n) {
        for (size_t i = 0; i < h->cap; i++) {
            ht_slot *s = &h->slots[i];
            if (!s->key) continue;
            entry_put(b, s->val);
        }
        memset(h->slots, 0, h->cap * sizeof(ht_slot));
        h->n = 0;
    }
    b->events = 0;
    b->evlog.len = 0;
    batch_trim(b, used, log);
    batch_publish(b);
}

/* Drops the uncommitted part of the filling batch that belongs to the
 * partitions in only_parts (the in-flight commit is settled first). The
 * table is rebuilt without their entries (their log records become
 * unreachable, reclaimed at the next clear); their de-dup index holds
 * uncommitted entries too, so it goes as well. */
static void batch_drop_parts(pd_ingest *ig, const char *only_parts)
{
    agg_batch *b = &ig->bt[ig->cur];
    htab *h = &b->agg;
    htab n;
    ht_init(&n, h->cap);
    for (size_t i = 0; i < h->cap; i++) {
        ht_slot *s = &h->slots[i];
        if (!s->key) continue;
        int32_t p = ((const agg_entry *)s->val)->partition;
        if (only_parts[p]) {
            entry_put(b, s->val);
            continue;
        }
        *ht_find(&n, s->hash, s->key, s->klen) = *s;
        n.n++;
    }
    free(h->slots);
    *h = n;
    for (int32_t p = 0; p < ig->w->nparts; p++)
        if (only_parts[p]) dd_free(&ig->pp[p].dd);
    if (h->n == 0) batch_clear(b);
}

/* ---- Kafka side effects ---- */

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pd_ingest *ig = opaque;
    ig->produce_outstanding--;
    if (m->err) {
        ig->produce_failed++;
        PD_INC(ig->w->metrics->dlq_produce_errors);
        pd_error("produce to %s [%d] failed permanently: %s", rd_kafka_topic_name(m->rkt),
                 (int)m->partition, rd_kafka_err2str(m->err));
    }
}

static int produce(pd_ingest *ig, const char *topic, int32_t partition, const void *key, size_t keylen,
                   const void *val, size_t vallen, rd_kafka_headers_t *hdrs)
{
    if (!ig->producer) {
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        return PD_OK;
    }
    for (int attempt = 0;; attempt++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            ig->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)val, vallen),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
        if (!e) {
            ig->produce_outstanding++;
            return PD_OK;
        }
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && attempt < 1000 && !ig->w->stop) {
            rd_kafka_poll(ig->producer, 10);
            continue;
        }
        if (hdrs) rd_kafka_headers_destroy(hdrs);
        PD_INC(ig->w->metrics->dlq_produce_errors);
        pd_error("produce to %s failed: %s", topic, rd_kafka_err2str(e));
        return PD_EIO;
    }
}

static void to_dlq(pd_ingest *ig, int reason, const char *detail, int32_t partition, int64_t offset,
                   int64_t rec_ts, const void *key, size_t keylen, const void *val, size_t vallen)
{
    PD_INC(ig->w->metrics->events_dlq[reason]);
    if (!ig->producer) return;
    char num[32];
    rd_kafka_headers_t *h = rd_kafka_headers_new(6);
    const char *rn = pd_ev_reason_name(reason);
    rd_kafka_header_add(h, "reason", -1, rn, (ssize_t)strlen(rn));
    rd_kafka_header_add(h, "detail", -1, detail, (ssize_t)strnlen(detail, DLQ_MAX_DETAIL));
    rd_kafka_header_add(h, "source_topic", -1, ig->cfg->topic, -1);
    snprintf(num, sizeof num, "%" PRId32, partition);
    rd_kafka_header_add(h, "source_partition", -1, num, -1);
    snprintf(num, sizeof num, "%" PRId64, offset);
    rd_kafka_header_add(h, "source_offset", -1, num, -1);
    if (rec_ts >= 0) {
        snprintf(num, sizeof num, "%" PRId64, rec_ts);
        rd_kafka_header_add(h, "source_timestamp", -1, num, -1);
    }
    produce(ig, ig->cfg->dlq_topic, RD_KAFKA_PARTITION_UA, key, keylen, val, vallen, h);
}

/* Waits for every DLQ/misroute record to be delivered (or fail for good). */
static int wait_produced(pd_ingest *ig)
{
    if (!ig->producer) return PD_OK;
    int64_t deadline = pd_mono_us() + ig->cfg->shutdown_timeout_ms * 1000;
    while (rd_kafka_outq_len(ig->producer) > 0) {
        rd_kafka_flush(ig->producer, 100);
        if (pd_mono_us() > deadline && ig->w->stop) return PD_EAGAIN;
        if (ig->w->stop > 1) return PD_EAGAIN;
    }
    return PD_OK;
}

/* ---- record processing ---- */

static int64_t floor_day(pd_ingest *ig, int64_t clock_ms)
{
    return pd_tz_day(&ig->w->tz, clock_ms) - ig->cfg->retention_days + 1;
}

/* Returns 1 when (p, id) is a duplicate under the de-dup rule; otherwise
 * records the occurrence (index + pending record) and returns 0. */
static int dedup_check(pd_ingest *ig, int32_t p, const char *id, size_t idlen, int64_t ts, int64_t clock)
{
    const int64_t win = ig->cfg->dedup_window_ms;
    dd_index *d = &ig->pp[p].dd;
    pd_assert(d->loaded);
    XXH128_hash_t h = XXH3_128bits(id, idlen);
    dd_slot *s = dd_find(d, h.high64, h.low64);
    int64_t t0 = s->ts;
    if (t0 != DD_EMPTY && t0 >= clock - win && ts - t0 <= win && t0 - ts <= win) return 1;
    int64_t prev = dd_set(d, h.high64, h.low64, ts, clock - win);
    d->pend_gc = PD_MAX(d->pend_gc, PD_MAX(ts, prev));
    uint8_t e[PD_DEDUP_ENTRY_LEN];
    pd_put_u64be(e, h.high64);
    pd_put_u64be(e + 8, h.low64);
    pd_put_u64be(e + 16, (uint64_t)ts);
    pd_buf_append(&d->pend, e, sizeof e);
    return 0;
}

void pd_ingest_record(pd_ingest *ig, int32_t p, int64_t offset, int64_t rec_ts, const void *key,
                      size_t keylen, const void *val, size_t vallen, const char *origin, size_t originlen)
{
    pd_worker *w = ig->w;
    pd_metrics *m = w->metrics;
    if (p < 0 || p >= w->nparts || ig->pp[p].role == ROLE_NONE || ig->pp[p].job) return;
    part_priv *pp = &ig->pp[p];
    /* Side effects on Kafka (DLQ, re-produce) belong to the owner only; a
     * replica computes the same state from the same log without them. */
    const int owner = pp->role == ROLE_OWNER;
    if (pp->scratch) {
        pp->scratch = 0;
        if (offset > 0) {
            atomic_store(&w->parts[p].incomplete, 1);
            pd_warn("partition %d: rebuilt from offset %" PRId64 ": the topic's retention already deleted "
                    "older records, so profiles miss whatever those held",
                    (int)p, offset);
        }
    }
    PD_INC(m->records_in);
    if (pp->next_offset >= 0 && offset < pp->next_offset) {
        PD_INC(m->events_stale_offset);
        return;
    }
    if (!pp->dd.loaded) {
        char lerr[256];
        if (dd_load(ig, p, lerr, sizeof lerr) != PD_OK) {
            /* Cannot decide duplicates: stop before consuming anything. */
            pd_error("partition %d: loading the de-dup index failed: %s", (int)p, lerr);
            ig->fatal = 1;
            return;
        }
    }
    pp->next_offset = offset + 1;
    pp->dirty = 1;
    if (!ig->dirty_since_us) ig->dirty_since_us = pd_mono_us();

    pd_event ev;
    char err[DLQ_MAX_DETAIL];
    int reason = pd_event_parse(&ev, w->schema, val, vallen, (size_t)ig->cfg->max_event_bytes, err, sizeof err);
    if (reason != PD_EV_OK) {
        if (owner) to_dlq(ig, reason, err, p, offset, rec_ts, key, keylen, val, vallen);
        goto out;
    }
    if (rec_ts >= 0 && ev.ts_ms > rec_ts + ig->cfg->max_future_skew_ms) {
        char a[32], b[32];
        pd_ts_format(ev.ts_ms, a);
        pd_ts_format(rec_ts, b);
        snprintf(err, sizeof err, "field 'ts': %s is more than %" PRId64 " ms after the record timestamp %s",
                 a, ig->cfg->max_future_skew_ms, b);
        if (owner) to_dlq(ig, PD_EV_FUTURE_TS, err, p, offset, rec_ts, key, keylen, val, vallen);
        goto out;
    }
    int32_t want = pd_partition_for(ev.user_id, ev.user_id_len, w->nparts);
    if (want != p) {
        /* The query router would never look here: move it where it belongs.
         * The origin header makes the copy de-duplicable without event_id. */
        if (owner) PD_INC(m->events_misrouted);
        if (owner && ig->producer) {
            char ob[96];
            int on = snprintf(ob, sizeof ob, "%s/%" PRId32 "/%" PRId64, ig->cfg->topic, p, offset);
            rd_kafka_headers_t *h = rd_kafka_headers_new(1);
            rd_kafka_header_add(h, "profiled-origin", -1, ob, on);
            produce(ig, ig->cfg->topic, want, ev.user_id, ev.user_id_len, val, vallen, h);
        }
        goto out;
    }
    if (ev.ts_ms > pp->clock_ms) pp->clock_ms = ev.ts_ms;
    int64_t day = pd_tz_day(&w->tz, ev.ts_ms);
    if (day < floor_day(ig, pp->clock_ms)) {
        PD_INC(m->events_too_old);
        goto out;
    }
    const char *did = ev.event_id;
    size_t didlen = ev.event_id_len;
    char obuf[PD_MAX_EVENT_ID];
    if (!did && origin && originlen) {
        /* A re-produced misrouted event without event_id: its origin
         * (topic/partition/offset) identifies it uniquely. */
        didlen = (size_t)snprintf(obuf, sizeof obuf, "\x01origin:%.*s", (int)PD_MIN(originlen, 200), origin);
        did = obuf;
    }
    if (did && dedup_check(ig, p, did, didlen, ev.ts_ms, pp->clock_ms)) {
        PD_INC(m->events_duplicate);
        goto out;
    }
    /* Aggregate into (partition, day, user). */
    char kbuf[AGG_KEY_MAX];
    pd_put_u64be((uint8_t *)kbuf, (uint64_t)day); /* day >= 2000-01-01: positive */
    pd_put_u32be((uint8_t *)kbuf + 8, (uint32_t)p);
    memcpy(kbuf + 12, ev.user_id, ev.user_id_len);
    uint32_t kl = (uint32_t)(12 + ev.user_id_len);
    uint64_t kh = hash_bytes(kbuf, kl);
    agg_batch *b = &ig->bt[ig->cur];
    ht_slot *s = ht_lookup(&b->agg, kh, kbuf, kl);
    agg_entry *e = s->val;
    if (!s->key) {
        e = entry_get(b);
        memcpy(e->key, kbuf, kl);
        e->partition = p;
        e->day = day;
        e->user = e->key + 12;
        e->ulen = (uint32_t)ev.user_id_len;
        ht_fill(&b->agg, s, kh, e->key, kl, e);
    }
    evlog_append(b, e, &ev);
    if (ev.n_bad_attrs) PD_ADD(m->attrs_wrong_type, (uint64_t)ev.n_bad_attrs);
    PD_INC(m->events_accepted);
    b->events++;
out:
    pd_event_free(&ev);
    atomic_store_explicit(&w->parts[p].next_offset, pp->next_offset, memory_order_relaxed);
    atomic_store_explicit(&w->parts[p].clock_ms, pp->clock_ms, memory_order_relaxed);
}

uint64_t pd_ingest_pending(const pd_ingest *ig) { return ig->bt[ig->cur].events; }

static void set_role_flags(pd_ingest *ig, int32_t p);

/* Drops day families no partition of this store still needs. The floor is
 * the minimum over every checkpoint in the store, so it can only move when a
 * checkpointed clock crosses a day boundary -- checked here for the
 * partitions just flushed -- or when checkpoints appear or disappear
 * (restores, releases): covered by also running every RETENTION_EVERY_US.
 * Listing the checkpoints on every flush cost a few percent of ingest. */
#define RETENTION_EVERY_US (10 * 1000000LL)
static void apply_retention(pd_ingest *ig);
static void maybe_apply_retention(pd_ingest *ig, int floor_moved)
{
    if (!floor_moved && pd_mono_us() - ig->last_retention_us < RETENTION_EVERY_US) return;
    ig->last_retention_us = pd_mono_us();
    apply_retention(ig);
}

/* Drops day families no partition of this store still needs. */
static void apply_retention(pd_ingest *ig)
{
    pd_checkpoint *cps = NULL;
    int n = 0;
    if (pd_store_list_checkpoints(ig->w->store, &cps, &n) != PD_OK || n == 0) {
        free(cps);
        return;
    }
    int64_t minclock = INT64_MAX;
    for (int i = 0; i < n; i++)
        if (cps[i].clock_ms > 0 && cps[i].clock_ms < minclock) minclock = cps[i].clock_ms;
    free(cps);
    if (minclock == INT64_MAX) return;
    int64_t fl = floor_day(ig, minclock);
    if (fl <= ig->last_retention_day) return;
    char err[256];
    int dropped = pd_store_drop_days_before(ig->w->store, fl, err, sizeof err);
    if (dropped < 0) {
        pd_warn("retention: %s", err);
        return;
    }
    ig->last_retention_day = fl;
    if (dropped > 0) {
        char d[11];
        pd_day_format(fl, d);
        pd_info("retention: dropped %d day(s) before %s", dropped, d);
        PD_ADD(ig->w->metrics->days_dropped, (uint64_t)dropped);
    }
}

/* De-dup GC for partition p against its current clock (the one being
 * checkpointed): with stage = 1 adds deletes of the collectable records to
 * the batch; with stage = 0 (after the commit) forgets the same records. */
static void dd_gc_plan(pd_ingest *ig, pd_store_batch *sb, int32_t p, int stage)
{
    part_priv *pp = &ig->pp[p];
    dd_index *d = &pp->dd;
    if (!d->loaded) return;
    const int64_t horizon = pp->clock_ms - ig->cfg->dedup_window_ms;
    const int full = d->flushes % DD_FULL_GC_EVERY == DD_FULL_GC_EVERY - 1;
    size_t i = d->head;
    for (; i < d->nrecs && d->recs[i].gc_ts < horizon; i++)
        if (stage) pd_store_batch_delete_dedup(sb, p, d->recs[i].seq);
    if (!stage) d->head = i;
    if (!full) return;
    size_t o = i;
    for (; i < d->nrecs; i++) {
        if (d->recs[i].gc_ts < horizon) {
            if (stage) pd_store_batch_delete_dedup(sb, p, d->recs[i].seq);
        } else {
            d->recs[o++] = d->recs[i];
        }
    }
    if (!stage) d->nrecs = o;
}

/* ---- committing: the ingest thread hands over, the committer builds and writes ----
 *
 * A flush, on the ingest thread, puts the de-dup records and checkpoints
 * into the WriteBatch and hands it, with the batch (table + event log), to
 * the committer thread, which adds the profile deltas (sorted, built from
 * the log: the larger part of a flush's CPU), calls rocksdb_write and
 * clears the batch; meanwhile the ingest thread parses and aggregates the
 * next batch into the other one. At most one commit is in flight, and a
 * flush first finishes the previous one, so commits land in order and the
 * next batch's folds (store.c) read committed data. Everything the
 * WriteBatch contains is decided by what was handed over, so what reaches
 * the disk is exactly what the synchronous design wrote, and the crash
 * analysis above is unchanged.
 *
 * Finishing a commit (ingest thread) publishes what it made durable: the
 * committed offsets captured at hand-over, catch-up, Kafka's committed
 * offsets, metrics, retention. The in-memory de-dup bookkeeping is updated
 * at hand-over; so if building or writing fails the worker stops
 * (ig->fatal): memory no longer matches the store, and a restart resumes
 * from the store's checkpoint, which is exact. Whoever reads checkpoints to
 * act on them or changes partition roles (rebalances, restores, replica
 * changes, cleanup before it deletes) finishes the in-flight commit first.
 *
 * Ownership: the ingest thread owns bt[cur] and sbs[cur]; between the
 * hand-over and the committer's cm_done, bt[cur ^ 1] and sbs[cur ^ 1]
 * belong to the committer (as does ig->scratch, always). */

/* Committer thread: adds the deltas of batch b to sb in store key order
 * (day family, then partition + user: RocksDB's memtable skiplist remembers
 * where the previous insert went, so sorted inserts skip most of the search
 * and the cache misses that dominated commits of random keys). Sets
 * *writes to the number of deltas. */
static int build_deltas(pd_ingest *ig, agg_batch *b, pd_store_batch *sb, uint64_t *writes, char *err,
                        size_t errlen)
{
    if (b->agg.n > b->capsorted) {
        b->capsorted = b->agg.n * 2;
        free(b->sorted);
        b->sorted = pd_malloc(b->capsorted * sizeof *b->sorted);
    }
    size_t ns = 0;
    for (size_t i = 0; i < b->agg.cap; i++)
        if (b->agg.slots[i].key) sort_rec_set(&b->sorted[ns++], b->agg.slots[i].val);
    sort_recs(b->sorted, ns);
    pd_event sev;
    memset(&sev, 0, sizeof sev);
    sev.nattrs = ig->w->schema->ndims;
    *writes = ns;
    for (size_t i = 0; i < ns; i++) {
        agg_entry *e = b->sorted[i].e;
        int rc;
        if (e->head == e->tail) { /* one event: encoded straight from its record */
            evlog_decode(b, e->head, &sev);
            rc = pd_store_batch_merge_event(sb, e->day, e->partition, e->user, e->ulen, &sev, err, errlen);
        } else {
            evlog_build(b, e, &ig->scratch, &sev);
            rc = pd_store_batch_merge(sb, e->day, e->partition, e->user, e->ulen, &ig->scratch, err, errlen);
        }
        if (rc) return rc;
    }
    return PD_OK;
}

static void *committer_main(void *arg)
{
    pd_ingest *ig = arg;
    pd_thread_name("pd-commit");
    /* Part of ingestion: same priority as the ingest loop (profiled.c). */
    if (ig->cfg->ingest_nice > 0) (void)pd_thread_nice((int)ig->cfg->ingest_nice);
    pthread_mutex_lock(&ig->cm_mu);
    for (;;) {
        while (!ig->cm_quit && !ig->cm_job) pthread_cond_wait(&ig->cm_cv, &ig->cm_mu);
        if (!ig->cm_job) break; /* quit */
        pd_store_batch *sb = ig->cm_job;
        agg_batch *b = ig->cm_bt;
        pthread_mutex_unlock(&ig->cm_mu);
        char err[256] = "";
        uint64_t writes = 0;
        int rc = build_deltas(ig, b, sb, &writes, err, sizeof err);
        if (rc == PD_OK) rc = pd_store_commit(ig->w->store, sb, err, sizeof err);
        if (rc) pd_store_batch_clear(sb); /* the worker stops (flush_finish) */
        batch_clear(b);
        pthread_mutex_lock(&ig->cm_mu);
        ig->cm_job = NULL;
        ig->cm_bt = NULL;
        ig->cm_writes = writes;
        ig->cm_rc = rc;
        memcpy(ig->cm_err, err, sizeof err);
        ig->cm_done = 1;
        pthread_cond_broadcast(&ig->cm_cv);
    }
    pthread_mutex_unlock(&ig->cm_mu);
    return NULL;
}

/* Completes the commit in flight, if any: waits for it when `wait`, else
 * returns PD_EAGAIN while it runs. Returns the commit's result. */
static int flush_finish(pd_ingest *ig, int wait, char *err, size_t errlen)
{
    pd_worker *w = ig->w;
    if (!ig->cm_inflight) return PD_OK;
    pthread_mutex_lock(&ig->cm_mu);
    if (!ig->cm_done && !wait) {
        pthread_mutex_unlock(&ig->cm_mu);
        return PD_EAGAIN;
    }
    while (!ig->cm_done) pthread_cond_wait(&ig->cm_cv, &ig->cm_mu);
    ig->cm_done = 0;
    int rc = ig->cm_rc;
    const uint64_t writes = ig->cm_writes;
    char cerr[256];
    memcpy(cerr, ig->cm_err, sizeof cerr);
    pthread_mutex_unlock(&ig->cm_mu);
    ig->cm_inflight = 0;
    if (rc) {
        PD_INC(w->metrics->flush_errors);
        ig->fatal = 1; /* see above: restart from the store's checkpoint */
        return pd_seterr(err, errlen, rc, "commit failed (the worker stops; a restart resumes from the "
                         "last checkpoint): %s", cerr);
    }
    /* Committed: publish progress. */
    PD_INC(w->metrics->flushes);
    pd_hist_observe(&w->metrics->batch_events, (double)ig->cm_events);
    PD_ADD(w->metrics->store_writes, writes);
    atomic_store_explicit(&w->metrics->store_folds,
                          pd_store_batch_folds(ig->sbs[0]) + pd_store_batch_folds(ig->sbs[1]),
                          memory_order_relaxed);
    uint64_t ddb = 0, ddn = 0;
    for (int32_t p = 0; p < w->nparts; p++) {
        ddb += dd_bytes(&ig->pp[p].dd);
        ddn += ig->pp[p].dd.n;
    }
    atomic_store_explicit(&w->metrics->dedup_bytes, ddb, memory_order_relaxed);
    atomic_store_explicit(&w->metrics->dedup_entries, ddn, memory_order_relaxed);
    rd_kafka_topic_partition_list_t *offs =
        ig->consumer && ig->cm_nparts ? rd_kafka_topic_partition_list_new((int)ig->cm_nparts) : NULL;
    for (size_t i = 0; i < ig->cm_nparts; i++) {
        const int32_t p = ig->cm_parts[i].p;
        const int64_t off = ig->cm_parts[i].next_offset;
        part_priv *pp = &ig->pp[p];
        atomic_store(&w->parts[p].committed, off);
        if (pp->catchup_to && off >= pp->catchup_to) {
            pp->catchup_to = 0;
            set_role_flags(ig, p);
            pd_info("partition %d: caught up at offset %" PRId64 ", serving it", (int)p, off);
            if (w->members) pd_members_publish(w->members);
        }
        if (offs) rd_kafka_topic_partition_list_add(offs, ig->cfg->topic, p)->offset = off;
    }
    if (offs) {
        /* For lag monitoring only; the store is the source of truth. */
        rd_kafka_commit(ig->consumer, offs, 1);
        rd_kafka_topic_partition_list_destroy(offs);
    }
    ig->cm_nparts = 0;
    pd_hist_observe(&w->metrics->flush_seconds, (double)(pd_mono_us() - ig->cm_t0_us) / 1e6);
    maybe_apply_retention(ig, ig->cm_floor_moved);
    return PD_OK;
}

/* Hands the current batch to the committer (after finishing the previous
 * commit). On an error before the hand-over nothing has changed and the
 * batch is kept for the next attempt. */
static int flush_start(pd_ingest *ig, char *err, size_t errlen)
{
    pd_worker *w = ig->w;
    int rc = flush_finish(ig, 1, err, errlen);
    if (rc) return rc;
    /* After a failed commit the de-dup bookkeeping and offsets are past
     * events that were never written: another commit (the final flush of a
     * shutdown too) would checkpoint past them. Only a restart, from the
     * store's checkpoint, is exact. */
    if (ig->fatal)
        return pd_seterr(err, errlen, PD_ERR, "not committing: the worker stopped after an earlier failure "
                         "(a restart resumes from the last checkpoint)");
    int any = 0;
    for (int32_t p = 0; p < w->nparts; p++) any |= ig->pp[p].dirty;
    if (!any) {
        ig->dirty_since_us = 0;
        return PD_OK;
    }
    const int64_t t0 = pd_mono_us();
    pd_store_batch *sb = ig->sbs[ig->cur];
    /* 1. Side effects first: everything produced on behalf of the records
     *    being checkpointed must be in Kafka before the checkpoint moves. */
    rc = wait_produced(ig);
    if (rc) return pd_seterr(err, errlen, rc, "DLQ/misroute records not delivered; batch not committed");
    /* 2. One WriteBatch: de-dup records and checkpoints here, the deltas
     *    on the committer. From here on nothing fails: capture what the
     *    commit will make durable and move the in-memory de-dup
     *    bookkeeping forward. */
    if (ig->cm_capparts < (size_t)w->nparts) {
        ig->cm_capparts = (size_t)w->nparts;
        free(ig->cm_parts);
        ig->cm_parts = pd_malloc(ig->cm_capparts * sizeof *ig->cm_parts);
    }
    ig->cm_nparts = 0;
    ig->cm_floor_moved = 0;
    for (int32_t p = 0; p < w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        if (!pp->dirty) continue;
        dd_gc_plan(ig, sb, p, 1);
        if (pp->dd.pend.len)
            pd_store_batch_put_dedup(sb, p, (uint64_t)pp->next_offset, pp->dd.pend.p, pp->dd.pend.len);
        pd_store_batch_set_checkpoint(sb, p, pp->next_offset, pp->clock_ms);
        if (pp->dd.loaded) {
            dd_gc_plan(ig, sb, p, 0);
            if (pp->dd.pend.len) dd_rec_push(&pp->dd, (uint64_t)pp->next_offset, pp->dd.pend_gc);
            pp->dd.pend.len = 0;
            pp->dd.pend_gc = DD_EMPTY;
            pp->dd.flushes++;
        }
        /* floor_seen: the floor of the clock this commit checkpoints */
        if (pp->clock_ms > 0 && floor_day(ig, pp->clock_ms) != pp->floor_seen) {
            pp->floor_seen = floor_day(ig, pp->clock_ms);
            ig->cm_floor_moved = 1;
        }
        ig->cm_parts[ig->cm_nparts++] = (commit_part){p, pp->next_offset};
        pp->dirty = 0;
    }
    ig->cm_events = ig->bt[ig->cur].events;
    batch_publish(&ig->bt[ig->cur]);
    ig->cm_t0_us = t0;
    ig->last_flush_us = t0;
    ig->dirty_since_us = 0;
    /* 3. Deltas and the write on the committer thread. */
    pthread_mutex_lock(&ig->cm_mu);
    ig->cm_job = sb;
    ig->cm_bt = &ig->bt[ig->cur];
    ig->cm_done = 0;
    pthread_cond_signal(&ig->cm_cv);
    pthread_mutex_unlock(&ig->cm_mu);
    ig->cm_inflight = 1;
    ig->cur ^= 1;
    return PD_OK;
}

int pd_ingest_flush_async(pd_ingest *ig, char *err, size_t errlen)
{
    return flush_start(ig, err, errlen);
}

int pd_ingest_flush(pd_ingest *ig, char *err, size_t errlen)
{
    int rc = flush_start(ig, err, errlen);
    if (rc) return rc;
    return flush_finish(ig, 1, err, errlen);
}

/* Finishes the commit in flight before partition roles change or
 * checkpoints are read; a failure is logged (the worker is stopping). */
static void settle(pd_ingest *ig)
{
    char err[512];
    if (flush_finish(ig, 1, err, sizeof err) != PD_OK) pd_error("%s", err);
}

/* ---- partition lifecycle: own, replicate, restore, release ---- */

static void *restore_main(void *arg)
{
    restore_job *j = arg;
    pd_thread_name("pd-restore");
    j->rc = PD_EAGAIN;
    snprintf(j->err, sizeof j->err, "no peer holds partition %d", (int)j->p);
    for (int round = 0; round < 3 && !atomic_load(&j->cancel); round++) {
        for (int i = 0; i < j->nsrc && !atomic_load(&j->cancel); i++) {
            uint64_t bytes = 0;
            int rc = pd_handoff_fetch(j->src[i].url, j->p, j->cfg->cluster_token, j->schema, j->path, 10000,
                                      &j->cp, &bytes, j->err, sizeof j->err);
            if (rc == PD_OK) {
                j->rc = PD_OK;
                j->bytes = bytes;
                j->t_fetched_us = pd_mono_us();
                snprintf(j->from, sizeof j->from, "%s", j->src[i].id);
                goto done;
            }
            pd_warn("partition %d: snapshot from %s failed (%s)%s", (int)j->p, j->src[i].id, j->err,
                    rc == PD_ECORRUPT ? ": rejected, will retry" : "");
            j->rc = rc;
        }
        if (round < 2) usleep(300 * 1000);
    }
done:
    atomic_store(&j->done, 1);
    return NULL;
}

static void publish(pd_ingest *ig)
{
    if (ig->w->members) pd_members_publish(ig->w->members);
}

/* Starts consuming p from the beginning of the topic (or the end, with
 * auto_offset_reset=latest): any leftovers without a checkpoint (a partial
 * snapshot import) are deleted first, so nothing is counted twice. */
static void start_scratch(pd_ingest *ig, int32_t p)
{
    char err[256];
    part_priv *pp = &ig->pp[p];
    dd_free(&pp->dd);
    if (pd_store_delete_partition(ig->w->store, p, err, sizeof err) != PD_OK)
        pd_error("partition %d: clearing partial state failed: %s", (int)p, err);
    pp->next_offset = -1;
    pp->clock_ms = 0;
    pp->scratch = strcmp(ig->cfg->auto_offset_reset, "earliest") == 0;
    pd_info("partition %d: no state here or on any live peer: rebuilding from the %s of the topic", (int)p,
            pp->scratch ? "beginning" : "end");
}

/* A partition that starts far behind the end of the log (rebuilt from the
 * topic, or an old local checkpoint with no better copy anywhere) is not
 * served until it has caught up to the end seen now: a query must never get
 * a silently empty or badly outdated profile from it. */
static void set_catchup(pd_ingest *ig, int32_t p)
{
    part_priv *pp = &ig->pp[p];
    pp->catchup_to = 0;
    rd_kafka_t *rk = ig->consumer ? ig->consumer : ig->rconsumer;
    if (!rk) return;
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(rk, ig->cfg->topic, p, &lo, &hi, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    int64_t from = pp->next_offset >= 0 ? pp->next_offset : lo;
    if (hi - from > ig->cfg->handoff_min_lag || (pp->next_offset < 0 && hi > lo)) {
        pp->catchup_to = hi;
        pd_info("partition %d: catching up from offset %" PRId64 " to %" PRId64 " before serving it", (int)p,
                from, hi);
    }
}

static int64_t start_offset(pd_ingest *ig, int32_t p)
{
    int64_t o = ig->pp[p].next_offset;
    if (o >= 0) return o;
    return strcmp(ig->cfg->auto_offset_reset, "earliest") == 0 ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
}

/* Decides how partition p gets its state when this worker takes it on in
 * `role` (owner or replica): keep a warm local copy, fetch a snapshot from
 * the best peer, or rebuild from the topic. Returns 1 when a restore job
 * was started (the partition must not be consumed until it completes). */
static int prepare_partition(pd_ingest *ig, int32_t p, int role)
{
    pd_worker *w = ig->w;
    part_priv *pp = &ig->pp[p];
    pd_partstate *ps = &w->parts[p];
    int was = pp->role;
    pp->role = role;
    pp->orphan_since_ms = 0;
    atomic_store(&ps->generation, atomic_load(&w->generation));
    if (pp->job) { /* already fetching (e.g. replica being promoted) */
        atomic_store(&ps->restoring, 1);
        return 1;
    }
    if (was != ROLE_NONE) return 0; /* warm in memory: continue where it is */
    pd_checkpoint cp;
    int have = pd_store_get_checkpoint(w->store, p, &cp) == PD_OK;
    pd_holder hs[8];
    int n = w->members ? pd_members_holders(w->members, p, hs, 8) : 0;
    if (n > 0 && (!have || hs[0].next_offset - cp.next_offset > ig->cfg->handoff_min_lag)) {
        restore_job *j = pd_calloc(1, sizeof *j);
        j->p = p;
        j->cfg = ig->cfg;
        j->schema = w->schema;
        j->nsrc = n;
        memcpy(j->src, hs, sizeof hs[0] * (size_t)n);
        j->t0_us = pd_mono_us();
        static _Atomic int seq;
        snprintf(j->path, sizeof j->path, "%s/snapshot-in-%d-%d.tmp", ig->cfg->data_dir, (int)p,
                 atomic_fetch_add(&seq, 1));
        if (pthread_create(&j->th, NULL, restore_main, j) != 0) {
            pd_error("partition %d: cannot start the restore thread", (int)p);
            free(j);
        } else {
            pp->job = j;
            atomic_store(&ps->restoring, 1);
            atomic_store(&ps->ready, 0);
            pd_info("partition %d: %s, fetching a snapshot from %s (offset %" PRId64 ")", (int)p,
                    have ? "local copy is behind" : "no local state", hs[0].id, hs[0].next_offset);
            return 1;
        }
    }
    if (have) {
        pp->next_offset = cp.next_offset;
        pp->clock_ms = cp.clock_ms;
        pp->scratch = 0;
    } else {
        start_scratch(ig, p);
    }
    set_catchup(ig, p);
    atomic_store(&ps->next_offset, pp->next_offset);
    atomic_store(&ps->committed, pp->next_offset);
    atomic_store(&ps->clock_ms, pp->clock_ms);
    return 0;
}

static void set_role_flags(pd_ingest *ig, int32_t p)
{
    pd_partstate *ps = &ig->w->parts[p];
    part_priv *pp = &ig->pp[p];
    atomic_store(&ps->owned, pp->role == ROLE_OWNER);
    atomic_store(&ps->replica, pp->role == ROLE_REPLICA);
    atomic_store(&ps->restoring, pp->job != NULL || pp->catchup_to > 0);
    atomic_store(&ps->ready, pp->role != ROLE_NONE && !pp->job && !pp->catchup_to);
}

static void release_partition(pd_ingest *ig, int32_t p)
{
    part_priv *pp = &ig->pp[p];
    pp->role = ROLE_NONE;
    pp->dirty = 0;
    dd_free(&pp->dd);
    pp->catchup_to = 0;
    pp->orphan_since_ms = pd_now_ms();
    if (pp->job) atomic_store(&pp->job->cancel, 1);
    set_role_flags(ig, p);
    atomic_store(&ig->w->parts[p].incomplete, 0);
}

int pd_ingest_assign_local(pd_ingest *ig, int32_t p)
{
    if (p < 0 || p >= ig->w->nparts) return PD_EINVAL;
    pd_members *saved = ig->w->members;
    ig->w->members = NULL; /* replay mode: local state only */
    prepare_partition(ig, p, ROLE_OWNER);
    ig->w->members = saved;
    set_role_flags(ig, p);
    return PD_OK;
}

/* Rebuilds the replica consumer's assignment from the replica partitions
 * that are not restoring. */
static void replica_reassign(pd_ingest *ig)
{
    if (!ig->rconsumer) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        if (pp->role != ROLE_REPLICA || pp->job) continue;
        rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = start_offset(ig, p);
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(ig->rconsumer, l);
    if (e) pd_warn("replica assign: %s", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

/* Owner partitions: pause / seek+resume through the group consumer. */
static void owner_pause(pd_ingest *ig, int32_t p, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = start_offset(ig, p);
    if (pause) {
        rd_kafka_pause_partitions(ig->consumer, l);
    } else {
        rd_kafka_error_t *e = rd_kafka_seek_partitions(ig->consumer, l, 5000);
        if (e) {
            pd_warn("partition %d: seek: %s", (int)p, rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
        rd_kafka_resume_partitions(ig->consumer, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Called from the loop: completes finished restore jobs. */
static void reap_restores(pd_ingest *ig)
{
    pd_worker *w = ig->w;
    char err[512];
    for (int32_t p = 0; p < w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        restore_job *j = pp->job;
        if (!j || !atomic_load(&j->done)) continue;
        pthread_join(j->th, NULL);
        pp->job = NULL;
        int role = pp->role;
        if (role == ROLE_NONE || atomic_load(&j->cancel)) {
            remove(j->path);
            free(j);
            set_role_flags(ig, p);
            continue;
        }
        int ok = 0;
        if (j->rc == PD_OK) {
            /* Nothing of p may be pending in the batch when its range is replaced. */
            if (pd_ingest_flush(ig, err, sizeof err) != PD_OK) pd_warn("flush before restore: %s", err);
            pd_checkpoint cp;
            uint64_t records = 0;
            int64_t t1 = pd_mono_us();
            dd_free(&pp->dd); /* the partition's range is replaced: reload it */
            if (pd_handoff_apply(w->store, j->path, p, w->schema, &cp, &records, err, sizeof err) == PD_OK) {
                pp->next_offset = cp.next_offset;
                pp->clock_ms = cp.clock_ms;
                pp->scratch = 0;
                pp->catchup_to = 0;
                ok = 1;
                double secs = (double)(pd_mono_us() - j->t0_us) / 1e6;
                /* total = fetch (download + verify) + wait for this loop + apply */
                pd_info("partition %d: restored from %s: %llu bytes, %llu records, offset %" PRId64
                        ", %.3fs (fetch %.3fs, apply %.3fs)",
                        (int)p, j->from, (unsigned long long)j->bytes, (unsigned long long)records, cp.next_offset, secs,
                        (double)(j->t_fetched_us - j->t0_us) / 1e6, (double)(pd_mono_us() - t1) / 1e6);
                PD_INC(w->metrics->restores_ok);
                PD_ADD(w->metrics->restore_bytes, j->bytes);
            } else {
                pd_error("partition %d: applying the snapshot failed: %s", (int)p, err);
            }
        }
        if (!ok) {
            PD_INC(w->metrics->restores_failed);
            pd_warn("partition %d: no usable snapshot (%s)", (int)p, j->err);
            start_scratch(ig, p);
            set_catchup(ig, p);
            PD_INC(w->metrics->rebuilds);
        }
        remove(j->path);
        free(j);
        atomic_store(&w->parts[p].next_offset, pp->next_offset);
        atomic_store(&w->parts[p].committed, pp->next_offset);
        atomic_store(&w->parts[p].clock_ms, pp->clock_ms);
        set_role_flags(ig, p);
        if (role == ROLE_OWNER) owner_pause(ig, p, 0);
        else replica_reassign(ig);
        publish(ig);
    }
}

/* Replica placement: a deterministic function of the membership every
 * worker sees. For partition p with owner O, the replicas are the next
 * `replicas` live workers after O in ascending id order (a ring), O
 * excluded. Recomputed every second; frozen while Kafka is unreachable. */
static void update_replicas(pd_ingest *ig)
{
    pd_worker *w = ig->w;
    if (!ig->rconsumer || !w->members || !atomic_load(&w->kafka_up)) return;
    enum { MAXM = 256 };
    static char ids[MAXM][130];
    int n = pd_members_alive(w->members, ids, MAXM);
    int k = (int)PD_MIN(ig->cfg->replicas, n - 1);
    int changed = 0;
    for (int32_t p = 0; p < w->nparts; p++) {
        part_priv *pp = &ig->pp[p];
        if (pp->role == ROLE_OWNER) continue;
        pd_owner o;
        if (pd_members_owner(w->members, p, &o) != PD_OK) continue; /* unknown: keep what we do */
        int want = 0;
        if (k > 0) {
            int lo = 0;
            while (lo < n && strcmp(ids[lo], o.id) <= 0) lo++; /* first id after the owner */
            for (int i = 0, picked = 0; i < n && picked < k; i++) {
                const char *id = ids[(lo + i) % n];
                if (strcmp(id, o.id) == 0) continue;
                picked++;
                if (strcmp(id, ig->cfg->id) == 0) want = 1;
            }
        }
        if (want && pp->role == ROLE_NONE) {
            settle(ig); /* roles change (no-op once settled) */
            prepare_partition(ig, p, ROLE_REPLICA);
            set_role_flags(ig, p);
            changed = 1;
        } else if (!want && pp->role == ROLE_REPLICA) {
            settle(ig);
            release_partition(ig, p);
            changed = 1;
        }
    }
    if (changed) {
        replica_reassign(ig);
        publish(ig);
    }
}

/* Deletes partitions this worker has neither owned nor replicated for
 * cleanup_grace (their checkpoints would also hold back retention). */
static void cleanup_orphans(pd_ingest *ig)
{
    pd_checkpoint *cps = NULL;
    int n = 0;
    if (pd_store_list_checkpoints(ig->w->store, &cps, &n) != PD_OK) return;
    int64_t now = pd_now_ms();
    char err[256];
    for (int i = 0; i < n; i++) {
        int32_t p = cps[i].partition;
        if (p < 0 || p >= ig->w->nparts) continue;
        part_priv *pp = &ig->pp[p];
        if (pp->role != ROLE_NONE || pp->job) continue;
        if (!pp->orphan_since_ms) {
            pp->orphan_since_ms = now;
            continue;
        }
        if (now - pp->orphan_since_ms < ig->cfg->cleanup_grace_ms) continue;
        if (pd_ingest_flush(ig, err, sizeof err) != PD_OK) return;
        if (pd_store_delete_partition(ig->w->store, p, err, sizeof err) == PD_OK) {
            pd_info("partition %d: neither owned nor replicated here for %" PRId64 " s: local state deleted",
                    (int)p, ig->cfg->cleanup_grace_ms / 1000);
            pp->orphan_since_ms = 0;
            pp->next_offset = -1;
            pp->clock_ms = 0;
            atomic_store(&ig->w->parts[p].committed, -1);
            PD_INC(ig->w->metrics->partitions_deleted);
        }
    }
    free(cps);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    pd_ingest *ig = opaque;
    pd_worker *w = ig->w;
    settle(ig); /* checkpoints are read and roles change below */
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    char err[512];
    PD_INC(w->metrics->rebalances);
    atomic_fetch_add(&w->generation, 1);
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        char *restoring = pd_calloc((size_t)w->nparts, 1);
        int replicas_changed = 0;
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (strcmp(parts->elems[i].topic, ig->cfg->topic) != 0 || p < 0 || p >= w->nparts) continue;
            if (ig->pp[p].role == ROLE_REPLICA) replicas_changed = 1; /* promotion: warm copy */
            restoring[p] = (char)prepare_partition(ig, p, ROLE_OWNER);
            parts->elems[i].offset = start_offset(ig, p);
            set_role_flags(ig, p);
        }
        rd_kafka_error_t *ke = NULL;
        if (coop) ke = rd_kafka_incremental_assign(rk, parts);
        else rd_kafka_assign(rk, parts);
        if (ke) {
            pd_error("incremental_assign: %s", rd_kafka_error_string(ke));
            rd_kafka_error_destroy(ke);
        }
        for (int32_t p = 0; p < w->nparts; p++)
            if (restoring[p]) owner_pause(ig, p, 1);
        free(restoring);
        if (replicas_changed) replica_reassign(ig);
        pd_info("assigned %d partition(s) (%s)", parts->cnt, coop ? "cooperative" : "eager");
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        char *which = pd_calloc((size_t)w->nparts, 1);
        for (int i = 0; i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p >= 0 && p < w->nparts) which[p] = 1;
        }
        if (rd_kafka_assignment_lost(rk)) {
            /* Someone else may already own them: commit nothing for them. */
            batch_drop_parts(ig, which);
            for (int32_t p = 0; p < w->nparts; p++) {
                if (!which[p]) continue;
                /* in-memory progress is gone: reload from the checkpoint if kept */
                pd_checkpoint cp;
                if (pd_store_get_checkpoint(w->store, p, &cp) == PD_OK) {
                    ig->pp[p].next_offset = cp.next_offset;
                    ig->pp[p].clock_ms = cp.clock_ms;
                }
            }
            pd_warn("lost %d partition(s); their uncommitted batch was discarded", parts->cnt);
        } else if (pd_ingest_flush(ig, err, sizeof err) != PD_OK) {
            /* Could not commit: drop their part of the batch; the next
             * owner replays from the last checkpoint. */
            pd_error("flush before revocation failed: %s", err);
            batch_drop_parts(ig, which);
        }
        for (int32_t p = 0; p < w->nparts; p++)
            if (which[p]) release_partition(ig, p);
        free(which);
        if (coop) {
            rd_kafka_error_t *ke = rd_kafka_incremental_unassign(rk, parts);
            if (ke) rd_kafka_error_destroy(ke);
        } else {
            rd_kafka_assign(rk, NULL);
        }
        pd_info("revoked %d partition(s)", parts->cnt);
    } else {
        pd_error("rebalance error: %s", rd_kafka_err2str(e));
        rd_kafka_assign(rk, NULL);
    }
    publish(ig);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    pd_ingest *ig = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) atomic_store(&ig->w->kafka_up, 0);
    if (rd_kafka_fatal_error(rk, NULL, 0)) ig->fatal = 1;
    pd_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 4) pd_warn("rdkafka %s: %s", fac, buf);
}

static int apply_conf(rd_kafka_conf_t *c, const char *k, const char *v, char *err, size_t errlen)
{
    char e2[256];
    if (rd_kafka_conf_set(c, k, v, e2, sizeof e2) != RD_KAFKA_CONF_OK)
        return pd_seterr(err, errlen, PD_EINVAL, "kafka.%s: %s", k, e2);
    return PD_OK;
}

static rd_kafka_conf_t *base_conf(const pd_config *cfg, char *err, size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (apply_conf(c, "bootstrap.servers", cfg->brokers, err, errlen)) goto fail;
    apply_conf(c, "client.id", cfg->id, NULL, 0);
    rd_kafka_conf_set_log_cb(c, log_cb);
    return c;
fail:
    rd_kafka_conf_destroy(c);
    return NULL;
}

static int passthrough(rd_kafka_conf_t *c, const pd_config *cfg, char *err, size_t errlen)
{
    for (int i = 0; i < cfg->kafka.n; i++)
        if (apply_conf(c, cfg->kafka.keys[i], cfg->kafka.vals[i], err, errlen)) return PD_EINVAL;
    return PD_OK;
}

/* A consumer configuration: the settings both consumers share (no auto
 * commit or offset store -- the store holds the offsets -- bounded fetch
 * wait, no EOF events, our callbacks), then `extra` (NULL-terminated
 * key/value pairs), then the kafka.* passthrough so operators can override
 * anything. NULL (err set) on a bad passthrough setting. */
static rd_kafka_conf_t *consumer_conf(pd_ingest *ig, const char *group_id, const char *reset,
                                      const char *const *extra, char *err, size_t errlen)
{
    const pd_config *cfg = ig->cfg;
    char num[32];
    rd_kafka_conf_t *c = base_conf(cfg, err, errlen);
    if (!c) return NULL;
    apply_conf(c, "group.id", group_id, NULL, 0);
    apply_conf(c, "enable.auto.commit", "false", NULL, 0);
    apply_conf(c, "enable.auto.offset.store", "false", NULL, 0);
    apply_conf(c, "auto.offset.reset", reset, NULL, 0);
    apply_conf(c, "enable.partition.eof", "false", NULL, 0);
    /* A fetch returns as soon as data is there; an idle one waits at most
     * this long (librdkafka's 500 ms default would dominate freshness). */
    snprintf(num, sizeof num, "%" PRId64, PD_MAX(PD_MIN(cfg->commit_interval_ms / 2, 100), 1));
    apply_conf(c, "fetch.wait.max.ms", num, NULL, 0);
    for (int i = 0; extra && extra[i]; i += 2) apply_conf(c, extra[i], extra[i + 1], NULL, 0);
    rd_kafka_conf_set_opaque(c, ig);
    rd_kafka_conf_set_error_cb(c, error_cb);
    if (passthrough(c, cfg, err, errlen)) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}

static int topic_partitions(rd_kafka_t *rk, const char *topic, int32_t *n, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 2000);
        rd_kafka_topic_destroy(t);
        if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0) {
            *n = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
            return PD_OK;
        }
        const char *why = e ? rd_kafka_err2str(e)
                            : (md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no such topic");
        if (attempt % 5 == 4) pd_warn("waiting for metadata of topic '%s': %s", topic, why);
        if (md) rd_kafka_metadata_destroy(md);
        if (attempt == 49) return pd_seterr(err, errlen, PD_EAGAIN, "topic '%s': %s", topic, why);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return PD_EAGAIN;
}

int pd_ingest_new(pd_ingest **out, pd_worker *w, int kafka, char *err, size_t errlen)
{
    pd_ingest *ig = pd_calloc(1, sizeof *ig);
    ig->w = w;
    ig->cfg = w->cfg;
    ig->last_retention_day = INT64_MIN;
    for (int i = 0; i < 2; i++) {
        ht_init(&ig->bt[i].agg, 4096);
        ig->bt[i].gauge = w->metrics ? &w->metrics->batch_bytes[i] : NULL;
        batch_publish(&ig->bt[i]);
    }
    pd_profile_init(&ig->scratch, w->schema);
    ig->sbs[0] = pd_store_batch_new(w->store);
    ig->sbs[1] = pd_store_batch_new(w->store);
    pthread_mutex_init(&ig->cm_mu, NULL);
    pthread_cond_init(&ig->cm_cv, NULL);
    if (pthread_create(&ig->cm_th, NULL, committer_main, ig) != 0) {
        pd_seterr(err, errlen, PD_ERR, "cannot start the committer thread");
        pd_ingest_free(ig);
        return PD_ERR;
    }
    ig->cm_started = 1;
    char e2[512];
    int rc = PD_OK;
    if (kafka) {
        const pd_config *cfg = w->cfg;
        /* Producer for the DLQ and misrouted events. */
        rd_kafka_conf_t *pc = base_conf(cfg, err, errlen);
        if (!pc) { rc = PD_EINVAL; goto fail; }
        apply_conf(pc, "enable.idempotence", "true", NULL, 0);
        apply_conf(pc, "linger.ms", "5", NULL, 0);
        apply_conf(pc, "message.timeout.ms", "0", NULL, 0);
        rd_kafka_conf_set_opaque(pc, ig);
        rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
        if ((rc = passthrough(pc, cfg, err, errlen))) { rd_kafka_conf_destroy(pc); goto fail; }
        ig->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e2, sizeof e2);
        if (!ig->producer) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "producer: %s", e2);
            goto fail;
        }
        /* Consumer (group member, cooperative-sticky). */
        char sess[32], hb[32];
        snprintf(sess, sizeof sess, "%" PRId64, cfg->session_timeout_ms);
        snprintf(hb, sizeof hb, "%" PRId64, PD_MAX(cfg->session_timeout_ms / 4, 500));
        const char *const group_extra[] = {"partition.assignment.strategy", "cooperative-sticky",
                                           "session.timeout.ms", sess, "heartbeat.interval.ms", hb, NULL};
        rd_kafka_conf_t *cc = consumer_conf(ig, cfg->group, cfg->auto_offset_reset, group_extra, err, errlen);
        if (!cc) { rc = PD_EINVAL; goto fail; }
        rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
        ig->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e2, sizeof e2);
        if (!ig->consumer) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "consumer: %s", e2);
            goto fail;
        }
        int32_t n = 0;
        if ((rc = topic_partitions(ig->consumer, cfg->topic, &n, err, errlen))) goto fail;
        if (n > cfg->max_partitions) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "topic '%s' has %d partitions, more than max_partitions %" PRId64,
                           cfg->topic, n, cfg->max_partitions);
            goto fail;
        }
        w->nparts = n;
        w->parts = pd_partstates_new(n);
        rd_kafka_poll_set_consumer(ig->consumer);
        ig->cq = rd_kafka_queue_get_consumer(ig->consumer);
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, cfg->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t ke = rd_kafka_subscribe(ig->consumer, sub);
        rd_kafka_topic_partition_list_destroy(sub);
        if (ke) {
            rc = pd_seterr(err, errlen, PD_EIO, "subscribe %s: %s", cfg->topic, rd_kafka_err2str(ke));
            goto fail;
        }
        if (cfg->replicas > 0) {
            /* Replicas: a second consumer in assign mode (no group), never
             * committing; its offsets live in the store like the owner's. */
            char gid[400];
            snprintf(gid, sizeof gid, "%s.replica.%s", cfg->group, cfg->id);
            rd_kafka_conf_t *rc2 = consumer_conf(ig, gid, "earliest", NULL, err, errlen);
            if (!rc2) { rc = PD_EINVAL; goto fail; }
            ig->rconsumer = rd_kafka_new(RD_KAFKA_CONSUMER, rc2, e2, sizeof e2);
            if (!ig->rconsumer) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "replica consumer: %s", e2);
                goto fail;
            }
            rd_kafka_poll_set_consumer(ig->rconsumer);
            ig->rq = rd_kafka_queue_get_consumer(ig->rconsumer);
        }
        atomic_store(&w->kafka_up, 1);
        pd_info("consuming %s (%d partitions) in group %s", cfg->topic, n, cfg->group);
    }
    pd_assert(w->nparts > 0);
    ig->pp = pd_calloc((size_t)w->nparts, sizeof *ig->pp);
    for (int32_t p = 0; p < w->nparts; p++) ig->pp[p].next_offset = -1;
    *out = ig;
    return PD_OK;
fail:
    ig->w->stop = 0;
    pd_ingest_free(ig);
    return rc ? rc : PD_ERR;
}

static void update_watermarks(pd_ingest *ig)
{
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        int role = ig->pp[p].role;
        if (role == ROLE_NONE) continue;
        rd_kafka_t *rk = role == ROLE_OWNER ? ig->consumer : ig->rconsumer;
        int64_t lo, hi;
        if (rk && rd_kafka_get_watermark_offsets(rk, ig->cfg->topic, p, &lo, &hi) == 0 && hi >= 0)
            atomic_store(&ig->w->parts[p].high_watermark, hi);
    }
}

/* Fetch wake-ups. A librdkafka consumer stops fetching a partition while
 * its pre-fetch queue holds queued.min.messages or
 * queued.max.messages.kbytes, and librdkafka 2.0 re-checks that only when
 * its broker thread next wakes up: on I/O, on an op, or after up to 1 s
 * (2.1 made this fetch.queue.backoff.ms). So whenever the worker processes
 * more slowly than the broker delivers -- catching up on a backlog, a
 * rebuild -- fetching stalls for most of a second each time the queue has
 * filled and been drained, capping ingestion at about one queue per second
 * (measured: 120-160k ev/s instead of the worker's own rate on the
 * embedded broker). The loop therefore notices when the queue has run dry
 * (a consume call returned nothing) while a partition it reads is known to
 * have records beyond what it processed (the high watermark of the last
 * fetch response), and then sends a ListOffsets request to those
 * partitions' leaders without waiting for the answer: the request is an
 * op for each leader's broker thread, which wakes up, finds the queue
 * below the thresholds and fetches at once. None in steady state (the
 * watermark is then what was processed). Wake-ups that bring nothing
 * (say the records left are transaction markers, which the consumer
 * skips) back off from FETCH_KICK_US to FETCH_KICK_MAX_US; records
 * arriving reset that (kick_reset). */
#define FETCH_KICK_US 10000
#define FETCH_KICK_MAX_US 1000000

static void kick_reset(pd_ingest *ig, int role) { ig->kick_gap_us[role] = FETCH_KICK_US; }

static void wake_fetcher(pd_ingest *ig, rd_kafka_t *rk, int role, int64_t now)
{
    if (!rk || now - ig->last_kick_us[role] < PD_MAX(ig->kick_gap_us[role], FETCH_KICK_US)) return;
    ig->last_kick_us[role] = now;
    rd_kafka_topic_partition_list_t *l = NULL;
    for (int32_t p = 0; p < ig->w->nparts; p++) {
        const part_priv *pp = &ig->pp[p];
        int64_t lo, hi;
        if (pp->role != role || pp->job || pp->next_offset < 0 ||
            rd_kafka_get_watermark_offsets(rk, ig->cfg->topic, p, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            hi <= pp->next_offset)
            continue;
        if (!l) l = rd_kafka_topic_partition_list_new(8);
        rd_kafka_topic_partition_list_add(l, ig->cfg->topic, p)->offset = RD_KAFKA_OFFSET_END;
    }
    if (!l) return;
    /* Timeout 0: the requests go out, the answers are discarded. */
    (void)rd_kafka_offsets_for_times(rk, l, 0);
    rd_kafka_topic_partition_list_destroy(l);
    ig->kick_gap_us[role] = PD_MIN(PD_MAX(ig->kick_gap_us[role], FETCH_KICK_US) * 2, FETCH_KICK_MAX_US);
    PD_INC(ig->w->metrics->fetch_wakeups);
}

static const char *origin_header(const rd_kafka_message_t *m, size_t *len)
{
    rd_kafka_headers_t *h;
    const void *v;
    size_t n;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    if (rd_kafka_header_get_last(h, "profiled-origin", &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    *len = n;
    return v;
}

/* Feeds consumed records of partitions held in `role` (the owner's group
 * consumer or the replica consumer) to pd_ingest_record and destroys every
 * message (ownership of msgs[0..n) passes here). Records of partitions in
 * another role -- in flight across a role change -- are dropped unapplied;
 * the consumer that now holds the partition reads them again. */
static void handle_messages(pd_ingest *ig, rd_kafka_message_t **msgs, ssize_t n, int role)
{
    pd_worker *w = ig->w;
    for (ssize_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = msgs[i];
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) pd_warn("consume: %s", rd_kafka_message_errstr(m));
        } else if (m->partition >= 0 && m->partition < w->nparts && ig->pp[m->partition].role == role &&
                   rd_kafka_topic_name(m->rkt) && strcmp(rd_kafka_topic_name(m->rkt), ig->cfg->topic) == 0) {
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            size_t olen = 0;
            const char *origin = origin_header(m, &olen);
            pd_ingest_record(ig, m->partition, m->offset, tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts, m->key,
                             m->key_len, m->payload, m->len, origin, olen);
            if (role == ROLE_OWNER) atomic_store(&w->kafka_up, 1);
        }
        rd_kafka_message_destroy(m);
    }
}

/* The dirty batch (dirty_since_us != 0) is due commit_interval_ms after
 * its first record. It may go early -- once the input is drained, so a
 * worker that keeps up makes events visible within about one fetch while
 * one that does not still commits whole batches -- from the returned time
 * on: commit_min_interval_ms after the previous hand-over, when the
 * committer is idle; INT64_MAX when no early commit is possible. */
static int64_t early_flush_us(const pd_ingest *ig)
{
    if (ig->cm_inflight || ig->cfg->commit_min_interval_ms >= ig->cfg->commit_interval_ms) return INT64_MAX;
    return ig->last_flush_us + ig->cfg->commit_min_interval_ms * 1000;
}

int pd_ingest_run(pd_ingest *ig)
{
    pd_worker *w = ig->w;
    enum { NB = 1024 };
    rd_kafka_message_t *msgs[NB];
    char err[512];
    int backoff_ms = 0;
    while (!w->stop && !ig->fatal) {
        int64_t now = pd_mono_us();
        int timeout = ig->rq ? 10 : 100;
        if (ig->dirty_since_us) {
            int64_t at = PD_MIN(ig->dirty_since_us + ig->cfg->commit_interval_ms * 1000, early_flush_us(ig));
            int64_t left = at - now;
            timeout = left <= 0 ? 0 : (int)PD_MIN(left / 1000 + 1, timeout);
            /* the commit in flight may end any moment and make an early one possible */
            if (ig->cm_inflight) timeout = PD_MIN(timeout, 5);
        }
        /* A batch call returns when the batch is full or the timeout ends,
         * so the timeout is kept short: it bounds the latency it adds. */
        ssize_t n = rd_kafka_consume_batch_queue(ig->cq, PD_MIN(timeout, 20), msgs, NB);
        handle_messages(ig, msgs, n, ROLE_OWNER);
        int drained = n < NB; /* the queue ran dry (or the timeout ended) before NB records */
        if (n > 0) kick_reset(ig, ROLE_OWNER);
        else wake_fetcher(ig, ig->consumer, ROLE_OWNER, pd_mono_us());
        if (ig->rq) {
            ssize_t nr = rd_kafka_consume_batch_queue(ig->rq, 0, msgs, NB);
            handle_messages(ig, msgs, nr, ROLE_REPLICA);
            drained &= nr < NB;
            if (nr > 0) kick_reset(ig, ROLE_REPLICA);
            else wake_fetcher(ig, ig->rconsumer, ROLE_REPLICA, pd_mono_us());
        }
        if (ig->producer) rd_kafka_poll(ig->producer, 0);
        reap_restores(ig);
        now = pd_mono_us();
        if (now - ig->last_replica_us > 1000000) {
            update_replicas(ig);
            ig->last_replica_us = now;
        }
        if (now - ig->last_cleanup_us > 10000000) {
            cleanup_orphans(ig);
            ig->last_cleanup_us = now;
        }
        if (now - ig->last_trim_us > TRIM_EVERY_US) {
            /* glibc keeps freed memory in its arenas (the free heap gauge
             * grows with the churn of batches, queries and compactions);
             * hand unused pages back so RSS follows what is in use. */
            int64_t t0 = pd_mono_us();
            malloc_trim(0);
            ig->last_trim_us = pd_mono_us();
            pd_hist_observe(&w->metrics->trim_seconds, (double)(ig->last_trim_us - t0) / 1e6);
        }
        /* Publish a finished commit promptly (committed offsets, catch-up). */
        if (ig->cm_inflight && flush_finish(ig, 0, err, sizeof err) != PD_OK && ig->fatal) {
            pd_error("%s", err);
            break;
        }
        int due = ig->bt[ig->cur].events >= (uint64_t)ig->cfg->batch_max_events ||
                  (ig->dirty_since_us && (now - ig->dirty_since_us >= ig->cfg->commit_interval_ms * 1000 ||
                                          (drained && now >= early_flush_us(ig))));
        if (due) {
            if (flush_start(ig, err, sizeof err) != PD_OK) {
                if (ig->fatal) {
                    pd_error("%s", err);
                    break;
                }
                pd_error("flush failed (will retry): %s", err);
                backoff_ms = backoff_ms ? PD_MIN(backoff_ms * 2, 2000) : 50;
                struct timespec ts = {backoff_ms / 1000, (backoff_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            } else {
                backoff_ms = 0;
            }
        }
        if (now - ig->last_wm_us > 1000000) {
            update_watermarks(ig);
            ig->last_wm_us = now;
        }
    }
    return ig->fatal ? PD_ERR : PD_OK;
}

void pd_ingest_close(pd_ingest *ig)
{
    if (!ig) return;
    char err[512];
    pd_worker *w = ig->w;
    if (ig->pp && w->stop < 2 && pd_ingest_flush(ig, err, sizeof err) != PD_OK)
        pd_error("final flush failed: %s (uncommitted input will be replayed)", err);
    for (int32_t p = 0; ig->pp && p < w->nparts; p++) {
        restore_job *j = ig->pp[p].job;
        if (!j) continue;
        atomic_store(&j->cancel, 1);
        pthread_join(j->th, NULL); /* bounded: fetches time out */
        remove(j->path);
        free(j);
        ig->pp[p].job = NULL;
    }
    if (ig->rq) rd_kafka_queue_destroy(ig->rq);
    ig->rq = NULL;
    if (ig->rconsumer) rd_kafka_consumer_close(ig->rconsumer);
    if (ig->cq) rd_kafka_queue_destroy(ig->cq);
    ig->cq = NULL;
    if (ig->consumer) {
        /* Leaves the group; the rebalance callback flushes (nothing left). */
        rd_kafka_consumer_close(ig->consumer);
    }
    if (ig->producer) rd_kafka_flush(ig->producer, (int)PD_MIN(ig->cfg->shutdown_timeout_ms, 10000));
    ig->closed = 1;
}

/* librdkafka 2.0.2 (Debian bookworm) can assert in rd_kafka_destroy() of a
 * cooperative-sticky consumer whose assignor state was never set
 * (librdkafka issue #4312, fixed in 2.3.0). By the time the handles are
 * destroyed everything durable is done (batch committed, group left,
 * departure announced), so an abort there is turned into a clean exit. */
static volatile sig_atomic_t in_final_destroy;

static void on_abort_in_destroy(int sig)
{
    static const char msg[] = "profiled: librdkafka aborted while destroying a closed consumer "
                              "(known librdkafka 2.0.2 bug #4312); state was already committed\n";
    if (in_final_destroy) {
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(0);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void pd_ingest_free(pd_ingest *ig)
{
    if (!ig) return;
    pd_worker *w = ig->w;
    if (!ig->closed) pd_ingest_close(ig);
    if (ig->rconsumer || ig->consumer) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_abort_in_destroy;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGABRT, &sa, &old);
        in_final_destroy = 1;
        if (ig->rconsumer) rd_kafka_destroy(ig->rconsumer);
        if (ig->consumer) rd_kafka_destroy(ig->consumer);
        in_final_destroy = 0;
        sigaction(SIGABRT, &old, NULL);
    }
    if (ig->producer) rd_kafka_destroy(ig->producer);
    if (ig->cm_started) {
        pthread_mutex_lock(&ig->cm_mu);
        while (ig->cm_job) pthread_cond_wait(&ig->cm_cv, &ig->cm_mu); /* a commit never abandoned */
        ig->cm_quit = 1;
        pthread_cond_broadcast(&ig->cm_cv);
        pthread_mutex_unlock(&ig->cm_mu);
        pthread_join(ig->cm_th, NULL);
    }
    batch_free(&ig->bt[0]);
    batch_free(&ig->bt[1]);
    for (int32_t p = 0; ig->pp && p < w->nparts; p++) dd_free(&ig->pp[p].dd);
    pd_profile_free(&ig->scratch);
    pthread_mutex_destroy(&ig->cm_mu);
    pthread_cond_destroy(&ig->cm_cv);
    free(ig->cm_parts);
    for (int i = 0; i < 2; i++)
        if (ig->sbs[i]) pd_store_batch_free(ig->sbs[i]);
    free(ig->pp);
    free(ig);
}

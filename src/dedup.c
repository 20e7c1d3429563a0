/*
 * dedup.c -- the de-dup index of one partition (rule and ownership in
 * dedup.h).
 *
 * Every time below is a delivery time (rectime.h), never an event time:
 * the window bounds how far apart two deliveries of one event may be, so
 * a late event (an offline client's retry) is caught however old its ts.
 *
 * In memory: XXH3-128(event id) -> delivery time d0 of the latest accepted
 * occurrence, holding at least every entry with d0 >= clock - window;
 * older entries can never match again and are dropped whenever the table
 * is rebuilt (on growth). About 40 bytes per event of the window (24-byte
 * slots at 50-75 % load).
 *
 * In the store: ONE record per partition per flush, key (partition, seq =
 * the partition's next offset at that flush), value = the entries accepted
 * since the previous flush, in acceptance order (store.h). Loading scans a
 * partition's records in seq order and lets later entries override earlier
 * ones, which rebuilds exactly the in-memory map; the clock is the largest
 * entry seen.
 *
 * Garbage collection: record R gets gc_ts = the max, over its entries, of
 * the entry's time and of the time it overrode. R is deleted (in a flush
 * batch, with the checkpoint of that flush) once gc_ts < clock - window.
 * Then R's own entries are expired, and so is every value R overrode, so
 * whatever a reload finds for those ids instead (an older record, or
 * nothing) is expired as well: results cannot change. The same gc_ts is
 * recomputed on load (overrides of records already deleted were expired,
 * which is all that matters). Collection takes expired records from the
 * front of the seq order each flush, and all of them every
 * DD_FULL_GC_EVERY flushes of the partition. The record holding the entry
 * equal to the clock has gc_ts >= clock, so it is never collected: a
 * reload finds the clock again (the largest entry of the records left;
 * every collected entry was below clock - window).
 *
 * The bound (dedup_max_ids; rule in dedup.h): a ring of the last max_ids
 * acceptance times, grown on demand up to max_ids slots; H lives beside
 * the clock and joins it in every horizon (decisions, rebuilds, garbage
 * collection). With H raised, the index holds at most max_ids entries at
 * or above it, so the table is at most 4 * max_ids slots (rebuilt at 75 %
 * load to at most 50 %): about 100 bytes per id in the worst case, 8 of
 * them the ring's. H is staged as the seq-0 record whenever a flush
 * follows a raise.
 *
 * Stored entries changed meaning in event dialect 3 (event time before,
 * delivery time now): stores of dialect 2 are refused at open (store.c),
 * hand-off snapshots of dialect 2 too (handoff.c).
 */
#include "dedup.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define DD_FULL_GC_EVERY 64
#define DD_CAPH_MAGIC 0x5044444443415048ULL /* "PDDDCAPH" */

static pd_dedup_slot *dd_find(const pd_dedup *d, uint64_t hi, uint64_t lo)
{
    size_t m = d->cap - 1;
    for (size_t i = (size_t)lo & m;; i = (i + 1) & m) {
        pd_dedup_slot *s = &d->slots[i];
        if (s->ts == PD_DEDUP_NONE || (s->lo == lo && s->hi == hi)) return s;
    }
}

/* Rebuilds the table without the entries older than horizon, sized for
 * at most 50% load after the rebuild. */
static void dd_rebuild(pd_dedup *d, int64_t horizon)
{
    size_t live = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->slots[i].ts != PD_DEDUP_NONE && d->slots[i].ts >= horizon) live++;
    size_t cap = 64;
    while ((live + 1) * 2 > cap) cap *= 2;
    pd_dedup_slot *old = d->slots;
    size_t ocap = d->cap;
    d->slots = pd_malloc(cap * sizeof *d->slots);
    for (size_t i = 0; i < cap; i++) d->slots[i].ts = PD_DEDUP_NONE;
    d->cap = cap;
    d->n = 0;
    for (size_t i = 0; i < ocap; i++) {
        pd_dedup_slot *s = &old[i];
        if (s->ts == PD_DEDUP_NONE || s->ts < horizon) continue;
        *dd_find(d, s->hi, s->lo) = *s;
        d->n++;
    }
    free(old);
}

/* Sets id hash -> ts; returns the value it overrode (PD_DEDUP_NONE if none). */
static int64_t dd_set(pd_dedup *d, uint64_t hi, uint64_t lo, int64_t ts, int64_t horizon)
{
    if ((d->n + 1) * 4 > d->cap * 3) dd_rebuild(d, horizon);
    pd_dedup_slot *s = dd_find(d, hi, lo);
    int64_t prev = s->ts;
    if (prev == PD_DEDUP_NONE) {
        s->hi = hi;
        s->lo = lo;
        d->n++;
    }
    s->ts = ts;
    return prev;
}

static void dd_rec_push(pd_dedup *d, uint64_t seq, int64_t gc_ts)
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
    d->recs[d->nrecs++] = (pd_dedup_rec){seq, gc_ts};
}

typedef struct {
    pd_dedup *d;
    int64_t window;
} dd_loader;

/* Horizon of entries that can still match at clock c: max(c - window, H)
 * (no entry can be below c - window while the clock is unknown). */
static int64_t dd_horizon_at(const pd_dedup *d, int64_t c, int64_t window)
{
    int64_t h = c == PD_DEDUP_NONE ? INT64_MIN : c - window;
    return PD_MAX(h, d->cap_h);
}

static int64_t dd_horizon(const pd_dedup *d, int64_t window)
{
    return dd_horizon_at(d, d->clock, window);
}

/* One acceptance at delivery time c into the ring; with max_ids of them
 * held, the oldest falls out and raises H past its time. */
static void dd_ring_push(pd_dedup *d, int64_t c)
{
    if (!d->max_ids) return;
    if (d->ringn < d->max_ids) {
        if (d->ringn == d->ringcap) {
            size_t nc = d->ringcap ? d->ringcap * 2 : 64;
            if (nc > d->max_ids) nc = (size_t)d->max_ids;
            d->ring = pd_realloc(d->ring, nc * sizeof *d->ring);
            d->ringcap = nc;
        }
        d->ring[d->ringn++] = c;
        return;
    }
    int64_t out = d->ring[d->ringpos];
    d->ring[d->ringpos] = c;
    d->ringpos = d->ringpos + 1 == d->ringn ? 0 : d->ringpos + 1;
    if (out + 1 > d->cap_h) {
        d->cap_h = out + 1;
        /* forgotten before the window passed it: the bound bit */
        if (out >= c - d->window) d->evicted++;
    }
}

static int dd_load_rec(void *arg, uint64_t seq, const uint8_t *val, size_t vlen)
{
    dd_loader *l = arg;
    if (seq == 0) { /* the cap horizon (first: keys sort by seq) */
        if (vlen == PD_DEDUP_ENTRY_LEN && pd_get_u64be(val) == DD_CAPH_MAGIC)
            l->d->cap_h = l->d->cap_h_stored = (int64_t)pd_get_u64be(val + 16);
        return 0;
    }
    int64_t gc = PD_DEDUP_NONE;
    for (size_t off = 0; off + PD_DEDUP_ENTRY_LEN <= vlen; off += PD_DEDUP_ENTRY_LEN) {
        const uint8_t *e = val + off;
        int64_t at = (int64_t)pd_get_u64be(e + 16);
        /* the clock so far never exceeds the final one: a safe horizon */
        l->d->clock = PD_MAX(l->d->clock, at);
        int64_t prev = dd_set(l->d, pd_get_u64be(e), pd_get_u64be(e + 8), at, dd_horizon(l->d, l->window));
        dd_ring_push(l->d, at);
        gc = PD_MAX(gc, PD_MAX(at, prev));
    }
    dd_rec_push(l->d, seq, gc);
    return 0;
}

int pd_dedup_load(pd_dedup *d, pd_store *st, int32_t p, int64_t window, uint64_t max_ids, char *err,
                  size_t errlen)
{
    pd_dedup_free(d);
    d->pend_gc = PD_DEDUP_NONE;
    d->clock = PD_DEDUP_NONE;
    d->cap_h = d->cap_h_stored = PD_DEDUP_NONE;
    d->max_ids = max_ids;
    d->window = window;
    dd_rebuild(d, INT64_MIN);
    dd_loader l = {d, window};
    int rc = pd_store_scan_dedup(st, p, dd_load_rec, &l, err, errlen);
    if (rc) {
        pd_dedup_free(d);
        return rc;
    }
    d->evicted = 0; /* counts after the load only */
    d->loaded = 1;
    return PD_OK;
}

int pd_dedup_check(pd_dedup *d, const char *id, size_t idlen, int64_t at, int64_t win)
{
    pd_assert(d->loaded);
    const int64_t c = PD_MAX(d->clock, at); /* C' = max(C, r) */
    XXH128_hash_t h = XXH3_128bits(id, idlen);
    pd_dedup_slot *s = dd_find(d, h.high64, h.low64);
    int64_t d0 = s->ts;
    if (d0 != PD_DEDUP_NONE && d0 >= dd_horizon_at(d, c, win)) return 1;
    d->clock = c;
    int64_t prev = dd_set(d, h.high64, h.low64, c, dd_horizon_at(d, c, win));
    dd_ring_push(d, c);
    d->pend_gc = PD_MAX(d->pend_gc, PD_MAX(c, prev));
    uint8_t e[PD_DEDUP_ENTRY_LEN];
    pd_put_u64be(e, h.high64);
    pd_put_u64be(e + 8, h.low64);
    pd_put_u64be(e + 16, (uint64_t)c);
    pd_buf_append(&d->pend, e, sizeof e);
    return 0;
}

int64_t pd_dedup_lookup(const pd_dedup *d, const char *id, size_t idlen)
{
    if (!d->cap) return PD_DEDUP_NONE;
    XXH128_hash_t h = XXH3_128bits(id, idlen);
    return dd_find(d, h.high64, h.low64)->ts;
}

/* GC against horizon: with stage = 1 adds deletes of the collectable
 * records to sb; with stage = 0 (the same plan again) forgets them. */
static void dd_gc_plan(pd_dedup *d, pd_store_batch *sb, int32_t p, int64_t horizon, int stage)
{
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

void pd_dedup_stage(pd_dedup *d, pd_store_batch *sb, int32_t p, uint64_t seq, int64_t window)
{
    if (!d->loaded) return;
    const int64_t horizon = dd_horizon(d, window);
    if (d->cap_h != d->cap_h_stored) {
        uint8_t e[PD_DEDUP_ENTRY_LEN] = {0};
        pd_put_u64be(e, DD_CAPH_MAGIC);
        pd_put_u64be(e + 16, (uint64_t)d->cap_h);
        pd_store_batch_put_dedup(sb, p, 0, e, sizeof e);
        d->cap_h_stored = d->cap_h;
    }
    pd_assert(!d->pend.len || seq > 0);
    if (d->adopt) { /* every stored record goes: the pending one holds what is live */
        for (size_t i = d->head; i < d->nrecs; i++) pd_store_batch_delete_dedup(sb, p, d->recs[i].seq);
        d->head = d->nrecs = 0;
        d->adopt = 0;
    }
    dd_gc_plan(d, sb, p, horizon, 1);
    if (d->pend.len) pd_store_batch_put_dedup(sb, p, seq, d->pend.p, d->pend.len);
    dd_gc_plan(d, sb, p, horizon, 0);
    if (d->pend.len) dd_rec_push(d, seq, d->pend_gc);
    d->pend.len = 0;
    d->pend_gc = PD_DEDUP_NONE;
    d->flushes++;
}

static int dd_slot_ts_cmp(const void *a, const void *b)
{
    const pd_dedup_slot *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

void pd_dedup_adopt(pd_dedup *d, int64_t window)
{
    pd_assert(d->loaded && !d->pend.len);
    const int64_t horizon = dd_horizon(d, window);
    pd_dedup_slot *live = pd_malloc((d->n ? d->n : 1) * sizeof *live);
    size_t n = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->slots[i].ts != PD_DEDUP_NONE && d->slots[i].ts >= horizon && n < d->n) live[n++] = d->slots[i];
    qsort(live, n, sizeof *live, dd_slot_ts_cmp);
    for (size_t i = 0; i < n; i++) {
        uint8_t e[PD_DEDUP_ENTRY_LEN];
        pd_put_u64be(e, live[i].hi);
        pd_put_u64be(e + 8, live[i].lo);
        pd_put_u64be(e + 16, (uint64_t)live[i].ts);
        pd_buf_append(&d->pend, e, sizeof e);
        d->pend_gc = PD_MAX(d->pend_gc, live[i].ts);
    }
    free(live);
    d->adopt = 1;
}

int pd_dedup_foreign(const pd_dedup *d, int64_t next_offset)
{
    /* the stored records are in ascending seq: the last is the largest */
    return d->loaded && d->nrecs > d->head && d->recs[d->nrecs - 1].seq > (uint64_t)PD_MAX(next_offset, 0);
}

int64_t pd_dedup_effective_window(const pd_dedup *d, int64_t window)
{
    if (!d->loaded || d->cap_h == PD_DEDUP_NONE || d->clock == PD_DEDUP_NONE) return window;
    return PD_MIN(window, PD_MAX(d->clock - d->cap_h, 0));
}

size_t pd_dedup_bytes(const pd_dedup *d)
{
    return d->cap * sizeof *d->slots + d->caprecs * sizeof *d->recs + d->pend.cap +
           d->ringcap * sizeof *d->ring;
}

void pd_dedup_free(pd_dedup *d)
{
    free(d->slots);
    free(d->recs);
    free(d->ring);
    pd_buf_free(&d->pend);
    memset(d, 0, sizeof *d);
}

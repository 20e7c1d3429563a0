/*
 * batch.c -- one ingest batch: the (partition, day, user) table, the
 * compact event log and the sorted build of the profile deltas (see
 * batch.h for the contract and ownership).
 *
 * Event log record layout (8-byte aligned, native byte order, memory only):
 *   ev_rec | type bytes | item id bytes | nattrs x (u8 dim, u8 kind,
 *                                   then STR: u16 len + bytes, NUM: f64)
 * Offset 0 of the log is never a record, so 0 means "none" in the chains.
 * Every record is on its user entry's chain (next) until an erasure of
 * the user empties that chain; the erasure moves the records to the chain
 * (pnext) of the partition-day's population entry, the entry of (day,
 * partition, empty user id), which exists only for them. So the events of
 * a partition-day are its user chains plus that chain, whatever erasures
 * did (the population is not personal data, and it must not depend on
 * where batches end).
 *
 * The population delta of a partition-day is built from its user entries
 * as they are written, in one scratch profile of the population schema:
 * a one-event entry adds its event (the record decoded for the user's
 * write anyway); a longer entry merges the delta just built for the user
 * (pd_profile_merge_exact): every catset of it that did not overflow under
 * the user schema's caps holds every occurrence with its count and level,
 * so merging it is merging the profile of its events (profile.h: a
 * function of the multiset of events), and the occurrences of the catsets
 * that overflowed (a busy user's models, say) are added again from the
 * events; the erased records are added last. Merging walks the distinct
 * values of the user-day (the delta carries their hashes and levels)
 * where adding every event again cost two hashes and a binary search per
 * event and value (docs/BENCHMARKS.md, issue 20, has the figures; putting
 * a small delta's values into the population's catsets in place instead
 * of pd_catset_merge's walk was measured and dropped: no gain); the
 * ingest thread chains each event once. Numeric sums are then added per
 * user first: the same doubles for integer data below 2^53 (profile.h),
 * rounded in another order otherwise, as any grouping of operands is.
 *
 * The table is open addressing with linear probing at <= 75 % load, keyed
 * by XXH3-64 of the entry key; a slot points at the key its entry holds,
 * so the key lives as long as the entry is in the table.
 *
 * Memory follows the load: batches keep their capacity between commits (a
 * warm batch allocates nothing), but a burst -- catch-up after a restart,
 * batches of batch_max_events -- must not pin its peak for good: every
 * BATCH_WINDOW clears, a batch whose table, recycled entries, sort scratch
 * or event log exceed four times what the window's largest batch needed
 * gives the excess back (keeping twice that need, and at least
 * BATCH_KEEP_MIN entries / BATCH_KEEP_LOG log bytes).
 */
#include "batch.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define BATCH_WINDOW 64
#define BATCH_KEEP_MIN 1024
#define BATCH_KEEP_LOG ((size_t)64 << 10)
#define BATCH_INIT_SLOTS 4096

typedef struct {
    size_t next;       /* offset of the entry's next record; 0 = none */
    size_t pnext;      /* erased: the next record of its population entry; 0 = none */
    int64_t ts;
    uint64_t okey;     /* the event's occurrence key (sketch.h) */
    uint16_t type_len;
    uint16_t nattrs;   /* attributes present (kind STR or NUM) */
    uint16_t item_len; /* the "recent" item id's bytes (0 with has_item = 0: none) */
    uint8_t has_item;
} ev_rec;

/* ---- the table ---- */

/* A slot points at the key its entry holds. */
typedef struct pd_batch_tslot {
    uint64_t hash;
    const char *key;         /* NULL: free slot */
    uint32_t klen;
    pd_batch_entry *e;
} tslot;

static void tab_init(pd_batch *b, size_t cap)
{
    b->cap = cap;
    b->n = 0;
    b->slots = pd_calloc(cap, sizeof *b->slots);
}

static tslot *tab_find(tslot *slots, size_t cap, uint64_t h, const char *k, uint32_t kl)
{
    size_t m = cap - 1;
    for (size_t i = h & m;; i = (i + 1) & m) {
        tslot *s = &slots[i];
        if (!s->key) return s;
        if (s->hash == h && s->klen == kl && memcmp(s->key, k, kl) == 0) return s;
    }
}

/* Moves the kept slots (those whose partition is not in only_parts, all of
 * them when it is NULL) into a fresh table of cap slots; the others'
 * entries are recycled. */
static void entry_put(pd_batch *b, pd_batch_entry *e);
static void tab_rehash(pd_batch *b, size_t cap, const char *only_parts)
{
    tslot *old = b->slots;
    size_t ocap = b->cap;
    tab_init(b, cap);
    for (size_t i = 0; i < ocap; i++) {
        tslot *s = &old[i];
        if (!s->key) continue;
        if (only_parts && only_parts[s->e->partition]) {
            entry_put(b, s->e);
            continue;
        }
        *tab_find(b->slots, b->cap, s->hash, s->key, s->klen) = *s;
        b->n++;
    }
    free(old);
}

/* ---- entries ---- */

static pd_batch_entry *entry_get(pd_batch *b)
{
    if (b->nfree) return b->free_entries[--b->nfree];
    return pd_calloc(1, sizeof(pd_batch_entry));
}

static void entry_put(pd_batch *b, pd_batch_entry *e)
{
    e->head = e->tail = 0;
    if (b->nfree == b->capfree) {
        b->capfree = b->capfree ? b->capfree * 2 : 1024;
        b->free_entries = pd_realloc(b->free_entries, b->capfree * sizeof *b->free_entries);
    }
    b->free_entries[b->nfree++] = e;
}

/* ---- the event log ---- */

/* Appends ev's record to the log and chains it to e. */
static void evlog_append(pd_batch *b, pd_batch_entry *e, const pd_event *ev)
{
    pd_buf *L = &b->evlog;
    if (L->len == 0) L->len = 8; /* offset 0 means "none" */
    size_t need = sizeof(ev_rec) + ev->type_len + ev->item_id_len + 8;
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
    if (ev->item_id) memcpy(o, ev->item_id, ev->item_id_len);
    o += ev->item_id ? ev->item_id_len : 0;
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
    ev_rec h = {.next = 0, .pnext = 0, .ts = ev->ts_ms, .okey = ev->okey, .type_len = (uint16_t)ev->type_len,
                .nattrs = n, .item_len = ev->item_id ? (uint16_t)ev->item_id_len : 0, .has_item = ev->item_id != NULL};
    memcpy(base, &h, sizeof h);
    L->len = (off + (size_t)(o - base) + 7) & ~(size_t)7;
    if (e->tail) ((ev_rec *)(void *)(L->p + e->tail))->next = off;
    else e->head = off;
    e->tail = off;
}

size_t pd_batch_decode(const pd_batch *b, size_t off, pd_event *ev)
{
    const ev_rec *h = (const ev_rec *)(const void *)(b->evlog.p + off);
    const uint8_t *o = (const uint8_t *)h + sizeof *h;
    for (int i = 0; i < ev->nattrs; i++) ev->attrs[i].kind = PD_ATTR_ABSENT;
    ev->ts_ms = h->ts;
    ev->okey = h->okey;
    ev->type = (const char *)o;
    ev->type_len = h->type_len;
    o += h->type_len;
    ev->item_id = h->has_item ? (const char *)o : NULL;
    ev->item_id_len = h->item_len;
    o += h->item_len;
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

/* Adds the events of e's chain to p (a population entry: its erased
 * records, on the pnext chain). */
static void entry_add(const pd_batch *b, const pd_batch_entry *e, pd_profile *p, pd_event *ev)
{
    const int pop = e->ulen == 0;
    for (size_t off = e->head; off;) {
        const size_t pn = ((const ev_rec *)(const void *)(b->evlog.p + off))->pnext;
        off = pd_batch_decode(b, off, ev);
        if (pop) off = pn;
        pd_profile_add(p, ev);
    }
}

void pd_batch_entry_build(const pd_batch *b, const pd_batch_entry *e, pd_profile *p, pd_event *ev)
{
    pd_profile_clear(p);
    entry_add(b, e, p, ev);
}

/* ---- adding ---- */

/* Remembers day among the batch's days (new entries only: a short scan). */
static void days_note(pd_batch *b, int64_t day)
{
    for (size_t i = b->ndays; i-- > 0;)
        if (b->days[i] == day) return;
    if (b->ndays == b->capdays) {
        b->capdays = b->capdays ? 2 * b->capdays : 16;
        b->days = pd_realloc(b->days, b->capdays * sizeof *b->days);
    }
    b->days[b->ndays++] = day;
}

static pd_batch_entry *entry_of(pd_batch *b, int32_t p, int64_t day, const char *user, size_t ulen);

/* Appends the records of e's chain to the pnext chain of its
 * partition-day's population entry (created when new). */
static void erased_to_population(pd_batch *b, pd_batch_entry *e)
{
    pd_batch_entry *pe = entry_of(b, e->partition, e->day, "", 0);
    char *L = b->evlog.p;
    for (size_t off = e->head; off; off = ((ev_rec *)(void *)(L + off))->next) {
        if (pe->tail) ((ev_rec *)(void *)(L + pe->tail))->pnext = off;
        else pe->head = off;
        pe->tail = off;
    }
}

void pd_batch_erase(pd_batch *b, int32_t p, const char *user, size_t ulen)
{
    pd_assert(p >= 0 && ulen > 0 && ulen <= PD_MAX_USER_ID);
    char kbuf[PD_BATCH_KEY_MAX];
    pd_put_u32be((uint8_t *)kbuf + 8, (uint32_t)p);
    memcpy(kbuf + 12, user, ulen);
    const uint32_t kl = (uint32_t)(12 + ulen);
    for (size_t i = 0; i < b->ndays; i++) {
        pd_put_u64be((uint8_t *)kbuf, (uint64_t)b->days[i]);
        tslot *s = tab_find(b->slots, b->cap, XXH3_64bits(kbuf, kl), kbuf, kl);
        if (!s->key || !s->e->head) continue;
        pd_batch_entry *e = s->e; /* erased_to_population may move the slots */
        if (b->population) erased_to_population(b, e);
        e->head = e->tail = 0; /* forget the events before the erasure */
    }
    uint8_t h[6];
    const int32_t pp = p;
    const uint16_t ul = (uint16_t)ulen;
    memcpy(h, &pp, 4);
    memcpy(h + 4, &ul, 2);
    pd_buf_append(&b->erasures, h, sizeof h);
    pd_buf_append(&b->erasures, user, ulen);
    b->nerasures++;
}

/* The entry of (day, p, user), created when new. */
static pd_batch_entry *entry_of(pd_batch *b, int32_t p, int64_t day, const char *user, size_t ulen)
{
    char kbuf[PD_BATCH_KEY_MAX];
    pd_put_u64be((uint8_t *)kbuf, (uint64_t)day); /* day >= 2000-01-01: positive */
    pd_put_u32be((uint8_t *)kbuf + 8, (uint32_t)p);
    memcpy(kbuf + 12, user, ulen);
    uint32_t kl = (uint32_t)(12 + ulen);
    uint64_t kh = XXH3_64bits(kbuf, kl);
    if ((b->n + 1) * 4 > b->cap * 3) tab_rehash(b, b->cap * 2, NULL);
    tslot *s = tab_find(b->slots, b->cap, kh, kbuf, kl);
    pd_batch_entry *e = s->e;
    if (!s->key) {
        days_note(b, day);
        e = entry_get(b);
        memcpy(e->key, kbuf, kl);
        e->partition = p;
        e->day = day;
        e->user = e->key + 12;
        e->ulen = (uint32_t)ulen;
        s->hash = kh;
        s->key = e->key;
        s->klen = kl;
        s->e = e;
        b->n++;
    }
    return e;
}

void pd_batch_add(pd_batch *b, int32_t p, int64_t day, const pd_event *ev)
{
    pd_assert(ev->user_id_len > 0); /* the empty id is the population's */
    pd_batch_entry *e = entry_of(b, p, day, ev->user_id, ev->user_id_len);
    evlog_append(b, e, ev);
    b->events++;
}

/* ---- the sorted build ---- */

/* Store key order: day, then partition, then user bytes (shorter first on
 * a common prefix) -- the order of the entry keys compared as bytes. The
 * sort compares the first 24 key bytes as three big-endian words (the key
 * zero-padded), stored next to the entry pointer, and the whole keys only
 * on a tie: no pointer chasing and no memcmp calls for most pairs. */
typedef struct pd_batch_sorted {
    uint64_t k[3];
    pd_batch_entry *e;
} sort_rec;

static void sort_rec_set(sort_rec *r, pd_batch_entry *e)
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
    const pd_batch_entry *a = ra->e, *b = rb->e;
    uint32_t la = 12 + a->ulen, lb = 12 + b->ulen;
    int c = memcmp(a->key, b->key, la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : la > lb;
}

/* The C library's qsort. An inlined quicksort stood here; it went by the
 * "measured, or gone" rule (bench_process on the 250k-event data, 4
 * interleaved pairs quicksort/qsort: flush 0.79/0.73 0.80/0.80 0.76/0.61
 * 0.54/0.67 s, process CPU 1.76/1.75 1.81/1.81 1.86/1.93 1.76/1.81 s). */
static int sort_rec_qsort_cmp(const void *a, const void *b)
{
    return sort_rec_cmp(a, b);
}

size_t pd_batch_sort(pd_batch *b)
{
    if (b->n > b->capsorted) {
        b->capsorted = b->n * 2;
        free(b->sorted);
        b->sorted = pd_malloc(b->capsorted * sizeof *b->sorted);
    }
    size_t ns = 0;
    for (size_t i = 0; i < b->cap; i++)
        if (b->slots[i].key) sort_rec_set(&b->sorted[ns++], b->slots[i].e);
    if (ns > 1) qsort(b->sorted, ns, sizeof *b->sorted, sort_rec_qsort_cmp);
    return ns;
}

const pd_batch_entry *pd_batch_sorted_at(const pd_batch *b, size_t i) { return b->sorted[i].e; }

int pd_batch_build(pd_batch *b, pd_store_batch *sb, pd_profile *scratch, uint64_t *writes, char *err,
                   size_t errlen)
{
    /* Erasures first: the merges below are of events after them. */
    *writes = 0;
    for (size_t off = 0; off < b->erasures.len;) {
        int32_t p;
        uint16_t ul;
        memcpy(&p, b->erasures.p + off, 4);
        memcpy(&ul, b->erasures.p + off + 4, 2);
        int rc = pd_store_batch_erase_user(sb, p, b->erasures.p + off + 6, ul, err, errlen);
        if (rc) return rc;
        off += 6 + (size_t)ul;
        ++*writes;
    }
    const size_t ns = pd_batch_sort(b);
    pd_event sev;
    memset(&sev, 0, sizeof sev);
    sev.nattrs = scratch->schema->ndims;
    pd_profile *pop = NULL; /* the population of the partition-day being written */
    if (b->population && ns) {
        if (!b->pop_scratch_init) {
            const pd_schema *ps = pd_store_batch_population_schema(sb);
            pd_assert(ps && ps->ndims == scratch->schema->ndims);
            pd_profile_init(&b->pop_scratch, ps);
            b->pop_scratch_init = 1;
        }
        pop = &b->pop_scratch;
        pd_profile_clear(pop);
    }
    for (size_t i = 0; i < ns; i++) {
        const pd_batch_entry *e = b->sorted[i].e;
        int rc = PD_OK;
        if (e->head) {
            if (e->ulen == 0) { /* erased events: the population only */
                if (pop) entry_add(b, e, pop, &sev);
            } else if (e->head == e->tail) { /* one event: encoded straight from its record */
                ++*writes;
                pd_batch_decode(b, e->head, &sev);
                rc = pd_store_batch_merge_event(sb, e->day, e->partition, e->user, e->ulen, &sev, err, errlen);
                if (pop) pd_profile_add(pop, &sev);
            } else {
                ++*writes;
                pd_batch_entry_build(b, e, scratch, &sev);
                rc = pd_store_batch_merge(sb, e->day, e->partition, e->user, e->ulen, scratch, err, errlen);
                if (pop && pd_profile_merge_exact(pop, scratch)) /* a user cap overflowed */
                    for (size_t off = e->head; off;) {
                        off = pd_batch_decode(b, off, &sev);
                        pd_profile_add_overflowed(pop, scratch, &sev);
                    }
            }
        }
        if (rc) return rc;
        /* the last entry of its partition-day (sorted: day, partition): its population */
        const pd_batch_entry *nx = i + 1 < ns ? b->sorted[i + 1].e : NULL;
        if (pop && pop->events && (!nx || nx->day != e->day || nx->partition != e->partition)) {
            ++*writes;
            rc = pd_store_batch_merge(sb, e->day, e->partition, "", 0, pop, err, errlen);
            if (rc) return rc;
            pd_profile_clear(pop);
        }
    }
    return PD_OK;
}

/* ---- lifetime and memory ---- */

void pd_batch_init(pd_batch *b, _Atomic uint64_t *gauge)
{
    memset(b, 0, sizeof *b);
    tab_init(b, BATCH_INIT_SLOTS);
    b->gauge = gauge;
    b->population = 1;
    pd_batch_publish(b);
}

void pd_batch_free(pd_batch *b)
{
    for (size_t i = 0; i < b->cap; i++)
        if (b->slots[i].key) free(b->slots[i].e);
    free(b->slots);
    for (size_t i = 0; i < b->nfree; i++) free(b->free_entries[i]);
    free(b->free_entries);
    pd_buf_free(&b->evlog);
    free(b->sorted);
    free(b->days);
    pd_buf_free(&b->erasures);
    if (b->pop_scratch_init) pd_profile_free(&b->pop_scratch);
    memset(b, 0, sizeof *b);
}

uint64_t pd_batch_mem(const pd_batch *b)
{
    return (uint64_t)b->cap * sizeof(tslot) + (uint64_t)(b->n + b->nfree) * sizeof(pd_batch_entry) +
           (uint64_t)b->capfree * sizeof(pd_batch_entry *) + b->evlog.cap +
           (uint64_t)b->capsorted * sizeof(sort_rec);
}

void pd_batch_publish(const pd_batch *b)
{
    if (b->gauge) atomic_store_explicit(b->gauge, pd_batch_mem(b), memory_order_relaxed);
}

/* See BATCH_WINDOW. b is empty (just cleared); used/log: the entries and
 * log bytes it held before. */
static void batch_trim(pd_batch *b, size_t used, size_t log)
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
    if (b->cap > 4 * slots) {
        pd_assert(b->n == 0);
        free(b->slots);
        tab_init(b, slots);
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

void pd_batch_clear(pd_batch *b)
{
    const size_t used = b->n, log = b->evlog.len;
    if (b->n) {
        for (size_t i = 0; i < b->cap; i++) {
            tslot *s = &b->slots[i];
            if (!s->key) continue;
            entry_put(b, s->e);
        }
        memset(b->slots, 0, b->cap * sizeof *b->slots);
        b->n = 0;
    }
    b->events = 0;
    b->evlog.len = 0;
    b->ndays = 0;
    b->erasures.len = 0;
    b->nerasures = 0;
    batch_trim(b, used, log);
    pd_batch_publish(b);
}

void pd_batch_drop_parts(pd_batch *b, const char *only_parts)
{
    tab_rehash(b, b->cap, only_parts);
    size_t w = 0, n = 0;
    for (size_t off = 0; off < b->erasures.len;) {
        int32_t p;
        uint16_t ul;
        memcpy(&p, b->erasures.p + off, 4);
        memcpy(&ul, b->erasures.p + off + 4, 2);
        const size_t len = 6 + (size_t)ul;
        if (!only_parts[p]) {
            memmove(b->erasures.p + w, b->erasures.p + off, len);
            w += len;
            n++;
        }
        off += len;
    }
    b->erasures.len = w;
    b->nerasures = n;
    if (b->n == 0 && b->nerasures == 0) pd_batch_clear(b);
}

/*
 * bloom.c -- growable concurrent blocked Bloom filter (see bloom.h).
 *
 * Layout. A segment is an array of 64-byte blocks (one cache line); a hash
 * picks one block with the high 32 bits (multiply-shift range reduction,
 * so the block count need not be a power of two) and sets k bits inside it,
 * each position taken from the top 9 bits of the low 32 bits after a
 * multiplicative rehash. A lookup therefore touches one cache line per
 * segment. At 10 bits per key and k = 6 the false-positive rate of a full
 * segment is about 1 % (the blocking costs a little against an unblocked
 * filter of the same size; tests/unit/test_bloom.c measures it).
 *
 * Counting and growth. An add first asks every segment; a hash already
 * (probably) present changes nothing and is not counted. Otherwise its bits
 * go into the newest segment, and the segment's count grows when at least
 * one bit was new. The adder that brings the newest segment to its
 * capacity appends a segment four times as large with a compare-and-swap
 * on the `next` link (a loser frees its copy). Segments are never removed
 * before pd_bloom_free.
 *
 * Budget. Filters may share a pd_bloom_budget: a segment is reserved
 * against it (atomic add, undone when it does not fit or loses the race)
 * before it is allocated, and released by pd_bloom_free. A growth that does
 * not fit is skipped: the newest segment goes on taking keys beyond its
 * capacity, so the filter answers "maybe" more often but never "no" for a
 * key it was given. Such a filter stays over-full until it is freed (its
 * day dropped): once most of its bits are set, adds rarely count, so no
 * count-based retry would come round reliably.
 */
#include "bloom.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define BLOCK_WORDS 8          /* 8 x 64 bits = one 64-byte cache line */
#define BLOCK_BITS 512
#define MIN_KEYS 1024
#define GROWTH 4

typedef struct seg {
    _Atomic(struct seg *) next;
    uint64_t nblocks;
    uint64_t cap;              /* distinct hashes this segment is sized for */
    _Atomic uint64_t n;        /* distinct hashes added to it */
    _Atomic uint64_t *w;       /* nblocks * BLOCK_WORDS words, 64-byte aligned */
} seg;

struct pd_bloom {
    seg head;                  /* the first segment is embedded */
    _Atomic(seg *) tail;       /* newest segment (adders only; may lag behind `next`) */
    _Atomic size_t bytes;
    pd_bloom_budget *budget;   /* NULL: unlimited */
    int bits_per_key, k;
};

static uint64_t seg_blocks(uint64_t keys, int bits_per_key)
{
    uint64_t nblocks = (keys * (uint64_t)bits_per_key + BLOCK_BITS - 1) / BLOCK_BITS;
    return nblocks ? nblocks : 1;
}

static size_t seg_size(uint64_t nblocks)
{
    return (size_t)nblocks * BLOCK_WORDS * sizeof(uint64_t) + sizeof(seg);
}

/* Reserves n bytes of the budget; 0 when they do not fit. */
static int budget_take(pd_bloom_budget *bg, size_t n)
{
    if (!bg) return 1;
    size_t was = atomic_fetch_add_explicit(&bg->used, n, memory_order_relaxed);
    if (bg->limit == 0 || was + n <= bg->limit) return 1;
    atomic_fetch_sub_explicit(&bg->used, n, memory_order_relaxed);
    return 0;
}

static void budget_give(pd_bloom_budget *bg, size_t n)
{
    if (bg) atomic_fetch_sub_explicit(&bg->used, n, memory_order_relaxed);
}

static void seg_init(seg *s, uint64_t nblocks, int bits_per_key)
{
    s->nblocks = nblocks;
    s->cap = s->nblocks * BLOCK_BITS / (uint64_t)bits_per_key;
    atomic_init(&s->next, NULL);
    atomic_init(&s->n, 0);
    size_t sz = (size_t)s->nblocks * BLOCK_WORDS * sizeof(uint64_t);
    s->w = aligned_alloc(64, sz);
    if (!s->w) pd_oom(__FILE__, __LINE__, sz);
    memset(s->w, 0, sz);
}

static _Atomic uint64_t *seg_block(const seg *s, uint64_t h)
{
    uint64_t i = ((h >> 32) * s->nblocks) >> 32;
    return s->w + i * BLOCK_WORDS;
}

static int seg_has(const seg *s, int k, uint64_t h)
{
    _Atomic uint64_t *blk = seg_block(s, h);
    uint32_t x = (uint32_t)h;
    for (int i = 0; i < k; i++) {
        unsigned pos = x >> 23; /* 0..511 */
        uint64_t m = (uint64_t)1 << (pos & 63);
        if (!(atomic_load_explicit(&blk[pos >> 6], memory_order_relaxed) & m)) return 0;
        x *= 0x9E3779B9u;
    }
    return 1;
}

/* Sets h's bits; returns 1 if any of them was new. */
static int seg_set(seg *s, int k, uint64_t h)
{
    _Atomic uint64_t *blk = seg_block(s, h);
    uint32_t x = (uint32_t)h;
    int fresh = 0;
    for (int i = 0; i < k; i++) {
        unsigned pos = x >> 23;
        uint64_t m = (uint64_t)1 << (pos & 63);
        if (!(atomic_fetch_or_explicit(&blk[pos >> 6], m, memory_order_relaxed) & m)) fresh = 1;
        x *= 0x9E3779B9u;
    }
    return fresh;
}

pd_bloom *pd_bloom_new(uint64_t expected, int bits_per_key, pd_bloom_budget *budget)
{
    if (bits_per_key < 4) bits_per_key = 4;
    if (bits_per_key > 32) bits_per_key = 32;
    if (expected < MIN_KEYS) expected = MIN_KEYS;
    uint64_t nblocks = seg_blocks(expected, bits_per_key);
    size_t bytes = seg_size(nblocks) + sizeof(pd_bloom) - sizeof(seg);
    if (!budget_take(budget, bytes)) return NULL;
    pd_bloom *b = pd_calloc(1, sizeof *b);
    b->bits_per_key = bits_per_key;
    b->budget = budget;
    /* ln 2 x bits per key, a little lower for a blocked filter */
    b->k = (bits_per_key * 6 + 5) / 10;
    if (b->k < 1) b->k = 1;
    seg_init(&b->head, nblocks, bits_per_key);
    atomic_init(&b->tail, &b->head);
    atomic_init(&b->bytes, bytes);
    return b;
}

void pd_bloom_free(pd_bloom *b)
{
    if (!b) return;
    budget_give(b->budget, atomic_load_explicit(&b->bytes, memory_order_relaxed));
    seg *s = atomic_load_explicit(&b->head.next, memory_order_acquire);
    while (s) {
        seg *nx = atomic_load_explicit(&s->next, memory_order_acquire);
        free(s->w);
        pd_free(s);
        s = nx;
    }
    free(b->head.w);
    pd_free(b);
}

int pd_bloom_may_contain(const pd_bloom *b, uint64_t h)
{
    for (const seg *s = &b->head; s; s = atomic_load_explicit(&s->next, memory_order_acquire))
        if (seg_has(s, b->k, h)) return 1;
    return 0;
}

/* Appends a segment after the full tail t, if the budget has room and no
 * other adder did it first. */
static void grow(pd_bloom *b, seg *t)
{
    if (atomic_load_explicit(&t->next, memory_order_relaxed)) return;
    uint64_t nblocks = seg_blocks(t->cap * GROWTH, b->bits_per_key);
    size_t bytes = seg_size(nblocks);
    if (!budget_take(b->budget, bytes)) return;
    seg *s = pd_malloc(sizeof *s);
    seg_init(s, nblocks, b->bits_per_key);
    seg *none = NULL;
    if (atomic_compare_exchange_strong_explicit(&t->next, &none, s, memory_order_release,
                                                memory_order_relaxed)) {
        atomic_store_explicit(&b->tail, s, memory_order_release);
        atomic_fetch_add_explicit(&b->bytes, bytes, memory_order_relaxed);
    } else {
        budget_give(b->budget, bytes);
        free(s->w);
        pd_free(s);
    }
}

int pd_bloom_add(pd_bloom *b, uint64_t h)
{
    if (pd_bloom_may_contain(b, h)) return 0;
    seg *t = atomic_load_explicit(&b->tail, memory_order_acquire);
    if (!seg_set(t, b->k, h)) return 0;
    if (atomic_fetch_add_explicit(&t->n, 1, memory_order_relaxed) + 1 == t->cap) grow(b, t);
    return 1;
}

uint64_t pd_bloom_count(const pd_bloom *b)
{
    uint64_t n = 0;
    for (const seg *s = &b->head; s; s = atomic_load_explicit(&s->next, memory_order_acquire))
        n += atomic_load_explicit(&s->n, memory_order_relaxed);
    return n;
}

int pd_bloom_overfull(const pd_bloom *b)
{
    const seg *t = atomic_load_explicit(&b->tail, memory_order_acquire);
    return atomic_load_explicit(&t->n, memory_order_relaxed) > t->cap;
}

size_t pd_bloom_bytes(const pd_bloom *b)
{
    return atomic_load_explicit(&b->bytes, memory_order_relaxed);
}

/*
 * catset.h -- capped categorical counts: the count per value of one
 * dimension (or of the event types) for one user-day. Pure code, no I/O.
 *
 * Up to the cap (the dimension's max_values) a catset is EXACT: every value
 * seen, with its exact count. A catset that has seen more distinct values
 * than its cap is OVERFLOWED, for good: it keeps
 *   - a Count-Min sketch (sketch.h) of every occurrence, built from the
 *     exact counts at the moment of overflow and added to from then on;
 *   - exactly `cap` values, the best by the selection order
 *         level (sketch.h; higher first), then XXH3-64(value), then the
 *         value bytes (memcmp, shorter first)
 *     among every value ever seen, where a value's level is the largest
 *     level of its occurrences: heavy values draw many levels and win.
 * A kept value's count is then the sketch's estimate (never below the true
 * count), "__other__" is total - (sum of the estimates), at least 0, and
 * the total stays exact. The state is a function of the multiset of
 * occurrences alone (docs/data-model.md, "The categorical cap", has the
 * proof): add in any order and merge in any grouping give identical
 * catsets, byte for byte once encoded.
 *
 * Each value also carries its level while the catset is exact, so that an
 * exact catset merged into an overflowed one competes by the same rule.
 *
 * Ownership: a catset owns its values (inline or heap copies) and its
 * sketch. Value pointers (pd_catval_str) are valid until the catset
 * changes.
 */
#ifndef PD_CATSET_H
#define PD_CATSET_H

#include <stddef.h>
#include <stdint.h>
#include "sketch.h"
#include "util.h"

#define PD_OTHER "__other__"

/* A kept value. Its bytes (NUL-terminated) are stored inline when len <=
 * PD_CATVAL_INLINE -- almost every attribute value -- and in an owned heap
 * copy otherwise, so adding, merging and decoding values does not allocate
 * per value. */
#define PD_CATVAL_INLINE 23
typedef struct {
    uint64_t hash;    /* XXH3_64bits(bytes, len) */
    uint64_t count;   /* exact catsets: the count; overflowed: unused (0), see pd_catset_count */
    uint32_t len;
    uint8_t level;    /* the largest occurrence level (sketch.h) */
    union {
        char *heap;                       /* len > PD_CATVAL_INLINE: owned */
        char inl[PD_CATVAL_INLINE + 1];   /* len <= PD_CATVAL_INLINE */
    } u;
} pd_catval;

static inline const char *pd_catval_str(const pd_catval *x)
{
    return x->len <= PD_CATVAL_INLINE ? x->u.inl : x->u.heap;
}

typedef struct {
    uint32_t n, cap;   /* values kept; slots allocated */
    pd_catval *vals;   /* sorted by (hash, bytes), strictly */
    uint64_t total;    /* occurrences counted, exact */
    uint64_t *sk;      /* NULL: exact; else PD_SKETCH_ROWS x skw counters (owned) */
    uint32_t skw;      /* sketch width (pd_sketch_width of the cap) */
    uint32_t worst;    /* overflowed: index of the value the next better one evicts */
} pd_catset;

static inline int pd_catset_overflowed(const pd_catset *c) { return c->sk != NULL; }

void pd_catset_free(pd_catset *c);
/* Empties c, keeping its value array for reuse (the sketch is freed). */
void pd_catset_clear(pd_catset *c);
size_t pd_catset_mem_bytes(const pd_catset *c);

/* One occurrence of v[0..len) (borrowed; copied when kept) in the event
 * with occurrence key okey; max is the cap (>= 1). */
void pd_catset_add(pd_catset *c, uint32_t max, const char *v, uint32_t len, uint64_t okey);
/* d += s, both with cap max; d and s distinct. */
void pd_catset_merge(pd_catset *d, const pd_catset *s, uint32_t max);
int pd_catset_equal(const pd_catset *a, const pd_catset *b);

/* Count of the i-th kept value: exact, or the sketch's estimate. */
uint64_t pd_catset_count(const pd_catset *c, uint32_t i);
/* Count of v if kept, else 0. */
uint64_t pd_catset_get(const pd_catset *c, const char *v, size_t len);
/* Every occurrence counted (exact). */
uint64_t pd_catset_total(const pd_catset *c);
/* "__other__": 0 when exact; else max(0, total - sum of the kept counts). */
uint64_t pd_catset_other(const pd_catset *c);

/* ---- codec (docs/data-model.md, value encoding version 3) ----
 *   catset := mode | n | n x (len, bytes, [count: mode 0 only], level u8)
 *             | mode 1 only: k, k x (gap, count) -- the non-zero sketch
 *               counters in flat index order (row * width + bucket),
 *               gap = index - previous index - 1 (the first: its index)
 *   mode 0 = exact, 1 = overflowed; all integers LEB128 uvarints. */

/* A bounds-checked reader over an encoded value. */
typedef struct {
    const uint8_t *p;
    size_t n, off;
    char *err;
    size_t errlen;
} pd_rd;
/* PD_ECORRUPT with "profile: corrupt at byte N: what". */
int pd_rd_fail(pd_rd *r, const char *what);
/* A minimal uvarint. */
int pd_rd_uv(pd_rd *r, uint64_t *v, const char *what);

/* Upper bound of pd_catset_write's output. */
size_t pd_catset_bound(const pd_catset *c);
uint8_t *pd_catset_write(uint8_t *o, const pd_catset *c);
/* Upper bound and writer of the catset of one occurrence. */
#define PD_CATSET1_BOUND(len) (3 * PD_UVARINT_MAX + (size_t)(len) + 2)
uint8_t *pd_catset_write1(uint8_t *o, const char *v, uint32_t len, uint64_t okey);
/* Decodes into c (empty; capacity reused), validating every field: values
 * 1..maxlen bytes of UTF-8 in strictly increasing (hash, bytes) order,
 * counts >= 1, n <= max (exact) or n == max (overflowed), sketch rows of
 * equal sums with total > max and every kept value estimated >= 1. On
 * error c may hold partial content: the caller clears it. */
int pd_catset_read(pd_rd *r, pd_catset *c, uint32_t max, uint32_t maxlen);

#endif

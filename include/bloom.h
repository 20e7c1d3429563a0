/*
 * bloom.h -- a growable, concurrent, cache-blocked Bloom filter of 64-bit
 * key hashes.
 *
 * The store keeps one per day family ("which users have a profile on this
 * day"), so a range query asks RocksDB only for the days a user may have
 * data on (see store.c, "Day filters").
 *
 * Semantics: pd_bloom_may_contain(h) is 1 for every h added before (no
 * false negatives) and 1 for about 1 % of the others at the default 10 bits
 * per key (false positives). Nothing is ever removed.
 *
 * Growth: the filter is a chain of segments; when the newest one holds its
 * capacity of distinct hashes, an adder appends one four times as large.
 * A lookup probes every segment (one cache line each), so a filter that
 * was sized well from the start stays at one or two segments.
 *
 * Budget: filters may share a pd_bloom_budget (a byte limit). A filter
 * whose first segment does not fit is not created; a growth that does not
 * fit is skipped, and the full newest segment keeps taking keys: more false
 * positives (their rate rises toward 1 as keys pile up), still no false
 * negatives. pd_bloom_overfull tells when that happened.
 *
 * Threads: any number of threads may add and look up concurrently without
 * locks (bits are set with atomic OR; a new segment is published with a
 * release store). A bit set by pd_bloom_add is visible to a lookup that
 * happens after it (for example through a release/acquire pair the caller
 * provides). pd_bloom_free needs every other user to be done.
 */
#ifndef PD_BLOOM_H
#define PD_BLOOM_H

#include <stddef.h>
#include <stdint.h>

typedef struct pd_bloom pd_bloom;

/* Bytes shared by a set of filters. The caller owns it, sets `limit`
 * (0 = unlimited) and zeroes `used` before the first filter and keeps it
 * alive until the last filter using it is freed. `used` is what those
 * filters hold (bit arrays and headers). */
typedef struct pd_bloom_budget {
    _Atomic size_t used;
    size_t limit;
} pd_bloom_budget;

/* A filter sized for `expected` distinct hashes (at least 1024) at
 * bits_per_key (clamped to 4..32), its memory counted against `budget`
 * (NULL: unlimited). NULL when the budget cannot hold it; otherwise free
 * with pd_bloom_free, which gives its bytes back to the budget. */
pd_bloom *pd_bloom_new(uint64_t expected, int bits_per_key, pd_bloom_budget *budget);
void pd_bloom_free(pd_bloom *b);

/* Adds h. Returns 1 when h was not (probably) in the filter before. */
int pd_bloom_add(pd_bloom *b, uint64_t h);
int pd_bloom_may_contain(const pd_bloom *b, uint64_t h);

/* Distinct hashes added (approximate: a false positive is not counted). */
uint64_t pd_bloom_count(const pd_bloom *b);
/* 1 when the newest segment holds more than its capacity (a growth did not
 * fit the budget): the false-positive rate is above the configured one. */
int pd_bloom_overfull(const pd_bloom *b);
/* Bytes allocated for the bit arrays (and segment headers). */
size_t pd_bloom_bytes(const pd_bloom *b);

#endif

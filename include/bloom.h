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

/* A filter sized for `expected` distinct hashes (at least 1024) at
 * bits_per_key (clamped to 4..32). Never NULL; free with pd_bloom_free. */
pd_bloom *pd_bloom_new(uint64_t expected, int bits_per_key);
void pd_bloom_free(pd_bloom *b);

/* Adds h. Returns 1 when h was not (probably) in the filter before. */
int pd_bloom_add(pd_bloom *b, uint64_t h);
int pd_bloom_may_contain(const pd_bloom *b, uint64_t h);

/* Distinct hashes added (approximate: a false positive is not counted). */
uint64_t pd_bloom_count(const pd_bloom *b);
/* Bytes allocated for the bit arrays (and segment headers). */
size_t pd_bloom_bytes(const pd_bloom *b);

#endif

/*
 * sketch.h -- the two hash-based pieces of the categorical cap (catset.h):
 * occurrence levels, which decide which values a capped catset keeps, and
 * the Count-Min sketch that counts every value of an overflowed catset.
 * Pure functions, no state; every hash has a fixed seed, so every worker,
 * replica and replay (and tests/oracle.py) computes the same numbers.
 *
 * Occurrence key and level. Every event has an occurrence key (okey):
 * XXH3-64 of "i" + event_id when it has an id, else of "t" + ts (8 bytes,
 * big-endian two's complement) + type. One occurrence of value v in an
 * event draws u = XXH3-64(v, seed = okey), a uniform 64-bit number, and
 * gets the level
 *     L(u) = min(255, 8 * clz(u) + 7 - m)   (255 when u = 0)
 * where m is the three bits after u's leading one: -log2(u / 2^64) in
 * eighths of an octave, rounded down. A value's level in a set of events
 * is the largest level of its occurrences, i.e. L of the smallest u. A
 * value seen c times (in c different events) has the minimum of c uniform
 * draws, about 1/(c+1): the level grows like 8 log2(c), so heavy values
 * have high levels. (Two events with the same okey draw the same u: the
 * same event delivered twice adds counts but no chance.)
 *
 * Count-Min sketch. PD_SKETCH_ROWS rows of w counters (w a power of two,
 * pd_sketch_width); value v adds its count to one counter per row, at
 * bucket r = bits [32r, 32r+32) of XXH3-128(v, seed = PD_SKETCH_SEED)
 * (the 128-bit value as high << 64 | low) modulo w, and is estimated by
 * the smallest of its counters: never below its true count, and above it
 * by at most e*N/w (N = the catset total) with probability >= 1 - e^-4
 * (98 %). Counters add, so sketches merge exactly by addition.
 */
#ifndef PD_SKETCH_H
#define PD_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#define PD_SKETCH_ROWS 4
#define PD_SKETCH_SEED UINT64_C(0x70726f66696c6564) /* "profiled" */
#define PD_SKETCH_MIN_WIDTH 64u
#define PD_SKETCH_MAX_WIDTH 131072u

/* Occurrence key of an event (see above). event_id NULL/0: none. */
uint64_t pd_okey(const char *event_id, size_t idlen, int64_t ts_ms, const char *type, size_t tlen);
/* Level of one occurrence of v[0..len) in the event with key okey. */
uint8_t pd_occ_level(uint64_t okey, const char *v, size_t len);
/* Sketch width for a cap: the power of two >= 2 * cap, within
 * [PD_SKETCH_MIN_WIDTH, PD_SKETCH_MAX_WIDTH]. */
uint32_t pd_sketch_width(uint32_t cap);
/* The counter of v in each row, as flat indices row * w + bucket. */
void pd_sketch_cells(const char *v, size_t len, uint32_t w, uint32_t cell[PD_SKETCH_ROWS]);
/* The estimate of v: the smallest of its counters in sk (ROWS x w). */
uint64_t pd_sketch_estimate(const uint64_t *sk, uint32_t w, const char *v, size_t len);

#endif

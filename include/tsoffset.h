/*
 * tsoffset.h -- the offset of a partition's first record stamped at or
 * after a time, "trust but verify" (used to resolve an imported
 * partition's start time, store.h "Imported stores").
 *
 * Kafka's definition (ListOffsets by timestamp): the first offset, in
 * offset order, whose record timestamp is >= target; the end of the
 * partition (high watermark) when there is none. Record timestamps need
 * not grow with offsets (CreateTime is the producer's clock).
 *
 * The resolution asks Kafka (rd_kafka_offsets_for_times) and checks its
 * answer O against the records next to it: the record at O-1 (when O is
 * above the low watermark) must be stamped < target, the first record at
 * or after O (when O is below the high watermark) >= target. A broker that
 * answers "none" (-1) for every lookup (librdkafka's mock cluster), or a
 * topic whose message format has no timestamps, fails that check or the
 * lookup itself; the fallback is a linear scan from the low watermark
 * reading only record timestamps (no parsing) up to the first record
 * stamped >= target. The check looks at the boundary only: with
 * non-monotonic timestamps it cannot prove that no record before O-1 is
 * stamped >= target -- it catches a wrong answer, it does not re-derive
 * the right one (the scan does).
 *
 * A record without a timestamp counts as stamped at or after the target
 * (nothing proves its events are older): a scan stops at it.
 *
 * Ownership: pd_tsoff_resolve creates and destroys its own group-less
 * consumer (the worker's client settings and kafka.* passthrough); it
 * borrows cfg and stop. It blocks the calling thread, every wait bounded.
 */
#ifndef PD_TSOFFSET_H
#define PD_TSOFFSET_H

#include "config.h"

#include <signal.h>
#include <stdint.h>

/* 1 when a record stamped ts (-1: none) counts as at or after target. */
int pd_tsoff_at_or_after(int64_t ts, int64_t target);

/* The check of Kafka's answer o (-1 = none, i.e. hi) for a partition
 * holding offsets [lo, hi). pd_tsoff_plan says what to fetch: *from (the
 * first offset to read) and *need (0, 1 or 2 records); PD_ERANGE when o
 * lies outside [lo, hi] (unverifiable). pd_tsoff_check judges the
 * records read from *from on (n of them, offsets and timestamps in
 * delivery order): NULL when they confirm o, otherwise why not (a static
 * string). */
int pd_tsoff_plan(int64_t lo, int64_t hi, int64_t o, int64_t *from, int *need);
const char *pd_tsoff_check(int64_t lo, int64_t hi, int64_t o, const int64_t *offs, const int64_t *ts, int n,
                           int64_t target);

typedef struct {
    int64_t offset;    /* the answer */
    int scanned;       /* 1: by the fallback scan (Kafka's answer absent or refuted) */
    char why[256];     /* why the scan was needed (scanned = 1) */
    int64_t records;   /* records read (check and scan) */
    int64_t lo, hi;    /* the watermarks used */
} pd_tsoff_result;

/* Resolves target for topic/partition (see above). The scan gives up
 * after scan_timeout_ms (and as soon as *stop is set, may be NULL),
 * logging progress every few seconds. PD_OK with *out filled; PD_EAGAIN
 * (err set) when Kafka did not answer (watermarks, the fetches) or the
 * scan ran out of time; nothing is guessed. */
int pd_tsoff_resolve(const pd_config *cfg, const char *topic, int32_t partition, int64_t target,
                     int64_t scan_timeout_ms, volatile sig_atomic_t *stop, pd_tsoff_result *out, char *err,
                     size_t errlen);

#endif

/*
 * dlq.h -- the side effects of ingestion that leave the process: records
 * sent to the dead-letter topic and misrouted events re-produced to the
 * partition they belong to, through one idempotent producer.
 *
 * Exactly-once (ingest.c): these are produced before the commit that moves
 * the checkpoint past their source record, and the flush waits for their
 * delivery (pd_dlq_wait). A crash in between produces them again: the DLQ
 * is at-least-once (its records carry source_partition/source_offset
 * headers to de-duplicate on), re-produced events are de-duplicated by
 * event_id or by their "profiled-origin" header.
 *
 * Threads and ownership: one pd_dlq belongs to the ingest thread; delivery
 * reports run on it too (pd_dlq_poll, pd_dlq_wait). Keys, values and
 * details passed in are copied.
 */
#ifndef PD_DLQ_H
#define PD_DLQ_H

#include "config.h"
#include "metrics.h"

#include <signal.h>

#define PD_DLQ_MAX_DETAIL 256 /* bytes of a detail kept (longer ones are cut) */
/* Room left in a DLQ record for everything but the value (key, headers,
 * framing): the value is cut to the producer's message.max.bytes (default
 * 1,000,000) minus this, so an oversized bad record still reaches the DLQ. */
#define PD_DLQ_RECORD_SLACK 8192

typedef struct pd_dlq pd_dlq;

/* With kafka != 0 creates the producer; otherwise (replay mode) records
 * are only counted. *stop is the worker's stop flag: a queue-full retry
 * gives up when it is set, pd_dlq_wait bounds its wait by it. */
int pd_dlq_new(pd_dlq **out, const pd_config *cfg, pd_metrics *m, volatile sig_atomic_t *stop, int kafka,
               char *err, size_t errlen);
/* Sends the record (partition, offset, rec_ts < 0 = unknown) to the DLQ
 * with reason (PD_EV_*) and detail (PD_DLQ_MAX_DETAIL bytes at most); counts it
 * in events_dlq[reason]. A value too large for one record is cut to its
 * first bytes and the record gets a "truncated" header with the original
 * size in bytes. */
void pd_dlq_send(pd_dlq *d, int reason, const char *detail, int32_t partition, int64_t offset, int64_t rec_ts,
                 const void *key, size_t keylen, const void *val, size_t vallen);
/* Re-produces the record at (partition, offset) of the input topic to
 * partition `to`, keyed by user, with its origin header. */
void pd_dlq_reproduce(pd_dlq *d, int32_t to, int32_t partition, int64_t offset, const char *user, size_t ulen,
                      const void *val, size_t vallen);
/* Serves delivery reports without blocking. */
void pd_dlq_poll(pd_dlq *d);
/* Waits until every record produced so far is delivered (or failed for
 * good). PD_EAGAIN when stopping cut the wait short. */
int pd_dlq_wait(pd_dlq *d);
/* Final flush at shutdown, bounded by timeout_ms. */
void pd_dlq_flush(pd_dlq *d, int timeout_ms);
void pd_dlq_free(pd_dlq *d);

#endif

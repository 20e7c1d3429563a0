/*
 * ingest.h -- the exactly-once ingestion loop of one worker.
 *
 * The worker joins the consumer group (cooperative-sticky), starts each
 * assigned partition at the offset checkpointed in its store, pre-aggregates
 * events per (partition, day, user) in memory, and every commit_interval_ms
 * or batch_max_events (or sooner, once its input is drained: at most every
 * commit_min_interval_ms) writes one WriteBatch holding the profile deltas,
 * the de-dup records and the next input offset of every partition it covers.
 * See the design comment in ingest.c for the failure analysis.
 *
 * The record-processing core (pd_ingest_record, pd_ingest_flush) does not
 * depend on Kafka, so a replay source (bench, tests) can drive the same
 * code path.
 */
#ifndef PD_INGEST_H
#define PD_INGEST_H

#include "worker.h"

#include <librdkafka/rdkafka.h>

typedef struct pd_ingest pd_ingest;

/* Creates the consumer and the DLQ/misroute producer and subscribes.
 * With kafka == 0 no Kafka client is created (replay mode: feed records
 * with pd_ingest_record and partitions with pd_ingest_assign_local). */
int pd_ingest_new(pd_ingest **out, pd_worker *w, int kafka, char *err, size_t errlen);
/* Benchmarks only (bench_process --population 0): on == 0 stops writing
 * population profiles (batch.h), to measure what maintaining them costs.
 * The stored population is then incomplete; never in a worker. */
void pd_ingest_set_population(pd_ingest *ig, int on);
/* Runs the consume loop until w->stop is set. Returns PD_OK or an error
 * that made the worker unable to continue (store failure). */
int pd_ingest_run(pd_ingest *ig);
/* Orderly end: flushes the batch, commits, leaves the group, flushes the
 * producer. Safe after a failed run. Does not free ig. */
void pd_ingest_close(pd_ingest *ig);
/* Hands the closed consumers (group, replica; NULL when absent) to the
 * caller, who destroys them with pd_kafka_destroy_consumers after the
 * store is closed: librdkafka 2.0.2 can abort in that destroy (kafka.h),
 * so it must come after everything durable. Call after pd_ingest_close. */
void pd_ingest_take_consumers(pd_ingest *ig, rd_kafka_t **group, rd_kafka_t **replica);
/* Destroys the Kafka clients still held and frees ig (closing it first
 * if needed). */
void pd_ingest_free(pd_ingest *ig);

/* ---- the Kafka-independent core ---- */
/* Marks partition p owned and loads its checkpoint (replay mode). */
int pd_ingest_assign_local(pd_ingest *ig, int32_t p);
/* Processes one input record. key may be NULL. rec_ts_ms is the record
 * timestamp and rec_ts_type its kind (PD_RECTS_* of rectime.h, equal to
 * librdkafka's rd_kafka_timestamp_type_t; PD_RECTS_NONE = unknown, then
 * rec_ts_ms is ignored). Bad events go to the DLQ (Kafka mode) or are only
 * counted (replay). */
void pd_ingest_record(pd_ingest *ig, int32_t partition, int64_t offset, int64_t rec_ts_ms, int rec_ts_type,
                      const void *key, size_t keylen, const void *val, size_t vallen,
                      const char *origin, size_t originlen);
/* Processes one control record (erase.h; kind: the "profiled-control"
 * header's value): an erasure is applied to the batch at this position, a
 * malformed one goes to the DLQ. rec_ts < 0: unknown. key may be NULL. */
void pd_ingest_control(pd_ingest *ig, int32_t partition, int64_t offset, int64_t rec_ts_ms, const void *key,
                       size_t keylen, const void *val, size_t vallen, const char *kind, size_t kindlen);
/* The wall clock the future bound reads (rectime.h): now_ms, or pd_now_ms
 * when NULL (the default). For tests that decide at a given time. */
void pd_ingest_set_wall_clock(pd_ingest *ig, int64_t (*now_ms)(void));
/* Commits the current batch (one WriteBatch) and returns when it is
 * durable (after finishing a commit still in flight). */
int pd_ingest_flush(pd_ingest *ig, char *err, size_t errlen);
/* Like pd_ingest_flush, but returns once the WriteBatch is built and handed
 * to the committer thread: the caller goes on with the next batch while it
 * is written (the next flush, or pd_ingest_flush, finishes it). A failed
 * commit stops the worker (see "committing" in ingest.c). */
int pd_ingest_flush_async(pd_ingest *ig, char *err, size_t errlen);
/* Events currently pre-aggregated and not yet committed. */
uint64_t pd_ingest_pending(const pd_ingest *ig);

#endif

/*
 * rectime.h -- what a Kafka record's timestamps may be trusted for: the
 * bound that keeps one record from moving a partition's clock, and the
 * delivery time the de-dup window is measured on (dedup.h). Pure: no I/O;
 * the caller passes the worker's wall clock.
 *
 * The record timestamp r comes in three kinds (rd_kafka_message_timestamp):
 *   LogAppendTime  set by the broker when it appended the record: in the
 *                  log and out of the producer's reach;
 *   CreateTime     set by the producer: in the log, but anyone who can
 *                  produce can write any value (year 2199 included);
 *   none           message format v0 (Kafka < 0.10), or a replay source.
 *
 * Admission (S = max_future_skew, t = the event's ts, W = the worker's
 * wall clock when it decides):
 *   1. CreateTime and r > W + S                   -> "future_timestamp"
 *   2. bound B = r (LogAppendTime), min(r, W) (CreateTime), W (none);
 *      t > B + S                                  -> "future_ts"
 * So an accepted event is never more than S ahead of the broker's clock
 * (LogAppendTime) or of the deciding worker's clock: one record moves the
 * partition clock (the newest event time, which drives retention) at most
 * S past real time, however it was forged -- as far as an honest producer
 * with a clock S fast always could.
 *
 * Determinism. With LogAppendTime both checks read only the log: every
 * replica, replay, restart and rebuild decides alike. With CreateTime (the
 * embedded broker's only kind, and Kafka's default) no rule that reads
 * only the log can stop a forger -- whatever the log holds, the forger
 * wrote -- so the worker's clock is the bound. It decides only records
 * whose r or t is more than S ahead of the deciding worker's clock; for
 * every other record W drops out (r <= W + S holds, and t > min(r, W) + S
 * is t > r + S) and the decision is the log's. The only records two
 * decisions can disagree on are therefore those whose producer clock was
 * more than S ahead when they were first ingested (or forged): rejected
 * then (DLQ), they may be accepted by a later decision once real time has
 * caught up (a rebuild from the topic, a restart that re-reads them before
 * their batch was committed, a replica whose clock or lag differs at the
 * boundary). The rules are monotone in W, so a later decision never
 * rejects what an earlier one accepted (for clocks that agree). That is
 * the price of a bound the producer cannot move, and it is paid only for
 * records that broke the documented skew; the DLQ holds them with the
 * reason. Topics with message.timestamp.type=LogAppendTime pay nothing.
 *
 * Delivery time (the de-dup window's measure, dedup.h): r for CreateTime
 * and LogAppendTime (bounded by rule 1), t for records without one.
 */
#ifndef PD_RECTIME_H
#define PD_RECTIME_H

#include <stddef.h>
#include <stdint.h>

/* The kind of a record timestamp (librdkafka's rd_kafka_timestamp_type_t
 * values, so they convert as they are). */
enum { PD_RECTS_NONE = 0, PD_RECTS_CREATE = 1, PD_RECTS_APPEND = 2 };

/* The admission decision for an event with time ts_ms in a record with
 * timestamp rec_ts of kind `kind`, decided at wall clock wall_ms with skew
 * S: PD_EV_OK (0), PD_EV_FUTURE_TIMESTAMP or PD_EV_FUTURE_TS (event.h),
 * with a message in err on rejection. */
int pd_rectime_check(int kind, int64_t rec_ts, int64_t ts_ms, int64_t wall_ms, int64_t skew_ms, char *err,
                     size_t errlen);
/* True when the decision above can depend on wall_ms at all (only then
 * does a caller need a fresh clock to confirm a rejection). */
int pd_rectime_uses_wall(int kind);
/* The delivery time the de-dup window is measured on. */
int64_t pd_rectime_delivery(int kind, int64_t rec_ts, int64_t ts_ms);

#endif

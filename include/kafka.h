/*
 * kafka.h -- the Kafka client plumbing of ingestion: client configurations
 * (the settings every client shares, the consumers' settings, the kafka.*
 * passthrough applied last so operators can override anything), topic
 * metadata, and the destroy of closed clients.
 *
 * Ownership: a rd_kafka_conf_t returned here belongs to the caller until it
 * is passed to rd_kafka_new (which takes it) or rd_kafka_conf_destroy. The
 * configuration borrows nothing: values are copied by librdkafka.
 */
#ifndef PD_KAFKA_H
#define PD_KAFKA_H

#include "config.h"
#include "util.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>

/* Sets k = v in c; PD_EINVAL with "kafka.<k>: why" in err (may be NULL). */
int pd_kafka_conf_set(rd_kafka_conf_t *c, const char *k, const char *v, char *err, size_t errlen);
/* A configuration with the brokers, client id and log callback of cfg;
 * NULL (err set) when the brokers are rejected. */
rd_kafka_conf_t *pd_kafka_conf_base(const pd_config *cfg, char *err, size_t errlen);
/* Applies the kafka.* settings of cfg; PD_EINVAL (err set) on a bad one. */
int pd_kafka_conf_passthrough(rd_kafka_conf_t *c, const pd_config *cfg, char *err, size_t errlen);
/* A consumer configuration: the settings both consumers share (no auto
 * commit or offset store -- the store holds the offsets -- bounded fetch
 * wait, no EOF events), group_id and reset, then `extra` (NULL-terminated
 * key/value pairs), opaque and error_cb, then the passthrough. NULL (err
 * set) on a bad passthrough setting. */
rd_kafka_conf_t *pd_kafka_conf_consumer(const pd_config *cfg, const char *group_id, const char *reset,
                                        const char *const *extra, void *opaque,
                                        void (*error_cb)(rd_kafka_t *, int, const char *, void *), char *err,
                                        size_t errlen);
/* The number of partitions of topic, asking up to `attempts` times (each
 * up to 2.2 s while the brokers do not answer; 50 is about 110 s).
 * PD_ENOTFOUND when the topic does not exist (about 2 s), unless
 * kafka.allow.auto.create.topics=true lets the broker create it; PD_EAGAIN
 * when no answer came, or as soon as *stop (may be NULL) is set. */
int pd_kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int attempts, volatile sig_atomic_t *stop,
                              int32_t *n, char *err, size_t errlen);
/* The partition numbers of parts ("0,2,3", "none" when empty) in buf
 * (len >= 16); returns buf or a static string. */
const char *pd_kafka_part_list(const rd_kafka_topic_partition_list_t *parts, char *buf, size_t len);
/* Destroys closed consumers (NULLs allowed). librdkafka 2.0.2 (Debian
 * bookworm) can assert in rd_kafka_destroy() of a cooperative-sticky
 * consumer whose assignor state was never set (librdkafka issue #4312,
 * fixed in 2.3.0): in rd_kafka_cgrp_destroy_final, when the JoinGroup
 * answer came but the first SyncGroup answer did not (a worker stopped
 * while its first rebalance is in flight). In 2.0.2 the only other call
 * of that destroy is a JoinGroup whose protocol changed, which a group of
 * profiled workers never sees. So the destroy comes last in profiled's
 * shutdown, when everything durable is done (batch committed, group left,
 * departure announced, store closed), and an abort there is turned into a
 * clean exit (status 0). */
void pd_kafka_destroy_consumers(rd_kafka_t *a, rd_kafka_t *b);

#endif

/*
 * bench_consume.c -- the raw-consumption reference for `make bench`: a plain
 * librdkafka consumer that reads every partition of a topic from the
 * beginning up to the high watermark seen at start and discards the records.
 *
 * Usage: bench_consume --brokers B --topic T [--timeout_ms N]
 * Prints one JSON object: records, bytes, secs (from the assignment to the
 * last record), eps. Assign mode (no group join), consume_batch_queue with
 * the same batch size (1024) as the worker's loop, default fetch settings
 * (the worker uses librdkafka's defaults too).
 */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

int main(int argc, char **argv)
{
    const char *brokers = arg(argc, argv, "--brokers", NULL);
    const char *topic = arg(argc, argv, "--topic", "events");
    double timeout = atof(arg(argc, argv, "--timeout_ms", "120000")) / 1000.0;
    char err[512];
    int rc = 1;
    if (!brokers) {
        fprintf(stderr, "usage: bench_consume --brokers B --topic T [--timeout_ms N]\n");
        return 2;
    }
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof err) ||
        rd_kafka_conf_set(c, "group.id", "bench-raw", err, sizeof err) ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err) ||
        rd_kafka_conf_set(c, "enable.partition.eof", "false", err, sizeof err)) {
        fprintf(stderr, "bench_consume: %s\n", err);
        rd_kafka_conf_destroy(c);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "bench_consume: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "bench_consume: metadata: %s\n", rd_kafka_err2str(e ? e : md->topics[0].err));
        if (md) rd_kafka_metadata_destroy(md);
        goto out;
    }
    int np = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    int64_t *hi = calloc((size_t)np, sizeof *hi), *pos = calloc((size_t)np, sizeof *pos);
    int64_t total = 0, high_sum = 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) {
        int64_t lo = 0;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi[p], 10000)) {
            fprintf(stderr, "bench_consume: watermarks of %d failed\n", p);
            goto out2;
        }
        pos[p] = lo;
        total += hi[p] - lo;
        high_sum += hi[p];
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
    double t0 = now_s(), tlast = t0;
    rd_kafka_assign(rk, l);
    int64_t got = 0, bytes = 0;
    int left = 0;
    for (int p = 0; p < np; p++) left += pos[p] < hi[p];
    enum { NB = 1024 };
    rd_kafka_message_t *msgs[NB];
    while (left > 0 && now_s() - t0 < timeout) {
        ssize_t n = rd_kafka_consume_batch_queue(q, 100, msgs, NB);
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (!m->err && m->partition >= 0 && m->partition < np) {
                got++;
                bytes += (int64_t)m->len;
                if (pos[m->partition] < hi[m->partition] && m->offset + 1 >= hi[m->partition]) left--;
                pos[m->partition] = m->offset + 1;
                tlast = now_s();
            }
            rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_queue_destroy(q);
    double secs = tlast - t0;
    printf("{\"records\":%" PRId64 ",\"expected\":%" PRId64 ",\"bytes\":%" PRId64
           ",\"high_sum\":%" PRId64 ",\"secs\":%.4f,\"eps\":%.0f,\"complete\":%s}\n",
           got, total, bytes, high_sum, secs, secs > 0 ? (double)got / secs : 0.0, left == 0 ? "true" : "false");
    rc = left == 0 ? 0 : 1;
out2:
    rd_kafka_topic_partition_list_destroy(l);
    free(hi);
    free(pos);
out:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

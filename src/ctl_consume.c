/*
 * ctl_consume.c -- `profilectl consume`: print the records of a topic (for
 * example the dead-letter topic) as JSON lines, with headers.
 *
 * It reads in assign mode (no consumer group, commits nothing), from the
 * beginning of each partition up to the high watermark observed at start,
 * then exits -- so it is safe to run against a live topic and always ends.
 * --follow keeps reading new records until interrupted or --timeout-ms.
 */
#include "config.h"
#include "ctl.h"
#include "util.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *brokers;
    char *topic;
    int64_t partition;
    int64_t count;
    int64_t timeout_ms;
    int follow;
    int watermarks;
} consume_opts;

#define OFF(f) offsetof(consume_opts, f)
static const pd_opt consume_table[] = {
    {"brokers", PD_OPT_STR, OFF(brokers), "localhost:9092", 1, 0, "Kafka bootstrap servers."},
    {"topic", PD_OPT_STR, OFF(topic), "", 1, 0, "Topic to read (required)."},
    {"partition", PD_OPT_INT, OFF(partition), "-1", -1, 65535, "Only this partition (-1 = all)."},
    {"count", PD_OPT_INT, OFF(count), "0", 0, 1e12, "Stop after this many records (0 = no limit)."},
    {"timeout_ms", PD_OPT_INT, OFF(timeout_ms), "30000", 100, 86400000, "Give up after this long."},
    {"follow", PD_OPT_BOOL, OFF(follow), "false", 1, 0, "Keep reading new records instead of stopping at the end."},
    {"watermarks", PD_OPT_BOOL, OFF(watermarks), "false", 1, 0, "Only print each partition's low/high watermark offsets."},
};
#define NOPTS (sizeof consume_table / sizeof consume_table[0])

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static void put_base64(pd_buf *b, const unsigned char *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pd_buf_putc(b, '"');
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        char q[4] = {tbl[v >> 18], tbl[(v >> 12) & 63], i + 1 < n ? tbl[(v >> 6) & 63] : '=', i + 2 < n ? tbl[v & 63] : '='};
        pd_buf_append(b, q, 4);
    }
    pd_buf_putc(b, '"');
}

/* Values and keys print as JSON strings when they are UTF-8, else as
 * "value_base64" / "key_base64". */
static void put_bytes(pd_buf *b, const char *name, const void *p, size_t n)
{
    pd_buf_printf(b, ",\"%s", name);
    if (!p) {
        PD_BUF_LIT(b, "\":null");
    } else if (pd_utf8_valid(p, n)) {
        PD_BUF_LIT(b, "\":");
        pd_buf_json_str(b, p, n);
    } else {
        PD_BUF_LIT(b, "_base64\":");
        put_base64(b, p, n);
    }
}

static void print_record(const rd_kafka_message_t *m, pd_buf *b)
{
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    b->len = 0;
    pd_buf_printf(b, "{\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"timestamp\":%" PRId64,
                  m->partition, m->offset, tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts);
    put_bytes(b, "key", m->key, m->key_len);
    put_bytes(b, "value", m->payload, m->len);
    PD_BUF_LIT(b, ",\"headers\":{");
    rd_kafka_headers_t *h;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t vl;
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
            if (i) pd_buf_putc(b, ',');
            pd_buf_json_str(b, name, strlen(name));
            pd_buf_putc(b, ':');
            if (val) pd_buf_json_str(b, val, vl);
            else PD_BUF_LIT(b, "null");
        }
    }
    PD_BUF_LIT(b, "}}\n");
    fwrite(b->p, 1, b->len, stdout);
}

int ctl_consume_main(int argc, char **argv)
{
    consume_opts o;
    char err[512];
    int rc = 1;
    memset(&o, 0, sizeof o);
    pd_opts_defaults(consume_table, NOPTS, &o);
    int help = 0;
    pd_argv_extra ex = {0};
    if (pd_opts_parse_argv(consume_table, NOPTS, &o, argc, argv, &ex, &help, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl consume: %s (see --help)\n", err);
        pd_opts_free(consume_table, NOPTS, &o);
        return 2;
    }
    if (help) {
        printf("usage: profilectl consume --brokers B --topic T [flags]\n\n"
               "Prints a topic's records (key, value, headers) as JSON lines, from the\n"
               "beginning up to the end seen at start. Commits nothing.\n\n");
        pd_opts_usage(consume_table, NOPTS, stdout);
        pd_opts_free(consume_table, NOPTS, &o);
        return 0;
    }
    if (!*o.topic) {
        fprintf(stderr, "profilectl consume: --topic is required\n");
        pd_opts_free(consume_table, NOPTS, &o);
        return 2;
    }
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);

    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *tl = NULL;
    const struct rd_kafka_metadata *md = NULL;
    int64_t *ends = NULL, *pos = NULL;
    pd_buf b = {0};
    if (rd_kafka_conf_set(c, "bootstrap.servers", o.brokers, err, sizeof err) ||
        rd_kafka_conf_set(c, "group.id", "profilectl-consume", err, sizeof err) ||
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err) ||
        rd_kafka_conf_set(c, "enable.partition.eof", "false", err, sizeof err)) {
        fprintf(stderr, "profilectl consume: %s\n", err);
        rd_kafka_conf_destroy(c);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "profilectl consume: %s\n", err);
        goto out;
    }
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, o.topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, (int)PD_MIN(o.timeout_ms, 10000));
    rd_kafka_topic_destroy(t);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        fprintf(stderr, "profilectl consume: topic '%s': %s\n", o.topic,
                rd_kafka_err2str(e ? e : md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        goto out;
    }
    int np = md->topics[0].partition_cnt;
    if (o.partition >= np) {
        fprintf(stderr, "profilectl consume: --partition %" PRId64 ": topic has %d partitions\n", o.partition, np);
        rc = 2;
        goto out;
    }
    ends = pd_calloc((size_t)np, sizeof *ends);
    pos = pd_calloc((size_t)np, sizeof *pos);
    tl = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) {
        if (o.partition >= 0 && p != o.partition) continue;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, o.topic, p, &lo, &hi, (int)PD_MIN(o.timeout_ms, 10000));
        if (e) {
            fprintf(stderr, "profilectl consume: watermarks of partition %d: %s\n", p, rd_kafka_err2str(e));
            goto out;
        }
        ends[p] = hi;
        pos[p] = lo;
        if (o.watermarks) {
            printf("{\"partition\":%d,\"low\":%" PRId64 ",\"high\":%" PRId64 "}\n", p, lo, hi);
            continue;
        }
        if (hi > lo || o.follow) rd_kafka_topic_partition_list_add(tl, o.topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    }
    if (o.watermarks) {
        fflush(stdout);
        rc = 0;
        goto out;
    }
    rd_kafka_assign(rk, tl);
    int64_t deadline = pd_mono_us() + o.timeout_ms * 1000, n = 0;
    for (;;) {
        int done = !o.follow;
        for (int p = 0; p < np && done; p++)
            if (pos[p] < ends[p]) done = 0;
        if (done || stop || (o.count && n >= o.count)) break;
        if (pd_mono_us() > deadline) {
            if (!o.follow) {
                fprintf(stderr, "profilectl consume: timed out before reaching the end\n");
                goto out;
            }
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                fprintf(stderr, "profilectl consume: %s\n", rd_kafka_message_errstr(m));
        } else {
            print_record(m, &b);
            n++;
            if (m->partition >= 0 && m->partition < np) pos[m->partition] = m->offset + 1;
        }
        rd_kafka_message_destroy(m);
    }
    fflush(stdout);
    fprintf(stderr, "profilectl consume: %" PRId64 " record(s)\n", n);
    rc = 0;
out:
    pd_buf_free(&b);
    if (tl) rd_kafka_topic_partition_list_destroy(tl);
    if (md) rd_kafka_metadata_destroy(md);
    free(ends);
    free(pos);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    pd_opts_free(consume_table, NOPTS, &o);
    return rc;
}

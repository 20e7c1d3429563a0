/*
 * ctl_produce.c -- `profilectl produce` (events to Kafka) and
 * `profilectl generate` (synthetic events as JSONL on stdout).
 *
 * produce: reads JSONL (--file F, "-" = stdin; lines sent verbatim without
 * the trailing newline; empty lines skipped) or generates --generate N
 * events (gen.h). Each record's key is the event's user_id (extracted with
 * cJSON for --file; NULL key when the line is not an object with a
 * non-empty string user_id), so with partitioner=murmur2_random the
 * partition equals Kafka's Java default partitioner. The record timestamp
 * (CreateTime) is the send time, or with --timestamp_field F the integer
 * value of the line's top-level field F (tests forge timestamps with it). Idempotent producer,
 * acks=all. Delivery reports are counted in a context struct passed as the
 * librdkafka opaque. Stops early (and still flushes) on SIGINT/SIGTERM,
 * which are blocked and polled with sigtimedwait (no global flag).
 *
 * Output: progress once per second on stderr (unless --quiet), then one
 * stdout line "acked=N failed=M"; exit 0 only when nothing failed and all
 * input was sent. Exit 2 on usage errors.
 */
#include "ctl.h"
#include "config.h"
#include "gen.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <librdkafka/rdkafka.h>

#define QUEUE_FULL_RETRIES 600  /* x 100 ms poll = 60 s of back-pressure */
#define FLUSH_TIMEOUT_MS 60000
#define DAY_MS 86400000LL
#define RATE_SLACK_MS 5          /* --rate: how far ahead of schedule before sleeping */

typedef struct {
    char *brokers;
    char *topic;
    char *file;
    int64_t generate;
    int64_t users;
    int64_t days;
    int64_t seed;
    double rate;
    int64_t start_ts;
    double dup_rate;
    double bad_rate;
    double zipf;
    int quiet;
    char *key_field;
    char *timestamp_field;
    int live;
} produce_opts;

#define POFF(f) offsetof(produce_opts, f)
/* Generator options shared by produce and generate (first GEN_OPTS rows). */
static const pd_opt produce_tbl[] = {
    {"users", PD_OPT_INT, POFF(users), "10000", 1, 50000000, "Generated: number of distinct users (Zipf)."},
    {"days", PD_OPT_INT, POFF(days), "7", 1, 36500, "Generated: days spanned by event timestamps."},
    {"seed", PD_OPT_INT, POFF(seed), "1", 0, 9.2e18, "Generated: PRNG seed (same seed, same events)."},
    {"start_ts", PD_OPT_INT, POFF(start_ts), "0", 0, 7258118400000.0, "Generated: epoch ms of the first event (0 = now - days)."},
    {"dup_rate", PD_OPT_DOUBLE, POFF(dup_rate), "0.01", 0, 1, "Generated: fraction of exact duplicate events."},
    {"bad_rate", PD_OPT_DOUBLE, POFF(bad_rate), "0", 0, 1, "Generated: fraction of malformed events (DLQ material)."},
    {"zipf", PD_OPT_DOUBLE, POFF(zipf), "1.1", 0.01, 10, "Generated: Zipf exponent of user activity."},
    {"brokers", PD_OPT_STR, POFF(brokers), "", 1, 0, "Kafka bootstrap servers (required)."},
    {"topic", PD_OPT_STR, POFF(topic), "", 1, 0, "Topic to produce to (required)."},
    {"file", PD_OPT_STR, POFF(file), "", 1, 0, "JSONL file to send line by line ('-' = stdin)."},
    {"generate", PD_OPT_INT, POFF(generate), "0", 0, 1e12, "Generate and send N synthetic events instead of --file."},
    {"rate", PD_OPT_DOUBLE, POFF(rate), "0", 0, 1e9, "Events per second (0 = unlimited)."},
    {"quiet", PD_OPT_BOOL, POFF(quiet), "false", 1, 0, "No progress lines on stderr."},
    {"live", PD_OPT_BOOL, POFF(live), "false", 1, 0, "Generated: stamp each event with the current time instead of spreading over --days (demo, freshness)."},
    {"key_field", PD_OPT_STR, POFF(key_field), "", 1, 0, "--file: take the key from this top-level string field when present, else user_id (tests use it to produce misrouted events)."},
    {"timestamp_field", PD_OPT_STR, POFF(timestamp_field), "", 1, 0, "--file: set each record's timestamp (CreateTime, epoch ms) from this top-level integer field when present, else the send time (tests use it to forge timestamps, e.g. --timestamp_field ts)."},
};
#define GEN_OPTS 7
#define PRODUCE_TBL_LEN PD_ARRAY_LEN(produce_tbl)

static void fill_gen_opts(const produce_opts *o, int64_t count, pd_gen_opts *g)
{
    memset(g, 0, sizeof *g);
    g->seed = (uint64_t)o->seed;
    g->count = count;
    g->users = o->users;
    g->days = o->days;
    g->start_ts = o->start_ts ? o->start_ts : pd_now_ms() - o->days * DAY_MS;
    g->zipf_s = o->zipf;
    g->dup_rate = o->dup_rate;
    g->bad_rate = o->bad_rate;
}

/* ---- produce ---- */

typedef struct {
    int64_t sent, acked, failed;
    int64_t errors_logged;
    int quiet;
} produce_ctx;

/* Delivery report callback: runs inside rd_kafka_poll/flush on this thread.
 * The message is owned by librdkafka. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    produce_ctx *c = opaque;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        c->acked++;
        return;
    }
    c->failed++;
    if (c->errors_logged++ < 10) pd_warn("produce: delivery failed: %s", rd_kafka_err2str(m->err));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    produce_ctx *c = opaque;
    if (c->errors_logged++ < 20) pd_warn("produce: kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void produce_usage(FILE *out)
{
    fprintf(out, "usage: profilectl produce --brokers B --topic T (--file F | --generate N) [options]\n"
                 "Sends events keyed by user_id (murmur2 partitioner, acks=all, idempotent).\n"
                 "Prints 'acked=N failed=M' at the end; exits 1 if anything failed.\n\n");
    pd_opts_usage(produce_tbl, PRODUCE_TBL_LEN, out);
    fprintf(out, "  %-34s %s\n", "-X key=value", "librdkafka property (repeatable; overrides the defaults).");
}

/* --live: overwrites the 13-digit epoch-ms value of "ts" in a generated
 * line with the current time (same width, so the line stays valid). */
static void stamp_now(char *p, size_t n)
{
    char *t = memmem(p, n, "\"ts\":", 5);
    if (!t) return;
    t += 5;
    char now[32];
    int w = snprintf(now, sizeof now, "%lld", (long long)pd_now_ms());
    for (int i = 0; i < w; i++)
        if ((size_t)(t - p + i) >= n || t[i] < '0' || t[i] > '9') return;
    if ((size_t)(t - p + w) < n && t[w] >= '0' && t[w] <= '9') return;
    memcpy(t, now, (size_t)w);
}

/* Key of a JSONL line: the user_id string, or none. Sets *key and *klen into
 * memory owned by *tree (caller frees *tree with cJSON_Delete). */
static void extract_key(const char *line, size_t len, const char *field, cJSON **tree, const char **key,
                        size_t *klen)
{
    *key = NULL;
    *klen = 0;
    *tree = cJSON_ParseWithLength(line, len);
    if (!*tree || !cJSON_IsObject(*tree)) return;
    const cJSON *u = NULL;
    if (field && *field) u = cJSON_GetObjectItemCaseSensitive(*tree, field);
    if (!cJSON_IsString(u)) u = cJSON_GetObjectItemCaseSensitive(*tree, "user_id");
    if (cJSON_IsString(u) && u->valuestring && u->valuestring[0]) {
        *key = u->valuestring;
        *klen = strlen(u->valuestring);
    }
}

/* The record timestamp a line asks for: its top-level integer field
 * `field` (epoch ms, > 0), else 0 (librdkafka: the send time). */
static int64_t line_timestamp(const cJSON *tree, const char *field)
{
    if (!tree || !field || !*field) return 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tree, field);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1 && v->valuedouble < 9.2e18)) return 0;
    return (int64_t)v->valuedouble;
}

/* Produces one record (copied by librdkafka) with timestamp ts (0 = now),
 * retrying on a full queue. Returns PD_OK, or PD_ERR after counting the
 * message as failed. */
static int send_one(rd_kafka_t *rk, produce_ctx *c, const char *topic, const char *key, size_t klen,
                    const char *val, size_t vlen, int64_t ts)
{
    for (int attempt = 0;; attempt++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, vlen),
            RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
            c->sent++;
            return PD_OK;
        }
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && attempt < QUEUE_FULL_RETRIES) {
            rd_kafka_poll(rk, 100);
            continue;
        }
        c->failed++;
        if (c->errors_logged++ < 10) pd_warn("produce: %s", rd_kafka_err2str(e));
        return PD_ERR;
    }
}

static void progress(const produce_ctx *c, int64_t t0_us, int final)
{
    if (c->quiet) return;
    double secs = (double)(pd_mono_us() - t0_us) / 1e6;
    pd_info("produce: %ssent=%lld acked=%lld failed=%lld rate=%.0f/s", final ? "done " : "",
            (long long)c->sent, (long long)c->acked, (long long)c->failed, secs > 0 ? (double)c->sent / secs : 0.0);
}

/* True when SIGINT/SIGTERM is pending (they are blocked; consumes it). */
static int stop_requested(const sigset_t *sigs)
{
    struct timespec zero = {0, 0};
    int s = sigtimedwait(sigs, NULL, &zero);
    return s == SIGINT || s == SIGTERM;
}

int ctl_produce_main(int argc, char **argv)
{
    produce_opts o;
    pd_argv_extra ex = {0};
    produce_ctx c;
    char err[512];
    int help = 0, exit_code = 1, interrupted = 0;
    rd_kafka_t *rk = NULL;
    FILE *in = NULL;
    pd_gen *gen = NULL;
    pd_buf json = {0}, key = {0};
    char *line = NULL;
    size_t linecap = 0;
    sigset_t sigs, oldmask;
    int mask_set = 0;

    memset(&o, 0, sizeof o);
    memset(&c, 0, sizeof c);
    pd_opts_defaults(produce_tbl, PRODUCE_TBL_LEN, &o);
    ex.allow_x = 1;
    if (pd_opts_parse_argv(produce_tbl, PRODUCE_TBL_LEN, &o, argc, argv, &ex, &help, err, sizeof err) != PD_OK)
        goto usage_err;
    if (help) {
        produce_usage(stdout);
        exit_code = 0;
        goto out;
    }
    if (!*o.brokers) {
        snprintf(err, sizeof err, "--brokers is required");
        goto usage_err;
    }
    if (!*o.topic) {
        snprintf(err, sizeof err, "--topic is required");
        goto usage_err;
    }
    if ((*o.file != 0) == (o.generate != 0)) {
        snprintf(err, sizeof err, "give exactly one of --file or --generate");
        goto usage_err;
    }
    c.quiet = o.quiet;

    if (o.generate) {
        pd_gen_opts go;
        fill_gen_opts(&o, o.generate, &go);
        if (pd_gen_new(&go, &gen, err, sizeof err) != PD_OK) goto usage_err;
    } else if (strcmp(o.file, "-") == 0) {
        in = stdin;
    } else if (!(in = fopen(o.file, "r"))) {
        pd_error("produce: --file %s: %s", o.file, strerror(errno));
        goto out;
    }

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &sigs, &oldmask) == 0) mask_set = 1;

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    static const char *const defaults[][2] = {
        {"partitioner", "murmur2_random"}, {"acks", "all"}, {"enable.idempotence", "true"},
        {"linger.ms", "5"}, {"queue.buffering.max.messages", "500000"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(defaults); i++) {
        if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, sizeof err) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            pd_error("produce: %s", err);
            goto out;
        }
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o.brokers, err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        goto usage_err;
    }
    for (int i = 0; i < ex.nx; i++) {
        const char *eq = strchr(ex.x[i], '=');
        char k[256];
        size_t kl = (size_t)(eq - ex.x[i]);
        if (kl >= sizeof k) kl = sizeof k - 1;
        memcpy(k, ex.x[i], kl);
        k[kl] = '\0';
        char e2[400];
        if (rd_kafka_conf_set(conf, k, eq + 1, e2, sizeof e2) != RD_KAFKA_CONF_OK) {
            rd_kafka_conf_destroy(conf);
            pd_seterr(err, sizeof err, PD_EINVAL, "-X %s: %s", k, e2);
            goto usage_err;
        }
    }
    rd_kafka_conf_set_opaque(conf, &c);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        pd_error("produce: rd_kafka_new: %s", err);
        goto out;
    }

    int64_t t0 = pd_mono_us(), last_progress = t0;
    int64_t n = 0;
    int input_ok = 1;
    for (;; n++) {
        const char *k = NULL, *v;
        size_t klen = 0, vlen;
        cJSON *tree = NULL;
        if (gen) {
            if (pd_gen_next(gen, &json, &key) == PD_GEN_END) break;
            v = json.p;
            vlen = json.len;
            if (o.live) stamp_now(json.p, json.len);
            if (key.len) {
                k = key.p;
                klen = key.len;
            }
        } else {
            errno = 0;
            ssize_t got = getline(&line, &linecap, in);
            if (got < 0) {
                if (ferror(in)) {
                    pd_error("produce: read %s: %s", o.file, strerror(errno));
                    input_ok = 0;
                }
                break;
            }
            if (got > 0 && line[got - 1] == '\n') got--;
            if (got == 0) {
                n--;
                continue;
            }
            v = line;
            vlen = (size_t)got;
            extract_key(line, vlen, o.key_field, &tree, &k, &klen);
        }
        send_one(rk, &c, o.topic, k, klen, v, vlen, line_timestamp(tree, o.timestamp_field));
        cJSON_Delete(tree);
        if ((n & 63) == 0) rd_kafka_poll(rk, 0); /* delivery reports */

        /* Rate limit: once RATE_SLACK_MS ahead of schedule, sleep (polling)
         * until this event's slot, in steps of at most 100 ms. Sending a few
         * ms' worth at a time (the producer lingers 5 ms anyway) instead of
         * waking up for every event keeps this process's CPU small next to
         * the worker it feeds. */
        if (o.rate > 0) {
            int64_t due = t0 + (int64_t)((double)(n + 1) * 1e6 / o.rate);
            if ((due - pd_mono_us()) / 1000 >= RATE_SLACK_MS) {
                for (int step = 0; step < 1000; step++) {
                    int64_t ahead_ms = (due - pd_mono_us()) / 1000;
                    if (ahead_ms <= 0) break;
                    rd_kafka_poll(rk, (int)PD_MIN(ahead_ms, 100));
                }
            }
        }
        if ((n & 255) == 0 || o.rate > 0) {
            int64_t now = pd_mono_us();
            if (now - last_progress >= 1000000) {
                progress(&c, t0, 0);
                last_progress = now;
            }
            if (mask_set && stop_requested(&sigs)) {
                pd_warn("produce: interrupted after %lld events; flushing", (long long)c.sent);
                interrupted = 1;
                break;
            }
        }
    }

    /* Flush: bounded; whatever is still queued afterwards counts as failed. */
    rd_kafka_resp_err_t fe = rd_kafka_flush(rk, FLUSH_TIMEOUT_MS);
    if (fe != RD_KAFKA_RESP_ERR_NO_ERROR) {
        int left = rd_kafka_outq_len(rk);
        pd_error("produce: flush: %s (%d messages undelivered)", rd_kafka_err2str(fe), left);
        c.failed += left;
    }
    char fatal[256];
    if (rd_kafka_fatal_error(rk, fatal, sizeof fatal)) pd_error("produce: fatal: %s", fatal);
    progress(&c, t0, 1);
    printf("acked=%lld failed=%lld\n", (long long)c.acked, (long long)c.failed);
    fflush(stdout);
    exit_code = (c.failed == 0 && input_ok && !interrupted && c.acked == c.sent) ? 0 : 1;
    goto out;

usage_err:
    fprintf(stderr, "profilectl produce: %s\n", err);
    fprintf(stderr, "try 'profilectl produce --help'\n");
    exit_code = 2;
out:
    if (rk) rd_kafka_destroy(rk);
    if (mask_set) pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
    if (in && in != stdin) fclose(in);
    free(line);
    pd_buf_free(&json);
    pd_buf_free(&key);
    pd_gen_free(gen);
    pd_opts_free(produce_tbl, PRODUCE_TBL_LEN, &o);
    return exit_code;
}

/* ---- generate ---- */

static void generate_usage(FILE *out)
{
    fprintf(out, "usage: profilectl generate N [options]\n"
                 "Writes N synthetic vehicle-marketplace events as JSONL to stdout.\n\n");
    pd_opts_usage(produce_tbl, GEN_OPTS, out);
}

int ctl_generate_main(int argc, char **argv)
{
    produce_opts o;
    pd_argv_extra ex = {0};
    char err[512];
    int help = 0, exit_code = 1;
    pd_gen *gen = NULL;
    pd_buf json = {0};

    memset(&o, 0, sizeof o);
    pd_opts_defaults(produce_tbl, PRODUCE_TBL_LEN, &o);
    ex.max_pos = 1;
    if (pd_opts_parse_argv(produce_tbl, GEN_OPTS, &o, argc, argv, &ex, &help, err, sizeof err) != PD_OK)
        goto usage_err;
    if (help) {
        generate_usage(stdout);
        exit_code = 0;
        goto out;
    }
    if (ex.npos != 1) {
        snprintf(err, sizeof err, "missing N (number of events)");
        goto usage_err;
    }
    char *end;
    errno = 0;
    long long count = strtoll(ex.pos[0], &end, 10);
    if (*end || end == ex.pos[0] || errno || count < 1) {
        snprintf(err, sizeof err, "N: '%s' is not a positive integer", ex.pos[0]);
        goto usage_err;
    }
    pd_gen_opts go;
    fill_gen_opts(&o, count, &go);
    if (pd_gen_new(&go, &gen, err, sizeof err) != PD_OK) goto usage_err;

    while (pd_gen_next(gen, &json, NULL) != PD_GEN_END) {
        json.p[json.len] = '\n';
        if (fwrite(json.p, 1, json.len + 1, stdout) != json.len + 1) break;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        pd_error("generate: write: %s", strerror(errno));
        goto out;
    }
    exit_code = 0;
    goto out;

usage_err:
    fprintf(stderr, "profilectl generate: %s\n", err);
    fprintf(stderr, "try 'profilectl generate --help'\n");
    exit_code = 2;
out:
    pd_buf_free(&json);
    pd_gen_free(gen);
    pd_opts_free(produce_tbl, PRODUCE_TBL_LEN, &o);
    return exit_code;
}

/*
 * config.c -- the settings table and the generic option machinery.
 *
 * pd_config_table is the single declaration of every profiled setting. The
 * config file, the command line, --help and docs/configuration.md are all
 * produced from it; nothing else parses settings. Precedence: defaults <
 * config file (--config) < command-line flags. "kafka.<prop>" keys are kept
 * verbatim (without the prefix) and handed to librdkafka, which validates
 * them when the client is created.
 */
#include "config.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OFF(f) offsetof(pd_config, f)
#define UNB 1, 0 /* unbounded: min > max */
#define DAY_MS 86400000.0

const pd_opt pd_config_table[] = {
    {"config", PD_OPT_STR, OFF(config), "", UNB, "Read settings from this file (key = value lines) before the flags."},
    {"brokers", PD_OPT_STR, OFF(brokers), "localhost:9092", UNB, "Kafka bootstrap servers (host:port,...)."},
    {"topic", PD_OPT_STR, OFF(topic), "events", UNB, "Input topic of interaction events, keyed by user_id."},
    {"group", PD_OPT_STR, OFF(group), "profiled", UNB, "Kafka consumer group shared by all workers."},
    {"data_dir", PD_OPT_STR, OFF(data_dir), "./data", UNB, "Directory of this worker's RocksDB store."},
    {"id", PD_OPT_STR, OFF(id), "", UNB, "Worker id, unique in the group (default: hostname-pid)."},
    {"listen", PD_OPT_STR, OFF(listen), "127.0.0.1:8080", UNB, "HTTP listen address host:port (port 0 = ephemeral)."},
    {"advertise", PD_OPT_STR, OFF(advertise), "", UNB, "URL peers use to reach this worker (default: http://<listen>)."},
    {"schema", PD_OPT_STR, OFF(schema), "", UNB, "Profile schema JSON file (default: built-in vehicle schema, 20 dimensions; recent items on, 10 per user-day: docs/data-model.md)."},
    {"dlq_topic", PD_OPT_STR, OFF(dlq_topic), "", UNB, "Dead-letter topic for bad events (default: <topic>.dlq)."},
    {"members_topic", PD_OPT_STR, OFF(members_topic), "", UNB, "Internal membership topic (default: <topic>.members)."},
    {"timezone", PD_OPT_STR, OFF(timezone), "UTC", UNB, "Time zone that decides an event's day: UTC, +HH:MM/-HH:MM, or an IANA name."},
    {"api_token", PD_OPT_STR, OFF(api_token), "", UNB, "When set, /v1/ requests need 'Authorization: Bearer <token>'."},
    {"cluster_token", PD_OPT_STR, OFF(cluster_token), "", UNB, "Shared secret of the cluster (default: api_token): the bearer token of worker-to-worker requests and the key from which the MACs of membership records and snapshots are derived. Use 32 random bytes; every worker needs the same one."},
    {"api_token_file", PD_OPT_STR, OFF(api_token_file), "", UNB, "Read api_token from this file (its content less a trailing newline), keeping it out of the process list; not together with api_token. Without either, the environment variable PROFILED_API_TOKEN is used."},
    {"cluster_token_file", PD_OPT_STR, OFF(cluster_token_file), "", UNB, "Read cluster_token from this file, like api_token_file; without either, PROFILED_CLUSTER_TOKEN is used."},
    {"insecure_cluster", PD_OPT_BOOL, OFF(insecure_cluster), "false", UNB, "Allow a listen address other than loopback without any token: the internal routes (every partition's full state) are then open to anyone who reaches the port. Without it such a worker refuses to start."},
    {"member_ttl", PD_OPT_DURATION, OFF(member_ttl_ms), "10s", 5000, 3600000, "A member's claims and checkpoint announcements expire when it has published nothing for this long while the membership topic kept delivering (workers heartbeat every 2 s); a record stamped more than this before the receiver's clock is ignored (worker clocks must agree within it)."},
    {"members_max", PD_OPT_INT, OFF(members_max), "256", 1, 256, "Most workers the membership map holds; a record of a further member is rejected (reason full) until one expires."},
    {"auto_offset_reset", PD_OPT_STR, OFF(auto_offset_reset), "earliest", UNB, "Where to start a partition with no checkpoint and no committed offset: earliest or latest."},
    {"offsets_backwards", PD_OPT_STR, OFF(offsets_backwards), "refuse", UNB, "What to do with a partition whose checkpoint is beyond the end of the topic (the topic was recreated or truncated): refuse (do not consume it, not ready, error in the log, /readyz and metrics, until an operator decides), rebuild (delete its state and rebuild from the topic) or continue (keep its state and go on from the topic's first offset). Set rebuild or continue only for the restart that resolves it."},
    {"retention_days", PD_OPT_INT, OFF(retention_days), "60", 1, 3650, "Days of profiles kept, counted back from the newest event time seen."},
    {"categorical_max_values", PD_OPT_INT, OFF(categorical_max_values), "64", 1, 65536, "Default cap of a categorical dimension (a schema dimension's \"max_values\" overrides it) and the cap of event types: distinct values counted exactly per user-day; beyond it the day keeps this many heavy hitters, counted by a sketch, and answers mark it approximate (docs/data-model.md)."},
    {"population_max_values", PD_OPT_INT, OFF(population_max_values), "10000", 1, 65536, "Cap of every categorical dimension (and of the event types) in the population profiles: per partition and day, the counts over all users (GET /v1/population, the scoring prior). Exact up to the cap, beyond it heavy hitters counted by a sketch, as for user profiles. Recorded in the store at creation: a worker whose store holds another cap refuses to start (rebuild the store to change it)."},
    {"population_cache_keys", PD_OPT_INT, OFF(population_cache_keys), "8", 0, 1024, "Scoring keeps the population's merged sums per query key (range, day weights, types/weights) with the prior, up to this many keys per refresh; requests with further keys merge the population's days themselves (profiled_population_cache_total{result=\"full\"}). Each key holds about 56 bytes per distinct value of every dimension in its range. 0: no cache."},
    {"population_refresh", PD_OPT_DURATION, OFF(population_refresh_ms), "10s", 200, 3600000, "How often a worker rebuilds its cluster-wide population prior: its own partitions from the store, the others from one request per peer (/internal/v1/population). Answers carry the prior's age; when a peer is down the last copy of its partitions is kept."},
    {"commit_interval_ms", PD_OPT_INT, OFF(commit_interval_ms), "100", 1, 60000, "Flush the in-memory batch (state + offsets, one WriteBatch) at least this often."},
    {"commit_min_interval_ms", PD_OPT_INT, OFF(commit_min_interval_ms), "20", 1, 60000, "When the input is drained, flush without waiting for commit_interval_ms, but at most once per this interval (>= commit_interval_ms: never early)."},
    {"batch_max_events", PD_OPT_INT, OFF(batch_max_events), "50000", 1, 10000000, "Flush when the batch holds this many events."},
    {"dedup_window", PD_OPT_DURATION, OFF(dedup_window_ms), "24h", 0, 30 * DAY_MS, "Events repeating an event_id are counted once while the partition's delivery clock (the newest Kafka record timestamp of its accepted events with an id) has moved at most this much since the id was accepted: measured on deliveries, not on the events' ts, so retries of old events are caught. Memory is bounded by dedup_max_ids."},
    {"dedup_max_ids", PD_OPT_INT, OFF(dedup_max_ids), "1000000", 0, 1e10, "Bound on the event ids the de-dup index of one partition remembers (0 = none: memory then grows with rate x dedup_window). When a partition accepts more ids than this within one window, the oldest are forgotten early: the window in effect shrinks (profiled_dedup_effective_window_seconds) and a duplicate delivered further apart counts again. Deterministic (replicas and replays agree); set it alike on every worker. Memory: about 50-100 bytes per id per partition held."},
    {"max_future_skew", PD_OPT_DURATION, OFF(max_future_skew_ms), "1h", 0, 30 * DAY_MS, "Bound on clocks running ahead: a record whose CreateTime timestamp is more than this after the worker's clock is dead-lettered (future_timestamp); an event whose ts is more than this after its record's LogAppendTime, or after the earlier of its CreateTime and the worker's clock, too (future_ts). So one record moves the partition clock (retention) at most this far past real time."},
    {"import_scan_timeout", PD_OPT_DURATION, OFF(import_scan_timeout_ms), "2m", 1000, 86400000, "Imported stores: bound on the scan of record timestamps that resolves a partition's start time when Kafka's offsets_for_times answer is absent or refuted (docs/operations.md, Rebuilding from an archive). The scan reads the partition from its low watermark up to the first record stamped at or after the start time, on the ingest thread; when it runs out of time the worker stops without consuming (a restart tries again)."},
    {"max_event_bytes", PD_OPT_INT, OFF(max_event_bytes), "65536", 64, 16777216, "Largest accepted event value in bytes."},
    {"ingest_nice", PD_OPT_INT, OFF(ingest_nice), "5", 0, 19, "Nice value of the ingest loop and committer threads (0 = unchanged): query threads get the CPU first when both want it."},
    {"http_threads", PD_OPT_INT, OFF(http_threads), "32", 1, 1024, "HTTP worker threads: requests computed at once (idle and kept connections hold none; with 4 or more, 2 are kept for /healthz, /readyz and /metrics)."},
    {"http_request_timeout_ms", PD_OPT_INT, OFF(http_request_timeout_ms), "5000", 100, 600000, "Per-request time limit for HTTP: sending an answer, and a client that reads no answer byte for this long is dropped."},
    {"http_max_request_bytes", PD_OPT_INT, OFF(http_max_request_bytes), "16384", 1024, 1048576, "Largest accepted HTTP request head."},
    {"http_front", PD_OPT_BOOL, OFF(http_front), "true", UNB, "Serve clients through the front end (http_front.c: head and idle deadlines, connection limits, ops routes first). false: civetweb listens on `listen` itself, as before: about 25 % more local queries per second on 2 cores (docs/BENCHMARKS.md), but a few idle connections stop all HTTP; only behind a proxy that enforces such limits."},
    {"http_max_connections", PD_OPT_INT, OFF(http_max_connections), "1000", 1, 1000000, "Open client connections at most. At the limit the connection idle longest (between requests, or still sending its head) is closed to admit a new one; with none idle the new one gets 503."},
    {"http_max_connections_per_client", PD_OPT_INT, OFF(http_max_connections_per_client), "256", 0, 1000000, "Open connections per client address at most (0 = no limit); past it a new one gets 503 with Retry-After. Behind a load balancer or proxy every client has its address: size this for its connection pool."},
    {"http_head_timeout_ms", PD_OPT_INT, OFF(http_head_timeout_ms), "2000", 10, 600000, "A request head must arrive within this (from the connect, or from the first byte of a kept connection's next request); else 408 and close. Waiting costs no HTTP thread."},
    {"http_keepalive_timeout_ms", PD_OPT_INT, OFF(http_keepalive_timeout_ms), "1000", 10, 3600000, "Idle time allowed between requests on a kept connection (peers pool theirs for 0.7 s: keep it above that)."},
    {"http_keepalive_max_requests", PD_OPT_INT, OFF(http_keepalive_max_requests), "1000", 0, 1000000000, "Requests per connection at most (0 = no limit); the last answer says Connection: close."},
    {"forward_timeout_ms", PD_OPT_INT, OFF(forward_timeout_ms), "1000", 10, 60000, "Timeout for a query forwarded to the partition's owner."},
    {"rank_max_items", PD_OPT_INT, OFF(rank_max_items), "1000", 1, 100000, "Candidates per POST /v1/profiles/{user_id}/rank at most; more: 400."},
    {"rank_max_body_bytes", PD_OPT_INT, OFF(rank_max_body_bytes), "1048576", 1024, 67108864, "Largest accepted request body (POST /v1/profiles/{user_id}/rank); larger: 413. The front end reads a body whole before a worker thread sees it, so this also bounds its memory per connection."},
    {"replicas", PD_OPT_INT, OFF(replicas), "1", 0, 16, "Warm copies of each partition kept by other workers (placement: the next live workers after the owner in id order; none with a single worker)."},
    {"block_cache_mb", PD_OPT_INT, OFF(block_cache_mb), "128", 1, 1048576, "RocksDB block cache size (MiB)."},
    {"write_buffer_mb", PD_OPT_INT, OFF(write_buffer_mb), "32", 1, 4096, "RocksDB memtable size per column family (MiB)."},
    {"disk_min_free_mb", PD_OPT_INT, OFF(disk_min_free_mb), "256", 0, 1048576, "Free space the data directory's filesystem must keep (MiB; 0 = not watched). Below it the worker stops consuming and committing (its partitions paused, state served as before; /readyz degraded disk_low, profiled_disk_low 1) and resumes by itself once one and a half times this is free. RocksDB aborts on a full disk: keep this above what a batch, a rebalance's flush and a compaction write (a few write_buffer_mb)."},
    {"store_corruption", PD_OPT_STR, OFF(store_corruption), "quarantine", UNB, "What a worker does with a store RocksDB finds corrupt: quarantine (found while running: restart at once, same PID and arguments; at start: rename the data directory to <data_dir>.corrupt-<time>, kept, and start empty: partitions are restored from peers' snapshots or rebuilt from the topic) or refuse (found while running: keep serving what reads fine, not ready; at start: exit with code 3 and the reason)."},
    {"day_filter_bits", PD_OPT_INT, OFF(day_filter_bits), "10", 0, 32, "Bits per stored user-day of the in-memory day filters, which let a range query read only the days a user may have a profile on (about 1 % false positives at 10; 0 = off, every day in the range is read)."},
    {"day_filter_max_mb", PD_OPT_INT, OFF(day_filter_max_mb), "256", 0, 1048576, "Memory limit of all day filters together (MiB; 0 = none). Past it a new day gets no filter (read always) and a full filter stops growing (more false positives); see profiled_day_filter_limited."},
    {"session_timeout_ms", PD_OPT_INT, OFF(session_timeout_ms), "10000", 1000, 3600000, "Kafka consumer session timeout (rebalances wait about this long)."},
    {"shutdown_timeout_ms", PD_OPT_INT, OFF(shutdown_timeout_ms), "30000", 100, 600000, "Upper bound on an orderly shutdown."},
    {"max_partitions", PD_OPT_INT, OFF(max_partitions), "4096", 1, 65536, "Largest partition count of the input topic this worker accepts."},
    {"handoff_min_lag", PD_OPT_INT, OFF(handoff_min_lag), "10000", 0, 1e15, "Fetch a snapshot from a peer when the local copy of a newly owned or replicated partition is this many offsets behind the best peer copy (or absent)."},
    {"cleanup_grace", PD_OPT_DURATION, OFF(cleanup_grace_ms), "5m", 0, 30 * DAY_MS, "Delete the local state of a partition this worker neither owns nor replicates after this long."},
    {"backup_dir", PD_OPT_STR, OFF(backup_dir), "", UNB, "Directory of this worker's own backups (RocksDB backup engine: consistent, incremental; see docs/operations.md, Backups). Empty: no scheduled backups and POST /internal/v1/backup answers 409."},
    {"backup_interval", PD_OPT_DURATION, OFF(backup_interval_ms), "1h", 0, 30 * DAY_MS, "Take a backup into backup_dir this long after the previous one ended (0: only on request)."},
    {"backup_keep", PD_OPT_INT, OFF(backup_keep), "24", 0, 100000, "Backups kept in backup_dir; older ones are deleted after each new one (0: keep all)."},
    {"protect_ops_endpoints", PD_OPT_BOOL, OFF(protect_ops_endpoints), "false", UNB, "Also require api_token on /healthz, /readyz and /metrics."},
    {"quiet", PD_OPT_BOOL, OFF(quiet), "false", UNB, "Log warnings and errors only."},
};
const size_t pd_config_table_len = PD_ARRAY_LEN(pd_config_table);

/* ---- generic machinery ---- */

int pd_parse_duration(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0) return PD_EINVAL;
    double mul;
    if (!*end || strcmp(end, "ms") == 0) mul = 1;
    else if (strcmp(end, "s") == 0) mul = 1000;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) mul = 60000;
    else if (strcmp(end, "h") == 0) mul = 3600000;
    else if (strcmp(end, "d") == 0) mul = 86400000;
    else return PD_EINVAL;
    v *= mul;
    if (v > 9.2e18) return PD_EINVAL;
    *ms = (int64_t)v;
    return PD_OK;
}

static const pd_opt *find_opt(const pd_opt *tbl, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tbl[i].name, key) == 0) return &tbl[i];
    }
    /* accept dashes for underscores: --data-dir == --data_dir */
    char alt[128];
    size_t kl = strlen(key);
    if (kl >= sizeof alt) return NULL;
    for (size_t i = 0; i <= kl; i++) alt[i] = key[i] == '-' ? '_' : key[i];
    for (size_t i = 0; i < n; i++) {
        if (strcmp(tbl[i].name, alt) == 0) return &tbl[i];
    }
    return NULL;
}

static int set_opt(const pd_opt *o, void *obj, const char *val, char *err, size_t errlen)
{
    char *field = (char *)obj + o->offset;
    int bounded = o->min <= o->max;
    switch (o->type) {
    case PD_OPT_STR: {
        char **sp = (char **)field;
        free(*sp);
        *sp = pd_strdup(val ? val : "");
        return PD_OK;
    }
    case PD_OPT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (end == val || *end || errno)
            return pd_seterr(err, errlen, PD_EINVAL, "%s: '%s' is not an integer", o->name, val);
        if (bounded && (v < o->min || v > o->max))
            return pd_seterr(err, errlen, PD_ERANGE, "%s: %lld is out of range [%.0f, %.0f]", o->name, v, o->min, o->max);
        *(int64_t *)field = v;
        return PD_OK;
    }
    case PD_OPT_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(val, &end);
        if (end == val || *end || errno || !isfinite(v))
            return pd_seterr(err, errlen, PD_EINVAL, "%s: '%s' is not a number", o->name, val);
        if (bounded && (v < o->min || v > o->max))
            return pd_seterr(err, errlen, PD_ERANGE, "%s: %g is out of range [%g, %g]", o->name, v, o->min, o->max);
        *(double *)field = v;
        return PD_OK;
    }
    case PD_OPT_DURATION: {
        int64_t ms;
        if (pd_parse_duration(val, &ms))
            return pd_seterr(err, errlen, PD_EINVAL, "%s: '%s' is not a duration (e.g. 500ms, 30s, 10m, 24h, 7d)", o->name, val);
        if (bounded && (ms < o->min || ms > o->max))
            return pd_seterr(err, errlen, PD_ERANGE, "%s: %s is out of range [%.0fms, %.0fms]", o->name, val, o->min, o->max);
        *(int64_t *)field = ms;
        return PD_OK;
    }
    case PD_OPT_BOOL: {
        static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(val, yes[i]) == 0) { *(int *)field = 1; return PD_OK; }
            if (strcasecmp(val, no[i]) == 0) { *(int *)field = 0; return PD_OK; }
        }
        return pd_seterr(err, errlen, PD_EINVAL, "%s: '%s' is not a boolean (true/false)", o->name, val);
    }
    }
    return pd_seterr(err, errlen, PD_EINVAL, "%s: bad option type", o->name);
}

void pd_opts_defaults(const pd_opt *tbl, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        const char *d = tbl[i].def ? tbl[i].def : "";
        if (tbl[i].type != PD_OPT_STR && !*d) d = "0";
        int rc = set_opt(&tbl[i], obj, d, NULL, 0);
        pd_assert(rc == PD_OK);
    }
}

int pd_opts_set(const pd_opt *tbl, size_t n, void *obj, const char *key, const char *val,
                char *err, size_t errlen)
{
    const pd_opt *o = find_opt(tbl, n, key);
    if (!o) return pd_seterr(err, errlen, PD_EINVAL, "unknown setting '%s'", key);
    return set_opt(o, obj, val, err, errlen);
}

void pd_opts_free(const pd_opt *tbl, size_t n, void *obj)
{
    for (size_t i = 0; i < n; i++) {
        if (tbl[i].type == PD_OPT_STR) {
            char **sp = (char **)((char *)obj + tbl[i].offset);
            free(*sp);
            *sp = NULL;
        }
    }
}

static const char *type_word(pd_opt_type t)
{
    switch (t) {
    case PD_OPT_STR: return "TEXT";
    case PD_OPT_INT: return "N";
    case PD_OPT_BOOL: return "BOOL";
    case PD_OPT_DOUBLE: return "X";
    case PD_OPT_DURATION: return "DURATION";
    }
    return "?";
}

void pd_opts_usage(const pd_opt *tbl, size_t n, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        char flag[96];
        snprintf(flag, sizeof flag, "--%s %s", tbl[i].name, type_word(tbl[i].type));
        fprintf(out, "  %-34s %s", flag, tbl[i].help);
        if (tbl[i].def && *tbl[i].def) fprintf(out, " (default: %s)", tbl[i].def);
        fputc('\n', out);
    }
}

static int is_bool_word(const char *s)
{
    static const char *w[] = {"true", "false", "yes", "no", "on", "off", "1", "0"};
    for (size_t i = 0; i < PD_ARRAY_LEN(w); i++)
        if (strcasecmp(s, w[i]) == 0) return 1;
    return 0;
}

int pd_opts_parse_argv(const pd_opt *tbl, size_t n, void *obj, int argc, char **argv, pd_argv_extra *ex,
                       int *help, char *err, size_t errlen)
{
    *help = 0;
    ex->nx = ex->npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            return PD_OK;
        }
        if (ex->allow_x && strncmp(a, "-X", 2) == 0) {
            const char *kv = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!kv || !strchr(kv, '=') || kv[0] == '=')
                return pd_seterr(err, errlen, PD_EINVAL, "-X needs key=value");
            if (ex->nx >= PD_ARGV_MAX_X) return pd_seterr(err, errlen, PD_EINVAL, "-X: at most %d", PD_ARGV_MAX_X);
            ex->x[ex->nx++] = kv;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            if (ex->npos >= ex->max_pos || ex->npos >= PD_ARGV_MAX_POS)
                return pd_seterr(err, errlen, PD_EINVAL, "unexpected argument '%s'", a);
            ex->pos[ex->npos++] = a;
            continue;
        }
        char key[128];
        const char *eq = strchr(a + 2, '=');
        size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (kl >= sizeof key) return pd_seterr(err, errlen, PD_EINVAL, "flag '%s' too long", a);
        memcpy(key, a + 2, kl);
        key[kl] = '\0';
        for (size_t k = 0; k < kl; k++)
            if (key[k] == '-') key[k] = '_';
        const pd_opt *opt = find_opt(tbl, n, key);
        if (!opt || (ex->allow && !ex->allow(ex->allow_ctx, key)))
            return pd_seterr(err, errlen, PD_EINVAL, "unknown flag '--%s'", key);
        const char *val;
        if (eq)
            val = eq + 1;
        else if (opt->type == PD_OPT_BOOL && (i + 1 >= argc || !is_bool_word(argv[i + 1])))
            val = "true";
        else if (i + 1 >= argc)
            return pd_seterr(err, errlen, PD_EINVAL, "--%s needs a value", key);
        else
            val = argv[++i];
        int rc = pd_opts_set(tbl, n, obj, key, val, err, errlen);
        if (rc) return rc;
    }
    return PD_OK;
}

/* ---- profiled config ---- */

void pd_config_init(pd_config *c)
{
    memset(c, 0, sizeof *c);
    pd_opts_defaults(pd_config_table, pd_config_table_len, c);
}

void pd_config_free(pd_config *c)
{
    pd_opts_free(pd_config_table, pd_config_table_len, c);
    for (int i = 0; i < c->kafka.n; i++) {
        free(c->kafka.keys[i]);
        free(c->kafka.vals[i]);
    }
    free(c->kafka.keys);
    free(c->kafka.vals);
    memset(&c->kafka, 0, sizeof c->kafka);
}

int pd_config_set(pd_config *c, const char *key, const char *val, char *err, size_t errlen)
{
    if (strncmp(key, "kafka.", 6) == 0) {
        const char *k = key + 6;
        if (!*k) return pd_seterr(err, errlen, PD_EINVAL, "setting '%s': empty librdkafka property", key);
        for (int i = 0; i < c->kafka.n; i++) {
            if (strcmp(c->kafka.keys[i], k) == 0) {
                free(c->kafka.vals[i]);
                c->kafka.vals[i] = pd_strdup(val);
                return PD_OK;
            }
        }
        c->kafka.keys = pd_realloc(c->kafka.keys, sizeof(char *) * (size_t)(c->kafka.n + 1));
        c->kafka.vals = pd_realloc(c->kafka.vals, sizeof(char *) * (size_t)(c->kafka.n + 1));
        c->kafka.keys[c->kafka.n] = pd_strdup(k);
        c->kafka.vals[c->kafka.n] = pd_strdup(val);
        c->kafka.n++;
        return PD_OK;
    }
    return pd_opts_set(pd_config_table, pd_config_table_len, c, key, val, err, errlen);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int pd_config_load_file(pd_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) return pd_seterr(err, errlen, PD_ENOTFOUND, "config file '%s': %s", path, strerror(errno));
    char line[4096], e2[256];
    int lineno = 0, rc = PD_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        if (strcmp(key, "config") == 0) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "%s:%d: 'config' cannot be set in a config file", path, lineno);
            break;
        }
        if ((rc = pd_config_set(c, key, val, e2, sizeof e2)) != PD_OK) {
            pd_seterr(err, errlen, rc, "%s:%d: %s", path, lineno, e2);
            break;
        }
    }
    fclose(f);
    return rc;
}

int pd_config_parse_args(pd_config *c, int argc, char **argv, int *help, char *err, size_t errlen)
{
    *help = 0;
    /* Pass 1: --config FILE, so flags override the file. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *help = 1;
            return PD_OK;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) return pd_seterr(err, errlen, PD_EINVAL, "--config needs a value");
            int rc = pd_config_load_file(c, argv[i + 1], err, errlen);
            if (rc) return rc;
            pd_config_set(c, "config", argv[i + 1], NULL, 0);
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return pd_seterr(err, errlen, PD_EINVAL, "unexpected argument '%s' (settings are --name value)", a);
        const char *key = a + 2, *val;
        char keybuf[256];
        const char *eq = strchr(key, '=');
        if (eq) {
            size_t kl = (size_t)(eq - key);
            if (kl >= sizeof keybuf) return pd_seterr(err, errlen, PD_EINVAL, "setting name too long");
            memcpy(keybuf, key, kl);
            keybuf[kl] = '\0';
            key = keybuf;
            val = eq + 1;
        } else {
            if (i + 1 >= argc) return pd_seterr(err, errlen, PD_EINVAL, "--%s needs a value", key);
            val = argv[++i];
        }
        if (strcmp(key, "config") == 0) continue;
        int rc = pd_config_set(c, key, val, err, errlen);
        if (rc) return rc;
    }
    return PD_OK;
}

/* Reads a token file into *dst: the whole content less one trailing "\n"
 * or "\r\n". Unreadable, empty or over 4 KiB: PD_EINVAL naming `key`. */
static int read_token_file(const char *key, const char *path, char **dst, char *err, size_t errlen)
{
    char buf[4098];
    FILE *f = fopen(path, "rb");
    if (!f) return pd_seterr(err, errlen, PD_EINVAL, "%s: cannot read '%s': %s", key, path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) return pd_seterr(err, errlen, PD_EINVAL, "%s: cannot read '%s'", key, path);
    if (n > 4096) return pd_seterr(err, errlen, PD_EINVAL, "%s: '%s' is longer than 4096 bytes", key, path);
    buf[n] = '\0';
    if (n && buf[n - 1] == '\n') buf[--n] = '\0';
    if (n && buf[n - 1] == '\r') buf[--n] = '\0';
    if (n == 0) return pd_seterr(err, errlen, PD_EINVAL, "%s: '%s' is empty", key, path);
    if (strlen(buf) != n) return pd_seterr(err, errlen, PD_EINVAL, "%s: '%s' contains a NUL byte", key, path);
    free(*dst);
    *dst = pd_strdup(buf);
    return PD_OK;
}

/* The token setting `key`: given directly, or from `key`_file (not both),
 * else from the environment variable `env`. */
static int resolve_token(const char *key, char **tok, const char *file, const char *env, char *err,
                         size_t errlen)
{
    if (file && *file) {
        if (*tok && **tok)
            return pd_seterr(err, errlen, PD_EINVAL, "%s and %s_file: set only one of them", key, key);
        char k[64];
        snprintf(k, sizeof k, "%s_file", key);
        return read_token_file(k, file, tok, err, errlen);
    }
    const char *e = getenv(env);
    if ((!*tok || !**tok) && e && *e) {
        free(*tok);
        *tok = pd_strdup(e);
    }
    return PD_OK;
}

const char *pd_config_cluster_token(const pd_config *c)
{
    if (c->cluster_token && *c->cluster_token) return c->cluster_token;
    if (c->api_token && *c->api_token) return c->api_token;
    return NULL;
}

int pd_listen_is_loopback(const char *listen)
{
    /* civetweb's listening_ports: comma-separated [host:]port entries,
     * an optional 's'/'r' suffix; no host = every interface */
    const char *s = listen;
    do {
        size_t n = strcspn(s, ",");
        const char *colon = NULL;
        for (const char *q = s; q < s + n; q++)
            if (*q == ':') colon = q;
        size_t hl = colon ? (size_t)(colon - s) : 0;
        char host[256];
        if (hl >= sizeof host) return 0;
        memcpy(host, s, hl);
        host[hl] = '\0';
        char *h = host;
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h[hl - 1] = '\0';
            h++;
        }
        struct in_addr a4;
        struct in6_addr a6;
        int lo = strcmp(h, "localhost") == 0 ||
                 (inet_pton(AF_INET, h, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
                 (inet_pton(AF_INET6, h, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
        if (!lo) return 0;
        s += n;
    } while (*s++ == ',');
    return 1;
}

int pd_config_finalize(pd_config *c, char *err, size_t errlen)
{
    char buf[512];
    if (!*c->topic) return pd_seterr(err, errlen, PD_EINVAL, "topic: must not be empty");
    if (!*c->group) return pd_seterr(err, errlen, PD_EINVAL, "group: must not be empty");
    if (!*c->data_dir) return pd_seterr(err, errlen, PD_EINVAL, "data_dir: must not be empty");
    if (!*c->dlq_topic) {
        snprintf(buf, sizeof buf, "%s.dlq", c->topic);
        pd_config_set(c, "dlq_topic", buf, NULL, 0);
    }
    if (!*c->members_topic) {
        snprintf(buf, sizeof buf, "%s.members", c->topic);
        pd_config_set(c, "members_topic", buf, NULL, 0);
    }
    if (strcmp(c->dlq_topic, c->topic) == 0)
        return pd_seterr(err, errlen, PD_EINVAL, "dlq_topic: must differ from topic");
    if (!*c->id) {
        char host[256] = "worker";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(buf, sizeof buf, "%s-%d", host, (int)getpid());
        pd_config_set(c, "id", buf, NULL, 0);
    }
    if (strlen(c->id) > 128) return pd_seterr(err, errlen, PD_EINVAL, "id: longer than 128 bytes");
    if (!strchr(c->listen, ':'))
        return pd_seterr(err, errlen, PD_EINVAL, "listen: expected host:port, got '%s'", c->listen);
    if (strcmp(c->auto_offset_reset, "earliest") != 0 && strcmp(c->auto_offset_reset, "latest") != 0)
        return pd_seterr(err, errlen, PD_EINVAL, "auto_offset_reset: must be earliest or latest");
    if (strcmp(c->store_corruption, "quarantine") != 0 && strcmp(c->store_corruption, "refuse") != 0)
        return pd_seterr(err, errlen, PD_EINVAL, "store_corruption: must be quarantine or refuse");
    if (strcmp(c->offsets_backwards, "refuse") != 0 && strcmp(c->offsets_backwards, "rebuild") != 0 &&
        strcmp(c->offsets_backwards, "continue") != 0)
        return pd_seterr(err, errlen, PD_EINVAL, "offsets_backwards: must be refuse, rebuild or continue");
    int rc = resolve_token("api_token", &c->api_token, c->api_token_file, "PROFILED_API_TOKEN", err, errlen);
    if (!rc) rc = resolve_token("cluster_token", &c->cluster_token, c->cluster_token_file, "PROFILED_CLUSTER_TOKEN",
                                err, errlen);
    if (rc) return rc;
    /* No secret, no cluster: without a token the internal routes serve any
     * partition's full state to whoever asks. */
    if (!pd_config_cluster_token(c) && !pd_listen_is_loopback(c->listen)) {
        if (!c->insecure_cluster)
            return pd_seterr(err, errlen, PD_EINVAL,
                             "listen: %s is not a loopback address and no cluster_token (or api_token) is set, "
                             "so anyone reaching it could download every partition; set cluster_token_file or "
                             "PROFILED_CLUSTER_TOKEN, or insecure_cluster = true to run open anyway",
                             c->listen);
        pd_warn("INSECURE: insecure_cluster is set and no token is configured: the internal routes on %s serve "
                "every partition's state to anyone who can reach them", c->listen);
    }
    /* advertise is derived after the HTTP port is bound (port 0). */
    return PD_OK;
}

void pd_config_usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [--config FILE] [--name value ...]\n\n"
            "profiled is a partition-owning stream worker: it consumes user interaction\n"
            "events from Kafka, keeps per-user per-day profiles in a local RocksDB and\n"
            "serves them over HTTP. Settings (config file keys are the same names):\n\n",
            prog);
    pd_opts_usage(pd_config_table, pd_config_table_len, out);
    fprintf(out,
            "  --kafka.<property> VALUE           Any librdkafka property, passed through\n"
            "                                     (e.g. --kafka.security.protocol SSL).\n\n"
            "Other flags: --help, --print-config-markdown.\n");
}

void pd_config_markdown(FILE *out)
{
    fprintf(out,
            "# Configuration\n\n"
            "<!-- Generated by `bin/profiled --print-config-markdown` from the settings table in\n"
            "     src/config.c. Do not edit by hand; run `make docs`. -->\n\n"
            "Every setting can be given in a config file (`--config FILE`, lines of\n"
            "`key = value`, `#` comments) or as a command-line flag `--key value`\n"
            "(`--key=value` and dashes for underscores also work). Flags override the file.\n"
            "Unknown keys and out-of-range values are rejected with a message naming the key.\n\n"
            "Durations accept `ms`, `s`, `m`, `h`, `d` suffixes (plain numbers are milliseconds).\n\n"
            "| Setting | Type | Default | Range | Description |\n"
            "|---|---|---|---|---|\n");
    for (size_t i = 0; i < pd_config_table_len; i++) {
        const pd_opt *o = &pd_config_table[i];
        char range[64] = "";
        if (o->min <= o->max) {
            if (o->type == PD_OPT_DURATION)
                snprintf(range, sizeof range, "%.0fms – %.0fms", o->min, o->max);
            else
                snprintf(range, sizeof range, "%.0f – %.0f", o->min, o->max);
        }
        fprintf(out, "| `%s` | %s | `%s` | %s | %s |\n", o->name, type_word(o->type),
                o->def && *o->def ? o->def : "", range, o->help);
    }
    fprintf(out,
            "| `kafka.<property>` | TEXT | | | Passed verbatim to librdkafka for the consumer and producers. |\n");
    fprintf(out,
            "\n## Hardening: connection floods\n\n"
            "Clients connect to the HTTP front end (src/http_front.c), one event-loop thread that holds\n"
            "every connection while it is idle or sending its request head; only a complete head takes\n"
            "one of the `http_threads` worker threads, so idle, slow (slowloris) and kept connections\n"
            "cost a descriptor and a buffer, not a thread.\n\n"
            "- `http_head_timeout_ms` (2 s): a head not complete in time gets 408 and the connection\n"
            "  closes; a connection that sent nothing is closed silently.\n"
            "- `http_keepalive_timeout_ms` (1 s) and `http_keepalive_max_requests` (1000): a kept\n"
            "  connection is closed after this much idle time, and its last allowed answer says\n"
            "  `Connection: close`.\n"
            "- `http_max_connections_per_client` (256): one more connection from the same address gets\n"
            "  503 `{\"error\":\"too many connections\",...}` with `Retry-After: 1` and is closed. Behind a\n"
            "  load balancer or proxy that does not keep client addresses, raise it above the proxy's\n"
            "  pool (or set 0).\n"
            "- `http_max_connections` (1000): at the limit the connection idle longest is closed to admit\n"
            "  the new one (one still sending its head gets the 503); only when none is idle does the new\n"
            "  one get the 503. The process's open-file limit is raised to fit, if the hard limit allows.\n"
            "- `http_threads` (32): requests computed at once; with 4 or more, two are kept for\n"
            "  `/healthz`, `/readyz` and `/metrics`, which are also served first.\n"
            "- `http_request_timeout_ms` (5 s): a client that reads no byte of its answer for this long\n"
            "  is dropped.\n\n"
            "What the limits did: `profiled_http_connections` (open now), "
            "`profiled_http_connections_rejected_total{reason=per_client|total}`,\n"
            "`profiled_http_connections_evicted_total`, "
            "`profiled_http_connections_timed_out_total{phase=head|idle|write}` and\n"
            "`profiled_http_queued_requests`. `tests/bb/test_flood.py` floods a worker with idle, slowloris,\n"
            "kept and single-address connections and checks that probes and profile queries keep\n"
            "answering (p99 under 0.5 s; a few ms measured).\n");
}

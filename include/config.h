/*
 * config.h -- every setting of profiled in one table.
 *
 * The table (pd_config_table in config.c) declares name, type, default,
 * bounds and help for each setting. The same table drives the config file
 * (`key = value` lines, '#' comments), command-line flags (`--key value`),
 * `--help` and the generated docs/configuration.md. Keys starting with
 * "kafka." are passed verbatim to librdkafka (consumer and producer).
 *
 * The generic option machinery (pd_opt, pd_opts_*) is also used by the
 * profilectl subcommands, each with a small table of its own.
 */
#ifndef PD_CONFIG_H
#define PD_CONFIG_H

#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PD_OPT_STR,      /* char * (owned by the struct, freed by pd_opts_free) */
    PD_OPT_INT,      /* int64_t */
    PD_OPT_BOOL,     /* int: true/false/yes/no/1/0/on/off */
    PD_OPT_DOUBLE,   /* double */
    PD_OPT_DURATION, /* int64_t milliseconds: "250", "250ms", "5s", "10m", "24h", "7d" */
} pd_opt_type;

typedef struct {
    const char *name;  /* e.g. "commit_interval_ms"; flag is --name */
    pd_opt_type type;
    size_t offset;     /* offsetof(struct, field) */
    const char *def;   /* default as text (NULL = empty string / 0) */
    double min, max;   /* bounds for INT/DOUBLE/DURATION (ms); min>max = unbounded */
    const char *help;
} pd_opt;

/* Applies every default of `tbl` to `obj`. */
void pd_opts_defaults(const pd_opt *tbl, size_t n, void *obj);
/* Sets one option from text. Unknown key or bad/out-of-range value: returns
 * PD_EINVAL with a message naming the key. */
int pd_opts_set(const pd_opt *tbl, size_t n, void *obj, const char *key, const char *val,
                char *err, size_t errlen);
/* Frees the PD_OPT_STR fields of obj. */
void pd_opts_free(const pd_opt *tbl, size_t n, void *obj);
/* Prints "  --name VALUE   help (default: x)" lines. */
void pd_opts_usage(const pd_opt *tbl, size_t n, FILE *out);

/* Command-line parsing for the profilectl subcommands: `--name value`,
 * `--name=value`, dashes for underscores, bare boolean flags, optional
 * `-X key=value` (librdkafka passthrough) and positionals. Pointers stored
 * in the extra struct point into argv. */
#define PD_ARGV_MAX_X 32
#define PD_ARGV_MAX_POS 4
typedef struct {
    int allow_x;                 /* in: accept -X key=value */
    int max_pos;                 /* in: positionals accepted (<= PD_ARGV_MAX_POS) */
    int (*allow)(const void *ctx, const char *name); /* in: optional per-command filter */
    const void *allow_ctx;
    const char *x[PD_ARGV_MAX_X]; /* out */
    int nx;
    const char *pos[PD_ARGV_MAX_POS]; /* out */
    int npos;
} pd_argv_extra;
/* Parses argv[1..] into obj. Returns PD_OK (with *help set on --help/-h) or
 * PD_EINVAL with a message naming the flag. */
int pd_opts_parse_argv(const pd_opt *tbl, size_t n, void *obj, int argc, char **argv, pd_argv_extra *ex,
                       int *help, char *err, size_t errlen);

/* Key/value list for passthrough settings (kafka.*). */
typedef struct {
    char **keys, **vals; /* owned */
    int n;
} pd_kvlist;

typedef struct pd_config {
    char *config;          /* path of the config file (flag only) */
    char *brokers;
    char *topic;
    char *group;
    char *data_dir;
    char *id;
    char *listen;
    char *advertise;
    char *schema;          /* path of a JSON schema file; "" = built-in vehicle schema */
    char *dlq_topic;       /* "" = <topic>.dlq */
    char *members_topic;   /* "" = <topic>.members */
    char *timezone;        /* "UTC", "+01:00" or an IANA name */
    char *api_token;
    char *cluster_token;
    char *api_token_file;     /* read into api_token by pd_config_finalize */
    char *cluster_token_file; /* read into cluster_token by pd_config_finalize */
    char *auto_offset_reset;
    char *offsets_backwards;     /* refuse | rebuild | continue (ingest.c, offsets.h) */
    int64_t retention_days;
    int64_t categorical_max_values;
    int64_t population_max_values;
    int64_t population_refresh_ms;
    int64_t population_cache_keys;
    int64_t commit_interval_ms;
    int64_t commit_min_interval_ms;
    int64_t batch_max_events;
    int64_t dedup_window_ms;
    int64_t dedup_max_ids;
    char *backup_dir;
    int64_t backup_interval_ms;
    int64_t backup_keep;
    int64_t max_future_skew_ms;
    int64_t import_scan_timeout_ms;
    int64_t max_event_bytes;
    int64_t http_threads;
    int64_t ingest_nice;
    int64_t http_request_timeout_ms;
    int64_t http_max_request_bytes;
    int http_front;
    int64_t http_max_connections;
    int64_t http_max_connections_per_client;
    int64_t http_head_timeout_ms;
    int64_t http_keepalive_timeout_ms;
    int64_t http_keepalive_max_requests;
    int64_t forward_timeout_ms;
    int64_t rank_max_items;       /* candidates per rank request */
    int64_t rank_max_body_bytes;  /* request bodies at most */
    int64_t replicas;
    int64_t block_cache_mb;
    int64_t write_buffer_mb;
    int64_t disk_min_free_mb;
    char *store_corruption;
    int64_t day_filter_bits;
    int64_t day_filter_max_mb;
    int64_t session_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t max_partitions;
    int64_t handoff_min_lag;      /* restore from a peer when behind it by more */
    int64_t cleanup_grace_ms;     /* delete partitions neither owned nor replicated after */
    int64_t member_ttl_ms;        /* membership claims expire after this silence */
    int64_t members_max;          /* bound of the membership map */
    int protect_ops_endpoints;
    int insecure_cluster;  /* internal routes may run open on a non-loopback address */
    int quiet;
    pd_kvlist kafka;       /* kafka.* passthrough, key without the prefix */
} pd_config;

extern const pd_opt pd_config_table[];
extern const size_t pd_config_table_len;

void pd_config_init(pd_config *c);
void pd_config_free(pd_config *c);
int pd_config_set(pd_config *c, const char *key, const char *val, char *err, size_t errlen);
/* Loads `key = value` lines; errors name file, line and key. */
int pd_config_load_file(pd_config *c, const char *path, char *err, size_t errlen);
/* Parses argv (flags only; --config FILE is loaded first, so flags given on
 * the command line override the file). Sets *help when --help/-h seen. */
int pd_config_parse_args(pd_config *c, int argc, char **argv, int *help, char *err, size_t errlen);
/* Fills derived defaults (dlq topic, members topic, id, advertise) and
 * checks cross-field rules. Tokens: api_token comes from the setting or
 * api_token_file (both set: error), else from $PROFILED_API_TOKEN; the
 * same for cluster_token (file, $PROFILED_CLUSTER_TOKEN). A token file is
 * read whole, one trailing newline dropped; unreadable or empty: error
 * naming the key. A non-loopback listen address without any token is an
 * error unless insecure_cluster (then a warning). */
int pd_config_finalize(pd_config *c, char *err, size_t errlen);
/* The secret between workers: cluster_token, else api_token, else NULL
 * (open; only on loopback or with insecure_cluster). Sent by every
 * worker-to-worker request and required by the internal routes. Borrowed
 * from c. */
const char *pd_config_cluster_token(const pd_config *c);
/* Whether every address of a listen setting (host:port[,host:port]) is a
 * loopback one (127.x, ::1, localhost); no host = all interfaces = no. */
int pd_listen_is_loopback(const char *listen);
void pd_config_usage(FILE *out, const char *prog);
/* Writes docs/configuration.md content. */
void pd_config_markdown(FILE *out);

/* Parses a duration text into ms. */
int pd_parse_duration(const char *s, int64_t *ms);

#endif

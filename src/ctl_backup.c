/*
 * ctl_backup.c -- `profilectl backup`, `restore` and `backups`: consistent,
 * incremental backups of a worker's store (backup.h) and their restore.
 *
 * backup: with --data-dir D --to DIR, opens the store itself (it must not
 * be in use: RocksDB's lock) and backs it up into DIR. A running worker
 * holds its store, so for it: --url U asks the worker (POST
 * /internal/v1/backup with the cluster token) to back up into its own
 * backup_dir now, while it keeps ingesting and serving.
 * restore: DIR's newest (or --id) backup into a new or empty data
 * directory; --schema checks the backup's schema first.
 * backups: lists DIR's backups.
 * Output: one JSON object per line on stdout; errors on stderr, exit 1
 * (2 for usage errors).
 */
#include "backup.h"
#include "config.h"
#include "ctl.h"
#include "peer.h"
#include "schema.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *data_dir;
    char *to;        /* backup: target directory */
    char *from;      /* restore, backups: backup directory */
    char *url;       /* backup: a running worker */
    char *token_file;
    char *schema;    /* restore: "" = no check, "builtin", or a file */
    int64_t keep;
    int64_t id;
    int64_t timeout_ms;
} bk_opts;

#define KOFF(f) offsetof(bk_opts, f)
static const pd_opt backup_tbl[] = {
    {"data_dir", PD_OPT_STR, KOFF(data_dir), "", 1, 0, "Data directory of a store no worker holds (with --to)."},
    {"to", PD_OPT_STR, KOFF(to), "", 1, 0, "Backup directory (created if missing; must be empty or a profiled backup directory of the same schema)."},
    {"keep", PD_OPT_INT, KOFF(keep), "0", 0, 100000, "Keep only the newest N backups in --to (0 = all)."},
    {"url", PD_OPT_STR, KOFF(url), "", 1, 0, "A running worker's URL: it backs up into its own backup_dir now (POST /internal/v1/backup)."},
    {"token_file", PD_OPT_STR, KOFF(token_file), "", 1, 0, "With --url: file holding the cluster token (default: $PROFILED_CLUSTER_TOKEN, else $PROFILED_API_TOKEN)."},
    {"timeout_ms", PD_OPT_INT, KOFF(timeout_ms), "600000", 1000, 86400000, "With --url: how long to wait for the worker's backup."},
};
static const pd_opt restore_tbl[] = {
    {"from", PD_OPT_STR, KOFF(from), "", 1, 0, "Backup directory (required)."},
    {"data_dir", PD_OPT_STR, KOFF(data_dir), "", 1, 0, "New or empty data directory to restore into (required)."},
    {"id", PD_OPT_INT, KOFF(id), "0", 0, 4294967295.0, "Backup id to restore (0 = the newest)."},
    {"schema", PD_OPT_STR, KOFF(schema), "", 1, 0, "Refuse a backup of another schema: 'builtin' or a schema file, as the worker's --schema (default: no check here; the worker checks at start)."},
};
static const pd_opt list_tbl[] = {
    {"from", PD_OPT_STR, KOFF(from), "", 1, 0, "Backup directory (required)."},
};

static int parse(const char *name, const char *usage, const pd_opt *tbl, size_t n, bk_opts *o, int argc,
                 char **argv)
{
    char err[512];
    int help = 0;
    memset(o, 0, sizeof *o);
    pd_opts_defaults(tbl, n, o);
    pd_argv_extra ex = {0};
    if (pd_opts_parse_argv(tbl, n, o, argc, argv, &ex, &help, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl %s: %s\n", name, err);
        fprintf(stderr, "usage: %s\n", usage);
        return 2;
    }
    if (help) {
        printf("usage: %s\n\n", usage);
        pd_opts_usage(tbl, n, stdout);
        return 0;
    }
    return -1;
}

static void print_info(const pd_backup_info *b, const char *extra)
{
    printf("{\"id\":%u,\"timestamp\":%lld,\"size_bytes\":%llu,\"files\":%u%s}\n", b->id, (long long)b->timestamp,
           (unsigned long long)b->size, b->files, extra ? extra : "");
}

/* The cluster token for --url: --token_file, else the environment. */
static int token(const bk_opts *o, char *out, size_t cap)
{
    out[0] = 0;
    if (*o->token_file) {
        FILE *f = fopen(o->token_file, "rb");
        if (!f) {
            fprintf(stderr, "profilectl backup: --token_file %s: %s\n", o->token_file, strerror(errno));
            return -1;
        }
        size_t n = fread(out, 1, cap - 1, f);
        fclose(f);
        out[n] = 0;
        while (n && (out[n - 1] == '\n' || out[n - 1] == '\r')) out[--n] = 0;
        return 0;
    }
    const char *e = getenv("PROFILED_CLUSTER_TOKEN");
    if (!e || !*e) e = getenv("PROFILED_API_TOKEN");
    if (e) snprintf(out, cap, "%s", e);
    return 0;
}

static int backup_remote(const bk_opts *o)
{
    pd_peer_url u;
    if (pd_peer_url_parse(o->url, &u) != PD_OK) {
        fprintf(stderr, "profilectl backup: --url %s: not an http://host:port URL\n", o->url);
        return 2;
    }
    char tok[1024], hdr[1100], err[512];
    if (token(o, tok, sizeof tok)) return 1;
    hdr[0] = 0;
    if (*tok) snprintf(hdr, sizeof hdr, "Authorization: Bearer %s\r\n", tok);
    pd_peer_req rq = {.path_query = "/internal/v1/backup", .headers = hdr,
                      .deadline_us = pd_mono_us() + o->timeout_ms * 1000, .method = "POST"};
    pd_peer_resp r = {0};
    int rc = pd_peer_get(NULL, &u, &rq, &r, err, sizeof err);
    int ex = 1;
    if (rc != PD_OK) {
        fprintf(stderr, "profilectl backup: %s: %s\n", o->url, err);
    } else if (r.status != 200) {
        fprintf(stderr, "profilectl backup: the worker answered %d: %.*s\n", r.status, (int)PD_MIN(r.body.len, 500),
                r.body.p ? r.body.p : "");
    } else {
        printf("%.*s\n", (int)r.body.len, r.body.p);
        ex = 0;
    }
    pd_buf_free(&r.body);
    return ex;
}

int ctl_backup_main(int argc, char **argv)
{
    static const char usage[] = "profilectl backup (--data-dir D --to DIR [--keep N] | --url WORKER_URL)";
    bk_opts o;
    int ex = parse("backup", usage, backup_tbl, PD_ARRAY_LEN(backup_tbl), &o, argc, argv);
    if (ex >= 0) goto out;
    if (*o.url) {
        if (*o.data_dir || *o.to) {
            fprintf(stderr, "profilectl backup: --url backs up into the worker's own backup_dir; drop --data-dir/--to\n");
            ex = 2;
            goto out;
        }
        ex = backup_remote(&o);
        goto out;
    }
    if (!*o.data_dir || !*o.to) {
        fprintf(stderr, "profilectl backup: --data-dir and --to are required (or --url for a running worker)\n");
        ex = 2;
        goto out;
    }
    char cur[4096], err[1024];
    snprintf(cur, sizeof cur, "%s/CURRENT", o.data_dir);
    struct stat sb;
    if (stat(cur, &sb) != 0) {
        fprintf(stderr, "profilectl backup: --data-dir %s: not a store (no CURRENT file)\n", o.data_dir);
        ex = 1;
        goto out;
    }
    /* the store's own schema (read through a read-only instance), then the
     * read-write open a backup needs (RocksDB's lock: no worker on it) */
    pd_store *st = NULL;
    pd_schema schema;
    pd_store_opts ro = {.read_only = 1, .block_cache_mb = 8, .write_buffer_mb = 4, .day_filter_bits = -1};
    if (pd_store_open(&st, o.data_dir, NULL, &ro, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl backup: --data-dir %s: %s\n", o.data_dir, err);
        ex = 1;
        goto out;
    }
    schema = *pd_store_schema(st);
    pd_store_close(st);
    st = NULL;
    pd_store_opts so = {.block_cache_mb = 8, .write_buffer_mb = 4, .day_filter_bits = -1};
    if (pd_store_open(&st, o.data_dir, &schema, &so, err, sizeof err) != PD_OK) {
        if (strstr(err, "lock") || strstr(err, "LOCK") || strstr(err, "in use"))
            fprintf(stderr,
                    "profilectl backup: %s is in use by a running worker: run `profilectl backup --url "
                    "<its URL>` (it backs up into its backup_dir while it runs), or stop it first\n",
                    o.data_dir);
        else
            fprintf(stderr, "profilectl backup: --data-dir %s: %s\n", o.data_dir, err);
        ex = 1;
        goto out;
    }
    pd_backup_info bi;
    uint64_t added = 0;
    int64_t t0 = pd_mono_us();
    int rc = pd_backup_create(st, o.to, (uint32_t)o.keep, &bi, &added, err, sizeof err);
    int64_t dur = pd_mono_us() - t0;
    pd_store_close(st);
    if (rc != PD_OK) {
        fprintf(stderr, "profilectl backup: %s\n", err);
        ex = 1;
        goto out;
    }
    char extra[128];
    snprintf(extra, sizeof extra, ",\"added_bytes\":%llu,\"duration_ms\":%lld", (unsigned long long)added,
             (long long)(dur / 1000));
    print_info(&bi, extra);
    ex = 0;
out:
    pd_opts_free(backup_tbl, PD_ARRAY_LEN(backup_tbl), &o);
    return ex;
}

int ctl_restore_main(int argc, char **argv)
{
    static const char usage[] = "profilectl restore --from DIR --data-dir D [--id N] [--schema FILE|builtin]";
    bk_opts o;
    char err[1024];
    int ex = parse("restore", usage, restore_tbl, PD_ARRAY_LEN(restore_tbl), &o, argc, argv);
    if (ex >= 0) goto out;
    if (!*o.from || !*o.data_dir) {
        fprintf(stderr, "profilectl restore: --from and --data-dir are required\n");
        ex = 2;
        goto out;
    }
    uint64_t fp = 0;
    if (*o.schema) {
        pd_schema s;
        int rc = strcmp(o.schema, "builtin") == 0 ? (pd_schema_default(&s, 64), PD_OK)
                                                  : pd_schema_load_file(&s, o.schema, 0, err, sizeof err);
        if (rc != PD_OK) {
            fprintf(stderr, "profilectl restore: --schema: %s\n", err);
            ex = 1;
            goto out;
        }
        fp = s.fingerprint;
    }
    pd_backup_info bi;
    int64_t t0 = pd_mono_us();
    if (pd_backup_restore(o.from, (uint32_t)o.id, o.data_dir, fp, &bi, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl restore: %s\n", err);
        ex = 1;
        goto out;
    }
    char extra[128];
    snprintf(extra, sizeof extra, ",\"restored\":true,\"duration_ms\":%lld", (long long)((pd_mono_us() - t0) / 1000));
    print_info(&bi, extra);
    ex = 0;
out:
    pd_opts_free(restore_tbl, PD_ARRAY_LEN(restore_tbl), &o);
    return ex;
}

int ctl_backups_main(int argc, char **argv)
{
    static const char usage[] = "profilectl backups --from DIR";
    bk_opts o;
    char err[1024];
    int ex = parse("backups", usage, list_tbl, PD_ARRAY_LEN(list_tbl), &o, argc, argv);
    if (ex >= 0) goto out;
    if (!*o.from) {
        fprintf(stderr, "profilectl backups: --from is required\n");
        ex = 2;
        goto out;
    }
    pd_backup_info *v = NULL;
    int n = 0;
    uint64_t fp = 0;
    if (pd_backup_list(o.from, &v, &n, &fp, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl backups: %s\n", err);
        ex = 1;
        goto out;
    }
    char extra[64];
    snprintf(extra, sizeof extra, ",\"schema_fingerprint\":\"%016" PRIx64 "\"", fp);
    for (int i = 0; i < n; i++) print_info(&v[i], extra);
    pd_free(v);
    ex = 0;
out:
    pd_opts_free(list_tbl, PD_ARRAY_LEN(list_tbl), &o);
    return ex;
}

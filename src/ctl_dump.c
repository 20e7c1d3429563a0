/*
 * ctl_dump.c -- `profilectl dump | days | offsets | schema`: read-only
 * inspection of a worker's store.
 *
 *   dump     profiles, filtered by --day, --partition, --user; JSON lines
 *            {"day":..,"partition":..,"user_id":..,"profile":{..}} or text
 *   days     the day column families: profiles (user-days, counted by a
 *            scan), RocksDB's key estimate and bytes
 *   offsets  the committed checkpoint (next offset, clock) of each partition
 *   schema   the schema in canonical JSON (schema.h pd_schema_to_json: what
 *            the fingerprint hashes, a valid --schema file): the store's
 *            with --data-dir, else --schema FILE or the built-in one;
 *            --format json wraps it as {"fingerprint":..,"schema":..}, as
 *            GET /v1/schema answers
 *
 * The store is opened as a RocksDB secondary instance (pd_store_opts
 * read_only) in a throw-away scratch directory, so these commands work
 * while a worker holds the database and never modify it. Each run opens
 * afresh, so it sees every day family the worker has created so far.
 *
 * Schema: by default the schema recorded in the store is used. With
 * --schema FILE (or --schema builtin) that schema is loaded and the store
 * refuses to open if it differs from the recorded one.
 *
 * Numbers (text and JSON) are printed in the one number format of the API
 * (pd_fmt_double, docs/api.md "Numbers"), so dump and a query show the
 * same stored value alike.
 *
 * Exit codes: 0 success, 1 runtime failure (store cannot be opened, read
 * error, output error), 2 usage error (the message names the flag).
 */
#include "ctl.h"
#include "config.h"
#include "profile.h"
#include "schema.h"
#include "store.h"
#include "util.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data_dir;
    char *schema;        /* "" = the store's own schema; "builtin"; or a file */
    int64_t max_values;  /* 0 = from the schema file / 64 */
    char *day;           /* "" = every day */
    char *user;          /* "" = every user */
    int64_t partition;   /* -1 = every partition */
    char *format;        /* "json" | "text" */
} dump_opts;

#define DOFF(f) offsetof(dump_opts, f)
#define OPT_DATA_DIR \
    {"data_dir", PD_OPT_STR, DOFF(data_dir), "", 1, 0, "Data directory of the worker's store (required)."}
#define OPT_SCHEMA                                                                               \
    {"schema", PD_OPT_STR, DOFF(schema), "", 1, 0,                                               \
     "Schema to read with: a JSON file or 'builtin'; empty = the schema recorded in the store "  \
     "(a given schema must match it)."}
#define OPT_MAX_VALUES                                                                           \
    {"max_values", PD_OPT_INT, DOFF(max_values), "0", 0, 65536,                                    \
     "With --schema: categorical cap (0 = from the file, else 64)."}

static const pd_opt dump_tbl[] = {
    OPT_DATA_DIR,
    OPT_SCHEMA,
    OPT_MAX_VALUES,
    {"day", PD_OPT_STR, DOFF(day), "", 1, 0, "Only this day (YYYY-MM-DD)."},
    {"partition", PD_OPT_INT, DOFF(partition), "-1", -1, 2147483647.0, "Only this partition (-1 = all)."},
    {"user", PD_OPT_STR, DOFF(user), "", 1, 0, "Only this user_id."},
    {"format", PD_OPT_STR, DOFF(format), "json", 1, 0, "Output format: json (one object per line) or text."},
};

static const pd_opt days_tbl[] = {
    OPT_DATA_DIR,
    OPT_SCHEMA,
    OPT_MAX_VALUES,
    {"format", PD_OPT_STR, DOFF(format), "text", 1, 0, "Output format: text (table) or json (one object per line)."},
};

static const pd_opt offsets_tbl[] = {
    OPT_DATA_DIR,
    OPT_SCHEMA,
    OPT_MAX_VALUES,
    {"format", PD_OPT_STR, DOFF(format), "text", 1, 0, "Output format: text (table) or json (one object per line)."},
};

static const pd_opt schema_tbl[] = {
    {"data_dir", PD_OPT_STR, DOFF(data_dir), "", 1, 0,
     "Data directory of a store: print the schema recorded in it (else --schema, else the built-in one)."},
    {"schema", PD_OPT_STR, DOFF(schema), "", 1, 0,
     "Without --data-dir: a schema JSON file to check and print canonical, or 'builtin' (the default)."},
    OPT_MAX_VALUES,
    {"format", PD_OPT_STR, DOFF(format), "schema", 1, 0,
     "Output: schema (the canonical JSON alone, usable as --schema) or json ({\"fingerprint\",\"schema\"})."},
};

typedef struct {
    const char *name;
    const char *summary;
    const pd_opt *tbl;
    size_t n;
} dump_cmd;

static const dump_cmd cmd_dump = {
    "dump", "Prints stored profiles (one per day, partition and user).", dump_tbl,
    PD_ARRAY_LEN(dump_tbl)};
static const dump_cmd cmd_days = {
    "days", "Lists the day column families: profiles (user-days, counted), RocksDB's estimated keys (merge operands included) and bytes.", days_tbl,
    PD_ARRAY_LEN(days_tbl)};
static const dump_cmd cmd_schema = {
    "schema", "Prints a schema in canonical JSON: the one recorded in a store, a file's, or the built-in one.",
    schema_tbl, PD_ARRAY_LEN(schema_tbl)};
static const dump_cmd cmd_offsets = {
    "offsets", "Lists the committed checkpoint of each partition.", offsets_tbl,
    PD_ARRAY_LEN(offsets_tbl)};

static void usage(const dump_cmd *c, FILE *out)
{
    fprintf(out,
            "usage: profilectl %s %s[options]\n%s\n"
            "Opens the store read-only (a RocksDB secondary instance); safe while a worker runs.\n\n",
            c->name, c == &cmd_schema ? "" : "--data-dir DIR ", c->summary);
    pd_opts_usage(c->tbl, c->n, out);
    fprintf(out, "  %-34s %s\n", "--help", "Show this help.");
    fprintf(out, "Flags take '-' or '_' alike (--data-dir == --data_dir) and --name=value.\n");
}

/* 1 when `key` names an option of c ('-' and '_' alike). */
static int known_flag(const dump_cmd *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *a = c->tbl[i].name, *b = key;
        while (*a && *b && (*a == *b || (*a == '_' && *b == '-'))) a++, b++;
        if (!*a && !*b) return 1;
    }
    return 0;
}

static int dump_allow(const void *ctx, const char *key)
{
    return known_flag(ctx, key);
}

/* Parses the flags (config.h machinery) and checks the combinations. */
static int parse_args(const dump_cmd *c, dump_opts *o, int argc, char **argv, int *help,
                      char *err, size_t errlen)
{
    pd_argv_extra ex = {.allow = dump_allow, .allow_ctx = c};
    int rc = pd_opts_parse_argv(c->tbl, c->n, o, argc, argv, &ex, help, err, errlen);
    if (rc || *help) return rc;
    if (c == &cmd_schema) {
        if (strcmp(o->format, "json") != 0 && strcmp(o->format, "schema") != 0)
            return pd_seterr(err, errlen, PD_EINVAL, "--format: '%s' is not schema or json", o->format);
        if (*o->data_dir && *o->schema)
            return pd_seterr(err, errlen, PD_EINVAL, "--data-dir and --schema: give one (a store records its schema)");
        if (o->max_values && *o->data_dir)
            return pd_seterr(err, errlen, PD_EINVAL, "--max-values with --data-dir: the store's schema has its own cap");
        return PD_OK;
    }
    if (!o->data_dir || !*o->data_dir)
        return pd_seterr(err, errlen, PD_EINVAL, "--data-dir is required");
    if (o->format && strcmp(o->format, "json") != 0 && strcmp(o->format, "text") != 0)
        return pd_seterr(err, errlen, PD_EINVAL, "--format: '%s' is not json or text", o->format);
    if (o->max_values && (!o->schema || !*o->schema))
        return pd_seterr(err, errlen, PD_EINVAL,
                         "--max-values needs --schema (the store's schema has its own cap)");
    return PD_OK;
}

/* Opens the store read-only with the chosen schema. *schema is malloc'd
 * (NULL when the store's own schema is used); free after closing. Returns
 * an exit code (0 ok, 1 runtime error). */
/* Loads --schema ("builtin" or "": the built-in one, else a file) into a
 * malloc'd *schema. Returns an exit code (0 ok, 1 said on stderr). */
static int load_schema(const dump_cmd *c, const dump_opts *o, pd_schema **schema)
{
    char err[1024];
    pd_schema *s = pd_calloc(1, sizeof *s);
    if (!*o->schema || strcmp(o->schema, "builtin") == 0) {
        pd_schema_default(s, (uint32_t)o->max_values);
    } else if (pd_schema_load_file(s, o->schema, (uint32_t)o->max_values, err, sizeof err)) {
        fprintf(stderr, "profilectl %s: --schema: %s\n", c->name, err);
        pd_free(s);
        return 1;
    }
    *schema = s;
    return 0;
}

static int open_ro(const dump_cmd *c, const dump_opts *o, pd_store **st, pd_schema **schema)
{
    char err[1024];
    *st = NULL;
    *schema = NULL;
    if (*o->schema && load_schema(c, o, schema) != 0) return 1;
    pd_store_opts so = {0};
    so.read_only = 1;
    so.block_cache_mb = 16;
    so.write_buffer_mb = 4;
    if (pd_store_open(st, o->data_dir, *schema, &so, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl %s: --data-dir %s: %s\n", c->name, o->data_dir, err);
        pd_free(*schema);
        *schema = NULL;
        return 1;
    }
    return 0;
}

/* Flushes buf to stdout; returns 0 or -1 on a write error. */
static int flush_out(pd_buf *b)
{
    int rc = 0;
    if (b->len && fwrite(b->p, 1, b->len, stdout) != b->len) rc = -1;
    b->len = 0;
    return rc;
}

/* Writes what is left in b (NULL: nothing) and flushes stdout; returns the
 * exit code (1 after a write error, said on stderr). */
static int finish_out(const dump_cmd *c, pd_buf *b)
{
    if ((b && flush_out(b) != 0) || fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "profilectl %s: error writing output\n", c->name);
        return 1;
    }
    return 0;
}

/* ---- text rendering ---- */

typedef struct {
    const pd_catval *v;
    uint64_t count;
} catref;

static int catref_cmp(const void *x, const void *y)
{
    const catref *ra = x, *rb = y;
    const pd_catval *a = ra->v, *b = rb->v;
    if (ra->count != rb->count) return ra->count > rb->count ? -1 : 1;
    size_t n = PD_MIN(a->len, b->len);
    int c = memcmp(pd_catval_str(a), pd_catval_str(b), n);
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

/* "v1"=3 "v2"=1 __other__=2, most frequent first; " (approximate)" after
 * an overflowed catset, whose counts are its sketch's estimates. */
static void text_catset(pd_buf *b, const pd_catset *c)
{
    catref *r = pd_malloc((size_t)(c->n ? c->n : 1) * sizeof *r);
    for (uint32_t i = 0; i < c->n; i++) {
        r[i].v = &c->vals[i];
        r[i].count = pd_catset_count(c, i);
    }
    qsort(r, c->n, sizeof *r, catref_cmp);
    for (uint32_t i = 0; i < c->n; i++) {
        pd_buf_putc(b, ' ');
        pd_buf_json_str(b, pd_catval_str(r[i].v), r[i].v->len);
        pd_buf_printf(b, "=%" PRIu64, r[i].count);
    }
    uint64_t other = pd_catset_other(c);
    if (other) pd_buf_printf(b, " %s=%" PRIu64, PD_OTHER, other);
    if (pd_catset_overflowed(c)) PD_BUF_LIT(b, " (approximate)");
    pd_free(r);
}

static void text_profile(pd_buf *b, int64_t day, int32_t partition, const char *user, size_t ulen,
                         const pd_profile *p)
{
    char ds[11], t1[32], t2[32];
    pd_day_format(day, ds);
    pd_buf_printf(b, "%s partition %d user ", ds, partition);
    pd_buf_json_str(b, user, ulen);
    pd_ts_format(p->first_ts, t1);
    pd_ts_format(p->last_ts, t2);
    pd_buf_printf(b, "\n  events %" PRIu64 "  first %s  last %s\n  types:", p->events, t1, t2);
    text_catset(b, &p->types);
    pd_buf_putc(b, '\n');
    const pd_schema *s = p->schema;
    for (int i = 0; i < s->ndims; i++) {
        const pd_dim *d = &s->dims[i];
        if (d->type == PD_DIM_CATEGORICAL) {
            const pd_catset *c = &p->dims[i].cat;
            if (pd_catset_total(c) == 0) continue;
            pd_buf_printf(b, "  %s (total %" PRIu64 "):", d->name, pd_catset_total(c));
            text_catset(b, c);
            pd_buf_putc(b, '\n');
        } else {
            const pd_numagg *a = &p->dims[i].num;
            if (a->count == 0) continue;
            pd_buf_printf(b, "  %s: count %" PRIu64 " sum ", d->name, a->count);
            pd_buf_put_double(b, a->sum, 0);
            PD_BUF_LIT(b, " min ");
            pd_buf_put_double(b, a->min, 0);
            PD_BUF_LIT(b, " max ");
            pd_buf_put_double(b, a->max, 0);
            PD_BUF_LIT(b, " mean ");
            pd_buf_put_double(b, a->sum / (double)a->count, 0);
            pd_buf_putc(b, '\n');
            if (a->hist) {
                pd_buf_printf(b, "    histogram:");
                for (int k = 0; k <= d->nbounds; k++) {
                    if (k < d->nbounds) {
                        PD_BUF_LIT(b, " <=");
                        pd_buf_put_double(b, d->bounds[k], 0);
                        pd_buf_putc(b, ':');
                    } else {
                        pd_buf_printf(b, " +Inf:");
                    }
                    pd_buf_printf(b, "%" PRIu64, a->hist[k]);
                }
                pd_buf_putc(b, '\n');
            }
        }
    }
}

/* ---- dump ---- */

typedef struct {
    int json;
    pd_buf out;
    uint64_t n;
    int werr;
} dump_ctx;

static int dump_visit(void *arg, int64_t day, int32_t partition, const char *user, size_t ulen,
                      const pd_profile *prof)
{
    dump_ctx *d = arg;
    if (d->json) {
        char ds[11];
        pd_day_format(day, ds);
        pd_buf_printf(&d->out, "{\"day\":\"%s\",\"partition\":%d,\"user_id\":", ds, partition);
        pd_buf_json_str(&d->out, user, ulen);
        pd_buf_printf(&d->out, ",\"profile\":");
        pd_profile_to_json(prof, &d->out);
        pd_buf_printf(&d->out, "}\n");
    } else {
        if (d->n) pd_buf_putc(&d->out, '\n');
        text_profile(&d->out, day, partition, user, ulen, prof);
    }
    d->n++;
    if (d->out.len >= 1 << 16 && flush_out(&d->out) != 0) {
        d->werr = 1;
        return 1; /* stop the scan */
    }
    return 0;
}

static int run(const dump_cmd *c, int argc, char **argv, dump_opts *o, int *help)
{
    char err[512];
    memset(o, 0, sizeof *o);
    pd_opts_defaults(c->tbl, c->n, o);
    if (parse_args(c, o, argc, argv, help, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl %s: %s\n", c->name, err);
        fprintf(stderr, "run 'profilectl %s --help' for usage\n", c->name);
        return 2;
    }
    if (*help) {
        usage(c, stdout);
        return 0;
    }
    return -1; /* go on */
}

int ctl_dump_main(int argc, char **argv)
{
    const dump_cmd *c = &cmd_dump;
    dump_opts o;
    int help, ex = run(c, argc, argv, &o, &help);
    pd_store *st = NULL;
    pd_schema *schema = NULL;
    dump_ctx d = {0};
    if (ex >= 0) goto out;
    int64_t day = INT64_MIN;
    if (*o.day && pd_day_parse(o.day, strlen(o.day), &day) != PD_OK) {
        fprintf(stderr, "profilectl dump: --day: '%s' is not a date (YYYY-MM-DD)\n", o.day);
        ex = 2;
        goto out;
    }
    if ((ex = open_ro(c, &o, &st, &schema)) != 0) goto out;
    d.json = strcmp(o.format, "json") == 0;
    char err[512];
    int rc = pd_store_scan(st, day, (int32_t)o.partition, *o.user ? o.user : NULL, strlen(o.user),
                           dump_visit, &d, err, sizeof err);
    if (d.werr || flush_out(&d.out) != 0) {
        fprintf(stderr, "profilectl dump: error writing output\n");
        ex = 1;
        goto out;
    }
    if (rc) {
        fprintf(stderr, "profilectl dump: %s\n", err);
        ex = 1;
        goto out;
    }
    if (*o.user && d.n == 0) {
        /* Asked for one user: none is an answer the caller must see. */
        fprintf(stderr, "profilectl dump: no profile for user %s\n", o.user);
        ex = 1;
        goto out;
    }
    ex = finish_out(c, NULL);
out:
    pd_buf_free(&d.out);
    pd_store_close(st);
    pd_free(schema);
    pd_opts_free(c->tbl, c->n, &o);
    return ex;
}

static int count_visit(void *arg, int64_t day, int32_t partition, const char *user, size_t ulen,
                       const pd_profile *prof)
{
    (void)day, (void)partition, (void)user, (void)ulen, (void)prof;
    (*(uint64_t *)arg)++;
    return 0;
}

int ctl_days_main(int argc, char **argv)
{
    const dump_cmd *c = &cmd_days;
    dump_opts o;
    int help, ex = run(c, argc, argv, &o, &help);
    pd_store *st = NULL;
    pd_schema *schema = NULL;
    pd_day_stats *ds = NULL;
    pd_buf b = {0};
    if (ex >= 0) goto out;
    if ((ex = open_ro(c, &o, &st, &schema)) != 0) goto out;
    int n = 0;
    pd_store_day_stats(st, &ds, &n);
    int json = strcmp(o.format, "json") == 0;
    if (!json) pd_buf_printf(&b, "%-10s %12s %14s %14s\n", "DAY", "PROFILES", "EST_KEYS", "BYTES");
    for (int i = 0; i < n; i++) {
        char d[11], err[512];
        pd_day_format(ds[i].day, d);
        /* Profiles (user-days) counted by a scan: RocksDB's key estimate
         * also counts merge operands not yet compacted. */
        uint64_t profiles = 0;
        if (pd_store_scan(st, ds[i].day, -1, NULL, 0, count_visit, &profiles, err, sizeof err) != PD_OK) {
            fprintf(stderr, "profilectl days: %s: %s\n", d, err);
            ex = 1;
            goto out;
        }
        if (json)
            pd_buf_printf(&b,
                          "{\"day\":\"%s\",\"profiles\":%" PRIu64 ",\"estimated_keys\":%" PRIu64
                          ",\"bytes\":%" PRIu64 "}\n",
                          d, profiles, ds[i].keys, ds[i].bytes);
        else
            pd_buf_printf(&b, "%-10s %12" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n", d, profiles, ds[i].keys,
                          ds[i].bytes);
    }
    ex = finish_out(c, &b);
out:
    pd_buf_free(&b);
    pd_free(ds);
    pd_store_close(st);
    pd_free(schema);
    pd_opts_free(c->tbl, c->n, &o);
    return ex;
}

int ctl_offsets_main(int argc, char **argv)
{
    const dump_cmd *c = &cmd_offsets;
    dump_opts o;
    int help, ex = run(c, argc, argv, &o, &help);
    pd_store *st = NULL;
    pd_schema *schema = NULL;
    pd_checkpoint *cp = NULL;
    pd_buf b = {0};
    if (ex >= 0) goto out;
    if ((ex = open_ro(c, &o, &st, &schema)) != 0) goto out;
    int n = 0;
    int rc = pd_store_list_checkpoints(st, &cp, &n);
    if (rc) {
        fprintf(stderr, "profilectl offsets: reading checkpoints failed (%s)\n",
                rc == PD_ECORRUPT ? "corrupt checkpoint record" : "I/O error");
        ex = 1;
        goto out;
    }
    int json = strcmp(o.format, "json") == 0;
    if (!json) pd_buf_printf(&b, "%-9s %14s  %s\n", "PARTITION", "NEXT_OFFSET", "CLOCK");
    for (int i = 0; i < n; i++) {
        char ts[32];
        if (cp[i].clock_ms > 0) pd_ts_format(cp[i].clock_ms, ts);
        else snprintf(ts, sizeof ts, "-");
        if (json) {
            pd_buf_printf(&b, "{\"partition\":%d,\"next_offset\":%" PRId64 ",\"clock_ms\":%" PRId64
                              ",\"clock\":",
                          cp[i].partition, cp[i].next_offset, cp[i].clock_ms);
            if (cp[i].clock_ms > 0) pd_buf_printf(&b, "\"%s\"}\n", ts);
            else pd_buf_printf(&b, "null}\n");
        } else {
            pd_buf_printf(&b, "%-9d %14" PRId64 "  %s\n", cp[i].partition, cp[i].next_offset, ts);
        }
    }
    ex = finish_out(c, &b);
out:
    pd_buf_free(&b);
    pd_free(cp);
    pd_store_close(st);
    pd_free(schema);
    pd_opts_free(c->tbl, c->n, &o);
    return ex;
}

int ctl_schema_main(int argc, char **argv)
{
    const dump_cmd *c = &cmd_schema;
    dump_opts o;
    int help, ex = run(c, argc, argv, &o, &help);
    pd_store *st = NULL;
    pd_schema *schema = NULL;
    pd_buf b = {0};
    if (ex >= 0) goto out;
    const pd_schema *s;
    if (*o.data_dir) {
        if ((ex = open_ro(c, &o, &st, &schema)) != 0) goto out;
        s = pd_store_schema(st);
    } else {
        if ((ex = load_schema(c, &o, &schema)) != 0) goto out;
        s = schema;
    }
    if (strcmp(o.format, "json") == 0) pd_schema_describe(s, &b);
    else pd_schema_to_json(s, &b);
    pd_buf_putc(&b, '\n');
    ex = finish_out(c, &b);
out:
    pd_buf_free(&b);
    pd_store_close(st);
    pd_free(schema);
    pd_opts_free(c->tbl, c->n, &o);
    return ex;
}

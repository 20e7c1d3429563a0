/*
 * ctl_export.c -- `profilectl export`: profiles as they were at the end of
 * a past day, as JSON lines, for training data (point-in-time features).
 *
 * Each line is exactly the object GET /v1/profiles/{user}?at=DAY&<options>
 * answers (the same pd_query_parse_params and pd_query_render), without
 * "served_by". Users: those of --users FILE (one id per line; ids without
 * a profile in range are skipped and counted on stderr), or every user with
 * a profile in the range. The store is opened read-only (a RocksDB
 * secondary: it works beside a running worker) with its own schema.
 * Retention bounds how far back it reaches: each line says
 * "at_before_retention" when DAY is older than the retained days of today.
 */
#include "config.h"
#include "ctl.h"
#include "query.h"
#include "schema.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data_dir;
    char *at;
    char *users;
    char *days;
    char *dims;
    char *decay;
    char *top;
    char *types;
    char *weights;
    char *recent;
    int64_t retention_days;
} ex_opts;

#define XOFF(f) offsetof(ex_opts, f)
static const pd_opt export_tbl[] = {
    {"data_dir", PD_OPT_STR, XOFF(data_dir), "", 1, 0, "Data directory of a worker's store (required; read-only, works while the worker runs)."},
    {"at", PD_OPT_STR, XOFF(at), "", 1, 0, "The day (YYYY-MM-DD, not after today, UTC) the profiles are taken at the end of (required)."},
    {"users", PD_OPT_STR, XOFF(users), "", 1, 0, "File of user ids, one per line (default: every user with a profile in the range)."},
    {"days", PD_OPT_STR, XOFF(days), "", 1, 0, "Range: the N days ending at --at (as the query's days=; default: retention_days)."},
    {"dims", PD_OPT_STR, XOFF(dims), "", 1, 0, "Comma list of dimensions (as the query's dims=)."},
    {"decay", PD_OPT_STR, XOFF(decay), "", 1, 0, "exp:H | linear:N | none (as the query's decay=; ages count from --at)."},
    {"top", PD_OPT_STR, XOFF(top), "", 1, 0, "Values per categorical dimension (as the query's top=)."},
    {"types", PD_OPT_STR, XOFF(types), "", 1, 0, "Comma list of tracked event types to count alone (as the query's types=)."},
    {"weights", PD_OPT_STR, XOFF(weights), "", 1, 0, "type:weight list, '*' for the rest (as the query's weights=)."},
    {"recent", PD_OPT_STR, XOFF(recent), "", 1, 0, "At most N recent items per user, 0 for none (as the query's recent=)."},
    {"retention_days", PD_OPT_INT, XOFF(retention_days), "60", 1, 3650, "The workers' retention_days (the default range, and the at_before_retention flag)."},
};
#define EXPORT_TBL_LEN PD_ARRAY_LEN(export_tbl)

typedef struct {
    int32_t p;
    char *user;
} ex_user;

typedef struct {
    ex_user *v;
    size_t n, cap;
} ex_users;

static void users_add(ex_users *u, int32_t p, const char *user, size_t ulen)
{
    if (u->n == u->cap) {
        u->cap = u->cap ? u->cap * 2 : 1024;
        u->v = pd_realloc(u->v, u->cap * sizeof *u->v);
    }
    u->v[u->n].p = p;
    u->v[u->n].user = pd_strndup(user, ulen);
    u->n++;
}

static int user_cmp(const void *a, const void *b)
{
    const ex_user *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    return c ? c : (x->p > y->p) - (x->p < y->p);
}

static int visit(void *arg, int64_t day, int32_t partition, const char *user, size_t ulen, const pd_profile *prof)
{
    (void)day;
    (void)prof;
    users_add(arg, partition, user, ulen);
    return 0;
}

/* Appends "&name=value" (value percent-encoded) when value is set. */
static void qs_add(pd_buf *qs, const char *name, const char *value)
{
    if (!value || !*value) return;
    pd_buf_printf(qs, "%s%s=", qs->len ? "&" : "", name);
    pd_pct_encode(qs, value, strlen(value));
}

/* 1 when id is in the sorted list of wanted ids. */
static int wanted(char **want, size_t nwant, const char *id)
{
    size_t lo = 0, hi = nwant;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(want[mid], id);
        if (c == 0) return 1;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ctl_export_main(int argc, char **argv)
{
    ex_opts o;
    char err[1024];
    int help = 0, ex = 1;
    pd_store *st = NULL;
    ex_users us = {0};
    char **want = NULL;
    size_t nwant = 0, capwant = 0;
    pd_buf qs = {0}, out = {0};
    pd_store_range rg = {0};
    memset(&o, 0, sizeof o);
    pd_opts_defaults(export_tbl, EXPORT_TBL_LEN, &o);
    pd_argv_extra xa = {0};
    if (pd_opts_parse_argv(export_tbl, EXPORT_TBL_LEN, &o, argc, argv, &xa, &help, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl export: %s\n", err);
        ex = 2;
        goto out;
    }
    if (help) {
        printf("usage: profilectl export --data-dir D --at YYYY-MM-DD [--users FILE] [--days N] [--dims ...] "
               "[--decay ...] [--top K] [--types ...] [--weights ...] [--recent N]\nPrints each user's profile as of the end of --at, one JSON object per "
               "line (the API's answer for ?at=...).\n\n");
        pd_opts_usage(export_tbl, EXPORT_TBL_LEN, stdout);
        ex = 0;
        goto out;
    }
    if (!*o.data_dir || !*o.at) {
        fprintf(stderr, "profilectl export: --data-dir and --at are required\n");
        ex = 2;
        goto out;
    }
    qs_add(&qs, "at", o.at);
    qs_add(&qs, "days", o.days);
    qs_add(&qs, "dims", o.dims);
    qs_add(&qs, "decay", o.decay);
    qs_add(&qs, "top", o.top);
    qs_add(&qs, "types", o.types);
    qs_add(&qs, "weights", o.weights);
    qs_add(&qs, "recent", o.recent);
    pd_store_opts so = {.read_only = 1, .block_cache_mb = 64, .write_buffer_mb = 4, .day_filter_bits = -1};
    if (pd_store_open(&st, o.data_dir, NULL, &so, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl export: --data-dir %s: %s\n", o.data_dir, err);
        goto out;
    }
    const pd_schema *s = pd_store_schema(st);
    pd_query q;
    int64_t today = pd_now_ms() / 86400000;
    pd_buf_putc(&qs, '\0');
    if (pd_query_parse_params(&q, qs.p, s, today, o.retention_days, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl export: %s\n", err);
        ex = 2;
        goto out;
    }
    if (*o.users) {
        FILE *f = strcmp(o.users, "-") == 0 ? stdin : fopen(o.users, "r");
        if (!f) {
            fprintf(stderr, "profilectl export: --users %s: %s\n", o.users, strerror(errno));
            goto out;
        }
        char line[4096];
        while (fgets(line, sizeof line, f)) {
            size_t l = strcspn(line, "\r\n");
            line[l] = 0;
            if (!l) continue;
            if (nwant == capwant) {
                capwant = capwant ? capwant * 2 : 256;
                want = pd_realloc(want, capwant * sizeof *want);
            }
            want[nwant++] = pd_strdup(line);
        }
        if (f != stdin) fclose(f);
        qsort(want, nwant, sizeof *want, str_cmp);
    }
    /* the users with a profile in the range (each day family once) */
    for (int64_t d = q.from_day; d <= q.to_day; d++) {
        int rc = pd_store_scan(st, d, -1, NULL, 0, visit, &us, err, sizeof err);
        if (rc != PD_OK && rc != PD_ENOTFOUND) {
            fprintf(stderr, "profilectl export: reading the store: %s\n", err);
            goto out;
        }
    }
    qsort(us.v, us.n, sizeof *us.v, user_cmp);
    size_t written = 0, found = 0;
    for (size_t i = 0; i < us.n; i++) {
        if (i && strcmp(us.v[i].user, us.v[i - 1].user) == 0 && us.v[i].p == us.v[i - 1].p) continue;
        if (want && !wanted(want, nwant, us.v[i].user)) continue;
        found++;
        size_t ul = strlen(us.v[i].user);
        if (pd_store_get_profile_range(st, NULL, q.from_day, q.to_day, us.v[i].p, us.v[i].user, ul, &rg, err,
                                       sizeof err) != PD_OK) {
            fprintf(stderr, "profilectl export: user %s: %s\n", us.v[i].user, err);
            goto out;
        }
        pd_query_day qd_s[64], *qd = rg.n <= 64 ? qd_s : pd_malloc((size_t)rg.n * sizeof *qd);
        for (int k = 0; k < rg.n; k++) qd[k] = (pd_query_day){rg.days[k], &rg.profs[k]};
        int rc = pd_query_render(&q, s, us.v[i].user, ul, us.v[i].p, q.anchor_day, qd, rg.n, &out);
        if (qd != qd_s) pd_free(qd);
        if (rc == PD_OK) {
            pd_buf_puts(&out, "}\n");
            written++;
        }
        if (out.len > (1 << 20)) {
            if (fwrite(out.p, 1, out.len, stdout) != out.len) goto werr;
            out.len = 0;
        }
    }
    if (out.len && fwrite(out.p, 1, out.len, stdout) != out.len) goto werr;
    if (fflush(stdout) != 0) goto werr;
    if (want) fprintf(stderr, "profilectl export: %zu of %zu listed users have a profile in the range\n", found, nwant);
    fprintf(stderr, "profilectl export: %zu profile(s) as of %s\n", written, o.at);
    ex = 0;
    goto out;
werr:
    fprintf(stderr, "profilectl export: error writing output\n");
    ex = 1;
out:
    for (size_t i = 0; i < us.n; i++) pd_free(us.v[i].user);
    pd_free(us.v);
    for (size_t i = 0; i < nwant; i++) pd_free(want[i]);
    pd_free(want);
    pd_store_range_free(&rg);
    pd_buf_free(&qs);
    pd_buf_free(&out);
    pd_store_close(st);
    pd_opts_free(export_tbl, EXPORT_TBL_LEN, &o);
    return ex;
}

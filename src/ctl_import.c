/*
 * ctl_import.c -- `profilectl import`: builds a store from archived events
 * (JSON lines, gzip or plain; one event per line, keyed by its user id)
 * through the worker's own code: parse + validate (event.c), the future
 * bound (rectime.c), clock + retention + de-dup (admit.c, dedup.c), the
 * batch and its profile deltas (batch.c) and the store's WriteBatch
 * (store_write.c). Only the lines of the chosen partitions (Kafka's
 * murmur2 partitioner, pd_partition_for) with ts <= --until are imported.
 *
 * The archive has no record timestamps: a line is a record without one
 * (rectime.h), so its delivery time -- what the de-dup window is measured
 * on -- is its event time, and the future bound is the importer's clock.
 *
 * What the store holds afterwards (store.h "Imported stores"): the
 * profiles and the de-dup records of the imported events, per partition a
 * checkpoint at offset 0 with the archive's clock, and the start time
 * T = --until. A worker that takes on such a partition resolves T to the
 * topic's first offset stamped at or after T - max_future_skew
 * (partition.c, tsoffset.c: offsets_for_times, checked, or a scan of
 * record timestamps) and continues there; the events of the
 * overlap (ts <= T, also in the archive) are dropped by the de-dup rule,
 * since their ids are in the index: an overlap event counts once when it
 * has an event_id and reached the topic within dedup_window of its ts.
 *
 * Crash safety: the store is marked "running" (synchronously) before the
 * first commit; the checkpoints, start times and the "done" mark are
 * written by the last commit, one WriteBatch. A worker refuses a
 * "running" store, and an import into one deletes it and starts over, so
 * a kill -9 at any point followed by the same import gives the same
 * store. Any other non-empty directory is refused.
 *
 * Bad lines never stop the import and never disappear: each is counted by
 * reason (the DLQ's reason names, event.h) and written to the rejects
 * file as {"file","line","reason","detail","raw"} ("raw_hex" instead of
 * "raw" when the line is not UTF-8). Lines that are valid but not
 * imported are counted too (after_until, other_partition, too_old,
 * duplicate). Progress goes to stderr every --progress-every; the summary
 * is one JSON object on stdout.
 *
 * Settings that change decisions (schema, categorical_max_values,
 * timezone, retention_days, dedup_window, dedup_max_ids, max_event_bytes,
 * max_future_skew) are the workers': read from their config file
 * (--config), defaults otherwise.
 */
#include "admit.h"
#include "batch.h"
#include "config.h"
#include "ctl.h"
#include "dedup.h"
#include "event.h"
#include "profile.h"
#include "rectime.h"
#include "schema.h"
#include "store.h"
#include "util.h"

#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef struct {
    char *input;
    char *data_dir;
    char *until;
    char *config;
    char *rejects;
    int64_t partitions;
    int64_t batch_events;
    int64_t progress_every_ms;
} im_opts;

#define IOFF(f) offsetof(im_opts, f)
static const pd_opt import_tbl[] = {
    {"input", PD_OPT_STR, IOFF(input), "", 1, 0, "Archive files: a glob (quote it), e.g. 'archive/*.jsonl.gz'; gzip or plain JSON lines, read in name order (required)."},
    {"data_dir", PD_OPT_STR, IOFF(data_dir), "", 1, 0, "Data directory of the new store: absent or empty (or a half-written import, which is started over) (required)."},
    {"partitions", PD_OPT_INT, IOFF(partitions), "0", 0, 100000, "The input topic's partition count (required): a line's partition is murmur2(user_id) % N, as Kafka's default partitioner."},
    {"until", PD_OPT_STR, IOFF(until), "", 1, 0, "RFC 3339 time or epoch ms (required): events with a later ts are not imported; workers continue from the topic there."},
    {"config", PD_OPT_STR, IOFF(config), "", 1, 0, "The workers' config file: schema, timezone, retention_days, dedup_window, dedup_max_ids, max_event_bytes, max_future_skew, categorical_max_values."},
    {"rejects", PD_OPT_STR, IOFF(rejects), "", 1, 0, "File the bad lines go to, as JSON lines with reasons (default: DATA_DIR.rejects.jsonl)."},
    {"batch_events", PD_OPT_INT, IOFF(batch_events), "200000", 1, 100000000, "Events per commit."},
    {"progress_every", PD_OPT_DURATION, IOFF(progress_every_ms), "10s", 0, 86400000, "Progress line on stderr this often (0 = none)."},
};
#define IMPORT_TBL_LEN PD_ARRAY_LEN(import_tbl)

typedef struct {
    uint64_t lines, accepted, duplicate, too_old, after_until, other_partition;
    uint64_t rejected[PD_EV__COUNT];
    uint64_t rejected_total;
    uint64_t commits;
} im_counts;

typedef struct {
    const pd_schema *schema;
    const pd_config *cfg;
    pd_admit_rules rules;
    int32_t nparts;
    char *chosen;          /* [nparts] */
    int64_t until_ms;
    pd_store *st;
    pd_batch batch;
    pd_profile scratch;
    pd_dedup *dd;          /* [nparts] */
    int64_t *clock;        /* [nparts] */
    uint64_t seq;          /* de-dup record key of the next commit (1, 2, ...; store.h) */
    FILE *rej;
    pd_buf rejline;
    im_counts c;
    int64_t wall_ms;
} importer;

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int dir_nonempty(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/CURRENT", dir);
    struct stat stt;
    if (stat(p, &stt) == 0) return 1;
    glob_t g;
    snprintf(p, sizeof p, "%s/*", dir);
    int r = glob(p, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    return r;
}

static void reject(importer *im, const char *file, uint64_t lineno, int reason, const char *detail, const char *line,
                   size_t len)
{
    im->c.rejected[reason]++;
    im->c.rejected_total++;
    pd_buf *b = &im->rejline;
    b->len = 0;
    PD_BUF_LIT(b, "{\"file\":");
    pd_buf_json_str(b, file, strlen(file));
    PD_BUF_LIT(b, ",\"line\":");
    pd_buf_put_u64(b, lineno);
    PD_BUF_LIT(b, ",\"reason\":");
    pd_buf_puts(b, "\"");
    pd_buf_puts(b, pd_ev_reason_name(reason));
    PD_BUF_LIT(b, "\",\"detail\":");
    pd_buf_json_str(b, detail, strlen(detail));
    if (pd_utf8_valid(line, len)) {
        PD_BUF_LIT(b, ",\"raw\":");
        pd_buf_json_str(b, line, len);
    } else {
        static const char hex[] = "0123456789abcdef";
        PD_BUF_LIT(b, ",\"raw_hex\":\"");
        for (size_t i = 0; i < len; i++) {
            char h[2] = {hex[(unsigned char)line[i] >> 4], hex[(unsigned char)line[i] & 15]};
            pd_buf_append(b, h, 2);
        }
        PD_BUF_LIT(b, "\"");
    }
    PD_BUF_LIT(b, "}\n");
    fwrite(b->p, 1, b->len, im->rej);
}

/* One commit of what the batch and the de-dup indexes hold: the worker's
 * flush without offsets (store.h "Imported stores"). `last` also writes
 * the checkpoints and start times. */
static int commit(importer *im, int last, char *err, size_t errlen)
{
    pd_store_batch *sb = pd_store_batch_new(im->st);
    uint64_t seq = ++im->seq, writes = 0;
    for (int32_t p = 0; p < im->nparts; p++) {
        if (!im->chosen[p]) continue;
        pd_dedup_stage(&im->dd[p], sb, p, seq, im->rules.dedup_window_ms);
        if (last) {
            pd_store_batch_set_checkpoint(sb, p, 0, im->clock[p]);
            pd_store_batch_set_start_time(sb, p, im->until_ms);
        }
    }
    int rc = pd_batch_build(&im->batch, sb, &im->scratch, &writes, err, errlen);
    if (!rc) rc = pd_store_commit(im->st, sb, err, errlen);
    pd_batch_clear(&im->batch);
    pd_store_batch_free(sb);
    if (!rc) im->c.commits++;
    return rc;
}

static void line_in(importer *im, const char *file, uint64_t lineno, const char *line, size_t len)
{
    im->c.lines++;
    pd_event ev;
    char err[512];
    int reason = pd_event_parse(&ev, im->schema, line, len, (size_t)im->cfg->max_event_bytes, err, sizeof err);
    if (reason != PD_EV_OK) {
        reject(im, file, lineno, reason, err, line, len);
        goto out;
    }
    if (ev.ts_ms > im->until_ms) {
        im->c.after_until++;
        goto out;
    }
    int32_t p = pd_partition_for(ev.user_id, ev.user_id_len, im->nparts);
    if (!im->chosen[p]) {
        im->c.other_partition++;
        goto out;
    }
    reason = pd_rectime_check(PD_RECTS_NONE, -1, ev.ts_ms, im->wall_ms, im->cfg->max_future_skew_ms, err, sizeof err);
    if (reason != PD_EV_OK) {
        im->wall_ms = pd_now_ms(); /* confirm with a fresh clock, as the worker does */
        reason = pd_rectime_check(PD_RECTS_NONE, -1, ev.ts_ms, im->wall_ms, im->cfg->max_future_skew_ms, err,
                                  sizeof err);
    }
    if (reason != PD_EV_OK) {
        reject(im, file, lineno, reason, err, line, len);
        goto out;
    }
    int64_t day;
    int adm = pd_admit(&im->rules, &im->clock[p], &im->dd[p], &ev, pd_rectime_delivery(PD_RECTS_NONE, -1, ev.ts_ms),
                       NULL, 0, &day);
    if (adm == PD_ADMIT_TOO_OLD) {
        im->c.too_old++;
    } else if (adm == PD_ADMIT_DUPLICATE) {
        im->c.duplicate++;
    } else {
        pd_batch_add(&im->batch, p, day, &ev);
        im->c.accepted++;
    }
out:
    pd_event_free(&ev);
}

typedef struct {
    int64_t t0_us, last_us, every_us;
    size_t nfiles;
} im_progress;

static void progress(importer *im, im_progress *pg, size_t fi, const char *file, int force)
{
    int64_t now = pd_mono_us();
    if (!force && (!pg->every_us || now - pg->last_us < pg->every_us)) return;
    pg->last_us = now;
    double secs = (double)(now - pg->t0_us) / 1e6;
    fprintf(stderr,
            "import: file %zu/%zu %s: %" PRIu64 " lines, %" PRIu64 " imported, %" PRIu64 " rejected, %.0f lines/s\n",
            fi + 1, pg->nfiles, file, im->c.lines, im->c.accepted, im->c.rejected_total,
            secs > 0 ? (double)im->c.lines / secs : 0.0);
}

/* Reads one file line by line (gzip or plain: zlib reads both). */
static int read_file(importer *im, im_progress *pg, size_t fi, const char *path, char *err, size_t errlen)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) return pd_seterr(err, errlen, PD_EIO, "%s: %s", path, strerror(errno ? errno : ENOENT));
    gzbuffer(gz, 1 << 18);
    const size_t cap = (size_t)im->cfg->max_event_bytes + 2; /* longer lines: too_large */
    char *buf = pd_malloc(1 << 20);
    size_t bcap = 1 << 20, have = 0, start = 0;
    pd_buf line = {0};
    uint64_t lineno = 0;
    int rc = PD_OK, eof = 0, overlong = 0;
    while (!rc) {
        char *nl = memchr(buf + start, '\n', have - start);
        if (!nl && !eof) {
            /* keep what is left of the current line, read more */
            if (start > 0) {
                memmove(buf, buf + start, have - start);
                have -= start;
                start = 0;
            }
            if (have == bcap) {
                if (bcap < cap) {
                    bcap = PD_MIN(bcap * 2, cap);
                    buf = pd_realloc(buf, bcap);
                } else { /* longer than any event may be: keep its head only */
                    if (!overlong) pd_buf_append(&line, buf, PD_MIN(have, (size_t)1024));
                    overlong = 1;
                    have = 0;
                }
            }
            int n = gzread(gz, buf + have, (unsigned)(bcap - have));
            if (n < 0) {
                int ze;
                const char *m = gzerror(gz, &ze);
                rc = pd_seterr(err, errlen, PD_EIO, "%s: line %" PRIu64 ": %s", path, lineno + 1, m);
                break;
            }
            if (n == 0) eof = 1;
            have += (size_t)n;
            continue;
        }
        size_t end = nl ? (size_t)(nl - buf) : have;
        if (!nl && end == start && !overlong) break; /* done */
        lineno++;
        if (overlong) {
            char d[160];
            snprintf(d, sizeof d, "line longer than max_event_bytes (%" PRId64 "); its first %zu bytes kept",
                     im->cfg->max_event_bytes, line.len);
            im->c.lines++;
            reject(im, path, lineno, PD_EV_TOO_LARGE, d, line.p, line.len);
            line.len = 0;
            overlong = 0;
        } else {
            line_in(im, path, lineno, buf + start, end - start);
        }
        start = nl ? end + 1 : have;
        if (im->batch.events >= (uint64_t)im->cfg->batch_max_events) {
            rc = commit(im, 0, err, errlen);
            im->wall_ms = pd_now_ms();
        }
        if ((lineno & 1023) == 0) progress(im, pg, fi, path, 0);
        if (!nl && eof) break;
    }
    pd_buf_free(&line);
    free(buf);
    gzclose(gz);
    return rc;
}

/* Collects --partition values (repeatable, comma lists) and removes them
 * from argv. */
static int take_partitions(int *argc, char **argv, char **list, char *err, size_t errlen)
{
    pd_buf b = {0};
    int o = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--partition") == 0) {
            if (i + 1 >= *argc) {
                pd_buf_free(&b);
                return pd_seterr(err, errlen, PD_EINVAL, "--partition needs a value");
            }
            v = argv[++i];
        } else if (strncmp(a, "--partition=", 12) == 0) {
            v = a + 12;
        } else {
            argv[o++] = argv[i];
            continue;
        }
        if (b.len) pd_buf_append(&b, ",", 1);
        pd_buf_puts(&b, v);
    }
    *argc = o;
    pd_buf_append(&b, "", 1);
    *list = b.p;
    return PD_OK;
}

int ctl_import_main(int argc, char **argv)
{
    im_opts o;
    pd_opts_defaults(import_tbl, IMPORT_TBL_LEN, &o);
    o.partitions = 0;
    pd_config cfg;
    pd_config_init(&cfg);
    pd_schema schema;
    int have_schema = 0, ex = 1, help = 0;
    char err[1024];
    char *plist = NULL;
    importer im;
    memset(&im, 0, sizeof im);
    glob_t g = {0};
    int globbed = 0;
    if (take_partitions(&argc, argv, &plist, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl import: %s\n", err);
        ex = 2;
        goto out;
    }
    pd_argv_extra xa = {0};
    if (pd_opts_parse_argv(import_tbl, IMPORT_TBL_LEN, &o, argc, argv, &xa, &help, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl import: %s\n", err);
        ex = 2;
        goto out;
    }
    if (help) {
        printf("usage: profilectl import --input 'GLOB' --data-dir D --partitions N [--partition P ...] --until TIME\n"
               "                         [--config WORKER.conf] [--rejects FILE]\n\n"
               "Builds a new store from archived events (JSON lines, gzip or plain, one event per line) through\n"
               "the worker's parse, validate, de-dup and aggregate code, for the chosen partitions and events\n"
               "with ts <= TIME. A worker started on the store continues from the topic at the offsets that\n"
               "match TIME; the overlap is dropped by the de-dup rule (docs/operations.md, \"Rebuilding from\n"
               "an archive\"). Bad lines go to the rejects file with reasons; the summary is JSON on stdout.\n\n");
        pd_opts_usage(import_tbl, IMPORT_TBL_LEN, stdout);
        printf("  --partition P   A partition to import (repeatable, or a comma list; default: all N).\n");
        ex = 0;
        goto out;
    }
    if (!*o.input || !*o.data_dir || !*o.until || o.partitions <= 0) {
        fprintf(stderr, "profilectl import: --input, --data-dir, --partitions and --until are required (--help)\n");
        ex = 2;
        goto out;
    }
    int64_t until;
    {
        char *e;
        long long v = strtoll(o.until, &e, 10);
        if (e != o.until && !*e) until = (int64_t)v;
        else if (pd_ts_parse_rfc3339(o.until, strlen(o.until), &until) != PD_OK) {
            fprintf(stderr, "profilectl import: --until '%s': not an RFC 3339 time or epoch ms\n", o.until);
            ex = 2;
            goto out;
        }
    }
    if (*o.config && pd_config_load_file(&cfg, o.config, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl import: %s\n", err);
        ex = 2;
        goto out;
    }
    cfg.batch_max_events = o.batch_events;
    pd_tz tz;
    if (pd_tz_parse(&tz, cfg.timezone, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl import: timezone: %s\n", err);
        ex = 2;
        goto out;
    }
    if (*cfg.schema) {
        if (pd_schema_load_file(&schema, cfg.schema, (uint32_t)cfg.categorical_max_values, err, sizeof err)) {
            fprintf(stderr, "profilectl import: %s\n", err);
            ex = 2;
            goto out;
        }
    } else {
        pd_schema_default(&schema, (uint32_t)cfg.categorical_max_values);
    }
    have_schema = 1;
    pd_batch_init(&im.batch, NULL);
    pd_profile_init(&im.scratch, &schema);
    im.nparts = (int32_t)o.partitions;
    im.chosen = pd_calloc((size_t)im.nparts, 1);
    if (*plist) {
        for (char *s = plist, *tok; (tok = strsep(&s, ","));) {
            char *e;
            long v = strtol(tok, &e, 10);
            if (e == tok || *e || v < 0 || v >= im.nparts) {
                fprintf(stderr, "profilectl import: --partition '%s': not a partition of 0..%d\n", tok,
                        (int)im.nparts - 1);
                ex = 2;
                goto out;
            }
            im.chosen[v] = 1;
        }
    } else {
        memset(im.chosen, 1, (size_t)im.nparts);
    }
    int rg = glob(o.input, 0, NULL, &g);
    globbed = rg == 0;
    if (rg != 0 || g.gl_pathc == 0) {
        fprintf(stderr, "profilectl import: --input '%s': no such files\n", o.input);
        ex = 2;
        goto out;
    }
    /* The data directory: new, or a half-written import of ours (started over). */
    struct stat dst;
    if (stat(o.data_dir, &dst) == 0 && dir_nonempty(o.data_dir)) {
        pd_store_opts so = {.day_filter_bits = -1};
        pd_store *old = NULL;
        if (pd_store_open(&old, o.data_dir, &schema, &so, err, sizeof err) != PD_OK) {
            fprintf(stderr, "profilectl import: '%s' is not empty and not a store of this schema (%s): import into "
                    "a new directory\n", o.data_dir, err);
            goto out;
        }
        char state[32];
        int r = pd_store_get_import(old, state, sizeof state);
        pd_store_close(old);
        if (r != PD_OK || strcmp(state, "running") != 0) {
            fprintf(stderr, "profilectl import: '%s' already holds %s: import into a new, empty directory\n",
                    o.data_dir, r == PD_OK ? "a finished import" : "a worker's store");
            goto out;
        }
        fprintf(stderr, "profilectl import: '%s' holds a half-written import (interrupted): starting over\n",
                o.data_dir);
        if (nftw(o.data_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0) {
            fprintf(stderr, "profilectl import: deleting '%s': %s\n", o.data_dir, strerror(errno));
            goto out;
        }
    }
    if (mkdir(o.data_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "profilectl import: data_dir '%s': %s\n", o.data_dir, strerror(errno));
        goto out;
    }
    pd_store_opts so = {.block_cache_mb = cfg.block_cache_mb, .write_buffer_mb = cfg.write_buffer_mb,
                        .day_filter_bits = -1};
    if (pd_store_open(&im.st, o.data_dir, &schema, &so, err, sizeof err) != PD_OK ||
        pd_store_set_import(im.st, "running", err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl import: store: %s\n", err);
        goto out;
    }
    char rejpath[4096];
    snprintf(rejpath, sizeof rejpath, "%s", *o.rejects ? o.rejects : "");
    if (!*o.rejects) snprintf(rejpath, sizeof rejpath, "%s.rejects.jsonl", o.data_dir);
    im.rej = fopen(rejpath, "w");
    if (!im.rej) {
        fprintf(stderr, "profilectl import: rejects file '%s': %s\n", rejpath, strerror(errno));
        goto out;
    }
    im.schema = &schema;
    im.cfg = &cfg;
    im.rules = (pd_admit_rules){&tz, cfg.retention_days, cfg.dedup_window_ms};
    im.until_ms = until;
    im.wall_ms = pd_now_ms();
    im.dd = pd_calloc((size_t)im.nparts, sizeof *im.dd);
    im.clock = pd_calloc((size_t)im.nparts, sizeof *im.clock);
    for (int32_t p = 0; p < im.nparts; p++)
        if (im.chosen[p] &&
            pd_dedup_load(&im.dd[p], im.st, p, cfg.dedup_window_ms, (uint64_t)cfg.dedup_max_ids, err, sizeof err)) {
            fprintf(stderr, "profilectl import: de-dup index of partition %d: %s\n", (int)p, err);
            goto out;
        }
    im_progress pg = {pd_mono_us(), pd_mono_us(), o.progress_every_ms * 1000, g.gl_pathc};
    for (size_t i = 0; i < g.gl_pathc; i++) {
        if (read_file(&im, &pg, i, g.gl_pathv[i], err, sizeof err) != PD_OK) {
            fprintf(stderr, "profilectl import: %s (the store is left marked unfinished: import again)\n", err);
            goto out;
        }
        progress(&im, &pg, i, g.gl_pathv[i], pg.every_us > 0);
    }
    if (fflush(im.rej) != 0 || fsync(fileno(im.rej)) != 0) {
        fprintf(stderr, "profilectl import: rejects file '%s': %s\n", rejpath, strerror(errno));
        goto out;
    }
    if (commit(&im, 1, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl import: commit: %s (the store is left marked unfinished: import again)\n", err);
        goto out;
    }
    /* retention as a worker applies it: below the floor of the oldest clock */
    int64_t minclock = INT64_MAX;
    for (int32_t p = 0; p < im.nparts; p++)
        if (im.chosen[p] && im.clock[p] > 0) minclock = PD_MIN(minclock, im.clock[p]);
    if (minclock != INT64_MAX &&
        pd_store_drop_days_before(im.st, pd_admit_floor_day(&im.rules, minclock), err, sizeof err) < 0) {
        fprintf(stderr, "profilectl import: retention: %s\n", err);
        goto out;
    }
    if (pd_store_set_partitions(im.st, im.nparts, err, sizeof err) != PD_OK ||
        pd_store_set_import(im.st, "done", err, sizeof err) != PD_OK) {
        fprintf(stderr, "profilectl import: %s\n", err);
        goto out;
    }
    double secs = (double)(pd_mono_us() - pg.t0_us) / 1e6;
    pd_buf s = {0};
    PD_BUF_LIT(&s, "{\"files\":");
    pd_buf_put_u64(&s, g.gl_pathc);
    PD_BUF_LIT(&s, ",\"lines\":");
    pd_buf_put_u64(&s, im.c.lines);
    PD_BUF_LIT(&s, ",\"imported\":");
    pd_buf_put_u64(&s, im.c.accepted);
    PD_BUF_LIT(&s, ",\"duplicate\":");
    pd_buf_put_u64(&s, im.c.duplicate);
    PD_BUF_LIT(&s, ",\"too_old\":");
    pd_buf_put_u64(&s, im.c.too_old);
    PD_BUF_LIT(&s, ",\"after_until\":");
    pd_buf_put_u64(&s, im.c.after_until);
    PD_BUF_LIT(&s, ",\"other_partition\":");
    pd_buf_put_u64(&s, im.c.other_partition);
    PD_BUF_LIT(&s, ",\"rejected\":");
    pd_buf_put_u64(&s, im.c.rejected_total);
    PD_BUF_LIT(&s, ",\"rejected_by_reason\":{");
    int first = 1;
    for (int r = 1; r < PD_EV__COUNT; r++) {
        if (!im.c.rejected[r]) continue;
        if (!first) PD_BUF_LIT(&s, ",");
        first = 0;
        pd_buf_printf(&s, "\"%s\":%" PRIu64, pd_ev_reason_name(r), im.c.rejected[r]);
    }
    PD_BUF_LIT(&s, "},\"rejects_file\":");
    pd_buf_json_str(&s, rejpath, strlen(rejpath));
    PD_BUF_LIT(&s, ",\"until_ms\":");
    pd_buf_put_i64(&s, until);
    PD_BUF_LIT(&s, ",\"commits\":");
    pd_buf_put_u64(&s, im.c.commits);
    pd_buf_printf(&s, ",\"seconds\":%.3f,\"lines_per_second\":%.0f}\n", secs,
                  secs > 0 ? (double)im.c.lines / secs : 0.0);
    fwrite(s.p, 1, s.len, stdout);
    pd_buf_free(&s);
    ex = 0;
out:
    if (im.rej) fclose(im.rej);
    if (have_schema) {
        pd_batch_free(&im.batch);
        pd_profile_free(&im.scratch);
    }
    if (im.st) pd_store_close(im.st);
    if (im.dd)
        for (int32_t p = 0; p < im.nparts; p++) pd_dedup_free(&im.dd[p]);
    free(im.dd);
    free(im.clock);
    free(im.chosen);
    pd_buf_free(&im.rejline);
    if (globbed) globfree(&g);
    free(plist);
    pd_config_free(&cfg);
    pd_opts_free(import_tbl, IMPORT_TBL_LEN, &o);
    return ex;
}

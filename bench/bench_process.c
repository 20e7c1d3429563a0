/*
 * bench_process.c -- processing benchmark and store filler for `make bench`.
 *
 * Modes (each prints ONE JSON object on stdout; progress/errors on stderr):
 *
 *   process --file F --dir D --partitions P [--batch B] [--size-dir D2]
 *           [--population 0] (no population profiles: what maintaining them costs)
 *           [--recent-max K] (the built-in schema's recent items: 0 off, else
 *           K; default: the schema's default, 10)
 *     Loads the JSONL file F into memory, then measures
 *       (a) bare cJSON: cJSON_ParseWithLength + cJSON_Delete of every line;
 *       (a') pd_event_parse + pd_event_free of every line (built-in schema),
 *           reported as parse_ok / parse_secs / parse_eps;
 *       (b) the full worker pipeline in replay mode: pd_ingest_new(kafka=0)
 *           over a real store in D, every partition assigned locally,
 *           pd_ingest_record per line (partition = pd_partition_for(user_id),
 *           offsets counted per partition) and pd_ingest_flush_async every B events
 *           (as the worker's loop: the commit runs on the committer thread
 *           while the next batch is processed; flush_secs is the time the
 *           loop spends in the flush call, waiting for the previous commit
 *           and building the next WriteBatch; pd_ingest_flush at the end)
 *           (the worker's batch_max_events / commit cadence).
 *           pipeline_cpu_secs: the CPU time of every thread of the process
 *           over the same span (ingest, committer, RocksDB's background
 *           threads): what the pipeline costs, less disturbed than its rate
 *           by other load on a shared machine; ingest_cpu_secs and
 *           committer_cpu_secs: the loop's thread's and the committer
 *           thread's share of it.
 *     Then, untimed, it replays the same batching with pd_event_parse +
 *     pd_profile_add to measure the average store key (partition + user)
 *     and encoded profile delta sizes and the number of merge writes, which
 *     db_bench fillrandom is then run with. With --size-dir it also writes
 *     one merged value per stored user-day into a fresh store at D2 and
 *     re-opens it (recovery flushes the WAL into SST files), so `du` of D2
 *     is the on-disk size of fully compacted state.
 *
 *   fill --file F --dir D --partitions P --user-days N [--days 30]
 *     Writes N synthetic user-day profiles straight into the store at D
 *     (templates: the per-user-day profiles of F, users "f-<n>"), with a
 *     checkpoint for every partition, so a worker started on D has N stored
 *     user-days to recover (the recovery benchmark).
 *
 * Ownership: everything is allocated and freed here; the pd_worker context
 * is built by hand exactly as profiled.c does, minus Kafka and HTTP.
 */
#include "config.h"
#include "event.h"
#include "ingest.h"
#include "metrics.h"
#include "profile.h"
#include "schema.h"
#include "store.h"
#include "util.h"
#include "worker.h"

#include <cjson/cJSON.h>
#include <xxhash.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
    char *data;      /* whole file */
    size_t len;
    size_t n;        /* lines */
    size_t *off;     /* line starts */
    uint32_t *llen;  /* line lengths (no newline) */
    int32_t *part;   /* partition of the line's user_id (-1 = none) */
} bench_lines;

static double now_s(void) { return (double)pd_mono_us() / 1e6; }

/* CPU seconds of the calling thread so far. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds so far of this process's threads named `name` (Linux:
 * /proc/self/task/N/comm and the run time in .../schedstat, in ns); 0
 * when unavailable. */
static double named_threads_cpu_s(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    double sum = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[300], buf[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
        fclose(f);
        buf[strcspn(buf, "\n")] = '\0';
        if (strcmp(buf, name) != 0) continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", de->d_name);
        unsigned long long ns = 0;
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%llu", &ns) != 1) ns = 0;
            fclose(f);
        }
        sum += (double)ns / 1e9;
    }
    closedir(d);
    return sum;
}

/* CPU seconds (user + system) of every thread of the process so far. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static int load_lines(bench_lines *L, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_process: cannot open %s\n", path);
        return PD_EIO;
    }
    pd_buf b = {0};
    char tmp[1 << 16];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) pd_buf_append(&b, tmp, r);
    fclose(f);
    L->data = b.p;
    L->len = b.len;
    size_t cap = 1024;
    L->off = pd_malloc(cap * sizeof *L->off);
    L->llen = pd_malloc(cap * sizeof *L->llen);
    L->n = 0;
    for (size_t i = 0; i < b.len;) {
        char *nl = memchr(b.p + i, '\n', b.len - i);
        size_t e = nl ? (size_t)(nl - b.p) : b.len;
        if (e > i) {
            if (L->n == cap) {
                cap *= 2;
                L->off = pd_realloc(L->off, cap * sizeof *L->off);
                L->llen = pd_realloc(L->llen, cap * sizeof *L->llen);
            }
            L->off[L->n] = i;
            L->llen[L->n] = (uint32_t)(e - i);
            L->n++;
        }
        i = e + 1;
    }
    return PD_OK;
}

static void free_lines(bench_lines *L)
{
    free(L->data);
    free(L->off);
    free(L->llen);
    free(L->part);
}

/* Partition of each line by its user_id (the producer's key), untimed. */
static void partition_lines(bench_lines *L, int32_t nparts)
{
    L->part = pd_malloc(L->n * sizeof *L->part);
    for (size_t i = 0; i < L->n; i++) {
        L->part[i] = -1;
        cJSON *j = cJSON_ParseWithLength(L->data + L->off[i], L->llen[i]);
        cJSON *u = j ? cJSON_GetObjectItemCaseSensitive(j, "user_id") : NULL;
        if (cJSON_IsString(u) && u->valuestring[0])
            L->part[i] = pd_partition_for(u->valuestring, strlen(u->valuestring), nparts);
        cJSON_Delete(j);
    }
}

/* ---- the worker context, as profiled.c builds it ---- */

static int g_recent_max = -1; /* --recent-max K: recent items 0 (off) or K; -1 the default */

typedef struct {
    pd_config cfg;
    pd_schema schema;
    pd_metrics metrics;
    pd_worker w;
    pd_store *store;
} bench_worker;

static int worker_open(bench_worker *b, const char *dir, int32_t nparts, int64_t batch)
{
    char err[512], num[32];
    memset(b, 0, sizeof *b);
    pd_config_init(&b->cfg);
    pd_config_set(&b->cfg, "data_dir", dir, NULL, 0);
    snprintf(num, sizeof num, "%" PRId64, batch);
    pd_config_set(&b->cfg, "batch_max_events", num, NULL, 0);
    pd_config_set(&b->cfg, "id", "bench", NULL, 0);
    if (pd_config_finalize(&b->cfg, err, sizeof err) != PD_OK) goto fail;
    if (pd_tz_parse(&b->w.tz, b->cfg.timezone, err, sizeof err) != PD_OK) goto fail;
    pd_schema_default(&b->schema, (uint32_t)b->cfg.categorical_max_values);
    if (g_recent_max >= 0) { /* as "recent": {"max": K} would load (schema.h) */
        b->schema.recent_max = g_recent_max;
        if (!g_recent_max) memset(&b->schema.recent_item, 0, sizeof b->schema.recent_item);
        pd_buf sj = {0};
        pd_schema_to_json(&b->schema, &sj);
        b->schema.fingerprint = XXH3_64bits(sj.p, sj.len);
        pd_buf_free(&sj);
    }
    pd_metrics_init(&b->metrics);
    pd_store_opts so = {.block_cache_mb = b->cfg.block_cache_mb, .write_buffer_mb = b->cfg.write_buffer_mb};
    if (pd_store_open(&b->store, dir, &b->schema, &so, err, sizeof err) != PD_OK) goto fail;
    b->w.cfg = &b->cfg;
    b->w.schema = &b->schema;
    b->w.metrics = &b->metrics;
    b->w.store = b->store;
    b->w.nparts = nparts;
    b->w.parts = pd_partstates_new(nparts);
    return PD_OK;
fail:
    fprintf(stderr, "bench_process: %s\n", err);
    pd_config_free(&b->cfg);
    return PD_ERR;
}

static void worker_close(bench_worker *b)
{
    if (b->store) pd_store_close(b->store);
    free(b->w.parts);
    pd_config_free(&b->cfg);
}

/* ---- (a) bare cJSON ---- */

static double run_cjson(const bench_lines *L, uint64_t *ok)
{
    double t0 = now_s();
    uint64_t n = 0;
    for (size_t i = 0; i < L->n; i++) {
        cJSON *j = cJSON_ParseWithLength(L->data + L->off[i], L->llen[i]);
        n += j != NULL;
        cJSON_Delete(j);
    }
    *ok = n;
    return now_s() - t0;
}

/* (a') pd_event_parse + pd_event_free of every line alone (the parser's
 * share of the pipeline), same lines as (a). */
static double run_parse(const bench_lines *L, const pd_schema *s, uint64_t *ok)
{
    char err[256];
    double t0 = now_s();
    uint64_t n = 0;
    for (size_t i = 0; i < L->n; i++) {
        pd_event ev;
        n += pd_event_parse(&ev, s, L->data + L->off[i], L->llen[i], 0, err, sizeof err) == PD_EV_OK;
        pd_event_free(&ev);
    }
    *ok = n;
    return now_s() - t0;
}

/* ---- (b) the worker pipeline ---- */

typedef struct {
    double secs, record_secs, flush_secs;
    double cpu_secs; /* every thread's CPU (ingest, committer, RocksDB's) over the same span */
    double ingest_cpu_secs, committer_cpu_secs; /* the loop's thread's; the committer's (its whole life) */
    uint64_t flushes;
} pipe_result;

static int g_population = 1; /* --population 0: no population profiles (their cost) */

static int run_pipeline(const bench_lines *L, bench_worker *b, int64_t batch, pipe_result *res)
{
    char err[512];
    pd_ingest *ig = NULL;
    int rc = pd_ingest_new(&ig, &b->w, 0, err, sizeof err);
    if (rc) {
        fprintf(stderr, "bench_process: ingest: %s\n", err);
        return rc;
    }
    pd_ingest_set_population(ig, g_population);
    for (int32_t p = 0; p < b->w.nparts; p++) pd_ingest_assign_local(ig, p);
    int64_t *offs = pd_calloc((size_t)b->w.nparts, sizeof *offs);
    memset(res, 0, sizeof *res);
    double t0 = now_s(), tf = 0, c0 = cpu_s(), i0 = thread_cpu_s();
    int64_t since = 0;
    for (size_t i = 0; i < L->n; i++) {
        int32_t p = L->part[i] < 0 ? 0 : L->part[i];
        pd_ingest_record(ig, p, offs[p]++, -1, 0, NULL, 0, L->data + L->off[i], L->llen[i], NULL, 0);
        if (++since >= batch) {
            double f0 = now_s(); /* as the worker: build, then commit while going on */
            if ((rc = pd_ingest_flush_async(ig, err, sizeof err)) != PD_OK) goto out;
            tf += now_s() - f0;
            res->flushes++;
            since = 0;
        }
    }
    double f0 = now_s();
    if ((rc = pd_ingest_flush(ig, err, sizeof err)) != PD_OK) goto out;
    tf += now_s() - f0;
    res->flushes++;
    res->secs = now_s() - t0;
    res->cpu_secs = cpu_s() - c0;
    res->ingest_cpu_secs = thread_cpu_s() - i0;
    res->committer_cpu_secs = named_threads_cpu_s("pd-commit"); /* started by pd_ingest_new: idle before */
    res->flush_secs = tf;
    res->record_secs = res->secs - tf;
out:
    if (rc) fprintf(stderr, "bench_process: flush: %s\n", err);
    free(offs);
    pd_ingest_free(ig);
    return rc;
}

/* ---- key/value sizes of the merge writes (untimed) ---- */

typedef struct {
    int32_t p;
    int64_t day;
    char user[PD_MAX_USER_ID];
    size_t ulen;
    pd_profile prof;
    int used;
} sz_ent;

typedef struct {
    uint64_t writes, key_bytes, val_bytes;
} sz_result;

static uint64_t sz_hash(int32_t p, int64_t day, const char *u, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)p ^ ((uint64_t)day << 20);
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)u[i]) * 1099511628211ULL;
    return h;
}

static void sz_flush(sz_ent *t, size_t cap, sz_result *r, pd_buf *enc)
{
    for (size_t i = 0; i < cap; i++) {
        if (!t[i].used) continue;
        enc->len = 0;
        pd_profile_encode(&t[i].prof, enc);
        r->writes++;
        r->key_bytes += 4 + t[i].ulen;
        r->val_bytes += enc->len;
        pd_profile_free(&t[i].prof);
        t[i].used = 0;
    }
}

/* Mirrors the worker's pre-aggregation per batch (without de-dup, which
 * changes sizes negligibly at a 1% duplicate rate). */
static void measure_sizes(const bench_lines *L, const pd_schema *s, const pd_tz *tz, int64_t batch,
                          sz_result *r)
{
    size_t cap = 1;
    while (cap < (size_t)batch * 2) cap <<= 1;
    sz_ent *t = pd_calloc(cap, sizeof *t);
    pd_buf enc = {0};
    memset(r, 0, sizeof *r);
    int64_t since = 0;
    char err[256];
    for (size_t i = 0; i < L->n; i++) {
        pd_event ev;
        if (pd_event_parse(&ev, s, L->data + L->off[i], L->llen[i], 0, err, sizeof err) == PD_EV_OK) {
            int32_t p = L->part[i] < 0 ? 0 : L->part[i];
            int64_t day = pd_tz_day(tz, ev.ts_ms);
            uint64_t h = sz_hash(p, day, ev.user_id, ev.user_id_len);
            for (size_t k = h & (cap - 1);; k = (k + 1) & (cap - 1)) {
                sz_ent *e = &t[k];
                if (!e->used) {
                    e->used = 1;
                    e->p = p;
                    e->day = day;
                    e->ulen = ev.user_id_len;
                    memcpy(e->user, ev.user_id, ev.user_id_len);
                    pd_profile_init(&e->prof, s);
                    pd_profile_add(&e->prof, &ev);
                    break;
                }
                if (e->p == p && e->day == day && e->ulen == ev.user_id_len &&
                    memcmp(e->user, ev.user_id, e->ulen) == 0) {
                    pd_profile_add(&e->prof, &ev);
                    break;
                }
            }
        }
        pd_event_free(&ev);
        if (++since >= batch) {
            sz_flush(t, cap, r, &enc);
            since = 0;
        }
    }
    sz_flush(t, cap, r, &enc);
    pd_buf_free(&enc);
    free(t);
}

/* ---- compacted size: one merged value per user-day in a fresh store ---- */

typedef struct {
    pd_store *dst;
    pd_store_batch *sb;
    uint64_t n, key_bytes, val_bytes, pending;
    pd_buf enc;
    int rc;
} copy_ctx;

static int copy_visit(void *arg, int64_t day, int32_t partition, const char *user, size_t ulen,
                      const pd_profile *prof)
{
    copy_ctx *c = arg;
    char err[256];
    c->enc.len = 0;
    pd_profile_encode(prof, &c->enc);
    c->n++;
    c->key_bytes += 4 + ulen;
    c->val_bytes += c->enc.len;
    if (pd_store_batch_merge(c->sb, day, partition, user, ulen, prof, err, sizeof err) != PD_OK) {
        fprintf(stderr, "bench_process: copy: %s\n", err);
        return c->rc = PD_ERR;
    }
    if (++c->pending >= 20000) {
        if (pd_store_commit(c->dst, c->sb, err, sizeof err) != PD_OK) {
            fprintf(stderr, "bench_process: copy commit: %s\n", err);
            return c->rc = PD_ERR;
        }
        c->pending = 0;
    }
    return 0;
}

static int compact_copy(pd_store *src, const pd_schema *s, const char *dir, copy_ctx *c)
{
    char err[512];
    pd_store_opts so = {0};
    memset(c, 0, sizeof *c);
    if (pd_store_open(&c->dst, dir, s, &so, err, sizeof err) != PD_OK) {
        fprintf(stderr, "bench_process: %s\n", err);
        return PD_ERR;
    }
    c->sb = pd_store_batch_new(c->dst);
    int rc = pd_store_scan(src, INT64_MIN, -1, NULL, 0, copy_visit, c, err, sizeof err);
    if (rc == PD_OK && c->pending) rc = pd_store_commit(c->dst, c->sb, err, sizeof err);
    pd_store_batch_free(c->sb);
    pd_store_close(c->dst);
    pd_buf_free(&c->enc);
    if (rc) return rc;
    /* Re-open: recovery writes the WAL's memtables to SST files. */
    if (pd_store_open(&c->dst, dir, s, &so, err, sizeof err) != PD_OK) {
        fprintf(stderr, "bench_process: reopen: %s\n", err);
        return PD_ERR;
    }
    pd_store_close(c->dst);
    return PD_OK;
}

/* ---- fill mode ---- */

typedef struct {
    pd_profile *tpl;
    size_t n, cap;
    const pd_schema *s;
} tpl_ctx;

static int tpl_visit(void *arg, int64_t day, int32_t partition, const char *user, size_t ulen,
                     const pd_profile *prof)
{
    tpl_ctx *t = arg;
    if (t->n == t->cap) return 1; /* enough templates */
    pd_profile_init(&t->tpl[t->n], t->s);
    pd_profile_merge(&t->tpl[t->n], prof);
    t->n++;
    return 0;
}

static int run_fill(const bench_lines *L, const char *dir, int32_t nparts, int64_t user_days, int64_t days)
{
    char tdir[1100], err[512];
    int rc = PD_ERR;
    bench_worker tb, fb;
    pipe_result pr;
    tpl_ctx t = {0};
    snprintf(tdir, sizeof tdir, "%s.tpl", dir);
    /* Templates: the user-day profiles the pipeline makes of the file. */
    if (worker_open(&tb, tdir, nparts, 20000)) return PD_ERR;
    if (run_pipeline(L, &tb, 20000, &pr)) {
        worker_close(&tb);
        return PD_ERR;
    }
    t.cap = 4096;
    t.tpl = pd_calloc(t.cap, sizeof *t.tpl);
    t.s = &tb.schema;
    pd_store_scan(tb.store, INT64_MIN, -1, NULL, 0, tpl_visit, &t, err, sizeof err);
    if (t.n == 0) {
        fprintf(stderr, "bench_process: no template profiles\n");
        goto out;
    }
    if (worker_open(&fb, dir, nparts, 20000)) goto out;
    pd_store_batch *sb = pd_store_batch_new(fb.store);
    int64_t today = pd_tz_day(&fb.w.tz, pd_now_ms());
    int64_t users = (user_days + days - 1) / days;
    double t0 = now_s();
    int64_t written = 0, pending = 0;
    char u[32];
    for (int64_t d = 0; d < days && written < user_days; d++) {
        for (int64_t i = 0; i < users && written < user_days; i++) {
            int n = snprintf(u, sizeof u, "f-%" PRId64, i);
            int32_t p = pd_partition_for(u, (size_t)n, nparts);
            const pd_profile *pf = &t.tpl[(size_t)(i * 7 + d) % t.n];
            if (pd_store_batch_merge(sb, today - d, p, u, (size_t)n, pf, err, sizeof err)) goto fail;
            written++;
            if (++pending >= 50000) {
                if (pd_store_commit(fb.store, sb, err, sizeof err)) goto fail;
                pending = 0;
            }
        }
    }
    /* A checkpoint per partition at offset 0 with a current clock, so the
     * worker keeps every day (retention counts from the clock). */
    for (int32_t p = 0; p < nparts; p++) pd_store_batch_set_checkpoint(sb, p, 0, pd_now_ms());
    if (pd_store_commit(fb.store, sb, err, sizeof err)) goto fail;
    printf("{\"mode\":\"fill\",\"user_days\":%" PRId64 ",\"users\":%" PRId64 ",\"days\":%" PRId64
           ",\"templates\":%zu,\"secs\":%.3f}\n",
           written, users, days, t.n, now_s() - t0);
    rc = PD_OK;
fail:
    if (rc) fprintf(stderr, "bench_process: fill: %s\n", err);
    pd_store_batch_free(sb);
    worker_close(&fb);
out:
    for (size_t i = 0; i < t.n; i++) pd_profile_free(&t.tpl[i]);
    free(t.tpl);
    worker_close(&tb);
    return rc;
}

/* ---- main ---- */

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "process") != 0 && strcmp(argv[1], "fill") != 0)) {
        fprintf(stderr, "usage: bench_process process|fill --file F --dir D --partitions P "
                        "[--batch B] [--size-dir D2] [--user-days N] [--days D]\n");
        return 2;
    }
    const char *file = arg(argc, argv, "--file", NULL);
    const char *dir = arg(argc, argv, "--dir", NULL);
    int32_t nparts = atoi(arg(argc, argv, "--partitions", "32"));
    int64_t batch = atoll(arg(argc, argv, "--batch", "20000"));
    if (!file || !dir || nparts < 1 || batch < 1) {
        fprintf(stderr, "bench_process: --file, --dir and a positive --partitions/--batch are required\n");
        return 2;
    }
    pd_log_quiet = 1;
    bench_lines L = {0};
    if (load_lines(&L, file)) return 1;
    partition_lines(&L, nparts);
    int rc = 1;
    if (strcmp(argv[1], "fill") == 0) {
        rc = run_fill(&L, dir, nparts, atoll(arg(argc, argv, "--user-days", "100000")),
                      atoll(arg(argc, argv, "--days", "30"))) ? 1 : 0;
        free_lines(&L);
        return rc;
    }
    const char *size_dir = arg(argc, argv, "--size-dir", NULL);
    uint64_t ok = 0;
    /* --pipeline-only 1 (for profiling): skip the cJSON, parse and size passes. */
    int only = atoi(arg(argc, argv, "--pipeline-only", "0"));
    g_population = atoi(arg(argc, argv, "--population", "1"));
    g_recent_max = atoi(arg(argc, argv, "--recent-max", "-1"));
    if (g_recent_max > PD_MAX_RECENT) {
        fprintf(stderr, "bench_process: --recent-max is 0..%d\n", PD_MAX_RECENT);
        return 2;
    }
    double tc = 1e-9;
    if (!only) {
        /* Warm-up pass (page cache, allocator), then the timed one. */
        run_cjson(&L, &ok);
        tc = run_cjson(&L, &ok);
    }
    bench_worker b;
    pipe_result pr;
    sz_result sz;
    copy_ctx cc = {0};
    uint64_t pok = 0;
    double tp = 1e-9;
    if (worker_open(&b, dir, nparts, batch)) goto out;
    if (!only) {
        run_parse(&L, &b.schema, &pok);
        tp = run_parse(&L, &b.schema, &pok);
    }
    if (run_pipeline(&L, &b, batch, &pr)) goto close;
    memset(&sz, 0, sizeof sz);
    if (!only) measure_sizes(&L, &b.schema, &b.w.tz, batch, &sz);
    if (size_dir && compact_copy(b.store, &b.schema, size_dir, &cc)) goto close;
    printf("{\"mode\":\"process\",\"lines\":%zu,\"bytes\":%zu,\"cjson_ok\":%" PRIu64
           ",\"cjson_secs\":%.4f,\"cjson_eps\":%.0f,"
           "\"pipeline_secs\":%.4f,\"pipeline_eps\":%.0f,\"record_secs\":%.4f,\"flush_secs\":%.4f,"
           "\"pipeline_cpu_secs\":%.4f,\"ingest_cpu_secs\":%.4f,\"committer_cpu_secs\":%.4f,"
           "\"flushes\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"dlq\":%" PRIu64
           ",\"writes\":%" PRIu64 ",\"avg_key\":%.1f,\"avg_value\":%.1f"
           ",\"user_days\":%" PRIu64 ",\"compact_key_bytes\":%" PRIu64 ",\"compact_value_bytes\":%" PRIu64
           ",\"parse_ok\":%" PRIu64 ",\"parse_secs\":%.4f,\"parse_eps\":%.0f,\"recent_max\":%d}\n",
           L.n, L.len, ok, tc, (double)L.n / tc, pr.secs, (double)L.n / pr.secs, pr.record_secs,
           pr.flush_secs, pr.cpu_secs, pr.ingest_cpu_secs, pr.committer_cpu_secs, pr.flushes, (uint64_t)atomic_load(&b.metrics.events_accepted),
           (uint64_t)atomic_load(&b.metrics.events_duplicate),
           (uint64_t)(L.n - atomic_load(&b.metrics.events_accepted) - atomic_load(&b.metrics.events_duplicate)),
           sz.writes, sz.writes ? (double)sz.key_bytes / (double)sz.writes : 0.0,
           sz.writes ? (double)sz.val_bytes / (double)sz.writes : 0.0, cc.n, cc.key_bytes, cc.val_bytes,
           pok, tp, (double)L.n / tp, b.schema.recent_max);
    rc = 0;
close:
    worker_close(&b);
out:
    free_lines(&L);
    return rc;
}

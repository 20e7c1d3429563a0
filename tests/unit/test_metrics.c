/* test_metrics.c -- histograms, route/status slots and the Prometheus text
 * exposition. The rendered text is parsed line by line here (samples into
 * a name{labels} -> value table, HELP/TYPE lines checked for every family)
 * and compared with expectations worked out by hand from the observations. */
#include "test.h"

#include <math.h>
#include <stdlib.h>

#include "metrics.h"
#include "event.h"
#include "profile.h"
#include "schema.h"
#include "store.h"
#include "worker.h"
#include "util.h"

TEST(metrics_hist_edges)
{
    pd_hist h;
    const double b[] = {1, 10, 100};
    pd_hist_init(&h, b, 3);
    CHECK_INT(h.n, 3);
    /* le is inclusive: v == bound goes into that bound's bucket */
    const double v[] = {0.5, 1, 1.0000001, 10, 100, 100.5, -5, NAN};
    const int want_bucket[] = {0, 0, 1, 1, 2, 3, 0, 3};
    uint64_t want[4] = {0};
    for (size_t i = 0; i < PD_ARRAY_LEN(v); i++) {
        pd_hist_observe(&h, v[i]);
        want[want_bucket[i]]++;
    }
    for (int i = 0; i < 4; i++) CHECK_INT(h.counts[i], want[i]);
    CHECK_INT(h.count, PD_ARRAY_LEN(v));
    /* millionths: 0.5 + 1 + 1 + 10 + 100 + 100.5 = 213; -5 and NaN add 0 */
    CHECK_INT(h.sum_micro, 213000000);
    /* no bounds at all: everything is +Inf */
    pd_hist z;
    pd_hist_init(&z, NULL, 0);
    pd_hist_observe(&z, 3);
    CHECK_INT(z.counts[0], 1);
}

TEST(metrics_routes_and_status)
{
    static const char *const names[] = {"profile", "partitions", "healthz", "readyz",
                                        "metrics", "internal", "erase", "score", "population", "schema", "other"};
    for (int r = 0; r < PD_ROUTE__COUNT; r++) CHECK_STR(pd_route_name(r), names[r]);
    CHECK_STR(pd_route_name(-1), "other");
    CHECK_STR(pd_route_name(PD_ROUTE__COUNT), "other");
    static const int codes[] = {200, 400, 401, 404, 405, 413, 414, 431, 500, 502, 503};
    int seen[PD_STATUS_SLOTS] = {0};
    for (size_t i = 0; i < PD_ARRAY_LEN(codes); i++) {
        int s = pd_status_slot(codes[i]);
        CHECK(s >= 0 && s < PD_STATUS_SLOTS - 1);
        if (s >= 0 && s < PD_STATUS_SLOTS) seen[s]++;
        CHECK_INT(pd_status_of_slot(s), codes[i]);
    }
    for (int s = 0; s < PD_STATUS_SLOTS - 1; s++) CHECK_INT(seen[s], 1); /* distinct slots */
    CHECK_INT(pd_status_slot(418), PD_STATUS_SLOTS - 1);
    CHECK_INT(pd_status_slot(201), PD_STATUS_SLOTS - 1);
    CHECK_INT(pd_status_of_slot(PD_STATUS_SLOTS - 1), 0);
    CHECK_INT(pd_status_of_slot(-1), 0);
    CHECK_INT(pd_status_of_slot(99), 0);
}

TEST(metrics_init_bounds)
{
    pd_metrics *m = pd_malloc(sizeof *m);
    pd_metrics_init(m);
    const double be[] = {1, 10, 100, 1000, 10000, 100000};
    const double fs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
    const double hs[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1};
    CHECK_INT(m->batch_events.n, PD_ARRAY_LEN(be));
    for (size_t i = 0; i < PD_ARRAY_LEN(be); i++) CHECK_DBL(m->batch_events.bounds[i], be[i], 0);
    CHECK_INT(m->flush_seconds.n, PD_ARRAY_LEN(fs));
    for (size_t i = 0; i < PD_ARRAY_LEN(fs); i++) CHECK_DBL(m->flush_seconds.bounds[i], fs[i], 0);
    for (int r = 0; r < PD_ROUTE__COUNT; r++) {
        CHECK_INT(m->http_seconds[r].n, PD_ARRAY_LEN(hs));
        for (size_t i = 0; i < PD_ARRAY_LEN(hs); i++) CHECK_DBL(m->http_seconds[r].bounds[i], hs[i], 0);
        CHECK_INT(m->http_seconds[r].count, 0);
    }
    CHECK_INT(m->records_in, 0);
    pd_free(m);
}

/* ---- a small exposition parser ---- */

#define MAXS 512
typedef struct {
    int n;
    char key[MAXS][160]; /* name{labels} exactly as written */
    char name[MAXS][80];
    double val[MAXS];
    int nfam;
    char fam[128][80];   /* families in TYPE order */
    char type[128][16];
    int help[128];
    int errors;
} expo;

static int fam_index(const expo *e, const char *name)
{
    for (int i = 0; i < e->nfam; i++)
        if (strcmp(e->fam[i], name) == 0) return i;
    return -1;
}

/* Family of a sample name: strip _bucket/_sum/_count for histograms. */
static int family_of(const expo *e, const char *name)
{
    int f = fam_index(e, name);
    if (f >= 0) return f;
    static const char *const suf[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < PD_ARRAY_LEN(suf); i++) {
        size_t nl = strlen(name), sl = strlen(suf[i]);
        if (nl > sl && strcmp(name + nl - sl, suf[i]) == 0) {
            char base[80];
            snprintf(base, sizeof base, "%.*s", (int)(nl - sl), name);
            f = fam_index(e, base);
            if (f >= 0 && strcmp(e->type[f], "histogram") == 0) return f;
        }
    }
    return -1;
}

static void expo_parse(expo *e, const char *text, size_t len)
{
    memset(e, 0, sizeof *e);
    int last_fam = -1;
    int closed[128] = {0}; /* family whose samples block ended */
    size_t i = 0;
    CHECK(len > 0 && text[len - 1] == '\n');
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t ll = nl ? (size_t)(nl - (text + i)) : len - i;
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)ll, text + i);
        i += ll + 1;
        if (line[0] == '#') {
            char kind[8], name[80], rest[256];
            if (sscanf(line, "# %7s %79s %255[^\n]", kind, name, rest) != 3) {
                pd_test_fail(__FILE__, __LINE__, "bad comment line '%s'", line);
                e->errors++;
                continue;
            }
            if (strcmp(kind, "HELP") == 0) {
                if (e->nfam < 128) { /* HELP comes first: register the family */
                    if (fam_index(e, name) >= 0) {
                        pd_test_fail(__FILE__, __LINE__, "family %s declared twice", name);
                        e->errors++;
                    }
                    snprintf(e->fam[e->nfam], 80, "%s", name);
                    e->help[e->nfam] = 1;
                    e->nfam++;
                }
            } else if (strcmp(kind, "TYPE") == 0) {
                int f = fam_index(e, name);
                if (f < 0 || (strcmp(rest, "counter") && strcmp(rest, "gauge") &&
                              strcmp(rest, "histogram"))) {
                    pd_test_fail(__FILE__, __LINE__, "TYPE without HELP or bad type: '%s'", line);
                    e->errors++;
                } else {
                    snprintf(e->type[f], 16, "%.15s", rest);
                }
            }
            continue;
        }
        /* sample: name[{labels}] value */
        char *sp = strrchr(line, ' ');
        if (!sp) {
            pd_test_fail(__FILE__, __LINE__, "bad sample line '%s'", line);
            e->errors++;
            continue;
        }
        *sp = '\0';
        char *end;
        double v = strtod(sp + 1, &end);
        if (*end || end == sp + 1) {
            pd_test_fail(__FILE__, __LINE__, "bad value in '%s'", line);
            e->errors++;
        }
        char name[80];
        size_t nn = strcspn(line, "{");
        snprintf(name, sizeof name, "%.*s", (int)nn, line);
        if (line[nn] == '{' && line[strlen(line) - 1] != '}') {
            pd_test_fail(__FILE__, __LINE__, "bad labels in '%s'", line);
            e->errors++;
        }
        int f = family_of(e, name);
        if (f < 0) {
            pd_test_fail(__FILE__, __LINE__, "sample '%s' without HELP/TYPE", line);
            e->errors++;
        } else {
            if (f != last_fam) {
                if (last_fam >= 0) closed[last_fam] = 1;
                if (closed[f]) {
                    pd_test_fail(__FILE__, __LINE__, "family %s not contiguous", e->fam[f]);
                    e->errors++;
                }
                last_fam = f;
            }
        }
        if (e->n < MAXS) {
            snprintf(e->key[e->n], 160, "%.159s", line);
            snprintf(e->name[e->n], 80, "%s", name);
            e->val[e->n] = v;
            e->n++;
        }
    }
}

/* Value of the exact series key, or NAN when absent. */
static double get(const expo *e, const char *key)
{
    for (int i = 0; i < e->n; i++)
        if (strcmp(e->key[i], key) == 0) return e->val[i];
    return NAN;
}

static int count_prefix(const expo *e, const char *prefix)
{
    int n = 0;
    for (int i = 0; i < e->n; i++)
        if (strncmp(e->key[i], prefix, strlen(prefix)) == 0) n++;
    return n;
}

#define CHECK_SERIES(e, key, want)                                                      \
    do {                                                                                \
        double g_ = get((e), (key));                                                    \
        if (isnan(g_) || fabs(g_ - (want)) > 1e-9)                                      \
            pd_test_fail(__FILE__, __LINE__, "%s = %.17g, expected %.17g", (key), g_,   \
                         (double)(want));                                               \
    } while (0)

TEST(metrics_render_counters_and_histograms)
{
    pd_metrics *m = pd_malloc(sizeof *m);
    pd_metrics_init(m);
    PD_ADD(m->records_in, 7);
    PD_ADD(m->events_accepted, 5);
    PD_INC(m->events_duplicate);
    PD_ADD(m->events_dlq[PD_EV_INVALID_JSON], 2);
    PD_INC(m->flushes);
    const double batches[] = {5, 50, 50, 500000};
    for (size_t i = 0; i < PD_ARRAY_LEN(batches); i++) pd_hist_observe(&m->batch_events, batches[i]);
    pd_hist_observe(&m->flush_seconds, 0.003);
    PD_ADD(m->http_requests[PD_ROUTE_PROFILE][pd_status_slot(200)], 3);
    PD_INC(m->http_requests[PD_ROUTE_PROFILE][pd_status_slot(404)]);
    PD_INC(m->http_requests[PD_ROUTE_METRICS][pd_status_slot(418)]);
    pd_hist_observe(&m->http_seconds[PD_ROUTE_PROFILE], 0.0002);
    pd_hist_observe(&m->http_seconds[PD_ROUTE_PROFILE], 0.002);
    pd_hist_observe(&m->http_seconds[PD_ROUTE_PROFILE], 2);

    pd_buf out = {0};
    pd_metrics_render(m, NULL, &out);
    expo *e = pd_malloc(sizeof *e);
    expo_parse(e, out.p, out.len);
    CHECK_INT(e->errors, 0);

    CHECK_SERIES(e, "profiled_records_in_total", 7);
    CHECK_STR(e->type[fam_index(e, "profiled_records_in_total")], "counter");
    CHECK_SERIES(e, "profiled_events_total{outcome=\"accepted\"}", 5);
    CHECK_SERIES(e, "profiled_events_total{outcome=\"duplicate\"}", 1);
    CHECK_SERIES(e, "profiled_events_total{outcome=\"misrouted\"}", 0);
    CHECK_SERIES(e, "profiled_events_total{outcome=\"too_old\"}", 0);
    CHECK_SERIES(e, "profiled_events_total{outcome=\"stale_offset\"}", 0);
    CHECK_SERIES(e, "profiled_dlq_events_total{reason=\"invalid_json\"}", 2);
    CHECK_SERIES(e, "profiled_dlq_events_total{reason=\"future_ts\"}", 0);
    CHECK_INT(count_prefix(e, "profiled_dlq_events_total{"), PD_EV__COUNT - 1); /* no reason 0 */
    CHECK_SERIES(e, "profiled_flushes_total", 1);
    CHECK_SERIES(e, "profiled_flush_errors_total", 0);
    CHECK_SERIES(e, "profiled_attrs_wrong_type_total", 0);
    CHECK_SERIES(e, "profiled_days_dropped_total", 0);
    CHECK_SERIES(e, "profiled_rebalances_total", 0);
    CHECK_SERIES(e, "profiled_forwarded_requests_total", 0);
    CHECK_SERIES(e, "profiled_forward_errors_total", 0);

    /* batch_events: 5 -> le 10, 50 x2 -> le 100, 500000 -> +Inf; cumulative */
    int f = fam_index(e, "profiled_batch_events");
    CHECK(f >= 0 && strcmp(e->type[f], "histogram") == 0);
    CHECK_SERIES(e, "profiled_batch_events_bucket{le=\"1\"}", 0);
    CHECK_SERIES(e, "profiled_batch_events_bucket{le=\"10\"}", 1);
    CHECK_SERIES(e, "profiled_batch_events_bucket{le=\"100\"}", 3);
    CHECK_SERIES(e, "profiled_batch_events_bucket{le=\"1000\"}", 3);
    CHECK_SERIES(e, "profiled_batch_events_bucket{le=\"10000\"}", 3);
    CHECK_SERIES(e, "profiled_batch_events_bucket{le=\"100000\"}", 3);
    CHECK_SERIES(e, "profiled_batch_events_bucket{le=\"+Inf\"}", 4);
    CHECK_SERIES(e, "profiled_batch_events_count", 4);
    CHECK_SERIES(e, "profiled_batch_events_sum", 500105);
    CHECK_INT(count_prefix(e, "profiled_batch_events_bucket{"), 7);
    /* flush_seconds: 0.003 -> le 0.005 and above */
    CHECK_SERIES(e, "profiled_flush_seconds_bucket{le=\"0.0025\"}", 0);
    CHECK_SERIES(e, "profiled_flush_seconds_bucket{le=\"0.005\"}", 1);
    CHECK_SERIES(e, "profiled_flush_seconds_bucket{le=\"1\"}", 1);
    CHECK_SERIES(e, "profiled_flush_seconds_bucket{le=\"+Inf\"}", 1);
    CHECK_SERIES(e, "profiled_flush_seconds_sum", 0.003);
    CHECK_SERIES(e, "profiled_flush_seconds_count", 1);

    CHECK_SERIES(e, "profiled_http_requests_total{route=\"profile\",status=\"200\"}", 3);
    CHECK_SERIES(e, "profiled_http_requests_total{route=\"profile\",status=\"404\"}", 1);
    CHECK_SERIES(e, "profiled_http_requests_total{route=\"metrics\",status=\"other\"}", 1);
    CHECK_INT(count_prefix(e, "profiled_http_requests_total{"), 3); /* only non-zero series */

    /* 0.0002 -> le 0.00025; 0.002 -> le 0.0025; 2 -> +Inf */
    const char *hb = "profiled_http_request_seconds_bucket{route=\"profile\",le=";
    char k[160];
    static const struct { const char *le; int n; } hw[] = {
        {"0.0001", 0}, {"0.00025", 1}, {"0.0005", 1}, {"0.001", 1}, {"0.0025", 2},
        {"0.005", 2}, {"0.01", 2}, {"0.025", 2}, {"0.05", 2}, {"0.1", 2}, {"0.5", 2}, {"1", 2},
        {"+Inf", 3},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(hw); i++) {
        snprintf(k, sizeof k, "%s\"%s\"}", hb, hw[i].le);
        CHECK_SERIES(e, k, hw[i].n);
    }
    CHECK_INT(count_prefix(e, "profiled_http_request_seconds_bucket{route=\"profile\""), 13);
    CHECK_INT(count_prefix(e, "profiled_http_request_seconds_bucket{route=\"healthz\""), 0);
    /* sum in millionths: 0.0002 + 0.002 + 2 (sub-millisecond latencies count) */
    CHECK_SERIES(e, "profiled_http_request_seconds_sum{route=\"profile\"}", 2.0022);
    CHECK_SERIES(e, "profiled_http_request_seconds_count{route=\"profile\"}", 3);
    /* no worker: no worker gauges */
    CHECK(fam_index(e, "profiled_kafka_up") < 0);
    CHECK(fam_index(e, "profiled_partitions") < 0);
    /* every family has HELP and TYPE */
    for (int i = 0; i < e->nfam; i++) {
        CHECK(e->help[i]);
        CHECK(e->type[i][0] != '\0');
        CHECK(strncmp(e->fam[i], "profiled_", 9) == 0);
    }
    pd_free(e);
    pd_buf_free(&out);
    pd_free(m);
}

static void part_set(pd_partstate *p, int owned, int ready, int64_t next, int64_t committed,
                     int64_t hw, int64_t clock)
{
    atomic_store(&p->owned, owned);
    atomic_store(&p->ready, ready);
    atomic_store(&p->next_offset, next);
    atomic_store(&p->committed, committed);
    atomic_store(&p->high_watermark, hw);
    atomic_store(&p->clock_ms, clock);
    atomic_store(&p->generation, 1);
}

TEST(metrics_render_worker)
{
    pd_metrics *m = pd_malloc(sizeof *m);
    pd_metrics_init(m);
    pd_worker *w = pd_calloc(1, sizeof *w);
    pd_partstate parts[4];
    memset(parts, 0, sizeof parts);
    part_set(&parts[0], 1, 1, 100, 90, 150, 1795328747333LL);
    part_set(&parts[1], 0, 0, 5, 5, 10, 1000);      /* not owned: not shown */
    part_set(&parts[2], 1, 0, -1, -1, 10, 0);       /* owned, nothing known yet */
    part_set(&parts[3], 1, 1, 70, 70, 60, 2500);    /* stale watermark: lag 0 */
    w->nparts = 4;
    w->parts = parts;
    w->metrics = m;
    atomic_store(&w->kafka_up, 1);

    pd_buf out = {0};
    pd_metrics_render(m, w, &out);
    expo *e = pd_malloc(sizeof *e);
    expo_parse(e, out.p, out.len);
    CHECK_INT(e->errors, 0);
    CHECK_SERIES(e, "profiled_partitions{state=\"owned\"}", 3);
    CHECK_SERIES(e, "profiled_partitions{state=\"ready\"}", 2);
    CHECK_STR(e->type[fam_index(e, "profiled_partitions")], "gauge");
    CHECK_SERIES(e, "profiled_partition_next_offset{partition=\"0\"}", 100);
    CHECK_SERIES(e, "profiled_partition_next_offset{partition=\"3\"}", 70);
    CHECK_INT(count_prefix(e, "profiled_partition_next_offset{"), 2);
    CHECK_SERIES(e, "profiled_partition_committed_offset{partition=\"0\"}", 90);
    CHECK_INT(count_prefix(e, "profiled_partition_committed_offset{"), 2);
    CHECK_SERIES(e, "profiled_consumer_lag{partition=\"0\"}", 50);
    CHECK_SERIES(e, "profiled_consumer_lag{partition=\"3\"}", 0);
    CHECK_INT(count_prefix(e, "profiled_consumer_lag{"), 2);
    CHECK_SERIES(e, "profiled_partition_clock_seconds{partition=\"0\"}", 1795328747.333);
    CHECK_SERIES(e, "profiled_partition_clock_seconds{partition=\"3\"}", 2.5);
    CHECK_INT(count_prefix(e, "profiled_partition_clock_seconds{"), 2);
    CHECK(strstr(out.p, "profiled_partition_clock_seconds{partition=\"0\"} 1795328747.333\n") != NULL);
    CHECK_SERIES(e, "profiled_kafka_up", 1);
    CHECK(fam_index(e, "profiled_store_bytes") < 0); /* no store */

    atomic_store(&w->kafka_up, 0);
    out.len = 0;
    pd_metrics_render(m, w, &out);
    expo_parse(e, out.p, out.len);
    CHECK_SERIES(e, "profiled_kafka_up", 0);
    pd_free(e);
    pd_buf_free(&out);
    pd_free(w);
    pd_free(m);
}

TEST(metrics_render_store_days)
{
    /* Two day families (2026-11-21 = 20778, 2026-11-22 = 20779, Python
     * datetime) -> one bytes and one keys gauge per day, labelled by date. */
    pd_schema s;
    pd_schema_default(&s, 64);
    char dir[256], err[512] = "";
    snprintf(dir, sizeof dir, "%s", pd_test_tmpdir());
    pd_store *st = NULL;
    pd_store_opts o = {0};
    o.block_cache_mb = 8;
    o.write_buffer_mb = 4;
    if (pd_store_open(&st, dir, &s, &o, err, sizeof err) != PD_OK) {
        pd_test_fail(__FILE__, __LINE__, "open: %s", err);
        return;
    }
    static const char ev[] = "{\"user_id\":\"u-1\",\"ts\":1795328747333,\"type\":\"view\"}";
    pd_event e;
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK_INT(pd_event_parse(&e, &s, ev, strlen(ev), 0, err, sizeof err), 0);
    pd_profile_add(&p, &e);
    pd_event_free(&e);
    pd_store_batch *b = pd_store_batch_new(st);
    CHECK_INT(pd_store_batch_merge(b, 20778, 0, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(pd_store_batch_merge(b, 20779, 0, "u-1", 3, &p, err, sizeof err), 0);
    CHECK_INT(pd_store_commit(st, b, err, sizeof err), 0);
    pd_store_batch_free(b);
    pd_profile_free(&p);

    pd_metrics *m = pd_malloc(sizeof *m);
    pd_metrics_init(m);
    pd_worker *w = pd_calloc(1, sizeof *w);
    w->store = st;
    pd_buf out = {0};
    pd_metrics_render(m, w, &out);
    expo *x = pd_malloc(sizeof *x);
    expo_parse(x, out.p, out.len);
    CHECK_INT(x->errors, 0);
    CHECK_INT(count_prefix(x, "profiled_store_bytes{"), 2);
    CHECK_INT(count_prefix(x, "profiled_store_keys{"), 2);
    CHECK(!isnan(get(x, "profiled_store_bytes{day=\"2026-11-21\"}")));
    CHECK(!isnan(get(x, "profiled_store_bytes{day=\"2026-11-22\"}")));
    CHECK(!isnan(get(x, "profiled_store_keys{day=\"2026-11-22\"}")));
    CHECK_STR(x->type[fam_index(x, "profiled_store_keys")], "gauge");
    CHECK_SERIES(x, "profiled_partitions{state=\"owned\"}", 0);
    /* two new day families: two filters of 65,536 keys at 10 bits (80 KiB each) */
    CHECK(get(x, "profiled_day_filter_bytes") >= 2 * 81920);
    CHECK_SERIES(x, "profiled_day_filter_filling", 0);
    CHECK_SERIES(x, "profiled_day_filter_limited", 0);
    CHECK_SERIES(x, "profiled_query_days_total{result=\"skipped\"}", 0);
    CHECK_STR(x->type[fam_index(x, "profiled_query_days_total")], "counter");
    pd_free(x);
    pd_buf_free(&out);
    pd_free(w);
    pd_free(m);
    pd_store_close(st);
}

/*
 * metrics.c -- process-wide counters and histograms and their Prometheus
 * text exposition (format 0.0.4) for GET /metrics.
 *
 * Writers update C11 atomics with relaxed ordering (PD_INC / PD_ADD,
 * pd_hist_observe); nothing here takes a lock. The renderer reads each
 * atomic once. Histogram buckets are stored NOT cumulative (one increment
 * per observation) and made cumulative while rendering; the rendered _count
 * is the cumulative +Inf bucket of the same read, so a scrape is always
 * self-consistent (+Inf bucket == _count) even while observations race.
 *
 * Every metric is named profiled_*; each family gets one # HELP and one
 * # TYPE line followed by all its samples (the format requires a family's
 * samples to be contiguous). Series policy: fixed label sets (event
 * outcomes, DLQ reasons) are always exposed, zeros included, so rate()
 * works from the first scrape; http_requests_total{route,status} and the
 * per-route latency histograms are exposed only for series that have seen
 * a request. Worker gauges (partitions, offsets, lag, clock, kafka_up) and
 * store sizes per day are exposed only when a worker is given.
 *
 * Float samples and le bounds are printed in the one number format of the
 * API (pd_fmt_double), with Prometheus's "+Inf", "-Inf" and "NaN".
 *
 * No globals: a pd_metrics is owned by main and shared by pointer.
 */
#include "metrics.h"

#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "worker.h"

/* ---- histograms ---- */

void pd_hist_init(pd_hist *h, const double *bounds, int n)
{
    pd_assert(h && n >= 0 && n <= PD_HIST_MAX && (bounds || n == 0));
    h->n = n;
    for (int i = 0; i < PD_HIST_MAX; i++) h->bounds[i] = i < n ? bounds[i] : 0;
    for (int i = 1; i < n; i++) pd_assert(bounds[i] > bounds[i - 1]);
    for (int i = 0; i <= PD_HIST_MAX; i++) atomic_init(&h->counts[i], 0);
    atomic_init(&h->count, 0);
    atomic_init(&h->sum_micro, 0);
}

void pd_hist_observe(pd_hist *h, double v)
{
    /* First bound >= v (le is inclusive); none (or NaN) -> +Inf bucket. */
    int lo = 0, hi = h->n;
    if (isnan(v)) {
        lo = h->n;
    } else {
        while (lo < hi) {
            int mid = lo + (hi - lo) / 2;
            if (h->bounds[mid] >= v) hi = mid;
            else lo = mid + 1;
        }
    }
    atomic_fetch_add_explicit(&h->counts[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    /* The sum is kept in millionths (microseconds for latencies, which are
     * often well under a millisecond); negative / NaN observations add 0 and
     * one observation adds at most 2^53 millionths. */
    double micro = v * 1e6 + 0.5;
    uint64_t add = 0;
    if (micro >= 1.0) add = micro < 9007199254740992.0 ? (uint64_t)micro : (UINT64_C(1) << 53);
    if (add) atomic_fetch_add_explicit(&h->sum_micro, add, memory_order_relaxed);
}

/* ---- routes and status slots ---- */

static const char *const route_names[PD_ROUTE__COUNT] = {
    "profile", "partitions", "healthz", "readyz", "metrics", "internal", "erase", "score", "population", "schema", "other",
};

const char *pd_route_name(int r)
{
    if (r < 0 || r >= PD_ROUTE__COUNT) return "other";
    return route_names[r];
}

/* Slot order; the last slot (0 here) is "other". */
static const int status_codes[PD_STATUS_SLOTS] = {
    200, 400, 401, 404, 405, 413, 414, 431, 500, 502, 503, 0,
};

int pd_status_slot(int status)
{
    for (int i = 0; i < PD_STATUS_SLOTS - 1; i++)
        if (status_codes[i] == status) return i;
    return PD_STATUS_SLOTS - 1;
}

int pd_status_of_slot(int slot)
{
    if (slot < 0 || slot >= PD_STATUS_SLOTS) return 0;
    return status_codes[slot];
}

/* ---- init ---- */

static const double batch_bounds[] = {1, 10, 100, 1000, 10000, 100000};
static const double flush_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05, 0.1, 0.25, 0.5, 1};
static const double http_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                     0.01, 0.025, 0.05, 0.1, 0.5, 1};

void pd_metrics_init(pd_metrics *m)
{
    pd_assert(m);
    memset(m, 0, sizeof *m);
    atomic_init(&m->records_in, 0);
    atomic_init(&m->events_accepted, 0);
    atomic_init(&m->events_duplicate, 0);
    atomic_init(&m->events_misrouted, 0);
    atomic_init(&m->erasures, 0);
    for (int i = 0; i < 3; i++) atomic_init(&m->erase_requests[i], 0);
    for (int i = 0; i < 2; i++) atomic_init(&m->import_resolutions[i], 0);
    atomic_init(&m->events_too_old, 0);
    atomic_init(&m->events_stale_offset, 0);
    for (int i = 0; i < PD_EV__COUNT; i++) atomic_init(&m->events_dlq[i], 0);
    atomic_init(&m->attrs_wrong_type, 0);
    atomic_init(&m->dlq_produce_errors, 0);
    atomic_init(&m->flushes, 0);
    atomic_init(&m->flush_errors, 0);
    atomic_init(&m->disk_pauses, 0);
    atomic_init(&m->store_corruptions, 0);
    atomic_init(&m->store_quarantines, 0);
    atomic_init(&m->store_write_failures, 0);
    atomic_init(&m->store_folds, 0);
    atomic_init(&m->store_writes, 0);
    atomic_init(&m->days_dropped, 0);
    atomic_init(&m->rebalances, 0);
    atomic_init(&m->fetch_wakeups, 0);
    atomic_init(&m->sidefx_redo_records, 0);
    atomic_init(&m->sidefx_redo_dlq, 0);
    atomic_init(&m->sidefx_redo_rerouted, 0);
    atomic_init(&m->sidefx_notes_dropped, 0);
    atomic_init(&m->sidefx_lost, 0);
    atomic_init(&m->offset_gaps, 0);
    atomic_init(&m->offset_gap_records, 0);
    atomic_init(&m->offsets_backwards, 0);
    atomic_init(&m->batch_bytes[0], 0);
    atomic_init(&m->batch_bytes[1], 0);
    atomic_init(&m->dedup_bytes, 0);
    atomic_init(&m->dedup_entries, 0);
    atomic_init(&m->dedup_evictions, 0);
    atomic_init(&m->backups_ok, 0);
    atomic_init(&m->backups_failed, 0);
    atomic_init(&m->backup_last_success_ms, 0);
    atomic_init(&m->pop_oldest_ms, 0);
    atomic_init(&m->pop_covered, 0);
    atomic_init(&m->pop_total, 0);
    atomic_init(&m->pop_refreshes, 0);
    atomic_init(&m->pop_refresh_failures, 0);
    for (int i = 0; i < 3; i++) atomic_init(&m->pop_cache[i], 0);
    atomic_init(&m->backup_last_duration_us, 0);
    atomic_init(&m->backup_last_size, 0);
    atomic_init(&m->backup_last_added, 0);
    atomic_init(&m->dedup_effective_window_ms, -1);
    atomic_init(&m->restores_ok, 0);
    atomic_init(&m->restores_failed, 0);
    atomic_init(&m->restore_bytes, 0);
    for (int i = 0; i < PD_SNAP_REJ__COUNT; i++) atomic_init(&m->snapshots_rejected[i], 0);
    for (int i = 0; i < PD_MEMREC__COUNT; i++) atomic_init(&m->member_records_rejected[i], 0);
    atomic_init(&m->rebuilds, 0);
    atomic_init(&m->partitions_deleted, 0);
    pd_hist_init(&m->batch_events, batch_bounds, (int)PD_ARRAY_LEN(batch_bounds));
    pd_hist_init(&m->flush_seconds, flush_bounds, (int)PD_ARRAY_LEN(flush_bounds));
    pd_hist_init(&m->trim_seconds, flush_bounds, (int)PD_ARRAY_LEN(flush_bounds));
    for (int r = 0; r < PD_ROUTE__COUNT; r++) {
        for (int k = 0; k < PD_STATUS_SLOTS; k++) atomic_init(&m->http_requests[r][k], 0);
        pd_hist_init(&m->http_seconds[r], http_bounds, (int)PD_ARRAY_LEN(http_bounds));
    }
    atomic_init(&m->forwarded, 0);
    atomic_init(&m->forward_errors, 0);
    atomic_init(&m->http_conns_open, 0);
    atomic_init(&m->http_conns_queued, 0);
    atomic_init(&m->http_conns_accepted, 0);
    atomic_init(&m->http_conns_evicted, 0);
    for (int k = 0; k < 2; k++) atomic_init(&m->http_conns_rejected[k], 0);
    for (int k = 0; k < 3; k++) atomic_init(&m->http_conns_timed_out[k], 0);
}

/* ---- rendering ---- */

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void family(pd_buf *b, const char *name, const char *type, const char *help)
{
    pd_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(pd_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    family(b, name, type, help);
    pd_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void counter(pd_buf *b, const char *name, const char *help, uint64_t v)
{
    sample(b, name, "counter", help, v);
}

static void gauge(pd_buf *b, const char *name, const char *help, uint64_t v)
{
    sample(b, name, "gauge", help, v);
}

/* A float in the one number format (pd_fmt_double), with Prometheus's
 * spellings of the non-finite values. */
static void put_float(pd_buf *b, double v)
{
    pd_buf_put_double(b, v, PD_NUM_PROM);
}

/* Samples of one histogram; labels is "" or `route="profile",` (with the
 * trailing comma, placed before le). */
static void hist_samples(pd_buf *b, const char *name, const char *labels, const pd_hist *h)
{
    uint64_t cum = 0;
    for (int i = 0; i <= h->n; i++) {
        cum += LD(h->counts[i]);
        pd_buf_printf(b, "%s_bucket{%sle=\"", name, labels);
        put_float(b, i < h->n ? h->bounds[i] : INFINITY);
        pd_buf_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
    uint64_t sm = LD(h->sum_micro);
    size_t ll = strlen(labels);
    /* labels without the trailing comma for _sum/_count */
    if (ll) pd_buf_printf(b, "%s_sum{%.*s} ", name, (int)(ll - 1), labels);
    else pd_buf_printf(b, "%s_sum ", name);
    put_float(b, (double)sm / 1e6);
    pd_buf_putc(b, '\n');
    if (ll) pd_buf_printf(b, "%s_count{%.*s} %llu\n", name, (int)(ll - 1), labels, (unsigned long long)cum);
    else pd_buf_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

static void render_worker(pd_buf *b, pd_worker *w)
{
    int owned = 0, ready = 0, replica = 0, restoring = 0, incomplete = 0, gap = 0, backwards = 0;
    for (int32_t p = 0; p < w->nparts; p++) {
        if (atomic_load(&w->parts[p].owned)) owned++;
        if (atomic_load(&w->parts[p].ready) && atomic_load(&w->parts[p].owned)) ready++;
        if (atomic_load(&w->parts[p].replica)) replica++;
        if (atomic_load(&w->parts[p].restoring)) restoring++;
        int inc = atomic_load(&w->parts[p].incomplete);
        if (inc & PD_INCOMPLETE_REBUILD) incomplete++;
        if (inc & PD_INCOMPLETE_GAP) gap++;
        if (atomic_load(&w->parts[p].offsets_backwards)) backwards++;
    }
    family(b, "profiled_partitions", "gauge", "Input partitions by state (owned: assigned; ready: restored and consuming).");
    pd_buf_printf(b, "profiled_partitions{state=\"owned\"} %d\n", owned);
    pd_buf_printf(b, "profiled_partitions{state=\"ready\"} %d\n", ready);
    pd_buf_printf(b, "profiled_partitions{state=\"replica\"} %d\n", replica);
    pd_buf_printf(b, "profiled_partitions{state=\"restoring\"} %d\n", restoring);
    pd_buf_printf(b, "profiled_partitions{state=\"incomplete_rebuild\"} %d\n", incomplete);
    pd_buf_printf(b, "profiled_partitions{state=\"offset_gap\"} %d\n", gap);
    pd_buf_printf(b, "profiled_partitions{state=\"offsets_backwards\"} %d\n", backwards);

    /* One family at a time (samples of a family must be contiguous). */
    family(b, "profiled_partition_next_offset", "gauge", "Next input offset to process, per owned partition.");
    for (int32_t p = 0; p < w->nparts; p++) {
        const pd_partstate *ps = &w->parts[p];
        int64_t v = atomic_load(&ps->next_offset);
        if (atomic_load(&ps->owned) && v >= 0)
            pd_buf_printf(b, "profiled_partition_next_offset{partition=\"%d\"} %lld\n", (int)p, (long long)v);
    }
    family(b, "profiled_partition_committed_offset", "gauge", "Next input offset checkpointed in the store, per owned partition.");
    for (int32_t p = 0; p < w->nparts; p++) {
        const pd_partstate *ps = &w->parts[p];
        int64_t v = atomic_load(&ps->committed);
        if (atomic_load(&ps->owned) && v >= 0)
            pd_buf_printf(b, "profiled_partition_committed_offset{partition=\"%d\"} %lld\n", (int)p, (long long)v);
    }
    family(b, "profiled_sidefx_frontier", "gauge",
           "Owner's side-effect frontier, per owned partition: the DLQ records and re-routes of every record below "
           "it are in Kafka and checkpointed (sidefx.h); below the committed offset while a promoted replica "
           "redoes its dead owner's side effects.");
    for (int32_t p = 0; p < w->nparts; p++) {
        const pd_partstate *ps = &w->parts[p];
        int64_t v = atomic_load(&ps->fx_durable);
        if (atomic_load(&ps->owned) && v >= 0)
            pd_buf_printf(b, "profiled_sidefx_frontier{partition=\"%d\"} %lld\n", (int)p, (long long)v);
    }
    family(b, "profiled_consumer_lag", "gauge", "High watermark minus next offset, per owned partition (records).");
    for (int32_t p = 0; p < w->nparts; p++) {
        const pd_partstate *ps = &w->parts[p];
        int64_t next = atomic_load(&ps->next_offset), hw = atomic_load(&ps->high_watermark);
        if (!atomic_load(&ps->owned) || next < 0 || hw < 0) continue;
        int64_t lag = hw > next ? hw - next : 0; /* stale watermark: no negative lag */
        pd_buf_printf(b, "profiled_consumer_lag{partition=\"%d\"} %lld\n", (int)p, (long long)lag);
    }
    family(b, "profiled_partition_clock_seconds", "gauge", "Newest event time seen, per owned partition (epoch seconds).");
    for (int32_t p = 0; p < w->nparts; p++) {
        const pd_partstate *ps = &w->parts[p];
        int64_t ms = atomic_load(&ps->clock_ms);
        if (!atomic_load(&ps->owned) || ms <= 0) continue;
        pd_buf_printf(b, "profiled_partition_clock_seconds{partition=\"%d\"} ", (int)p);
        put_float(b, (double)ms / 1e3);
        pd_buf_putc(b, '\n');
    }
    family(b, "profiled_kafka_up", "gauge", "1 when the Kafka consumer reaches a broker, else 0.");
    pd_buf_printf(b, "profiled_kafka_up %d\n", atomic_load(&w->kafka_up) ? 1 : 0);
    family(b, "profiled_disk_free_bytes", "gauge",
           "Free space of the data directory's filesystem (for unprivileged users), as last measured.");
    pd_buf_printf(b, "profiled_disk_free_bytes %llu\n", (unsigned long long)atomic_load(&w->disk_free_bytes));
    family(b, "profiled_disk_low", "gauge",
           "1 while ingestion is paused for the disk: free space below disk_min_free_mb (reason=\"floor\") or "
           "store writes failing and being retried (reason=\"write_failing\"), else 0.");
    {
        const int dl = atomic_load(&w->disk_low);
        pd_buf_printf(b, "profiled_disk_low{reason=\"floor\"} %d\n", (dl & PD_DISK_LOW_FLOOR) ? 1 : 0);
        pd_buf_printf(b, "profiled_disk_low{reason=\"write_failing\"} %d\n", (dl & PD_DISK_LOW_WRITES) ? 1 : 0);
    }

    if (w->store) {
        pd_day_stats *st = NULL;
        int n = 0;
        if (pd_store_day_stats(w->store, &st, &n) == PD_OK) {
            char day[16];
            family(b, "profiled_store_bytes", "gauge", "Estimated store size per day family (bytes).");
            for (int i = 0; i < n; i++) {
                pd_day_format(st[i].day, day);
                pd_buf_printf(b, "profiled_store_bytes{day=\"%s\"} %llu\n", day, (unsigned long long)st[i].bytes);
            }
            family(b, "profiled_store_keys", "gauge", "Estimated number of profiles per day family.");
            for (int i = 0; i < n; i++) {
                pd_day_format(st[i].day, day);
                pd_buf_printf(b, "profiled_store_keys{day=\"%s\"} %llu\n", day, (unsigned long long)st[i].keys);
            }
        }
        pd_free(st);
        pd_store_mem sm;
        char err[128];
        if (pd_store_mem_stats(w->store, &sm, err, sizeof err) == PD_OK) {
            family(b, "profiled_rocksdb_memory_bytes", "gauge",
                   "RocksDB memory by part (approximate): memtables, table_readers (index and filter blocks "
                   "outside the cache), block_cache.");
            pd_buf_printf(b, "profiled_rocksdb_memory_bytes{part=\"memtables\"} %llu\n",
                          (unsigned long long)sm.memtables);
            pd_buf_printf(b, "profiled_rocksdb_memory_bytes{part=\"table_readers\"} %llu\n",
                          (unsigned long long)sm.table_readers);
            pd_buf_printf(b, "profiled_rocksdb_memory_bytes{part=\"block_cache\"} %llu\n",
                          (unsigned long long)sm.block_cache);
        }
        pd_store_filter_stats fs;
        pd_store_get_filter_stats(w->store, &fs);
        gauge(b, "profiled_day_filter_bytes",
              "Memory of the day filters (about day_filter_bits / 8 bytes per stored user-day).",
              fs.bytes);
        gauge(b, "profiled_day_filter_filling",
              "Day families whose filter is still being filled after the start (always read meanwhile).",
              fs.days_filling);
        gauge(b, "profiled_day_filter_limited",
              "Day families without a filter, or whose filter could not grow, because day_filter_max_mb was "
              "reached (read always, or more false positives).",
              fs.days_limited);
        family(b, "profiled_query_days_total", "counter",
               "Day families in the ranges of profile queries: read from RocksDB, or skipped because the "
               "day filter rules the user out.");
        pd_buf_printf(b, "profiled_query_days_total{result=\"read\"} %llu\n", (unsigned long long)fs.days_read);
        pd_buf_printf(b, "profiled_query_days_total{result=\"skipped\"} %llu\n",
                      (unsigned long long)fs.days_skipped);
        counter(b, "profiled_day_filter_retries_total",
                "Profile reads repeated without the day filters because a commit overlapped them.", fs.retries);
    }
    /* The allocator's view (glibc): bytes in use, free but kept by the
     * allocator, and in separate mmaps -- tells fragmentation from growth. */
    struct mallinfo2 mi = mallinfo2();
    family(b, "profiled_heap_bytes", "gauge", "malloc heap: in_use, free (kept by the allocator), mmapped.");
    pd_buf_printf(b, "profiled_heap_bytes{kind=\"in_use\"} %zu\n", mi.uordblks + mi.hblkhd);
    pd_buf_printf(b, "profiled_heap_bytes{kind=\"free\"} %zu\n", mi.fordblks);
    pd_buf_printf(b, "profiled_heap_bytes{kind=\"mmapped\"} %zu\n", mi.hblkhd);
}

/* The HTTP front end's connection figures (http_front.c). */
static void render_http_conns(pd_buf *b, const pd_metrics *m)
{
    gauge(b, "profiled_http_connections", "Client connections open (idle, reading a head, or being answered).",
          LD(m->http_conns_open));
    gauge(b, "profiled_http_queued_requests", "Complete request heads waiting for a free HTTP worker.",
          LD(m->http_conns_queued));
    counter(b, "profiled_http_connections_accepted_total", "Client connections accepted.",
            LD(m->http_conns_accepted));
    family(b, "profiled_http_connections_rejected_total", "counter",
           "Connections answered 503 at accept: over http_max_connections_per_client, or over "
           "http_max_connections with none idle to close.");
    pd_buf_printf(b, "profiled_http_connections_rejected_total{reason=\"per_client\"} %llu\n",
                  (unsigned long long)LD(m->http_conns_rejected[0]));
    pd_buf_printf(b, "profiled_http_connections_rejected_total{reason=\"total\"} %llu\n",
                  (unsigned long long)LD(m->http_conns_rejected[1]));
    counter(b, "profiled_http_connections_evicted_total",
            "Idle connections closed at http_max_connections to admit a new one.", LD(m->http_conns_evicted));
    family(b, "profiled_http_connections_timed_out_total", "counter",
           "Connections closed by a deadline: head (http_head_timeout_ms), idle (kept, "
           "http_keepalive_timeout_ms), write (a client reading no answer byte for http_request_timeout_ms).");
    static const char *const phase[3] = {"head", "idle", "write"};
    for (int k = 0; k < 3; k++)
        pd_buf_printf(b, "profiled_http_connections_timed_out_total{phase=\"%s\"} %llu\n", phase[k],
                      (unsigned long long)LD(m->http_conns_timed_out[k]));
}

void pd_metrics_render(const pd_metrics *cm, struct pd_worker *w, pd_buf *b)
{
    /* Atomic loads need a non-const object in C11; rendering only reads. */
    pd_metrics *m = (pd_metrics *)cm;
    pd_assert(m && b);

    counter(b, "profiled_records_in_total", "Kafka records consumed.", LD(m->records_in));

    family(b, "profiled_events_total", "counter", "Events by outcome.");
    static const char *const outcomes[] = {"accepted", "duplicate", "misrouted", "too_old", "stale_offset"};
    const uint64_t ov[] = {LD(m->events_accepted), LD(m->events_duplicate), LD(m->events_misrouted),
                           LD(m->events_too_old), LD(m->events_stale_offset)};
    for (size_t i = 0; i < PD_ARRAY_LEN(outcomes); i++)
        pd_buf_printf(b, "profiled_events_total{outcome=\"%s\"} %llu\n", outcomes[i], (unsigned long long)ov[i]);

    family(b, "profiled_dlq_events_total", "counter", "Events sent to the dead-letter queue, by reason.");
    for (int r = 1; r < PD_EV__COUNT; r++)
        pd_buf_printf(b, "profiled_dlq_events_total{reason=\"%s\"} %llu\n", pd_ev_reason_name(r),
                      (unsigned long long)LD(m->events_dlq[r]));

    counter(b, "profiled_erasures_total",
            "Erasure records applied (by the owner and by each replica or replay of the partition).",
            LD(m->erasures));
    family(b, "profiled_erase_requests_total", "counter",
           "DELETE /v1/profiles requests by outcome of producing their erasure record.");
    static const char *const eo[] = {"accepted", "failed", "timeout"};
    for (int i = 0; i < 3; i++)
        pd_buf_printf(b, "profiled_erase_requests_total{outcome=\"%s\"} %llu\n", eo[i],
                      (unsigned long long)LD(m->erase_requests[i]));
    family(b, "profiled_import_resolutions_total", "counter",
           "Start times of imported partitions resolved to offsets: by Kafka's verified answer (lookup) or by the "
           "fallback scan of record timestamps (scan).");
    static const char *const ho[] = {"lookup", "scan"};
    for (int i = 0; i < 2; i++)
        pd_buf_printf(b, "profiled_import_resolutions_total{how=\"%s\"} %llu\n", ho[i],
                      (unsigned long long)LD(m->import_resolutions[i]));
    counter(b, "profiled_dlq_produce_errors_total", "Failures producing to the dead-letter queue.",
            LD(m->dlq_produce_errors));
    counter(b, "profiled_attrs_wrong_type_total", "Event attributes skipped for a wrong type.",
            LD(m->attrs_wrong_type));
    counter(b, "profiled_flushes_total", "Store commits.", LD(m->flushes));
    counter(b, "profiled_fetch_wakeups_total",
            "Times the ingest loop, idle while Kafka held unread records, woke the consumer's fetcher "
            "(librdkafka < 2.1 pauses a partition for up to 1 s once its pre-fetch queue was full).",
            LD(m->fetch_wakeups));
    counter(b, "profiled_flush_errors_total", "Failed store commits.", LD(m->flush_errors));
    counter(b, "profiled_store_corruptions_total",
            "Store reads that failed as corrupt (a block checksum); the store is marked and, with "
            "store_corruption=quarantine, the worker restarts to quarantine it.", LD(m->store_corruptions));
    counter(b, "profiled_store_quarantines_total",
            "Corrupt stores this process moved aside at its start (store_corruption=quarantine).",
            LD(m->store_quarantines));
    counter(b, "profiled_disk_pauses_total",
            "Times ingestion paused because the data directory's free space fell below disk_min_free_mb.",
            LD(m->disk_pauses));
    counter(b, "profiled_store_write_failures_total",
            "Store writes that failed with an I/O error (a full disk); each is retried with the same batch.",
            LD(m->store_write_failures));
    family(b, "profiled_sidefx_redo_records_total", "counter",
           "Records a new owner re-read to perform the side effects (DLQ, re-routes) its predecessor had not "
           "performed, by what they needed (none: already fine).");
    {
        uint64_t rd = LD(m->sidefx_redo_dlq), rr = LD(m->sidefx_redo_rerouted), all = LD(m->sidefx_redo_records);
        pd_buf_printf(b, "profiled_sidefx_redo_records_total{action=\"dlq\"} %llu\n", (unsigned long long)rd);
        pd_buf_printf(b, "profiled_sidefx_redo_records_total{action=\"reroute\"} %llu\n", (unsigned long long)rr);
        pd_buf_printf(b, "profiled_sidefx_redo_records_total{action=\"none\"} %llu\n",
                      (unsigned long long)(all - rd - rr));
    }
    counter(b, "profiled_sidefx_notes_dropped_total",
            "Replica time-rejection notes dropped over the per-partition cap (a promotion may then miss the DLQ "
            "record of such a record).",
            LD(m->sidefx_notes_dropped));
    counter(b, "profiled_sidefx_lost_records_total",
            "Records whose side effects (DLQ, re-route) were still due but the topic no longer holds them.",
            LD(m->sidefx_lost));
    family(b, "profiled_offset_errors_total", "counter",
           "Partitions whose position was out of the topic's range: gap (the topic's first offset is beyond "
           "the checkpoint: records lost to retention) or backwards (the checkpoint is beyond the topic's end: "
           "recreated or truncated).");
    pd_buf_printf(b, "profiled_offset_errors_total{kind=\"gap\"} %llu\n", (unsigned long long)LD(m->offset_gaps));
    pd_buf_printf(b, "profiled_offset_errors_total{kind=\"backwards\"} %llu\n",
                  (unsigned long long)LD(m->offsets_backwards));
    counter(b, "profiled_offset_gap_records_total",
            "Records between a checkpoint and the topic's first offset, skipped because Kafka deleted them.",
            LD(m->offset_gap_records));
    gauge(b, "profiled_batch_bytes",
          "Memory held by the two in-memory batches (aggregation tables, event logs, recycled entries); "
          "it grows with a burst (catch-up) and shrinks back when the batches stay small.",
          LD(m->batch_bytes[0]) + LD(m->batch_bytes[1]));
    gauge(b, "profiled_dedup_index_bytes",
          "Memory of the in-memory de-dup indexes of all partitions (updated at every commit); it grows "
          "with event rate x dedup_window, not with a size setting.",
          LD(m->dedup_bytes));
    gauge(b, "profiled_dedup_index_entries",
          "Event ids held by the de-dup indexes (updated at every commit).",
          LD(m->dedup_entries));
    counter(b, "profiled_dedup_evictions_total",
            "Event ids the de-dup index forgot before dedup_window passed them, because a partition "
            "accepted more than dedup_max_ids ids within the window: their duplicates count again.",
            LD(m->dedup_evictions));
    family(b, "profiled_backups_total", "counter", "Backups taken into backup_dir (scheduled and requested), by result.");
    pd_buf_printf(b, "profiled_backups_total{result=\"ok\"} %llu\nprofiled_backups_total{result=\"error\"} %llu\n",
                  (unsigned long long)LD(m->backups_ok), (unsigned long long)LD(m->backups_failed));
    {
        int64_t ls = atomic_load_explicit(&m->backup_last_success_ms, memory_order_relaxed);
        family(b, "profiled_backup_last_success_timestamp_seconds", "gauge",
               "End of the last successful backup (epoch seconds; 0: none since start).");
        pd_buf_puts(b, "profiled_backup_last_success_timestamp_seconds ");
        put_float(b, (double)ls / 1e3);
        pd_buf_putc(b, '\n');
        family(b, "profiled_backup_last_duration_seconds", "gauge", "Duration of the last successful backup.");
        pd_buf_puts(b, "profiled_backup_last_duration_seconds ");
        put_float(b, (double)LD(m->backup_last_duration_us) / 1e6);
        pd_buf_putc(b, '\n');
    }
    {
        int64_t po = atomic_load_explicit(&m->pop_oldest_ms, memory_order_relaxed);
        family(b, "profiled_population_prior_age_seconds", "gauge",
               "Age of the population prior: time since its oldest partition copy was last confirmed "
               "(-1: no prior yet).");
        pd_buf_puts(b, "profiled_population_prior_age_seconds ");
        put_float(b, po ? (double)(pd_now_ms() - po) / 1e3 : -1.0);
        pd_buf_putc(b, '\n');
    }
    gauge(b, "profiled_population_partitions_covered", "Partitions whose population is in the prior.",
          LD(m->pop_covered));
    gauge(b, "profiled_population_partitions_total", "Partitions of the input topic (as the prior last saw them).",
          LD(m->pop_total));
    counter(b, "profiled_population_refreshes_total", "Refreshes of the population prior.", LD(m->pop_refreshes));
    counter(b, "profiled_population_refresh_failures_total",
            "Failures while refreshing the population prior: a peer that did not answer or answered badly, or a local read error (those partitions keep their last copy).",
            LD(m->pop_refresh_failures));
    family(b, "profiled_population_cache_total", "counter",
           "Scoring requests by where their population sums came from: hit (cached with the prior), stored "
           "(merged, then cached), full (merged for the request alone: population_cache_keys keys cached already).");
    {
        static const char *const res[3] = {"hit", "stored", "full"};
        for (int i = 0; i < 3; i++)
            pd_buf_printf(b, "profiled_population_cache_total{result=\"%s\"} %llu\n", res[i],
                          (unsigned long long)LD(m->pop_cache[i]));
    }
    gauge(b, "profiled_backup_last_size_bytes",
          "Size of the last successful backup (its files, shared ones included).", LD(m->backup_last_size));
    gauge(b, "profiled_backup_last_added_bytes",
          "Bytes the last successful backup added to backup_dir (the incremental part).", LD(m->backup_last_added));
    int64_t ew = atomic_load_explicit(&m->dedup_effective_window_ms, memory_order_relaxed);
    if (ew >= 0) { /* from the first commit on */
        family(b, "profiled_dedup_effective_window_seconds", "gauge",
               "The de-dup window in effect, smallest over this worker's loaded partitions: dedup_window, "
               "or less where dedup_max_ids bit (updated at every commit).");
        pd_buf_puts(b, "profiled_dedup_effective_window_seconds ");
        put_float(b, (double)ew / 1e3);
        pd_buf_putc(b, '\n');
    }
    counter(b, "profiled_store_writes_total",
            "Profile deltas written (one per partition, day and user in a commit): events per write is how "
            "much the batch aggregates.",
            LD(m->store_writes));
    counter(b, "profiled_store_folds_total",
            "Profile deltas written as a fully merged value (ends a busy key's merge operand chain).",
            LD(m->store_folds));
    counter(b, "profiled_days_dropped_total", "Day families dropped by retention.", LD(m->days_dropped));
    counter(b, "profiled_rebalances_total", "Consumer group rebalances.", LD(m->rebalances));
    counter(b, "profiled_restores_total", "Partitions restored from a peer's snapshot.", LD(m->restores_ok));
    counter(b, "profiled_restore_failures_total", "Partitions for which no usable snapshot could be fetched.",
            LD(m->restores_failed));
    counter(b, "profiled_restore_bytes_total", "Snapshot bytes received from peers.", LD(m->restore_bytes));
    family(b, "profiled_snapshots_rejected_total", "counter",
           "Snapshot streams from peers refused, by reason (mac: forged, altered or another cluster secret; "
           "malformed; size: over the announced length or the disk bound).");
    for (int r = 0; r < PD_SNAP_REJ__COUNT; r++)
        pd_buf_printf(b, "profiled_snapshots_rejected_total{reason=\"%s\"} %llu\n", pd_handoff_reject_reason(r),
                      (unsigned long long)LD(m->snapshots_rejected[r]));
    family(b, "profiled_member_records_rejected_total", "counter",
           "Membership records not applied, by reason (unsigned, bad_mac, key_mismatch, malformed: not "
           "authentic; expired: older than member_ttl, includes history read at start; stale: a replay; "
           "full: members_max reached).");
    for (int r = 1; r < PD_MEMREC__COUNT; r++)
        pd_buf_printf(b, "profiled_member_records_rejected_total{reason=\"%s\"} %llu\n", pd_memrec_reason(r),
                      (unsigned long long)LD(m->member_records_rejected[r]));
    counter(b, "profiled_rebuilds_total", "Partitions rebuilt by replaying the input topic.", LD(m->rebuilds));
    counter(b, "profiled_partitions_deleted_total", "Released partitions whose local state was deleted.",
            LD(m->partitions_deleted));

    family(b, "profiled_batch_events", "histogram", "Events per store commit.");
    hist_samples(b, "profiled_batch_events", "", &m->batch_events);
    family(b, "profiled_flush_seconds", "histogram", "Store commit latency (seconds).");
    hist_samples(b, "profiled_flush_seconds", "", &m->flush_seconds);
    family(b, "profiled_malloc_trim_seconds", "histogram",
           "Time the ingest loop spends every 30 s handing freed heap pages back to the OS (malloc_trim).");
    hist_samples(b, "profiled_malloc_trim_seconds", "", &m->trim_seconds);

    family(b, "profiled_http_requests_total", "counter", "HTTP requests by route and status.");
    for (int r = 0; r < PD_ROUTE__COUNT; r++)
        for (int k = 0; k < PD_STATUS_SLOTS; k++) {
            uint64_t v = LD(m->http_requests[r][k]);
            if (!v) continue;
            int st = pd_status_of_slot(k);
            if (st) pd_buf_printf(b, "profiled_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                                  pd_route_name(r), st, (unsigned long long)v);
            else pd_buf_printf(b, "profiled_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                               pd_route_name(r), (unsigned long long)v);
        }

    family(b, "profiled_http_request_seconds", "histogram", "HTTP request latency by route (seconds).");
    for (int r = 0; r < PD_ROUTE__COUNT; r++) {
        if (!LD(m->http_seconds[r].count)) continue;
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\",", pd_route_name(r));
        hist_samples(b, "profiled_http_request_seconds", labels, &m->http_seconds[r]);
    }

    counter(b, "profiled_forwarded_requests_total", "Requests forwarded to the owning peer.", LD(m->forwarded));
    counter(b, "profiled_forward_errors_total", "Failed forwards to a peer.", LD(m->forward_errors));
    render_http_conns(b, m);

    if (w) render_worker(b, w);
}

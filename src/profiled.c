/*
 * profiled.c -- the worker daemon: wiring and shutdown order.
 *
 * Start-up: settings (table in config.c) -> schema -> store -> Kafka clients
 * (learn the partition count) -> HTTP -> membership -> ingest loop on the
 * main thread.
 *
 * Shutdown, written as code in main() below, on SIGTERM/SIGINT:
 *   1. stop HTTP (no new queries; in-flight ones finish),
 *   2. flush the pending batch (state + offsets, one WriteBatch),
 *   3. close the consumer (leaves the group so partitions move at once),
 *   4. publish "alive": false and stop the membership thread,
 *   5. close the store,
 *   6. destroy the consumers (librdkafka 2.0.2 can abort there: kafka.h).
 * A store found corrupt while running (quarantine.h) takes the same path
 * without the final flush and then executes the program again.
 * A second signal exits immediately (the store is crash-safe: the next start
 * resumes from the last checkpoint). A watchdog bounds the whole shutdown by
 * shutdown_timeout_ms.
 */
#include "backupd.h"
#include "config.h"
#include "http.h"
#include "ingest.h"
#include "quarantine.h"

#include <limits.h>
#include <stdatomic.h>
#include "kafka.h"
#include "members.h"
#include "population.h"
#include "metrics.h"
#include "schema.h"
#include "score.h"
#include "store.h"
#include "util.h"
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pd_worker *g_worker; /* only for the signal handler */

static void on_signal(int sig)
{
    (void)sig;
    if (g_worker->stop) {
        static const char msg[] = "profiled: second signal, exiting now\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(130);
    }
    g_worker->stop = 1;
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

typedef struct {
    int64_t timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} watchdog;

static void *watchdog_main(void *arg)
{
    watchdog *wd = arg;
    pd_thread_name("pd-watchdog");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wd->timeout_ms / 1000;
    ts.tv_nsec += (wd->timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&wd->mu);
    int rc = 0;
    while (!wd->done && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
    int done = wd->done;
    pthread_mutex_unlock(&wd->mu);
    if (!done) {
        fprintf(stderr, "profiled: shutdown took longer than %" PRId64 " ms, exiting\n", wd->timeout_ms);
        _exit(1);
    }
    return NULL;
}

/* The store_corruption policy (quarantine.h): refuse (returns 3) or move
 * the data directory aside and start empty (returns 0). */
static int store_corrupt(const pd_config *cfg, pd_worker *w, const char *why)
{
    char moved[PATH_MAX], err[PATH_MAX + 256];
    if (strcmp(cfg->store_corruption, "quarantine") != 0) {
        pd_error("store %s is corrupt: %s. Not starting (store_corruption=%s): restart with "
                 "store_corruption=quarantine, or move the directory away, to restore its partitions from peers "
                 "and the topic (docs/operations.md, \"Store corruption\")", cfg->data_dir, why, cfg->store_corruption);
        return 3;
    }
    if (pd_quarantine_move(cfg->data_dir, moved, sizeof moved, err, sizeof err) != PD_OK) {
        pd_error("store %s is corrupt (%s) and cannot be quarantined: %s", cfg->data_dir, why, err);
        return 3;
    }
    pd_error("store %s is corrupt: %s. Quarantined as %s (kept for inspection); starting with an empty store: "
             "every partition is restored from a peer's snapshot or rebuilt from the topic",
             cfg->data_dir, why, moved);
    atomic_store(&w->store_quarantined, 1);
    PD_INC(w->metrics->store_quarantines);
    if (mkdir_p(cfg->data_dir) != 0) {
        pd_error("data_dir '%s': %s", cfg->data_dir, strerror(errno));
        return 3;
    }
    return 0;
}

int main(int argc, char **argv)
{
    pd_config cfg;
    pd_schema schema;
    pd_metrics metrics;
    pd_worker w;
    pd_store *store = NULL;
    pd_ingest *ig = NULL;
    pd_http *http = NULL;
    pd_members *members = NULL;
    char err[1024];
    int help = 0, rc = 1, restart = 0;

    /* Allocator policy (glibc), set before any thread starts. Buffers that
     * grow to megabytes (WriteBatches, batch logs, query scratch) are mmapped
     * at a fixed 1 MiB threshold and so go back to the OS when freed; the
     * default threshold adapts upwards after the first such free, and those
     * buffers then fragment the heap, which showed as RSS creeping while
     * memory in use stayed flat. Fewer arenas (the default is 8 per core,
     * and ~40 threads allocate here) keep freed memory reusable across
     * threads. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_ARENA_MAX, 4);
    memset(&w, 0, sizeof w);
    pd_config_init(&cfg);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--print-config-markdown") == 0) {
            pd_config_markdown(stdout);
            pd_config_free(&cfg);
            return 0;
        }
    }
    if (pd_config_parse_args(&cfg, argc, argv, &help, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: %s (see --help)\n", err);
        pd_config_free(&cfg);
        return 2;
    }
    if (help) {
        pd_config_usage(stdout, "profiled");
        pd_config_free(&cfg);
        return 0;
    }
    if (pd_config_finalize(&cfg, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: %s\n", err);
        pd_config_free(&cfg);
        return 2;
    }
    pd_log_quiet = cfg.quiet;
    if (pd_tz_parse(&w.tz, cfg.timezone, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: %s\n", err);
        pd_config_free(&cfg);
        return 2;
    }
    if (*cfg.schema) {
        if (pd_schema_load_file(&schema, cfg.schema, (uint32_t)cfg.categorical_max_values, err, sizeof err)) {
            fprintf(stderr, "profiled: %s\n", err);
            pd_config_free(&cfg);
            return 2;
        }
    } else {
        pd_schema_default(&schema, (uint32_t)cfg.categorical_max_values);
    }
    pd_metrics_init(&metrics);
    w.cfg = &cfg;
    w.schema = &schema;
    w.metrics = &metrics;
    g_worker = &w;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mkdir_p(cfg.data_dir) != 0) {
        fprintf(stderr, "profiled: data_dir '%s': %s\n", cfg.data_dir, strerror(errno));
        goto out;
    }
    pd_store_opts so = {.block_cache_mb = cfg.block_cache_mb, .write_buffer_mb = cfg.write_buffer_mb,
                        .day_filter_bits = cfg.day_filter_bits > 0 ? (int)cfg.day_filter_bits : -1,
                        .day_filter_max_bytes = (uint64_t)cfg.day_filter_max_mb << 20,
                        .population_max_values = (uint32_t)cfg.population_max_values};
    /* A corrupt store: the store_corruption policy (quarantine.h). */
    char why[512];
    if (pd_quarantine_marked(cfg.data_dir, why, sizeof why) && (rc = store_corrupt(&cfg, &w, why)) != 0) goto out;
    int orc = pd_store_open(&store, cfg.data_dir, &schema, &so, err, sizeof err);
    if (orc == PD_ECORRUPT) {
        if ((rc = store_corrupt(&cfg, &w, err)) != 0) goto out;
        orc = pd_store_open(&store, cfg.data_dir, &schema, &so, err, sizeof err);
    }
    rc = 1;
    if (orc != PD_OK) {
        fprintf(stderr, "profiled: store: %s\n", err);
        goto out;
    }
    {
        char imp[32];
        if (pd_store_get_import(store, imp, sizeof imp) == PD_OK && strcmp(imp, "done") != 0) {
            fprintf(stderr, "profiled: store: '%s' is a half-written import (profilectl import did not finish): "
                    "run the import again (it starts over) before starting a worker on it\n", cfg.data_dir);
            goto out;
        }
    }
    w.store = store;
    if (pd_ingest_new(&ig, &w, 1, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: %s\n", err);
        goto out;
    }
    if (pd_backupd_start(&w.backups, &w, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: %s\n", err);
        goto out;
    }
    if (pd_http_start(&http, &w, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: http: %s\n", err);
        goto out;
    }
    if (pd_members_start(&members, &w, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: membership: %s\n", err);
        goto out;
    }
    w.members = members;
    if (pd_population_start(&w, err, sizeof err) != PD_OK) {
        fprintf(stderr, "profiled: %s\n", err);
        goto out;
    }
    pd_info("worker %s ready: %s, data %s, topic %s (%d partitions)", cfg.id, w.advertise, cfg.data_dir,
            cfg.topic, w.nparts);
    /* Machine-readable line for scripts: the URL this worker serves on. */
    printf("listening %s\n", w.advertise);
    fflush(stdout);

    /* Queries are latency-bound, ingestion is throughput-bound: lower the
     * ingest loop's priority (this thread only; the HTTP, Kafka and
     * RocksDB threads already exist and keep theirs) so a query waking up
     * preempts it. Linux applies PRIO_PROCESS to a thread id. */
    if (cfg.ingest_nice > 0 && pd_thread_nice((int)cfg.ingest_nice) != PD_OK)
        pd_warn("ingest_nice %lld: setpriority: %s", (long long)cfg.ingest_nice, strerror(errno));
    rc = pd_ingest_run(ig) == PD_OK ? 0 : 1;
    /* A corrupt store (quarantine.h) restarts the worker, unless a signal
     * asked it to stop (stop == 1); a signal from here on exits at once. */
    if (w.stop != 1 && pd_quarantine_restart_due(&w)) {
        w.stop = 2;
        restart = 1;
    }

out:;
    watchdog wd = {.timeout_ms = cfg.shutdown_timeout_ms, .mu = PTHREAD_MUTEX_INITIALIZER,
                   .cv = PTHREAD_COND_INITIALIZER};
    pthread_t wdt;
    int have_wd = pthread_create(&wdt, NULL, watchdog_main, &wd) == 0;
    pd_info("shutting down");
    pd_http_stop(http);       /* 1. no new queries */
    pd_population_stop(&w);   /* its thread reads the store and the members map */
    pd_ingest_close(ig);      /* 2+3. flush, leave the group */
    rd_kafka_t *group_consumer, *replica_consumer;
    pd_ingest_take_consumers(ig, &group_consumer, &replica_consumer);
    w.members = NULL;
    pd_members_stop(members); /* 4. tell peers we are gone */
    pd_ingest_free(ig);
    pd_backupd_stop(w.backups);       /* an ongoing backup ends first */
    w.backups = NULL;
    if (store) pd_store_close(store); /* 5. */
    pd_info("stopped");
    /* 6. Last, when nothing durable is left: librdkafka 2.0.2 can abort
     * destroying a consumer that never got its first assignment (#4312;
     * kafka.h turns that abort into exit 0). */
    pd_kafka_destroy_consumers(group_consumer, replica_consumer);
    if (have_wd) {
        pthread_mutex_lock(&wd.mu);
        wd.done = 1;
        pthread_cond_signal(&wd.cv);
        pthread_mutex_unlock(&wd.mu);
        pthread_join(wdt, NULL);
    }
    free(w.parts);
    pd_config_free(&cfg);
    if (restart) { /* quarantine.h: the store is quarantined at the next start */
        if (pd_quarantine_reexec(argv, err, sizeof err) != PD_OK) pd_error("%s", err);
        return 3;
    }
    return rc;
}

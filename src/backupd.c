/*
 * backupd.c -- the worker's scheduled and requested backups (backupd.h).
 *
 * The timer thread sleeps on a condition variable (so stopping it is
 * immediate) until the next backup is due: backup_interval after the end
 * of the previous one, the first one backup_interval after start. Each
 * run takes the run mutex, calls pd_backup_create and publishes the
 * outcome to the metrics.
 */
#include "backupd.h"
#include "metrics.h"
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

struct pd_backupd {
    pd_worker *w;
    pthread_mutex_t run_mu;  /* one backup at a time */
    pthread_mutex_t mu;      /* guards stop; with cv */
    pthread_cond_t cv;
    int stop;
    pthread_t thread;
    int have_thread;
};

int pd_backupd_run(pd_backupd *b, pd_backup_info *info, uint64_t *added, int64_t *dur_us, char *err,
                   size_t errlen)
{
    const pd_config *cfg = b->w->cfg;
    pd_metrics *m = b->w->metrics;
    pthread_mutex_lock(&b->run_mu);
    int64_t t0 = pd_mono_us();
    int rc = pd_backup_create(b->w->store, cfg->backup_dir, (uint32_t)cfg->backup_keep, info, added, err, errlen);
    *dur_us = pd_mono_us() - t0;
    pthread_mutex_unlock(&b->run_mu);
    if (rc == PD_OK) {
        PD_INC(m->backups_ok);
        atomic_store_explicit(&m->backup_last_success_ms, pd_now_ms(), memory_order_relaxed);
        atomic_store_explicit(&m->backup_last_duration_us, (uint64_t)*dur_us, memory_order_relaxed);
        atomic_store_explicit(&m->backup_last_size, info->size, memory_order_relaxed);
        atomic_store_explicit(&m->backup_last_added, *added, memory_order_relaxed);
        pd_info("backup %u into %s: %llu bytes (%llu new), %u files, %.3fs", info->id, cfg->backup_dir,
                (unsigned long long)info->size, (unsigned long long)*added, info->files, (double)*dur_us / 1e6);
    } else {
        PD_INC(m->backups_failed);
        pd_error("backup into %s failed: %s", cfg->backup_dir, err);
    }
    return rc;
}

static void *timer_main(void *arg)
{
    pd_backupd *b = arg;
    const int64_t every_ms = b->w->cfg->backup_interval_ms;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += every_ms / 1000;
        ts.tv_nsec += (every_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        int e = 0;
        while (!b->stop && e != ETIMEDOUT) e = pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        if (b->stop) break;
        pthread_mutex_unlock(&b->mu);
        pd_backup_info info;
        uint64_t added = 0;
        int64_t dur = 0;
        char err[512];
        pd_backupd_run(b, &info, &added, &dur, err, sizeof err); /* logged and counted there */
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int pd_backupd_start(pd_backupd **out, pd_worker *w, char *err, size_t errlen)
{
    *out = NULL;
    if (!w->cfg->backup_dir || !*w->cfg->backup_dir) return PD_OK;
    pd_backupd *b = pd_calloc(1, sizeof *b);
    b->w = w;
    pthread_mutex_init(&b->run_mu, NULL);
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (w->cfg->backup_interval_ms > 0) {
        if (pthread_create(&b->thread, NULL, timer_main, b) != 0) {
            pd_backupd_stop(b);
            return pd_seterr(err, errlen, PD_ERR, "backups: cannot start the timer thread");
        }
        b->have_thread = 1;
    }
    pd_info("backups into %s every %llds, keeping %lld%s", w->cfg->backup_dir,
            (long long)(w->cfg->backup_interval_ms / 1000), (long long)w->cfg->backup_keep,
            w->cfg->backup_interval_ms > 0 ? "" : " (interval 0: on request only)");
    *out = b;
    return PD_OK;
}

void pd_backupd_stop(pd_backupd *b)
{
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (b->have_thread) pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->run_mu);
    pd_free(b);
}

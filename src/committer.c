/*
 * committer.c -- the committer thread (contract in committer.h).
 *
 * The mailbox holds at most one slot: `job` from submit until the commit
 * has finished, then `done` until collected. Both are guarded by mu; the
 * slot's contents are touched only by the thread its `owner` names.
 *
 * A write that fails with an I/O error (a full disk: RocksDB's NoSpace)
 * is retried, when retries are on, with the same WriteBatch: it is
 * complete and was not applied (RocksDB writes the WAL before the
 * memtables and refuses writes while it has a background error), so the
 * store gets exactly what was handed over, once, and the ingest thread's
 * bookkeeping (moved forward at hand-over) stays true. Meanwhile
 * `stalled` is set (the ingest thread pauses consumption) and the retry
 * waits on cv, so a cancel (shutdown) ends it at once: the commit then
 * fails as before and a restart resumes from the store's checkpoint.
 * Building the deltas is not retried (not idempotent): its failure is
 * returned.
 */
#include "committer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pd_committer {
    pd_store *store;
    int64_t nice;
    pd_profile scratch;      /* committer thread: the profile of one entry */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    pd_batch_slot *job;      /* handed over, being built and written */
    pd_batch_slot *done;     /* finished, not collected yet */
    int rc, quit;
    int retry, cancel;       /* retry failed writes; give the retry up */
    uint64_t writes;
    char err[256];
    _Atomic int stalled;     /* a write is being retried (read by any thread) */
    _Atomic uint64_t write_failures;
    char stall_err[256];     /* guarded by mu: the last failed write's error */
};

/* Retries the write of a built batch while it fails with an I/O error and
 * retries are on, backing off 100 ms .. 5 s (waits on cv: a cancel ends
 * it). Called with mu unlocked; returns the last result. */
static int commit_retrying(pd_committer *cm, pd_store_batch *sb, char *err, size_t errlen)
{
    int rc = pd_store_commit(cm->store, sb, err, errlen);
    int64_t backoff_ms = 100;
    while (rc == PD_EIO) {
        atomic_fetch_add(&cm->write_failures, 1);
        pthread_mutex_lock(&cm->mu);
        if (!cm->retry || cm->cancel) {
            pthread_mutex_unlock(&cm->mu);
            break;
        }
        if (!atomic_load(&cm->stalled)) pd_error("store write failed, retrying until it succeeds: %s", err);
        atomic_store(&cm->stalled, 1);
        snprintf(cm->stall_err, sizeof cm->stall_err, "%s", err);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += backoff_ms / 1000;
        ts.tv_nsec += (backoff_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        while (!cm->cancel && pthread_cond_timedwait(&cm->cv, &cm->mu, &ts) == 0) {
        }
        pthread_mutex_unlock(&cm->mu);
        backoff_ms = PD_MIN(backoff_ms * 2, 5000);
        rc = pd_store_commit(cm->store, sb, err, errlen);
    }
    if (atomic_load(&cm->stalled)) {
        if (rc == PD_OK) pd_info("store write succeeded again: committing resumes");
        atomic_store(&cm->stalled, 0);
    }
    return rc;
}

static void *committer_main(void *arg)
{
    pd_committer *cm = arg;
    pd_thread_name("pd-commit");
    /* Part of ingestion: same priority as the ingest loop (profiled.c). */
    if (cm->nice > 0) (void)pd_thread_nice((int)cm->nice);
    pthread_mutex_lock(&cm->mu);
    for (;;) {
        while (!cm->quit && !cm->job) pthread_cond_wait(&cm->cv, &cm->mu);
        if (!cm->job) break; /* quit */
        pd_batch_slot *s = cm->job;
        pthread_mutex_unlock(&cm->mu);
        pd_assert(s->owner == PD_SLOT_COMMITTER);
        char err[256] = "";
        uint64_t writes = 0;
        int rc = pd_batch_build(&s->batch, s->sb, &cm->scratch, &writes, err, sizeof err);
        if (rc == PD_OK) rc = commit_retrying(cm, s->sb, err, sizeof err);
        if (rc) pd_store_batch_clear(s->sb); /* the worker stops (ingest.c) */
        pd_batch_clear(&s->batch);
        pthread_mutex_lock(&cm->mu);
        s->owner = PD_SLOT_INGEST;
        cm->job = NULL;
        cm->done = s;
        cm->writes = writes;
        cm->rc = rc;
        memcpy(cm->err, err, sizeof err);
        pthread_cond_broadcast(&cm->cv);
    }
    pthread_mutex_unlock(&cm->mu);
    return NULL;
}

int pd_committer_start(pd_committer **out, pd_store *st, const pd_schema *s, int64_t nice, char *err,
                       size_t errlen)
{
    pd_committer *cm = pd_calloc(1, sizeof *cm);
    cm->store = st;
    cm->nice = nice;
    pd_profile_init(&cm->scratch, s);
    pthread_mutex_init(&cm->mu, NULL);
    pthread_cond_init(&cm->cv, NULL);
    if (pthread_create(&cm->th, NULL, committer_main, cm) != 0) {
        pd_profile_free(&cm->scratch);
        pthread_mutex_destroy(&cm->mu);
        pthread_cond_destroy(&cm->cv);
        free(cm);
        *out = NULL;
        return pd_seterr(err, errlen, PD_ERR, "cannot start the committer thread");
    }
    *out = cm;
    return PD_OK;
}

void pd_committer_submit(pd_committer *cm, pd_batch_slot **slot)
{
    pd_batch_slot *s = *slot;
    pd_assert(s && s->owner == PD_SLOT_INGEST);
    *slot = NULL;
    pthread_mutex_lock(&cm->mu);
    pd_assert(!cm->job && !cm->done);
    s->owner = PD_SLOT_COMMITTER;
    cm->job = s;
    pthread_cond_signal(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
}

int pd_committer_collect(pd_committer *cm, int wait, pd_batch_slot **slot, uint64_t *writes, char *err,
                         size_t errlen)
{
    pthread_mutex_lock(&cm->mu);
    pd_assert(cm->job || cm->done);
    if (!cm->done && !wait) {
        pthread_mutex_unlock(&cm->mu);
        return PD_EAGAIN;
    }
    while (!cm->done) pthread_cond_wait(&cm->cv, &cm->mu);
    pd_batch_slot *s = cm->done;
    cm->done = NULL;
    const int rc = cm->rc;
    *writes = cm->writes;
    if (rc) pd_seterr(err, errlen, rc, "%s", cm->err);
    pthread_mutex_unlock(&cm->mu);
    pd_assert(s->owner == PD_SLOT_INGEST);
    *slot = s;
    return rc;
}

void pd_committer_set_retry(pd_committer *cm, int on)
{
    pthread_mutex_lock(&cm->mu);
    cm->retry = on;
    pthread_mutex_unlock(&cm->mu);
}

void pd_committer_cancel(pd_committer *cm)
{
    if (!cm) return;
    pthread_mutex_lock(&cm->mu);
    cm->cancel = 1;
    pthread_cond_broadcast(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
}

int pd_committer_stalled(pd_committer *cm, char *err, size_t errlen)
{
    if (!cm || !atomic_load(&cm->stalled)) return 0;
    pthread_mutex_lock(&cm->mu);
    if (err && errlen) snprintf(err, errlen, "%s", cm->stall_err);
    pthread_mutex_unlock(&cm->mu);
    return 1;
}

uint64_t pd_committer_write_failures(pd_committer *cm)
{
    return cm ? atomic_load(&cm->write_failures) : 0;
}

void pd_committer_stop(pd_committer *cm)
{
    if (!cm) return;
    pd_committer_cancel(cm); /* a retrying write gives up: nothing else is abandoned */
    pthread_mutex_lock(&cm->mu);
    while (cm->job) pthread_cond_wait(&cm->cv, &cm->mu); /* a commit is never abandoned */
    cm->quit = 1;
    pthread_cond_broadcast(&cm->cv);
    pthread_mutex_unlock(&cm->mu);
    pthread_join(cm->th, NULL);
    pd_profile_free(&cm->scratch);
    pthread_mutex_destroy(&cm->mu);
    pthread_cond_destroy(&cm->cv);
    free(cm);
}

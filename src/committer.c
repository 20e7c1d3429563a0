/*
 * committer.c -- the committer thread (contract in committer.h).
 *
 * The mailbox holds at most one slot: `job` from submit until the commit
 * has finished, then `done` until collected. Both are guarded by mu; the
 * slot's contents are touched only by the thread its `owner` names.
 */
#include "committer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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
    uint64_t writes;
    char err[256];
};

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
        if (rc == PD_OK) rc = pd_store_commit(cm->store, s->sb, err, sizeof err);
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

void pd_committer_stop(pd_committer *cm)
{
    if (!cm) return;
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

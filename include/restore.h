/*
 * restore.h -- a snapshot download of one partition from a peer, running
 * on its own thread ("pd-restore"; the protocol is in handoff.h).
 *
 * Ownership and threads: the ingest thread creates a pd_restore, owns it
 * and is the only one to call these functions. The download thread writes
 * the result fields (rc, cp, bytes, from, t_fetched_us, err) and then sets
 * `done`; they may be read once pd_restore_done() is true. The snapshot
 * file at `path` belongs to the job: pd_restore_free removes it, so apply
 * it (pd_handoff_apply) before.
 */
#ifndef PD_RESTORE_H
#define PD_RESTORE_H

#include "config.h"
#include "members.h"
#include "metrics.h"
#include "schema.h"
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct {
    int32_t p;
    pthread_t th;
    _Atomic int done;
    _Atomic int cancel;
    const pd_config *cfg;
    const pd_schema *schema;
    pd_metrics *metrics;  /* may be NULL; rejected streams are counted in it */
    pd_holder src[8];
    int nsrc;
    /* results, valid once done */
    int rc;
    pd_checkpoint cp;
    uint64_t bytes;
    int64_t t0_us;        /* job started */
    int64_t t_fetched_us; /* download verified (0 until then) */
    char path[1100];
    char from[130];
    char err[256];
} pd_restore;

/* Starts fetching partition p from the holders src[0..n) (n <= 8), best
 * first: three rounds over them, until one snapshot is verified. cfg, s
 * and metrics (may be NULL) must outlive the job. PD_ERR when the thread
 * cannot start. */
int pd_restore_start(pd_restore **out, int32_t p, const pd_config *cfg, const pd_schema *s, pd_metrics *metrics,
                     const pd_holder *src, int n);
/* 1 once the download has ended (results are set). */
static inline int pd_restore_done(pd_restore *r) { return atomic_load(&r->done); }
/* Asks the download to stop early (it ends within a fetch timeout). */
static inline void pd_restore_cancel(pd_restore *r) { atomic_store(&r->cancel, 1); }
static inline int pd_restore_cancelled(pd_restore *r) { return atomic_load(&r->cancel); }
/* Waits for the thread (cancel first to bound the wait), removes the
 * snapshot file and frees r (NULL allowed). */
void pd_restore_free(pd_restore *r);

#endif

/*
 * restore.c -- one partition's snapshot download on its own thread (see
 * restore.h). The temporary file name is unique in the process
 * (snapshot-in-<p>-<seq>.tmp under data_dir). A stream refused as forged,
 * malformed or oversized is counted (profiled_snapshots_rejected_total)
 * and the next source tried; when none gives a verified stream the ingest
 * loop rebuilds the partition from the topic.
 */
#include "restore.h"

#include "handoff.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *restore_main(void *arg)
{
    pd_restore *j = arg;
    pd_thread_name("pd-restore");
    j->rc = PD_EAGAIN;
    snprintf(j->err, sizeof j->err, "no peer holds partition %d", (int)j->p);
    for (int round = 0; round < 3 && !atomic_load(&j->cancel); round++) {
        for (int i = 0; i < j->nsrc && !atomic_load(&j->cancel); i++) {
            uint64_t bytes = 0;
            int rc = pd_handoff_fetch(j->src[i].url, j->p, pd_config_cluster_token(j->cfg), j->schema, j->path, 10000,
                                      0, &j->cp, &bytes, j->err, sizeof j->err);
            if (rc == PD_OK) {
                j->rc = PD_OK;
                j->bytes = bytes;
                j->t_fetched_us = pd_mono_us();
                snprintf(j->from, sizeof j->from, "%s", j->src[i].id);
                goto done;
            }
            int rej = rc == PD_EAUTH ? PD_SNAP_REJ_MAC : rc == PD_ECORRUPT ? PD_SNAP_REJ_MALFORMED
                      : rc == PD_ERANGE ? PD_SNAP_REJ_SIZE : -1;
            if (rej >= 0 && j->metrics) PD_INC(j->metrics->snapshots_rejected[rej]);
            pd_warn("partition %d: snapshot from %s failed (%s)%s", (int)j->p, j->src[i].id, j->err,
                    rej >= 0 ? ": rejected" : "");
            j->rc = rc;
        }
        if (round < 2) usleep(300 * 1000);
    }
done:
    atomic_store(&j->done, 1);
    return NULL;
}

int pd_restore_start(pd_restore **out, int32_t p, const pd_config *cfg, const pd_schema *s, pd_metrics *metrics,
                     const pd_holder *src, int n)
{
    static _Atomic int seq;
    pd_restore *j = pd_calloc(1, sizeof *j);
    j->p = p;
    j->cfg = cfg;
    j->metrics = metrics;
    j->schema = s;
    j->nsrc = (int)PD_MIN(n, 8);
    memcpy(j->src, src, sizeof src[0] * (size_t)j->nsrc);
    j->t0_us = pd_mono_us();
    snprintf(j->path, sizeof j->path, "%s/snapshot-in-%d-%d.tmp", cfg->data_dir, (int)p, atomic_fetch_add(&seq, 1));
    if (pthread_create(&j->th, NULL, restore_main, j) != 0) {
        free(j);
        *out = NULL;
        return PD_ERR;
    }
    *out = j;
    return PD_OK;
}

void pd_restore_free(pd_restore *r)
{
    if (!r) return;
    pthread_join(r->th, NULL); /* bounded: fetches time out */
    remove(r->path);
    free(r);
}

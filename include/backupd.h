/*
 * backupd.h -- the worker's own backups: every backup_interval into
 * backup_dir (keeping backup_keep), and on request (POST
 * /internal/v1/backup). Metrics: profiled_backups_total{result},
 * profiled_backup_last_success_timestamp_seconds,
 * profiled_backup_last_duration_seconds, profiled_backup_last_size_bytes,
 * profiled_backup_last_added_bytes.
 *
 * Ownership: a pd_backupd belongs to the main thread, which starts it after
 * the store is open and stops it (joining its thread) before the store is
 * closed. pd_backupd_run may be called from any thread (the HTTP threads);
 * runs are serialized by the pd_backupd's mutex, so a requested backup
 * waits for a scheduled one and the other way round.
 */
#ifndef PD_BACKUPD_H
#define PD_BACKUPD_H

#include "backup.h"
#include "worker.h"

typedef struct pd_backupd pd_backupd;

/* *out = NULL (and PD_OK) when backup_dir is not set. */
int pd_backupd_start(pd_backupd **out, pd_worker *w, char *err, size_t errlen);
/* A backup into backup_dir now; *dur_us its duration. */
int pd_backupd_run(pd_backupd *b, pd_backup_info *info, uint64_t *added, int64_t *dur_us, char *err,
                   size_t errlen);
/* Stops the timer thread (an ongoing backup finishes first). NULL: no-op. */
void pd_backupd_stop(pd_backupd *b);

#endif

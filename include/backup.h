/*
 * backup.h -- consistent, incremental backups of a store, their listing
 * and their restore (RocksDB's BackupEngine).
 *
 * A backup directory is a RocksDB backup directory (meta/, private/,
 * shared_checksum/: SST files are shared between backups, so each backup
 * copies only the files the previous ones lack) plus profiled-backup.json,
 * written before the first backup: the store format, the event dialect and
 * the schema (fingerprint and canonical JSON) every backup in it was taken
 * under. A directory with neither is taken only when empty; one of another
 * schema or dialect is refused, so a directory never mixes stores.
 *
 * Consistency: a backup is a point-in-time copy of the whole database (the
 * live SST files after a flush, and the WAL files the flush did not cover),
 * so restoring it replays the WAL to a WriteBatch boundary: state and input
 * offsets are restored together, as after a kill -9 (store.h). It runs
 * beside a live writer (the worker's own thread or POST
 * /internal/v1/backup) or on a store no process holds (profilectl).
 *
 * Threads: pd_backup_create may run on any thread while the store is in
 * use; calls for one directory must not overlap (the worker serializes
 * them).
 */
#ifndef PD_BACKUP_H
#define PD_BACKUP_H

#include <stdint.h>

#include "store.h"

#define PD_BACKUP_META "profiled-backup.json"

typedef struct {
    uint32_t id;
    int64_t timestamp;  /* epoch seconds when it was taken */
    uint64_t size;      /* bytes of its files (shared ones included) */
    uint32_t files;
} pd_backup_info;

/* Takes a backup of st into dir (created when missing), then deletes all
 * but the newest `keep` backups (0 = keep all). *out describes the new
 * backup; *added (may be NULL) the bytes the directory grew by. PD_EINVAL
 * when dir is not empty and not a backup directory, or holds backups of
 * another schema or dialect. */
int pd_backup_create(pd_store *st, const char *dir, uint32_t keep, pd_backup_info *out, uint64_t *added,
                     char *err, size_t errlen);

/* The backups in dir, ascending id (*out malloc'd, pd_free; NULL when *n
 * is 0); *fingerprint the schema fingerprint they were taken under.
 * PD_EINVAL when dir is not a backup directory. */
int pd_backup_list(const char *dir, pd_backup_info **out, int *n, uint64_t *fingerprint, char *err,
                   size_t errlen);

/* Restores backup `id` (0 = the newest) of dir into data_dir, which must
 * not exist or be empty. want_fingerprint != 0: refuse (PD_EINVAL) a
 * backup taken under another schema. *restored (may be NULL) the backup
 * restored. */
int pd_backup_restore(const char *dir, uint32_t id, const char *data_dir, uint64_t want_fingerprint,
                      pd_backup_info *restored, char *err, size_t errlen);

#endif

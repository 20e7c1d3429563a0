/*
 * backup.c -- backups of a store with RocksDB's BackupEngine (contract in
 * backup.h).
 *
 * The engine is opened for each call and closed after it: a backup
 * directory carries no state between calls but its files, and the engine
 * reads its meta/ directory at open (cheap: one small file per backup).
 * profiled-backup.json is checked (or written, atomically, for an empty
 * directory) before the engine touches anything, so a wrong directory is
 * refused without being modified.
 */
#include "backup.h"
#include "schema.h"
#include "store_int.h"
#include "util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* 1 when path is a directory with no entries, 0 when it has some, -1 when
 * it does not exist (or is not a directory: errno ENOTDIR). */
static int dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            empty = 0;
            break;
        }
    }
    closedir(d);
    return empty;
}

/* Bytes of the regular files under path (recursively); 0 if none. */
static uint64_t tree_bytes(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return 0;
    uint64_t sum = 0;
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat sb;
        if (lstat(sub, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) sum += tree_bytes(sub);
        else if (S_ISREG(sb.st_mode)) sum += (uint64_t)sb.st_size;
    }
    closedir(d);
    return sum;
}

/* Reads dir's profiled-backup.json: fingerprint and dialect. PD_ENOTFOUND
 * when absent, PD_ECORRUPT when unreadable. */
static int meta_read(const char *dir, uint64_t *fp, char *dialect, size_t dlen, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/" PD_BACKUP_META, dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return PD_ENOTFOUND;
        return pd_seterr(err, errlen, PD_EIO, "%s: %s", path, strerror(errno));
    }
    /* On the heap: this runs on civetweb's worker threads too (POST
     * /internal/v1/backup), whose stacks are 100 KiB; a 64 KiB frame there
     * reached past the guard page into a neighbour's memory (ASan's
     * allocator state: test_backup crashed at random in /metrics). */
    enum { META_MAX = 65536 };
    char *buf = pd_malloc(META_MAX);
    size_t n = fread(buf, 1, META_MAX - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_ParseWithLength(buf, n);
    pd_free(buf);
    const cJSON *jf = j ? cJSON_GetObjectItemCaseSensitive(j, "fingerprint") : NULL;
    const cJSON *jd = j ? cJSON_GetObjectItemCaseSensitive(j, "dialect") : NULL;
    int rc = PD_OK;
    if (!cJSON_IsString(jf) || !cJSON_IsString(jd) || strlen(jf->valuestring) != 16) {
        rc = pd_seterr(err, errlen, PD_ECORRUPT, "%s: not a profiled backup description", path);
    } else {
        *fp = strtoull(jf->valuestring, NULL, 16);
        snprintf(dialect, dlen, "%s", jd->valuestring);
    }
    cJSON_Delete(j);
    return rc;
}

static int meta_write(const char *dir, const pd_schema *s, char *err, size_t errlen)
{
    pd_buf b = {0}, sj = {0};
    pd_schema_to_json(s, &sj);
    pd_buf_printf(&b, "{\"format\":\"%s\",\"dialect\":\"%s\",\"fingerprint\":\"%016" PRIx64 "\",\"schema\":",
                  PD_STORE_FORMAT, STORE_DIALECT, s->fingerprint);
    pd_buf_append(&b, sj.p ? sj.p : "null", sj.p ? sj.len : 4);
    pd_buf_puts(&b, "}\n");
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/" PD_BACKUP_META, dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = PD_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, b.p, b.len) != (ssize_t)b.len || fsync(fd) != 0 || close(fd) != 0 ||
        rename(tmp, path) != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        unlink(tmp);
    }
    pd_buf_free(&b);
    pd_buf_free(&sj);
    return rc;
}

/* Checks (or, for an empty or missing directory, prepares) dir for
 * backups of a store with schema s. */
static int prepare_dir(const char *dir, const pd_schema *s, char *err, size_t errlen)
{
    int e = dir_empty(dir);
    if (e < 0 && errno == ENOENT) {
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return pd_seterr(err, errlen, PD_EIO, "backup directory %s: %s", dir, strerror(errno));
        e = 1;
    } else if (e < 0) {
        return pd_seterr(err, errlen, PD_EINVAL, "backup directory %s: %s", dir, strerror(errno));
    }
    uint64_t fp = 0;
    char dia[32];
    int rc = meta_read(dir, &fp, dia, sizeof dia, err, errlen);
    if (rc == PD_ENOTFOUND) {
        if (!e)
            return pd_seterr(err, errlen, PD_EINVAL,
                             "%s is not empty and not a profiled backup directory (no " PD_BACKUP_META
                             "); choose an empty or new directory",
                             dir);
        return meta_write(dir, s, err, errlen);
    }
    if (rc) return rc;
    if (fp != s->fingerprint)
        return pd_seterr(err, errlen, PD_EINVAL,
                         "%s holds backups of another schema (fingerprint %016" PRIx64
                         ", this store's is %016" PRIx64 "); use another directory",
                         dir, fp, s->fingerprint);
    if (strcmp(dia, STORE_DIALECT) != 0)
        return pd_seterr(err, errlen, PD_EINVAL,
                         "%s holds backups of event dialect %s, this build writes dialect %s; use another "
                         "directory",
                         dir, dia, STORE_DIALECT);
    return PD_OK;
}

/* An open engine with the options it borrows (their info_log and env are
 * used by the engine until it is closed: destroy them after it). */
typedef struct {
    rocksdb_backup_engine_t *be;
    rocksdb_options_t *opts;
} engine;

static int engine_open(engine *e, const char *dir, char *err, size_t errlen)
{
    e->opts = rocksdb_options_create();
    char *re = NULL;
    e->be = rocksdb_backup_engine_open(e->opts, dir, &re);
    if (re) {
        rocksdb_options_destroy(e->opts);
        e->be = NULL;
        e->opts = NULL;
        return store_rdb_err(re, err, errlen, "open backup directory");
    }
    return PD_OK;
}

static void engine_close(engine *e)
{
    if (e->be) rocksdb_backup_engine_close(e->be);
    if (e->opts) rocksdb_options_destroy(e->opts);
    e->be = NULL;
    e->opts = NULL;
}

/* The backups the engine lists (ascending id). */
static int list_infos(rocksdb_backup_engine_t *be, pd_backup_info **out, int *n)
{
    const rocksdb_backup_engine_info_t *bi = rocksdb_backup_engine_get_backup_info(be);
    int cnt = rocksdb_backup_engine_info_count(bi);
    *out = cnt > 0 ? pd_calloc((size_t)cnt, sizeof **out) : NULL;
    for (int i = 0; i < cnt; i++) {
        (*out)[i].id = rocksdb_backup_engine_info_backup_id(bi, i);
        (*out)[i].timestamp = rocksdb_backup_engine_info_timestamp(bi, i);
        (*out)[i].size = rocksdb_backup_engine_info_size(bi, i);
        (*out)[i].files = rocksdb_backup_engine_info_number_files(bi, i);
    }
    rocksdb_backup_engine_info_destroy(bi);
    /* the engine lists them in id order already; keep the contract explicit */
    for (int i = 1; i < cnt; i++)
        for (int j = i; j > 0 && (*out)[j - 1].id > (*out)[j].id; j--) {
            pd_backup_info t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    *n = cnt;
    return PD_OK;
}

int pd_backup_create(pd_store *st, const char *dir, uint32_t keep, pd_backup_info *out, uint64_t *added,
                     char *err, size_t errlen)
{
    if (st->read_only)
        return pd_seterr(err, errlen, PD_EINVAL, "a read-only store instance cannot be backed up");
    int rc = prepare_dir(dir, st->schema, err, errlen);
    if (rc) return rc;
    uint64_t before = tree_bytes(dir);
    engine e;
    if ((rc = engine_open(&e, dir, err, errlen)) != PD_OK) return rc;
    rocksdb_backup_engine_t *be = e.be;
    char *re = NULL;
    /* flush first (a small WAL to copy); the WAL files the flush leaves
     * needed are copied too, so the backup is consistent across families */
    rocksdb_backup_engine_create_new_backup_flush(be, st->db, 1, &re);
    if (re) {
        rc = store_rdb_err(re, err, errlen, "create backup");
        goto out;
    }
    pd_backup_info *v = NULL;
    int n = 0;
    list_infos(be, &v, &n);
    if (n == 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "backup engine lists no backup after creating one");
        goto out;
    }
    *out = v[n - 1];
    pd_free(v);
    rocksdb_backup_engine_verify_backup(be, out->id, &re);
    if (re) {
        rc = store_rdb_err(re, err, errlen, "verify backup");
        goto out;
    }
    if (keep) {
        rocksdb_backup_engine_purge_old_backups(be, keep, &re);
        if (re) {
            rc = store_rdb_err(re, err, errlen, "delete old backups");
            goto out;
        }
    }
    if (added) {
        uint64_t after = tree_bytes(dir);
        *added = after > before ? after - before : 0;
    }
out:
    engine_close(&e);
    return rc;
}

int pd_backup_list(const char *dir, pd_backup_info **out, int *n, uint64_t *fingerprint, char *err,
                   size_t errlen)
{
    *out = NULL;
    *n = 0;
    char dia[32];
    uint64_t fp = 0;
    int rc = meta_read(dir, &fp, dia, sizeof dia, err, errlen);
    if (rc == PD_ENOTFOUND)
        return pd_seterr(err, errlen, PD_EINVAL, "%s is not a profiled backup directory (no " PD_BACKUP_META ")",
                         dir);
    if (rc) return rc;
    if (fingerprint) *fingerprint = fp;
    engine e;
    if ((rc = engine_open(&e, dir, err, errlen)) != PD_OK) return rc;
    list_infos(e.be, out, n);
    engine_close(&e);
    return PD_OK;
}

int pd_backup_restore(const char *dir, uint32_t id, const char *data_dir, uint64_t want_fingerprint,
                      pd_backup_info *restored, char *err, size_t errlen)
{
    pd_backup_info *v = NULL;
    int n = 0;
    uint64_t fp = 0;
    int rc = pd_backup_list(dir, &v, &n, &fp, err, errlen);
    if (rc) return rc;
    pd_backup_info pick = {0};
    for (int i = 0; i < n; i++)
        if (id ? v[i].id == id : i == n - 1) pick = v[i];
    pd_free(v);
    if (!pick.id) {
        if (id) return pd_seterr(err, errlen, PD_ENOTFOUND, "%s has no backup %u", dir, id);
        return pd_seterr(err, errlen, PD_ENOTFOUND, "%s holds no backup yet", dir);
    }
    if (want_fingerprint && fp != want_fingerprint)
        return pd_seterr(err, errlen, PD_EINVAL,
                         "%s holds backups of another schema (fingerprint %016" PRIx64
                         ", the configured schema has %016" PRIx64 ")",
                         dir, fp, want_fingerprint);
    int e = dir_empty(data_dir);
    if (e == 0)
        return pd_seterr(err, errlen, PD_EINVAL,
                         "data directory %s is not empty: restore into a new or empty directory (move the old "
                         "one aside first)",
                         data_dir);
    if (e < 0 && errno != ENOENT) return pd_seterr(err, errlen, PD_EINVAL, "%s: %s", data_dir, strerror(errno));
    engine en;
    if ((rc = engine_open(&en, dir, err, errlen)) != PD_OK) return rc;
    rocksdb_backup_engine_t *be = en.be;
    char *re = NULL;
    rocksdb_backup_engine_verify_backup(be, pick.id, &re);
    if (re) {
        rc = store_rdb_err(re, err, errlen, "verify backup");
    } else {
        rocksdb_restore_options_t *ro = rocksdb_restore_options_create();
        rocksdb_backup_engine_restore_db_from_backup(be, data_dir, data_dir, ro, pick.id, &re);
        rocksdb_restore_options_destroy(ro);
        if (re) rc = store_rdb_err(re, err, errlen, "restore backup");
    }
    engine_close(&en);
    if (!rc && restored) *restored = pick;
    return rc;
}

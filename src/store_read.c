/*
 * store_read.c -- the store's reading side (any thread): checkpoints and
 * de-dup records, day lists and statistics, snapshots, single-day and
 * range profile reads (which skip days by their filters, see "Day filters"
 * in store.c for the consistency rule), scans, and the export of one
 * partition from one RocksDB snapshot for a hand-off.
 *
 * Every reader takes a reference to each day entry it uses (under the
 * store's lock) and releases it when done, so a concurrent retention drop
 * never invalidates its family handle. Results are copies owned by the
 * caller (pd_store_range until pd_store_range_free); values passed to
 * scan and export callbacks are valid only during the call.
 */
#include "store_int.h"
#include "util.h"

#include <rocksdb/c.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ------------------------------------------------------------------ */
/* reading                                                             */

/* Ends an iteration: destroys the iterator and its read options and
 * returns rc, or the iterator's error (code + message) when rc is 0. */
static int iter_finish(rocksdb_iterator_t *it, rocksdb_readoptions_t *ro, int rc, const char *what,
                       char *err, size_t errlen)
{
    char *re = NULL;
    rocksdb_iter_get_error(it, &re);
    if (re) {
        int r2 = store_rdb_err(re, err, errlen, what);
        if (!rc) rc = r2;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    return rc;
}

/* Reads one per-partition meta record (key k): *v malloc'd by RocksDB
 * (rocksdb_free), PD_ENOTFOUND when absent, PD_EIO (logged, naming what)
 * on a read error. */
static int meta_get_part(pd_store *st, const uint8_t *k, size_t klen, const char *what, int32_t partition,
                         char **v, size_t *len)
{
    char *re = NULL;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    *v = rocksdb_get_cf(st->db, ro, st->cf_meta, (const char *)k, klen, len, &re);
    rocksdb_readoptions_destroy(ro);
    if (re) {
        pd_warn("store: read %s %d: %s", what, partition, re);
        rocksdb_free(re);
        return PD_EIO;
    }
    return *v ? PD_OK : PD_ENOTFOUND;
}

int pd_store_get_checkpoint(pd_store *st, int32_t partition, pd_checkpoint *out)
{
    uint8_t k[PD_CKPT_KEY_LEN];
    store_ckpt_key(k, partition);
    char *v = NULL;
    size_t len = 0;
    int rc = meta_get_part(st, k, sizeof k, "checkpoint", partition, &v, &len);
    if (rc) return rc;
    if (len != PD_CKPT_VAL_LEN) {
        rc = PD_ECORRUPT;
    } else {
        out->partition = partition;
        out->next_offset = (int64_t)pd_get_u64be((const uint8_t *)v);
        out->clock_ms = (int64_t)pd_get_u64be((const uint8_t *)v + 8);
    }
    rocksdb_free(v);
    return rc;
}

int pd_store_get_start_time(pd_store *st, int32_t partition, int64_t *t_ms)
{
    uint8_t k[PD_CKPT_KEY_LEN];
    store_start_key(k, partition);
    char *v = NULL;
    size_t len = 0;
    int rc = meta_get_part(st, k, sizeof k, "start time", partition, &v, &len);
    if (rc) return rc;
    if (len != 8) rc = PD_ECORRUPT;
    else *t_ms = (int64_t)pd_get_u64be((const uint8_t *)v);
    rocksdb_free(v);
    return rc;
}

int pd_store_get_sidefx(pd_store *st, int32_t partition, pd_buf *out)
{
    uint8_t k[PD_CKPT_KEY_LEN];
    store_sidefx_key(k, partition);
    char *v = NULL;
    size_t len = 0;
    int rc = meta_get_part(st, k, sizeof k, "side-effect record", partition, &v, &len);
    if (rc) return rc;
    out->len = 0;
    pd_buf_append(out, v, len);
    rocksdb_free(v);
    return PD_OK;
}

int pd_store_list_checkpoints(pd_store *st, pd_checkpoint **out, int *n)
{
    *out = NULL;
    *n = 0;
    int cap = 0, rc = PD_OK;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf_meta);
    for (rocksdb_iter_seek(it, "o", 1); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 1 || k[0] != 'o') break;
        if (kl != PD_CKPT_KEY_LEN) continue;
        const char *v = rocksdb_iter_value(it, &vl);
        if (vl != PD_CKPT_VAL_LEN) {
            rc = PD_ECORRUPT;
            break;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = pd_realloc(*out, (size_t)cap * sizeof **out);
        }
        pd_checkpoint *c = &(*out)[(*n)++];
        c->partition = (int32_t)pd_get_u32be((const uint8_t *)k + 1);
        c->next_offset = (int64_t)pd_get_u64be((const uint8_t *)v);
        c->clock_ms = (int64_t)pd_get_u64be((const uint8_t *)v + 8);
    }
    char *re = NULL;
    rocksdb_iter_get_error(it, &re);
    if (re) {
        pd_warn("store: list checkpoints: %s", re);
        rocksdb_free(re);
        rc = PD_EIO;
    }
    rocksdb_iter_destroy(it);
    rocksdb_readoptions_destroy(ro);
    if (rc) {
        pd_free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int pd_store_scan_dedup(pd_store *st, int32_t partition, pd_store_dedup_fn fn, void *arg, char *err,
                        size_t errlen)
{
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    uint8_t lo[4], hi[4];
    pd_put_u32be(lo, (uint32_t)partition);
    pd_put_u32be(hi, (uint32_t)partition + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, 4);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf_dedup);
    int rc = PD_OK;
    for (rocksdb_iter_seek(it, (const char *)lo, 4); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 4 || memcmp(k, lo, 4) != 0) break;
        const char *v = rocksdb_iter_value(it, &vl);
        if (kl != PD_DEDUP_KEY_LEN || vl % PD_DEDUP_ENTRY_LEN != 0) {
            rc = pd_seterr(err, errlen, PD_ECORRUPT, "de-dup record of partition %d: bad key/value length %zu/%zu",
                           partition, kl, vl);
            break;
        }
        if ((rc = fn(arg, pd_get_u64be((const uint8_t *)k + 4), (const uint8_t *)v, vl)) != 0) break;
    }
    return iter_finish(it, ro, rc, "scan de-dup records", err, errlen);
}

int pd_store_list_days(pd_store *st, int64_t **days, int *n)
{
    pthread_mutex_lock(&st->lock);
    *days = pd_malloc((size_t)(st->ndays ? st->ndays : 1) * sizeof **days);
    for (int i = 0; i < st->ndays; i++) (*days)[i] = st->days[i]->day;
    *n = st->ndays;
    pthread_mutex_unlock(&st->lock);
    return PD_OK;
}

pd_store_snap *pd_store_snap_acquire(pd_store *st)
{
    pd_store_snap *sn = pd_calloc(1, sizeof *sn);
    /* the family list first, then the snapshot: a family created in between
     * is simply absent from the view; one dropped in between stays readable
     * through our reference */
    store_dayents_ref(st, INT64_MIN, &sn->days, &sn->ndays);
    sn->snap = rocksdb_create_snapshot(st->db);
    return sn;
}

void pd_store_snap_release(pd_store *st, pd_store_snap *snap)
{
    if (!snap) return;
    if (snap->snap) rocksdb_release_snapshot(st->db, snap->snap);
    store_dayents_release(st, snap->days, snap->ndays);
    pd_free(snap->days);
    pd_free(snap);
}

int pd_store_get_profile(pd_store *st, pd_store_snap *snap, int64_t day, int32_t partition,
                         const char *user, size_t ulen, pd_profile *out, char *err, size_t errlen)
{
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    pd_dayent *e = NULL;
    if (snap) {
        int i = store_days_lower_bound(snap->days, snap->ndays, day);
        if (i < snap->ndays && snap->days[i]->day == day) e = snap->days[i];
    } else {
        e = store_dayent_ref(st, day);
    }
    if (!e) return PD_ENOTFOUND;
    pd_buf k = {0};
    store_data_key(&k, partition, user, ulen);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (snap && snap->snap) rocksdb_readoptions_set_snapshot(ro, snap->snap);
    char *re = NULL;
    int rc = PD_OK;
    rocksdb_pinnableslice_t *ps = rocksdb_get_pinned_cf(st->db, ro, e->cf, k.p, k.len, &re);
    if (re) {
        rc = store_rdb_err(re, err, errlen, "read profile");
    } else if (!ps) {
        rc = PD_ENOTFOUND;
    } else {
        size_t vl = 0;
        const char *v = rocksdb_pinnableslice_value(ps, &vl);
        rc = pd_profile_decode(out, v, vl, err, errlen);
        rocksdb_pinnableslice_destroy(ps);
    }
    rocksdb_readoptions_destroy(ro);
    pd_buf_free(&k);
    if (!snap) store_dayent_unref(st, e);
    return rc;
}

void pd_store_range_free(pd_store_range *r)
{
    if (!r) return;
    /* every slot up to cap may hold capacity kept by pd_profile_clear */
    for (int i = 0; i < r->cap; i++) pd_profile_free(&r->profs[i]);
    pd_free(r->profs);
    pd_free(r->days);
    memset(r, 0, sizeof *r);
}

size_t pd_store_range_mem_bytes(const pd_store_range *r)
{
    size_t n = (size_t)r->cap * (sizeof *r->profs + sizeof *r->days);
    for (int i = 0; i < r->cap; i++) n += pd_profile_mem_bytes(&r->profs[i]);
    return n;
}

/* Room for `need` days in r (contents of existing slots kept). */
static void range_reserve(pd_store_range *r, const pd_schema *s, int need)
{
    if (need <= r->cap) return;
    r->days = pd_realloc(r->days, (size_t)need * sizeof *r->days);
    r->profs = pd_realloc(r->profs, (size_t)need * sizeof *r->profs);
    for (int i = r->cap; i < need; i++) pd_profile_init(&r->profs[i], s);
    r->cap = need;
}

/* MultiGet over the families in [from_day, to_day]: every lookup
 * uses the same key (the data key does not depend on the day), so the key
 * list is one pointer repeated. RocksDB returns malloc'd copies of the
 * values; they are decoded in place and freed. Small ranges use stack
 * arrays, wider ones one heap block.
 *
 * Without a view no RocksDB snapshot is created (it would take the DB
 * mutex twice per query, contending with the writer): a MultiGet over
 * several families already reads all of them at one sequence number
 * (RocksDB's multi-family consistent read), and only the in-range family
 * handles are referenced, for the duration of the call, under one lock
 * round each way. */
#define RANGE_STACK 64
/* Frees what a read of m days returned: one pinned value, or m MultiGet
 * values; and the error strings. */
static void free_values(rocksdb_pinnableslice_t *one, char **vals, char **errs, int m)
{
    for (int i = 0; i < m; i++) {
        if (errs[i]) rocksdb_free(errs[i]);
        if (!one && vals[i]) rocksdb_free(vals[i]);
    }
    if (one) rocksdb_pinnableslice_destroy(one);
}

int pd_store_get_profile_range(pd_store *st, pd_store_snap *snap, int64_t from_day, int64_t to_day,
                               int32_t partition, const char *user, size_t ulen, pd_store_range *r,
                               char *err, size_t errlen)
{
    pd_assert(st && r && (user || ulen == 0));
    for (int i = 0; i < r->n; i++) pd_profile_clear(&r->profs[i]); /* keeps capacity for reuse */
    r->n = 0;
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    if (ulen > PD_MAX_USER_ID) return pd_seterr(err, errlen, PD_EINVAL, "user id too long");
    char key[4 + PD_MAX_USER_ID];
    pd_put_u32be((uint8_t *)key, (uint32_t)partition);
    if (ulen) memcpy(key + 4, user, ulen);
    size_t klen = 4 + ulen;
    const uint64_t kh = XXH3_64bits(key, klen);
    const int pinned = snap && snap->snap;

    pd_dayent *const *ents;
    pd_dayent *refd_s[RANGE_STACK], **refd = NULL;
    const rocksdb_column_family_handle_t *cfs_s[RANGE_STACK];
    const char *keys_s[RANGE_STACK];
    size_t klens_s[RANGE_STACK], vlens_s[RANGE_STACK];
    char *vals_s[RANGE_STACK], *errs_s[RANGE_STACK];
    int ix_s[RANGE_STACK];
    void *heap = NULL;
    const rocksdb_column_family_handle_t **cfs;
    const char **keys;
    size_t *klens, *vlens;
    char **vals, **errs;
    int *ix;
    int lo, hi, nk, m = 0, rc = PD_OK;
    rocksdb_pinnableslice_t *one = NULL; /* m == 1: the value, pinned */
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (pinned) rocksdb_readoptions_set_snapshot(ro, snap->snap);
    /* Without an explicit snapshot, a commit that bumped the generation
     * between the listing of the days and the read may have become visible
     * to the read but not to the listing (a day family it created) or to
     * the filter checks (a day its keys were added to): then list and read
     * every day again, without filters (see the design comment in
     * store.c); the last attempt is taken as it is. */
    for (int attempt = 0;; attempt++) {
        const int use_filter = attempt == 0;
        const uint64_t gen = atomic_load_explicit(&st->wgen, memory_order_acquire);
        /* The families to read: from the view, or (no view) the in-range
         * entries of the day map, referenced for the attempt only. */
        if (snap) {
            lo = store_days_lower_bound(snap->days, snap->ndays, from_day);
            hi = to_day == INT64_MAX ? snap->ndays : store_days_lower_bound(snap->days, snap->ndays, to_day + 1);
            nk = hi > lo ? hi - lo : 0;
            ents = snap->days + lo;
        } else {
            pthread_mutex_lock(&st->lock);
            lo = store_days_lower_bound(st->days, st->ndays, from_day);
            hi = to_day == INT64_MAX ? st->ndays : store_days_lower_bound(st->days, st->ndays, to_day + 1);
            nk = hi > lo ? hi - lo : 0;
            refd = nk <= RANGE_STACK ? refd_s : pd_malloc((size_t)nk * sizeof *refd);
            for (int i = 0; i < nk; i++) {
                refd[i] = st->days[lo + i];
                refd[i]->refs++;
            }
            pthread_mutex_unlock(&st->lock);
            ents = refd;
        }
        cfs = cfs_s, keys = keys_s, klens = klens_s, vlens = vlens_s;
        vals = vals_s, errs = errs_s, ix = ix_s;
        if (nk > RANGE_STACK) {
            size_t n = (size_t)nk;
            char *h = heap = pd_malloc(n * (sizeof *cfs + sizeof *keys + 2 * sizeof(size_t) +
                                            2 * sizeof(char *) + sizeof *ix));
            cfs = (const rocksdb_column_family_handle_t **)h; h += n * sizeof *cfs;
            keys = (const char **)h; h += n * sizeof *keys;
            klens = (size_t *)h; h += n * sizeof *klens;
            vlens = (size_t *)h; h += n * sizeof *vlens;
            vals = (char **)h; h += n * sizeof *vals;
            errs = (char **)h; h += n * sizeof *errs;
            ix = (int *)h;
        }
        /* Only the days whose filter may hold the key are read. */
        m = 0;
        for (int i = 0; i < nk; i++) {
            if (use_filter && !store_day_may_hold(ents[i], kh)) continue;
            ix[m] = i;
            cfs[m] = ents[i]->cf;
            keys[m] = key;
            klens[m] = klen;
            vals[m] = errs[m] = NULL;
            vlens[m] = 0;
            m++;
        }
        if (m == 1) {
            /* one day (the common case with filters): a pinned Get skips
             * MultiGet's per-call containers and the value copy */
            one = rocksdb_get_pinned_cf(st->db, ro, ents[ix[0]]->cf, key, klen, &errs[0]);
            if (one) vals[0] = (char *)rocksdb_pinnableslice_value(one, &vlens[0]);
        } else if (m > 1) {
            rocksdb_multi_get_cf(st->db, ro, cfs, (size_t)m, keys, klens, vals, vlens, errs);
        }
        if (pinned || attempt == 2 || atomic_load_explicit(&st->wgen, memory_order_acquire) == gen)
            break;
        free_values(one, vals, errs, m);
        one = NULL;
        pd_free(heap);
        heap = NULL;
        if (refd) {
            store_dayents_release(st, refd, nk);
            if (refd != refd_s) pd_free(refd);
            refd = NULL;
        }
        atomic_fetch_add_explicit(&st->f_retries, 1, memory_order_relaxed);
    }
    rocksdb_readoptions_destroy(ro);
    if (st->filter_bits > 0) {
        atomic_fetch_add_explicit(&st->f_read, (uint64_t)m, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->f_skipped, (uint64_t)(nk - m), memory_order_relaxed);
    }

    int found = 0;
    for (int i = 0; i < m; i++) found += vals[i] != NULL;
    range_reserve(r, st->schema, found);
    for (int i = 0; i < m; i++) {
        if (rc == PD_OK && errs[i]) {
            rc = store_rdb_err(errs[i], err, errlen, "read profile");
            errs[i] = NULL;
        } else if (rc == PD_OK && vals[i]) {
            rc = pd_profile_decode(&r->profs[r->n], vals[i], vlens[i], err, errlen);
            if (rc == PD_OK) r->days[r->n++] = ents[ix[i]]->day;
        }
    }
    free_values(one, vals, errs, m);
    pd_free(heap);
    if (rc != PD_OK) {
        for (int i = 0; i < r->n; i++) pd_profile_reset(&r->profs[i]);
        r->n = 0;
    }
    if (refd) {
        store_dayents_release(st, refd, nk);
        if (refd != refd_s) pd_free(refd);
    }
    return rc;
}

/* Visits one day family; returns 0, fn's non-zero value, or an error. */
static int scan_day(pd_store *st, pd_dayent *e, int32_t partition, const char *user, size_t ulen,
                    pd_store_visit_fn fn, void *arg, pd_profile *prof, pd_buf *ubuf, char *err,
                    size_t errlen)
{
    int rc = 0;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, e->cf);
    uint8_t pfx[4];
    if (partition >= 0) {
        pd_put_u32be(pfx, (uint32_t)partition);
        if (user) {
            pd_buf k = {0};
            store_data_key(&k, partition, user, ulen);
            rocksdb_iter_seek(it, k.p, k.len);
            pd_buf_free(&k);
        } else {
            rocksdb_iter_seek(it, (const char *)pfx, 4);
        }
    } else {
        rocksdb_iter_seek_to_first(it);
    }
    for (; rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl <= 4) continue; /* not a user profile key (4: the population's, store.h) */
        if (partition >= 0 && memcmp(k, pfx, 4) != 0) break;
        if (user && (kl - 4 != ulen || memcmp(k + 4, user, ulen) != 0)) {
            if (partition >= 0) break; /* seeked to the exact key: it is absent */
            continue;
        }
        const char *v = rocksdb_iter_value(it, &vl);
        int32_t kp = (int32_t)pd_get_u32be((const uint8_t *)k);
        pd_profile_reset(prof);
        char e2[200];
        if (pd_profile_decode(prof, v, vl, e2, sizeof e2) != PD_OK) {
            char dn[12];
            pd_store_day_name(e->day, dn);
            rc = pd_seterr(err, errlen, PD_ECORRUPT, "profile %s/%d/%.*s: %s", dn + 1, kp,
                           (int)PD_MIN(kl - 4, 64), k + 4, e2);
            break;
        }
        ubuf->len = 0;
        pd_buf_append(ubuf, k + 4, kl - 4);
        pd_buf_putc(ubuf, '\0');
        rc = fn(arg, e->day, kp, ubuf->p, kl - 4, prof);
        if (rc) break;
    }
    return iter_finish(it, ro, rc, "scan", err, errlen);
}

int pd_store_scan(pd_store *st, int64_t day, int32_t partition, const char *user, size_t ulen,
                  pd_store_visit_fn fn, void *arg, char *err, size_t errlen)
{
    pd_dayent **v;
    int n, rc = 0;
    store_dayents_ref(st, day, &v, &n);
    pd_profile prof;
    pd_profile_init(&prof, st->schema);
    pd_buf ubuf = {0};
    for (int i = 0; i < n && rc == 0; i++)
        rc = scan_day(st, v[i], partition, user, ulen, fn, arg, &prof, &ubuf, err, errlen);
    pd_buf_free(&ubuf);
    pd_profile_free(&prof);
    store_dayents_unref(st, v, n);
    return rc;
}

int pd_store_day_stats(pd_store *st, pd_day_stats **out, int *n)
{
    pd_dayent **v;
    int k;
    store_dayents_ref(st, INT64_MIN, &v, &k);
    *out = pd_calloc((size_t)(k ? k : 1), sizeof **out);
    for (int i = 0; i < k; i++) {
        uint64_t keys = 0, sst = 0, mem = 0;
        if (rocksdb_property_int_cf(st->db, v[i]->cf, "rocksdb.estimate-num-keys", &keys) != 0)
            keys = 0;
        if (rocksdb_property_int_cf(st->db, v[i]->cf, "rocksdb.total-sst-files-size", &sst) != 0)
            sst = 0;
        if (rocksdb_property_int_cf(st->db, v[i]->cf, "rocksdb.cur-size-all-mem-tables", &mem) != 0)
            mem = 0;
        (*out)[i].day = v[i]->day;
        (*out)[i].keys = keys;
        (*out)[i].bytes = sst + mem;
    }
    *n = k;
    store_dayents_unref(st, v, k);
    return PD_OK;
}

/* ------------------------------------------------------------------ */
/* partition hand-off                                                  */

static int export_range(pd_store *st, const rocksdb_snapshot_t *snap, rocksdb_column_family_handle_t *cf,
                        int32_t partition, char kind, int64_t day, pd_store_export_fn fn, void *arg,
                        char *err, size_t errlen)
{
    uint8_t lo[4], hi[4];
    pd_put_u32be(lo, (uint32_t)partition);
    pd_put_u32be(hi, (uint32_t)partition + 1);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (snap) rocksdb_readoptions_set_snapshot(ro, snap);
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)hi, 4);
    rocksdb_readoptions_set_fill_cache(ro, 0);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, cf);
    int rc = 0;
    for (rocksdb_iter_seek(it, (const char *)lo, 4); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t kl = 0, vl = 0;
        const char *k = rocksdb_iter_key(it, &kl);
        if (kl < 4 || memcmp(k, lo, 4) != 0) break;
        const char *v = rocksdb_iter_value(it, &vl);
        if ((rc = fn(arg, kind, day, k + 4, kl - 4, v, vl)) != 0) break;
    }
    return iter_finish(it, ro, rc, "export", err, errlen);
}

int pd_store_export_partition(pd_store *st, int32_t partition, pd_checkpoint *cp,
                              pd_store_export_fn fn, void *arg, char *err, size_t errlen)
{
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    pd_store_snap *sn = pd_store_snap_acquire(st);
    int rc = PD_OK;
    /* The checkpoint, read from the same snapshot as the data. */
    uint8_t k[PD_CKPT_KEY_LEN];
    store_ckpt_key(k, partition);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    if (sn->snap) rocksdb_readoptions_set_snapshot(ro, sn->snap);
    char *re = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(st->db, ro, st->cf_meta, (const char *)k, sizeof k, &vl, &re);
    rocksdb_readoptions_destroy(ro);
    if (re) {
        rc = store_rdb_err(re, err, errlen, "read checkpoint");
        goto out;
    }
    if (!v || vl != PD_CKPT_VAL_LEN) {
        rocksdb_free(v);
        rc = pd_seterr(err, errlen, PD_ENOTFOUND, "partition %d has no checkpoint here", partition);
        goto out;
    }
    cp->partition = partition;
    cp->next_offset = (int64_t)pd_get_u64be((const uint8_t *)v);
    cp->clock_ms = (int64_t)pd_get_u64be((const uint8_t *)v + 8);
    rocksdb_free(v);
    /* An imported partition whose start time is not resolved yet has no
     * position to hand over (store.h "Imported stores"). Once resolved
     * (PD_START_RESOLVED) its checkpoint is that position: it goes like
     * any other partition, without the start-time record (a receiver
     * continues from the checkpoint, never resolves again); de-dup records
     * still keyed by the import's flush count go as they are, and the
     * receiver's first commit with records rewrites them (dedup.h
     * pd_dedup_foreign). */
    {
        uint8_t tk[PD_CKPT_KEY_LEN];
        store_start_key(tk, partition);
        rocksdb_readoptions_t *tro = rocksdb_readoptions_create();
        if (sn->snap) rocksdb_readoptions_set_snapshot(tro, sn->snap);
        size_t tl = 0;
        char *tv = rocksdb_get_cf(st->db, tro, st->cf_meta, (const char *)tk, sizeof tk, &tl, &re);
        rocksdb_readoptions_destroy(tro);
        if (re) {
            rc = store_rdb_err(re, err, errlen, "read start time");
            goto out;
        }
        const int unresolved = tv && !(tl == 8 && (int64_t)pd_get_u64be((const uint8_t *)tv) == PD_START_RESOLVED);
        rocksdb_free(tv);
        if (unresolved) {
            rc = pd_seterr(err, errlen, PD_ENOTFOUND,
                           "partition %d is imported and its start time is not resolved yet", partition);
            goto out;
        }
    }
    /* The side-effect record (sidefx.h), from the same snapshot: it belongs
     * to this state (how far its side effects are known to be done, and the
     * time decisions it left out of it). */
    store_sidefx_key(k, partition);
    ro = rocksdb_readoptions_create();
    if (sn->snap) rocksdb_readoptions_set_snapshot(ro, sn->snap);
    v = rocksdb_get_cf(st->db, ro, st->cf_meta, (const char *)k, sizeof k, &vl, &re);
    rocksdb_readoptions_destroy(ro);
    if (re) {
        rc = store_rdb_err(re, err, errlen, "read side-effect record");
        goto out;
    }
    if (v) rc = fn(arg, 'f', 0, "", 0, v, vl);
    rocksdb_free(v);
    for (int i = 0; i < sn->ndays && !rc; i++)
        rc = export_range(st, sn->snap, sn->days[i]->cf, partition, 'd', sn->days[i]->day, fn, arg, err, errlen);
    if (!rc) rc = export_range(st, sn->snap, st->cf_dedup, partition, 'x', 0, fn, arg, err, errlen);
out:
    pd_store_snap_release(st, sn);
    return rc;
}


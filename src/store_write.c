/*
 * store_write.c -- the store's writing side (single writer thread): the
 * profile merge operator, batches with operand folding, commit, retention
 * (dropping day families) and the raw imports of a partition hand-off.
 * The commit order (one WriteBatch holds a batch's profile deltas, de-dup
 * records and checkpoints) is the contract of include/store.h.
 *
 * Merge operator: every day family uses the "pd_profile_merge_v1" merge
 * operator. Full and partial merges decode each operand with
 * pd_profile_decode, fold them with pd_profile_merge (associative and
 * commutative, so RocksDB may group operands any way it likes) and encode
 * the result with pd_profile_encode. Its state is the pd_store (for the
 * schema and the pool of merge scratch contexts, see merge_ctx). An
 * operand that fails to decode fails the merge, which RocksDB reports as a
 * Corruption status (mapped to PD_ECORRUPT).
 *
 * Operand folding. A busy user's key gets one merge operand per commit, so
 * a memtable can collect hundreds of them, and every read of that key
 * would merge them all. RocksDB's max_successive_merges bounds that, but
 * it seeks the memtable on every merge write (a quarter of commit time).
 * Instead the store counts merges per key hash in FOLD_SLOTS one-byte
 * counters (all batches share them; merges come from the single writer):
 * the FOLD_EVERY-th merge of a key is written as a Put of the fully merged
 * value (Get, pd_profile_merge, encode), which ends the
 * key's operand chain. All counters reset after about one memtable's worth
 * of merged bytes (write_buffer_mb), since a memtable flush folds operands
 * anyway; hash collisions only cause an early, harmless fold. A key
 * already merged in the same batch is never folded there (its earlier
 * operand is not visible to the Get, and the Put would hide it); the batch
 * remembers the hashes it merged, and a collision there just skips a
 * fold.
 *
 * Batches: a pd_store_batch wraps one rocksdb_writebatch_t. Within a batch
 * several checkpoints for the same partition are simply written in order;
 * RocksDB applies a batch in order, so the last one wins. A batch must be
 * committed (or cleared) before pd_store_drop_days_before drops a day it
 * has merges for.
 *
 * Ownership: a batch owns its WriteBatch and scratch buffers until
 * pd_store_batch_free; it borrows the store, which must outlive it.
 */
#include "store_int.h"
#include "event.h"
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
/* merge operator                                                      */

/* Merge scratch: an accumulator and a decode target. Merges run on
 * RocksDB's flush and compaction threads, on query threads (reads of keys
 * with pending operands) and on the committer (folds), often for tiny
 * profiles; decoding into fresh profiles cost a handful of malloc/free
 * pairs per operand, which showed as allocator lock contention between
 * those threads. Idle contexts wait in a small LIFO pool owned by the
 * store (at most PD_STASH_MAX, each keeping at most MERGE_KEEP_BYTES of
 * capacity; a context that grew past that on a heavy key is freed). */
typedef struct merge_ctx {
    pd_profile acc, tmp;
} merge_ctx;

static merge_ctx *merge_ctx_get(pd_store *st, int pop)
{
    merge_ctx *c = pd_stash_take(pop ? &st->pop_merges : &st->merges);
    if (!c) {
        c = pd_malloc(sizeof *c);
        pd_profile_init(&c->acc, pop ? &st->pop_schema : st->schema);
        pd_profile_init(&c->tmp, pop ? &st->pop_schema : st->schema);
    }
    return c;
}

void store_merge_ctx_free(void *x)
{
    merge_ctx *c = x;
    pd_profile_free(&c->acc);
    pd_profile_free(&c->tmp);
    pd_free(c);
}

/* Returns c to the pool (emptied, capacity kept) or frees it. */
static void merge_ctx_put(pd_store *st, merge_ctx *c, int pop)
{
    if (pd_profile_mem_bytes(&c->acc) + pd_profile_mem_bytes(&c->tmp) <= MERGE_KEEP_BYTES * (pop ? 16 : 1)) {
        pd_profile_clear(&c->acc);
        if (pd_stash_give(pop ? &st->pop_merges : &st->merges, c)) return;
    }
    store_merge_ctx_free(c);
}

/* Decodes and folds operands into c->acc; 0 on success. */
static int merge_fold(merge_ctx *c, const char *const *ops, const size_t *lens, int n)
{
    char e[256];
    for (int i = 0; i < n; i++) {
        /* pd_profile_decode empties tmp first, keeping its capacity */
        if (pd_profile_decode(&c->tmp, ops[i], lens[i], e, sizeof e) != PD_OK) {
            pd_warn("store: merge operand failed to decode: %s", e);
            return -1;
        }
        pd_profile_merge(&c->acc, &c->tmp);
    }
    return 0;
}

/* Encodes acc into a malloc'd buffer handed to RocksDB (freed by
 * merge_delete_value). */
static char *merge_result(const pd_profile *acc, size_t *len)
{
    pd_buf b = {0};
    pd_profile_encode(acc, &b);
    if (!b.p) b.p = pd_malloc(1);
    *len = b.len;
    return b.p;
}

static char *merge_full(void *state, const char *key, size_t klen, const char *existing,
                        size_t elen, const char *const *ops, const size_t *lens, int n,
                        unsigned char *success, size_t *newlen)
{
    (void)key;
    pd_store *st = state;
    *success = 0;
    *newlen = 0;
    if (!st->schema) return NULL;
    const int pop = klen == 4; /* a partition's population profile (store.h) */
    if (pop && !atomic_load_explicit(&st->pop_ready, memory_order_acquire)) return NULL;
    if (!existing && n == 1) {
        /* A lone operand is already the merged value (merge of one
         * profile is the identity): hand back a copy without the decode /
         * encode round trip. A corrupt operand then surfaces when the
         * value is decoded (PD_ECORRUPT) rather than as a merge failure. */
        char *copy = pd_malloc(lens[0]);
        if (lens[0]) memcpy(copy, ops[0], lens[0]);
        *newlen = lens[0];
        *success = 1;
        return copy;
    }
    merge_ctx *c = merge_ctx_get(st, pop);
    char *out = NULL;
    if (existing) {
        const char *e1[1] = { existing };
        size_t l1[1] = { elen };
        if (merge_fold(c, e1, l1, 1) != 0) goto out;
    }
    if (merge_fold(c, ops, lens, n) != 0) goto out;
    out = merge_result(&c->acc, newlen);
    *success = 1;
out:
    merge_ctx_put(st, c, pop);
    return out;
}

static char *merge_partial(void *state, const char *key, size_t klen, const char *const *ops,
                           const size_t *lens, int n, unsigned char *success, size_t *newlen)
{
    return merge_full(state, key, klen, NULL, 0, ops, lens, n, success, newlen);
}

static void merge_delete_value(void *state, const char *value, size_t len)
{
    (void)state; (void)len;
    free((void *)value);
}

/* The C wrapper always calls the destructor; the state (the store) is not
 * owned by the operator. */
static void merge_destroy(void *state)
{
    (void)state;
}

static const char *merge_name(void *state)
{
    (void)state;
    return PD_MERGE_NAME;
}

rocksdb_mergeoperator_t *store_merge_operator(pd_store *st)
{
    return rocksdb_mergeoperator_create(st, merge_destroy, merge_full, merge_partial,
                                        merge_delete_value, merge_name);
}

/* ------------------------------------------------------------------ */
/* writing                                                             */

pd_store_batch *pd_store_batch_new(pd_store *st)
{
    pd_store_batch *b = pd_calloc(1, sizeof *b);
    b->st = st;
    b->wb = rocksdb_writebatch_create();
    pd_profile_init(&b->fold, st->schema);
    return b;
}

void pd_store_batch_free(pd_store_batch *b)
{
    if (!b) return;
    rocksdb_writebatch_destroy(b->wb);
    pd_buf_free(&b->key);
    pd_buf_free(&b->val);
    pd_free(b->seen);
    pd_profile_free(&b->fold);
    if (b->popfold_init) pd_profile_free(&b->popfold);
    if (b->ro) rocksdb_readoptions_destroy(b->ro);
    pd_free(b);
}

static void seen_clear(pd_store_batch *b)
{
    if (b->seen_n) memset(b->seen, 0, b->seen_cap * sizeof *b->seen);
    b->seen_n = 0;
}

/* Adds h to the batch's merged-key set; returns 1 if it was there. */
static int seen_add(pd_store_batch *b, uint64_t h)
{
    h |= 1; /* 0 marks a free slot */
    if ((b->seen_n + 1) * 2 > b->seen_cap) {
        size_t ocap = b->seen_cap;
        uint64_t *old = b->seen;
        b->seen_cap = ocap ? ocap * 2 : 1024;
        b->seen = pd_calloc(b->seen_cap, sizeof *b->seen);
        b->seen_n = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i]) seen_add(b, old[i]);
        pd_free(old);
    }
    size_t m = b->seen_cap - 1;
    for (size_t i = (size_t)(h >> 7) & m;; i = (i + 1) & m) {
        if (b->seen[i] == h) return 1;
        if (!b->seen[i]) {
            b->seen[i] = h;
            b->seen_n++;
            return 0;
        }
    }
}

uint64_t pd_store_batch_folds(const pd_store_batch *b) { return b->folds; }

const pd_schema *pd_store_batch_population_schema(const pd_store_batch *b)
{
    return pd_store_population_schema(b->st);
}

void pd_store_batch_clear(pd_store_batch *b)
{
    rocksdb_writebatch_clear(b->wb);
    seen_clear(b);
}

/* The FOLD_EVERY-th merge of a key: b->val = encode(stored value + delta),
 * to be written with Put. Returns 0 when folded, -1 to write a plain merge
 * operand instead (read error or a stored value that does not decode:
 * those surface on the merge path as before). */
/* b->val = the stored value of b->key plus the delta (delta, or else the
 * one event ev). */
static int fold_value(pd_store_batch *b, rocksdb_column_family_handle_t *cf, const pd_profile *delta,
                      const pd_event *ev, int pop)
{
    pd_store *st = b->st;
    if (pop && !b->popfold_init) {
        pd_profile_init(&b->popfold, &st->pop_schema);
        b->popfold_init = 1;
    }
    pd_profile *fold = pop ? &b->popfold : &b->fold;
    if (!b->ro) b->ro = rocksdb_readoptions_create();
    char *re = NULL;
    size_t vl = 0;
    char *v = rocksdb_get_cf(st->db, b->ro, cf, b->key.p, b->key.len, &vl, &re);
    if (re) {
        rocksdb_free(re);
        return -1;
    }
    int rc = PD_OK;
    if (v) {
        char derr[64];
        rc = pd_profile_decode(fold, v, vl, derr, sizeof derr);
        rocksdb_free(v);
    } else {
        pd_profile_clear(fold);
    }
    if (rc != PD_OK) return -1;
    if (delta) pd_profile_merge(fold, delta);
    else pd_profile_add(fold, ev); /* merging with the event's singleton profile */
    b->val.len = 0;
    pd_profile_encode(fold, &b->val);
    return 0;
}

/* pd_store_batch_merge(_event): exactly one of delta and ev is set. */
static int batch_merge(pd_store_batch *b, int64_t day, int32_t partition, const char *user, size_t ulen,
                       const pd_profile *delta, const pd_event *ev, char *err, size_t errlen)
{
    pd_store *st = b->st;
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    const int pop = ulen == 0; /* the partition's population profile */
    pd_assert(!pop || !delta || delta->schema == &st->pop_schema);
    pd_dayent *de;
    int rc = store_day_for_write(st, day, &de, err, errlen);
    if (rc) return rc;
    rocksdb_column_family_handle_t *cf = de->cf;
    store_data_key(&b->key, partition, user, ulen);
    store_filter_add(de, b->key.p, b->key.len);
    const uint64_t h = XXH3_64bits_withSeed(b->key.p, b->key.len, (uint64_t)day);
    if (!st->fold_cnt) st->fold_cnt = pd_calloc(FOLD_SLOTS, 1);
    uint8_t *cnt = &st->fold_cnt[h & (FOLD_SLOTS - 1)];
    const int again = seen_add(b, h);
    if (++*cnt >= FOLD_EVERY && !again && fold_value(b, cf, delta, ev, pop) == 0) {
        *cnt = 0;
        b->folds++;
        rocksdb_writebatch_put_cf(b->wb, cf, b->key.p, b->key.len, b->val.p, b->val.len);
    } else {
        if (*cnt >= FOLD_EVERY) *cnt = FOLD_EVERY - 1;
        b->val.len = 0;
        if (delta) pd_profile_encode(delta, &b->val);
        else pd_profile_encode_event(pop ? &st->pop_schema : st->schema, ev, &b->val);
        rocksdb_writebatch_merge_cf(b->wb, cf, b->key.p, b->key.len, b->val.p, b->val.len);
    }
    st->fold_bytes += b->key.len + b->val.len;
    if (st->fold_bytes >= (uint64_t)st->write_buffer_mb << 20) {
        memset(st->fold_cnt, 0, FOLD_SLOTS);
        st->fold_bytes = 0;
    }
    return PD_OK;
}

int pd_store_batch_merge(pd_store_batch *b, int64_t day, int32_t partition, const char *user,
                         size_t ulen, const pd_profile *delta, char *err, size_t errlen)
{
    return batch_merge(b, day, partition, user, ulen, delta, NULL, err, errlen);
}

int pd_store_batch_merge_event(pd_store_batch *b, int64_t day, int32_t partition, const char *user,
                               size_t ulen, const pd_event *ev, char *err, size_t errlen)
{
    return batch_merge(b, day, partition, user, ulen, NULL, ev, err, errlen);
}

int pd_store_batch_erase_user(pd_store_batch *b, int32_t partition, const char *user, size_t ulen,
                              char *err, size_t errlen)
{
    pd_store *st = b->st;
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    /* the population profile is not personal data and is never erased */
    if (ulen == 0) return pd_seterr(err, errlen, PD_EINVAL, "erasure of an empty user id");
    store_data_key(&b->key, partition, user, ulen);
    pd_dayent **v;
    int n;
    store_dayents_ref(st, INT64_MIN, &v, &n);
    for (int i = 0; i < n; i++) {
        rocksdb_writebatch_delete_cf(b->wb, v[i]->cf, b->key.p, b->key.len);
        /* no fold of this key later in the batch (see the design comment) */
        seen_add(b, XXH3_64bits_withSeed(b->key.p, b->key.len, (uint64_t)v[i]->day));
    }
    store_dayents_unref(st, v, n); /* frees v */
    return PD_OK;
}

static void dedup_key(uint8_t *k, int32_t partition, uint64_t seq)
{
    pd_assert(partition >= 0);
    pd_put_u32be(k, (uint32_t)partition);
    pd_put_u64be(k + 4, seq);
}

void pd_store_batch_put_dedup(pd_store_batch *b, int32_t partition, uint64_t seq, const void *val,
                              size_t vlen)
{
    uint8_t k[PD_DEDUP_KEY_LEN];
    pd_assert(vlen % PD_DEDUP_ENTRY_LEN == 0);
    dedup_key(k, partition, seq);
    rocksdb_writebatch_put_cf(b->wb, b->st->cf_dedup, (const char *)k, sizeof k, vlen ? val : "", vlen);
}

void pd_store_batch_delete_dedup(pd_store_batch *b, int32_t partition, uint64_t seq)
{
    uint8_t k[PD_DEDUP_KEY_LEN];
    dedup_key(k, partition, seq);
    rocksdb_writebatch_delete_cf(b->wb, b->st->cf_dedup, (const char *)k, sizeof k);
}

void pd_store_batch_set_checkpoint(pd_store_batch *b, int32_t partition, int64_t next_offset,
                                   int64_t clock_ms)
{
    uint8_t k[PD_CKPT_KEY_LEN], v[PD_CKPT_VAL_LEN];
    store_ckpt_key(k, partition);
    pd_put_u64be(v, (uint64_t)next_offset);
    pd_put_u64be(v + 8, (uint64_t)clock_ms);
    /* a later put for the same key in this batch supersedes this one */
    rocksdb_writebatch_put_cf(b->wb, b->st->cf_meta, (const char *)k, sizeof k,
                              (const char *)v, sizeof v);
}

void pd_store_batch_put_sidefx(pd_store_batch *b, int32_t partition, const void *val, size_t vlen)
{
    uint8_t k[PD_CKPT_KEY_LEN];
    store_sidefx_key(k, partition);
    rocksdb_writebatch_put_cf(b->wb, b->st->cf_meta, (const char *)k, sizeof k, vlen ? val : "", vlen);
}

void pd_store_batch_set_start_time(pd_store_batch *b, int32_t partition, int64_t t_ms)
{
    uint8_t k[PD_CKPT_KEY_LEN], v[8];
    store_start_key(k, partition);
    pd_put_u64be(v, (uint64_t)t_ms);
    rocksdb_writebatch_put_cf(b->wb, b->st->cf_meta, (const char *)k, sizeof k, (const char *)v, sizeof v);
}

void pd_store_batch_clear_start_time(pd_store_batch *b, int32_t partition)
{
    uint8_t k[PD_CKPT_KEY_LEN];
    store_start_key(k, partition);
    rocksdb_writebatch_delete_cf(b->wb, b->st->cf_meta, (const char *)k, sizeof k);
}

int pd_store_commit(pd_store *st, pd_store_batch *b, char *err, size_t errlen)
{
    pd_assert(b->st == st);
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (atomic_load_explicit(&st->fail_commits, memory_order_relaxed))
        return pd_seterr(err, errlen, PD_EIO, "commit: failure injected (pd_store_fail_commits)");
    if (rocksdb_writebatch_count(b->wb) == 0) return PD_OK;
    /* The batch's keys are in their day filters; a range query that saw an
     * older generation and finds a newer one after reading retries without
     * the filters (see the design comment). */
    atomic_fetch_add_explicit(&st->wgen, 1, memory_order_release);
    char *re = NULL;
    rocksdb_write(st->db, st->wo, b->wb, &re);
    if (re) return store_rdb_err(re, err, errlen, "commit");
    rocksdb_writebatch_clear(b->wb);
    seen_clear(b);
    return PD_OK;
}

void pd_store_fail_commits(pd_store *st, int on)
{
    atomic_store_explicit(&st->fail_commits, on ? 1 : 0, memory_order_relaxed);
}

int pd_store_drop_days_before(pd_store *st, int64_t first_kept_day, char *err, size_t errlen)
{
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    int dropped = 0;
    for (;;) {
        pthread_mutex_lock(&st->lock);
        pd_dayent *e = NULL;
        if (st->ndays > 0 && st->days[0]->day < first_kept_day) {
            e = st->days[0];
            memmove(st->days, st->days + 1, (size_t)(st->ndays - 1) * sizeof *st->days);
            st->ndays--;
            if (st->wlast == e) st->wlast = NULL;
        }
        pthread_mutex_unlock(&st->lock);
        if (!e) break;
        char *re = NULL;
        rocksdb_drop_column_family(st->db, e->cf, &re);
        if (re) {
            pthread_mutex_lock(&st->lock);
            store_days_insert_locked(st, e); /* only the writer removes: still the smallest */
            pthread_mutex_unlock(&st->lock);
            char name[12];
            pd_store_day_name(e->day, name);
            char what[64];
            snprintf(what, sizeof what, "drop column family %s", name);
            return store_rdb_err(re, err, errlen, what);
        }
        store_dayent_unref(st, e); /* the map's reference; readers may still hold theirs */
        dropped++;
    }
    return dropped;
}

int pd_store_batch_put_profile_raw(pd_store_batch *b, int64_t day, int32_t partition,
                                   const char *user, size_t ulen, const char *val, size_t vlen,
                                   char *err, size_t errlen)
{
    pd_store *st = b->st;
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    pd_profile chk;
    pd_profile_init(&chk, ulen == 0 ? &st->pop_schema : st->schema);
    int rc = pd_profile_decode(&chk, val, vlen, err, errlen);
    pd_profile_free(&chk);
    if (rc) return rc;
    pd_dayent *de;
    if ((rc = store_day_for_write(st, day, &de, err, errlen))) return rc;
    store_data_key(&b->key, partition, user, ulen);
    store_filter_add(de, b->key.p, b->key.len);
    rocksdb_writebatch_put_cf(b->wb, de->cf, b->key.p, b->key.len, val, vlen);
    return PD_OK;
}

int pd_store_delete_partition(pd_store *st, int32_t partition, char *err, size_t errlen)
{
    if (st->read_only) return pd_seterr(err, errlen, PD_EINVAL, "store is read-only");
    if (partition < 0) return pd_seterr(err, errlen, PD_EINVAL, "negative partition %d", partition);
    uint8_t lo[4], hi[4], ck[PD_CKPT_KEY_LEN], xk[PD_CKPT_KEY_LEN], tk[PD_CKPT_KEY_LEN];
    pd_put_u32be(lo, (uint32_t)partition);
    pd_put_u32be(hi, (uint32_t)partition + 1);
    store_ckpt_key(ck, partition);
    store_sidefx_key(xk, partition);
    store_start_key(tk, partition);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    pd_dayent **v;
    int n;
    store_dayents_ref(st, INT64_MIN, &v, &n);
    for (int i = 0; i < n; i++)
        rocksdb_writebatch_delete_range_cf(wb, v[i]->cf, (const char *)lo, 4, (const char *)hi, 4);
    rocksdb_writebatch_delete_range_cf(wb, st->cf_dedup, (const char *)lo, 4, (const char *)hi, 4);
    rocksdb_writebatch_delete_cf(wb, st->cf_meta, (const char *)ck, sizeof ck);
    rocksdb_writebatch_delete_cf(wb, st->cf_meta, (const char *)xk, sizeof xk);
    rocksdb_writebatch_delete_cf(wb, st->cf_meta, (const char *)tk, sizeof tk);
    char *re = NULL;
    rocksdb_write(st->db, st->wo, wb, &re);
    rocksdb_writebatch_destroy(wb);
    store_dayents_unref(st, v, n);
    if (re) return store_rdb_err(re, err, errlen, "delete partition");
    return PD_OK;
}


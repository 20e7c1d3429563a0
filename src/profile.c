/*
 * profile.c -- the profile model: add, merge, compare, encode, decode and
 * render one user's aggregates for one day. Pure code, no I/O, no globals.
 *
 * Categorical cap (bottom-k). Every value is ranked by the key
 * (XXH3_64bits(value), value bytes by memcmp, length); a catset keeps the
 * max_values values of smallest rank among all values it has ever seen and
 * counts every other occurrence in `other`. Let S be any state (kept map M,
 * other o) and merge(S1, S2) = (union of M1 and M2 with counts summed,
 * o1 + o2), then evict the worst-ranked values down to max_values, adding
 * their counts to `other`. For any set of inputs, a value x survives the
 * final eviction iff x is among the max_values best keys of the union of all
 * keys; such an x is also among the best of every subset union that contains
 * it, so it is never evicted by an intermediate merge and its final count is
 * the sum of its counts in all inputs; `other` is the grand total minus the
 * kept counts. The result therefore depends only on the multiset of inputs:
 * merge is associative and commutative. Adding one event is a merge with the
 * singleton {value: 1}, so add in any order == merge in any grouping.
 *
 * Invariants kept by every function here:
 *   - catset values are sorted by strictly increasing rank (so the worst
 *     kept value is vals[n-1], lookups are binary searches, encoding is
 *     canonical and equal profiles encode to identical bytes);
 *   - n <= schema->max_values; every kept count >= 1;
 *   - the event-type catset total (kept + other) == events; each dimension's
 *     total <= events;
 *   - a numeric aggregate has hist != NULL when count > 0, and its buckets
 *     sum to count; with count == 0 hist is NULL, or an all-zero buffer
 *     kept by pd_profile_clear; -0.0 is stored as +0.0 so min/max are
 *     order-independent.
 * Numeric sums are floating point: exact (and thus order-independent) for
 * integer-valued data below 2^53, within rounding otherwise.
 *
 * Encoding (version 2, all integers LEB128 uvarints):
 *   u8 version | events | zigzag(first_ts) | last_ts - first_ts | types catset
 *   | ndims_present | per present dimension, by increasing index:
 *       index, then catset   = n, n x (len, bytes, count), other
 *              or numeric    = count, then
 *                count == 1 (a "single"): v   -- sum = min = max = v,
 *                                              sumsq = v*v, one bucket
 *                  (every count-1 aggregate is one; version 1 input
 *                  that is not is rejected)
 *                otherwise: sum, sumsq, min, max, k, k x (gap, count)
 *                  -- the k non-empty histogram buckets, gap = index minus
 *                     the previous index + 1 (the first: its index)
 *   and every double as "cdouble": an integral value with |v| < 2^53 is
 *   uvarint(zigzag(v) << 1); anything else is uvarint(1) + f64 LE.
 * Most profile deltas hold one event per user-day, and attribute values
 * are mostly integers, so this is about half the size of version 1:
 *   numeric = count, sum, sumsq, min, max (f64 LE), nbuckets, nbuckets x count
 * which the decoder still reads (stores written before version 2).
 * Catset values are written in rank order; the decoder requires it (which
 * also rules out duplicates), rejects non-minimal varints and
 * non-canonical choices (a raw double that has an integral form, the
 * general numeric form for a single), and validates every field against
 * the schema, so every accepted version 2 input is canonical:
 * encode(decode(x)) == x byte for byte.
 */
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- catsets ---- */

/* Stores a copy of v[0..len) in x (inline when short). */
static void catval_set(pd_catval *x, const char *v, uint32_t len)
{
    x->len = len;
    if (len <= PD_CATVAL_INLINE) {
        memcpy(x->u.inl, v, len);
        x->u.inl[len] = '\0';
    } else {
        x->u.heap = pd_strndup(v, len);
    }
}

static void catval_free(pd_catval *x)
{
    if (x->len > PD_CATVAL_INLINE) pd_free(x->u.heap);
}

static int rank_cmp(uint64_t ha, const char *a, uint32_t la, uint64_t hb, const char *b, uint32_t lb)
{
    if (ha != hb) return ha < hb ? -1 : 1;
    uint32_t m = la < lb ? la : lb;
    int c = m ? memcmp(a, b, m) : 0;
    if (c) return c;
    return la < lb ? -1 : (la > lb ? 1 : 0);
}

/* Binary search for (h, v, len). Returns the index where it is or would be
 * inserted; *found set to 1 when present. */
static uint32_t catset_find(const pd_catset *c, uint64_t h, const char *v, uint32_t len, int *found)
{
    uint32_t lo = 0, hi = c->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const pd_catval *x = &c->vals[mid];
        int r = rank_cmp(x->hash, pd_catval_str(x), x->len, h, v, len);
        if (r == 0) {
            *found = 1;
            return mid;
        }
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = 0;
    return lo;
}

static void catset_free(pd_catset *c)
{
    for (uint32_t i = 0; i < c->n; i++) catval_free(&c->vals[i]);
    pd_free(c->vals);
    memset(c, 0, sizeof *c);
}

/* Adds `count` occurrences of v (borrowed; copied when it becomes kept).
 * This is merge with the singleton {v: count}. */
static void catset_add(pd_catset *c, uint32_t max, const char *v, uint32_t len, uint64_t count)
{
    uint64_t h = XXH3_64bits(v, len);
    int found;
    uint32_t pos = catset_find(c, h, v, len, &found);
    if (found) {
        c->vals[pos].count += count;
        return;
    }
    if (c->n >= max) {
        if (pos >= c->n) { /* ranks after every kept value: not kept */
            c->other += count;
            return;
        }
        /* Evict the worst kept value to make room. */
        pd_catval *w = &c->vals[c->n - 1];
        c->other += w->count;
        catval_free(w);
        c->n--;
    }
    if (c->n == c->cap) {
        uint32_t ncap = c->cap ? c->cap * 2 : 4;
        if (ncap > max) ncap = max;
        if (ncap <= c->n) ncap = c->n + 1;
        c->vals = pd_realloc(c->vals, (size_t)ncap * sizeof *c->vals);
        c->cap = ncap;
    }
    if (pos < c->n) memmove(&c->vals[pos + 1], &c->vals[pos], (size_t)(c->n - pos) * sizeof *c->vals);
    pd_catval *x = &c->vals[pos];
    catval_set(x, v, len);
    x->hash = h;
    x->count = count;
    c->n++;
}

/* d += s by one rank-ordered walk over both sets; keeps the first `max`
 * values, counts the rest in other. d and s must be distinct. */
static void catset_merge(pd_catset *d, const pd_catset *s, uint32_t max)
{
    pd_assert(d != s);
    d->other += s->other;
    if (s->n == 0) return;
    uint32_t total = d->n + s->n;
    uint32_t cap = total < max ? total : max;
    pd_catval *nv = cap ? pd_malloc((size_t)cap * sizeof *nv) : NULL;
    uint32_t i = 0, j = 0, k = 0;
    while (i < d->n || j < s->n) {
        int r;
        if (j >= s->n) r = -1;
        else if (i >= d->n) r = 1;
        else {
            const pd_catval *a = &d->vals[i], *b = &s->vals[j];
            r = rank_cmp(a->hash, pd_catval_str(a), a->len, b->hash, pd_catval_str(b), b->len);
        }
        if (r <= 0) { /* take d's value (plus s's count when equal) */
            pd_catval x = d->vals[i++];
            if (r == 0) x.count += s->vals[j++].count;
            if (k < cap) {
                nv[k++] = x;
            } else {
                d->other += x.count;
                catval_free(&x);
            }
        } else {
            const pd_catval *b = &s->vals[j++];
            if (k < cap) {
                nv[k].hash = b->hash;
                nv[k].count = b->count;
                catval_set(&nv[k], pd_catval_str(b), b->len);
                k++;
            } else {
                d->other += b->count;
            }
        }
    }
    pd_free(d->vals);
    d->vals = nv;
    d->n = k;
    d->cap = cap;
}

static int catset_equal(const pd_catset *a, const pd_catset *b)
{
    if (a->n != b->n || a->other != b->other) return 0;
    /* Both sorted by rank: equal as sets iff equal elementwise. */
    for (uint32_t i = 0; i < a->n; i++) {
        const pd_catval *x = &a->vals[i], *y = &b->vals[i];
        if (x->hash != y->hash || x->len != y->len || x->count != y->count ||
            memcmp(pd_catval_str(x), pd_catval_str(y), x->len) != 0)
            return 0;
    }
    return 1;
}

uint64_t pd_catset_get(const pd_catset *c, const char *v, size_t len)
{
    if (len > UINT32_MAX) return 0;
    int found;
    uint32_t pos = catset_find(c, XXH3_64bits(v, len), v, (uint32_t)len, &found);
    return found ? c->vals[pos].count : 0;
}

uint64_t pd_catset_total(const pd_catset *c)
{
    uint64_t t = c->other;
    for (uint32_t i = 0; i < c->n; i++) t += c->vals[i].count;
    return t;
}

/* ---- numeric aggregates ---- */

/* Histogram bucket of v: the first bound >= v (le, inclusive), or nbounds
 * (+Inf). */
static int num_bucket(const pd_dim *d, double v)
{
    int lo = 0, hi = d->nbounds;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (d->bounds[mid] >= v) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

static void num_add(pd_numagg *a, const pd_dim *d, double v)
{
    if (v == 0) v = 0; /* -0.0 -> +0.0 */
    if (a->count == 0) {
        if (!a->hist) a->hist = pd_calloc((size_t)d->nbounds + 1, sizeof *a->hist);
        a->sum = a->sumsq = 0;
        a->min = a->max = v;
    } else {
        if (v < a->min) a->min = v;
        if (v > a->max) a->max = v;
    }
    a->count++;
    a->sum += v;
    a->sumsq += v * v;
    a->hist[num_bucket(d, v)]++;
}

static void num_merge(pd_numagg *a, const pd_numagg *b, const pd_dim *d)
{
    if (b->count == 0) return;
    if (a->count == 0) {
        if (!a->hist) a->hist = pd_calloc((size_t)d->nbounds + 1, sizeof *a->hist);
        a->sum = a->sumsq = 0;
        a->min = b->min;
        a->max = b->max;
    } else {
        if (b->min < a->min) a->min = b->min;
        if (b->max > a->max) a->max = b->max;
    }
    a->count += b->count;
    a->sum += b->sum;
    a->sumsq += b->sumsq;
    for (int i = 0; i <= d->nbounds; i++) a->hist[i] += b->hist[i];
}

static void num_free(pd_numagg *a)
{
    pd_free(a->hist);
    memset(a, 0, sizeof *a);
}

/* Doubles compare exactly; NaN (only reachable as inf + -inf in a sum)
 * equals NaN so that decode(encode(p)) == p always holds. */
static int dbl_same(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static int num_equal(const pd_numagg *a, const pd_numagg *b, const pd_dim *d)
{
    if (a->count != b->count) return 0;
    if (a->count == 0) return 1;
    if (!dbl_same(a->sum, b->sum) || !dbl_same(a->sumsq, b->sumsq) || !dbl_same(a->min, b->min) ||
        !dbl_same(a->max, b->max))
        return 0;
    return memcmp(a->hist, b->hist, ((size_t)d->nbounds + 1) * sizeof *a->hist) == 0;
}

/* ---- profiles ---- */

void pd_profile_init(pd_profile *p, const pd_schema *s)
{
    memset(p, 0, sizeof *p);
    p->schema = s;
}

void pd_profile_free(pd_profile *p)
{
    const pd_schema *s = p->schema;
    catset_free(&p->types);
    if (s) {
        for (int i = 0; i < s->ndims; i++) {
            if (s->dims[i].type == PD_DIM_CATEGORICAL) catset_free(&p->dims[i].cat);
            else num_free(&p->dims[i].num);
        }
    }
    pd_profile_init(p, s);
}

static size_t catset_mem_bytes(const pd_catset *c)
{
    size_t n = (size_t)c->cap * sizeof *c->vals;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->vals[i].len > PD_CATVAL_INLINE) n += (size_t)c->vals[i].len + 1;
    return n;
}

size_t pd_profile_mem_bytes(const pd_profile *p)
{
    const pd_schema *s = p->schema;
    size_t n = catset_mem_bytes(&p->types);
    for (int i = 0; s && i < s->ndims; i++) {
        if (s->dims[i].type == PD_DIM_CATEGORICAL) n += catset_mem_bytes(&p->dims[i].cat);
        else if (p->dims[i].num.hist) n += ((size_t)s->dims[i].nbounds + 1) * sizeof *p->dims[i].num.hist;
    }
    return n;
}

void pd_profile_reset(pd_profile *p)
{
    pd_profile_free(p);
}

void pd_profile_clear(pd_profile *p)
{
    const pd_schema *s = p->schema;
    pd_assert(s);
    for (uint32_t k = 0; k < p->types.n; k++) catval_free(&p->types.vals[k]);
    p->types.n = 0;
    p->types.other = 0;
    for (int i = 0; i < s->ndims; i++) {
        if (s->dims[i].type == PD_DIM_CATEGORICAL) {
            pd_catset *c = &p->dims[i].cat;
            for (uint32_t k = 0; k < c->n; k++) catval_free(&c->vals[k]);
            c->n = 0;
            c->other = 0;
        } else {
            pd_numagg *a = &p->dims[i].num;
            if (a->hist && a->count) memset(a->hist, 0, ((size_t)s->dims[i].nbounds + 1) * sizeof *a->hist);
            a->count = 0;
            a->sum = a->sumsq = a->min = a->max = 0;
        }
    }
    p->events = 0;
    p->first_ts = p->last_ts = 0;
}

/* Whether pd_profile_add and pd_profile_encode_event count attribute a of
 * dimension d: 1 as a categorical value, 2 as a number, 0 not at all. */
static int event_attr_counted(const pd_dim *d, const pd_attr *a)
{
    if (d->type == PD_DIM_CATEGORICAL)
        return a->kind == PD_ATTR_STR && a->len >= 1 && a->len <= PD_MAX_CAT_VALUE;
    return a->kind == PD_ATTR_NUM && isfinite(a->num) ? 2 : 0;
}

void pd_profile_add(pd_profile *p, const pd_event *ev)
{
    const pd_schema *s = p->schema;
    pd_assert(ev->type_len >= 1 && ev->type_len <= PD_MAX_TYPE);
    if (p->events == 0) {
        p->first_ts = p->last_ts = ev->ts_ms;
    } else {
        if (ev->ts_ms < p->first_ts) p->first_ts = ev->ts_ms;
        if (ev->ts_ms > p->last_ts) p->last_ts = ev->ts_ms;
    }
    p->events++;
    int n = ev->nattrs < s->ndims ? ev->nattrs : s->ndims;
    /* The value arrays of a batch profile are usually cold: ask for all of
     * them at once rather than missing the cache one dimension at a time. */
    for (int i = 0; i < n; i++)
        if (s->dims[i].type == PD_DIM_CATEGORICAL && ev->attrs[i].kind == PD_ATTR_STR)
            __builtin_prefetch(p->dims[i].cat.vals);
    catset_add(&p->types, s->max_values, ev->type, (uint32_t)ev->type_len, 1);
    for (int i = 0; i < n; i++) {
        const pd_attr *a = &ev->attrs[i];
        const pd_dim *d = &s->dims[i];
        /* The parser guarantees 1..256 bytes of UTF-8; the length is
         * re-checked cheaply so the codec's limits always hold. */
        const int c = event_attr_counted(d, a);
        if (c == 1) catset_add(&p->dims[i].cat, s->max_values, a->s, a->len, 1);
        else if (c == 2) num_add(&p->dims[i].num, d, a->num);
    }
}

void pd_profile_merge(pd_profile *dst, const pd_profile *src)
{
    const pd_schema *s = dst->schema;
    pd_assert(s == src->schema || (s && src->schema && s->fingerprint == src->schema->fingerprint &&
                                   s->ndims == src->schema->ndims));
    if (dst == src) { /* merging with itself: merge from a copy */
        pd_profile tmp;
        pd_profile_init(&tmp, s);
        pd_profile_merge(&tmp, src);
        pd_profile_merge(dst, &tmp);
        pd_profile_free(&tmp);
        return;
    }
    if (src->events == 0) return;
    if (dst->events == 0) {
        dst->first_ts = src->first_ts;
        dst->last_ts = src->last_ts;
    } else {
        if (src->first_ts < dst->first_ts) dst->first_ts = src->first_ts;
        if (src->last_ts > dst->last_ts) dst->last_ts = src->last_ts;
    }
    dst->events += src->events;
    catset_merge(&dst->types, &src->types, s->max_values);
    for (int i = 0; i < s->ndims; i++) {
        if (s->dims[i].type == PD_DIM_CATEGORICAL)
            catset_merge(&dst->dims[i].cat, &src->dims[i].cat, s->max_values);
        else
            num_merge(&dst->dims[i].num, &src->dims[i].num, &s->dims[i]);
    }
}

int pd_profile_equal(const pd_profile *a, const pd_profile *b)
{
    const pd_schema *s = a->schema;
    if (s->ndims != b->schema->ndims) return 0;
    if (a->events != b->events || a->first_ts != b->first_ts || a->last_ts != b->last_ts) return 0;
    if (!catset_equal(&a->types, &b->types)) return 0;
    for (int i = 0; i < s->ndims; i++) {
        if (s->dims[i].type == PD_DIM_CATEGORICAL) {
            if (!catset_equal(&a->dims[i].cat, &b->dims[i].cat)) return 0;
        } else if (!num_equal(&a->dims[i].num, &b->dims[i].num, &s->dims[i])) {
            return 0;
        }
    }
    return 1;
}

/* ---- encoding ---- */

/* The encoder computes an upper bound of the encoded size, reserves it
 * once and then writes through a plain pointer (it runs for every batch
 * delta and in every RocksDB merge). */

static uint8_t *w_f64(uint8_t *o, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)(u >> (8 * i));
    return o + 8;
}

/* cdouble (see the encoding above). */
static int cdouble_integral(double v)
{
    return v == trunc(v) && fabs(v) < 9007199254740992.0 && !(v == 0 && signbit(v));
}

static uint8_t *w_cdouble(uint8_t *o, double v)
{
    if (cdouble_integral(v)) return pd_uvarint_write(o, pd_zigzag((int64_t)v) << 1);
    *o++ = 1;
    return w_f64(o, v);
}

/* A count-1 aggregate is always exactly what adding its one value gives
 * (num_add, or a merge into an empty aggregate); the decoder enforces it,
 * so the encoder can write count 1 as just the value. */
static int num_single(const pd_numagg *a)
{
    double sq = a->sum * a->sum;
    return a->count == 1 && a->sum == a->min && a->min == a->max && !(a->sum == 0 && signbit(a->sum)) &&
           memcmp(&a->sumsq, &sq, sizeof sq) == 0;
}

static size_t catset_bound(const pd_catset *c)
{
    size_t n = 2 * PD_UVARINT_MAX;
    for (uint32_t i = 0; i < c->n; i++) n += 2 * PD_UVARINT_MAX + c->vals[i].len;
    return n;
}

static uint8_t *w_catset(uint8_t *o, const pd_catset *c)
{
    o = pd_uvarint_write(o, c->n);
    for (uint32_t i = 0; i < c->n; i++) {
        const pd_catval *x = &c->vals[i];
        o = pd_uvarint_write(o, x->len);
        memcpy(o, pd_catval_str(x), x->len);
        o += x->len;
        o = pd_uvarint_write(o, x->count);
    }
    return pd_uvarint_write(o, c->other);
}

static int dim_present(const pd_profile *p, int i)
{
    if (p->schema->dims[i].type == PD_DIM_CATEGORICAL)
        return p->dims[i].cat.n > 0 || p->dims[i].cat.other > 0;
    return p->dims[i].num.count > 0;
}

void pd_profile_encode(const pd_profile *p, pd_buf *out)
{
    const pd_schema *s = p->schema;
    uint64_t present_mask[(PD_MAX_DIMS + 63) / 64] = {0};
    int present = 0;
    size_t bound = 1 + 4 * PD_UVARINT_MAX + catset_bound(&p->types);
    for (int i = 0; i < s->ndims; i++) {
        if (!dim_present(p, i)) continue;
        present_mask[i / 64] |= UINT64_C(1) << (i % 64);
        present++;
        bound += PD_UVARINT_MAX;
        if (s->dims[i].type == PD_DIM_CATEGORICAL)
            bound += catset_bound(&p->dims[i].cat);
        else
            bound += 2 * PD_UVARINT_MAX + 4 * (1 + 8) + (size_t)(s->dims[i].nbounds + 1) * 2 * PD_UVARINT_MAX;
    }
    pd_buf_reserve(out, bound + 1);
    uint8_t *o = (uint8_t *)out->p + out->len, *const start = o;
    *o++ = PD_PROFILE_VERSION;
    o = pd_uvarint_write(o, p->events);
    o = pd_uvarint_write(o, pd_zigzag(p->first_ts));
    o = pd_uvarint_write(o, (uint64_t)p->last_ts - (uint64_t)p->first_ts);
    o = w_catset(o, &p->types);
    o = pd_uvarint_write(o, (uint64_t)present);
    for (int i = 0; i < s->ndims; i++) {
        if (!(present_mask[i / 64] >> (i % 64) & 1)) continue;
        o = pd_uvarint_write(o, (uint64_t)i);
        if (s->dims[i].type == PD_DIM_CATEGORICAL) {
            o = w_catset(o, &p->dims[i].cat);
        } else {
            const pd_numagg *a = &p->dims[i].num;
            o = pd_uvarint_write(o, a->count);
            if (a->count == 1) {
                pd_assert(num_single(a));
                o = w_cdouble(o, a->sum);
                continue;
            }
            o = w_cdouble(o, a->sum);
            o = w_cdouble(o, a->sumsq);
            o = w_cdouble(o, a->min);
            o = w_cdouble(o, a->max);
            uint64_t k = 0;
            for (int j = 0; j <= s->dims[i].nbounds; j++) k += a->hist[j] != 0;
            o = pd_uvarint_write(o, k);
            for (int j = 0, prev = -1; j <= s->dims[i].nbounds; j++) {
                if (!a->hist[j]) continue;
                o = pd_uvarint_write(o, (uint64_t)(j - prev - 1));
                o = pd_uvarint_write(o, a->hist[j]);
                prev = j;
            }
        }
    }
    pd_assert((size_t)(o - start) <= bound);
    out->len += (size_t)(o - start);
    out->p[out->len] = '\0';
}

/* A one-value catset: n = 1, the value, count 1, other 0. */
static uint8_t *w_catset1(uint8_t *o, const char *v, uint32_t len)
{
    *o++ = 1;
    o = pd_uvarint_write(o, len);
    memcpy(o, v, len);
    o += len;
    *o++ = 1;
    *o++ = 0;
    return o;
}

void pd_profile_encode_event(const pd_schema *s, const pd_event *ev, pd_buf *out)
{
    pd_assert(ev->type_len >= 1 && ev->type_len <= PD_MAX_TYPE);
    const int n = ev->nattrs < s->ndims ? ev->nattrs : s->ndims;
    int present = 0;
    size_t bound = 1 + 3 * PD_UVARINT_MAX + 3 + PD_UVARINT_MAX + ev->type_len + PD_UVARINT_MAX;
    for (int i = 0; i < n; i++) {
        const int c = event_attr_counted(&s->dims[i], &ev->attrs[i]);
        if (!c) continue;
        present++;
        bound += PD_UVARINT_MAX + (c == 1 ? 3 + PD_UVARINT_MAX + ev->attrs[i].len : 1 + 1 + 8);
    }
    pd_buf_reserve(out, bound + 1);
    uint8_t *o = (uint8_t *)out->p + out->len, *const start = o;
    *o++ = PD_PROFILE_VERSION;
    *o++ = 1; /* events */
    o = pd_uvarint_write(o, pd_zigzag(ev->ts_ms));
    *o++ = 0; /* last_ts - first_ts */
    o = w_catset1(o, ev->type, (uint32_t)ev->type_len);
    o = pd_uvarint_write(o, (uint64_t)present);
    for (int i = 0; i < n && present; i++) {
        const pd_attr *a = &ev->attrs[i];
        const int c = event_attr_counted(&s->dims[i], a);
        if (!c) continue;
        o = pd_uvarint_write(o, (uint64_t)i);
        if (c == 1) {
            o = w_catset1(o, a->s, a->len);
        } else {
            *o++ = 1; /* count: a single (num_single holds for one num_add) */
            o = w_cdouble(o, a->num == 0 ? 0 : a->num);
        }
    }
    pd_assert((size_t)(o - start) <= bound);
    out->len += (size_t)(o - start);
    out->p[out->len] = '\0';
}

/* ---- decoding ---- */

typedef struct {
    const uint8_t *p;
    size_t n, off;
    char *err;
    size_t errlen;
} rd;

static int rd_fail(rd *r, const char *what)
{
    return pd_seterr(r->err, r->errlen, PD_ECORRUPT, "profile: corrupt at byte %zu: %s", r->off, what);
}

static size_t rd_left(const rd *r) { return r->n - r->off; }

static int rd_uv(rd *r, uint64_t *v, const char *what)
{
    size_t k = pd_get_uvarint(r->p + r->off, rd_left(r), v);
    if (!k) return rd_fail(r, what);
    if (k > 1 && r->p[r->off + k - 1] == 0) return rd_fail(r, "non-minimal varint");
    r->off += k;
    return PD_OK;
}

static int rd_f64(rd *r, double *v, const char *what)
{
    if (rd_left(r) < 8) return rd_fail(r, what);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)r->p[r->off + (size_t)i] << (8 * i);
    memcpy(v, &u, sizeof *v);
    r->off += 8;
    return PD_OK;
}

/* Decodes a catset into c (empty). Values must be 1..maxlen bytes of UTF-8,
 * counts >= 1, in strictly increasing rank, at most max of them; *total
 * receives kept + other (overflow is corruption). */
static int rd_catset(rd *r, pd_catset *c, uint32_t max, uint32_t maxlen, uint64_t *total)
{
    int rc;
    uint64_t n, t = 0;
    if ((rc = rd_uv(r, &n, "truncated value count"))) return rc;
    if (n > max) return rd_fail(r, "more values than max_values");
    /* Each value takes at least 3 bytes (len, 1 byte, count) + other. */
    if (n > rd_left(r) / 3) return rd_fail(r, "value count exceeds input");
    if (n > c->cap) { /* reuse the capacity of a cleared profile */
        pd_free(c->vals);
        c->vals = pd_malloc((size_t)n * sizeof *c->vals);
        c->cap = (uint32_t)n;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len, count;
        if ((rc = rd_uv(r, &len, "truncated value length"))) return rc;
        if (len < 1 || len > maxlen) return rd_fail(r, "value length out of range");
        if (len > rd_left(r)) return rd_fail(r, "value bytes truncated");
        const char *v = (const char *)r->p + r->off;
        if (!pd_utf8_valid(v, (size_t)len)) return rd_fail(r, "value is not valid UTF-8");
        uint64_t h = XXH3_64bits(v, (size_t)len);
        if (c->n > 0) {
            const pd_catval *prev = &c->vals[c->n - 1];
            if (rank_cmp(prev->hash, pd_catval_str(prev), prev->len, h, v, (uint32_t)len) >= 0)
                return rd_fail(r, "values not in strictly increasing rank (duplicate or unordered)");
        }
        r->off += (size_t)len;
        if ((rc = rd_uv(r, &count, "truncated value count"))) return rc;
        if (count == 0) return rd_fail(r, "kept value with zero count");
        if (t + count < t) return rd_fail(r, "count overflow");
        t += count;
        pd_catval *x = &c->vals[c->n++];
        catval_set(x, v, (uint32_t)len);
        x->hash = h;
        x->count = count;
    }
    if ((rc = rd_uv(r, &c->other, "truncated other count"))) return rc;
    if (t + c->other < t) return rd_fail(r, "count overflow");
    *total = t + c->other;
    return PD_OK;
}

static int rd_cdouble(rd *r, double *v, const char *what)
{
    uint64_t x;
    int rc = rd_uv(r, &x, what);
    if (rc) return rc;
    if (x == 1) {
        if ((rc = rd_f64(r, v, what))) return rc;
        if (cdouble_integral(*v)) return rd_fail(r, "non-canonical double (raw form of an integer)");
        return PD_OK;
    }
    if (x & 1) return rd_fail(r, "bad double tag");
    x >>= 1;
    if (x >= (UINT64_C(1) << 54)) return rd_fail(r, "integer double out of range");
    *v = (double)pd_unzigzag(x);
    return PD_OK;
}

static int rd_numagg(rd *r, pd_numagg *a, const pd_dim *d, uint64_t events, int version)
{
    int rc;
    uint64_t nb, sum = 0;
    const uint64_t nbk = (uint64_t)d->nbounds + 1;
    if ((rc = rd_uv(r, &a->count, "truncated numeric count"))) return rc;
    if (a->count == 0) return rd_fail(r, "present numeric dimension with zero count");
    if (a->count > events) return rd_fail(r, "numeric count exceeds events");
    if (!a->hist) a->hist = pd_calloc((size_t)nbk, sizeof *a->hist);
    if (version >= 2 && a->count == 1) { /* a single: everything follows from v */
        double v;
        if ((rc = rd_cdouble(r, &v, "truncated value"))) return rc;
        if (!isfinite(v)) return rd_fail(r, "bad single value");
        a->sum = a->min = a->max = v;
        a->sumsq = v * v;
        memset(a->hist, 0, (size_t)nbk * sizeof *a->hist);
        a->hist[num_bucket(d, v)] = 1;
        return PD_OK;
    }
    if (version >= 2) {
        if ((rc = rd_cdouble(r, &a->sum, "truncated sum")) || (rc = rd_cdouble(r, &a->sumsq, "truncated sumsq")) ||
            (rc = rd_cdouble(r, &a->min, "truncated min")) || (rc = rd_cdouble(r, &a->max, "truncated max")))
            return rc;
    } else if ((rc = rd_f64(r, &a->sum, "truncated sum")) || (rc = rd_f64(r, &a->sumsq, "truncated sumsq")) ||
               (rc = rd_f64(r, &a->min, "truncated min")) || (rc = rd_f64(r, &a->max, "truncated max"))) {
        return rc;
    }
    if (isnan(a->sumsq) || a->sumsq < 0) return rd_fail(r, "bad sumsq");
    if (!isfinite(a->min) || !isfinite(a->max) || a->min > a->max) return rd_fail(r, "bad min/max");
    int first = -1, last = -1;
    if (version >= 2) {
        uint64_t k;
        if ((rc = rd_uv(r, &k, "truncated bucket count"))) return rc;
        if (k < 1 || k > nbk) return rd_fail(r, "non-empty bucket count out of range");
        memset(a->hist, 0, (size_t)nbk * sizeof *a->hist);
        for (uint64_t j = 0; j < k; j++) {
            uint64_t gap, c;
            if ((rc = rd_uv(r, &gap, "truncated bucket gap")) || (rc = rd_uv(r, &c, "truncated bucket"))) return rc;
            if (gap >= nbk || (uint64_t)(last + 1) + gap >= nbk) return rd_fail(r, "bucket index out of range");
            if (c == 0) return rd_fail(r, "empty bucket listed");
            last += 1 + (int)gap;
            if (first < 0) first = last;
            a->hist[last] = c;
            if (sum + c < sum) return rd_fail(r, "bucket count overflow");
            sum += c;
        }
    } else {
        if ((rc = rd_uv(r, &nb, "truncated bucket count"))) return rc;
        if (nb != nbk) return rd_fail(r, "bucket count does not match schema");
        for (int k = 0; k <= d->nbounds; k++) {
            if ((rc = rd_uv(r, &a->hist[k], "truncated bucket"))) return rc;
            if (sum + a->hist[k] < sum) return rd_fail(r, "bucket count overflow");
            sum += a->hist[k];
            if (a->hist[k]) {
                if (first < 0) first = k;
                last = k;
            }
        }
    }
    if (sum != a->count) return rd_fail(r, "bucket counts do not sum to count");
    if (num_bucket(d, a->min) != first || num_bucket(d, a->max) != last)
        return rd_fail(r, "min/max inconsistent with histogram");
    if (a->count == 1 && !num_single(a)) return rd_fail(r, "count 1 but sum/sumsq/min/max are not one value's");
    return PD_OK;
}

int pd_profile_decode(pd_profile *p, const void *data, size_t len, char *err, size_t errlen)
{
    const pd_schema *s = p->schema;
    rd r = {.p = data, .n = len, .off = 0, .err = err, .errlen = errlen};
    int rc;
    uint64_t zz, delta, total, ndp;
    int64_t prev = -1;
    pd_profile_clear(p);
    if (len < 1) {
        rc = rd_fail(&r, "empty input");
        goto out;
    }
    const int version = r.p[0];
    if (version != 1 && version != PD_PROFILE_VERSION) {
        rc = pd_seterr(err, errlen, PD_ECORRUPT, "profile: unsupported encoding version %u", r.p[0]);
        goto out;
    }
    r.off = 1;
    if ((rc = rd_uv(&r, &p->events, "truncated events"))) goto out;
    if ((rc = rd_uv(&r, &zz, "truncated first_ts"))) goto out;
    if ((rc = rd_uv(&r, &delta, "truncated last_ts"))) goto out;
    p->first_ts = pd_unzigzag(zz);
    {
        /* last_ts = first_ts + delta must fit in int64. */
        uint64_t room = p->first_ts >= 0 ? (uint64_t)(INT64_MAX - p->first_ts)
                                         : (uint64_t)INT64_MAX + (uint64_t)(-(p->first_ts + 1)) + 1;
        if (delta > room) {
            rc = rd_fail(&r, "last_ts out of range");
            goto out;
        }
        p->last_ts = (int64_t)((uint64_t)p->first_ts + delta);
    }
    if (p->events == 0 && (p->first_ts != 0 || p->last_ts != 0)) {
        rc = rd_fail(&r, "timestamps set on an empty profile");
        goto out;
    }
    if ((rc = rd_catset(&r, &p->types, s->max_values, PD_MAX_TYPE, &total))) goto out;
    if (total != p->events) {
        rc = rd_fail(&r, "event type counts do not sum to events");
        goto out;
    }
    if ((rc = rd_uv(&r, &ndp, "truncated dimension count"))) goto out;
    if (ndp > (uint64_t)s->ndims) {
        rc = rd_fail(&r, "more dimensions than the schema");
        goto out;
    }
    for (uint64_t k = 0; k < ndp; k++) {
        uint64_t idx;
        if ((rc = rd_uv(&r, &idx, "truncated dimension index"))) goto out;
        if (idx >= (uint64_t)s->ndims || (int64_t)idx <= prev) {
            rc = rd_fail(&r, "dimension index out of range or not increasing");
            goto out;
        }
        prev = (int64_t)idx;
        const pd_dim *d = &s->dims[idx];
        if (d->type == PD_DIM_CATEGORICAL) {
            if ((rc = rd_catset(&r, &p->dims[idx].cat, s->max_values, PD_MAX_CAT_VALUE, &total))) goto out;
            if (total == 0) {
                rc = rd_fail(&r, "present categorical dimension is empty");
                goto out;
            }
            if (total > p->events) {
                rc = rd_fail(&r, "categorical total exceeds events");
                goto out;
            }
        } else if ((rc = rd_numagg(&r, &p->dims[idx].num, d, p->events, version))) {
            goto out;
        }
    }
    if (r.off != r.n) {
        rc = rd_fail(&r, "trailing bytes");
        goto out;
    }
    rc = PD_OK;
out:
    if (rc) pd_profile_clear(p);
    return rc;
}

/* ---- JSON ---- */

/* The one number format (pd_fmt_double): NaN/Inf as null. */
static void json_num(pd_buf *b, double v)
{
    pd_buf_put_double(b, v, 0);
}

static void json_ts(pd_buf *b, int64_t ms)
{
    /* pd_ts_format is exact for any sane epoch; print raw ms otherwise. */
    if (ms > -(INT64_C(1) << 50) && ms < (INT64_C(1) << 50)) {
        char t[32];
        pd_ts_format(ms, t);
        pd_buf_json_str(b, t, strlen(t));
    } else {
        pd_buf_printf(b, "%lld", (long long)ms);
    }
}

static int cmp_bytes(const void *x, const void *y)
{
    const pd_catval *a = *(const pd_catval *const *)x, *b = *(const pd_catval *const *)y;
    uint32_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(pd_catval_str(a), pd_catval_str(b), m);
    if (c) return c;
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

/* {"value":count,...,"__other__":other} sorted by value bytes. */
static void json_counts(pd_buf *b, const pd_catset *c)
{
    pd_buf_putc(b, '{');
    const pd_catval **idx = NULL;
    if (c->n) {
        idx = pd_malloc((size_t)c->n * sizeof *idx);
        for (uint32_t i = 0; i < c->n; i++) idx[i] = &c->vals[i];
        qsort(idx, c->n, sizeof *idx, cmp_bytes);
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (i) pd_buf_putc(b, ',');
        pd_buf_json_str(b, pd_catval_str(idx[i]), idx[i]->len);
        pd_buf_printf(b, ":%llu", (unsigned long long)idx[i]->count);
    }
    if (c->other) {
        if (c->n) pd_buf_putc(b, ',');
        pd_buf_printf(b, "\"" PD_OTHER "\":%llu", (unsigned long long)c->other);
    }
    pd_buf_putc(b, '}');
    pd_free(idx);
}

void pd_profile_to_json(const pd_profile *p, pd_buf *out)
{
    const pd_schema *s = p->schema;
    pd_buf_printf(out, "{\"events\":%llu,\"first_seen\":", (unsigned long long)p->events);
    if (p->events) json_ts(out, p->first_ts);
    else PD_BUF_LIT(out, "null");
    PD_BUF_LIT(out, ",\"last_seen\":");
    if (p->events) json_ts(out, p->last_ts);
    else PD_BUF_LIT(out, "null");
    PD_BUF_LIT(out, ",\"event_types\":");
    json_counts(out, &p->types);
    PD_BUF_LIT(out, ",\"dimensions\":{");
    int first = 1;
    for (int i = 0; i < s->ndims; i++) {
        if (!dim_present(p, i)) continue;
        const pd_dim *d = &s->dims[i];
        if (!first) pd_buf_putc(out, ',');
        first = 0;
        pd_buf_json_str(out, d->name, strlen(d->name));
        if (d->type == PD_DIM_CATEGORICAL) {
            const pd_catset *c = &p->dims[i].cat;
            pd_buf_printf(out, ":{\"type\":\"categorical\",\"total\":%llu,\"counts\":",
                          (unsigned long long)pd_catset_total(c));
            json_counts(out, c);
            pd_buf_putc(out, '}');
        } else {
            const pd_numagg *a = &p->dims[i].num;
            double mean = a->sum / (double)a->count;
            double var = a->sumsq / (double)a->count - mean * mean;
            double sd = sqrt(var > 0 ? var : 0);
            pd_buf_printf(out, ":{\"type\":\"numeric\",\"count\":%llu,\"sum\":", (unsigned long long)a->count);
            json_num(out, a->sum);
            PD_BUF_LIT(out, ",\"sumsq\":");
            json_num(out, a->sumsq);
            PD_BUF_LIT(out, ",\"min\":");
            json_num(out, a->min);
            PD_BUF_LIT(out, ",\"max\":");
            json_num(out, a->max);
            PD_BUF_LIT(out, ",\"mean\":");
            json_num(out, mean);
            PD_BUF_LIT(out, ",\"stddev\":");
            json_num(out, isnan(var) ? var : sd);
            PD_BUF_LIT(out, ",\"histogram\":[");
            for (int k = 0; k <= d->nbounds; k++) {
                if (k) pd_buf_putc(out, ',');
                PD_BUF_LIT(out, "{\"le\":");
                if (k < d->nbounds) json_num(out, d->bounds[k]);
                else PD_BUF_LIT(out, "\"+Inf\"");
                pd_buf_printf(out, ",\"count\":%llu}", (unsigned long long)a->hist[k]);
            }
            PD_BUF_LIT(out, "]}");
        }
    }
    PD_BUF_LIT(out, "}}");
}

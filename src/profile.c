/*
 * profile.c -- the profile model: add, merge, compare, encode, decode and
 * render one user's aggregates for one day. Pure code, no I/O, no globals.
 *
 * Categorical counts are catsets (catset.c): exact up to the dimension's
 * cap (pd_dim_cap), a heavy-hitter sample counted by a Count-Min sketch
 * beyond it; event types are a catset with the schema's cap. Each catset,
 * and so each profile, is a function of the multiset of events alone, so
 * pd_profile_add in any order and pd_profile_merge in any grouping give
 * identical results (docs/data-model.md, "The categorical cap").
 *
 * Invariants kept by every function here (and catset.c's own):
 *   - the event-type catset total == events; each dimension's total <=
 *     events;
 *   - a numeric aggregate has hist != NULL when count > 0, and its buckets
 *     sum to count; with count == 0 hist is NULL, or an all-zero buffer
 *     kept by pd_profile_clear; -0.0 is stored as +0.0 so min/max are
 *     order-independent.
 * Numeric sums are floating point: exact (and thus order-independent) for
 * integer-valued data below 2^53, within rounding otherwise.
 *
 * Encoding (version 3, all integers LEB128 uvarints):
 *   u8 version | flags (bit 0 PD_PF_TRACKED, bit 1 PD_PF_RECENT) | body
 *   [| flags bit 0: the sub-profiles section (decode_subs)]
 *   [| flags bit 1: the recent items section (recent_write)]
 *   body = events
 *   | zigzag(first_ts) | last_ts - first_ts | types catset (not in a
 *     sub-profile's body)
 *   | ndims_present | per present dimension, by increasing index:
 *       index, then catset (catset.h: mode, values with levels, and the
 *              sketch of an overflowed one)
 *              or numeric    = count, then
 *                count == 1 (a "single"): v   -- sum = min = max = v,
 *                                              sumsq = v*v, one bucket
 *                otherwise: sum, sumsq, min, max, k, k x (gap, count)
 *                  -- the k non-empty histogram buckets, gap = index minus
 *                     the previous index + 1 (the first: its index)
 *   and every double as "cdouble": an integral value with |v| < 2^53 is
 *   uvarint(zigzag(v) << 1); anything else is uvarint(1) + f64 LE.
 * Versions 1 and 2 (before per-value levels and sketches) are refused: a
 * store holding them is refused at open (store format 3, store.c), so the
 * decoder never meets them in a working store.
 * The decoder rejects non-minimal varints and non-canonical choices (a raw
 * double that has an integral form, the general numeric form for a
 * single), and validates every field against the schema, so every accepted
 * input is canonical: encode(decode(x)) == x byte for byte.
 */
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

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
    pd_catset_free(&p->types);
    if (p->sub) {
        for (int t = 0; t < s->ntracked; t++) pd_profile_free(&p->sub[t]);
        pd_free(p->sub);
        p->sub = NULL;
    }
    for (uint32_t i = 0; i < p->nrecent; i++) pd_free(p->recent[i].rec);
    pd_free(p->recent);
    if (s) {
        for (int i = 0; i < s->ndims; i++) {
            if (s->dims[i].type == PD_DIM_CATEGORICAL) pd_catset_free(&p->dims[i].cat);
            else num_free(&p->dims[i].num);
        }
    }
    pd_profile_init(p, s);
}

size_t pd_profile_mem_bytes(const pd_profile *p)
{
    const pd_schema *s = p->schema;
    size_t n = pd_catset_mem_bytes(&p->types);
    if (p->sub) {
        n += (size_t)s->ntracked * sizeof *p->sub;
        for (int t = 0; t < s->ntracked; t++) n += pd_profile_mem_bytes(&p->sub[t]);
    }
    n += (size_t)p->recent_cap * sizeof *p->recent;
    for (uint32_t i = 0; i < p->nrecent; i++) n += p->recent[i].len;
    for (int i = 0; s && i < s->ndims; i++) {
        if (s->dims[i].type == PD_DIM_CATEGORICAL) n += pd_catset_mem_bytes(&p->dims[i].cat);
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
    pd_catset_clear(&p->types);
    for (int i = 0; i < s->ndims; i++) {
        if (s->dims[i].type == PD_DIM_CATEGORICAL) {
            pd_catset_clear(&p->dims[i].cat);
        } else {
            pd_numagg *a = &p->dims[i].num;
            if (a->hist && a->count) memset(a->hist, 0, ((size_t)s->dims[i].nbounds + 1) * sizeof *a->hist);
            a->count = 0;
            a->sum = a->sumsq = a->min = a->max = 0;
        }
    }
    p->events = 0;
    p->first_ts = p->last_ts = 0;
    if (p->sub)
        for (int t = 0; t < s->ntracked; t++) pd_profile_clear(&p->sub[t]);
    for (uint32_t i = 0; i < p->nrecent; i++) pd_free(p->recent[i].rec);
    p->nrecent = 0;
}

/* p->sub, allocated (empty sub-profiles) if it was not. */
static pd_profile *subs(pd_profile *p)
{
    const pd_schema *s = p->schema;
    pd_assert(s->ntracked > 0);
    if (!p->sub) {
        p->sub = pd_malloc((size_t)s->ntracked * sizeof *p->sub);
        for (int t = 0; t < s->ntracked; t++) pd_profile_init(&p->sub[t], s);
    }
    return p->sub;
}

/* Whether pd_profile_add and pd_profile_encode_event count attribute a of
 * dimension d: 1 as a categorical value, 2 as a number, 0 not at all. */
static int event_attr_counted(const pd_dim *d, const pd_attr *a)
{
    if (d->type == PD_DIM_CATEGORICAL)
        return a->kind == PD_ATTR_STR && a->len >= 1 && a->len <= PD_MAX_CAT_VALUE;
    return a->kind == PD_ATTR_NUM && isfinite(a->num) ? 2 : 0;
}

/* The event's counts without its type: the body of pd_profile_add, and
 * all of a sub-profile's add. */
static void add_body(pd_profile *p, const pd_event *ev)
{
    const pd_schema *s = p->schema;
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
    for (int i = 0; i < n; i++) {
        const pd_attr *a = &ev->attrs[i];
        const pd_dim *d = &s->dims[i];
        /* The parser guarantees 1..256 bytes of UTF-8; the length is
         * re-checked cheaply so the codec's limits always hold. */
        const int c = event_attr_counted(d, a);
        if (c == 1) pd_catset_add(&p->dims[i].cat, pd_dim_cap(s, i), a->s, a->len, ev->okey);
        else if (c == 2) num_add(&p->dims[i].num, d, a->num);
    }
}

/* ---- recent items ---- */

static uint8_t *w_cdouble(uint8_t *o, double v);

int pd_recent_cmp(const pd_recent *a, const pd_recent *b)
{
    if (a->ts != b->ts) return a->ts > b->ts ? -1 : 1;
    if (a->okey != b->okey) return a->okey > b->okey ? -1 : 1;
    uint32_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->rec, b->rec, m);
    if (c) return c;
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

/* Largest entry body. */
#define RECENT_REC_MAX (2 * PD_UVARINT_MAX + PD_MAX_TYPE + PD_MAX_CAT_VALUE + \
                        PD_MAX_RECENT_ATTRS * (1 + PD_UVARINT_MAX + PD_MAX_CAT_VALUE))

/* The entry body of ev (pd_recent) into o; returns its end. */
static uint8_t *recent_rec(const pd_schema *s, const pd_event *ev, uint8_t *o)
{
    o = pd_uvarint_write(o, (uint64_t)ev->type_len);
    memcpy(o, ev->type, ev->type_len);
    o += ev->type_len;
    uint32_t il = ev->item_id && ev->item_id_len <= PD_MAX_CAT_VALUE ? ev->item_id_len : 0;
    o = pd_uvarint_write(o, il);
    if (il) memcpy(o, ev->item_id, il);
    o += il;
    for (int j = 0; j < s->recent_nattrs; j++) {
        int di = s->recent_attrs[j];
        const int c = di < ev->nattrs ? event_attr_counted(&s->dims[di], &ev->attrs[di]) : 0;
        if (c == 1) {
            *o++ = 1;
            o = pd_uvarint_write(o, ev->attrs[di].len);
            memcpy(o, ev->attrs[di].s, ev->attrs[di].len);
            o += ev->attrs[di].len;
        } else if (c == 2) {
            *o++ = 2;
            o = w_cdouble(o, ev->attrs[di].num == 0 ? 0 : ev->attrs[di].num);
        } else {
            *o++ = 0;
        }
    }
    return o;
}

static void recent_reserve(pd_profile *p, uint32_t n)
{
    if (n <= p->recent_cap) return;
    uint32_t c = p->recent_cap ? p->recent_cap : 4;
    while (c < n) c *= 2;
    p->recent = pd_realloc(p->recent, (size_t)c * sizeof *p->recent);
    p->recent_cap = c;
}

static void recent_add(pd_profile *p, const pd_event *ev)
{
    const pd_schema *s = p->schema;
    const uint32_t k = (uint32_t)s->recent_max;
    uint8_t buf[RECENT_REC_MAX];
    pd_recent e = {.ts = ev->ts_ms, .okey = ev->okey, .rec = buf};
    e.len = (uint32_t)(recent_rec(s, ev, buf) - buf);
    if (p->nrecent == k && pd_recent_cmp(&e, &p->recent[k - 1]) >= 0) return; /* not among the K first */
    uint32_t pos = p->nrecent;
    while (pos > 0 && pd_recent_cmp(&e, &p->recent[pos - 1]) < 0) pos--;
    if (p->nrecent == k) { /* the last one goes */
        pd_free(p->recent[k - 1].rec);
        p->nrecent--;
    }
    recent_reserve(p, p->nrecent + 1);
    memmove(&p->recent[pos + 1], &p->recent[pos], (size_t)(p->nrecent - pos) * sizeof *p->recent);
    e.rec = pd_malloc(e.len ? e.len : 1);
    memcpy(e.rec, buf, e.len);
    p->recent[pos] = e;
    p->nrecent++;
}

/* dst's recent items := the K first of dst's and src's (dst != src). */
static void recent_merge(pd_profile *dst, const pd_profile *src)
{
    const uint32_t k = (uint32_t)dst->schema->recent_max;
    if (!src->nrecent) return;
    uint32_t n = dst->nrecent + src->nrecent < k ? dst->nrecent + src->nrecent : k;
    pd_recent *out = pd_malloc((size_t)n * sizeof *out);
    uint32_t i = 0, j = 0, m = 0;
    while (m < n) {
        if (j >= src->nrecent || (i < dst->nrecent && pd_recent_cmp(&dst->recent[i], &src->recent[j]) <= 0)) {
            out[m++] = dst->recent[i++]; /* moved */
        } else {
            pd_recent e = src->recent[j++];
            uint8_t *r = pd_malloc(e.len ? e.len : 1);
            memcpy(r, e.rec, e.len);
            e.rec = r;
            out[m++] = e;
        }
    }
    for (; i < dst->nrecent; i++) pd_free(dst->recent[i].rec);
    pd_free(dst->recent);
    dst->recent = out;
    dst->nrecent = dst->recent_cap = n;
}

void pd_profile_add(pd_profile *p, const pd_event *ev)
{
    const pd_schema *s = p->schema;
    pd_assert(ev->type_len >= 1 && ev->type_len <= PD_MAX_TYPE);
    pd_catset_add(&p->types, s->max_values, ev->type, (uint32_t)ev->type_len, ev->okey);
    add_body(p, ev);
    if (s->recent_max > 0) recent_add(p, ev);
    if (s->ntracked) {
        int t = pd_schema_tracked(s, ev->type, ev->type_len);
        if (t >= 0) add_body(&subs(p)[t], ev);
    }
}

/* dst += src (distinct), leaving out src's overflowed catsets when
 * exact_only; returns how many were left out. */
static int merge(pd_profile *dst, const pd_profile *src, int exact_only)
{
    const pd_schema *s = dst->schema;
    if (src->events == 0) return 0;
    if (dst->events == 0) {
        dst->first_ts = src->first_ts;
        dst->last_ts = src->last_ts;
    } else {
        if (src->first_ts < dst->first_ts) dst->first_ts = src->first_ts;
        if (src->last_ts > dst->last_ts) dst->last_ts = src->last_ts;
    }
    dst->events += src->events;
    int left = 0;
    if (exact_only && pd_catset_overflowed(&src->types)) left++;
    else pd_catset_merge(&dst->types, &src->types, s->max_values);
    for (int i = 0; i < s->ndims; i++) {
        if (s->dims[i].type != PD_DIM_CATEGORICAL)
            num_merge(&dst->dims[i].num, &src->dims[i].num, &s->dims[i]);
        else if (exact_only && pd_catset_overflowed(&src->dims[i].cat))
            left++;
        else
            pd_catset_merge(&dst->dims[i].cat, &src->dims[i].cat, pd_dim_cap(s, i));
    }
    if (src->sub)
        for (int t = 0; t < s->ntracked; t++)
            if (src->sub[t].events) left += merge(&subs(dst)[t], &src->sub[t], exact_only);
    if (s->recent_max > 0) recent_merge(dst, src);
    return left;
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
    merge(dst, src, 0);
}

int pd_profile_merge_exact(pd_profile *dst, const pd_profile *src)
{
    const pd_schema *s = dst->schema;
    pd_assert(dst != src && s && src->schema && s->fingerprint == src->schema->fingerprint &&
              s->ndims == src->schema->ndims && s->ntracked == src->schema->ntracked &&
              (s->recent_max == src->schema->recent_max || s->recent_max == 0));
    /* (a population profile keeps no recent items: src's are left out) */
    return merge(dst, src, 1);
}

/* The occurrences of ev in the categorical dimensions whose catset
 * overflowed in src, added to dst's. */
static void add_overflowed_dims(pd_profile *dst, const pd_profile *src, const pd_event *ev)
{
    const pd_schema *s = dst->schema;
    const int n = ev->nattrs < s->ndims ? ev->nattrs : s->ndims;
    for (int i = 0; i < n; i++)
        if (s->dims[i].type == PD_DIM_CATEGORICAL && pd_catset_overflowed(&src->dims[i].cat) &&
            event_attr_counted(&s->dims[i], &ev->attrs[i]) == 1)
            pd_catset_add(&dst->dims[i].cat, pd_dim_cap(s, i), ev->attrs[i].s, ev->attrs[i].len, ev->okey);
}

void pd_profile_add_overflowed(pd_profile *dst, const pd_profile *src, const pd_event *ev)
{
    const pd_schema *s = dst->schema;
    if (pd_catset_overflowed(&src->types))
        pd_catset_add(&dst->types, s->max_values, ev->type, (uint32_t)ev->type_len, ev->okey);
    add_overflowed_dims(dst, src, ev);
    if (s->ntracked && src->sub) {
        int t = pd_schema_tracked(s, ev->type, ev->type_len);
        if (t >= 0 && src->sub[t].events) add_overflowed_dims(&subs(dst)[t], &src->sub[t], ev);
    }
}

int pd_profile_equal(const pd_profile *a, const pd_profile *b)
{
    const pd_schema *s = a->schema;
    if (s->ndims != b->schema->ndims) return 0;
    if (a->events != b->events || a->first_ts != b->first_ts || a->last_ts != b->last_ts) return 0;
    if (!pd_catset_equal(&a->types, &b->types)) return 0;
    for (int i = 0; i < s->ndims; i++) {
        if (s->dims[i].type == PD_DIM_CATEGORICAL) {
            if (!pd_catset_equal(&a->dims[i].cat, &b->dims[i].cat)) return 0;
        } else if (!num_equal(&a->dims[i].num, &b->dims[i].num, &s->dims[i])) {
            return 0;
        }
    }
    for (int t = 0; t < s->ntracked; t++) {
        const pd_profile *x = pd_profile_sub(a, t), *y = pd_profile_sub(b, t);
        if (!x != !y || (x && !pd_profile_equal(x, y))) return 0;
    }
    if (a->nrecent != b->nrecent) return 0;
    for (uint32_t i = 0; i < a->nrecent; i++)
        if (pd_recent_cmp(&a->recent[i], &b->recent[i]) != 0) return 0;
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

static int dim_present(const pd_profile *p, int i)
{
    if (p->schema->dims[i].type == PD_DIM_CATEGORICAL)
        return p->dims[i].cat.total > 0;
    return p->dims[i].num.count > 0;
}

/* Upper bound of body_write's output. */
static size_t body_bound(const pd_profile *p, int with_types)
{
    const pd_schema *s = p->schema;
    size_t bound = 4 * PD_UVARINT_MAX + (with_types ? pd_catset_bound(&p->types) : 0);
    for (int i = 0; i < s->ndims; i++) {
        if (!dim_present(p, i)) continue;
        bound += PD_UVARINT_MAX;
        if (s->dims[i].type == PD_DIM_CATEGORICAL)
            bound += pd_catset_bound(&p->dims[i].cat);
        else
            bound += 2 * PD_UVARINT_MAX + 4 * (1 + 8) + (size_t)(s->dims[i].nbounds + 1) * 2 * PD_UVARINT_MAX;
    }
    return bound;
}

/* events | first_ts | last_ts - first_ts | [types catset] | dimensions:
 * a profile after its version and flags, and a sub-profile (no types). */
static uint8_t *body_write(uint8_t *o, const pd_profile *p, int with_types)
{
    const pd_schema *s = p->schema;
    uint64_t present_mask[(PD_MAX_DIMS + 63) / 64] = {0};
    int present = 0;
    for (int i = 0; i < s->ndims; i++) {
        if (!dim_present(p, i)) continue;
        present_mask[i / 64] |= UINT64_C(1) << (i % 64);
        present++;
    }
    o = pd_uvarint_write(o, p->events);
    o = pd_uvarint_write(o, pd_zigzag(p->first_ts));
    o = pd_uvarint_write(o, (uint64_t)p->last_ts - (uint64_t)p->first_ts);
    if (with_types) o = pd_catset_write(o, &p->types);
    o = pd_uvarint_write(o, (uint64_t)present);
    for (int i = 0; i < s->ndims; i++) {
        if (!(present_mask[i / 64] >> (i % 64) & 1)) continue;
        o = pd_uvarint_write(o, (uint64_t)i);
        if (s->dims[i].type == PD_DIM_CATEGORICAL) {
            o = pd_catset_write(o, &p->dims[i].cat);
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
    return o;
}

static uint8_t *w_u64le(uint8_t *o, uint64_t v)
{
    for (int i = 0; i < 8; i++) o[i] = (uint8_t)(v >> (8 * i));
    return o + 8;
}

/* The recent items section: n | per item, most recent first: time gap
 * (last_ts - ts for the first, else the previous item's ts - ts), okey
 * (8 bytes LE), body length, body. */
static uint8_t *recent_write(uint8_t *o, const pd_profile *p)
{
    o = pd_uvarint_write(o, p->nrecent);
    int64_t prev = p->last_ts;
    for (uint32_t i = 0; i < p->nrecent; i++) {
        const pd_recent *e = &p->recent[i];
        o = pd_uvarint_write(o, (uint64_t)prev - (uint64_t)e->ts);
        prev = e->ts;
        o = w_u64le(o, e->okey);
        o = pd_uvarint_write(o, e->len);
        memcpy(o, e->rec, e->len);
        o += e->len;
    }
    return o;
}

void pd_profile_encode(const pd_profile *p, pd_buf *out)
{
    const pd_schema *s = p->schema;
    int nsub = 0;
    size_t bound = 2 + body_bound(p, 1);
    for (int t = 0; t < s->ntracked; t++) {
        if (!pd_profile_sub(p, t)) continue;
        nsub++;
        bound += PD_UVARINT_MAX + body_bound(&p->sub[t], 0);
    }
    if (nsub) bound += PD_UVARINT_MAX;
    if (p->nrecent) {
        bound += PD_UVARINT_MAX;
        for (uint32_t i = 0; i < p->nrecent; i++) bound += 2 * PD_UVARINT_MAX + 8 + p->recent[i].len;
    }
    pd_buf_reserve(out, bound + 1);
    uint8_t *o = (uint8_t *)out->p + out->len, *const start = o;
    *o++ = PD_PROFILE_VERSION;
    *o++ = (nsub ? PD_PF_TRACKED : 0) | (p->nrecent ? PD_PF_RECENT : 0); /* flags */
    o = body_write(o, p, 1);
    if (nsub) {
        o = pd_uvarint_write(o, (uint64_t)nsub);
        for (int t = 0; t < s->ntracked; t++) {
            if (!pd_profile_sub(p, t)) continue;
            o = pd_uvarint_write(o, (uint64_t)t);
            o = body_write(o, &p->sub[t], 0);
        }
    }
    if (p->nrecent) o = recent_write(o, p);
    pd_assert((size_t)(o - start) <= bound);
    out->len += (size_t)(o - start);
    out->p[out->len] = '\0';
}

void pd_profile_encode_event(const pd_schema *s, const pd_event *ev, pd_buf *out)
{
    pd_assert(ev->type_len >= 1 && ev->type_len <= PD_MAX_TYPE);
    const int n = ev->nattrs < s->ndims ? ev->nattrs : s->ndims;
    int present = 0;
    size_t bound = 2 + 3 * PD_UVARINT_MAX + PD_CATSET1_BOUND(ev->type_len) + PD_UVARINT_MAX;
    for (int i = 0; i < n; i++) {
        const int c = event_attr_counted(&s->dims[i], &ev->attrs[i]);
        if (!c) continue;
        present++;
        bound += PD_UVARINT_MAX + (c == 1 ? PD_CATSET1_BOUND(ev->attrs[i].len) : 1 + 1 + 8);
    }
    const int tracked = s->ntracked ? pd_schema_tracked(s, ev->type, ev->type_len) : -1;
    if (tracked >= 0) bound = 2 * bound + 2 * PD_UVARINT_MAX; /* the sub-profile repeats the dimensions */
    if (s->recent_max > 0) bound += 4 * PD_UVARINT_MAX + 8 + RECENT_REC_MAX;
    pd_buf_reserve(out, bound + 1);
    uint8_t *o = (uint8_t *)out->p + out->len, *const start = o;
    *o++ = PD_PROFILE_VERSION;
    *o++ = (tracked >= 0 ? PD_PF_TRACKED : 0) | (s->recent_max > 0 ? PD_PF_RECENT : 0); /* flags */
    *o++ = 1; /* events */
    o = pd_uvarint_write(o, pd_zigzag(ev->ts_ms));
    *o++ = 0; /* last_ts - first_ts */
    o = pd_catset_write1(o, ev->type, (uint32_t)ev->type_len, ev->okey);
    uint8_t *const dims_at = o;
    o = pd_uvarint_write(o, (uint64_t)present);
    for (int i = 0; i < n && present; i++) {
        const pd_attr *a = &ev->attrs[i];
        const int c = event_attr_counted(&s->dims[i], a);
        if (!c) continue;
        o = pd_uvarint_write(o, (uint64_t)i);
        if (c == 1) {
            o = pd_catset_write1(o, a->s, a->len, ev->okey);
        } else {
            *o++ = 1; /* count: a single (num_single holds for one num_add) */
            o = w_cdouble(o, a->num == 0 ? 0 : a->num);
        }
    }
    if (tracked >= 0) { /* one sub-profile: the event's body again, without its type */
        const size_t dlen = (size_t)(o - dims_at);
        *o++ = 1; /* sub-profiles present */
        o = pd_uvarint_write(o, (uint64_t)tracked);
        *o++ = 1; /* events */
        o = pd_uvarint_write(o, pd_zigzag(ev->ts_ms));
        *o++ = 0; /* last_ts - first_ts */
        memmove(o, dims_at, dlen);
        o += dlen;
    }
    if (s->recent_max > 0) { /* one item, the event itself */
        uint8_t buf[RECENT_REC_MAX];
        const uint32_t rl = (uint32_t)(recent_rec(s, ev, buf) - buf);
        *o++ = 1; /* n */
        *o++ = 0; /* last_ts - ts */
        o = w_u64le(o, ev->okey);
        o = pd_uvarint_write(o, rl);
        memcpy(o, buf, rl);
        o += rl;
    }
    pd_assert((size_t)(o - start) <= bound);
    out->len += (size_t)(o - start);
    out->p[out->len] = '\0';
}

/* ---- decoding ---- */

static int rd_f64(pd_rd *r, double *v, const char *what)
{
    if (r->n - r->off < 8) return pd_rd_fail(r, what);
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)r->p[r->off + (size_t)i] << (8 * i);
    memcpy(v, &u, sizeof *v);
    r->off += 8;
    return PD_OK;
}

static int rd_cdouble(pd_rd *r, double *v, const char *what)
{
    uint64_t x;
    int rc = pd_rd_uv(r, &x, what);
    if (rc) return rc;
    if (x == 1) {
        if ((rc = rd_f64(r, v, what))) return rc;
        if (cdouble_integral(*v)) return pd_rd_fail(r, "non-canonical double (raw form of an integer)");
        return PD_OK;
    }
    if (x & 1) return pd_rd_fail(r, "bad double tag");
    x >>= 1;
    if (x >= (UINT64_C(1) << 54)) return pd_rd_fail(r, "integer double out of range");
    *v = (double)pd_unzigzag(x);
    return PD_OK;
}

static int rd_numagg(pd_rd *r, pd_numagg *a, const pd_dim *d, uint64_t events)
{
    int rc;
    uint64_t sum = 0;
    const uint64_t nbk = (uint64_t)d->nbounds + 1;
    if ((rc = pd_rd_uv(r, &a->count, "truncated numeric count"))) return rc;
    if (a->count == 0) return pd_rd_fail(r, "present numeric dimension with zero count");
    if (a->count > events) return pd_rd_fail(r, "numeric count exceeds events");
    if (!a->hist) a->hist = pd_calloc((size_t)nbk, sizeof *a->hist);
    if (a->count == 1) { /* a single: everything follows from v */
        double v;
        if ((rc = rd_cdouble(r, &v, "truncated value"))) return rc;
        if (!isfinite(v) || (v == 0 && signbit(v))) return pd_rd_fail(r, "bad single value"); /* add stores -0 as +0 */
        a->sum = a->min = a->max = v;
        a->sumsq = v * v;
        memset(a->hist, 0, (size_t)nbk * sizeof *a->hist);
        a->hist[num_bucket(d, v)] = 1;
        return PD_OK;
    }
    if ((rc = rd_cdouble(r, &a->sum, "truncated sum")) || (rc = rd_cdouble(r, &a->sumsq, "truncated sumsq")) ||
        (rc = rd_cdouble(r, &a->min, "truncated min")) || (rc = rd_cdouble(r, &a->max, "truncated max")))
        return rc;
    if (isnan(a->sumsq) || a->sumsq < 0) return pd_rd_fail(r, "bad sumsq");
    if (!isfinite(a->min) || !isfinite(a->max) || a->min > a->max) return pd_rd_fail(r, "bad min/max");
    int first = -1, last = -1;
    uint64_t k;
    if ((rc = pd_rd_uv(r, &k, "truncated bucket count"))) return rc;
    if (k < 1 || k > nbk) return pd_rd_fail(r, "non-empty bucket count out of range");
    memset(a->hist, 0, (size_t)nbk * sizeof *a->hist);
    for (uint64_t j = 0; j < k; j++) {
        uint64_t gap, c;
        if ((rc = pd_rd_uv(r, &gap, "truncated bucket gap")) || (rc = pd_rd_uv(r, &c, "truncated bucket"))) return rc;
        if (gap >= nbk || (uint64_t)(last + 1) + gap >= nbk) return pd_rd_fail(r, "bucket index out of range");
        if (c == 0) return pd_rd_fail(r, "empty bucket listed");
        last += 1 + (int)gap;
        if (first < 0) first = last;
        a->hist[last] = c;
        if (sum + c < sum) return pd_rd_fail(r, "bucket count overflow");
        sum += c;
    }
    if (sum != a->count) return pd_rd_fail(r, "bucket counts do not sum to count");
    if (num_bucket(d, a->min) != first || num_bucket(d, a->max) != last)
        return pd_rd_fail(r, "min/max inconsistent with histogram");
    return PD_OK;
}

/* The body (body_write) into p, cleared: with_types for a profile, not
 * for a sub-profile. */
static int decode_body(pd_rd *r, pd_profile *p, int with_types)
{
    const pd_schema *s = p->schema;
    int rc;
    uint64_t zz, delta, ndp;
    int64_t prev = -1;
    if ((rc = pd_rd_uv(r, &p->events, "truncated events"))) return rc;
    if ((rc = pd_rd_uv(r, &zz, "truncated first_ts"))) return rc;
    if ((rc = pd_rd_uv(r, &delta, "truncated last_ts"))) return rc;
    p->first_ts = pd_unzigzag(zz);
    {
        /* last_ts = first_ts + delta must fit in int64. */
        uint64_t room = p->first_ts >= 0 ? (uint64_t)(INT64_MAX - p->first_ts)
                                         : (uint64_t)INT64_MAX + (uint64_t)(-(p->first_ts + 1)) + 1;
        if (delta > room) return pd_rd_fail(r, "last_ts out of range");
        p->last_ts = (int64_t)((uint64_t)p->first_ts + delta);
    }
    if (p->events == 0 && (p->first_ts != 0 || p->last_ts != 0))
        return pd_rd_fail(r, "timestamps set on an empty profile");
    if (with_types) {
        if ((rc = pd_catset_read(r, &p->types, s->max_values, PD_MAX_TYPE))) return rc;
        if (pd_catset_total(&p->types) != p->events)
            return pd_rd_fail(r, "event type counts do not sum to events");
    }
    if ((rc = pd_rd_uv(r, &ndp, "truncated dimension count"))) return rc;
    if (ndp > (uint64_t)s->ndims) return pd_rd_fail(r, "more dimensions than the schema");
    for (uint64_t k = 0; k < ndp; k++) {
        uint64_t idx;
        if ((rc = pd_rd_uv(r, &idx, "truncated dimension index"))) return rc;
        if (idx >= (uint64_t)s->ndims || (int64_t)idx <= prev)
            return pd_rd_fail(r, "dimension index out of range or not increasing");
        prev = (int64_t)idx;
        const pd_dim *d = &s->dims[idx];
        if (d->type == PD_DIM_CATEGORICAL) {
            pd_catset *c = &p->dims[idx].cat;
            if ((rc = pd_catset_read(r, c, pd_dim_cap(s, (int)idx), PD_MAX_CAT_VALUE))) return rc;
            if (pd_catset_total(c) == 0) return pd_rd_fail(r, "present categorical dimension is empty");
            if (pd_catset_total(c) > p->events) return pd_rd_fail(r, "categorical total exceeds events");
        } else if ((rc = rd_numagg(r, &p->dims[idx].num, d, p->events))) {
            return rc;
        }
    }
    return PD_OK;
}

/* The sub-profiles section (flags & PD_PF_TRACKED): count, then per
 * present sub-profile by increasing index: index, body without types.
 * Each must agree with the all-types profile: within its time range, at
 * most its events, and exactly its count of the type while the type
 * counts are exact (so a type counted there has its sub-profile). */
static int decode_subs(pd_rd *r, pd_profile *p, int present)
{
    const pd_schema *s = p->schema;
    int rc;
    uint64_t nsub = 0, sum = 0;
    int64_t prev = -1;
    if (present) {
        if ((rc = pd_rd_uv(r, &nsub, "truncated sub-profile count"))) return rc;
        if (nsub < 1 || nsub > (uint64_t)s->ntracked) return pd_rd_fail(r, "sub-profile count out of range");
    }
    for (uint64_t k = 0; k < nsub; k++) {
        uint64_t t;
        if ((rc = pd_rd_uv(r, &t, "truncated sub-profile index"))) return rc;
        if (t >= (uint64_t)s->ntracked || (int64_t)t <= prev)
            return pd_rd_fail(r, "sub-profile index out of range or not increasing");
        prev = (int64_t)t;
        pd_profile *q = &subs(p)[t];
        if ((rc = decode_body(r, q, 0))) return rc;
        if (q->events == 0 || q->events > p->events - sum) return pd_rd_fail(r, "sub-profile events out of range");
        sum += q->events;
        if (q->first_ts < p->first_ts || q->last_ts > p->last_ts)
            return pd_rd_fail(r, "sub-profile time range outside the profile's");
    }
    if (!pd_catset_overflowed(&p->types))
        for (int t = 0; t < s->ntracked; t++) {
            const pd_profile *q = pd_profile_sub(p, t);
            if (pd_catset_get(&p->types, s->tracked[t], s->tracked_len[t]) != (q ? q->events : 0))
                return pd_rd_fail(r, "sub-profile events differ from the type's count");
        }
    return PD_OK;
}

/* A string of lo..hi bytes of UTF-8 at r (uvarint length, bytes). */
static int rd_str(pd_rd *r, uint64_t lo, uint64_t hi, const char *what)
{
    uint64_t n;
    int rc = pd_rd_uv(r, &n, what);
    if (rc) return rc;
    if (n < lo || n > hi || n > r->n - r->off) return pd_rd_fail(r, what);
    if (!pd_utf8_valid((const char *)r->p + r->off, (size_t)n)) return pd_rd_fail(r, what);
    r->off += (size_t)n;
    return PD_OK;
}

/* Validates a recent item's body against the schema. */
static int rd_recent_rec(pd_rd *r, const pd_schema *s)
{
    int rc;
    if ((rc = rd_str(r, 1, PD_MAX_TYPE, "bad recent item type"))) return rc;
    if ((rc = rd_str(r, 0, PD_MAX_CAT_VALUE, "bad recent item id"))) return rc;
    for (int j = 0; j < s->recent_nattrs; j++) {
        if (r->off >= r->n) return pd_rd_fail(r, "truncated recent item attribute");
        uint8_t tag = r->p[r->off++];
        const pd_dim *d = &s->dims[s->recent_attrs[j]];
        if (tag == 1 && d->type == PD_DIM_CATEGORICAL) {
            if ((rc = rd_str(r, 1, PD_MAX_CAT_VALUE, "bad recent item attribute"))) return rc;
        } else if (tag == 2 && d->type == PD_DIM_NUMERIC) {
            double v;
            if ((rc = rd_cdouble(r, &v, "truncated recent item attribute"))) return rc;
            if (!isfinite(v) || (v == 0 && signbit(v))) return pd_rd_fail(r, "bad recent item number");
        } else if (tag != 0) {
            return pd_rd_fail(r, "bad recent item attribute tag");
        }
    }
    return PD_OK;
}

/* The recent items section (flags & PD_PF_RECENT): exactly min(K,
 * events) items, in pd_recent_cmp order, the first at last_ts, all within
 * the day's time range. */
static int decode_recent(pd_rd *r, pd_profile *p)
{
    const pd_schema *s = p->schema;
    int rc;
    uint64_t n;
    if ((rc = pd_rd_uv(r, &n, "truncated recent item count"))) return rc;
    uint64_t want = p->events < (uint64_t)s->recent_max ? p->events : (uint64_t)s->recent_max;
    if (n != want) return pd_rd_fail(r, "recent item count is not min(max, events)");
    recent_reserve(p, (uint32_t)n);
    int64_t prev = p->last_ts;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t gap, len;
        if ((rc = pd_rd_uv(r, &gap, "truncated recent item time"))) return rc;
        if (gap > (uint64_t)prev - (uint64_t)p->first_ts || (i == 0 && gap != 0))
            return pd_rd_fail(r, "recent item time out of range");
        pd_recent e = {.ts = (int64_t)((uint64_t)prev - gap)};
        if (r->n - r->off < 8) return pd_rd_fail(r, "truncated recent item key");
        for (int b = 0; b < 8; b++) e.okey |= (uint64_t)r->p[r->off + (size_t)b] << (8 * b);
        r->off += 8;
        if ((rc = pd_rd_uv(r, &len, "truncated recent item length"))) return rc;
        if (len > RECENT_REC_MAX || len > r->n - r->off) return pd_rd_fail(r, "recent item length out of range");
        pd_rd sub = {.p = r->p, .n = r->off + (size_t)len, .off = r->off, .err = r->err, .errlen = r->errlen};
        if ((rc = rd_recent_rec(&sub, s))) return rc;
        if (sub.off != sub.n) return pd_rd_fail(r, "trailing bytes in a recent item");
        e.len = (uint32_t)len;
        e.rec = pd_malloc(len ? (size_t)len : 1);
        memcpy(e.rec, r->p + r->off, (size_t)len);
        r->off += (size_t)len;
        p->recent[p->nrecent++] = e;
        if (i > 0 && pd_recent_cmp(&p->recent[i - 1], &p->recent[i]) > 0)
            return pd_rd_fail(r, "recent items out of order");
        prev = e.ts;
    }
    return PD_OK;
}

int pd_profile_decode(pd_profile *p, const void *data, size_t len, char *err, size_t errlen)
{
    const pd_schema *s = p->schema;
    pd_rd r = {.p = data, .n = len, .off = 0, .err = err, .errlen = errlen};
    int rc;
    uint64_t flags;
    pd_profile_clear(p);
    if (len < 1) {
        rc = pd_rd_fail(&r, "empty input");
        goto out;
    }
    if (r.p[0] != PD_PROFILE_VERSION) {
        rc = pd_seterr(err, errlen, PD_ECORRUPT,
                       "profile: unsupported encoding version %u (this build reads version %d; "
                       "stores written before it must be rebuilt)",
                       r.p[0], PD_PROFILE_VERSION);
        goto out;
    }
    r.off = 1;
    if ((rc = pd_rd_uv(&r, &flags, "truncated flags"))) goto out;
    if ((flags & ~(uint64_t)(PD_PF_TRACKED | PD_PF_RECENT)) || ((flags & PD_PF_TRACKED) && !s->ntracked) ||
        ((flags & PD_PF_RECENT) && !s->recent_max)) {
        rc = pd_rd_fail(&r, "unknown flags");
        goto out;
    }
    if ((rc = decode_body(&r, p, 1))) goto out;
    if (s->ntracked && (rc = decode_subs(&r, p, (flags & PD_PF_TRACKED) != 0))) goto out;
    if (s->recent_max && ((flags & PD_PF_RECENT) != 0) != (p->events > 0)) {
        rc = pd_rd_fail(&r, p->events ? "recent items missing" : "recent items in an empty profile");
        goto out;
    }
    if ((flags & PD_PF_RECENT) && (rc = decode_recent(&r, p))) goto out;
    if (r.off != r.n) {
        rc = pd_rd_fail(&r, "trailing bytes");
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

typedef struct {
    const pd_catval *v;
    uint64_t count;
} json_ent;

static int cmp_bytes(const void *x, const void *y)
{
    const pd_catval *a = ((const json_ent *)x)->v, *b = ((const json_ent *)y)->v;
    uint32_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(pd_catval_str(a), pd_catval_str(b), m);
    if (c) return c;
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

/* {"value":count,...,"__other__":other} sorted by value bytes; the counts
 * of an overflowed catset are its sketch's estimates. */
static void json_counts(pd_buf *b, const pd_catset *c)
{
    pd_buf_putc(b, '{');
    json_ent *idx = NULL;
    uint64_t kept = 0;
    if (c->n) {
        idx = pd_malloc((size_t)c->n * sizeof *idx);
        for (uint32_t i = 0; i < c->n; i++) {
            idx[i] = (json_ent){&c->vals[i], pd_catset_count(c, i)};
            kept += idx[i].count;
        }
        qsort(idx, c->n, sizeof *idx, cmp_bytes);
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (i) pd_buf_putc(b, ',');
        pd_buf_json_str(b, pd_catval_str(idx[i].v), idx[i].v->len);
        pd_buf_printf(b, ":%llu", (unsigned long long)idx[i].count);
    }
    uint64_t other = pd_catset_overflowed(c) && c->total > kept ? c->total - kept : 0;
    if (other) {
        if (c->n) pd_buf_putc(b, ',');
        pd_buf_printf(b, "\"" PD_OTHER "\":%llu", (unsigned long long)other);
    }
    pd_buf_putc(b, '}');
    pd_free(idx);
}

static void json_dims(const pd_profile *p, pd_buf *out);

/* A varint inside a validated body. */
static const uint8_t *view_uv(const uint8_t *q, uint64_t *v)
{
    *v = 0;
    for (int sh = 0;; sh += 7) {
        uint8_t b = *q++;
        *v |= (uint64_t)(b & 0x7f) << sh;
        if (!(b & 0x80)) return q;
    }
}

void pd_recent_view_of(const pd_schema *s, const pd_recent *r, pd_recent_view *v)
{
    const uint8_t *q = r->rec;
    uint64_t n;
    memset(v, 0, sizeof *v);
    q = view_uv(q, &n);
    v->type = (const char *)q;
    v->type_len = (uint32_t)n;
    q += n;
    q = view_uv(q, &n);
    v->item_id = n ? (const char *)q : NULL;
    v->item_id_len = (uint32_t)n;
    q += n;
    for (int j = 0; j < s->recent_nattrs; j++) {
        v->attrs[j].kind = *q++;
        if (v->attrs[j].kind == 1) {
            q = view_uv(q, &n);
            v->attrs[j].s = (const char *)q;
            v->attrs[j].len = (uint32_t)n;
            q += n;
        } else if (v->attrs[j].kind == 2) {
            pd_rd rd = {.p = q, .n = (size_t)(r->rec + r->len - q), .off = 0};
            int rc = rd_cdouble(&rd, &v->attrs[j].num, "");
            pd_assert(rc == PD_OK);
            q += rd.off;
        }
    }
}

/* ,"recent":[..] of p (dump shape, see profile.h). */
static void json_recent(const pd_profile *p, pd_buf *out)
{
    const pd_schema *s = p->schema;
    PD_BUF_LIT(out, ",\"recent\":[");
    for (uint32_t i = 0; i < p->nrecent; i++) {
        pd_recent_view v;
        pd_recent_view_of(s, &p->recent[i], &v);
        if (i) pd_buf_putc(out, ',');
        PD_BUF_LIT(out, "{\"ts\":");
        json_ts(out, p->recent[i].ts);
        PD_BUF_LIT(out, ",\"type\":");
        pd_buf_json_str(out, v.type, v.type_len);
        PD_BUF_LIT(out, ",\"item_id\":");
        if (v.item_id) pd_buf_json_str(out, v.item_id, v.item_id_len);
        else PD_BUF_LIT(out, "null");
        PD_BUF_LIT(out, ",\"attributes\":{");
        int first = 1;
        for (int j = 0; j < s->recent_nattrs; j++) {
            if (!v.attrs[j].kind) continue;
            if (!first) pd_buf_putc(out, ',');
            first = 0;
            const char *nm = s->dims[s->recent_attrs[j]].name;
            pd_buf_json_str(out, nm, strlen(nm));
            pd_buf_putc(out, ':');
            if (v.attrs[j].kind == 1) pd_buf_json_str(out, v.attrs[j].s, v.attrs[j].len);
            else json_num(out, v.attrs[j].num);
        }
        PD_BUF_LIT(out, "}}");
    }
    pd_buf_putc(out, ']');
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
    pd_buf_printf(out, ",\"event_types_approximate\":%s", pd_catset_overflowed(&p->types) ? "true" : "false");
    json_dims(p, out);
    int nsub = 0;
    for (int t = 0; t < s->ntracked; t++) {
        const pd_profile *q = pd_profile_sub(p, t);
        if (!q) continue;
        if (nsub++) pd_buf_putc(out, ',');
        else PD_BUF_LIT(out, ",\"tracked\":{");
        pd_buf_json_str(out, s->tracked[t], s->tracked_len[t]);
        pd_buf_printf(out, ":{\"events\":%llu,\"first_seen\":", (unsigned long long)q->events);
        json_ts(out, q->first_ts);
        PD_BUF_LIT(out, ",\"last_seen\":");
        json_ts(out, q->last_ts);
        json_dims(q, out);
        pd_buf_putc(out, '}');
    }
    if (nsub) pd_buf_putc(out, '}');
    if (p->nrecent) json_recent(p, out);
    pd_buf_putc(out, '}');
}

/* ,"dimensions":{..} */
static void json_dims(const pd_profile *p, pd_buf *out)
{
    const pd_schema *s = p->schema;
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
            pd_buf_printf(out, ":{\"type\":\"categorical\",\"total\":%llu,\"approximate\":%s,\"counts\":",
                          (unsigned long long)pd_catset_total(c), pd_catset_overflowed(c) ? "true" : "false");
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
    pd_buf_putc(out, '}');
}

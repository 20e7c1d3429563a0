/*
 * catset.c -- capped categorical counts (see catset.h for the model, and
 * docs/data-model.md, "The categorical cap", for why the result depends on
 * the multiset of occurrences alone).
 *
 * Invariants kept by every function here:
 *   - vals sorted by strictly increasing (hash, bytes): lookups are binary
 *     searches, encoding is canonical, equal catsets encode identically;
 *   - exact (sk == NULL): n <= cap, every count >= 1, total = sum of the
 *     counts;
 *   - overflowed (sk != NULL): n == cap, every count field 0 (counts come
 *     from the sketch), each sketch row sums to total, worst indexes the
 *     kept value last in the selection order;
 *   - every level is the largest level of the value's occurrences in the
 *     events the catset summarises (for a kept value; see the proof).
 * The cap of a catset never changes (it comes from the schema, and the
 * store refuses another schema), so the sketch width is a function of it.
 */
#include "catset.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- values ---- */

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

static int val_cmp(const pd_catval *a, const pd_catval *b)
{
    return rank_cmp(a->hash, pd_catval_str(a), a->len, b->hash, pd_catval_str(b), b->len);
}

/* 1 when (level la, hash ha, bytes a) comes before b in the selection
 * order: higher level first, then the (hash, bytes) rank. */
static int sel_before(uint8_t la, uint64_t ha, const char *a, uint32_t lena, const pd_catval *b)
{
    if (la != b->level) return la > b->level;
    return rank_cmp(ha, a, lena, b->hash, pd_catval_str(b), b->len) < 0;
}

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

/* Index of the kept value last in the selection order. */
static uint32_t find_worst(const pd_catset *c)
{
    uint32_t w = 0;
    for (uint32_t i = 1; i < c->n; i++) {
        const pd_catval *x = &c->vals[i];
        if (sel_before(c->vals[w].level, c->vals[w].hash, pd_catval_str(&c->vals[w]), c->vals[w].len, x)) w = i;
    }
    return w;
}

/* ---- the sketch ---- */

static void sk_add(pd_catset *c, const char *v, uint32_t len, uint64_t count)
{
    uint32_t cell[PD_SKETCH_ROWS];
    pd_sketch_cells(v, len, c->skw, cell);
    for (int r = 0; r < PD_SKETCH_ROWS; r++) c->sk[cell[r]] += count;
}

/* Turns exact c into an overflowed catset: a sketch of its exact counts.
 * The caller then brings n down to max. */
static void sk_start(pd_catset *c, uint32_t max)
{
    pd_assert(!c->sk);
    c->skw = pd_sketch_width(max);
    c->sk = pd_calloc((size_t)PD_SKETCH_ROWS * c->skw, sizeof *c->sk);
    for (uint32_t i = 0; i < c->n; i++) {
        sk_add(c, pd_catval_str(&c->vals[i]), c->vals[i].len, c->vals[i].count);
        c->vals[i].count = 0;
    }
}

/* ---- basics ---- */

void pd_catset_free(pd_catset *c)
{
    for (uint32_t i = 0; i < c->n; i++) catval_free(&c->vals[i]);
    pd_free(c->vals);
    pd_free(c->sk);
    memset(c, 0, sizeof *c);
}

void pd_catset_clear(pd_catset *c)
{
    for (uint32_t i = 0; i < c->n; i++) catval_free(&c->vals[i]);
    c->n = 0;
    c->total = 0;
    pd_free(c->sk);
    c->sk = NULL;
    c->skw = 0;
    c->worst = 0;
}

size_t pd_catset_mem_bytes(const pd_catset *c)
{
    size_t n = (size_t)c->cap * sizeof *c->vals;
    for (uint32_t i = 0; i < c->n; i++)
        if (c->vals[i].len > PD_CATVAL_INLINE) n += (size_t)c->vals[i].len + 1;
    if (c->sk) n += (size_t)PD_SKETCH_ROWS * c->skw * sizeof *c->sk;
    return n;
}

uint64_t pd_catset_count(const pd_catset *c, uint32_t i)
{
    pd_assert(i < c->n);
    if (!c->sk) return c->vals[i].count;
    return pd_sketch_estimate(c->sk, c->skw, pd_catval_str(&c->vals[i]), c->vals[i].len);
}

uint64_t pd_catset_get(const pd_catset *c, const char *v, size_t len)
{
    if (len > UINT32_MAX) return 0;
    int found;
    uint32_t pos = catset_find(c, XXH3_64bits(v, len), v, (uint32_t)len, &found);
    return found ? pd_catset_count(c, pos) : 0;
}

uint64_t pd_catset_total(const pd_catset *c)
{
    return c->total;
}

uint64_t pd_catset_other(const pd_catset *c)
{
    if (!c->sk) return 0;
    uint64_t kept = 0;
    for (uint32_t i = 0; i < c->n; i++) kept += pd_catset_count(c, i);
    return c->total > kept ? c->total - kept : 0;
}

/* ---- adding ---- */

static void insert_at(pd_catset *c, uint32_t pos, const char *v, uint32_t len, uint64_t h, uint64_t count,
                      uint8_t level, uint32_t max)
{
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
    x->level = level;
    c->n++;
}

static void remove_at(pd_catset *c, uint32_t pos)
{
    catval_free(&c->vals[pos]);
    memmove(&c->vals[pos], &c->vals[pos + 1], (size_t)(c->n - pos - 1) * sizeof *c->vals);
    c->n--;
}

void pd_catset_add(pd_catset *c, uint32_t max, const char *v, uint32_t len, uint64_t okey)
{
    pd_assert(max >= 1);
    const uint64_t h = XXH3_64bits(v, len);
    const uint8_t lvl = pd_occ_level(okey, v, len);
    c->total++;
    if (c->sk) sk_add(c, v, len, 1);
    int found;
    uint32_t pos = catset_find(c, h, v, len, &found);
    if (found) {
        pd_catval *x = &c->vals[pos];
        if (!c->sk) x->count++;
        if (lvl > x->level) {
            x->level = lvl;
            if (c->sk && pos == c->worst) c->worst = find_worst(c);
        }
        return;
    }
    if (!c->sk && c->n < max) {
        insert_at(c, pos, v, len, h, 1, lvl, max);
        return;
    }
    if (!c->sk) { /* the (max+1)-th distinct value: overflow */
        sk_start(c, max);
        sk_add(c, v, len, 1);
        c->worst = find_worst(c);
    }
    /* Overflowed and v is not kept: v replaces the worst kept value iff it
     * comes before it in the selection order. */
    if (!sel_before(lvl, h, v, len, &c->vals[c->worst])) return;
    remove_at(c, c->worst);
    pos = catset_find(c, h, v, len, &found);
    insert_at(c, pos, v, len, h, 0, lvl, max);
    c->worst = find_worst(c);
}

/* ---- merging ---- */

typedef struct {
    const pd_catval *v;
    uint32_t i;
} selent;

static int sel_cmp(const void *x, const void *y)
{
    const pd_catval *a = ((const selent *)x)->v, *b = ((const selent *)y)->v;
    if (a->level != b->level) return a->level > b->level ? -1 : 1;
    return val_cmp(a, b);
}

/* Keeps the max values of nv[0..k) (sorted by (hash, bytes)) first in the
 * selection order, as c's values; frees the others' bytes. nv has alloc
 * slots and becomes c's array; c is overflowed and its old values were
 * moved into nv. */
static void select_into(pd_catset *c, pd_catval *nv, uint32_t k, uint32_t alloc, uint32_t max)
{
    if (k > max) {
        selent *se = pd_malloc((size_t)k * sizeof *se);
        for (uint32_t i = 0; i < k; i++) se[i] = (selent){&nv[i], i};
        qsort(se, k, sizeof *se, sel_cmp);
        uint8_t *keep = pd_calloc(k, 1);
        for (uint32_t i = 0; i < max; i++) keep[se[i].i] = 1;
        uint32_t j = 0;
        for (uint32_t i = 0; i < k; i++) {
            if (keep[i]) nv[j++] = nv[i];
            else catval_free(&nv[i]);
        }
        pd_free(keep);
        pd_free(se);
        k = j;
    }
    for (uint32_t i = 0; i < k; i++) nv[i].count = 0;
    pd_free(c->vals);
    c->vals = nv;
    c->n = k;
    c->cap = alloc;
    c->worst = find_worst(c);
}

void pd_catset_merge(pd_catset *d, const pd_catset *s, uint32_t max)
{
    pd_assert(d != s && max >= 1);
    if (s->total == 0) return;
    d->total += s->total;
    const int over = d->sk || s->sk;
    if (over) { /* the sketch of the union: sketches add */
        if (!d->sk) sk_start(d, max);
        if (s->sk) {
            pd_assert(s->skw == d->skw);
            for (size_t i = 0; i < (size_t)PD_SKETCH_ROWS * d->skw; i++) d->sk[i] += s->sk[i];
        } else {
            for (uint32_t i = 0; i < s->n; i++) sk_add(d, pd_catval_str(&s->vals[i]), s->vals[i].len, s->vals[i].count);
        }
    }
    /* The union of the kept values, by one (hash, bytes)-ordered walk:
     * counts add (exact), levels take the larger. */
    uint32_t total = d->n + s->n;
    pd_catval *nv = total ? pd_malloc((size_t)total * sizeof *nv) : NULL;
    uint32_t i = 0, j = 0, k = 0;
    while (i < d->n || j < s->n) {
        int r;
        if (j >= s->n) r = -1;
        else if (i >= d->n) r = 1;
        else r = val_cmp(&d->vals[i], &s->vals[j]);
        if (r <= 0) {
            pd_catval x = d->vals[i++];
            if (r == 0) {
                const pd_catval *b = &s->vals[j++];
                x.count += b->count;
                if (b->level > x.level) x.level = b->level;
            }
            nv[k++] = x;
        } else {
            const pd_catval *b = &s->vals[j++];
            nv[k] = *b;
            catval_set(&nv[k], pd_catval_str(b), b->len);
            k++;
        }
    }
    d->n = 0; /* the values moved into nv */
    if (!over && k <= max) {
        pd_free(d->vals);
        d->vals = nv;
        d->n = k;
        d->cap = total;
        return;
    }
    if (!over) { /* exact parts, more than max values together: overflow */
        d->skw = pd_sketch_width(max);
        d->sk = pd_calloc((size_t)PD_SKETCH_ROWS * d->skw, sizeof *d->sk);
        for (uint32_t x = 0; x < k; x++) sk_add(d, pd_catval_str(&nv[x]), nv[x].len, nv[x].count);
    }
    select_into(d, nv, k, total, max);
}

int pd_catset_equal(const pd_catset *a, const pd_catset *b)
{
    if (a->n != b->n || a->total != b->total || !a->sk != !b->sk) return 0;
    if (a->sk && (a->skw != b->skw ||
                  memcmp(a->sk, b->sk, (size_t)PD_SKETCH_ROWS * a->skw * sizeof *a->sk) != 0))
        return 0;
    for (uint32_t i = 0; i < a->n; i++) {
        const pd_catval *x = &a->vals[i], *y = &b->vals[i];
        if (x->hash != y->hash || x->len != y->len || x->count != y->count || x->level != y->level ||
            memcmp(pd_catval_str(x), pd_catval_str(y), x->len) != 0)
            return 0;
    }
    return 1;
}

/* ---- codec ---- */

int pd_rd_fail(pd_rd *r, const char *what)
{
    return pd_seterr(r->err, r->errlen, PD_ECORRUPT, "profile: corrupt at byte %zu: %s", r->off, what);
}

int pd_rd_uv(pd_rd *r, uint64_t *v, const char *what)
{
    size_t k = pd_get_uvarint(r->p + r->off, r->n - r->off, v);
    if (!k) return pd_rd_fail(r, what);
    if (k > 1 && r->p[r->off + k - 1] == 0) return pd_rd_fail(r, "non-minimal varint");
    r->off += k;
    return PD_OK;
}

static size_t sk_nonzero(const pd_catset *c)
{
    size_t k = 0;
    for (size_t i = 0; i < (size_t)PD_SKETCH_ROWS * c->skw; i++) k += c->sk[i] != 0;
    return k;
}

size_t pd_catset_bound(const pd_catset *c)
{
    size_t n = 2 * PD_UVARINT_MAX;
    for (uint32_t i = 0; i < c->n; i++) n += 2 * PD_UVARINT_MAX + 1 + c->vals[i].len;
    if (c->sk) n += PD_UVARINT_MAX + sk_nonzero(c) * 2 * PD_UVARINT_MAX;
    return n;
}

uint8_t *pd_catset_write(uint8_t *o, const pd_catset *c)
{
    *o++ = c->sk ? 1 : 0;
    o = pd_uvarint_write(o, c->n);
    for (uint32_t i = 0; i < c->n; i++) {
        const pd_catval *x = &c->vals[i];
        o = pd_uvarint_write(o, x->len);
        memcpy(o, pd_catval_str(x), x->len);
        o += x->len;
        if (!c->sk) o = pd_uvarint_write(o, x->count);
        *o++ = x->level;
    }
    if (c->sk) {
        o = pd_uvarint_write(o, sk_nonzero(c));
        size_t prev = (size_t)-1;
        for (size_t i = 0; i < (size_t)PD_SKETCH_ROWS * c->skw; i++) {
            if (!c->sk[i]) continue;
            o = pd_uvarint_write(o, (uint64_t)(i - prev - 1));
            o = pd_uvarint_write(o, c->sk[i]);
            prev = i;
        }
    }
    return o;
}

uint8_t *pd_catset_write1(uint8_t *o, const char *v, uint32_t len, uint64_t okey)
{
    *o++ = 0; /* exact */
    *o++ = 1; /* n */
    o = pd_uvarint_write(o, len);
    memcpy(o, v, len);
    o += len;
    *o++ = 1; /* count */
    *o++ = pd_occ_level(okey, v, len);
    return o;
}

int pd_catset_read(pd_rd *r, pd_catset *c, uint32_t max, uint32_t maxlen)
{
    int rc;
    uint64_t mode, n, t = 0;
    pd_assert(c->n == 0 && !c->sk && c->total == 0);
    if ((rc = pd_rd_uv(r, &mode, "truncated catset mode"))) return rc;
    if (mode > 1) return pd_rd_fail(r, "unknown catset mode");
    if ((rc = pd_rd_uv(r, &n, "truncated value count"))) return rc;
    if (mode == 0 && n > max) return pd_rd_fail(r, "more values than max_values");
    if (mode == 1 && n != max) return pd_rd_fail(r, "overflowed catset does not keep max_values values");
    /* Each value takes at least 3 bytes (len, 1 byte, level). */
    if (n > (r->n - r->off) / 3) return pd_rd_fail(r, "value count exceeds input");
    if (n > c->cap) { /* reuse the capacity of a cleared profile */
        pd_free(c->vals);
        c->vals = pd_malloc((size_t)n * sizeof *c->vals);
        c->cap = (uint32_t)n;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len, count = 0;
        if ((rc = pd_rd_uv(r, &len, "truncated value length"))) return rc;
        if (len < 1 || len > maxlen) return pd_rd_fail(r, "value length out of range");
        if (len > r->n - r->off) return pd_rd_fail(r, "value bytes truncated");
        const char *v = (const char *)r->p + r->off;
        if (!pd_utf8_valid(v, (size_t)len)) return pd_rd_fail(r, "value is not valid UTF-8");
        uint64_t h = XXH3_64bits(v, (size_t)len);
        if (c->n > 0) {
            const pd_catval *prev = &c->vals[c->n - 1];
            if (rank_cmp(prev->hash, pd_catval_str(prev), prev->len, h, v, (uint32_t)len) >= 0)
                return pd_rd_fail(r, "values not in strictly increasing rank (duplicate or unordered)");
        }
        r->off += (size_t)len;
        if (mode == 0) {
            if ((rc = pd_rd_uv(r, &count, "truncated value count"))) return rc;
            if (count == 0) return pd_rd_fail(r, "kept value with zero count");
            if (t + count < t) return pd_rd_fail(r, "count overflow");
            t += count;
        }
        if (r->off >= r->n) return pd_rd_fail(r, "truncated level");
        pd_catval *x = &c->vals[c->n++];
        catval_set(x, v, (uint32_t)len);
        x->hash = h;
        x->count = count;
        x->level = r->p[r->off++];
    }
    if (mode == 0) {
        c->total = t;
        return PD_OK;
    }
    /* the sketch */
    const uint32_t w = pd_sketch_width(max);
    const size_t cells = (size_t)PD_SKETCH_ROWS * w;
    uint64_t k, rows[PD_SKETCH_ROWS] = {0};
    c->skw = w;
    c->sk = pd_calloc(cells, sizeof *c->sk);
    if ((rc = pd_rd_uv(r, &k, "truncated sketch counter count"))) return rc;
    if (k < 1 || k > cells) return pd_rd_fail(r, "sketch counter count out of range");
    if (k > (r->n - r->off) / 2) return pd_rd_fail(r, "sketch counter count exceeds input");
    size_t idx = (size_t)-1;
    for (uint64_t j = 0; j < k; j++) {
        uint64_t gap, cnt;
        if ((rc = pd_rd_uv(r, &gap, "truncated sketch gap")) || (rc = pd_rd_uv(r, &cnt, "truncated sketch counter")))
            return rc;
        if (gap >= cells || idx + 1 + gap >= cells) return pd_rd_fail(r, "sketch index out of range");
        if (cnt == 0) return pd_rd_fail(r, "zero sketch counter listed");
        idx += 1 + (size_t)gap;
        c->sk[idx] = cnt;
        uint64_t *rs = &rows[idx / w];
        if (*rs + cnt < *rs) return pd_rd_fail(r, "sketch counter overflow");
        *rs += cnt;
    }
    for (int x = 1; x < PD_SKETCH_ROWS; x++)
        if (rows[x] != rows[0]) return pd_rd_fail(r, "sketch rows do not sum to the same total");
    if (rows[0] <= max) return pd_rd_fail(r, "overflowed catset with a total not above max_values");
    c->total = rows[0];
    for (uint32_t i = 0; i < c->n; i++)
        if (pd_catset_count(c, i) == 0) return pd_rd_fail(r, "kept value missing from the sketch");
    c->worst = find_worst(c);
    return PD_OK;
}

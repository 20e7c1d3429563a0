/*
 * test_profile.c -- the profile model: add, histogram edges, the bottom-k
 * cap against an independent oracle, merge algebra (commutative,
 * associative, order-independent), the codec and its validation, JSON.
 *
 * Events are built by hand (no parser); a compact test event (tev) is
 * materialised into a pd_event on demand. Random data comes from a seeded
 * xorshift PRNG; numerics are integer-valued so sums are exact.
 */
#include "test.h"
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- helpers ---- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t rng_below(uint64_t *s, uint32_t n) { return (uint32_t)(rng_next(s) % n); }

static void add_dim(pd_schema *s, const char *name, pd_dim_type t, const double *b, int nb)
{
    pd_dim *d = &s->dims[s->ndims++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->type = t;
    d->nbounds = nb;
    for (int i = 0; i < nb; i++) d->bounds[i] = b[i];
}

/* cat0 (3 values), cat1 (12), num0 bounds {0,10,100}, cat2 (40), num1 {-5,5}. */
static void test_schema(pd_schema *s, uint32_t max_values)
{
    static const double b0[] = {0, 10, 100};
    static const double b1[] = {-5, 5};
    memset(s, 0, sizeof *s);
    s->max_values = max_values;
    add_dim(s, "cat0", PD_DIM_CATEGORICAL, NULL, 0);
    add_dim(s, "cat1", PD_DIM_CATEGORICAL, NULL, 0);
    add_dim(s, "num0", PD_DIM_NUMERIC, b0, 3);
    add_dim(s, "cat2", PD_DIM_CATEGORICAL, NULL, 0);
    add_dim(s, "num1", PD_DIM_NUMERIC, b1, 2);
    s->fingerprint = 42;
}

static const int pool_size[] = {3, 12, 0, 40, 0};
#define NTYPES 9
#define NDIM 5

static char names[64][48];
static int names_init;

static const char *val_name(int v)
{
    if (!names_init) {
        /* Lengths straddle PD_CATVAL_INLINE so values are stored both
         * inline and on the heap: "v7", "v9-xxxx...x" of 22..25 bytes, and
         * 40 bytes. */
        for (int i = 0; i < 64; i++) {
            int len = i % 4 == 0 ? 0 : i % 4 == 3 ? 40 : PD_CATVAL_INLINE - 1 + i % 5;
            int n = snprintf(names[i], sizeof names[i], "v%d", i);
            if (len > n) {
                names[i][n] = '-';
                memset(names[i] + n + 1, 'x', (size_t)(len - n - 1));
                names[i][len] = '\0';
            }
        }
        names_init = 1;
    }
    return names[v];
}

static const char *type_name(int t)
{
    static const char *types[NTYPES] = {"view", "click", "search", "contact", "favorite",
                                        "share", "compare", "call", "message"};
    return types[t];
}

typedef struct {
    int type;
    int64_t ts;
    int cat[NDIM];     /* -1 absent, -2 bad */
    int has_num[NDIM]; /* 0 absent, 1 present, 2 bad */
    double num[NDIM];
} tev;

static void tev_random(tev *e, uint64_t *r)
{
    memset(e, 0, sizeof *e);
    e->type = (int)rng_below(r, NTYPES);
    e->ts = 1700000000000LL + (int64_t)rng_below(r, 86400000);
    for (int d = 0; d < NDIM; d++) {
        if (pool_size[d]) {
            uint32_t x = rng_below(r, 10);
            e->cat[d] = x == 0 ? -1 : x == 1 ? -2 : (int)rng_below(r, (uint32_t)pool_size[d]);
        } else {
            uint32_t x = rng_below(r, 10);
            e->has_num[d] = x == 0 ? 0 : x == 1 ? 2 : 1;
            /* integers and some quarters: both encodings of doubles, and
             * sums stay exact in any order */
            e->num[d] = (double)((int)rng_below(r, 301) - 100) + (rng_below(r, 4) == 0 ? 0.25 : 0);
        }
    }
}

static void tev_to_event(const tev *t, pd_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->user_id = "u-1";
    ev->user_id_len = 3;
    ev->type = type_name(t->type);
    ev->type_len = strlen(ev->type);
    ev->ts_ms = t->ts;
    ev->nattrs = NDIM;
    for (int d = 0; d < NDIM; d++) {
        pd_attr *a = &ev->attrs[d];
        if (pool_size[d]) {
            if (t->cat[d] >= 0) {
                a->kind = PD_ATTR_STR;
                a->s = val_name(t->cat[d]);
                a->len = (uint32_t)strlen(a->s);
            } else {
                a->kind = t->cat[d] == -2 ? PD_ATTR_BAD : PD_ATTR_ABSENT;
            }
        } else {
            a->kind = t->has_num[d] == 1 ? PD_ATTR_NUM : t->has_num[d] == 2 ? PD_ATTR_BAD : PD_ATTR_ABSENT;
            a->num = t->num[d];
        }
    }
}

static void add_tev(pd_profile *p, const tev *t)
{
    pd_event ev;
    tev_to_event(t, &ev);
    pd_profile_add(p, &ev);
}

static void add_range(pd_profile *p, const tev *evs, int from, int to)
{
    for (int i = from; i < to; i++) add_tev(p, &evs[i]);
}

/* A simple event with one categorical/numeric attribute set by the caller. */
static void simple_event(pd_event *ev, const char *type, int64_t ts, int nattrs)
{
    memset(ev, 0, sizeof *ev);
    ev->user_id = "u";
    ev->user_id_len = 1;
    ev->type = type;
    ev->type_len = strlen(type);
    ev->ts_ms = ts;
    ev->nattrs = nattrs;
}

static void set_str(pd_event *ev, int d, const char *s)
{
    ev->attrs[d].kind = PD_ATTR_STR;
    ev->attrs[d].s = s;
    ev->attrs[d].len = (uint32_t)strlen(s);
}

static void set_num(pd_event *ev, int d, double v)
{
    ev->attrs[d].kind = PD_ATTR_NUM;
    ev->attrs[d].num = v;
}

/* ---- basics ---- */

TEST(profile_basics)
{
    pd_schema s;
    test_schema(&s, 64);
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK_INT(p.events, 0);

    pd_event ev;
    simple_event(&ev, "view", 2000, NDIM);
    set_str(&ev, 0, "red");
    set_num(&ev, 2, 7);
    pd_profile_add(&p, &ev);
    simple_event(&ev, "click", 1000, NDIM);
    set_str(&ev, 0, "red");
    set_str(&ev, 1, "bmw");
    set_num(&ev, 2, 150);
    ev.attrs[4].kind = PD_ATTR_BAD;
    pd_profile_add(&p, &ev);
    simple_event(&ev, "view", 3000, NDIM);
    set_str(&ev, 0, "blue");
    set_num(&ev, 2, -3);
    set_num(&ev, 4, 5);
    pd_profile_add(&p, &ev);

    CHECK_INT(p.events, 3);
    CHECK_INT(p.first_ts, 1000);
    CHECK_INT(p.last_ts, 3000);
    CHECK_INT(pd_catset_get(&p.types, "view", 4), 2);
    CHECK_INT(pd_catset_get(&p.types, "click", 5), 1);
    CHECK_INT(pd_catset_get(&p.types, "share", 5), 0);
    CHECK_INT(pd_catset_total(&p.types), 3);
    CHECK_INT(p.types.other, 0);
    CHECK_INT(pd_catset_get(&p.dims[0].cat, "red", 3), 2);
    CHECK_INT(pd_catset_get(&p.dims[0].cat, "blue", 4), 1);
    CHECK_INT(pd_catset_total(&p.dims[0].cat), 3);
    CHECK_INT(pd_catset_total(&p.dims[1].cat), 1);
    CHECK_INT(pd_catset_total(&p.dims[3].cat), 0);
    const pd_numagg *n = &p.dims[2].num;
    CHECK_INT(n->count, 3);
    CHECK_DBL(n->sum, 154, 0);
    CHECK_DBL(n->sumsq, 49 + 22500 + 9, 0);
    CHECK_DBL(n->min, -3, 0);
    CHECK_DBL(n->max, 150, 0);
    CHECK(n->hist != NULL);
    if (n->hist) {
        CHECK_INT(n->hist[0], 1); /* -3 <= 0 */
        CHECK_INT(n->hist[1], 1); /* 7 <= 10 */
        CHECK_INT(n->hist[2], 0);
        CHECK_INT(n->hist[3], 1); /* 150 -> +Inf */
    }
    CHECK_INT(p.dims[4].num.count, 1);

    /* Value strings are copied: the event's memory is not kept. */
    char buf[8] = "tmpval";
    simple_event(&ev, "view", 3000, NDIM);
    set_str(&ev, 3, buf);
    pd_profile_add(&p, &ev);
    memcpy(buf, "XXXXXX", 6);
    CHECK_INT(pd_catset_get(&p.dims[3].cat, "tmpval", 6), 1);

    /* reset empties it */
    pd_profile_reset(&p);
    CHECK_INT(p.events, 0);
    CHECK_INT(p.types.n, 0);
    CHECK(p.schema == &s);
    pd_profile empty;
    pd_profile_init(&empty, &s);
    CHECK(pd_profile_equal(&p, &empty));
    pd_profile_free(&p);
    pd_profile_free(&empty);
}

/* ---- histogram edges ---- */

TEST(profile_histogram_edges)
{
    pd_schema s;
    test_schema(&s, 64); /* num0 bounds {0, 10, 100} */
    struct {
        double v;
        int bucket;
    } cases[] = {
        {-1e9, 0}, {-5, 0}, {-0.0, 0}, {0, 0}, {1e-300, 1}, {10, 1}, {10.000000001, 2},
        {100, 2}, {100.5, 3}, {1e300, 3},
    };
    uint64_t want[4] = {0};
    pd_profile p;
    pd_profile_init(&p, &s);
    for (size_t i = 0; i < PD_ARRAY_LEN(cases); i++) {
        pd_event ev;
        simple_event(&ev, "view", 5, NDIM);
        set_num(&ev, 2, cases[i].v);
        pd_profile_add(&p, &ev);
        want[cases[i].bucket]++;
        /* Each value alone lands in its bucket. */
        pd_profile one;
        pd_profile_init(&one, &s);
        pd_profile_add(&one, &ev);
        for (int b = 0; b < 4; b++) CHECK_INT(one.dims[2].num.hist[b], b == cases[i].bucket);
        pd_profile_free(&one);
    }
    for (int b = 0; b < 4; b++) CHECK_INT(p.dims[2].num.hist[b], want[b]);
    CHECK_DBL(p.dims[2].num.min, -1e9, 0);
    CHECK_DBL(p.dims[2].num.max, 1e300, 0);

    /* Non-finite numbers are skipped (the parser never produces them). */
    pd_event ev;
    simple_event(&ev, "view", 5, NDIM);
    set_num(&ev, 2, NAN);
    set_num(&ev, 4, INFINITY);
    pd_profile_add(&p, &ev);
    CHECK_INT(p.dims[2].num.count, PD_ARRAY_LEN(cases));
    CHECK_INT(p.dims[4].num.count, 0);
    CHECK_INT(p.events, PD_ARRAY_LEN(cases) + 1);

    /* min/max do not depend on the order of 0.0 and -0.0 */
    pd_profile a, b;
    pd_profile_init(&a, &s);
    pd_profile_init(&b, &s);
    simple_event(&ev, "view", 5, NDIM);
    set_num(&ev, 2, 0.0);
    pd_profile_add(&a, &ev);
    set_num(&ev, 2, -0.0);
    pd_profile_add(&a, &ev);
    pd_profile_add(&b, &ev);
    set_num(&ev, 2, 0.0);
    pd_profile_add(&b, &ev);
    CHECK(!signbit(a.dims[2].num.min) && !signbit(b.dims[2].num.min));
    pd_buf ea = {0}, eb = {0};
    pd_profile_encode(&a, &ea);
    pd_profile_encode(&b, &eb);
    CHECK(ea.len == eb.len && memcmp(ea.p, eb.p, ea.len) == 0);
    pd_buf_free(&ea);
    pd_buf_free(&eb);
    pd_profile_free(&a);
    pd_profile_free(&b);
    pd_profile_free(&p);
}

/* ---- bottom-k cap vs an independent oracle ---- */

typedef struct {
    const char *v;
    uint32_t len;
    uint64_t hash, count;
} oval;

static int oval_cmp(const void *x, const void *y)
{
    const oval *a = x, *b = y;
    if (a->hash != b->hash) return a->hash < b->hash ? -1 : 1;
    size_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->v, b->v, m);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

/* Oracle: distinct values with counts (linear scan), sorted by (hash,
 * bytes, len); the first k are kept, the rest is other. Checks c. */
static void check_cap(const pd_catset *c, const char *const *vals, int nvals, uint32_t k)
{
    oval o[512];
    int no = 0;
    for (int i = 0; i < nvals; i++) {
        int j;
        for (j = 0; j < no; j++)
            if (strcmp(o[j].v, vals[i]) == 0) break;
        if (j == no) {
            o[no].v = vals[i];
            o[no].len = (uint32_t)strlen(vals[i]);
            o[no].hash = XXH3_64bits(vals[i], o[no].len);
            o[no].count = 0;
            no++;
        }
        o[j].count++;
    }
    qsort(o, (size_t)no, sizeof o[0], oval_cmp);
    uint64_t other = 0;
    uint32_t kept = (uint32_t)no < k ? (uint32_t)no : k;
    for (int j = 0; j < no; j++) {
        if ((uint32_t)j < k) CHECK_INT(pd_catset_get(c, o[j].v, o[j].len), o[j].count);
        else {
            CHECK_INT(pd_catset_get(c, o[j].v, o[j].len), 0);
            other += o[j].count;
        }
    }
    CHECK_INT(c->n, kept);
    CHECK_INT(c->other, other);
    CHECK_INT(pd_catset_total(c), nvals);
}

TEST(profile_cap_oracle)
{
    static const uint32_t caps[] = {1, 4, 7, 64};
    for (size_t ci = 0; ci < PD_ARRAY_LEN(caps); ci++) {
        pd_schema s;
        test_schema(&s, caps[ci]);
        uint64_t r = 0x9e3779b97f4a7c15ULL + ci;
        for (int round = 0; round < 20; round++) {
            const char *vals[400];
            int nv = 1 + (int)rng_below(&r, 400);
            int pool = 1 + (int)rng_below(&r, 64);
            pd_profile p;
            pd_profile_init(&p, &s);
            for (int i = 0; i < nv; i++) {
                vals[i] = val_name((int)rng_below(&r, (uint32_t)pool));
                pd_event ev;
                simple_event(&ev, vals[i], 1, NDIM);
                set_str(&ev, 3, vals[i]);
                pd_profile_add(&p, &ev);
            }
            check_cap(&p.dims[3].cat, vals, nv, caps[ci]);
            check_cap(&p.types, vals, nv, caps[ci]);
            pd_profile_free(&p);
        }
    }
}

/* ---- merge algebra ---- */

static int roundtrip(const pd_profile *p);

static void random_profile(pd_profile *p, uint64_t *r, int maxev)
{
    int n = (int)rng_below(r, (uint32_t)maxev + 1);
    for (int i = 0; i < n; i++) {
        tev t;
        tev_random(&t, r);
        add_tev(p, &t);
    }
}

static void copy_profile(pd_profile *dst, const pd_profile *src)
{
    pd_profile_reset(dst);
    pd_profile_merge(dst, src);
}

TEST(profile_merge_algebra)
{
    static const uint32_t caps[] = {1, 4, 64};
    for (size_t ci = 0; ci < PD_ARRAY_LEN(caps); ci++) {
        pd_schema s;
        test_schema(&s, caps[ci]);
        uint64_t r = 12345 + ci;
        for (int round = 0; round < 60; round++) {
            pd_profile a, b, c, ab, ba, ab_c, bc, a_bc, e;
            pd_profile *all[] = {&a, &b, &c, &ab, &ba, &ab_c, &bc, &a_bc, &e};
            for (size_t i = 0; i < PD_ARRAY_LEN(all); i++) pd_profile_init(all[i], &s);
            random_profile(&a, &r, 80);
            random_profile(&b, &r, 80);
            random_profile(&c, &r, 80);
            copy_profile(&ab, &a);
            pd_profile_merge(&ab, &b);
            copy_profile(&ba, &b);
            pd_profile_merge(&ba, &a);
            CHECK(pd_profile_equal(&ab, &ba));
            copy_profile(&ab_c, &ab);
            pd_profile_merge(&ab_c, &c);
            copy_profile(&bc, &b);
            pd_profile_merge(&bc, &c);
            copy_profile(&a_bc, &a);
            pd_profile_merge(&a_bc, &bc);
            CHECK(pd_profile_equal(&ab_c, &a_bc));
            CHECK_INT(ab_c.events, a.events + b.events + c.events);
            CHECK_INT(pd_catset_total(&ab_c.types), ab_c.events);
            CHECK(ab_c.types.n <= caps[ci] && ab_c.dims[3].cat.n <= caps[ci]);
            CHECK(roundtrip(&ab_c));
            /* identity */
            copy_profile(&e, &a);
            pd_profile empty;
            pd_profile_init(&empty, &s);
            pd_profile_merge(&e, &empty);
            CHECK(pd_profile_equal(&e, &a));
            pd_profile_merge(&empty, &a);
            CHECK(pd_profile_equal(&empty, &a));
            pd_profile_free(&empty);
            /* not equal once something changes */
            if (a.events > 0) {
                copy_profile(&e, &a);
                pd_profile_merge(&e, &a);
                CHECK(!pd_profile_equal(&e, &a));
            }
            for (size_t i = 0; i < PD_ARRAY_LEN(all); i++) pd_profile_free(all[i]);
        }
    }
}

TEST(profile_merge_self)
{
    pd_schema s;
    test_schema(&s, 4);
    uint64_t r = 777;
    pd_profile p, twice;
    pd_profile_init(&p, &s);
    pd_profile_init(&twice, &s);
    random_profile(&p, &r, 200);
    copy_profile(&twice, &p);
    pd_profile_merge(&twice, &p);
    pd_profile_merge(&p, &p);
    CHECK(pd_profile_equal(&p, &twice));
    pd_profile_free(&p);
    pd_profile_free(&twice);
}

/* Adding N events one by one in a shuffled order equals merging the
 * aggregates of arbitrary chunks of the original order (in reverse). */
TEST(profile_order_independence)
{
    static const uint32_t caps[] = {1, 3, 8, 64};
    enum { N = 600 };
    static tev evs[N], shuf[N];
    for (size_t ci = 0; ci < PD_ARRAY_LEN(caps); ci++) {
        pd_schema s;
        test_schema(&s, caps[ci]);
        uint64_t r = 99 + ci;
        for (int round = 0; round < 5; round++) {
            int n = 1 + (int)rng_below(&r, N);
            for (int i = 0; i < n; i++) tev_random(&evs[i], &r);
            memcpy(shuf, evs, (size_t)n * sizeof evs[0]);
            for (int i = n - 1; i > 0; i--) {
                int j = (int)rng_below(&r, (uint32_t)i + 1);
                tev t = shuf[i];
                shuf[i] = shuf[j];
                shuf[j] = t;
            }
            pd_profile seq, shuffled, chunked;
            pd_profile_init(&seq, &s);
            pd_profile_init(&shuffled, &s);
            pd_profile_init(&chunked, &s);
            add_range(&seq, evs, 0, n);
            add_range(&shuffled, shuf, 0, n);
            CHECK(pd_profile_equal(&seq, &shuffled));
            int end = n;
            while (end > 0) {
                int len = 1 + (int)rng_below(&r, 50);
                int start = end - len < 0 ? 0 : end - len;
                pd_profile chunk;
                pd_profile_init(&chunk, &s);
                add_range(&chunk, evs, start, end);
                pd_profile_merge(&chunked, &chunk);
                pd_profile_free(&chunk);
                end = start;
            }
            CHECK(pd_profile_equal(&seq, &chunked));

            /* Independent oracle for the numeric dimension num0 and ts. */
            uint64_t cnt = 0, hist[4] = {0};
            double sum = 0, mn = 0, mx = 0;
            int64_t fts = evs[0].ts, lts = evs[0].ts;
            for (int i = 0; i < n; i++) {
                if (evs[i].ts < fts) fts = evs[i].ts;
                if (evs[i].ts > lts) lts = evs[i].ts;
                if (evs[i].has_num[2] != 1) continue;
                double v = evs[i].num[2];
                if (cnt == 0 || v < mn) mn = v;
                if (cnt == 0 || v > mx) mx = v;
                cnt++;
                sum += v;
                hist[v <= 0 ? 0 : v <= 10 ? 1 : v <= 100 ? 2 : 3]++;
            }
            CHECK_INT(chunked.first_ts, fts);
            CHECK_INT(chunked.last_ts, lts);
            CHECK_INT(chunked.dims[2].num.count, cnt);
            if (cnt) {
                CHECK_DBL(chunked.dims[2].num.sum, sum, 0);
                CHECK_DBL(chunked.dims[2].num.min, mn, 0);
                CHECK_DBL(chunked.dims[2].num.max, mx, 0);
                for (int b = 0; b < 4; b++) CHECK_INT(chunked.dims[2].num.hist[b], hist[b]);
            }
            /* and the bottom-k oracle for cat2 */
            const char *vals[N];
            int nv = 0;
            for (int i = 0; i < n; i++)
                if (evs[i].cat[3] >= 0) vals[nv++] = val_name(evs[i].cat[3]);
            check_cap(&chunked.dims[3].cat, vals, nv, caps[ci]);
            pd_profile_free(&seq);
            pd_profile_free(&shuffled);
            pd_profile_free(&chunked);
        }
    }
}

/* ---- codec ---- */

static int roundtrip(const pd_profile *p)
{
    pd_buf b = {0}, b2 = {0};
    char err[200] = "";
    pd_profile q;
    pd_profile_init(&q, p->schema);
    pd_profile_encode(p, &b);
    int rc = pd_profile_decode(&q, b.p, b.len, err, sizeof err);
    int ok = rc == PD_OK && pd_profile_equal(p, &q);
    if (rc) printf("    decode: %s\n", err);
    if (ok) {
        pd_profile_encode(&q, &b2);
        ok = b2.len == b.len && memcmp(b.p, b2.p, b.len) == 0;
    }
    pd_buf_free(&b);
    pd_buf_free(&b2);
    pd_profile_free(&q);
    return ok;
}

TEST(profile_codec_roundtrip)
{
    pd_schema s;
    test_schema(&s, 4);
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK(roundtrip(&p)); /* empty */
    pd_buf b = {0};
    pd_profile_encode(&p, &b);
    /* version, events 0, ts 0, delta 0, types {n 0, other 0}, 0 dims */
    static const uint8_t empty_enc[] = {PD_PROFILE_VERSION, 0, 0, 0, 0, 0, 0};
    CHECK(b.len == sizeof empty_enc && memcmp(b.p, empty_enc, b.len) == 0);
    pd_buf_free(&b);

    static const uint32_t caps[] = {1, 4, 64};
    for (size_t ci = 0; ci < PD_ARRAY_LEN(caps); ci++) {
        test_schema(&s, caps[ci]);
        uint64_t r = 555 + ci;
        for (int round = 0; round < 100; round++) {
            pd_profile_reset(&p);
            random_profile(&p, &r, 150);
            CHECK(roundtrip(&p));
        }
    }
    /* non-integer numerics, negative timestamps, long UTF-8 values */
    test_schema(&s, 64);
    pd_profile_reset(&p);
    char longv[PD_MAX_CAT_VALUE + 1];
    memset(longv, 'x', PD_MAX_CAT_VALUE);
    longv[PD_MAX_CAT_VALUE] = 0;
    pd_event ev;
    simple_event(&ev, "vi\xc3\xa9w", -123456789, NDIM);
    set_str(&ev, 0, longv);
    set_str(&ev, 1, "gr\xc3\xbcn \"q\" \\");
    set_num(&ev, 2, 0.1);
    set_num(&ev, 4, -1e-7);
    pd_profile_add(&p, &ev);
    ev.ts_ms = 4000000000000LL;
    set_num(&ev, 2, 1e15 / 3);
    pd_profile_add(&p, &ev);
    CHECK(roundtrip(&p));
    /* a value over the limit is skipped by add */
    char toolong[PD_MAX_CAT_VALUE + 2];
    memset(toolong, 'y', sizeof toolong - 1);
    toolong[sizeof toolong - 1] = 0;
    set_str(&ev, 3, toolong);
    pd_profile_add(&p, &ev);
    CHECK_INT(pd_catset_total(&p.dims[3].cat), 0);
    CHECK(roundtrip(&p));
    pd_profile_free(&p);
}

/* Default schema round trip, if available. */
TEST(profile_codec_default_schema)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    CHECK_INT(s.ndims, 20);
    pd_profile p;
    pd_profile_init(&p, &s);
    for (int i = 0; i < 300; i++) {
        pd_event ev;
        simple_event(&ev, i % 3 ? "view" : "search", 1700000000000LL + i, s.ndims);
        for (int d = 0; d < s.ndims; d++) {
            if (s.dims[d].type == PD_DIM_CATEGORICAL) set_str(&ev, d, val_name((i * 7 + d) % 64));
            else set_num(&ev, d, (double)((i * 37 + d * 11) % 300000));
        }
        pd_profile_add(&p, &ev);
    }
    CHECK(roundtrip(&p));
    pd_profile_free(&p);
}

static int decode_fails(const pd_schema *s, const void *data, size_t len)
{
    pd_profile q;
    char err[200] = "";
    pd_profile_init(&q, s);
    int rc = pd_profile_decode(&q, data, len, err, sizeof err);
    pd_profile empty;
    pd_profile_init(&empty, s);
    int ok = rc == PD_ECORRUPT && err[0] != 0 && pd_profile_equal(&q, &empty) && q.types.n == 0;
    pd_profile_free(&q);
    return ok;
}

/* Decoding into a profile that held other data (capacity reused) gives the
 * same profile as decoding into a fresh one, for valid and corrupt inputs. */
TEST(profile_decode_reuse)
{
    pd_schema s;
    test_schema(&s, 4);
    uint64_t r = 99;
    pd_profile reused, fresh, src;
    pd_profile_init(&reused, &s);
    pd_profile_init(&src, &s);
    for (int round = 0; round < 200; round++) {
        pd_profile_reset(&src);
        random_profile(&src, &r, round % 3 == 0 ? 150 : 8);
        pd_buf b = {0};
        pd_profile_encode(&src, &b);
        if (round % 5 == 4 && b.len > 2) b.len = 1 + rng_below(&r, (uint32_t)b.len - 1); /* corrupt */
        char e1[200] = "", e2[200] = "";
        pd_profile_init(&fresh, &s);
        int rc1 = pd_profile_decode(&fresh, b.p, b.len, e1, sizeof e1);
        int rc2 = pd_profile_decode(&reused, b.p, b.len, e2, sizeof e2);
        CHECK_INT(rc2, rc1);
        CHECK(pd_profile_equal(&reused, &fresh));
        if (rc1 == PD_OK && round % 5 != 4) CHECK(pd_profile_equal(&reused, &src));
        pd_profile_free(&fresh);
        pd_buf_free(&b);
    }
    pd_profile_free(&reused);
    pd_profile_free(&src);
}

TEST(profile_decode_truncations)
{
    pd_schema s;
    test_schema(&s, 4);
    uint64_t r = 4242;
    pd_profile p;
    pd_profile_init(&p, &s);
    for (int round = 0; round < 10; round++) {
        pd_profile_reset(&p);
        random_profile(&p, &r, 100);
        pd_buf b = {0};
        pd_profile_encode(&p, &b);
        for (size_t n = 0; n < b.len; n++) {
            /* copy so ASan catches any read past n */
            uint8_t *c = pd_malloc(n);
            if (n) memcpy(c, b.p, n);
            if (!decode_fails(&s, c, n)) {
                CHECK(!"truncated input accepted");
                printf("    at length %zu of %zu\n", n, b.len);
            }
            pd_free(c);
        }
        /* trailing byte */
        pd_buf_putc(&b, 0);
        CHECK(decode_fails(&s, b.p, b.len));
        pd_buf_free(&b);
    }
    pd_profile_free(&p);
}

/* Builds an encoding by hand. */
static void enc_hdr(pd_buf *b, uint64_t events, int64_t first, uint64_t delta)
{
    pd_buf_putc(b, 1); /* these hand-built encodings are version 1 */
    pd_put_uvarint(b, events);
    pd_put_uvarint(b, pd_zigzag(first));
    pd_put_uvarint(b, delta);
}

static void enc_str(pd_buf *b, const char *v, uint64_t count)
{
    pd_put_uvarint(b, strlen(v));
    pd_buf_append(b, v, strlen(v));
    pd_put_uvarint(b, count);
}

static void enc_f64(pd_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    for (int i = 0; i < 8; i++) pd_buf_putc(b, (char)(u >> (8 * i)));
}

/* num0 {0,10,100}: one value 5 -> bucket 1 */
static void enc_num0(pd_buf *b, uint64_t count, double mn, double mx, uint64_t nb, const uint64_t *h)
{
    pd_put_uvarint(b, 2);
    pd_put_uvarint(b, count);
    enc_f64(b, 5.0 * (double)count);
    enc_f64(b, 25.0 * (double)count);
    enc_f64(b, mn);
    enc_f64(b, mx);
    pd_put_uvarint(b, nb);
    for (uint64_t i = 0; i < nb; i++) pd_put_uvarint(b, h[i]);
}

/* Ranks two strings; returns them in increasing rank order. */
static void by_rank(const char **x, const char **y)
{
    uint64_t hx = XXH3_64bits(*x, strlen(*x)), hy = XXH3_64bits(*y, strlen(*y));
    if (hx > hy) {
        const char *t = *x;
        *x = *y;
        *y = t;
    }
}

/* An independent version 1 encoder (the format before version 2, which
 * stores written earlier still hold): raw doubles, dense histograms. */
static void enc_v1(pd_buf *b, const pd_profile *p)
{
    const pd_schema *s = p->schema;
    pd_buf_putc(b, 1);
    pd_put_uvarint(b, p->events);
    pd_put_uvarint(b, pd_zigzag(p->first_ts));
    pd_put_uvarint(b, (uint64_t)p->last_ts - (uint64_t)p->first_ts);
    const pd_catset *cs[PD_MAX_DIMS + 1];
    int present = 0;
    for (int i = 0; i < s->ndims; i++)
        present += s->dims[i].type == PD_DIM_CATEGORICAL ? (p->dims[i].cat.n || p->dims[i].cat.other)
                                                         : p->dims[i].num.count > 0;
    cs[0] = &p->types;
    for (int i = -1; i < s->ndims; i++) {
        if (i >= 0) {
            if (s->dims[i].type == PD_DIM_CATEGORICAL ? !(p->dims[i].cat.n || p->dims[i].cat.other)
                                                      : p->dims[i].num.count == 0)
                continue;
            pd_put_uvarint(b, (uint64_t)i);
        }
        if (i < 0 || s->dims[i].type == PD_DIM_CATEGORICAL) {
            const pd_catset *c = i < 0 ? cs[0] : &p->dims[i].cat;
            pd_put_uvarint(b, c->n);
            for (uint32_t k = 0; k < c->n; k++) {
                pd_put_uvarint(b, c->vals[k].len);
                pd_buf_append(b, pd_catval_str(&c->vals[k]), c->vals[k].len);
                pd_put_uvarint(b, c->vals[k].count);
            }
            pd_put_uvarint(b, c->other);
            if (i < 0) pd_put_uvarint(b, (uint64_t)present);
            continue;
        }
        const pd_numagg *a = &p->dims[i].num;
        pd_put_uvarint(b, a->count);
        const double f[4] = {a->sum, a->sumsq, a->min, a->max};
        for (int k = 0; k < 4; k++) {
            uint64_t u;
            memcpy(&u, &f[k], 8);
            for (int j = 0; j < 8; j++) pd_buf_putc(b, (char)(u >> (8 * j)));
        }
        pd_put_uvarint(b, (uint64_t)s->dims[i].nbounds + 1);
        for (int k = 0; k <= s->dims[i].nbounds; k++) pd_put_uvarint(b, a->hist[k]);
    }
}

/* Version 1 values (written before version 2) decode to the same profile,
 * and re-encode as version 2, smaller when deltas hold few events. */
TEST(profile_decode_version1)
{
    pd_schema s;
    test_schema(&s, 8);
    uint64_t r = 31337;
    size_t v1_bytes = 0, v2_bytes = 0;
    for (int round = 0; round < 300; round++) {
        pd_profile p, q;
        pd_profile_init(&p, &s);
        pd_profile_init(&q, &s);
        random_profile(&p, &r, round % 4 == 0 ? 60 : 2);
        pd_buf b1 = {0}, b2 = {0};
        enc_v1(&b1, &p);
        char err[200] = "";
        CHECK_INT(pd_profile_decode(&q, b1.p, b1.len, err, sizeof err), PD_OK);
        CHECK(pd_profile_equal(&q, &p));
        pd_profile_encode(&q, &b2);
        CHECK_INT((uint8_t)b2.p[0], PD_PROFILE_VERSION);
        CHECK(roundtrip(&q));
        if (round % 4) {
            v1_bytes += b1.len;
            v2_bytes += b2.len;
        }
        pd_buf_free(&b1);
        pd_buf_free(&b2);
        pd_profile_free(&p);
        pd_profile_free(&q);
    }
    CHECK(v2_bytes * 10 < v1_bytes * 8); /* at least 20% smaller for 0-2 events */
}

/* Version 2 specific rejections: doubles (tags, non-canonical raw form,
 * range), singles, sparse histograms. Hand-built after the valid base. */
TEST(profile_decode_version2_corruptions)
{
    pd_schema s;
    test_schema(&s, 2);
    pd_buf b = {0};
    /* header: 2 events of type view, then dimension 2 (num0, bounds
     * 0,10,100: 4 buckets) follows */
#define V2_BASE(count)                               \
    do {                                             \
        b.len = 0;                                   \
        pd_buf_putc(&b, 2);                          \
        pd_put_uvarint(&b, 2);                       \
        pd_put_uvarint(&b, pd_zigzag(1000));         \
        pd_put_uvarint(&b, 5);                       \
        pd_put_uvarint(&b, 1);                       \
        enc_str(&b, "view", 2);                      \
        pd_put_uvarint(&b, 0);                       \
        pd_put_uvarint(&b, 1);                       \
        pd_put_uvarint(&b, 2);                       \
        pd_put_uvarint(&b, (count));                 \
    } while (0)
#define CD_INT(v) pd_put_uvarint(&b, pd_zigzag(v) << 1)
#define CD_RAW(v) (pd_buf_putc(&b, 1), enc_f64(&b, (v)))
    pd_profile q;
    pd_profile_init(&q, &s);
    char err[200];
    /* valid: a single 5; a general {5, 7.5}: sum 12.5, sumsq 81.25 */
    V2_BASE(1);
    CD_INT(5);
    CHECK_INT(pd_profile_decode(&q, b.p, b.len, err, sizeof err), PD_OK);
    CHECK_INT(q.dims[2].num.hist[1], 1);
    CHECK_DBL(q.dims[2].num.sumsq, 25, 0);
    V2_BASE(2);
    CD_RAW(12.5);
    CD_RAW(81.25);
    CD_INT(5);
    CD_RAW(7.5);
    pd_put_uvarint(&b, 1); /* one non-empty bucket */
    pd_put_uvarint(&b, 1); /* index 1 */
    pd_put_uvarint(&b, 2);
    CHECK_INT(pd_profile_decode(&q, b.p, b.len, err, sizeof err), PD_OK);
    CHECK_INT(q.dims[2].num.hist[1], 2);
    CHECK_DBL(q.dims[2].num.max, 7.5, 0);
    {
        pd_buf e = {0};
        pd_profile_encode(&q, &e);
        CHECK(e.len == b.len && memcmp(e.p, b.p, b.len) == 0); /* canonical */
        pd_buf_free(&e);
    }
    /* single: raw form of an integer, bad tag, out of range, infinite */
    V2_BASE(1);
    CD_RAW(5.0);
    CHECK(decode_fails(&s, b.p, b.len));
    V2_BASE(1);
    pd_put_uvarint(&b, 3);
    CHECK(decode_fails(&s, b.p, b.len));
    V2_BASE(1);
    pd_put_uvarint(&b, UINT64_C(1) << 56);
    CHECK(decode_fails(&s, b.p, b.len));
    V2_BASE(1);
    CD_RAW(INFINITY);
    CHECK(decode_fails(&s, b.p, b.len));
    /* general form: k = 0, k > buckets, gap past the end, empty bucket,
     * counts not summing, min/max vs buckets */
    static const struct { uint64_t k, g1, c1, g2, c2; double mn, mx; } hc[] = {
        {0, 0, 0, 0, 0, 5, 7.5}, {5, 1, 2, 0, 0, 5, 7.5}, {1, 4, 2, 0, 0, 5, 7.5},
        {1, 1, 0, 0, 0, 5, 7.5}, {1, 1, 3, 0, 0, 5, 7.5}, {2, 1, 1, 0, 1, 5, 7.5},
        {2, 1, 1, 2, 1, 5, 7.5}, {1, 2, 2, 0, 0, 5, 7.5},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(hc); i++) {
        V2_BASE(2);
        CD_RAW(12.5);
        CD_RAW(81.25);
        CD_INT(5);
        CD_RAW(7.5);
        pd_put_uvarint(&b, hc[i].k);
        if (hc[i].k >= 1) {
            pd_put_uvarint(&b, hc[i].g1);
            pd_put_uvarint(&b, hc[i].c1);
        }
        if (hc[i].k >= 2) {
            pd_put_uvarint(&b, hc[i].g2);
            pd_put_uvarint(&b, hc[i].c2);
        }
        if (!decode_fails(&s, b.p, b.len)) {
            CHECK(!"bad sparse histogram accepted");
            printf("    case %zu\n", i);
        }
    }
    /* version 1: a count-1 aggregate that is not one value's */
    {
        static const uint64_t h1[] = {0, 1, 0, 0};
        b.len = 0;
        enc_hdr(&b, 1, 1000, 5);
        pd_put_uvarint(&b, 1);
        enc_str(&b, "view", 1);
        pd_put_uvarint(&b, 0);
        pd_put_uvarint(&b, 1);
        pd_put_uvarint(&b, 2);
        pd_put_uvarint(&b, 1);
        enc_f64(&b, 5);
        enc_f64(&b, 26); /* sumsq != 5 * 5 */
        enc_f64(&b, 5);
        enc_f64(&b, 5);
        pd_put_uvarint(&b, 4);
        for (int k = 0; k < 4; k++) pd_put_uvarint(&b, h1[k]);
        CHECK(decode_fails(&s, b.p, b.len));
    }
#undef V2_BASE
#undef CD_INT
#undef CD_RAW
    pd_profile_free(&q);
    pd_buf_free(&b);
}

TEST(profile_decode_corruptions)
{
    pd_schema s;
    test_schema(&s, 2);
    static const uint64_t h1[] = {0, 1, 0, 0};
    static const uint64_t h2[] = {0, 2, 0, 0};
    const char *lo = "view", *hi = "click";
    by_rank(&lo, &hi);
    pd_buf b = {0};

#define VALID_BASE()                       \
    do {                                   \
        b.len = 0;                         \
        enc_hdr(&b, 1, 1000, 5);           \
        pd_put_uvarint(&b, 1);             \
        enc_str(&b, "view", 1);            \
        pd_put_uvarint(&b, 0);             \
    } while (0)

    /* sanity: a hand-built valid encoding decodes */
    VALID_BASE();
    pd_put_uvarint(&b, 2);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "red", 1);
    pd_put_uvarint(&b, 0);
    enc_num0(&b, 1, 5, 5, 4, h1);
    {
        pd_profile q;
        pd_profile_init(&q, &s);
        char err[200] = "";
        CHECK_INT(pd_profile_decode(&q, b.p, b.len, err, sizeof err), PD_OK);
        CHECK_INT(q.events, 1);
        CHECK_INT(q.last_ts, 1005);
        CHECK_INT(pd_catset_get(&q.dims[0].cat, "red", 3), 1);
        CHECK_INT(q.dims[2].num.hist[1], 1);
        pd_profile_free(&q);
    }

    /* bad version */
    VALID_BASE();
    pd_put_uvarint(&b, 0);
    CHECK(!decode_fails(&s, b.p, b.len));
    b.p[0] = PD_PROFILE_VERSION + 1;
    CHECK(decode_fails(&s, b.p, b.len));
    b.p[0] = 0;
    CHECK(decode_fails(&s, b.p, b.len));
    CHECK(decode_fails(&s, b.p, 0));

    /* non-minimal varint (events = 1 as 0x81 0x00) */
    b.len = 0;
    pd_buf_putc(&b, PD_PROFILE_VERSION);
    pd_buf_putc(&b, (char)0x81);
    pd_buf_putc(&b, 0);
    pd_put_uvarint(&b, pd_zigzag(1000));
    pd_put_uvarint(&b, 5);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "view", 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));
    b.p[1] = 1; /* minimal form: drop the 0x00 continuation */
    memmove(b.p + 2, b.p + 3, b.len - 3);
    b.len--;
    CHECK(!decode_fails(&s, b.p, b.len));

    /* trailing bytes */
    VALID_BASE();
    pd_put_uvarint(&b, 0);
    pd_buf_putc(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));

    /* dim index out of range */
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    pd_put_uvarint(&b, 5);
    enc_str(&b, "x", 1);
    CHECK(decode_fails(&s, b.p, b.len));
    /* more present dims than the schema has */
    VALID_BASE();
    pd_put_uvarint(&b, 6);
    CHECK(decode_fails(&s, b.p, b.len));
    /* non-increasing dim indices */
    VALID_BASE();
    pd_put_uvarint(&b, 2);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "red", 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "blue", 1);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));

    /* bucket sum mismatch, wrong bucket count, min/max vs histogram */
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    enc_num0(&b, 1, 5, 5, 4, h2);
    CHECK(decode_fails(&s, b.p, b.len));
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    enc_num0(&b, 1, 5, 5, 3, h1);
    CHECK(decode_fails(&s, b.p, b.len));
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    enc_num0(&b, 1, 50, 50, 4, h1);
    CHECK(decode_fails(&s, b.p, b.len));
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    enc_num0(&b, 1, 6, 5, 4, h1); /* min > max */
    CHECK(decode_fails(&s, b.p, b.len));
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    enc_num0(&b, 1, NAN, 5, 4, h1);
    CHECK(decode_fails(&s, b.p, b.len));
    /* numeric count exceeds events */
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    enc_num0(&b, 2, 5, 5, 4, h2);
    CHECK(decode_fails(&s, b.p, b.len));
    /* type mismatch: numeric encoding for a categorical dim */
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 1);
    enc_f64(&b, 5);
    CHECK(decode_fails(&s, b.p, b.len));

    /* type counts do not sum to events */
    b.len = 0;
    enc_hdr(&b, 2, 1000, 5);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "view", 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));
    /* empty profile with timestamps */
    b.len = 0;
    enc_hdr(&b, 0, 1000, 0);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));
    /* last_ts overflows int64 */
    b.len = 0;
    enc_hdr(&b, 1, INT64_MAX - 1, 2);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "view", 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));

    /* types: duplicate values, wrong order, too many (cap 2), zero count,
     * empty value, invalid UTF-8, huge length */
    const char *bad_sets[][3] = {
        {lo, lo, NULL}, {hi, lo, NULL}, {"a", "b", "c"}, {"", NULL, NULL}, {"\xff", NULL, NULL},
        {"\xc0\xaf", NULL, NULL},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(bad_sets); i++) {
        int n = 0;
        while (n < 3 && bad_sets[i][n]) n++;
        b.len = 0;
        enc_hdr(&b, (uint64_t)n, 1000, 5);
        pd_put_uvarint(&b, (uint64_t)n);
        for (int k = 0; k < n; k++) enc_str(&b, bad_sets[i][k], 1);
        pd_put_uvarint(&b, 0);
        pd_put_uvarint(&b, 0);
        if (!decode_fails(&s, b.p, b.len)) {
            CHECK(!"bad type set accepted");
            printf("    case %zu\n", i);
        }
    }
    b.len = 0;
    enc_hdr(&b, 2, 1000, 5);
    pd_put_uvarint(&b, 2);
    enc_str(&b, lo, 1);
    enc_str(&b, hi, 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    CHECK(!decode_fails(&s, b.p, b.len)); /* the well-ordered pair is fine */
    b.len = 0;
    enc_hdr(&b, 1, 1000, 5);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "view", 0);
    pd_put_uvarint(&b, 1);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len)); /* zero count */
    b.len = 0;
    enc_hdr(&b, 1, 1000, 5);
    pd_put_uvarint(&b, 1);
    pd_put_uvarint(&b, UINT64_MAX); /* huge length */
    pd_buf_append(&b, "view", 4);
    CHECK(decode_fails(&s, b.p, b.len));
    b.len = 0;
    enc_hdr(&b, 1, 1000, 5);
    pd_put_uvarint(&b, UINT64_MAX >> 1); /* huge value count */
    CHECK(decode_fails(&s, b.p, b.len));
    /* counts overflowing uint64 */
    b.len = 0;
    enc_hdr(&b, 1, 1000, 5);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "view", UINT64_MAX);
    pd_put_uvarint(&b, 2);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));
    /* categorical total exceeds events / empty present categorical dim */
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 1);
    enc_str(&b, "red", 2);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));
    VALID_BASE();
    pd_put_uvarint(&b, 1);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    pd_put_uvarint(&b, 0);
    CHECK(decode_fails(&s, b.p, b.len));
    /* value longer than 256 bytes */
    {
        char v[PD_MAX_CAT_VALUE + 2];
        memset(v, 'a', sizeof v - 1);
        v[sizeof v - 1] = 0;
        VALID_BASE();
        pd_put_uvarint(&b, 1);
        pd_put_uvarint(&b, 0);
        pd_put_uvarint(&b, 1);
        enc_str(&b, v, 1);
        pd_put_uvarint(&b, 0);
        CHECK(decode_fails(&s, b.p, b.len));
        v[PD_MAX_CAT_VALUE] = 0; /* exactly 256 is fine */
        VALID_BASE();
        pd_put_uvarint(&b, 1);
        pd_put_uvarint(&b, 0);
        pd_put_uvarint(&b, 1);
        enc_str(&b, v, 1);
        pd_put_uvarint(&b, 0);
        CHECK(!decode_fails(&s, b.p, b.len));
    }
    /* decode into a non-empty profile replaces its contents on success
     * and leaves it empty on failure */
    {
        pd_profile q;
        pd_profile_init(&q, &s);
        uint64_t r = 3;
        random_profile(&q, &r, 30);
        VALID_BASE();
        pd_put_uvarint(&b, 0);
        CHECK_INT(pd_profile_decode(&q, b.p, b.len, NULL, 0), PD_OK);
        CHECK_INT(q.events, 1);
        random_profile(&q, &r, 30);
        CHECK_INT(pd_profile_decode(&q, b.p, b.len - 1, NULL, 0), PD_ECORRUPT);
        CHECK_INT(q.events, 0);
        pd_profile_free(&q);
    }
#undef VALID_BASE
    pd_buf_free(&b);
}

/* ---- JSON ---- */

TEST(profile_json)
{
    pd_schema s;
    test_schema(&s, 2);
    pd_profile p;
    pd_profile_init(&p, &s);
    pd_buf b = {0};
    pd_profile_to_json(&p, &b);
    CHECK_STR(b.p, "{\"events\":0,\"first_seen\":null,\"last_seen\":null,\"event_types\":{},\"dimensions\":{}}");
    b.len = 0;

    pd_event ev;
    simple_event(&ev, "view", 1795328747333LL, NDIM);
    set_str(&ev, 1, "b\"q");
    set_num(&ev, 2, 2);
    pd_profile_add(&p, &ev);
    simple_event(&ev, "view", 1795328700000LL, NDIM);
    set_str(&ev, 1, "a");
    set_num(&ev, 2, 4);
    pd_profile_add(&p, &ev);
    simple_event(&ev, "view", 1795328800000LL, NDIM);
    set_num(&ev, 2, 1000);
    pd_profile_add(&p, &ev);
    pd_profile_to_json(&p, &b);
    /* mean 1006/3, var (4+16+1e6)/3 - mean^2 */
    double mean = 1006.0 / 3, sd = sqrt((1000020.0 / 3) - mean * mean);
    char want[1024];
    snprintf(want, sizeof want,
             "{\"events\":3,\"first_seen\":\"2026-11-22T06:25:00.000Z\",\"last_seen\":\"2026-11-22T06:26:40.000Z\","
             "\"event_types\":{\"view\":3},\"dimensions\":{"
             "\"cat1\":{\"type\":\"categorical\",\"total\":2,\"counts\":{\"a\":1,\"b\\\"q\":1}},"
             "\"num0\":{\"type\":\"numeric\",\"count\":3,\"sum\":1006,\"sumsq\":1000020,\"min\":2,\"max\":1000,"
             "\"mean\":%.17g,\"stddev\":%.17g,\"histogram\":[{\"le\":0,\"count\":0},{\"le\":10,\"count\":2},"
             "{\"le\":100,\"count\":0},{\"le\":\"+Inf\",\"count\":1}]}}}",
             mean, sd);
    CHECK_STR(b.p, want);

    /* __other__ appears once the cap overflows; counts sorted by bytes */
    pd_profile_reset(&p);
    const char *vals[] = {"z", "y", "x", "w", "v"};
    for (size_t i = 0; i < PD_ARRAY_LEN(vals); i++) {
        simple_event(&ev, "t", 0, NDIM);
        set_str(&ev, 0, vals[i]);
        pd_profile_add(&p, &ev);
    }
    b.len = 0;
    pd_profile_to_json(&p, &b);
    CHECK(strstr(b.p, "\"__other__\":3}") != NULL);
    CHECK(strstr(b.p, "\"total\":5") != NULL);
    CHECK(strstr(b.p, "\"first_seen\":\"1970-01-01T00:00:00.000Z\"") != NULL);
    pd_buf_free(&b);
    pd_profile_free(&p);
}

/* pd_profile_clear keeps capacity: a cleared-and-refilled profile must be
 * indistinguishable from a fresh one filled with the same events (equal,
 * byte-identical encoding), including dimensions that were present before
 * the clear and absent after it, and merges into a cleared profile. */
TEST(profile_clear_reuse)
{
    pd_schema s;
    test_schema(&s, 8);
    uint64_t r = 7;
    static tev evs[300];
    pd_profile reused;
    pd_profile_init(&reused, &s);
    for (int round = 0; round < 6; round++) {
        int n = 1 + (int)rng_below(&r, 300);
        for (int i = 0; i < n; i++) {
            tev_random(&evs[i], &r);
            if (round % 2) evs[i].has_num[4] = 0; /* num1 absent in odd rounds */
        }
        pd_profile fresh;
        pd_profile_init(&fresh, &s);
        add_range(&fresh, evs, 0, n);
        pd_profile_clear(&reused);
        CHECK_INT(reused.events, 0);
        CHECK_INT(reused.dims[4].num.count, 0);
        add_range(&reused, evs, 0, n);
        CHECK(pd_profile_equal(&fresh, &reused));
        pd_buf a = {0}, b = {0};
        pd_profile_encode(&fresh, &a);
        pd_profile_encode(&reused, &b);
        CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
        pd_buf_free(&a);
        pd_buf_free(&b);
        /* merge into a cleared profile == copy */
        pd_profile_clear(&reused);
        pd_profile_merge(&reused, &fresh);
        CHECK(pd_profile_equal(&fresh, &reused));
        /* independent count of num1 presence */
        uint64_t cnt = 0;
        for (int i = 0; i < n; i++) cnt += evs[i].has_num[4] == 1;
        CHECK_INT(reused.dims[4].num.count, cnt);
        pd_profile_free(&fresh);
    }
    pd_profile_free(&reused);
}

/* pd_profile_mem_bytes counts capacity: at least every kept value's slot
 * and out-of-line bytes (computed here from the public fields), kept
 * across pd_profile_clear, zero after pd_profile_free. */
TEST(profile_mem_bytes)
{
    pd_schema s;
    test_schema(&s, 64);
    uint64_t r = 7;
    pd_profile p;
    pd_profile_init(&p, &s);
    CHECK_INT(pd_profile_mem_bytes(&p), 0);
    random_profile(&p, &r, 150);
    size_t floor = p.types.n * sizeof(pd_catval);
    for (int i = 0; i < s.ndims; i++) {
        if (s.dims[i].type != PD_DIM_CATEGORICAL) continue;
        const pd_catset *c = &p.dims[i].cat;
        floor += c->n * sizeof(pd_catval);
        for (uint32_t k = 0; k < c->n; k++)
            if (c->vals[k].len > PD_CATVAL_INLINE) floor += c->vals[k].len + 1;
    }
    CHECK(floor > 0);
    size_t used = pd_profile_mem_bytes(&p);
    CHECK(used >= floor);
    pd_profile_clear(&p);
    CHECK(pd_profile_mem_bytes(&p) > 0); /* capacity kept for reuse */
    pd_profile_free(&p);
    CHECK_INT(pd_profile_mem_bytes(&p), 0);
}

/* pd_profile_encode_event against the model: encoding the profile that
 * pd_profile_add builds from the one event, byte for byte (random events
 * with absent and bad attributes, every cap, and the edge values add
 * normalises or skips). */
static int encode_event_matches(const pd_schema *s, const pd_event *ev)
{
    pd_profile p;
    pd_profile_init(&p, s);
    pd_profile_add(&p, ev);
    pd_buf want = {0}, got = {0};
    pd_profile_encode(&p, &want);
    pd_buf_append(&got, "xy", 2); /* appends: what is there stays */
    pd_profile_encode_event(s, ev, &got);
    int ok = got.len == want.len + 2 && memcmp(got.p, "xy", 2) == 0 && memcmp(got.p + 2, want.p, want.len) == 0;
    pd_buf_free(&want);
    pd_buf_free(&got);
    pd_profile_free(&p);
    return ok;
}

TEST(profile_encode_event)
{
    pd_schema s;
    static const uint32_t caps[] = {1, 4, 64};
    for (size_t ci = 0; ci < PD_ARRAY_LEN(caps); ci++) {
        test_schema(&s, caps[ci]);
        uint64_t r = 9001 + ci;
        for (int i = 0; i < 2000; i++) {
            tev t;
            tev_random(&t, &r);
            pd_event ev;
            tev_to_event(&t, &ev);
            CHECK(encode_event_matches(&s, &ev));
        }
    }
    test_schema(&s, 64);
    char longv[PD_MAX_CAT_VALUE + 2], type[PD_MAX_TYPE + 1];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    memset(type, 't', PD_MAX_TYPE);
    type[PD_MAX_TYPE] = 0;
    pd_event ev;
    simple_event(&ev, type, -123456789, NDIM); /* longest type, negative ts */
    set_str(&ev, 0, longv);                    /* over the limit: skipped */
    set_str(&ev, 1, "");                       /* empty: skipped */
    set_num(&ev, 2, -0.0);                     /* stored as +0 */
    set_str(&ev, 3, longv + 1);                /* exactly the limit */
    set_num(&ev, 4, 1e300);
    CHECK(encode_event_matches(&s, &ev));
    static const double odd[] = {INFINITY, -INFINITY, NAN, 0.1, -1e-7, 9007199254740992.0, -9007199254740991.0};
    for (size_t i = 0; i < PD_ARRAY_LEN(odd); i++) {
        simple_event(&ev, "view", 4000000000000LL, NDIM);
        set_num(&ev, 2, odd[i]);
        set_num(&ev, 4, -odd[i]);
        CHECK(encode_event_matches(&s, &ev));
    }
    simple_event(&ev, "v", 0, 2); /* fewer attributes than dimensions */
    set_str(&ev, 1, "only");
    CHECK(encode_event_matches(&s, &ev));
    simple_event(&ev, "v", 0, NDIM); /* nothing but the type */
    CHECK(encode_event_matches(&s, &ev));
}

/*
 * test_tracks.c -- per-type tracks (issue 19 item 3): the schema's
 * "tracked_types", the sub-profiles a profile keeps for them, their merge
 * algebra (order-independent, associative, commutative: property tests
 * over random events), the codec (round trip, the single-event encoder,
 * validation of the sub-profiles section) and an independent count of
 * each sub-profile's content from the events of its type.
 *
 * Events are built by hand; random data from a seeded xorshift PRNG;
 * numerics are integer-valued so sums are exact in any order.
 */
#include "test.h"
#include "profile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t tr_rng(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t tr_below(uint64_t *s, uint32_t n) { return (uint32_t)(tr_rng(s) % n); }

/* color (categorical, 10 values), price (numeric {0,10,100}), model
 * (categorical, 30 values, cap 8 so it overflows); tracked: park, contact.
 * Recent items off, so the flags byte is the tracks' alone (test_recent.c
 * has tracks and recent items together). */
static void tr_schema(pd_schema *s, int tracked)
{
    const char *js = tracked
        ? "{\"dimensions\":[{\"name\":\"color\",\"type\":\"categorical\"},"
          "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[0,10,100]},"
          "{\"name\":\"model\",\"type\":\"categorical\",\"max_values\":8}],"
          "\"tracked_types\":[\"park\",\"contact\"],\"recent\":{\"max\":0}}"
        : "{\"dimensions\":[{\"name\":\"color\",\"type\":\"categorical\"},"
          "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[0,10,100]},"
          "{\"name\":\"model\",\"type\":\"categorical\",\"max_values\":8}],\"recent\":{\"max\":0}}";
    char err[256];
    int rc = pd_schema_load_json(s, js, strlen(js), 0, err, sizeof err);
    if (rc) printf("    schema: %s\n", err);
    CHECK_INT(rc, PD_OK);
}

static const char *const tr_types[] = {"view", "park", "contact", "search"};
static char tr_vals[40][16];

typedef struct {
    int type, color, model; /* color/model -1: absent */
    int has_price;
    double price;
    int64_t ts;
    uint64_t okey;
} tr_ev;

static void tr_random(tr_ev *e, uint64_t *r)
{
    e->type = (int)tr_below(r, 4);
    e->color = tr_below(r, 8) == 0 ? -1 : (int)tr_below(r, 10);
    e->model = tr_below(r, 8) == 0 ? -1 : (int)tr_below(r, 30);
    e->has_price = tr_below(r, 6) != 0;
    e->price = (double)((int)tr_below(r, 300) - 50);
    e->ts = 1790000000000LL + (int64_t)tr_below(r, 86400000);
    e->okey = tr_rng(r);
}

static void tr_event(const tr_ev *t, pd_event *ev)
{
    if (!tr_vals[0][0])
        for (int i = 0; i < 40; i++) snprintf(tr_vals[i], sizeof tr_vals[i], "v%d", i);
    memset(ev, 0, sizeof *ev);
    ev->user_id = "u";
    ev->user_id_len = 1;
    ev->type = tr_types[t->type];
    ev->type_len = strlen(ev->type);
    ev->ts_ms = t->ts;
    ev->okey = t->okey;
    ev->nattrs = 3;
    if (t->color >= 0) {
        ev->attrs[0].kind = PD_ATTR_STR;
        ev->attrs[0].s = tr_vals[t->color];
        ev->attrs[0].len = (uint32_t)strlen(tr_vals[t->color]);
    }
    if (t->has_price) {
        ev->attrs[1].kind = PD_ATTR_NUM;
        ev->attrs[1].num = t->price;
    }
    if (t->model >= 0) {
        ev->attrs[2].kind = PD_ATTR_STR;
        ev->attrs[2].s = tr_vals[t->model];
        ev->attrs[2].len = (uint32_t)strlen(tr_vals[t->model]);
    }
}

static void tr_add(pd_profile *p, const tr_ev *evs, int from, int to)
{
    for (int i = from; i < to; i++) {
        pd_event ev;
        tr_event(&evs[i], &ev);
        pd_profile_add(p, &ev);
    }
}

static int tr_same_bytes(const pd_profile *a, const pd_profile *b)
{
    pd_buf x = {0}, y = {0};
    pd_profile_encode(a, &x);
    pd_profile_encode(b, &y);
    int ok = x.len == y.len && memcmp(x.p, y.p, x.len) == 0;
    pd_buf_free(&x);
    pd_buf_free(&y);
    return ok;
}

static int tr_roundtrip(const pd_profile *p)
{
    pd_buf b = {0}, b2 = {0};
    char err[200] = "";
    pd_profile q;
    pd_profile_init(&q, p->schema);
    pd_profile_encode(p, &b);
    int rc = pd_profile_decode(&q, b.p, b.len, err, sizeof err);
    if (rc) printf("    decode: %s\n", err);
    int ok = rc == PD_OK && pd_profile_equal(p, &q);
    if (ok) {
        pd_profile_encode(&q, &b2);
        ok = b2.len == b.len && memcmp(b.p, b2.p, b.len) == 0;
    }
    pd_buf_free(&b);
    pd_buf_free(&b2);
    pd_profile_free(&q);
    return ok;
}

TEST(tracks_schema)
{
    pd_schema a, b;
    tr_schema(&a, 1);
    tr_schema(&b, 0);
    CHECK_INT(a.ntracked, 2);
    CHECK_INT(pd_schema_tracked(&a, "contact", 7), 1);
    CHECK_INT(pd_schema_tracked(&a, "view", 4), -1);
    CHECK(a.fingerprint != b.fingerprint);
    /* canonical JSON round trip keeps the tracked types */
    pd_buf j = {0};
    pd_schema c;
    char err[256];
    pd_schema_to_json(&a, &j);
    CHECK(strstr(j.p, "\"tracked_types\":[\"park\",\"contact\"]") != NULL);
    CHECK_INT(pd_schema_load_json(&c, j.p, j.len, 0, err, sizeof err), PD_OK);
    CHECK(c.fingerprint == a.fingerprint);
    pd_buf_free(&j);
    /* without tracked types the canonical JSON has no key at all */
    pd_schema_to_json(&b, &j);
    CHECK(strstr(j.p, "tracked") == NULL);
    pd_buf_free(&j);
    static const char *const bad[] = {
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":\"park\"}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":[\"park\",\"park\"]}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":[\"\"]}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":[\"a,b\"]}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":[\"a:b\"]}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":[\"*\"]}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":[3]}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":"
        "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"tracked_types\":"
        "[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]}",
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_INT(pd_schema_load_json(&c, bad[i], strlen(bad[i]), 0, err, sizeof err), PD_EINVAL);
        CHECK(strstr(err, "tracked_types") != NULL);
    }
}

/* Every sub-profile holds exactly what the events of its type give,
 * counted here independently; add in any order and merge in any grouping
 * give byte-identical encodings; merge is commutative and associative. */
TEST(tracks_merge_properties)
{
    enum { N = 400 };
    static tr_ev evs[N], shuf[N];
    pd_schema s;
    tr_schema(&s, 1);
    uint64_t r = 4242;
    for (int round = 0; round < 40; round++) {
        int n = 1 + (int)tr_below(&r, N);
        for (int i = 0; i < n; i++) tr_random(&evs[i], &r);
        memcpy(shuf, evs, (size_t)n * sizeof evs[0]);
        for (int i = n - 1; i > 0; i--) {
            int j = (int)tr_below(&r, (uint32_t)i + 1);
            tr_ev t = shuf[i];
            shuf[i] = shuf[j];
            shuf[j] = t;
        }
        pd_profile seq, sh, ch, a, b, c, ab, ba, ab_c, bc, a_bc;
        pd_profile *all[] = {&seq, &sh, &ch, &a, &b, &c, &ab, &ba, &ab_c, &bc, &a_bc};
        for (size_t i = 0; i < PD_ARRAY_LEN(all); i++) pd_profile_init(all[i], &s);
        tr_add(&seq, evs, 0, n);
        tr_add(&sh, shuf, 0, n);
        CHECK(pd_profile_equal(&seq, &sh));
        CHECK(tr_same_bytes(&seq, &sh));
        for (int end = n; end > 0;) {
            int len = 1 + (int)tr_below(&r, 40);
            int start = end - len < 0 ? 0 : end - len;
            pd_profile chunk;
            pd_profile_init(&chunk, &s);
            tr_add(&chunk, evs, start, end);
            pd_profile_merge(&ch, &chunk);
            pd_profile_free(&chunk);
            end = start;
        }
        CHECK(pd_profile_equal(&seq, &ch));
        CHECK(tr_same_bytes(&seq, &ch));
        CHECK(tr_roundtrip(&seq));
        /* commutative, associative over three thirds */
        int t1 = n / 3, t2 = 2 * n / 3;
        tr_add(&a, evs, 0, t1);
        tr_add(&b, evs, t1, t2);
        tr_add(&c, evs, t2, n);
        pd_profile_merge(&ab, &a);
        pd_profile_merge(&ab, &b);
        pd_profile_merge(&ba, &b);
        pd_profile_merge(&ba, &a);
        CHECK(pd_profile_equal(&ab, &ba));
        pd_profile_merge(&ab_c, &ab);
        pd_profile_merge(&ab_c, &c);
        pd_profile_merge(&bc, &b);
        pd_profile_merge(&bc, &c);
        pd_profile_merge(&a_bc, &a);
        pd_profile_merge(&a_bc, &bc);
        CHECK(pd_profile_equal(&ab_c, &a_bc));
        CHECK(tr_same_bytes(&ab_c, &seq));

        /* the independent count: per tracked type, events, time range,
         * color counts (exact: 10 values under the cap of 64), price */
        for (int t = 0; t < s.ntracked; t++) {
            int ti = t == 0 ? 1 : 2; /* park, contact in tr_types */
            uint64_t cnt = 0, colors[10] = {0}, pc = 0, hist[4] = {0};
            double psum = 0, pmin = 0, pmax = 0;
            int64_t f = 0, l = 0;
            for (int i = 0; i < n; i++) {
                if (evs[i].type != ti) continue;
                if (!cnt || evs[i].ts < f) f = evs[i].ts;
                if (!cnt || evs[i].ts > l) l = evs[i].ts;
                cnt++;
                if (evs[i].color >= 0) colors[evs[i].color]++;
                if (evs[i].has_price) {
                    double v = evs[i].price;
                    if (!pc || v < pmin) pmin = v;
                    if (!pc || v > pmax) pmax = v;
                    pc++;
                    psum += v;
                    hist[v <= 0 ? 0 : v <= 10 ? 1 : v <= 100 ? 2 : 3]++;
                }
            }
            const pd_profile *q = pd_profile_sub(&seq, t);
            CHECK_INT(q ? q->events : 0, cnt);
            if (!q) continue;
            CHECK_INT(q->first_ts, f);
            CHECK_INT(q->last_ts, l);
            CHECK_INT(q->types.n, 0);
            for (int v = 0; v < 10; v++)
                CHECK_INT(pd_catset_get(&q->dims[0].cat, tr_vals[v], strlen(tr_vals[v])), colors[v]);
            CHECK_INT(q->dims[1].num.count, pc);
            if (pc) {
                CHECK_DBL(q->dims[1].num.sum, psum, 0);
                CHECK_DBL(q->dims[1].num.min, pmin, 0);
                CHECK_DBL(q->dims[1].num.max, pmax, 0);
                for (int k = 0; k < 4; k++) CHECK_INT(q->dims[1].num.hist[k], hist[k]);
            }
        }
        for (size_t i = 0; i < PD_ARRAY_LEN(all); i++) pd_profile_free(all[i]);
    }
}

/* pd_profile_encode_event == pd_profile_encode of the one-event profile,
 * for tracked and untracked types. */
TEST(tracks_encode_event)
{
    pd_schema s;
    tr_schema(&s, 1);
    uint64_t r = 7;
    for (int i = 0; i < 400; i++) {
        tr_ev t;
        tr_random(&t, &r);
        pd_event ev;
        tr_event(&t, &ev);
        pd_profile p;
        pd_profile_init(&p, &s);
        pd_profile_add(&p, &ev);
        pd_buf a = {0}, b = {0};
        pd_profile_encode(&p, &a);
        pd_profile_encode_event(&s, &ev, &b);
        CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
        CHECK_INT((uint8_t)a.p[1], (t.type == 1 || t.type == 2) ? PD_PF_TRACKED : 0);
        pd_buf_free(&a);
        pd_buf_free(&b);
        pd_profile_free(&p);
    }
}

/* The decoder refuses a sub-profiles section that disagrees with the
 * all-types profile or the schema, and every truncation or byte flip of a
 * valid encoding either fails cleanly or decodes to a canonical profile. */
TEST(tracks_decode_validation)
{
    pd_schema s, plain;
    tr_schema(&s, 1);
    tr_schema(&plain, 0);
    uint64_t r = 99;
    tr_ev evs[60];
    for (int i = 0; i < 60; i++) tr_random(&evs[i], &r);
    evs[0].type = 1; /* at least one park */
    pd_profile p, q, x;
    pd_profile_init(&p, &s);
    pd_profile_init(&q, &s);
    pd_profile_init(&x, &plain);
    tr_add(&p, evs, 0, 60);
    pd_buf b = {0};
    pd_profile_encode(&p, &b);
    CHECK_INT((uint8_t)b.p[1], PD_PF_TRACKED);
    char err[200];
    /* a schema without tracked types refuses the flag */
    CHECK_INT(pd_profile_decode(&x, b.p, b.len, err, sizeof err), PD_ECORRUPT);
    CHECK(strstr(err, "unknown flags") != NULL);
    /* dropping the section: the type counts name park, no sub-profile */
    {
        pd_profile y;
        pd_profile_init(&y, &s);
        pd_profile_merge(&y, &p);
        pd_profile_clear(&y.sub[0]);
        pd_profile_clear(&y.sub[1]);
        pd_buf c = {0};
        pd_profile_encode(&y, &c);
        CHECK_INT((uint8_t)c.p[1], 0);
        CHECK_INT(pd_profile_decode(&q, c.p, c.len, err, sizeof err), PD_ECORRUPT);
        CHECK(strstr(err, "differ from the type's count") != NULL);
        pd_buf_free(&c);
        /* one park event too many in the sub-profile */
        pd_profile_merge(&y, &p);
        pd_profile_clear(&y.sub[0]);
        pd_profile_merge(&y.sub[0], &p.sub[0]);
        tr_ev extra = evs[0];
        pd_event ev;
        tr_event(&extra, &ev);
        pd_profile_add(&y.sub[0], &ev);
        pd_catset_clear(&y.sub[0].types);
        pd_profile_encode(&y, &c);
        CHECK_INT(pd_profile_decode(&q, c.p, c.len, err, sizeof err), PD_ECORRUPT);
        pd_buf_free(&c);
        pd_profile_free(&y);
    }
    for (size_t cut = 0; cut < b.len; cut++) CHECK(pd_profile_decode(&q, b.p, cut, err, sizeof err) != PD_OK);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            pd_buf m = {0};
            pd_buf_append(&m, b.p, b.len);
            m.p[i] ^= (char)(1 << bit);
            if (pd_profile_decode(&q, m.p, m.len, err, sizeof err) == PD_OK) {
                pd_buf e = {0};
                pd_profile_encode(&q, &e);
                CHECK(e.len == m.len && memcmp(e.p, m.p, m.len) == 0);
                pd_buf_free(&e);
            }
            pd_buf_free(&m);
        }
    }
    CHECK_INT(pd_profile_decode(&q, b.p, b.len, err, sizeof err), PD_OK);
    CHECK(pd_profile_equal(&p, &q));
    pd_buf_free(&b);
    pd_profile_free(&p);
    pd_profile_free(&q);
    pd_profile_free(&x);
}

/* ---- the query: types= and weights= ---- */

#include "query.h"

#define TR_TODAY 20700 /* a day number */

static int tr_parse(pd_query *q, const pd_schema *s, const char *qs, char *err, size_t errlen)
{
    return pd_query_parse_params(q, qs, s, TR_TODAY, 30, err, errlen);
}

TEST(tracks_query_params)
{
    pd_schema s, plain;
    tr_schema(&s, 1);
    tr_schema(&plain, 0);
    pd_query q;
    char err[512];
    CHECK_INT(tr_parse(&q, &s, "types=park", err, sizeof err), PD_OK);
    CHECK_DBL(q.w_rest, 0, 0);
    CHECK_DBL(q.w_tracked[0], 1, 0);
    CHECK_DBL(q.w_tracked[1], 0, 0);
    CHECK_INT(q.types_mask, 1);
    CHECK_INT(tr_parse(&q, &s, "weights=view:2,park:3,contact:5,*:2", err, sizeof err), PD_OK);
    CHECK_DBL(q.w_rest, 2, 0);
    CHECK_DBL(q.w_tracked[0], 3, 0);
    CHECK_DBL(q.w_tracked[1], 5, 0);
    CHECK_INT(tr_parse(&q, &s, "weights=park%3A0.5", err, sizeof err), PD_OK);
    CHECK_DBL(q.w_rest, 1, 0);
    CHECK_DBL(q.w_tracked[0], 0.5, 0);
    CHECK_DBL(q.w_tracked[1], 1, 0);
    CHECK_INT(tr_parse(&q, &s, "types=contact,park&weights=park:2,*:7", err, sizeof err), PD_OK);
    CHECK_DBL(q.w_rest, 0, 0);
    CHECK_DBL(q.w_tracked[0], 2, 0);
    CHECK_DBL(q.w_tracked[1], 7, 0);
    /* plain: every weight 1 */
    CHECK_INT(tr_parse(&q, &s, "days=3", err, sizeof err), PD_OK);
    CHECK_DBL(q.w_rest, 1, 0);
    CHECK_DBL(q.w_tracked[1], 1, 0);
    const struct {
        const pd_schema *s;
        const char *qs, *msg;
    } bad[] = {
        {&s, "types=view", "'view' is not a tracked event type (tracked: park, contact)"},
        {&s, "types=", "empty list"},
        {&s, "types=park,,contact", "empty type name"},
        {&plain, "types=park", "tracks no event types"},
        {&s, "weights=view:2", "'view' is not a tracked event type"},
        {&s, "weights=view:2,*:1", "'view' is not a tracked event type"},
        {&s, "weights=view:1,search:2", "is not a tracked event type"},
        {&s, "weights=park:-1", "a weight is a number from 0 to 1e9"},
        {&s, "weights=park:nan", "a weight is a number"},
        {&s, "weights=park:inf", "a weight is a number"},
        {&s, "weights=park:1e10", "a weight is a number"},
        {&s, "weights=park:", "a weight is a number"},
        {&s, "weights=park", "expected type:weight"},
        {&s, "weights=:3", "expected type:weight"},
        {&s, "weights=park:1,park:2", "'park' given more than once"},
        {&s, "weights=*:1,*:2", "'*' given more than once"},
        {&s, "types=park&types=contact", "given more than once"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_INT(tr_parse(&q, bad[i].s, bad[i].qs, err, sizeof err), PD_EINVAL);
        if (!strstr(err, bad[i].msg)) printf("    %s: '%s'\n", bad[i].qs, err);
        CHECK(strstr(err, bad[i].msg) != NULL);
    }
    /* an untracked type with the weight of '*' is accepted */
    CHECK_INT(tr_parse(&q, &s, "weights=view:1,park:3,contact:5", err, sizeof err), PD_OK);
    CHECK_INT(tr_parse(&q, &s, "weights=search:2,view:2,*:2", err, sizeof err), PD_OK);
}

static void tr_render(const pd_schema *s, const char *qs, const pd_profile *days, int n, pd_buf *out)
{
    pd_query q;
    char err[256];
    CHECK_INT(tr_parse(&q, s, qs, err, sizeof err), PD_OK);
    pd_query_day qd[4];
    for (int i = 0; i < n; i++) qd[i] = (pd_query_day){TR_TODAY - n + 1 + i, &days[i]};
    out->len = 0;
    CHECK_INT(pd_query_render(&q, s, "u", 1, 0, q.anchor_day, qd, n, out), PD_OK);
    pd_buf_putc(out, '}');
}

/* Hand-computed answers: 2 views (red, price 10), 1 park (red, price
 * 30), 2 contacts (blue, price 100) on one day. */
TEST(tracks_query_render)
{
    pd_schema s;
    tr_schema(&s, 1);
    pd_profile p;
    pd_profile_init(&p, &s);
    tr_ev e[5] = {
        {0, 0, -1, 1, 10, 1790000000000LL, 1}, {0, 0, -1, 1, 10, 1790000001000LL, 2},
        {1, 0, -1, 1, 30, 1790000002000LL, 3}, {2, 1, -1, 1, 100, 1790000003000LL, 4},
        {2, 1, -1, 1, 100, 1790000004000LL, 5},
    };
    tr_add(&p, e, 0, 5);
    pd_buf out = {0};
    tr_render(&s, "days=1&types=park,contact&dims=color,price", &p, 1, &out);
    CHECK(strstr(out.p, "\"types\":[\"park\",\"contact\"],\"events\":3,\"event_types\":{\"contact\":2,\"park\":1}") != NULL);
    CHECK(strstr(out.p, "\"counts\":{\"v0\":1,\"v1\":2}") != NULL);
    CHECK(strstr(out.p, "\"count\":3,\"mean\":76.666666666666671") != NULL || strstr(out.p, "\"count\":3,\"mean\":76.6666") != NULL);
    CHECK(strstr(out.p, "\"min\":30,\"max\":100,") != NULL);
    /* the time range of the park and contact events */
    CHECK(strstr(out.p, "\"first_seen\":\"2026-09-21T14:13:22.000Z\",\"last_seen\":\"2026-09-21T14:13:24.000Z\"") != NULL);
    /* weights: view 1 (as '*'), park 3, contact 5: events 2 + 3 + 10 */
    tr_render(&s, "days=1&weights=view:1,park:3,contact:5&dims=color,price", &p, 1, &out);
    CHECK(strstr(out.p, "\"events\":15,\"event_types\":{\"contact\":10,\"park\":3,\"view\":2}") != NULL);
    CHECK(strstr(out.p, "\"total\":15") != NULL);
    CHECK(strstr(out.p, "\"counts\":{\"v0\":5,\"v1\":10}") != NULL);
    /* price: count 15, sum 2*10 + 3*30 + 5*200 = 1110, mean 74 */
    CHECK(strstr(out.p, "\"count\":15,\"mean\":74,") != NULL);
    CHECK(strstr(out.p, "\"min\":10,\"max\":100,\"histogram\"") != NULL);
    /* a tracked type weighted 0 beside '*' > 0: min/max are the all-types ones */
    tr_render(&s, "days=1&weights=contact:0&dims=price", &p, 1, &out);
    CHECK(strstr(out.p, "\"count\":3,\"mean\":16.666666") != NULL);
    CHECK(strstr(out.p, "\"min\":10,\"max\":100,\"minmax_approximate\":true") != NULL);
    /* types= with nothing of that type in range: events 0, no time range */
    pd_profile v;
    pd_profile_init(&v, &s);
    tr_add(&v, e, 0, 2);
    tr_render(&s, "days=1&types=park", &v, 1, &out);
    CHECK(strstr(out.p, "\"events\":0,\"event_types\":{},\"event_types_approximate\":false,\"first_seen\":null,\"last_seen\":null,\"dimensions\":{}") != NULL);
    /* no types/weights: no trace of the tracks in the answer */
    tr_render(&s, "days=1", &p, 1, &out);
    CHECK(strstr(out.p, "\"events\":5,\"event_types\":{\"contact\":2,\"park\":1,\"view\":2}") != NULL);
    CHECK(strstr(out.p, "types\":[") == NULL && strstr(out.p, "weights") == NULL && strstr(out.p, "approximate\":true") == NULL);
    pd_buf_free(&out);
    pd_profile_free(&p);
    pd_profile_free(&v);
}

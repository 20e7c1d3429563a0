/*
 * test_recent.c -- recent items (issue 19 item 4): the K most recent events
 * of a user-day kept by a total order (time, then the occurrence key, then
 * the entry bytes). Property tests: add in any order and merge in any
 * grouping give byte-identical profiles (associative, commutative), the
 * kept items are exactly the K first of the events sorted here
 * independently, ties of time and key are broken by content the same way
 * whatever the order; the codec round-trips, the single-event encoder
 * agrees, corrupt input is refused; the schema's "recent" key.
 */
#include "test.h"
#include "profile.h"
#include "query.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rc_rng(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void rc_schema(pd_schema *s, int max)
{
    char js[512];
    snprintf(js, sizeof js,
             "{\"dimensions\":[{\"name\":\"color\",\"type\":\"categorical\"},"
             "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[0,10,100]}],"
             "\"tracked_types\":[\"park\"],"
             "\"recent\":{\"max\":%d,\"item_id\":\"item.id\",\"attributes\":[\"price\",\"color\"]}}",
             max);
    char err[256];
    int rc = pd_schema_load_json(s, js, strlen(js), 0, err, sizeof err);
    if (rc) printf("    schema: %s\n", err);
    CHECK_INT(rc, PD_OK);
}

static const char *const rc_types[] = {"view", "park", "contact"};
static const char *const rc_colors[] = {"red", "blue", "green"};
static char rc_items[50][16];

typedef struct {
    int type, color, item, has_price; /* color/item -1: absent */
    double price;
    int64_t ts;
    uint64_t okey;
} rc_ev;

static void rc_random(rc_ev *e, uint64_t *r, int narrow)
{
    e->type = (int)(rc_rng(r) % 3);
    e->color = (int)(rc_rng(r) % 4) - 1;
    e->item = (int)(rc_rng(r) % 51) - 1;
    e->has_price = rc_rng(r) % 3 != 0;
    e->price = (double)(rc_rng(r) % 200) - 20;
    /* narrow 1: few distinct times, so ties need the key; narrow 2: few
     * keys as well, so ties need the content */
    e->ts = 1790000000000LL + (int64_t)(rc_rng(r) % (narrow ? 3 : 86400000));
    e->okey = narrow == 2 ? rc_rng(r) % 2 : rc_rng(r);
}

static void rc_event(const rc_ev *t, pd_event *ev)
{
    if (!rc_items[0][0])
        for (int i = 0; i < 50; i++) snprintf(rc_items[i], sizeof rc_items[i], "ad-%d", i);
    memset(ev, 0, sizeof *ev);
    ev->user_id = "u";
    ev->user_id_len = 1;
    ev->type = rc_types[t->type];
    ev->type_len = strlen(ev->type);
    ev->ts_ms = t->ts;
    ev->okey = t->okey;
    ev->nattrs = 2;
    if (t->color >= 0) {
        ev->attrs[0].kind = PD_ATTR_STR;
        ev->attrs[0].s = rc_colors[t->color];
        ev->attrs[0].len = (uint32_t)strlen(ev->attrs[0].s);
    }
    if (t->has_price) {
        ev->attrs[1].kind = PD_ATTR_NUM;
        ev->attrs[1].num = t->price;
    }
    if (t->item >= 0) {
        ev->item_id = rc_items[t->item];
        ev->item_id_len = (uint32_t)strlen(ev->item_id);
    }
}

static void rc_add(pd_profile *p, const rc_ev *evs, int from, int to)
{
    for (int i = from; i < to; i++) {
        pd_event ev;
        rc_event(&evs[i], &ev);
        pd_profile_add(p, &ev);
    }
}

static int rc_bytes_equal(const pd_profile *a, const pd_profile *b)
{
    pd_buf x = {0}, y = {0};
    pd_profile_encode(a, &x);
    pd_profile_encode(b, &y);
    int ok = x.len == y.len && memcmp(x.p, y.p, x.len) == 0;
    pd_buf_free(&x);
    pd_buf_free(&y);
    return ok;
}

static int rc_roundtrip(const pd_profile *p)
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

/* The independent order: time desc, key desc (the generator of the
 * non-narrow rounds never repeats a (time, key) pair in practice; the
 * check skips rounds where it does). */
static int rc_ord(const void *x, const void *y)
{
    const rc_ev *a = x, *b = y;
    if (a->ts != b->ts) return a->ts > b->ts ? -1 : 1;
    if (a->okey != b->okey) return a->okey > b->okey ? -1 : 1;
    return 0;
}

TEST(recent_properties)
{
    enum { N = 300 };
    static rc_ev evs[N], shuf[N], sorted[N];
    static const int maxes[] = {1, 3, 10};
    for (size_t mi = 0; mi < PD_ARRAY_LEN(maxes); mi++) {
        pd_schema s;
        rc_schema(&s, maxes[mi]);
        uint64_t r = 31 + mi;
        for (int round = 0; round < 40; round++) {
            int narrow = round % 4 == 3 ? 2 : round % 4 == 2;
            int n = 1 + (int)(rc_rng(&r) % N);
            for (int i = 0; i < n; i++) rc_random(&evs[i], &r, narrow);
            memcpy(shuf, evs, (size_t)n * sizeof evs[0]);
            for (int i = n - 1; i > 0; i--) {
                int j = (int)(rc_rng(&r) % (uint64_t)(i + 1));
                rc_ev t = shuf[i];
                shuf[i] = shuf[j];
                shuf[j] = t;
            }
            pd_profile seq, sh, ch, a, b, c, ab, ba, ab_c, bc, a_bc;
            pd_profile *all[] = {&seq, &sh, &ch, &a, &b, &c, &ab, &ba, &ab_c, &bc, &a_bc};
            for (size_t i = 0; i < PD_ARRAY_LEN(all); i++) pd_profile_init(all[i], &s);
            rc_add(&seq, evs, 0, n);
            rc_add(&sh, shuf, 0, n);
            CHECK(rc_bytes_equal(&seq, &sh));
            for (int end = n; end > 0;) {
                int len = 1 + (int)(rc_rng(&r) % 30);
                int start = end - len < 0 ? 0 : end - len;
                pd_profile chunk;
                pd_profile_init(&chunk, &s);
                rc_add(&chunk, shuf, start, end);
                pd_profile_merge(&ch, &chunk);
                pd_profile_free(&chunk);
                end = start;
            }
            CHECK(pd_profile_equal(&seq, &ch));
            CHECK(rc_bytes_equal(&seq, &ch));
            CHECK(rc_roundtrip(&seq));
            int t1 = n / 3, t2 = 2 * n / 3;
            rc_add(&a, evs, 0, t1);
            rc_add(&b, evs, t1, t2);
            rc_add(&c, evs, t2, n);
            pd_profile_merge(&ab, &a);
            pd_profile_merge(&ab, &b);
            pd_profile_merge(&ba, &b);
            pd_profile_merge(&ba, &a);
            CHECK(rc_bytes_equal(&ab, &ba));
            pd_profile_merge(&ab_c, &ab);
            pd_profile_merge(&ab_c, &c);
            pd_profile_merge(&bc, &b);
            pd_profile_merge(&bc, &c);
            pd_profile_merge(&a_bc, &a);
            pd_profile_merge(&a_bc, &bc);
            CHECK(rc_bytes_equal(&ab_c, &a_bc));
            CHECK(rc_bytes_equal(&ab_c, &seq));
            /* the K first of the events, sorted here */
            uint32_t k = (uint32_t)(n < maxes[mi] ? n : maxes[mi]);
            CHECK_INT(seq.nrecent, k);
            memcpy(sorted, evs, (size_t)n * sizeof evs[0]);
            qsort(sorted, (size_t)n, sizeof sorted[0], rc_ord);
            int ties = 0;
            for (int i = 1; i < n; i++) ties |= rc_ord(&sorted[i - 1], &sorted[i]) == 0;
            if (!ties) {
                for (uint32_t i = 0; i < seq.nrecent && i < k; i++) {
                    pd_recent_view v;
                    pd_recent_view_of(&s, &seq.recent[i], &v);
                    CHECK_INT(seq.recent[i].ts, sorted[i].ts);
                    CHECK(seq.recent[i].okey == sorted[i].okey);
                    CHECK(v.type_len == strlen(rc_types[sorted[i].type]) &&
                          memcmp(v.type, rc_types[sorted[i].type], v.type_len) == 0);
                    if (sorted[i].item >= 0)
                        CHECK(v.item_id && v.item_id_len == strlen(rc_items[sorted[i].item]) &&
                              memcmp(v.item_id, rc_items[sorted[i].item], v.item_id_len) == 0);
                    else
                        CHECK(v.item_id == NULL);
                    CHECK_INT(v.attrs[0].kind, sorted[i].has_price ? 2 : 0);
                    if (sorted[i].has_price) CHECK_DBL(v.attrs[0].num, sorted[i].price, 0);
                    CHECK_INT(v.attrs[1].kind, sorted[i].color >= 0 ? 1 : 0);
                }
            }
            for (size_t i = 0; i < PD_ARRAY_LEN(all); i++) pd_profile_free(all[i]);
        }
    }
}

TEST(recent_encode_event_and_decode)
{
    pd_schema s, off;
    rc_schema(&s, 4);
    rc_schema(&off, 0);
    CHECK_INT(off.recent_max, 0);
    uint64_t r = 5;
    for (int i = 0; i < 300; i++) {
        rc_ev t;
        rc_random(&t, &r, 0);
        pd_event ev;
        rc_event(&t, &ev);
        pd_profile p;
        pd_profile_init(&p, &s);
        pd_profile_add(&p, &ev);
        pd_buf a = {0}, b = {0};
        pd_profile_encode(&p, &a);
        pd_profile_encode_event(&s, &ev, &b);
        CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
        CHECK((a.p[1] & PD_PF_RECENT) != 0);
        pd_buf_free(&a);
        pd_buf_free(&b);
        pd_profile_free(&p);
    }
    rc_ev evs[40];
    for (int i = 0; i < 40; i++) rc_random(&evs[i], &r, i % 2);
    pd_profile p, q, x;
    pd_profile_init(&p, &s);
    pd_profile_init(&q, &s);
    pd_profile_init(&x, &off);
    rc_add(&p, evs, 0, 40);
    pd_buf b = {0};
    pd_profile_encode(&p, &b);
    char err[200];
    CHECK_INT(pd_profile_decode(&x, b.p, b.len, err, sizeof err), PD_ECORRUPT); /* recent off */
    for (size_t cut = 0; cut < b.len; cut++) CHECK(pd_profile_decode(&q, b.p, cut, err, sizeof err) != PD_OK);
    for (size_t i = 0; i < b.len; i++)
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
    CHECK_INT(pd_profile_decode(&q, b.p, b.len, err, sizeof err), PD_OK);
    CHECK(pd_profile_equal(&p, &q));
    /* the dump shows them, most recent first */
    pd_buf j = {0};
    pd_profile_to_json(&q, &j);
    CHECK(strstr(j.p, ",\"recent\":[{\"ts\":\"") != NULL);
    pd_buf_free(&j);
    pd_buf_free(&b);
    pd_profile_free(&p);
    pd_profile_free(&q);
    pd_profile_free(&x);
}

TEST(recent_schema)
{
    pd_schema s, t;
    char err[256];
    rc_schema(&s, 7);
    CHECK_INT(s.recent_max, 7);
    CHECK_INT(s.recent_nattrs, 2);
    CHECK_INT(s.recent_attrs[0], 1);
    pd_buf j = {0};
    pd_schema_to_json(&s, &j);
    CHECK(strstr(j.p, "\"recent\":{\"max\":7,\"item_id\":\"item.id\",\"attributes\":[\"price\",\"color\"]}") != NULL);
    CHECK_INT(pd_schema_load_json(&t, j.p, j.len, 0, err, sizeof err), PD_OK);
    CHECK(t.fingerprint == s.fingerprint);
    pd_buf_free(&j);
    const char *def = "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{}}";
    CHECK_INT(pd_schema_load_json(&t, def, strlen(def), 0, err, sizeof err), PD_OK);
    CHECK_INT(t.recent_max, 10);
    CHECK_INT(t.recent_item.depth, 2);
    const char *offj = "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"max\":0}}";
    const char *none = "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}]}";
    pd_schema u, v;
    uint64_t fp_empty = t.fingerprint; /* "recent":{} = every default */
    CHECK_INT(pd_schema_load_json(&t, offj, strlen(offj), 0, err, sizeof err), PD_OK);
    CHECK_INT(t.recent_max, 0);
    CHECK_INT(pd_schema_load_json(&u, none, strlen(none), 0, err, sizeof err), PD_OK);
    /* no key: on, the defaults (10, item.id, no attributes) */
    CHECK_INT(u.recent_max, PD_RECENT_DEFAULT);
    CHECK_INT(u.recent_max, 10);
    CHECK_INT(u.recent_item.depth, 2);
    CHECK_STR(u.recent_item.seg[0], "item");
    CHECK_STR(u.recent_item.seg[1], "id");
    CHECK_INT(u.recent_nattrs, 0);
    CHECK(u.fingerprint == fp_empty);
    CHECK(t.fingerprint != u.fingerprint);
    /* the canonical form says which: off written out, both reload alike */
    pd_schema *both[] = {&t, &u};
    for (int i = 0; i < 2; i++) {
        j.len = 0;
        pd_schema_to_json(both[i], &j);
        CHECK(strstr(j.p, i ? "\"recent\":{\"max\":10,\"item_id\":\"item.id\",\"attributes\":[]}"
                             : "\"recent\":{\"max\":0}") != NULL);
        CHECK_INT(pd_schema_load_json(&v, j.p, j.len, 0, err, sizeof err), PD_OK);
        CHECK(v.fingerprint == both[i]->fingerprint);
        CHECK_INT(v.recent_max, both[i]->recent_max);
    }
    pd_buf_free(&j);
    pd_schema_default(&v, 64); /* the built-in schema: the same default */
    CHECK_INT(v.recent_max, 10);
    CHECK_INT(v.recent_item.depth, 2);
    CHECK_STR(v.recent_item.seg[1], "id");
    CHECK_INT(v.recent_nattrs, 0);
    static const char *const bad[] = {
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":5}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"max\":101}}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"max\":-1}}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"max\":2.5}}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"item_id\":\"a..b\"}}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"attributes\":[\"nope\"]}}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"attributes\":[\"c\",\"c\"]}}",
        "{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\"}],\"recent\":{\"size\":3}}",
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_INT(pd_schema_load_json(&t, bad[i], strlen(bad[i]), 0, err, sizeof err), PD_EINVAL);
        CHECK(strstr(err, "recent") != NULL);
    }
}

#include "event.h"

/* The parser reads the schema's item id path like a categorical value. */
TEST(recent_item_id_parse)
{
    pd_schema s;
    rc_schema(&s, 3);
    static const struct {
        const char *js, *want;
    } cases[] = {
        {"{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"id\":\"ad-7\",\"color\":\"red\"}}", "ad-7"},
        {"{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"id\":42}}", "42"},
        {"{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"id\":true}}", "true"},
        {"{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"id\":null}}", NULL},
        {"{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"id\":{}}}", NULL},
        {"{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"id\":\"\"}}", NULL},
        {"{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\"}", NULL},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(cases); i++) {
        pd_event ev;
        char err[200];
        CHECK_INT(pd_event_parse(&ev, &s, cases[i].js, strlen(cases[i].js), 65536, err, sizeof err), PD_OK);
        if (cases[i].want)
            CHECK(ev.item_id && ev.item_id_len == strlen(cases[i].want) &&
                  memcmp(ev.item_id, cases[i].want, ev.item_id_len) == 0);
        else
            CHECK(ev.item_id == NULL);
        pd_event_free(&ev);
    }
}

/* The items of the answer's top-level "recent" list (0: no key). */
static int rc_listed(const char *json, const char **start)
{
    const char *r = strstr(json, ",\"recent\":[");
    if (!r) return 0;
    *start = r;
    const char *end = strchr(r + 11, ']'); /* (no item id or value here holds one) */
    int n = 0;
    for (const char *x = r; (x = strstr(x, "{\"ts\":")) && x < end; x++) n++;
    return n;
}

TEST(recent_query_limit)
{
    pd_schema s, off;
    rc_schema(&s, 4);
    rc_schema(&off, 0);
    rc_ev evs[30];
    uint64_t r = 11;
    for (int i = 0; i < 30; i++) rc_random(&evs[i], &r, 0);
    pd_profile p;
    pd_profile_init(&p, &s);
    rc_add(&p, evs, 0, 30);
    const int64_t today = 20000;
    pd_query_day day = {today, &p};
    char err[256];
    const char *qs[] = {"days=3", "days=3&recent=2", "days=3&recent=4", "days=3&recent=0"};
    pd_buf out[4] = {{0}};
    for (int k = 0; k < 4; k++) {
        pd_query q;
        CHECK_INT(pd_query_parse_params(&q, qs[k], &s, today, 60, err, sizeof err), PD_OK);
        CHECK_INT(pd_query_render(&q, &s, "u", 1, 0, today, &day, 1, &out[k]), PD_OK);
    }
    const char *a = NULL, *b = NULL, *c = NULL, *z = NULL;
    CHECK_INT(rc_listed(out[0].p, &a), 4);       /* the schema's max */
    CHECK_INT(rc_listed(out[1].p, &b), 2);       /* recent=2: the first two of those */
    CHECK_INT(rc_listed(out[2].p, &c), 4);
    CHECK_INT(rc_listed(out[3].p, &z), 0);       /* recent=0: no key */
    CHECK(z == NULL && strstr(out[3].p, "\"recent\"") == NULL);
    if (a && b) {
        const char *cut = strstr(b, "}}]");
        CHECK(cut && strncmp(a, b, (size_t)(cut - b) + 2) == 0);
    }
    CHECK(a && c && strcmp(a, c) == 0);
    for (int k = 0; k < 4; k++) pd_buf_free(&out[k]);
    pd_query q;
    CHECK_INT(pd_query_parse_params(&q, "recent=5", &s, today, 60, err, sizeof err), PD_EINVAL);
    CHECK(strstr(err, "parameter 'recent': expected an integer from 0 to 4 (the schema's recent max), got '5'"));
    CHECK_INT(pd_query_parse_params(&q, "recent=-1", &s, today, 60, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_query_parse_params(&q, "recent=01", &s, today, 60, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_query_parse_params(&q, "recent=", &s, today, 60, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_query_parse_params(&q, "recent=1&recent=1", &s, today, 60, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_query_parse_params(&q, "recent=0", &off, today, 60, err, sizeof err), PD_EINVAL);
    CHECK(strstr(err, "keeps no recent items"));
    pd_profile_free(&p);
}

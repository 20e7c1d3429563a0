/* test_event.c -- event parsing and validation. Expected values (epoch ms,
 * number texts, reason codes) are written by hand or computed separately
 * (Python datetime / printf), never taken from the parser's own output. */
#include "test.h"

#include <stdlib.h>

#include "event.h"
#include "event_cjson.h"
#include "schema.h"
#include "util.h"

/* A small schema built by hand (independent of schema.c):
 *   0 color   categorical  item.color, filters.color
 *   1 make    categorical  item.make, filters.make
 *   2 price   numeric      item.price, filters.price
 *   3 doors   categorical  item.doors
 *   4 year    numeric      item.year
 *   5 deep    categorical  a.b.c, top      (depth 3, then depth 1)
 */
enum { D_COLOR, D_MAKE, D_PRICE, D_DOORS, D_YEAR, D_DEEP, D_N };

static void set_path(pd_path *p, const char *a, const char *b, const char *c)
{
    memset(p, 0, sizeof *p);
    const char *segs[3] = {a, b, c};
    for (int i = 0; i < 3 && segs[i]; i++) {
        snprintf(p->seg[i], PD_MAX_NAME, "%s", segs[i]);
        p->depth++;
    }
}

static void add_dim(pd_schema *s, const char *name, pd_dim_type t, int both)
{
    pd_dim *d = &s->dims[s->ndims++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->type = t;
    set_path(&d->paths[d->npaths++], "item", name, NULL);
    if (both) set_path(&d->paths[d->npaths++], "filters", name, NULL);
}

static void test_schema(pd_schema *s)
{
    memset(s, 0, sizeof *s);
    s->max_values = 64;
    add_dim(s, "color", PD_DIM_CATEGORICAL, 1);
    add_dim(s, "make", PD_DIM_CATEGORICAL, 1);
    add_dim(s, "price", PD_DIM_NUMERIC, 1);
    add_dim(s, "doors", PD_DIM_CATEGORICAL, 0);
    add_dim(s, "year", PD_DIM_NUMERIC, 0);
    pd_dim *d = &s->dims[s->ndims++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "deep");
    d->type = PD_DIM_CATEGORICAL;
    set_path(&d->paths[d->npaths++], "a", "b", "c");
    set_path(&d->paths[d->npaths++], "top", NULL, NULL);
}

/* Every input of this file that pd_event_parse takes for JSON is also
 * checked against the cJSON-based extraction of the fields (event_cjson.c). */
static void check_ref(const pd_schema *s, const char *json, size_t len, size_t max, int line)
{
    char why[1200];
    if (pd_event_cjson_compare(s, json, len, max, NULL, why, sizeof why))
        pd_test_fail(__FILE__, line, "differs from the cJSON extraction: %s", why);
}

static int parse(pd_event *ev, const char *json, char *err, size_t errlen)
{
    pd_schema s;
    test_schema(&s);
    check_ref(&s, json, strlen(json), 0, __LINE__);
    return pd_event_parse(ev, &s, json, strlen(json), 0, err, errlen);
}

/* Compares an attribute string (not necessarily NUL-terminated). */
static int attr_is(const pd_event *ev, int d, const char *want)
{
    const pd_attr *a = &ev->attrs[d];
    return a->kind == PD_ATTR_STR && a->len == strlen(want) && memcmp(a->s, want, a->len) == 0;
}

#define CHECK_ATTR_STR(ev, d, want)                                               \
    do {                                                                          \
        if (!attr_is((ev), (d), (want)))                                          \
            pd_test_fail(__FILE__, __LINE__, "attr %d: kind %d \"%.*s\", expected \"%s\"", \
                         (d), (ev)->attrs[d].kind, (int)(ev)->attrs[d].len,        \
                         (ev)->attrs[d].s ? (ev)->attrs[d].s : "", (want));        \
    } while (0)

TEST(event_valid_basic)
{
    pd_event ev;
    char err[256];
    const char *j =
        "{\"event_id\":\"e-1\",\"user_id\":\"u-42\",\"ts\":1795328747333,\"type\":\"view\","
        "\"item\":{\"make\":\"BMW\",\"color\":\"blue\",\"price\":18990}}";
    CHECK_INT(parse(&ev, j, err, sizeof err), PD_EV_OK);
    CHECK_INT(ev.user_id_len, 4);
    CHECK(memcmp(ev.user_id, "u-42", 4) == 0);
    CHECK_INT(ev.event_id_len, 3);
    CHECK(ev.event_id && memcmp(ev.event_id, "e-1", 3) == 0);
    CHECK_INT(ev.type_len, 4);
    CHECK(memcmp(ev.type, "view", 4) == 0);
    CHECK_INT(ev.ts_ms, 1795328747333LL);
    CHECK_INT(ev.nattrs, D_N);
    CHECK_INT(ev.n_bad_attrs, 0);
    CHECK_ATTR_STR(&ev, D_COLOR, "blue");
    CHECK_ATTR_STR(&ev, D_MAKE, "BMW");
    CHECK_INT(ev.attrs[D_PRICE].kind, PD_ATTR_NUM);
    CHECK_DBL(ev.attrs[D_PRICE].num, 18990.0, 0);
    CHECK_INT(ev.attrs[D_DOORS].kind, PD_ATTR_ABSENT);
    CHECK_INT(ev.attrs[D_YEAR].kind, PD_ATTR_ABSENT);
    CHECK_INT(ev.attrs[D_DEEP].kind, PD_ATTR_ABSENT);
    pd_event_free(&ev);
    CHECK(ev.heap_ == NULL && ev.user_id == NULL && ev.type == NULL && ev.event_id == NULL);
    CHECK_INT(ev.nattrs, 0);
    CHECK_INT(ev.n_bad_attrs, 0);
    pd_event_free(&ev); /* twice is harmless */
}

TEST(event_valid_no_event_id_and_null_event_id)
{
    pd_event ev;
    char err[256];
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}", err, sizeof err),
              PD_EV_OK);
    CHECK(ev.event_id == NULL);
    CHECK_INT(ev.event_id_len, 0);
    CHECK_INT(ev.ts_ms, 946684800000LL);
    pd_event_free(&ev);
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"event_id\":null}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK(ev.event_id == NULL);
    pd_event_free(&ev);
}

static void check_ts(const char *tsjson, int64_t want, int line)
{
    pd_event ev;
    char err[256], j[256];
    snprintf(j, sizeof j, "{\"user_id\":\"u\",\"type\":\"t\",\"ts\":%s}", tsjson);
    int rc = parse(&ev, j, err, sizeof err);
    if (rc != PD_EV_OK)
        pd_test_fail(__FILE__, line, "ts %s: rc %d (%s)", tsjson, rc, err);
    else if (ev.ts_ms != want)
        pd_test_fail(__FILE__, line, "ts %s: got %lld, expected %lld", tsjson,
                     (long long)ev.ts_ms, (long long)want);
    pd_event_free(&ev);
}

TEST(event_ts_forms)
{
    /* expectations computed with Python datetime.fromisoformat */
    check_ts("1795328747333", 1795328747333LL, __LINE__);
    check_ts("1.795328747333e12", 1795328747333LL, __LINE__);
    check_ts("\"2026-11-02T10:11:12Z\"", 1793614272000LL, __LINE__);
    check_ts("\"2026-11-02T10:11:12.345Z\"", 1793614272345LL, __LINE__);
    check_ts("\"2026-11-02T12:11:12.345+02:00\"", 1793614272345LL, __LINE__);
    check_ts("\"2026-11-02T05:41:12-04:30\"", 1793614272000LL, __LINE__);
    check_ts("\"2024-02-29T23:59:59.999Z\"", 1709251199999LL, __LINE__);
    check_ts("\"2000-01-01T00:00:00Z\"", 946684800000LL, __LINE__);
    /* range bounds: [PD_TS_MIN_MS, PD_TS_MAX_MS) */
    check_ts("946684800000", 946684800000LL, __LINE__);
    check_ts("7258118399999", 7258118399999LL, __LINE__);
}

TEST(event_attr_source_item_vs_filters)
{
    pd_event ev;
    char err[256];
    /* item absent: filters used */
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"search\","
                         "\"filters\":{\"color\":\"red\",\"price\":5000}}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK_ATTR_STR(&ev, D_COLOR, "red");
    CHECK_INT(ev.attrs[D_PRICE].kind, PD_ATTR_NUM);
    CHECK_DBL(ev.attrs[D_PRICE].num, 5000.0, 0);
    pd_event_free(&ev);
    /* both present: item wins; item.color null falls through to filters */
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
                         "\"item\":{\"color\":\"blue\",\"make\":null},"
                         "\"filters\":{\"color\":\"red\",\"make\":\"Audi\"}}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK_ATTR_STR(&ev, D_COLOR, "blue");
    CHECK_ATTR_STR(&ev, D_MAKE, "Audi");
    CHECK_INT(ev.n_bad_attrs, 0);
    pd_event_free(&ev);
    /* item.color present with wrong type: BAD, no fall-through */
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
                         "\"item\":{\"color\":[\"blue\"]},\"filters\":{\"color\":\"red\"}}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK_INT(ev.attrs[D_COLOR].kind, PD_ATTR_BAD);
    CHECK_INT(ev.n_bad_attrs, 1);
    pd_event_free(&ev);
    /* item: null and filters: null are fine (no attributes) */
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
                         "\"item\":null,\"filters\":null}",
                    err, sizeof err),
              PD_EV_OK);
    for (int d = 0; d < D_N; d++) CHECK_INT(ev.attrs[d].kind, PD_ATTR_ABSENT);
    pd_event_free(&ev);
}

TEST(event_attr_stringified_categoricals)
{
    pd_event ev;
    char err[256];
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
                         "\"item\":{\"doors\":5,\"color\":true,\"make\":false},"
                         "\"top\":-7}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK_ATTR_STR(&ev, D_DOORS, "5");
    CHECK_ATTR_STR(&ev, D_COLOR, "true");
    CHECK_ATTR_STR(&ev, D_MAKE, "false");
    CHECK_ATTR_STR(&ev, D_DEEP, "-7");
    pd_event_free(&ev);

    /* expected texts from printf("%.17g") in Python / by hand */
    static const struct { const char *num, *text; } cases[] = {
        {"0", "0"},
        {"-0", "0"},
        {"42.0", "42"},
        {"4.2e1", "42"},
        {"2.5", "2.5"},
        {"0.1", "0.10000000000000001"},
        {"1e20", "1e+20"},
        {"-1.5e-7", "-1.4999999999999999e-07"},
        {"9007199254740991", "9007199254740991"},   /* 2^53 - 1: integer path */
        {"9007199254740993", "9007199254740992"},   /* rounds to 2^53: %.17g path */
        {"-9007199254740991", "-9007199254740991"},
        {"1e17", "1e+17"},                          /* integral but >= 2^53 */
        {"123456789012345678", "1.2345678901234568e+17"},
        {"-1e300", "-1.0000000000000001e+300"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(cases); i++) {
        char j[256];
        snprintf(j, sizeof j, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
                              "\"item\":{\"doors\":%s}}", cases[i].num);
        int rc = parse(&ev, j, err, sizeof err);
        CHECK_INT(rc, PD_EV_OK);
        if (!attr_is(&ev, D_DOORS, cases[i].text))
            pd_test_fail(__FILE__, __LINE__, "doors %s: got \"%.*s\", expected \"%s\"",
                         cases[i].num, (int)ev.attrs[D_DOORS].len,
                         ev.attrs[D_DOORS].s ? ev.attrs[D_DOORS].s : "", cases[i].text);
        pd_event_free(&ev);
    }
}

TEST(event_attr_null_and_bad)
{
    pd_event ev;
    char err[256];
    char big[400], j[1024];
    memset(big, 'x', 257);
    big[257] = '\0';
    /* color: object (bad), make: 257-byte string (bad), price: string (bad),
     * doors: null (absent), year: true (bad), deep via a.b not object (bad) */
    snprintf(j, sizeof j,
             "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
             "\"item\":{\"color\":{\"x\":1},\"make\":\"%s\",\"price\":\"18990\","
             "\"doors\":null,\"year\":true},\"a\":{\"b\":5},\"top\":\"ignored\"}",
             big);
    CHECK_INT(parse(&ev, j, err, sizeof err), PD_EV_OK);
    CHECK_INT(ev.attrs[D_COLOR].kind, PD_ATTR_BAD);
    CHECK_INT(ev.attrs[D_MAKE].kind, PD_ATTR_BAD);
    CHECK_INT(ev.attrs[D_PRICE].kind, PD_ATTR_BAD);
    CHECK_INT(ev.attrs[D_DOORS].kind, PD_ATTR_ABSENT);
    CHECK_INT(ev.attrs[D_YEAR].kind, PD_ATTR_BAD);
    CHECK_INT(ev.attrs[D_DEEP].kind, PD_ATTR_BAD);
    CHECK_INT(ev.n_bad_attrs, 5);
    pd_event_free(&ev);

    /* 256-byte categorical is fine; empty string, array, inf are bad */
    memset(big, 'y', 256);
    big[256] = '\0';
    snprintf(j, sizeof j,
             "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
             "\"item\":{\"color\":\"\",\"make\":\"%s\",\"price\":1e999,\"doors\":[],"
             "\"year\":2019.5},\"a\":{\"b\":{\"c\":\"deepval\"}}}",
             big);
    CHECK_INT(parse(&ev, j, err, sizeof err), PD_EV_OK);
    CHECK_INT(ev.attrs[D_COLOR].kind, PD_ATTR_BAD);
    CHECK_INT(ev.attrs[D_MAKE].kind, PD_ATTR_STR);
    CHECK_INT(ev.attrs[D_MAKE].len, 256);
    CHECK_INT(ev.attrs[D_PRICE].kind, PD_ATTR_BAD);
    CHECK_INT(ev.attrs[D_DOORS].kind, PD_ATTR_BAD);
    CHECK_INT(ev.attrs[D_YEAR].kind, PD_ATTR_NUM);
    CHECK_DBL(ev.attrs[D_YEAR].num, 2019.5, 0);
    CHECK_ATTR_STR(&ev, D_DEEP, "deepval");
    CHECK_INT(ev.n_bad_attrs, 3);
    pd_event_free(&ev);

    /* depth-3 path absent (a.b null) falls through to the depth-1 path */
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"x\","
                         "\"a\":{\"b\":null},\"top\":\"t1\"}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK_ATTR_STR(&ev, D_DEEP, "t1");
    pd_event_free(&ev);
}

TEST(event_utf8_user_ids)
{
    pd_event ev;
    char err[256];
    /* "ü-用户-😀" as raw UTF-8 */
    CHECK_INT(parse(&ev, "{\"user_id\":\"\xc3\xbc-\xe7\x94\xa8\xe6\x88\xb7-\xf0\x9f\x98\x80\","
                         "\"ts\":946684800000,\"type\":\"t\"}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK_INT(ev.user_id_len, 2 + 1 + 6 + 1 + 4);
    CHECK(memcmp(ev.user_id, "\xc3\xbc-\xe7\x94\xa8\xe6\x88\xb7-\xf0\x9f\x98\x80", 14) == 0);
    pd_event_free(&ev);
    /* escaped: \u00fc and a surrogate pair for U+1F600 */
    CHECK_INT(parse(&ev, "{\"user_id\":\"\\u00fc\\ud83d\\ude00\",\"ts\":946684800000,\"type\":\"t\"}",
                    err, sizeof err),
              PD_EV_OK);
    CHECK_INT(ev.user_id_len, 6);
    CHECK(memcmp(ev.user_id, "\xc3\xbc\xf0\x9f\x98\x80", 6) == 0);
    pd_event_free(&ev);
}

/* Builds {"user_id":"<uid>","ts":...,"type":"<type>","event_id":"<eid>"} */
static int parse_fields(pd_event *ev, const char *uid, const char *type, const char *eid,
                        char *err, size_t errlen)
{
    char *j = malloc(strlen(uid) + strlen(type) + strlen(eid) + 128);
    sprintf(j, "{\"user_id\":\"%s\",\"ts\":946684800000,\"type\":\"%s\",\"event_id\":\"%s\"}", uid,
            type, eid);
    int rc = parse(ev, j, err, errlen);
    free(j);
    return rc;
}

TEST(event_length_limits)
{
    pd_event ev;
    char err[256];
    char s257[258], s256[257], s65[66], s64[65], u256[257], u258[259];
    memset(s257, 'a', 257); s257[257] = '\0';
    memset(s256, 'a', 256); s256[256] = '\0';
    memset(s65, 't', 65); s65[65] = '\0';
    memset(s64, 't', 64); s64[64] = '\0';
    for (int i = 0; i < 128; i++) memcpy(u256 + 2 * i, "\xc3\xa9", 2); /* 128 x 'é' */
    u256[256] = '\0';
    memcpy(u258, u256, 256); memcpy(u258 + 256, "\xc3\xa9", 2); u258[258] = '\0';

    CHECK_INT(parse_fields(&ev, s256, s64, s256, err, sizeof err), PD_EV_OK);
    CHECK_INT(ev.user_id_len, 256);
    CHECK_INT(ev.type_len, 64);
    CHECK_INT(ev.event_id_len, 256);
    pd_event_free(&ev);
    CHECK_INT(parse_fields(&ev, u256, "t", "e", err, sizeof err), PD_EV_OK);
    CHECK_INT(ev.user_id_len, 256);
    pd_event_free(&ev);

    CHECK_INT(parse_fields(&ev, s257, "t", "e", err, sizeof err), PD_EV_USER_ID_TOO_LONG);
    CHECK_STR(err, "field 'user_id': expected at most 256 bytes, got 257 bytes");
    CHECK(ev.heap_ == NULL);
    pd_event_free(&ev);
    CHECK_INT(parse_fields(&ev, u258, "t", "e", err, sizeof err), PD_EV_USER_ID_TOO_LONG);
    pd_event_free(&ev);
    CHECK_INT(parse_fields(&ev, "u", s65, "e", err, sizeof err), PD_EV_TYPE_TOO_LONG);
    pd_event_free(&ev);
    CHECK_INT(parse_fields(&ev, "u", "t", s257, err, sizeof err), PD_EV_BAD_EVENT_ID);
    pd_event_free(&ev);
}

TEST(event_max_bytes)
{
    pd_event ev;
    char err[256];
    pd_schema s;
    test_schema(&s);
    const char *j = "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}";
    size_t n = strlen(j);
    CHECK_INT(pd_event_parse(&ev, &s, j, n, n, err, sizeof err), PD_EV_OK);
    pd_event_free(&ev);
    CHECK_INT(pd_event_parse(&ev, &s, j, n, n - 1, err, sizeof err), PD_EV_TOO_LARGE);

    /* max_bytes 0 means 1 MiB: pad a valid event with trailing spaces */
    size_t mib = (size_t)1 << 20;
    char *big = malloc(mib + 1);
    memset(big, ' ', mib + 1);
    memcpy(big, j, n);
    check_ref(&s, big, mib, 0, __LINE__);
    CHECK_INT(pd_event_parse(&ev, &s, big, mib, 0, err, sizeof err), PD_EV_OK);
    pd_event_free(&ev);
    CHECK_INT(pd_event_parse(&ev, &s, big, mib + 1, 0, err, sizeof err), PD_EV_TOO_LARGE);
    CHECK_STR(err, "value is 1048577 bytes, expected at most 1048576");
    free(big);
}

TEST(event_error_messages)
{
    pd_event ev;
    char err[256];
    CHECK_INT(parse(&ev, "{\"user_id\":42,\"ts\":946684800000,\"type\":\"t\"}", err, sizeof err),
              PD_EV_BAD_USER_ID_TYPE);
    CHECK_STR(err, "field 'user_id': expected string, got number");
    CHECK(ev.heap_ == NULL && ev.user_id == NULL && ev.nattrs == 0);
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":[1],\"type\":\"t\"}", err, sizeof err),
              PD_EV_BAD_TS_TYPE);
    CHECK_STR(err, "field 'ts': expected integer epoch ms or RFC 3339 string, got array");
    CHECK_INT(parse(&ev, "{\"ts\":946684800000,\"type\":\"t\"}", err, sizeof err),
              PD_EV_MISSING_USER_ID);
    CHECK_STR(err, "missing required field 'user_id'");
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"\"}", err, sizeof err),
              PD_EV_EMPTY_TYPE);
    CHECK_STR(err, "field 'type': expected non-empty string, got \"\"");
    CHECK_INT(parse(&ev, "[1,2]", err, sizeof err), PD_EV_NOT_OBJECT);
    CHECK_STR(err, "top-level value: expected object, got array");
    CHECK_INT(parse(&ev, "{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\",\"item\":7}", err,
                    sizeof err),
              PD_EV_BAD_ATTR_CONTAINER);
    CHECK_STR(err, "field 'item': expected object or null, got number");
    /* small or absent error buffers are fine */
    char tiny[4];
    CHECK_INT(parse(&ev, "[]", tiny, sizeof tiny), PD_EV_NOT_OBJECT);
    CHECK_STR(tiny, "top");
    CHECK_INT(parse(&ev, "[]", NULL, 0), PD_EV_NOT_OBJECT);
}

TEST(event_reason_names)
{
    CHECK_STR(pd_ev_reason_name(PD_EV_OK), "ok");
    CHECK_STR(pd_ev_reason_name(PD_EV_EMPTY), "empty");
    CHECK_STR(pd_ev_reason_name(PD_EV_TOO_LARGE), "too_large");
    CHECK_STR(pd_ev_reason_name(PD_EV_INVALID_JSON), "invalid_json");
    CHECK_STR(pd_ev_reason_name(PD_EV_NOT_OBJECT), "not_object");
    CHECK_STR(pd_ev_reason_name(PD_EV_INVALID_UTF8), "invalid_utf8");
    CHECK_STR(pd_ev_reason_name(PD_EV_MISSING_USER_ID), "missing_user_id");
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_USER_ID_TYPE), "bad_user_id_type");
    CHECK_STR(pd_ev_reason_name(PD_EV_EMPTY_USER_ID), "empty_user_id");
    CHECK_STR(pd_ev_reason_name(PD_EV_USER_ID_TOO_LONG), "user_id_too_long");
    CHECK_STR(pd_ev_reason_name(PD_EV_MISSING_TS), "missing_ts");
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_TS_TYPE), "bad_ts_type");
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_TS_FORMAT), "bad_ts_format");
    CHECK_STR(pd_ev_reason_name(PD_EV_TS_OUT_OF_RANGE), "ts_out_of_range");
    CHECK_STR(pd_ev_reason_name(PD_EV_MISSING_TYPE), "missing_type");
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_TYPE_TYPE), "bad_type_type");
    CHECK_STR(pd_ev_reason_name(PD_EV_EMPTY_TYPE), "empty_type");
    CHECK_STR(pd_ev_reason_name(PD_EV_TYPE_TOO_LONG), "type_too_long");
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_EVENT_ID), "bad_event_id");
    CHECK_STR(pd_ev_reason_name(PD_EV_BAD_ATTR_CONTAINER), "bad_attr_container");
    CHECK_STR(pd_ev_reason_name(PD_EV_FUTURE_TS), "future_ts");
    CHECK_STR(pd_ev_reason_name(PD_EV__COUNT), "unknown");
    CHECK_STR(pd_ev_reason_name(-1), "unknown");
    CHECK_STR(pd_ev_reason_name(1000), "unknown");
}

/* Invalid events; each must be rejected with exactly this reason. Inputs
 * are given with explicit lengths so that they may hold NUL bytes. */
#define E(s) s, sizeof(s) - 1
#define OKF "\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"t\""
static const struct {
    const char *json;
    size_t len;
    int reason;
} invalid_cases[] = {
    {E(""), PD_EV_EMPTY},
    /* UTF-8 is checked before JSON syntax */
    {E("{\"user_id\":\"\xff\",\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_INVALID_UTF8},
    {E("{\"user_id\":\"\xc0\xaf\",\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_INVALID_UTF8},
    {E("{\"user_id\":\"\xed\xa0\x80\",\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_INVALID_UTF8},
    {E("{" OKF ",\"item\":{\"color\":\"\xe7\x94\"}}"), PD_EV_INVALID_UTF8},
    {E("\xfe{"), PD_EV_INVALID_UTF8},
    {E("{"), PD_EV_INVALID_JSON},
    {E("{\"user_id\":}"), PD_EV_INVALID_JSON},
    {E("{" OKF "} x"), PD_EV_INVALID_JSON},
    {E("{" OKF "}{}"), PD_EV_INVALID_JSON},
    {E("{" OKF "}\0"), PD_EV_INVALID_JSON},
    {E("{'user_id':'u'}"), PD_EV_INVALID_JSON},
    {E("{" OKF ",}"), PD_EV_INVALID_JSON},
    {E("{\"user_id\":\"\\ud800\",\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_INVALID_JSON},
    {E("   "), PD_EV_INVALID_JSON},
    {E("[]"), PD_EV_NOT_OBJECT},
    {E("42"), PD_EV_NOT_OBJECT},
    {E("\"user_id\""), PD_EV_NOT_OBJECT},
    {E("null"), PD_EV_NOT_OBJECT},
    {E("{}"), PD_EV_MISSING_USER_ID},
    {E("{\"ts\":\"bad\",\"type\":5}"), PD_EV_MISSING_USER_ID}, /* user_id checked first */
    {E("{\"user_id\":null,\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_MISSING_USER_ID},
    {E("{\"User_id\":\"u\",\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_MISSING_USER_ID},
    {E("{\"user_id\":7,\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_BAD_USER_ID_TYPE},
    {E("{\"user_id\":[\"u\"],\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_BAD_USER_ID_TYPE},
    {E("{\"user_id\":true,\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_BAD_USER_ID_TYPE},
    {E("{\"user_id\":\"\",\"ts\":946684800000,\"type\":\"t\"}"), PD_EV_EMPTY_USER_ID},
    {E("{\"user_id\":\"u\",\"type\":\"t\"}"), PD_EV_MISSING_TS},
    {E("{\"user_id\":\"u\",\"ts\":null,\"type\":\"t\"}"), PD_EV_MISSING_TS},
    {E("{\"user_id\":\"u\",\"ts\":true,\"type\":\"t\"}"), PD_EV_BAD_TS_TYPE},
    {E("{\"user_id\":\"u\",\"ts\":{},\"type\":\"t\"}"), PD_EV_BAD_TS_TYPE},
    {E("{\"user_id\":\"u\",\"ts\":1795328747333.5,\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":1e19,\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":-1e300,\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":1e999,\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":\"yesterday\",\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":\"1795328747333\",\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":\"2026-13-01T00:00:00Z\",\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":\"2026-11-02T10:11:12\",\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":\"\",\"type\":\"t\"}"), PD_EV_BAD_TS_FORMAT},
    {E("{\"user_id\":\"u\",\"ts\":0,\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE},
    {E("{\"user_id\":\"u\",\"ts\":-5,\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE},
    {E("{\"user_id\":\"u\",\"ts\":946684799999,\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE},
    {E("{\"user_id\":\"u\",\"ts\":7258118400000,\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE},
    {E("{\"user_id\":\"u\",\"ts\":1795328747,\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE}, /* seconds */
    {E("{\"user_id\":\"u\",\"ts\":\"1999-12-31T23:59:59.999Z\",\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE},
    {E("{\"user_id\":\"u\",\"ts\":\"2200-01-01T00:00:00Z\",\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE},
    {E("{\"user_id\":\"u\",\"ts\":\"2000-01-01T00:30:00+01:00\",\"type\":\"t\"}"), PD_EV_TS_OUT_OF_RANGE},
    {E("{\"user_id\":\"u\",\"ts\":946684800000}"), PD_EV_MISSING_TYPE},
    {E("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":null}"), PD_EV_MISSING_TYPE},
    {E("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":1}"), PD_EV_BAD_TYPE_TYPE},
    {E("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":{}}"), PD_EV_BAD_TYPE_TYPE},
    {E("{\"user_id\":\"u\",\"ts\":946684800000,\"type\":\"\"}"), PD_EV_EMPTY_TYPE},
    {E("{\"user_id\":\"u\",\"ts\":\"bad\",\"type\":\"\"}"), PD_EV_BAD_TS_FORMAT}, /* ts before type */
    {E("{" OKF ",\"event_id\":5}"), PD_EV_BAD_EVENT_ID},
    {E("{" OKF ",\"event_id\":\"\"}"), PD_EV_BAD_EVENT_ID},
    {E("{" OKF ",\"event_id\":[\"e\"]}"), PD_EV_BAD_EVENT_ID},
    {E("{" OKF ",\"event_id\":false}"), PD_EV_BAD_EVENT_ID},
    {E("{" OKF ",\"item\":5}"), PD_EV_BAD_ATTR_CONTAINER},
    {E("{" OKF ",\"item\":\"blue\"}"), PD_EV_BAD_ATTR_CONTAINER},
    {E("{" OKF ",\"item\":[{\"color\":\"blue\"}]}"), PD_EV_BAD_ATTR_CONTAINER},
    {E("{" OKF ",\"item\":{},\"filters\":true}"), PD_EV_BAD_ATTR_CONTAINER},
    {E("{" OKF ",\"a\":[1]}"), PD_EV_BAD_ATTR_CONTAINER}, /* first segment of a.b.c */
    {E("{" OKF ",\"event_id\":7,\"item\":5}"), PD_EV_BAD_EVENT_ID},
};

TEST(event_invalid_reasons)
{
    pd_schema s;
    test_schema(&s);
    for (size_t i = 0; i < PD_ARRAY_LEN(invalid_cases); i++) {
        pd_event ev;
        char err[256] = "";
        check_ref(&s, invalid_cases[i].json, invalid_cases[i].len, 0, __LINE__);
        int rc = pd_event_parse(&ev, &s, invalid_cases[i].json, invalid_cases[i].len, 0, err,
                                sizeof err);
        if (rc != invalid_cases[i].reason)
            pd_test_fail(__FILE__, __LINE__, "case %zu (%.*s): rc %d (%s) \"%s\", expected %d (%s)",
                         i, (int)invalid_cases[i].len, invalid_cases[i].json, rc,
                         pd_ev_reason_name(rc), err, invalid_cases[i].reason,
                         pd_ev_reason_name(invalid_cases[i].reason));
        if (rc != PD_EV_OK && err[0] == '\0')
            pd_test_fail(__FILE__, __LINE__, "case %zu: no error message", i);
        if (rc != PD_EV_OK && ev.heap_ != NULL)
            pd_test_fail(__FILE__, __LINE__, "case %zu: heap_ left set on error", i);
        pd_event_free(&ev); /* harmless on a failed parse */
        pd_event_free(&ev);
    }
}

/* A category of bad attributes must not reject a container that no schema
 * path names. */
TEST(event_unreferenced_container_ignored)
{
    pd_event ev;
    char err[256];
    CHECK_INT(parse(&ev, "{" OKF ",\"extra\":5,\"meta\":[1,2]}", err, sizeof err), PD_EV_OK);
    pd_event_free(&ev);
}

TEST(event_default_schema)
{
    pd_schema s;
    pd_event ev;
    char err[256];
    pd_schema_default(&s, 0);
    const char *j =
        "{\"event_id\":\"e-9\",\"user_id\":\"u-1\",\"ts\":\"2026-11-02T10:11:12Z\",\"type\":\"view\","
        "\"item\":{\"make\":\"BMW\",\"color\":\"blue\",\"price\":18990,\"year\":2019,"
        "\"doors\":5,\"damaged\":false},"
        "\"filters\":{\"color\":\"red\",\"mileage\":50000,\"fuel\":\"diesel\"}}";
    check_ref(&s, j, strlen(j), 0, __LINE__);
    CHECK_INT(pd_event_parse(&ev, &s, j, strlen(j), 0, err, sizeof err), PD_EV_OK);
    CHECK_INT(ev.nattrs, s.ndims);
    CHECK_INT(ev.ts_ms, 1793614272000LL);
    int make = pd_schema_find(&s, "make", 4), color = pd_schema_find(&s, "color", 5);
    int price = pd_schema_find(&s, "price", 5), mileage = pd_schema_find(&s, "mileage", 7);
    int doors = pd_schema_find(&s, "doors", 5), damaged = pd_schema_find(&s, "damaged", 7);
    int fuel = pd_schema_find(&s, "fuel", 4), region = pd_schema_find(&s, "region", 6);
    CHECK(make >= 0 && color >= 0 && price >= 0 && mileage >= 0 && doors >= 0 && damaged >= 0 &&
          fuel >= 0 && region >= 0);
    if (make >= 0 && color >= 0 && price >= 0 && mileage >= 0 && doors >= 0 && damaged >= 0 &&
        fuel >= 0 && region >= 0) {
        CHECK_ATTR_STR(&ev, make, "BMW");
        CHECK_ATTR_STR(&ev, color, "blue");
        CHECK_ATTR_STR(&ev, fuel, "diesel");
        CHECK_ATTR_STR(&ev, doors, "5");
        CHECK_ATTR_STR(&ev, damaged, "false");
        CHECK_INT(ev.attrs[price].kind, PD_ATTR_NUM);
        CHECK_DBL(ev.attrs[price].num, 18990, 0);
        CHECK_INT(ev.attrs[mileage].kind, PD_ATTR_NUM);
        CHECK_DBL(ev.attrs[mileage].num, 50000, 0);
        CHECK_INT(ev.attrs[region].kind, PD_ATTR_ABSENT);
    }
    int present = 0;
    for (int d = 0; d < ev.nattrs; d++) present += ev.attrs[d].kind != PD_ATTR_ABSENT;
    CHECK_INT(present, 8); /* item: make color price year doors damaged; filters: mileage fuel */
    CHECK_INT(ev.n_bad_attrs, 0);
    pd_event_free(&ev);
}

/* pd_json_members against names of every length 1..40: in an object whose
 * keys differ from the name in exactly one byte (each position in turn),
 * or are one byte shorter or longer, only the exact key matches -- and the
 * first of two exact keys; a key spelled with a \u escape matches by its
 * decoded bytes. The expected member is known by construction (its value
 * is its position), not by asking the scanner. */
TEST(json_members_every_name_length)
{
    for (size_t len = 1; len <= 40; len++) {
        char name[64];
        for (size_t i = 0; i < len; i++) name[i] = (char)('a' + (i * 7 + len) % 26);
        name[len] = '\0';
        pd_buf b = {0};
        int at = 0, want = -1;
        pd_buf_putc(&b, '{');
        for (size_t p = 0; p <= len + 2; p++) {
            char k[64];
            size_t kl = len;
            memcpy(k, name, len);
            if (p < len) k[p] = k[p] == 'z' ? 'a' : (char)(k[p] + 1); /* one byte off */
            else if (p == len) kl = len - 1;                           /* a prefix */
            else if (p == len + 1) k[kl++] = 'x';                      /* one more byte */
            else want = at;                                            /* the name itself */
            if (at) pd_buf_putc(&b, ',');
            pd_buf_printf(&b, "\"%.*s\":%d", (int)kl, k, at++);
        }
        pd_buf_printf(&b, ",\"%s\":%d}", name, at++); /* a second exact key: not it */
        const char *names[2] = {"zz-not-there", name};
        size_t lens[2] = {12, len};
        pd_json_names *nm = pd_json_names_new(names, lens, 2);
        pd_json_doc d;
        char err[256];
        long out[2];
        CHECK_INT(pd_json_open(&d, b.p, b.len, 0, err, sizeof err), PD_OK);
        pd_json_members(&d, 0, nm, out);
        CHECK_INT(out[0], -1);
        CHECK(out[1] >= 0);
        if (out[1] >= 0) CHECK_INT((long)pd_json_num(&d, (uint32_t)out[1]), want);
        pd_json_close(&d);

        /* the name with its first byte as \u00XX: found by its decoded bytes */
        b.len = 0;
        pd_buf_printf(&b, "{\"%.*s\":0,\"\\u%04x%s\":1,\"%s\":2}", (int)len, "0123456789012345678901234567890123456789",
                      (unsigned)(unsigned char)name[0], name + 1, name);
        CHECK_INT(pd_json_open(&d, b.p, b.len, 0, err, sizeof err), PD_OK);
        pd_json_members(&d, 0, nm, out);
        CHECK(out[1] >= 0);
        if (out[1] >= 0) CHECK_INT((long)pd_json_num(&d, (uint32_t)out[1]), 1);
        pd_json_close(&d);
        pd_json_names_free(nm);
        pd_buf_free(&b);
    }
}

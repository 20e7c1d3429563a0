/* test_gen.c -- the synthetic event generator: determinism, format, Zipf
 * skew, duplicates, bad lines and catalogue consistency. Oracles are
 * independent: cJSON parsing of the output, closed-form Zipf
 * probabilities, and counting/sorting of the emitted lines. */
#include "test.h"
#include "gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#define START_TS 1767225600000LL /* 2026-01-01T00:00:00Z */
#define DAY_MS 86400000LL

static pd_gen_opts base_opts(int64_t count)
{
    pd_gen_opts o;
    memset(&o, 0, sizeof o);
    o.seed = 42;
    o.count = count;
    o.users = 1000;
    o.days = 7;
    o.start_ts = START_TS;
    o.dup_rate = 0.01;
    return o;
}

static pd_gen *mk(const pd_gen_opts *o)
{
    pd_gen *g = NULL;
    char err[256];
    int rc = pd_gen_new(o, &g, err, sizeof err);
    if (rc != PD_OK) pd_test_fail(__FILE__, __LINE__, "pd_gen_new: %s", err);
    return g;
}

/* All lines of a run joined with '\n'. Caller frees the buffer. */
static void run_all(const pd_gen_opts *o, pd_buf *all)
{
    pd_gen *g = mk(o);
    pd_buf j = {0}, k = {0};
    if (g) {
        while (pd_gen_next(g, &j, &k) != PD_GEN_END) {
            pd_buf_append(all, j.p, j.len);
            pd_buf_putc(all, '\t');
            pd_buf_append(all, k.p, k.len);
            pd_buf_putc(all, '\n');
        }
    }
    pd_buf_free(&j);
    pd_buf_free(&k);
    pd_gen_free(g);
}

TEST(gen_deterministic)
{
    pd_gen_opts o = base_opts(3000);
    o.bad_rate = 0.05;
    pd_buf a = {0}, b = {0}, c = {0};
    run_all(&o, &a);
    run_all(&o, &b);
    o.seed = 43;
    run_all(&o, &c);
    CHECK(a.len > 3000 * 100);
    CHECK(a.len == b.len && memcmp(a.p, b.p, a.len) == 0);
    CHECK(!(a.len == c.len && memcmp(a.p, c.p, a.len) == 0));
    /* exactly count lines */
    size_t nl = 0;
    for (size_t i = 0; i < a.len; i++) nl += a.p[i] == '\n';
    CHECK_INT(nl, 3000);
    pd_buf_free(&a);
    pd_buf_free(&b);
    pd_buf_free(&c);
}

static int is_one_of(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, set[i]) == 0) return 1;
    return 0;
}

TEST(gen_valid_events_have_required_fields)
{
    static const char *const str_fields[] = {"make", "model", "color", "fuel", "gearbox", "body", "condition",
                                             "seller_type", "region", "emission_class"};
    static const char *const num_fields[] = {"doors", "price", "mileage", "year", "power_kw", "seats",
                                             "engine_cc", "co2_g_km", "owners"};
    static const char *const types[] = {"view", "search", "park", "contact"};
    pd_gen_opts o = base_opts(5000);
    o.dup_rate = 0;
    pd_gen *g = mk(&o);
    if (!g) return;
    pd_buf j = {0}, k = {0};
    int64_t n = 0, prev_ts = 0, searches = 0, views = 0, failures = 0;
    int rc;
    while ((rc = pd_gen_next(g, &j, &k)) != PD_GEN_END) {
        int ok = 1;
        CHECK_INT(rc, PD_GEN_EVENT);
        CHECK(strchr(j.p, '\n') == NULL);
        CHECK_INT(strlen(j.p), j.len);
        cJSON *t = cJSON_ParseWithLength(j.p, j.len);
        if (!t || !cJSON_IsObject(t)) {
            CHECK(!"not a JSON object");
            cJSON_Delete(t);
            break;
        }
        const cJSON *eid = cJSON_GetObjectItemCaseSensitive(t, "event_id");
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(t, "user_id");
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(t, "ts");
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
        char want_eid[64];
        snprintf(want_eid, sizeof want_eid, "e-42-%lld", (long long)n);
        ok &= cJSON_IsString(eid) && strcmp(eid->valuestring, want_eid) == 0;
        ok &= cJSON_IsString(uid) && strncmp(uid->valuestring, "u-", 2) == 0;
        if (cJSON_IsString(uid)) {
            long u = strtol(uid->valuestring + 2, NULL, 10);
            ok &= u >= 1 && u <= 1000;
            ok &= k.len == strlen(uid->valuestring) && memcmp(k.p, uid->valuestring, k.len) == 0;
        }
        ok &= cJSON_IsNumber(ts) && ts->valuedouble == floor(ts->valuedouble);
        if (cJSON_IsNumber(ts)) {
            int64_t v = (int64_t)ts->valuedouble;
            ok &= v >= START_TS && v < START_TS + 7 * DAY_MS;
            ok &= n == 0 || v >= prev_ts - 3 * 60000; /* monotone up to jitter */
            prev_ts = v;
        }
        ok &= cJSON_IsString(ty) && is_one_of(ty->valuestring, types, 4);
        if (cJSON_IsString(ty) && strcmp(ty->valuestring, "search") == 0) {
            searches++;
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "filters");
            ok &= cJSON_IsObject(f) && f->child != NULL;
            ok &= cJSON_GetObjectItemCaseSensitive(t, "item") == NULL;
        } else {
            views += cJSON_IsString(ty) && strcmp(ty->valuestring, "view") == 0;
            const cJSON *it = cJSON_GetObjectItemCaseSensitive(t, "item");
            ok &= cJSON_IsObject(it);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
            ok &= cJSON_IsString(id) && strncmp(id->valuestring, "ad-", 3) == 0;
            for (size_t i = 0; i < PD_ARRAY_LEN(str_fields); i++) {
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(it, str_fields[i]);
                ok &= cJSON_IsString(x) && x->valuestring[0] != '\0';
            }
            for (size_t i = 0; i < PD_ARRAY_LEN(num_fields); i++) {
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(it, num_fields[i]);
                ok &= cJSON_IsNumber(x) && x->valuedouble >= 0;
            }
            ok &= cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(it, "damaged"));
            const cJSON *price = cJSON_GetObjectItemCaseSensitive(it, "price");
            const cJSON *year = cJSON_GetObjectItemCaseSensitive(it, "year");
            ok &= cJSON_IsNumber(price) && price->valuedouble >= 500 && price->valuedouble <= 300000;
            ok &= cJSON_IsNumber(year) && year->valuedouble >= 2000 && year->valuedouble <= 2026;
            ok &= pd_utf8_valid(j.p, j.len);
        }
        if (!ok && failures++ < 3) pd_test_fail(__FILE__, __LINE__, "bad line %lld: %s", (long long)n, j.p);
        cJSON_Delete(t);
        n++;
    }
    CHECK_INT(n, 5000);
    CHECK_INT(failures, 0);
    /* type mix: view ~70%, search ~15% */
    CHECK(views > 3300 && views < 3700);
    CHECK(searches > 600 && searches < 900);
    pd_buf_free(&j);
    pd_buf_free(&k);
    pd_gen_free(g);
}

TEST(gen_zipf_skew)
{
    enum { U = 1000, N = 60000 };
    pd_gen_opts o = base_opts(N);
    o.users = U;
    o.dup_rate = 0;
    pd_gen *g = mk(&o);
    if (!g) return;
    static int64_t cnt[U + 1];
    memset(cnt, 0, sizeof cnt);
    pd_buf j = {0}, k = {0};
    while (pd_gen_next(g, &j, &k) != PD_GEN_END) {
        CHECK(k.len > 2);
        long u = strtol(k.p + 2, NULL, 10);
        if (u >= 1 && u <= U) cnt[u]++;
        else CHECK(!"user out of range");
    }
    /* Oracle: P(rank r) = r^-1.1 / H, H = sum_{k<=U} k^-1.1. */
    double h = 0;
    for (int r = 1; r <= U; r++) h += pow(r, -1.1);
    double e1 = N / h, e10 = N * pow(10, -1.1) / h;
    CHECK(fabs((double)cnt[1] - e1) < 0.06 * e1 + 50);
    CHECK(fabs((double)cnt[10] - e10) < 0.15 * e10 + 30);
    /* top user much more active than the median user */
    int64_t sorted[U];
    for (int r = 0; r < U; r++) sorted[r] = cnt[r + 1];
    for (int a = 1; a < U; a++) /* insertion sort, descending */
        for (int b = a; b > 0 && sorted[b] > sorted[b - 1]; b--) {
            int64_t t = sorted[b];
            sorted[b] = sorted[b - 1];
            sorted[b - 1] = t;
        }
    CHECK(sorted[0] == cnt[1]);
    CHECK(sorted[0] > 50 * PD_MAX(sorted[U / 2], 1));
    pd_buf_free(&j);
    pd_buf_free(&k);
    pd_gen_free(g);
}

typedef struct {
    char *id;    /* event_id or ad id */
    char *text;  /* whole line or item object */
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
    return strcmp(((const pair_t *)a)->id, ((const pair_t *)b)->id);
}

TEST(gen_duplicates_are_exact_and_rate_close)
{
    enum { N = 20000 };
    pd_gen_opts o = base_opts(N);
    o.dup_rate = 0.05;
    pd_gen *g = mk(&o);
    if (!g) return;
    pair_t *p = pd_calloc(N, sizeof *p);
    pd_buf j = {0}, k = {0};
    int64_t n = 0, reported = 0;
    int rc;
    while ((rc = pd_gen_next(g, &j, &k)) != PD_GEN_END && n < N) {
        reported += rc == PD_GEN_DUP;
        cJSON *t = cJSON_ParseWithLength(j.p, j.len);
        const cJSON *eid = cJSON_GetObjectItemCaseSensitive(t, "event_id");
        CHECK(cJSON_IsString(eid));
        p[n].id = pd_strdup(cJSON_IsString(eid) ? eid->valuestring : "?");
        p[n].text = pd_strdup(j.p);
        cJSON_Delete(t);
        n++;
    }
    CHECK_INT(n, N);
    qsort(p, (size_t)n, sizeof *p, cmp_pair);
    int64_t dups = 0, mismatched = 0;
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(p[i].id, p[i - 1].id) == 0) {
            dups++;
            mismatched += strcmp(p[i].text, p[i - 1].text) != 0;
        }
    }
    CHECK_INT(dups, reported);
    CHECK_INT(mismatched, 0);
    CHECK(dups > 800 && dups < 1200); /* 5% of 20000 = 1000 */
    for (int64_t i = 0; i < n; i++) {
        free(p[i].id);
        free(p[i].text);
    }
    free(p);
    pd_buf_free(&j);
    pd_buf_free(&k);
    pd_gen_free(g);
}

TEST(gen_catalogue_is_consistent)
{
    enum { N = 20000 };
    pd_gen_opts o = base_opts(N);
    o.users = 50; /* few users -> many repeat views of personal ads */
    o.dup_rate = 0;
    pd_gen *g = mk(&o);
    if (!g) return;
    pair_t *p = pd_calloc(N, sizeof *p);
    pd_buf j = {0};
    int64_t n = 0;
    while (pd_gen_next(g, &j, NULL) != PD_GEN_END) {
        cJSON *t = cJSON_ParseWithLength(j.p, j.len);
        cJSON *it = cJSON_GetObjectItemCaseSensitive(t, "item");
        if (cJSON_IsObject(it)) {
            cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
            p[n].id = pd_strdup(cJSON_IsString(id) ? id->valuestring : "?");
            p[n].text = cJSON_PrintUnformatted(it);
            n++;
        }
        cJSON_Delete(t);
    }
    qsort(p, (size_t)n, sizeof *p, cmp_pair);
    int64_t repeats = 0, mismatched = 0;
    for (int64_t i = 1; i < n; i++) {
        if (strcmp(p[i].id, p[i - 1].id) == 0) {
            repeats++;
            mismatched += strcmp(p[i].text, p[i - 1].text) != 0;
        }
    }
    CHECK(repeats > 1000);
    CHECK_INT(mismatched, 0);
    for (int64_t i = 0; i < n; i++) {
        free(p[i].id);
        free(p[i].text);
    }
    free(p);
    pd_buf_free(&j);
    pd_gen_free(g);
}

/* Oracle for a bad line of each kind, by inspecting it with cJSON. */
static int bad_line_matches(int kind, const char *s, size_t n)
{
    cJSON *t = cJSON_ParseWithLength(s, n);
    int ok = 0;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(t, "user_id");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(t, "ts");
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(t, "item");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "filters");
    switch (kind) {
    case PD_GEN_BAD_INVALID_JSON: ok = t == NULL; break;
    case PD_GEN_BAD_NOT_OBJECT: ok = cJSON_IsArray(t); break;
    case PD_GEN_BAD_MISSING_USER_ID: ok = cJSON_IsObject(t) && !u; break;
    case PD_GEN_BAD_USER_ID_TYPE: ok = cJSON_IsNumber(u); break;
    case PD_GEN_BAD_EMPTY_USER_ID: ok = cJSON_IsString(u) && u->valuestring[0] == '\0'; break;
    case PD_GEN_BAD_MISSING_TS: ok = cJSON_IsObject(t) && !ts; break;
    case PD_GEN_BAD_TS_TYPE: ok = cJSON_IsArray(ts); break;
    case PD_GEN_BAD_TS_FORMAT: ok = cJSON_IsString(ts); break;
    case PD_GEN_BAD_TS_RANGE: ok = cJSON_IsNumber(ts) && ts->valuedouble < 946684800000.0; break;
    case PD_GEN_BAD_MISSING_TYPE: ok = cJSON_IsObject(t) && !cJSON_GetObjectItemCaseSensitive(t, "type"); break;
    case PD_GEN_BAD_ATTR_CONTAINER: ok = cJSON_IsString(it) || cJSON_IsString(f); break;
    }
    cJSON_Delete(t);
    return ok;
}

TEST(gen_bad_lines)
{
    enum { N = 4000 };
    pd_gen_opts o = base_opts(N);
    o.bad_rate = 0.5;
    pd_gen *g = mk(&o);
    if (!g) return;
    pd_buf j = {0}, k = {0};
    int64_t bad = 0, per_kind[PD_GEN_BAD__COUNT] = {0}, wrong = 0, badkey = 0;
    int rc;
    while ((rc = pd_gen_next(g, &j, &k)) != PD_GEN_END) {
        CHECK(strchr(j.p, '\n') == NULL);
        /* Key rule (independent): user_id string of a JSON object, else empty. */
        cJSON *t = cJSON_ParseWithLength(j.p, j.len);
        const cJSON *u = cJSON_IsObject(t) ? cJSON_GetObjectItemCaseSensitive(t, "user_id") : NULL;
        const char *want = cJSON_IsString(u) ? u->valuestring : "";
        badkey += strlen(want) != k.len || memcmp(want, k.p, k.len) != 0;
        cJSON_Delete(t);
        if (rc != PD_GEN_BAD) continue;
        bad++;
        int kind = pd_gen_last_bad(g);
        CHECK(kind >= 0 && kind < PD_GEN_BAD__COUNT);
        if (kind < 0 || kind >= PD_GEN_BAD__COUNT) continue;
        per_kind[kind]++;
        if (!bad_line_matches(kind, j.p, j.len) && wrong++ < 3)
            pd_test_fail(__FILE__, __LINE__, "kind %s: %s", pd_gen_bad_name(kind), j.p);
    }
    CHECK_INT(wrong, 0);
    CHECK_INT(badkey, 0);
    CHECK(bad > 1800 && bad < 2200);
    for (int i = 0; i < PD_GEN_BAD__COUNT; i++) CHECK(per_kind[i] > 50);
    CHECK_STR(pd_gen_bad_name(PD_GEN_BAD_TS_TYPE), "bad_ts_type");
    pd_buf_free(&j);
    pd_buf_free(&k);
    pd_gen_free(g);
}

TEST(gen_rejects_bad_options)
{
    pd_gen *g = NULL;
    char err[256];
    pd_gen_opts o = base_opts(10);
    o.users = 0;
    CHECK_INT(pd_gen_new(&o, &g, err, sizeof err), PD_EINVAL);
    CHECK(strstr(err, "users") != NULL);
    CHECK(g == NULL);
    o = base_opts(0);
    CHECK_INT(pd_gen_new(&o, &g, err, sizeof err), PD_EINVAL);
    o = base_opts(10);
    o.dup_rate = 0.7;
    o.bad_rate = 0.7;
    CHECK_INT(pd_gen_new(&o, &g, err, sizeof err), PD_EINVAL);
    o = base_opts(10);
    o.start_ts = 1000;
    CHECK_INT(pd_gen_new(&o, &g, err, sizeof err), PD_EINVAL);
    /* END is sticky */
    o = base_opts(2);
    g = mk(&o);
    if (!g) return;
    pd_buf j = {0};
    CHECK_INT(pd_gen_next(g, &j, NULL), PD_GEN_EVENT);
    CHECK(pd_gen_next(g, &j, NULL) != PD_GEN_END);
    CHECK_INT(pd_gen_next(g, &j, NULL), PD_GEN_END);
    CHECK_INT(pd_gen_next(g, &j, NULL), PD_GEN_END);
    pd_buf_free(&j);
    pd_gen_free(g);
}

/* test_score.c -- scoring (score.c): body parsing, attribute resolution,
 * the model's sums and probabilities, ranking order, the answers.
 *
 * Oracles: every expected probability and score is computed in this file
 * from the counts the test itself put into the day profiles, with the
 * formulas of issue 20 / docs/scoring.md written out again (own loops, no
 * score.c code); answers are parsed with cJSON and compared field by
 * field. Day numbers: Python (date(y,m,d) - date(1970,1,1)).days. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <cJSON.h>

#include "event.h"
#include "profile.h"
#include "query.h"
#include "schema.h"
#include "score.h"
#include "util.h"

#define D_2026_11_20 20777
#define D_2026_11_21 20778
#define D_2026_11_22 20779
#define TODAY D_2026_11_22

static void sc_schema(pd_schema *s)
{
    static const char js[] = "{\"dimensions\":["
                             "{\"name\":\"color\",\"type\":\"categorical\"},"
                             "{\"name\":\"make\",\"type\":\"categorical\"},"
                             "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[5000,10000]}]}";
    char err[256];
    int rc = pd_schema_load_json(s, js, sizeof js - 1, 64, err, sizeof err);
    CHECK_INT(rc, PD_OK);
}

/* Adds an event with the given attributes (NULL / NAN: absent) to p. */
static void add_ev(pd_profile *p, const pd_schema *s, const char *color, const char *make, double price)
{
    char buf[512], attrs[256] = "";
    size_t k = 0;
    if (color) k += (size_t)snprintf(attrs + k, sizeof attrs - k, "%s\"color\":\"%s\"", k ? "," : "", color);
    if (make) k += (size_t)snprintf(attrs + k, sizeof attrs - k, "%s\"make\":\"%s\"", k ? "," : "", make);
    if (!isnan(price)) k += (size_t)snprintf(attrs + k, sizeof attrs - k, "%s\"price\":%.17g", k ? "," : "", price);
    snprintf(buf, sizeof buf, "{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{%s}}", attrs);
    pd_event ev;
    char err[256];
    int rc = pd_event_parse(&ev, s, buf, strlen(buf), 0, err, sizeof err);
    CHECK_INT(rc, 0);
    pd_profile_add(p, &ev);
    pd_event_free(&ev);
}

static int parse_body(pd_score_req *r, const pd_schema *s, const char *body, int max_items, char *err, size_t errlen)
{
    return pd_score_parse_rank(r, body, strlen(body), s, TODAY, 30, max_items, err, errlen);
}

static void expect_400(const pd_schema *s, const char *body, int rc_want, const char *needle)
{
    pd_score_req r;
    char err[512] = "";
    int rc = parse_body(&r, s, body, 3, err, sizeof err);
    CHECK_INT(rc, rc_want);
    if (!strstr(err, needle)) pd_test_fail(__FILE__, __LINE__, "body %s: message '%s' lacks '%s'", body, err, needle);
    CHECK(r.items == NULL && r.text.p == NULL);
}

TEST(score_parse_errors)
{
    pd_schema s;
    sc_schema(&s);
    expect_400(&s, "{\"items\":[", PD_EINVAL, "not valid JSON");
    expect_400(&s, "[]", PD_EINVAL, "expected a JSON object");
    expect_400(&s, "{}", PD_EINVAL, "'items' is required");
    expect_400(&s, "{\"items\":{}}", PD_EINVAL, "expected an array");
    expect_400(&s, "{\"items\":[],\"bogus\":1}", PD_EINVAL, "unknown field 'bogus'");
    /* the schema tracks no types: the profile query's messages */
    expect_400(&s, "{\"items\":[],\"types\":[\"view\"]}", PD_EINVAL, "tracks no event types");
    expect_400(&s, "{\"items\":[],\"types\":[\"a,b\"]}", PD_EINVAL, "'types': expected an array");
    expect_400(&s, "{\"items\":[],\"weights\":{}}", PD_EINVAL, "'weights': empty list");
    expect_400(&s, "{\"items\":[],\"weights\":{\"view\":-1}}", PD_EINVAL, "weight of 'view'");
    expect_400(&s, "{\"items\":[],\"weights\":{\"a:b\":1}}", PD_EINVAL, "'a:b' is not an event type");
    expect_400(&s, "{\"items\":[],\"weights\":[1]}", PD_EINVAL, "'weights': expected an object");
    /* the event dialect (event.h): what events refuse, bodies refuse, with the scanner's message */
    expect_400(&s, "{\"items\":[],}", PD_EINVAL, "not valid JSON: invalid JSON at byte 12");
    expect_400(&s, "{\"items\":[01]}", PD_EINVAL, "invalid number");
    expect_400(&s, "{\"items\":[\"\\ud800\"]}", PD_EINVAL, "surrogate");
    expect_400(&s, "{\"items\":[\"\x01\"]}", PD_EINVAL, "raw control character");
    expect_400(&s, "{\"items\":[\"\xc3\x28\"]}", PD_EINVAL, "not valid UTF-8");
    expect_400(&s, "\xef\xbb\xbf{\"items\":[]}", PD_EINVAL, "byte order mark");
    expect_400(&s, "{\"items\":[]} x", PD_EINVAL, "after the top-level value");
    expect_400(&s, "{\"items\":[],\"alpha\":NaN}", PD_EINVAL, "not valid JSON");
    expect_400(&s, "{\"items\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
                   "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", PD_EINVAL, "nesting deeper than 64");
    expect_400(&s, "{\"ite\\u006ds\":[1],\"items\":[]}", PD_EINVAL, "items[0]: expected an object"); /* escaped key */
    expect_400(&s, "{\"items\":[],\"items\\u0000\":[]}", PD_EINVAL, "unknown field 'items?'");
    expect_400(&s, "{\"items\":[],\"dims\":[\"make\\u0000\"]}", PD_EINVAL, "unknown dimension 'make?'");
    expect_400(&s, "{\"items\":[],\"alpha\":1e999}", PD_EINVAL, "'alpha'");
    expect_400(&s, "{\"items\":[{\"id\":1},{\"id\":2},{\"id\":3},{\"id\":4}]}", PD_ERANGE, "rank_max_items (3)");
    expect_400(&s, "{\"items\":[],\"alpha\":0}", PD_EINVAL, "'alpha'");
    expect_400(&s, "{\"items\":[],\"alpha\":-1}", PD_EINVAL, "'alpha'");
    expect_400(&s, "{\"items\":[],\"alpha\":1e400}", PD_EINVAL, "'alpha'");
    expect_400(&s, "{\"items\":[],\"alpha\":\"10\"}", PD_EINVAL, "'alpha'");
    expect_400(&s, "{\"items\":[],\"dims\":[\"colour\"]}", PD_EINVAL, "unknown dimension 'colour'");
    expect_400(&s, "{\"items\":[],\"dims\":[]}", PD_EINVAL, "empty list");
    expect_400(&s, "{\"items\":[],\"dims\":[1]}", PD_EINVAL, "'dims'");
    expect_400(&s, "{\"items\":[],\"dim_weights\":{\"size\":1}}", PD_EINVAL, "unknown dimension 'size'");
    expect_400(&s, "{\"items\":[],\"dim_weights\":{\"make\":1e400}}", PD_EINVAL, "weight of 'make'");
    expect_400(&s, "{\"items\":[],\"dim_weights\":{\"make\":\"2\"}}", PD_EINVAL, "weight of 'make'");
    expect_400(&s, "{\"items\":[],\"dim_weights\":[1]}", PD_EINVAL, "'dim_weights'");
    expect_400(&s, "{\"items\":[],\"explain\":1}", PD_EINVAL, "'explain'");
    expect_400(&s, "{\"items\":[],\"days\":0}", PD_EINVAL, "'days'");
    expect_400(&s, "{\"items\":[],\"days\":1.5}", PD_EINVAL, "'days'");
    expect_400(&s, "{\"items\":[],\"days\":7,\"from\":\"2026-11-01\"}", PD_EINVAL, "cannot be combined");
    expect_400(&s, "{\"items\":[],\"decay\":\"exp:0\"}", PD_EINVAL, "half-life");
    expect_400(&s, "{\"items\":[],\"from\":20}", PD_EINVAL, "'from': expected a string");
    expect_400(&s, "{\"items\":[],\"at\":\"2099-01-01\"}", PD_EINVAL, "after today");
    expect_400(&s, "{\"items\":[{\"id\":\"a\"},5]}", PD_EINVAL, "items[1]: expected an object");
    expect_400(&s, "{\"items\":[{\"id\":\"a\"},{\"make\":\"bmw\"}]}", PD_EINVAL, "items[1]: missing 'id'");
    expect_400(&s, "{\"items\":[{\"id\":\"\"}]}", PD_EINVAL, "items[0]: 'id'");
    expect_400(&s, "{\"items\":[{\"id\":[1]}]}", PD_EINVAL, "items[0]: 'id'");
    expect_400(&s, "{\"items\":[{\"id\":\"a\"},{\"id\":\"b\",\"item\":5}]}", PD_EINVAL,
               "items[1]: field 'item': expected an object");
    expect_400(&s, "{\"items\":[{\"id\":\"b\",\"filters\":\"x\"}]}", PD_EINVAL, "items[0]: field 'filters'");
}

TEST(score_parse_ok)
{
    pd_schema s;
    sc_schema(&s);
    pd_score_req r;
    char err[512] = "";
    const char *body =
        "{\"items\":[{\"id\":\"n\",\"item\":{\"color\":\"red\",\"make\":\"bmw\",\"price\":7000}},"
        "{\"id\":7,\"color\":\"blue\",\"price\":\"cheap\"},"
        "{\"id\":\"f\",\"filters\":{\"color\":2018},\"item\":{\"color\":null,\"make\":true}},"
        "{\"id\":\"w\",\"item\":{\"color\":\"\",\"make\":{\"x\":1}},\"color\":\"green\"}],"
        "\"days\":7,\"decay\":\"exp:3\",\"dims\":\"make,color,make\",\"dim_weights\":{\"make\":2,\"make\":5},"
        "\"alpha\":2.5,\"explain\":true}";
    int rc = parse_body(&r, &s, body, 10, err, sizeof err);
    CHECK_INT(rc, PD_OK);
    if (rc) {
        pd_test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    CHECK_INT(r.nitems, 4);
    CHECK_INT(r.nsd, 2);
    CHECK_INT(r.sdims[0], 1); /* make */
    CHECK_INT(r.sdims[1], 0); /* color */
    CHECK_DBL(r.lambda[0], 2, 0); /* the first member wins */
    CHECK_DBL(r.lambda[1], 1, 0);
    CHECK_DBL(r.alpha, 2.5, 0);
    CHECK_INT(r.explain, 1);
    CHECK_INT(r.q.from_day, TODAY - 6);
    CHECK_INT(r.q.to_day, TODAY);
    CHECK_INT(r.q.decay, PD_DECAY_EXP);
    /* ids echo as JSON */
    CHECK_INT(r.items[0].idlen, 3);
    CHECK(memcmp(r.items[0].id, "\"n\"", 3) == 0);
    CHECK(r.items[1].idlen == 1 && r.items[1].id[0] == '7');
    /* item 0: nested */
    CHECK_INT(r.items[0].attrs[0].kind, PD_ATTR_STR);
    CHECK(r.items[0].attrs[0].len == 3 && memcmp(r.items[0].attrs[0].s, "bmw", 3) == 0);
    CHECK(r.items[0].attrs[1].len == 3 && memcmp(r.items[0].attrs[1].s, "red", 3) == 0);
    /* item 1: flat; make absent */
    CHECK_INT(r.items[1].attrs[0].kind, PD_ATTR_ABSENT);
    CHECK(r.items[1].attrs[1].kind == PD_ATTR_STR && memcmp(r.items[1].attrs[1].s, "blue", 4) == 0);
    /* item 2: item.color null -> filters.color, a number as text; bool make */
    CHECK(r.items[2].attrs[1].kind == PD_ATTR_STR && r.items[2].attrs[1].len == 4 &&
          memcmp(r.items[2].attrs[1].s, "2018", 4) == 0);
    CHECK(r.items[2].attrs[0].kind == PD_ATTR_STR && r.items[2].attrs[0].len == 4 &&
          memcmp(r.items[2].attrs[0].s, "true", 4) == 0);
    /* item 3: the first present path decides, even when wrong (no fall-through to flat) */
    CHECK_INT(r.items[3].attrs[1].kind, PD_ATTR_BAD);
    CHECK_INT(r.items[3].attrs[0].kind, PD_ATTR_BAD);
    pd_score_req_free(&r);

    /* defaults: every dimension, lambda 1, alpha 10, the retention range */
    rc = parse_body(&r, &s, "{\"items\":[]}", 10, err, sizeof err);
    CHECK_INT(rc, PD_OK);
    CHECK_INT(r.nsd, 3);
    CHECK_DBL(r.alpha, 10, 0);
    CHECK_DBL(r.lambda[2], 1, 0);
    CHECK_INT(r.q.from_day, TODAY - 29);
    CHECK_INT(r.nitems, 0);
    pd_score_req_free(&r);

    /* the event dialect: \u0000 stays inside a string (id echoed with it,
     * a value with it is another value), the first of repeated keys
     * counts, escaped keys match by their decoded bytes, a number beyond
     * the double range is an invalid attribute, long numbers read exactly */
    body = "{\"items\":[{\"id\":\"a\\u0000b\",\"id\":\"x\",\"item\":{\"make\":\"bm\\u0000w\",\"make\":\"vw\","
           "\"price\":1e999,\"co\\u006cor\":\"r\\u00e9d\"}},"
           "{\"id\":12345678901234567890,\"make\":\"bmw\",\"price\":1.00000000000000000000000000000000000000000000000000000000000000001}],"
           "\"dims\":[\"make\",\"price\",\"color\"]}";
    rc = parse_body(&r, &s, body, 10, err, sizeof err);
    CHECK_INT(rc, PD_OK);
    if (rc) {
        pd_test_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    CHECK(r.items[0].idlen == 10 && memcmp(r.items[0].id, "\"a\\u0000b\"", 10) == 0);
    CHECK(r.items[0].attrs[0].kind == PD_ATTR_STR && r.items[0].attrs[0].len == 4 &&
          memcmp(r.items[0].attrs[0].s, "bm\0w", 4) == 0);
    CHECK_INT(r.items[0].attrs[1].kind, PD_ATTR_BAD);
    CHECK(r.items[0].attrs[2].kind == PD_ATTR_STR && r.items[0].attrs[2].len == 4 &&
          memcmp(r.items[0].attrs[2].s, "r\xc3\xa9" "d", 4) == 0);
    CHECK(r.items[1].idlen == 22 && memcmp(r.items[1].id, "1.2345678901234567e+19", 22) == 0); /* past 2^53: the double, shortest round trip */
    CHECK(r.items[1].attrs[1].kind == PD_ATTR_NUM && r.items[1].attrs[1].num == 1.0);
    pd_score_req_free(&r);
}

/* The formulas of docs/scoring.md, written out. */
static double want_c(double nu, double Nu, double np, double Np, double K, double alpha)
{
    double pp = (np + 1) / (Np + K);
    if (Nu == 0) return 0;
    double pu = (nu + alpha * pp) / (Nu + alpha);
    return log(pu / pp);
}

typedef struct {
    pd_profile u[2], p[2];
    pd_query_day ud[2], pd[2];
} world;

/* User: day 20 (red, bmw, 7000) x2 + (blue, audi, 12000); day 22 (red, bmw, 3000).
 * Population: day 20 the user's plus (green, vw, 4000) x3; day 22 (red, audi, 9000). */
static void world_build(world *w, const pd_schema *s)
{
    for (int i = 0; i < 2; i++) {
        pd_profile_init(&w->u[i], s);
        pd_profile_init(&w->p[i], s);
    }
    for (int k = 0; k < 2; k++) {
        add_ev(&w->u[0], s, "red", "bmw", 7000);
        add_ev(&w->p[0], s, "red", "bmw", 7000);
    }
    add_ev(&w->u[0], s, "blue", "audi", 12000);
    add_ev(&w->p[0], s, "blue", "audi", 12000);
    add_ev(&w->u[1], s, "red", "bmw", 3000);
    for (int k = 0; k < 3; k++) add_ev(&w->p[0], s, "green", "vw", 4000);
    add_ev(&w->p[1], s, "red", "audi", 9000);
    add_ev(&w->p[1], s, "red", "bmw", 3000);
    w->ud[0] = (pd_query_day){D_2026_11_20, &w->u[0]};
    w->ud[1] = (pd_query_day){D_2026_11_22, &w->u[1]};
    w->pd[0] = (pd_query_day){D_2026_11_20, &w->p[0]};
    w->pd[1] = (pd_query_day){D_2026_11_22, &w->p[1]};
}

static void world_free(world *w)
{
    for (int i = 0; i < 2; i++) {
        pd_profile_free(&w->u[i]);
        pd_profile_free(&w->p[i]);
    }
}

TEST(score_model_formulas)
{
    pd_schema s;
    sc_schema(&s);
    world w;
    world_build(&w, &s);
    pd_score_req r;
    char err[512] = "";
    const char *body = "{\"days\":3,\"decay\":\"exp:2\",\"alpha\":4,\"dim_weights\":{\"price\":0.5},\"items\":["
                       "{\"id\":\"a\",\"item\":{\"color\":\"red\",\"make\":\"bmw\",\"price\":5000}},"
                       "{\"id\":\"b\",\"item\":{\"color\":\"green\",\"make\":\"vw\",\"price\":10000.5}},"
                       "{\"id\":\"c\",\"item\":{\"color\":\"pink\",\"price\":7000}}]}";
    CHECK_INT(parse_body(&r, &s, body, 10, err, sizeof err), PD_OK);
    pd_score_model *m = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, w.ud, 2, w.pd, 2);
    CHECK_INT(pd_score_model_cold(m), 0);
    double score[3];
    pd_score_items(&r, m, score);
    /* weights: day 22 age 0 -> 1, day 20 age 2 -> 2^-1 */
    const double w20 = 0.5, w22 = 1.0, a = 4;
    /* color: user red 2*w20 + w22, blue w20, N_u = 3 w20 + w22; pop red 2 w20 + 2 w22, blue w20,
     * green 3 w20, N_P = 6 w20 + 2 w22, K = 3 + 1 */
    double Nu = 3 * w20 + w22, Np = 6 * w20 + 2 * w22;
    double c_red = want_c(2 * w20 + w22, Nu, 2 * w20 + 2 * w22, Np, 4, a);
    double c_green = want_c(0, Nu, 3 * w20, Np, 4, a);
    double c_pink = want_c(0, Nu, 0, Np, 4, a);
    /* make: user bmw 2 w20 + w22, audi w20; pop bmw 2 w20 + w22, audi w20 + w22, vw 3 w20 */
    double c_bmw = want_c(2 * w20 + w22, Nu, 2 * w20 + w22, Np, 4, a);
    double c_vw = want_c(0, Nu, 3 * w20, Np, 4, a);
    /* price buckets (<=5000, <=10000, +Inf), K = 3: user 7000 x2 (w20) -> b1, 12000 (w20) -> b2,
     * 3000 (w22) -> b0; pop adds 4000 x3 (w20) -> b0, 9000 (w22) -> b1, 3000 (w22) -> b0 */
    double pb0_u = w22, pb1_u = 2 * w20, pb2_u = w20;
    double pb0_p = 3 * w20 + w22, pb1_p = 2 * w20 + w22, pb2_p = w20;
    (void)pb1_u;
    (void)pb1_p;
    double c_5000 = want_c(pb0_u, Nu, pb0_p, Np, 3, a);    /* 5000 <= 5000: the first bucket */
    double c_10000_5 = want_c(pb2_u, Nu, pb2_p, Np, 3, a); /* beyond the last bound: +Inf */
    double c_7000 = want_c(2 * w20, Nu, 2 * w20 + w22, Np, 3, a);
    CHECK_DBL(score[0], c_red + c_bmw + 0.5 * c_5000, 1e-12);
    CHECK_DBL(score[1], c_green + c_vw + 0.5 * c_10000_5, 1e-12);
    CHECK_DBL(score[2], c_pink + 0.5 * c_7000, 1e-12);
    /* pd_score_dim: the probabilities themselves */
    double pu, pp;
    pd_attr at = {.kind = PD_ATTR_STR, .s = "red", .len = 3};
    double c = pd_score_dim(m, 0, &at, r.items[0].hash[0], a, &pu, &pp);
    CHECK_DBL(pp, (2 * w20 + 2 * w22 + 1) / (Np + 4), 1e-15);
    CHECK_DBL(pu, (2 * w20 + w22 + a * pp) / (Nu + a), 1e-15);
    CHECK_DBL(c, c_red, 1e-15);

    /* the answer: sorted by score, with explain */
    pd_score_prior pr = {.age_s = -1, .parts_covered = 0, .parts_total = 4};
    pd_buf out = {0};
    r.explain = 1;
    pd_score_render_rank(&r, m, &s, "u", 1, 2, &pr, &out);
    pd_buf_putc(&out, '}');
    cJSON *j = cJSON_Parse(out.p);
    CHECK(j != NULL);
    if (j) {
        cJSON *items = cJSON_GetObjectItem(j, "items");
        CHECK_INT(cJSON_GetArraySize(items), 3);
        double prev = INFINITY;
        for (int i = 0; i < 3; i++) {
            cJSON *it = cJSON_GetArrayItem(items, i);
            double sc = cJSON_GetObjectItem(it, "score")->valuedouble;
            CHECK(sc <= prev);
            prev = sc;
            const char *id = cJSON_GetObjectItem(it, "id")->valuestring;
            int k = id[0] - 'a';
            CHECK(sc == score[k]); /* printed exactly */
            cJSON *con = cJSON_GetObjectItem(it, "contributions");
            double sum = 0;
            for (cJSON *x = con ? con->child : NULL; x; x = x->next) sum += x->valuedouble;
            CHECK_DBL(sum, score[k], 1e-12);
            if (k == 2) {
                CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(it, "missing"), 0)->valuestring, "make");
                CHECK_DBL(cJSON_GetObjectItem(con, "price")->valuedouble, 0.5 * c_7000, 1e-12);
            }
        }
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "cold_start")));
        cJSON *prior = cJSON_GetObjectItem(j, "prior");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(prior, "age_s")));
        CHECK_INT(cJSON_GetObjectItem(prior, "partitions_total")->valueint, 4);
        cJSON_Delete(j);
    }
    pd_buf_free(&out);
    pd_score_model_free(m);
    pd_score_req_free(&r);
    world_free(&w);
}

TEST(score_cold_and_empty_prior)
{
    pd_schema s;
    sc_schema(&s);
    world w;
    world_build(&w, &s);
    pd_score_req r;
    char err[512] = "";
    const char *body = "{\"items\":[{\"id\":\"x\",\"make\":\"vw\"},{\"id\":\"y\",\"make\":\"bmw\",\"price\":1},"
                       "{\"id\":\"z\",\"color\":\"red\"}],\"days\":5}";
    CHECK_INT(parse_body(&r, &s, body, 10, err, sizeof err), PD_OK);
    /* a user without days: cold, every score exactly 0, the input order kept */
    pd_score_model *m = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, NULL, 0, w.pd, 2);
    CHECK_INT(pd_score_model_cold(m), 1);
    pd_score_prior pr = {.age_s = 12.5, .parts_covered = 4, .parts_total = 4, .ndays = 2};
    pd_buf out = {0};
    pd_score_render_rank(&r, m, &s, "u", 1, 0, &pr, &out);
    CHECK(strstr(out.p, "\"cold_start\":true") != NULL);
    CHECK(strstr(out.p, "\"items\":[{\"id\":\"x\",\"score\":0},{\"id\":\"y\",\"score\":0},{\"id\":\"z\",\"score\":0}]") != NULL);
    CHECK(strstr(out.p, "\"prior\":{\"age_s\":12.5,\"days\":2,\"partitions_covered\":4,\"partitions_total\":4,\"complete\":true}") != NULL);
    pd_buf_free(&out);
    pd_score_model_free(m);

    /* no prior at all: p_P = 1 (categorical, K = 1), 1/3 (price, 3 buckets) */
    m = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, w.ud, 2, NULL, 0);
    double score[3];
    pd_score_items(&r, m, score);
    double Nu = 4, a = 10;
    double c_vw = want_c(0, Nu, 0, 0, 1, a), c_bmw = want_c(3, Nu, 0, 0, 1, a);
    double c_p1 = want_c(1, Nu, 0, 0, 3, a), c_red = want_c(3, Nu, 0, 0, 1, a);
    CHECK_DBL(score[0], c_vw, 1e-12);
    CHECK_DBL(score[1], c_bmw + c_p1, 1e-12);
    CHECK_DBL(score[2], c_red, 1e-12);
    CHECK(c_vw < 0 && c_bmw < 0); /* p_u < p_P = 1 for every categorical value */
    pd_score_model_free(m);
    pd_score_req_free(&r);
    world_free(&w);
}

TEST(score_ties_in_input_order)
{
    pd_schema s;
    sc_schema(&s);
    world w;
    world_build(&w, &s);
    pd_score_req r;
    char err[512] = "";
    const char *body = "{\"items\":[{\"id\":1,\"make\":\"vw\"},{\"id\":2,\"make\":\"bmw\"},{\"id\":3,\"make\":\"vw\"},"
                       "{\"id\":4},{\"id\":5,\"make\":\"bmw\"},{\"id\":6,\"make\":\"audi\"}],\"days\":5}";
    CHECK_INT(parse_body(&r, &s, body, 10, err, sizeof err), PD_OK);
    pd_score_model *m = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, w.ud, 2, w.pd, 2);
    pd_buf out = {0};
    pd_score_prior pr = {.age_s = -1};
    pd_score_render_rank(&r, m, &s, "u", 1, 0, &pr, &out);
    pd_buf_putc(&out, '}');
    cJSON *j = cJSON_Parse(out.p);
    cJSON *items = j ? cJSON_GetObjectItem(j, "items") : NULL;
    /* bmw (the user's favourite) first; audi scores exactly 0 here (p_P = 3/12,
     * p_u = (1 + 10 * 0.25) / 14 = 0.25): a tie with the item without make,
     * which came first; then vw */
    static const int want[6] = {2, 5, 4, 6, 1, 3};
    for (int i = 0; items && i < 6; i++) CHECK_INT(cJSON_GetArrayItem(items, i)->child->valueint, want[i]);
    cJSON_Delete(j);
    pd_buf_free(&out);
    pd_score_model_free(m);
    pd_score_req_free(&r);
    world_free(&w);
}

TEST(score_affinities)
{
    pd_schema s;
    sc_schema(&s);
    world w;
    world_build(&w, &s);
    pd_score_aff a;
    char err[512] = "";
    CHECK_INT(pd_score_parse_affinities(&a, "days=5&dims=make,price&alpha=1", &s, TODAY, 30, err, sizeof err), PD_OK);
    CHECK_INT(a.q.top, PD_SCORE_TOP_DEFAULT);
    CHECK_DBL(a.alpha, 1, 0);
    CHECK_INT(pd_score_parse_affinities(&a, "alpha=0", &s, TODAY, 30, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_score_parse_affinities(&a, "order=x", &s, TODAY, 30, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_score_parse_affinities(&a, "breakdown=day", &s, TODAY, 30, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_score_parse_affinities(&a, "bogus=1", &s, TODAY, 30, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_score_parse_affinities(&a, "days=5&dims=make,price&alpha=1&top=1", &s, TODAY, 30, err, sizeof err),
              PD_OK);
    pd_score_model *m = pd_score_model_new(&s, &a.q, a.q.dims, a.q.ndims, w.ud, 2, w.pd, 2);
    pd_buf out = {0};
    pd_score_prior pr = {.age_s = -1};
    pd_score_render_affinities(&a, m, &s, "u", 1, 0, &pr, &out);
    pd_buf_putc(&out, '}');
    cJSON *j = cJSON_Parse(out.p);
    CHECK(j != NULL);
    if (j) {
        cJSON *mk = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dimensions"), "make");
        cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(mk, "values"), 0);
        CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(mk, "values")), 1);
        /* user bmw 3, audi 1 (N_u 4); pop bmw 3, audi 2, vw 3 (N_P 8, K 4), alpha 1:
         * bmw p_P 4/12, p_u (3 + 1/3) / 5, lift 2; audi p_P 3/12, p_u 0.25, lift 1 */
        CHECK_STR(cJSON_GetObjectItem(v, "value")->valuestring, "bmw");
        double pp = 4.0 / 12, pu = (3 + pp) / 5;
        CHECK_DBL(cJSON_GetObjectItem(v, "p_population")->valuedouble, pp, 1e-15);
        CHECK_DBL(cJSON_GetObjectItem(v, "p_user")->valuedouble, pu, 1e-15);
        CHECK_DBL(cJSON_GetObjectItem(v, "lift")->valuedouble, pu / pp, 1e-14);
        cJSON_Delete(j);
    }
    pd_buf_free(&out);
    pd_score_model_free(m);
    /* order=p_user: bmw */
    CHECK_INT(pd_score_parse_affinities(&a, "days=5&dims=make&top=1&order=p_user", &s, TODAY, 30, err, sizeof err),
              PD_OK);
    m = pd_score_model_new(&s, &a.q, a.q.dims, a.q.ndims, w.ud, 2, w.pd, 2);
    out.len = 0;
    pd_score_render_affinities(&a, m, &s, "u", 1, 0, &pr, &out);
    CHECK(strstr(out.p, "\"values\":[{\"value\":\"bmw\"") != NULL);
    pd_buf_free(&out);
    pd_score_model_free(m);
    /* lift and p_user disagree: a population of 20 bmw and 1 audi (N_P 21, K 3,
     * p_P 21/24 and 2/24), alpha 1: p_u bmw 0.775 (lift 0.886), audi 0.2167
     * (lift 2.6). The default order is by lift: audi; order=p_user: bmw. */
    pd_profile pop;
    pd_profile_init(&pop, &s);
    for (int k = 0; k < 20; k++) add_ev(&pop, &s, NULL, "bmw", NAN);
    add_ev(&pop, &s, NULL, "audi", NAN);
    pd_query_day popd = {D_2026_11_22, &pop};
    static const char *const qs[2] = {"days=5&dims=make&top=1&alpha=1", "days=5&dims=make&top=1&alpha=1&order=p_user"};
    static const char *const want[2] = {"\"values\":[{\"value\":\"audi\"", "\"values\":[{\"value\":\"bmw\""};
    for (int k = 0; k < 2; k++) {
        CHECK_INT(pd_score_parse_affinities(&a, qs[k], &s, TODAY, 30, err, sizeof err), PD_OK);
        m = pd_score_model_new(&s, &a.q, a.q.dims, a.q.ndims, w.ud, 2, &popd, 1);
        pd_buf o2 = {0};
        pd_score_render_affinities(&a, m, &s, "u", 1, 0, &pr, &o2);
        if (!strstr(o2.p, want[k])) pd_test_fail(__FILE__, __LINE__, "%s: %s", qs[k], o2.p);
        pd_buf_free(&o2);
        pd_score_model_free(m);
    }
    pd_profile_free(&pop);
    world_free(&w);
}

/* Arbitrary bodies never crash the parser (a fuzz-like sweep: truncations
 * and byte flips of a valid body). */
TEST(score_parse_mutations)
{
    pd_schema s;
    sc_schema(&s);
    const char *base = "{\"items\":[{\"id\":\"n\",\"item\":{\"color\":\"red\",\"make\":\"bmw\",\"price\":7000}},"
                       "{\"id\":7,\"color\":\"blue\"}],\"days\":7,\"decay\":\"exp:3\",\"dims\":[\"make\"],"
                       "\"dim_weights\":{\"make\":2},\"alpha\":2.5,\"explain\":true}";
    size_t n = strlen(base);
    char *b = malloc(n + 1);
    static const char subst[] = "{}[]\",:0a\\ -e.nt";
    int ok = 0;
    for (size_t i = 0; i <= n; i++) {
        pd_score_req r;
        char err[512];
        if (parse_body(&r, &s, base, 10, err, sizeof err) == PD_OK) pd_score_req_free(&r);
        /* truncated at i */
        if (pd_score_parse_rank(&r, base, i, &s, TODAY, 30, 10, err, sizeof err) == PD_OK) {
            ok++;
            pd_score_req_free(&r);
        }
        for (size_t k = 0; i < n && k < sizeof subst - 1; k++) {
            memcpy(b, base, n + 1);
            b[i] = subst[k];
            if (pd_score_parse_rank(&r, b, n, &s, TODAY, 30, 10, err, sizeof err) == PD_OK) pd_score_req_free(&r);
        }
    }
    CHECK_INT(ok, 1); /* only the whole body */
    free(b);
}

/* types / weights: every event counts with its type's weight, on the
 * user's side and the population's (docs/scoring.md, "Types and
 * weights"); expected sums written out from the events put in. */
static void add_typed(pd_profile *p, const pd_schema *s, const char *type, const char *make, double price)
{
    char buf[256];
    snprintf(buf, sizeof buf, "{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"%s\",\"item\":{\"make\":\"%s\",\"price\":%g}}",
             type, make, price);
    pd_event ev;
    char err[256];
    CHECK_INT(pd_event_parse(&ev, s, buf, strlen(buf), 0, err, sizeof err), 0);
    pd_profile_add(p, &ev);
    pd_event_free(&ev);
}

TEST(score_types_weights)
{
    static const char js[] = "{\"dimensions\":[{\"name\":\"make\",\"type\":\"categorical\"},"
                             "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[5000]}],"
                             "\"tracked_types\":[\"park\",\"contact\"]}";
    pd_schema s;
    char err[512] = "";
    CHECK_INT(pd_schema_load_json(&s, js, sizeof js - 1, 64, err, sizeof err), PD_OK);
    pd_profile u, p;
    pd_profile_init(&u, &s);
    pd_profile_init(&p, &s);
    /* user: view bmw 3000 x3, park audi 7000 x2, contact bmw 7000, search vw 3000 */
    for (int k = 0; k < 3; k++) add_typed(&u, &s, "view", "bmw", 3000);
    for (int k = 0; k < 2; k++) add_typed(&u, &s, "park", "audi", 7000);
    add_typed(&u, &s, "contact", "bmw", 7000);
    add_typed(&u, &s, "search", "vw", 3000);
    /* population: the user's events plus park vw 3000 x4, view audi 3000 x5 */
    for (int k = 0; k < 3; k++) add_typed(&p, &s, "view", "bmw", 3000);
    for (int k = 0; k < 2; k++) add_typed(&p, &s, "park", "audi", 7000);
    add_typed(&p, &s, "contact", "bmw", 7000);
    add_typed(&p, &s, "search", "vw", 3000);
    for (int k = 0; k < 4; k++) add_typed(&p, &s, "park", "vw", 3000);
    for (int k = 0; k < 5; k++) add_typed(&p, &s, "view", "audi", 3000);
    pd_query_day ud = {TODAY, &u}, popd = {TODAY, &p};
    const char *items = "\"items\":[{\"id\":\"b\",\"make\":\"bmw\",\"price\":7000},{\"id\":\"a\",\"make\":\"audi\"},"
                        "{\"id\":\"v\",\"make\":\"vw\",\"price\":1}]";
    /* (body, weight of view, park, contact, search) */
    static const struct {
        const char *f;
        double view, park, contact, search;
    } V[] = {
        {"\"types\":[\"park\",\"contact\"]", 0, 1, 1, 0},
        {"\"weights\":{\"park\":3,\"contact\":0,\"*\":0.5}", 0.5, 3, 0, 0.5},
        {"\"types\":\"contact\",\"weights\":{\"contact\":2}", 0, 0, 2, 0},
        {"\"weights\":{\"*\":2,\"view\":2,\"park\":0}", 2, 0, 2, 2},
    };
    for (size_t v = 0; v < sizeof V / sizeof V[0]; v++) {
        char body[512];
        snprintf(body, sizeof body, "{%s,%s,\"days\":1,\"alpha\":3}", V[v].f, items);
        pd_score_req r;
        int rc = parse_body(&r, &s, body, 10, err, sizeof err);
        CHECK_INT(rc, PD_OK);
        if (rc) {
            pd_test_fail(__FILE__, __LINE__, "%s: %s", body, err);
            continue;
        }
        pd_score_model *m = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, &ud, 1, &popd, 1);
        double vw_ = V[v].view, pk = V[v].park, ct = V[v].contact, se = V[v].search;
        /* user sums */
        double u_bmw = 3 * vw_ + ct, u_audi = 2 * pk, u_vw = se, Nu = u_bmw + u_audi + u_vw;
        double u_b0 = 3 * vw_ + se, u_b1 = 2 * pk + ct; /* price <= 5000, +Inf */
        /* population sums */
        double p_bmw = 3 * vw_ + ct, p_audi = 2 * pk + 5 * vw_, p_vw = se + 4 * pk, Np = p_bmw + p_audi + p_vw;
        double p_b0 = 3 * vw_ + se + 4 * pk + 5 * vw_, p_b1 = 2 * pk + ct;
        double K = (p_bmw > 0) + (p_audi > 0) + (p_vw > 0) + 1;
        double want[3] = {
            want_c(u_bmw, Nu, p_bmw, Np, K, 3) + want_c(u_b1, Nu, p_b1, Np, 2, 3),
            want_c(u_audi, Nu, p_audi, Np, K, 3),
            want_c(u_vw, Nu, p_vw, Np, K, 3) + want_c(u_b0, Nu, p_b0, Np, 2, 3),
        };
        double score[3];
        pd_score_items(&r, m, score);
        for (int i = 0; i < 3; i++)
            if (fabs(score[i] - want[i]) > 1e-12 * (1 + fabs(want[i])))
                pd_test_fail(__FILE__, __LINE__, "%s: item %d score %.17g, expected %.17g", V[v].f, i, score[i],
                             want[i]);
        CHECK_INT(pd_score_model_cold(m), 0);
        pd_score_model_free(m);
        pd_score_req_free(&r);
    }
    /* only types the user has no events of: cold (every score 0), but it has events */
    pd_score_req r;
    char body[512];
    snprintf(body, sizeof body, "{\"types\":[\"park\"],\"weights\":{\"park\":0},%s}", items);
    CHECK_INT(parse_body(&r, &s, body, 10, err, sizeof err), PD_OK);
    pd_score_model *m = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, &ud, 1, &popd, 1);
    CHECK_INT(pd_score_model_cold(m), 1);
    CHECK_INT(pd_score_model_has_events(m), 1);
    double score[3];
    pd_score_items(&r, m, score);
    CHECK(score[0] == 0 && score[1] == 0 && score[2] == 0);
    pd_score_model_free(m);
    pd_score_req_free(&r);
    /* the profile query's messages for bad types/weights */
    expect_400(&s, "{\"items\":[],\"types\":[\"view\"]}", PD_EINVAL, "'view' is not a tracked event type");
    expect_400(&s, "{\"items\":[],\"weights\":{\"search\":2}}", PD_EINVAL, "'search' is not a tracked event type");
    pd_profile_free(&u);
    pd_profile_free(&p);
}

/* pd_score_items computes each distinct (dimension, value) once: every
 * item's score equals the sum of its unmemoised contributions
 * (pd_score_dim), for values in both tables, in one, in none, repeated. */
TEST(score_memo_matches_direct)
{
    pd_schema s;
    sc_schema(&s);
    world w;
    world_build(&w, &s);
    static const char *const colors[] = {"red", "blue", "green", "pink", "red", "teal", "blue"};
    static const char *const makes[] = {"bmw", "audi", "vw", "kia", "bmw", "vw", "seat"};
    static const double prices[] = {3000, 7000, 12000, 5000, 3000, 1e9, 7000};
    pd_buf b = {0};
    PD_BUF_LIT(&b, "{\"days\":3,\"alpha\":2,\"dim_weights\":{\"make\":1.5},\"items\":[");
    for (int i = 0; i < 40; i++)
        pd_buf_printf(&b, "%s{\"id\":%d,\"item\":{\"color\":\"%s\",\"make\":\"%s\",\"price\":%.17g}}", i ? "," : "", i,
                      colors[i % 7], makes[(i * 3) % 7], prices[(i * 5) % 7]);
    PD_BUF_LIT(&b, "]}");
    pd_score_req r;
    char err[512] = "";
    CHECK_INT(pd_score_parse_rank(&r, b.p, b.len, &s, TODAY, 30, 100, err, sizeof err), PD_OK);
    for (int side = 0; side < 2; side++) { /* with a prior, and without one */
        pd_score_model *m = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, w.ud, 2, w.pd, side ? 0 : 2);
        double score[40];
        pd_score_items(&r, m, score);
        for (int i = 0; i < r.nitems; i++) {
            double want = 0;
            for (int j = 0; j < r.nsd; j++)
                want += r.lambda[j] * pd_score_dim(m, j, &r.items[i].attrs[j], r.items[i].hash[j], r.alpha, NULL, NULL);
            if (score[i] != want) pd_test_fail(__FILE__, __LINE__, "item %d: %.17g, unmemoised %.17g", i, score[i], want);
        }
        pd_score_model_free(m);
    }
    pd_score_req_free(&r);
    /* many distinct values of one length (1,000 items, 500 colours "c000"..
     * plus the prior's): values whose hashes meet in the table of distinct
     * values must still be told apart by their bytes */
    b.len = 0;
    PD_BUF_LIT(&b, "{\"days\":3,\"dims\":[\"color\"],\"items\":[");
    for (int i = 0; i < 1000; i++)
        pd_buf_printf(&b, "%s{\"id\":%d,\"color\":\"%s\"}", i ? "," : "", i,
                      i % 10 == 0 ? colors[i / 10 % 7] : (char[8]){'c', (char)('0' + i % 500 / 100),
                                                           (char)('0' + i % 100 / 10), (char)('0' + i % 10), 0});
    PD_BUF_LIT(&b, "]}");
    CHECK_INT(pd_score_parse_rank(&r, b.p, b.len, &s, TODAY, 30, 1000, err, sizeof err), PD_OK);
    {
        /* a user with every colour, each a different number of times, so
         * that every value has its own contribution */
        pd_schema big;
        static const char js[] = "{\"dimensions\":[{\"name\":\"color\",\"type\":\"categorical\"},"
                                 "{\"name\":\"make\",\"type\":\"categorical\"},"
                                 "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[5000,10000]}]}";
        CHECK_INT(pd_schema_load_json(&big, js, sizeof js - 1, 10000, err, sizeof err), PD_OK);
        pd_profile up;
        pd_profile_init(&up, &big);
        for (int v = 0; v < 500; v++) {
            char c[8] = {'c', (char)('0' + v / 100), (char)('0' + v / 10 % 10), (char)('0' + v % 10), 0};
            for (int k = 0; k <= v % 13; k++) add_ev(&up, &big, c, NULL, NAN);
        }
        pd_query_day ud1 = {TODAY, &up};
        pd_score_model *m = pd_score_model_new(&big, &r.q, r.sdims, r.nsd, &ud1, 1, w.pd, 2);
        double *score = pd_malloc(1000 * sizeof *score);
        pd_score_items(&r, m, score);
        int bad = 0;
        for (int i = 0; i < r.nitems && bad < 5; i++) {
            double want = pd_score_dim(m, 0, &r.items[i].attrs[0], r.items[i].hash[0], r.alpha, NULL, NULL);
            if (score[i] != want) {
                pd_test_fail(__FILE__, __LINE__, "item %d: %.17g, direct %.17g", i, score[i], want);
                bad++;
            }
        }
        pd_free(score);
        pd_score_model_free(m);
        pd_profile_free(&up);
    }
    pd_score_req_free(&r);
    pd_buf_free(&b);
    world_free(&w);
}

/* The population's half built once and shared (pd_score_pop: what
 * http_score.c caches per prior and key): models of different users and
 * alphas over one pop score bit-identically to models that merged the
 * population themselves, in any order (the memo is per model, the pop
 * read-only); and pd_score_pop_key tells apart everything the sums depend
 * on -- range, decay, types, weights -- and nothing else (alpha, dims,
 * items, dim_weights are the model's). */
static void key_of(const pd_schema *s, const char *body, const pd_query_day *pd, int np, pd_buf *key)
{
    pd_score_req r;
    char err[512] = "";
    int rc = pd_score_parse_rank(&r, body, strlen(body), s, TODAY, 30, 10, err, sizeof err);
    CHECK_INT(rc, PD_OK);
    if (rc) return;
    key->len = 0;
    int k0 = 0, k1 = np;
    while (k0 < k1 && pd[k0].day < r.q.from_day) k0++;
    while (k1 > k0 && pd[k1 - 1].day > r.q.to_day) k1--;
    pd_score_pop_key(s, &r.q, pd + k0, k1 - k0, key);
    pd_score_req_free(&r);
}

TEST(score_shared_population)
{
    pd_schema s;
    sc_schema(&s);
    world w;
    world_build(&w, &s);
    const char *body = "{\"days\":3,\"decay\":\"exp:2\",\"items\":["
                       "{\"id\":\"a\",\"item\":{\"color\":\"red\",\"make\":\"bmw\",\"price\":5000}},"
                       "{\"id\":\"b\",\"item\":{\"color\":\"green\",\"make\":\"vw\",\"price\":10000.5}},"
                       "{\"id\":\"c\",\"item\":{\"color\":\"blue\",\"make\":\"audi\",\"price\":7000}},"
                       "{\"id\":\"d\",\"item\":{\"color\":\"pink\",\"make\":\"bmw\",\"price\":3000}}]}";
    pd_score_req r;
    char err[512] = "";
    CHECK_INT(pd_score_parse_rank(&r, body, strlen(body), &s, TODAY, 30, 10, err, sizeof err), PD_OK);
    pd_score_pop *pop = pd_score_pop_new(&s, &r.q, w.pd, 2);
    static const double alphas[] = {10, 2, 0.5, 10};
    for (int round = 0; round < 4; round++)
        for (int user = 0; user < 2; user++) { /* the world's user, and one with day 22 only */
            r.alpha = alphas[round];
            const pd_query_day *ud = user ? &w.ud[1] : w.ud;
            int nu = user ? 1 : 2;
            pd_score_model *shared = pd_score_model_new_pop(&s, &r.q, r.sdims, r.nsd, ud, nu, pop);
            pd_score_model *own = pd_score_model_new(&s, &r.q, r.sdims, r.nsd, ud, nu, w.pd, 2);
            double a[4], b[4];
            pd_score_items(&r, shared, a);
            pd_score_items(&r, own, b);
            for (int i = 0; i < 4; i++)
                if (a[i] != b[i])
                    pd_test_fail(__FILE__, __LINE__, "round %d user %d item %d: shared %.17g, own %.17g", round,
                                 user, i, a[i], b[i]);
            pd_score_model_free(shared);
            pd_score_model_free(own);
        }
    pd_score_pop_free(pop);
    pd_score_req_free(&r);

    /* keys: same sums <=> same key */
    static const char *const same[] = {
        "{\"days\":3,\"decay\":\"exp:2\",\"items\":[]}",
        "{\"days\":3,\"decay\":\"exp:2\",\"alpha\":3,\"dims\":[\"make\"],\"items\":[{\"id\":1,\"make\":\"x\"}]}",
        "{\"decay\":\"exp:2\",\"days\":3,\"dim_weights\":{\"make\":2},\"explain\":true,\"items\":[]}",
    };
    static const char *const differ[] = {
        "{\"days\":3,\"items\":[]}",                            /* no decay */
        "{\"days\":3,\"decay\":\"exp:3\",\"items\":[]}",          /* another half-life */
        "{\"days\":3,\"decay\":\"linear:5\",\"items\":[]}",       /* another decay */
        "{\"days\":1,\"decay\":\"exp:2\",\"items\":[]}",          /* fewer days */
    };
    pd_buf k0 = {0}, k = {0};
    key_of(&s, same[0], w.pd, 2, &k0);
    for (size_t i = 1; i < PD_ARRAY_LEN(same); i++) {
        key_of(&s, same[i], w.pd, 2, &k);
        CHECK(k.len == k0.len && memcmp(k.p, k0.p, k.len) == 0);
    }
    for (size_t i = 0; i < PD_ARRAY_LEN(differ); i++) {
        key_of(&s, differ[i], w.pd, 2, &k);
        if (k.len == k0.len && memcmp(k.p, k0.p, k.len) == 0)
            pd_test_fail(__FILE__, __LINE__, "same key as %s for %s", same[0], differ[i]);
    }
    world_free(&w);

    /* types and weights: a schema with tracked types */
    static const char js[] = "{\"dimensions\":[{\"name\":\"make\",\"type\":\"categorical\"}],"
                             "\"tracked_types\":[\"park\",\"contact\"]}";
    pd_schema ts;
    CHECK_INT(pd_schema_load_json(&ts, js, sizeof js - 1, 64, err, sizeof err), PD_OK);
    pd_profile p;
    pd_profile_init(&p, &ts);
    pd_query_day pd1 = {TODAY, &p};
    static const char *const typed[] = {
        "{\"days\":3,\"items\":[]}",
        "{\"days\":3,\"types\":[\"park\"],\"items\":[]}",
        "{\"days\":3,\"types\":[\"contact\"],\"items\":[]}",
        "{\"days\":3,\"types\":[\"park\",\"contact\"],\"items\":[]}",
        "{\"days\":3,\"weights\":{\"park\":3},\"items\":[]}",
        "{\"days\":3,\"weights\":{\"park\":2},\"items\":[]}",
        "{\"days\":3,\"weights\":{\"*\":0.5},\"items\":[]}",
        "{\"days\":3,\"types\":[\"park\"],\"weights\":{\"park\":2},\"items\":[]}",
    };
    pd_buf keys[PD_ARRAY_LEN(typed)];
    memset(keys, 0, sizeof keys);
    for (size_t i = 0; i < PD_ARRAY_LEN(typed); i++) key_of(&ts, typed[i], &pd1, 1, &keys[i]);
    for (size_t i = 0; i < PD_ARRAY_LEN(typed); i++)
        for (size_t j = i + 1; j < PD_ARRAY_LEN(typed); j++)
            if (keys[i].len == keys[j].len && memcmp(keys[i].p, keys[j].p, keys[i].len) == 0)
                pd_test_fail(__FILE__, __LINE__, "same key for %s and %s", typed[i], typed[j]);
    for (size_t i = 0; i < PD_ARRAY_LEN(typed); i++) pd_buf_free(&keys[i]);
    pd_profile_free(&p);
    pd_buf_free(&k0);
    pd_buf_free(&k);
}

/* test_query.c -- query parameter parsing and response rendering.
 *
 * Oracles: day numbers were computed separately (Python datetime), the
 * day profiles are built by hand here (no profile.c code), and every
 * expected aggregate (weighted counts, mean, stddev, histogram buckets) is
 * recomputed in this file from the raw event values with its own loops;
 * the rendered JSON is parsed with cJSON and compared field by field. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <cJSON.h>

#include "profile.h"
#include "query.h"
#include "schema.h"
#include "util.h"

/* Day numbers (Python: (date(y,m,d) - date(1970,1,1)).days). */
#define D_2026_01_01 20454
#define D_2026_11_01 20758
#define D_2026_11_10 20767
#define D_2026_11_20 20777
#define D_2026_11_21 20778
#define D_2026_11_22 20779
#define D_2035_12_28 24102
#define TODAY D_2026_11_22

/* Schema by hand: 0 color (cat), 1 make (cat), 2 price (num 5000,10000,20000),
 * 3 year (num 2000,2010,2020), 4 "body type" (cat). */
enum { S_COLOR, S_MAKE, S_PRICE, S_YEAR, S_BODY };

static void add_dim(pd_schema *s, const char *name, pd_dim_type t, const double *b, int nb)
{
    pd_dim *d = &s->dims[s->ndims++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->type = t;
    d->nbounds = nb;
    for (int i = 0; i < nb; i++) d->bounds[i] = b[i];
}

static void q_schema(pd_schema *s)
{
    static const double pb[] = {5000, 10000, 20000}, yb[] = {2000, 2010, 2020};
    memset(s, 0, sizeof *s);
    s->max_values = 8;
    add_dim(s, "color", PD_DIM_CATEGORICAL, NULL, 0);
    add_dim(s, "make", PD_DIM_CATEGORICAL, NULL, 0);
    add_dim(s, "price", PD_DIM_NUMERIC, pb, 3);
    add_dim(s, "year", PD_DIM_NUMERIC, yb, 3);
    add_dim(s, "body type", PD_DIM_CATEGORICAL, NULL, 0);
}

/* ---------------- parameter parsing ---------------- */

static int parse(pd_query *q, const char *qs, char *err, size_t errlen)
{
    pd_schema s;
    q_schema(&s);
    err[0] = '\0';
    return pd_query_parse_params(q, qs, &s, TODAY, 30, err, errlen);
}

TEST(query_params_defaults)
{
    pd_query q;
    char err[256];
    CHECK_INT(parse(&q, "", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, TODAY - 29);
    CHECK_INT(q.to_day, TODAY);
    CHECK_INT(q.ndims, 0);
    CHECK_INT(q.breakdown_day, 0);
    CHECK_INT(q.decay, PD_DECAY_NONE);
    CHECK_INT(parse(&q, NULL, err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, TODAY - 29);
    CHECK_INT(q.to_day, TODAY);
    /* empty segments are ignored */
    CHECK_INT(parse(&q, "&days=7&", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, TODAY - 6);
    CHECK_INT(q.to_day, TODAY);
}

TEST(query_params_ranges)
{
    pd_query q;
    char err[256];
    CHECK_INT(parse(&q, "from=2026-11-01&to=2026-11-22", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, D_2026_11_01);
    CHECK_INT(q.to_day, D_2026_11_22);
    CHECK_INT(parse(&q, "to=2026-11-22&from=2026-11-01", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, D_2026_11_01);
    CHECK_INT(parse(&q, "from=2026-11-01", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, D_2026_11_01);
    CHECK_INT(q.to_day, TODAY);
    CHECK_INT(parse(&q, "to=2026-11-10", err, sizeof err), PD_OK);
    CHECK_INT(q.to_day, D_2026_11_10);
    CHECK_INT(q.from_day, D_2026_11_10 - 29);
    CHECK_INT(parse(&q, "days=1", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, TODAY);
    CHECK_INT(q.to_day, TODAY);
    CHECK_INT(parse(&q, "days=3650", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, TODAY - 3649);
    /* single day and exactly 3649 / 3650 days wide */
    CHECK_INT(parse(&q, "from=2026-11-20&to=2026-11-20", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, D_2026_11_20);
    CHECK_INT(q.to_day, D_2026_11_20);
    CHECK_INT(parse(&q, "from=2026-01-01&to=2035-12-28", err, sizeof err), PD_OK);
    CHECK_INT(q.to_day - q.from_day + 1, 3649);
    CHECK_INT(parse(&q, "from=2026-01-01&to=2035-12-29", err, sizeof err), PD_OK);
    CHECK_INT(q.to_day, D_2035_12_28 + 1);
    /* percent-encoded date */
    CHECK_INT(parse(&q, "from=2026%2D11%2d01", err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, D_2026_11_01);
}

TEST(query_params_dims_breakdown_decay)
{
    pd_query q;
    char err[256];
    CHECK_INT(parse(&q, "dims=price,color,price", err, sizeof err), PD_OK);
    CHECK_INT(q.ndims, 2);
    CHECK_INT(q.dims[0], S_PRICE);
    CHECK_INT(q.dims[1], S_COLOR);
    CHECK_INT(parse(&q, "dims=%63olo%72,body+type", err, sizeof err), PD_OK);
    CHECK_INT(q.ndims, 2);
    CHECK_INT(q.dims[0], S_COLOR);
    CHECK_INT(q.dims[1], S_BODY);
    CHECK_INT(parse(&q, "dims=year%2Cmake", err, sizeof err), PD_OK); /* encoded comma */
    CHECK_INT(q.ndims, 2);
    CHECK_INT(q.dims[0], S_YEAR);
    CHECK_INT(q.dims[1], S_MAKE);
    CHECK_INT(parse(&q, "breakdown=day", err, sizeof err), PD_OK);
    CHECK_INT(q.breakdown_day, 1);
    CHECK_INT(parse(&q, "breakdown=none", err, sizeof err), PD_OK);
    CHECK_INT(q.breakdown_day, 0);
    CHECK_INT(parse(&q, "decay=exp:7", err, sizeof err), PD_OK);
    CHECK_INT(q.decay, PD_DECAY_EXP);
    CHECK_DBL(q.decay_param, 7.0, 0);
    CHECK_INT(parse(&q, "decay=exp%3A1.5", err, sizeof err), PD_OK);
    CHECK_INT(q.decay, PD_DECAY_EXP);
    CHECK_DBL(q.decay_param, 1.5, 0);
    CHECK_INT(parse(&q, "decay=linear:30", err, sizeof err), PD_OK);
    CHECK_INT(q.decay, PD_DECAY_LINEAR);
    CHECK_DBL(q.decay_param, 30.0, 0);
    CHECK_INT(parse(&q, "decay=none", err, sizeof err), PD_OK);
    CHECK_INT(q.decay, PD_DECAY_NONE);
    CHECK_INT(q.top, 0);
    CHECK_INT(parse(&q, "top=10000", err, sizeof err), PD_OK);
    CHECK_INT(q.top, 10000);
    CHECK_INT(parse(&q, "top=1&dims=color", err, sizeof err), PD_OK);
    CHECK_INT(q.top, 1);
    CHECK_INT(parse(&q, "from=2026-11-01&to=2026-11-22&dims=color,price&breakdown=day&decay=exp:7",
                    err, sizeof err), PD_OK);
    CHECK_INT(q.from_day, D_2026_11_01);
    CHECK_INT(q.to_day, TODAY);
    CHECK_INT(q.ndims, 2);
    CHECK_INT(q.breakdown_day, 1);
    CHECK_INT(q.decay, PD_DECAY_EXP);
}

TEST(query_params_invalid)
{
    static const struct {
        const char *qs, *msg; /* msg: substring expected in err (NULL: any) */
    } bad[] = {
        {"foo=1", "unknown parameter 'foo'"},
        {"from=2026-11-01&bar", "unknown parameter 'bar'"},
        {"x%FFy=1", "unknown parameter 'x?y'"},
        {"days=7&days=8", "more than once"},
        {"dims=color&dims=price", "more than once"},
        {"days=7&from=2026-11-01", "days"},
        {"to=2026-11-22&days=3", "days"},
        {"from=2026-11-22&to=2026-11-01", "after"},
        {"from=2026-12-01", "after"}, /* from alone in the future: to = today */
        {"from=2026-13-01", "from"},
        {"to=20261101", "to"},
        {"from=", "from"},
        {"days=0", "days"},
        {"days=3651", "days"},
        {"days=abc", "days"},
        {"days=-1", "days"},
        {"days=", "days"},
        {"days", "days"},
        {"dims=color,bogus", "unknown dimension 'bogus'"},
        {"dims=", "dims"},
        {"dims=color,,price", "dims"},
        {"dims=color,", "dims"},
        {"dims=%ZZ", "percent"},
        {"dims=%6", "percent"},
        {"dims=col%00or", "percent"},
        {"breakdown=week", "breakdown"},
        {"decay=exp:0", "decay"},
        {"decay=exp:-1", "decay"},
        {"decay=exp:inf", "decay"},
        {"decay=exp:nan", "decay"},
        {"decay=exp:7x", "decay"},
        {"decay=exp:1e999", "decay"},
        {"decay=linear:", "decay"},
        {"decay=linear:0", "decay"},
        {"decay=cubic:3", "decay"},
        {"top=0", "parameter 'top': expected an integer from 1 to 10000, got '0'"},
        {"top=10001", "parameter 'top': expected an integer from 1 to 10000, got '10001'"},
        {"top=99999999999", "parameter 'top'"},
        {"top=abc", "got 'abc'"},
        {"top=", "parameter 'top'"},
        {"top", "parameter 'top'"},
        {"top=-1", "parameter 'top'"},
        {"top=+3", "parameter 'top'"},
        {"top=05", "parameter 'top'"},
        {"top=2.5", "parameter 'top'"},
        {"top=1&top=2", "more than once"},
        {"decay=", "decay"},
        {"from=2026-01-01&to=2035-12-30", "too wide"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(bad); i++) {
        pd_query q;
        char err[256];
        int rc = parse(&q, bad[i].qs, err, sizeof err);
        if (rc != PD_EINVAL) {
            pd_test_fail(__FILE__, __LINE__, "'%s': rc %d, expected PD_EINVAL", bad[i].qs, rc);
            continue;
        }
        if (!err[0] || (bad[i].msg && !strstr(err, bad[i].msg)))
            pd_test_fail(__FILE__, __LINE__, "'%s': err \"%s\" lacks \"%s\"", bad[i].qs, err,
                         bad[i].msg);
    }
}

/* ---------------- rendering ---------------- */

/* A hand-built day profile (no profile.c code): short string values are
 * stored inline; nothing here is freed by pd_profile_free. */
typedef struct {
    pd_profile p;
    pd_catval types[4], colors[4];
    uint64_t hist[2][4];
    uint64_t sk[PD_SKETCH_ROWS * 64]; /* cat_fold's sketch */
    double vals[2][8]; /* raw numeric values, for the oracle */
    int nvals[2];
} tday;

static void td_init(tday *t, const pd_schema *s, uint64_t events, int64_t first, int64_t last)
{
    memset(t, 0, sizeof *t);
    t->p.schema = s;
    t->p.events = events;
    t->p.first_ts = first;
    t->p.last_ts = last;
    t->p.types.vals = t->types;
    t->p.dims[S_COLOR].cat.vals = t->colors;
}

static void cat_put(pd_catset *c, const char *v, uint64_t count)
{
    size_t n = strlen(v);
    pd_assert(n <= PD_CATVAL_INLINE);
    memcpy(c->vals[c->n].u.inl, v, n + 1);
    c->vals[c->n].len = (uint32_t)n;
    c->vals[c->n].count = count;
    c->n++;
    c->total += count;
}

/* Makes c an overflowed catset (catset.h) whose kept values (cat_put
 * before) keep their counts and which counted `count` more occurrences of
 * `hidden`, a value it did not keep: its "__other__". sk (64-wide) is the
 * day's buffer. The values used here share no sketch cell in some row, so
 * every estimate is exact (query_render_* check the numbers). */
static void cat_fold(pd_catset *c, uint64_t *sk, const char *hidden, uint64_t count)
{
    memset(sk, 0, PD_SKETCH_ROWS * 64 * sizeof *sk);
    c->sk = sk;
    c->skw = 64;
    uint32_t cell[PD_SKETCH_ROWS];
    for (uint32_t i = 0; i < c->n; i++) {
        pd_sketch_cells(pd_catval_str(&c->vals[i]), c->vals[i].len, 64, cell);
        for (int r = 0; r < PD_SKETCH_ROWS; r++) sk[cell[r]] += c->vals[i].count;
        c->vals[i].count = 0;
    }
    pd_sketch_cells(hidden, strlen(hidden), 64, cell);
    for (int r = 0; r < PD_SKETCH_ROWS; r++) sk[cell[r]] += count;
    c->total += count;
}

/* numeric dim k (0 = price, 1 = year) */
static void num_put(tday *t, const pd_schema *s, int k, double v)
{
    int di = k == 0 ? S_PRICE : S_YEAR;
    pd_numagg *a = &t->p.dims[di].num;
    const pd_dim *d = &s->dims[di];
    int b = 0;
    while (b < d->nbounds && !(v <= d->bounds[b])) b++;
    if (a->count == 0) {
        a->min = a->max = v;
        a->hist = t->hist[k];
    }
    a->min = v < a->min ? v : a->min;
    a->max = v > a->max ? v : a->max;
    a->count++;
    a->sum += v;
    a->sumsq += v * v;
    a->hist[b]++;
    t->vals[k][t->nvals[k]++] = v;
}

/* Fixture: A = 2026-11-20, C = 2026-11-21 (empty), B = 2026-11-22. */
typedef struct {
    pd_schema s;
    tday a, b, c;
    pd_query_day days[3];
} fixture;

#define TS_A1 1795601472345LL /* arbitrary ms values; only min/max matter */
#define TS_A2 1795650000000LL
#define TS_B1 1795766401000LL
#define TS_B2 1795799999999LL

static void fx_init(fixture *f)
{
    q_schema(&f->s);
    td_init(&f->a, &f->s, 5, TS_A1, TS_A2);
    cat_put(&f->a.p.types, "view", 4);
    cat_put(&f->a.p.types, "park", 1);
    cat_put(&f->a.p.dims[S_COLOR].cat, "blue", 3);
    cat_put(&f->a.p.dims[S_COLOR].cat, "black", 1);
    cat_fold(&f->a.p.dims[S_COLOR].cat, f->a.sk, "hidden", 1);
    num_put(&f->a, &f->s, 0, 12000);
    num_put(&f->a, &f->s, 0, 4000);
    num_put(&f->a, &f->s, 0, 12000);

    td_init(&f->c, &f->s, 0, 0, 0);

    td_init(&f->b, &f->s, 3, TS_B1, TS_B2);
    cat_put(&f->b.p.types, "contact", 1);
    cat_put(&f->b.p.types, "view", 2);
    cat_put(&f->b.p.dims[S_COLOR].cat, "red", 2);
    cat_put(&f->b.p.dims[S_COLOR].cat, "blue", 1);
    num_put(&f->b, &f->s, 0, 30000);

    f->days[0] = (pd_query_day){D_2026_11_20, &f->a.p};
    f->days[1] = (pd_query_day){D_2026_11_21, &f->c.p};
    f->days[2] = (pd_query_day){D_2026_11_22, &f->b.p};
}

/* Renders and parses (appending the caller's tail). Returns NULL on a
 * render error (rc in *rcp). Also checks the object is left open. */
static cJSON *render(const pd_query *q, const fixture *f, const pd_query_day *days, int ndays,
                     int *rcp, pd_buf *raw)
{
    pd_buf out = {0};
    pd_buf_append(&out, "X", 1); /* pre-existing content must be kept */
    int rc = pd_query_render(q, &f->s, "u\"42", 4, 7, q->anchor_day, days, ndays, &out);
    *rcp = rc;
    if (rc) {
        CHECK_INT(out.len, 1);
        pd_buf_free(&out);
        return NULL;
    }
    CHECK(out.len > 2 && out.p[0] == 'X');
    /* left open: not a complete JSON value by itself */
    pd_buf_putc(&out, '\0');
    cJSON *open = cJSON_Parse(out.p + 1);
    CHECK(open == NULL);
    cJSON_Delete(open);
    out.len--;
    pd_buf_append(&out, ",\"served_by\":\"w1\",\"stale\":false}", 33);
    pd_buf_putc(&out, '\0');
    cJSON *j = cJSON_Parse(out.p + 1);
    CHECK(j != NULL);
    if (raw) pd_buf_append(raw, out.p + 1, strlen(out.p + 1) + 1);
    pd_buf_free(&out);
    return j;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(x)) {
        pd_test_fail(__FILE__, __LINE__, "field '%s' is not a number", k);
        return NAN;
    }
    return x->valuedouble;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static const cJSON *obj(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Independent oracle for weights. */
static double wt(pd_decay_kind k, double param, int64_t day)
{
    double age = (double)(TODAY - day);
    if (age < 0) age = 0;
    if (k == PD_DECAY_EXP) return pow(0.5, age / param);
    if (k == PD_DECAY_LINEAR) return age >= param ? 0 : (param - age) / param;
    return 1;
}

/* Expected numeric stats for price over (value, weight) pairs. */
typedef struct {
    double w, mean, sd, min, max, hist[4];
} num_expect;

static num_expect expect_price(const fixture *f, pd_decay_kind k, double param)
{
    num_expect e = {0};
    const tday *ds[2] = {&f->a, &f->b};
    const int64_t dn[2] = {D_2026_11_20, D_2026_11_22};
    double sw = 0, swx = 0;
    int have = 0;
    for (int i = 0; i < 2; i++) {
        double w = wt(k, param, dn[i]);
        if (w <= 0) continue;
        for (int j = 0; j < ds[i]->nvals[0]; j++) {
            double v = ds[i]->vals[0][j];
            sw += w;
            swx += w * v;
            if (!have || v < e.min) e.min = v;
            if (!have || v > e.max) e.max = v;
            have = 1;
            int b = v <= 5000 ? 0 : v <= 10000 ? 1 : v <= 20000 ? 2 : 3;
            e.hist[b] += w;
        }
    }
    e.w = sw;
    e.mean = swx / sw;
    double sv = 0; /* two-pass weighted variance */
    for (int i = 0; i < 2; i++) {
        double w = wt(k, param, dn[i]);
        if (w <= 0) continue;
        for (int j = 0; j < ds[i]->nvals[0]; j++) {
            double dlt = ds[i]->vals[0][j] - e.mean;
            sv += w * dlt * dlt;
        }
    }
    e.sd = sqrt(sv / sw);
    return e;
}

static void check_price(const cJSON *p, const num_expect *e, double eps)
{
    CHECK_STR(str(p, "type"), "numeric");
    CHECK_DBL(num(p, "count"), e->w, eps);
    CHECK_DBL(num(p, "mean"), e->mean, 1e-6 * fabs(e->mean));
    CHECK_DBL(num(p, "stddev"), e->sd, 1e-6 * e->sd + 1e-9);
    CHECK_DBL(num(p, "min"), e->min, 0);
    CHECK_DBL(num(p, "max"), e->max, 0);
    const cJSON *h = obj(p, "histogram");
    CHECK_INT(cJSON_GetArraySize(h), 4);
    static const double le[3] = {5000, 10000, 20000};
    for (int i = 0; i < 4 && i < cJSON_GetArraySize(h); i++) {
        const cJSON *b = cJSON_GetArrayItem(h, i);
        if (i < 3) CHECK_DBL(num(b, "le"), le[i], 0);
        else CHECK_STR(str(b, "le"), "+Inf");
        CHECK_DBL(num(b, "count"), e->hist[i], eps);
    }
}

/* Keys of an object in output order, joined by ','. */
static void keys_of(const cJSON *o, char *out, size_t n)
{
    out[0] = '\0';
    for (const cJSON *c = o ? o->child : NULL; c; c = c->next) {
        if (out[0]) strncat(out, ",", n - strlen(out) - 1);
        strncat(out, c->string, n - strlen(out) - 1);
    }
}

TEST(query_render_plain)
{
    fixture f;
    fx_init(&f);
    pd_query q;
    char err[128], keys[256];
    CHECK_INT(pd_query_parse_params(&q, "from=2026-11-20&to=2026-11-22", &f.s, TODAY, 30, err,
                                    sizeof err), PD_OK);
    int rc;
    pd_buf raw = {0};
    cJSON *j = render(&q, &f, f.days, 3, &rc, &raw);
    CHECK_INT(rc, PD_OK);
    if (!j) return;
    CHECK_STR(str(j, "user_id"), "u\"42");
    CHECK_DBL(num(j, "partition"), 7, 0);
    CHECK_STR(str(j, "from"), "2026-11-20");
    CHECK_STR(str(j, "to"), "2026-11-22");
    CHECK_STR(str(j, "served_by"), "w1");
    CHECK_DBL(num(j, "events"), 8, 0);
    /* first_seen = TS_A1, last_seen = TS_B2 (formatted by Python datetime) */
    CHECK_STR(str(j, "first_seen"), "2026-11-25T10:11:12.345Z");
    CHECK_STR(str(j, "last_seen"), "2026-11-27T17:19:59.999Z");
    const cJSON *et = obj(j, "event_types");
    keys_of(et, keys, sizeof keys);
    CHECK_STR(keys, "contact,park,view");
    CHECK_DBL(num(et, "view"), 6, 0);
    CHECK_DBL(num(et, "park"), 1, 0);
    CHECK_DBL(num(et, "contact"), 1, 0);

    const cJSON *dims = obj(j, "dimensions");
    keys_of(dims, keys, sizeof keys);
    CHECK_STR(keys, "color,price"); /* schema order, only with data */
    const cJSON *color = obj(dims, "color");
    CHECK_STR(str(color, "type"), "categorical");
    CHECK_DBL(num(color, "total"), 8, 0);
    CHECK(cJSON_IsTrue(obj(color, "approximate"))); /* day A overflowed */
    CHECK(cJSON_IsFalse(obj(j, "event_types_approximate")));
    const cJSON *cnt = obj(color, "counts");
    keys_of(cnt, keys, sizeof keys);
    CHECK_STR(keys, "black,blue,red,__other__");
    CHECK_DBL(num(cnt, "blue"), 4, 0);
    CHECK_DBL(num(cnt, "black"), 1, 0);
    CHECK_DBL(num(cnt, "red"), 2, 0);
    CHECK_DBL(num(cnt, "__other__"), 1, 0);
    const cJSON *sh = obj(color, "shares");
    CHECK_DBL(num(sh, "blue"), 0.5, 0);
    CHECK_DBL(num(sh, "black"), 0.125, 0);
    CHECK_DBL(num(sh, "red"), 0.25, 0);
    CHECK_DBL(num(sh, "__other__"), 0.125, 0);
    num_expect e = expect_price(&f, PD_DECAY_NONE, 0);
    CHECK_DBL(e.mean, 14500, 0);
    check_price(obj(dims, "price"), &e, 0);
    CHECK(obj(j, "days") == NULL);
    /* the one number format: integers plain, shares rounded to 4 decimals
     * and printed shortest */
    CHECK(strstr(raw.p, "\"events\":8,") != NULL);
    CHECK(strstr(raw.p, "\"mean\":14500,") != NULL);
    CHECK(strstr(raw.p, "\"shares\":{\"black\":0.125,\"blue\":0.5,\"red\":0.25,"
                        "\"__other__\":0.125}") != NULL);
    CHECK(strstr(raw.p, "{\"le\":\"+Inf\",\"count\":1}") != NULL);
    pd_buf_free(&raw);
    cJSON_Delete(j);
}

TEST(query_render_decay_exp)
{
    fixture f;
    fx_init(&f);
    static const double hl[] = {2, 3, 0.7};
    for (size_t i = 0; i < PD_ARRAY_LEN(hl); i++) {
        pd_query q;
        char err[128], qs[64];
        snprintf(qs, sizeof qs, "days=3&decay=exp:%g", hl[i]);
        CHECK_INT(pd_query_parse_params(&q, qs, &f.s, TODAY, 30, err, sizeof err), PD_OK);
        int rc;
        cJSON *j = render(&q, &f, f.days, 3, &rc, NULL);
        CHECK_INT(rc, PD_OK);
        if (!j) continue;
        double wa = wt(PD_DECAY_EXP, hl[i], D_2026_11_20), wb = 1.0;
        const double eps = 6e-7; /* weighted counts are rounded to 6 decimals */
        CHECK_DBL(num(j, "events"), 5 * wa + 3 * wb, eps);
        const cJSON *et = obj(j, "event_types");
        CHECK_DBL(num(et, "view"), 4 * wa + 2 * wb, eps);
        CHECK_DBL(num(et, "park"), 1 * wa, eps);
        CHECK_DBL(num(et, "contact"), 1 * wb, eps);
        const cJSON *color = obj(obj(j, "dimensions"), "color");
        double tot = 5 * wa + 3 * wb;
        CHECK_DBL(num(color, "total"), tot, eps);
        const cJSON *cnt = obj(color, "counts");
        CHECK_DBL(num(cnt, "blue"), 3 * wa + 1 * wb, eps);
        CHECK_DBL(num(cnt, "black"), wa, eps);
        CHECK_DBL(num(cnt, "red"), 2 * wb, eps);
        CHECK_DBL(num(cnt, "__other__"), wa, eps);
        const cJSON *sh = obj(color, "shares");
        CHECK_DBL(num(sh, "blue"), round((3 * wa + wb) / tot * 1e4) / 1e4, 1e-12);
        CHECK_DBL(num(sh, "red"), round(2 * wb / tot * 1e4) / 1e4, 1e-12);
        num_expect e = expect_price(&f, PD_DECAY_EXP, hl[i]);
        check_price(obj(obj(j, "dimensions"), "price"), &e, eps);
        /* first/last seen are unweighted */
        CHECK_STR(str(j, "first_seen"), "2026-11-25T10:11:12.345Z");
        cJSON_Delete(j);
    }
}

TEST(query_render_decay_linear)
{
    fixture f;
    fx_init(&f);
    pd_query q;
    char err[128];
    /* linear:2 -> A (age 2) weight 0, B weight 1 */
    CHECK_INT(pd_query_parse_params(&q, "days=3&decay=linear:2", &f.s, TODAY, 30, err, sizeof err),
              PD_OK);
    int rc;
    cJSON *j = render(&q, &f, f.days, 3, &rc, NULL);
    CHECK_INT(rc, PD_OK);
    if (j) {
        CHECK_DBL(num(j, "events"), 3, 0);
        const cJSON *cnt = obj(obj(obj(j, "dimensions"), "color"), "counts");
        char keys[128];
        keys_of(cnt, keys, sizeof keys);
        CHECK_STR(keys, "blue,red");
        const cJSON *p = obj(obj(j, "dimensions"), "price");
        CHECK_DBL(num(p, "min"), 30000, 0); /* min/max only over weight > 0 */
        CHECK_DBL(num(p, "max"), 30000, 0);
        CHECK_DBL(num(p, "stddev"), 0, 0);
        CHECK_STR(str(j, "first_seen"), "2026-11-25T10:11:12.345Z");
        cJSON_Delete(j);
    }
    /* linear:4 -> A weight 0.5 */
    CHECK_INT(pd_query_parse_params(&q, "days=3&decay=linear:4", &f.s, TODAY, 30, err, sizeof err),
              PD_OK);
    j = render(&q, &f, f.days, 3, &rc, NULL);
    if (j) {
        CHECK_DBL(num(j, "events"), 5 * 0.5 + 3, 0);
        num_expect e = expect_price(&f, PD_DECAY_LINEAR, 4);
        check_price(obj(obj(j, "dimensions"), "price"), &e, 1e-9);
        cJSON_Delete(j);
    }
    /* only day A, all weight 0: events exist (not ENOTFOUND) but weigh 0 */
    CHECK_INT(pd_query_parse_params(&q, "from=2026-11-20&to=2026-11-20&decay=linear:1", &f.s, TODAY,
                                    30, err, sizeof err), PD_OK);
    j = render(&q, &f, f.days, 1, &rc, NULL);
    CHECK_INT(rc, PD_OK);
    if (j) {
        CHECK_DBL(num(j, "events"), 0, 0);
        CHECK(obj(j, "dimensions") && obj(j, "dimensions")->child == NULL);
        cJSON_Delete(j);
    }
}

/* at=: the range and the decay ages count back from that day; the answer
 * names it, and says when it is older than the retained days. */
TEST(query_at_anchors_range_and_decay)
{
    fixture f;
    fx_init(&f);
    pd_query q;
    char err[160];
    CHECK_INT(pd_query_parse_params(&q, "at=2026-11-21&days=2&decay=linear:2", &f.s, TODAY, 30, err, sizeof err),
              PD_OK);
    CHECK_INT(q.from_day, D_2026_11_20);
    CHECK_INT(q.to_day, D_2026_11_21);
    CHECK_INT(q.anchor_day, D_2026_11_21);
    int rc;
    cJSON *j = render(&q, &f, f.days, 2, &rc, NULL);
    CHECK_INT(rc, PD_OK);
    if (j) {
        CHECK_DBL(num(j, "events"), 5 * 0.5, 0); /* day A is 1 day old as of the 21st */
        CHECK_STR(str(j, "at"), "2026-11-21");
        CHECK(!obj(j, "at_before_retention"));
        cJSON_Delete(j);
    }
    /* without at: the caller's today, no "at" */
    CHECK_INT(pd_query_parse_params(&q, "days=2", &f.s, TODAY, 30, err, sizeof err), PD_OK);
    CHECK_INT(q.anchor_day, TODAY);
    CHECK_INT(q.from_day, D_2026_11_21);
    j = render(&q, &f, &f.days[1], 2, &rc, NULL);
    if (j) {
        CHECK(!obj(j, "at"));
        cJSON_Delete(j);
    }
    /* the default range counts back from at too; older than retention is said */
    CHECK_INT(pd_query_parse_params(&q, "at=2026-10-01", &f.s, TODAY, 30, err, sizeof err), PD_OK);
    CHECK_INT(q.to_day, q.anchor_day);
    CHECK_INT(q.from_day, q.anchor_day - 29);
    CHECK_INT(q.at_before_retention, 1);
    /* bad input */
    CHECK_INT(pd_query_parse_params(&q, "at=2026-11-23", &f.s, TODAY, 30, err, sizeof err), PD_EINVAL);
    CHECK(strstr(err, "after today") != NULL);
    CHECK_INT(pd_query_parse_params(&q, "at=2026-13-01", &f.s, TODAY, 30, err, sizeof err), PD_EINVAL);
    CHECK(strstr(err, "parameter 'at'") != NULL);
    CHECK_INT(pd_query_parse_params(&q, "at=", &f.s, TODAY, 30, err, sizeof err), PD_EINVAL);
    CHECK_INT(pd_query_parse_params(&q, "at=2026-11-20&at=2026-11-20", &f.s, TODAY, 30, err, sizeof err),
              PD_EINVAL);
}

TEST(query_render_dims_filter)
{
    fixture f;
    fx_init(&f);
    pd_query q;
    char err[128], keys[128];
    CHECK_INT(pd_query_parse_params(&q, "days=3&dims=year,color,make", &f.s, TODAY, 30, err,
                                    sizeof err), PD_OK);
    int rc;
    cJSON *j = render(&q, &f, f.days, 3, &rc, NULL);
    CHECK_INT(rc, PD_OK);
    if (!j) return;
    const cJSON *dims = obj(j, "dimensions");
    keys_of(dims, keys, sizeof keys);
    CHECK_STR(keys, "year,color,make"); /* request order, empty ones included */
    const cJSON *y = obj(dims, "year");
    CHECK_STR(str(y, "type"), "numeric");
    CHECK_DBL(num(y, "count"), 0, 0);
    CHECK(cJSON_IsNull(obj(y, "mean")));
    CHECK(cJSON_IsNull(obj(y, "stddev")));
    CHECK(cJSON_IsNull(obj(y, "min")));
    CHECK(cJSON_IsNull(obj(y, "max")));
    const cJSON *h = obj(y, "histogram");
    CHECK_INT(cJSON_GetArraySize(h), 4);
    for (int i = 0; i < cJSON_GetArraySize(h); i++)
        CHECK_DBL(num(cJSON_GetArrayItem(h, i), "count"), 0, 0);
    CHECK_DBL(num(cJSON_GetArrayItem(h, 1), "le"), 2010, 0);
    const cJSON *mk = obj(dims, "make");
    CHECK_STR(str(mk, "type"), "categorical");
    CHECK_DBL(num(mk, "total"), 0, 0);
    CHECK(obj(mk, "counts") && obj(mk, "counts")->child == NULL);
    CHECK(obj(mk, "shares") && obj(mk, "shares")->child == NULL);
    CHECK_DBL(num(obj(dims, "color"), "total"), 8, 0);
    cJSON_Delete(j);
}

TEST(query_render_breakdown)
{
    fixture f;
    fx_init(&f);
    pd_query q;
    char err[128], keys[128];
    CHECK_INT(pd_query_parse_params(&q, "days=3&breakdown=day&decay=exp:2", &f.s, TODAY, 30, err,
                                    sizeof err), PD_OK);
    int rc;
    cJSON *j = render(&q, &f, f.days, 3, &rc, NULL);
    CHECK_INT(rc, PD_OK);
    if (!j) return;
    const cJSON *days = obj(j, "days");
    CHECK(cJSON_IsArray(days));
    CHECK_INT(cJSON_GetArraySize(days), 2); /* the empty day C is skipped */
    if (cJSON_GetArraySize(days) == 2) {
        const cJSON *d0 = cJSON_GetArrayItem(days, 0), *d1 = cJSON_GetArrayItem(days, 1);
        keys_of(d0, keys, sizeof keys);
        CHECK_STR(keys, "day,events,event_types,event_types_approximate,dimensions");
        CHECK_STR(str(d0, "day"), "2026-11-20");
        CHECK_STR(str(d1, "day"), "2026-11-22");
        CHECK_DBL(num(d0, "events"), 5 * 0.5, 0); /* age 2, half-life 2: weight 1/2 */
        CHECK_DBL(num(d1, "events"), 3, 0);
        CHECK_DBL(num(obj(d0, "event_types"), "view"), 2, 0);
        CHECK_DBL(num(obj(d0, "event_types"), "park"), 0.5, 0);
        const cJSON *c0 = obj(obj(d0, "dimensions"), "color");
        CHECK_DBL(num(obj(c0, "counts"), "blue"), 1.5, 0);
        CHECK_DBL(num(obj(c0, "counts"), "__other__"), 0.5, 0);
        CHECK_DBL(num(obj(c0, "shares"), "blue"), 0.6, 0);
        const cJSON *p0 = obj(obj(d0, "dimensions"), "price");
        CHECK_DBL(num(p0, "count"), 1.5, 0);
        CHECK_DBL(num(p0, "mean"), 28000.0 / 3, 1e-6);
        CHECK_DBL(num(p0, "min"), 4000, 0);
        CHECK(cJSON_IsTrue(obj(c0, "approximate")));
        CHECK(cJSON_IsFalse(obj(obj(obj(d1, "dimensions"), "color"), "approximate")));
        const cJSON *p1 = obj(obj(d1, "dimensions"), "price");
        CHECK_DBL(num(p1, "mean"), 30000, 0);
        keys_of(obj(d1, "dimensions"), keys, sizeof keys);
        CHECK_STR(keys, "color,price");
    }
    cJSON_Delete(j);
}

TEST(query_render_notfound)
{
    fixture f;
    fx_init(&f);
    pd_query q;
    char err[128];
    CHECK_INT(pd_query_parse_params(&q, "days=3", &f.s, TODAY, 30, err, sizeof err), PD_OK);
    int rc;
    cJSON *j = render(&q, &f, NULL, 0, &rc, NULL);
    CHECK(j == NULL);
    CHECK_INT(rc, PD_ENOTFOUND);
    j = render(&q, &f, &f.days[1], 1, &rc, NULL); /* only the empty day */
    CHECK(j == NULL);
    CHECK_INT(rc, PD_ENOTFOUND);
}

TEST(query_render_number_format)
{
    /* A non-integral mean prints so that it reads back exactly; a value
     * kept in one day and folded into other in another sums separately. */
    pd_schema s;
    q_schema(&s);
    tday a, b;
    td_init(&a, &s, 2, 1000, 2000);
    td_init(&b, &s, 1, 3000, 4000);
    num_put(&a, &s, 0, 0.1);
    num_put(&a, &s, 0, 0.2);
    num_put(&b, &s, 0, 1e-3);
    cat_put(&a.p.dims[S_COLOR].cat, "blue", 2);
    cat_fold(&b.p.dims[S_COLOR].cat, b.sk, "blue", 1); /* "blue" folded on day b */
    pd_query_day days[2] = {{D_2026_11_21, &a.p}, {D_2026_11_22, &b.p}};
    pd_query q;
    char err[128];
    CHECK_INT(pd_query_parse_params(&q, "days=2", &s, TODAY, 30, err, sizeof err), PD_OK);
    pd_buf out = {0};
    CHECK_INT(pd_query_render(&q, &s, "u", 1, 0, TODAY, days, 2, &out), PD_OK);
    pd_buf_append(&out, "}", 2);
    cJSON *j = cJSON_Parse(out.p);
    CHECK(j != NULL);
    if (j) {
        const cJSON *p = obj(obj(j, "dimensions"), "price");
        double mean = (0.1 + 0.2 + 1e-3) / 3;
        CHECK_DBL(num(p, "mean"), mean, 0); /* round-trip exact */
        CHECK_DBL(num(p, "min"), 1e-3, 0);
        CHECK_DBL(num(p, "max"), 0.2, 0);
        const cJSON *cnt = obj(obj(obj(j, "dimensions"), "color"), "counts");
        CHECK_DBL(num(cnt, "blue"), 2, 0);
        CHECK_DBL(num(cnt, "__other__"), 1, 0);
        CHECK_STR(str(j, "first_seen"), "1970-01-01T00:00:01.000Z");
        CHECK_STR(str(j, "last_seen"), "1970-01-01T00:00:04.000Z");
        cJSON_Delete(j);
    }
    CHECK(strstr(out.p, "\"max\":0.2,") != NULL); /* shortest repr, not 0.20000000000000001 */
    CHECK(strstr(out.p, "\"min\":0.001,") != NULL);
    CHECK(strstr(out.p, "\"le\":5000,") != NULL);
    pd_buf_free(&out);
}

TEST(query_render_future_day)
{
    /* A day after `today` (clock skew) has age < 0: weight 1, never > 1. */
    pd_schema s;
    q_schema(&s);
    tday a;
    td_init(&a, &s, 4, 1000, 2000);
    cat_put(&a.p.types, "view", 4);
    pd_query_day days[1] = {{D_2026_11_22 + 2, &a.p}};
    static const char *const qs[] = {"from=2026-11-20&to=2026-11-24&decay=exp:1",
                                     "from=2026-11-20&to=2026-11-24&decay=linear:3"};
    for (size_t i = 0; i < PD_ARRAY_LEN(qs); i++) {
        pd_query q;
        char err[128];
        CHECK_INT(pd_query_parse_params(&q, qs[i], &s, TODAY, 30, err, sizeof err), PD_OK);
        pd_buf out = {0};
        CHECK_INT(pd_query_render(&q, &s, "u", 1, 0, TODAY, days, 1, &out), PD_OK);
        pd_buf_append(&out, "}", 2);
        cJSON *j = cJSON_Parse(out.p);
        CHECK(j != NULL);
        if (j) {
            CHECK_DBL(num(j, "events"), 4, 0);
            CHECK_DBL(num(obj(j, "event_types"), "view"), 4, 0);
            CHECK_STR(str(j, "to"), "2026-11-24");
            cJSON_Delete(j);
        }
        pd_buf_free(&out);
    }
}

/* Shares are count / total rounded to 4 decimals as printf's "%.4f"
 * rounds it, then printed by the one number format: the oracle is the
 * "%.4f" text with trailing fraction zeros (and a bare point) dropped,
 * for every share of two values with counts 1..40 (ties such as 1/32 =
 * 0.03125 included); negative integral values print like "%lld". */
static void strip_zeros(char *t)
{
    char *dot = strchr(t, '.');
    if (!dot) return;
    char *e = t + strlen(t);
    while (e > dot + 1 && e[-1] == '0') *--e = '\0';
    if (e == dot + 1) *dot = '\0';
}

TEST(query_render_shares_like_printf)
{
    pd_schema s;
    q_schema(&s);
    pd_query q;
    char err[128], want[64];
    CHECK_INT(pd_query_parse_params(&q, "days=1", &s, TODAY, 30, err, sizeof err), PD_OK);
    int bad = 0;
    for (uint64_t a = 1; a <= 40; a++) {
        for (uint64_t b = 1; b <= 40; b++) {
            tday t;
            td_init(&t, &s, a + b, 1000, 2000);
            cat_put(&t.p.dims[S_COLOR].cat, "x", a);
            cat_put(&t.p.dims[S_COLOR].cat, "y", b);
            num_put(&t, &s, 0, -(double)a);
            pd_query_day d = {TODAY, &t.p};
            pd_buf out = {0};
            CHECK_INT(pd_query_render(&q, &s, "u", 1, 0, TODAY, &d, 1, &out), PD_OK);
            pd_buf_putc(&out, '\0');
            const char *sh = out.p ? strstr(out.p, "\"shares\":{") : NULL;
            char sx[16], sy[16];
            snprintf(sx, sizeof sx, "%.4f", (double)a / (double)(a + b));
            snprintf(sy, sizeof sy, "%.4f", (double)b / (double)(a + b));
            strip_zeros(sx);
            strip_zeros(sy);
            snprintf(want, sizeof want, "\"shares\":{\"x\":%s,\"y\":%s}", sx, sy);
            if (!sh || strncmp(sh, want, strlen(want)) != 0) bad++;
            snprintf(want, sizeof want, "\"min\":%lld,", -(long long)a);
            if (!out.p || !strstr(out.p, want)) bad++;
            pd_buf_free(&out);
        }
    }
    CHECK_INT(bad, 0);
}

/* ---- many categorical values: order, merge, escapes ----
 * Two days with a few hundred values each, half of them shared: values
 * agree in their first 8 bytes or are prefixes of each other, lengths lie
 * around 8, and some need JSON escapes (shares repeat the keys counts wrote).
 * Oracle: the merged (value, count) list kept sorted by insertion with
 * its own comparison (bytes, then the shorter first), against what cJSON
 * reads back of counts and shares, in order. */
typedef struct {
    char v[PD_CATVAL_INLINE + 1];
    uint64_t count;
} ov_ent;

static int ov_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), m = la < lb ? la : lb;
    for (size_t i = 0; i < m; i++)
        if (a[i] != b[i]) return (unsigned char)a[i] < (unsigned char)b[i] ? -1 : 1;
    return la < lb ? -1 : la > lb ? 1 : 0;
}

static void ov_add(ov_ent *o, int *n, const char *v, uint64_t count)
{
    int i = 0;
    while (i < *n && ov_cmp(o[i].v, v) < 0) i++;
    if (i < *n && ov_cmp(o[i].v, v) == 0) {
        o[i].count += count;
        return;
    }
    memmove(&o[i + 1], &o[i], (size_t)(*n - i) * sizeof *o);
    snprintf(o[i].v, sizeof o[i].v, "%s", v);
    o[i].count = count;
    (*n)++;
}

TEST(query_render_many_values_sorted)
{
    static const char *stems[] = {"abcdefgh", "abcdefg", "abcdefghi", "abcdefgh:", "a\"b",
                                  "back\\slash", "tab\there", "\xc3\x9cml\xc3\xa4ut", "z", "\x01",
                                  "\x7f", " ", "abcdefgi", "abcdefgg"};
    enum { NV = 300 };
    pd_schema s;
    q_schema(&s);
    pd_query q;
    char err[128];
    CHECK_INT(pd_query_parse_params(&q, "days=2&dims=color", &s, TODAY, 30, err, sizeof err), PD_OK);
    static pd_catval va[NV], vb[NV];
    static ov_ent want[2 * NV];
    int nwant = 0;
    tday a, b;
    td_init(&a, &s, 1, 1000, 2000);
    td_init(&b, &s, 1, 3000, 4000);
    a.p.dims[S_COLOR].cat.vals = va;
    b.p.dims[S_COLOR].cat.vals = vb;
    uint64_t rng = 0x9E3779B97F4A7C15ULL;
    for (int day = 0; day < 2; day++) {
        pd_catset *c = &(day ? &b : &a)->p.dims[S_COLOR].cat;
        ov_ent mine[NV];
        int nmine = 0;
        for (int i = 0; i < NV; i++) {
            /* shared half: the same names on both days; the rest per day */
            int k = i < NV / 2 ? i : i + NV * (day + 1);
            char v[PD_CATVAL_INLINE + 1];
            const char *stem = stems[k % (int)PD_ARRAY_LEN(stems)];
            if (k / (int)PD_ARRAY_LEN(stems) == 0) snprintf(v, sizeof v, "%s", stem);
            else snprintf(v, sizeof v, "%s%d", stem, k / (int)PD_ARRAY_LEN(stems));
            int seen = 0;
            for (int j = 0; j < nmine; j++) seen |= strcmp(mine[j].v, v) == 0;
            if (seen) continue;
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint64_t count = 1 + rng % 1000;
            snprintf(mine[nmine].v, sizeof mine[nmine].v, "%s", v);
            mine[nmine++].count = count;
            cat_put(c, v, count);
            ov_add(want, &nwant, v, count);
        }
    }
    CHECK(nwant > 400);
    pd_query_day d[2] = {{TODAY - 1, &a.p}, {TODAY, &b.p}};
    pd_buf out = {0};
    CHECK_INT(pd_query_render(&q, &s, "u", 1, 0, TODAY, d, 2, &out), PD_OK);
    pd_buf_putc(&out, '}');
    cJSON *j = cJSON_Parse(out.p);
    CHECK(j != NULL);
    const cJSON *col = obj(obj(j, "dimensions"), "color");
    const cJSON *counts = obj(col, "counts"), *shares = obj(col, "shares");
    CHECK_INT(cJSON_GetArraySize(counts), nwant);
    CHECK_INT(cJSON_GetArraySize(shares), nwant);
    uint64_t total = 0;
    for (int i = 0; i < nwant; i++) total += want[i].count;
    CHECK(num(col, "total") == (double)total);
    int bad = 0, i = 0;
    const cJSON *x, *y = shares ? shares->child : NULL;
    cJSON_ArrayForEach(x, counts) {
        char sh[32];
        snprintf(sh, sizeof sh, "%.4f", (double)want[i].count / (double)total);
        if (i >= nwant || !y || strcmp(x->string, want[i].v) != 0 || strcmp(y->string, want[i].v) != 0 ||
            x->valuedouble != (double)want[i].count || y->valuedouble != strtod(sh, NULL)) {
            if (bad++ < 3)
                pd_test_fail(__FILE__, __LINE__, "entry %d: got \"%s\":%g / \"%s\":%g, want \"%s\":%llu / %s", i,
                             x->string, x->valuedouble, y ? y->string : "(none)", y ? y->valuedouble : 0,
                             i < nwant ? want[i].v : "(none)", i < nwant ? (unsigned long long)want[i].count : 0ULL, sh);
        }
        i++;
        y = y ? y->next : NULL;
    }
    CHECK_INT(bad, 0);
    cJSON_Delete(j);
    pd_buf_free(&out);
}

/* top=K against an oracle sort of the merged counts (many ties: counts
 * 1..12), for several K; totals and shares refer to every value. */
static int top_cmp(const void *x, const void *y)
{
    const ov_ent *a = x, *b = y;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return ov_cmp(a->v, b->v);
}

TEST(query_render_top_k)
{
    enum { NV = 120 };
    pd_schema s;
    q_schema(&s);
    static pd_catval va[NV], vb[NV];
    static ov_ent want[2 * NV];
    int nwant = 0;
    tday a, b;
    td_init(&a, &s, 1, 1000, 2000);
    td_init(&b, &s, 1, 3000, 4000);
    a.p.dims[S_COLOR].cat.vals = va;
    b.p.dims[S_COLOR].cat.vals = vb;
    uint64_t rng = 12345;
    for (int day = 0; day < 2; day++) {
        pd_catset *c = &(day ? &b : &a)->p.dims[S_COLOR].cat;
        for (int i = 0; i < NV; i++) {
            char v[16];
            snprintf(v, sizeof v, "v%d", day ? i + NV / 2 : i); /* half shared */
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            uint64_t count = 1 + rng % 12;
            cat_put(c, v, count);
            ov_add(want, &nwant, v, count);
        }
    }
    uint64_t total = 0;
    for (int i = 0; i < nwant; i++) total += want[i].count;
    qsort(want, (size_t)nwant, sizeof want[0], top_cmp);
    static const int ks[] = {1, 4, 10, 37, 10000};
    for (size_t ki = 0; ki < PD_ARRAY_LEN(ks); ki++) {
        pd_query q;
        char err[128], qs[64];
        snprintf(qs, sizeof qs, "days=2&dims=color&top=%d", ks[ki]);
        CHECK_INT(pd_query_parse_params(&q, qs, &s, TODAY, 30, err, sizeof err), PD_OK);
        pd_query_day d[2] = {{TODAY - 1, &a.p}, {TODAY, &b.p}};
        pd_buf out = {0};
        CHECK_INT(pd_query_render(&q, &s, "u", 1, 0, TODAY, d, 2, &out), PD_OK);
        pd_buf_putc(&out, '}');
        cJSON *j = cJSON_Parse(out.p);
        CHECK(j != NULL);
        const cJSON *col = obj(obj(j, "dimensions"), "color");
        CHECK(obj(col, "counts") == NULL && obj(col, "shares") == NULL);
        CHECK(num(col, "total") == (double)total);
        CHECK(cJSON_IsFalse(obj(col, "approximate")));
        const cJSON *top = obj(col, "top");
        int n = ks[ki] < nwant ? ks[ki] : nwant;
        CHECK_INT(cJSON_GetArraySize(top), n);
        for (int i = 0; i < n && i < cJSON_GetArraySize(top); i++) {
            const cJSON *e = cJSON_GetArrayItem(top, i);
            char sh[32];
            snprintf(sh, sizeof sh, "%.4f", (double)want[i].count / (double)total);
            if (strcmp(str(e, "value"), want[i].v) != 0 || num(e, "count") != (double)want[i].count ||
                num(e, "share") != strtod(sh, NULL)) {
                pd_test_fail(__FILE__, __LINE__, "top=%d entry %d: %s:%g, want %s:%llu", ks[ki], i,
                             str(e, "value"), num(e, "count"), want[i].v, (unsigned long long)want[i].count);
                break;
            }
        }
        cJSON_Delete(j);
        pd_buf_free(&out);
    }
}

/* The API and profilectl dump print a stored value alike (before issue
 * 18 dump used "%.17g" and the API the shortest of %.15g/%.17g): one day
 * with prices 0.1 and 0.2. Oracle: the texts Python's own formatting gives
 * under the rule ("0.1", not dump's old "0.10000000000000001"; the mean
 * 0.15000000000000002, for which "%.15g" = "0.15" does not read back). */
static void field_text(const char *json, const char *obj, const char *key, char *out, size_t n)
{
    const char *p = json ? strstr(json, obj) : NULL;
    p = p ? strstr(p, key) : NULL;
    out[0] = '\0';
    if (!p) return;
    p += strlen(key);
    size_t k = strcspn(p, ",}");
    snprintf(out, n, "%.*s", (int)k, p);
}

TEST(query_and_dump_print_numbers_alike)
{
    pd_schema s;
    q_schema(&s);
    tday t;
    td_init(&t, &s, 2, 1000, 2000);
    num_put(&t, &s, 0, 0.1);
    num_put(&t, &s, 0, 0.2);
    pd_query q;
    char err[128], got[64];
    CHECK_INT(pd_query_parse_params(&q, "days=1&dims=price", &s, TODAY, 30, err, sizeof err), PD_OK);
    pd_query_day d = {TODAY, &t.p};
    pd_buf api = {0}, dump = {0};
    CHECK_INT(pd_query_render(&q, &s, "u", 1, 0, TODAY, &d, 1, &api), PD_OK);
    pd_buf_putc(&api, '}');
    pd_profile_to_json(&t.p, &dump);
    static const struct {
        const char *key, *want;
    } f[] = {{"\"min\":", "0.1"}, {"\"max\":", "0.2"}, {"\"mean\":", "0.15000000000000002"}};
    for (size_t i = 0; i < PD_ARRAY_LEN(f); i++) {
        field_text(api.p, "\"price\"", f[i].key, got, sizeof got);
        CHECK_STR(got, f[i].want);
        field_text(dump.p, "\"price\"", f[i].key, got, sizeof got);
        CHECK_STR(got, f[i].want);
    }
    pd_buf_free(&api);
    pd_buf_free(&dump);
}

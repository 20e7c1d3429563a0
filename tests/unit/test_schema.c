/* test_schema.c -- the built-in vehicle schema and user schema files
 * (a music service's), their validation and fingerprints. */
#include "test.h"
#include "schema.h"

TEST(schema_default_vehicle)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    CHECK_INT(s.ndims, 20);
    int cat = 0, num = 0;
    for (int i = 0; i < s.ndims; i++) {
        if (s.dims[i].type == PD_DIM_CATEGORICAL) cat++;
        else num++;
    }
    CHECK_INT(cat, 12);
    CHECK_INT(num, 8);
    int price = pd_schema_find(&s, "price", 5);
    CHECK(price >= 0);
    CHECK_INT(s.dims[price].nbounds, 8);
    CHECK_DBL(s.dims[price].bounds[0], 5000, 0);
    CHECK_DBL(s.dims[price].bounds[7], 100000, 0);
    int mil = pd_schema_find(&s, "mileage", 7);
    CHECK_INT(s.dims[mil].nbounds, 6);
    CHECK_DBL(s.dims[mil].bounds[5], 200000, 0);
    CHECK_INT(s.dims[pd_schema_find(&s, "color", 5)].npaths, 2);
    CHECK_STR(s.dims[pd_schema_find(&s, "color", 5)].paths[1].seg[0], "filters");
    CHECK_INT(pd_schema_find(&s, "nope", 4), -1);
}

TEST(schema_music_file_and_roundtrip)
{
    const char *js = "{\"dimensions\":["
                     "{\"name\":\"artist\",\"type\":\"categorical\",\"paths\":[\"track.artist\"]},"
                     "{\"name\":\"album\",\"type\":\"categorical\",\"paths\":\"track.album.title\"},"
                     "{\"name\":\"genre\",\"type\":\"categorical\"},"
                     "{\"name\":\"duration_s\",\"type\":\"numeric\",\"paths\":[\"track.duration\"],\"buckets\":[60,120,300]}]}";
    pd_schema s, t;
    char err[256];
    CHECK_INT(pd_schema_load_json(&s, js, strlen(js), 16, err, sizeof err), PD_OK);
    CHECK_INT(s.ndims, 4);
    CHECK_INT(s.max_values, 16);
    CHECK_INT(s.dims[1].paths[0].depth, 3);
    CHECK_STR(s.dims[1].paths[0].seg[2], "title");
    CHECK_INT(s.dims[3].nbounds, 3);
    /* canonical JSON loads back to the same schema and fingerprint */
    pd_buf b = {0};
    pd_schema_to_json(&s, &b);
    CHECK_INT(pd_schema_load_json(&t, b.p, b.len, 0, err, sizeof err), PD_OK);
    CHECK(t.fingerprint == s.fingerprint);
    pd_buf_free(&b);
    pd_schema d;
    pd_schema_default(&d, 16);
    CHECK(d.fingerprint != s.fingerprint);
    pd_schema d2;
    pd_schema_default(&d2, 32); /* the cap is part of the fingerprint */
    CHECK(d.fingerprint != d2.fingerprint);
}

/* Per-dimension caps: "max_values" on a categorical dimension wins, the
 * others get the default; the canonical form writes every effective cap,
 * so a cap given per dimension and the same cap given as the default have
 * one fingerprint, and different caps differ. */
TEST(schema_dimension_caps)
{
    const char *js = "{\"categorical_max_values\":100,\"dimensions\":["
                     "{\"name\":\"artist\",\"type\":\"categorical\",\"max_values\":65536},"
                     "{\"name\":\"genre\",\"type\":\"categorical\",\"max_values\":1},"
                     "{\"name\":\"album\",\"type\":\"categorical\"}]}";
    pd_schema s, t, u;
    char err[256];
    CHECK_INT(pd_schema_load_json(&s, js, strlen(js), 0, err, sizeof err), PD_OK);
    CHECK_INT(s.max_values, 100);
    CHECK_INT(pd_dim_cap(&s, 0), 65536);
    CHECK_INT(pd_dim_cap(&s, 1), 1);
    CHECK_INT(pd_dim_cap(&s, 2), 100);
    CHECK_INT(pd_schema_load_json(&t, js, strlen(js), 64, err, sizeof err), PD_OK); /* the setting wins */
    CHECK_INT(pd_dim_cap(&t, 2), 64);
    CHECK_INT(pd_dim_cap(&t, 0), 65536);
    CHECK(t.fingerprint != s.fingerprint);
    pd_buf b = {0};
    pd_schema_to_json(&s, &b);
    CHECK(strstr(b.p, "\"name\":\"album\",\"type\":\"categorical\",\"paths\":[\"item.album\",\"filters.album\"],\"max_values\":100") != NULL);
    CHECK_INT(pd_schema_load_json(&u, b.p, b.len, 0, err, sizeof err), PD_OK);
    CHECK(u.fingerprint == s.fingerprint);
    CHECK_INT(pd_dim_cap(&u, 2), 100);
    pd_buf_free(&b);
    const char *js2 = "{\"categorical_max_values\":100,\"dimensions\":["
                      "{\"name\":\"artist\",\"type\":\"categorical\",\"max_values\":65536},"
                      "{\"name\":\"genre\",\"type\":\"categorical\",\"max_values\":1},"
                      "{\"name\":\"album\",\"type\":\"categorical\",\"max_values\":100}]}";
    CHECK_INT(pd_schema_load_json(&u, js2, strlen(js2), 0, err, sizeof err), PD_OK);
    CHECK(u.fingerprint == s.fingerprint);
}

TEST(schema_rejects_bad_files)
{
    static const struct { const char *js, *needle; } bad[] = {
        {"[]", "dimensions"},
        {"{\"dimensions\":[]}", "no dimensions"},
        {"{\"dimensions\":[{\"name\":\"a b\",\"type\":\"categorical\"}]}", "name"},
        {"{\"dimensions\":[{\"name\":\"a\",\"type\":\"text\"}]}", "'a'"},
        {"{\"dimensions\":[{\"name\":\"a\",\"type\":\"categorical\"},{\"name\":\"a\",\"type\":\"numeric\"}]}", "twice"},
        {"{\"dimensions\":[{\"name\":\"p\",\"type\":\"numeric\",\"buckets\":[10,5]}]}", "ascending"},
        {"{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\",\"buckets\":[1]}]}", "numeric"},
        {"{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\",\"paths\":[\"a..b\"]}]}", "'c'"},
        {"{\"dimensions\":[{\"name\":\"c\",\"type\":\"categorical\",\"paths\":[\"a.b.c.d.e\"]}]}", "deeper"},
        {"{not json", "invalid JSON"},
        {"{\"dimensions\":[{\"name\":\"artist\",\"type\":\"categorical\",\"max_values\":0}]}",
         "dimension 'artist': \"max_values\" must be an integer from 1 to 65536"},
        {"{\"dimensions\":[{\"name\":\"artist\",\"type\":\"categorical\",\"max_values\":65537}]}",
         "dimension 'artist': \"max_values\""},
        {"{\"dimensions\":[{\"name\":\"artist\",\"type\":\"categorical\",\"max_values\":2.5}]}",
         "dimension 'artist': \"max_values\""},
        {"{\"dimensions\":[{\"name\":\"artist\",\"type\":\"categorical\",\"max_values\":\"64\"}]}",
         "dimension 'artist': \"max_values\""},
        {"{\"dimensions\":[{\"name\":\"d\",\"type\":\"numeric\",\"max_values\":8}]}",
         "dimension 'd': \"max_values\" only applies to categorical"},
        {"{\"categorical_max_values\":70000,\"dimensions\":[{\"name\":\"a\",\"type\":\"categorical\"}]}",
         "\"categorical_max_values\" must be an integer from 1 to 65536"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(bad); i++) {
        pd_schema s;
        char err[256] = "";
        CHECK_INT(pd_schema_load_json(&s, bad[i].js, strlen(bad[i].js), 64, err, sizeof err), PD_EINVAL);
        if (!strstr(err, bad[i].needle)) pd_test_fail(__FILE__, __LINE__, "case %zu: '%s' lacks '%s'", i, err, bad[i].needle);
    }
    pd_schema s;
    char err[256];
    CHECK(pd_schema_load_file(&s, "/nonexistent/schema.json", 64, err, sizeof err) < 0);
    CHECK(strstr(err, "/nonexistent/schema.json") != NULL);
}

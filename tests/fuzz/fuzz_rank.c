/*
 * fuzz_rank.c -- libFuzzer target for the rank body parser and scoring
 * (score.c).
 *
 * Parses arbitrary bytes as a POST /v1/profiles/{u}/rank body against the
 * default schema (at most 50 items). A rejected body must come back as
 * PD_EINVAL or PD_ERANGE with a message and nothing to free; it is
 * refused as JSON ("not valid JSON", "expected a JSON object") exactly
 * when the event parser refuses the same bytes as empty, invalid_json,
 * invalid_utf8 or not_object (one dialect for every JSON input). An
 * accepted one is scored against a fixed user (a few events) without a
 * prior; the answer must be strict JSON (the same scanner) that cJSON
 * reads, list every item once, with finite scores in descending order.
 * Any mismatch aborts.
 */
#include "score.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "profile.h"
#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const events[] = {
    "{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"make\":\"BMW\",\"price\":7000,\"doors\":5}}",
    "{\"user_id\":\"u\",\"ts\":1790000000001,\"type\":\"park\",\"item\":{\"make\":\"Audi\",\"color\":\"red\",\"year\":2019}}",
    "{\"user_id\":\"u\",\"ts\":1790000000002,\"type\":\"contact\",\"item\":{\"make\":\"BMW\",\"price\":12000}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_schema schema;
    static pd_profile prof;
    static int64_t today;
    static int ready;
    if (!ready) {
        /* the default schema's dimensions plus per-type tracks (types /
         * weights bodies score against sub-profiles) */
        static const char js[] =
            "{\"dimensions\":[{\"name\":\"make\",\"type\":\"categorical\"},{\"name\":\"model\",\"type\":\"categorical\"},"
            "{\"name\":\"color\",\"type\":\"categorical\",\"paths\":[\"item.color\",\"filters.color\",\"a.b.color\"]},"
            "{\"name\":\"doors\",\"type\":\"categorical\"},"
            "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[5000,10000,20000]},"
            "{\"name\":\"year\",\"type\":\"numeric\",\"buckets\":[2010,2020]}],"
            "\"tracked_types\":[\"park\",\"contact\"]}";
        char serr[256];
        pd_assert(pd_schema_load_json(&schema, js, sizeof js - 1, 64, serr, sizeof serr) == PD_OK);
        pd_profile_init(&prof, &schema);
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++) {
            pd_event ev;
            char e[256];
            pd_assert(pd_event_parse(&ev, &schema, events[i], strlen(events[i]), 0, e, sizeof e) == 0);
            pd_profile_add(&prof, &ev);
            pd_event_free(&ev);
        }
        pd_assert(pd_day_parse("2026-09-21", 10, &today) == PD_OK);
        ready = 1;
    }
    pd_score_req r;
    char err[512] = "";
    int rc = pd_score_parse_rank(&r, (const char *)data, size, &schema, today, 30, 50, err, sizeof err);
    /* the dialect: the event parser's verdict on the same bytes */
    pd_event ev;
    char eerr[512];
    int er = pd_event_parse(&ev, &schema, (const char *)data, size, size ? size : 1, eerr, sizeof eerr);
    pd_event_free(&ev);
    int ev_json_bad = er == PD_EV_EMPTY || er == PD_EV_INVALID_JSON || er == PD_EV_INVALID_UTF8 || er == PD_EV_NOT_OBJECT;
    int rank_json_bad = rc != PD_OK && (strstr(err, "body is not valid JSON") == err || strcmp(err, "body: expected a JSON object") == 0);
    if (ev_json_bad != rank_json_bad) {
        fprintf(stderr, "dialects differ: event %d (%s), rank %d (%s)\n", er, eerr, rc, err);
        abort();
    }
    if (rc != PD_OK) {
        pd_assert((rc == PD_EINVAL || rc == PD_ERANGE) && err[0]);
        pd_assert(r.items == NULL && r.text.p == NULL);
        return 0;
    }
    pd_query_day d = {today, &prof};
    int nd = d.day >= r.q.from_day && d.day <= r.q.to_day;
    pd_score_model *m = pd_score_model_new(&schema, &r.q, r.sdims, r.nsd, &d, nd, NULL, 0);
    pd_score_prior pr = {.age_s = -1};
    pd_buf out = {0};
    pd_score_render_rank(&r, m, &schema, "u", 1, 0, &pr, &out);
    pd_buf_putc(&out, '}');
    pd_json_doc jd;
    char jerr[256];
    if (pd_json_open(&jd, out.p, out.len, out.len, jerr, sizeof jerr) != PD_OK) {
        fprintf(stderr, "answer is not strict JSON: %s\n%.*s\n", jerr, (int)out.len, out.p);
        abort();
    }
    pd_json_close(&jd);
    cJSON *j = cJSON_ParseWithLength(out.p, out.len);
    pd_assert(j);
    cJSON *items = cJSON_GetObjectItem(j, "items");
    pd_assert(cJSON_GetArraySize(items) == r.nitems);
    double prev = INFINITY;
    for (cJSON *it = items->child; it; it = it->next) {
        cJSON *s = cJSON_GetObjectItem(it, "score");
        pd_assert(cJSON_IsNumber(s) && isfinite(s->valuedouble) && s->valuedouble <= prev);
        prev = s->valuedouble;
    }
    cJSON_Delete(j);
    pd_buf_free(&out);
    pd_score_model_free(m);
    pd_score_req_free(&r);
    return 0;
}

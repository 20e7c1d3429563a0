/*
 * fuzz_rank.c -- libFuzzer target for the rank body parser and scoring
 * (score.c).
 *
 * Parses arbitrary bytes as a POST /v1/profiles/{u}/rank body against the
 * default schema (at most 50 items). A rejected body must come back as
 * PD_EINVAL or PD_ERANGE with a message and nothing to free. An accepted
 * one is scored against a fixed user (a few events) without a prior; the
 * answer must be JSON that cJSON reads, list every item once, with finite
 * scores in descending order. Any mismatch aborts.
 */
#include "score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const events[] = {
    "{\"user_id\":\"u\",\"ts\":1790000000000,\"type\":\"view\",\"item\":{\"make\":\"BMW\",\"price\":7000,\"doors\":5}}",
    "{\"user_id\":\"u\",\"ts\":1790000000001,\"type\":\"view\",\"item\":{\"make\":\"Audi\",\"color\":\"red\",\"year\":2019}}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_schema schema;
    static pd_profile prof;
    static int64_t today;
    static int ready;
    if (!ready) {
        pd_schema_default(&schema, 64);
        pd_score_init(); /* bodies parsed into the per-request arena, as in the worker */
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
    if (rc != PD_OK) {
        pd_assert((rc == PD_EINVAL || rc == PD_ERANGE) && err[0]);
        pd_assert(r.doc == NULL && r.items == NULL);
        return 0;
    }
    pd_query_day d = {today, &prof};
    int nd = d.day >= r.q.from_day && d.day <= r.q.to_day;
    pd_score_model *m = pd_score_model_new(&schema, &r.q, r.sdims, r.nsd, &d, nd, NULL, 0);
    pd_score_prior pr = {.age_s = -1};
    pd_buf out = {0};
    pd_score_render_rank(&r, m, &schema, "u", 1, 0, &pr, &out);
    pd_buf_putc(&out, '}');
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

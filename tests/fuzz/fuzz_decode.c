/*
 * fuzz_decode.c -- libFuzzer target for pd_profile_decode.
 *
 * Decodes arbitrary bytes against the default schema (max_values 64;
 * recent items off, which the signals schema below covers). A
 * rejected input must come back as PD_ECORRUPT with a message and an empty
 * profile. An accepted input must re-encode to exactly the same bytes (the
 * encoding is canonical), decode(encode(p)) must equal p, merging p with
 * itself must double every count and keep the invariants, and JSON
 * rendering must not crash. Any mismatch aborts. (Only version 3 is
 * accepted; an overflowed catset doubles too: its sketch counters, and so
 * its estimates and __other__, double, its kept set stays.)
 * The same bytes are then decoded against a schema with tracked types
 * and recent items (FUZZ_SIGNALS_SCHEMA; seeds tracked_recent_*.bin): the
 * same canonical round trip, and a self-merge doubles every sub-profile's
 * events and lists each recent item twice (the first K of the doubled
 * multiset).
 */
#include "profile.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SIGNALS_SCHEMA                                                                            \
    "{\"dimensions\":[{\"name\":\"make\",\"type\":\"categorical\"},"                                         \
    "{\"name\":\"model\",\"type\":\"categorical\",\"max_values\":4},"                                         \
    "{\"name\":\"price\",\"type\":\"numeric\",\"buckets\":[5000,10000,20000]}],"                               \
    "\"tracked_types\":[\"park\",\"contact\"],"                                                                 \
    "\"recent\":{\"max\":3,\"item_id\":\"item.id\",\"attributes\":[\"make\",\"price\"]}}"

/* The schema with tracked types and recent items. */
static void signals_case(const uint8_t *data, size_t size)
{
    static pd_schema s;
    static int ready;
    if (!ready) {
        char e[256];
        pd_assert(pd_schema_load_json(&s, FUZZ_SIGNALS_SCHEMA, strlen(FUZZ_SIGNALS_SCHEMA), 0, e, sizeof e) == PD_OK);
        ready = 1;
    }
    pd_profile p, q;
    char err[256] = "";
    pd_profile_init(&p, &s);
    pd_profile_init(&q, &s);
    if (pd_profile_decode(&p, data, size, err, sizeof err) != PD_OK) {
        pd_assert(err[0] != '\0' && p.events == 0 && p.nrecent == 0);
        goto out;
    }
    pd_buf enc = {0};
    pd_profile_encode(&p, &enc);
    pd_assert(enc.len == size && memcmp(enc.p, data, size) == 0);
    pd_assert(pd_profile_decode(&q, enc.p, enc.len, err, sizeof err) == PD_OK && pd_profile_equal(&p, &q));
    pd_buf_free(&enc);
    if (p.events < (UINT64_C(1) << 62)) {
        pd_profile_merge(&q, &q);
        pd_assert(q.events == 2 * p.events);
        for (int t = 0; t < s.ntracked; t++) {
            const pd_profile *a = pd_profile_sub(&p, t), *b = pd_profile_sub(&q, t);
            pd_assert(!a == !b && (!a || b->events == 2 * a->events));
        }
        uint32_t want = 2 * p.nrecent < (uint32_t)s.recent_max ? 2 * p.nrecent : (uint32_t)s.recent_max;
        pd_assert(q.nrecent == want);
        for (uint32_t i = 0; i < q.nrecent; i++) pd_assert(pd_recent_cmp(&q.recent[i], &p.recent[i / 2]) == 0);
        pd_buf e2 = {0};
        pd_profile_encode(&q, &e2);
        pd_profile r;
        pd_profile_init(&r, &s);
        pd_assert(pd_profile_decode(&r, e2.p, e2.len, err, sizeof err) == PD_OK && pd_profile_equal(&r, &q));
        pd_profile_free(&r);
        pd_buf_free(&e2);
    }
    pd_buf js = {0};
    pd_profile_to_json(&p, &js);
    pd_assert(js.len > 0 && js.p[0] == '{' && js.p[js.len - 1] == '}');
    pd_buf_free(&js);
out:
    pd_profile_free(&p);
    pd_profile_free(&q);
}

static void check_catset_doubled(const pd_catset *twice, const pd_catset *once)
{
    pd_assert(twice->n == once->n);
    pd_assert(pd_catset_overflowed(twice) == pd_catset_overflowed(once));
    pd_assert(pd_catset_total(twice) == 2 * pd_catset_total(once));
    pd_assert(pd_catset_other(twice) == 2 * pd_catset_other(once));
    for (uint32_t i = 0; i < once->n; i++)
        pd_assert(pd_catset_get(twice, pd_catval_str(&once->vals[i]), once->vals[i].len) == 2 * pd_catset_count(once, i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_schema schema;
    static int ready;
    if (!ready) {
        /* recent items off ("recent": {"max": 0}), as they were by default
         * when the seeds were written: signals_case covers them */
        pd_schema_default(&schema, 64);
        schema.recent_max = 0;
        memset(&schema.recent_item, 0, sizeof schema.recent_item);
        ready = 1;
    }
    pd_profile p, q, empty;
    char err[256] = "";
    pd_profile_init(&p, &schema);
    pd_profile_init(&q, &schema);
    pd_profile_init(&empty, &schema);

    int rc = pd_profile_decode(&p, data, size, err, sizeof err);
    if (rc != PD_OK) {
        pd_assert(rc == PD_ECORRUPT);
        pd_assert(err[0] != '\0');
        pd_assert(pd_profile_equal(&p, &empty));
        goto out;
    }

    pd_buf enc = {0};
    pd_profile_encode(&p, &enc);
    pd_assert(enc.len == size && memcmp(enc.p, data, size) == 0); /* canonical */
    rc = pd_profile_decode(&q, enc.p, enc.len, err, sizeof err);
    pd_assert(rc == PD_OK);
    pd_assert(pd_profile_equal(&p, &q));
    pd_buf_free(&enc);

    pd_assert(pd_catset_total(&p.types) == p.events);

    /* Merge with itself (aliasing) when counts cannot overflow. */
    if (p.events < (UINT64_C(1) << 62)) {
        pd_profile_merge(&q, &q);
        pd_assert(q.events == 2 * p.events);
        pd_assert(q.first_ts == p.first_ts && q.last_ts == p.last_ts);
        check_catset_doubled(&q.types, &p.types);
        for (int i = 0; i < schema.ndims; i++) {
            if (schema.dims[i].type == PD_DIM_CATEGORICAL) {
                check_catset_doubled(&q.dims[i].cat, &p.dims[i].cat);
            } else {
                pd_assert(q.dims[i].num.count == 2 * p.dims[i].num.count);
                for (int k = 0; p.dims[i].num.count && k <= schema.dims[i].nbounds; k++)
                    pd_assert(q.dims[i].num.hist[k] == 2 * p.dims[i].num.hist[k]);
            }
        }
        /* merge into an empty profile is a copy */
        pd_profile_merge(&empty, &p);
        pd_assert(pd_profile_equal(&empty, &p));
        pd_profile_merge(&empty, &p);
        pd_assert(pd_profile_equal(&empty, &q));
    }

    pd_buf js = {0};
    pd_profile_to_json(&p, &js);
    pd_assert(js.len > 0 && js.p[0] == '{' && js.p[js.len - 1] == '}');
    pd_buf_free(&js);
out:
    pd_profile_free(&p);
    pd_profile_free(&q);
    pd_profile_free(&empty);
    signals_case(data, size);
    return 0;
}

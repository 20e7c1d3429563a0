/* fuzz_event.c -- libFuzzer target for pd_event_parse with the built-in
 * vehicle schema. Every accepted event has each field and attribute read
 * (so ASan sees any dangling or short pointer), invariants are asserted,
 * then the event is freed. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "schema.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

static size_t touch(const char *s, size_t n)
{
    size_t h = n;
    for (size_t i = 0; i < n; i++) h = h * 31 + (unsigned char)s[i];
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_schema schema;
    static int init;
    if (!init) {
        pd_schema_default(&schema, 0);
        init = 1;
    }
    pd_event ev;
    char err[256];
    /* a small max_bytes limit on some inputs exercises the too_large path */
    size_t max = (size > 0 && data[0] == 'L') ? 64 : 0;
    int rc = pd_event_parse(&ev, &schema, (const char *)data, size, max, err, sizeof err);
    pd_assert(rc >= 0 && rc < PD_EV__COUNT);
    pd_assert(strcmp(pd_ev_reason_name(rc), "unknown") != 0);
    if (rc != PD_EV_OK) {
        pd_assert(ev.heap_ == NULL);
        pd_assert(err[0] != '\0' && strlen(err) < sizeof err);
        pd_event_free(&ev);
        return 0;
    }
    size_t acc = 0;
    pd_assert(ev.user_id_len >= 1 && ev.user_id_len <= PD_MAX_USER_ID);
    pd_assert(ev.type_len >= 1 && ev.type_len <= PD_MAX_TYPE);
    pd_assert(pd_utf8_valid(ev.user_id, ev.user_id_len));
    pd_assert(ev.ts_ms >= PD_TS_MIN_MS && ev.ts_ms < PD_TS_MAX_MS);
    acc += touch(ev.user_id, ev.user_id_len) + touch(ev.type, ev.type_len);
    if (ev.event_id) {
        pd_assert(ev.event_id_len >= 1 && ev.event_id_len <= PD_MAX_EVENT_ID);
        acc += touch(ev.event_id, ev.event_id_len);
    } else {
        pd_assert(ev.event_id_len == 0);
    }
    pd_assert(ev.nattrs == schema.ndims);
    int bad = 0;
    for (int d = 0; d < ev.nattrs; d++) {
        const pd_attr *a = &ev.attrs[d];
        switch (a->kind) {
        case PD_ATTR_ABSENT: break;
        case PD_ATTR_STR:
            pd_assert(schema.dims[d].type == PD_DIM_CATEGORICAL);
            pd_assert(a->len >= 1 && a->len <= PD_MAX_CAT_VALUE);
            pd_assert(pd_utf8_valid(a->s, a->len));
            acc += touch(a->s, a->len);
            break;
        case PD_ATTR_NUM:
            pd_assert(schema.dims[d].type == PD_DIM_NUMERIC);
            pd_assert(isfinite(a->num));
            acc += (size_t)(a->num != 0);
            break;
        case PD_ATTR_BAD: bad++; break;
        default: pd_assert(!"bad attr kind");
        }
    }
    pd_assert(bad == ev.n_bad_attrs);
    sink = acc;
    pd_event_free(&ev);
    pd_assert(ev.heap_ == NULL);
    pd_event_free(&ev);
    return 0;
}

/* fuzz_event_diff.c -- differential libFuzzer target for the values
 * pd_event_parse extracts: on every input it accepts as JSON (strict RFC
 * 8259, docs/data-model.md) and that holds no \u0000 escape, the reason
 * and every field must equal the cJSON-based extraction of
 * tests/unit/event_cjson.c (cJSON accepts a superset of RFC 8259), with
 * the built-in vehicle schema and the deep/escaped-path test schema. Any
 * difference aborts with the input described. Which inputs are JSON is
 * tested against Python's strict json module (tests/json_corpus.py), not
 * here. `make fuzz` seeds it from tests/fuzz/seeds/fuzz_event. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "event.h"
#include "../unit/event_cjson.h"
#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_schema def, ref;
    static int init;
    if (!init) {
        pd_schema_default(&def, 0);
        pd_event_cjson_schema(&ref);
        init = 1;
    }
    char why[1200];
    /* a small max_bytes limit on some inputs exercises the too_large path */
    size_t max = (size > 0 && data[0] == 'L') ? 64 : 0;
    if (pd_event_cjson_compare(&def, (const char *)data, size, max, NULL, why, sizeof why) ||
        pd_event_cjson_compare(&ref, (const char *)data, size, max, NULL, why, sizeof why)) {
        fprintf(stderr, "fuzz_event_diff: %s\n", why);
        abort();
    }
    return 0;
}

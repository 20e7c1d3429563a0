/* fuzz_event_diff.c -- differential libFuzzer target: pd_event_parse (the
 * hand-written scanner) against pd_event_parse_ref (the former cJSON-based
 * parser, tests/unit/event_ref.c) with the built-in vehicle schema and the
 * reference test schema. Any difference in reason or in an extracted field
 * (strings by bytes, numbers bit for bit) aborts with the input described.
 * `make fuzz` seeds it from tests/fuzz/seeds/fuzz_event. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "event.h"
#include "../unit/event_ref.h"
#include "schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pd_schema def, ref;
    static int init;
    if (!init) {
        pd_schema_default(&def, 0);
        pd_event_ref_schema(&ref);
        init = 1;
    }
    char why[1200];
    /* a small max_bytes limit on some inputs exercises the too_large path */
    size_t max = (size > 0 && data[0] == 'L') ? 64 : 0;
    if (pd_event_ref_compare(&def, (const char *)data, size, max, why, sizeof why) ||
        pd_event_ref_compare(&ref, (const char *)data, size, max, why, sizeof why)) {
        fprintf(stderr, "fuzz_event_diff: %s\n", why);
        abort();
    }
    return 0;
}

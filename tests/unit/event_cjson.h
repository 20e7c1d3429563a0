/*
 * event_cjson.h -- cJSON-based extraction of an event's fields, the value
 * oracle of the event tests only (see event_cjson.c).
 */
#ifndef PD_EVENT_CJSON_H
#define PD_EVENT_CJSON_H

#include <cjson/cJSON.h>

#include "event.h"

typedef struct {
    pd_event ev;                      /* the public fields are filled */
    cJSON *root;                      /* owned parse tree */
    char numtext[PD_MAX_DIMS][32];    /* stringified numeric attributes */
} pd_event_cjson;

int pd_event_cjson_parse(pd_event_cjson *r, const pd_schema *s, const char *buf, size_t len,
                       size_t max_bytes, char *err, size_t errlen);
void pd_event_cjson_free(pd_event_cjson *r);

/* A schema for differential tests: paths of depth 1 to 4, more than eight
 * distinct top-level containers, one path shared by a numeric and a
 * categorical dimension, keys with non-ASCII bytes, quotes, backslashes,
 * tabs and a user_id path. */
void pd_event_cjson_schema(pd_schema *s);

/* Parses buf with pd_event_parse and, when it accepts buf as JSON (any
 * reason but empty, too_large, invalid_utf8, invalid_json) and buf holds
 * no \u0000 escape, with pd_event_cjson_parse, and compares the reasons
 * and every extracted field (strings by bytes, numbers bit for bit).
 * Returns 0 when they agree or were not compared (*compared, when not
 * NULL, says which), else 1 with a description (including the input) in
 * why. */
int pd_event_cjson_compare(const pd_schema *s, const char *buf, size_t len, size_t max_bytes,
                           int *compared, char *why, size_t whylen);

/* Writes s[0..n) into out (cap bytes, NUL-terminated, truncated), bytes
 * outside printable ASCII and backslashes as \xNN; returns the length. */
size_t pd_event_cjson_show(char *out, size_t cap, const char *s, size_t n);

#endif

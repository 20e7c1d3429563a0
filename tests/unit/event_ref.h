/*
 * event_ref.h -- reference (cJSON-based) event parser, test oracle only.
 * Same contract as pd_event_parse (include/event.h); see event_ref.c.
 */
#ifndef PD_EVENT_REF_H
#define PD_EVENT_REF_H

#include <cjson/cJSON.h>

#include "event.h"

typedef struct {
    pd_event ev;                      /* the public fields are filled */
    cJSON *root;                      /* owned parse tree */
    char numtext[PD_MAX_DIMS][32];    /* stringified numeric attributes */
} pd_event_ref;

int pd_event_parse_ref(pd_event_ref *r, const pd_schema *s, const char *buf, size_t len,
                       size_t max_bytes, char *err, size_t errlen);
void pd_event_free_ref(pd_event_ref *r);

/* A schema for differential tests: paths of depth 1 to 4, more than eight
 * distinct top-level containers, one path shared by a numeric and a
 * categorical dimension, keys with non-ASCII bytes, quotes, backslashes,
 * tabs and a user_id path. */
void pd_event_ref_schema(pd_schema *s);

/* Parses buf with pd_event_parse and pd_event_parse_ref and compares the
 * reasons and every extracted field (strings by bytes, numbers bit for
 * bit). Returns 0 when they agree, else 1 with a description (including
 * the input) in why. */
int pd_event_ref_compare(const pd_schema *s, const char *buf, size_t len, size_t max_bytes,
                         char *why, size_t whylen);

#endif

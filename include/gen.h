/*
 * gen.h -- a deterministic generator of synthetic vehicle-marketplace
 * interaction events (pure module: no I/O, no clocks, no globals).
 *
 * Output: one JSON object per call, in the event format of event.h:
 *   {"event_id":"e-1-0","user_id":"u-17","ts":1795328747333,"type":"view",
 *    "item":{"id":"ad-123","make":"BMW","model":"3er",...,"owners":2}}
 * Search events carry a subset of the attributes under "filters" instead
 * of "item".
 *
 * Determinism: the byte stream depends only on pd_gen_opts (same options ->
 * same bytes, on every platform with IEEE doubles and a correct libm). The
 * PRNG is xoshiro256** seeded through splitmix64; rand() is never used.
 *
 * Distributions: users "u-<rank>" follow a Zipf law with exponent
 * `zipf_s` over 1..users (u-1 is the most active); event types are
 * view 70%, search 15%, park 10%, contact 5%. Items come from a catalogue
 * that is a pure function of (seed, ad number): the same "ad-N" always has
 * the same attributes. Each user has a preferred make (60% of its events)
 * and a personal set of 20 ads per make (40% of picks), both derived from
 * the user rank, so profiles show preferences and repeat views. Prices
 * depend on model, engine variant, age, mileage, condition, damage and
 * seller; mileage on age and fuel; emission class on year; etc.
 *
 * Timestamps: event i of `count` is placed at
 *   start_ts + i * (days * 86400000) / count  +  jitter (+-90 s),
 * clamped to [start_ts, start_ts + days * 86400000 - 1].
 *
 * Duplicates: with probability dup_rate a line is an exact copy (same
 * event_id, same bytes, same key) of one of the last 16 valid events.
 * Bad events: with probability bad_rate a line is malformed in one of the
 * ways listed in pd_gen_bad_kind (the name is the rejection reason of
 * event.h that the parser is expected to report).
 *
 * Keys: key_out receives exactly what a consumer of the JSON would extract
 * as user_id (the user_id string when the line is a JSON object with a
 * non-empty string user_id), otherwise it is left empty (= send NULL key).
 * So producing `profilectl generate` output with --file gives the same
 * keys and partitions as --generate.
 *
 * Cost: no allocation per event after warm-up, no printf; a few hundred ns
 * per event.
 */
#ifndef PD_GEN_H
#define PD_GEN_H

#include <stdint.h>
#include "util.h"

typedef struct {
    uint64_t seed;     /* any value */
    int64_t count;     /* number of lines to generate (>= 1) */
    int64_t users;     /* number of distinct users (1 .. 50,000,000) */
    int64_t days;      /* span of timestamps in days (>= 1) */
    int64_t start_ts;  /* epoch ms of the first event (>= 2000-01-01) */
    double zipf_s;     /* Zipf exponent (0 = use 1.1) */
    double dup_rate;   /* 0..1: fraction of lines that are exact duplicates */
    double bad_rate;   /* 0..1: fraction of lines that are malformed */
} pd_gen_opts;

/* Kinds of malformed line; names are event.h reason names. */
typedef enum {
    PD_GEN_BAD_INVALID_JSON = 0, /* "invalid_json": truncated object */
    PD_GEN_BAD_NOT_OBJECT,       /* "not_object": a JSON array */
    PD_GEN_BAD_MISSING_USER_ID,  /* "missing_user_id" */
    PD_GEN_BAD_USER_ID_TYPE,     /* "bad_user_id_type": user_id is a number */
    PD_GEN_BAD_EMPTY_USER_ID,    /* "empty_user_id" */
    PD_GEN_BAD_MISSING_TS,       /* "missing_ts" */
    PD_GEN_BAD_TS_TYPE,          /* "bad_ts_type": ts is an array */
    PD_GEN_BAD_TS_FORMAT,        /* "bad_ts_format": ts is "yesterday" */
    PD_GEN_BAD_TS_RANGE,         /* "ts_out_of_range": ts in 1990 */
    PD_GEN_BAD_MISSING_TYPE,     /* "missing_type" */
    PD_GEN_BAD_ATTR_CONTAINER,   /* "bad_attr_container": "item" is a string */
    PD_GEN_BAD__COUNT
} pd_gen_bad_kind;

const char *pd_gen_bad_name(int kind);

/* Return values of pd_gen_next. */
enum {
    PD_GEN_END = 0,   /* count lines already generated; outputs untouched */
    PD_GEN_EVENT = 1, /* a new valid event */
    PD_GEN_DUP = 2,   /* an exact duplicate of an earlier valid event */
    PD_GEN_BAD = 3,   /* a malformed line; see pd_gen_last_bad */
};

typedef struct pd_gen pd_gen;

/* Validates opts and builds a generator (precomputes the Zipf table:
 * 8 bytes per user). Returns PD_OK and *out, or PD_EINVAL with a message
 * naming the bad option. The caller owns *out (pd_gen_free). */
int pd_gen_new(const pd_gen_opts *o, pd_gen **out, char *err, size_t errlen);

/* Generates the next line. json_out and key_out (key_out may be NULL) are
 * reset to length 0 and receive the line (no newline, NUL-terminated) and
 * the key (possibly empty). The buffers stay owned by the caller. Returns
 * PD_GEN_EVENT / PD_GEN_DUP / PD_GEN_BAD, or PD_GEN_END after `count`
 * lines. */
int pd_gen_next(pd_gen *g, pd_buf *json_out, pd_buf *key_out);

/* pd_gen_bad_kind of the last PD_GEN_BAD line (-1 if none yet). */
int pd_gen_last_bad(const pd_gen *g);

/* Frees g (NULL is fine). */
void pd_gen_free(pd_gen *g);

#endif

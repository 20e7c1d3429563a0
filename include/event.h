/*
 * event.h -- parsing and validating one interaction event (pure function).
 *
 * Input: the Kafka record value, one JSON object:
 *   {"event_id":"e-1","user_id":"u-42","ts":1795328747333,"type":"view",
 *    "item":{"make":"BMW","color":"blue","price":18990}}
 * Required: user_id (string, 1..256 bytes, valid UTF-8), ts (epoch ms
 * integer or RFC 3339 string, within [2000-01-01, 2200-01-01)), type
 * (string, 1..64 bytes, UTF-8). Optional: event_id (string, 1..256 bytes).
 * Dimension attributes are read from the schema's paths (item.* / filters.*
 * by default).
 *
 * Attributes: a categorical dimension accepts strings (1..256 bytes, valid
 * UTF-8), numbers (stringified: integers as "%lld", others "%.17g") and
 * booleans ("true"/"false"); a numeric dimension accepts finite numbers
 * only. JSON null counts as absent. Anything else is PD_ATTR_BAD: skipped,
 * counted in ev->n_bad_attrs, and the event is still valid.
 *
 * JSON dialect: RFC 8259, strictly: UTF-8 without BOM, no raw control
 * characters in strings, escapes and numbers as the RFC defines them, at
 * most 64 nested arrays/objects; duplicate keys allowed, the first one
 * counts; \u0000 is a NUL byte inside the string. A value outside the
 * dialect is invalid_json (invalid_utf8 when it is not UTF-8). The full
 * specification is docs/data-model.md, "Event JSON"; the dialect's version
 * is PD_EVENT_DIALECT, recorded in every store (include/store.h).
 *
 * Ownership: pd_event_parse does not keep `buf`; all string pointers in the
 * event point into memory owned by the event (its text_ buffer, or for
 * rare events with over 2 KB of extracted strings one heap block) and stay
 * valid until pd_event_free. Parsing allocates nothing in steady state
 * (per-thread scratch memory is reused); any number of events may be alive
 * at once, and an event may be freed on any thread.
 */
#ifndef PD_EVENT_H
#define PD_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include "schema.h"

#define PD_MAX_USER_ID 256
#define PD_MAX_EVENT_ID 256
#define PD_MAX_TYPE 64
#define PD_MAX_CAT_VALUE 256
#define PD_TS_MIN_MS 946684800000LL   /* 2000-01-01T00:00:00Z */
#define PD_TS_MAX_MS 7258118400000LL  /* 2200-01-01T00:00:00Z */
#define PD_EV_TEXT_INLINE 2048        /* pd_event private text buffer */
/* Version of the event dialect (JSON syntax and field rules). Workers that
 * replay one log must agree on it: a store written under another version
 * is refused at open. 1 was "what cJSON 1.7.15 accepted", 2 is strict
 * RFC 8259 (docs/data-model.md), 3 adds the record-time rules of rectime.h
 * (record timestamps bounded by the worker's clock, de-dup on delivery
 * time instead of event time; December 2026). */
#define PD_EVENT_DIALECT 3

/* Reasons an event is rejected. Names (pd_ev_reason_name) are stable: they
 * appear in the DLQ "reason" header and in metrics labels. */
typedef enum {
    PD_EV_OK = 0,
    PD_EV_EMPTY,            /* "empty": zero-length value */
    PD_EV_TOO_LARGE,        /* "too_large": value over max_event_bytes */
    PD_EV_INVALID_JSON,     /* "invalid_json" */
    PD_EV_NOT_OBJECT,       /* "not_object": top level is not an object */
    PD_EV_INVALID_UTF8,     /* "invalid_utf8": the value is not valid UTF-8 */
    PD_EV_MISSING_USER_ID,  /* "missing_user_id" */
    PD_EV_BAD_USER_ID_TYPE, /* "bad_user_id_type" */
    PD_EV_EMPTY_USER_ID,    /* "empty_user_id" */
    PD_EV_USER_ID_TOO_LONG, /* "user_id_too_long" */
    PD_EV_MISSING_TS,       /* "missing_ts" */
    PD_EV_BAD_TS_TYPE,      /* "bad_ts_type": not integer / string */
    PD_EV_BAD_TS_FORMAT,    /* "bad_ts_format": non-integral number or bad RFC 3339 */
    PD_EV_TS_OUT_OF_RANGE,  /* "ts_out_of_range" */
    PD_EV_MISSING_TYPE,     /* "missing_type" */
    PD_EV_BAD_TYPE_TYPE,    /* "bad_type_type" */
    PD_EV_EMPTY_TYPE,       /* "empty_type" */
    PD_EV_TYPE_TOO_LONG,    /* "type_too_long" */
    PD_EV_BAD_EVENT_ID,     /* "bad_event_id": not a string, empty or too long */
    PD_EV_BAD_ATTR_CONTAINER, /* "bad_attr_container": item/filters present but not an object */
    /* Decided by the worker, not the parser: */
    PD_EV_FUTURE_TS,        /* "future_ts": ts > bound + max_future_skew (rectime.h) */
    PD_EV_FUTURE_TIMESTAMP, /* "future_timestamp": CreateTime record timestamp > worker clock + skew */
    PD_EV_BAD_ERASURE,      /* "bad_erasure": an erasure control record that is malformed (erase.h) */
    PD_EV_BAD_CONTROL,      /* "bad_control": a control record of an unknown kind (erase.h) */
    PD_EV__COUNT
} pd_ev_reason;

const char *pd_ev_reason_name(int reason);

typedef enum { PD_ATTR_ABSENT = 0, PD_ATTR_STR, PD_ATTR_NUM, PD_ATTR_BAD } pd_attr_kind;

typedef struct {
    uint8_t kind;      /* pd_attr_kind */
    uint32_t len;      /* PD_ATTR_STR: byte length of s */
    const char *s;     /* PD_ATTR_STR: value (not NUL-terminated necessarily) */
    double num;        /* PD_ATTR_NUM */
} pd_attr;

typedef struct {
    const char *user_id;  size_t user_id_len;
    const char *event_id; size_t event_id_len; /* NULL/0 when absent */
    const char *type;     size_t type_len;
    int64_t ts_ms;
    uint64_t okey;               /* occurrence key: pd_okey(event_id, ts, type) (sketch.h) */
    int nattrs;                  /* == schema->ndims */
    pd_attr attrs[PD_MAX_DIMS];  /* indexed by dimension */
    int n_bad_attrs;             /* attributes skipped for wrong type */
    const char *item_id;         /* schema "recent" item_id: the value at its path as a categorical */
    uint32_t item_id_len;        /* value would be (1..256 bytes); NULL/0 when absent or unusable */
    /* private */
    char *heap_;                 /* overflow text block (malloc) or NULL */
    uint32_t text_used_;         /* bytes used in text_ */
    uint32_t heap_used_;         /* bytes used in heap_ */
    char text_[PD_EV_TEXT_INLINE]; /* copies of the returned strings, NUL-terminated */
} pd_event;

/* Parses and validates buf[0..len). max_bytes bounds len (0 = 1 MiB; a
 * len of 4 GiB or more is always too_large).
 * Returns PD_EV_OK (0) and fills *ev, or a pd_ev_reason > 0 with a precise
 * message in err (e.g. "field 'ts': expected integer epoch ms or RFC 3339
 * string, got array"). On error *ev holds nothing to free, but calling
 * pd_event_free on it is harmless. Strings user_id, event_id and type
 * are NUL-terminated copies; attribute strings too (len excludes the NUL). */
int pd_event_parse(pd_event *ev, const pd_schema *s, const char *buf, size_t len,
                   size_t max_bytes, char *err, size_t errlen);
void pd_event_free(pd_event *ev);

/* The same strict JSON (the event dialect) for other records, e.g. control
 * records: buf[0..len) (at most 1 MiB) must be one JSON object; copies its
 * top-level string member `name` (the first, as for events; escapes
 * decoded, so it may hold NUL bytes: use *outlen) into out[0..cap) with a
 * NUL after it. Returns PD_OK, or with a message in err PD_JSON_BAD (not
 * a JSON object), PD_JSON_MISSING, PD_JSON_TYPE (not a string) or
 * PD_JSON_LONG (cap - 1 bytes or more). */
enum { PD_JSON_BAD = 1, PD_JSON_MISSING, PD_JSON_TYPE, PD_JSON_LONG };
int pd_json_get_str(const char *buf, size_t len, const char *name, char *out, size_t cap, size_t *outlen,
                    char *err, size_t errlen);

/* The same scanner for documents read field by field (the rank body,
 * score.c): one JSON object in the event dialect -- the rules above, the
 * same messages -- validated whole by pd_json_open, then read by token
 * index. Token 0 is the top-level object. Children follow their
 * container in document order:
 *   object o: for (k = o + 1; k < pd_json_end(d, o); k = pd_json_end(d, k))
 *             k is a key (PD_JTOK_STR), k + 1 its value;
 *   array a:  for (e = a + 1; e < pd_json_end(d, a); e = pd_json_end(d, e)).
 * Nothing is allocated per value: the tokens live in the calling thread's
 * reusable tape (the one pd_event_parse uses).
 * Ownership and lifetime: the document borrows buf and the thread's tape;
 * it is valid on the thread that opened it until pd_json_close or the
 * thread's next pd_json_open / pd_event_parse / pd_json_get_str. Strings
 * from pd_json_str point into buf (no escapes) or into the thread's
 * scratch, valid until the next pd_json_str / pd_json_num. */
enum { PD_JTOK_NULL, PD_JTOK_FALSE, PD_JTOK_TRUE, PD_JTOK_NUM, PD_JTOK_STR, PD_JTOK_ARR, PD_JTOK_OBJ };
/* Private: one token of the tape (event.c describes the fields); public
 * only so that the accessors below inline -- rank bodies read ~10 tokens
 * per candidate and dimension. */
typedef struct {
    uint32_t off, len, next;
    uint8_t kind, esc;
    uint16_t hash;
} pd_json_tok_;
typedef struct {
    const char *buf_;         /* private: the input (borrowed) */
    void *tls_;               /* private: the thread's tape */
    const pd_json_tok_ *tok_; /* private: its tokens */
} pd_json_doc;

/* Scans buf[0..len) (at most max_bytes, 0 = 1 MiB). PD_OK, or with the
 * event parser's message in err ("empty value (0 bytes)", "value is not
 * valid UTF-8", "invalid JSON at byte N of M: ..."): PD_JSON_BAD (not
 * JSON of the dialect, or too large) or PD_JSON_TYPE (valid, but the top
 * level is not an object). On failure there is nothing to close. */
int pd_json_open(pd_json_doc *d, const char *buf, size_t len, size_t max_bytes, char *err, size_t errlen);
void pd_json_close(pd_json_doc *d);
static inline int pd_json_kind(const pd_json_doc *d, uint32_t v) /* PD_JTOK_* */
{
    return d->tok_[v].kind;
}
const char *pd_json_kind_name(int kind);                     /* "string", "object", ... */
/* The token after v and its descendants; for an object key, the next key
 * (or the object's end). */
static inline uint32_t pd_json_end(const pd_json_doc *d, uint32_t v)
{
    return d->tok_[v].next;
}
/* The value token of the first member `name` of object obj, or -1. */
long pd_json_get(const pd_json_doc *d, uint32_t obj, const char *name);
/* A string token's (or a key's) decoded bytes: *n bytes of UTF-8 (the
 * input is validated, escapes decode to scalar values), may hold NULs. */
const char *pd_json_str_esc_(const pd_json_doc *d, uint32_t v, size_t *n); /* private */
static inline const char *pd_json_str(const pd_json_doc *d, uint32_t v, size_t *n)
{
    const pd_json_tok_ *k = &d->tok_[v];
    if (k->kind != PD_JTOK_STR || k->esc) return pd_json_str_esc_(d, v, n);
    *n = k->len;
    return d->buf_ + k->off;
}
/* A number token's value (strtod's; beyond the double range: +-inf). */
double pd_json_num(const pd_json_doc *d, uint32_t v);

/* A set of member names found together: pd_json_members walks an object's
 * members once and sets out[i] to the value token of the first member
 * named names[i] (decoded keys compare, as in pd_json_get), or -1. Names
 * must be distinct and shorter than PD_MAX_NAME bytes; the set borrows
 * them. Immutable once built: any thread, any document. */
typedef struct pd_json_names pd_json_names;
pd_json_names *pd_json_names_new(const char *const *names, const size_t *lens, int n);
void pd_json_names_free(pd_json_names *nm);
void pd_json_members(const pd_json_doc *d, uint32_t obj, const pd_json_names *nm, long *out);

#endif

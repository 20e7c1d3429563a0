/*
 * profile.h -- the profile model: one user's aggregates for one day.
 * Pure code, no I/O.
 *
 * A profile holds the event count, first/last event time, a count per event
 * type, and one aggregate per schema dimension:
 *   categorical -- count per value: exact up to the dimension's cap
 *                  (pd_dim_cap), beyond it a heavy-hitter sample counted
 *                  by a sketch (catset.h).
 *   numeric     -- count, sum, sum of squares, min, max (exact to merge) and
 *                  a histogram over the schema's bucket bounds (+Inf last).
 *
 * Every part of a profile is a function of the multiset of its events
 * alone (the capped catsets too, see catset.h): profile_add in any order
 * and profile_merge in any grouping give identical results -- merge is
 * associative and commutative -- which is what lets RocksDB merge
 * operands, replicas compute the owner's state, and the worker
 * pre-aggregate batches. Event types are a catset with the schema's
 * global cap (schema->max_values).
 *
 * Per-type tracks: for each event type the schema tracks
 * ("tracked_types"), a sub-profile of the same shape holds the aggregates
 * of that type's events alone, beside the all-types profile; it is a
 * function of the multiset of events as well (merge is per sub-profile).
 * A sub-profile's catsets have the dimension's cap: they never overflow
 * while the all-types catset does not (their values are a subset).
 *
 * Recent items: with the schema's "recent", the K most recent events of
 * the user-day (time, type, item id, chosen attributes) by a total order
 * on events (pd_recent_cmp), so the K first of the union is the same
 * however the events were grouped: merge stays associative and
 * commutative.
 *
 * Ownership: a pd_profile owns all its memory (value strings, arrays); it
 * borrows its schema, which must outlive it.
 */
#ifndef PD_PROFILE_H
#define PD_PROFILE_H

#include <stddef.h>
#include <stdint.h>
#include "catset.h"
#include "schema.h"
#include "event.h"
#include "util.h"

#define PD_PROFILE_VERSION 3   /* the only version read and written (docs/data-model.md) */
#define PD_PF_TRACKED 0x01     /* flags: the per-type sub-profiles section follows */
#define PD_PF_RECENT 0x02      /* flags: the recent items section follows */

/* One recent item: an event's time, occurrence key and its entry body,
 *   type (uvarint length, bytes) | item id (uvarint length, bytes; 0 =
 *   none) | per schema recent attribute: 0 absent, 1 string (uvarint
 *   length, bytes), 2 number (cdouble).
 * Order (pd_recent_cmp): time, newer first; then okey, larger first; then
 * the body bytes (memcmp, shorter first) -- a total order on events, so
 * the K first of a multiset do not depend on how it was put together. */
typedef struct {
    int64_t ts;
    uint64_t okey;
    uint32_t len;
    uint8_t *rec;   /* owned */
} pd_recent;

/* <0 when a comes before b (is more recent). */
int pd_recent_cmp(const pd_recent *a, const pd_recent *b);

/* A recent item's body, parsed (pointers into r->rec, not NUL-terminated). */
typedef struct {
    const char *type;
    uint32_t type_len;
    const char *item_id;   /* NULL: none */
    uint32_t item_id_len;
    struct {
        int kind;          /* 0 absent, 1 string, 2 number */
        const char *s;
        uint32_t len;
        double num;
    } attrs[PD_MAX_RECENT_ATTRS];
} pd_recent_view;

/* Parses r (validated by the decoder or built by add). */
void pd_recent_view_of(const pd_schema *s, const pd_recent *r, pd_recent_view *v);

typedef struct {
    uint64_t count;
    double sum, sumsq, min, max;
    uint64_t *hist;   /* nbounds+1 buckets when count > 0, else NULL */
} pd_numagg;

typedef union {
    pd_catset cat;
    pd_numagg num;
} pd_dimagg;

typedef struct pd_profile {
    const pd_schema *schema; /* borrowed */
    uint64_t events;
    int64_t first_ts, last_ts;  /* epoch ms; 0 when events == 0 */
    pd_catset types;            /* empty in a sub-profile */
    pd_dimagg dims[PD_MAX_DIMS]; /* indexed like schema->dims */
    /* Per-type tracks: NULL, or schema->ntracked sub-profiles (owned), the
     * t-th aggregating only the events of type schema->tracked[t] (a
     * sub-profile with events == 0 is absent). A sub-profile has no
     * event-type counts (its type is t) and no sub-profiles of its own. */
    struct pd_profile *sub;
    /* Recent items (schema->recent_max > 0): the min(recent_max, events)
     * first events of the day by pd_recent_cmp, in that order. Not kept in
     * sub-profiles. */
    pd_recent *recent;
    uint32_t nrecent, recent_cap;
} pd_profile;

void pd_profile_init(pd_profile *p, const pd_schema *s);
/* Frees contents; p is an empty profile of the same schema afterwards. */
void pd_profile_reset(pd_profile *p);
/* Like reset, but keeps allocated capacity (value arrays, histogram
 * buffers) for the next adds: for profiles that are filled and emptied over
 * and over (the ingest batch). pd_profile_free releases everything. */
void pd_profile_clear(pd_profile *p);
void pd_profile_free(pd_profile *p);
/* Heap bytes p holds: allocated capacity (value arrays, long values,
 * histogram buffers), whether in use or kept by pd_profile_clear. */
size_t pd_profile_mem_bytes(const pd_profile *p);

/* Adds one validated event. Attributes of kind PD_ATTR_BAD/ABSENT are
 * skipped; the event still counts. */
void pd_profile_add(pd_profile *p, const pd_event *ev);
/* dst += src (same schema). src is unchanged. */
void pd_profile_merge(pd_profile *dst, const pd_profile *src);
/* dst += the profile of a set of events, from src = the profile of those
 * events under a schema that differs from dst's in its caps alone, or
 * also in keeping no recent items (the user schema into the population's,
 * batch.c; src's recent items are then left out): everything of src except
 * its overflowed catsets, which no longer hold every occurrence, is
 * merged, and the number of those left out is returned; when it is not 0
 * the caller passes every event of the set to pd_profile_add_overflowed,
 * which adds their occurrences in exactly those catsets. Together: the
 * same as pd_profile_add of every event into dst (every part of a profile
 * is a function of the multiset of its events). dst != src. */
int pd_profile_merge_exact(pd_profile *dst, const pd_profile *src);
void pd_profile_add_overflowed(pd_profile *dst, const pd_profile *src, const pd_event *ev);
/* 1 when equal in every count (numeric sums compared exactly). */
int pd_profile_equal(const pd_profile *a, const pd_profile *b);

/* Sub-profile of tracked type t, or NULL when it has no events. */
static inline const pd_profile *pd_profile_sub(const pd_profile *p, int t)
{
    return p->sub && p->sub[t].events ? &p->sub[t] : NULL;
}

/* Binary codec (see docs/data-model.md). encode appends to out. decode
 * replaces the content of an initialised profile (reusing its allocated
 * capacity, so decoding into the same profile again and again does not
 * allocate); corrupt input returns PD_ECORRUPT with a message and leaves p
 * empty, never crashes. */
void pd_profile_encode(const pd_profile *p, pd_buf *out);
/* Appends to out exactly what pd_profile_encode gives for the profile of
 * the one event ev of schema s (pd_profile_add on an empty profile),
 * without building it: most batch deltas hold a single event. */
void pd_profile_encode_event(const pd_schema *s, const pd_event *ev, pd_buf *out);
int pd_profile_decode(pd_profile *p, const void *data, size_t len, char *err, size_t errlen);

/* JSON rendering of one stored day profile, for the dump tool:
 * {"events":N,"first_seen":"..","last_seen":"..","event_types":{..},
 *  "event_types_approximate":false,
 *  "dimensions":{"color":{"type":"categorical","total":N,"approximate":false,"counts":{..}},
 *                "price":{"type":"numeric","count":N,"sum":..,"sumsq":..,"min":..,
 *                         "max":..,"mean":..,"stddev":..,"histogram":[{"le":5000,"count":1},..,{"le":"+Inf","count":0}]}}}
 * Dimensions with no data are omitted; "__other__" appears in counts when > 0
 * (only in an overflowed catset, whose "approximate" is true). A profile
 * with sub-profiles adds "tracked":{"park":{"events":..,"first_seen":..,
 * "last_seen":..,"dimensions":{..}},..} (present ones only), and a profile
 * with recent items "recent":[{"ts":..,"type":..,"item_id":..|null,
 * "attributes":{"make":"BMW","price":18990}},..] (most recent first). */
void pd_profile_to_json(const pd_profile *p, pd_buf *out);

#endif

/*
 * schema.h -- the profile schema: which dimensions a profile aggregates,
 * their type, where in the event JSON each one is read from, and the
 * histogram bucket bounds of numeric dimensions.
 *
 * A schema is loaded from a JSON file (see docs/data-model.md) or is the
 * built-in vehicle-marketplace schema (20 dimensions). It is immutable after
 * loading and is shared read-only by all threads. Its fingerprint is stored
 * in the database so that a store is never read with a different schema.
 */
#ifndef PD_SCHEMA_H
#define PD_SCHEMA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "util.h"

#define PD_MAX_DIMS 64
#define PD_MAX_PATHS 4
#define PD_MAX_PATH_DEPTH 4
#define PD_MAX_BOUNDS 32
#define PD_MAX_NAME 64
#define PD_MAX_TRACKED 8        /* tracked event types (per-type sub-profiles) */
#define PD_MAX_TRACKED_NAME 64  /* bytes of a tracked type name (= PD_MAX_TYPE) */
#define PD_MAX_RECENT 100       /* largest "recent" "max" */
#define PD_MAX_RECENT_ATTRS 8   /* dimensions a recent item carries */
#define PD_RECENT_DEFAULT 10    /* "recent" "max" when the schema does not say */

typedef enum { PD_DIM_CATEGORICAL = 1, PD_DIM_NUMERIC = 2 } pd_dim_type;

typedef struct {
    int depth;                            /* number of segments */
    char seg[PD_MAX_PATH_DEPTH][PD_MAX_NAME]; /* "item", "color" */
} pd_path;

typedef struct {
    char name[PD_MAX_NAME];
    pd_dim_type type;
    int npaths;                 /* tried in order; first present wins */
    pd_path paths[PD_MAX_PATHS];
    uint32_t max_values;        /* categorical: the cap (0 = the schema's max_values) */
    int nbounds;                /* numeric: histogram upper bounds (le, inclusive), ascending; +Inf implied */
    double bounds[PD_MAX_BOUNDS];
} pd_dim;

typedef struct {
    int ndims;
    pd_dim dims[PD_MAX_DIMS];
    uint32_t max_values;   /* default categorical cap per user-day-dimension, and the event types' cap */
    int ntracked;          /* "tracked_types": event types with their own sub-profile per user-day */
    char tracked[PD_MAX_TRACKED][PD_MAX_TRACKED_NAME + 1];
    uint32_t tracked_len[PD_MAX_TRACKED];
    /* "recent": the K most recent events per user-day (0 = off), with
     * the item id read at recent_item (depth 0 only when off) and the
     * values of dimensions recent_attrs[0..recent_nattrs) (profile.h).
     * On by default: PD_RECENT_DEFAULT items, id at "item.id", no
     * attributes -- the attributes are in the profile's dimensions
     * already, a consumer of the recent list (search re-ranking) needs
     * the item ids, and each attribute costs bytes in every item of every
     * user-day, so a schema opts in to the ones it wants. */
    int recent_max;
    pd_path recent_item;
    int recent_nattrs;
    int recent_attrs[PD_MAX_RECENT_ATTRS];
    uint64_t fingerprint;  /* hash of the canonical schema description */
} pd_schema;

#define PD_MAX_CAP 65536   /* largest max_values / categorical_max_values */

/* The cap of categorical dimension i: its own max_values, else the
 * schema's. */
static inline uint32_t pd_dim_cap(const pd_schema *s, int i)
{
    return s->dims[i].max_values ? s->dims[i].max_values : s->max_values;
}

/* Index of tracked event type t[0..n) in s->tracked, or -1. */
static inline int pd_schema_tracked(const pd_schema *s, const char *t, size_t n)
{
    for (int i = 0; i < s->ntracked; i++)
        if (s->tracked_len[i] == n && memcmp(s->tracked[i], t, n) == 0) return i;
    return -1;
}

/* The built-in vehicle schema (12 categorical + 8 numeric dimensions). */
void pd_schema_default(pd_schema *s, uint32_t max_values);
/* Loads a schema from JSON text:
 *   {"dimensions":[{"name":"color","type":"categorical","paths":["item.color","filters.color"]},
 *                  {"name":"price","type":"numeric","buckets":[5000,10000]}]}
 * "paths" defaults to ["item.<name>", "filters.<name>"]; a categorical
 * dimension may set "max_values" (1..PD_MAX_CAP), else it gets the
 * schema's: the max_values argument when non-zero, else the file's
 * "categorical_max_values", else 64. "tracked_types" (optional) lists up to
 * PD_MAX_TRACKED distinct event types, 1..64 bytes each, without ',', ':',
 * control bytes or the name "*" (the query's types=/weights= syntax), that
 * get their own sub-profile per user-day (profile.h). "recent"
 * (optional): {"max": K (0..PD_MAX_RECENT, default PD_RECENT_DEFAULT;
 * 0 = off), "item_id": path (default "item.id"), "attributes":
 * [dimension names, at most PD_MAX_RECENT_ATTRS, default none]}; a
 * schema without the key gets all the defaults (so does the built-in
 * one), {"max": 0} turns recent items off. Errors name the offending
 * dimension and key. */
int pd_schema_load_json(pd_schema *s, const char *json, size_t len, uint32_t max_values,
                        char *err, size_t errlen);
int pd_schema_load_file(pd_schema *s, const char *path, uint32_t max_values, char *err, size_t errlen);
/* Index of dimension `name` (length n) or -1. */
int pd_schema_find(const pd_schema *s, const char *name, size_t n);
/* Writes the schema as JSON text (canonical form, loadable again: every
 * default written out, "recent" always, {"max":0} when off). */
void pd_schema_to_json(const pd_schema *s, pd_buf *out);
/* Appends {"fingerprint":"<16 hex digits>","schema":<pd_schema_to_json>}:
 * GET /v1/schema's answer and `profilectl schema --format json`. */
void pd_schema_describe(const pd_schema *s, pd_buf *out);

#endif

/*
 * query.h -- building a profile query response from stored day profiles.
 * Pure code: no I/O, no locks; the caller reads the day profiles (from one
 * store snapshot) and hands them in.
 *
 * Request parameters (parsed from the URL query string by
 * pd_query_parse_params): from/to (YYYY-MM-DD, inclusive) or days=N, dims
 * (comma list), breakdown=day, decay=exp:H | linear:N, top=K, at=YYYY-MM-DD
 * (the day the range and decay count back from; q->anchor_day),
 * types=park,contact and weights=view:1,park:3 (per-type tracks).
 */
#ifndef PD_QUERY_H
#define PD_QUERY_H

#include <stdint.h>
#include "profile.h"
#include "schema.h"
#include "util.h"

typedef enum { PD_DECAY_NONE = 0, PD_DECAY_EXP, PD_DECAY_LINEAR } pd_decay_kind;

#define PD_QUERY_MAX_TOP 10000

typedef struct {
    int64_t from_day, to_day;  /* inclusive day numbers */
    int ndims;                 /* 0 = all dimensions */
    int dims[PD_MAX_DIMS];     /* schema indices, in request order */
    int breakdown_day;
    pd_decay_kind decay;
    double decay_param;        /* H (half-life days) or N (days) */
    int top;                   /* top=K: 1..PD_QUERY_MAX_TOP values per dimension; 0 = all */
    int recent;                /* recent=N: list at most N recent items (0: no "recent" key);
                                  -1 (not given) = as many as the schema keeps */
    int64_t anchor_day;        /* "today" of the query: at=, else the caller's today.
                                  Ranges and decay ages count back from it */
    int has_at;                /* at= was given (the answer names it) */
    int at_before_retention;   /* at= older than today - retention_days + 1 */
    /* Per-type tracks (types=, weights=; query.c "Types and weights"). */
    int has_types, has_weights;
    unsigned types_mask;                /* types=: bit t set for tracked type t */
    double w_rest;                      /* weight of the untracked types' events (0 with types=) */
    double w_tracked[PD_MAX_TRACKED];   /* weight of each tracked type's events */
} pd_query;

/* Parses a URL query string (already split from the path, not yet
 * percent-decoded). today = current day in the configured zone;
 * retention_days bounds the default range [today-retention+1, today].
 * Errors (PD_EINVAL) come with a message fit for the JSON "detail". */
int pd_query_parse_params(pd_query *q, const char *qs, const pd_schema *s, int64_t today,
                          int64_t retention_days, char *err, size_t errlen);

/* One stored day of the user. */
typedef struct {
    int64_t day;
    const pd_profile *prof;  /* borrowed */
} pd_query_day;

/* The weight of stored day `day` under q's decay, its age counted back
 * from `today` (pass q->anchor_day): none 1, exp 2^(-age/H), linear
 * max(0, 1 - age/N); age = max(0, today - day). The one weight rule of
 * every answer over a range (profiles, scoring). */
double pd_query_day_weight(const pd_query *q, int64_t today, int64_t day);

/* The per-type weighting of q ("Types and weights" in query.c): every
 * weighted sum over a day is c_all * (its all-types profile) + sum over
 * tracked types t of c_sub[t] * (its sub-profile t, pd_profile_sub).
 * Returns 1 with types=/weights=, else 0 (c_all 1, every c_sub 0: the
 * all-types profile alone). c_sub has s->ntracked entries. The one rule
 * of every answer that weights types (profiles, population, scoring). */
int pd_query_type_coefs(const pd_query *q, const pd_schema *s, double *c_all, double *c_sub);

/* A sum of terms of both signs (v, with mag the sum of the terms'
 * magnitudes) as answers use it: 0 when it cancels to below 1e-9 of mag
 * (floating-point residue); 0 as well when negative (only reachable
 * through sketch estimates), then *approx is set. */
double pd_query_cancel(double v, double mag, int *approx);

/* Renders the response JSON object (without served_by/stale, which the
 * caller appends: the object is left OPEN, i.e. without the final '}').
 * days must be ascending and within [from, to]; today is the reference for
 * decay ages (age = today - day): pass q->anchor_day. Returns PD_ENOTFOUND (nothing appended)
 * when the user has no events in range. user_id NULL renders the
 * population (population.h): no user_id/partition members, and no events
 * in range is an answer (events 0, first_seen/last_seen null), not
 * PD_ENOTFOUND. */
int pd_query_render(const pd_query *q, const pd_schema *s, const char *user_id, size_t ulen,
                    int32_t partition, int64_t today, const pd_query_day *days, int ndays,
                    pd_buf *out);

/* The range of an answer, after its "from": key: the from day, then
 * ,"to":day and, with at=, ,"at":day[,"at_before_retention":true]. One
 * writer for every answer that echoes a range (profile, population, rank,
 * affinities). */
void pd_query_put_range(pd_buf *out, const pd_query *q);

/* With types=: ,"types":[the tracked types that count]; with weights=:
 * ,"weights":{"*":w, <every tracked type>:w} (the effective weights);
 * nothing without them. The one echo of the per-type weighting of every
 * answer that applies it (profile, population, rank, affinities). */
void pd_query_put_types(pd_buf *out, const pd_query *q, const pd_schema *s);

#endif

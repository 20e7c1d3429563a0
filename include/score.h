/*
 * score.h -- scoring a user's profile against the population prior
 * (issue 20; the model: docs/scoring.md): the request bodies of
 * POST /v1/profiles/{u}/rank and the parameters of
 * GET /v1/profiles/{u}/affinities, the per-request model (the user's and
 * the population's weighted sums over the range), scores, contributions
 * and the JSON answers. Pure code: no I/O, no locks; the caller reads the
 * user's days and acquires the population (population.h) and hands both
 * in, borrowed.
 *
 * Ownership: a pd_score_req owns what it kept of its body (items, ids
 * and attribute texts, copied: the body itself is not kept) until
 * pd_score_req_free; a pd_score_model borrows the
 * day profiles it was built from (their value bytes) and must be freed
 * (pd_score_model_free) before they are.
 */
#ifndef PD_SCORE_H
#define PD_SCORE_H

#include <stdint.h>
#include "event.h"
#include "query.h"
#include "schema.h"
#include "util.h"

#define PD_SCORE_ALPHA_DEFAULT 10.0
#define PD_SCORE_TOP_DEFAULT 5
#define PD_SCORE_MAX_LAMBDA 1e6   /* |dim_weights| bound: keeps every score finite */

/* One candidate: its id (JSON text to echo) and the values of the scoring
 * dimensions (attrs[j] for the request's j-th scoring dimension). */
typedef struct {
    const char *id;       /* the id's JSON text (a string with its quotes, or a number) */
    uint32_t idlen;
    pd_attr *attrs;       /* nsd entries; PD_ATTR_STR values are valid UTF-8 */
    uint64_t *hash;       /* nsd entries: XXH3-64 of each PD_ATTR_STR value */
} pd_score_item;

/* A parsed rank body. */
typedef struct {
    pd_query q;                  /* range, decay, at (the profile query's rules) */
    int nsd;                     /* scoring dimensions */
    int sdims[PD_MAX_DIMS];      /* their schema indices, in request (or schema) order */
    double lambda[PD_MAX_DIMS];  /* dim_weights, per scoring dimension (default 1) */
    double alpha;                /* prior strength, > 0 */
    int explain;
    int nitems;
    pd_score_item *items;        /* owned */
    pd_buf text;                 /* owned: the ids' JSON texts and the attributes' values */
    pd_attr *attr_mem;           /* owned */
    uint64_t *hash_mem;          /* owned */
} pd_score_req;

/* Parses a rank body (a JSON object in the event dialect, event.h; see
 * docs/api.md): items (required, 0..max_items candidates, each
 * {"id": string|number, <attributes: the schema's paths ("item": {...})
 * or flat "<dimension>": value>}), days / from / to / decay / at / types /
 * weights (the profile query's rules, today = the worker's day; types an
 * array of names, weights an object {type: weight}), dims, dim_weights,
 * alpha, explain. Unknown fields are refused. The body is borrowed during
 * the call only. Runs on the calling thread's JSON tape (event.h): no
 * allocation per JSON value.
 * PD_EINVAL with a message fit for the JSON "detail" (naming the field or
 * the item's index); PD_ERANGE when there are more than max_items items.
 * *r is zeroed on failure (nothing to free) and owned by the caller on
 * success (pd_score_req_free). */
int pd_score_parse_rank(pd_score_req *r, const char *body, size_t len, const pd_schema *s, int64_t today,
                        int64_t retention_days, int max_items, char *err, size_t errlen);
void pd_score_req_free(pd_score_req *r);

/* Affinities parameters: the profile query's (days, from, to, decay, at,
 * dims, top: default PD_SCORE_TOP_DEFAULT) plus alpha and
 * order=lift|p_user (default lift). breakdown is refused. */
typedef struct {
    pd_query q;
    double alpha;
    int by_p_user;              /* order=p_user */
} pd_score_aff;

int pd_score_parse_affinities(pd_score_aff *a, const char *qs, const pd_schema *s, int64_t today,
                              int64_t retention_days, char *err, size_t errlen);

/* What the caller knows of the prior, echoed in answers as "prior". */
typedef struct {
    double age_s;               /* < 0: no prior yet (null) */
    int32_t parts_covered, parts_total;
    int ndays;                  /* population days with data in the range */
} pd_score_prior;

/* "prior":{"age_s","days","partitions_covered","partitions_total",
 * "complete"}: the one shape of the prior in every answer (rank,
 * affinities, GET /v1/population). age_s rounded to milliseconds, null
 * without a prior; complete when every partition is covered. */
void pd_score_put_prior(pd_buf *out, const pd_score_prior *prior);

typedef struct pd_score_model pd_score_model;

/* Builds the weighted sums of the scoring dimensions sdims[0..nsd) over
 * the user's days and the population's days (both ascending, within the
 * query's range; weights by q's decay counted back from q->anchor_day,
 * and with types=/weights= by the event types' weights, on both sides:
 * pd_query_type_coefs).
 * The population's profiles must follow a schema with the same dimensions
 * as s (caps may differ). Never fails (allocation aborts). */
pd_score_model *pd_score_model_new(const pd_schema *s, const pd_query *q, const int *sdims, int nsd,
                                   const pd_query_day *udays, int nu, const pd_query_day *pdays, int np);

/* The population's half of a model on its own: the weighted sums of every
 * schema dimension over the population's days pdays[0..np) (ascending,
 * within q's range; q's decay and types/weights, as above). Immutable once
 * built, so any number of models on any threads may share it; it borrows
 * the day profiles (their value bytes). What it depends on -- the days,
 * each day's weight, the type coefficients -- is pd_score_pop_key's bytes
 * (appended to key): two queries with equal keys over the same prior get
 * bit-identical sums, which lets the caller cache one per prior and key
 * (http_score.c, population.h) instead of merging the population's days
 * on every request. pd_score_pop_free_any: the same as pd_score_pop_free
 * for a void * (a cache's free function). */
typedef struct pd_score_pop pd_score_pop;
pd_score_pop *pd_score_pop_new(const pd_schema *s, const pd_query *q, const pd_query_day *pdays, int np);
void pd_score_pop_free(pd_score_pop *p);
void pd_score_pop_free_any(void *p);
void pd_score_pop_key(const pd_schema *s, const pd_query *q, const pd_query_day *pdays, int np, pd_buf *key);
/* pd_score_model_new with the population's half given (borrowed: it must
 * outlive the model). */
pd_score_model *pd_score_model_new_pop(const pd_schema *s, const pd_query *q, const int *sdims, int nsd,
                                       const pd_query_day *udays, int nu, const pd_score_pop *pop);
void pd_score_model_free(pd_score_model *m);
/* 1 when the user has no events that count in the range (with types= /
 * weights=: of a type weighted > 0): every score is 0. */
int pd_score_model_cold(const pd_score_model *m);
/* 1 when the user has any event in the range, whatever its type. */
int pd_score_model_has_events(const pd_score_model *m);

/* The model's probabilities for scoring dimension j (index into sdims)
 * and attribute a under prior strength alpha (h: XXH3-64 of a string value): p_user and p_population
 * of the value; returns ln(p_user / p_population) (the contribution before
 * lambda), 0 when the user has no weighted data in the dimension. a must be
 * PD_ATTR_STR (categorical) or PD_ATTR_NUM (numeric) of the right kind. */
double pd_score_dim(const pd_score_model *m, int j, const pd_attr *a, uint64_t h, double alpha, double *p_user,
                    double *p_pop);

/* Scores every item into score[i] (sum over scoring dimensions of
 * lambda_j * contribution; missing or wrong-typed attributes add 0),
 * each distinct (dimension, value) of the items computed once. m is only
 * read: any number of threads may score against one model. */
void pd_score_items(const pd_score_req *r, const pd_score_model *m, double *score);

/* The rank answer, as an OPEN JSON object (the caller appends
 * served_by/stale and the final '}'): user_id, partition, from, to, [at],
 * [types], [weights] (with types/weights: pd_query_put_types), cold_start,
 * alpha, dims, prior, items sorted by score (descending, ties
 * in input order), each {"id","score"[,"contributions","missing",
 * "invalid"]}. */
void pd_score_render_rank(const pd_score_req *r, const pd_score_model *m, const pd_schema *s, const char *user,
                          size_t ulen, int32_t partition, const pd_score_prior *prior, pd_buf *out);

/* The affinities answer, OPEN like the rank answer: per scoring dimension
 * the top values the user has (n_user > 0), ordered by lift (or p_user),
 * ties by value bytes, with count, p_user, p_population, lift. */
void pd_score_render_affinities(const pd_score_aff *a, const pd_score_model *m, const pd_schema *s,
                                const char *user, size_t ulen, int32_t partition, const pd_score_prior *prior,
                                pd_buf *out);

#endif

/*
 * population.h -- the population prior: per day, the distribution of every
 * dimension over ALL users (issue 20). This header is the contract between
 * the population side (storage, the cluster-wide cache, GET /v1/population)
 * and its readers (scoring: POST /v1/profiles/{u}/rank, affinities).
 *
 * A population day is a pd_profile of the population schema (the worker's
 * schema with every categorical cap = population_max_values), summed over
 * every partition of the input topic: the cluster-wide prior. Readers get
 * it as pd_query_day entries, exactly like a user's stored days, so the
 * same range/decay code applies.
 *
 * Where it comes from (population.c; docs/architecture.md "Population
 * prior"): every owner writes its partitions' population profiles per day
 * in the same WriteBatch as the user deltas (store.h, batch.h). A
 * background thread per worker rebuilds the cluster-wide prior every
 * population_refresh: its own partitions (owned and ready, or warm
 * replicas) from its store, every other partition from ONE request per
 * live peer (GET /internal/v1/population, cluster token). Each partition
 * is taken from exactly one source per refresh -- the one whose copy is
 * furthest along the partition's log (highest checkpoint) -- and a
 * partition no source reported this time keeps its last copy (older: the
 * age grows). So no partition is ever counted twice, whatever moves.
 *
 * Threads: any HTTP thread may call pd_population_acquire concurrently; the
 * view it fills is immutable and is the caller's until
 * pd_population_release. pd_population_start/stop: main thread.
 */
#ifndef PD_POPULATION_H
#define PD_POPULATION_H

#include <stdint.h>
#include "query.h"
#include "worker.h"

typedef struct pd_population pd_population;

typedef struct {
    pd_query_day *days;     /* ndays entries, increasing day, only days with data */
    int ndays;
    const pd_schema *schema;/* the population schema the profiles follow (borrowed) */
    double age_s;           /* age of the oldest part of the prior, seconds; < 0: no prior yet */
    int32_t parts_covered;  /* partitions whose aggregates are in the prior */
    int32_t parts_total;    /* partitions of the input topic */
    void *hold;             /* owned by the implementation */
} pd_population_view;

/* Fills *out with the cluster-wide population of days [from_day, to_day]
 * (inclusive). Never blocks on peers: it answers from the last prior it
 * has (parts_covered < parts_total when some partitions are missing, and
 * ndays == 0 with age_s < 0 when it has none yet). Returns 0 (PD_OK);
 * allocation failures abort (util.h), so there is no PD_ENOMEM. */
int pd_population_acquire(pd_worker *w, int64_t from_day, int64_t to_day, pd_population_view *out);
void pd_population_release(pd_population_view *v);

/* Values derived from a view's prior, cached with the prior itself
 * (scoring keeps the population's merged sums per range, day weights and
 * types/weights there: score.h pd_score_pop, so a request does not merge
 * the population's days again). They live exactly as long as the prior
 * -- until a refresh replaced it and its last view is released -- so
 * they may borrow its day profiles, and a new prior starts empty: one
 * merge per refresh and key. At most population_cache_keys keys per
 * prior (default 8; more keys are merged per request as before): a
 * scoring value holds a table entry (~56 bytes, load <= 1/2) per distinct
 * value of each dimension in the range -- the size of the tables every
 * rank request used to build for itself -- so the cache costs at most
 * that many such sets per worker.
 * pd_population_derived_get: the value under key (klen bytes), or NULL
 * (none yet, or no prior). pd_population_derived_put offers val, built by
 * the caller from this view's days, and returns the value to use: val,
 * now owned by the prior; or the value another request put under the
 * same key first (val is then freed with free_fn); or val itself with
 * *caller_frees = 1 when there is no prior or no room (the caller frees
 * it after use). Values must be immutable once put: any thread reads
 * them. Thread-safe (a lock per prior). */
void *pd_population_derived_get(const pd_population_view *v, const void *key, size_t klen);
void *pd_population_derived_put(const pd_population_view *v, const void *key, size_t klen, void *val,
                                void (*free_fn)(void *), int *caller_frees);

/* Starts the refresh thread of w (w->store, w->members may be NULL: local
 * partitions only); sets w->population. 0 or an error. */
int pd_population_start(pd_worker *w, char *err, size_t errlen);
/* Stops the thread and frees; w->population = NULL. Before the store and
 * the members map go. NULL population: no-op. */
void pd_population_stop(pd_worker *w);
/* Runs one refresh now, in the calling thread (tests; the thread does the
 * same every population_refresh). */
void pd_population_refresh_now(pd_worker *w);

/* The HTTP routes, without civetweb (http.c sends the answer):
 *   GET /v1/population?<query>     the prior's distribution (JSON), from
 *                                  the cache (never asks a peer)
 *   GET /internal/v1/population    this worker's local partitions' encoded
 *                                  population days (binary, population.c)
 * The body is the caller's (pd_buf_free). */
typedef struct {
    int status;
    const char *ctype;      /* static string */
    pd_buf body;
} pd_population_answer;
void pd_population_http(pd_worker *w, const char *qs, int internal, pd_population_answer *out);

#endif

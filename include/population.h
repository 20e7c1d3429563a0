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
 * Threads: any HTTP thread may call pd_population_acquire concurrently; the
 * view it fills is immutable and is the caller's until
 * pd_population_release.
 */
#ifndef PD_POPULATION_H
#define PD_POPULATION_H

#include <stdint.h>
#include "query.h"
#include "worker.h"

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
 * ndays == 0 with age_s < 0 when it has none yet). 0 or PD_ENOMEM. */
int pd_population_acquire(pd_worker *w, int64_t from_day, int64_t to_day, pd_population_view *out);
void pd_population_release(pd_population_view *v);

#endif

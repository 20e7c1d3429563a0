/*
 * population_stub.c -- placeholder for the population prior (issue 20):
 * an empty prior, so scoring can be built against include/population.h
 * before the population side lands. Replaced by population.c.
 */
#include "population.h"

#include <string.h>

int pd_population_acquire(pd_worker *w, int64_t from_day, int64_t to_day, pd_population_view *out)
{
    (void)from_day;
    (void)to_day;
    memset(out, 0, sizeof *out);
    out->schema = w->schema;
    out->age_s = -1;
    out->parts_total = w->nparts;
    return 0;
}

void pd_population_release(pd_population_view *v)
{
    memset(v, 0, sizeof *v);
}

/*
 * admit.h -- the admission of one event into its partition's state, after
 * it was parsed and validated (event.c), passed the future bound of its
 * record's times (rectime.h) and found in its right partition: the
 * partition clock, the retention floor and the de-dup rule. One mechanism
 * for the worker (ingest.c, records from the topic) and the archive import
 * (ctl_import.c, lines of an archive), so both decide alike.
 *
 * The rule (architecture.md "Data flow of one event", steps 5-6): the
 * partition clock C_p (newest event time of p) advances to the event's ts;
 * an event whose day (in the store's time zone) is before
 * day(C_p) - retention_days + 1 is too old; otherwise, when it has an id
 * (event_id, else the origin header of a re-produced event), it is a
 * duplicate under the de-dup rule (dedup.h) at its delivery time.
 *
 * Pure apart from the index it is given. Ownership: nothing is kept; the
 * caller owns *clock_ms and *dd (the ingest thread's, or the import's).
 */
#ifndef PD_ADMIT_H
#define PD_ADMIT_H

#include "dedup.h"
#include "event.h"
#include "util.h"

enum { PD_ADMIT_OK = 0, PD_ADMIT_TOO_OLD = 1, PD_ADMIT_DUPLICATE = 2 };

typedef struct {
    const pd_tz *tz;          /* the store's time zone (days) */
    int64_t retention_days;
    int64_t dedup_window_ms;
} pd_admit_rules;

/* The first day kept under clock_ms. */
int64_t pd_admit_floor_day(const pd_admit_rules *r, int64_t clock_ms);

/* Admits ev (delivered at delivery_ms, rectime.h; origin: the
 * profiled-origin header or NULL) into the partition with clock *clock_ms
 * and loaded de-dup index *dd: returns PD_ADMIT_OK with *day set (the
 * caller adds it to its batch), PD_ADMIT_TOO_OLD or PD_ADMIT_DUPLICATE. */
int pd_admit(const pd_admit_rules *r, int64_t *clock_ms, pd_dedup *dd, const pd_event *ev, int64_t delivery_ms,
             const char *origin, size_t originlen, int64_t *day);

#endif

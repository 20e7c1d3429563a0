/*
 * admit.c -- admission of one valid event into its partition's state:
 * clock, retention floor, de-dup (rule and ownership in admit.h).
 */
#include "admit.h"

#include <stdio.h>

int64_t pd_admit_floor_day(const pd_admit_rules *r, int64_t clock_ms)
{
    return pd_tz_day(r->tz, clock_ms) - r->retention_days + 1;
}

int pd_admit(const pd_admit_rules *r, int64_t *clock_ms, pd_dedup *dd, const pd_event *ev, int64_t delivery_ms,
             const char *origin, size_t originlen, int64_t *day)
{
    if (ev->ts_ms > *clock_ms) *clock_ms = ev->ts_ms;
    *day = pd_tz_day(r->tz, ev->ts_ms);
    if (*day < pd_admit_floor_day(r, *clock_ms)) return PD_ADMIT_TOO_OLD;
    const char *did = ev->event_id;
    size_t didlen = ev->event_id_len;
    char obuf[PD_MAX_EVENT_ID];
    if (!did && origin && originlen) {
        /* A re-produced misrouted event without event_id: its origin
         * (topic/partition/offset) identifies it uniquely. */
        didlen = (size_t)snprintf(obuf, sizeof obuf, "\x01origin:%.*s", (int)PD_MIN(originlen, 200), origin);
        did = obuf;
    }
    if (did && pd_dedup_check(dd, did, didlen, delivery_ms, r->dedup_window_ms)) return PD_ADMIT_DUPLICATE;
    return PD_ADMIT_OK;
}

/*
 * rectime.c -- the record-time rules: admission bound of a record's
 * timestamps and its delivery time (rules and their determinism argument
 * in rectime.h).
 */
#include "rectime.h"

#include "event.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>

/* A time for a message: RFC 3339 within years 0000-9999, else the number
 * (a record timestamp may be any int64). */
static void fmt_ms(int64_t ms, char out[32])
{
    if (ms >= -62167219200000LL && ms <= 253402300799999LL) pd_ts_format(ms, out);
    else snprintf(out, 32, "%" PRId64 " ms", ms);
}

int pd_rectime_uses_wall(int kind) { return kind != PD_RECTS_APPEND; }

int pd_rectime_check(int kind, int64_t rec_ts, int64_t ts_ms, int64_t wall_ms, int64_t skew_ms, char *err,
                     size_t errlen)
{
    char a[32], b[32];
    if (kind == PD_RECTS_CREATE && rec_ts > wall_ms + skew_ms) {
        fmt_ms(rec_ts, a);
        fmt_ms(wall_ms, b);
        snprintf(err, errlen,
                 "record timestamp %s (CreateTime, set by the producer) is more than %" PRId64
                 " ms after the worker's clock %s",
                 a, skew_ms, b);
        return PD_EV_FUTURE_TIMESTAMP;
    }
    int64_t bound;
    const char *what;
    if (kind == PD_RECTS_APPEND) {
        bound = rec_ts;
        what = "the record's LogAppendTime";
    } else if (kind == PD_RECTS_CREATE && rec_ts <= wall_ms) {
        bound = rec_ts;
        what = "the record timestamp";
    } else {
        bound = wall_ms;
        what = "the worker's clock";
    }
    if (ts_ms - skew_ms > bound) { /* (ts is within 2000..2200: no overflow) */
        fmt_ms(ts_ms, a);
        fmt_ms(bound, b);
        snprintf(err, errlen, "field 'ts': %s is more than %" PRId64 " ms after %s %s", a, skew_ms, what, b);
        return PD_EV_FUTURE_TS;
    }
    return PD_EV_OK;
}

int64_t pd_rectime_delivery(int kind, int64_t rec_ts, int64_t ts_ms)
{
    return kind == PD_RECTS_CREATE || kind == PD_RECTS_APPEND ? rec_ts : ts_ms;
}

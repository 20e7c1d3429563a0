/*
 * query.c -- the response of GET /v1/profiles/{user_id}: request parameter
 * parsing and the aggregation of a user's stored day profiles into JSON.
 *
 * Pure code: no I/O, no locks, no globals. The caller reads the day
 * profiles (from one store snapshot) and hands them in, borrowed.
 *
 * Parameters (pd_query_parse_params):
 *   from, to   YYYY-MM-DD, inclusive. from alone: to = today. to alone:
 *              from = to - retention_days + 1. Neither (and no days):
 *              [today - retention_days + 1, today].
 *   days=N     1..3650: [today - N + 1, today]; not combinable with from/to.
 *   dims       comma list of schema dimension names (duplicates ignored).
 *   breakdown  "day" | "none".
 *   decay      "exp:H" (half-life H days) | "linear:N" | "none".
 *   top=K      1..10000: each categorical dimension lists only its K
 *              largest values (see "Top-K" below).
 *   recent=N   0..the schema's recent max: "recent" (and each day's with
 *              breakdown=day) lists at most N items, the first N of what
 *              it lists without the parameter; 0 leaves the key out.
 *              Refused when the schema keeps no recent items.
 *   at         YYYY-MM-DD, not after today: the query's "today" (point in
 *              time). Every "today" above and in the decay ages is this
 *              day; the answer names it ("at") and says when it is older
 *              than today - retention_days + 1 ("at_before_retention":
 *              older days may be gone). Stored days are complete per day,
 *              so the answer is the profile as of the end of that day
 *              (late events count in their event's day).
 * Names and values are percent-decoded ("%XX", '+' = space). Unknown or
 * repeated parameters, from > to and explicit ranges wider than 3650 days
 * are PD_EINVAL with a message fit for the JSON "detail".
 *
 * Aggregation (pd_query_render): every in-range day d gets a weight w(d)
 * from its age a = max(0, today - d): none 1, exp 2^(-a/H), linear
 * max(0, 1 - a/N). Counts (events, event types, categorical counts and
 * totals, numeric counts, histogram buckets) and numeric sums/sums of
 * squares are summed weighted; mean = S/W and stddev = sqrt(SS/W - mean^2)
 * (population) from the weighted sums. min/max are unweighted over days
 * with weight > 0; first_seen/last_seen are unweighted over every in-range
 * day. Categorical values sum by value across days; each overflowed day's
 * `other` (catset.h) sums into "__other__" (a value kept on one day and
 * folded into `other` on another simply stays split). A categorical
 * total is the weighted sum of the days' exact totals, so it counts every
 * value, kept or not; "approximate" is true when a day with weight > 0
 * overflowed its cap (its counts are sketch estimates), and
 * "event_types_approximate" likewise for the event types.
 *
 * Top-K: with top=K a categorical dimension has, instead of "counts" and
 * "shares", "top": [{"value","count","share"}...] -- its K values with the
 * largest counts, largest first, ties by value bytes, counts compared as
 * printed (rounded to 6 decimals under decay) -- while "total" and the
 * shares still refer to all values. "__other__" is not a value and is not
 * listed.
 *
 * Types and weights (types=, weights=; per-type tracks, profile.h): every
 * event counts with the weight of its type -- types=a,b: 1 (or its
 * weights= entry) for the named tracked types, 0 for every other;
 * weights=t:w,*:w: a tracked type its own, every other type '*' (default
 * 1; an untracked type may be named only with the weight of '*'). With
 * w_rest the weight of untracked types (0 under types=) and w_t of tracked
 * type t, each sum is w_rest * all-types + sum (w_t - w_rest) * sub(t):
 * each source gets a coefficient (qry_ctx c_all, c_sub) times the day's
 * weight. Sums that cancel to below QRY_CANCEL_EPS of their magnitude are
 * 0; a sum below 0 (only with sketch estimates) is 0 and approximate.
 * min/max and first/last_seen are over the sources of weight > 0 (the
 * all-types profile when w_rest > 0; "minmax_approximate" when a tracked
 * type weighted 0 had values then). Counts print as under decay (6
 * decimals) with weights=. Without types=/weights= every coefficient is
 * the plain one and the answer is what it was before tracks existed.
 *
 * Recent items (the schema's "recent", on by default): "recent" lists, of
 * the recent_max first items of the in-range days by pd_recent_cmp (newest
 * first), those of the types that count, whatever the decay; with
 * breakdown=day each day lists its own the same way.
 *
 * Numbers: every number is printed by the one rule of pd_fmt_double
 * (util.h; docs/api.md "Numbers"): integers below 2^53 as integers, else
 * the shortest of %.15g / %.17g that reads back exactly; NaN/Inf as null.
 * Derived values are rounded first: with decay, weighted counts to 6
 * decimal places (12.353553, never 12.353553390593273; without decay every
 * weight is exactly 1 and counts stay exact integers); shares =
 * count/total to 4, ties to even (0.4167, 0.5, 1).
 * Keys of event_types and counts are sorted by value bytes (memcmp, shorter
 * first); "__other__" comes last when non-zero.
 */
#include "query.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QRY_MAX_RANGE 3650  /* widest accepted range, days */
#define QRY_MAX_SHOWN 64    /* bytes of a user-supplied token quoted in an error */

/* ------------------------------------------------------------------ */
/* parameter parsing                                                    */
/* ------------------------------------------------------------------ */

/* Percent-decodes s[0..n) ('+' = space, "%00" refused) into a fresh
 * NUL-terminated string (*out, caller frees; set even on failure so
 * `goto out` frees uniformly). *outlen gets the decoded length. PD_EINVAL
 * on a malformed escape or an embedded NUL. */
static int qry_decode(const char *s, size_t n, char **out, size_t *outlen)
{
    char *d = pd_malloc(n + 1);
    *out = d;
    d[0] = '\0';
    int rc = pd_pct_decode(s, n, PD_PCT_FORM | PD_PCT_NO_NUL, d, n, outlen);
    if (rc == PD_OK) d[*outlen] = '\0';
    return rc;
}

/* A printable, bounded copy of a user-supplied token for error messages
 * (non-printable / non-ASCII bytes become '?'), so the message is always
 * valid UTF-8 and short. out must hold QRY_MAX_SHOWN + 4 bytes. */
static void qry_shown(const char *s, size_t n, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < QRY_MAX_SHOWN; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    if (n > QRY_MAX_SHOWN) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* Strict positive decimal number: digits, at most one '.', optional
 * exponent; finite and > 0. */
static int qry_parse_pos(const char *s, double *out)
{
    if (!*s) return PD_EINVAL;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.' && *p != 'e' && *p != 'E' && *p != '-' &&
            *p != '+')
            return PD_EINVAL;
    if (!isdigit((unsigned char)s[0]) && s[0] != '.') return PD_EINVAL;
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || *end != '\0' || !isfinite(v) || !(v > 0)) return PD_EINVAL;
    *out = v;
    return PD_OK;
}

enum { P_FROM, P_TO, P_DAYS, P_DIMS, P_BREAKDOWN, P_DECAY, P_TOP, P_AT, P_TYPES, P_WEIGHTS, P_RECENT, P__COUNT };
static const char *const qry_param_names[P__COUNT] = {
    "from", "to", "days", "dims", "breakdown", "decay", "top", "at", "types", "weights", "recent",
};

/* A strict decimal integer in [lo, hi]: digits only, no sign, no leading
 * zero, at most 9 digits. */
static int qry_parse_int(const char *v, size_t n, int64_t lo, int64_t hi, int64_t *out)
{
    if (n == 0 || n > 9 || (v[0] == '0' && n > 1)) return PD_EINVAL;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i])) return PD_EINVAL;
        x = x * 10 + (v[i] - '0');
    }
    if (x < lo || x > hi) return PD_EINVAL;
    *out = x;
    return PD_OK;
}

static int qry_parse_dims(pd_query *q, const char *v, const pd_schema *s, char *err, size_t errlen)
{
    char shown[QRY_MAX_SHOWN + 4];
    if (!*v) return pd_seterr(err, errlen, PD_EINVAL, "parameter 'dims': empty list");
    const char *p = v;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n == 0)
            return pd_seterr(err, errlen, PD_EINVAL, "parameter 'dims': empty dimension name");
        int idx = pd_schema_find(s, p, n);
        if (idx < 0) {
            qry_shown(p, n, shown);
            return pd_seterr(err, errlen, PD_EINVAL, "unknown dimension '%s'", shown);
        }
        int dup = 0;
        for (int i = 0; i < q->ndims; i++)
            if (q->dims[i] == idx) dup = 1;
        if (!dup) {
            pd_assert(q->ndims < PD_MAX_DIMS);
            q->dims[q->ndims++] = idx;
        }
        if (!c) break;
        p = c + 1;
    }
    return PD_OK;
}

/* "park, contact" for error messages. */
static void qry_tracked_list(const pd_schema *s, char *out, size_t n)
{
    size_t k = 0;
    out[0] = '\0';
    for (int t = 0; t < s->ntracked && k < n; t++)
        k += (size_t)snprintf(out + k, n - k, "%s%s", t ? ", " : "", s->tracked[t]);
}

/* types=park,contact: each a tracked type (duplicates ignored). sel[t]
 * set for the named ones. */
static int qry_parse_types(const char *v, const pd_schema *s, int *sel, char *err, size_t errlen)
{
    char shown[QRY_MAX_SHOWN + 4], list[PD_MAX_TRACKED * (PD_MAX_TRACKED_NAME + 2) + 1];
    if (!s->ntracked)
        return pd_seterr(err, errlen, PD_EINVAL,
                         "parameter 'types': the schema tracks no event types (schema key \"tracked_types\")");
    if (!*v) return pd_seterr(err, errlen, PD_EINVAL, "parameter 'types': empty list");
    for (const char *p = v;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n == 0) return pd_seterr(err, errlen, PD_EINVAL, "parameter 'types': empty type name");
        int t = pd_schema_tracked(s, p, n);
        if (t < 0) {
            qry_shown(p, n, shown);
            qry_tracked_list(s, list, sizeof list);
            return pd_seterr(err, errlen, PD_EINVAL,
                             "parameter 'types': '%s' is not a tracked event type (tracked: %s)", shown, list);
        }
        sel[t] = 1;
        if (!c) break;
        p = c + 1;
    }
    return PD_OK;
}

/* A weight: a plain decimal number >= 0 (digits, at most one '.', an
 * optional exponent), finite, at most 1e9. */
static int qry_parse_weight(const char *s, size_t n, double *out)
{
    char buf[40];
    if (n == 0 || n >= sizeof buf) return PD_EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (!isdigit((unsigned char)buf[0]) && buf[0] != '.') return PD_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)buf[i]) && buf[i] != '.' && buf[i] != 'e' && buf[i] != 'E' &&
            !((buf[i] == '-' || buf[i] == '+') && i > 0 && (buf[i - 1] == 'e' || buf[i - 1] == 'E')))
            return PD_EINVAL;
    char *end = NULL;
    double v = strtod(buf, &end);
    if (!end || *end != '\0' || !isfinite(v) || v < 0 || v > 1e9) return PD_EINVAL;
    *out = v;
    return PD_OK;
}

/* weights=view:1,park:3,*:0.5: type:weight pairs; '*' is every type not
 * named. A tracked type gets its own weight; an untracked type can only
 * be given the weight of '*' (its events are not counted apart), checked
 * once the whole list is read. */
static int qry_parse_weights(pd_query *q, const char *v, const pd_schema *s, int *named,
                             char *err, size_t errlen)
{
    char shown[QRY_MAX_SHOWN + 4], list[PD_MAX_TRACKED * (PD_MAX_TRACKED_NAME + 2) + 1];
    double star = 1, untracked_w = 0;
    int have_star = 0, n_untracked = 0;
    const char *untracked = NULL;
    size_t untracked_n = 0;
    if (!*v) return pd_seterr(err, errlen, PD_EINVAL, "parameter 'weights': empty list");
    for (const char *p = v;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        if (!colon || colon == p) {
            qry_shown(p, n, shown);
            return pd_seterr(err, errlen, PD_EINVAL, "parameter 'weights': expected type:weight, got '%s'", shown);
        }
        size_t tn = (size_t)(colon - p);
        double w;
        if (qry_parse_weight(colon + 1, n - tn - 1, &w)) {
            qry_shown(p, n, shown);
            return pd_seterr(err, errlen, PD_EINVAL,
                             "parameter 'weights': '%s': a weight is a number from 0 to 1e9", shown);
        }
        int t = pd_schema_tracked(s, p, tn);
        int dup = 0;
        if (tn == 1 && p[0] == '*') {
            dup = have_star;
            have_star = 1;
            star = w;
        } else if (t >= 0) {
            dup = named[t];
            named[t] = 1;
            q->w_tracked[t] = w;
        } else { /* must equal the weight of '*', known at the end */
            if (!n_untracked++ || w != untracked_w) {
                untracked_w = n_untracked == 1 ? w : -1; /* -1: two different weights */
                if (!untracked) {
                    untracked = p;
                    untracked_n = tn;
                }
            }
        }
        if (dup) {
            qry_shown(p, tn, shown);
            return pd_seterr(err, errlen, PD_EINVAL, "parameter 'weights': '%s' given more than once", shown);
        }
        if (!c) break;
        p = c + 1;
    }
    if (n_untracked && untracked_w != star) {
        qry_shown(untracked, untracked_n, shown);
        qry_tracked_list(s, list, sizeof list);
        return pd_seterr(err, errlen, PD_EINVAL,
                         "parameter 'weights': '%s' is not a tracked event type (tracked: %s), so it counts with "
                         "the weight of '*' and cannot have its own; add it to the schema's \"tracked_types\"",
                         shown, s->ntracked ? list : "none");
    }
    q->w_rest = star;
    for (int t = 0; t < s->ntracked; t++)
        if (!named[t]) q->w_tracked[t] = star;
    return PD_OK;
}

static int qry_parse_decay(pd_query *q, const char *v, char *err, size_t errlen)
{
    if (strcmp(v, "none") == 0) {
        q->decay = PD_DECAY_NONE;
        q->decay_param = 0;
        return PD_OK;
    }
    if (strncmp(v, "exp:", 4) == 0) {
        if (qry_parse_pos(v + 4, &q->decay_param))
            return pd_seterr(err, errlen, PD_EINVAL,
                             "parameter 'decay': exp:H needs a half-life H > 0 (days)");
        q->decay = PD_DECAY_EXP;
        return PD_OK;
    }
    if (strncmp(v, "linear:", 7) == 0) {
        if (qry_parse_pos(v + 7, &q->decay_param))
            return pd_seterr(err, errlen, PD_EINVAL,
                             "parameter 'decay': linear:N needs a window N > 0 (days)");
        q->decay = PD_DECAY_LINEAR;
        return PD_OK;
    }
    return pd_seterr(err, errlen, PD_EINVAL,
                     "parameter 'decay': expected exp:H, linear:N or none");
}

int pd_query_parse_params(pd_query *q, const char *qs, const pd_schema *s, int64_t today,
                          int64_t retention_days, char *err, size_t errlen)
{
    int rc = PD_OK;
    int seen[P__COUNT] = {0};
    int sel[PD_MAX_TRACKED] = {0}, named[PD_MAX_TRACKED] = {0};
    int64_t from = 0, to = 0, days = 0;
    char *name = NULL, *val = NULL;
    char shown[QRY_MAX_SHOWN + 4];

    pd_assert(q && s);
    memset(q, 0, sizeof *q);
    q->recent = -1;
    if (retention_days < 1) retention_days = 1;

    const char *p = qs ? qs : "";
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t seglen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', seglen);
        size_t nlen = eq ? (size_t)(eq - p) : seglen;
        size_t dn, dv;
        pd_free(name);
        pd_free(val);
        name = val = NULL;
        if (seglen == 0) goto next; /* "a=1&&b=2", trailing '&' */
        if (qry_decode(p, nlen, &name, &dn)) {
            qry_shown(p, nlen, shown);
            rc = pd_seterr(err, errlen, PD_EINVAL, "bad percent-encoding in parameter name '%s'",
                           shown);
            goto out;
        }
        int k;
        for (k = 0; k < P__COUNT; k++)
            if (strcmp(name, qry_param_names[k]) == 0) break;
        if (k == P__COUNT || strlen(name) != dn) {
            qry_shown(name, dn, shown);
            rc = pd_seterr(err, errlen, PD_EINVAL, "unknown parameter '%s'", shown);
            goto out;
        }
        if (seen[k]) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "parameter '%s' given more than once",
                           qry_param_names[k]);
            goto out;
        }
        seen[k] = 1;
        if (eq) {
            if (qry_decode(eq + 1, seglen - nlen - 1, &val, &dv)) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter '%s': bad percent-encoding",
                               qry_param_names[k]);
                goto out;
            }
        } else {
            val = pd_strdup("");
            dv = 0;
        }
        switch (k) {
        case P_FROM:
        case P_TO:
            if (pd_day_parse(val, dv, k == P_FROM ? &from : &to)) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter '%s': expected a date YYYY-MM-DD",
                               qry_param_names[k]);
                goto out;
            }
            break;
        case P_DAYS: {
            int ok = dv > 0 && dv <= 5;
            days = 0;
            for (size_t i = 0; ok && i < dv; i++) {
                if (!isdigit((unsigned char)val[i])) ok = 0;
                else days = days * 10 + (val[i] - '0');
            }
            if (!ok || days < 1 || days > QRY_MAX_RANGE) {
                rc = pd_seterr(err, errlen, PD_EINVAL,
                               "parameter 'days': expected an integer from 1 to %d", QRY_MAX_RANGE);
                goto out;
            }
            break;
        }
        case P_DIMS:
            rc = qry_parse_dims(q, val, s, err, errlen);
            if (rc) goto out;
            break;
        case P_BREAKDOWN:
            if (strcmp(val, "day") == 0) q->breakdown_day = 1;
            else if (strcmp(val, "none") == 0) q->breakdown_day = 0;
            else {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'breakdown': expected day or none");
                goto out;
            }
            break;
        case P_DECAY:
            rc = qry_parse_decay(q, val, err, errlen);
            if (rc) goto out;
            break;
        case P_TOP: {
            int64_t kv;
            if (qry_parse_int(val, dv, 1, PD_QUERY_MAX_TOP, &kv)) {
                qry_shown(val, dv, shown);
                rc = pd_seterr(err, errlen, PD_EINVAL,
                               "parameter 'top': expected an integer from 1 to %d, got '%s'",
                               PD_QUERY_MAX_TOP, shown);
                goto out;
            }
            q->top = (int)kv;
            break;
        }
        case P_RECENT: {
            int64_t kv;
            if (s->recent_max == 0) {
                rc = pd_seterr(err, errlen, PD_EINVAL,
                               "parameter 'recent': this schema keeps no recent items (its \"recent\" max is 0)");
                goto out;
            }
            if (qry_parse_int(val, dv, 0, s->recent_max, &kv)) {
                qry_shown(val, dv, shown);
                rc = pd_seterr(err, errlen, PD_EINVAL,
                               "parameter 'recent': expected an integer from 0 to %d (the schema's recent max), "
                               "got '%s'",
                               s->recent_max, shown);
                goto out;
            }
            q->recent = (int)kv;
            break;
        }
        case P_AT: {
            int64_t at;
            if (pd_day_parse(val, dv, &at)) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'at': expected a date YYYY-MM-DD");
                goto out;
            }
            if (at > today) {
                char a[16], b[16];
                pd_day_format(at, a);
                pd_day_format(today, b);
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'at': %s is after today (%s)", a, b);
                goto out;
            }
            q->has_at = 1;
            q->anchor_day = at;
            break;
        }
        case P_TYPES:
            rc = qry_parse_types(val, s, sel, err, errlen);
            if (rc) goto out;
            q->has_types = 1;
            break;
        case P_WEIGHTS:
            rc = qry_parse_weights(q, val, s, named, err, errlen);
            if (rc) goto out;
            q->has_weights = 1;
            break;
        default:
            pd_assert(0);
        }
    next:
        if (!amp) break;
        p = amp + 1;
    }

    if (!q->has_weights) {
        q->w_rest = 1;
        for (int t = 0; t < s->ntracked; t++) q->w_tracked[t] = 1;
    }
    if (q->has_types) { /* only the named types count */
        q->w_rest = 0;
        for (int t = 0; t < s->ntracked; t++) {
            if (sel[t]) q->types_mask |= 1u << t;
            else q->w_tracked[t] = 0;
        }
    }
    if (q->has_at) {
        q->at_before_retention = q->anchor_day < today - retention_days + 1;
        today = q->anchor_day; /* everything below counts back from it */
    } else {
        q->anchor_day = today;
    }
    if (seen[P_DAYS] && (seen[P_FROM] || seen[P_TO])) {
        rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'days' cannot be combined with from/to");
        goto out;
    }
    if (seen[P_DAYS]) {
        from = today - days + 1;
        to = today;
    } else if (seen[P_FROM] && seen[P_TO]) {
        /* both given: checked below */
    } else if (seen[P_FROM]) {
        to = today;
    } else if (seen[P_TO]) {
        from = to - retention_days + 1;
    } else {
        from = today - retention_days + 1;
        to = today;
    }
    if (from > to) {
        char a[16], b[16];
        pd_day_format(from, a);
        pd_day_format(to, b);
        rc = pd_seterr(err, errlen, PD_EINVAL, "empty range: from %s is after to %s", a, b);
        goto out;
    }
    if (seen[P_FROM] && seen[P_TO] && to - from + 1 > QRY_MAX_RANGE) {
        rc = pd_seterr(err, errlen, PD_EINVAL, "range too wide: at most %d days", QRY_MAX_RANGE);
        goto out;
    }
    q->from_day = from;
    q->to_day = to;
out:
    pd_free(name);
    pd_free(val);
    if (rc) memset(q, 0, sizeof *q);
    return rc;
}

/* ------------------------------------------------------------------ */
/* rendering                                                            */
/* ------------------------------------------------------------------ */


/* A JSON string; plain bytes (no quote, backslash or control byte) are
 * copied in one piece, anything else goes through pd_buf_json_str. */
static void put_str(pd_buf *b, const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == '"' || c == '\\') {
            pd_buf_json_str(b, v, n);
            return;
        }
    }
    pd_buf_reserve(b, n + 3);
    b->p[b->len++] = '"';
    memcpy(b->p + b->len, v, n);
    b->len += n;
    b->p[b->len++] = '"';
    b->p[b->len] = '\0';
}

/* The one number format (see the design comment). */
static void put_num(pd_buf *b, double v)
{
    pd_buf_put_double(b, v, 0);
}

typedef struct {
    int weighted; /* decay != none, or weights= given: counts rounded to 6 decimals */
    pd_buf *out;
    /* Per-type tracks: the coefficient of the all-types profile and of
     * each sub-profile ("Types and weights" above); signals = 0 for a
     * query without types=/weights=, which reads the all-types profile
     * alone (c_all 1, every c_sub 0). */
    int signals;
    const pd_schema *s;
    double c_all, c_sub[PD_MAX_TRACKED];
    int mm_all, mm_sub[PD_MAX_TRACKED]; /* sources whose min/max count: weight > 0 */
} qry_ctx;

/* A sum of terms of both signs is 0 when it is below this fraction of the
 * sum of their magnitudes (floating-point residue of a cancellation). */
#define QRY_CANCEL_EPS 1e-9

/* A (weighted) count: rounded to 6 decimals when weighted. */
static void put_count(const qry_ctx *c, double v)
{
    if (c->weighted && isfinite(v)) pd_buf_put_scaled(c->out, round(v * 1e6), 6);
    else put_num(c->out, v);
}

static double qry_weight(const pd_query *q, int64_t today, int64_t day)
{
    double age = (double)(today - day);
    if (age < 0) age = 0;
    switch (q->decay) {
    case PD_DECAY_EXP:
        return exp2(-age / q->decay_param);
    case PD_DECAY_LINEAR: {
        double w = 1.0 - age / q->decay_param;
        return w > 0 ? w : 0;
    }
    default:
        return 1.0;
    }
}

double pd_query_day_weight(const pd_query *q, int64_t today, int64_t day)
{
    return qry_weight(q, today, day);
}

/* One merged categorical entry: value bytes are borrowed from a profile. */
typedef struct {
    const char *v;
    uint32_t len;
    uint64_t key;   /* the first 8 bytes, big-endian, zero-padded */
    double w;
    double mag;     /* sum of |terms| of w (cancellations: QRY_CANCEL_EPS) */
    size_t txt;     /* put_counts: where it wrote the JSON string of v */
    size_t txtlen;  /* and its length, with the ':' after it */
} qry_ent;

/* Value bytes order (memcmp, then shorter first), comparing the
 * zero-padded 8-byte prefixes as integers first. Padding ties only with
 * zero bytes, and two values with equal prefixes of which one is at most
 * 8 bytes long agree on all of its bytes with the longer one's rest being
 * zeros: shorter first, as memcmp-then-length says. Only equal prefixes
 * of two longer values need their bytes compared. */
static uint64_t qry_ent_key(const char *v, uint32_t len)
{
    uint8_t pad[8] = {0};
    memcpy(pad, v, len < sizeof pad ? len : sizeof pad);
    return pd_get_u64be(pad);
}

static inline int qry_ent_cmp(const qry_ent *a, const qry_ent *b)
{
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    if (a->len <= 8 || b->len <= 8) return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
    uint32_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->v + 8, b->v + 8, m - 8);
    if (c) return c;
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

/* The C library's qsort: the inlined quicksort that stood here saved ~0.2
 * us an answer in-process, below the noise of a query's ~40 us of worker
 * CPU, so the "measured, or gone" rule retired it (issue 18). */
static int qry_ent_qsort_cmp(const void *a, const void *b)
{
    return qry_ent_cmp(a, b);
}

/* Merged catset over several days. ents is `small` or owned (entries
 * borrow strings). */
#define QRY_SMALL_ENTS 64
typedef struct {
    qry_ent *ents;
    size_t n;
    double other, total;
    double other_mag, total_mag; /* sums of |terms| */
    int approx;     /* a day with weight > 0 overflowed its cap (or a sum fell below 0) */
    qry_ent small[QRY_SMALL_ENTS];
} qry_cat;

static int is_other(const char *v, uint32_t len)
{
    return len == sizeof PD_OTHER - 1 && memcmp(v, PD_OTHER, len) == 0;
}

/* Adds catset c's values, other and total, each count times x. */
static void qry_cat_add(qry_cat *r, const pd_catset *c, double x0)
{
    for (uint32_t i = 0; i < c->n; i++) {
        double x = x0 * (double)pd_catset_count(c, i);
        if (is_other(pd_catval_str(&c->vals[i]), c->vals[i].len)) { /* a literal "__other__" value */
            r->other += x;
            continue;
        }
        const char *v = pd_catval_str(&c->vals[i]);
        r->ents[r->n++] = (qry_ent){v, c->vals[i].len, qry_ent_key(v, c->vals[i].len), x, fabs(x), 0, 0};
    }
    r->other += x0 * (double)pd_catset_other(c);
    r->other_mag += fabs(x0) * (double)pd_catset_other(c);
    r->total += x0 * (double)pd_catset_total(c);
    r->total_mag += fabs(x0) * (double)pd_catset_total(c);
    r->approx |= pd_catset_overflowed(c);
}

/* A cancelled sum: 0. A negative one (only reachable through sketch
 * estimates of an overflowed catset) is also 0, and makes the answer
 * approximate. */
static double qry_cancel(double v, double mag, int *approx)
{
    if (v >= QRY_CANCEL_EPS * mag) return v;
    if (v < -QRY_CANCEL_EPS * mag) *approx = 1;
    return 0;
}

double pd_query_cancel(double v, double mag, int *approx)
{
    return qry_cancel(v, mag, approx);
}

int pd_query_type_coefs(const pd_query *q, const pd_schema *s, double *c_all, double *c_sub)
{
    int signals = q->has_types || q->has_weights;
    /* weighted = w_rest * (all - sum of tracked) + sum w_t * tracked(t) */
    *c_all = signals ? q->w_rest : 1;
    for (int t = 0; t < s->ntracked; t++) c_sub[t] = signals ? q->w_tracked[t] - q->w_rest : 0;
    return signals;
}

/* Merges the catsets of days[0..ndays) weighted by w[d] (days with
 * weight 0 are skipped) and, per type track, by the sources' coefficients
 * (c->c_all, c->c_sub). dim < 0: event types (a sub-profile counts its
 * events as its type), else dimension index. */
static void qry_cat_merge(const qry_ctx *cx, qry_cat *r, const pd_query_day *days, const double *w,
                          int ndays, int dim)
{
    const pd_schema *s = cx->s;
    size_t cap = 0;
    r->n = 0;
    r->other = r->total = r->other_mag = r->total_mag = 0;
    r->approx = 0;
    for (int d = 0; d < ndays; d++) {
        if (!(w[d] > 0)) continue;
        const pd_profile *p = days[d].prof;
        if (cx->c_all != 0) cap += dim < 0 ? p->types.n : p->dims[dim].cat.n;
        if (cx->signals)
            for (int t = 0; t < s->ntracked; t++) {
                const pd_profile *q = pd_profile_sub(p, t);
                if (cx->c_sub[t] != 0 && q) cap += dim < 0 ? 1 : q->dims[dim].cat.n;
            }
    }
    r->ents = cap <= QRY_SMALL_ENTS ? r->small : pd_malloc(cap * sizeof *r->ents);
    for (int d = 0; d < ndays; d++) {
        if (!(w[d] > 0)) continue;
        const pd_profile *p = days[d].prof;
        if (cx->c_all != 0) qry_cat_add(r, dim < 0 ? &p->types : &p->dims[dim].cat, w[d] * cx->c_all);
        if (!cx->signals) continue;
        for (int t = 0; t < s->ntracked; t++) {
            const pd_profile *q = pd_profile_sub(p, t);
            if (cx->c_sub[t] == 0 || !q) continue;
            double x0 = w[d] * cx->c_sub[t];
            if (dim >= 0) {
                qry_cat_add(r, &q->dims[dim].cat, x0);
            } else {
                double x = x0 * (double)q->events;
                const char *v = s->tracked[t];
                r->ents[r->n++] = (qry_ent){v, s->tracked_len[t], qry_ent_key(v, s->tracked_len[t]), x, fabs(x), 0, 0};
                r->total += x;
                r->total_mag += fabs(x);
            }
        }
    }
    if (r->n > 1) qsort(r->ents, r->n, sizeof *r->ents, qry_ent_qsort_cmp);
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (k && qry_ent_cmp(&r->ents[k - 1], &r->ents[i]) == 0) {
            r->ents[k - 1].w += r->ents[i].w;
            r->ents[k - 1].mag += r->ents[i].mag;
        } else {
            r->ents[k++] = r->ents[i];
        }
    }
    r->n = k;
    if (cx->signals) {
        for (size_t i = 0; i < r->n; i++) r->ents[i].w = qry_cancel(r->ents[i].w, r->ents[i].mag, &r->approx);
        r->other = qry_cancel(r->other, r->other_mag, &r->approx);
        r->total = qry_cancel(r->total, r->total_mag, &r->approx);
    }
}

static void qry_cat_free(qry_cat *r)
{
    if (r->ents != r->small) pd_free(r->ents);
    r->ents = NULL;
    r->n = 0;
}

/* {"value":count,...,"__other__":other}; zero entries omitted. Records
 * where each value's JSON string went (qry_ent.txt) for put_shares. */
static void put_counts(const qry_ctx *c, qry_cat *r)
{
    int first = 1;
    pd_buf_putc(c->out, '{');
    for (size_t i = 0; i < r->n; i++) {
        if (!(r->ents[i].w > 0)) continue;
        if (!first) pd_buf_putc(c->out, ',');
        first = 0;
        r->ents[i].txt = c->out->len;
        put_str(c->out, r->ents[i].v, r->ents[i].len);
        pd_buf_putc(c->out, ':');
        r->ents[i].txtlen = c->out->len - r->ents[i].txt;
        put_count(c, r->ents[i].w);
    }
    if (r->other > 0) {
        if (!first) pd_buf_putc(c->out, ',');
        PD_BUF_LIT(c->out, "\"" PD_OTHER "\":");
        put_count(c, r->other);
    }
    pd_buf_putc(c->out, '}');
}

/* x / total rounded to 4 decimals, ties to even as printf's "%.4f" rounds
 * (a NaN or infinite ratio counts as 0), printed by the one rule. */
static void put_share(const qry_ctx *c, double x, double total)
{
    double s = x / total;
    if (!isfinite(s)) s = 0;
    pd_buf_put_scaled(c->out, rint(s * 1e4), 4);
}

/* After put_counts of r into the same buffer. */
static void put_shares(const qry_ctx *c, const qry_cat *r)
{
    int first = 1;
    pd_buf_putc(c->out, '{');
    if (r->total > 0) {
        for (size_t i = 0; i < r->n; i++) {
            if (!(r->ents[i].w > 0)) continue;
            if (!first) pd_buf_putc(c->out, ',');
            first = 0;
            /* the value's JSON string and ':' as put_counts wrote them */
            size_t tl = r->ents[i].txtlen;
            pd_assert(tl > 0 && r->ents[i].txt + tl <= c->out->len);
            pd_buf_reserve(c->out, tl + 1);
            memcpy(c->out->p + c->out->len, c->out->p + r->ents[i].txt, tl);
            c->out->len += tl;
            c->out->p[c->out->len] = '\0';
            put_share(c, r->ents[i].w, r->total);
        }
        if (r->other > 0) {
            if (!first) pd_buf_putc(c->out, ',');
            PD_BUF_LIT(c->out, "\"" PD_OTHER "\":");
            put_share(c, r->other, r->total);
        }
    }
    pd_buf_putc(c->out, '}');
}

/* Top-K order: the count as printed (weighted counts rounded to 6
 * decimals), larger first; then value bytes. */
typedef struct {
    const qry_ent *e;
    double key;
} qry_topent;

static int qry_top_cmp(const void *x, const void *y)
{
    const qry_topent *a = x, *b = y;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return qry_ent_cmp(a->e, b->e);
}

/* "top":[{"value":v,"count":c,"share":s},...]: r's K largest values. */
static void put_top(const qry_ctx *c, const qry_cat *r, int k)
{
    qry_topent *t = r->n ? pd_malloc(r->n * sizeof *t) : NULL;
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (!(r->ents[i].w > 0)) continue;
        double v = r->ents[i].w;
        t[n++] = (qry_topent){&r->ents[i], c->weighted && isfinite(v) ? round(v * 1e6) : v};
    }
    if (n > 1) qsort(t, n, sizeof *t, qry_top_cmp);
    if (n > (size_t)k) n = (size_t)k;
    PD_BUF_LIT(c->out, "\"top\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) pd_buf_putc(c->out, ',');
        PD_BUF_LIT(c->out, "{\"value\":");
        put_str(c->out, t[i].e->v, t[i].e->len);
        PD_BUF_LIT(c->out, ",\"count\":");
        put_count(c, t[i].e->w);
        PD_BUF_LIT(c->out, ",\"share\":");
        if (r->total > 0) put_share(c, t[i].e->w, r->total);
        else pd_buf_putc(c->out, '0');
        pd_buf_putc(c->out, '}');
    }
    pd_buf_putc(c->out, ']');
    pd_free(t);
}

/* Weighted numeric aggregate over several days. */
typedef struct {
    double count, sum, sumsq, min, max;
    int have_minmax;
    int approx;      /* min/max include events of a type weighted 0 */
    double count_mag, hist_mag[PD_MAX_BOUNDS + 1];
    double hist[PD_MAX_BOUNDS + 1]; /* [0..nbounds] */
} qry_num;

static void qry_num_add(qry_num *r, const pd_dim *dim, const pd_numagg *a, double x, int minmax)
{
    if (a->count == 0) return;
    r->count += x * (double)a->count;
    r->count_mag += fabs(x) * (double)a->count;
    r->sum += x * a->sum;
    r->sumsq += x * a->sumsq;
    if (minmax) {
        if (!r->have_minmax || a->min < r->min) r->min = a->min;
        if (!r->have_minmax || a->max > r->max) r->max = a->max;
        r->have_minmax = 1;
    }
    if (a->hist)
        for (int k = 0; k <= dim->nbounds; k++) {
            r->hist[k] += x * (double)a->hist[k];
            r->hist_mag[k] += fabs(x) * (double)a->hist[k];
        }
}

static void qry_num_merge(const qry_ctx *cx, qry_num *r, const pd_dim *dim, const pd_query_day *days,
                          const double *w, int ndays, int di)
{
    const pd_schema *s = cx->s;
    pd_assert(dim->nbounds >= 0 && dim->nbounds <= PD_MAX_BOUNDS);
    r->count = r->sum = r->sumsq = r->min = r->max = r->count_mag = 0;
    r->have_minmax = r->approx = 0;
    memset(r->hist, 0, (size_t)(dim->nbounds + 1) * sizeof r->hist[0]); /* only these are read */
    memset(r->hist_mag, 0, (size_t)(dim->nbounds + 1) * sizeof r->hist_mag[0]);
    for (int d = 0; d < ndays; d++) {
        if (!(w[d] > 0)) continue;
        const pd_profile *p = days[d].prof;
        if (cx->c_all != 0) qry_num_add(r, dim, &p->dims[di].num, w[d] * cx->c_all, cx->mm_all);
        if (!cx->signals) continue;
        for (int t = 0; t < s->ntracked; t++) {
            const pd_profile *q = pd_profile_sub(p, t);
            if (!q || q->dims[di].num.count == 0) continue;
            if (cx->c_sub[t] != 0) qry_num_add(r, dim, &q->dims[di].num, w[d] * cx->c_sub[t], cx->mm_sub[t]);
            /* the all-types min/max counted a type weighted 0 */
            if (cx->mm_all && !cx->mm_sub[t]) r->approx = 1;
        }
    }
    if (cx->signals) {
        int neg = 0;
        r->count = qry_cancel(r->count, r->count_mag, &neg);
        for (int k = 0; k <= dim->nbounds; k++) r->hist[k] = qry_cancel(r->hist[k], r->hist_mag[k], &neg);
        if (r->count == 0) r->sum = r->sumsq = 0, r->have_minmax = r->approx = 0;
    }
}

static void put_numeric(const qry_ctx *c, const pd_dim *dim, const qry_num *r)
{
    pd_buf *b = c->out;
    PD_BUF_LIT(b, "{\"type\":\"numeric\",\"count\":");
    put_count(c, r->count);
    if (r->count > 0) {
        double mean = r->sum / r->count;
        double var = r->sumsq / r->count - mean * mean;
        PD_BUF_LIT(b, ",\"mean\":");
        put_num(b, mean);
        PD_BUF_LIT(b, ",\"stddev\":");
        put_num(b, isfinite(var) ? sqrt(var > 0 ? var : 0) : var);
    } else {
        PD_BUF_LIT(b, ",\"mean\":null,\"stddev\":null");
    }
    PD_BUF_LIT(b, ",\"min\":");
    if (r->have_minmax) put_num(b, r->min);
    else PD_BUF_LIT(b, "null");
    PD_BUF_LIT(b, ",\"max\":");
    if (r->have_minmax) put_num(b, r->max);
    else PD_BUF_LIT(b, "null");
    if (r->approx) PD_BUF_LIT(b, ",\"minmax_approximate\":true");
    PD_BUF_LIT(b, ",\"histogram\":[");
    for (int k = 0; k <= dim->nbounds; k++) {
        if (k) pd_buf_putc(b, ',');
        PD_BUF_LIT(b, "{\"le\":");
        if (k < dim->nbounds) put_num(b, dim->bounds[k]);
        else PD_BUF_LIT(b, "\"+Inf\"");
        PD_BUF_LIT(b, ",\"count\":");
        put_count(c, r->hist[k]);
        pd_buf_putc(b, '}');
    }
    PD_BUF_LIT(b, "]}");
}

/* "events":N,"event_types":{..} over days[0..ndays) with weights w. */
static void put_events(const qry_ctx *c, const pd_query_day *days, const double *w, int ndays)
{
    double ev = 0, mag = 0;
    for (int d = 0; d < ndays; d++) {
        if (!(w[d] > 0)) continue;
        const pd_profile *p = days[d].prof;
        if (c->c_all != 0) {
            ev += w[d] * c->c_all * (double)p->events;
            mag += w[d] * fabs(c->c_all) * (double)p->events;
        }
        for (int t = 0; c->signals && t < c->s->ntracked; t++) {
            const pd_profile *q = pd_profile_sub(p, t);
            if (!q || c->c_sub[t] == 0) continue;
            ev += w[d] * c->c_sub[t] * (double)q->events;
            mag += w[d] * fabs(c->c_sub[t]) * (double)q->events;
        }
    }
    if (c->signals) {
        int neg = 0;
        ev = qry_cancel(ev, mag, &neg);
    }
    PD_BUF_LIT(c->out, "\"events\":");
    put_count(c, ev);
    PD_BUF_LIT(c->out, ",\"event_types\":");
    qry_cat t;
    qry_cat_merge(c, &t, days, w, ndays, -1);
    put_counts(c, &t);
    pd_buf_printf(c->out, ",\"event_types_approximate\":%s", t.approx ? "true" : "false");
    qry_cat_free(&t);
}

/* "dimensions":{..}: the requested dimensions (always, in request order)
 * or every schema dimension with a non-zero weighted count. */
static void put_dimensions(const qry_ctx *c, const pd_query *q, const pd_schema *s,
                           const pd_query_day *days, const double *w, int ndays)
{
    int n = q->ndims > 0 ? q->ndims : s->ndims;
    int first = 1;
    PD_BUF_LIT(c->out, "\"dimensions\":{");
    for (int j = 0; j < n; j++) {
        int di = q->ndims > 0 ? q->dims[j] : j;
        pd_assert(di >= 0 && di < s->ndims);
        const pd_dim *dim = &s->dims[di];
        if (dim->type == PD_DIM_CATEGORICAL) {
            qry_cat r;
            qry_cat_merge(c, &r, days, w, ndays, di);
            if (q->ndims > 0 || r.total > 0) {
                if (!first) pd_buf_putc(c->out, ',');
                first = 0;
                put_str(c->out, dim->name, strlen(dim->name));
                PD_BUF_LIT(c->out, ":{\"type\":\"categorical\",\"total\":");
                put_count(c, r.total);
                pd_buf_printf(c->out, ",\"approximate\":%s,", r.approx ? "true" : "false");
                if (q->top > 0) {
                    put_top(c, &r, q->top);
                } else {
                    PD_BUF_LIT(c->out, "\"counts\":");
                    put_counts(c, &r);
                    PD_BUF_LIT(c->out, ",\"shares\":");
                    put_shares(c, &r);
                }
                pd_buf_putc(c->out, '}');
            }
            qry_cat_free(&r);
        } else {
            qry_num r;
            qry_num_merge(c, &r, dim, days, w, ndays, di);
            if (q->ndims > 0 || r.count > 0) {
                if (!first) pd_buf_putc(c->out, ',');
                first = 0;
                put_str(c->out, dim->name, strlen(dim->name));
                pd_buf_putc(c->out, ':');
                put_numeric(c, dim, &r);
            }
        }
    }
    pd_buf_putc(c->out, '}');
}

static void put_day(pd_buf *b, int64_t day)
{
    char t[16];
    pd_day_format(day, t);
    put_str(b, t, strlen(t));
}

void pd_query_put_range(pd_buf *out, const pd_query *q)
{
    put_day(out, q->from_day);
    PD_BUF_LIT(out, ",\"to\":");
    put_day(out, q->to_day);
    if (q->has_at) {
        PD_BUF_LIT(out, ",\"at\":");
        put_day(out, q->anchor_day);
        if (q->at_before_retention) PD_BUF_LIT(out, ",\"at_before_retention\":true");
    }
}

void pd_query_put_types(pd_buf *out, const pd_query *q, const pd_schema *s)
{
    if (q->has_types) {
        int n = 0;
        PD_BUF_LIT(out, ",\"types\":[");
        for (int t = 0; t < s->ntracked; t++) {
            if (!(q->types_mask >> t & 1)) continue;
            if (n++) pd_buf_putc(out, ',');
            put_str(out, s->tracked[t], s->tracked_len[t]);
        }
        pd_buf_putc(out, ']');
    }
    if (q->has_weights) {
        PD_BUF_LIT(out, ",\"weights\":{\"*\":");
        put_num(out, q->has_types ? 0 : q->w_rest);
        for (int t = 0; t < s->ntracked; t++) {
            pd_buf_putc(out, ',');
            put_str(out, s->tracked[t], s->tracked_len[t]);
            pd_buf_putc(out, ':');
            put_num(out, q->w_tracked[t]);
        }
        pd_buf_putc(out, '}');
    }
}

static void put_ts(pd_buf *b, int64_t ms)
{
    char t[32];
    pd_ts_format(ms, t);
    put_str(b, t, strlen(t));
}

static int recent_ptr_cmp(const void *x, const void *y)
{
    return pd_recent_cmp(*(const pd_recent *const *)x, *(const pd_recent *const *)y);
}

/* "recent":[..]: of the schema's recent_max first items over the range
 * (every in-range day, whatever its decay weight), those of the types that
 * count (with types=/weights=: weight > 0; a day keeps only its K first of
 * all types, so fewer may be listed). */
static void put_recent(const qry_ctx *c, const pd_query *q, const pd_schema *s, const pd_query_day *days,
                       int ndays)
{
    size_t n = 0, k = 0;
    for (int d = 0; d < ndays; d++) n += days[d].prof->nrecent;
    const pd_recent **all = n ? pd_malloc(n * sizeof *all) : NULL;
    for (int d = 0; d < ndays; d++)
        for (uint32_t i = 0; i < days[d].prof->nrecent; i++) all[k++] = &days[d].prof->recent[i];
    if (n > 1) qsort(all, n, sizeof *all, recent_ptr_cmp);
    PD_BUF_LIT(c->out, ",\"recent\":[");
    const int limit = q->recent >= 0 ? q->recent : s->recent_max; /* recent=N */
    int shown = 0;
    for (size_t i = 0; i < n && i < (size_t)s->recent_max && shown < limit; i++) { /* the K newest, then the types that count */
        pd_recent_view v;
        pd_recent_view_of(s, all[i], &v);
        if (c->signals) {
            int t = pd_schema_tracked(s, v.type, v.type_len);
            if (!((t >= 0 ? q->w_tracked[t] : q->w_rest) > 0)) continue;
        }
        if (shown++) pd_buf_putc(c->out, ',');
        PD_BUF_LIT(c->out, "{\"ts\":");
        put_ts(c->out, all[i]->ts);
        PD_BUF_LIT(c->out, ",\"type\":");
        put_str(c->out, v.type, v.type_len);
        PD_BUF_LIT(c->out, ",\"item_id\":");
        if (v.item_id) put_str(c->out, v.item_id, v.item_id_len);
        else PD_BUF_LIT(c->out, "null");
        PD_BUF_LIT(c->out, ",\"attributes\":{");
        int first = 1;
        for (int j = 0; j < s->recent_nattrs; j++) {
            if (!v.attrs[j].kind) continue;
            if (!first) pd_buf_putc(c->out, ',');
            first = 0;
            const char *nm = s->dims[s->recent_attrs[j]].name;
            put_str(c->out, nm, strlen(nm));
            pd_buf_putc(c->out, ':');
            if (v.attrs[j].kind == 1) put_str(c->out, v.attrs[j].s, v.attrs[j].len);
            else put_num(c->out, v.attrs[j].num);
        }
        PD_BUF_LIT(c->out, "}}");
    }
    pd_buf_putc(c->out, ']');
    pd_free(all);
}

int pd_query_render(const pd_query *q, const pd_schema *s, const char *user_id, size_t ulen,
                    int32_t partition, int64_t today, const pd_query_day *days, int ndays,
                    pd_buf *out)
{
    pd_assert(q && s && out && ndays >= 0 && (days || ndays == 0));
    uint64_t raw = 0;
    int64_t first_ts = 0, last_ts = 0;
    int have_ts = 0;
    for (int d = 0; d < ndays; d++) {
        pd_assert(days[d].prof);
        pd_assert(days[d].day >= q->from_day && days[d].day <= q->to_day);
        pd_assert(d == 0 || days[d].day > days[d - 1].day);
        const pd_profile *p = days[d].prof;
        if (p->events == 0) continue;
        raw += p->events;
        if (!have_ts || p->first_ts < first_ts) first_ts = p->first_ts;
        if (!have_ts || p->last_ts > last_ts) last_ts = p->last_ts;
        have_ts = 1;
    }
    if (raw == 0 && user_id) return PD_ENOTFOUND;

    double w_s[64];
    double *w = ndays <= 64 ? w_s : pd_malloc((size_t)ndays * sizeof *w);
    for (int d = 0; d < ndays; d++) w[d] = qry_weight(q, today, days[d].day);
    qry_ctx c = {.weighted = q->decay != PD_DECAY_NONE || q->has_weights, .out = out, .s = s,
                 .signals = q->has_types || q->has_weights, .c_all = 1, .mm_all = 1};
    if (pd_query_type_coefs(q, s, &c.c_all, c.c_sub)) {
        c.mm_all = q->w_rest > 0;
        have_ts = 0;
        for (int t = 0; t < s->ntracked; t++) c.mm_sub[t] = q->w_tracked[t] > 0;
        for (int d = 0; d < ndays; d++) { /* the time range of the events that count */
            const pd_profile *p = days[d].prof;
            for (int t = -1; t < s->ntracked; t++) {
                const pd_profile *x = t < 0 ? (c.mm_all && p->events ? p : NULL) : (c.mm_sub[t] ? pd_profile_sub(p, t) : NULL);
                if (!x) continue;
                if (!have_ts || x->first_ts < first_ts) first_ts = x->first_ts;
                if (!have_ts || x->last_ts > last_ts) last_ts = x->last_ts;
                have_ts = 1;
            }
        }
    }

    if (user_id) {
        PD_BUF_LIT(out, "{\"user_id\":");
        put_str(out, user_id, ulen);
        PD_BUF_LIT(out, ",\"partition\":");
        pd_buf_put_i64(out, partition);
        PD_BUF_LIT(out, ",\"from\":");
    } else {
        PD_BUF_LIT(out, "{\"from\":"); /* the population (population.h) */
    }
    pd_query_put_range(out, q);
    pd_query_put_types(out, q, s);
    pd_buf_putc(out, ',');
    put_events(&c, days, w, ndays);
    PD_BUF_LIT(out, ",\"first_seen\":");
    if (have_ts) put_ts(out, first_ts);
    else PD_BUF_LIT(out, "null");
    PD_BUF_LIT(out, ",\"last_seen\":");
    if (have_ts) put_ts(out, last_ts);
    else PD_BUF_LIT(out, "null");
    pd_buf_putc(out, ',');
    put_dimensions(&c, q, s, days, w, ndays);
    if (s->recent_max > 0 && q->recent != 0) put_recent(&c, q, s, days, ndays);

    if (q->breakdown_day) {
        int firstday = 1;
        PD_BUF_LIT(out, ",\"days\":[");
        for (int d = 0; d < ndays; d++) {
            if (days[d].prof->events == 0) continue;
            if (!firstday) pd_buf_putc(out, ',');
            firstday = 0;
            PD_BUF_LIT(out, "{\"day\":");
            put_day(out, days[d].day);
            pd_buf_putc(out, ',');
            put_events(&c, &days[d], &w[d], 1);
            pd_buf_putc(out, ',');
            put_dimensions(&c, q, s, &days[d], &w[d], 1);
            if (s->recent_max > 0 && q->recent != 0) put_recent(&c, q, s, &days[d], 1); /* the day's own */
            pd_buf_putc(out, '}');
        }
        pd_buf_putc(out, ']');
    }
    if (w != w_s) pd_free(w);
    return PD_OK;
}

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

enum { P_FROM, P_TO, P_DAYS, P_DIMS, P_BREAKDOWN, P_DECAY, P_TOP, P_AT, P__COUNT };
static const char *const qry_param_names[P__COUNT] = {
    "from", "to", "days", "dims", "breakdown", "decay", "top", "at",
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
    int64_t from = 0, to = 0, days = 0;
    char *name = NULL, *val = NULL;
    char shown[QRY_MAX_SHOWN + 4];

    pd_assert(q && s);
    memset(q, 0, sizeof *q);
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
        default:
            pd_assert(0);
        }
    next:
        if (!amp) break;
        p = amp + 1;
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
    int weighted; /* decay != none */
    pd_buf *out;
} qry_ctx;

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

/* One merged categorical entry: value bytes are borrowed from a profile. */
typedef struct {
    const char *v;
    uint32_t len;
    uint64_t key;   /* the first 8 bytes, big-endian, zero-padded */
    double w;
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
    int approx;     /* a day with weight > 0 overflowed its cap */
    qry_ent small[QRY_SMALL_ENTS];
} qry_cat;

static int is_other(const char *v, uint32_t len)
{
    return len == sizeof PD_OTHER - 1 && memcmp(v, PD_OTHER, len) == 0;
}

/* Merges the catsets sets[i] weighted by w[i] (days with weight 0 are
 * skipped). dim < 0: event types, else dimension index. */
static void qry_cat_merge(qry_cat *r, const pd_query_day *days, const double *w, int ndays,
                          int dim)
{
    size_t cap = 0;
    r->n = 0;
    r->other = r->total = 0;
    r->approx = 0;
    for (int d = 0; d < ndays; d++) {
        if (!(w[d] > 0)) continue;
        const pd_catset *c = dim < 0 ? &days[d].prof->types : &days[d].prof->dims[dim].cat;
        cap += c->n;
    }
    r->ents = cap <= QRY_SMALL_ENTS ? r->small : pd_malloc(cap * sizeof *r->ents);
    for (int d = 0; d < ndays; d++) {
        if (!(w[d] > 0)) continue;
        const pd_catset *c = dim < 0 ? &days[d].prof->types : &days[d].prof->dims[dim].cat;
        for (uint32_t i = 0; i < c->n; i++) {
            double x = w[d] * (double)pd_catset_count(c, i);
            if (is_other(pd_catval_str(&c->vals[i]), c->vals[i].len)) { /* a literal "__other__" value */
                r->other += x;
                continue;
            }
            const char *v = pd_catval_str(&c->vals[i]);
            r->ents[r->n++] = (qry_ent){v, c->vals[i].len, qry_ent_key(v, c->vals[i].len), x, 0, 0};
        }
        r->other += w[d] * (double)pd_catset_other(c);
        r->total += w[d] * (double)pd_catset_total(c);
        r->approx |= pd_catset_overflowed(c);
    }
    if (r->n > 1) qsort(r->ents, r->n, sizeof *r->ents, qry_ent_qsort_cmp);
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (k && qry_ent_cmp(&r->ents[k - 1], &r->ents[i]) == 0) r->ents[k - 1].w += r->ents[i].w;
        else r->ents[k++] = r->ents[i];
    }
    r->n = k;
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
    double hist[PD_MAX_BOUNDS + 1]; /* [0..nbounds] */
} qry_num;

static void qry_num_merge(qry_num *r, const pd_dim *dim, const pd_query_day *days,
                          const double *w, int ndays, int di)
{
    pd_assert(dim->nbounds >= 0 && dim->nbounds <= PD_MAX_BOUNDS);
    r->count = r->sum = r->sumsq = r->min = r->max = 0;
    r->have_minmax = 0;
    memset(r->hist, 0, (size_t)(dim->nbounds + 1) * sizeof r->hist[0]); /* only these are read */
    for (int d = 0; d < ndays; d++) {
        const pd_numagg *a = &days[d].prof->dims[di].num;
        if (!(w[d] > 0) || a->count == 0) continue;
        r->count += w[d] * (double)a->count;
        r->sum += w[d] * a->sum;
        r->sumsq += w[d] * a->sumsq;
        if (!r->have_minmax || a->min < r->min) r->min = a->min;
        if (!r->have_minmax || a->max > r->max) r->max = a->max;
        r->have_minmax = 1;
        if (a->hist)
            for (int k = 0; k <= dim->nbounds; k++) r->hist[k] += w[d] * (double)a->hist[k];
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
    double ev = 0;
    for (int d = 0; d < ndays; d++)
        if (w[d] > 0) ev += w[d] * (double)days[d].prof->events;
    PD_BUF_LIT(c->out, "\"events\":");
    put_count(c, ev);
    PD_BUF_LIT(c->out, ",\"event_types\":");
    qry_cat t;
    qry_cat_merge(&t, days, w, ndays, -1);
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
            qry_cat_merge(&r, days, w, ndays, di);
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
            qry_num_merge(&r, dim, days, w, ndays, di);
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

static void put_ts(pd_buf *b, int64_t ms)
{
    char t[32];
    pd_ts_format(ms, t);
    put_str(b, t, strlen(t));
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
    qry_ctx c = {.weighted = q->decay != PD_DECAY_NONE, .out = out};

    if (user_id) {
        PD_BUF_LIT(out, "{\"user_id\":");
        put_str(out, user_id, ulen);
        PD_BUF_LIT(out, ",\"partition\":");
        pd_buf_put_i64(out, partition);
        PD_BUF_LIT(out, ",\"from\":");
    } else {
        PD_BUF_LIT(out, "{\"from\":"); /* the population (population.h) */
    }
    put_day(out, q->from_day);
    PD_BUF_LIT(out, ",\"to\":");
    put_day(out, q->to_day);
    if (q->has_at) {
        PD_BUF_LIT(out, ",\"at\":");
        put_day(out, q->anchor_day);
        if (q->at_before_retention) PD_BUF_LIT(out, ",\"at_before_retention\":true");
    }
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
            pd_buf_putc(out, '}');
        }
        pd_buf_putc(out, ']');
    }
    if (w != w_s) pd_free(w);
    return PD_OK;
}

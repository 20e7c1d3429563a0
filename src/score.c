/*
 * score.c -- Bayesian affinities and candidate ranking against the
 * population prior (issue 20): request parsing, the per-request model,
 * scores and the JSON answers. Pure code: no I/O, no locks, no globals.
 *
 * The model (docs/scoring.md states it for users of the API; this is the
 * implementation's reading of it). For the range's days t with weights w_t
 * (pd_query_day_weight: the profile query's decay rule) and a scoring
 * dimension d:
 *   categorical  n_u(v) = sum_t w_t count_{u,t,d}(v) over the values each
 *                day kept (catset.h: exact below the cap, sketch estimates
 *                beyond it); N_u = sum_t w_t total_{u,t,d} (the exact total:
 *                "__other__" counts in N_u but belongs to no value; a value
 *                spelled "__other__" is never attributable: n = 0).
 *   numeric      v maps to its histogram bucket (first upper bound >= v,
 *                else +Inf); n_u = the bucket's weighted count, N_u =
 *                sum_t w_t count_{u,t,d}.
 *   population   n_P, N_P: the same sums over the population's days;
 *                K_d = the number of values with n_P(v) > 0, plus 1
 *                (numeric: the number of buckets, +Inf included).
 *   p_P(v) = (n_P(v) + 1) / (N_P + K_d)
 *   p_u(v) = (n_u(v) + alpha p_P(v)) / (N_u + alpha)
 *   c_d    = lambda_d ln(p_u(v) / p_P(v)); score = sum of c_d over the
 *            scoring dimensions the candidate has a valid value for.
 * When N_u = 0 (no weighted data of the user in d) p_u = p_P exactly and
 * c_d = 0 (the formula's value, without the rounding of
 * alpha p_P / alpha), so a user without data scores exactly 0 everywhere
 * and the caller's order stands ("cold_start": no events in the range).
 * With no prior at all (N_P = 0) p_P is uniform over K_d: 1 for a
 * categorical dimension (K_d = 1), 1 / buckets for a numeric one.
 *
 * The user's days are merged per request, once per scoring dimension, into
 * an open-addressing table keyed by the values' XXH3-64 (catsets keep each
 * value's hash) -- borrowed value bytes, no copies -- so a candidate costs
 * one probe per table and dimension however many days the range has. The
 * population's days are merged the same way into a pd_score_pop (every
 * schema dimension), which is immutable and depends only on
 * pd_score_pop_key's bytes (days, day weights, type coefficients), so the
 * caller caches one per prior and key (http_score.c): in-process with a
 * 30-day population of 6,000 events a day, the model cost 187 us per
 * request merging it and 49 us with the merged sums shared (the user's
 * half only; docs/BENCHMARKS.md, "Issue 20"). A model is immutable once
 * built. pd_score_items computes each distinct (dimension, value) of the
 * candidates once (candidates repeat makes, colours, buckets), found in a
 * small table of the request's own values before any probe into the
 * user's or the population's tables: in-process on the bench's
 * 100-candidate body against that 30-day population, render (score + sort
 * + print) 43-46 us with a memo kept on the tables' entries (probed for
 * every candidate and dimension), 25-26 us with this (docs/BENCHMARKS.md,
 * "Issue 20").
 *
 * Candidates. Attributes are found as in events (event.c): for each
 * dimension the schema's paths are tried in order and the first present,
 * non-null value decides, with the same type rules (categorical: string
 * of 1..PD_MAX_CAT_VALUE bytes of UTF-8, number as "%lld" when integral
 * and below 2^53 else "%.17g", true/false; numeric: finite number); when
 * no path is present the top-level member named like the dimension is
 * tried ("flat" candidates: {"id":"a","make":"bmw"}). A top-level
 * attribute container ("item", "filters") that is neither an object nor
 * null is a 400 naming the item's index, like an event's
 * bad_attr_container.
 *
 * The body's JSON is the event dialect (event.h, docs/data-model.md
 * "Event JSON"): one scanner, event.c's, reads both (pd_json_doc), so a
 * body is refused exactly when an event would be invalid_json or
 * invalid_utf8 (strict RFC 8259, UTF-8 without BOM, at most 64 nested
 * arrays/objects); the first member of a repeated key counts everywhere;
 * \u0000 is a NUL byte kept inside the string (an id echoes it, a value
 * with it is another value than without); a number beyond the double
 * range reads as +-inf, which every field refuses and makes an attribute
 * invalid. The scanner's tape is per thread and reused: parsing allocates
 * the request's few arrays and its one text buffer, nothing per value.
 *
 * Numbers are printed by pd_fmt_double (util.h) unrounded: a score reads
 * back as the double computed here.
 */
#include "score.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "catset.h"
#include "profile.h"

#define SC_MAX_ID 1024      /* bytes of a string id */
#define SC_TWO_POW_53 9007199254740992.0

/* ------------------------------------------------------------------ */
/* request parsing                                                      */
/* ------------------------------------------------------------------ */

/* The body is read with event.c's scanner (pd_json_doc: the event
 * dialect, validated whole, one token per value in the thread's reusable
 * tape; nothing allocated per value). Token indexes are longs here, -1
 * meaning absent. Every string kept from the body (ids, categorical
 * values) is copied into the request's one text buffer r->text: a pointer
 * from pd_json_str lives only until the next one. */

static int is_obj(const pd_json_doc *d, long v) { return v >= 0 && pd_json_kind(d, (uint32_t)v) == PD_JTOK_OBJ; }
static int is_null(const pd_json_doc *d, long v) { return v < 0 || pd_json_kind(d, (uint32_t)v) == PD_JTOK_NULL; }
static int kind_of(const pd_json_doc *d, long v) { return v < 0 ? -1 : pd_json_kind(d, (uint32_t)v); }

/* The value of the first member named k of object o (-1: none). */
static long member(const pd_json_doc *d, long o, const char *k)
{
    return pd_json_get(d, (uint32_t)o, k);
}

/* A categorical value's text by the event rules, appended to text at
 * *off (SIZE_MAX: a static text). Returns the attribute kind. */
static pd_attr_kind cat_text(const pd_json_doc *d, long v, pd_buf *text, pd_attr *a, size_t *off)
{
    *off = SIZE_MAX;
    switch (kind_of(d, v)) {
    case PD_JTOK_STR: {
        size_t n;
        const char *s = pd_json_str(d, (uint32_t)v, &n); /* UTF-8 (event.h) */
        if (n == 0 || n > PD_MAX_CAT_VALUE) return PD_ATTR_BAD;
        *off = text->len;
        pd_buf_append(text, s, n);
        a->s = NULL;
        a->len = (uint32_t)n;
        return PD_ATTR_STR;
    }
    case PD_JTOK_TRUE:
    case PD_JTOK_FALSE: {
        int t = kind_of(d, v) == PD_JTOK_TRUE;
        a->s = t ? "true" : "false";
        a->len = t ? 4 : 5;
        return PD_ATTR_STR;
    }
    case PD_JTOK_NUM: {
        double x = pd_json_num(d, (uint32_t)v);
        char t[40];
        int n;
        if (!isfinite(x)) return PD_ATTR_BAD;
        if (x == floor(x) && fabs(x) < SC_TWO_POW_53) n = (int)pd_fmt_i64(t, (int64_t)x);
        else n = snprintf(t, sizeof t, "%.17g", x);
        pd_assert(n > 0 && (size_t)n < sizeof t);
        *off = text->len;
        pd_buf_append(text, t, (size_t)n);
        a->s = NULL;
        a->len = (uint32_t)n;
        return PD_ATTR_STR;
    }
    default:
        return PD_ATTR_BAD;
    }
}

static void decide(const pd_json_doc *d, long v, const pd_dim *dim, pd_buf *text, pd_attr *a, size_t *off);

/* Resolves schema dimension dim of candidate it into *a (see the design
 * comment). *off: offset of the text in r->text, or SIZE_MAX. */
static void resolve(const pd_json_doc *d, long it, const pd_dim *dim, pd_buf *text, pd_attr *a, size_t *off)
{
    long v = -1;
    int bad = 0;
    *off = SIZE_MAX;
    memset(a, 0, sizeof *a);
    for (int p = 0; p < dim->npaths && v < 0 && !bad; p++) {
        const pd_path *path = &dim->paths[p];
        long cur = it;
        for (int k = 0; k < path->depth; k++) {
            if (!is_obj(d, cur)) {
                bad = k > 1; /* top-level containers are checked per item */
                cur = -1;
                break;
            }
            cur = member(d, cur, path->seg[k]);
            if (is_null(d, cur)) {
                cur = -1;
                break;
            }
        }
        v = cur;
    }
    if (bad) {
        a->kind = PD_ATTR_BAD;
        return;
    }
    if (v < 0 && strcmp(dim->name, "id") != 0) {
        v = member(d, it, dim->name);
        if (is_null(d, v)) v = -1;
    }
    decide(d, v, dim, text, a, off);
}

/* The candidates' attribute lookup, per request: one pass over each
 * object's members (pd_json_members: a probe per member with the hash its
 * key got while scanning) finds every scoring dimension's value, the id
 * and the attribute containers, instead of one lookup per dimension and
 * path. Same result as resolve(): the first member with a key counts
 * (also when it is null), a path's container must be present and
 * non-null; dimensions with a path deeper than two go through resolve().
 * In-process on the bench's 100-candidate body (20 dimensions): the walk
 * with XXH3 per member and a memcmp chain cost ~40 us of ~150 us parsing
 * (perf: index_visit 13 % of parse + model + render); with this the
 * parse went from 149-154 to 116-124 us (docs/BENCHMARKS.md "Issue 20",
 * "The rank request's own CPU"). */
#define SC_MAX_CTR 8
#define SC_LEVEL_MAX (PD_MAX_DIMS * (PD_MAX_PATHS + 1) + SC_MAX_CTR + 1)

/* The distinct member names looked up in one object level (the
 * candidate's top level, or one container), and the last object's
 * values. */
typedef struct {
    int n;
    const char **name;
    size_t *len;
    long *val;
    pd_json_names *set;
} sc_level;

typedef struct {
    int nctr;
    const char *ctr[SC_MAX_CTR];   /* containers: first segments of the schema's paths of depth >= 2 */
    int nextra;                    /* containers beyond SC_MAX_CTR: checked by member() */
    const char *extra[PD_MAX_DIMS * PD_MAX_PATHS];
    int8_t pctr[PD_MAX_DIMS][PD_MAX_PATHS]; /* scoring dimension j's path p of depth 2: its container */
    int slow[PD_MAX_DIMS];         /* dimension j resolved by resolve() */
    sc_level top, in[SC_MAX_CTR];
    int16_t at[PD_MAX_DIMS][PD_MAX_PATHS]; /* path p's name in its level (top: depth 1, else in[pctr]) */
    int16_t flat[PD_MAX_DIMS];     /* the flat name's index in top; -1: none (the dimension "id") */
    int16_t ctrat[SC_MAX_CTR];     /* container k's index in top */
    int16_t idat;                  /* "id" in top */
} sc_index;

static void level_init(sc_level *l)
{
    l->n = 0;
    l->name = pd_malloc(SC_LEVEL_MAX * sizeof *l->name);
    l->len = pd_malloc(SC_LEVEL_MAX * sizeof *l->len);
    l->val = NULL;
    l->set = NULL;
}

static int16_t level_add(sc_level *l, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < l->n; i++)
        if (l->len[i] == n && memcmp(l->name[i], name, n) == 0) return (int16_t)i;
    pd_assert(l->n < SC_LEVEL_MAX);
    l->name[l->n] = name;
    l->len[l->n] = n;
    return (int16_t)l->n++;
}

static void level_done(sc_level *l)
{
    l->set = pd_json_names_new(l->name, l->len, l->n);
    l->val = pd_malloc((size_t)(l->n ? l->n : 1) * sizeof *l->val);
    for (int i = 0; i < l->n; i++) l->val[i] = -1;
}

static void level_free(sc_level *l)
{
    pd_free(l->name);
    pd_free(l->len);
    pd_free(l->val);
    pd_json_names_free(l->set);
    memset(l, 0, sizeof *l);
}

static int ctr_index(const sc_index *x, const char *name)
{
    for (int k = 0; k < x->nctr; k++)
        if (strcmp(x->ctr[k], name) == 0) return k;
    return -1;
}

static void index_build(sc_index *x, const pd_schema *s, const int *sdims, int nsd)
{
    memset(x, 0, sizeof *x);
    /* every schema container name, once: an item's containers are checked
     * whether or not a scoring dimension reads them, as in events */
    for (int d = 0; d < s->ndims; d++)
        for (int p = 0; p < s->dims[d].npaths; p++) {
            const char *c = s->dims[d].paths[p].seg[0];
            if (s->dims[d].paths[p].depth < 2 || ctr_index(x, c) >= 0) continue;
            int e = 0;
            while (e < x->nextra && strcmp(x->extra[e], c) != 0) e++;
            if (e < x->nextra) continue;
            if (x->nctr < SC_MAX_CTR) x->ctr[x->nctr++] = c;
            else x->extra[x->nextra++] = c;
        }
    level_init(&x->top);
    for (int k = 0; k < x->nctr; k++) level_init(&x->in[k]);
    x->idat = level_add(&x->top, "id");
    for (int k = 0; k < x->nctr; k++) x->ctrat[k] = level_add(&x->top, x->ctr[k]);
    for (int j = 0; j < nsd; j++) {
        const pd_dim *dim = &s->dims[sdims[j]];
        for (int p = 0; p < dim->npaths; p++) {
            const pd_path *path = &dim->paths[p];
            x->pctr[j][p] = (int8_t)(path->depth == 2 ? ctr_index(x, path->seg[0]) : -1);
            if (path->depth > 2 || (path->depth == 2 && x->pctr[j][p] < 0)) x->slow[j] = 1;
        }
        x->flat[j] = -1;
        if (x->slow[j]) continue;
        for (int p = 0; p < dim->npaths; p++) {
            const pd_path *path = &dim->paths[p];
            x->at[j][p] = path->depth == 1 ? level_add(&x->top, path->seg[0])
                                           : level_add(&x->in[x->pctr[j][p]], path->seg[1]);
        }
        if (strcmp(dim->name, "id") != 0) x->flat[j] = level_add(&x->top, dim->name);
    }
    level_done(&x->top);
    for (int k = 0; k < x->nctr; k++) level_done(&x->in[k]);
}

static void index_free(sc_index *x)
{
    level_free(&x->top);
    for (int k = 0; k < x->nctr; k++) level_free(&x->in[k]);
}

/* The value token of scoring dimension j by the index (-1: none present). */
static long index_value(const sc_index *x, const pd_json_doc *d, const pd_dim *dim, int j, const long *ctrnode)
{
    for (int p = 0; p < dim->npaths; p++) {
        long v;
        if (dim->paths[p].depth == 2) {
            int c = x->pctr[j][p];
            if (is_null(d, ctrnode[c])) continue; /* absent or null container; others were refused */
            v = x->in[c].val[x->at[j][p]];
        } else {
            v = x->top.val[x->at[j][p]];
        }
        if (!is_null(d, v)) return v;
    }
    long v = x->flat[j] < 0 ? -1 : x->top.val[x->flat[j]];
    return is_null(d, v) ? -1 : v;
}

/* Decides attribute a of dimension dim from its value token v (-1:
 * absent), by the event type rules. */
static void decide(const pd_json_doc *d, long v, const pd_dim *dim, pd_buf *text, pd_attr *a, size_t *off)
{
    *off = SIZE_MAX;
    memset(a, 0, sizeof *a);
    if (v < 0) {
        a->kind = PD_ATTR_ABSENT;
        return;
    }
    if (dim->type == PD_DIM_NUMERIC) {
        double x = kind_of(d, v) == PD_JTOK_NUM ? pd_json_num(d, (uint32_t)v) : NAN;
        if (!isfinite(x)) {
            a->kind = PD_ATTR_BAD;
            return;
        }
        a->kind = PD_ATTR_NUM;
        a->num = x;
        return;
    }
    a->kind = cat_text(d, v, text, a, off);
}

/* A name from the request (bounded, printable: other bytes as '?') for
 * messages. */
static void shown(const char *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (; k < n && k + 4 < cap && k < 64; k++) {
        unsigned char c = (unsigned char)s[k];
        out[k] = c >= 0x20 && c < 0x7f && c != '\'' ? (char)c : '?';
    }
    out[k] = '\0';
    if (k < n) snprintf(out + k, cap - k, "...");
}

/* Appends "name=<pct-encoded value>&" of a string field to qs (range
 * fields, and types/weights given as strings). */
static int range_field(const pd_json_doc *d, const char *name, pd_buf *qs, char *err, size_t errlen)
{
    long v = member(d, 0, name);
    if (v < 0) return PD_OK;
    if (kind_of(d, v) != PD_JTOK_STR)
        return pd_seterr(err, errlen, PD_EINVAL, "field '%s': expected a string", name);
    size_t n;
    const char *s = pd_json_str(d, (uint32_t)v, &n);
    pd_buf_puts(qs, name);
    pd_buf_putc(qs, '=');
    pd_pct_encode(qs, s, n);
    pd_buf_putc(qs, '&');
    return PD_OK;
}

/* types: ["park","contact"] (or "park,contact") -> "types=park,contact&"
 * for the profile query's parser, which checks the names. */
static int types_field(const pd_json_doc *d, pd_buf *qs, char *err, size_t errlen)
{
    long v = member(d, 0, "types");
    if (v < 0) return PD_OK;
    if (kind_of(d, v) == PD_JTOK_STR) return range_field(d, "types", qs, err, errlen);
    PD_BUF_LIT(qs, "types=");
    if (kind_of(d, v) == PD_JTOK_ARR) {
        int first = 1;
        for (uint32_t e = (uint32_t)v + 1; e < pd_json_end(d, (uint32_t)v); e = pd_json_end(d, e)) {
            size_t n;
            const char *s = pd_json_kind(d, e) == PD_JTOK_STR ? pd_json_str(d, e, &n) : NULL;
            if (!s || memchr(s, ',', n))
                return pd_seterr(err, errlen, PD_EINVAL, "field 'types': expected an array of event type names");
            if (!first) pd_buf_putc(qs, ',');
            first = 0;
            pd_pct_encode(qs, s, n);
        }
    } else {
        return pd_seterr(err, errlen, PD_EINVAL, "field 'types': expected an array of event type names");
    }
    pd_buf_putc(qs, '&');
    return PD_OK;
}

/* weights: {"view":1,"park":3,"*":0.5} (or "view:1,park:3,*:0.5") ->
 * "weights=view:1,park:3,*:0.5&" for the profile query's parser (the
 * first member of a repeated type counts, as everywhere in the body). */
static int weights_field(const pd_json_doc *d, pd_buf *qs, char *err, size_t errlen)
{
    long v = member(d, 0, "weights");
    if (v < 0) return PD_OK;
    if (kind_of(d, v) == PD_JTOK_STR) return range_field(d, "weights", qs, err, errlen);
    PD_BUF_LIT(qs, "weights=");
    if (kind_of(d, v) == PD_JTOK_OBJ) {
        int first = 1, rc = PD_OK;
        pd_buf seen = {0};
        uint32_t end = pd_json_end(d, (uint32_t)v);
        for (uint32_t k = (uint32_t)v + 1; k < end && rc == PD_OK; k = pd_json_end(d, k)) {
            char t[80];
            size_t n;
            const char *s = pd_json_str(d, k, &n);
            shown(s, n, t, sizeof t);
            if (n == 0 || memchr(s, ',', n) || memchr(s, ':', n)) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "field 'weights': '%s' is not an event type name", t);
                break;
            }
            double w = pd_json_kind(d, k + 1) == PD_JTOK_NUM ? pd_json_num(d, k + 1) : NAN;
            if (!isfinite(w) || w < 0 || w > 1e9) {
                rc = pd_seterr(err, errlen, PD_EINVAL,
                               "field 'weights': weight of '%s' must be a number from 0 to 1e9", t);
                break;
            }
            s = pd_json_str(d, k, &n); /* pd_json_num may have reused the scratch */
            int dup = 0; /* the first member of a name counts: seen holds (length, bytes) of the earlier ones */
            for (size_t o = 0; o < seen.len && !dup;) {
                uint32_t xn;
                memcpy(&xn, seen.p + o, sizeof xn);
                dup = xn == n && memcmp(seen.p + o + sizeof xn, s, n) == 0;
                o += sizeof xn + xn;
            }
            if (dup) continue;
            uint32_t n32 = (uint32_t)n;
            pd_buf_append(&seen, (const char *)&n32, sizeof n32);
            pd_buf_append(&seen, s, n);
            if (!first) pd_buf_putc(qs, ',');
            first = 0;
            pd_pct_encode(qs, s, n);
            pd_buf_printf(qs, ":%.17g", w);
        }
        pd_buf_free(&seen);
        if (rc != PD_OK) return rc;
    } else {
        return pd_seterr(err, errlen, PD_EINVAL, "field 'weights': expected an object {event type: weight}");
    }
    pd_buf_putc(qs, '&');
    return PD_OK;
}

static int add_dim(pd_score_req *r, const pd_schema *s, const char *name, size_t n, char *err, size_t errlen)
{
    int idx = pd_schema_find(s, name, n);
    if (idx < 0) {
        char t[80];
        shown(name, n, t, sizeof t);
        return pd_seterr(err, errlen, PD_EINVAL, "field 'dims': unknown dimension '%s'", t);
    }
    for (int j = 0; j < r->nsd; j++)
        if (r->sdims[j] == idx) return PD_OK;
    pd_assert(r->nsd < PD_MAX_DIMS);
    r->sdims[r->nsd++] = idx;
    return PD_OK;
}

static int parse_dims(pd_score_req *r, const pd_json_doc *d, long v, const pd_schema *s, char *err, size_t errlen)
{
    if (kind_of(d, v) == PD_JTOK_STR) { /* "make,color" as in the query string */
        size_t len;
        const char *p = pd_json_str(d, (uint32_t)v, &len), *end = p + len;
        if (!len) return pd_seterr(err, errlen, PD_EINVAL, "field 'dims': empty list");
        for (;;) {
            const char *c = memchr(p, ',', (size_t)(end - p));
            size_t n = c ? (size_t)(c - p) : (size_t)(end - p);
            if (n == 0) return pd_seterr(err, errlen, PD_EINVAL, "field 'dims': empty dimension name");
            int rc = add_dim(r, s, p, n, err, errlen);
            if (rc) return rc;
            if (!c) break;
            p = c + 1;
        }
        return PD_OK;
    }
    if (kind_of(d, v) != PD_JTOK_ARR)
        return pd_seterr(err, errlen, PD_EINVAL, "field 'dims': expected an array of dimension names");
    uint32_t end = pd_json_end(d, (uint32_t)v);
    if ((uint32_t)v + 1 == end) return pd_seterr(err, errlen, PD_EINVAL, "field 'dims': empty list");
    for (uint32_t e = (uint32_t)v + 1; e < end; e = pd_json_end(d, e)) {
        if (pd_json_kind(d, e) != PD_JTOK_STR)
            return pd_seterr(err, errlen, PD_EINVAL, "field 'dims': expected an array of dimension names");
        size_t n;
        const char *name = pd_json_str(d, e, &n);
        int rc = add_dim(r, s, name, n, err, errlen);
        if (rc) return rc;
    }
    return PD_OK;
}

static const char *const rank_fields[] = {"items", "days", "from", "to", "decay", "at", "dims",
                                          "dim_weights", "alpha", "explain", "types", "weights"};

/* The request's fields but items: range, decay, at, types, weights (the
 * profile query's parser and rules), dims, dim_weights, alpha, explain. */
static int parse_params(pd_score_req *r, const pd_json_doc *d, const pd_schema *s, int64_t today,
                        int64_t retention_days, char *err, size_t errlen)
{
    pd_buf qs = {0};
    int rc = PD_OK;
    uint32_t rend = pd_json_end(d, 0);
    for (uint32_t k = 1; k < rend; k = pd_json_end(d, k)) {
        size_t n, f, nf = sizeof rank_fields / sizeof rank_fields[0];
        const char *key = pd_json_str(d, k, &n);
        for (f = 0; f < nf; f++)
            if (strlen(rank_fields[f]) == n && memcmp(rank_fields[f], key, n) == 0) break;
        if (f == nf) {
            char t[80];
            shown(key, n, t, sizeof t);
            rc = pd_seterr(err, errlen, PD_EINVAL, "unknown field '%s'", t);
            goto out;
        }
    }
    long days = member(d, 0, "days");
    if (days >= 0) {
        double x = kind_of(d, days) == PD_JTOK_NUM ? pd_json_num(d, (uint32_t)days) : -1;
        if (!(x >= 1 && x <= 3650 && x == floor(x))) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "field 'days': expected an integer from 1 to 3650");
            goto out;
        }
        pd_buf_printf(&qs, "days=%d&", (int)x);
    }
    static const char *const rf[] = {"from", "to", "decay", "at"};
    for (size_t i = 0; i < 4; i++)
        if ((rc = range_field(d, rf[i], &qs, err, errlen)) != PD_OK) goto out;
    if ((rc = types_field(d, &qs, err, errlen)) != PD_OK) goto out;
    if ((rc = weights_field(d, &qs, err, errlen)) != PD_OK) goto out;
    if (qs.len) qs.p[--qs.len] = '\0'; /* the last '&' */
    rc = pd_query_parse_params(&r->q, qs.p ? qs.p : "", s, today, retention_days, err, errlen);
    if (rc != PD_OK) goto out;

    long dims = member(d, 0, "dims");
    if (dims >= 0) {
        if ((rc = parse_dims(r, d, dims, s, err, errlen)) != PD_OK) goto out;
    } else {
        for (int i = 0; i < s->ndims; i++) r->sdims[r->nsd++] = i;
    }
    for (int j = 0; j < r->nsd; j++) r->lambda[j] = 1.0;
    long dw = member(d, 0, "dim_weights");
    if (dw >= 0) {
        if (!is_obj(d, dw)) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "field 'dim_weights': expected an object {dimension: weight}");
            goto out;
        }
        int set[PD_MAX_DIMS] = {0};
        uint32_t end = pd_json_end(d, (uint32_t)dw);
        for (uint32_t k = (uint32_t)dw + 1; k < end; k = pd_json_end(d, k)) {
            char t[80];
            size_t n;
            const char *name = pd_json_str(d, k, &n);
            shown(name, n, t, sizeof t);
            int idx = pd_schema_find(s, name, n);
            if (idx < 0) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "field 'dim_weights': unknown dimension '%s'", t);
                goto out;
            }
            double x = pd_json_kind(d, k + 1) == PD_JTOK_NUM ? pd_json_num(d, k + 1) : NAN;
            if (!isfinite(x) || fabs(x) > PD_SCORE_MAX_LAMBDA) {
                rc = pd_seterr(err, errlen, PD_EINVAL,
                               "field 'dim_weights': weight of '%s' must be a finite number from -%g to %g", t,
                               PD_SCORE_MAX_LAMBDA, PD_SCORE_MAX_LAMBDA);
                goto out;
            }
            if (set[idx]++) continue; /* the first member wins on repeated keys (the body's dialect) */
            for (int j = 0; j < r->nsd; j++)
                if (r->sdims[j] == idx) r->lambda[j] = x;
        }
    }
    r->alpha = PD_SCORE_ALPHA_DEFAULT;
    long al = member(d, 0, "alpha");
    if (al >= 0) {
        double x = kind_of(d, al) == PD_JTOK_NUM ? pd_json_num(d, (uint32_t)al) : NAN;
        if (!isfinite(x) || !(x > 0)) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "field 'alpha': expected a finite number > 0");
            goto out;
        }
        r->alpha = x;
    }
    long ex = member(d, 0, "explain");
    if (ex >= 0) {
        if (kind_of(d, ex) != PD_JTOK_TRUE && kind_of(d, ex) != PD_JTOK_FALSE) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "field 'explain': expected true or false");
            goto out;
        }
        r->explain = kind_of(d, ex) == PD_JTOK_TRUE;
    }
out:
    pd_buf_free(&qs);
    return rc;
}

int pd_score_parse_rank(pd_score_req *r, const char *body, size_t len, const pd_schema *s, int64_t today,
                        int64_t retention_days, int max_items, char *err, size_t errlen)
{
    int rc = PD_OK;
    uint32_t *idoff = NULL;
    size_t *aoff = NULL;
    sc_index ix;
    int have_ix = 0;
    pd_json_doc doc, *d = &doc;
    memset(r, 0, sizeof *r);
    char jerr[256];
    int jrc = pd_json_open(d, body, len, len ? len : 1, jerr, sizeof jerr);
    if (jrc == PD_JSON_TYPE) return pd_seterr(err, errlen, PD_EINVAL, "body: expected a JSON object");
    if (jrc != PD_OK) return pd_seterr(err, errlen, PD_EINVAL, "body is not valid JSON: %s", jerr);

    if ((rc = parse_params(r, d, s, today, retention_days, err, errlen)) != PD_OK) goto out;

    /* items */
    long items = member(d, 0, "items");
    if (items < 0) {
        rc = pd_seterr(err, errlen, PD_EINVAL, "field 'items' is required (an array of candidates)");
        goto out;
    }
    if (kind_of(d, items) != PD_JTOK_ARR) {
        rc = pd_seterr(err, errlen, PD_EINVAL, "field 'items': expected an array of candidates");
        goto out;
    }
    uint32_t iend = pd_json_end(d, (uint32_t)items);
    int n = 0;
    for (uint32_t e = (uint32_t)items + 1; e < iend; e = pd_json_end(d, e))
        if (++n > max_items) {
            rc = pd_seterr(err, errlen, PD_ERANGE, "field 'items': more than rank_max_items (%d) candidates",
                           max_items);
            goto out;
        }
    r->nitems = n;
    r->items = n ? pd_malloc((size_t)n * sizeof *r->items) : NULL;
    size_t na = (size_t)n * (size_t)(r->nsd ? r->nsd : 1);
    r->attr_mem = pd_malloc(na * sizeof *r->attr_mem);
    r->hash_mem = pd_malloc(na * sizeof *r->hash_mem);
    aoff = pd_malloc(na * sizeof *aoff);
    idoff = n ? pd_malloc((size_t)n * sizeof *idoff) : NULL;
    pd_buf_reserve(&r->text, (size_t)n * 16 * (size_t)(r->nsd + 1));
    index_build(&ix, s, r->sdims, r->nsd);
    have_ix = 1;
    int i = 0;
    for (uint32_t it = (uint32_t)items + 1; it < iend; it = pd_json_end(d, it), i++) {
        pd_score_item *ci = &r->items[i];
        ci->attrs = r->attr_mem + (size_t)i * (size_t)r->nsd;
        ci->hash = r->hash_mem + (size_t)i * (size_t)r->nsd;
        if (pd_json_kind(d, it) != PD_JTOK_OBJ) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "items[%d]: expected an object", i);
            goto out;
        }
        pd_json_members(d, it, ix.top.set, ix.top.val);
        long id = ix.top.val[ix.idat];
        idoff[i] = (uint32_t)r->text.len;
        if (kind_of(d, id) == PD_JTOK_STR) {
            size_t il;
            const char *ids = pd_json_str(d, (uint32_t)id, &il);
            if (il == 0 || il > SC_MAX_ID) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "items[%d]: 'id' must be 1..%d bytes of UTF-8", i, SC_MAX_ID);
                goto out;
            }
            pd_buf_json_str(&r->text, ids, il);
        } else if (kind_of(d, id) == PD_JTOK_NUM && isfinite(pd_json_num(d, (uint32_t)id))) {
            pd_buf_put_double(&r->text, pd_json_num(d, (uint32_t)id), 0);
        } else {
            rc = pd_seterr(err, errlen, PD_EINVAL, "items[%d]: %s", i,
                           id >= 0 ? "'id' must be a string or a finite number" : "missing 'id'");
            goto out;
        }
        ci->idlen = (uint32_t)(r->text.len - idoff[i]);
        long ctrnode[SC_MAX_CTR];
        for (int k = 0; k < ix.nctr; k++) ctrnode[k] = ix.top.val[ix.ctrat[k]];
        /* top-level attribute containers (the first member of each name):
         * object or null, in the schema's order */
        for (int k = 0; k < ix.nctr + ix.nextra; k++) {
            const char *cn = k < ix.nctr ? ix.ctr[k] : ix.extra[k - ix.nctr];
            long c = k < ix.nctr ? ctrnode[k] : member(d, it, cn);
            if (!is_null(d, c) && !is_obj(d, c)) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "items[%d]: field '%s': expected an object or null", i, cn);
                goto out;
            }
        }
        for (int c = 0; c < ix.nctr; c++)
            if (ix.in[c].n && is_obj(d, ctrnode[c])) pd_json_members(d, (uint32_t)ctrnode[c], ix.in[c].set, ix.in[c].val);
        for (int j = 0; j < r->nsd; j++) {
            const pd_dim *dim = &s->dims[r->sdims[j]];
            size_t *o = &aoff[(size_t)i * (size_t)r->nsd + j];
            if (ix.slow[j]) resolve(d, it, dim, &r->text, &ci->attrs[j], o);
            else decide(d, index_value(&ix, d, dim, j, ctrnode), dim, &r->text, &ci->attrs[j], o);
        }
    }
    /* the text is complete: point into it */
    for (i = 0; i < n; i++) {
        pd_score_item *ci = &r->items[i];
        ci->id = r->text.p + idoff[i];
        for (int j = 0; j < r->nsd; j++) {
            pd_attr *a = &ci->attrs[j];
            size_t o = aoff[(size_t)i * (size_t)r->nsd + j];
            if (a->kind == PD_ATTR_STR && o != SIZE_MAX) a->s = r->text.p + o;
            ci->hash[j] = a->kind == PD_ATTR_STR ? XXH3_64bits(a->s, a->len) : 0;
        }
    }
out:
    pd_json_close(d);
    if (have_ix) index_free(&ix);
    pd_free(aoff);
    pd_free(idoff);
    if (rc != PD_OK) {
        pd_score_req_free(r);
        memset(r, 0, sizeof *r);
    }
    return rc;
}

void pd_score_req_free(pd_score_req *r)
{
    if (!r) return;
    pd_free(r->items);
    pd_free(r->attr_mem);
    pd_free(r->hash_mem);
    pd_buf_free(&r->text);
    memset(r, 0, sizeof *r);
}

int pd_score_parse_affinities(pd_score_aff *a, const char *qs, const pd_schema *s, int64_t today,
                              int64_t retention_days, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->alpha = PD_SCORE_ALPHA_DEFAULT;
    pd_buf rest = {0};
    int rc = PD_OK, seen_alpha = 0, seen_order = 0;
    for (const char *p = qs ? qs : ""; *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n >= 6 && memcmp(p, "alpha=", 6) == 0) {
            char v[64];
            size_t vl = 0;
            double x = NAN;
            char *end = NULL;
            if (seen_alpha++) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'alpha' given more than once");
                goto out;
            }
            if (pd_pct_decode(p + 6, n - 6, PD_PCT_FORM | PD_PCT_NO_NUL, v, sizeof v - 1, &vl) == PD_OK && vl) {
                v[vl] = '\0';
                x = strtod(v, &end);
                if (!end || *end) x = NAN;
            }
            if (!isfinite(x) || !(x > 0)) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'alpha': expected a finite number > 0");
                goto out;
            }
            a->alpha = x;
        } else if (n >= 6 && memcmp(p, "order=", 6) == 0) {
            if (seen_order++) {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'order' given more than once");
                goto out;
            }
            if (n - 6 == 4 && memcmp(p + 6, "lift", 4) == 0) a->by_p_user = 0;
            else if (n - 6 == 6 && memcmp(p + 6, "p_user", 6) == 0) a->by_p_user = 1;
            else {
                rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'order': expected lift or p_user");
                goto out;
            }
        } else if ((n >= 10 && memcmp(p, "breakdown=", 10) == 0) || (n == 9 && memcmp(p, "breakdown", 9) == 0)) {
            rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'breakdown' is not supported here");
            goto out;
        } else if (n) {
            if (rest.len) pd_buf_putc(&rest, '&');
            pd_buf_append(&rest, p, n);
        }
        if (!amp) break;
        p = amp + 1;
    }
    rc = pd_query_parse_params(&a->q, rest.p ? rest.p : "", s, today, retention_days, err, errlen);
    if (rc == PD_OK && a->q.recent >= 0)
        rc = pd_seterr(err, errlen, PD_EINVAL, "parameter 'recent' is not supported here");
    if (rc == PD_OK && a->q.top == 0) a->q.top = PD_SCORE_TOP_DEFAULT;
out:
    pd_buf_free(&rest);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the model                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
    uint64_t h;        /* XXH3-64 of the value; 0 with v == NULL: empty slot */
    const char *v;     /* borrowed from a day profile */
    uint32_t len;
    double c;          /* weighted count */
    double mag;        /* sum of its terms' magnitudes (cancellation, pd_query_cancel) */
    double day;        /* while merging a day: the day's count over its sources */
    int in_day;        /* day is in use (the entry is on the day's list) */
} sc_ent;

/* One dimension's weighted sums over one set of days. */
typedef struct {
    double N;                          /* weighted total */
    sc_ent *tab;                       /* categorical: open addressing, cap slots (power of 2) */
    size_t cap, n;
    double hist[PD_MAX_BOUNDS + 1];    /* numeric */
    double K;                          /* population side: K_d */
} sc_dim;

/* The population's side: every schema dimension's sums over the
 * population's days, immutable once built (shared by the requests of a
 * cache entry, see score.h). */
struct pd_score_pop {
    int ndims;
    sc_dim d[PD_MAX_DIMS];             /* indexed like the schema's dimensions */
};

struct pd_score_model {
    const pd_schema *s;
    int nsd;
    int sdims[PD_MAX_DIMS];
    int cold;          /* no events that count (their types weighted) in the range */
    int has_events;    /* any event of the user in the range, whatever its type */
    sc_dim u[PD_MAX_DIMS];
    const sc_dim *p[PD_MAX_DIMS];      /* population side of scoring dimension j (in pop) */
    const pd_score_pop *pop;
    pd_score_pop *own_pop;             /* pop, when built for this model alone */
    const pd_query *q;
};

static int is_other(const char *v, uint32_t len)
{
    return len == sizeof PD_OTHER - 1 && memcmp(v, PD_OTHER, len) == 0;
}

static sc_ent *tab_slot(const sc_dim *t, uint64_t h, const char *v, uint32_t len)
{
    size_t mask = t->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        sc_ent *e = &t->tab[i];
        if (!e->v) return e;
        if (e->h == h && e->len == len && memcmp(e->v, v, len) == 0) return e;
    }
}

static double tab_get(const sc_dim *t, uint64_t h, const char *v, uint32_t len)
{
    if (!t->cap) return 0;
    const sc_ent *e = tab_slot(t, h, v, len);
    return e->v ? e->c : 0;
}

/* The sources of a day (its all-types profile and, with types=/weights=,
 * its tracked types' sub-profiles) with their coefficients: the profile
 * query's rule (pd_query_type_coefs). Returns how many (at most
 * 1 + PD_MAX_TRACKED); sources with coefficient 0 are left out. */
typedef struct {
    int signals;
    double c_all, c_sub[PD_MAX_TRACKED];
} sc_coefs;

static int day_sources(const sc_coefs *k, const pd_schema *s, const pd_profile *p, const pd_profile **src,
                       double *coef)
{
    int n = 0;
    if (k->c_all != 0) {
        src[n] = p;
        coef[n++] = k->c_all;
    }
    if (k->signals)
        for (int t = 0; t < s->ntracked; t++) {
            const pd_profile *q = pd_profile_sub(p, t);
            if (!q || k->c_sub[t] == 0) continue;
            src[n] = q;
            coef[n++] = k->c_sub[t];
        }
    return n;
}

/* Makes room for n entries in t at a load factor of at most 1/2
 * (rehashing; entry pointers into t do not survive a growth). */
static void tab_reserve(sc_dim *t, size_t n)
{
    size_t cap = t->cap ? t->cap : 8;
    while (cap < 2 * n) cap <<= 1;
    if (cap == t->cap) return;
    sc_dim old = *t;
    t->tab = pd_calloc(cap, sizeof *t->tab);
    t->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.tab[i].v) *tab_slot(t, old.tab[i].h, old.tab[i].v, old.tab[i].len) = old.tab[i];
    pd_free(old.tab);
}

/* Merges dimension di of days[0..nd) with weights w (and the type
 * coefficients k) into t. A day's sources are summed first (their
 * coefficients times the counts: exact for the integral and binary
 * fractional weights one uses) and the day's weight applied to that sum,
 * as the model reads (sum over days of w_t times the day's count), so two
 * values with equal counts per day get bit-identical sums whatever the
 * types that made them. Under types=/weights= a sum mixes terms of both
 * signs (all-types minus tracked types): each cancels like the profile
 * query's (pd_query_cancel). */
static void dim_build(sc_dim *t, const pd_dim *dim, int di, const pd_query_day *days, const double *w, int nd,
                      const sc_coefs *k, const pd_schema *s)
{
    const pd_profile *src[1 + PD_MAX_TRACKED];
    double coef[1 + PD_MAX_TRACKED], Nmag = 0, hmag[PD_MAX_BOUNDS + 1] = {0};
    int approx = 0;
    memset(t, 0, sizeof *t);
    if (dim->type == PD_DIM_NUMERIC) {
        for (int d = 0; d < nd; d++) {
            if (!(w[d] > 0)) continue;
            int ns = day_sources(k, s, days[d].prof, src, coef);
            double dn = 0, dh[PD_MAX_BOUNDS + 1] = {0};
            for (int x = 0; x < ns; x++) {
                const pd_numagg *a = &src[x]->dims[di].num;
                if (a->count == 0) continue;
                dn += coef[x] * (double)a->count;
                Nmag += w[d] * fabs(coef[x]) * (double)a->count;
                if (a->hist)
                    for (int b = 0; b <= dim->nbounds; b++) {
                        dh[b] += coef[x] * (double)a->hist[b];
                        hmag[b] += w[d] * fabs(coef[x]) * (double)a->hist[b];
                    }
            }
            t->N += w[d] * dn;
            for (int b = 0; b <= dim->nbounds; b++) t->hist[b] += w[d] * dh[b];
        }
        if (k->signals) {
            t->N = pd_query_cancel(t->N, Nmag, &approx);
            for (int b = 0; b <= dim->nbounds; b++) t->hist[b] = pd_query_cancel(t->hist[b], hmag[b], &approx);
        }
        t->K = dim->nbounds + 1;
        return;
    }
    size_t maxday = 0;
    for (int d = 0; d < nd; d++) {
        if (!(w[d] > 0)) continue;
        int ns = day_sources(k, s, days[d].prof, src, coef);
        size_t dt = 0;
        for (int x = 0; x < ns; x++) dt += src[x]->dims[di].cat.n;
        if (dt > maxday) maxday = dt;
    }
    sc_ent **touched = maxday ? pd_malloc(maxday * sizeof *touched) : NULL;
    for (int d = 0; d < nd; d++) {
        if (!(w[d] > 0)) continue;
        int ns = day_sources(k, s, days[d].prof, src, coef);
        size_t nt = 0, dt = 0;
        double dN = 0;
        /* room for every value of the day before it starts (touched holds
         * entry pointers during the day): the table grows with the
         * distinct values, not with the sum over days, since days mostly
         * repeat values (a table sized by that sum cost a zeroed 0.5 MiB
         * per dimension and request on 30 population days) */
        for (int x = 0; x < ns; x++) dt += src[x]->dims[di].cat.n;
        if (dt) tab_reserve(t, t->n + dt);
        for (int x = 0; x < ns; x++) {
            const pd_catset *c = &src[x]->dims[di].cat;
            dN += coef[x] * (double)pd_catset_total(c);
            Nmag += w[d] * fabs(coef[x]) * (double)pd_catset_total(c);
            for (uint32_t i = 0; i < c->n; i++) {
                const char *v = pd_catval_str(&c->vals[i]);
                uint32_t len = c->vals[i].len;
                if (is_other(v, len)) continue; /* attributable to no value */
                sc_ent *e = tab_slot(t, c->vals[i].hash, v, len);
                if (!e->v) {
                    *e = (sc_ent){c->vals[i].hash, v, len, 0, 0, 0, 0};
                    t->n++;
                }
                if (!e->in_day) {
                    e->in_day = 1;
                    touched[nt++] = e;
                }
                double cnt = (double)pd_catset_count(c, i);
                e->day += coef[x] * cnt;
                e->mag += w[d] * fabs(coef[x]) * cnt;
            }
        }
        t->N += w[d] * dN;
        for (size_t i = 0; i < nt; i++) {
            touched[i]->c += w[d] * touched[i]->day;
            touched[i]->day = 0;
            touched[i]->in_day = 0;
        }
    }
    pd_free(touched);
    if (k->signals) {
        t->N = pd_query_cancel(t->N, Nmag, &approx);
        for (size_t i = 0; i < t->cap; i++)
            if (t->tab[i].v) t->tab[i].c = pd_query_cancel(t->tab[i].c, t->tab[i].mag, &approx);
    }
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->tab[i].v && t->tab[i].c > 0) n++;
    t->K = (double)n + 1;
}

static void weights(const pd_query *q, const pd_query_day *days, int nd, double *w)
{
    for (int d = 0; d < nd; d++) w[d] = pd_query_day_weight(q, q->anchor_day, days[d].day);
}

pd_score_pop *pd_score_pop_new(const pd_schema *s, const pd_query *q, const pd_query_day *pdays, int np)
{
    pd_assert(s && q && np >= 0);
    for (int d = 0; d < np; d++)
        pd_assert(pdays[d].prof->schema->ndims == s->ndims && pdays[d].prof->schema->ntracked == s->ntracked);
    pd_score_pop *p = pd_malloc(sizeof *p);
    p->ndims = s->ndims;
    sc_coefs k;
    k.signals = pd_query_type_coefs(q, s, &k.c_all, k.c_sub);
    double ws[64];
    double *w = np <= 64 ? ws : pd_malloc((size_t)np * sizeof *w);
    weights(q, pdays, np, w);
    for (int i = 0; i < s->ndims; i++) dim_build(&p->d[i], &s->dims[i], i, pdays, w, np, &k, s);
    if (w != ws) pd_free(w);
    return p;
}

void pd_score_pop_free(pd_score_pop *p)
{
    if (!p) return;
    for (int i = 0; i < p->ndims; i++) pd_free(p->d[i].tab);
    pd_free(p);
}

void pd_score_pop_free_any(void *p)
{
    pd_score_pop_free(p);
}

void pd_score_pop_key(const pd_schema *s, const pd_query *q, const pd_query_day *pdays, int np, pd_buf *key)
{
    sc_coefs k;
    memset(&k, 0, sizeof k);
    k.signals = pd_query_type_coefs(q, s, &k.c_all, k.c_sub);
    pd_buf_append(key, (const char *)&np, sizeof np);
    for (int d = 0; d < np; d++) {
        double w = pd_query_day_weight(q, q->anchor_day, pdays[d].day);
        pd_buf_append(key, (const char *)&pdays[d].day, sizeof pdays[d].day);
        pd_buf_append(key, (const char *)&w, sizeof w);
    }
    pd_buf_append(key, (const char *)&k.signals, sizeof k.signals);
    pd_buf_append(key, (const char *)&k.c_all, sizeof k.c_all);
    pd_buf_append(key, (const char *)k.c_sub, (size_t)s->ntracked * sizeof k.c_sub[0]);
}

pd_score_model *pd_score_model_new_pop(const pd_schema *s, const pd_query *q, const int *sdims, int nsd,
                                       const pd_query_day *udays, int nu, const pd_score_pop *pop)
{
    pd_assert(s && q && pop && nsd >= 0 && nsd <= PD_MAX_DIMS && nu >= 0 && pop->ndims == s->ndims);
    pd_score_model *m = pd_calloc(1, sizeof *m);
    m->s = s;
    m->q = q;
    m->nsd = nsd;
    m->pop = pop;
    memcpy(m->sdims, sdims, (size_t)nsd * sizeof *sdims);
    for (int j = 0; j < nsd; j++) m->p[j] = &pop->d[sdims[j]];
    sc_coefs k;
    k.signals = pd_query_type_coefs(q, s, &k.c_all, k.c_sub);
    double ws[64];
    double *w = nu <= 64 ? ws : pd_malloc((size_t)nu * sizeof *w);
    /* cold: no events that count in the range (their types weighted, the
     * days not: a day that decay weighs 0 still holds events) */
    uint64_t ev = 0;
    double wev = 0, wmag = 0;
    for (int d = 0; d < nu; d++) {
        const pd_profile *src[1 + PD_MAX_TRACKED];
        double coef[1 + PD_MAX_TRACKED];
        ev += udays[d].prof->events;
        int ns = day_sources(&k, s, udays[d].prof, src, coef);
        for (int x = 0; x < ns; x++) {
            wev += coef[x] * (double)src[x]->events;
            wmag += fabs(coef[x]) * (double)src[x]->events;
        }
    }
    int approx = 0;
    m->has_events = ev > 0;
    m->cold = !(pd_query_cancel(wev, wmag, &approx) > 0);
    weights(q, udays, nu, w);
    for (int j = 0; j < nsd; j++) dim_build(&m->u[j], &s->dims[sdims[j]], sdims[j], udays, w, nu, &k, s);
    if (w != ws) pd_free(w);
    return m;
}

pd_score_model *pd_score_model_new(const pd_schema *s, const pd_query *q, const int *sdims, int nsd,
                                   const pd_query_day *udays, int nu, const pd_query_day *pdays, int np)
{
    pd_score_pop *pop = pd_score_pop_new(s, q, pdays, np);
    pd_score_model *m = pd_score_model_new_pop(s, q, sdims, nsd, udays, nu, pop);
    m->own_pop = pop;
    return m;
}

void pd_score_model_free(pd_score_model *m)
{
    if (!m) return;
    for (int j = 0; j < m->nsd; j++) {
        pd_free(m->u[j].tab);
    }
    pd_score_pop_free(m->own_pop);
    pd_free(m);
}

int pd_score_model_cold(const pd_score_model *m)
{
    return m->cold;
}

int pd_score_model_has_events(const pd_score_model *m)
{
    return m->has_events;
}

static int bucket_of(const pd_dim *dim, double v)
{
    int k = 0;
    while (k < dim->nbounds && v > dim->bounds[k]) k++;
    return k;
}

/* p_P and p_u from the sums (n_u, N_u, n_P, N_P, K). */
static double probs(double nu, double Nu, double np, double Np, double K, double alpha, double *pu, double *pp)
{
    double p_pop = (np + 1.0) / (Np + K);
    double p_user = Nu > 0 ? (nu + alpha * p_pop) / (Nu + alpha) : p_pop;
    *pu = p_user;
    *pp = p_pop;
    return Nu > 0 ? log(p_user / p_pop) : 0.0;
}

static double dim_probs(const pd_score_model *m, int j, const pd_attr *a, uint64_t h, double alpha, double *pu,
                        double *pp)
{
    const pd_dim *dim = &m->s->dims[m->sdims[j]];
    const sc_dim *U = &m->u[j], *P = m->p[j];
    double nu, np;
    if (dim->type == PD_DIM_NUMERIC) {
        pd_assert(a->kind == PD_ATTR_NUM);
        int k = bucket_of(dim, a->num);
        nu = U->hist[k];
        np = P->hist[k];
    } else {
        pd_assert(a->kind == PD_ATTR_STR);
        nu = tab_get(U, h, a->s, a->len);
        np = tab_get(P, h, a->s, a->len);
    }
    return probs(nu, U->N, np, P->N, P->K, alpha, pu, pp);
}

double pd_score_dim(const pd_score_model *m, int j, const pd_attr *a, uint64_t h, double alpha, double *p_user,
                    double *p_pop)
{
    double pu, pp;
    double c = dim_probs(m, j, a, h, alpha, &pu, &pp);
    if (p_user) *p_user = pu;
    if (p_pop) *p_pop = pp;
    return c;
}

/* pd_score_items' table of the distinct values of one scoring dimension
 * among the candidates: open addressing by the value's XXH3-64 (the item
 * that has it first: its bytes compare), its contribution. */
typedef struct {
    uint64_t h;
    uint32_t gen;      /* the dimension it belongs to (j + 1); else empty */
    int item;
    double c;
} sc_seen;

void pd_score_items(const pd_score_req *r, const pd_score_model *m, double *score)
{
    pd_assert(r->nsd == m->nsd);
    for (int i = 0; i < r->nitems; i++) score[i] = 0;
    if (m->cold || r->nitems == 0) return;
    size_t cap = 16;
    while (cap < 2 * (size_t)r->nitems) cap <<= 1;
    sc_seen *seen = pd_calloc(cap, sizeof *seen);
    /* dimension by dimension, each distinct value (a bucket for numeric
     * dimensions) computed once: candidates repeat makes, colours and
     * buckets. score[i] still sums its contributions in dimension order,
     * so the result is dim_probs' term by term. */
    for (int j = 0; j < r->nsd; j++) {
        const pd_dim *dim = &m->s->dims[m->sdims[j]];
        double lambda = r->lambda[j];
        if (dim->type == PD_DIM_NUMERIC) {
            double bc[PD_MAX_BOUNDS + 1];
            uint8_t bok[PD_MAX_BOUNDS + 1] = {0};
            const sc_dim *U = &m->u[j], *P = m->p[j];
            for (int i = 0; i < r->nitems; i++) {
                const pd_attr *a = &r->items[i].attrs[j];
                if (a->kind != PD_ATTR_NUM) continue;
                int k = bucket_of(dim, a->num);
                if (!bok[k]) {
                    double pu, pp;
                    bc[k] = probs(U->hist[k], U->N, P->hist[k], P->N, P->K, r->alpha, &pu, &pp);
                    bok[k] = 1;
                }
                score[i] += lambda * bc[k];
            }
            continue;
        }
        uint32_t gen = (uint32_t)j + 1;
        for (int i = 0; i < r->nitems; i++) {
            const pd_attr *a = &r->items[i].attrs[j];
            if (a->kind != PD_ATTR_STR) continue;
            uint64_t h = r->items[i].hash[j];
            size_t x = (size_t)h & (cap - 1);
            for (; seen[x].gen == gen; x = (x + 1) & (cap - 1)) {
                const pd_attr *b = &r->items[seen[x].item].attrs[j];
                if (seen[x].h == h && b->len == a->len && memcmp(b->s, a->s, a->len) == 0) break;
            }
            if (seen[x].gen != gen) {
                double pu, pp;
                seen[x] = (sc_seen){h, gen, i, dim_probs(m, j, a, h, r->alpha, &pu, &pp)};
            }
            score[i] += lambda * seen[x].c;
        }
    }
    pd_free(seen);
}

/* ------------------------------------------------------------------ */
/* rendering                                                            */
/* ------------------------------------------------------------------ */

static void put_num(pd_buf *b, double v)
{
    pd_buf_put_double(b, v, 0);
}

static void put_head(pd_buf *out, const pd_query *q, const pd_schema *s, const char *user, size_t ulen,
                     int32_t partition, int cold, double alpha, const pd_score_prior *prior)
{
    PD_BUF_LIT(out, "{\"user_id\":");
    pd_buf_json_str(out, user, ulen);
    PD_BUF_LIT(out, ",\"partition\":");
    pd_buf_put_i64(out, partition);
    PD_BUF_LIT(out, ",\"from\":");
    pd_query_put_range(out, q);
    pd_query_put_types(out, q, s); /* the weighting used, as the profile query echoes it */
    PD_BUF_LIT(out, ",\"cold_start\":");
    pd_buf_puts(out, cold ? "true" : "false");
    PD_BUF_LIT(out, ",\"alpha\":");
    put_num(out, alpha);
    PD_BUF_LIT(out, ",");
    pd_score_put_prior(out, prior);
}

void pd_score_put_prior(pd_buf *out, const pd_score_prior *prior)
{
    PD_BUF_LIT(out, "\"prior\":{\"age_s\":");
    if (prior->age_s >= 0) put_num(out, (double)(int64_t)(prior->age_s * 1000.0 + 0.5) / 1000.0);
    else PD_BUF_LIT(out, "null");
    PD_BUF_LIT(out, ",\"days\":");
    pd_buf_put_i64(out, prior->ndays);
    PD_BUF_LIT(out, ",\"partitions_covered\":");
    pd_buf_put_i64(out, prior->parts_covered);
    PD_BUF_LIT(out, ",\"partitions_total\":");
    pd_buf_put_i64(out, prior->parts_total);
    PD_BUF_LIT(out, ",\"complete\":");
    if (prior->parts_total > 0 && prior->parts_covered == prior->parts_total) PD_BUF_LIT(out, "true}");
    else PD_BUF_LIT(out, "false}");
}

typedef struct {
    double score;
    int idx;
} sc_order;

static int order_cmp(const void *x, const void *y)
{
    const sc_order *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->idx < b->idx ? -1 : (a->idx > b->idx);
}

static void put_dimlist(pd_buf *out, const pd_schema *s, const int *dims, int n)
{
    pd_buf_putc(out, '[');
    for (int j = 0; j < n; j++) {
        if (j) pd_buf_putc(out, ',');
        pd_buf_json_str(out, s->dims[dims[j]].name, strlen(s->dims[dims[j]].name));
    }
    pd_buf_putc(out, ']');
}

void pd_score_render_rank(const pd_score_req *r, const pd_score_model *m, const pd_schema *s, const char *user,
                          size_t ulen, int32_t partition, const pd_score_prior *prior, pd_buf *out)
{
    double *score = pd_malloc((size_t)(r->nitems ? r->nitems : 1) * sizeof *score);
    sc_order *ord = pd_malloc((size_t)(r->nitems ? r->nitems : 1) * sizeof *ord);
    pd_score_items(r, m, score);
    for (int i = 0; i < r->nitems; i++) ord[i] = (sc_order){score[i], i};
    if (r->nitems > 1) qsort(ord, (size_t)r->nitems, sizeof *ord, order_cmp);

    put_head(out, &r->q, s, user, ulen, partition, m->cold, r->alpha, prior);
    PD_BUF_LIT(out, ",\"dims\":");
    put_dimlist(out, s, r->sdims, r->nsd);
    PD_BUF_LIT(out, ",\"items\":[");
    for (int k = 0; k < r->nitems; k++) {
        const pd_score_item *it = &r->items[ord[k].idx];
        if (k) pd_buf_putc(out, ',');
        PD_BUF_LIT(out, "{\"id\":");
        pd_buf_append(out, it->id, it->idlen);
        PD_BUF_LIT(out, ",\"score\":");
        put_num(out, ord[k].score);
        if (r->explain) {
            PD_BUF_LIT(out, ",\"contributions\":{");
            int first = 1;
            for (int j = 0; j < r->nsd; j++) {
                const pd_attr *a = &it->attrs[j];
                if (a->kind != PD_ATTR_STR && a->kind != PD_ATTR_NUM) continue;
                double pu, pp;
                double c = m->cold ? 0.0 : r->lambda[j] * dim_probs(m, j, a, it->hash[j], r->alpha, &pu, &pp);
                if (!first) pd_buf_putc(out, ',');
                first = 0;
                const char *name = s->dims[r->sdims[j]].name;
                pd_buf_json_str(out, name, strlen(name));
                pd_buf_putc(out, ':');
                put_num(out, c);
            }
            static const struct { pd_attr_kind k; const char *key; } lists[2] = {
                {PD_ATTR_ABSENT, ",\"missing\":["}, {PD_ATTR_BAD, ",\"invalid\":["}};
            pd_buf_putc(out, '}');
            for (int l = 0; l < 2; l++) {
                pd_buf_puts(out, lists[l].key);
                first = 1;
                for (int j = 0; j < r->nsd; j++) {
                    if (it->attrs[j].kind != lists[l].k) continue;
                    if (!first) pd_buf_putc(out, ',');
                    first = 0;
                    const char *name = s->dims[r->sdims[j]].name;
                    pd_buf_json_str(out, name, strlen(name));
                }
                pd_buf_putc(out, ']');
            }
        }
        pd_buf_putc(out, '}');
    }
    pd_buf_putc(out, ']');
    pd_free(score);
    pd_free(ord);
}

/* One affinities entry. */
typedef struct {
    const char *v;     /* categorical value, or NULL: numeric bucket k */
    uint32_t len;
    int k;
    double n, pu, pp, lift, key;
} sc_aff;

static int aff_cmp(const void *x, const void *y)
{
    const sc_aff *a = x, *b = y;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    if (!a->v) return a->k < b->k ? -1 : (a->k > b->k);
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->v, b->v, n);
    if (c) return c;
    return a->len < b->len ? -1 : (a->len > b->len);
}

void pd_score_render_affinities(const pd_score_aff *a, const pd_score_model *m, const pd_schema *s,
                                const char *user, size_t ulen, int32_t partition, const pd_score_prior *prior,
                                pd_buf *out)
{
    put_head(out, &a->q, s, user, ulen, partition, m->cold, a->alpha, prior);
    PD_BUF_LIT(out, ",\"order\":");
    pd_buf_puts(out, a->by_p_user ? "\"p_user\"" : "\"lift\"");
    PD_BUF_LIT(out, ",\"top\":");
    pd_buf_put_i64(out, a->q.top);
    PD_BUF_LIT(out, ",\"dimensions\":{");
    for (int j = 0; j < m->nsd; j++) {
        const pd_dim *dim = &s->dims[m->sdims[j]];
        const sc_dim *U = &m->u[j], *P = m->p[j];
        size_t cap = dim->type == PD_DIM_NUMERIC ? (size_t)dim->nbounds + 1 : U->n;
        sc_aff *e = pd_malloc((cap ? cap : 1) * sizeof *e);
        size_t n = 0;
        if (dim->type == PD_DIM_NUMERIC) {
            for (int k = 0; k <= dim->nbounds; k++)
                if (U->hist[k] > 0) e[n++] = (sc_aff){NULL, 0, k, U->hist[k], 0, 0, 0, 0};
        } else {
            for (size_t i = 0; i < U->cap; i++)
                if (U->tab[i].v && U->tab[i].c > 0)
                    e[n++] = (sc_aff){U->tab[i].v, U->tab[i].len, 0, U->tab[i].c, 0, 0, 0, 0};
        }
        for (size_t i = 0; i < n; i++) {
            double np = dim->type == PD_DIM_NUMERIC ? P->hist[e[i].k]
                                                    : tab_get(P, XXH3_64bits(e[i].v, e[i].len), e[i].v, e[i].len);
            probs(e[i].n, U->N, np, P->N, P->K, a->alpha, &e[i].pu, &e[i].pp);
            e[i].lift = e[i].pu / e[i].pp;
            e[i].key = a->by_p_user ? e[i].pu : e[i].lift;
        }
        if (n > 1) qsort(e, n, sizeof *e, aff_cmp);
        if (n > (size_t)a->q.top) n = (size_t)a->q.top;
        if (j) pd_buf_putc(out, ',');
        pd_buf_json_str(out, dim->name, strlen(dim->name));
        PD_BUF_LIT(out, ":{\"type\":");
        pd_buf_puts(out, dim->type == PD_DIM_NUMERIC ? "\"numeric\"" : "\"categorical\"");
        PD_BUF_LIT(out, ",\"total\":");
        put_num(out, U->N);
        PD_BUF_LIT(out, ",\"values\":[");
        for (size_t i = 0; i < n; i++) {
            if (i) pd_buf_putc(out, ',');
            if (e[i].v) {
                PD_BUF_LIT(out, "{\"value\":");
                pd_buf_json_str(out, e[i].v, e[i].len);
            } else {
                PD_BUF_LIT(out, "{\"le\":");
                if (e[i].k < dim->nbounds) put_num(out, dim->bounds[e[i].k]);
                else PD_BUF_LIT(out, "\"+Inf\"");
            }
            PD_BUF_LIT(out, ",\"count\":");
            put_num(out, e[i].n);
            PD_BUF_LIT(out, ",\"p_user\":");
            put_num(out, e[i].pu);
            PD_BUF_LIT(out, ",\"p_population\":");
            put_num(out, e[i].pp);
            PD_BUF_LIT(out, ",\"lift\":");
            put_num(out, e[i].lift);
            pd_buf_putc(out, '}');
        }
        PD_BUF_LIT(out, "]}");
        pd_free(e);
    }
    pd_buf_putc(out, '}');
}

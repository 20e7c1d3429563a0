/*
 * event_cjson.c -- the value oracle of the event tests: the field rules of
 * docs/data-model.md (user_id, ts, type, event_id, attribute containers and
 * attributes) applied to a cJSON parse tree. It is NOT the definition of
 * the JSON dialect: which documents are JSON is decided by the strict
 * Python labels of tests/json_corpus.py. pd_event_cjson_compare compares
 * the fields pd_event_parse extracts with this extraction, only on
 * documents that pd_event_parse accepts as JSON (cJSON accepts a superset
 * of RFC 8259) and that hold no \u0000 escape (cJSON's strings end at
 * their first NUL, RFC strings do not).
 *
 * Ownership: the event's strings point into r->root (the cJSON tree) or
 * r->numtext and stay valid until pd_event_cjson_free.
 */
#include "event_cjson.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define PD_EV_DEFAULT_MAX_BYTES ((size_t)1 << 20)
#define TWO_POW_53 9007199254740992.0
#define TWO_POW_63 9223372036854775808.0

/* JSON type name of a cJSON node, for error messages. */
static const char *json_type_name(const cJSON *j)
{
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsObject(j)) return "object";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsBool(j)) return "boolean";
    if (cJSON_IsNull(j)) return "null";
    return "invalid";
}

/* Resets the public fields; attrs[] past nattrs are never read,
 * so they are left alone (the struct is ~3.6 KB). */
static void ev_reset(pd_event *ev)
{
    ev->user_id = ev->event_id = ev->type = NULL;
    ev->user_id_len = ev->event_id_len = ev->type_len = 0;
    ev->ts_ms = 0;
    ev->nattrs = 0;
    ev->n_bad_attrs = 0;
}

static int is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Member `name` of object `obj` (the first one when keys repeat), or NULL.
 * Same result as cJSON_GetObjectItemCaseSensitive, but compares the first
 * byte inline before calling strcmp: attribute lookup is the hot part of
 * event parsing (20 dimensions x 2 paths per event) and this makes it
 * several times cheaper. Walks the public child/next/string members. */
static const cJSON *obj_get(const cJSON *obj, const char *name)
{
    const char c0 = name[0];
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && c->string[0] == c0 && strcmp(c->string, name) == 0) return c;
    return NULL;
}

/* Validates a required string field of 1..maxlen bytes. On success sets
 * *out / *outlen to the string owned by the cJSON tree. Returns 0 or the
 * given reason code with a message in err. */
static int get_required_str(const cJSON *root, const char *name, size_t maxlen,
                            int r_missing, int r_type, int r_empty, int r_long,
                            const char **out, size_t *outlen, char *err, size_t errlen)
{
    const cJSON *j = obj_get(root, name);
    if (!j || cJSON_IsNull(j))
        return pd_seterr(err, errlen, r_missing, "missing required field '%s'%s", name,
                         j ? " (null)" : "");
    if (!cJSON_IsString(j) || !j->valuestring)
        return pd_seterr(err, errlen, r_type, "field '%s': expected string, got %s", name,
                         json_type_name(j));
    size_t n = strlen(j->valuestring);
    if (n == 0)
        return pd_seterr(err, errlen, r_empty, "field '%s': expected non-empty string, got \"\"",
                         name);
    if (n > maxlen)
        return pd_seterr(err, errlen, r_long,
                         "field '%s': expected at most %zu bytes, got %zu bytes", name, maxlen, n);
    *out = j->valuestring;
    *outlen = n;
    return PD_EV_OK;
}

static int get_ts(const cJSON *root, int64_t *ms, char *err, size_t errlen)
{
    const cJSON *j = obj_get(root, "ts");
    int64_t v;
    if (!j || cJSON_IsNull(j))
        return pd_seterr(err, errlen, PD_EV_MISSING_TS, "missing required field 'ts'%s",
                         j ? " (null)" : "");
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (!(d >= -TWO_POW_63 && d < TWO_POW_63))
            return pd_seterr(err, errlen, PD_EV_BAD_TS_FORMAT,
                             "field 'ts': expected integer epoch ms, got %.17g (beyond int64)", d);
        if (d != floor(d))
            return pd_seterr(err, errlen, PD_EV_BAD_TS_FORMAT,
                             "field 'ts': expected integer epoch ms, got non-integral %.17g", d);
        v = (int64_t)d;
    } else if (cJSON_IsString(j) && j->valuestring) {
        size_t n = strlen(j->valuestring);
        if (pd_ts_parse_rfc3339(j->valuestring, n, &v) != PD_OK)
            return pd_seterr(err, errlen, PD_EV_BAD_TS_FORMAT,
                             "field 'ts': expected RFC 3339 timestamp "
                             "(YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)), got \"%.64s\"%s",
                             j->valuestring, n > 64 ? "..." : "");
    } else {
        return pd_seterr(err, errlen, PD_EV_BAD_TS_TYPE,
                         "field 'ts': expected integer epoch ms or RFC 3339 string, got %s",
                         json_type_name(j));
    }
    if (v < PD_TS_MIN_MS || v >= PD_TS_MAX_MS)
        return pd_seterr(err, errlen, PD_EV_TS_OUT_OF_RANGE,
                         "field 'ts': expected epoch ms in [%lld, %lld) "
                         "(2000-01-01 to 2200-01-01), got %lld",
                         (long long)PD_TS_MIN_MS, (long long)PD_TS_MAX_MS, (long long)v);
    *ms = v;
    return PD_EV_OK;
}

static int get_event_id(const cJSON *root, const char **out, size_t *outlen, char *err,
                        size_t errlen)
{
    const cJSON *j = obj_get(root, "event_id");
    if (!j || cJSON_IsNull(j)) return PD_EV_OK; /* optional */
    if (!cJSON_IsString(j) || !j->valuestring)
        return pd_seterr(err, errlen, PD_EV_BAD_EVENT_ID,
                         "field 'event_id': expected string, got %s", json_type_name(j));
    size_t n = strlen(j->valuestring);
    if (n == 0)
        return pd_seterr(err, errlen, PD_EV_BAD_EVENT_ID,
                         "field 'event_id': expected non-empty string, got \"\"");
    if (n > PD_MAX_EVENT_ID)
        return pd_seterr(err, errlen, PD_EV_BAD_EVENT_ID,
                         "field 'event_id': expected at most %d bytes, got %zu bytes",
                         PD_MAX_EVENT_ID, n);
    *out = j->valuestring;
    *outlen = n;
    return PD_EV_OK;
}

/* Top-level attribute containers ("item", "filters"), looked up once per
 * event. node is NULL when the container is absent or JSON null. */
#define CTR_CACHE 8
typedef struct {
    int n;
    const char *name[CTR_CACHE];
    const cJSON *node[CTR_CACHE];
} ctr_cache;

/* Returns the cache slot holding `name`, or -1. */
static int ctr_find(const ctr_cache *cc, const char *name)
{
    for (int i = 0; i < cc->n; i++)
        if (cc->name[i][0] == name[0] && strcmp(cc->name[i], name) == 0) return i;
    return -1;
}

/* Checks every top-level container named by a schema path of depth >= 2
 * (each distinct name once) and remembers the first CTR_CACHE of them in
 * *cc; names beyond that are checked again each time they appear. */
static int check_containers(const cJSON *root, const pd_schema *s, ctr_cache *cc, char *err,
                            size_t errlen)
{
    cc->n = 0;
    for (int d = 0; d < s->ndims; d++) {
        const pd_dim *dim = &s->dims[d];
        for (int p = 0; p < dim->npaths; p++) {
            const pd_path *path = &dim->paths[p];
            if (path->depth < 2 || ctr_find(cc, path->seg[0]) >= 0) continue;
            const cJSON *c = obj_get(root, path->seg[0]);
            if (c && !cJSON_IsObject(c) && !cJSON_IsNull(c))
                return pd_seterr(err, errlen, PD_EV_BAD_ATTR_CONTAINER,
                                 "field '%s': expected object or null, got %s", path->seg[0],
                                 json_type_name(c));
            if (cc->n < CTR_CACHE) {
                cc->name[cc->n] = path->seg[0];
                cc->node[cc->n] = cJSON_IsObject(c) ? c : NULL;
                cc->n++;
            }
        }
    }
    return PD_EV_OK;
}

/* Resolves dimension `d` into ev->attrs[d]. The value node is the first
 * present non-null value along the dimension's paths. */
static void resolve_attr(pd_event_cjson *r, pd_event *ev, const cJSON *root, const ctr_cache *cc, const pd_dim *dim,
                         int d)
{
    pd_attr *a = &ev->attrs[d];
    const cJSON *v = NULL;
    int bad_container = 0;
    a->kind = PD_ATTR_ABSENT;
    a->len = 0;
    a->s = NULL;
    a->num = 0;
    for (int p = 0; p < dim->npaths && !v && !bad_container; p++) {
        const pd_path *path = &dim->paths[p];
        const cJSON *cur = root;
        int k = 0;
        if (path->depth >= 2) {
            int slot = ctr_find(cc, path->seg[0]);
            if (slot >= 0) {
                cur = cc->node[slot];
                if (!cur) continue; /* container absent or null */
                k = 1;
            }
        }
        for (; k < path->depth; k++) {
            if (!cJSON_IsObject(cur)) {
                /* top level is checked by check_containers; deeper ones
                 * make the attribute bad */
                bad_container = 1;
                cur = NULL;
                break;
            }
            cur = obj_get(cur, path->seg[k]);
            if (!cur || cJSON_IsNull(cur)) {
                cur = NULL;
                break;
            }
        }
        v = cur;
    }
    if (bad_container) goto bad;
    if (!v) return;

    if (dim->type == PD_DIM_NUMERIC) {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) goto bad;
        a->kind = PD_ATTR_NUM;
        a->num = v->valuedouble;
        return;
    }
    if (cJSON_IsString(v) && v->valuestring) {
        size_t n = strlen(v->valuestring);
        if (n == 0 || n > PD_MAX_CAT_VALUE || !pd_utf8_valid(v->valuestring, n)) goto bad;
        a->kind = PD_ATTR_STR;
        a->s = v->valuestring;
        a->len = (uint32_t)n;
        return;
    }
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        char *t = r->numtext[d];
        int n;
        if (!isfinite(x)) goto bad;
        if (x == floor(x) && fabs(x) < TWO_POW_53)
            n = snprintf(t, sizeof r->numtext[d], "%lld", (long long)x);
        else
            n = snprintf(t, sizeof r->numtext[d], "%.17g", x);
        pd_assert(n > 0 && (size_t)n < sizeof r->numtext[d]);
        a->kind = PD_ATTR_STR;
        a->s = t;
        a->len = (uint32_t)n;
        return;
    }
    if (cJSON_IsBool(v)) {
        int t = cJSON_IsTrue(v);
        a->kind = PD_ATTR_STR;
        a->s = t ? "true" : "false";
        a->len = t ? 4 : 5;
        return;
    }
bad:
    a->kind = PD_ATTR_BAD;
    ev->n_bad_attrs++;
}

int pd_event_cjson_parse(pd_event_cjson *r, const pd_schema *s, const char *buf, size_t len,
                       size_t max_bytes, char *err, size_t errlen)
{
    pd_event *ev = &r->ev;
    cJSON *root = NULL;
    const char *end = NULL;
    ctr_cache cc;
    int rc;

    pd_assert(ev && s && s->ndims >= 0 && s->ndims <= PD_MAX_DIMS);
    ev_reset(ev);
    r->root = NULL;
    if (err && errlen) err[0] = '\0';
    if (max_bytes == 0) max_bytes = PD_EV_DEFAULT_MAX_BYTES;

    if (len == 0 || !buf) return pd_seterr(err, errlen, PD_EV_EMPTY, "empty value (0 bytes)");
    if (len > max_bytes)
        return pd_seterr(err, errlen, PD_EV_TOO_LARGE, "value is %zu bytes, expected at most %zu",
                         len, max_bytes);
    root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root) {
        size_t off = (end && end >= buf && end <= buf + len) ? (size_t)(end - buf) : 0;
        return pd_seterr(err, errlen, PD_EV_INVALID_JSON, "invalid JSON near byte %zu of %zu",
                         off, len);
    }
    /* cJSON_ParseWithLength accepts trailing garbage; reject anything but
     * whitespace after the value. */
    pd_assert(end && end >= buf && end <= buf + len);
    while (end < buf + len && is_json_ws(*end)) end++;
    if (end != buf + len) {
        rc = pd_seterr(err, errlen, PD_EV_INVALID_JSON,
                       "invalid JSON: unexpected data after the top-level value at byte %zu of %zu",
                       (size_t)(end - buf), len);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        rc = pd_seterr(err, errlen, PD_EV_NOT_OBJECT, "top-level value: expected object, got %s",
                       json_type_name(root));
        goto fail;
    }

    rc = get_required_str(root, "user_id", PD_MAX_USER_ID, PD_EV_MISSING_USER_ID,
                          PD_EV_BAD_USER_ID_TYPE, PD_EV_EMPTY_USER_ID, PD_EV_USER_ID_TOO_LONG,
                          &ev->user_id, &ev->user_id_len, err, errlen);
    if (rc) goto fail;
    rc = get_ts(root, &ev->ts_ms, err, errlen);
    if (rc) goto fail;
    rc = get_required_str(root, "type", PD_MAX_TYPE, PD_EV_MISSING_TYPE, PD_EV_BAD_TYPE_TYPE,
                          PD_EV_EMPTY_TYPE, PD_EV_TYPE_TOO_LONG, &ev->type, &ev->type_len, err,
                          errlen);
    if (rc) goto fail;
    rc = get_event_id(root, &ev->event_id, &ev->event_id_len, err, errlen);
    if (rc) goto fail;
    rc = check_containers(root, s, &cc, err, errlen);
    if (rc) goto fail;

    ev->nattrs = s->ndims;
    for (int d = 0; d < s->ndims; d++) resolve_attr(r, ev, root, &cc, &s->dims[d], d);
    r->root = root;
    return PD_EV_OK;

fail:
    cJSON_Delete(root);
    ev_reset(ev);
    return rc;
}

void pd_event_cjson_free(pd_event_cjson *r)
{
    if (!r) return;
    cJSON_Delete(r->root);
    r->root = NULL;
    ev_reset(&r->ev);
}

/* ---- differential check (shared by the unit test and the fuzzer) ---- */

static void set_path(pd_path *p, const char *spec)
{
    memset(p, 0, sizeof *p);
    const char *s = spec;
    while (*s && p->depth < PD_MAX_PATH_DEPTH) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        memcpy(p->seg[p->depth], s, n);
        p->seg[p->depth][n] = '\0';
        p->depth++;
        s += n + (dot ? 1 : 0);
        if (!dot) break;
    }
}

static void add_dim(pd_schema *s, const char *name, pd_dim_type t, const char *p1,
                    const char *p2)
{
    pd_dim *d = &s->dims[s->ndims++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->type = t;
    set_path(&d->paths[d->npaths++], p1);
    if (p2) set_path(&d->paths[d->npaths++], p2);
}

void pd_event_cjson_schema(pd_schema *s)
{
    memset(s, 0, sizeof *s);
    s->max_values = 64;
    add_dim(s, "color", PD_DIM_CATEGORICAL, "item.color", "filters.color");
    add_dim(s, "price", PD_DIM_NUMERIC, "item.price", "filters.price");
    add_dim(s, "price_s", PD_DIM_CATEGORICAL, "item.price", NULL);
    add_dim(s, "deep", PD_DIM_CATEGORICAL, "a.b.c", "top");
    add_dim(s, "deepnum", PD_DIM_NUMERIC, "a.b.d", "topnum");
    add_dim(s, "four", PD_DIM_CATEGORICAL, "p.q.r.s", "item.four");
    add_dim(s, "uid", PD_DIM_CATEGORICAL, "user_id", NULL);
    add_dim(s, "utf", PD_DIM_CATEGORICAL, "item.\xc3\xa9t\xc3\xa9", "item.k\"e\\y");
    add_dim(s, "ctl", PD_DIM_CATEGORICAL, "item.a\tb", "item./");
    for (int i = 0; i < 10; i++) {
        char name[16], path[24];
        snprintf(name, sizeof name, "c%d", i);
        snprintf(path, sizeof path, "c%d.v", i);
        add_dim(s, name, i % 3 == 2 ? PD_DIM_NUMERIC : PD_DIM_CATEGORICAL, path,
                i % 2 ? "item.v" : NULL);
    }
}

size_t pd_event_cjson_show(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = '\0';
    return o;
}

static int same_str(const char *a, size_t an, const char *b, size_t bn)
{
    if (!a || !b) return !a && !b && an == bn;
    return an == bn && memcmp(a, b, an) == 0;
}

/* Whether buf holds the 6 bytes \u0000 (conservatively: also after an
 * escaped backslash). */
static int has_nul_escape(const char *buf, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++)
        if (buf[i] == '\\' && memcmp(buf + i + 1, "u0000", 5) == 0) return 1;
    return 0;
}

int pd_event_cjson_compare(const pd_schema *s, const char *buf, size_t len, size_t max_bytes,
                           int *compared, char *why, size_t whylen)
{
    pd_event ev;
    pd_event_cjson r;
    char e1[512], e2[512];
    const char *diff = NULL;
    int d = -1;
    int rc1 = pd_event_parse(&ev, s, buf, len, max_bytes, e1, sizeof e1);
    if (compared) *compared = 0;
    if (rc1 == PD_EV_EMPTY || rc1 == PD_EV_TOO_LARGE || rc1 == PD_EV_INVALID_UTF8 ||
        rc1 == PD_EV_INVALID_JSON || has_nul_escape(buf, len)) {
        pd_event_free(&ev);
        return 0;
    }
    if (compared) *compared = 1;
    int rc2 = pd_event_cjson_parse(&r, s, buf, len, max_bytes, e2, sizeof e2);
    const pd_event *o = &r.ev;
    if (rc1 != rc2) diff = "reason";
    else if ((rc1 != PD_EV_OK) && (e1[0] == '\0' || e2[0] == '\0')) diff = "error message";
    else if (!same_str(ev.user_id, ev.user_id_len, o->user_id, o->user_id_len)) diff = "user_id";
    else if (!same_str(ev.event_id, ev.event_id_len, o->event_id, o->event_id_len)) diff = "event_id";
    else if (!same_str(ev.type, ev.type_len, o->type, o->type_len)) diff = "type";
    else if (ev.ts_ms != o->ts_ms) diff = "ts_ms";
    else if (ev.nattrs != o->nattrs) diff = "nattrs";
    else if (ev.n_bad_attrs != o->n_bad_attrs) diff = "n_bad_attrs";
    else {
        for (d = 0; d < ev.nattrs && !diff; d++) {
            const pd_attr *a = &ev.attrs[d], *b = &o->attrs[d];
            if (a->kind != b->kind) diff = "attr kind";
            else if (memcmp(&a->num, &b->num, sizeof a->num) != 0) diff = "attr num";
            else if (!same_str(a->s, a->len, b->s, b->len)) diff = "attr string";
        }
        d--;
    }
    if (diff && why) {
        char in[400];
        pd_event_cjson_show(in, sizeof in, buf, len < 300 ? len : 300);
        snprintf(why, whylen, "%s differs (dim %d): pd_event_parse rc %d \"%s\" vs cJSON rc %d \"%s\"; input (%zu bytes) %s",
                 diff, d, rc1, e1, rc2, e2, len, in);
    }
    pd_event_free(&ev);
    pd_event_cjson_free(&r);
    return diff != NULL;
}

/*
 * event.c -- parse and validate one interaction event (pure function).
 *
 * Design. pd_event_parse turns one Kafka record value into a pd_event, or
 * rejects it with exactly one pd_ev_reason and a message that names the
 * field, what was expected and what was found. It does no I/O and keeps no
 * state between calls; the only allocation is cJSON's parse tree, which the
 * event owns (ev->root_) until pd_event_free.
 *
 * Checks run in a fixed order and the first failure decides the reason:
 *   1. empty value, 2. over max_bytes, 3. whole value not valid UTF-8,
 *   4. not JSON (including trailing non-whitespace after the value),
 *   5. top level not an object,
 *   6. user_id, 7. ts, 8. type, 9. event_id,
 *   10. attribute containers (the first segment of every schema path of
 *       depth >= 2, i.e. "item" / "filters"): present and neither object nor
 *       null -> bad_attr_container.
 * For the required fields user_id, ts and type, JSON null is treated the
 * same as a missing key (missing_*); for event_id null means absent.
 *
 * Attributes. For each dimension the schema's paths are tried in order. A
 * path whose value (or any container on the way) is missing or null is
 * skipped; the first path with a present, non-null value decides the
 * attribute, even if that value has the wrong type (then PD_ATTR_BAD, no
 * fall-through to later paths). A non-object, non-null container below
 * the top level also makes the attribute PD_ATTR_BAD.
 *   categorical: string 1..PD_MAX_CAT_VALUE bytes of valid UTF-8;
 *                finite number -> "%lld" when integral and |v| < 2^53,
 *                else "%.17g" (text kept in ev->numtext_[dim]);
 *                true/false -> "true"/"false".
 *   numeric:     finite number.
 *   Everything else (objects, arrays, empty or over-long strings, booleans
 *   or strings for numeric dimensions, non-finite numbers) is PD_ATTR_BAD
 *   and counted in ev->n_bad_attrs; the event stays valid.
 *
 * Cost: this is on the ingest hot path. Beyond cJSON's own tree there are
 * no allocations; the UTF-8 check skips ASCII eight bytes at a time, each
 * top-level container is looked up once per event, and member lookup
 * (obj_get) filters on the first byte before strcmp. Measured with
 * callgrind on a 16-attribute event, full parse+validate+free costs about
 * 1.35x a bare cJSON parse+delete.
 *
 * Allocation arena. cJSON allocates every node and string separately; on
 * the hot path malloc/free were a large part of the cost. pd_event_parse
 * therefore installs (once, process-wide) cJSON hooks that serve
 * allocations from a thread-local bump arena while a parse runs on that
 * thread, and fall back to malloc/free everywhere else (other threads and
 * other modules use cJSON too, with their own trees). Freeing arena memory
 * is a no-op (recognised by address), and pd_event_free does not even walk
 * a tree that lies wholly in the arena; the arena is reset at the start of a
 * parse when no event parsed into it is still alive (pd_event_free of the
 * previous one), else that parse just uses malloc. It grows (at reset) to
 * twice what the largest tree needed, up to ARENA_MAX; an allocation that
 * does not fit goes to malloc. Consequence: an event must be freed on the
 * thread that parsed it. The arena of a thread is freed when it exits.
 *
 * Strings: cJSON decodes escapes into NUL-terminated strings, so a value
 * containing "\u0000" is seen truncated at the NUL (lengths come from
 * strlen). The UTF-8 check of the whole buffer plus cJSON's rejection of
 * unpaired surrogate escapes means decoded strings are valid UTF-8.
 */
#include "event.h"

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

#define PD_EV_DEFAULT_MAX_BYTES ((size_t)1 << 20)
#define TWO_POW_53 9007199254740992.0
#define TWO_POW_63 9223372036854775808.0
#define ARENA_MIN ((size_t)64 << 10)
#define ARENA_MAX ((size_t)16 << 20)

/* ---- the parse arena (see the design comment) ---- */

typedef struct {
    char *base;     /* cap bytes, owned */
    size_t cap, used;
    size_t want;    /* bytes the last parse needed (incl. what overflowed) */
    int active;     /* a parse is running on this thread */
    int spilled;    /* the last parse also allocated with malloc */
    int live;       /* events parsed into the arena and not yet freed */
} ev_arena;

static __thread ev_arena *tl_arena;
static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static int in_arena(const ev_arena *a, const void *p)
{
    return a && (const char *)p >= a->base && (const char *)p < a->base + a->cap;
}

static void *arena_malloc(size_t n)
{
    ev_arena *a = tl_arena;
    if (a && a->active) {
        size_t sz = (n + 15) & ~(size_t)15;
        a->want += sz;
        if (sz <= a->cap - a->used) {
            void *p = a->base + a->used;
            a->used += sz;
            return p;
        }
        a->spilled = 1;
    }
    return malloc(n);
}

static void arena_free(void *p)
{
    if (!in_arena(tl_arena, p)) free(p);
}

static void arena_destroy(void *arg)
{
    ev_arena *a = arg;
    free(a->base);
    free(a);
}

static void arena_init_once(void)
{
    int rc = pthread_key_create(&arena_key, arena_destroy);
    pd_assert(rc == 0);
    cJSON_Hooks h = {arena_malloc, arena_free};
    cJSON_InitHooks(&h);
}

/* Starts a parse: returns the arena to deactivate afterwards, or NULL
 * when this parse uses malloc (an earlier event is still alive). */
static ev_arena *arena_begin(void)
{
    pthread_once(&arena_once, arena_init_once);
    ev_arena *a = tl_arena;
    if (!a) {
        a = pd_calloc(1, sizeof *a);
        a->cap = ARENA_MIN;
        a->base = pd_malloc(a->cap);
        tl_arena = a;
        pthread_setspecific(arena_key, a);
    }
    if (a->live) return NULL;
    if (a->want > a->cap && a->cap < ARENA_MAX) {
        size_t cap = a->cap;
        while (cap < a->want * 2 && cap < ARENA_MAX) cap *= 2;
        free(a->base);
        a->base = pd_malloc(cap);
        a->cap = cap;
    }
    a->used = 0;
    a->want = 0;
    a->spilled = 0;
    a->active = 1;
    return a;
}

static const char *const reason_names[PD_EV__COUNT] = {
    [PD_EV_OK] = "ok",
    [PD_EV_EMPTY] = "empty",
    [PD_EV_TOO_LARGE] = "too_large",
    [PD_EV_INVALID_JSON] = "invalid_json",
    [PD_EV_NOT_OBJECT] = "not_object",
    [PD_EV_INVALID_UTF8] = "invalid_utf8",
    [PD_EV_MISSING_USER_ID] = "missing_user_id",
    [PD_EV_BAD_USER_ID_TYPE] = "bad_user_id_type",
    [PD_EV_EMPTY_USER_ID] = "empty_user_id",
    [PD_EV_USER_ID_TOO_LONG] = "user_id_too_long",
    [PD_EV_MISSING_TS] = "missing_ts",
    [PD_EV_BAD_TS_TYPE] = "bad_ts_type",
    [PD_EV_BAD_TS_FORMAT] = "bad_ts_format",
    [PD_EV_TS_OUT_OF_RANGE] = "ts_out_of_range",
    [PD_EV_MISSING_TYPE] = "missing_type",
    [PD_EV_BAD_TYPE_TYPE] = "bad_type_type",
    [PD_EV_EMPTY_TYPE] = "empty_type",
    [PD_EV_TYPE_TOO_LONG] = "type_too_long",
    [PD_EV_BAD_EVENT_ID] = "bad_event_id",
    [PD_EV_BAD_ATTR_CONTAINER] = "bad_attr_container",
    [PD_EV_KEY_MISMATCH] = "key_mismatch",
    [PD_EV_FUTURE_TS] = "future_ts",
};

const char *pd_ev_reason_name(int reason)
{
    if (reason < 0 || reason >= PD_EV__COUNT || !reason_names[reason]) return "unknown";
    return reason_names[reason];
}

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

/* Length of the all-ASCII prefix of [s, s+n), eight bytes at a time. The
 * first non-ASCII byte always starts a UTF-8 sequence, so validation can
 * resume there. */
static size_t ascii_prefix(const char *s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & UINT64_C(0x8080808080808080)) break;
    }
    while (i < n && !((unsigned char)s[i] & 0x80)) i++;
    return i;
}

/* Resets the public fields and root_; attrs[] past nattrs are never read,
 * so they are left alone (the struct is ~3.6 KB). */
static void ev_reset(pd_event *ev)
{
    ev->user_id = ev->event_id = ev->type = NULL;
    ev->user_id_len = ev->event_id_len = ev->type_len = 0;
    ev->ts_ms = 0;
    ev->nattrs = 0;
    ev->n_bad_attrs = 0;
    ev->root_ = NULL;
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

/* Writes the decimal text of integer v into out (>= 21 bytes); returns the
 * length. */
static size_t fmt_i64(char *out, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + (u % 10));
        u /= 10;
    } while (u);
    if (v < 0) out[len++] = '-';
    while (n) out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

/* Resolves dimension `d` into ev->attrs[d]. The value node is the first
 * present non-null value along the dimension's paths. */
static void resolve_attr(pd_event *ev, const cJSON *root, const ctr_cache *cc, const pd_dim *dim,
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
        char *t = ev->numtext_[d];
        int n;
        if (!isfinite(x)) goto bad;
        if (x == floor(x) && fabs(x) < TWO_POW_53)
            n = (int)fmt_i64(t, (int64_t)x);
        else
            n = snprintf(t, sizeof ev->numtext_[d], "%.17g", x);
        pd_assert(n > 0 && (size_t)n < sizeof ev->numtext_[d]);
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

int pd_event_parse(pd_event *ev, const pd_schema *s, const char *buf, size_t len,
                   size_t max_bytes, char *err, size_t errlen)
{
    cJSON *root = NULL;
    const char *end = NULL;
    ctr_cache cc;
    int rc;

    pd_assert(ev && s && s->ndims >= 0 && s->ndims <= PD_MAX_DIMS);
    ev_reset(ev);
    if (err && errlen) err[0] = '\0';
    if (max_bytes == 0) max_bytes = PD_EV_DEFAULT_MAX_BYTES;

    if (len == 0 || !buf) return pd_seterr(err, errlen, PD_EV_EMPTY, "empty value (0 bytes)");
    if (len > max_bytes)
        return pd_seterr(err, errlen, PD_EV_TOO_LARGE, "value is %zu bytes, expected at most %zu",
                         len, max_bytes);
    size_t ascii = ascii_prefix(buf, len);
    if (ascii < len && !pd_utf8_valid(buf + ascii, len - ascii))
        return pd_seterr(err, errlen, PD_EV_INVALID_UTF8, "value is not valid UTF-8");

    ev_arena *arena = arena_begin();
    root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (arena) {
        arena->active = 0;
        if (in_arena(arena, root)) arena->live++;
    }
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
    for (int d = 0; d < s->ndims; d++) resolve_attr(ev, root, &cc, &s->dims[d], d);
    ev->root_ = root;
    return PD_EV_OK;

fail:
    if (in_arena(tl_arena, root)) tl_arena->live--;
    cJSON_Delete(root);
    ev_reset(ev);
    return rc;
}

void pd_event_free(pd_event *ev)
{
    if (!ev) return;
    if (ev->root_ && in_arena(tl_arena, ev->root_)) {
        /* wholly in the arena: nothing to walk, the next reset reclaims it */
        tl_arena->live--;
        if (!tl_arena->spilled) {
            ev_reset(ev);
            return;
        }
    }
    cJSON_Delete(ev->root_);
    ev_reset(ev);
}

/*
 * schema.c -- profile schema: built-in vehicle schema, JSON loader,
 * canonical JSON writer and fingerprint.
 *
 * The fingerprint is XXH3-64 of the canonical JSON (pd_schema_to_json), so
 * two schemas that read the same events into the same dimensions, in the
 * same order, with the same buckets and caps, have the same fingerprint
 * (each categorical dimension's effective cap is written out, so a cap
 * given per dimension and the same cap given as the default agree).
 */
#include "schema.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cjson/cJSON.h>
#include <xxhash.h>

static int parse_path(pd_path *p, const char *text, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    const char *s = text;
    if (!*s) return pd_seterr(err, errlen, PD_EINVAL, "empty path");
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (n == 0 || n >= PD_MAX_NAME)
            return pd_seterr(err, errlen, PD_EINVAL, "path '%s': bad segment", text);
        if (p->depth >= PD_MAX_PATH_DEPTH)
            return pd_seterr(err, errlen, PD_EINVAL, "path '%s': deeper than %d", text, PD_MAX_PATH_DEPTH);
        memcpy(p->seg[p->depth], s, n);
        p->seg[p->depth][n] = '\0';
        p->depth++;
        s += n;
        if (*s == '.') {
            s++;
            if (!*s) return pd_seterr(err, errlen, PD_EINVAL, "path '%s': trailing dot", text);
        }
    }
    return PD_OK;
}

static void default_paths(pd_dim *d)
{
    d->npaths = 2;
    d->paths[0].depth = d->paths[1].depth = 2;
    snprintf(d->paths[0].seg[0], PD_MAX_NAME, "item");
    snprintf(d->paths[1].seg[0], PD_MAX_NAME, "filters");
    snprintf(d->paths[0].seg[1], PD_MAX_NAME, "%s", d->name);
    snprintf(d->paths[1].seg[1], PD_MAX_NAME, "%s", d->name);
}

/* The default "recent" (a schema without the key, and the built-in one):
 * the PD_RECENT_DEFAULT most recent events with their item id at "item.id"
 * and no attributes (see schema.h for why none). */
static void default_recent(pd_schema *s)
{
    s->recent_max = PD_RECENT_DEFAULT;
    s->recent_nattrs = 0;
    memset(&s->recent_item, 0, sizeof s->recent_item);
    s->recent_item.depth = 2;
    snprintf(s->recent_item.seg[0], PD_MAX_NAME, "item");
    snprintf(s->recent_item.seg[1], PD_MAX_NAME, "id");
}

static void finish(pd_schema *s)
{
    pd_buf b = {0};
    pd_schema_to_json(s, &b);
    s->fingerprint = XXH3_64bits(b.p, b.len);
    pd_buf_free(&b);
}

static void add_dim(pd_schema *s, const char *name, pd_dim_type t, const double *bounds, int nb)
{
    pd_dim *d = &s->dims[s->ndims++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->type = t;
    default_paths(d);
    for (int i = 0; i < nb; i++) d->bounds[i] = bounds[i];
    d->nbounds = nb;
}

void pd_schema_default(pd_schema *s, uint32_t max_values)
{
    static const char *cats[] = {"make", "model", "color", "fuel", "gearbox", "body", "condition",
                                 "seller_type", "region", "emission_class", "damaged", "doors"};
    static const double price[] = {5000, 10000, 15000, 20000, 30000, 50000, 75000, 100000};
    static const double mileage[] = {10000, 25000, 50000, 100000, 150000, 200000};
    static const double year[] = {2000, 2005, 2010, 2015, 2018, 2020, 2022, 2024};
    static const double power[] = {50, 75, 100, 150, 200, 300};
    static const double seats[] = {2, 4, 5, 7};
    static const double cc[] = {1000, 1400, 1600, 2000, 3000, 4000};
    static const double co2[] = {0, 50, 100, 130, 160, 200, 250};
    static const double owners[] = {1, 2, 3, 5};
    memset(s, 0, sizeof *s);
    s->max_values = max_values ? max_values : 64;
    for (size_t i = 0; i < PD_ARRAY_LEN(cats); i++) add_dim(s, cats[i], PD_DIM_CATEGORICAL, NULL, 0);
    add_dim(s, "price", PD_DIM_NUMERIC, price, (int)PD_ARRAY_LEN(price));
    add_dim(s, "mileage", PD_DIM_NUMERIC, mileage, (int)PD_ARRAY_LEN(mileage));
    add_dim(s, "year", PD_DIM_NUMERIC, year, (int)PD_ARRAY_LEN(year));
    add_dim(s, "power_kw", PD_DIM_NUMERIC, power, (int)PD_ARRAY_LEN(power));
    add_dim(s, "seats", PD_DIM_NUMERIC, seats, (int)PD_ARRAY_LEN(seats));
    add_dim(s, "engine_cc", PD_DIM_NUMERIC, cc, (int)PD_ARRAY_LEN(cc));
    add_dim(s, "co2_g_km", PD_DIM_NUMERIC, co2, (int)PD_ARRAY_LEN(co2));
    add_dim(s, "owners", PD_DIM_NUMERIC, owners, (int)PD_ARRAY_LEN(owners));
    default_recent(s);
    finish(s);
}

static int valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len >= PD_MAX_NAME) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* "tracked_types": absent, or an array of distinct type names (see
 * schema.h). */
static int load_tracked(pd_schema *s, const cJSON *tt, char *err, size_t errlen)
{
    if (!tt) return PD_OK;
    if (!cJSON_IsArray(tt) || cJSON_GetArraySize(tt) > PD_MAX_TRACKED)
        return pd_seterr(err, errlen, PD_EINVAL, "schema: \"tracked_types\" must be an array of at most %d event types",
                         PD_MAX_TRACKED);
    const cJSON *t;
    cJSON_ArrayForEach(t, tt) {
        if (!cJSON_IsString(t))
            return pd_seterr(err, errlen, PD_EINVAL, "schema: \"tracked_types\": entry %d is not a string", s->ntracked);
        const char *v = t->valuestring;
        size_t n = strlen(v);
        int ok = n >= 1 && n <= PD_MAX_TRACKED_NAME && strcmp(v, "*") != 0;
        for (size_t i = 0; ok && i < n; i++)
            if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f || v[i] == ',' || v[i] == ':') ok = 0;
        if (!ok)
            return pd_seterr(err, errlen, PD_EINVAL,
                             "schema: \"tracked_types\": entry %d must be 1-%d bytes without ',', ':' or control "
                             "characters, and not \"*\"",
                             s->ntracked, PD_MAX_TRACKED_NAME);
        if (pd_schema_tracked(s, v, n) >= 0)
            return pd_seterr(err, errlen, PD_EINVAL, "schema: \"tracked_types\": '%s' listed twice", v);
        memcpy(s->tracked[s->ntracked], v, n + 1);
        s->tracked_len[s->ntracked++] = (uint32_t)n;
    }
    return PD_OK;
}

/* "recent": absent (the default), or {"max", "item_id", "attributes"}
 * (see schema.h). */
static int load_recent(pd_schema *s, const cJSON *r, char *err, size_t errlen)
{
    char perr[160];
    if (!r) {
        default_recent(s);
        return PD_OK;
    }
    if (!cJSON_IsObject(r)) return pd_seterr(err, errlen, PD_EINVAL, "schema: \"recent\" must be an object");
    const cJSON *k;
    cJSON_ArrayForEach(k, r) {
        if (strcmp(k->string, "max") && strcmp(k->string, "item_id") && strcmp(k->string, "attributes"))
            return pd_seterr(err, errlen, PD_EINVAL, "schema: \"recent\": unknown key '%.40s' (max, item_id, attributes)",
                             k->string);
    }
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(r, "max");
    s->recent_max = PD_RECENT_DEFAULT;
    if (mx) {
        if (!cJSON_IsNumber(mx) || mx->valuedouble < 0 || mx->valuedouble > PD_MAX_RECENT ||
            mx->valuedouble != floor(mx->valuedouble))
            return pd_seterr(err, errlen, PD_EINVAL, "schema: \"recent\": \"max\" must be an integer from 0 to %d",
                             PD_MAX_RECENT);
        s->recent_max = (int)mx->valuedouble;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "item_id");
    if (id && !cJSON_IsString(id))
        return pd_seterr(err, errlen, PD_EINVAL, "schema: \"recent\": \"item_id\" must be a path string");
    if (parse_path(&s->recent_item, id ? id->valuestring : "item.id", perr, sizeof perr))
        return pd_seterr(err, errlen, PD_EINVAL, "schema: \"recent\": \"item_id\": %s", perr);
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(r, "attributes");
    if (at) {
        if (!cJSON_IsArray(at) || cJSON_GetArraySize(at) > PD_MAX_RECENT_ATTRS)
            return pd_seterr(err, errlen, PD_EINVAL,
                             "schema: \"recent\": \"attributes\" must be an array of at most %d dimension names",
                             PD_MAX_RECENT_ATTRS);
        const cJSON *a;
        cJSON_ArrayForEach(a, at) {
            int di = cJSON_IsString(a) ? pd_schema_find(s, a->valuestring, strlen(a->valuestring)) : -1;
            if (di < 0)
                return pd_seterr(err, errlen, PD_EINVAL, "schema: \"recent\": \"attributes\": '%.64s' is not a dimension",
                                 cJSON_IsString(a) ? a->valuestring : "(not a string)");
            for (int i = 0; i < s->recent_nattrs; i++)
                if (s->recent_attrs[i] == di)
                    return pd_seterr(err, errlen, PD_EINVAL, "schema: \"recent\": \"attributes\": '%s' listed twice",
                                     a->valuestring);
            s->recent_attrs[s->recent_nattrs++] = di;
        }
    }
    if (s->recent_max == 0) { /* off: nothing else is kept (one canonical form) */
        memset(&s->recent_item, 0, sizeof s->recent_item);
        s->recent_nattrs = 0;
    }
    return PD_OK;
}

int pd_schema_load_json(pd_schema *s, const char *json, size_t len, uint32_t max_values,
                        char *err, size_t errlen)
{
    int rc = PD_EINVAL;
    char perr[160];
    memset(s, 0, sizeof *s);
    s->max_values = max_values ? max_values : 64;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return pd_seterr(err, errlen, PD_EINVAL, "schema: invalid JSON");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(root, "dimensions");
    if (!cJSON_IsArray(dims)) {
        pd_seterr(err, errlen, rc, "schema: \"dimensions\" must be an array");
        goto out;
    }
    const cJSON *mv = cJSON_GetObjectItemCaseSensitive(root, "categorical_max_values");
    if (mv) {
        if (!cJSON_IsNumber(mv) || mv->valuedouble < 1 || mv->valuedouble > PD_MAX_CAP ||
            mv->valuedouble != floor(mv->valuedouble)) {
            pd_seterr(err, errlen, rc, "schema: \"categorical_max_values\" must be an integer from 1 to %d",
                      PD_MAX_CAP);
            goto out;
        }
        if (!max_values) s->max_values = (uint32_t)mv->valuedouble;
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, dims) {
        if (s->ndims >= PD_MAX_DIMS) {
            pd_seterr(err, errlen, rc, "schema: more than %d dimensions", PD_MAX_DIMS);
            goto out;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(d, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(d, "type");
        if (!cJSON_IsString(name) || !valid_name(name->valuestring)) {
            pd_seterr(err, errlen, rc, "schema: dimension %d: \"name\" must be 1-63 chars of [A-Za-z0-9_-]", s->ndims);
            goto out;
        }
        const char *nm = name->valuestring;
        if (pd_schema_find(s, nm, strlen(nm)) >= 0) {
            pd_seterr(err, errlen, rc, "schema: dimension '%s' declared twice", nm);
            goto out;
        }
        pd_dim *dim = &s->dims[s->ndims];
        memset(dim, 0, sizeof *dim);
        snprintf(dim->name, sizeof dim->name, "%s", nm);
        if (cJSON_IsString(type) && strcmp(type->valuestring, "categorical") == 0) {
            dim->type = PD_DIM_CATEGORICAL;
        } else if (cJSON_IsString(type) && strcmp(type->valuestring, "numeric") == 0) {
            dim->type = PD_DIM_NUMERIC;
        } else {
            pd_seterr(err, errlen, rc, "schema: dimension '%s': \"type\" must be \"categorical\" or \"numeric\"", nm);
            goto out;
        }
        const cJSON *paths = cJSON_GetObjectItemCaseSensitive(d, "paths");
        if (!paths) paths = cJSON_GetObjectItemCaseSensitive(d, "path");
        if (!paths) {
            default_paths(dim);
        } else if (cJSON_IsString(paths)) {
            if (parse_path(&dim->paths[0], paths->valuestring, perr, sizeof perr)) {
                pd_seterr(err, errlen, rc, "schema: dimension '%s': %s", nm, perr);
                goto out;
            }
            dim->npaths = 1;
        } else if (cJSON_IsArray(paths) && cJSON_GetArraySize(paths) >= 1 &&
                   cJSON_GetArraySize(paths) <= PD_MAX_PATHS) {
            const cJSON *p;
            cJSON_ArrayForEach(p, paths) {
                if (!cJSON_IsString(p) || parse_path(&dim->paths[dim->npaths], p->valuestring, perr, sizeof perr)) {
                    pd_seterr(err, errlen, rc, "schema: dimension '%s': bad path: %s", nm,
                              cJSON_IsString(p) ? perr : "not a string");
                    goto out;
                }
                dim->npaths++;
            }
        } else {
            pd_seterr(err, errlen, rc, "schema: dimension '%s': \"paths\" must be a string or 1-%d strings", nm, PD_MAX_PATHS);
            goto out;
        }
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(d, "buckets");
        if (dim->type == PD_DIM_NUMERIC && b) {
            if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) > PD_MAX_BOUNDS) {
                pd_seterr(err, errlen, rc, "schema: dimension '%s': \"buckets\" must be an array of at most %d numbers", nm, PD_MAX_BOUNDS);
                goto out;
            }
            const cJSON *v;
            cJSON_ArrayForEach(v, b) {
                if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
                    (dim->nbounds > 0 && v->valuedouble <= dim->bounds[dim->nbounds - 1])) {
                    pd_seterr(err, errlen, rc, "schema: dimension '%s': buckets must be finite and strictly ascending", nm);
                    goto out;
                }
                dim->bounds[dim->nbounds++] = v->valuedouble;
            }
        } else if (b) {
            pd_seterr(err, errlen, rc, "schema: dimension '%s': \"buckets\" only apply to numeric dimensions", nm);
            goto out;
        }
        const cJSON *cap = cJSON_GetObjectItemCaseSensitive(d, "max_values");
        if (cap && dim->type != PD_DIM_CATEGORICAL) {
            pd_seterr(err, errlen, rc, "schema: dimension '%s': \"max_values\" only applies to categorical dimensions", nm);
            goto out;
        }
        if (cap) {
            if (!cJSON_IsNumber(cap) || cap->valuedouble < 1 || cap->valuedouble > PD_MAX_CAP ||
                cap->valuedouble != floor(cap->valuedouble)) {
                pd_seterr(err, errlen, rc, "schema: dimension '%s': \"max_values\" must be an integer from 1 to %d",
                          nm, PD_MAX_CAP);
                goto out;
            }
            dim->max_values = (uint32_t)cap->valuedouble;
        }
        s->ndims++;
    }
    if (s->ndims == 0) {
        pd_seterr(err, errlen, rc, "schema: no dimensions");
        goto out;
    }
    if (load_tracked(s, cJSON_GetObjectItemCaseSensitive(root, "tracked_types"), err, errlen)) goto out;
    if (load_recent(s, cJSON_GetObjectItemCaseSensitive(root, "recent"), err, errlen)) goto out;
    finish(s);
    rc = PD_OK;
out:
    cJSON_Delete(root);
    return rc;
}

int pd_schema_load_file(pd_schema *s, const char *path, uint32_t max_values, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) return pd_seterr(err, errlen, PD_ENOTFOUND, "schema file '%s': cannot open", path);
    pd_buf b = {0};
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        pd_buf_append(&b, tmp, n);
        if (b.len > (1 << 20)) break;
    }
    fclose(f);
    if (b.len > (1 << 20)) {
        pd_buf_free(&b);
        return pd_seterr(err, errlen, PD_EINVAL, "schema file '%s': larger than 1 MiB", path);
    }
    char e2[256];
    int rc = pd_schema_load_json(s, b.p ? b.p : "", b.len, max_values, e2, sizeof e2);
    if (rc) pd_seterr(err, errlen, rc, "%s: %s", path, e2);
    pd_buf_free(&b);
    return rc;
}

int pd_schema_find(const pd_schema *s, const char *name, size_t n)
{
    for (int i = 0; i < s->ndims; i++)
        if (strlen(s->dims[i].name) == n && memcmp(s->dims[i].name, name, n) == 0) return i;
    return -1;
}

void pd_schema_describe(const pd_schema *s, pd_buf *out)
{
    pd_buf_printf(out, "{\"fingerprint\":\"%016" PRIx64 "\",\"schema\":", s->fingerprint);
    pd_schema_to_json(s, out);
    pd_buf_putc(out, '}');
}

void pd_schema_to_json(const pd_schema *s, pd_buf *out)
{
    pd_buf_printf(out, "{\"categorical_max_values\":%u,\"dimensions\":[", s->max_values);
    for (int i = 0; i < s->ndims; i++) {
        const pd_dim *d = &s->dims[i];
        if (i) pd_buf_putc(out, ',');
        PD_BUF_LIT(out, "{\"name\":");
        pd_buf_json_str(out, d->name, strlen(d->name));
        pd_buf_printf(out, ",\"type\":\"%s\",\"paths\":[",
                      d->type == PD_DIM_NUMERIC ? "numeric" : "categorical");
        for (int p = 0; p < d->npaths; p++) {
            char path[PD_MAX_PATH_DEPTH * PD_MAX_NAME + 8] = "";
            for (int k = 0; k < d->paths[p].depth; k++) {
                if (k) strcat(path, ".");
                strcat(path, d->paths[p].seg[k]);
            }
            if (p) pd_buf_putc(out, ',');
            pd_buf_json_str(out, path, strlen(path));
        }
        pd_buf_putc(out, ']');
        if (d->type == PD_DIM_CATEGORICAL) pd_buf_printf(out, ",\"max_values\":%u", pd_dim_cap(s, i));
        if (d->type == PD_DIM_NUMERIC) {
            PD_BUF_LIT(out, ",\"buckets\":[");
            for (int k = 0; k < d->nbounds; k++) pd_buf_printf(out, "%s%.17g", k ? "," : "", d->bounds[k]);
            pd_buf_putc(out, ']');
        }
        pd_buf_putc(out, '}');
    }
    pd_buf_putc(out, ']');
    /* Written only when set, so the fingerprint of a schema without
     * tracked types is what it was before they existed. */
    if (s->ntracked) {
        PD_BUF_LIT(out, ",\"tracked_types\":[");
        for (int i = 0; i < s->ntracked; i++) {
            if (i) pd_buf_putc(out, ',');
            pd_buf_json_str(out, s->tracked[i], s->tracked_len[i]);
        }
        pd_buf_putc(out, ']');
    }
    /* Always written (off as {"max":0}): a schema without the key means
     * the default, so the canonical form must say what it holds. */
    if (s->recent_max == 0) {
        PD_BUF_LIT(out, ",\"recent\":{\"max\":0}");
    } else {
        char path[PD_MAX_PATH_DEPTH * PD_MAX_NAME + 8] = "";
        for (int k = 0; k < s->recent_item.depth; k++) {
            if (k) strcat(path, ".");
            strcat(path, s->recent_item.seg[k]);
        }
        pd_buf_printf(out, ",\"recent\":{\"max\":%d,\"item_id\":", s->recent_max);
        pd_buf_json_str(out, path, strlen(path));
        PD_BUF_LIT(out, ",\"attributes\":[");
        for (int i = 0; i < s->recent_nattrs; i++) {
            if (i) pd_buf_putc(out, ',');
            const char *n = s->dims[s->recent_attrs[i]].name;
            pd_buf_json_str(out, n, strlen(n));
        }
        PD_BUF_LIT(out, "]}");
    }
    pd_buf_putc(out, '}');
}

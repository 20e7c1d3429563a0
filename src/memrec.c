/*
 * memrec.c -- a membership record's MAC and JSON value (see memrec.h).
 */
#include "memrec.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "util.h"

const char *pd_memrec_reason(int v)
{
    static const char *const names[PD_MEMREC__COUNT] = {
        "ok", "unsigned", "bad_mac", "key_mismatch", "malformed", "expired", "stale", "full", "other_group",
    };
    return v >= 0 && v < PD_MEMREC__COUNT ? names[v] : "?";
}

static void memrec_tag(const pd_mac_key *k, const char *topic, const void *key, size_t klen, const void *val,
                       size_t vlen, uint8_t tag[PD_MAC_LEN])
{
    uint8_t len[4];
    size_t tl = strlen(topic);
    pd_mac *m = pd_mac_new(k->k, sizeof k->k);
    pd_put_u32be(len, (uint32_t)tl);
    pd_mac_update(m, len, 4);
    pd_mac_update(m, topic, tl);
    pd_put_u32be(len, (uint32_t)klen);
    pd_mac_update(m, len, 4);
    pd_mac_update(m, key, klen);
    pd_mac_update(m, val, vlen);
    pd_mac_final(m, tag);
    pd_mac_free(m);
}

void pd_memrec_sign(const pd_mac_key *k, const char *topic, const void *key, size_t klen, const void *val,
                    size_t vlen, char hex[2 * PD_MAC_LEN + 1])
{
    uint8_t tag[PD_MAC_LEN];
    memrec_tag(k, topic, key, klen, val, vlen, tag);
    pd_mac_hex(tag, hex);
}

/* A JSON number as int64, 0 when absent, not a number or out of range. */
static int64_t json_i64(const cJSON *v)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -9.0e18 && v->valuedouble <= 9.0e18)) return 0;
    return (int64_t)v->valuedouble;
}

static int is_partition(const cJSON *e)
{
    return cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble <= PD_MEMREC_MAX_PARTITION &&
           e->valuedouble == (double)(int32_t)e->valuedouble;
}

static int memrec_parse(const char *val, size_t len, pd_memrec *r)
{
    int rc = PD_MEMREC_MALFORMED;
    cJSON *root = cJSON_ParseWithLength(val, len);
    if (!root || !cJSON_IsObject(root)) goto out;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(root, "url");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(root, "partitions");
    const cJSON *alive = cJSON_GetObjectItemCaseSensitive(root, "alive");
    const cJSON *held = cJSON_GetObjectItemCaseSensitive(root, "held");
    const cJSON *group = cJSON_GetObjectItemCaseSensitive(root, "group");
    if (!cJSON_IsString(id) || !*id->valuestring || strlen(id->valuestring) > 128) goto out;
    if (group && (!cJSON_IsString(group) || strlen(group->valuestring) >= sizeof r->group)) goto out;
    if (!cJSON_IsString(url) || strlen(url->valuestring) >= sizeof r->url) goto out;
    if (ps && !cJSON_IsArray(ps)) goto out;
    int n = ps ? cJSON_GetArraySize(ps) : 0;
    if (n > PD_MEMREC_MAX_CLAIMS) goto out;
    snprintf(r->id, sizeof r->id, "%s", id->valuestring);
    snprintf(r->url, sizeof r->url, "%s", url->valuestring);
    snprintf(r->group, sizeof r->group, "%s", group ? group->valuestring : "");
    r->gen = json_i64(cJSON_GetObjectItemCaseSensitive(root, "gen"));
    r->ts = json_i64(cJSON_GetObjectItemCaseSensitive(root, "ts"));
    r->alive = alive ? cJSON_IsTrue(alive) : 1;
    r->parts = n ? pd_malloc((size_t)n * sizeof *r->parts) : NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, ps) {
        if (is_partition(e)) r->parts[r->nparts++] = (int32_t)e->valuedouble;
    }
    int nh = cJSON_IsArray(held) ? cJSON_GetArraySize(held) : 0;
    if (nh > PD_MEMREC_MAX_CLAIMS) nh = 0;
    if (nh) {
        r->held_parts = pd_malloc((size_t)nh * sizeof *r->held_parts);
        r->held_offs = pd_malloc((size_t)nh * sizeof *r->held_offs);
        r->held_owner = pd_malloc((size_t)nh);
        r->held_fx = pd_malloc((size_t)nh * sizeof *r->held_fx);
        const cJSON *t;
        cJSON_ArrayForEach(t, held) {
            /* [partition, next_offset, owner(0/1)] or, from an owner,
             * [partition, next_offset, 1, side-effect frontier] */
            const int na = cJSON_IsArray(t) ? cJSON_GetArraySize(t) : 0;
            if (na != 3 && na != 4) continue;
            const cJSON *a = cJSON_GetArrayItem(t, 0), *b = cJSON_GetArrayItem(t, 1), *o = cJSON_GetArrayItem(t, 2);
            const cJSON *f = na == 4 ? cJSON_GetArrayItem(t, 3) : NULL;
            if (!is_partition(a)) continue;
            r->held_parts[r->nheld] = (int32_t)a->valuedouble;
            r->held_offs[r->nheld] = json_i64(b);
            r->held_owner[r->nheld] = cJSON_IsNumber(o) && o->valuedouble == 1;
            r->held_fx[r->nheld] = f && r->held_owner[r->nheld] && cJSON_IsNumber(f) && f->valuedouble >= 0
                                       ? json_i64(f) : -1;
            r->nheld++;
        }
    }
    rc = PD_MEMREC_OK;
out:
    cJSON_Delete(root);
    return rc;
}

int pd_memrec_open(const pd_mac_key *k, const char *topic, const void *key, size_t klen, const void *val,
                   size_t vlen, const void *mac, size_t maclen, pd_memrec *out)
{
    memset(out, 0, sizeof *out);
    uint8_t want[PD_MAC_LEN], got[PD_MAC_LEN];
    if (!mac || pd_mac_unhex(mac, maclen, got) != PD_OK) return PD_MEMREC_UNSIGNED;
    if (!key) klen = 0;
    if (!val) vlen = 0;
    memrec_tag(k, topic, key, klen, val, vlen, want);
    if (!pd_mac_equal(want, got, PD_MAC_LEN)) return PD_MEMREC_BAD_MAC;
    int rc = memrec_parse(val, vlen, out);
    if (rc == PD_MEMREC_OK && (klen != strlen(out->id) || memcmp(key, out->id, klen) != 0))
        rc = PD_MEMREC_KEY_MISMATCH;
    if (rc != PD_MEMREC_OK) pd_memrec_free(out);
    return rc;
}

void pd_memrec_free(pd_memrec *r)
{
    if (!r) return;
    pd_free(r->parts);
    pd_free(r->held_parts);
    pd_free(r->held_offs);
    pd_free(r->held_owner);
    pd_free(r->held_fx);
    memset(r, 0, sizeof *r);
}

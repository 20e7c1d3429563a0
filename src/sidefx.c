/*
 * sidefx.c -- the side-effect frontier of a partition, the replica's
 * time-rejection notes and the redo of one record's side effects (the
 * argument and the record format are in sidefx.h).
 */
#include "sidefx.h"

#include "event.h"
#include "rectime.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define SFX_VERSION 1
#define SFX_HDR 13 /* version 1 + done 8 + count 4 */
#define SFX_NOTE 16

void pd_sidefx_free(pd_sidefx *x)
{
    free(x->notes);
    memset(x, 0, sizeof *x);
    x->done = -1;
}

int pd_sidefx_load(pd_sidefx *x, pd_store *st, int32_t p, char *err, size_t errlen)
{
    pd_sidefx_free(x);
    pd_buf b = {0};
    int rc = pd_store_get_sidefx(st, p, &b);
    if (rc == PD_ENOTFOUND) return PD_OK;
    if (rc) {
        pd_buf_free(&b);
        return pd_seterr(err, errlen, rc, "partition %d: reading the side-effect record failed", (int)p);
    }
    const uint8_t *v = (const uint8_t *)b.p;
    uint32_t n = b.len >= SFX_HDR ? pd_get_u32be(v + 9) : 0;
    if (b.len < SFX_HDR || v[0] != SFX_VERSION || n > PD_SIDEFX_MAX_NOTES || b.len != SFX_HDR + (size_t)n * SFX_NOTE) {
        pd_buf_free(&b);
        return pd_seterr(err, errlen, PD_ECORRUPT, "partition %d: malformed side-effect record", (int)p);
    }
    x->done = (int64_t)pd_get_u64be(v + 1);
    if (n) {
        x->cap = n;
        x->notes = pd_malloc(n * sizeof *x->notes);
        for (uint32_t i = 0; i < n; i++) {
            x->notes[i].offset = (int64_t)pd_get_u64be(v + SFX_HDR + (size_t)i * SFX_NOTE);
            x->notes[i].wall_ms = (int64_t)pd_get_u64be(v + SFX_HDR + (size_t)i * SFX_NOTE + 8);
        }
        x->n = n;
    }
    pd_buf_free(&b);
    return PD_OK;
}

void pd_sidefx_stage(pd_sidefx *x, pd_store_batch *sb, int32_t p)
{
    if (!x->dirty) return;
    size_t len = SFX_HDR + x->n * SFX_NOTE;
    uint8_t stackbuf[SFX_HDR + 8 * SFX_NOTE];
    uint8_t *v = len <= sizeof stackbuf ? stackbuf : pd_malloc(len);
    v[0] = SFX_VERSION;
    pd_put_u64be(v + 1, (uint64_t)x->done);
    pd_put_u32be(v + 9, (uint32_t)x->n);
    for (size_t i = 0; i < x->n; i++) {
        pd_put_u64be(v + SFX_HDR + i * SFX_NOTE, (uint64_t)x->notes[i].offset);
        pd_put_u64be(v + SFX_HDR + i * SFX_NOTE + 8, (uint64_t)x->notes[i].wall_ms);
    }
    pd_store_batch_put_sidefx(sb, p, v, len);
    if (v != stackbuf) free(v);
    x->dirty = 0;
}

void pd_sidefx_prune(pd_sidefx *x, int64_t below)
{
    size_t k = 0;
    while (k < x->n && x->notes[k].offset < below) k++;
    if (!k) return;
    memmove(x->notes, x->notes + k, (x->n - k) * sizeof *x->notes);
    x->n -= k;
    x->dirty = 1;
}

void pd_sidefx_advance(pd_sidefx *x, int64_t next)
{
    if (next <= x->done) return;
    x->done = next;
    x->dirty = 1;
    pd_sidefx_prune(x, next);
}

void pd_sidefx_clear_notes(pd_sidefx *x)
{
    if (x->n) x->dirty = 1;
    x->n = 0;
}

int pd_sidefx_add_note(pd_sidefx *x, int64_t offset, int64_t wall_ms)
{
    if (x->n >= PD_SIDEFX_MAX_NOTES) return PD_ERANGE;
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 8;
        x->notes = pd_realloc(x->notes, x->cap * sizeof *x->notes);
    }
    x->notes[x->n++] = (pd_sidefx_note){offset, wall_ms};
    x->dirty = 1;
    return PD_OK;
}

static const pd_sidefx_note *note_find(const pd_sidefx *x, int64_t offset)
{
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->notes[mid].offset < offset) lo = mid + 1;
        else hi = mid;
    }
    return lo < x->n && x->notes[lo].offset == offset ? &x->notes[lo] : NULL;
}

int64_t pd_sidefx_takeover(int64_t local_done, int64_t group_committed, int64_t hi)
{
    int64_t f = -1;
    if (local_done >= 0 && (hi < 0 || local_done <= hi)) f = local_done;
    if (group_committed >= 0 && (hi < 0 || group_committed <= hi)) f = PD_MAX(f, group_committed);
    return f;
}

int pd_sidefx_redo(const pd_sidefx *x, pd_dlq *d, const pd_schema *s, const pd_config *cfg, int32_t nparts,
                   int32_t p, int64_t offset, int64_t rec_ts, int rec_ts_type, const void *key, size_t keylen,
                   const void *val, size_t vallen, int64_t wall_ms)
{
    pd_event ev;
    char err[PD_DLQ_MAX_DETAIL];
    int rc = PD_SIDEFX_NONE;
    int reason = pd_event_parse(&ev, s, val, vallen, (size_t)cfg->max_event_bytes, err, sizeof err);
    if (reason != PD_EV_OK) {
        pd_dlq_send(d, reason, err, p, offset, rec_ts, key, keylen, val, vallen);
        rc = PD_SIDEFX_DLQ;
        goto out;
    }
    /* the replica's clock when it rejected the record, else this one's
     * (later: it rejects no more than the replica did) */
    const pd_sidefx_note *nt = note_find(x, offset);
    reason = pd_rectime_check(rec_ts_type, rec_ts, ev.ts_ms, nt ? nt->wall_ms : wall_ms, cfg->max_future_skew_ms,
                              err, sizeof err);
    if (reason != PD_EV_OK) {
        pd_dlq_send(d, reason, err, p, offset, rec_ts, key, keylen, val, vallen);
        rc = PD_SIDEFX_DLQ;
        goto out;
    }
    int32_t want = pd_partition_for(ev.user_id, ev.user_id_len, nparts);
    if (want != p) {
        pd_dlq_reproduce(d, want, p, offset, ev.user_id, ev.user_id_len, val, vallen);
        rc = PD_SIDEFX_REROUTE;
    }
out:
    pd_event_free(&ev);
    return rc;
}

/*
 * handoff.c -- snapshot streams of one partition's state: export (source
 * worker), fetch + verify (receiving worker, any thread) and apply (the
 * receiving worker's writer thread). See handoff.h for the format and the
 * crash-safety argument.
 *
 * The fetch is one GET through the peer client (peer.c) on its own
 * connection ("Connection: close"), the body streamed into a file; every
 * wait for the peer is bounded by the idle timeout, its size by the
 * Content-Length the sender announced (required) and by half the free
 * space of the file's disk (the stream and its import into the store must
 * both fit). Completeness and authenticity are established by the trailer
 * MAC, checked over the whole file before any record is parsed, not by
 * the transport.
 */
#include "handoff.h"

#include "event.h"
#include "mac.h"
#include "peer.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#define SNAP_HDR_LEN 24    /* magic 8 + partition 4 + fingerprint 8 + dialect 4 */
#define SNAP_TRAILER_LEN (1 + 8 + 8 + 8 + PD_MAC_LEN) /* 'E' offset clock records MAC */
#define APPLY_BATCH_BYTES (4u << 20)

const char *pd_handoff_reject_reason(int r)
{
    static const char *const names[PD_SNAP_REJ__COUNT] = {"mac", "malformed", "size"};
    return r >= 0 && r < PD_SNAP_REJ__COUNT ? names[r] : "?";
}

static pd_mac *snap_mac_new(const char *secret)
{
    pd_mac_key k;
    pd_mac_key_derive(&k, secret, "snapshot");
    return pd_mac_new(k.k, sizeof k.k);
}

/* ---- export ---- */

typedef struct {
    pd_handoff_sink sink;
    void *arg;
    pd_mac *mac;
    pd_buf buf;
    uint64_t records, bytes;
    int failed;
} exporter;

static int ex_flush(exporter *x)
{
    if (!x->buf.len) return 0;
    pd_mac_update(x->mac, x->buf.p, x->buf.len);
    x->bytes += x->buf.len;
    int rc = x->sink(x->arg, x->buf.p, x->buf.len);
    x->buf.len = 0;
    if (rc) x->failed = 1;
    return rc;
}

static int ex_record(void *arg, char kind, int64_t day, const char *key, size_t klen, const char *val,
                     size_t vlen)
{
    exporter *x = arg;
    pd_buf_putc(&x->buf, kind);
    if (kind == 'd') pd_put_uvarint(&x->buf, pd_zigzag(day));
    pd_put_uvarint(&x->buf, klen);
    pd_buf_append(&x->buf, key, klen);
    pd_put_uvarint(&x->buf, vlen);
    pd_buf_append(&x->buf, val, vlen);
    x->records++;
    if (x->buf.len >= 64 * 1024) return ex_flush(x);
    return 0;
}

int pd_handoff_export(pd_store *st, const pd_schema *s, const char *secret, int32_t p, pd_handoff_sink sink,
                      void *arg, pd_checkpoint *cp_out, uint64_t *bytes, char *err, size_t errlen)
{
    exporter x = {.sink = sink, .arg = arg, .mac = snap_mac_new(secret)};
    uint8_t hdr[SNAP_HDR_LEN];
    memcpy(hdr, PD_SNAPSHOT_MAGIC, 8);
    pd_put_u32be(hdr + 8, (uint32_t)p);
    pd_put_u64be(hdr + 12, s->fingerprint);
    pd_put_u32be(hdr + 20, PD_EVENT_DIALECT);
    pd_buf_append(&x.buf, hdr, sizeof hdr);
    pd_checkpoint cp;
    int rc = pd_store_export_partition(st, p, &cp, ex_record, &x, err, errlen);
    if (rc == PD_OK && !x.failed) {
        uint8_t t[SNAP_TRAILER_LEN - PD_MAC_LEN];
        t[0] = 'E';
        pd_put_u64be(t + 1, (uint64_t)cp.next_offset);
        pd_put_u64be(t + 9, (uint64_t)cp.clock_ms);
        pd_put_u64be(t + 17, x.records);
        pd_buf_append(&x.buf, t, sizeof t);
        if (ex_flush(&x) == 0) {
            uint8_t tag[PD_MAC_LEN];
            pd_mac_final(x.mac, tag);
            x.bytes += PD_MAC_LEN;
            if (sink(arg, tag, PD_MAC_LEN)) x.failed = 1;
        }
        if (cp_out) *cp_out = cp;
    } else if (rc == PD_OK && x.failed) {
        rc = pd_seterr(err, errlen, PD_EIO, "snapshot of partition %d: receiver went away", p);
    }
    if (rc == PD_OK && x.failed) rc = pd_seterr(err, errlen, PD_EIO, "snapshot of partition %d: write failed", p);
    if (bytes) *bytes = x.bytes;
    pd_buf_free(&x.buf);
    pd_mac_free(x.mac);
    return rc;
}

/* ---- reading a stream file ---- */

typedef struct {
    FILE *f;
    uint64_t pos, size;   /* bytes consumed / file size */
} reader;

static int rd_bytes(reader *r, void *out, size_t n)
{
    if (r->size - r->pos < n) return -1;
    if (n && fread(out, 1, n, r->f) != n) return -1;
    r->pos += n;
    return 0;
}

/* Checks the trailer MAC of the stream in f (size bytes) against every
 * byte before it: PD_OK, PD_EAUTH, or PD_ECORRUPT when too short. */
static int mac_check(FILE *f, uint64_t size, const char *secret, char *err, size_t errlen)
{
    if (size < SNAP_HDR_LEN + SNAP_TRAILER_LEN)
        return pd_seterr(err, errlen, PD_ECORRUPT, "snapshot truncated (%" PRIu64 " bytes)", size);
    pd_mac *m = snap_mac_new(secret);
    enum { CHUNK = 64 * 1024 };
    char *buf = pd_malloc(CHUNK);
    uint64_t left = size - PD_MAC_LEN;
    int rc = PD_OK;
    while (left > 0) {
        size_t n = (size_t)PD_MIN(left, (uint64_t)CHUNK);
        if (fread(buf, 1, n, f) != n) {
            rc = pd_seterr(err, errlen, PD_EIO, "snapshot: read failed");
            goto out;
        }
        pd_mac_update(m, buf, n);
        left -= n;
    }
    uint8_t want[PD_MAC_LEN], got[PD_MAC_LEN];
    pd_mac_final(m, want);
    if (fread(got, 1, PD_MAC_LEN, f) != PD_MAC_LEN) {
        rc = pd_seterr(err, errlen, PD_EIO, "snapshot: read failed");
        goto out;
    }
    if (!pd_mac_equal(want, got, PD_MAC_LEN))
        rc = pd_seterr(err, errlen, PD_EAUTH,
                       "snapshot MAC does not verify (forged, altered, or made with another cluster secret)");
out:
    pd_free(buf);
    pd_mac_free(m);
    return rc;
}

static int rd_uvarint(reader *r, uint64_t *v)
{
    uint8_t b[10];
    size_t i = 0;
    for (; i < 10; i++) {
        if (rd_bytes(r, &b[i], 1)) return -1;
        if (!(b[i] & 0x80)) break;
    }
    if (i == 10) return -1;
    return pd_get_uvarint(b, i + 1, v) == i + 1 ? 0 : -1;
}

/* Walks the stream. With st == NULL it only verifies (the MAC first when
 * secret_check, then the structure); otherwise it also writes the records
 * into st (writer thread). */
static int walk(const char *path, int32_t p, const pd_schema *s, int secret_check, const char *secret,
                pd_store *st, pd_checkpoint *cp, uint64_t *records_out, char *err, size_t errlen)
{
    int rc = PD_ECORRUPT;
    reader r = {0};
    pd_buf key = {0}, val = {0};
    pd_store_batch *b = NULL;
    size_t batch_bytes = 0;
    uint64_t records = 0;
    int seen_f = 0; /* at most one side-effect record */
    char e2[256];
    r.f = fopen(path, "rb");
    if (!r.f) return pd_seterr(err, errlen, PD_EIO, "open %s: %s", path, strerror(errno));
    fseek(r.f, 0, SEEK_END);
    long sz = ftell(r.f);
    fseek(r.f, 0, SEEK_SET);
    r.size = sz > 0 ? (uint64_t)sz : 0;
    if (r.size < SNAP_HDR_LEN + SNAP_TRAILER_LEN) {
        pd_seterr(err, errlen, rc, "snapshot truncated (%" PRIu64 " bytes)", r.size);
        goto out;
    }
    if (secret_check) { /* authenticate before parsing anything */
        if ((rc = mac_check(r.f, r.size, secret, err, errlen)) != PD_OK) goto out;
        rc = PD_ECORRUPT;
        fseek(r.f, 0, SEEK_SET);
    }
    uint8_t hdr[SNAP_HDR_LEN];
    rd_bytes(&r, hdr, sizeof hdr);
    if (memcmp(hdr, PD_SNAPSHOT_MAGIC, 8) != 0) {
        pd_seterr(err, errlen, rc, "not a snapshot stream (bad magic)");
        goto out;
    }
    if ((int32_t)pd_get_u32be(hdr + 8) != p) {
        pd_seterr(err, errlen, rc, "snapshot is of partition %u, expected %d", pd_get_u32be(hdr + 8), p);
        goto out;
    }
    if (pd_get_u64be(hdr + 12) != s->fingerprint) {
        pd_seterr(err, errlen, rc, "snapshot was made with a different schema");
        goto out;
    }
    if (pd_get_u32be(hdr + 20) != PD_EVENT_DIALECT) {
        pd_seterr(err, errlen, rc, "snapshot was built under event dialect %u, this build uses %d",
                  pd_get_u32be(hdr + 20), PD_EVENT_DIALECT);
        goto out;
    }
    if (st) {
        if ((rc = pd_store_delete_partition(st, p, err, errlen)) != PD_OK) goto out;
        rc = PD_ECORRUPT;
        b = pd_store_batch_new(st);
    }
    for (;;) {
        uint8_t kind;
        if (rd_bytes(&r, &kind, 1)) {
            pd_seterr(err, errlen, rc, "snapshot truncated after %" PRIu64 " records", records);
            goto out;
        }
        if (kind == 'E') break;
        uint64_t zday = 0, kl, vl;
        if ((kind != 'd' && kind != 'x' && kind != 'f') || (kind == 'f' && seen_f++) ||
            (kind == 'd' && rd_uvarint(&r, &zday)) || rd_uvarint(&r, &kl) ||
            kl > r.size - r.pos) {
            pd_seterr(err, errlen, rc, "snapshot corrupt at byte %" PRIu64, r.pos);
            goto out;
        }
        key.len = 0;
        pd_buf_reserve(&key, kl + 1);
        if (rd_bytes(&r, key.p, kl) || rd_uvarint(&r, &vl) || vl > r.size - r.pos) {
            pd_seterr(err, errlen, rc, "snapshot corrupt at byte %" PRIu64, r.pos);
            goto out;
        }
        key.len = kl;
        val.len = 0;
        pd_buf_reserve(&val, vl + 1);
        if (rd_bytes(&r, val.p, vl)) {
            pd_seterr(err, errlen, rc, "snapshot truncated in a value");
            goto out;
        }
        val.len = vl;
        if (kind == 'x' && (kl != 8 || vl % PD_DEDUP_ENTRY_LEN != 0)) {
            pd_seterr(err, errlen, rc, "snapshot: bad de-dup record");
            goto out;
        }
        if (kind == 'f' && (kl != 0 || vl < PD_SIDEFX_REC_MIN || vl > PD_SIDEFX_REC_MAX)) {
            pd_seterr(err, errlen, rc, "snapshot: bad side-effect record");
            goto out;
        }
        if (kind == 'd' && kl > 256) { /* kl 0: the population profile */
            pd_seterr(err, errlen, rc, "snapshot: bad user id length %" PRIu64, kl);
            goto out;
        }
        records++;
        if (!st) continue;
        if (kind == 'd') {
            if ((rc = pd_store_batch_put_profile_raw(b, pd_unzigzag(zday), p, key.p, key.len, val.p, val.len, e2,
                                                     sizeof e2))) {
                pd_seterr(err, errlen, rc, "snapshot record %" PRIu64 ": %s", records, e2);
                goto out;
            }
        } else if (kind == 'f') {
            pd_store_batch_put_sidefx(b, p, val.p, val.len);
        } else {
            pd_store_batch_put_dedup(b, p, pd_get_u64be((const uint8_t *)key.p), val.p, val.len);
        }
        batch_bytes += kl + vl;
        if (batch_bytes >= APPLY_BATCH_BYTES) {
            if ((rc = pd_store_commit(st, b, err, errlen))) goto out;
            rc = PD_ECORRUPT;
            batch_bytes = 0;
        }
    }
    uint8_t t[SNAP_TRAILER_LEN - 1 - PD_MAC_LEN];
    if (rd_bytes(&r, t, sizeof t)) {
        pd_seterr(err, errlen, rc, "snapshot trailer truncated");
        goto out;
    }
    uint8_t tag[PD_MAC_LEN];
    if (rd_bytes(&r, tag, PD_MAC_LEN) || r.pos != r.size) {
        pd_seterr(err, errlen, rc, "snapshot trailer truncated or trailing bytes");
        goto out;
    }
    if (pd_get_u64be(t + 16) != records) {
        pd_seterr(err, errlen, rc, "snapshot record count mismatch");
        goto out;
    }
    cp->partition = p;
    cp->next_offset = (int64_t)pd_get_u64be(t);
    cp->clock_ms = (int64_t)pd_get_u64be(t + 8);
    if (cp->next_offset < 0) {
        pd_seterr(err, errlen, rc, "snapshot: negative offset");
        goto out;
    }
    if (st) {
        /* The checkpoint goes in the last batch: only now is the partition
         * "present" in this store. */
        pd_store_batch_set_checkpoint(b, p, cp->next_offset, cp->clock_ms);
        if ((rc = pd_store_commit(st, b, err, errlen))) goto out;
    }
    if (records_out) *records_out = records;
    rc = PD_OK;
out:
    if (b) pd_store_batch_free(b);
    pd_buf_free(&key);
    pd_buf_free(&val);
    fclose(r.f);
    return rc;
}

int pd_handoff_verify(const char *path, int32_t p, const pd_schema *s, const char *secret, pd_checkpoint *cp,
                      uint64_t *records, char *err, size_t errlen)
{
    return walk(path, p, s, 1, secret, NULL, cp, records, err, errlen);
}

int pd_handoff_apply(pd_store *st, const char *path, int32_t p, const pd_schema *s, const char *secret,
                     pd_checkpoint *cp, uint64_t *records, char *err, size_t errlen)
{
    pd_checkpoint v;
    int rc = walk(path, p, s, 1, secret, NULL, &v, NULL, err, errlen); /* never touch the store with a bad file */
    if (rc) return rc;
    return walk(path, p, s, 0, NULL, st, cp, records, err, errlen);
}

/* ---- fetch ---- */

int pd_handoff_file_sink(void *arg, const void *data, size_t n)
{
    return fwrite(data, 1, n, (FILE *)arg) == n ? 0 : -1;
}

int pd_handoff_fetch(const char *base_url, int32_t p, const char *token, const pd_schema *s,
                     const char *path, int idle_timeout_ms, uint64_t max_body, pd_checkpoint *cp, uint64_t *bytes,
                     char *err, size_t errlen)
{
    pd_peer_url u;
    if (pd_peer_url_parse(base_url, &u) != PD_OK)
        return pd_seterr(err, errlen, PD_EINVAL, "bad peer URL '%s'", base_url);
    uint64_t max_bytes = max_body;
    if (!max_bytes) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s", path);
        struct statvfs sv;
        if (statvfs(dirname(dir), &sv) != 0)
            return pd_seterr(err, errlen, PD_EIO, "statvfs for %s: %s", path, strerror(errno));
        /* the stream and its import into the store must both fit */
        max_bytes = (uint64_t)sv.f_bavail * sv.f_frsize / 2;
        if (max_bytes < SNAP_HDR_LEN + SNAP_TRAILER_LEN) max_bytes = SNAP_HDR_LEN + SNAP_TRAILER_LEN;
    }
    FILE *out = fopen(path, "wb");
    if (!out) return pd_seterr(err, errlen, PD_EIO, "create %s: %s", path, strerror(errno));
    char pq[64], perr[256];
    snprintf(pq, sizeof pq, "/internal/v1/snapshot/%d", (int)p);
    pd_buf hdrs = {0};
    if (token && *token) pd_buf_printf(&hdrs, "Authorization: Bearer %s\r\n", token);
    pd_peer_req rq = {.path_query = pq, .headers = hdrs.p, .idle_ms = idle_timeout_ms, .max_body = max_bytes,
                      .need_length = 1};
    pd_peer_resp r = {0};
    int rc = pd_peer_stream(NULL, &u, &rq, pd_handoff_file_sink, out, &r, perr, sizeof perr);
    if (rc != PD_OK) {
        if (ferror(out)) pd_seterr(err, errlen, rc, "write %s failed", path);
        else pd_seterr(err, errlen, rc, "snapshot from %s: %s%s", base_url, perr,
                       rc == PD_ERANGE ? " (bound: the announced length and half the free disk space)" : "");
        goto out;
    }
    if (r.status != 200) {
        rc = r.status == 404 ? PD_ENOTFOUND : r.status == 503 ? PD_EAGAIN : PD_EIO;
        pd_seterr(err, errlen, rc, "snapshot from %s: HTTP %d", base_url, r.status);
        goto out;
    }
    int cerr = fclose(out);
    out = NULL;
    if (cerr != 0) {
        rc = pd_seterr(err, errlen, PD_EIO, "write %s failed", path);
        goto out;
    }
    uint64_t records;
    rc = pd_handoff_verify(path, p, s, token, cp, &records, err, errlen);
    if (bytes) *bytes = r.streamed;
out:
    if (out) fclose(out);
    if (rc != PD_OK) remove(path);
    pd_buf_free(&r.body);
    pd_buf_free(&hdrs);
    return rc;
}

/*
 * handoff.c -- snapshot streams of one partition's state: export (source
 * worker), fetch + verify (receiving worker, any thread) and apply (the
 * receiving worker's writer thread). See handoff.h for the format and the
 * crash-safety argument.
 *
 * The fetch client is a deliberately small HTTP/1.1 GET over a POSIX
 * socket: "Connection: close", body read to EOF into a file; every wait is
 * bounded by poll(). Completeness is established by the trailer checksum,
 * not by the transport.
 */
#include "handoff.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#define SNAP_HDR_LEN 20    /* magic 8 + partition 4 + fingerprint 8 */
#define SNAP_TRAILER_LEN 33 /* 'E' + 8 + 8 + 8 + 8 */
#define APPLY_BATCH_BYTES (4u << 20)

/* ---- export ---- */

typedef struct {
    pd_handoff_sink sink;
    void *arg;
    XXH3_state_t *h;
    pd_buf buf;
    uint64_t records, bytes;
    int failed;
} exporter;

static int ex_flush(exporter *x)
{
    if (!x->buf.len) return 0;
    XXH3_64bits_update(x->h, x->buf.p, x->buf.len);
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

int pd_handoff_export(pd_store *st, const pd_schema *s, int32_t p, pd_handoff_sink sink, void *arg,
                      pd_checkpoint *cp_out, uint64_t *bytes, char *err, size_t errlen)
{
    exporter x = {.sink = sink, .arg = arg, .h = XXH3_createState()};
    pd_assert(x.h);
    XXH3_64bits_reset(x.h);
    uint8_t hdr[SNAP_HDR_LEN];
    memcpy(hdr, PD_SNAPSHOT_MAGIC, 8);
    pd_put_u32be(hdr + 8, (uint32_t)p);
    pd_put_u64be(hdr + 12, s->fingerprint);
    pd_buf_append(&x.buf, hdr, sizeof hdr);
    pd_checkpoint cp;
    int rc = pd_store_export_partition(st, p, &cp, ex_record, &x, err, errlen);
    if (rc == PD_OK && !x.failed) {
        uint8_t t[SNAP_TRAILER_LEN - 8];
        t[0] = 'E';
        pd_put_u64be(t + 1, (uint64_t)cp.next_offset);
        pd_put_u64be(t + 9, (uint64_t)cp.clock_ms);
        pd_put_u64be(t + 17, x.records);
        pd_buf_append(&x.buf, t, sizeof t);
        if (ex_flush(&x) == 0) {
            uint8_t h[8];
            pd_put_u64be(h, XXH3_64bits_digest(x.h));
            x.bytes += 8;
            if (sink(arg, h, 8)) x.failed = 1;
        }
        if (cp_out) *cp_out = cp;
    } else if (rc == PD_OK && x.failed) {
        rc = pd_seterr(err, errlen, PD_EIO, "snapshot of partition %d: receiver went away", p);
    }
    if (rc == PD_OK && x.failed) rc = pd_seterr(err, errlen, PD_EIO, "snapshot of partition %d: write failed", p);
    if (bytes) *bytes = x.bytes;
    pd_buf_free(&x.buf);
    XXH3_freeState(x.h);
    return rc;
}

/* ---- reading a stream file ---- */

typedef struct {
    FILE *f;
    XXH3_state_t *h;
    uint64_t pos, size;   /* bytes consumed / file size */
} reader;

static int rd_bytes(reader *r, void *out, size_t n, int hash)
{
    if (r->size - r->pos < n) return -1;
    if (n && fread(out, 1, n, r->f) != n) return -1;
    if (hash && n) XXH3_64bits_update(r->h, out, n);
    r->pos += n;
    return 0;
}

static int rd_uvarint(reader *r, uint64_t *v)
{
    uint8_t b[10];
    size_t i = 0;
    for (; i < 10; i++) {
        if (rd_bytes(r, &b[i], 1, 1)) return -1;
        if (!(b[i] & 0x80)) break;
    }
    if (i == 10) return -1;
    return pd_get_uvarint(b, i + 1, v) == i + 1 ? 0 : -1;
}

/* Walks the stream. With st == NULL it only verifies; otherwise it also
 * writes the records into st (writer thread). */
static int walk(const char *path, int32_t p, const pd_schema *s, pd_store *st, pd_checkpoint *cp,
                uint64_t *records_out, char *err, size_t errlen)
{
    int rc = PD_ECORRUPT;
    reader r = {0};
    pd_buf key = {0}, val = {0};
    pd_store_batch *b = NULL;
    size_t batch_bytes = 0;
    uint64_t records = 0;
    char e2[256];
    r.f = fopen(path, "rb");
    if (!r.f) return pd_seterr(err, errlen, PD_EIO, "open %s: %s", path, strerror(errno));
    fseek(r.f, 0, SEEK_END);
    long sz = ftell(r.f);
    fseek(r.f, 0, SEEK_SET);
    r.size = sz > 0 ? (uint64_t)sz : 0;
    r.h = XXH3_createState();
    pd_assert(r.h);
    XXH3_64bits_reset(r.h);
    if (r.size < SNAP_HDR_LEN + SNAP_TRAILER_LEN) {
        pd_seterr(err, errlen, rc, "snapshot truncated (%" PRIu64 " bytes)", r.size);
        goto out;
    }
    uint8_t hdr[SNAP_HDR_LEN];
    rd_bytes(&r, hdr, sizeof hdr, 1);
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
    if (st) {
        if ((rc = pd_store_delete_partition(st, p, err, errlen)) != PD_OK) goto out;
        rc = PD_ECORRUPT;
        b = pd_store_batch_new(st);
    }
    for (;;) {
        uint8_t kind;
        if (rd_bytes(&r, &kind, 1, 1)) {
            pd_seterr(err, errlen, rc, "snapshot truncated after %" PRIu64 " records", records);
            goto out;
        }
        if (kind == 'E') break;
        uint64_t zday = 0, kl, vl;
        if ((kind != 'd' && kind != 'x') || (kind == 'd' && rd_uvarint(&r, &zday)) || rd_uvarint(&r, &kl) ||
            kl > r.size - r.pos) {
            pd_seterr(err, errlen, rc, "snapshot corrupt at byte %" PRIu64, r.pos);
            goto out;
        }
        key.len = 0;
        pd_buf_reserve(&key, kl + 1);
        if (rd_bytes(&r, key.p, kl, 1) || rd_uvarint(&r, &vl) || vl > r.size - r.pos) {
            pd_seterr(err, errlen, rc, "snapshot corrupt at byte %" PRIu64, r.pos);
            goto out;
        }
        key.len = kl;
        val.len = 0;
        pd_buf_reserve(&val, vl + 1);
        if (rd_bytes(&r, val.p, vl, 1)) {
            pd_seterr(err, errlen, rc, "snapshot truncated in a value");
            goto out;
        }
        val.len = vl;
        if (kind == 'x' && (kl != 8 || vl % PD_DEDUP_ENTRY_LEN != 0)) {
            pd_seterr(err, errlen, rc, "snapshot: bad de-dup record");
            goto out;
        }
        if (kind == 'd' && (kl == 0 || kl > 256)) {
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
    uint8_t t[SNAP_TRAILER_LEN - 1 - 8];
    if (rd_bytes(&r, t, sizeof t, 1)) {
        pd_seterr(err, errlen, rc, "snapshot trailer truncated");
        goto out;
    }
    uint8_t hh[8];
    uint64_t digest = XXH3_64bits_digest(r.h);
    if (rd_bytes(&r, hh, 8, 0) || r.pos != r.size) {
        pd_seterr(err, errlen, rc, "snapshot trailer truncated or trailing bytes");
        goto out;
    }
    if (pd_get_u64be(hh) != digest) {
        pd_seterr(err, errlen, rc, "snapshot checksum mismatch");
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
    XXH3_freeState(r.h);
    fclose(r.f);
    return rc;
}

int pd_handoff_verify(const char *path, int32_t p, const pd_schema *s, pd_checkpoint *cp,
                      uint64_t *records, char *err, size_t errlen)
{
    return walk(path, p, s, NULL, cp, records, err, errlen);
}

int pd_handoff_apply(pd_store *st, const char *path, int32_t p, const pd_schema *s, pd_checkpoint *cp,
                     uint64_t *records, char *err, size_t errlen)
{
    pd_checkpoint v;
    int rc = walk(path, p, s, NULL, &v, NULL, err, errlen); /* never touch the store with a bad file */
    if (rc) return rc;
    return walk(path, p, s, st, cp, records, err, errlen);
}

/* ---- fetch ---- */

static int parse_url(const char *url, char *host, size_t hl, char *port, size_t pl)
{
    if (strncmp(url, "http://", 7) != 0) return PD_EINVAL;
    const char *h = url + 7, *slash = strchr(h, '/');
    size_t n = slash ? (size_t)(slash - h) : strlen(h);
    const char *colon = memchr(h, ':', n);
    if (!colon || (size_t)(colon - h) >= hl || n - (size_t)(colon - h) - 1 >= pl) return PD_EINVAL;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = '\0';
    memcpy(port, colon + 1, n - (size_t)(colon - h) - 1);
    port[n - (size_t)(colon - h) - 1] = '\0';
    return PD_OK;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd pf = {.fd = fd, .events = ev};
    int r;
    do r = poll(&pf, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r > 0 ? 0 : -1;
}

int pd_handoff_fetch(const char *base_url, int32_t p, const char *token, const pd_schema *s,
                     const char *path, int idle_timeout_ms, pd_checkpoint *cp, uint64_t *bytes,
                     char *err, size_t errlen)
{
    char host[256], port[16];
    if (parse_url(base_url, host, sizeof host, port, sizeof port))
        return pd_seterr(err, errlen, PD_EINVAL, "bad peer URL '%s'", base_url);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return pd_seterr(err, errlen, PD_EIO, "resolve %s: failed", host);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = PD_EIO;
    FILE *out = NULL;
    uint64_t got = 0;
    if (fd < 0) {
        freeaddrinfo(ai);
        return pd_seterr(err, errlen, PD_EIO, "socket: %s", strerror(errno));
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        pd_seterr(err, errlen, PD_EAGAIN, "connect %s: %s", base_url, strerror(errno));
        rc = PD_EAGAIN;
        goto out;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (wait_fd(fd, POLLOUT, idle_timeout_ms) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) || soerr) {
        pd_seterr(err, errlen, PD_EAGAIN, "connect %s: %s", base_url, soerr ? strerror(soerr) : "timed out");
        rc = PD_EAGAIN;
        goto out;
    }
    char req[1024];
    int rl = snprintf(req, sizeof req,
                      "GET /internal/v1/snapshot/%d HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n%s%s%s\r\n", p,
                      host, port, token && *token ? "Authorization: Bearer " : "", token && *token ? token : "",
                      token && *token ? "\r\n" : "");
    for (int off = 0; off < rl;) {
        if (wait_fd(fd, POLLOUT, idle_timeout_ms)) {
            pd_seterr(err, errlen, PD_EIO, "send to %s timed out", base_url);
            goto out;
        }
        ssize_t w = send(fd, req + off, (size_t)(rl - off), MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            pd_seterr(err, errlen, PD_EIO, "send to %s: %s", base_url, strerror(errno));
            goto out;
        }
        if (w > 0) off += (int)w;
    }
    out = fopen(path, "wb");
    if (!out) {
        pd_seterr(err, errlen, PD_EIO, "create %s: %s", path, strerror(errno));
        goto out;
    }
    char buf[65536];
    pd_buf head = {0};
    int in_body = 0, status = 0;
    long long clen = -1;
    for (;;) {
        if (in_body && clen >= 0 && got >= (uint64_t)clen) break;
        if (wait_fd(fd, POLLIN, idle_timeout_ms)) {
            pd_buf_free(&head);
            pd_seterr(err, errlen, PD_EIO, "snapshot from %s stalled for %d ms", base_url, idle_timeout_ms);
            goto out;
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) {
            pd_buf_free(&head);
            pd_seterr(err, errlen, PD_EIO, "recv from %s: %s", base_url, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        if (in_body) {
            if (fwrite(buf, 1, (size_t)n, out) != (size_t)n) {
                pd_seterr(err, errlen, PD_EIO, "write %s: %s", path, strerror(errno));
                goto out;
            }
            got += (uint64_t)n;
            continue;
        }
        pd_buf_append(&head, buf, (size_t)n);
        char *eoh = head.p ? strstr(head.p, "\r\n\r\n") : NULL;
        if (!eoh) {
            if (head.len > 16384) {
                pd_buf_free(&head);
                pd_seterr(err, errlen, PD_EIO, "bad response head from %s", base_url);
                goto out;
            }
            continue;
        }
        if (sscanf(head.p, "HTTP/1.%*d %d", &status) != 1) status = 0;
        for (char *l = strstr(head.p, "\r\n"); l && l < eoh; l = strstr(l + 2, "\r\n"))
            if (strncasecmp(l + 2, "Content-Length:", 15) == 0) clen = atoll(l + 17);
        if (status != 200) {
            rc = status == 404 ? PD_ENOTFOUND : status == 503 ? PD_EAGAIN : PD_EIO;
            pd_seterr(err, errlen, rc, "snapshot from %s: HTTP %d", base_url, status);
            pd_buf_free(&head);
            goto out;
        }
        in_body = 1;
        size_t hl = (size_t)(eoh + 4 - head.p);
        if (head.len > hl) {
            fwrite(head.p + hl, 1, head.len - hl, out);
            got += head.len - hl;
        }
        pd_buf_free(&head);
    }
    pd_buf_free(&head);
    if (!in_body) {
        pd_seterr(err, errlen, PD_EIO, "snapshot from %s: connection closed before the response", base_url);
        goto out;
    }
    if (fclose(out) != 0) {
        out = NULL;
        pd_seterr(err, errlen, PD_EIO, "write %s failed", path);
        goto out;
    }
    out = NULL;
    uint64_t records;
    rc = pd_handoff_verify(path, p, s, cp, &records, err, errlen);
    if (bytes) *bytes = got;
out:
    if (out) fclose(out);
    if (rc != PD_OK) remove(path);
    close(fd);
    freeaddrinfo(ai);
    return rc;
}

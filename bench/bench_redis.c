/*
 * bench_redis.c -- the external-store design the talk compares against, for
 * `make bench`: profiles as Redis hashes, one per user-day, updated with
 * pipelined HINCRBY and read with HGETALL. A raw RESP2 client over a TCP
 * socket (no client library).
 *
 *   ingest --file F --port P [--host 127.0.0.1] [--pipeline N]
 *     Loads the JSONL file, then (timed) parses and validates every line
 *     with the same event parser as the worker (pd_event_parse) and sends,
 *     per event, to key "p:<user>:<day>":
 *       HINCRBY events 1, HINCRBY type:<type> 1,
 *       categorical dims: HINCRBY <dim>:<value> 1,
 *       numeric dims:     HINCRBY <dim>:count 1, HINCRBY[FLOAT] <dim>:sum v,
 *                         HINCRBY <dim>:hist:<bucket> 1
 *     pipelined N events at a time (all replies read before the next
 *     window). No de-duplication, no min/max/sumsq, no value cap, no offsets:
 *     strictly less work than the worker does.
 *
 *   query --port P --users U --today DAY [--days 30] [--threads T] [--secs S]
 *     T client threads, each with its own connection, in a closed loop:
 *     pick a random user from file U, pipeline HGETALL of the 30 day keys,
 *     sum the fields over the days and build a JSON document of the same
 *     shape as the worker's (counts per categorical value, count/sum/mean/
 *     histogram per numeric dimension). Latency per query; prints rps and
 *     p50/p99/p999 and a latency distribution file (--dist FILE).
 */
#include "event.h"
#include "schema.h"
#include "util.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

static double now_s(void) { return (double)pd_mono_us() / 1e6; }

/* ---- connection ---- */

typedef struct {
    int fd;
    char *rbuf;
    size_t rlen, rcap, rpos;
} rconn;

static int rconn_open(rconn *c, const char *host, int port)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return PD_EIO;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(c->fd);
        return PD_EIO;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {10, 0}; /* bounded waits */
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    c->rcap = 1 << 16;
    c->rbuf = pd_malloc(c->rcap);
    return PD_OK;
}

static void rconn_close(rconn *c)
{
    if (c->fd >= 0) close(c->fd);
    free(c->rbuf);
}

static int send_all(rconn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(c->fd, p, n);
        if (w <= 0) return PD_EIO;
        p += w;
        n -= (size_t)w;
    }
    return PD_OK;
}

/* Makes at least `need` unread bytes available. */
static int fill(rconn *c, size_t need)
{
    if (c->rpos > 0 && c->rlen - c->rpos < need) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    while (c->rlen - c->rpos < need) {
        if (c->rlen == c->rcap) {
            c->rcap *= 2;
            c->rbuf = pd_realloc(c->rbuf, c->rcap);
        }
        ssize_t r = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (r <= 0) return PD_EIO;
        c->rlen += (size_t)r;
    }
    return PD_OK;
}

/* Reads one line (without CRLF) into *line, *len. Valid until the next read. */
static int read_line(rconn *c, const char **line, size_t *len)
{
    for (int guard = 0; guard < 1000000; guard++) {
        char *s = c->rbuf + c->rpos;
        size_t have = c->rlen - c->rpos;
        char *e = have >= 2 ? memmem(s, have, "\r\n", 2) : NULL;
        if (e) {
            *line = s;
            *len = (size_t)(e - s);
            c->rpos += *len + 2;
            return PD_OK;
        }
        if (fill(c, have + 1)) return PD_EIO;
    }
    return PD_EIO;
}

/* One reply; bulk strings of an array reply are passed to fn (may be NULL). */
typedef void (*bulk_fn)(void *arg, const char *s, size_t n);
static int read_reply(rconn *c, bulk_fn fn, void *arg)
{
    const char *l;
    size_t n;
    if (read_line(c, &l, &n) || n < 1) return PD_EIO;
    switch (l[0]) {
    case '+': case ':': return PD_OK;
    case '-': fprintf(stderr, "bench_redis: error reply %.*s\n", (int)n, l); return PD_ERR;
    case '$': {
        long len = strtol(l + 1, NULL, 10);
        if (len < 0) return PD_OK;
        if (fill(c, (size_t)len + 2)) return PD_EIO;
        if (fn) fn(arg, c->rbuf + c->rpos, (size_t)len);
        c->rpos += (size_t)len + 2;
        return PD_OK;
    }
    case '*': {
        long k = strtol(l + 1, NULL, 10);
        for (long i = 0; i < k; i++)
            if (read_reply(c, fn, arg)) return PD_EIO;
        return PD_OK;
    }
    }
    return PD_ERR;
}

static void cmd_begin(pd_buf *b, int argc) { pd_buf_printf(b, "*%d\r\n", argc); }
static void cmd_arg(pd_buf *b, const char *s, size_t n)
{
    pd_buf_printf(b, "$%zu\r\n", n);
    pd_buf_append(b, s, n);
    pd_buf_append(b, "\r\n", 2);
}

/* HINCRBY key field incr (field = a[:b[:c]]) */
static void hincr(pd_buf *b, const char *key, size_t klen, const char *field, size_t flen, const char *incr,
                  int isfloat)
{
    cmd_begin(b, 4);
    if (isfloat) cmd_arg(b, "HINCRBYFLOAT", 12);
    else cmd_arg(b, "HINCRBY", 7);
    cmd_arg(b, key, klen);
    cmd_arg(b, field, flen);
    cmd_arg(b, incr, strlen(incr));
}

/* ---- ingest ---- */

static int run_ingest(int argc, char **argv)
{
    const char *file = arg(argc, argv, "--file", NULL);
    const char *host = arg(argc, argv, "--host", "127.0.0.1");
    int port = atoi(arg(argc, argv, "--port", "0"));
    int pipe_n = atoi(arg(argc, argv, "--pipeline", "200"));
    if (!file || port <= 0) return 2;
    FILE *f = fopen(file, "rb");
    if (!f) return 1;
    pd_buf data = {0};
    char tmp[1 << 16];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) pd_buf_append(&data, tmp, r);
    fclose(f);
    pd_schema s;
    pd_schema_default(&s, 64);
    pd_tz tz = {0};
    rconn c;
    if (rconn_open(&c, host, port)) {
        fprintf(stderr, "bench_redis: connect %s:%d failed\n", host, port);
        pd_buf_free(&data);
        return 1;
    }
    pd_buf out = {0};
    char key[PD_MAX_USER_ID + 32], field[PD_MAX_NAME + PD_MAX_CAT_VALUE + 16], num[64], err[256];
    uint64_t events = 0, cmds = 0, bad = 0, pending_cmds = 0, lines = 0;
    int rc = 0;
    double t0 = now_s();
    int inwin = 0;
    for (size_t i = 0; i < data.len && rc == 0;) {
        char *nl = memchr(data.p + i, '\n', data.len - i);
        size_t e = nl ? (size_t)(nl - data.p) : data.len;
        size_t len = e - i;
        const char *line = data.p + i;
        i = e + 1;
        if (!len) continue;
        lines++;
        pd_event ev;
        if (pd_event_parse(&ev, &s, line, len, 0, err, sizeof err) != PD_EV_OK) {
            bad++;
            pd_event_free(&ev);
            continue;
        }
        char d[11];
        pd_day_format(pd_tz_day(&tz, ev.ts_ms), d);
        size_t kl = (size_t)snprintf(key, sizeof key, "p:%.*s:%s", (int)ev.user_id_len, ev.user_id, d);
        hincr(&out, key, kl, "events", 6, "1", 0);
        size_t fl = (size_t)snprintf(field, sizeof field, "type:%.*s", (int)ev.type_len, ev.type);
        hincr(&out, key, kl, field, fl, "1", 0);
        pending_cmds += 2;
        for (int k = 0; k < s.ndims; k++) {
            const pd_dim *dm = &s.dims[k];
            const pd_attr *a = &ev.attrs[k];
            if (dm->type == PD_DIM_CATEGORICAL && a->kind == PD_ATTR_STR) {
                fl = (size_t)snprintf(field, sizeof field, "%s:%.*s", dm->name, (int)a->len, a->s);
                hincr(&out, key, kl, field, fl, "1", 0);
                pending_cmds++;
            } else if (dm->type == PD_DIM_NUMERIC && a->kind == PD_ATTR_NUM) {
                fl = (size_t)snprintf(field, sizeof field, "%s:count", dm->name);
                hincr(&out, key, kl, field, fl, "1", 0);
                fl = (size_t)snprintf(field, sizeof field, "%s:sum", dm->name);
                int integral = a->num == floor(a->num) && fabs(a->num) < 9e15;
                if (integral) snprintf(num, sizeof num, "%.0f", a->num);
                else snprintf(num, sizeof num, "%.17g", a->num);
                hincr(&out, key, kl, field, fl, num, !integral);
                int bkt = 0;
                while (bkt < dm->nbounds && a->num > dm->bounds[bkt]) bkt++;
                fl = (size_t)snprintf(field, sizeof field, "%s:hist:%d", dm->name, bkt);
                hincr(&out, key, kl, field, fl, "1", 0);
                pending_cmds += 3;
            }
        }
        pd_event_free(&ev);
        events++;
        if (++inwin >= pipe_n) {
            if (send_all(&c, out.p, out.len)) rc = 1;
            for (uint64_t j = 0; j < pending_cmds && !rc; j++) rc = read_reply(&c, NULL, NULL) ? 1 : 0;
            cmds += pending_cmds;
            out.len = 0;
            pending_cmds = 0;
            inwin = 0;
        }
    }
    if (!rc && out.len) {
        if (send_all(&c, out.p, out.len)) rc = 1;
        for (uint64_t j = 0; j < pending_cmds && !rc; j++) rc = read_reply(&c, NULL, NULL) ? 1 : 0;
        cmds += pending_cmds;
    }
    double secs = now_s() - t0;
    if (!rc)
        printf("{\"mode\":\"ingest\",\"lines\":%" PRIu64 ",\"events\":%" PRIu64 ",\"bad\":%" PRIu64
               ",\"commands\":%" PRIu64 ",\"secs\":%.4f,\"eps\":%.0f,\"lps\":%.0f}\n",
               lines, events, bad, cmds, secs, (double)events / secs, (double)lines / secs);
    else
        fprintf(stderr, "bench_redis: ingest failed\n");
    pd_buf_free(&out);
    pd_buf_free(&data);
    rconn_close(&c);
    return rc;
}

/* ---- query ---- */

typedef struct {
    char *name;
    double v;
} fld;

typedef struct {
    fld *f;
    size_t n, cap;
    const char *pending; /* field name waiting for its value */
    size_t plen;
} fldmap;

static void fld_add(fldmap *m, const char *name, size_t nlen, double v)
{
    for (size_t i = 0; i < m->n; i++)
        if (strlen(m->f[i].name) == nlen && memcmp(m->f[i].name, name, nlen) == 0) {
            m->f[i].v += v;
            return;
        }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 128;
        m->f = pd_realloc(m->f, m->cap * sizeof *m->f);
    }
    m->f[m->n].name = pd_strndup(name, nlen);
    m->f[m->n].v = v;
    m->n++;
}

/* HGETALL replies alternate field, value. The field's bytes stay valid
 * only until the next read, so keep a copy. */
typedef struct {
    fldmap *m;
    char fname[512];
    size_t flen;
    int want_value;
} hg_state;

static void on_bulk(void *arg, const char *s, size_t n)
{
    hg_state *st = arg;
    if (!st->want_value) {
        st->flen = PD_MIN(n, sizeof st->fname);
        memcpy(st->fname, s, st->flen);
        st->want_value = 1;
    } else {
        char tmp[64];
        size_t k = PD_MIN(n, sizeof tmp - 1);
        memcpy(tmp, s, k);
        tmp[k] = '\0';
        fld_add(st->m, st->fname, st->flen, strtod(tmp, NULL));
        st->want_value = 0;
    }
}

static int fld_cmp(const void *a, const void *b)
{
    return strcmp(((const fld *)a)->name, ((const fld *)b)->name);
}

/* Renders {"user_id":..,"events":N,"event_types":{..},"dimensions":{..}}
 * from the summed fields. */
static void render(const pd_schema *s, const char *user, fldmap *m, pd_buf *out)
{
    qsort(m->f, m->n, sizeof *m->f, fld_cmp);
    double events = 0;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->f[i].name, "events") == 0) events = m->f[i].v;
    pd_buf_append(out, "{\"user_id\":", 11);
    pd_buf_json_str(out, user, strlen(user));
    pd_buf_printf(out, ",\"events\":%.0f,\"event_types\":{", events);
    int first = 1;
    for (size_t i = 0; i < m->n; i++) {
        if (strncmp(m->f[i].name, "type:", 5) != 0) continue;
        if (!first) pd_buf_putc(out, ',');
        first = 0;
        pd_buf_json_str(out, m->f[i].name + 5, strlen(m->f[i].name + 5));
        pd_buf_printf(out, ":%.0f", m->f[i].v);
    }
    pd_buf_append(out, "},\"dimensions\":{", 16);
    int fd = 1;
    for (int k = 0; k < s->ndims; k++) {
        const pd_dim *dm = &s->dims[k];
        size_t nl = strlen(dm->name);
        if (!fd) pd_buf_putc(out, ',');
        fd = 0;
        pd_buf_json_str(out, dm->name, nl);
        if (dm->type == PD_DIM_CATEGORICAL) {
            double total = 0;
            pd_buf_append(out, ":{\"type\":\"categorical\",\"counts\":{", 33);
            int f1 = 1;
            for (size_t i = 0; i < m->n; i++) {
                const char *fn = m->f[i].name;
                if (strncmp(fn, dm->name, nl) != 0 || fn[nl] != ':') continue;
                if (!f1) pd_buf_putc(out, ',');
                f1 = 0;
                pd_buf_json_str(out, fn + nl + 1, strlen(fn + nl + 1));
                pd_buf_printf(out, ":%.0f", m->f[i].v);
                total += m->f[i].v;
            }
            pd_buf_printf(out, "},\"total\":%.0f}", total);
        } else {
            double cnt = 0, sum = 0, hist[PD_MAX_BOUNDS + 1] = {0};
            for (size_t i = 0; i < m->n; i++) {
                const char *fn = m->f[i].name;
                if (strncmp(fn, dm->name, nl) != 0 || fn[nl] != ':') continue;
                const char *sub = fn + nl + 1;
                if (strcmp(sub, "count") == 0) cnt = m->f[i].v;
                else if (strcmp(sub, "sum") == 0) sum = m->f[i].v;
                else if (strncmp(sub, "hist:", 5) == 0) {
                    int b = atoi(sub + 5);
                    if (b >= 0 && b <= dm->nbounds) hist[b] = m->f[i].v;
                }
            }
            pd_buf_printf(out, ":{\"type\":\"numeric\",\"count\":%.0f,\"sum\":%.17g,\"mean\":%.17g,\"histogram\":[",
                          cnt, sum, cnt > 0 ? sum / cnt : 0.0);
            for (int b = 0; b <= dm->nbounds; b++) {
                if (b < dm->nbounds) pd_buf_printf(out, "%s{\"le\":%.17g,\"count\":%.0f}", b ? "," : "", dm->bounds[b], hist[b]);
                else pd_buf_printf(out, "%s{\"le\":\"+Inf\",\"count\":%.0f}", b ? "," : "", hist[b]);
            }
            pd_buf_append(out, "]}", 2);
        }
    }
    pd_buf_append(out, "}}", 2);
}

typedef struct {
    const char *host;
    int port;
    char **users;
    size_t nusers;
    int64_t today;
    int days;
    double until;
    uint64_t seed;
    double *lat;  /* seconds, owned */
    size_t nlat, caplat;
    uint64_t bytes;
    int failed;
    const pd_schema *s;
} qthread;

static void *query_main(void *arg)
{
    qthread *t = arg;
    rconn c;
    if (rconn_open(&c, t->host, t->port)) {
        t->failed = 1;
        return NULL;
    }
    pd_buf cmd = {0}, out = {0};
    fldmap m = {0};
    uint64_t x = t->seed | 1;
    char key[PD_MAX_USER_ID + 32], d[11];
    while (now_s() < t->until) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        const char *u = t->users[x % t->nusers];
        double q0 = now_s();
        cmd.len = 0;
        for (int i = 0; i < t->days; i++) {
            pd_day_format(t->today - i, d);
            size_t kl = (size_t)snprintf(key, sizeof key, "p:%s:%s", u, d);
            cmd_begin(&cmd, 2);
            cmd_arg(&cmd, "HGETALL", 7);
            cmd_arg(&cmd, key, kl);
        }
        if (send_all(&c, cmd.p, cmd.len)) {
            t->failed = 1;
            break;
        }
        hg_state st = {.m = &m};
        for (int i = 0; i < t->days; i++)
            if (read_reply(&c, on_bulk, &st)) {
                t->failed = 1;
                break;
            }
        if (t->failed) break;
        out.len = 0;
        render(t->s, u, &m, &out);
        t->bytes += out.len;
        for (size_t i = 0; i < m.n; i++) free(m.f[i].name);
        m.n = 0;
        if (t->nlat == t->caplat) {
            t->caplat = t->caplat ? t->caplat * 2 : 4096;
            t->lat = pd_realloc(t->lat, t->caplat * sizeof *t->lat);
        }
        t->lat[t->nlat++] = now_s() - q0;
    }
    free(m.f);
    pd_buf_free(&cmd);
    pd_buf_free(&out);
    rconn_close(&c);
    return NULL;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_query(int argc, char **argv)
{
    const char *host = arg(argc, argv, "--host", "127.0.0.1");
    int port = atoi(arg(argc, argv, "--port", "0"));
    const char *ufile = arg(argc, argv, "--users", NULL);
    int64_t today = atoll(arg(argc, argv, "--today", "0"));
    int days = atoi(arg(argc, argv, "--days", "30"));
    int nth = atoi(arg(argc, argv, "--threads", "4"));
    double secs = atof(arg(argc, argv, "--secs", "5"));
    const char *dist = arg(argc, argv, "--dist", NULL);
    if (port <= 0 || !ufile || today <= 0 || nth < 1 || nth > 256) return 2;
    FILE *f = fopen(ufile, "r");
    if (!f) return 1;
    char **users = NULL;
    size_t nu = 0, cu = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        if (nu == cu) {
            cu = cu ? cu * 2 : 1024;
            users = pd_realloc(users, cu * sizeof *users);
        }
        users[nu++] = pd_strdup(line);
    }
    fclose(f);
    if (!nu) return 1;
    pd_schema s;
    pd_schema_default(&s, 64);
    qthread *t = pd_calloc((size_t)nth, sizeof *t);
    pthread_t *th = pd_calloc((size_t)nth, sizeof *th);
    double t0 = now_s();
    for (int i = 0; i < nth; i++) {
        t[i] = (qthread){.host = host, .port = port, .users = users, .nusers = nu, .today = today, .days = days,
                         .until = t0 + secs, .seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1), .s = &s};
        pthread_create(&th[i], NULL, query_main, &t[i]);
    }
    size_t total = 0;
    int failed = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < nth; i++) {
        pthread_join(th[i], NULL);
        total += t[i].nlat;
        failed |= t[i].failed;
        bytes += t[i].bytes;
    }
    double el = now_s() - t0;
    double *all = pd_malloc((total ? total : 1) * sizeof *all);
    size_t k = 0;
    for (int i = 0; i < nth; i++) {
        memcpy(all + k, t[i].lat, t[i].nlat * sizeof *all);
        k += t[i].nlat;
        free(t[i].lat);
    }
    qsort(all, total, sizeof *all, dbl_cmp);
#define PCT(q) (total ? all[(size_t)((double)(total - 1) * (q))] * 1e3 : 0.0)
    printf("{\"mode\":\"query\",\"requests\":%zu,\"secs\":%.3f,\"rps\":%.0f,\"p50_ms\":%.4f,\"p99_ms\":%.4f,"
           "\"p999_ms\":%.4f,\"max_ms\":%.4f,\"avg_body\":%.0f,\"threads\":%d,\"failed\":%s}\n",
           total, el, (double)total / el, PCT(0.5), PCT(0.99), PCT(0.999), total ? all[total - 1] * 1e3 : 0.0,
           total ? (double)bytes / (double)total : 0.0, nth, failed ? "true" : "false");
    if (dist) {
        FILE *o = fopen(dist, "w");
        if (o) {
            static const double qs[] = {0, .1, .2, .3, .4, .5, .6, .7, .75, .8, .85, .9, .95, .97, .99, .995, .999, .9999, 1};
            for (size_t i = 0; i < PD_ARRAY_LEN(qs); i++) fprintf(o, "%g %.4f\n", qs[i] * 100, PCT(qs[i]));
            fclose(o);
        }
    }
    free(all);
    free(t);
    free(th);
    for (size_t i = 0; i < nu; i++) free(users[i]);
    free(users);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ingest") == 0) return run_ingest(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "query") == 0) return run_query(argc, argv);
    fprintf(stderr, "usage: bench_redis ingest --file F --port P [--pipeline N]\n"
                    "       bench_redis query --port P --users FILE --today DAYNUM [--days 30] [--threads T] [--secs S] [--dist F]\n");
    return 2;
}

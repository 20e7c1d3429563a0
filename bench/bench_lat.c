/*
 * bench_lat.c -- latency at a constant request rate, open loop: the
 * light-load figures of the rank step (bench/steps/rank.py; issue 20's
 * "p99 <= 2 ms locally"), without a Python client's own latency in them.
 *
 *   bench_lat --port P --rate R --secs S [--conns N] [--timeout-ms T]
 *             [--host H] LIST
 *
 * LIST is a file of requests, one a line: `METHOD PATH [BODYFILE]`, e.g.
 *   GET /v1/profiles/u1?days=30
 *   POST /v1/profiles/u2/rank /tmp/rank100.json
 * (blank lines and lines starting with '#' skipped; PATH as sent, already
 * %-encoded; a body is sent as application/json, each file read once).
 * Request j (j = 0, 1, ...) is line j mod the number of lines.
 *
 * Schedule: request j is due at t0 + j / R seconds, for j < R x S. N
 * connections (default 1) to H:P (default 127.0.0.1), each on its own
 * thread, take every N-th request: connection k sends k, k + N, ... One
 * request at a time per connection (no pipelining): a connection whose
 * answer came late sends its next due request at once, but the schedule
 * itself never moves (open loop). Two latencies per request, both to the
 * answer's last byte: from the time it was due ("sched": coordinated
 * omission corrected, the wait behind a late answer included -- what a
 * client sending at R would see) and from the time it was actually sent
 * ("send"). A connection sleeps until 0.2 ms before a due time (timer
 * slack 1 ns) and spins the rest, so that the sleep's own lateness (50 us
 * of default slack, the wake-up of a niced process: ~0.1 ms at p50 on this
 * machine before the spin) stays out of "sched"; it costs ~2 % of a core
 * per 100 req/s of one connection. Before t0 each connection sends the first line once,
 * unrecorded, so the first measured request does not pay the connect.
 *
 * The HTTP client is the tree's one (peer.c, pd_peer_get): keep-alive,
 * Content-Length framing (profiled never sends chunked answers; peer.c
 * refuses Transfer-Encoding with an error), a bounded exchange, one
 * retry on a fresh connection when a kept one turns out stale (POSTs are
 * marked idempotent: rank only reads). A connection the server closes
 * (http_keepalive_max_requests) is reopened by the next request, its
 * connect counted in that request's latency; so is one idle for longer
 * than PD_PEER_IDLE_MAX_US (0.7 s), which the pool does not reuse: below
 * ~1.5 req/s per connection every request pays a connect.
 *
 * Bounds: each request's exchange at most T ms (default 5,000); no
 * request is sent after t0 + S + T/1000 s (counted "unsent"), so the run
 * ends by then plus one exchange. R x S at most 20 million.
 *
 * Output: one JSON line on stdout:
 *   {"rate":R,"secs":S,"conns":N,"due":..,"sent":..,"ok":..,"non200":..,
 *    "errors":..,"unsent":..,"wall_s":..,"late":..,"lag_max_us":..,
 *    "sched":{"p50_us":..,"p90_us":..,"p99_us":..,"p999_us":..,"max_us":..},
 *    "send":{...the same...},"first_error":".."}
 * ok = answers with status 200 (the percentiles are of those only),
 * non200 = complete answers with another status, errors = exchanges that
 * failed (connect, timeout, malformed answer); late = requests sent more
 * than 1 ms after they were due, lag_max_us the most any was. Percentiles
 * are nearest-rank (the smallest value with at least q of the values at
 * or below it); null when nothing was ok. first_error (absent when none)
 * says what went wrong first. The first non-200 answer's body and every
 * error go to stderr too (at most 5 lines).
 *
 * Exit status: 0 when every due request got a 200; 1 otherwise (the JSON
 * line is printed all the same); 2 for bad usage or an unreadable file;
 * 3 when the warm-up request of a connection failed (nothing measured).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include "peer.h"
#include "util.h"

#define MAX_DUE 20000000LL
#define MAX_CONNS 64
#define MAX_BODY (64 << 20)
#define LATE_US 1000
#define SPIN_NS 200000 /* sleep until this long before a due time, then spin */
#define MAX_STDERR 5

typedef struct {
    char method[16];
    char *path;       /* owned */
    const char *body; /* a file's bytes, owned by the body table; NULL: none */
    size_t body_len;
} lat_req;

typedef struct {
    char *name; /* owned */
    char *data; /* owned */
    size_t len;
} lat_body;

typedef struct {
    /* shared, read-only while the threads run */
    const pd_peer_url *url;
    const lat_req *reqs;
    size_t nreq;
    int64_t t0_ns, last_send_ns; /* schedule start; no send after this */
    double rate;
    long long due;
    int conns, timeout_ms;
    /* this connection's */
    int k;
    pd_peer_pool *pool;
    int64_t *sched_ns, *send_ns; /* ok answers' latencies, owned */
    long long nok, sent, non200, errors, unsent, late;
    int64_t lag_max_ns;
    char first_error[256];
    int64_t first_error_at; /* schedule time of first_error, to pick the earliest */
} lat_conn;

static pthread_mutex_t stderr_mu = PTHREAD_MUTEX_INITIALIZER;
static int stderr_lines;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void sleep_until_ns(int64_t at)
{
    struct timespec t = {.tv_sec = at / 1000000000, .tv_nsec = at % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {
    }
}

/* At most MAX_STDERR lines to stderr over the whole run. */
static void say(const char *fmt, const char *a, const char *b)
{
    pthread_mutex_lock(&stderr_mu);
    if (stderr_lines++ < MAX_STDERR) fprintf(stderr, fmt, a, b);
    pthread_mutex_unlock(&stderr_mu);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_lat --port P --rate R --secs S [--conns N] [--timeout-ms T] [--host H] LIST\n"
            "  LIST: one request a line, `METHOD PATH [BODYFILE]`; request j is line j mod lines.\n"
            "  Sends R req/s for S s over N keep-alive connections (default 1) to H:P\n"
            "  (default 127.0.0.1), open loop; each exchange bounded by T ms (default 5000).\n"
            "  Prints one JSON line: counts, p50/p90/p99/p99.9/max latency from the due\n"
            "  time (\"sched\") and from the actual send (\"send\"), microseconds.\n"
            "  Exit 0: every request got a 200; 1: some did not; 2: usage; 3: warm-up failed.\n");
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_lat: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    pd_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b.len + n > MAX_BODY) {
            fprintf(stderr, "bench_lat: %s is over %d bytes\n", path, MAX_BODY);
            exit(2);
        }
        pd_buf_append(&b, tmp, n);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        fprintf(stderr, "bench_lat: cannot read %s\n", path);
        exit(2);
    }
    pd_buf_append(&b, "", 1); /* NUL-terminated for the list parser; not counted */
    *len = b.len - 1;
    return b.p;
}

/* Reads LIST into *reqs (and the body files it names into *bodies). */
static size_t load_list(const char *path, lat_req **reqs, lat_body **bodies, size_t *nbodies)
{
    size_t len, n = 0, cap = 0;
    char *text = slurp(path, &len), *next = text;
    int lineno = 0;
    while (next) {
        char *line = next, *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        next = nl ? nl + 1 : NULL;
        lineno++;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r') line[--ll] = '\0';
        char *s2 = NULL;
        char *m = strtok_r(line, " \t", &s2);
        if (!m || m[0] == '#') continue;
        char *p = strtok_r(NULL, " \t", &s2), *bf = strtok_r(NULL, " \t", &s2);
        if (!p || p[0] != '/' || strtok_r(NULL, " \t", &s2) || strlen(m) >= sizeof((*reqs)->method)) {
            fprintf(stderr, "bench_lat: %s, request %d: want `METHOD /PATH [BODYFILE]`\n", path, lineno);
            exit(2);
        }
        if (bf && strcmp(m, "GET") == 0) {
            fprintf(stderr, "bench_lat: %s, request %d: a GET with a body\n", path, lineno);
            exit(2);
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            *reqs = pd_realloc(*reqs, cap * sizeof **reqs);
        }
        lat_req *r = &(*reqs)[n++];
        memset(r, 0, sizeof *r);
        snprintf(r->method, sizeof r->method, "%s", m);
        r->path = pd_strdup(p);
        if (bf) {
            size_t i = 0;
            while (i < *nbodies && strcmp((*bodies)[i].name, bf) != 0) i++;
            if (i == *nbodies) {
                *bodies = pd_realloc(*bodies, (*nbodies + 1) * sizeof **bodies);
                lat_body *b = &(*bodies)[(*nbodies)++];
                b->name = pd_strdup(bf);
                b->data = slurp(bf, &b->len);
            }
            /* bodies may move while growing: bound to the request after the loop */
            r->body_len = i;
        } else {
            r->body_len = (size_t)-1;
        }
    }
    pd_free(text);
    for (size_t i = 0; i < n; i++) {
        lat_req *r = &(*reqs)[i];
        if (r->body_len == (size_t)-1) {
            r->body_len = 0;
        } else {
            const lat_body *b = &(*bodies)[r->body_len];
            r->body = b->data;
            r->body_len = b->len;
        }
    }
    return n;
}

/* One exchange of request r on c's pool, bounded by deadline_us
 * (pd_mono_us). Returns the status, or 0 with err set. */
static int exchange(lat_conn *c, const lat_req *r, int64_t deadline_us, pd_peer_resp *resp, char *err,
                    size_t errlen)
{
    const int get = strcmp(r->method, "GET") == 0;
    pd_peer_req rq = {
        .path_query = r->path,
        .deadline_us = deadline_us,
        .method = get ? NULL : r->method,
        .body = r->body,
        .body_len = r->body_len,
        .idempotent = 1,
    };
    if (pd_peer_get(c->pool, c->url, &rq, resp, err, errlen) != PD_OK) return 0;
    return resp->status;
}

static void note_error(lat_conn *c, int64_t due, const char *what)
{
    if (!c->first_error[0]) {
        snprintf(c->first_error, sizeof c->first_error, "%s", what);
        c->first_error_at = due;
    }
}

static void *conn_main(void *arg)
{
    lat_conn *c = arg;
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL); /* best effort: the sleeps end on time */
    pd_peer_resp resp = {0};
    char err[256];
    for (long long j = c->k; j < c->due; j += c->conns) {
        int64_t due = c->t0_ns + (int64_t)((double)j * 1e9 / c->rate);
        int64_t now = now_ns();
        if (now < due - SPIN_NS) sleep_until_ns(due - SPIN_NS);
        while ((now = now_ns()) < due) {
        }
        if (now > c->last_send_ns) {
            c->unsent += (c->due - 1 - j) / c->conns + 1;
            break;
        }
        const lat_req *r = &c->reqs[(size_t)(j % (long long)c->nreq)];
        int64_t lag = now - due;
        if (lag > c->lag_max_ns) c->lag_max_ns = lag;
        if (lag > (int64_t)LATE_US * 1000) c->late++;
        int64_t sent = now_ns();
        c->sent++;
        err[0] = '\0';
        int status = exchange(c, r, sent / 1000 + (int64_t)c->timeout_ms * 1000, &resp, err, sizeof err);
        int64_t done = now_ns();
        if (status == 200) {
            c->sched_ns[c->nok] = done - due;
            c->send_ns[c->nok] = done - sent;
            c->nok++;
        } else if (status) {
            char what[256];
            snprintf(what, sizeof what, "%s %.120s answered %d", r->method, r->path, status);
            c->non200++;
            note_error(c, due, what);
            char body[208];
            snprintf(body, sizeof body, "%.*s", (int)PD_MIN(resp.body.len, 200), resp.body.p ? resp.body.p : "");
            say("bench_lat: %s: %s\n", what, body);
        } else {
            char what[256];
            snprintf(what, sizeof what, "%s %.100s: %.120s", r->method, r->path, err);
            c->errors++;
            note_error(c, due, what);
            say("bench_lat: %s%s\n", what, "");
        }
    }
    pd_buf_free(&resp.body);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the ceil(q n)-th smallest of the n sorted values. */
static double pct_us(const int64_t *v, long long n, double q)
{
    double qn = q * (double)n - 1e-9; /* 0.99 x 1000 may come out a hair over 990 */
    long long rank = (long long)qn;
    if ((double)rank < qn) rank++;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return (double)v[rank - 1] / 1e3;
}

static void print_dist(const char *name, int64_t *v, long long n)
{
    if (n == 0) {
        printf(",\"%s\":{\"p50_us\":null,\"p90_us\":null,\"p99_us\":null,\"p999_us\":null,\"max_us\":null}", name);
        return;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    printf(",\"%s\":{\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}", name,
           pct_us(v, n, 0.5), pct_us(v, n, 0.9), pct_us(v, n, 0.99), pct_us(v, n, 0.999), (double)v[n - 1] / 1e3);
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

/* Parses a number option's value within [lo, hi]; exits 2 otherwise. */
static double num_arg(const char *opt, const char *v, double lo, double hi)
{
    char *e;
    errno = 0;
    double d = v ? strtod(v, &e) : 0;
    if (!v || errno || e == v || *e || !(d >= lo && d <= hi)) {
        fprintf(stderr, "bench_lat: %s wants a number in [%g, %g], got '%s'\n", opt, lo, hi, v ? v : "");
        exit(2);
    }
    return d;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *list = NULL;
    int port = 0, conns = 1, timeout_ms = 5000;
    double rate = 0, secs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--port") == 0) {
            port = (int)num_arg(a, v, 1, 65535), i++;
        } else if (strcmp(a, "--rate") == 0) {
            rate = num_arg(a, v, 0.001, 1e7), i++;
        } else if (strcmp(a, "--secs") == 0) {
            secs = num_arg(a, v, 0.001, 86400), i++;
        } else if (strcmp(a, "--conns") == 0) {
            conns = (int)num_arg(a, v, 1, MAX_CONNS), i++;
        } else if (strcmp(a, "--timeout-ms") == 0) {
            timeout_ms = (int)num_arg(a, v, 1, 600000), i++;
        } else if (strcmp(a, "--host") == 0 && v) {
            host = v, i++;
        } else if (a[0] == '-' || list) {
            fprintf(stderr, "bench_lat: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            list = a;
        }
    }
    if (!port || rate <= 0 || secs <= 0 || !list) {
        fprintf(stderr, "bench_lat: --port, --rate, --secs and LIST are required\n");
        usage(stderr);
        return 2;
    }
    double due_d = rate * secs;
    if (due_d > (double)MAX_DUE || due_d < 1) {
        fprintf(stderr, "bench_lat: --rate x --secs = %.0f requests, want 1 to %lld\n", due_d, MAX_DUE);
        return 2;
    }
    long long due = (long long)(due_d + 1e-6); /* 300 x 0.3 is 90, not 89 */
    if (conns > due) conns = (int)due;

    pd_peer_url url;
    char ustr[300];
    snprintf(ustr, sizeof ustr, strchr(host, ':') ? "http://[%s]:%d" : "http://%s:%d", host, port);
    if (pd_peer_url_parse(ustr, &url) != PD_OK) {
        fprintf(stderr, "bench_lat: bad host '%s'\n", host);
        return 2;
    }
    lat_req *reqs = NULL;
    lat_body *bodies = NULL;
    size_t nbodies = 0;
    size_t nreq = load_list(list, &reqs, &bodies, &nbodies);
    if (nreq == 0) {
        fprintf(stderr, "bench_lat: %s holds no request\n", list);
        return 2;
    }

    lat_conn *cs = pd_calloc((size_t)conns, sizeof *cs);
    pthread_t *th = pd_calloc((size_t)conns, sizeof *th);
    int rc = 0, warm_failed = 0;
    long long per = (due + conns - 1) / conns;
    for (int k = 0; k < conns; k++) {
        lat_conn *c = &cs[k];
        c->url = &url;
        c->reqs = reqs;
        c->nreq = nreq;
        c->rate = rate;
        c->due = due;
        c->conns = conns;
        c->timeout_ms = timeout_ms;
        c->k = k;
        c->pool = pd_peer_pool_new();
        c->sched_ns = pd_malloc((size_t)per * sizeof *c->sched_ns);
        c->send_ns = pd_malloc((size_t)per * sizeof *c->send_ns);
        /* warm-up: opens the connection (kept in c->pool), unrecorded */
        pd_peer_resp resp = {0};
        char err[256] = "";
        int st = exchange(c, &reqs[0], pd_mono_us() + (int64_t)timeout_ms * 1000, &resp, err, sizeof err);
        if (st != 200) {
            if (st)
                fprintf(stderr, "bench_lat: warm-up %s http://%s:%s%s answered %d: %.*s\n", reqs[0].method, url.host,
                        url.port, reqs[0].path, st, (int)PD_MIN(resp.body.len, 200), resp.body.p ? resp.body.p : "");
            else
                fprintf(stderr, "bench_lat: warm-up %s http://%s:%s%s: %s\n", reqs[0].method, url.host, url.port,
                        reqs[0].path, err);
            warm_failed = 1;
        }
        pd_buf_free(&resp.body);
        if (warm_failed) {
            conns = k + 1; /* the ones set up so far, for the cleanup */
            rc = 3;
            goto out;
        }
    }
    int64_t t0 = now_ns() + 10 * 1000000; /* threads started well before the first due time */
    for (int k = 0; k < conns; k++) {
        cs[k].t0_ns = t0;
        cs[k].last_send_ns = t0 + (int64_t)(secs * 1e9) + (int64_t)timeout_ms * 1000000;
        if (pthread_create(&th[k], NULL, conn_main, &cs[k]) != 0) {
            fprintf(stderr, "bench_lat: pthread_create failed\n");
            return 2; /* before any measurement: threads already started are abandoned with the process */
        }
    }
    for (int k = 0; k < conns; k++) pthread_join(th[k], NULL);
    double wall = (double)(now_ns() - t0) / 1e9;

    long long nok = 0, sent = 0, non200 = 0, errors = 0, unsent = 0, late = 0;
    int64_t lag_max = 0;
    const char *first = NULL;
    int64_t first_at = 0;
    for (int k = 0; k < conns; k++) {
        nok += cs[k].nok;
        sent += cs[k].sent;
        non200 += cs[k].non200;
        errors += cs[k].errors;
        unsent += cs[k].unsent;
        late += cs[k].late;
        if (cs[k].lag_max_ns > lag_max) lag_max = cs[k].lag_max_ns;
        if (cs[k].first_error[0] && (!first || cs[k].first_error_at < first_at)) {
            first = cs[k].first_error;
            first_at = cs[k].first_error_at;
        }
    }
    int64_t *sched = pd_malloc((size_t)(nok ? nok : 1) * sizeof *sched);
    int64_t *send = pd_malloc((size_t)(nok ? nok : 1) * sizeof *send);
    long long at = 0;
    for (int k = 0; k < conns; k++) {
        memcpy(sched + at, cs[k].sched_ns, (size_t)cs[k].nok * sizeof *sched);
        memcpy(send + at, cs[k].send_ns, (size_t)cs[k].nok * sizeof *send);
        at += cs[k].nok;
    }
    printf("{\"rate\":%g,\"secs\":%g,\"conns\":%d,\"due\":%lld,\"sent\":%lld,\"ok\":%lld,\"non200\":%lld,"
           "\"errors\":%lld,\"unsent\":%lld,\"wall_s\":%.3f,\"late\":%lld,\"lag_max_us\":%.1f",
           rate, secs, conns, due, sent, nok, non200, errors, unsent, wall, late, (double)lag_max / 1e3);
    print_dist("sched", sched, nok);
    print_dist("send", send, nok);
    if (first) {
        printf(",\"first_error\":");
        print_json_string(first);
    }
    printf("}\n");
    fflush(stdout);

    pd_free(sched);
    pd_free(send);
    rc = nok == due ? 0 : 1;
out:
    for (int k = 0; k < conns; k++) {
        pd_peer_pool_free(cs[k].pool);
        pd_free(cs[k].sched_ns);
        pd_free(cs[k].send_ns);
    }
    pd_free(th);
    pd_free(cs);
    for (size_t i = 0; i < nreq; i++) pd_free(reqs[i].path);
    pd_free(reqs);
    for (size_t i = 0; i < nbodies; i++) {
        pd_free(bodies[i].name);
        pd_free(bodies[i].data);
    }
    pd_free(bodies);
    return rc;
}

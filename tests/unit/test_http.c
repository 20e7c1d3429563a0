/*
 * test_http.c -- the REST API (http.c) against a real store, through a
 * plain socket client written here (independent of the peer client that
 * http.c forwards with), forwarding between two servers included.
 *
 * Expected numbers come from the events written below, counted by hand.
 */
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "event.h"
#include "http.h"
#include "members.h"
#include "metrics.h"
#include "profile.h"
#include "schema.h"
#include "store.h"
#include "util.h"
#include "worker.h"

#define NPARTS 4
#define DAY_MS 86400000LL

/* ---- a minimal, independent HTTP client: one request per connection ---- */

typedef struct {
    int status;
    char head[8192];
    char *body; /* malloc'd, NUL-terminated */
    size_t body_len;
} t_resp;

static void t_resp_free(t_resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* Sends raw bytes, reads until EOF (the request says Connection: close). */
static int t_raw(int port, const char *req, size_t reqlen, t_resp *r)
{
    memset(r, 0, sizeof *r);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < reqlen) {
        ssize_t n = send(fd, req + off, reqlen - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += (size_t)n;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return -1;
    }
    size_t hl = (size_t)(sep - buf);
    if (hl >= sizeof r->head) hl = sizeof r->head - 1;
    memcpy(r->head, buf, hl);
    r->head[hl] = '\0';
    r->body_len = len - (size_t)(sep + 4 - buf);
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, sep + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 0;
}

static int t_get(int port, const char *target, const char *extra_headers, t_resp *r)
{
    char req[20000];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
                     target, extra_headers ? extra_headers : "");
    return t_raw(port, req, (size_t)n, r);
}

/* Header value (case-insensitive name) from r->head, or NULL. */
static const char *t_header(t_resp *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (char *p = strstr(r->head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            char *v = line + nl + 1;
            while (*v == ' ') v++;
            size_t vl = strcspn(v, "\r");
            if (vl >= cap) vl = cap - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
    }
    return NULL;
}

/* Checks status, JSON body with an "error" member and content type. */
static void t_expect_error(int port, const char *target, const char *hdrs, int status)
{
    t_resp r;
    char ct[128];
    if (t_get(port, target, hdrs, &r) != 0) {
        pd_test_fail(__FILE__, __LINE__, "no response for %.80s", target);
        return;
    }
    if (r.status != status)
        pd_test_fail(__FILE__, __LINE__, "%.80s: status %d, expected %d (%.200s)", target,
                     r.status, status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    if (!j || !cJSON_IsString(cJSON_GetObjectItem(j, "error")) ||
        !cJSON_IsString(cJSON_GetObjectItem(j, "detail")))
        pd_test_fail(__FILE__, __LINE__, "%.80s: body is not a JSON error: %.200s", target, r.body);
    if (!t_header(&r, "Content-Type", ct, sizeof ct) || strcmp(ct, "application/json") != 0)
        pd_test_fail(__FILE__, __LINE__, "%.80s: content type", target);
    cJSON_Delete(j);
    t_resp_free(&r);
}

/* ---- fixture ---- */

typedef struct {
    pd_config cfg;
    pd_schema schema;
    pd_store *store;
    pd_metrics *metrics;
    pd_worker w;
    pd_partstate parts[NPARTS];
    pd_http *http;
} t_node;

static void t_node_init(t_node *n, const char *id, pd_store *st, const pd_schema *s)
{
    memset(n, 0, sizeof *n);
    pd_config_init(&n->cfg);
    pd_config_set(&n->cfg, "id", id, NULL, 0);
    pd_config_set(&n->cfg, "listen", "127.0.0.1:0", NULL, 0);
    pd_config_set(&n->cfg, "http_threads", "4", NULL, 0);
    pd_config_set(&n->cfg, "forward_timeout_ms", "300", NULL, 0);
    n->schema = *s;
    n->metrics = pd_calloc(1, sizeof *n->metrics);
    pd_metrics_init(n->metrics);
    n->w.cfg = &n->cfg;
    n->w.schema = &n->schema;
    n->w.store = st;
    n->w.metrics = n->metrics;
    pd_tz_parse(&n->w.tz, "UTC", NULL, 0);
    n->w.nparts = NPARTS;
    n->w.parts = n->parts;
    for (int p = 0; p < NPARTS; p++) {
        atomic_init(&n->parts[p].owned, 1);
        atomic_init(&n->parts[p].ready, 1);
        atomic_init(&n->parts[p].generation, 1);
    }
    atomic_init(&n->w.generation, 1);
    atomic_init(&n->w.kafka_up, 1);
}

static void t_node_free(t_node *n)
{
    pd_http_stop(n->http);
    pd_members_stop(n->w.members);
    pd_free(n->metrics);
    pd_config_free(&n->cfg);
}

/* Adds events (JSON lines) for one user-day and commits them. */
static void t_commit(pd_store *st, const pd_schema *s, const char *user, int64_t day,
                     const char *const *events, int nev)
{
    char err[256];
    pd_profile p;
    pd_profile_init(&p, s);
    for (int i = 0; i < nev; i++) {
        pd_event ev;
        int rc = pd_event_parse(&ev, s, events[i], strlen(events[i]), 0, err, sizeof err);
        if (rc != PD_EV_OK) pd_test_fail(__FILE__, __LINE__, "event: %s", err);
        else pd_profile_add(&p, &ev);
        pd_event_free(&ev);
    }
    pd_store_batch *b = pd_store_batch_new(st);
    int32_t part = pd_partition_for(user, strlen(user), NPARTS);
    CHECK_INT(pd_store_batch_merge(b, day, part, user, strlen(user), &p, err, sizeof err), PD_OK);
    CHECK_INT(pd_store_commit(st, b, err, sizeof err), PD_OK);
    pd_store_batch_free(b);
    pd_profile_free(&p);
}

/* First user id "<prefix><k>" that lands in partition `part`. */
static void t_user_in(char *out, size_t cap, const char *prefix, int32_t part)
{
    for (int k = 0; k < 100000; k++) {
        snprintf(out, cap, "%s%d", prefix, k);
        if (pd_partition_for(out, strlen(out), NPARTS) == part) return;
    }
    pd_assert(0);
}

static int64_t now_ms_g, today_g;

/* Store with: alice (3 events, today and yesterday + 1 event 100 days ago),
 * users in partitions 2 and 3 (2 events each, today). */
static pd_store *t_store(const pd_schema *s, char users[NPARTS][64])
{
    pd_store *st = NULL;
    char err[256];
    pd_store_opts o;
    memset(&o, 0, sizeof o);
    CHECK_INT(pd_store_open(&st, pd_test_tmpdir(), s, &o, err, sizeof err), PD_OK);
    pd_tz tz;
    pd_tz_parse(&tz, "UTC", NULL, 0);
    now_ms_g = pd_now_ms();
    today_g = pd_tz_day(&tz, now_ms_g);
    int64_t t0 = today_g * DAY_MS + 1000; /* early today, UTC */
    char e[4][512];
    snprintf(e[0], sizeof e[0],
             "{\"user_id\":\"alice\",\"ts\":%lld,\"type\":\"view\",\"item\":{\"color\":\"blue\",\"price\":100}}",
             (long long)t0);
    snprintf(e[1], sizeof e[1],
             "{\"user_id\":\"alice\",\"ts\":%lld,\"type\":\"click\",\"item\":{\"color\":\"red\",\"price\":400}}",
             (long long)t0 + 5000);
    snprintf(e[2], sizeof e[2],
             "{\"user_id\":\"alice\",\"ts\":%lld,\"type\":\"view\",\"item\":{\"color\":\"blue\",\"price\":200}}",
             (long long)(t0 - DAY_MS));
    snprintf(e[3], sizeof e[3],
             "{\"user_id\":\"alice\",\"ts\":%lld,\"type\":\"view\",\"item\":{\"color\":\"green\",\"price\":1000}}",
             (long long)(t0 - 100 * DAY_MS));
    const char *today_ev[] = {e[0], e[1]}, *yest_ev[] = {e[2]}, *old_ev[] = {e[3]};
    t_commit(st, s, "alice", today_g, today_ev, 2);
    t_commit(st, s, "alice", today_g - 1, yest_ev, 1);
    t_commit(st, s, "alice", today_g - 100, old_ev, 1);
    for (int32_t p = 0; p < NPARTS; p++) {
        t_user_in(users[p], 64, "user-", p);
        char a[512], b[512];
        snprintf(a, sizeof a, "{\"user_id\":\"%s\",\"ts\":%lld,\"type\":\"view\",\"item\":{\"price\":%d}}",
                 users[p], (long long)t0, 10 * (p + 1));
        snprintf(b, sizeof b, "{\"user_id\":\"%s\",\"ts\":%lld,\"type\":\"view\",\"item\":{\"price\":%d}}",
                 users[p], (long long)t0 + 1, 20 * (p + 1));
        const char *ev[] = {a, b};
        t_commit(st, s, users[p], today_g, ev, 2);
    }
    return st;
}

static double jnum(cJSON *o, const char *path)
{
    /* dotted path */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    cJSON *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cJSON_IsNumber(cur) ? cur->valuedouble : -12345;
}

static const char *jstr(cJSON *o, const char *name)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : "(none)";
}

/* ---- tests ---- */

TEST(http_profile_local)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char users[NPARTS][64];
    pd_store *st = t_store(&s, users);
    t_node n;
    t_node_init(&n, "node-a", st, &s);
    char err[256];
    CHECK_INT(pd_http_start(&n.http, &n.w, err, sizeof err), PD_OK);
    int port = pd_http_port(n.http);
    CHECK(port > 0);
    char want[64];
    snprintf(want, sizeof want, "http://127.0.0.1:%d", port);
    CHECK_STR(n.w.advertise, want);

    /* default range (60 days): today + yesterday = 3 events */
    t_resp r;
    CHECK_INT(t_get(port, "/v1/profiles/alice", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    char ct[128], cl[32];
    CHECK_STR(t_header(&r, "Content-Type", ct, sizeof ct), "application/json");
    CHECK(t_header(&r, "Content-Length", cl, sizeof cl) && (size_t)atol(cl) == r.body_len);
    cJSON *j = cJSON_Parse(r.body);
    CHECK(j != NULL);
    if (j) {
        CHECK_STR(jstr(j, "user_id"), "alice");
        CHECK_INT(jnum(j, "partition"), pd_partition_for("alice", 5, NPARTS));
        CHECK_INT(jnum(j, "events"), 3);
        CHECK_INT(jnum(j, "event_types.view"), 2);
        CHECK_INT(jnum(j, "event_types.click"), 1);
        CHECK_INT(jnum(j, "dimensions.color.counts.blue"), 2);
        CHECK_INT(jnum(j, "dimensions.color.counts.red"), 1);
        CHECK_INT(jnum(j, "dimensions.color.total"), 3);
        CHECK_INT(jnum(j, "dimensions.price.count"), 3);
        CHECK_DBL(jnum(j, "dimensions.price.mean"), 700.0 / 3, 1e-9);
        CHECK_DBL(jnum(j, "dimensions.price.min"), 100, 1e-9);
        CHECK_DBL(jnum(j, "dimensions.price.max"), 400, 1e-9);
        CHECK_STR(jstr(j, "served_by"), "node-a");
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "stale")));
    }
    cJSON_Delete(j);
    t_resp_free(&r);

    /* explicit range reaching 100 days back: 4 events, green appears */
    char target[2048], d0[16], d1[16];
    pd_day_format(today_g - 120, d0);
    pd_day_format(today_g, d1);
    snprintf(target, sizeof target, "/v1/profiles/alice?from=%s&to=%s", d0, d1);
    CHECK_INT(t_get(port, target, NULL, &r), 0);
    CHECK_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    CHECK_INT(jnum(j, "events"), 4);
    CHECK_INT(jnum(j, "dimensions.color.counts.green"), 1);
    CHECK_DBL(jnum(j, "dimensions.price.mean"), 1700.0 / 4, 1e-9);
    cJSON_Delete(j);
    t_resp_free(&r);

    /* only yesterday */
    pd_day_format(today_g - 1, d0);
    snprintf(target, sizeof target, "/v1/profiles/alice?from=%s&to=%s", d0, d0);
    CHECK_INT(t_get(port, target, NULL, &r), 0);
    CHECK_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    CHECK_INT(jnum(j, "events"), 1);
    CHECK_DBL(jnum(j, "dimensions.price.mean"), 200, 1e-9);
    cJSON_Delete(j);
    t_resp_free(&r);

    /* percent-encoded user id: "al%69ce" = "alice" */
    CHECK_INT(t_get(port, "/v1/profiles/al%69ce", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    t_resp_free(&r);

    /* each partition's user: 2 events, price mean 15*(p+1) */
    for (int p = 0; p < NPARTS; p++) {
        snprintf(target, sizeof target, "/v1/profiles/%s", users[p]);
        CHECK_INT(t_get(port, target, NULL, &r), 0);
        CHECK_INT(r.status, 200);
        j = cJSON_Parse(r.body);
        CHECK_INT(jnum(j, "events"), 2);
        CHECK_INT(jnum(j, "partition"), p);
        CHECK_DBL(jnum(j, "dimensions.price.mean"), 15.0 * (p + 1), 1e-9);
        cJSON_Delete(j);
        t_resp_free(&r);
    }

    /* errors */
    t_expect_error(port, "/v1/profiles/nobody", NULL, 404);
    pd_day_format(today_g - 50, d0);
    snprintf(target, sizeof target, "/v1/profiles/alice?from=%s&to=%s", d0, d0);
    t_expect_error(port, target, NULL, 404); /* no events that day */
    t_expect_error(port, "/v1/profiles/alice?from=2024-13-01", NULL, 400);
    t_expect_error(port, "/v1/profiles/alice?days=0", NULL, 400);
    t_expect_error(port, "/v1/profiles/alice?dims=nosuchdim", NULL, 400);
    t_expect_error(port, "/v1/profiles/alice?bogus=1", NULL, 400);
    t_expect_error(port, "/v1/profiles/alice?from=2024-02-01&to=2024-01-01", NULL, 400);
    t_expect_error(port, "/v1/profiles/bad%zzescape", NULL, 400);
    t_expect_error(port, "/v1/profiles/%ff%fe", NULL, 400); /* not UTF-8 */
    t_expect_error(port, "/v1/profiles/", NULL, 400);
    char longid[1024];
    memset(longid, 'x', 257);
    longid[257] = '\0';
    snprintf(target, sizeof target, "/v1/profiles/%s", longid);
    t_expect_error(port, target, NULL, 400);
    memset(longid, 'x', 256);
    longid[256] = '\0';
    snprintf(target, sizeof target, "/v1/profiles/%s", longid);
    t_expect_error(port, target, NULL, 404); /* 256 bytes is fine, just unknown */
    t_expect_error(port, "/v1/profiles/a/b", NULL, 404);
    t_expect_error(port, "/nope", NULL, 404);
    t_expect_error(port, "/v1/nope", NULL, 404);

    /* 405 with Allow */
    const char post[] = "POST /v1/profiles/alice HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                        "Content-Length: 2\r\n\r\n{}";
    CHECK_INT(t_raw(port, post, sizeof post - 1, &r), 0);
    CHECK_INT(r.status, 405);
    char allow[64];
    CHECK_STR(t_header(&r, "Allow", allow, sizeof allow), "GET, DELETE");
    t_resp_free(&r);

    /* 414: long path, long query string */
    static char big[12000];
    memcpy(big, "/v1/profiles/", 13);
    memset(big + 13, 'a', 9000);
    big[9013] = '\0';
    t_expect_error(port, big, NULL, 414);
    memcpy(big, "/v1/profiles/alice?dims=", 24);
    memset(big + 24, 'a', 5000);
    big[5024] = '\0';
    t_expect_error(port, big, NULL, 414);

    /* garbage that civetweb rejects itself still gets JSON */
    const char junk[] = "GARBAGE\r\n\r\n";
    CHECK_INT(t_raw(port, junk, sizeof junk - 1, &r), 0);
    CHECK_INT(r.status, 400);
    CHECK(r.body && r.body[0] == '{');
    t_resp_free(&r);
    /* head over http_max_request_bytes (16 KiB here): 431 with JSON */
    {
        static char bighead[24000];
        int bn = snprintf(bighead, sizeof bighead, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
        memset(bighead + bn, 'b', 20000);
        memcpy(bighead + bn + 20000, "\r\n\r\n", 4);
        CHECK_INT(t_raw(port, bighead, (size_t)bn + 20004, &r), 0);
        CHECK_INT(r.status, 431);
        CHECK(r.body && strstr(r.body, "http_max_request_bytes") != NULL);
        t_resp_free(&r);
    }
    /* far over it (civetweb's own limit): still a 4xx */
    static char huge[40000];
    int hn = snprintf(huge, sizeof huge, "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(huge + hn, 'b', 30000);
    memcpy(huge + hn + 30000, "\r\n\r\n", 4);
    if (t_raw(port, huge, (size_t)hn + 30004, &r) == 0) {
        CHECK(r.status >= 400 && r.status < 500);
        t_resp_free(&r);
    } /* (the server may also just close: acceptable) */

    /* ops endpoints */
    CHECK_INT(t_get(port, "/healthz", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "{\"status\":\"ok\"}");
    t_resp_free(&r);
    CHECK_INT(t_get(port, "/readyz", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    CHECK_STR(jstr(j, "status"), "ready");
    CHECK_INT(jnum(j, "owned"), 4);
    CHECK_INT(jnum(j, "ready"), 4);
    cJSON_Delete(j);
    t_resp_free(&r);

    /* a partition restoring: profile 503 + Retry-After, readyz 503 */
    int32_t pa = pd_partition_for("alice", 5, NPARTS);
    atomic_store(&n.parts[pa].ready, 0);
    CHECK_INT(t_get(port, "/v1/profiles/alice", NULL, &r), 0);
    CHECK_INT(r.status, 503);
    char ra[16];
    CHECK_STR(t_header(&r, "Retry-After", ra, sizeof ra), "1");
    t_resp_free(&r);
    CHECK_INT(t_get(port, "/readyz", NULL, &r), 0);
    CHECK_INT(r.status, 503);
    j = cJSON_Parse(r.body);
    CHECK_STR(jstr(j, "status"), "restoring");
    CHECK_INT(jnum(j, "ready"), 3);
    cJSON *rest = cJSON_GetObjectItem(j, "restoring");
    CHECK(cJSON_IsArray(rest) && cJSON_GetArraySize(rest) == 1 &&
          cJSON_GetArrayItem(rest, 0)->valueint == pa);
    cJSON_Delete(j);
    t_resp_free(&r);
    atomic_store(&n.parts[pa].ready, 1);
    atomic_store(&n.w.kafka_up, 0);
    CHECK_INT(t_get(port, "/readyz", NULL, &r), 0);
    CHECK_INT(r.status, 200); /* degraded but serving from local state */
    CHECK(strstr(r.body, "\"status\":\"degraded\"") != NULL);
    CHECK(strstr(r.body, "kafka_down") != NULL);
    t_resp_free(&r);
    atomic_store(&n.w.kafka_up, 1);
    atomic_store(&n.w.generation, 0);
    CHECK_INT(t_get(port, "/readyz", NULL, &r), 0);
    CHECK_INT(r.status, 503);
    CHECK(strstr(r.body, "starting") != NULL);
    t_resp_free(&r);
    atomic_store(&n.w.generation, 1);

    /* not owned, no members map: 503 partition unavailable */
    atomic_store(&n.parts[pa].owned, 0);
    CHECK_INT(t_get(port, "/v1/profiles/alice", NULL, &r), 0);
    CHECK_INT(r.status, 503);
    CHECK(strstr(r.body, "partition unavailable") != NULL);
    t_resp_free(&r);
    atomic_store(&n.parts[pa].owned, 1);

    /* partitions */
    CHECK_INT(t_get(port, "/v1/partitions", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    j = cJSON_Parse(r.body);
    CHECK_INT(jnum(j, "partitions"), 4);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "owners")), 4);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "self"), "owned")), 4);
    cJSON_Delete(j);
    t_resp_free(&r);

    /* metrics: profile 200s were counted */
    CHECK_INT(t_get(port, "/metrics", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    CHECK(t_header(&r, "Content-Type", ct, sizeof ct) && strncmp(ct, "text/plain", 10) == 0);
    CHECK(strstr(r.body, "profiled_http_requests_total{route=\"profile\",status=\"200\"} 8") != NULL);
    CHECK(strstr(r.body, "status=\"404\"") != NULL);
    t_resp_free(&r);
    CHECK_INT(atomic_load(&n.metrics->http_requests[PD_ROUTE_PROFILE][pd_status_slot(200)]), 8);
    CHECK_INT(atomic_load(&n.metrics->http_requests[PD_ROUTE_PROFILE][pd_status_slot(400)]), 9);

    t_node_free(&n);
    pd_store_close(st);
}

TEST(http_auth)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char users[NPARTS][64];
    pd_store *st = t_store(&s, users);
    t_node n;
    t_node_init(&n, "node-a", st, &s);
    pd_config_set(&n.cfg, "api_token", "s3cret", NULL, 0);
    pd_config_set(&n.cfg, "cluster_token", "clu", NULL, 0);
    char err[256];
    CHECK_INT(pd_http_start(&n.http, &n.w, err, sizeof err), PD_OK);
    int port = pd_http_port(n.http);
    t_resp r;
    CHECK_INT(t_get(port, "/v1/profiles/alice", NULL, &r), 0);
    CHECK_INT(r.status, 401);
    char v[128];
    CHECK(t_header(&r, "WWW-Authenticate", v, sizeof v) && strncmp(v, "Bearer", 6) == 0);
    t_resp_free(&r);
    t_expect_error(port, "/v1/profiles/alice", "Authorization: Bearer s3cre\r\n", 401);
    t_expect_error(port, "/v1/profiles/alice", "Authorization: Bearer s3cret2\r\n", 401);
    t_expect_error(port, "/v1/partitions", "Authorization: Basic s3cret\r\n", 401);
    t_expect_error(port, "/v1/nope", NULL, 401);
    CHECK_INT(t_get(port, "/v1/profiles/alice", "Authorization: Bearer s3cret\r\n", &r), 0);
    CHECK_INT(r.status, 200);
    t_resp_free(&r);
    /* ops endpoints stay open */
    CHECK_INT(t_get(port, "/healthz", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    t_resp_free(&r);
    /* internal route: cluster token */
    t_expect_error(port, "/internal/v1/profiles/alice", NULL, 401);
    t_expect_error(port, "/internal/v1/profiles/alice", "Authorization: Bearer s3cret\r\n", 403);
    CHECK_INT(t_get(port, "/internal/v1/profiles/alice", "Authorization: Bearer clu\r\n", &r), 0);
    CHECK_INT(r.status, 200);
    t_resp_free(&r);
    t_node_free(&n);

    /* protect_ops_endpoints */
    t_node_init(&n, "node-a", st, &s);
    pd_config_set(&n.cfg, "api_token", "s3cret", NULL, 0);
    pd_config_set(&n.cfg, "protect_ops_endpoints", "true", NULL, 0);
    CHECK_INT(pd_http_start(&n.http, &n.w, err, sizeof err), PD_OK);
    port = pd_http_port(n.http);
    t_expect_error(port, "/metrics", NULL, 401);
    t_expect_error(port, "/readyz", NULL, 401);
    /* no cluster_token: the internal route falls back to api_token */
    t_expect_error(port, "/internal/v1/profiles/alice", NULL, 401);
    CHECK_INT(t_get(port, "/internal/v1/profiles/alice", "Authorization: Bearer s3cret\r\n", &r), 0);
    CHECK_INT(r.status, 200);
    t_resp_free(&r);
    CHECK_INT(t_get(port, "/healthz", "Authorization: Bearer s3cret\r\n", &r), 0);
    CHECK_INT(r.status, 200);
    t_resp_free(&r);
    t_node_free(&n);
    pd_store_close(st);
}

/* A listening socket that accepts nothing: connects succeed, no answer. */
static int t_black_hole(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

TEST(http_forward)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char users[NPARTS][64];
    pd_store *st = t_store(&s, users);
    t_node a, b;
    t_node_init(&a, "node-a", st, &s);
    t_node_init(&b, "node-b", st, &s);
    pd_config_set(&a.cfg, "cluster_token", "clu", NULL, 0);
    pd_config_set(&b.cfg, "cluster_token", "clu", NULL, 0);
    /* a owns 0,1; b owns 2,3 */
    for (int p = 0; p < NPARTS; p++) {
        atomic_store(&a.parts[p].owned, p < 2);
        atomic_store(&b.parts[p].owned, p >= 2);
    }
    char err[256];
    CHECK_INT(pd_http_start(&a.http, &a.w, err, sizeof err), PD_OK);
    CHECK_INT(pd_http_start(&b.http, &b.w, err, sizeof err), PD_OK);
    int pa = pd_http_port(a.http), pb = pd_http_port(b.http);
    a.w.members = pd_members_new_static(&a.w);
    pd_members_set_owner(a.w.members, 0, "node-a", a.w.advertise, 1);
    pd_members_set_owner(a.w.members, 1, "node-a", a.w.advertise, 1);
    pd_members_set_owner(a.w.members, 2, "node-b", b.w.advertise, 1);
    pd_members_set_owner(a.w.members, 3, "node-b", b.w.advertise, 1);

    t_resp r;
    char target[256];
    /* several forwards (exercise pooled connection reuse) */
    for (int round = 0; round < 3; round++) {
        for (int p = 0; p < NPARTS; p++) {
            snprintf(target, sizeof target, "/v1/profiles/%s?dims=price", users[p]);
            CHECK_INT(t_get(pa, target, NULL, &r), 0);
            CHECK_INT(r.status, 200);
            cJSON *j = cJSON_Parse(r.body);
            CHECK_STR(jstr(j, "served_by"), p < 2 ? "node-a" : "node-b");
            CHECK_INT(jnum(j, "events"), 2);
            CHECK_DBL(jnum(j, "dimensions.price.mean"), 15.0 * (p + 1), 1e-9);
            CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dimensions"), "color") == NULL);
            cJSON_Delete(j);
            t_resp_free(&r);
        }
    }
    CHECK_INT(atomic_load(&a.metrics->forwarded), 6);
    CHECK_INT(atomic_load(&b.metrics->http_requests[PD_ROUTE_INTERNAL][pd_status_slot(200)]), 6);
    /* not found relayed from the owner */
    char miss[64];
    t_user_in(miss, sizeof miss, "ghost-", 3);
    snprintf(target, sizeof target, "/v1/profiles/%s", miss);
    t_expect_error(pa, target, NULL, 404);
    /* params validated before forwarding */
    snprintf(target, sizeof target, "/v1/profiles/%s?days=abc", users[2]);
    t_expect_error(pa, target, NULL, 400);
    CHECK_INT(atomic_load(&a.metrics->forwarded), 7);
    /* hop limit */
    snprintf(target, sizeof target, "/v1/profiles/%s", users[2]);
    t_expect_error(pa, target, "X-Profiled-Hops: 2\r\n", 508);
    /* the internal route on b never forwards: partition 0 is not b's */
    snprintf(target, sizeof target, "/internal/v1/profiles/%s", users[0]);
    t_expect_error(pb, target, "Authorization: Bearer clu\r\n", 503);

    /* owner stops: 503 unreachable, forward_errors counted */
    uint64_t fe0 = atomic_load(&a.metrics->forward_errors);
    pd_http_stop(b.http);
    b.http = NULL;
    snprintf(target, sizeof target, "/v1/profiles/%s", users[3]);
    CHECK_INT(t_get(pa, target, NULL, &r), 0);
    CHECK_INT(r.status, 503);
    CHECK(strstr(r.body, "node-b") && strstr(r.body, "unreachable"));
    char ra[16];
    CHECK_STR(t_header(&r, "Retry-After", ra, sizeof ra), "1");
    t_resp_free(&r);
    CHECK_INT(atomic_load(&a.metrics->forward_errors), fe0 + 1);

    /* b comes back on the same port: forwarding works again */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", pb);
    pd_config_set(&b.cfg, "listen", listen, NULL, 0);
    int rc = pd_http_start(&b.http, &b.w, err, sizeof err);
    CHECK_INT(rc, PD_OK);
    if (rc == PD_OK) {
        CHECK_INT(t_get(pa, target, NULL, &r), 0);
        CHECK_INT(r.status, 200);
        t_resp_free(&r);
    }

    /* owner that accepts but never answers: bounded by forward_timeout_ms */
    int hport = 0, hole = t_black_hole(&hport);
    CHECK(hole >= 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", hport);
    pd_members_set_owner(a.w.members, 3, "node-c", url, 2);
    int64_t t0 = pd_mono_us();
    CHECK_INT(t_get(pa, target, NULL, &r), 0);
    int64_t took = pd_mono_us() - t0;
    CHECK_INT(r.status, 503);
    CHECK(strstr(r.body, "node-c") != NULL);
    CHECK(took >= 250000 && took < 3000000);
    t_resp_free(&r);
    close(hole);

    /* owner map pointing at ourselves for a partition we do not own */
    pd_members_set_owner(a.w.members, 3, "node-a", a.w.advertise, 3);
    t_expect_error(pa, target, NULL, 503);

    /* /v1/partitions reflects the members map */
    CHECK_INT(t_get(pa, "/v1/partitions", NULL, &r), 0);
    cJSON *j = cJSON_Parse(r.body);
    cJSON *owners = cJSON_GetObjectItem(j, "owners");
    CHECK_INT(cJSON_GetArraySize(owners), 4);
    cJSON *o2 = cJSON_GetObjectItem(cJSON_GetArrayItem(owners, 2), "owner");
    CHECK_STR(jstr(o2, "id"), "node-b");
    CHECK_STR(jstr(o2, "url"), b.w.advertise);
    t_resp_free(&r);
    cJSON_Delete(j);

    t_node_free(&a);
    t_node_free(&b);
    pd_store_close(st);
}

/* Sends raw bytes, half-closes, drains the answer (bounded): 1 when the
 * server answered or closed, 0 on timeout. */
static int t_blast(int port, const void *req, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return 0;
    }
    send(fd, req, len, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    char buf[4096];
    int ok = 1;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0) break;
        if (n < 0) {
            ok = errno == ECONNRESET;
            break;
        }
    }
    close(fd);
    return ok;
}

TEST(http_hostile_inputs)
{
    pd_schema s;
    pd_schema_default(&s, 64);
    char users[NPARTS][64];
    pd_store *st = t_store(&s, users);
    t_node n;
    t_node_init(&n, "node-a", st, &s);
    n.w.members = pd_members_new_static(&n.w);
    pd_members_set_owner(n.w.members, 1, "far", "http://127.0.0.1:1", 1);
    atomic_store(&n.parts[1].owned, 0);
    char err[256];
    CHECK_INT(pd_http_start(&n.http, &n.w, err, sizeof err), PD_OK);
    int port = pd_http_port(n.http);
    static const char *const fixed[] = {
        "GET /v1/profiles/% HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/%2 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/%00 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/alice?% HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/alice?&&&==&from HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/alice?dims=%ff HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/alice?decay=exp:-1 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/alice?decay=linear:1e308&breakdown=day HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/alice HTTP/1.1\r\nHost: t\r\nX-Profiled-Hops: -5\r\n\r\n",
        "GET /v1/profiles/alice HTTP/1.1\r\nHost: t\r\nX-Profiled-Hops: 99999999999999999999\r\n\r\n",
        "GET /v1/profiles/alice HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer\r\n\r\n",
        "GET /v1/profiles/alice HTTP/9.9\r\n\r\n",
        "GET /v1/profiles/alice\r\n\r\n",
        "GET\r\n\r\n",
        "\r\n\r\n",
        "GET http://x/v1/profiles/alice HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: t\r\n\r\n",
        "DELETE /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /v1/profiles/alice HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999\r\n\r\nxx",
        "GET /v1/profiles/alice HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET /v1/profiles/alice HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n",
        "GET /internal/v1/profiles/ HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /internal/v1/profiles/a%2Fb HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(fixed); i++)
        CHECK(t_blast(port, fixed[i], strlen(fixed[i])));
    /* the forwarded path with a user in partition 1 (owner unreachable) */
    char req[256];
    int rl = snprintf(req, sizeof req, "GET /v1/profiles/%s?days=3 HTTP/1.1\r\nHost: t\r\n\r\n",
                      users[1]);
    CHECK(t_blast(port, req, (size_t)rl));
    /* many headers */
    pd_buf b = {0};
    pd_buf_printf(&b, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 200; i++) pd_buf_printf(&b, "X-H%d: v\r\n", i);
    pd_buf_printf(&b, "\r\n");
    CHECK(t_blast(port, b.p, b.len));
    pd_buf_free(&b);
    /* random bytes, deterministic */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    char rnd[600];
    for (int k = 0; k < 150; k++) {
        size_t len = 0;
        const char *pfx = (k % 3 == 0) ? "" : (k % 3 == 1) ? "GET /v1/profiles/" : "GET /";
        len = strlen(pfx);
        memcpy(rnd, pfx, len);
        size_t extra = (size_t)(k * 7 % 500);
        for (size_t i = 0; i < extra; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            rnd[len++] = (char)(k % 2 ? (x & 0xff) : (0x20 + (x % 95)));
        }
        memcpy(rnd + len, " HTTP/1.1\r\n\r\n", 13);
        len += 13;
        CHECK(t_blast(port, rnd, len));
    }
    /* still serving */
    t_resp r;
    CHECK_INT(t_get(port, "/healthz", NULL, &r), 0);
    CHECK_INT(r.status, 200);
    t_resp_free(&r);
    CHECK_INT(t_get(port, "/v1/profiles/alice", NULL, &r), 0);
    CHECK_INT(r.status, pd_partition_for("alice", 5, NPARTS) == 1 ? 503 : 200);
    t_resp_free(&r);
    t_node_free(&n);
    pd_store_close(st);
}

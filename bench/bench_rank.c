/*
 * bench_rank.c -- the CPU of a rank request in process (issue 20): the
 * in-process figures of docs/BENCHMARKS.md "The rank request's own CPU".
 *
 *   bench_rank BODY EVENTS [--iters N] [--user-events N] [--pop-per-day N]
 *              [--days D] [--pop-cache 0|1] [--scan-only 1] [--print 1]
 *
 * BODY is a rank body (the bench step's rank100.json: bench/steps/rank.py
 * candidates()), EVENTS a file of events, one JSON object per line
 * (`profilectl generate 180000 --users 20000 --days 30 --seed 7`). Event
 * i goes to day i mod D (default 30) of the user (its first --user-events,
 * default 1,364) and of the population (its first D x --pop-per-day,
 * default 0: no prior), built-in schema (population cap 10,000). Then, N
 * times (default 2,000): pd_score_parse_rank, the model (with
 * --pop-cache 1 the population's half built once and shared, as the
 * worker's cache does; else merged per iteration as before it), and
 * pd_score_render_rank; prints p10 and p50 of each phase in microseconds
 * (wall clock, one thread). --scan-only 1 times pd_json_open on the body
 * alone; --print 1 writes the first answer to stdout first. No I/O besides
 * reading the two files; HTTP, RocksDB and the front end are the bench
 * step's (bench/steps/rank.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "profile.h"
#include "query.h"
#include "schema.h"
#include "score.h"
#include "util.h"

#define MAX_DAYS 400

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_rank: cannot open %s\n", path);
        exit(2);
    }
    pd_buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) pd_buf_append(&b, tmp, n);
    fclose(f);
    *len = b.len;
    return b.p;
}

static void report(const char *what, double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmpd);
    printf("%s p50 %.1f p10 %.1f us", what, t[n / 2], t[n / 10]);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_rank BODY EVENTS [--iters N] [--user-events N] [--pop-per-day N] [--days D] "
                        "[--pop-cache 0|1] [--scan-only 1] [--print 1]\n");
        return 2;
    }
    long iters = 2000, user_events = 1364, pop_per_day = 0, ndays = 30, pop_cache = 0, scan_only = 0, print = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        long v = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--iters")) iters = v;
        else if (!strcmp(argv[i], "--user-events")) user_events = v;
        else if (!strcmp(argv[i], "--pop-per-day")) pop_per_day = v;
        else if (!strcmp(argv[i], "--days")) ndays = v;
        else if (!strcmp(argv[i], "--pop-cache")) pop_cache = v;
        else if (!strcmp(argv[i], "--scan-only")) scan_only = v;
        else if (!strcmp(argv[i], "--print")) print = v;
        else {
            fprintf(stderr, "bench_rank: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (iters < 1 || ndays < 1 || ndays > MAX_DAYS) {
        fprintf(stderr, "bench_rank: --iters >= 1, --days 1..%d\n", MAX_DAYS);
        return 2;
    }
    size_t blen, elen;
    char *body = slurp(argv[1], &blen), *events = slurp(argv[2], &elen);
    double *t1 = pd_malloc((size_t)iters * sizeof *t1), *t2 = pd_malloc((size_t)iters * sizeof *t2),
           *t3 = pd_malloc((size_t)iters * sizeof *t3);
    char err[512];
    if (scan_only) {
        for (long it = 0; it < iters; it++) {
            pd_json_doc d;
            double a = now_us();
            if (pd_json_open(&d, body, blen, blen, err, sizeof err) != PD_OK) {
                fprintf(stderr, "bench_rank: body: %s\n", err);
                return 1;
            }
            pd_json_close(&d);
            t1[it] = now_us() - a;
        }
        report("scan", t1, (int)iters);
        printf("\n");
        return 0;
    }
    static pd_schema s, ps;
    pd_schema_default(&s, 1000);
    pd_schema_default(&ps, 10000);
    static pd_profile up[MAX_DAYS], pp[MAX_DAYS];
    pd_query_day ud[MAX_DAYS], pdd[MAX_DAYS];
    const int64_t today = 20790;
    for (long d = 0; d < ndays; d++) {
        pd_profile_init(&up[d], &s);
        pd_profile_init(&pp[d], &ps);
        ud[d] = (pd_query_day){today - ndays + 1 + d, &up[d]};
        pdd[d] = (pd_query_day){today - ndays + 1 + d, &pp[d]};
    }
    long i = 0;
    for (char *p = events, *end = events + elen; p < end && (i < user_events || i < pop_per_day * ndays); i++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        pd_event ev;
        if (i < user_events) {
            if (pd_event_parse(&ev, &s, p, n, 0, err, sizeof err) != PD_OK) {
                fprintf(stderr, "bench_rank: event %ld: %s\n", i, err);
                return 1;
            }
            pd_profile_add(&up[i % ndays], &ev);
            pd_event_free(&ev);
        }
        if (i < pop_per_day * ndays && pd_event_parse(&ev, &ps, p, n, 0, err, sizeof err) == PD_OK) {
            pd_profile_add(&pp[i % ndays], &ev);
            pd_event_free(&ev);
        }
        p += n + 1;
    }
    int np = pop_per_day > 0 ? (int)ndays : 0;
    pd_score_pop *shared = NULL;
    size_t outlen = 0;
    for (long it = 0; it < iters; it++) {
        pd_score_req r;
        double a = now_us();
        if (pd_score_parse_rank(&r, body, blen, &s, today, MAX_DAYS, 1000, err, sizeof err) != PD_OK) {
            fprintf(stderr, "bench_rank: body: %s\n", err);
            return 1;
        }
        double b = now_us();
        if (pop_cache && !shared) shared = pd_score_pop_new(&s, &r.q, pdd, np);
        pd_score_model *m = shared ? pd_score_model_new_pop(&s, &r.q, r.sdims, r.nsd, ud, (int)ndays, shared)
                                   : pd_score_model_new(&s, &r.q, r.sdims, r.nsd, ud, (int)ndays, pdd, np);
        double c = now_us();
        pd_buf out = {0};
        pd_score_prior pr = {.age_s = -1};
        pd_score_render_rank(&r, m, &s, "u-1", 3, 0, &pr, &out);
        double e = now_us();
        if (it == 0 && print) printf("%.*s}\n", (int)out.len, out.p);
        outlen = out.len;
        pd_buf_free(&out);
        pd_score_model_free(m);
        pd_score_req_free(&r);
        t1[it] = b - a;
        t2[it] = c - b;
        t3[it] = e - c;
    }
    report("parse", t1, (int)iters);
    report(" | model", t2, (int)iters);
    report(" | render", t3, (int)iters);
    printf(" (answer %zu bytes)\n", outlen);
    pd_score_pop_free(shared);
    for (long d = 0; d < ndays; d++) {
        pd_profile_free(&up[d]);
        pd_profile_free(&pp[d]);
    }
    pd_free(body);
    pd_free(events);
    pd_free(t1);
    pd_free(t2);
    pd_free(t3);
    return 0;
}

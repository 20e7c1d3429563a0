/*
 * bench_tracks.c -- the cost of per-type tracks (issue 19 item 3), in
 * process, for `make bench` (step "signals") and docs/BENCHMARKS.md.
 *
 *   bench_tracks [--events N] [--users U] [--days D] [--pairs P]
 *
 * Generates N vehicle events (gen.h: view 70 %, search 15 %, park 10 %,
 * contact 5 %; U Zipf users over D days), groups them by user-day and, for
 * the built-in schema with recent items off ({"max":0}, the reference)
 * and 0, 1 ("park") and 2 ("park", "contact") tracked types, and with no
 * tracks but recent items -- the default (10, item.id, no attributes)
 * and 10 with the attributes make and price:
 *   - bytes per user-day: the mean size of the encoded value
 *     (pd_profile_encode of the user-day's profile: what RocksDB stores
 *     before block compression), and its total;
 *   - processing: events per second of pd_event_parse + pd_profile_add
 *     over the grouped events, plus pd_profile_encode per user-day (CPU
 *     time of this process, the best of 5 interleaved runs, and the
 *     median of the runs' rate ratios to the reference);
 * and, over the users' stored days (encoded with 2 tracked types), the CPU
 * per query of what the worker does for GET /v1/profiles after reading
 * the values: decode every day + pd_query_render, for the plain query on
 * the untracked schema without recent items (the reference), the plain
 * query with the default recent items, the plain query with 2 tracks,
 * weights=view:1,park:3,contact:5 and types=park,contact, in interleaved
 * rounds (each round runs every query over all users once, in rotating
 * order); the verdict is the median of the per-round ratios to the
 * reference. HTTP and RocksDB are left out: their cost is the same for
 * every variant (the query steps measure them).
 *
 * Prints one JSON object on stdout. Ownership: everything is allocated and
 * freed here.
 */
#include "event.h"
#include "gen.h"
#include "profile.h"
#include "query.h"
#include "schema.h"
#include "util.h"

#include <xxhash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Ascending, by insertion sort (the medians' arrays are a few rounds). */
static void sort_small(double *x, size_t n)
{
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && x[b - 1] > x[b]; b--) {
            double t = x[b];
            x[b] = x[b - 1];
            x[b - 1] = t;
        }
}

typedef struct {
    size_t off;
    uint32_t len;
    uint32_t user;  /* rank in "u-<rank>" */
    int64_t day;
} bt_line;

static int bt_cmp(const void *a, const void *b)
{
    const bt_line *x = a, *y = b;
    if (x->user != y->user) return x->user < y->user ? -1 : 1;
    if (x->day != y->day) return x->day < y->day ? -1 : 1;
    return x->off < y->off ? -1 : (x->off > y->off ? 1 : 0);
}

/* The built-in schema with n tracked types and recent items: 0 off, 1 the
 * default (10, item.id, no attributes), 2 also make and price. */
static void schema_tracked(pd_schema *s, int n, int recent)
{
    static const char *const t[] = {"park", "contact"};
    pd_schema_default(s, 64);
    if (recent == 0) {
        s->recent_max = 0;
        memset(&s->recent_item, 0, sizeof s->recent_item);
    } else if (recent == 2) {
        s->recent_nattrs = 2;
        s->recent_attrs[0] = pd_schema_find(s, "make", 4);
        s->recent_attrs[1] = pd_schema_find(s, "price", 5);
    }
    for (int i = 0; i < n; i++) {
        snprintf(s->tracked[i], sizeof s->tracked[i], "%s", t[i]);
        s->tracked_len[i] = (uint32_t)strlen(t[i]);
    }
    s->ntracked = n;
}

/* One variant's pass: parse + add per user-day, then encode. Returns CPU
 * seconds; *bytes gets the encoded total, vals (when non-NULL) the values
 * (concatenated; vlen per user-day). */
static double pass(const pd_schema *s, const char *data, const bt_line *ln, size_t n, size_t *bytes,
                   pd_buf *vals, uint32_t *vlen, size_t *groups)
{
    pd_profile p;
    pd_event ev;
    pd_buf enc = {0};
    char err[128];
    size_t g = 0;
    *bytes = 0;
    pd_profile_init(&p, s);
    double t0 = cpu_now();
    for (size_t i = 0; i < n;) {
        size_t j = i;
        pd_profile_clear(&p);
        for (; j < n && ln[j].user == ln[i].user && ln[j].day == ln[i].day; j++) {
            if (pd_event_parse(&ev, s, data + ln[j].off, ln[j].len, 65536, err, sizeof err) != PD_OK) continue;
            pd_profile_add(&p, &ev);
            pd_event_free(&ev);
        }
        enc.len = 0;
        pd_profile_encode(&p, &enc);
        *bytes += enc.len;
        if (vals) {
            pd_buf_append(vals, enc.p, enc.len);
            vlen[g] = (uint32_t)enc.len;
        }
        g++;
        i = j;
    }
    double t = cpu_now() - t0;
    *groups = g;
    pd_profile_free(&p);
    pd_buf_free(&enc);
    return t;
}

typedef struct {
    const pd_schema *s;
    const char *qs;
    const char *name;
} bt_query;

int main(int argc, char **argv)
{
    int64_t nev = 200000, users = 2000, days = 7, pairs = 7;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--events")) nev = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--users")) users = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--days")) days = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--pairs")) pairs = atoll(argv[i + 1]);
        else {
            fprintf(stderr, "bench_tracks: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char err[256];
    const int64_t start = 1795000000000LL - 1795000000000LL % 86400000;
    pd_gen_opts go = {.seed = 19, .count = nev, .users = users, .days = days, .start_ts = start};
    pd_gen *g;
    if (pd_gen_new(&go, &g, err, sizeof err)) {
        fprintf(stderr, "bench_tracks: %s\n", err);
        return 2;
    }
    pd_buf data = {0}, line = {0};
    bt_line *ln = pd_malloc((size_t)nev * sizeof *ln);
    size_t n = 0;
    enum { NV = 5, REPS = 5 };
    pd_schema s0, s1, s2, s3, s4;
    schema_tracked(&s0, 0, 0);
    schema_tracked(&s1, 1, 0);
    schema_tracked(&s2, 2, 0);
    schema_tracked(&s3, 0, 1);
    schema_tracked(&s4, 0, 2);
    int rc;
    while ((rc = pd_gen_next(g, &line, NULL)) != PD_GEN_END) {
        if (rc != PD_GEN_EVENT) continue;
        pd_event ev;
        if (pd_event_parse(&ev, &s0, line.p, line.len, 65536, err, sizeof err) != PD_OK) continue;
        ln[n] = (bt_line){data.len, (uint32_t)line.len, (uint32_t)atoi(ev.user_id + 2), (int64_t)(ev.ts_ms / 86400000)};
        pd_event_free(&ev);
        pd_buf_append(&data, line.p, line.len);
        n++;
    }
    pd_gen_free(g);
    qsort(ln, n, sizeof *ln, bt_cmp);

    /* storage and processing: REPS rounds, each runs every variant once
     * (rotating order); best time per variant, and per round the rate
     * ratio to the reference (variant 0) */
    const pd_schema *sv[NV] = {&s0, &s1, &s2, &s3, &s4};
    size_t bytes[NV] = {0}, groups = 0;
    double secs[NV], rr[NV][REPS];
    pd_buf vals0 = {0}, vals2 = {0}, vals3 = {0};
    uint32_t *vlen0 = pd_malloc(n * sizeof *vlen0), *vlen2 = pd_malloc(n * sizeof *vlen2),
             *vlen3 = pd_malloc(n * sizeof *vlen3);
    for (int v = 0; v < NV; v++) secs[v] = 1e30;
    for (int rep = 0; rep < REPS; rep++) {
        double t[NV];
        for (int vv = 0; vv < NV; vv++) {
            int v = (vv + rep) % NV;
            pd_buf *vb = rep == 0 && v == 0 ? &vals0 : rep == 0 && v == 2 ? &vals2 : rep == 0 && v == 3 ? &vals3 : NULL;
            t[v] = pass(sv[v], data.p, ln, n, &bytes[v], vb, v == 0 ? vlen0 : v == 2 ? vlen2 : vlen3, &groups);
            if (t[v] < secs[v]) secs[v] = t[v];
        }
        for (int v = 0; v < NV; v++) rr[v][rep] = t[0] / t[v];
    }

    /* queries: per user, its days (ascending: ln is sorted by user, day) */
    size_t ngroups = groups;
    int64_t *gday = pd_malloc(ngroups * sizeof *gday);
    uint32_t *guser = pd_malloc(ngroups * sizeof *guser);
    for (size_t i = 0, k = 0; i < n; k++) {
        size_t j = i;
        while (j < n && ln[j].user == ln[i].user && ln[j].day == ln[i].day) j++;
        gday[k] = ln[i].day;
        guser[k] = ln[i].user;
        i = j;
    }
    const int64_t today = start / 86400000 + days - 1;
    enum { NQ = 5 };
    bt_query qv[NQ] = {
        {&s0, "days=30", "plain, no tracked types, recent off (reference)"},
        {&s3, "days=30", "plain, default recent items (10)"},
        {&s2, "days=30", "plain, 2 tracked types"},
        {&s2, "days=30&weights=view:1,park:3,contact:5", "weights=view:1,park:3,contact:5"},
        {&s2, "days=30&types=park,contact", "types=park,contact"},
    };
    pd_query q[NQ];
    int nqv = NQ; /* a build without types=/weights= (the comparison of builds): the first two only */
    for (int k = 0; k < NQ; k++)
        if (pd_query_parse_params(&q[k], qv[k].qs, qv[k].s, today, 60, err, sizeof err)) {
            fprintf(stderr, "bench_tracks: %s: %s (measuring the reference query only)\n", qv[k].qs, err);
            if (k < 2) return 2;
            nqv = 2;
            break;
        }
    pd_profile *prof = pd_malloc(64 * sizeof *prof);
    pd_query_day qd[64];
    pd_buf out = {0};
    double qsum[NQ] = {0}, *ratio[NQ];
    uint64_t ref_hash = 0; /* XXH3 of every reference answer: equal across builds = byte-identical answers */
    size_t nq = 0, out_bytes[NQ] = {0};
    for (int k = 0; k < NQ; k++) ratio[k] = pd_malloc((size_t)pairs * sizeof *ratio[k]);
    for (int64_t r = 0; r < pairs; r++) {
        double t[NQ];
        for (int kk = 0; kk < nqv; kk++) {
            int k = (int)((kk + r) % nqv);
            const pd_schema *s = qv[k].s;
            const char *vp = s == &s0 ? vals0.p : s == &s3 ? vals3.p : vals2.p;
            const uint32_t *vl = s == &s0 ? vlen0 : s == &s3 ? vlen3 : vlen2;
            for (int d = 0; d < 64; d++) pd_profile_init(&prof[d], s);
            size_t off = 0, cnt = 0;
            out_bytes[k] = 0;
            double t0 = cpu_now();
            for (size_t i = 0; i < ngroups;) {
                size_t j = i;
                int nd = 0;
                for (; j < ngroups && guser[j] == guser[i]; j++) {
                    if (nd < 64 && pd_profile_decode(&prof[nd], vp + off, vl[j], err, sizeof err) == PD_OK) {
                        qd[nd] = (pd_query_day){gday[j], &prof[nd]};
                        nd++;
                    }
                    off += vl[j];
                }
                out.len = 0;
                char uid[32];
                int ul = snprintf(uid, sizeof uid, "u-%u", guser[i]);
                if (pd_query_render(&q[k], s, uid, (size_t)ul, 0, q[k].anchor_day, qd, nd, &out) == PD_OK) {
                    out_bytes[k] += out.len;
                    cnt++;
                    if (k == 0 && r == 0) ref_hash = XXH3_64bits_withSeed(out.p, out.len, ref_hash);
                }
                i = j;
            }
            t[k] = (cpu_now() - t0) / (double)(cnt ? cnt : 1);
            qsum[k] += t[k];
            nq = cnt;
            for (int d = 0; d < 64; d++) pd_profile_free(&prof[d]);
        }
        for (int k = 0; k < nqv; k++) ratio[k][r] = t[k] / t[0];
    }
    printf("{\"events\":%zu,\"user_days\":%zu,\"users_queried\":%zu,\"reference_answers_xxh3\":\"%016llx\","
           "\"storage\":[",
           n, ngroups, nq, (unsigned long long)ref_hash);
    for (int v = 0; v < NV; v++) {
        sort_small(rr[v], REPS);
        printf("%s{\"tracked_types\":%d,\"recent_max\":%d,\"recent_attributes\":%d,\"bytes_per_user_day\":%.1f,"
               "\"total_bytes\":%zu,\"events_per_sec\":%.0f,\"median_rate_ratio_to_reference\":%.3f}",
               v ? "," : "", sv[v]->ntracked, sv[v]->recent_max, sv[v]->recent_nattrs,
               (double)bytes[v] / (double)ngroups, bytes[v], (double)n / secs[v], rr[v][REPS / 2]);
    }
    printf("],\"queries\":[");
    for (int k = 0; k < nqv; k++) {
        sort_small(ratio[k], (size_t)pairs);
        printf("%s{\"query\":\"%s\",\"what\":\"%s\",\"cpu_us_per_query\":%.2f,\"median_ratio_to_reference\":%.3f,"
               "\"answer_bytes_per_query\":%.0f}",
               k ? "," : "", qv[k].qs, qv[k].name, 1e6 * qsum[k] / (double)pairs, ratio[k][pairs / 2],
               (double)out_bytes[k] / (double)(nq ? nq : 1));
    }
    printf("]}\n");
    for (int k = 0; k < NQ; k++) pd_free(ratio[k]);
    pd_free(prof);
    pd_free(gday);
    pd_free(guser);
    pd_free(vlen0);
    pd_free(vlen2);
    pd_free(vlen3);
    pd_free(ln);
    pd_buf_free(&out);
    pd_buf_free(&vals0);
    pd_buf_free(&vals2);
    pd_buf_free(&vals3);
    pd_buf_free(&data);
    pd_buf_free(&line);
    return 0;
}
